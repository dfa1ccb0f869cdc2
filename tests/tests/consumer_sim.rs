//! The producer and a push consumer under madsim against two broker groups sharing a topic,
//! while the cluster misbehaves: broker-b's process is killed and restarted, the consumer's
//! link to broker-a is cut for a while, then the producer's. Midway the consumer shuts down
//! and a new consumer of the group takes over.
//!
//! Checked at the end: every acknowledged message was delivered (liveness once the faults
//! heal), nothing was delivered that was never sent, and the second consumer resumed from
//! the committed offsets — it redelivers nothing the first one consumed more than one
//! offset-persist interval before it shut down.
#![cfg(madsim)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrocket_engine::client::instance::ClientInstanceRegistry;
use ferrocket_engine::client::producer::{DefaultMqProducer, Message, ProducerConfig};
use ferrocket_engine::client::push_consumer::{
    ConsumeStatus, DefaultMqPushConsumer, MessageListener, PushConsumerConfig,
};
use ferrocket_engine::protocol::heartbeat::ConsumeFromWhere;
use ferrocket_engine::rng::Rng;
use ferrocket_engine::store::config::FlushDiskType;
use ferrocket_engine::store::message::StoredMessage;
use ferrocket_sim::{CrashKind, SimDisk};
use ferrocket_tests::sim_broker::{
    NAMESRV, client, client_node_named, create_topic, start_broker_named, start_namesrv,
};
use ferrocket_tests::store::sim_env;
use madsim::net::NetSim;
use madsim::runtime::Handle;
use madsim::time::{Instant, sleep};

const TOPIC: &str = "ConsumerSimTopic";
const GROUP: &str = "consumer-sim-cg";
const BROKER_A: &str = "10.0.2.1:10911";
const BROKER_B: &str = "10.0.2.2:10911";
const QUEUES_PER_BROKER: i32 = 4;
/// Messages the producer sends, one every [`SEND_INTERVAL`]: at least 50 s of sending, so
/// sends go on well past [`HANDOVER_AT`] and the second consumer always has new messages to
/// consume, however quickly the first caught up with the backlog.
const SENDS: usize = 1000;
const SEND_INTERVAL: Duration = Duration::from_millis(50);
/// When the first consumer shuts down and the second starts, from the test's start.
const HANDOVER_AT: Duration = Duration::from_secs(40);
/// How long after the last send every acknowledged message must have been delivered.
const CATCH_UP_BOUND: Duration = Duration::from_secs(90);
/// The consumer's offset-persist interval (the client default).
const PERSIST_INTERVAL: Duration = Duration::from_secs(5);

/// What happened, shared by the producer, the consumers and the checks.
#[derive(Debug, Default)]
struct Record {
    attempted: BTreeSet<String>,
    acknowledged: BTreeSet<String>,
    /// (consumer incarnation, time since start, body) of every delivery.
    deliveries: Vec<(usize, Duration, String)>,
}

impl Record {
    fn delivered(&self) -> BTreeSet<&str> {
        self.deliveries
            .iter()
            .map(|(_, _, body)| body.as_str())
            .collect()
    }
}

fn consumer(
    incarnation: usize,
    record: &Arc<Mutex<Record>>,
    start: Instant,
) -> DefaultMqPushConsumer {
    let mut config = PushConsumerConfig::new(GROUP, NAMESRV);
    config.consume_from_where = ConsumeFromWhere::ConsumeFromFirstOffset;
    config
        .subscriptions
        .insert(TOPIC.to_owned(), "*".to_owned());
    config.client.client_ip = "10.0.3.2".into();
    config.client.instance_name = format!("consumer-{incarnation}");
    let record = record.clone();
    let listener = MessageListener::concurrently(move |messages: &[StoredMessage], _| {
        let at = start.elapsed();
        let mut record = record.lock().unwrap();
        for message in messages {
            let body =
                String::from_utf8_lossy(message.body.as_deref().unwrap_or_default()).into_owned();
            record.deliveries.push((incarnation, at, body));
        }
        ConsumeStatus::ConsumeSuccess
    });
    let env = sim_env(&SimDisk::new(), 20 + incarnation as u64);
    DefaultMqPushConsumer::new(
        &env,
        Arc::new(ClientInstanceRegistry::new()),
        config,
        listener,
    )
}

#[madsim::test]
async fn consumers_lose_nothing_through_broker_restart_and_partitions_and_resume_from_committed_offsets()
 {
    let handle = Handle::current();
    let start = Instant::now();
    start_namesrv(&handle);
    let (broker_a, _) =
        start_broker_named(&handle, "broker-a", "10.0.2.1", FlushDiskType::AsyncFlush);
    let (broker_b, disk_b) =
        start_broker_named(&handle, "broker-b", "10.0.2.2", FlushDiskType::AsyncFlush);
    let producer_node = client_node_named(&handle, "producer-0", "10.0.3.1");
    let consumer_node = client_node_named(&handle, "consumer-0", "10.0.3.2");
    let record: Arc<Mutex<Record>> = Arc::default();

    let produced = producer_node.spawn({
        let record = record.clone();
        async move {
            let admin = client();
            for addr in [BROKER_A, BROKER_B] {
                create_topic(&admin, addr, TOPIC, QUEUES_PER_BROKER).await;
            }
            let mut config = ProducerConfig::new("consumer-sim-pg", NAMESRV);
            config.client.client_ip = "10.0.3.1".into();
            let env = sim_env(&SimDisk::new(), 7);
            let producer =
                DefaultMqProducer::new(&env, Arc::new(ClientInstanceRegistry::new()), config);
            producer.start().await.expect("the producer starts");
            for i in 0..SENDS {
                let body = format!("m-{i}");
                record.lock().unwrap().attempted.insert(body.clone());
                let mut message = Message::new(TOPIC, body.clone());
                if producer.send(&mut message).await.is_ok() {
                    record.lock().unwrap().acknowledged.insert(body);
                }
                sleep(SEND_INTERVAL).await;
            }
            producer.shutdown().await;
        }
    });

    let consumed = consumer_node.spawn({
        let record = record.clone();
        async move {
            sleep(Duration::from_secs(1)).await;
            let first = consumer(1, &record, start);
            first.start().await.expect("the first consumer starts");
            sleep(HANDOVER_AT.saturating_sub(start.elapsed())).await;
            first.shutdown().await;
            let first_stopped = start.elapsed();
            let second = consumer(2, &record, start);
            second.start().await.expect("the second consumer starts");
            // Runs until the test's end.
            std::future::pending::<()>().await;
            drop((second, first_stopped));
        }
    });

    // The faults, on a fixed timeline over the producer's 30 s of sends.
    let net = NetSim::current();
    let consumer_id = consumer_node.id();
    let producer_id = producer_node.id();
    sleep(Duration::from_secs(8)).await;
    handle.kill(broker_b);
    disk_b.crash(CrashKind::Process, &Rng::from_seed(handle.seed()));
    sleep(Duration::from_secs(6)).await;
    handle.restart(broker_b);
    sleep(Duration::from_secs(4)).await;
    net.clog_link(consumer_id, broker_a);
    net.clog_link(broker_a, consumer_id);
    sleep(Duration::from_secs(8)).await;
    net.unclog_link(consumer_id, broker_a);
    net.unclog_link(broker_a, consumer_id);
    net.clog_link(producer_id, broker_a);
    net.clog_link(broker_a, producer_id);
    sleep(Duration::from_secs(3)).await;
    net.unclog_link(producer_id, broker_a);
    net.unclog_link(broker_a, producer_id);
    produced.await.expect("the producer finishes");
    let sends_done = start.elapsed();

    // Liveness: the second consumer catches up with everything acknowledged.
    let deadline = sends_done + CATCH_UP_BOUND;
    loop {
        let caught_up = {
            let record = record.lock().unwrap();
            let delivered = record.delivered();
            record
                .acknowledged
                .iter()
                .all(|body| delivered.contains(body.as_str()))
        };
        if caught_up || start.elapsed() > deadline {
            break;
        }
        sleep(Duration::from_secs(1)).await;
    }
    drop(consumed);

    let record = record.lock().unwrap();
    let delivered = record.delivered();
    let lost: Vec<&String> = record
        .acknowledged
        .iter()
        .filter(|body| !delivered.contains(body.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages never delivered within {CATCH_UP_BOUND:?} of the last send, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    let unknown: Vec<&&str> = delivered
        .iter()
        .filter(|body| !record.attempted.contains(**body))
        .collect();
    assert!(unknown.is_empty(), "delivered but never sent: {unknown:?}");
    assert!(
        record.acknowledged.len() > SENDS / 2,
        "the producer kept working: {} of {SENDS} acknowledged",
        record.acknowledged.len()
    );

    // Resumption: what the first consumer consumed before its last offset persist is not
    // delivered again by the second.
    let first_by_body: BTreeMap<&str, Duration> = record
        .deliveries
        .iter()
        .filter(|(incarnation, _, _)| *incarnation == 1)
        .map(|(_, at, body)| (body.as_str(), *at))
        .collect();
    let committed_before = HANDOVER_AT.saturating_sub(PERSIST_INTERVAL + Duration::from_secs(1));
    let redelivered_old: Vec<&str> = record
        .deliveries
        .iter()
        .filter(|(incarnation, _, _)| *incarnation == 2)
        .filter(|(_, _, body)| {
            first_by_body
                .get(body.as_str())
                .is_some_and(|at| *at < committed_before)
        })
        .map(|(_, _, body)| body.as_str())
        .collect();
    assert!(
        redelivered_old.is_empty(),
        "the second consumer started before the committed offsets: {} old messages again, e.g. {:?}",
        redelivered_old.len(),
        redelivered_old.first()
    );
    let second = record.deliveries.iter().filter(|(i, _, _)| *i == 2).count();
    assert!(second > 0, "the second consumer consumed");
    eprintln!(
        "acknowledged {} of {SENDS}; deliveries {} (first consumer {}, second {second}); all delivered by {:?}",
        record.acknowledged.len(),
        record.deliveries.len(),
        first_by_body.len(),
        start.elapsed()
    );
}
