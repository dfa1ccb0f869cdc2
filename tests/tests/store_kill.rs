//! The recovery path on real memory-mapped files: a child process appends to a store on
//! `MmapDisk` and reports each acknowledged append; the parent kills it with SIGKILL in the
//! middle of the stream, reopens the store (abnormal recovery) and finds every message the
//! child reported — a process crash keeps the page cache — and can append again.
#![cfg(all(unix, not(madsim)))]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use ferrocket_disk::MmapDisk;
use ferrocket_engine::Env;
use ferrocket_engine::rng::Rng;
use ferrocket_engine::store::message_store::{MessageStore, PutMessageStatus};
use ferrocket_net::{SystemClock, TokioNet};
use ferrocket_tests::store::{message, read_queue, small_store_config};

/// Set in the child's environment: the store directory it writes to.
const CHILD_ENV: &str = "FERROCKET_STORE_KILL_CHILD";
/// Appends after which the parent kills the child.
const KILL_AFTER: usize = 400;

fn env(dir: &std::path::Path) -> Env {
    Env {
        clock: SystemClock::shared(),
        net: TokioNet::shared(),
        disk: MmapDisk::shared(dir).expect("the store directory opens"),
        rng: Rng::shared(1),
    }
}

fn body(i: usize) -> Bytes {
    Bytes::from(format!("kill-test-{i}-{}", "z".repeat(i % 700)))
}

/// The child: appends until killed, printing `appended <i>` after each acknowledged append.
#[test]
fn child_writer_appends_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return; // Only meaningful when started by the parent test below.
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let store = MessageStore::open(
            env(std::path::Path::new(&dir)),
            small_store_config(),
            1 << 30,
        )
        .await
        .expect("the child's store opens");
        store.start();
        for i in 0.. {
            let result = store
                .put_message(message("KillTopic", (i % 3) as i32, body(i), "k"))
                .await;
            assert_eq!(result.status, PutMessageStatus::PutOk);
            println!("appended {i}");
        }
    });
}

#[test]
fn sigkill_mid_stream_loses_no_appended_message() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_writer_appends_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the child starts");
    let stdout = child.stdout.take().unwrap();
    let mut appended = 0usize;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        // libtest may print its own "test … " prefix on the same line as the first report.
        if let Some(i) = line.split("appended ").nth(1) {
            let i: usize = i.parse().unwrap();
            assert_eq!(i, appended, "appends are reported in order");
            appended += 1;
            if appended == KILL_AFTER {
                child.kill().expect("SIGKILL the child");
                break;
            }
        }
    }
    child.wait().unwrap();
    assert_eq!(appended, KILL_AFTER, "the child reported its appends");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let store: Arc<MessageStore> =
            MessageStore::open(env(dir.path()), small_store_config(), 1 << 30)
                .await
                .expect("the store reopens after SIGKILL");
        assert!(!store.last_exit_ok(), "a killed store recovers abnormally");
        store.check_invariants();
        let mut found = 0;
        for queue_id in 0..3 {
            let bodies = read_queue(&store, "KillTopic", queue_id);
            // Every acknowledged append is there, in order (the child may have appended a
            // few more after its last report).
            let expected: Vec<Bytes> = (0..KILL_AFTER)
                .filter(|i| i % 3 == queue_id as usize)
                .map(body)
                .collect();
            assert!(
                bodies.len() >= expected.len() && bodies[..expected.len()] == expected[..],
                "queue {queue_id}: {} found, {} acknowledged",
                bodies.len(),
                expected.len()
            );
            found += bodies.len();
        }
        assert!(found >= KILL_AFTER);
        let after = store
            .put_message(message("KillTopic", 0, Bytes::from_static(b"after"), "k"))
            .await;
        assert_eq!(after.status, PutMessageStatus::PutOk);
        store.shutdown().await.expect("clean shutdown");
    });
}
