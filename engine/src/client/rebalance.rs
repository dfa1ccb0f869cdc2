//! The push consumer's rebalance (Java 4.9's `RebalanceImpl` with `RebalancePushImpl`,
//! spec `clients.md` C40-C48): which queues of each subscribed topic this consumer owns, and
//! the process queue and first pull request of each.
//!
//! Where it sits: the client instance's rebalance service (every 20 s, or at once when a
//! broker sends NOTIFY_CONSUMER_IDS_CHANGED) asks each consumer to rebalance every subscribed
//! topic. For a topic, [`Rebalance::rebalance_by_topic`] takes the topic's readable queues
//! (kept current by route refreshes through
//! [`update_topic_subscribe_info`](Rebalance::update_topic_subscribe_info)) and, for
//! CLUSTERING, the group's client ids (the caller asks a broker: `find_consumer_id_list`),
//! lets the group's [`AllocateMessageQueueStrategy`] pick this client's share (all queues for
//! BROADCASTING), and reconciles the process-queue table with it
//! ([`Rebalance::update_process_queue_table`]): queues no longer owned, and queues whose pull
//! loop stalled, are dropped and their offsets committed; each new queue gets a process queue
//! and a [`PullRequest`] starting at [`Rebalance::compute_pull_from_where`]. Orderly consumers
//! must hold a queue's broker lock before they pull it ([`Rebalance::lock`],
//! [`Rebalance::lock_all`]).
//!
//! Nothing here sleeps, spawns or reads a clock: `now` comes in as an argument, and what the
//! caller must do next comes back as a value — pull requests to dispatch, queues to unlock
//! after [`UNLOCK_DELAY`], the [`MessageQueueChanged`] notice (Java's `messageQueueChanged`:
//! bump the subscription version, re-spread the flow thresholds, heartbeat). The broker side
//! is reached through the offset store and the small [`RebalanceBroker`] trait, so the rules
//! are tested with fakes.
//!
//! Invariants: the process-queue table only holds queues of subscribed topics that were
//! allocated to this client when added; a queue removed from the table is marked dropped
//! first, so the pull loop and consume service holding its [`ProcessQueueHandle`] stop; a
//! queue is in the table at most once, so at most one [`PullRequest`] circulates per queue.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::allocate::{AllocateError, AllocateMessageQueueStrategy};
use super::api::ClientError;
use super::offset_store::{OffsetStore, ReadOffset, ReadOffsetType};
use super::process_queue::ProcessQueue;
use crate::broker::topic_config::system_topic::RETRY_GROUP_PREFIX;
use crate::clock::{ClockExt, Instant, SharedClock};
use crate::protocol::heartbeat::{
    ConsumeFromWhere, LockBatchRequestBody, MessageModel, MessageQueue, SubscriptionData,
};

/// Timeout of LOCK_BATCH_MQ and UNLOCK_BATCH_MQ sent by the rebalance (Java: `1000`), for
/// implementations of [`RebalanceBroker`].
pub const BATCH_LOCK_TIMEOUT: Duration = Duration::from_secs(1);

/// How long after removing an orderly queue that still caches messages its broker lock is
/// released (`rocketmq.client.unlockDelayTimeMills`, 20 s), so that no other consumer starts
/// on the queue while this one may still be consuming what it cached.
pub const UNLOCK_DELAY: Duration = Duration::from_secs(20);

/// The broker calls a rebalance makes besides the offset store's.
#[async_trait::async_trait]
pub trait RebalanceBroker: Send + Sync + std::fmt::Debug + 'static {
    /// The queue's next offset to be written (admin `GET_MAX_OFFSET`).
    async fn max_offset(&self, queue: &MessageQueue) -> Result<i64, ClientError>;

    /// The offset of the queue's first message stored at or after `timestamp_ms`
    /// (admin `SEARCH_OFFSET_BY_TIMESTAMP`).
    async fn search_offset(
        &self,
        queue: &MessageQueue,
        timestamp_ms: i64,
    ) -> Result<i64, ClientError>;

    /// LOCK_BATCH_MQ to the master of `broker_name`: the queues of `body` now locked by
    /// the client.
    async fn lock_batch(
        &self,
        broker_name: &str,
        body: &LockBatchRequestBody,
    ) -> Result<BTreeSet<MessageQueue>, ClientError>;

    /// UNLOCK_BATCH_MQ to the master of `broker_name`, oneway or awaiting the answer.
    async fn unlock_batch(
        &self,
        broker_name: &str,
        body: &LockBatchRequestBody,
        oneway: bool,
    ) -> Result<(), ClientError>;
}

/// A consumer's rebalance service: `rebalance` runs at once, then every `interval` and
/// whenever `wake` is notified (NOTIFY_CONSUMER_IDS_CHANGED), until `stopped` says so.
pub async fn run_rebalance_service<F, Fut>(
    clock: &SharedClock,
    interval: Duration,
    wake: &tokio::sync::Notify,
    stopped: impl Fn() -> bool,
    mut rebalance: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        if stopped() {
            return;
        }
        rebalance().await;
        let sleep = clock.sleep(interval);
        tokio::select! {
            biased;
            () = wake.notified() => {}
            () = sleep => {}
        }
    }
}

/// A process queue as the rebalance, the pull loop and the consume service share it.
#[derive(Debug)]
pub struct ProcessQueueHandle {
    state: Mutex<ProcessQueue>,
    /// Held by the orderly consume service while it consumes a batch (Java's `lockConsume`),
    /// so that the rebalance never releases the broker lock in the middle of a batch.
    consume_lock: tokio::sync::Mutex<()>,
}

impl ProcessQueueHandle {
    /// An empty process queue created at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            state: Mutex::new(ProcessQueue::new(now)),
            consume_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The queue's state. Never hold the guard across an await.
    pub fn state(&self) -> MutexGuard<'_, ProcessQueue> {
        // Every method of ProcessQueue leaves it consistent before it can panic, so a
        // poisoned lock still guards a usable queue.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The orderly consume lock (see the field).
    pub fn consume_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.consume_lock
    }
}

/// A queue to start pulling (Java's `PullRequest`), handed to the pull loop.
#[derive(Debug, Clone)]
pub struct PullRequest {
    /// The consumer group.
    pub consumer_group: String,
    /// The queue to pull.
    pub message_queue: MessageQueue,
    /// Where pulled messages go; the pull request stops circulating once it is dropped.
    pub process_queue: Arc<ProcessQueueHandle>,
    /// The first offset to pull.
    pub next_offset: i64,
}

/// Why [`Rebalance::compute_pull_from_where`] found no start offset. The queue is skipped in
/// this rebalance and tried again in the next one.
#[derive(Debug, thiserror::Error)]
pub enum ComputePullFromWhereError {
    /// The broker could not be asked for the committed offset (Java's `-2`).
    #[error("query of the committed offset failed: {0}")]
    OffsetQueryFailed(#[source] ClientError),
    /// The broker reported a negative committed offset other than "none" (`-1`).
    #[error("the broker holds the invalid committed offset {0}")]
    InvalidCommittedOffset(i64),
    /// The queue's max offset could not be read (CONSUME_FROM_LAST_OFFSET, or a retry topic
    /// with CONSUME_FROM_TIMESTAMP).
    #[error("query of the max offset failed: {0}")]
    MaxOffsetFailed(#[source] ClientError),
    /// The offset of the consume timestamp could not be read (CONSUME_FROM_TIMESTAMP).
    #[error("search of the offset by timestamp failed: {0}")]
    SearchOffsetFailed(#[source] ClientError),
}

/// Why a queue allocated to this client was not added to the process-queue table. Both are
/// retried by the next rebalance.
#[derive(Debug)]
pub enum NotAddedReason {
    /// Orderly: the broker did not grant the queue's lock (another consumer still holds it,
    /// or the broker could not be reached).
    LockFailed,
    /// No start offset could be computed.
    NoStartOffset(ComputePullFromWhereError),
}

/// What [`Rebalance::update_process_queue_table`] did to one topic's queues.
#[derive(Debug, Default)]
pub struct ProcessQueueChanges {
    /// Queues no longer allocated: dropped, offset committed and forgotten, removed.
    pub removed: Vec<MessageQueue>,
    /// Queues still allocated whose pull loop stalled (no pull for
    /// [`PULL_MAX_IDLE_TIME`](super::process_queue::PULL_MAX_IDLE_TIME)): dropped and removed
    /// like `removed`; they are normally re-added at once and so also appear in
    /// `pull_requests`.
    pub pull_expired: Vec<MessageQueue>,
    /// Orderly queues that are dropped but stay in the table because a batch was being
    /// consumed; the next rebalance tries again.
    pub removal_deferred: Vec<MessageQueue>,
    /// Orderly queues removed while they still cached messages: the caller releases their
    /// broker locks (oneway UNLOCK_BATCH_MQ) after [`UNLOCK_DELAY`].
    pub unlock_later: Vec<MessageQueue>,
    /// New queues: their pull requests, for the pull loop (Java's `dispatchPullRequest`).
    pub pull_requests: Vec<PullRequest>,
    /// Allocated queues that could not be added this time.
    pub not_added: Vec<(MessageQueue, NotAddedReason)>,
}

impl ProcessQueueChanges {
    /// Whether the table changed (Java's `changed`): a queue was removed or added.
    pub fn changed(&self) -> bool {
        !self.removed.is_empty() || !self.pull_expired.is_empty() || !self.pull_requests.is_empty()
    }
}

/// The notice of a changed assignment (Java's `messageQueueChanged(topic, mqAll,
/// mqDivided)`): the consumer sets the subscription's version to the current wall time,
/// spreads the topic-level flow thresholds over its queues and sends a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageQueueChanged {
    /// The topic.
    pub topic: String,
    /// Every readable queue of the topic.
    pub mq_all: BTreeSet<MessageQueue>,
    /// The queues this client now owns.
    pub mq_divided: BTreeSet<MessageQueue>,
}

/// What [`Rebalance::rebalance_by_topic`] did.
#[derive(Debug, Default)]
pub struct RebalanceOutcome {
    /// The changes to the process-queue table.
    pub changes: ProcessQueueChanges,
    /// Set when the table changed.
    pub message_queue_changed: Option<MessageQueueChanged>,
}

/// Why [`Rebalance::rebalance_by_topic`] left a topic alone. The consumer keeps its queues of
/// the topic until the next rebalance.
#[derive(Debug, thiserror::Error)]
pub enum RebalanceError {
    /// No readable queue of the topic is known yet (Java: "the topic[..] not exist"): wait
    /// for a route refresh. Java does not log it for retry topics, which often have no route.
    #[error("topic {0} has no known queues")]
    TopicNotExist(String),
    /// The strategy refused its inputs.
    #[error("allocation failed: {0}")]
    Allocate(#[from] AllocateError),
}

/// What [`Rebalance::lock_all`] learned.
#[derive(Debug, Default)]
pub struct LockAllOutcome {
    /// Queues whose lock the brokers granted or renewed.
    pub locked: BTreeSet<MessageQueue>,
    /// Queues whose lock the brokers refused: the orderly consumer stops consuming them.
    pub refused: BTreeSet<MessageQueue>,
    /// Broker groups that could not be asked; their queues keep their lock state.
    pub failed: Vec<(String, ClientError)>,
}

/// A push consumer's settings the rebalance needs.
#[derive(Debug, Clone)]
pub struct RebalanceConfig {
    /// `consumerGroup`.
    pub group: String,
    /// This client's id (`clientIP@instanceName`).
    pub client_id: String,
    /// `messageModel`.
    pub message_model: MessageModel,
    /// `consumeFromWhere`.
    pub consume_from_where: ConsumeFromWhere,
    /// `consumeTimestamp`, already parsed to epoch milliseconds (Java parses the
    /// `yyyyMMddHHmmss` string in the client's time zone at each use).
    pub consume_timestamp_ms: i64,
    /// Whether the consumer consumes orderly (Java passes `isConsumeOrderly()` as `isOrder`).
    pub consume_orderly: bool,
}

/// One push consumer's rebalance state. See the module docs.
#[derive(Debug)]
pub struct Rebalance {
    config: RebalanceConfig,
    strategy: Arc<dyn AllocateMessageQueueStrategy>,
    offset_store: Arc<OffsetStore>,
    broker: Arc<dyn RebalanceBroker>,
    /// Topic → subscription (Java's `subscriptionInner`).
    subscriptions: BTreeMap<String, SubscriptionData>,
    /// Topic → its readable queues (Java's `topicSubscribeInfoTable`).
    topic_subscribe_info: BTreeMap<String, BTreeSet<MessageQueue>>,
    /// Owned queue → its process queue (Java's `processQueueTable`).
    process_queues: BTreeMap<MessageQueue, Arc<ProcessQueueHandle>>,
}

impl Rebalance {
    /// An empty rebalance: no subscription, no known queue, no owned queue.
    pub fn new(
        config: RebalanceConfig,
        strategy: Arc<dyn AllocateMessageQueueStrategy>,
        offset_store: Arc<OffsetStore>,
        broker: Arc<dyn RebalanceBroker>,
    ) -> Self {
        Self {
            config,
            strategy,
            offset_store,
            broker,
            subscriptions: BTreeMap::new(),
            topic_subscribe_info: BTreeMap::new(),
            process_queues: BTreeMap::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &RebalanceConfig {
        &self.config
    }

    /// Adds or replaces the subscription of its topic.
    pub fn set_subscription(&mut self, subscription: SubscriptionData) {
        self.subscriptions
            .insert(subscription.topic.clone(), subscription);
    }

    /// Topic → subscription.
    pub fn subscriptions(&self) -> &BTreeMap<String, SubscriptionData> {
        &self.subscriptions
    }

    /// The subscription of `topic`, to bump its version on a [`MessageQueueChanged`].
    pub fn subscription_mut(&mut self, topic: &str) -> Option<&mut SubscriptionData> {
        self.subscriptions.get_mut(topic)
    }

    /// Records a new route's readable queues of `topic` (`updateTopicSubscribeInfo`) if the
    /// consumer subscribes to it.
    pub fn update_topic_subscribe_info(&mut self, topic: &str, queues: &BTreeSet<MessageQueue>) {
        if self.subscriptions.contains_key(topic) {
            self.topic_subscribe_info
                .insert(topic.to_owned(), queues.clone());
        }
    }

    /// The known readable queues of `topic`.
    pub fn topic_subscribe_info(&self, topic: &str) -> Option<&BTreeSet<MessageQueue>> {
        self.topic_subscribe_info.get(topic)
    }

    /// Owned queue → process queue.
    pub fn process_queues(&self) -> &BTreeMap<MessageQueue, Arc<ProcessQueueHandle>> {
        &self.process_queues
    }

    /// Rebalances one topic (`rebalanceByTopic`). `consumer_ids` are the group's client ids
    /// as a broker listed them (CLUSTERING only; BROADCASTING takes every queue and ignores
    /// them).
    pub async fn rebalance_by_topic(
        &mut self,
        topic: &str,
        consumer_ids: &[String],
        now: Instant,
    ) -> Result<RebalanceOutcome, RebalanceError> {
        let mq_all = self
            .topic_subscribe_info
            .get(topic)
            .cloned()
            .ok_or_else(|| RebalanceError::TopicNotExist(topic.to_owned()))?;
        let mq_divided = match self.config.message_model {
            MessageModel::Broadcasting => mq_all.clone(),
            MessageModel::Clustering => {
                let mq_list: Vec<MessageQueue> = mq_all.iter().cloned().collect();
                self.strategy
                    .allocate(
                        &self.config.group,
                        &self.config.client_id,
                        &mq_list,
                        consumer_ids,
                    )?
                    .into_iter()
                    .collect()
            }
        };
        let changes = self
            .update_process_queue_table(topic, &mq_divided, now)
            .await;
        let message_queue_changed = changes.changed().then(|| {
            tracing::info!(
                group = %self.config.group,
                topic,
                strategy = self.strategy.name(),
                client_id = %self.config.client_id,
                mq_all_count = mq_all.len(),
                mq_divided_count = mq_divided.len(),
                "rebalanced, message queues changed"
            );
            MessageQueueChanged {
                topic: topic.to_owned(),
                mq_all,
                mq_divided,
            }
        });
        Ok(RebalanceOutcome {
            changes,
            message_queue_changed,
        })
    }

    /// Makes `topic`'s part of the process-queue table match `allocated`
    /// (`updateProcessQueueTableInRebalance`): removes the queues no longer allocated and
    /// those whose pull loop stalled, then adds each allocated queue not in the table —
    /// after taking its broker lock when orderly — with a pull request from
    /// [`compute_pull_from_where`](Self::compute_pull_from_where).
    pub async fn update_process_queue_table(
        &mut self,
        topic: &str,
        allocated: &BTreeSet<MessageQueue>,
        now: Instant,
    ) -> ProcessQueueChanges {
        let mut changes = ProcessQueueChanges::default();
        let of_topic: Vec<(MessageQueue, Arc<ProcessQueueHandle>)> = self
            .process_queues
            .iter()
            .filter(|(queue, _)| queue.topic == topic)
            .map(|(queue, handle)| (queue.clone(), handle.clone()))
            .collect();
        for (queue, handle) in of_topic {
            let still_allocated = allocated.contains(&queue);
            if still_allocated && !handle.state().is_pull_expired(now) {
                continue;
            }
            handle.state().set_dropped(true);
            match self.remove_unnecessary_message_queue(&queue, &handle).await {
                Removal::Deferred => changes.removal_deferred.push(queue),
                removal => {
                    self.process_queues.remove(&queue);
                    if removal == Removal::RemovedUnlockLater {
                        changes.unlock_later.push(queue.clone());
                    }
                    if still_allocated {
                        tracing::error!(group = %self.config.group, ?queue,
                            "[BUG] the pull request is expired, because pull is pause, so try to fixed it");
                        changes.pull_expired.push(queue);
                    } else {
                        tracing::info!(group = %self.config.group, ?queue, "remove unnecessary mq");
                        changes.removed.push(queue);
                    }
                }
            }
        }
        for queue in allocated {
            if self.process_queues.contains_key(queue) {
                continue;
            }
            match self.add_process_queue(queue, now).await {
                Ok(pull_request) => changes.pull_requests.push(pull_request),
                Err(reason) => {
                    tracing::warn!(group = %self.config.group, ?queue, ?reason, "add new mq failed");
                    changes.not_added.push((queue.clone(), reason));
                }
            }
        }
        changes
    }

    /// Adds one newly allocated queue: lock (orderly), forget the cached offset
    /// (`removeDirtyOffset`), compute the start offset, insert.
    async fn add_process_queue(
        &mut self,
        queue: &MessageQueue,
        now: Instant,
    ) -> Result<PullRequest, NotAddedReason> {
        if self.config.consume_orderly && !self.lock(queue, now).await {
            return Err(NotAddedReason::LockFailed);
        }
        self.offset_store.remove_offset(queue);
        let next_offset = self
            .compute_pull_from_where(queue)
            .await
            .map_err(NotAddedReason::NoStartOffset)?;
        let handle = Arc::new(ProcessQueueHandle::new(now));
        if self.config.consume_orderly {
            // The lock was granted for this very queue just now (Java leaves the new queue
            // unlocked until the next `lockAll`, up to 20 s later: spec Q6).
            let mut state = handle.state();
            state.set_locked(true);
            state.set_last_lock_timestamp(now);
        }
        self.process_queues.insert(queue.clone(), handle.clone());
        tracing::info!(group = %self.config.group, ?queue, next_offset, "add new mq");
        Ok(PullRequest {
            consumer_group: self.config.group.clone(),
            message_queue: queue.clone(),
            process_queue: handle,
            next_offset,
        })
    }

    /// Where a newly owned queue starts (`RebalancePushImpl.computePullFromWhereWithException`):
    /// the committed offset read from the broker when there is one; otherwise as
    /// `consume_from_where` says — the queue's end (0 for a retry topic) for
    /// CONSUME_FROM_LAST_OFFSET and the deprecated modes, 0 for CONSUME_FROM_FIRST_OFFSET,
    /// the offset of `consume_timestamp_ms` (a retry topic's end) for CONSUME_FROM_TIMESTAMP.
    pub async fn compute_pull_from_where(
        &self,
        queue: &MessageQueue,
    ) -> Result<i64, ComputePullFromWhereError> {
        match self
            .offset_store
            .read_offset(queue, ReadOffsetType::ReadFromStore)
            .await
        {
            ReadOffset::Found(offset) if offset >= 0 => return Ok(offset),
            ReadOffset::Found(-1) | ReadOffset::NotFound => {}
            ReadOffset::Found(offset) => {
                return Err(ComputePullFromWhereError::InvalidCommittedOffset(offset));
            }
            ReadOffset::QueryFailed(error) => {
                return Err(ComputePullFromWhereError::OffsetQueryFailed(error));
            }
        }
        let retry_topic = queue.topic.starts_with(RETRY_GROUP_PREFIX);
        match self.config.consume_from_where {
            ConsumeFromWhere::ConsumeFromFirstOffset => Ok(0),
            ConsumeFromWhere::ConsumeFromTimestamp if !retry_topic => self
                .broker
                .search_offset(queue, self.config.consume_timestamp_ms)
                .await
                .map_err(ComputePullFromWhereError::SearchOffsetFailed),
            ConsumeFromWhere::ConsumeFromTimestamp => self.max_offset(queue).await,
            ConsumeFromWhere::ConsumeFromLastOffset
            | ConsumeFromWhere::ConsumeFromLastOffsetAndFromMinWhenBootFirst
            | ConsumeFromWhere::ConsumeFromMinOffset
            | ConsumeFromWhere::ConsumeFromMaxOffset => {
                if retry_topic {
                    Ok(0)
                } else {
                    self.max_offset(queue).await
                }
            }
        }
    }

    async fn max_offset(&self, queue: &MessageQueue) -> Result<i64, ComputePullFromWhereError> {
        self.broker
            .max_offset(queue)
            .await
            .map_err(ComputePullFromWhereError::MaxOffsetFailed)
    }

    /// Lets go of a queue no longer consumed here (`RebalancePushImpl.removeUnnecessaryMessageQueue`):
    /// commits its offset and forgets it; an orderly CLUSTERING consumer also releases the
    /// broker lock — unless a batch is being consumed, when the removal is deferred.
    async fn remove_unnecessary_message_queue(
        &self,
        queue: &MessageQueue,
        handle: &ProcessQueueHandle,
    ) -> Removal {
        let orderly_clustering =
            self.config.consume_orderly && self.config.message_model == MessageModel::Clustering;
        // A failed commit is logged by the store; the broker keeps the older offset, so at
        // worst some messages are consumed again. An orderly queue whose lock this consumer
        // lost is not committed: another member may be consuming it already (see
        // `persist_consumer_offset`).
        if !orderly_clustering || handle.state().locked() {
            let _ = self.offset_store.persist(queue).await;
        }
        self.offset_store.remove_offset(queue);
        if !orderly_clustering {
            return Removal::Removed;
        }
        // Java waits up to 1 s for the consume lock; not waiting gives the same outcome as a
        // wait that times out, and the next rebalance tries again.
        let Ok(_consuming) = handle.consume_lock().try_lock() else {
            handle.state().inc_try_unlock_count();
            tracing::warn!(group = %self.config.group, ?queue,
                "[WRONG] mq is consuming, so can not unlock it");
            return Removal::Deferred;
        };
        if handle.state().has_temp_message() {
            return Removal::RemovedUnlockLater;
        }
        self.unlock(queue, true).await;
        Removal::Removed
    }

    /// Releases `queue`'s broker lock (`unlock(mq, oneway)`). Failures are logged: the broker
    /// lock then expires by itself.
    pub async fn unlock(&self, queue: &MessageQueue, oneway: bool) {
        let body = self.lock_body(BTreeSet::from([queue.clone()]));
        if let Err(error) = self
            .broker
            .unlock_batch(&queue.broker_name, &body, oneway)
            .await
        {
            tracing::warn!(group = %self.config.group, ?queue, %error, "unlock message queue failed");
        }
    }

    /// Takes `queue`'s broker lock (`lock(mq)`): whether the broker granted it. Every queue
    /// the broker reports locked that is in the table is marked locked at `now`.
    pub async fn lock(&mut self, queue: &MessageQueue, now: Instant) -> bool {
        let body = self.lock_body(BTreeSet::from([queue.clone()]));
        match self.broker.lock_batch(&queue.broker_name, &body).await {
            Ok(locked) => {
                self.mark_locked(&locked, now);
                locked.contains(queue)
            }
            Err(error) => {
                tracing::warn!(group = %self.config.group, ?queue, %error, "lock message queue failed");
                false
            }
        }
    }

    /// Takes or renews the broker locks of every owned queue (`lockAll`, every
    /// [`REBALANCE_LOCK_INTERVAL`](super::process_queue::REBALANCE_LOCK_INTERVAL)): one
    /// LOCK_BATCH_MQ per broker group; granted queues are marked locked at `now`, refused
    /// ones unlocked.
    pub async fn lock_all(&mut self, now: Instant) -> LockAllOutcome {
        let by_broker = self.owned_queues_by_broker();
        let mut outcome = LockAllOutcome::default();
        for (broker_name, queues) in by_broker {
            let body = self.lock_body(queues);
            match self.broker.lock_batch(&broker_name, &body).await {
                Ok(locked) => {
                    self.mark_locked(&locked, now);
                    for queue in body.mq_set {
                        if locked.contains(&queue) {
                            outcome.locked.insert(queue);
                        } else {
                            if let Some(handle) = self.process_queues.get(&queue) {
                                handle.state().set_locked(false);
                            }
                            tracing::warn!(group = %self.config.group, ?queue, "the message queue locked Failed");
                            outcome.refused.insert(queue);
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(group = %self.config.group, broker_name, %error, "lockBatchMQ failed");
                    outcome.failed.push((broker_name, error));
                }
            }
        }
        outcome
    }

    /// Drops and removes one queue (`removeProcessQueue`): its offset is committed and
    /// forgotten and, for an orderly clustering consumer, its broker lock released, as when
    /// a rebalance takes it away. The next rebalance adds it again if it is still allocated,
    /// starting from the committed offset. Returns whether the queue was in the table.
    pub async fn remove_process_queue(&mut self, queue: &MessageQueue) -> bool {
        let Some(handle) = self.process_queues.remove(queue) else {
            return false;
        };
        handle.state().set_dropped(true);
        let removal = self.remove_unnecessary_message_queue(queue, &handle).await;
        tracing::info!(group = %self.config.group, ?queue, ?removal, "remove process queue");
        true
    }

    /// Releases the broker locks of every owned queue (`unlockAll`), one UNLOCK_BATCH_MQ per
    /// broker group, and marks the queues unlocked.
    pub async fn unlock_all(&self, oneway: bool) {
        let by_broker = self.owned_queues_by_broker();
        for (broker_name, queues) in by_broker {
            let body = self.lock_body(queues);
            match self.broker.unlock_batch(&broker_name, &body, oneway).await {
                Ok(()) => {
                    for queue in &body.mq_set {
                        if let Some(handle) = self.process_queues.get(queue) {
                            handle.state().set_locked(false);
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(group = %self.config.group, broker_name, %error, "unlockBatchMQ failed");
                }
            }
        }
    }

    /// Drops and removes the queues of topics no longer subscribed
    /// (`truncateMessageQueueNotMyTopic`), returning them.
    pub fn truncate_message_queue_not_my_topic(&mut self) -> Vec<MessageQueue> {
        let stale: Vec<MessageQueue> = self
            .process_queues
            .keys()
            .filter(|queue| !self.subscriptions.contains_key(&queue.topic))
            .cloned()
            .collect();
        for queue in &stale {
            if let Some(handle) = self.process_queues.remove(queue) {
                handle.state().set_dropped(true);
                tracing::info!(group = %self.config.group, ?queue, "doRebalance, truncateMessageQueueNotMyTopic");
            }
        }
        stale
    }

    fn mark_locked(&self, locked: &BTreeSet<MessageQueue>, now: Instant) {
        for queue in locked {
            if let Some(handle) = self.process_queues.get(queue) {
                let mut state = handle.state();
                state.set_locked(true);
                state.set_last_lock_timestamp(now);
            }
        }
    }

    /// The owned queues grouped by broker group, for one batch request per broker.
    fn owned_queues_by_broker(&self) -> BTreeMap<String, BTreeSet<MessageQueue>> {
        let mut by_broker: BTreeMap<String, BTreeSet<MessageQueue>> = BTreeMap::new();
        for queue in self.process_queues.keys() {
            by_broker
                .entry(queue.broker_name.clone())
                .or_default()
                .insert(queue.clone());
        }
        by_broker
    }

    fn lock_body(&self, mq_set: BTreeSet<MessageQueue>) -> LockBatchRequestBody {
        LockBatchRequestBody {
            client_id: self.config.client_id.clone(),
            consumer_group: self.config.group.clone(),
            mq_set,
        }
    }
}

/// How [`Rebalance::remove_unnecessary_message_queue`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    /// Remove the entry.
    Removed,
    /// Remove the entry; release the broker lock after [`UNLOCK_DELAY`].
    RemovedUnlockLater,
    /// Keep the (dropped) entry; try again next time.
    Deferred,
}

#[cfg(test)]
mod tests;
