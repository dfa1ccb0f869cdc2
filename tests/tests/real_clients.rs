//! Real RocketMQ clients against the `mqnamesrv` binary, run as processes.
//!
//! The client is PyPI `rocketmq==0.4.4`: a ctypes wrapper around the bundled C++ client
//! `librocketmq.so` (spec/wire-protocol.md §10). `scripts/client-env.sh` installs it into
//! `.venv`; this test runs it with the interpreter named by `FERROCKET_PYTHON`:
//!
//! ```text
//! cargo build --bin mqnamesrv
//! FERROCKET_PYTHON="$(scripts/client-env.sh | tail -n 1)" \
//!     cargo test -p ferrocket-tests --test real_clients
//! ```
//!
//! Without `FERROCKET_PYTHON` the test is skipped with a message, except under `CI=true`,
//! where it fails. The `mqnamesrv` binary is looked for next to this test's own target
//! directory (`$CARGO_TARGET_DIR`, else `<workspace>/target`), profile included; it is not
//! built from here, so build it first.
//!
//! The client talks to the name server through [`WireRecorder`], a byte-for-byte loopback
//! proxy, because the client's own verdict cannot tell a name server that answered from one
//! that was never reached: the C++ producer raises the same "No route info of this topic"
//! when nothing listens at all. The recording shows what was really asked and answered.
#![cfg(not(madsim))]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ferrocket_engine::remoting::headers::GetRouteInfoRequestHeader;
use ferrocket_engine::remoting::{
    LanguageCode, RemotingCommand, codec, request_code as rc, response_code,
};
use ferrocket_tests::process::{
    ChildGuard, python_or_skip, python_script, read_text, start_namesrv,
};

/// The bound the Python script enforces on the client itself.
const SCRIPT_BOUND: Duration = Duration::from_secs(20);
/// When the test gives up on the Python process and kills it (the script's own bound plus
/// interpreter start and teardown).
const CLIENT_PROCESS_MAX: Duration = Duration::from_secs(40);
/// "Well within the bound": the C++ client fails a route lookup in milliseconds.
const CLIENT_EXPECTED_MAX: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Helpers: finding the interpreter and the binary, the name-server process, the recorder.
// ---------------------------------------------------------------------------------------------

/// The bytes of one proxied connection, as sent by each side.
#[derive(Debug, Default)]
struct RecordedConnection {
    to_server: Mutex<Vec<u8>>,
    to_client: Mutex<Vec<u8>>,
}

/// A loopback TCP proxy in front of `upstream` that keeps a copy of every byte in each
/// direction. Bytes are recorded before they are forwarded, so once a client has seen a
/// response, the recording holds it and the request it answers.
struct WireRecorder {
    addr: SocketAddr,
    connections: Arc<Mutex<Vec<Arc<RecordedConnection>>>>,
    stop: Arc<AtomicBool>,
}

impl WireRecorder {
    fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port can be bound");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let connections: Arc<Mutex<Vec<Arc<RecordedConnection>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (table, stopping) = (connections.clone(), stop.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue; // the client sees its connection close
                };
                let recorded = Arc::new(RecordedConnection::default());
                table
                    .lock()
                    .expect("no recorder thread panics")
                    .push(recorded.clone());
                let (client_read, server_read) = (
                    client.try_clone().expect("a socket can be cloned"),
                    server.try_clone().expect("a socket can be cloned"),
                );
                let to_server = recorded.clone();
                thread::spawn(move || pump(client_read, server, &to_server.to_server));
                thread::spawn(move || pump(server_read, client, &recorded.to_client));
            }
        });
        Self {
            addr,
            connections,
            stop,
        }
    }

    /// Every request seen so far with its response (`None` if none came back), decoded.
    fn exchanges(&self) -> Vec<(RemotingCommand, Option<RemotingCommand>)> {
        let connections = self.connections.lock().expect("no recorder thread panics");
        let mut exchanges = Vec::new();
        for connection in connections.iter() {
            let requests = decode_all(&connection.to_server.lock().expect("no pump panics"));
            let mut responses = decode_all(&connection.to_client.lock().expect("no pump panics"));
            for request in requests {
                let answer = responses
                    .iter()
                    .position(|response| response.opaque == request.opaque)
                    .map(|index| responses.remove(index));
                exchanges.push((request, answer));
            }
        }
        exchanges
    }
}

impl Drop for WireRecorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` into `to`, recording every byte first; half-closes `to` at the end.
fn pump(mut from: TcpStream, mut to: TcpStream, record: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                record
                    .lock()
                    .expect("no pump panics")
                    .extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Decodes every whole frame of `bytes` with the engine's codec.
fn decode_all(bytes: &[u8]) -> Vec<RemotingCommand> {
    let mut buf = BytesMut::from(bytes);
    let mut commands = Vec::new();
    while let Some(command) = codec::decode(&mut buf)
        .unwrap_or_else(|error| panic!("the recorded bytes do not decode: {error}"))
    {
        commands.push(command);
    }
    commands
}

/// What a finished client script left behind.
struct ScriptRun {
    status: ExitStatus,
    elapsed: Duration,
    stdout: String,
    stderr: String,
}

impl ScriptRun {
    /// The script's one-line JSON verdict (its last line of stdout).
    fn verdict(&self) -> serde_json::Value {
        let line = self.stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|error| panic!("{error} in {self}"))
    }
}

impl std::fmt::Display for ScriptRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "client run ({}, {:?}):\n--- stdout\n{}--- stderr\n{}",
            self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `script` with `python`, the name server address and the script bound as arguments,
/// `HOME` in a temp dir (the C++ client writes its logs to `$HOME/logs`). Kills it after
/// [`CLIENT_PROCESS_MAX`].
fn run_client_script(python: &Path, script: &str, namesrv_addr: SocketAddr) -> ScriptRun {
    let home = tempfile::tempdir().expect("a temp dir can be created");
    let (stdout_path, stderr_path) = (home.path().join("stdout"), home.path().join("stderr"));
    let started = Instant::now();
    let child = Command::new(python)
        .arg(python_script(script))
        .arg(namesrv_addr.to_string())
        .arg(SCRIPT_BOUND.as_secs().to_string())
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).expect("the temp dir is writable"))
        .stderr(File::create(&stderr_path).expect("the temp dir is writable"))
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", python.display()));
    let mut process = ChildGuard(child);
    let status = process.wait_max(CLIENT_PROCESS_MAX).unwrap_or_else(|| {
        panic!(
            "{script} still running after {CLIENT_PROCESS_MAX:?}; stdout so far:\n{}",
            read_text(&stdout_path)
        )
    });
    ScriptRun {
        status,
        elapsed: started.elapsed(),
        stdout: read_text(&stdout_path),
        stderr: read_text(&stderr_path),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

/// The C++ producer resolves a topic's route before sending; for a topic nobody registered
/// the name server answers TOPIC_NOT_EXIST, and the client must give up promptly with its
/// route error rather than hang.
#[test]
fn cpp_producer_sending_to_an_unregistered_topic_fails_promptly_with_a_route_error() {
    let Some(python) = python_or_skip() else {
        return;
    };
    let home = tempfile::tempdir().expect("a temp dir can be created");
    let namesrv = start_namesrv(home.path());
    let recorder = WireRecorder::start(namesrv.addr);

    let run = run_client_script(&python, "route_unknown_topic.py", recorder.addr);

    assert!(run.status.success(), "{run}");
    let verdict = run.verdict();
    assert_eq!(verdict["ok"], true, "{run}");
    let topic = verdict["topic"]
        .as_str()
        .expect("the verdict names the topic");
    assert_eq!(verdict["exception"], "ProducerSendSyncFailed", "{run}");
    let message = verdict["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("No route info of this topic: {topic}")),
        "{run}"
    );
    assert!(
        run.elapsed < CLIENT_EXPECTED_MAX,
        "the client took {:?}, bound {SCRIPT_BOUND:?}",
        run.elapsed
    );

    // What the client really asked, and what the name server answered.
    let exchanges = recorder.exchanges();
    let mut asked = std::collections::BTreeSet::new();
    for (request, response) in &exchanges {
        assert_eq!(request.code, rc::GET_ROUTEINFO_BY_TOPIC, "{request:?}");
        assert_eq!(request.language, LanguageCode::Cpp, "{request:?}");
        let header: GetRouteInfoRequestHeader = request
            .decode_header()
            .unwrap_or_else(|error| panic!("{error}: {request:?}"));
        let response = response
            .as_ref()
            .unwrap_or_else(|| panic!("no answer to {request:?}"));
        assert_eq!(
            response.code,
            response_code::TOPIC_NOT_EXIST,
            "{response:?}"
        );
        let expected = format!(
            "No topic route info in name server for the topic: {}",
            header.topic
        );
        assert!(
            response
                .remark
                .as_deref()
                .unwrap_or_default()
                .starts_with(&expected),
            "{response:?}"
        );
        asked.insert(header.topic);
    }
    let expected_topics: std::collections::BTreeSet<String> =
        [topic.to_owned(), "TBW102".to_owned()].into();
    assert_eq!(asked, expected_topics, "the producer falls back to TBW102");
    println!(
        "C++ producer: {} route lookups answered TOPIC_NOT_EXIST, failed in {:?}: {message}",
        exchanges.len(),
        run.elapsed
    );
}
