//! The store checkpoint (`StoreCheckpoint`): how far the commit log, the consume queues and
//! the index are known durable, by store timestamp.
//!
//! A 4096-byte file whose first 24 bytes are three big-endian i64 timestamps (physic, logics,
//! index), written in place and synced — the RocketMQ 4.x layout. Abnormal recovery starts
//! from the last commit-log segment whose first record is older than
//! [`min_timestamp`](StoreCheckpoint::min_timestamp).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::disk::{Segment, SharedDisk, join};

/// Size of the checkpoint file (one page).
pub const CHECKPOINT_FILE_SIZE: u64 = 4096;

/// The three checkpoint timestamps. See the module docs.
#[derive(Debug)]
pub struct StoreCheckpoint {
    segment: Arc<dyn Segment>,
    physic_msg_timestamp: AtomicI64,
    logics_msg_timestamp: AtomicI64,
    index_msg_timestamp: AtomicI64,
}

impl StoreCheckpoint {
    /// Opens (or creates, all zero) `<store_root>/checkpoint`.
    pub fn open(disk: &SharedDisk, store_root: &str) -> io::Result<Self> {
        let segment = disk.open_segment(&join(store_root, "checkpoint"), CHECKPOINT_FILE_SIZE)?;
        let mut raw = [0u8; 24];
        segment.read_at(0, &mut raw)?;
        let field =
            |i: usize| i64::from_be_bytes(raw[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Ok(Self {
            physic_msg_timestamp: AtomicI64::new(field(0)),
            logics_msg_timestamp: AtomicI64::new(field(1)),
            index_msg_timestamp: AtomicI64::new(field(2)),
            segment,
        })
    }

    /// Store time of the last commit-log data flushed.
    pub fn physic_msg_timestamp(&self) -> i64 {
        self.physic_msg_timestamp.load(Ordering::Acquire)
    }

    /// Store time of the last message dispatched to a flushed consume queue.
    pub fn logics_msg_timestamp(&self) -> i64 {
        self.logics_msg_timestamp.load(Ordering::Acquire)
    }

    /// End time of the last fully written and flushed index file.
    pub fn index_msg_timestamp(&self) -> i64 {
        self.index_msg_timestamp.load(Ordering::Acquire)
    }

    /// Records the commit log's flushed store time.
    pub fn set_physic_msg_timestamp(&self, timestamp: i64) {
        self.physic_msg_timestamp
            .store(timestamp, Ordering::Release);
    }

    /// Records the consume queues' flushed store time.
    pub fn set_logics_msg_timestamp(&self, timestamp: i64) {
        self.logics_msg_timestamp
            .store(timestamp, Ordering::Release);
    }

    /// Records the index's flushed store time.
    pub fn set_index_msg_timestamp(&self, timestamp: i64) {
        self.index_msg_timestamp.store(timestamp, Ordering::Release);
    }

    /// `max(0, min(physic, logics) - 3 s)`: everything stored before it is known durable in
    /// both the commit log and the consume queues.
    pub fn min_timestamp(&self) -> i64 {
        let min = self.physic_msg_timestamp().min(self.logics_msg_timestamp());
        (min - 3000).max(0)
    }

    /// `min(min_timestamp, index)`, for recoveries that must rebuild the index too.
    pub fn min_timestamp_index(&self) -> i64 {
        self.min_timestamp().min(self.index_msg_timestamp())
    }

    /// Writes the timestamps and syncs them.
    pub async fn flush(&self) -> io::Result<()> {
        let mut raw = [0u8; 24];
        raw[0..8].copy_from_slice(&self.physic_msg_timestamp().to_be_bytes());
        raw[8..16].copy_from_slice(&self.logics_msg_timestamp().to_be_bytes());
        raw[16..24].copy_from_slice(&self.index_msg_timestamp().to_be_bytes());
        self.segment.write_at(0, &raw)?;
        self.segment.sync(0..24).await
    }
}
