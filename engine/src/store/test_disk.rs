//! `MemoryDisk`: a minimal in-memory [`Disk`] for unit tests of the store inside this crate.
//!
//! The simulator's `SimDisk` (with the crash model) lives in `ferrocket-sim`, which depends
//! on this crate, so engine unit tests cannot use it. This double has **no crash model**:
//! every write is durable at once and every sync succeeds. A "restart" in a test is a new
//! component over the same `MemoryDisk`; a torn or garbage tail is written by hand through
//! [`Disk::open_segment`] + [`Segment::write_at`].
//!
//! Segments are `Mutex<Vec<u8>>` shared by every handle to the same path. Removing a file
//! unlinks it from the tree; handles still open keep their bytes, as with an unlinked file.
//! Paths are relative, `/`-separated, and normalised by trimming slashes at either end.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, ErrorKind};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::disk::{DirEntry, Disk, DiskSpace, Segment, SharedDisk};

/// The device size [`MemoryDisk`] reports.
const MEMORY_DISK_TOTAL: u64 = 1 << 40;

/// An in-memory disk without a crash model. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct MemoryDisk {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Every directory except the root.
    dirs: BTreeSet<String>,
    files: BTreeMap<String, File>,
    /// Every [`Disk::prepare_segment`] call: path, size, warm bytes.
    prepare_requests: Vec<(String, u64, u64)>,
}

#[derive(Debug)]
enum File {
    Segment(Arc<MemorySegment>),
    Small(Vec<u8>),
}

impl MemoryDisk {
    /// A new empty disk.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A new empty disk, as the trait object the store takes, and a handle to inspect it.
    pub(crate) fn shared() -> (Arc<Self>, SharedDisk) {
        let disk = Self::new();
        let shared: SharedDisk = disk.clone();
        (disk, shared)
    }

    /// Whether the segment at `path` was last declared random-access (false for any other
    /// file).
    pub(crate) fn is_random_access(&self, path: &str) -> bool {
        match self.lock().files.get(path) {
            Some(File::Segment(segment)) => segment.random_access.load(Ordering::Acquire),
            _ => false,
        }
    }

    /// Every [`Disk::prepare_segment`] call so far, in order: path, size, warm bytes.
    pub(crate) fn prepare_requests(&self) -> Vec<(String, u64, u64)> {
        self.lock().prepare_requests.clone()
    }

    /// Every [`Segment::prefault`] request made to the segment at `path`, in order (none for
    /// any other file).
    pub(crate) fn prefault_requests(&self, path: &str) -> Vec<Range<u64>> {
        match self.lock().files.get(path) {
            Some(File::Segment(segment)) => segment
                .prefault_requests
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
            _ => Vec::new(),
        }
    }

    /// The paths of every file, sorted.
    pub(crate) fn file_paths(&self) -> Vec<String> {
        self.lock().files.keys().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn add_dirs(&mut self, dir: &str) {
        let mut prefix = String::new();
        for part in dir.split('/').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            self.dirs.insert(prefix.clone());
        }
    }
}

fn normalize(path: &str) -> String {
    path.trim_matches('/').to_owned()
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

/// Whether `path` lies strictly below `dir` (the root `""` holds everything).
fn is_below(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl Disk for MemoryDisk {
    fn open_segment(&self, path: &str, size: u64) -> io::Result<Arc<dyn Segment>> {
        let path = normalize(path);
        let mut state = self.lock();
        if state.dirs.contains(&path) {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!("{path} is a directory"),
            ));
        }
        match state.files.get(&path) {
            Some(File::Segment(segment)) if segment.size == size => Ok(segment.clone()),
            Some(File::Segment(segment)) => Err(io::Error::new(
                ErrorKind::InvalidData,
                format!("segment {path} has {} bytes, expected {size}", segment.size),
            )),
            Some(File::Small(contents)) if contents.len() as u64 == size => {
                // A small file reopened as a segment keeps its bytes.
                let segment = Arc::new(MemorySegment {
                    path: path.clone(),
                    size,
                    bytes: Mutex::new(contents.clone()),
                    random_access: AtomicBool::new(false),
                    prefault_requests: Mutex::default(),
                });
                state.files.insert(path, File::Segment(segment.clone()));
                Ok(segment)
            }
            Some(File::Small(contents)) => Err(io::Error::new(
                ErrorKind::InvalidData,
                format!("file {path} has {} bytes, expected {size}", contents.len()),
            )),
            None => {
                let parent = parent_of(&path).to_owned();
                state.add_dirs(&parent);
                let segment = Arc::new(MemorySegment {
                    path: path.clone(),
                    size,
                    bytes: Mutex::new(vec![0; size as usize]),
                    random_access: AtomicBool::new(false),
                    prefault_requests: Mutex::default(),
                });
                state.files.insert(path, File::Segment(segment.clone()));
                Ok(segment)
            }
        }
    }

    /// Records the request and creates nothing: the queue tests check who asks, and the
    /// creation itself is the simulated and production disks' (with the crash model).
    fn prepare_segment(&self, path: &str, size: u64, warm: u64) {
        self.lock()
            .prepare_requests
            .push((normalize(path), size, warm));
    }

    fn list_dir(&self, dir: &str) -> io::Result<Vec<DirEntry>> {
        let dir = normalize(dir);
        let state = self.lock();
        let mut entries = BTreeMap::new();
        for path in &state.dirs {
            if parent_of(path) == dir && path != &dir {
                entries.insert(path.rsplit('/').next().unwrap_or(path).to_owned(), true);
            }
        }
        for path in state.files.keys() {
            if parent_of(path) == dir {
                entries.insert(path.rsplit('/').next().unwrap_or(path).to_owned(), false);
            }
        }
        Ok(entries
            .into_iter()
            .map(|(name, is_dir)| DirEntry { name, is_dir })
            .collect())
    }

    fn create_dir_all(&self, dir: &str) -> io::Result<()> {
        let dir = normalize(dir);
        let mut state = self.lock();
        if state.files.contains_key(&dir) {
            return Err(io::Error::new(
                ErrorKind::AlreadyExists,
                format!("{dir} exists and is a file"),
            ));
        }
        state.add_dirs(&dir);
        Ok(())
    }

    fn exists(&self, path: &str) -> io::Result<bool> {
        let path = normalize(path);
        let state = self.lock();
        Ok(path.is_empty() || state.dirs.contains(&path) || state.files.contains_key(&path))
    }

    fn read_file(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        let path = normalize(path);
        let state = self.lock();
        Ok(state.files.get(&path).map(|file| match file {
            File::Segment(segment) => segment.lock().clone(),
            File::Small(contents) => contents.clone(),
        }))
    }

    fn write_file_atomic(&self, path: &str, contents: &[u8]) -> BoxFuture<'_, io::Result<()>> {
        let path = normalize(path);
        let contents = contents.to_vec();
        async move {
            let mut state = self.lock();
            if state.dirs.contains(&path) {
                return Err(io::Error::new(
                    ErrorKind::InvalidInput,
                    format!("{path} is a directory"),
                ));
            }
            let parent = parent_of(&path).to_owned();
            state.add_dirs(&parent);
            state.files.insert(path, File::Small(contents));
            Ok(())
        }
        .boxed()
    }

    fn remove_file(&self, path: &str) -> io::Result<()> {
        let path = normalize(path);
        self.lock().files.remove(&path);
        Ok(())
    }

    fn remove_dir_all(&self, dir: &str) -> io::Result<()> {
        let dir = normalize(dir);
        let mut state = self.lock();
        state.files.retain(|path, _| !is_below(path, &dir));
        state
            .dirs
            .retain(|path| path != &dir && !is_below(path, &dir));
        Ok(())
    }

    fn sync_dir(&self, _dir: &str) -> BoxFuture<'_, io::Result<()>> {
        futures::future::ready(Ok(())).boxed()
    }

    fn space(&self) -> io::Result<DiskSpace> {
        let used: u64 = self
            .lock()
            .files
            .values()
            .map(|file| match file {
                File::Segment(segment) => segment.size,
                File::Small(contents) => contents.len() as u64,
            })
            .sum();
        Ok(DiskSpace {
            total: MEMORY_DISK_TOTAL,
            available: MEMORY_DISK_TOTAL.saturating_sub(used),
        })
    }
}

/// One in-memory segment; every handle to the same path shares it.
#[derive(Debug)]
pub(crate) struct MemorySegment {
    path: String,
    size: u64,
    bytes: Mutex<Vec<u8>>,
    /// The last [`Segment::set_random_access`] declaration.
    random_access: AtomicBool,
    /// Every [`Segment::prefault`] request, in order.
    prefault_requests: Mutex<Vec<Range<u64>>>,
}

impl MemorySegment {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.bytes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn range(&self, offset: u64, len: usize) -> io::Result<Range<usize>> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.size => Ok(offset as usize..end as usize),
            _ => Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{len} bytes at {offset} are outside segment {} of {} bytes",
                    self.path, self.size
                ),
            )),
        }
    }
}

impl Segment for MemorySegment {
    fn path(&self) -> &str {
        &self.path
    }

    fn set_random_access(&self, random: bool) {
        self.random_access.store(random, Ordering::Release);
    }

    fn prefault(&self, range: Range<u64>) {
        self.prefault_requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(range);
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let range = self.range(offset, data.len())?;
        self.lock()[range].copy_from_slice(data);
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let range = self.range(offset, buf.len())?;
        buf.copy_from_slice(&self.lock()[range]);
        Ok(())
    }

    fn sync(&self, range: Range<u64>) -> BoxFuture<'static, io::Result<()>> {
        let result = if range.start <= range.end && range.end <= self.size {
            Ok(())
        } else {
            Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!("sync range {range:?} is outside segment {}", self.path),
            ))
        };
        futures::future::ready(result).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_shared_listed_and_removed() {
        let (disk, shared) = MemoryDisk::shared();
        let a = shared
            .open_segment("store/cq/t/0/00000000000000000000", 40)
            .unwrap();
        a.write_at(4, b"abcd").unwrap();
        let again = shared
            .open_segment("store/cq/t/0/00000000000000000000", 40)
            .unwrap();
        let mut buf = [0u8; 4];
        again.read_at(4, &mut buf).unwrap();
        assert_eq!(&buf, b"abcd");
        assert_eq!(
            shared
                .open_segment("store/cq/t/0/00000000000000000000", 41)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidData
        );
        assert!(a.write_at(38, b"xyz").is_err());
        assert_eq!(
            shared.list_dir("store/cq").unwrap(),
            vec![DirEntry {
                name: "t".into(),
                is_dir: true
            }]
        );
        assert_eq!(shared.list_dir("store/cq/t/0").unwrap().len(), 1);
        assert!(shared.list_dir("missing").unwrap().is_empty());
        shared.remove_dir_all("store/cq/t").unwrap();
        assert!(disk.file_paths().is_empty());
        assert!(!shared.exists("store/cq/t").unwrap());
        assert!(shared.exists("store/cq").unwrap());
        // The open handle keeps its bytes after the unlink.
        a.read_at(4, &mut buf).unwrap();
        assert_eq!(&buf, b"abcd");
    }
}
