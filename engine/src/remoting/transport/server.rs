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
use crate::clock::{ClockExt, SharedClock};
use crate::net::{Listener, SharedNet};

/// Server settings (`NettyServerConfig`).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port.
    pub bind_addr: SocketAddr,
    /// Per-connection settings.
    pub channel: ChannelConfig,
}

impl ServerConfig {
    /// Listens on `bind_addr` with default connection settings.
    pub fn new(bind_addr: SocketAddr) -> Self {
        Self {
            bind_addr,
            channel: ChannelConfig::default(),
        }
    }
}

type ChannelTable = Arc<Mutex<BTreeMap<u64, Channel>>>;

/// A listening remoting server. Dropping it stops accepting; [`shutdown`](Self::shutdown)
/// also closes every connection.
pub struct RemotingServer {
    local_addr: SocketAddr,
    channels: ChannelTable,
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
        let (events, events_task) = match listener {
            Some(listener) => {
                let (sink, task) = EventSink::start(listener);
                (Some(sink), Some(task))
            }
            None => (None, None),
        };
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
            _accept: AbortOnDrop(accept),
            _events: events_task,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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
