//! What every broker component shares (`BrokerController`'s fields, as a value): settings,
//! the message store, the metadata tables and the client tables. Request processors hold an
//! `Arc<BrokerContext>`; nothing in it is tied to the server's lifetime.

use std::net::SocketAddr;
use std::sync::Arc;

use super::client_manager::{ConsumerManager, ProducerManager};
use super::config::BrokerConfig;
use super::consumer_offset::ConsumerOffsetManager;
use super::rebalance_lock::RebalanceLockManager;
use super::subscription_group::SubscriptionGroupManager;
use super::topic_config::TopicConfigManager;
use crate::Env;
use crate::remoting::transport::NettyServerConfig;
use crate::store::config::MessageStoreConfig;
use crate::store::message_store::MessageStore;

/// The broker's shared state. See the module docs.
#[derive(Debug)]
pub struct BrokerContext {
    /// Broker settings.
    pub config: BrokerConfig,
    /// Store settings.
    pub store_config: MessageStoreConfig,
    /// Server settings.
    pub server_config: NettyServerConfig,
    /// Time, network, disk and randomness.
    pub env: Env,
    /// The message store.
    pub store: Arc<MessageStore>,
    /// The broker's topics.
    pub topic_config_manager: TopicConfigManager,
    /// Consumer-group settings.
    pub subscription_group_manager: SubscriptionGroupManager,
    /// Committed consumer offsets.
    pub consumer_offset_manager: ConsumerOffsetManager,
    /// Connected producers.
    pub producer_manager: ProducerManager,
    /// Connected consumers and their subscriptions.
    pub consumer_manager: ConsumerManager,
    /// Queue locks of orderly consumers.
    pub rebalance_lock_manager: RebalanceLockManager,
    /// `brokerIP1:listenPort`: the address registered with the name servers.
    pub broker_addr: String,
    /// The address written into records and offset message ids.
    pub store_host: SocketAddr,
}

impl BrokerContext {
    /// Whether this broker is a master.
    pub fn is_master(&self) -> bool {
        self.config.broker_id == crate::protocol::MASTER_ID
    }
}
