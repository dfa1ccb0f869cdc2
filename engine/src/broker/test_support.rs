//! Fixtures for the broker's own tests: a broker context over an in-memory disk, and a
//! connection whose far end the test reads, so a processor's deferred answers (long polling)
//! and broker-to-client requests (notifications) can be observed.

use std::sync::Arc;

use futures::StreamExt;
use tokio_util::codec::FramedRead;

use super::config::BrokerConfig;
use super::context::BrokerContext;
use crate::Env;
use crate::clock::SharedClock;
use crate::clock::test_support::TestClock;
use crate::net::{Connection, Net};
use crate::remoting::transport::{Channel, NettyServerConfig, RequestProcessor};
use crate::remoting::{RemotingCodec, RemotingCommand};
use crate::rng::Rng;
use crate::store::config::MessageStoreConfig;
use crate::store::test_disk::MemoryDisk;

/// Wall time the test clock starts at.
pub(crate) const TEST_WALL_MS: i64 = 1_700_000_000_000;

/// A network that refuses everything: the broker's tests never dial out.
#[derive(Debug)]
struct NoNet;

impl Net for NoNet {
    fn bind(
        &self,
        _addr: std::net::SocketAddr,
    ) -> futures::future::BoxFuture<'_, std::io::Result<Box<dyn crate::net::Listener>>> {
        Box::pin(async { Err(std::io::Error::other("no network in broker unit tests")) })
    }

    fn connect(&self, _addr: &str) -> futures::future::BoxFuture<'_, std::io::Result<Connection>> {
        Box::pin(async { Err(std::io::Error::other("no network in broker unit tests")) })
    }
}

/// A broker context over a fresh in-memory disk with small segments; `configure` adjusts
/// the settings first.
pub(crate) async fn test_context(
    configure: impl FnOnce(&mut BrokerConfig, &mut MessageStoreConfig),
) -> Arc<BrokerContext> {
    test_context_with_clock(TestClock::at(TEST_WALL_MS), configure).await
}

/// [`test_context`] on `clock` (e.g. a `StepClock`, for rules about how long something
/// took).
pub(crate) async fn test_context_with_clock(
    clock: SharedClock,
    configure: impl FnOnce(&mut BrokerConfig, &mut MessageStoreConfig),
) -> Arc<BrokerContext> {
    let (_disk, shared) = MemoryDisk::shared();
    let mut config = BrokerConfig::default();
    let mut store_config = MessageStoreConfig {
        mapped_file_size_commit_log: 64 * 1024,
        mapped_file_size_consume_queue: 20 * 64,
        max_hash_slot_num: 128,
        max_index_num: 512,
        ..MessageStoreConfig::default()
    };
    configure(&mut config, &mut store_config);
    let env = Env {
        clock,
        net: Arc::new(NoNet),
        disk: shared,
        rng: Rng::shared(1),
    };
    let server_config = NettyServerConfig {
        listen_port: 10911,
        ..NettyServerConfig::default()
    };
    BrokerContext::open(env, config, store_config, server_config, 1 << 30)
        .await
        .expect("the test broker opens")
}

/// A broker context, a processor over it made by `make`, and a client connection.
pub(crate) async fn processor_fixture<P>(
    make: impl FnOnce(Arc<BrokerContext>) -> P,
) -> (Arc<BrokerContext>, P, TestPeer) {
    let context = test_context(|_, _| {}).await;
    let processor = make(context.clone());
    let peer = TestPeer::connect(&context);
    (context, processor, peer)
}

/// The processor's answer to `request` from `peer`, with a processing error answered as the
/// dispatcher answers it.
pub(crate) async fn respond(
    processor: &dyn RequestProcessor,
    peer: &TestPeer,
    request: RemotingCommand,
) -> RemotingCommand {
    match processor.process(&peer.channel, request.clone()).await {
        Ok(Some(response)) => response,
        Ok(None) => panic!("the processor answers this request at once"),
        Err(error) => RemotingCommand::error_to(&request, error.code, error.remark),
    }
}

/// A client connection as the broker sees it, and the client's end of it.
pub(crate) struct TestPeer {
    /// The broker's side: what processors get.
    pub channel: Channel,
    frames: FramedRead<tokio::io::DuplexStream, RemotingCodec>,
}

impl TestPeer {
    /// A connection from `127.0.0.1:5555` (the peer) to the broker.
    pub(crate) fn connect(context: &BrokerContext) -> Self {
        let (broker_side, client_side) = tokio::io::duplex(1 << 20);
        let connection = Connection {
            stream: Box::new(broker_side),
            local_addr: context.store_host,
            peer_addr: "127.0.0.1:5555".parse().expect("literal address"),
        };
        let channel = Channel::start_for_test(connection, context.env.clock.clone());
        Self {
            channel,
            frames: FramedRead::new(client_side, RemotingCodec),
        }
    }

    /// The next command the broker wrote to this client, if any arrives.
    pub(crate) async fn next_command(&mut self) -> Option<RemotingCommand> {
        self.frames.next().await.and_then(Result::ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::AUTO_CREATE_TOPIC;

    #[tokio::test]
    async fn test_context_opens_with_system_topics_and_a_readable_peer() {
        let context = test_context(|_, _| {}).await;
        assert!(
            context
                .topic_config_manager
                .select_topic_config(AUTO_CREATE_TOPIC)
                .is_some()
        );
        let mut peer = TestPeer::connect(&context);
        let response = RemotingCommand::success_to(&RemotingCommand::request(34));
        peer.channel.send(&response).await.unwrap();
        assert_eq!(peer.next_command().await.unwrap().code, 0);
    }
}
