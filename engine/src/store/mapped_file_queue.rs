//! A queue of fixed-size segment files addressed by one continuous offset
//! (`MappedFileQueue`): the storage of the commit log and of every consume queue.
//!
//! Segment *i* holds offsets `[start_i, start_i + file_size)` and is named by `start_i` as
//! a 20-digit zero-padded decimal, so listing a directory sorted by name lists it by offset.
//! Each segment tracks how far it is written (visible to readers) and how far it is flushed
//! (durable). Only one writer appends (the owner serializes appends); readers may read any
//! written range concurrently.
//!
//! Invariants: segments are contiguous (`start_{i+1} = start_i + file_size`); every segment
//! but the last is full; `flushed <= wrote <= file_size` in each.

use std::io;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

use crate::disk::{PAGE_SIZE, Segment, SharedDisk, join};

/// The name of the segment starting at `offset`: 20 zero-padded decimal digits.
pub fn segment_name(offset: u64) -> String {
    format!("{offset:020}")
}

/// Appends ask the disk to prepare this many bytes ahead of them, a chunk at a time (see
/// [`Segment::prefault`]): each append that enters a new chunk asks for the next one.
pub const PREFAULT_CHUNK: u64 = 4 * 1024 * 1024;

/// After a sequential write of `start..end` into `segment`: when it began the segment or
/// entered a new [`PREFAULT_CHUNK`], asks for the chunk after `end`'s to be prepared, so
/// sequential writes stay a chunk ahead of page faults.
pub(crate) fn prefault_ahead(segment: &dyn Segment, start: u64, end: u64) {
    let chunk = end / PREFAULT_CHUNK;
    if start == 0 || start / PREFAULT_CHUNK != chunk {
        let ahead = (chunk + 1) * PREFAULT_CHUNK;
        if ahead < segment.size() {
            segment.prefault(ahead..(ahead + PREFAULT_CHUNK).min(segment.size()));
        }
    }
}

/// One segment of a [`MappedFileQueue`].
#[derive(Debug)]
pub struct MappedFile {
    file_from_offset: u64,
    file_size: u64,
    segment: Arc<dyn Segment>,
    wrote_position: AtomicU64,
    flushed_position: AtomicU64,
    /// Store timestamp of the last record appended (commit log), for the checkpoint.
    last_store_timestamp: AtomicI64,
}

impl MappedFile {
    fn new(file_from_offset: u64, segment: Arc<dyn Segment>, file_size: u64) -> Self {
        Self {
            file_from_offset,
            file_size,
            segment,
            wrote_position: AtomicU64::new(0),
            flushed_position: AtomicU64::new(0),
            last_store_timestamp: AtomicI64::new(0),
        }
    }

    /// The offset of this segment's first byte.
    pub fn file_from_offset(&self) -> u64 {
        self.file_from_offset
    }

    /// The segment's size.
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// Bytes written (and readable) from the segment's start.
    pub fn wrote_position(&self) -> u64 {
        self.wrote_position.load(Ordering::Acquire)
    }

    /// Bytes durable from the segment's start.
    pub fn flushed_position(&self) -> u64 {
        self.flushed_position.load(Ordering::Acquire)
    }

    /// Whether no more bytes fit.
    pub fn is_full(&self) -> bool {
        self.wrote_position() >= self.file_size
    }

    /// Bytes still free.
    pub fn free_bytes(&self) -> u64 {
        self.file_size - self.wrote_position()
    }

    /// Store timestamp of the last record appended.
    pub fn last_store_timestamp(&self) -> i64 {
        self.last_store_timestamp.load(Ordering::Acquire)
    }

    /// Appends `data` at the write position (the single writer only).
    pub fn append(&self, data: &[u8], store_timestamp: i64) -> io::Result<()> {
        let position = self.wrote_position();
        let end = position + data.len() as u64;
        if end > self.file_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "append of {} bytes at {position} overflows segment {}",
                    data.len(),
                    self.segment.path()
                ),
            ));
        }
        self.segment.write_at(position, data)?;
        prefault_ahead(&*self.segment, position, end);
        if store_timestamp > 0 {
            self.last_store_timestamp
                .store(store_timestamp, Ordering::Release);
        }
        self.wrote_position.store(end, Ordering::Release);
        Ok(())
    }

    /// Writes `header` at the write position and marks the segment full: the end-of-segment
    /// BLANK record, whose TOTALSIZE covers the rest of the segment.
    pub fn fill_to_end(&self, header: &[u8]) -> io::Result<()> {
        let position = self.wrote_position();
        if position + header.len() as u64 > self.file_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "no room for the end-of-segment record in {}",
                    self.segment.path()
                ),
            ));
        }
        self.segment.write_at(position, header)?;
        self.wrote_position.store(self.file_size, Ordering::Release);
        Ok(())
    }

    /// Reads `len` bytes at `position` (relative to the segment start); fails past the
    /// written part.
    pub fn read(&self, position: u64, len: usize) -> io::Result<Bytes> {
        let end = position + len as u64;
        if end > self.wrote_position() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {len} bytes at {position} is past the written {} of {}",
                    self.wrote_position(),
                    self.segment.path()
                ),
            ));
        }
        self.segment.read(position, len)
    }

    /// Reads from `position` to the end of the written part.
    pub fn read_to_written(&self, position: u64) -> io::Result<Bytes> {
        let wrote = self.wrote_position();
        if position >= wrote {
            return Ok(Bytes::new());
        }
        self.segment.read(position, (wrote - position) as usize)
    }

    /// Reads bytes regardless of the write position (recovery scans raw contents); short at
    /// the end of the segment.
    pub fn read_raw(&self, position: u64, len: usize) -> io::Result<Bytes> {
        let len = len.min(self.file_size.saturating_sub(position) as usize);
        self.segment.read(position, len)
    }

    /// Sets both positions (load and recovery).
    pub fn set_positions(&self, wrote: u64, flushed: u64) {
        assert!(
            flushed <= wrote && wrote <= self.file_size,
            "positions out of order"
        );
        self.wrote_position.store(wrote, Ordering::Release);
        self.flushed_position.store(flushed, Ordering::Release);
    }

    /// Whether a flush with `least_pages` would sync anything: a full segment with unflushed
    /// bytes always; otherwise at least `least_pages` dirty pages (any dirty byte for 0).
    pub fn is_able_to_flush(&self, least_pages: u64) -> bool {
        let flushed = self.flushed_position();
        let wrote = self.wrote_position();
        if wrote <= flushed {
            return false;
        }
        if self.is_full() || least_pages == 0 {
            return true;
        }
        wrote / PAGE_SIZE - flushed / PAGE_SIZE >= least_pages
    }

    /// Syncs the written-but-unflushed bytes; returns the new flushed position.
    pub async fn flush(&self, least_pages: u64) -> io::Result<u64> {
        if !self.is_able_to_flush(least_pages) {
            return Ok(self.flushed_position());
        }
        let flushed = self.flushed_position();
        let wrote = self.wrote_position();
        self.segment.sync(flushed..wrote).await?;
        self.flushed_position.fetch_max(wrote, Ordering::AcqRel);
        Ok(self.flushed_position())
    }

    /// The disk path of this segment.
    pub fn path(&self) -> &str {
        self.segment.path()
    }
}

/// A directory of contiguous fixed-size segments. See the module docs.
#[derive(Debug)]
pub struct MappedFileQueue {
    disk: SharedDisk,
    dir: String,
    file_size: u64,
    files: RwLock<Vec<Arc<MappedFile>>>,
    /// Whether a segment created for appends is random-access until the next one replaces
    /// it; see [`random_access_while_appended`](Self::random_access_while_appended).
    random_while_appended: bool,
    /// Whether creating a segment asks the disk to prepare the one after it; see
    /// [`prepare_next_segment`](Self::prepare_next_segment).
    prepare_next: bool,
}

impl MappedFileQueue {
    /// A queue in `dir` with segments of `file_size` bytes. Nothing is read until
    /// [`load`](Self::load).
    pub fn new(disk: SharedDisk, dir: impl Into<String>, file_size: u64) -> Self {
        assert!(file_size > 0, "segment size must be positive");
        Self {
            disk,
            dir: dir.into(),
            file_size,
            files: RwLock::new(Vec::new()),
            random_while_appended: false,
            prepare_next: false,
        }
    }

    /// Makes each segment this queue creates random-access ([`Segment::set_random_access`])
    /// while it is the one appended to, and sequential again once full. For small records
    /// that arrive in many queues at once (consume-queue units): every queue of a topic
    /// rolls within the same milliseconds, and without this each first write into a new
    /// segment zero-fills the read-ahead window around it inline, megabytes per queue. Not
    /// for the commit log, whose bulk writes are cheaper in the large pages read-ahead
    /// brings.
    pub fn random_access_while_appended(mut self) -> Self {
        self.random_while_appended = true;
        self
    }

    /// Makes each segment this queue creates ask the disk to prepare the next one
    /// ([`Disk::prepare_segment`](crate::disk::Disk::prepare_segment)), its first
    /// [`PREFAULT_CHUNK`] ready for writes, so that the roll to it takes a ready segment
    /// instead of creating it and faulting in its first pages under the appender. For the
    /// commit log, whose rolls happen inside a send. As in Java's `AllocateMappedFileService`,
    /// the next segment's file exists from then on; recovery cuts it when nothing reached it.
    pub fn prepare_next_segment(mut self) -> Self {
        self.prepare_next = true;
        self
    }

    /// The segment size.
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// The directory.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// Opens the existing segments, each marked full (recovery then finds the real end).
    /// A segment of the wrong size, a name that is not an offset of this queue, or a gap
    /// between segments is an `InvalidData` error: the operator must look at the files.
    pub fn load(&self) -> io::Result<()> {
        let mut entries: Vec<(u64, String)> = Vec::new();
        for entry in self.disk.list_dir(&self.dir)? {
            if entry.is_dir || entry.name.ends_with(".tmp") {
                continue;
            }
            let offset: u64 = entry.name.parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}/{} is not a segment name", self.dir, entry.name),
                )
            })?;
            entries.push((offset, entry.name));
        }
        entries.sort();
        let mut files = Vec::with_capacity(entries.len());
        let mut expected: Option<u64> = None;
        for (offset, name) in entries {
            if !offset.is_multiple_of(self.file_size) || expected.is_some_and(|e| e != offset) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "segment {}/{name} does not follow its predecessor (segment size {})",
                        self.dir, self.file_size
                    ),
                ));
            }
            let segment = self
                .disk
                .open_segment(&join(&self.dir, &name), self.file_size)?;
            let file = MappedFile::new(offset, segment, self.file_size);
            file.set_positions(self.file_size, self.file_size);
            files.push(Arc::new(file));
            expected = Some(offset + self.file_size);
        }
        *self.write_files() = files;
        Ok(())
    }

    /// Every segment, oldest first.
    pub fn mapped_files(&self) -> Vec<Arc<MappedFile>> {
        self.read_files().clone()
    }

    /// The newest segment.
    pub fn last_mapped_file(&self) -> Option<Arc<MappedFile>> {
        self.read_files().last().cloned()
    }

    /// The newest segment with free space, creating the next one (or the first, at
    /// `start_offset` rounded down to a segment boundary) when needed.
    pub fn last_mapped_file_or_create(&self, start_offset: u64) -> io::Result<Arc<MappedFile>> {
        let mut files = self.write_files();
        if let Some(last) = files.last()
            && !last.is_full()
        {
            return Ok(last.clone());
        }
        let create_offset = match files.last() {
            Some(last) => last.file_from_offset + self.file_size,
            None => start_offset - start_offset % self.file_size,
        };
        let path = join(&self.dir, &segment_name(create_offset));
        let segment = self.disk.open_segment(&path, self.file_size)?;
        if self.random_while_appended {
            segment.set_random_access(true);
            if let Some(full) = files.last() {
                full.segment.set_random_access(false);
            }
        }
        let file = Arc::new(MappedFile::new(create_offset, segment, self.file_size));
        files.push(file.clone());
        self.prepare_successor_of(create_offset);
        Ok(file)
    }

    /// Asks the disk to prepare the segment after the newest one, for a queue made with
    /// [`prepare_next_segment`](Self::prepare_next_segment) (nothing otherwise, or when there
    /// is no segment). Recovery calls it once it has cut the queue, so that the first roll
    /// after a restart finds its segment ready too.
    pub fn prepare_after_last(&self) {
        if let Some(last) = self.last_mapped_file() {
            self.prepare_successor_of(last.file_from_offset);
        }
    }

    fn prepare_successor_of(&self, offset: u64) {
        if self.prepare_next {
            let next = join(&self.dir, &segment_name(offset + self.file_size));
            self.disk
                .prepare_segment(&next, self.file_size, PREFAULT_CHUNK);
        }
    }

    /// The segment holding `offset`, if any.
    pub fn find_mapped_file_by_offset(&self, offset: u64) -> Option<Arc<MappedFile>> {
        let files = self.read_files();
        let first = files.first()?;
        if offset < first.file_from_offset {
            return None;
        }
        let index = ((offset - first.file_from_offset) / self.file_size) as usize;
        files
            .get(index)
            .filter(|f| offset < f.file_from_offset + self.file_size)
            .cloned()
    }

    /// The first offset still stored (start of the oldest segment), 0 when empty.
    pub fn min_offset(&self) -> u64 {
        self.read_files().first().map_or(0, |f| f.file_from_offset)
    }

    /// The end of the written data.
    pub fn max_offset(&self) -> u64 {
        self.read_files()
            .last()
            .map_or(0, |f| f.file_from_offset + f.wrote_position())
    }

    /// The end of the durable data.
    pub fn flushed_offset(&self) -> u64 {
        let files = self.read_files();
        // The flushed point is in the first segment that is not entirely flushed.
        for file in files.iter() {
            if file.flushed_position() < file.file_size {
                return file.file_from_offset + file.flushed_position();
            }
        }
        files.last().map_or(0, |f| f.file_from_offset + f.file_size)
    }

    /// Syncs every segment with enough dirty pages; returns the new flushed offset.
    pub async fn flush(&self, least_pages: u64) -> io::Result<u64> {
        for file in self.mapped_files() {
            if file.flushed_position() < file.file_size {
                file.flush(least_pages).await?;
                if file.flushed_position() < file.file_size {
                    // This segment is the flushed frontier: later ones are not yet written.
                    break;
                }
            }
        }
        Ok(self.flushed_offset())
    }

    /// Syncs the whole written part of every segment from `from_index` on, whatever their
    /// flushed positions claim. After a restart the positions are assumed, not known: a
    /// process crash leaves written-but-unsynced bytes in the page cache, and recovery must
    /// make them durable before they are served.
    pub async fn sync_written(&self, from_index: usize) -> io::Result<()> {
        for file in self.mapped_files().into_iter().skip(from_index) {
            let wrote = file.wrote_position();
            if wrote > 0 {
                file.segment.sync(0..wrote).await?;
            }
            file.flushed_position.store(wrote, Ordering::Release);
        }
        Ok(())
    }

    /// Cuts the queue back to `offset`: the segment holding it keeps its bytes below it,
    /// later segments are deleted, earlier ones are left alone. With `zero_tail` (after an
    /// abnormal exit) the rest of the cut segment is zeroed and synced, so that stale records
    /// beyond a torn tail can never be read back as new ones.
    pub async fn truncate_dirty_files(&self, offset: u64, zero_tail: bool) -> io::Result<()> {
        let files = self.mapped_files();
        let mut keep = Vec::with_capacity(files.len());
        for file in files {
            let end = file.file_from_offset + self.file_size;
            if end <= offset {
                keep.push(file);
                continue;
            }
            if file.file_from_offset <= offset {
                let position = offset - file.file_from_offset;
                if zero_tail && zero_segment_tail(&file, position)? {
                    file.segment.sync(position..self.file_size).await?;
                }
                file.set_positions(position, position);
                keep.push(file);
            } else {
                self.disk.remove_file(file.path())?;
            }
        }
        self.disk.sync_dir(&self.dir).await?;
        *self.write_files() = keep;
        Ok(())
    }

    /// Deletes every segment (a queue found empty or inconsistent at recovery).
    pub async fn destroy(&self) -> io::Result<()> {
        let files = std::mem::take(&mut *self.write_files());
        for file in files {
            self.disk.remove_file(file.path())?;
        }
        self.disk.sync_dir(&self.dir).await
    }

    /// Deletes the oldest segments while `should_delete` says so, always keeping the newest;
    /// returns how many were deleted.
    pub async fn delete_oldest_while(
        &self,
        mut should_delete: impl FnMut(&MappedFile) -> bool,
    ) -> io::Result<usize> {
        let doomed: Vec<Arc<MappedFile>> = {
            let files = self.read_files();
            files
                .iter()
                .take(files.len().saturating_sub(1))
                .take_while(|f| should_delete(f))
                .cloned()
                .collect()
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        for file in &doomed {
            self.disk.remove_file(file.path())?;
        }
        self.disk.sync_dir(&self.dir).await?;
        self.write_files().drain(..doomed.len());
        Ok(doomed.len())
    }

    /// Panics if an invariant of the module docs is broken.
    pub fn check_invariants(&self) {
        let files = self.read_files();
        for (index, file) in files.iter().enumerate() {
            assert_eq!(file.file_size, self.file_size);
            assert!(file.flushed_position() <= file.wrote_position());
            assert!(file.wrote_position() <= file.file_size);
            if let Some(next) = files.get(index + 1) {
                assert_eq!(
                    next.file_from_offset,
                    file.file_from_offset + self.file_size,
                    "segments of {} are not contiguous",
                    self.dir
                );
                assert!(
                    file.is_full(),
                    "only the last segment of {} may be partly written",
                    self.dir
                );
            }
        }
    }

    fn read_files(&self) -> RwLockReadGuard<'_, Vec<Arc<MappedFile>>> {
        self.files
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_files(&self) -> RwLockWriteGuard<'_, Vec<Arc<MappedFile>>> {
        self.files
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Chunk in which a segment tail is checked and zeroed.
const ZERO_CHUNK: usize = 64 * 1024;

/// Zeroes `file` from `position` to its end, writing only chunks that are not zero
/// already. Returns whether anything was written.
fn zero_segment_tail(file: &MappedFile, position: u64) -> io::Result<bool> {
    let zeros = vec![0u8; ZERO_CHUNK];
    // Read into a buffer of its own, not a view (`Segment::read`): this range is rewritten.
    let mut current = vec![0u8; ZERO_CHUNK];
    let mut at = position;
    let mut wrote = false;
    while at < file.file_size {
        let len = ZERO_CHUNK.min((file.file_size - at) as usize);
        let current = &mut current[..len];
        file.segment.read_at(at, current)?;
        if current.iter().any(|&b| b != 0) {
            file.segment.write_at(at, &zeros[..len])?;
            wrote = true;
        }
        at += len as u64;
    }
    Ok(wrote)
}

#[cfg(test)]
mod tests {
    use std::ops::Range;
    use std::sync::Mutex;

    use futures::future::BoxFuture;

    use super::*;
    use crate::store::test_disk::MemoryDisk;

    /// A segment that keeps nothing but the prefault requests it gets.
    #[derive(Debug, Default)]
    struct PrefaultLog {
        requests: Mutex<Vec<Range<u64>>>,
    }

    impl Segment for PrefaultLog {
        fn path(&self) -> &str {
            "commitlog/00000000000000000000"
        }
        fn size(&self) -> u64 {
            SEGMENT
        }
        fn write_at(&self, _offset: u64, _data: &[u8]) -> io::Result<()> {
            Ok(())
        }
        fn read_at(&self, _offset: u64, _buf: &mut [u8]) -> io::Result<()> {
            Ok(())
        }
        fn sync(&self, _range: Range<u64>) -> BoxFuture<'static, io::Result<()>> {
            Box::pin(async { Ok(()) })
        }
        fn prefault(&self, range: Range<u64>) {
            self.requests.lock().unwrap().push(range);
        }
    }

    const SEGMENT: u64 = 2 * PREFAULT_CHUNK + PREFAULT_CHUNK / 2;

    #[test]
    fn appends_ask_for_the_chunk_ahead_once_per_chunk_entered() {
        let log = Arc::new(PrefaultLog::default());
        let file = MappedFile::new(0, log.clone(), SEGMENT);
        let record = vec![0u8; 1000];
        while file.free_bytes() >= record.len() as u64 {
            file.append(&record, 1).unwrap();
        }
        let chunk = PREFAULT_CHUNK;
        assert_eq!(
            *log.requests.lock().unwrap(),
            [chunk..2 * chunk, 2 * chunk..SEGMENT],
            "the first append asks for the second chunk, entering it asks for the (short) \
             last one, and entering the last asks for nothing past the end"
        );
    }

    /// Creates two segments of 4 KiB in a queue and says which were left random-access.
    fn random_access_after_a_roll(queue: MappedFileQueue, disk: &MemoryDisk) -> [bool; 2] {
        let first = queue.last_mapped_file_or_create(0).unwrap();
        first.append(&[1u8; 4096], 1).unwrap();
        let second = queue.last_mapped_file_or_create(0).unwrap();
        [first.path(), second.path()].map(|path| disk.is_random_access(path))
    }

    #[test]
    fn a_queue_preparing_the_next_segment_asks_for_it_at_each_creation() {
        let (disk, shared) = MemoryDisk::shared();
        let queue = MappedFileQueue::new(shared, "commitlog", 4096).prepare_next_segment();
        let first = queue.last_mapped_file_or_create(0).unwrap();
        first.append(&[1u8; 4096], 1).unwrap();
        queue.last_mapped_file_or_create(0).unwrap();
        let next = |offset: u64| (format!("commitlog/{offset:020}"), 4096, PREFAULT_CHUNK);
        assert_eq!(disk.prepare_requests(), [next(4096), next(8192)]);
        queue.prepare_after_last();
        assert_eq!(
            disk.prepare_requests().last(),
            Some(&next(8192)),
            "after recovery, the segment after the newest"
        );

        let (disk, shared) = MemoryDisk::shared();
        let plain = MappedFileQueue::new(shared, "consumequeue/T/0", 4096);
        plain.last_mapped_file_or_create(0).unwrap();
        plain.prepare_after_last();
        assert_eq!(disk.prepare_requests(), []);
    }

    #[test]
    fn a_queue_random_while_appended_advises_only_the_segment_being_appended() {
        let (disk, shared) = MemoryDisk::shared();
        let queue = MappedFileQueue::new(shared, "consumequeue/T/0", 4096);
        assert_eq!(
            random_access_after_a_roll(queue.random_access_while_appended(), &disk),
            [false, true],
            "the full segment reads ahead again, the new one does not"
        );
        let (disk, shared) = MemoryDisk::shared();
        let plain = MappedFileQueue::new(shared, "commitlog", 4096);
        assert_eq!(random_access_after_a_roll(plain, &disk), [false, false]);
    }
}
