//! Topic configuration and data versions (`TopicConfig`, `DataVersion`,
//! `TopicConfigSerializeWrapper`, `RegisterBrokerBody`).

use std::collections::BTreeMap;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use super::lenient::{bool_any, i32_any, i64_any, null_default};

/// Permission bits of a topic or queue (`PermName.java`).
pub mod perm {
    /// Ordered by priority (unused by 4.x brokers).
    pub const PRIORITY: i32 = 1 << 3;
    /// Readable: consumers may pull.
    pub const READ: i32 = 1 << 2;
    /// Writable: producers may send.
    pub const WRITE: i32 = 1 << 1;
    /// A template other topics may be created from (`TBW102`).
    pub const INHERIT: i32 = 1;

    /// Whether `perm` allows reading.
    pub fn is_readable(perm: i32) -> bool {
        perm & READ == READ
    }

    /// Whether `perm` allows writing.
    pub fn is_writeable(perm: i32) -> bool {
        perm & WRITE == WRITE
    }

    /// Whether `perm` allows inheriting.
    pub fn is_inherited(perm: i32) -> bool {
        perm & INHERIT == INHERIT
    }

    /// `perm` as Java's `PermName.perm2String` prints it, e.g. `RW-`.
    pub fn to_display(perm: i32) -> String {
        let mut text = String::with_capacity(3);
        text.push(if is_readable(perm) { 'R' } else { '-' });
        text.push(if is_writeable(perm) { 'W' } else { '-' });
        text.push(if is_inherited(perm) { 'X' } else { '-' });
        text
    }
}

crate::java_enum! {
    /// How a topic's tags are matched (`TopicFilterType.java`).
    pub enum TopicFilterType {
        /// One tag per message.
        SingleTag = "SINGLE_TAG",
        /// Several tags per message.
        MultiTag = "MULTI_TAG",
    }
}

// Written out because `java_enum!` declares the enum and its derives.
#[allow(clippy::derivable_impls)]
impl Default for TopicFilterType {
    fn default() -> Self {
        Self::SingleTag
    }
}

/// A topic's configuration on one broker (`TopicConfig.java`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfig {
    /// Whether the topic is ordered.
    #[serde(default, deserialize_with = "bool_any")]
    pub order: bool,
    /// Permission bits ([`perm`]).
    #[serde(default = "default_perm", deserialize_with = "i32_any")]
    pub perm: i32,
    /// Queues consumers read.
    #[serde(default = "default_queue_nums", deserialize_with = "i32_any")]
    pub read_queue_nums: i32,
    /// Tag matching.
    #[serde(default)]
    pub topic_filter_type: TopicFilterType,
    /// The topic's name.
    pub topic_name: String,
    /// System flags (unit topics).
    #[serde(default, deserialize_with = "i32_any")]
    pub topic_sys_flag: i32,
    /// Queues producers write.
    #[serde(default = "default_queue_nums", deserialize_with = "i32_any")]
    pub write_queue_nums: i32,
}

fn default_perm() -> i32 {
    perm::READ | perm::WRITE
}

fn default_queue_nums() -> i32 {
    TopicConfig::DEFAULT_QUEUE_NUMS
}

impl TopicConfig {
    /// Java's default queue count for a new `TopicConfig`.
    pub const DEFAULT_QUEUE_NUMS: i32 = 16;

    /// A read-write topic with `queue_nums` read and write queues.
    pub fn new(topic_name: impl Into<String>, queue_nums: i32) -> Self {
        Self {
            order: false,
            perm: default_perm(),
            read_queue_nums: queue_nums,
            topic_filter_type: TopicFilterType::SingleTag,
            topic_name: topic_name.into(),
            topic_sys_flag: 0,
            write_queue_nums: queue_nums,
        }
    }

    /// The space-separated form of `TopicConfig.encode()`:
    /// `name read write perm filterType`.
    pub fn encode_compact(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.topic_name,
            self.read_queue_nums,
            self.write_queue_nums,
            self.perm,
            self.topic_filter_type.name()
        )
    }

    /// Reads the form written by [`encode_compact`](Self::encode_compact).
    pub fn decode_compact(text: &str) -> Option<Self> {
        let mut parts = text.split(' ');
        let topic_name = parts.next()?.to_owned();
        let read_queue_nums = parts.next()?.parse().ok()?;
        let write_queue_nums = parts.next()?.parse().ok()?;
        let perm = parts.next()?.parse().ok()?;
        let topic_filter_type = TopicFilterType::from_name(parts.next()?)?;
        Some(Self {
            order: false,
            perm,
            read_queue_nums,
            topic_filter_type,
            topic_name,
            topic_sys_flag: 0,
            write_queue_nums,
        })
    }
}

/// A version stamp of a broker's topic configuration (`DataVersion.java`): the name server
/// rewrites a broker's topics only when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DataVersion {
    /// Bumped on every change.
    #[serde(default, deserialize_with = "i64_any")]
    pub counter: i64,
    /// Wall-clock ms of the last change.
    #[serde(default, deserialize_with = "i64_any")]
    pub timestamp: i64,
}

impl DataVersion {
    /// A first version stamped `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        Self {
            counter: 0,
            timestamp: now_ms,
        }
    }

    /// Records a change at `now_ms`.
    pub fn next_version(&mut self, now_ms: i64) {
        self.timestamp = now_ms;
        self.counter += 1;
    }
}

/// A broker's topics with their version (`TopicConfigSerializeWrapper`; also the shape of
/// the broker's `config/topics.json`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfigSerializeWrapper {
    /// The version of this table.
    #[serde(default)]
    pub data_version: DataVersion,
    /// Topics by name.
    #[serde(default, deserialize_with = "null_default")]
    pub topic_config_table: BTreeMap<String, TopicConfig>,
}

/// The body of REGISTER_BROKER (`RegisterBrokerBody.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBrokerBody {
    /// Filter-server addresses (always empty for 4.9 brokers).
    #[serde(default, deserialize_with = "null_default")]
    pub filter_server_list: Vec<String>,
    /// The broker's topics.
    #[serde(default)]
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
}

/// Why a REGISTER_BROKER body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RegisterBodyError {
    /// The JSON form is malformed.
    #[error("malformed register-broker body: {0}")]
    Json(#[from] serde_json::Error),
    /// The compressed form is truncated or inconsistent.
    #[error("malformed compressed register-broker body: {0}")]
    Compressed(String),
}

/// Largest decompressed compressed-register body accepted: a bound against zip bombs well
/// above any real broker's topic table.
const COMPRESSED_REGISTER_BODY_MAX: u64 = 256 * 1024 * 1024;

impl RegisterBrokerBody {
    /// Reads the body in its plain JSON form, or in the zlib form when `compressed`.
    pub fn decode(bytes: &[u8], compressed: bool) -> Result<Self, RegisterBodyError> {
        if compressed {
            Self::decode_compressed(bytes)
        } else {
            Ok(serde_json::from_slice(bytes)?)
        }
    }

    /// The plain JSON form.
    pub fn encode(&self) -> Vec<u8> {
        super::to_json(self)
    }

    /// The compressed form (`RegisterBrokerBody.encode(true)`): a zlib stream of
    /// length-prefixed DataVersion JSON, topic count, compact topic configs, filter servers.
    pub fn encode_compressed(&self) -> Vec<u8> {
        let mut plain = Vec::new();
        let put = |out: &mut Vec<u8>, bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
            out.extend_from_slice(bytes);
        };
        let wrapper = &self.topic_config_serialize_wrapper;
        put(&mut plain, &super::to_json(&wrapper.data_version));
        plain.extend_from_slice(&(wrapper.topic_config_table.len() as i32).to_be_bytes());
        for config in wrapper.topic_config_table.values() {
            put(&mut plain, config.encode_compact().as_bytes());
        }
        put(&mut plain, &super::to_json(&self.filter_server_list));
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
        encoder
            .write_all(&plain)
            .expect("writing to a Vec cannot fail");
        encoder.finish().expect("writing to a Vec cannot fail")
    }

    fn decode_compressed(bytes: &[u8]) -> Result<Self, RegisterBodyError> {
        let mut plain = Vec::new();
        flate2::read::ZlibDecoder::new(bytes)
            .take(COMPRESSED_REGISTER_BODY_MAX)
            .read_to_end(&mut plain)
            .map_err(|e| RegisterBodyError::Compressed(e.to_string()))?;
        let mut cursor = plain.as_slice();
        let data_version: DataVersion = serde_json::from_slice(take_chunk(&mut cursor)?)?;
        let count = take_i32(&mut cursor)?;
        let mut table = BTreeMap::new();
        for _ in 0..count {
            let text = std::str::from_utf8(take_chunk(&mut cursor)?)
                .map_err(|_| RegisterBodyError::Compressed("topic config is not UTF-8".into()))?;
            let config = TopicConfig::decode_compact(text).ok_or_else(|| {
                RegisterBodyError::Compressed(format!("bad topic config {text:?}"))
            })?;
            table.insert(config.topic_name.clone(), config);
        }
        let filter_server_list = serde_json::from_slice(take_chunk(&mut cursor)?)?;
        Ok(Self {
            filter_server_list,
            topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
                data_version,
                topic_config_table: table,
            },
        })
    }
}

fn take_i32(cursor: &mut &[u8]) -> Result<i32, RegisterBodyError> {
    let Some((head, rest)) = cursor.split_first_chunk::<4>() else {
        return Err(RegisterBodyError::Compressed("truncated length".into()));
    };
    *cursor = rest;
    Ok(i32::from_be_bytes(*head))
}

fn take_chunk<'a>(cursor: &mut &'a [u8]) -> Result<&'a [u8], RegisterBodyError> {
    let len = usize::try_from(take_i32(cursor)?)
        .map_err(|_| RegisterBodyError::Compressed("negative length".into()))?;
    if len > cursor.len() {
        return Err(RegisterBodyError::Compressed("length past the end".into()));
    }
    let (chunk, rest) = cursor.split_at(len);
    *cursor = rest;
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_config_json_matches_java_shape() {
        let config = TopicConfig::new("TopicTest", 4);
        let json = String::from_utf8(super::super::to_json(&config)).unwrap();
        assert_eq!(
            json,
            r#"{"order":false,"perm":6,"readQueueNums":4,"topicFilterType":"SINGLE_TAG","topicName":"TopicTest","topicSysFlag":0,"writeQueueNums":4}"#
        );
    }

    #[test]
    fn register_body_reads_the_java_example_and_ordinals() {
        let java = r#"{"filterServerList":[],
 "topicConfigSerializeWrapper":{"dataVersion":{"counter":3,"timestamp":1700000000000},
   "topicConfigTable":{"TopicTest":{"order":false,"perm":6,"readQueueNums":4,"topicFilterType":1,"topicName":"TopicTest","topicSysFlag":0,"writeQueueNums":4,"attributes":{}}}}}"#;
        let body = RegisterBrokerBody::decode(java.as_bytes(), false).unwrap();
        let wrapper = &body.topic_config_serialize_wrapper;
        assert_eq!(wrapper.data_version.counter, 3);
        let topic = &wrapper.topic_config_table["TopicTest"];
        assert_eq!(topic.topic_filter_type, TopicFilterType::MultiTag);
        assert_eq!(topic.read_queue_nums, 4);
    }

    #[test]
    fn compressed_register_body_round_trips() {
        let mut body = RegisterBrokerBody::default();
        body.topic_config_serialize_wrapper.data_version = DataVersion {
            counter: 7,
            timestamp: 1_700_000_000_000,
        };
        for name in ["A", "B", "TBW102"] {
            body.topic_config_serialize_wrapper
                .topic_config_table
                .insert(name.into(), TopicConfig::new(name, 8));
        }
        let bytes = body.encode_compressed();
        assert_eq!(RegisterBrokerBody::decode(&bytes, true).unwrap(), body);
    }

    #[test]
    fn corrupt_compressed_body_is_an_error() {
        assert!(RegisterBrokerBody::decode(b"not zlib", true).is_err());
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
        encoder.write_all(&[0, 0, 0, 9, b'{']).unwrap();
        let truncated = encoder.finish().unwrap();
        assert!(RegisterBrokerBody::decode(&truncated, true).is_err());
    }

    #[test]
    fn perm_display_matches_java() {
        assert_eq!(perm::to_display(6), "RW-");
        assert_eq!(perm::to_display(7), "RWX");
        assert_eq!(perm::to_display(4), "R--");
    }
}
