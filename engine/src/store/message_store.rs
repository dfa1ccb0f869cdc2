//! The message store (`DefaultMessageStore`): the commit log, the consume queues and the
//! index behind one interface for the broker — put, get by queue offset, look up by physical
//! offset or key — plus the services that keep them consistent:
//!
//! - the **flush service** syncs the commit log (group commit for SYNC_FLUSH);
//! - the **reput service** tails the commit log and dispatches each new record to its
//!   consume queue and the index, then tells the arrival listener (long polling);
//! - the **consume-queue flush service** syncs the consume queues and the checkpoint;
//! - the **clean service** deletes expired segments every ten seconds and judges the disk:
//!   past `diskSpaceWarningLevelRatio` (90%) the store is marked full and refuses sends
//!   until a pass finds it at `diskSpaceCleanForciblyRatio` (85%) or below.
//!
//! Start-up loads the files, recovers (normally after a clean shutdown, abnormally when the
//! `abort` marker is still there) and writes the `abort` marker; a clean shutdown flushes
//! everything and removes it.
//!
//! Invariants ([`MessageStore::check_invariants`]): every consume-queue unit points inside
//! the commit log's written range; consume queues end at or below what the reput service
//! dispatched; the commit log's own invariants.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;

use super::checkpoint::StoreCheckpoint;
use super::commit_log::{
    AppendError, AppendMessageResult, CommitLog, FlushPolicy, run_flush_service,
};
use super::config::{BrokerRole, FlushDiskType, MessageStoreConfig};
use super::consume_queue::{ConsumeQueue, ConsumeQueueError, ConsumeQueueUnit};
use super::index::{IndexConfig, IndexError, IndexRequest, IndexService, QueryOffsetResult};
use super::message::{
    DispatchRequest, MessageInner, RecordCheck, RecordError, check_record, decode_record,
    property_key, sys_flag,
};
use crate::Env;
use crate::clock::ClockExt;
use crate::disk::join;
use crate::remoting::transport::AbortOnDrop;

/// Segments deleted per retention pass at most (`DELETE_FILES_BATCH_MAX`).
pub const DELETE_FILES_BATCH_MAX: usize = 10;

/// How often the retention pass runs (`cleanResourceInterval`).
pub const CLEAN_RESOURCE_INTERVAL: Duration = Duration::from_secs(10);
/// Pause before a dispatch that could not write a consume queue is tried again (Java
/// retries the put every second).
pub const DISPATCH_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// The topic delayed messages wait in, one queue per delay level.
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";

/// Outcome of a put, as the broker maps it to a response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMessageStatus {
    /// Stored (and durable, under SYNC_FLUSH).
    PutOk,
    /// Stored, but the sync did not finish within `syncFlushTimeout`.
    FlushDiskTimeout,
    /// Stored, but no slave confirmed in time.
    FlushSlaveTimeout,
    /// Stored, but no slave is available to replicate to.
    SlaveNotAvailable,
    /// The store does not take writes (slave, shut down, fenced).
    ServiceNotAvailable,
    /// No commit-log segment could be created (disk full or failing).
    CreateMappedFileFailed,
    /// The message breaks a size or name rule.
    MessageIllegal,
    /// The properties are too large.
    PropertiesSizeExceeded,
    /// The page cache is too busy (an append took too long).
    OsPageCacheBusy,
    /// Anything else.
    UnknownError,
}

impl PutMessageStatus {
    /// Whether the message was stored.
    pub fn is_stored(self) -> bool {
        matches!(
            self,
            Self::PutOk
                | Self::FlushDiskTimeout
                | Self::FlushSlaveTimeout
                | Self::SlaveNotAvailable
        )
    }
}

/// The outcome of a put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutMessageResult {
    /// What happened.
    pub status: PutMessageStatus,
    /// Where it landed, when stored.
    pub append: Option<AppendMessageResult>,
    /// Why, when refused.
    pub remark: Option<String>,
}

impl PutMessageResult {
    fn refused(status: PutMessageStatus, remark: impl Into<String>) -> Self {
        Self {
            status,
            append: None,
            remark: Some(remark.into()),
        }
    }
}

/// A put whose records are in the commit log (or that was refused), with the sync a
/// SYNC_FLUSH put still waits for. Holds no lock and borrows nothing, so the wait can run on
/// a task of its own: the sender is answered when the group commit covering its records
/// completes, and the worker that appended is free meanwhile.
#[must_use = "a put under SYNC_FLUSH is not acknowledged until its sync is awaited"]
#[derive(Debug)]
pub struct PendingPut {
    /// The outcome as far as the append: `PutOk` for appended records.
    pub result: PutMessageResult,
    /// The sync still owed, under SYNC_FLUSH.
    pub flush: Option<FlushWait>,
}

impl PendingPut {
    fn done(result: PutMessageResult) -> Self {
        Self {
            result,
            flush: None,
        }
    }

    /// Waits for the sync, if one is owed; a sync that does not complete in time (or a
    /// fenced commit log) turns `PutOk` into `FlushDiskTimeout`.
    pub async fn finish(self) -> PutMessageResult {
        let mut result = self.result;
        if let Some(flush) = self.flush
            && !flush.wait().await
        {
            result.status = PutMessageStatus::FlushDiskTimeout;
        }
        result
    }
}

/// The group commit a SYNC_FLUSH put waits for.
#[derive(Debug)]
pub struct FlushWait {
    commit_log: Arc<CommitLog>,
    end_offset: u64,
    timeout: Duration,
}

impl FlushWait {
    /// Whether the records became durable within `syncFlushTimeout` (false too when the
    /// commit log is fenced by a failed sync).
    pub async fn wait(self) -> bool {
        self.commit_log
            .wait_for_flush(self.end_offset, self.timeout)
            .await
    }
}

/// The refusal a failed append is answered with.
fn append_refusal(error: AppendError) -> PutMessageResult {
    match error {
        AppendError::Record(RecordError::PropertiesSizeExceeded { size }) => {
            PutMessageResult::refused(
                PutMessageStatus::PropertiesSizeExceeded,
                format!("properties of {size} bytes are too large"),
            )
        }
        AppendError::Record(error) => {
            PutMessageResult::refused(PutMessageStatus::MessageIllegal, error.to_string())
        }
        AppendError::EmptyBatch => {
            PutMessageResult::refused(PutMessageStatus::MessageIllegal, "empty batch")
        }
        AppendError::CreateMappedFile(error) => PutMessageResult::refused(
            PutMessageStatus::CreateMappedFileFailed,
            format!("create mapped file failed: {error}"),
        ),
        error @ (AppendError::Fenced | AppendError::Write(_)) => {
            PutMessageResult::refused(PutMessageStatus::ServiceNotAvailable, error.to_string())
        }
    }
}

/// Outcome of a get, as the broker maps it to a pull response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetMessageStatus {
    /// Messages were found.
    Found,
    /// Units were there but none matched the filter.
    NoMatchedMessage,
    /// The records were deleted under the reader.
    MessageWasRemoving,
    /// The unit slice could not be read.
    OffsetFoundNull,
    /// The offset is past the end by more than one.
    OffsetOverflowBadly,
    /// The offset is exactly the end: nothing new yet.
    OffsetOverflowOne,
    /// The offset is below the queue's minimum.
    OffsetTooSmall,
    /// The queue does not exist.
    NoMatchedLogicQueue,
    /// The queue is empty.
    NoMessageInQueue,
}

/// The outcome of a get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetMessageResult {
    /// What happened.
    pub status: GetMessageStatus,
    /// Where the consumer should pull next.
    pub next_begin_offset: i64,
    /// The queue's min offset.
    pub min_offset: i64,
    /// The queue's max offset.
    pub max_offset: i64,
    /// The stored records, byte for byte.
    pub messages: Vec<Bytes>,
    /// Whether the data is old enough to read from a slave.
    pub suggest_pulling_from_slave: bool,
    /// Bytes from the last record examined to the end of the commit log, when units were
    /// read and `diskFallRecorded` is on: what the broker records as the group's fall-behind
    /// (`recordDiskFallBehindSize`) for `protectBroker`.
    pub disk_fall_behind: Option<u64>,
}

impl GetMessageResult {
    /// Total bytes of the records.
    pub fn buffer_total_size(&self) -> usize {
        self.messages.iter().map(Bytes::len).sum()
    }
}

/// Decides which records a pull returns (the broker's subscription).
pub trait MessageFilter: Send + Sync {
    /// Whether a consume-queue unit with `tags_code` may match (`None`: unknown, treat as a
    /// possible match).
    fn is_matched_by_consume_queue(&self, tags_code: Option<i64>) -> bool;
    /// Whether the full record matches (property filters); default: yes.
    fn is_matched_by_commit_log(&self, _record: &[u8]) -> bool {
        true
    }
}

/// Told about every dispatched message, for long polling: `(topic, queue_id,
/// queue max offset, tags_code, store_timestamp)`.
pub type ArrivalListener = Arc<dyn Fn(&str, i32, i64, i64, i64) + Send + Sync>;

/// Why the store could not start.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Files could not be read or written.
    #[error("store I/O failed: {0}")]
    Io(#[from] io::Error),
    /// A setting is invalid.
    #[error("bad store setting: {0}")]
    Config(String),
    /// The index files could not be loaded.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A consume queue could not be loaded or recovered.
    #[error(transparent)]
    ConsumeQueue(#[from] ConsumeQueueError),
}

type QueueTable = BTreeMap<String, BTreeMap<i32, Arc<ConsumeQueue>>>;

/// What a retention pass makes of the store's disk.
#[derive(Debug, Clone, Copy)]
struct DiskVerdict {
    /// Fuller than `diskMaxUsedSpaceRatio`: expired segments go at any hour.
    space_full: bool,
    /// Fuller than `diskSpaceCleanForciblyRatio`: the oldest segments may go unexpired.
    clean_immediately: bool,
}

/// The message store. See the module docs.
pub struct MessageStore {
    env: Env,
    config: MessageStoreConfig,
    root: String,
    commit_log: Arc<CommitLog>,
    consume_queues: RwLock<QueueTable>,
    index: Option<IndexService>,
    checkpoint: StoreCheckpoint,
    delay_levels: Vec<Duration>,
    reput_from: AtomicU64,
    /// Set while dispatch is stopped at a record whose consume queue cannot be written.
    dispatch_stalled: AtomicBool,
    last_dispatched_store_timestamp: AtomicI64,
    arrival_listener: RwLock<Option<ArrivalListener>>,
    hot_data_window: u64,
    shut_down: AtomicBool,
    /// Set by a retention pass that finds the disk past `diskSpaceWarningLevelRatio`, cleared
    /// by one that finds it at `diskSpaceCleanForciblyRatio` or below (Java's `DISK_FULL`
    /// running flag): while set, sends are refused.
    disk_full: AtomicBool,
    /// The disk usage the last retention pass saw, in tenths of a percent (for the remark of
    /// a refused send, which then needs no system call).
    disk_used_permille: AtomicU32,
    last_exit_ok: bool,
    tasks: Mutex<Vec<AbortOnDrop>>,
}

impl std::fmt::Debug for MessageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageStore")
            .field("root", &self.root)
            .field("max_offset", &self.commit_log.max_offset())
            .finish_non_exhaustive()
    }
}

impl MessageStore {
    /// Loads and recovers the store under `config.store_path_root_dir`. `total_memory` is
    /// the machine's memory, from which the hot-data window for pull batching is derived.
    pub async fn open(
        env: Env,
        config: MessageStoreConfig,
        total_memory: u64,
    ) -> Result<Arc<Self>, StoreError> {
        let root = config.store_path_root_dir.clone();
        let delay_levels = config.delay_levels().map_err(StoreError::Config)?;
        if config.mapped_file_size_consume_queue == 0
            || !config
                .mapped_file_size_consume_queue
                .is_multiple_of(super::consume_queue::CQ_STORE_UNIT_SIZE)
        {
            return Err(StoreError::Config(
                "mappedFileSizeConsumeQueue must be a positive multiple of 20".into(),
            ));
        }
        env.disk.create_dir_all(&root)?;
        let last_exit_ok = !env.disk.exists(&join(&root, "abort"))?;
        tracing::info!(root, last_exit_ok, "loading the message store");
        let commit_log = Arc::new(CommitLog::new(
            env.disk.clone(),
            &root,
            config.mapped_file_size_commit_log,
            config.max_message_size as usize,
            env.clock.clone(),
        ));
        commit_log.load()?;
        let checkpoint = StoreCheckpoint::open(&env.disk, &root)?;
        let index = if config.message_index_enable {
            let index = IndexService::new(
                env.disk.clone(),
                env.clock.clone(),
                &root,
                IndexConfig::from_store_config(&config),
            )?;
            index
                .load(last_exit_ok, checkpoint.index_msg_timestamp())
                .await?;
            Some(index)
        } else {
            None
        };
        let hot_data_window =
            total_memory / 100 * u64::from(config.access_message_in_memory_max_ratio);
        let store = Arc::new(Self {
            consume_queues: RwLock::new(BTreeMap::new()),
            commit_log,
            checkpoint,
            index,
            delay_levels,
            reput_from: AtomicU64::new(0),
            dispatch_stalled: AtomicBool::new(false),
            last_dispatched_store_timestamp: AtomicI64::new(0),
            arrival_listener: RwLock::new(None),
            hot_data_window,
            shut_down: AtomicBool::new(false),
            disk_full: AtomicBool::new(false),
            disk_used_permille: AtomicU32::new(0),
            last_exit_ok,
            tasks: Mutex::new(Vec::new()),
            root,
            config,
            env,
        });
        store.load_consume_queues()?;
        store.recover().await?;
        store
            .env
            .disk
            .write_file_atomic(&join(&store.root, "abort"), b"")
            .await?;
        Ok(store)
    }

    /// Starts the flush, reput and consume-queue flush services.
    pub fn start(self: &Arc<Self>) {
        let policy = match self.config.flush_disk_type {
            FlushDiskType::SyncFlush => FlushPolicy::Sync,
            FlushDiskType::AsyncFlush => FlushPolicy::Async {
                interval: Duration::from_millis(self.config.flush_interval_commit_log),
                least_pages: self.config.flush_commit_log_least_pages,
                thorough_interval: Duration::from_millis(
                    self.config.flush_commit_log_thorough_interval,
                ),
            },
        };
        let mut tasks = self.lock_tasks();
        tasks.push(AbortOnDrop(tokio::spawn(run_flush_service(
            self.commit_log.clone(),
            policy,
        ))));
        tasks.push(AbortOnDrop(tokio::spawn(self.clone().run_reput_service())));
        tasks.push(AbortOnDrop(tokio::spawn(
            self.clone().run_consume_queue_flush_service(),
        )));
        tasks.push(AbortOnDrop(tokio::spawn(self.clone().run_clean_service())));
    }

    /// Registers the listener told about every dispatched message.
    pub fn set_arrival_listener(&self, listener: ArrivalListener) {
        *self
            .arrival_listener
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(listener);
    }

    /// Whether the last shutdown was clean.
    pub fn last_exit_ok(&self) -> bool {
        self.last_exit_ok
    }

    /// The commit log.
    pub fn commit_log(&self) -> &Arc<CommitLog> {
        &self.commit_log
    }

    /// The settings.
    pub fn config(&self) -> &MessageStoreConfig {
        &self.config
    }

    // -----------------------------------------------------------------------------------------
    // Put

    /// Stores one message. Under SYNC_FLUSH (and `WAIT` not `false`) waits for the sync.
    pub async fn put_message(&self, message: MessageInner) -> PutMessageResult {
        let wait = message.property(property_key::WAIT) != Some("false");
        self.put_message_with_wait(message, wait).await
    }

    /// Stores one message whose `WAIT` property the caller removed; `wait_store_msg_ok` says
    /// whether a SYNC_FLUSH put waits for the sync.
    pub async fn put_message_with_wait(
        &self,
        message: MessageInner,
        wait_store_msg_ok: bool,
    ) -> PutMessageResult {
        self.append_message(message, wait_store_msg_ok)
            .finish()
            .await
    }

    /// Appends one message whose `WAIT` property the caller removed, without waiting for
    /// the disk: the returned [`PendingPut`] carries the sync still owed under SYNC_FLUSH
    /// (when `wait_store_msg_ok`), so the caller can answer once it completes without
    /// holding anything meanwhile (`asyncPutMessage`).
    pub fn append_message(&self, mut message: MessageInner, wait_store_msg_ok: bool) -> PendingPut {
        if let Some(refused) = self.check_put(std::slice::from_ref(&message)) {
            return PendingPut::done(refused);
        }
        self.rewrite_delayed(&mut message);
        let appended = self.commit_log.append(&mut message);
        self.pending_put(appended, wait_store_msg_ok)
    }

    /// Whether an append has held the commit-log lock longer than
    /// `osPageCacheBusyTimeOutMills` (`isOSPageCacheBusy`): the page cache, or the disk under
    /// it, is stalling writes, so sends are turned away until it lets go. Java reads the lock
    /// time as `now - beginTimeInLock` with `beginTimeInLock = 0` meaning "not held", and needs
    /// an upper bound (10,000,000 ms) to tell that case apart; here "not held" is explicit.
    pub fn is_os_page_cache_busy(&self) -> bool {
        self.commit_log.lock_held_for().is_some_and(|held| {
            held.as_millis() > u128::from(self.config.os_page_cache_busy_time_out_mills)
        })
    }

    /// Whether the last retention pass found the disk too full for sends (Java's `DISK_FULL`
    /// flag); see [`delete_expired_files`](Self::delete_expired_files).
    pub fn is_disk_full(&self) -> bool {
        self.disk_full.load(Ordering::Acquire)
    }

    /// Why a send is refused while the disk is full, with the usage the last pass saw.
    fn disk_full_remark(&self) -> String {
        let permille = self.disk_used_permille.load(Ordering::Relaxed);
        format!(
            "the broker's disk is full: {}.{}% used, past diskSpaceWarningLevelRatio {}%",
            permille / 10,
            permille % 10,
            self.config.disk_space_warning_level_ratio
        )
    }

    /// Whether queue entry `consume_offset` lies outside the hot-data window
    /// (`checkInDiskByConsumeOffset`); false when the entry does not exist.
    pub fn check_in_disk_by_consume_offset(
        &self,
        topic: &str,
        queue_id: i32,
        consume_offset: i64,
    ) -> bool {
        let Some(unit) = self
            .find_consume_queue(topic, queue_id)
            .and_then(|queue| queue.unit(consume_offset))
        else {
            return false;
        };
        (self.commit_log.max_offset() as i64 - unit.commit_log_offset).max(0) as u64
            > self.hot_data_window
    }

    /// Stores messages of one queue as consecutive records (a batch send).
    pub async fn put_messages(&self, messages: Vec<MessageInner>) -> PutMessageResult {
        self.append_messages(messages).finish().await
    }

    /// Appends messages of one queue as consecutive records without waiting for the disk;
    /// see [`append_message`](Self::append_message).
    pub fn append_messages(&self, mut messages: Vec<MessageInner>) -> PendingPut {
        if let Some(refused) = self.check_put(&messages) {
            return PendingPut::done(refused);
        }
        let wait = messages
            .first()
            .is_none_or(|m| m.property(property_key::WAIT) != Some("false"));
        let appended = self.commit_log.append_batch(&mut messages);
        self.pending_put(appended, wait)
    }

    fn check_put(&self, messages: &[MessageInner]) -> Option<PutMessageResult> {
        if self.shut_down.load(Ordering::Acquire) {
            return Some(PutMessageResult::refused(
                PutMessageStatus::ServiceNotAvailable,
                "the message store is shut down",
            ));
        }
        if self.config.broker_role == BrokerRole::Slave {
            return Some(PutMessageResult::refused(
                PutMessageStatus::ServiceNotAvailable,
                "a slave does not accept messages",
            ));
        }
        if self.commit_log.is_fenced() {
            return Some(PutMessageResult::refused(
                PutMessageStatus::ServiceNotAvailable,
                "the message store is fenced after a failed disk sync",
            ));
        }
        if self.is_disk_full() {
            return Some(PutMessageResult::refused(
                PutMessageStatus::ServiceNotAvailable,
                self.disk_full_remark(),
            ));
        }
        if self.is_os_page_cache_busy() {
            return Some(PutMessageResult::refused(
                PutMessageStatus::OsPageCacheBusy,
                "an append has held the commit-log lock too long",
            ));
        }
        messages.iter().find_map(|message| {
            (message.topic.len() > super::message::TOPIC_LENGTH_MAX).then(|| {
                PutMessageResult::refused(
                    PutMessageStatus::MessageIllegal,
                    format!("topic length {} is too long", message.topic.len()),
                )
            })
        })
    }

    /// Parks a delayed message in `SCHEDULE_TOPIC_XXXX`, queue `level - 1`, remembering its
    /// real topic and queue (only plain and committed messages are delayed).
    fn rewrite_delayed(&self, message: &mut MessageInner) {
        let transaction = message.transaction_type();
        if transaction != sys_flag::TRANSACTION_NOT_TYPE
            && transaction != sys_flag::TRANSACTION_COMMIT_TYPE
        {
            return;
        }
        let level = message.delay_time_level();
        if level <= 0 {
            return;
        }
        let level = level.min(self.delay_levels.len() as i32);
        let mut properties = message.properties_map();
        properties.insert(property_key::REAL_TOPIC.into(), message.topic.clone());
        properties.insert(property_key::REAL_QID.into(), message.queue_id.to_string());
        properties.insert(property_key::DELAY.into(), level.to_string());
        message.set_properties_map(&properties);
        message.topic = SCHEDULE_TOPIC.into();
        message.queue_id = level - 1;
    }

    fn pending_put(
        &self,
        appended: Result<AppendMessageResult, AppendError>,
        wait: bool,
    ) -> PendingPut {
        let result = match appended {
            Ok(result) => result,
            Err(error) => return PendingPut::done(append_refusal(error)),
        };
        let flush =
            (self.config.flush_disk_type == FlushDiskType::SyncFlush && wait).then(|| FlushWait {
                commit_log: self.commit_log.clone(),
                end_offset: result.end_offset(),
                timeout: self.config.sync_flush_timeout(),
            });
        PendingPut {
            result: PutMessageResult {
                status: PutMessageStatus::PutOk,
                append: Some(result),
                remark: None,
            },
            flush,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Get

    /// Reads up to `max_msg_nums` messages of a queue from queue offset `offset`, filtered
    /// (`getMessage`). See `spec/broker-store.md` S20 for the statuses and offsets.
    pub fn get_message(
        &self,
        topic: &str,
        queue_id: i32,
        offset: i64,
        max_msg_nums: i32,
        filter: Option<&dyn MessageFilter>,
    ) -> GetMessageResult {
        let max_offset_py = self.commit_log.max_offset() as i64;
        let mut result = GetMessageResult {
            status: GetMessageStatus::NoMatchedLogicQueue,
            next_begin_offset: self.next_offset_correction(offset, 0),
            min_offset: 0,
            max_offset: 0,
            messages: Vec::new(),
            suggest_pulling_from_slave: false,
            disk_fall_behind: None,
        };
        let Some(queue) = self.find_consume_queue(topic, queue_id) else {
            return result;
        };
        let min = queue.min_offset_in_queue();
        let max = queue.max_offset_in_queue();
        result.min_offset = min;
        result.max_offset = max;
        if max == 0 {
            result.status = GetMessageStatus::NoMessageInQueue;
            result.next_begin_offset = self.next_offset_correction(offset, 0);
            return result;
        }
        if offset < min {
            result.status = GetMessageStatus::OffsetTooSmall;
            result.next_begin_offset = self.next_offset_correction(offset, min);
            return result;
        }
        if offset == max {
            result.status = GetMessageStatus::OffsetOverflowOne;
            result.next_begin_offset = self.next_offset_correction(offset, offset);
            return result;
        }
        if offset > max {
            result.status = GetMessageStatus::OffsetOverflowBadly;
            let corrected = if min == 0 { min } else { max };
            result.next_begin_offset = self.next_offset_correction(offset, corrected);
            return result;
        }
        let max_msg_nums = max_msg_nums.max(1) as usize;
        // Scan at least 800 units so a sparse tag filter still makes progress.
        let scan_max = (16_000 / 20).max(max_msg_nums);
        let units = queue.units(offset, scan_max);
        if units.is_empty() {
            result.status = GetMessageStatus::OffsetFoundNull;
            result.next_begin_offset = self.next_offset_correction(offset, offset + 1);
            return result;
        }
        let mut status = GetMessageStatus::NoMatchedMessage;
        let mut bytes = 0usize;
        let mut next_phy_file_start = i64::MIN;
        let mut max_phy_offset_pulling = 0i64;
        let mut examined = 0i64;
        for (_, unit) in &units {
            let ConsumeQueueUnit {
                commit_log_offset,
                size,
                tags_code,
            } = *unit;
            max_phy_offset_pulling = commit_log_offset;
            if commit_log_offset < next_phy_file_start {
                examined += 1;
                continue;
            }
            let in_disk = (max_offset_py - commit_log_offset) as u64 > self.hot_data_window;
            if self.is_the_batch_full(size, max_msg_nums, bytes, result.messages.len(), in_disk) {
                break;
            }
            examined += 1;
            if let Some(filter) = filter
                && !filter.is_matched_by_consume_queue(Some(tags_code))
            {
                continue;
            }
            let Some(record) = self
                .commit_log
                .read(commit_log_offset as u64, size.max(0) as usize)
            else {
                if result.messages.is_empty() {
                    status = GetMessageStatus::MessageWasRemoving;
                }
                next_phy_file_start =
                    self.commit_log.roll_next_file(commit_log_offset as u64) as i64;
                continue;
            };
            if let Some(filter) = filter
                && !filter.is_matched_by_commit_log(&record)
            {
                continue;
            }
            bytes += record.len();
            result.messages.push(record);
            status = GetMessageStatus::Found;
            next_phy_file_start = i64::MIN;
        }
        result.status = status;
        result.next_begin_offset = offset + examined;
        let behind = (max_offset_py - max_phy_offset_pulling).max(0) as u64;
        result.disk_fall_behind = self.config.disk_fall_recorded.then_some(behind);
        result.suggest_pulling_from_slave = behind > self.hot_data_window;
        result
    }

    /// `isTheBatchFull`: never full while empty; full at `max_msg_nums`, or at the byte and
    /// count caps for in-memory and on-disk data.
    fn is_the_batch_full(
        &self,
        size: i32,
        max_msg_nums: usize,
        bytes: usize,
        count: usize,
        in_disk: bool,
    ) -> bool {
        if count == 0 {
            return false;
        }
        if count >= max_msg_nums {
            return true;
        }
        let size = size.max(0) as u64;
        let bytes = bytes as u64;
        if in_disk {
            bytes + size > self.config.max_transfer_bytes_on_message_in_disk
                || count as u64 > u64::from(self.config.max_transfer_count_on_message_in_disk) - 1
        } else {
            bytes + size > self.config.max_transfer_bytes_on_message_in_memory
                || count as u64 > u64::from(self.config.max_transfer_count_on_message_in_memory) - 1
        }
    }

    /// A slave never moves a consumer's offset; a master corrects it to `new`.
    fn next_offset_correction(&self, old: i64, new: i64) -> i64 {
        if self.config.broker_role == BrokerRole::Slave {
            old
        } else {
            new
        }
    }

    /// The next offset to be written in a queue (0 for an unknown queue).
    pub fn max_offset_in_queue(&self, topic: &str, queue_id: i32) -> i64 {
        self.find_consume_queue(topic, queue_id)
            .map_or(0, |q| q.max_offset_in_queue())
    }

    /// The first offset still stored in a queue (0 for an unknown queue).
    pub fn min_offset_in_queue(&self, topic: &str, queue_id: i32) -> i64 {
        self.find_consume_queue(topic, queue_id)
            .map_or(0, |q| q.min_offset_in_queue())
    }

    /// The commit-log offset of queue entry `offset`, if present.
    pub fn commit_log_offset_in_queue(
        &self,
        topic: &str,
        queue_id: i32,
        offset: i64,
    ) -> Option<i64> {
        let queue = self.find_consume_queue(topic, queue_id)?;
        queue.unit(offset).map(|u| u.commit_log_offset)
    }

    /// The first queue offset whose message was stored at or after `timestamp`.
    pub fn offset_in_queue_by_time(&self, topic: &str, queue_id: i32, timestamp: i64) -> i64 {
        let Some(queue) = self.find_consume_queue(topic, queue_id) else {
            return 0;
        };
        queue.offset_by_timestamp(timestamp, |offset, size| {
            self.store_timestamp_at(offset, size)
        })
    }

    /// The store time of the record at `offset` (of `size` bytes).
    pub fn store_timestamp_at(&self, offset: i64, size: i32) -> Option<i64> {
        let record = self.commit_log.read(offset as u64, size.max(0) as usize)?;
        match check_record(&record, false) {
            RecordCheck::Message(request) => Some(request.store_timestamp),
            _ => None,
        }
    }

    /// The store time of the oldest message of a queue.
    pub fn earliest_message_time(&self, topic: &str, queue_id: i32) -> Option<i64> {
        let queue = self.find_consume_queue(topic, queue_id)?;
        let unit = queue.unit(queue.min_offset_in_queue())?;
        self.store_timestamp_at(unit.commit_log_offset, unit.size)
    }

    /// The record at physical `offset` (VIEW_MESSAGE_BY_ID).
    pub fn look_message_by_offset(&self, offset: i64) -> Option<Bytes> {
        let head = self.commit_log.read(u64::try_from(offset).ok()?, 4)?;
        let size = i32::from_be_bytes(head[..4].try_into().ok()?);
        let record = self
            .commit_log
            .read(offset as u64, usize::try_from(size).ok()?)?;
        decode_record(&record, false, false).ok()?;
        Some(record)
    }

    /// Physical offsets of messages with `key` (a KEYS entry or the UNIQ_KEY) stored in
    /// `[begin, end]`, newest first.
    pub fn query_message(
        &self,
        topic: &str,
        key: &str,
        max_num: usize,
        begin: i64,
        end: i64,
    ) -> QueryOffsetResult {
        let Some(index) = &self.index else {
            return QueryOffsetResult::default();
        };
        index
            .query_offsets(topic, key, max_num, begin, end)
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "index query failed");
                QueryOffsetResult::default()
            })
    }

    /// The consume queue of (topic, queue), if it exists.
    pub fn find_consume_queue(&self, topic: &str, queue_id: i32) -> Option<Arc<ConsumeQueue>> {
        self.consume_queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)?
            .get(&queue_id)
            .cloned()
    }

    fn find_or_create_consume_queue(&self, topic: &str, queue_id: i32) -> Arc<ConsumeQueue> {
        if let Some(queue) = self.find_consume_queue(topic, queue_id) {
            return queue;
        }
        let mut queues = self
            .consume_queues
            .write()
            .unwrap_or_else(|p| p.into_inner());
        queues
            .entry(topic.to_owned())
            .or_default()
            .entry(queue_id)
            .or_insert_with(|| {
                Arc::new(ConsumeQueue::new(
                    self.env.disk.clone(),
                    &self.root,
                    topic,
                    queue_id,
                    self.config.mapped_file_size_consume_queue,
                ))
            })
            .clone()
    }

    fn all_consume_queues(&self) -> Vec<Arc<ConsumeQueue>> {
        self.consume_queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .flat_map(|queues| queues.values().cloned())
            .collect()
    }

    /// Every (topic, queue id) that has a consume queue.
    pub fn queue_ids(&self) -> Vec<(String, i32)> {
        self.consume_queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flat_map(|(topic, queues)| queues.keys().map(move |&id| (topic.clone(), id)))
            .collect()
    }

    // -----------------------------------------------------------------------------------------
    // Dispatch (reput)

    /// Builds the consume-queue unit and the index entries of one record, and tells the
    /// arrival listener. A consume queue that cannot be written (a full or failing disk) is
    /// an error and nothing after the failed put happens: the caller retries the same
    /// record later, so no acknowledged message goes missing from its queue. Index failures
    /// and units the queue rejects as invalid are logged and skipped (the index is a
    /// secondary lookup; an invalid unit would fail the same way for ever).
    async fn dispatch(&self, request: &DispatchRequest) -> Result<(), ConsumeQueueError> {
        let transaction = sys_flag::transaction_value(request.sys_flag);
        let tags_code = self.dispatch_tags_code(request);
        if transaction == sys_flag::TRANSACTION_NOT_TYPE
            || transaction == sys_flag::TRANSACTION_COMMIT_TYPE
        {
            let queue = self.find_or_create_consume_queue(&request.topic, request.queue_id);
            let unit = ConsumeQueueUnit {
                commit_log_offset: request.commit_log_offset,
                size: request.msg_size as i32,
                tags_code,
            };
            match queue.put_unit(unit, request.consume_queue_offset) {
                Ok(_) => {}
                Err(error @ ConsumeQueueError::Append { .. }) => return Err(error),
                Err(error) => {
                    tracing::error!(topic = %request.topic, queue_id = request.queue_id, %error, "[BUG] consume queue refused the unit; skipped");
                }
            }
        }
        if let Some(index) = &self.index {
            let index_request = IndexRequest {
                topic: request.topic.clone(),
                commit_log_offset: request.commit_log_offset,
                store_timestamp: request.store_timestamp,
                keys: request.keys.clone().unwrap_or_default(),
                uniq_key: request.uniq_key.clone(),
                transaction_type: transaction,
            };
            match index.build_index(&index_request).await {
                Ok(outcome) => {
                    if let Some(timestamp) = outcome.index_msg_timestamp {
                        self.checkpoint.set_index_msg_timestamp(timestamp);
                        if let Err(error) = self.checkpoint.flush().await {
                            tracing::error!(%error, "checkpoint flush failed");
                        }
                    }
                }
                Err(error) => tracing::error!(%error, "index dispatch failed"),
            }
        }
        self.last_dispatched_store_timestamp
            .store(request.store_timestamp, Ordering::Release);
        if transaction == sys_flag::TRANSACTION_NOT_TYPE
            || transaction == sys_flag::TRANSACTION_COMMIT_TYPE
        {
            let listener = self
                .arrival_listener
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(listener) = listener {
                listener(
                    &request.topic,
                    request.queue_id,
                    request.consume_queue_offset + 1,
                    tags_code,
                    request.store_timestamp,
                );
            }
        }
        Ok(())
    }

    /// The consume-queue tags code: the deliver time for a delayed message, else the code of
    /// its tags.
    fn dispatch_tags_code(&self, request: &DispatchRequest) -> i64 {
        if request.topic == SCHEDULE_TOPIC && request.delay_level > 0 {
            let level = (request.delay_level as usize).min(self.delay_levels.len());
            if let Some(delay) = level.checked_sub(1).and_then(|i| self.delay_levels.get(i)) {
                return request.store_timestamp + delay.as_millis() as i64;
            }
        }
        request.tags_code
    }

    /// Dispatches every complete record past the reput offset up to the written end (what
    /// the reput service does on each wake-up); returns whether anything was dispatched. A
    /// record whose consume queue cannot be written stops it there (see
    /// [`is_dispatch_stalled`](Self::is_dispatch_stalled)); the next call starts again with
    /// that record.
    pub async fn dispatch_pending(&self) -> bool {
        self.dispatch_stalled.store(false, Ordering::Release);
        let mut from = self.reput_from.load(Ordering::Acquire);
        let min = self.commit_log.min_offset();
        if from < min {
            tracing::warn!(
                from,
                min,
                "reput offset is below the commit log; skipping ahead"
            );
            from = min;
        }
        let mut progressed = false;
        while from < self.commit_log.max_offset() {
            let Some((start, data)) = self.commit_log.read_to_segment_end(from) else {
                break;
            };
            let mut position = 0usize;
            let mut rolled = false;
            while position < data.len() {
                match check_record(&data[position..], false) {
                    RecordCheck::Message(request)
                        if request.commit_log_offset == (start + position as u64) as i64 =>
                    {
                        if let Err(error) = self.dispatch(&request).await {
                            tracing::error!(offset = start + position as u64, %error,
                                "consume queue write failed; dispatch paused until it succeeds");
                            self.reput_from
                                .store(start + position as u64, Ordering::Release);
                            self.dispatch_stalled.store(true, Ordering::Release);
                            return progressed;
                        }
                        position += request.msg_size;
                        progressed = true;
                    }
                    RecordCheck::Message(request) => {
                        tracing::error!(
                            offset = start + position as u64,
                            claimed = request.commit_log_offset,
                            "[BUG] record in the written commit log claims another offset"
                        );
                        from = self.commit_log.roll_next_file(start + position as u64);
                        rolled = true;
                        break;
                    }
                    RecordCheck::Blank { size }
                        if !(start + (position + size) as u64)
                            .is_multiple_of(self.commit_log.mapped_file_queue().file_size()) =>
                    {
                        tracing::error!(
                            offset = start + position as u64,
                            size,
                            "[BUG] BLANK record in the written commit log does not end its segment"
                        );
                        from = self.commit_log.roll_next_file(start + position as u64);
                        rolled = true;
                        break;
                    }
                    RecordCheck::Blank { .. } => {
                        from = self.commit_log.roll_next_file(start + position as u64);
                        rolled = true;
                        break;
                    }
                    RecordCheck::Invalid(error) => {
                        // Written records are complete and checked when appended: this is a
                        // bug or corruption. Skip to the next segment rather than spin.
                        tracing::error!(offset = start + position as u64, %error, "[BUG] undecodable record in the written commit log");
                        from = self.commit_log.roll_next_file(start + position as u64);
                        rolled = true;
                        break;
                    }
                }
            }
            if !rolled {
                from = start + position as u64;
            }
            self.reput_from.store(from, Ordering::Release);
        }
        progressed
    }

    /// Whether the last dispatch stopped at a record whose consume queue could not be
    /// written; the reput service retries it every [`DISPATCH_RETRY_INTERVAL`].
    pub fn is_dispatch_stalled(&self) -> bool {
        self.dispatch_stalled.load(Ordering::Acquire)
    }

    async fn run_reput_service(self: Arc<Self>) {
        loop {
            self.dispatch_pending().await;
            if self.is_dispatch_stalled() {
                self.env.clock.sleep(DISPATCH_RETRY_INTERVAL).await;
                continue;
            }
            let from = self.reput_from.load(Ordering::Acquire);
            self.commit_log.wait_written_past(from).await;
        }
    }

    /// Where the reput service will dispatch next.
    pub fn reput_from_offset(&self) -> u64 {
        self.reput_from.load(Ordering::Acquire)
    }

    /// Bytes written to the commit log but not yet dispatched.
    pub fn dispatch_behind_bytes(&self) -> u64 {
        self.commit_log
            .max_offset()
            .saturating_sub(self.reput_from_offset())
    }

    async fn run_consume_queue_flush_service(self: Arc<Self>) {
        let clock = self.env.clock.clone();
        let interval = Duration::from_millis(self.config.flush_interval_consume_queue);
        let thorough = Duration::from_millis(self.config.flush_consume_queue_thorough_interval);
        let mut last_thorough = clock.instant();
        loop {
            clock.sleep(interval).await;
            let least_pages = if clock.instant() >= last_thorough + thorough {
                last_thorough = clock.instant();
                0
            } else {
                self.config.flush_consume_queue_least_pages
            };
            if let Err(error) = self.flush_consume_queues(least_pages).await {
                tracing::error!(%error, "consume-queue flush failed");
            }
        }
    }

    /// Syncs the consume queues and then the checkpoint.
    async fn flush_consume_queues(&self, least_pages: u64) -> Result<(), StoreError> {
        let logics_timestamp = self.last_dispatched_store_timestamp.load(Ordering::Acquire);
        for queue in self.all_consume_queues() {
            queue.flush(least_pages).await?;
        }
        if logics_timestamp > 0 {
            self.checkpoint.set_logics_msg_timestamp(logics_timestamp);
        }
        let physic = self.commit_log.flushed_store_timestamp();
        if physic > 0 {
            self.checkpoint.set_physic_msg_timestamp(physic);
        }
        Ok(self.checkpoint.flush().await?)
    }

    // -----------------------------------------------------------------------------------------
    // Retention

    /// Deletes expired commit-log segments (`CleanCommitLogService`): a segment (never the
    /// newest) expires `fileReservedTime` hours after its last write, and expired segments
    /// go at the deletion hour (`deleteWhen`, hours of the day in UTC), at any hour when the
    /// disk is fuller than `diskMaxUsedSpaceRatio`, or when `force`d (admin). Then drops the
    /// consume-queue and index files that only point below the new minimum. At most
    /// [`DELETE_FILES_BATCH_MAX`] segments per call. Returns how many segments went.
    ///
    /// Each pass also judges the disk first (see [`is_disk_full`](Self::is_disk_full)): past
    /// `diskSpaceWarningLevelRatio` the store is marked full and refuses sends, and past
    /// `diskSpaceCleanForciblyRatio` the oldest segments go whether expired or not (with
    /// `cleanFileForciblyEnable`), unconsumed messages included, as in Java: a full disk
    /// costs the oldest data rather than the service.
    pub async fn delete_expired_files(&self, force: bool) -> Result<usize, StoreError> {
        let now = self.env.clock.wall_ms();
        let hour = (now.rem_euclid(86_400_000) / 3_600_000) as u32;
        let time_up = self
            .config
            .delete_when
            .split(';')
            .filter_map(|h| h.trim().parse::<u32>().ok())
            .any(|h| h == hour);
        let DiskVerdict {
            space_full,
            clean_immediately,
        } = self.assess_disk()?;
        if !(time_up || space_full || force) {
            return Ok(0);
        }
        let clean_at_once = clean_immediately && self.config.clean_file_forcibly_enable;
        let reserved_ms = self.config.file_reserved_time as i64 * 3_600_000;
        let files = self.commit_log.mapped_file_queue().mapped_files();
        // A segment was last written no later than the first record of the next one.
        let last_write: Vec<Option<i64>> = (1..files.len())
            .map(|next| self.commit_log.first_record_store_timestamp(next))
            .collect();
        let mut index = 0usize;
        let deleted = self
            .commit_log
            .mapped_file_queue()
            .delete_oldest_while(|_| {
                let expired = last_write
                    .get(index)
                    .copied()
                    .flatten()
                    .is_some_and(|written| now >= written + reserved_ms);
                let doomed = index < DELETE_FILES_BATCH_MAX && (expired || clean_at_once);
                index += 1;
                doomed
            })
            .await?;
        if deleted > 0 {
            tracing::info!(
                deleted,
                min_offset = self.commit_log.min_offset(),
                time_up,
                space_full,
                clean_at_once,
                force,
                "expired commit-log segments deleted"
            );
            self.delete_expired_logic_files().await?;
        }
        Ok(deleted)
    }

    /// Judges the store's disk for a retention pass (`isSpaceToDelete`) and sets or clears
    /// the full flag: set past `diskSpaceWarningLevelRatio`, cleared at
    /// `diskSpaceCleanForciblyRatio` or below, left as it is between the two.
    fn assess_disk(&self) -> Result<DiskVerdict, StoreError> {
        let used_percent = self.env.disk.space()?.used_ratio() * 100.0;
        self.disk_used_permille
            .store((used_percent * 10.0).round() as u32, Ordering::Relaxed);
        let config = &self.config;
        let clean_immediately = if used_percent > f64::from(config.disk_space_warning_level_ratio) {
            if !self.disk_full.swap(true, Ordering::AcqRel) {
                tracing::error!(
                    used_percent,
                    warning_level = config.disk_space_warning_level_ratio,
                    "the disk is nearly full: sends are refused until it has room again"
                );
            }
            true
        } else if used_percent > f64::from(config.disk_space_clean_forcibly_ratio) {
            true
        } else {
            if self.disk_full.swap(false, Ordering::AcqRel) {
                tracing::info!(used_percent, "the disk has room again: sends are accepted");
            }
            false
        };
        Ok(DiskVerdict {
            space_full: used_percent > f64::from(config.disk_max_used_space_percent()),
            clean_immediately,
        })
    }

    /// Drops consume-queue and index files that only point below the commit log's minimum
    /// (`CleanConsumeQueueService`).
    async fn delete_expired_logic_files(&self) -> Result<(), StoreError> {
        let min = self.commit_log.min_offset() as i64;
        for queue in self.all_consume_queues() {
            queue.delete_expired_files(min).await?;
            queue.correct_min_offset(min)?;
        }
        if let Some(index) = &self.index {
            index.delete_expired(min).await?;
        }
        Ok(())
    }

    async fn run_clean_service(self: Arc<Self>) {
        let clock = self.env.clock.clone();
        loop {
            clock.sleep(CLEAN_RESOURCE_INTERVAL).await;
            if let Err(error) = self.delete_expired_files(false).await {
                tracing::error!(%error, "deleting expired files failed");
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Load and recovery

    fn load_consume_queues(&self) -> Result<(), StoreError> {
        let dir = join(&self.root, "consumequeue");
        let mut queues = QueueTable::new();
        for topic in self.env.disk.list_dir(&dir)? {
            if !topic.is_dir {
                continue;
            }
            for entry in self.env.disk.list_dir(&join(&dir, &topic.name))? {
                let Ok(queue_id) = entry.name.parse::<i32>() else {
                    continue;
                };
                let queue = ConsumeQueue::new(
                    self.env.disk.clone(),
                    &self.root,
                    &topic.name,
                    queue_id,
                    self.config.mapped_file_size_consume_queue,
                );
                queue.load()?;
                queues
                    .entry(topic.name.clone())
                    .or_default()
                    .insert(queue_id, Arc::new(queue));
            }
        }
        *self
            .consume_queues
            .write()
            .unwrap_or_else(|p| p.into_inner()) = queues;
        Ok(())
    }

    async fn recover(&self) -> Result<(), StoreError> {
        let mut max_cq_physic = 0i64;
        for queue in self.all_consume_queues() {
            queue.recover().await?;
            max_cq_physic = max_cq_physic.max(queue.max_physic_offset());
        }
        let files = self.commit_log.mapped_file_queue().mapped_files();
        if files.is_empty() {
            // No commit log: nothing the consume queues point at exists.
            for queue in self.all_consume_queues() {
                queue.destroy().await?;
            }
            self.consume_queues
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            self.commit_log.truncate_to(0, false).await?;
            self.reput_from.store(0, Ordering::Release);
            return Ok(());
        }
        let check_crc = self.config.check_crc_on_recover;
        let recovery_start = if self.last_exit_ok {
            files.len().saturating_sub(3)
        } else {
            self.abnormal_recovery_start(files.len())
        };
        let process_offset = if self.last_exit_ok {
            let start = recovery_start;
            let end = self
                .commit_log
                .scan_valid_records(start, check_crc, |_| async {})
                .await?;
            // A clean shutdown leaves zeros after the end; anything else is debris from an
            // earlier failure and is cut as after an abnormal exit.
            let debris = self.commit_log.garbage_after(end);
            if debris {
                tracing::warn!(
                    end,
                    "bytes after the end of a cleanly shut down commit log; zeroing them"
                );
            }
            self.commit_log.truncate_to(end, debris).await?;
            end
        } else {
            let start = recovery_start;
            tracing::warn!(
                start_segment = start,
                "abnormal exit: re-dispatching from the checkpoint"
            );
            let failed: Mutex<Option<ConsumeQueueError>> = Mutex::new(None);
            let failed_ref = &failed;
            let end = self
                .commit_log
                .scan_valid_records(start, check_crc, |request| async move {
                    let already_failed = failed_ref
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .is_some();
                    if !already_failed && let Err(error) = self.dispatch(&request).await {
                        *failed_ref.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
                    }
                })
                .await?;
            // Recovery cannot finish without the consume queues: refuse to start (a full
            // disk, say) rather than serve queues that miss acknowledged messages.
            if let Some(error) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
                return Err(error.into());
            }
            self.commit_log.truncate_to(end, true).await?;
            end
        };
        if max_cq_physic >= process_offset as i64 || !self.last_exit_ok {
            for queue in self.all_consume_queues() {
                queue
                    .truncate_dirty_logic_files(process_offset as i64)
                    .await?;
            }
        }
        // The append side continues every queue where its consume queue ends.
        let mut table = BTreeMap::new();
        let min_offset = self.commit_log.min_offset() as i64;
        let mut max_dispatched = min_offset;
        for queue in self.all_consume_queues() {
            queue.correct_min_offset(min_offset)?;
            table.insert(
                super::commit_log::queue_key(queue.topic(), queue.queue_id()),
                queue.max_offset_in_queue(),
            );
            max_dispatched = max_dispatched.max(queue.max_physic_offset());
        }
        self.commit_log.set_topic_queue_table(table);
        let reput_from = if self.last_exit_ok {
            max_dispatched.max(min_offset) as u64
        } else {
            process_offset
        };
        self.reput_from.store(reput_from, Ordering::Release);
        // What recovery kept (unsynced bytes a process crash left in the page cache included)
        // may already be read by consumers: make it durable before serving, so that a later
        // power loss cannot take back what was visible.
        self.commit_log.sync_after_recovery(recovery_start).await?;
        for queue in self.all_consume_queues() {
            queue.sync_written().await?;
        }
        tracing::info!(process_offset, reput_from, "message store recovered");
        Ok(())
    }

    /// The newest segment whose first record is older than the checkpoint (segment 0 when
    /// none is).
    fn abnormal_recovery_start(&self, segment_count: usize) -> usize {
        let min_timestamp = if self.config.message_index_enable && self.config.message_index_safe {
            self.checkpoint.min_timestamp_index()
        } else {
            self.checkpoint.min_timestamp()
        };
        (0..segment_count)
            .rev()
            .find(|&index| {
                self.commit_log
                    .first_record_store_timestamp(index)
                    .is_some_and(|timestamp| timestamp <= min_timestamp)
            })
            .unwrap_or(0)
    }

    // -----------------------------------------------------------------------------------------
    // Shutdown and checks

    /// Stops the services, flushes everything and removes the `abort` marker (a clean exit).
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.shut_down.store(true, Ordering::Release);
        self.lock_tasks().clear();
        // Dispatch what is written so the consume queues are complete at the next start.
        self.dispatch_pending().await;
        self.commit_log.flush(0).await?;
        self.flush_consume_queues(0).await?;
        if let Some(index) = &self.index {
            index.flush_all().await?;
        }
        self.env.disk.remove_file(&join(&self.root, "abort"))?;
        Ok(self.env.disk.sync_dir(&self.root).await?)
    }

    /// Panics if an invariant of the module docs is broken.
    pub fn check_invariants(&self) {
        self.commit_log.check_invariants();
        let max = self.commit_log.max_offset() as i64;
        for queue in self.all_consume_queues() {
            queue.check_invariants();
            assert!(
                queue.max_physic_offset() <= max,
                "consume queue {}-{} points past the commit log end {max}",
                queue.topic(),
                queue.queue_id()
            );
        }
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<AbortOnDrop>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }
}
