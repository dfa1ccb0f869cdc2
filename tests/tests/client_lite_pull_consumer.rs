//! The lite pull consumer against the real binaries over TCP.
//!
//! Assign mode: the default producer sends 120 messages; a lite pull consumer assigned
//! every queue of the topic polls each exactly once, commits, and shuts down; a new
//! consumer of the group polls nothing old, until it seeks a queue back to its start and
//! reads that queue again in order. Seeks outside the queue's range, of an unassigned
//! queue, and subscribing after assigning are refused with Java's errors.
//!
//! Subscribe mode: two lite pull consumers of one group subscribe to a topic, split its
//! queues between them (the listener hears of it), and together poll every message sent
//! afterwards exactly once. Two broadcasting consumers each poll every message.
//!
//! Build the binaries first: `cargo build --bins`.
#![cfg(not(madsim))]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrocket_engine::client::instance::ClientInstanceRegistry;
use ferrocket_engine::client::lite_pull_consumer::{
    LitePullConsumer, LitePullConsumerConfig, LitePullConsumerError, MessageQueueListener,
};
use ferrocket_engine::client::producer::{DefaultMqProducer, Message};
use ferrocket_engine::protocol::heartbeat::{ConsumeFromWhere, MessageModel, MessageQueue};
use ferrocket_engine::store::message::StoredMessage;
use ferrocket_tests::client::{Cluster, client_env, runtime, test_producer};

/// How long one poll waits.
const POLL: Duration = Duration::from_millis(200);
/// How long the tests wait for what should come.
const EVENTUALLY_MAX: Duration = Duration::from_secs(30);

fn consumer_config(cluster: &Cluster, group: &str, instance: &str) -> LitePullConsumerConfig {
    let mut config = LitePullConsumerConfig::new(group, cluster.namesrv_addr().to_string());
    config
        .client
        .change_instance_name_to_pid(format!("{}#{instance}", std::process::id()));
    config
}

/// Sends `count` messages to `topic`; their `UNIQ_KEY`s.
async fn send(
    producer: &DefaultMqProducer,
    cluster: &Cluster,
    topic: &str,
    prefix: &str,
    count: usize,
) -> BTreeSet<String> {
    let mut sent = BTreeSet::new();
    for i in 0..count {
        let mut message = Message::new(topic, Bytes::from(format!("{prefix}-{i}")));
        producer
            .send(&mut message)
            .await
            .unwrap_or_else(|e| panic!("send {i}: {e}\n{}", cluster.logs()));
        sent.insert(
            message
                .properties
                .get("UNIQ_KEY")
                .cloned()
                .expect("send stamps UNIQ_KEY"),
        );
    }
    assert_eq!(sent.len(), count);
    sent
}

/// The queues of `topic` once the name server serves its route: the broker registers a
/// topic created by a send on its own schedule.
async fn wait_for_queues(
    consumer: &LitePullConsumer,
    cluster: &Cluster,
    topic: &str,
) -> BTreeSet<MessageQueue> {
    let started = Instant::now();
    loop {
        match consumer.fetch_message_queues(topic).await {
            Ok(queues) => return queues,
            Err(error) if started.elapsed() < EVENTUALLY_MAX => {
                eprintln!("route of {topic} not served yet: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("no route for {topic}: {error}\n{}", cluster.logs()),
        }
    }
}

fn key(message: &StoredMessage) -> String {
    message.uniq_key().unwrap_or_default().to_owned()
}

/// Polls until `want` messages came or [`EVENTUALLY_MAX`] passed; every message polled.
async fn poll_until(consumer: &LitePullConsumer, want: usize) -> Vec<StoredMessage> {
    let started = Instant::now();
    let mut polled = Vec::new();
    while polled.len() < want && started.elapsed() < EVENTUALLY_MAX {
        polled.extend(consumer.poll(POLL).await.expect("the consumer runs"));
    }
    polled
}

/// Polls for `window`; every message polled.
async fn poll_for(consumer: &LitePullConsumer, window: Duration) -> Vec<StoredMessage> {
    let started = Instant::now();
    let mut polled = Vec::new();
    while started.elapsed() < window {
        polled.extend(consumer.poll(POLL).await.expect("the consumer runs"));
    }
    polled
}

/// Asserts each queue's messages came in strictly increasing offsets.
fn assert_queue_order(messages: &[StoredMessage]) {
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for message in messages {
        if let Some(previous) = last.insert(message.queue_id, message.queue_offset) {
            assert!(
                message.queue_offset > previous,
                "queue {} went from {previous} to {}",
                message.queue_id,
                message.queue_offset
            );
        }
    }
}

#[test]
fn assigned_lite_consumer_polls_once_commits_and_seeks_back() {
    let cluster = Cluster::start("");
    runtime().block_on(async {
        const TOPIC: &str = "LiteAssignTopic";
        const GROUP: &str = "lite_assign_cg";
        const COUNT: usize = 120;
        let logs = || cluster.logs();
        let registry = Arc::new(ClientInstanceRegistry::new());
        let producer = test_producer(&registry, &cluster, "lite_assign", 51);
        producer.start().await.unwrap();
        let sent = send(&producer, &cluster, TOPIC, "a", COUNT).await;

        let mut config = consumer_config(&cluster, GROUP, "lite-assign-1");
        config.consume_from_where = ConsumeFromWhere::ConsumeFromFirstOffset;
        config.auto_commit = false;
        let first = LitePullConsumer::new(&client_env(53), registry.clone(), config.clone());
        first.start().await.unwrap();
        let queues = wait_for_queues(&first, &cluster, TOPIC).await;
        assert_eq!(queues.len(), 4, "the topic's queues: {queues:?}");
        first.assign(&queues).unwrap();
        assert!(matches!(
            first.subscribe(TOPIC, "*").await,
            Err(LitePullConsumerError::SubscriptionConflict)
        ));
        assert_eq!(first.assignment().unwrap(), queues);

        let polled = poll_until(&first, COUNT).await;
        let keys: Vec<String> = polled.iter().map(key).collect();
        let unique: BTreeSet<String> = keys.iter().cloned().collect();
        assert_eq!(unique, sent, "every message\n{}", logs());
        assert_eq!(keys.len(), COUNT, "each once");
        assert_queue_order(&polled);
        assert!(
            poll_for(&first, Duration::from_secs(1)).await.is_empty(),
            "nothing more"
        );
        first.commit_sync().await.unwrap();
        let mut max_offsets = BTreeMap::new();
        for queue in &queues {
            let max = polled
                .iter()
                .filter(|m| m.queue_id == queue.queue_id)
                .map(|m| m.queue_offset + 1)
                .max()
                .unwrap_or(0);
            assert_eq!(first.committed(queue).await.unwrap(), Some(max));
            max_offsets.insert(queue.clone(), max);
        }
        first.shutdown().await;

        // A new consumer of the group starts from the committed offsets: nothing old.
        config
            .client
            .change_instance_name_to_pid(format!("{}#lite-assign-2", std::process::id()));
        let second = LitePullConsumer::new(&client_env(55), registry.clone(), config);
        second.assign(&queues).unwrap();
        second.start().await.unwrap();
        let again = poll_for(&second, Duration::from_secs(3)).await;
        assert!(again.is_empty(), "{} old messages again", again.len());

        // Seeks are checked against the queue's range and the assignment.
        let queue: MessageQueue = queues.first().cloned().expect("four queues");
        let end = max_offsets[&queue];
        assert!(end > 0, "queue {queue:?} got messages");
        assert!(matches!(
            second.seek(&queue, end + 1).await,
            Err(LitePullConsumerError::SeekOffsetIllegal { min: 0, max, .. }) if max == end
        ));
        let unknown = MessageQueue {
            queue_id: 99,
            ..queue.clone()
        };
        assert!(matches!(
            second.seek(&unknown, 0).await,
            Err(LitePullConsumerError::NotAssigned {
                rebalancing: false,
                ..
            })
        ));

        // Seeking back re-reads the queue, in order.
        second.seek_to_begin(&queue).await.unwrap();
        let reread = poll_until(&second, end as usize).await;
        assert!(reread.iter().all(|m| m.queue_id == queue.queue_id));
        assert_eq!(
            reread.iter().map(|m| m.queue_offset).collect::<Vec<_>>(),
            (0..end).collect::<Vec<_>>()
        );
        let expected: BTreeSet<String> = polled
            .iter()
            .filter(|m| m.queue_id == queue.queue_id)
            .map(key)
            .collect();
        assert_eq!(reread.iter().map(key).collect::<BTreeSet<_>>(), expected);
        second.commit_sync().await.unwrap();
        assert_eq!(second.committed(&queue).await.unwrap(), Some(end));
        second.shutdown().await;
        producer.shutdown().await;
    });
}

#[test]
fn two_subscribed_lite_consumers_split_the_queues_and_get_every_message_once() {
    let cluster = Cluster::start("");
    runtime().block_on(async {
        const TOPIC: &str = "LiteSubscribeTopic";
        const GROUP: &str = "lite_subscribe_cg";
        const COUNT: usize = 200;
        let logs = || cluster.logs();
        let registry = Arc::new(ClientInstanceRegistry::new());
        let producer = test_producer(&registry, &cluster, "lite_subscribe", 51);
        producer.start().await.unwrap();
        // The first send creates the topic. The group has no offset yet and the queues'
        // first messages are still in memory, so the broker has the consumers start at 0
        // (as Java's does) and the first message counts too.
        let mut sent = send(&producer, &cluster, TOPIC, "warm-up", 1).await;

        let heard: Arc<Mutex<Vec<BTreeSet<MessageQueue>>>> = Arc::default();
        let record = heard.clone();
        let listener: MessageQueueListener = Arc::new(move |topic, all, divided| {
            assert_eq!(topic, TOPIC);
            assert!(divided.is_subset(all));
            record.lock().unwrap().push(divided.clone());
        });
        let mut consumers = Vec::new();
        for name in ["lite-subscribe-1", "lite-subscribe-2"] {
            let mut config = consumer_config(&cluster, GROUP, name);
            config.rebalance_interval = Duration::from_secs(1);
            let consumer = LitePullConsumer::new(&client_env(57), registry.clone(), config)
                .with_message_queue_listener(listener.clone());
            consumers.push(Arc::new(consumer));
        }
        // The first consumer starts unsubscribed and waits for the topic's route; the
        // second subscribes before it starts.
        consumers[0].start().await.unwrap();
        let all = wait_for_queues(&consumers[0], &cluster, TOPIC).await;
        assert_eq!(all.len(), 4, "an auto-created topic has 4 queues");
        for consumer in &consumers {
            consumer.subscribe(TOPIC, "*").await.unwrap();
            assert!(matches!(
                consumer.assign(&all),
                Err(LitePullConsumerError::SubscriptionConflict)
            ));
        }
        consumers[1].start().await.unwrap();

        // Wait until the two assignments are disjoint and cover the topic.
        let started = Instant::now();
        let split = loop {
            let a = consumers[0].assignment().unwrap();
            let b = consumers[1].assignment().unwrap();
            if !a.is_empty() && !b.is_empty() && a.is_disjoint(&b) && &a | &b == all {
                break (a, b);
            }
            assert!(
                started.elapsed() < EVENTUALLY_MAX,
                "no split after {:?}: {a:?} / {b:?}\n{}",
                started.elapsed(),
                logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        eprintln!(
            "split {} / {} queues after {:?}",
            split.0.len(),
            split.1.len(),
            started.elapsed()
        );
        assert!(
            heard.lock().unwrap().contains(&split.0),
            "the listener heard of the split"
        );

        sent.extend(send(&producer, &cluster, TOPIC, "s", COUNT).await);
        let total = sent.len();
        let received: Arc<Mutex<Vec<(usize, StoredMessage)>>> = Arc::default();
        let mut pollers = Vec::new();
        for (index, consumer) in consumers.iter().enumerate() {
            let consumer = consumer.clone();
            let received = received.clone();
            pollers.push(tokio::spawn(async move {
                let started = Instant::now();
                while started.elapsed() < EVENTUALLY_MAX && received.lock().unwrap().len() < COUNT {
                    let batch = consumer.poll(POLL).await.expect("the consumer runs");
                    received
                        .lock()
                        .unwrap()
                        .extend(batch.into_iter().map(|m| (index, m)));
                }
            }));
        }
        for poller in pollers {
            poller.await.unwrap();
        }
        // Give duplicates, if any, a moment to show up.
        for consumer in &consumers {
            let late = poll_for(consumer, Duration::from_millis(500)).await;
            received
                .lock()
                .unwrap()
                .extend(late.into_iter().map(|m| (9, m)));
        }
        let received = std::mem::take(&mut *received.lock().unwrap());
        let keys: Vec<String> = received.iter().map(|(_, m)| key(m)).collect();
        assert_eq!(
            keys.iter().cloned().collect::<BTreeSet<_>>(),
            sent,
            "every message\n{}",
            logs()
        );
        assert_eq!(keys.len(), total, "each exactly once");
        for (index, queues) in [(0, &split.0), (1, &split.1)] {
            let polled: Vec<StoredMessage> = received
                .iter()
                .filter(|(by, _)| *by == index)
                .map(|(_, m)| m.clone())
                .collect();
            assert!(!polled.is_empty(), "consumer {index} got a share");
            assert!(
                polled
                    .iter()
                    .all(|m| queues.iter().any(|q| q.queue_id == m.queue_id)),
                "consumer {index} only polled its own queues"
            );
            assert_queue_order(&polled);
        }
        for consumer in &consumers {
            consumer.shutdown().await;
        }
        producer.shutdown().await;
    });
}

#[test]
fn broadcasting_lite_consumers_each_get_every_message() {
    let cluster = Cluster::start("");
    runtime().block_on(async {
        const TOPIC: &str = "LiteBroadcastTopic";
        const GROUP: &str = "lite_broadcast_cg";
        const COUNT: usize = 60;
        let logs = || cluster.logs();
        let registry = Arc::new(ClientInstanceRegistry::new());
        let producer = test_producer(&registry, &cluster, "lite_broadcast", 51);
        producer.start().await.unwrap();
        let sent = send(&producer, &cluster, TOPIC, "b", COUNT).await;

        let mut consumers = Vec::new();
        for name in ["lite-broadcast-1", "lite-broadcast-2"] {
            let mut config = consumer_config(&cluster, GROUP, name);
            config.message_model = MessageModel::Broadcasting;
            config.consume_from_where = ConsumeFromWhere::ConsumeFromFirstOffset;
            let consumer = LitePullConsumer::new(&client_env(59), registry.clone(), config);
            consumer.start().await.unwrap();
            let all = wait_for_queues(&consumer, &cluster, TOPIC).await;
            consumer.subscribe(TOPIC, "*").await.unwrap();
            consumers.push((consumer, all));
        }
        for (index, (consumer, all)) in consumers.iter().enumerate() {
            let polled = poll_until(consumer, COUNT).await;
            let keys: Vec<String> = polled.iter().map(key).collect();
            assert_eq!(
                keys.iter().cloned().collect::<BTreeSet<_>>(),
                sent,
                "consumer {index} got every message\n{}",
                logs()
            );
            assert_eq!(keys.len(), COUNT, "consumer {index} got each once");
            assert_eq!(&consumer.assignment().unwrap(), all, "every queue");
        }
        for (consumer, _) in &consumers {
            consumer.shutdown().await;
        }
        producer.shutdown().await;
    });
}
