//! Metadata files: Java-written text (fastjson pretty format, unquoted integer keys, unknown
//! fields) read into our shapes, our output pinned by golden text, persist/load round trips
//! with the `.bak` fallback over the in-memory test disk, and the integer-key pre-pass under
//! proptest.

use std::io::{self, ErrorKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::BoxFuture;
use proptest::prelude::*;

use super::*;
use crate::disk::{DirEntry, DiskSpace, Segment};
use crate::protocol::{TopicConfig, TopicConfigSerializeWrapper, TopicFilterType};
use crate::store::test_disk::MemoryDisk;

const ROOT: &str = "store";

/// `text` with each leading group of four spaces turned into a tab and the surrounding blank
/// lines dropped: fastjson's pretty format indents with tabs, which are invisible in source.
fn tabbed(text: &str) -> String {
    text.trim_matches('\n')
        .lines()
        .map(|line| {
            let body = line.trim_start_matches(' ');
            let depth = (line.len() - body.len()) / 4;
            format!("{}{body}", "\t".repeat(depth))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn pretty(value: &impl Serialize) -> String {
    String::from_utf8(encode_pretty(value).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------
// Java-written files
// ---------------------------------------------------------------------------------------

/// `consumerOffset.json` as a 4.9 broker writes it: integer-keyed maps on one line, closed
/// on the next; entries in hash order. `dataVersion` is a 5.x field we do not know.
const JAVA_CONSUMER_OFFSET: &str = r#"
{
    "dataVersion":{
        "counter":7,
        "timestamp":1700000000000
    },
    "offsetTable":{
        "TopicTest@cg":{0:12,1:9,2:250,3:0
        },
        "%RETRY%cg@cg":{0:0
        },
        "TopicTest@cg_other":{1:7
        }
    }
}
"#;

/// `delayOffset.json` as `ScheduleMessageService.persist` writes it.
const JAVA_DELAY_OFFSET: &str = r#"
{
    "offsetTable":{1:3,2:17,3:0,18:5
    }
}
"#;

/// `subscriptionGroup.json`: a 4.9 entry with every field, a 5.x entry with fields we do not
/// know, and a hand-edited entry with missing fields and a number as a string.
const JAVA_SUBSCRIPTION_GROUP: &str = r#"
{
    "dataVersion":{
        "counter":2,
        "timestamp":1700000000123
    },
    "subscriptionGroupTable":{
        "cg":{
            "brokerId":0,
            "consumeBroadcastEnable":true,
            "consumeEnable":false,
            "consumeFromMinEnable":true,
            "groupName":"cg",
            "notifyConsumerIdsChangedEnable":false,
            "retryMaxTimes":3,
            "retryQueueNums":2,
            "whichBrokerWhenConsumeSlowly":1
        },
        "cg5":{
            "attributes":{},
            "brokerId":1,
            "consumeBroadcastEnable":false,
            "consumeEnable":true,
            "consumeFromMinEnable":false,
            "consumeMessageOrderly":false,
            "consumeTimeoutMinute":15,
            "groupName":"cg5",
            "groupRetryPolicy":{
                "type":"CUSTOMIZED"
            },
            "groupSysFlag":0,
            "notifyConsumerIdsChangedEnable":true,
            "retryMaxTimes":16,
            "retryQueueNums":1,
            "subscriptionDataSet":[],
            "whichBrokerWhenConsumeSlowly":2
        },
        "edited":{
            "groupName":"edited",
            "retryMaxTimes":"5"
        }
    }
}
"#;

/// `topics.json`: a TopicConfigSerializeWrapper; `attributes` and `topicQueueMappingInfoMap`
/// are 5.x fields we do not know.
const JAVA_TOPICS: &str = r#"
{
    "dataVersion":{
        "counter":5,
        "timestamp":1700000000456
    },
    "topicConfigTable":{
        "TopicTest":{
            "attributes":{},
            "order":false,
            "perm":6,
            "readQueueNums":4,
            "topicFilterType":"SINGLE_TAG",
            "topicName":"TopicTest",
            "topicSysFlag":0,
            "writeQueueNums":4
        },
        "%RETRY%cg":{
            "order":false,
            "perm":6,
            "readQueueNums":1,
            "topicFilterType":"MULTI_TAG",
            "topicName":"%RETRY%cg",
            "topicSysFlag":0,
            "writeQueueNums":1
        }
    },
    "topicQueueMappingInfoMap":{}
}
"#;

#[test]
fn java_consumer_offset_file_with_unquoted_keys_reads_into_the_offset_table() {
    let text = tabbed(JAVA_CONSUMER_OFFSET);
    assert!(
        text.contains("{0:12,1:9"),
        "the sample must carry bare keys"
    );
    assert!(serde_json::from_str::<ConsumerOffsetTable>(&text).is_err());

    let table: ConsumerOffsetTable = from_json_lenient(&text).unwrap();

    let expected = BTreeMap::from([
        ("%RETRY%cg@cg".to_owned(), BTreeMap::from([(0, 0)])),
        (
            "TopicTest@cg".to_owned(),
            BTreeMap::from([(0, 12), (1, 9), (2, 250), (3, 0)]),
        ),
        ("TopicTest@cg_other".to_owned(), BTreeMap::from([(1, 7)])),
    ]);
    assert_eq!(table.offset_table, expected);
    assert_eq!(table.query("cg", "TopicTest", 2), Some(250));
}

#[test]
fn java_delay_offset_file_reads_into_levels() {
    let table: DelayOffsetTable = from_json_lenient(&tabbed(JAVA_DELAY_OFFSET)).unwrap();
    assert_eq!(
        table.offset_table,
        BTreeMap::from([(1, 3), (2, 17), (3, 0), (18, 5)])
    );
    assert_eq!(table.offset(18), 5);
    assert_eq!(table.offset(4), 0, "a level never recorded starts at 0");
}

#[test]
fn java_subscription_group_file_reads_with_java_defaults_for_missing_fields() {
    let wrapper: SubscriptionGroupWrapper =
        from_json_lenient(&tabbed(JAVA_SUBSCRIPTION_GROUP)).unwrap();

    assert_eq!(
        wrapper.data_version,
        DataVersion {
            counter: 2,
            timestamp: 1_700_000_000_123
        }
    );
    assert_eq!(wrapper.subscription_group_table.len(), 3);
    assert_eq!(
        wrapper.subscription_group_table["cg"],
        SubscriptionGroupConfig {
            consume_enable: false,
            notify_consumer_ids_changed_enable: false,
            retry_max_times: 3,
            retry_queue_nums: 2,
            ..SubscriptionGroupConfig::new("cg")
        }
    );
    assert_eq!(
        wrapper.subscription_group_table["cg5"],
        SubscriptionGroupConfig {
            broker_id: 1,
            consume_broadcast_enable: false,
            consume_from_min_enable: false,
            which_broker_when_consume_slowly: 2,
            ..SubscriptionGroupConfig::new("cg5")
        }
    );
    assert_eq!(
        wrapper.subscription_group_table["edited"],
        SubscriptionGroupConfig {
            retry_max_times: 5,
            ..SubscriptionGroupConfig::new("edited")
        }
    );
}

#[test]
fn java_topics_file_reads_into_topic_config_serialize_wrapper() {
    let wrapper: TopicConfigSerializeWrapper = from_json_lenient(&tabbed(JAVA_TOPICS)).unwrap();

    assert_eq!(wrapper.data_version.counter, 5);
    assert_eq!(
        wrapper.topic_config_table["TopicTest"],
        TopicConfig::new("TopicTest", 4)
    );
    let retry = &wrapper.topic_config_table["%RETRY%cg"];
    assert_eq!(retry.topic_filter_type, TopicFilterType::MultiTag);
    assert_eq!((retry.read_queue_nums, retry.write_queue_nums), (1, 1));
}

#[test]
fn subscription_group_config_defaults_match_java() {
    let config = SubscriptionGroupConfig::new("cg");
    assert_eq!(config.group_name, "cg");
    assert!(config.consume_enable);
    assert!(config.consume_from_min_enable);
    assert!(config.consume_broadcast_enable);
    assert_eq!(config.retry_queue_nums, 1);
    assert_eq!(config.retry_max_times, 16);
    assert_eq!(config.broker_id, 0);
    assert_eq!(config.which_broker_when_consume_slowly, 1);
    assert!(config.notify_consumer_ids_changed_enable);
    let empty: SubscriptionGroupConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, SubscriptionGroupConfig::default());
}

// ---------------------------------------------------------------------------------------
// Our output
// ---------------------------------------------------------------------------------------

#[test]
fn consumer_offset_table_encodes_as_golden_text() {
    let mut table = ConsumerOffsetTable::default();
    table.commit("cg", "TopicTest", 1, 9);
    table.commit("cg", "TopicTest", 0, 12);
    table.commit("cg", "%RETRY%cg", 0, 0);
    let golden = r#"
{
    "offsetTable":{
        "%RETRY%cg@cg":{
            "0":0
        },
        "TopicTest@cg":{
            "0":12,
            "1":9
        }
    }
}
"#;
    assert_eq!(pretty(&table), tabbed(golden));
    assert_eq!(
        pretty(&ConsumerOffsetTable::default()),
        "{\n\t\"offsetTable\":{}\n}"
    );
    assert_eq!(
        String::from_utf8(crate::protocol::to_json(&table)).unwrap(),
        r#"{"offsetTable":{"%RETRY%cg@cg":{"0":0},"TopicTest@cg":{"0":12,"1":9}}}"#
    );
}

#[test]
fn delay_offset_table_encodes_as_golden_text() {
    let mut table = DelayOffsetTable::default();
    table.update(3, 0);
    table.update(1, 3);
    table.update(18, 5);
    let golden = r#"
{
    "offsetTable":{
        "1":3,
        "3":0,
        "18":5
    }
}
"#;
    assert_eq!(pretty(&table), tabbed(golden));
}

#[test]
fn subscription_group_wrapper_encodes_as_golden_text() {
    let mut wrapper = SubscriptionGroupWrapper {
        data_version: DataVersion {
            counter: 2,
            timestamp: 1_700_000_000_123,
        },
        ..SubscriptionGroupWrapper::default()
    };
    wrapper.subscription_group_table.insert(
        "cg".into(),
        SubscriptionGroupConfig {
            consume_enable: false,
            ..SubscriptionGroupConfig::new("cg")
        },
    );
    let golden = r#"
{
    "dataVersion":{
        "counter":2,
        "timestamp":1700000000123
    },
    "subscriptionGroupTable":{
        "cg":{
            "brokerId":0,
            "consumeBroadcastEnable":true,
            "consumeEnable":false,
            "consumeFromMinEnable":true,
            "groupName":"cg",
            "notifyConsumerIdsChangedEnable":true,
            "retryMaxTimes":16,
            "retryQueueNums":1,
            "whichBrokerWhenConsumeSlowly":1
        }
    }
}
"#;
    assert_eq!(pretty(&wrapper), tabbed(golden));
}

#[test]
fn topics_file_encodes_as_golden_text() {
    let mut wrapper = TopicConfigSerializeWrapper {
        data_version: DataVersion {
            counter: 5,
            timestamp: 1_700_000_000_456,
        },
        ..TopicConfigSerializeWrapper::default()
    };
    wrapper
        .topic_config_table
        .insert("TopicTest".into(), TopicConfig::new("TopicTest", 4));
    let golden = r#"
{
    "dataVersion":{
        "counter":5,
        "timestamp":1700000000456
    },
    "topicConfigTable":{
        "TopicTest":{
            "order":false,
            "perm":6,
            "readQueueNums":4,
            "topicFilterType":"SINGLE_TAG",
            "topicName":"TopicTest",
            "topicSysFlag":0,
            "writeQueueNums":4
        }
    }
}
"#;
    assert_eq!(pretty(&wrapper), tabbed(golden));
}

#[test]
fn config_paths_sit_under_the_store_root() {
    assert_eq!(
        config_path(ROOT, CONSUMER_OFFSET_FILE),
        "store/config/consumerOffset.json"
    );
    assert_eq!(config_path("", TOPICS_FILE), "config/topics.json");
    assert_eq!(
        config_path("store/", SUBSCRIPTION_GROUP_FILE),
        "store/config/subscriptionGroup.json"
    );
    assert_eq!(
        backup_path(&config_path(ROOT, DELAY_OFFSET_FILE)),
        "store/config/delayOffset.json.bak"
    );
}

// ---------------------------------------------------------------------------------------
// Offset-table helpers
// ---------------------------------------------------------------------------------------

#[test]
fn commit_then_query_answers_by_group_topic_and_queue() {
    let mut table = ConsumerOffsetTable::default();
    assert_eq!(table.commit("cg", "TopicA", 0, 10), None);
    assert_eq!(table.commit("cg", "TopicA", 0, 15), Some(10));
    assert_eq!(
        table.commit("cg", "TopicA", 0, 4),
        Some(15),
        "a reset is accepted"
    );
    table.commit("cg", "TopicA", 3, 7);
    table.commit("other", "TopicA", 0, 99);

    assert_eq!(table.query("cg", "TopicA", 0), Some(4));
    assert_eq!(table.query("cg", "TopicA", 1), None);
    assert_eq!(table.query("cg", "TopicB", 0), None);
    assert_eq!(
        table.queue_offsets("cg", "TopicA"),
        Some(&BTreeMap::from([(0, 4), (3, 7)]))
    );
    assert_eq!(table.queue_offsets("nobody", "TopicA"), None);
}

#[test]
fn topics_of_group_and_groups_of_topic_skip_keys_without_one_separator() {
    let mut table = ConsumerOffsetTable::default();
    table.commit("cg", "TopicA", 0, 1);
    table.commit("cg", "TopicB", 0, 1);
    table.commit("cg2", "TopicA", 0, 1);
    table
        .offset_table
        .insert("TopicA@cg@x".into(), BTreeMap::from([(0, 1)]));
    table
        .offset_table
        .insert("no-separator".into(), BTreeMap::new());

    assert_eq!(
        table.topics_of_group("cg"),
        BTreeSet::from(["TopicA", "TopicB"])
    );
    assert_eq!(
        table.groups_of_topic("TopicA"),
        BTreeSet::from(["cg", "cg2"])
    );
    assert_eq!(ConsumerOffsetTable::split_key("t@g"), Some(("t", "g")));
    assert_eq!(ConsumerOffsetTable::split_key("t@g@x"), None);
    assert_eq!(ConsumerOffsetTable::split_key("tg"), None);
}

#[test]
fn remove_group_removes_only_that_exact_group() {
    let mut table = ConsumerOffsetTable::default();
    table.commit("cg", "TopicA", 0, 1);
    table.commit("cg", "%RETRY%cg", 0, 1);
    table.commit("cg_other", "TopicA", 0, 1);
    table.commit("xcg", "TopicA", 0, 1);

    let removed = table.remove_group("cg");

    assert_eq!(removed, vec!["%RETRY%cg@cg", "TopicA@cg"]);
    assert_eq!(
        table.offset_table.keys().collect::<Vec<_>>(),
        vec!["TopicA@cg_other", "TopicA@xcg"]
    );
}

#[test]
fn remove_topic_removes_every_group_of_that_exact_topic() {
    let mut table = ConsumerOffsetTable::default();
    table.commit("cg", "TopicA", 0, 1);
    table.commit("cg2", "TopicA", 0, 1);
    table.commit("cg", "TopicAB", 0, 1);

    assert_eq!(
        table.remove_topic("TopicA"),
        vec!["TopicA@cg", "TopicA@cg2"]
    );
    assert_eq!(
        table.offset_table.keys().collect::<Vec<_>>(),
        vec!["TopicAB@cg"]
    );
}

#[test]
fn clone_offsets_copies_a_group_onto_another() {
    let mut table = ConsumerOffsetTable::default();
    table.commit("src", "TopicA", 0, 5);
    table.commit("src", "TopicA", 1, 6);
    table.commit("dest", "TopicA", 2, 1);

    table.clone_offsets("src", "dest", "TopicA");
    table.clone_offsets("missing", "dest2", "TopicA");

    assert_eq!(
        table.queue_offsets("dest", "TopicA"),
        Some(&BTreeMap::from([(0, 5), (1, 6)]))
    );
    assert_eq!(table.queue_offsets("dest2", "TopicA"), None);
}

// ---------------------------------------------------------------------------------------
// Load and persist
// ---------------------------------------------------------------------------------------

fn offsets_path() -> String {
    config_path(ROOT, CONSUMER_OFFSET_FILE)
}

fn sample_offsets() -> ConsumerOffsetTable {
    let mut table = ConsumerOffsetTable::default();
    table.commit("cg", "TopicTest", 0, 12);
    table.commit("cg", "TopicTest", 1, 9);
    table
}

fn read_text(disk: &MemoryDisk, path: &str) -> Option<String> {
    disk.read_file(path)
        .unwrap()
        .map(|bytes| String::from_utf8(bytes).unwrap())
}

#[tokio::test]
async fn persist_then_load_round_trips_every_shape() {
    let disk = MemoryDisk::new();

    let offsets = sample_offsets();
    let mut delay = DelayOffsetTable::default();
    delay.update(1, 3);
    delay.update(18, 5);
    let mut groups = SubscriptionGroupWrapper::default();
    groups
        .subscription_group_table
        .insert("cg".into(), SubscriptionGroupConfig::new("cg"));
    let mut topics = TopicConfigSerializeWrapper::default();
    topics
        .topic_config_table
        .insert("TopicTest".into(), TopicConfig::new("TopicTest", 4));

    let path = |name| config_path(ROOT, name);
    persist_json(&*disk, &path(CONSUMER_OFFSET_FILE), &offsets)
        .await
        .unwrap();
    persist_json(&*disk, &path(DELAY_OFFSET_FILE), &delay)
        .await
        .unwrap();
    persist_json(&*disk, &path(SUBSCRIPTION_GROUP_FILE), &groups)
        .await
        .unwrap();
    persist_json(&*disk, &path(TOPICS_FILE), &topics)
        .await
        .unwrap();

    assert_eq!(
        load_json(&*disk, &path(CONSUMER_OFFSET_FILE)).unwrap(),
        Some(offsets)
    );
    assert_eq!(
        load_json(&*disk, &path(DELAY_OFFSET_FILE)).unwrap(),
        Some(delay)
    );
    assert_eq!(
        load_json(&*disk, &path(SUBSCRIPTION_GROUP_FILE)).unwrap(),
        Some(groups)
    );
    assert_eq!(load_json(&*disk, &path(TOPICS_FILE)).unwrap(), Some(topics));
}

#[tokio::test]
async fn first_persist_writes_no_backup_and_the_next_keeps_the_previous_contents() {
    let disk = MemoryDisk::new();
    let path = offsets_path();
    let first = sample_offsets();
    let mut second = first.clone();
    second.commit("cg", "TopicTest", 0, 13);

    persist_json(&*disk, &path, &first).await.unwrap();
    assert_eq!(read_text(&disk, &backup_path(&path)), None);

    persist_json(&*disk, &path, &second).await.unwrap();
    assert_eq!(read_text(&disk, &path), Some(pretty(&second)));
    assert_eq!(read_text(&disk, &backup_path(&path)), Some(pretty(&first)));
    assert_eq!(
        disk.file_paths(),
        vec![path.clone(), backup_path(&path)],
        "no temporary files are left behind"
    );
}

#[test]
fn load_of_a_missing_file_without_backup_is_none() {
    let disk = MemoryDisk::new();
    let loaded: Option<ConsumerOffsetTable> = load_json(&*disk, &offsets_path()).unwrap();
    assert_eq!(loaded, None);
}

#[tokio::test]
async fn load_falls_back_to_the_backup_when_the_file_is_corrupt() {
    let disk = MemoryDisk::new();
    let path = offsets_path();
    let backup = sample_offsets();
    disk.write_file_atomic(&backup_path(&path), &encode_pretty(&backup).unwrap())
        .await
        .unwrap();

    for corrupt in [
        &b"{\"offsetTable\":{\"Topic"[..],
        b"",
        b"\xff\xfe{}",
        b"[1,2]",
    ] {
        disk.write_file_atomic(&path, corrupt).await.unwrap();
        let loaded: Option<ConsumerOffsetTable> = load_json(&*disk, &path).unwrap();
        assert_eq!(loaded.as_ref(), Some(&backup), "main file {corrupt:?}");
    }
}

#[tokio::test]
async fn load_falls_back_to_a_java_written_backup_when_the_file_is_missing() {
    // Java's string2File deletes the file before renaming the new one in: a crash there
    // leaves only the backup.
    let disk = MemoryDisk::new();
    let path = offsets_path();
    disk.write_file_atomic(&backup_path(&path), tabbed(JAVA_CONSUMER_OFFSET).as_bytes())
        .await
        .unwrap();

    let loaded: ConsumerOffsetTable = load_json(&*disk, &path).unwrap().unwrap();
    assert_eq!(loaded.query("cg", "TopicTest", 0), Some(12));
}

#[tokio::test]
async fn load_fails_naming_both_paths_when_file_and_backup_are_corrupt() {
    let disk = MemoryDisk::new();
    let path = offsets_path();
    disk.write_file_atomic(&path, b"{\"offsetTable\":{")
        .await
        .unwrap();
    disk.write_file_atomic(&backup_path(&path), b"")
        .await
        .unwrap();

    let error = load_json::<ConsumerOffsetTable>(&*disk, &path).unwrap_err();

    assert!(
        matches!(
            &error,
            MetadataError::Corrupt {
                problem: FileProblem::Malformed(_),
                backup_problem: FileProblem::Empty,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("store/config/consumerOffset.json is malformed"),
        "{message}"
    );
    assert!(
        message.contains("store/config/consumerOffset.json.bak is empty"),
        "{message}"
    );
}

#[tokio::test]
async fn load_fails_when_the_file_is_corrupt_and_there_is_no_backup() {
    let disk = MemoryDisk::new();
    let path = offsets_path();
    disk.write_file_atomic(&path, b"").await.unwrap();

    let error = load_json::<ConsumerOffsetTable>(&*disk, &path).unwrap_err();
    assert!(
        matches!(
            error,
            MetadataError::Corrupt {
                problem: FileProblem::Empty,
                backup_problem: FileProblem::Missing,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn load_fails_when_the_file_is_missing_and_the_backup_is_corrupt() {
    let disk = MemoryDisk::new();
    let path = offsets_path();
    disk.write_file_atomic(&backup_path(&path), b"garbage")
        .await
        .unwrap();

    let error = load_json::<ConsumerOffsetTable>(&*disk, &path).unwrap_err();
    assert!(
        matches!(
            error,
            MetadataError::Corrupt {
                problem: FileProblem::Missing,
                backup_problem: FileProblem::Malformed(_),
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn persist_over_a_corrupt_file_keeps_the_last_good_backup() {
    let disk = MemoryDisk::new();
    let path = offsets_path();
    let good = sample_offsets();
    disk.write_file_atomic(&backup_path(&path), &encode_pretty(&good).unwrap())
        .await
        .unwrap();
    disk.write_file_atomic(&path, b"{\"offsetTa").await.unwrap();

    let mut newer = good.clone();
    newer.commit("cg", "TopicTest", 0, 20);
    persist_json(&*disk, &path, &newer).await.unwrap();

    assert_eq!(read_text(&disk, &backup_path(&path)), Some(pretty(&good)));
    assert_eq!(read_text(&disk, &path), Some(pretty(&newer)));
}

#[tokio::test]
async fn persist_backs_up_a_java_written_file_as_it_was() {
    let disk = MemoryDisk::new();
    let path = offsets_path();
    let java = tabbed(JAVA_CONSUMER_OFFSET);
    disk.write_file_atomic(&path, java.as_bytes())
        .await
        .unwrap();

    persist_json(&*disk, &path, &sample_offsets())
        .await
        .unwrap();

    assert_eq!(read_text(&disk, &backup_path(&path)), Some(java));
}

/// A [`MemoryDisk`] whose small-file reads or atomic writes fail on demand.
#[derive(Debug, Default)]
struct FailingDisk {
    inner: Arc<MemoryDisk>,
    fail_reads: AtomicBool,
    fail_writes: AtomicBool,
}

fn injected() -> io::Error {
    io::Error::other("injected EIO")
}

impl Disk for FailingDisk {
    fn open_segment(&self, path: &str, size: u64) -> io::Result<Arc<dyn Segment>> {
        self.inner.open_segment(path, size)
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
        if self.fail_reads.load(Ordering::Relaxed) {
            return Err(injected());
        }
        self.inner.read_file(path)
    }

    fn write_file_atomic(&self, path: &str, contents: &[u8]) -> BoxFuture<'_, io::Result<()>> {
        if self.fail_writes.load(Ordering::Relaxed) {
            return Box::pin(futures::future::ready(Err(injected())));
        }
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

#[tokio::test]
async fn io_errors_are_reported_with_the_path_not_taken_for_corruption() {
    let disk = FailingDisk::default();
    let path = offsets_path();
    persist_json(&disk, &path, &sample_offsets()).await.unwrap();

    disk.fail_writes.store(true, Ordering::Relaxed);
    let error = persist_json(&disk, &path, &ConsumerOffsetTable::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, MetadataError::Write { path: failed, .. } if *failed == backup_path(&path)),
        "{error:?}"
    );
    assert_eq!(
        load_json(&disk, &path).unwrap(),
        Some(sample_offsets()),
        "a failed persist leaves the old contents"
    );

    disk.fail_reads.store(true, Ordering::Relaxed);
    let error = load_json::<ConsumerOffsetTable>(&disk, &path).unwrap_err();
    assert!(
        matches!(&error, MetadataError::Read { path: failed, source } if *failed == path && source.kind() == ErrorKind::Other),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_value_serde_json_cannot_encode_is_an_encode_error_and_writes_nothing() {
    let disk = MemoryDisk::new();
    let value = BTreeMap::from([((1, 2), 3)]);
    let error = persist_json(&*disk, &offsets_path(), &value)
        .await
        .unwrap_err();
    assert!(matches!(error, MetadataError::Encode { .. }), "{error:?}");
    assert!(disk.file_paths().is_empty());
}

// ---------------------------------------------------------------------------------------
// The integer-key pre-pass
// ---------------------------------------------------------------------------------------

#[test]
fn quote_integer_keys_quotes_bare_integer_keys_only() {
    let cases = [
        ("{0:12,1:9}", r#"{"0":12,"1":9}"#),
        ("{ -3 :1 ,\n\t42\t: 2}", "{ \"-3\" :1 ,\n\t\"42\"\t: 2}"),
        (
            r#"{"a":{7:1},"b":[1,2,{8:[3,4]}]}"#,
            r#"{"a":{"7":1},"b":[1,2,{"8":[3,4]}]}"#,
        ),
        ("[1,2,3]", "[1,2,3]"),
        ("{\"k\":1,2}", "{\"k\":1,2}"),
        ("{-:1,1.5:2,1e3:3}", "{-:1,1.5:2,1e3:3}"),
        ("", ""),
    ];
    for (input, expected) in cases {
        assert_eq!(quote_integer_keys(input), expected, "input {input:?}");
    }
}

#[test]
fn quote_integer_keys_never_touches_strings() {
    let untouched = [
        r#"{"k":"{0:1,2:3}"}"#,
        r#"{"{0:1":"x,5:y"}"#,
        r#"{"esc\"{0:1":"\\"}"#,
        r#"{"tail\\":{"0":1}}"#,
        r#"["unterminated {0:1"#,
    ];
    for text in untouched {
        assert!(
            matches!(quote_integer_keys(text), Cow::Borrowed(_)),
            "{text:?} changed"
        );
    }
    // After a string that ends in an escaped backslash, scanning resumes outside it.
    assert_eq!(quote_integer_keys(r#"{"a\\":{0:1}}"#), r#"{"a\\":{"0":1}}"#);
}

/// Strings rich in the characters the pre-pass looks at.
fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[{}\\[\\],:\"\\\\ \t\n0-9a-z.-]{0,40}",
        "[{,:0-9\" -]{0,40}",
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        tricky_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(tricky_string(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn any_offset_table() -> impl Strategy<Value = ConsumerOffsetTable> {
    prop::collection::btree_map(
        tricky_string(),
        prop::collection::btree_map(any::<i32>(), any::<i64>(), 0..5),
        0..5,
    )
    .prop_map(|offset_table| ConsumerOffsetTable { offset_table })
}

/// `table` as fastjson writes it: integer keys bare, pretty or compact.
fn fastjson_offsets(table: &ConsumerOffsetTable, pretty: bool) -> String {
    let (open, entry, close) = if pretty {
        ("{\n\t\"offsetTable\":{", "\n\t\t", "\n\t")
    } else {
        ("{\"offsetTable\":{", "", "")
    };
    let mut text = open.to_owned();
    for (index, (key, queues)) in table.offset_table.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        text.push_str(entry);
        text.push_str(&serde_json::to_string(key).unwrap());
        text.push_str(":{");
        let pairs: Vec<String> = queues.iter().map(|(q, o)| format!("{q}:{o}")).collect();
        text.push_str(&pairs.join(","));
        if !queues.is_empty() {
            text.push_str(entry);
        }
        text.push('}');
    }
    if !table.offset_table.is_empty() {
        text.push_str(close);
    }
    text.push('}');
    if pretty {
        text.push('\n');
    }
    text.push('}');
    text
}

#[test]
fn fastjson_rendering_helper_matches_the_java_sample_shape() {
    let table: ConsumerOffsetTable = from_json_lenient(&tabbed(JAVA_CONSUMER_OFFSET)).unwrap();
    let mut one = ConsumerOffsetTable::default();
    one.offset_table.insert(
        "TopicTest@cg".into(),
        table.offset_table["TopicTest@cg"].clone(),
    );
    assert_eq!(
        fastjson_offsets(&one, true),
        "{\n\t\"offsetTable\":{\n\t\t\"TopicTest@cg\":{0:12,1:9,2:250,3:0\n\t\t}\n\t}\n}"
    );
}

proptest! {
    #[test]
    fn prepass_never_panics_and_only_inserts_quotes(text in tricky_string()) {
        let out = quote_integer_keys(&text);
        prop_assert_eq!(out.replace('"', ""), text.replace('"', ""));
        prop_assert_eq!((out.len() - text.len()) % 2, 0);
        prop_assert_eq!(quote_integer_keys(&out), out.clone(), "idempotent");
    }

    #[test]
    fn prepass_leaves_standard_json_unchanged(value in json_value()) {
        for text in [
            serde_json::to_string(&value).unwrap(),
            serde_json::to_string_pretty(&value).unwrap(),
            pretty(&value),
        ] {
            let out = quote_integer_keys(&text);
            prop_assert!(matches!(out, Cow::Borrowed(_)), "{} changed to {}", text, out);
        }
    }

    #[test]
    fn fastjson_offset_tables_read_back_exactly(table in any_offset_table()) {
        for pretty in [true, false] {
            let text = fastjson_offsets(&table, pretty);
            let read: ConsumerOffsetTable = from_json_lenient(&text)
                .map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert_eq!(&read, &table);
        }
        let ours: ConsumerOffsetTable = from_json_lenient(
            std::str::from_utf8(&encode_pretty(&table).unwrap()).unwrap(),
        )
        .unwrap();
        prop_assert_eq!(ours, table);
    }
}
