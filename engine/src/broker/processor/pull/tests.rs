//! Tests of PULL_MESSAGE: status → code mapping, filtering, the commit-offset piggyback,
//! long polling (arrival, periodic check, timeout) and refusals.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::broker::client_manager::{ClientChannelInfo, ConsumerRegistration};
use crate::broker::config::BrokerConfig;
use crate::broker::test_support::{TEST_WALL_MS, TestPeer, test_context};
use crate::clock::ClockExt;
use crate::protocol::TopicConfig;
use crate::protocol::heartbeat::{ConsumeFromWhere, ConsumeType};
use crate::remoting::{LanguageCode, request_code};
use crate::store::config::MessageStoreConfig;
use crate::store::message::{
    MessageInner, StoredMessage, decode_records, encode_properties, property_key, tags_code,
};

const TOPIC: &str = "PullTopic";
const GROUP: &str = "pull_group";
const OPAQUE: i32 = 4242;
/// Long enough for anything that should happen to happen on a 2-core machine.
const PATIENCE: Duration = Duration::from_secs(5);

struct Fixture {
    context: Arc<BrokerContext>,
    processor: Arc<PullMessageProcessor>,
    peer: TestPeer,
}

async fn fixture(configure: impl FnOnce(&mut BrokerConfig, &mut MessageStoreConfig)) -> Fixture {
    let context = test_context(configure).await;
    context
        .topic_config_manager
        .update_topic_config(TopicConfig::new(TOPIC, 4));
    let processor = PullMessageProcessor::new(context.clone());
    context
        .store
        .set_arrival_listener(processor.arrival_listener());
    let peer = TestPeer::connect(&context);
    Fixture {
        context,
        processor,
        peer,
    }
}

impl Fixture {
    /// Stores messages with `tags` on queue 0 of [`TOPIC`] and dispatches them.
    async fn put(&self, tags: &[&str]) {
        for (index, tag) in tags.iter().enumerate() {
            let properties: BTreeMap<String, String> =
                [(property_key::TAGS.to_owned(), (*tag).to_owned())].into();
            let message = MessageInner {
                topic: TOPIC.into(),
                queue_id: 0,
                flag: 0,
                body: Bytes::from(format!("body-{tag}-{index}")),
                properties: encode_properties(&properties),
                tags_code: tags_code(tag),
                sys_flag: 0,
                born_timestamp: TEST_WALL_MS,
                born_host: "127.0.0.1:5555".parse().expect("literal address"),
                store_host: self.context.store_host,
                store_timestamp: 0,
                reconsume_times: 0,
                prepared_transaction_offset: 0,
            };
            let result = self.context.store.put_message(message).await;
            assert!(result.status.is_stored(), "{result:?}");
        }
        self.context.store.dispatch_pending().await;
    }

    async fn pull(&self, header: &PullMessageRequestHeader) -> Option<RemotingCommand> {
        self.processor
            .process(&self.peer.channel, pull_request(header))
            .await
            .expect("the pull is answered with a pull code")
    }

    async fn pull_err(&self, header: &PullMessageRequestHeader) -> ProcessError {
        self.processor
            .process(&self.peer.channel, pull_request(header))
            .await
            .expect_err("the pull is refused")
    }

    /// The next deferred answer, within [`PATIENCE`].
    async fn deferred(&mut self) -> RemotingCommand {
        self.context
            .env
            .clock
            .timeout(PATIENCE, self.peer.next_command())
            .await
            .expect("a held pull is answered in time")
            .expect("the connection is open")
    }

    /// Whether nothing is written to the client within `wait`.
    async fn silent_for(&mut self, wait: Duration) -> bool {
        self.context
            .env
            .clock
            .timeout(wait, self.peer.next_command())
            .await
            .is_err()
    }
}

/// A pull of queue 0 of [`TOPIC`] from `offset` with `sys_flag` and subscription `*`.
fn header(offset: i64, sys_flag: i32) -> PullMessageRequestHeader {
    PullMessageRequestHeader {
        consumer_group: GROUP.into(),
        topic: TOPIC.into(),
        queue_id: 0,
        queue_offset: offset,
        max_msg_nums: 32,
        sys_flag,
        commit_offset: 0,
        suspend_timeout_millis: 15_000,
        subscription: Some("*".into()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        broker_name: None,
    }
}

fn pull_request(header: &PullMessageRequestHeader) -> RemotingCommand {
    let mut request = RemotingCommand::request_with_header(request_code::PULL_MESSAGE, header);
    request.opaque = OPAQUE;
    request
}

/// The response header; decoding fails unless all four fields are present.
fn response_header(response: &RemotingCommand) -> PullMessageResponseHeader {
    assert!(response.is_response());
    assert_eq!(response.opaque, OPAQUE);
    response
        .decode_header()
        .expect("every pull response carries all four header fields")
}

fn messages(response: &RemotingCommand) -> Vec<StoredMessage> {
    decode_records(&response.body)
}

fn tags(response: &RemotingCommand) -> Vec<String> {
    messages(response)
        .iter()
        .map(|m| m.tags().unwrap_or_default().to_owned())
        .collect()
}

const SUB: i32 = pull_sys_flag::SUBSCRIPTION;
const SUSPEND: i32 = pull_sys_flag::SUSPEND;
const COMMIT: i32 = pull_sys_flag::COMMIT_OFFSET;

// ---------------------------------------------------------------------------------------------
// Reading

#[tokio::test]
async fn pull_returns_found_records_with_all_four_header_fields() {
    let f = fixture(|_, _| {}).await;
    f.put(&["A", "B", "C"]).await;

    let response = f.pull(&header(0, SUB)).await.expect("answered now");
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(response.remark.as_deref(), Some("FOUND"));
    let h = response_header(&response);
    assert_eq!(
        (
            h.suggest_which_broker_id,
            h.next_begin_offset,
            h.min_offset,
            h.max_offset
        ),
        (0, 3, 0, 3)
    );
    let found = messages(&response);
    assert_eq!(found.len(), 3);
    assert_eq!(
        found.iter().map(|m| m.queue_offset).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(found[1].body.as_deref(), Some(&b"body-B-1"[..]));

    let response = f.pull(&header(1, SUB)).await.expect("answered now");
    assert_eq!(tags(&response), ["B", "C"]);
    assert_eq!(response_header(&response).next_begin_offset, 3);
}

#[tokio::test]
async fn pull_honours_max_msg_nums() {
    let f = fixture(|_, _| {}).await;
    f.put(&["A", "B", "C"]).await;
    let mut h = header(0, SUB);
    h.max_msg_nums = 2;
    let response = f.pull(&h).await.expect("answered now");
    assert_eq!(tags(&response), ["A", "B"]);
    assert_eq!(response_header(&response).next_begin_offset, 2);
}

#[tokio::test]
async fn pull_at_the_end_of_the_queue_answers_not_found_without_suspend() {
    let f = fixture(|_, _| {}).await;
    f.put(&["A", "B"]).await;
    let response = f
        .pull(&header(2, SUB | COMMIT))
        .await
        .expect("answered now");
    assert_eq!(response.code, response_code::PULL_NOT_FOUND);
    assert_eq!(response.remark.as_deref(), Some("OFFSET_OVERFLOW_ONE"));
    assert!(response.body.is_empty());
    let h = response_header(&response);
    assert_eq!((h.next_begin_offset, h.min_offset, h.max_offset), (2, 0, 2));
    assert_eq!(f.processor.hold_service().held_count(), 0);
}

#[tokio::test]
async fn pull_of_an_empty_queue_answers_not_found_at_zero_and_offset_moved_elsewhere() {
    let f = fixture(|_, _| {}).await;
    let response = f.pull(&header(0, SUB)).await.expect("answered now");
    assert_eq!(response.code, response_code::PULL_NOT_FOUND);
    assert_eq!(response.remark.as_deref(), Some("NO_MATCHED_LOGIC_QUEUE"));
    let h = response_header(&response);
    assert_eq!((h.next_begin_offset, h.min_offset, h.max_offset), (0, 0, 0));

    let response = f.pull(&header(7, SUB)).await.expect("answered now");
    assert_eq!(response.code, response_code::PULL_OFFSET_MOVED);
    assert_eq!(response_header(&response).next_begin_offset, 0);
}

#[tokio::test]
async fn pull_beyond_the_end_answers_offset_moved_with_the_corrected_offset() {
    let f = fixture(|_, _| {}).await;
    f.put(&["A", "B", "C"]).await;
    let response = f.pull(&header(10, SUB | SUSPEND)).await.expect("not held");
    assert_eq!(response.code, response_code::PULL_OFFSET_MOVED);
    assert_eq!(response.remark.as_deref(), Some("OFFSET_OVERFLOW_BADLY"));
    let h = response_header(&response);
    // The queue still starts at 0, so the consumer is moved back to 0 (Java's rule).
    assert_eq!((h.next_begin_offset, h.min_offset, h.max_offset), (0, 0, 3));
    assert_eq!(f.processor.hold_service().held_count(), 0);
}

#[test]
fn every_store_status_maps_to_its_pull_code() {
    use GetMessageStatus as S;
    let cases = [
        (S::Found, 5, response_code::SUCCESS),
        (
            S::NoMatchedMessage,
            5,
            response_code::PULL_RETRY_IMMEDIATELY,
        ),
        (
            S::MessageWasRemoving,
            5,
            response_code::PULL_RETRY_IMMEDIATELY,
        ),
        (S::NoMessageInQueue, 0, response_code::PULL_NOT_FOUND),
        (S::NoMessageInQueue, 5, response_code::PULL_OFFSET_MOVED),
        (S::NoMatchedLogicQueue, 0, response_code::PULL_NOT_FOUND),
        (S::NoMatchedLogicQueue, 5, response_code::PULL_OFFSET_MOVED),
        (S::OffsetOverflowOne, 5, response_code::PULL_NOT_FOUND),
        (S::OffsetFoundNull, 5, response_code::PULL_NOT_FOUND),
        (S::OffsetOverflowBadly, 5, response_code::PULL_OFFSET_MOVED),
        (S::OffsetTooSmall, 5, response_code::PULL_OFFSET_MOVED),
    ];
    for (status, offset, code) in cases {
        assert_eq!(
            pull_response_code(status, offset),
            code,
            "{status:?} at {offset}"
        );
    }
    assert_eq!(status_name(S::OffsetTooSmall), "OFFSET_TOO_SMALL");
    assert_eq!(status_name(S::NoMessageInQueue), "NO_MESSAGE_IN_QUEUE");
}

#[tokio::test]
async fn a_slave_answers_retry_instead_of_moving_the_offset() {
    let f = fixture(|_, store| store.broker_role = BrokerRole::Slave).await;
    let response = f.pull(&header(7, SUB)).await.expect("answered now");
    assert_eq!(response.code, response_code::PULL_RETRY_IMMEDIATELY);
    let h = response_header(&response);
    assert_eq!(h.next_begin_offset, 7, "a slave never corrects the offset");
    assert_eq!(h.suggest_which_broker_id, 0);
}

// ---------------------------------------------------------------------------------------------
// Subscriptions and filtering

#[tokio::test]
async fn tag_filter_returns_matching_records_and_skips_past_the_rest() {
    let f = fixture(|_, _| {}).await;
    f.put(&["A", "B", "A", "C"]).await;

    let mut h = header(0, SUB);
    h.subscription = Some("A || C".into());
    let response = f.pull(&h).await.expect("answered now");
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(tags(&response), ["A", "A", "C"]);
    assert_eq!(response_header(&response).next_begin_offset, 4);

    h.subscription = Some("Z".into());
    let response = f.pull(&h).await.expect("answered now");
    assert_eq!(response.code, response_code::PULL_RETRY_IMMEDIATELY);
    assert_eq!(response.remark.as_deref(), Some("NO_MATCHED_MESSAGE"));
    assert!(response.body.is_empty());
    assert_eq!(
        response_header(&response).next_begin_offset,
        4,
        "the consumer skips past the unmatched records"
    );
}

#[tokio::test]
async fn a_missing_or_empty_subscription_counts_as_every_tag() {
    let f = fixture(|_, _| {}).await;
    f.put(&["A", "B"]).await;
    for (subscription, expression_type) in [
        (None, None),
        (Some(""), None),
        (Some(""), Some("")),
        (Some("  "), Some("TAG")),
    ] {
        let mut h = header(0, SUB);
        h.subscription = subscription.map(str::to_owned);
        h.expression_type = expression_type.map(str::to_owned);
        let response = f.pull(&h).await.expect("answered now");
        assert_eq!(
            tags(&response),
            ["A", "B"],
            "{subscription:?} {expression_type:?}"
        );
    }
}

#[tokio::test]
async fn sql92_subscriptions_are_refused_as_a_broker_without_property_filter() {
    let f = fixture(|_, _| {}).await;
    let mut h = header(0, SUB);
    h.expression_type = Some("SQL92".into());
    h.subscription = Some("a > 1".into());
    let error = f.pull_err(&h).await;
    assert_eq!(error.code, response_code::SYSTEM_ERROR);
    assert_eq!(
        error.remark,
        "The broker does not support consumer to filter message by SQL92"
    );

    h.subscription = Some(String::new());
    let error = f.pull_err(&h).await;
    assert_eq!(error.code, response_code::SUBSCRIPTION_PARSE_FAILED);
    assert_eq!(error.remark, "parse the consumer's subscription failed");
}

fn register_consumer(f: &Fixture, model: MessageModel, subscription: SubscriptionData) {
    let now = f.context.env.clock.instant();
    f.context.consumer_manager.register_consumer(
        ConsumerRegistration {
            group: GROUP.into(),
            client: ClientChannelInfo {
                channel: f.peer.channel.clone(),
                client_id: "127.0.0.1@test".into(),
                language: LanguageCode::Java,
                version: 0,
                last_update: now,
            },
            consume_type: ConsumeType::ConsumePassively,
            message_model: model,
            consume_from_where: ConsumeFromWhere::ConsumeFromLastOffset,
            subscriptions: vec![subscription],
        },
        now,
    );
}

#[tokio::test]
async fn without_the_subscription_flag_the_heartbeat_subscription_filters() {
    let f = fixture(|_, _| {}).await;
    f.put(&["A", "B"]).await;

    let error = f.pull_err(&header(0, 0)).await;
    assert_eq!(error.code, response_code::SUBSCRIPTION_NOT_EXIST);
    assert!(
        error
            .remark
            .starts_with("the consumer's group info not exist")
    );

    register_consumer(
        &f,
        MessageModel::Clustering,
        SubscriptionData::build("OtherTopic", "*", 100),
    );
    let error = f.pull_err(&header(0, 0)).await;
    assert_eq!(error.code, response_code::SUBSCRIPTION_NOT_EXIST);
    assert!(
        error
            .remark
            .starts_with("the consumer's subscription not exist")
    );

    register_consumer(
        &f,
        MessageModel::Clustering,
        SubscriptionData::build(TOPIC, "B", 100),
    );
    // The request's `subscription` is ignored without the flag.
    let response = f.pull(&header(0, 0)).await.expect("answered now");
    assert_eq!(tags(&response), ["B"]);

    let mut newer = header(0, 0);
    newer.sub_version = 101;
    let error = f.pull_err(&newer).await;
    assert_eq!(error.code, response_code::SUBSCRIPTION_NOT_LATEST);
    assert_eq!(error.remark, "the consumer's subscription not latest");
}

#[tokio::test]
async fn broadcasting_is_refused_when_the_group_forbids_it() {
    let f = fixture(|_, _| {}).await;
    register_consumer(
        &f,
        MessageModel::Broadcasting,
        SubscriptionData::build(TOPIC, "*", 100),
    );
    let mut group = SubscriptionGroupConfig::new(GROUP);
    group.consume_broadcast_enable = false;
    f.context
        .subscription_group_manager
        .update_subscription_group_config(group);
    let error = f.pull_err(&header(0, 0)).await;
    assert_eq!(error.code, response_code::NO_PERMISSION);
    assert_eq!(
        error.remark,
        format!("the consumer group[{GROUP}] can not consume by broadcast way")
    );
}

// ---------------------------------------------------------------------------------------------
// Commit offset

#[tokio::test]
async fn commit_offset_is_stored_whatever_the_pull_finds() {
    let f = fixture(|_, _| {}).await;
    f.put(&["A"]).await;
    let mut h = header(0, SUB | COMMIT);
    h.commit_offset = 1;
    f.pull(&h).await.expect("answered now");
    let offsets = &f.context.consumer_offset_manager;
    assert_eq!(offsets.query_offset(GROUP, TOPIC, 0), Some(1));

    h.queue_offset = 99;
    h.commit_offset = 2;
    let response = f.pull(&h).await.expect("answered now");
    assert_eq!(response.code, response_code::PULL_OFFSET_MOVED);
    assert_eq!(offsets.query_offset(GROUP, TOPIC, 0), Some(2));

    // Without the flag nothing is committed.
    let mut plain = header(0, SUB);
    plain.commit_offset = 3;
    f.pull(&plain).await.expect("answered now");
    assert_eq!(offsets.query_offset(GROUP, TOPIC, 0), Some(2));
}

#[tokio::test]
async fn commit_offset_is_committed_when_the_pull_is_held_and_not_again_on_wake() {
    let mut f = fixture(|_, _| {}).await;
    let mut h = header(0, SUB | SUSPEND | COMMIT);
    h.commit_offset = 0;
    assert!(f.pull(&h).await.is_none());
    let offsets = &f.context.consumer_offset_manager;
    assert_eq!(offsets.query_offset(GROUP, TOPIC, 0), Some(0));

    offsets.commit_offset(GROUP, TOPIC, 0, 5);
    f.put(&["A"]).await;
    assert_eq!(f.deferred().await.code, response_code::SUCCESS);
    assert_eq!(
        f.context
            .consumer_offset_manager
            .query_offset(GROUP, TOPIC, 0),
        Some(5),
        "the re-run of a held pull commits nothing"
    );
}

#[tokio::test]
async fn a_slave_does_not_commit_offsets() {
    let f = fixture(|_, store| store.broker_role = BrokerRole::Slave).await;
    let mut h = header(0, SUB | COMMIT);
    h.commit_offset = 4;
    f.pull(&h).await.expect("answered now");
    assert_eq!(
        f.context
            .consumer_offset_manager
            .query_offset(GROUP, TOPIC, 0),
        None
    );
}

// ---------------------------------------------------------------------------------------------
// Long polling

#[tokio::test]
async fn held_pull_is_answered_as_soon_as_a_message_is_dispatched() {
    let mut f = fixture(|_, _| {}).await;
    assert!(
        f.pull(&header(0, SUB | SUSPEND)).await.is_none(),
        "held, not answered"
    );
    assert_eq!(f.processor.hold_service().held_count(), 1);
    assert!(f.silent_for(Duration::from_millis(50)).await);

    f.put(&["A"]).await;
    let response = f.deferred().await;
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(tags(&response), ["A"]);
    let h = response_header(&response);
    assert_eq!((h.next_begin_offset, h.min_offset, h.max_offset), (1, 0, 1));
    assert_eq!(f.processor.hold_service().held_count(), 0);
    f.processor.hold_service().check_invariants();
}

#[tokio::test]
async fn held_pull_at_the_end_of_a_queue_wakes_with_only_the_new_messages() {
    let mut f = fixture(|_, _| {}).await;
    f.put(&["A", "B"]).await;
    assert!(f.pull(&header(2, SUB | SUSPEND)).await.is_none());
    f.put(&["C"]).await;
    let response = f.deferred().await;
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(tags(&response), ["C"]);
    assert_eq!(response_header(&response).next_begin_offset, 3);
}

#[tokio::test]
async fn held_pull_ignores_arrivals_its_tags_do_not_match() {
    let mut f = fixture(|_, _| {}).await;
    let mut h = header(0, SUB | SUSPEND);
    h.subscription = Some("A".into());
    assert!(f.pull(&h).await.is_none());

    f.put(&["B"]).await;
    assert!(f.silent_for(Duration::from_millis(100)).await);
    assert_eq!(f.processor.hold_service().held_count(), 1);

    f.put(&["A"]).await;
    let response = f.deferred().await;
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(tags(&response), ["A"], "B is filtered out on the re-run");
    assert_eq!(response_header(&response).next_begin_offset, 2);
}

#[tokio::test]
async fn held_pull_times_out_with_pull_not_found() {
    let mut f = fixture(|_, _| {}).await;
    let _hold_service = crate::remoting::transport::AbortOnDrop(tokio::spawn(
        f.processor.clone().run_hold_service(),
    ));
    let mut h = header(0, SUB | SUSPEND);
    h.suspend_timeout_millis = 200;
    let start = f.context.env.clock.instant();
    assert!(f.pull(&h).await.is_none());

    let response = f.deferred().await;
    let waited = f.context.env.clock.instant() - start;
    assert_eq!(response.code, response_code::PULL_NOT_FOUND);
    let h = response_header(&response);
    assert_eq!((h.next_begin_offset, h.min_offset, h.max_offset), (0, 0, 0));
    assert!(
        waited >= Duration::from_millis(200),
        "answered after {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(2),
        "answered at the deadline, not the 5 s check: {waited:?}"
    );
    assert_eq!(f.processor.hold_service().held_count(), 0);
}

#[tokio::test]
async fn with_long_polling_off_a_pull_is_held_for_the_short_polling_time() {
    let mut f = fixture(|broker, _| {
        broker.long_polling_enable = false;
        broker.short_polling_time_mills = 200;
    })
    .await;
    let _hold_service = crate::remoting::transport::AbortOnDrop(tokio::spawn(
        f.processor.clone().run_hold_service(),
    ));
    let start = f.context.env.clock.instant();
    assert!(f.pull(&header(0, SUB | SUSPEND)).await.is_none());
    let response = f.deferred().await;
    let waited = f.context.env.clock.instant() - start;
    assert_eq!(response.code, response_code::PULL_NOT_FOUND);
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
}

#[tokio::test]
async fn periodic_check_answers_a_held_pull_whose_arrival_was_not_reported() {
    let mut f = fixture(|_, _| {}).await;
    // A broker whose store reports no arrivals (as on a slave): only the check finds data.
    f.context
        .store
        .set_arrival_listener(Arc::new(|_, _, _, _, _| {}));
    assert!(f.pull(&header(0, SUB | SUSPEND)).await.is_none());
    f.put(&["A"]).await;
    assert!(f.silent_for(Duration::from_millis(50)).await);

    f.processor.check_hold_request();
    let response = f.deferred().await;
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(tags(&response), ["A"]);
}

#[tokio::test]
async fn held_pulls_of_a_closed_connection_are_dropped() {
    let f = fixture(|_, _| {}).await;
    assert!(f.pull(&header(0, SUB | SUSPEND)).await.is_none());
    f.peer.channel.close();
    f.put(&["A"]).await;
    assert_eq!(f.processor.hold_service().held_count(), 0);
    f.processor.check_hold_request();
    f.processor.hold_service().check_invariants();
}

#[tokio::test]
async fn many_held_pulls_on_one_queue_are_all_answered_with_their_own_opaque() {
    let f = fixture(|_, _| {}).await;
    let mut peers: Vec<TestPeer> = (0..3).map(|_| TestPeer::connect(&f.context)).collect();
    for (index, peer) in peers.iter().enumerate() {
        let mut request = pull_request(&header(0, SUB | SUSPEND));
        request.opaque = 100 + index as i32;
        let answer = f.processor.process(&peer.channel, request).await.unwrap();
        assert!(answer.is_none());
    }
    f.put(&["A"]).await;
    for (index, peer) in peers.iter_mut().enumerate() {
        let response = f
            .context
            .env
            .clock
            .timeout(PATIENCE, peer.next_command())
            .await
            .expect("answered in time")
            .expect("open");
        assert_eq!(response.opaque, 100 + index as i32);
        assert_eq!(response.code, response_code::SUCCESS);
    }
}

// ---------------------------------------------------------------------------------------------
// Refusals

#[tokio::test]
async fn unknown_topic_is_answered_topic_not_exist() {
    let f = fixture(|_, _| {}).await;
    let mut h = header(0, SUB);
    h.topic = "NoSuchTopic".into();
    let error = f.pull_err(&h).await;
    assert_eq!(error.code, response_code::TOPIC_NOT_EXIST);
    assert_eq!(
        error.remark,
        "topic[NoSuchTopic] not exist, apply first please! \nSee http://rocketmq.apache.org/docs/faq/ for further details."
    );
}

#[tokio::test]
async fn unreadable_topic_or_broker_is_answered_no_permission() {
    let f = fixture(|_, _| {}).await;
    let mut write_only = TopicConfig::new("WriteOnly", 4);
    write_only.perm = perm::WRITE;
    f.context
        .topic_config_manager
        .update_topic_config(write_only);
    let mut h = header(0, SUB);
    h.topic = "WriteOnly".into();
    let error = f.pull_err(&h).await;
    assert_eq!(error.code, response_code::NO_PERMISSION);
    assert_eq!(
        error.remark,
        "the topic[WriteOnly] pulling message is forbidden"
    );

    let f = fixture(|broker, _| broker.broker_permission = perm::WRITE).await;
    let error = f.pull_err(&header(0, SUB)).await;
    assert_eq!(error.code, response_code::NO_PERMISSION);
    assert_eq!(
        error.remark,
        "the broker[127.0.0.1] pulling message is forbidden"
    );
}

#[tokio::test]
async fn queue_id_out_of_range_is_a_system_error() {
    let f = fixture(|_, _| {}).await;
    for queue_id in [-1, 4] {
        let mut h = header(0, SUB);
        h.queue_id = queue_id;
        let error = f.pull_err(&h).await;
        assert_eq!(error.code, response_code::SYSTEM_ERROR);
        assert_eq!(
            error.remark,
            format!(
                "queueId[{queue_id}] is illegal, topic:[{TOPIC}] topicConfig.readQueueNums:[4] consumer:[/127.0.0.1:5555]"
            )
        );
    }
}

#[tokio::test]
async fn unknown_or_disabled_group_is_refused() {
    let f = fixture(|broker, _| broker.auto_create_subscription_group = false).await;
    let error = f.pull_err(&header(0, SUB)).await;
    assert_eq!(error.code, response_code::SUBSCRIPTION_GROUP_NOT_EXIST);
    assert!(
        error
            .remark
            .starts_with(&format!("subscription group [{GROUP}] does not exist, "))
    );

    let mut group = SubscriptionGroupConfig::new(GROUP);
    group.consume_enable = false;
    f.context
        .subscription_group_manager
        .update_subscription_group_config(group);
    let error = f.pull_err(&header(0, SUB)).await;
    assert_eq!(error.code, response_code::NO_PERMISSION);
    assert_eq!(
        error.remark,
        format!("subscription group no permission, {GROUP}")
    );
}

#[tokio::test]
async fn an_auto_created_group_can_pull_at_once() {
    let f = fixture(|_, _| {}).await;
    f.put(&["A"]).await;
    let response = f.pull(&header(0, SUB)).await.expect("answered now");
    assert_eq!(response.code, response_code::SUCCESS);
    assert!(
        f.context
            .subscription_group_manager
            .wrapper()
            .subscription_group_table
            .contains_key(GROUP)
    );
}

#[tokio::test]
async fn a_bad_header_is_answered_with_the_field_named_never_a_panic() {
    let f = fixture(|_, _| {}).await;
    let mut request = pull_request(&header(0, SUB));
    request.ext_fields.remove("queueOffset");
    let error = f
        .processor
        .process(&f.peer.channel, request)
        .await
        .expect_err("refused");
    assert_eq!(error.code, response_code::SYSTEM_ERROR);
    assert!(error.remark.contains("queueOffset"), "{}", error.remark);

    let mut request = pull_request(&header(0, SUB));
    request.ext_fields.insert("queueId", "zero");
    let error = f
        .processor
        .process(&f.peer.channel, request)
        .await
        .expect_err("refused");
    assert!(error.remark.contains("queueId"), "{}", error.remark);

    // Hostile numbers are answered, not panicked on.
    let mut h = header(i64::MAX, SUB | SUSPEND);
    h.max_msg_nums = i32::MIN;
    h.suspend_timeout_millis = i64::MAX;
    let response = f.pull(&h).await.expect("answered now");
    assert_eq!(response.code, response_code::PULL_OFFSET_MOVED);
    let mut h = header(0, SUB | SUSPEND);
    h.suspend_timeout_millis = i64::MIN;
    assert!(f.pull(&h).await.is_none(), "held, expiring at once");
}

/// A pull records how far behind the commit log's end its group reads — from the last unit
/// it examined, the one that filled the batch included (Java's `maxPhyOffsetPulling`) — and
/// `protectBroker` then disables a group over the threshold, whose next pull is refused.
#[tokio::test]
async fn a_pull_records_its_fall_behind_and_protect_broker_disables_a_slow_group() {
    let f = fixture(|broker, _| {
        broker.disable_consume_if_consumer_read_slowly = true;
        broker.consumer_fallbehind_threshold = 100;
    })
    .await;
    f.put(&["A", "B", "C"]).await;
    let store = &f.context.store;
    let end = store.commit_log().max_offset();
    let second = store
        .commit_log_offset_in_queue(TOPIC, 0, 1)
        .expect("the second message is in the queue") as u64;
    let fall_behind = || f.processor.disk_fall_behind().fall_behind(GROUP, TOPIC, 0);

    let mut one = header(0, SUB);
    one.max_msg_nums = 1;
    let response = f.pull(&one).await.expect("answered now");
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(fall_behind(), Some(end - second));
    assert!(
        end - second > 100,
        "two records are more than the threshold"
    );

    let disabled =
        crate::broker::protect::protect_broker(&f.context, f.processor.disk_fall_behind()).await;
    assert_eq!(disabled, vec![GROUP]);
    let error = f.pull_err(&header(1, SUB)).await;
    assert_eq!(error.code, response_code::NO_PERMISSION);
}

#[tokio::test]
async fn nothing_is_recorded_without_disk_fall_recorded_or_without_units_read() {
    let f = fixture(|_, store| store.disk_fall_recorded = false).await;
    f.put(&["A"]).await;
    let response = f.pull(&header(0, SUB)).await.expect("answered now");
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(
        f.processor.disk_fall_behind().fall_behind(GROUP, TOPIC, 0),
        None
    );

    let f = fixture(|_, _| {}).await;
    f.put(&["A"]).await;
    // At the end of the queue no unit is read: Java records nothing either.
    let response = f.pull(&header(1, SUB)).await.expect("answered now");
    assert_eq!(response.code, response_code::PULL_NOT_FOUND);
    assert_eq!(
        f.processor.disk_fall_behind().fall_behind(GROUP, TOPIC, 0),
        None
    );
    f.pull(&header(0, SUB)).await.expect("answered now");
    let last = f
        .context
        .store
        .commit_log_offset_in_queue(TOPIC, 0, 0)
        .expect("stored") as u64;
    assert_eq!(
        f.processor.disk_fall_behind().fall_behind(GROUP, TOPIC, 0),
        Some(f.context.store.commit_log().max_offset() - last)
    );
}
