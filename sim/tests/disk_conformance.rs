//! The shared Disk conformance suite run against `SimDisk`.

use ferrocket_sim::SimDisk;

ferrocket_sim::disk_conformance_tests!(|| {
    let disk = SimDisk::new();
    // A fresh disk must also be internally consistent after every check; the guard checks it
    // when the test ends.
    (InvariantGuard(disk.clone()), disk.shared())
});

/// Runs `SimDisk::check_invariants` when a conformance check ends successfully.
struct InvariantGuard(std::sync::Arc<SimDisk>);

impl Drop for InvariantGuard {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.0.check_invariants();
        }
    }
}
