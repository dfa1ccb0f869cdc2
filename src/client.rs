//! The Rust client, ready to use: builders that bind the engine's client
//! ([`ferrocket_engine::client`]) to tokio sockets, the system clock and the local
//! filesystem, with the defaults a Java client has — the client IP of the outbound
//! interface, a per-process instance name, broadcasting offsets under
//! `~/.rocketmq_offsets`, and one client instance per client id in the process.
//!
//! Produce:
//!
//! ```no_run
//! use ferrocket::client::{Message, ProducerBuilder};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let producer = ProducerBuilder::new("my_producer_group")
//!     .namesrv_addr("127.0.0.1:9876")
//!     .start()
//!     .await?;
//! let mut message = Message::new("TopicTest", "hello")
//!     .with_tags("TagA")
//!     .with_keys("order-1");
//! let sent = producer.send(&mut message).await?;
//! println!("{:?} {:?} at {:?} offset {}", sent.status, sent.msg_id, sent.queue, sent.queue_offset);
//! producer.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Consume, concurrently or orderly:
//!
//! ```no_run
//! use ferrocket::client::{ConsumeStatus, PushConsumerBuilder};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let consumer = PushConsumerBuilder::new("my_consumer_group")
//!     .namesrv_addr("127.0.0.1:9876")
//!     .subscribe("TopicTest", "TagA || TagB")
//!     .consume_concurrently(|messages, _context| {
//!         for message in messages {
//!             println!("{} {:?}", message.msg_id, message.body);
//!         }
//!         ConsumeStatus::ConsumeSuccess
//!     })
//!     .start()
//!     .await?;
//! // ... later
//! consumer.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Or poll at the application's own pace:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use ferrocket::client::LitePullConsumerBuilder;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let consumer = LitePullConsumerBuilder::new("my_lite_group")
//!     .namesrv_addr("127.0.0.1:9876")
//!     .subscribe("TopicTest", "*")
//!     .start()
//!     .await?;
//! loop {
//!     let messages = consumer.poll(Duration::from_secs(1)).await?;
//!     if messages.is_empty() {
//!         break;
//!     }
//!     for message in messages {
//!         println!("{} {:?}", message.queue_offset, message.body);
//!     }
//! }
//! consumer.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ferrocket_engine::Env;
pub use ferrocket_engine::client::allocate::{
    AllocateMessageQueueStrategy, Averagely, AveragelyByCircle, ByConfig, ByMachineRoom,
    ConsistentHash,
};
pub use ferrocket_engine::client::api::{
    ClientError, PullResult, PullStatus, SendResult, SendStatus,
};
use ferrocket_engine::client::config::ClientConfig;
use ferrocket_engine::client::instance::ClientInstanceRegistry;
pub use ferrocket_engine::client::lite_pull_consumer::{
    LitePullConsumer, LitePullConsumerConfig, LitePullConsumerError, MessageQueueListener,
};
pub use ferrocket_engine::client::producer::{
    DefaultMqProducer, Message, ProducerConfig, ProducerError, SendFuture,
};
pub use ferrocket_engine::client::pull_consumer::{
    DefaultMqPullConsumer, PullConsumerConfig, PullConsumerError,
};
pub use ferrocket_engine::client::push_consumer::{
    ConsumeContext, ConsumeOrderlyContext, ConsumeOrderlyStatus, ConsumeStatus,
    DefaultMqPushConsumer, MessageListener, PushConsumerConfig, PushConsumerError,
};
pub use ferrocket_engine::client::transaction::{
    LocalTransactionState, TransactionListener, TransactionMqProducer, TransactionSendResult,
};
pub use ferrocket_engine::protocol::heartbeat::{ConsumeFromWhere, MessageModel, MessageQueue};
pub use ferrocket_engine::store::message::StoredMessage as MessageExt;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    /// The production environment (clock, network, filesystem) could not be set up.
    #[error("client environment: {0:#}")]
    Environment(anyhow::Error),
    /// The producer refused to start.
    #[error(transparent)]
    Producer(#[from] ProducerError),
    /// The push consumer refused to start.
    #[error(transparent)]
    PushConsumer(#[from] PushConsumerError),
    /// The pull consumer refused to start.
    #[error(transparent)]
    PullConsumer(#[from] PullConsumerError),
    /// The lite pull consumer refused its subscriptions, assignment or start.
    #[error(transparent)]
    LitePullConsumer(#[from] LitePullConsumerError),
    /// A push consumer was started without a listener.
    #[error("no message listener: call consume_concurrently or consume_orderly")]
    NoListener,
}

/// The process's client instances, shared by every client the builders make (Java's
/// `MQClientManager` singleton).
pub fn registry() -> Arc<ClientInstanceRegistry> {
    static REGISTRY: OnceLock<Arc<ClientInstanceRegistry>> = OnceLock::new();
    REGISTRY.get_or_init(Arc::default).clone()
}

/// The address of the interface this host reaches the network through (Java's
/// `RemotingUtil.getLocalAddress`), found by connecting a UDP socket, which sends nothing;
/// `127.0.0.1` when there is no route.
pub fn local_client_ip() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
        Ok(socket.local_addr()?.ip())
    };
    probe()
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// A per-process instance name (Java's `pid#nanoTime` for producers and clustering
/// consumers).
fn process_instance_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}#{nanos}", std::process::id())
}

/// The client settings every builder shares.
#[derive(Debug, Clone)]
struct Common {
    client: ClientConfig,
}

impl Common {
    fn new() -> Self {
        Self {
            client: ClientConfig {
                client_ip: local_client_ip().to_string(),
                ..ClientConfig::default()
            },
        }
    }

    fn env(&self) -> Result<Env, ClientBuildError> {
        crate::production_env().map_err(ClientBuildError::Environment)
    }

    /// Java's `changeInstanceNameToPID`: only a name left at its default changes.
    fn instance_config(&self) -> ClientConfig {
        let mut client = self.client.clone();
        client.change_instance_name_to_pid(process_instance_name());
        client
    }
}

/// The setters every builder has, on its `common` field.
macro_rules! common_setters {
    () => {
        /// The name servers, `host:port` separated by `;`.
        pub fn namesrv_addr(mut self, addr: impl Into<String>) -> Self {
            self.common.client.namesrv_addr = Some(addr.into());
            self
        }

        /// The client IP of the client id (default: the outbound interface's address).
        pub fn client_ip(mut self, ip: impl Into<String>) -> Self {
            self.common.client.client_ip = ip.into();
            self
        }

        /// The instance name of the client id; clients with the same id share one
        /// connection per broker (default: unique per process).
        pub fn instance_name(mut self, name: impl Into<String>) -> Self {
            self.common.client.instance_name = name.into();
            self
        }

        /// The full client settings, for what the setters do not cover.
        pub fn client_config(mut self, edit: impl FnOnce(&mut ClientConfig)) -> Self {
            edit(&mut self.common.client);
            self
        }
    };
}

/// Builds and starts a [`DefaultMqProducer`].
#[derive(Debug, Clone)]
pub struct ProducerBuilder {
    common: Common,
    config: ProducerConfig,
}

impl ProducerBuilder {
    /// A producer of `group` with Java's defaults.
    pub fn new(group: impl Into<String>) -> Self {
        Self {
            common: Common::new(),
            config: ProducerConfig::new(group, ""),
        }
    }

    common_setters!();

    /// `sendMsgTimeout` (3 s): the budget of one send, retries included.
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.config.send_msg_timeout = timeout;
        self
    }

    /// `retryTimesWhenSendFailed` (2): extra attempts on another broker.
    pub fn retry_times_when_send_failed(mut self, times: u32) -> Self {
        self.config.retry_times_when_send_failed = times;
        self
    }

    /// `sendLatencyFaultEnable` (off): avoid brokers that were slow or failing.
    pub fn send_latency_fault_enable(mut self, enable: bool) -> Self {
        self.config.send_latency_fault_enable = enable;
        self
    }

    /// The full producer settings, for what the setters do not cover.
    pub fn config(mut self, edit: impl FnOnce(&mut ProducerConfig)) -> Self {
        edit(&mut self.config);
        self
    }

    fn build(self) -> Result<DefaultMqProducer, ClientBuildError> {
        let mut config = self.config;
        config.client = self.common.instance_config();
        Ok(DefaultMqProducer::new(
            &self.common.env()?,
            registry(),
            config,
        ))
    }

    /// Starts the producer.
    pub async fn start(self) -> Result<DefaultMqProducer, ClientBuildError> {
        let producer = self.build()?;
        producer.start().await?;
        Ok(producer)
    }

    /// Starts a transactional producer of the group whose local transactions and
    /// check-backs `listener` answers.
    pub async fn start_transactional<L: TransactionListener>(
        self,
        listener: L,
    ) -> Result<TransactionMqProducer<L>, ClientBuildError> {
        let producer = TransactionMqProducer::with_producer(self.build()?, listener);
        producer.start().await?;
        Ok(producer)
    }
}

/// Builds and starts a [`DefaultMqPushConsumer`].
#[derive(Debug, Clone)]
pub struct PushConsumerBuilder {
    common: Common,
    config: PushConsumerConfig,
    listener: Option<MessageListener>,
}

impl PushConsumerBuilder {
    /// A clustering consumer of `group` with Java's defaults, subscribed to nothing yet.
    pub fn new(group: impl Into<String>) -> Self {
        let home_offsets = crate::home_dir().join(".rocketmq_offsets");
        let mut config = PushConsumerConfig::new(group, "");
        if let Ok(dir) = crate::disk_path(&home_offsets.to_string_lossy()) {
            config.local_offset_store_dir = dir;
        }
        Self {
            common: Common::new(),
            config,
            listener: None,
        }
    }

    common_setters!();

    /// Subscribes `topic` with a tag expression: `*`, `TagA`, `TagA || TagB`.
    pub fn subscribe(mut self, topic: impl Into<String>, expression: impl Into<String>) -> Self {
        self.config
            .subscriptions
            .insert(topic.into(), expression.into());
        self
    }

    /// Where a group with no committed offset starts (CONSUME_FROM_LAST_OFFSET).
    pub fn consume_from(mut self, from: ConsumeFromWhere) -> Self {
        self.config.consume_from_where = from;
        self
    }

    /// Clustering (each message to one consumer of the group) or broadcasting (to all).
    pub fn message_model(mut self, model: MessageModel) -> Self {
        self.config.message_model = model;
        self
    }

    /// How a clustering group shares queues (averagely).
    pub fn allocate_strategy(mut self, strategy: Arc<dyn AllocateMessageQueueStrategy>) -> Self {
        self.config.allocate_strategy = strategy;
        self
    }

    /// The full consumer settings, for what the setters do not cover.
    pub fn config(mut self, edit: impl FnOnce(&mut PushConsumerConfig)) -> Self {
        edit(&mut self.config);
        self
    }

    /// Consumes with `listener`, batches of a queue in parallel.
    pub fn consume_concurrently(
        mut self,
        listener: impl Fn(&[MessageExt], &ConsumeContext) -> ConsumeStatus + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(MessageListener::concurrently(listener));
        self
    }

    /// Consumes with `listener`, one batch of a queue at a time, in queue order.
    pub fn consume_orderly(
        mut self,
        listener: impl Fn(&[MessageExt], &mut ConsumeOrderlyContext) -> ConsumeOrderlyStatus
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.listener = Some(MessageListener::orderly(listener));
        self
    }

    /// Starts the consumer.
    pub async fn start(self) -> Result<DefaultMqPushConsumer, ClientBuildError> {
        let listener = self.listener.ok_or(ClientBuildError::NoListener)?;
        let mut config = self.config;
        // Java keeps broadcasting consumers on the default instance name.
        config.client = match config.message_model {
            MessageModel::Clustering => self.common.instance_config(),
            MessageModel::Broadcasting => self.common.client.clone(),
        };
        let consumer =
            DefaultMqPushConsumer::new(&self.common.env()?, registry(), config, listener);
        consumer.start().await?;
        Ok(consumer)
    }
}

/// Builds and starts a [`DefaultMqPullConsumer`] (explicit pulls of chosen queues).
#[derive(Debug, Clone)]
pub struct PullConsumerBuilder {
    common: Common,
    config: PullConsumerConfig,
}

impl PullConsumerBuilder {
    /// A pull consumer of `group` with Java's defaults.
    pub fn new(group: impl Into<String>) -> Self {
        Self {
            common: Common::new(),
            config: PullConsumerConfig::new(group, ""),
        }
    }

    common_setters!();

    /// Topics whose queue changes the consumer follows.
    pub fn register_topic(mut self, topic: impl Into<String>) -> Self {
        self.config.register_topics.insert(topic.into());
        self
    }

    /// The full consumer settings, for what the setters do not cover.
    pub fn config(mut self, edit: impl FnOnce(&mut PullConsumerConfig)) -> Self {
        edit(&mut self.config);
        self
    }

    /// Starts the consumer.
    pub async fn start(self) -> Result<DefaultMqPullConsumer, ClientBuildError> {
        let mut config = self.config;
        config.client = self.common.instance_config();
        let consumer = DefaultMqPullConsumer::new(&self.common.env()?, registry(), config);
        consumer.start().await?;
        Ok(consumer)
    }
}

/// Builds and starts a [`LitePullConsumer`]: background pulls into a bounded buffer, taken
/// out with [`LitePullConsumer::poll`].
#[derive(Debug, Clone)]
pub struct LitePullConsumerBuilder {
    common: Common,
    config: LitePullConsumerConfig,
    subscriptions: BTreeMap<String, String>,
    assigned: BTreeSet<MessageQueue>,
}

impl LitePullConsumerBuilder {
    /// A clustering consumer of `group` with Java's defaults, subscribed to nothing yet.
    pub fn new(group: impl Into<String>) -> Self {
        let home_offsets = crate::home_dir().join(".rocketmq_offsets");
        let mut config = LitePullConsumerConfig::new(group, "");
        if let Ok(dir) = crate::disk_path(&home_offsets.to_string_lossy()) {
            config.local_offset_store_dir = dir;
        }
        Self {
            common: Common::new(),
            config,
            subscriptions: BTreeMap::new(),
            assigned: BTreeSet::new(),
        }
    }

    common_setters!();

    /// Subscribes `topic` with a tag expression (`*`, `TagA || TagB`): the group shares its
    /// queues. Not together with [`assign`](Self::assign).
    pub fn subscribe(mut self, topic: impl Into<String>, expression: impl Into<String>) -> Self {
        self.subscriptions.insert(topic.into(), expression.into());
        self
    }

    /// Pulls exactly `queues`, without rebalance. Not together with
    /// [`subscribe`](Self::subscribe).
    pub fn assign(mut self, queues: impl IntoIterator<Item = MessageQueue>) -> Self {
        self.assigned.extend(queues);
        self
    }

    /// Where a queue with no committed offset starts (CONSUME_FROM_LAST_OFFSET).
    pub fn consume_from(mut self, from: ConsumeFromWhere) -> Self {
        self.config.consume_from_where = from;
        self
    }

    /// Clustering (each message to one consumer of the group) or broadcasting (to all).
    pub fn message_model(mut self, model: MessageModel) -> Self {
        self.config.message_model = model;
        self
    }

    /// How a clustering group shares queues (averagely).
    pub fn allocate_strategy(mut self, strategy: Arc<dyn AllocateMessageQueueStrategy>) -> Self {
        self.config.allocate_strategy = strategy;
        self
    }

    /// Whether polls record consume offsets every 5 s (on); off, call
    /// [`LitePullConsumer::commit_sync`].
    pub fn auto_commit(mut self, enable: bool) -> Self {
        self.config.auto_commit = enable;
        self
    }

    /// The full consumer settings, for what the setters do not cover.
    pub fn config(mut self, edit: impl FnOnce(&mut LitePullConsumerConfig)) -> Self {
        edit(&mut self.config);
        self
    }

    /// Subscribes or assigns, and starts the consumer.
    pub async fn start(self) -> Result<LitePullConsumer, ClientBuildError> {
        let mut config = self.config;
        // Java keeps broadcasting consumers on the default instance name.
        config.client = match config.message_model {
            MessageModel::Clustering => self.common.instance_config(),
            MessageModel::Broadcasting => self.common.client.clone(),
        };
        let consumer = LitePullConsumer::new(&self.common.env()?, registry(), config);
        for (topic, expression) in &self.subscriptions {
            consumer.subscribe(topic, expression).await?;
        }
        if !self.assigned.is_empty() {
            consumer.assign(&self.assigned)?;
        }
        consumer.start().await?;
        Ok(consumer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_fill_in_what_java_would() {
        let builder = PushConsumerBuilder::new("cg")
            .namesrv_addr("10.0.0.1:9876")
            .subscribe("T", "A || B");
        assert_eq!(builder.config.subscriptions["T"], "A || B");
        assert!(
            builder
                .config
                .local_offset_store_dir
                .ends_with(".rocketmq_offsets")
        );
        assert!(!builder.config.local_offset_store_dir.starts_with('/'));
        let client = builder.common.instance_config();
        assert_eq!(client.namesrv_addr.as_deref(), Some("10.0.0.1:9876"));
        assert!(
            client
                .instance_name
                .starts_with(&format!("{}#", std::process::id()))
        );
        let named = ProducerBuilder::new("pg")
            .instance_name("mine")
            .common
            .instance_config();
        assert_eq!(named.instance_name, "mine");
    }

    #[test]
    fn the_lite_pull_builder_keeps_javas_defaults_and_what_it_is_told() {
        let builder = LitePullConsumerBuilder::new("lite_cg")
            .namesrv_addr("10.0.0.1:9876")
            .subscribe("T", "A || B")
            .auto_commit(false);
        assert_eq!(builder.subscriptions["T"], "A || B");
        assert!(builder.assigned.is_empty());
        assert!(!builder.config.auto_commit);
        assert_eq!(builder.config.pull_batch_size, 10);
        assert!(
            builder
                .config
                .local_offset_store_dir
                .ends_with(".rocketmq_offsets")
        );
    }

    #[tokio::test]
    async fn a_push_consumer_without_listener_is_refused() {
        let refused = PushConsumerBuilder::new("cg")
            .subscribe("T", "*")
            .start()
            .await;
        assert!(matches!(refused, Err(ClientBuildError::NoListener)));
    }
}
