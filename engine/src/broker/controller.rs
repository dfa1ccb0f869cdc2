//! The broker's wiring (`BrokerController`): opens the store and the metadata tables, serves
//! the request processors on the remoting server, runs the background services, and
//! registers with the name servers — at start, every `registerNameServerPeriod`, and at once
//! whenever the topic table changes. A master also runs the schedule service, which delivers
//! delayed messages and consumer retries when they are due. A clean shutdown unregisters,
//! persists the tables (the schedule offsets too) and closes the store (removing its `abort`
//! marker).
//!
//! Overload protection, as Java's `BrokerFastFailure` and `protectBroker`: sends are turned
//! away while the store's page cache is busy (the send processor's `reject_request`) and,
//! with `brokerFastFailureEnable`, the send queue is purged meanwhile (`[PCBUSY_CLEAN_QUEUE]`)
//! and every queue answers requests that waited too long (`[TIMEOUT_CLEAN_QUEUE]`); slow
//! consumer groups are disabled by [`run_protect_broker`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::config::BrokerConfig;
use super::context::{BrokerContext, BrokerStartError};
use super::outer_api::{
    BrokerIdentity, BrokerOuterApi, RegistrationSchedule, run_periodic_registration,
};
use super::processor::admin::AdminBrokerProcessor;
use super::processor::client_manage::{
    ClientHousekeeping, ClientManageProcessor, ConsumerManageProcessor,
};
use super::processor::pull::PullMessageProcessor;
use super::processor::query::QueryMessageProcessor;
use super::processor::send::SendMessageProcessor;
use super::protect::run_protect_broker;
use crate::Env;
use crate::clock::ClockExt;
use crate::protocol::RegisterBrokerBody;
use crate::remoting::request_code as rc;
use crate::remoting::transport::{
    AbortOnDrop, ClientConfig, ExecutorConfig, NettyServerConfig, ProcessorTable, RemotingClient,
    RemotingServer,
};
use crate::store::config::{BrokerRole, MessageStoreConfig};
use crate::store::schedule::ScheduleMessageService;

/// A running broker. See the module docs.
pub struct BrokerController {
    context: Arc<BrokerContext>,
    server: Option<RemotingServer>,
    outer_api: BrokerOuterApi,
    identity: BrokerIdentity,
    tasks: Vec<AbortOnDrop>,
    /// Delivers delayed messages; `None` on a slave (`handleScheduleMessageService`).
    schedule: Option<Arc<ScheduleMessageService>>,
}

impl std::fmt::Debug for BrokerController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerController")
            .field("broker_addr", &self.context.broker_addr)
            .finish_non_exhaustive()
    }
}

fn executor(workers: usize, capacity: usize, wait_max_ms: Option<u64>) -> ExecutorConfig {
    let mut config = ExecutorConfig::new(workers, capacity);
    config.queue_wait_max = wait_max_ms.map(Duration::from_millis);
    config
}

impl BrokerController {
    /// Opens everything, starts serving on `bindAddress:listenPort` and registers.
    pub async fn start(
        env: Env,
        config: BrokerConfig,
        store_config: MessageStoreConfig,
        server_config: NettyServerConfig,
        total_memory: u64,
    ) -> Result<Self, BrokerStartError> {
        let context = BrokerContext::open(
            env.clone(),
            config,
            store_config,
            server_config,
            total_memory,
        )
        .await?;
        let config = &context.config;
        let fast_fail = |ms: u64| config.broker_fast_failure_enable.then_some(ms);

        let send = Arc::new(SendMessageProcessor::new(context.clone()));
        let mut send_executor = executor(
            config.send_message_thread_pool_nums.max(4),
            config.send_thread_pool_queue_capacity,
            fast_fail(config.wait_time_mills_in_send_queue),
        );
        if config.broker_fast_failure_enable {
            let store = context.store.clone();
            send_executor.purge_when = Some(Arc::new(move || store.is_os_page_cache_busy()));
        }
        let pull = PullMessageProcessor::new(context.clone());
        let client_manage = Arc::new(ClientManageProcessor::new(context.clone()));
        let consumer_manage = Arc::new(ConsumerManageProcessor::new(context.clone()));
        let query = Arc::new(QueryMessageProcessor::new(context.clone()));
        let admin = Arc::new(AdminBrokerProcessor::new(context.clone()));
        let processors = ProcessorTable::new()
            .register(
                &[
                    rc::SEND_MESSAGE,
                    rc::SEND_MESSAGE_V2,
                    rc::SEND_BATCH_MESSAGE,
                    rc::CONSUMER_SEND_MSG_BACK,
                ],
                send,
                send_executor,
            )
            .register(
                &[rc::PULL_MESSAGE],
                pull.clone(),
                executor(
                    config.pull_message_thread_pool_nums,
                    config.pull_thread_pool_queue_capacity,
                    fast_fail(config.wait_time_mills_in_pull_queue),
                ),
            )
            .register(
                &[rc::QUERY_MESSAGE, rc::VIEW_MESSAGE_BY_ID],
                query,
                executor(
                    config.query_message_thread_pool_nums,
                    config.query_thread_pool_queue_capacity,
                    None,
                ),
            )
            .register(
                &[
                    rc::HEART_BEAT,
                    rc::UNREGISTER_CLIENT,
                    rc::CHECK_CLIENT_CONFIG,
                ],
                client_manage,
                executor(
                    config.heartbeat_thread_pool_nums,
                    config.heartbeat_thread_pool_queue_capacity,
                    fast_fail(config.wait_time_mills_in_heartbeat_queue),
                ),
            )
            .register(
                &[
                    rc::GET_CONSUMER_LIST_BY_GROUP,
                    rc::UPDATE_CONSUMER_OFFSET,
                    rc::QUERY_CONSUMER_OFFSET,
                    rc::LOCK_BATCH_MQ,
                    rc::UNLOCK_BATCH_MQ,
                ],
                consumer_manage,
                executor(
                    config.consumer_manage_thread_pool_nums,
                    config.consumer_manager_thread_pool_queue_capacity,
                    None,
                ),
            )
            .register_default(
                admin,
                executor(config.admin_broker_thread_pool_nums, 10_000, None),
            );
        let bind_addr = context
            .server_config
            .bind_socket_addr()
            .map_err(|e| BrokerStartError::Config(e.to_string()))?;
        let housekeeping = Arc::new(ClientHousekeeping::new(context.clone()));
        let server = RemotingServer::start(
            env.net.clone(),
            env.clock.clone(),
            context.server_config.to_server_config(bind_addr),
            processors,
            Some(housekeeping.clone()),
        )
        .await
        .map_err(|e| BrokerStartError::Config(format!("cannot listen on {bind_addr}: {e}")))?;

        context.store.set_arrival_listener(pull.arrival_listener());
        context.store.start();
        let schedule = if context.store_config.broker_role == BrokerRole::Slave {
            None
        } else {
            let schedule = ScheduleMessageService::load(&context.env, context.store.clone())?;
            schedule.start();
            Some(schedule)
        };

        let client = Arc::new(RemotingClient::new(
            env.net.clone(),
            env.clock.clone(),
            env.rng.clone(),
            ClientConfig::default(),
            ProcessorTable::new(),
            None,
        ));
        let mut outer_api = BrokerOuterApi::new(client);
        outer_api.timeout = Duration::from_millis(config.register_broker_timeout_mills);
        outer_api.compressed = config.compressed_register;
        let ha_port = context.server_config.listen_port.saturating_add(1);
        let identity = BrokerIdentity {
            cluster_name: config.broker_cluster_name.clone(),
            broker_name: config.broker_name.clone(),
            broker_id: config.broker_id,
            broker_addr: context.broker_addr.clone(),
            ha_server_addr: format!("{}:{ha_port}", config.broker_ip2),
        };

        let mut tasks = vec![
            AbortOnDrop(tokio::spawn(pull.clone().run_hold_service())),
            AbortOnDrop(tokio::spawn(housekeeping.run_scan())),
            AbortOnDrop(tokio::spawn(persist_consumer_offsets(context.clone()))),
            AbortOnDrop(tokio::spawn(run_protect_broker(
                context.clone(),
                pull.disk_fall_behind().clone(),
            ))),
        ];
        context.topic_config_manager.registration_driven();
        tasks.push(AbortOnDrop(tokio::spawn(registration_loop(
            context.clone(),
            outer_api.clone(),
            identity.clone(),
        ))));
        tracing::info!(broker_addr = %context.broker_addr, %bind_addr, "broker started");
        Ok(Self {
            context,
            server: Some(server),
            outer_api,
            identity,
            tasks,
            schedule,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server
            .as_ref()
            .map(RemotingServer::local_addr)
            .expect("the server lives as long as the controller")
    }

    /// The shared state (tests and the simulator inspect it).
    pub fn context(&self) -> &Arc<BrokerContext> {
        &self.context
    }

    /// Unregisters, stops serving, persists the tables and closes the store cleanly.
    pub async fn shutdown(mut self) -> Result<(), BrokerStartError> {
        self.tasks.clear();
        let namesrv_addrs = self.context.config.namesrv_addrs();
        self.outer_api
            .unregister_broker_all(&namesrv_addrs, &self.identity)
            .await;
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
        self.context.consumer_offset_manager.persist().await?;
        self.context.topic_config_manager.persist().await?;
        self.context.subscription_group_manager.persist().await?;
        if let Some(schedule) = self.schedule.take() {
            schedule.shutdown().await?;
        }
        self.context.store.shutdown().await?;
        tracing::info!("broker shut down cleanly");
        Ok(())
    }
}

/// Registers at start, then every period and at once whenever the topic table changes
/// (after persisting it).
async fn registration_loop(
    context: Arc<BrokerContext>,
    api: BrokerOuterApi,
    identity: BrokerIdentity,
) {
    let schedule = RegistrationSchedule::new(
        context.config.register_name_server_period,
        context.config.force_register,
    );
    let topics = context.clone();
    let rounds = context.clone();
    let changes = context.clone();
    run_periodic_registration(
        api,
        context.env.clock.clone(),
        context.config.namesrv_addrs(),
        identity,
        schedule,
        move || RegisterBrokerBody {
            filter_server_list: Vec::new(),
            topic_config_serialize_wrapper: topics.topic_config_manager.serialize_wrapper(),
        },
        |_, _| {},
        move |version| {
            rounds
                .topic_config_manager
                .registration_sent(version.counter);
        },
        // Whoever changes the table persists it; registering at once lets the request that
        // changed it be answered as soon as the name servers know.
        move || {
            let context = changes.clone();
            async move { context.topic_config_manager.changed().await }
        },
    )
    .await;
}

/// Persists consumer offsets every `flushConsumerOffsetInterval`.
async fn persist_consumer_offsets(context: Arc<BrokerContext>) {
    let clock = context.env.clock.clone();
    let interval = Duration::from_millis(context.config.flush_consumer_offset_interval.max(100));
    loop {
        clock.sleep(interval).await;
        if let Err(error) = context.consumer_offset_manager.persist().await {
            tracing::error!(%error, "persisting consumer offsets failed");
        }
    }
}
