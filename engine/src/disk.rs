//! The Disk trait: segment files and small metadata files with explicit durability.
//!
//! The store (commit log, consume queues, index) keeps its data in fixed-size *segments*;
//! metadata (`checkpoint`, `config/*.json`, `abort`) lives in small files replaced
//! atomically. Production binds this trait to memory-mapped files (`ferrocket-disk`,
//! `MmapDisk`); the simulator to an in-memory disk with a crash model (`ferrocket-sim`,
//! `SimDisk`). Paths are relative to the disk's root and use `/` separators.
//!
//! # Crash contract
//!
//! Both implementations honour it and every recovery test relies on it:
//!
//! - A [`Segment::write_at`] is visible to every reader at once (page-cache semantics) but is
//!   *durable* only once a [`Segment::sync`] covering it has returned `Ok`.
//! - **Process crash** (`kill -9`): every written byte survives, synced or not.
//! - **Power loss**: synced bytes survive; each unsynced 4 KiB page survives whole, is lost
//!   (reads back as it was at the last sync), or is torn at 512-byte sectors. A file whose
//!   creation or removal was not followed by a durable point (a segment sync, an atomic
//!   replace, or [`Disk::sync_dir`] of its directory) may reappear or vanish.
//! - A successful [`Segment::sync`] also makes the segment's own existence durable.
//! - [`Disk::write_file_atomic`] is all-or-nothing: after any crash the file holds either the
//!   old or the new contents, and on `Ok` the new contents are durable.
//! - A failed sync means the durable contents are unknown. Callers must fence themselves
//!   (stop acknowledging writes) rather than retry and carry on.
//!
//! Errors are `std::io::Error`; a full disk is `ErrorKind::StorageFull` (ENOSPC), and a
//! failing device shows as any other error kind (EIO).

use std::fmt::Debug;
use std::io;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;

/// Size of a page: the unit in which unsynced data survives or is lost on power loss.
pub const PAGE_SIZE: u64 = 4096;

/// Size of a sector: the unit at which an unsynced page may be torn on power loss.
pub const SECTOR_SIZE: u64 = 512;

const _: () = assert!(PAGE_SIZE.is_multiple_of(SECTOR_SIZE));

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirEntry {
    /// The entry's name within its directory.
    pub name: String,
    /// Whether the entry is a directory.
    pub is_dir: bool,
}

/// How much room the disk holding the store has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Total bytes of the device.
    pub total: u64,
    /// Bytes still available for writing.
    pub available: u64,
}

impl DiskSpace {
    /// The used fraction of the device, 0.0 to 1.0.
    pub fn used_ratio(&self) -> f64 {
        if self.total == 0 {
            return 1.0;
        }
        1.0 - (self.available as f64 / self.total as f64)
    }
}

/// A fixed-size file addressed by byte offset.
pub trait Segment: Send + Sync + Debug {
    /// The segment's path, relative to the disk root.
    fn path(&self) -> &str;

    /// The segment's fixed size in bytes.
    fn size(&self) -> u64;

    /// Writes `data` at `offset`. Visible to readers at once; durable after a covering
    /// [`sync`](Self::sync). Writing past [`size`](Self::size) is an `InvalidInput` error.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;

    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Reads `len` bytes at `offset`. Implementations may return a view of mapped memory
    /// rather than a copy, so the range must not be written again while the returned bytes
    /// live: read what is finished, and use [`read_at`](Self::read_at) for a range about to
    /// be rewritten.
    fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = vec![0u8; len];
        self.read_at(offset, &mut buf)?;
        Ok(Bytes::from(buf))
    }

    /// Makes the bytes in `range` (and the segment's existence) durable. Runs off the async
    /// workers in production. After an `Err` the durable contents are unknown.
    fn sync(&self, range: Range<u64>) -> BoxFuture<'static, io::Result<()>>;

    /// Starts preparing `range` for writes ahead of the writer (in production: page-cache
    /// pages allocated and mapped writable off the async workers), so that a later
    /// [`write_at`](Self::write_at) there does not stop for page faults. Returns at once and
    /// changes no byte: advisory, and free to do nothing (the default).
    fn prefault(&self, range: Range<u64>) {
        let _ = range;
    }

    /// Declares whether the segment is read and written at random places (an index file's
    /// hash slots and chains; a consume-queue segment while appended to, whose writes each
    /// touch only the page at its end). In production a page fault of a random-access segment brings
    /// in the faulting page only, not the read-ahead window around it: that window is the
    /// device's `read_ahead_kb`, megabytes on some machines, and zero-filling megabytes of a
    /// new file inside one fault stalls the writer for tens of milliseconds. `false` restores
    /// the read-ahead. Changes no byte: advisory, and free to do nothing (the default).
    fn set_random_access(&self, random: bool) {
        let _ = random;
    }
}

/// A directory tree of segments and small metadata files.
pub trait Disk: Send + Sync + Debug + 'static {
    /// Opens the segment at `path`, creating it (with parent directories) zero-filled at
    /// `size` bytes with its space reserved if it does not exist. An existing segment of a
    /// different size is an `InvalidData` error. A full disk is `StorageFull`.
    fn open_segment(&self, path: &str, size: u64) -> io::Result<Arc<dyn Segment>>;

    /// Starts creating the segment at `path` ahead of need, as
    /// [`open_segment`](Self::open_segment) would create it, with its first `warm` bytes
    /// prepared for writes as [`Segment::prefault`] prepares them. A later `open_segment` of
    /// the same path and size then finds it ready instead of creating it (and faulting in its
    /// first pages) on the caller's thread; one that comes while the preparation runs waits
    /// for it. Returns at once. A failure is dropped: the later `open_segment` meets it again
    /// and reports it. Removing the path (or a directory above it) discards the preparation.
    /// The file may exist from the moment of the call; as any creation, it is durable only
    /// after a later durable point. Advisory, and free to do nothing (the default).
    fn prepare_segment(&self, path: &str, size: u64, warm: u64) {
        let _ = (path, size, warm);
    }

    /// Lists a directory, sorted by name. A missing directory lists as empty.
    fn list_dir(&self, dir: &str) -> io::Result<Vec<DirEntry>>;

    /// Creates a directory and its parents; an existing directory is not an error.
    fn create_dir_all(&self, dir: &str) -> io::Result<()>;

    /// Whether a file or directory exists at `path`.
    fn exists(&self, path: &str) -> io::Result<bool>;

    /// Reads a whole small file; `None` if it does not exist.
    fn read_file(&self, path: &str) -> io::Result<Option<Vec<u8>>>;

    /// Replaces the file at `path` with `contents` atomically and durably (write a temporary
    /// file, sync it, rename it over `path`, sync the directory).
    fn write_file_atomic(&self, path: &str, contents: &[u8]) -> BoxFuture<'_, io::Result<()>>;

    /// Removes a file; a missing file is not an error. Durable after [`sync_dir`](Self::sync_dir).
    fn remove_file(&self, path: &str) -> io::Result<()>;

    /// Removes a directory and everything below it; a missing directory is not an error.
    fn remove_dir_all(&self, dir: &str) -> io::Result<()>;

    /// Makes creations and removals of entries of `dir` durable.
    fn sync_dir(&self, dir: &str) -> BoxFuture<'_, io::Result<()>>;

    /// Space on the device holding the disk root.
    fn space(&self) -> io::Result<DiskSpace>;
}

/// The disk shared by every component of one process or simulated node.
pub type SharedDisk = Arc<dyn Disk>;

/// Checks a path as the Disk contract takes it — relative, `/`-separated, with no empty, `.`,
/// `..` or NUL component — and strips trailing slashes; `""` is the root. Implementations
/// call it on every path they are given.
pub fn normalize_path(path: &str) -> io::Result<String> {
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
    if path.starts_with('/') {
        return Err(invalid(format!("path {path:?} must be relative")));
    }
    let trimmed = path.trim_end_matches('/');
    if !trimmed.is_empty()
        && trimmed
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == ".." || part.contains('\0'))
    {
        return Err(invalid(format!(
            "path {path:?} has an empty, `.`, `..` or NUL component"
        )));
    }
    Ok(trimmed.to_owned())
}

/// Joins two relative path parts with `/`, ignoring an empty base.
pub fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_owned()
    } else {
        format!("{}/{}", base.trim_end_matches('/'), name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_handles_empty_base_and_trailing_slash() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("store/", "commitlog"), "store/commitlog");
        assert_eq!(join("store", "commitlog"), "store/commitlog");
    }

    #[test]
    fn used_ratio_of_empty_device_is_full() {
        let space = DiskSpace {
            total: 0,
            available: 0,
        };
        assert_eq!(space.used_ratio(), 1.0);
        let half = DiskSpace {
            total: 100,
            available: 50,
        };
        assert!((half.used_ratio() - 0.5).abs() < 1e-9);
    }
}
