//! The consumer-offset store of clustering consumers (Java's `RemoteBrokerOffsetStore`,
//! clients.md C36): a per-group table, queue → next offset to consume, kept in memory and
//! committed to the broker that owns each queue.
//!
//! Where it sits: between a consumer and the broker. Consumers record progress here
//! ([`update_offset`](RemoteBrokerOffsetStore::update_offset)), read it back when they
//! (re)start a queue ([`read_offset`](RemoteBrokerOffsetStore::read_offset)), and the client
//! instance's periodic task commits it
//! ([`persist_all`](RemoteBrokerOffsetStore::persist_all), every
//! `persistConsumerOffsetInterval`, and at shutdown). The broker side is reached through the
//! small [`OffsetBroker`] trait, so the table's rules are tested without a network;
//! [`InstanceOffsetBroker`] is the real one: QUERY_CONSUMER_OFFSET (14) and oneway
//! UPDATE_CONSUMER_OFFSET (15) to the master of the queue's broker group, with one route
//! refresh when its address is unknown (4.9's `fetchConsumeOffsetFromBroker` /
//! `updateConsumeOffsetToBroker`: `findBrokerAddressInSubscribe(brokerName, MASTER_ID,
//! onlyThisBroker = true)`, 5 s timeouts).
//!
//! Broadcasting consumers keep their offsets in a local file in Java
//! (`LocalFileOffsetStore`); that store is not implemented.
//!
//! Invariants: the table lock is never held across an await, so a slow broker never blocks
//! consumers recording progress; with `increase_only` an entry never moves backwards;
//! iteration is in [`MessageQueue`] order, so commits are sent in a reproducible order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::api::ClientError;
use super::instance::{ClientInstance, FindBrokerResult};
use crate::protocol::MASTER_ID;
use crate::protocol::heartbeat::MessageQueue;
use crate::remoting::headers::{
    QueryConsumerOffsetRequestHeader, UpdateConsumerOffsetRequestHeader,
};

/// Timeout of the offset query and of the oneway offset commit (Java: `1000 * 5`).
pub const OFFSET_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where [`RemoteBrokerOffsetStore::read_offset`] looks (`ReadOffsetType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOffsetType {
    /// The memory table only (`READ_FROM_MEMORY`).
    ReadFromMemory,
    /// The broker, caching its answer (`READ_FROM_STORE`).
    ReadFromStore,
    /// The memory table, else the broker (`MEMORY_FIRST_THEN_STORE`).
    MemoryFirstThenStore,
}

/// What [`RemoteBrokerOffsetStore::read_offset`] found: Java's `long` with its two sentinels
/// made explicit.
#[derive(Debug)]
pub enum ReadOffset {
    /// The next offset to consume.
    Found(i64),
    /// Java's `-1`: no offset is known — none cached for [`ReadOffsetType::ReadFromMemory`], or
    /// the broker has none for the group (QUERY_NOT_FOUND). The consumer starts where its
    /// ConsumeFromWhere says.
    NotFound,
    /// Java's `-2`: the broker could not be asked (unknown address, no answer, another error
    /// code). Nothing was cached; ask again later.
    QueryFailed(ClientError),
}

impl ReadOffset {
    /// The value Java's `readOffset` returns: the offset, `-1` or `-2`.
    pub fn java_value(&self) -> i64 {
        match self {
            Self::Found(offset) => *offset,
            Self::NotFound => -1,
            Self::QueryFailed(_) => -2,
        }
    }
}

/// The broker side of the offset store: where committed offsets live.
#[async_trait::async_trait]
pub trait OffsetBroker: Send + Sync + 'static {
    /// The group's committed offset of `queue`; `Ok(None)` when the broker has none.
    async fn query_offset(
        &self,
        group: &str,
        queue: &MessageQueue,
    ) -> Result<Option<i64>, ClientError>;

    /// Commits `offset` for the group's `queue` without waiting for an answer.
    async fn commit_offset_oneway(
        &self,
        group: &str,
        queue: &MessageQueue,
        offset: i64,
    ) -> Result<(), ClientError>;
}

/// The real [`OffsetBroker`]: the master of each queue's broker group, through a client
/// instance. It holds the instance weakly: the store belongs to a consumer the instance
/// holds, and a strong reference would keep both alive for ever.
#[derive(Debug, Clone)]
pub struct InstanceOffsetBroker {
    instance: Weak<ClientInstance>,
}

impl InstanceOffsetBroker {
    /// Offsets go through `instance`.
    pub fn new(instance: &Arc<ClientInstance>) -> Self {
        Self {
            instance: Arc::downgrade(instance),
        }
    }

    /// The instance and the master address of `queue`'s broker group (refreshing the route
    /// once when unknown).
    async fn master(
        &self,
        queue: &MessageQueue,
    ) -> Result<(Arc<ClientInstance>, FindBrokerResult), ClientError> {
        let not_found = || ClientError::BrokerNotFound(queue.broker_name.clone());
        let instance = self.instance.upgrade().ok_or_else(not_found)?;
        let found = instance
            .find_with_route_refresh(&queue.topic, |instance| {
                instance.find_broker_address_in_subscribe(&queue.broker_name, MASTER_ID, true)
            })
            .await
            .ok_or_else(not_found)?;
        Ok((instance, found))
    }
}

#[async_trait::async_trait]
impl OffsetBroker for InstanceOffsetBroker {
    async fn query_offset(
        &self,
        group: &str,
        queue: &MessageQueue,
    ) -> Result<Option<i64>, ClientError> {
        let (instance, master) = self.master(queue).await?;
        let header = QueryConsumerOffsetRequestHeader {
            consumer_group: group.to_owned(),
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            broker_name: None,
        };
        instance
            .api()
            .query_consumer_offset(&master.broker_addr, &header, OFFSET_REQUEST_TIMEOUT)
            .await
    }

    async fn commit_offset_oneway(
        &self,
        group: &str,
        queue: &MessageQueue,
        offset: i64,
    ) -> Result<(), ClientError> {
        let (instance, master) = self.master(queue).await?;
        let header = UpdateConsumerOffsetRequestHeader {
            consumer_group: group.to_owned(),
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            commit_offset: offset,
            broker_name: None,
        };
        instance
            .api()
            .update_consumer_offset_oneway(&master.broker_addr, &header, OFFSET_REQUEST_TIMEOUT)
            .await
    }
}

/// One queue's commit in [`RemoteBrokerOffsetStore::persist_all`]: the queue, the offset
/// sent and how the send went.
pub type PersistOutcome = (MessageQueue, i64, Result<(), ClientError>);

/// A clustering consumer group's offsets. See the module docs.
pub struct RemoteBrokerOffsetStore {
    group: String,
    broker: Arc<dyn OffsetBroker>,
    offsets: Mutex<BTreeMap<MessageQueue, i64>>,
}

impl std::fmt::Debug for RemoteBrokerOffsetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBrokerOffsetStore")
            .field("group", &self.group)
            .field("offsets", &*self.lock_offsets())
            .finish_non_exhaustive()
    }
}

impl RemoteBrokerOffsetStore {
    /// An empty store of `group`'s offsets, committed through `broker`.
    pub fn new(group: impl Into<String>, broker: Arc<dyn OffsetBroker>) -> Self {
        Self {
            group: group.into(),
            broker,
            offsets: Mutex::default(),
        }
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Records `offset` as `queue`'s next offset to consume (`updateOffset`). A queue without
    /// an entry takes `offset` as is; otherwise `increase_only` keeps the larger of the two
    /// (concurrent consumption, where acknowledgements may arrive out of order) and without
    /// it `offset` replaces the entry, also backwards (orderly commits, offset resets).
    pub fn update_offset(&self, queue: &MessageQueue, offset: i64, increase_only: bool) {
        let mut offsets = self.lock_offsets();
        match offsets.get_mut(queue) {
            Some(current) if increase_only => *current = (*current).max(offset),
            Some(current) => *current = offset,
            None => {
                offsets.insert(queue.clone(), offset);
            }
        }
    }

    /// `queue`'s next offset to consume (`readOffset`), looked up as `read_type` says. An
    /// offset read from the broker replaces the cached one; a failed or empty broker read
    /// leaves the table alone.
    pub async fn read_offset(&self, queue: &MessageQueue, read_type: ReadOffsetType) -> ReadOffset {
        if read_type != ReadOffsetType::ReadFromStore
            && let Some(offset) = self.lock_offsets().get(queue).copied()
        {
            return ReadOffset::Found(offset);
        }
        if read_type == ReadOffsetType::ReadFromMemory {
            return ReadOffset::NotFound;
        }
        match self.broker.query_offset(&self.group, queue).await {
            Ok(Some(offset)) => {
                self.update_offset(queue, offset, false);
                ReadOffset::Found(offset)
            }
            Ok(None) => ReadOffset::NotFound,
            Err(error) => {
                tracing::warn!(group = %self.group, ?queue, %error, "fetch consume offset from broker failed");
                ReadOffset::QueryFailed(error)
            }
        }
    }

    /// Commits the offset of every queue of `queues` that has one, oneway, in queue order,
    /// and forgets the entries of queues not in `queues` (`persistAll`: they were rebalanced
    /// away). An empty `queues` does nothing at all — Java returns before looking, so it
    /// also drops nothing. Failures are logged and returned; they never stop the others.
    pub async fn persist_all(&self, queues: &BTreeSet<MessageQueue>) -> Vec<PersistOutcome> {
        if queues.is_empty() {
            return Vec::new();
        }
        let to_commit: Vec<(MessageQueue, i64)> = {
            let mut offsets = self.lock_offsets();
            let unused: Vec<MessageQueue> = offsets
                .keys()
                .filter(|queue| !queues.contains(*queue))
                .cloned()
                .collect();
            for queue in unused {
                offsets.remove(&queue);
                tracing::info!(group = %self.group, ?queue, "remove unused mq");
            }
            offsets.iter().map(|(q, o)| (q.clone(), *o)).collect()
        };
        let mut outcomes = Vec::with_capacity(to_commit.len());
        for (queue, offset) in to_commit {
            let result = self.commit(&queue, offset).await;
            outcomes.push((queue, offset, result));
        }
        outcomes
    }

    /// Commits `queue`'s offset, oneway, if it has one (`persist`); `None` when it has none.
    pub async fn persist(&self, queue: &MessageQueue) -> Option<Result<(), ClientError>> {
        let offset = self.lock_offsets().get(queue).copied()?;
        Some(self.commit(queue, offset).await)
    }

    /// Forgets `queue`'s offset (`removeOffset`), without telling the broker.
    pub fn remove_offset(&self, queue: &MessageQueue) {
        self.lock_offsets().remove(queue);
    }

    /// A copy of the offsets of `topic`'s queues (`cloneOffsetTable`); of every queue when
    /// `topic` is blank.
    pub fn clone_offset_table(&self, topic: &str) -> BTreeMap<MessageQueue, i64> {
        let all = topic.trim().is_empty();
        self.lock_offsets()
            .iter()
            .filter(|(queue, _)| all || queue.topic == topic)
            .map(|(queue, offset)| (queue.clone(), *offset))
            .collect()
    }

    async fn commit(&self, queue: &MessageQueue, offset: i64) -> Result<(), ClientError> {
        let result = self
            .broker
            .commit_offset_oneway(&self.group, queue, offset)
            .await;
        match &result {
            Ok(()) => {
                tracing::debug!(group = %self.group, ?queue, offset, "consume offset committed")
            }
            Err(error) => {
                tracing::warn!(group = %self.group, ?queue, offset, %error, "consume offset commit failed")
            }
        }
        result
    }

    fn lock_offsets(&self) -> MutexGuard<'_, BTreeMap<MessageQueue, i64>> {
        // Every update is a single insert, replace or remove, so a poisoned table is still
        // consistent.
        self.offsets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remoting::response_code;

    /// A broker holding committed offsets in a table, recording every commit, and failing
    /// queries while `failing` is set.
    #[derive(Debug, Default)]
    struct FakeBroker {
        committed: Mutex<BTreeMap<MessageQueue, i64>>,
        commits: Mutex<Vec<(MessageQueue, i64)>>,
        failing: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl OffsetBroker for FakeBroker {
        async fn query_offset(
            &self,
            group: &str,
            queue: &MessageQueue,
        ) -> Result<Option<i64>, ClientError> {
            assert_eq!(group, "cg");
            if self.failing.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(ClientError::Broker {
                    addr: "10.0.0.1:10911".into(),
                    code: response_code::SYSTEM_ERROR,
                    remark: "disk full".into(),
                });
            }
            Ok(self.committed.lock().unwrap().get(queue).copied())
        }

        async fn commit_offset_oneway(
            &self,
            group: &str,
            queue: &MessageQueue,
            offset: i64,
        ) -> Result<(), ClientError> {
            assert_eq!(group, "cg");
            self.commits.lock().unwrap().push((queue.clone(), offset));
            self.committed.lock().unwrap().insert(queue.clone(), offset);
            Ok(())
        }
    }

    fn queue(topic: &str, queue_id: i32) -> MessageQueue {
        MessageQueue {
            broker_name: "broker-a".into(),
            queue_id,
            topic: topic.into(),
        }
    }

    fn store() -> (Arc<FakeBroker>, RemoteBrokerOffsetStore) {
        let broker = Arc::new(FakeBroker::default());
        (broker.clone(), RemoteBrokerOffsetStore::new("cg", broker))
    }

    /// The offset cached for `q`, as Java's `readOffset(READ_FROM_MEMORY)` answers it.
    async fn memory_offset(store: &RemoteBrokerOffsetStore, q: &MessageQueue) -> i64 {
        store
            .read_offset(q, ReadOffsetType::ReadFromMemory)
            .await
            .java_value()
    }

    #[tokio::test]
    async fn increase_only_never_moves_an_offset_backwards_but_a_plain_update_does() {
        let (_, store) = store();
        let q = queue("T", 0);
        store.update_offset(&q, 10, true);
        store.update_offset(&q, 7, true);
        assert_eq!(memory_offset(&store, &q).await, 10);
        store.update_offset(&q, 12, true);
        assert_eq!(memory_offset(&store, &q).await, 12);
        store.update_offset(&q, 3, false);
        assert_eq!(memory_offset(&store, &q).await, 3);
    }

    #[tokio::test]
    async fn a_memory_read_of_an_unknown_queue_is_not_found_and_asks_no_broker() {
        let (broker, store) = store();
        let q = queue("T", 0);
        broker.committed.lock().unwrap().insert(q.clone(), 40);
        let read = store.read_offset(&q, ReadOffsetType::ReadFromMemory).await;
        assert!(matches!(read, ReadOffset::NotFound), "{read:?}");
        assert_eq!(read.java_value(), -1);
    }

    #[tokio::test]
    async fn memory_first_prefers_the_cache_and_falls_back_to_the_broker_caching_its_answer() {
        let (broker, store) = store();
        let (cached, remote) = (queue("T", 0), queue("T", 1));
        broker.committed.lock().unwrap().insert(cached.clone(), 40);
        broker.committed.lock().unwrap().insert(remote.clone(), 41);
        store.update_offset(&cached, 5, false);
        let read = store
            .read_offset(&cached, ReadOffsetType::MemoryFirstThenStore)
            .await;
        assert_eq!(read.java_value(), 5, "the cache wins");
        let read = store
            .read_offset(&remote, ReadOffsetType::MemoryFirstThenStore)
            .await;
        assert_eq!(read.java_value(), 41);
        assert_eq!(
            store.clone_offset_table("T").get(&remote),
            Some(&41),
            "cached"
        );
    }

    #[tokio::test]
    async fn a_store_read_replaces_the_cache_even_backwards() {
        let (broker, store) = store();
        let q = queue("T", 0);
        store.update_offset(&q, 90, false);
        broker.committed.lock().unwrap().insert(q.clone(), 30);
        let read = store.read_offset(&q, ReadOffsetType::ReadFromStore).await;
        assert_eq!(read.java_value(), 30);
        assert_eq!(memory_offset(&store, &q).await, 30);
    }

    #[tokio::test]
    async fn a_broker_without_an_offset_is_not_found_and_a_failing_one_is_query_failed() {
        let (broker, store) = store();
        let q = queue("T", 0);
        let read = store.read_offset(&q, ReadOffsetType::ReadFromStore).await;
        assert_eq!(read.java_value(), -1);
        broker
            .failing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let read = store
            .read_offset(&q, ReadOffsetType::MemoryFirstThenStore)
            .await;
        assert!(
            matches!(&read, ReadOffset::QueryFailed(e) if e.response_code() == Some(response_code::SYSTEM_ERROR)),
            "{read:?}"
        );
        assert_eq!(read.java_value(), -2);
        assert!(
            store.clone_offset_table("").is_empty(),
            "nothing cached from a failure"
        );
    }

    #[tokio::test]
    async fn persist_all_commits_the_given_queues_and_drops_the_others() {
        let (broker, store) = store();
        let (kept, also_kept, dropped) = (queue("T", 0), queue("T", 1), queue("T", 2));
        store.update_offset(&kept, 10, false);
        store.update_offset(&also_kept, 11, false);
        store.update_offset(&dropped, 12, false);
        let unknown = queue("T", 3);
        let owned = BTreeSet::from([kept.clone(), also_kept.clone(), unknown]);
        let outcomes = store.persist_all(&owned).await;
        assert_eq!(
            outcomes.len(),
            2,
            "a queue without an offset is not committed"
        );
        assert!(outcomes.iter().all(|(_, _, result)| result.is_ok()));
        assert_eq!(
            *broker.commits.lock().unwrap(),
            vec![(kept.clone(), 10), (also_kept.clone(), 11)]
        );
        assert_eq!(
            store.clone_offset_table(""),
            BTreeMap::from([(kept, 10), (also_kept, 11)]),
            "the queue not given is forgotten"
        );
    }

    #[tokio::test]
    async fn persist_all_of_no_queue_neither_commits_nor_drops() {
        let (broker, store) = store();
        store.update_offset(&queue("T", 0), 10, false);
        assert!(store.persist_all(&BTreeSet::new()).await.is_empty());
        assert!(broker.commits.lock().unwrap().is_empty());
        assert_eq!(store.clone_offset_table("T").len(), 1);
    }

    #[tokio::test]
    async fn persist_commits_one_known_queue_and_remove_forgets_it() {
        let (broker, store) = store();
        let q = queue("T", 0);
        assert!(store.persist(&q).await.is_none(), "no offset, nothing sent");
        store.update_offset(&q, 8, false);
        assert!(matches!(store.persist(&q).await, Some(Ok(()))));
        assert_eq!(*broker.commits.lock().unwrap(), vec![(q.clone(), 8)]);
        store.remove_offset(&q);
        assert!(matches!(
            store.read_offset(&q, ReadOffsetType::ReadFromMemory).await,
            ReadOffset::NotFound
        ));
    }

    #[test]
    fn clone_offset_table_keeps_one_topic_or_all_for_a_blank_one() {
        let (_, store) = store();
        store.update_offset(&queue("A", 0), 1, false);
        store.update_offset(&queue("B", 0), 2, false);
        assert_eq!(
            store.clone_offset_table("A"),
            BTreeMap::from([(queue("A", 0), 1)])
        );
        assert_eq!(store.clone_offset_table(" ").len(), 2);
    }
}
