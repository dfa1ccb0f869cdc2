//! The Clock trait: the only source of time for protocol code.
//!
//! Two kinds of time are kept apart on purpose:
//! - the monotonic [`Instant`] drives every timeout, interval and expiry;
//! - the wall clock in milliseconds (`wall_ms`) is used only for what RocketMQ puts on the
//!   wire or on disk: born and store timestamps, the file-expiry hour, timestamp → offset
//!   searches, data versions.
//!
//! Production reads the host clocks (`ferrocket-net`). The simulator runs the same code on
//! madsim's virtual time and skews or jumps each node's wall clock independently.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

/// A monotonic point in time. Under `--cfg madsim` this is madsim's virtual instant.
pub use tokio::time::Instant;

/// A source of monotonic and wall-clock time, and of sleeps.
pub trait Clock: Send + Sync + Debug + 'static {
    /// The current monotonic instant.
    fn instant(&self) -> Instant;

    /// Milliseconds since the Unix epoch, as this node believes them to be. May jump (NTP,
    /// simulated skew): never use it to measure an interval.
    fn wall_ms(&self) -> i64;

    /// A future that completes at `deadline` (immediately if it has passed).
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()>;
}

/// The clock shared by every component of one process (or one simulated node).
pub type SharedClock = Arc<dyn Clock>;

/// The error of [`ClockExt::timeout`]: the deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline elapsed")]
pub struct Elapsed;

/// How far a sleep too long for an [`Instant`] reaches: about 30 years, as tokio's own.
pub const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// Conveniences built on [`Clock`].
pub trait ClockExt: Clock {
    /// Sleeps for `duration`. A duration too long for an [`Instant`] (a setting of
    /// `u64::MAX` ms, say) sleeps for [`FAR_FUTURE`] instead of overflowing.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        let now = self.instant();
        let deadline = now
            .checked_add(duration)
            .unwrap_or_else(|| now + FAR_FUTURE);
        self.sleep_until(deadline)
    }

    /// Runs `future` until it finishes or `duration` passes, whichever is first.
    fn timeout<F: Future>(
        &self,
        duration: Duration,
        future: F,
    ) -> impl Future<Output = Result<F::Output, Elapsed>> {
        let deadline = self.sleep(duration);
        async move {
            tokio::select! {
                biased;
                output = future => Ok(output),
                () = deadline => Err(Elapsed),
            }
        }
    }
}

impl<C: Clock + ?Sized> ClockExt for C {}

/// Time for the engine's own tests, which cannot use the production clock of `ferrocket-net`:
/// they read the runtime's clock through `ferrocket-runtime-clock`, as that clock does.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
    use std::time::Duration;

    use futures::FutureExt;
    use futures::future::BoxFuture;

    use super::{Clock, Instant};

    /// The current instant of the test's runtime (virtual under madsim), read outside the
    /// engine as production's clock is.
    pub(crate) fn now() -> Instant {
        ferrocket_runtime_clock::now()
    }

    /// A clock on the test runtime's time whose wall clock is set by the test.
    #[derive(Debug)]
    pub(crate) struct TestClock {
        wall_ms: AtomicI64,
    }

    impl TestClock {
        /// A clock whose wall time reads `wall_ms` until changed.
        pub(crate) fn at(wall_ms: i64) -> Arc<Self> {
            Arc::new(Self {
                wall_ms: AtomicI64::new(wall_ms),
            })
        }
    }

    impl Clock for TestClock {
        fn instant(&self) -> Instant {
            now()
        }

        fn wall_ms(&self) -> i64 {
            self.wall_ms.load(Ordering::SeqCst)
        }

        fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
            ferrocket_runtime_clock::sleep_until(deadline).boxed()
        }
    }

    /// A clock that stands still until the test moves it: [`StepClock::advance`] moves the
    /// monotonic and the wall time together. For rules about how long something took, tested
    /// without real waiting. A sleep whose deadline has passed when it is created completes
    /// at once; any other never completes (`advance` does not wake it), so code under test
    /// must not wait on timers.
    #[derive(Debug)]
    pub(crate) struct StepClock {
        origin: Instant,
        wall_origin_ms: i64,
        elapsed_nanos: AtomicU64,
    }

    impl StepClock {
        /// A clock whose wall time reads `wall_ms` until advanced.
        pub(crate) fn at(wall_ms: i64) -> Arc<Self> {
            Arc::new(Self {
                origin: now(),
                wall_origin_ms: wall_ms,
                elapsed_nanos: AtomicU64::new(0),
            })
        }

        /// Moves time forward by `by`.
        pub(crate) fn advance(&self, by: Duration) {
            let nanos =
                u64::try_from(by.as_nanos()).expect("a test advances by less than 584 years");
            self.elapsed_nanos.fetch_add(nanos, Ordering::SeqCst);
        }

        fn elapsed(&self) -> Duration {
            Duration::from_nanos(self.elapsed_nanos.load(Ordering::SeqCst))
        }
    }

    impl Clock for StepClock {
        fn instant(&self) -> Instant {
            self.origin + self.elapsed()
        }

        fn wall_ms(&self) -> i64 {
            self.wall_origin_ms + self.elapsed().as_millis() as i64
        }

        fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
            if deadline <= self.instant() {
                futures::future::ready(()).boxed()
            } else {
                futures::future::pending().boxed()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::FutureExt;

    use super::ClockExt;
    use super::test_support::StepClock;

    #[tokio::test]
    async fn a_sleep_too_long_for_an_instant_waits_instead_of_panicking() {
        let clock = StepClock::at(1_700_000_000_000);
        assert!(clock.sleep(Duration::MAX).now_or_never().is_none());
        let timed = clock.timeout(Duration::from_millis(u64::MAX), async { 7 });
        assert_eq!(timed.now_or_never(), Some(Ok(7)));
        assert!(clock.sleep(Duration::ZERO).now_or_never().is_some());
    }
}
