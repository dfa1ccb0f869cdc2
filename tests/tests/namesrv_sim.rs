//! Two name servers and three brokers re-registering every 30 s, under madsim: a broker cut
//! off by a partition disappears from both name servers' routes after the 120 s expiry and
//! comes back after the heal; a name server that restarts with an empty table rebuilds it
//! from the brokers' re-registrations within one period.
#![cfg(madsim)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrocket_engine::Env;
use ferrocket_engine::broker::outer_api::{
    BrokerIdentity, BrokerOuterApi, RegistrationSchedule, run_periodic_registration,
};
use ferrocket_engine::namesrv::{NamesrvConfig, NamesrvController, NamesrvState};
use ferrocket_engine::protocol::{
    RegisterBrokerBody, TopicConfig, TopicConfigSerializeWrapper, TopicRouteData, from_json,
};
use ferrocket_engine::remoting::headers::GetRouteInfoRequestHeader;
use ferrocket_engine::remoting::transport::{
    ClientConfig, NettyServerConfig, ProcessorTable, RemotingClient,
};
use ferrocket_engine::remoting::{RemotingCommand, request_code, response_code};
use ferrocket_engine::rng::Rng;
use ferrocket_net::{SystemClock, TokioNet};
use ferrocket_sim::SimDisk;
use madsim::net::NetSim;
use madsim::runtime::Handle;
use madsim::task::NodeId;
use madsim::time::{Instant, sleep, sleep_until};

const NAMESRV_IPS: [&str; 2] = ["10.0.1.1", "10.0.1.2"];
const BROKERS: [(&str, &str); 3] = [
    ("broker-a", "10.0.2.1"),
    ("broker-b", "10.0.2.2"),
    ("broker-c", "10.0.2.3"),
];

fn namesrv_addrs() -> Vec<String> {
    NAMESRV_IPS.iter().map(|ip| format!("{ip}:9876")).collect()
}

fn node_env(disk: &Arc<SimDisk>, seed: u64) -> Env {
    Env {
        clock: SystemClock::shared(),
        net: TokioNet::shared(),
        disk: disk.shared(),
        rng: Rng::shared(seed),
    }
}

type StateSlot = Arc<Mutex<Option<Arc<NamesrvState>>>>;

/// Starts a name-server node whose SimDisk survives restarts; `slot` always holds the
/// state of its current incarnation.
fn start_namesrv(handle: &Handle, index: usize, slot: StateSlot) -> NodeId {
    let disk = SimDisk::new();
    let ip = NAMESRV_IPS[index];
    handle
        .create_node()
        .name(format!("namesrv-{index}"))
        .ip(ip.parse().unwrap())
        .init(move || {
            let env = node_env(&disk, index as u64);
            let slot = slot.clone();
            async move {
                let server = NettyServerConfig {
                    listen_port: 9876,
                    bind_address: ip.into(),
                    // Longer than the 120 s expiry, so that the liveness scan (not the idle
                    // close of the stalled connection) is what removes a silent broker.
                    server_channel_max_idle_time_seconds: 600,
                    ..NettyServerConfig::default()
                };
                let controller = NamesrvController::start(env, NamesrvConfig::default(), server)
                    .await
                    .expect("name server starts");
                *slot.lock().unwrap() = Some(controller.state().clone());
                std::future::pending::<()>().await;
            }
        })
        .build()
        .id()
}

/// Starts a broker node that only registers (with topics `Shared` and its own), every 30 s.
fn start_broker(handle: &Handle, name: &'static str, ip: &'static str) -> NodeId {
    handle
        .create_node()
        .name(format!("{name}-0"))
        .ip(ip.parse().unwrap())
        .init(move || async move {
            let client = Arc::new(RemotingClient::new(
                TokioNet::shared(),
                SystemClock::shared(),
                Rng::shared(7),
                ClientConfig::default(),
                ProcessorTable::new(),
                None,
            ));
            let identity = BrokerIdentity {
                cluster_name: "DefaultCluster".into(),
                broker_name: name.into(),
                broker_id: 0,
                broker_addr: format!("{ip}:10911"),
                ha_server_addr: format!("{ip}:10912"),
            };
            let mut topics = TopicConfigSerializeWrapper::default();
            for topic in ["Shared".to_string(), format!("Only-{name}")] {
                topics
                    .topic_config_table
                    .insert(topic.clone(), TopicConfig::new(topic, 4));
            }
            let body = RegisterBrokerBody {
                filter_server_list: Vec::new(),
                topic_config_serialize_wrapper: topics,
            };
            run_periodic_registration(
                BrokerOuterApi::new(client),
                SystemClock::shared(),
                namesrv_addrs(),
                identity,
                RegistrationSchedule::new(30_000, true),
                move || body.clone(),
                |_, _| {},
                |_| {},
                std::future::pending::<()>,
            )
            .await;
        })
        .build()
        .id()
}

/// The broker names in `namesrv`'s route of `Shared` (empty when it has none).
async fn shared_route(client: &RemotingClient, namesrv: &str) -> Vec<String> {
    let request = RemotingCommand::request_with_header(
        request_code::GET_ROUTEINFO_BY_TOPIC,
        &GetRouteInfoRequestHeader {
            topic: "Shared".into(),
            accept_standard_json_only: None,
        },
    );
    let response = client
        .invoke(namesrv, request, Duration::from_secs(3))
        .await
        .expect("the client's link to the name servers is never cut");
    if response.code == response_code::TOPIC_NOT_EXIST {
        return Vec::new();
    }
    assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
    let route: TopicRouteData = from_json("route", &response.body).unwrap();
    let mut names: Vec<String> = route
        .broker_datas
        .into_iter()
        .map(|b| b.broker_name)
        .collect();
    names.sort();
    names
}

async fn routes_everywhere(client: &RemotingClient) -> [Vec<String>; 2] {
    let addrs = namesrv_addrs();
    [
        shared_route(client, &addrs[0]).await,
        shared_route(client, &addrs[1]).await,
    ]
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[madsim::test]
async fn partitioned_broker_expires_and_returns_and_a_restarted_name_server_rebuilds() {
    let handle = Handle::current();
    let slots: [StateSlot; 2] = Default::default();
    let namesrv_ids = [
        start_namesrv(&handle, 0, slots[0].clone()),
        start_namesrv(&handle, 1, slots[1].clone()),
    ];
    let brokers: Vec<NodeId> = BROKERS
        .iter()
        .map(|(name, ip)| start_broker(&handle, name, ip))
        .collect();
    let broker_b = brokers[1];
    let client_node = handle
        .create_node()
        .name("client-0")
        .ip("10.0.3.1".parse().unwrap())
        .build();

    client_node
        .spawn(async move {
            let start = Instant::now();
            let at = |secs: u64| sleep_until(start + Duration::from_secs(secs));
            let client = RemotingClient::new(
                TokioNet::shared(),
                SystemClock::shared(),
                Rng::shared(1),
                ClientConfig::default(),
                ProcessorTable::new(),
                None,
            );
            let all = names(&["broker-a", "broker-b", "broker-c"]);
            let without_b = names(&["broker-a", "broker-c"]);

            at(5).await;
            assert_eq!(routes_everywhere(&client).await, [all.clone(), all.clone()]);

            // broker-b last registered at t≈0 and t≈30; cut it off from everyone.
            at(40).await;
            NetSim::current().clog_node(broker_b);
            at(140).await;
            assert_eq!(
                routes_everywhere(&client).await,
                [all.clone(), all.clone()],
                "not yet 120 s since broker-b's last registration"
            );
            at(175).await;
            assert_eq!(
                routes_everywhere(&client).await,
                [without_b.clone(), without_b.clone()],
                "expired 120 s after its last registration (+ one 10 s scan)"
            );

            // Heal: broker-b re-registers at its next period.
            NetSim::current().unclog_node(broker_b);
            at(225).await;
            assert_eq!(routes_everywhere(&client).await, [all.clone(), all.clone()]);

            // Restart name server 1: it comes back empty and is rebuilt within one period.
            Handle::current().kill(namesrv_ids[1]);
            Handle::current().restart(namesrv_ids[1]);
            sleep(Duration::from_millis(500)).await;
            let rebuilt_by = Instant::now() + Duration::from_secs(31);
            loop {
                let [_, second] = routes_everywhere(&client).await;
                if second == all {
                    break;
                }
                assert!(
                    Instant::now() < rebuilt_by,
                    "name server 1 not rebuilt within one registration period: {second:?}"
                );
                sleep(Duration::from_secs(1)).await;
            }
            assert_eq!(shared_route(&client, &namesrv_addrs()[0]).await, all);
        })
        .await
        .expect("client task");

    for slot in &slots {
        let state = slot.lock().unwrap().clone().expect("name server started");
        state.route().check_invariants();
    }
}
