//! The route registry (`RouteInfoManager`): which broker groups exist, where their members
//! listen, which topics each serves, and which brokers are alive.
//!
//! A pure, deterministic state structure: every operation takes the current instant as a
//! value and returns what the caller must do (close channels), so the table's evolution is
//! unit-tested without a runtime and replayed exactly by the simulator. Maps are ordered so
//! that routes and listings come out in a stable order.
//!
//! Invariants ([`RouteInfoManager::check_invariants`]): every broker group has at least one
//! member and is listed under its cluster; no empty cluster or topic entry. (A live broker
//! may have been replaced in its group by another address under the same id; it stays live
//! until it expires, as in Java.)

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::clock::Instant;
use crate::protocol::{
    BrokerData, ClusterInfo, DataVersion, MASTER_ID, QueueData, TopicConfig,
    TopicConfigSerializeWrapper, TopicList, TopicRouteData, perm,
};

/// A broker silent for longer than this is dropped (`BROKER_CHANNEL_EXPIRED_TIME`, 120 s).
pub const BROKER_CHANNEL_EXPIRED_TIME: Duration = Duration::from_secs(120);

/// `TopicSysFlag` bit: a unit topic.
const FLAG_UNIT: i32 = 0x1;
/// `TopicSysFlag` bit: a topic with unit subscriptions.
const FLAG_UNIT_SUB: i32 = 0x1 << 1;

/// What the registry knows about a live broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerLiveInfo {
    /// When the broker last registered (or confirmed its data version).
    pub last_update: Instant,
    /// The version of the topic table it last registered.
    pub data_version: DataVersion,
    /// The connection it registered over, closed when the broker expires.
    pub channel_id: Option<u64>,
    /// Its HA listen address, handed to its slaves.
    pub ha_server_addr: String,
}

/// A REGISTER_BROKER request, as the registry needs it.
#[derive(Debug, Clone)]
pub struct BrokerRegistration<'a> {
    /// Cluster name.
    pub cluster_name: &'a str,
    /// The broker's `ip:port`.
    pub broker_addr: &'a str,
    /// The broker group's name.
    pub broker_name: &'a str,
    /// 0 for the master, above 0 for slaves.
    pub broker_id: i64,
    /// The broker's HA `ip:port`.
    pub ha_server_addr: &'a str,
    /// Its topics and their version.
    pub topic_config_wrapper: &'a TopicConfigSerializeWrapper,
    /// Its filter servers.
    pub filter_server_list: &'a [String],
    /// The connection it registered over.
    pub channel_id: Option<u64>,
}

/// What a registering broker is told: for a slave, where its master is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterBrokerResult {
    /// The master's HA address (slaves only).
    pub ha_server_addr: Option<String>,
    /// The master's address (slaves only).
    pub master_addr: Option<String>,
}

/// A broker the liveness scan or a closed connection removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedBroker {
    /// The broker's address.
    pub broker_addr: String,
    /// Its registration connection, to be closed.
    pub channel_id: Option<u64>,
}

/// The route registry. See the module docs.
#[derive(Debug, Default, Clone)]
pub struct RouteInfoManager {
    topic_queue_table: BTreeMap<String, BTreeMap<String, QueueData>>,
    broker_addr_table: BTreeMap<String, BrokerData>,
    cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
    broker_live_table: BTreeMap<String, BrokerLiveInfo>,
    filter_server_table: BTreeMap<String, Vec<String>>,
}

impl RouteInfoManager {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or re-registers) a broker at `now`.
    ///
    /// A master's topics are (re)written only when its data version changed or it registers
    /// for the first time; a member that switched ids under the same address (slave promoted
    /// to master) loses its old id. A slave learns its master's address and HA address.
    pub fn register_broker(
        &mut self,
        registration: &BrokerRegistration<'_>,
        now: Instant,
    ) -> RegisterBrokerResult {
        let BrokerRegistration {
            cluster_name,
            broker_addr,
            broker_name,
            broker_id,
            ha_server_addr,
            topic_config_wrapper,
            filter_server_list,
            channel_id,
        } = *registration;
        self.cluster_addr_table
            .entry(cluster_name.to_owned())
            .or_default()
            .insert(broker_name.to_owned());

        let mut register_first = !self.broker_addr_table.contains_key(broker_name);
        let broker_data = self
            .broker_addr_table
            .entry(broker_name.to_owned())
            .or_insert_with(|| BrokerData::new(cluster_name, broker_name));
        // The same address under another id: a slave became master or the reverse.
        broker_data
            .broker_addrs
            .retain(|&id, addr| !(addr == broker_addr && id != broker_id));
        let old_addr = broker_data
            .broker_addrs
            .insert(broker_id, broker_addr.to_owned());
        register_first |= old_addr.is_none();

        if broker_id == MASTER_ID
            && (register_first
                || self.is_broker_topic_config_changed(
                    broker_addr,
                    &topic_config_wrapper.data_version,
                ))
        {
            for config in topic_config_wrapper.topic_config_table.values() {
                self.create_and_update_queue_data(broker_name, config);
            }
        }

        self.broker_live_table.insert(
            broker_addr.to_owned(),
            BrokerLiveInfo {
                last_update: now,
                data_version: topic_config_wrapper.data_version,
                channel_id,
                ha_server_addr: ha_server_addr.to_owned(),
            },
        );
        if filter_server_list.is_empty() {
            self.filter_server_table.remove(broker_addr);
        } else {
            self.filter_server_table
                .insert(broker_addr.to_owned(), filter_server_list.to_vec());
        }

        let mut result = RegisterBrokerResult::default();
        if broker_id != MASTER_ID
            && let Some(master_addr) = self
                .broker_addr_table
                .get(broker_name)
                .and_then(|data| data.master_addr())
            && let Some(master) = self.broker_live_table.get(master_addr)
        {
            result.ha_server_addr = Some(master.ha_server_addr.clone());
            result.master_addr = Some(master_addr.to_owned());
        }
        result
    }

    /// Whether `data_version` differs from what the broker at `broker_addr` last registered.
    pub fn is_broker_topic_config_changed(
        &self,
        broker_addr: &str,
        data_version: &DataVersion,
    ) -> bool {
        self.broker_live_table
            .get(broker_addr)
            .is_none_or(|live| live.data_version != *data_version)
    }

    /// The data version the broker at `broker_addr` last registered.
    pub fn broker_data_version(&self, broker_addr: &str) -> Option<DataVersion> {
        self.broker_live_table
            .get(broker_addr)
            .map(|live| live.data_version)
    }

    /// Refreshes a live broker's last-seen time (QUERY_DATA_VERSION counts as a sign of life).
    pub fn update_broker_info_update_timestamp(&mut self, broker_addr: &str, now: Instant) {
        if let Some(live) = self.broker_live_table.get_mut(broker_addr) {
            live.last_update = now;
        }
    }

    fn create_and_update_queue_data(&mut self, broker_name: &str, config: &TopicConfig) {
        let queue_data = QueueData {
            broker_name: broker_name.to_owned(),
            perm: config.perm,
            read_queue_nums: config.read_queue_nums,
            topic_sys_flag: config.topic_sys_flag,
            write_queue_nums: config.write_queue_nums,
        };
        let queues = self
            .topic_queue_table
            .entry(config.topic_name.clone())
            .or_default();
        if queues.get(broker_name) != Some(&queue_data) {
            tracing::info!(topic = %config.topic_name, broker_name, ?queue_data, "topic route updated");
            queues.insert(broker_name.to_owned(), queue_data);
        }
    }

    /// Unregisters a broker (clean shutdown). Removes the group, its cluster entry and its
    /// topics' queues once its last member is gone.
    pub fn unregister_broker(
        &mut self,
        cluster_name: &str,
        broker_addr: &str,
        broker_name: &str,
        broker_id: i64,
    ) {
        self.broker_live_table.remove(broker_addr);
        self.filter_server_table.remove(broker_addr);
        let mut group_gone = false;
        if let Some(data) = self.broker_addr_table.get_mut(broker_name) {
            data.broker_addrs.remove(&broker_id);
            if data.broker_addrs.is_empty() {
                self.broker_addr_table.remove(broker_name);
                group_gone = true;
            }
        }
        if group_gone {
            if let Some(names) = self.cluster_addr_table.get_mut(cluster_name) {
                names.remove(broker_name);
                if names.is_empty() {
                    self.cluster_addr_table.remove(cluster_name);
                }
            }
            self.remove_topic_by_broker_name(broker_name);
        }
    }

    fn remove_topic_by_broker_name(&mut self, broker_name: &str) {
        self.topic_queue_table.retain(|_, queues| {
            queues.remove(broker_name);
            !queues.is_empty()
        });
    }

    /// The route of `topic`, or `None` when no live broker group serves it.
    pub fn pickup_topic_route_data(&self, topic: &str) -> Option<TopicRouteData> {
        let queues = self.topic_queue_table.get(topic)?;
        let mut route = TopicRouteData {
            queue_datas: queues.values().cloned().collect(),
            ..TopicRouteData::default()
        };
        for broker_name in queues.keys() {
            if let Some(data) = self.broker_addr_table.get(broker_name) {
                // Only brokers that have filter servers appear (Java puts nulls, which its
                // JSON writer omits).
                for addr in data.broker_addrs.values() {
                    if let Some(servers) = self.filter_server_table.get(addr) {
                        route
                            .filter_server_table
                            .insert(addr.clone(), servers.clone());
                    }
                }
                route.broker_datas.push(data.clone());
            }
        }
        (!route.broker_datas.is_empty() && !route.queue_datas.is_empty()).then_some(route)
    }

    /// Drops brokers silent since before `now - BROKER_CHANNEL_EXPIRED_TIME` and returns
    /// them so the caller can close their connections.
    pub fn scan_not_active_brokers(&mut self, now: Instant) -> Vec<RemovedBroker> {
        let expired: Vec<(String, Option<u64>)> = self
            .broker_live_table
            .iter()
            .filter(|(_, live)| live.last_update + BROKER_CHANNEL_EXPIRED_TIME < now)
            .map(|(addr, live)| (addr.clone(), live.channel_id))
            .collect();
        expired
            .into_iter()
            .map(|(broker_addr, channel_id)| {
                tracing::warn!(%broker_addr, "broker expired after 120 s without registering");
                self.remove_broker_addr(&broker_addr);
                RemovedBroker {
                    broker_addr,
                    channel_id,
                }
            })
            .collect()
    }

    /// A connection closed: drops the broker that registered over it (found by channel, or
    /// by `remote_addr` when no broker registered over that channel).
    pub fn on_channel_destroy(&mut self, remote_addr: &str, channel_id: u64) -> Option<String> {
        let by_channel = self
            .broker_live_table
            .iter()
            .find(|(_, live)| live.channel_id == Some(channel_id))
            .map(|(addr, _)| addr.clone());
        let broker_addr = by_channel.or_else(|| {
            self.broker_live_table
                .contains_key(remote_addr)
                .then(|| remote_addr.to_owned())
        })?;
        tracing::info!(%broker_addr, "broker connection closed; removing its routes");
        self.remove_broker_addr(&broker_addr);
        Some(broker_addr)
    }

    fn remove_broker_addr(&mut self, broker_addr: &str) {
        self.broker_live_table.remove(broker_addr);
        self.filter_server_table.remove(broker_addr);
        let mut gone_groups = Vec::new();
        self.broker_addr_table.retain(|name, data| {
            data.broker_addrs.retain(|_, addr| addr != broker_addr);
            if data.broker_addrs.is_empty() {
                gone_groups.push(name.clone());
                false
            } else {
                true
            }
        });
        for name in &gone_groups {
            self.cluster_addr_table.retain(|_, names| {
                names.remove(name);
                !names.is_empty()
            });
            self.remove_topic_by_broker_name(name);
        }
    }

    /// Every cluster and broker group (GET_BROKER_CLUSTER_INFO).
    pub fn all_cluster_info(&self) -> ClusterInfo {
        ClusterInfo {
            broker_addr_table: self.broker_addr_table.clone(),
            cluster_addr_table: self.cluster_addr_table.clone(),
        }
    }

    /// Every topic name (GET_ALL_TOPIC_LIST_FROM_NAMESERVER).
    pub fn all_topic_list(&self) -> TopicList {
        TopicList {
            broker_addr: None,
            topic_list: self.topic_queue_table.keys().cloned().collect(),
        }
    }

    /// Removes a topic everywhere, or only from the broker groups of `cluster_name`.
    pub fn delete_topic(&mut self, topic: &str, cluster_name: Option<&str>) {
        match cluster_name.filter(|c| !c.is_empty()) {
            None => {
                self.topic_queue_table.remove(topic);
            }
            Some(cluster) => {
                let Some(names) = self.cluster_addr_table.get(cluster) else {
                    return;
                };
                if let Some(queues) = self.topic_queue_table.get_mut(topic) {
                    queues.retain(|broker_name, _| !names.contains(broker_name));
                    if queues.is_empty() {
                        self.topic_queue_table.remove(topic);
                    }
                }
            }
        }
    }

    /// Clears the write permission of every queue of `broker_name`; returns how many topics
    /// changed (WIPE_WRITE_PERM_OF_BROKER).
    pub fn wipe_write_perm_of_broker(&mut self, broker_name: &str) -> i32 {
        self.update_perm(broker_name, |p| p & !perm::WRITE)
    }

    /// Restores the write permission of every queue of `broker_name`; returns how many
    /// topics changed (ADD_WRITE_PERM_OF_BROKER).
    pub fn add_write_perm_of_broker(&mut self, broker_name: &str) -> i32 {
        self.update_perm(broker_name, |p| p | perm::WRITE)
    }

    fn update_perm(&mut self, broker_name: &str, change: impl Fn(i32) -> i32) -> i32 {
        let mut count = 0;
        for queues in self.topic_queue_table.values_mut() {
            if let Some(queue) = queues.get_mut(broker_name) {
                queue.perm = change(queue.perm);
                count += 1;
            }
        }
        count
    }

    /// Topics served by the broker groups of `cluster` (GET_TOPICS_BY_CLUSTER).
    pub fn topics_by_cluster(&self, cluster: &str) -> TopicList {
        let names = self.cluster_addr_table.get(cluster);
        let topic_list = self
            .topic_queue_table
            .iter()
            .filter(|(_, queues)| {
                names.is_some_and(|names| queues.keys().any(|name| names.contains(name)))
            })
            .map(|(topic, _)| topic.clone())
            .collect();
        TopicList {
            broker_addr: None,
            topic_list,
        }
    }

    /// The "system topics": cluster names and broker-group names, with one broker address
    /// (GET_SYSTEM_TOPIC_LIST_FROM_NS).
    pub fn system_topic_list(&self) -> TopicList {
        let mut list = TopicList::default();
        for (cluster, names) in &self.cluster_addr_table {
            list.topic_list.insert(cluster.clone());
            list.topic_list.extend(names.iter().cloned());
        }
        list.broker_addr = self
            .broker_addr_table
            .values()
            .find_map(|data| data.broker_addrs.values().next().cloned());
        list
    }

    /// Topics whose queues carry the unit flag (GET_UNIT_TOPIC_LIST).
    pub fn unit_topics(&self) -> TopicList {
        self.topics_where(|flag| flag & FLAG_UNIT != 0)
    }

    /// Topics with unit subscriptions (GET_HAS_UNIT_SUB_TOPIC_LIST).
    pub fn has_unit_sub_topics(&self) -> TopicList {
        self.topics_where(|flag| flag & FLAG_UNIT_SUB != 0)
    }

    /// Non-unit topics with unit subscriptions (GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST).
    pub fn has_unit_sub_non_unit_topics(&self) -> TopicList {
        self.topics_where(|flag| flag & FLAG_UNIT == 0 && flag & FLAG_UNIT_SUB != 0)
    }

    fn topics_where(&self, predicate: impl Fn(i32) -> bool) -> TopicList {
        let topic_list = self
            .topic_queue_table
            .iter()
            .filter(|(_, queues)| {
                queues
                    .values()
                    .next()
                    .is_some_and(|q| predicate(q.topic_sys_flag))
            })
            .map(|(topic, _)| topic.clone())
            .collect();
        TopicList {
            broker_addr: None,
            topic_list,
        }
    }

    /// The live brokers and what is known of each.
    pub fn live_brokers(&self) -> &BTreeMap<String, BrokerLiveInfo> {
        &self.broker_live_table
    }

    /// Panics if an invariant of the module docs is broken.
    pub fn check_invariants(&self) {
        for (cluster, names) in &self.cluster_addr_table {
            assert!(!names.is_empty(), "cluster {cluster} has no broker group");
        }
        for (name, data) in &self.broker_addr_table {
            assert!(
                !data.broker_addrs.is_empty(),
                "broker group {name} has no member"
            );
            assert!(
                self.cluster_addr_table
                    .get(&data.cluster)
                    .is_some_and(|names| names.contains(name)),
                "broker group {name} is missing from cluster {}",
                data.cluster
            );
        }
        for (topic, queues) in &self.topic_queue_table {
            assert!(!queues.is_empty(), "topic {topic} has no queues");
        }
    }
}

#[cfg(test)]
mod tests;
