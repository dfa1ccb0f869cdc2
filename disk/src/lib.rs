//! Production binding of the engine's [`Disk`] trait to memory-mapped files.
//!
//! [`MmapDisk`] is rooted at a directory; every path the store passes is relative to it and
//! uses `/` separators. Segments (commit log, consume queue and index files) are fixed-size
//! files mapped with `memmap2`; small metadata files (`checkpoint`, `config/*.json`) are
//! replaced atomically with the write-temporary / fsync / rename / fsync-directory dance.
//!
//! How the crash contract of [`ferrocket_engine::disk`] is met:
//!
//! - `write_at` copies into the shared mapping, so it is visible to every reader at once
//!   and reaches the device only when the kernel writes the page back or when a
//!   [`Segment::sync`] runs `msync(MS_SYNC)` over the page-aligned range.
//! - Space is reserved with `fallocate` when a segment is opened, so a full device shows as
//!   `StorageFull` from [`Disk::open_segment`] and never as a `SIGBUS` on a later write into
//!   the mapping. Only where the file system does not support `fallocate` does the file
//!   fall back to a sparse `set_len`, which loses that guarantee.
//! - `fallocate` sets the file's size in one step, so a file left behind by a crash during
//!   creation has either its full size or length zero. A zero-length file is therefore
//!   treated as an interrupted creation and completed, never as a size mismatch.
//! - The first successful sync of every segment handle also fsyncs each directory from the
//!   segment's parent up to the disk root, which makes the segment's existence durable
//!   however it (and its parent directories) came to be created.
//! - `prefault` asks the kernel to allocate and map the pages ahead of the appender
//!   (`MADV_POPULATE_WRITE`), so appends copy into ready pages instead of faulting; it changes
//!   no byte, so it has no bearing on what a crash leaves.
//! - `prepare_segment` creates a segment (and prefaults its first pages) on the blocking pool
//!   ahead of need; the `open_segment` that later asks for it takes that mapping, or waits for
//!   the preparation if it is still running, so one path is never created twice at once. A
//!   removal of the path discards the preparation first, so no preparation outlives the file.
//!   Outside a runtime (in the tokio build) it does nothing, and the open creates the
//!   segment; under madsim it runs inline.
//! - Blocking calls (`msync`, `fsync`, prefaulting) run on tokio's blocking pool so they never stall an
//!   async worker; under `--cfg madsim` (and outside any runtime) they run inline.
//!
//! This crate is the only place in the project with `unsafe` code: copying to and from the
//! mapping, and views of it. Bounds are checked before every access, and the store never
//! writes a range that another task reads or views, except appending past what readers may
//! see.

// The workspace denies `unsafe_code`; this crate exists to hold the one piece of the project
// that needs it (raw copies into memory-mapped segments). Each block carries its SAFETY
// argument.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use ferrocket_engine::disk::{
    DirEntry, Disk, DiskSpace, PAGE_SIZE, Segment, SharedDisk, normalize_path,
};
use futures::FutureExt;
use futures::future::BoxFuture;
use memmap2::{MmapOptions, MmapRaw};
use rustix::fs::FallocateFlags;
use rustix::io::Errno;

/// Suffix of the temporary file that [`Disk::write_file_atomic`] renames into place.
pub const TMP_SUFFIX: &str = ".tmp";

/// The production [`Disk`]: a directory of memory-mapped segments and small files.
#[derive(Debug, Clone)]
pub struct MmapDisk {
    root: PathBuf,
    /// Segments being created ahead of need ([`Disk::prepare_segment`]), by relative path.
    preparations: Arc<Mutex<HashMap<String, Arc<Preparation>>>>,
}

/// A segment being created ahead of need: set once, by the blocking task that creates it, to
/// the segment or to `None` when the creation failed (or the task never ran).
#[derive(Debug, Default)]
struct Preparation {
    segment: OnceLock<Option<MmapSegment>>,
}

/// Settles a [`Preparation`] as failed if it is dropped unsettled: a panic in the creating
/// task, or a task dropped unrun by a runtime shutting down, must not leave a waiter waiting
/// forever.
struct SettleOnDrop(Arc<Preparation>);

impl Drop for SettleOnDrop {
    fn drop(&mut self) {
        let _ = self.0.segment.set(None);
    }
}

impl MmapDisk {
    /// Opens (creating it and its parents if needed) the directory `root` as a disk.
    pub fn open(root: impl AsRef<Path>) -> io::Result<Self> {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(&root)?;
        if !root.is_dir() {
            return Err(io::Error::new(
                ErrorKind::NotADirectory,
                format!("disk root {} is not a directory", root.display()),
            ));
        }
        Ok(Self {
            root,
            preparations: Arc::default(),
        })
    }

    /// Opens `root` as a disk shared by every component of the process.
    pub fn shared(root: impl AsRef<Path>) -> io::Result<SharedDisk> {
        Ok(Arc::new(Self::open(root)?))
    }

    /// The directory every relative path is resolved against.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The absolute location of a relative disk path, after validating it.
    fn resolve(&self, path: &str) -> io::Result<PathBuf> {
        let path = normalize_path(path)?;
        if path.is_empty() {
            Ok(self.root.clone())
        } else {
            Ok(self.root.join(path))
        }
    }

    /// Like [`resolve`](Self::resolve) but refuses the root itself, for file operations.
    fn resolve_file(&self, path: &str) -> io::Result<PathBuf> {
        if normalize_path(path)?.is_empty() {
            return Err(invalid_input(format!(
                "{path:?} names the disk root, not a file"
            )));
        }
        self.resolve(path)
    }

    /// Every directory from the parent of `path` up to (and including) the disk root.
    fn ancestors_to_root(&self, path: &Path) -> Vec<PathBuf> {
        path.ancestors()
            .skip(1)
            .take_while(|dir| dir.starts_with(&self.root))
            .map(Path::to_path_buf)
            .collect()
    }
}

impl MmapDisk {
    /// [`Disk::open_segment`], as the concrete segment type.
    fn open_mmap_segment(&self, path: &str, size: u64) -> io::Result<MmapSegment> {
        let rel = normalize_path(path)?;
        let full = self.resolve_file(path)?;
        if size == 0 {
            return Err(invalid_input(format!("segment {rel} must not be empty")));
        }
        let len = usize::try_from(size)
            .ok()
            .filter(|len| isize::try_from(*len).is_ok())
            .ok_or_else(|| invalid_input(format!("segment size {size} does not fit in memory")))?;
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&full)?;
        let existing_size = file.metadata()?.len();
        if existing_size != 0 && existing_size != size {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                format!("segment {rel} has {existing_size} bytes, expected {size}"),
            ));
        }
        if let Err(err) = reserve(&file, existing_size, size) {
            if existing_size == 0 {
                // Leave no half-created segment behind: the next attempt starts afresh.
                let _ = fs::remove_file(&full);
            }
            return Err(err);
        }
        let map = MmapOptions::new().len(len).map_raw(&file)?;
        let pending_dirs = self.ancestors_to_root(&full);
        Ok(MmapSegment {
            inner: Arc::new(SegmentInner {
                path: rel,
                size,
                map,
                pending_dirs: Mutex::new(pending_dirs),
            }),
        })
    }

    fn lock_preparations(&self) -> MutexGuard<'_, HashMap<String, Arc<Preparation>>> {
        self.preparations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the preparation of `rel` (a normalized path), waiting for it if it still runs:
    /// the prepared segment, or `None` when there was none or it failed.
    fn take_prepared(&self, rel: &str) -> Option<MmapSegment> {
        let preparation = self.lock_preparations().remove(rel)?;
        preparation.segment.wait().clone()
    }

    /// Discards (after waiting for) every preparation of `rel_dir` or a path below it.
    fn discard_prepared_under(&self, rel_dir: &str) {
        let discarded: Vec<Arc<Preparation>> = {
            let mut preparations = self.lock_preparations();
            let below = |path: &str| {
                path == rel_dir
                    || path
                        .strip_prefix(rel_dir)
                        .is_some_and(|rest| rest.starts_with('/'))
            };
            let paths: Vec<String> = preparations
                .keys()
                .filter(|path| below(path))
                .cloned()
                .collect();
            paths
                .iter()
                .filter_map(|path| preparations.remove(path))
                .collect()
        };
        for preparation in discarded {
            preparation.segment.wait();
        }
    }

    /// The work of [`Disk::prepare_segment`], on a blocking thread.
    fn create_prepared(&self, rel: &str, size: u64, warm: u64) -> Option<MmapSegment> {
        let segment = self.open_mmap_segment(rel, size).ok()?;
        #[cfg(target_os = "linux")]
        if warm > 0 {
            // `min(size)`, and `size` fits in `usize` (checked at open). Advisory, as in
            // `prefault`: a refusal leaves the pages to the first writes.
            let _ = segment.inner.populate_for_write(0, warm.min(size) as usize);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = warm;
        Some(segment)
    }
}

impl Disk for MmapDisk {
    fn open_segment(&self, path: &str, size: u64) -> io::Result<Arc<dyn Segment>> {
        let prepared = self
            .take_prepared(&normalize_path(path)?)
            .filter(|segment| segment.inner.size == size);
        match prepared {
            Some(segment) => Ok(Arc::new(segment)),
            None => Ok(Arc::new(self.open_mmap_segment(path, size)?)),
        }
    }

    /// Creates the segment on tokio's blocking pool (inline under madsim, which has none).
    /// Does nothing for an invalid path, for a path already being prepared, or, in the tokio
    /// build, outside a runtime.
    fn prepare_segment(&self, path: &str, size: u64, warm: u64) {
        #[cfg(not(madsim))]
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(rel) = normalize_path(path) else {
            return;
        };
        let preparation = Arc::new(Preparation::default());
        {
            let mut preparations = self.lock_preparations();
            if preparations.contains_key(&rel) {
                return;
            }
            preparations.insert(rel.clone(), Arc::clone(&preparation));
        }
        let disk = self.clone();
        // Made before the task runs, so that a task dropped unrun settles it too.
        let settle = SettleOnDrop(preparation);
        let prepare = move || {
            let settle = settle;
            let _ = settle.0.segment.set(disk.create_prepared(&rel, size, warm));
        };
        #[cfg(not(madsim))]
        drop(handle.spawn_blocking(prepare));
        #[cfg(madsim)]
        prepare();
    }

    fn list_dir(&self, dir: &str) -> io::Result<Vec<DirEntry>> {
        let full = self.resolve(dir)?;
        let reader = match fs::read_dir(&full) {
            Ok(reader) => reader,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let mut entries = Vec::new();
        for entry in reader {
            let entry = entry?;
            let name = entry.file_name().into_string().map_err(|name| {
                io::Error::new(
                    ErrorKind::InvalidData,
                    format!("non-UTF-8 file name {name:?} in {}", full.display()),
                )
            })?;
            let is_dir = entry.file_type()?.is_dir();
            entries.push(DirEntry { name, is_dir });
        }
        entries.sort();
        Ok(entries)
    }

    fn create_dir_all(&self, dir: &str) -> io::Result<()> {
        fs::create_dir_all(self.resolve(dir)?)
    }

    fn exists(&self, path: &str) -> io::Result<bool> {
        self.resolve(path)?.try_exists()
    }

    fn read_file(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.resolve_file(path)?) {
            Ok(contents) => Ok(Some(contents)),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    fn write_file_atomic(&self, path: &str, contents: &[u8]) -> BoxFuture<'_, io::Result<()>> {
        let resolved = self.resolve_file(path);
        let contents = contents.to_vec();
        async move {
            let full = resolved?;
            let dirs = self.ancestors_to_root(&full);
            blocking(move || write_atomic_blocking(&full, &contents, &dirs)).await
        }
        .boxed()
    }

    fn remove_file(&self, path: &str) -> io::Result<()> {
        let full = self.resolve_file(path)?;
        self.discard_prepared_under(&normalize_path(path)?);
        match fs::remove_file(full) {
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn remove_dir_all(&self, dir: &str) -> io::Result<()> {
        let rel = normalize_path(dir)?;
        if rel.is_empty() {
            return Err(invalid_input("refusing to remove the disk root"));
        }
        let full = self.resolve(dir)?;
        self.discard_prepared_under(&rel);
        match fs::remove_dir_all(full) {
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn sync_dir(&self, dir: &str) -> BoxFuture<'_, io::Result<()>> {
        let resolved = self.resolve(dir);
        async move {
            let full = resolved?;
            let root = self.root.clone();
            blocking(move || {
                // A missing directory has no entries to make durable, but its own removal is
                // an entry of an ancestor: sync the nearest one that exists.
                let mut existing = root.as_path();
                for dir in full.ancestors().take_while(|dir| dir.starts_with(&root)) {
                    if dir.try_exists()? {
                        existing = dir;
                        break;
                    }
                }
                if !existing.is_dir() {
                    return Err(io::Error::new(
                        ErrorKind::NotADirectory,
                        format!("{} is not a directory", existing.display()),
                    ));
                }
                fsync_dir(existing)
            })
            .await
        }
        .boxed()
    }

    fn space(&self) -> io::Result<DiskSpace> {
        let stat = rustix::fs::statvfs(&self.root)?;
        let block = stat.f_frsize.max(1);
        Ok(DiskSpace {
            total: stat.f_blocks.saturating_mul(block),
            available: stat.f_bavail.saturating_mul(block),
        })
    }
}

/// A segment file mapped into memory.
#[derive(Debug, Clone)]
pub struct MmapSegment {
    inner: Arc<SegmentInner>,
}

/// The last handle of a segment is dropped on the blocking pool, its pages released first a
/// chunk at a time (`SegmentInner::release_pages`). Unmapping a fully written segment (a
/// deleted commit-log segment: a gigabyte) clears its page-table entries while holding the
/// process's address-space lock for writing, which stops every page fault of the appender
/// for the whole time, whichever thread unmaps: about a second per pass of the retention
/// service on a nearly full disk.
impl Drop for MmapSegment {
    fn drop(&mut self) {
        #[cfg(all(target_os = "linux", not(madsim)))]
        if Arc::strong_count(&self.inner) == 1
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let inner = Arc::clone(&self.inner);
            drop(handle.spawn_blocking(move || {
                inner.release_pages();
                drop(inner);
            }));
        }
    }
}

/// The bytes of a segment whose pages `SegmentInner::release_pages` releases per call.
#[cfg(all(target_os = "linux", not(madsim)))]
const RELEASE_CHUNK: usize = 16 * 1024 * 1024;

/// Reads shorter than this are copied out of the mapping rather than viewed in it.
const VIEW_MIN_LEN: usize = 256;

/// `len` bytes of a segment's mapping from `start`, checked to lie within it; the owner of a
/// [`MmapSegment::read`] view. It holds a segment handle, so the last view of a deleted
/// segment releases it as the last handle does (off the async workers).
struct MappedRange {
    segment: MmapSegment,
    start: usize,
    len: usize,
}

impl AsRef<[u8]> for MappedRange {
    fn as_ref(&self) -> &[u8] {
        self.segment.inner.mapped(self.start, self.len)
    }
}

#[derive(Debug)]
struct SegmentInner {
    path: String,
    size: u64,
    map: MmapRaw,
    /// Directories still to fsync so that the segment's existence is durable; emptied by the
    /// first successful sync.
    pending_dirs: Mutex<Vec<PathBuf>>,
}

impl SegmentInner {
    /// The mapped bytes of `start..start + len`, a range [`checked_range`](Self::checked_range)
    /// returned.
    fn mapped(&self, start: usize, len: usize) -> &[u8] {
        // SAFETY: `start + len <= size` (checked by `checked_range`), and the mapping is
        // `size` bytes long and lives as long as `self`, which the slice borrows. The store
        // reads only bytes it has finished writing and does not write them again while they
        // are read or viewed (see `MmapSegment::read`), so they do not change under the slice.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(start), len) }
    }

    /// The mapping offset of `offset..offset + len` if it lies within the segment.
    fn checked_range(&self, offset: u64, len: usize) -> io::Result<usize> {
        let end = u64::try_from(len)
            .ok()
            .and_then(|len| offset.checked_add(len));
        match end {
            // `size` fits in `usize` (checked at open), so the cast cannot truncate.
            Some(end) if end <= self.size => Ok(offset as usize),
            _ => Err(invalid_input(format!(
                "{len} bytes at offset {offset} run past the end of segment {} ({} bytes)",
                self.path, self.size
            ))),
        }
    }

    /// Allocates and maps writable the pages of `start..start + len` (within the mapping),
    /// leaving their bytes as they are.
    #[cfg(target_os = "linux")]
    fn populate_for_write(&self, start: usize, len: usize) -> io::Result<()> {
        self.map
            .advise_range(memmap2::Advice::PopulateWrite, start, len)
    }

    /// Takes the segment's pages out of the process's page tables, [`RELEASE_CHUNK`] bytes per
    /// call (`MADV_DONTNEED`), so the unmap that follows has almost nothing to clear. Each call
    /// holds the address-space lock only for reading, so page faults elsewhere go on. The
    /// contents stay in the page cache (dirty pages included) as long as the file does.
    #[cfg(all(target_os = "linux", not(madsim)))]
    fn release_pages(&self) {
        let size = usize::try_from(self.size).unwrap_or(usize::MAX);
        let mut start = 0;
        while start < size {
            let len = RELEASE_CHUNK.min(size - start);
            // SAFETY: called on the last handle of the segment, so nothing reads or writes the
            // mapping any more; and for a shared file mapping `MADV_DONTNEED` only drops
            // page-table entries: a later access would fault the same bytes back in from the
            // page cache.
            let released = unsafe {
                self.map
                    .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len)
            };
            // Advisory: what is not released is cleared by the unmap.
            if released.is_err() {
                return;
            }
            start += len;
        }
    }

    fn sync_blocking(&self, range: Range<u64>) -> io::Result<()> {
        if !range.is_empty() {
            // Whole pages, as the kernel writes them back; memmap2 further aligns the start
            // to the OS page size.
            let start = range.start - range.start % PAGE_SIZE;
            let end = range.end.div_ceil(PAGE_SIZE).saturating_mul(PAGE_SIZE);
            let end = end.min(self.size);
            // Both bounds are at most `size`, which fits in `usize`.
            self.map
                .flush_range(start as usize, (end - start) as usize)?;
        }
        let mut pending = self
            .pending_dirs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !pending.is_empty() {
            for dir in pending.iter() {
                match fsync_dir(dir) {
                    // The segment's directory was removed while the handle stayed open: its
                    // existence can no longer be made durable, and the ancestors that remain
                    // (fsynced next) hold the removal.
                    Err(err) if err.kind() == ErrorKind::NotFound => {}
                    other => other?,
                }
            }
            pending.clear();
        }
        Ok(())
    }
}

impl Segment for MmapSegment {
    fn path(&self) -> &str {
        &self.inner.path
    }

    fn size(&self) -> u64 {
        self.inner.size
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let start = self.inner.checked_range(offset, data.len())?;
        // SAFETY: `checked_range` proved `start + data.len() <= size`, and the mapping is
        // `size` bytes long and lives as long as `self.inner`, so the destination is valid
        // for writes. `data` is a Rust slice and cannot alias the mapping's raw memory in a
        // way the compiler reasons about. The store never writes a range another task reads
        // concurrently (it only appends past what readers may see), so there is no data race.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.inner.map.as_mut_ptr().add(start),
                data.len(),
            );
        }
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = self.inner.checked_range(offset, buf.len())?;
        buf.copy_from_slice(self.inner.mapped(start, buf.len()));
        Ok(())
    }

    /// A view of the mapping, not a copy, from 256 bytes up (`VIEW_MIN_LEN`; a short read is
    /// copied: the view's shared owner costs more than a few bytes of copying). The reput
    /// service reads every appended byte this way, and pulls every message. The view keeps
    /// the segment mapped for as long as it lives; the store reads only what it has finished
    /// writing, and never writes that range again while the broker runs (it appends past it;
    /// only recovery, before any reader, rewrites), so the viewed bytes do not change.
    fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let start = self.inner.checked_range(offset, len)?;
        if len < VIEW_MIN_LEN {
            return Ok(Bytes::copy_from_slice(self.inner.mapped(start, len)));
        }
        Ok(Bytes::from_owner(MappedRange {
            segment: self.clone(),
            start,
            len,
        }))
    }

    fn sync(&self, range: Range<u64>) -> BoxFuture<'static, io::Result<()>> {
        let inner = Arc::clone(&self.inner);
        async move {
            if range.start > range.end || range.end > inner.size {
                return Err(invalid_input(format!(
                    "sync range {range:?} is outside segment {} ({} bytes)",
                    inner.path, inner.size
                )));
            }
            blocking(move || inner.sync_blocking(range)).await
        }
        .boxed()
    }

    /// `madvise(MADV_POPULATE_WRITE)` over `range` on the blocking pool: the kernel allocates
    /// (zeroes) the page-cache pages and maps them writable, the work a first write into each
    /// page would otherwise do in a page fault on the appending task. The bytes are not
    /// changed. Skipped outside a runtime, under madsim, and where the kernel (before 5.14)
    /// does not know the advice.
    fn prefault(&self, range: Range<u64>) {
        #[cfg(all(target_os = "linux", not(madsim)))]
        {
            let end = range.end.min(self.inner.size);
            if range.start < end
                && let Ok(handle) = tokio::runtime::Handle::try_current()
            {
                let inner = Arc::clone(&self.inner);
                // Both bounds are at most `size`, which fits in `usize`.
                let (start, len) = (range.start as usize, (end - range.start) as usize);
                // Advisory: a failure (an old kernel, memory pressure) leaves the pages to be
                // faulted in by the writes themselves.
                drop(handle.spawn_blocking(move || inner.populate_for_write(start, len)));
            }
        }
        #[cfg(not(all(target_os = "linux", not(madsim))))]
        let _ = range;
    }

    /// `madvise(MADV_RANDOM)` over the whole mapping (no read-around on its page faults), or
    /// `MADV_NORMAL` back.
    fn set_random_access(&self, random: bool) {
        let advice = if random {
            memmap2::Advice::Random
        } else {
            memmap2::Advice::Normal
        };
        // Advisory: a kernel that refuses it leaves the read-ahead as it was.
        let _ = self.inner.map.advise(advice);
    }
}

/// Reserves `size` bytes for `file`, whose current length is `existing_size`.
fn reserve(file: &File, existing_size: u64, size: u64) -> io::Result<()> {
    match rustix::fs::fallocate(file, FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        Err(Errno::OPNOTSUPP | Errno::NOSYS) => {
            // The file system cannot reserve space: fall back to a sparse file. A full device
            // may then show as SIGBUS on a write into the mapping.
            if existing_size != size {
                file.set_len(size)?;
            }
            Ok(())
        }
        Err(errno) => Err(io::Error::from(errno)),
    }
}

/// Write `<path>.tmp`, fsync it, rename it over `path`, fsync the directories above it.
fn write_atomic_blocking(path: &Path, contents: &[u8], dirs: &[PathBuf]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(TMP_SUFFIX);
    let tmp = PathBuf::from(tmp_name);
    if let Err(err) = write_and_sync(&tmp, contents) {
        let _ = fs::remove_file(&tmp);
        return Err(err);
    }
    fs::rename(&tmp, path)?;
    for dir in dirs {
        fsync_dir(dir)?;
    }
    Ok(())
}

fn write_and_sync(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Runs a blocking file-system call off the async workers.
async fn blocking<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    #[cfg(not(madsim))]
    {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(f)
                .await
                .map_err(|err| io::Error::other(format!("blocking disk task failed: {err}")))?,
            Err(_) => f(),
        }
    }
    // madsim has no blocking pool; the simulated node runs the call inline.
    #[cfg(madsim)]
    {
        f()
    }
}

fn invalid_input(message: impl Into<String>) -> io::Error {
    io::Error::new(ErrorKind::InvalidInput, message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_accepts_relative_paths_and_rejects_escapes() {
        assert_eq!(normalize_path("").unwrap(), "");
        assert_eq!(
            normalize_path("store/commitlog/").unwrap(),
            "store/commitlog"
        );
        for bad in ["/etc", "a/../b", "./a", "a//b", "a/\0"] {
            assert_eq!(
                normalize_path(bad).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn zero_length_file_is_completed_as_an_interrupted_creation() {
        let dir = tempfile::tempdir().unwrap();
        let disk = MmapDisk::open(dir.path()).unwrap();
        fs::create_dir_all(dir.path().join("cq")).unwrap();
        File::create(dir.path().join("cq/0")).unwrap();
        let segment = disk.open_segment("cq/0", 8192).unwrap();
        assert_eq!(fs::metadata(dir.path().join("cq/0")).unwrap().len(), 8192);
        let mut buf = [1u8; 16];
        segment.read_at(8176, &mut buf).unwrap();
        assert_eq!(buf, [0u8; 16]);
    }

    #[test]
    fn ancestors_stop_at_the_root() {
        let disk = MmapDisk {
            root: PathBuf::from("/data/store"),
            preparations: Arc::default(),
        };
        let dirs = disk.ancestors_to_root(Path::new("/data/store/consumequeue/T/0/000"));
        assert_eq!(
            dirs,
            [
                "/data/store/consumequeue/T/0",
                "/data/store/consumequeue/T",
                "/data/store/consumequeue",
                "/data/store",
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn open_segment_reserves_the_whole_file() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let disk = MmapDisk::open(dir.path()).unwrap();
        let size = 1 << 20;
        disk.open_segment("commitlog/00000000000000000000", size)
            .unwrap();
        let meta = fs::metadata(dir.path().join("commitlog/00000000000000000000")).unwrap();
        assert_eq!(meta.len(), size);
        // `blocks` counts 512-byte units; a sparse file would have (almost) none.
        assert!(meta.blocks() * 512 >= size, "{} blocks", meta.blocks());
    }

    /// How many pages of `segment` in `range` are in the page cache (`mincore`).
    fn resident_pages(segment: &MmapSegment, range: Range<usize>) -> usize {
        let page = PAGE_SIZE as usize;
        let mut residency = vec![0u8; range.len().div_ceil(page)];
        // SAFETY: `range` lies inside the mapping and starts on a page boundary, and
        // `residency` has one byte per page of it, as mincore(2) requires.
        let rc = unsafe {
            libc::mincore(
                segment.inner.map.as_mut_ptr().add(range.start).cast(),
                range.len(),
                residency.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0, "mincore: {}", io::Error::last_os_error());
        residency.iter().filter(|&&state| state & 1 == 1).count()
    }

    #[test]
    fn a_write_into_a_random_access_segment_brings_in_that_page_only() {
        let dir = tempfile::tempdir().unwrap();
        let disk = MmapDisk::open(dir.path()).unwrap();
        let size: u64 = 64 << 20;
        let plain = disk.open_mmap_segment("index/plain", size).unwrap();
        let random = disk.open_mmap_segment("index/random", size).unwrap();
        random.set_random_access(true);
        let middle = (size / 2) as usize;
        let window = middle - (16 << 20)..middle + (16 << 20);
        for segment in [&plain, &random] {
            assert_eq!(resident_pages(segment, window.clone()), 0);
            segment.write_at(middle as u64, b"x").unwrap();
        }
        // The plain segment's fault reads around it as far as the device's read-ahead
        // allows (megabytes on some machines, nothing on others); the advised one's never.
        let around = resident_pages(&plain, window.clone());
        assert!(around >= 1, "{around}");
        assert_eq!(
            resident_pages(&random, window),
            1,
            "the plain segment's fault brought in {around} pages"
        );
        let mut byte = [0u8];
        random.read_at(middle as u64, &mut byte).unwrap();
        assert_eq!(&byte, b"x");
    }

    #[tokio::test]
    async fn a_prepared_segment_is_taken_once_with_its_first_pages_resident() {
        let dir = tempfile::tempdir().unwrap();
        let disk = MmapDisk::open(dir.path()).unwrap();
        let (size, warm) = (16u64 << 20, 1usize << 20);
        let plain = disk.open_mmap_segment("commitlog/plain", size).unwrap();
        assert_eq!(resident_pages(&plain, 0..warm), 0);

        disk.prepare_segment("commitlog/prepared", size, warm as u64);
        let prepared = disk
            .take_prepared("commitlog/prepared")
            .expect("the preparation succeeds");
        assert_eq!(
            resident_pages(&prepared, 0..warm),
            warm / PAGE_SIZE as usize,
            "the first pages are in memory before any write"
        );
        assert!(
            disk.take_prepared("commitlog/prepared").is_none(),
            "taken once"
        );
        assert!(disk.lock_preparations().is_empty());
    }

    #[tokio::test]
    async fn removing_a_prepared_path_discards_its_preparation_before_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let disk = MmapDisk::open(dir.path()).unwrap();
        disk.prepare_segment("commitlog/00000000000000000000", 1 << 20, 4096);
        disk.prepare_segment("cq/T/0/00000000000000000000", 1 << 20, 4096);
        disk.prepare_segment("cq/T/1/00000000000000000000", 1 << 20, 4096);
        disk.remove_file("commitlog/00000000000000000000").unwrap();
        disk.remove_dir_all("cq/T").unwrap();
        assert!(
            disk.lock_preparations().is_empty(),
            "no preparation outlives its removal"
        );
        assert!(!dir.path().join("commitlog/00000000000000000000").exists());
        assert!(!dir.path().join("cq/T").exists());
    }

    #[test]
    fn a_preparation_dropped_unsettled_settles_as_failed() {
        let preparation = Arc::new(Preparation::default());
        drop(SettleOnDrop(Arc::clone(&preparation)));
        assert!(
            preparation.segment.wait().is_none(),
            "a waiter is not left waiting"
        );
    }

    #[test]
    #[cfg(not(madsim))]
    fn preparing_outside_a_runtime_does_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let disk = MmapDisk::open(dir.path()).unwrap();
        disk.prepare_segment("commitlog/00000000000000000000", 1 << 20, 4096);
        assert!(disk.lock_preparations().is_empty());
        assert!(!dir.path().join("commitlog").exists());
    }

    #[test]
    fn populating_pages_for_writes_changes_no_byte() {
        let dir = tempfile::tempdir().unwrap();
        let disk = MmapDisk::open(dir.path()).unwrap();
        let size = 1 << 20;
        let segment = disk
            .open_mmap_segment("commitlog/00000000000000000000", size)
            .unwrap();
        segment.write_at(4000, b"written before").unwrap();
        segment
            .inner
            .populate_for_write(0, size as usize)
            .expect("the kernel populates a shared file mapping for writes");
        let mut buf = vec![1u8; size as usize];
        segment.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf[4000..4014], b"written before");
        buf[4000..4014].fill(0);
        assert!(buf.iter().all(|&byte| byte == 0));
        // The trait's entry point clips the range and returns at once, in a runtime or not.
        segment.prefault(size - 4096..size + 4096);
        #[cfg(not(madsim))]
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async { segment.prefault(0..size) });
        segment.write_at(size - 5, b"tail!").unwrap();
        let mut tail = [0u8; 5];
        segment.read_at(size - 5, &mut tail).unwrap();
        assert_eq!(&tail, b"tail!");
    }

    /// The last handle dropped inside a runtime releases the pages on the blocking pool before
    /// the unmap: bytes written and never synced, in the first chunk, across the chunk border
    /// and in the partial last chunk, are all in the file afterwards.
    #[cfg(all(target_os = "linux", not(madsim)))]
    #[test]
    fn a_segment_released_on_the_blocking_pool_keeps_its_unsynced_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let disk = MmapDisk::open(dir.path()).unwrap();
        let size = RELEASE_CHUNK as u64 + 3 * 4096;
        let writes: [(u64, &[u8]); 3] = [
            (10, b"first chunk"),
            (RELEASE_CHUNK as u64 - 4, b"across the border"),
            (size - 9, b"last page"),
        ];
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let segment = disk.open_segment("commitlog/000", size).unwrap();
            for (offset, bytes) in writes {
                segment.write_at(offset, bytes).unwrap();
            }
            drop(segment);
        });
        // Dropping the runtime waits for its blocking pool, where the release ran.
        drop(runtime);
        let file = std::fs::read(dir.path().join("commitlog/000")).unwrap();
        assert_eq!(file.len() as u64, size);
        for (offset, bytes) in writes {
            let offset = offset as usize;
            assert_eq!(&file[offset..offset + bytes.len()], bytes);
        }
    }

    #[test]
    fn a_read_views_the_mapping_and_outlives_the_segment_and_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let disk = MmapDisk::open(dir.path()).unwrap();
        let segment = disk.open_segment("commitlog/000", 8192).unwrap();
        let record: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
        segment.write_at(4000, &record).unwrap();
        segment.write_at(10, b"short").unwrap();

        // Two views of one range are the same memory; two copies are not.
        let view = segment.read(4000, record.len()).unwrap();
        let again = segment.read(4000, record.len()).unwrap();
        assert_eq!(view.as_ptr(), again.as_ptr(), "a long read is a view");
        let short = segment.read(10, 5).unwrap();
        let short_again = segment.read(10, 5).unwrap();
        assert_ne!(
            short.as_ptr(),
            short_again.as_ptr(),
            "a short read is a copy"
        );
        assert_eq!(&short[..], b"short");

        // The view holds the mapping: the segment handle and its file may go first.
        drop(segment);
        disk.remove_file("commitlog/000").unwrap();
        assert!(!dir.path().join("commitlog/000").exists());
        assert_eq!(&view[..], &record[..]);
        assert_eq!(&view.slice(100..200)[..], &record[100..200]);
    }

    #[test]
    fn write_file_atomic_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let disk = MmapDisk::open(dir.path()).unwrap();
        futures::executor::block_on(disk.write_file_atomic("config/topics.json", b"{}")).unwrap();
        let names: Vec<String> = disk
            .list_dir("config")
            .unwrap()
            .into_iter()
            .map(|entry| entry.name)
            .collect();
        assert_eq!(names, ["topics.json"]);
    }

    #[test]
    fn sync_of_a_segment_whose_directory_was_removed_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let disk = MmapDisk::open(dir.path()).unwrap();
        let segment = disk.open_segment("consumequeue/T/0/000", 4096).unwrap();
        disk.remove_dir_all("consumequeue/T").unwrap();
        segment.write_at(0, b"still mapped").unwrap();
        futures::executor::block_on(segment.sync(0..4096)).unwrap();
        assert_eq!(&segment.read(0, 12).unwrap()[..], b"still mapped");
    }

    #[test]
    fn written_bytes_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let disk = MmapDisk::open(dir.path()).unwrap();
        let segment = disk
            .open_segment("commitlog/00000000000000000000", 4096)
            .unwrap();
        segment.write_at(100, b"hello").unwrap();
        futures::executor::block_on(segment.sync(0..4096)).unwrap();
        let on_disk = fs::read(dir.path().join("commitlog/00000000000000000000")).unwrap();
        assert_eq!(&on_disk[100..105], b"hello");
    }
}
