use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::client::allocate::Averagely;
use crate::client::offset_store::OffsetStorage;
use crate::clock::test_support;
use crate::remoting::response_code;

const GROUP: &str = "cg";
const TOPIC: &str = "TopicTest";
const MAX_OFFSET: i64 = 500;
const SEARCHED_OFFSET: i64 = 42;

fn broker_error() -> ClientError {
    ClientError::Broker {
        addr: "10.0.0.1:10911".into(),
        code: response_code::SYSTEM_ERROR,
        remark: "disk full".into(),
    }
}

/// Committed offsets in a table, every commit recorded, queries failing while `failing`.
#[derive(Debug, Default)]
struct FakeOffsetBroker {
    committed: Mutex<BTreeMap<MessageQueue, i64>>,
    commits: Mutex<Vec<(MessageQueue, i64)>>,
    failing: AtomicBool,
}

#[async_trait::async_trait]
impl OffsetStorage for FakeOffsetBroker {
    async fn query_offset(
        &self,
        _group: &str,
        queue: &MessageQueue,
    ) -> Result<Option<i64>, ClientError> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(broker_error());
        }
        Ok(self.committed.lock().unwrap().get(queue).copied())
    }

    async fn commit_offset_oneway(
        &self,
        _group: &str,
        queue: &MessageQueue,
        offset: i64,
    ) -> Result<(), ClientError> {
        self.commits.lock().unwrap().push((queue.clone(), offset));
        self.committed.lock().unwrap().insert(queue.clone(), offset);
        Ok(())
    }
}

/// Every queue ends at [`MAX_OFFSET`], every timestamp is at [`SEARCHED_OFFSET`]; locks are
/// granted except for `refused`; unlocks are recorded.
#[derive(Debug, Default)]
struct FakeBroker {
    admin_failing: AtomicBool,
    searched_timestamps: Mutex<Vec<i64>>,
    refused: Mutex<BTreeSet<MessageQueue>>,
    lock_requests: Mutex<Vec<(String, LockBatchRequestBody)>>,
    unlocks: Mutex<Vec<(MessageQueue, bool)>>,
}

#[async_trait::async_trait]
impl RebalanceBroker for FakeBroker {
    async fn max_offset(&self, _queue: &MessageQueue) -> Result<i64, ClientError> {
        if self.admin_failing.load(Ordering::Relaxed) {
            return Err(broker_error());
        }
        Ok(MAX_OFFSET)
    }

    async fn search_offset(
        &self,
        _queue: &MessageQueue,
        timestamp_ms: i64,
    ) -> Result<i64, ClientError> {
        if self.admin_failing.load(Ordering::Relaxed) {
            return Err(broker_error());
        }
        self.searched_timestamps.lock().unwrap().push(timestamp_ms);
        Ok(SEARCHED_OFFSET)
    }

    async fn lock_batch(
        &self,
        broker_name: &str,
        body: &LockBatchRequestBody,
    ) -> Result<BTreeSet<MessageQueue>, ClientError> {
        self.lock_requests
            .lock()
            .unwrap()
            .push((broker_name.to_owned(), body.clone()));
        let refused = self.refused.lock().unwrap();
        Ok(body.mq_set.difference(&refused).cloned().collect())
    }

    async fn unlock_batch(
        &self,
        _broker_name: &str,
        body: &LockBatchRequestBody,
        oneway: bool,
    ) -> Result<(), ClientError> {
        let mut unlocks = self.unlocks.lock().unwrap();
        unlocks.extend(body.mq_set.iter().map(|queue| (queue.clone(), oneway)));
        Ok(())
    }
}

fn queue(topic: &str, broker_name: &str, queue_id: i32) -> MessageQueue {
    MessageQueue {
        broker_name: broker_name.into(),
        queue_id,
        topic: topic.into(),
    }
}

/// Eight queues of [`TOPIC`]: four on broker-a, four on broker-b.
fn eight_queues() -> BTreeSet<MessageQueue> {
    ["broker-a", "broker-b"]
        .into_iter()
        .flat_map(|broker| (0..4).map(move |id| queue(TOPIC, broker, id)))
        .collect()
}

fn config(client_id: &str) -> RebalanceConfig {
    RebalanceConfig {
        group: GROUP.into(),
        client_id: client_id.into(),
        message_model: MessageModel::Clustering,
        consume_from_where: ConsumeFromWhere::ConsumeFromLastOffset,
        consume_timestamp_ms: 1_700_000_000_000,
        consume_orderly: false,
    }
}

/// A consumer of the test: its rebalance and the fakes behind it.
struct Consumer {
    rebalance: Rebalance,
    offsets: Arc<FakeOffsetBroker>,
    broker: Arc<FakeBroker>,
    store: Arc<OffsetStore>,
}

/// A consumer subscribed to `topic`, whose route lists `queues`, on brokers shared with
/// other consumers of the test.
fn consumer_on(
    config: RebalanceConfig,
    topic: &str,
    queues: &BTreeSet<MessageQueue>,
    offsets: Arc<FakeOffsetBroker>,
    broker: Arc<FakeBroker>,
) -> Consumer {
    let store = Arc::new(OffsetStore::new(GROUP, offsets.clone()));
    let mut rebalance = Rebalance::new(config, Arc::new(Averagely), store.clone(), broker.clone());
    rebalance.set_subscription(SubscriptionData::build(topic, "*", 0));
    rebalance.update_topic_subscribe_info(topic, queues);
    Consumer {
        rebalance,
        offsets,
        broker,
        store,
    }
}

fn consumer(config: RebalanceConfig, topic: &str, queues: &BTreeSet<MessageQueue>) -> Consumer {
    consumer_on(config, topic, queues, Arc::default(), Arc::default())
}

fn owned(rebalance: &Rebalance) -> BTreeSet<MessageQueue> {
    rebalance.process_queues().keys().cloned().collect()
}

fn ids(client_ids: &[&str]) -> Vec<String> {
    client_ids.iter().map(|id| (*id).to_owned()).collect()
}

#[tokio::test]
async fn three_consumers_over_eight_queues_get_disjoint_shares_covering_every_queue() {
    let now = test_support::now();
    let queues = eight_queues();
    let cids = ids(&["c3", "c1", "c2"]);
    let mut union = BTreeSet::new();
    let mut sizes = Vec::new();
    for client_id in ["c1", "c2", "c3"] {
        let mut c = consumer(config(client_id), TOPIC, &queues);
        let outcome = c
            .rebalance
            .rebalance_by_topic(TOPIC, &cids, now)
            .await
            .unwrap();
        let share = owned(&c.rebalance);
        assert!(union.is_disjoint(&share), "{client_id} overlaps: {share:?}");
        let notice = outcome.message_queue_changed.expect("the table changed");
        assert_eq!(notice.mq_all, queues);
        assert_eq!(notice.mq_divided, share);
        assert_eq!(outcome.changes.pull_requests.len(), share.len());
        assert!(
            outcome
                .changes
                .pull_requests
                .iter()
                .all(|request| request.next_offset == MAX_OFFSET
                    && request.consumer_group == GROUP),
            "no committed offset: CONSUME_FROM_LAST_OFFSET starts at the end"
        );
        sizes.push(share.len());
        union.extend(share);
    }
    assert_eq!(union, queues);
    assert_eq!(sizes, vec![3, 3, 2]);
}

#[tokio::test]
async fn a_leaving_consumer_grows_the_others_shares_and_their_lost_queues_are_dropped_and_committed()
 {
    let now = test_support::now();
    let queues = eight_queues();
    let offsets = Arc::new(FakeOffsetBroker::default());
    let broker = Arc::new(FakeBroker::default());
    let mut c1 = consumer_on(
        config("c1"),
        TOPIC,
        &queues,
        offsets.clone(),
        broker.clone(),
    );
    let mut c2 = consumer_on(
        config("c2"),
        TOPIC,
        &queues,
        offsets.clone(),
        broker.clone(),
    );
    let three = ids(&["c1", "c2", "c3"]);
    c1.rebalance
        .rebalance_by_topic(TOPIC, &three, now)
        .await
        .unwrap();
    c2.rebalance
        .rebalance_by_topic(TOPIC, &three, now)
        .await
        .unwrap();
    let (before1, before2) = (owned(&c1.rebalance), owned(&c2.rebalance));
    // c2 owns queues 3..6 of the sorted eight; the first is broker-a's queue 3.
    let lost = queue(TOPIC, "broker-a", 3);
    assert!(before2.contains(&lost));
    let lost_handle = c2.rebalance.process_queues()[&lost].clone();
    c2.store.update_offset(&lost, 77, false);

    let two = ids(&["c1", "c2"]);
    let outcome1 = c1
        .rebalance
        .rebalance_by_topic(TOPIC, &two, now)
        .await
        .unwrap();
    let outcome2 = c2
        .rebalance
        .rebalance_by_topic(TOPIC, &two, now)
        .await
        .unwrap();
    let (after1, after2) = (owned(&c1.rebalance), owned(&c2.rebalance));
    assert_eq!((after1.len(), after2.len()), (4, 4));
    assert!(after1.is_superset(&before1));
    assert!(after1.is_disjoint(&after2));
    assert_eq!(
        after1.union(&after2).cloned().collect::<BTreeSet<_>>(),
        queues
    );

    assert!(outcome1.changes.removed.is_empty());
    assert_eq!(outcome1.changes.pull_requests.len(), 1);
    assert_eq!(outcome2.changes.removed, vec![lost.clone()]);
    assert!(lost_handle.state().dropped(), "the pull loop must stop");
    assert!(
        offsets
            .commits
            .lock()
            .unwrap()
            .contains(&(lost.clone(), 77))
    );
    assert!(
        !c2.store.clone_offset_table(TOPIC).contains_key(&lost),
        "the offset of a queue no longer owned is forgotten"
    );
    assert!(outcome2.message_queue_changed.is_some());
}

#[tokio::test]
async fn a_rebalance_that_changes_nothing_sends_no_notice() {
    let now = test_support::now();
    let queues = eight_queues();
    let mut c = consumer(config("c1"), TOPIC, &queues);
    let cids = ids(&["c1"]);
    c.rebalance
        .rebalance_by_topic(TOPIC, &cids, now)
        .await
        .unwrap();
    let again = c
        .rebalance
        .rebalance_by_topic(TOPIC, &cids, now)
        .await
        .unwrap();
    assert!(!again.changes.changed());
    assert!(again.message_queue_changed.is_none());
}

#[tokio::test]
async fn a_topic_without_known_queues_or_an_allocation_error_changes_nothing() {
    let now = test_support::now();
    let mut c = consumer(config("c1"), TOPIC, &eight_queues());
    let unknown = c
        .rebalance
        .rebalance_by_topic("Other", &ids(&["c1"]), now)
        .await;
    assert!(matches!(unknown, Err(RebalanceError::TopicNotExist(topic)) if topic == "Other"));
    let no_consumers = c.rebalance.rebalance_by_topic(TOPIC, &[], now).await;
    assert!(matches!(
        no_consumers,
        Err(RebalanceError::Allocate(AllocateError::ClientIdsEmpty))
    ));
    assert!(c.rebalance.process_queues().is_empty());
}

#[tokio::test]
async fn a_broadcasting_consumer_takes_every_queue() {
    let now = test_support::now();
    let queues = eight_queues();
    let mut c = consumer(
        RebalanceConfig {
            message_model: MessageModel::Broadcasting,
            ..config("c1")
        },
        TOPIC,
        &queues,
    );
    let outcome = c
        .rebalance
        .rebalance_by_topic(TOPIC, &ids(&["c1", "c2", "c3"]), now)
        .await
        .unwrap();
    assert_eq!(owned(&c.rebalance), queues);
    let notice = outcome.message_queue_changed.unwrap();
    assert_eq!(notice.mq_divided, notice.mq_all);
}

/// The start offset `from_where` gives a queue of `topic` that has no committed offset.
async fn start_offset(
    from_where: ConsumeFromWhere,
    topic: &str,
) -> (Result<i64, ComputePullFromWhereError>, Arc<FakeBroker>) {
    let c = consumer(
        RebalanceConfig {
            consume_from_where: from_where,
            ..config("c1")
        },
        topic,
        &BTreeSet::new(),
    );
    let result = c
        .rebalance
        .compute_pull_from_where(&queue(topic, "broker-a", 0))
        .await;
    (result, c.broker)
}

#[tokio::test]
async fn a_committed_offset_wins_whatever_consume_from_where_says() {
    for from_where in [
        ConsumeFromWhere::ConsumeFromLastOffset,
        ConsumeFromWhere::ConsumeFromFirstOffset,
        ConsumeFromWhere::ConsumeFromTimestamp,
    ] {
        let c = consumer(
            RebalanceConfig {
                consume_from_where: from_where,
                ..config("c1")
            },
            TOPIC,
            &BTreeSet::new(),
        );
        let q = queue(TOPIC, "broker-a", 0);
        c.offsets.committed.lock().unwrap().insert(q.clone(), 9);
        let start = c.rebalance.compute_pull_from_where(&q).await;
        assert_eq!(start.unwrap(), 9, "{from_where:?}");
    }
}

#[tokio::test]
async fn last_offset_starts_at_the_queue_end_or_at_zero_for_a_retry_topic() {
    for from_where in [
        ConsumeFromWhere::ConsumeFromLastOffset,
        ConsumeFromWhere::ConsumeFromLastOffsetAndFromMinWhenBootFirst,
        ConsumeFromWhere::ConsumeFromMinOffset,
        ConsumeFromWhere::ConsumeFromMaxOffset,
    ] {
        let (start, _) = start_offset(from_where, TOPIC).await;
        assert_eq!(start.unwrap(), MAX_OFFSET, "{from_where:?}");
        let (start, _) = start_offset(from_where, "%RETRY%cg").await;
        assert_eq!(start.unwrap(), 0, "{from_where:?}");
    }
}

#[tokio::test]
async fn first_offset_starts_at_zero() {
    let (start, _) = start_offset(ConsumeFromWhere::ConsumeFromFirstOffset, TOPIC).await;
    assert_eq!(start.unwrap(), 0);
}

#[tokio::test]
async fn timestamp_searches_the_consume_timestamp_or_takes_a_retry_topics_end() {
    let (start, broker) = start_offset(ConsumeFromWhere::ConsumeFromTimestamp, TOPIC).await;
    assert_eq!(start.unwrap(), SEARCHED_OFFSET);
    assert_eq!(
        *broker.searched_timestamps.lock().unwrap(),
        vec![config("c1").consume_timestamp_ms]
    );
    let (start, broker) = start_offset(ConsumeFromWhere::ConsumeFromTimestamp, "%RETRY%cg").await;
    assert_eq!(start.unwrap(), MAX_OFFSET);
    assert!(broker.searched_timestamps.lock().unwrap().is_empty());
}

#[tokio::test]
async fn failed_broker_queries_give_no_start_offset() {
    let c = consumer(config("c1"), TOPIC, &BTreeSet::new());
    let q = queue(TOPIC, "broker-a", 0);
    c.offsets.failing.store(true, Ordering::Relaxed);
    let start = c.rebalance.compute_pull_from_where(&q).await;
    assert!(
        matches!(start, Err(ComputePullFromWhereError::OffsetQueryFailed(_))),
        "{start:?}"
    );
    c.offsets.failing.store(false, Ordering::Relaxed);
    c.broker.admin_failing.store(true, Ordering::Relaxed);
    let start = c.rebalance.compute_pull_from_where(&q).await;
    assert!(
        matches!(start, Err(ComputePullFromWhereError::MaxOffsetFailed(_))),
        "{start:?}"
    );
}

#[tokio::test]
async fn a_queue_without_a_start_offset_is_skipped_and_added_by_the_next_rebalance() {
    let now = test_support::now();
    let queues = eight_queues();
    let mut c = consumer(config("c1"), TOPIC, &queues);
    let cids = ids(&["c1"]);
    c.offsets.failing.store(true, Ordering::Relaxed);
    let outcome = c
        .rebalance
        .rebalance_by_topic(TOPIC, &cids, now)
        .await
        .unwrap();
    assert!(c.rebalance.process_queues().is_empty());
    assert_eq!(outcome.changes.not_added.len(), 8);
    assert!(outcome.message_queue_changed.is_none());
    c.offsets.failing.store(false, Ordering::Relaxed);
    let outcome = c
        .rebalance
        .rebalance_by_topic(TOPIC, &cids, now)
        .await
        .unwrap();
    assert_eq!(owned(&c.rebalance), queues);
    assert_eq!(outcome.changes.pull_requests.len(), 8);
}

#[tokio::test]
async fn an_orderly_consumer_adds_a_new_queue_only_when_the_broker_lock_is_granted() {
    let now = test_support::now();
    let queues = eight_queues();
    let mut c = consumer(
        RebalanceConfig {
            consume_orderly: true,
            ..config("c1")
        },
        TOPIC,
        &queues,
    );
    let held_elsewhere = queue(TOPIC, "broker-b", 2);
    c.broker
        .refused
        .lock()
        .unwrap()
        .insert(held_elsewhere.clone());
    let outcome = c
        .rebalance
        .rebalance_by_topic(TOPIC, &ids(&["c1"]), now)
        .await
        .unwrap();
    let mut expected = queues.clone();
    expected.remove(&held_elsewhere);
    assert_eq!(owned(&c.rebalance), expected);
    assert!(matches!(
        outcome.changes.not_added.as_slice(),
        [(q, NotAddedReason::LockFailed)] if *q == held_elsewhere
    ));
    for handle in c.rebalance.process_queues().values() {
        let state = handle.state();
        assert!(state.locked() && !state.is_lock_expired(now));
    }
    let requests = c.broker.lock_requests.lock().unwrap();
    assert!(requests.iter().all(|(broker, body)| body.mq_set.len() == 1
        && body.mq_set.iter().all(|q| q.broker_name == *broker)
        && body.client_id == "c1"
        && body.consumer_group == GROUP));
}

#[tokio::test]
async fn a_queue_whose_pull_loop_stalled_is_replaced_by_a_fresh_one() {
    let start = test_support::now();
    let queues = eight_queues();
    let mut c = consumer(config("c1"), TOPIC, &queues);
    let cids = ids(&["c1"]);
    c.rebalance
        .rebalance_by_topic(TOPIC, &cids, start)
        .await
        .unwrap();
    let later = start + Duration::from_secs(121);
    let stalled = queue(TOPIC, "broker-a", 1);
    let stalled_handle = c.rebalance.process_queues()[&stalled].clone();
    // Every other queue was pulled a moment ago.
    for (queue, handle) in c.rebalance.process_queues() {
        if *queue != stalled {
            handle.state().set_last_pull_timestamp(later);
        }
    }
    c.store.update_offset(&stalled, 30, false);
    let outcome = c
        .rebalance
        .rebalance_by_topic(TOPIC, &cids, later)
        .await
        .unwrap();
    assert_eq!(outcome.changes.pull_expired, vec![stalled.clone()]);
    assert!(outcome.changes.removed.is_empty());
    assert!(stalled_handle.state().dropped());
    assert!(
        c.offsets
            .commits
            .lock()
            .unwrap()
            .contains(&(stalled.clone(), 30))
    );
    let [request] = outcome.changes.pull_requests.as_slice() else {
        panic!(
            "one pull request expected: {:?}",
            outcome.changes.pull_requests
        );
    };
    assert_eq!(request.message_queue, stalled);
    assert_eq!(
        request.next_offset, 30,
        "restarts from the committed offset"
    );
    assert!(!Arc::ptr_eq(&request.process_queue, &stalled_handle));
    assert!(Arc::ptr_eq(
        &request.process_queue,
        &c.rebalance.process_queues()[&stalled]
    ));
    assert_eq!(owned(&c.rebalance), queues);
}

#[tokio::test]
async fn an_orderly_queue_being_consumed_stays_until_its_batch_ends_then_is_unlocked() {
    let now = test_support::now();
    let queues = eight_queues();
    let mut c = consumer(
        RebalanceConfig {
            consume_orderly: true,
            ..config("c1")
        },
        TOPIC,
        &queues,
    );
    c.rebalance
        .rebalance_by_topic(TOPIC, &ids(&["c1"]), now)
        .await
        .unwrap();
    let lost = queue(TOPIC, "broker-a", 0);
    let handle = c.rebalance.process_queues()[&lost].clone();
    let mut remaining = queues.clone();
    remaining.remove(&lost);

    let consuming = handle.consume_lock().try_lock().unwrap();
    let changes = c
        .rebalance
        .update_process_queue_table(TOPIC, &remaining, now)
        .await;
    assert_eq!(changes.removal_deferred, vec![lost.clone()]);
    assert!(
        handle.state().dropped(),
        "consumption stops after the batch"
    );
    assert!(c.rebalance.process_queues().contains_key(&lost));
    assert_eq!(handle.state().try_unlock_count(), 1);
    assert!(c.broker.unlocks.lock().unwrap().is_empty());

    drop(consuming);
    let changes = c
        .rebalance
        .update_process_queue_table(TOPIC, &remaining, now)
        .await;
    assert_eq!(changes.removed, vec![lost.clone()]);
    assert!(
        changes.unlock_later.is_empty(),
        "nothing cached: unlock at once"
    );
    assert_eq!(*c.broker.unlocks.lock().unwrap(), vec![(lost, true)]);
}

#[tokio::test]
async fn lock_all_locks_granted_queues_per_broker_and_unlocks_refused_ones() {
    let start = test_support::now();
    let queues = eight_queues();
    let mut c = consumer(
        RebalanceConfig {
            consume_orderly: true,
            ..config("c1")
        },
        TOPIC,
        &queues,
    );
    c.rebalance
        .rebalance_by_topic(TOPIC, &ids(&["c1"]), start)
        .await
        .unwrap();
    c.broker.lock_requests.lock().unwrap().clear();
    let lost = queue(TOPIC, "broker-b", 3);
    c.broker.refused.lock().unwrap().insert(lost.clone());
    let later = start + Duration::from_secs(20);
    let outcome = c.rebalance.lock_all(later).await;
    let mut expected = queues.clone();
    expected.remove(&lost);
    assert_eq!(outcome.locked, expected);
    assert_eq!(outcome.refused, BTreeSet::from([lost.clone()]));
    assert!(outcome.failed.is_empty());
    let brokers: Vec<String> = c
        .broker
        .lock_requests
        .lock()
        .unwrap()
        .iter()
        .map(|(broker, _)| broker.clone())
        .collect();
    assert_eq!(
        brokers,
        vec!["broker-a", "broker-b"],
        "one request per broker"
    );
    for (queue, handle) in c.rebalance.process_queues() {
        let state = handle.state();
        assert_eq!(state.locked(), *queue != lost, "{queue:?}");
        if *queue != lost {
            assert_eq!(state.last_lock_timestamp(), later);
        }
    }
}

#[tokio::test]
async fn queues_of_a_topic_no_longer_subscribed_are_truncated() {
    let now = test_support::now();
    let queues = eight_queues();
    let mut c = consumer(config("c1"), TOPIC, &queues);
    c.rebalance
        .rebalance_by_topic(TOPIC, &ids(&["c1"]), now)
        .await
        .unwrap();
    let handles: Vec<_> = c.rebalance.process_queues().values().cloned().collect();
    c.rebalance.subscriptions.remove(TOPIC);
    let truncated = c.rebalance.truncate_message_queue_not_my_topic();
    assert_eq!(truncated.into_iter().collect::<BTreeSet<_>>(), queues);
    assert!(c.rebalance.process_queues().is_empty());
    assert!(handles.iter().all(|handle| handle.state().dropped()));
}
