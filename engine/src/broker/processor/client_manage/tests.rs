//! Client management against an in-memory broker: the heartbeats of the Java, C++ and
//! ali-ons clients, membership notifications as the other consumers' connections see them,
//! consumer lists, offsets and Java's first-offset rule, queue locks, housekeeping, and the
//! answers to malformed requests.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::broker::client_manager::CHANNEL_EXPIRED_TIMEOUT;
use crate::broker::config::BrokerConfig;
use crate::broker::rebalance_lock::REBALANCE_LOCK_MAX_LIVE_TIME;
use crate::broker::test_support::{TestPeer, test_context};
use crate::protocol::heartbeat::{ConsumeType, MessageModel, MessageQueue};
use crate::remoting::code::CURRENT_VERSION;
use crate::remoting::command::FLAG_ONEWAY;
use crate::remoting::{CommandHeader, ExtFields, LanguageCode};
use crate::store::config::MessageStoreConfig;
use crate::store::message::MessageInner;
use crate::store::metadata::SubscriptionGroupConfig;

// ---------------------------------------------------------------------------------------------
// Fixtures.
// ---------------------------------------------------------------------------------------------

/// The Java heartbeat of spec §7.2 for `client_id` in consumer group `group`.
fn java_heartbeat(client_id: &str, group: &str) -> String {
    format!(
        r#"{{"clientID":"{client_id}","consumerDataSet":[{{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"{group}","messageModel":"CLUSTERING","unitMode":false,"subscriptionDataSet":[{{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":1700000000000,"tagsSet":[],"topic":"TopicTest"}},{{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":1700000000001,"tagsSet":[],"topic":"%RETRY%{group}"}}]}}],"producerDataSet":[{{"groupName":"CLIENT_INNER_PRODUCER"}},{{"groupName":"pg"}}]}}"#
    )
}

/// The C++ client's heartbeat: enum ordinals, `subVersion` as a string, no tag sets and no
/// producer set.
const CPP_HEARTBEAT: &str = r#"{"clientID":"1234-127.0.0.1@DEFAULT","consumerDataSet":[{"consumeFromWhere":0,"consumeType":1,"groupName":"cg-cpp","messageModel":1,"subscriptionDataSet":[{"classFilterMode":false,"expressionType":"TAG","subString":"*","subVersion":"1795000000000","topic":"TopicTest"}],"unitMode":false}]}"#;

/// ali-ons' consumer heartbeat: enum names, an empty producer set, no expression type.
const ALI_ONS_HEARTBEAT: &str = r#"{"clientID":"192.0.2.9@4321","consumerDataSet":[{"groupName":"cg-ons","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","subscriptionDataSet":[{"topic":"TopicTest","subString":"*","classFilterMode":false,"tagsSet":[],"codeSet":[],"subVersion":1700000000000}],"unitMode":false}],"producerDataSet":[]}"#;

fn request_with_body(code: i32, body: &str) -> RemotingCommand {
    let mut request = RemotingCommand::request(code);
    request.opaque = 7;
    request.body = Bytes::copy_from_slice(body.as_bytes());
    request
}

fn request_with_fields(code: i32, fields: &[(&str, &str)]) -> RemotingCommand {
    let mut request = RemotingCommand::request(code);
    request.opaque = 8;
    request.ext_fields = fields.iter().copied().collect::<ExtFields>();
    request
}

async fn answer(
    processor: &dyn RequestProcessor,
    peer: &TestPeer,
    request: RemotingCommand,
) -> RemotingCommand {
    processor
        .process(&peer.channel, request)
        .await
        .expect("the processor answers")
        .expect("the processor answers at once")
}

async fn heartbeat(
    processor: &ClientManageProcessor,
    peer: &TestPeer,
    body: &str,
) -> RemotingCommand {
    answer(processor, peer, request_with_body(rc::HEART_BEAT, body)).await
}

/// The next command the broker wrote to `peer`, or `None` when none comes within 200 ms.
async fn next_command(context: &BrokerContext, peer: &mut TestPeer) -> Option<RemotingCommand> {
    context
        .env
        .clock
        .timeout(Duration::from_millis(200), peer.next_command())
        .await
        .ok()
        .flatten()
}

/// Asserts that `peer` was told `group` changed: a oneway request 40 with header
/// `consumerGroup`.
async fn expect_notification(context: &BrokerContext, peer: &mut TestPeer, group: &str) {
    let command = next_command(context, peer)
        .await
        .expect("a NOTIFY_CONSUMER_IDS_CHANGED arrives");
    assert_eq!(command.code, rc::NOTIFY_CONSUMER_IDS_CHANGED);
    assert!(command.is_oneway(), "the notification is oneway");
    assert_eq!(command.flag & FLAG_ONEWAY, FLAG_ONEWAY);
    assert!(!command.is_response());
    let header = NotifyConsumerIdsChangedRequestHeader::decode(&command.ext_fields).unwrap();
    assert_eq!(header.consumer_group, group);
}

async fn expect_silence(context: &BrokerContext, peer: &mut TestPeer) {
    if let Some(command) = next_command(context, peer).await {
        panic!("expected nothing, got {command:?}");
    }
}

fn consumer_ids(context: &BrokerContext, group: &str) -> Vec<String> {
    context
        .consumer_manager
        .consumer_group_info(group)
        .map(|info| info.client_ids())
        .unwrap_or_default()
}

fn mq(queue_id: i32) -> MessageQueue {
    MessageQueue {
        broker_name: "broker-a".into(),
        queue_id,
        topic: "TopicOrder".into(),
    }
}

fn lock_body(client_id: &str, queues: &[i32]) -> String {
    let mq_set: Vec<String> = queues
        .iter()
        .map(|id| format!(r#"{{"brokerName":"broker-a","queueId":{id},"topic":"TopicOrder"}}"#))
        .collect();
    format!(
        r#"{{"clientId":"{client_id}","consumerGroup":"cg-order","mqSet":[{}]}}"#,
        mq_set.join(",")
    )
}

fn locked_set(response: &RemotingCommand) -> BTreeSet<MessageQueue> {
    assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
    let body: LockBatchResponseBody = from_json("LockBatchResponseBody", &response.body).unwrap();
    body.lock_ok_mq_set
}

async fn put_message(context: &BrokerContext, topic: &str, queue_id: i32) {
    let message = MessageInner {
        topic: topic.into(),
        queue_id,
        flag: 0,
        body: Bytes::from_static(b"Hello"),
        properties: String::new(),
        tags_code: 0,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: "127.0.0.1:5555".parse().unwrap(),
        store_host: context.store_host,
        store_timestamp: 0,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    };
    let result = context.store.put_message(message).await;
    assert!(result.status.is_stored(), "{result:?}");
    context.store.dispatch_pending().await;
}

fn query_offset_request(group: &str, topic: &str, queue_id: &str) -> RemotingCommand {
    request_with_fields(
        rc::QUERY_CONSUMER_OFFSET,
        &[
            ("consumerGroup", group),
            ("topic", topic),
            ("queueId", queue_id),
        ],
    )
}

fn update_offset_request(group: &str, queue_id: &str, offset: &str) -> RemotingCommand {
    request_with_fields(
        rc::UPDATE_CONSUMER_OFFSET,
        &[
            ("consumerGroup", group),
            ("topic", "TopicTest"),
            ("queueId", queue_id),
            ("commitOffset", offset),
        ],
    )
}

fn no_config(_: &mut BrokerConfig, _: &mut MessageStoreConfig) {}

// ---------------------------------------------------------------------------------------------
// HEART_BEAT.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn java_heartbeat_registers_groups_creates_the_retry_topic_and_answers_version_409() {
    let context = test_context(no_config).await;
    let processor = ClientManageProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    let mut request = request_with_body(rc::HEART_BEAT, &java_heartbeat("192.0.2.2@3458#1", "cg"));
    request.version = 373;
    let response = answer(&processor, &peer, request).await;

    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(response.opaque, 7);
    assert_eq!(response.version, CURRENT_VERSION);
    assert!(response.body.is_empty());
    assert_eq!(response.remark, None);

    let info = context.consumer_manager.consumer_group_info("cg").unwrap();
    assert_eq!(info.client_ids(), vec!["192.0.2.2@3458#1".to_owned()]);
    assert_eq!(info.consume_type, ConsumeType::ConsumePassively);
    assert_eq!(info.message_model, MessageModel::Clustering);
    assert!(info.subscriptions.contains_key("TopicTest"));
    assert!(info.subscriptions.contains_key("%RETRY%cg"));
    let client = info.channels.values().next().unwrap();
    assert_eq!(client.version, 373);
    assert_eq!(client.language, LanguageCode::Java);

    let retry = context
        .topic_config_manager
        .select_topic_config("%RETRY%cg")
        .expect("the retry topic exists");
    assert_eq!(retry.read_queue_nums, 1);
    assert_eq!(retry.write_queue_nums, 1);
    assert_eq!(retry.perm, 6);
    assert_eq!(retry.topic_sys_flag, 0);

    let producers = context.producer_manager.groups();
    assert_eq!(producers["pg"], vec!["192.0.2.2@3458#1".to_owned()]);
    assert!(producers.contains_key("CLIENT_INNER_PRODUCER"));
    assert!(context.producer_manager.available_channel("pg").is_some());
}

#[tokio::test]
async fn cpp_heartbeat_with_ordinals_and_string_numbers_registers_the_consumer() {
    let context = test_context(no_config).await;
    let processor = ClientManageProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    let response = heartbeat(&processor, &peer, CPP_HEARTBEAT).await;
    assert_eq!(response.code, response_code::SUCCESS);

    let info = context
        .consumer_manager
        .consumer_group_info("cg-cpp")
        .unwrap();
    assert_eq!(info.client_ids(), vec!["1234-127.0.0.1@DEFAULT".to_owned()]);
    assert_eq!(info.consume_type, ConsumeType::ConsumePassively);
    assert_eq!(info.message_model, MessageModel::Clustering);
    assert_eq!(
        info.subscriptions["TopicTest"].sub_version,
        1_795_000_000_000
    );
    assert!(
        context
            .topic_config_manager
            .select_topic_config("%RETRY%cg-cpp")
            .is_some()
    );
    assert!(context.producer_manager.groups().is_empty());
}

#[tokio::test]
async fn ali_ons_heartbeat_with_an_empty_producer_set_registers_the_consumer() {
    let context = test_context(no_config).await;
    let processor = ClientManageProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    let response = heartbeat(&processor, &peer, ALI_ONS_HEARTBEAT).await;
    assert_eq!(response.code, response_code::SUCCESS);

    assert_eq!(
        consumer_ids(&context, "cg-ons"),
        vec!["192.0.2.9@4321".to_owned()]
    );
    let subscription = context
        .consumer_manager
        .find_subscription_data("cg-ons", "TopicTest")
        .unwrap();
    assert_eq!(subscription.expression_type, EXPRESSION_TYPE_TAG);
    assert!(
        context
            .topic_config_manager
            .select_topic_config("%RETRY%cg-ons")
            .is_some()
    );
}

#[tokio::test]
async fn heartbeat_persists_the_created_retry_topic_and_subscription_group() {
    let context = test_context(no_config).await;
    let processor = ClientManageProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    heartbeat(&processor, &peer, &java_heartbeat("c1", "cg-persisted")).await;

    // Reloading the tables from disk finds what the heartbeat created.
    let root = context.store_config.store_path_root_dir.clone();
    let topics = crate::broker::topic_config::TopicConfigManager::new(
        context.env.disk.clone(),
        &root,
        context.env.clock.clone(),
        crate::broker::topic_config::TopicDefaults::from_config(&context.config, 18),
    );
    topics.load().unwrap();
    assert!(topics.select_topic_config("%RETRY%cg-persisted").is_some());
    let groups = crate::broker::subscription_group::SubscriptionGroupManager::new(
        context.env.disk.clone(),
        &root,
        context.env.clock.clone(),
        false,
    );
    groups.load().unwrap();
    assert!(
        groups
            .find_subscription_group_config("cg-persisted")
            .is_some()
    );
}

#[tokio::test]
async fn retry_topic_takes_the_group_retry_queue_nums_and_the_unit_mode_flag() {
    let context = test_context(no_config).await;
    let mut config = SubscriptionGroupConfig::new("cg-unit");
    config.retry_queue_nums = 3;
    context
        .subscription_group_manager
        .update_subscription_group_config(config);
    let processor = ClientManageProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    let body = java_heartbeat("c1", "cg-unit").replace(r#""unitMode":false"#, r#""unitMode":true"#);
    heartbeat(&processor, &peer, &body).await;

    let retry = context
        .topic_config_manager
        .select_topic_config("%RETRY%cg-unit")
        .unwrap();
    assert_eq!(retry.read_queue_nums, 3);
    assert_eq!(retry.write_queue_nums, 3);
    assert_eq!(retry.perm, perm::READ | perm::WRITE);
    assert_eq!(retry.topic_sys_flag, TOPIC_SYS_FLAG_UNIT_SUB);
}

#[tokio::test]
async fn heartbeat_of_an_unknown_group_with_auto_create_off_registers_without_a_retry_topic() {
    let context = test_context(|config, _| config.auto_create_subscription_group = false).await;
    let processor = ClientManageProcessor::new(context.clone());
    let mut peer = TestPeer::connect(&context);
    let response = heartbeat(&processor, &peer, &java_heartbeat("c1", "cg-unknown")).await;

    // Java does not answer SUBSCRIPTION_GROUP_NOT_EXIST here: the consumer registers, and
    // only its pulls are refused later.
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(consumer_ids(&context, "cg-unknown"), vec!["c1".to_owned()]);
    assert!(
        context
            .topic_config_manager
            .select_topic_config("%RETRY%cg-unknown")
            .is_none()
    );
    // With no group settings, notification is on (Java's default).
    expect_notification(&context, &mut peer, "cg-unknown").await;
}

#[tokio::test]
async fn second_consumer_joining_notifies_the_first_oneway_with_its_group() {
    let context = test_context(no_config).await;
    let processor = ClientManageProcessor::new(context.clone());
    let mut first = TestPeer::connect(&context);
    let mut second = TestPeer::connect(&context);

    heartbeat(&processor, &first, &java_heartbeat("c1", "cg")).await;
    // Java tells the whole group, the newcomer included.
    expect_notification(&context, &mut first, "cg").await;

    heartbeat(&processor, &second, &java_heartbeat("c2", "cg")).await;
    expect_notification(&context, &mut first, "cg").await;
    expect_notification(&context, &mut second, "cg").await;
    assert_eq!(
        consumer_ids(&context, "cg"),
        vec!["c1".to_owned(), "c2".to_owned()]
    );
}

#[tokio::test]
async fn repeated_heartbeat_does_not_notify_but_a_new_topic_does() {
    let context = test_context(no_config).await;
    let processor = ClientManageProcessor::new(context.clone());
    let mut peer = TestPeer::connect(&context);
    heartbeat(&processor, &peer, &java_heartbeat("c1", "cg")).await;
    expect_notification(&context, &mut peer, "cg").await;

    heartbeat(&processor, &peer, &java_heartbeat("c1", "cg")).await;
    expect_silence(&context, &mut peer).await;

    let more =
        java_heartbeat("c1", "cg").replace(r#""topic":"TopicTest""#, r#""topic":"TopicOther""#);
    heartbeat(&processor, &peer, &more).await;
    expect_notification(&context, &mut peer, "cg").await;
}

#[tokio::test]
async fn heartbeat_does_not_notify_when_the_group_disables_it() {
    let context = test_context(no_config).await;
    let mut config = SubscriptionGroupConfig::new("cg-quiet");
    config.notify_consumer_ids_changed_enable = false;
    context
        .subscription_group_manager
        .update_subscription_group_config(config);
    let processor = ClientManageProcessor::new(context.clone());
    let mut peer = TestPeer::connect(&context);
    heartbeat(&processor, &peer, &java_heartbeat("c1", "cg-quiet")).await;
    expect_silence(&context, &mut peer).await;
    assert_eq!(consumer_ids(&context, "cg-quiet"), vec!["c1".to_owned()]);
}

#[tokio::test]
async fn heartbeat_does_not_notify_when_the_broker_disables_it() {
    let context = test_context(|config, _| config.notify_consumer_ids_changed_enable = false).await;
    let processor = ClientManageProcessor::new(context.clone());
    let mut peer = TestPeer::connect(&context);
    heartbeat(&processor, &peer, &java_heartbeat("c1", "cg")).await;
    expect_silence(&context, &mut peer).await;
}

#[tokio::test]
async fn heartbeat_with_a_bad_or_missing_body_answers_system_error() {
    let context = test_context(no_config).await;
    let processor = ClientManageProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    for body in [
        "",
        "not json",
        r#"{"consumerDataSet":[]}"#,
        r#"{"clientID":"c","consumerDataSet":[{"consumeType":"NOPE","groupName":"g"}]}"#,
    ] {
        let error = processor
            .process(&peer.channel, request_with_body(rc::HEART_BEAT, body))
            .await
            .expect_err(body);
        assert_eq!(error.code, response_code::SYSTEM_ERROR, "{body}");
        assert!(
            error.remark.contains("HeartbeatData"),
            "{body}: {}",
            error.remark
        );
    }
    assert!(context.consumer_manager.group_names().is_empty());
}

// ---------------------------------------------------------------------------------------------
// UNREGISTER_CLIENT, CHECK_CLIENT_CONFIG.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn unregister_client_removes_its_groups_and_notifies_the_remaining_consumers() {
    let context = test_context(no_config).await;
    let processor = ClientManageProcessor::new(context.clone());
    let mut first = TestPeer::connect(&context);
    let mut second = TestPeer::connect(&context);
    heartbeat(&processor, &first, &java_heartbeat("c1", "cg")).await;
    heartbeat(&processor, &second, &java_heartbeat("c2", "cg")).await;
    expect_notification(&context, &mut first, "cg").await;
    expect_notification(&context, &mut first, "cg").await;
    expect_notification(&context, &mut second, "cg").await;

    let consumer = request_with_fields(
        rc::UNREGISTER_CLIENT,
        &[("clientID", "c2"), ("consumerGroup", "cg")],
    );
    assert_eq!(
        answer(&processor, &second, consumer).await.code,
        response_code::SUCCESS
    );
    assert_eq!(consumer_ids(&context, "cg"), vec!["c1".to_owned()]);
    expect_notification(&context, &mut first, "cg").await;
    expect_silence(&context, &mut second).await;

    let producer = request_with_fields(
        rc::UNREGISTER_CLIENT,
        &[("clientID", "c2"), ("producerGroup", "pg")],
    );
    assert_eq!(
        answer(&processor, &second, producer).await.code,
        response_code::SUCCESS
    );
    assert_eq!(
        context.producer_manager.groups()["pg"],
        vec!["c1".to_owned()]
    );

    // Unregistering what is not registered is fine and tells nobody.
    let again = request_with_fields(
        rc::UNREGISTER_CLIENT,
        &[("clientID", "c2"), ("consumerGroup", "cg")],
    );
    assert_eq!(
        answer(&processor, &second, again).await.code,
        response_code::SUCCESS
    );
    expect_silence(&context, &mut first).await;
}

#[tokio::test]
async fn unregister_client_from_cpp_with_the_unused_group_empty_leaves_the_rest_alone() {
    let context = test_context(no_config).await;
    let processor = ClientManageProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    heartbeat(&processor, &peer, &java_heartbeat("c1", "cg")).await;

    let request = request_with_fields(
        rc::UNREGISTER_CLIENT,
        &[
            ("clientID", "c1"),
            ("producerGroup", ""),
            ("consumerGroup", "cg"),
        ],
    );
    assert_eq!(
        answer(&processor, &peer, request).await.code,
        response_code::SUCCESS
    );
    assert!(context.consumer_manager.consumer_group_info("cg").is_none());
    assert!(context.producer_manager.groups().contains_key("pg"));
    // No group named "" was auto-created on the way (Java's would be).
    let table = context
        .subscription_group_manager
        .wrapper()
        .subscription_group_table;
    assert!(!table.contains_key(""));
}

#[tokio::test]
async fn unregister_client_without_client_id_answers_system_error_naming_the_field() {
    let context = test_context(no_config).await;
    let processor = ClientManageProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    let request = request_with_fields(rc::UNREGISTER_CLIENT, &[("consumerGroup", "cg")]);
    let error = processor.process(&peer.channel, request).await.unwrap_err();
    assert_eq!(error.code, response_code::SYSTEM_ERROR);
    assert!(error.remark.contains("clientID"), "{}", error.remark);
}

#[tokio::test]
async fn check_client_config_accepts_tag_subscriptions_and_refuses_sql92() {
    let context = test_context(no_config).await;
    let processor = ClientManageProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    let tag = r#"{"clientId":"c1","group":"cg","subscriptionData":{"expressionType":"TAG","subString":"A || B","subVersion":1,"topic":"T"}}"#;
    let response = answer(
        &processor,
        &peer,
        request_with_body(rc::CHECK_CLIENT_CONFIG, tag),
    )
    .await;
    assert_eq!(response.code, response_code::SUCCESS);
    let no_subscription = r#"{"clientId":"c1","group":"cg"}"#;
    let response = answer(
        &processor,
        &peer,
        request_with_body(rc::CHECK_CLIENT_CONFIG, no_subscription),
    )
    .await;
    assert_eq!(response.code, response_code::SUCCESS);

    let sql = r#"{"clientId":"c1","group":"cg","subscriptionData":{"expressionType":"SQL92","subString":"a > 1","subVersion":1,"topic":"T"}}"#;
    let response = answer(
        &processor,
        &peer,
        request_with_body(rc::CHECK_CLIENT_CONFIG, sql),
    )
    .await;
    assert_eq!(response.code, response_code::SYSTEM_ERROR);
    assert_eq!(
        response.remark.as_deref(),
        Some("The broker does not support consumer to filter message by SQL92")
    );

    let error = processor
        .process(
            &peer.channel,
            request_with_body(rc::CHECK_CLIENT_CONFIG, "{"),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code, response_code::SYSTEM_ERROR);
    assert!(
        error.remark.contains("CheckClientRequestBody"),
        "{}",
        error.remark
    );
}

#[tokio::test]
async fn processors_answer_codes_they_do_not_serve_with_request_code_not_supported() {
    let context = test_context(no_config).await;
    let peer = TestPeer::connect(&context);
    let processors: [Box<dyn RequestProcessor>; 2] = [
        Box::new(ClientManageProcessor::new(context.clone())),
        Box::new(ConsumerManageProcessor::new(context.clone())),
    ];
    for processor in &processors {
        let response = answer(
            processor.as_ref(),
            &peer,
            RemotingCommand::request(rc::PULL_MESSAGE),
        )
        .await;
        assert_eq!(response.code, response_code::REQUEST_CODE_NOT_SUPPORTED);
        assert_eq!(
            response.remark.as_deref(),
            Some(" request type 11 not supported")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// GET_CONSUMER_LIST_BY_GROUP, UPDATE/QUERY_CONSUMER_OFFSET.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn consumer_list_by_group_lists_the_client_ids_of_its_consumers() {
    let context = test_context(no_config).await;
    let client_manage = ClientManageProcessor::new(context.clone());
    let processor = ConsumerManageProcessor::new(context.clone());
    let first = TestPeer::connect(&context);
    let second = TestPeer::connect(&context);
    heartbeat(&client_manage, &first, &java_heartbeat("192.0.2.2@1", "cg")).await;
    heartbeat(
        &client_manage,
        &second,
        &java_heartbeat("192.0.2.3@2", "cg"),
    )
    .await;

    let request = request_with_fields(rc::GET_CONSUMER_LIST_BY_GROUP, &[("consumerGroup", "cg")]);
    let response = answer(&processor, &first, request).await;
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(
        response.body,
        Bytes::from_static(br#"{"consumerIdList":["192.0.2.2@1","192.0.2.3@2"]}"#)
    );
}

#[tokio::test]
async fn consumer_list_of_a_group_without_consumers_answers_system_error() {
    let context = test_context(no_config).await;
    let processor = ConsumerManageProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    let request = request_with_fields(
        rc::GET_CONSUMER_LIST_BY_GROUP,
        &[("consumerGroup", "nobody")],
    );
    let response = answer(&processor, &peer, request).await;
    assert_eq!(response.code, response_code::SYSTEM_ERROR);
    assert_eq!(
        response.remark.as_deref(),
        Some("no consumer for this group, nobody")
    );

    let error = processor
        .process(
            &peer.channel,
            request_with_fields(rc::GET_CONSUMER_LIST_BY_GROUP, &[]),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code, response_code::SYSTEM_ERROR);
    assert!(error.remark.contains("consumerGroup"), "{}", error.remark);
}

#[tokio::test]
async fn committed_offset_is_answered_whether_it_came_oneway_or_not() {
    let context = test_context(no_config).await;
    let processor = ConsumerManageProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    let response = answer(&processor, &peer, update_offset_request("cg", "1", "42")).await;
    assert_eq!(response.code, response_code::SUCCESS);
    let mut oneway = update_offset_request("cg", "2", "7");
    oneway.mark_oneway();
    processor.process(&peer.channel, oneway).await.unwrap();

    let response = answer(
        &processor,
        &peer,
        query_offset_request("cg", "TopicTest", "1"),
    )
    .await;
    assert_eq!(response.code, response_code::SUCCESS);
    let header = QueryConsumerOffsetResponseHeader::decode(&response.ext_fields).unwrap();
    assert_eq!(header.offset, 42);
    let response = answer(
        &processor,
        &peer,
        query_offset_request("cg", "TopicTest", "2"),
    )
    .await;
    assert_eq!(response.ext_fields.get("offset"), Some("7"));
}

#[tokio::test]
async fn ali_ons_minus_one_offset_is_not_stored_over_a_real_one() {
    let context = test_context(no_config).await;
    let processor = ConsumerManageProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    answer(&processor, &peer, update_offset_request("cg", "0", "42")).await;
    let response = answer(&processor, &peer, update_offset_request("cg", "0", "-1")).await;
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(
        context
            .consumer_offset_manager
            .query_offset("cg", "TopicTest", 0),
        Some(42)
    );

    let response = answer(&processor, &peer, update_offset_request("cg", "3", "-1")).await;
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(
        context
            .consumer_offset_manager
            .query_offset("cg", "TopicTest", 3),
        None
    );
}

#[tokio::test]
async fn query_offset_without_a_commit_answers_zero_for_an_empty_or_unknown_queue() {
    let context = test_context(no_config).await;
    let processor = ConsumerManageProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    let response = answer(
        &processor,
        &peer,
        query_offset_request("cg", "NoSuchTopic", "0"),
    )
    .await;
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(response.ext_fields.get("offset"), Some("0"));
}

#[tokio::test]
async fn query_offset_without_a_commit_answers_zero_while_message_zero_is_in_memory() {
    let context = test_context(no_config).await;
    put_message(&context, "TopicTest", 0).await;
    put_message(&context, "TopicTest", 0).await;
    let processor = ConsumerManageProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    let response = answer(
        &processor,
        &peer,
        query_offset_request("cg", "TopicTest", "0"),
    )
    .await;
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(response.ext_fields.get("offset"), Some("0"));
}

#[tokio::test]
async fn query_offset_without_a_commit_answers_query_not_found_once_message_zero_is_on_disk() {
    // No hot window: every message already counts as on disk.
    let context = test_context(|_, store| store.access_message_in_memory_max_ratio = 0).await;
    put_message(&context, "TopicTest", 0).await;
    let processor = ConsumerManageProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    let response = answer(
        &processor,
        &peer,
        query_offset_request("cg", "TopicTest", "0"),
    )
    .await;
    assert_eq!(response.code, response_code::QUERY_NOT_FOUND);
    assert_eq!(
        response.remark.as_deref(),
        Some(QUERY_OFFSET_NOT_FOUND_REMARK)
    );
    assert_eq!(response.ext_fields.get("offset"), None);

    // A committed offset wins over the rule, and a stored -1 counts as none.
    context
        .consumer_offset_manager
        .commit_offset("cg", "TopicTest", 0, 1);
    let response = answer(
        &processor,
        &peer,
        query_offset_request("cg", "TopicTest", "0"),
    )
    .await;
    assert_eq!(response.ext_fields.get("offset"), Some("1"));
    context
        .consumer_offset_manager
        .commit_offset("cg", "TopicTest", 0, -1);
    let response = answer(
        &processor,
        &peer,
        query_offset_request("cg", "TopicTest", "0"),
    )
    .await;
    assert_eq!(response.code, response_code::QUERY_NOT_FOUND);
}

#[tokio::test]
async fn offset_requests_with_bad_headers_answer_system_error_naming_the_field() {
    let context = test_context(no_config).await;
    let processor = ConsumerManageProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    let cases = [
        (query_offset_request("cg", "TopicTest", "zero"), "queueId"),
        (
            request_with_fields(
                rc::QUERY_CONSUMER_OFFSET,
                &[("topic", "T"), ("queueId", "0")],
            ),
            "consumerGroup",
        ),
        (update_offset_request("cg", "0", "12x"), "commitOffset"),
        (
            request_with_fields(
                rc::UPDATE_CONSUMER_OFFSET,
                &[("consumerGroup", "cg"), ("topic", "T"), ("queueId", "0")],
            ),
            "commitOffset",
        ),
    ];
    for (request, field) in cases {
        let error = processor.process(&peer.channel, request).await.unwrap_err();
        assert_eq!(error.code, response_code::SYSTEM_ERROR);
        assert!(error.remark.contains(field), "{field}: {}", error.remark);
    }
    assert!(
        context
            .consumer_offset_manager
            .table()
            .offset_table
            .is_empty()
    );
}

// ---------------------------------------------------------------------------------------------
// LOCK_BATCH_MQ, UNLOCK_BATCH_MQ.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn lock_batch_grants_free_queues_and_refuses_them_to_a_second_client() {
    let context = test_context(no_config).await;
    let processor = ConsumerManageProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    let response = answer(
        &processor,
        &peer,
        request_with_body(rc::LOCK_BATCH_MQ, &lock_body("c1", &[0, 1])),
    )
    .await;
    assert_eq!(
        response.body,
        Bytes::from_static(br#"{"lockOKMQSet":[{"brokerName":"broker-a","queueId":0,"topic":"TopicOrder"},{"brokerName":"broker-a","queueId":1,"topic":"TopicOrder"}]}"#)
    );

    let response = answer(
        &processor,
        &peer,
        request_with_body(rc::LOCK_BATCH_MQ, &lock_body("c2", &[0, 1, 2])),
    )
    .await;
    assert_eq!(locked_set(&response), [mq(2)].into_iter().collect());

    // The holder renews its own locks.
    let response = answer(
        &processor,
        &peer,
        request_with_body(rc::LOCK_BATCH_MQ, &lock_body("c1", &[0, 1, 2])),
    )
    .await;
    assert_eq!(locked_set(&response), [mq(0), mq(1)].into_iter().collect());
}

#[tokio::test]
async fn lock_of_a_client_that_stops_renewing_expires_after_60_seconds() {
    let context = test_context(no_config).await;
    let processor = ConsumerManageProcessor::new(context.clone());
    let now = context.env.clock.instant();
    let c1 = request_with_body(rc::LOCK_BATCH_MQ, &lock_body("c1", &[0]));
    assert_eq!(
        locked_set(&processor.lock_batch_mq(&c1, now).unwrap().unwrap()).len(),
        1
    );

    let c2 = request_with_body(rc::LOCK_BATCH_MQ, &lock_body("c2", &[0]));
    let almost = now + REBALANCE_LOCK_MAX_LIVE_TIME;
    assert!(locked_set(&processor.lock_batch_mq(&c2, almost).unwrap().unwrap()).is_empty());
    let later = almost + Duration::from_millis(1);
    assert_eq!(
        locked_set(&processor.lock_batch_mq(&c2, later).unwrap().unwrap()),
        [mq(0)].into_iter().collect()
    );
    assert!(
        context
            .rebalance_lock_manager
            .is_locked("cg-order", &mq(0), "c2", later)
    );
}

#[tokio::test]
async fn unlock_batch_frees_the_queues_of_its_client_only() {
    let context = test_context(no_config).await;
    let processor = ConsumerManageProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    answer(
        &processor,
        &peer,
        request_with_body(rc::LOCK_BATCH_MQ, &lock_body("c1", &[0, 1])),
    )
    .await;

    // Another client's unlock changes nothing.
    let response = answer(
        &processor,
        &peer,
        request_with_body(rc::UNLOCK_BATCH_MQ, &lock_body("c2", &[0, 1])),
    )
    .await;
    assert_eq!(response.code, response_code::SUCCESS);
    let mut unlock = request_with_body(rc::UNLOCK_BATCH_MQ, &lock_body("c1", &[0]));
    unlock.mark_oneway();
    processor.process(&peer.channel, unlock).await.unwrap();

    let response = answer(
        &processor,
        &peer,
        request_with_body(rc::LOCK_BATCH_MQ, &lock_body("c2", &[0, 1])),
    )
    .await;
    assert_eq!(locked_set(&response), [mq(0)].into_iter().collect());
}

#[tokio::test]
async fn lock_requests_with_bad_bodies_answer_system_error() {
    let context = test_context(no_config).await;
    let processor = ConsumerManageProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    let cases = [
        (rc::LOCK_BATCH_MQ, "", "LockBatchRequestBody"),
        (rc::LOCK_BATCH_MQ, "[1,2]", "LockBatchRequestBody"),
        (
            rc::LOCK_BATCH_MQ,
            r#"{"consumerGroup":"cg","mqSet":[]}"#,
            "clientId",
        ),
        (
            rc::LOCK_BATCH_MQ,
            r#"{"clientId":"c1","consumerGroup":"cg","mqSet":[{"queueId":"x"}]}"#,
            "LockBatchRequestBody",
        ),
        (rc::UNLOCK_BATCH_MQ, "{", "UnlockBatchRequestBody"),
    ];
    for (code, body, expected) in cases {
        let error = processor
            .process(&peer.channel, request_with_body(code, body))
            .await
            .unwrap_err();
        assert_eq!(error.code, response_code::SYSTEM_ERROR);
        assert!(error.remark.contains(expected), "{body}: {}", error.remark);
    }
}

// ---------------------------------------------------------------------------------------------
// Housekeeping.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn housekeeping_drops_a_closed_connection_and_notifies_the_rest_of_its_group() {
    let context = test_context(no_config).await;
    let processor = ClientManageProcessor::new(context.clone());
    let housekeeping = ClientHousekeeping::new(context.clone());
    let first = TestPeer::connect(&context);
    let mut second = TestPeer::connect(&context);
    heartbeat(&processor, &first, &java_heartbeat("c1", "cg")).await;
    heartbeat(&processor, &second, &java_heartbeat("c2", "cg")).await;
    expect_notification(&context, &mut second, "cg").await;

    housekeeping.on_event(&first.channel, &ChannelEvent::Connect);
    assert_eq!(consumer_ids(&context, "cg").len(), 2);

    first.channel.close();
    housekeeping.on_event(&first.channel, &ChannelEvent::Close);
    assert_eq!(consumer_ids(&context, "cg"), vec!["c2".to_owned()]);
    assert_eq!(
        context.producer_manager.groups()["pg"],
        vec!["c2".to_owned()]
    );
    expect_notification(&context, &mut second, "cg").await;

    // The last member leaving removes the group; nobody is left to tell.
    housekeeping.on_event(&second.channel, &ChannelEvent::Exception("reset".into()));
    assert!(context.consumer_manager.consumer_group_info("cg").is_none());
    assert!(context.producer_manager.groups().is_empty());
}

#[tokio::test]
async fn housekeeping_scan_expires_silent_clients_closes_them_and_notifies() {
    let context = test_context(no_config).await;
    let processor = ClientManageProcessor::new(context.clone());
    let silent = TestPeer::connect(&context);
    let mut alive = TestPeer::connect(&context);
    heartbeat(&processor, &silent, &java_heartbeat("c1", "cg")).await;
    let after_heartbeat = context.env.clock.instant();
    // The other consumer's last heartbeat came 60 s later.
    context.consumer_manager.register_consumer(
        ConsumerRegistration {
            group: "cg".into(),
            client: ClientChannelInfo {
                channel: alive.channel.clone(),
                client_id: "c2".into(),
                language: LanguageCode::Java,
                version: CURRENT_VERSION,
                last_update: after_heartbeat,
            },
            consume_type: ConsumeType::ConsumePassively,
            message_model: MessageModel::Clustering,
            consume_from_where: crate::protocol::heartbeat::ConsumeFromWhere::ConsumeFromLastOffset,
            subscriptions: Vec::new(),
        },
        after_heartbeat + Duration::from_secs(60),
    );

    let not_yet = scan_not_active_channels(
        &context,
        after_heartbeat + CHANNEL_EXPIRED_TIMEOUT - Duration::from_millis(1),
    )
    .await;
    assert_eq!(not_yet, ClientScanReport::default());
    assert!(!silent.channel.is_closed());

    let report = scan_not_active_channels(
        &context,
        after_heartbeat + CHANNEL_EXPIRED_TIMEOUT + Duration::from_millis(1),
    )
    .await;
    assert_eq!(report.closed_channel_ids, vec![silent.channel.id()]);
    assert_eq!(report.changed_groups, vec!["cg".to_owned()]);
    assert!(silent.channel.is_closed());
    assert!(!alive.channel.is_closed());
    assert_eq!(consumer_ids(&context, "cg"), vec!["c2".to_owned()]);
    assert!(!context.producer_manager.groups().contains_key("pg"));
    expect_notification(&context, &mut alive, "cg").await;
}

#[tokio::test]
async fn run_scan_waits_one_interval_before_its_first_scan() {
    let context = test_context(no_config).await;
    let processor = ClientManageProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    heartbeat(&processor, &peer, &java_heartbeat("c1", "cg")).await;
    let task = tokio::spawn(Arc::new(ClientHousekeeping::new(context.clone())).run_scan());
    context.env.clock.sleep(Duration::from_millis(50)).await;
    task.abort();
    // A fresh client is never expired by the scan.
    assert_eq!(consumer_ids(&context, "cg"), vec!["c1".to_owned()]);
}
