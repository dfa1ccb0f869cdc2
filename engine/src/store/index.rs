//! The message index (`IndexFile`, `IndexService`): query by message key and by unique key.
//!
//! It sits after the commit log in the dispatch pipeline: the reput service reads each new
//! commit-log record and hands its topic, keys, unique key, offset and store time to
//! [`IndexService::build_index`], which adds one entry per key to the newest file in
//! `<store_root>/index/`. A query by key ([`IndexService::query_offsets`]) walks the files
//! newest first and returns commit-log offsets; the caller reads those records and compares
//! the real keys, because different keys may share a hash.
//!
//! Each file is a persistent hash table laid out byte for byte as RocketMQ 4.x's
//! (all integers big-endian):
//!
//! ```text
//! header   40 bytes   beginTimestamp i64, endTimestamp i64, beginPhyOffset i64,
//!                     endPhyOffset i64, hashSlotCount i32, indexCount i32
//! slots    hash_slot_num x 4 bytes   index of the newest entry of the slot, 0 = empty
//! entries  index_num x 20 bytes      keyHash i32, phyOffset i64, timeDiff i32 (seconds
//!                                    since beginTimestamp), prevIndex i32 (0 = chain end)
//! ```
//!
//! A key `topic#key` hashes with Java's `String.hashCode` over UTF-16 code units, made
//! non-negative as `IndexFile.indexKeyHashMethod` does; its slot is `hash % hash_slot_num`.
//! Files are named by their creation time in UTC as `yyyyMMddHHmmssSSS`.
//!
//! Invariants:
//! - `indexCount` starts at 1 (entry 0 is never used) and `hashSlotCount == indexCount - 1`
//!   (both grow by one per entry, as upstream counts them); `indexCount <= index_num`.
//! - An entry is written before the slot that points at it and before the header that
//!   counts it, so a reader that checks indices against a header read *after* the slot sees
//!   only complete entries.
//! - A chain only points backwards: the `prevIndex` of entry `i` is below `i`.
//! - The service's files are in name order, which is creation order (a new file's name is
//!   forced above the previous one even if the wall clock steps back); only the newest file
//!   takes new entries, and a file is replaced only once it is full.
//! - The checkpoint's `indexMsgTimestamp` may only advance to the end time of a full file
//!   whose flush has returned `Ok` ([`BuildIndexOutcome::index_msg_timestamp`]); after an
//!   abnormal exit, [`IndexService::load`] deletes every file that ends later, since it
//!   may hold entries that never reached the disk.
//!
//! Nothing read from a file can make this module panic: every index read from disk is
//! checked against the file's bounds, and chain walks are bounded by the entry count.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::clock::SharedClock;
use crate::disk::{Segment, SharedDisk, join};
use crate::store::config::MessageStoreConfig;
use crate::store::mapped_file_queue::{PREFAULT_CHUNK, prefault_ahead};
use crate::store::message::{java_string_hash, java_string_hash_from};

/// Size of the file header.
pub const INDEX_HEADER_SIZE: usize = 40;

/// Size of one hash slot.
pub const HASH_SLOT_SIZE: u64 = 4;

/// Size of one index entry.
pub const INDEX_ENTRY_SIZE: u64 = 20;

/// The directory of index files under the store root.
pub const INDEX_DIR: &str = "index";

/// Upstream's default `maxMsgsNumBatch`: the most offsets one query returns.
pub const MAX_MSGS_NUM_BATCH_DEFAULT: u32 = 64;

/// `MessageSysFlag.TRANSACTION_ROLLBACK_TYPE`: `sysFlag & 0xC` of a rolled-back half
/// message's op record. The only transaction type the index skips.
pub const TRANSACTION_ROLLBACK_TYPE: i32 = 0x3 << 2;

/// Slot and entry value meaning "none".
const INVALID_INDEX: i32 = 0;

/// Length of an index file name, `yyyyMMddHHmmssSSS`.
const FILE_NAME_LEN: usize = 17;

/// How many later milliseconds are tried when a new file's name is taken.
const FILE_NAME_PROBE_MAX: i64 = 1000;

const MS_PER_DAY: i64 = 86_400_000;

/// Why an index operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The slot or entry count cannot make a file: fix `maxHashSlotNum` / `maxIndexNum`
    /// (at least 1 slot, 2 to `i32::MAX` entries, since entry 0 is never used).
    #[error(
        "invalid index geometry: {hash_slot_num} hash slots and {index_num} entries \
         (need 1..=i32::MAX slots and 2..=i32::MAX entries)"
    )]
    InvalidGeometry {
        /// The configured slot count.
        hash_slot_num: u32,
        /// The configured entry count.
        index_num: u32,
    },
    /// A file to be created is already on disk. Creating under a fresh name fixes it.
    #[error("index file {path} already exists")]
    AlreadyExists {
        /// The file's path.
        path: String,
    },
    /// A file to be opened is not on disk.
    #[error("index file {path} does not exist")]
    NotFound {
        /// The file's path.
        path: String,
    },
    /// A read, write, creation, listing or removal failed (including an existing file of
    /// the wrong size, `InvalidData`). The operation had no effect past the failed step;
    /// the caller may report the error or stop indexing.
    #[error("index file {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: String,
        /// The disk's error.
        #[source]
        source: io::Error,
    },
    /// A sync failed: the durable contents of the file are unknown. The caller must fence
    /// the store (and must not advance the checkpoint), never retry and carry on.
    #[error("flush of index file {path} failed: {source}")]
    Flush {
        /// The file's path.
        path: String,
        /// The disk's error.
        #[source]
        source: io::Error,
    },
}

fn io_error(path: &str) -> impl FnOnce(io::Error) -> IndexError + '_ {
    move |source| IndexError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `IndexFile.indexKeyHashMethod`: the string hash made non-negative; `Math.abs` of
/// `Integer.MIN_VALUE` stays negative in Java, so that one hash becomes 0.
pub fn index_key_hash(key: &str) -> i32 {
    non_negative(java_string_hash(key))
}

/// [`index_key_hash`] of [`build_key`]`(topic, key)`, without building it.
pub fn topic_key_hash(topic: &str, key: &str) -> i32 {
    let topic_and_separator = java_string_hash_from(java_string_hash(topic), "#");
    non_negative(java_string_hash_from(topic_and_separator, key))
}

fn non_negative(hash: i32) -> i32 {
    hash.checked_abs().unwrap_or(0)
}

/// The key stored for `key` of a message in `topic`: `topic#key`.
pub fn build_key(topic: &str, key: &str) -> String {
    [topic, "#", key].concat()
}

/// The name of an index file created at `wall_ms` (ms since the Unix epoch): UTC
/// `yyyyMMddHHmmssSSS`, e.g. `20231114221320000` for 1,700,000,000,000.
pub fn index_file_name(wall_ms: i64) -> String {
    let days = wall_ms.div_euclid(MS_PER_DAY);
    let ms_of_day = wall_ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let hour = ms_of_day / 3_600_000;
    let minute = ms_of_day / 60_000 % 60;
    let second = ms_of_day / 1000 % 60;
    let milli = ms_of_day % 1000;
    format!("{year:04}{month:02}{day:02}{hour:02}{minute:02}{second:02}{milli:03}")
}

/// The creation time (ms since the epoch, UTC) named by an index file name, or `None` if
/// `name` is not 17 digits forming a valid date and time.
pub fn parse_index_file_name(name: &str) -> Option<i64> {
    if name.len() != FILE_NAME_LEN || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let field = |range: std::ops::Range<usize>| name[range].parse::<i64>().ok();
    let (year, month, day) = (field(0..4)?, field(4..6)?, field(6..8)?);
    let (hour, minute, second, milli) = (
        field(8..10)?,
        field(10..12)?,
        field(12..14)?,
        field(14..17)?,
    );
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * MS_PER_DAY + hour * 3_600_000 + minute * 60_000 + second * 1000 + milli)
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The 40-byte header of an index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexHeader {
    /// Store time of the first entry (or, before it, the previous file's end time).
    pub begin_timestamp: i64,
    /// Store time of the last entry.
    pub end_timestamp: i64,
    /// Commit-log offset of the first entry (or the previous file's end offset).
    pub begin_phy_offset: i64,
    /// Commit-log offset of the last entry.
    pub end_phy_offset: i64,
    /// Entries added, counted as upstream does: one per entry, not per occupied slot.
    pub hash_slot_count: i32,
    /// Index of the next entry; starts at 1 because entry 0 is never used.
    pub index_count: i32,
}

impl Default for IndexHeader {
    fn default() -> Self {
        Self {
            begin_timestamp: 0,
            end_timestamp: 0,
            begin_phy_offset: 0,
            end_phy_offset: 0,
            hash_slot_count: 0,
            index_count: 1,
        }
    }
}

impl IndexHeader {
    /// The header's bytes, big-endian in field order.
    pub fn encode(&self) -> [u8; INDEX_HEADER_SIZE] {
        let mut raw = [0u8; INDEX_HEADER_SIZE];
        raw[0..8].copy_from_slice(&self.begin_timestamp.to_be_bytes());
        raw[8..16].copy_from_slice(&self.end_timestamp.to_be_bytes());
        raw[16..24].copy_from_slice(&self.begin_phy_offset.to_be_bytes());
        raw[24..32].copy_from_slice(&self.end_phy_offset.to_be_bytes());
        raw[32..36].copy_from_slice(&self.hash_slot_count.to_be_bytes());
        raw[36..40].copy_from_slice(&self.index_count.to_be_bytes());
        raw
    }

    /// Reads a header as `IndexHeader.load` does: an `indexCount` of 0 or below (a new
    /// file never flushed) reads as 1.
    pub fn decode(raw: &[u8; INDEX_HEADER_SIZE]) -> Self {
        let long = |at: usize| {
            i64::from_be_bytes(raw[at..at + 8].try_into().expect("an 8-byte range of 40"))
        };
        let int = |at: usize| {
            i32::from_be_bytes(raw[at..at + 4].try_into().expect("a 4-byte range of 40"))
        };
        Self {
            begin_timestamp: long(0),
            end_timestamp: long(8),
            begin_phy_offset: long(16),
            end_phy_offset: long(24),
            hash_slot_count: int(32),
            index_count: int(36).max(1),
        }
    }
}

/// Checks a slot and entry count and returns the file size they give.
fn file_size(hash_slot_num: u32, index_num: u32) -> Result<u64, IndexError> {
    let max = i32::MAX as u32;
    if hash_slot_num == 0 || hash_slot_num > max || index_num < 2 || index_num > max {
        return Err(IndexError::InvalidGeometry {
            hash_slot_num,
            index_num,
        });
    }
    Ok(INDEX_HEADER_SIZE as u64
        + u64::from(hash_slot_num) * HASH_SLOT_SIZE
        + u64::from(index_num) * INDEX_ENTRY_SIZE)
}

/// One index file: a hash table of key → chain of commit-log offsets. See the module docs.
///
/// One writer ([`put_key`](Self::put_key)) and any number of readers may use it at once.
#[derive(Debug)]
pub struct IndexFile {
    path: String,
    segment: Arc<dyn Segment>,
    hash_slot_num: u32,
    index_num: u32,
    /// The header as last written; the on-disk copy is rewritten after every entry.
    header: Mutex<IndexHeader>,
}

/// One entry as stored.
#[derive(Debug, Clone, Copy)]
struct Entry {
    key_hash: i32,
    phy_offset: i64,
    time_diff: i32,
    prev_index: i32,
}

impl IndexFile {
    /// Creates a new file at `path` with `hash_slot_num` slots and room for `index_num - 1`
    /// entries. A file that follows a full one starts its begin and end offset and time at
    /// that file's end values (`end_phy_offset`, `end_timestamp`; 0 = none), as upstream does.
    pub fn create(
        disk: &SharedDisk,
        path: &str,
        hash_slot_num: u32,
        index_num: u32,
        end_phy_offset: i64,
        end_timestamp: i64,
    ) -> Result<Self, IndexError> {
        let size = file_size(hash_slot_num, index_num)?;
        if disk.exists(path).map_err(io_error(path))? {
            return Err(IndexError::AlreadyExists {
                path: path.to_owned(),
            });
        }
        let segment = disk.open_segment(path, size).map_err(io_error(path))?;
        segment.set_random_access(true);
        // With random access every first write of a page faults on the writer's thread: have
        // the header, the slots and the chunk after the first entry's prepared off it.
        // `put_key` keeps the entries, written in order, a chunk ahead from there.
        let entries_start = INDEX_HEADER_SIZE as u64 + u64::from(hash_slot_num) * HASH_SLOT_SIZE;
        segment.prefault(0..((entries_start / PREFAULT_CHUNK + 2) * PREFAULT_CHUNK).min(size));
        let mut header = IndexHeader::default();
        if end_phy_offset > 0 {
            header.begin_phy_offset = end_phy_offset;
            header.end_phy_offset = end_phy_offset;
        }
        if end_timestamp > 0 {
            header.begin_timestamp = end_timestamp;
            header.end_timestamp = end_timestamp;
        }
        if end_phy_offset > 0 || end_timestamp > 0 {
            // Upstream writes only the seeded fields here; `indexCount` stays 0 on disk
            // (read back as 1) until the first entry or flush.
            segment
                .write_at(0, &header.encode()[..32])
                .map_err(io_error(path))?;
        }
        Ok(Self {
            path: path.to_owned(),
            segment,
            hash_slot_num,
            index_num,
            header: Mutex::new(header),
        })
    }

    /// Opens an existing file and reads its header. Any contents open; a file of the wrong
    /// size is an `Io` error with `InvalidData`.
    pub fn open(
        disk: &SharedDisk,
        path: &str,
        hash_slot_num: u32,
        index_num: u32,
    ) -> Result<Self, IndexError> {
        let size = file_size(hash_slot_num, index_num)?;
        if !disk.exists(path).map_err(io_error(path))? {
            return Err(IndexError::NotFound {
                path: path.to_owned(),
            });
        }
        let segment = disk.open_segment(path, size).map_err(io_error(path))?;
        segment.set_random_access(true);
        let mut raw = [0u8; INDEX_HEADER_SIZE];
        segment.read_at(0, &mut raw).map_err(io_error(path))?;
        Ok(Self {
            path: path.to_owned(),
            segment,
            hash_slot_num,
            index_num,
            header: Mutex::new(IndexHeader::decode(&raw)),
        })
    }

    /// The file's path, relative to the disk root.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The file's name (its last path component).
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.segment.size()
    }

    /// The number of hash slots.
    pub fn hash_slot_num(&self) -> u32 {
        self.hash_slot_num
    }

    /// The number of entry positions (entry 0 unused).
    pub fn index_num(&self) -> u32 {
        self.index_num
    }

    /// A copy of the header.
    pub fn header(&self) -> IndexHeader {
        *self.lock_header()
    }

    /// Store time of the first entry.
    pub fn begin_timestamp(&self) -> i64 {
        self.lock_header().begin_timestamp
    }

    /// Store time of the last entry.
    pub fn end_timestamp(&self) -> i64 {
        self.lock_header().end_timestamp
    }

    /// Commit-log offset of the last entry.
    pub fn end_phy_offset(&self) -> i64 {
        self.lock_header().end_phy_offset
    }

    /// Whether no more entries fit (`isWriteFull`).
    pub fn is_full(&self) -> bool {
        i64::from(self.lock_header().index_count) >= i64::from(self.index_num)
    }

    /// Whether the file's time range overlaps `[begin, end]`, exactly as upstream's
    /// `isTimeMatched`.
    pub fn is_time_matched(&self, begin: i64, end: i64) -> bool {
        let header = self.header();
        let (first, last) = (header.begin_timestamp, header.end_timestamp);
        (begin < first && end > last)
            || (begin >= first && begin <= last)
            || (end >= first && end <= last)
    }

    /// Adds `key` (already `topic#key`) for the record at `phy_offset` stored at
    /// `store_timestamp`. Returns `Ok(false)`, writing nothing, when the file is full.
    pub fn put_key(
        &self,
        key: &str,
        phy_offset: i64,
        store_timestamp: i64,
    ) -> Result<bool, IndexError> {
        self.put_key_hash(index_key_hash(key), phy_offset, store_timestamp)
    }

    /// [`put_key`](Self::put_key) of a key by its [`index_key_hash`], the one thing of it a
    /// file stores.
    pub fn put_key_hash(
        &self,
        key_hash: i32,
        phy_offset: i64,
        store_timestamp: i64,
    ) -> Result<bool, IndexError> {
        let mut header = self.lock_header();
        if i64::from(header.index_count) >= i64::from(self.index_num) {
            tracing::warn!(
                path = %self.path,
                index_count = header.index_count,
                index_num = self.index_num,
                "over index file capacity"
            );
            return Ok(false);
        }
        let slot_position = self.slot_position(key_hash);
        let mut slot_value = self.read_i32(slot_position)?;
        if slot_value <= INVALID_INDEX || slot_value > header.index_count {
            slot_value = INVALID_INDEX;
        }
        // Seconds since the file's begin time, clamped to an int; Java's long arithmetic
        // wraps and its division truncates toward zero, as Rust's does.
        let time_diff = if header.begin_timestamp <= 0 {
            0
        } else {
            (store_timestamp.wrapping_sub(header.begin_timestamp) / 1000).clamp(0, i32::MAX.into())
        };
        let index = header.index_count;
        let mut entry = [0u8; INDEX_ENTRY_SIZE as usize];
        entry[0..4].copy_from_slice(&key_hash.to_be_bytes());
        entry[4..12].copy_from_slice(&phy_offset.to_be_bytes());
        entry[12..16].copy_from_slice(
            &i32::try_from(time_diff)
                .expect("time_diff is clamped to 0..=i32::MAX")
                .to_be_bytes(),
        );
        entry[16..20].copy_from_slice(&slot_value.to_be_bytes());
        // Entry, then slot, then header: a reader never reaches an incomplete entry.
        let entry_position = self.entry_position(index);
        self.segment
            .write_at(entry_position, &entry)
            .map_err(io_error(&self.path))?;
        prefault_ahead(
            &*self.segment,
            entry_position,
            entry_position + INDEX_ENTRY_SIZE,
        );
        self.segment
            .write_at(slot_position, &index.to_be_bytes())
            .map_err(io_error(&self.path))?;
        let mut next = *header;
        if next.index_count <= 1 {
            next.begin_phy_offset = phy_offset;
            next.begin_timestamp = store_timestamp;
        }
        next.hash_slot_count = next.hash_slot_count.wrapping_add(1);
        next.index_count += 1;
        next.end_phy_offset = phy_offset;
        next.end_timestamp = store_timestamp;
        self.segment
            .write_at(0, &next.encode())
            .map_err(io_error(&self.path))?;
        *header = next;
        Ok(true)
    }

    /// The commit-log offsets of entries whose key hash equals `key`'s and whose time
    /// (begin time + whole seconds) is in `[begin, end]`, newest first, at most `max_num`.
    pub fn select_phy_offsets(
        &self,
        key: &str,
        max_num: usize,
        begin: i64,
        end: i64,
    ) -> Result<Vec<i64>, IndexError> {
        let mut phy_offsets = Vec::new();
        self.select_phy_offsets_into(&mut phy_offsets, key, max_num, begin, end)?;
        Ok(phy_offsets)
    }

    /// Like [`select_phy_offsets`](Self::select_phy_offsets), appending to `phy_offsets`
    /// until it holds `max_num` offsets in all (upstream's `selectPhyOffset`): the walk of
    /// the key's chain stops at its end, at the cap, or at the first entry older than
    /// `begin`.
    pub fn select_phy_offsets_into(
        &self,
        phy_offsets: &mut Vec<i64>,
        key: &str,
        max_num: usize,
        begin: i64,
        end: i64,
    ) -> Result<(), IndexError> {
        let key_hash = index_key_hash(key);
        let slot_value = self.read_i32(self.slot_position(key_hash))?;
        // The header is read after the slot, so every entry it counts is complete.
        let header = self.header();
        if slot_value <= INVALID_INDEX || slot_value > header.index_count || header.index_count <= 1
        {
            return Ok(());
        }
        // No chain in a file we wrote is longer than its entry count; a damaged file may
        // hold a cycle, which must not spin forever.
        let steps_max = header.index_count.min(self.index_num as i32);
        let mut next = slot_value;
        for _ in 0..steps_max {
            if phy_offsets.len() >= max_num {
                break;
            }
            if i64::from(next) >= i64::from(self.index_num) {
                // Past the file's end: only a damaged header gets here.
                break;
            }
            let entry = self.read_entry(next)?;
            if entry.time_diff < 0 {
                break;
            }
            let time_read = header
                .begin_timestamp
                .wrapping_add(i64::from(entry.time_diff) * 1000);
            if entry.key_hash == key_hash && time_read >= begin && time_read <= end {
                phy_offsets.push(entry.phy_offset);
            }
            let prev = entry.prev_index;
            if prev <= INVALID_INDEX
                || prev > header.index_count
                || prev == next
                || time_read < begin
            {
                break;
            }
            next = prev;
        }
        Ok(())
    }

    /// Writes the header and syncs the whole file.
    pub async fn flush(&self) -> Result<(), IndexError> {
        let header = self.header();
        self.segment
            .write_at(0, &header.encode())
            .map_err(io_error(&self.path))?;
        self.segment
            .sync(0..self.segment.size())
            .await
            .map_err(|source| IndexError::Flush {
                path: self.path.clone(),
                source,
            })
    }

    /// Panics if an invariant of the module docs is broken. Holds for files this module
    /// (or RocketMQ) wrote; a hand-damaged file may fail it. The walk over every slot and
    /// entry runs only in tests and with the `verify` feature.
    pub fn check_invariants(&self) {
        let header = self.header();
        assert!(header.index_count >= 1, "{}: indexCount below 1", self.path);
        assert!(
            i64::from(header.index_count) <= i64::from(self.index_num),
            "{}: indexCount {} over capacity {}",
            self.path,
            header.index_count,
            self.index_num
        );
        assert_eq!(
            i64::from(header.hash_slot_count),
            i64::from(header.index_count) - 1,
            "{}: hashSlotCount does not count the entries",
            self.path
        );
        if cfg!(any(test, feature = "verify")) {
            for slot in 0..self.hash_slot_num {
                let position = INDEX_HEADER_SIZE as u64 + u64::from(slot) * HASH_SLOT_SIZE;
                let value = self.read_i32(position).expect("index file readable");
                assert!(
                    (0..header.index_count).contains(&value),
                    "{}: slot {slot} points at {value}, outside the entries",
                    self.path
                );
            }
            for index in 1..header.index_count {
                let entry = self.read_entry(index).expect("index file readable");
                assert!(
                    (0..index).contains(&entry.prev_index),
                    "{}: entry {index} chains forward to {}",
                    self.path,
                    entry.prev_index
                );
                assert!(
                    entry.key_hash >= 0,
                    "{}: entry {index} hash negative",
                    self.path
                );
                assert!(
                    entry.time_diff >= 0,
                    "{}: entry {index} time negative",
                    self.path
                );
            }
        }
    }

    fn slot_position(&self, key_hash: i32) -> u64 {
        let key_hash = u32::try_from(key_hash).expect("index_key_hash is non-negative");
        INDEX_HEADER_SIZE as u64 + u64::from(key_hash % self.hash_slot_num) * HASH_SLOT_SIZE
    }

    fn entry_position(&self, index: i32) -> u64 {
        let index = u64::try_from(index).expect("entry indices are checked non-negative");
        INDEX_HEADER_SIZE as u64
            + u64::from(self.hash_slot_num) * HASH_SLOT_SIZE
            + index * INDEX_ENTRY_SIZE
    }

    fn read_i32(&self, position: u64) -> Result<i32, IndexError> {
        let mut raw = [0u8; 4];
        self.segment
            .read_at(position, &mut raw)
            .map_err(io_error(&self.path))?;
        Ok(i32::from_be_bytes(raw))
    }

    fn read_entry(&self, index: i32) -> Result<Entry, IndexError> {
        let mut raw = [0u8; INDEX_ENTRY_SIZE as usize];
        self.segment
            .read_at(self.entry_position(index), &mut raw)
            .map_err(io_error(&self.path))?;
        let int = |at: usize| i32::from_be_bytes(raw[at..at + 4].try_into().expect("4 of 20"));
        Ok(Entry {
            key_hash: int(0),
            phy_offset: i64::from_be_bytes(raw[4..12].try_into().expect("8 of 20")),
            time_diff: int(12),
            prev_index: int(16),
        })
    }

    fn lock_header(&self) -> MutexGuard<'_, IndexHeader> {
        self.header
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The index settings, mirroring `MessageStoreConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexConfig {
    /// Hash slots per file (`maxHashSlotNum`).
    pub max_hash_slot_num: u32,
    /// Entry positions per file, entry 0 unused (`maxIndexNum`).
    pub max_index_num: u32,
    /// The most offsets one query returns (`maxMsgsNumBatch`).
    pub max_msgs_num_batch: u32,
}

impl IndexConfig {
    /// The settings of a store configuration.
    pub fn from_store_config(config: &MessageStoreConfig) -> Self {
        Self {
            max_hash_slot_num: config.max_hash_slot_num,
            max_index_num: config.max_index_num,
            max_msgs_num_batch: MAX_MSGS_NUM_BATCH_DEFAULT,
        }
    }
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            max_hash_slot_num: 5_000_000,
            max_index_num: 20_000_000,
            max_msgs_num_batch: MAX_MSGS_NUM_BATCH_DEFAULT,
        }
    }
}

/// What the index needs of one dispatched commit-log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRequest {
    /// The record's topic.
    pub topic: String,
    /// The record's commit-log offset.
    pub commit_log_offset: i64,
    /// The record's store time, ms.
    pub store_timestamp: i64,
    /// The `KEYS` property: keys separated by single spaces; empty for none.
    pub keys: String,
    /// The `UNIQ_KEY` property, if present.
    pub uniq_key: Option<String>,
    /// The transaction type, `sysFlag & 0xC`.
    pub transaction_type: i32,
}

/// What [`IndexService::build_index`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildIndexOutcome {
    /// Entries added.
    pub keys_indexed: usize,
    /// Set when a full file was flushed: its end time, which the caller writes into the
    /// checkpoint as `indexMsgTimestamp` (then flushes the checkpoint).
    pub index_msg_timestamp: Option<i64>,
}

/// The answer of [`IndexService::query_offsets`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryOffsetResult {
    /// Commit-log offsets of candidate records, newest file first.
    pub phy_offsets: Vec<i64>,
    /// End time of the newest file.
    pub index_last_update_timestamp: i64,
    /// End offset of the newest file.
    pub index_last_update_phyoffset: i64,
}

/// What [`IndexService::load`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexLoadReport {
    /// Files kept.
    pub loaded: usize,
    /// Files deleted after an abnormal exit.
    pub pruned: usize,
    /// Entries skipped because their names are not index file names.
    pub skipped: usize,
}

/// The index files of a store (`IndexService`). See the module docs.
#[derive(Debug)]
pub struct IndexService {
    disk: SharedDisk,
    clock: SharedClock,
    dir: String,
    config: IndexConfig,
    /// Oldest first; each with its creation time parsed from its name.
    files: RwLock<Vec<(i64, Arc<IndexFile>)>>,
}

impl IndexService {
    /// A service over `<store_root>/index`. Nothing is read until [`load`](Self::load).
    pub fn new(
        disk: SharedDisk,
        clock: SharedClock,
        store_root: &str,
        config: IndexConfig,
    ) -> Result<Self, IndexError> {
        file_size(config.max_hash_slot_num, config.max_index_num)?;
        Ok(Self {
            disk,
            clock,
            dir: join(store_root, INDEX_DIR),
            config,
            files: RwLock::new(Vec::new()),
        })
    }

    /// The index directory.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The settings.
    pub fn config(&self) -> IndexConfig {
        self.config
    }

    /// Every file, oldest first.
    pub fn index_files(&self) -> Vec<Arc<IndexFile>> {
        self.read_files().iter().map(|(_, f)| f.clone()).collect()
    }

    /// Opens the files of the index directory in name order. After an abnormal exit
    /// (`!last_exit_ok`), deletes every file that ends after the checkpoint's
    /// `indexMsgTimestamp`: it may hold entries that never reached the disk, and recovery
    /// re-dispatches what it covered. Names that are not index file names are skipped.
    pub async fn load(
        &self,
        last_exit_ok: bool,
        checkpoint_index_msg_timestamp: i64,
    ) -> Result<IndexLoadReport, IndexError> {
        let mut report = IndexLoadReport::default();
        let mut files = Vec::new();
        let entries = self.disk.list_dir(&self.dir).map_err(io_error(&self.dir))?;
        for entry in entries {
            if entry.is_dir {
                continue;
            }
            let Some(created_ms) = parse_index_file_name(&entry.name) else {
                tracing::warn!(dir = %self.dir, name = %entry.name, "not an index file; skipped");
                report.skipped += 1;
                continue;
            };
            let path = join(&self.dir, &entry.name);
            let file = IndexFile::open(
                &self.disk,
                &path,
                self.config.max_hash_slot_num,
                self.config.max_index_num,
            )?;
            if !last_exit_ok && file.end_timestamp() > checkpoint_index_msg_timestamp {
                tracing::info!(
                    path = %path,
                    end_timestamp = file.end_timestamp(),
                    checkpoint_index_msg_timestamp,
                    "index file newer than the checkpoint after an abnormal exit; deleted"
                );
                drop(file);
                self.disk.remove_file(&path).map_err(io_error(&path))?;
                report.pruned += 1;
                continue;
            }
            files.push((created_ms, Arc::new(file)));
        }
        if report.pruned > 0 {
            self.disk
                .sync_dir(&self.dir)
                .await
                .map_err(io_error(&self.dir))?;
        }
        report.loaded = files.len();
        *self.write_files() = files;
        Ok(report)
    }

    /// Indexes one dispatched record (upstream `buildIndex`): its unique key, then each
    /// non-empty key of `KEYS`, as `topic#key`. Records below the newest file's end offset
    /// are already indexed and rolled-back records are not indexed (prepared and committed
    /// ones are). A full file is replaced by a new one and then flushed; the outcome then
    /// carries its end time for the checkpoint.
    pub async fn build_index(
        &self,
        request: &IndexRequest,
    ) -> Result<BuildIndexOutcome, IndexError> {
        let mut outcome = BuildIndexOutcome::default();
        let mut full_files = Vec::new();
        let result = self.put_keys(request, &mut outcome, &mut full_files);
        // Flush what filled up even when a later step failed, so the checkpoint can move.
        for file in full_files {
            file.flush().await?;
            let end = file.end_timestamp();
            outcome.index_msg_timestamp =
                Some(outcome.index_msg_timestamp.map_or(end, |t| t.max(end)));
        }
        result.map(|()| outcome)
    }

    fn put_keys(
        &self,
        request: &IndexRequest,
        outcome: &mut BuildIndexOutcome,
        full_files: &mut Vec<Arc<IndexFile>>,
    ) -> Result<(), IndexError> {
        let mut file = self.last_file_or_create(full_files)?;
        if request.commit_log_offset < file.end_phy_offset() {
            return Ok(());
        }
        if request.transaction_type == TRANSACTION_ROLLBACK_TYPE {
            return Ok(());
        }
        let keys = request
            .uniq_key
            .as_deref()
            .into_iter()
            .chain(request.keys.split(' ').filter(|key| !key.is_empty()));
        for key in keys {
            let key_hash = topic_key_hash(&request.topic, key);
            // A fresh file always takes an entry (at least 2 positions), so one roll is
            // enough.
            let mut put = false;
            for _ in 0..2 {
                if file.put_key_hash(
                    key_hash,
                    request.commit_log_offset,
                    request.store_timestamp,
                )? {
                    put = true;
                    break;
                }
                file = self.last_file_or_create(full_files)?;
            }
            assert!(put, "a new index file refused its first entry");
            outcome.keys_indexed += 1;
        }
        Ok(())
    }

    /// The newest file if it has room; otherwise a new one (named by the clock, above the
    /// previous name), seeded with the full one's end values, which goes to `full_files`.
    fn last_file_or_create(
        &self,
        full_files: &mut Vec<Arc<IndexFile>>,
    ) -> Result<Arc<IndexFile>, IndexError> {
        let mut files = self.write_files();
        let (mut created_ms, seed_offset, seed_timestamp) = match files.last() {
            Some((_, last)) if !last.is_full() => return Ok(last.clone()),
            Some((last_ms, last)) => {
                full_files.push(last.clone());
                let now = self.clock.wall_ms();
                (
                    now.max(last_ms.saturating_add(1)),
                    last.end_phy_offset(),
                    last.end_timestamp(),
                )
            }
            None => (self.clock.wall_ms(), 0, 0),
        };
        let mut probes = 0;
        let path = loop {
            let path = join(&self.dir, &index_file_name(created_ms));
            if !self.disk.exists(&path).map_err(io_error(&path))? {
                break path;
            }
            probes += 1;
            if probes >= FILE_NAME_PROBE_MAX {
                return Err(IndexError::AlreadyExists { path });
            }
            created_ms = created_ms.saturating_add(1);
        };
        let file = Arc::new(IndexFile::create(
            &self.disk,
            &path,
            self.config.max_hash_slot_num,
            self.config.max_index_num,
            seed_offset,
            seed_timestamp,
        )?);
        files.push((created_ms, file.clone()));
        Ok(file)
    }

    /// The commit-log offsets of records with `key` in `topic` stored in `[begin, end]`
    /// (candidates: the caller compares the real keys), newest file first, at most
    /// `min(max_num, maxMsgsNumBatch)`. Files whose time range misses the window are
    /// skipped, and the walk stops at the first file that begins before `begin`.
    pub fn query_offsets(
        &self,
        topic: &str,
        key: &str,
        max_num: usize,
        begin: i64,
        end: i64,
    ) -> Result<QueryOffsetResult, IndexError> {
        let max_num = max_num.min(self.config.max_msgs_num_batch as usize);
        let files = self.index_files();
        let mut result = QueryOffsetResult::default();
        if let Some(last) = files.last() {
            result.index_last_update_timestamp = last.end_timestamp();
            result.index_last_update_phyoffset = last.end_phy_offset();
        }
        let full_key = build_key(topic, key);
        for file in files.iter().rev() {
            if file.is_time_matched(begin, end) {
                file.select_phy_offsets_into(
                    &mut result.phy_offsets,
                    &full_key,
                    max_num,
                    begin,
                    end,
                )?;
            }
            if file.begin_timestamp() < begin || result.phy_offsets.len() >= max_num {
                break;
            }
        }
        Ok(result)
    }

    /// Deletes the oldest files whose end offset is below `commit_log_min_offset` (their
    /// records are gone from the commit log), always keeping the newest file. Returns how
    /// many were deleted.
    pub async fn delete_expired(&self, commit_log_min_offset: i64) -> Result<usize, IndexError> {
        let doomed: Vec<Arc<IndexFile>> = {
            let files = self.read_files();
            files
                .iter()
                .take(files.len().saturating_sub(1))
                .take_while(|(_, f)| f.end_phy_offset() < commit_log_min_offset)
                .map(|(_, f)| f.clone())
                .collect()
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        self.write_files()
            .retain(|(_, f)| !doomed.iter().any(|d| Arc::ptr_eq(d, f)));
        for file in &doomed {
            self.disk
                .remove_file(file.path())
                .map_err(io_error(file.path()))?;
        }
        self.disk
            .sync_dir(&self.dir)
            .await
            .map_err(io_error(&self.dir))?;
        Ok(doomed.len())
    }

    /// Writes every file's header and syncs it (orderly shutdown). The checkpoint is not
    /// advanced: only full files move it.
    pub async fn flush_all(&self) -> Result<(), IndexError> {
        for file in self.index_files() {
            file.flush().await?;
        }
        Ok(())
    }

    /// Panics if an invariant of the module docs is broken.
    pub fn check_invariants(&self) {
        let files = self.read_files();
        for (index, (created_ms, file)) in files.iter().enumerate() {
            assert_eq!(
                file.name(),
                index_file_name(*created_ms),
                "name and time disagree"
            );
            assert_eq!(file.hash_slot_num(), self.config.max_hash_slot_num);
            assert_eq!(file.index_num(), self.config.max_index_num);
            file.check_invariants();
            if let Some((next_ms, _)) = files.get(index + 1) {
                assert!(
                    created_ms < next_ms,
                    "index files {} and its successor are out of order",
                    file.path()
                );
            }
        }
    }

    fn read_files(&self) -> RwLockReadGuard<'_, Vec<(i64, Arc<IndexFile>)>> {
        self.files
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_files(&self) -> RwLockWriteGuard<'_, Vec<(i64, Arc<IndexFile>)>> {
        self.files
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests;
