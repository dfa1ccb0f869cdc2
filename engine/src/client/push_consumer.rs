//! The push consumer (Java 4.9's `DefaultMQPushConsumer` with `DefaultMQPushConsumerImpl`):
//! the client pulls in the background and hands messages to an application listener,
//! concurrently or orderly, in a clustering or a broadcasting group.
//!
//! Where it sits: on top of the client building blocks. [`Rebalance`] decides which queues
//! this client owns (every [`REBALANCE_INTERVAL`] and when a broker sends
//! NOTIFY_CONSUMER_IDS_CHANGED; with the group's allocation strategy when clustering, every
//! queue when broadcasting); each owned queue gets a pull loop (a spawned task) that
//! long-polls its broker with SUSPEND and COMMIT_OFFSET and caches what it finds in the
//! queue's [`ProcessQueue`](super::process_queue::ProcessQueue). Then:
//! - **concurrent** consumption ([`MessageListener::Concurrently`]): consume batches run under
//!   a bound of `consume_thread_max`, remove their messages from the cache and record the
//!   commit offset (the smallest offset still cached). A batch the listener asks to
//!   reconsume later is sent back to the broker (CONSUMER_SEND_MSG_BACK, delay level 0: the
//!   broker picks `3 + reconsumeTimes`) and comes back via `%RETRY%group` — or, when that
//!   request fails, re-sent there through the instance's internal producer
//!   ([`retry_message`]); if both fail it is consumed again locally after 5 s. A message
//!   stuck in the listener longer than `consume_timeout` is sent back the same way;
//! - **orderly** consumption ([`MessageListener::Orderly`], see [`orderly`]): one task per
//!   queue consumes batch after batch in queue order, only while this client holds the
//!   queue's broker lock (LOCK_BATCH_MQ, renewed every 20 s).
//!
//! Offsets go to an [`OffsetStore`] that the client instance persists periodically: on the
//! brokers for a clustering group, in a local file per client for a broadcasting one.
//!
//! Invariants: a pull loop stops once its process queue is dropped or the consumer is shut
//! down; a concurrent offset is recorded only from `remove_messages`, so it never passes a
//! message still being consumed; an orderly one only from `commit`, the end of a consumed
//! batch. At shutdown an orderly consumer waits for its running batches, commits, and only
//! then releases its queue locks.
//!
//! Deviations from Java: hooks, namespaces and SQL92 are not implemented; the subscription
//! is always posted with each pull (`postSubscriptionWhenPull = true`); per-topic re-spreading of the flow-control thresholds is not done (each queue uses the
//! configured ones).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use super::allocate::{AllocateMessageQueueStrategy, Averagely};
use super::api::{ClientError, PullResult, PullStatus};
use super::config::ClientConfig;
use super::instance::{
    ClientInstance, ClientInstanceRegistry, ClientProcessorTable, MqConsumerInner, ServiceState,
};
use super::offset_store::{
    DEFAULT_LOCAL_OFFSET_STORE_DIR, OffsetStore, ReadOffset, ReadOffsetType, offset_storage_for,
};
use super::process_queue::{EXPIRED_MESSAGE_DELAY_LEVEL, FlowControlThresholds};
use super::producer::{GroupNameError, Message, ProducerError, check_group_name};
use super::pull_consumer::{
    ADMIN_TIMEOUT, DEFAULT_CONSUMER_GROUP, build_pull_sys_flag, filter_by_tags,
};
use super::rebalance::{
    BATCH_LOCK_TIMEOUT, ProcessQueueHandle, PullRequest, Rebalance, RebalanceBroker,
    RebalanceConfig, run_rebalance_service,
};
use crate::Env;
use crate::broker::processor::pull::pull_sys_flag;
use crate::broker::topic_config::system_topic::RETRY_GROUP_PREFIX;
use crate::clock::ClockExt;
use crate::protocol::MASTER_ID;
use crate::protocol::heartbeat::{
    ConsumeFromWhere, ConsumeType, ConsumerData, EXPRESSION_TYPE_TAG, LockBatchRequestBody,
    MessageModel, MessageQueue, SUB_ALL, SubscriptionData,
};
use crate::store::message::{StoredMessage, property_key};

pub mod orderly;

/// How often the rebalance service runs (`rocketmq.client.rebalance.waitInterval`, 20 s).
pub const REBALANCE_INTERVAL: Duration = Duration::from_secs(20);
/// Pause after a failed pull (`pullTimeDelayMillsWhenException`, 3 s).
pub const PULL_DELAY_WHEN_EXCEPTION: Duration = Duration::from_secs(3);
/// Pause when the process queue is over a flow-control threshold (50 ms).
pub const PULL_DELAY_WHEN_FLOW_CONTROL: Duration = Duration::from_millis(50);
/// Pause before a failed send-back is consumed again locally (5 s).
pub const CONSUME_LATER_DELAY: Duration = Duration::from_secs(5);
/// Pause before an OFFSET_ILLEGAL queue's offset is corrected and the queue removed, to be
/// re-created by the next rebalance (Java: 10 s).
pub const OFFSET_ILLEGAL_DELAY: Duration = Duration::from_secs(10);
/// Timeout of CONSUMER_SEND_MSG_BACK (Java: 5000 ms).
pub const SEND_BACK_TIMEOUT: Duration = Duration::from_secs(5);

/// What the listener decided about a batch (`ConsumeConcurrentlyStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeStatus {
    /// Consumed: the offset may advance past the batch.
    ConsumeSuccess,
    /// Not consumed: send the batch back to be redelivered later via the retry topic.
    ReconsumeLater,
}

/// What the listener is told about a batch (`ConsumeConcurrentlyContext`).
#[derive(Debug, Clone)]
pub struct ConsumeContext {
    /// The queue the batch was pulled from.
    pub message_queue: MessageQueue,
}

/// A concurrent listener (`MessageListenerConcurrently`): batches of one queue may run at
/// the same time and in any order.
pub type ConcurrentlyListener =
    Arc<dyn Fn(&[StoredMessage], &ConsumeContext) -> ConsumeStatus + Send + Sync + 'static>;

/// What an orderly listener decided about a batch (`ConsumeOrderlyStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeOrderlyStatus {
    /// Consumed: the queue's offset moves past the batch.
    Success,
    /// Not consumed: the queue pauses for the suspend time and the same batch comes again
    /// (after the group's max reconsume times it goes to the dead-letter queue).
    SuspendCurrentQueueAMoment,
}

/// What an orderly listener is told about a batch (`ConsumeOrderlyContext`).
#[derive(Debug, Clone)]
pub struct ConsumeOrderlyContext {
    /// The queue the batch was taken from.
    pub message_queue: MessageQueue,
    /// How long to pause the queue after [`ConsumeOrderlyStatus::SuspendCurrentQueueAMoment`];
    /// `None` (the default) means the consumer's `suspend_current_queue_time`.
    pub suspend_current_queue_time: Option<Duration>,
}

/// An orderly listener (`MessageListenerOrderly`): one batch of a queue at a time, in queue
/// order, by the one consumer of the group that holds the queue's broker lock.
pub type OrderlyListener = Arc<
    dyn Fn(&[StoredMessage], &mut ConsumeOrderlyContext) -> ConsumeOrderlyStatus
        + Send
        + Sync
        + 'static,
>;

/// The application's listener: concurrent or orderly consumption.
#[derive(Clone)]
pub enum MessageListener {
    /// `MessageListenerConcurrently`.
    Concurrently(ConcurrentlyListener),
    /// `MessageListenerOrderly`.
    Orderly(OrderlyListener),
}

impl MessageListener {
    /// A concurrent listener from a closure.
    pub fn concurrently(
        listener: impl Fn(&[StoredMessage], &ConsumeContext) -> ConsumeStatus + Send + Sync + 'static,
    ) -> Self {
        Self::Concurrently(Arc::new(listener))
    }

    /// An orderly listener from a closure.
    pub fn orderly(
        listener: impl Fn(&[StoredMessage], &mut ConsumeOrderlyContext) -> ConsumeOrderlyStatus
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self::Orderly(Arc::new(listener))
    }

    /// Whether the listener consumes orderly.
    pub fn is_orderly(&self) -> bool {
        matches!(self, Self::Orderly(_))
    }
}

impl std::fmt::Debug for MessageListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Concurrently(_) => "MessageListener::Concurrently",
            Self::Orderly(_) => "MessageListener::Orderly",
        })
    }
}

/// The push consumer's settings (`DefaultMQPushConsumer`'s fields).
#[derive(Debug, Clone)]
pub struct PushConsumerConfig {
    /// `consumerGroup`.
    pub group: String,
    /// `consumeFromWhere` (CONSUME_FROM_LAST_OFFSET).
    pub consume_from_where: ConsumeFromWhere,
    /// `consumeTimestamp` in ms, for CONSUME_FROM_TIMESTAMP.
    pub consume_timestamp_ms: i64,
    /// `subscription`: topic → tag expression.
    pub subscriptions: BTreeMap<String, String>,
    /// `consumeThreadMax` (20): consume batches running at once.
    pub consume_thread_max: usize,
    /// `consumeMessageBatchMaxSize` (1).
    pub consume_message_batch_max_size: usize,
    /// `pullBatchSize` (32).
    pub pull_batch_size: i32,
    /// `pullInterval` (0).
    pub pull_interval: Duration,
    /// `maxReconsumeTimes` (-1, meaning 16).
    pub max_reconsume_times: i32,
    /// `consumeTimeout` (15 min).
    pub consume_timeout: Duration,
    /// Flow-control thresholds of each queue.
    pub flow_control: FlowControlThresholds,
    /// `BROKER_SUSPEND_MAX_TIME_MILLIS` (15 s).
    pub broker_suspend_max_time: Duration,
    /// `CONSUMER_TIMEOUT_MILLIS_WHEN_SUSPEND` (30 s).
    pub consumer_timeout_when_suspend: Duration,
    /// The rebalance period ([`REBALANCE_INTERVAL`]).
    pub rebalance_interval: Duration,
    /// `messageModel` (CLUSTERING): share the queues with the group, or (BROADCASTING) take
    /// every queue, with offsets kept in a local file.
    pub message_model: MessageModel,
    /// `allocateMessageQueueStrategy` (averagely): how a clustering group shares queues.
    pub allocate_strategy: Arc<dyn AllocateMessageQueueStrategy>,
    /// `suspendCurrentQueueTimeMillis` (1 s): how long an orderly queue waits after its
    /// listener answers [`ConsumeOrderlyStatus::SuspendCurrentQueueAMoment`].
    pub suspend_current_queue_time: Duration,
    /// Where broadcasting consumers keep their offsets (Java's
    /// `rocketmq.client.localOffsetStoreDir`), a path on the consumer's disk.
    pub local_offset_store_dir: String,
    /// The client settings.
    pub client: ClientConfig,
}

impl Default for PushConsumerConfig {
    fn default() -> Self {
        Self {
            group: String::new(),
            consume_from_where: ConsumeFromWhere::ConsumeFromLastOffset,
            consume_timestamp_ms: 0,
            subscriptions: BTreeMap::new(),
            consume_thread_max: 20,
            consume_message_batch_max_size: 1,
            pull_batch_size: 32,
            pull_interval: Duration::ZERO,
            max_reconsume_times: -1,
            consume_timeout: Duration::from_secs(15 * 60),
            flow_control: FlowControlThresholds::default(),
            broker_suspend_max_time: Duration::from_secs(15),
            consumer_timeout_when_suspend: Duration::from_secs(30),
            rebalance_interval: REBALANCE_INTERVAL,
            message_model: MessageModel::Clustering,
            allocate_strategy: Arc::new(Averagely),
            suspend_current_queue_time: Duration::from_secs(1),
            local_offset_store_dir: DEFAULT_LOCAL_OFFSET_STORE_DIR.to_owned(),
            client: ClientConfig::default(),
        }
    }
}

impl PushConsumerConfig {
    /// Java's defaults for group `group` with the name servers `namesrv_addr`.
    pub fn new(group: impl Into<String>, namesrv_addr: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            client: ClientConfig::with_namesrv_addr(namesrv_addr),
            ..Self::default()
        }
    }

    /// `getMaxReconsumeTimes`: -1 means 16.
    pub fn effective_max_reconsume_times(&self) -> i32 {
        if self.max_reconsume_times == -1 {
            16
        } else {
            self.max_reconsume_times
        }
    }
}

/// Why a push-consumer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PushConsumerError {
    /// The consumer is not in a state for this; only a new consumer starts.
    #[error("the push consumer service state not OK, {0:?}")]
    NotRunning(ServiceState),
    /// The group name is refused.
    #[error("invalid consumer group: {0}")]
    InvalidGroup(#[from] GroupNameError),
    /// The group is [`DEFAULT_CONSUMER_GROUP`].
    #[error("consumerGroup can not equal {DEFAULT_CONSUMER_GROUP}, please specify another one")]
    ReservedGroup,
    /// `consume_thread_max`, `consume_message_batch_max_size` or `pull_batch_size` is 0.
    #[error("{0}")]
    InvalidConfig(&'static str),
    /// Another consumer of this group is registered with the same client instance.
    #[error("the consumer group[{0}] has been created before, specify another name please")]
    GroupAlreadyCreated(String),
}

/// The retry topic of `group` (`MixAll.getRetryTopic`).
pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_GROUP_PREFIX}{group}")
}

/// `resetRetryAndNamespace`: a message pulled from `group`'s retry topic gets back its
/// original topic from the RETRY_TOPIC property.
pub fn reset_retry_topic(messages: &mut [StoredMessage], group: &str) {
    let retry = retry_topic(group);
    for message in messages {
        if let Some(original) = message.property(property_key::RETRY_TOPIC)
            && retry == message.topic
        {
            message.topic = original.to_owned();
        }
    }
}

/// Why a message could not be sent back: CONSUMER_SEND_MSG_BACK failed and so did the
/// re-send to the retry topic. The consumer consumes the message again locally later.
#[derive(Debug, thiserror::Error)]
#[error(
    "CONSUMER_SEND_MSG_BACK failed ({back}); the re-send to the retry topic failed too: {resend}"
)]
pub struct SendBackError {
    /// Why CONSUMER_SEND_MSG_BACK failed.
    pub back: ClientError,
    /// Why the re-send through the internal producer failed.
    pub resend: ProducerError,
}

/// The message a consumer re-sends to its group's retry topic when CONSUMER_SEND_MSG_BACK
/// fails (the fallback of Java's `sendMessageBack`): the body, flag and properties of
/// `message`, with `ORIGIN_MESSAGE_ID` (kept from an earlier retry, else the message's
/// id), `RETRY_TOPIC` (the topic it was consumed from), `RECONSUME_TIME` (one more) and
/// `MAX_RECONSUME_TIMES`, the transaction-prepared mark cleared, and delay level
/// `3 + reconsumeTimes`. The producer moves the two counters into the send header, where
/// the broker's retry/DLQ rule reads them.
pub fn retry_message(message: &StoredMessage, group: &str, max_reconsume_times: i32) -> Message {
    let mut properties = message.properties_map();
    let origin = properties
        .get(property_key::ORIGIN_MESSAGE_ID)
        .filter(|id| !id.trim().is_empty())
        .cloned()
        .unwrap_or_else(|| message.msg_id.clone());
    properties.insert(property_key::ORIGIN_MESSAGE_ID.to_owned(), origin);
    properties.insert(property_key::RETRY_TOPIC.to_owned(), message.topic.clone());
    properties.insert(
        property_key::RECONSUME_TIME.to_owned(),
        (message.reconsume_times + 1).to_string(),
    );
    properties.insert(
        property_key::MAX_RECONSUME_TIMES.to_owned(),
        max_reconsume_times.to_string(),
    );
    properties.remove(property_key::TRAN_MSG);
    properties.insert(
        property_key::DELAY.to_owned(),
        (3 + message.reconsume_times).to_string(),
    );
    Message {
        topic: retry_topic(group),
        flag: message.flag,
        properties,
        body: message.body.clone().unwrap_or_default(),
    }
}

/// Splits pulled messages into consume batches of at most `batch_max` (at least 1).
pub fn consume_batches(messages: Vec<StoredMessage>, batch_max: usize) -> Vec<Vec<StoredMessage>> {
    let batch_max = batch_max.max(1);
    let mut batches = Vec::new();
    let mut current = Vec::new();
    for message in messages {
        current.push(message);
        if current.len() == batch_max {
            batches.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every table is updated by single inserts, so a poisoned one is still consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The real [`RebalanceBroker`]: admin and lock calls through a client instance, held
/// weakly for the reason [`InstanceOffsetBroker`](super::offset_store::InstanceOffsetBroker) gives.
#[derive(Debug, Clone)]
pub struct InstanceRebalanceBroker {
    instance: Weak<ClientInstance>,
}

impl InstanceRebalanceBroker {
    /// Calls go through `instance`.
    pub fn new(instance: &Arc<ClientInstance>) -> Self {
        Self {
            instance: Arc::downgrade(instance),
        }
    }

    async fn master(
        &self,
        queue: &MessageQueue,
    ) -> Result<(Arc<ClientInstance>, String), ClientError> {
        let not_found = || ClientError::BrokerNotFound(queue.broker_name.clone());
        let instance = self.instance.upgrade().ok_or_else(not_found)?;
        let addr = instance
            .find_with_route_refresh(&queue.topic, |instance| {
                instance.find_broker_address_in_publish(&queue.broker_name)
            })
            .await
            .ok_or_else(not_found)?;
        Ok((instance, addr))
    }

    fn master_of(&self, broker_name: &str) -> Result<(Arc<ClientInstance>, String), ClientError> {
        let not_found = || ClientError::BrokerNotFound(broker_name.to_owned());
        let instance = self.instance.upgrade().ok_or_else(not_found)?;
        let found = instance
            .find_broker_address_in_subscribe(broker_name, MASTER_ID, true)
            .ok_or_else(not_found)?;
        Ok((instance, found.broker_addr))
    }
}

#[async_trait::async_trait]
impl RebalanceBroker for InstanceRebalanceBroker {
    async fn max_offset(&self, queue: &MessageQueue) -> Result<i64, ClientError> {
        let (instance, addr) = self.master(queue).await?;
        instance
            .api()
            .max_offset(&addr, &queue.topic, queue.queue_id, ADMIN_TIMEOUT)
            .await
    }

    async fn search_offset(
        &self,
        queue: &MessageQueue,
        timestamp_ms: i64,
    ) -> Result<i64, ClientError> {
        let (instance, addr) = self.master(queue).await?;
        instance
            .api()
            .search_offset(
                &addr,
                &queue.topic,
                queue.queue_id,
                timestamp_ms,
                ADMIN_TIMEOUT,
            )
            .await
    }

    async fn lock_batch(
        &self,
        broker_name: &str,
        body: &LockBatchRequestBody,
    ) -> Result<BTreeSet<MessageQueue>, ClientError> {
        let (instance, addr) = self.master_of(broker_name)?;
        instance
            .api()
            .lock_batch_mq(&addr, body, BATCH_LOCK_TIMEOUT)
            .await
    }

    async fn unlock_batch(
        &self,
        broker_name: &str,
        body: &LockBatchRequestBody,
        oneway: bool,
    ) -> Result<(), ClientError> {
        let (instance, addr) = self.master_of(broker_name)?;
        instance
            .api()
            .unlock_batch_mq(&addr, body, BATCH_LOCK_TIMEOUT, oneway)
            .await
    }
}

/// The consumer as the instance, the rebalance service, pull loops and consume batches see it.
struct PushInner {
    config: PushConsumerConfig,
    env: Env,
    listener: MessageListener,
    instance: Weak<ClientInstance>,
    /// Where the internal producer of the fallback send-back comes from.
    registry: Arc<ClientInstanceRegistry>,
    /// Queue → the lock an orderly consume task holds while it runs (Java's
    /// `MessageQueueLock`), so that one task at a time consumes a queue.
    message_queue_locks: Mutex<BTreeMap<MessageQueue, Arc<tokio::sync::Mutex<()>>>>,
    offset_store: Arc<OffsetStore>,
    rebalance: tokio::sync::Mutex<Rebalance>,
    /// Topic → subscription, mirrored from the rebalance for the synchronous heartbeat.
    subscriptions: BTreeMap<String, SubscriptionData>,
    /// Topic → readable queues, from installed routes.
    subscribe_infos: Mutex<BTreeMap<String, BTreeSet<MessageQueue>>>,
    /// Queue → broker id to pull from next.
    pull_from_which_node: Mutex<BTreeMap<MessageQueue, i64>>,
    /// Bounds the consume batches running at once.
    consume_permits: Arc<Semaphore>,
    stopped: AtomicBool,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for PushInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushInner")
            .field("group", &self.config.group)
            .finish()
    }
}

#[async_trait::async_trait]
impl MqConsumerInner for PushInner {
    fn consumer_data(&self) -> ConsumerData {
        ConsumerData {
            consume_from_where: self.config.consume_from_where,
            consume_type: ConsumeType::ConsumePassively,
            group_name: self.config.group.clone(),
            message_model: self.config.message_model,
            subscription_data_set: self.subscriptions.values().cloned().collect(),
            unit_mode: false,
        }
    }

    fn is_subscribe_topic_need_update(&self, topic: &str) -> bool {
        self.subscriptions.contains_key(topic) && !lock(&self.subscribe_infos).contains_key(topic)
    }

    fn update_topic_subscribe_info(&self, topic: &str, queues: &BTreeSet<MessageQueue>) {
        if self.subscriptions.contains_key(topic) {
            lock(&self.subscribe_infos).insert(topic.to_owned(), queues.clone());
        }
    }

    fn rebalance_immediately(&self) {
        self.wake.notify_one();
    }

    /// Commits the offsets of the queues this consumer owns. An orderly clustering consumer
    /// commits only the queues whose broker lock it holds: one it lost (a refused renewal, a
    /// broker restart) may already be consumed by another member, and its stale offset would
    /// move the group back. Java commits every owned queue.
    async fn persist_consumer_offset(&self) {
        let holds_locks =
            self.listener.is_orderly() && self.config.message_model == MessageModel::Clustering;
        let (mut queues, mut unlocked) = (BTreeSet::new(), BTreeSet::new());
        for (queue, handle) in self.rebalance.lock().await.process_queues() {
            if holds_locks && !handle.state().locked() {
                unlocked.insert(queue.clone());
            } else {
                queues.insert(queue.clone());
            }
        }
        self.offset_store
            .persist_all_holding(&queues, &unlocked)
            .await;
    }
}

impl PushInner {
    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// `getMaxReconsumeTimes`: -1 means 16 for concurrent consumption and no limit
    /// (`Integer.MAX_VALUE`) for orderly consumption.
    fn max_reconsume_times(&self) -> i32 {
        match (self.config.max_reconsume_times, &self.listener) {
            (-1, MessageListener::Orderly(_)) => i32::MAX,
            _ => self.config.effective_max_reconsume_times(),
        }
    }

    /// The consume-timeout service of concurrent consumption (`cleanExpireMsg`, every
    /// `consume_timeout`): a cached message whose consumption started more than
    /// `consume_timeout` ago is sent back with delay level
    /// [`EXPIRED_MESSAGE_DELAY_LEVEL`] and dropped from the cache, so a stuck listener does
    /// not hold the queue's offset back for ever.
    async fn clean_expired_service(self: Arc<Self>) {
        loop {
            self.env.clock.sleep(self.config.consume_timeout).await;
            if self.stopped() {
                return;
            }
            let queues: Vec<(MessageQueue, Arc<ProcessQueueHandle>)> = self
                .rebalance
                .lock()
                .await
                .process_queues()
                .iter()
                .map(|(queue, handle)| (queue.clone(), handle.clone()))
                .collect();
            for (queue, handle) in queues {
                let now = self.env.clock.instant();
                let expired = handle
                    .state()
                    .clean_expired(now, self.config.consume_timeout);
                for message in expired {
                    if let Err(error) = self
                        .send_back(&queue, &message, EXPIRED_MESSAGE_DELAY_LEVEL)
                        .await
                    {
                        tracing::warn!(?queue, offset = message.queue_offset, %error,
                            "send expired message back failed");
                        break;
                    }
                    tracing::info!(
                        ?queue,
                        offset = message.queue_offset,
                        "consume timed out; message sent back"
                    );
                    let now = self.env.clock.instant();
                    handle.state().remove_if_first(message.queue_offset, now);
                }
            }
        }
    }

    /// The rebalance service: at start, every `rebalance_interval`, and when woken.
    async fn rebalance_service(self: Arc<Self>) {
        run_rebalance_service(
            &self.env.clock,
            self.config.rebalance_interval,
            &self.wake,
            || self.stopped(),
            || self.do_rebalance(),
        )
        .await;
    }

    /// `doRebalance`: every subscribed topic, then start the new queues' pull loops.
    async fn do_rebalance(self: &Arc<Self>) {
        let Some(instance) = self.instance.upgrade() else {
            return;
        };
        let mut rebalance = self.rebalance.lock().await;
        let mut changed = false;
        for topic in self.subscriptions.keys() {
            if self.stopped() {
                return;
            }
            let ids = if self.config.message_model == MessageModel::Broadcasting {
                Vec::new()
            } else {
                match instance
                    .rebalance_consumer_ids(topic, &self.config.group)
                    .await
                {
                    Some(ids) => ids,
                    None => continue,
                }
            };
            // After the id lookup, which fetches the route of a topic not known yet (a
            // retry topic created by the first send-back, say).
            let queues = lock(&self.subscribe_infos).get(topic).cloned();
            if let Some(queues) = queues {
                rebalance.update_topic_subscribe_info(topic, &queues);
            }
            let now = self.env.clock.instant();
            match rebalance.rebalance_by_topic(topic, &ids, now).await {
                Ok(outcome) => {
                    changed |= outcome.message_queue_changed.is_some();
                    for request in outcome.changes.pull_requests {
                        tokio::spawn(self.clone().pull_loop(request));
                    }
                    for queue in outcome.changes.unlock_later {
                        tokio::spawn(self.clone().unlock_later(queue));
                    }
                }
                Err(error) => {
                    tracing::warn!(group = %self.config.group, topic, %error, "rebalance failed");
                }
            }
        }
        rebalance.truncate_message_queue_not_my_topic();
        drop(rebalance);
        if changed {
            // Java's messageQueueChanged: tell the brokers at once.
            instance.send_heartbeat_to_all_brokers().await;
        }
    }

    /// One queue's pull loop (`pullMessage` and its `PullCallback`).
    async fn pull_loop(self: Arc<Self>, mut request: PullRequest) {
        let queue = request.message_queue.clone();
        let handle = request.process_queue.clone();
        loop {
            if self.stopped() || handle.state().dropped() {
                return;
            }
            let now = self.env.clock.instant();
            let orderly = self.listener.is_orderly();
            let (flow, locked) = {
                let mut state = handle.state();
                state.set_last_pull_timestamp(now);
                (
                    state.flow_control(&self.config.flow_control, orderly),
                    state.locked(),
                )
            };
            if let Some(flow) = flow {
                tracing::debug!(?queue, ?flow, "pull flow control");
                self.env.clock.sleep(PULL_DELAY_WHEN_FLOW_CONTROL).await;
                continue;
            }
            if orderly && self.config.message_model == MessageModel::Clustering && !locked {
                tracing::debug!(?queue, "pull message later because not locked in broker");
                self.env.clock.sleep(PULL_DELAY_WHEN_EXCEPTION).await;
                // Ask for the lock again now rather than at the next renewal (20 s): after a
                // broker restart every orderly queue of it is in this state.
                if !handle.state().dropped() {
                    let now = self.env.clock.instant();
                    self.rebalance.lock().await.lock(&queue, now).await;
                }
                continue;
            }
            let Some(subscription) = self.subscriptions.get(&queue.topic).cloned() else {
                self.env.clock.sleep(PULL_DELAY_WHEN_EXCEPTION).await;
                continue;
            };
            let result = match self.pull_once(&request, &subscription).await {
                Ok(result) => result,
                Err(error) => {
                    tracing::warn!(?queue, %error, "pull failed");
                    if orderly {
                        // The broker may have restarted and forgotten its locks (they live
                        // in its memory only), and another consumer may hold this queue
                        // now: stop consuming until the broker grants the lock again. Java
                        // trusts the lock for its 30 s lifetime, so two consumers can run
                        // one queue at once after a broker restart.
                        handle.state().set_locked(false);
                    }
                    self.env.clock.sleep(PULL_DELAY_WHEN_EXCEPTION).await;
                    continue;
                }
            };
            match result.status {
                PullStatus::Found => {
                    let messages = filter_by_tags(result.messages, &subscription);
                    request.next_offset = result.next_begin_offset;
                    if !messages.is_empty() {
                        let dispatch_to_consume = handle.state().put_messages(&messages);
                        self.submit_consume(&queue, &handle, messages, dispatch_to_consume);
                    }
                    if !self.config.pull_interval.is_zero() {
                        self.env.clock.sleep(self.config.pull_interval).await;
                    }
                }
                PullStatus::NoNewMsg | PullStatus::NoMatchedMsg => {
                    request.next_offset = result.next_begin_offset;
                    // correctTagsOffset: nothing cached, so the pull offset is consumed.
                    if handle.state().msg_count() == 0 {
                        self.offset_store
                            .update_offset(&queue, request.next_offset, true);
                    }
                }
                PullStatus::OffsetIllegal => {
                    tracing::warn!(
                        ?queue,
                        next = result.next_begin_offset,
                        "pull offset illegal"
                    );
                    handle.state().set_dropped(true);
                    self.env.clock.sleep(OFFSET_ILLEGAL_DELAY).await;
                    self.offset_store
                        .update_offset(&queue, result.next_begin_offset, false);
                    let _ = self.offset_store.persist(&queue).await;
                    // The next rebalance, asked for at once, starts the queue again from
                    // the corrected offset.
                    self.rebalance
                        .lock()
                        .await
                        .remove_process_queue(&queue)
                        .await;
                    self.wake.notify_one();
                    return;
                }
            }
        }
    }

    /// One long-polling pull (`pullKernelImpl`), with the tag re-filter left to the caller.
    async fn pull_once(
        &self,
        request: &PullRequest,
        subscription: &SubscriptionData,
    ) -> Result<PullResult, ClientError> {
        let queue = &request.message_queue;
        let instance = self
            .instance
            .upgrade()
            .ok_or_else(|| ClientError::BrokerNotFound(queue.broker_name.clone()))?;
        // Only a clustering group's offsets live on the broker: a broadcasting consumer's stay
        // in its local file, and its pulls commit nothing.
        let commit_offset = match self.config.message_model {
            MessageModel::Clustering => match self
                .offset_store
                .read_offset(queue, ReadOffsetType::ReadFromMemory)
                .await
            {
                ReadOffset::Found(offset) if offset > 0 => offset,
                _ => 0,
            },
            MessageModel::Broadcasting => 0,
        };
        let broker_id = lock(&self.pull_from_which_node)
            .get(queue)
            .copied()
            .unwrap_or(MASTER_ID);
        let found = instance
            .find_with_route_refresh(&queue.topic, |instance| {
                instance.find_broker_address_in_subscribe(&queue.broker_name, broker_id, false)
            })
            .await
            .ok_or_else(|| ClientError::BrokerNotFound(queue.broker_name.clone()))?;
        let mut sys_flag = build_pull_sys_flag(commit_offset > 0, true, true, false);
        if found.slave {
            sys_flag &= !pull_sys_flag::COMMIT_OFFSET;
        }
        let header = crate::remoting::headers::PullMessageRequestHeader {
            consumer_group: self.config.group.clone(),
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            queue_offset: request.next_offset,
            max_msg_nums: self.config.pull_batch_size,
            sys_flag,
            commit_offset,
            suspend_timeout_millis: self.config.broker_suspend_max_time.as_millis() as i64,
            subscription: Some(subscription.sub_string.clone()),
            sub_version: 0,
            expression_type: Some(EXPRESSION_TYPE_TAG.to_owned()),
            broker_name: None,
        };
        let result = instance
            .api()
            .pull_message(
                &found.broker_addr,
                &header,
                self.config.consumer_timeout_when_suspend,
            )
            .await?;
        lock(&self.pull_from_which_node).insert(queue.clone(), result.suggest_which_broker_id);
        Ok(result)
    }

    /// Hands freshly cached messages to the consume service (`submitConsumeRequest`): in
    /// batches to concurrent consumption; to the queue's one orderly task, started when
    /// [`put_messages`](super::process_queue::ProcessQueue::put_messages) asked for it.
    fn submit_consume(
        self: &Arc<Self>,
        queue: &MessageQueue,
        handle: &Arc<ProcessQueueHandle>,
        messages: Vec<StoredMessage>,
        dispatch_to_consume: bool,
    ) {
        match &self.listener {
            MessageListener::Concurrently(listener) => {
                for batch in consume_batches(messages, self.config.consume_message_batch_max_size) {
                    tokio::spawn(self.clone().consume_concurrently(
                        listener.clone(),
                        queue.clone(),
                        handle.clone(),
                        batch,
                    ));
                }
            }
            MessageListener::Orderly(listener) => {
                if dispatch_to_consume {
                    tokio::spawn(self.clone().consume_orderly(
                        listener.clone(),
                        queue.clone(),
                        handle.clone(),
                    ));
                }
            }
        }
    }

    /// One concurrent consume batch (`ConsumeRequest.run` and `processConsumeResult`).
    async fn consume_concurrently(
        self: Arc<Self>,
        listener: ConcurrentlyListener,
        queue: MessageQueue,
        handle: Arc<ProcessQueueHandle>,
        mut messages: Vec<StoredMessage>,
    ) {
        let Ok(_permit) = self.consume_permits.clone().acquire_owned().await else {
            return;
        };
        if self.stopped() || handle.state().dropped() {
            return;
        }
        reset_retry_topic(&mut messages, &self.config.group);
        let offsets: Vec<i64> = messages.iter().map(|m| m.queue_offset).collect();
        handle
            .state()
            .mark_consume_started(&offsets, self.env.clock.instant());
        let context = ConsumeContext {
            message_queue: queue.clone(),
        };
        // A panicking listener is Java's thrown exception: the batch is reconsumed later.
        let status = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            listener(&messages, &context)
        }))
        .unwrap_or(ConsumeStatus::ReconsumeLater);
        if handle.state().dropped() {
            return;
        }
        let mut failed = Vec::new();
        // Java's `processConsumeResult`: a clustering consumer sends what failed back; a
        // broadcasting one has no retry topic to get it back through, and drops it.
        let reconsume = status == ConsumeStatus::ReconsumeLater;
        if reconsume && self.config.message_model == MessageModel::Broadcasting {
            for message in &messages {
                tracing::warn!(
                    ?queue,
                    offset = message.queue_offset,
                    "broadcasting: the message consume failed, drop it"
                );
            }
        } else if reconsume {
            for message in &messages {
                if let Err(error) = self.send_back(&queue, message, 0).await {
                    tracing::warn!(?queue, offset = message.queue_offset, %error, "send message back failed");
                    failed.push(message.clone());
                }
            }
        }
        let done: Vec<i64> = offsets
            .iter()
            .copied()
            .filter(|offset| !failed.iter().any(|m| m.queue_offset == *offset))
            .collect();
        let commit = handle
            .state()
            .remove_messages(&done, self.env.clock.instant());
        if let Some(offset) = commit
            && !handle.state().dropped()
        {
            self.offset_store.update_offset(&queue, offset, true);
        }
        if !failed.is_empty() {
            for message in &mut failed {
                message.reconsume_times += 1;
            }
            let inner = self.clone();
            tokio::spawn(async move {
                inner.env.clock.sleep(CONSUME_LATER_DELAY).await;
                inner
                    .consume_concurrently_boxed(listener, queue, handle, failed)
                    .await;
            });
        }
    }

    /// [`consume_concurrently`](Self::consume_concurrently) boxed, so that a batch can
    /// re-submit itself.
    fn consume_concurrently_boxed(
        self: Arc<Self>,
        listener: ConcurrentlyListener,
        queue: MessageQueue,
        handle: Arc<ProcessQueueHandle>,
        messages: Vec<StoredMessage>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(self.consume_concurrently(listener, queue, handle, messages))
    }

    /// `sendMessageBack`: CONSUMER_SEND_MSG_BACK to the master of the queue's broker group
    /// with `delay_level` (0: the broker picks `3 + reconsumeTimes`; negative: straight to
    /// the dead-letter queue) and the group's max reconsume times, beyond which the broker
    /// moves the message to the dead-letter queue. When that fails, the message is re-sent
    /// to the group's retry topic through the client instance's internal producer
    /// ([`retry_message`]).
    async fn send_back(
        &self,
        queue: &MessageQueue,
        message: &StoredMessage,
        delay_level: i32,
    ) -> Result<(), SendBackError> {
        let Err(back) = self.send_back_to_broker(queue, message, delay_level).await else {
            return Ok(());
        };
        tracing::warn!(?queue, offset = message.queue_offset, error = %back,
            "CONSUMER_SEND_MSG_BACK failed; re-sending to the retry topic");
        let mut retry = retry_message(message, &self.config.group, self.max_reconsume_times());
        let resent = match self
            .registry
            .inner_producer(&self.env, &self.config.client)
            .await
        {
            Ok(producer) => producer.send(&mut retry).await.map(drop),
            Err(error) => Err(error),
        };
        resent.map_err(|resend| SendBackError { back, resend })
    }

    /// CONSUMER_SEND_MSG_BACK itself (`MQClientAPIImpl.consumerSendMessageBack`).
    async fn send_back_to_broker(
        &self,
        queue: &MessageQueue,
        message: &StoredMessage,
        delay_level: i32,
    ) -> Result<(), ClientError> {
        let instance = self
            .instance
            .upgrade()
            .ok_or_else(|| ClientError::BrokerNotFound(queue.broker_name.clone()))?;
        let addr = instance
            .find_broker_address_in_publish(&queue.broker_name)
            .unwrap_or_else(|| message.store_host.to_string());
        instance
            .api()
            .consumer_send_message_back(
                &addr,
                message,
                &self.config.group,
                delay_level,
                self.max_reconsume_times(),
                SEND_BACK_TIMEOUT,
            )
            .await
    }
}

/// A running consumer's links.
#[derive(Debug, Clone)]
struct Running {
    instance: Arc<ClientInstance>,
    inner: Arc<PushInner>,
}

/// The push consumer. See the module docs.
pub struct DefaultMqPushConsumer {
    config: PushConsumerConfig,
    env: Env,
    registry: Arc<ClientInstanceRegistry>,
    listener: MessageListener,
    state: Mutex<(ServiceState, Option<Running>)>,
}

impl std::fmt::Debug for DefaultMqPushConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultMqPushConsumer")
            .field("config", &self.config)
            .finish()
    }
}

impl DefaultMqPushConsumer {
    /// A consumer with `config` and `listener`, getting its client instance from `registry`.
    pub fn new(
        env: &Env,
        registry: Arc<ClientInstanceRegistry>,
        config: PushConsumerConfig,
        listener: MessageListener,
    ) -> Self {
        Self {
            config,
            env: env.clone(),
            registry,
            listener,
            state: Mutex::new((ServiceState::CreateJust, None)),
        }
    }

    /// The consumer's settings.
    pub fn config(&self) -> &PushConsumerConfig {
        &self.config
    }

    /// Where the consumer is in its life.
    pub fn state(&self) -> ServiceState {
        lock(&self.state).0
    }

    /// The client instance, while running.
    pub fn instance(&self) -> Option<Arc<ClientInstance>> {
        lock(&self.state).1.as_ref().map(|r| r.instance.clone())
    }

    /// Starts the consumer: checks the config, subscribes the configured topics and the
    /// group's retry topic, registers with the client instance, starts it, heartbeats and
    /// triggers an immediate rebalance. A refused start leaves it `CreateJust`.
    pub async fn start(&self) -> Result<(), PushConsumerError> {
        let group = self.config.group.clone();
        let (instance, inner) = {
            let mut state = lock(&self.state);
            if state.0 != ServiceState::CreateJust {
                return Err(PushConsumerError::NotRunning(state.0));
            }
            check_group_name(&group)?;
            if group == DEFAULT_CONSUMER_GROUP {
                return Err(PushConsumerError::ReservedGroup);
            }
            if self.config.consume_thread_max == 0 {
                return Err(PushConsumerError::InvalidConfig(
                    "consumeThreadMax must be > 0",
                ));
            }
            if self.config.consume_message_batch_max_size == 0 {
                return Err(PushConsumerError::InvalidConfig(
                    "consumeMessageBatchMaxSize must be > 0",
                ));
            }
            if self.config.pull_batch_size <= 0 {
                return Err(PushConsumerError::InvalidConfig(
                    "pullBatchSize must be > 0",
                ));
            }
            let wake = Arc::new(Notify::new());
            let instance = self.registry.get_or_create(
                &self.env,
                &self.config.client,
                ClientProcessorTable::new(),
            );
            let sub_version = self.env.clock.wall_ms();
            let mut subscriptions: BTreeMap<String, SubscriptionData> = self
                .config
                .subscriptions
                .iter()
                .map(|(topic, expression)| {
                    (
                        topic.clone(),
                        SubscriptionData::build(topic, expression, sub_version),
                    )
                })
                .collect();
            // Clustering groups also consume their retry topic (`copySubscription`);
            // broadcasting consumers never send back, so they have none.
            if self.config.message_model == MessageModel::Clustering {
                let retry = retry_topic(&group);
                subscriptions.insert(
                    retry.clone(),
                    SubscriptionData::build(&retry, SUB_ALL, sub_version),
                );
            }
            let storage = offset_storage_for(
                self.config.message_model,
                &instance,
                &self.env.disk,
                &self.config.local_offset_store_dir,
                &group,
            );
            let offset_store = Arc::new(OffsetStore::new(group.as_str(), storage));
            let mut rebalance = Rebalance::new(
                RebalanceConfig {
                    group: group.clone(),
                    client_id: instance.client_id().to_owned(),
                    message_model: self.config.message_model,
                    consume_from_where: self.config.consume_from_where,
                    consume_timestamp_ms: self.config.consume_timestamp_ms,
                    consume_orderly: self.listener.is_orderly(),
                },
                self.config.allocate_strategy.clone(),
                offset_store.clone(),
                Arc::new(InstanceRebalanceBroker::new(&instance)),
            );
            for subscription in subscriptions.values() {
                rebalance.set_subscription(subscription.clone());
            }
            let inner = Arc::new(PushInner {
                config: self.config.clone(),
                env: self.env.clone(),
                listener: self.listener.clone(),
                instance: Arc::downgrade(&instance),
                registry: self.registry.clone(),
                message_queue_locks: Mutex::default(),
                offset_store,
                rebalance: tokio::sync::Mutex::new(rebalance),
                subscriptions,
                subscribe_infos: Mutex::default(),
                pull_from_which_node: Mutex::default(),
                consume_permits: Arc::new(Semaphore::new(self.config.consume_thread_max)),
                stopped: AtomicBool::new(false),
                wake,
            });
            if !instance.register_consumer(&group, inner.clone()) {
                return Err(PushConsumerError::GroupAlreadyCreated(group));
            }
            instance.start();
            *state = (
                ServiceState::Running,
                Some(Running {
                    instance: instance.clone(),
                    inner: inner.clone(),
                }),
            );
            (instance, inner)
        };
        for topic in inner.subscriptions.keys() {
            if let Err(error) = instance.update_topic_route(topic).await {
                tracing::warn!(%group, topic, %error, "topic route update failed at start");
            }
        }
        instance.send_heartbeat_to_all_brokers().await;
        tokio::spawn(inner.clone().rebalance_service());
        match &inner.listener {
            MessageListener::Orderly(_)
                if self.config.message_model == MessageModel::Clustering =>
            {
                tokio::spawn(inner.clone().lock_service());
            }
            MessageListener::Orderly(_) => {}
            MessageListener::Concurrently(_) => {
                tokio::spawn(inner.clone().clean_expired_service());
            }
        }
        tracing::info!(%group, client_id = instance.client_id(), "push consumer started");
        Ok(())
    }

    /// Stops the consumer: stops the rebalance service and pull loops, commits offsets,
    /// unregisters the group and, when nothing else uses it, shuts the instance down.
    pub async fn shutdown(&self) {
        let running = {
            let mut state = lock(&self.state);
            if state.0 != ServiceState::Running {
                return;
            }
            state.0 = ServiceState::ShutdownAlready;
            state.1.take()
        };
        let Some(Running { instance, inner }) = running else {
            return;
        };
        inner.stopped.store(true, Ordering::Release);
        inner.wake.notify_one();
        let handles: Vec<Arc<ProcessQueueHandle>> = inner
            .rebalance
            .lock()
            .await
            .process_queues()
            .values()
            .cloned()
            .collect();
        for handle in &handles {
            handle.state().set_dropped(true);
        }
        let orderly_clustering =
            inner.listener.is_orderly() && self.config.message_model == MessageModel::Clustering;
        if orderly_clustering {
            // Wait out the orderly batches still running, so that their offsets are in the
            // commit below and no other consumer starts on a queue while one runs here.
            for handle in &handles {
                drop(handle.consume_lock().lock().await);
            }
        }
        inner.persist_consumer_offset().await;
        if orderly_clustering {
            // After the commit (Java unlocks first), so the next owner starts where this
            // consumer stopped.
            inner.rebalance.lock().await.unlock_all(false).await;
        }
        instance.unregister_consumer(&self.config.group).await;
        self.registry.release_if_unused(&instance).await;
        tracing::info!(group = %self.config.group, "push consumer shut down");
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn message(topic: &str, offset: i64, properties: &BTreeMap<String, String>) -> StoredMessage {
        StoredMessage {
            store_size: 0,
            body_crc: 0,
            queue_id: 0,
            flag: 0,
            queue_offset: offset,
            commit_log_offset: 0,
            sys_flag: 0,
            born_timestamp: 0,
            born_host: "127.0.0.1:1".parse().expect("a valid literal address"),
            store_timestamp: 0,
            store_host: "127.0.0.1:2".parse().expect("a valid literal address"),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: None,
            topic: topic.to_owned(),
            properties: crate::store::message::encode_properties(properties),
            msg_id: String::new(),
        }
    }

    #[test]
    fn retry_message_gets_its_original_topic_back() {
        let props = BTreeMap::from([(property_key::RETRY_TOPIC.to_owned(), "T".to_owned())]);
        let mut messages = vec![
            message("%RETRY%g", 0, &props),
            message("%RETRY%other", 1, &props),
            message("T2", 2, &BTreeMap::new()),
        ];
        reset_retry_topic(&mut messages, "g");
        assert_eq!(messages[0].topic, "T");
        assert_eq!(messages[1].topic, "%RETRY%other");
        assert_eq!(messages[2].topic, "T2");
    }

    #[test]
    fn consume_batches_split_by_batch_max() {
        let messages: Vec<_> = (0..5).map(|i| message("T", i, &BTreeMap::new())).collect();
        let sizes: Vec<usize> = consume_batches(messages.clone(), 2)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, vec![2, 2, 1]);
        assert_eq!(consume_batches(messages, 0).len(), 5);
    }

    #[test]
    fn retry_message_carries_what_the_broker_needs_for_retry_and_dlq() {
        let props = BTreeMap::from([
            (property_key::UNIQ_KEY.to_owned(), "U1".to_owned()),
            (property_key::TRAN_MSG.to_owned(), "true".to_owned()),
            ("TAGS".to_owned(), "TagA".to_owned()),
        ]);
        let mut original = message("T", 7, &props);
        original.msg_id = "MSGID".into();
        original.reconsume_times = 2;
        original.flag = 5;
        original.body = Some(Bytes::from_static(b"payload"));
        let retry = retry_message(&original, "cg", 16);
        assert_eq!(retry.topic, "%RETRY%cg");
        assert_eq!(retry.flag, 5);
        assert_eq!(&retry.body[..], b"payload");
        let expect = |key: &str, value: &str| assert_eq!(retry.property(key), Some(value), "{key}");
        expect(property_key::ORIGIN_MESSAGE_ID, "MSGID");
        expect(property_key::RETRY_TOPIC, "T");
        expect(property_key::RECONSUME_TIME, "3");
        expect(property_key::MAX_RECONSUME_TIMES, "16");
        expect(property_key::DELAY, "5");
        expect(property_key::UNIQ_KEY, "U1");
        expect("TAGS", "TagA");
        assert_eq!(retry.property(property_key::TRAN_MSG), None);

        // A message already retried keeps its first origin id.
        let mut again = original.clone();
        again.properties = crate::store::message::encode_properties(&BTreeMap::from([(
            property_key::ORIGIN_MESSAGE_ID.to_owned(),
            "FIRST".to_owned(),
        )]));
        let retry = retry_message(&again, "cg", 16);
        assert_eq!(
            retry.property(property_key::ORIGIN_MESSAGE_ID),
            Some("FIRST")
        );
    }

    #[test]
    fn max_reconsume_times_minus_one_means_sixteen() {
        let mut config = PushConsumerConfig::default();
        assert_eq!(config.effective_max_reconsume_times(), 16);
        config.max_reconsume_times = 3;
        assert_eq!(config.effective_max_reconsume_times(), 3);
        assert_eq!(config.consume_message_batch_max_size, 1);
        assert_eq!(config.pull_batch_size, 32);
    }
}
