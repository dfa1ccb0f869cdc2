//! What every broker component shares (`BrokerController`'s fields, as a value): settings,
//! the message store, the metadata tables and the client tables. Request processors hold an
//! `Arc<BrokerContext>`; nothing in it is tied to the server's lifetime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerStartError {
    /// A setting is invalid.
    #[error("bad broker setting: {0}")]
    Config(String),
    /// The message store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::message_store::StoreError),
    /// A metadata file could not be loaded.
    #[error(transparent)]
    Metadata(#[from] crate::store::metadata::MetadataError),
}

impl BrokerContext {
    /// Opens the store and loads the metadata tables: everything the processors need.
    /// `total_memory` sizes the store's hot-data window.
    pub async fn open(
        env: Env,
        config: BrokerConfig,
        store_config: MessageStoreConfig,
        server_config: NettyServerConfig,
        total_memory: u64,
    ) -> Result<Arc<Self>, BrokerStartError> {
        let broker_addr = format!("{}:{}", config.broker_ip1, server_config.listen_port);
        let store_host: SocketAddr = broker_addr.parse().map_err(|_| {
            BrokerStartError::Config(format!(
                "brokerIP1 {:?} with listenPort {} is not a socket address",
                config.broker_ip1, server_config.listen_port
            ))
        })?;
        let delay_levels = store_config
            .delay_levels()
            .map_err(BrokerStartError::Config)?;
        let root = store_config.store_path_root_dir.clone();
        let topic_config_manager = TopicConfigManager::new(
            env.disk.clone(),
            &root,
            env.clock.clone(),
            super::topic_config::TopicDefaults::from_config(&config, delay_levels.len() as i32),
        );
        topic_config_manager.load()?;
        let subscription_group_manager = SubscriptionGroupManager::new(
            env.disk.clone(),
            &root,
            env.clock.clone(),
            config.auto_create_subscription_group,
        );
        subscription_group_manager.load()?;
        let consumer_offset_manager = ConsumerOffsetManager::new(env.disk.clone(), &root);
        consumer_offset_manager.load()?;
        let store = MessageStore::open(env.clone(), store_config.clone(), total_memory).await?;
        Ok(Arc::new(Self {
            config,
            store_config,
            server_config,
            env,
            store,
            topic_config_manager,
            subscription_group_manager,
            consumer_offset_manager,
            producer_manager: ProducerManager::new(),
            consumer_manager: ConsumerManager::new(),
            rebalance_lock_manager: RebalanceLockManager::new(),
            broker_addr,
            store_host,
        }))
    }

    /// Whether this broker is a master.
    pub fn is_master(&self) -> bool {
        self.config.broker_id == crate::protocol::MASTER_ID
    }

    /// Waits until the topic table as it is now has been sent to the name servers, at most
    /// `registerBrokerTimeoutMills`: called after creating a topic and before answering the
    /// request that created it, as Java's broker registers at once.
    pub async fn topics_registered(&self) {
        let max = Duration::from_millis(self.config.register_broker_timeout_mills);
        self.topic_config_manager.wait_registered(max).await;
    }
}
