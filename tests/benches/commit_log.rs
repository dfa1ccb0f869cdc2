//! Micro-benchmarks of the commit log alone on memory-mapped files (`MmapDisk`): appending
//! 128-byte and 1-KiB messages into a segment already mapped (encode, CRC and copy under the
//! append lock; no flush), and reading one record back by offset (the pull path's lookup).
//! The whole store's put and get are in the `store` benchmark. Figures are
//! machine-dependent: compare runs on one machine, not across machines.
//!
//! `cargo bench -p ferrocket-tests --bench commit_log`

#[cfg(not(madsim))]
mod benches {
    use std::hint::black_box;

    use bytes::Bytes;
    use criterion::{BatchSize, Criterion, Throughput};
    use ferrocket_disk::MmapDisk;
    use ferrocket_engine::store::commit_log::CommitLog;
    use ferrocket_engine::store::message::MESSAGE_SIZE_MAX_DEFAULT;
    use ferrocket_net::SystemClock;
    use ferrocket_tests::store::message;

    /// Messages appended per measured iteration.
    const BATCH: usize = 1000;

    /// Segment size: large enough that no measured iteration rolls to a new segment.
    const SEGMENT_SIZE: u64 = 64 * 1024 * 1024;

    /// A commit log in a fresh temporary directory, its first segment created and mapped.
    fn open(size: usize) -> (tempfile::TempDir, CommitLog) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let disk = MmapDisk::shared(dir.path()).expect("the bench directory opens");
        disk.create_dir_all("store")
            .expect("the store directory can be created");
        let commit_log = CommitLog::new(
            disk,
            "store",
            SEGMENT_SIZE,
            MESSAGE_SIZE_MAX_DEFAULT,
            SystemClock::shared(),
        );
        commit_log.load().expect("an empty commit log loads");
        commit_log
            .append(&mut message("Bench", 0, Bytes::from(vec![b'x'; size]), "k"))
            .expect("the first append creates the segment");
        (dir, commit_log)
    }

    fn append(c: &mut Criterion) {
        let mut group = c.benchmark_group("commit_log_append");
        group.throughput(Throughput::Elements(BATCH as u64));
        for size in [128usize, 1024] {
            let body = Bytes::from(vec![b'x'; size]);
            group.bench_function(format!("{size}B_x{BATCH}"), |b| {
                b.iter_batched(
                    || {
                        let (dir, commit_log) = open(size);
                        let messages: Vec<_> = (0..BATCH)
                            .map(|i| message("Bench", (i % 8) as i32, body.clone(), "k"))
                            .collect();
                        (dir, commit_log, messages)
                    },
                    |(dir, commit_log, mut messages)| {
                        for message in &mut messages {
                            commit_log.append(message).expect("the append fits");
                        }
                        (dir, commit_log)
                    },
                    BatchSize::PerIteration,
                );
            });
        }
        group.finish();
    }

    fn read(c: &mut Criterion) {
        const RECORDS: usize = 10_000;
        let (_dir, commit_log) = open(1024);
        let records: Vec<(u64, usize)> = (0..RECORDS)
            .map(|i| {
                let result = commit_log
                    .append(&mut message(
                        "Bench",
                        (i % 8) as i32,
                        Bytes::from(vec![b'y'; 1024]),
                        "k",
                    ))
                    .expect("the append fits");
                (result.wrote_offset as u64, result.wrote_bytes as usize)
            })
            .collect();
        let mut group = c.benchmark_group("commit_log_read");
        group.throughput(Throughput::Elements(1));
        let mut next = 0;
        group.bench_function("1KiB_record_by_offset", |b| {
            b.iter(|| {
                let (offset, size) = records[next];
                next = (next + 1) % RECORDS;
                commit_log
                    .read(black_box(offset), size)
                    .expect("the record is stored")
                    .len()
            });
        });
        group.finish();
    }

    /// Runs every benchmark.
    pub fn all() {
        let mut criterion = Criterion::default().configure_from_args();
        append(&mut criterion);
        read(&mut criterion);
        criterion.final_summary();
    }
}

fn main() {
    #[cfg(not(madsim))]
    benches::all();
}
