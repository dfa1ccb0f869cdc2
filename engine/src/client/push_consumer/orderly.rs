//! Orderly consumption (Java 4.9's `ConsumeMessageOrderlyService`): each queue is consumed by
//! one task at a time, batch after batch in queue order, and — in a clustering group — only
//! while this client holds the queue's lock on its broker.
//!
//! Where it sits: the pull loop caches pulled messages in the queue's process queue and,
//! when no task runs for the queue, starts `PushInner::consume_orderly`. The task takes
//! batches from the front of the cache
//! ([`take_messages`](crate::client::process_queue::ProcessQueue::take_messages)), runs the
//! listener under the process queue's consume lock, and commits (the offset moves past the
//! batch) or, on [`ConsumeOrderlyStatus::SuspendCurrentQueueAMoment`], puts the batch back
//! and pauses the queue. It ends when the cache is empty, the queue is dropped, the lock is
//! lost or expired, or after [`MAX_TIME_CONSUME_CONTINUOUSLY`] (then it resubmits itself so
//! other queues get their turn). `PushInner::lock_service` renews the broker locks every
//! [`REBALANCE_LOCK_INTERVAL`].
//!
//! Invariants: a queue's batches run one at a time and in offset order (the per-queue
//! `message_queue_locks` mutex plus the single-task rule of `put_messages`);
//! in a clustering group no batch starts without a live broker lock, and a queue whose lock
//! the broker refused is dropped with its offset, cache and pull position (all stale:
//! another consumer has the queue) and no batch finishing afterwards records an offset; the offset recorded is always the end of a consumed batch, replacing the
//! previous one (`increase_only = false`).
//!
//! Deviations from Java: a batch that reached the max reconsume times goes to the
//! dead-letter queue through CONSUMER_SEND_MSG_BACK with a negative delay level (the
//! broker's "to DLQ now" rule), and only when that fails through the internal producer,
//! which Java uses at once — the broker stores the same DLQ message; the listener's `autoCommit = false` mode (deprecated
//! in Java) is not offered.

use std::sync::Arc;
use std::time::Duration;

use super::{
    ConsumeOrderlyContext, ConsumeOrderlyStatus, OrderlyListener, PushInner, reset_retry_topic,
};
use crate::client::process_queue::REBALANCE_LOCK_INTERVAL;
use crate::client::rebalance::ProcessQueueHandle;
use crate::clock::ClockExt;
use crate::protocol::heartbeat::{MessageModel, MessageQueue};
use crate::store::message::StoredMessage;

/// How long one orderly task consumes before yielding to other queues
/// (`rocketmq.client.maxTimeConsumeContinuously`, 60 s).
pub const MAX_TIME_CONSUME_CONTINUOUSLY: Duration = Duration::from_secs(60);
/// Pause before a task resubmits itself, or retries after taking a fresh lock (10 ms).
const RESUBMIT_DELAY: Duration = Duration::from_millis(10);
/// Pause before a task without a broker lock tries to take one (100 ms).
const NOT_LOCKED_DELAY: Duration = Duration::from_millis(100);
/// Pause before the next try when the broker refused the lock (3 s).
const LOCK_REFUSED_DELAY: Duration = Duration::from_secs(3);
/// Delay before the first lock renewal (Java: 1 s).
const LOCK_SERVICE_FIRST_DELAY: Duration = Duration::from_secs(1);
/// The delay level that tells the broker to move a sent-back message to the dead-letter
/// queue at once.
const DELAY_LEVEL_TO_DLQ: i32 = -1;

impl PushInner {
    /// The per-queue task lock (`MessageQueueLock.fetchLockObject`).
    fn message_queue_lock(&self, queue: &MessageQueue) -> Arc<tokio::sync::Mutex<()>> {
        super::lock(&self.message_queue_locks)
            .entry(queue.clone())
            .or_default()
            .clone()
    }

    /// Whether a clustering consumer may consume the queue now: it holds an unexpired lock.
    /// Broadcasting consumers need no lock.
    fn holds_lock(&self, handle: &ProcessQueueHandle) -> bool {
        if self.config.message_model == MessageModel::Broadcasting {
            return true;
        }
        let state = handle.state();
        state.locked() && !state.is_lock_expired(self.env.clock.instant())
    }

    /// One run of a queue's orderly consume task (`ConsumeRequest.run`).
    pub(super) async fn consume_orderly(
        self: Arc<Self>,
        listener: OrderlyListener,
        queue: MessageQueue,
        handle: Arc<ProcessQueueHandle>,
    ) {
        if handle.state().dropped() {
            return;
        }
        let queue_lock = self.message_queue_lock(&queue);
        let _running = queue_lock.lock().await;
        if !self.holds_lock(&handle) {
            if !handle.state().dropped() && !self.stopped() {
                self.try_lock_later_and_reconsume(listener, queue, handle, NOT_LOCKED_DELAY);
            }
            return;
        }
        let begin = self.env.clock.instant();
        loop {
            if self.stopped() || handle.state().dropped() {
                return;
            }
            if !self.holds_lock(&handle) {
                self.try_lock_later_and_reconsume(listener, queue, handle, RESUBMIT_DELAY);
                return;
            }
            let now = self.env.clock.instant();
            if now.saturating_duration_since(begin) > MAX_TIME_CONSUME_CONTINUOUSLY {
                self.submit_orderly_later(listener, queue, handle, RESUBMIT_DELAY);
                return;
            }
            let mut messages = handle
                .state()
                .take_messages(self.config.consume_message_batch_max_size, now);
            if messages.is_empty() {
                return;
            }
            reset_retry_topic(&mut messages, &self.config.group);
            let mut context = ConsumeOrderlyContext {
                message_queue: queue.clone(),
                suspend_current_queue_time: None,
            };
            let status = {
                let _consuming = handle.consume_lock().lock().await;
                if handle.state().dropped() {
                    tracing::warn!(
                        ?queue,
                        "the message queue not be able to consume, because it's dropped"
                    );
                    return;
                }
                // A panicking listener is Java's thrown exception: suspend and retry.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    listener(&messages, &mut context)
                }))
                .unwrap_or(ConsumeOrderlyStatus::SuspendCurrentQueueAMoment)
            };
            if !self
                .process_orderly_result(&listener, &queue, &handle, messages, status, &context)
                .await
            {
                return;
            }
        }
    }

    /// `processConsumeResult` with auto-commit: records the new offset, or puts the batch
    /// back and schedules the queue again. Returns whether the task goes on.
    async fn process_orderly_result(
        self: &Arc<Self>,
        listener: &OrderlyListener,
        queue: &MessageQueue,
        handle: &Arc<ProcessQueueHandle>,
        mut messages: Vec<StoredMessage>,
        status: ConsumeOrderlyStatus,
        context: &ConsumeOrderlyContext,
    ) -> bool {
        let commit_offset = match status {
            ConsumeOrderlyStatus::Success => handle.state().commit(),
            ConsumeOrderlyStatus::SuspendCurrentQueueAMoment => {
                if self.check_reconsume_times(queue, &mut messages).await {
                    handle.state().make_message_to_consume_again(messages);
                    let suspend = context
                        .suspend_current_queue_time
                        .unwrap_or(self.config.suspend_current_queue_time);
                    self.submit_orderly_later(
                        listener.clone(),
                        queue.clone(),
                        handle.clone(),
                        suspend,
                    );
                    return false;
                }
                handle.state().commit()
            }
        };
        // Only while the queue is still ours: a batch that finished after the broker gave
        // the queue to another consumer must not drag the group's offset back to here.
        if let Some(offset) = commit_offset
            && !handle.state().dropped()
            && self.holds_lock(handle)
        {
            self.offset_store.update_offset(queue, offset, false);
        }
        true
    }

    /// `checkReconsumeTimes`: a message that reached the max reconsume times goes to the
    /// dead-letter queue; every other one (and one that could not be sent) counts one more
    /// reconsume. Returns whether the queue must suspend (something is to be consumed again).
    async fn check_reconsume_times(
        &self,
        queue: &MessageQueue,
        messages: &mut [StoredMessage],
    ) -> bool {
        let max = self.max_reconsume_times();
        let mut suspend = false;
        for message in messages {
            if message.reconsume_times >= max {
                match self.send_back(queue, message, DELAY_LEVEL_TO_DLQ).await {
                    Ok(()) => continue,
                    Err(error) => {
                        tracing::warn!(?queue, offset = message.queue_offset, %error,
                            "sending a message over its max reconsume times to the DLQ failed");
                    }
                }
            }
            suspend = true;
            message.reconsume_times += 1;
        }
        suspend
    }

    /// `submitConsumeRequestLater`: the queue's task runs again after `delay`.
    fn submit_orderly_later(
        self: &Arc<Self>,
        listener: OrderlyListener,
        queue: MessageQueue,
        handle: Arc<ProcessQueueHandle>,
        delay: Duration,
    ) {
        let inner = self.clone();
        tokio::spawn(async move {
            inner.env.clock.sleep(delay).await;
            inner.consume_orderly_boxed(listener, queue, handle).await;
        });
    }

    /// `tryLockLaterAndReconsume`: after `delay`, ask the broker for the queue's lock and
    /// run the task again soon if granted, later if not.
    fn try_lock_later_and_reconsume(
        self: &Arc<Self>,
        listener: OrderlyListener,
        queue: MessageQueue,
        handle: Arc<ProcessQueueHandle>,
        delay: Duration,
    ) {
        let inner = self.clone();
        tokio::spawn(async move {
            inner.env.clock.sleep(delay).await;
            if inner.stopped() || handle.state().dropped() {
                return;
            }
            let now = inner.env.clock.instant();
            let locked = inner.rebalance.lock().await.lock(&queue, now).await;
            let next = if locked {
                RESUBMIT_DELAY
            } else {
                LOCK_REFUSED_DELAY
            };
            inner.submit_orderly_later(listener, queue, handle, next);
        });
    }

    /// [`consume_orderly`](Self::consume_orderly) boxed, so that a task can resubmit itself.
    fn consume_orderly_boxed(
        self: Arc<Self>,
        listener: OrderlyListener,
        queue: MessageQueue,
        handle: Arc<ProcessQueueHandle>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(self.consume_orderly(listener, queue, handle))
    }

    /// `lockMQPeriodically`: renews the broker locks of every owned queue, first after
    /// [`LOCK_SERVICE_FIRST_DELAY`], then every [`REBALANCE_LOCK_INTERVAL`].
    pub(super) async fn lock_service(self: Arc<Self>) {
        let mut delay = LOCK_SERVICE_FIRST_DELAY;
        loop {
            self.env.clock.sleep(delay).await;
            if self.stopped() {
                return;
            }
            let now = self.env.clock.instant();
            let outcome = self.rebalance.lock().await.lock_all(now).await;
            if !outcome.refused.is_empty() {
                tracing::info!(group = %self.config.group, refused = ?outcome.refused,
                    "broker refused queue locks; those queues pause");
            }
            // Another consumer holds these now (a broker that restarted lost its locks, and
            // the group's views of its members differed for a moment). This consumer's
            // offsets, cached messages and pull positions for them are stale: committing
            // the offsets, or consuming the cache once the lock comes back, would move the
            // group's offset backwards. The queues are dropped and forgotten; when the
            // rebalance gives one back, it starts from the group's committed offset. Java
            // keeps and commits them.
            if !outcome.refused.is_empty() {
                let mut rebalance = self.rebalance.lock().await;
                for queue in &outcome.refused {
                    self.offset_store.remove_offset(queue);
                    rebalance.remove_process_queue(queue).await;
                }
            }
            delay = REBALANCE_LOCK_INTERVAL;
        }
    }

    /// Releases a removed queue's broker lock after [`UNLOCK_DELAY`](crate::client::rebalance::UNLOCK_DELAY)
    /// (the rebalance asks for it when the queue still cached messages).
    pub(super) async fn unlock_later(self: Arc<Self>, queue: MessageQueue) {
        self.env
            .clock
            .sleep(crate::client::rebalance::UNLOCK_DELAY)
            .await;
        self.rebalance.lock().await.unlock(&queue, true).await;
    }
}
