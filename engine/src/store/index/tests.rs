//! Index files and the index service: byte layout, hashing, chains, time windows, rolling,
//! reopening, abnormal-exit pruning, expiry, file names, and damaged files.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

use futures::FutureExt;
use futures::future::BoxFuture;
use proptest::prelude::*;

use super::*;
use crate::clock::{Clock, Instant, test_support};
use crate::disk::{DirEntry, Disk, DiskSpace};
use crate::store::test_disk::MemoryDisk;

const T0: i64 = 1_700_000_000_000;

/// A wall clock the test sets by hand.
#[derive(Debug)]
struct ManualClock {
    wall_ms: AtomicI64,
}

impl ManualClock {
    fn at(wall_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            wall_ms: AtomicI64::new(wall_ms),
        })
    }

    fn set(&self, wall_ms: i64) {
        self.wall_ms.store(wall_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn instant(&self) -> Instant {
        test_support::now()
    }

    fn wall_ms(&self) -> i64 {
        self.wall_ms.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, _deadline: Instant) -> BoxFuture<'static, ()> {
        async {}.boxed()
    }
}

/// A disk that counts segment syncs and can be told to fail them, over a [`MemoryDisk`].
#[derive(Debug)]
struct SyncCountingDisk {
    inner: SharedDisk,
    syncs: Arc<AtomicUsize>,
    fail_syncs: Arc<AtomicBool>,
}

#[derive(Debug)]
struct SyncCountingSegment {
    inner: Arc<dyn Segment>,
    syncs: Arc<AtomicUsize>,
    fail_syncs: Arc<AtomicBool>,
}

impl SyncCountingDisk {
    fn new() -> Arc<Self> {
        let (_, inner) = MemoryDisk::shared();
        Arc::new(Self {
            inner,
            syncs: Arc::default(),
            fail_syncs: Arc::default(),
        })
    }

    fn syncs(&self) -> usize {
        self.syncs.load(Ordering::SeqCst)
    }
}

impl Disk for SyncCountingDisk {
    fn open_segment(&self, path: &str, size: u64) -> io::Result<Arc<dyn Segment>> {
        Ok(Arc::new(SyncCountingSegment {
            inner: self.inner.open_segment(path, size)?,
            syncs: self.syncs.clone(),
            fail_syncs: self.fail_syncs.clone(),
        }))
    }
    fn list_dir(&self, dir: &str) -> io::Result<Vec<DirEntry>> {
        self.inner.list_dir(dir)
    }
    fn create_dir_all(&self, dir: &str) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn exists(&self, path: &str) -> io::Result<bool> {
        self.inner.exists(path)
    }
    fn read_file(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        self.inner.read_file(path)
    }
    fn write_file_atomic(&self, path: &str, contents: &[u8]) -> BoxFuture<'_, io::Result<()>> {
        self.inner.write_file_atomic(path, contents)
    }
    fn remove_file(&self, path: &str) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, dir: &str) -> io::Result<()> {
        self.inner.remove_dir_all(dir)
    }
    fn sync_dir(&self, dir: &str) -> BoxFuture<'_, io::Result<()>> {
        self.inner.sync_dir(dir)
    }
    fn space(&self) -> io::Result<DiskSpace> {
        self.inner.space()
    }
}

impl Segment for SyncCountingSegment {
    fn path(&self) -> &str {
        self.inner.path()
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, data)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn sync(&self, range: Range<u64>) -> BoxFuture<'static, io::Result<()>> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        if self.fail_syncs.load(Ordering::SeqCst) {
            return futures::future::ready(Err(io::Error::other("injected EIO"))).boxed();
        }
        self.inner.sync(range)
    }
}

fn memory_disk() -> (Arc<MemoryDisk>, SharedDisk) {
    MemoryDisk::shared()
}

fn tiny_config(slots: u32, entries: u32) -> IndexConfig {
    IndexConfig {
        max_hash_slot_num: slots,
        max_index_num: entries,
        max_msgs_num_batch: 64,
    }
}

fn service(disk: &SharedDisk, clock: &Arc<ManualClock>, config: IndexConfig) -> IndexService {
    let clock: SharedClock = clock.clone();
    IndexService::new(disk.clone(), clock, "store", config).unwrap()
}

fn request(offset: i64, timestamp: i64, keys: &str, uniq_key: Option<&str>) -> IndexRequest {
    IndexRequest {
        topic: "TopicTest".into(),
        commit_log_offset: offset,
        store_timestamp: timestamp,
        keys: keys.into(),
        uniq_key: uniq_key.map(str::to_owned),
        transaction_type: 0,
    }
}

fn raw(disk: &SharedDisk, path: &str, size: u64, at: u64, len: usize) -> Vec<u8> {
    let segment = disk.open_segment(path, size).unwrap();
    let mut buf = vec![0u8; len];
    segment.read_at(at, &mut buf).unwrap();
    buf
}

// ---- hashing and names ----

#[test]
fn java_string_hash_matches_java_over_utf16() {
    assert_eq!(java_string_hash(""), 0);
    assert_eq!(java_string_hash("hello"), 99_162_322);
    assert_eq!(java_string_hash("TopicTest#OrderID188"), -1_231_271_670);
    // A character outside the BMP counts as its two surrogates, 0xD83D and 0xDE00.
    assert_eq!(java_string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
    assert_eq!(java_string_hash("é"), 233);
    assert_eq!(java_string_hash("Aa"), java_string_hash("BB"));
}

proptest::proptest! {
    /// Hashing a topic and a key as one string continues the topic's hash over `#` and the
    /// key: the same as hashing the built `topic#key`, multi-byte characters included.
    #[test]
    fn a_topic_and_key_hash_as_their_built_key(topic in "\\PC{0,12}", key in "\\PC{0,12}") {
        proptest::prop_assert_eq!(
            topic_key_hash(&topic, &key),
            index_key_hash(&build_key(&topic, &key))
        );
    }
}

#[test]
fn index_key_hash_is_abs_with_min_value_mapped_to_zero() {
    assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
    assert_eq!(index_key_hash("polygenelubricants"), 0);
    assert_eq!(index_key_hash("TopicTest#OrderID188"), 1_231_271_670);
    assert_eq!(index_key_hash("hello"), 99_162_322);
}

#[test]
fn file_names_are_utc_civil_times_to_the_millisecond() {
    assert_eq!(index_file_name(0), "19700101000000000");
    assert_eq!(index_file_name(1_700_000_000_000), "20231114221320000");
    assert_eq!(index_file_name(951_782_400_000), "20000229000000000");
    assert_eq!(index_file_name(951_782_400_000 - 1), "20000228235959999");
    assert_eq!(index_file_name(4_102_444_799_999), "20991231235959999");
    assert_eq!(index_file_name(-1), "19691231235959999");
    assert_eq!(index_file_name(1_709_210_096_789), "20240229123456789");
    // Extreme clocks format without panicking.
    let _ = index_file_name(i64::MIN);
    let _ = index_file_name(i64::MAX);
}

#[test]
fn file_names_parse_back_and_reject_non_dates() {
    assert_eq!(
        parse_index_file_name("20231114221320000"),
        Some(1_700_000_000_000)
    );
    assert_eq!(
        parse_index_file_name("20000229000000000"),
        Some(951_782_400_000)
    );
    for bad in [
        "19000229000000000", // not a leap year
        "20231314221320000", // month 13
        "20231100221320000", // day 0
        "20231114241320000", // hour 24
        "20231114226020000", // minute 60
        "2023111422132000",  // 16 digits
        "2023111422132000a",
        "+0231114221320000",
        "abort",
        "",
    ] {
        assert_eq!(parse_index_file_name(bad), None, "{bad}");
    }
}

proptest! {
    #[test]
    fn file_names_round_trip_for_years_1970_to_9999(ms in 0i64..253_402_300_800_000) {
        let name = index_file_name(ms);
        prop_assert_eq!(name.len(), 17);
        prop_assert_eq!(parse_index_file_name(&name), Some(ms));
    }

    #[test]
    fn file_names_sort_as_their_times(a in 0i64..253_402_300_800_000, b in 0i64..253_402_300_800_000) {
        prop_assert_eq!(a.cmp(&b), index_file_name(a).cmp(&index_file_name(b)));
    }
}

// ---- header ----

#[test]
fn header_encodes_big_endian_in_upstream_field_order() {
    let header = IndexHeader {
        begin_timestamp: 0x0102_0304_0506_0708,
        end_timestamp: 0x1112_1314_1516_1718,
        begin_phy_offset: 0x2122_2324_2526_2728,
        end_phy_offset: 0x3132_3334_3536_3738,
        hash_slot_count: 0x4142_4344,
        index_count: 0x5152_5354,
    };
    let golden: [u8; 40] = [
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // beginTimestamp
        0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, // endTimestamp
        0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, // beginPhyOffset
        0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, // endPhyOffset
        0x41, 0x42, 0x43, 0x44, // hashSlotCount
        0x51, 0x52, 0x53, 0x54, // indexCount
    ];
    assert_eq!(header.encode(), golden);
    assert_eq!(IndexHeader::decode(&golden), header);
}

#[test]
fn header_of_a_never_flushed_file_reads_index_count_one() {
    assert_eq!(IndexHeader::decode(&[0; 40]), IndexHeader::default());
    assert_eq!(IndexHeader::default().index_count, 1);
    let mut negative = IndexHeader::default().encode();
    negative[36..40].copy_from_slice(&(-7i32).to_be_bytes());
    assert_eq!(IndexHeader::decode(&negative).index_count, 1);
}

// ---- one file ----

fn tiny_file(disk: &SharedDisk, slots: u32, entries: u32) -> IndexFile {
    IndexFile::create(disk, "store/index/f", slots, entries, 0, 0).unwrap()
}

#[test]
fn file_size_is_header_slots_and_entries() {
    let (_, disk) = memory_disk();
    let file = tiny_file(&disk, 3, 5);
    assert_eq!(file.size(), 40 + 3 * 4 + 5 * 20);
    assert_eq!(
        file_size(5_000_000, 20_000_000).unwrap(),
        420_000_040,
        "the production geometry"
    );
}

#[test]
fn put_key_writes_entry_slot_and_header_bytes() {
    let (_, disk) = memory_disk();
    let file = tiny_file(&disk, 1, 8);
    let size = file.size();
    assert!(file.put_key("TopicTest#OrderID188", 4096, T0).unwrap());
    assert!(file.put_key("TopicTest#hello", 8192, T0 + 2999).unwrap());

    let hash = index_key_hash("TopicTest#OrderID188");
    let mut entry1 = Vec::new();
    entry1.extend_from_slice(&hash.to_be_bytes());
    entry1.extend_from_slice(&4096i64.to_be_bytes());
    entry1.extend_from_slice(&0i32.to_be_bytes()); // first entry: beginTimestamp was 0
    entry1.extend_from_slice(&0i32.to_be_bytes()); // end of chain
    let entries_at = 40 + 4;
    assert_eq!(
        raw(&disk, "store/index/f", size, entries_at + 20, 20),
        entry1
    );
    assert_eq!(
        raw(&disk, "store/index/f", size, entries_at, 20),
        vec![0; 20],
        "entry 0 unused"
    );

    let mut entry2 = Vec::new();
    entry2.extend_from_slice(&index_key_hash("TopicTest#hello").to_be_bytes());
    entry2.extend_from_slice(&8192i64.to_be_bytes());
    entry2.extend_from_slice(&2i32.to_be_bytes()); // 2.999 s, truncated to seconds
    entry2.extend_from_slice(&1i32.to_be_bytes()); // the single slot's previous head
    assert_eq!(
        raw(&disk, "store/index/f", size, entries_at + 40, 20),
        entry2
    );
    assert_eq!(raw(&disk, "store/index/f", size, 40, 4), 2i32.to_be_bytes());

    let header = IndexHeader {
        begin_timestamp: T0,
        end_timestamp: T0 + 2999,
        begin_phy_offset: 4096,
        end_phy_offset: 8192,
        hash_slot_count: 2,
        index_count: 3,
    };
    assert_eq!(file.header(), header);
    assert_eq!(raw(&disk, "store/index/f", size, 0, 40), header.encode());
    file.check_invariants();
}

#[test]
fn colliding_keys_chain_through_one_slot_newest_first() {
    let (_, disk) = memory_disk();
    let file = tiny_file(&disk, 2, 32);
    let keys = ["T#a", "T#b", "T#c", "T#d"];
    for round in 0..4i64 {
        for (k, key) in keys.iter().enumerate() {
            let offset = round * 1000 + k as i64;
            assert!(file.put_key(key, offset, T0 + offset).unwrap());
        }
    }
    for (k, key) in keys.iter().enumerate() {
        let k = k as i64;
        assert_eq!(
            file.select_phy_offsets(key, 10, 0, i64::MAX).unwrap(),
            vec![3000 + k, 2000 + k, 1000 + k, k],
            "{key}"
        );
    }
    assert!(
        file.select_phy_offsets("T#zz", 10, 0, i64::MAX)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        file.header().hash_slot_count,
        16,
        "counted per entry, not per slot"
    );
    file.check_invariants();
}

#[test]
fn keys_with_equal_hashes_are_both_candidates() {
    let (_, disk) = memory_disk();
    let file = tiny_file(&disk, 16, 8);
    file.put_key("T#Aa", 1, T0).unwrap();
    file.put_key("T#BB", 2, T0).unwrap();
    assert_eq!(
        file.select_phy_offsets("T#Aa", 10, 0, i64::MAX).unwrap(),
        vec![2, 1]
    );
}

#[test]
fn select_filters_on_whole_seconds_and_stops_at_an_older_entry() {
    let (_, disk) = memory_disk();
    let file = tiny_file(&disk, 1, 8);
    file.put_key("T#k", 10, T0).unwrap(); // read back as T0
    file.put_key("T#k", 20, T0 + 1500).unwrap(); // read back as T0 + 1000
    file.put_key("T#k", 30, T0 + 3000).unwrap(); // read back as T0 + 3000
    let select = |begin, end| file.select_phy_offsets("T#k", 10, begin, end).unwrap();
    assert_eq!(select(T0 + 1001, T0 + 3000), vec![30]);
    assert_eq!(select(T0 + 1000, T0 + 2000), vec![20]);
    assert_eq!(select(T0 + 1500, T0 + 1500), Vec::<i64>::new());
    assert_eq!(select(T0, T0 + 999), vec![10]);
    assert_eq!(select(0, T0 - 1), Vec::<i64>::new());
    assert_eq!(select(T0 + 3001, i64::MAX), Vec::<i64>::new());

    // Store times out of order: the walk stops at the first entry older than `begin`,
    // missing an even older-inserted entry that is in the window, as upstream does.
    file.put_key("T#k", 40, T0 - 5000).unwrap(); // clamped to timeDiff 0: T0
    assert_eq!(select(T0 + 1000, i64::MAX), Vec::<i64>::new());
    assert_eq!(select(T0, i64::MAX), vec![40, 30, 20, 10]);
}

#[test]
fn select_stops_at_max_num() {
    let (_, disk) = memory_disk();
    let file = tiny_file(&disk, 4, 16);
    for offset in 0..10 {
        file.put_key("T#k", offset, T0).unwrap();
    }
    assert_eq!(
        file.select_phy_offsets("T#k", 3, 0, i64::MAX).unwrap(),
        vec![9, 8, 7]
    );
    assert!(
        file.select_phy_offsets("T#k", 0, 0, i64::MAX)
            .unwrap()
            .is_empty()
    );
    let mut so_far = vec![100, 200];
    file.select_phy_offsets_into(&mut so_far, "T#k", 3, 0, i64::MAX)
        .unwrap();
    assert_eq!(
        so_far,
        vec![100, 200, 9],
        "the cap counts what earlier files found"
    );
}

#[test]
fn put_key_refuses_when_full_and_changes_nothing() {
    let (_, disk) = memory_disk();
    let file = tiny_file(&disk, 2, 4);
    for offset in 0..3 {
        assert!(!file.is_full());
        assert!(file.put_key("T#k", offset, T0).unwrap());
    }
    assert!(file.is_full());
    let before = raw(&disk, "store/index/f", file.size(), 0, file.size() as usize);
    assert!(!file.put_key("T#k", 3, T0).unwrap());
    assert_eq!(
        raw(&disk, "store/index/f", file.size(), 0, file.size() as usize),
        before
    );
    assert_eq!(file.header().index_count, 4);
}

#[test]
fn time_diff_is_clamped_to_zero_and_int_max() {
    let (_, disk) = memory_disk();
    let file = tiny_file(&disk, 1, 8);
    let size = file.size();
    file.put_key("T#k", 1, T0).unwrap();
    file.put_key("T#k", 2, T0 - 10_000).unwrap();
    file.put_key("T#k", 3, i64::MAX).unwrap();
    let time_diff = |index: u64| {
        let bytes = raw(&disk, "store/index/f", size, 44 + index * 20 + 12, 4);
        i32::from_be_bytes(bytes.try_into().unwrap())
    };
    assert_eq!((time_diff(1), time_diff(2), time_diff(3)), (0, 0, i32::MAX));
}

#[test]
fn is_time_matched_follows_upstream() {
    let (_, disk) = memory_disk();
    let file = tiny_file(&disk, 1, 8);
    file.put_key("T#k", 1, 1000).unwrap();
    file.put_key("T#k", 2, 2000).unwrap();
    assert!(file.is_time_matched(500, 2500), "window covers the file");
    assert!(file.is_time_matched(1500, 3000), "begin inside");
    assert!(file.is_time_matched(0, 1000), "end on the first entry");
    assert!(file.is_time_matched(2000, 2000));
    assert!(!file.is_time_matched(0, 999));
    assert!(!file.is_time_matched(2001, 3000));
}

#[test]
fn a_file_following_a_full_one_is_seeded_with_its_end() {
    let (_, disk) = memory_disk();
    let file = IndexFile::create(&disk, "store/index/g", 1, 8, 5000, T0).unwrap();
    let size = file.size();
    let header = file.header();
    assert_eq!(
        (header.begin_phy_offset, header.end_phy_offset),
        (5000, 5000)
    );
    assert_eq!((header.begin_timestamp, header.end_timestamp), (T0, T0));
    let on_disk = raw(&disk, "store/index/g", size, 0, 40);
    assert_eq!(on_disk[..32], header.encode()[..32]);
    assert_eq!(
        on_disk[32..],
        [0; 8],
        "counts stay unwritten until the first entry"
    );

    // Upstream quirk: the first entry's timeDiff is taken against the seed, then the
    // begin time becomes the entry's own.
    file.put_key("T#k", 6000, T0 + 4000).unwrap();
    assert_eq!(file.header().begin_timestamp, T0 + 4000);
    assert_eq!(
        raw(&disk, "store/index/g", size, 44 + 20 + 12, 4),
        4i32.to_be_bytes()
    );
    assert!(
        file.select_phy_offsets("T#k", 4, T0 + 8000, T0 + 8000)
            .unwrap()
            == vec![6000]
    );
}

#[tokio::test]
async fn flush_writes_the_full_header_and_syncs() {
    let counting = SyncCountingDisk::new();
    let disk: SharedDisk = counting.clone();
    let file = tiny_file(&disk, 1, 4);
    file.flush().await.unwrap();
    assert_eq!(counting.syncs(), 1);
    let on_disk = raw(&disk, "store/index/f", file.size(), 0, 40);
    assert_eq!(
        on_disk,
        IndexHeader::default().encode(),
        "indexCount 1 is written"
    );
    counting.fail_syncs.store(true, Ordering::SeqCst);
    assert!(matches!(file.flush().await, Err(IndexError::Flush { .. })));
}

#[test]
fn create_and_open_check_their_preconditions() {
    let (_, disk) = memory_disk();
    for (slots, entries) in [(0, 8), (1, 1), (1, 0), (u32::MAX, 8), (1, u32::MAX)] {
        assert!(matches!(
            IndexFile::create(&disk, "store/index/x", slots, entries, 0, 0),
            Err(IndexError::InvalidGeometry { .. })
        ));
    }
    tiny_file(&disk, 1, 4);
    assert!(matches!(
        IndexFile::create(&disk, "store/index/f", 1, 4, 0, 0),
        Err(IndexError::AlreadyExists { .. })
    ));
    assert!(matches!(
        IndexFile::open(&disk, "store/index/none", 1, 4),
        Err(IndexError::NotFound { .. })
    ));
    match IndexFile::open(&disk, "store/index/f", 2, 4) {
        Err(IndexError::Io { source, .. }) => assert_eq!(source.kind(), io::ErrorKind::InvalidData),
        other => panic!("expected a size mismatch, got {other:?}"),
    }
}

// ---- the service ----

#[tokio::test]
async fn build_index_adds_uniq_key_then_each_key_of_keys() {
    let (_, disk) = memory_disk();
    let clock = ManualClock::at(T0);
    let index = service(&disk, &clock, tiny_config(4, 64));
    let outcome = index
        .build_index(&request(100, T0, " OrderA  OrderB ", Some("UNIQ1")))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        BuildIndexOutcome {
            keys_indexed: 3,
            index_msg_timestamp: None
        }
    );
    assert_eq!(
        disk.list_dir("store/index").unwrap(),
        vec![DirEntry {
            name: "20231114221320000".into(),
            is_dir: false
        }]
    );
    for key in ["UNIQ1", "OrderA", "OrderB"] {
        let found = index
            .query_offsets("TopicTest", key, 32, 0, i64::MAX)
            .unwrap();
        assert_eq!(
            found,
            QueryOffsetResult {
                phy_offsets: vec![100],
                index_last_update_timestamp: T0,
                index_last_update_phyoffset: 100,
            },
            "{key}"
        );
    }
    assert!(
        index
            .query_offsets("OtherTopic", "OrderA", 32, 0, i64::MAX)
            .unwrap()
            .phy_offsets
            .is_empty()
    );
    let keyless = index
        .build_index(&request(200, T0 + 1, "", None))
        .await
        .unwrap();
    assert_eq!(keyless.keys_indexed, 0);
    index.check_invariants();
}

#[tokio::test]
async fn build_index_skips_rollback_records_but_indexes_prepared_ones() {
    let (_, disk) = memory_disk();
    let clock = ManualClock::at(T0);
    let index = service(&disk, &clock, tiny_config(4, 64));
    let mut prepared = request(100, T0, "K", None);
    prepared.transaction_type = 0x4;
    let mut rollback = request(200, T0, "K", None);
    rollback.transaction_type = TRANSACTION_ROLLBACK_TYPE;
    let mut commit = request(300, T0, "K", None);
    commit.transaction_type = 0x8;
    assert_eq!(index.build_index(&prepared).await.unwrap().keys_indexed, 1);
    assert_eq!(index.build_index(&rollback).await.unwrap().keys_indexed, 0);
    assert_eq!(index.build_index(&commit).await.unwrap().keys_indexed, 1);
    assert_eq!(
        index
            .query_offsets("TopicTest", "K", 32, 0, i64::MAX)
            .unwrap()
            .phy_offsets,
        vec![300, 100]
    );
}

#[tokio::test]
async fn build_index_skips_records_below_the_newest_end_offset() {
    let (_, disk) = memory_disk();
    let clock = ManualClock::at(T0);
    let index = service(&disk, &clock, tiny_config(4, 64));
    index
        .build_index(&request(500, T0, "K", None))
        .await
        .unwrap();
    assert_eq!(
        index
            .build_index(&request(499, T0, "K", None))
            .await
            .unwrap()
            .keys_indexed,
        0
    );
    // The record at the end offset itself is indexed again (upstream compares with `<`).
    assert_eq!(
        index
            .build_index(&request(500, T0, "K", None))
            .await
            .unwrap()
            .keys_indexed,
        1
    );
    assert_eq!(
        index
            .query_offsets("TopicTest", "K", 32, 0, i64::MAX)
            .unwrap()
            .phy_offsets,
        vec![500, 500]
    );
}

/// Fills `index` (3 entries per file) with one keyed record per step: offset `100 * i`,
/// store time `T0 + 10_000 * i`, key `K<i % 2>`.
async fn fill(index: &IndexService, range: Range<i64>) -> Vec<BuildIndexOutcome> {
    let mut outcomes = Vec::new();
    for i in range {
        let key = format!("K{}", i % 2);
        outcomes.push(
            index
                .build_index(&request(100 * i, T0 + 10_000 * i, &key, None))
                .await
                .unwrap(),
        );
    }
    outcomes
}

#[tokio::test]
async fn a_full_file_rolls_over_flushes_and_reports_its_end_time() {
    let counting = SyncCountingDisk::new();
    let disk: SharedDisk = counting.clone();
    let clock = ManualClock::at(T0);
    let index = service(&disk, &clock, tiny_config(2, 4));
    let outcomes = fill(&index, 0..3).await;
    assert!(outcomes.iter().all(|o| o.index_msg_timestamp.is_none()));
    assert_eq!(index.index_files().len(), 1);
    assert!(index.index_files()[0].is_full());
    assert_eq!(counting.syncs(), 0);

    // The fourth record does not fit: a new file, named one ms later since the clock has
    // not moved, takes it; the full one is flushed and its end time reported.
    let outcome = fill(&index, 3..4).await;
    assert_eq!(
        outcome,
        vec![BuildIndexOutcome {
            keys_indexed: 1,
            index_msg_timestamp: Some(T0 + 20_000)
        }]
    );
    assert_eq!(counting.syncs(), 1);
    let files = index.index_files();
    assert_eq!(
        files
            .iter()
            .map(|f| f.name().to_owned())
            .collect::<Vec<_>>(),
        vec!["20231114221320000", "20231114221320001"]
    );
    let header = files[1].header();
    assert_eq!(
        (header.begin_phy_offset, header.begin_timestamp),
        (300, T0 + 30_000)
    );
    assert_eq!(header.index_count, 2);
    index.check_invariants();

    // Both files answer; the newest first.
    let found = index
        .query_offsets("TopicTest", "K1", 32, 0, i64::MAX)
        .unwrap();
    assert_eq!(found.phy_offsets, vec![300, 100]);
    assert_eq!(
        (
            found.index_last_update_timestamp,
            found.index_last_update_phyoffset
        ),
        (T0 + 30_000, 300)
    );
}

#[tokio::test]
async fn a_failed_flush_of_a_full_file_is_reported_and_does_not_move_the_checkpoint() {
    let counting = SyncCountingDisk::new();
    let disk: SharedDisk = counting.clone();
    let clock = ManualClock::at(T0);
    let index = service(&disk, &clock, tiny_config(2, 4));
    fill(&index, 0..3).await;
    counting.fail_syncs.store(true, Ordering::SeqCst);
    let result = index
        .build_index(&request(300, T0 + 30_000, "K", None))
        .await;
    assert!(
        matches!(result, Err(IndexError::Flush { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn queries_span_files_newest_first_within_the_window_and_the_batch_cap() {
    let (_, disk) = memory_disk();
    let clock = ManualClock::at(T0);
    let mut config = tiny_config(2, 4);
    config.max_msgs_num_batch = 4;
    let index = service(&disk, &clock, config);
    for i in 0..12 {
        clock.set(T0 + i);
        fill(&index, i..i + 1).await;
    }
    assert_eq!(index.index_files().len(), 4);
    let all = |key, max, begin, end| {
        index
            .query_offsets("TopicTest", key, max, begin, end)
            .unwrap()
            .phy_offsets
    };
    assert_eq!(
        all("K0", 32, 0, i64::MAX),
        vec![1000, 800, 600, 400],
        "capped by maxMsgsNumBatch"
    );
    assert_eq!(all("K0", 2, 0, i64::MAX), vec![1000, 800]);
    assert_eq!(all("K1", 3, 0, i64::MAX), vec![1100, 900, 700]);
    // Records 3..=7 stored at T0 + 30 s ..= T0 + 70 s.
    assert_eq!(all("K1", 32, T0 + 30_000, T0 + 70_000), vec![700, 500, 300]);
    assert_eq!(all("K0", 32, T0 + 30_000, T0 + 70_000), vec![600, 400]);
}

#[tokio::test]
async fn a_new_service_over_the_same_disk_answers_the_same_queries() {
    let (_, disk) = memory_disk();
    let clock = ManualClock::at(T0);
    let index = service(&disk, &clock, tiny_config(2, 4));
    fill(&index, 0..8).await;
    index.flush_all().await.unwrap();
    let before: Vec<_> = ["K0", "K1"]
        .iter()
        .map(|k| {
            index
                .query_offsets("TopicTest", k, 32, 0, i64::MAX)
                .unwrap()
        })
        .collect();
    drop(index);

    let reopened = service(&disk, &clock, tiny_config(2, 4));
    let report = reopened.load(true, 0).await.unwrap();
    assert_eq!(
        report,
        IndexLoadReport {
            loaded: 3,
            pruned: 0,
            skipped: 0
        }
    );
    reopened.check_invariants();
    let after: Vec<_> = ["K0", "K1"]
        .iter()
        .map(|k| {
            reopened
                .query_offsets("TopicTest", k, 32, 0, i64::MAX)
                .unwrap()
        })
        .collect();
    assert_eq!(before, after);
    assert_eq!(after[0].phy_offsets, vec![600, 400, 200, 0]);

    // Indexing carries on in the loaded last file, and skips what it already holds.
    assert_eq!(
        reopened
            .build_index(&request(600, T0 + 60_000, "K0", None))
            .await
            .unwrap()
            .keys_indexed,
        0
    );
    fill(&reopened, 8..9).await;
    assert_eq!(reopened.index_files().len(), 3);
    reopened.check_invariants();
}

#[tokio::test]
async fn abnormal_exit_deletes_files_newer_than_the_checkpoint_and_keeps_older() {
    let (memory, disk) = memory_disk();
    let clock = ManualClock::at(T0);
    let index = service(&disk, &clock, tiny_config(2, 4));
    let outcomes = fill(&index, 0..8).await;
    let checkpoint = outcomes
        .iter()
        .filter_map(|o| o.index_msg_timestamp)
        .next()
        .unwrap();
    assert_eq!(checkpoint, T0 + 20_000, "the first full file's end");
    let names: Vec<String> = index
        .index_files()
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    drop(index);

    let reopened = service(&disk, &clock, tiny_config(2, 4));
    let report = reopened.load(false, checkpoint).await.unwrap();
    assert_eq!(
        report,
        IndexLoadReport {
            loaded: 1,
            pruned: 2,
            skipped: 0
        }
    );
    assert_eq!(
        memory.file_paths(),
        vec![format!("store/index/{}", names[0])],
        "newer files are gone from the disk"
    );
    assert_eq!(
        reopened
            .query_offsets("TopicTest", "K0", 32, 0, i64::MAX)
            .unwrap()
            .phy_offsets,
        vec![200, 0]
    );
    // Re-dispatched records build a new file seeded from the kept one.
    fill(&reopened, 3..4).await;
    assert_eq!(reopened.index_files().len(), 2);
    reopened.check_invariants();
}

#[tokio::test]
async fn a_normal_exit_keeps_every_file_whatever_the_checkpoint() {
    let (_, disk) = memory_disk();
    let clock = ManualClock::at(T0);
    let index = service(&disk, &clock, tiny_config(2, 4));
    fill(&index, 0..8).await;
    let reopened = service(&disk, &clock, tiny_config(2, 4));
    assert_eq!(reopened.load(true, 0).await.unwrap().loaded, 3);
}

#[tokio::test]
async fn load_skips_names_that_are_not_index_files() {
    let (_, disk) = memory_disk();
    let clock = ManualClock::at(T0);
    let index = service(&disk, &clock, tiny_config(2, 4));
    fill(&index, 0..2).await;
    disk.open_segment("store/index/notes.txt", 3).unwrap();
    disk.create_dir_all("store/index/sub").unwrap();
    let reopened = service(&disk, &clock, tiny_config(2, 4));
    assert_eq!(
        reopened.load(true, 0).await.unwrap(),
        IndexLoadReport {
            loaded: 1,
            pruned: 0,
            skipped: 1
        }
    );
}

#[tokio::test]
async fn load_fails_on_an_index_file_of_another_size() {
    let (_, disk) = memory_disk();
    let clock = ManualClock::at(T0);
    disk.open_segment("store/index/20231114221320000", 100)
        .unwrap();
    let index = service(&disk, &clock, tiny_config(2, 4));
    assert!(matches!(
        index.load(true, 0).await,
        Err(IndexError::Io { .. })
    ));
}

#[tokio::test]
async fn delete_expired_removes_old_files_but_always_keeps_the_newest() {
    let (memory, disk) = memory_disk();
    let clock = ManualClock::at(T0);
    let index = service(&disk, &clock, tiny_config(2, 4));
    fill(&index, 0..8).await; // files end at offsets 200, 500, 700
    assert_eq!(index.delete_expired(200).await.unwrap(), 0);
    assert_eq!(index.delete_expired(201).await.unwrap(), 1);
    assert_eq!(index.index_files().len(), 2);
    assert_eq!(index.delete_expired(i64::MAX).await.unwrap(), 1);
    assert_eq!(index.index_files().len(), 1);
    assert_eq!(memory.file_paths().len(), 1);
    assert_eq!(index.index_files()[0].end_phy_offset(), 700);
    index.check_invariants();
}

#[tokio::test]
async fn a_clock_stepping_back_still_names_new_files_after_old_ones() {
    let (_, disk) = memory_disk();
    let clock = ManualClock::at(T0);
    let index = service(&disk, &clock, tiny_config(2, 4));
    fill(&index, 0..3).await;
    clock.set(T0 - 86_400_000);
    fill(&index, 3..4).await;
    let names: Vec<String> = index
        .index_files()
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    assert_eq!(names, vec!["20231114221320000", "20231114221320001"]);
    index.check_invariants();
}

#[test]
fn service_rejects_an_unusable_geometry() {
    let (_, disk) = memory_disk();
    let clock: SharedClock = ManualClock::at(T0);
    assert!(matches!(
        IndexService::new(disk, clock, "store", tiny_config(0, 4)),
        Err(IndexError::InvalidGeometry { .. })
    ));
}

#[test]
fn config_follows_the_store_config() {
    let config = IndexConfig::from_store_config(&MessageStoreConfig::default());
    assert_eq!(config, IndexConfig::default());
    assert_eq!(config.max_hash_slot_num, 5_000_000);
    assert_eq!(config.max_index_num, 20_000_000);
}

// ---- models ----

/// The select rules replayed over a plain list of puts, without chains or bytes.
#[derive(Debug, Default)]
struct ModelFile {
    slots: u32,
    capacity: usize,
    begin_timestamp: i64,
    /// (key hash, offset, time read back), oldest first.
    entries: Vec<(i32, i64, i64)>,
}

impl ModelFile {
    fn put(&mut self, key: &str, offset: i64, timestamp: i64) -> bool {
        if self.entries.len() >= self.capacity {
            return false;
        }
        let time_diff = if self.begin_timestamp <= 0 {
            0
        } else {
            ((timestamp - self.begin_timestamp) / 1000).clamp(0, i32::MAX.into())
        };
        if self.entries.is_empty() {
            self.begin_timestamp = timestamp;
        }
        self.entries.push((index_key_hash(key), offset, time_diff));
        true
    }

    fn select(&self, key: &str, max_num: usize, begin: i64, end: i64) -> Vec<i64> {
        let hash = index_key_hash(key);
        let slot = |h: i32| h as u32 % self.slots;
        let mut out = Vec::new();
        for &(entry_hash, offset, time_diff) in self.entries.iter().rev() {
            if slot(entry_hash) != slot(hash) {
                continue;
            }
            if out.len() >= max_num {
                break;
            }
            let time_read = self.begin_timestamp + time_diff * 1000;
            if entry_hash == hash && (begin..=end).contains(&time_read) {
                out.push(offset);
            }
            if time_read < begin {
                break;
            }
        }
        out
    }
}

fn key_name(k: u8) -> String {
    format!("TopicTest#key-{k}")
}

proptest! {
    #[test]
    fn select_matches_a_model_of_the_chain_rules(
        slots in 1u32..5,
        index_num in 2u32..24,
        puts in prop::collection::vec((0u8..6, 0i64..1_000_000_000, 0i64..30_000), 0..30),
        queries in prop::collection::vec((0u8..7, 0i64..32_000, 0i64..32_000, 0usize..8), 1..8),
    ) {
        let (_, disk) = memory_disk();
        let file = tiny_file(&disk, slots, index_num);
        let mut model = ModelFile { slots, capacity: index_num as usize - 1, ..ModelFile::default() };
        for (k, offset, at) in &puts {
            let key = key_name(*k);
            prop_assert_eq!(file.put_key(&key, *offset, T0 + at).unwrap(), model.put(&key, *offset, T0 + at));
        }
        file.check_invariants();
        for (k, a, b, max_num) in &queries {
            let (begin, end) = (T0 + a.min(b), T0 + a.max(b));
            let key = key_name(*k);
            prop_assert_eq!(
                file.select_phy_offsets(&key, *max_num, begin, end).unwrap(),
                model.select(&key, *max_num, begin, end)
            );
        }
    }

    #[test]
    fn with_ordered_store_times_select_returns_exactly_the_matching_offsets(
        slots in 1u32..5,
        index_num in 2u32..24,
        mut puts in prop::collection::vec((0u8..6, 0i64..1_000_000_000, 0i64..30_000), 0..30),
        queries in prop::collection::vec((0u8..7, 0i64..32_000, 0i64..32_000, 0usize..8), 1..8),
    ) {
        puts.sort_by_key(|p| p.2);
        let (_, disk) = memory_disk();
        let file = tiny_file(&disk, slots, index_num);
        let stored: Vec<_> = puts.iter().take(index_num as usize - 1).collect();
        for (k, offset, at) in &puts {
            file.put_key(&key_name(*k), *offset, T0 + at).unwrap();
        }
        let first = stored.first().map_or(0, |p| p.2);
        for (k, a, b, max_num) in &queries {
            let (begin, end) = (T0 + a.min(b), T0 + a.max(b));
            // Naive: every stored put of this key whose time, truncated to whole seconds
            // after the first put, is in the window; newest first; at most max_num.
            let expected: Vec<i64> = stored
                .iter()
                .rev()
                .filter(|(pk, _, at)| {
                    let time_read = T0 + first + (at - first) / 1000 * 1000;
                    pk == k && (begin..=end).contains(&time_read)
                })
                .map(|(_, offset, _)| *offset)
                .take(*max_num)
                .collect();
            prop_assert_eq!(file.select_phy_offsets(&key_name(*k), *max_num, begin, end).unwrap(), expected);
        }
    }

    #[test]
    fn any_file_contents_open_select_and_put_without_panicking(
        slots in 1u32..6,
        index_num in 2u32..12,
        seed_bytes in prop::collection::vec(any::<u8>(), 0..400),
        header in prop::array::uniform32(any::<u8>()),
        counts in (any::<i32>(), any::<i32>()),
        keys in prop::collection::vec((0u8..8, any::<i64>(), any::<i64>(), any::<i64>(), 0usize..64), 1..8),
        checkpoint in any::<i64>(),
    ) {
        let (_, disk) = memory_disk();
        let size = file_size(slots, index_num).unwrap();
        let path = "store/index/20231114221320000";
        let segment = disk.open_segment(path, size).unwrap();
        let mut bytes: Vec<u8> = seed_bytes.iter().copied().cycle().take(size as usize).collect();
        if bytes.is_empty() {
            bytes = vec![0xFF; size as usize];
        }
        bytes[..32].copy_from_slice(&header);
        bytes[32..36].copy_from_slice(&counts.0.to_be_bytes());
        bytes[36..40].copy_from_slice(&counts.1.to_be_bytes());
        segment.write_at(0, &bytes).unwrap();

        let _ = IndexHeader::decode(&bytes[..40].try_into().unwrap());
        let file = IndexFile::open(&disk, path, slots, index_num).unwrap();
        for (k, offset, begin, end, max_num) in &keys {
            let key = key_name(*k);
            let _ = file.select_phy_offsets(&key, *max_num, *begin, *end).unwrap();
            let _ = file.is_time_matched(*begin, *end);
            let _ = file.put_key(&key, *offset, *begin).unwrap();
            let _ = file.is_full();
        }
        drop(file);

        let clock = ManualClock::at(T0 + 1);
        let index = service(&disk, &clock, tiny_config(slots, index_num));
        futures::executor::block_on(async {
            index.load(checkpoint % 2 == 0, checkpoint).await.unwrap();
            for (k, offset, begin, end, max_num) in &keys {
                let key = format!("key-{k}");
                let _ = index.query_offsets("TopicTest", &key, *max_num, *begin, *end).unwrap();
                let _ = index.build_index(&request(*offset, *begin, &key, None)).await.unwrap();
            }
            index.delete_expired(checkpoint).await.unwrap();
        });
    }
}

#[test]
fn stored_keys_join_topic_and_key_with_a_hash() {
    assert_eq!(build_key("TopicA", "order-1"), "TopicA#order-1");
    assert_eq!(build_key("T", ""), "T#");
}

#[test]
fn index_files_are_random_access_when_created_and_when_opened() {
    let (memory, disk) = memory_disk();
    drop(IndexFile::create(&disk, "store/index/f", 4, 8, 0, 0).unwrap());
    assert!(memory.is_random_access("store/index/f"));
    let (memory, disk) = memory_disk();
    disk.open_segment("store/index/f", file_size(4, 8).unwrap())
        .unwrap();
    assert!(!memory.is_random_access("store/index/f"));
    IndexFile::open(&disk, "store/index/f", 4, 8).unwrap();
    assert!(memory.is_random_access("store/index/f"));
}

#[test]
fn a_new_index_file_prepares_its_slots_and_keeps_its_entries_a_chunk_ahead() {
    let (memory, disk) = memory_disk();
    // The slots end 2,264 bytes before the first chunk boundary: entry 113 (entries count
    // from 1) is the first to reach past it.
    let (slots, entries) = (1_048_000, 300_000);
    let size = file_size(slots, entries).unwrap();
    let file = IndexFile::create(&disk, "store/index/f", slots, entries, 0, 0).unwrap();
    let chunk = PREFAULT_CHUNK;
    let requests = memory.prefault_requests("store/index/f");
    assert_eq!(
        (requests.len(), requests.first()),
        (1, Some(&(0..2 * chunk))),
        "the header, the slots and the first two chunks of entries"
    );
    for i in 1..=112 {
        assert!(file.put_key(&format!("T#k{i}"), i, 1_000).unwrap());
    }
    assert_eq!(memory.prefault_requests("store/index/f").len(), 1);
    assert!(file.put_key("T#k113", 113, 1_000).unwrap());
    assert_eq!(
        memory.prefault_requests("store/index/f"),
        [0..2 * chunk, 2 * chunk..size],
        "entering the second chunk asks for the third (the file's short last one)"
    );
}
