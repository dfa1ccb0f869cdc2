//! ferrocket's simulation bindings: the pieces that let the unchanged engine run inside a
//! madsim simulation.
//!
//! - [`clock`]: [`SkewedClock`], a node clock whose wall time can be skewed and jumped.
//! - [`disk`]: [`SimDisk`], an in-memory disk with the crash model of the engine's Disk
//!   contract (power loss, torn pages, undone creations and removals) and fault injection.
//! - [`disk_conformance`]: the behaviour every `Disk` implementation shares, as async
//!   checks run against both `SimDisk` and the production `MmapDisk`.
//! - `cluster` (simulated build only): the cluster harness — name server and brokers as
//!   madsim nodes configured like the binaries, and the faults scenarios inject.

pub mod clock;
#[cfg(madsim)]
pub mod cluster;
pub mod disk;
pub mod disk_conformance;

pub use clock::SkewedClock;
pub use disk::{CrashKind, PowerLossOutcome, SimDisk, SimDiskFaults, SimDiskStats, SimSegment};
