//! The admin processor against an in-memory broker: each code's success shape as the Java
//! tools read it, and each error path answered with Java's code and remark.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::broker::client_manager::{ClientChannelInfo, ConsumerRegistration};
use crate::broker::test_support::{
    TEST_WALL_MS, TestPeer, processor_fixture, respond, test_context,
};
use crate::clock::ClockExt;
use crate::protocol::TopicConfigSerializeWrapper;
use crate::remoting::LanguageCode;
use crate::remoting::headers::{
    GetConsumerConnectionListRequestHeader, GetProducerConnectionListRequestHeader,
};
use crate::store::message::MessageInner;
use crate::store::metadata::{
    ConsumerOffsetTable, SUBSCRIPTION_GROUP_FILE, SubscriptionGroupWrapper, TOPICS_FILE,
    config_path,
};

async fn broker() -> (Arc<BrokerContext>, AdminBrokerProcessor, TestPeer) {
    processor_fixture(AdminBrokerProcessor::new).await
}

fn message(context: &BrokerContext, topic: &str, queue_id: i32) -> MessageInner {
    let born_host: SocketAddr = "127.0.0.1:5555".parse().unwrap();
    MessageInner {
        topic: topic.into(),
        queue_id,
        flag: 0,
        body: Bytes::from_static(b"hello"),
        properties: String::new(),
        tags_code: 0,
        sys_flag: 0,
        born_timestamp: TEST_WALL_MS,
        born_host,
        store_host: context.store_host,
        store_timestamp: 0,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    }
}

async fn put(context: &BrokerContext, topic: &str, queue_id: i32, count: usize) {
    for _ in 0..count {
        let result = context
            .store
            .put_message(message(context, topic, queue_id))
            .await;
        assert!(result.status.is_stored(), "{result:?}");
    }
    context.store.dispatch_pending().await;
}

fn create_topic_header(topic: &str) -> CreateTopicRequestHeader {
    CreateTopicRequestHeader {
        topic: topic.into(),
        default_topic: "TBW102".into(),
        read_queue_nums: 4,
        write_queue_nums: 4,
        perm: 6,
        topic_filter_type: "SINGLE_TAG".into(),
        topic_sys_flag: Some(0),
        order: false,
    }
}

fn create_topic(header: &CreateTopicRequestHeader) -> RemotingCommand {
    RemotingCommand::request_with_header(rc::UPDATE_AND_CREATE_TOPIC, header)
}

fn remark(response: &RemotingCommand) -> &str {
    response.remark.as_deref().unwrap_or_default()
}

fn read_file(context: &BrokerContext, name: &str) -> String {
    let path = config_path(&context.store_config.store_path_root_dir, name);
    let bytes = context
        .env
        .disk
        .read_file(&path)
        .unwrap()
        .unwrap_or_else(|| panic!("{path} was persisted"));
    String::from_utf8(bytes).unwrap()
}

/// Turns fastjson's object map keys (`{{…}:v}`) into JSON string keys (`{"{…}":v}`), as
/// fastjson 1.2.66+ accepts them, so serde_json can read the Java shape in tests.
fn quote_object_keys(text: &str) -> String {
    #[derive(PartialEq)]
    enum Frame {
        Object { expect_key: bool },
        Array,
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 64);
    let mut stack: Vec<Frame> = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        match byte {
            b'"' => {
                let start = index;
                index += 1;
                while bytes[index] != b'"' {
                    index += if bytes[index] == b'\\' { 2 } else { 1 };
                }
                out.push_str(&text[start..=index]);
            }
            b'{' if stack.last() == Some(&Frame::Object { expect_key: true }) => {
                // An object key: copy it, balanced, as one JSON string.
                let start = index;
                let mut depth = 0;
                let mut in_string = false;
                loop {
                    let c = bytes[index];
                    if in_string {
                        if c == b'\\' {
                            index += 1;
                        } else if c == b'"' {
                            in_string = false;
                        }
                    } else if c == b'"' {
                        in_string = true;
                    } else if c == b'{' {
                        depth += 1;
                    } else if c == b'}' {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    index += 1;
                }
                out.push_str(&serde_json::to_string(&text[start..=index]).unwrap());
                if let Some(Frame::Object { expect_key }) = stack.last_mut() {
                    *expect_key = false;
                }
            }
            b'{' => {
                stack.push(Frame::Object { expect_key: true });
                out.push('{');
            }
            b'[' => {
                stack.push(Frame::Array);
                out.push('[');
            }
            b'}' | b']' => {
                stack.pop();
                out.push(char::from(byte));
            }
            b':' => {
                if let Some(Frame::Object { expect_key }) = stack.last_mut() {
                    *expect_key = false;
                }
                out.push(':');
            }
            b',' => {
                if let Some(Frame::Object { expect_key }) = stack.last_mut() {
                    *expect_key = true;
                }
                out.push(',');
            }
            _ => out.push(char::from(byte)),
        }
        index += 1;
    }
    out
}

/// Reads a `{"offsetTable":{<MessageQueue>:V,…},…}` body as a Java tool does.
fn offset_table<V: serde::de::DeserializeOwned>(body: &[u8]) -> BTreeMap<MessageQueue, V> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body<V> {
        offset_table: BTreeMap<String, V>,
    }
    let text = quote_object_keys(std::str::from_utf8(body).unwrap());
    let parsed: Body<V> = serde_json::from_str(&text).unwrap();
    parsed
        .offset_table
        .into_iter()
        .map(|(key, value)| (serde_json::from_str(&key).unwrap(), value))
        .collect()
}

fn queue(topic: &str, queue_id: i32) -> MessageQueue {
    MessageQueue {
        broker_name: "broker-a".into(),
        queue_id,
        topic: topic.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Topics

#[tokio::test]
async fn update_and_create_topic_creates_persists_and_signals_reregistration() {
    let (context, processor, peer) = broker().await;
    let mut header = create_topic_header("TopicA");
    header.topic_filter_type = "MULTI_TAG".into();
    header.write_queue_nums = 2;
    header.perm = 4;
    header.order = true;
    let response = respond(&processor, &peer, create_topic(&header)).await;
    assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
    let config = context
        .topic_config_manager
        .select_topic_config("TopicA")
        .unwrap();
    assert_eq!(config.read_queue_nums, 4);
    assert_eq!(config.write_queue_nums, 2);
    assert_eq!(config.perm, 4);
    assert_eq!(config.topic_filter_type, TopicFilterType::MultiTag);
    assert!(!config.order, "Java 4.9.8 ignores the order flag here");
    context
        .env
        .clock
        .timeout(
            Duration::from_secs(1),
            context.topic_config_manager.changed(),
        )
        .await
        .expect("the registration driver is told to re-register");
    assert!(read_file(&context, TOPICS_FILE).contains("\"TopicA\""));
}

#[tokio::test]
async fn update_and_create_topic_refuses_system_topics_and_bad_names_as_java() {
    let (context, processor, peer) = broker().await;
    let long = "T".repeat(128);
    let cases = [
        ("TBW102", "The topic[TBW102] is conflict with system topic."),
        (
            "SCHEDULE_TOPIC_XXXX",
            "The topic[SCHEDULE_TOPIC_XXXX] is conflict with system topic.",
        ),
        (
            "DefaultCluster",
            "The topic[DefaultCluster] is conflict with system topic.",
        ),
        (
            "broker-a",
            "The topic[broker-a] is conflict with system topic.",
        ),
        (
            "DefaultCluster_REPLY_TOPIC",
            "The topic[DefaultCluster_REPLY_TOPIC] is conflict with system topic.",
        ),
        (
            "rmq_sys_mine",
            "The topic[rmq_sys_mine] is conflict with system topic.",
        ),
        ("", "The specified topic is blank."),
        (
            "bad topic",
            "The specified topic contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$",
        ),
        (
            long.as_str(),
            "The specified topic is longer than topic max length.",
        ),
    ];
    for (topic, expected) in cases {
        let response = respond(&processor, &peer, create_topic(&create_topic_header(topic))).await;
        assert_eq!(response.code, response_code::SYSTEM_ERROR, "{topic}");
        assert_eq!(remark(&response), expected);
    }
    let config = context
        .topic_config_manager
        .select_topic_config("TBW102")
        .unwrap();
    assert_eq!(config.perm, 7, "the template is untouched");
}

#[tokio::test]
async fn update_and_create_topic_refuses_bad_filter_type_queue_counts_and_headers() {
    let (context, processor, peer) = broker().await;
    let mut header = create_topic_header("TopicA");
    header.topic_filter_type = "ANY_TAG".into();
    let response = respond(&processor, &peer, create_topic(&header)).await;
    assert_eq!(response.code, response_code::SYSTEM_ERROR);
    assert!(remark(&response).contains("ANY_TAG"), "{response:?}");

    let mut header = create_topic_header("TopicA");
    header.write_queue_nums = -1;
    let response = respond(&processor, &peer, create_topic(&header)).await;
    assert_eq!(response.code, response_code::SYSTEM_ERROR);
    assert!(remark(&response).contains("writeQueueNums"), "{response:?}");

    let mut request = create_topic(&create_topic_header("TopicA"));
    request.ext_fields.remove("perm");
    let response = respond(&processor, &peer, request).await;
    assert_eq!(response.code, response_code::SYSTEM_ERROR);
    assert!(remark(&response).contains("`perm`"), "{response:?}");
    assert!(
        context
            .topic_config_manager
            .select_topic_config("TopicA")
            .is_none()
    );
}

#[tokio::test]
async fn topic_and_group_changes_are_refused_on_a_slave() {
    let context = test_context(|_, store| store.broker_role = BrokerRole::Slave).await;
    let processor = AdminBrokerProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    let slave_remark = "Can't modify topic or subscription group from slave broker, please execute it from master broker.";
    let requests = [
        create_topic(&create_topic_header("TopicA")),
        RemotingCommand::request_with_header(
            rc::DELETE_TOPIC_IN_BROKER,
            &DeleteTopicRequestHeader {
                topic: "TopicA".into(),
            },
        ),
        RemotingCommand::request(rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
            .with_body(to_json(&SubscriptionGroupConfig::new("cg"))),
        RemotingCommand::request_with_header(
            rc::DELETE_SUBSCRIPTIONGROUP,
            &DeleteSubscriptionGroupRequestHeader {
                group_name: "cg".into(),
                remove_offset: None,
            },
        ),
    ];
    for request in requests {
        let code = request.code;
        let response = respond(&processor, &peer, request).await;
        assert_eq!(response.code, response_code::SYSTEM_ERROR, "code {code}");
        assert_eq!(remark(&response), slave_remark);
    }
}

#[tokio::test]
async fn delete_topic_removes_its_config_and_committed_offsets() {
    let (context, processor, peer) = broker().await;
    respond(
        &processor,
        &peer,
        create_topic(&create_topic_header("TopicA")),
    )
    .await;
    context
        .consumer_offset_manager
        .commit_offset("cg", "TopicA", 0, 5);
    context
        .consumer_offset_manager
        .commit_offset("cg", "TopicB", 0, 7);
    let delete = |topic: &str| {
        RemotingCommand::request_with_header(
            rc::DELETE_TOPIC_IN_BROKER,
            &DeleteTopicRequestHeader {
                topic: topic.into(),
            },
        )
    };
    let response = respond(&processor, &peer, delete("TopicA")).await;
    assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
    assert!(
        context
            .topic_config_manager
            .select_topic_config("TopicA")
            .is_none()
    );
    assert_eq!(
        context
            .consumer_offset_manager
            .query_offset("cg", "TopicA", 0),
        None
    );
    assert_eq!(
        context
            .consumer_offset_manager
            .query_offset("cg", "TopicB", 0),
        Some(7)
    );
    assert!(!read_file(&context, TOPICS_FILE).contains("\"TopicA\""));

    // Deleting a topic that is not there succeeds, as in Java.
    let response = respond(&processor, &peer, delete("Nowhere")).await;
    assert_eq!(response.code, response_code::SUCCESS);
    let response = respond(&processor, &peer, delete("SELF_TEST_TOPIC")).await;
    assert_eq!(response.code, response_code::SYSTEM_ERROR);
    assert_eq!(
        remark(&response),
        "The topic[SELF_TEST_TOPIC] is conflict with system topic."
    );
    assert!(
        context
            .topic_config_manager
            .select_topic_config("SELF_TEST_TOPIC")
            .is_some()
    );
}

#[tokio::test]
async fn all_topic_config_is_the_topic_config_serialize_wrapper() {
    let (context, processor, peer) = broker().await;
    respond(
        &processor,
        &peer,
        create_topic(&create_topic_header("TopicA")),
    )
    .await;
    let response = respond(
        &processor,
        &peer,
        RemotingCommand::request(rc::GET_ALL_TOPIC_CONFIG),
    )
    .await;
    assert_eq!(response.code, response_code::SUCCESS);
    let wrapper: TopicConfigSerializeWrapper =
        from_json("TopicConfigSerializeWrapper", &response.body).unwrap();
    assert_eq!(wrapper, context.topic_config_manager.serialize_wrapper());
    assert!(wrapper.topic_config_table.contains_key("TopicA"));
    assert!(wrapper.data_version.counter >= 1);
}

#[tokio::test]
async fn topic_stats_info_reports_each_write_queue_in_the_fastjson_shape() {
    let (context, processor, peer) = broker().await;
    let mut header = create_topic_header("TopicA");
    header.write_queue_nums = 2;
    respond(&processor, &peer, create_topic(&header)).await;
    put(&context, "TopicA", 1, 3).await;
    let request = |topic: &str| {
        RemotingCommand::request_with_header(
            rc::GET_TOPIC_STATS_INFO,
            &GetTopicStatsInfoRequestHeader {
                topic: topic.into(),
            },
        )
    };
    let response = respond(&processor, &peer, request("TopicA")).await;
    assert_eq!(response.code, response_code::SUCCESS);
    let text = std::str::from_utf8(&response.body).unwrap();
    assert!(
        text.starts_with(
            r#"{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"TopicA"}:{"lastUpdateTimestamp":0,"maxOffset":0,"minOffset":0},"#
        ),
        "{text}"
    );
    let table: BTreeMap<MessageQueue, TopicOffset> = offset_table(&response.body);
    assert_eq!(table.len(), 2, "one entry per write queue");
    assert_eq!(
        table[&queue("TopicA", 1)],
        TopicOffset {
            last_update_timestamp: TEST_WALL_MS,
            max_offset: 3,
            min_offset: 0,
        }
    );

    let response = respond(&processor, &peer, request("Nowhere")).await;
    assert_eq!(response.code, response_code::TOPIC_NOT_EXIST);
    assert_eq!(remark(&response), "topic[Nowhere] not exist");
}

#[tokio::test]
async fn query_topic_consume_by_who_joins_subscribers_and_offset_holders() {
    let (context, processor, peer) = broker().await;
    register_consumer(&context, &peer, "cg-live", &["TopicA"]);
    context
        .consumer_offset_manager
        .commit_offset("cg-offline", "TopicA", 0, 1);
    context
        .consumer_offset_manager
        .commit_offset("cg-other", "TopicB", 0, 1);
    let response = respond(
        &processor,
        &peer,
        RemotingCommand::request_with_header(
            rc::QUERY_TOPIC_CONSUME_BY_WHO,
            &QueryTopicConsumeByWhoRequestHeader {
                topic: "TopicA".into(),
            },
        ),
    )
    .await;
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(
        std::str::from_utf8(&response.body).unwrap(),
        r#"{"groupList":["cg-live","cg-offline"]}"#
    );
}

// ---------------------------------------------------------------------------------------------
// Queue offsets

#[tokio::test]
async fn queue_offset_queries_answer_from_the_store() {
    let (context, processor, peer) = broker().await;
    put(&context, "TopicA", 0, 5).await;
    let max = RemotingCommand::request_with_header(
        rc::GET_MAX_OFFSET,
        &GetMaxOffsetRequestHeader {
            topic: "TopicA".into(),
            queue_id: 0,
            broker_name: None,
        },
    );
    let response = respond(&processor, &peer, max).await;
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(response.ext_fields.get("offset"), Some("5"));

    let min = RemotingCommand::request_with_header(
        rc::GET_MIN_OFFSET,
        &GetMinOffsetRequestHeader {
            topic: "TopicA".into(),
            queue_id: 0,
            broker_name: None,
        },
    );
    let response = respond(&processor, &peer, min).await;
    assert_eq!(response.ext_fields.get("offset"), Some("0"));

    let search = |timestamp: i64| {
        RemotingCommand::request_with_header(
            rc::SEARCH_OFFSET_BY_TIMESTAMP,
            &SearchOffsetRequestHeader {
                topic: "TopicA".into(),
                queue_id: 0,
                timestamp,
                broker_name: None,
            },
        )
    };
    let response = respond(&processor, &peer, search(TEST_WALL_MS)).await;
    assert_eq!(response.ext_fields.get("offset"), Some("0"));
    let response = respond(&processor, &peer, search(TEST_WALL_MS + 1)).await;
    assert_eq!(
        response.ext_fields.get("offset"),
        Some("5"),
        "past every message: the max offset"
    );

    let earliest = |topic: &str| {
        RemotingCommand::request_with_header(
            rc::GET_EARLIEST_MSG_STORETIME,
            &GetEarliestMsgStoretimeRequestHeader {
                topic: topic.into(),
                queue_id: 0,
                broker_name: None,
            },
        )
    };
    let response = respond(&processor, &peer, earliest("TopicA")).await;
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(
        response.ext_fields.get("timestamp"),
        Some(TEST_WALL_MS.to_string().as_str())
    );
    let response = respond(&processor, &peer, earliest("Nowhere")).await;
    assert_eq!(response.ext_fields.get("timestamp"), Some("-1"));
}

#[tokio::test]
async fn queue_offset_queries_on_unknown_queues_answer_zero_and_bad_headers_system_error() {
    let (_context, processor, peer) = broker().await;
    let response = respond(
        &processor,
        &peer,
        RemotingCommand::request_with_header(
            rc::GET_MAX_OFFSET,
            &GetMaxOffsetRequestHeader {
                topic: "Nowhere".into(),
                queue_id: 9,
                broker_name: None,
            },
        ),
    )
    .await;
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(response.ext_fields.get("offset"), Some("0"));

    let mut request = RemotingCommand::request(rc::GET_MIN_OFFSET);
    request.ext_fields.insert("topic", "TopicA");
    request.ext_fields.insert("queueId", "zero");
    let response = respond(&processor, &peer, request).await;
    assert_eq!(response.code, response_code::SYSTEM_ERROR);
    assert!(remark(&response).contains("queueId"), "{response:?}");

    let response = respond(
        &processor,
        &peer,
        RemotingCommand::request(rc::SEARCH_OFFSET_BY_TIMESTAMP),
    )
    .await;
    assert_eq!(response.code, response_code::SYSTEM_ERROR);
    assert!(remark(&response).contains("missing"), "{response:?}");
}

// ---------------------------------------------------------------------------------------------
// Consumer groups and offsets

#[tokio::test]
async fn subscription_groups_are_created_listed_and_deleted_with_their_offsets() {
    let (context, processor, peer) = broker().await;
    let mut config = SubscriptionGroupConfig::new("cg");
    config.retry_max_times = 3;
    let create = RemotingCommand::request(rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
        .with_body(to_json(&config));
    let response = respond(&processor, &peer, create).await;
    assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
    assert!(read_file(&context, SUBSCRIPTION_GROUP_FILE).contains("\"cg\""));

    let response = respond(
        &processor,
        &peer,
        RemotingCommand::request(rc::GET_ALL_SUBSCRIPTIONGROUP_CONFIG),
    )
    .await;
    assert_eq!(response.code, response_code::SUCCESS);
    let wrapper: SubscriptionGroupWrapper =
        from_json("SubscriptionGroupWrapper", &response.body).unwrap();
    assert_eq!(wrapper.subscription_group_table["cg"].retry_max_times, 3);
    assert!(
        wrapper
            .subscription_group_table
            .contains_key("TOOLS_CONSUMER")
    );

    context
        .consumer_offset_manager
        .commit_offset("cg", "TopicA", 0, 4);
    let delete = |remove_offset| {
        RemotingCommand::request_with_header(
            rc::DELETE_SUBSCRIPTIONGROUP,
            &DeleteSubscriptionGroupRequestHeader {
                group_name: "cg".into(),
                remove_offset,
            },
        )
    };
    let response = respond(&processor, &peer, delete(None)).await;
    assert_eq!(response.code, response_code::SUCCESS);
    assert!(
        !context
            .subscription_group_manager
            .wrapper()
            .subscription_group_table
            .contains_key("cg")
    );
    assert_eq!(
        context
            .consumer_offset_manager
            .query_offset("cg", "TopicA", 0),
        Some(4),
        "offsets stay without removeOffset"
    );
    let response = respond(&processor, &peer, delete(Some(true))).await;
    assert_eq!(
        response.code,
        response_code::SUCCESS,
        "deleting again is fine"
    );
    assert_eq!(
        context
            .consumer_offset_manager
            .query_offset("cg", "TopicA", 0),
        None
    );
}

#[tokio::test]
async fn subscription_group_bodies_that_are_missing_or_malformed_are_system_errors() {
    let (context, processor, peer) = broker().await;
    let request = |body: &'static [u8]| {
        RemotingCommand::request(rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP).with_body(body)
    };
    for body in [&b""[..], b"{not json", br#"{"groupName":"  "}"#] {
        let response = respond(&processor, &peer, request(body)).await;
        assert_eq!(response.code, response_code::SYSTEM_ERROR, "{body:?}");
        assert!(!remark(&response).is_empty());
    }
    // Java decodes `null` to no config and answers SUCCESS.
    let before = context.subscription_group_manager.wrapper();
    let response = respond(&processor, &peer, request(b"null")).await;
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(context.subscription_group_manager.wrapper(), before);
    // Fields Java tools send that ferrocket does not keep are ignored; missing ones default.
    let response = respond(
        &processor,
        &peer,
        request(br#"{"groupName":"cg2","consumeEnable":false,"groupRetryPolicy":{}}"#),
    )
    .await;
    assert_eq!(response.code, response_code::SUCCESS);
    let (config, created) = context
        .subscription_group_manager
        .find_subscription_group_config("cg2")
        .unwrap();
    assert!(!created);
    assert!(!config.consume_enable);
    assert_eq!(config.retry_queue_nums, 1);
}

#[tokio::test]
async fn all_consumer_offset_is_the_offset_table() {
    let (context, processor, peer) = broker().await;
    context
        .consumer_offset_manager
        .commit_offset("cg", "TopicA", 1, 12);
    let response = respond(
        &processor,
        &peer,
        RemotingCommand::request(rc::GET_ALL_CONSUMER_OFFSET),
    )
    .await;
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(
        std::str::from_utf8(&response.body).unwrap(),
        r#"{"offsetTable":{"TopicA@cg":{"1":12}}}"#
    );
    let table: ConsumerOffsetTable = from_json("ConsumerOffsetTable", &response.body).unwrap();
    assert_eq!(table.query("cg", "TopicA", 1), Some(12));
}

#[tokio::test]
async fn consume_stats_reports_broker_and_consumer_offsets_per_read_queue() {
    let (context, processor, peer) = broker().await;
    let mut header = create_topic_header("TopicA");
    header.read_queue_nums = 2;
    respond(&processor, &peer, create_topic(&header)).await;
    respond(
        &processor,
        &peer,
        create_topic(&create_topic_header("TopicB")),
    )
    .await;
    put(&context, "TopicA", 0, 4).await;
    context
        .consumer_offset_manager
        .commit_offset("cg", "TopicA", 0, 3);
    context
        .consumer_offset_manager
        .commit_offset("cg", "TopicB", 0, 0);
    context
        .consumer_offset_manager
        .commit_offset("cg", "Deleted", 0, 1);
    let request = |topic: Option<&str>| {
        RemotingCommand::request_with_header(
            rc::GET_CONSUME_STATS,
            &GetConsumeStatsRequestHeader {
                consumer_group: "cg".into(),
                topic: topic.map(str::to_owned),
            },
        )
    };

    let response = respond(&processor, &peer, request(Some("TopicA"))).await;
    assert_eq!(response.code, response_code::SUCCESS);
    let text = std::str::from_utf8(&response.body).unwrap();
    assert!(
        text.starts_with(r#"{"consumeTps":0.0,"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"TopicA"}:"#),
        "{text}"
    );
    let table: BTreeMap<MessageQueue, OffsetWrapper> = offset_table(&response.body);
    assert_eq!(table.len(), 2, "one entry per read queue");
    assert_eq!(
        table[&queue("TopicA", 0)],
        OffsetWrapper {
            broker_offset: 4,
            consumer_offset: 3,
            last_timestamp: TEST_WALL_MS,
        }
    );
    assert_eq!(
        table[&queue("TopicA", 1)],
        OffsetWrapper {
            broker_offset: 0,
            consumer_offset: 0,
            last_timestamp: 0,
        }
    );

    // Without a topic: every topic the group has offsets on that still exists here.
    let response = respond(&processor, &peer, request(Some(" "))).await;
    let table: BTreeMap<MessageQueue, OffsetWrapper> = offset_table(&response.body);
    let topics: BTreeSet<&str> = table.keys().map(|q| q.topic.as_str()).collect();
    assert_eq!(topics, BTreeSet::from(["TopicA", "TopicB"]));

    // An online group only gets the topics it subscribes to.
    register_consumer(&context, &peer, "cg", &["TopicB"]);
    let response = respond(&processor, &peer, request(None)).await;
    let table: BTreeMap<MessageQueue, OffsetWrapper> = offset_table(&response.body);
    assert!(table.keys().all(|q| q.topic == "TopicB"), "{table:?}");
    assert_eq!(table.len(), 4);

    // A group with nothing: an empty table (the Java tool then says "not consumed").
    let response = respond(
        &processor,
        &peer,
        RemotingCommand::request_with_header(
            rc::GET_CONSUME_STATS,
            &GetConsumeStatsRequestHeader {
                consumer_group: "nobody".into(),
                topic: None,
            },
        ),
    )
    .await;
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(
        std::str::from_utf8(&response.body).unwrap(),
        r#"{"consumeTps":0.0,"offsetTable":{}}"#
    );
}

// ---------------------------------------------------------------------------------------------
// Connections

fn client(context: &BrokerContext, peer: &TestPeer, client_id: &str) -> ClientChannelInfo {
    ClientChannelInfo {
        channel: peer.channel.clone(),
        client_id: client_id.into(),
        language: LanguageCode::Java,
        version: 409,
        last_update: context.env.clock.instant(),
    }
}

fn register_consumer(context: &BrokerContext, peer: &TestPeer, group: &str, topics: &[&str]) {
    context.consumer_manager.register_consumer(
        ConsumerRegistration {
            group: group.into(),
            client: client(context, peer, "127.0.0.1@4242"),
            consume_type: ConsumeType::ConsumePassively,
            message_model: MessageModel::Clustering,
            consume_from_where: ConsumeFromWhere::ConsumeFromFirstOffset,
            subscriptions: topics
                .iter()
                .map(|topic| SubscriptionData::build(topic, "TagA || TagB", 1))
                .collect(),
        },
        context.env.clock.instant(),
    );
}

#[tokio::test]
async fn consumer_connection_list_shows_connections_and_subscriptions() {
    let (context, processor, peer) = broker().await;
    register_consumer(&context, &peer, "cg", &["TopicA"]);
    let request = |group: &str| {
        RemotingCommand::request_with_header(
            rc::GET_CONSUMER_CONNECTION_LIST,
            &GetConsumerConnectionListRequestHeader {
                consumer_group: group.into(),
            },
        )
    };
    let response = respond(&processor, &peer, request("cg")).await;
    assert_eq!(response.code, response_code::SUCCESS);
    let text = std::str::from_utf8(&response.body).unwrap();
    assert!(
        text.starts_with(
            r#"{"connectionSet":[{"clientAddr":"127.0.0.1:5555","clientId":"127.0.0.1@4242","language":"JAVA","version":409}],"consumeFromWhere":"CONSUME_FROM_FIRST_OFFSET","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","subscriptionTable":{"TopicA":{"#
        ),
        "{text}"
    );
    let body: ConsumerConnection = from_json("ConsumerConnection", &response.body).unwrap();
    assert_eq!(
        body.subscription_table["TopicA"].tags_set,
        BTreeSet::from(["TagA".to_owned(), "TagB".to_owned()])
    );

    let response = respond(&processor, &peer, request("offline")).await;
    assert_eq!(response.code, response_code::CONSUMER_NOT_ONLINE);
    assert_eq!(remark(&response), "the consumer group[offline] not online");
}

#[tokio::test]
async fn producer_connection_list_shows_client_ids_or_system_error() {
    let (context, processor, peer) = broker().await;
    context.producer_manager.register_producer(
        "pg",
        client(&context, &peer, "127.0.0.1@77"),
        context.env.clock.instant(),
    );
    let request = |group: &str| {
        RemotingCommand::request_with_header(
            rc::GET_PRODUCER_CONNECTION_LIST,
            &GetProducerConnectionListRequestHeader {
                producer_group: group.into(),
            },
        )
    };
    let response = respond(&processor, &peer, request("pg")).await;
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(
        std::str::from_utf8(&response.body).unwrap(),
        r#"{"connectionSet":[{"clientId":"127.0.0.1@77"}]}"#
    );
    let response = respond(&processor, &peer, request("nobody")).await;
    assert_eq!(response.code, response_code::SYSTEM_ERROR);
    assert_eq!(remark(&response), "the producer group[nobody] not exist");
}

// ---------------------------------------------------------------------------------------------
// Settings and runtime numbers

#[tokio::test]
async fn broker_config_is_properties_text_with_the_settings_version() {
    let (_context, processor, peer) = broker().await;
    let response = respond(
        &processor,
        &peer,
        RemotingCommand::request(rc::GET_BROKER_CONFIG),
    )
    .await;
    assert_eq!(response.code, response_code::SUCCESS);
    let text = std::str::from_utf8(&response.body).unwrap();
    let properties = crate::config::parse_properties(text).unwrap();
    assert_eq!(properties["brokerName"], "broker-a");
    assert_eq!(properties["listenPort"], "10911");
    assert_eq!(properties["flushDiskType"], "ASYNC_FLUSH");
    assert_eq!(properties["defaultQueryMaxNum"], "32");
    let version: DataVersion =
        serde_json::from_str(response.ext_fields.get("version").unwrap()).unwrap();
    assert_eq!(version, DataVersion::new(TEST_WALL_MS));
}

#[tokio::test]
async fn broker_runtime_info_reports_what_the_broker_can_compute() {
    let (context, processor, peer) = broker().await;
    put(&context, "TopicA", 0, 2).await;
    let response = respond(
        &processor,
        &peer,
        RemotingCommand::request(rc::GET_BROKER_RUNTIME_INFO),
    )
    .await;
    assert_eq!(response.code, response_code::SUCCESS);
    let table: KvTable = from_json("KVTable", &response.body).unwrap();
    let table = table.table;
    let max_offset = context.store.commit_log().max_offset();
    assert_eq!(table["brokerVersionDesc"], "V4_9_8");
    assert_eq!(table["brokerVersion"], "409");
    assert_eq!(table["commitLogMinOffset"], "0");
    assert_eq!(table["commitLogMaxOffset"], max_offset.to_string());
    assert_eq!(table["dispatchBehindBytes"], "0");
    assert_eq!(table["pageCacheLockTimeMills"], "0");
    assert_eq!(table["earliestMessageTimeStamp"], TEST_WALL_MS.to_string());
    assert_eq!(table["sendThreadPoolQueueCapacity"], "10000");
    let ratio: f64 = table["commitLogDiskRatio"].parse().unwrap();
    assert!((-1.0..=1.0).contains(&ratio), "{ratio}");
    assert!(table.contains_key("remainHowManyDataToFlush"));
    for untracked in ["msgPutTotalTodayNow", "putTps", "sendThreadPoolQueueSize"] {
        assert!(
            !table.contains_key(untracked),
            "{untracked} is not invented"
        );
    }
}

#[tokio::test]
async fn empty_store_reports_no_earliest_message() {
    let (context, processor, _peer) = broker().await;
    assert_eq!(earliest_message_time(&context.store), -1);
    assert_eq!(processor.runtime_info()["earliestMessageTimeStamp"], "-1");
}

#[tokio::test]
async fn unknown_codes_are_not_supported_as_java_answers() {
    let (_context, processor, peer) = broker().await;
    for code in [rc::UPDATE_BROKER_CONFIG, 9999] {
        let response = respond(&processor, &peer, RemotingCommand::request(code)).await;
        assert_eq!(response.code, response_code::REQUEST_CODE_NOT_SUPPORTED);
        assert_eq!(
            remark(&response),
            format!(" request type {code} not supported")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

#[test]
fn object_keyed_maps_are_written_as_fastjson_writes_them() {
    let entries = [
        (
            queue("T", 0),
            TopicOffset {
                last_update_timestamp: 1,
                max_offset: 2,
                min_offset: 3,
            },
        ),
        (
            queue("T", 1),
            TopicOffset {
                last_update_timestamp: 4,
                max_offset: 5,
                min_offset: 6,
            },
        ),
    ];
    assert_eq!(
        std::str::from_utf8(&topic_stats_table_body(&entries)).unwrap(),
        concat!(
            r#"{"offsetTable":{"#,
            r#"{"brokerName":"broker-a","queueId":0,"topic":"T"}:{"lastUpdateTimestamp":1,"maxOffset":2,"minOffset":3},"#,
            r#"{"brokerName":"broker-a","queueId":1,"topic":"T"}:{"lastUpdateTimestamp":4,"maxOffset":5,"minOffset":6}"#,
            "}}"
        )
    );
    assert_eq!(
        std::str::from_utf8(&consume_stats_body(1.5, &[])).unwrap(),
        r#"{"consumeTps":1.5,"offsetTable":{}}"#
    );
    // Keys with braces, quotes and escapes inside strings survive the round trip.
    let odd = queue("T", 2);
    let odd = MessageQueue {
        broker_name: r#"b{"}\"#.into(),
        ..odd
    };
    let body = topic_stats_table_body(&[(odd.clone(), entries[0].1)]);
    let table: BTreeMap<MessageQueue, TopicOffset> = offset_table(&body);
    assert_eq!(table[&odd], entries[0].1);
}

#[test]
fn byte_counts_read_as_java_prints_them() {
    assert_eq!(human_readable_byte_count(0), "0 B");
    assert_eq!(human_readable_byte_count(1023), "1023 B");
    assert_eq!(human_readable_byte_count(1024), "1.0 KiB");
    assert_eq!(human_readable_byte_count(1536), "1.5 KiB");
    assert_eq!(human_readable_byte_count(3 << 30), "3.0 GiB");
    assert_eq!(human_readable_byte_count(u64::MAX), "16.0 EiB");
}

#[test]
fn queue_loops_are_bounded() {
    assert_eq!(queue_ids(-3), 0..0);
    assert_eq!(queue_ids(4), 0..4);
    assert_eq!(queue_ids(i32::MAX), 0..QUEUE_NUMS_MAX);
}
