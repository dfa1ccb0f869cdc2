//! The load generator against the real `ferrocket` binary over TCP: short `produce`
//! (closed loop, open loop, batched), `e2e` (push and pull consumers) and backlog `consume`
//! runs whose `--json` summaries must add up — every measured send acknowledged or counted as
//! an error, no error, nonzero throughput, and every acknowledged message delivered once.
//!
//! Build the binaries first: `cargo build --bins`.
#![cfg(not(madsim))]

use std::net::SocketAddr;
use std::time::Duration;

use ferrocket_tests::process::{
    ScriptOutput, ServerProcess, binary, free_loopback_addr, run_script, run_script_with_stderr,
    wait_for_route,
};
use serde_json::Value;

/// Longest an `mqbench` run of these tests may take.
const RUN_MAX: Duration = Duration::from_secs(60);

/// `ferrocket` (name server and broker in one process) on free loopback ports, its data in
/// a temporary directory.
struct Ferrocket {
    home: tempfile::TempDir,
    server: ServerProcess,
}

impl Ferrocket {
    fn start() -> Self {
        let home = tempfile::tempdir().expect("a temporary home");
        let namesrv = free_loopback_addr();
        let broker = free_loopback_addr();
        let server = ServerProcess::start(
            &binary("ferrocket"),
            &[
                "--data-dir".into(),
                home.path().join("data").display().to_string(),
                "--namesrv-port".into(),
                namesrv.port().to_string(),
                "--broker-port".into(),
                broker.port().to_string(),
            ],
            &[("HOME", home.path())],
            namesrv,
            home.path().join("ferrocket.log"),
        );
        wait_for_route(namesrv, "TBW102");
        Self { home, server }
    }

    fn namesrv(&self) -> SocketAddr {
        self.server.addr
    }

    /// Runs `mqbench` with `args` (plus the name server and `--json`) and returns its
    /// summary.
    fn mqbench(&self, args: &[&str]) -> Value {
        let full = self.mqbench_args(args);
        let output = run_script(&binary("mqbench"), &full, self.home.path(), RUN_MAX);
        self.summary(&full, &output)
    }

    /// [`Self::mqbench`] with its stderr (live lines, first errors) on `/dev/full`.
    fn mqbench_with_a_full_stderr(&self, args: &[&str]) -> Value {
        let full = self.mqbench_args(args);
        let dev_full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full opens");
        let output = run_script_with_stderr(
            &binary("mqbench"),
            &full,
            self.home.path(),
            RUN_MAX,
            dev_full,
        );
        self.summary(&full, &output)
    }

    fn mqbench_args(&self, args: &[&str]) -> Vec<String> {
        let mut full: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        full.extend(["-n".into(), self.namesrv().to_string(), "--json".into()]);
        full
    }

    fn summary(&self, args: &[String], output: &ScriptOutput) -> Value {
        assert!(
            output.status.success(),
            "mqbench {args:?} failed {output}\n--- ferrocket\n{}",
            self.server.log_text()
        );
        let mut lines = output.json_lines();
        assert_eq!(
            lines.len(),
            1,
            "one JSON summary from mqbench {args:?} {output}"
        );
        lines.remove(0)
    }
}

fn count(summary: &Value, field: &str) -> u64 {
    summary[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is a count in {summary}"))
}

fn rate(summary: &Value, field: &str) -> f64 {
    summary[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is a number in {summary}"))
}

/// Every measured send is acknowledged or an error, there is no error, something was sent,
/// and the latency percentiles are ordered.
fn check_sends(summary: &Value) {
    let (sent, acked, errors) = (
        count(summary, "sent"),
        count(summary, "acked"),
        count(summary, "errors"),
    );
    assert_eq!(sent, acked + errors, "{summary}");
    assert_eq!(errors, 0, "{summary}");
    assert!(acked > 0, "{summary}");
    assert!(rate(summary, "msgs_per_s") > 0.0, "{summary}");
    assert!(rate(summary, "mb_per_s") > 0.0, "{summary}");
    check_latency(&summary["send_latency_us"]);
}

fn check_latency(latency: &Value) {
    let at = |field: &str| latency[field].as_u64().expect("a latency in µs");
    assert!(at("count") > 0, "{latency}");
    assert!(at("min") <= at("p50"), "{latency}");
    assert!(at("p50") <= at("p99"), "{latency}");
    assert!(at("p99") <= at("p999"), "{latency}");
    assert!(at("p999") <= at("max"), "{latency}");
}

/// Every acknowledged message of the measured window was delivered exactly once.
fn check_deliveries(summary: &Value) {
    assert!(
        count(summary, "consumed") >= count(summary, "sent"),
        "{summary}"
    );
    assert_eq!(count(summary, "duplicates"), 0, "{summary}");
    assert_eq!(count(summary, "lost"), 0, "{summary}");
    assert!(rate(summary, "consume_msgs_per_s") > 0.0, "{summary}");
    check_latency(&summary["e2e_latency_us"]);
}

#[test]
fn mqbench_summaries_add_up_against_ferrocket() {
    let ferrocket = Ferrocket::start();

    let closed = ferrocket.mqbench(&[
        "produce",
        "-t",
        "BenchClosed",
        "-q",
        "4",
        "-s",
        "128",
        "-c",
        "8",
        "-w",
        "0.5",
        "-d",
        "1",
    ]);
    check_sends(&closed);
    assert_eq!(closed["workload"]["inflight"], 8);

    // Live lines that cannot be written (a full disk under a redirected log) are lost; the
    // run and its summary are not.
    let unlogged = ferrocket.mqbench_with_a_full_stderr(&[
        "produce",
        "-t",
        "BenchClosed",
        "-s",
        "128",
        "-c",
        "4",
        "-w",
        "0.5",
        "-d",
        "1.5",
    ]);
    check_sends(&unlogged);

    // 200 requests a second for one second, after half a second of warm-up.
    let open = ferrocket.mqbench(&[
        "produce",
        "-t",
        "BenchOpen",
        "-s",
        "1024",
        "-c",
        "4",
        "--rate",
        "200",
        "-w",
        "0.5",
        "-d",
        "1",
        "--keys",
        "--tags",
    ]);
    check_sends(&open);
    // Requests are attributed by due time, so the window holds the 200 due in it (give or
    // take one at each edge), however late the broker answers.
    let sent = count(&open, "sent");
    assert!((198..=202).contains(&sent), "200 sends: {open}");

    let batched = ferrocket.mqbench(&[
        "produce",
        "-t",
        "BenchBacklog",
        "-s",
        "256",
        "-c",
        "2",
        "--batch",
        "8",
        "-w",
        "0",
        "--count",
        "400",
    ]);
    check_sends(&batched);
    assert_eq!(count(&batched, "acked"), 400, "{batched}");
    assert_eq!(batched["send_latency_us"]["count"], 50, "{batched}");

    let backlog = ferrocket.mqbench(&[
        "consume",
        "-t",
        "BenchBacklog",
        "--from",
        "first",
        "--consumer",
        "pull",
        "-w",
        "0",
        "--count",
        "400",
        "-d",
        "30",
    ]);
    assert_eq!(count(&backlog, "consumed"), 400, "{backlog}");
    assert!(rate(&backlog, "consume_msgs_per_s") > 0.0, "{backlog}");

    for consumer in ["pull", "push"] {
        let e2e = ferrocket.mqbench(&[
            "e2e",
            "-t",
            &format!("BenchE2e_{consumer}"),
            "-s",
            "512",
            "-c",
            "4",
            "--consumer",
            consumer,
            "-w",
            "1",
            "-d",
            "1",
        ]);
        check_sends(&e2e);
        check_deliveries(&e2e);
    }
}
