//! The default producer under madsim against two broker groups sharing a topic: one
//! broker's process is killed while the producer sends — sync sends one after another, or
//! async sends many at a time — and, for the sync sends, later restarted. The retry of a
//! failed send on the other broker keeps the producer available, and every message a send
//! acknowledged is afterwards found on the broker that acknowledged it.
#![cfg(madsim)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferrocket_engine::client::api::{SendResult, SendStatus};
use ferrocket_engine::client::instance::ClientInstanceRegistry;
use ferrocket_engine::client::producer::{
    DefaultMqProducer, Message, ProducerConfig, ProducerError,
};
use ferrocket_engine::remoting::transport::RemotingClient;
use ferrocket_engine::rng::Rng;
use ferrocket_engine::store::config::FlushDiskType;
use ferrocket_sim::{CrashKind, SimDisk};
use ferrocket_tests::sim_broker::{
    NAMESRV, bodies, client, client_node, create_topic, pull_all_from, start_broker_named,
    start_namesrv,
};
use ferrocket_tests::store::sim_env;
use madsim::runtime::Handle;
use madsim::task::NodeId;
use madsim::time::{Instant, sleep};

const TOPIC: &str = "ProducerSimTopic";
const BROKER_A: &str = "10.0.2.1:10911";
const BROKER_B: &str = "10.0.2.2:10911";
/// Sends before the kill, while broker-b is down, and after its restart.
const SENDS_PER_PHASE: usize = 200;
/// The pause between two sends.
const SEND_INTERVAL: Duration = Duration::from_millis(50);
/// The pause between two async sends: many are in flight at once.
const ASYNC_SEND_INTERVAL: Duration = Duration::from_millis(5);
/// The topic's queues on each broker.
const QUEUES_PER_BROKER: i32 = 4;

/// What the producer saw: each acknowledged body with the broker that stored it, the sends
/// that failed, and the longest send.
#[derive(Debug, Default)]
struct Outcome {
    acknowledged: BTreeMap<String, String>,
    failed: Vec<String>,
    longest_send: Duration,
}

impl Outcome {
    fn acknowledged_by(&self, broker_name: &str) -> usize {
        self.acknowledged
            .values()
            .filter(|name| *name == broker_name)
            .count()
    }

    fn record(&mut self, body: String, outcome: Result<SendResult, ProducerError>) {
        match outcome {
            Ok(sent) => {
                assert_eq!(sent.status, SendStatus::SendOk);
                self.acknowledged.insert(body, sent.queue.broker_name);
            }
            Err(error) => self.failed.push(format!("{body}: {error}")),
        }
    }

    /// Asserts that nothing failed and every acknowledged message is on the broker that
    /// acknowledged it (`found`: broker name → stored bodies).
    fn check(&self, found: &BTreeMap<&str, Vec<String>>) {
        assert!(
            self.failed.is_empty(),
            "a send to the killed broker is retried on the other one: {:?}",
            self.failed
        );
        for (body, broker_name) in &self.acknowledged {
            assert!(
                found[broker_name.as_str()].contains(body),
                "{body}, acknowledged by {broker_name}, is on it"
            );
        }
    }
}

/// Creates the topic on both broker groups, as `mqadmin updateTopic -c` makes it (a topic
/// auto-created from TBW102 lives only on the brokers that took a send before the
/// producer's next route refresh), and starts a producer on the client node.
async fn start_producer(admin: &RemotingClient) -> DefaultMqProducer {
    for addr in [BROKER_A, BROKER_B] {
        create_topic(admin, addr, TOPIC, QUEUES_PER_BROKER).await;
    }
    let mut config = ProducerConfig::new("sim-pg", NAMESRV);
    config.client.client_ip = "10.0.3.1".into();
    let env = sim_env(&SimDisk::new(), 7);
    let producer = DefaultMqProducer::new(&env, Arc::new(ClientInstanceRegistry::new()), config);
    producer.start().await.expect("the producer starts");
    producer
}

/// Kills broker-b's process (its disk keeps what was written).
fn kill_broker_b(broker_b: NodeId, disk_b: &SimDisk) {
    Handle::current().kill(broker_b);
    disk_b.crash(
        CrashKind::Process,
        &Rng::from_seed(Handle::current().seed()),
    );
}

/// Every body stored on each broker group, by broker name.
async fn stored_bodies(reader: &RemotingClient) -> BTreeMap<&'static str, Vec<String>> {
    let mut found: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (broker_name, addr) in [("broker-a", BROKER_A), ("broker-b", BROKER_B)] {
        for queue_id in 0..QUEUES_PER_BROKER {
            let messages = pull_all_from(reader, addr, TOPIC, queue_id).await;
            found
                .entry(broker_name)
                .or_default()
                .extend(bodies(&messages));
        }
    }
    found
}

async fn send_phase(producer: &DefaultMqProducer, phase: &str, outcome: &mut Outcome) {
    for i in 0..SENDS_PER_PHASE {
        let body = format!("{phase}-{i}");
        let mut message = Message::new(TOPIC, body.clone());
        let started = Instant::now();
        let sent = producer.send(&mut message).await;
        outcome.record(body, sent);
        outcome.longest_send = outcome.longest_send.max(started.elapsed());
        sleep(SEND_INTERVAL).await;
    }
}

/// Starts [`SENDS_PER_PHASE`] async sends [`ASYNC_SEND_INTERVAL`] apart, then waits for
/// them all. A send that waited out its timeout on the killed broker would have no budget
/// left to retry, so it would be recorded as failed.
async fn async_send_phase(producer: &DefaultMqProducer, phase: &str, outcome: &mut Outcome) {
    let mut pending = Vec::with_capacity(SENDS_PER_PHASE);
    for i in 0..SENDS_PER_PHASE {
        let body = format!("{phase}-{i}");
        let mut message = Message::new(TOPIC, body.clone());
        let sent = producer
            .send_async(&mut message)
            .expect("far below the bound on sends in flight");
        pending.push((body, sent));
        sleep(ASYNC_SEND_INTERVAL).await;
    }
    for (body, sent) in pending {
        outcome.record(body, sent.await);
    }
}

#[madsim::test]
async fn a_killed_broker_costs_no_send_and_no_acknowledged_message() {
    let handle = Handle::current();
    start_namesrv(&handle);
    start_broker_named(&handle, "broker-a", "10.0.2.1", FlushDiskType::AsyncFlush);
    let (broker_b, disk_b) =
        start_broker_named(&handle, "broker-b", "10.0.2.2", FlushDiskType::AsyncFlush);
    let client_node = client_node(&handle);
    let (outcome, found) = client_node
        .spawn(async move {
            let admin = client();
            let producer = start_producer(&admin).await;
            let mut outcome = Outcome::default();
            send_phase(&producer, "before", &mut outcome).await;
            assert!(
                outcome.acknowledged_by("broker-b") > 0,
                "both brokers take sends before the kill: {outcome:?}"
            );

            kill_broker_b(broker_b, &disk_b);
            let acknowledged_by_b = outcome.acknowledged_by("broker-b");
            send_phase(&producer, "down", &mut outcome).await;
            assert_eq!(
                outcome.acknowledged_by("broker-b"),
                acknowledged_by_b,
                "a killed broker acknowledges nothing"
            );

            Handle::current().restart(broker_b);
            sleep(Duration::from_secs(2)).await;
            send_phase(&producer, "after", &mut outcome).await;
            producer.shutdown().await;

            let found = stored_bodies(&admin).await;
            (outcome, found)
        })
        .await
        .unwrap();

    outcome.check(&found);
    assert!(
        outcome.longest_send < Duration::from_secs(3),
        "no send waits out its timeout: {:?}",
        outcome.longest_send
    );
    let after_restart_on_b = outcome
        .acknowledged
        .iter()
        .filter(|(body, name)| body.starts_with("after-") && *name == "broker-b")
        .count();
    assert!(
        after_restart_on_b > 0,
        "the restarted broker takes sends again"
    );
}

#[madsim::test]
async fn async_sends_to_a_killed_broker_are_retried_on_the_other_one() {
    let handle = Handle::current();
    start_namesrv(&handle);
    start_broker_named(&handle, "broker-a", "10.0.2.1", FlushDiskType::AsyncFlush);
    let (broker_b, disk_b) =
        start_broker_named(&handle, "broker-b", "10.0.2.2", FlushDiskType::AsyncFlush);
    let client_node = client_node(&handle);
    let (outcome, found) = client_node
        .spawn(async move {
            let admin = client();
            let producer = start_producer(&admin).await;
            let mut outcome = Outcome::default();
            async_send_phase(&producer, "before", &mut outcome).await;
            assert!(
                outcome.acknowledged_by("broker-a") > 0 && outcome.acknowledged_by("broker-b") > 0,
                "async sends spread over both brokers: {outcome:?}"
            );

            kill_broker_b(broker_b, &disk_b);
            let acknowledged_by_b = outcome.acknowledged_by("broker-b");
            async_send_phase(&producer, "down", &mut outcome).await;
            assert_eq!(
                outcome.acknowledged_by("broker-b"),
                acknowledged_by_b,
                "a killed broker acknowledges nothing"
            );
            producer.shutdown().await;
            // Broker-b's acknowledged messages are read back once it is up again.
            Handle::current().restart(broker_b);
            sleep(Duration::from_secs(2)).await;
            let found = stored_bodies(&admin).await;
            (outcome, found)
        })
        .await
        .unwrap();

    outcome.check(&found);
    assert_eq!(outcome.acknowledged.len(), 2 * SENDS_PER_PHASE);
}
