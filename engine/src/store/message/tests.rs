//! Golden vectors written out field by field from `spec/broker-store.md` §2.2 (values checked
//! independently with Python's `zlib.crc32` and a UTF-16 `hashCode`), the lenient cases of
//! Java's readers, the size limits, and property tests of the codecs.

use std::net::{SocketAddrV6, ToSocketAddrs};

use proptest::prelude::*;

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.to_socket_addrs().unwrap().next().unwrap()
}

/// `KEYS=order-1`, `TAGS=TagA`: 22 bytes.
const V4_PROPERTIES: &str = "KEYS\u{1}order-1\u{2}TAGS\u{1}TagA";

fn v4_message() -> MessageInner {
    MessageInner {
        topic: "TopicTest".into(),
        queue_id: 3,
        flag: 0,
        body: Bytes::from_static(b"Hello"),
        properties: V4_PROPERTIES.into(),
        tags_code: 2_598_919,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: addr("192.168.0.10:51234"),
        store_host: addr("127.0.0.1:10911"),
        store_timestamp: 1_700_000_000_123,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    }
}

/// The record of [`v4_message`] at queue offset 7, commit-log offset 0x1234: 127 bytes.
fn v4_golden() -> Vec<u8> {
    [
        &[0x00, 0x00, 0x00, 0x7F][..], // TOTALSIZE 127 = 91 + 5 + 9 + 22
        &[0xDA, 0xA3, 0x20, 0xA7],     // MAGICCODE
        &[0x77, 0xD1, 0x89, 0x82],     // BODYCRC crc32("Hello") & 0x7FFFFFFF
        &[0x00, 0x00, 0x00, 0x03],     // QUEUEID 3
        &[0x00, 0x00, 0x00, 0x00],     // FLAG 0
        &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07], // QUEUEOFFSET 7
        &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x12, 0x34], // PHYSICALOFFSET 0x1234
        &[0x00, 0x00, 0x00, 0x00],     // SYSFLAG 0
        &[0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x68, 0x00], // BORNTIMESTAMP 1700000000000
        &[0xC0, 0xA8, 0x00, 0x0A, 0x00, 0x00, 0xC8, 0x22], // BORNHOST 192.168.0.10:51234
        &[0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x68, 0x7B], // STORETIMESTAMP 1700000000123
        &[0x7F, 0x00, 0x00, 0x01, 0x00, 0x00, 0x2A, 0x9F], // STOREHOST 127.0.0.1:10911
        &[0x00, 0x00, 0x00, 0x00],     // RECONSUMETIMES 0
        &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // PREPARED_TRANSACTION_OFFSET 0
        &[0x00, 0x00, 0x00, 0x05],     // BODYLENGTH 5
        b"Hello",                      // BODY
        &[0x09],                       // TOPICLENGTH 9
        b"TopicTest",                  // TOPIC
        &[0x00, 0x16],                 // PROPERTIESLENGTH 22
        b"KEYS\x01order-1\x02TAGS\x01TagA", // PROPERTIES
    ]
    .concat()
}

/// `TRAN_MSG=true`, `PGROUP=pg`: 23 bytes.
const V6_PROPERTIES: &str = "TRAN_MSG\u{1}true\u{2}PGROUP\u{1}pg";

/// A committed transactional message from an IPv6 producer.
fn v6_message() -> MessageInner {
    MessageInner {
        topic: "TopicV6".into(),
        queue_id: 1,
        flag: 9,
        body: Bytes::from_static(b"hi v6"),
        properties: V6_PROPERTIES.into(),
        tags_code: 0,
        sys_flag: sys_flag::TRANSACTION_COMMIT_TYPE,
        born_timestamp: 1_700_000_001_000,
        born_host: addr("[2001:db8::1]:40000"),
        store_host: addr("10.0.0.5:10911"),
        store_timestamp: 1_700_000_001_005,
        reconsume_times: 2,
        prepared_transaction_offset: 0x1234,
    }
}

/// The record of [`v6_message`] at queue offset 5, commit-log offset 1 GiB: 138 bytes.
fn v6_golden() -> Vec<u8> {
    [
        &[0x00, 0x00, 0x00, 0x8A][..], // TOTALSIZE 138 = 91 + 12 + 5 + 7 + 23
        &[0xDA, 0xA3, 0x20, 0xA7],     // MAGICCODE
        &[0x27, 0xDC, 0x7E, 0x11],     // BODYCRC crc32("hi v6") & 0x7FFFFFFF
        &[0x00, 0x00, 0x00, 0x01],     // QUEUEID 1
        &[0x00, 0x00, 0x00, 0x09],     // FLAG 9
        &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05], // QUEUEOFFSET 5
        &[0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00], // PHYSICALOFFSET 1 GiB
        &[0x00, 0x00, 0x00, 0x18],     // SYSFLAG COMMIT | BORNHOST_V6
        &[0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x6B, 0xE8], // BORNTIMESTAMP 1700000001000
        &[0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00], // BORNHOST 2001:db8::1 ...
        &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01], //   ... (16 address bytes)
        &[0x00, 0x00, 0x9C, 0x40],     //   port 40000
        &[0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x6B, 0xED], // STORETIMESTAMP 1700000001005
        &[0x0A, 0x00, 0x00, 0x05, 0x00, 0x00, 0x2A, 0x9F], // STOREHOST 10.0.0.5:10911
        &[0x00, 0x00, 0x00, 0x02],     // RECONSUMETIMES 2
        &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x12, 0x34], // PREPARED_TRANSACTION_OFFSET
        &[0x00, 0x00, 0x00, 0x05],     // BODYLENGTH 5
        b"hi v6",                      // BODY
        &[0x07],                       // TOPICLENGTH 7
        b"TopicV6",                    // TOPIC
        &[0x00, 0x17],                 // PROPERTIESLENGTH 23
        b"TRAN_MSG\x01true\x02PGROUP\x01pg", // PROPERTIES
    ]
    .concat()
}

fn encode(msg: &MessageInner, queue_offset: i64, physical_offset: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let written = encode_record(msg, queue_offset, physical_offset, &mut out).unwrap();
    assert_eq!(written, out.len());
    out
}

fn invalid(buf: &[u8]) -> RecordError {
    match check_record(buf, true) {
        RecordCheck::Invalid(error) => error,
        other => panic!("expected an invalid record, got {other:?}"),
    }
}

// --- golden records --------------------------------------------------------------------------

#[test]
fn ipv4_record_encodes_to_the_golden_vector() {
    let msg = v4_message();
    assert_eq!(record_size(&msg), 127);
    assert_eq!(encode(&msg, 7, 0x1234), v4_golden());
}

#[test]
fn ipv4_golden_vector_decodes_every_field() {
    let decoded = decode_record(&v4_golden(), true, true).unwrap();
    assert_eq!(
        decoded,
        StoredMessage {
            store_size: 127,
            body_crc: 0x77D1_8982,
            queue_id: 3,
            flag: 0,
            queue_offset: 7,
            commit_log_offset: 0x1234,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            born_host: addr("192.168.0.10:51234"),
            store_timestamp: 1_700_000_000_123,
            store_host: addr("127.0.0.1:10911"),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: Some(Bytes::from_static(b"Hello")),
            topic: "TopicTest".into(),
            properties: V4_PROPERTIES.into(),
            msg_id: "7F00000100002A9F0000000000001234".into(),
        }
    );
    assert_eq!(decoded.tags(), Some("TagA"));
    assert_eq!(decoded.keys(), Some("order-1"));
    assert_eq!(decoded.uniq_key(), None);
}

#[test]
fn ipv4_golden_vector_checks_as_a_dispatch_request() {
    let mut buf = v4_golden();
    buf.extend_from_slice(&[0xAB; 40]); // the rest of the segment follows the record
    let RecordCheck::Message(request) = check_record(&buf, true) else {
        panic!("the golden record checks");
    };
    assert_eq!(
        request,
        DispatchRequest {
            topic: "TopicTest".into(),
            queue_id: 3,
            commit_log_offset: 0x1234,
            msg_size: 127,
            tags_code: 2_598_919,
            store_timestamp: 1_700_000_000_123,
            consume_queue_offset: 7,
            keys: Some("order-1".into()),
            uniq_key: None,
            sys_flag: 0,
            prepared_transaction_offset: 0,
            delay_level: 0,
        }
    );
}

#[test]
fn ipv6_born_host_record_encodes_to_the_golden_vector_with_the_v6_flag() {
    let msg = v6_message();
    assert_eq!(record_size(&msg), 138);
    assert_eq!(msg.stored_sys_flag(), 0x18);
    assert_eq!(encode(&msg, 5, 1 << 30), v6_golden());
}

#[test]
fn ipv6_born_host_golden_vector_decodes_every_field() {
    let decoded = decode_record(&v6_golden(), true, true).unwrap();
    assert_eq!(
        decoded,
        StoredMessage {
            store_size: 138,
            body_crc: 0x27DC_7E11,
            queue_id: 1,
            flag: 9,
            queue_offset: 5,
            commit_log_offset: 1 << 30,
            sys_flag: 0x18,
            born_timestamp: 1_700_000_001_000,
            born_host: addr("[2001:db8::1]:40000"),
            store_timestamp: 1_700_000_001_005,
            store_host: addr("10.0.0.5:10911"),
            reconsume_times: 2,
            prepared_transaction_offset: 0x1234,
            body: Some(Bytes::from_static(b"hi v6")),
            topic: "TopicV6".into(),
            properties: V6_PROPERTIES.into(),
            msg_id: "0A00000500002A9F0000000040000000".into(),
        }
    );
    assert_eq!(
        decoded.transaction_type(),
        sys_flag::TRANSACTION_COMMIT_TYPE
    );
    assert_eq!(
        position::store_timestamp(decoded.sys_flag),
        48 + 20,
        "STORETIMESTAMP follows a 20-byte born host"
    );
}

#[test]
fn decoding_without_the_body_skips_it() {
    let decoded = decode_record(&v4_golden(), true, false).unwrap();
    assert_eq!(decoded.body, None);
    assert_eq!(decoded.topic, "TopicTest");
}

#[test]
fn a_stored_message_re_encodes_to_the_same_record() {
    let decoded = decode_record(&v6_golden(), true, true).unwrap();
    let (queue_offset, offset) = (decoded.queue_offset, decoded.commit_log_offset);
    let inner = decoded.into_inner();
    assert_eq!(inner.tags_code, 0);
    assert_eq!(encode(&inner, queue_offset, offset), v6_golden());
}

// --- blank records and invalid bytes ---------------------------------------------------------

#[test]
fn blank_record_is_the_size_then_the_blank_magic() {
    assert_eq!(
        encode_blank(100),
        [0x00, 0x00, 0x00, 0x64, 0xCB, 0xD4, 0x31, 0x94]
    );
    assert_eq!(
        encode_blank(8),
        [0x00, 0x00, 0x00, 0x08, 0xCB, 0xD4, 0x31, 0x94]
    );
}

#[test]
fn blank_record_checks_as_end_of_segment() {
    let mut segment_tail = vec![0u8; 100];
    segment_tail[..8].copy_from_slice(&encode_blank(100));
    assert_eq!(
        check_record(&segment_tail, true),
        RecordCheck::Blank { size: 100 }
    );
    assert_eq!(
        decode_record(&segment_tail, true, true),
        Err(RecordError::BlankRecord { size: 100 })
    );
}

#[test]
fn blank_record_smaller_than_8_or_past_the_buffer_is_invalid() {
    let mut tail = encode_blank(8).to_vec();
    tail[3] = 4;
    assert_eq!(
        invalid(&tail),
        RecordError::SizeTooSmall { size: 4, min: 8 }
    );
    let too_long = encode_blank(9);
    assert_eq!(
        invalid(&too_long),
        RecordError::SizeBeyondBuffer {
            size: 9,
            available: 8
        }
    );
}

#[test]
fn zero_total_size_is_unwritten_space() {
    assert_eq!(invalid(&[0u8; 64]), RecordError::UnwrittenSpace);
    assert_eq!(invalid(&[0u8; 4]), RecordError::UnwrittenSpace);
    assert!(invalid(&[0u8; 64]).to_string().contains("unwritten"));
}

#[test]
fn bad_magic_is_invalid() {
    let mut buf = v4_golden();
    buf[4..8].copy_from_slice(&0x1234_5678i32.to_be_bytes());
    assert_eq!(invalid(&buf), RecordError::BadMagic { magic: 0x1234_5678 });
}

#[test]
fn body_crc_mismatch_is_caught_only_when_checked() {
    let mut buf = v4_golden();
    buf[88] ^= 0x01; // first body byte
    assert!(matches!(
        invalid(&buf),
        RecordError::CrcMismatch {
            stored: 0x77D1_8982,
            ..
        }
    ));
    assert!(matches!(check_record(&buf, false), RecordCheck::Message(_)));
    assert!(decode_record(&buf, false, true).is_ok());
}

#[test]
fn total_size_disagreeing_with_the_fields_is_a_size_mismatch() {
    let mut buf = v4_golden();
    buf.extend_from_slice(&[0; 10]);
    buf[3] = 0x7F + 4;
    assert_eq!(
        invalid(&buf),
        RecordError::SizeMismatch {
            total_size: 131,
            computed: 127
        }
    );
}

#[test]
fn total_size_below_the_fixed_part_or_past_the_buffer_is_invalid() {
    let mut buf = v4_golden();
    buf[3] = 90;
    assert_eq!(
        invalid(&buf),
        RecordError::SizeTooSmall { size: 90, min: 91 }
    );
    buf[..4].copy_from_slice(&(-5i32).to_be_bytes());
    assert_eq!(
        invalid(&buf),
        RecordError::SizeTooSmall { size: -5, min: 91 }
    );
    let golden = v4_golden();
    assert_eq!(
        invalid(&golden[..126]),
        RecordError::SizeBeyondBuffer {
            size: 127,
            available: 126
        }
    );
}

#[test]
fn truncated_header_is_invalid() {
    assert_eq!(
        invalid(&[0, 0, 0]),
        RecordError::Truncated {
            field: "TOTALSIZE",
            needed: 4,
            available: 3
        }
    );
    assert_eq!(
        invalid(&v4_golden()[..6]),
        RecordError::Truncated {
            field: "MAGICCODE",
            needed: 8,
            available: 6
        }
    );
}

#[test]
fn body_length_running_past_the_buffer_is_truncated() {
    let mut buf = v4_golden();
    buf[84..88].copy_from_slice(&1000i32.to_be_bytes());
    assert_eq!(
        invalid(&buf),
        RecordError::Truncated {
            field: "BODY",
            needed: 1088,
            available: 127
        }
    );
}

#[test]
fn negative_lengths_are_invalid() {
    let mut buf = v4_golden();
    buf[84..88].copy_from_slice(&(-1i32).to_be_bytes());
    assert_eq!(
        invalid(&buf),
        RecordError::NegativeLength {
            field: "BODYLENGTH",
            length: -1
        }
    );
    let mut buf = v4_golden();
    buf[93] = 0x80; // TOPICLENGTH
    assert_eq!(
        invalid(&buf),
        RecordError::NegativeLength {
            field: "TOPICLENGTH",
            length: -128
        }
    );
}

#[test]
fn non_utf8_topic_is_invalid() {
    let mut buf = v4_golden();
    buf[94] = 0xFF; // first topic byte
    assert_eq!(invalid(&buf), RecordError::NonUtf8Topic);
}

#[test]
fn out_of_range_port_fails_decode_but_not_dispatch() {
    let mut buf = v4_golden();
    buf[52..56].copy_from_slice(&70_000i32.to_be_bytes()); // born port
    assert_eq!(
        decode_record(&buf, true, true),
        Err(RecordError::InvalidPort {
            field: "BORNHOST",
            port: 70_000
        })
    );
    assert!(matches!(check_record(&buf, true), RecordCheck::Message(_)));
}

#[test]
fn decode_records_stops_silently_at_the_first_malformed_record() {
    let mut buf = v4_golden();
    buf.extend_from_slice(&v6_golden());
    let mut broken = v4_golden();
    broken[4] = 0;
    buf.extend_from_slice(&broken);
    buf.extend_from_slice(&v4_golden());
    let messages = decode_records(&buf);
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].topic, "TopicTest");
    assert_eq!(messages[1].topic, "TopicV6");
    assert!(decode_records(&[]).is_empty());
}

// --- dispatch details ------------------------------------------------------------------------

#[test]
fn dispatch_reads_uniq_key_and_delay_level() {
    let mut msg = v4_message();
    msg.topic = "SCHEDULE_TOPIC_XXXX".into();
    msg.set_property(property_key::DELAY, "3");
    msg.set_property(property_key::UNIQ_KEY, "7F0000010C1C18B4AAC20B7E5A0A0000");
    let RecordCheck::Message(request) = check_record(&encode(&msg, 0, 0), true) else {
        panic!("the record checks");
    };
    assert_eq!(request.delay_level, 3);
    assert_eq!(
        request.uniq_key.as_deref(),
        Some("7F0000010C1C18B4AAC20B7E5A0A0000")
    );
    assert_eq!(request.tags_code, tags_code("TagA"));
}

#[test]
fn dispatch_reads_the_last_of_duplicate_properties_as_the_map_does() {
    let mut msg = v4_message();
    // A client may write a key twice (the broker only appends CLUSTER); Java's map keeps the
    // last value.
    msg.properties = "TAGS\u{1}first\u{2}KEYS\u{1}k1\u{2}TAGS\u{1}second\u{2}KEYS\u{1}k2 k3".into();
    let RecordCheck::Message(request) = check_record(&encode(&msg, 0, 0), true) else {
        panic!("the record checks");
    };
    assert_eq!(request.tags_code, tags_code("second"));
    assert_eq!(request.keys.as_deref(), Some("k2 k3"));
    assert_eq!(request.uniq_key, None);
    assert_eq!(request.delay_level, 0);
}

// --- limits ----------------------------------------------------------------------------------

#[test]
fn topic_over_127_bytes_is_refused_before_writing() {
    let mut msg = v4_message();
    msg.topic = "t".repeat(127);
    assert!(encode_record(&msg, 0, 0, &mut Vec::new()).is_ok());
    msg.topic = "t".repeat(128);
    let mut out = vec![1, 2, 3];
    assert_eq!(
        encode_record(&msg, 0, 0, &mut out),
        Err(RecordError::TopicTooLong { size: 128 })
    );
    assert_eq!(out, [1, 2, 3]);
    msg.topic = "中".repeat(43); // 129 UTF-8 bytes, 43 UTF-16 units
    assert_eq!(
        encode_record(&msg, 0, 0, &mut out),
        Err(RecordError::TopicTooLong { size: 129 })
    );
}

#[test]
fn properties_over_32767_bytes_are_refused_before_writing() {
    let mut msg = v4_message();
    msg.properties = format!("K\u{1}{}", "v".repeat(32765));
    assert!(encode_record(&msg, 0, 0, &mut Vec::new()).is_ok());
    msg.properties.push('v');
    let mut out = Vec::new();
    assert_eq!(
        encode_record(&msg, 0, 0, &mut out),
        Err(RecordError::PropertiesSizeExceeded { size: 32768 })
    );
    assert!(out.is_empty());
}

#[test]
fn record_over_4_mib_is_refused_before_writing() {
    let mut msg = v4_message();
    let fixed = record_size(&msg) - msg.body.len();
    msg.body = Bytes::from(vec![7u8; MESSAGE_SIZE_MAX_DEFAULT - fixed]);
    let mut out = Vec::new();
    assert_eq!(
        encode_record(&msg, 0, 0, &mut out),
        Ok(MESSAGE_SIZE_MAX_DEFAULT)
    );
    msg.body = Bytes::from(vec![7u8; MESSAGE_SIZE_MAX_DEFAULT - fixed + 1]);
    let mut out = Vec::new();
    assert_eq!(
        encode_record(&msg, 0, 0, &mut out),
        Err(RecordError::MessageSizeExceeded {
            size: MESSAGE_SIZE_MAX_DEFAULT + 1,
            max: MESSAGE_SIZE_MAX_DEFAULT
        })
    );
    assert!(out.is_empty());
    assert!(encode_record_limited(&msg, 0, 0, 8 * 1024 * 1024, &mut out).is_ok());
}

// --- hosts and message ids -------------------------------------------------------------------

#[test]
fn host_flags_follow_the_addresses_not_the_callers_sys_flag() {
    let mut msg = v4_message();
    msg.sys_flag = sys_flag::BORNHOST_V6 | sys_flag::STOREHOSTADDRESS_V6 | sys_flag::MULTI_TAGS;
    assert_eq!(msg.stored_sys_flag(), sys_flag::MULTI_TAGS);
    msg.store_host = addr("[::1]:10911");
    assert_eq!(
        msg.stored_sys_flag(),
        sys_flag::MULTI_TAGS | sys_flag::STOREHOSTADDRESS_V6
    );
    let decoded = decode_record(&encode(&msg, 0, 0xE4), true, true).unwrap();
    assert_eq!(decoded.store_host, addr("[::1]:10911"));
    assert_eq!(decoded.msg_id.len(), 56);
}

#[test]
fn ipv4_mapped_ipv6_hosts_are_written_as_ipv4_as_java_does() {
    let mut msg = v4_message();
    msg.born_host = addr("[::ffff:192.168.0.10]:51234");
    msg.store_host = addr("[::ffff:127.0.0.1]:10911");
    assert_eq!(record_size(&msg), 127);
    assert_eq!(encode(&msg, 7, 0x1234), v4_golden());
    assert_eq!(
        create_message_id(msg.store_host, 0xE4),
        "7F00000100002A9F00000000000000E4"
    );
}

#[test]
fn message_id_of_the_spec_example_decodes() {
    let (host, offset) = decode_message_id("7F000001000051AF00000000000000E4").unwrap();
    assert_eq!(host, addr("127.0.0.1:20911"));
    assert_eq!(offset, 0xE4);
    assert_eq!(
        create_message_id(addr("127.0.0.1:20911"), 0xE4),
        "7F000001000051AF00000000000000E4"
    );
    // Java upper-cases before parsing.
    assert_eq!(
        decode_message_id("7f000001000051af00000000000000e4").unwrap(),
        (addr("127.0.0.1:20911"), 0xE4)
    );
}

#[test]
fn ipv6_message_id_is_56_hex_digits() {
    let id = create_message_id(addr("[2001:db8::1]:10911"), 1 << 30);
    assert_eq!(
        id,
        "20010DB800000000000000000000000100002A9F0000000040000000"
    );
    assert_eq!(
        decode_message_id(&id).unwrap(),
        (addr("[2001:db8::1]:10911"), 1 << 30)
    );
}

#[test]
fn malformed_message_ids_are_refused() {
    for id in [
        "",
        "7F000001000051AF00000000000000E",
        "7F000001000051AF00000000000000E40",
        "7F000001000051AF00000000000000G4",
        "7F00000100FF51AF00000000000000E4", // port 0x00FF51AF
        "７F000001000051AF00000000000000E", // a multi-byte character
    ] {
        assert!(
            matches!(
                decode_message_id(id),
                Err(RecordError::InvalidMessageId { .. })
            ),
            "{id:?}"
        );
    }
}

// --- hashes ----------------------------------------------------------------------------------

#[test]
fn java_string_hash_matches_java() {
    assert_eq!(java_string_hash("TagA"), 2_598_919);
    assert_eq!(java_string_hash(""), 0);
    assert_eq!(java_string_hash("abc"), 96_354);
    assert_eq!(java_string_hash("中文"), 646_394); // 0x4E2D * 31 + 0x6587
    assert_eq!(java_string_hash("😀"), 1_772_899); // surrogates 0xD83D, 0xDE00
    assert_eq!(java_string_hash("polygenelubricants"), i32::MIN); // wraps
    assert_eq!(java_string_hash("hello world"), 1_794_106_052);
}

#[test]
fn tags_code_is_the_widened_java_hash() {
    assert_eq!(tags_code("TagA"), 2_598_919);
    assert_eq!(tags_code(""), 0);
    assert_eq!(tags_code("polygenelubricants"), -2_147_483_648);
}

#[test]
fn body_crc_is_masked_to_31_bits() {
    assert_eq!(body_crc(b"Hello"), 0x77D1_8982); // crc32 0xF7D18982
    assert_eq!(body_crc(b""), 0);
}

// --- properties ------------------------------------------------------------------------------

#[test]
fn properties_encode_without_a_trailing_separator() {
    let map: BTreeMap<String, String> = [("TAGS", "TagA"), ("KEYS", "order-1")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(encode_properties(&map), V4_PROPERTIES);
    assert_eq!(encode_properties(&BTreeMap::<String, String>::new()), "");
}

#[test]
fn properties_decode_leniently_as_java() {
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    assert_eq!(decode_properties(""), map(&[]));
    assert_eq!(decode_properties("\u{2}\u{2}"), map(&[]));
    assert_eq!(
        decode_properties("a\u{1}b\u{2}"),
        map(&[("a", "b")]),
        "trailing \\x02"
    );
    assert_eq!(
        decode_properties("\u{1}b\u{2}c\u{1}d"),
        map(&[("c", "d")]),
        "empty key"
    );
    assert_eq!(
        decode_properties("a\u{1}\u{2}c\u{1}d"),
        map(&[("c", "d")]),
        "empty value"
    );
    assert_eq!(
        decode_properties("ab\u{2}c\u{1}d"),
        map(&[("c", "d")]),
        "no separator"
    );
    assert_eq!(
        decode_properties("a\u{1}b\u{2}a\u{1}c"),
        map(&[("a", "c")]),
        "last wins"
    );
    assert_eq!(
        decode_properties("a\u{1}b\u{1}c"),
        map(&[("a", "b\u{1}c")]),
        "4.9.1+ splits at the first \\x01"
    );
    assert_eq!(find_property("a\u{1}b\u{2}a\u{1}c", "a"), Some("c"));
    assert_eq!(find_property("a\u{1}\u{2}", "a"), None);
}

#[test]
fn message_property_helpers_re_encode() {
    let mut msg = v4_message();
    assert_eq!(msg.tags(), Some("TagA"));
    assert_eq!(msg.keys(), Some("order-1"));
    assert_eq!(msg.delay_time_level(), 0);
    msg.set_property(property_key::DELAY, "4");
    assert_eq!(msg.delay_time_level(), 4);
    assert_eq!(
        msg.properties,
        "DELAY\u{1}4\u{2}KEYS\u{1}order-1\u{2}TAGS\u{1}TagA"
    );
    assert_eq!(
        msg.remove_property(property_key::KEYS).as_deref(),
        Some("order-1")
    );
    assert_eq!(msg.remove_property(property_key::KEYS), None);
    assert_eq!(msg.properties, "DELAY\u{1}4\u{2}TAGS\u{1}TagA");
    msg.set_property(property_key::DELAY, "x");
    assert_eq!(msg.delay_time_level(), 0, "not a number reads as no delay");
    assert_eq!(split_keys(" k1  k2 ").collect::<Vec<_>>(), ["k1", "k2"]);
}

#[test]
fn transaction_value_helpers_follow_message_sys_flag() {
    let flag = sys_flag::COMPRESSED | sys_flag::TRANSACTION_PREPARED_TYPE | sys_flag::BORNHOST_V6;
    assert_eq!(
        sys_flag::transaction_value(flag),
        sys_flag::TRANSACTION_PREPARED_TYPE
    );
    let committed = sys_flag::reset_transaction_value(flag, sys_flag::TRANSACTION_COMMIT_TYPE);
    assert_eq!(committed, 0x1 | 0x8 | 0x10);
    assert_eq!(sys_flag::reset_transaction_value(committed, 0), 0x11);
}

// --- batches ---------------------------------------------------------------------------------

/// Two inner messages as Java's `MessageDecoder.encodeMessages` writes them.
fn batch_golden() -> Vec<u8> {
    [
        &[0x00, 0x00, 0x00, 0x1D][..], // TOTALSIZE 29 = 22 + 2 + 5
        &[0, 0, 0, 0],                 // MAGICCODE 0
        &[0, 0, 0, 0],                 // BODYCRC 0
        &[0x00, 0x00, 0x00, 0x01],     // FLAG 1
        &[0x00, 0x00, 0x00, 0x02],     // BODYLEN 2
        b"b1",                         // BODY
        &[0x00, 0x05],                 // PROPSLEN 5
        b"K\x01one",                   // PROPS
        &[0x00, 0x00, 0x00, 0x16],     // TOTALSIZE 22
        &[0, 0, 0, 0],                 // MAGICCODE 0
        &[0, 0, 0, 0],                 // BODYCRC 0
        &[0x00, 0x00, 0x00, 0x00],     // FLAG 0
        &[0x00, 0x00, 0x00, 0x00],     // BODYLEN 0
        &[0x00, 0x00],                 // PROPSLEN 0
    ]
    .concat()
}

fn batch_items() -> Vec<BatchItem> {
    vec![
        BatchItem {
            flag: 1,
            body: Bytes::from_static(b"b1"),
            properties: "K\u{1}one".into(),
        },
        BatchItem {
            flag: 0,
            body: Bytes::new(),
            properties: String::new(),
        },
    ]
}

#[test]
fn batch_body_golden_vector_round_trips() {
    assert_eq!(decode_batch(&batch_golden()).unwrap(), batch_items());
    assert_eq!(encode_batch(&batch_items()).unwrap(), batch_golden());
    assert_eq!(decode_batch(&[]).unwrap(), Vec::<BatchItem>::new());
}

#[test]
fn malformed_batch_bodies_are_refused() {
    let golden = batch_golden();
    assert!(matches!(
        decode_batch(&golden[..golden.len() - 1]),
        Err(RecordError::Truncated {
            field: "PROPERTIESLENGTH",
            ..
        })
    ));
    let mut negative = golden.clone();
    negative[16..20].copy_from_slice(&(-2i32).to_be_bytes());
    assert_eq!(
        decode_batch(&negative),
        Err(RecordError::NegativeLength {
            field: "BODYLENGTH",
            length: -2
        })
    );
    let mut non_utf8 = golden;
    non_utf8[28] = 0xFF;
    assert_eq!(decode_batch(&non_utf8), Err(RecordError::NonUtf8Properties));
    let oversized = BatchItem {
        flag: 0,
        body: Bytes::new(),
        properties: "p".repeat(PROPERTIES_SIZE_MAX + 1),
    };
    assert_eq!(
        encode_batch(&[oversized]),
        Err(RecordError::PropertiesSizeExceeded { size: 32768 })
    );
}

// --- property tests --------------------------------------------------------------------------

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u8; 4]>(), any::<u16>(), any::<u32>()).prop_map(|(ip, port, scope)| {
            let mapped = Ipv4Addr::from(ip).to_ipv6_mapped();
            SocketAddr::V6(SocketAddrV6::new(mapped, port, 0, scope))
        }),
    ]
}

fn topic() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_%|-]{0,127}",
        "\\PC{0,40}".prop_filter("at most 127 bytes", |t| t.len() <= TOPIC_LENGTH_MAX),
    ]
}

fn property_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map("[^\u{1}\u{2}]{1,12}", "[^\u{2}]{1,24}", 0..8)
}

prop_compose! {
    fn message()(
        topic in topic(),
        queue_id in any::<i32>(),
        flag in any::<i32>(),
        body in prop::collection::vec(any::<u8>(), 0..600),
        properties in prop_oneof![
            property_map().prop_map(|map| encode_properties(&map)),
            "\\PC{0,100}",
        ],
        tags_code in any::<i64>(),
        sys_flag in any::<i32>(),
        born_timestamp in any::<i64>(),
        born_host in socket_addr(),
        store_host in socket_addr(),
        store_timestamp in any::<i64>(),
        reconsume_times in any::<i32>(),
        prepared_transaction_offset in any::<i64>(),
    ) -> MessageInner {
        MessageInner {
            topic, queue_id, flag, body: Bytes::from(body), properties, tags_code, sys_flag,
            born_timestamp, born_host, store_host, store_timestamp, reconsume_times,
            prepared_transaction_offset,
        }
    }
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

fn assert_within(check: &RecordCheck, len: usize) {
    match check {
        RecordCheck::Message(request) => assert!(request.msg_size <= len),
        RecordCheck::Blank { size } => assert!(*size <= len),
        RecordCheck::Invalid(_) => {}
    }
}

proptest! {
    #[test]
    fn encode_then_decode_gives_the_message_back(
        msg in message(),
        queue_offset in any::<i64>(),
        physical_offset in any::<i64>(),
        trailing in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut buf = encode(&msg, queue_offset, physical_offset);
        prop_assert_eq!(buf.len(), record_size(&msg));
        buf.extend_from_slice(&trailing);
        let expected = StoredMessage {
            store_size: record_size(&msg),
            body_crc: body_crc(&msg.body),
            queue_id: msg.queue_id,
            flag: msg.flag,
            queue_offset,
            commit_log_offset: physical_offset,
            sys_flag: msg.stored_sys_flag(),
            born_timestamp: msg.born_timestamp,
            born_host: canonical(msg.born_host),
            store_timestamp: msg.store_timestamp,
            store_host: canonical(msg.store_host),
            reconsume_times: msg.reconsume_times,
            prepared_transaction_offset: msg.prepared_transaction_offset,
            body: Some(msg.body.clone()),
            topic: msg.topic.clone(),
            properties: msg.properties.clone(),
            msg_id: create_message_id(msg.store_host, physical_offset),
        };
        prop_assert_eq!(decode_record(&buf, true, true), Ok(expected));
        let RecordCheck::Message(request) = check_record(&buf, true) else {
            panic!("an encoded record checks");
        };
        prop_assert_eq!(request.msg_size, record_size(&msg));
        prop_assert_eq!(request.tags_code, msg.tags().map_or(0, tags_code));
        let properties = msg.properties_map();
        prop_assert_eq!(request.keys.as_ref(), properties.get(property_key::KEYS));
        prop_assert_eq!(request.uniq_key.as_ref(), properties.get(property_key::UNIQ_KEY));
        prop_assert_eq!(
            request.delay_level,
            properties.get(property_key::DELAY).and_then(|level| level.parse().ok()).unwrap_or(0)
        );
        let decoded = decode_record(&buf, true, true).unwrap();
        let again = encode(&decoded.into_inner(), queue_offset, physical_offset);
        prop_assert_eq!(&again[..], &buf[..record_size(&msg)]);
    }

    #[test]
    fn arbitrary_bytes_never_panic_nor_report_a_record_past_the_buffer(
        buf in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        for check_crc in [false, true] {
            assert_within(&check_record(&buf, check_crc), buf.len());
            if let Ok(message) = decode_record(&buf, check_crc, true) {
                prop_assert!(message.store_size <= buf.len());
            }
        }
        let _ = decode_records(&buf);
        let _ = decode_batch(&buf);
        let _ = decode_message_id(&String::from_utf8_lossy(&buf));
    }

    #[test]
    fn damaged_records_never_panic_nor_report_a_record_past_the_buffer(
        msg in message(),
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut buf = encode(&msg, 1, 2);
        for (at, byte) in flips {
            let at = at.index(buf.len());
            buf[at] = byte;
        }
        buf.truncate(cut.index(buf.len() + 1));
        for check_crc in [false, true] {
            assert_within(&check_record(&buf, check_crc), buf.len());
            if let Ok(message) = decode_record(&buf, check_crc, true) {
                prop_assert!(message.store_size <= buf.len());
            }
        }
        let _ = decode_records(&buf);
    }

    #[test]
    fn properties_round_trip(map in property_map()) {
        let encoded = encode_properties(&map);
        prop_assert_eq!(decode_properties(&encoded), map.clone());
        let with_trailing = format!("{encoded}\u{2}");
        prop_assert_eq!(decode_properties(&with_trailing), map.clone());
        for (key, value) in &map {
            prop_assert_eq!(find_property(&encoded, key), Some(value.as_str()));
        }
    }

    /// Any text, separators and multi-byte characters mixed, splits into the pairs that
    /// the plain definition (split on `\x02`, then at the first `\x01`) gives: the byte
    /// search neither panics nor cuts anywhere else.
    #[test]
    fn property_pairs_split_any_text_as_the_plain_definition(
        text in "[a\u{1}\u{2}é😀]{0,24}",
    ) {
        let plain: Vec<(&str, &str)> = text
            .split(PROPERTY_SEPARATOR)
            .filter_map(|segment| segment.split_once(NAME_VALUE_SEPARATOR))
            .filter(|(key, value)| !key.is_empty() && !value.is_empty())
            .collect();
        prop_assert_eq!(property_pairs(&text).collect::<Vec<_>>(), plain);
    }

    #[test]
    fn batch_bodies_round_trip(
        items in prop::collection::vec(
            (any::<i32>(), prop::collection::vec(any::<u8>(), 0..64), "\\PC{0,40}")
                .prop_map(|(flag, body, properties)| BatchItem {
                    flag, body: Bytes::from(body), properties,
                }),
            0..5,
        ),
    ) {
        let body = encode_batch(&items).unwrap();
        prop_assert_eq!(decode_batch(&body), Ok(items));
    }

    #[test]
    fn message_ids_round_trip(host in socket_addr(), offset in any::<i64>()) {
        let id = create_message_id(host, offset);
        prop_assert_eq!(id.len(), if canonical(host).is_ipv4() { 32 } else { 56 });
        prop_assert_eq!(decode_message_id(&id), Ok((canonical(host), offset)));
    }
}
