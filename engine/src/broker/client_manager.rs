//! The clients connected to the broker (`ProducerManager`, `ConsumerManager`): which
//! connection belongs to which producer and consumer group, each group's subscriptions, and
//! housekeeping that drops clients silent for 120 s or whose connection closed.
//!
//! A consumer group's membership changing is reported to the caller, which tells the
//! group's consumers (NOTIFY_CONSUMER_IDS_CHANGED) so they re-balance at once.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::clock::Instant;
use crate::protocol::heartbeat::{ConsumeFromWhere, ConsumeType, MessageModel, SubscriptionData};
use crate::remoting::LanguageCode;
use crate::remoting::transport::Channel;

/// A client silent this long is dropped (`CHANNEL_EXPIRED_TIMEOUT`).
pub const CHANNEL_EXPIRED_TIMEOUT: Duration = Duration::from_secs(120);

/// One client connection of a group (`ClientChannelInfo`).
#[derive(Debug, Clone)]
pub struct ClientChannelInfo {
    /// The connection.
    pub channel: Channel,
    /// The client's id (`ip@instance`).
    pub client_id: String,
    /// The client's language.
    pub language: LanguageCode,
    /// The client's version.
    pub version: i32,
    /// When it last sent a heartbeat.
    pub last_update: Instant,
}

/// A consumer group: its connections and subscriptions (`ConsumerGroupInfo`).
#[derive(Debug, Clone)]
pub struct ConsumerGroupInfo {
    /// The group's name.
    pub group_name: String,
    /// Connections by channel id.
    pub channels: BTreeMap<u64, ClientChannelInfo>,
    /// Subscriptions by topic.
    pub subscriptions: BTreeMap<String, SubscriptionData>,
    /// Push or pull.
    pub consume_type: ConsumeType,
    /// Clustering or broadcasting.
    pub message_model: MessageModel,
    /// Where new consumers start.
    pub consume_from_where: ConsumeFromWhere,
    /// When the group last changed.
    pub last_update: Instant,
}

impl ConsumerGroupInfo {
    /// The client ids of the group, sorted and without duplicates.
    pub fn client_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .channels
            .values()
            .map(|info| info.client_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// A consumer registration from a heartbeat.
#[derive(Debug, Clone)]
pub struct ConsumerRegistration {
    /// The group.
    pub group: String,
    /// The connection.
    pub client: ClientChannelInfo,
    /// Push or pull.
    pub consume_type: ConsumeType,
    /// Clustering or broadcasting.
    pub message_model: MessageModel,
    /// Where new consumers start.
    pub consume_from_where: ConsumeFromWhere,
    /// The subscriptions sent.
    pub subscriptions: Vec<SubscriptionData>,
}

/// The consumer groups. See the module docs.
#[derive(Debug, Default)]
pub struct ConsumerManager {
    groups: Mutex<BTreeMap<String, ConsumerGroupInfo>>,
}

impl ConsumerManager {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or refreshes) a consumer; returns whether the group's membership changed
    /// (a new connection), in which case its consumers should be told.
    pub fn register_consumer(&self, registration: ConsumerRegistration, now: Instant) -> bool {
        let mut groups = self.lock();
        let info = groups
            .entry(registration.group.clone())
            .or_insert_with(|| ConsumerGroupInfo {
                group_name: registration.group.clone(),
                channels: BTreeMap::new(),
                subscriptions: BTreeMap::new(),
                consume_type: registration.consume_type,
                message_model: registration.message_model,
                consume_from_where: registration.consume_from_where,
                last_update: now,
            });
        info.consume_type = registration.consume_type;
        info.message_model = registration.message_model;
        info.consume_from_where = registration.consume_from_where;
        info.last_update = now;
        let id = registration.client.channel.id();
        let mut client = registration.client;
        client.last_update = now;
        let joined = info.channels.insert(id, client).is_none();
        for subscription in registration.subscriptions {
            let newer = info
                .subscriptions
                .get(&subscription.topic)
                .is_none_or(|old| {
                    old.sub_version < subscription.sub_version || old != &subscription
                });
            if newer {
                info.subscriptions
                    .insert(subscription.topic.clone(), subscription);
            }
        }
        joined
    }

    /// Removes a consumer's connection from a group; whether the group changed.
    pub fn unregister_consumer(&self, group: &str, channel_id: u64) -> bool {
        let mut groups = self.lock();
        let Some(info) = groups.get_mut(group) else {
            return false;
        };
        let removed = info.channels.remove(&channel_id).is_some();
        if info.channels.is_empty() {
            groups.remove(group);
        }
        removed
    }

    /// A connection closed: removes it from every group; returns the groups that changed
    /// and still have members (to notify).
    pub fn do_channel_close_event(&self, channel_id: u64) -> Vec<String> {
        let mut groups = self.lock();
        let mut changed = Vec::new();
        groups.retain(|name, info| {
            if info.channels.remove(&channel_id).is_some() {
                if info.channels.is_empty() {
                    return false;
                }
                changed.push(name.clone());
            }
            true
        });
        changed
    }

    /// Drops connections silent for [`CHANNEL_EXPIRED_TIMEOUT`]; returns them (to close)
    /// and the groups that changed.
    pub fn scan_not_active_channel(&self, now: Instant) -> (Vec<Channel>, Vec<String>) {
        let mut groups = self.lock();
        let mut expired = Vec::new();
        let mut changed = Vec::new();
        groups.retain(|name, info| {
            let before = info.channels.len();
            info.channels.retain(|_, client| {
                let alive = client.last_update + CHANNEL_EXPIRED_TIMEOUT > now;
                if !alive {
                    expired.push(client.channel.clone());
                }
                alive
            });
            if info.channels.len() != before {
                changed.push(name.clone());
            }
            !info.channels.is_empty()
        });
        (expired, changed)
    }

    /// A group's information.
    pub fn consumer_group_info(&self, group: &str) -> Option<ConsumerGroupInfo> {
        self.lock().get(group).cloned()
    }

    /// A group's subscription of `topic`, from its heartbeats.
    pub fn find_subscription_data(&self, group: &str, topic: &str) -> Option<SubscriptionData> {
        self.lock().get(group)?.subscriptions.get(topic).cloned()
    }

    /// The connections of a group (to notify).
    pub fn channels_of_group(&self, group: &str) -> Vec<Channel> {
        self.lock()
            .get(group)
            .map(|info| info.channels.values().map(|c| c.channel.clone()).collect())
            .unwrap_or_default()
    }

    /// The groups subscribed to `topic` (QUERY_TOPIC_CONSUME_BY_WHO).
    pub fn query_topic_consume_by_who(&self, topic: &str) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, info)| info.subscriptions.contains_key(topic))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Every group's name.
    pub fn group_names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, ConsumerGroupInfo>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The producer groups (`ProducerManager`): connections by group, for transaction checks.
#[derive(Debug, Default)]
pub struct ProducerManager {
    groups: Mutex<BTreeMap<String, BTreeMap<u64, ClientChannelInfo>>>,
}

impl ProducerManager {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or refreshes) a producer connection.
    pub fn register_producer(&self, group: &str, mut client: ClientChannelInfo, now: Instant) {
        client.last_update = now;
        self.lock()
            .entry(group.to_owned())
            .or_default()
            .insert(client.channel.id(), client);
    }

    /// Removes a producer connection from a group.
    pub fn unregister_producer(&self, group: &str, channel_id: u64) {
        let mut groups = self.lock();
        if let Some(channels) = groups.get_mut(group) {
            channels.remove(&channel_id);
            if channels.is_empty() {
                groups.remove(group);
            }
        }
    }

    /// A connection closed: removes it everywhere.
    pub fn do_channel_close_event(&self, channel_id: u64) {
        self.lock().retain(|_, channels| {
            channels.remove(&channel_id);
            !channels.is_empty()
        });
    }

    /// Drops connections silent for [`CHANNEL_EXPIRED_TIMEOUT`]; returns them to close.
    pub fn scan_not_active_channel(&self, now: Instant) -> Vec<Channel> {
        let mut expired = Vec::new();
        self.lock().retain(|_, channels| {
            channels.retain(|_, client| {
                let alive = client.last_update + CHANNEL_EXPIRED_TIMEOUT > now;
                if !alive {
                    expired.push(client.channel.clone());
                }
                alive
            });
            !channels.is_empty()
        });
        expired
    }

    /// An open connection of a producer of `group` (for CHECK_TRANSACTION_STATE).
    pub fn available_channel(&self, group: &str) -> Option<Channel> {
        self.lock()
            .get(group)?
            .values()
            .map(|c| c.channel.clone())
            .find(|channel| !channel.is_closed())
    }

    /// Every group with its connections' client ids (GET_PRODUCER_CONNECTION_LIST).
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        self.lock()
            .iter()
            .map(|(name, channels)| {
                (
                    name.clone(),
                    channels.values().map(|c| c.client_id.clone()).collect(),
                )
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, BTreeMap<u64, ClientChannelInfo>>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }
}
