//! The consumer-offset store (Java's `RemoteBrokerOffsetStore` and `LocalFileOffsetStore`,
//! clients.md C36): a per-group table, queue → next offset to consume, kept in memory and
//! persisted where the group's message model keeps offsets.
//!
//! Where it sits: between a consumer and where offsets live. Consumers record progress here
//! ([`update_offset`](OffsetStore::update_offset)), read it back when they (re)start a queue
//! ([`read_offset`](OffsetStore::read_offset)), and the client instance's periodic task
//! persists it ([`persist_all`](OffsetStore::persist_all), every
//! `persistConsumerOffsetInterval`, and at shutdown). The two Java stores share these table
//! rules and differ only in the [`OffsetStorage`] behind the table:
//! - [`InstanceOffsetBroker`], for CLUSTERING: the broker that owns each queue —
//!   QUERY_CONSUMER_OFFSET (14) and oneway UPDATE_CONSUMER_OFFSET (15) to the master of the
//!   queue's broker group, with one route refresh when its address is unknown (4.9's
//!   `fetchConsumeOffsetFromBroker` / `updateConsumeOffsetToBroker`:
//!   `findBrokerAddressInSubscribe(brokerName, MASTER_ID, onlyThisBroker = true)`, 5 s
//!   timeouts);
//! - [`LocalFileOffsetStorage`], for BROADCASTING: every consumer keeps its own offsets in
//!   `<dir>/<clientId>/<group>/offsets.json` through the [`Disk`](crate::disk::Disk) trait, written whole with a
//!   `.bak` copy like the broker's metadata files.
//!
//! Invariants: the table lock is never held across an await, so a slow broker or disk never
//! blocks consumers recording progress; with `increase_only` an entry never moves backwards;
//! iteration is in [`MessageQueue`] order, so commits are sent in a reproducible order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::api::ClientError;
use super::instance::{ClientInstance, FindBrokerResult};
use crate::disk::{SharedDisk, join};
use crate::protocol::MASTER_ID;
use crate::protocol::heartbeat::{MessageModel, MessageQueue};
use crate::remoting::headers::{
    QueryConsumerOffsetRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use crate::store::metadata::{load_json, persist_json};

/// Timeout of the offset query and of the oneway offset commit (Java: `1000 * 5`).
pub const OFFSET_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where [`OffsetStore::read_offset`] looks (`ReadOffsetType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOffsetType {
    /// The memory table only (`READ_FROM_MEMORY`).
    ReadFromMemory,
    /// The broker, caching its answer (`READ_FROM_STORE`).
    ReadFromStore,
    /// The memory table, else the broker (`MEMORY_FIRST_THEN_STORE`).
    MemoryFirstThenStore,
}

/// What [`OffsetStore::read_offset`] found: Java's `long` with its two sentinels
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

/// Where an [`OffsetStore`]'s committed offsets live: the brokers (clustering) or a local
/// file (broadcasting).
#[async_trait::async_trait]
pub trait OffsetStorage: Send + Sync + 'static {
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

    /// Commits every `(queue, offset)` of `offsets` (in queue order), one result per entry.
    /// Commits one by one unless the storage can do better.
    async fn commit_all(
        &self,
        group: &str,
        offsets: &[(MessageQueue, i64)],
    ) -> Vec<Result<(), ClientError>> {
        let mut results = Vec::with_capacity(offsets.len());
        for (queue, offset) in offsets {
            results.push(self.commit_offset_oneway(group, queue, *offset).await);
        }
        results
    }
}

/// The real [`OffsetStorage`]: the master of each queue's broker group, through a client
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
impl OffsetStorage for InstanceOffsetBroker {
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

/// Java's default local offset directory is `~/.rocketmq_offsets`
/// (`rocketmq.client.localOffsetStoreDir`); the engine reads no environment, so the default
/// is relative to the disk's root and callers pass a home-based path when they want Java's.
pub const DEFAULT_LOCAL_OFFSET_STORE_DIR: &str = ".rocketmq_offsets";

/// The file name of a broadcasting group's offsets.
pub const LOCAL_OFFSET_FILE_NAME: &str = "offsets.json";

/// One entry of a local offsets file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LocalOffsetEntry {
    topic: String,
    broker_name: String,
    queue_id: i32,
    offset: i64,
}

/// The contents of a local offsets file. Java's `OffsetSerializeWrapper` is written by
/// fastjson with `MessageQueue` objects as map keys, which is not JSON; this file lists the
/// entries instead, so Java's files are not read and ours are not read by Java.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LocalOffsetFile {
    #[serde(default)]
    offset_table: Vec<LocalOffsetEntry>,
}

impl LocalOffsetFile {
    fn from_offsets(offsets: &BTreeMap<MessageQueue, i64>) -> Self {
        Self {
            offset_table: offsets
                .iter()
                .map(|(queue, offset)| LocalOffsetEntry {
                    topic: queue.topic.clone(),
                    broker_name: queue.broker_name.clone(),
                    queue_id: queue.queue_id,
                    offset: *offset,
                })
                .collect(),
        }
    }

    fn into_offsets(self) -> BTreeMap<MessageQueue, i64> {
        self.offset_table
            .into_iter()
            .map(|entry| {
                let queue = MessageQueue {
                    topic: entry.topic,
                    broker_name: entry.broker_name,
                    queue_id: entry.queue_id,
                };
                (queue, entry.offset)
            })
            .collect()
    }
}

/// Where a consumer of `group` on `instance` keeps its offsets under `model`: the brokers
/// for a clustering group, the local file under `local_dir` on `disk` for a broadcasting
/// one (the choice every Java consumer makes at start).
pub fn offset_storage_for(
    model: MessageModel,
    instance: &Arc<ClientInstance>,
    disk: &SharedDisk,
    local_dir: &str,
    group: &str,
) -> Arc<dyn OffsetStorage> {
    match model {
        MessageModel::Clustering => Arc::new(InstanceOffsetBroker::new(instance)),
        MessageModel::Broadcasting => Arc::new(LocalFileOffsetStorage::new(
            disk.clone(),
            local_dir,
            instance.client_id(),
            group,
        )),
    }
}

/// The [`OffsetStorage`] of broadcasting consumers (Java's `LocalFileOffsetStore`): one
/// JSON file per client and group, `<dir>/<clientId>/<group>/offsets.json`, on a [`Disk`](crate::disk::Disk).
///
/// Reads go to the file each time (Java's `READ_FROM_STORE` re-reads it too); commits
/// rewrite it whole through [`persist_json`], so a crash leaves either the old or the new
/// file, with the previous good version in `offsets.json.bak`. A file that cannot be read or
/// written is a [`ClientError::LocalOffsetStore`]: the consumer logs it and keeps its
/// offsets in memory, as with an unreachable broker.
pub struct LocalFileOffsetStorage {
    disk: SharedDisk,
    path: String,
    /// Serialises read-modify-write cycles of the file.
    write_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for LocalFileOffsetStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalFileOffsetStorage")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LocalFileOffsetStorage {
    /// The storage of `group`'s offsets for client `client_id` under `dir` on `disk`.
    pub fn new(disk: SharedDisk, dir: &str, client_id: &str, group: &str) -> Self {
        let path = join(&join(&join(dir, client_id), group), LOCAL_OFFSET_FILE_NAME);
        Self {
            disk,
            path,
            write_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn error(&self, reason: impl std::fmt::Display) -> ClientError {
        ClientError::LocalOffsetStore {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    /// Every offset in the file; empty when there is no file yet.
    pub fn load(&self) -> Result<BTreeMap<MessageQueue, i64>, ClientError> {
        let file: Option<LocalOffsetFile> =
            load_json(self.disk.as_ref(), &self.path).map_err(|e| self.error(e))?;
        Ok(file.map(LocalOffsetFile::into_offsets).unwrap_or_default())
    }

    async fn write(&self, offsets: &BTreeMap<MessageQueue, i64>) -> Result<(), ClientError> {
        if let Some((dir, _)) = self.path.rsplit_once('/') {
            self.disk.create_dir_all(dir).map_err(|e| self.error(e))?;
        }
        persist_json(
            self.disk.as_ref(),
            &self.path,
            &LocalOffsetFile::from_offsets(offsets),
        )
        .await
        .map_err(|e| self.error(e))
    }
}

#[async_trait::async_trait]
impl OffsetStorage for LocalFileOffsetStorage {
    async fn query_offset(
        &self,
        _group: &str,
        queue: &MessageQueue,
    ) -> Result<Option<i64>, ClientError> {
        Ok(self.load()?.get(queue).copied())
    }

    async fn commit_offset_oneway(
        &self,
        _group: &str,
        queue: &MessageQueue,
        offset: i64,
    ) -> Result<(), ClientError> {
        let _writing = self.write_lock.lock().await;
        let mut offsets = self.load()?;
        offsets.insert(queue.clone(), offset);
        self.write(&offsets).await
    }

    /// Java's `persistAll`: the file is replaced by exactly these entries.
    async fn commit_all(
        &self,
        _group: &str,
        offsets: &[(MessageQueue, i64)],
    ) -> Vec<Result<(), ClientError>> {
        let _writing = self.write_lock.lock().await;
        let table: BTreeMap<MessageQueue, i64> = offsets.iter().cloned().collect();
        let result = self.write(&table).await.map_err(|error| error.to_string());
        offsets
            .iter()
            .map(|_| result.clone().map_err(|reason| self.error(reason)))
            .collect()
    }
}

/// One queue's commit in [`OffsetStore::persist_all`]: the queue, the offset
/// sent and how the send went.
pub type PersistOutcome = (MessageQueue, i64, Result<(), ClientError>);

/// A consumer group's offsets. See the module docs.
pub struct OffsetStore {
    group: String,
    broker: Arc<dyn OffsetStorage>,
    offsets: Mutex<BTreeMap<MessageQueue, i64>>,
}

impl std::fmt::Debug for OffsetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffsetStore")
            .field("group", &self.group)
            .field("offsets", &*self.lock_offsets())
            .finish_non_exhaustive()
    }
}

impl OffsetStore {
    /// An empty store of `group`'s offsets, persisted to `broker` (the name of Java's
    /// remote store; a [`LocalFileOffsetStorage`] is the local one).
    pub fn new(group: impl Into<String>, broker: Arc<dyn OffsetStorage>) -> Self {
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
        self.persist_all_holding(queues, &BTreeSet::new()).await
    }

    /// [`persist_all`](Self::persist_all) for a consumer that still owns `held` but must not
    /// commit them now (an orderly consumer's queues whose broker lock it does not hold:
    /// another consumer may be consuming them, and a commit would move the group's offset
    /// back under it). Their entries are kept, not committed, not forgotten.
    pub async fn persist_all_holding(
        &self,
        queues: &BTreeSet<MessageQueue>,
        held: &BTreeSet<MessageQueue>,
    ) -> Vec<PersistOutcome> {
        if queues.is_empty() && held.is_empty() {
            return Vec::new();
        }
        let to_commit: Vec<(MessageQueue, i64)> = {
            let mut offsets = self.lock_offsets();
            let unused: Vec<MessageQueue> = offsets
                .keys()
                .filter(|queue| !queues.contains(*queue) && !held.contains(*queue))
                .cloned()
                .collect();
            for queue in unused {
                offsets.remove(&queue);
                tracing::info!(group = %self.group, ?queue, "remove unused mq");
            }
            offsets
                .iter()
                .filter(|(queue, _)| !held.contains(*queue))
                .map(|(q, o)| (q.clone(), *o))
                .collect()
        };
        let results = self.broker.commit_all(&self.group, &to_commit).await;
        to_commit
            .into_iter()
            .zip(results)
            .map(|((queue, offset), result)| {
                self.log_commit(&queue, offset, &result);
                (queue, offset, result)
            })
            .collect()
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
        self.log_commit(queue, offset, &result);
        result
    }

    fn log_commit(&self, queue: &MessageQueue, offset: i64, result: &Result<(), ClientError>) {
        match result {
            Ok(()) => {
                tracing::debug!(group = %self.group, ?queue, offset, "consume offset committed")
            }
            Err(error) => {
                tracing::warn!(group = %self.group, ?queue, offset, %error, "consume offset commit failed")
            }
        }
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
    impl OffsetStorage for FakeBroker {
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

    fn store() -> (Arc<FakeBroker>, OffsetStore) {
        let broker = Arc::new(FakeBroker::default());
        (broker.clone(), OffsetStore::new("cg", broker))
    }

    /// The offset cached for `q`, as Java's `readOffset(READ_FROM_MEMORY)` answers it.
    async fn memory_offset(store: &OffsetStore, q: &MessageQueue) -> i64 {
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
    async fn persist_all_holding_keeps_held_offsets_without_committing_them() {
        let (broker, store) = store();
        let (committed, held, dropped) = (queue("T", 0), queue("T", 1), queue("T", 2));
        store.update_offset(&committed, 10, false);
        store.update_offset(&held, 11, false);
        store.update_offset(&dropped, 12, false);
        let outcomes = store
            .persist_all_holding(
                &BTreeSet::from([committed.clone()]),
                &BTreeSet::from([held.clone()]),
            )
            .await;
        assert_eq!(outcomes.len(), 1);
        assert_eq!(
            *broker.commits.lock().unwrap(),
            vec![(committed.clone(), 10)]
        );
        assert_eq!(
            store.clone_offset_table(""),
            BTreeMap::from([(committed, 10), (held, 11)]),
            "a held queue keeps its entry, uncommitted; an unowned one is forgotten"
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

    #[tokio::test]
    async fn local_file_storage_round_trips_offsets_and_persist_all_replaces_the_file() {
        let (disk, shared) = crate::store::test_disk::MemoryDisk::shared();
        let storage = Arc::new(LocalFileOffsetStorage::new(
            shared.clone(),
            DEFAULT_LOCAL_OFFSET_STORE_DIR,
            "10.0.0.9@7",
            "bg",
        ));
        assert_eq!(
            storage.path(),
            ".rocketmq_offsets/10.0.0.9@7/bg/offsets.json"
        );
        let store = OffsetStore::new("bg", storage.clone());
        let (q0, q1) = (queue("T", 0), queue("T", 1));
        assert!(matches!(
            store.read_offset(&q0, ReadOffsetType::ReadFromStore).await,
            ReadOffset::NotFound
        ));
        store.update_offset(&q0, 5, true);
        store.update_offset(&q1, 9, true);
        let outcomes = store
            .persist_all(&BTreeSet::from([q0.clone(), q1.clone()]))
            .await;
        assert!(outcomes.iter().all(|(_, _, result)| result.is_ok()));
        assert!(disk.file_paths().contains(&storage.path().to_owned()));

        // A new consumer of the same client and group starts where this one stopped.
        let reopened = OffsetStore::new(
            "bg",
            Arc::new(LocalFileOffsetStorage::new(
                shared,
                DEFAULT_LOCAL_OFFSET_STORE_DIR,
                "10.0.0.9@7",
                "bg",
            )),
        );
        let read = reopened
            .read_offset(&q1, ReadOffsetType::ReadFromStore)
            .await;
        assert_eq!(read.java_value(), 9);

        // persist_all with fewer queues leaves only those in the file (Java's persistAll).
        store.update_offset(&q0, 6, true);
        store.persist_all(&BTreeSet::from([q0.clone()])).await;
        assert_eq!(storage.load().unwrap(), BTreeMap::from([(q0, 6)]));
    }

    #[tokio::test]
    async fn a_corrupt_local_file_is_a_typed_error_not_a_panic() {
        let (_, shared) = crate::store::test_disk::MemoryDisk::shared();
        let storage = LocalFileOffsetStorage::new(shared.clone(), "offs", "c@1", "bg");
        shared.create_dir_all("offs/c@1/bg").unwrap();
        shared
            .write_file_atomic(storage.path(), b"{not json")
            .await
            .unwrap();
        let store = OffsetStore::new("bg", Arc::new(storage));
        let read = store
            .read_offset(&queue("T", 0), ReadOffsetType::ReadFromStore)
            .await;
        assert!(
            matches!(
                &read,
                ReadOffset::QueryFailed(ClientError::LocalOffsetStore { .. })
            ),
            "{read:?}"
        );
    }
}
