//! The remoting round trip under madsim, with the faults real networks have: a partition
//! that stalls the link, then a killed and restarted server. The client must see timeouts or
//! connection errors while the fault lasts — never a hang — and recover on its own after the
//! heal or the restart, over the same `RemotingClient`.
#![cfg(madsim)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrocket_engine::remoting::transport::{
    Channel, ChannelEvent, ChannelEventListener, RemotingClient, RemotingError, RemotingServer,
    ServerConfig,
};
use ferrocket_engine::remoting::{RemotingCommand, response_code};
use ferrocket_net::{SystemClock, TokioNet};
use ferrocket_tests::{ECHO, TestProcessors, remoting_client};
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};

const SERVER_ADDR: &str = "10.0.0.1:9876";

fn echo(text: &str) -> RemotingCommand {
    RemotingCommand::request(ECHO).with_body(text.as_bytes().to_vec())
}

async fn serve_forever() {
    serve_forever_with(None).await;
}

async fn serve_forever_with(listener: Option<Arc<dyn ChannelEventListener>>) {
    let (table, _processors) = TestProcessors::table(SystemClock::shared());
    let bind: SocketAddr = SERVER_ADDR.parse().expect("literal address");
    let _server = RemotingServer::start(
        TokioNet::shared(),
        SystemClock::shared(),
        ServerConfig::new(bind),
        table,
        listener,
    )
    .await
    .expect("the simulated server binds its own address");
    std::future::pending::<()>().await;
}

/// The client node, beside the server on the simulated network.
fn client_node(handle: &Handle) -> NodeHandle {
    handle
        .create_node()
        .name("client")
        .ip("10.0.0.2".parse().unwrap())
        .build()
}

/// A server node that logs its connection events into `log`, and the client node.
fn logged_server_and_client_node(log: &Arc<EventLog>) -> NodeHandle {
    let handle = Handle::current();
    let listener: Arc<dyn ChannelEventListener> = log.clone();
    handle
        .create_node()
        .name("server")
        .ip("10.0.0.1".parse().unwrap())
        .init(move || serve_forever_with(Some(listener.clone())))
        .build();
    client_node(&handle)
}

#[madsim::test]
async fn client_sees_errors_during_partition_and_kill_and_recovers_after() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let handle = Handle::current();
    let server = handle
        .create_node()
        .name("server")
        .ip("10.0.0.1".parse().unwrap())
        .init(serve_forever)
        .build();
    let server_id = server.id();

    client_node(&handle)
        .spawn(async move {
            let client = Arc::new(remoting_client(handle.seed()));
            let timeout = Duration::from_secs(1);
            // Let the server bind.
            madsim::time::sleep(Duration::from_millis(100)).await;

            let response = client.invoke(SERVER_ADDR, echo("before"), timeout).await;
            assert_eq!(response.unwrap().code, response_code::SUCCESS);

            // Partition: the established connection stalls; the call times out.
            NetSim::current().clog_node(server_id);
            let during = client.invoke(SERVER_ADDR, echo("during"), timeout).await;
            assert!(
                matches!(during, Err(RemotingError::Timeout { .. })),
                "a partitioned call times out: {during:?}"
            );
            NetSim::current().unclog_node(server_id);
            // The stalled stream resumes after the simulated TCP retransmission back-off.
            let healed = eventually(&client, "healed", timeout).await;
            assert_eq!(&healed.body[..], b"healed");

            // Kill: the connection drops and calls fail fast; a restart brings it back.
            handle.kill(server_id);
            let dead = client.invoke(SERVER_ADDR, echo("dead"), timeout).await;
            assert!(
                matches!(
                    dead,
                    Err(RemotingError::SendRequest { .. } | RemotingError::Connect { .. })
                ),
                "a call to a killed server fails: {dead:?}"
            );
            handle.restart(server_id);
            let recovered = eventually(&client, "back", timeout).await;
            assert_eq!(&recovered.body[..], b"back");
        })
        .await
        .expect("client task");
}

/// Retries an echo every 100 ms for up to 20 s of simulated time, as an application would;
/// panics if the client never recovers.
async fn eventually(client: &RemotingClient, text: &str, timeout: Duration) -> RemotingCommand {
    for _ in 0..200 {
        match client.invoke(SERVER_ADDR, echo(text), timeout).await {
            Ok(response) => return response,
            Err(_) => madsim::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("the client did not recover within 20 s of simulated time");
}

/// Records the server's connection events.
#[derive(Default)]
struct EventLog(std::sync::Mutex<Vec<ChannelEvent>>);

impl ChannelEventListener for EventLog {
    fn on_event(&self, _channel: &Channel, event: &ChannelEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

#[madsim::test]
async fn idle_connection_is_closed_after_120_s_and_the_client_reconnects() {
    let log = Arc::new(EventLog::default());
    logged_server_and_client_node(&log)
        .spawn(async move {
            let client = remoting_client(5);
            let timeout = Duration::from_secs(1);
            madsim::time::sleep(Duration::from_millis(100)).await;
            client
                .invoke(SERVER_ADDR, echo("one"), timeout)
                .await
                .unwrap();
            madsim::time::sleep(Duration::from_secs(110)).await;
            assert_eq!(*log.0.lock().unwrap(), vec![ChannelEvent::Connect]);
            madsim::time::sleep(Duration::from_secs(15)).await;
            let events = log.0.lock().unwrap().clone();
            assert!(
                events.ends_with(&[ChannelEvent::Idle, ChannelEvent::Close])
                    || events.ends_with(&[ChannelEvent::Close]),
                "idle connection closed after 120 s: {events:?}"
            );
            client
                .invoke(SERVER_ADDR, echo("two"), timeout)
                .await
                .unwrap();
            assert_eq!(log.0.lock().unwrap().last(), Some(&ChannelEvent::Connect));
        })
        .await
        .expect("client task");
}

#[madsim::test]
async fn concurrent_requests_share_one_connect_and_then_its_open_connection() {
    let log = Arc::new(EventLog::default());
    logged_server_and_client_node(&log)
        .spawn(async move {
            let client = Arc::new(remoting_client(6));
            madsim::time::sleep(Duration::from_millis(100)).await;
            // Two rounds: the first finds no connection (one caller connects, the others wait
            // for it), the second finds it open.
            for round in 0..2 {
                let requests = (0..16).map(|index| {
                    let client = client.clone();
                    async move {
                        let text = format!("{round}-{index}");
                        let response = client
                            .invoke(SERVER_ADDR, echo(&text), Duration::from_secs(3))
                            .await
                            .expect("every request is answered");
                        assert_eq!(response.body.as_ref(), text.as_bytes());
                    }
                });
                futures::future::join_all(requests).await;
            }
            assert_eq!(*log.0.lock().unwrap(), vec![ChannelEvent::Connect]);
        })
        .await
        .expect("client task");
}
