//! Store recovery over arbitrary file contents: whatever bytes a crash or a bad disk leaves
//! in the commit log and a consume queue, opening the store never panics, recovery stops at
//! the first invalid record, the store's invariants hold afterwards, appending works, and a
//! clean restart finds exactly what recovery kept.

use std::sync::Arc;

use bytes::Bytes;
use ferrocket_engine::Env;
use ferrocket_engine::rng::Rng;
use ferrocket_engine::store::config::MessageStoreConfig;
use ferrocket_engine::store::message::{MessageInner, RecordCheck, check_record};
use ferrocket_engine::store::message_store::{MessageStore, PutMessageStatus};
use ferrocket_net::{SystemClock, TokioNet};
use ferrocket_sim::SimDisk;

const COMMIT_LOG_SEGMENT: u64 = 16 * 1024;
const CONSUME_QUEUE_SEGMENT: u64 = 20 * 32;

fn config() -> MessageStoreConfig {
    MessageStoreConfig {
        mapped_file_size_commit_log: COMMIT_LOG_SEGMENT,
        mapped_file_size_consume_queue: CONSUME_QUEUE_SEGMENT,
        max_hash_slot_num: 16,
        max_index_num: 64,
        ..MessageStoreConfig::default()
    }
}

fn env(disk: &Arc<SimDisk>) -> Env {
    Env {
        clock: SystemClock::shared(),
        net: TokioNet::shared(),
        disk: disk.shared(),
        rng: Rng::shared(0),
    }
}

/// The end of the valid records at the start of a segment holding `bytes` (zero-padded to
/// the segment size, as the disk reads it), as recovery must find it.
fn valid_prefix(bytes: &[u8]) -> u64 {
    let mut padded = bytes.to_vec();
    padded.resize(COMMIT_LOG_SEGMENT as usize, 0);
    let bytes = &padded[..];
    let mut position = 0usize;
    while position < bytes.len() {
        match check_record(&bytes[position..], true) {
            RecordCheck::Message(request) if request.commit_log_offset == position as i64 => {
                position += request.msg_size
            }
            RecordCheck::Message(_) => break,
            RecordCheck::Blank { size } if position + size == COMMIT_LOG_SEGMENT as usize => {
                return COMMIT_LOG_SEGMENT;
            }
            RecordCheck::Blank { .. } => break,
            RecordCheck::Invalid(_) => break,
        }
    }
    position as u64
}

/// The target. The first byte picks whether the `abort` marker is present (abnormal exit);
/// the rest is split between the commit log's first segment and a consume queue's.
pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let split = rest.len() * 3 / 4;
    let (log_bytes, queue_bytes) = rest.split_at(split);
    let log_bytes = &log_bytes[..log_bytes.len().min(COMMIT_LOG_SEGMENT as usize)];
    let queue_bytes = &queue_bytes[..queue_bytes.len().min(CONSUME_QUEUE_SEGMENT as usize)];
    let disk = SimDisk::new();
    let shared = disk.shared();
    let write = |path: &str, size: u64, bytes: &[u8]| {
        let segment = shared.open_segment(path, size).expect("in-memory segment");
        segment.write_at(0, bytes).expect("in-memory write");
    };
    write(
        "store/commitlog/00000000000000000000",
        COMMIT_LOG_SEGMENT,
        log_bytes,
    );
    write(
        "store/consumequeue/T/0/00000000000000000000",
        CONSUME_QUEUE_SEGMENT,
        queue_bytes,
    );
    let abnormal = flags & 1 == 1;
    futures::executor::block_on(async {
        if abnormal {
            shared
                .write_file_atomic("store/abort", b"")
                .await
                .expect("in-memory write");
        }
        let Ok(store) = MessageStore::open(env(&disk), config(), 1 << 30).await else {
            return; // A refused store (e.g. inconsistent files) is an answer, not a panic.
        };
        store.check_invariants();
        let expected_end = valid_prefix(log_bytes);
        assert_eq!(
            store.commit_log().max_offset(),
            expected_end,
            "recovery stops at the first invalid record"
        );
        let message = MessageInner {
            topic: "T".into(),
            queue_id: 0,
            flag: 0,
            body: Bytes::from_static(b"after recovery"),
            properties: String::new(),
            tags_code: 0,
            sys_flag: 0,
            born_timestamp: 0,
            born_host: "127.0.0.1:1".parse().expect("literal address"),
            store_host: "127.0.0.1:2".parse().expect("literal address"),
            store_timestamp: 0,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        };
        let result = store.put_message(message).await;
        assert!(
            result.status == PutMessageStatus::PutOk
                || result.status == PutMessageStatus::MessageIllegal,
            "{result:?}"
        );
        store.dispatch_pending().await;
        store.check_invariants();
        let end = store.commit_log().max_offset();
        store.shutdown().await.expect("clean shutdown");
        let reopened = MessageStore::open(env(&disk), config(), 1 << 30)
            .await
            .expect("a cleanly shut down store reopens");
        assert_eq!(reopened.commit_log().max_offset(), end);
        reopened.check_invariants();
    });
}
