//! The pull consumer against the real binaries over TCP: the default producer sends 100
//! messages tagged TagA and TagB in turn to a new topic; a pull consumer fetches the topic's
//! queues and pulls everything with "TagA", getting exactly the 50 TagA messages once each;
//! the offsets it records are committed at shutdown and read back from the broker by a new
//! consumer of the same group; a blocking pull at the end of a queue returns as soon as a
//! message arrives, and with NO_NEW_MSG when none does. A broadcasting pull consumer keeps
//! its offsets in its local file: a new consumer on the same disk reads them back, the
//! broker holds none.
//!
//! Build the binaries first: `cargo build --bins`.
#![cfg(not(madsim))]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrocket_engine::Env;
use ferrocket_engine::client::api::PullStatus;
use ferrocket_engine::client::instance::ClientInstanceRegistry;
use ferrocket_engine::client::producer::{DefaultMqProducer, Message, ProducerConfig};
use ferrocket_engine::client::pull_consumer::{DefaultMqPullConsumer, PullConsumerConfig};
use ferrocket_engine::protocol::heartbeat::{MessageModel, MessageQueue};
use ferrocket_engine::remoting::headers::QueryConsumerOffsetRequestHeader;
use ferrocket_tests::client::{Cluster, client_env, raw_api, runtime, until_some};

const TOPIC: &str = "PullConsumerTopic";
const GROUP: &str = "pull_test_cg";
const MESSAGE_COUNT: usize = 100;
/// Pulls per queue before the test gives up on reaching its end.
const PULLS_PER_QUEUE_MAX: usize = 100;
/// How long a new topic's route or a oneway offset commit may take to become readable.
const EVENTUALLY_MAX: Duration = Duration::from_secs(5);

#[test]
fn pull_consumer_filters_tags_persists_offsets_and_long_polls() {
    let cluster = Cluster::start("");
    runtime().block_on(scenario(&cluster));
}

#[test]
fn a_broadcasting_pull_consumer_keeps_its_offsets_in_its_local_file() {
    const TOPIC: &str = "PullBroadcastTopic";
    const GROUP: &str = "pull_broadcast_cg";
    let cluster = Cluster::start("");
    runtime().block_on(async {
        let registry = Arc::new(ClientInstanceRegistry::new());
        let mut producer_config =
            ProducerConfig::new("pull_broadcast_pg", cluster.namesrv_addr().to_string());
        producer_config
            .client
            .change_instance_name_to_pid(format!("{}#pull-broadcast-producer", std::process::id()));
        let producer = DefaultMqProducer::new(&client_env(39), registry.clone(), producer_config);
        producer.start().await.unwrap();
        let mut message = Message::new(TOPIC, "one");
        let sent = producer.send(&mut message).await.unwrap();
        let queue = sent.queue.clone();
        producer.shutdown().await;

        // One instance name, so the same offsets file whenever the disk is the same.
        let broadcasting = |env: &Env| {
            let mut config = PullConsumerConfig::new(GROUP, cluster.namesrv_addr().to_string());
            config.message_model = MessageModel::Broadcasting;
            config
                .client
                .change_instance_name_to_pid(format!("{}#pull-broadcast", std::process::id()));
            DefaultMqPullConsumer::new(env, Arc::new(ClientInstanceRegistry::new()), config)
        };
        let env = client_env(40);
        let first = broadcasting(&env);
        first.start().await.unwrap();
        let result = first.pull(&queue, "*", 0, 32).await.unwrap();
        assert_eq!(result.status, PullStatus::Found, "{result:?}");
        first
            .update_consume_offset(&queue, result.next_begin_offset)
            .unwrap();
        first.shutdown().await;

        let again = broadcasting(&env);
        again.start().await.unwrap();
        assert_eq!(
            again.fetch_consume_offset(&queue, true).await.unwrap(),
            Some(result.next_begin_offset),
            "the offset is read back from the local file"
        );
        again.shutdown().await;
        let elsewhere = broadcasting(&client_env(41));
        elsewhere.start().await.unwrap();
        assert_eq!(
            elsewhere.fetch_consume_offset(&queue, true).await.unwrap(),
            None,
            "another disk holds no offsets file"
        );
        elsewhere.shutdown().await;

        let header = QueryConsumerOffsetRequestHeader {
            consumer_group: GROUP.into(),
            topic: TOPIC.into(),
            queue_id: queue.queue_id,
            broker_name: None,
        };
        let committed = raw_api(&cluster.namesrv_addr().to_string(), 42)
            .query_consumer_offset(&cluster.broker_addr(), &header, Duration::from_secs(3))
            .await
            .unwrap();
        assert!(
            matches!(committed, None | Some(0)),
            "the broker holds offset {committed:?} of a broadcasting group"
        );
    });
}

/// A consumer of [`GROUP`] on its own client instance, named `instance`.
fn consumer(
    registry: &Arc<ClientInstanceRegistry>,
    cluster: &Cluster,
    instance: &str,
    broker_suspend_max_time: Duration,
) -> DefaultMqPullConsumer {
    let mut config = PullConsumerConfig::new(GROUP, cluster.namesrv_addr().to_string());
    config.broker_suspend_max_time = broker_suspend_max_time;
    config
        .client
        .change_instance_name_to_pid(format!("{}#{instance}", std::process::id()));
    DefaultMqPullConsumer::new(&client_env(37), registry.clone(), config)
}

async fn scenario(cluster: &Cluster) {
    let logs = || cluster.logs();
    let registry = Arc::new(ClientInstanceRegistry::new());
    let mut producer_config =
        ProducerConfig::new("pull_test_pg", cluster.namesrv_addr().to_string());
    producer_config
        .client
        .change_instance_name_to_pid(format!("{}#pull-test-producer", std::process::id()));
    let producer = Arc::new(DefaultMqProducer::new(
        &client_env(37),
        registry.clone(),
        producer_config,
    ));
    producer.start().await.unwrap();

    let mut tag_a_bodies = BTreeSet::new();
    for i in 0..MESSAGE_COUNT {
        let tag = if i % 2 == 0 { "TagA" } else { "TagB" };
        let body = Bytes::from(format!("{tag}-{i}"));
        let mut message = Message::new(TOPIC, body.clone()).with_tags(tag);
        producer
            .send(&mut message)
            .await
            .unwrap_or_else(|e| panic!("send {i}: {e}\n{}", logs()));
        if tag == "TagA" {
            tag_a_bodies.insert(body);
        }
    }

    // Pull every queue to its end with "TagA".
    let first = consumer(
        &registry,
        cluster,
        "pull-consumer-1",
        Duration::from_secs(20),
    );
    first.start().await.unwrap();
    // The broker registers a topic it creates with the name server before it answers the
    // send that created it: the route is served now.
    let queues = first
        .fetch_subscribe_message_queues(TOPIC)
        .await
        .unwrap_or_else(|error| panic!("no route for {TOPIC}: {error}\n{}", logs()));
    assert_eq!(queues.len(), 4, "an auto-created topic has 4 queues");
    // The broker dispatches the commit log to the queues behind the acknowledgements (as in
    // Java): wait until every sent message is in a queue before reading them to the end.
    until_some(
        "every sent message is dispatched",
        EVENTUALLY_MAX,
        cluster,
        || async {
            let mut dispatched = 0;
            for queue in &queues {
                dispatched += first.max_offset(queue).await.ok()?;
            }
            (dispatched == MESSAGE_COUNT as i64).then_some(())
        },
    )
    .await;
    let mut pulled: BTreeMap<Bytes, usize> = BTreeMap::new();
    let mut end_offsets: BTreeMap<MessageQueue, i64> = BTreeMap::new();
    for queue in &queues {
        let mut offset = 0;
        for _ in 0..PULLS_PER_QUEUE_MAX {
            let result = first.pull(queue, "TagA", offset, 32).await.unwrap();
            match result.status {
                PullStatus::Found | PullStatus::NoMatchedMsg => {}
                PullStatus::NoNewMsg => break,
                PullStatus::OffsetIllegal => panic!("offset {offset} of {queue:?} illegal"),
            }
            for message in &result.messages {
                assert_eq!(message.tags(), Some("TagA"), "{message:?}");
                *pulled
                    .entry(message.body.clone().unwrap_or_default())
                    .or_default() += 1;
            }
            offset = result.next_begin_offset;
        }
        assert_eq!(
            offset,
            first.max_offset(queue).await.unwrap(),
            "{queue:?} read to its end"
        );
        end_offsets.insert(queue.clone(), offset);
    }
    assert_eq!(pulled.len(), MESSAGE_COUNT / 2);
    assert!(
        pulled.values().all(|count| *count == 1),
        "each once: {pulled:?}"
    );
    assert_eq!(
        pulled.keys().cloned().collect::<BTreeSet<_>>(),
        tag_a_bodies
    );

    // Offsets recorded, committed at shutdown, read back by a new consumer of the group.
    for (queue, offset) in &end_offsets {
        first.update_consume_offset(queue, *offset).unwrap();
        assert_eq!(
            first.fetch_consume_offset(queue, false).await.unwrap(),
            Some(*offset)
        );
    }
    first.shutdown().await;
    let second = consumer(
        &registry,
        cluster,
        "pull-consumer-2",
        Duration::from_secs(20),
    );
    second.start().await.unwrap();
    for (queue, offset) in &end_offsets {
        until_some(
            "the committed offset is read back",
            EVENTUALLY_MAX,
            cluster,
            || async {
                let stored = second.fetch_consume_offset(queue, true).await.ok()?;
                (stored == Some(*offset)).then_some(())
            },
        )
        .await;
    }

    // At the end of a queue a plain pull finds nothing; a blocking one returns as soon as a
    // message arrives, long before the broker's 20 s hold ends.
    let queue = queues.first().unwrap().clone();
    let end = end_offsets[&queue];
    let result = second.pull(&queue, "TagA", end, 32).await.unwrap();
    assert_eq!(result.status, PullStatus::NoNewMsg);
    let sender = {
        let (producer, queue) = (producer.clone(), queue.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut message = Message::new(TOPIC, "late").with_tags("TagA");
            producer.send_to_queue(&mut message, &queue).await.unwrap();
        })
    };
    let begin = Instant::now();
    let result = second
        .pull_block_if_not_found(&queue, "TagA", end, 32)
        .await
        .unwrap();
    let waited = begin.elapsed();
    sender.await.unwrap();
    assert_eq!(result.status, PullStatus::Found, "{result:?}");
    assert_eq!(result.messages.len(), 1);
    assert_eq!(result.messages[0].body.as_deref(), Some(&b"late"[..]));
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(10),
        "held until the send, not the suspend timeout: {waited:?}"
    );
    second.shutdown().await;

    // With nothing arriving, a blocking pull ends with NO_NEW_MSG after the broker's hold.
    let third = consumer(
        &registry,
        cluster,
        "pull-consumer-3",
        Duration::from_secs(2),
    );
    third.start().await.unwrap();
    let begin = Instant::now();
    let result = third
        .pull_block_if_not_found(&queue, "TagA", end + 1, 32)
        .await
        .unwrap();
    let waited = begin.elapsed();
    assert_eq!(result.status, PullStatus::NoNewMsg, "{result:?}");
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(15),
        "held for about the 2 s suspend time: {waited:?}"
    );
    third.shutdown().await;
    producer.shutdown().await;
}
