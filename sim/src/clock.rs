//! A node clock whose wall time can be skewed and jumped: the simulator's per-node clock.
//!
//! The monotonic instant is the runtime's (madsim's virtual time in simulation), shared by
//! every node as real monotonic clocks effectively are; only the wall clock — what RocketMQ
//! writes into records and file names and compares for expiry — differs per node. A jump
//! models an NTP step; a skew models a node whose clock is simply wrong.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use ferrocket_engine::clock::{Clock, Instant};
use ferrocket_net::SystemClock;
use futures::future::BoxFuture;

/// A clock with an adjustable wall-clock offset.
#[derive(Debug, Default)]
pub struct SkewedClock {
    base: SystemClock,
    offset_ms: AtomicI64,
}

impl SkewedClock {
    /// A clock `offset_ms` ahead of (negative: behind) the runtime's wall clock.
    pub fn new(offset_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            base: SystemClock,
            offset_ms: AtomicI64::new(offset_ms),
        })
    }

    /// Moves the wall clock by `delta_ms` (a step: may go backwards).
    pub fn jump(&self, delta_ms: i64) {
        self.offset_ms.fetch_add(delta_ms, Ordering::AcqRel);
    }

    /// The current offset from the runtime's wall clock.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Acquire)
    }
}

impl Clock for SkewedClock {
    fn instant(&self) -> Instant {
        self.base.instant()
    }

    fn wall_ms(&self) -> i64 {
        self.base.wall_ms() + self.offset_ms()
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        self.base.sleep_until(deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jumps_move_only_the_wall_clock() {
        let clock = SkewedClock::new(1_000);
        let wall = clock.wall_ms();
        let real = SystemClock.wall_ms();
        assert!((wall - real - 1_000).abs() < 1_000);
        clock.jump(-5_000);
        assert_eq!(clock.offset_ms(), -4_000);
        assert!(clock.wall_ms() < real);
    }
}
