//! The commit log: the broker's single append-only sequence of message records.
//!
//! Records are appended into fixed-size segments ([`MappedFileQueue`]) under a short
//! critical section that assigns the store timestamp, the physical offset and the
//! per-queue logical offset, encodes the record and copies it into the segment. An append
//! is readable at once (reput, pull) and durable only once the flush service has synced past
//! its end; a SYNC_FLUSH caller awaits [`CommitLog::wait_for_flush`] afterwards, so many
//! appends share one sync (group commit) and no lock is held while waiting.
//!
//! A record never straddles two segments: when it does not fit (with 8 spare bytes), the
//! segment's tail is filled with a BLANK record and the record goes to the next segment.
//!
//! Creating a segment asks the disk to prepare the next one off the appender's thread (Java's
//! `AllocateMappedFileService`), so a roll takes a ready file with its first pages in
//! memory. That file is on disk from then on; recovery cuts it when no record reached it, and
//! prepares the next segment afresh.
//!
//! A failed sync fences the commit log: the durable contents are unknown, so it refuses
//! further appends and fails every waiter instead of retrying and carrying on.
//!
//! The critical section is timed (Java's `beginTimeInLock`): [`CommitLog::lock_held_for`]
//! tells how long the append inside it has been there, without taking the lock, so the store
//! can see a stalled page cache (`isOSPageCacheBusy`) and the broker turn sends away.
//!
//! Invariants: `min_offset <= flushed <= max_offset`; records are contiguous from the start
//! of each segment; queue offsets of a (topic, queue) increase by one per record.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;

use super::mapped_file_queue::{MappedFile, MappedFileQueue};
use super::message::{
    DispatchRequest, END_FILE_MIN_BLANK_LENGTH, MessageInner, RecordCheck, RecordError,
    check_record, create_message_id, encode_blank, encode_record_limited, sys_flag,
};
use crate::clock::{ClockExt, Instant, SharedClock};
use crate::disk::{SharedDisk, join};
use crate::sync::Progress;

/// Why an append was refused. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The record breaks a size limit (`MESSAGE_ILLEGAL` / `PROPERTIES_SIZE_EXCEEDED`).
    #[error(transparent)]
    Record(#[from] RecordError),
    /// No segment could be created (disk full or failing): `CREATE_MAPEDFILE_FAILED`.
    #[error("cannot create a commit-log segment: {0}")]
    CreateMappedFile(io::Error),
    /// Writing into the segment failed.
    #[error("commit-log write failed: {0}")]
    Write(io::Error),
    /// A batch without messages.
    #[error("a batch must hold at least one message")]
    EmptyBatch,
    /// A sync failed earlier: the commit log no longer accepts writes.
    #[error("the commit log is fenced after a failed sync")]
    Fenced,
}

/// Where an append landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessageResult {
    /// Physical offset of the (first) record.
    pub wrote_offset: i64,
    /// Bytes written (all records of a batch).
    pub wrote_bytes: i32,
    /// Offset message id(s), comma-joined for a batch.
    pub msg_id: String,
    /// Store timestamp given to the record(s).
    pub store_timestamp: i64,
    /// Queue offset of the (first) record.
    pub logics_offset: i64,
    /// Records written.
    pub msg_num: i32,
}

impl AppendMessageResult {
    /// The offset just past the last record.
    pub fn end_offset(&self) -> u64 {
        (self.wrote_offset + i64::from(self.wrote_bytes)) as u64
    }
}

struct AppendState {
    /// Next queue offset per `topic-queueId` (`topicQueueTable`).
    topic_queue_table: BTreeMap<String, i64>,
    /// Reused encode buffer.
    buffer: Vec<u8>,
    /// Reused buffer for the key of the queue appended to.
    queue_key: String,
}

/// The commit log. See the module docs.
#[derive(Debug)]
pub struct CommitLog {
    queue: MappedFileQueue,
    clock: SharedClock,
    state: Mutex<AppendStateBox>,
    max_message_size: usize,
    flushed: Progress,
    written: Progress,
    fenced: AtomicBool,
    flushed_store_timestamp: AtomicI64,
    lock_timer: LockTimer,
}

/// When the append now inside the critical section entered it (Java's `beginTimeInLock`):
/// one more than the nanoseconds from `origin` to the entry; 0 while no append is inside.
/// One atomic store on entry and one on exit, so timing every append costs next to nothing,
/// and readers never wait for the lock they are asking about.
#[derive(Debug)]
struct LockTimer {
    origin: Instant,
    entered: AtomicU64,
}

impl LockTimer {
    fn new(origin: Instant) -> Self {
        Self {
            origin,
            entered: AtomicU64::new(0),
        }
    }

    fn enter(&self, now: Instant) {
        let nanos = now.saturating_duration_since(self.origin).as_nanos();
        let encoded = u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1;
        self.entered.store(encoded, Ordering::Release);
    }

    fn exit(&self) {
        self.entered.store(0, Ordering::Release);
    }

    fn held_for(&self, now: Instant) -> Option<Duration> {
        match self.entered.load(Ordering::Acquire) {
            0 => None,
            encoded => {
                let entered_at = self.origin + Duration::from_nanos(encoded - 1);
                Some(now.saturating_duration_since(entered_at))
            }
        }
    }
}

/// The append critical section: the append state's lock, timed. Dropping it stops the timer
/// and then releases the lock (Java clears `beginTimeInLock` before unlocking), on every
/// path out of an append, early returns included.
pub(crate) struct AppendGuard<'a> {
    state: MutexGuard<'a, AppendStateBox>,
    timer: &'a LockTimer,
}

impl Drop for AppendGuard<'_> {
    fn drop(&mut self) {
        self.timer.exit();
    }
}

/// `AppendState` behind a Debug-able wrapper.
struct AppendStateBox(AppendState);

impl std::fmt::Debug for AppendStateBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendState")
            .field("queues", &self.0.topic_queue_table.len())
            .finish()
    }
}

/// The key of a queue in the offset table.
pub fn queue_key(topic: &str, queue_id: i32) -> String {
    let mut key = String::new();
    write_queue_key(&mut key, topic, queue_id);
    key
}

/// Replaces `key` with the key of a queue in the offset table: `topic-queueId`.
fn write_queue_key(key: &mut String, topic: &str, queue_id: i32) {
    // Built by hand: this runs for every append, and `format!` costs more than the work.
    key.clear();
    key.push_str(topic);
    key.push('-');
    key.push_str(itoa::Buffer::new().format(queue_id));
}

impl CommitLog {
    /// A commit log in `<store_root>/commitlog` with segments of `file_size` bytes.
    pub fn new(
        disk: SharedDisk,
        store_root: &str,
        file_size: u64,
        max_message_size: usize,
        clock: SharedClock,
    ) -> Self {
        Self {
            queue: MappedFileQueue::new(disk, join(store_root, "commitlog"), file_size)
                .prepare_next_segment(),
            lock_timer: LockTimer::new(clock.instant()),
            clock,
            state: Mutex::new(AppendStateBox(AppendState {
                topic_queue_table: BTreeMap::new(),
                buffer: Vec::new(),
                queue_key: String::new(),
            })),
            max_message_size,
            flushed: Progress::new(0),
            written: Progress::new(0),
            fenced: AtomicBool::new(false),
            flushed_store_timestamp: AtomicI64::new(0),
        }
    }

    /// Opens the existing segments (each treated as full until recovery).
    pub fn load(&self) -> io::Result<()> {
        self.queue.load()
    }

    /// The segment queue.
    pub fn mapped_file_queue(&self) -> &MappedFileQueue {
        &self.queue
    }

    /// First offset still stored.
    pub fn min_offset(&self) -> u64 {
        self.queue.min_offset()
    }

    /// End of the written records.
    pub fn max_offset(&self) -> u64 {
        self.queue.max_offset()
    }

    /// End of the durable records.
    pub fn flushed_offset(&self) -> u64 {
        self.flushed.get()
    }

    /// Whether a failed sync has fenced the commit log.
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// How long the append now inside the critical section has been there (Java's
    /// `now - beginTimeInLock`); `None` while no append is.
    pub fn lock_held_for(&self) -> Option<Duration> {
        self.lock_timer.held_for(self.clock.instant())
    }

    /// Enters the append critical section and stays there until the guard drops: an append
    /// stalled inside it, for tests of the page-cache busy rule.
    #[cfg(test)]
    pub(crate) fn hold_append_lock_for_test(&self) -> AppendGuard<'_> {
        self.lock_for_append()
    }

    /// Replaces the queue-offset table (after recovery rebuilt it from the consume queues).
    pub fn set_topic_queue_table(&self, table: BTreeMap<String, i64>) {
        self.lock().0.topic_queue_table = table;
    }

    /// The next queue offset of every queue.
    pub fn topic_queue_table(&self) -> BTreeMap<String, i64> {
        self.lock().0.topic_queue_table.clone()
    }

    /// Forgets a queue's offset (topic deleted).
    pub fn remove_queue_from_topic_queue_table(&self, topic: &str, queue_id: i32) {
        self.lock()
            .0
            .topic_queue_table
            .remove(&queue_key(topic, queue_id));
    }

    /// Appends one message. Returns at once; durability is awaited separately.
    pub fn append(&self, message: &mut MessageInner) -> Result<AppendMessageResult, AppendError> {
        self.append_batch(std::slice::from_mut(message))
    }

    /// Appends messages of one queue as consecutive records in one segment, with
    /// consecutive queue offsets (a batch send).
    pub fn append_batch(
        &self,
        messages: &mut [MessageInner],
    ) -> Result<AppendMessageResult, AppendError> {
        if self.is_fenced() {
            return Err(AppendError::Fenced);
        }
        let Some(first) = messages.first() else {
            return Err(AppendError::EmptyBatch);
        };
        let mut guard = self.lock_for_append();
        let AppendState {
            topic_queue_table,
            buffer,
            queue_key,
        } = &mut guard.state.0;
        write_queue_key(queue_key, &first.topic, first.queue_id);
        // Store times are monotonic in file order because they are taken under the lock.
        let store_timestamp = self.clock.wall_ms();
        let mut file = self
            .queue
            .last_mapped_file_or_create(0)
            .map_err(AppendError::CreateMappedFile)?;
        let next_queue_offset = topic_queue_table
            .get(queue_key.as_str())
            .copied()
            .unwrap_or(0);
        let mut encoded =
            self.encode_all(messages, store_timestamp, next_queue_offset, &file, buffer)?;
        let fits = |file: &MappedFile, total: usize| {
            total + END_FILE_MIN_BLANK_LENGTH <= file.free_bytes() as usize
        };
        if !fits(&file, encoded.total) && file.wrote_position() == 0 {
            return Err(AppendError::Record(RecordError::MessageSizeExceeded {
                size: encoded.total,
                max: file.file_size() as usize - END_FILE_MIN_BLANK_LENGTH,
            }));
        }
        if !fits(&file, encoded.total) {
            // Pad the rest of this segment with a BLANK record and roll to the next one.
            let free = file.free_bytes();
            file.fill_to_end(&encode_blank(free as usize))
                .map_err(AppendError::Write)?;
            file = self
                .queue
                .last_mapped_file_or_create(0)
                .map_err(AppendError::CreateMappedFile)?;
            encoded =
                self.encode_all(messages, store_timestamp, next_queue_offset, &file, buffer)?;
            if !fits(&file, encoded.total) {
                return Err(AppendError::Record(RecordError::MessageSizeExceeded {
                    size: encoded.total,
                    max: file.file_size() as usize - END_FILE_MIN_BLANK_LENGTH,
                }));
            }
        }
        let wrote_offset = file.file_from_offset() + file.wrote_position();
        file.append(&buffer[..encoded.total], store_timestamp)
            .map_err(AppendError::Write)?;
        if encoded.advances_queue {
            let next = next_queue_offset + messages.len() as i64;
            match topic_queue_table.get_mut(queue_key.as_str()) {
                Some(offset) => *offset = next,
                None => {
                    topic_queue_table.insert(queue_key.clone(), next);
                }
            }
        }
        drop(guard);
        self.written.advance_to(wrote_offset + encoded.total as u64);
        let store_host = messages[0].store_host;
        let msg_id = match encoded.offsets.as_slice() {
            [offset] => create_message_id(store_host, *offset as i64),
            offsets => offsets
                .iter()
                .map(|&offset| create_message_id(store_host, offset as i64))
                .collect::<Vec<_>>()
                .join(","),
        };
        Ok(AppendMessageResult {
            wrote_offset: wrote_offset as i64,
            wrote_bytes: encoded.total as i32,
            msg_id,
            store_timestamp,
            logics_offset: if encoded.advances_queue {
                next_queue_offset
            } else {
                0
            },
            msg_num: messages.len() as i32,
        })
    }

    fn encode_all(
        &self,
        messages: &mut [MessageInner],
        store_timestamp: i64,
        first_queue_offset: i64,
        file: &MappedFile,
        buffer: &mut Vec<u8>,
    ) -> Result<Encoded, AppendError> {
        buffer.clear();
        let mut physical = file.file_from_offset() + file.wrote_position();
        let mut offsets = Vec::with_capacity(messages.len());
        let mut advances_queue = true;
        for (index, message) in messages.iter_mut().enumerate() {
            message.store_timestamp = store_timestamp;
            // Half and rolled-back transaction records get queue offset 0 and take none.
            let transaction = sys_flag::transaction_value(message.sys_flag);
            let takes_queue_offset = transaction != sys_flag::TRANSACTION_PREPARED_TYPE
                && transaction != sys_flag::TRANSACTION_ROLLBACK_TYPE;
            advances_queue &= takes_queue_offset;
            let queue_offset = if takes_queue_offset {
                first_queue_offset + index as i64
            } else {
                0
            };
            let size = encode_record_limited(
                message,
                queue_offset,
                physical as i64,
                self.max_message_size,
                buffer,
            )?;
            offsets.push(physical);
            physical += size as u64;
        }
        Ok(Encoded {
            total: buffer.len(),
            offsets,
            advances_queue,
        })
    }

    /// Waits until the durable end reaches `end_offset`; `false` after `timeout` or when the
    /// commit log is fenced (the caller answers FLUSH_DISK_TIMEOUT).
    pub async fn wait_for_flush(&self, end_offset: u64, timeout: Duration) -> bool {
        #[cfg(madsim)]
        if crate::fault_points::ack_sync_flush_before_sync() {
            return !self.is_fenced();
        }
        let wait = self
            .flushed
            .wait_until(|flushed| flushed >= end_offset || self.is_fenced());
        match self.clock.timeout(timeout, wait).await {
            Ok(flushed) => flushed >= end_offset && !self.is_fenced(),
            Err(_) => false,
        }
    }

    /// Waits until the written end passes `offset` (the flush and reput services' wake-up).
    pub async fn wait_written_past(&self, offset: u64) {
        self.written.wait_until(|written| written > offset).await;
    }

    /// Syncs what is written (whole when `least_pages` is 0); publishes the durable end. A
    /// failed sync fences the commit log.
    pub async fn flush(&self, least_pages: u64) -> io::Result<u64> {
        // Records stored up to this timestamp end at or before `written` (read after it).
        let store_timestamp = self.last_store_timestamp();
        let written = self.max_offset();
        match self.queue.flush(least_pages).await {
            Ok(flushed) => {
                if flushed >= written {
                    self.flushed_store_timestamp
                        .fetch_max(store_timestamp, Ordering::AcqRel);
                }
                self.flushed.advance_to(flushed);
                Ok(flushed)
            }
            Err(error) => {
                tracing::error!(%error, "commit-log sync failed; fencing the store");
                self.fenced.store(true, Ordering::Release);
                // Wake waiters so they see the fence.
                self.flushed.wake();
                Err(error)
            }
        }
    }

    /// Store timestamp of the newest record known durable (for the checkpoint).
    pub fn flushed_store_timestamp(&self) -> i64 {
        self.flushed_store_timestamp.load(Ordering::Acquire)
    }

    /// Store timestamp of the last record in the newest segment.
    pub fn last_store_timestamp(&self) -> i64 {
        self.queue
            .last_mapped_file()
            .map_or(0, |f| f.last_store_timestamp())
    }

    /// Reads `size` bytes at physical `offset` (one record), if stored and written.
    pub fn read(&self, offset: u64, size: usize) -> Option<Bytes> {
        let file = self.queue.find_mapped_file_by_offset(offset)?;
        file.read(offset - file.file_from_offset(), size).ok()
    }

    /// The written bytes from `offset` to the end of the written part of its segment.
    pub fn read_to_segment_end(&self, offset: u64) -> Option<(u64, Bytes)> {
        let file = self.queue.find_mapped_file_by_offset(offset)?;
        let data = file
            .read_to_written(offset - file.file_from_offset())
            .ok()?;
        Some((offset, data))
    }

    /// The start of the segment after the one holding `offset` (where reading continues
    /// after a BLANK record).
    pub fn roll_next_file(&self, offset: u64) -> u64 {
        let size = self.queue.file_size();
        offset + size - offset % size
    }

    /// Scans the raw records of the segments from `start_index` on (recovery): calls
    /// `on_record` for each valid record and returns the end of the valid data. A BLANK
    /// moves to the next segment; the first invalid record ends the scan.
    pub async fn scan_valid_records<F, Fut>(
        &self,
        start_index: usize,
        check_crc: bool,
        mut on_record: F,
    ) -> io::Result<u64>
    where
        F: FnMut(DispatchRequest) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let files = self.queue.mapped_files();
        let Some(first) = files.get(start_index) else {
            return Ok(files
                .last()
                .map_or(0, |f| f.file_from_offset() + f.file_size()));
        };
        let mut process_offset = first.file_from_offset();
        'files: for file in &files[start_index..] {
            let mut position = 0u64;
            process_offset = file.file_from_offset();
            while position < file.file_size() {
                let head = file.read_raw(position, 4)?;
                let size = if head.len() == 4 {
                    i32::from_be_bytes(head[..4].try_into().expect("4 bytes"))
                } else {
                    0
                };
                if size <= 0
                    || u64::try_from(size).unwrap_or(u64::MAX) > file.file_size() - position
                {
                    break 'files;
                }
                let raw = file.read_raw(position, size as usize)?;
                match check_record(&raw, check_crc) {
                    // A record must sit where it says it was written; one that does not is
                    // garbage (or a copy from elsewhere) and ends the valid log.
                    RecordCheck::Message(request)
                        if request.commit_log_offset
                            != (file.file_from_offset() + position) as i64 =>
                    {
                        tracing::info!(
                            offset = file.file_from_offset() + position,
                            claimed = request.commit_log_offset,
                            "commit-log recovery stops at a record claiming another offset"
                        );
                        break 'files;
                    }
                    RecordCheck::Message(request) => {
                        on_record(request).await;
                        position += size as u64;
                        process_offset = file.file_from_offset() + position;
                    }
                    // The end-of-segment filler always covers exactly the rest of its
                    // segment; one that does not is garbage.
                    RecordCheck::Blank { size } if position + size as u64 != file.file_size() => {
                        tracing::info!(
                            offset = file.file_from_offset() + position,
                            size,
                            "commit-log recovery stops at a BLANK that does not end its segment"
                        );
                        break 'files;
                    }
                    RecordCheck::Blank { .. } => {
                        // The segment is complete; continue with the next one.
                        process_offset = file.file_from_offset() + file.file_size();
                        continue 'files;
                    }
                    RecordCheck::Invalid(reason) => {
                        tracing::info!(offset = file.file_from_offset() + position, %reason, "commit-log recovery stops at an invalid record");
                        break 'files;
                    }
                }
            }
            if position >= file.file_size() {
                process_offset = file.file_from_offset() + file.file_size();
            }
        }
        Ok(process_offset)
    }

    /// Whether anything but zeros follows `end` in its segment's next record header: after a
    /// clean shutdown the log ends in unwritten (zero) space, so bytes there are left over
    /// from an earlier failure and must be cut like a torn tail.
    pub fn garbage_after(&self, end: u64) -> bool {
        let Some(file) = self.queue.find_mapped_file_by_offset(end) else {
            return false;
        };
        let position = end - file.file_from_offset();
        file.read_raw(position, END_FILE_MIN_BLANK_LENGTH)
            .is_ok_and(|bytes| bytes.iter().any(|&b| b != 0))
    }

    /// Reads the first record of segment `index`, for choosing where abnormal recovery
    /// starts: its store timestamp if it is a valid message.
    pub fn first_record_store_timestamp(&self, index: usize) -> Option<i64> {
        let file = self.queue.mapped_files().get(index)?.clone();
        let head = file.read_raw(0, 4).ok()?;
        let size = i32::from_be_bytes(head.get(..4)?.try_into().ok()?);
        if size <= 0 || size as u64 > file.file_size() {
            return None;
        }
        match check_record(&file.read_raw(0, size as usize).ok()?, false) {
            RecordCheck::Message(request) if request.store_timestamp > 0 => {
                Some(request.store_timestamp)
            }
            _ => None,
        }
    }

    /// Sets the end of the commit log after recovery: later bytes are cut (zeroed when
    /// `zero_tail`, after an abnormal exit) and the durable end is `end`. The segment after
    /// the newest is then prepared afresh (a prepared one found on disk was cut with the rest).
    pub async fn truncate_to(&self, end: u64, zero_tail: bool) -> io::Result<()> {
        self.queue.truncate_dirty_files(end, zero_tail).await?;
        self.queue.prepare_after_last();
        let end = end.max(self.queue.min_offset());
        self.flushed.set(end);
        self.written.set(end);
        Ok(())
    }

    /// Makes the segments recovery scanned (from `start_index`) durable and publishes the
    /// durable end (see [`MappedFileQueue::sync_written`]).
    pub async fn sync_after_recovery(&self, start_index: usize) -> io::Result<()> {
        self.queue.sync_written(start_index).await?;
        self.flushed.set(self.queue.max_offset());
        Ok(())
    }

    /// Panics if an invariant of the module docs is broken.
    pub fn check_invariants(&self) {
        self.queue.check_invariants();
        let flushed = self.flushed_offset();
        assert!(
            flushed <= self.max_offset(),
            "flushed {flushed} is past the written end {}",
            self.max_offset()
        );
    }

    fn lock(&self) -> MutexGuard<'_, AppendStateBox> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the append lock and starts its timer.
    fn lock_for_append(&self) -> AppendGuard<'_> {
        let state = self.lock();
        self.lock_timer.enter(self.clock.instant());
        AppendGuard {
            state,
            timer: &self.lock_timer,
        }
    }
}

struct Encoded {
    total: usize,
    offsets: Vec<u64>,
    advances_queue: bool,
}

/// Keeps the commit log flushed: on every append for SYNC_FLUSH (group commit), on a timer
/// for ASYNC_FLUSH. Returns when the commit log is fenced.
pub async fn run_flush_service(commit_log: Arc<CommitLog>, policy: FlushPolicy) {
    let clock = commit_log.clock.clone();
    let mut last_thorough = clock.instant();
    loop {
        if commit_log.is_fenced() {
            return;
        }
        let least_pages = match &policy {
            FlushPolicy::Sync => {
                #[cfg(madsim)]
                if crate::fault_points::ack_sync_flush_before_sync() {
                    clock
                        .sleep(crate::fault_points::BUGGY_SYNC_FLUSH_INTERVAL)
                        .await;
                    if commit_log.flush(0).await.is_err() {
                        return;
                    }
                    continue;
                }
                commit_log
                    .wait_written_past(commit_log.flushed_offset())
                    .await;
                0
            }
            FlushPolicy::Async {
                interval,
                least_pages,
                thorough_interval,
            } => {
                // Appends do not wake the async flusher early: batching is its purpose.
                clock.sleep(*interval).await;
                if clock.instant() >= last_thorough + *thorough_interval {
                    last_thorough = clock.instant();
                    0
                } else {
                    *least_pages
                }
            }
        };
        if commit_log.flush(least_pages).await.is_err() {
            return;
        }
    }
}

/// When the flush service syncs.
#[derive(Debug, Clone)]
pub enum FlushPolicy {
    /// After every append (SYNC_FLUSH group commit).
    Sync,
    /// Every `interval` when at least `least_pages` are dirty, everything every
    /// `thorough_interval` (ASYNC_FLUSH).
    Async {
        /// `flushIntervalCommitLog`.
        interval: Duration,
        /// `flushCommitLogLeastPages`.
        least_pages: u64,
        /// `flushCommitLogThoroughInterval`.
        thorough_interval: Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::test_support::StepClock;
    use crate::store::test_disk::MemoryDisk;

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn queue_keys_join_topic_and_queue_id_with_a_dash() {
        assert_eq!(queue_key("TopicTest", 3), "TopicTest-3");
        assert_eq!(queue_key("T", -1), "T--1");
        assert_eq!(queue_key("%RETRY%g", i32::MAX), "%RETRY%g-2147483647");
    }

    fn commit_log(clock: &Arc<StepClock>) -> CommitLog {
        let (_, disk) = MemoryDisk::shared();
        CommitLog::new(disk, "store", 64 * 1024, 1024, clock.clone())
    }

    fn message(body_size: usize) -> MessageInner {
        MessageInner {
            topic: "T".into(),
            queue_id: 0,
            flag: 0,
            body: Bytes::from(vec![b'x'; body_size]),
            properties: String::new(),
            tags_code: 0,
            sys_flag: 0,
            born_timestamp: T0,
            born_host: "127.0.0.1:5555".parse().expect("literal address"),
            store_host: "127.0.0.1:10911".parse().expect("literal address"),
            store_timestamp: 0,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        }
    }

    #[test]
    fn the_lock_is_timed_from_entry_while_an_append_holds_it() {
        let clock = StepClock::at(T0);
        let log = commit_log(&clock);
        assert_eq!(log.lock_held_for(), None);
        clock.advance(Duration::from_secs(5));
        let stalled = log.hold_append_lock_for_test();
        assert_eq!(log.lock_held_for(), Some(Duration::ZERO));
        clock.advance(Duration::from_nanos(1));
        assert_eq!(log.lock_held_for(), Some(Duration::from_nanos(1)));
        clock.advance(Duration::from_millis(1_500));
        let held = Duration::from_millis(1_500) + Duration::from_nanos(1);
        assert_eq!(log.lock_held_for(), Some(held));
        drop(stalled);
        assert_eq!(log.lock_held_for(), None);
    }

    #[test]
    fn an_append_leaves_the_lock_untimed_whether_it_succeeds_or_fails_inside_it() {
        let clock = StepClock::at(T0);
        let log = commit_log(&clock);
        log.append(&mut message(10)).expect("a small message fits");
        assert_eq!(log.lock_held_for(), None);
        let error = log
            .append(&mut message(4_096))
            .expect_err("the record is larger than maxMessageSize");
        assert!(matches!(error, AppendError::Record(_)), "{error}");
        assert_eq!(log.lock_held_for(), None);
    }
}
