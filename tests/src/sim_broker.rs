//! A name server and a broker as madsim nodes on fixed addresses, a client's remoting
//! client, and the SEND and PULL requests the broker simulations make: the node setup shared
//! by `broker_sim` and `schedule_sim`.

use std::sync::Arc;
use std::time::Duration;

use ferrocket_engine::broker::config::BrokerConfig;
use ferrocket_engine::broker::controller::BrokerController;
use ferrocket_engine::namesrv::{NamesrvConfig, NamesrvController};
use ferrocket_engine::remoting::headers::{PullMessageRequestHeader, SendMessageRequestHeaderV2};
use ferrocket_engine::remoting::transport::{NettyServerConfig, RemotingClient};
use ferrocket_engine::remoting::{RemotingCommand, request_code, response_code};
use ferrocket_engine::store::config::{FlushDiskType, MessageStoreConfig};
use ferrocket_engine::store::message::{StoredMessage, decode_records};
use ferrocket_sim::SimDisk;
use madsim::runtime::Handle;
use madsim::task::NodeId;
use madsim::time::sleep;

use crate::store::sim_env;

/// The name server's address.
pub const NAMESRV: &str = "10.0.1.1:9876";
/// The broker's address.
pub const BROKER: &str = "10.0.2.1:10911";
/// The consumer group of [`pull_request`].
pub const CONSUMER_GROUP: &str = "sim-cg";

/// Starts the name server node `namesrv-0` at [`NAMESRV`].
pub fn start_namesrv(handle: &Handle) -> NodeId {
    let disk = SimDisk::new();
    handle
        .create_node()
        .name("namesrv-0")
        .ip("10.0.1.1".parse().unwrap())
        .init(move || {
            let env = sim_env(&disk, 1);
            async move {
                let server = NettyServerConfig {
                    listen_port: 9876,
                    bind_address: "10.0.1.1".into(),
                    ..NettyServerConfig::default()
                };
                let _namesrv = NamesrvController::start(env, NamesrvConfig::default(), server)
                    .await
                    .expect("the name server starts");
                std::future::pending::<()>().await;
            }
        })
        .build()
        .id()
}

/// Starts the master broker node `broker-a-0` at [`BROKER`], registering with [`NAMESRV`];
/// its SimDisk (returned) survives restarts.
pub fn start_broker(handle: &Handle, flush: FlushDiskType) -> (NodeId, Arc<SimDisk>) {
    start_broker_named(handle, "broker-a", "10.0.2.1", flush)
}

/// Starts the master of broker group `broker_name` as node `{broker_name}-0` at `ip`:10911,
/// registering with [`NAMESRV`]; its SimDisk (returned) survives restarts.
pub fn start_broker_named(
    handle: &Handle,
    broker_name: &'static str,
    ip: &'static str,
    flush: FlushDiskType,
) -> (NodeId, Arc<SimDisk>) {
    let disk = SimDisk::new();
    let node_disk = disk.clone();
    let id = handle
        .create_node()
        .name(format!("{broker_name}-0"))
        .ip(ip.parse().expect("literal address"))
        .init(move || {
            let env = sim_env(&node_disk, 2);
            async move {
                let config = BrokerConfig {
                    namesrv_addr: Some(NAMESRV.into()),
                    broker_name: broker_name.into(),
                    broker_ip1: ip.into(),
                    broker_ip2: ip.into(),
                    ..BrokerConfig::default()
                };
                let server = NettyServerConfig {
                    listen_port: 10911,
                    bind_address: ip.into(),
                    ..NettyServerConfig::default()
                };
                let store = MessageStoreConfig {
                    mapped_file_size_commit_log: 256 * 1024,
                    mapped_file_size_consume_queue: 20 * 1024,
                    flush_disk_type: flush,
                    ..MessageStoreConfig::default()
                };
                let _broker = BrokerController::start(env, config, store, server, 1 << 30)
                    .await
                    .expect("the broker starts");
                std::future::pending::<()>().await;
            }
        })
        .build()
        .id();
    (id, disk)
}

/// The node the simulated clients run on, `client-0` at 10.0.3.1.
pub fn client_node(handle: &Handle) -> madsim::runtime::NodeHandle {
    client_node_named(handle, "client-0", "10.0.3.1")
}

/// A client node named `name` (`producer-0`, `consumer-0`, ...) at `ip`.
pub fn client_node_named(handle: &Handle, name: &str, ip: &str) -> madsim::runtime::NodeHandle {
    handle
        .create_node()
        .name(name)
        .ip(ip.parse().expect("a literal address"))
        .build()
}

/// A remoting client for the simulated client node.
pub fn client() -> RemotingClient {
    crate::remoting_client(3)
}

/// SEND_MESSAGE_V2 of `body` to `topic` queue 0 with `properties` (encoded: pairs
/// `key\u{1}value` joined by `\u{2}`).
pub fn send_request(topic: &str, properties: &str, body: &str) -> RemotingCommand {
    let header = SendMessageRequestHeaderV2 {
        producer_group: "sim-pg".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 1,
        queue_id: 0,
        sys_flag: 0,
        born_timestamp: 0,
        flag: 0,
        properties: Some(properties.into()),
        ..SendMessageRequestHeaderV2::default()
    };
    RemotingCommand::request_with_header(request_code::SEND_MESSAGE_V2, &header)
        .with_body(body.as_bytes().to_vec())
}

/// PULL_MESSAGE of [`CONSUMER_GROUP`] on `topic` queue `queue_id` from `offset`, any tag,
/// held up to `suspend_ms`.
pub fn pull_request(topic: &str, queue_id: i32, offset: i64, suspend_ms: i64) -> RemotingCommand {
    let header = PullMessageRequestHeader {
        consumer_group: CONSUMER_GROUP.into(),
        topic: topic.into(),
        queue_id,
        queue_offset: offset,
        max_msg_nums: 32,
        // SUSPEND | SUBSCRIPTION
        sys_flag: 2 | 4,
        commit_offset: 0,
        suspend_timeout_millis: suspend_ms,
        subscription: Some("*".into()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        broker_name: None,
    };
    RemotingCommand::request_with_header(request_code::PULL_MESSAGE, &header)
}

/// Sends `request` until the broker accepts it (it registers and creates the topic on first
/// send).
pub async fn send_eventually(client: &RemotingClient, request: RemotingCommand) -> RemotingCommand {
    for _ in 0..100 {
        if let Ok(response) = client
            .invoke(BROKER, request.clone(), Duration::from_secs(3))
            .await
            && response.code == response_code::SUCCESS
        {
            return response;
        }
        sleep(Duration::from_millis(200)).await;
    }
    panic!("the broker never accepted a send");
}

pub use ferrocket_sim::cluster::create_topic;

/// Every message of `topic` queue `queue_id` on [`BROKER`] from offset 0, pulling without
/// suspension.
pub async fn pull_all(client: &RemotingClient, topic: &str, queue_id: i32) -> Vec<StoredMessage> {
    pull_all_from(client, BROKER, topic, queue_id).await
}

/// Every message of `topic` queue `queue_id` on the broker at `addr` from offset 0, pulling
/// without suspension.
pub async fn pull_all_from(
    client: &RemotingClient,
    addr: &str,
    topic: &str,
    queue_id: i32,
) -> Vec<StoredMessage> {
    let mut messages = Vec::new();
    let mut offset = 0;
    loop {
        let response = client
            .invoke(
                addr,
                pull_request(topic, queue_id, offset, 0),
                Duration::from_secs(5),
            )
            .await
            .expect("the broker answers pulls");
        let next: i64 = response
            .ext_fields
            .get("nextBeginOffset")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "pull answer {} ({:?}) from {addr} lacks nextBeginOffset",
                    response.code, response.remark
                )
            });
        if response.code != response_code::SUCCESS {
            return messages;
        }
        messages.extend(decode_records(&response.body));
        offset = next;
    }
}

/// The bodies of `messages`, as text.
pub fn bodies(messages: &[StoredMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(m.body.as_deref().unwrap_or_default()).into_owned())
        .collect()
}
