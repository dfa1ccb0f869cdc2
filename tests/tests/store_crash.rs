//! Crash tests of the message store on SimDisk: random appends (single and batch) with
//! random syncs, then a process crash (`kill -9`: every written byte survives) or a power
//! loss (unsynced pages lost or torn at 512-byte sectors), restart and recovery — several
//! cycles per seed, hundreds of seeds per run, each reproducible from its seed.
//!
//! After every recovery:
//! - everything acknowledged (appended, then covered by a successful sync) is present;
//! - after a process crash, everything appended is present;
//! - nothing is present that was never appended, and every queue holds a prefix of what
//!   was appended to it, in order, at dense queue offsets;
//! - consume queues point only at valid records (the store's invariants);
//! - appending after recovery works and continues each queue's offsets.
#![cfg(not(madsim))]

use std::collections::BTreeMap;

use bytes::Bytes;
use ferrocket_engine::rng::Rng;
use ferrocket_engine::store::message_store::{MessageStore, PutMessageStatus};
use ferrocket_sim::{CrashKind, SimDisk};
use ferrocket_tests::store::{message, read_queue, sim_env as env, small_store_config as config};

const SEEDS: u64 = 200;
const CYCLES: usize = 3;
const TOPICS: [&str; 2] = ["TopicA", "TopicB"];
const QUEUES: i32 = 3;

/// What the test appended to one queue, in order, and how much of it is acknowledged.
#[derive(Debug, Default, Clone)]
struct QueueModel {
    bodies: Vec<Bytes>,
    acked: usize,
}

/// Checks the recovered store against the model and returns the model cut to what survived.
fn verify(
    store: &MessageStore,
    model: &mut BTreeMap<(String, i32), QueueModel>,
    kind: Option<CrashKind>,
    context: &str,
) {
    store.check_invariants();
    for ((topic, queue_id), queue) in model.iter_mut() {
        let found = read_queue(store, topic, *queue_id);
        if std::env::var_os("STORE_CRASH_TRACE").is_some() {
            let names = |bodies: &[Bytes]| -> Vec<String> {
                bodies
                    .iter()
                    .map(|b| String::from_utf8_lossy(&b[..b.len().min(8)]).into_owned())
                    .collect()
            };
            eprintln!(
                "{context} {topic}-{queue_id}: found {:?} appended {:?} acked {}",
                names(&found),
                names(&queue.bodies),
                queue.acked
            );
        }
        assert!(
            found.len() <= queue.bodies.len() && found[..] == queue.bodies[..found.len()],
            "{context}: {topic}-{queue_id} holds {} messages that are not a prefix of the {} appended",
            found.len(),
            queue.bodies.len()
        );
        assert!(
            found.len() >= queue.acked,
            "{context}: {topic}-{queue_id} lost acknowledged messages: {} found, {} acknowledged",
            found.len(),
            queue.acked
        );
        if kind == Some(CrashKind::Process) || kind.is_none() {
            assert_eq!(
                found.len(),
                queue.bodies.len(),
                "{context}: a process crash or clean restart keeps every appended message of {topic}-{queue_id}"
            );
        }
        queue.bodies.truncate(found.len());
        queue.acked = found.len();
        assert_eq!(
            store.max_offset_in_queue(topic, *queue_id),
            found.len() as i64
        );
    }
}

async fn run_seed(seed: u64) {
    let rng = Rng::from_seed(seed);
    let disk = SimDisk::new();
    let mut model: BTreeMap<(String, i32), QueueModel> = BTreeMap::new();
    let mut last_crash = None;
    let mut serial = 0u64;
    for cycle in 0..CYCLES {
        let context = format!("seed {seed} cycle {cycle}");
        let store = MessageStore::open(env(&disk, seed), config(), 1 << 30)
            .await
            .unwrap_or_else(|e| panic!("{context}: store opens: {e}"));
        verify(&store, &mut model, last_crash, &context);
        let operations = 5 + rng.below(40);
        for _ in 0..operations {
            let topic = TOPICS[rng.below(TOPICS.len() as u64) as usize];
            let queue_id = rng.below(QUEUES as u64) as i32;
            match rng.below(10) {
                0..=5 => {
                    serial += 1;
                    let size = 1 + rng.below(3000) as usize;
                    let body = Bytes::from(format!("{seed}-{serial}-{}", "x".repeat(size)));
                    let result = store
                        .put_message(message(
                            topic,
                            queue_id,
                            body.clone(),
                            &format!("k{serial}"),
                        ))
                        .await;
                    assert_eq!(
                        result.status,
                        PutMessageStatus::PutOk,
                        "{context}: {result:?}"
                    );
                    model
                        .entry((topic.into(), queue_id))
                        .or_default()
                        .bodies
                        .push(body);
                }
                6 => {
                    let count = 1 + rng.below(4);
                    let mut batch = Vec::new();
                    let mut bodies = Vec::new();
                    for _ in 0..count {
                        serial += 1;
                        let body = Bytes::from(format!("{seed}-{serial}-batch"));
                        bodies.push(body.clone());
                        batch.push(message(topic, queue_id, body, &format!("k{serial}")));
                    }
                    let result = store.put_messages(batch).await;
                    assert_eq!(
                        result.status,
                        PutMessageStatus::PutOk,
                        "{context}: {result:?}"
                    );
                    model
                        .entry((topic.into(), queue_id))
                        .or_default()
                        .bodies
                        .extend(bodies);
                }
                7 | 8 => {
                    store.commit_log().flush(0).await.expect("sync succeeds");
                    for queue in model.values_mut() {
                        queue.acked = queue.bodies.len();
                    }
                }
                _ => {
                    store.dispatch_pending().await;
                }
            }
        }
        store.dispatch_pending().await;
        let kind = if rng.chance(0.5) {
            CrashKind::PowerLoss
        } else {
            CrashKind::Process
        };
        drop(store);
        disk.crash(kind, &rng);
        disk.check_invariants();
        last_crash = Some(kind);
    }
    let store = MessageStore::open(env(&disk, seed), config(), 1 << 30)
        .await
        .expect("store opens after the last crash");
    let context = format!("seed {seed} final");
    verify(&store, &mut model, last_crash, &context);
    // Appending after recovery continues each queue.
    let body = Bytes::from_static(b"after recovery");
    let result = store
        .put_message(message("TopicA", 0, body.clone(), "after"))
        .await;
    assert_eq!(result.status, PutMessageStatus::PutOk);
    store.dispatch_pending().await;
    let queue = model.entry(("TopicA".into(), 0)).or_default();
    queue.bodies.push(body);
    assert_eq!(
        read_queue(&store, "TopicA", 0),
        queue.bodies,
        "{context}: append after recovery"
    );
    // A clean shutdown and restart keep everything.
    store.shutdown().await.expect("clean shutdown");
    let store = MessageStore::open(env(&disk, seed), config(), 1 << 30)
        .await
        .expect("store reopens after a clean shutdown");
    assert!(store.last_exit_ok());
    verify(
        &store,
        &mut model,
        None,
        &format!("seed {seed} clean restart"),
    );
}

#[tokio::test]
async fn acknowledged_messages_survive_crashes_and_recovery_is_sound() {
    let seeds = match std::env::var("STORE_CRASH_SEED") {
        Ok(seed) => {
            let seed: u64 = seed.parse().expect("STORE_CRASH_SEED is a number");
            seed..seed + 1
        }
        Err(_) => 0..SEEDS,
    };
    for seed in seeds {
        run_seed(seed).await;
    }
}

/// A torn record in the middle of the unsynced tail ends the valid log there; the valid
/// records after it are stale and must never come back — not even when a later record of the
/// same size lands exactly before them and a second crash follows.
#[tokio::test]
async fn stale_records_beyond_a_torn_record_never_reappear() {
    let disk = SimDisk::new();
    let bodies: Vec<Bytes> = (0..4)
        .map(|i| Bytes::from(format!("record-{i}-{}", "y".repeat(200))))
        .collect();
    let store = MessageStore::open(env(&disk, 1), config(), 1 << 30)
        .await
        .unwrap();
    let mut offsets = Vec::new();
    for body in &bodies {
        let result = store
            .put_message(message("TopicA", 0, body.clone(), "k"))
            .await;
        offsets.push(result.append.unwrap());
    }
    store.dispatch_pending().await;
    drop(store);
    // Tear the third record: garbage over its magic code.
    let segment = disk
        .shared()
        .open_segment(
            "store/commitlog/00000000000000000000",
            config().mapped_file_size_commit_log,
        )
        .unwrap();
    segment
        .write_at(offsets[2].wrote_offset as u64 + 4, &[0xEE; 8])
        .unwrap();
    drop(segment);
    disk.crash(CrashKind::Process, &Rng::from_seed(1));

    let store = MessageStore::open(env(&disk, 1), config(), 1 << 30)
        .await
        .unwrap();
    assert_eq!(read_queue(&store, "TopicA", 0), bodies[..2].to_vec());
    // A record of the same size lands where the torn one was, right before the stale fourth.
    let replacement = Bytes::from(format!("record-X-{}", "y".repeat(200)));
    let result = store
        .put_message(message("TopicA", 0, replacement.clone(), "k"))
        .await;
    assert_eq!(result.append.unwrap().wrote_offset, offsets[2].wrote_offset);
    store.dispatch_pending().await;
    drop(store);
    disk.crash(CrashKind::Process, &Rng::from_seed(2));

    let store = MessageStore::open(env(&disk, 1), config(), 1 << 30)
        .await
        .unwrap();
    let found = read_queue(&store, "TopicA", 0);
    assert_eq!(
        found,
        vec![bodies[0].clone(), bodies[1].clone(), replacement],
        "the stale fourth record stayed buried"
    );
    store.check_invariants();
}

/// Creating a commit-log segment prepares the next one, so a crash can leave a segment that no
/// record reached: recovery cuts it with whatever it held and prepares it afresh, and the log
/// later rolls into it with nothing lost either side of the roll.
#[tokio::test]
async fn a_prepared_segment_left_by_a_crash_is_cut_and_the_log_rolls_on() {
    let disk = SimDisk::new();
    let segment_size = config().mapped_file_size_commit_log;
    let segments = || -> Vec<String> {
        disk.shared()
            .list_dir("store/commitlog")
            .unwrap()
            .into_iter()
            .map(|entry| entry.name)
            .collect()
    };
    let name = |index: u64| format!("{:020}", index * segment_size);
    let body = |i: usize| Bytes::from(format!("prepared-{i}-{}", "z".repeat(3000)));
    // The first bytes of segment 1, after writing `fill` over them.
    let head_of_second = |fill: Option<u8>| {
        let segment = disk
            .shared()
            .open_segment(&format!("store/commitlog/{}", name(1)), segment_size)
            .unwrap();
        if let Some(byte) = fill {
            segment.write_at(0, &[byte; 64]).unwrap();
        }
        segment.read(0, 64).unwrap()
    };

    let store = MessageStore::open(env(&disk, 7), config(), 1 << 30)
        .await
        .unwrap();
    let result = store.put_message(message("TopicA", 0, body(0), "k")).await;
    assert_eq!(result.status, PutMessageStatus::PutOk);
    assert_eq!(
        segments(),
        [name(0), name(1)],
        "the next segment is prepared"
    );
    store.dispatch_pending().await;
    drop(store);
    // Debris in the unreached segment, as an earlier failure might leave.
    head_of_second(Some(0xEE));
    disk.crash(CrashKind::Process, &Rng::from_seed(7));

    let store = MessageStore::open(env(&disk, 7), config(), 1 << 30)
        .await
        .unwrap();
    assert_eq!(
        segments(),
        [name(0), name(1)],
        "recovery prepared the next segment again"
    );
    assert!(
        head_of_second(None).iter().all(|&b| b == 0),
        "recovery cut the unreached segment with its debris"
    );
    let mut bodies = vec![body(0)];
    for i in 1..12 {
        let result = store.put_message(message("TopicA", 0, body(i), "k")).await;
        assert_eq!(result.status, PutMessageStatus::PutOk, "{result:?}");
        bodies.push(body(i));
    }
    assert_eq!(
        segments(),
        [name(0), name(1), name(2)],
        "the roll took segment 1 and prepared segment 2"
    );
    store.dispatch_pending().await;
    assert_eq!(read_queue(&store, "TopicA", 0), bodies);
    store.shutdown().await.expect("clean shutdown");

    let store = MessageStore::open(env(&disk, 7), config(), 1 << 30)
        .await
        .unwrap();
    assert!(store.last_exit_ok());
    assert_eq!(read_queue(&store, "TopicA", 0), bodies);
    assert_eq!(segments(), [name(0), name(1), name(2)]);
    store.check_invariants();
}
