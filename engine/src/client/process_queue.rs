//! The process queue: a push consumer's cache of pulled but not yet consumed messages for one
//! message queue (Java's `ProcessQueue`).
//!
//! Where it sits: the rebalance creates one per owned queue and marks it `dropped` when the
//! queue goes away (spec `clients.md` C44-C45); the pull loop fills it ([`put_messages`]) and
//! holds back the next pull while it is too full ([`flow_control`], C51); the consume services
//! drain it and learn from it which offset to commit — concurrently by removing whatever was
//! consumed ([`remove_messages`], C63), orderly by taking batches from the front and committing
//! or rolling them back ([`take_messages`], [`commit`], [`rollback`],
//! [`make_message_to_consume_again`], C65-C66). It also carries the broker-lock state of
//! orderly consumption (C46) and the timestamps the rebalance uses to spot a stalled pull loop.
//!
//! Everything here is plain data: the caller passes `now` in, and the methods say what to do
//! (commit this offset, send these expired messages back) instead of doing it.
//!
//! **Offsets.** Messages are keyed by queue offset. The offset to commit after a concurrent
//! consumption is the low-water mark of what is still cached: the smallest cached offset, or
//! the last pulled offset + 1 when nothing is left. A message that is still being consumed (or
//! could not be sent back) therefore holds the committed offset back, however far the others
//! have gone — which is why the pull loop bounds the span of cached offsets.
//!
//! Invariants: `msg_count() == cached + consuming` (the orderly consuming map counts until it
//! is committed); `msg_size()` is the sum of the body lengths of both maps; consume start marks
//! exist only for cached offsets.
//!
//! [`put_messages`]: ProcessQueue::put_messages
//! [`flow_control`]: ProcessQueue::flow_control
//! [`remove_messages`]: ProcessQueue::remove_messages
//! [`take_messages`]: ProcessQueue::take_messages
//! [`commit`]: ProcessQueue::commit
//! [`rollback`]: ProcessQueue::rollback
//! [`make_message_to_consume_again`]: ProcessQueue::make_message_to_consume_again

use std::collections::BTreeMap;
use std::time::Duration;

use crate::clock::Instant;
use crate::store::message::{StoredMessage, property_key};

/// Java's `pullThresholdForQueue` default: at most this many cached messages per queue before
/// the next pull is delayed.
pub const PULL_THRESHOLD_FOR_QUEUE: u64 = 1000;

/// Java's `pullThresholdSizeForQueue` default, in MiB of cached message bodies per queue.
pub const PULL_THRESHOLD_SIZE_FOR_QUEUE_MIB: u64 = 100;

/// Java's `consumeConcurrentlyMaxSpan` default: the largest distance between the first and
/// last cached offsets a concurrent consumer pulls past.
pub const CONSUME_CONCURRENTLY_MAX_SPAN: i64 = 2000;

/// Java's `PULL_MAX_IDLE_TIME` (`rocketmq.client.pull.pullMaxIdleTime`): a queue not pulled
/// for longer is taken for a stalled pull loop and re-created by the rebalance.
pub const PULL_MAX_IDLE_TIME: Duration = Duration::from_secs(120);

/// Java's `REBALANCE_LOCK_MAX_LIVE_TIME` (`rocketmq.client.rebalance.lockMaxLiveTime`): how long
/// the client trusts a broker lock after it was last taken or renewed. Shorter than the
/// broker's own 60 s expiry, so the client stops before another client may start.
pub const REBALANCE_LOCK_MAX_LIVE_TIME: Duration = Duration::from_secs(30);

/// Java's `REBALANCE_LOCK_INTERVAL` (`rocketmq.client.rebalance.lockInterval`): how often an
/// orderly CLUSTERING consumer renews its broker locks (`lockAll`).
pub const REBALANCE_LOCK_INTERVAL: Duration = Duration::from_secs(20);

/// Java's `consumeTimeout` default (15 minutes): a concurrently consumed message whose
/// consumption started longer ago is sent back by [`ProcessQueue::clean_expired`]'s caller.
pub const CONSUME_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// At most this many expired messages are reported per [`ProcessQueue::clean_expired`] pass
/// (Java's loop bound of 16 in `cleanExpiredMsg`).
pub const CLEAN_EXPIRED_BATCH_COUNT_MAX: usize = 16;

/// The delay level Java sends an expired message back with (`sendMessageBack(msg, 3)`: 10 s).
pub const EXPIRED_MESSAGE_DELAY_LEVEL: i32 = 3;

/// The per-queue limits the pull loop applies (Java's push-consumer configuration fields of
/// the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowControlThresholds {
    /// Cached message count above which pulls are delayed (`pullThresholdForQueue`).
    pub pull_threshold_for_queue: u64,
    /// Cached body MiB above which pulls are delayed (`pullThresholdSizeForQueue`, in MiB as
    /// in Java).
    pub pull_threshold_size_for_queue: u64,
    /// Offset span above which a concurrent consumer's pulls are delayed
    /// (`consumeConcurrentlyMaxSpan`).
    pub consume_concurrently_max_span: i64,
}

impl Default for FlowControlThresholds {
    fn default() -> Self {
        Self {
            pull_threshold_for_queue: PULL_THRESHOLD_FOR_QUEUE,
            pull_threshold_size_for_queue: PULL_THRESHOLD_SIZE_FOR_QUEUE_MIB,
            consume_concurrently_max_span: CONSUME_CONCURRENTLY_MAX_SPAN,
        }
    }
}

/// Why the pull loop must delay the next pull of a queue (Java re-queues the pull request
/// after 50 ms, `PULL_TIME_DELAY_MILLS_WHEN_FLOW_CONTROL`). Checked in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowControl {
    /// More messages cached than `pull_threshold_for_queue`.
    CachedMessageCount {
        /// The cached message count.
        count: u64,
    },
    /// More body MiB cached than `pull_threshold_size_for_queue`.
    CachedMessageSize {
        /// The cached body size in whole MiB (rounded down, as Java).
        size_mib: u64,
    },
    /// A concurrent consumer's cached offsets span more than `consume_concurrently_max_span`.
    MaxSpan {
        /// Last cached offset minus first.
        span: i64,
    },
}

/// Pulled but not yet consumed messages of one message queue, with the bookkeeping of both
/// consume modes (see the module docs).
#[derive(Debug, Clone)]
pub struct ProcessQueue {
    /// Cached messages by queue offset (Java's `msgTreeMap`).
    msg_tree: BTreeMap<i64, StoredMessage>,
    /// Orderly mode: messages taken for consumption and not yet committed
    /// (Java's `consumingMsgOrderlyTreeMap`).
    consuming_msgs: BTreeMap<i64, StoredMessage>,
    /// Concurrent mode: when consumption of a cached message started (Java's
    /// `CONSUME_START_TIME` property, kept here on the monotonic clock).
    consume_started: BTreeMap<i64, Instant>,
    /// Sum of the body lengths in `msg_tree` and `consuming_msgs`.
    msg_size: u64,
    /// The offset of the last message newly put (Java's `queueOffsetMax`).
    queue_offset_max: i64,
    /// How far the broker's queue is ahead of the last message pulled (Java's `msgAccCnt`).
    msg_acc_count: i64,
    dropped: bool,
    locked: bool,
    /// Orderly mode: a consume task is running for this queue.
    consuming: bool,
    last_pull_timestamp: Instant,
    last_consume_timestamp: Instant,
    last_lock_timestamp: Instant,
    try_unlock_count: u64,
}

fn body_size(msg: &StoredMessage) -> u64 {
    msg.body.as_ref().map_or(0, |body| body.len() as u64)
}

impl ProcessQueue {
    /// An empty queue created at `now` (Java stamps the pull, consume and lock times with the
    /// creation time).
    pub fn new(now: Instant) -> Self {
        Self {
            msg_tree: BTreeMap::new(),
            consuming_msgs: BTreeMap::new(),
            consume_started: BTreeMap::new(),
            msg_size: 0,
            queue_offset_max: 0,
            msg_acc_count: 0,
            dropped: false,
            locked: false,
            consuming: false,
            last_pull_timestamp: now,
            last_consume_timestamp: now,
            last_lock_timestamp: now,
            try_unlock_count: 0,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Pull side

    /// Caches pulled messages (Java's `putMessage`) and says whether the orderly consume service
    /// must start a consume task for this queue: true when the cache is non-empty and no task
    /// was running (the task then runs until [`take_messages`](Self::take_messages) finds
    /// nothing). The concurrent service ignores the answer.
    ///
    /// A message at an offset already cached replaces the cached one and is not counted again.
    /// `queue_offset_max` becomes the offset of the last newly cached message (for a pull
    /// result, whose offsets ascend, the largest). `msg_acc_count` becomes the last message's
    /// `MAX_OFFSET` property minus its offset, when that is positive.
    pub fn put_messages(&mut self, msgs: &[StoredMessage]) -> bool {
        for msg in msgs {
            let offset = msg.queue_offset;
            self.msg_size += body_size(msg);
            match self.msg_tree.insert(offset, msg.clone()) {
                Some(old) => self.msg_size = self.msg_size.saturating_sub(body_size(&old)),
                None => self.queue_offset_max = offset,
            }
            // Java replaces the message object, and with it its CONSUME_START_TIME.
            self.consume_started.remove(&offset);
        }
        let dispatch_to_consume = !self.msg_tree.is_empty() && !self.consuming;
        if dispatch_to_consume {
            self.consuming = true;
        }
        if let Some(last) = msgs.last()
            && let Some(max_offset) = last
                .property(property_key::MAX_OFFSET)
                .and_then(|value| value.parse::<i64>().ok())
        {
            let behind = max_offset.saturating_sub(last.queue_offset);
            if behind > 0 {
                self.msg_acc_count = behind;
            }
        }
        dispatch_to_consume
    }

    /// Messages cached, including the orderly ones taken and not yet committed (Java's
    /// `msgCount`).
    pub fn msg_count(&self) -> u64 {
        (self.msg_tree.len() + self.consuming_msgs.len()) as u64
    }

    /// Body bytes cached, including the orderly ones taken and not yet committed (Java's
    /// `msgSize`).
    pub fn msg_size(&self) -> u64 {
        self.msg_size
    }

    /// [`msg_size`](Self::msg_size) in whole MiB, as the pull loop compares it.
    pub fn msg_size_mib(&self) -> u64 {
        self.msg_size / (1024 * 1024)
    }

    /// Last cached offset minus first, 0 when nothing is cached (Java's `getMaxSpan`; the
    /// orderly consuming map does not count).
    pub fn max_span(&self) -> i64 {
        self.cached_offset_range()
            .map_or(0, |(first, last)| last.saturating_sub(first))
    }

    /// The first and last cached offsets (for flow-control logs and consumer running info).
    pub fn cached_offset_range(&self) -> Option<(i64, i64)> {
        let first = self.msg_tree.keys().next()?;
        let last = self.msg_tree.keys().next_back()?;
        Some((*first, *last))
    }

    /// Whether any message is cached outside the orderly consuming map (Java's
    /// `hasTempMessage`).
    pub fn has_temp_message(&self) -> bool {
        !self.msg_tree.is_empty()
    }

    /// The offset of the last newly cached message (Java's `queueOffsetMax`; 0 before any).
    pub fn queue_offset_max(&self) -> i64 {
        self.queue_offset_max
    }

    /// Messages the broker held beyond the last pull (Java's `msgAccCnt`).
    pub fn msg_acc_count(&self) -> i64 {
        self.msg_acc_count
    }

    /// Whether the next pull must wait, and why (C51): count first, then size, then — for a
    /// concurrent consumer only — the offset span.
    pub fn flow_control(
        &self,
        thresholds: &FlowControlThresholds,
        consume_orderly: bool,
    ) -> Option<FlowControl> {
        let count = self.msg_count();
        if count > thresholds.pull_threshold_for_queue {
            return Some(FlowControl::CachedMessageCount { count });
        }
        let size_mib = self.msg_size_mib();
        if size_mib > thresholds.pull_threshold_size_for_queue {
            return Some(FlowControl::CachedMessageSize { size_mib });
        }
        if !consume_orderly {
            let span = self.max_span();
            if span > thresholds.consume_concurrently_max_span {
                return Some(FlowControl::MaxSpan { span });
            }
        }
        None
    }

    /// When the pull loop last took this queue's pull request.
    pub fn last_pull_timestamp(&self) -> Instant {
        self.last_pull_timestamp
    }

    /// Records that the pull loop took this queue's pull request at `now`.
    pub fn set_last_pull_timestamp(&mut self, now: Instant) {
        self.last_pull_timestamp = now;
    }

    /// Whether the last pull is more than [`PULL_MAX_IDLE_TIME`] before `now`: the rebalance
    /// then drops and re-creates the queue (the "\[BUG\] ... pull is pause" self-heal).
    pub fn is_pull_expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_pull_timestamp) > PULL_MAX_IDLE_TIME
    }

    // -----------------------------------------------------------------------------------------
    // Concurrent consumption

    /// Removes consumed (or sent back) messages and returns the offset to commit (Java's
    /// `removeMessage`): `None` when the cache was already empty (Java's -1: commit nothing);
    /// otherwise the smallest offset still cached, or `queue_offset_max + 1` when the cache is
    /// now empty. Offsets not cached are ignored. The commit therefore never passes a message
    /// still in flight, whatever order consumption finished in.
    pub fn remove_messages(&mut self, offsets: &[i64], now: Instant) -> Option<i64> {
        self.last_consume_timestamp = now;
        if self.msg_tree.is_empty() {
            return None;
        }
        for offset in offsets {
            if let Some(old) = self.msg_tree.remove(offset) {
                self.msg_size = self.msg_size.saturating_sub(body_size(&old));
                self.consume_started.remove(offset);
            }
        }
        Some(
            self.msg_tree
                .keys()
                .next()
                .copied()
                .unwrap_or_else(|| self.queue_offset_max.saturating_add(1)),
        )
    }

    /// Records that consumption of the cached messages at `offsets` started at `now` (Java puts
    /// the `CONSUME_START_TIME` property on them at the start of each consume request). Offsets
    /// not cached are ignored.
    pub fn mark_consume_started(&mut self, offsets: &[i64], now: Instant) {
        for offset in offsets {
            if self.msg_tree.contains_key(offset) {
                self.consume_started.insert(*offset, now);
            }
        }
    }

    /// The messages at the front of the cache whose consumption started more than
    /// `consume_timeout` before `now`, in offset order, at most
    /// [`CLEAN_EXPIRED_BATCH_COUNT_MAX`] (Java's `cleanExpiredMsg`, every `consumeTimeout`
    /// minutes, for concurrent consumers only). Only reports; nothing changes.
    ///
    /// The caller sends each back in order with [`EXPIRED_MESSAGE_DELAY_LEVEL`] and then calls
    /// [`remove_if_first`](Self::remove_if_first) for it; it stops at the first failed send
    /// (Java retries that same head message for the rest of its 16 turns). The offset
    /// [`remove_if_first`](Self::remove_if_first) frees is committed by the next
    /// [`remove_messages`](Self::remove_messages), as in Java.
    pub fn clean_expired(&self, now: Instant, consume_timeout: Duration) -> Vec<StoredMessage> {
        self.msg_tree
            .iter()
            .take(CLEAN_EXPIRED_BATCH_COUNT_MAX)
            .map_while(|(offset, msg)| {
                let started = self.consume_started.get(offset)?;
                (now.saturating_duration_since(*started) > consume_timeout).then(|| msg.clone())
            })
            .collect()
    }

    /// Removes the cached message at `offset` if it is still the first one (what Java's
    /// `cleanExpiredMsg` does after sending an expired message back). Returns whether it did.
    pub fn remove_if_first(&mut self, offset: i64, now: Instant) -> bool {
        if self.msg_tree.keys().next() != Some(&offset) {
            return false;
        }
        self.remove_messages(&[offset], now);
        true
    }

    // -----------------------------------------------------------------------------------------
    // Orderly consumption

    /// Moves up to `batch_count` messages from the front of the cache into the consuming map
    /// and returns them in offset order (Java's `takeMessages`). When nothing is left, the
    /// consume task for this queue ends: the next [`put_messages`](Self::put_messages) asks for
    /// a new one.
    pub fn take_messages(&mut self, batch_count: usize, now: Instant) -> Vec<StoredMessage> {
        self.last_consume_timestamp = now;
        let mut taken = Vec::with_capacity(batch_count.min(self.msg_tree.len()));
        while taken.len() < batch_count {
            let Some((offset, msg)) = self.msg_tree.pop_first() else {
                break;
            };
            self.consume_started.remove(&offset);
            taken.push(msg.clone());
            if let Some(old) = self.consuming_msgs.insert(offset, msg) {
                // The same offset was pulled again while being consumed: keep one copy.
                self.msg_size = self.msg_size.saturating_sub(body_size(&old));
            }
        }
        if taken.is_empty() {
            self.consuming = false;
        }
        taken
    }

    /// Commits the orderly consuming map (Java's `commit`): forgets its messages and returns the
    /// offset to commit, its last offset + 1, or `None` when nothing was taken (where Java's
    /// `lastKey()` would throw).
    pub fn commit(&mut self) -> Option<i64> {
        let last = *self.consuming_msgs.keys().next_back()?;
        let consumed = std::mem::take(&mut self.consuming_msgs);
        self.msg_size = self
            .msg_size
            .saturating_sub(consumed.values().map(body_size).sum::<u64>());
        Some(last.saturating_add(1))
    }

    /// Puts every message of the orderly consuming map back into the cache, to be taken again
    /// (Java's `rollback`).
    pub fn rollback(&mut self) {
        let consuming = std::mem::take(&mut self.consuming_msgs);
        for (offset, msg) in consuming {
            self.put_back(offset, msg);
        }
    }

    /// Puts the given taken messages back into the cache, to be taken again (Java's
    /// `makeMessageToConsumeAgain`, after a `SUSPEND_CURRENT_QUEUE_A_MOMENT`). The messages
    /// replace the taken copies, so a caller's changes (the reconsume count Java's
    /// `checkReconsumeTimes` raises) are kept. A message that is not in the consuming map is
    /// ignored (Java would cache it without counting it).
    pub fn make_message_to_consume_again(&mut self, msgs: Vec<StoredMessage>) {
        for msg in msgs {
            let offset = msg.queue_offset;
            if let Some(old) = self.consuming_msgs.remove(&offset) {
                self.msg_size = self.msg_size.saturating_sub(body_size(&old));
                self.msg_size += body_size(&msg);
                self.put_back(offset, msg);
            }
        }
    }

    /// Moves a message already counted in `msg_size` back into the cache. If the offset is
    /// cached again meanwhile (pulled twice), the returning copy wins, as with Java's `put`,
    /// and the replaced one stops counting (Java's counters would drift here).
    fn put_back(&mut self, offset: i64, msg: StoredMessage) {
        if let Some(old) = self.msg_tree.insert(offset, msg) {
            self.msg_size = self.msg_size.saturating_sub(body_size(&old));
        }
        self.consume_started.remove(&offset);
    }

    /// The first and last offsets of the orderly consuming map.
    pub fn consuming_offset_range(&self) -> Option<(i64, i64)> {
        let first = self.consuming_msgs.keys().next()?;
        let last = self.consuming_msgs.keys().next_back()?;
        Some((*first, *last))
    }

    /// How many messages are taken and not yet committed.
    pub fn consuming_count(&self) -> usize {
        self.consuming_msgs.len()
    }

    /// Whether an orderly consume task runs for this queue (Java's `consuming`).
    pub fn is_consuming(&self) -> bool {
        self.consuming
    }

    /// Whether this client holds the broker lock of the queue (orderly CLUSTERING).
    pub fn locked(&self) -> bool {
        self.locked
    }

    /// Records whether the broker granted the lock (`lock` / `lockAll` answers).
    pub fn set_locked(&mut self, locked: bool) {
        self.locked = locked;
    }

    /// When the broker lock was last granted.
    pub fn last_lock_timestamp(&self) -> Instant {
        self.last_lock_timestamp
    }

    /// Records that the broker granted the lock at `now`.
    pub fn set_last_lock_timestamp(&mut self, now: Instant) {
        self.last_lock_timestamp = now;
    }

    /// Whether the lock was granted more than [`REBALANCE_LOCK_MAX_LIVE_TIME`] before `now`:
    /// an orderly consumer then stops consuming this queue until the lock is renewed.
    pub fn is_lock_expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_lock_timestamp) > REBALANCE_LOCK_MAX_LIVE_TIME
    }

    /// How many times removing this queue failed to get its consume lock (Java's
    /// `tryUnlockTimes`, reported in consumer running info).
    pub fn try_unlock_count(&self) -> u64 {
        self.try_unlock_count
    }

    /// Counts one more failed try (see [`try_unlock_count`](Self::try_unlock_count)).
    pub fn inc_try_unlock_count(&mut self) {
        self.try_unlock_count += 1;
    }

    // -----------------------------------------------------------------------------------------
    // Life cycle

    /// Whether the queue was dropped (no longer owned, or its offset was illegal): pulls and
    /// consume tasks that find it dropped stop, and nothing is committed for it.
    pub fn dropped(&self) -> bool {
        self.dropped
    }

    /// Marks the queue dropped (or not).
    pub fn set_dropped(&mut self, dropped: bool) {
        self.dropped = dropped;
    }

    /// When messages were last removed or taken for consumption.
    pub fn last_consume_timestamp(&self) -> Instant {
        self.last_consume_timestamp
    }

    /// Forgets every cached and consuming message (Java's `clear`).
    pub fn clear(&mut self) {
        self.msg_tree.clear();
        self.consuming_msgs.clear();
        self.consume_started.clear();
        self.msg_size = 0;
        self.queue_offset_max = 0;
    }

    /// Asserts the invariants of the module docs (O(n): for tests and the simulator).
    pub fn check_invariants(&self) {
        let bodies: u64 = self
            .msg_tree
            .values()
            .chain(self.consuming_msgs.values())
            .map(body_size)
            .sum();
        assert_eq!(
            self.msg_size, bodies,
            "msg_size is not the sum of cached bodies"
        );
        for offset in self.consume_started.keys() {
            assert!(
                self.msg_tree.contains_key(offset),
                "consume start mark for offset {offset}, which is not cached"
            );
        }
        for (offset, msg) in self.msg_tree.iter().chain(&self.consuming_msgs) {
            assert_eq!(
                *offset, msg.queue_offset,
                "message cached under another offset"
            );
        }
    }
}

#[cfg(test)]
mod tests;
