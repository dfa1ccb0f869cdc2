use std::collections::BTreeMap;
use std::io::Write;

use super::*;
use crate::remoting::headers::PullMessageResponseHeader;
use crate::store::message::{MessageInner, encode_record};

fn request() -> RemotingCommand {
    RemotingCommand::request(request_code::SEND_MESSAGE_V2)
}

fn send_answer(code: i32) -> RemotingCommand {
    RemotingCommand::response_to(&request(), code, None).with_header(&SendMessageResponseHeader {
        msg_id: "7F000001000051AF00000000000000E4".into(),
        queue_id: 3,
        queue_offset: 17,
        transaction_id: None,
        msg_region: None,
        trace_on: None,
    })
}

#[test]
fn send_codes_that_mean_stored_map_to_a_status() {
    for (code, status) in [
        (response_code::SUCCESS, SendStatus::SendOk),
        (
            response_code::FLUSH_DISK_TIMEOUT,
            SendStatus::FlushDiskTimeout,
        ),
        (
            response_code::FLUSH_SLAVE_TIMEOUT,
            SendStatus::FlushSlaveTimeout,
        ),
        (
            response_code::SLAVE_NOT_AVAILABLE,
            SendStatus::SlaveNotAvailable,
        ),
    ] {
        let result =
            process_send_response("b:1", "broker-a", "T", Some("U".into()), &send_answer(code))
                .unwrap();
        assert_eq!(result.status, status);
        assert_eq!(result.msg_id.as_deref(), Some("U"));
        assert_eq!(result.offset_msg_id, "7F000001000051AF00000000000000E4");
        assert_eq!(
            result.queue,
            MessageQueue {
                broker_name: "broker-a".into(),
                queue_id: 3,
                topic: "T".into()
            }
        );
        assert_eq!(result.queue_offset, 17);
        assert_eq!(result.region_id, DEFAULT_REGION_ID);
        assert!(result.trace_on);
    }
}

#[test]
fn send_refusal_is_a_broker_error_with_code_and_remark() {
    let answer = RemotingCommand::error_to(&request(), response_code::NO_PERMISSION, "no perm");
    let error = process_send_response("b:1", "broker-a", "T", None, &answer).unwrap_err();
    assert!(
        matches!(&error, ClientError::Broker { addr, code, remark }
            if addr == "b:1" && *code == response_code::NO_PERMISSION && remark == "no perm"),
        "{error:?}"
    );
    assert!(error.is_send_retriable());
    let busy = RemotingCommand::error_to(&request(), response_code::SYSTEM_BUSY, "busy");
    let error = process_send_response("b:1", "broker-a", "T", None, &busy).unwrap_err();
    assert!(!error.is_send_retriable(), "flow control is not retried");
    assert_eq!(error.response_code(), Some(response_code::SYSTEM_BUSY));
}

#[test]
fn send_answer_without_its_required_fields_is_malformed() {
    let answer = RemotingCommand::success_to(&request());
    let error = process_send_response("b:1", "broker-a", "T", None, &answer).unwrap_err();
    assert!(matches!(error, ClientError::Malformed { .. }), "{error:?}");
}

#[test]
fn send_answer_region_and_trace_switch_come_from_ext_fields() {
    let mut answer = send_answer(response_code::SUCCESS);
    answer.ext_fields.insert("MSG_REGION", "east");
    answer.ext_fields.insert("TRACE_ON", "false");
    let result = process_send_response("b:1", "broker-a", "T", None, &answer).unwrap();
    assert_eq!(result.region_id, "east");
    assert!(!result.trace_on);
    assert_eq!(result.msg_id, None);
}

fn record(queue_offset: i64, body: &[u8], sys_flag: i32, properties: &str) -> Vec<u8> {
    let message = MessageInner {
        topic: "T".into(),
        queue_id: 0,
        flag: 0,
        body: Bytes::copy_from_slice(body),
        properties: properties.into(),
        tags_code: 0,
        sys_flag,
        born_timestamp: 1,
        born_host: "127.0.0.1:5555".parse().unwrap(),
        store_timestamp: 2,
        store_host: "127.0.0.1:10911".parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    };
    let mut out = Vec::new();
    encode_record(&message, queue_offset, 1000 + queue_offset, &mut out).unwrap();
    out
}

fn pull_answer(code: i32, body: Vec<u8>) -> RemotingCommand {
    RemotingCommand::response_to(&request(), code, None)
        .with_header(&PullMessageResponseHeader {
            suggest_which_broker_id: 0,
            next_begin_offset: 7,
            min_offset: 0,
            max_offset: 9,
        })
        .with_body(body)
}

#[test]
fn pull_found_decodes_messages_and_sets_min_and_max_offset() {
    let properties = encode_properties(&BTreeMap::from([
        ("TAGS".to_string(), "TagA".to_string()),
        ("UNIQ_KEY".to_string(), "U1".to_string()),
    ]));
    let mut body = record(5, b"hello", 0, &properties);
    body.extend(record(6, b"world", 0, &properties));
    let result = process_pull_response("b:1", &pull_answer(response_code::SUCCESS, body)).unwrap();
    assert_eq!(result.status, PullStatus::Found);
    assert_eq!(
        (
            result.next_begin_offset,
            result.min_offset,
            result.max_offset
        ),
        (7, 0, 9)
    );
    assert_eq!(result.messages.len(), 2);
    let first = &result.messages[0];
    assert_eq!(first.body.as_deref(), Some(&b"hello"[..]));
    assert_eq!(first.queue_offset, 5);
    assert_eq!(first.tags(), Some("TagA"));
    assert_eq!(first.uniq_key(), Some("U1"));
    assert_eq!(first.property(property_key::MIN_OFFSET), Some("0"));
    assert_eq!(first.property(property_key::MAX_OFFSET), Some("9"));
}

#[test]
fn pull_codes_map_to_statuses_without_messages() {
    for (code, status) in [
        (response_code::PULL_NOT_FOUND, PullStatus::NoNewMsg),
        (
            response_code::PULL_RETRY_IMMEDIATELY,
            PullStatus::NoMatchedMsg,
        ),
        (response_code::PULL_OFFSET_MOVED, PullStatus::OffsetIllegal),
    ] {
        let result = process_pull_response("b:1", &pull_answer(code, Vec::new())).unwrap();
        assert_eq!(result.status, status);
        assert!(result.messages.is_empty());
        assert_eq!(result.next_begin_offset, 7);
    }
    let error = process_pull_response(
        "b:1",
        &RemotingCommand::error_to(&request(), response_code::SUBSCRIPTION_NOT_EXIST, "x"),
    )
    .unwrap_err();
    assert_eq!(
        error.response_code(),
        Some(response_code::SUBSCRIPTION_NOT_EXIST)
    );
}

#[test]
fn pull_inflates_zlib_bodies_and_clears_the_compression_bits() {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
    encoder.write_all(b"a body worth compressing").unwrap();
    let compressed = encoder.finish().unwrap();
    for flag in [
        sys_flag::COMPRESSED,
        sys_flag::COMPRESSED | sys_flag::COMPRESSION_ZLIB_TYPE,
    ] {
        let body = record(0, &compressed, flag, "");
        let result =
            process_pull_response("b:1", &pull_answer(response_code::SUCCESS, body)).unwrap();
        let message = &result.messages[0];
        assert_eq!(
            message.body.as_deref(),
            Some(&b"a body worth compressing"[..])
        );
        assert_eq!(
            message.sys_flag & (sys_flag::COMPRESSED | sys_flag::COMPRESSION_TYPE_MASK),
            0,
            "the flag describes the body handed over"
        );
    }
    let garbage = record(0, b"not zlib", sys_flag::COMPRESSED, "");
    let result =
        process_pull_response("b:1", &pull_answer(response_code::SUCCESS, garbage)).unwrap();
    let message = &result.messages[0];
    assert_eq!(
        message.body.as_deref(),
        Some(&b"not zlib"[..]),
        "a body that does not inflate is handed over as stored"
    );
    assert_eq!(
        message.sys_flag & sys_flag::COMPRESSED,
        sys_flag::COMPRESSED
    );
}

#[test]
fn route_with_bare_numeric_keys_from_old_java_name_servers_reads() {
    let fastjson = r#"{"brokerDatas":[{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"},"brokerName":"b","cluster":"c"}],"filterServerTable":{},"queueDatas":[{"brokerName":"b","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;
    let route = decode_route(fastjson.as_bytes()).unwrap();
    assert_eq!(route.broker_datas[0].broker_addrs.len(), 2);
    assert_eq!(route.broker_datas[0].master_addr(), Some("10.0.0.1:10911"));
    assert!(decode_route(b"{not json").is_err());
}

#[test]
fn bare_numeric_keys_are_quoted_but_strings_and_arrays_are_not() {
    assert_eq!(
        quote_bare_numeric_keys(r#"{0:"a", -1 :"b","k":[1, 2],"s":"{3:4}"}"#),
        r#"{"0":"a", "-1" :"b","k":[1, 2],"s":"{3:4}"}"#
    );
    assert_eq!(
        quote_bare_numeric_keys(r#"{"é":{7:"ü"}}"#),
        r#"{"é":{"7":"ü"}}"#
    );
}

#[test]
fn status_tables_refuse_other_codes() {
    assert_eq!(SendStatus::from_code(response_code::SYSTEM_ERROR), None);
    assert_eq!(PullStatus::from_code(response_code::SYSTEM_ERROR), None);
    assert_eq!(
        PullStatus::from_code(response_code::SUCCESS),
        Some(PullStatus::Found)
    );
}
