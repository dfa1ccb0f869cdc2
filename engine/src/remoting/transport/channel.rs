//! One remoting connection: framing, in-flight requests, coalesced writes, idleness.
//!
//! A [`Channel`] is a cheap handle to a connection shared by its reader task, its writer task
//! and everyone who sends on it. Both sides of a connection may send requests (a broker asks
//! a client to re-balance or check a transaction over the client's own connection), so every
//! channel has both a table of its own pending requests, matched to responses by `opaque`,
//! and a dispatcher for the peer's requests.
//!
//! Writes are encoded into one shared buffer that the writer task drains with one write per
//! batch; when the buffer passes `write_buffer_max` senders wait (backpressure) instead of
//! growing it without bound. The reader closes the connection after `idle_timeout` without
//! reads or writes, on a malformed frame, or when the peer goes away; closing fails every
//! pending request at once rather than leaving it to its timeout.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, oneshot};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::dispatch::Dispatcher;
use super::error::RemotingError;
use crate::clock::{ClockExt, Instant, SharedClock};
use crate::net::Connection;
use crate::remoting::codec::{self, RemotingCodec};
use crate::remoting::command::{FLAG_ONEWAY, FLAG_RESPONSE, RemotingCommand};

/// Frames the reader decodes and hands over in a row before letting the other tasks run.
///
/// A peer with many requests in flight sends them in bursts. Reading a whole burst before any
/// of it is processed makes the two sides take turns: the peer waits while this side works
/// through the burst, then this side waits while the peer works through the answers. Handing
/// the scheduler back after a few frames lets the first answers leave (in one write) while
/// the rest of the burst is still to be read, so both sides work at once.
pub(super) const FRAMES_PER_TURN: u32 = 16;

/// Per-connection settings.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Close the connection after this long with neither a read nor a write
    /// (`serverChannelMaxIdleTimeSeconds` / `clientChannelMaxIdleTimeSeconds`, 120 s).
    pub idle_timeout: Duration,
    /// Bytes of encoded frames waiting to be written before senders must wait.
    pub write_buffer_max: usize,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(120),
            write_buffer_max: 64 * 1024 * 1024,
        }
    }
}

/// What happened to a connection, as delivered to a [`ChannelEventListener`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEvent {
    /// The connection was established.
    Connect,
    /// The connection closed (by either side).
    Close,
    /// The connection was closed for being idle.
    Idle,
    /// The connection failed (malformed frame, I/O error) and was closed.
    Exception(String),
}

/// Receives connection events. Calls arrive serially, in order, on one task per server or
/// client, so a listener needs no ordering logic of its own.
pub trait ChannelEventListener: Send + Sync + 'static {
    /// Called once per event.
    fn on_event(&self, channel: &Channel, event: &ChannelEvent);
}

/// Where a channel reports its events; owned by the server or client.
#[derive(Clone)]
pub(crate) struct EventSink {
    sender: tokio::sync::mpsc::Sender<(Channel, ChannelEvent)>,
}

/// Events beyond this many waiting for the listener are dropped, as Java's event executor
/// drops past 10,000.
pub(crate) const EVENT_QUEUE_MAX: usize = 10_000;

impl EventSink {
    /// Starts the task that feeds `listener`; the task ends when every sink is dropped.
    pub(crate) fn start(listener: Arc<dyn ChannelEventListener>) -> (Self, super::AbortOnDrop) {
        let (sender, mut receiver) = tokio::sync::mpsc::channel(EVENT_QUEUE_MAX);
        let task = tokio::spawn(async move {
            while let Some((channel, event)) = receiver.recv().await {
                listener.on_event(&channel, &event);
            }
        });
        (Self { sender }, super::AbortOnDrop(task))
    }

    /// [`start`](Self::start) when someone listens.
    pub(crate) fn start_optional(
        listener: Option<Arc<dyn ChannelEventListener>>,
    ) -> (Option<Self>, Option<super::AbortOnDrop>) {
        match listener {
            Some(listener) => {
                let (sink, task) = Self::start(listener);
                (Some(sink), Some(task))
            }
            None => (None, None),
        }
    }

    fn emit(&self, channel: &Channel, event: ChannelEvent) {
        if self.sender.try_send((channel.clone(), event)).is_err() {
            tracing::warn!(peer = %channel.peer_addr(), "connection event queue full; event dropped");
        }
    }
}

/// What a channel does with what it reads and when it closes.
#[derive(Clone)]
pub(crate) struct ChannelHooks {
    /// Serves the peer's requests.
    pub dispatcher: Arc<Dispatcher>,
    /// Receives connection events, if anyone listens.
    pub events: Option<EventSink>,
    /// Called once when the channel closes, with its id.
    pub on_close: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

struct WriteState {
    buf: BytesMut,
    closed: bool,
}

struct PendingTable {
    closed: bool,
    waiters: BTreeMap<i32, oneshot::Sender<RemotingCommand>>,
}

struct Inner {
    id: u64,
    local_addr: SocketAddr,
    peer_addr: SocketAddr,
    peer: String,
    clock: SharedClock,
    config: ChannelConfig,
    write: Mutex<WriteState>,
    write_ready: Notify,
    write_drained: Notify,
    pending: Mutex<PendingTable>,
    next_opaque: AtomicI32,
    origin: Instant,
    last_activity_ms: AtomicU64,
    closed: CancellationToken,
    hooks: ChannelHooks,
}

/// A handle to one connection. Clones share the connection.
#[derive(Clone)]
pub struct Channel(Arc<Inner>);

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.0.id)
            .field("local_addr", &self.0.local_addr)
            .field("peer_addr", &self.0.peer_addr)
            .field("closed", &self.is_closed())
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its state consistent before anything can panic, so
    // a poisoned lock still holds valid data.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Channel {
    /// Starts the reader and writer tasks of `connection` and returns its handle.
    pub(crate) fn start(
        id: u64,
        connection: Connection,
        clock: SharedClock,
        config: ChannelConfig,
        hooks: ChannelHooks,
    ) -> Channel {
        let Connection {
            stream,
            local_addr,
            peer_addr,
        } = connection;
        let origin = clock.instant();
        let channel = Channel(Arc::new(Inner {
            id,
            local_addr,
            peer_addr,
            peer: peer_addr.to_string(),
            clock,
            config,
            write: Mutex::new(WriteState {
                buf: BytesMut::new(),
                closed: false,
            }),
            write_ready: Notify::new(),
            write_drained: Notify::new(),
            pending: Mutex::new(PendingTable {
                closed: false,
                waiters: BTreeMap::new(),
            }),
            next_opaque: AtomicI32::new(0),
            origin,
            last_activity_ms: AtomicU64::new(0),
            closed: CancellationToken::new(),
            hooks,
        }));
        let (read_half, write_half) = tokio::io::split(stream);
        tokio::spawn(channel.clone().read_loop(read_half));
        tokio::spawn(channel.clone().write_loop(write_half));
        channel.emit(ChannelEvent::Connect);
        channel
    }

    /// A connection with no processors and no listeners, for tests that drive a processor
    /// directly and read the far end themselves.
    #[cfg(test)]
    pub(crate) fn start_for_test(connection: Connection, clock: SharedClock) -> Channel {
        Self::start_for_test_with(
            connection,
            clock,
            crate::remoting::transport::ProcessorTable::new(),
        )
    }

    /// A connection whose peer's requests go to `processors`, with no listeners.
    #[cfg(test)]
    pub(crate) fn start_for_test_with(
        connection: Connection,
        clock: SharedClock,
        processors: crate::remoting::transport::ProcessorTable,
    ) -> Channel {
        let dispatcher = Dispatcher::start(processors, clock.clone());
        Channel::start(
            super::server::next_channel_id(),
            connection,
            clock,
            ChannelConfig::default(),
            ChannelHooks {
                dispatcher,
                events: None,
                on_close: None,
            },
        )
    }

    /// A process-unique id of this connection.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.0.peer_addr
    }

    /// This side's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr
    }

    /// The clock this connection measures time by.
    pub fn clock(&self) -> &SharedClock {
        &self.0.clock
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.0.closed.is_cancelled()
    }

    /// Waits until the connection closes.
    pub async fn closed(&self) {
        self.0.closed.cancelled().await;
    }

    /// Closes the connection: pending requests fail at once, tasks stop.
    pub fn close(&self) {
        self.close_because(None);
    }

    /// Sends a request and waits up to `timeout` for its response.
    pub async fn invoke(
        &self,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        request.flag &= !(FLAG_RESPONSE | FLAG_ONEWAY);
        request.opaque = self.0.next_opaque.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        {
            let mut pending = lock(&self.0.pending);
            if pending.closed {
                return Err(self.closed_error());
            }
            pending.waiters.insert(request.opaque, sender);
        }
        let _cleanup = PendingGuard {
            channel: self,
            opaque: request.opaque,
        };
        let exchange = async {
            self.send(&request).await?;
            receiver.await.map_err(|_| self.closed_error())
        };
        match self.0.clock.timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(RemotingError::Timeout {
                addr: self.0.peer.clone(),
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    /// Sends a oneway request: no response is expected or waited for.
    pub async fn invoke_oneway(&self, mut request: RemotingCommand) -> Result<(), RemotingError> {
        request.flag = (request.flag & !FLAG_RESPONSE) | FLAG_ONEWAY;
        request.opaque = self.0.next_opaque.fetch_add(1, Ordering::Relaxed);
        self.send(&request).await
    }

    /// Writes a command as is (responses, and requests already numbered).
    pub async fn send(&self, command: &RemotingCommand) -> Result<(), RemotingError> {
        loop {
            let drained = self.0.write_drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let mut state = lock(&self.0.write);
                if state.closed {
                    return Err(self.closed_error());
                }
                if state.buf.len() < self.0.config.write_buffer_max {
                    codec::encode(command, &mut state.buf)?;
                    drop(state);
                    self.0.write_ready.notify_one();
                    return Ok(());
                }
            }
            tokio::select! {
                // Fixed polling order: tokio's random order draws from an RNG outside the
                // simulator's control and would make simulated runs irreproducible.
                biased;
                () = drained => {}
                () = self.0.closed.cancelled() => return Err(self.closed_error()),
            }
        }
    }

    fn closed_error(&self) -> RemotingError {
        RemotingError::SendRequest {
            addr: self.0.peer.clone(),
            reason: "connection closed".into(),
        }
    }

    fn emit(&self, event: ChannelEvent) {
        if let Some(events) = &self.0.hooks.events {
            events.emit(self, event);
        }
    }

    fn touch(&self) {
        let elapsed = self
            .0
            .clock
            .instant()
            .saturating_duration_since(self.0.origin);
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        self.0.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_deadline(&self) -> Instant {
        let last = Duration::from_millis(self.0.last_activity_ms.load(Ordering::Relaxed));
        self.0.origin + last + self.0.config.idle_timeout
    }

    /// Closes once; `event` says why (none for a plain close).
    fn close_because(&self, event: Option<ChannelEvent>) {
        {
            let mut write = lock(&self.0.write);
            if write.closed {
                return;
            }
            write.closed = true;
            write.buf.clear();
        }
        let waiters = {
            let mut pending = lock(&self.0.pending);
            pending.closed = true;
            std::mem::take(&mut pending.waiters)
        };
        // Dropping the senders wakes every waiter with "connection closed".
        drop(waiters);
        self.0.closed.cancel();
        self.0.write_ready.notify_one();
        self.0.write_drained.notify_waiters();
        if let Some(event) = event {
            self.emit(event);
        }
        self.emit(ChannelEvent::Close);
        if let Some(on_close) = &self.0.hooks.on_close {
            on_close(self.0.id);
        }
    }

    async fn read_loop(self, read_half: tokio::io::ReadHalf<Box<dyn crate::net::ByteStream>>) {
        let mut frames = FramedRead::new(read_half, RemotingCodec);
        let mut idle = self.0.clock.sleep_until(self.idle_deadline());
        let mut frames_this_turn = 0;
        loop {
            tokio::select! {
                // Fixed polling order: tokio's random order draws from an RNG outside the
                // simulator's control and would make simulated runs irreproducible.
                biased;
                () = self.0.closed.cancelled() => return,
                () = &mut idle => {
                    let deadline = self.idle_deadline();
                    if self.0.clock.instant() >= deadline {
                        tracing::info!(peer = %self.0.peer, "closing idle connection");
                        self.close_because(Some(ChannelEvent::Idle));
                        return;
                    }
                    idle = self.0.clock.sleep_until(deadline);
                }
                frame = frames.next() => match frame {
                    Some(Ok(command)) => {
                        tracing::trace!(peer = %self.0.peer, ?command, "received");
                        self.touch();
                        self.on_command(command);
                        frames_this_turn += 1;
                        if frames_this_turn == FRAMES_PER_TURN {
                            frames_this_turn = 0;
                            tokio::task::yield_now().await;
                        }
                    }
                    Some(Err(error)) => {
                        tracing::warn!(peer = %self.0.peer, %error, "closing connection after a bad frame");
                        self.close_because(Some(ChannelEvent::Exception(error.to_string())));
                        return;
                    }
                    None => {
                        self.close_because(None);
                        return;
                    }
                },
            }
        }
    }

    fn on_command(&self, command: RemotingCommand) {
        if command.is_response() {
            let waiter = lock(&self.0.pending).waiters.remove(&command.opaque);
            match waiter {
                // The waiter may have given up (timeout) just now; then the response is late.
                Some(waiter) => drop(waiter.send(command)),
                None => tracing::debug!(
                    peer = %self.0.peer,
                    opaque = command.opaque,
                    "response for no pending request (late or unknown); dropped"
                ),
            }
        } else {
            self.0.hooks.dispatcher.dispatch(self, command);
        }
    }

    async fn write_loop(
        self,
        mut write_half: tokio::io::WriteHalf<Box<dyn crate::net::ByteStream>>,
    ) {
        loop {
            let batch = {
                let mut state = lock(&self.0.write);
                if state.closed {
                    break;
                }
                if state.buf.is_empty() {
                    None
                } else {
                    Some(state.buf.split())
                }
            };
            let Some(batch) = batch else {
                self.0.write_ready.notified().await;
                // Let the tasks already runnable (workers answering the other requests of the
                // same read) add their frames first, so they leave in this write.
                tokio::task::yield_now().await;
                continue;
            };
            self.0.write_drained.notify_waiters();
            // Flush too: some streams (madsim's simulated TCP among them) buffer until asked.
            let written = match write_half.write_all(&batch).await {
                Ok(()) => write_half.flush().await,
                Err(error) => Err(error),
            };
            if let Err(error) = written {
                tracing::debug!(peer = %self.0.peer, %error, "write failed; closing connection");
                self.close_because(Some(ChannelEvent::Exception(error.to_string())));
                break;
            }
            self.touch();
        }
        // Best effort: the peer learns of the close from the FIN.
        let _ = write_half.shutdown().await;
    }
}

/// Removes a request's waiter when its caller stops waiting (timeout, cancellation, error).
struct PendingGuard<'a> {
    channel: &'a Channel,
    opaque: i32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.channel.0.pending).waiters.remove(&self.opaque);
    }
}
