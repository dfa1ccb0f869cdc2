//! Micro-benchmarks of the message store on memory-mapped files (`MmapDisk`): appending
//! 128-byte and 1-KiB messages, and reading them back a pull batch (32) at a time. Figures
//! are machine-dependent: compare runs on one machine, not across machines.
//!
//! `cargo bench -p ferrocket-tests --bench store`

#[cfg(not(madsim))]
mod benches {
    use std::sync::Arc;

    use bytes::Bytes;
    use criterion::{BatchSize, Criterion, Throughput};
    use ferrocket_disk::MmapDisk;
    use ferrocket_engine::Env;
    use ferrocket_engine::rng::Rng;
    use ferrocket_engine::store::config::MessageStoreConfig;
    use ferrocket_engine::store::message_store::{GetMessageStatus, MessageStore};
    use ferrocket_net::{SystemClock, TokioNet};
    use ferrocket_tests::store::message;

    /// Messages appended per measured iteration.
    const BATCH: usize = 1000;

    fn config() -> MessageStoreConfig {
        MessageStoreConfig {
            mapped_file_size_commit_log: 64 * 1024 * 1024,
            mapped_file_size_consume_queue: 300_000 * 20,
            ..MessageStoreConfig::default()
        }
    }

    async fn open(dir: &std::path::Path) -> Arc<MessageStore> {
        let env = Env {
            clock: SystemClock::shared(),
            net: TokioNet::shared(),
            disk: MmapDisk::shared(dir).expect("the bench directory opens"),
            rng: Rng::shared(1),
        };
        MessageStore::open(env, config(), 8 << 30)
            .await
            .expect("the bench store opens")
    }

    fn append(c: &mut Criterion, runtime: &tokio::runtime::Runtime) {
        let mut group = c.benchmark_group("append");
        for size in [128usize, 1024] {
            let body = Bytes::from(vec![b'x'; size]);
            group.throughput(Throughput::Elements(BATCH as u64));
            group.bench_function(format!("{size}B_x{BATCH}"), |b| {
                b.iter_batched(
                    || {
                        let dir = tempfile::tempdir().unwrap();
                        let store = runtime.block_on(open(dir.path()));
                        (dir, store)
                    },
                    |(dir, store)| {
                        runtime.block_on(async {
                            for i in 0..BATCH {
                                let result = store
                                    .put_message(message(
                                        "Bench",
                                        (i % 4) as i32,
                                        body.clone(),
                                        "k",
                                    ))
                                    .await;
                                assert!(result.status.is_stored());
                            }
                        });
                        (dir, store)
                    },
                    BatchSize::PerIteration,
                );
            });
        }
        group.finish();
    }

    fn read(c: &mut Criterion, runtime: &tokio::runtime::Runtime) {
        let dir = tempfile::tempdir().unwrap();
        let store = runtime.block_on(async {
            let store = open(dir.path()).await;
            for _ in 0..10_000 {
                store
                    .put_message(message("Bench", 0, Bytes::from(vec![b'y'; 1024]), "k"))
                    .await;
            }
            store.dispatch_pending().await;
            store
        });
        let mut group = c.benchmark_group("read");
        group.throughput(Throughput::Elements(32));
        let mut offset = 0i64;
        group.bench_function("1KiB_pull_batch_32", |b| {
            b.iter(|| {
                let result = store.get_message("Bench", 0, offset, 32, None);
                assert_eq!(result.status, GetMessageStatus::Found);
                offset = if result.next_begin_offset >= 10_000 - 32 {
                    0
                } else {
                    result.next_begin_offset
                };
                result
            });
        });
        group.finish();
    }

    /// Runs every benchmark.
    pub fn all() {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime for the benchmarks");
        let mut criterion = Criterion::default().configure_from_args();
        append(&mut criterion, &runtime);
        read(&mut criterion, &runtime);
        criterion.final_summary();
    }
}

fn main() {
    #[cfg(not(madsim))]
    benches::all();
}
