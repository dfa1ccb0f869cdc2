//! The one place that reads the async runtime's monotonic clock.
//!
//! The engine never reads time itself (DESIGN.md §2): it is handed a `Clock`. The bindings
//! that hand it one live outside it and read time here — production's `SystemClock`
//! (`ferrocket-net`) and the test clocks of the engine's own unit tests, which cannot use
//! `ferrocket-net` (it depends on the engine, so the tests would see a second copy of the
//! `Clock` trait). This crate depends on nothing of the project, so both can use it.
//!
//! The runtime's clock is tokio's, virtual under `--cfg madsim` and pausable in tokio tests.

/// The current instant of the async runtime's monotonic clock.
pub fn now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// Completes at `deadline` on the async runtime's timer.
pub async fn sleep_until(deadline: tokio::time::Instant) {
    tokio::time::sleep_until(deadline).await;
}
