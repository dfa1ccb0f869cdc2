//! The broker under madsim: long polling measured in simulated time, and the broker's crash
//! paths — a process crash (page cache kept) under ASYNC_FLUSH and a power loss under
//! SYNC_FLUSH — with a client that sends and pulls over the simulated network.
#![cfg(madsim)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrocket_engine::Env;
use ferrocket_engine::broker::config::BrokerConfig;
use ferrocket_engine::broker::controller::BrokerController;
use ferrocket_engine::namesrv::{NamesrvConfig, NamesrvController};
use ferrocket_engine::remoting::headers::{PullMessageRequestHeader, SendMessageRequestHeaderV2};
use ferrocket_engine::remoting::transport::{
    ClientConfig, NettyServerConfig, ProcessorTable, RemotingClient,
};
use ferrocket_engine::remoting::{RemotingCommand, request_code, response_code};
use ferrocket_engine::rng::Rng;
use ferrocket_engine::store::config::{FlushDiskType, MessageStoreConfig};
use ferrocket_engine::store::message::decode_records;
use ferrocket_net::{SystemClock, TokioNet};
use ferrocket_sim::{CrashKind, SimDisk};
use madsim::runtime::Handle;
use madsim::task::NodeId;
use madsim::time::{Instant, sleep};

const NAMESRV: &str = "10.0.1.1:9876";
const BROKER: &str = "10.0.2.1:10911";
const TOPIC: &str = "SimTopic";

fn env(disk: &Arc<SimDisk>, seed: u64) -> Env {
    Env {
        clock: SystemClock::shared(),
        net: TokioNet::shared(),
        disk: disk.shared(),
        rng: Rng::shared(seed),
    }
}

fn start_namesrv(handle: &Handle) -> NodeId {
    let disk = SimDisk::new();
    handle
        .create_node()
        .name("namesrv-0")
        .ip("10.0.1.1".parse().unwrap())
        .init(move || {
            let env = env(&disk, 1);
            async move {
                let server = NettyServerConfig {
                    listen_port: 9876,
                    bind_address: "10.0.1.1".into(),
                    ..NettyServerConfig::default()
                };
                let _namesrv = NamesrvController::start(env, NamesrvConfig::default(), server)
                    .await
                    .expect("the name server starts");
                std::future::pending::<()>().await;
            }
        })
        .build()
        .id()
}

/// A broker node whose SimDisk (returned) survives restarts.
fn start_broker(handle: &Handle, flush: FlushDiskType) -> (NodeId, Arc<SimDisk>) {
    let disk = SimDisk::new();
    let node_disk = disk.clone();
    let id = handle
        .create_node()
        .name("broker-a-0")
        .ip("10.0.2.1".parse().unwrap())
        .init(move || {
            let env = env(&node_disk, 2);
            async move {
                let config = BrokerConfig {
                    namesrv_addr: Some(NAMESRV.into()),
                    broker_ip1: "10.0.2.1".into(),
                    broker_ip2: "10.0.2.1".into(),
                    ..BrokerConfig::default()
                };
                let server = NettyServerConfig {
                    listen_port: 10911,
                    bind_address: "10.0.2.1".into(),
                    ..NettyServerConfig::default()
                };
                let store = MessageStoreConfig {
                    mapped_file_size_commit_log: 256 * 1024,
                    mapped_file_size_consume_queue: 20 * 1024,
                    flush_disk_type: flush,
                    ..MessageStoreConfig::default()
                };
                let _broker = BrokerController::start(env, config, store, server, 1 << 30)
                    .await
                    .expect("the broker starts");
                std::future::pending::<()>().await;
            }
        })
        .build()
        .id();
    (id, disk)
}

fn client() -> RemotingClient {
    RemotingClient::new(
        TokioNet::shared(),
        SystemClock::shared(),
        Rng::shared(3),
        ClientConfig::default(),
        ProcessorTable::new(),
        None,
    )
}

fn send_request(body: &str) -> RemotingCommand {
    let header = SendMessageRequestHeaderV2 {
        producer_group: "sim-pg".into(),
        topic: TOPIC.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 1,
        queue_id: 0,
        sys_flag: 0,
        born_timestamp: 0,
        flag: 0,
        properties: Some("TAGS\u{1}T".into()),
        ..SendMessageRequestHeaderV2::default()
    };
    RemotingCommand::request_with_header(request_code::SEND_MESSAGE_V2, &header)
        .with_body(body.as_bytes().to_vec())
}

fn pull_request(offset: i64, suspend_ms: i64) -> RemotingCommand {
    let header = PullMessageRequestHeader {
        consumer_group: "sim-cg".into(),
        topic: TOPIC.into(),
        queue_id: 0,
        queue_offset: offset,
        max_msg_nums: 32,
        // SUSPEND | SUBSCRIPTION
        sys_flag: 2 | 4,
        commit_offset: 0,
        suspend_timeout_millis: suspend_ms,
        subscription: Some("*".into()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        broker_name: None,
    };
    RemotingCommand::request_with_header(request_code::PULL_MESSAGE, &header)
}

/// Sends until the broker accepts (it registers and creates the topic on first send).
async fn send_eventually(client: &RemotingClient, body: &str) -> RemotingCommand {
    for _ in 0..100 {
        if let Ok(response) = client
            .invoke(BROKER, send_request(body), Duration::from_secs(3))
            .await
            && response.code == response_code::SUCCESS
        {
            return response;
        }
        sleep(Duration::from_millis(200)).await;
    }
    panic!("the broker never accepted a send");
}

/// Every body in the queue from offset 0, pulling without suspension.
async fn pull_all(client: &RemotingClient) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut offset = 0;
    loop {
        let response = client
            .invoke(BROKER, pull_request(offset, 0), Duration::from_secs(5))
            .await
            .expect("the broker answers pulls");
        let next: i64 = response
            .ext_fields
            .get("nextBeginOffset")
            .and_then(|v| v.parse().ok())
            .expect("every pull answer has nextBeginOffset");
        if response.code != response_code::SUCCESS {
            return bodies;
        }
        for message in decode_records(&response.body) {
            bodies.push(String::from_utf8_lossy(&message.body.unwrap_or_default()).into_owned());
        }
        offset = next;
    }
}

#[madsim::test]
async fn held_pull_is_answered_within_milliseconds_of_a_send_and_at_its_timeout_otherwise() {
    let handle = Handle::current();
    start_namesrv(&handle);
    start_broker(&handle, FlushDiskType::AsyncFlush);
    let client_node = handle
        .create_node()
        .name("client-0")
        .ip("10.0.3.1".parse().unwrap())
        .build();
    client_node
        .spawn(async move {
            let client = Arc::new(client());
            send_eventually(&client, "first").await;

            // A pull at the end of the queue is held...
            let held = {
                let client = client.clone();
                madsim::task::spawn(async move {
                    let response = client
                        .invoke(BROKER, pull_request(1, 15_000), Duration::from_secs(30))
                        .await
                        .expect("the held pull is answered");
                    (Instant::now(), response)
                })
            };
            sleep(Duration::from_secs(2)).await;
            // ...until a message for its queue arrives.
            send_eventually(&client, "second").await;
            let sent_at = Instant::now();
            let (answered_at, response) = held.await.unwrap();
            assert_eq!(response.code, response_code::SUCCESS);
            let bodies: Vec<_> = decode_records(&response.body)
                .into_iter()
                .map(|m| m.body.unwrap_or_default())
                .collect();
            assert_eq!(bodies, vec![Bytes::from_static(b"second")]);
            let latency = answered_at.saturating_duration_since(sent_at);
            assert!(
                latency < Duration::from_millis(50),
                "the held pull was answered {latency:?} after the send was acknowledged"
            );

            // With nothing sent, a held pull is answered at its suspend timeout.
            let asked_at = Instant::now();
            let response = client
                .invoke(BROKER, pull_request(2, 3_000), Duration::from_secs(30))
                .await
                .expect("the held pull is answered at its timeout");
            let waited = asked_at.elapsed();
            assert_eq!(response.code, response_code::PULL_NOT_FOUND);
            assert!(
                waited >= Duration::from_millis(3_000) && waited < Duration::from_millis(3_200),
                "answered after {waited:?}, suspend timeout 3 s"
            );
        })
        .await
        .unwrap();
}

/// Sends `count` messages, crashes the broker with `kind`, restarts it, and returns what a
/// consumer then finds and what was acknowledged.
async fn crash_and_recover(flush: FlushDiskType, kind: CrashKind) -> (Vec<String>, Vec<String>) {
    let handle = Handle::current();
    start_namesrv(&handle);
    let (broker, disk) = start_broker(&handle, flush);
    let client_node = handle
        .create_node()
        .name("client-0")
        .ip("10.0.3.1".parse().unwrap())
        .build();
    client_node
        .spawn(async move {
            let client = client();
            let mut acknowledged = Vec::new();
            for i in 0..200 {
                let body = format!("m{i}");
                send_eventually(&client, &body).await;
                acknowledged.push(body);
            }
            Handle::current().kill(broker);
            disk.crash(kind, &Rng::from_seed(Handle::current().seed()));
            Handle::current().restart(broker);
            // Pull once the restarted broker answers.
            let mut found = Vec::new();
            for _ in 0..100 {
                sleep(Duration::from_millis(200)).await;
                found = pull_all(&client).await;
                if !found.is_empty() {
                    break;
                }
            }
            (found, acknowledged)
        })
        .await
        .unwrap()
}

#[madsim::test]
async fn a_process_crash_under_async_flush_keeps_every_acknowledged_message() {
    let (found, acknowledged) =
        crash_and_recover(FlushDiskType::AsyncFlush, CrashKind::Process).await;
    assert_eq!(found, acknowledged);
}

#[madsim::test]
async fn a_power_loss_under_sync_flush_keeps_every_acknowledged_message() {
    let (found, acknowledged) =
        crash_and_recover(FlushDiskType::SyncFlush, CrashKind::PowerLoss).await;
    assert_eq!(found, acknowledged);
}
