//! The clock of a run: when it started, where the warm-up ends and the measured window
//! begins and ends, how a monotonic instant maps to wall-clock time, and the stop signal
//! (Ctrl-C, a reached count, the end of a drain) every task of the run watches.
//!
//! Every send and every consumed message is attributed to a [`Phase`] by the instant its send
//! started (or was scheduled to start), so a send begun during the warm-up never counts, and
//! a send begun inside the window counts even if it completes after the window closed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio::time::Instant;

/// Where an instant falls in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the measured window: recorded in the live lines only.
    Warmup,
    /// Inside the measured window: recorded in the summary.
    Measured,
    /// After the measured window: nothing more is sent.
    Over,
}

/// The phases of a run, fixed when it starts.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    /// When the run started (the warm-up began).
    pub start: Instant,
    /// When the warm-up ends and the measured window begins.
    pub measure_start: Instant,
    /// When the measured window ends; `None` when only a message count ends it.
    pub measure_end: Option<Instant>,
}

impl Timeline {
    /// A run starting now with `warmup` before a measured window of `duration` (unbounded
    /// when `None`).
    pub fn starting_now(warmup: Duration, duration: Option<Duration>) -> Self {
        let start = Instant::now();
        let measure_start = start + warmup;
        Self {
            start,
            measure_start,
            measure_end: duration.map(|duration| measure_start + duration),
        }
    }

    /// The phase of instant `at`.
    pub fn phase(&self, at: Instant) -> Phase {
        if at < self.measure_start {
            Phase::Warmup
        } else if self.measure_end.is_some_and(|end| at >= end) {
            Phase::Over
        } else {
            Phase::Measured
        }
    }
}

/// Maps monotonic instants to wall-clock time, so that timestamps written into bodies by one
/// process can be compared with the wall clock of another process on the same host.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    origin: Instant,
    origin_unix_ns: u64,
}

impl WallClock {
    /// A mapping anchored at the current time.
    pub fn new() -> Self {
        let origin_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
            });
        Self {
            origin: Instant::now(),
            origin_unix_ns,
        }
    }

    /// Wall-clock nanoseconds since the Unix epoch at instant `at`.
    pub fn unix_ns(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin).as_nanos();
        self.origin_unix_ns
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

/// A one-way stop signal shared by the tasks of a run.
#[derive(Debug, Default)]
pub struct Stop {
    stopped: AtomicBool,
    notify: Notify,
}

impl Stop {
    /// Signals every task to stop.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether the signal was given.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Waits until the signal is given.
    pub async fn stopped(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the flag is read, so a stop between the two is not missed.
            notified.as_mut().enable();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }

    /// Sleeps until `deadline`; `false` if the stop signal came first.
    pub async fn sleep_until(&self, deadline: Instant) -> bool {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => !self.is_stopped(),
            () = self.stopped() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instant_is_warmup_then_measured_then_over() {
        let timeline = Timeline::starting_now(Duration::from_secs(2), Some(Duration::from_secs(3)));
        let at = |seconds| timeline.start + Duration::from_secs(seconds);
        assert_eq!(timeline.phase(at(1)), Phase::Warmup);
        assert_eq!(timeline.phase(at(2)), Phase::Measured);
        assert_eq!(timeline.phase(at(4)), Phase::Measured);
        assert_eq!(timeline.phase(at(5)), Phase::Over);
    }

    #[test]
    fn a_count_bounded_window_never_ends_by_time() {
        let timeline = Timeline::starting_now(Duration::ZERO, None);
        let far = timeline.start + Duration::from_secs(1_000_000);
        assert_eq!(timeline.phase(far), Phase::Measured);
    }

    #[test]
    fn wall_clock_advances_with_the_instant() {
        let clock = WallClock::new();
        let later = Instant::now() + Duration::from_millis(1500);
        let now = clock.unix_ns(Instant::now());
        assert!(clock.unix_ns(later) >= now + 1_400_000_000);
    }
}
