//! Production binding of the engine's [`Net`] and [`Clock`] traits to tokio.
//!
//! The workspace's `tokio` is `madsim-tokio`: in a normal build it is tokio itself, and under
//! `--cfg madsim` its `net` and `time` modules are madsim's simulated network and virtual
//! clock. So [`TokioNet`] and [`SystemClock`] are also what the simulator runs; partitions,
//! clogged links and killed peers reach protocol code through exactly these types.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ferrocket_engine::clock::{Clock, Instant, SharedClock};
use ferrocket_engine::net::{Connection, Listener, Net, SharedNet};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::net::{TcpListener, TcpStream};

/// TCP over tokio (or over madsim's simulated network under `--cfg madsim`).
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioNet;

impl TokioNet {
    /// A shared handle, as components take it.
    pub fn shared() -> SharedNet {
        Arc::new(TokioNet)
    }
}

/// A bound tokio listener.
#[derive(Debug)]
struct TokioListener {
    inner: TcpListener,
    local_addr: SocketAddr,
}

impl Listener for TokioListener {
    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<Connection>> {
        async move {
            let (stream, peer_addr) = self.inner.accept().await?;
            configure(&stream);
            Ok(Connection {
                local_addr: stream.local_addr().unwrap_or(self.local_addr),
                peer_addr,
                stream: Box::new(stream),
            })
        }
        .boxed()
    }
}

impl Net for TokioNet {
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        async move {
            let inner = TcpListener::bind(addr).await?;
            let local_addr = inner.local_addr()?;
            Ok(Box::new(TokioListener { inner, local_addr }) as Box<dyn Listener>)
        }
        .boxed()
    }

    fn connect(&self, addr: &str) -> BoxFuture<'_, io::Result<Connection>> {
        let addr = addr.to_owned();
        async move {
            let stream = TcpStream::connect(addr.as_str()).await?;
            configure(&stream);
            Ok(Connection {
                local_addr: stream.local_addr()?,
                peer_addr: stream.peer_addr()?,
                stream: Box::new(stream),
            })
        }
        .boxed()
    }
}

/// Socket options RocketMQ sets on every remoting connection: no Nagle delay, since requests
/// and responses are small and latency-bound.
fn configure(stream: &TcpStream) {
    // Best effort: a socket that refuses TCP_NODELAY still works, only slower.
    let _ = stream.set_nodelay(true);
}

/// The host's clocks: tokio's monotonic instant and the system wall clock. Under
/// `--cfg madsim` both are madsim's virtual time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl SystemClock {
    /// A shared handle, as components take it.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn instant(&self) -> Instant {
        ferrocket_runtime_clock::now()
    }

    fn wall_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        ferrocket_runtime_clock::sleep_until(deadline).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrocket_engine::clock::ClockExt;
    use std::time::Duration;

    // Real loopback only: the simulated network has its own tests with named nodes
    // (tests/tests/remoting_sim.rs); madsim's default node has no loopback interface.
    #[cfg(not(madsim))]
    #[tokio::test]
    async fn loopback_connect_accept_and_echo() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let net = TokioNet;
        let mut listener = net.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().to_string();
        let server = tokio::spawn(async move {
            let mut conn = listener.accept().await.unwrap();
            let mut buf = [0u8; 5];
            conn.read_exact(&mut buf).await.unwrap();
            conn.write_all(&buf).await.unwrap();
        });
        let mut client = net.connect(&addr).await.unwrap();
        client.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn timeout_elapses_and_wall_clock_is_recent() {
        let clock = SystemClock;
        let result = clock
            .timeout(Duration::from_millis(10), futures::future::pending::<()>())
            .await;
        assert!(result.is_err());
        // 2020-01-01 in ms: the wall clock must be past it on any real or simulated host.
        assert!(clock.wall_ms() > 1_577_836_800_000);
    }
}
