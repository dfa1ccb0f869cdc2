//! The pure-JavaScript RocketMQ 4.x client npm `ali-ons@3.12.0` against the real `mqnamesrv`
//! and `mqbroker` binaries, all run as processes: a producer sends to a topic the broker
//! creates on the first send, then a push consumer in a new group receives every message.
//!
//! `scripts/node-client-env.sh` installs the client into `tests/clients/node/node_modules`
//! (spec/wire-protocol.md §10); the scripts are `tests/clients/node/{produce,consume}.js`:
//!
//! ```text
//! cargo build --bins
//! scripts/node-client-env.sh
//! cargo test -p ferrocket-tests --test node_clients -- --nocapture
//! ```
//!
//! Without `node` on the PATH or without the installed packages the test is skipped with a
//! message, except under `CI=true`, where it fails. The binaries are looked for next to this
//! test's own target directory and are not built from here. Every process is bounded in time
//! and killed when the test ends, passing or failing.
#![cfg(not(madsim))]

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ferrocket_engine::remoting::{request_code, response_code};
use ferrocket_tests::process::{
    ChildGuard, read_text, start_broker, start_namesrv, wait_for_route, workspace_root,
};
use serde_json::Value;

/// How many messages the producer sends.
const MESSAGES: usize = 1000;
/// When the test gives up on the producer process and kills it.
const PRODUCE_MAX: Duration = Duration::from_secs(60);
/// The consumer script's own bound: it stops after this many seconds even when messages are
/// missing, and reports what it got.
const CONSUME_SECONDS: u64 = 60;
/// When the test gives up on the consumer process and kills it (its bound, plus the quiet
/// period after the last message, closing, and node's start).
const CONSUME_MAX: Duration = Duration::from_secs(CONSUME_SECONDS + 30);

// ---------------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------------

/// Where the client's package.json, lock file, scripts and node_modules live.
fn client_dir() -> PathBuf {
    workspace_root().join("tests/clients/node")
}

/// `node`, or `None` after saying the test is skipped. Under `CI=true` a missing `node` or a
/// missing install is a failure.
fn node_or_skip() -> Option<PathBuf> {
    let node = PathBuf::from("node");
    let node_works = Command::new(&node)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|output| output.status.success());
    let modules = client_dir().join("node_modules");
    let installed = ["ali-ons", "urllib"]
        .iter()
        .all(|name| modules.join(name).join("package.json").is_file());
    let missing = match (node_works, installed) {
        (true, true) => return Some(node),
        (false, _) => "`node` does not run".to_owned(),
        (true, false) => format!(
            "ali-ons or urllib is not installed in {}",
            modules.display()
        ),
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{missing} under CI: install node and run scripts/node-client-env.sh"
    );
    println!("skipped: {missing}; run scripts/node-client-env.sh");
    None
}

/// What a finished client script left behind.
struct ScriptRun {
    name: String,
    status: ExitStatus,
    elapsed: Duration,
    stdout: String,
    stderr: String,
}

impl ScriptRun {
    /// The JSON objects printed on stdout, one per line.
    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|error| panic!("{error} in line {line:?} of {self}"))
            })
            .collect()
    }

    /// The request codes the client sent, with the response codes it got (the scripts' last
    /// JSON line on stderr, `{"wire": {CODE: {"sent": n, "answers": {CODE: n}}}}`).
    fn wire(&self) -> BTreeMap<i32, (u64, BTreeMap<String, u64>)> {
        let wire = self
            .stderr
            .lines()
            .rev()
            .find_map(|line| {
                serde_json::from_str::<Value>(line)
                    .ok()?
                    .get("wire")
                    .cloned()
            })
            .unwrap_or_else(|| panic!("no wire summary on stderr of {self}"));
        let wire = wire.as_object().expect("the wire summary is an object");
        wire.iter()
            .map(|(code, entry)| {
                let answers = entry["answers"]
                    .as_object()
                    .expect("answers is an object")
                    .iter()
                    .map(|(answer, n)| (answer.clone(), n.as_u64().unwrap_or_default()))
                    .collect();
                let code = code.parse().expect("request codes are numbers");
                (code, (entry["sent"].as_u64().unwrap_or_default(), answers))
            })
            .collect()
    }

    /// One line per request code: name, count and answers by name.
    fn wire_summary(&self) -> String {
        self.wire()
            .iter()
            .map(|(code, (sent, answers))| {
                let answers: Vec<String> = answers
                    .iter()
                    .map(|(answer, n)| {
                        let name = answer
                            .parse()
                            .ok()
                            .and_then(response_code::name)
                            .unwrap_or(answer.as_str());
                        format!("{name} x{n}")
                    })
                    .collect();
                format!(
                    "  {code} {} x{sent} -> {}\n",
                    request_code::name(*code).unwrap_or("?"),
                    answers.join(", ")
                )
            })
            .collect()
    }

    /// Fails if the client sent a request code the servers do not support.
    fn assert_every_code_supported(&self) {
        let unsupported = response_code::REQUEST_CODE_NOT_SUPPORTED.to_string();
        for (code, (_, answers)) in self.wire() {
            assert!(
                !answers.contains_key(&unsupported),
                "{} sent {code} ({}), answered REQUEST_CODE_NOT_SUPPORTED: {self}",
                self.name,
                request_code::name(code).unwrap_or("?")
            );
        }
    }
}

impl std::fmt::Display for ScriptRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, {:?}):\n--- stdout\n{}--- stderr\n{}",
            self.name, self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `node script args…` in the client directory with `HOME` at `home`, killing it after
/// `max` (and when the test panics).
fn run_node(node: &Path, home: &Path, script: &str, args: &[String], max: Duration) -> ScriptRun {
    let (stdout_path, stderr_path) = (
        home.join(format!("{script}.out")),
        home.join(format!("{script}.err")),
    );
    let stdout = File::create(&stdout_path).expect("the temp dir is writable");
    let stderr = File::create(&stderr_path).expect("the temp dir is writable");
    let started = Instant::now();
    let child = Command::new(node)
        .arg(client_dir().join(script))
        .args(args)
        .current_dir(client_dir())
        .env("HOME", home)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {} {script}: {error}", node.display()));
    let mut process = ChildGuard(child);
    let status = process.wait_max(max).unwrap_or_else(|| {
        process.kill();
        panic!(
            "{script} {args:?} still running after {max:?}, killed\n--- stdout\n{}--- stderr\n{}",
            read_text(&stdout_path),
            read_text(&stderr_path)
        )
    });
    ScriptRun {
        name: script.to_owned(),
        status,
        elapsed: started.elapsed(),
        stdout: read_text(&stdout_path),
        stderr: read_text(&stderr_path),
    }
}

/// What message `i` carries: body, keys, tags.
fn expected_message(prefix: &str, i: usize) -> (String, String, String) {
    let tags = if i.is_multiple_of(2) { "TagA" } else { "TagB" };
    (
        format!("{prefix}-{i}"),
        format!("{prefix}-key-{i}"),
        tags.to_owned(),
    )
}

fn text(value: &Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field:?} in {value}"))
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// The test.
// ---------------------------------------------------------------------------------------------

/// ali-ons produces 200 messages (keys, alternating tags) to a topic nobody created — the
/// broker creates it on the first send — and a push consumer in a new group receives every
/// one of them exactly once, with body, keys and tags as sent, at the queue and offset the
/// send was acknowledged with.
#[test]
fn ali_ons_producer_and_push_consumer_round_trip_through_namesrv_and_broker() {
    let Some(node) = node_or_skip() else {
        return;
    };
    let namesrv_home = tempfile::tempdir().expect("a temp dir can be created");
    let broker_home = tempfile::tempdir().expect("a temp dir can be created");
    let client_home = tempfile::tempdir().expect("a temp dir can be created");
    let namesrv = start_namesrv(namesrv_home.path());
    let broker = start_broker(broker_home.path(), namesrv.addr, None, "");
    wait_for_route(namesrv.addr, "TBW102");

    let unique = format!(
        "{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is past 1970")
            .as_millis()
    );
    let topic = format!("NodeE2E_{unique}");
    let group = format!("node-e2e-consumer-{unique}");
    let prefix = format!("node-{unique}");
    let servers_logs = || {
        format!(
            "--- mqnamesrv\n{}\n--- mqbroker\n{}",
            namesrv.log_text(),
            broker.log_text()
        )
    };

    // Produce.
    let produced = run_node(
        &node,
        client_home.path(),
        "produce.js",
        &[
            namesrv.addr.to_string(),
            topic.clone(),
            MESSAGES.to_string(),
            prefix.clone(),
        ],
        PRODUCE_MAX,
    );
    assert!(produced.status.success(), "{produced}\n{}", servers_logs());
    produced.assert_every_code_supported();
    let acks = produced.json_lines();
    assert_eq!(acks.len(), MESSAGES, "one line per message: {produced}");
    // (queueId, queueOffset, msgId) by body, as the broker acknowledged each send.
    let mut sent: BTreeMap<String, (u64, u64, String)> = BTreeMap::new();
    for (i, ack) in acks.iter().enumerate() {
        assert_eq!(ack["i"].as_u64(), Some(i as u64), "{ack} in {produced}");
        assert_eq!(ack["status"], "SEND_OK", "{ack} in {produced}");
        let msg_id = text(ack, "msgId");
        assert_eq!(msg_id.len(), 32, "a 4.x offset message id: {ack}");
        let queue = (
            ack["queueId"]
                .as_u64()
                .unwrap_or_else(|| panic!("no queueId in {ack}")),
            ack["queueOffset"]
                .as_u64()
                .unwrap_or_else(|| panic!("no queueOffset in {ack}")),
            msg_id,
        );
        sent.insert(expected_message(&prefix, i).0, queue);
    }

    // Consume with a new group: it starts at the queues' first offsets.
    let consumed = run_node(
        &node,
        client_home.path(),
        "consume.js",
        &[
            namesrv.addr.to_string(),
            topic.clone(),
            group,
            MESSAGES.to_string(),
            CONSUME_SECONDS.to_string(),
        ],
        CONSUME_MAX,
    );
    assert!(consumed.status.success(), "{consumed}\n{}", servers_logs());
    consumed.assert_every_code_supported();
    let mut lines = consumed.json_lines();
    let done = lines
        .pop()
        .unwrap_or_else(|| panic!("no output: {consumed}"));
    assert_eq!(
        done["done"], true,
        "the last line is the verdict: {consumed}"
    );

    let mut received: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for message in lines {
        received
            .entry(text(&message, "body"))
            .or_default()
            .push(message);
    }
    let mut missing = Vec::new();
    for i in 0..MESSAGES {
        let (body, keys, tags) = expected_message(&prefix, i);
        let Some(copies) = received.remove(&body) else {
            missing.push(i);
            continue;
        };
        assert_eq!(
            copies.len(),
            1,
            "message {i} delivered more than once: {copies:?}"
        );
        let message = &copies[0];
        assert_eq!(text(message, "keys"), keys, "{message}");
        assert_eq!(text(message, "tags"), tags, "{message}");
        let (queue_id, queue_offset, msg_id) = &sent[&body];
        assert_eq!(message["queueId"].as_u64(), Some(*queue_id), "{message}");
        assert_eq!(
            message["queueOffset"].as_u64(),
            Some(*queue_offset),
            "{message}"
        );
        assert_eq!(&text(message, "msgId"), msg_id, "{message}");
    }
    assert!(
        missing.is_empty(),
        "{} of {MESSAGES} messages never arrived: {missing:?}\n{consumed}\n{}",
        missing.len(),
        servers_logs()
    );
    assert!(
        received.is_empty(),
        "messages nobody sent: {:?}",
        received.keys().collect::<Vec<_>>()
    );
    assert_eq!(done["count"].as_u64(), Some(MESSAGES as u64), "{consumed}");

    println!(
        "ali-ons round trip of {MESSAGES} messages on {topic}: produced in {:?}, consumed in \
         {:?} (including a 3 s quiet period and close)\nproducer sent:\n{}consumer sent:\n{}",
        produced.elapsed,
        consumed.elapsed,
        produced.wire_summary(),
        consumed.wire_summary()
    );
}
