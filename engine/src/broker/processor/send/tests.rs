use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;

use super::*;
use crate::broker::config::BrokerConfig;
use crate::broker::test_support::{TEST_WALL_MS, TestPeer, test_context, test_context_with_clock};
use crate::clock::test_support::StepClock;
use crate::protocol::AUTO_CREATE_TOPIC;
use crate::remoting::headers::SendMessageRequestHeaderV2;
use crate::store::config::MessageStoreConfig;
use crate::store::message::{StoredMessage, decode_message_id, encode_batch};
use crate::store::message_store::SCHEDULE_TOPIC;
use crate::store::metadata::{TOPICS_FILE, config_path};

const PEER: &str = "127.0.0.1:5555";
const BORN_MS: i64 = TEST_WALL_MS - 7;

/// Properties as a Java 4.9 producer writes them (no trailing separator).
fn java_properties(pairs: &[(&str, &str)]) -> String {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    encode_properties(&map)
}

/// The V2 header a Java `DefaultMQProducer.send` puts on SEND_MESSAGE_V2.
fn java_header(topic: &str, queue_id: i32, properties: String) -> SendMessageRequestHeaderV2 {
    SendMessageRequestHeaderV2 {
        producer_group: "PG".into(),
        topic: topic.into(),
        default_topic: AUTO_CREATE_TOPIC.into(),
        default_topic_queue_nums: 4,
        queue_id,
        sys_flag: 0,
        born_timestamp: BORN_MS,
        flag: 0,
        properties: Some(properties),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        max_reconsume_times: None,
        batch: Some(false),
        broker_name: Some("broker-a".into()),
    }
}

fn v2_request(header: &SendMessageRequestHeaderV2, body: &'static [u8]) -> RemotingCommand {
    let mut request = RemotingCommand::request_with_header(request_code::SEND_MESSAGE_V2, header)
        .with_body(Bytes::from_static(body));
    request.opaque = 42;
    request
}

fn plain_request(topic: &str, queue_id: i32) -> RemotingCommand {
    let properties = java_properties(&[("TAGS", "TagA"), ("WAIT", "true")]);
    v2_request(&java_header(topic, queue_id, properties), b"hello")
}

struct Broker {
    context: Arc<BrokerContext>,
    processor: SendMessageProcessor,
    peer: TestPeer,
}

impl Broker {
    async fn start(configure: impl FnOnce(&mut BrokerConfig, &mut MessageStoreConfig)) -> Self {
        let context = test_context(configure).await;
        let peer = TestPeer::connect(&context);
        let processor = SendMessageProcessor::new(context.clone());
        Self {
            context,
            processor,
            peer,
        }
    }

    async fn default() -> Self {
        Self::start(|_, _| {}).await
    }

    async fn process(&self, request: RemotingCommand) -> RemotingCommand {
        let opaque = request.opaque;
        let response = self
            .processor
            .process(&self.peer.channel, request)
            .await
            .expect("the processor answers instead of failing")
            .expect("the processor answers at once");
        assert!(response.is_response());
        assert_eq!(response.opaque, opaque);
        response
    }

    fn stored(&self, msg_id: &str) -> StoredMessage {
        let (store_host, offset) = decode_message_id(msg_id).expect("an offset message id");
        assert_eq!(store_host, self.context.store_host);
        self.stored_at(offset)
    }

    fn stored_at(&self, offset: i64) -> StoredMessage {
        let record = self
            .context
            .store
            .look_message_by_offset(offset)
            .expect("a record at the offset");
        decode_record(&record, true, true).expect("a well-formed record")
    }

    fn end_offset(&self) -> i64 {
        self.context.store.commit_log().max_offset() as i64
    }
}

fn field<'a>(response: &'a RemotingCommand, key: &str) -> &'a str {
    response
        .ext_fields
        .get(key)
        .unwrap_or_else(|| panic!("response field {key} missing: {response:?}"))
}

fn assert_refused(response: &RemotingCommand, code: i32, remark_start: &str) {
    assert_eq!(response.code, code, "{response:?}");
    let remark = response.remark.as_deref().unwrap_or_default();
    assert!(
        remark.starts_with(remark_start),
        "remark {remark:?} does not start with {remark_start:?}"
    );
    assert!(!response.ext_fields.contains("msgId"));
}

// ---------------------------------------------------------------------------------------------
// Successful sends

#[tokio::test]
async fn java_v2_send_auto_creates_the_topic_and_answers_every_required_header() {
    let broker = Broker::default().await;
    let properties = java_properties(&[
        ("KEYS", "order-1 order-2"),
        ("TAGS", "TagA"),
        ("UNIQ_KEY", "7F00000100002A9F0000000000000001"),
        ("WAIT", "true"),
    ]);
    let response = broker
        .process(v2_request(&java_header("TopicA", 2, properties), b"hello"))
        .await;

    assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
    assert_eq!(response.remark, None);
    let msg_id = field(&response, "msgId");
    assert_eq!(msg_id.len(), 32);
    assert_eq!(field(&response, "queueId"), "2");
    assert_eq!(field(&response, "queueOffset"), "0");
    assert_eq!(field(&response, "MSG_REGION"), "DefaultRegion");
    assert_eq!(field(&response, "TRACE_ON"), "true");

    let created = broker
        .context
        .topic_config_manager
        .select_topic_config("TopicA")
        .expect("the topic was created on send");
    assert_eq!(created.write_queue_nums, 4, "min(client's 4, TBW102's 8)");
    assert_eq!(created.perm, perm::READ | perm::WRITE);
    let topics_file = config_path(
        &broker.context.store_config.store_path_root_dir,
        TOPICS_FILE,
    );
    assert!(broker.context.env.disk.exists(&topics_file).unwrap());
    assert!(
        broker
            .context
            .topic_config_manager
            .changed()
            .now_or_never()
            .is_some(),
        "the creation signals re-registration"
    );

    let stored = broker.stored(msg_id);
    assert_eq!(stored.topic, "TopicA");
    assert_eq!(stored.queue_id, 2);
    assert_eq!(stored.queue_offset, 0);
    assert_eq!(stored.body.as_deref(), Some(&b"hello"[..]));
    assert_eq!(stored.born_timestamp, BORN_MS);
    assert_eq!(stored.born_host, PEER.parse::<SocketAddr>().unwrap());
    assert_eq!(stored.store_host, broker.context.store_host);
    assert_eq!(stored.sys_flag, 0);
    assert_eq!(stored.tags(), Some("TagA"));
    assert_eq!(stored.keys(), Some("order-1 order-2"));
    assert_eq!(stored.uniq_key(), Some("7F00000100002A9F0000000000000001"));
    assert_eq!(
        stored.property(property_key::CLUSTER),
        Some("DefaultCluster")
    );
    assert_eq!(
        stored.property(property_key::WAIT),
        None,
        "WAIT is stripped"
    );
}

#[tokio::test]
async fn v1_send_with_long_header_keys_is_stored() {
    let broker = Broker::default().await;
    let header = SendMessageRequestHeader::from(java_header(
        "TopicV1",
        0,
        // The C++ and ali-ons clients end the properties with a separator.
        "TAGS\u{1}TagB\u{2}KEYS\u{1}k\u{2}".into(),
    ));
    let request = RemotingCommand::request_with_header(request_code::SEND_MESSAGE, &header)
        .with_body(Bytes::from_static(b"v1 body"));
    let response = broker.process(request).await;

    assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
    assert_eq!(field(&response, "queueId"), "0");
    let stored = broker.stored(field(&response, "msgId"));
    assert_eq!(stored.topic, "TopicV1");
    assert_eq!(stored.body.as_deref(), Some(&b"v1 body"[..]));
    assert_eq!(stored.tags(), Some("TagB"));
    assert_eq!(stored.keys(), Some("k"));
}

#[tokio::test]
async fn cpp_code_10_send_with_batch_one_stores_each_inner_message() {
    let broker = Broker::default().await;
    let items = vec![
        BatchItem {
            flag: 0,
            body: Bytes::from_static(b"first"),
            properties: "TAGS\u{1}T1\u{2}UNIQ_KEY\u{1}U1\u{2}".into(),
        },
        BatchItem {
            flag: 3,
            body: Bytes::from_static(b"second"),
            properties: "TAGS\u{1}T2\u{2}UNIQ_KEY\u{1}U2\u{2}".into(),
        },
    ];
    let mut header = SendMessageRequestHeader::from(java_header("CppTopic", 1, String::new()));
    header.batch = None;
    header.properties = None;
    let mut request = RemotingCommand::request_with_header(request_code::SEND_MESSAGE, &header)
        .with_body(encode_batch(&items).unwrap());
    // What the C++ client writes for `batch`: `UtilAll::to_string(bool)`.
    request.ext_fields.insert("batch", "1");
    let response = broker.process(request).await;

    assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
    let ids: Vec<&str> = field(&response, "msgId").split(',').collect();
    assert_eq!(ids.len(), 2);
    let first = broker.stored(ids[0]);
    let second = broker.stored(ids[1]);
    assert_eq!(first.body.as_deref(), Some(&b"first"[..]));
    assert_eq!(second.body.as_deref(), Some(&b"second"[..]));
    assert_eq!(second.flag, 3);
    assert_eq!(first.tags(), Some("T1"));
    assert_eq!(second.uniq_key(), Some("U2"));
    assert_eq!(
        second.property(property_key::CLUSTER),
        Some("DefaultCluster")
    );
    assert_eq!((first.queue_offset, second.queue_offset), (0, 1));
}

#[tokio::test]
async fn batch_send_answers_comma_joined_ids_and_the_first_of_consecutive_offsets() {
    let broker = Broker::default().await;
    let items: Vec<BatchItem> = (0..3)
        .map(|i| BatchItem {
            flag: 0,
            body: Bytes::from(format!("body-{i}")),
            properties: java_properties(&[("TAGS", "Batch"), ("UNIQ_KEY", &format!("U{i}"))]),
        })
        .collect();
    let body = encode_batch(&items).unwrap();
    let batch_request = || {
        let mut header = java_header("BatchTopic", 1, java_properties(&[("WAIT", "true")]));
        header.batch = Some(true);
        RemotingCommand::request_with_header(request_code::SEND_BATCH_MESSAGE, &header)
            .with_body(body.clone())
    };

    let first = broker.process(batch_request()).await;
    let second = broker.process(batch_request()).await;

    assert_eq!(first.code, response_code::SUCCESS, "{first:?}");
    assert_eq!(field(&first, "queueId"), "1");
    assert_eq!(field(&first, "queueOffset"), "0");
    assert_eq!(field(&second, "queueOffset"), "3");
    let ids: Vec<&str> = field(&first, "msgId").split(',').collect();
    assert_eq!(ids.len(), 3);
    for (i, id) in ids.iter().enumerate() {
        let stored = broker.stored(id);
        assert_eq!(stored.topic, "BatchTopic");
        assert_eq!(stored.queue_id, 1);
        assert_eq!(stored.queue_offset, i as i64);
        assert_eq!(stored.body, Some(Bytes::from(format!("body-{i}"))));
        assert_eq!(stored.uniq_key(), Some(format!("U{i}").as_str()));
        assert_eq!(stored.tags(), Some("Batch"));
        // Java appends the batch's outer properties, WAIT included, to every record.
        assert_eq!(
            stored.property(property_key::CLUSTER),
            Some("DefaultCluster")
        );
        assert_eq!(stored.property(property_key::WAIT), Some("true"));
    }
}

#[tokio::test]
async fn negative_queue_id_picks_a_write_queue_and_reports_it() {
    let broker = Broker::default().await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let response = broker.process(plain_request("AnyQueue", -1)).await;
        assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
        let queue_id: i32 = field(&response, "queueId").parse().unwrap();
        assert!((0..4).contains(&queue_id));
        assert_eq!(broker.stored(field(&response, "msgId")).queue_id, queue_id);
        seen.insert(queue_id);
    }
    assert!(seen.len() > 1, "the queue is picked at random: {seen:?}");
}

#[tokio::test]
async fn multi_tag_topic_marks_the_message_multi_tags() {
    let broker = Broker::default().await;
    let mut config = TopicConfig::new("MultiTagTopic", 2);
    config.topic_filter_type = TopicFilterType::MultiTag;
    broker
        .context
        .topic_config_manager
        .update_topic_config(config);

    let response = broker.process(plain_request("MultiTagTopic", 0)).await;

    assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
    let stored = broker.stored(field(&response, "msgId"));
    assert_eq!(stored.sys_flag & sys_flag::MULTI_TAGS, sys_flag::MULTI_TAGS);
}

#[tokio::test]
async fn half_message_is_refused_until_transactions_are_supported() {
    let broker = Broker::default().await;
    let mut header = java_header(
        "TxTopic",
        3,
        java_properties(&[("TRAN_MSG", "true"), ("PGROUP", "TxGroup")]),
    );
    header.sys_flag = sys_flag::TRANSACTION_PREPARED_TYPE;
    let response = broker.process(v2_request(&header, b"tx")).await;
    assert_refused(
        &response,
        response_code::NO_PERMISSION,
        "transactional messages are not supported by this broker yet",
    );
}

// ---------------------------------------------------------------------------------------------
// Refusals

#[tokio::test]
async fn malformed_header_field_is_a_system_error_naming_the_field() {
    let broker = Broker::default().await;
    let mut request = plain_request("TopicA", 0);
    request.ext_fields.insert("e", "not-a-number");

    let error = broker
        .processor
        .process(&broker.peer.channel, request)
        .await
        .expect_err("a malformed header is a processing error");

    assert_eq!(error.code, response_code::SYSTEM_ERROR);
    assert!(error.remark.contains("`e`"), "{}", error.remark);
}

#[tokio::test]
async fn missing_required_header_field_is_a_system_error() {
    let broker = Broker::default().await;
    let mut request = plain_request("TopicA", 0);
    request.ext_fields.remove("b");

    let error = broker
        .processor
        .process(&broker.peer.channel, request)
        .await
        .expect_err("a missing topic is a processing error");

    assert_eq!(error.code, response_code::SYSTEM_ERROR);
    assert!(error.remark.contains("`b`"), "{}", error.remark);
}

#[tokio::test]
async fn unknown_topic_without_auto_create_answers_topic_not_exist() {
    let broker = Broker::start(|config, _| config.auto_create_topic_enable = false).await;

    let response = broker.process(plain_request("Unknown", 0)).await;

    assert_refused(
        &response,
        response_code::TOPIC_NOT_EXIST,
        "topic[Unknown] not exist, apply first please!",
    );
    assert_eq!(field(&response, "MSG_REGION"), "DefaultRegion");
    assert_eq!(field(&response, "TRACE_ON"), "true");
    assert!(
        broker
            .context
            .topic_config_manager
            .select_topic_config("Unknown")
            .is_none()
    );
}

#[tokio::test]
async fn sends_to_system_topics_are_no_permission() {
    let broker = Broker::default().await;
    for topic in [
        SCHEDULE_TOPIC,
        system_topic::TRANS_HALF,
        system_topic::TRANS_OP_HALF,
        system_topic::TRANS_CHECK_MAX_TIME,
        system_topic::SELF_TEST,
        system_topic::OFFSET_MOVED_EVENT,
    ] {
        let response = broker.process(plain_request(topic, 0)).await;
        assert_refused(
            &response,
            response_code::NO_PERMISSION,
            &format!("Sending message to topic[{topic}] is forbidden."),
        );
    }
}

#[tokio::test]
async fn illegal_topic_names_are_system_errors_with_java_remarks() {
    let broker = Broker::default().await;
    let cases = [
        (
            "bad topic!",
            "The specified topic contains illegal characters",
        ),
        (" ", "The specified topic is blank."),
        (
            &"t".repeat(128)[..],
            "The specified topic is longer than topic max length.",
        ),
    ];
    for (topic, remark) in cases {
        let response = broker.process(plain_request(topic, 0)).await;
        assert_refused(&response, response_code::SYSTEM_ERROR, remark);
    }
}

#[tokio::test]
async fn queue_id_beyond_the_topic_is_a_system_error_with_java_remark() {
    let broker = Broker::default().await;
    assert_eq!(
        broker.process(plain_request("Queues", 0)).await.code,
        response_code::SUCCESS
    );

    let response = broker.process(plain_request("Queues", 4)).await;

    assert_refused(
        &response,
        response_code::SYSTEM_ERROR,
        "request queueId[4] is illegal, TopicConfig [topicName=Queues, readQueueNums=4, \
         writeQueueNums=4, perm=RW-, topicFilterType=SINGLE_TAG, topicSysFlag=0, order=false] \
         Producer: 127.0.0.1:5555",
    );
}

#[tokio::test]
async fn message_over_the_size_limit_is_message_illegal() {
    let broker = Broker::start(|_, store| store.max_message_size = 1024).await;
    static BIG: [u8; 2048] = [7; 2048];
    let header = java_header("Big", 0, java_properties(&[("TAGS", "x")]));

    let response = broker.process(v2_request(&header, &BIG)).await;

    assert_refused(
        &response,
        response_code::MESSAGE_ILLEGAL,
        "the message is illegal, maybe msg body or properties length not matched. msg body \
         length limit 1024B",
    );
}

#[tokio::test]
async fn topic_without_write_permission_is_no_permission() {
    let broker = Broker::default().await;
    let mut config = TopicConfig::new("ReadOnly", 4);
    config.perm = perm::READ;
    broker
        .context
        .topic_config_manager
        .update_topic_config(config);

    let response = broker.process(plain_request("ReadOnly", 0)).await;

    assert_refused(
        &response,
        response_code::NO_PERMISSION,
        "the topic[ReadOnly] sending message is forbidden",
    );
}

#[tokio::test]
async fn broker_without_write_permission_refuses_sends_and_send_backs() {
    let broker = Broker::start(|config, _| config.broker_permission = perm::READ).await;

    let response = broker.process(plain_request("TopicA", 0)).await;
    assert_refused(
        &response,
        response_code::NO_PERMISSION,
        "the broker[127.0.0.1] sending message is forbidden",
    );

    let response = broker.process(send_back_request(0, "cg", 0, None)).await;
    assert_refused(
        &response,
        response_code::NO_PERMISSION,
        "the broker[127.0.0.1] sending message is forbidden",
    );
}

#[tokio::test]
async fn half_message_is_no_permission_when_transactions_are_rejected() {
    let broker = Broker::start(|config, _| config.reject_transaction_message = true).await;
    let mut header = java_header("TxTopic", 0, java_properties(&[("TRAN_MSG", "true")]));
    header.sys_flag = sys_flag::TRANSACTION_PREPARED_TYPE;

    let response = broker.process(v2_request(&header, b"tx")).await;

    assert_refused(
        &response,
        response_code::NO_PERMISSION,
        "the broker[127.0.0.1] sending transaction message is forbidden",
    );
}

#[tokio::test]
async fn batches_with_delay_to_retry_topics_or_malformed_are_message_illegal() {
    let broker = Broker::default().await;
    let item = |properties: &str| BatchItem {
        flag: 0,
        body: Bytes::from_static(b"b"),
        properties: properties.into(),
    };
    let request = |topic: &str, outer: &str, body: Vec<u8>| {
        let mut header = java_header(topic, 0, outer.into());
        header.batch = Some(true);
        RemotingCommand::request_with_header(request_code::SEND_BATCH_MESSAGE, &header)
            .with_body(body)
    };
    let good = encode_batch(&[item("TAGS\u{1}a")]).unwrap();
    let delayed = encode_batch(&[item("TAGS\u{1}a"), item("DELAY\u{1}3")]).unwrap();

    let cases = [
        (
            request("BatchT", "", delayed),
            "TimeDelayLevel is not supported for batching",
        ),
        (
            request("BatchT", "DELAY\u{1}2", good.clone()),
            "TimeDelayLevel is not supported for batching",
        ),
        (
            request("%RETRY%cg", "", good.clone()),
            "Retry Group is not supported for batching",
        ),
        (
            request("BatchT", "", good[..good.len() - 2].to_vec()),
            "the batch body is malformed",
        ),
        (
            request("BatchT", "", Vec::new()),
            "the batch holds no message",
        ),
    ];
    for (request, remark) in cases {
        let response = broker.process(request).await;
        assert_refused(&response, response_code::MESSAGE_ILLEGAL, remark);
    }
}

#[tokio::test]
async fn unsupported_request_code_is_answered_not_supported() {
    let broker = Broker::default().await;
    let response = broker
        .process(RemotingCommand::request(request_code::PULL_MESSAGE))
        .await;
    assert_eq!(response.code, response_code::REQUEST_CODE_NOT_SUPPORTED);
}

// ---------------------------------------------------------------------------------------------
// Retry and DLQ

#[tokio::test]
async fn retry_send_with_retries_used_up_goes_to_the_dead_letter_queue() {
    let broker = Broker::default().await;
    let mut header = java_header(
        "%RETRY%cg",
        0,
        java_properties(&[("TAGS", "TagA"), ("DELAY", "5"), ("RETRY_TOPIC", "TopicA")]),
    );
    header.reconsume_times = Some(16);
    header.max_reconsume_times = Some(16);

    let response = broker.process(v2_request(&header, b"dead")).await;

    assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
    let stored = broker.stored(field(&response, "msgId"));
    assert_eq!(stored.topic, "%DLQ%cg");
    assert_eq!(stored.queue_id, 0);
    assert_eq!(stored.reconsume_times, 16);
    assert_eq!(stored.delay_time_level(), 0, "a dead letter is not delayed");
    assert_eq!(stored.property(property_key::RETRY_TOPIC), Some("TopicA"));
    let dlq = broker
        .context
        .topic_config_manager
        .select_topic_config("%DLQ%cg")
        .expect("the DLQ topic is created on demand");
    assert_eq!((dlq.read_queue_nums, dlq.write_queue_nums), (1, 1));
    assert_eq!(dlq.perm, perm::READ | perm::WRITE);
    assert!(
        broker
            .context
            .subscription_group_manager
            .find_subscription_group_config("cg")
            .is_some_and(|(_, created_now)| !created_now),
        "the group was created by the send"
    );
}

#[tokio::test]
async fn retry_send_below_the_limit_stays_in_the_retry_topic() {
    let broker = Broker::default().await;
    let mut header = java_header("%RETRY%cg", 0, java_properties(&[("TAGS", "TagA")]));
    header.reconsume_times = Some(2);
    header.max_reconsume_times = Some(16);

    let response = broker.process(v2_request(&header, b"again")).await;

    assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
    let stored = broker.stored(field(&response, "msgId"));
    assert_eq!(stored.topic, "%RETRY%cg");
    assert_eq!(stored.reconsume_times, 2);
}

#[tokio::test]
async fn old_clients_max_reconsume_times_is_ignored_in_favour_of_the_group() {
    let broker = Broker::default().await;
    let mut header = java_header("%RETRY%cg", 0, java_properties(&[("TAGS", "TagA")]));
    header.reconsume_times = Some(3);
    header.max_reconsume_times = Some(2);
    let mut request = v2_request(&header, b"old");
    request.version = VERSION_V3_4_9 - 1;

    let response = broker.process(request).await;

    let stored = broker.stored(field(&response, "msgId"));
    assert_eq!(stored.topic, "%RETRY%cg", "the group's limit of 16 applies");
}

fn send_back_request(
    offset: i64,
    group: &str,
    delay_level: i32,
    max_reconsume_times: Option<i32>,
) -> RemotingCommand {
    let header = ConsumerSendMsgBackRequestHeader {
        offset,
        group: group.into(),
        delay_level,
        origin_msg_id: Some("UNIQ-1".into()),
        origin_topic: Some("TopicA".into()),
        unit_mode: Some(false),
        max_reconsume_times,
        broker_name: None,
    };
    let mut request =
        RemotingCommand::request_with_header(request_code::CONSUMER_SEND_MSG_BACK, &header);
    request.opaque = 7;
    request
}

/// Sends a message to `TopicA` with `reconsume_times`; returns its offset message id.
async fn send_original(broker: &Broker, reconsume_times: i32) -> String {
    let mut header = java_header(
        "TopicA",
        1,
        java_properties(&[("TAGS", "TagA"), ("UNIQ_KEY", "UNIQ-1")]),
    );
    header.reconsume_times = Some(reconsume_times);
    let response = broker.process(v2_request(&header, b"payload")).await;
    assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
    field(&response, "msgId").to_owned()
}

#[tokio::test]
async fn send_back_stores_a_delayed_retry_message_with_retry_properties() {
    let broker = Broker::default().await;
    let original_id = send_original(&broker, 0).await;
    let (_, original_offset) = decode_message_id(&original_id).unwrap();
    let retry_offset = broker.end_offset();

    let response = broker
        .process(send_back_request(original_offset, "cg", 0, Some(16)))
        .await;

    assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
    assert_eq!(response.remark, None);
    let retry = broker.stored_at(retry_offset);
    // Level 0 lets the broker choose 3 + reconsumeTimes; the store parks delayed messages.
    assert_eq!(retry.topic, SCHEDULE_TOPIC);
    assert_eq!(retry.queue_id, 3 - 1);
    assert_eq!(retry.delay_time_level(), 3);
    assert_eq!(retry.property(property_key::REAL_TOPIC), Some("%RETRY%cg"));
    assert_eq!(retry.property(property_key::REAL_QID), Some("0"));
    assert_eq!(retry.property(property_key::RETRY_TOPIC), Some("TopicA"));
    assert_eq!(
        retry.property(property_key::ORIGIN_MESSAGE_ID),
        Some(original_id.as_str())
    );
    assert_eq!(retry.property(property_key::WAIT), Some("false"));
    assert_eq!(retry.tags(), Some("TagA"));
    assert_eq!(retry.uniq_key(), Some("UNIQ-1"));
    assert_eq!(retry.reconsume_times, 1);
    assert_eq!(retry.body.as_deref(), Some(&b"payload"[..]));
    assert_eq!(retry.born_host, PEER.parse::<SocketAddr>().unwrap());
    assert_eq!(retry.born_timestamp, BORN_MS);
    let retry_topic = broker
        .context
        .topic_config_manager
        .select_topic_config("%RETRY%cg")
        .expect("the retry topic is created on send-back");
    assert_eq!(retry_topic.write_queue_nums, 1);
}

#[tokio::test]
async fn send_back_keeps_an_explicit_delay_level_and_the_first_origin_id() {
    let broker = Broker::default().await;
    let original_id = send_original(&broker, 0).await;
    let (_, original_offset) = decode_message_id(&original_id).unwrap();
    let first_retry_offset = broker.end_offset();
    let response = broker
        .process(send_back_request(original_offset, "cg", 5, None))
        .await;
    assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
    let first_retry = broker.stored_at(first_retry_offset);
    assert_eq!(first_retry.delay_time_level(), 5);

    // The retry of a retry: RETRY_TOPIC and ORIGIN_MESSAGE_ID keep the first values.
    let second_retry_offset = broker.end_offset();
    let response = broker
        .process(send_back_request(first_retry_offset, "cg", 0, None))
        .await;
    assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
    let second_retry = broker.stored_at(second_retry_offset);
    assert_eq!(second_retry.reconsume_times, 2);
    assert_eq!(second_retry.delay_time_level(), 3 + 1);
    assert_eq!(
        second_retry.property(property_key::RETRY_TOPIC),
        Some("TopicA")
    );
    assert_eq!(
        second_retry.property(property_key::ORIGIN_MESSAGE_ID),
        Some(original_id.as_str())
    );
}

#[tokio::test]
async fn send_back_with_retries_used_up_or_negative_delay_goes_to_the_dead_letter_queue() {
    let broker = Broker::default().await;
    let original_id = send_original(&broker, 5).await;
    let (_, original_offset) = decode_message_id(&original_id).unwrap();

    for (delay_level, max_reconsume_times) in [(0, Some(5)), (-1, Some(16))] {
        let dlq_offset = broker.end_offset();
        let response = broker
            .process(send_back_request(
                original_offset,
                "cg",
                delay_level,
                max_reconsume_times,
            ))
            .await;
        assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
        let dead = broker.stored_at(dlq_offset);
        assert_eq!(dead.topic, "%DLQ%cg");
        assert_eq!(dead.queue_id, 0);
        assert_eq!(dead.delay_time_level(), 0);
        assert_eq!(dead.reconsume_times, 6);
        assert_eq!(dead.property(property_key::RETRY_TOPIC), Some("TopicA"));
    }
    assert!(
        broker
            .context
            .topic_config_manager
            .select_topic_config("%DLQ%cg")
            .is_some()
    );
}

#[tokio::test]
async fn send_back_of_an_unknown_offset_is_a_system_error() {
    let broker = Broker::default().await;
    let response = broker
        .process(send_back_request(1 << 40, "cg", 0, None))
        .await;
    assert_refused(
        &response,
        response_code::SYSTEM_ERROR,
        "look message by offset failed, 1099511627776",
    );
    let response = broker.process(send_back_request(-1, "cg", 0, None)).await;
    assert_refused(
        &response,
        response_code::SYSTEM_ERROR,
        "look message by offset failed, -1",
    );
}

#[tokio::test]
async fn send_back_for_an_unknown_group_without_auto_create_is_refused() {
    let broker = Broker::start(|config, _| config.auto_create_subscription_group = false).await;
    let response = broker
        .process(send_back_request(0, "nobody", 0, None))
        .await;
    assert_refused(
        &response,
        response_code::SUBSCRIPTION_GROUP_NOT_EXIST,
        "subscription group not exist, nobody ",
    );
}

#[tokio::test]
async fn send_back_with_a_malformed_header_is_a_system_error() {
    let broker = Broker::default().await;
    let mut request = send_back_request(0, "cg", 0, None);
    request.ext_fields.insert("offset", "zero");
    let error = broker
        .processor
        .process(&broker.peer.channel, request)
        .await
        .expect_err("a malformed header is a processing error");
    assert_eq!(error.code, response_code::SYSTEM_ERROR);
    assert!(error.remark.contains("`offset`"), "{}", error.remark);
}

// ---------------------------------------------------------------------------------------------
// Store outcomes

#[tokio::test]
async fn every_put_status_maps_to_the_java_response_code() {
    use PutMessageStatus as S;
    let broker = Broker::default().await;
    let request = plain_request("TopicA", 2);
    let append = crate::store::commit_log::AppendMessageResult {
        wrote_offset: 0,
        wrote_bytes: 100,
        msg_id: "7F00000100002AAF0000000000000000".into(),
        store_timestamp: TEST_WALL_MS,
        logics_offset: 9,
        msg_num: 1,
    };
    let cases = [
        (S::PutOk, response_code::SUCCESS, None),
        (S::FlushDiskTimeout, response_code::FLUSH_DISK_TIMEOUT, None),
        (
            S::FlushSlaveTimeout,
            response_code::FLUSH_SLAVE_TIMEOUT,
            None,
        ),
        (
            S::SlaveNotAvailable,
            response_code::SLAVE_NOT_AVAILABLE,
            None,
        ),
        (
            S::CreateMappedFileFailed,
            response_code::SYSTEM_ERROR,
            Some("create mapped file failed"),
        ),
        (
            S::MessageIllegal,
            response_code::MESSAGE_ILLEGAL,
            Some("the message is illegal"),
        ),
        (
            S::PropertiesSizeExceeded,
            response_code::MESSAGE_ILLEGAL,
            Some("the message is illegal"),
        ),
        (
            S::ServiceNotAvailable,
            response_code::SERVICE_NOT_AVAILABLE,
            Some("service not available now."),
        ),
        (
            S::OsPageCacheBusy,
            response_code::SYSTEM_ERROR,
            Some("[PC_SYNCHRONIZED]broker busy"),
        ),
        (
            S::UnknownError,
            response_code::SYSTEM_ERROR,
            Some("UNKNOWN_ERROR"),
        ),
    ];
    for (status, code, remark_start) in cases {
        let result = PutMessageResult {
            status,
            append: status.is_stored().then(|| append.clone()),
            remark: None,
        };
        let response = broker.processor.put_result_response(&request, 2, result);
        assert_eq!(response.code, code, "{status:?}");
        assert_eq!(field(&response, "MSG_REGION"), "DefaultRegion");
        assert_eq!(field(&response, "TRACE_ON"), "true");
        match remark_start {
            None => {
                // Stored: the three headers Java's client reads unchecked, and no remark.
                assert_eq!(response.remark, None, "{status:?}");
                assert_eq!(field(&response, "msgId"), append.msg_id);
                assert_eq!(field(&response, "queueId"), "2");
                assert_eq!(field(&response, "queueOffset"), "9");
            }
            Some(start) => assert_refused(&response, code, start),
        }
    }
}

#[tokio::test]
async fn a_slave_answers_sends_service_not_available_and_send_backs_system_error() {
    let broker = Broker::start(|_, store| {
        store.broker_role = crate::store::config::BrokerRole::Slave;
    })
    .await;

    let response = broker.process(plain_request("TopicA", 0)).await;
    assert_refused(
        &response,
        response_code::SERVICE_NOT_AVAILABLE,
        "service not available now.",
    );

    let response = broker.process(send_back_request(0, "cg", 0, None)).await;
    assert_refused(
        &response,
        response_code::SYSTEM_ERROR,
        "look message by offset failed, 0",
    );
}

// ---------------------------------------------------------------------------------------------
// Flow control while the page cache is busy

/// An append stalled inside the commit-log lock for more than `osPageCacheBusyTimeOutMills`
/// makes the dispatcher turn sends away (`reject_request`), and a send already queued is
/// refused by the store without waiting for the lock; once the append lets go, sends go
/// through again.
#[tokio::test]
async fn sends_are_turned_away_while_an_append_holds_the_lock_past_the_busy_timeout() {
    let clock = StepClock::at(TEST_WALL_MS);
    let context = test_context_with_clock(clock.clone(), |_, _| {}).await;
    let broker = Broker {
        peer: TestPeer::connect(&context),
        processor: SendMessageProcessor::new(context.clone()),
        context,
    };
    assert!(!broker.processor.reject_request());

    let stalled = broker
        .context
        .store
        .commit_log()
        .hold_append_lock_for_test();
    clock.advance(Duration::from_millis(1_000));
    assert!(
        !broker.processor.reject_request(),
        "a hold of exactly osPageCacheBusyTimeOutMills is not busy yet (Java: diff > 1000)"
    );
    clock.advance(Duration::from_millis(1));
    assert!(broker.context.store.is_os_page_cache_busy());
    assert!(broker.processor.reject_request());
    let response = broker.process(plain_request("TopicBusy", 0)).await;
    assert_refused(
        &response,
        response_code::SYSTEM_ERROR,
        "[PC_SYNCHRONIZED]broker busy, start flow control for a while",
    );

    drop(stalled);
    assert!(!broker.processor.reject_request());
    let response = broker.process(plain_request("TopicBusy", 0)).await;
    assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
}

#[tokio::test]
async fn the_busy_timeout_is_the_store_setting() {
    let clock = StepClock::at(TEST_WALL_MS);
    let context = test_context_with_clock(clock.clone(), |_, store| {
        store.os_page_cache_busy_time_out_mills = 50;
    })
    .await;
    let processor = SendMessageProcessor::new(context.clone());
    let stalled = context.store.commit_log().hold_append_lock_for_test();
    clock.advance(Duration::from_millis(50));
    assert!(!processor.reject_request());
    clock.advance(Duration::from_millis(1));
    assert!(processor.reject_request());
    drop(stalled);
    assert!(!processor.reject_request());
}

// ---------------------------------------------------------------------------------------------
// SYNC_FLUSH: answered once the group commit covering the send completes

impl Broker {
    /// Processes a send that the processor answers later through the channel, and returns
    /// that answer once it arrives.
    async fn process_answered_later(
        &mut self,
        request: RemotingCommand,
        before_the_answer: impl AsyncFnOnce(&Self),
    ) -> RemotingCommand {
        let opaque = request.opaque;
        let answered_now = self
            .processor
            .process(&self.peer.channel, request)
            .await
            .expect("the processor answers instead of failing");
        assert!(
            answered_now.is_none(),
            "a SYNC_FLUSH send is not answered before its sync: {answered_now:?}"
        );
        before_the_answer(self).await;
        let response = self
            .peer
            .next_command()
            .await
            .expect("the send is answered");
        assert!(response.is_response());
        assert_eq!(response.opaque, opaque);
        response
    }
}

#[tokio::test]
async fn a_sync_flush_send_is_answered_once_the_group_commit_covering_it_completes() {
    let mut broker = Broker::start(|_, store| {
        store.flush_disk_type = crate::store::config::FlushDiskType::SyncFlush;
    })
    .await;
    let response = broker
        .process_answered_later(plain_request("TopicSync", 1), async |broker| {
            let commit_log = broker.context.store.commit_log();
            assert!(commit_log.flushed_offset() < commit_log.max_offset());
            tokio::task::yield_now().await;
            commit_log.flush(0).await.expect("the memory disk syncs");
        })
        .await;
    assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
    assert_eq!(field(&response, "queueId"), "1");
    assert_eq!(field(&response, "queueOffset"), "0");
    assert_eq!(field(&response, "MSG_REGION"), REGION_ID_DEFAULT);
    let stored = broker.stored(field(&response, "msgId"));
    assert_eq!(stored.body.as_deref(), Some(&b"hello"[..]));
    let commit_log = broker.context.store.commit_log();
    assert_eq!(commit_log.flushed_offset(), commit_log.max_offset());
}

#[tokio::test]
async fn a_sync_flush_send_whose_sync_does_not_complete_in_time_is_answered_flush_disk_timeout() {
    let mut broker = Broker::start(|_, store| {
        store.flush_disk_type = crate::store::config::FlushDiskType::SyncFlush;
        store.sync_flush_timeout = 20;
    })
    .await;
    // No flush service runs here, so the sync never happens.
    let response = broker
        .process_answered_later(plain_request("TopicSync", 0), async |_| {})
        .await;
    assert_eq!(response.code, response_code::FLUSH_DISK_TIMEOUT);
    // Stored all the same: the producer gets where it landed (Java's processSendResponse
    // reads the headers of every stored outcome).
    let stored = broker.stored(field(&response, "msgId"));
    assert_eq!(stored.body.as_deref(), Some(&b"hello"[..]));
    assert_eq!(field(&response, "queueOffset"), "0");
}

#[tokio::test]
async fn a_sync_flush_send_with_wait_false_is_answered_at_once() {
    let broker = Broker::start(|_, store| {
        store.flush_disk_type = crate::store::config::FlushDiskType::SyncFlush;
    })
    .await;
    let properties = java_properties(&[("WAIT", "false")]);
    let response = broker
        .process(v2_request(&java_header("TopicSync", 0, properties), b"x"))
        .await;
    assert_eq!(response.code, response_code::SUCCESS);
    let commit_log = broker.context.store.commit_log();
    assert!(commit_log.flushed_offset() < commit_log.max_offset());
}
