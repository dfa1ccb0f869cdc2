//! Unit tests of the default producer's decisions that need no network: validation, the
//! prepared wire form, and the retry loop driven by scripted attempt outcomes.

use std::sync::Mutex;

use super::*;
use crate::client::compression::{ZLIB_COMPRESSED_SYS_FLAG, decompress};
use crate::clock::test_support::StepClock;
use crate::protocol::route::{BrokerData, QueueData};
use crate::remoting::transport::RemotingError;
use crate::rng::Rng;
use crate::store::message::{decode_batch, decode_properties, find_property};

// ---------------------------------------------------------------------------------------------
// Validation.

#[test]
fn group_check_refuses_blank_illegal_too_long_and_reserved_groups() {
    assert_eq!(check_group(""), Err(GroupNameError::Blank));
    assert_eq!(check_group("  "), Err(GroupNameError::Blank));
    assert!(matches!(
        check_group("pg/1"),
        Err(GroupNameError::IllegalCharacters(_))
    ));
    assert_eq!(check_group(&"g".repeat(256)), Err(GroupNameError::TooLong));
    assert_eq!(
        check_group(DEFAULT_PRODUCER_GROUP),
        Err(GroupNameError::Reserved)
    );
    assert_eq!(check_group(&"g".repeat(255)), Ok(()), "255 is the limit");
    assert_eq!(check_group("pg_1-%|x"), Ok(()));
}

#[test]
fn topic_check_refuses_illegal_names_the_template_and_system_topics() {
    assert!(matches!(
        check_topic(""),
        Err(MessageError::Topic(TopicNameError::Blank))
    ));
    assert!(matches!(
        check_topic("a topic"),
        Err(MessageError::Topic(TopicNameError::IllegalCharacters(_)))
    ));
    assert!(matches!(
        check_topic(&"t".repeat(128)),
        Err(MessageError::Topic(TopicNameError::TooLong))
    ));
    assert_eq!(
        check_topic("TBW102"),
        Err(MessageError::TopicNotAllowed("TBW102".into()))
    );
    assert!(matches!(
        check_topic("SCHEDULE_TOPIC_XXXX"),
        Err(MessageError::TopicNotAllowed(_))
    ));
    assert_eq!(check_topic("TopicA"), Ok(()));
    assert_eq!(check_topic("%RETRY%cg"), Ok(()));
}

#[test]
fn message_check_refuses_empty_and_oversized_bodies() {
    let max = 16;
    assert_eq!(
        check_message(&Message::new("TopicA", ""), max),
        Err(MessageError::EmptyBody)
    );
    assert_eq!(
        check_message(&Message::new("TopicA", vec![0u8; 17]), max),
        Err(MessageError::BodyTooLarge { size: 17, max })
    );
    assert_eq!(
        check_message(&Message::new("TopicA", vec![0u8; 16]), max),
        Ok(())
    );
    let error = ProducerError::from(MessageError::EmptyBody);
    assert_eq!(error.response_code(), Some(response_code::MESSAGE_ILLEGAL));
}

// ---------------------------------------------------------------------------------------------
// Wire form.

#[test]
fn a_body_at_the_threshold_is_compressed_and_one_below_is_not() {
    let compressor = BodyCompressor::default();
    let large = Message::new("TopicA", vec![b'x'; 4096]);
    let outgoing = Outgoing::single(&large, &compressor);
    assert_eq!(outgoing.sys_flag, ZLIB_COMPRESSED_SYS_FLAG);
    let OutgoingBody::Single(body) = &outgoing.body else {
        panic!("a single message has a single body");
    };
    assert!(body.len() < 4096);
    assert_eq!(
        &*decompress(body, outgoing.sys_flag).unwrap(),
        &large.body[..]
    );

    let small = Message::new("TopicA", vec![b'x'; 4095]);
    let outgoing = Outgoing::single(&small, &compressor);
    assert_eq!(outgoing.sys_flag, 0);
    assert!(matches!(&outgoing.body, OutgoingBody::Single(body) if *body == small.body));
}

#[test]
fn a_retry_topic_message_carries_its_reconsume_counters_in_the_header() {
    let message = Message::new("%RETRY%cg", "b")
        .with_property(property_key::RECONSUME_TIME, "3")
        .with_property(property_key::MAX_RECONSUME_TIMES, "16")
        .with_tags("t");
    let outgoing = Outgoing::single(&message, &BodyCompressor::default());
    assert_eq!(outgoing.reconsume_times, 3);
    assert_eq!(outgoing.max_reconsume_times, Some(16));
    let properties = decode_properties(&outgoing.properties);
    assert!(!properties.contains_key(property_key::RECONSUME_TIME));
    assert_eq!(
        properties.get(property_key::TAGS).map(String::as_str),
        Some("t")
    );
}

#[test]
fn a_prepared_transaction_message_is_flagged() {
    let message = Message::new("TopicA", "b").with_property(property_key::TRAN_MSG, "true");
    let outgoing = Outgoing::single(&message, &BodyCompressor::default());
    assert_eq!(outgoing.sys_flag, sys_flag::TRANSACTION_PREPARED_TYPE);
}

#[test]
fn a_batch_must_share_one_topic_and_have_no_delay_nor_retry_topic() {
    let max = MESSAGE_SIZE_MAX_DEFAULT;
    assert_eq!(
        Outgoing::batch(&[], max).unwrap_err(),
        MessageError::EmptyBatch
    );
    let mixed = [Message::new("A", "1"), Message::new("B", "2")];
    assert_eq!(
        Outgoing::batch(&mixed, max).unwrap_err(),
        MessageError::BatchTopicsDiffer
    );
    let delayed = [Message::new("A", "1").with_property(property_key::DELAY, "3")];
    assert_eq!(
        Outgoing::batch(&delayed, max).unwrap_err(),
        MessageError::BatchDelay
    );
    let retry = [Message::new("%RETRY%cg", "1")];
    assert_eq!(
        Outgoing::batch(&retry, max).unwrap_err(),
        MessageError::BatchRetryTopic
    );
    let empty_item = [Message::new("A", "1"), Message::new("A", "")];
    assert_eq!(
        Outgoing::batch(&empty_item, max).unwrap_err(),
        MessageError::EmptyBody
    );
    let too_large = [
        Message::new("A", vec![1u8; 40]),
        Message::new("A", vec![2u8; 40]),
    ];
    assert!(matches!(
        Outgoing::batch(&too_large, 64).unwrap_err(),
        MessageError::BodyTooLarge { max: 64, .. }
    ));
}

#[test]
fn a_batch_is_encoded_item_by_item_and_never_compressed() {
    let messages = [
        Message::new("A", vec![b'x'; 5000]).with_property(property_key::UNIQ_KEY, "U1"),
        Message::new("A", "two").with_property(property_key::UNIQ_KEY, "U2"),
    ];
    let outgoing = Outgoing::batch(&messages, MESSAGE_SIZE_MAX_DEFAULT).unwrap();
    assert_eq!(outgoing.sys_flag, 0);
    let OutgoingBody::Batch(items) = &outgoing.body else {
        panic!("a batch has batch items");
    };
    let decoded = decode_batch(&encode_batch(items).unwrap()).unwrap();
    assert_eq!(decoded.len(), 2);
    assert_eq!(decoded[0].body, messages[0].body);
    assert_eq!(
        find_property(&decoded[1].properties, "UNIQ_KEY"),
        Some("U2")
    );
}

// ---------------------------------------------------------------------------------------------
// Retry loop.

/// Publish info of `TopicA` with two queues on each of `broker-a` and `broker-b`.
fn two_broker_info() -> TopicPublishInfo {
    let mut route = TopicRouteData::default();
    for name in ["broker-a", "broker-b"] {
        route.queue_datas.push(QueueData {
            broker_name: name.into(),
            perm: 6,
            read_queue_nums: 2,
            topic_sys_flag: 0,
            write_queue_nums: 2,
        });
        let mut data = BrokerData::new("c", name);
        data.broker_addrs.insert(0, format!("{name}:10911"));
        route.broker_datas.push(data);
    }
    TopicPublishInfo::from_route("TopicA", &route).unwrap()
}

fn policy(retry_another_broker_when_not_store_ok: bool) -> RetryPolicy {
    RetryPolicy {
        clock: StepClock::at(1_700_000_000_000),
        rng: Rng::shared(7),
        fault_strategy: MqFaultStrategy::new(false),
        retry_times_when_send_failed: 2,
        retry_times_when_send_async_failed: 2,
        retry_another_broker_when_not_store_ok,
    }
}

fn result(queue: &MessageQueue, status: SendStatus) -> SendResult {
    SendResult {
        status,
        msg_id: Some("U".into()),
        offset_msg_id: "O".into(),
        queue: queue.clone(),
        queue_offset: 0,
        transaction_id: None,
        region_id: "DefaultRegion".into(),
        trace_on: true,
    }
}

fn connect_error(queue: &MessageQueue) -> ClientError {
    ClientError::Remoting(RemotingError::Connect {
        addr: format!("{}:10911", queue.broker_name),
        reason: "refused".into(),
    })
}

fn broker_error(queue: &MessageQueue, code: i32) -> ClientError {
    ClientError::Broker {
        addr: format!("{}:10911", queue.broker_name),
        code,
        remark: String::new(),
    }
}

/// Runs the retry loop with `outcome(attempt_index, queue)` deciding each attempt; returns
/// the loop's answer and the queues tried.
fn run(
    policy: &RetryPolicy,
    mode: SendMode,
    outcome: impl Fn(usize, &MessageQueue) -> Result<Option<SendResult>, ClientError>,
) -> (Result<Option<SendResult>, ProducerError>, Vec<MessageQueue>) {
    let info = two_broker_info();
    let tried = Mutex::new(Vec::new());
    let answer = futures::executor::block_on(policy.send(
        &info,
        mode,
        Duration::from_secs(3),
        policy.clock.instant(),
        |queue, _remaining| {
            let mut tried = tried.lock().unwrap();
            let answer = outcome(tried.len(), &queue);
            tried.push(queue);
            async move { answer }
        },
    ));
    (answer, tried.into_inner().unwrap())
}

#[test]
fn a_connect_failure_is_retried_on_the_other_broker() {
    let (answer, tried) = run(&policy(false), SendMode::Sync, |index, queue| match index {
        0 => Err(connect_error(queue)),
        _ => Ok(Some(result(queue, SendStatus::SendOk))),
    });
    let sent = answer.unwrap().unwrap();
    assert_eq!(tried.len(), 2);
    assert_ne!(tried[0].broker_name, tried[1].broker_name);
    assert_eq!(sent.queue, tried[1]);
}

#[test]
fn a_retriable_broker_code_is_retried_and_another_is_final() {
    let (answer, tried) = run(&policy(false), SendMode::Sync, |index, queue| match index {
        0 => Err(broker_error(queue, response_code::SYSTEM_ERROR)),
        _ => Ok(Some(result(queue, SendStatus::SendOk))),
    });
    assert!(answer.unwrap().is_some());
    assert_eq!(tried.len(), 2);

    let (answer, tried) = run(&policy(false), SendMode::Sync, |_, queue| {
        Err(broker_error(queue, response_code::MESSAGE_ILLEGAL))
    });
    let error = answer.unwrap_err();
    assert_eq!(tried.len(), 1, "MESSAGE_ILLEGAL is not retried");
    assert_eq!(error.response_code(), Some(response_code::MESSAGE_ILLEGAL));
}

#[test]
fn every_attempt_failing_reports_the_brokers_tried_and_the_connect_code() {
    let (answer, tried) = run(&policy(false), SendMode::Sync, |_, queue| {
        Err(connect_error(queue))
    });
    assert_eq!(tried.len(), 3, "1 + retry_times_when_send_failed attempts");
    let error = answer.unwrap_err();
    let ProducerError::SendFailed {
        attempts,
        brokers_sent,
        ..
    } = &error
    else {
        panic!("expected SendFailed, got {error:?}");
    };
    assert_eq!(*attempts, 3);
    assert!(
        brokers_sent.windows(2).all(|pair| pair[0] != pair[1]),
        "each retry moves to the other broker: {brokers_sent:?}"
    );
    assert_eq!(
        error.response_code(),
        Some(client_error_code::CONNECT_BROKER_EXCEPTION)
    );
}

#[test]
fn a_not_ok_status_is_returned_unless_retrying_another_broker_is_on() {
    let flush_timeout =
        |_: usize, queue: &MessageQueue| Ok(Some(result(queue, SendStatus::FlushDiskTimeout)));
    let (answer, tried) = run(&policy(false), SendMode::Sync, flush_timeout);
    assert_eq!(
        answer.unwrap().unwrap().status,
        SendStatus::FlushDiskTimeout
    );
    assert_eq!(tried.len(), 1);

    let (answer, tried) = run(&policy(true), SendMode::Sync, flush_timeout);
    assert_eq!(
        answer.unwrap().unwrap().status,
        SendStatus::FlushDiskTimeout
    );
    assert_eq!(tried.len(), 3, "retried until the attempts run out");

    let (answer, tried) = run(&policy(true), SendMode::Sync, |index, queue| match index {
        0 => Ok(Some(result(queue, SendStatus::SlaveNotAvailable))),
        _ => Ok(Some(result(queue, SendStatus::SendOk))),
    });
    assert_eq!(answer.unwrap().unwrap().status, SendStatus::SendOk);
    assert_eq!(tried.len(), 2);
}

#[test]
fn a_oneway_send_makes_one_attempt() {
    let (answer, tried) = run(&policy(false), SendMode::Oneway, |_, queue| {
        Err(connect_error(queue))
    });
    assert!(matches!(
        answer,
        Err(ProducerError::SendFailed { attempts: 1, .. })
    ));
    assert_eq!(tried.len(), 1);
}

#[test]
fn an_async_send_without_an_answer_is_retried_on_the_other_broker() {
    let timeout = |queue: &MessageQueue| {
        ClientError::Remoting(RemotingError::Timeout {
            addr: format!("{}:10911", queue.broker_name),
            timeout_ms: 3000,
        })
    };
    let (answer, tried) = run(
        &policy(false),
        SendMode::Async,
        |index, queue| match index {
            0 => Err(connect_error(queue)),
            1 => Err(timeout(queue)),
            _ => Ok(Some(result(queue, SendStatus::SendOk))),
        },
    );
    let sent = answer.unwrap().unwrap();
    assert_eq!(
        tried.len(),
        3,
        "1 + retry_times_when_send_async_failed attempts"
    );
    assert!(
        tried
            .windows(2)
            .all(|pair| pair[0].broker_name != pair[1].broker_name)
    );
    assert_eq!(sent.queue, tried[2]);

    let (answer, tried) = run(&policy(false), SendMode::Async, |_, queue| {
        Err(timeout(queue))
    });
    assert!(matches!(
        answer,
        Err(ProducerError::SendFailed { attempts: 3, .. })
    ));
    assert_eq!(tried.len(), 3);
}

#[test]
fn an_async_send_refused_by_the_broker_or_stored_not_ok_is_final() {
    let (answer, tried) = run(&policy(false), SendMode::Async, |_, queue| {
        Err(broker_error(queue, response_code::SYSTEM_ERROR))
    });
    assert_eq!(
        tried.len(),
        1,
        "a broker's answer is not retried asynchronously"
    );
    assert_eq!(
        answer.unwrap_err().response_code(),
        Some(response_code::SYSTEM_ERROR)
    );

    let (answer, tried) = run(&policy(true), SendMode::Async, |_, queue| {
        Ok(Some(result(queue, SendStatus::FlushDiskTimeout)))
    });
    assert_eq!(
        answer.unwrap().unwrap().status,
        SendStatus::FlushDiskTimeout
    );
    assert_eq!(
        tried.len(),
        1,
        "retry_another_broker_when_not_store_ok is for sync sends only"
    );
}

#[test]
fn a_spent_budget_stops_retrying_with_a_call_timeout() {
    let policy = policy(false);
    let clock = StepClock::at(0);
    let policy = RetryPolicy {
        clock: clock.clone(),
        ..policy
    };
    let (answer, tried) = run(&policy, SendMode::Sync, |_, queue| {
        clock.advance(Duration::from_secs(4));
        Err(connect_error(queue))
    });
    assert_eq!(tried.len(), 1);
    assert!(matches!(
        answer,
        Err(ProducerError::CallTimeout {
            operation: "sendDefaultImpl"
        })
    ));
}

#[test]
fn the_publish_table_keeps_only_topics_it_was_asked_for() {
    let table = PublishInfoTable::default();
    let route = two_broker_info().topic_route_data().unwrap().clone();
    table.update_topic_publish_info("TopicA", &route);
    assert!(
        table.get("TopicA").is_none(),
        "an unasked topic is not cached"
    );
    table.insert_if_absent("TopicA");
    assert!(table.is_publish_topic_need_update("TopicA"));
    table.update_topic_publish_info("TopicA", &route);
    assert_eq!(table.get("TopicA").unwrap().message_queue_list().len(), 4);
    assert!(!table.is_publish_topic_need_update("TopicA"));
    assert_eq!(table.publish_topics(), vec!["TopicA".to_string()]);
}
