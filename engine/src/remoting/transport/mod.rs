//! The remoting transport: connections, request dispatch, server and client, over the
//! [`Net`](crate::net::Net) and [`Clock`](crate::clock::Clock) traits.
//!
//! - [`channel`]: one connection. Many requests in flight at once in both directions,
//!   responses matched by `opaque`; writes coalesced by a writer task; idle connections
//!   closed; the connection's life reported as [`ChannelEvent`]s.
//! - [`dispatch`]: the processor table. Each processor has its own bounded queue and
//!   workers, so a long-polling pull never holds up a send on the same connection; unknown
//!   codes get `REQUEST_CODE_NOT_SUPPORTED`, a full queue `SYSTEM_BUSY`.
//! - [`server`]: accepts connections and serves them with a processor table.
//! - [`client`]: a connection cache per address, the name-server selection of RocketMQ
//!   clients, and sync / async / oneway invocation with timeouts and in-flight permits.

pub mod channel;
pub mod client;
pub mod dispatch;
pub mod error;
mod permits;
pub mod server;

pub use channel::{Channel, ChannelConfig, ChannelEvent, ChannelEventListener};
pub use client::{ClientConfig, RemotingClient};
pub use dispatch::{ExecutorConfig, ProcessError, ProcessorTable, RequestProcessor};
pub use error::RemotingError;
pub use server::{ChannelTable, NettyServerConfig, RemotingServer, ServerConfig, find_channel};

use tokio::task::JoinHandle;

/// Aborts a spawned task when dropped, so that tearing down a server, client or connection
/// never leaves tasks behind.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
