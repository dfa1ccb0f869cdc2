//! Message-store fixtures: small-segment configurations, a SimDisk environment, messages
//! and a reader that drains a queue through `get_message`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use ferrocket_engine::Env;
use ferrocket_engine::clock::SharedClock;
use ferrocket_engine::rng::Rng;
use ferrocket_engine::store::config::{FlushDiskType, MessageStoreConfig};
use ferrocket_engine::store::message::{MessageInner, decode_record, encode_properties};
use ferrocket_engine::store::message_store::{GetMessageStatus, MessageStore};
use ferrocket_net::{SystemClock, TokioNet};
use ferrocket_sim::SimDisk;

/// A store configuration with tiny segments, so every test rolls commit-log, consume-queue
/// and index files.
pub fn small_store_config() -> MessageStoreConfig {
    MessageStoreConfig {
        mapped_file_size_commit_log: 32 * 1024,
        mapped_file_size_consume_queue: 20 * 16,
        max_message_size: 8 * 1024,
        flush_disk_type: FlushDiskType::AsyncFlush,
        max_hash_slot_num: 64,
        max_index_num: 256,
        ..MessageStoreConfig::default()
    }
}

/// An environment over `disk` with the system clock.
pub fn sim_env(disk: &Arc<SimDisk>, seed: u64) -> Env {
    sim_env_with_clock(disk, seed, SystemClock::shared())
}

/// An environment over `disk` with `clock`.
pub fn sim_env_with_clock(disk: &Arc<SimDisk>, seed: u64, clock: SharedClock) -> Env {
    Env {
        clock,
        net: TokioNet::shared(),
        disk: disk.shared(),
        rng: Rng::shared(seed),
    }
}

/// A message for `topic`/`queue_id` with `body`, tag `TagA` and key `key`.
pub fn message(topic: &str, queue_id: i32, body: Bytes, key: &str) -> MessageInner {
    let properties: BTreeMap<String, String> = [
        ("KEYS".to_string(), key.to_string()),
        ("TAGS".to_string(), "TagA".to_string()),
    ]
    .into_iter()
    .collect();
    MessageInner {
        topic: topic.into(),
        queue_id,
        flag: 0,
        body,
        properties: encode_properties(&properties),
        tags_code: 0,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: "127.0.0.2:5555".parse().expect("literal address"),
        store_host: "127.0.0.1:10911".parse().expect("literal address"),
        store_timestamp: 0,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    }
}

/// Every message body of a queue from its min offset, in queue order, read through
/// `get_message`; checks each record's topic, queue, CRC and dense queue offset.
pub fn read_queue(store: &MessageStore, topic: &str, queue_id: i32) -> Vec<Bytes> {
    let mut bodies = Vec::new();
    let start = store.min_offset_in_queue(topic, queue_id);
    let mut offset = start;
    loop {
        let result = store.get_message(topic, queue_id, offset, 32, None);
        match result.status {
            GetMessageStatus::Found => {
                for record in &result.messages {
                    let stored =
                        decode_record(record, true, true).expect("records read back are valid");
                    assert_eq!(stored.topic, topic);
                    assert_eq!(stored.queue_id, queue_id);
                    assert_eq!(
                        stored.queue_offset,
                        start + bodies.len() as i64,
                        "dense queue offsets"
                    );
                    bodies.push(stored.body.expect("body read"));
                }
                offset = result.next_begin_offset;
            }
            GetMessageStatus::OffsetOverflowOne
            | GetMessageStatus::NoMessageInQueue
            | GetMessageStatus::NoMatchedLogicQueue => return bodies,
            other => panic!("unexpected status {other:?} at offset {offset} of {topic}-{queue_id}"),
        }
    }
}
