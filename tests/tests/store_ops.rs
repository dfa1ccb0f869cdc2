//! Message-store behaviour on SimDisk without crashes: reads return exactly what was
//! appended (property test over random appends, batches and segment roll-overs), SYNC_FLUSH
//! group commit and its failure modes, refused messages, delayed messages, lookups by key,
//! offset and time, retention of expired segments, and a disk that fills up.
#![cfg(not(madsim))]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrocket_engine::disk::Disk;
use ferrocket_engine::store::config::{FlushDiskType, MessageStoreConfig};
use ferrocket_engine::store::message::{decode_record, property_key};
use ferrocket_engine::store::message_store::{
    GetMessageStatus, MessageStore, PutMessageResult, PutMessageStatus, SCHEDULE_TOPIC,
};
use ferrocket_sim::{SimDisk, SimDiskFaults, SkewedClock};
use ferrocket_tests::store::{
    message, read_queue, sim_env, sim_env_with_clock, small_store_config,
};
use proptest::prelude::*;

async fn open(disk: &Arc<SimDisk>, config: MessageStoreConfig) -> Arc<MessageStore> {
    MessageStore::open(sim_env(disk, 1), config, 1 << 30)
        .await
        .expect("store opens")
}

/// One append of the property test: a topic, a queue, and one or more body sizes (a batch
/// when more than one).
#[derive(Debug, Clone)]
struct Append {
    topic: usize,
    queue_id: i32,
    sizes: Vec<usize>,
}

fn appends() -> impl Strategy<Value = Vec<Append>> {
    let append = (
        0usize..3,
        0i32..4,
        proptest::collection::vec(1usize..3000, 1..4),
    )
        .prop_map(|(topic, queue_id, sizes)| Append {
            topic,
            queue_id,
            sizes,
        });
    proptest::collection::vec(append, 1..60)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn reads_return_exactly_what_was_appended_in_order_per_queue(appends in appends()) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let disk = SimDisk::new();
            let store = open(&disk, small_store_config()).await;
            let mut expected: BTreeMap<(String, i32), Vec<Bytes>> = BTreeMap::new();
            for (serial, append) in appends.iter().enumerate() {
                let topic = format!("Topic{}", append.topic);
                let bodies: Vec<Bytes> = append
                    .sizes
                    .iter()
                    .enumerate()
                    .map(|(i, size)| Bytes::from(format!("{serial}.{i}:{}", "b".repeat(*size))))
                    .collect();
                let messages = bodies
                    .iter()
                    .map(|body| message(&topic, append.queue_id, body.clone(), "k"))
                    .collect::<Vec<_>>();
                let result = if messages.len() == 1 {
                    store.put_message(messages.into_iter().next().unwrap()).await
                } else {
                    store.put_messages(messages).await
                };
                assert_eq!(result.status, PutMessageStatus::PutOk);
                expected.entry((topic, append.queue_id)).or_default().extend(bodies);
            }
            store.dispatch_pending().await;
            store.check_invariants();
            for ((topic, queue_id), bodies) in &expected {
                assert_eq!(&read_queue(&store, topic, *queue_id), bodies);
            }
        });
    }
}

#[tokio::test]
async fn sync_flush_acknowledges_after_the_sync_and_times_out_when_syncs_fail() {
    let disk = SimDisk::new();
    let config = MessageStoreConfig {
        flush_disk_type: FlushDiskType::SyncFlush,
        sync_flush_timeout: 300,
        ..small_store_config()
    };
    let store = open(&disk, config).await;
    store.start();
    let puts = (0..20).map(|i| {
        let store = store.clone();
        async move {
            store
                .put_message(message("T", 0, Bytes::from(format!("m{i}")), "k"))
                .await
        }
    });
    for result in futures::future::join_all(puts).await {
        assert_eq!(result.status, PutMessageStatus::PutOk, "{result:?}");
        let end = result.append.unwrap().end_offset();
        assert!(
            store.commit_log().flushed_offset() >= end,
            "acknowledged before durable"
        );
    }
    disk.set_faults(SimDiskFaults {
        sync_error: true,
        ..SimDiskFaults::default()
    });
    let failed = store
        .put_message(message("T", 0, Bytes::from_static(b"x"), "k"))
        .await;
    assert_eq!(failed.status, PutMessageStatus::FlushDiskTimeout);
    // A failed sync fences the store: nothing more is accepted.
    let refused = store
        .put_message(message("T", 0, Bytes::from_static(b"y"), "k"))
        .await;
    assert_eq!(
        refused.status,
        PutMessageStatus::ServiceNotAvailable,
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_full_disk_refuses_new_segments_and_oversized_messages_are_illegal() {
    let disk = SimDisk::new();
    let store = open(&disk, small_store_config()).await;
    let too_big = message("T", 0, Bytes::from(vec![7u8; 9 * 1024]), "k");
    let result = store.put_message(too_big).await;
    assert_eq!(
        result.status,
        PutMessageStatus::MessageIllegal,
        "{result:?}"
    );
    let long_topic = message(&"t".repeat(128), 0, Bytes::from_static(b"x"), "k");
    assert_eq!(
        store.put_message(long_topic).await.status,
        PutMessageStatus::MessageIllegal
    );
    disk.set_faults(SimDiskFaults {
        capacity_bytes: Some(0),
        ..SimDiskFaults::default()
    });
    let mut status = PutMessageStatus::PutOk;
    for _ in 0..40 {
        status = store
            .put_message(message("T", 0, Bytes::from(vec![1u8; 2000]), "k"))
            .await
            .status;
        if status != PutMessageStatus::PutOk {
            break;
        }
    }
    assert_eq!(status, PutMessageStatus::CreateMappedFileFailed);
    disk.set_faults(SimDiskFaults::default());
    let freed = store
        .put_message(message("T", 0, Bytes::from_static(b"after"), "k"))
        .await;
    assert_eq!(
        freed.status,
        PutMessageStatus::PutOk,
        "writes resume once space is freed"
    );
}

#[tokio::test]
async fn a_consume_queue_that_cannot_be_created_pauses_dispatch_and_loses_nothing() {
    let disk = SimDisk::new();
    let store = open(&disk, small_store_config()).await;
    // The commit log's segment exists; a new queue's first consume-queue segment cannot be
    // created while the disk is full.
    store
        .put_message(message("Warm", 0, Bytes::from_static(b"w"), "k"))
        .await;
    store.dispatch_pending().await;
    disk.set_faults(SimDiskFaults {
        capacity_bytes: Some(0),
        ..SimDiskFaults::default()
    });
    for i in 0..5u8 {
        let put = store
            .put_message(message("Fresh", 0, Bytes::from(vec![b'a' + i]), "k"))
            .await;
        assert_eq!(put.status, PutMessageStatus::PutOk, "{put:?}");
    }
    store.dispatch_pending().await;
    assert!(
        store.is_dispatch_stalled(),
        "dispatch waits for the consume queue"
    );
    assert!(read_queue(&store, "Fresh", 0).is_empty());

    disk.set_faults(SimDiskFaults::default());
    store.dispatch_pending().await;
    assert!(!store.is_dispatch_stalled());
    let bodies: Vec<Bytes> = (0..5u8).map(|i| Bytes::from(vec![b'a' + i])).collect();
    assert_eq!(
        read_queue(&store, "Fresh", 0),
        bodies,
        "every acknowledged message, in order"
    );
}

#[tokio::test]
async fn delayed_messages_park_in_the_schedule_topic_with_their_real_topic() {
    let disk = SimDisk::new();
    let store = open(&disk, small_store_config()).await;
    let mut delayed = message("Orders", 2, Bytes::from_static(b"later"), "k");
    delayed.set_property(property_key::DELAY, "3");
    let result = store.put_message(delayed).await;
    assert_eq!(result.status, PutMessageStatus::PutOk);
    store.dispatch_pending().await;
    assert_eq!(store.max_offset_in_queue("Orders", 2), 0);
    let parked = store.get_message(SCHEDULE_TOPIC, 2, 0, 1, None);
    assert_eq!(parked.status, GetMessageStatus::Found);
    let stored = decode_record(&parked.messages[0], true, true).unwrap();
    assert_eq!(stored.property(property_key::REAL_TOPIC), Some("Orders"));
    assert_eq!(stored.property(property_key::REAL_QID), Some("2"));
    // Its consume-queue tags code is the delivery time: store time + 10 s (level 3).
    let queue = store.find_consume_queue(SCHEDULE_TOPIC, 2).unwrap();
    let unit = queue.unit(0).unwrap();
    assert_eq!(unit.tags_code, stored.store_timestamp + 10_000);
}

#[tokio::test]
async fn messages_are_found_by_key_offset_and_time() {
    let disk = SimDisk::new();
    let store = open(&disk, small_store_config()).await;
    let mut offsets = Vec::new();
    for i in 0..30 {
        let result = store
            .put_message(message(
                "T",
                1,
                Bytes::from(format!("m{i}")),
                &format!("key{i}"),
            ))
            .await;
        offsets.push(result.append.unwrap());
    }
    store.dispatch_pending().await;
    let found = store.query_message("T", "key7", 32, 0, i64::MAX);
    assert_eq!(found.phy_offsets, vec![offsets[7].wrote_offset]);
    let record = store
        .look_message_by_offset(offsets[7].wrote_offset)
        .unwrap();
    let stored = decode_record(&record, true, true).unwrap();
    assert_eq!(stored.body.as_deref(), Some(&b"m7"[..]));
    assert_eq!(stored.msg_id, offsets[7].msg_id);
    assert!(
        store
            .look_message_by_offset(offsets[29].wrote_offset + 1)
            .is_none()
    );
    let first_time = store.earliest_message_time("T", 1).unwrap();
    assert_eq!(first_time, offsets[0].store_timestamp);
    assert_eq!(store.offset_in_queue_by_time("T", 1, 0), 0);
    assert_eq!(store.offset_in_queue_by_time("T", 1, i64::MAX), 30);
}

#[tokio::test]
async fn expired_segments_are_deleted_with_their_queue_and_index_entries() {
    let disk = SimDisk::new();
    let clock = SkewedClock::new(0);
    let store = MessageStore::open(
        sim_env_with_clock(&disk, 1, clock.clone()),
        small_store_config(),
        1 << 30,
    )
    .await
    .unwrap();
    for i in 0..60 {
        store
            .put_message(message(
                "T",
                0,
                Bytes::from(vec![b'x'; 1500]),
                &format!("k{i}"),
            ))
            .await;
    }
    store.dispatch_pending().await;
    let segments = store.commit_log().mapped_file_queue().mapped_files().len();
    assert!(
        segments >= 3,
        "the test needs several segments, has {segments}"
    );
    // Not expired yet: nothing goes, even when forced.
    assert_eq!(store.delete_expired_files(true).await.unwrap(), 0);
    clock.jump(Duration::from_secs(73 * 3600).as_millis() as i64);
    let deleted = store.delete_expired_files(true).await.unwrap();
    assert_eq!(
        deleted,
        segments - 1,
        "every segment but the newest expired"
    );
    let min = store.min_offset_in_queue("T", 0);
    assert!(min > 0);
    let old = store.get_message("T", 0, 0, 32, None);
    assert_eq!(old.status, GetMessageStatus::OffsetTooSmall);
    assert_eq!(old.next_begin_offset, min);
    assert_eq!(read_queue(&store, "T", 0).len() as i64, 60 - min);
    store.check_invariants();
}

/// Fills `store` with 50 messages of 1.5 KiB (two and a half 32 KiB segments, so small
/// messages still fit in the last) and dispatches them; returns the number of segments.
async fn fill_segments(store: &MessageStore) -> usize {
    for i in 0..50 {
        let body = Bytes::from(vec![b'x'; 1500]);
        let stored = store
            .put_message(message("T", 0, body, &format!("k{i}")))
            .await;
        assert_eq!(stored.status, PutMessageStatus::PutOk);
    }
    store.dispatch_pending().await;
    let segments = store.commit_log().mapped_file_queue().mapped_files().len();
    assert!(
        (3..=10).contains(&segments),
        "the test needs 3..=10 segments, has {segments}"
    );
    segments
}

/// Sets the disk's capacity so that what it holds now is `percent` of it.
fn make_disk_used(disk: &SimDisk, percent: f64) {
    let space = disk.space().unwrap();
    let used = space.total - space.available;
    disk.set_faults(SimDiskFaults {
        capacity_bytes: Some((used as f64 * 100.0 / percent) as u64),
        ..SimDiskFaults::default()
    });
}

async fn put_small(store: &MessageStore) -> PutMessageResult {
    store
        .put_message(message("T", 0, Bytes::from_static(b"small"), "k"))
        .await
}

#[tokio::test]
async fn a_disk_past_the_warning_level_refuses_sends_until_it_falls_to_the_clean_level() {
    let disk = SimDisk::new();
    let config = MessageStoreConfig {
        clean_file_forcibly_enable: false,
        ..small_store_config()
    };
    let store = open(&disk, config).await;
    fill_segments(&store).await;

    make_disk_used(&disk, 87.0);
    assert_eq!(
        store.delete_expired_files(false).await.unwrap(),
        0,
        "nothing expired"
    );
    assert!(
        !store.is_disk_full(),
        "between the clean and warning levels a clear flag stays clear"
    );
    assert_eq!(put_small(&store).await.status, PutMessageStatus::PutOk);

    make_disk_used(&disk, 95.0);
    // The flag is a retention pass's verdict: sends go on until a pass sees the disk.
    assert_eq!(put_small(&store).await.status, PutMessageStatus::PutOk);
    assert_eq!(
        store.delete_expired_files(false).await.unwrap(),
        0,
        "cleanFileForciblyEnable=false"
    );
    assert!(store.is_disk_full());
    let refused = put_small(&store).await;
    assert_eq!(
        refused.status,
        PutMessageStatus::ServiceNotAvailable,
        "{refused:?}"
    );
    let remark = refused.remark.unwrap_or_default();
    assert!(
        remark.contains("disk is full") && remark.contains("95.0% used"),
        "{remark}"
    );
    store.dispatch_pending().await;
    let end = store.max_offset_in_queue("T", 0);

    make_disk_used(&disk, 87.0);
    store.delete_expired_files(false).await.unwrap();
    assert!(
        store.is_disk_full(),
        "between the two levels a set flag stays set"
    );
    assert_eq!(
        put_small(&store).await.status,
        PutMessageStatus::ServiceNotAvailable
    );

    make_disk_used(&disk, 80.0);
    store.delete_expired_files(false).await.unwrap();
    assert!(!store.is_disk_full());
    assert_eq!(put_small(&store).await.status, PutMessageStatus::PutOk);
    store.dispatch_pending().await;
    assert_eq!(
        store.max_offset_in_queue("T", 0),
        end + 1,
        "refused sends stored nothing"
    );
    assert_eq!(
        store.min_offset_in_queue("T", 0),
        0,
        "no segment was deleted"
    );
    store.check_invariants();
}

#[tokio::test]
async fn a_disk_past_the_clean_level_loses_its_oldest_segments_expired_or_not() {
    let disk = SimDisk::new();
    let store = open(&disk, small_store_config()).await;
    let segments = fill_segments(&store).await;
    make_disk_used(&disk, 95.0);
    let deleted = store.delete_expired_files(false).await.unwrap();
    assert_eq!(
        deleted,
        segments - 1,
        "every segment but the newest, none expired"
    );
    assert!(
        store.is_disk_full(),
        "the pass judged the disk before deleting"
    );
    assert_eq!(
        put_small(&store).await.status,
        PutMessageStatus::ServiceNotAvailable
    );

    // The space freed shows in the next pass, which lets sends in again.
    store.delete_expired_files(false).await.unwrap();
    assert!(!store.is_disk_full());
    assert_eq!(put_small(&store).await.status, PutMessageStatus::PutOk);
    store.dispatch_pending().await;
    let min = store.min_offset_in_queue("T", 0);
    assert!(
        min > 0,
        "the consume queue starts past the deleted segments"
    );
    assert_eq!(read_queue(&store, "T", 0).len() as i64, 51 - min);
    store.check_invariants();
}
