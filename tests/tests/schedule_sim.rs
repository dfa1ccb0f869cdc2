//! Delayed delivery under madsim, measured in simulated time: a message sent with a delay
//! level, and a consumer's send-back (a retry), reappear in their topics when their level's
//! delay has passed and not before, and the schedule offsets reach `delayOffset.json`.
#![cfg(madsim)]

use std::sync::Arc;
use std::time::Duration;

use ferrocket_engine::remoting::headers::ConsumerSendMsgBackRequestHeader;
use ferrocket_engine::remoting::transport::RemotingClient;
use ferrocket_engine::remoting::{RemotingCommand, request_code, response_code};
use ferrocket_engine::store::config::FlushDiskType;
use ferrocket_engine::store::message::{StoredMessage, property_key};
use ferrocket_engine::store::metadata::DelayOffsetTable;
use ferrocket_sim::SimDisk;
use ferrocket_tests::sim_broker::{
    BROKER, CONSUMER_GROUP, bodies, client, client_node, pull_all, send_eventually, send_request,
    start_broker, start_namesrv,
};
use madsim::runtime::Handle;
use madsim::time::{Instant, sleep};

/// How often the client looks for the delivered message.
const POLL: Duration = Duration::from_millis(50);

/// Pulls `topic` queue 0 every [`POLL`] until it holds a message; returns the messages and
/// when they were first seen.
async fn wait_for_messages(client: &RemotingClient, topic: &str) -> (Vec<StoredMessage>, Instant) {
    for _ in 0..1_000 {
        let messages = pull_all(client, topic, 0).await;
        if !messages.is_empty() {
            return (messages, Instant::now());
        }
        sleep(POLL).await;
    }
    panic!("nothing ever arrived in {topic}");
}

/// The schedule offsets the broker persisted, if any.
fn persisted_offsets(disk: &Arc<SimDisk>) -> Option<DelayOffsetTable> {
    let bytes = disk
        .shared()
        .read_file("store/config/delayOffset.json")
        .expect("the simulated disk reads")?;
    Some(serde_json::from_slice(&bytes).expect("delayOffset.json is JSON"))
}

#[madsim::test]
async fn a_message_sent_with_delay_level_2_is_pullable_about_five_seconds_later_and_not_at_four() {
    const TOPIC: &str = "DelayTopic";
    let handle = Handle::current();
    start_namesrv(&handle);
    let (_broker, disk) = start_broker(&handle, FlushDiskType::AsyncFlush);
    let client_node = client_node(&handle);
    client_node
        .spawn(async move {
            let client = client();
            send_eventually(
                &client,
                send_request(TOPIC, "TAGS\u{1}T\u{2}DELAY\u{1}2", "later"),
            )
            .await;
            let sent_at = Instant::now();

            sleep(Duration::from_secs(4)).await;
            assert!(
                pull_all(&client, TOPIC, 0).await.is_empty(),
                "delivered before its 5 s"
            );

            let (messages, seen_at) = wait_for_messages(&client, TOPIC).await;
            let delay = seen_at.duration_since(sent_at);
            assert!(
                delay >= Duration::from_millis(4_950) && delay <= Duration::from_millis(5_200),
                "delivered {delay:?} after the send was acknowledged; level 2 is 5 s"
            );
            assert_eq!(bodies(&messages), ["later"]);
            let message = &messages[0];
            assert_eq!(message.topic, TOPIC);
            assert_eq!(message.queue_id, 0);
            assert_eq!(message.property(property_key::DELAY), None);
            assert_eq!(message.property(property_key::REAL_TOPIC), Some(TOPIC));
            assert_eq!(message.property(property_key::TAGS), Some("T"));

            // The offsets reach delayOffset.json within a persist period (10 s).
            sleep(Duration::from_secs(11)).await;
            let offsets = persisted_offsets(&disk).expect("the schedule offsets were persisted");
            assert_eq!(offsets.offset(2), 1);
        })
        .await
        .unwrap();
}

#[madsim::test]
async fn a_consumer_send_back_reappears_in_the_retry_topic_after_level_3s_ten_seconds() {
    const TOPIC: &str = "RetrySourceTopic";
    let retry_topic = format!("%RETRY%{CONSUMER_GROUP}");
    let handle = Handle::current();
    start_namesrv(&handle);
    start_broker(&handle, FlushDiskType::AsyncFlush);
    let client_node = client_node(&handle);
    client_node
        .spawn(async move {
            let client = client();
            send_eventually(&client, send_request(TOPIC, "TAGS\u{1}T", "try-me")).await;
            let original = pull_all(&client, TOPIC, 0)
                .await
                .pop()
                .expect("the message is pullable at once");

            // The consumer failed to consume it: CONSUMER_SEND_MSG_BACK (36).
            let header = ConsumerSendMsgBackRequestHeader {
                offset: original.commit_log_offset,
                group: CONSUMER_GROUP.into(),
                delay_level: 0,
                origin_msg_id: Some(original.msg_id.clone()),
                origin_topic: Some(TOPIC.into()),
                unit_mode: None,
                max_reconsume_times: None,
                broker_name: None,
            };
            let request =
                RemotingCommand::request_with_header(request_code::CONSUMER_SEND_MSG_BACK, &header);
            assert_eq!(request.code, 36);
            let response = client
                .invoke(BROKER, request, Duration::from_secs(3))
                .await
                .expect("the broker answers the send-back");
            assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
            let sent_back_at = Instant::now();

            sleep(Duration::from_secs(9)).await;
            assert!(
                pull_all(&client, &retry_topic, 0).await.is_empty(),
                "retried before level 3's 10 s"
            );

            let (messages, seen_at) = wait_for_messages(&client, &retry_topic).await;
            let delay = seen_at.duration_since(sent_back_at);
            assert!(
                delay >= Duration::from_millis(9_950) && delay <= Duration::from_millis(10_200),
                "retried {delay:?} after the send-back; level 3 is 10 s"
            );
            assert_eq!(bodies(&messages), ["try-me"]);
            let retry = &messages[0];
            assert_eq!(retry.topic, retry_topic);
            assert_eq!(retry.reconsume_times, 1);
            assert_eq!(retry.property(property_key::RETRY_TOPIC), Some(TOPIC));
            assert_eq!(
                retry.property(property_key::ORIGIN_MESSAGE_ID),
                Some(original.msg_id.as_str())
            );
            assert_eq!(retry.property(property_key::DELAY), None);
        })
        .await
        .unwrap();
}
