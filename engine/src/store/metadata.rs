//! Broker and store metadata files: `config/topics.json`, `config/consumerOffset.json`,
//! `config/subscriptionGroup.json` and `config/delayOffset.json` under the store root.
//!
//! These are RocketMQ 4.x's `ConfigManager` files: small JSON documents, each rewritten
//! whole by a periodic or on-change `persist` and read once at startup. This module owns
//! their shapes ([`ConsumerOffsetTable`], [`SubscriptionGroupWrapper`], [`DelayOffsetTable`],
//! and the existing [`TopicConfigSerializeWrapper`](crate::protocol::TopicConfigSerializeWrapper)
//! for `topics.json`) and the two
//! operations every manager needs, [`load_json`] and [`persist_json`]. The managers that hold
//! the tables in memory (offset commits, group auto-creation, the schedule service) live
//! with the broker and the store and call these.
//!
//! # Compatibility with stores written by Java
//!
//! Java writes with fastjson's pretty format (`ConfigManager.persist` calls `encode(true)`):
//! tab indentation, no space after `:`, bean fields sorted, map entries in hash order, and
//! **map keys that are not strings written without quotes**, e.g.
//! `{"offsetTable":{"TopicTest@cg":{0:12,1:9}}}`. serde_json rejects those keys, so every
//! read goes through [`quote_integer_keys`], a pre-pass that quotes a bare integer key
//! following `{` or `,` outside strings and leaves standard JSON byte for byte unchanged.
//! We write standard JSON (quoted keys, which fastjson reads too) in fastjson's layout
//! ([`encode_pretty`]), so a Java broker can take over a store we wrote and vice versa.
//!
//! # Crash safety
//!
//! Java's `MixAll.string2File` writes `<file>.tmp`, copies the old contents to `<file>.bak`,
//! deletes `<file>` and renames the tmp file over it, with no fsync; its `load` falls back
//! to `<file>.bak` when `<file>` is missing, empty or undecodable. We keep the same two files
//! but replace each through [`Disk::write_file_atomic`], so after any crash `<file>` holds
//! the old or the new contents and `<file>.bak` a previous good version. Where Java would
//! start empty (empty file and no usable backup) or keep a corrupt copy as the backup, we
//! refuse: [`load_json`] fails naming the file, because a broker that silently starts with
//! no consumer offsets makes every group re-consume from its `consumeFromWhere` position,
//! and [`persist_json`] never backs up contents that are not well-formed JSON.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use serde_json::ser::{Formatter, PrettyFormatter};

use crate::disk::{Disk, join};
use crate::protocol::DataVersion;
use crate::protocol::lenient::{bool_any, i32_any, i64_any, null_default};

/// `topics.json` under the store root: a
/// [`TopicConfigSerializeWrapper`](crate::protocol::TopicConfigSerializeWrapper)
/// (`BrokerPathConfigHelper.getTopicConfigPath`).
pub const TOPICS_FILE: &str = "config/topics.json";

/// `consumerOffset.json` under the store root: a [`ConsumerOffsetTable`]
/// (`BrokerPathConfigHelper.getConsumerOffsetPath`).
pub const CONSUMER_OFFSET_FILE: &str = "config/consumerOffset.json";

/// `subscriptionGroup.json` under the store root: a [`SubscriptionGroupWrapper`]
/// (`BrokerPathConfigHelper.getSubscriptionGroupPath`).
pub const SUBSCRIPTION_GROUP_FILE: &str = "config/subscriptionGroup.json";

/// `delayOffset.json` under the store root: a [`DelayOffsetTable`]
/// (`StorePathConfigHelper.getDelayOffsetStorePath`).
pub const DELAY_OFFSET_FILE: &str = "config/delayOffset.json";

/// Suffix of the backup copy of a metadata file (`MixAll.string2File`).
pub const BACKUP_SUFFIX: &str = ".bak";

/// The path of the metadata file `name` (one of the `*_FILE` constants, relative to the
/// store root) for the store at `store_root`.
pub fn config_path(store_root: &str, name: &str) -> String {
    join(store_root, name)
}

/// The path of the backup copy of the metadata file at `path`.
pub fn backup_path(path: &str) -> String {
    format!("{path}{BACKUP_SUFFIX}")
}

/// Why one copy of a metadata file (the file or its backup) could not be used.
#[derive(Debug)]
pub enum FileProblem {
    /// The file does not exist.
    Missing,
    /// The file is zero bytes long: Java leaves this after a power loss in `string2File`.
    Empty,
    /// The file is not UTF-8 text.
    NotUtf8,
    /// The file is not JSON of the expected shape (torn, garbage, or another document).
    Malformed(serde_json::Error),
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("missing"),
            Self::Empty => f.write_str("empty"),
            Self::NotUtf8 => f.write_str("not UTF-8"),
            Self::Malformed(error) => write!(f, "malformed ({error})"),
        }
    }
}

/// Why a metadata file could not be loaded or persisted.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// Reading `path` failed with an I/O error. Nothing was decided about its contents; the
    /// caller should stop (a retry may succeed) rather than start with an empty table.
    #[error("cannot read metadata file {path}: {source}")]
    Read {
        /// The file that could not be read.
        path: String,
        /// The disk's error.
        #[source]
        source: io::Error,
    },
    /// Replacing `path` failed. By the disk's contract the file holds its old or its new
    /// contents, so a later persist of the same table may be tried again.
    #[error("cannot write metadata file {path}: {source}")]
    Write {
        /// The file that could not be replaced (the file itself or its backup).
        path: String,
        /// The disk's error.
        #[source]
        source: io::Error,
    },
    /// The value could not be turned into JSON (a map whose keys are not strings or
    /// integers, a non-finite float). Nothing was written; this is a bug in the caller's type.
    #[error("cannot encode metadata file {path}: {source}")]
    Encode {
        /// The file that was to be written.
        path: String,
        /// serde_json's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// Neither the file nor its backup is usable, and at least one of them exists. The broker
    /// must not start over it: an operator repairs one copy, or removes both to start empty.
    #[error(
        "metadata file {path} is {problem} and its backup {backup_path} is {backup_problem}; \
         repair one of them, or remove both to start with an empty table"
    )]
    Corrupt {
        /// The metadata file.
        path: String,
        /// What is wrong with it.
        problem: FileProblem,
        /// Its backup copy.
        backup_path: String,
        /// What is wrong with the backup.
        backup_problem: FileProblem,
    },
}

/// Quotes every bare integer object key, as fastjson writes `Map<Integer, _>` keys
/// (`{0:12,1:9}` becomes `{"0":12,"1":9}`), so serde_json can read the text.
///
/// A key is an optional `-` and decimal digits that follow `{` or `,` (with JSON whitespace
/// between) outside any string and are followed (again after whitespace) by `:`. Standard
/// JSON never has such a sequence, so it passes through unchanged and borrowed; strings are
/// never touched, whatever they contain. Any text is accepted: malformed input comes back
/// with at most some quotes added, for serde_json to reject.
pub fn quote_integer_keys(json: &str) -> Cow<'_, str> {
    let bytes = json.as_bytes();
    let mut quoted: Option<String> = None;
    // `json[..copied]` is already in `quoted`.
    let mut copied = 0;
    let mut in_string = false;
    let mut escaped = false;
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        index += 1;
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b',' => {
                let key_start = skip_whitespace(bytes, index);
                let key_end = skip_integer(bytes, key_start);
                if key_end > key_start && bytes.get(skip_whitespace(bytes, key_end)) == Some(&b':')
                {
                    // Every index here sits next to an ASCII byte, so all are char boundaries.
                    let out = quoted.get_or_insert_with(|| String::with_capacity(json.len() + 64));
                    out.push_str(&json[copied..key_start]);
                    out.push('"');
                    out.push_str(&json[key_start..key_end]);
                    out.push('"');
                    copied = key_end;
                }
                index = key_end;
            }
            _ => {}
        }
    }
    match quoted {
        None => Cow::Borrowed(json),
        Some(mut out) => {
            out.push_str(&json[copied..]);
            Cow::Owned(out)
        }
    }
}

/// The index of the first byte at or after `index` that is not JSON whitespace.
fn skip_whitespace(bytes: &[u8], mut index: usize) -> usize {
    while matches!(bytes.get(index), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        index += 1;
    }
    index
}

/// The end of `-?[0-9]+` starting at `index`, or `index` when there is none.
fn skip_integer(bytes: &[u8], index: usize) -> usize {
    let digits_start = if bytes.get(index) == Some(&b'-') {
        index + 1
    } else {
        index
    };
    let mut end = digits_start;
    while bytes.get(end).is_some_and(u8::is_ascii_digit) {
        end += 1;
    }
    if end == digits_start { index } else { end }
}

/// Reads JSON as fastjson writes it: [`quote_integer_keys`], then serde_json. Also fits
/// bodies a Java broker sends compact with unquoted keys (`ConsumerOffsetSerializeWrapper`
/// of GET_ALL_CONSUMER_OFFSET).
pub fn from_json_lenient<T: DeserializeOwned>(json: &str) -> Result<T, serde_json::Error> {
    serde_json::from_str(&quote_integer_keys(json))
}

/// Encodes `value` as [`persist_json`] writes it: fastjson's pretty layout (tab indentation,
/// no space after `:`, one entry per line) with every key quoted.
pub fn encode_pretty<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, FastjsonPretty::new());
    value.serialize(&mut serializer)?;
    Ok(out)
}

/// serde_json's pretty formatter with fastjson's `"key":value` (no space after the colon).
struct FastjsonPretty(PrettyFormatter<'static>);

impl FastjsonPretty {
    fn new() -> Self {
        Self(PrettyFormatter::with_indent(b"\t"))
    }
}

impl Formatter for FastjsonPretty {
    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_array(writer)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array_value(writer)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object(writer)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(writer, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b":")
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object_value(writer)
    }
}

/// Decodes one copy of a metadata file.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FileProblem> {
    if bytes.is_empty() {
        return Err(FileProblem::Empty);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| FileProblem::NotUtf8)?;
    from_json_lenient(text).map_err(FileProblem::Malformed)
}

fn read(disk: &dyn Disk, path: &str) -> Result<Option<Vec<u8>>, MetadataError> {
    disk.read_file(path).map_err(|source| MetadataError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Loads the metadata file at `path`: the file itself, else its `.bak` copy when the file
/// is missing or unusable (logged), else `None` when neither exists.
///
/// A file that exists but is unusable with no usable backup, or a missing file with an
/// unusable backup, is [`MetadataError::Corrupt`]; an I/O error is [`MetadataError::Read`]
/// (Java falls back to the backup on both; we do not guess past a failing device).
pub fn load_json<T: DeserializeOwned>(
    disk: &dyn Disk,
    path: &str,
) -> Result<Option<T>, MetadataError> {
    let problem = match read(disk, path)? {
        None => FileProblem::Missing,
        Some(bytes) => match decode(&bytes) {
            Ok(value) => return Ok(Some(value)),
            Err(problem) => problem,
        },
    };
    let backup_path = backup_path(path);
    let backup_problem = match read(disk, &backup_path)? {
        None => FileProblem::Missing,
        Some(bytes) => match decode(&bytes) {
            Ok(value) => {
                tracing::warn!(
                    path,
                    backup = %backup_path,
                    %problem,
                    "metadata file unusable; loaded its backup"
                );
                return Ok(Some(value));
            }
            Err(backup_problem) => backup_problem,
        },
    };
    if matches!(
        (&problem, &backup_problem),
        (FileProblem::Missing, FileProblem::Missing)
    ) {
        return Ok(None);
    }
    Err(MetadataError::Corrupt {
        path: path.to_owned(),
        problem,
        backup_path,
        backup_problem,
    })
}

/// Persists `value` to the metadata file at `path` in [`encode_pretty`]'s layout: the
/// file's current contents, when they are well-formed JSON, first replace `<path>.bak`, then
/// the new contents replace `<path>`, each through [`Disk::write_file_atomic`]. On `Ok` both
/// are durable; on a crash in between, the file holds its old contents.
pub async fn persist_json<T: Serialize + ?Sized>(
    disk: &dyn Disk,
    path: &str,
    value: &T,
) -> Result<(), MetadataError> {
    let contents = encode_pretty(value).map_err(|source| MetadataError::Encode {
        path: path.to_owned(),
        source,
    })?;
    if let Some(previous) = read(disk, path)? {
        match decode::<IgnoredAny>(&previous) {
            Ok(_) => {
                let backup_path = backup_path(path);
                disk.write_file_atomic(&backup_path, &previous)
                    .await
                    .map_err(|source| MetadataError::Write {
                        path: backup_path,
                        source,
                    })?;
            }
            Err(problem) => {
                // Copying it would replace the last good backup with garbage.
                tracing::warn!(path, %problem, "metadata file unusable; keeping the old backup");
            }
        }
    }
    disk.write_file_atomic(path, &contents)
        .await
        .map_err(|source| MetadataError::Write {
            path: path.to_owned(),
            source,
        })
}

/// Committed consumer offsets: the contents of `consumerOffset.json` (`ConsumerOffsetManager`)
/// and the body of GET_ALL_CONSUMER_OFFSET (`ConsumerOffsetSerializeWrapper`).
///
/// Keys are `topic@group` ([`key`](Self::key)); the inner map is queue id → the next queue
/// offset the group will consume. Methods take `(group, topic)` in Java's argument order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerOffsetTable {
    /// `topic@group` → queue id → committed offset.
    #[serde(default, deserialize_with = "null_default")]
    pub offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
}

impl ConsumerOffsetTable {
    /// Separates topic and group in a key (`TOPIC_GROUP_SEPARATOR`).
    pub const TOPIC_GROUP_SEPARATOR: char = '@';

    /// The key of `group`'s offsets on `topic`: `topic@group`.
    pub fn key(topic: &str, group: &str) -> String {
        format!("{topic}{}{group}", Self::TOPIC_GROUP_SEPARATOR)
    }

    /// `(topic, group)` of a key, or `None` unless it has exactly one separator (Java skips
    /// keys whose `split("@")` is not two parts).
    pub fn split_key(key: &str) -> Option<(&str, &str)> {
        let (topic, group) = key.split_once(Self::TOPIC_GROUP_SEPARATOR)?;
        (!group.contains(Self::TOPIC_GROUP_SEPARATOR)).then_some((topic, group))
    }

    /// Records `offset` as `group`'s committed offset of `topic` queue `queue_id` and returns
    /// the offset it replaces. A lower offset than before is accepted (a reset); Java logs it.
    pub fn commit(&mut self, group: &str, topic: &str, queue_id: i32, offset: i64) -> Option<i64> {
        self.offset_table
            .entry(Self::key(topic, group))
            .or_default()
            .insert(queue_id, offset)
    }

    /// `group`'s committed offset of `topic` queue `queue_id` (Java answers -1 for `None`).
    pub fn query(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        self.queue_offsets(group, topic)?.get(&queue_id).copied()
    }

    /// Every committed offset of `group` on `topic`, by queue id.
    pub fn queue_offsets(&self, group: &str, topic: &str) -> Option<&BTreeMap<i32, i64>> {
        self.offset_table.get(&Self::key(topic, group))
    }

    /// The topics `group` has offsets on (`whichTopicByConsumer`).
    pub fn topics_of_group(&self, group: &str) -> BTreeSet<&str> {
        self.offset_table
            .keys()
            .filter_map(|key| Self::split_key(key))
            .filter(|(_, g)| *g == group)
            .map(|(topic, _)| topic)
            .collect()
    }

    /// The groups with offsets on `topic` (`whichGroupByTopic`).
    pub fn groups_of_topic(&self, topic: &str) -> BTreeSet<&str> {
        self.offset_table
            .keys()
            .filter_map(|key| Self::split_key(key))
            .filter(|(t, _)| *t == topic)
            .map(|(_, group)| group)
            .collect()
    }

    /// Copies `src_group`'s offsets on `topic` to `dest_group`, replacing any it had
    /// (`cloneOffset`); nothing happens when `src_group` has none.
    pub fn clone_offsets(&mut self, src_group: &str, dest_group: &str, topic: &str) {
        if let Some(offsets) = self.queue_offsets(src_group, topic).cloned() {
            self.offset_table
                .insert(Self::key(topic, dest_group), offsets);
        }
    }

    /// Removes every offset of `group` on any topic (`removeOffset`, on DELETE_SUBSCRIPTIONGROUP)
    /// and returns the removed keys for the caller to log.
    pub fn remove_group(&mut self, group: &str) -> Vec<String> {
        self.remove_where(|_, g| g == group)
    }

    /// Removes every group's offsets on `topic` and returns the removed keys (5.x
    /// `cleanOffsetByTopic`; 4.9 keeps them until `scanUnsubscribedTopic` prunes them).
    pub fn remove_topic(&mut self, topic: &str) -> Vec<String> {
        self.remove_where(|t, _| t == topic)
    }

    fn remove_where(&mut self, matches: impl Fn(&str, &str) -> bool) -> Vec<String> {
        let removed: Vec<String> = self
            .offset_table
            .keys()
            .filter(|key| Self::split_key(key).is_some_and(|(topic, group)| matches(topic, group)))
            .cloned()
            .collect();
        for key in &removed {
            self.offset_table.remove(key);
        }
        removed
    }
}

/// A consumer group's settings on one broker (`SubscriptionGroupConfig.java`). Missing fields
/// read as Java's defaults; unknown fields (5.x `groupRetryPolicy`, `attributes`, ...) are
/// ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupConfig {
    /// The broker id consumers are told to pull from (0, the master).
    #[serde(deserialize_with = "i64_any")]
    pub broker_id: i64,
    /// Whether broadcasting consumers may consume.
    #[serde(deserialize_with = "bool_any")]
    pub consume_broadcast_enable: bool,
    /// Whether the group may consume at all (cleared when `protectBroker` disables a slow
    /// group).
    #[serde(deserialize_with = "bool_any")]
    pub consume_enable: bool,
    /// Whether a new group may start from the minimum offset.
    #[serde(deserialize_with = "bool_any")]
    pub consume_from_min_enable: bool,
    /// The group's name (the key of its table entry).
    #[serde(deserialize_with = "null_default")]
    pub group_name: String,
    /// Whether consumers are notified when the group's membership changes.
    #[serde(deserialize_with = "bool_any")]
    pub notify_consumer_ids_changed_enable: bool,
    /// Deliveries before a message goes to the dead-letter queue `%DLQ%<group>`.
    #[serde(deserialize_with = "i32_any")]
    pub retry_max_times: i32,
    /// Queues of the retry topic `%RETRY%<group>`.
    #[serde(deserialize_with = "i32_any")]
    pub retry_queue_nums: i32,
    /// The broker id suggested when the group consumes slowly from the master (1, a slave).
    #[serde(deserialize_with = "i64_any")]
    pub which_broker_when_consume_slowly: i64,
}

impl SubscriptionGroupConfig {
    /// Java's default retry queue count.
    pub const DEFAULT_RETRY_QUEUE_NUMS: i32 = 1;
    /// Java's default delivery count before the dead-letter queue.
    pub const DEFAULT_RETRY_MAX_TIMES: i32 = 16;

    /// A group named `group_name` with Java's defaults.
    pub fn new(group_name: impl Into<String>) -> Self {
        Self {
            broker_id: crate::protocol::MASTER_ID,
            consume_broadcast_enable: true,
            consume_enable: true,
            consume_from_min_enable: true,
            group_name: group_name.into(),
            notify_consumer_ids_changed_enable: true,
            retry_max_times: Self::DEFAULT_RETRY_MAX_TIMES,
            retry_queue_nums: Self::DEFAULT_RETRY_QUEUE_NUMS,
            which_broker_when_consume_slowly: 1,
        }
    }
}

impl Default for SubscriptionGroupConfig {
    /// Java's defaults with no name (`new SubscriptionGroupConfig()`).
    fn default() -> Self {
        Self::new("")
    }
}

/// The broker's consumer groups with their version: the contents of `subscriptionGroup.json`
/// (`SubscriptionGroupManager`) and the body of GET_ALL_SUBSCRIPTIONGROUP_CONFIG
/// (`SubscriptionGroupWrapper`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupWrapper {
    /// The version of this table, bumped on every change.
    #[serde(default)]
    pub data_version: DataVersion,
    /// Groups by name.
    #[serde(default, deserialize_with = "null_default")]
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
}

/// Progress of the delay-message service: the contents of `delayOffset.json`
/// (`DelayOffsetSerializeWrapper`). Level *n* (1-based) is queue *n - 1* of
/// `SCHEDULE_TOPIC_XXXX`; its entry is the next consume-queue offset to examine.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DelayOffsetTable {
    /// Delay level → next consume-queue offset.
    #[serde(default, deserialize_with = "null_default")]
    pub offset_table: BTreeMap<i32, i64>,
}

impl DelayOffsetTable {
    /// The next offset of `level`; 0 for a level never recorded, as
    /// `ScheduleMessageService.start` does.
    pub fn offset(&self, level: i32) -> i64 {
        self.offset_table.get(&level).copied().unwrap_or(0)
    }

    /// Records the next offset of `level` (`updateOffset`).
    pub fn update(&mut self, level: i32, offset: i64) {
        self.offset_table.insert(level, offset);
    }
}

#[cfg(test)]
mod tests;
