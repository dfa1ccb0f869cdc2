//! `SimDisk`: one simulated node's disk, in memory, with the crash model of the Disk contract.
//!
//! madsim does not simulate disks (its file system ignores `sync_all` and loses nothing on a
//! kill), so the simulator binds the engine's [`Disk`] trait to this type instead. A
//! `SimDisk` is created by the harness *outside* the node and handed to it, so it outlives
//! node restarts: the harness kills a node, calls [`SimDisk::crash`], and starts the node
//! again on the same disk, which then holds exactly what the crash left.
//!
//! # Model
//!
//! The disk is a tree of inodes. A directory keeps two edge maps: `live` (what processes see)
//! and `durable` (what survives a power loss). A file keeps two images as sparse maps of
//! 4 KiB pages (an absent page reads as zeros, so a large segment costs memory only for what
//! was written): `written` (what processes see) and `durable`, plus the set of `dirty` pages
//! written since they were last made durable.
//!
//! - [`Segment::write_at`] changes `written` and marks pages dirty.
//! - [`Segment::sync`] copies the dirty pages overlapping its range (whole pages, as the
//!   kernel writes them back) from `written` to `durable`, and makes the edges from the root
//!   down to the segment durable — the segment's existence.
//! - [`Disk::sync_dir`] makes a directory's `durable` edges equal to its `live` ones; a
//!   missing directory syncs its nearest existing ancestor, so that its removal is durable.
//! - [`Disk::write_file_atomic`] installs a new, fully durable inode and makes the edges from
//!   the root down to it durable.
//! - [`CrashKind::Process`] keeps everything. [`CrashKind::PowerLoss`] rebuilds the tree
//!   from the `durable` edges (undoing creations and removals that were not made durable)
//!   and resolves every dirty page with the passed [`Rng`]: kept whole, lost (the durable
//!   image stays), or torn (a random, strict, non-empty subset of its 512-byte sectors gets
//!   the new data).
//! - Both crash kinds bump a generation; a [`Segment`] handle from an earlier generation
//!   fails every call, and an operation in flight across a crash fails instead of applying.
//!
//! Invariants (checked by [`SimDisk::check_invariants`]): every page of a file lies within
//! its size and is exactly a page long; the durable image has no page the written image
//! lacks, and a page that is not dirty has equal images; every edge points to an existing
//! inode; every inode is reachable from the root or held by an open handle.
//!
//! Everything is deterministic: maps are `BTreeMap`s, randomness comes only from the `Rng`
//! passed to [`SimDisk::crash`]. A failed (injected) sync makes nothing durable.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, ErrorKind};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ferrocket_engine::disk::{
    DirEntry, Disk, DiskSpace, PAGE_SIZE, SECTOR_SIZE, Segment, SharedDisk, normalize_path,
};
use ferrocket_engine::rng::Rng;
use futures::FutureExt;
use futures::future::BoxFuture;

/// The device size [`Disk::space`] reports when no capacity is injected: 1 TiB.
pub const SIM_DISK_TOTAL_DEFAULT: u64 = 1 << 40;

const PAGE: usize = PAGE_SIZE as usize;
const SECTOR: usize = SECTOR_SIZE as usize;
const SECTORS_PER_PAGE: u32 = (PAGE_SIZE / SECTOR_SIZE) as u32;
// A torn page's sector choice is drawn as one bit mask.
const _: () = assert!(SECTORS_PER_PAGE >= 2 && SECTORS_PER_PAGE < 64);

type NodeId = u64;
type Pages = BTreeMap<u64, Box<[u8]>>;

const ROOT: NodeId = 0;

/// What kind of crash [`SimDisk::crash`] simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashKind {
    /// The process dies (`kill -9`); the kernel still holds every written byte.
    Process,
    /// The machine loses power; only durable data and metadata survive, and unsynced pages
    /// survive whole, are lost, or are torn at sector boundaries.
    PowerLoss,
}

/// Faults the harness can inject at any time with [`SimDisk::set_faults`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimDiskFaults {
    /// Every sync (segment sync, directory sync, atomic file write) fails with EIO and makes
    /// nothing durable.
    pub sync_error: bool,
    /// Every [`Segment::write_at`] fails with EIO and writes nothing.
    pub write_error: bool,
    /// Creating a segment or atomically writing a file that would take the used bytes past
    /// this fails with `StorageFull`. Also the `total` that [`Disk::space`] reports.
    pub capacity_bytes: Option<u64>,
    /// How long every sync takes (a `tokio::time::sleep`, virtual under madsim).
    pub sync_latency: Duration,
}

/// What the last power loss did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PowerLossOutcome {
    /// Unsynced pages that survived whole.
    pub pages_kept: u64,
    /// Unsynced pages that reverted to their durable image.
    pub pages_lost: u64,
    /// Unsynced pages torn at sector boundaries.
    pub pages_torn: u64,
    /// Files that existed before and are gone after (creation not durable).
    pub files_vanished: u64,
    /// Files that did not exist before and are back after (removal not durable).
    pub files_reappeared: u64,
}

/// Counters for the simulator's summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimDiskStats {
    /// Segments created by [`Disk::open_segment`].
    pub segments_created: u64,
    /// Successful [`Segment::write_at`] calls.
    pub writes: u64,
    /// Bytes written by successful [`Segment::write_at`] calls.
    pub bytes_written: u64,
    /// Successful segment syncs.
    pub syncs: u64,
    /// Successful directory syncs.
    pub dir_syncs: u64,
    /// Successful atomic file writes.
    pub atomic_writes: u64,
    /// Syncs (of any kind) failed by the injected `sync_error`.
    pub sync_errors: u64,
    /// Writes failed by the injected `write_error`.
    pub write_errors: u64,
    /// Creations refused with `StorageFull` by the injected capacity.
    pub storage_full_errors: u64,
    /// Process crashes simulated.
    pub process_crashes: u64,
    /// Power losses simulated.
    pub power_losses: u64,
    /// What the most recent power loss did.
    pub last_power_loss: PowerLossOutcome,
}

/// An in-memory, deterministic [`Disk`] with a crash model; see the module docs.
pub struct SimDisk {
    inner: Arc<Inner>,
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("SimDisk")
            .field("generation", &state.generation)
            .field("inodes", &state.nodes.len())
            .field("faults", &state.faults)
            .finish()
    }
}

impl SimDisk {
    /// An empty disk with no faults.
    pub fn new() -> Arc<SimDisk> {
        let mut nodes = BTreeMap::new();
        nodes.insert(ROOT, Node::Dir(DirNode::default()));
        Arc::new(SimDisk {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    generation: 0,
                    nodes,
                    next_id: ROOT + 1,
                    faults: SimDiskFaults::default(),
                    stats: SimDiskStats::default(),
                }),
            }),
        })
    }

    /// This disk as the node's components take it.
    pub fn shared(self: &Arc<Self>) -> SharedDisk {
        Arc::clone(self) as SharedDisk
    }

    /// Simulates a crash. Handles opened before it fail every later call. `rng` decides the
    /// fate of each unsynced page on [`CrashKind::PowerLoss`] and is not used otherwise.
    pub fn crash(&self, kind: CrashKind, rng: &Rng) {
        let mut state = self.inner.lock();
        state.generation += 1;
        match kind {
            CrashKind::Process => {
                state.stats.process_crashes += 1;
                for node in state.nodes.values_mut() {
                    if let Node::File(file) = node {
                        file.handles = 0;
                    }
                }
            }
            CrashKind::PowerLoss => state.power_loss(rng),
        }
        state.collect_garbage();
    }

    /// Replaces the injected faults; [`SimDiskFaults::default`] clears them.
    pub fn set_faults(&self, faults: SimDiskFaults) {
        self.inner.lock().faults = faults;
    }

    /// The faults currently injected.
    pub fn faults(&self) -> SimDiskFaults {
        self.inner.lock().faults.clone()
    }

    /// The counters so far.
    pub fn stats(&self) -> SimDiskStats {
        self.inner.lock().stats.clone()
    }

    /// How many crashes this disk has been through.
    pub fn generation(&self) -> u64 {
        self.inner.lock().generation
    }

    /// A stable hash of the whole disk (tree, sizes, written and durable pages, dirty sets),
    /// for the simulator's determinism check.
    pub fn fingerprint(&self) -> u64 {
        self.inner.lock().fingerprint()
    }

    /// Panics if the model is inconsistent; the simulator calls it after every step.
    pub fn check_invariants(&self) {
        self.inner.lock().check_invariants();
    }
}

struct Inner {
    state: Mutex<State>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is only mutated by code that cannot panic half-way through a change except
        // on a broken invariant, which already fails the run; recover rather than cascade.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct State {
    generation: u64,
    nodes: BTreeMap<NodeId, Node>,
    next_id: NodeId,
    faults: SimDiskFaults,
    stats: SimDiskStats,
}

enum Node {
    Dir(DirNode),
    File(FileNode),
}

#[derive(Default)]
struct DirNode {
    live: BTreeMap<String, NodeId>,
    durable: BTreeMap<String, NodeId>,
}

struct FileNode {
    size: u64,
    written: Pages,
    durable: Pages,
    dirty: BTreeSet<u64>,
    /// Open segment handles of the current generation.
    handles: u64,
}

impl FileNode {
    fn new(size: u64) -> Self {
        Self {
            size,
            written: Pages::new(),
            durable: Pages::new(),
            dirty: BTreeSet::new(),
            handles: 0,
        }
    }

    fn check_range(&self, path: &str, offset: u64, len: usize) -> io::Result<()> {
        let end = u64::try_from(len)
            .ok()
            .and_then(|len| offset.checked_add(len));
        match end {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(invalid_input(format!(
                "{len} bytes at offset {offset} run past the end of segment {path} ({} bytes)",
                self.size
            ))),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut pos = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let page = pos / PAGE_SIZE;
            let in_page = (pos % PAGE_SIZE) as usize;
            let n = rest.len().min(PAGE - in_page);
            let bytes = self.written.entry(page).or_insert_with(zero_page);
            bytes[in_page..in_page + n].copy_from_slice(&rest[..n]);
            self.dirty.insert(page);
            pos += n as u64;
            rest = &rest[n..];
        }
    }

    fn read(&self, offset: u64, buf: &mut [u8]) {
        let mut pos = offset;
        let mut done = 0;
        while done < buf.len() {
            let page = pos / PAGE_SIZE;
            let in_page = (pos % PAGE_SIZE) as usize;
            let n = (buf.len() - done).min(PAGE - in_page);
            let out = &mut buf[done..done + n];
            match self.written.get(&page) {
                Some(bytes) => out.copy_from_slice(&bytes[in_page..in_page + n]),
                None => out.fill(0),
            }
            pos += n as u64;
            done += n;
        }
    }

    fn contents(&self) -> Vec<u8> {
        // Small files only: their size came from a `Vec` in `write_file_atomic`.
        let mut buf = vec![0u8; self.size as usize];
        self.read(0, &mut buf);
        buf
    }

    /// Makes the dirty pages overlapping `range` durable.
    fn sync_range(&mut self, range: &Range<u64>) {
        if range.is_empty() {
            return;
        }
        let first = range.start / PAGE_SIZE;
        let end = range.end.div_ceil(PAGE_SIZE);
        let pages: Vec<u64> = self.dirty.range(first..end).copied().collect();
        for page in pages {
            self.dirty.remove(&page);
            if let Some(bytes) = self.written.get(&page) {
                self.durable.insert(page, bytes.clone());
            }
        }
    }

    /// Resolves every dirty page for a power loss, then makes both images equal.
    fn power_loss(&mut self, rng: &Rng, outcome: &mut PowerLossOutcome) {
        for page in std::mem::take(&mut self.dirty) {
            let Some(new) = self.written.get(&page) else {
                continue;
            };
            match rng.below(3) {
                0 => {
                    outcome.pages_kept += 1;
                    self.durable.insert(page, new.clone());
                }
                1 => outcome.pages_lost += 1,
                _ => {
                    outcome.pages_torn += 1;
                    // A strict, non-empty subset of the sectors gets the new data.
                    let mask = 1 + rng.below((1u64 << SECTORS_PER_PAGE) - 2);
                    let old = self.durable.entry(page).or_insert_with(zero_page);
                    for sector in 0..SECTORS_PER_PAGE as usize {
                        if mask & (1 << sector) != 0 {
                            let at = sector * SECTOR..(sector + 1) * SECTOR;
                            old[at.clone()].copy_from_slice(&new[at]);
                        }
                    }
                }
            }
        }
        self.written = self.durable.clone();
        self.handles = 0;
    }
}

fn zero_page() -> Box<[u8]> {
    vec![0u8; PAGE].into_boxed_slice()
}

/// Where a path leads in the live tree.
enum Lookup {
    /// Every component exists; the node it names.
    Found(NodeId),
    /// A component is missing; `deepest` is the last directory along the path that exists.
    Missing { deepest: NodeId },
}

impl State {
    fn dir(&self, id: NodeId) -> &DirNode {
        match self.nodes.get(&id) {
            Some(Node::Dir(dir)) => dir,
            _ => panic!("SimDisk invariant: inode {id} is an existing directory"),
        }
    }

    fn dir_mut(&mut self, id: NodeId) -> &mut DirNode {
        match self.nodes.get_mut(&id) {
            Some(Node::Dir(dir)) => dir,
            _ => panic!("SimDisk invariant: inode {id} is an existing directory"),
        }
    }

    fn file(&self, id: NodeId) -> Option<&FileNode> {
        match self.nodes.get(&id) {
            Some(Node::File(file)) => Some(file),
            _ => None,
        }
    }

    fn file_mut(&mut self, id: NodeId) -> Option<&mut FileNode> {
        match self.nodes.get_mut(&id) {
            Some(Node::File(file)) => Some(file),
            _ => None,
        }
    }

    fn is_dir(&self, id: NodeId) -> bool {
        matches!(self.nodes.get(&id), Some(Node::Dir(_)))
    }

    fn alloc(&mut self, node: Node) -> NodeId {
        let id = self.next_id;
        self.next_id += 1;
        self.nodes.insert(id, node);
        id
    }

    /// Walks the live tree along `parts`.
    fn lookup(&self, parts: &[&str]) -> io::Result<Lookup> {
        let mut at = ROOT;
        for (depth, part) in parts.iter().enumerate() {
            if !self.is_dir(at) {
                return Err(not_a_directory(&parts[..depth].join("/")));
            }
            match self.dir(at).live.get(*part) {
                Some(&child) => at = child,
                None => return Ok(Lookup::Missing { deepest: at }),
            }
        }
        Ok(Lookup::Found(at))
    }

    /// The node `parts` names, if it exists.
    fn find(&self, parts: &[&str]) -> io::Result<Option<NodeId>> {
        Ok(match self.lookup(parts)? {
            Lookup::Found(id) => Some(id),
            Lookup::Missing { .. } => None,
        })
    }

    /// Creates the missing directories along `parts`; returns the last one.
    fn ensure_dirs(&mut self, parts: &[&str]) -> io::Result<NodeId> {
        let mut at = ROOT;
        for (depth, part) in parts.iter().enumerate() {
            let next = self.dir(at).live.get(*part).copied();
            at = match next {
                Some(child) if self.is_dir(child) => child,
                Some(_) => return Err(not_a_directory(&parts[..=depth].join("/"))),
                None => {
                    let child = self.alloc(Node::Dir(DirNode::default()));
                    self.dir_mut(at).live.insert((*part).to_owned(), child);
                    child
                }
            };
        }
        Ok(at)
    }

    /// Makes the edges from the root down to `target` along `parts` durable, if `parts` still
    /// leads to `target` in the live tree.
    fn commit_chain(&mut self, parts: &[&str], target: NodeId) {
        let mut chain = Vec::with_capacity(parts.len());
        let mut at = ROOT;
        for part in parts {
            if !self.is_dir(at) {
                return;
            }
            match self.dir(at).live.get(*part) {
                Some(&child) => {
                    chain.push((at, *part, child));
                    at = child;
                }
                None => return,
            }
        }
        if at != target {
            return;
        }
        for (dir, name, child) in chain {
            self.dir_mut(dir).durable.insert(name.to_owned(), child);
        }
    }

    /// Nodes reachable from the root along live edges, durable edges, or both.
    fn reachable(&self, live: bool, durable: bool) -> BTreeSet<NodeId> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![ROOT];
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            if let Some(Node::Dir(dir)) = self.nodes.get(&id) {
                if live {
                    stack.extend(dir.live.values().copied());
                }
                if durable {
                    stack.extend(dir.durable.values().copied());
                }
            }
        }
        seen
    }

    /// Drops inodes no edge reaches and no handle holds.
    fn collect_garbage(&mut self) {
        let keep = self.reachable(true, true);
        self.nodes.retain(|id, node| {
            keep.contains(id) || matches!(node, Node::File(file) if file.handles > 0)
        });
    }

    /// Bytes the files take: those in the live tree and those still held open.
    fn used_bytes(&self) -> u64 {
        let live = self.reachable(true, false);
        self.nodes
            .iter()
            .filter_map(|(id, node)| match node {
                Node::File(file) if live.contains(id) || file.handles > 0 => Some(file.size),
                _ => None,
            })
            .fold(0u64, u64::saturating_add)
    }

    fn check_capacity(&mut self, extra: u64, what: &str) -> io::Result<()> {
        if let Some(capacity) = self.faults.capacity_bytes {
            let used = self.used_bytes();
            if used.saturating_add(extra) > capacity {
                self.stats.storage_full_errors += 1;
                return Err(io::Error::new(
                    ErrorKind::StorageFull,
                    format!("SimDisk full: {what} needs {extra} bytes, {used} of {capacity} used"),
                ));
            }
        }
        Ok(())
    }

    fn check_sync_fault(&mut self) -> io::Result<()> {
        if self.faults.sync_error {
            self.stats.sync_errors += 1;
            return Err(io::Error::other("SimDisk: injected EIO on sync"));
        }
        Ok(())
    }

    /// Fails an operation that started (or a handle opened) before the latest crash.
    fn check_generation(&self, generation: u64, what: impl FnOnce() -> String) -> io::Result<()> {
        if generation != self.generation {
            return Err(io::Error::other(format!(
                "SimDisk: {} from before a crash",
                what()
            )));
        }
        Ok(())
    }

    /// Paths of the files in the live tree.
    fn live_files(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack = vec![(ROOT, String::new())];
        while let Some((id, path)) = stack.pop() {
            match self.nodes.get(&id) {
                Some(Node::Dir(dir)) => {
                    for (name, &child) in &dir.live {
                        stack.push((child, join_path(&path, name)));
                    }
                }
                Some(Node::File(_)) => {
                    out.insert(path);
                }
                None => {}
            }
        }
        out
    }

    fn power_loss(&mut self, rng: &Rng) {
        let before = self.live_files();
        let survivors = self.reachable(false, true);
        self.nodes.retain(|id, _| survivors.contains(id));
        let mut outcome = PowerLossOutcome::default();
        // BTreeMap order makes the sequence of draws depend only on the disk's history.
        for node in self.nodes.values_mut() {
            match node {
                Node::Dir(dir) => dir.live = dir.durable.clone(),
                Node::File(file) => file.power_loss(rng, &mut outcome),
            }
        }
        let after = self.live_files();
        outcome.files_vanished = before.difference(&after).count() as u64;
        outcome.files_reappeared = after.difference(&before).count() as u64;
        self.stats.power_losses += 1;
        self.stats.last_power_loss = outcome;
    }

    fn fingerprint(&self) -> u64 {
        let mut hash = Fnv::default();
        let mut stack = vec![(ROOT, String::new())];
        while let Some((id, path)) = stack.pop() {
            hash.write(path.as_bytes());
            match self.nodes.get(&id) {
                Some(Node::Dir(dir)) => {
                    hash.write(b"d");
                    for (name, child) in &dir.durable {
                        hash.write(name.as_bytes());
                        hash.write(&child.to_le_bytes());
                    }
                    // Reverse so that the walk visits names in ascending order.
                    for (name, &child) in dir.live.iter().rev() {
                        stack.push((child, join_path(&path, name)));
                    }
                }
                Some(Node::File(file)) => {
                    hash.write(b"f");
                    hash.write(&file.size.to_le_bytes());
                    for pages in [&file.written, &file.durable] {
                        for (index, bytes) in pages {
                            if bytes.iter().any(|&b| b != 0) {
                                hash.write(&index.to_le_bytes());
                                hash.write(bytes);
                            }
                        }
                        hash.write(b"|");
                    }
                    for page in &file.dirty {
                        hash.write(&page.to_le_bytes());
                    }
                }
                None => hash.write(b"?"),
            }
        }
        hash.0
    }

    fn check_invariants(&self) {
        assert!(self.is_dir(ROOT), "SimDisk: the root is a directory");
        let mut live_parents: BTreeMap<NodeId, u32> = BTreeMap::new();
        for (&id, node) in &self.nodes {
            match node {
                Node::Dir(dir) => {
                    for (name, child) in dir.live.iter().chain(&dir.durable) {
                        assert!(
                            self.nodes.contains_key(child),
                            "SimDisk: entry {name:?} of directory {id} points to missing inode {child}"
                        );
                    }
                    for child in dir.live.values() {
                        *live_parents.entry(*child).or_default() += 1;
                    }
                }
                Node::File(file) => {
                    let page_count = file.size.div_ceil(PAGE_SIZE);
                    let tail = (file.size % PAGE_SIZE) as usize;
                    for (image, pages) in [("written", &file.written), ("durable", &file.durable)] {
                        for (&index, bytes) in pages {
                            assert_eq!(
                                bytes.len(),
                                PAGE,
                                "SimDisk: {image} page {index} of inode {id} is a whole page"
                            );
                            assert!(
                                index < page_count,
                                "SimDisk: {image} page {index} of inode {id} lies beyond its size {}",
                                file.size
                            );
                            if index + 1 == page_count && tail != 0 {
                                assert!(
                                    bytes[tail..].iter().all(|&b| b == 0),
                                    "SimDisk: {image} page {index} of inode {id} has bytes past its size"
                                );
                            }
                        }
                    }
                    for index in file.durable.keys() {
                        assert!(
                            file.written.contains_key(index),
                            "SimDisk: durable page {index} of inode {id} was never written"
                        );
                    }
                    for index in &file.dirty {
                        assert!(
                            file.written.contains_key(index),
                            "SimDisk: dirty page {index} of inode {id} was never written"
                        );
                    }
                    for (index, bytes) in &file.written {
                        if !file.dirty.contains(index) {
                            let same = match file.durable.get(index) {
                                Some(durable) => durable == bytes,
                                None => bytes.iter().all(|&b| b == 0),
                            };
                            assert!(
                                same,
                                "SimDisk: clean page {index} of inode {id} differs from its durable image"
                            );
                        }
                    }
                }
            }
        }
        for (child, count) in live_parents {
            assert_eq!(count, 1, "SimDisk: inode {child} has {count} live parents");
        }
        let reachable = self.reachable(true, true);
        for (id, node) in &self.nodes {
            let held = matches!(node, Node::File(file) if file.handles > 0);
            assert!(
                reachable.contains(id) || held,
                "SimDisk: inode {id} is unreachable and not held"
            );
        }
    }
}

impl Disk for SimDisk {
    fn open_segment(&self, path: &str, size: u64) -> io::Result<Arc<dyn Segment>> {
        let path = normalize_file(path)?;
        if size == 0 {
            return Err(invalid_input(format!("segment {path} must not be empty")));
        }
        let parts: Vec<&str> = path.split('/').collect();
        let (name, parent_parts) = parts.split_last().expect("a file path has a component");
        let mut state = self.inner.lock();
        let parent = state.ensure_dirs(parent_parts)?;
        let existing = state.dir(parent).live.get(*name).copied();
        let node = match existing {
            Some(id) => match state.file(id) {
                Some(file) if file.size == size => id,
                Some(file) => {
                    return Err(io::Error::new(
                        ErrorKind::InvalidData,
                        format!("segment {path} has {} bytes, expected {size}", file.size),
                    ));
                }
                None => return Err(is_a_directory(&path)),
            },
            None => {
                state.check_capacity(size, &format!("segment {path}"))?;
                let id = state.alloc(Node::File(FileNode::new(size)));
                state.dir_mut(parent).live.insert((*name).to_owned(), id);
                state.stats.segments_created += 1;
                id
            }
        };
        state
            .file_mut(node)
            .expect("the node was just checked to be a file")
            .handles += 1;
        Ok(Arc::new(SimSegment {
            inner: Arc::clone(&self.inner),
            parts: parts.iter().map(|part| (*part).to_owned()).collect(),
            path: path.clone(),
            size,
            node,
            generation: state.generation,
        }))
    }

    /// Creates the segment at once (the simulated disk has no latency to hide), so every
    /// crash after the call may find the extra, zero-filled segment, or lose it if no durable
    /// point followed. A failure (a full disk, a bad path) is dropped, as the contract says.
    fn prepare_segment(&self, path: &str, size: u64, warm: u64) {
        let _ = warm;
        let _ = self.open_segment(path, size);
    }

    fn list_dir(&self, dir: &str) -> io::Result<Vec<DirEntry>> {
        let dir = normalize_path(dir)?;
        let state = self.inner.lock();
        let Some(id) = state.find(&split(&dir))? else {
            return Ok(Vec::new());
        };
        let Some(Node::Dir(node)) = state.nodes.get(&id) else {
            return Err(not_a_directory(&dir));
        };
        Ok(node
            .live
            .iter()
            .map(|(name, child)| DirEntry {
                name: name.clone(),
                is_dir: state.is_dir(*child),
            })
            .collect())
    }

    fn create_dir_all(&self, dir: &str) -> io::Result<()> {
        let dir = normalize_path(dir)?;
        let parts = split(&dir);
        let mut state = self.inner.lock();
        if let Some(id) = state.find(&parts)? {
            return if state.is_dir(id) {
                Ok(())
            } else {
                Err(io::Error::new(
                    ErrorKind::AlreadyExists,
                    format!("{dir} exists and is a file"),
                ))
            };
        }
        state.ensure_dirs(&parts).map(drop)
    }

    fn exists(&self, path: &str) -> io::Result<bool> {
        let path = normalize_path(path)?;
        Ok(self.inner.lock().find(&split(&path))?.is_some())
    }

    fn read_file(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        let path = normalize_file(path)?;
        let state = self.inner.lock();
        match state.find(&split(&path))? {
            None => Ok(None),
            Some(id) => match state.file(id) {
                Some(file) => Ok(Some(file.contents())),
                None => Err(is_a_directory(&path)),
            },
        }
    }

    fn write_file_atomic(&self, path: &str, contents: &[u8]) -> BoxFuture<'_, io::Result<()>> {
        let path = normalize_file(path);
        let contents = contents.to_vec();
        async move {
            let path = path?;
            let (generation, latency) = {
                let state = self.inner.lock();
                (state.generation, state.faults.sync_latency)
            };
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            let mut state = self.inner.lock();
            state.check_generation(generation, || "atomic write".to_owned())?;
            state.check_sync_fault()?;
            let size = contents.len() as u64;
            state.check_capacity(size, &format!("file {path}"))?;
            let parts = split(&path);
            let (name, parent_parts) = parts.split_last().expect("a file path has a component");
            let parent = state.ensure_dirs(parent_parts)?;
            if let Some(&existing) = state.dir(parent).live.get(*name)
                && state.is_dir(existing)
            {
                return Err(is_a_directory(&path));
            }
            let mut file = FileNode::new(size);
            file.write(0, &contents);
            file.sync_range(&(0..size));
            let id = state.alloc(Node::File(file));
            state.dir_mut(parent).live.insert((*name).to_owned(), id);
            state.commit_chain(&parts, id);
            state.collect_garbage();
            state.stats.atomic_writes += 1;
            Ok(())
        }
        .boxed()
    }

    fn remove_file(&self, path: &str) -> io::Result<()> {
        let path = normalize_file(path)?;
        let parts = split(&path);
        let (name, parent_parts) = parts.split_last().expect("a file path has a component");
        let mut state = self.inner.lock();
        let Some(parent) = state.find(parent_parts)? else {
            return Ok(());
        };
        if !state.is_dir(parent) {
            return Err(not_a_directory(&parent_parts.join("/")));
        }
        match state.dir(parent).live.get(*name) {
            None => Ok(()),
            Some(&id) if state.is_dir(id) => Err(is_a_directory(&path)),
            Some(_) => {
                state.dir_mut(parent).live.remove(*name);
                state.collect_garbage();
                Ok(())
            }
        }
    }

    fn remove_dir_all(&self, dir: &str) -> io::Result<()> {
        let dir = normalize_path(dir)?;
        if dir.is_empty() {
            return Err(invalid_input("refusing to remove the disk root"));
        }
        let parts = split(&dir);
        let (name, parent_parts) = parts
            .split_last()
            .expect("a non-empty path has a component");
        let mut state = self.inner.lock();
        let Some(parent) = state.find(parent_parts)? else {
            return Ok(());
        };
        if !state.is_dir(parent) {
            return Err(not_a_directory(&parent_parts.join("/")));
        }
        match state.dir(parent).live.get(*name) {
            None => Ok(()),
            Some(&id) if !state.is_dir(id) => Err(not_a_directory(&dir)),
            Some(_) => {
                state.dir_mut(parent).live.remove(*name);
                state.collect_garbage();
                Ok(())
            }
        }
    }

    fn sync_dir(&self, dir: &str) -> BoxFuture<'_, io::Result<()>> {
        let dir = normalize_path(dir);
        async move {
            let dir = dir?;
            let (generation, latency) = {
                let state = self.inner.lock();
                (state.generation, state.faults.sync_latency)
            };
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            let mut state = self.inner.lock();
            state.check_generation(generation, || "directory sync".to_owned())?;
            state.check_sync_fault()?;
            let target = match state.lookup(&split(&dir))? {
                Lookup::Found(id) if state.is_dir(id) => id,
                Lookup::Found(_) => return Err(not_a_directory(&dir)),
                // A missing directory's removal is an entry of its nearest existing ancestor.
                Lookup::Missing { deepest } => deepest,
            };
            let node = state.dir_mut(target);
            node.durable = node.live.clone();
            state.collect_garbage();
            state.stats.dir_syncs += 1;
            Ok(())
        }
        .boxed()
    }

    fn space(&self) -> io::Result<DiskSpace> {
        let state = self.inner.lock();
        let total = state
            .faults
            .capacity_bytes
            .unwrap_or(SIM_DISK_TOTAL_DEFAULT);
        Ok(DiskSpace {
            total,
            available: total.saturating_sub(state.used_bytes()),
        })
    }
}

/// A handle on one of a [`SimDisk`]'s segments, valid until the next crash.
pub struct SimSegment {
    inner: Arc<Inner>,
    path: String,
    parts: Vec<String>,
    size: u64,
    node: NodeId,
    generation: u64,
}

impl fmt::Debug for SimSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimSegment")
            .field("path", &self.path)
            .field("size", &self.size)
            .field("inode", &self.node)
            .field("generation", &self.generation)
            .finish()
    }
}

impl SimSegment {
    /// Runs `f` on the segment's file if this handle is still current.
    fn with_file<T>(
        &self,
        f: impl FnOnce(&mut FileNode, &mut SimDiskStats, &SimDiskFaults) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut state = self.inner.lock();
        state.check_generation(self.generation, || format!("handle on {}", self.path))?;
        let State {
            nodes,
            stats,
            faults,
            ..
        } = &mut *state;
        match nodes.get_mut(&self.node) {
            Some(Node::File(file)) => f(file, stats, faults),
            _ => panic!(
                "SimDisk invariant: an open handle keeps its inode {} alive",
                self.node
            ),
        }
    }
}

impl Segment for SimSegment {
    fn path(&self) -> &str {
        &self.path
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.with_file(|file, stats, faults| {
            file.check_range(&self.path, offset, data.len())?;
            if faults.write_error {
                stats.write_errors += 1;
                return Err(io::Error::other("SimDisk: injected EIO on write"));
            }
            file.write(offset, data);
            stats.writes += 1;
            stats.bytes_written += data.len() as u64;
            Ok(())
        })
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.with_file(|file, _, _| {
            file.check_range(&self.path, offset, buf.len())?;
            file.read(offset, buf);
            Ok(())
        })
    }

    fn sync(&self, range: Range<u64>) -> BoxFuture<'static, io::Result<()>> {
        let started = self.with_file(|file, _, faults| {
            if range.start > range.end || range.end > file.size {
                return Err(invalid_input(format!(
                    "sync range {range:?} is outside segment {} ({} bytes)",
                    self.path, file.size
                )));
            }
            Ok(faults.sync_latency)
        });
        let inner = Arc::clone(&self.inner);
        let parts = self.parts.clone();
        let path = self.path.clone();
        let (node, generation) = (self.node, self.generation);
        async move {
            let latency = started?;
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            let mut state = inner.lock();
            state.check_generation(generation, || format!("handle on {path}"))?;
            state.check_sync_fault()?;
            // The pages as they are now: a superset of what was written before the call.
            state
                .file_mut(node)
                .expect("an open handle keeps its inode alive")
                .sync_range(&range);
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            state.commit_chain(&parts, node);
            state.stats.syncs += 1;
            Ok(())
        }
        .boxed()
    }
}

impl Drop for SimSegment {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        if state.generation != self.generation {
            return;
        }
        if let Some(file) = state.file_mut(self.node) {
            file.handles = file.handles.saturating_sub(1);
            if file.handles == 0 {
                state.collect_garbage();
            }
        }
    }
}

/// 64-bit FNV-1a: a hash whose output is fixed by its definition, for fingerprints.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Like [`normalize`] but refuses the root, for file operations.
fn normalize_file(path: &str) -> io::Result<String> {
    let normalized = normalize_path(path)?;
    if normalized.is_empty() {
        return Err(invalid_input(format!(
            "{path:?} names the disk root, not a file"
        )));
    }
    Ok(normalized)
}

fn split(path: &str) -> Vec<&str> {
    if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    }
}

fn join_path(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_owned()
    } else {
        format!("{base}/{name}")
    }
}

fn invalid_input(message: impl Into<String>) -> io::Error {
    io::Error::new(ErrorKind::InvalidInput, message.into())
}

fn not_a_directory(path: &str) -> io::Error {
    io::Error::new(
        ErrorKind::NotADirectory,
        format!("{path:?} is not a directory"),
    )
}

fn is_a_directory(path: &str) -> io::Error {
    io::Error::new(ErrorKind::IsADirectory, format!("{path:?} is a directory"))
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use ferrocket_engine::rng::Rng;
    use proptest::prelude::*;

    use super::*;

    fn block_on<F: Future>(future: F) -> F::Output {
        // Without injected latency every SimDisk future is ready on its first poll.
        futures::executor::block_on(future)
    }

    fn page_of(byte: u8) -> Vec<u8> {
        vec![byte; PAGE]
    }

    fn read_pages(segment: &dyn Segment, pages: Range<u64>) -> Vec<Vec<u8>> {
        pages
            .map(|page| {
                let mut buf = page_of(0);
                segment.read_at(page * PAGE_SIZE, &mut buf).unwrap();
                buf
            })
            .collect()
    }

    /// How a page that held `old` and was overwritten with `new` came through a power loss.
    #[derive(Debug, PartialEq, Eq)]
    enum Fate {
        Kept,
        Lost,
        Torn,
    }

    fn fate(page: &[u8], old: u8, new: u8) -> Fate {
        let sectors: Vec<u8> = page
            .chunks(SECTOR)
            .map(|sector| {
                assert!(
                    sector.iter().all(|&b| b == sector[0]),
                    "a sector is never split: {sector:?}"
                );
                assert!(sector[0] == old || sector[0] == new, "only old or new data");
                sector[0]
            })
            .collect();
        if sectors.iter().all(|&b| b == new) {
            Fate::Kept
        } else if sectors.iter().all(|&b| b == old) {
            Fate::Lost
        } else {
            Fate::Torn
        }
    }

    #[test]
    fn power_loss_drops_unsynced_data_and_keeps_synced_data() {
        let disk = SimDisk::new();
        let segment = disk.open_segment("commitlog/0", 64 * PAGE_SIZE).unwrap();
        for page in 0..16 {
            segment.write_at(page * PAGE_SIZE, &page_of(0x11)).unwrap();
        }
        block_on(segment.sync(0..16 * PAGE_SIZE)).unwrap();
        for page in 16..64 {
            segment.write_at(page * PAGE_SIZE, &page_of(0x22)).unwrap();
        }
        disk.crash(CrashKind::PowerLoss, &Rng::from_seed(1));
        disk.check_invariants();

        let segment = disk.open_segment("commitlog/0", 64 * PAGE_SIZE).unwrap();
        for (page, bytes) in read_pages(&*segment, 0..16).into_iter().enumerate() {
            assert_eq!(bytes, page_of(0x11), "synced page {page} survives");
        }
        let fates: Vec<Fate> = read_pages(&*segment, 16..64)
            .iter()
            .map(|bytes| fate(bytes, 0, 0x22))
            .collect();
        let count = |wanted: Fate| fates.iter().filter(|&f| *f == wanted).count() as u64;
        let outcome = disk.stats().last_power_loss;
        assert_eq!(outcome.pages_kept, count(Fate::Kept));
        assert_eq!(outcome.pages_lost, count(Fate::Lost));
        assert_eq!(outcome.pages_torn, count(Fate::Torn));
        assert_eq!(
            outcome.pages_kept + outcome.pages_lost + outcome.pages_torn,
            48
        );
        assert!(
            outcome.pages_lost > 0,
            "some unsynced page is lost: {outcome:?}"
        );
        assert!(
            outcome.pages_torn > 0,
            "some unsynced page is torn: {outcome:?}"
        );
    }

    #[test]
    fn sync_makes_only_the_pages_overlapping_its_range_durable() {
        let disk = SimDisk::new();
        let segment = disk.open_segment("cq/0", 4 * PAGE_SIZE).unwrap();
        segment.write_at(0, &page_of(1)).unwrap();
        segment.write_at(2 * PAGE_SIZE, &page_of(2)).unwrap();
        // One byte of page 0 covers the whole page, as msync does.
        block_on(segment.sync(10..11)).unwrap();
        disk.crash(CrashKind::PowerLoss, &Rng::from_seed(3));
        let outcome = disk.stats().last_power_loss;
        assert_eq!(
            outcome.pages_kept + outcome.pages_lost + outcome.pages_torn,
            1,
            "only page 2 was still dirty"
        );
        let segment = disk.open_segment("cq/0", 4 * PAGE_SIZE).unwrap();
        assert_eq!(read_pages(&*segment, 0..1), vec![page_of(1)]);
    }

    /// A fixed workload on a fresh disk, ended by a power loss drawn from `seed`.
    fn power_loss_run(seed: u64) -> (u64, PowerLossOutcome, Vec<Vec<u8>>) {
        let disk = SimDisk::new();
        let segment = disk
            .open_segment("store/commitlog/0", 32 * PAGE_SIZE)
            .unwrap();
        for page in 0..32u64 {
            segment
                .write_at(page * PAGE_SIZE, &page_of(page as u8))
                .unwrap();
        }
        block_on(segment.sync(0..32 * PAGE_SIZE)).unwrap();
        for page in 0..32u64 {
            segment
                .write_at(page * PAGE_SIZE, &page_of(0x80 | page as u8))
                .unwrap();
        }
        disk.open_segment("store/commitlog/1", PAGE_SIZE).unwrap();
        block_on(disk.write_file_atomic("store/checkpoint", b"cp")).unwrap();
        disk.crash(CrashKind::PowerLoss, &Rng::from_seed(seed));
        disk.check_invariants();
        let segment = disk
            .open_segment("store/commitlog/0", 32 * PAGE_SIZE)
            .unwrap();
        (
            disk.fingerprint(),
            disk.stats().last_power_loss,
            read_pages(&*segment, 0..32),
        )
    }

    #[test]
    fn power_loss_outcome_is_identical_for_the_same_seed() {
        for seed in [0, 7, 42] {
            assert_eq!(power_loss_run(seed), power_loss_run(seed), "seed {seed}");
        }
    }

    #[test]
    fn power_loss_outcome_differs_across_seeds() {
        let runs: Vec<_> = (0..8).map(power_loss_run).collect();
        let fingerprints: BTreeSet<u64> = runs.iter().map(|run| run.0).collect();
        assert_eq!(
            fingerprints.len(),
            runs.len(),
            "every seed leaves its own image"
        );
        let images: BTreeSet<&Vec<Vec<u8>>> = runs.iter().map(|run| &run.2).collect();
        assert_eq!(
            images.len(),
            runs.len(),
            "every seed leaves its own contents"
        );
    }

    #[test]
    fn torn_pages_mix_old_and_new_data_only_at_sector_boundaries() {
        let mut torn_seen = 0;
        for seed in 0..20 {
            let disk = SimDisk::new();
            let segment = disk.open_segment("index/0", 16 * PAGE_SIZE).unwrap();
            segment.write_at(0, &vec![0xAA; 16 * PAGE]).unwrap();
            block_on(segment.sync(0..16 * PAGE_SIZE)).unwrap();
            segment.write_at(0, &vec![0xBB; 16 * PAGE]).unwrap();
            disk.crash(CrashKind::PowerLoss, &Rng::from_seed(seed));
            let segment = disk.open_segment("index/0", 16 * PAGE_SIZE).unwrap();
            for bytes in read_pages(&*segment, 0..16) {
                // `fate` asserts that every sector is wholly old or wholly new.
                if fate(&bytes, 0xAA, 0xBB) == Fate::Torn {
                    torn_seen += 1;
                }
            }
            assert_eq!(
                disk.stats().last_power_loss.pages_torn,
                read_pages(&*segment, 0..16)
                    .iter()
                    .filter(|bytes| fate(bytes, 0xAA, 0xBB) == Fate::Torn)
                    .count() as u64
            );
        }
        assert!(torn_seen > 0, "twenty seeds tear some page");
    }

    #[test]
    fn process_crash_keeps_every_written_byte() {
        let disk = SimDisk::new();
        let synced = disk.open_segment("a/synced", 2 * PAGE_SIZE).unwrap();
        synced.write_at(0, b"durable").unwrap();
        block_on(synced.sync(0..PAGE_SIZE)).unwrap();
        synced.write_at(PAGE_SIZE + 5, b"not synced").unwrap();
        let fresh = disk.open_segment("b/fresh", PAGE_SIZE).unwrap();
        fresh.write_at(0, b"never synced").unwrap();
        block_on(disk.write_file_atomic("a/gone", b"x")).unwrap();
        disk.remove_file("a/gone").unwrap();
        let before = disk.fingerprint();

        disk.crash(CrashKind::Process, &Rng::from_seed(9));
        disk.check_invariants();
        assert_eq!(
            disk.fingerprint(),
            before,
            "nothing changes but the generation"
        );
        assert_eq!(disk.stats().process_crashes, 1);
        let synced = disk.open_segment("a/synced", 2 * PAGE_SIZE).unwrap();
        assert_eq!(&synced.read(0, 7).unwrap()[..], b"durable");
        assert_eq!(&synced.read(PAGE_SIZE + 5, 10).unwrap()[..], b"not synced");
        let fresh = disk.open_segment("b/fresh", PAGE_SIZE).unwrap();
        assert_eq!(&fresh.read(0, 12).unwrap()[..], b"never synced");
        assert_eq!(disk.read_file("a/gone").unwrap(), None);
    }

    #[test]
    fn handles_from_before_a_crash_fail_every_call() {
        for kind in [CrashKind::Process, CrashKind::PowerLoss] {
            let disk = SimDisk::new();
            let old = disk.open_segment("commitlog/0", PAGE_SIZE).unwrap();
            old.write_at(0, b"before").unwrap();
            block_on(old.sync(0..PAGE_SIZE)).unwrap();
            // A sync started before the crash fails too, even if polled after it.
            let pending = old.sync(0..PAGE_SIZE);
            disk.crash(kind, &Rng::from_seed(5));

            let stale = |err: io::Error| {
                assert!(
                    err.to_string().contains("before a crash"),
                    "{kind:?}: {err}"
                );
            };
            stale(old.write_at(0, b"after").unwrap_err());
            stale(old.read_at(0, &mut [0u8; 6]).unwrap_err());
            stale(old.read(0, 6).unwrap_err());
            stale(block_on(old.sync(0..PAGE_SIZE)).unwrap_err());
            stale(block_on(pending).unwrap_err());

            let new = disk.open_segment("commitlog/0", PAGE_SIZE).unwrap();
            assert_eq!(&new.read(0, 6).unwrap()[..], b"before", "{kind:?}");
            drop(old);
            new.write_at(0, b"later!").unwrap();
            assert_eq!(&new.read(0, 6).unwrap()[..], b"later!");
            disk.check_invariants();
        }
    }

    #[test]
    fn unsynced_file_creation_vanishes_on_power_loss_while_synced_one_stays() {
        let disk = SimDisk::new();
        let unsynced = disk.open_segment("store/cq/T/0/000", PAGE_SIZE).unwrap();
        unsynced.write_at(0, b"lost").unwrap();
        let synced = disk.open_segment("store/cq/T/1/000", PAGE_SIZE).unwrap();
        // Even an empty range makes the segment's existence (and its directories) durable.
        block_on(synced.sync(0..0)).unwrap();
        disk.create_dir_all("store/config").unwrap();

        disk.crash(CrashKind::PowerLoss, &Rng::from_seed(11));
        disk.check_invariants();
        assert!(!disk.exists("store/cq/T/0/000").unwrap());
        assert!(
            !disk.exists("store/cq/T/0").unwrap(),
            "its directory was never durable"
        );
        assert!(!disk.exists("store/config").unwrap());
        assert!(disk.exists("store/cq/T/1/000").unwrap());
        assert_eq!(disk.stats().last_power_loss.files_vanished, 1);
        let names: Vec<String> = disk
            .list_dir("store/cq/T")
            .unwrap()
            .into_iter()
            .map(|entry| entry.name)
            .collect();
        assert_eq!(names, ["1"]);
    }

    #[test]
    fn sync_dir_makes_creations_of_its_entries_durable() {
        let disk = SimDisk::new();
        disk.create_dir_all("store/config").unwrap();
        block_on(disk.sync_dir("")).unwrap();
        block_on(disk.sync_dir("store")).unwrap();
        disk.open_segment("store/abort", PAGE_SIZE).unwrap();
        block_on(disk.sync_dir("store")).unwrap();
        disk.crash(CrashKind::PowerLoss, &Rng::from_seed(2));
        assert!(disk.exists("store/config").unwrap());
        assert!(disk.exists("store/abort").unwrap());
        assert_eq!(disk.stats().dir_syncs, 3);
    }

    #[test]
    fn removal_reappears_after_power_loss_unless_its_directory_was_synced() {
        let disk = SimDisk::new();
        for path in ["d1/x", "d2/y", "d3/sub/z"] {
            let segment = disk.open_segment(path, PAGE_SIZE).unwrap();
            segment.write_at(0, path.as_bytes()).unwrap();
            block_on(segment.sync(0..PAGE_SIZE)).unwrap();
        }
        disk.remove_file("d1/x").unwrap();
        disk.remove_file("d2/y").unwrap();
        disk.remove_dir_all("d3/sub").unwrap();
        block_on(disk.sync_dir("d2")).unwrap();
        // The directory is gone: syncing it syncs `d3`, which holds its removal.
        block_on(disk.sync_dir("d3/sub")).unwrap();
        assert!(!disk.exists("d1/x").unwrap());

        disk.crash(CrashKind::PowerLoss, &Rng::from_seed(4));
        disk.check_invariants();
        let back = disk.open_segment("d1/x", PAGE_SIZE).unwrap();
        assert_eq!(&back.read(0, 4).unwrap()[..], b"d1/x", "durable contents");
        assert!(!disk.exists("d2/y").unwrap());
        assert!(!disk.exists("d3/sub").unwrap());
        assert_eq!(disk.stats().last_power_loss.files_reappeared, 1);
    }

    #[test]
    fn write_file_atomic_survives_both_crash_kinds_with_new_contents() {
        for kind in [CrashKind::Process, CrashKind::PowerLoss] {
            let disk = SimDisk::new();
            block_on(disk.write_file_atomic("config/topics.json", b"old")).unwrap();
            block_on(disk.write_file_atomic("config/topics.json", b"new contents")).unwrap();
            disk.crash(kind, &Rng::from_seed(6));
            disk.check_invariants();
            assert_eq!(
                disk.read_file("config/topics.json").unwrap(),
                Some(b"new contents".to_vec()),
                "{kind:?}"
            );
        }
    }

    #[tokio::test]
    async fn write_file_atomic_interrupted_by_a_crash_keeps_old_contents() {
        for kind in [CrashKind::Process, CrashKind::PowerLoss] {
            let disk = SimDisk::new();
            disk.write_file_atomic("checkpoint", b"old").await.unwrap();
            disk.set_faults(SimDiskFaults {
                sync_latency: Duration::from_millis(50),
                ..SimDiskFaults::default()
            });
            let writer = {
                let disk = Arc::clone(&disk);
                tokio::spawn(async move { disk.write_file_atomic("checkpoint", b"new").await })
            };
            tokio::time::sleep(Duration::from_millis(10)).await;
            disk.crash(kind, &Rng::from_seed(8));
            let result = writer.await.expect("the writer task does not panic");
            assert!(
                result.is_err(),
                "{kind:?}: the interrupted write reports failure"
            );
            assert_eq!(disk.read_file("checkpoint").unwrap(), Some(b"old".to_vec()));
            disk.check_invariants();
        }
    }

    #[test]
    fn injected_sync_error_fails_every_sync_and_makes_nothing_durable() {
        let disk = SimDisk::new();
        block_on(disk.write_file_atomic("checkpoint", b"v1")).unwrap();
        let segment = disk.open_segment("commitlog/0", PAGE_SIZE).unwrap();
        segment.write_at(0, b"data").unwrap();
        disk.set_faults(SimDiskFaults {
            sync_error: true,
            ..SimDiskFaults::default()
        });
        assert!(block_on(segment.sync(0..PAGE_SIZE)).is_err());
        assert!(block_on(disk.sync_dir("commitlog")).is_err());
        assert!(block_on(disk.write_file_atomic("checkpoint", b"v2")).is_err());
        assert_eq!(disk.stats().sync_errors, 3);
        assert_eq!(disk.stats().syncs, 0);
        // Reads still see the written data.
        assert_eq!(&segment.read(0, 4).unwrap()[..], b"data");
        assert_eq!(disk.read_file("checkpoint").unwrap(), Some(b"v1".to_vec()));

        disk.set_faults(SimDiskFaults::default());
        disk.crash(CrashKind::PowerLoss, &Rng::from_seed(1));
        assert!(
            !disk.exists("commitlog/0").unwrap(),
            "the failed sync made nothing durable"
        );
        assert_eq!(disk.read_file("checkpoint").unwrap(), Some(b"v1".to_vec()));
    }

    #[test]
    fn injected_write_error_fails_write_at_and_writes_nothing() {
        let disk = SimDisk::new();
        let segment = disk.open_segment("commitlog/0", PAGE_SIZE).unwrap();
        segment.write_at(0, b"good").unwrap();
        disk.set_faults(SimDiskFaults {
            write_error: true,
            ..SimDiskFaults::default()
        });
        let err = segment.write_at(0, b"bad!").unwrap_err();
        assert_ne!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(&segment.read(0, 4).unwrap()[..], b"good");
        assert_eq!(disk.stats().write_errors, 1);
        disk.set_faults(SimDiskFaults::default());
        segment.write_at(0, b"next").unwrap();
        assert_eq!(&segment.read(0, 4).unwrap()[..], b"next");
        assert_eq!(disk.stats().writes, 2);
        assert_eq!(disk.stats().bytes_written, 8);
    }

    #[test]
    fn capacity_refuses_new_segments_and_atomic_writes_with_storage_full() {
        let disk = SimDisk::new();
        disk.set_faults(SimDiskFaults {
            capacity_bytes: Some(3 * PAGE_SIZE),
            ..SimDiskFaults::default()
        });
        let first = disk.open_segment("commitlog/0", 2 * PAGE_SIZE).unwrap();
        let err = disk.open_segment("commitlog/1", 2 * PAGE_SIZE).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::StorageFull);
        assert!(!disk.exists("commitlog/1").unwrap());
        // Reopening an existing segment needs no new space.
        disk.open_segment("commitlog/0", 2 * PAGE_SIZE).unwrap();
        let err = block_on(disk.write_file_atomic("checkpoint", &vec![1u8; PAGE + 1])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::StorageFull);
        block_on(disk.write_file_atomic("checkpoint", b"small")).unwrap();
        assert_eq!(
            disk.space().unwrap(),
            DiskSpace {
                total: 3 * PAGE_SIZE,
                available: 3 * PAGE_SIZE - 2 * PAGE_SIZE - 5
            }
        );
        assert_eq!(disk.stats().storage_full_errors, 2);

        // Space comes back once the file is removed and its last handle is closed.
        disk.remove_file("commitlog/0").unwrap();
        assert!(disk.open_segment("commitlog/1", 2 * PAGE_SIZE).is_err());
        drop(first);
        disk.open_segment("commitlog/1", 2 * PAGE_SIZE).unwrap();
        disk.check_invariants();
    }

    #[tokio::test]
    async fn sync_latency_delays_every_sync() {
        let disk = SimDisk::new();
        let segment = disk.open_segment("commitlog/0", PAGE_SIZE).unwrap();
        let latency = Duration::from_millis(20);
        disk.set_faults(SimDiskFaults {
            sync_latency: latency,
            ..SimDiskFaults::default()
        });
        let start = tokio::time::Instant::now();
        segment.sync(0..PAGE_SIZE).await.unwrap();
        disk.sync_dir("commitlog").await.unwrap();
        disk.write_file_atomic("checkpoint", b"c").await.unwrap();
        assert!(start.elapsed() >= 3 * latency, "{:?}", start.elapsed());
    }

    #[test]
    fn stale_handles_do_not_keep_removed_files_alive_after_a_crash() {
        let disk = SimDisk::new();
        let segment = disk.open_segment("commitlog/0", PAGE_SIZE).unwrap();
        disk.remove_file("commitlog/0").unwrap();
        // Unlinked but open: still readable and writable, like an unlinked mapped file.
        segment.write_at(0, b"orphan").unwrap();
        disk.check_invariants();
        disk.crash(CrashKind::Process, &Rng::from_seed(0));
        disk.check_invariants();
        drop(segment);
        assert!(disk.list_dir("commitlog").unwrap().is_empty());
        assert_eq!(disk.space().unwrap().available, SIM_DISK_TOTAL_DEFAULT);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write { offset: u64, len: usize, byte: u8 },
        Sync { start: u64, end: u64 },
    }

    const PROP_SIZE: u64 = 6 * PAGE_SIZE + 300;

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..PROP_SIZE, 1..3 * PAGE, 1..=255u8).prop_map(|(offset, len, byte)| Op::Write {
                offset,
                len: len.min((PROP_SIZE - offset) as usize),
                byte,
            }),
            1 => (0..=PROP_SIZE, 0..=PROP_SIZE).prop_map(|(a, b)| Op::Sync {
                start: a.min(b),
                end: a.max(b),
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// After random writes and syncs and a power loss, every sector holds either what was
        /// last written to it or what was last made durable, whole; bytes whose last write
        /// was synced hold exactly that write.
        #[test]
        fn power_loss_keeps_synced_bytes_and_whole_sectors_of_the_rest(
            ops in proptest::collection::vec(op(), 1..40),
            seed in any::<u64>(),
        ) {
            let disk = SimDisk::new();
            let segment = disk.open_segment("commitlog/0", PROP_SIZE).unwrap();
            block_on(segment.sync(0..0)).unwrap();
            let mut written = vec![0u8; PROP_SIZE as usize];
            let mut durable = vec![0u8; PROP_SIZE as usize];
            for op in &ops {
                match *op {
                    Op::Write { offset, len, byte } => {
                        segment.write_at(offset, &vec![byte; len]).unwrap();
                        written[offset as usize..offset as usize + len].fill(byte);
                    }
                    Op::Sync { start, end } => {
                        block_on(segment.sync(start..end)).unwrap();
                        if start < end {
                            // Whole pages, as msync writes them.
                            let from = (start - start % PAGE_SIZE) as usize;
                            let to = (end.div_ceil(PAGE_SIZE) * PAGE_SIZE).min(PROP_SIZE) as usize;
                            durable[from..to].copy_from_slice(&written[from..to]);
                        }
                    }
                }
                disk.check_invariants();
            }
            disk.crash(CrashKind::PowerLoss, &Rng::from_seed(seed));
            disk.check_invariants();
            let segment = disk.open_segment("commitlog/0", PROP_SIZE).unwrap();
            let mut after = vec![0u8; PROP_SIZE as usize];
            segment.read_at(0, &mut after).unwrap();
            for (index, sector) in after.chunks(SECTOR).enumerate() {
                let at = index * SECTOR..index * SECTOR + sector.len();
                let is_new = sector == &written[at.clone()];
                let is_old = sector == &durable[at.clone()];
                prop_assert!(is_new || is_old, "sector {} is a mix", index);
            }
            for (offset, (&w, &d)) in written.iter().zip(&durable).enumerate() {
                if w == d {
                    prop_assert_eq!(after[offset], w, "synced byte {} changed", offset);
                }
            }
        }
    }
}
