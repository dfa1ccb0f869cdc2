use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::clock::test_support;

fn message(queue_offset: i64, body_size: usize) -> StoredMessage {
    let host = SocketAddr::from((Ipv4Addr::LOCALHOST, 10911));
    StoredMessage {
        store_size: 0,
        body_crc: 0,
        queue_id: 0,
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

/// Messages at `offsets`, each with a 10-byte body.
fn messages(offsets: impl IntoIterator<Item = i64>) -> Vec<StoredMessage> {
    offsets
        .into_iter()
        .map(|offset| message(offset, 10))
        .collect()
}

fn offsets(msgs: &[StoredMessage]) -> Vec<i64> {
    msgs.iter().map(|msg| msg.queue_offset).collect()
}

#[test]
fn put_counts_messages_and_body_bytes_once_per_offset() {
    let now = test_support::now();
    let mut pq = ProcessQueue::new(now);
    assert_eq!((pq.msg_count(), pq.msg_size(), pq.max_span()), (0, 0, 0));

    pq.put_messages(&messages(100..110));
    assert_eq!((pq.msg_count(), pq.msg_size()), (10, 100));
    assert_eq!(pq.queue_offset_max(), 109);
    assert_eq!(pq.max_span(), 9);
    assert_eq!(pq.cached_offset_range(), Some((100, 109)));

    // Pulling an offset again replaces the cached message without counting it twice.
    pq.put_messages(&[message(105, 30)]);
    assert_eq!((pq.msg_count(), pq.msg_size()), (10, 120));
    assert_eq!(pq.queue_offset_max(), 109);
    pq.check_invariants();
}

#[test]
fn put_asks_for_a_consume_task_only_when_none_runs() {
    let now = test_support::now();
    let mut pq = ProcessQueue::new(now);
    assert!(!pq.put_messages(&[]), "nothing cached, nothing to dispatch");
    assert!(pq.put_messages(&messages(0..2)));
    assert!(!pq.put_messages(&messages(2..4)), "a task already runs");
    assert!(pq.is_consuming());
    // The orderly task drains the queue; finding it empty ends the task.
    assert_eq!(offsets(&pq.take_messages(10, now)), [0, 1, 2, 3]);
    assert!(pq.take_messages(10, now).is_empty());
    assert!(!pq.is_consuming());
    assert!(pq.put_messages(&messages(4..5)));
}

#[test]
fn put_records_how_far_the_broker_is_ahead_of_the_last_message() {
    let now = test_support::now();
    let mut pq = ProcessQueue::new(now);
    let mut batch = messages(10..12);
    batch[1].properties = "MAX_OFFSET\u{1}50\u{2}".to_owned();
    pq.put_messages(&batch);
    assert_eq!(pq.msg_acc_count(), 39);
    // A non-positive distance leaves the last value.
    batch[1].properties = "MAX_OFFSET\u{1}11\u{2}".to_owned();
    pq.put_messages(&batch);
    assert_eq!(pq.msg_acc_count(), 39);
}

#[test]
fn remove_commits_only_up_to_the_smallest_outstanding_offset() {
    let now = test_support::now();
    let mut pq = ProcessQueue::new(now);
    pq.put_messages(&messages(100..105));

    // 101 and 103 finish first: 100 is still in flight, so the commit stays at 100.
    assert_eq!(pq.remove_messages(&[101, 103], now), Some(100));
    assert_eq!((pq.msg_count(), pq.msg_size()), (3, 30));
    // 100 finishes: the next outstanding offset is 102.
    assert_eq!(pq.remove_messages(&[100], now), Some(102));
    // Offsets not cached are ignored.
    assert_eq!(pq.remove_messages(&[100, 999], now), Some(102));
    // The rest finish: everything up to the last pulled offset is consumed.
    assert_eq!(pq.remove_messages(&[104, 102], now), Some(105));
    assert_eq!((pq.msg_count(), pq.msg_size(), pq.max_span()), (0, 0, 0));
    // Already empty: nothing to commit (Java's -1).
    assert_eq!(pq.remove_messages(&[104], now), None);
    pq.check_invariants();
}

#[test]
fn remove_after_empty_commits_past_the_last_newly_cached_offset() {
    let now = test_support::now();
    let mut pq = ProcessQueue::new(now);
    pq.put_messages(&messages([7, 3]));
    // Java's queueOffsetMax is the last *new* message put, not the largest offset.
    assert_eq!(pq.queue_offset_max(), 3);
    assert_eq!(pq.remove_messages(&[3, 7], now), Some(4));
}

#[test]
fn flow_control_checks_count_then_size_then_span_for_concurrent_consumers() {
    let now = test_support::now();
    let limits = FlowControlThresholds {
        pull_threshold_for_queue: 3,
        pull_threshold_size_for_queue: 1,
        consume_concurrently_max_span: 5,
    };
    let mut pq = ProcessQueue::new(now);
    pq.put_messages(&messages([0, 6]));
    assert_eq!(
        pq.flow_control(&limits, false),
        Some(FlowControl::MaxSpan { span: 6 })
    );
    assert_eq!(
        pq.flow_control(&limits, true),
        None,
        "orderly ignores the span"
    );

    pq.put_messages(&[message(1, 2 * 1024 * 1024)]);
    assert_eq!(
        pq.flow_control(&limits, true),
        Some(FlowControl::CachedMessageSize { size_mib: 2 })
    );

    pq.put_messages(&messages([2]));
    assert_eq!(
        pq.flow_control(&limits, true),
        Some(FlowControl::CachedMessageCount { count: 4 })
    );
}

#[test]
fn flow_control_thresholds_default_to_java() {
    let limits = FlowControlThresholds::default();
    assert_eq!(limits.pull_threshold_for_queue, 1000);
    assert_eq!(limits.pull_threshold_size_for_queue, 100);
    assert_eq!(limits.consume_concurrently_max_span, 2000);
    let now = test_support::now();
    let mut pq = ProcessQueue::new(now);
    pq.put_messages(&messages(0..1000));
    assert_eq!(
        pq.flow_control(&limits, false),
        None,
        "1000 is not above 1000"
    );
    pq.put_messages(&messages([1000]));
    assert_eq!(
        pq.flow_control(&limits, false),
        Some(FlowControl::CachedMessageCount { count: 1001 })
    );
}

#[test]
fn orderly_take_then_commit_advances_past_the_taken_batch() {
    let now = test_support::now();
    let mut pq = ProcessQueue::new(now);
    pq.put_messages(&messages(0..5));
    assert_eq!(pq.commit(), None, "nothing taken yet");

    let taken = pq.take_messages(2, now);
    assert_eq!(offsets(&taken), [0, 1]);
    // Taken messages still count until they are committed, but no longer span.
    assert_eq!((pq.msg_count(), pq.msg_size()), (5, 50));
    assert_eq!(pq.consuming_offset_range(), Some((0, 1)));
    assert_eq!(pq.cached_offset_range(), Some((2, 4)));
    pq.check_invariants();

    assert_eq!(pq.commit(), Some(2));
    assert_eq!((pq.msg_count(), pq.msg_size()), (3, 30));
    assert_eq!(pq.consuming_count(), 0);
    assert_eq!(pq.commit(), None);
    pq.check_invariants();
}

#[test]
fn orderly_rollback_returns_every_taken_message() {
    let now = test_support::now();
    let mut pq = ProcessQueue::new(now);
    pq.put_messages(&messages(0..4));
    assert_eq!(offsets(&pq.take_messages(3, now)), [0, 1, 2]);
    pq.rollback();
    assert_eq!(pq.consuming_count(), 0);
    assert_eq!((pq.msg_count(), pq.msg_size()), (4, 40));
    assert_eq!(offsets(&pq.take_messages(2, now)), [0, 1]);
    pq.check_invariants();
}

#[test]
fn orderly_suspend_puts_back_the_callers_copies() {
    let now = test_support::now();
    let mut pq = ProcessQueue::new(now);
    pq.put_messages(&messages(0..3));
    let mut taken = pq.take_messages(2, now);
    for msg in &mut taken {
        msg.reconsume_times += 1;
    }
    // A message that was never taken is ignored.
    taken.push(message(9, 10));
    pq.make_message_to_consume_again(taken);
    assert_eq!(pq.consuming_count(), 0);
    assert_eq!((pq.msg_count(), pq.msg_size()), (3, 30));
    let again = pq.take_messages(3, now);
    assert_eq!(offsets(&again), [0, 1, 2]);
    assert_eq!(
        again.iter().map(|m| m.reconsume_times).collect::<Vec<_>>(),
        [1, 1, 0]
    );
    assert_eq!(pq.commit(), Some(3));
    pq.check_invariants();
}

#[test]
fn lock_expires_strictly_after_thirty_seconds() {
    let t0 = test_support::now();
    let mut pq = ProcessQueue::new(t0);
    assert!(!pq.locked());
    pq.set_locked(true);
    assert!(!pq.is_lock_expired(t0 + Duration::from_secs(30)));
    assert!(pq.is_lock_expired(t0 + Duration::from_millis(30_001)));
    // A renewal restarts the window.
    let renewed = t0 + Duration::from_secs(20);
    pq.set_last_lock_timestamp(renewed);
    assert_eq!(pq.last_lock_timestamp(), renewed);
    assert!(!pq.is_lock_expired(t0 + Duration::from_secs(50)));
    assert!(pq.is_lock_expired(t0 + Duration::from_secs(51)));
}

#[test]
fn pull_expires_strictly_after_two_minutes() {
    let t0 = test_support::now();
    let mut pq = ProcessQueue::new(t0);
    assert!(!pq.is_pull_expired(t0 + Duration::from_secs(120)));
    assert!(pq.is_pull_expired(t0 + Duration::from_millis(120_001)));
    pq.set_last_pull_timestamp(t0 + Duration::from_secs(100));
    assert!(!pq.is_pull_expired(t0 + Duration::from_secs(220)));
    // A clock reading before the last pull is not an expiry.
    assert!(!pq.is_pull_expired(t0));
}

#[test]
fn clean_expired_reports_the_expired_front_only() {
    let t0 = test_support::now();
    let mut pq = ProcessQueue::new(t0);
    pq.put_messages(&messages(0..5));
    // Consumption of 0, 1 and 3 started at t0; 2 has not started.
    pq.mark_consume_started(&[0, 1, 3, 42], t0);
    assert_eq!(pq.clean_expired(t0 + CONSUME_TIMEOUT, CONSUME_TIMEOUT), []);
    let later = t0 + CONSUME_TIMEOUT + Duration::from_millis(1);
    let expired = pq.clean_expired(later, CONSUME_TIMEOUT);
    assert_eq!(
        offsets(&expired),
        [0, 1],
        "stops at 2, which has not started"
    );

    // The caller sends them back and removes each if still first.
    assert!(pq.remove_if_first(0, later));
    assert!(!pq.remove_if_first(3, later), "3 is not first");
    assert!(pq.remove_if_first(1, later));
    assert_eq!(pq.clean_expired(later, CONSUME_TIMEOUT), []);
    // The freed offsets are committed by the next removal.
    assert_eq!(pq.remove_messages(&[2], later), Some(3));
    pq.check_invariants();
}

#[test]
fn clean_expired_reports_at_most_sixteen() {
    let t0 = test_support::now();
    let mut pq = ProcessQueue::new(t0);
    let all: Vec<i64> = (0..40).collect();
    pq.put_messages(&messages(all.iter().copied()));
    pq.mark_consume_started(&all, t0);
    let expired = pq.clean_expired(t0 + Duration::from_secs(3600), CONSUME_TIMEOUT);
    assert_eq!(offsets(&expired), (0..16).collect::<Vec<_>>());
}

#[test]
fn a_pulled_again_message_loses_its_consume_start() {
    let t0 = test_support::now();
    let mut pq = ProcessQueue::new(t0);
    pq.put_messages(&messages([0]));
    pq.mark_consume_started(&[0], t0);
    pq.put_messages(&messages([0]));
    assert_eq!(
        pq.clean_expired(t0 + Duration::from_secs(3600), CONSUME_TIMEOUT),
        []
    );
    pq.check_invariants();
}

#[test]
fn dropped_flag_and_clear() {
    let now = test_support::now();
    let mut pq = ProcessQueue::new(now);
    pq.put_messages(&messages(0..3));
    pq.take_messages(1, now);
    assert!(!pq.dropped());
    pq.set_dropped(true);
    assert!(pq.dropped());
    pq.clear();
    assert_eq!((pq.msg_count(), pq.msg_size()), (0, 0));
    assert!(!pq.has_temp_message());
    assert_eq!(pq.remove_messages(&[0], now), None);
    pq.inc_try_unlock_count();
    assert_eq!(pq.try_unlock_count(), 1);
    pq.check_invariants();
}

// ---------------------------------------------------------------------------------------------
// Properties

#[derive(Debug, Clone)]
enum Op {
    Put(Vec<(i64, usize)>),
    Remove(Vec<i64>),
    Take(usize),
    Commit,
    Rollback,
    ConsumeAgain,
    MarkStarted(Vec<i64>),
}

fn op() -> impl Strategy<Value = Op> {
    let offset = 0..64i64;
    prop_oneof![
        prop::collection::vec((offset.clone(), 0..100usize), 0..8).prop_map(Op::Put),
        prop::collection::vec(offset.clone(), 0..8).prop_map(Op::Remove),
        (0..6usize).prop_map(Op::Take),
        Just(Op::Commit),
        Just(Op::Rollback),
        Just(Op::ConsumeAgain),
        prop::collection::vec(offset, 0..8).prop_map(Op::MarkStarted),
    ]
}

/// A plain model of the two maps: offset -> body size.
#[derive(Debug, Default)]
struct Model {
    cached: BTreeMap<i64, usize>,
    consuming: BTreeMap<i64, usize>,
    queue_offset_max: i64,
}

impl Model {
    fn count(&self) -> u64 {
        (self.cached.len() + self.consuming.len()) as u64
    }

    fn size(&self) -> u64 {
        self.cached
            .values()
            .chain(self.consuming.values())
            .sum::<usize>() as u64
    }
}

proptest! {
    /// Any sequence of operations agrees with a plain model of Java's maps: the counters
    /// follow the cached messages, and the concurrent commit offset is the smallest cached
    /// offset (never past a message in flight).
    #[test]
    fn process_queue_agrees_with_a_model_of_its_maps(
        ops in prop::collection::vec(op(), 0..40),
    ) {
        let now = test_support::now();
        let mut pq = ProcessQueue::new(now);
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Put(items) => {
                    let msgs: Vec<StoredMessage> =
                        items.iter().map(|(offset, size)| message(*offset, *size)).collect();
                    pq.put_messages(&msgs);
                    for (offset, size) in items {
                        if model.cached.insert(offset, size).is_none() {
                            model.queue_offset_max = offset;
                        }
                    }
                }
                Op::Remove(offsets) => {
                    let expected = if model.cached.is_empty() {
                        None
                    } else {
                        for offset in &offsets {
                            model.cached.remove(offset);
                        }
                        Some(model.cached.keys().next().copied()
                            .unwrap_or(model.queue_offset_max + 1))
                    };
                    prop_assert_eq!(pq.remove_messages(&offsets, now), expected);
                }
                Op::Take(batch) => {
                    let mut expected = Vec::new();
                    while expected.len() < batch {
                        let Some((offset, size)) = model.cached.pop_first() else { break };
                        model.consuming.insert(offset, size);
                        expected.push(offset);
                    }
                    prop_assert_eq!(offsets(&pq.take_messages(batch, now)), expected);
                }
                Op::Commit => {
                    let expected = model.consuming.keys().next_back().map(|last| last + 1);
                    model.consuming.clear();
                    prop_assert_eq!(pq.commit(), expected);
                }
                Op::Rollback => {
                    model.cached.append(&mut model.consuming);
                    pq.rollback();
                }
                Op::ConsumeAgain => {
                    if let Some((first, _)) = model.consuming.pop_first() {
                        model.cached.insert(first, 7);
                        pq.make_message_to_consume_again(vec![message(first, 7)]);
                    }
                }
                Op::MarkStarted(offsets) => pq.mark_consume_started(&offsets, now),
            }
            pq.check_invariants();
            prop_assert_eq!(pq.msg_count(), model.count());
            prop_assert_eq!(pq.msg_size(), model.size());
            prop_assert_eq!(pq.queue_offset_max(), model.queue_offset_max);
            let first = model.cached.keys().next().copied();
            let last = model.cached.keys().next_back().copied();
            prop_assert_eq!(pq.cached_offset_range(), first.zip(last));
            prop_assert_eq!(pq.max_span(), first.zip(last).map_or(0, |(f, l)| l - f));
        }
    }
}
