//! The shared Disk conformance suite run against `MmapDisk` in a temporary directory.

use ferrocket_disk::MmapDisk;

ferrocket_sim::disk_conformance_tests!(|| {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let disk = MmapDisk::shared(dir.path()).expect("open the disk");
    (dir, disk)
});
