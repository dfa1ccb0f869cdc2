//! `mqbench`, ferrocket's load generator: drives any RocketMQ 4.x broker (ferrocket's or
//! Java's) through ferrocket's own client over the remoting protocol, so that two brokers are
//! compared under exactly the same client code and client CPU cost.
//!
//! Workloads (`cli`): `produce` (closed loop with a fixed number of requests in flight, or
//! open loop at a fixed rate with latency measured from each request's scheduled start;
//! single or batched sends), `consume` (push or pull consumer, e.g. draining a backlog) and
//! `e2e` (both at once, end-to-end latency from the send time carried in each body).
//!
//! How it fits together: `topic` creates the benchmark topic with a fixed queue count;
//! `produce` and `consume` run the clients; `control` holds the run's timeline (warm-up,
//! measured window) and stop signal; `stats` keeps counts, errors by response code and HDR
//! histograms per second and for the measured window; `procstat` reads the CPU time and
//! memory of the load generator and of the broker (`--broker-pid`); `run` strings a workload together and
//! builds the summary, printed as text or JSON (`--json`).
//!
//! Scope: the measuring code uses the tokio clock and the host's wall clock directly. It is
//! built for production only in practice; under `--cfg madsim` it compiles unchanged, like
//! the server binaries, but is not run.

pub mod body;
pub mod cli;
pub mod consume;
pub mod control;
pub mod procstat;
pub mod produce;
pub mod run;
pub mod stats;
pub mod topic;

/// Writes a progress or diagnostic line to stderr. A failing stderr (a closed pipe, a full
/// disk under a redirected log) loses the line but never stops the run: the summary still
/// comes out on stdout.
pub fn progress(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
