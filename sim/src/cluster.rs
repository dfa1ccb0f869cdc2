//! The cluster harness: a RocketMQ cluster as madsim nodes named like the real processes
//! (`namesrv-0`, `broker-a-0`, ...), configured through the same Java-properties parsing as
//! the binaries, each with a [`SimDisk`] that survives its restarts, its own
//! [`SkewedClock`] and its own seeded RNG; and the faults a scenario injects into it.
//!
//! Where it sits: scenarios build a [`Cluster`] from a [`ClusterSpec`], run clients on nodes
//! from [`Cluster::client_node`], and break things with the fault methods: process crash
//! and power loss ([`Cluster::crash`]), restart, pause, partitions and one-way clogs of any
//! link, wall-clock skew and jumps, disk faults. Every injected fault is counted by kind
//! ([`Cluster::fault_counts`]) for the runner's summary. [`Cluster::check_invariants`] runs
//! the `check_invariants` of every live broker's store and of the name server's routes.
//!
//! Invariants: a node is killed before it is restarted (madsim keeps the old sockets
//! bound otherwise); a crashed broker's disk has lost exactly what its [`CrashKind`] loses
//! before the node runs again; node RNG seeds derive from the runtime seed and the node
//! name only, so a run is reproducible from its seed.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use ferrocket_engine::Env;
use ferrocket_engine::broker::config::BrokerConfig;
use ferrocket_engine::broker::context::BrokerContext;
use ferrocket_engine::broker::controller::BrokerController;
use ferrocket_engine::config::{ConfigError, PropertiesConfig, apply_properties, parse_properties};
use ferrocket_engine::namesrv::{NamesrvConfig, NamesrvController, NamesrvState};
use ferrocket_engine::remoting::headers::CreateTopicRequestHeader;
use ferrocket_engine::remoting::transport::{NettyServerConfig, RemotingClient};
use ferrocket_engine::remoting::{RemotingCommand, request_code, response_code};
use ferrocket_engine::rng::Rng;
use ferrocket_engine::store::config::MessageStoreConfig;
use ferrocket_net::TokioNet;
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use madsim::task::NodeId;
use madsim::time::sleep;
use std::time::Duration;

use crate::{CrashKind, SimDisk, SimDiskFaults, SkewedClock};

/// The name server's IP.
pub const NAMESRV_IP: &str = "10.0.1.1";
/// The name server's port.
pub const NAMESRV_PORT: u16 = 9876;
/// Every broker's port.
pub const BROKER_PORT: u16 = 10911;
/// Memory the simulated brokers size their hot-data window from.
const BROKER_MEMORY: u64 = 1 << 30;

/// One broker group (a master) of a [`ClusterSpec`].
#[derive(Debug, Clone)]
pub struct BrokerSpec {
    /// `brokerName`: the node is `<name>-0`.
    pub name: String,
    /// Extra `broker.conf` lines (`flushDiskType=SYNC_FLUSH`, ...), applied after the
    /// harness's own (addresses, small segments) exactly as `mqbroker -c` applies a file.
    pub properties: String,
}

/// The cluster to build: one name server and the broker groups.
#[derive(Debug, Clone, Default)]
pub struct ClusterSpec {
    /// The broker groups, in order: `broker-a` gets 10.0.2.1, the next 10.0.2.2, ...
    pub brokers: Vec<BrokerSpec>,
    /// Extra `namesrv.conf` lines.
    pub namesrv_properties: String,
}

/// Why a cluster could not be built: a configuration the binaries would refuse too.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A properties text did not parse or a value did not fit its key.
    #[error("{node}: {source}")]
    Config {
        /// The node whose configuration is wrong.
        node: String,
        /// What is wrong.
        source: ConfigError,
    },
    /// A key no configuration knows.
    #[error("{node}: unknown config key(s) {keys:?}")]
    UnknownKeys {
        /// The node whose configuration is wrong.
        node: String,
        /// The keys.
        keys: Vec<String>,
    },
}

/// The configuration of one broker node, parsed up front so that a bad spec fails before
/// the simulation starts.
#[derive(Debug, Clone)]
struct BrokerConfigs {
    broker: BrokerConfig,
    server: NettyServerConfig,
    store: MessageStoreConfig,
}

/// A simulated server process.
#[derive(Debug, Clone)]
pub struct ServerNode {
    /// The process name (`namesrv-0`, `broker-a-0`).
    pub name: String,
    /// The madsim node.
    pub id: NodeId,
    /// Its IP.
    pub ip: String,
    /// Its disk, kept across restarts.
    pub disk: Arc<SimDisk>,
    /// Its clock.
    pub clock: Arc<SkewedClock>,
}

/// What a running node exposes to the harness's invariant checks.
#[derive(Default)]
struct Live {
    /// Node name → the running broker's context.
    brokers: BTreeMap<String, Arc<BrokerContext>>,
    namesrv: Option<Arc<NamesrvState>>,
}

/// A running cluster. See the module docs.
pub struct Cluster {
    handle: Handle,
    namesrv: ServerNode,
    brokers: Vec<ServerNode>,
    live: Arc<Mutex<Live>>,
    faults: Mutex<BTreeMap<&'static str, u64>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("namesrv", &self.namesrv.name)
            .field(
                "brokers",
                &self.brokers.iter().map(|b| &b.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every table here is updated by single inserts, so a poisoned one is still consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The seed of `node`'s RNG: the runtime seed mixed with the node name (FNV-1a).
pub fn node_seed(seed: u64, node: &str) -> u64 {
    node.bytes()
        .fold(seed ^ 0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

/// Applies `text` (Java properties) to `configs` as the binaries do, but strictly: an
/// unknown key is an error here, since a scenario's spec is code.
fn apply(
    node: &str,
    configs: &mut [&mut dyn PropertiesConfig],
    text: &str,
) -> Result<(), HarnessError> {
    let config_error = |source| HarnessError::Config {
        node: node.to_owned(),
        source,
    };
    let properties = parse_properties(text).map_err(config_error)?;
    let unknown = apply_properties(configs, &properties).map_err(config_error)?;
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(HarnessError::UnknownKeys {
            node: node.to_owned(),
            keys: unknown,
        })
    }
}

fn broker_configs(spec: &BrokerSpec, ip: &str) -> Result<BrokerConfigs, HarnessError> {
    let node = format!("{}-0", spec.name);
    let mut broker = BrokerConfig::default();
    let mut server = NettyServerConfig::default();
    let mut store = MessageStoreConfig::default();
    // Small segments, so scenarios roll files over; then the scenario's own lines.
    let base = format!(
        "brokerName={}\nbrokerClusterName=DefaultCluster\nbrokerId=0\nnamesrvAddr={NAMESRV_IP}:{NAMESRV_PORT}\n\
         brokerIP1={ip}\nbrokerIP2={ip}\nlistenPort={BROKER_PORT}\nbindAddress={ip}\n\
         storePathRootDir=store\nmappedFileSizeCommitLog=262144\nmappedFileSizeConsumeQueue=20480\n",
        spec.name
    );
    for text in [base.as_str(), spec.properties.as_str()] {
        apply(&node, &mut [&mut broker, &mut server, &mut store], text)?;
    }
    Ok(BrokerConfigs {
        broker,
        server,
        store,
    })
}

impl Cluster {
    /// Builds and starts the cluster's nodes on the current runtime. Configurations are
    /// parsed first; a bad one is an error and no node starts.
    pub fn start(spec: &ClusterSpec) -> Result<Self, HarnessError> {
        let handle = Handle::current();
        let mut namesrv_config = NamesrvConfig::default();
        let mut namesrv_server = NettyServerConfig::default();
        let namesrv_base = format!("listenPort={NAMESRV_PORT}\nbindAddress={NAMESRV_IP}\n");
        for text in [namesrv_base.as_str(), spec.namesrv_properties.as_str()] {
            apply(
                "namesrv-0",
                &mut [&mut namesrv_config, &mut namesrv_server],
                text,
            )?;
        }
        let broker_configs: Vec<(String, String, BrokerConfigs)> = spec
            .brokers
            .iter()
            .enumerate()
            .map(|(i, broker)| {
                let ip = format!("10.0.2.{}", i + 1);
                broker_configs(broker, &ip).map(|configs| (broker.name.clone(), ip, configs))
            })
            .collect::<Result<_, _>>()?;

        let live: Arc<Mutex<Live>> = Arc::default();
        let namesrv = {
            let live = live.clone();
            Self::server_node(&handle, "namesrv-0", NAMESRV_IP, move |env| {
                let (config, server, live) =
                    (namesrv_config.clone(), namesrv_server.clone(), live.clone());
                async move {
                    let controller = match NamesrvController::start(env, config, server).await {
                        Ok(controller) => controller,
                        Err(error) => {
                            // The process exits, as `mqnamesrv` does; a restart tries again.
                            tracing::error!(%error, "the name server failed to start");
                            return;
                        }
                    };
                    lock(&live).namesrv = Some(controller.state().clone());
                    std::future::pending::<()>().await;
                }
            })
        };
        let brokers = broker_configs
            .into_iter()
            .map(|(broker_name, ip, configs)| {
                let live = live.clone();
                let node = format!("{broker_name}-0");
                let node_name = node.clone();
                Self::server_node(&handle, &node, &ip, move |env| {
                    let configs = configs.clone();
                    let (live, node_name) = (live.clone(), node_name.clone());
                    async move {
                        let started = BrokerController::start(
                            env,
                            configs.broker,
                            configs.store,
                            configs.server,
                            BROKER_MEMORY,
                        )
                        .await;
                        let controller = match started {
                            Ok(controller) => controller,
                            Err(error) => {
                                // The process exits, as `mqbroker` does (a full or failing
                                // disk, say); a restart tries again.
                                tracing::error!(%error, "the broker failed to start");
                                return;
                            }
                        };
                        lock(&live)
                            .brokers
                            .insert(node_name, controller.context().clone());
                        std::future::pending::<()>().await;
                    }
                })
            })
            .collect();
        Ok(Self {
            handle,
            namesrv,
            brokers,
            live,
            faults: Mutex::default(),
        })
    }

    /// Creates a server node whose `init` re-runs on every restart over the same disk and
    /// clock.
    fn server_node<F, Fut>(handle: &Handle, name: &str, ip: &str, run: F) -> ServerNode
    where
        F: Fn(Env) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let disk = SimDisk::new();
        let clock = SkewedClock::new(0);
        let seed = node_seed(handle.seed(), name);
        let (node_disk, node_clock) = (disk.clone(), clock.clone());
        let id = handle
            .create_node()
            .name(name)
            .ip(ip
                .parse::<IpAddr>()
                .expect("harness addresses are literals"))
            .init(move || {
                run(Env {
                    clock: node_clock.clone(),
                    net: TokioNet::shared(),
                    disk: node_disk.shared(),
                    rng: Arc::new(Rng::from_seed(seed)),
                })
            })
            .build()
            .id();
        ServerNode {
            name: name.to_owned(),
            id,
            ip: ip.to_owned(),
            disk,
            clock,
        }
    }

    /// A client node (`producer-0`, `consumer-0`, ...) at `ip` (10.0.3.x by convention).
    pub fn client_node(&self, name: &str, ip: &str) -> NodeHandle {
        self.handle
            .create_node()
            .name(name)
            .ip(ip.parse::<IpAddr>().expect("a literal client address"))
            .build()
    }

    /// The environment of a client running on a client node: the runtime's network and
    /// clock, its own disk and an RNG seeded from the runtime seed and `name`.
    pub fn client_env(&self, name: &str) -> Env {
        Env {
            clock: SkewedClock::new(0),
            net: TokioNet::shared(),
            disk: SimDisk::new().shared(),
            rng: Arc::new(Rng::from_seed(node_seed(self.handle.seed(), name))),
        }
    }

    /// The name server's address.
    pub fn namesrv_addr(&self) -> String {
        format!("{NAMESRV_IP}:{NAMESRV_PORT}")
    }

    /// The name server node.
    pub fn namesrv(&self) -> &ServerNode {
        &self.namesrv
    }

    /// The broker nodes, in spec order.
    pub fn brokers(&self) -> &[ServerNode] {
        &self.brokers
    }

    /// The broker node of group `broker_name`.
    pub fn broker(&self, broker_name: &str) -> &ServerNode {
        let node = format!("{broker_name}-0");
        self.brokers
            .iter()
            .find(|b| b.name == node)
            .unwrap_or_else(|| panic!("no broker group {broker_name} in the cluster"))
    }

    /// The address clients use for broker group `broker_name`.
    pub fn broker_addr(&self, broker_name: &str) -> String {
        format!("{}:{BROKER_PORT}", self.broker(broker_name).ip)
    }

    fn count(&self, kind: &'static str) {
        *lock(&self.faults).entry(kind).or_default() += 1;
    }

    /// How many faults of each kind were injected.
    pub fn fault_counts(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.faults).clone()
    }

    fn node_by_id(&self, id: NodeId) -> &ServerNode {
        std::iter::once(&self.namesrv)
            .chain(&self.brokers)
            .find(|node| node.id == id)
            .unwrap_or_else(|| panic!("node {id} is not a server of this cluster"))
    }

    /// Kills a server process and applies `kind` to its disk: a process crash keeps the page
    /// cache, a power loss loses (or tears) what was not synced. The node stays down until
    /// [`restart`](Self::restart).
    pub fn crash(&self, node: &ServerNode, kind: CrashKind) {
        tracing::info!(node = %node.name, ?kind, "fault: crash");
        self.handle.kill(node.id);
        lock(&self.live).brokers.remove(&node.name);
        let rng =
            Rng::from_seed(node_seed(self.handle.seed(), &node.name) ^ node.disk.generation());
        node.disk.crash(kind, &rng);
        self.count(match kind {
            CrashKind::Process => "process crash",
            CrashKind::PowerLoss => "power loss",
        });
    }

    /// Starts a crashed server again, over its disk (recovery runs).
    pub fn restart(&self, node: &ServerNode) {
        tracing::info!(node = %node.name, "fault: restart");
        self.handle.restart(node.id);
        self.count("restart");
    }

    /// Freezes a process (a long GC pause or a stopped VM) until [`resume`](Self::resume).
    pub fn pause(&self, node: &ServerNode) {
        tracing::info!(node = %node.name, "fault: pause");
        self.handle.pause(node.id);
        self.count("pause");
    }

    /// Lets a paused process run again.
    pub fn resume(&self, node: &ServerNode) {
        self.handle.resume(node.id);
    }

    /// Cuts the link between `a` and `b` in both directions until [`heal`](Self::heal).
    pub fn partition(&self, a: NodeId, b: NodeId) {
        tracing::info!(%a, %b, "fault: partition");
        let net = NetSim::current();
        net.clog_link(a, b);
        net.clog_link(b, a);
        self.count("partition");
    }

    /// Cuts the link from `src` to `dst` only.
    pub fn clog_one_way(&self, src: NodeId, dst: NodeId) {
        tracing::info!(%src, %dst, "fault: one-way clog");
        NetSim::current().clog_link(src, dst);
        self.count("one-way clog");
    }

    /// Restores the link between `a` and `b` in both directions.
    pub fn heal(&self, a: NodeId, b: NodeId) {
        let net = NetSim::current();
        net.unclog_link(a, b);
        net.unclog_link(b, a);
    }

    /// Sets every link's one-way latency to `latency` (a congested network); the default
    /// (madsim's 1–10 ms) comes back with [`reset_latency`](Self::reset_latency).
    pub fn set_latency(&self, latency: std::ops::Range<Duration>) {
        tracing::info!(?latency, "fault: network latency");
        NetSim::current().update_config(|config| config.send_latency = latency);
        self.count("slow network");
    }

    /// Restores madsim's default link latency.
    pub fn reset_latency(&self) {
        NetSim::current().update_config(|config| {
            config.send_latency = madsim::net::Config::default().send_latency;
        });
    }

    /// Moves a server's wall clock by `delta_ms` (an NTP step, or a skew from the start).
    pub fn jump_clock(&self, node: &ServerNode, delta_ms: i64) {
        tracing::info!(node = %node.name, delta_ms, "fault: clock jump");
        node.clock.jump(delta_ms);
        self.count("clock jump");
    }

    /// Sets a server's disk faults (EIO, ENOSPC, slow syncs); `SimDiskFaults::default()`
    /// clears them.
    pub fn set_disk_faults(&self, node: &ServerNode, faults: SimDiskFaults) {
        tracing::info!(node = %node.name, ?faults, "fault: disk");
        let injected = faults != SimDiskFaults::default();
        node.disk.set_faults(faults);
        if injected {
            self.count("disk fault");
        }
    }

    /// Whether the broker node `node` runs a started broker (not crashed, not exited after
    /// a failed start).
    pub fn is_serving(&self, node: &ServerNode) -> bool {
        lock(&self.live).brokers.contains_key(&node.name)
    }

    /// The contexts of the brokers running now, by node name.
    pub fn live_brokers(&self) -> BTreeMap<String, Arc<BrokerContext>> {
        lock(&self.live).brokers.clone()
    }

    /// Panics if an invariant of a live broker's store, the name server's route table or a
    /// server's disk is broken.
    pub fn check_invariants(&self) {
        let (brokers, namesrv) = {
            let live = lock(&self.live);
            (live.brokers.clone(), live.namesrv.clone())
        };
        for context in brokers.values() {
            context.store.check_invariants();
        }
        if let Some(namesrv) = namesrv {
            namesrv.route().check_invariants();
        }
        for node in std::iter::once(&self.namesrv).chain(&self.brokers) {
            node.disk.check_invariants();
        }
    }

    /// The node with id `id`, for fault plans that pick nodes by id.
    pub fn server(&self, id: NodeId) -> &ServerNode {
        self.node_by_id(id)
    }
}

/// Creates `topic` with `queue_nums` read and write queues on the broker at `addr`
/// (UPDATE_AND_CREATE_TOPIC, as `mqadmin updateTopic` does), retrying until the broker
/// accepts.
pub async fn create_topic(client: &RemotingClient, addr: &str, topic: &str, queue_nums: i32) {
    let header = CreateTopicRequestHeader {
        topic: topic.into(),
        default_topic: "TBW102".into(),
        read_queue_nums: queue_nums,
        write_queue_nums: queue_nums,
        perm: 6,
        topic_filter_type: "SINGLE_TAG".into(),
        topic_sys_flag: None,
        order: false,
    };
    let request =
        RemotingCommand::request_with_header(request_code::UPDATE_AND_CREATE_TOPIC, &header);
    for _ in 0..100 {
        if let Ok(response) = client
            .invoke(addr, request.clone(), Duration::from_secs(3))
            .await
            && response.code == response_code::SUCCESS
        {
            return;
        }
        sleep(Duration::from_millis(200)).await;
    }
    panic!("the broker at {addr} never created {topic}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_seeds_differ_by_name_and_seed() {
        assert_ne!(node_seed(1, "broker-a-0"), node_seed(1, "broker-b-0"));
        assert_ne!(node_seed(1, "broker-a-0"), node_seed(2, "broker-a-0"));
        assert_eq!(node_seed(7, "namesrv-0"), node_seed(7, "namesrv-0"));
    }

    #[test]
    fn a_bad_broker_spec_is_refused_before_anything_runs() {
        let spec = BrokerSpec {
            name: "broker-a".into(),
            properties: "flushDiskType=SOMETIMES\n".into(),
        };
        let error = broker_configs(&spec, "10.0.2.1").unwrap_err();
        assert!(error.to_string().contains("broker-a-0"), "{error}");
        let spec = BrokerSpec {
            name: "broker-a".into(),
            properties: "flushDiskTyp=SYNC_FLUSH\n".into(),
        };
        assert!(matches!(
            broker_configs(&spec, "10.0.2.1"),
            Err(HarnessError::UnknownKeys { .. })
        ));
        let spec = BrokerSpec {
            name: "broker-b".into(),
            properties: "flushDiskType=SYNC_FLUSH\n".into(),
        };
        let configs = broker_configs(&spec, "10.0.2.2").unwrap();
        assert_eq!(configs.broker.broker_name, "broker-b");
        assert_eq!(configs.server.listen_port, BROKER_PORT);
    }
}
