//! Queue locks of orderly consumers (`RebalanceLockManager`): a consumer of a group locks
//! the queues it consumes in order, so that no other consumer of the group takes them while
//! it holds them. A lock expires 60 s after its last renewal (consumers renew every 20 s).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::clock::Instant;
use crate::protocol::heartbeat::MessageQueue;

/// A lock not renewed for this long is free (`rocketmq.broker.rebalance.lockMaxLiveTime`).
pub const REBALANCE_LOCK_MAX_LIVE_TIME: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct LockEntry {
    client_id: String,
    last_update: Instant,
}

impl LockEntry {
    fn is_expired(&self, now: Instant) -> bool {
        now > self.last_update + REBALANCE_LOCK_MAX_LIVE_TIME
    }
}

/// The lock table. See the module docs.
#[derive(Debug, Default)]
pub struct RebalanceLockManager {
    table: Mutex<BTreeMap<String, BTreeMap<MessageQueue, LockEntry>>>,
}

impl RebalanceLockManager {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Locks (or renews) each queue of `mqs` for `client_id` unless another client holds an
    /// unexpired lock on it; returns the queues the client now holds.
    pub fn try_lock_batch(
        &self,
        group: &str,
        mqs: &BTreeSet<MessageQueue>,
        client_id: &str,
        now: Instant,
    ) -> BTreeSet<MessageQueue> {
        let mut table = self.lock();
        let locks = table.entry(group.to_owned()).or_default();
        let mut locked = BTreeSet::new();
        for mq in mqs {
            let free_or_ours = match locks.get(mq) {
                None => true,
                Some(entry) => entry.client_id == client_id || entry.is_expired(now),
            };
            if free_or_ours {
                locks.insert(
                    mq.clone(),
                    LockEntry {
                        client_id: client_id.to_owned(),
                        last_update: now,
                    },
                );
                locked.insert(mq.clone());
            }
        }
        locked
    }

    /// Releases the locks `client_id` holds on `mqs`.
    pub fn unlock_batch(&self, group: &str, mqs: &BTreeSet<MessageQueue>, client_id: &str) {
        let mut table = self.lock();
        if let Some(locks) = table.get_mut(group) {
            for mq in mqs {
                if locks.get(mq).is_some_and(|e| e.client_id == client_id) {
                    locks.remove(mq);
                }
            }
        }
    }

    /// Whether `client_id` holds an unexpired lock on `mq`.
    pub fn is_locked(&self, group: &str, mq: &MessageQueue, client_id: &str, now: Instant) -> bool {
        self.lock()
            .get(group)
            .and_then(|locks| locks.get(mq))
            .is_some_and(|e| e.client_id == client_id && !e.is_expired(now))
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, BTreeMap<MessageQueue, LockEntry>>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::test_support;

    fn mq(id: i32) -> MessageQueue {
        MessageQueue {
            broker_name: "b".into(),
            queue_id: id,
            topic: "T".into(),
        }
    }

    #[tokio::test]
    async fn a_queue_is_held_by_one_client_until_released_or_expired() {
        let manager = RebalanceLockManager::new();
        let now = test_support::now();
        let both: BTreeSet<_> = [mq(0), mq(1)].into_iter().collect();
        assert_eq!(manager.try_lock_batch("g", &both, "c1", now), both);
        assert!(manager.try_lock_batch("g", &both, "c2", now).is_empty());
        manager.unlock_batch("g", &[mq(0)].into_iter().collect(), "c1");
        assert_eq!(
            manager.try_lock_batch("g", &both, "c2", now),
            [mq(0)].into_iter().collect()
        );
        let later = now + REBALANCE_LOCK_MAX_LIVE_TIME + Duration::from_secs(1);
        assert_eq!(manager.try_lock_batch("g", &both, "c2", later), both);
        assert!(manager.is_locked("g", &mq(1), "c2", later));
        assert!(!manager.is_locked("g", &mq(1), "c1", later));
    }
}
