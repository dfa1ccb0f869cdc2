//! Consumer-group settings (`SubscriptionGroupManager`): whether a group may consume, how
//! many times a failed message is retried before the dead-letter queue, which broker a slow
//! consumer is sent to. Unknown groups are created on first use when
//! `autoCreateSubscriptionGroup`; the table is persisted as `config/subscriptionGroup.json`.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::clock::SharedClock;
use crate::disk::SharedDisk;
use crate::protocol::DataVersion;
use crate::store::metadata::{
    MetadataError, SUBSCRIPTION_GROUP_FILE, SubscriptionGroupConfig, SubscriptionGroupWrapper,
    config_path, load_json, persist_json,
};

/// Groups every Java broker has (`SubscriptionGroupManager.init`).
pub const BUILT_IN_GROUPS: [&str; 7] = [
    "TOOLS_CONSUMER",
    "FILTERSRV_CONSUMER",
    "SELF_TEST_C_GROUP",
    "CID_ONS-HTTP-PROXY",
    "CID_ONSAPI_PULL",
    "CID_ONSAPI_PERMISSION",
    "CID_ONSAPI_OWNER",
];

/// The consumer-group table. See the module docs.
#[derive(Debug)]
pub struct SubscriptionGroupManager {
    disk: SharedDisk,
    path: String,
    clock: SharedClock,
    auto_create: bool,
    state: Mutex<SubscriptionGroupWrapper>,
    persist_lock: tokio::sync::Mutex<()>,
}

impl SubscriptionGroupManager {
    /// The built-in groups, before loading the file.
    pub fn new(disk: SharedDisk, store_root: &str, clock: SharedClock, auto_create: bool) -> Self {
        let table: BTreeMap<String, SubscriptionGroupConfig> = BUILT_IN_GROUPS
            .iter()
            .map(|name| (name.to_string(), SubscriptionGroupConfig::new(*name)))
            .collect();
        let state = SubscriptionGroupWrapper {
            data_version: DataVersion::new(clock.wall_ms()),
            subscription_group_table: table,
        };
        Self {
            disk,
            path: config_path(store_root, SUBSCRIPTION_GROUP_FILE),
            clock,
            auto_create,
            state: Mutex::new(state),
            persist_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Merges `config/subscriptionGroup.json` over the built-in groups.
    pub fn load(&self) -> Result<(), MetadataError> {
        if let Some(saved) = load_json::<SubscriptionGroupWrapper>(self.disk.as_ref(), &self.path)?
        {
            let mut state = self.lock();
            state
                .subscription_group_table
                .extend(saved.subscription_group_table);
            state.data_version = saved.data_version;
        }
        Ok(())
    }

    /// Writes `config/subscriptionGroup.json`.
    pub async fn persist(&self) -> Result<(), MetadataError> {
        let _serialized = self.persist_lock.lock().await;
        let snapshot = self.lock().clone();
        persist_json(self.disk.as_ref(), &self.path, &snapshot).await
    }

    /// The group's settings, creating them when auto-creation is on. `None`: unknown group
    /// and auto-creation off. The second value says whether the group was created now.
    pub fn find_subscription_group_config(
        &self,
        group: &str,
    ) -> Option<(SubscriptionGroupConfig, bool)> {
        let mut state = self.lock();
        if let Some(config) = state.subscription_group_table.get(group) {
            return Some((config.clone(), false));
        }
        if !self.auto_create {
            return None;
        }
        let config = SubscriptionGroupConfig::new(group);
        state
            .subscription_group_table
            .insert(group.to_owned(), config.clone());
        state.data_version.next_version(self.clock.wall_ms());
        Some((config, true))
    }

    /// Creates or replaces a group's settings.
    pub fn update_subscription_group_config(&self, config: SubscriptionGroupConfig) {
        let mut state = self.lock();
        state
            .subscription_group_table
            .insert(config.group_name.clone(), config);
        state.data_version.next_version(self.clock.wall_ms());
    }

    /// Turns off an existing group's `consumeEnable` (`disableConsume`, used by
    /// `protectBroker`): its pulls are refused until an operator turns it back on. An
    /// unknown group is not created. Whether the setting changed.
    pub fn disable_consume(&self, group: &str) -> bool {
        let mut state = self.lock();
        let Some(config) = state.subscription_group_table.get_mut(group) else {
            return false;
        };
        if !config.consume_enable {
            return false;
        }
        config.consume_enable = false;
        state.data_version.next_version(self.clock.wall_ms());
        true
    }

    /// Deletes a group's settings; whether it existed.
    pub fn delete_subscription_group_config(&self, group: &str) -> bool {
        let mut state = self.lock();
        let existed = state.subscription_group_table.remove(group).is_some();
        if existed {
            state.data_version.next_version(self.clock.wall_ms());
        }
        existed
    }

    /// The whole table (GET_ALL_SUBSCRIPTIONGROUP_CONFIG).
    pub fn wrapper(&self) -> SubscriptionGroupWrapper {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, SubscriptionGroupWrapper> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
