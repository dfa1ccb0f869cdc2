//! The lite pull consumer under madsim: it keeps polling a subscribed topic while the
//! producer sends, the broker's process is killed (sends fail, pulls fail and are retried)
//! and restarted. Afterwards the consumer has every message a send acknowledged. It commits
//! and shuts down; a new consumer of the group resumes at the committed offsets: it polls
//! every message sent after the commit and nothing from before.
#![cfg(madsim)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrocket_engine::client::instance::ClientInstanceRegistry;
use ferrocket_engine::client::lite_pull_consumer::{LitePullConsumer, LitePullConsumerConfig};
use ferrocket_engine::client::producer::{DefaultMqProducer, Message, ProducerConfig};
use ferrocket_engine::protocol::heartbeat::ConsumeFromWhere;
use ferrocket_engine::rng::Rng;
use ferrocket_engine::store::config::FlushDiskType;
use ferrocket_engine::store::message::StoredMessage;
use ferrocket_sim::{CrashKind, SimDisk};
use ferrocket_tests::sim_broker::{
    BROKER, NAMESRV, bodies, client, client_node, create_topic, start_broker, start_namesrv,
};
use ferrocket_tests::store::sim_env;
use madsim::runtime::Handle;
use madsim::time::{Instant, sleep};

const TOPIC: &str = "LitePullSimTopic";
const GROUP: &str = "lite-sim-cg";
/// Sends per phase.
const SENDS_PER_PHASE: usize = 100;
/// The pause between two sends.
const SEND_INTERVAL: Duration = Duration::from_millis(20);
/// How long one poll waits.
const POLL: Duration = Duration::from_millis(500);
/// How long the consumers get to catch up.
const CATCH_UP_MAX: Duration = Duration::from_secs(120);

/// Sends a phase; the bodies acknowledged and the number of failed sends.
async fn send_phase(producer: &DefaultMqProducer, phase: &str) -> (BTreeSet<String>, usize) {
    let mut acknowledged = BTreeSet::new();
    let mut failed = 0;
    for i in 0..SENDS_PER_PHASE {
        let body = format!("{phase}-{i}");
        let mut message = Message::new(TOPIC, body.clone());
        match producer.send(&mut message).await {
            Ok(_) => {
                acknowledged.insert(body);
            }
            Err(_) => failed += 1,
        }
        sleep(SEND_INTERVAL).await;
    }
    (acknowledged, failed)
}

fn consumer(name: &str, seed: u64) -> LitePullConsumer {
    let mut config = LitePullConsumerConfig::new(GROUP, NAMESRV);
    config.client.client_ip = "10.0.3.1".into();
    config.client.instance_name = name.into();
    config.consume_from_where = ConsumeFromWhere::ConsumeFromFirstOffset;
    LitePullConsumer::new(
        &sim_env(&SimDisk::new(), seed),
        Arc::new(ClientInstanceRegistry::new()),
        config,
    )
}

/// Starts `consumer` and subscribes it to [`TOPIC`] once the name server serves its route.
async fn start_subscribed(consumer: &LitePullConsumer) {
    consumer.start().await.expect("the consumer starts");
    for _ in 0..100 {
        if consumer.fetch_message_queues(TOPIC).await.is_ok() {
            consumer
                .subscribe(TOPIC, "*")
                .await
                .expect("the consumer subscribes");
            return;
        }
        sleep(Duration::from_millis(200)).await;
    }
    panic!("the name server never served the route of {TOPIC}");
}

/// Polls into `received` until `stop` is set.
async fn poll_until_stopped(
    consumer: Arc<LitePullConsumer>,
    received: Arc<Mutex<Vec<StoredMessage>>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Acquire) {
        let batch = consumer.poll(POLL).await.expect("the consumer runs");
        received.lock().unwrap().extend(batch);
    }
}

/// Polls until every body of `want` came or [`CATCH_UP_MAX`] passed; the bodies polled.
async fn poll_until_all(consumer: &LitePullConsumer, want: &BTreeSet<String>) -> Vec<String> {
    let started = Instant::now();
    let mut polled = Vec::new();
    while started.elapsed() < CATCH_UP_MAX {
        let got: BTreeSet<&String> = polled.iter().collect();
        if want.iter().all(|body| got.contains(body)) {
            break;
        }
        let batch = consumer.poll(POLL).await.expect("the consumer runs");
        polled.extend(bodies(&batch));
    }
    polled
}

#[madsim::test]
async fn a_lite_consumer_polls_through_a_broker_restart_and_resumes_from_its_commit() {
    let handle = Handle::current();
    start_namesrv(&handle);
    let (broker, disk) = start_broker(&handle, FlushDiskType::AsyncFlush);
    let client_node = client_node(&handle);
    client_node
        .spawn(async move {
            create_topic(&client(), BROKER, TOPIC, 4).await;
            let mut config = ProducerConfig::new("lite-sim-pg", NAMESRV);
            config.client.client_ip = "10.0.3.1".into();
            config.client.instance_name = "lite-sim-producer".into();
            let producer = DefaultMqProducer::new(
                &sim_env(&SimDisk::new(), 7),
                Arc::new(ClientInstanceRegistry::new()),
                config,
            );
            producer.start().await.expect("the producer starts");

            let first = Arc::new(consumer("lite-sim-consumer-1", 11));
            start_subscribed(&first).await;
            let received: Arc<Mutex<Vec<StoredMessage>>> = Arc::default();
            let stop = Arc::new(AtomicBool::new(false));
            let poller = tokio::spawn(poll_until_stopped(
                first.clone(),
                received.clone(),
                stop.clone(),
            ));

            let mut acknowledged = BTreeMap::new();
            let (before, failed_before) = send_phase(&producer, "before").await;
            assert_eq!(failed_before, 0, "sends succeed before the kill");
            acknowledged.insert("before", before);

            // Give the last sends' messages a moment to be polled.
            sleep(Duration::from_secs(1)).await;
            let polled_before_kill = received.lock().unwrap().len();
            assert!(polled_before_kill > 0, "the consumer polls before the kill");
            Handle::current().kill(broker);
            disk.crash(
                CrashKind::Process,
                &Rng::from_seed(Handle::current().seed()),
            );
            let (down, failed_down) = send_phase(&producer, "down").await;
            assert!(failed_down > 0, "a killed broker takes no send");
            acknowledged.insert("down", down);
            sleep(Duration::from_secs(5)).await;

            Handle::current().restart(broker);
            sleep(Duration::from_secs(2)).await;
            let (after, _) = send_phase(&producer, "after").await;
            assert!(!after.is_empty(), "the restarted broker takes sends again");
            acknowledged.insert("after", after);

            let all: BTreeSet<String> = acknowledged.values().flatten().cloned().collect();
            let started = Instant::now();
            while started.elapsed() < CATCH_UP_MAX {
                let got: BTreeSet<String> = bodies(&received.lock().unwrap()).into_iter().collect();
                if all.is_subset(&got) {
                    break;
                }
                sleep(Duration::from_millis(200)).await;
            }
            stop.store(true, Ordering::Release);
            poller.await.expect("the poller ends");
            let polled = bodies(&received.lock().unwrap());
            let got: BTreeSet<&String> = polled.iter().collect();
            let missing: Vec<&String> = all.iter().filter(|body| !got.contains(body)).collect();
            assert!(
                missing.is_empty(),
                "{} acknowledged messages never polled: {missing:?}",
                missing.len()
            );
            eprintln!(
                "acknowledged {} (failed while down: {failed_down}), polled {} ({polled_before_kill} before the kill)",
                all.len(),
                polled.len()
            );
            assert!(polled.len() > polled_before_kill, "the consumer polls after the restart");
            first.commit_sync().await.expect("the commit is sent");
            first.shutdown().await;

            // After the commit: what is sent next is all a new consumer of the group gets.
            let (later, failed_later) = send_phase(&producer, "later").await;
            assert_eq!(failed_later, 0);
            let second = consumer("lite-sim-consumer-2", 13);
            start_subscribed(&second).await;
            let resumed = poll_until_all(&second, &later).await;
            // A moment more, so that anything old would show up.
            let tail = second.poll(Duration::from_secs(2)).await.expect("running");
            second.shutdown().await;
            producer.shutdown().await;
            let resumed: Vec<String> = resumed.into_iter().chain(bodies(&tail)).collect();
            assert_eq!(
                resumed.iter().cloned().collect::<BTreeSet<_>>(),
                later,
                "the new consumer resumes at the committed offsets"
            );
            assert_eq!(resumed.len(), later.len(), "each once");
        })
        .await
        .unwrap();
}
