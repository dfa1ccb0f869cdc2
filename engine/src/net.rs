//! The Net trait: how protocol code opens and accepts byte-stream connections.
//!
//! Production binds it to tokio TCP (`ferrocket-net`). Under `--cfg madsim` the workspace's
//! `tokio` is `madsim-tokio`, so the very same binding runs over madsim's simulated network,
//! where partitions, clogged links and killed peers come from the simulator. The remoting
//! layer frames the streams (`remoting::codec`).

use std::fmt::Debug;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A bidirectional byte stream to a peer.
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> ByteStream for T {}

/// An established connection: the stream and both of its addresses.
pub struct Connection {
    /// The byte stream.
    pub stream: Box<dyn ByteStream>,
    /// This side's address.
    pub local_addr: SocketAddr,
    /// The peer's address.
    pub peer_addr: SocketAddr,
}

impl Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("local_addr", &self.local_addr)
            .field("peer_addr", &self.peer_addr)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A bound, listening socket.
pub trait Listener: Send + Debug {
    /// The address actually bound (port 0 resolved).
    fn local_addr(&self) -> SocketAddr;

    /// Waits for the next inbound connection.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Connection>>;
}

/// Opens and accepts connections.
pub trait Net: Send + Sync + Debug + 'static {
    /// Binds and listens on `addr` (port 0 picks a free port).
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Listener>>>;

    /// Connects to `addr`, given as `host:port` (RocketMQ's address form).
    fn connect(&self, addr: &str) -> BoxFuture<'_, io::Result<Connection>>;
}

/// The network shared by every component of one process or simulated node.
pub type SharedNet = Arc<dyn Net>;
