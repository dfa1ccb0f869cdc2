//! ferrocket's protocol logic, written once against abstract time, network and disk.
//!
//! Everything a RocketMQ 4.x name server, broker and client *decide* lives here; nothing here
//! touches the operating system directly. Time comes in through [`clock::Clock`], sockets
//! through [`net::Net`], files through [`disk::Disk`] and randomness through [`rng::Rng`].
//! Production binds those traits to tokio and memory-mapped files (`ferrocket-net`,
//! `ferrocket-disk`); the simulator binds them to madsim and an in-memory disk with a crash
//! model (`ferrocket-sim`). The same code runs in both, so what the simulator proves about a
//! crash or a partition holds for the binaries.
//!
//! `engine/clippy.toml` keeps this crate free of ambient time, threads, files, sockets and
//! unseeded randomness.

pub mod broker;
pub mod client;
pub mod clock;
pub mod config;
pub mod disk;
#[cfg(madsim)]
pub mod fault_points;
pub mod namesrv;
pub mod net;
pub mod protocol;
pub mod remoting;
pub mod rng;
pub mod store;
pub mod sync;

/// What a process (or a simulated node) gives its components: time, network, disk and
/// seeded randomness.
#[derive(Debug, Clone)]
pub struct Env {
    /// The clock.
    pub clock: clock::SharedClock,
    /// The network.
    pub net: net::SharedNet,
    /// The disk.
    pub disk: disk::SharedDisk,
    /// Seeded randomness.
    pub rng: rng::SharedRng,
}
