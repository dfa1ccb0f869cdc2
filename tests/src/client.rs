//! Fixtures of the client tests against the real binaries: a name server and a broker in
//! temporary homes, the runtime a scenario runs on, the client's environment, a bare client
//! API, and the pull header the tests read messages back with.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrocket_engine::Env;
use ferrocket_engine::client::api::MqClientApi;
use ferrocket_engine::client::instance::ClientInstanceRegistry;
use ferrocket_engine::client::producer::{DefaultMqProducer, ProducerConfig};
use ferrocket_engine::remoting::LanguageCode;
use ferrocket_engine::remoting::headers::PullMessageRequestHeader;
use ferrocket_engine::remoting::transport::{
    ClientConfig as RemotingConfig, ProcessorTable, RemotingClient,
};
use ferrocket_engine::rng::Rng;
use ferrocket_net::{SystemClock, TokioNet};
use ferrocket_sim::SimDisk;

use crate::process::{ServerProcess, start_broker, start_namesrv, wait_for_route};

/// `mqnamesrv` and one `mqbroker` registered with it, each in a temporary home removed on
/// drop.
pub struct Cluster {
    _namesrv_home: tempfile::TempDir,
    _broker_home: tempfile::TempDir,
    /// The name server.
    pub namesrv: ServerProcess,
    /// The broker.
    pub broker: ServerProcess,
}

impl Cluster {
    /// Starts both servers, the broker with `broker_properties` (`key=value` lines), and
    /// waits until the broker's TBW102 route is served.
    pub fn start(broker_properties: &str) -> Self {
        let namesrv_home = tempfile::tempdir().expect("a temporary name-server home");
        let broker_home = tempfile::tempdir().expect("a temporary broker home");
        let namesrv = start_namesrv(namesrv_home.path());
        let broker = start_broker(broker_home.path(), namesrv.addr, None, broker_properties);
        wait_for_route(namesrv.addr, "TBW102");
        Self {
            _namesrv_home: namesrv_home,
            _broker_home: broker_home,
            namesrv,
            broker,
        }
    }

    /// The name server's address.
    pub fn namesrv_addr(&self) -> SocketAddr {
        self.namesrv.addr
    }

    /// The broker's address, as clients write it.
    pub fn broker_addr(&self) -> String {
        self.broker.addr.to_string()
    }

    /// Both servers' logs, for a failure message.
    pub fn logs(&self) -> String {
        format!(
            "--- mqnamesrv\n{}\n--- mqbroker\n{}",
            self.namesrv.log_text(),
            self.broker.log_text()
        )
    }
}

/// The runtime a scenario runs on (the cluster is started outside it: its route probe runs
/// a runtime of its own).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the scenario")
}

/// A client's environment: real clock and network, a disk it never uses, RNG seeded `seed`.
pub fn client_env(seed: u64) -> Env {
    Env {
        clock: SystemClock::shared(),
        net: TokioNet::shared(),
        disk: SimDisk::new().shared(),
        rng: Rng::shared(seed),
    }
}

/// A pull of group `cg` that carries its subscription (`*`) and does not wait.
pub fn pull_header(topic: &str, queue_id: i32, queue_offset: i64) -> PullMessageRequestHeader {
    PullMessageRequestHeader {
        consumer_group: "cg".into(),
        topic: topic.into(),
        queue_id,
        queue_offset,
        max_msg_nums: 32,
        sys_flag: 0x4,
        commit_offset: 0,
        suspend_timeout_millis: 0,
        subscription: Some("*".into()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        broker_name: None,
    }
}

/// A client API over a remoting client of its own that knows `namesrv`: for requests a test
/// makes itself, beside the clients under test.
pub fn raw_api(namesrv: &str, seed: u64) -> MqClientApi {
    let env = client_env(seed);
    let remoting = Arc::new(RemotingClient::new(
        env.net,
        env.clock,
        env.rng,
        RemotingConfig::default(),
        ProcessorTable::new(),
        None,
    ));
    remoting.update_name_server_address_list(&[namesrv.to_owned()]);
    MqClientApi::new(remoting, LanguageCode::Java)
}

/// A producer of group `<name>_pg` against `cluster`, on a client instance of its own
/// (`<pid>#<name>-producer`), with RNG seed `seed`. Not started.
pub fn test_producer(
    registry: &Arc<ClientInstanceRegistry>,
    cluster: &Cluster,
    name: &str,
    seed: u64,
) -> DefaultMqProducer {
    let mut config = ProducerConfig::new(format!("{name}_pg"), cluster.namesrv_addr().to_string());
    config
        .client
        .change_instance_name_to_pid(format!("{}#{name}-producer", std::process::id()));
    DefaultMqProducer::new(&client_env(seed), registry.clone(), config)
}

/// Polls `probe` every 50 ms until it gives `Some`, and returns that; fails the test with
/// `what` and the cluster's logs after `max`.
pub async fn until_some<T, F, Fut>(what: &str, max: Duration, cluster: &Cluster, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + max;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {max:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits up to `max` for `done`, looking every 100 ms; returns whether it became true.
pub async fn eventually(max: Duration, done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < max {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done()
}
