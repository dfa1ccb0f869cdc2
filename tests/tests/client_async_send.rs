//! Async sends of the default producer against the real binaries over TCP: many sends in
//! flight at once — futures and callbacks mixed, to a topic created through TBW102 by the
//! first of them — each complete exactly once with SEND_OK, and every message is then pulled
//! back once under the `UNIQ_KEY` its send reported; the bound on sends in flight refuses
//! one more at once; and a callback gets a typed error when no name server answers (no
//! route) and when the broker is down.
//!
//! Build the binaries first: `cargo build --bins`.
#![cfg(not(madsim))]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use ferrocket_engine::client::api::{PullStatus, SendStatus};
use ferrocket_engine::client::instance::ClientInstanceRegistry;
use ferrocket_engine::client::producer::{
    DefaultMqProducer, Message, ProducerConfig, ProducerError, client_error_code,
};
use ferrocket_engine::store::message::property_key;
use ferrocket_tests::client::{Cluster, client_env, pull_header, runtime};
use ferrocket_tests::process::free_loopback_addr;
use tokio::sync::mpsc;

const TOPIC: &str = "AsyncTopic";
const TIMEOUT: Duration = Duration::from_secs(3);
/// Sends awaited through their futures, and sends reporting to a callback.
const FUTURE_COUNT: usize = 300;
const CALLBACK_COUNT: usize = 200;
/// How long every callback may take to have run.
const CALLBACKS_MAX: Duration = Duration::from_secs(30);

fn producer(namesrv: String, seed: u64, name: &str) -> DefaultMqProducer {
    let mut config = ProducerConfig::new(format!("async_{name}_pg"), namesrv);
    config
        .client
        .change_instance_name_to_pid(format!("{}#{name}", std::process::id()));
    DefaultMqProducer::new(
        &client_env(seed),
        Arc::new(ClientInstanceRegistry::new()),
        config,
    )
}

#[test]
fn many_async_sends_in_flight_each_complete_once_and_land_on_the_broker() {
    // 500 sends at once against a debug-build broker that shares the machine with other
    // tests: its fast-fail of requests queued over 200 ms (Java's default, tested with the
    // dispatcher) would refuse some on a loaded machine. This test is about the client's
    // bookkeeping of sends in flight, so the broker waits longer before refusing.
    let cluster = Cluster::start("waitTimeMillsInSendQueue=10000");
    runtime().block_on(many_in_flight(&cluster));
}

async fn many_in_flight(cluster: &Cluster) {
    let producer = producer(cluster.namesrv_addr().to_string(), 51, "many");
    producer.start().await.unwrap();

    // Body -> the UNIQ_KEY stamped on the message before the call returned.
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    let mut futures = Vec::new();
    let (reports, mut reported) = mpsc::unbounded_channel();
    for i in 0..FUTURE_COUNT + CALLBACK_COUNT {
        let body = format!("async-{i}");
        let mut message = Message::new(TOPIC, body.clone());
        if i < FUTURE_COUNT {
            futures.push((body.clone(), producer.send_async(&mut message).unwrap()));
        } else {
            let reports = reports.clone();
            let report_body = body.clone();
            producer
                .send_with_callback(&mut message, move |outcome| {
                    reports
                        .send((report_body, outcome))
                        .expect("the test still listens");
                })
                .unwrap();
        }
        let uniq_key = message.property(property_key::UNIQ_KEY).unwrap().to_owned();
        expected.insert(body, uniq_key);
    }
    drop(reports);

    let mut outcomes: BTreeMap<String, Vec<Result<_, ProducerError>>> = BTreeMap::new();
    for (body, sent) in futures {
        outcomes.entry(body).or_default().push(sent.await);
    }
    let collect_callbacks = async {
        while let Some((body, outcome)) = reported.recv().await {
            outcomes.entry(body).or_default().push(outcome);
        }
    };
    tokio::time::timeout(CALLBACKS_MAX, collect_callbacks)
        .await
        .unwrap_or_else(|_| panic!("callbacks still pending\n{}", cluster.logs()));

    assert_eq!(outcomes.len(), expected.len(), "every send reported");
    for (body, reports) in &outcomes {
        assert_eq!(reports.len(), 1, "{body} reported exactly once");
        let sent = reports[0]
            .as_ref()
            .unwrap_or_else(|e| panic!("{body}: {e}\n{}", cluster.logs()));
        assert_eq!(sent.status, SendStatus::SendOk);
        assert_eq!(sent.msg_id.as_deref(), Some(expected[body].as_str()));
    }

    // Every message is on the broker exactly once, under its UNIQ_KEY.
    let api = producer.instance().unwrap().api().clone();
    let broker_addr = cluster.broker_addr();
    let mut pulled: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for queue_id in 0..4 {
        let mut offset = 0;
        loop {
            let result = api
                .pull_message(&broker_addr, &pull_header(TOPIC, queue_id, offset), TIMEOUT)
                .await
                .unwrap();
            if result.status != PullStatus::Found {
                break;
            }
            for message in &result.messages {
                let body = String::from_utf8_lossy(message.body.as_deref().unwrap_or_default())
                    .into_owned();
                let uniq_key = message.uniq_key().unwrap_or_default().to_owned();
                pulled.entry(body).or_default().push(uniq_key);
            }
            offset = result.next_begin_offset;
        }
    }
    assert_eq!(pulled.len(), expected.len(), "every message stored");
    for (body, uniq_key) in &expected {
        assert_eq!(pulled.get(body), Some(&vec![uniq_key.clone()]), "{body}");
    }
    producer.shutdown().await;
}

#[test]
fn sends_beyond_the_in_flight_bound_are_refused_at_once() {
    runtime().block_on(async {
        // A name server that takes connections but never answers: every send waits out its
        // route lookup, so the first two are still in flight when the third comes.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let namesrv = silent.local_addr().unwrap().to_string();
        let mut config = ProducerConfig::new("async_bound_pg", namesrv);
        config.async_send_in_flight_max = 2;
        config.client.mq_client_api_timeout = Duration::from_millis(500);
        config
            .client
            .change_instance_name_to_pid(format!("{}#bound", std::process::id()));
        let producer = DefaultMqProducer::new(
            &client_env(52),
            Arc::new(ClientInstanceRegistry::new()),
            config,
        );
        producer.start().await.unwrap();
        let first = producer
            .send_async(&mut Message::new(TOPIC, "one"))
            .unwrap();
        let second = producer
            .send_async(&mut Message::new(TOPIC, "two"))
            .unwrap();
        let refused = producer.send_with_callback(&mut Message::new(TOPIC, "three"), |_| {
            panic!("a refused send never calls back")
        });
        assert!(
            matches!(
                refused,
                Err(ProducerError::AsyncSendRejected { in_flight_max: 2 })
            ),
            "{refused:?}"
        );
        assert!(first.await.is_err());
        assert!(second.await.is_err());
        let fourth = producer
            .send_async(&mut Message::new(TOPIC, "four"))
            .expect("completed sends free their places");
        assert!(fourth.await.is_err());
        producer.shutdown().await;
    });
}

#[test]
fn a_callback_gets_a_typed_error_without_a_route_and_with_the_broker_down() {
    let mut cluster = Cluster::start("");
    runtime().block_on(async {
        let (reports, mut reported) = mpsc::unbounded_channel();
        let report = |reports: &mpsc::UnboundedSender<_>| {
            let reports = reports.clone();
            move |outcome: Result<_, ProducerError>| {
                reports.send(outcome).expect("the test still listens");
            }
        };

        // No route: no name server answers.
        let lost = producer(free_loopback_addr().to_string(), 53, "no-route");
        lost.start().await.unwrap();
        lost.send_with_callback(&mut Message::new(TOPIC, "lost"), report(&reports))
            .unwrap();
        let error = reported.recv().await.unwrap().unwrap_err();
        assert!(
            matches!(error, ProducerError::NoRouteInfo { .. }),
            "{error:?}"
        );
        assert_eq!(
            error.response_code(),
            Some(client_error_code::NOT_FOUND_TOPIC_EXCEPTION)
        );
        lost.shutdown().await;

        // The broker is down after the route was learnt.
        let producer = producer(cluster.namesrv_addr().to_string(), 54, "broker-down");
        producer.start().await.unwrap();
        let sent = producer
            .send_async(&mut Message::new(TOPIC, "while up"))
            .unwrap()
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
        assert_eq!(sent.status, SendStatus::SendOk);
        cluster.broker.process.kill();
        producer
            .send_with_callback(&mut Message::new(TOPIC, "while down"), report(&reports))
            .unwrap();
        let error = reported.recv().await.unwrap().unwrap_err();
        let ProducerError::SendFailed {
            attempts,
            brokers_sent,
            ..
        } = &error
        else {
            panic!("expected SendFailed, got {error:?}");
        };
        assert_eq!(*attempts, 3, "1 + retry_times_when_send_async_failed");
        assert_eq!(brokers_sent.len(), 3);
        assert_eq!(
            error.response_code(),
            Some(client_error_code::CONNECT_BROKER_EXCEPTION)
        );
        assert!(reported.try_recv().is_err(), "each callback is called once");
        producer.shutdown().await;
    });
}
