//! The default producer under madsim against two broker groups sharing a topic: one
//! broker's process is killed while the producer sends, later restarted. The retry of a
//! failed send on the other broker keeps the producer available, and every message a send
//! acknowledged is afterwards found on the broker that acknowledged it.
#![cfg(madsim)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferrocket_engine::client::api::SendStatus;
use ferrocket_engine::client::instance::ClientInstanceRegistry;
use ferrocket_engine::client::producer::{DefaultMqProducer, Message, ProducerConfig};
use ferrocket_engine::rng::Rng;
use ferrocket_engine::store::config::FlushDiskType;
use ferrocket_sim::{CrashKind, SimDisk};
use ferrocket_tests::sim_broker::{
    NAMESRV, bodies, client, client_node, create_topic, pull_all_from, start_broker_named,
    start_namesrv,
};
use ferrocket_tests::store::sim_env;
use madsim::runtime::Handle;
use madsim::time::{Instant, sleep};

const TOPIC: &str = "ProducerSimTopic";
const BROKER_A: &str = "10.0.2.1:10911";
const BROKER_B: &str = "10.0.2.2:10911";
/// Sends before the kill, while broker-b is down, and after its restart.
const SENDS_PER_PHASE: usize = 200;
/// The pause between two sends.
const SEND_INTERVAL: Duration = Duration::from_millis(50);
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
}

async fn send_phase(producer: &DefaultMqProducer, phase: &str, outcome: &mut Outcome) {
    for i in 0..SENDS_PER_PHASE {
        let body = format!("{phase}-{i}");
        let mut message = Message::new(TOPIC, body.clone());
        let started = Instant::now();
        match producer.send(&mut message).await {
            Ok(sent) => {
                assert_eq!(sent.status, SendStatus::SendOk);
                outcome.acknowledged.insert(body, sent.queue.broker_name);
            }
            Err(error) => outcome.failed.push(format!("{body}: {error}")),
        }
        outcome.longest_send = outcome.longest_send.max(started.elapsed());
        sleep(SEND_INTERVAL).await;
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
            // The topic exists on both broker groups, as `mqadmin updateTopic -c` makes it: a
            // topic auto-created from TBW102 lives only on the brokers that took a send
            // before the producer's next route refresh.
            let admin = client();
            for addr in [BROKER_A, BROKER_B] {
                create_topic(&admin, addr, TOPIC, QUEUES_PER_BROKER).await;
            }
            let mut config = ProducerConfig::new("sim-pg", NAMESRV);
            config.client.client_ip = "10.0.3.1".into();

            let env = sim_env(&SimDisk::new(), 7);
            let producer =
                DefaultMqProducer::new(&env, Arc::new(ClientInstanceRegistry::new()), config);
            producer.start().await.expect("the producer starts");

            let mut outcome = Outcome::default();
            send_phase(&producer, "before", &mut outcome).await;
            assert!(
                outcome.acknowledged_by("broker-b") > 0,
                "both brokers take sends before the kill: {outcome:?}"
            );

            Handle::current().kill(broker_b);
            disk_b.crash(
                CrashKind::Process,
                &Rng::from_seed(Handle::current().seed()),
            );
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

            let reader = admin;
            let mut found: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for (broker_name, addr) in [("broker-a", BROKER_A), ("broker-b", BROKER_B)] {
                for queue_id in 0..QUEUES_PER_BROKER {
                    let messages = pull_all_from(&reader, addr, TOPIC, queue_id).await;
                    found
                        .entry(broker_name)
                        .or_default()
                        .extend(bodies(&messages));
                }
            }
            (outcome, found)
        })
        .await
        .unwrap();

    assert!(
        outcome.failed.is_empty(),
        "a send to the killed broker is retried on the other one: {:?}",
        outcome.failed
    );
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
    for (body, broker_name) in &outcome.acknowledged {
        assert!(
            found[broker_name.as_str()].contains(body),
            "{body}, acknowledged by {broker_name}, is on it"
        );
    }
}
