//! The behaviour every [`Disk`] implementation shares, as a suite of async checks.
//!
//! The store is tested mostly against `SimDisk` and runs in production on `MmapDisk`; this
//! suite is what keeps the two interchangeable outside of crashes (the crash model itself is
//! tested in [`crate::disk`]). Each check takes a fresh, empty disk and panics with a message
//! on the first difference. [`disk_conformance_tests!`](crate::disk_conformance_tests)
//! turns the whole suite into one `#[tokio::test]` per check for a given disk factory, and
//! [`CHECKS`] lists the checks' names so a binding can verify it runs them all.

use std::io::ErrorKind;

use ferrocket_engine::disk::{DirEntry, Disk, PAGE_SIZE};

/// The names of every check in this module, in the order the macro runs them.
pub const CHECKS: &[&str] = &[
    "segment_is_created_zero_filled_and_reopened_with_size_check",
    "segment_rejects_empty_size",
    "segment_writes_are_visible_before_sync",
    "segment_handles_on_one_path_share_contents",
    "segment_rejects_out_of_bounds_access",
    "segment_syncs_ranges",
    "prepared_segment_opens_as_created_and_removal_discards_it",
    "list_dir_is_sorted_and_missing_dir_is_empty",
    "create_dir_all_is_idempotent",
    "remove_of_missing_paths_is_ok",
    "remove_dir_all_removes_the_subtree",
    "read_file_of_missing_file_is_none",
    "write_file_atomic_creates_and_replaces",
    "exists_reports_files_and_directories",
    "sync_dir_accepts_existing_and_missing_directories",
    "invalid_paths_are_rejected",
    "space_is_sane",
];

/// A new segment reads as zeros, exists at its full size, keeps its contents across a
/// reopen, and refuses a reopen at another size with `InvalidData`.
pub async fn segment_is_created_zero_filled_and_reopened_with_size_check(disk: &dyn Disk) {
    let size = 3 * PAGE_SIZE + 100; // deliberately not a whole number of pages
    let segment = disk
        .open_segment("store/commitlog/00000000000000000000", size)
        .expect("create segment");
    assert_eq!(segment.path(), "store/commitlog/00000000000000000000");
    assert_eq!(segment.size(), size);
    assert!(disk.exists("store/commitlog").expect("exists"));
    let mut buf = vec![0xAAu8; size as usize];
    segment.read_at(0, &mut buf).expect("read whole segment");
    assert!(buf.iter().all(|&b| b == 0), "a new segment is zero-filled");

    segment
        .write_at(size - 4, b"tail")
        .expect("write at the end");
    segment.sync(0..size).await.expect("sync");
    drop(segment);

    let reopened = disk
        .open_segment("store/commitlog/00000000000000000000", size)
        .expect("reopen");
    let mut tail = [0u8; 4];
    reopened.read_at(size - 4, &mut tail).expect("read tail");
    assert_eq!(&tail, b"tail", "contents survive a reopen");

    let err = disk
        .open_segment("store/commitlog/00000000000000000000", size * 2)
        .expect_err("reopen at another size");
    assert_eq!(err.kind(), ErrorKind::InvalidData);
}

/// A segment of zero bytes is refused with `InvalidInput`.
pub async fn segment_rejects_empty_size(disk: &dyn Disk) {
    let err = disk
        .open_segment("empty", 0)
        .expect_err("zero-size segment");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// A write is readable at once, through `read_at` and `read`, without any sync.
pub async fn segment_writes_are_visible_before_sync(disk: &dyn Disk) {
    let segment = disk.open_segment("cq/0", 2 * PAGE_SIZE).expect("create");
    // Straddles the page boundary.
    let data: Vec<u8> = (0..200u8).collect();
    segment.write_at(PAGE_SIZE - 100, &data).expect("write");
    let mut buf = vec![0u8; 200];
    segment.read_at(PAGE_SIZE - 100, &mut buf).expect("read_at");
    assert_eq!(buf, data);
    let bytes = segment.read(PAGE_SIZE - 100, 200).expect("read");
    assert_eq!(&bytes[..], &data[..]);
    let around = segment.read(PAGE_SIZE - 101, 202).expect("read around");
    assert_eq!(around[0], 0);
    assert_eq!(around[201], 0);
    // An overwrite replaces the bytes.
    segment.write_at(PAGE_SIZE - 100, b"xy").expect("overwrite");
    let bytes = segment.read(PAGE_SIZE - 100, 3).expect("read");
    assert_eq!(&bytes[..], &[b'x', b'y', 2]);
}

/// Two handles on the same path see each other's writes (a writer and a reader of the
/// commit log open it separately).
pub async fn segment_handles_on_one_path_share_contents(disk: &dyn Disk) {
    let writer = disk
        .open_segment("commitlog/0", PAGE_SIZE)
        .expect("open writer");
    let reader = disk
        .open_segment("commitlog/0", PAGE_SIZE)
        .expect("open reader");
    writer.write_at(10, b"shared").expect("write");
    let bytes = reader.read(10, 6).expect("read");
    assert_eq!(&bytes[..], b"shared");
}

/// Reads and writes past the end are `InvalidInput` and change nothing; an access that
/// ends exactly at the end is fine; offsets near `u64::MAX` do not overflow.
pub async fn segment_rejects_out_of_bounds_access(disk: &dyn Disk) {
    let size = PAGE_SIZE;
    let segment = disk.open_segment("index/0", size).expect("create");
    segment
        .write_at(size - 3, b"end")
        .expect("write ending at the end");
    segment.write_at(size, b"").expect("empty write at the end");

    let err = segment
        .write_at(size - 2, b"end")
        .expect_err("write past end");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = segment
        .write_at(size + 1, b"")
        .expect_err("write beyond end");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = segment
        .write_at(u64::MAX, b"x")
        .expect_err("overflowing offset");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    let mut buf = [0u8; 4];
    let err = segment
        .read_at(size - 3, &mut buf)
        .expect_err("read past end");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = segment
        .read_at(u64::MAX - 1, &mut buf)
        .expect_err("overflowing read");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = segment.read(size, 1).expect_err("read() past end");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    let mut tail = [0u8; 3];
    segment
        .read_at(size - 3, &mut tail)
        .expect("read ending at the end");
    assert_eq!(&tail, b"end", "the refused write changed nothing");
}

/// Syncs of sub-ranges, unaligned ranges, empty ranges and the whole segment succeed and
/// leave the contents readable; a range past the end is `InvalidInput`.
pub async fn segment_syncs_ranges(disk: &dyn Disk) {
    let size = 4 * PAGE_SIZE;
    let segment = disk.open_segment("commitlog/1", size).expect("create");
    segment.write_at(0, &[1u8; 100]).expect("write");
    segment
        .write_at(2 * PAGE_SIZE + 7, &[2u8; 5000])
        .expect("write");
    segment.sync(0..100).await.expect("sync a prefix");
    segment
        .sync(2 * PAGE_SIZE + 7..2 * PAGE_SIZE + 5007)
        .await
        .expect("sync an unaligned range");
    segment.sync(50..50).await.expect("sync an empty range");
    segment.sync(0..size).await.expect("sync everything");
    let err = segment
        .sync(0..size + 1)
        .await
        .expect_err("sync past the end");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let bytes = segment.read(2 * PAGE_SIZE + 7, 5000).expect("read");
    assert!(bytes.iter().all(|&b| b == 2));
}

/// A prepared segment opens (at once, or once its preparation ends) zero-filled at its size
/// and shares contents with later handles; a prepared segment already on disk at another size
/// is left alone; a bad path prepares nothing; removing a prepared path, or a directory above
/// it, leaves nothing behind.
pub async fn prepared_segment_opens_as_created_and_removal_discards_it(disk: &dyn Disk) {
    let size = 2 * PAGE_SIZE;
    let path = "store/commitlog/00000000000000008192";
    disk.prepare_segment(path, size, PAGE_SIZE);
    let segment = disk.open_segment(path, size).expect("open prepared");
    assert_eq!((segment.path(), segment.size()), (path, size));
    let mut buf = vec![0xAAu8; size as usize];
    segment.read_at(0, &mut buf).expect("read prepared");
    assert!(
        buf.iter().all(|&b| b == 0),
        "a prepared segment is zero-filled"
    );
    segment.write_at(10, b"abc").expect("write");
    let again = disk.open_segment(path, size).expect("reopen");
    let mut three = [0u8; 3];
    again.read_at(10, &mut three).expect("read");
    assert_eq!(
        &three, b"abc",
        "handles of a prepared segment share contents"
    );

    disk.prepare_segment(path, 4 * PAGE_SIZE, PAGE_SIZE);
    let kept = disk
        .open_segment(path, size)
        .expect("reopen at the size on disk");
    kept.read_at(10, &mut three).expect("read");
    assert_eq!(
        &three, b"abc",
        "preparing an existing segment changes nothing"
    );

    disk.prepare_segment("../outside", size, PAGE_SIZE);
    disk.prepare_segment("store/commitlog/00000000000000016384", size, PAGE_SIZE);
    disk.remove_file("store/commitlog/00000000000000016384")
        .expect("remove prepared");
    disk.prepare_segment("store/cq/T/0/00000000000000000000", size, PAGE_SIZE);
    disk.remove_dir_all("store/cq")
        .expect("remove prepared dir");
    disk.sync_dir("store").await.expect("sync");
    let names: Vec<String> = disk
        .list_dir("store/commitlog")
        .expect("list")
        .into_iter()
        .map(|entry| entry.name)
        .collect();
    assert_eq!(
        names,
        ["00000000000000008192"],
        "removed preparations stay removed"
    );
    assert!(!disk.exists("store/cq").expect("exists"));
}

/// Listings are sorted by name, flag directories, and a missing directory lists as empty.
pub async fn list_dir_is_sorted_and_missing_dir_is_empty(disk: &dyn Disk) {
    assert_eq!(disk.list_dir("nothing/here").expect("list missing"), vec![]);
    assert_eq!(disk.list_dir("").expect("list empty root"), vec![]);
    for name in [
        "00000000001073741824",
        "00000000000000000000",
        "00000000002147483648",
    ] {
        disk.open_segment(&format!("store/commitlog/{name}"), PAGE_SIZE)
            .expect("create");
    }
    disk.create_dir_all("store/commitlog/b-dir").expect("mkdir");
    disk.write_file_atomic("store/commitlog/a-file", b"x")
        .await
        .expect("write file");
    let listed = disk.list_dir("store/commitlog").expect("list");
    let expected = [
        ("00000000000000000000", false),
        ("00000000001073741824", false),
        ("00000000002147483648", false),
        ("a-file", false),
        ("b-dir", true),
    ]
    .map(|(name, is_dir)| DirEntry {
        name: name.to_owned(),
        is_dir,
    });
    assert_eq!(listed, expected);
    assert_eq!(
        disk.list_dir("store/").expect("trailing slash"),
        vec![DirEntry {
            name: "commitlog".to_owned(),
            is_dir: true
        }]
    );
    assert_eq!(
        disk.list_dir("").expect("list root"),
        vec![DirEntry {
            name: "store".to_owned(),
            is_dir: true
        }]
    );
}

/// Creating an existing directory again is not an error and keeps its contents.
pub async fn create_dir_all_is_idempotent(disk: &dyn Disk) {
    disk.create_dir_all("config/sub").expect("mkdir");
    disk.write_file_atomic("config/sub/topics.json", b"{}")
        .await
        .expect("write");
    disk.create_dir_all("config/sub").expect("mkdir again");
    disk.create_dir_all("config").expect("mkdir parent");
    disk.create_dir_all("").expect("mkdir root");
    assert!(disk.exists("config/sub").expect("exists"));
    assert_eq!(
        disk.read_file("config/sub/topics.json").expect("read"),
        Some(b"{}".to_vec())
    );
}

/// Removing a missing file or directory is `Ok`, also when its parent is missing.
pub async fn remove_of_missing_paths_is_ok(disk: &dyn Disk) {
    disk.remove_file("no-such-file")
        .expect("remove missing file");
    disk.remove_file("no/such/dir/file")
        .expect("remove under missing dir");
    disk.remove_dir_all("no-such-dir")
        .expect("remove missing dir");
    disk.remove_dir_all("no/such/dir")
        .expect("remove nested missing dir");

    disk.write_file_atomic("abort", b"").await.expect("write");
    disk.remove_file("abort").expect("remove");
    assert!(!disk.exists("abort").expect("exists"));
    disk.remove_file("abort").expect("remove twice");
}

/// `remove_dir_all` removes a directory with everything below it, and nothing else.
pub async fn remove_dir_all_removes_the_subtree(disk: &dyn Disk) {
    disk.open_segment("consumequeue/TopicA/0/00000000000000000000", PAGE_SIZE)
        .expect("create");
    disk.open_segment("consumequeue/TopicA/1/00000000000000000000", PAGE_SIZE)
        .expect("create");
    disk.open_segment("consumequeue/TopicB/0/00000000000000000000", PAGE_SIZE)
        .expect("create");
    disk.remove_dir_all("consumequeue/TopicA").expect("remove");
    assert!(!disk.exists("consumequeue/TopicA").expect("exists"));
    assert!(
        !disk
            .exists("consumequeue/TopicA/0/00000000000000000000")
            .expect("exists")
    );
    assert!(
        disk.exists("consumequeue/TopicB/0/00000000000000000000")
            .expect("exists")
    );
    disk.sync_dir("consumequeue").await.expect("sync dir");
    // The directory can be created again, empty.
    let segment = disk
        .open_segment("consumequeue/TopicA/0/00000000000000000000", PAGE_SIZE)
        .expect("recreate");
    let bytes = segment.read(0, 16).expect("read");
    assert!(bytes.iter().all(|&b| b == 0));
}

/// Reading a file that does not exist is `Ok(None)`.
pub async fn read_file_of_missing_file_is_none(disk: &dyn Disk) {
    assert_eq!(disk.read_file("checkpoint").expect("read"), None);
    assert_eq!(disk.read_file("config/missing.json").expect("read"), None);
}

/// `write_file_atomic` creates a file (and its parent directories) and replaces it whole,
/// including with shorter or empty contents.
pub async fn write_file_atomic_creates_and_replaces(disk: &dyn Disk) {
    disk.write_file_atomic("config/topics.json", b"{\"version\":1,\"long\":true}")
        .await
        .expect("create");
    assert_eq!(
        disk.read_file("config/topics.json").expect("read"),
        Some(b"{\"version\":1,\"long\":true}".to_vec())
    );
    disk.write_file_atomic("config/topics.json", b"{\"version\":2}")
        .await
        .expect("replace");
    assert_eq!(
        disk.read_file("config/topics.json").expect("read"),
        Some(b"{\"version\":2}".to_vec())
    );
    disk.write_file_atomic("config/topics.json", b"")
        .await
        .expect("replace with empty");
    assert_eq!(
        disk.read_file("config/topics.json").expect("read"),
        Some(Vec::new())
    );
    let big: Vec<u8> = (0..3 * PAGE_SIZE as usize + 17)
        .map(|i| (i % 251) as u8)
        .collect();
    disk.write_file_atomic("checkpoint", &big)
        .await
        .expect("write multi-page file");
    assert_eq!(disk.read_file("checkpoint").expect("read"), Some(big));
}

/// `exists` is true for files and directories (with or without a trailing slash) and false
/// for missing paths.
pub async fn exists_reports_files_and_directories(disk: &dyn Disk) {
    assert!(disk.exists("").expect("root exists"));
    assert!(!disk.exists("store").expect("missing dir"));
    disk.open_segment("store/index/0", PAGE_SIZE)
        .expect("create");
    assert!(disk.exists("store").expect("dir"));
    assert!(disk.exists("store/index/").expect("dir with slash"));
    assert!(disk.exists("store/index/0").expect("segment"));
    assert!(!disk.exists("store/index/1").expect("missing segment"));
    disk.write_file_atomic("store/checkpoint", b"c")
        .await
        .expect("write");
    assert!(disk.exists("store/checkpoint").expect("file"));
}

/// `sync_dir` succeeds on the root, on an existing directory, and on a missing one.
pub async fn sync_dir_accepts_existing_and_missing_directories(disk: &dyn Disk) {
    disk.create_dir_all("store/config").expect("mkdir");
    disk.sync_dir("").await.expect("sync root");
    disk.sync_dir("store/config").await.expect("sync dir");
    disk.remove_dir_all("store/config").expect("remove");
    disk.sync_dir("store/config")
        .await
        .expect("sync removed dir");
    disk.sync_dir("never/existed")
        .await
        .expect("sync missing dir");
}

/// Absolute paths, `..` and `.` components and empty components are `InvalidInput`, and a
/// file operation on the root is too.
pub async fn invalid_paths_are_rejected(disk: &dyn Disk) {
    for bad in ["/etc/passwd", "../escape", "a/../../b", "./a", "a//b"] {
        let err = disk.open_segment(bad, PAGE_SIZE).expect_err(bad);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "open_segment({bad:?})");
        let err = disk.read_file(bad).expect_err(bad);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "read_file({bad:?})");
        let err = disk.list_dir(bad).expect_err(bad);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "list_dir({bad:?})");
        let err = disk.write_file_atomic(bad, b"x").await.expect_err(bad);
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidInput,
            "write_file_atomic({bad:?})"
        );
        let err = disk.remove_dir_all(bad).expect_err(bad);
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidInput,
            "remove_dir_all({bad:?})"
        );
    }
    let err = disk.read_file("").expect_err("read the root");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = disk.remove_dir_all("").expect_err("remove the root");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = disk
        .open_segment("", PAGE_SIZE)
        .expect_err("segment at the root");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// `space` reports a non-empty device with no more available than its total.
pub async fn space_is_sane(disk: &dyn Disk) {
    let space = disk.space().expect("space");
    assert!(space.total > 0, "{space:?}");
    assert!(space.available <= space.total, "{space:?}");
    let ratio = space.used_ratio();
    assert!((0.0..=1.0).contains(&ratio), "{space:?}");
}

/// Expands to one `#[tokio::test]` per check of [`crate::disk_conformance`].
///
/// `$make` is a closure (or function) returning `(guard, disk)`: the disk is an
/// `Arc<dyn Disk>` (or anything that derefs to a `Disk`), and the guard (for example a
/// `tempfile::TempDir`) is kept alive until the check ends.
///
/// ```text
/// ferrocket_sim::disk_conformance_tests!(|| ((), SimDisk::new().shared()));
/// ```
#[macro_export]
macro_rules! disk_conformance_tests {
    (@each $make:expr; $($name:ident,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (_guard, disk) = ($make)();
                $crate::disk_conformance::$name(&*disk).await;
            }
        )*

        /// The macro runs every check the suite lists.
        #[test]
        fn conformance_suite_is_complete() {
            let expanded: &[&str] = &[$(stringify!($name)),*];
            assert_eq!(expanded, $crate::disk_conformance::CHECKS);
        }
    };
    ($make:expr) => {
        $crate::disk_conformance_tests!(@each $make;
            segment_is_created_zero_filled_and_reopened_with_size_check,
            segment_rejects_empty_size,
            segment_writes_are_visible_before_sync,
            segment_handles_on_one_path_share_contents,
            segment_rejects_out_of_bounds_access,
            segment_syncs_ranges,
            prepared_segment_opens_as_created_and_removal_discards_it,
            list_dir_is_sorted_and_missing_dir_is_empty,
            create_dir_all_is_idempotent,
            remove_of_missing_paths_is_ok,
            remove_dir_all_removes_the_subtree,
            read_file_of_missing_file_is_none,
            write_file_atomic_creates_and_replaces,
            exists_reports_files_and_directories,
            sync_dir_accepts_existing_and_missing_directories,
            invalid_paths_are_rejected,
            space_is_sane,
        );
    };
}
