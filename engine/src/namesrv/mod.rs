//! The name server: a registry of brokers and topic routes that clients ask where to send
//! and pull.
//!
//! - [`route_info`]: the route registry, a pure state structure;
//! - [`kv_config`]: namespaced key/value settings persisted through the Disk trait;
//! - [`processor`]: the request processor answering every code the Java name server does;
//! - [`NamesrvController`]: wiring — the remoting server, the processor, the 10 s liveness
//!   scan, and the connection listener that drops a broker whose connection closes.

pub mod kv_config;
pub mod processor;
pub mod route_info;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::Env;
use crate::clock::{ClockExt, SharedClock};
use crate::remoting::transport::{
    AbortOnDrop, Channel, ChannelEvent, ChannelEventListener, ExecutorConfig, NettyServerConfig,
    ProcessorTable, RemotingServer,
};

use kv_config::{KvConfigError, KvConfigManager};
use processor::NamesrvProcessor;
use route_info::RouteInfoManager;

crate::properties_config! {
    /// Name-server settings (`NamesrvConfig`), bound to the Java property keys.
    pub struct NamesrvConfig {
        /// `ROCKETMQ_HOME`; informational.
        rocketmq_home: String = String::new(); "rocketmqHome",
        /// Where the KV settings are kept (relative to the name server's disk).
        kv_config_path: String = "namesrv/kvConfig.json".into(); "kvConfigPath",
        /// Where `UPDATE_NAMESRV_CONFIG` would persist settings.
        config_store_path: String = "namesrv/namesrv.properties".into(); "configStorePath",
        /// Environment name (used by Java's cluster-test mode).
        product_env_name: String = "center".into(); "productEnvName",
        /// Java's cluster-test mode; accepted, without effect here.
        cluster_test: bool = false; "clusterTest",
        /// Whether routes carry `orderTopicConf` from the ORDER_TOPIC_CONFIG namespace.
        order_message_enable: bool = false; "orderMessageEnable",
        /// Keys UPDATE_NAMESRV_CONFIG may not change, `;`-separated.
        config_black_list: String = "configBlackList;configStorePath;kvConfigPath".into(); "configBlackList",
    }
}

/// How often the liveness scan runs (`scanNotActiveBroker`, every 10 s after 5 s).
pub const SCAN_NOT_ACTIVE_BROKER_INTERVAL: Duration = Duration::from_secs(10);

/// Why the name server could not start.
#[derive(Debug, thiserror::Error)]
pub enum NamesrvError {
    /// The KV settings could not be loaded.
    #[error(transparent)]
    KvConfig(#[from] KvConfigError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

/// State shared by the processor, the scan and the connection listener.
#[derive(Debug)]
pub struct NamesrvState {
    /// Settings as started.
    pub config: NamesrvConfig,
    /// Server settings as started.
    pub server_config: NettyServerConfig,
    live_config: Mutex<NamesrvConfig>,
    route: Mutex<RouteInfoManager>,
    /// The KV settings.
    pub kv_config: KvConfigManager,
    /// The node's clock.
    pub clock: SharedClock,
    /// The node's disk (KV settings, persisted config).
    pub disk: crate::disk::SharedDisk,
}

impl NamesrvState {
    /// The route registry, locked. Keep the guard short; never hold it across an await.
    pub fn route(&self) -> MutexGuard<'_, RouteInfoManager> {
        self.route
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The settings as changed at run time by UPDATE_NAMESRV_CONFIG.
    pub fn live_config(&self) -> MutexGuard<'_, NamesrvConfig> {
        self.live_config
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Drops a broker's routes when the connection it registered over closes
/// (`BrokerHousekeepingService`).
struct BrokerHousekeeping {
    state: Arc<NamesrvState>,
}

impl ChannelEventListener for BrokerHousekeeping {
    fn on_event(&self, channel: &Channel, event: &ChannelEvent) {
        if matches!(
            event,
            ChannelEvent::Close | ChannelEvent::Idle | ChannelEvent::Exception(_)
        ) {
            self.state
                .route()
                .on_channel_destroy(&channel.peer_addr().to_string(), channel.id());
        }
    }
}

/// A running name server.
pub struct NamesrvController {
    state: Arc<NamesrvState>,
    server: Option<RemotingServer>,
    _scan: AbortOnDrop,
}

impl std::fmt::Debug for NamesrvController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamesrvController")
            .field("local_addr", &self.local_addr())
            .finish_non_exhaustive()
    }
}

impl NamesrvController {
    /// Loads the KV settings, binds `bindAddress:listenPort` and starts serving.
    pub async fn start(
        env: Env,
        config: NamesrvConfig,
        server_config: NettyServerConfig,
    ) -> Result<Self, NamesrvError> {
        let kv_config = KvConfigManager::load(env.disk.clone(), config.kv_config_path.clone())?;
        let state = Arc::new(NamesrvState {
            live_config: Mutex::new(config.clone()),
            config,
            server_config: server_config.clone(),
            route: Mutex::new(RouteInfoManager::new()),
            kv_config,
            clock: env.clock.clone(),
            disk: env.disk.clone(),
        });
        let workers = usize::try_from(server_config.server_worker_threads)
            .unwrap_or(1)
            .max(1);
        let processors = ProcessorTable::new().register_default(
            Arc::new(NamesrvProcessor::new(state.clone())),
            ExecutorConfig::new(workers, 10_000),
        );
        let bind_addr = server_config
            .bind_socket_addr()
            .map_err(|source| NamesrvError::Bind {
                addr: server_config.bind_address.clone(),
                source,
            })?;
        let server = RemotingServer::start(
            env.net.clone(),
            env.clock.clone(),
            server_config.to_server_config(bind_addr),
            processors,
            Some(Arc::new(BrokerHousekeeping {
                state: state.clone(),
            })),
        )
        .await
        .map_err(|source| NamesrvError::Bind {
            addr: bind_addr.to_string(),
            source,
        })?;
        let scan = AbortOnDrop(tokio::spawn(scan_not_active_brokers(
            state.clone(),
            server.channels_handle(),
        )));
        Ok(Self {
            state,
            server: Some(server),
            _scan: scan,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server
            .as_ref()
            .map(RemotingServer::local_addr)
            .expect("the server lives as long as the controller")
    }

    /// The shared state, for inspection by tests and the simulator.
    pub fn state(&self) -> &Arc<NamesrvState> {
        &self.state
    }

    /// Stops serving and closes every connection.
    pub fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

async fn scan_not_active_brokers(
    state: Arc<NamesrvState>,
    channels: crate::remoting::transport::ChannelTable,
) {
    let clock = state.clock.clone();
    clock.sleep(Duration::from_secs(5)).await;
    loop {
        let removed = state.route().scan_not_active_brokers(clock.instant());
        for broker in removed {
            if let Some(id) = broker.channel_id
                && let Some(channel) = crate::remoting::transport::find_channel(&channels, id)
            {
                channel.close();
            }
        }
        clock.sleep(SCAN_NOT_ACTIVE_BROKER_INTERVAL).await;
    }
}
