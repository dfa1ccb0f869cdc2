//! Committed consumer offsets (`ConsumerOffsetManager`): per (group, topic, queue), the
//! offset a consumer group has consumed up to. Committed by pulls (the commit-offset flag)
//! and UPDATE_CONSUMER_OFFSET, persisted as `config/consumerOffset.json` every
//! `flushConsumerOffsetInterval` and on shutdown.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::disk::SharedDisk;
use crate::store::metadata::{
    CONSUMER_OFFSET_FILE, ConsumerOffsetTable, MetadataError, config_path, load_json, persist_json,
};

/// The committed-offset table. See the module docs.
#[derive(Debug)]
pub struct ConsumerOffsetManager {
    disk: SharedDisk,
    path: String,
    table: Mutex<ConsumerOffsetTable>,
    persist_lock: tokio::sync::Mutex<()>,
}

impl ConsumerOffsetManager {
    /// An empty table persisted under `store_root`.
    pub fn new(disk: SharedDisk, store_root: &str) -> Self {
        Self {
            disk,
            path: config_path(store_root, CONSUMER_OFFSET_FILE),
            table: Mutex::new(ConsumerOffsetTable::default()),
            persist_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Loads `config/consumerOffset.json` (replacing the table, as Java does).
    pub fn load(&self) -> Result<(), MetadataError> {
        if let Some(saved) = load_json::<ConsumerOffsetTable>(self.disk.as_ref(), &self.path)? {
            *self.lock() = saved;
        }
        Ok(())
    }

    /// Writes `config/consumerOffset.json`.
    pub async fn persist(&self) -> Result<(), MetadataError> {
        let _serialized = self.persist_lock.lock().await;
        let snapshot = self.lock().clone();
        persist_json(self.disk.as_ref(), &self.path, &snapshot).await
    }

    /// Records `offset` as consumed by `group` on (topic, queue).
    pub fn commit_offset(&self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        self.lock().commit(group, topic, queue_id, offset);
    }

    /// The committed offset, if any.
    pub fn query_offset(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        self.lock().query(group, topic, queue_id)
    }

    /// Every committed offset of `group` on `topic`, by queue.
    pub fn query_offsets(&self, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        self.lock()
            .queue_offsets(group, topic)
            .cloned()
            .unwrap_or_default()
    }

    /// The whole table (GET_ALL_CONSUMER_OFFSET).
    pub fn table(&self) -> ConsumerOffsetTable {
        self.lock().clone()
    }

    /// Forgets a group's offsets.
    pub fn remove_group(&self, group: &str) {
        self.lock().remove_group(group);
    }

    /// Forgets a topic's offsets.
    pub fn remove_topic(&self, topic: &str) {
        self.lock().remove_topic(topic);
    }

    /// The groups with committed offsets on `topic`.
    pub fn groups_of_topic(&self, topic: &str) -> Vec<String> {
        self.lock()
            .groups_of_topic(topic)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, ConsumerOffsetTable> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}
