//! The shared client instance (Java's `MQClientInstance`) and the registry that hands out one
//! instance per client id (Java's `MQClientManager`).
//!
//! Every producer and consumer of a process whose [`ClientConfig`] gives the same client id
//! shares one instance: one [`RemotingClient`] (so one connection per broker and name
//! server), one route cache, one heartbeat. Producers and consumers register with it through
//! the small [`MqProducerInner`] and [`MqConsumerInner`] traits; the instance asks them which
//! topics they use, tells them when a topic's route changes, and builds its heartbeats from
//! them.
//!
//! What the instance keeps:
//!
//! - the route table, topic → [`TopicRouteData`] as last installed;
//! - the broker address table, broker name → {broker id → address}, filled from every
//!   installed route and pruned of addresses no cached route mentions any more
//!   ([`clean_offline_brokers`](ClientInstance::clean_offline_brokers));
//! - the broker version table, broker name → {address → version}, from heartbeat answers.
//!
//! Route refresh (R69–R71): under the name-server lock (a 3 s try), fetch the topic's route
//! (or, for a producer's topic the name server does not know yet, the route of the
//! auto-create template `TBW102` with its queue counts capped); install it only when it
//! differs from the cached one after sorting both — or when a producer or consumer says it
//! still lacks the topic. Installing copies the brokers' addresses into the address table and
//! hands the route to every producer and the readable queues to every consumer.
//!
//! Periodic tasks ([`start`](ClientInstance::start)), on the injected clock: every used
//! topic's route after 10 ms and then every `pollNameServerInterval`; offline-broker cleaning
//! and a heartbeat to every known broker after 1 s and then every `heartbeatBrokerInterval`
//! (to masters only while no consumer is registered); consumer offsets after 10 s and then
//! every `persistConsumerOffsetInterval`. The tasks hold only a weak reference, so dropping
//! the last handle of an instance stops them.
//!
//! Broker-initiated requests are served by [`ClientRequestProcessor`]s; each gets the
//! instance with every request. Every instance serves NOTIFY_CONSUMER_IDS_CHANGED itself
//! ([`NotifyConsumerIdsChangedProcessor`]: every consumer rebalances at once) and
//! CHECK_TRANSACTION_STATE
//! itself ([`CheckTransactionStateProcessor`]): it hands the check to the producer of the
//! half message's group through [`MqProducerInner::check_transaction_state`], so a
//! transactional producer is asked whichever member created the instance. Codes without a
//! processor are answered REQUEST_CODE_NOT_SUPPORTED by the remoting layer.
//!
//! Invariants: no table lock is held across an await or while a producer's or consumer's
//! callback runs (callbacks may call back into the instance); iteration over every table is
//! in key order, so heartbeat fan-out and route refreshes are reproducible under simulation;
//! every random choice draws from the instance's own fork of the seeded RNG.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::api::{ClientError, MqClientApi};
use super::config::ClientConfig;
use super::producer::{DefaultMqProducer, ProducerConfig, ProducerError};
use super::publish_info::TopicPublishInfo;
use super::transaction::{CheckTransactionStateProcessor, TransactionCheckRequest};
use crate::Env;
use crate::clock::{ClockExt, SharedClock};
use crate::protocol::heartbeat::{ConsumerData, HeartbeatData, MessageQueue, ProducerData};
use crate::protocol::{MASTER_ID, TopicRouteData, perm};
use crate::remoting::transport::{
    AbortOnDrop, Channel, ExecutorConfig, ProcessError, ProcessorTable, RemotingClient,
    RequestProcessor,
};
use crate::remoting::{RemotingCommand, request_code};
use crate::rng::SharedRng;

/// How long route refreshes and unregistrations wait for the lock another one holds
/// (`LOCK_TIMEOUT_MILLIS`).
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(3);

/// The group of the producer every Java client instance runs for consumers' send-backs
/// (`MixAll.CLIENT_INNER_PRODUCER_GROUP`). The consumer code registers it.
pub const CLIENT_INNER_PRODUCER_GROUP: &str = "CLIENT_INNER_PRODUCER";

/// Delay of the first route refresh after [`ClientInstance::start`].
const ROUTE_REFRESH_FIRST_DELAY: Duration = Duration::from_millis(10);
/// Delay of the first heartbeat after [`ClientInstance::start`].
const HEARTBEAT_FIRST_DELAY: Duration = Duration::from_secs(1);
/// Delay of the first consumer-offset persist after [`ClientInstance::start`].
const PERSIST_FIRST_DELAY: Duration = Duration::from_secs(10);
/// The shortest period of a periodic task, so a zero interval cannot spin.
const PERIOD_MIN: Duration = Duration::from_millis(1);
/// A successful heartbeat round is logged once per this many rounds.
const HEARTBEAT_LOG_EVERY: u64 = 20;

/// What the instance needs from a registered producer (Java's `MQProducerInner`). Every
/// method has a default, so a producer that only needs to be heard of by brokers implements
/// nothing ([`HeartbeatOnly`]).
pub trait MqProducerInner: Send + Sync + 'static {
    /// The topics whose routes the periodic refresh keeps current (Java: the keys of the
    /// producer's `topicPublishInfoTable`, `TBW102` among them).
    fn publish_topics(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether the producer lacks usable publish info for `topic`, so that an unchanged route
    /// must be handed over anyway (`isPublishTopicNeedUpdate`). Java's producer answers
    /// `true` for any topic whose publish info is missing or has no queue — also for topics
    /// it never sends to.
    fn is_publish_topic_need_update(&self, topic: &str) -> bool {
        let _ = topic;
        false
    }

    /// A new route for `topic` was installed (`updateTopicPublishInfo`); the producer builds
    /// its writable queues from it (R72).
    fn update_topic_publish_info(&self, topic: &str, route: &TopicRouteData) {
        let _ = (topic, route);
    }

    /// A broker asks about a half message of the producer's group (CHECK_TRANSACTION_STATE,
    /// clients.md C28-C29); `api` is the instance's, to answer with. A transactional
    /// producer queues the check for its listener and returns at once; any other producer
    /// logs and ignores it, as a Java producer without a listener does.
    fn check_transaction_state(&self, api: &MqClientApi, request: TransactionCheckRequest) {
        let _ = api;
        tracing::warn!(
            broker = %request.broker_addr,
            msg_id = ?request.header.msg_id,
            "check transaction state, but the producer has no transaction listener"
        );
    }
}

/// A producer group known to brokers through heartbeats only.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeartbeatOnly;

impl MqProducerInner for HeartbeatOnly {}

/// What the instance needs from a registered consumer (Java's `MQConsumerInner`).
#[async_trait::async_trait]
pub trait MqConsumerInner: Send + Sync + 'static {
    /// The consumer's entry in heartbeats: group, consume type, message model, where to
    /// start, subscriptions (the retry topic among them for clustering), unit mode. Its
    /// subscription topics are the topics the periodic refresh keeps current.
    fn consumer_data(&self) -> ConsumerData;

    /// Whether the consumer subscribes to `topic` but has no queues for it yet, so that an
    /// unchanged route must be handed over anyway (`isSubscribeTopicNeedUpdate`).
    fn is_subscribe_topic_need_update(&self, topic: &str) -> bool {
        let _ = topic;
        false
    }

    /// A new route for `topic` was installed; `queues` are its readable queues
    /// (`updateTopicSubscribeInfo`, R73). Called on every consumer, subscribed or not.
    fn update_topic_subscribe_info(&self, topic: &str, queues: &BTreeSet<MessageQueue>) {
        let _ = (topic, queues);
    }

    /// Persists the consumer's offsets (`persistConsumerOffset`): periodically and at
    /// shutdown.
    async fn persist_consumer_offset(&self) {}

    /// A broker said the group's members changed (NOTIFY_CONSUMER_IDS_CHANGED): rebalance
    /// now rather than at the next period (`rebalanceImmediately`). Consumers without a
    /// rebalance ignore it.
    fn rebalance_immediately(&self) {}
}

/// Serves NOTIFY_CONSUMER_IDS_CHANGED (oneway, broker to consumer) by asking every consumer
/// of the instance to rebalance now, as Java's instance wakes its one rebalance service.
#[derive(Debug, Clone, Copy, Default)]
pub struct NotifyConsumerIdsChangedProcessor;

#[async_trait::async_trait]
impl ClientRequestProcessor for NotifyConsumerIdsChangedProcessor {
    async fn process(
        &self,
        instance: &Arc<ClientInstance>,
        _channel: &Channel,
        _request: RemotingCommand,
    ) -> Result<Option<RemotingCommand>, ProcessError> {
        let (_, consumers) = instance.members();
        for consumer in consumers {
            consumer.rebalance_immediately();
        }
        Ok(None)
    }
}

/// Serves a request a broker sends to the client, with the instance at hand.
#[async_trait::async_trait]
pub trait ClientRequestProcessor: Send + Sync + 'static {
    /// Handles one request, as [`RequestProcessor::process`] does; `instance` is the client
    /// instance whose connection it arrived on.
    async fn process(
        &self,
        instance: &Arc<ClientInstance>,
        channel: &Channel,
        request: RemotingCommand,
    ) -> Result<Option<RemotingCommand>, ProcessError>;
}

/// The broker-initiated request codes a client serves, and by whom; fixed at construction.
#[derive(Default)]
pub struct ClientProcessorTable {
    entries: Vec<(Vec<i32>, Arc<dyn ClientRequestProcessor>, ExecutorConfig)>,
}

impl std::fmt::Debug for ClientProcessorTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientProcessorTable")
            .field("codes", &self.codes())
            .finish()
    }
}

impl ClientProcessorTable {
    /// No processors: every broker request is answered REQUEST_CODE_NOT_SUPPORTED.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `codes` to `processor` on an executor of Java's client callback size (4
    /// workers here; Java uses one per core) with a queue of 10,000.
    pub fn register(self, codes: &[i32], processor: Arc<dyn ClientRequestProcessor>) -> Self {
        self.register_with(codes, processor, ExecutorConfig::new(4, 10_000))
    }

    /// Routes `codes` to `processor` on its own `executor`. A later registration of a code
    /// wins.
    pub fn register_with(
        mut self,
        codes: &[i32],
        processor: Arc<dyn ClientRequestProcessor>,
        executor: ExecutorConfig,
    ) -> Self {
        self.entries.push((codes.to_vec(), processor, executor));
        self
    }

    /// Every registered code, in registration order.
    pub fn codes(&self) -> Vec<i32> {
        self.entries
            .iter()
            .flat_map(|(codes, _, _)| codes.iter().copied())
            .collect()
    }
}

/// Hands requests to a [`ClientRequestProcessor`] together with the instance.
struct InstanceBound {
    instance: Weak<ClientInstance>,
    processor: Arc<dyn ClientRequestProcessor>,
}

#[async_trait::async_trait]
impl RequestProcessor for InstanceBound {
    async fn process(
        &self,
        channel: &Channel,
        request: RemotingCommand,
    ) -> Result<Option<RemotingCommand>, ProcessError> {
        match self.instance.upgrade() {
            Some(instance) => self.processor.process(&instance, channel, request).await,
            None => Err(ProcessError::system("the client instance is shut down")),
        }
    }
}

/// The life of an instance (Java's `ServiceState`, without START_FAILED: starting cannot
/// fail half-way here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceState {
    /// Built, tasks not started.
    CreateJust,
    /// Periodic tasks running.
    Running,
    /// Shut down; registrations are refused.
    ShutdownAlready,
}

/// A broker address found for a broker name (`FindBrokerResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindBrokerResult {
    /// The address, `host:port`.
    pub broker_addr: String,
    /// Whether it is a slave's.
    pub slave: bool,
    /// The broker's version from its last heartbeat answer; 0 when unknown.
    pub broker_version: i32,
}

/// One broker's answer to a heartbeat round.
#[derive(Debug)]
pub struct HeartbeatOutcome {
    /// The broker group.
    pub broker_name: String,
    /// The broker's id in the group.
    pub broker_id: i64,
    /// Its address.
    pub addr: String,
    /// Its version, or why the heartbeat failed.
    pub result: Result<i32, ClientError>,
}

/// Broker name → {broker id → address}.
pub type BrokerAddrTable = BTreeMap<String, BTreeMap<i64, String>>;

#[derive(Default)]
struct Tables {
    producers: BTreeMap<String, Arc<dyn MqProducerInner>>,
    consumers: BTreeMap<String, Arc<dyn MqConsumerInner>>,
    topic_routes: BTreeMap<String, TopicRouteData>,
    broker_addrs: BrokerAddrTable,
    broker_versions: BTreeMap<String, BTreeMap<String, i32>>,
}

/// The client instance. See the module docs.
pub struct ClientInstance {
    client_id: String,
    config: ClientConfig,
    clock: SharedClock,
    rng: SharedRng,
    api: MqClientApi,
    state: Mutex<ServiceState>,
    tables: Mutex<Tables>,
    namesrv_lock: tokio::sync::Mutex<()>,
    heartbeat_lock: tokio::sync::Mutex<()>,
    heartbeat_rounds: AtomicU64,
    tasks: Mutex<Vec<AbortOnDrop>>,
}

impl std::fmt::Debug for ClientInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientInstance")
            .field("client_id", &self.client_id)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl ClientInstance {
    /// An instance for `config` over `env`'s network and clock, serving broker requests with
    /// `processors`. Opens no connection and runs no periodic task until
    /// [`start`](Self::start).
    pub fn new(env: &Env, config: ClientConfig, processors: ClientProcessorTable) -> Arc<Self> {
        let rng: SharedRng = Arc::new(env.rng.fork());
        // The built-in processors come first, so a plugged-in one for the same code wins.
        let builtin = ClientProcessorTable::new()
            .register(
                &[request_code::CHECK_TRANSACTION_STATE],
                Arc::new(CheckTransactionStateProcessor),
            )
            .register(
                &[request_code::NOTIFY_CONSUMER_IDS_CHANGED],
                Arc::new(NotifyConsumerIdsChangedProcessor),
            );
        Arc::new_cyclic(|instance: &Weak<ClientInstance>| {
            let mut table = ProcessorTable::new();
            for (codes, processor, executor) in
                builtin.entries.into_iter().chain(processors.entries)
            {
                let bound = InstanceBound {
                    instance: instance.clone(),
                    processor,
                };
                table = table.register(&codes, Arc::new(bound), executor);
            }
            let remoting = Arc::new(RemotingClient::new(
                env.net.clone(),
                env.clock.clone(),
                rng.clone(),
                config.remoting.clone(),
                table,
                None,
            ));
            remoting.update_name_server_address_list(&config.namesrv_addrs());
            Self {
                client_id: config.client_id(),
                api: MqClientApi::new(remoting, config.language),
                config,
                clock: env.clock.clone(),
                rng,
                state: Mutex::new(ServiceState::CreateJust),
                tables: Mutex::default(),
                namesrv_lock: tokio::sync::Mutex::new(()),
                heartbeat_lock: tokio::sync::Mutex::new(()),
                heartbeat_rounds: AtomicU64::new(0),
                tasks: Mutex::default(),
            }
        })
    }

    /// The client id (`ip@instance[@unit]`).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The configuration the instance was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The remote API, over the instance's connections.
    pub fn api(&self) -> &MqClientApi {
        &self.api
    }

    /// Where the instance is in its life.
    pub fn state(&self) -> ServiceState {
        *lock(&self.state)
    }

    /// Replaces the name-server list (when it differs by membership).
    pub fn update_name_server_address_list(&self, addrs: &[String]) {
        self.api.remoting().update_name_server_address_list(addrs);
    }

    /// Starts the periodic tasks. A second call, or a call after shutdown, does nothing (as
    /// Java, so every producer and consumer sharing the instance may call it).
    pub fn start(self: &Arc<Self>) {
        {
            let mut state = lock(&self.state);
            if *state != ServiceState::CreateJust {
                return;
            }
            *state = ServiceState::Running;
        }
        if self.config.namesrv_addrs().is_empty() {
            tracing::warn!(client_id = %self.client_id, "no name-server address configured; routes cannot be fetched");
        }
        let config = &self.config;
        let tasks = vec![
            self.spawn_periodic(
                ROUTE_REFRESH_FIRST_DELAY,
                config.poll_name_server_interval,
                |instance| async move { instance.update_all_topic_routes().await },
            ),
            self.spawn_periodic(
                HEARTBEAT_FIRST_DELAY,
                config.heartbeat_broker_interval,
                |instance| async move {
                    instance.clean_offline_brokers().await;
                    instance.send_heartbeat_to_all_brokers().await;
                },
            ),
            self.spawn_periodic(
                PERSIST_FIRST_DELAY,
                config.persist_consumer_offset_interval,
                |instance| async move { instance.persist_all_consumer_offsets().await },
            ),
        ];
        lock(&self.tasks).extend(tasks);
        tracing::info!(client_id = %self.client_id, "client instance started");
    }

    /// Runs `job` after `first`, then every `period` (at least 1 ms; a run that overran its
    /// slot is followed at once by the next, never by a backlog), for as long as the instance
    /// lives and the task is not dropped.
    fn spawn_periodic<F, Fut>(
        self: &Arc<Self>,
        first: Duration,
        period: Duration,
        job: F,
    ) -> AbortOnDrop
    where
        F: Fn(Arc<ClientInstance>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let instance = Arc::downgrade(self);
        let clock = self.clock.clone();
        let period = period.max(PERIOD_MIN);
        AbortOnDrop(tokio::spawn(async move {
            let mut next = clock.instant() + first;
            loop {
                clock.sleep_until(next).await;
                let Some(instance) = instance.upgrade() else {
                    return;
                };
                job(instance).await;
                next += period;
                next = next.max(clock.instant());
            }
        }))
    }

    /// Stops the periodic tasks, persists every consumer's offsets, unregisters every
    /// producer and consumer group still registered from every known broker, and closes the
    /// connections. Java shuts an instance down only once its last producer and consumer have
    /// unregistered themselves; here the caller decides, and nothing is left registered.
    pub async fn shutdown(&self) {
        {
            let mut state = lock(&self.state);
            if *state == ServiceState::ShutdownAlready {
                return;
            }
            *state = ServiceState::ShutdownAlready;
        }
        lock(&self.tasks).clear();
        self.persist_all_consumer_offsets().await;
        let (producers, consumers) = {
            let mut tables = self.lock_tables();
            let producers: Vec<String> =
                std::mem::take(&mut tables.producers).into_keys().collect();
            let consumers: Vec<String> =
                std::mem::take(&mut tables.consumers).into_keys().collect();
            (producers, consumers)
        };
        for group in &producers {
            self.unregister_client_with_lock(Some(group), None).await;
        }
        for group in &consumers {
            self.unregister_client_with_lock(None, Some(group)).await;
        }
        self.api.remoting().shutdown();
        tracing::info!(client_id = %self.client_id, "client instance shut down");
    }

    // -----------------------------------------------------------------------------------------
    // Registration.

    /// Registers a producer group (`registerProducer`): `false` when the group is empty, is
    /// already registered, or the instance is shut down.
    pub fn register_producer(&self, group: &str, producer: Arc<dyn MqProducerInner>) -> bool {
        if group.is_empty() || self.state() == ServiceState::ShutdownAlready {
            return false;
        }
        let mut tables = self.lock_tables();
        if tables.producers.contains_key(group) {
            tracing::warn!(group, "the producer group has been created before");
            return false;
        }
        tables.producers.insert(group.to_owned(), producer);
        true
    }

    /// Registers a consumer group (`registerConsumer`): `false` when the group is empty, is
    /// already registered, or the instance is shut down. Heartbeats carry
    /// `consumer.consumer_data()` under `group`.
    pub fn register_consumer(&self, group: &str, consumer: Arc<dyn MqConsumerInner>) -> bool {
        if group.is_empty() || self.state() == ServiceState::ShutdownAlready {
            return false;
        }
        let mut tables = self.lock_tables();
        if tables.consumers.contains_key(group) {
            tracing::warn!(group, "the consumer group has been created before");
            return false;
        }
        tables.consumers.insert(group.to_owned(), consumer);
        true
    }

    /// Removes a producer group and tells every known broker (`unregisterProducer`).
    pub async fn unregister_producer(&self, group: &str) -> Vec<(String, Result<(), ClientError>)> {
        self.lock_tables().producers.remove(group);
        self.unregister_client_with_lock(Some(group), None).await
    }

    /// Removes a consumer group and tells every known broker (`unregisterConsumer`).
    pub async fn unregister_consumer(&self, group: &str) -> Vec<(String, Result<(), ClientError>)> {
        self.lock_tables().consumers.remove(group);
        self.unregister_client_with_lock(None, Some(group)).await
    }

    /// The producer registered under `group`.
    pub fn select_producer(&self, group: &str) -> Option<Arc<dyn MqProducerInner>> {
        self.lock_tables().producers.get(group).cloned()
    }

    /// The consumer registered under `group`.
    pub fn select_consumer(&self, group: &str) -> Option<Arc<dyn MqConsumerInner>> {
        self.lock_tables().consumers.get(group).cloned()
    }

    /// UNREGISTER_CLIENT to every known broker, masters and slaves, under the heartbeat lock
    /// (a 3 s try), so that a heartbeat in flight cannot register the group again behind it.
    /// Failures are logged and returned.
    async fn unregister_client_with_lock(
        &self,
        producer_group: Option<&str>,
        consumer_group: Option<&str>,
    ) -> Vec<(String, Result<(), ClientError>)> {
        let Ok(_heartbeat) = self
            .clock
            .timeout(LOCK_TIMEOUT, self.heartbeat_lock.lock())
            .await
        else {
            tracing::warn!(client_id = %self.client_id, "lock heartbeat, but failed; not unregistered");
            return Vec::new();
        };
        let mut outcomes = Vec::new();
        for (broker_name, _, addr) in all_broker_addrs(&self.broker_addr_table()) {
            let result = self
                .api
                .unregister_client(
                    &addr,
                    &self.client_id,
                    producer_group,
                    consumer_group,
                    self.config.mq_client_api_timeout,
                )
                .await;
            match &result {
                Ok(()) => {
                    tracing::info!(client_id = %self.client_id, ?producer_group, ?consumer_group, %broker_name, %addr, "unregistered from broker");
                }
                Err(error) => {
                    tracing::warn!(client_id = %self.client_id, ?producer_group, ?consumer_group, %broker_name, %addr, %error, "unregister from broker failed");
                }
            }
            outcomes.push((addr, result));
        }
        outcomes
    }

    // -----------------------------------------------------------------------------------------
    // Routes.

    /// Fetches `topic`'s route and installs it if it changed or a producer or consumer needs
    /// it (R69–R71); `Ok(true)` when it was installed. `Ok(false)` also when another refresh
    /// held the name-server lock for [`LOCK_TIMEOUT`]. TOPIC_NOT_EXIST is
    /// [`ClientError::TopicNotExist`] (Java logs it and answers `false`).
    pub async fn update_topic_route(&self, topic: &str) -> Result<bool, ClientError> {
        self.update_topic_route_inner(topic, None).await
    }

    /// Fetches the route of `default_topic` (the auto-create template, `TBW102`), caps every
    /// broker's read and write queue counts at `min(queue_nums, readQueueNums)`, and installs
    /// it as `topic`'s route under the same rules as
    /// [`update_topic_route`](Self::update_topic_route) (R69 with `isDefault`).
    pub async fn update_topic_route_from_default(
        &self,
        topic: &str,
        default_topic: &str,
        queue_nums: i32,
    ) -> Result<bool, ClientError> {
        self.update_topic_route_inner(topic, Some((default_topic, queue_nums)))
            .await
    }

    async fn update_topic_route_inner(
        &self,
        topic: &str,
        default: Option<(&str, i32)>,
    ) -> Result<bool, ClientError> {
        let Ok(_namesrv) = self
            .clock
            .timeout(LOCK_TIMEOUT, self.namesrv_lock.lock())
            .await
        else {
            tracing::warn!(
                topic,
                "route refresh: name-server lock not taken within {LOCK_TIMEOUT:?}"
            );
            return Ok(false);
        };
        let timeout = self.config.mq_client_api_timeout;
        let route = match default {
            Some((default_topic, queue_nums)) => {
                let route = self.api.topic_route(default_topic, timeout).await?;
                default_route_capped(route, queue_nums)
            }
            None => self.api.topic_route(topic, timeout).await?,
        };
        Ok(self.apply_topic_route(topic, route))
    }

    /// R71: installs `route` as `topic`'s route when it differs from the cached one, or when a
    /// producer or consumer still needs it; returns whether it did. The caller holds the
    /// name-server lock.
    fn apply_topic_route(&self, topic: &str, route: TopicRouteData) -> bool {
        let old = self.topic_route(topic);
        let changed = topic_route_data_changed(old.as_ref(), &route);
        if changed {
            tracing::info!(topic, ?old, new = ?route, "topic route changed");
        } else if !self.is_need_update_topic_route_info(topic) {
            return false;
        }
        let (producers, consumers) = {
            let mut tables = self.lock_tables();
            for broker in &route.broker_datas {
                tables
                    .broker_addrs
                    .insert(broker.broker_name.clone(), broker.broker_addrs.clone());
            }
            (
                tables.producers.values().cloned().collect::<Vec<_>>(),
                tables.consumers.values().cloned().collect::<Vec<_>>(),
            )
        };
        for producer in &producers {
            producer.update_topic_publish_info(topic, &route);
        }
        if !consumers.is_empty() {
            let queues = topic_route_to_subscribe_info(topic, &route);
            for consumer in &consumers {
                consumer.update_topic_subscribe_info(topic, &queues);
            }
        }
        self.lock_tables()
            .topic_routes
            .insert(topic.to_owned(), route);
        true
    }

    /// `isNeedUpdateTopicRouteInfo`: whether any producer or consumer lacks `topic`.
    fn is_need_update_topic_route_info(&self, topic: &str) -> bool {
        let (producers, consumers) = self.members();
        producers
            .iter()
            .any(|producer| producer.is_publish_topic_need_update(topic))
            || consumers
                .iter()
                .any(|consumer| consumer.is_subscribe_topic_need_update(topic))
    }

    /// The route a producer sends `topic` by (`tryToFindTopicPublishInfo`, R74): the cached
    /// route when it has a writable queue on a broker with a master; otherwise a fresh one
    /// from the name server; and when the name server knows no route for `topic`, the route of
    /// `default_topic` (`TBW102`) with at most `queue_nums` queues per broker, installed under
    /// `topic` — a send through it makes a broker with `autoCreateTopicEnable` create the
    /// topic. Remoting errors are returned; TOPIC_NOT_EXIST of both lookups is
    /// [`ClientError::TopicNotExist`].
    pub async fn route_or_default(
        &self,
        topic: &str,
        default_topic: &str,
        queue_nums: i32,
    ) -> Result<TopicRouteData, ClientError> {
        if let Some(route) = self.topic_route(topic).filter(has_publishable_queue) {
            return Ok(route);
        }
        match self.update_topic_route(topic).await {
            Ok(_) | Err(ClientError::TopicNotExist { .. }) => {}
            Err(error) => return Err(error),
        }
        if let Some(route) = self.topic_route(topic) {
            return Ok(route);
        }
        self.update_topic_route_from_default(topic, default_topic, queue_nums)
            .await?;
        self.topic_route(topic)
            .ok_or_else(|| ClientError::TopicNotExist {
                topic: topic.to_owned(),
                remark: format!("no route for the topic, nor one from {default_topic} installed"),
            })
    }

    /// R68: refreshes the route of every topic a consumer subscribes to or a producer
    /// publishes to, in topic order; failures are logged (TOPIC_NOT_EXIST quietly for retry
    /// topics and `TBW102`, as Java).
    pub async fn update_all_topic_routes(&self) {
        let (producers, consumers) = self.members();
        let mut topics = BTreeSet::new();
        for consumer in &consumers {
            topics.extend(
                consumer
                    .consumer_data()
                    .subscription_data_set
                    .into_iter()
                    .map(|subscription| subscription.topic),
            );
        }
        for producer in &producers {
            topics.extend(producer.publish_topics());
        }
        for topic in &topics {
            match self.update_topic_route(topic).await {
                Ok(_) => {}
                Err(ClientError::TopicNotExist { .. })
                    if topic.starts_with(RETRY_GROUP_TOPIC_PREFIX)
                        || topic == crate::protocol::AUTO_CREATE_TOPIC => {}
                Err(error) => tracing::warn!(topic, %error, "route refresh failed"),
            }
        }
    }

    /// The cached route of `topic`.
    pub fn topic_route(&self, topic: &str) -> Option<TopicRouteData> {
        self.lock_tables().topic_routes.get(topic).cloned()
    }

    /// A copy of the broker address table.
    pub fn broker_addr_table(&self) -> BrokerAddrTable {
        self.lock_tables().broker_addrs.clone()
    }

    /// R67 (`cleanOfflineBroker`), under the name-server lock (a 3 s try): drops every
    /// address no cached route mentions, and every broker name left without addresses.
    pub async fn clean_offline_brokers(&self) {
        let Ok(_namesrv) = self
            .clock
            .timeout(LOCK_TIMEOUT, self.namesrv_lock.lock())
            .await
        else {
            tracing::warn!("clean offline brokers: name-server lock not taken");
            return;
        };
        let mut tables = self.lock_tables();
        let cleaned = without_offline_brokers(&tables.broker_addrs, &tables.topic_routes);
        if cleaned != tables.broker_addrs {
            tracing::info!(before = ?tables.broker_addrs, after = ?cleaned, "offline brokers removed");
            tables.broker_addrs = cleaned;
        }
    }

    // -----------------------------------------------------------------------------------------
    // Broker addresses.

    /// The master's address of `broker_name` (`findBrokerAddressInPublish`).
    pub fn find_broker_address_in_publish(&self, broker_name: &str) -> Option<String> {
        self.lock_tables()
            .broker_addrs
            .get(broker_name)
            .and_then(|addrs| addrs.get(&MASTER_ID))
            .cloned()
    }

    /// The address of broker `broker_id` of `broker_name` (`findBrokerAddressInSubscribe`):
    /// that broker; for a missing slave, the next id; unless `only_this_broker`, else the
    /// group's lowest id (the master when it is up).
    pub fn find_broker_address_in_subscribe(
        &self,
        broker_name: &str,
        broker_id: i64,
        only_this_broker: bool,
    ) -> Option<FindBrokerResult> {
        let tables = self.lock_tables();
        let (addr, slave) = find_in_subscribe(
            tables.broker_addrs.get(broker_name)?,
            broker_id,
            only_this_broker,
        )?;
        let broker_version = version_in(&tables, broker_name, &addr);
        Some(FindBrokerResult {
            broker_addr: addr,
            slave,
            broker_version,
        })
    }

    /// `find(self)`, and when it finds nothing, `find(self)` again after one refresh of
    /// `topic`'s route: how Java's offset store (`fetchConsumeOffsetFromBroker`), pull
    /// (`pullKernelImpl`) and admin calls (`MQAdminImpl.maxOffset`) look up a broker. A
    /// failed refresh is logged and leaves the answer `None`, as Java's swallowed refresh.
    pub async fn find_with_route_refresh<T>(
        &self,
        topic: &str,
        find: impl Fn(&Self) -> Option<T>,
    ) -> Option<T> {
        if let Some(found) = find(self) {
            return Some(found);
        }
        if let Err(error) = self.update_topic_route(topic).await {
            tracing::warn!(topic, %error, "route refresh for a broker lookup failed");
        }
        find(self)
    }

    /// The first address of `broker_name`, by id (`findBrokerAddressInAdmin`).
    pub fn find_broker_address_in_admin(&self, broker_name: &str) -> Option<FindBrokerResult> {
        let tables = self.lock_tables();
        let (id, addr) = tables.broker_addrs.get(broker_name)?.first_key_value()?;
        Some(FindBrokerResult {
            broker_addr: addr.clone(),
            slave: *id != MASTER_ID,
            broker_version: version_in(&tables, broker_name, addr),
        })
    }

    /// The version `addr` of `broker_name` answered its last heartbeat with; 0 when unknown
    /// (`findBrokerVersion`).
    pub fn find_broker_version(&self, broker_name: &str, addr: &str) -> i32 {
        version_in(&self.lock_tables(), broker_name, addr)
    }

    /// The group's client ids as a broker of `topic` lists them, sorted — what a clustering
    /// rebalance allocates over; `None` (logged) when the list is empty or could not be had,
    /// and the caller keeps its queues until the next rebalance. A broker that does not
    /// know the group yet (its route was learned after the last heartbeat, which Java
    /// leaves to the next 30 s heartbeat) gets a heartbeat at once and is asked again.
    pub async fn rebalance_consumer_ids(&self, topic: &str, group: &str) -> Option<Vec<String>> {
        let mut answer = self.find_consumer_id_list(topic, group).await;
        if matches!(answer, Err(ClientError::Broker { .. })) {
            self.send_heartbeat_to_all_brokers().await;
            answer = self.find_consumer_id_list(topic, group).await;
        }
        match answer {
            Ok(mut ids) if !ids.is_empty() => {
                ids.sort();
                Some(ids)
            }
            Ok(_) => {
                tracing::warn!(%group, topic, "get consumer id list empty");
                None
            }
            Err(error) => {
                tracing::warn!(%group, topic, %error, "get consumer id list failed");
                None
            }
        }
    }

    /// The client ids of `group`'s consumers, asked of a broker serving `topic`
    /// (`findConsumerIdList`): a random broker group of the cached route (refreshed first
    /// when there is none), its master or else a random member.
    pub async fn find_consumer_id_list(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Vec<String>, ClientError> {
        let addr = match self.find_broker_addr_by_topic(topic) {
            Some(addr) => addr,
            None => {
                self.update_topic_route(topic).await?;
                self.find_broker_addr_by_topic(topic)
                    .ok_or_else(|| ClientError::BrokerNotFound(format!("of topic {topic}")))?
            }
        };
        self.api
            .consumer_id_list(&addr, group, self.config.mq_client_api_timeout)
            .await
    }

    /// `findBrokerAddrByTopic`: a random broker group of the topic's cached route, then its
    /// master, or a random member when it has none (`BrokerData.selectBrokerAddr`).
    fn find_broker_addr_by_topic(&self, topic: &str) -> Option<String> {
        let route = self.topic_route(topic)?;
        if route.broker_datas.is_empty() {
            return None;
        }
        let index = self.rng.below(route.broker_datas.len() as u64) as usize;
        let broker = &route.broker_datas[index];
        if let Some(master) = broker.master_addr() {
            return Some(master.to_owned());
        }
        if broker.broker_addrs.is_empty() {
            return None;
        }
        let index = self.rng.below(broker.broker_addrs.len() as u64) as usize;
        broker.broker_addrs.values().nth(index).cloned()
    }

    // -----------------------------------------------------------------------------------------
    // Heartbeats and offsets.

    /// The heartbeat this instance sends now (`prepareHeartbeatData`): its client id, every
    /// registered producer group, and every registered consumer's data, in group order.
    pub fn heartbeat_data(&self) -> HeartbeatData {
        let tables = self.lock_tables();
        let producer_data_set = tables
            .producers
            .keys()
            .map(|group| ProducerData {
                group_name: group.clone(),
            })
            .collect();
        let consumers: Vec<(String, Arc<dyn MqConsumerInner>)> = tables
            .consumers
            .iter()
            .map(|(group, consumer)| (group.clone(), consumer.clone()))
            .collect();
        drop(tables);
        let consumer_data_set = consumers
            .into_iter()
            .map(|(group, consumer)| ConsumerData {
                group_name: group,
                ..consumer.consumer_data()
            })
            .collect();
        HeartbeatData {
            client_id: self.client_id.clone(),
            consumer_data_set,
            producer_data_set,
        }
    }

    /// `sendHeartbeatToAllBrokerWithLock`: unless another round is running (then nothing),
    /// sends [`heartbeat_data`](Self::heartbeat_data) to every known broker in name and id
    /// order — only to masters while no consumer is registered — and records each version.
    /// Nothing is sent when no producer and no consumer is registered. Failures are logged
    /// and returned; they never stop the round.
    pub async fn send_heartbeat_to_all_brokers(&self) -> Vec<HeartbeatOutcome> {
        let Ok(_heartbeat) = self.heartbeat_lock.try_lock() else {
            tracing::warn!(client_id = %self.client_id, "heartbeat already running; this round skipped");
            return Vec::new();
        };
        let heartbeat = self.heartbeat_data();
        if heartbeat.producer_data_set.is_empty() && heartbeat.consumer_data_set.is_empty() {
            tracing::warn!(client_id = %self.client_id, "sending heartbeat, but no consumer and no producer");
            return Vec::new();
        }
        let targets = heartbeat_targets(
            &self.broker_addr_table(),
            !heartbeat.consumer_data_set.is_empty(),
        );
        if targets.is_empty() {
            return Vec::new();
        }
        let round = self.heartbeat_rounds.fetch_add(1, Ordering::Relaxed);
        let mut outcomes = Vec::with_capacity(targets.len());
        for (broker_name, broker_id, addr) in targets {
            let result = self
                .api
                .heartbeat(&addr, &heartbeat, self.config.mq_client_api_timeout)
                .await;
            match &result {
                Ok(version) => {
                    self.lock_tables()
                        .broker_versions
                        .entry(broker_name.clone())
                        .or_default()
                        .insert(addr.clone(), *version);
                    if round.is_multiple_of(HEARTBEAT_LOG_EVERY) {
                        tracing::info!(client_id = %self.client_id, %broker_name, broker_id, %addr, version, "heartbeat sent");
                    }
                }
                Err(error) => {
                    if self.is_broker_in_name_server(&addr) {
                        tracing::info!(%broker_name, broker_id, %addr, %error, "heartbeat to broker failed");
                    } else {
                        tracing::info!(%broker_name, broker_id, %addr, %error, "heartbeat failed because the broker is not up; forget it");
                    }
                }
            }
            outcomes.push(HeartbeatOutcome {
                broker_name,
                broker_id,
                addr,
                result,
            });
        }
        outcomes
    }

    /// Whether any cached route lists `addr` (`isBrokerInNameServer`).
    fn is_broker_in_name_server(&self, addr: &str) -> bool {
        self.lock_tables()
            .topic_routes
            .values()
            .any(|route| route_mentions(route, addr))
    }

    /// Asks every registered consumer to persist its offsets (`persistAllConsumerOffset`).
    pub async fn persist_all_consumer_offsets(&self) {
        let (_, consumers) = self.members();
        for consumer in consumers {
            consumer.persist_consumer_offset().await;
        }
    }

    // -----------------------------------------------------------------------------------------
    // Plumbing.

    /// Snapshots of the registered producers and consumers, so callbacks run without a lock.
    #[allow(clippy::type_complexity)]
    fn members(&self) -> (Vec<Arc<dyn MqProducerInner>>, Vec<Arc<dyn MqConsumerInner>>) {
        let tables = self.lock_tables();
        (
            tables.producers.values().cloned().collect(),
            tables.consumers.values().cloned().collect(),
        )
    }

    fn lock_tables(&self) -> MutexGuard<'_, Tables> {
        lock(&self.tables)
    }
}

/// The prefix of consumer groups' retry topics (`MixAll.RETRY_GROUP_TOPIC_PREFIX`).
const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The tables are only ever replaced whole under the lock; a panic elsewhere cannot leave
    // them half-written, so a poisoned lock is recovered.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn version_in(tables: &Tables, broker_name: &str, addr: &str) -> i32 {
    tables
        .broker_versions
        .get(broker_name)
        .and_then(|versions| versions.get(addr))
        .copied()
        .unwrap_or(0)
}

/// `topicRouteDataIsChange`: true when there is no old route, or when the two differ once
/// both have their queue and broker lists sorted by broker name (so the name server's
/// ordering alone never counts as a change).
pub fn topic_route_data_changed(old: Option<&TopicRouteData>, new: &TopicRouteData) -> bool {
    let Some(old) = old else {
        return true;
    };
    normalized(old) != normalized(new)
}

fn normalized(route: &TopicRouteData) -> TopicRouteData {
    let mut route = route.clone();
    route
        .queue_datas
        .sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    route
        .broker_datas
        .sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    route
}

/// `topicRouteData2TopicSubscribeInfo` (R73): queues `0..readQueueNums` of every readable
/// broker, whether or not it has a master.
pub fn topic_route_to_subscribe_info(
    topic: &str,
    route: &TopicRouteData,
) -> BTreeSet<MessageQueue> {
    route
        .queue_datas
        .iter()
        .filter(|queue| perm::is_readable(queue.perm))
        .flat_map(|queue| {
            (0..queue.read_queue_nums).map(|queue_id| MessageQueue {
                broker_name: queue.broker_name.clone(),
                queue_id,
                topic: topic.to_owned(),
            })
        })
        .collect()
}

/// The default topic's route as a new topic's route: every broker's read and write queue
/// counts become `min(queue_nums, readQueueNums)`.
fn default_route_capped(mut route: TopicRouteData, queue_nums: i32) -> TopicRouteData {
    for queue in &mut route.queue_datas {
        let nums = queue_nums.min(queue.read_queue_nums);
        queue.read_queue_nums = nums;
        queue.write_queue_nums = nums;
    }
    route
}

/// Whether a producer could send by `route`: R72's publish queue list is not empty.
fn has_publishable_queue(route: &TopicRouteData) -> bool {
    TopicPublishInfo::from_route("", route).is_ok_and(|info| info.ok())
}

fn route_mentions(route: &TopicRouteData, addr: &str) -> bool {
    route
        .broker_datas
        .iter()
        .any(|broker| broker.broker_addrs.values().any(|a| a == addr))
}

/// R67: the address table without the addresses no route in `routes` mentions, and without
/// broker names left empty.
fn without_offline_brokers(
    table: &BrokerAddrTable,
    routes: &BTreeMap<String, TopicRouteData>,
) -> BrokerAddrTable {
    table
        .iter()
        .filter_map(|(broker_name, addrs)| {
            let alive: BTreeMap<i64, String> = addrs
                .iter()
                .filter(|(_, addr)| routes.values().any(|route| route_mentions(route, addr)))
                .map(|(id, addr)| (*id, addr.clone()))
                .collect();
            (!alive.is_empty()).then(|| (broker_name.clone(), alive))
        })
        .collect()
}

/// Every (broker name, id, address) of `table`, in name and id order.
fn all_broker_addrs(table: &BrokerAddrTable) -> Vec<(String, i64, String)> {
    table
        .iter()
        .flat_map(|(name, addrs)| {
            addrs
                .iter()
                .map(move |(id, addr)| (name.clone(), *id, addr.clone()))
        })
        .collect()
}

/// The brokers a heartbeat goes to: every address of `table`, only masters when the
/// heartbeat carries no consumer (a producer never reads from a slave).
fn heartbeat_targets(table: &BrokerAddrTable, has_consumers: bool) -> Vec<(String, i64, String)> {
    all_broker_addrs(table)
        .into_iter()
        .filter(|(_, id, _)| has_consumers || *id == MASTER_ID)
        .collect()
}

/// `findBrokerAddressInSubscribe` over one broker group: the address and whether it is a
/// slave's.
fn find_in_subscribe(
    addrs: &BTreeMap<i64, String>,
    broker_id: i64,
    only_this_broker: bool,
) -> Option<(String, bool)> {
    if addrs.is_empty() {
        return None;
    }
    let slave = broker_id != MASTER_ID;
    if let Some(addr) = addrs.get(&broker_id) {
        return Some((addr.clone(), slave));
    }
    if slave && let Some(addr) = addrs.get(&(broker_id + 1)) {
        return Some((addr.clone(), slave));
    }
    if only_this_broker {
        return None;
    }
    let (id, addr) = addrs.first_key_value()?;
    Some((addr.clone(), *id != MASTER_ID))
}

/// The internal producer of one client id, started on first use.
type InnerProducerCell = Arc<tokio::sync::OnceCell<Arc<DefaultMqProducer>>>;

/// One client instance per client id (Java's `MQClientManager`). A process (or a simulated
/// node) keeps one registry; producers and consumers get their instance from it, and push
/// consumers the instance's internal producer ([`inner_producer`](Self::inner_producer)).
#[derive(Debug, Default)]
pub struct ClientInstanceRegistry {
    instances: Mutex<BTreeMap<String, Arc<ClientInstance>>>,
    /// Client id → the producer of group [`CLIENT_INNER_PRODUCER_GROUP`] (Java's
    /// `MQClientInstance.defaultMQProducer`).
    inner_producers: Mutex<BTreeMap<String, InnerProducerCell>>,
}

impl ClientInstanceRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The instance for `config`'s client id, built with `processors` if there is none yet
    /// (`getOrCreateMQClientInstance`; an existing instance keeps its own processors and
    /// config).
    pub fn get_or_create(
        &self,
        env: &Env,
        config: &ClientConfig,
        processors: ClientProcessorTable,
    ) -> Arc<ClientInstance> {
        let client_id = config.client_id();
        let mut instances = lock(&self.instances);
        if let Some(instance) = instances.get(&client_id) {
            return instance.clone();
        }
        let instance = ClientInstance::new(env, config.clone(), processors);
        tracing::info!(%client_id, "client instance created");
        instances.insert(client_id, instance.clone());
        instance
    }

    /// The instance registered under `client_id`.
    pub fn get(&self, client_id: &str) -> Option<Arc<ClientInstance>> {
        lock(&self.instances).get(client_id).cloned()
    }

    /// Forgets the instance of `client_id` (`removeClientFactory`, after its shutdown).
    pub fn remove(&self, client_id: &str) -> Option<Arc<ClientInstance>> {
        lock(&self.instances).remove(client_id)
    }

    /// The internal producer (group [`CLIENT_INNER_PRODUCER_GROUP`]) of the instance of
    /// `config`'s client id, created and started on first use. Push consumers re-send a
    /// message to their retry topic through it when CONSUMER_SEND_MSG_BACK fails.
    pub async fn inner_producer(
        self: &Arc<Self>,
        env: &Env,
        config: &ClientConfig,
    ) -> Result<Arc<DefaultMqProducer>, ProducerError> {
        let cell = lock(&self.inner_producers)
            .entry(config.client_id())
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            let mut producer_config = ProducerConfig::new(CLIENT_INNER_PRODUCER_GROUP, "");
            producer_config.client = config.clone();
            let producer = DefaultMqProducer::new(env, self.clone(), producer_config);
            producer.start().await?;
            Ok(Arc::new(producer))
        })
        .await
        .cloned()
    }

    /// Shuts `instance` down and forgets it when no producer or consumer uses it any more
    /// (its internal producer aside, as Java's `MQClientInstance.shutdown` checks). Producers
    /// and consumers call it after unregistering themselves; returns whether it did.
    pub async fn release_if_unused(&self, instance: &Arc<ClientInstance>) -> bool {
        let members = instance.heartbeat_data();
        let unused = members.consumer_data_set.is_empty()
            && members
                .producer_data_set
                .iter()
                .all(|producer| producer.group_name == CLIENT_INNER_PRODUCER_GROUP);
        if !unused {
            return false;
        }
        // The instance's shutdown unregisters the internal producer's group too.
        lock(&self.inner_producers).remove(instance.client_id());
        instance.shutdown().await;
        self.remove(instance.client_id());
        true
    }
}

#[cfg(test)]
mod tests;
