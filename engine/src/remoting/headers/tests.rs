//! Golden `extFields` of real clients (Java 4.9.x, C++ via PyPI `rocketmq`, ali-ons) decoded
//! into the catalog's headers, and encode/decode round trips.

use super::*;
use proptest::prelude::*;

fn fields(pairs: &[(&str, &str)]) -> ExtFields {
    pairs.iter().copied().collect()
}

fn round_trip<H: CommandHeader + PartialEq + std::fmt::Debug>(header: &H) -> H {
    let mut out = ExtFields::new();
    header.encode(&mut out);
    H::decode(&out).expect("a header this catalog encoded decodes")
}

/// The `extFields` of a SEND_MESSAGE_V2 from the Java 4.9.x producer: `k` and `m` are Java
/// primitives, so always present; `l` (maxReconsumeTimes) is null on a first send, so absent.
fn java_send_v2_fields() -> ExtFields {
    fields(&[
        ("a", "pg"),
        ("b", "TopicTest"),
        ("c", "TBW102"),
        ("d", "4"),
        ("e", "1"),
        ("f", "0"),
        ("g", "1700000000000"),
        ("h", "0"),
        (
            "i",
            "UNIQ_KEY\u{1}7F0000012A2C18B4AAC2\u{2}WAIT\u{1}true\u{2}TAGS\u{1}TagA\u{2}",
        ),
        ("j", "0"),
        ("k", "false"),
        ("m", "false"),
        ("n", "broker-a"),
    ])
}

fn java_send_v1() -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: "TopicTest".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 1,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        flag: 0,
        properties: Some(
            "UNIQ_KEY\u{1}7F0000012A2C18B4AAC2\u{2}WAIT\u{1}true\u{2}TAGS\u{1}TagA\u{2}".into(),
        ),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        batch: Some(false),
        max_reconsume_times: None,
        broker_name: Some("broker-a".into()),
    }
}

#[test]
fn send_v2_from_java_decodes_and_converts_to_v1() {
    let v2 = SendMessageRequestHeaderV2::decode(&java_send_v2_fields()).unwrap();
    assert_eq!(v2.producer_group, "pg");
    assert_eq!(v2.topic, "TopicTest");
    assert_eq!(v2.default_topic, "TBW102");
    assert_eq!(v2.default_topic_queue_nums, 4);
    assert_eq!(v2.queue_id, 1);
    assert_eq!(v2.born_timestamp, 1_700_000_000_000);
    assert_eq!(v2.max_reconsume_times, None);
    assert_eq!(v2.broker_name.as_deref(), Some("broker-a"));
    assert_eq!(SendMessageRequestHeader::from(v2), java_send_v1());
}

#[test]
fn send_v2_encodes_exactly_the_java_keys() {
    let mut out = ExtFields::new();
    SendMessageRequestHeaderV2::from(java_send_v1()).encode(&mut out);
    assert_eq!(out, java_send_v2_fields());
}

#[test]
fn send_decode_for_code_reads_one_letter_keys_only_for_v2_codes() {
    let v2_fields = java_send_v2_fields();
    for code in [
        request_code::SEND_MESSAGE_V2,
        request_code::SEND_BATCH_MESSAGE,
        request_code::SEND_REPLY_MESSAGE_V2,
    ] {
        assert_eq!(
            SendMessageRequestHeader::decode_for_code(code, &v2_fields).unwrap(),
            java_send_v1()
        );
    }
    let mut v1_fields = ExtFields::new();
    java_send_v1().encode(&mut v1_fields);
    assert_eq!(
        SendMessageRequestHeader::decode_for_code(request_code::SEND_MESSAGE, &v1_fields).unwrap(),
        java_send_v1()
    );
    // SEND_MESSAGE with one-letter keys is a malformed request, named by its first long key.
    assert_eq!(
        SendMessageRequestHeader::decode_for_code(request_code::SEND_MESSAGE, &v2_fields),
        Err(HeaderError::Missing {
            field: "producerGroup"
        })
    );
}

#[test]
fn send_v1_from_cpp_reads_numeric_booleans() {
    // The C++ client (PyPI rocketmq 0.4.4) sends SEND_MESSAGE with `batch` and `unitMode` as
    // `1`/`0`, and without `bname`.
    let header = SendMessageRequestHeader::decode(&fields(&[
        ("producerGroup", "pg"),
        ("topic", "TopicTest"),
        ("defaultTopic", "TBW102"),
        ("defaultTopicQueueNums", "4"),
        ("queueId", "2"),
        ("sysFlag", "0"),
        ("bornTimestamp", "1700000000123"),
        ("flag", "0"),
        ("properties", ""),
        ("reconsumeTimes", "0"),
        ("unitMode", "0"),
        ("batch", "1"),
    ]))
    .unwrap();
    assert_eq!(header.batch, Some(true));
    assert_eq!(header.unit_mode, Some(false));
    assert_eq!(header.properties.as_deref(), Some(""));
    assert_eq!(header.broker_name, None);
}

#[test]
fn update_consumer_offset_from_ali_ons_reads_minus_one() {
    let header = UpdateConsumerOffsetRequestHeader::decode(&fields(&[
        ("consumerGroup", "cg"),
        ("topic", "TopicTest"),
        ("queueId", "3"),
        ("commitOffset", "-1"),
    ]))
    .unwrap();
    assert_eq!(
        header,
        UpdateConsumerOffsetRequestHeader {
            consumer_group: "cg".into(),
            topic: "TopicTest".into(),
            queue_id: 3,
            commit_offset: -1,
            broker_name: None,
        }
    );
}

#[test]
fn pull_from_java_push_consumer_decodes_without_subscription() {
    // Java 4.9.8 push consumer: sysFlag 2/3, no subscription (postSubscriptionWhenPull=false),
    // plus `bname` since 4.9.5.
    let header = PullMessageRequestHeader::decode(&fields(&[
        ("consumerGroup", "cg"),
        ("topic", "TopicTest"),
        ("queueId", "0"),
        ("queueOffset", "17"),
        ("maxMsgNums", "32"),
        ("sysFlag", "3"),
        ("commitOffset", "16"),
        ("suspendTimeoutMillis", "15000"),
        ("subVersion", "1700000000000"),
        ("expressionType", "TAG"),
        ("bname", "broker-a"),
    ]))
    .unwrap();
    assert_eq!(header.subscription, None);
    assert_eq!(header.expression_type.as_deref(), Some("TAG"));
    assert_eq!(header.queue_offset, 17);
    assert_eq!(header.broker_name.as_deref(), Some("broker-a"));
}

#[test]
fn missing_required_fields_are_named_by_java_key() {
    let mut v2 = java_send_v2_fields();
    v2.remove("g");
    assert_eq!(
        SendMessageRequestHeaderV2::decode(&v2),
        Err(HeaderError::Missing { field: "g" })
    );

    let error = PullMessageResponseHeader::decode(&fields(&[
        ("suggestWhichBrokerId", "0"),
        ("nextBeginOffset", "5"),
        ("minOffset", "0"),
    ]))
    .unwrap_err();
    assert_eq!(error, HeaderError::Missing { field: "maxOffset" });
    assert_eq!(
        error.to_string(),
        "the request header field `maxOffset` is missing"
    );

    assert_eq!(
        UnregisterClientRequestHeader::decode(&fields(&[("clientId", "127.0.0.1@1")])),
        Err(HeaderError::Missing { field: "clientID" })
    );
    assert_eq!(
        ResetOffsetRequestHeader::decode(&fields(&[
            ("topic", "T"),
            ("group", "g"),
            ("timestamp", "0"),
        ])),
        Err(HeaderError::Missing { field: "isForce" })
    );
    assert_eq!(
        RegisterBrokerRequestHeader::decode(&fields(&[
            ("brokerName", "broker-a"),
            ("brokerAddr", "127.0.0.1:10911"),
            ("clusterName", "DefaultCluster"),
            ("haServerAddr", "127.0.0.1:10912"),
        ])),
        Err(HeaderError::Missing { field: "brokerId" })
    );
}

#[test]
fn malformed_numbers_are_named_by_java_key() {
    let mut v2 = java_send_v2_fields();
    v2.insert("e", "one");
    assert_eq!(
        SendMessageRequestHeaderV2::decode(&v2),
        Err(HeaderError::Invalid {
            field: "e",
            value: "one".into()
        })
    );
}

#[test]
fn optional_fields_may_be_absent() {
    let route = GetRouteInfoRequestHeader::decode(&fields(&[("topic", "TopicTest")])).unwrap();
    assert_eq!(route.accept_standard_json_only, None);

    let register = RegisterBrokerRequestHeader::decode(&fields(&[
        ("brokerName", "broker-a"),
        ("brokerAddr", "127.0.0.1:10911"),
        ("clusterName", "DefaultCluster"),
        ("haServerAddr", "127.0.0.1:10912"),
        ("brokerId", "0"),
    ]))
    .unwrap();
    assert_eq!(register.compressed, None);
    assert_eq!(register.body_crc32, None);

    let response = RegisterBrokerResponseHeader::decode(&ExtFields::new()).unwrap();
    assert_eq!(response, RegisterBrokerResponseHeader::default());
}

#[test]
fn unknown_keys_from_newer_clients_are_ignored() {
    // 5.x clients add `ns`, `nsd`, `oway`; ACL adds `AccessKey` and `Signature`.
    let header = QueryConsumerOffsetRequestHeader::decode(&fields(&[
        ("consumerGroup", "cg"),
        ("topic", "T"),
        ("queueId", "1"),
        ("bname", "broker-a"),
        ("ns", ""),
        ("nsd", "false"),
        ("oway", "false"),
        ("AccessKey", "ak"),
        ("Signature", "sig"),
    ]))
    .unwrap();
    assert_eq!(header.queue_id, 1);
    assert_eq!(header.broker_name.as_deref(), Some("broker-a"));
}

#[test]
fn unregister_from_cpp_keeps_empty_group() {
    let header = UnregisterClientRequestHeader::decode(&fields(&[
        ("clientID", "127.0.0.1@4242"),
        ("producerGroup", ""),
        ("consumerGroup", "cg"),
    ]))
    .unwrap();
    assert_eq!(header.producer_group.as_deref(), Some(""));
    assert_eq!(header.consumer_group.as_deref(), Some("cg"));
}

#[test]
fn send_response_carries_the_ext_fields_java_clients_read() {
    let mut out = ExtFields::new();
    SendMessageResponseHeader {
        msg_id: "7F00000100002A9F0000000000000000".into(),
        queue_id: 1,
        queue_offset: 0,
        transaction_id: None,
        msg_region: Some("DefaultRegion".into()),
        trace_on: Some(true),
    }
    .encode(&mut out);
    assert_eq!(
        out,
        fields(&[
            ("msgId", "7F00000100002A9F0000000000000000"),
            ("queueId", "1"),
            ("queueOffset", "0"),
            ("MSG_REGION", "DefaultRegion"),
            ("TRACE_ON", "true"),
        ])
    );
}

#[test]
fn encode_then_decode_is_identity_for_catalog_headers() {
    let register = RegisterBrokerRequestHeader {
        broker_name: "broker-a".into(),
        broker_addr: "127.0.0.1:10911".into(),
        cluster_name: "DefaultCluster".into(),
        ha_server_addr: "127.0.0.1:10912".into(),
        broker_id: 0,
        compressed: Some(false),
        body_crc32: Some(0x1234_5678),
    };
    assert_eq!(round_trip(&register), register);

    let pull_response = PullMessageResponseHeader {
        suggest_which_broker_id: 0,
        next_begin_offset: 42,
        min_offset: 0,
        max_offset: 42,
    };
    assert_eq!(round_trip(&pull_response), pull_response);

    let end = EndTransactionRequestHeader {
        producer_group: "pg".into(),
        tran_state_table_offset: 3,
        commit_log_offset: 1_048_576,
        commit_or_rollback: 8,
        from_transaction_check: Some(true),
        msg_id: "7F0000012A2C18B4AAC2".into(),
        transaction_id: Some("tx-1".into()),
        broker_name: None,
    };
    assert_eq!(round_trip(&end), end);

    let create = CreateTopicRequestHeader {
        topic: "TopicTest".into(),
        default_topic: "TBW102".into(),
        read_queue_nums: 8,
        write_queue_nums: 8,
        perm: 6,
        topic_filter_type: "SINGLE_TAG".into(),
        topic_sys_flag: None,
        order: false,
    };
    assert_eq!(round_trip(&create), create);

    let version = QueryDataVersionResponseHeader { changed: true };
    assert_eq!(round_trip(&version), version);

    let mut empty = ExtFields::new();
    UpdateConsumerOffsetResponseHeader.encode(&mut empty);
    assert!(empty.is_empty());
    assert_eq!(
        UpdateConsumerOffsetResponseHeader::decode(&fields(&[("x", "y")])),
        Ok(UpdateConsumerOffsetResponseHeader)
    );
}

fn any_send_header() -> impl Strategy<Value = SendMessageRequestHeader> {
    let text = ".{0,12}";
    (
        (text, text, text, any::<i32>(), any::<i32>(), any::<i32>()),
        (any::<i64>(), any::<i32>(), proptest::option::of(text)),
        (
            proptest::option::of(any::<i32>()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<i32>()),
            proptest::option::of(text),
        ),
    )
        .prop_map(
            |(
                (
                    producer_group,
                    topic,
                    default_topic,
                    default_topic_queue_nums,
                    queue_id,
                    sys_flag,
                ),
                (born_timestamp, flag, properties),
                (reconsume_times, unit_mode, batch, max_reconsume_times, broker_name),
            )| SendMessageRequestHeader {
                producer_group,
                topic,
                default_topic,
                default_topic_queue_nums,
                queue_id,
                sys_flag,
                born_timestamp,
                flag,
                properties,
                reconsume_times,
                unit_mode,
                batch,
                max_reconsume_times,
                broker_name,
            },
        )
}

proptest! {
    #[test]
    fn send_v1_encode_then_decode_is_identity(header in any_send_header()) {
        prop_assert_eq!(round_trip(&header), header);
    }

    #[test]
    fn send_v1_through_v2_wire_form_is_identity(header in any_send_header()) {
        let mut out = ExtFields::new();
        SendMessageRequestHeaderV2::from(header.clone()).encode(&mut out);
        let back = SendMessageRequestHeader::decode_for_code(request_code::SEND_MESSAGE_V2, &out);
        prop_assert_eq!(back, Ok(header));
    }
}
