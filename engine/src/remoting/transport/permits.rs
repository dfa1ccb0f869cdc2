//! In-flight permits for async and oneway invocations (`semaphoreAsync`,
//! `semaphoreOneway`): bound how many such requests one client or server has outstanding,
//! so a flood of them waits (up to its timeout) instead of growing without limit.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::RemotingError;
use crate::clock::{ClockExt, SharedClock};

/// The two permit pools of a client or server.
#[derive(Debug, Clone)]
pub(crate) struct InvokePermits {
    clock: SharedClock,
    async_permits: Arc<Semaphore>,
    oneway_permits: Arc<Semaphore>,
}

impl InvokePermits {
    /// Pools of `async_count` and `oneway_count` permits.
    pub(crate) fn new(clock: SharedClock, async_count: usize, oneway_count: usize) -> Self {
        Self {
            clock,
            async_permits: Arc::new(Semaphore::new(async_count.max(1))),
            oneway_permits: Arc::new(Semaphore::new(oneway_count.max(1))),
        }
    }

    /// A permit for an async invocation, waiting at most `timeout`.
    pub(crate) async fn acquire_async(
        &self,
        timeout: Duration,
    ) -> Result<OwnedSemaphorePermit, RemotingError> {
        self.acquire(&self.async_permits, timeout, "invokeAsyncImpl")
            .await
    }

    /// A permit for a oneway invocation, waiting at most `timeout`.
    pub(crate) async fn acquire_oneway(
        &self,
        timeout: Duration,
    ) -> Result<OwnedSemaphorePermit, RemotingError> {
        self.acquire(&self.oneway_permits, timeout, "invokeOnewayImpl")
            .await
    }

    async fn acquire(
        &self,
        semaphore: &Arc<Semaphore>,
        timeout: Duration,
        what: &str,
    ) -> Result<OwnedSemaphorePermit, RemotingError> {
        if let Ok(permit) = semaphore.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if timeout.is_zero() {
            return Err(RemotingError::TooManyRequests(format!(
                "{what} invoke too fast"
            )));
        }
        match self
            .clock
            .timeout(timeout, semaphore.clone().acquire_owned())
            .await
        {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(RemotingError::TooManyRequests(format!(
                "{what} tryAcquire semaphore timeout, {}ms",
                timeout.as_millis()
            ))),
        }
    }
}
