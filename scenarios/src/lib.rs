//! ferrocket's simulation scenarios and their seed runner.
//!
//! A run builds a cluster with the harness of `ferrocket-sim`, drives a workload of our own
//! producer and consumers against it while faults strike on a timeline, heals everything,
//! checks liveness, reads every queue back and judges the recorded [`history::History`]
//! with the [`checkers`]. Every run is a function of its seed.
//!
//! - [`history`], [`checkers`]: the record and the rules (plain code, tested in both builds).
//! - `story`, `catalog`, `swarm`, `runner` (simulated build only): the scenario engine, the
//!   named scenarios, seed-drawn fault plans, and the sweep behind the `scenarios` binary.

pub mod checkers;
pub mod history;

#[cfg(madsim)]
pub mod catalog;
#[cfg(madsim)]
pub mod runner;
#[cfg(madsim)]
pub mod story;
#[cfg(madsim)]
pub mod swarm;
