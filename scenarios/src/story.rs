//! A scenario as a story: a cluster, a workload, and faults on a timeline; then every
//! fault heals, a liveness phase sends a few more messages, consumers catch up, the final
//! read collects every queue, and the checkers judge the [`History`].
//!
//! Where it sits: the named scenarios ([`crate::catalog`]) and swarm plans
//! ([`crate::swarm`]) are [`Story`] values; [`run`] plays one on the current madsim runtime.
//! The producer runs on node `producer-0`, the consumers on `consumer-0`, the final reader
//! and the offset sampler on `observer-0`, so partitions can cut any of them off.
//!
//! Invariants: everything random comes from the runtime seed (nodes' RNGs are derived from
//! it, the timeline is fixed by the story), so a story and a seed replay exactly; every
//! store, route table and disk invariant is checked after each fault step and once a
//! second in between.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ferrocket_engine::client::api::PullStatus;
use ferrocket_engine::client::config::ClientConfig;
use ferrocket_engine::client::instance::{
    ClientInstance, ClientInstanceRegistry, ClientProcessorTable,
};
use ferrocket_engine::client::producer::{DefaultMqProducer, Message, ProducerConfig};
use ferrocket_engine::client::pull_consumer::{DefaultMqPullConsumer, PullConsumerConfig};
use ferrocket_engine::client::push_consumer::{
    ConsumeOrderlyStatus, ConsumeStatus, DefaultMqPushConsumer, MessageListener, PushConsumerConfig,
};
use ferrocket_engine::protocol::heartbeat::{ConsumeFromWhere, MessageModel, MessageQueue};
use ferrocket_engine::remoting::headers::QueryConsumerOffsetRequestHeader;
use ferrocket_engine::store::message::StoredMessage;
use ferrocket_sim::cluster::{BrokerSpec, Cluster, ClusterSpec, create_topic};
use ferrocket_sim::{CrashKind, SimDiskFaults};
use madsim::task::NodeId;
use madsim::time::{Instant, sleep, sleep_until};
use tokio::sync::mpsc;

use crate::checkers;
use crate::history::{
    Ack, CrashEvent, Delivery, Durability, History, OffsetSample, SendOutcome, SendRecord,
    StoredEntry,
};

/// The topic every story uses.
pub const TOPIC: &str = "SimTopic";
/// The consumer group of the story's consumers.
pub const GROUP: &str = "sim-cg";
/// How long after healing the liveness phase starts.
const SETTLE: Duration = Duration::from_secs(5);
/// Messages of the liveness phase.
const LIVENESS_SENDS: usize = 10;
/// How long consumers get to catch up after the liveness phase.
const CATCH_UP_BOUND: Duration = Duration::from_secs(90);
/// How often invariants are checked and committed offsets sampled.
const OBSERVE_INTERVAL: Duration = Duration::from_secs(1);

/// How the producer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendMode {
    /// One message per send, queues round-robin.
    Sync,
    /// Messages ordered by key (8 keys): one queue per key.
    Orderly,
    /// Batches of [`BATCH_SIZE`] messages, each batch to one queue.
    Batch,
    /// One message per async send (the async retry rule), each awaited before the next.
    Async,
}

/// Messages per batch of [`SendMode::Batch`].
pub const BATCH_SIZE: usize = 4;

/// The workload.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Messages the producer sends during the faulty phase.
    pub sends: usize,
    /// Pause between two sends.
    pub interval: Duration,
    /// How the producer sends.
    pub mode: SendMode,
    /// Push consumers in the group (0: no consumer).
    pub consumers: usize,
    /// Whether the consumers consume orderly.
    pub orderly_consumers: bool,
    /// Whether the consumers broadcast (each gets every message; offsets kept locally).
    pub broadcast: bool,
    /// Queues of the topic on each broker.
    pub queues_per_broker: i32,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            sends: 400,
            interval: Duration::from_millis(50),
            mode: SendMode::Sync,
            consumers: 1,
            orderly_consumers: false,
            broadcast: false,
            queues_per_broker: 4,
        }
    }
}

/// A side of a network link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `namesrv-0`.
    Namesrv,
    /// The master of a broker group.
    Broker(String),
    /// `producer-0`.
    Producer,
    /// `consumer-0`.
    Consumer,
}

/// One fault (or repair) on the timeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Kill a broker's process; its disk loses what the kind loses.
    Crash(String, CrashKind),
    /// Start a crashed broker again.
    Restart(String),
    /// Freeze a broker's process.
    Pause(String),
    /// Unfreeze it.
    Resume(String),
    /// Cut a link both ways.
    Partition(Endpoint, Endpoint),
    /// Cut a link one way (from the first to the second).
    ClogOneWay(Endpoint, Endpoint),
    /// Restore a link both ways.
    Heal(Endpoint, Endpoint),
    /// Move a broker's wall clock.
    ClockJump(String, i64),
    /// Set a broker's disk faults (default: none).
    DiskFaults(String, SimDiskFaults),
    /// Shut consumer `n` down.
    StopConsumer(usize),
    /// Start consumer `n` again (a new incarnation).
    StartConsumer(usize),
    /// Every link's one-way latency in this range (ms), until [`Fault::NormalLatency`].
    SlowNetwork(u64, u64),
    /// madsim's default latency again.
    NormalLatency,
}

/// A deliberate bug the story switches on, to prove the checkers catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedBug {
    /// The store acknowledges SYNC_FLUSH sends before their sync.
    AckSyncFlushBeforeSync,
}

/// A scenario. See the module docs.
#[derive(Debug, Clone)]
pub struct Story {
    /// The scenario's name.
    pub name: String,
    /// Broker group name → durability.
    pub brokers: Vec<(String, Durability)>,
    /// The workload.
    pub workload: Workload,
    /// Faults, by time since the start (applied in order).
    pub timeline: Vec<(Duration, Fault)>,
    /// A bug to inject.
    pub bug: Option<InjectedBug>,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunReport {
    /// The record.
    pub history: History,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// What the checkers found.
    pub violations: Vec<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The history is only extended, so a poisoned one is still consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The cluster spec of `story`: its broker groups with their flush modes, through the
/// same `broker.conf` keys a user writes. Forcible cleaning is off: past 85% disk usage it
/// deletes the oldest segments, consumed or not, which is exactly what the checkers call a
/// lost message; a full disk is still judged, and sends refused past 90%.
fn cluster_spec(story: &Story) -> ClusterSpec {
    ClusterSpec {
        brokers: story
            .brokers
            .iter()
            .map(|(name, durability)| BrokerSpec {
                name: name.clone(),
                properties: format!(
                    "flushDiskType={}\ncleanFileForciblyEnable=false\n",
                    match durability {
                        Durability::SyncFlush => "SYNC_FLUSH",
                        Durability::AsyncFlush => "ASYNC_FLUSH",
                    }
                ),
            })
            .collect(),
        namesrv_properties: String::new(),
    }
}

/// The nodes a story's links join.
struct Nodes<'a> {
    cluster: &'a Cluster,
    producer: NodeId,
    consumer: NodeId,
}

impl Nodes<'_> {
    fn id(&self, endpoint: &Endpoint) -> NodeId {
        match endpoint {
            Endpoint::Namesrv => self.cluster.namesrv().id,
            Endpoint::Broker(name) => self.cluster.broker(name).id,
            Endpoint::Producer => self.producer,
            Endpoint::Consumer => self.consumer,
        }
    }
}

/// Commands to the consumer node.
#[derive(Debug)]
enum ConsumerCommand {
    Stop(usize),
    Start(usize),
    StopAll,
}

/// Plays `story` on the current madsim runtime and judges it.
pub async fn run(story: &Story) -> RunReport {
    #[cfg(madsim)]
    ferrocket_engine::fault_points::set_ack_sync_flush_before_sync(
        story.bug == Some(InjectedBug::AckSyncFlushBeforeSync),
    );
    let start = Instant::now();
    let cluster = Arc::new(Cluster::start(&cluster_spec(story)).expect("story specs are valid"));
    let history: Arc<Mutex<History>> = Arc::default();
    lock(&history).durability = story.brokers.iter().cloned().collect();

    let producer_node = cluster.client_node("producer-0", "10.0.3.1");
    let consumer_node = cluster.client_node("consumer-0", "10.0.3.2");
    let observer_node = cluster.client_node("observer-0", "10.0.3.3");
    let nodes = Nodes {
        cluster: &cluster,
        producer: producer_node.id(),
        consumer: consumer_node.id(),
    };

    // The topic on every broker group, as `mqadmin updateTopic -c` makes it.
    let broker_addrs: Vec<String> = story
        .brokers
        .iter()
        .map(|(name, _)| cluster.broker_addr(name))
        .collect();
    observer_node
        .spawn({
            let (addrs, queues) = (broker_addrs.clone(), story.workload.queues_per_broker);
            async move {
                let admin = admin_client();
                for addr in &addrs {
                    create_topic(&admin, addr, TOPIC, queues).await;
                }
            }
        })
        .await
        .expect("the topic is created");

    // Producer.
    let (live_tx, mut live_rx) = mpsc::channel::<()>(1);
    let (live_done_tx, live_done_rx) = tokio::sync::oneshot::channel::<Vec<String>>();
    let producer_task = producer_node.spawn({
        let (history, workload, env, namesrv) = (
            history.clone(),
            story.workload.clone(),
            cluster.client_env("producer-0"),
            cluster.namesrv_addr(),
        );
        async move {
            let mut config = ProducerConfig::new("sim-pg", namesrv);
            config.client.client_ip = "10.0.3.1".into();
            let producer =
                DefaultMqProducer::new(&env, Arc::new(ClientInstanceRegistry::new()), config);
            producer.start().await.expect("the producer starts");
            let step = if workload.mode == SendMode::Batch {
                BATCH_SIZE
            } else {
                1
            };
            for seq in (0..workload.sends).step_by(step) {
                if workload.mode == SendMode::Batch {
                    send_batch(&producer, &history, start, "p0", seq as u64).await;
                } else {
                    send_one(&producer, &history, start, &workload, "p0", seq as u64).await;
                }
                sleep(workload.interval * step as u32).await;
            }
            // The liveness phase, once the orchestrator says every fault healed.
            let _ = live_rx.recv().await;
            let mut bodies = Vec::new();
            for i in 0..LIVENESS_SENDS {
                let seq = (workload.sends + i) as u64;
                bodies.push(send_one(&producer, &history, start, &workload, "p0", seq).await);
                sleep(workload.interval).await;
            }
            let _ = live_done_tx.send(bodies);
            producer.shutdown().await;
        }
    });

    // Consumers.
    let (consumer_tx, consumer_rx) = mpsc::unbounded_channel::<ConsumerCommand>();
    let consumer_task = consumer_node.spawn(consumers(
        story.workload.clone(),
        history.clone(),
        cluster.namesrv_addr(),
        cluster.client_env("consumer-0"),
        start,
        consumer_rx,
    ));

    // Observer: invariants and committed offsets, once a second.
    let observing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let observer_task = observer_node.spawn(observe(
        cluster.clone(),
        history.clone(),
        story.brokers.iter().map(|(name, _)| name.clone()).collect(),
        story.workload.queues_per_broker,
        start,
        observing.clone(),
    ));

    // The timeline.
    let mut down: BTreeSet<String> = BTreeSet::new();
    let mut paused: BTreeSet<String> = BTreeSet::new();
    let mut cut: Vec<(NodeId, NodeId)> = Vec::new();
    let mut faulty_disks: BTreeSet<String> = BTreeSet::new();
    let mut stopped: BTreeSet<usize> = BTreeSet::new();
    let mut slow_network = false;
    for (at, fault) in &story.timeline {
        sleep_until(start + *at).await;
        tracing::info!(?at, ?fault, "timeline");
        let mut history = lock(&history);
        match fault {
            Fault::Crash(broker, kind) => {
                if down.insert(broker.clone()) {
                    paused.remove(broker);
                    cluster.crash(cluster.broker(broker), *kind);
                    history.crashes.push(CrashEvent {
                        broker: broker.clone(),
                        power_loss: *kind == CrashKind::PowerLoss,
                        at: start.elapsed(),
                        restarted: None,
                    });
                }
            }
            Fault::Restart(broker) => {
                if down.remove(broker) {
                    cluster.restart(cluster.broker(broker));
                    history.record_restart(broker, start.elapsed());
                }
            }
            Fault::Pause(broker) => {
                if !down.contains(broker) && paused.insert(broker.clone()) {
                    cluster.pause(cluster.broker(broker));
                }
            }
            Fault::Resume(broker) => {
                if paused.remove(broker) {
                    cluster.resume(cluster.broker(broker));
                }
            }
            Fault::Partition(a, b) => {
                let (a, b) = (nodes.id(a), nodes.id(b));
                cluster.partition(a, b);
                cut.push((a, b));
            }
            Fault::ClogOneWay(a, b) => {
                let (a, b) = (nodes.id(a), nodes.id(b));
                cluster.clog_one_way(a, b);
                cut.push((a, b));
            }
            Fault::Heal(a, b) => {
                let (a, b) = (nodes.id(a), nodes.id(b));
                cluster.heal(a, b);
                cut.retain(|link| *link != (a, b) && *link != (b, a));
            }
            Fault::ClockJump(broker, delta) => cluster.jump_clock(cluster.broker(broker), *delta),
            Fault::DiskFaults(broker, faults) => {
                cluster.set_disk_faults(cluster.broker(broker), faults.clone());
                if *faults == SimDiskFaults::default() {
                    faulty_disks.remove(broker);
                } else {
                    faulty_disks.insert(broker.clone());
                }
            }
            Fault::StopConsumer(n) => {
                if stopped.insert(*n) {
                    let _ = consumer_tx.send(ConsumerCommand::Stop(*n));
                }
            }
            Fault::StartConsumer(n) => {
                if stopped.remove(n) {
                    let _ = consumer_tx.send(ConsumerCommand::Start(*n));
                }
            }
            Fault::SlowNetwork(low, high) => {
                cluster.set_latency(Duration::from_millis(*low)..Duration::from_millis(*high));
                slow_network = true;
            }
            Fault::NormalLatency => {
                cluster.reset_latency();
                slow_network = false;
            }
        }
        history.disturbed |= !matches!(fault, Fault::ClockJump(..));
        drop(history);
        cluster.check_invariants();
    }
    // Wait for the faulty phase's sends, then heal everything.
    let faulty_phase = story.workload.interval * story.workload.sends as u32;
    sleep_until(
        start + faulty_phase.max(story.timeline.last().map(|(at, _)| *at).unwrap_or_default()),
    )
    .await;
    if slow_network {
        cluster.reset_latency();
    }
    for broker in std::mem::take(&mut faulty_disks) {
        cluster.set_disk_faults(cluster.broker(&broker), SimDiskFaults::default());
    }
    for (a, b) in std::mem::take(&mut cut) {
        cluster.heal(a, b);
    }
    for broker in std::mem::take(&mut paused) {
        cluster.resume(cluster.broker(&broker));
    }
    for broker in std::mem::take(&mut down) {
        cluster.restart(cluster.broker(&broker));
        lock(&history).record_restart(&broker, start.elapsed());
    }
    // A broker whose restart failed (its disk was full, say) exited; it is started again
    // now that its disk is fine, as an operator would.
    sleep(Duration::from_secs(1)).await;
    for (name, _) in &story.brokers {
        let node = cluster.broker(name);
        if !cluster.is_serving(node) {
            cluster.crash(node, CrashKind::Process);
            cluster.restart(node);
        }
    }
    for n in std::mem::take(&mut stopped) {
        let _ = consumer_tx.send(ConsumerCommand::Start(n));
    }
    sleep(SETTLE).await;
    cluster.check_invariants();

    // Liveness: the last sends are acknowledged, consumers catch up.
    let _ = live_tx.send(()).await;
    let liveness_bodies = live_done_rx.await.unwrap_or_default();
    lock(&history).liveness_bodies = liveness_bodies;
    if story.workload.consumers > 0 {
        let deadline = Instant::now() + CATCH_UP_BOUND;
        while Instant::now() < deadline && !caught_up(&lock(&history)) {
            sleep(Duration::from_secs(1)).await;
        }
    }
    let _ = producer_task.await;
    let _ = consumer_tx.send(ConsumerCommand::StopAll);
    let _ = consumer_task.await;
    observing.store(false, std::sync::atomic::Ordering::Release);
    let _ = observer_task.await;

    // The final read.
    let stored = observer_node
        .spawn(read_everything(
            cluster.namesrv_addr(),
            cluster.client_env("observer-0"),
            story.brokers.iter().map(|(name, _)| name.clone()).collect(),
        ))
        .await
        .expect("the final read runs");
    cluster.check_invariants();
    let mut history = lock(&history).clone();
    history.stored = Some(stored);
    let violations = checkers::all(&history);
    #[cfg(madsim)]
    ferrocket_engine::fault_points::set_ack_sync_flush_before_sync(false);
    RunReport {
        history,
        faults: cluster.fault_counts(),
        violations,
    }
}

/// Whether every acknowledged message was delivered.
fn caught_up(history: &History) -> bool {
    let delivered: BTreeSet<&str> = history.deliveries.iter().map(|d| d.body.as_str()).collect();
    history
        .acked()
        .all(|(body, _, _)| delivered.contains(body.as_str()))
}

/// A remoting client for admin requests from a client node.
fn admin_client() -> ferrocket_engine::remoting::transport::RemotingClient {
    use ferrocket_engine::remoting::transport::{
        ClientConfig as RemotingConfig, ProcessorTable, RemotingClient,
    };
    RemotingClient::new(
        ferrocket_net::TokioNet::shared(),
        ferrocket_net::SystemClock::shared(),
        ferrocket_engine::rng::Rng::shared(3),
        RemotingConfig::default(),
        ProcessorTable::new(),
        None,
    )
}

/// Sends one message and records it; returns its body.
async fn send_one(
    producer: &DefaultMqProducer,
    history: &Mutex<History>,
    start: Instant,
    workload: &Workload,
    name: &str,
    seq: u64,
) -> String {
    let body = format!("{name}-{seq}");
    let order_key = (workload.mode == SendMode::Orderly).then(|| format!("k{}", seq % 8));
    let started = start.elapsed();
    let mut message = Message::new(TOPIC, body.clone());
    let result = match (&order_key, workload.mode) {
        (Some(key), _) => producer.send_ordered_by_key(&mut message, key).await,
        (None, SendMode::Async) => match producer.send_async(&mut message) {
            Ok(sending) => sending.await,
            Err(refused) => Err(refused),
        },
        (None, _) => producer.send(&mut message).await,
    };
    let outcome = match result {
        Ok(sent) => SendOutcome::Acked(Ack {
            broker: sent.queue.broker_name,
            queue_id: sent.queue.queue_id,
            queue_offset: sent.queue_offset,
            at: start.elapsed(),
        }),
        Err(error) => SendOutcome::Failed {
            error: error.to_string(),
        },
    };
    lock(history).sends.insert(
        body.clone(),
        SendRecord {
            producer: name.to_owned(),
            seq,
            order_key,
            started,
            outcome,
        },
    );
    body
}

/// Sends a batch of [`BATCH_SIZE`] messages, sequence numbers from `first`, and records
/// each: a batch lands in one queue at consecutive offsets from the acknowledged one.
async fn send_batch(
    producer: &DefaultMqProducer,
    history: &Mutex<History>,
    start: Instant,
    name: &str,
    first: u64,
) {
    let bodies: Vec<String> = (first..first + BATCH_SIZE as u64)
        .map(|seq| format!("{name}-{seq}"))
        .collect();
    let mut messages: Vec<Message> = bodies
        .iter()
        .map(|body| Message::new(TOPIC, body.clone()))
        .collect();
    let started = start.elapsed();
    let result = producer.send_batch(&mut messages).await;
    let mut history = lock(history);
    for (i, body) in bodies.into_iter().enumerate() {
        let outcome = match &result {
            Ok(sent) => SendOutcome::Acked(Ack {
                broker: sent.queue.broker_name.clone(),
                queue_id: sent.queue.queue_id,
                queue_offset: sent.queue_offset + i as i64,
                at: start.elapsed(),
            }),
            Err(error) => SendOutcome::Failed {
                error: error.to_string(),
            },
        };
        history.sends.insert(
            body,
            SendRecord {
                producer: name.to_owned(),
                seq: first + i as u64,
                order_key: None,
                started,
                outcome,
            },
        );
    }
}

/// The consumer node: starts the workload's consumers and follows the orchestrator's
/// commands until told to stop them all.
async fn consumers(
    workload: Workload,
    history: Arc<Mutex<History>>,
    namesrv: String,
    env: ferrocket_engine::Env,
    start: Instant,
    mut commands: mpsc::UnboundedReceiver<ConsumerCommand>,
) {
    let mut incarnations = vec![0usize; workload.consumers];
    let mut running: BTreeMap<usize, DefaultMqPushConsumer> = BTreeMap::new();
    let launch = |n: usize, incarnation: usize| {
        let name = format!("consumer-{n}.{incarnation}");
        let mut config = PushConsumerConfig::new(GROUP, namesrv.clone());
        config.consume_from_where = ConsumeFromWhere::ConsumeFromFirstOffset;
        config.message_model = if workload.broadcast {
            MessageModel::Broadcasting
        } else {
            MessageModel::Clustering
        };
        config
            .subscriptions
            .insert(TOPIC.to_owned(), "*".to_owned());
        config.client.client_ip = "10.0.3.2".into();
        config.client.instance_name = name.clone();
        let record = {
            let (history, name, orderly) =
                (history.clone(), name.clone(), workload.orderly_consumers);
            move |messages: &[StoredMessage], queue: &MessageQueue| {
                let at = start.elapsed();
                let mut history = lock(&history);
                for message in messages {
                    history.deliveries.push(Delivery {
                        consumer: name.clone(),
                        orderly,
                        broker: queue.broker_name.clone(),
                        queue_id: message.queue_id,
                        queue_offset: message.queue_offset,
                        body: String::from_utf8_lossy(message.body.as_deref().unwrap_or_default())
                            .into_owned(),
                        at,
                    });
                }
            }
        };
        let listener = if workload.orderly_consumers {
            MessageListener::orderly(move |messages, context| {
                record(messages, &context.message_queue);
                ConsumeOrderlyStatus::Success
            })
        } else {
            MessageListener::concurrently(move |messages, context| {
                record(messages, &context.message_queue);
                ConsumeStatus::ConsumeSuccess
            })
        };
        DefaultMqPushConsumer::new(
            &env,
            Arc::new(ClientInstanceRegistry::new()),
            config,
            listener,
        )
    };
    for n in 0..workload.consumers {
        let consumer = launch(n, 0);
        if consumer.start().await.is_ok() {
            running.insert(n, consumer);
        }
    }
    while let Some(command) = commands.recv().await {
        match command {
            ConsumerCommand::Stop(n) => {
                if let Some(consumer) = running.remove(&n) {
                    consumer.shutdown().await;
                }
            }
            ConsumerCommand::Start(n) => {
                if n < incarnations.len() && !running.contains_key(&n) {
                    incarnations[n] += 1;
                    let consumer = launch(n, incarnations[n]);
                    if consumer.start().await.is_ok() {
                        running.insert(n, consumer);
                    }
                }
            }
            ConsumerCommand::StopAll => break,
        }
    }
    for consumer in running.values() {
        consumer.shutdown().await;
    }
}

/// The observer: checks invariants and samples the group's committed offsets, once a
/// second, while `observing`.
async fn observe(
    cluster: Arc<Cluster>,
    history: Arc<Mutex<History>>,
    brokers: Vec<String>,
    queues_per_broker: i32,
    start: Instant,
    observing: Arc<std::sync::atomic::AtomicBool>,
) {
    let env = cluster.client_env("observer-0");
    let mut client = ClientConfig::with_namesrv_addr(cluster.namesrv_addr());
    client.client_ip = "10.0.3.3".into();
    client.instance_name = "offset-sampler".into();
    let instance = ClientInstance::new(&env, client, ClientProcessorTable::new());
    while observing.load(std::sync::atomic::Ordering::Acquire) {
        sleep(OBSERVE_INTERVAL).await;
        cluster.check_invariants();
        for broker in &brokers {
            let addr = cluster.broker_addr(broker);
            for queue_id in 0..queues_per_broker {
                let header = QueryConsumerOffsetRequestHeader {
                    consumer_group: GROUP.to_owned(),
                    topic: TOPIC.to_owned(),
                    queue_id,
                    broker_name: None,
                };
                if let Ok(Some(offset)) = instance
                    .api()
                    .query_consumer_offset(&addr, &header, Duration::from_millis(500))
                    .await
                {
                    lock(&history).offsets.push(OffsetSample {
                        group: GROUP.to_owned(),
                        broker: broker.clone(),
                        queue_id,
                        offset,
                        at: start.elapsed(),
                    });
                }
            }
        }
    }
    instance.shutdown().await;
}

/// Every message of every queue of [`TOPIC`], pulled from each queue's first offset, once
/// the name server routes the topic to every broker group again (liveness: a healed
/// cluster converges within [`CATCH_UP_BOUND`]).
async fn read_everything(
    namesrv: String,
    env: ferrocket_engine::Env,
    brokers: BTreeSet<String>,
) -> Vec<StoredEntry> {
    let mut config = PullConsumerConfig::new("sim-reader", namesrv);
    config.client.client_ip = "10.0.3.3".into();
    config.client.instance_name = "final-reader".into();
    let reader = DefaultMqPullConsumer::new(&env, Arc::new(ClientInstanceRegistry::new()), config);
    reader.start().await.expect("the reader starts");
    let deadline = Instant::now() + CATCH_UP_BOUND;
    let queues = loop {
        let routed = reader.fetch_subscribe_message_queues(TOPIC).await;
        let listed: BTreeSet<String> = routed
            .iter()
            .flatten()
            .map(|queue| queue.broker_name.clone())
            .collect();
        match routed {
            Ok(queues) if listed == brokers => break queues,
            _ if Instant::now() > deadline => panic!(
                "liveness: after healing, the name server routes {TOPIC} to {listed:?}, not {brokers:?}"
            ),
            _ => sleep(Duration::from_secs(1)).await,
        }
    };
    let mut stored = Vec::new();
    for queue in &queues {
        let mut offset = 0;
        let mut failures = 0;
        loop {
            match reader.pull(queue, "*", offset, 32).await {
                Ok(result) if result.status == PullStatus::Found => {
                    offset = result.next_begin_offset;
                    stored.extend(result.messages.into_iter().map(|m| {
                        StoredEntry {
                            broker: queue.broker_name.clone(),
                            queue_id: queue.queue_id,
                            queue_offset: m.queue_offset,
                            body: String::from_utf8_lossy(m.body.as_deref().unwrap_or_default())
                                .into_owned(),
                        }
                    }));
                }
                Ok(result)
                    if result.status == PullStatus::OffsetIllegal && offset < result.min_offset =>
                {
                    offset = result.min_offset;
                }
                Ok(_) => break,
                Err(error) => {
                    failures += 1;
                    assert!(
                        failures < 30,
                        "final read of {queue:?} keeps failing: {error}"
                    );
                    sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
    reader.shutdown().await;
    stored
}
