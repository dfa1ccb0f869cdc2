//! Remoting round trips over real loopback TCP: sync, async, oneway, timeout, unknown code,
//! busy, processor failure, and a held request that does not block the connection.
#![cfg(not(madsim))]

use std::sync::Arc;
use std::time::Duration;

use ferrocket_engine::remoting::transport::{
    ClientConfig, ProcessorTable, RemotingClient, RemotingError, RemotingServer, ServerConfig,
};
use ferrocket_engine::remoting::{RemotingCommand, SerializeType, response_code};
use ferrocket_engine::rng::Rng;
use ferrocket_net::{SystemClock, TokioNet};
use ferrocket_tests::{COUNT, ECHO, NARROW, PANIC, SLOW, TestProcessors};
use futures::future::join_all;

const TIMEOUT: Duration = Duration::from_secs(5);

async fn start() -> (RemotingServer, TestProcessors, Arc<RemotingClient>, String) {
    let (table, processors) = TestProcessors::table(SystemClock::shared());
    let server = RemotingServer::start(
        TokioNet::shared(),
        SystemClock::shared(),
        ServerConfig::new("127.0.0.1:0".parse().unwrap()),
        table,
        None,
    )
    .await
    .unwrap();
    let addr = server.local_addr().to_string();
    let client = Arc::new(RemotingClient::new(
        TokioNet::shared(),
        SystemClock::shared(),
        Rng::shared(1),
        ClientConfig::default(),
        ProcessorTable::new(),
        None,
    ));
    (server, processors, client, addr)
}

fn echo(text: &str) -> RemotingCommand {
    let mut request = RemotingCommand::request(ECHO).with_body(text.as_bytes().to_vec());
    request.ext_fields.insert("text", text);
    request
}

#[tokio::test]
async fn sync_invoke_round_trips_in_both_header_encodings() {
    let (_server, _, client, addr) = start().await;
    for serialize_type in [SerializeType::Json, SerializeType::RocketMq] {
        let mut request = echo("hello");
        request.serialize_type = serialize_type;
        let response = client.invoke(&addr, request, TIMEOUT).await.unwrap();
        assert!(response.is_response());
        assert_eq!(response.code, response_code::SUCCESS);
        assert_eq!(&response.body[..], b"hello");
        assert_eq!(response.ext_fields.get("text"), Some("hello"));
        assert_eq!(
            response.serialize_type, serialize_type,
            "reply in the request's encoding"
        );
        assert_eq!(response.version, 409);
    }
}

#[tokio::test]
async fn many_requests_in_flight_on_one_connection_are_matched_by_opaque() {
    let (_server, _, client, addr) = start().await;
    let calls = (0..200).map(|i| {
        let client = client.clone();
        let addr = addr.clone();
        async move {
            let response = client
                .invoke(&addr, echo(&i.to_string()), TIMEOUT)
                .await
                .unwrap();
            assert_eq!(response.body, i.to_string().into_bytes());
        }
    });
    join_all(calls).await;
}

#[tokio::test]
async fn async_invoke_delivers_the_response_to_the_callback() {
    let (_server, _, client, addr) = start().await;
    let (sender, receiver) = tokio::sync::oneshot::channel();
    client
        .invoke_async(&addr, echo("later"), TIMEOUT, move |outcome| {
            let _ = sender.send(outcome);
        })
        .await
        .unwrap();
    let response = receiver.await.unwrap().unwrap();
    assert_eq!(&response.body[..], b"later");
}

#[tokio::test]
async fn oneway_requests_arrive_and_are_not_answered() {
    let (_server, processors, client, addr) = start().await;
    for _ in 0..10 {
        client
            .invoke_oneway(&addr, RemotingCommand::request(COUNT), TIMEOUT)
            .await
            .unwrap();
    }
    // A sync echo after the oneways: the server has read them all once it answers.
    client.invoke(&addr, echo("fence"), TIMEOUT).await.unwrap();
    for _ in 0..100 {
        if processors.oneway_count() == 10 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("only {} oneway requests arrived", processors.oneway_count());
}

#[tokio::test]
async fn slow_response_times_out_and_the_connection_stays_usable() {
    let (_server, _, client, addr) = start().await;
    let mut slow = RemotingCommand::request(SLOW);
    slow.ext_fields.insert("delayMs", "2000");
    let error = client
        .invoke(&addr, slow, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(error, RemotingError::Timeout { .. }), "{error}");
    let response = client
        .invoke(&addr, echo("still here"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(&response.body[..], b"still here");
}

#[tokio::test]
async fn unknown_code_is_answered_not_supported() {
    let (_server, _, client, addr) = start().await;
    let response = client
        .invoke(&addr, RemotingCommand::request(4242), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(response.code, response_code::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(
        response.remark.as_deref(),
        Some(" request type 4242 not supported")
    );
}

#[tokio::test]
async fn full_queue_is_answered_system_busy() {
    let (_server, _, client, addr) = start().await;
    let calls = (0..6).map(|_| {
        let client = client.clone();
        let addr = addr.clone();
        async move {
            let mut request = RemotingCommand::request(NARROW);
            request.ext_fields.insert("delayMs", "300");
            client.invoke(&addr, request, TIMEOUT).await.unwrap().code
        }
    });
    let codes = join_all(calls).await;
    let busy = codes
        .iter()
        .filter(|&&c| c == response_code::SYSTEM_BUSY)
        .count();
    let ok = codes
        .iter()
        .filter(|&&c| c == response_code::SUCCESS)
        .count();
    assert!(
        busy >= 1,
        "one worker and one queue slot cannot hold six: {codes:?}"
    );
    assert!(ok >= 1, "{codes:?}");
    assert_eq!(busy + ok, 6, "{codes:?}");
}

#[tokio::test]
async fn processor_panic_is_answered_system_error() {
    let (_server, _, client, addr) = start().await;
    let response = client
        .invoke(&addr, RemotingCommand::request(PANIC), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(response.code, response_code::SYSTEM_ERROR);
    // The connection survives a processor panic.
    client.invoke(&addr, echo("after"), TIMEOUT).await.unwrap();
}

#[tokio::test]
async fn a_held_request_does_not_block_others_on_the_same_connection() {
    let (_server, _, client, addr) = start().await;
    let held = {
        let client = client.clone();
        let addr = addr.clone();
        tokio::spawn(async move {
            let mut request = RemotingCommand::request(SLOW);
            request.ext_fields.insert("delayMs", "1500");
            client.invoke(&addr, request, TIMEOUT).await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.invoke(&addr, echo("quick"), TIMEOUT).await.unwrap();
    assert!(
        !held.is_finished(),
        "the echo was answered only after the held request"
    );
    assert_eq!(held.await.unwrap().code, response_code::SUCCESS);
}

#[tokio::test]
async fn connect_to_a_closed_port_is_a_connect_error() {
    let (server, _, client, addr) = start().await;
    server.shutdown();
    // Give the listener a moment to be dropped... the accept task is aborted on drop.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let error = client.invoke(&addr, echo("x"), TIMEOUT).await.unwrap_err();
    assert!(
        matches!(
            error,
            RemotingError::Connect { .. } | RemotingError::SendRequest { .. }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn name_server_selection_falls_over_to_a_live_address() {
    let (_server, _, client, addr) = start().await;
    let dead = "127.0.0.1:1".to_string();
    client.update_name_server_address_list(&[dead.clone(), addr.clone()]);
    for _ in 0..5 {
        let response = client
            .invoke_name_server(echo("ns"), TIMEOUT)
            .await
            .unwrap();
        assert_eq!(&response.body[..], b"ns");
    }
    let no_servers = Arc::new(RemotingClient::new(
        TokioNet::shared(),
        SystemClock::shared(),
        Rng::shared(2),
        ClientConfig::default(),
        ProcessorTable::new(),
        None,
    ));
    let error = no_servers
        .invoke_name_server(echo("x"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(error, RemotingError::NoNameServer(_)), "{error}");
}

#[tokio::test]
async fn garbage_bytes_close_the_connection_without_harming_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_server, _, client, addr) = start().await;
    let mut raw = tokio::net::TcpStream::connect(&addr).await.unwrap();
    raw.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3])
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(TIMEOUT, raw.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "server closes the bad connection"
    );
    client.invoke(&addr, echo("fine"), TIMEOUT).await.unwrap();
}

#[tokio::test]
async fn server_invokes_a_client_over_the_clients_own_connection() {
    let (server, _, _, addr) = start().await;
    let (client_table, client_processors) = TestProcessors::table(SystemClock::shared());
    let client = RemotingClient::new(
        TokioNet::shared(),
        SystemClock::shared(),
        Rng::shared(3),
        ClientConfig::default(),
        client_table,
        None,
    );
    client.invoke(&addr, echo("hello"), TIMEOUT).await.unwrap();
    let channel = server
        .channels()
        .into_iter()
        .next()
        .expect("the client's connection");
    let response = server
        .invoke(&channel, echo("from the broker"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(&response.body[..], b"from the broker");
    server
        .invoke_oneway(&channel, RemotingCommand::request(COUNT), TIMEOUT)
        .await
        .unwrap();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    server
        .invoke_async(&channel, echo("async"), TIMEOUT, move |outcome| {
            let _ = sender.send(outcome);
        })
        .await
        .unwrap();
    assert_eq!(&receiver.await.unwrap().unwrap().body[..], b"async");
    for _ in 0..100 {
        if client_processors.oneway_count() == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the oneway request never reached the client");
}
