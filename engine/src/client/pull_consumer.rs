//! The pull consumer (Java 4.9's `DefaultMQPullConsumer` and `DefaultMQPullConsumerImpl`):
//! the application picks the queue and the offset of every pull, and records its progress
//! itself.
//!
//! Where it sits: on top of the client building blocks, beside the producer. The shared
//! [`ClientInstance`] owns connections and routes and sends heartbeats carrying this
//! consumer's [`ConsumerData`] (CONSUME_ACTIVELY); [`MqClientApi`](super::api::MqClientApi)
//! builds each pull; [`OffsetStore`] keeps the group's offsets and the instance's
//! periodic task commits them.
//!
//! A pull (`pullSyncImpl` and `PullAPIWrapper.pullKernelImpl`): the topic is subscribed to
//! with `*` if it was not yet (so heartbeats name it); the request goes to the broker id the
//! last answer for that queue suggested (the master at first), any member of the group when
//! that one is unknown, after one route refresh when the group is unknown; its sysFlag
//! carries SUBSCRIPTION, and SUSPEND for [`pull_block_if_not_found`] — then the broker holds
//! it up to `broker_suspend_max_time` and the client waits `consumer_timeout_when_suspend`.
//! The answer is then re-filtered by tag as `PullAPIWrapper.processPullResult` does
//! ([`filter_by_tags`]): the broker filters by tag hash code, which may collide.
//!
//! Deviations from Java: there is no rebalance (Java's `RebalancePullImpl` only feeds the
//! optional `MessageQueueListener`), so the periodic persist commits the offsets of every
//! queue of a subscribed topic, where Java commits those of the queues allocated to it —
//! the same set while the group has one consumer; SQL92 and class filters, hooks and
//! namespaces are not implemented.
//!
//! A broadcasting consumer keeps its offsets in a local file per client and group
//! ([`LocalFileOffsetStorage`](super::offset_store::LocalFileOffsetStorage)), as Java's
//! `LocalFileOffsetStore`; a clustering one commits them to the brokers.
//!
//! [`pull_block_if_not_found`]: DefaultMqPullConsumer::pull_block_if_not_found

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::api::{ClientError, PullResult};
use super::config::ClientConfig;
use super::instance::{
    ClientInstance, ClientInstanceRegistry, ClientProcessorTable, MqConsumerInner, ServiceState,
    topic_route_to_subscribe_info,
};
use super::offset_store::{
    DEFAULT_LOCAL_OFFSET_STORE_DIR, OffsetStore, ReadOffset, ReadOffsetType, offset_storage_for,
};
use super::producer::{GroupNameError, check_group_name};
use crate::Env;
use crate::broker::processor::pull::pull_sys_flag;
use crate::protocol::MASTER_ID;
use crate::protocol::heartbeat::{
    ConsumeFromWhere, ConsumeType, ConsumerData, EXPRESSION_TYPE_TAG, MessageModel, MessageQueue,
    SUB_ALL, SubscriptionData,
};
use crate::store::message::StoredMessage;

/// The group a consumer may not use (`MixAll.DEFAULT_CONSUMER_GROUP`): Java reserves it.
pub const DEFAULT_CONSUMER_GROUP: &str = "DEFAULT_CONSUMER";

/// Timeout of the admin calls (`MQAdminImpl.timeoutMillis`): max, min and search offset.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(6);

/// The pull consumer's settings (`DefaultMQPullConsumer`'s fields).
#[derive(Debug, Clone)]
pub struct PullConsumerConfig {
    /// `consumerGroup`.
    pub group: String,
    /// `messageModel`: where the offsets live (the brokers when clustering, a local file
    /// when broadcasting).
    pub message_model: MessageModel,
    /// `brokerSuspendMaxTimeMillis`: how long a broker may hold a blocking pull (20 s).
    pub broker_suspend_max_time: Duration,
    /// `consumerTimeoutMillisWhenSuspend`: how long the client waits for a blocking pull's
    /// answer (30 s); must exceed `broker_suspend_max_time`.
    pub consumer_timeout_when_suspend: Duration,
    /// `consumerPullTimeoutMillis`: how long the client waits for a non-blocking pull (10 s).
    pub consumer_pull_timeout: Duration,
    /// `registerTopics`: topics subscribed with `*` at start.
    pub register_topics: BTreeSet<String>,
    /// Where a broadcasting consumer keeps its offsets (Java's
    /// `rocketmq.client.localOffsetStoreDir`), a path on the consumer's disk.
    pub local_offset_store_dir: String,
    /// The client settings, shared with the client instance.
    pub client: ClientConfig,
}

impl Default for PullConsumerConfig {
    fn default() -> Self {
        Self {
            group: String::new(),
            message_model: MessageModel::Clustering,
            broker_suspend_max_time: Duration::from_secs(20),
            consumer_timeout_when_suspend: Duration::from_secs(30),
            consumer_pull_timeout: Duration::from_secs(10),
            register_topics: BTreeSet::new(),
            local_offset_store_dir: DEFAULT_LOCAL_OFFSET_STORE_DIR.to_owned(),
            client: ClientConfig::default(),
        }
    }
}

impl PullConsumerConfig {
    /// Java's defaults for group `group` with the name servers `namesrv_addr`.
    pub fn new(group: impl Into<String>, namesrv_addr: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            client: ClientConfig::with_namesrv_addr(namesrv_addr),
            ..Self::default()
        }
    }
}

/// Why a pull-consumer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PullConsumerError {
    /// The consumer is not running (not started, or shut down). Start it.
    #[error("the pull consumer service state not OK, {0:?}")]
    NotRunning(ServiceState),
    /// The group name is refused; nothing was registered.
    #[error("invalid consumer group: {0}")]
    InvalidGroup(#[from] GroupNameError),
    /// The group is [`DEFAULT_CONSUMER_GROUP`]. Choose another.
    #[error("consumerGroup can not equal {DEFAULT_CONSUMER_GROUP}, please specify another one")]
    ReservedGroup,
    /// Another consumer of this group is registered with the same client instance. Use
    /// another group or instance name.
    #[error("the consumer group[{0}] has been created before, specify another name please")]
    GroupAlreadyCreated(String),
    /// A pull argument is out of range (`offset < 0`, `maxNums <= 0`); nothing was sent.
    #[error("{0}")]
    InvalidArgument(&'static str),
    /// The name server knows the topic but lists no readable queue for it (`Namesrv find
    /// no queue for topic`).
    #[error("namesrv find no queue for topic {0}")]
    NoQueues(String),
    /// The call failed on the way or at the broker or name server; the error says which.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The sysFlag of a consumer's pull (`PullSysFlag.buildSysFlag`).
pub fn build_pull_sys_flag(
    commit_offset: bool,
    suspend: bool,
    subscription: bool,
    class_filter: bool,
) -> i32 {
    [
        (commit_offset, pull_sys_flag::COMMIT_OFFSET),
        (suspend, pull_sys_flag::SUSPEND),
        (subscription, pull_sys_flag::SUBSCRIPTION),
        (class_filter, pull_sys_flag::CLASS_FILTER),
    ]
    .into_iter()
    .filter(|(set, _)| *set)
    .fold(0, |flag, (_, bit)| flag | bit)
}

/// The client-side tag re-filter of `PullAPIWrapper.processPullResult`: with a non-empty
/// tag set (and no class filter), only the messages whose `TAGS` is in it stay — a message
/// without tags goes; otherwise every message stays.
pub fn filter_by_tags(
    messages: Vec<StoredMessage>,
    subscription: &SubscriptionData,
) -> Vec<StoredMessage> {
    if subscription.tags_set.is_empty() || subscription.class_filter_mode {
        return messages;
    }
    messages
        .into_iter()
        .filter(|message| {
            message
                .tags()
                .is_some_and(|tags| subscription.tags_set.contains(tags))
        })
        .collect()
}

/// One pull as [`PullApiWrapper::pull_kernel`] sends it (`pullKernelImpl`'s arguments).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KernelPull<'a> {
    /// The consumer group.
    pub(crate) group: &'a str,
    /// The queue to pull.
    pub(crate) queue: &'a MessageQueue,
    /// The subscription sent with the pull and re-applied to its answer.
    pub(crate) subscription: &'a SubscriptionData,
    /// The first offset to read.
    pub(crate) offset: i64,
    /// At most this many messages.
    pub(crate) max_nums: i32,
    /// The sysFlag ([`build_pull_sys_flag`]); COMMIT_OFFSET is cleared for a slave.
    pub(crate) sys_flag: i32,
    /// The offset committed with the pull when COMMIT_OFFSET is set.
    pub(crate) commit_offset: i64,
    /// How long the broker may hold the pull when SUSPEND is set.
    pub(crate) broker_suspend_max_time: Duration,
    /// How long the client waits for the answer.
    pub(crate) timeout: Duration,
}

/// The pull path shared by the consumers that pull synchronously (Java's `PullAPIWrapper`):
/// which broker of each queue's group to ask, the request, and the client-side tag filter
/// of the answer.
#[derive(Debug, Default)]
pub(crate) struct PullApiWrapper {
    /// Queue → broker id to pull from next (`pullFromWhichNodeTable`).
    pull_from_which_node: Mutex<BTreeMap<MessageQueue, i64>>,
}

impl PullApiWrapper {
    /// `pullKernelImpl` and `processPullResult`: sends `pull` to the broker id the last
    /// answer for the queue suggested (the master at first; any member of the group when
    /// that one is unknown, after one route refresh when the group is unknown), records the
    /// broker id this answer suggests, and re-filters the messages by tag.
    pub(crate) async fn pull_kernel(
        &self,
        instance: &ClientInstance,
        pull: &KernelPull<'_>,
    ) -> Result<PullResult, ClientError> {
        let queue = pull.queue;
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
        let mut sys_flag = pull.sys_flag;
        if found.slave {
            // Slaves take no offset commits.
            sys_flag &= !pull_sys_flag::COMMIT_OFFSET;
        }
        let header = crate::remoting::headers::PullMessageRequestHeader {
            consumer_group: pull.group.to_owned(),
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            queue_offset: pull.offset,
            max_msg_nums: pull.max_nums,
            sys_flag,
            commit_offset: pull.commit_offset,
            suspend_timeout_millis: pull.broker_suspend_max_time.as_millis() as i64,
            subscription: Some(pull.subscription.sub_string.clone()),
            // Tag subscriptions send version 0: the broker builds its own from the string.
            sub_version: 0,
            expression_type: Some(EXPRESSION_TYPE_TAG.to_owned()),
            broker_name: None,
        };
        let mut result = instance
            .api()
            .pull_message(&found.broker_addr, &header, pull.timeout)
            .await?;
        lock(&self.pull_from_which_node).insert(queue.clone(), result.suggest_which_broker_id);
        result.messages = filter_by_tags(std::mem::take(&mut result.messages), pull.subscription);
        Ok(result)
    }
}

/// The readable queues of `topic`, fresh from the name server
/// (`MQAdminImpl.fetchSubscribeMessageQueues` without its empty check).
pub(crate) async fn fetch_topic_queues(
    instance: &ClientInstance,
    topic: &str,
) -> Result<BTreeSet<MessageQueue>, ClientError> {
    let route = instance
        .api()
        .topic_route(topic, instance.config().mq_client_api_timeout)
        .await?;
    Ok(topic_route_to_subscribe_info(topic, &route))
}

/// The admin offset queries of `MQAdminImpl`, asked of the master of a queue's broker group.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AdminOffset {
    /// The queue's smallest offset still stored (`minOffset`).
    Min,
    /// The queue's next offset to be written (`maxOffset`).
    Max,
    /// The offset of the queue's first message stored at or after this wall time in ms
    /// (`searchOffset`).
    Search(i64),
}

/// Asks the master of `queue`'s broker group (`findBrokerAddressInPublish`, refreshing the
/// route once when unknown) for `what`, waiting up to [`ADMIN_TIMEOUT`].
pub(crate) async fn admin_offset(
    instance: &ClientInstance,
    queue: &MessageQueue,
    what: AdminOffset,
) -> Result<i64, ClientError> {
    let addr = instance
        .find_with_route_refresh(&queue.topic, |instance| {
            instance.find_broker_address_in_publish(&queue.broker_name)
        })
        .await
        .ok_or_else(|| ClientError::BrokerNotFound(queue.broker_name.clone()))?;
    let api = instance.api();
    let (topic, queue_id) = (&queue.topic, queue.queue_id);
    match what {
        AdminOffset::Min => api.min_offset(&addr, topic, queue_id, ADMIN_TIMEOUT).await,
        AdminOffset::Max => api.max_offset(&addr, topic, queue_id, ADMIN_TIMEOUT).await,
        AdminOffset::Search(timestamp_ms) => {
            api.search_offset(&addr, topic, queue_id, timestamp_ms, ADMIN_TIMEOUT)
                .await
        }
    }
}

/// What the client instance sees of the consumer: its subscriptions, the readable queues of
/// its topics, its offsets; and the per-queue broker id the last pull suggested.
#[derive(Debug)]
struct PullConsumerInner {
    group: String,
    message_model: MessageModel,
    offset_store: OffsetStore,
    /// Topic → subscription (`rebalanceImpl.subscriptionInner`).
    subscriptions: Mutex<BTreeMap<String, SubscriptionData>>,
    /// Topic → readable queues, from installed routes (`topicSubscribeInfoTable`).
    subscribe_infos: Mutex<BTreeMap<String, BTreeSet<MessageQueue>>>,
    /// Builds the pulls and remembers which broker of each queue to pull from next.
    pull_api: PullApiWrapper,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every table is updated by single inserts, so a poisoned one is still consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PullConsumerInner {
    fn is_subscribed(&self, topic: &str) -> bool {
        lock(&self.subscriptions).contains_key(topic)
    }

    /// `subscriptionAutomatically`: subscribes `topic` with `*` unless it already is.
    fn subscribe_automatically(&self, topic: &str, sub_version: i64) {
        lock(&self.subscriptions)
            .entry(topic.to_owned())
            .or_insert_with(|| SubscriptionData::build(topic, SUB_ALL, sub_version));
    }

    /// The queues whose offsets the periodic persist commits: every queue of a subscribed
    /// topic that is known from a route or has an offset.
    fn owned_queues(&self) -> BTreeSet<MessageQueue> {
        let topics: Vec<String> = lock(&self.subscriptions).keys().cloned().collect();
        let infos = lock(&self.subscribe_infos);
        let mut queues = BTreeSet::new();
        for topic in &topics {
            queues.extend(infos.get(topic).into_iter().flatten().cloned());
            queues.extend(self.offset_store.clone_offset_table(topic).into_keys());
        }
        queues
    }
}

#[async_trait::async_trait]
impl MqConsumerInner for PullConsumerInner {
    fn consumer_data(&self) -> ConsumerData {
        ConsumerData {
            consume_from_where: ConsumeFromWhere::ConsumeFromLastOffset,
            consume_type: ConsumeType::ConsumeActively,
            group_name: self.group.clone(),
            message_model: self.message_model,
            subscription_data_set: lock(&self.subscriptions).values().cloned().collect(),
            unit_mode: false,
        }
    }

    fn is_subscribe_topic_need_update(&self, topic: &str) -> bool {
        self.is_subscribed(topic) && !lock(&self.subscribe_infos).contains_key(topic)
    }

    fn update_topic_subscribe_info(&self, topic: &str, queues: &BTreeSet<MessageQueue>) {
        if self.is_subscribed(topic) {
            lock(&self.subscribe_infos).insert(topic.to_owned(), queues.clone());
        }
    }

    async fn persist_consumer_offset(&self) {
        self.offset_store.persist_all(&self.owned_queues()).await;
    }
}

/// A running consumer's links: its instance and what it registered there.
#[derive(Debug, Clone)]
struct Running {
    instance: Arc<ClientInstance>,
    inner: Arc<PullConsumerInner>,
}

/// The pull consumer. See the module docs.
#[derive(Debug)]
pub struct DefaultMqPullConsumer {
    config: PullConsumerConfig,
    env: Env,
    registry: Arc<ClientInstanceRegistry>,
    state: Mutex<(ServiceState, Option<Running>)>,
}

impl DefaultMqPullConsumer {
    /// A consumer with `config` that gets its client instance from `registry` and runs on
    /// `env`. Like the producer, it leaves the instance name as configured: callers set a
    /// process-unique one (Java's `changeInstanceNameToPID`).
    pub fn new(
        env: &Env,
        registry: Arc<ClientInstanceRegistry>,
        config: PullConsumerConfig,
    ) -> Self {
        Self {
            config,
            env: env.clone(),
            registry,
            state: Mutex::new((ServiceState::CreateJust, None)),
        }
    }

    /// The consumer's settings.
    pub fn config(&self) -> &PullConsumerConfig {
        &self.config
    }

    /// Where the consumer is in its life.
    pub fn state(&self) -> ServiceState {
        lock(&self.state).0
    }

    /// The client instance, while running.
    pub fn instance(&self) -> Option<Arc<ClientInstance>> {
        lock(&self.state)
            .1
            .as_ref()
            .map(|running| running.instance.clone())
    }

    /// Starts the consumer (`start`): checks the config, subscribes the registered topics
    /// with `*`, registers the group with the client instance of its config and starts the
    /// instance (which heartbeats it from then on). Only a new consumer can start; a refused
    /// start leaves it `CreateJust`.
    pub async fn start(&self) -> Result<(), PullConsumerError> {
        let mut state = lock(&self.state);
        if state.0 != ServiceState::CreateJust {
            return Err(PullConsumerError::NotRunning(state.0));
        }
        let group = self.config.group.as_str();
        check_group_name(group)?;
        if group == DEFAULT_CONSUMER_GROUP {
            return Err(PullConsumerError::ReservedGroup);
        }
        let instance = self.registry.get_or_create(
            &self.env,
            &self.config.client,
            ClientProcessorTable::new(),
        );
        let sub_version = self.env.clock.wall_ms();
        let subscriptions = self
            .config
            .register_topics
            .iter()
            .map(|topic| {
                (
                    topic.clone(),
                    SubscriptionData::build(topic, SUB_ALL, sub_version),
                )
            })
            .collect();
        let inner = Arc::new(PullConsumerInner {
            group: group.to_owned(),
            message_model: self.config.message_model,
            offset_store: OffsetStore::new(
                group,
                offset_storage_for(
                    self.config.message_model,
                    &instance,
                    &self.env.disk,
                    &self.config.local_offset_store_dir,
                    group,
                ),
            ),
            subscriptions: Mutex::new(subscriptions),
            subscribe_infos: Mutex::default(),
            pull_api: PullApiWrapper::default(),
        });
        if !instance.register_consumer(group, inner.clone()) {
            return Err(PullConsumerError::GroupAlreadyCreated(group.to_owned()));
        }
        instance.start();
        tracing::info!(
            group,
            client_id = instance.client_id(),
            "pull consumer started"
        );
        *state = (ServiceState::Running, Some(Running { instance, inner }));
        Ok(())
    }

    /// Stops the consumer (`shutdown`): commits its offsets, unregisters its group from the
    /// client instance and every broker and, when no producer or consumer is left on the
    /// instance, shuts the instance down and removes it from the registry.
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
        inner.persist_consumer_offset().await;
        instance.unregister_consumer(&self.config.group).await;
        self.registry.release_if_unused(&instance).await;
        tracing::info!(group = %self.config.group, "pull consumer shut down");
    }

    fn running(&self) -> Result<Running, PullConsumerError> {
        match &*lock(&self.state) {
            (ServiceState::Running, Some(running)) => Ok(running.clone()),
            (state, _) => Err(PullConsumerError::NotRunning(*state)),
        }
    }

    /// The readable queues of `topic`, fresh from the name server
    /// (`fetchSubscribeMessageQueues`).
    pub async fn fetch_subscribe_message_queues(
        &self,
        topic: &str,
    ) -> Result<BTreeSet<MessageQueue>, PullConsumerError> {
        let Running { instance, .. } = self.running()?;
        let queues = fetch_topic_queues(&instance, topic).await?;
        if queues.is_empty() {
            return Err(PullConsumerError::NoQueues(topic.to_owned()));
        }
        Ok(queues)
    }

    /// Pulls up to `max_nums` messages of `queue` from `offset` whose tags match
    /// `sub_expression` (`*`, or tags joined by `||`), without waiting for new messages
    /// (`pull`). A result whose messages were all filtered out client-side stays
    /// [`Found`](super::api::PullStatus::Found) with no message, as in Java.
    pub async fn pull(
        &self,
        queue: &MessageQueue,
        sub_expression: &str,
        offset: i64,
        max_nums: i32,
    ) -> Result<PullResult, PullConsumerError> {
        self.pull_sync(queue, sub_expression, offset, max_nums, false)
            .await
    }

    /// As [`pull`](Self::pull), but when nothing is there yet the broker holds the request
    /// until a message arrives or `broker_suspend_max_time` passes
    /// (`pullBlockIfNotFound`); then the answer is NO_NEW_MSG.
    pub async fn pull_block_if_not_found(
        &self,
        queue: &MessageQueue,
        sub_expression: &str,
        offset: i64,
        max_nums: i32,
    ) -> Result<PullResult, PullConsumerError> {
        self.pull_sync(queue, sub_expression, offset, max_nums, true)
            .await
    }

    /// `pullSyncImpl` with `pullKernelImpl` and `processPullResult`.
    async fn pull_sync(
        &self,
        queue: &MessageQueue,
        sub_expression: &str,
        offset: i64,
        max_nums: i32,
        block: bool,
    ) -> Result<PullResult, PullConsumerError> {
        let Running { instance, inner } = self.running()?;
        if offset < 0 {
            return Err(PullConsumerError::InvalidArgument("offset < 0"));
        }
        if max_nums <= 0 {
            return Err(PullConsumerError::InvalidArgument("maxNums <= 0"));
        }
        let sub_version = self.env.clock.wall_ms();
        inner.subscribe_automatically(&queue.topic, sub_version);
        let subscription = SubscriptionData::build(&queue.topic, sub_expression, sub_version);

        let timeout = if block {
            self.config.consumer_timeout_when_suspend
        } else {
            self.config.consumer_pull_timeout
        };
        let request = KernelPull {
            group: &self.config.group,
            queue,
            subscription: &subscription,
            offset,
            max_nums,
            sys_flag: build_pull_sys_flag(false, block, true, false),
            commit_offset: 0,
            broker_suspend_max_time: self.config.broker_suspend_max_time,
            timeout,
        };
        let result = inner.pull_api.pull_kernel(&instance, &request).await?;
        Ok(result)
    }

    /// Records `offset` as `queue`'s next offset to consume (`updateConsumeOffset`); it is
    /// committed to the broker by the periodic persist and at shutdown, if `queue`'s topic is
    /// subscribed (pulled from or registered).
    pub fn update_consume_offset(
        &self,
        queue: &MessageQueue,
        offset: i64,
    ) -> Result<(), PullConsumerError> {
        let Running { inner, .. } = self.running()?;
        inner.offset_store.update_offset(queue, offset, false);
        Ok(())
    }

    /// The group's next offset to consume of `queue` (`fetchConsumeOffset`): from the
    /// broker when `from_store`, else the recorded one and the broker's when none is
    /// recorded. `Ok(None)` is Java's `-1` (no offset anywhere); a failed broker query
    /// (Java's `-2`) is the error.
    pub async fn fetch_consume_offset(
        &self,
        queue: &MessageQueue,
        from_store: bool,
    ) -> Result<Option<i64>, PullConsumerError> {
        let Running { inner, .. } = self.running()?;
        let read_type = if from_store {
            ReadOffsetType::ReadFromStore
        } else {
            ReadOffsetType::MemoryFirstThenStore
        };
        match inner.offset_store.read_offset(queue, read_type).await {
            ReadOffset::Found(offset) => Ok(Some(offset)),
            ReadOffset::NotFound => Ok(None),
            ReadOffset::QueryFailed(error) => Err(error.into()),
        }
    }

    /// The queue's next offset to be written (`maxOffset`), from its master.
    pub async fn max_offset(&self, queue: &MessageQueue) -> Result<i64, PullConsumerError> {
        self.admin_offset(queue, AdminOffset::Max).await
    }

    /// The queue's smallest offset still stored (`minOffset`), from its master.
    pub async fn min_offset(&self, queue: &MessageQueue) -> Result<i64, PullConsumerError> {
        self.admin_offset(queue, AdminOffset::Min).await
    }

    /// The offset of the queue's first message stored at or after `timestamp_ms`
    /// (`searchOffset`), from its master.
    pub async fn search_offset(
        &self,
        queue: &MessageQueue,
        timestamp_ms: i64,
    ) -> Result<i64, PullConsumerError> {
        self.admin_offset(queue, AdminOffset::Search(timestamp_ms))
            .await
    }

    async fn admin_offset(
        &self,
        queue: &MessageQueue,
        what: AdminOffset,
    ) -> Result<i64, PullConsumerError> {
        let Running { instance, .. } = self.running()?;
        Ok(admin_offset(&instance, queue, what).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::message::{encode_properties, property_key};

    fn message(queue_offset: i64, tags: Option<&str>) -> StoredMessage {
        let mut properties = BTreeMap::new();
        if let Some(tags) = tags {
            properties.insert(property_key::TAGS.to_owned(), tags.to_owned());
        }
        StoredMessage {
            store_size: 0,
            body_crc: 0,
            queue_id: 0,
            flag: 0,
            queue_offset,
            commit_log_offset: 0,
            sys_flag: 0,
            born_timestamp: 0,
            born_host: "127.0.0.1:1".parse().unwrap(),
            store_timestamp: 0,
            store_host: "127.0.0.1:2".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: None,
            topic: "T".into(),
            properties: encode_properties(&properties),
            msg_id: String::new(),
        }
    }

    fn offsets(messages: &[StoredMessage]) -> Vec<i64> {
        messages.iter().map(|m| m.queue_offset).collect()
    }

    fn pulled() -> Vec<StoredMessage> {
        vec![
            message(0, Some("TagA")),
            message(1, Some("TagB")),
            message(2, None),
            message(3, Some("TagC")),
            message(4, Some("TagA")),
        ]
    }

    #[test]
    fn a_tag_subscription_keeps_only_messages_with_a_listed_tag() {
        let only_a = SubscriptionData::build("T", "TagA", 1);
        assert_eq!(offsets(&filter_by_tags(pulled(), &only_a)), vec![0, 4]);
        let a_or_c = SubscriptionData::build("T", " TagA ||TagC", 1);
        assert_eq!(offsets(&filter_by_tags(pulled(), &a_or_c)), vec![0, 3, 4]);
    }

    #[test]
    fn subscribing_to_every_tag_keeps_every_message_even_untagged() {
        for expression in ["*", "", "  "] {
            let all = SubscriptionData::build("T", expression, 1);
            assert!(all.tags_set.is_empty(), "{expression:?}");
            assert_eq!(all.sub_string, SUB_ALL);
            assert_eq!(
                offsets(&filter_by_tags(pulled(), &all)),
                vec![0, 1, 2, 3, 4]
            );
        }
    }

    #[test]
    fn subscription_parsing_splits_on_double_bars_with_java_hash_codes() {
        let data = SubscriptionData::build("T", "TagA || TagB ||", 7);
        assert_eq!(
            data.tags_set,
            BTreeSet::from(["TagA".to_owned(), "TagB".to_owned()])
        );
        // "TagA".hashCode() and "TagB".hashCode() in Java.
        assert_eq!(data.code_set, BTreeSet::from([2_598_919, 2_598_920]));
        assert_eq!(data.sub_string, "TagA || TagB ||");
        assert_eq!(data.sub_version, 7);
        assert_eq!(data.expression_type, EXPRESSION_TYPE_TAG);
    }

    #[test]
    fn pull_sys_flags_follow_java_bits() {
        assert_eq!(build_pull_sys_flag(false, false, true, false), 0x4);
        assert_eq!(build_pull_sys_flag(false, true, true, false), 0x6);
        assert_eq!(build_pull_sys_flag(true, true, true, true), 0xF);
        assert_eq!(build_pull_sys_flag(false, false, false, false), 0);
    }
}
