//! Commit-log record codec: one stored message ⇄ the bytes RocketMQ 4.x writes for it.
//!
//! Every message the broker stores becomes one record in the commit log
//! (`spec/broker-store.md` §2.2); the same bytes travel unchanged in PULL, VIEW_MESSAGE and
//! QUERY_MESSAGE bodies and over HA replication (`spec/wire-protocol.md` §8.1):
//!
//! ```text
//! TOTALSIZE i32 | MAGICCODE i32 | BODYCRC i32 | QUEUEID i32 | FLAG i32 | QUEUEOFFSET i64
//! | PHYSICALOFFSET i64 | SYSFLAG i32 | BORNTIMESTAMP i64 | BORNHOST 8|20 | STORETIMESTAMP i64
//! | STOREHOST 8|20 | RECONSUMETIMES i32 | PREPARED_TX_OFFSET i64 | BODYLENGTH i32 | BODY
//! | TOPICLENGTH i8 | TOPIC | PROPERTIESLENGTH i16 | PROPERTIES
//! ```
//!
//! All integers are big-endian. A host is 4 address bytes + an `i32` port, or 16 + 4 when the
//! SYSFLAG bit [`sys_flag::BORNHOST_V6`] / [`sys_flag::STOREHOSTADDRESS_V6`] is set, so a
//! record with IPv4 hosts is [`RECORD_SIZE_MIN`] + body + topic + properties bytes. The tail of
//! a segment too small for the next record is filled by an 8-byte BLANK record
//! ([`encode_blank`]) whose TOTALSIZE covers the rest of the segment.
//!
//! Where it sits: the append path encodes with [`encode_record`] (the caller supplies the
//! queue offset and the record's own commit-log offset); recovery and the reput tailer walk
//! the log with [`check_record`], which reads what ConsumeQueue and IndexFile dispatch need
//! without copying the body; pull clients, VIEW_MESSAGE and the schedule/transaction services
//! read whole messages with [`decode_record`]. The module also holds what travels inside a
//! record: SYSFLAG bits, the properties string and its well-known keys, tag hash codes, offset
//! message ids and the SEND_BATCH_MESSAGE body.
//!
//! Invariants: the encoder writes exactly [`record_size`] bytes and refuses, before writing
//! anything, what RocketMQ refuses (topic over 127 bytes, properties over 32767 bytes, record
//! over the size limit); the SYSFLAG host bits always match the host sizes written; BODYCRC is
//! `crc32(body) & 0x7FFFFFFF`, as RocketMQ's `UtilAll.crc32` computes it. The decoders never
//! panic on any input, and never report a record larger than the buffer they were given.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;

/// MAGICCODE of a message record (`CommitLog.MESSAGE_MAGIC_CODE`, -626843481).
pub const MESSAGE_MAGIC_CODE: i32 = 0xDAA3_20A7_u32 as i32;

/// MAGICCODE of the end-of-segment filler record (`CommitLog.BLANK_MAGIC_CODE`, -875286124).
pub const BLANK_MAGIC_CODE: i32 = 0xCBD4_3194_u32 as i32;

/// Bytes every segment keeps free for a BLANK record: TOTALSIZE + MAGICCODE.
pub const END_FILE_MIN_BLANK_LENGTH: usize = 4 + 4;

/// Default largest record the store accepts (`maxMessageSize`, 4 MiB).
pub const MESSAGE_SIZE_MAX_DEFAULT: usize = 4 * 1024 * 1024;

/// Largest properties string, in UTF-8 bytes (`Short.MAX_VALUE`: its length is an `i16`).
pub const PROPERTIES_SIZE_MAX: usize = i16::MAX as usize;

/// Longest topic, in UTF-8 bytes (`Byte.MAX_VALUE`: its length is an `i8`).
pub const TOPIC_LENGTH_MAX: usize = i8::MAX as usize;

/// Size of a record with IPv4 hosts and an empty body, topic and properties: the fixed part.
pub const RECORD_SIZE_MIN: usize =
    4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8 + 4 + 1 + 2;

/// Separates a property name from its value (`MessageDecoder.NAME_VALUE_SEPARATOR`).
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';

/// Separates one property from the next (`MessageDecoder.PROPERTY_SEPARATOR`).
pub const PROPERTY_SEPARATOR: char = '\u{2}';

/// Size of an inner message of a SEND_BATCH_MESSAGE body with an empty body and properties.
const BATCH_ITEM_SIZE_MIN: usize = 4 + 4 + 4 + 4 + 4 + 2;

/// Extra bytes an IPv6 host takes over an IPv4 one (16 + 4 instead of 4 + 4).
const V6_HOST_EXTRA_SIZE: usize = 12;

const _: () = assert!(MESSAGE_MAGIC_CODE == -626_843_481);
const _: () = assert!(BLANK_MAGIC_CODE == -875_286_124);
const _: () = assert!(RECORD_SIZE_MIN == 91);
const _: () =
    assert!(RECORD_SIZE_MIN + TOPIC_LENGTH_MAX + PROPERTIES_SIZE_MAX < MESSAGE_SIZE_MAX_DEFAULT);

/// Byte positions of the fixed fields at the start of every record (they precede the first
/// host, so they do not depend on the host sizes).
pub mod position {
    /// MAGICCODE.
    pub const MAGIC_CODE: usize = 4;
    /// BODYCRC.
    pub const BODY_CRC: usize = 8;
    /// QUEUEID.
    pub const QUEUE_ID: usize = 12;
    /// FLAG.
    pub const FLAG: usize = 16;
    /// QUEUEOFFSET.
    pub const QUEUE_OFFSET: usize = 20;
    /// PHYSICALOFFSET.
    pub const PHYSICAL_OFFSET: usize = 28;
    /// SYSFLAG.
    pub const SYS_FLAG: usize = 36;
    /// BORNTIMESTAMP.
    pub const BORN_TIMESTAMP: usize = 40;
    /// BORNHOST.
    pub const BORN_HOST: usize = 48;

    /// STORETIMESTAMP, which follows the born host (recovery reads it to pick a segment).
    pub fn store_timestamp(sys_flag: i32) -> usize {
        BORN_HOST + super::host_size(sys_flag & super::sys_flag::BORNHOST_V6 != 0)
    }
}

/// SYSFLAG bits (`MessageSysFlag`).
pub mod sys_flag {
    /// The body is compressed (the store keeps it as received).
    pub const COMPRESSED: i32 = 0x1;
    /// The message carries several tags.
    pub const MULTI_TAGS: i32 = 0x2;
    /// Transaction type field mask (bits 2–3).
    pub const TRANSACTION_TYPE_MASK: i32 = 0xC;
    /// Not a transactional message.
    pub const TRANSACTION_NOT_TYPE: i32 = 0x0;
    /// A half (prepared) transactional message.
    pub const TRANSACTION_PREPARED_TYPE: i32 = 0x4;
    /// A committed transactional message.
    pub const TRANSACTION_COMMIT_TYPE: i32 = 0x8;
    /// A rolled-back transactional message.
    pub const TRANSACTION_ROLLBACK_TYPE: i32 = 0xC;
    /// The born host is IPv6 (20 bytes in the record).
    pub const BORNHOST_V6: i32 = 0x10;
    /// The store host is IPv6 (20 bytes in the record).
    pub const STOREHOSTADDRESS_V6: i32 = 0x20;
    /// 4.9.8 store-internal batch flag; clients do not send it.
    pub const NEED_UNWRAP: i32 = 0x40;
    /// 4.9.8 store-internal inner-batch flag.
    pub const INNER_BATCH: i32 = 0x80;
    /// Compression type field mask (bits 8–10; 0 means zlib for clients before 4.9.4).
    pub const COMPRESSION_TYPE_MASK: i32 = 0x700;
    /// LZ4 compression.
    pub const COMPRESSION_LZ4_TYPE: i32 = 0x100;
    /// Zstandard compression.
    pub const COMPRESSION_ZSTD_TYPE: i32 = 0x200;
    /// zlib compression.
    pub const COMPRESSION_ZLIB_TYPE: i32 = 0x300;

    /// The transaction type of `flag` (one of the `TRANSACTION_*_TYPE` values).
    pub fn transaction_value(flag: i32) -> i32 {
        flag & TRANSACTION_TYPE_MASK
    }

    /// `flag` with its transaction type replaced by `transaction_type`.
    pub fn reset_transaction_value(flag: i32, transaction_type: i32) -> i32 {
        (flag & !TRANSACTION_TYPE_MASK) | transaction_type
    }
}

/// Well-known property names (`MessageConst`), as they appear in the properties string.
pub mod property_key {
    /// User keys, separated by [`KEY_SEPARATOR`]; indexed for QUERY_MESSAGE.
    pub const KEYS: &str = "KEYS";
    /// The tag; its Java hash code is the consume-queue tags code.
    pub const TAGS: &str = "TAGS";
    /// `"true"`/`"false"`: the producer waits for the store (the broker strips it).
    pub const WAIT: &str = "WAIT";
    /// Delay level (1..=max level).
    pub const DELAY: &str = "DELAY";
    /// Original topic of a retry message.
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    /// Original topic while parked in a schedule or half topic.
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    /// Original queue id while parked in a schedule or half topic.
    pub const REAL_QID: &str = "REAL_QID";
    /// `"true"` on half (prepared) transactional messages.
    pub const TRAN_MSG: &str = "TRAN_MSG";
    /// Producer group (transaction check-back).
    pub const PGROUP: &str = "PGROUP";
    /// Queue min offset, set by the client from the pull response.
    pub const MIN_OFFSET: &str = "MIN_OFFSET";
    /// Queue max offset, set by the client from the pull response.
    pub const MAX_OFFSET: &str = "MAX_OFFSET";
    /// Buyer id.
    pub const BUYER_ID: &str = "BUYER_ID";
    /// Message id of the original message of a retry.
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    /// Transfer flag.
    pub const TRANSFER_FLAG: &str = "TRANSFER_FLAG";
    /// Correction flag.
    pub const CORRECTION_FLAG: &str = "CORRECTION_FLAG";
    /// MQ2 flag.
    pub const MQ2_FLAG: &str = "MQ2_FLAG";
    /// Retry bookkeeping.
    pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
    /// Region of the message.
    pub const MSG_REGION: &str = "MSG_REGION";
    /// Whether message tracing is on.
    pub const TRACE_ON: &str = "TRACE_ON";
    /// Client unique message id (`MessageClientIDSetter`).
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    /// Retry limit of the consumer group.
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    /// Consume start time, set by the client.
    pub const CONSUME_START_TIME: &str = "CONSUME_START_TIME";
    /// Queue offset of the half message (transaction op records).
    pub const TRAN_PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";
    /// Number of transaction check-backs so far.
    pub const TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
    /// Seconds before the first transaction check-back.
    pub const CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
    /// Namespace instance id.
    pub const INSTANCE_ID: &str = "INSTANCE_ID";
    /// Request-reply correlation id.
    pub const CORRELATION_ID: &str = "CORRELATION_ID";
    /// Request-reply: the client to reply to.
    pub const REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";
    /// Request-reply time to live.
    pub const TTL: &str = "TTL";
    /// Request-reply arrive time.
    pub const ARRIVE_TIME: &str = "ARRIVE_TIME";
    /// Request-reply push time.
    pub const PUSH_REPLY_TIME: &str = "PUSH_REPLY_TIME";
    /// Cluster name.
    pub const CLUSTER: &str = "CLUSTER";
    /// Message type (`"reply"` for request-reply).
    pub const MSG_TYPE: &str = "MSG_TYPE";
    /// LMQ: the queues a message is dispatched to.
    pub const INNER_MULTI_DISPATCH: &str = "INNER_MULTI_DISPATCH";
    /// LMQ: the queue offsets in those queues.
    pub const INNER_MULTI_QUEUE_OFFSET: &str = "INNER_MULTI_QUEUE_OFFSET";
    /// Aliyun timed delivery.
    pub const START_DELIVER_TIME: &str = "__STARTDELIVERTIME";

    /// Separates the keys inside the [`KEYS`] value.
    pub const KEY_SEPARATOR: &str = " ";
}

/// Why a record, a message id or a batch body could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record would exceed the store's size limit. The message is refused
    /// (`MESSAGE_ILLEGAL` to the producer); nothing was written.
    #[error("message record of {size} bytes exceeds the limit of {max} bytes")]
    MessageSizeExceeded {
        /// Size the record would have.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The properties string is over [`PROPERTIES_SIZE_MAX`] UTF-8 bytes. The message is
    /// refused (`PROPERTIES_SIZE_EXCEEDED`); nothing was written.
    #[error("properties of {size} bytes exceed the limit of {PROPERTIES_SIZE_MAX} bytes")]
    PropertiesSizeExceeded {
        /// UTF-8 size of the properties.
        size: usize,
    },
    /// The topic is over [`TOPIC_LENGTH_MAX`] UTF-8 bytes. The message is refused
    /// (`MESSAGE_ILLEGAL`); nothing was written.
    #[error("topic of {size} bytes exceeds the limit of {TOPIC_LENGTH_MAX} bytes")]
    TopicTooLong {
        /// UTF-8 size of the topic.
        size: usize,
    },
    /// TOTALSIZE is 0: the bytes were never written (the end of the written log, or a torn
    /// write). Recovery ends the valid log here.
    #[error("TOTALSIZE is 0: unwritten space, not a record")]
    UnwrittenSpace,
    /// The buffer ends inside a field. Recovery ends the valid log here; a tailer waits for
    /// more bytes.
    #[error("record truncated in {field}: needs {needed} bytes, buffer has {available}")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes needed from the record's start to read it.
        needed: usize,
        /// Bytes in the buffer.
        available: usize,
    },
    /// MAGICCODE is neither a message nor a blank. Corruption (or not a record boundary).
    #[error("illegal magic code {magic:#010x}")]
    BadMagic {
        /// The value found.
        magic: i32,
    },
    /// A BLANK (end-of-segment) record where a message was expected; move to the next
    /// segment.
    #[error("blank end-of-segment record of {size} bytes, not a message")]
    BlankRecord {
        /// The blank's TOTALSIZE (the rest of the segment).
        size: usize,
    },
    /// TOTALSIZE is negative or smaller than the smallest record of its kind. Corruption.
    #[error("TOTALSIZE {size} is below the minimum of {min}")]
    SizeTooSmall {
        /// The value found.
        size: i32,
        /// The smallest legal value.
        min: usize,
    },
    /// TOTALSIZE runs past the end of the buffer. Corruption, or a record not yet fully
    /// readable.
    #[error("TOTALSIZE {size} runs past the {available} bytes of the buffer")]
    SizeBeyondBuffer {
        /// The value found.
        size: usize,
        /// Bytes in the buffer.
        available: usize,
    },
    /// TOTALSIZE disagrees with the lengths of the fields (RocketMQ's "\[BUG\]read total count
    /// not equals msg total size"). Java's reput skips `total_size` bytes; recovery stops.
    #[error("TOTALSIZE {total_size} does not match the {computed} bytes its fields take")]
    SizeMismatch {
        /// TOTALSIZE.
        total_size: usize,
        /// Bytes the fields take.
        computed: usize,
    },
    /// BODYCRC does not match the body. Corruption.
    #[error("body CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// BODYCRC.
        stored: i32,
        /// CRC of the body found.
        computed: i32,
    },
    /// A length field is negative. Corruption.
    #[error("{field} is negative ({length})")]
    NegativeLength {
        /// The length field.
        field: &'static str,
        /// The value found.
        length: i32,
    },
    /// The topic is not UTF-8. Corruption.
    #[error("topic is not valid UTF-8")]
    NonUtf8Topic,
    /// The properties of a batch item are not UTF-8. The batch is refused.
    #[error("properties are not valid UTF-8")]
    NonUtf8Properties,
    /// A host port is outside 0..=65535 (Java cannot build the address either). Corruption.
    #[error("{field} port {port} is out of range")]
    InvalidPort {
        /// The host field.
        field: &'static str,
        /// The value found.
        port: i32,
    },
    /// A string is not an offset message id (32 or 56 hex digits). Answer the request with
    /// an error.
    #[error("`{id}` is not an offset message id")]
    InvalidMessageId {
        /// The string received.
        id: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Properties

/// Encodes properties as Java 4.9.1+ writes them: `k1 \x01 v1 \x02 k2 \x01 v2`, no trailing
/// separator, in key order. Keys and values must not contain the separators and must not be
/// empty (the decoder drops such pairs).
pub fn encode_properties<K: AsRef<str>, V: AsRef<str>>(properties: &BTreeMap<K, V>) -> String {
    let size = properties
        .iter()
        .map(|(key, value)| key.as_ref().len() + value.as_ref().len() + 2)
        .sum();
    let mut out = String::with_capacity(size);
    for (key, value) in properties {
        if !out.is_empty() {
            out.push(PROPERTY_SEPARATOR);
        }
        out.push_str(key.as_ref());
        out.push(NAME_VALUE_SEPARATOR);
        out.push_str(value.as_ref());
    }
    out
}

/// Iterates the pairs of a properties string as Java's `string2messageProperties` reads them:
/// empty segments and pairs with an empty key or value are skipped; the value runs from the
/// first `\x01` to the next `\x02` (so it may itself hold `\x01`); a trailing `\x02` is fine.
///
/// Every send and every dispatch reads properties, so the separators are found with a vector
/// byte search. Both are ASCII, so every index found is a character boundary.
fn property_pairs(properties: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut start = 0;
    memchr::memchr_iter(PROPERTY_SEPARATOR as u8, properties.as_bytes())
        .chain([properties.len()])
        .filter_map(move |end| {
            let segment = &properties[start..end];
            start = end + 1;
            let split = memchr::memchr(NAME_VALUE_SEPARATOR as u8, segment.as_bytes())?;
            Some((&segment[..split], &segment[split + 1..]))
        })
        .filter(|(key, value)| !key.is_empty() && !value.is_empty())
}

/// Decodes a properties string leniently, as Java's `string2messageProperties`: empty segments
/// and pairs with an empty key or value are skipped, a trailing `\x02` (ali-ons, C++) is
/// accepted, and of duplicate keys the last wins.
pub fn decode_properties(properties: &str) -> BTreeMap<String, String> {
    property_map(properties)
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// [`decode_properties`] borrowing from `properties`: for reading and editing a message's
/// properties before encoding them again, without a copy of every name and value.
pub fn property_map(properties: &str) -> BTreeMap<&str, &str> {
    property_pairs(properties).collect()
}

/// The value of property `key` in an encoded properties string, read as
/// [`decode_properties`] would (last occurrence wins), without building the map.
pub fn find_property<'a>(properties: &'a str, key: &str) -> Option<&'a str> {
    property_pairs(properties)
        .filter(|(name, _)| *name == key)
        .map(|(_, value)| value)
        .last()
}

/// The non-empty keys in a [`property_key::KEYS`] value, as the index dispatcher splits it.
pub fn split_keys(keys: &str) -> impl Iterator<Item = &str> {
    keys.split(property_key::KEY_SEPARATOR)
        .filter(|key| !key.is_empty())
}

/// Parses a delay level as Java's `Integer.parseInt`; absent or unparsable is 0 (no delay).
fn parse_delay_level(value: Option<&str>) -> i32 {
    value.and_then(|level| level.parse().ok()).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Hashes and CRC

/// Java's `String.hashCode()`: `s[0]*31^(n-1) + … + s[n-1]` over UTF-16 code units, wrapping.
pub fn java_string_hash(s: &str) -> i32 {
    java_string_hash_from(0, s)
}

/// Java's `String.hashCode()` of a string that starts with text hashing to `hash` and goes on
/// with `s`: the hash of a concatenation, without building it.
pub fn java_string_hash_from(hash: i32, s: &str) -> i32 {
    s.encode_utf16().fold(hash, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The consume-queue tags code of a tag (`MessageExtBrokerInner.tagsString2tagsCode`): its
/// Java hash, widened; 0 for no tag. (Schedule-topic records carry a delivery time instead;
/// see [`DispatchRequest::delay_level`].)
pub fn tags_code(tags: &str) -> i64 {
    i64::from(java_string_hash(tags))
}

/// BODYCRC of `body`: CRC-32 (IEEE) masked with `0x7FFFFFFF`, as RocketMQ's `UtilAll.crc32`.
pub fn body_crc(body: &[u8]) -> i32 {
    (crc32fast::hash(body) & 0x7FFF_FFFF) as i32
}

// ---------------------------------------------------------------------------------------------
// Hosts and message ids

/// The address as Java sees it: an IPv4-mapped IPv6 address is IPv4 (Java's `InetAddress`
/// turns `::ffff:a.b.c.d` into an `Inet4Address`, so a Java broker writes 4 bytes for it).
fn canonical_ip(addr: &SocketAddr) -> IpAddr {
    addr.ip().to_canonical()
}

/// Bytes a host takes in a record.
fn host_size(v6: bool) -> usize {
    if v6 { 16 + 4 } else { 4 + 4 }
}

/// Appends a host: address bytes, then the port as an `i32`.
fn put_host(out: &mut Vec<u8>, addr: &SocketAddr) {
    match canonical_ip(addr) {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&i32::from(addr.port()).to_be_bytes());
}

/// Builds the address of a host field; a 16-byte IPv4-mapped address reads as IPv4, as Java.
fn host_addr(ip: &[u8], port: i32, field: &'static str) -> Result<SocketAddr, RecordError> {
    let port = u16::try_from(port).map_err(|_| RecordError::InvalidPort { field, port })?;
    let ip = match <[u8; 4]>::try_from(ip) {
        Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        Err(_) => {
            let v6 = <[u8; 16]>::try_from(ip).expect("a host field holds 4 or 16 address bytes");
            IpAddr::V6(Ipv6Addr::from(v6)).to_canonical()
        }
    };
    Ok(SocketAddr::new(ip, port))
}

/// The offset message id (`MessageDecoder.createMessageId`): uppercase hex of the store
/// host's address bytes, its port as `i32` and the record's commit-log offset as `i64` —
/// 32 characters for IPv4, 56 for IPv6.
pub fn create_message_id(store_host: SocketAddr, commit_log_offset: i64) -> String {
    let mut id = String::with_capacity(2 * (16 + 4 + 8));
    match canonical_ip(&store_host) {
        IpAddr::V4(ip) => push_hex_upper(&mut id, &ip.octets()),
        IpAddr::V6(ip) => push_hex_upper(&mut id, &ip.octets()),
    }
    push_hex_upper(&mut id, &i32::from(store_host.port()).to_be_bytes());
    push_hex_upper(&mut id, &commit_log_offset.to_be_bytes());
    id
}

/// Appends `bytes` as uppercase hex, two digits each (`UtilAll.bytes2string`): message ids
/// are built this way for every message sent and stored.
pub fn push_hex_upper(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xF)]));
    }
}

/// Reads an offset message id (`MessageDecoder.decodeMessageId`): 32 hex digits for an IPv4
/// store host, 56 for IPv6 (either case). Returns the store host and the commit-log offset.
pub fn decode_message_id(id: &str) -> Result<(SocketAddr, i64), RecordError> {
    let invalid = || RecordError::InvalidMessageId { id: id.to_owned() };
    let ip_size = match id.len() {
        32 => 4,
        56 => 16,
        _ => return Err(invalid()),
    };
    let bytes = id
        .as_bytes()
        .chunks_exact(2)
        .map(|pair| {
            let digit = |c: u8| char::from(c).to_digit(16);
            Some(((digit(pair[0])? << 4) | digit(pair[1])?) as u8)
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    let (ip, rest) = bytes.split_at(ip_size);
    let (port, offset) = rest.split_at(4);
    let port = i32::from_be_bytes(port.try_into().expect("4 port bytes follow the address"));
    let offset = i64::from_be_bytes(offset.try_into().expect("8 offset bytes end the id"));
    let addr = host_addr(ip, port, "STOREHOST").map_err(|_| invalid())?;
    Ok((addr, offset))
}

// ---------------------------------------------------------------------------------------------
// The message handed to the store

/// A message handed to the store for appending (Java's `MessageExtBrokerInner`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInner {
    /// Topic (at most [`TOPIC_LENGTH_MAX`] UTF-8 bytes).
    pub topic: String,
    /// Queue id within the topic.
    pub queue_id: i32,
    /// User flag from the send header.
    pub flag: i32,
    /// Body, as received (compressed if `sys_flag` says so).
    pub body: Bytes,
    /// Properties in their encoded form (see [`encode_properties`]).
    pub properties: String,
    /// Consume-queue tags code (not stored in the record; carried for dispatch).
    pub tags_code: i64,
    /// SYSFLAG; the encoder sets the host-family bits itself.
    pub sys_flag: i32,
    /// Producer timestamp, ms.
    pub born_timestamp: i64,
    /// Producer address.
    pub born_host: SocketAddr,
    /// This broker's address.
    pub store_host: SocketAddr,
    /// Store timestamp, ms (set under the append lock).
    pub store_timestamp: i64,
    /// Retry count.
    pub reconsume_times: i32,
    /// Commit-log offset of the half message (set on transaction commit/rollback).
    pub prepared_transaction_offset: i64,
}

impl MessageInner {
    /// The value of property `key`.
    pub fn property(&self, key: &str) -> Option<&str> {
        find_property(&self.properties, key)
    }

    /// The properties as a map.
    pub fn properties_map(&self) -> BTreeMap<String, String> {
        decode_properties(&self.properties)
    }

    /// Replaces the properties with `map`, re-encoded.
    pub fn set_properties_map(&mut self, map: &BTreeMap<String, String>) {
        self.properties = encode_properties(map);
    }

    /// Sets property `key` to `value` and re-encodes the properties (in key order, without
    /// the pairs the lenient decoder drops). Neither may contain the separators; an empty
    /// value is dropped.
    pub fn set_property(&mut self, key: &str, value: &str) {
        let mut map = self.properties_map();
        map.insert(key.to_owned(), value.to_owned());
        self.set_properties_map(&map);
    }

    /// Removes property `key` and re-encodes the properties; returns its value.
    pub fn remove_property(&mut self, key: &str) -> Option<String> {
        let mut map = self.properties_map();
        let removed = map.remove(key);
        if removed.is_some() {
            self.set_properties_map(&map);
        }
        removed
    }

    /// The [`property_key::KEYS`] value (keys separated by spaces; see [`split_keys`]).
    pub fn keys(&self) -> Option<&str> {
        self.property(property_key::KEYS)
    }

    /// The [`property_key::TAGS`] value.
    pub fn tags(&self) -> Option<&str> {
        self.property(property_key::TAGS)
    }

    /// The client unique id ([`property_key::UNIQ_KEY`]).
    pub fn uniq_key(&self) -> Option<&str> {
        self.property(property_key::UNIQ_KEY)
    }

    /// The delay level ([`property_key::DELAY`]); 0 when absent or not a number.
    pub fn delay_time_level(&self) -> i32 {
        parse_delay_level(self.property(property_key::DELAY))
    }

    /// The transaction type (`sys_flag::TRANSACTION_*_TYPE`).
    pub fn transaction_type(&self) -> i32 {
        sys_flag::transaction_value(self.sys_flag)
    }

    /// SYSFLAG as written: `sys_flag` with the host-family bits set from the addresses.
    pub fn stored_sys_flag(&self) -> i32 {
        let mut flag = self.sys_flag & !(sys_flag::BORNHOST_V6 | sys_flag::STOREHOSTADDRESS_V6);
        if canonical_ip(&self.born_host).is_ipv6() {
            flag |= sys_flag::BORNHOST_V6;
        }
        if canonical_ip(&self.store_host).is_ipv6() {
            flag |= sys_flag::STOREHOSTADDRESS_V6;
        }
        flag
    }
}

/// Size in bytes of the record [`encode_record`] writes for `msg` (limits not checked).
pub fn record_size(msg: &MessageInner) -> usize {
    let flag = msg.stored_sys_flag();
    let v6_hosts = usize::from(flag & sys_flag::BORNHOST_V6 != 0)
        + usize::from(flag & sys_flag::STOREHOSTADDRESS_V6 != 0);
    RECORD_SIZE_MIN
        + V6_HOST_EXTRA_SIZE * v6_hosts
        + msg.body.len()
        + msg.topic.len()
        + msg.properties.len()
}

/// Appends the record of `msg` to `out`, with the given consume-queue offset and the record's
/// own commit-log offset, under the default size limit [`MESSAGE_SIZE_MAX_DEFAULT`]. Returns
/// the bytes written ([`record_size`]). See [`encode_record_limited`].
pub fn encode_record(
    msg: &MessageInner,
    queue_offset: i64,
    physical_offset: i64,
    out: &mut Vec<u8>,
) -> Result<usize, RecordError> {
    encode_record_limited(
        msg,
        queue_offset,
        physical_offset,
        MESSAGE_SIZE_MAX_DEFAULT,
        out,
    )
}

/// [`encode_record`] with the store's configured `maxMessageSize` as the limit on the whole
/// record (as RocketMQ ≤ 4.9.3; 4.9.4+ limits the body to it and the record to it + 64 KiB).
///
/// Fails, before writing anything, with [`RecordError::TopicTooLong`],
/// [`RecordError::PropertiesSizeExceeded`] or [`RecordError::MessageSizeExceeded`]. SYSFLAG is
/// written with the host-family bits matching the addresses ([`MessageInner::stored_sys_flag`])
/// and BODYCRC is computed here ([`body_crc`]).
pub fn encode_record_limited(
    msg: &MessageInner,
    queue_offset: i64,
    physical_offset: i64,
    message_size_max: usize,
    out: &mut Vec<u8>,
) -> Result<usize, RecordError> {
    let topic = msg.topic.as_bytes();
    if topic.len() > TOPIC_LENGTH_MAX {
        return Err(RecordError::TopicTooLong { size: topic.len() });
    }
    let properties = msg.properties.as_bytes();
    if properties.len() > PROPERTIES_SIZE_MAX {
        return Err(RecordError::PropertiesSizeExceeded {
            size: properties.len(),
        });
    }
    let size = record_size(msg);
    let max = message_size_max.min(i32::MAX as usize);
    if size > max {
        return Err(RecordError::MessageSizeExceeded { size, max });
    }
    let as_i32 = |n: usize| i32::try_from(n).expect("record sizes were checked against i32::MAX");

    let start = out.len();
    out.reserve(size);
    out.extend_from_slice(&as_i32(size).to_be_bytes());
    out.extend_from_slice(&MESSAGE_MAGIC_CODE.to_be_bytes());
    out.extend_from_slice(&body_crc(&msg.body).to_be_bytes());
    out.extend_from_slice(&msg.queue_id.to_be_bytes());
    out.extend_from_slice(&msg.flag.to_be_bytes());
    out.extend_from_slice(&queue_offset.to_be_bytes());
    out.extend_from_slice(&physical_offset.to_be_bytes());
    out.extend_from_slice(&msg.stored_sys_flag().to_be_bytes());
    out.extend_from_slice(&msg.born_timestamp.to_be_bytes());
    put_host(out, &msg.born_host);
    out.extend_from_slice(&msg.store_timestamp.to_be_bytes());
    put_host(out, &msg.store_host);
    out.extend_from_slice(&msg.reconsume_times.to_be_bytes());
    out.extend_from_slice(&msg.prepared_transaction_offset.to_be_bytes());
    out.extend_from_slice(&as_i32(msg.body.len()).to_be_bytes());
    out.extend_from_slice(&msg.body);
    out.push(topic.len() as u8);
    out.extend_from_slice(topic);
    out.extend_from_slice(&(properties.len() as u16).to_be_bytes());
    out.extend_from_slice(properties);

    assert_eq!(
        out.len() - start,
        size,
        "record_size matches the bytes encoded"
    );
    #[cfg(feature = "verify")]
    match check_record(&out[start..], true) {
        RecordCheck::Message(request) => assert_eq!(request.msg_size, size),
        other => panic!("an encoded record does not check back: {other:?}"),
    }
    Ok(size)
}

/// The BLANK record that fills the last `size` bytes of a segment (only its 8 bytes are
/// written; the rest of the segment is left as it is). `size` is at least
/// [`END_FILE_MIN_BLANK_LENGTH`], which the appender always keeps free.
pub fn encode_blank(size: usize) -> [u8; 8] {
    assert!(
        size >= END_FILE_MIN_BLANK_LENGTH,
        "a segment always keeps room for a blank record"
    );
    let size = i32::try_from(size).expect("a blank record covers at most one segment (< 2 GiB)");
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&size.to_be_bytes());
    out[4..].copy_from_slice(&BLANK_MAGIC_CODE.to_be_bytes());
    out
}

// ---------------------------------------------------------------------------------------------
// Reading records

/// A message read back from a record (Java's `MessageExt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// TOTALSIZE: the record's size in bytes.
    pub store_size: usize,
    /// BODYCRC as stored.
    pub body_crc: i32,
    /// QUEUEID.
    pub queue_id: i32,
    /// FLAG.
    pub flag: i32,
    /// QUEUEOFFSET: offset in the consume queue.
    pub queue_offset: i64,
    /// PHYSICALOFFSET: the record's own commit-log offset.
    pub commit_log_offset: i64,
    /// SYSFLAG.
    pub sys_flag: i32,
    /// BORNTIMESTAMP, ms.
    pub born_timestamp: i64,
    /// BORNHOST.
    pub born_host: SocketAddr,
    /// STORETIMESTAMP, ms.
    pub store_timestamp: i64,
    /// STOREHOSTADDRESS.
    pub store_host: SocketAddr,
    /// RECONSUMETIMES.
    pub reconsume_times: i32,
    /// PREPARED_TRANSACTION_OFFSET.
    pub prepared_transaction_offset: i64,
    /// BODY as stored (not decompressed); `None` when not read.
    pub body: Option<Bytes>,
    /// TOPIC.
    pub topic: String,
    /// PROPERTIES, encoded (invalid UTF-8 replaced, as Java's `new String(bytes, UTF_8)`).
    pub properties: String,
    /// The offset message id ([`create_message_id`] of the store host and commit-log offset).
    pub msg_id: String,
}

impl StoredMessage {
    /// The value of property `key`.
    pub fn property(&self, key: &str) -> Option<&str> {
        find_property(&self.properties, key)
    }

    /// The properties as a map.
    pub fn properties_map(&self) -> BTreeMap<String, String> {
        decode_properties(&self.properties)
    }

    /// The [`property_key::KEYS`] value.
    pub fn keys(&self) -> Option<&str> {
        self.property(property_key::KEYS)
    }

    /// The [`property_key::TAGS`] value.
    pub fn tags(&self) -> Option<&str> {
        self.property(property_key::TAGS)
    }

    /// The client unique id ([`property_key::UNIQ_KEY`]).
    pub fn uniq_key(&self) -> Option<&str> {
        self.property(property_key::UNIQ_KEY)
    }

    /// The delay level ([`property_key::DELAY`]); 0 when absent or not a number.
    pub fn delay_time_level(&self) -> i32 {
        parse_delay_level(self.property(property_key::DELAY))
    }

    /// The transaction type (`sys_flag::TRANSACTION_*_TYPE`).
    pub fn transaction_type(&self) -> i32 {
        sys_flag::transaction_value(self.sys_flag)
    }

    /// The message as it would be appended again (schedule delivery, transaction commit):
    /// every field carried over, the tags code recomputed from `TAGS`, an unread body empty.
    pub fn into_inner(self) -> MessageInner {
        let tags_code = tags_code(self.tags().unwrap_or_default());
        MessageInner {
            topic: self.topic,
            queue_id: self.queue_id,
            flag: self.flag,
            body: self.body.unwrap_or_default(),
            properties: self.properties,
            tags_code,
            sys_flag: self.sys_flag,
            born_timestamp: self.born_timestamp,
            born_host: self.born_host,
            store_host: self.store_host,
            store_timestamp: self.store_timestamp,
            reconsume_times: self.reconsume_times,
            prepared_transaction_offset: self.prepared_transaction_offset,
        }
    }
}

/// What dispatch (ConsumeQueue, IndexFile, long-poll wake-up) needs from one record, read
/// without copying the body (Java's `DispatchRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchRequest {
    /// TOPIC.
    pub topic: String,
    /// QUEUEID.
    pub queue_id: i32,
    /// PHYSICALOFFSET.
    pub commit_log_offset: i64,
    /// TOTALSIZE.
    pub msg_size: usize,
    /// Java hash of `TAGS` (0 without tags). For `SCHEDULE_TOPIC_XXXX` records with a
    /// positive [`delay_level`](Self::delay_level) the dispatcher replaces it with the
    /// delivery time `store_timestamp + delay(min(level, max level))`, which needs the
    /// delay-level table this codec does not know.
    pub tags_code: i64,
    /// STORETIMESTAMP.
    pub store_timestamp: i64,
    /// QUEUEOFFSET.
    pub consume_queue_offset: i64,
    /// The `KEYS` property.
    pub keys: Option<String>,
    /// The `UNIQ_KEY` property.
    pub uniq_key: Option<String>,
    /// SYSFLAG.
    pub sys_flag: i32,
    /// PREPARED_TRANSACTION_OFFSET.
    pub prepared_transaction_offset: i64,
    /// The `DELAY` property as a number (0 when absent or not a number).
    pub delay_level: i32,
}

/// What [`check_record`] found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordCheck {
    /// A whole, consistent message record of `msg_size` bytes.
    Message(DispatchRequest),
    /// The end-of-segment filler: the log continues at the next segment.
    Blank {
        /// TOTALSIZE of the blank (the rest of the segment).
        size: usize,
    },
    /// Not a record: the end of the valid log (recovery) or corruption.
    Invalid(RecordError),
}

/// Big-endian reads from a buffer that fail, never panic, past its end.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], RecordError> {
        let end = self.pos.saturating_add(len);
        let bytes = self.buf.get(self.pos..end).ok_or(RecordError::Truncated {
            field,
            needed: end,
            available: self.buf.len(),
        })?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], RecordError> {
        Ok(self
            .take(N, field)?
            .try_into()
            .expect("take returns exactly the length asked"))
    }

    fn i8(&mut self, field: &'static str) -> Result<i8, RecordError> {
        Ok(i8::from_be_bytes(self.array(field)?))
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    /// A length field: an `i32`, `i16` or `i8` that must not be negative.
    fn length(&mut self, value: i32, field: &'static str) -> Result<usize, RecordError> {
        usize::try_from(value).map_err(|_| RecordError::NegativeLength {
            field,
            length: value,
        })
    }

    /// A host field: address bytes (4, or 16 for IPv6) and the raw port.
    fn host(&mut self, v6: bool, field: &'static str) -> Result<(&'a [u8], i32), RecordError> {
        let ip = self.take(if v6 { 16 } else { 4 }, field)?;
        let port = self.i32(field)?;
        Ok((ip, port))
    }
}

/// A message record, borrowed from the buffer.
struct RecordView<'a> {
    total_size: usize,
    body_crc: i32,
    queue_id: i32,
    flag: i32,
    queue_offset: i64,
    physical_offset: i64,
    sys_flag: i32,
    born_timestamp: i64,
    born_host: (&'a [u8], i32),
    store_timestamp: i64,
    store_host: (&'a [u8], i32),
    reconsume_times: i32,
    prepared_transaction_offset: i64,
    body: &'a [u8],
    topic: &'a str,
    properties: &'a [u8],
}

enum Parsed<'a> {
    Message(RecordView<'a>),
    Blank(usize),
}

/// Reads the record at the start of `buf` as `CommitLog.checkMessageAndReturnSize` does,
/// stricter where Java would accept nonsense (negative lengths, non-UTF-8 topics) and never
/// reporting a size beyond `buf`.
fn parse(buf: &[u8], check_crc: bool) -> Result<Parsed<'_>, RecordError> {
    let mut cursor = Cursor::new(buf);
    let total = cursor.i32("TOTALSIZE")?;
    if total == 0 {
        return Err(RecordError::UnwrittenSpace);
    }
    let magic = cursor.i32("MAGICCODE")?;
    let min = match magic {
        MESSAGE_MAGIC_CODE => RECORD_SIZE_MIN,
        BLANK_MAGIC_CODE => END_FILE_MIN_BLANK_LENGTH,
        magic => return Err(RecordError::BadMagic { magic }),
    };
    let total_size = usize::try_from(total)
        .ok()
        .filter(|size| *size >= min)
        .ok_or(RecordError::SizeTooSmall { size: total, min })?;
    if total_size > buf.len() {
        return Err(RecordError::SizeBeyondBuffer {
            size: total_size,
            available: buf.len(),
        });
    }
    if magic == BLANK_MAGIC_CODE {
        return Ok(Parsed::Blank(total_size));
    }

    let body_crc = cursor.i32("BODYCRC")?;
    let queue_id = cursor.i32("QUEUEID")?;
    let flag = cursor.i32("FLAG")?;
    let queue_offset = cursor.i64("QUEUEOFFSET")?;
    let physical_offset = cursor.i64("PHYSICALOFFSET")?;
    let sys_flag = cursor.i32("SYSFLAG")?;
    let born_timestamp = cursor.i64("BORNTIMESTAMP")?;
    let born_host = cursor.host(sys_flag & sys_flag::BORNHOST_V6 != 0, "BORNHOST")?;
    let store_timestamp = cursor.i64("STORETIMESTAMP")?;
    let store_host = cursor.host(
        sys_flag & sys_flag::STOREHOSTADDRESS_V6 != 0,
        "STOREHOSTADDRESS",
    )?;
    let reconsume_times = cursor.i32("RECONSUMETIMES")?;
    let prepared_transaction_offset = cursor.i64("PREPARED_TRANSACTION_OFFSET")?;
    let body_len = cursor.i32("BODYLENGTH")?;
    let body_len = cursor.length(body_len, "BODYLENGTH")?;
    let body = cursor.take(body_len, "BODY")?;
    // Java checks the CRC only of a non-empty body.
    if check_crc && !body.is_empty() {
        let computed = self::body_crc(body);
        if computed != body_crc {
            return Err(RecordError::CrcMismatch {
                stored: body_crc,
                computed,
            });
        }
    }
    let topic_len = cursor.i8("TOPICLENGTH")?;
    let topic_len = cursor.length(i32::from(topic_len), "TOPICLENGTH")?;
    let topic = cursor.take(topic_len, "TOPIC")?;
    let properties_len = cursor.i16("PROPERTIESLENGTH")?;
    let properties_len = cursor.length(i32::from(properties_len), "PROPERTIESLENGTH")?;
    let properties = cursor.take(properties_len, "PROPERTIES")?;
    if cursor.pos != total_size {
        return Err(RecordError::SizeMismatch {
            total_size,
            computed: cursor.pos,
        });
    }
    let topic = std::str::from_utf8(topic).map_err(|_| RecordError::NonUtf8Topic)?;
    Ok(Parsed::Message(RecordView {
        total_size,
        body_crc,
        queue_id,
        flag,
        queue_offset,
        physical_offset,
        sys_flag,
        born_timestamp,
        born_host,
        store_timestamp,
        store_host,
        reconsume_times,
        prepared_transaction_offset,
        body,
        topic,
        properties,
    }))
}

/// Checks the record at the start of `buf` for recovery and the reput tailer
/// (`checkMessageAndReturnSize(buf, checkCRC, readBody = false)`), copying no body.
///
/// `buf` may run past the record (it is usually the rest of a segment). With `check_crc` the
/// body's CRC is verified in place. A reported size never exceeds `buf.len()`.
pub fn check_record(buf: &[u8], check_crc: bool) -> RecordCheck {
    let view = match parse(buf, check_crc) {
        Ok(Parsed::Message(view)) => view,
        Ok(Parsed::Blank(size)) => return RecordCheck::Blank { size },
        Err(error) => return RecordCheck::Invalid(error),
    };
    // Dispatch needs four properties: one pass over them, without building the map (the last
    // of duplicates wins, as in the map).
    // Valid UTF-8 is checked the fast way; only a broken record pays for the lossy decoding.
    let properties = match std::str::from_utf8(view.properties) {
        Ok(properties) => Cow::Borrowed(properties),
        Err(_) => String::from_utf8_lossy(view.properties),
    };
    let [mut tags, mut keys, mut uniq_key, mut delay] = [None; 4];
    for (name, value) in property_pairs(&properties) {
        let slot = match name {
            property_key::TAGS => &mut tags,
            property_key::KEYS => &mut keys,
            property_key::UNIQ_KEY => &mut uniq_key,
            property_key::DELAY => &mut delay,
            _ => continue,
        };
        *slot = Some(value);
    }
    RecordCheck::Message(DispatchRequest {
        topic: view.topic.to_owned(),
        queue_id: view.queue_id,
        commit_log_offset: view.physical_offset,
        msg_size: view.total_size,
        tags_code: tags.map_or(0, tags_code),
        store_timestamp: view.store_timestamp,
        consume_queue_offset: view.queue_offset,
        keys: keys.map(str::to_owned),
        uniq_key: uniq_key.map(str::to_owned),
        sys_flag: view.sys_flag,
        prepared_transaction_offset: view.prepared_transaction_offset,
        delay_level: parse_delay_level(delay),
    })
}

/// Decodes the message record at the start of `buf` (`MessageDecoder.decode`); `buf` may run
/// past it. With `check_crc` the body CRC is verified; without `read_body` the body is
/// skipped (`body` is `None`). A BLANK record is [`RecordError::BlankRecord`].
pub fn decode_record(
    buf: &[u8],
    check_crc: bool,
    read_body: bool,
) -> Result<StoredMessage, RecordError> {
    let view = match parse(buf, check_crc)? {
        Parsed::Message(view) => view,
        Parsed::Blank(size) => return Err(RecordError::BlankRecord { size }),
    };
    let born_host = host_addr(view.born_host.0, view.born_host.1, "BORNHOST")?;
    let store_host = host_addr(view.store_host.0, view.store_host.1, "STOREHOSTADDRESS")?;
    Ok(StoredMessage {
        store_size: view.total_size,
        body_crc: view.body_crc,
        queue_id: view.queue_id,
        flag: view.flag,
        queue_offset: view.queue_offset,
        commit_log_offset: view.physical_offset,
        sys_flag: view.sys_flag,
        born_timestamp: view.born_timestamp,
        born_host,
        store_timestamp: view.store_timestamp,
        store_host,
        reconsume_times: view.reconsume_times,
        prepared_transaction_offset: view.prepared_transaction_offset,
        body: read_body.then(|| Bytes::copy_from_slice(view.body)),
        topic: view.topic.to_owned(),
        properties: String::from_utf8_lossy(view.properties).into_owned(),
        msg_id: create_message_id(store_host, view.physical_offset),
    })
}

/// Decodes the concatenated records of a PULL/VIEW/QUERY body as the client does
/// (`MessageDecoder.decodes`): in order, stopping silently at the first malformed record.
/// CRCs are not checked; bodies are returned as stored (not decompressed).
pub fn decode_records(buf: &[u8]) -> Vec<StoredMessage> {
    let mut messages = Vec::new();
    let mut pos = 0;
    while let Some(rest) = buf.get(pos..).filter(|rest| !rest.is_empty()) {
        let Ok(message) = decode_record(rest, false, true) else {
            break;
        };
        pos += message.store_size;
        messages.push(message);
    }
    messages
}

// ---------------------------------------------------------------------------------------------
// SEND_BATCH_MESSAGE bodies

/// One inner message of a SEND_BATCH_MESSAGE body (`MessageDecoder.encodeMessage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    /// User flag.
    pub flag: i32,
    /// Body.
    pub body: Bytes,
    /// Encoded properties (the item's own `UNIQ_KEY`, `TAGS`, `KEYS`, ...).
    pub properties: String,
}

/// Decodes a SEND_BATCH_MESSAGE body: inner messages back to back, each
/// `TOTALSIZE i32 | MAGICCODE i32 (0) | BODYCRC i32 (0) | FLAG i32 | BODYLEN i32 | BODY |
/// PROPSLEN i16 | PROPS`. Like the Java broker, TOTALSIZE, MAGICCODE and BODYCRC are skipped
/// unread and each item is read field by field; negative lengths, truncation and non-UTF-8
/// properties fail the whole batch.
pub fn decode_batch(body: &[u8]) -> Result<Vec<BatchItem>, RecordError> {
    let mut cursor = Cursor::new(body);
    let mut items = Vec::new();
    while cursor.pos < body.len() {
        cursor.take(12, "TOTALSIZE, MAGICCODE and BODYCRC")?;
        let flag = cursor.i32("FLAG")?;
        let body_len = cursor.i32("BODYLENGTH")?;
        let body_len = cursor.length(body_len, "BODYLENGTH")?;
        let item_body = cursor.take(body_len, "BODY")?;
        let properties_len = cursor.i16("PROPERTIESLENGTH")?;
        let properties_len = cursor.length(i32::from(properties_len), "PROPERTIESLENGTH")?;
        let properties = cursor.take(properties_len, "PROPERTIES")?;
        let properties =
            std::str::from_utf8(properties).map_err(|_| RecordError::NonUtf8Properties)?;
        items.push(BatchItem {
            flag,
            body: Bytes::copy_from_slice(item_body),
            properties: properties.to_owned(),
        });
    }
    Ok(items)
}

/// Encodes a SEND_BATCH_MESSAGE body (`MessageDecoder.encodeMessages`): TOTALSIZE =
/// 22 + body + properties, MAGICCODE and BODYCRC 0. Fails with
/// [`RecordError::PropertiesSizeExceeded`] or [`RecordError::MessageSizeExceeded`] (an item
/// over `i32::MAX` bytes) as Java's encoder throws.
pub fn encode_batch(items: &[BatchItem]) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::new();
    for item in items {
        let properties = item.properties.as_bytes();
        if properties.len() > PROPERTIES_SIZE_MAX {
            return Err(RecordError::PropertiesSizeExceeded {
                size: properties.len(),
            });
        }
        let size = BATCH_ITEM_SIZE_MIN + item.body.len() + properties.len();
        let total = i32::try_from(size).map_err(|_| RecordError::MessageSizeExceeded {
            size,
            max: i32::MAX as usize,
        })?;
        let body_len = i32::try_from(item.body.len()).expect("the body is smaller than the item");
        out.reserve(size);
        out.extend_from_slice(&total.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&item.flag.to_be_bytes());
        out.extend_from_slice(&body_len.to_be_bytes());
        out.extend_from_slice(&item.body);
        out.extend_from_slice(&(properties.len() as u16).to_be_bytes());
        out.extend_from_slice(properties);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
