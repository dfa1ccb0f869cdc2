//! Unmodified RocketMQ clients end to end over real TCP against the real binaries: the C++
//! client (PyPI `rocketmq==0.4.4`) produces to an auto-created topic through `mqbroker`,
//! found through `mqnamesrv`, and a push consumer in another process receives every message
//! exactly as sent; after a broker restart the group resumes from its committed offsets
//! without redelivery; and a `kill -9` of the broker in the middle of a produce stream loses
//! no acknowledged message (ASYNC_FLUSH: a process crash keeps the page cache).
#![cfg(not(madsim))]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferrocket_tests::process::{
    ChildGuard, ScriptOutput, python_or_skip, python_script, read_text, run_script, start_broker,
    start_namesrv, wait_for_route,
};

const SCRIPT_MAX: Duration = Duration::from_secs(180);

/// Produces `count` messages with `prefix`; returns the indexes acknowledged.
fn produce(
    python: &Path,
    home: &Path,
    namesrv: &str,
    topic: &str,
    count: usize,
    prefix: &str,
) -> BTreeSet<u64> {
    let output = run_script(
        python,
        &[
            python_script("produce.py").display().to_string(),
            namesrv.into(),
            topic.into(),
            count.to_string(),
            prefix.into(),
        ],
        home,
        SCRIPT_MAX,
    );
    assert!(output.status.success(), "producer {output}");
    acknowledged(&output)
}

fn acknowledged(output: &ScriptOutput) -> BTreeSet<u64> {
    output
        .json_lines()
        .iter()
        .filter(|line| line["status"] == 0)
        .filter_map(|line| line["i"].as_u64())
        .collect()
}

/// Consumes with `group` until `expected` messages or the time bound; returns each body
/// with its keys and tags, in arrival order.
fn consume(
    python: &Path,
    home: &Path,
    namesrv: &str,
    topic: &str,
    group: &str,
    expected: usize,
) -> Vec<(String, String, String)> {
    let output = run_script(
        python,
        &[
            python_script("consume.py").display().to_string(),
            namesrv.into(),
            topic.into(),
            group.into(),
            expected.to_string(),
            "90".into(),
        ],
        home,
        SCRIPT_MAX,
    );
    assert!(output.status.success(), "consumer {output}");
    output
        .json_lines()
        .iter()
        .filter(|line| line.get("body").is_some())
        .map(|line| {
            let text = |key: &str| line[key].as_str().unwrap_or_default().to_owned();
            (text("body"), text("keys"), text("tags"))
        })
        .collect()
}

/// Asserts `received` is exactly the messages `prefix-i` for `indexes`, each once, with the
/// keys and tags the producer gave it.
fn assert_exactly(received: &[(String, String, String)], prefix: &str, indexes: &BTreeSet<u64>) {
    let mut seen = BTreeMap::new();
    for (body, keys, tags) in received {
        let i: u64 = body
            .strip_prefix(&format!("{prefix}-"))
            .and_then(|i| i.parse().ok())
            .unwrap_or_else(|| panic!("unexpected message {body:?}"));
        assert_eq!(keys, &format!("{prefix}-key-{i}"), "keys of {body}");
        assert_eq!(
            tags,
            if i.is_multiple_of(2) { "TagA" } else { "TagB" },
            "tags of {body}"
        );
        assert!(seen.insert(i, ()).is_none(), "{body} delivered twice");
    }
    let got: BTreeSet<u64> = seen.into_keys().collect();
    let missing: Vec<_> = indexes.difference(&got).take(10).collect();
    let extra: Vec<_> = got.difference(indexes).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} received of {} sent; missing {missing:?}, unexpected {extra:?}",
        got.len(),
        indexes.len()
    );
}

#[test]
fn cpp_clients_round_trip_a_thousand_messages_and_resume_after_a_broker_restart() {
    let Some(python) = python_or_skip() else {
        return;
    };
    let namesrv_home = tempfile::tempdir().unwrap();
    let broker_home = tempfile::tempdir().unwrap();
    let client_home = tempfile::tempdir().unwrap();
    let namesrv = start_namesrv(namesrv_home.path());
    let namesrv_addr = namesrv.addr.to_string();
    let broker = start_broker(broker_home.path(), namesrv.addr, None, "");
    let broker_port = broker.addr.port();
    wait_for_route(namesrv.addr, "TBW102");

    let started = Instant::now();
    let sent = produce(
        &python,
        client_home.path(),
        &namesrv_addr,
        "E2E",
        1000,
        "run1",
    );
    assert_eq!(sent.len(), 1000, "every send acknowledged");
    let produce_time = started.elapsed();
    let received = consume(
        &python,
        client_home.path(),
        &namesrv_addr,
        "E2E",
        "e2e-group",
        1000,
    );
    assert_exactly(&received, "run1", &sent);
    println!(
        "C++ client: 1000 messages produced in {produce_time:?}, consumed in {:?}",
        started.elapsed() - produce_time
    );

    // A clean restart of the broker keeps messages and the group's committed offsets.
    let mut broker = broker;
    assert!(
        broker.process.terminate(Duration::from_secs(20)).is_some(),
        "the broker stops on SIGTERM:\n{}",
        broker.log_text()
    );
    drop(broker);
    let _broker = start_broker(broker_home.path(), namesrv.addr, Some(broker_port), "");
    wait_for_route(namesrv.addr, "E2E");
    let more = produce(
        &python,
        client_home.path(),
        &namesrv_addr,
        "E2E",
        100,
        "run2",
    );
    assert_eq!(more.len(), 100);
    let resumed = consume(
        &python,
        client_home.path(),
        &namesrv_addr,
        "E2E",
        "e2e-group",
        100,
    );
    assert_exactly(&resumed, "run2", &more);
}

#[test]
fn a_broker_killed_mid_stream_loses_no_acknowledged_message() {
    let Some(python) = python_or_skip() else {
        return;
    };
    let namesrv_home = tempfile::tempdir().unwrap();
    let broker_home = tempfile::tempdir().unwrap();
    let client_home = tempfile::tempdir().unwrap();
    let namesrv = start_namesrv(namesrv_home.path());
    let namesrv_addr = namesrv.addr.to_string();
    let mut broker = start_broker(broker_home.path(), namesrv.addr, None, "");
    let broker_port = broker.addr.port();
    wait_for_route(namesrv.addr, "TBW102");

    // Produce in the background and kill -9 the broker once a few hundred are acknowledged.
    let stdout_path = client_home.path().join("stream.out");
    let child = Command::new(&python)
        .arg(python_script("produce.py"))
        .args([
            &namesrv_addr,
            "KillStream",
            "5000",
            "kill",
            "--stop-on-error",
        ])
        .env("HOME", client_home.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut producer = ChildGuard(child);
    let deadline = Instant::now() + SCRIPT_MAX;
    while read_text(&stdout_path)
        .lines()
        .filter(|l| l.contains("\"status\""))
        .count()
        < 300
    {
        assert!(Instant::now() < deadline, "the producer did not get going");
        std::thread::sleep(Duration::from_millis(20));
    }
    broker.process.kill();
    let exit = producer.wait_max(SCRIPT_MAX);
    assert!(
        exit.is_some(),
        "the producer stops after its first failed send"
    );
    let output = ScriptOutput {
        status: exit.unwrap(),
        stdout: read_text(&stdout_path),
        stderr: String::new(),
    };
    let sent = acknowledged(&output);
    assert!(
        sent.len() >= 300 && sent.len() < 5000,
        "{} acknowledged",
        sent.len()
    );
    drop(broker);

    let _broker = start_broker(broker_home.path(), namesrv.addr, Some(broker_port), "");
    wait_for_route(namesrv.addr, "KillStream");
    let received = consume(
        &python,
        client_home.path(),
        &namesrv_addr,
        "KillStream",
        "kill-group",
        sent.len(),
    );
    // Every acknowledged message survived; a send in flight at the kill may also be there.
    let bodies: BTreeSet<String> = received.iter().map(|(body, _, _)| body.clone()).collect();
    let lost: Vec<_> = sent
        .iter()
        .filter(|i| !bodies.contains(&format!("kill-{i}")))
        .take(10)
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged but lost: {lost:?} (of {})",
        sent.len()
    );
    println!(
        "kill -9 mid-stream: {} acknowledged, all {} found",
        sent.len(),
        received.len()
    );
}
