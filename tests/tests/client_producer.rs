//! The default producer against the real binaries over TCP: sync sends to a topic the name
//! server does not know yet (created through TBW102) spread over its queues, oneway and
//! batch sends, ordered sends that keep one key on one queue, a large body compressed on the
//! wire, and an oversized body refused before anything is sent. Every message is then pulled
//! back with [`MqClientApi::pull_message`] and must arrive exactly once, intact, under the
//! `UNIQ_KEY` its send reported.
//!
//! Build the binaries first: `cargo build --bins`.
#![cfg(not(madsim))]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrocket_engine::client::api::{PullStatus, SendStatus};
use ferrocket_engine::client::instance::ClientInstanceRegistry;
use ferrocket_engine::client::producer::{
    DefaultMqProducer, Message, MessageError, ProducerConfig, ProducerError,
};
use ferrocket_engine::remoting::response_code;
use ferrocket_engine::store::message::property_key;
use ferrocket_tests::client::{Cluster, client_env, pull_header, runtime};

const TOPIC: &str = "ProducerTopic";
const TIMEOUT: Duration = Duration::from_secs(3);
/// How long the oneway sends may take to become readable.
const EVENTUALLY_MAX: Duration = Duration::from_secs(15);
const SYNC_COUNT: usize = 200;
const ONEWAY_COUNT: usize = 10;
const BATCH_COUNT: usize = 10;
const ORDERED_COUNT: usize = 20;

/// A body over the 4 KiB compression threshold, not trivially repetitive.
fn large_body() -> Bytes {
    (0..10_000u32)
        .map(|i| (i.wrapping_mul(7919) % 251) as u8)
        .collect()
}

/// One pulled message: its queue, offset, body and `UNIQ_KEY`.
#[derive(Debug, Clone)]
struct Pulled {
    queue_id: i32,
    queue_offset: i64,
    /// The stored record's size: below the body's for a body compressed on the wire.
    store_size: usize,
    body: Bytes,
    uniq_key: String,
}

#[test]
fn producer_sends_sync_oneway_batch_ordered_and_compressed_messages_exactly_once() {
    let cluster = Cluster::start("");
    runtime().block_on(scenario(&cluster));
}

async fn scenario(cluster: &Cluster) {
    let logs = || cluster.logs();
    let env = client_env(31);
    let mut config = ProducerConfig::new("producer_test_pg", cluster.namesrv_addr().to_string());
    config
        .client
        .change_instance_name_to_pid(format!("{}#producer-test", std::process::id()));
    let registry = Arc::new(ClientInstanceRegistry::new());
    let producer = DefaultMqProducer::new(&env, registry.clone(), config);
    producer.start().await.unwrap();

    // Expected body -> UNIQ_KEY the send reported (oneway sends report none).
    let mut expected: BTreeMap<Bytes, Option<String>> = BTreeMap::new();

    let mut queues_used = BTreeSet::new();
    for i in 0..SYNC_COUNT {
        let mut message = Message::new(TOPIC, format!("sync-{i}")).with_tags("sync");
        let sent = producer
            .send(&mut message)
            .await
            .unwrap_or_else(|e| panic!("sync send {i}: {e}\n{}", logs()));
        assert_eq!(sent.status, SendStatus::SendOk);
        assert_eq!(
            sent.msg_id.as_deref(),
            message.property(property_key::UNIQ_KEY),
            "the result reports the UNIQ_KEY stamped on the message"
        );
        queues_used.insert(sent.queue.queue_id);
        expected.insert(message.body.clone(), sent.msg_id);
    }
    assert_eq!(
        queues_used.len(),
        4,
        "round-robin over the 4 queues of an auto-created topic"
    );

    for i in 0..ONEWAY_COUNT {
        let mut message = Message::new(TOPIC, format!("oneway-{i}"));
        producer.send_oneway(&mut message).await.unwrap();
        let uniq_key = message.property(property_key::UNIQ_KEY).map(str::to_owned);
        expected.insert(message.body.clone(), uniq_key);
    }

    let mut batch: Vec<Message> = (0..BATCH_COUNT)
        .map(|i| Message::new(TOPIC, format!("batch-{i}")))
        .collect();
    let sent = producer.send_batch(&mut batch).await.unwrap();
    assert_eq!(sent.status, SendStatus::SendOk);
    let batch_keys: Vec<String> = batch
        .iter()
        .map(|m| m.property(property_key::UNIQ_KEY).unwrap().to_owned())
        .collect();
    assert_eq!(sent.msg_id, Some(batch_keys.join(",")));
    for (message, key) in batch.iter().zip(batch_keys) {
        expected.insert(message.body.clone(), Some(key));
    }

    let mut ordered_queue = None;
    for i in 0..ORDERED_COUNT {
        let mut message = Message::new(TOPIC, format!("ordered-{i}"));
        let sent = producer
            .send_ordered_by_key(&mut message, "order-key-42")
            .await
            .unwrap();
        assert_eq!(
            *ordered_queue.get_or_insert(sent.queue.queue_id),
            sent.queue.queue_id,
            "one key, one queue"
        );
        expected.insert(message.body.clone(), sent.msg_id);
    }
    let ordered_queue = ordered_queue.unwrap();

    let mut large = Message::new(TOPIC, large_body());
    let sent = producer.send(&mut large).await.unwrap();
    expected.insert(large.body.clone(), sent.msg_id);

    let mut oversized = Message::new(TOPIC, vec![0u8; 4 * 1024 * 1024 + 1]);
    let error = producer.send(&mut oversized).await.unwrap_err();
    assert!(
        matches!(
            error,
            ProducerError::InvalidMessage(MessageError::BodyTooLarge { .. })
        ),
        "{error:?}"
    );
    assert_eq!(error.response_code(), Some(response_code::MESSAGE_ILLEGAL));

    // Pull every queue until everything expected has arrived (oneway sends may lag).
    let api = producer.instance().unwrap().api().clone();
    let broker_addr = cluster.broker_addr();
    let deadline = Instant::now() + EVENTUALLY_MAX;
    let pulled = loop {
        let mut pulled = Vec::new();
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
                    pulled.push(Pulled {
                        queue_id,
                        queue_offset: message.queue_offset,
                        store_size: message.store_size,
                        body: message.body.clone().unwrap_or_default(),
                        uniq_key: message
                            .property(property_key::UNIQ_KEY)
                            .unwrap_or_default()
                            .to_owned(),
                    });
                }
                offset = result.next_begin_offset;
            }
        }
        if pulled.len() >= expected.len() || Instant::now() > deadline {
            break pulled;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let mut seen: BTreeMap<Bytes, usize> = BTreeMap::new();
    for message in &pulled {
        *seen.entry(message.body.clone()).or_default() += 1;
        let reported = expected
            .get(&message.body)
            .unwrap_or_else(|| panic!("unexpected message {message:?}"));
        if let Some(key) = reported {
            assert_eq!(&message.uniq_key, key, "UNIQ_KEY of {message:?}");
        }
    }
    for body in expected.keys() {
        assert_eq!(
            seen.get(body).copied(),
            Some(1),
            "{:?} arrives exactly once",
            String::from_utf8_lossy(&body[..body.len().min(40)])
        );
    }
    assert_eq!(pulled.len(), expected.len());

    // The ordered messages sit on one queue in send order; the large one read back intact
    // (the pull inflates what was compressed on the wire).
    let ordered: Vec<&Pulled> = pulled
        .iter()
        .filter(|m| m.body.starts_with(b"ordered-"))
        .collect();
    assert!(ordered.iter().all(|m| m.queue_id == ordered_queue));
    assert!(
        ordered
            .windows(2)
            .all(|w| w[0].queue_offset < w[1].queue_offset)
    );
    let bodies: Vec<String> = ordered
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    let in_send_order: Vec<String> = (0..ORDERED_COUNT).map(|i| format!("ordered-{i}")).collect();
    assert_eq!(bodies, in_send_order);
    let large_pulled = pulled.iter().find(|m| m.body == large.body).unwrap();
    assert!(
        large_pulled.store_size < large.body.len(),
        "stored compressed: a {}-byte record for a {}-byte body",
        large_pulled.store_size,
        large.body.len()
    );

    producer.shutdown().await;
    assert!(
        registry
            .get(&format!("127.0.0.1@{}#producer-test", std::process::id()))
            .is_none(),
        "the last member's shutdown removes the instance"
    );
}
