use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;

use super::*;
use crate::clock::test_support;

fn queue(queue_id: i32) -> MessageQueue {
    MessageQueue {
        topic: "TopicTest".to_owned(),
        broker_name: "broker-a".to_owned(),
        queue_id,
    }
}

fn queues(ids: impl IntoIterator<Item = i32>) -> BTreeSet<MessageQueue> {
    ids.into_iter().map(queue).collect()
}

fn message(queue_id: i32, queue_offset: i64, body_size: usize) -> StoredMessage {
    let host = SocketAddr::from((Ipv4Addr::LOCALHOST, 10911));
    StoredMessage {
        store_size: 0,
        body_crc: 0,
        queue_id,
        flag: 0,
        queue_offset,
        commit_log_offset: queue_offset * 100,
        sys_flag: 0,
        born_timestamp: 0,
        born_host: host,
        store_timestamp: 0,
        store_host: host,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: Some(Bytes::from(vec![b'x'; body_size])),
        topic: "TopicTest".to_owned(),
        properties: String::new(),
        msg_id: String::new(),
    }
}

fn found(queue_id: i32, offsets: std::ops::Range<i64>, body_size: usize) -> PullResult {
    PullResult {
        status: PullStatus::Found,
        next_begin_offset: offsets.end,
        min_offset: 0,
        max_offset: offsets.end,
        suggest_which_broker_id: 0,
        messages: offsets
            .map(|offset| message(queue_id, offset, body_size))
            .collect(),
    }
}

fn empty(status: PullStatus, next_begin_offset: i64) -> PullResult {
    PullResult {
        status,
        next_begin_offset,
        min_offset: 0,
        max_offset: next_begin_offset,
        suggest_which_broker_id: 0,
        messages: Vec::new(),
    }
}

fn thresholds() -> BufferThresholds {
    LitePullConsumerConfig::default().thresholds()
}

fn offsets(messages: &[StoredMessage]) -> Vec<i64> {
    messages.iter().map(|m| m.queue_offset).collect()
}

/// Assigns queues `ids` and gives each the start offset 0; returns the task generations.
fn assigned(ids: std::ops::Range<i32>) -> (AssignedQueues, BTreeMap<MessageQueue, u64>) {
    let now = test_support::now();
    let mut state = AssignedQueues::new();
    let change = state.assign(&queues(ids), now);
    assert!(change.removed.is_empty());
    let tasks: BTreeMap<MessageQueue, u64> = change.started.into_iter().collect();
    for (queue, task) in &tasks {
        assert!(matches!(
            state.pull_gate(queue, *task, &thresholds(), now),
            PullGate::Pull { offset: None }
        ));
        state.set_start_offset(queue, *task, 0);
    }
    (state, tasks)
}

#[test]
fn defaults_are_javas() {
    let config = LitePullConsumerConfig::new("cg", "127.0.0.1:9876");
    assert_eq!(config.pull_batch_size, 10);
    assert_eq!(config.pull_threshold_for_all, 10_000);
    assert_eq!(config.pull_threshold_for_queue, 1_000);
    assert_eq!(config.pull_threshold_size_for_queue, 100);
    assert_eq!(config.consume_max_span, 2_000);
    assert!(config.auto_commit);
    assert_eq!(config.auto_commit_interval, Duration::from_secs(5));
    assert_eq!(config.poll_timeout, Duration::from_secs(5));
    assert_eq!(config.broker_suspend_max_time, Duration::from_secs(20));
    assert_eq!(
        config.consumer_timeout_when_suspend,
        Duration::from_secs(30)
    );
    assert_eq!(config.allocate_strategy.name(), "AVG");
    assert!(config.check().is_ok());
}

#[test]
fn start_refuses_javas_bad_configs() {
    let base = LitePullConsumerConfig::new("cg", "127.0.0.1:9876");
    let mut reserved = base.clone();
    reserved.group = DEFAULT_CONSUMER_GROUP.to_owned();
    assert!(matches!(
        reserved.check(),
        Err(LitePullConsumerError::ReservedGroup)
    ));
    let mut broadcasting = base.clone();
    broadcasting.message_model = MessageModel::Broadcasting;
    assert!(broadcasting.check().is_ok());
    let mut short_wait = base.clone();
    short_wait.consumer_timeout_when_suspend = Duration::from_secs(10);
    assert!(matches!(
        short_wait.check(),
        Err(LitePullConsumerError::InvalidConfig(_))
    ));
    let mut eager = base.clone();
    eager.auto_commit_interval = Duration::from_millis(999);
    assert!(matches!(
        eager.check(),
        Err(LitePullConsumerError::InvalidConfig(_))
    ));
    let mut no_batch = base;
    no_batch.pull_batch_size = 0;
    assert!(matches!(
        no_batch.check(),
        Err(LitePullConsumerError::InvalidConfig(_))
    ));
}

#[test]
fn seek_offsets_must_lie_between_min_and_max_inclusive() {
    assert!(check_seek_offset(10, 10, 20).is_ok());
    assert!(
        check_seek_offset(20, 10, 20).is_ok(),
        "the end is a valid seek"
    );
    for offset in [9, 21, -1] {
        let error = check_seek_offset(offset, 10, 20).unwrap_err();
        assert!(matches!(
            error,
            LitePullConsumerError::SeekOffsetIllegal {
                min: 10,
                max: 20,
                ..
            }
        ));
        assert_eq!(
            error.to_string(),
            format!(
                "Seek offset illegal, seek offset = {offset}, min offset = 10, max offset = 20"
            )
        );
    }
}

#[test]
fn polls_hand_out_batches_in_pull_order_and_advance_consume_offsets() {
    let now = test_support::now();
    let (mut state, tasks) = assigned(0..2);
    let (q0, q1) = (queue(0), queue(1));
    assert!(state.on_pulled(&q0, tasks[&q0], found(0, 0..10, 1)));
    assert!(state.on_pulled(&q1, tasks[&q1], found(1, 0..5, 1)));
    assert!(state.on_pulled(&q0, tasks[&q0], found(0, 10..20, 1)));
    assert_eq!(state.pull_offset(&q0), Some(20));
    assert_eq!(state.buffered_batch_count(), 3);
    assert_eq!(state.consume_offset(&q0), None);

    let (first_queue, first) = state.take(now).unwrap();
    assert_eq!(
        (first_queue, offsets(&first)),
        (q0.clone(), (0..10).collect())
    );
    // The next batch of queue 0 is still buffered: consume up to its first offset.
    assert_eq!(state.consume_offset(&q0), Some(10));
    assert_eq!(state.buffered_message_count(&q0), 10);

    let (second_queue, second) = state.take(now).unwrap();
    assert_eq!(
        (second_queue, offsets(&second)),
        (q1.clone(), (0..5).collect())
    );
    assert_eq!(state.consume_offset(&q1), Some(5));

    let (_, third) = state.take(now).unwrap();
    assert_eq!(offsets(&third), (10..20).collect::<Vec<_>>());
    assert_eq!(state.consume_offset(&q0), Some(20));
    assert!(state.take(now).is_none());
    assert_eq!(state.committable(), vec![(q0, 20), (q1, 5)]);
}

#[test]
fn the_buffer_holds_pulls_back_over_the_total_and_per_queue_thresholds() {
    let now = test_support::now();
    let (mut state, tasks) = assigned(0..2);
    let (q0, q1) = (queue(0), queue(1));
    let limits = BufferThresholds {
        pull_batch_size: 10,
        pull_threshold_for_all: 20,
        queue: FlowControlThresholds {
            pull_threshold_for_queue: 25,
            pull_threshold_size_for_queue: 1,
            consume_concurrently_max_span: 1_000,
        },
    };
    state.on_pulled(&q0, tasks[&q0], found(0, 0..10, 1));
    state.on_pulled(&q0, tasks[&q0], found(0, 10..20, 1));
    // Two batches of ten are not over twenty.
    assert!(matches!(
        state.pull_gate(&q1, tasks[&q1], &limits, now),
        PullGate::Pull { offset: Some(0) }
    ));
    state.on_pulled(&q0, tasks[&q0], found(0, 20..30, 1));
    // Three are, for every queue.
    for queue in [&q0, &q1] {
        assert_eq!(
            match state.pull_gate(queue, tasks[queue], &limits, now) {
                PullGate::FlowControl(flow) => Some(flow),
                _ => None,
            },
            Some(BufferFlowControl::ConsumeRequests { count: 3 })
        );
    }
    let wide = BufferThresholds {
        pull_threshold_for_all: 10_000,
        ..limits
    };
    // Queue 0 buffers 30 messages, over its own 25; queue 1 is free.
    assert!(matches!(
        state.pull_gate(&q0, tasks[&q0], &wide, now),
        PullGate::FlowControl(BufferFlowControl::Queue(FlowControl::CachedMessageCount {
            count: 30
        }))
    ));
    assert!(matches!(
        state.pull_gate(&q1, tasks[&q1], &wide, now),
        PullGate::Pull { .. }
    ));
    // A poll frees room.
    state.take(now);
    assert!(matches!(
        state.pull_gate(&q0, tasks[&q0], &wide, now),
        PullGate::Pull { offset: Some(30) }
    ));
    // Two MiB of bodies are over one.
    state.on_pulled(&q1, tasks[&q1], found(1, 0..2, 1024 * 1024 + 1));
    assert!(matches!(
        state.pull_gate(&q1, tasks[&q1], &wide, now),
        PullGate::FlowControl(BufferFlowControl::Queue(FlowControl::CachedMessageSize {
            size_mib: 2
        }))
    ));
}

#[test]
fn the_buffer_holds_pulls_back_over_the_offset_span() {
    let now = test_support::now();
    let (mut state, tasks) = assigned(0..1);
    let q0 = queue(0);
    let mut result = found(0, 0..1, 1);
    result.messages.push(message(0, 2_500, 1));
    result.next_begin_offset = 2_501;
    state.on_pulled(&q0, tasks[&q0], result);
    assert!(matches!(
        state.pull_gate(&q0, tasks[&q0], &thresholds(), now),
        PullGate::FlowControl(BufferFlowControl::Queue(FlowControl::MaxSpan {
            span: 2_500
        }))
    ));
}

#[test]
fn paused_queues_wait_and_keep_what_they_buffered() {
    let now = test_support::now();
    let (mut state, tasks) = assigned(0..2);
    let (q0, q1) = (queue(0), queue(1));
    state.on_pulled(&q0, tasks[&q0], found(0, 0..10, 1));
    state.pause(&[q0.clone(), queue(7)]);
    assert!(state.is_paused(&q0));
    assert!(!state.is_paused(&queue(7)), "unassigned queues are ignored");
    assert!(matches!(
        state.pull_gate(&q0, tasks[&q0], &thresholds(), now),
        PullGate::Paused
    ));
    assert!(matches!(
        state.pull_gate(&q1, tasks[&q1], &thresholds(), now),
        PullGate::Pull { .. }
    ));
    assert_eq!(offsets(&state.take(now).unwrap().1).len(), 10);
    state.resume(std::slice::from_ref(&q0));
    assert!(matches!(
        state.pull_gate(&q0, tasks[&q0], &thresholds(), now),
        PullGate::Pull { offset: Some(10) }
    ));
}

#[test]
fn a_seek_discards_the_buffer_restarts_the_task_and_sets_the_consume_offset() {
    let now = test_support::now();
    let (mut state, tasks) = assigned(0..2);
    let (q0, q1) = (queue(0), queue(1));
    state.on_pulled(&q0, tasks[&q0], found(0, 0..10, 1));
    state.on_pulled(&q1, tasks[&q1], found(1, 0..10, 1));
    state.on_pulled(&q0, tasks[&q0], found(0, 10..20, 1));
    state.take(now);
    assert_eq!(state.consume_offset(&q0), Some(10));

    let task = state.seek(&q0, 3, now).unwrap();
    assert_ne!(task, tasks[&q0]);
    assert_eq!(state.consume_offset(&q0), Some(3));
    assert_eq!(state.buffered_message_count(&q0), 0);
    assert_eq!(state.buffered_batch_count(), 1, "queue 1's batch stays");
    // The old task stops; an answer it was still waiting for is dropped.
    assert!(matches!(
        state.pull_gate(&q0, tasks[&q0], &thresholds(), now),
        PullGate::Stop
    ));
    assert!(!state.on_pulled(&q0, tasks[&q0], found(0, 20..30, 1)));
    // The new one pulls from the seek offset, also again after a failed pull.
    for _ in 0..2 {
        assert!(matches!(
            state.pull_gate(&q0, task, &thresholds(), now),
            PullGate::Pull { offset: Some(3) }
        ));
    }
    assert!(state.on_pulled(&q0, task, found(0, 3..13, 1)));
    let (_, batch) = state.take(now).unwrap();
    assert_eq!(batch[0].queue_id, 1);
    let (_, batch) = state.take(now).unwrap();
    assert_eq!(offsets(&batch), (3..13).collect::<Vec<_>>());
    assert_eq!(state.consume_offset(&q0), Some(13));
    assert!(state.seek(&queue(9), 0, now).is_none());
}

#[test]
fn empty_answers_move_the_pull_offset_and_consume_offset_when_nothing_waits() {
    let now = test_support::now();
    let (mut state, tasks) = assigned(0..1);
    let q0 = queue(0);
    assert!(!state.on_pulled(&q0, tasks[&q0], empty(PullStatus::NoNewMsg, 0)));
    assert_eq!(state.consume_offset(&q0), Some(0));
    // Filtered-out messages count as consumed once nothing is buffered.
    state.on_pulled(&q0, tasks[&q0], found(0, 0..4, 1));
    assert!(!state.on_pulled(&q0, tasks[&q0], empty(PullStatus::NoMatchedMsg, 9)));
    assert_eq!(state.pull_offset(&q0), Some(9));
    assert_eq!(state.consume_offset(&q0), Some(0), "a batch still waits");
    state.take(now);
    assert_eq!(state.consume_offset(&q0), Some(4));
    assert!(!state.on_pulled(&q0, tasks[&q0], empty(PullStatus::NoNewMsg, 9)));
    assert_eq!(state.consume_offset(&q0), Some(9));
    // OFFSET_ILLEGAL: the broker's correction becomes the next pull offset.
    state.on_pulled(&q0, tasks[&q0], empty(PullStatus::OffsetIllegal, 42));
    assert!(matches!(
        state.pull_gate(&q0, tasks[&q0], &thresholds(), now),
        PullGate::Pull { offset: Some(42) }
    ));
    assert_eq!(state.committable(), vec![(q0, 42)]);
}

#[test]
fn reassignment_drops_removed_queues_and_their_batches() {
    let now = test_support::now();
    let (mut state, tasks) = assigned(0..3);
    let (q0, q1) = (queue(0), queue(1));
    state.on_pulled(&q0, tasks[&q0], found(0, 0..10, 1));
    state.on_pulled(&q1, tasks[&q1], found(1, 0..10, 1));
    let old = state.process_queue(&q1).unwrap();

    let change = state.assign(&queues([0, 3]), now);
    assert_eq!(change.removed, vec![queue(1), queue(2)]);
    assert_eq!(
        change
            .started
            .iter()
            .map(|(queue, _)| queue.clone())
            .collect::<Vec<_>>(),
        vec![queue(3)]
    );
    assert!(old.state().dropped());
    assert_eq!(state.buffered_batch_count(), 1);
    assert!(matches!(
        state.pull_gate(&q1, tasks[&q1], &thresholds(), now),
        PullGate::Stop
    ));
    assert_eq!(state.take(now).unwrap().0, q0);
    assert_eq!(state.committable(), vec![(q0, 10)]);
}

#[test]
fn a_topic_update_follows_the_rebalance_table_and_its_start_offsets() {
    let now = test_support::now();
    let mut state = AssignedQueues::new();
    let other = MessageQueue {
        topic: "Other".to_owned(),
        ..queue(0)
    };
    state.assign(&BTreeSet::from([other.clone()]), now);
    let table: BTreeMap<MessageQueue, Arc<ProcessQueueHandle>> = [queue(0), queue(1)]
        .into_iter()
        .map(|queue| (queue, Arc::new(ProcessQueueHandle::new(now))))
        .collect();
    let starts = BTreeMap::from([(queue(0), 7), (queue(1), 9)]);
    let change = state.update_topic("TopicTest", &table, &starts);
    assert_eq!(change.started.len(), 2);
    assert!(change.removed.is_empty());
    assert!(state.contains(&other), "other topics are left alone");
    assert_eq!(state.pull_offset(&queue(0)), Some(7));
    // Unchanged table: nothing to do.
    assert_eq!(
        state.update_topic("TopicTest", &table, &BTreeMap::new()),
        AssignmentChange::default()
    );
    // A re-created process queue restarts the queue.
    let mut recreated = table.clone();
    recreated.insert(queue(1), Arc::new(ProcessQueueHandle::new(now)));
    recreated.remove(&queue(0));
    let change = state.update_topic("TopicTest", &recreated, &BTreeMap::from([(queue(1), 11)]));
    assert_eq!(change.removed, vec![queue(0)]);
    assert_eq!(change.started.len(), 1);
    assert!(table[&queue(0)].state().dropped());
    assert_eq!(state.pull_offset(&queue(1)), Some(11));
}

#[test]
fn dropped_queues_are_neither_polled_nor_committed() {
    let now = test_support::now();
    let (mut state, tasks) = assigned(0..2);
    let (q0, q1) = (queue(0), queue(1));
    state.on_pulled(&q0, tasks[&q0], found(0, 0..10, 1));
    state.on_pulled(&q1, tasks[&q1], found(1, 0..10, 1));
    state.take(now);
    state.process_queue(&q0).unwrap().state().set_dropped(true);
    assert!(
        state.committable().is_empty(),
        "queue 0 is dropped, queue 1 not yet polled"
    );
    state.on_pulled(&q0, tasks[&q0], found(0, 10..20, 1));
    assert_eq!(state.take(now).unwrap().0, q1);
    assert!(state.take(now).is_none());
    assert_eq!(state.committable(), vec![(q1, 10)]);
    assert_eq!(state.clear().len(), 2);
    assert_eq!(state.buffered_batch_count(), 0);
}
