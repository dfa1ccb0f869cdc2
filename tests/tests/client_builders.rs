//! The ready-to-use client of the `ferrocket` crate, tried as a new user would: a producer
//! and a push consumer built with the builders and the defaults (outbound client IP,
//! per-process instance names, the process-wide client registry) round-trip messages
//! through the real binaries, with tags filtered on the way.
//!
//! Build the binaries first: `cargo build --bins`.
#![cfg(not(madsim))]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrocket::client::{
    ConsumeFromWhere, ConsumeStatus, Message, ProducerBuilder, PushConsumerBuilder, SendStatus,
};
use ferrocket_tests::client::{Cluster, runtime};

#[test]
fn builders_round_trip_messages_with_tag_filtering() {
    let cluster = Cluster::start("");
    runtime().block_on(async {
        const TOPIC: &str = "BuilderTopic";
        let namesrv = cluster.namesrv_addr().to_string();
        let producer = ProducerBuilder::new("builder_pg")
            .namesrv_addr(&namesrv)
            .start()
            .await
            .expect("the producer starts");
        let mut wanted = BTreeSet::new();
        for i in 0..30 {
            let tag = ["TagA", "TagB", "TagC"][i % 3];
            let body = format!("{tag}-{i}");
            let mut message = Message::new(TOPIC, body.clone())
                .with_tags(tag)
                .with_keys(format!("k{i}"));
            let sent = producer
                .send(&mut message)
                .await
                .unwrap_or_else(|e| panic!("send {i}: {e}\n{}", cluster.logs()));
            assert_eq!(sent.status, SendStatus::SendOk);
            if tag != "TagC" {
                wanted.insert(body);
            }
        }
        let received: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let seen = received.clone();
        let consumer = PushConsumerBuilder::new("builder_cg")
            .namesrv_addr(&namesrv)
            .subscribe(TOPIC, "TagA || TagB")
            .consume_from(ConsumeFromWhere::ConsumeFromFirstOffset)
            .consume_concurrently(move |messages, _| {
                let mut seen = seen.lock().unwrap();
                for message in messages {
                    seen.insert(
                        String::from_utf8_lossy(message.body.as_deref().unwrap_or_default())
                            .into_owned(),
                    );
                }
                ConsumeStatus::ConsumeSuccess
            })
            .start()
            .await
            .expect("the consumer starts");
        let start = Instant::now();
        while *received.lock().unwrap() != wanted && start.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        consumer.shutdown().await;
        producer.shutdown().await;
        assert_eq!(*received.lock().unwrap(), wanted, "{}", cluster.logs());
    });
}
