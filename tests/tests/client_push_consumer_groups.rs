//! Push-consumer groups against the real binaries over TCP: queues shared and handed over
//! as consumers join (two, then three clustering consumers, no message lost across the
//! rebalances), orderly consumption keeping per-queue order while a consumer leaves
//! (checked by an in-flight counter per queue and the offsets each consumer saw), and a
//! broadcasting group delivering every message to every consumer, with local offsets that
//! survive a consumer restart, committing nothing on the broker and dropping what fails.
//!
//! Build the binaries first: `cargo build --bins`.
#![cfg(not(madsim))]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use ferrocket_engine::Env;
use ferrocket_engine::client::instance::ClientInstanceRegistry;
use ferrocket_engine::client::producer::{DefaultMqProducer, Message};
use ferrocket_engine::client::push_consumer::{
    ConsumeOrderlyStatus, ConsumeStatus, DefaultMqPushConsumer, MessageListener, PushConsumerConfig,
};
use ferrocket_engine::protocol::heartbeat::{ConsumeFromWhere, MessageModel};
use ferrocket_engine::remoting::headers::QueryConsumerOffsetRequestHeader;
use ferrocket_engine::store::message::StoredMessage;
use ferrocket_engine::store::message_store::SCHEDULE_TOPIC;
use ferrocket_tests::client::{Cluster, client_env, eventually, raw_api, runtime, test_producer};

/// Queues of `SCHEDULE_TOPIC_XXXX`: one per delay level of the default `messageDelayLevel`.
const DELAY_LEVELS: i32 = 18;

/// The rebalance period of the test consumers (Java's 20 s, shortened so that a refused
/// lock or a missed notification costs the test seconds, not minutes).
const REBALANCE_INTERVAL: Duration = Duration::from_secs(2);

/// A consumer of `topic` in `group` on its own client instance `instance`.
fn consumer(
    env: &Env,
    cluster: &Cluster,
    group: &str,
    topic: &str,
    instance: &str,
    model: MessageModel,
    listener: MessageListener,
) -> DefaultMqPushConsumer {
    let mut config = PushConsumerConfig::new(group, cluster.namesrv_addr().to_string());
    config.consume_from_where = ConsumeFromWhere::ConsumeFromFirstOffset;
    config.rebalance_interval = REBALANCE_INTERVAL;
    config.message_model = model;
    config
        .subscriptions
        .insert(topic.to_owned(), "*".to_owned());
    config
        .client
        .change_instance_name_to_pid(format!("{}#{instance}", std::process::id()));
    let registry = Arc::new(ClientInstanceRegistry::new());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    DefaultMqPushConsumer::new(env, registry, config, listener)
}

/// Who received which message (by body), how many times.
/// Locks `mutex` even if a panic poisoned it: a failed assertion that held a lock must not
/// turn every later listener call into a panic that buries the failure's message.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Received {
    by_consumer: BTreeMap<String, BTreeMap<Bytes, usize>>,
}

impl Received {
    fn record(&mut self, consumer: &str, messages: &[StoredMessage]) {
        let seen = self.by_consumer.entry(consumer.to_owned()).or_default();
        for message in messages {
            *seen
                .entry(message.body.clone().unwrap_or_default())
                .or_default() += 1;
        }
    }

    fn distinct(&self) -> BTreeSet<Bytes> {
        self.by_consumer
            .values()
            .flat_map(|m| m.keys().cloned())
            .collect()
    }

    fn deliveries(&self) -> usize {
        self.by_consumer.values().flat_map(|m| m.values()).sum()
    }
}

fn recording_listener(received: &Arc<Mutex<Received>>, name: &str) -> MessageListener {
    let received = received.clone();
    let name = name.to_owned();
    MessageListener::concurrently(move |messages: &[StoredMessage], _| {
        lock(&received).record(&name, messages);
        ConsumeStatus::ConsumeSuccess
    })
}

async fn send_bodies(
    producer: &DefaultMqProducer,
    topic: &str,
    range: std::ops::Range<usize>,
    logs: &dyn Fn() -> String,
) {
    for i in range {
        let mut message = Message::new(topic, Bytes::from(format!("m-{i}")));
        producer
            .send(&mut message)
            .await
            .unwrap_or_else(|e| panic!("send {i}: {e}\n{}", logs()));
    }
}

#[test]
fn two_then_three_consumers_share_queues_and_lose_nothing_across_rebalance() {
    let cluster = Cluster::start("");
    runtime().block_on(async {
        const TOPIC: &str = "GroupShareTopic";
        const GROUP: &str = "group_share_cg";
        const PER_PHASE: usize = 150;
        let logs = || cluster.logs();
        let registry = Arc::new(ClientInstanceRegistry::new());
        let producer = test_producer(&registry, &cluster, "group_share", 51);
        producer.start().await.unwrap();
        send_bodies(&producer, TOPIC, 0..PER_PHASE, &logs).await;

        let received: Arc<Mutex<Received>> = Arc::default();
        let env = client_env(52);
        let names = ["share-1", "share-2", "share-3"];
        let consumers: Vec<DefaultMqPushConsumer> = names
            .iter()
            .map(|name| {
                consumer(
                    &env,
                    &cluster,
                    GROUP,
                    TOPIC,
                    name,
                    MessageModel::Clustering,
                    recording_listener(&received, name),
                )
            })
            .collect();

        // Two consumers, then more messages, then a third consumer, then more messages.
        consumers[0].start().await.unwrap();
        consumers[1].start().await.unwrap();
        send_bodies(&producer, TOPIC, PER_PHASE..2 * PER_PHASE, &logs).await;
        let two_shared = eventually(Duration::from_secs(40), || {
            let r = lock(&received);
            r.by_consumer.len() == 2 && r.distinct().len() >= 2 * PER_PHASE
        })
        .await;
        assert!(
            two_shared,
            "{}\ntwo consumers: {:?}",
            logs(),
            lock(&received).by_consumer.keys().collect::<Vec<_>>()
        );
        consumers[2].start().await.unwrap();
        // Messages sent while the third consumer joins and the queues move.
        send_bodies(&producer, TOPIC, 2 * PER_PHASE..3 * PER_PHASE, &logs).await;
        tokio::time::sleep(2 * REBALANCE_INTERVAL).await;
        send_bodies(&producer, TOPIC, 3 * PER_PHASE..4 * PER_PHASE, &logs).await;

        let expected: BTreeSet<Bytes> = (0..4 * PER_PHASE)
            .map(|i| Bytes::from(format!("m-{i}")))
            .collect();
        let all = eventually(Duration::from_secs(30), || {
            lock(&received).distinct() == expected
        })
        .await;
        for consumer in &consumers {
            consumer.shutdown().await;
        }
        producer.shutdown().await;
        let r = lock(&received);
        let missing: Vec<_> = expected.difference(&r.distinct()).cloned().collect();
        assert!(
            all,
            "{}\nlost {} messages, e.g. {:?}",
            logs(),
            missing.len(),
            missing.first()
        );
        let per_consumer: BTreeMap<&String, usize> = r
            .by_consumer
            .iter()
            .map(|(name, seen)| (name, seen.len()))
            .collect();
        eprintln!(
            "{} messages, {} deliveries, per consumer {per_consumer:?}",
            expected.len(),
            r.deliveries()
        );
        // The third consumer took over queues: it received part of the last phase.
        assert!(
            r.by_consumer
                .get("share-3")
                .is_some_and(|seen| !seen.is_empty()),
            "the third consumer got no queue: {per_consumer:?}"
        );
        assert!(
            (0..2).all(|i| r
                .by_consumer
                .get(names[i])
                .is_some_and(|seen| !seen.is_empty())),
            "{per_consumer:?}"
        );
    });
}

/// One orderly delivery: which consumer, which queue, which offset, which body.
#[derive(Debug, Clone)]
struct OrderlyDelivery {
    consumer: String,
    queue_id: i32,
    offset: i64,
    body: Bytes,
}

#[test]
fn orderly_consumers_keep_per_queue_order_while_one_leaves() {
    let cluster = Cluster::start("");
    runtime().block_on(async {
        const TOPIC: &str = "OrderlyHandOverTopic";
        const GROUP: &str = "orderly_handover_cg";
        const KEYS: usize = 8;
        const PER_KEY: usize = 40;
        let logs = || cluster.logs();
        let registry = Arc::new(ClientInstanceRegistry::new());
        let producer = test_producer(&registry, &cluster, "orderly_handover", 51);
        producer.start().await.unwrap();
        // Creates the topic (4 queues) before the consumers look for it.
        send_ordered(&producer, TOPIC, KEYS, 0..1, &logs).await;

        let log: Arc<Mutex<Vec<OrderlyDelivery>>> = Arc::default();
        let in_flight: Arc<Vec<AtomicUsize>> =
            Arc::new((0..16).map(|_| AtomicUsize::new(0)).collect());
        let overlaps = Arc::new(AtomicUsize::new(0));
        let env = client_env(53);
        let make = |name: &'static str| {
            let log = log.clone();
            let in_flight = in_flight.clone();
            let overlaps = overlaps.clone();
            let listener = MessageListener::orderly(move |messages: &[StoredMessage], context| {
                let slot = &in_flight[context.message_queue.queue_id as usize];
                if slot.fetch_add(1, Ordering::SeqCst) != 0 {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                // Long enough that a second consumer on the same queue would overlap.
                std::thread::sleep(Duration::from_millis(2));
                lock(&log).extend(messages.iter().map(|m| OrderlyDelivery {
                    consumer: name.to_owned(),
                    queue_id: m.queue_id,
                    offset: m.queue_offset,
                    body: m.body.clone().unwrap_or_default(),
                }));
                slot.fetch_sub(1, Ordering::SeqCst);
                ConsumeOrderlyStatus::Success
            });
            consumer(
                &env,
                &cluster,
                GROUP,
                TOPIC,
                name,
                MessageModel::Clustering,
                listener,
            )
        };
        let first = make("orderly-1");
        let second = make("orderly-2");
        first.start().await.unwrap();
        second.start().await.unwrap();
        // The first consumer may hold every queue at first: a queue it gives up while it
        // still caches messages stays locked for the unlock delay (20 s), so the second
        // consumer's share can take that long to reach it.
        let both_consumed = || {
            let log = lock(&log);
            ["orderly-1", "orderly-2"]
                .iter()
                .all(|c| log.iter().any(|d| d.consumer == *c))
        };
        for seq in 1..PER_KEY / 2 {
            send_ordered(&producer, TOPIC, KEYS, seq..seq + 1, &logs).await;
            if !both_consumed() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        let half = eventually(Duration::from_secs(60), || {
            both_consumed() && lock(&log).len() >= KEYS * PER_KEY / 2
        })
        .await;
        assert!(
            half,
            "{}\nboth consumers consumed: {} deliveries",
            logs(),
            lock(&log).len()
        );
        // One consumer leaves while messages keep coming.
        first.shutdown().await;
        send_ordered(&producer, TOPIC, KEYS, PER_KEY / 2..PER_KEY, &logs).await;
        let total = KEYS * PER_KEY;
        let all = eventually(Duration::from_secs(40), || {
            let log = lock(&log);
            log.iter()
                .map(|d| d.body.clone())
                .collect::<BTreeSet<_>>()
                .len()
                >= total
        })
        .await;
        second.shutdown().await;
        producer.shutdown().await;
        let log = lock(&log);
        assert!(
            all,
            "{}\n{} distinct of {total}",
            logs(),
            log.iter()
                .map(|d| d.body.clone())
                .collect::<BTreeSet<_>>()
                .len()
        );
        assert_eq!(
            overlaps.load(Ordering::SeqCst),
            0,
            "two batches of one queue ran at once"
        );

        // Per queue, in delivery order: a consumer's run is consecutive offsets, and a new
        // run (another consumer, or a redelivery) starts no later than where the previous
        // one ended, so nothing is skipped.
        let mut by_queue: BTreeMap<i32, Vec<&OrderlyDelivery>> = BTreeMap::new();
        for delivery in log.iter() {
            by_queue
                .entry(delivery.queue_id)
                .or_default()
                .push(delivery);
        }
        let mut handovers = 0;
        for (queue_id, deliveries) in &by_queue {
            for pair in deliveries.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                if a.consumer == b.consumer {
                    assert_eq!(b.offset, a.offset + 1, "queue {queue_id}: {a:?} then {b:?}");
                } else {
                    handovers += 1;
                    assert!(
                        b.offset <= a.offset + 1,
                        "queue {queue_id} skipped: {a:?} then {b:?}"
                    );
                }
            }
        }
        // Per key, the first deliveries come in send order.
        let mut next_seq: BTreeMap<String, usize> = BTreeMap::new();
        for delivery in log.iter() {
            let body = String::from_utf8_lossy(&delivery.body).into_owned();
            let (key, seq) = body.rsplit_once('-').expect("key-seq bodies");
            let seq: usize = seq.parse().expect("a sequence number");
            let expected = next_seq.entry(key.to_owned()).or_default();
            assert!(seq <= *expected, "key {key}: {seq} before {expected}");
            if seq == *expected {
                *expected += 1;
            }
        }
        eprintln!(
            "{} deliveries of {total} messages, {handovers} hand-overs",
            log.len()
        );
        assert!(handovers > 0, "no queue changed consumer");
    });
}

/// Sends `seqs` of each of `keys` keys, ordered by key: body `k<key>-<seq>`.
async fn send_ordered(
    producer: &DefaultMqProducer,
    topic: &str,
    keys: usize,
    seqs: std::ops::Range<usize>,
    logs: &dyn Fn() -> String,
) {
    for seq in seqs {
        for key in 0..keys {
            let key = format!("k{key}");
            let mut message = Message::new(topic, Bytes::from(format!("{key}-{seq}")));
            producer
                .send_ordered_by_key(&mut message, &key)
                .await
                .unwrap_or_else(|e| panic!("send {key}-{seq}: {e}\n{}", logs()));
        }
    }
}

#[test]
fn broadcasting_delivers_every_message_to_every_consumer_and_keeps_local_offsets() {
    let cluster = Cluster::start("");
    runtime().block_on(async {
        const TOPIC: &str = "BroadcastTopic";
        const GROUP: &str = "broadcast_cg";
        const COUNT: usize = 100;
        let logs = || cluster.logs();
        let registry = Arc::new(ClientInstanceRegistry::new());
        let producer = test_producer(&registry, &cluster, "broadcast", 51);
        producer.start().await.unwrap();
        send_bodies(&producer, TOPIC, 0..COUNT, &logs).await;

        let received: Arc<Mutex<Received>> = Arc::default();
        // Each consumer has its own environment and so its own disk for its offsets file.
        let envs = [client_env(54), client_env(55)];
        let names = ["broadcast-1", "broadcast-2"];
        let consumers: Vec<DefaultMqPushConsumer> = (0..2)
            .map(|i| {
                consumer(
                    &envs[i],
                    &cluster,
                    GROUP,
                    TOPIC,
                    names[i],
                    MessageModel::Broadcasting,
                    recording_listener(&received, names[i]),
                )
            })
            .collect();
        for consumer in &consumers {
            consumer.start().await.unwrap();
        }
        let expected: BTreeSet<Bytes> = (0..COUNT).map(|i| Bytes::from(format!("m-{i}"))).collect();
        let everyone = eventually(Duration::from_secs(30), || {
            let r = lock(&received);
            names.iter().all(|name| {
                r.by_consumer
                    .get(*name)
                    .is_some_and(|seen| seen.keys().cloned().collect::<BTreeSet<_>>() == expected)
            })
        })
        .await;
        let per_consumer: Vec<(String, usize)> = lock(&received)
            .by_consumer
            .iter()
            .map(|(name, seen)| (name.clone(), seen.len()))
            .collect();
        assert!(everyone, "{}\nper consumer: {per_consumer:?}", logs());
        for consumer in &consumers {
            consumer.shutdown().await;
        }

        // The first consumer comes back on the same disk: its offsets file says everything
        // was consumed, so it receives only what is sent now. It fails the first new message,
        // which a broadcasting consumer drops: it is neither redelivered nor sent back.
        let failing = Bytes::from(format!("m-{COUNT}"));
        let again: Arc<Mutex<Received>> = Arc::default();
        let recorded = again.clone();
        let failed = failing.clone();
        let back = consumer(
            &envs[0],
            &cluster,
            GROUP,
            TOPIC,
            names[0],
            MessageModel::Broadcasting,
            MessageListener::concurrently(move |messages: &[StoredMessage], _| {
                lock(&recorded).record(names[0], messages);
                if messages.iter().any(|m| m.body.as_ref() == Some(&failed)) {
                    ConsumeStatus::ReconsumeLater
                } else {
                    ConsumeStatus::ConsumeSuccess
                }
            }),
        );
        back.start().await.unwrap();
        send_bodies(&producer, TOPIC, COUNT..COUNT + 10, &logs).await;
        let fresh: BTreeSet<Bytes> = (COUNT..COUNT + 10)
            .map(|i| Bytes::from(format!("m-{i}")))
            .collect();
        let got_new =
            eventually(Duration::from_secs(20), || lock(&again).distinct() == fresh).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        back.shutdown().await;
        producer.shutdown().await;
        let (distinct, deliveries) = {
            let again = lock(&again);
            (again.distinct(), again.deliveries())
        };
        assert!(got_new, "{}\nafter restart received {distinct:?}", logs());
        assert_eq!(distinct, fresh, "old messages came again");
        assert_eq!(deliveries, fresh.len(), "a message came twice");

        // Broadcasting offsets live in each consumer's file: the pulls committed none on the
        // broker. And the failed message was not sent back: a message sent back waits in the
        // delay-level queues of SCHEDULE_TOPIC_XXXX, which stayed empty.
        let api = raw_api(&cluster.namesrv_addr().to_string(), 56);
        let broker = cluster.broker_addr();
        for queue_id in 0..4 {
            let header = QueryConsumerOffsetRequestHeader {
                consumer_group: GROUP.into(),
                topic: TOPIC.into(),
                queue_id,
                broker_name: None,
            };
            let committed = api
                .query_consumer_offset(&broker, &header, Duration::from_secs(3))
                .await
                .unwrap();
            assert!(
                matches!(committed, None | Some(0)),
                "queue {queue_id}: broadcasting pulls committed offset {committed:?}"
            );
        }
        let mut sent_back = 0;
        for queue_id in 0..DELAY_LEVELS {
            sent_back += api
                .max_offset(&broker, SCHEDULE_TOPIC, queue_id, Duration::from_secs(3))
                .await
                .unwrap();
        }
        assert_eq!(sent_back, 0, "a broadcasting consumer sent a message back");
    });
}
