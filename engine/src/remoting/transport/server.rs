//! The remoting server: accepts connections and serves them with a processor table.
//!
//! Used by the name server and the broker. Each accepted connection becomes a
//! [`Channel`]; the server keeps them until they close so it can reach a client later (a
//! broker notifying a consumer group) and close them all on shutdown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::AbortOnDrop;
use super::channel::{Channel, ChannelConfig, ChannelEventListener, ChannelHooks, EventSink};
use super::dispatch::{Dispatcher, ProcessorTable};
use super::error::RemotingError;
use super::permits::InvokePermits;
use crate::clock::{ClockExt, SharedClock};
use crate::net::{Listener, SharedNet};
use crate::remoting::RemotingCommand;

/// Server settings (`NettyServerConfig`).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port.
    pub bind_addr: SocketAddr,
    /// Per-connection settings.
    pub channel: ChannelConfig,
    /// Async requests to clients in flight at once (`serverAsyncSemaphoreValue`, 64).
    pub async_permits: usize,
    /// Oneway requests to clients being written at once (`serverOnewaySemaphoreValue`, 256).
    pub oneway_permits: usize,
}

impl ServerConfig {
    /// Listens on `bind_addr` with default connection settings.
    pub fn new(bind_addr: SocketAddr) -> Self {
        Self {
            bind_addr,
            channel: ChannelConfig::default(),
            async_permits: 64,
            oneway_permits: 256,
        }
    }
}

/// The open connections of a server, by id.
pub type ChannelTable = Arc<Mutex<BTreeMap<u64, Channel>>>;

/// The open connection `id` of `table`, if it is still open.
pub fn find_channel(table: &ChannelTable, id: u64) -> Option<Channel> {
    table
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(&id)
        .cloned()
}

crate::properties_config! {
    /// Server settings as RocketMQ names them (`NettyServerConfig`). Thread, buffer and
    /// allocator keys are accepted for compatibility; the transport sizes itself.
    pub struct NettyServerConfig {
        /// Port to listen on (name server 9876, broker 10911).
        listen_port: u16 = 9876; "listenPort",
        /// Address to bind (`0.0.0.0`: every interface).
        bind_address: String = "0.0.0.0".into(); "bindAddress",
        /// Workers of the default request executor.
        server_worker_threads: i32 = 8; "serverWorkerThreads",
        /// Accepted for compatibility.
        server_callback_executor_threads: i32 = 0; "serverCallbackExecutorThreads",
        /// Accepted for compatibility.
        server_selector_threads: i32 = 3; "serverSelectorThreads",
        /// Oneway requests the server may have in flight to clients.
        server_oneway_semaphore_value: i32 = 256; "serverOnewaySemaphoreValue",
        /// Async requests the server may have in flight to clients.
        server_async_semaphore_value: i32 = 64; "serverAsyncSemaphoreValue",
        /// Idle connections are closed after this many seconds.
        server_channel_max_idle_time_seconds: i32 = 120; "serverChannelMaxIdleTimeSeconds",
        /// Accepted for compatibility.
        server_socket_snd_buf_size: i32 = 65535; "serverSocketSndBufSize",
        /// Accepted for compatibility.
        server_socket_rcv_buf_size: i32 = 65535; "serverSocketRcvBufSize",
        /// Accepted for compatibility.
        server_pooled_byte_buf_allocator_enable: bool = true; "serverPooledByteBufAllocatorEnable",
        /// Accepted for compatibility.
        use_epoll_native_selector: bool = false; "useEpollNativeSelector",
    }
}

impl NettyServerConfig {
    /// `bindAddress:listenPort` as a socket address.
    pub fn bind_socket_addr(&self) -> std::io::Result<SocketAddr> {
        let ip: std::net::IpAddr = self.bind_address.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("bindAddress {:?} is not an IP address", self.bind_address),
            )
        })?;
        Ok(SocketAddr::new(ip, self.listen_port))
    }

    /// The transport's settings for listening on `bind_addr`.
    pub fn to_server_config(&self, bind_addr: SocketAddr) -> ServerConfig {
        let mut config = ServerConfig::new(bind_addr);
        let idle_seconds = u64::try_from(self.server_channel_max_idle_time_seconds).unwrap_or(120);
        config.channel.idle_timeout = Duration::from_secs(idle_seconds.max(1));
        config.async_permits = usize::try_from(self.server_async_semaphore_value).unwrap_or(64);
        config.oneway_permits = usize::try_from(self.server_oneway_semaphore_value).unwrap_or(256);
        config
    }
}

/// A listening remoting server. Dropping it stops accepting; [`shutdown`](Self::shutdown)
/// also closes every connection.
pub struct RemotingServer {
    local_addr: SocketAddr,
    channels: ChannelTable,
    permits: InvokePermits,
    _accept: AbortOnDrop,
    _events: Option<AbortOnDrop>,
}

impl std::fmt::Debug for RemotingServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemotingServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

static NEXT_CHANNEL_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh connection id (ids only label connections; their values never reach an output).
pub(crate) fn next_channel_id() -> u64 {
    NEXT_CHANNEL_ID.fetch_add(1, Ordering::Relaxed)
}

impl RemotingServer {
    /// Binds, starts the processors' executors and begins accepting connections.
    pub async fn start(
        net: SharedNet,
        clock: SharedClock,
        config: ServerConfig,
        processors: ProcessorTable,
        listener: Option<Arc<dyn ChannelEventListener>>,
    ) -> std::io::Result<Self> {
        let bound = net.bind(config.bind_addr).await?;
        let local_addr = bound.local_addr();
        let dispatcher = Dispatcher::start(processors, clock.clone());
        let (events, events_task) = EventSink::start_optional(listener);
        let channels: ChannelTable = Arc::default();
        let weak_channels = Arc::downgrade(&channels);
        let hooks = ChannelHooks {
            dispatcher,
            events,
            on_close: Some(Arc::new(move |id| {
                if let Some(channels) = weak_channels.upgrade() {
                    channels
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .remove(&id);
                }
            })),
        };
        let permits =
            InvokePermits::new(clock.clone(), config.async_permits, config.oneway_permits);
        let accept = tokio::spawn(accept_loop(
            bound,
            clock,
            config.channel,
            hooks,
            channels.clone(),
        ));
        tracing::info!(%local_addr, "remoting server listening");
        Ok(Self {
            local_addr,
            channels,
            permits,
            _accept: AbortOnDrop(accept),
            _events: events_task,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sends a request to the client on `channel` and waits up to `timeout` for its answer
    /// (a broker asking a consumer for its running info).
    pub async fn invoke(
        &self,
        channel: &Channel,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        channel.invoke(request, timeout).await
    }

    /// Sends a oneway request to the client on `channel` (NOTIFY_CONSUMER_IDS_CHANGED,
    /// CHECK_TRANSACTION_STATE), waiting at most `timeout` for a permit and the write.
    pub async fn invoke_oneway(
        &self,
        channel: &Channel,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<(), RemotingError> {
        let _permit = self.permits.acquire_oneway(timeout).await?;
        channel.invoke_oneway(request).await
    }

    /// Sends a request to the client on `channel` without waiting; `callback` receives the
    /// outcome. Waits at most `timeout` for a permit.
    pub async fn invoke_async<F>(
        &self,
        channel: &Channel,
        request: RemotingCommand,
        timeout: Duration,
        callback: F,
    ) -> Result<(), RemotingError>
    where
        F: FnOnce(Result<RemotingCommand, RemotingError>) + Send + 'static,
    {
        let permit = self.permits.acquire_async(timeout).await?;
        let channel = channel.clone();
        tokio::spawn(async move {
            let outcome = channel.invoke(request, timeout).await;
            drop(permit);
            callback(outcome);
        });
        Ok(())
    }

    /// A handle to the table of open connections, for tasks that outlive a borrow.
    pub fn channels_handle(&self) -> ChannelTable {
        self.channels.clone()
    }

    /// The open connections.
    pub fn channels(&self) -> Vec<Channel> {
        self.lock_channels().values().cloned().collect()
    }

    /// Stops accepting and closes every connection.
    pub fn shutdown(self) {
        drop(self);
    }

    fn lock_channels(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Channel>> {
        self.channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for RemotingServer {
    fn drop(&mut self) {
        // Collect first: closing runs the close hook, which takes the table's lock.
        for channel in self.channels() {
            channel.close();
        }
    }
}

async fn accept_loop(
    mut listener: Box<dyn Listener>,
    clock: SharedClock,
    config: ChannelConfig,
    hooks: ChannelHooks,
    channels: ChannelTable,
) {
    loop {
        match listener.accept().await {
            Ok(connection) => {
                let id = next_channel_id();
                tracing::debug!(peer = %connection.peer_addr, id, "accepted connection");
                let channel =
                    Channel::start(id, connection, clock.clone(), config.clone(), hooks.clone());
                let mut table = channels
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                table.insert(id, channel.clone());
                // A connection that closed before it was recorded has already run its
                // close hook; do not keep it.
                if channel.is_closed() {
                    table.remove(&id);
                }
            }
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                clock.sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
