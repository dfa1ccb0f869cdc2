//! Namespaced key/value settings of the name server (`KVConfigManager`), e.g. the
//! `ORDER_TOPIC_CONFIG` namespace that gives order topics their queue layout.
//!
//! Persisted as `kvConfig.json` (`{"configTable":{namespace:{key:value}}}`, the Java shape)
//! through the Disk trait's atomic replace after every change, and loaded at start. A
//! corrupt file stops the name server from starting rather than being silently emptied.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::disk::SharedDisk;
use crate::protocol::KvTable;
use crate::protocol::lenient::null_default;

/// Why the KV store could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum KvConfigError {
    /// The file could not be read or written.
    #[error("kv config file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the expected JSON.
    #[error("kv config file {path} is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: String,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
}

type Table = BTreeMap<String, BTreeMap<String, String>>;

/// The on-disk shape (`KVConfigSerializeWrapper`).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KvConfigFile {
    #[serde(default, deserialize_with = "null_default")]
    config_table: Table,
}

/// The KV store.
#[derive(Debug)]
pub struct KvConfigManager {
    disk: SharedDisk,
    path: String,
    table: Mutex<Table>,
    /// Serializes persists so an older snapshot never overwrites a newer one.
    persist_lock: tokio::sync::Mutex<()>,
}

impl KvConfigManager {
    /// Loads the store from `path` on `disk`; a missing file is an empty store.
    pub fn load(disk: SharedDisk, path: impl Into<String>) -> Result<Self, KvConfigError> {
        let path = path.into();
        let table = match disk.read_file(&path) {
            Ok(None) => Table::new(),
            Ok(Some(bytes)) if bytes.iter().all(u8::is_ascii_whitespace) => Table::new(),
            Ok(Some(bytes)) => {
                serde_json::from_slice::<KvConfigFile>(&bytes)
                    .map_err(|source| KvConfigError::Corrupt {
                        path: path.clone(),
                        source,
                    })?
                    .config_table
            }
            Err(source) => return Err(KvConfigError::Io { path, source }),
        };
        Ok(Self {
            disk,
            path,
            table: Mutex::new(table),
            persist_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Sets `key` in `namespace` and persists.
    pub async fn put(&self, namespace: &str, key: &str, value: &str) -> Result<(), KvConfigError> {
        self.lock()
            .entry(namespace.to_owned())
            .or_default()
            .insert(key.to_owned(), value.to_owned());
        self.persist().await
    }

    /// Removes `key` from `namespace` (and an emptied namespace) and persists.
    pub async fn delete(&self, namespace: &str, key: &str) -> Result<(), KvConfigError> {
        {
            let mut table = self.lock();
            if let Some(entries) = table.get_mut(namespace) {
                entries.remove(key);
                if entries.is_empty() {
                    table.remove(namespace);
                }
            }
        }
        self.persist().await
    }

    /// The value of `key` in `namespace`.
    pub fn get(&self, namespace: &str, key: &str) -> Option<String> {
        self.lock().get(namespace)?.get(key).cloned()
    }

    /// Every entry of `namespace`, or `None` if it has none.
    pub fn namespace(&self, namespace: &str) -> Option<KvTable> {
        let table = self.lock();
        let entries = table.get(namespace).filter(|entries| !entries.is_empty())?;
        Some(KvTable {
            table: entries.clone(),
        })
    }

    async fn persist(&self) -> Result<(), KvConfigError> {
        let _serialized = self.persist_lock.lock().await;
        let snapshot = crate::protocol::to_json(&KvConfigFile {
            config_table: self.lock().clone(),
        });
        self.disk
            .write_file_atomic(&self.path, &snapshot)
            .await
            .map_err(|source| KvConfigError::Io {
                path: self.path.clone(),
                source,
            })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
