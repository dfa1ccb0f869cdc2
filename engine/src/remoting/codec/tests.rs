//! Golden vectors (from the Java layouts in `spec/wire-protocol.md` §1–§2) and property tests
//! of the frame codec.

use super::*;
use crate::remoting::code::{CURRENT_VERSION, request_code};
use proptest::prelude::*;

fn frame_from_header(serialize: u8, header: &[u8], body: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_u32((4 + header.len() + body.len()) as u32);
    out.put_u32((u32::from(serialize) << 24) | header.len() as u32);
    out.put_slice(header);
    out.put_slice(body);
    out
}

fn decode_one(bytes: &[u8]) -> Result<Option<RemotingCommand>, DecodeError> {
    decode(&mut BytesMut::from(bytes))
}

/// The 37-byte ROCKETMQ-encoded request of `spec/wire-protocol.md` §2.2: code 14, JAVA,
/// version 409, opaque 7, ext `{topic: "T"}`.
const BINARY_CODE_14: [u8; 41] = [
    0x00, 0x00, 0x00, 0x25, 0x01, 0x00, 0x00, 0x21, 0x00, 0x0e, 0x00, 0x01, 0x99, 0x00, 0x00, 0x00,
    0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x05, 0x74,
    0x6f, 0x70, 0x69, 0x63, 0x00, 0x00, 0x00, 0x01, 0x54,
];

fn query_offset_request() -> RemotingCommand {
    RemotingCommand {
        code: request_code::QUERY_CONSUMER_OFFSET,
        version: 409,
        opaque: 7,
        ext_fields: [("topic", "T")].into_iter().collect(),
        serialize_type: SerializeType::RocketMq,
        ..RemotingCommand::default()
    }
}

#[test]
fn binary_header_golden_encode() {
    let bytes = encode_to_bytes(&query_offset_request()).unwrap();
    assert_eq!(&bytes[..], &BINARY_CODE_14[..]);
}

#[test]
fn binary_header_golden_decode() {
    let command = decode_one(&BINARY_CODE_14).unwrap().unwrap();
    assert_eq!(command, query_offset_request());
}

/// A Java 4.9.8 SEND_MESSAGE_V2 request header, byte for byte as fastjson writes it.
const JAVA_SEND_V2_HEADER: &str = concat!(
    r#"{"code":310,"extFields":{"a":"pg","b":"TopicTest","c":"TBW102","d":"4","e":"1","f":"0","#,
    r#""g":"1700000000000","h":"0","i":"KEYS\u0001k0\u0002UNIQ_KEY\u00017F0000010C1C18B4AAC2"#,
    r#"0B7E5A0A0000\u0002WAIT\u0001true\u0002TAGS\u0001TagA","j":"0","k":"false","m":"false","#,
    r#""n":"broker-a"},"flag":0,"language":"JAVA","opaque":5,"serializeTypeCurrentRPC":"JSON","#,
    r#""version":409}"#
);

fn java_send_v2_request() -> RemotingCommand {
    let properties = "KEYS\u{1}k0\u{2}UNIQ_KEY\u{1}7F0000010C1C18B4AAC20B7E5A0A0000\u{2}WAIT\u{1}true\u{2}TAGS\u{1}TagA";
    RemotingCommand {
        code: request_code::SEND_MESSAGE_V2,
        version: 409,
        opaque: 5,
        ext_fields: [
            ("a", "pg"),
            ("b", "TopicTest"),
            ("c", "TBW102"),
            ("d", "4"),
            ("e", "1"),
            ("f", "0"),
            ("g", "1700000000000"),
            ("h", "0"),
            ("i", properties),
            ("j", "0"),
            ("k", "false"),
            ("m", "false"),
            ("n", "broker-a"),
        ]
        .into_iter()
        .collect(),
        body: Bytes::from_static(b"Hello RocketMQ"),
        ..RemotingCommand::default()
    }
}

#[test]
fn json_header_golden_encode_matches_java_bytes() {
    let bytes = encode_to_bytes(&java_send_v2_request()).unwrap();
    let expected = frame_from_header(0, JAVA_SEND_V2_HEADER.as_bytes(), b"Hello RocketMQ");
    assert_eq!(
        String::from_utf8_lossy(&bytes[8..8 + JAVA_SEND_V2_HEADER.len()]),
        JAVA_SEND_V2_HEADER
    );
    assert_eq!(&bytes[..], &expected[..]);
}

#[test]
fn json_header_golden_decode_of_java_request() {
    let frame = frame_from_header(0, JAVA_SEND_V2_HEADER.as_bytes(), b"Hello RocketMQ");
    let command = decode_one(&frame).unwrap().unwrap();
    assert_eq!(command, java_send_v2_request());
}

#[test]
fn json_response_prefix_counts_header_and_length_word() {
    // A Java broker's SEND response: 95 bytes of header give `00 00 00 63 00 00 00 5f`.
    let header = r#"{"code":0,"extFields":{"queueId":"1"},"flag":1,"language":"JAVA","opaque":5,"version":409}"#;
    let padded = format!("{}{}", header, " ".repeat(95 - header.len()));
    let frame = frame_from_header(0, padded.as_bytes(), b"");
    assert_eq!(&frame[..8], &[0, 0, 0, 0x63, 0, 0, 0, 0x5f]);
    let command = decode_one(&frame).unwrap().unwrap();
    assert!(command.is_response());
    assert_eq!(command.ext_fields.get("queueId"), Some("1"));
    assert!(command.body.is_empty());
}

#[test]
fn java_response_with_unsorted_ext_fields_decodes() {
    let header = r#"{"code":0,"extFields":{"msgId":"7F00000100002A9F0000000000000000","queueId":"1","queueOffset":"0","MSG_REGION":"DefaultRegion","TRACE_ON":"true"},"flag":1,"language":"JAVA","opaque":5,"serializeTypeCurrentRPC":"JSON","version":409}"#;
    let command = decode_one(&frame_from_header(0, header.as_bytes(), b""))
        .unwrap()
        .unwrap();
    assert_eq!(command.code, 0);
    assert_eq!(command.opaque, 5);
    assert_eq!(command.version, CURRENT_VERSION);
    assert_eq!(
        command.ext_fields.get("msgId"),
        Some("7F00000100002A9F0000000000000000")
    );
    assert_eq!(command.ext_fields.get("TRACE_ON"), Some("true"));
}

#[test]
fn ali_ons_numbers_and_booleans_become_strings() {
    let header = r#"{"code":310,"language":"JAVA","version":121,"opaque":3,"flag":0,"extFields":{"a":"pg","e":0,"k":false,"g":1700000000000,"x":1.5,"nested":{"p":1},"gone":null}}"#;
    let command = decode_one(&frame_from_header(0, header.as_bytes(), b"body"))
        .unwrap()
        .unwrap();
    assert_eq!(command.version, 121);
    assert_eq!(command.ext_fields.get("e"), Some("0"));
    assert_eq!(command.ext_fields.get("k"), Some("false"));
    assert_eq!(command.ext_fields.get("g"), Some("1700000000000"));
    assert_eq!(command.ext_fields.get("x"), Some("1.5"));
    assert_eq!(command.ext_fields.get("nested"), Some(r#"{"p":1}"#));
    assert!(!command.ext_fields.contains("gone"));
    assert_eq!(&command.body[..], b"body");
}

#[test]
fn cpp_client_header_with_language_ordinal_and_string_numbers() {
    let header = r#"{"code":"34","language":1,"version":"63","opaque":"9","flag":"0","remark":null,"extFields":{"AccessKey":"","OnsChannel":"ALIYUN"}}"#;
    let command = decode_one(&frame_from_header(0, header.as_bytes(), b""))
        .unwrap()
        .unwrap();
    assert_eq!(command.code, 34);
    assert_eq!(command.language, LanguageCode::Cpp);
    assert_eq!(command.version, 63);
    assert_eq!(command.opaque, 9);
    assert_eq!(command.remark, None);
    assert_eq!(command.ext_fields.get("OnsChannel"), Some("ALIYUN"));
}

#[test]
fn unknown_language_name_is_other() {
    let header = r#"{"code":105,"language":"KOTLIN","opaque":1,"flag":0}"#;
    let command = decode_one(&frame_from_header(0, header.as_bytes(), b""))
        .unwrap()
        .unwrap();
    assert_eq!(command.language, LanguageCode::Other);
}

#[test]
fn a_deeply_nested_header_is_an_error_not_a_stack_overflow() {
    for depth in [200, 100_000] {
        let header = format!(
            r#"{{"code":10,"extFields":{{"a":{}{}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let result = decode_one(&frame_from_header(0, header.as_bytes(), b""));
        assert!(
            matches!(result, Err(DecodeError::Json(_))),
            "depth {depth}: {result:?}"
        );
    }
    // Nested values within the limit stay their JSON text, whichever parser reads them.
    let nested = format!("{}{}", "[".repeat(40), "]".repeat(40));
    let header = format!(r#"{{"code":10,"extFields":{{"a":{nested}}}}}"#);
    let command = decode_one(&frame_from_header(0, header.as_bytes(), b""))
        .unwrap()
        .unwrap();
    assert_eq!(command.ext_fields.get("a"), Some(nested.as_str()));
}

#[test]
fn incomplete_frames_wait_for_more_bytes() {
    let bytes = encode_to_bytes(&java_send_v2_request()).unwrap();
    for cut in [0, 3, 4, 8, bytes.len() - 1] {
        let mut buf = BytesMut::from(&bytes[..cut]);
        assert!(decode(&mut buf).unwrap().is_none(), "cut at {cut}");
        assert_eq!(buf.len(), cut, "nothing consumed at cut {cut}");
    }
}

#[test]
fn two_frames_in_one_buffer_decode_in_order() {
    let mut buf = BytesMut::new();
    encode(&java_send_v2_request(), &mut buf).unwrap();
    encode(&query_offset_request(), &mut buf).unwrap();
    assert_eq!(decode(&mut buf).unwrap().unwrap().opaque, 5);
    assert_eq!(decode(&mut buf).unwrap().unwrap().opaque, 7);
    assert!(buf.is_empty());
}

#[test]
fn oversized_frame_is_rejected_before_buffering() {
    let mut buf = BytesMut::from(&(FRAME_SIZE_MAX as u32 - 3).to_be_bytes()[..]);
    assert!(matches!(
        decode(&mut buf),
        Err(DecodeError::FrameTooLarge { .. })
    ));
    // The largest legal frame is accepted as "need more bytes".
    let mut buf = BytesMut::from(&(FRAME_SIZE_MAX as u32 - 4).to_be_bytes()[..]);
    assert!(decode(&mut buf).unwrap().is_none());
}

#[test]
fn malformed_frames_are_errors() {
    let negative = decode_one(&[0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(negative, Err(DecodeError::FrameTooShort { .. })));
    let header_past_end = decode_one(&[0, 0, 0, 4, 0, 0, 0, 9]);
    assert!(matches!(
        header_past_end,
        Err(DecodeError::HeaderLengthOutOfRange { .. })
    ));
    let unknown_type = decode_one(&[0, 0, 0, 4, 7, 0, 0, 0]);
    assert!(matches!(
        unknown_type,
        Err(DecodeError::UnknownSerializeType(7))
    ));
    let bad_json = decode_one(&frame_from_header(0, b"{\"code\":", b""));
    assert!(matches!(bad_json, Err(DecodeError::Json(_))));
    let huge_int = decode_one(&frame_from_header(0, b"{\"code\":99999999999}", b""));
    assert!(matches!(huge_int, Err(DecodeError::Json(_))));
    let short_binary = decode_one(&frame_from_header(1, &[0, 1, 2], b""));
    assert!(matches!(short_binary, Err(DecodeError::Binary(_))));
    let mut truncated = BINARY_CODE_14.to_vec();
    truncated[28] = 0x40; // ext length far past the header
    let truncated_ext = decode_one(&truncated);
    assert!(matches!(truncated_ext, Err(DecodeError::Binary(_))));
}

#[test]
fn binary_encoding_refuses_codes_outside_i16() {
    let mut command = query_offset_request();
    command.code = 200_050;
    assert!(matches!(
        encode_to_bytes(&command),
        Err(EncodeError::NotRepresentable("code"))
    ));
}

#[test]
fn oversized_body_is_an_encode_error_and_leaves_buffer_untouched() {
    let mut out = BytesMut::from(&b"prefix"[..]);
    let command = RemotingCommand::request(1).with_body(vec![0u8; FRAME_SIZE_MAX]);
    assert!(matches!(
        encode(&command, &mut out),
        Err(EncodeError::FrameTooLarge { .. })
    ));
    assert_eq!(&out[..], b"prefix");
}

// ---------------------------------------------------------------------------------------------
// Property tests

fn any_language() -> impl Strategy<Value = LanguageCode> {
    (0i64..14).prop_map(LanguageCode::from_code)
}

fn any_command(serialize_type: SerializeType) -> impl Strategy<Value = RemotingCommand> {
    // The binary header drops empty keys, values and remarks (they decode as null), and holds
    // code and version in 16 bits; generate within what each encoding can represent.
    let binary = serialize_type == SerializeType::RocketMq;
    let small = if binary {
        (i32::from(i16::MIN)..=i32::from(i16::MAX)).boxed()
    } else {
        any::<i32>().boxed()
    };
    let text = if binary { ".{1,20}" } else { ".{0,20}" };
    commands(small, text, serialize_type)
}

/// Commands with code and version from `small`, remark, keys and values matching `text`.
fn commands(
    small: BoxedStrategy<i32>,
    text: &'static str,
    serialize_type: SerializeType,
) -> impl Strategy<Value = RemotingCommand> {
    (
        small.clone(),
        any_language(),
        small,
        any::<i32>(),
        any::<i32>(),
        proptest::option::of(text),
        proptest::collection::btree_map(text, text, 0..6),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(
            move |(code, language, version, opaque, flag, remark, ext, body)| RemotingCommand {
                code,
                language,
                version,
                opaque,
                flag,
                remark,
                ext_fields: ext.into_iter().collect(),
                body: Bytes::from(body),
                serialize_type,
            },
        )
}

proptest! {
    #[test]
    fn json_encode_then_decode_is_identity(command in any_command(SerializeType::Json)) {
        let mut buf = BytesMut::new();
        encode(&command, &mut buf).unwrap();
        let decoded = decode(&mut buf).unwrap().unwrap();
        prop_assert_eq!(decoded, command);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn binary_encode_then_decode_is_identity(command in any_command(SerializeType::RocketMq)) {
        let mut buf = BytesMut::new();
        encode(&command, &mut buf).unwrap();
        let decoded = decode(&mut buf).unwrap().unwrap();
        prop_assert_eq!(decoded, command);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut buf = BytesMut::from(&bytes[..]);
        // Decode until the buffer is exhausted, an error, or more bytes are needed.
        while let Ok(Some(_)) = decode(&mut buf) {}
    }

    #[test]
    fn decoder_never_panics_on_framed_arbitrary_headers(
        serialize in 0u8..3,
        header in proptest::collection::vec(any::<u8>(), 0..256),
        body in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let _ = decode(&mut frame_from_header(serialize, &header, &body));
    }
}

// ---------------------------------------------------------------------------------------------
// The JSON header scanner against the general decoder

/// What the general decoder makes of `header`, as text for comparison (errors alike).
fn general(header: &[u8]) -> Option<RemotingCommand> {
    decode_json_header_in_general(header).ok()
}

#[test]
fn the_scanner_reads_the_headers_real_clients_send() {
    let java_response = r#"{"code":0,"extFields":{"msgId":"7F00000100002A9F0000000000000000","queueId":"1","queueOffset":"0","MSG_REGION":"DefaultRegion","TRACE_ON":"true"},"flag":1,"language":"JAVA","opaque":5,"serializeTypeCurrentRPC":"JSON","version":409}"#;
    let spaced = "{ \"code\" : 10 ,\n\t\"remark\" : null , \"extFields\" : { \"a\" : \"\\u0001x\\\"y\\\\\" , \"b\" : null } }";
    let unicode = r#"{"code":-1,"remark":"caf\u00e9 ☕","language":"GO","extFields":{}}"#;
    let edges = r#"{"code":-0,"opaque":-2147483648,"flag":2147483647,"x":true,"y":null,"z":"\/"}"#;
    for header in [
        JAVA_SEND_V2_HEADER,
        java_response,
        spaced,
        unicode,
        edges,
        "{}",
        r#"{"extFields":null}"#,
    ] {
        let scanned = json_scan::scan_header(header.as_bytes());
        assert!(scanned.is_some(), "declined {header}");
        assert_eq!(scanned, general(header.as_bytes()), "{header}");
    }
    let spaced = json_scan::scan_header(spaced.as_bytes()).unwrap();
    assert_eq!(spaced.ext_fields.get("a"), Some("\u{1}x\"y\\"));
    assert!(!spaced.ext_fields.contains("b"));
}

#[test]
fn the_scanner_leaves_the_lenient_and_the_malformed_to_the_general_decoder() {
    for header in [
        // Lenient forms: numbers as strings, values that are not strings, ordinals.
        r#"{"code":"34","language":1}"#,
        r#"{"code":310,"extFields":{"e":0,"k":false}}"#,
        r#"{"code":10,"extFields":{"n":{"p":1}}}"#,
        r#"{"code":1.0}"#,
        r#"{"code":null}"#,
        r#"{"code":1,"other":[1]}"#,
        // Malformed or refused: duplicates, ranges, escapes it does not resolve, trailing bytes.
        r#"{"code":1,"code":2}"#,
        r#"{"code":2147483648}"#,
        r#"{"code":01}"#,
        r#"{"remark":"\ud83d\ude00"}"#,
        r#"{"code":1} x"#,
        r#"{"code":1,}"#,
        "{\"remark\":\"a\tb\"}",
        "",
    ] {
        assert_eq!(json_scan::scan_header(header.as_bytes()), None, "{header}");
    }
}

/// The scanner checks an escaped string as UTF-8 once, after resolving its escapes: a sequence
/// broken by an escape must not come out whole.
#[test]
fn the_scanner_declines_utf8_broken_around_an_escape() {
    for header in [
        // A lead byte cut short by an escape, which resolves to a lead and a continuation.
        &b"{\"remark\":\"\xC3\\u00A9\"}"[..],
        // A stray continuation byte after an escape.
        b"{\"remark\":\"\\u00E9\xA9\"}",
        b"{\"extFields\":{\"a\":\"x\xFF\\u0001y\"}}",
    ] {
        assert_eq!(json_scan::scan_header(header), None, "{header:?}");
        assert_eq!(general(header), None, "{header:?}");
    }
}

/// Fragments that headers are made of, right and wrong, to assemble hostile headers from.
const JSON_FRAGMENTS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    " ",
    "\n",
    "\"",
    "\\",
    "null",
    "true",
    "false",
    "0",
    "-0",
    "7",
    "-12",
    "01",
    "1.5",
    "1e3",
    "2147483648",
    "\"code\"",
    "\"opaque\"",
    "\"flag\"",
    "\"version\"",
    "\"language\"",
    "\"JAVA\"",
    "\"remark\"",
    "\"extFields\"",
    "\"a\"",
    "\"b\"",
    "\"x\\\"y\"",
    "\"\\u0001\"",
    "\"\\ud83d\"",
    "\"\\q\"",
    "\"é\"",
    "\u{1}",
    "\u{ff}",
];

proptest! {
    #[test]
    fn the_scanner_agrees_with_the_general_decoder_on_every_encoded_header(
        command in any_command(SerializeType::Json),
    ) {
        let mut frame = BytesMut::new();
        encode(&command, &mut frame).unwrap();
        let header_len = (u32::from_be_bytes(frame[4..8].try_into().unwrap()) & 0x00FF_FFFF) as usize;
        let header = &frame[8..8 + header_len];
        let scanned = json_scan::scan_header(header);
        prop_assert!(scanned.is_some());
        prop_assert_eq!(scanned, general(header));
    }

    #[test]
    fn what_the_scanner_accepts_the_general_decoder_reads_the_same(
        fragments in proptest::collection::vec(proptest::sample::select(JSON_FRAGMENTS), 0..40),
    ) {
        let header = fragments.concat();
        if let Some(scanned) = json_scan::scan_header(header.as_bytes()) {
            prop_assert_eq!(Some(scanned), general(header.as_bytes()), "{}", header);
        }
    }

    #[test]
    fn the_scanner_agrees_on_mutated_java_headers(
        position in 0usize..400,
        replacement in proptest::sample::select(JSON_FRAGMENTS),
        cut in 0usize..3,
    ) {
        let mut header = JAVA_SEND_V2_HEADER.as_bytes().to_vec();
        let at = position % (header.len() + 1);
        let end = (at + cut).min(header.len());
        header.splice(at..end, replacement.bytes());
        if let Some(scanned) = json_scan::scan_header(&header) {
            prop_assert_eq!(Some(scanned), general(&header), "{}", String::from_utf8_lossy(&header));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The JSON header writer against a generic serializer

/// The JSON header as `serde` writes it: the fields in alphabetical order, nulls omitted.
#[derive(serde::Serialize)]
struct ReferenceHeader<'a> {
    code: i32,
    #[serde(rename = "extFields", skip_serializing_if = "ExtFields::is_empty")]
    ext_fields: &'a ExtFields,
    flag: i32,
    language: &'static str,
    opaque: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    remark: Option<&'a str>,
    #[serde(rename = "serializeTypeCurrentRPC")]
    serialize_type: &'static str,
    version: i32,
}

fn reference_json_header(command: &RemotingCommand) -> Vec<u8> {
    sonic_rs::to_vec(&ReferenceHeader {
        code: command.code,
        ext_fields: &command.ext_fields,
        flag: command.flag,
        language: command.language.name(),
        opaque: command.opaque,
        remark: command.remark.as_deref(),
        serialize_type: SerializeType::Json.name(),
        version: command.version,
    })
    .unwrap()
}

fn written_json_header(command: &RemotingCommand) -> Vec<u8> {
    let mut out = Vec::new();
    json_write::write_header(command, &mut out);
    out
}

/// Text heavy in what a JSON string escapes, beside plain and multi-byte characters, and long
/// plain runs with an escape or two.
const ESCAPE_HEAVY_TEXT: &str = concat!(
    "[\\x00-\\x1f\"\\\\/a-z0-9\\x7f\u{e9}\u{4e2d}\u{1F600}]{0,24}",
    "|[a-z0-9 \u{e9}]{0,40}[\\x00-\\x1f\"\\\\]?[a-z0-9]{0,20}[\\x01\\x02]?[a-z]{0,12}"
);

fn escape_heavy_command() -> impl Strategy<Value = RemotingCommand> {
    commands(any::<i32>().boxed(), ESCAPE_HEAVY_TEXT, SerializeType::Json)
}

#[test]
fn the_writer_escapes_every_control_character_as_serde_does() {
    let every_control: String = (0u8..0x20).map(char::from).collect();
    let command = RemotingCommand {
        remark: Some(format!("{every_control}\"\\/\u{7f}é")),
        ext_fields: [("k\u{1}", "v\u{2}\t\"")].into_iter().collect(),
        ..RemotingCommand::default()
    };
    let written = written_json_header(&command);
    assert_eq!(&written[..], &reference_json_header(&command)[..]);
    assert!(
        std::str::from_utf8(&written)
            .unwrap()
            .contains(r#""remark":"\u0000\u0001"#)
    );
}

proptest! {
    #[test]
    fn the_writer_writes_what_serde_writes(
        command in prop_oneof![any_command(SerializeType::Json), escape_heavy_command()],
    ) {
        prop_assert_eq!(&written_json_header(&command)[..], &reference_json_header(&command)[..]);
    }
}
