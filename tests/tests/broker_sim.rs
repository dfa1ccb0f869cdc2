//! The broker under madsim: long polling measured in simulated time, the broker's crash
//! paths — a process crash (page cache kept) under ASYNC_FLUSH and a power loss under
//! SYNC_FLUSH — with a client that sends and pulls over the simulated network, and a topic
//! created on send registered before the send is answered, on a slow disk and with the name
//! server out of reach.
#![cfg(madsim)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrocket_engine::remoting::headers::GetRouteInfoRequestHeader;
use ferrocket_engine::remoting::transport::RemotingClient;
use ferrocket_engine::remoting::{RemotingCommand, request_code, response_code};
use ferrocket_engine::rng::Rng;
use ferrocket_engine::store::config::FlushDiskType;
use ferrocket_engine::store::message::decode_records;
use ferrocket_sim::{CrashKind, SimDiskFaults};
use ferrocket_tests::sim_broker::{
    BROKER, NAMESRV, bodies, client, client_node, create_topic, pull_all, pull_request,
    send_eventually, send_request, start_broker, start_namesrv,
};
use madsim::net::NetSim;
use madsim::runtime::Handle;
use madsim::time::{Instant, sleep};

const TOPIC: &str = "SimTopic";

/// A send of `body` to [`TOPIC`] queue 0, tag `T`.
fn send(body: &str) -> RemotingCommand {
    send_request(TOPIC, "TAGS\u{1}T", body)
}

#[madsim::test]
async fn held_pull_is_answered_within_milliseconds_of_a_send_and_at_its_timeout_otherwise() {
    let handle = Handle::current();
    start_namesrv(&handle);
    start_broker(&handle, FlushDiskType::AsyncFlush);
    let client_node = client_node(&handle);
    client_node
        .spawn(async move {
            let client = Arc::new(client());
            send_eventually(&client, send("first")).await;

            // A pull at the end of the queue is held...
            let held = {
                let client = client.clone();
                madsim::task::spawn(async move {
                    let response = client
                        .invoke(
                            BROKER,
                            pull_request(TOPIC, 0, 1, 15_000),
                            Duration::from_secs(30),
                        )
                        .await
                        .expect("the held pull is answered");
                    (Instant::now(), response)
                })
            };
            sleep(Duration::from_secs(2)).await;
            // ...until a message for its queue arrives.
            send_eventually(&client, send("second")).await;
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
                .invoke(
                    BROKER,
                    pull_request(TOPIC, 0, 2, 3_000),
                    Duration::from_secs(30),
                )
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
    let client_node = client_node(&handle);
    client_node
        .spawn(async move {
            let client = client();
            let mut acknowledged = Vec::new();
            for i in 0..200 {
                let body = format!("m{i}");
                send_eventually(&client, send(&body)).await;
                acknowledged.push(body);
            }
            Handle::current().kill(broker);
            disk.crash(kind, &Rng::from_seed(Handle::current().seed()));
            Handle::current().restart(broker);
            // Pull once the restarted broker answers.
            let mut found = Vec::new();
            for _ in 0..100 {
                sleep(Duration::from_millis(200)).await;
                found = bodies(&pull_all(&client, TOPIC, 0).await);
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

/// The name server's answer code to a route query for `topic`.
async fn route_code(client: &RemotingClient, topic: &str) -> i32 {
    let request = RemotingCommand::request_with_header(
        request_code::GET_ROUTEINFO_BY_TOPIC,
        &GetRouteInfoRequestHeader {
            topic: topic.into(),
            accept_standard_json_only: None,
        },
    );
    client
        .invoke(NAMESRV, request, Duration::from_secs(3))
        .await
        .expect("the client's link to the name server is never cut")
        .code
}

/// As Java's broker, which registers a topic it creates on send before answering: once the
/// send is answered the name server routes the topic, however slowly the broker's disk
/// syncs `topics.json` (a consumer started then finds its queues at once, not at its next
/// 30 s route poll). With the name server out of reach the send is still answered, after
/// at most `registerBrokerTimeoutMills` (6 s).
#[madsim::test]
async fn a_topic_created_on_send_is_routed_by_the_time_the_send_is_answered() {
    let handle = Handle::current();
    let namesrv = start_namesrv(&handle);
    let (broker, disk) = start_broker(&handle, FlushDiskType::AsyncFlush);
    let client_node = client_node(&handle);
    client_node
        .spawn(async move {
            let client = client();
            send_eventually(&client, send_request("Warm", "", "up")).await;

            for (topic, sync_latency) in [
                ("FastDiskA", Duration::ZERO),
                ("FastDiskB", Duration::ZERO),
                ("SlowDiskA", Duration::from_millis(400)),
                ("SlowDiskB", Duration::from_millis(400)),
            ] {
                disk.set_faults(SimDiskFaults {
                    sync_latency,
                    ..disk.faults()
                });
                let response = client
                    .invoke(
                        BROKER,
                        send_request(topic, "", "x"),
                        Duration::from_secs(30),
                    )
                    .await
                    .expect("the send is answered");
                assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
                assert_eq!(
                    route_code(&client, topic).await,
                    response_code::SUCCESS,
                    "{topic} was answered before the name server could route it"
                );
            }
            disk.set_faults(SimDiskFaults::default());
            // UPDATE_AND_CREATE_TOPIC is answered after the registration as well.
            create_topic(&client, BROKER, "AdminMade", 4).await;
            assert_eq!(
                route_code(&client, "AdminMade").await,
                response_code::SUCCESS,
                "AdminMade was answered before the name server could route it"
            );

            let net = NetSim::current();
            net.clog_link(broker, namesrv);
            net.clog_link(namesrv, broker);
            let asked_at = Instant::now();
            let response = client
                .invoke(
                    BROKER,
                    send_request("CutOff", "", "x"),
                    Duration::from_secs(30),
                )
                .await
                .expect("the send is answered without the name server");
            let waited = asked_at.elapsed();
            assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
            assert!(
                waited <= Duration::from_millis(6_500),
                "answered after {waited:?}; registerBrokerTimeoutMills is 6 s"
            );
            assert_eq!(
                route_code(&client, "CutOff").await,
                response_code::TOPIC_NOT_EXIST
            );
            net.unclog_link(broker, namesrv);
            net.unclog_link(namesrv, broker);
        })
        .await
        .unwrap();
}
