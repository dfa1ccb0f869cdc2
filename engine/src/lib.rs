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

pub mod clock;
pub mod disk;
pub mod net;
pub mod remoting;
pub mod rng;
