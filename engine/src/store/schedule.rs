//! The schedule service (`ScheduleMessageService`): delivers delayed messages when their
//! time comes.
//!
//! A message with a `DELAY` level — a producer's delayed message, and every consumer retry
//! (CONSUMER_SEND_MSG_BACK parks it at level 3 + its reconsume times) — is not stored in its
//! topic. [`MessageStore::put_message`] parks it in [`SCHEDULE_TOPIC`], queue `level - 1`,
//! with its real topic and queue in `REAL_TOPIC` / `REAL_QID`, and the dispatcher writes its
//! delivery time (store time + the level's delay) as the consume-queue unit's tags code.
//! This service is the consumer of those queues: per level it reads units from the level's
//! offset on, and for each whose delivery time has come it rebuilds the real message
//! (Java's `messageTimeup`) and puts it with the store, where it is dispatched to its real
//! topic like any other message. Units of one level are in store order and share one delay,
//! so delivery times never decrease along a queue: the first unit not yet due ends a pass.
//!
//! # Progress
//!
//! The offset table (level → next unit to examine) is the service's only state. It moves
//! past a unit only once the unit's message is stored in its real topic (or the unit can
//! never be delivered, below), so a failed put is retried — after [`DELAY_FOR_A_PERIOD`] —
//! and never skipped. It is persisted to `config/delayOffset.json` every
//! `flushDelayOffsetInterval` and on [`shutdown`](ScheduleMessageService::shutdown); after a
//! crash the units delivered since the last persist are delivered again (at least once, as
//! in Java). At load, offsets outside their queue's `[min, max]` are clamped into it (Java
//! 4.9.2+ `correctDelayOffset`); the same check runs before every pass.
//!
//! # One task for all levels
//!
//! One task serves every level, as Java up to 4.9.2 runs every level's timer task on the one
//! `ScheduleMessageTimerThread` (4.9.3+ gives each level a thread of a pool): it keeps a
//! due instant per level, sleeps until the earliest (or the next persist), and runs the
//! passes that are due in level order. Puts are therefore serial and their order is a
//! function of the simulated schedule alone. A pass is `deliver_due`, which returns when
//! it wants to run again (the `poll_timeout` shape), so tests drive it without timers:
//!
//! - a unit not yet due: at its delivery time, but at most [`DUE_RECHECK_MAX`] later, so a
//!   wall clock that jumps forward delays a delivery by at most that much (the countdown is
//!   wall time, the sleep monotonic; Java ≤ 4.9.2 sleeps the countdown, 4.9.3+ polls every
//!   100 ms);
//! - the level caught up (or its queue missing): [`DELAY_FOR_A_WHILE`];
//! - a failed put: [`DELAY_FOR_A_PERIOD`], the same unit again;
//! - [`DELIVER_BATCH_COUNT_MAX`] units delivered: at once, after the other due levels.
//!
//! # What a delivered message is
//!
//! As Java's `messageTimeup`: body, flag, properties without `DELAY` (so `REAL_TOPIC`,
//! `REAL_QID`, `RETRY_TOPIC`, `ORIGIN_MESSAGE_ID`, ... stay), the tags code recomputed from
//! `TAGS`, SYSFLAG (the transaction type too: only plain and committed messages were parked),
//! born time and host, store host and reconsume times; the prepared-transaction offset is 0;
//! topic and queue from `REAL_TOPIC` / `REAL_QID`; the put does not wait for a SYNC_FLUSH
//! (`waitStoreMsgOK = false`). A unit that can never be delivered is logged and skipped:
//! its record is unreadable (deleted by retention, or the unit is a filler), `REAL_TOPIC` or
//! `REAL_QID` is missing or not a number (Java ≤ 4.9.2 "drop it"; 4.9.3+ retries such a unit
//! forever and stalls the level), or the real topic is the transaction half topic (Java's
//! "\[BUG\] ... discard") or [`SCHEDULE_TOPIC`] itself (which would come back to this queue
//! forever).
//!
//! Invariant: a level's offset only moves forward while the service runs, and past a unit
//! only after that unit's put was stored or the unit was found undeliverable.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::consume_queue::{ConsumeQueue, ConsumeQueueUnit};
use super::message::{MessageInner, StoredMessage, decode_record, property_key};
use super::message_store::{MessageStore, SCHEDULE_TOPIC};
use super::metadata::{
    DELAY_OFFSET_FILE, DelayOffsetTable, MetadataError, config_path, load_json, persist_json,
};
use crate::Env;
use crate::clock::{Instant, SharedClock};
use crate::disk::SharedDisk;
use crate::remoting::transport::AbortOnDrop;

/// How long after start each level is first examined (`FIRST_DELAY_TIME`).
pub const FIRST_DELAY_TIME: Duration = Duration::from_secs(1);

/// How long a caught-up level waits before it looks again (`DELAY_FOR_A_WHILE`).
pub const DELAY_FOR_A_WHILE: Duration = Duration::from_millis(100);

/// How long a level waits after a failed put before it tries the same unit again
/// (`DELAY_FOR_A_PERIOD`, spec S35; Java 4.9.3+ retries after 100 ms).
pub const DELAY_FOR_A_PERIOD: Duration = Duration::from_secs(10);

/// The first persist of the offsets comes this long after start (Java's fixed 10,000 ms
/// initial delay); later ones every `flushDelayOffsetInterval`.
pub const PERSIST_FIRST_DELAY: Duration = Duration::from_secs(10);

/// The longest a level sleeps towards a unit's delivery time before it reads the wall clock
/// again.
pub const DUE_RECHECK_MAX: Duration = Duration::from_secs(1);

/// Units one pass delivers at most before the other levels get their turn.
pub const DELIVER_BATCH_COUNT_MAX: usize = 256;

/// The shortest persist period, whatever `flushDelayOffsetInterval` says (0 would spin).
const PERSIST_INTERVAL_MIN: Duration = Duration::from_millis(100);

/// Transaction half messages (`TopicValidator.RMQ_SYS_TRANS_HALF_TOPIC`): never the real
/// topic of a delayed message.
const TRANS_HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";

/// The delivery time of a unit whose tags code says `deliver_ms`, examined at `now_ms`
/// (`correctDeliverTimestamp`): a time further ahead than `now + delay` cannot have come
/// from this level (the wall clock went back, or the unit is corrupt), so it is delivered
/// now instead of waiting for it.
pub fn correct_deliver_timestamp(now_ms: i64, deliver_ms: i64, delay: Duration) -> i64 {
    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    if deliver_ms > now_ms.saturating_add(delay_ms) {
        now_ms
    } else {
        deliver_ms
    }
}

/// What became of one due unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Stored in its real topic.
    Delivered,
    /// Can never be delivered; logged.
    Skipped,
    /// The put was refused; try the same unit again later.
    PutFailed,
}

/// Delivers delayed messages. See the module docs.
pub struct ScheduleMessageService {
    store: Arc<MessageStore>,
    clock: SharedClock,
    disk: SharedDisk,
    /// `config/delayOffset.json` under the store root.
    path: String,
    /// Delay of level `i + 1` at index `i`.
    delay_levels: Vec<Duration>,
    persist_interval: Duration,
    offsets: Mutex<DelayOffsetTable>,
    task: Mutex<Option<AbortOnDrop>>,
}

impl std::fmt::Debug for ScheduleMessageService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduleMessageService")
            .field("path", &self.path)
            .field("offsets", &*self.lock_offsets())
            .finish_non_exhaustive()
    }
}

impl ScheduleMessageService {
    /// Loads `config/delayOffset.json` (a missing file is an empty table) for `store`, which
    /// must be open and recovered, and clamps each recorded offset into its queue's
    /// `[min, max]` (`correctDelayOffset`). Time and the disk come from `env`.
    pub fn load(env: &Env, store: Arc<MessageStore>) -> Result<Arc<Self>, MetadataError> {
        let config = store.config();
        let delay_levels = config
            .delay_levels()
            .expect("MessageStore::open refuses a delay-level table that does not parse");
        let path = config_path(&config.store_path_root_dir, DELAY_OFFSET_FILE);
        let persist_interval =
            Duration::from_millis(config.flush_delay_offset_interval).max(PERSIST_INTERVAL_MIN);
        let offsets: DelayOffsetTable = load_json(&*env.disk, &path)?.unwrap_or_default();
        let service = Arc::new(Self {
            store,
            clock: env.clock.clone(),
            disk: env.disk.clone(),
            path,
            delay_levels,
            persist_interval,
            offsets: Mutex::new(offsets),
            task: Mutex::new(None),
        });
        for level in service.levels() {
            if service.lock_offsets().offset_table.contains_key(&level)
                && let Some(queue) = service.level_queue(level)
            {
                service.correct_offset(level, &queue);
            }
        }
        tracing::info!(path = %service.path, offsets = ?service.offsets().offset_table, "schedule offsets loaded");
        Ok(service)
    }

    /// Starts the delivery task (once; later calls do nothing). Each level is first examined
    /// [`FIRST_DELAY_TIME`] from now; the offsets are persisted [`PERSIST_FIRST_DELAY`] from
    /// now and then every `flushDelayOffsetInterval`.
    pub fn start(self: &Arc<Self>) {
        let mut task = self.lock_task();
        if task.is_none() {
            *task = Some(AbortOnDrop(tokio::spawn(run(
                Arc::downgrade(self),
                self.clock.clone(),
                self.delay_levels.len(),
                self.persist_interval,
            ))));
        }
    }

    /// Stops the delivery task — waiting until it has stopped, so nothing is delivered after
    /// the offsets are read — and persists the offsets.
    pub async fn shutdown(&self) -> Result<(), MetadataError> {
        let task = self.lock_task().take();
        if let Some(mut task) = task {
            task.0.abort();
            // Cancelled (or, had it panicked, failed): either way it runs no more.
            let _ = (&mut task.0).await;
        }
        self.persist().await
    }

    /// Writes the offset table to `config/delayOffset.json` (`persist`).
    pub async fn persist(&self) -> Result<(), MetadataError> {
        let offsets = self.offsets();
        persist_json(&*self.disk, &self.path, &offsets).await
    }

    /// A copy of the offset table.
    pub fn offsets(&self) -> DelayOffsetTable {
        self.lock_offsets().clone()
    }

    /// The next unit of `level`'s queue to examine (0 when never recorded).
    pub fn offset(&self, level: i32) -> i64 {
        self.lock_offsets().offset(level)
    }

    /// The delay levels, 1-based.
    pub fn levels(&self) -> std::ops::RangeInclusive<i32> {
        1..=self.delay_levels.len() as i32
    }

    /// One pass over `level` (`executeOnTimeup`): delivers its due units in queue order,
    /// stopping at the first one not yet due, at a failed put, or after
    /// [`DELIVER_BATCH_COUNT_MAX`] units. Returns how long until the level wants another
    /// pass (see the module docs).
    pub async fn deliver_due(&self, level: i32) -> Duration {
        let Some(delay) = self.level_delay(level) else {
            tracing::error!(level, "[BUG] no such delay level");
            return DELAY_FOR_A_PERIOD;
        };
        let Some(queue) = self.level_queue(level) else {
            return DELAY_FOR_A_WHILE;
        };
        let offset = self.correct_offset(level, &queue);
        let units = queue.units(offset, DELIVER_BATCH_COUNT_MAX);
        let batch_full = units.len() == DELIVER_BATCH_COUNT_MAX;
        for (index, unit) in units {
            let now = self.clock.wall_ms();
            let deliver_at = correct_deliver_timestamp(now, unit.tags_code, delay);
            if deliver_at != unit.tags_code {
                tracing::warn!(
                    level,
                    index,
                    deliver_at = unit.tags_code,
                    now,
                    "delivery time further ahead than the level's delay; delivering now"
                );
            }
            let countdown = deliver_at.saturating_sub(now);
            if countdown > 0 {
                return Duration::from_millis(countdown as u64).min(DUE_RECHECK_MAX);
            }
            match self.deliver(level, index, unit).await {
                Delivery::Delivered | Delivery::Skipped => self.advance_offset(level, index + 1),
                Delivery::PutFailed => return DELAY_FOR_A_PERIOD,
            }
        }
        if batch_full {
            Duration::ZERO
        } else {
            DELAY_FOR_A_WHILE
        }
    }

    /// Stores the message of the due unit at `index` of `level`'s queue in its real topic.
    async fn deliver(&self, level: i32, index: i64, unit: ConsumeQueueUnit) -> Delivery {
        let record = (unit.is_valid() && !unit.is_blank())
            .then(|| {
                self.store
                    .commit_log()
                    .read(unit.commit_log_offset as u64, unit.size as usize)
            })
            .flatten();
        let Some(stored) = record.and_then(|record| decode_record(&record, false, true).ok())
        else {
            tracing::warn!(
                level,
                index,
                commit_log_offset = unit.commit_log_offset,
                size = unit.size,
                "delayed message unreadable (deleted or not a record); skipped"
            );
            return Delivery::Skipped;
        };
        let msg_id = stored.msg_id.clone();
        let message = match message_timeup(stored) {
            Ok(message) => message,
            Err(reason) => {
                tracing::error!(level, index, %msg_id, reason, "[BUG] delayed message cannot be rebuilt; dropped");
                return Delivery::Skipped;
            }
        };
        if message.topic == TRANS_HALF_TOPIC || message.topic == SCHEDULE_TOPIC {
            tracing::error!(level, index, %msg_id, topic = %message.topic, "[BUG] the real topic of a delayed message is a system topic; discarded");
            return Delivery::Skipped;
        }
        let (topic, queue_id) = (message.topic.clone(), message.queue_id);
        let result = self.store.put_message_with_wait(message, false).await;
        // Java counts PUT_OK; without waiting for a flush or a slave a stored put is PUT_OK,
        // and any stored status must count, or the message would be delivered twice.
        if result.status.is_stored() {
            Delivery::Delivered
        } else {
            tracing::error!(
                level,
                index,
                %msg_id,
                %topic,
                queue_id,
                status = ?result.status,
                remark = result.remark.as_deref().unwrap_or_default(),
                "a delayed message is due but its put failed; retrying later"
            );
            Delivery::PutFailed
        }
    }

    /// The level's offset clamped into its queue's `[min, max]` (recorded if it moved):
    /// below `min` the units were deleted, above `max` the queue was cut by recovery.
    fn correct_offset(&self, level: i32, queue: &ConsumeQueue) -> i64 {
        let mut offsets = self.lock_offsets();
        let offset = offsets.offset(level);
        let (min, max) = (queue.min_offset_in_queue(), queue.max_offset_in_queue());
        let corrected = if offset < min {
            min
        } else if offset > max {
            max
        } else {
            offset
        };
        if corrected != offset {
            tracing::error!(
                level,
                offset,
                min,
                max,
                corrected,
                "schedule consume-queue offset invalid; corrected"
            );
            offsets.update(level, corrected);
        }
        corrected
    }

    /// Records `offset` as the next unit of `level` (`updateOffset`).
    fn advance_offset(&self, level: i32, offset: i64) {
        let mut offsets = self.lock_offsets();
        assert!(
            offset > offsets.offset(level),
            "the offset of delay level {level} moves forward only"
        );
        offsets.update(level, offset);
    }

    fn level_delay(&self, level: i32) -> Option<Duration> {
        let index = usize::try_from(level).ok()?.checked_sub(1)?;
        self.delay_levels.get(index).copied()
    }

    fn level_queue(&self, level: i32) -> Option<Arc<ConsumeQueue>> {
        self.store.find_consume_queue(SCHEDULE_TOPIC, level - 1)
    }

    fn lock_offsets(&self) -> MutexGuard<'_, DelayOffsetTable> {
        self.offsets.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_task(&self) -> MutexGuard<'_, Option<AbortOnDrop>> {
        self.task.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The message to store in the real topic for a parked one (`messageTimeup`; see the module
/// docs), or why there is none.
fn message_timeup(stored: StoredMessage) -> Result<MessageInner, &'static str> {
    let mut message = stored.into_inner();
    let mut properties = message.properties_map();
    properties.remove(property_key::DELAY);
    message.topic = properties
        .get(property_key::REAL_TOPIC)
        .filter(|topic| !topic.is_empty())
        .cloned()
        .ok_or("no REAL_TOPIC")?;
    message.queue_id = properties
        .get(property_key::REAL_QID)
        .ok_or("no REAL_QID")?
        .parse()
        .map_err(|_| "REAL_QID is not a number")?;
    message.set_properties_map(&properties);
    message.store_timestamp = 0;
    message.prepared_transaction_offset = 0;
    Ok(message)
}

/// The delivery task: passes over every due level, in level order, and the periodic
/// persist. Ends when the service is dropped.
async fn run(
    service: Weak<ScheduleMessageService>,
    clock: SharedClock,
    level_count: usize,
    persist_interval: Duration,
) {
    let start = clock.instant();
    let mut level_due: Vec<Instant> = vec![start + FIRST_DELAY_TIME; level_count];
    let mut persist_due = start + PERSIST_FIRST_DELAY;
    loop {
        let next = level_due.iter().copied().fold(persist_due, Instant::min);
        clock.sleep_until(next).await;
        let Some(service) = service.upgrade() else {
            return;
        };
        let now = clock.instant();
        let mut more = false;
        for (index, due) in level_due.iter_mut().enumerate() {
            if *due <= now {
                let wait = service.deliver_due(index as i32 + 1).await;
                more |= wait.is_zero();
                *due = clock.instant() + wait;
            }
        }
        if persist_due <= now {
            if let Err(error) = service.persist().await {
                tracing::error!(%error, "persisting the schedule offsets failed");
            }
            // A fixed rate, without a burst of catch-up persists after a stall.
            persist_due += persist_interval;
            if persist_due <= now {
                persist_due = now + persist_interval;
            }
        }
        drop(service);
        if more {
            // A backlog: let the broker's other tasks run between batches.
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests;
