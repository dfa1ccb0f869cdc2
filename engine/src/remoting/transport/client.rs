//! The remoting client: a connection per address, name-server selection, invocations.
//!
//! Used by brokers (to reach name servers) and by RocketMQ clients (name servers and
//! brokers). Connections open lazily on first use and are cached per `host:port`; a closed
//! one is replaced on the next call. Name servers are chosen as RocketMQ clients do: keep
//! using the last one that worked; when it fails, advance a counter (starting at a seeded
//! random value) round the shuffled list and try each address at most once.
//!
//! Invocations: [`invoke`](RemotingClient::invoke) waits for the response within a budget
//! that includes connecting; [`invoke_async`](RemotingClient::invoke_async) and
//! [`invoke_oneway`](RemotingClient::invoke_oneway) take an in-flight permit first (65,535
//! each by default), so a flood of them is bounded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::AbortOnDrop;
use super::channel::{Channel, ChannelConfig, ChannelEventListener, ChannelHooks, EventSink};
use super::dispatch::{Dispatcher, ProcessorTable};
use super::error::RemotingError;
use super::permits::InvokePermits;
use super::server::next_channel_id;
use crate::clock::{ClockExt, SharedClock};
use crate::net::SharedNet;
use crate::remoting::command::RemotingCommand;
use crate::rng::SharedRng;

/// Client settings (`NettyClientConfig`).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// How long to wait for a connection to open (`connectTimeoutMillis`, 3 s).
    pub connect_timeout: Duration,
    /// Async requests in flight at once (`clientAsyncSemaphoreValue`, 65,535).
    pub async_permits: usize,
    /// Oneway requests being written at once (`clientOnewaySemaphoreValue`, 65,535).
    pub oneway_permits: usize,
    /// Per-connection settings.
    pub channel: ChannelConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            async_permits: 65_535,
            oneway_permits: 65_535,
            channel: ChannelConfig::default(),
        }
    }
}

/// The name-server list and the sticky choice among it.
#[derive(Debug, Default)]
struct NameServers {
    addrs: Vec<String>,
    chosen: Option<String>,
    index: u64,
}

/// Per-address connection slot; its async lock makes concurrent callers share one connect.
type Slot = Arc<tokio::sync::Mutex<Option<Channel>>>;

/// A remoting client. Cheap to share behind an `Arc`.
pub struct RemotingClient {
    net: SharedNet,
    clock: SharedClock,
    rng: SharedRng,
    config: ClientConfig,
    hooks: ChannelHooks,
    slots: Mutex<BTreeMap<String, Slot>>,
    name_servers: Mutex<NameServers>,
    name_server_lock: tokio::sync::Mutex<()>,
    permits: InvokePermits,
    _events: Option<AbortOnDrop>,
}

impl std::fmt::Debug for RemotingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemotingClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RemotingClient {
    /// A client whose connections serve the peer's requests with `processors` (e.g.
    /// NOTIFY_CONSUMER_IDS_CHANGED on a consumer). Opens no connection yet.
    pub fn new(
        net: SharedNet,
        clock: SharedClock,
        rng: SharedRng,
        config: ClientConfig,
        processors: ProcessorTable,
        listener: Option<Arc<dyn ChannelEventListener>>,
    ) -> Self {
        let dispatcher = Dispatcher::start(processors, clock.clone());
        let (events, events_task) = EventSink::start_optional(listener);
        let name_servers = NameServers {
            // RocketMQ starts the round-robin at a random point in [0, 999).
            index: rng.below(999),
            ..NameServers::default()
        };
        Self {
            permits: InvokePermits::new(clock.clone(), config.async_permits, config.oneway_permits),
            net,
            clock,
            rng,
            config,
            hooks: ChannelHooks {
                dispatcher,
                events,
                on_close: None,
            },
            slots: Mutex::default(),
            name_servers: Mutex::new(name_servers),
            name_server_lock: tokio::sync::Mutex::new(()),
            _events: events_task,
        }
    }

    /// Replaces the name-server list when it differs from the current one by size or by
    /// membership (order is ignored: a new list is shuffled before use).
    pub fn update_name_server_address_list(&self, addrs: &[String]) {
        if addrs.is_empty() {
            return;
        }
        let mut servers = self.lock_name_servers();
        let same = servers.addrs.len() == addrs.len()
            && addrs.iter().all(|addr| servers.addrs.contains(addr));
        if same {
            return;
        }
        let mut shuffled = addrs.to_vec();
        self.rng.shuffle(&mut shuffled);
        tracing::info!(?shuffled, "name server address list updated");
        servers.addrs = shuffled;
        if servers
            .chosen
            .as_ref()
            .is_some_and(|chosen| !servers.addrs.contains(chosen))
        {
            servers.chosen = None;
        }
    }

    /// The current name-server list, in selection order.
    pub fn name_server_address_list(&self) -> Vec<String> {
        self.lock_name_servers().addrs.clone()
    }

    /// Sends `request` to `addr` and waits for the response. The `timeout` covers connecting
    /// as well as waiting.
    pub async fn invoke(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        let deadline = self.clock.instant() + timeout;
        let channel = self.channel(addr, timeout).await?;
        self.invoke_on(&channel, addr, request, deadline).await
    }

    /// Sends `request` to a name server (chosen as the module docs describe) and waits for
    /// the response.
    pub async fn invoke_name_server(
        &self,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        let deadline = self.clock.instant() + timeout;
        let (addr, channel) = self.name_server_channel(timeout).await?;
        self.invoke_on(&channel, &addr, request, deadline).await
    }

    /// Sends `request` to `addr` without waiting for its response; `callback` receives the
    /// outcome later. Waits at most `timeout` for an in-flight permit.
    pub async fn invoke_async<F>(
        self: &Arc<Self>,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
        callback: F,
    ) -> Result<(), RemotingError>
    where
        F: FnOnce(Result<RemotingCommand, RemotingError>) + Send + 'static,
    {
        let permit = self.permits.acquire_async(timeout).await?;
        let client = Arc::clone(self);
        let addr = addr.to_owned();
        tokio::spawn(async move {
            let outcome = client.invoke(&addr, request, timeout).await;
            drop(permit);
            callback(outcome);
        });
        Ok(())
    }

    /// Sends a oneway `request` to `addr` (no response). Waits at most `timeout` for a permit
    /// and the write.
    pub async fn invoke_oneway(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<(), RemotingError> {
        let _permit = self.permits.acquire_oneway(timeout).await?;
        let channel = self.channel(addr, timeout).await?;
        match self
            .clock
            .timeout(timeout, channel.invoke_oneway(request))
            .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                self.forget(addr, &channel);
                Err(error)
            }
            Err(_) => Err(RemotingError::Timeout {
                addr: addr.to_owned(),
                timeout_ms: millis(timeout),
            }),
        }
    }

    /// Closes every cached connection.
    pub fn shutdown(&self) {
        let slots: Vec<Slot> = self.lock_slots().values().cloned().collect();
        self.lock_slots().clear();
        for slot in slots {
            if let Ok(guard) = slot.try_lock()
                && let Some(channel) = guard.as_ref()
            {
                channel.close();
            }
        }
    }

    async fn invoke_on(
        &self,
        channel: &Channel,
        addr: &str,
        request: RemotingCommand,
        deadline: crate::clock::Instant,
    ) -> Result<RemotingCommand, RemotingError> {
        let remaining = deadline.saturating_duration_since(self.clock.instant());
        if remaining.is_zero() {
            return Err(RemotingError::Timeout {
                addr: addr.to_owned(),
                timeout_ms: 0,
            });
        }
        let result = channel.invoke(request, remaining).await;
        if let Err(RemotingError::SendRequest { .. }) = &result {
            self.forget(addr, channel);
        }
        result
    }

    /// The open connection to `addr`, connecting if needed within `timeout`.
    async fn channel(&self, addr: &str, timeout: Duration) -> Result<Channel, RemotingError> {
        let slot = self.slot(addr);
        // Every request passes here: while the connection is open and nobody is connecting,
        // take it without arming a timer for the wait.
        if let Ok(guard) = slot.try_lock()
            && let Some(channel) = guard.as_ref().filter(|c| !c.is_closed())
        {
            return Ok(channel.clone());
        }
        let mut guard = match self.clock.timeout(timeout, slot.lock()).await {
            Ok(guard) => guard,
            Err(_) => {
                return Err(RemotingError::Connect {
                    addr: addr.to_owned(),
                    reason: "timed out waiting for another connect to finish".into(),
                });
            }
        };
        if let Some(channel) = guard.as_ref().filter(|c| !c.is_closed()) {
            return Ok(channel.clone());
        }
        let connect_timeout = timeout.min(self.config.connect_timeout);
        let connection = match self
            .clock
            .timeout(connect_timeout, self.net.connect(addr))
            .await
        {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => {
                return Err(RemotingError::Connect {
                    addr: addr.to_owned(),
                    reason: error.to_string(),
                });
            }
            Err(_) => {
                return Err(RemotingError::Connect {
                    addr: addr.to_owned(),
                    reason: format!("timed out after {}ms", millis(connect_timeout)),
                });
            }
        };
        let channel = Channel::start(
            next_channel_id(),
            connection,
            self.clock.clone(),
            self.config.channel.clone(),
            self.hooks.clone(),
        );
        *guard = Some(channel.clone());
        Ok(channel)
    }

    async fn name_server_channel(
        &self,
        timeout: Duration,
    ) -> Result<(String, Channel), RemotingError> {
        let chosen = self.lock_name_servers().chosen.clone();
        if let Some(addr) = chosen
            && let Some(channel) = self.open_channel(&addr).await
        {
            return Ok((addr, channel));
        }
        let _serialized = self.name_server_lock.lock().await;
        let (addrs, start) = {
            let servers = self.lock_name_servers();
            (servers.addrs.clone(), servers.index)
        };
        if addrs.is_empty() {
            return Err(RemotingError::NoNameServer(addrs));
        }
        for step in 1..=addrs.len() as u64 {
            let index = start.wrapping_add(step);
            let addr = &addrs[(index % addrs.len() as u64) as usize];
            self.lock_name_servers().index = index;
            match self.channel(addr, timeout).await {
                Ok(channel) => {
                    self.lock_name_servers().chosen = Some(addr.clone());
                    return Ok((addr.clone(), channel));
                }
                Err(error) => {
                    tracing::debug!(%addr, %error, "name server unreachable; trying the next");
                }
            }
        }
        Err(RemotingError::NoNameServer(addrs))
    }

    /// The cached connection to `addr` if it is open, without connecting.
    async fn open_channel(&self, addr: &str) -> Option<Channel> {
        let slot = self.lock_slots().get(addr).cloned()?;
        let guard = slot.lock().await;
        guard.as_ref().filter(|c| !c.is_closed()).cloned()
    }

    /// Drops the cached connection to `addr` if it is `channel`, and closes it.
    fn forget(&self, addr: &str, channel: &Channel) {
        if let Some(slot) = self.lock_slots().get(addr).cloned()
            && let Ok(mut guard) = slot.try_lock()
            && guard.as_ref().is_some_and(|c| c.id() == channel.id())
        {
            *guard = None;
        }
        channel.close();
    }

    /// The connection slot of `addr`, created empty on first use.
    fn slot(&self, addr: &str) -> Slot {
        let mut slots = self.lock_slots();
        match slots.get(addr) {
            Some(slot) => slot.clone(),
            None => slots.entry(addr.to_owned()).or_default().clone(),
        }
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_name_servers(&self) -> std::sync::MutexGuard<'_, NameServers> {
        self.name_servers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for RemotingClient {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
