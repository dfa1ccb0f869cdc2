//! Deterministic synchronization helpers.
//!
//! [`Progress`] is a monotonic position (a durable offset, a written offset) that tasks wait
//! on. It replaces `tokio::sync::watch` in the engine: watch spreads its waiters over
//! several notifiers chosen by tokio's own thread-local RNG, so the order in which waiters
//! wake — and with it a simulated run — would depend on randomness outside the simulator's
//! seed. One `Notify` wakes its waiters in the order they registered.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// A monotonic `u64` position with waiters. See the module docs.
#[derive(Debug, Default)]
pub struct Progress {
    value: AtomicU64,
    changed: Notify,
}

impl Progress {
    /// A position starting at `value`.
    pub fn new(value: u64) -> Self {
        Self {
            value: AtomicU64::new(value),
            changed: Notify::new(),
        }
    }

    /// The current position.
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Acquire)
    }

    /// Moves the position forward to `value` (never back) and wakes the waiters.
    pub fn advance_to(&self, value: u64) {
        self.value.fetch_max(value, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    /// Sets the position (it may go back: recovery cuts a log) and wakes the waiters.
    pub fn set(&self, value: u64) {
        self.value.store(value, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Wakes the waiters without moving, so they re-check a condition of their own.
    pub fn wake(&self) {
        self.changed.notify_waiters();
    }

    /// Waits until `done(position)` holds, and returns that position.
    pub async fn wait_until(&self, done: impl Fn(u64) -> bool) -> u64 {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Register before reading, so a change between the read and the wait wakes us.
            notified.as_mut().enable();
            let value = self.get();
            if done(value) {
                return value;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn waiters_wake_when_the_position_passes_their_mark() {
        let progress = Arc::new(Progress::new(0));
        let waiter = {
            let progress = progress.clone();
            tokio::spawn(async move { progress.wait_until(|v| v >= 10).await })
        };
        tokio::task::yield_now().await;
        progress.advance_to(5);
        progress.advance_to(3);
        assert_eq!(progress.get(), 5, "advance never goes back");
        progress.advance_to(12);
        assert_eq!(waiter.await.unwrap(), 12);
        progress.set(4);
        assert_eq!(progress.get(), 4, "set may go back");
        assert_eq!(progress.wait_until(|v| v == 4).await, 4);
    }
}
