//! Consume-queue units, dispatch rules, recovery after a restart (including a torn tail),
//! truncation, retention and the timestamp search, over the in-memory test disk with
//! segments of 5 units.

use proptest::prelude::*;

use super::*;
use crate::store::test_disk::MemoryDisk;

const ROOT: &str = "store";
const TOPIC: &str = "TopicA";
const QUEUE_ID: i32 = 3;
const UNITS_PER_FILE: u64 = 5;
const FILE_SIZE: u64 = UNITS_PER_FILE * CQ_STORE_UNIT_SIZE;
const DIR: &str = "store/consumequeue/TopicA/3";

/// The unit of the message at queue index `index`: records of 90 bytes every 100 bytes
/// (other queues' records sit in between), tags hash = index.
fn message(index: i64) -> ConsumeQueueUnit {
    ConsumeQueueUnit {
        commit_log_offset: 1_000 + index * 100,
        size: 90,
        tags_code: index,
    }
}

/// Store time of the record at `offset` under [`message`]: 10 ms apart from 10 000.
fn store_time(offset: i64) -> i64 {
    10_000 + (offset - 1_000) / 100 * 10
}

fn open(disk: &SharedDisk) -> ConsumeQueue {
    ConsumeQueue::new(disk.clone(), ROOT, TOPIC, QUEUE_ID, FILE_SIZE)
}

/// A queue holding the messages `0..count`.
fn filled(count: i64) -> (Arc<MemoryDisk>, SharedDisk, ConsumeQueue) {
    let (memory, disk) = MemoryDisk::shared();
    let cq = open(&disk);
    cq.load().unwrap();
    for index in 0..count {
        assert_eq!(
            cq.put_unit(message(index), index).unwrap(),
            PutUnitOutcome::Appended
        );
    }
    cq.check_invariants();
    (memory, disk, cq)
}

/// A new queue over the same disk, loaded and recovered: a broker restart.
async fn restart(disk: &SharedDisk) -> ConsumeQueue {
    let cq = open(disk);
    cq.load().unwrap();
    cq.recover().await.unwrap();
    cq.check_invariants();
    cq
}

fn segment(disk: &SharedDisk, start_offset: u64) -> Arc<dyn crate::disk::Segment> {
    disk.open_segment(&format!("{DIR}/{start_offset:020}"), FILE_SIZE)
        .unwrap()
}

fn segment_names(memory: &MemoryDisk) -> Vec<String> {
    memory
        .file_paths()
        .into_iter()
        .map(|path| path.rsplit('/').next().unwrap().to_owned())
        .collect()
}

fn messages(range: std::ops::Range<i64>) -> Vec<(i64, ConsumeQueueUnit)> {
    range.map(|index| (index, message(index))).collect()
}

#[test]
fn unit_encodes_big_endian_offset_then_size_then_tags() {
    let unit = ConsumeQueueUnit {
        commit_log_offset: 0x0102_0304_0506_0708,
        size: 0x0A0B_0C0D,
        tags_code: -2,
    };
    let golden: [u8; 20] = [
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // commitLogOffset
        0x0A, 0x0B, 0x0C, 0x0D, // size
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, // tagsCode
    ];
    assert_eq!(unit.encode(), golden);
    assert_eq!(ConsumeQueueUnit::decode(&golden), Some(unit));
}

#[test]
fn blank_unit_is_zero_offset_int_max_size_zero_tags() {
    let mut golden = [0u8; 20];
    golden[8..12].copy_from_slice(&[0x7F, 0xFF, 0xFF, 0xFF]);
    assert_eq!(ConsumeQueueUnit::BLANK.encode(), golden);
    assert!(ConsumeQueueUnit::BLANK.is_valid());
    assert!(ConsumeQueueUnit::BLANK.is_blank());
}

#[test]
fn decode_takes_exactly_twenty_bytes_and_zeros_are_not_valid() {
    assert_eq!(ConsumeQueueUnit::decode(&[0u8; 19]), None);
    assert_eq!(ConsumeQueueUnit::decode(&[0u8; 21]), None);
    let zeros = ConsumeQueueUnit::decode(&[0u8; 20]).unwrap();
    assert!(!zeros.is_valid());
    let negative = ConsumeQueueUnit::decode(&[0xFF; 20]).unwrap();
    assert!(!negative.is_valid());
    let huge = ConsumeQueueUnit {
        commit_log_offset: i64::MAX,
        size: i32::MAX,
        tags_code: 0,
    };
    assert_eq!(huge.end(), i64::MAX);
}

#[test]
fn appends_and_reads_across_three_segments() {
    let (memory, _disk, cq) = filled(13);
    assert_eq!(
        segment_names(&memory),
        vec![
            "00000000000000000000",
            "00000000000000000100",
            "00000000000000000200"
        ]
    );
    assert!(memory.file_paths().iter().all(|path| path.starts_with(DIR)));
    assert_eq!(cq.min_offset_in_queue(), 0);
    assert_eq!(cq.max_offset_in_queue(), 13);
    assert_eq!(cq.max_physic_offset(), message(12).end());
    for index in 0..13 {
        assert_eq!(cq.unit(index), Some(message(index)));
    }
    assert_eq!(cq.unit(13), None);
    assert_eq!(cq.unit(-1), None);
    assert_eq!(cq.units(0, 100), messages(0..13));
    assert_eq!(cq.units(3, 5), messages(3..8));
    assert_eq!(cq.units(4, 7), messages(4..11));
    assert_eq!(cq.units(12, 5), messages(12..13));
    assert!(cq.units(13, 5).is_empty());
    assert!(cq.units(0, 0).is_empty());
    assert_eq!(cq.last_unit(), Some(message(12)));
    assert_eq!(cq.roll_next_file(7), 10);
    assert_eq!(cq.roll_next_file(10), 15);
    assert_eq!(cq.roll_next_file(0), 5);
}

#[test]
fn unit_below_end_is_duplicate_and_not_written() {
    let (_memory, _disk, cq) = filled(3);
    let later = ConsumeQueueUnit {
        commit_log_offset: 50_000,
        size: 10,
        tags_code: 0,
    };
    assert_eq!(
        cq.put_unit(later, 1).unwrap(),
        PutUnitOutcome::Duplicate { end_index: 3 }
    );
    // Java appends a repeated index 0; here it is a duplicate like any other.
    assert_eq!(
        cq.put_unit(later, 0).unwrap(),
        PutUnitOutcome::Duplicate { end_index: 3 }
    );
    assert_eq!(cq.units(0, 10), messages(0..3));
    assert_eq!(cq.max_physic_offset(), message(2).end());
    cq.check_invariants();
}

#[test]
fn record_at_or_below_max_physic_offset_is_already_built() {
    let (_memory, _disk, cq) = filled(3);
    assert_eq!(
        cq.put_unit(message(1), 3).unwrap(),
        PutUnitOutcome::AlreadyBuilt {
            max_physic_offset: message(2).end()
        }
    );
    assert_eq!(
        cq.put_unit(message(2), 7).unwrap(),
        PutUnitOutcome::AlreadyBuilt {
            max_physic_offset: message(2).end()
        }
    );
    assert_eq!(cq.max_offset_in_queue(), 3);
}

#[test]
fn first_unit_at_nonzero_index_fills_its_segment_with_blanks_and_sets_min() {
    let (memory, disk) = MemoryDisk::shared();
    let cq = open(&disk);
    cq.load().unwrap();
    assert_eq!(
        cq.put_unit(message(7), 7).unwrap(),
        PutUnitOutcome::AppendedAfterBlankFill { blank_count: 2 }
    );
    cq.check_invariants();
    assert_eq!(segment_names(&memory), vec!["00000000000000000100"]);
    assert_eq!(cq.min_offset_in_queue(), 7);
    assert_eq!(cq.max_offset_in_queue(), 8);
    assert_eq!(cq.unit(5), None);
    assert_eq!(cq.unit(7), Some(message(7)));
    assert_eq!(cq.units(0, 10), messages(7..8));
    let bytes = disk
        .read_file(&format!("{DIR}/00000000000000000100"))
        .unwrap()
        .unwrap();
    let blank = ConsumeQueueUnit::BLANK.encode();
    assert_eq!(&bytes[0..20], &blank);
    assert_eq!(&bytes[20..40], &blank);
    assert_eq!(&bytes[40..60], &message(7).encode());
    assert!(bytes[60..].iter().all(|&b| b == 0));
    assert_eq!(
        cq.put_unit(message(8), 8).unwrap(),
        PutUnitOutcome::Appended
    );
    cq.check_invariants();
}

#[test]
fn first_unit_at_segment_start_needs_no_blanks() {
    let (memory, disk) = MemoryDisk::shared();
    let cq = open(&disk);
    assert_eq!(
        cq.put_unit(message(10), 10).unwrap(),
        PutUnitOutcome::AppendedAfterBlankFill { blank_count: 0 }
    );
    assert_eq!(segment_names(&memory), vec!["00000000000000000200"]);
    assert_eq!(cq.min_offset_in_queue(), 10);
    cq.check_invariants();
}

#[test]
fn unit_above_end_is_gap_and_not_written() {
    let (memory, _disk, cq) = filled(3);
    assert_eq!(
        cq.put_unit(message(5), 5).unwrap(),
        PutUnitOutcome::Gap { end_index: 3 }
    );
    assert_eq!(cq.max_offset_in_queue(), 3);
    assert_eq!(cq.max_physic_offset(), message(2).end());
    assert_eq!(segment_names(&memory), vec!["00000000000000000000"]);
    // The expected index still goes in.
    assert_eq!(
        cq.put_unit(message(3), 3).unwrap(),
        PutUnitOutcome::Appended
    );
    cq.check_invariants();
}

#[test]
fn rejects_bad_units_and_queue_offsets() {
    let (_memory, _disk, cq) = filled(2);
    let next = message(2);
    assert!(matches!(
        cq.put_unit(next, -1),
        Err(ConsumeQueueError::InvalidQueueOffset { queue_offset: -1 })
    ));
    assert!(matches!(
        cq.put_unit(next, i64::MAX),
        Err(ConsumeQueueError::InvalidQueueOffset { .. })
    ));
    for unit in [
        ConsumeQueueUnit { size: 0, ..next },
        ConsumeQueueUnit {
            commit_log_offset: -5,
            ..next
        },
        ConsumeQueueUnit::BLANK,
    ] {
        assert!(matches!(
            cq.put_unit(unit, 2),
            Err(ConsumeQueueError::InvalidUnit { .. })
        ));
    }
    let overlapping = ConsumeQueueUnit {
        commit_log_offset: message(1).commit_log_offset + 10,
        size: 500,
        tags_code: 0,
    };
    assert!(matches!(
        cq.put_unit(overlapping, 2),
        Err(ConsumeQueueError::Overlap { .. })
    ));
    assert_eq!(cq.max_offset_in_queue(), 2);
    cq.check_invariants();
}

#[tokio::test]
async fn recover_after_restart_finds_the_true_end() {
    let (_memory, disk, cq) = filled(12);
    drop(cq);
    let loaded = open(&disk);
    loaded.load().unwrap();
    // Load marks every segment full; recovery finds the end.
    assert_eq!(loaded.max_offset_in_queue(), 15);
    loaded.recover().await.unwrap();
    loaded.check_invariants();
    assert_eq!(loaded.max_offset_in_queue(), 12);
    assert_eq!(loaded.min_offset_in_queue(), 0);
    assert_eq!(loaded.max_physic_offset(), message(11).end());
    assert_eq!(loaded.units(0, 100), messages(0..12));
    assert_eq!(
        loaded.put_unit(message(11), 11).unwrap(),
        PutUnitOutcome::AlreadyBuilt {
            max_physic_offset: message(11).end()
        }
    );
    assert_eq!(
        loaded.put_unit(message(12), 12).unwrap(),
        PutUnitOutcome::Appended
    );
    loaded.check_invariants();
}

#[tokio::test]
async fn recover_of_full_segments_keeps_them_all() {
    let (memory, disk, _cq) = filled(15);
    let cq = restart(&disk).await;
    assert_eq!(cq.max_offset_in_queue(), 15);
    assert_eq!(segment_names(&memory).len(), 3);
    assert_eq!(
        cq.put_unit(message(15), 15).unwrap(),
        PutUnitOutcome::Appended
    );
    assert_eq!(segment_names(&memory).len(), 4);
    cq.check_invariants();
}

#[tokio::test]
async fn recover_cuts_a_torn_last_unit_and_garbage_after_it() {
    let (_memory, disk, cq) = filled(7);
    drop(cq);
    // Unit 7 torn inside its size field (offset written, size zero), garbage further on.
    let file = segment(&disk, 100);
    file.write_at(40, &message(7).commit_log_offset.to_be_bytes())
        .unwrap();
    file.write_at(48, &[0, 0]).unwrap();
    file.write_at(60, &[0xFF; 20]).unwrap();
    file.write_at(85, &[0x12; 5]).unwrap();
    let cq = restart(&disk).await;
    assert_eq!(cq.max_offset_in_queue(), 7);
    assert_eq!(cq.max_physic_offset(), message(6).end());
    assert_eq!(cq.units(0, 100), messages(0..7));
    let bytes = disk
        .read_file(&format!("{DIR}/00000000000000000100"))
        .unwrap()
        .unwrap();
    assert!(
        bytes[40..].iter().all(|&b| b == 0),
        "the tail past the last valid unit is zeroed"
    );
    assert_eq!(
        cq.put_unit(message(7), 7).unwrap(),
        PutUnitOutcome::Appended
    );
    cq.check_invariants();
}

#[tokio::test]
async fn recover_drops_segments_after_an_invalid_unit() {
    let (memory, disk, cq) = filled(13);
    drop(cq);
    // A negative offset in the middle segment: the last segment is no longer reachable.
    segment(&disk, 100).write_at(20, &[0xFF; 8]).unwrap();
    let cq = restart(&disk).await;
    assert_eq!(cq.max_offset_in_queue(), 6);
    assert_eq!(
        segment_names(&memory),
        vec!["00000000000000000000", "00000000000000000100"]
    );
    assert_eq!(cq.max_physic_offset(), message(5).end());
}

#[tokio::test]
async fn recover_of_a_queue_without_units_removes_its_segments() {
    let (memory, disk) = MemoryDisk::shared();
    segment(&disk, 100);
    let cq = restart(&disk).await;
    assert!(memory.file_paths().is_empty());
    assert_eq!(cq.max_offset_in_queue(), 0);
    assert_eq!(cq.min_offset_in_queue(), 0);
    assert_eq!(cq.max_physic_offset(), -1);
    assert_eq!(cq.last_unit(), None);
    assert_eq!(
        cq.put_unit(message(42), 42).unwrap(),
        PutUnitOutcome::AppendedAfterBlankFill { blank_count: 2 }
    );
    assert_eq!(segment_names(&memory), vec!["00000000000000000800"]);
    cq.check_invariants();
}

#[tokio::test]
async fn recover_keeps_the_blank_fill_and_min_skips_it() {
    let (_memory, disk) = MemoryDisk::shared();
    let cq = open(&disk);
    cq.put_unit(message(7), 7).unwrap();
    cq.put_unit(message(8), 8).unwrap();
    drop(cq);
    let cq = restart(&disk).await;
    assert_eq!(cq.min_offset_in_queue(), 7);
    assert_eq!(cq.max_offset_in_queue(), 9);
    assert_eq!(cq.max_physic_offset(), message(8).end());
    assert_eq!(cq.units(0, 10), messages(7..9));
}

#[tokio::test]
async fn a_fill_interrupted_before_its_unit_resumes_on_the_next_put() {
    let (_memory, disk) = MemoryDisk::shared();
    // Blanks for indexes 5 and 6 survived, unit 7 did not.
    let file = segment(&disk, 100);
    file.write_at(0, &ConsumeQueueUnit::BLANK.encode()).unwrap();
    file.write_at(20, &ConsumeQueueUnit::BLANK.encode())
        .unwrap();
    let cq = restart(&disk).await;
    assert_eq!(cq.max_offset_in_queue(), 7);
    assert_eq!(cq.min_offset_in_queue(), 7);
    assert_eq!(cq.max_physic_offset(), -1);
    assert_eq!(cq.last_unit(), None);
    assert_eq!(
        cq.put_unit(message(8), 8).unwrap(),
        PutUnitOutcome::AppendedAfterBlankFill { blank_count: 1 }
    );
    assert_eq!(cq.min_offset_in_queue(), 8);
    cq.check_invariants();
}

#[tokio::test]
async fn load_rejects_a_segment_of_the_wrong_size_or_name() {
    let (_memory, disk) = MemoryDisk::shared();
    disk.open_segment(&format!("{DIR}/00000000000000000000"), FILE_SIZE + 20)
        .unwrap();
    assert!(matches!(
        open(&disk).load(),
        Err(ConsumeQueueError::Load { .. })
    ));
    let (_memory, disk) = MemoryDisk::shared();
    disk.open_segment(&format!("{DIR}/not-an-offset"), FILE_SIZE)
        .unwrap();
    assert!(matches!(
        open(&disk).load(),
        Err(ConsumeQueueError::Load { .. })
    ));
}

#[tokio::test]
async fn truncate_drops_units_at_or_above_the_physical_offset() {
    let (memory, disk, cq) = filled(13);
    cq.truncate_dirty_logic_files(message(8).commit_log_offset)
        .await
        .unwrap();
    cq.check_invariants();
    assert_eq!(cq.max_offset_in_queue(), 8);
    assert_eq!(cq.max_physic_offset(), message(7).end());
    assert_eq!(
        segment_names(&memory),
        vec!["00000000000000000000", "00000000000000000100"]
    );
    let bytes = disk
        .read_file(&format!("{DIR}/00000000000000000100"))
        .unwrap()
        .unwrap();
    assert!(bytes[60..].iter().all(|&b| b == 0));
    // A cut inside a record (not at its start) drops that record's unit: the record is not
    // whole in the commit log any more.
    cq.truncate_dirty_logic_files(message(7).commit_log_offset + 1)
        .await
        .unwrap();
    assert_eq!(cq.max_offset_in_queue(), 7);
    assert_eq!(
        cq.put_unit(message(7), 7).unwrap(),
        PutUnitOutcome::Appended
    );
    cq.check_invariants();
}

#[tokio::test]
async fn truncate_at_a_segment_boundary_leaves_an_empty_last_segment() {
    let (memory, _disk, cq) = filled(13);
    cq.truncate_dirty_logic_files(message(5).commit_log_offset)
        .await
        .unwrap();
    cq.check_invariants();
    assert_eq!(cq.max_offset_in_queue(), 5);
    assert_eq!(segment_names(&memory).len(), 2);
    assert_eq!(
        cq.put_unit(message(5), 5).unwrap(),
        PutUnitOutcome::Appended
    );
    assert_eq!(segment_names(&memory).len(), 2);
    cq.check_invariants();
}

#[tokio::test]
async fn truncate_below_every_unit_empties_the_queue() {
    let (memory, _disk, cq) = filled(13);
    cq.truncate_dirty_logic_files(message(20).commit_log_offset)
        .await
        .unwrap();
    assert_eq!(
        cq.max_offset_in_queue(),
        13,
        "nothing at or above: unchanged"
    );
    cq.truncate_dirty_logic_files(0).await.unwrap();
    cq.check_invariants();
    assert!(memory.file_paths().is_empty());
    assert_eq!(cq.max_offset_in_queue(), 0);
    assert_eq!(cq.min_offset_in_queue(), 0);
    assert_eq!(cq.max_physic_offset(), 0);
    assert_eq!(
        cq.put_unit(message(0), 0).unwrap(),
        PutUnitOutcome::Appended
    );
    cq.check_invariants();
}

#[tokio::test]
async fn truncate_below_the_min_offset_pulls_it_down_to_the_end() {
    let (_memory, _disk, cq) = filled(13);
    cq.correct_min_offset(message(10).commit_log_offset)
        .unwrap();
    assert_eq!(cq.min_offset_in_queue(), 10);
    cq.truncate_dirty_logic_files(message(8).commit_log_offset)
        .await
        .unwrap();
    cq.check_invariants();
    assert_eq!(cq.min_offset_in_queue(), 8);
    assert_eq!(cq.max_offset_in_queue(), 8);
}

#[test]
fn correct_min_offset_skips_units_below_the_commit_log_min() {
    let (_memory, _disk, cq) = filled(13);
    cq.correct_min_offset(message(7).commit_log_offset).unwrap();
    assert_eq!(cq.min_offset_in_queue(), 7);
    cq.correct_min_offset(message(7).commit_log_offset + 1)
        .unwrap();
    assert_eq!(cq.min_offset_in_queue(), 8);
    assert_eq!(cq.unit(7), None);
    assert_eq!(cq.units(0, 3), messages(8..11));
    cq.correct_min_offset(0).unwrap();
    assert_eq!(cq.min_offset_in_queue(), 8, "the minimum never moves back");
    cq.correct_min_offset(i64::MAX).unwrap();
    assert_eq!(cq.min_offset_in_queue(), 13, "no live unit: min == max");
    assert!(cq.units(0, 100).is_empty());
    assert_eq!(cq.last_unit(), Some(message(12)));
    cq.check_invariants();
}

#[tokio::test]
async fn delete_expired_files_removes_whole_segments_below_the_commit_log_min() {
    let (memory, _disk, cq) = filled(13);
    // Segment 0's last unit (4) is still live.
    assert_eq!(
        cq.delete_expired_files(message(4).commit_log_offset)
            .await
            .unwrap(),
        0
    );
    assert_eq!(cq.min_offset_in_queue(), 4);
    assert_eq!(
        cq.delete_expired_files(message(4).commit_log_offset + 1)
            .await
            .unwrap(),
        1
    );
    cq.check_invariants();
    assert_eq!(
        segment_names(&memory),
        vec!["00000000000000000100", "00000000000000000200"]
    );
    assert_eq!(cq.min_offset_in_queue(), 5);
    assert_eq!(cq.unit(5), Some(message(5)));
    // Everything expired: the newest segment stays, the queue is logically empty.
    assert_eq!(cq.delete_expired_files(i64::MAX).await.unwrap(), 1);
    cq.check_invariants();
    assert_eq!(segment_names(&memory), vec!["00000000000000000200"]);
    assert_eq!(cq.min_offset_in_queue(), 13);
    assert_eq!(cq.max_offset_in_queue(), 13);
    assert_eq!(
        cq.put_unit(message(13), 13).unwrap(),
        PutUnitOutcome::Appended
    );
    assert_eq!(cq.unit(13), Some(message(13)));
    cq.check_invariants();
}

#[tokio::test]
async fn min_offset_survives_a_restart_through_correct_min_offset() {
    let (_memory, disk, cq) = filled(13);
    cq.delete_expired_files(message(6).commit_log_offset)
        .await
        .unwrap();
    assert_eq!(cq.min_offset_in_queue(), 6);
    drop(cq);
    let cq = restart(&disk).await;
    assert_eq!(
        cq.min_offset_in_queue(),
        5,
        "the first segment's start until corrected"
    );
    cq.correct_min_offset(message(6).commit_log_offset).unwrap();
    assert_eq!(cq.min_offset_in_queue(), 6);
}

#[test]
fn offset_by_timestamp_finds_the_first_message_stored_at_or_after() {
    let (_memory, _disk, cq) = filled(13);
    let time_of = |offset: i64, _size: i32| Some(store_time(offset));
    assert_eq!(cq.offset_by_timestamp(0, time_of), 0);
    assert_eq!(cq.offset_by_timestamp(10_000, time_of), 0);
    assert_eq!(cq.offset_by_timestamp(10_001, time_of), 1);
    assert_eq!(cq.offset_by_timestamp(10_070, time_of), 7);
    assert_eq!(cq.offset_by_timestamp(10_071, time_of), 8);
    assert_eq!(cq.offset_by_timestamp(10_120, time_of), 12);
    assert_eq!(cq.offset_by_timestamp(10_121, time_of), 13);
    assert_eq!(cq.offset_by_timestamp(i64::MAX, time_of), 13);
    // Records gone from the commit log count as older.
    let gone_below_3 = |offset: i64, _size: i32| {
        (offset >= message(3).commit_log_offset).then(|| store_time(offset))
    };
    assert_eq!(cq.offset_by_timestamp(0, gone_below_3), 3);
    cq.correct_min_offset(message(4).commit_log_offset).unwrap();
    assert_eq!(cq.offset_by_timestamp(0, time_of), 4);
}

#[test]
fn offset_by_timestamp_of_an_empty_queue_is_zero() {
    let (_memory, disk) = MemoryDisk::shared();
    let cq = open(&disk);
    assert_eq!(cq.offset_by_timestamp(12_345, |_, _| Some(0)), 0);
}

#[tokio::test]
async fn flush_syncs_only_enough_dirty_pages_unless_asked_for_all() {
    let (_memory, _disk, cq) = filled(3);
    assert_eq!(cq.flushed_offset(), 0);
    assert_eq!(cq.flush(1).await.unwrap(), 0);
    assert_eq!(cq.flush(0).await.unwrap(), 60);
    cq.put_unit(message(3), 3).unwrap();
    cq.put_unit(message(4), 4).unwrap();
    // A full segment is always flushed.
    assert_eq!(cq.flush(4).await.unwrap(), FILE_SIZE);
    cq.check_invariants();
}

#[tokio::test]
async fn destroy_removes_segments_and_directory() {
    let (memory, disk, cq) = filled(8);
    cq.destroy().await.unwrap();
    assert!(memory.file_paths().is_empty());
    assert!(!disk.exists(DIR).unwrap());
    assert_eq!(cq.max_offset_in_queue(), 0);
    assert_eq!(cq.min_offset_in_queue(), 0);
    assert_eq!(cq.max_physic_offset(), -1);
    cq.check_invariants();
    assert_eq!(
        cq.put_unit(message(0), 0).unwrap(),
        PutUnitOutcome::Appended
    );
}

#[test]
#[should_panic(expected = "not a positive multiple of 20")]
fn segment_size_must_be_whole_units() {
    let (_memory, disk) = MemoryDisk::shared();
    ConsumeQueue::new(disk, ROOT, TOPIC, QUEUE_ID, 90);
}

proptest! {
    /// The binary search agrees with a linear scan for any non-decreasing store times, any
    /// prefix of records gone from the commit log and any corrected minimum.
    #[test]
    fn offset_by_timestamp_matches_a_linear_scan(
        steps in prop::collection::vec(0i64..3, 1..40),
        gone_fraction in 0.0f64..1.0,
        min_fraction in 0.0f64..1.0,
        timestamp in 9_990i64..10_100,
    ) {
        let count = steps.len() as i64;
        let times: Vec<i64> = steps
            .iter()
            .scan(10_000, |time, step| {
                *time += step;
                Some(*time)
            })
            .collect();
        let gone = (gone_fraction * count as f64) as i64;
        let min = (min_fraction * count as f64) as i64;
        let (_memory, _disk, cq) = filled(count);
        cq.correct_min_offset(message(min).commit_log_offset).unwrap();
        prop_assert_eq!(cq.min_offset_in_queue(), min);
        let time_of = |offset: i64, _size: i32| {
            let index = (offset - 1_000) / 100;
            (index >= gone).then(|| times[index as usize])
        };
        let expected = (min..count)
            .find(|&index| time_of(message(index).commit_log_offset, 90)
                .is_some_and(|time| time >= timestamp))
            .unwrap_or(count);
        prop_assert_eq!(cq.offset_by_timestamp(timestamp, time_of), expected);
    }

    /// Garbage in the segments never panics recovery or reads.
    #[test]
    fn recovery_and_reads_of_garbage_never_panic(
        files in prop::collection::vec(
            prop::collection::vec(
                prop_oneof![Just(0u8), Just(0xFFu8), any::<u8>()],
                FILE_SIZE as usize,
            ),
            1..4,
        ),
        valid_prefix in 0usize..15,
        timestamp in any::<i64>(),
    ) {
        let (_memory, disk) = MemoryDisk::shared();
        for (index, contents) in files.iter().enumerate() {
            segment(&disk, index as u64 * FILE_SIZE).write_at(0, contents).unwrap();
        }
        // Some real units first, so recovery gets past the start now and then.
        let first = segment(&disk, 0);
        for index in 0..valid_prefix.min(UNITS_PER_FILE as usize) {
            first.write_at(index as u64 * 20, &message(index as i64).encode()).unwrap();
        }
        let cq = open(&disk);
        cq.load().unwrap();
        futures::executor::block_on(cq.recover()).unwrap();
        let max = cq.max_offset_in_queue();
        prop_assert!(cq.min_offset_in_queue() <= max);
        let units = cq.units(0, 1_000);
        prop_assert!(units.len() as i64 <= max);
        for index in -1..=max {
            let _ = cq.unit(index);
        }
        let _ = cq.last_unit();
        let _ = cq.offset_by_timestamp(timestamp, |offset, size| Some(offset ^ i64::from(size)));
        cq.correct_min_offset(timestamp).unwrap();
        prop_assert!(cq.min_offset_in_queue() <= cq.max_offset_in_queue());
        futures::executor::block_on(cq.truncate_dirty_logic_files(timestamp)).unwrap();
        prop_assert!(cq.min_offset_in_queue() <= cq.max_offset_in_queue());
        let _ = cq.put_unit(
            ConsumeQueueUnit { commit_log_offset: i64::MAX - 10, size: 5, tags_code: 0 },
            cq.max_offset_in_queue(),
        );
    }
}

#[test]
fn only_the_segment_being_appended_to_is_random_access() {
    let (memory, _disk, _cq) = filled(UNITS_PER_FILE as i64 + 1);
    let paths = memory.file_paths();
    let random: Vec<bool> = paths
        .iter()
        .map(|path| memory.is_random_access(path))
        .collect();
    assert_eq!(random, [false, true], "{paths:?}");
}
