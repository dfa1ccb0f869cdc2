//! Consume queue (`ConsumeQueue`): the per-(topic, queueId) index into the commit log that
//! consumers pull through.
//!
//! The reput service (spec S15/S16) reads each record appended to the commit log and puts a
//! 20-byte [`ConsumeQueueUnit`] — the record's commit-log offset, its size and its tags hash
//! — at the record's *queue offset* (a 0-based logical index) in the consume queue of its
//! topic and queue. Pulls (S20) read units by index and then the records they point to.
//! Unit *n* lives at logical byte offset `n * 20`, in fixed-size segments under
//! `<store_root>/consumequeue/<topic>/<queueId>/<20-digit start byte offset>` (spec §2.1,
//! §2.4), stored by a [`MappedFileQueue`]. The layout is RocketMQ 4.x's byte for byte.
//!
//! A queue whose first unit arrives at a non-zero index (a slave that joined late, a queue
//! whose old files are gone) starts with *filler* units `(0, i32::MAX, 0)` from the start of
//! that unit's segment up to it (Java's `fillPreBlank`); the minimum logical offset then
//! points past them.
//!
//! Invariants (checked by [`ConsumeQueue::check_invariants`]):
//! - the segment size is a positive multiple of 20 and every segment's written part is a
//!   whole number of units;
//! - over the written range, units are dense: every unit is valid (`offset >= 0 &&
//!   size > 0`), fillers only form a prefix, and real units are increasing and
//!   non-overlapping in commit-log offset;
//! - `first segment start <= min logical offset <= written end` (both 0 without segments);
//! - `max_physic_offset` is the end (`offset + size`) of the last real unit, when there is
//!   one.
//!
//! One writer (the reput service, or recovery) mutates a queue; readers may read
//! concurrently. Nothing read from disk is trusted enough to panic on: undecodable or
//! invalid bytes end a scan or read as "no unit".

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::disk::{SharedDisk, join};
use crate::store::mapped_file_queue::{MappedFile, MappedFileQueue};

/// Size in bytes of one consume-queue unit (`CQ_STORE_UNIT_SIZE`).
pub const CQ_STORE_UNIT_SIZE: u64 = 20;

const UNIT_LEN: usize = CQ_STORE_UNIT_SIZE as usize;

/// Bytes read at once when scanning a segment: a whole number of units, about 64 KiB.
const SCAN_CHUNK_LEN: usize = (64 * 1024 / UNIT_LEN) * UNIT_LEN;

const _: () = assert!(SCAN_CHUNK_LEN.is_multiple_of(UNIT_LEN) && SCAN_CHUNK_LEN > 0);

/// The name of the directory holding every consume queue under the store root.
pub const CONSUME_QUEUE_DIR_NAME: &str = "consumequeue";

/// One 20-byte consume-queue entry (spec §2.4): big-endian `commitLogOffset` (8 bytes),
/// `size` (4), `tagsCode` (8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConsumeQueueUnit {
    /// Physical offset of the message record in the commit log.
    pub commit_log_offset: i64,
    /// The record's TOTALSIZE in bytes.
    pub size: i32,
    /// Java `String.hashCode` of the TAGS property (0 without tags); the deliver timestamp
    /// for `SCHEDULE_TOPIC_XXXX`.
    pub tags_code: i64,
}

impl ConsumeQueueUnit {
    /// The filler unit written before the first unit of a queue that starts mid-segment
    /// (Java's `fillPreBlank`).
    pub const BLANK: Self = Self {
        commit_log_offset: 0,
        size: i32::MAX,
        tags_code: 0,
    };

    /// The 20 on-disk bytes.
    pub fn encode(&self) -> [u8; 20] {
        let mut bytes = [0u8; UNIT_LEN];
        bytes[0..8].copy_from_slice(&self.commit_log_offset.to_be_bytes());
        bytes[8..12].copy_from_slice(&self.size.to_be_bytes());
        bytes[12..20].copy_from_slice(&self.tags_code.to_be_bytes());
        bytes
    }

    /// Decodes exactly 20 bytes; `None` for any other length. Any 20 bytes decode: use
    /// [`is_valid`](Self::is_valid) to tell a unit from garbage or zeros.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; UNIT_LEN] = bytes.try_into().ok()?;
        let (offset, rest) = bytes.split_at(8);
        let (size, tags) = rest.split_at(4);
        Some(Self {
            commit_log_offset: i64::from_be_bytes(offset.try_into().ok()?),
            size: i32::from_be_bytes(size.try_into().ok()?),
            tags_code: i64::from_be_bytes(tags.try_into().ok()?),
        })
    }

    /// Recovery's test for a written unit (`offset >= 0 && size > 0`); fillers pass it.
    pub fn is_valid(&self) -> bool {
        self.commit_log_offset >= 0 && self.size > 0
    }

    /// Whether this is the filler unit [`BLANK`](Self::BLANK).
    pub fn is_blank(&self) -> bool {
        *self == Self::BLANK
    }

    /// The commit-log offset just past the record (saturating on garbage values).
    pub fn end(&self) -> i64 {
        self.commit_log_offset.saturating_add(i64::from(self.size))
    }
}

/// What [`ConsumeQueue::put_unit`] did with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutUnitOutcome {
    /// Written at the end of the queue.
    Appended,
    /// The first unit of a queue holding no message, at a non-zero index: `blank_count`
    /// filler units were written before it and the minimum offset now points at it.
    AppendedAfterBlankFill {
        /// Filler units written before the unit.
        blank_count: u64,
    },
    /// Not written: the record ends at or below [`ConsumeQueue::max_physic_offset`], so it
    /// was dispatched already (a replay after recovery). Java's first check.
    AlreadyBuilt {
        /// The queue's max physical offset the record was compared with.
        max_physic_offset: i64,
    },
    /// Not written: the index is below the queue's end, so a unit is there already.
    Duplicate {
        /// The queue's end (next index to write).
        end_index: i64,
    },
    /// Not written: the index is above the queue's end. Java logs "\[BUG\]logic queue order
    /// maybe wrong" and appends anyway, which puts the unit at the wrong index; here the
    /// caller must treat it as a bug of the dispatch order.
    Gap {
        /// The queue's end (the index that was expected).
        end_index: i64,
    },
}

/// Errors of consume-queue operations.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeQueueError {
    /// The queue's files could not be opened (a segment of the wrong size, a name that is
    /// not an offset, a gap between segments, or an I/O error). Store load fails; the
    /// operator must look at the directory.
    #[error("loading consume queue {dir}: {source}")]
    Load {
        /// The queue's directory.
        dir: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading or truncating the files during recovery failed. Store load fails.
    #[error("recovering consume queue {dir}: {source}")]
    Recover {
        /// The queue's directory.
        dir: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The unit is not one recovery would accept (negative offset, size not positive) or is
    /// the filler pattern. A bug of the caller; nothing was written.
    #[error("invalid consume-queue unit {unit:?}")]
    InvalidUnit {
        /// The rejected unit.
        unit: ConsumeQueueUnit,
    },
    /// The unit's record starts inside the previous unit's record. A bug of the caller;
    /// nothing was written.
    #[error("unit {unit:?} overlaps the previous record ending at {max_physic_offset}")]
    Overlap {
        /// The rejected unit.
        unit: ConsumeQueueUnit,
        /// The end of the previous unit's record.
        max_physic_offset: i64,
    },
    /// The queue offset is negative or too large for a byte offset. A bug of the caller.
    #[error("invalid queue offset {queue_offset}")]
    InvalidQueueOffset {
        /// The rejected queue offset.
        queue_offset: i64,
    },
    /// Creating a segment or writing to it failed (a full disk is `StorageFull`). The unit
    /// may be missing; fillers may be partly written. The caller may retry the same put
    /// later (Java retries 30 times, 1 s apart) and otherwise stops dispatching.
    #[error("appending to consume queue {dir}: {source}")]
    Append {
        /// The queue's directory.
        dir: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading written units failed (a failing device).
    #[error("reading consume queue {dir}: {source}")]
    Read {
        /// The queue's directory.
        dir: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Cutting, deleting or destroying segments failed; the queue may hold more or fewer
    /// files than asked. The caller should retry or stop the store.
    #[error("removing data of consume queue {dir}: {source}")]
    Remove {
        /// The queue's directory.
        dir: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A sync failed: the durable contents are unknown. The caller must fence the store
    /// (STYLE.md), never retry and carry on.
    #[error("flushing consume queue {dir}: {source}")]
    Flush {
        /// The queue's directory.
        dir: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// The consume queue of one (topic, queueId). See the module docs.
#[derive(Debug)]
pub struct ConsumeQueue {
    disk: SharedDisk,
    topic: String,
    queue_id: i32,
    queue: MappedFileQueue,
    /// Logical byte offset of the first unit pointing at a live record (`minLogicOffset`).
    min_logic_offset: AtomicU64,
    /// End of the last real unit's record; -1 when unknown (`maxPhysicOffset`).
    max_physic_offset: AtomicI64,
}

impl ConsumeQueue {
    /// A consume queue in `<store_root>/consumequeue/<topic>/<queue_id>` with segments of
    /// `file_size` bytes. Nothing is read until [`load`](Self::load).
    ///
    /// Panics unless `file_size` is a positive multiple of 20: the store config rounds
    /// `mappedFileSizeConsumeQueue` up to whole units, as Java's getter does.
    pub fn new(
        disk: SharedDisk,
        store_root: &str,
        topic: &str,
        queue_id: i32,
        file_size: u64,
    ) -> Self {
        assert!(
            file_size > 0 && file_size.is_multiple_of(CQ_STORE_UNIT_SIZE),
            "consume-queue segment size {file_size} is not a positive multiple of {CQ_STORE_UNIT_SIZE}"
        );
        let dir = join(
            &join(&join(store_root, CONSUME_QUEUE_DIR_NAME), topic),
            &queue_id.to_string(),
        );
        Self {
            queue: MappedFileQueue::new(Arc::clone(&disk), dir, file_size)
                .random_access_while_appended(),
            disk,
            topic: topic.to_owned(),
            queue_id,
            min_logic_offset: AtomicU64::new(0),
            max_physic_offset: AtomicI64::new(-1),
        }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The queue id.
    pub fn queue_id(&self) -> i32 {
        self.queue_id
    }

    /// The queue's directory.
    pub fn dir(&self) -> &str {
        self.queue.dir()
    }

    /// The segment size in bytes.
    pub fn file_size(&self) -> u64 {
        self.queue.file_size()
    }

    /// Units per segment.
    fn units_per_file(&self) -> i64 {
        (self.queue.file_size() / CQ_STORE_UNIT_SIZE) as i64
    }

    /// Opens the existing segments (spec S5), each marked full; [`recover`](Self::recover)
    /// then finds the real end. The minimum offset starts at the first segment.
    pub fn load(&self) -> Result<(), ConsumeQueueError> {
        self.queue
            .load()
            .map_err(|source| ConsumeQueueError::Load {
                dir: self.dir().to_owned(),
                source,
            })?;
        self.min_logic_offset
            .store(self.queue.min_offset(), Ordering::Release);
        self.max_physic_offset.store(-1, Ordering::Release);
        Ok(())
    }

    /// Finds the real end after [`load`](Self::load) (spec S8, Java `ConsumeQueue.recover`):
    /// scans from the third-from-last segment (or the first); a unit is valid while
    /// `offset >= 0 && size > 0`; a wholly valid segment continues the scan into the next,
    /// otherwise the scan stops at the first invalid unit and everything from there on is
    /// cut (zeroed, later segments deleted). Then sets the max physical offset from the last
    /// real unit and moves the minimum offset past leading fillers. A queue left without
    /// any unit has its segments deleted, so its next unit starts it afresh.
    pub async fn recover(&self) -> Result<(), ConsumeQueueError> {
        let recover_error = |source| ConsumeQueueError::Recover {
            dir: self.dir().to_owned(),
            source,
        };
        let files = self.queue.mapped_files();
        let Some(first) = files.first() else {
            self.min_logic_offset.store(0, Ordering::Release);
            self.max_physic_offset.store(-1, Ordering::Release);
            return Ok(());
        };
        let scan_from = files.len().saturating_sub(3);
        let mut process_offset = files[scan_from].file_from_offset();
        let mut previous_end = 0i64;
        for file in &files[scan_from..] {
            let valid_len = valid_prefix_len(file, &mut previous_end).map_err(recover_error)?;
            process_offset = file.file_from_offset() + valid_len;
            if valid_len < file.file_size() {
                break;
            }
        }
        tracing::debug!(
            dir = self.dir(),
            process_offset,
            "consume queue recovered up to logical offset"
        );
        if process_offset == first.file_from_offset() {
            self.queue.destroy().await.map_err(recover_error)?;
            self.min_logic_offset.store(0, Ordering::Release);
            self.max_physic_offset.store(-1, Ordering::Release);
            return Ok(());
        }
        self.queue
            .truncate_dirty_files(process_offset, true)
            .await
            .map_err(recover_error)?;
        let max_physic = self.last_unit().map_or(-1, |unit| unit.end());
        self.max_physic_offset.store(max_physic, Ordering::Release);
        let first_index = self.first_index();
        let first_real = self
            .first_index_where(first_index, self.end_index(), |unit| !unit.is_blank())
            .map_err(recover_error)?;
        self.min_logic_offset
            .store(index_to_byte(first_real), Ordering::Release);
        Ok(())
    }

    /// The end (`offset + size`) of the last real unit's record, -1 if unknown. Everything
    /// in the commit log below it is already in this queue.
    pub fn max_physic_offset(&self) -> i64 {
        self.max_physic_offset.load(Ordering::Acquire)
    }

    /// Puts `unit` at index `queue_offset` (Java `putMessagePositionInfo`, spec S16), in
    /// this order:
    /// 1. a record ending at or below [`max_physic_offset`](Self::max_physic_offset) was
    ///    built already: [`PutUnitOutcome::AlreadyBuilt`];
    /// 2. an index below the end: [`PutUnitOutcome::Duplicate`] (Java skips only for index
    ///    != 0; here index 0 of a non-empty queue is a duplicate too);
    /// 3. an index at the end: appended;
    /// 4. an index above the end of a queue holding no message, inside the segment the
    ///    queue would write next: fillers up to it, then the unit, and the minimum offset
    ///    moves to it (`fillPreBlank`);
    /// 5. any other index above the end: [`PutUnitOutcome::Gap`], nothing written.
    ///
    /// Only the single writer of this queue may call it.
    pub fn put_unit(
        &self,
        unit: ConsumeQueueUnit,
        queue_offset: i64,
    ) -> Result<PutUnitOutcome, ConsumeQueueError> {
        let expect = u64::try_from(queue_offset)
            .ok()
            .and_then(|index| index.checked_mul(CQ_STORE_UNIT_SIZE))
            .ok_or(ConsumeQueueError::InvalidQueueOffset { queue_offset })?;
        if !unit.is_valid() || unit.is_blank() {
            return Err(ConsumeQueueError::InvalidUnit { unit });
        }
        let max_physic_offset = self.max_physic_offset();
        if unit.end() <= max_physic_offset {
            return Ok(PutUnitOutcome::AlreadyBuilt { max_physic_offset });
        }
        if unit.commit_log_offset < max_physic_offset {
            return Err(ConsumeQueueError::Overlap {
                unit,
                max_physic_offset,
            });
        }
        let end = self.queue.max_offset();
        let end_index = byte_to_index(end);
        if expect < end {
            return Ok(PutUnitOutcome::Duplicate { end_index });
        }
        let append_error = |source| ConsumeQueueError::Append {
            dir: self.dir().to_owned(),
            source,
        };
        if expect == end {
            let file = self
                .queue
                .last_mapped_file_or_create(expect)
                .map_err(append_error)?;
            assert_eq!(
                file.file_from_offset() + file.wrote_position(),
                expect,
                "the single writer appends at the end of {}",
                self.dir()
            );
            file.append(&unit.encode(), 0).map_err(append_error)?;
            self.max_physic_offset.store(unit.end(), Ordering::Release);
            return Ok(PutUnitOutcome::Appended);
        }
        if self
            .holds_message()
            .map_err(|source| ConsumeQueueError::Read {
                dir: self.dir().to_owned(),
                source,
            })?
        {
            return Ok(PutUnitOutcome::Gap { end_index });
        }
        // A queue holding no message yet (maybe a partial fill): fill from its end to the
        // unit, within the segment that holds the unit.
        let file = self
            .queue
            .last_mapped_file_or_create(expect)
            .map_err(append_error)?;
        let from = file.file_from_offset();
        let position = file.wrote_position();
        if expect < from + position || expect >= from + file.file_size() {
            return Ok(PutUnitOutcome::Gap { end_index });
        }
        let blank_len = (expect - from - position) as usize;
        let blank_chunk = ConsumeQueueUnit::BLANK
            .encode()
            .repeat(SCAN_CHUNK_LEN / UNIT_LEN);
        let mut remaining = blank_len;
        while remaining > 0 {
            let len = remaining.min(blank_chunk.len());
            file.append(&blank_chunk[..len], 0).map_err(append_error)?;
            remaining -= len;
        }
        // The minimum moves before the unit is appended, so a retry after a failed append
        // (which then takes the plain append path) still finds it past the fillers.
        self.min_logic_offset.store(expect, Ordering::Release);
        file.append(&unit.encode(), 0).map_err(append_error)?;
        self.max_physic_offset.store(unit.end(), Ordering::Release);
        tracing::info!(
            dir = self.dir(),
            queue_offset,
            blank_count = blank_len / UNIT_LEN,
            "consume queue starts mid-segment: filled the space before its first unit"
        );
        Ok(PutUnitOutcome::AppendedAfterBlankFill {
            blank_count: (blank_len / UNIT_LEN) as u64,
        })
    }

    /// The unit at `index`, if it is between the minimum and maximum offsets and readable.
    pub fn unit(&self, index: i64) -> Option<ConsumeQueueUnit> {
        if index < self.min_offset_in_queue() || index >= self.max_offset_in_queue() {
            return None;
        }
        self.read_unit(index).ok().flatten()
    }

    /// Up to `max_count` units from `start_index` on, with their indexes, across segment
    /// boundaries. Indexes below the minimum offset are skipped (the first entry then has a
    /// larger index than asked); the read stops at the end, at a segment deleted meanwhile,
    /// or at a read error.
    pub fn units(&self, start_index: i64, max_count: usize) -> Vec<(i64, ConsumeQueueUnit)> {
        let start = start_index.max(self.min_offset_in_queue());
        let end = self.max_offset_in_queue();
        if start >= end || max_count == 0 {
            return Vec::new();
        }
        let stop = end.min(start.saturating_add(i64::try_from(max_count).unwrap_or(i64::MAX)));
        let mut units =
            Vec::with_capacity(((stop - start) as usize).min(SCAN_CHUNK_LEN / UNIT_LEN));
        let mut index = start;
        while index < stop {
            let offset = index_to_byte(index);
            let Some(file) = self.queue.find_mapped_file_by_offset(offset) else {
                break;
            };
            let position = offset - file.file_from_offset();
            let file_stop = file.file_from_offset() + file.wrote_position();
            let read_end = index_to_byte(stop).min(file_stop);
            if read_end <= offset {
                break;
            }
            let Ok(bytes) = file.read(position, (read_end - offset) as usize) else {
                break;
            };
            for chunk in bytes.chunks_exact(UNIT_LEN) {
                if let Some(unit) = ConsumeQueueUnit::decode(chunk) {
                    units.push((index, unit));
                }
                index += 1;
            }
        }
        units
    }

    /// The first index still served (`minLogicOffset / 20`), never below the first segment.
    pub fn min_offset_in_queue(&self) -> i64 {
        let min = self
            .min_logic_offset
            .load(Ordering::Acquire)
            .max(self.queue.min_offset());
        byte_to_index(min)
    }

    /// The index the next unit goes to (written end / 20).
    pub fn max_offset_in_queue(&self) -> i64 {
        self.end_index()
    }

    /// The first unit index of the segment after the one holding `index` (Java
    /// `rollNextFile`), where a pull resumes when its segment is gone.
    pub fn roll_next_file(&self, index: i64) -> i64 {
        let per_file = self.units_per_file();
        index.saturating_add(per_file - index.rem_euclid(per_file))
    }

    /// The first index in `[min, max)` whose message was stored at or after `timestamp`,
    /// found by binary search (Java `getOffsetInQueueByTime`, as 5.x's `BoundaryType.LOWER`);
    /// `max` if every message is older, `min` if none is; 0 for a queue without units.
    /// `store_time_of(offset, size)` gives a record's store timestamp, `None` if the record
    /// is gone (its commit-log file deleted): such a unit counts as older than
    /// `timestamp`, as Java skips units below the commit log's minimum. Assumes store
    /// times do not decrease along the queue; otherwise returns some index in range.
    pub fn offset_by_timestamp(
        &self,
        timestamp: i64,
        store_time_of: impl Fn(i64, i32) -> Option<i64>,
    ) -> i64 {
        let min = self.min_offset_in_queue();
        let max = self.max_offset_in_queue();
        self.first_index_where(min, max, |unit| {
            !unit.is_blank()
                && store_time_of(unit.commit_log_offset, unit.size)
                    .is_some_and(|store_time| store_time >= timestamp)
        })
        .unwrap_or(min)
    }

    /// The last unit written, if the queue holds a real one (regardless of the minimum
    /// offset).
    pub fn last_unit(&self) -> Option<ConsumeQueueUnit> {
        let end = self.end_index();
        if end <= self.first_index() {
            return None;
        }
        self.read_unit(end - 1)
            .ok()
            .flatten()
            .filter(|unit| !unit.is_blank())
    }

    /// Drops every unit whose record starts at or after `phy_offset` (Java
    /// `truncateDirtyLogicFiles`): the commit log was cut there. The kept prefix ends at the
    /// first such unit; the rest of its segment is zeroed (Java only moves the write
    /// position, so a later recovery could read the stale units back), later segments are
    /// deleted, and a queue left without units loses its segments. The max physical offset becomes the end of the last kept real unit, or
    /// `phy_offset` if none is left (as in Java).
    pub async fn truncate_dirty_logic_files(
        &self,
        phy_offset: i64,
    ) -> Result<(), ConsumeQueueError> {
        let remove_error = |source| ConsumeQueueError::Remove {
            dir: self.dir().to_owned(),
            source,
        };
        let first = self.first_index();
        let end = self.end_index();
        let new_end = self
            .first_index_where(first, end, |unit| {
                !unit.is_blank() && unit.end() > phy_offset
            })
            .map_err(|source| ConsumeQueueError::Read {
                dir: self.dir().to_owned(),
                source,
            })?;
        if new_end < end {
            if new_end == first {
                self.queue.destroy().await.map_err(remove_error)?;
                self.min_logic_offset.store(0, Ordering::Release);
            } else {
                let new_end_offset = index_to_byte(new_end);
                self.queue
                    .truncate_dirty_files(new_end_offset, true)
                    .await
                    .map_err(remove_error)?;
                self.min_logic_offset
                    .fetch_min(new_end_offset, Ordering::AcqRel);
            }
            tracing::info!(
                dir = self.dir(),
                phy_offset,
                from = end,
                to = new_end,
                "consume queue truncated"
            );
        }
        let max_physic = self.last_unit().map_or(phy_offset, |unit| unit.end());
        self.max_physic_offset.store(max_physic, Ordering::Release);
        Ok(())
    }

    /// Moves the minimum offset to the first unit whose record is at or above
    /// `commit_log_min_offset` (Java `correctMinOffset`), searching forward from the current
    /// minimum; to the end if every unit points below it. Fillers never count.
    pub fn correct_min_offset(&self, commit_log_min_offset: i64) -> Result<(), ConsumeQueueError> {
        if self.queue.mapped_files().is_empty() {
            self.min_logic_offset.store(0, Ordering::Release);
            return Ok(());
        }
        let start = self.min_offset_in_queue();
        let new_min = self
            .first_index_where(start, self.end_index(), |unit| {
                !unit.is_blank() && unit.commit_log_offset >= commit_log_min_offset
            })
            .map_err(|source| ConsumeQueueError::Read {
                dir: self.dir().to_owned(),
                source,
            })?;
        self.min_logic_offset
            .store(index_to_byte(new_min), Ordering::Release);
        Ok(())
    }

    /// Deletes the oldest segments whose last unit points below `commit_log_min_offset`
    /// (Java `deleteExpiredFile`), never the newest, then corrects the minimum offset.
    /// Returns how many segments were deleted.
    pub async fn delete_expired_files(
        &self,
        commit_log_min_offset: i64,
    ) -> Result<usize, ConsumeQueueError> {
        let deleted = self
            .queue
            .delete_oldest_while(|file| {
                file.read(file.file_size() - CQ_STORE_UNIT_SIZE, UNIT_LEN)
                    .ok()
                    .and_then(|bytes| ConsumeQueueUnit::decode(&bytes))
                    .is_some_and(|last| last.commit_log_offset < commit_log_min_offset)
            })
            .await
            .map_err(|source| ConsumeQueueError::Remove {
                dir: self.dir().to_owned(),
                source,
            })?;
        self.min_logic_offset
            .fetch_max(self.queue.min_offset(), Ordering::AcqRel);
        self.correct_min_offset(commit_log_min_offset)?;
        if deleted > 0 {
            tracing::info!(
                dir = self.dir(),
                deleted,
                commit_log_min_offset,
                "deleted expired consume-queue files"
            );
        }
        Ok(deleted)
    }

    /// Syncs segments with at least `least_pages` dirty pages (any for 0, and always a full
    /// segment); returns the durable logical byte offset.
    pub async fn flush(&self, least_pages: u64) -> Result<u64, ConsumeQueueError> {
        self.queue
            .flush(least_pages)
            .await
            .map_err(|source| ConsumeQueueError::Flush {
                dir: self.dir().to_owned(),
                source,
            })
    }

    /// Syncs every written unit, whatever the flushed positions claim (recovery: see
    /// [`MappedFileQueue::sync_written`]).
    pub async fn sync_written(&self) -> Result<(), ConsumeQueueError> {
        self.queue
            .sync_written(0)
            .await
            .map_err(|source| ConsumeQueueError::Flush {
                dir: self.dir().to_owned(),
                source,
            })
    }

    /// The durable logical byte offset.
    pub fn flushed_offset(&self) -> u64 {
        self.queue.flushed_offset()
    }

    /// Deletes every segment and the queue's directory (a deleted topic, or a store found
    /// without a commit log) and resets the offsets.
    pub async fn destroy(&self) -> Result<(), ConsumeQueueError> {
        let remove_error = |source| ConsumeQueueError::Remove {
            dir: self.dir().to_owned(),
            source,
        };
        self.queue.destroy().await.map_err(remove_error)?;
        self.disk.remove_dir_all(self.dir()).map_err(remove_error)?;
        let parent = self.dir().rsplit_once('/').map_or("", |(parent, _)| parent);
        self.disk.sync_dir(parent).await.map_err(remove_error)?;
        self.min_logic_offset.store(0, Ordering::Release);
        self.max_physic_offset.store(-1, Ordering::Release);
        Ok(())
    }

    /// Panics if an invariant of the module docs is broken. The O(n) scan of every unit
    /// runs in tests and with the `verify` feature.
    pub fn check_invariants(&self) {
        self.queue.check_invariants();
        let file_size = self.queue.file_size();
        assert!(file_size > 0 && file_size.is_multiple_of(CQ_STORE_UNIT_SIZE));
        let files = self.queue.mapped_files();
        for file in &files {
            assert!(
                file.wrote_position().is_multiple_of(CQ_STORE_UNIT_SIZE),
                "segment {} is written to {}, not a whole number of units",
                file.path(),
                file.wrote_position()
            );
        }
        let min = self.min_logic_offset.load(Ordering::Acquire);
        assert!(
            min.is_multiple_of(CQ_STORE_UNIT_SIZE),
            "min offset {min} is not a unit"
        );
        if files.is_empty() {
            assert_eq!(min, 0, "{} has no segment but min offset {min}", self.dir());
        } else {
            let first = self.queue.min_offset();
            let end = self.queue.max_offset();
            assert!(
                first <= min && min <= end,
                "{}: min offset {min} outside [{first}, {end}]",
                self.dir()
            );
        }
        #[cfg(any(test, feature = "verify"))]
        self.check_units();
    }

    /// The O(n) part of [`check_invariants`](Self::check_invariants).
    #[cfg(any(test, feature = "verify"))]
    fn check_units(&self) {
        let first = self.first_index();
        let end = self.end_index();
        let units = self.units_unchecked(first, end);
        assert_eq!(
            units.len() as i64,
            end - first,
            "{}: units are not dense",
            self.dir()
        );
        let mut previous: Option<ConsumeQueueUnit> = None;
        for (index, unit) in units {
            assert!(
                unit.is_valid(),
                "{}: unit {index} is invalid: {unit:?}",
                self.dir()
            );
            match previous {
                Some(previous) if !previous.is_blank() => {
                    assert!(
                        !unit.is_blank(),
                        "{}: filler at {index} after a message",
                        self.dir()
                    );
                    assert!(
                        unit.commit_log_offset >= previous.end(),
                        "{}: unit {index} {unit:?} does not follow {previous:?}",
                        self.dir()
                    );
                }
                _ => {}
            }
            previous = Some(unit);
        }
        if let Some(last) = previous.filter(|unit| !unit.is_blank()) {
            assert_eq!(
                self.max_physic_offset(),
                last.end(),
                "{}: max physic offset is not the end of the last unit",
                self.dir()
            );
        }
    }

    /// Every unit in `[start, stop)` regardless of the minimum offset.
    #[cfg(any(test, feature = "verify"))]
    fn units_unchecked(&self, start: i64, stop: i64) -> Vec<(i64, ConsumeQueueUnit)> {
        (start..stop)
            .map_while(|index| {
                self.read_unit(index)
                    .ok()
                    .flatten()
                    .map(|unit| (index, unit))
            })
            .collect()
    }

    /// The first written unit index (start of the first segment).
    fn first_index(&self) -> i64 {
        byte_to_index(self.queue.min_offset())
    }

    /// The written end as an index.
    fn end_index(&self) -> i64 {
        byte_to_index(self.queue.max_offset())
    }

    /// Reads the unit at `index` regardless of the minimum offset; `Ok(None)` outside the
    /// written range.
    fn read_unit(&self, index: i64) -> io::Result<Option<ConsumeQueueUnit>> {
        let Ok(index) = u64::try_from(index) else {
            return Ok(None);
        };
        let Some(offset) = index.checked_mul(CQ_STORE_UNIT_SIZE) else {
            return Ok(None);
        };
        let Some(file) = self.queue.find_mapped_file_by_offset(offset) else {
            return Ok(None);
        };
        let position = offset - file.file_from_offset();
        if position + CQ_STORE_UNIT_SIZE > file.wrote_position() {
            return Ok(None);
        }
        let bytes = file.read(position, UNIT_LEN)?;
        Ok(ConsumeQueueUnit::decode(&bytes))
    }

    /// The first index in `[low, high)` whose unit satisfies `predicate`, assuming the
    /// predicate is false then true along the range; `high` if none does. An unreadable
    /// unit counts as false.
    fn first_index_where(
        &self,
        mut low: i64,
        mut high: i64,
        predicate: impl Fn(&ConsumeQueueUnit) -> bool,
    ) -> io::Result<i64> {
        while low < high {
            let mid = low + (high - low) / 2;
            let holds = self.read_unit(mid)?.is_some_and(|unit| predicate(&unit));
            if holds {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        Ok(low)
    }

    /// Whether the queue holds a real unit (not only fillers). Fillers form a prefix, so
    /// the last unit tells.
    fn holds_message(&self) -> io::Result<bool> {
        let end = self.end_index();
        if end <= self.first_index() {
            return Ok(false);
        }
        Ok(self
            .read_unit(end - 1)?
            .is_some_and(|unit| !unit.is_blank()))
    }
}

/// The length of the run of valid units at the start of `file`, in bytes, read from the raw
/// contents (recovery ignores the write position `load` set).
fn valid_prefix_len(file: &MappedFile, previous_end: &mut i64) -> io::Result<u64> {
    let mut position = 0;
    while position < file.file_size() {
        let bytes = file.read_raw(position, SCAN_CHUNK_LEN)?;
        if bytes.is_empty() {
            break;
        }
        for chunk in bytes.chunks_exact(UNIT_LEN) {
            let Some(unit) = ConsumeQueueUnit::decode(chunk).filter(ConsumeQueueUnit::is_valid)
            else {
                return Ok(position);
            };
            // Real units point at consecutive, non-overlapping records; one that goes back
            // is garbage left by a crash, and ends the valid queue as an invalid unit does.
            if !unit.is_blank() {
                if unit.commit_log_offset < *previous_end {
                    return Ok(position);
                }
                *previous_end = unit.end();
            }
            position += CQ_STORE_UNIT_SIZE;
        }
        if bytes.len() % UNIT_LEN != 0 {
            break;
        }
    }
    Ok(position)
}

fn index_to_byte(index: i64) -> u64 {
    u64::try_from(index).unwrap_or(0) * CQ_STORE_UNIT_SIZE
}

fn byte_to_index(offset: u64) -> i64 {
    (offset / CQ_STORE_UNIT_SIZE) as i64
}

#[cfg(test)]
mod tests;
