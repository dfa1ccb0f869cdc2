//! The push consumer against the real binaries over TCP: the default producer sends 200
//! messages and a push consumer receives each exactly once (by `UNIQ_KEY`); its offsets are
//! committed at shutdown, so a new consumer of the group receives nothing old. A second
//! scenario has the listener ask to reconsume five messages later on their first delivery:
//! they come back through the group's retry topic (delay level 3, 10 s) with reconsume
//! count 1 and their original topic restored.
//!
//! Build the binaries first: `cargo build --bins`.
#![cfg(not(madsim))]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrocket_engine::client::instance::ClientInstanceRegistry;
use ferrocket_engine::client::producer::Message;
use ferrocket_engine::client::push_consumer::{
    ConsumeStatus, DefaultMqPushConsumer, MessageListener, PushConsumerConfig,
};
use ferrocket_engine::protocol::heartbeat::ConsumeFromWhere;
use ferrocket_engine::store::message::StoredMessage;
use ferrocket_tests::client::{Cluster, client_env, eventually, runtime, test_producer};

fn consumer(
    registry: &Arc<ClientInstanceRegistry>,
    cluster: &Cluster,
    group: &str,
    topic: &str,
    instance: &str,
    listener: MessageListener,
) -> DefaultMqPushConsumer {
    let mut config = PushConsumerConfig::new(group, cluster.namesrv_addr().to_string());
    config.consume_from_where = ConsumeFromWhere::ConsumeFromFirstOffset;
    // The retry topic appears with the first send-back; the next rebalance picks it up.
    // Java's 20 s period would make the test's bounds depend on the machine's load.
    config.rebalance_interval = Duration::from_secs(5);
    config
        .subscriptions
        .insert(topic.to_owned(), "*".to_owned());
    config
        .client
        .change_instance_name_to_pid(format!("{}#{instance}", std::process::id()));
    DefaultMqPushConsumer::new(&client_env(43), registry.clone(), config, listener)
}

#[test]
fn push_consumer_receives_every_message_once_and_commits_offsets() {
    let cluster = Cluster::start("");
    runtime().block_on(async {
        const TOPIC: &str = "PushConsumerTopic";
        const GROUP: &str = "push_test_cg";
        const COUNT: usize = 200;
        let logs = || cluster.logs();
        let registry = Arc::new(ClientInstanceRegistry::new());
        let producer = test_producer(&registry, &cluster, "push_once", 41);
        producer.start().await.unwrap();
        let mut sent = BTreeSet::new();
        for i in 0..COUNT {
            let mut message = Message::new(TOPIC, Bytes::from(format!("m-{i}")));
            producer
                .send(&mut message)
                .await
                .unwrap_or_else(|e| panic!("send {i}: {e}\n{}", logs()));
            let key = message
                .properties
                .get("UNIQ_KEY")
                .cloned()
                .expect("send stamps UNIQ_KEY");
            sent.insert(key);
        }
        assert_eq!(sent.len(), COUNT);

        let received: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
        let seen = received.clone();
        let listener = MessageListener::concurrently(move |messages: &[StoredMessage], _| {
            let mut seen = seen.lock().unwrap();
            for message in messages {
                *seen
                    .entry(message.uniq_key().unwrap_or_default().to_owned())
                    .or_default() += 1;
            }
            ConsumeStatus::ConsumeSuccess
        });
        let started = Instant::now();
        let first = consumer(&registry, &cluster, GROUP, TOPIC, "push-once-1", listener);
        first.start().await.unwrap();
        let all = eventually(Duration::from_secs(30), || {
            received.lock().unwrap().len() >= COUNT
        })
        .await;
        assert!(
            all,
            "received {} of {COUNT}\n{}",
            received.lock().unwrap().len(),
            logs()
        );
        eprintln!("received all {COUNT} in {:?}", started.elapsed());
        // Give duplicates, if any, a moment to show up.
        tokio::time::sleep(Duration::from_secs(1)).await;
        {
            let received = received.lock().unwrap();
            assert_eq!(received.keys().cloned().collect::<BTreeSet<_>>(), sent);
            assert!(
                received.values().all(|count| *count == 1),
                "exactly once: {received:?}"
            );
        }
        first.shutdown().await;

        // The offsets were committed: a new consumer (from the first offset when none is
        // committed) receives nothing old.
        let again: Arc<Mutex<usize>> = Arc::default();
        let count = again.clone();
        let listener = MessageListener::concurrently(move |messages: &[StoredMessage], _| {
            *count.lock().unwrap() += messages.len();
            ConsumeStatus::ConsumeSuccess
        });
        let second = consumer(&registry, &cluster, GROUP, TOPIC, "push-once-2", listener);
        second.start().await.unwrap();
        let got_some = eventually(Duration::from_secs(5), || *again.lock().unwrap() > 0).await;
        second.shutdown().await;
        producer.shutdown().await;
        assert!(
            !got_some,
            "received {} old messages again",
            *again.lock().unwrap()
        );
    });
}

#[test]
fn push_consumer_reconsumes_later_through_the_retry_topic() {
    let cluster = Cluster::start("");
    runtime().block_on(async {
        const TOPIC: &str = "PushRetryTopic";
        const GROUP: &str = "push_retry_cg";
        const COUNT: usize = 20;
        let logs = || cluster.logs();
        let registry = Arc::new(ClientInstanceRegistry::new());
        let producer = test_producer(&registry, &cluster, "push_retry", 41);
        producer.start().await.unwrap();
        for i in 0..COUNT {
            let mut message = Message::new(TOPIC, Bytes::from(format!("r-{i}")));
            producer
                .send(&mut message)
                .await
                .unwrap_or_else(|e| panic!("send {i}: {e}\n{}", logs()));
        }
        let later: BTreeSet<Bytes> = (0..5)
            .map(|i| Bytes::from(format!("r-{}", i * 3)))
            .collect();

        // body -> (topic, reconsume times) of each delivery.
        type Deliveries = BTreeMap<Bytes, Vec<(String, i32)>>;
        let deliveries: Arc<Mutex<Deliveries>> = Arc::default();
        let seen = deliveries.clone();
        let refuse = later.clone();
        let listener = MessageListener::concurrently(move |messages: &[StoredMessage], _| {
            let mut seen = seen.lock().unwrap();
            let mut status = ConsumeStatus::ConsumeSuccess;
            for message in messages {
                let body = message.body.clone().unwrap_or_default();
                if refuse.contains(&body) && message.reconsume_times == 0 {
                    status = ConsumeStatus::ReconsumeLater;
                }
                seen.entry(body)
                    .or_default()
                    .push((message.topic.clone(), message.reconsume_times));
            }
            status
        });
        let started = Instant::now();
        let push = consumer(&registry, &cluster, GROUP, TOPIC, "push-retry-1", listener);
        push.start().await.unwrap();
        let done = eventually(Duration::from_secs(40), || {
            let seen = deliveries.lock().unwrap();
            seen.len() == COUNT
                && later
                    .iter()
                    .all(|body| seen.get(body).is_some_and(|d| d.len() >= 2))
        })
        .await;
        let elapsed = started.elapsed();
        push.shutdown().await;
        producer.shutdown().await;
        let seen = deliveries.lock().unwrap();
        assert!(done, "deliveries after {elapsed:?}: {seen:?}\n{}", logs());
        eprintln!("all retries back after {elapsed:?}");
        for (body, delivered) in seen.iter() {
            if later.contains(body) {
                assert_eq!(
                    delivered,
                    &vec![(TOPIC.to_owned(), 0), (TOPIC.to_owned(), 1)],
                    "{body:?}"
                );
            } else {
                assert_eq!(delivered, &vec![(TOPIC.to_owned(), 0)], "{body:?}");
            }
        }
        // Delay level 3 is 10 s.
        assert!(
            elapsed >= Duration::from_secs(9),
            "came back after {elapsed:?}"
        );
    });
}
