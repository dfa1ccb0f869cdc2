//! Shared fixtures of the integration tests: request processors with known behaviour, used
//! by the loopback tests (real TCP) and their simulated twins (madsim), and message-store
//! fixtures ([`store`]), an in-process stand-in for a name server and broker
//! ([`fake_broker`]), simulated name-server and broker nodes (`sim_broker`, madsim only),
//! the real binaries and client scripts as processes (`process`), and the fixtures of the
//! client tests against those binaries (`client`).

#[cfg(not(madsim))]
pub mod client;
pub mod fake_broker;
#[cfg(not(madsim))]
pub mod process;
#[cfg(madsim)]
pub mod sim_broker;
pub mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ferrocket_engine::clock::{ClockExt, SharedClock};
use ferrocket_engine::remoting::RemotingCommand;
use ferrocket_engine::remoting::transport::{
    Channel, ClientConfig, ExecutorConfig, ProcessError, ProcessorTable, RemotingClient,
    RequestProcessor,
};

/// A remoting client with default settings and nothing to serve, its randomness seeded with
/// `seed`, on the build's network and clock (tokio's, or madsim's in the simulation build).
pub fn remoting_client(seed: u64) -> RemotingClient {
    RemotingClient::new(
        ferrocket_net::TokioNet::shared(),
        ferrocket_net::SystemClock::shared(),
        ferrocket_engine::rng::Rng::shared(seed),
        ClientConfig::default(),
        ProcessorTable::new(),
        None,
    )
}

/// Request code answered with the request's body and ext fields.
pub const ECHO: i32 = 9001;
/// Request code answered after the delay in its `delayMs` field, on its own executor (the
/// shape of a long-polling pull).
pub const SLOW: i32 = 9002;
/// Request code whose processor panics.
pub const PANIC: i32 = 9003;
/// Request code counted by [`TestProcessors::oneway_count`] (sent oneway).
pub const COUNT: i32 = 9004;
/// Request code served by one worker with a one-slot queue, to provoke SYSTEM_BUSY.
pub const NARROW: i32 = 9005;

/// Echoes the request back.
#[derive(Debug)]
pub struct Echo;

#[async_trait::async_trait]
impl RequestProcessor for Echo {
    async fn process(
        &self,
        _channel: &Channel,
        request: RemotingCommand,
    ) -> Result<Option<RemotingCommand>, ProcessError> {
        let mut response = RemotingCommand::success_to(&request).with_body(request.body.clone());
        response.ext_fields = request.ext_fields.clone();
        Ok(Some(response))
    }
}

/// Answers after `delayMs` milliseconds (default 1000).
#[derive(Debug)]
pub struct Slow {
    /// The clock the delay is measured on.
    pub clock: SharedClock,
}

#[async_trait::async_trait]
impl RequestProcessor for Slow {
    async fn process(
        &self,
        _channel: &Channel,
        request: RemotingCommand,
    ) -> Result<Option<RemotingCommand>, ProcessError> {
        let delay_ms: u64 = request
            .ext_fields
            .get("delayMs")
            .map(str::parse)
            .transpose()
            .map_err(|_| ProcessError::system("delayMs is not a number"))?
            .unwrap_or(1000);
        self.clock.sleep(Duration::from_millis(delay_ms)).await;
        Ok(Some(RemotingCommand::success_to(&request)))
    }
}

/// Panics: a bug in a processor must cost one SYSTEM_ERROR answer, not the connection.
#[derive(Debug)]
pub struct Panics;

#[async_trait::async_trait]
impl RequestProcessor for Panics {
    async fn process(
        &self,
        _channel: &Channel,
        _request: RemotingCommand,
    ) -> Result<Option<RemotingCommand>, ProcessError> {
        panic!("processor bug on purpose");
    }
}

/// Counts requests and answers nothing.
#[derive(Debug, Default)]
pub struct Counter {
    count: AtomicUsize,
}

#[async_trait::async_trait]
impl RequestProcessor for Counter {
    async fn process(
        &self,
        _channel: &Channel,
        _request: RemotingCommand,
    ) -> Result<Option<RemotingCommand>, ProcessError> {
        self.count.fetch_add(1, Ordering::SeqCst);
        Ok(None)
    }
}

/// The processors of the transport tests, with handles to observe them.
#[derive(Debug)]
pub struct TestProcessors {
    counter: Arc<Counter>,
}

impl TestProcessors {
    /// Builds the processor table: ECHO, SLOW (own executor, many workers), PANIC, COUNT
    /// and NARROW (one worker, queue of one).
    pub fn table(clock: SharedClock) -> (ProcessorTable, Self) {
        let counter = Arc::new(Counter::default());
        let slow = Arc::new(Slow { clock });
        let table = ProcessorTable::new()
            .register(&[ECHO], Arc::new(Echo), ExecutorConfig::new(4, 1024))
            .register(&[SLOW], slow.clone(), ExecutorConfig::new(64, 1024))
            .register(&[PANIC], Arc::new(Panics), ExecutorConfig::new(1, 16))
            .register(&[COUNT], counter.clone(), ExecutorConfig::new(1, 1024))
            .register(&[NARROW], slow, ExecutorConfig::new(1, 1));
        (table, Self { counter })
    }

    /// How many COUNT requests arrived.
    pub fn oneway_count(&self) -> usize {
        self.counter.count.load(Ordering::SeqCst)
    }
}
