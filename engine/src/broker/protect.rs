//! Slow-consumer protection (`BrokerController.protectBroker`): a consumer group reading far
//! behind the end of the commit log makes the broker read cold data from disk, evicting the
//! page cache that producers and up-to-date consumers rely on. With
//! `disableConsumeIfConsumerReadSlowly` (off by default) such a group is switched off.
//!
//! Where it sits: every pull that reads consume-queue units records how far the last unit it
//! examined lies behind the end of the commit log ([`DiskFallBehindTable::record`]; Java's
//! `recordDiskFallBehindSize` into the "fall size" moment stats keyed `queueId@topic@group`).
//! Every 3 minutes [`protect_broker`] disables each group with a queue more than
//! `consumerFallbehindThreshold` bytes (16 GiB) behind: its `consumeEnable` is turned off and
//! the group table persisted, after which its pulls are refused NO_PERMISSION. Turning it
//! back on is the operator's job (UPDATE_AND_CREATE_SUBSCRIPTIONGROUP).
//!
//! As Java's moment stats, the recorded values are forgotten every 5 minutes, so a group is
//! judged by what its consumers read lately, and the table holds only (group, topic, queue)
//! triples pulled in the last window. Deliberate difference: the disabled setting is written
//! to `subscriptionGroup.json` at once (Java bumps the data version and leaves the write to
//! the next persist of the table, so a crash before it re-enables the group).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::context::BrokerContext;

/// How often [`protect_broker`] runs (Java: every 3 minutes, the first after 3).
pub const PROTECT_BROKER_INTERVAL: Duration = Duration::from_secs(3 * 60);

/// How long a recorded fall-behind counts: Java's moment stats are reset every 5 minutes.
pub const FALL_BEHIND_WINDOW: Duration = Duration::from_secs(5 * 60);

/// (group, topic, queue id).
type QueueKey = (String, String, i32);

/// How far behind the end of the commit log each (group, topic, queue)'s latest pull read,
/// in bytes. See the module docs.
#[derive(Debug, Default)]
pub struct DiskFallBehindTable {
    table: Mutex<BTreeMap<QueueKey, u64>>,
}

impl DiskFallBehindTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `group`'s latest pull of (`topic`, `queue_id`) examined data
    /// `fall_behind` bytes before the end of the commit log, replacing the previous value.
    pub fn record(&self, group: &str, topic: &str, queue_id: i32, fall_behind: u64) {
        self.lock()
            .insert((group.to_owned(), topic.to_owned(), queue_id), fall_behind);
    }

    /// The latest recorded fall-behind of a (group, topic, queue).
    pub fn fall_behind(&self, group: &str, topic: &str, queue_id: i32) -> Option<u64> {
        self.lock()
            .get(&(group.to_owned(), topic.to_owned(), queue_id))
            .copied()
    }

    /// Forgets every recorded value (the moment stats' periodic reset).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The groups with a queue more than `threshold` bytes behind, each with its largest
    /// such fall-behind, by group name.
    pub fn groups_behind(&self, threshold: u64) -> BTreeMap<String, u64> {
        let mut groups = BTreeMap::<String, u64>::new();
        for ((group, _, _), &fall_behind) in self.lock().iter() {
            if fall_behind > threshold {
                let largest = groups.entry(group.clone()).or_default();
                *largest = (*largest).max(fall_behind);
            }
        }
        groups
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<QueueKey, u64>> {
        // Every critical section is a single map operation: a poisoned lock holds valid data.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One pass of `protectBroker`: with `disableConsumeIfConsumerReadSlowly`, turns off
/// `consumeEnable` for every group with a queue more than `consumerFallbehindThreshold` bytes
/// behind, and persists the group table when that changed anything. Returns the groups
/// disabled by this pass (not those disabled already, nor unknown ones).
pub async fn protect_broker(context: &BrokerContext, table: &DiskFallBehindTable) -> Vec<String> {
    let config = &context.config;
    if !config.disable_consume_if_consumer_read_slowly {
        return Vec::new();
    }
    let mut disabled = Vec::new();
    for (group, fall_behind) in table.groups_behind(config.consumer_fallbehind_threshold) {
        tracing::info!(
            "[PROTECT_BROKER] the consumer[{group}] consume slowly, {fall_behind} bytes, disable it"
        );
        if context.subscription_group_manager.disable_consume(&group) {
            disabled.push(group);
        }
    }
    if !disabled.is_empty()
        && let Err(error) = context.subscription_group_manager.persist().await
    {
        tracing::error!(%error, ?disabled, "persisting the disabled subscription groups failed");
    }
    disabled
}

/// The broker's protection loop, for the controller to spawn: [`protect_broker`] every
/// [`PROTECT_BROKER_INTERVAL`] and the table's reset every [`FALL_BEHIND_WINDOW`], both at a
/// fixed rate from the start. Runs until its task is aborted.
pub async fn run_protect_broker(context: Arc<BrokerContext>, table: Arc<DiskFallBehindTable>) {
    let clock = context.env.clock.clone();
    let start = clock.instant();
    let mut next_protect = start + PROTECT_BROKER_INTERVAL;
    let mut next_reset = start + FALL_BEHIND_WINDOW;
    loop {
        clock.sleep_until(next_protect.min(next_reset)).await;
        let now = clock.instant();
        // Protect before a reset due at the same time, so the pass sees the whole window.
        if now >= next_protect {
            protect_broker(&context, &table).await;
            next_protect += PROTECT_BROKER_INTERVAL;
        }
        if now >= next_reset {
            table.clear();
            next_reset += FALL_BEHIND_WINDOW;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::subscription_group::SubscriptionGroupManager;
    use crate::broker::test_support::test_context;

    const THRESHOLD: u64 = 1_000;

    async fn context(enabled: bool) -> Arc<BrokerContext> {
        test_context(|broker, _| {
            broker.disable_consume_if_consumer_read_slowly = enabled;
            broker.consumer_fallbehind_threshold = THRESHOLD;
        })
        .await
    }

    fn consume_enable(context: &BrokerContext, group: &str) -> bool {
        context
            .subscription_group_manager
            .wrapper()
            .subscription_group_table[group]
            .consume_enable
    }

    /// The group table as the next start of the broker would load it.
    fn reloaded(context: &BrokerContext) -> SubscriptionGroupManager {
        let manager = SubscriptionGroupManager::new(
            context.env.disk.clone(),
            &context.store_config.store_path_root_dir,
            context.env.clock.clone(),
            false,
        );
        manager.load().expect("the persisted table loads");
        manager
    }

    #[test]
    fn groups_behind_names_each_group_once_with_its_largest_queue_over_the_threshold() {
        let table = DiskFallBehindTable::new();
        table.record("g1", "T", 0, 5_000);
        table.record("g1", "T", 1, 9_000);
        table.record("g1", "U", 0, 10);
        table.record("g2", "T", 0, THRESHOLD);
        table.record("g3", "T", 0, 7_000);
        table.record("g3", "T", 0, 3);
        assert_eq!(
            table.fall_behind("g3", "T", 0),
            Some(3),
            "the latest pull counts"
        );
        assert_eq!(
            table.groups_behind(THRESHOLD),
            BTreeMap::from([("g1".to_owned(), 9_000)]),
            "g2 is exactly at the threshold (Java: fallBehindBytes > threshold)"
        );
        table.clear();
        assert!(table.groups_behind(0).is_empty());
        assert_eq!(table.fall_behind("g1", "T", 1), None);
    }

    #[tokio::test]
    async fn a_group_over_the_threshold_is_disabled_and_the_change_persisted() {
        let context = context(true).await;
        let groups = &context.subscription_group_manager;
        groups.find_subscription_group_config("slow");
        groups.find_subscription_group_config("fast");
        let table = DiskFallBehindTable::new();
        table.record("slow", "T", 0, THRESHOLD + 1);
        table.record("fast", "T", 0, THRESHOLD);

        assert_eq!(protect_broker(&context, &table).await, vec!["slow"]);
        assert!(!consume_enable(&context, "slow"));
        assert!(consume_enable(&context, "fast"));
        let saved = reloaded(&context).wrapper().subscription_group_table;
        assert!(!saved["slow"].consume_enable);
        assert!(saved["fast"].consume_enable);

        let version = groups.wrapper().data_version;
        assert!(
            protect_broker(&context, &table).await.is_empty(),
            "a disabled group stays disabled without another change"
        );
        assert_eq!(groups.wrapper().data_version, version);
    }

    #[tokio::test]
    async fn nothing_is_disabled_unless_disable_consume_if_consumer_read_slowly() {
        let context = context(false).await;
        context
            .subscription_group_manager
            .find_subscription_group_config("slow");
        let table = DiskFallBehindTable::new();
        table.record("slow", "T", 0, u64::MAX);
        assert!(protect_broker(&context, &table).await.is_empty());
        assert!(consume_enable(&context, "slow"));
    }

    #[tokio::test]
    async fn an_unknown_group_is_not_created_to_be_disabled() {
        let context = context(true).await;
        let table = DiskFallBehindTable::new();
        table.record("ghost", "T", 0, u64::MAX);
        assert!(protect_broker(&context, &table).await.is_empty());
        assert!(
            !context
                .subscription_group_manager
                .wrapper()
                .subscription_group_table
                .contains_key("ghost")
        );
    }
}
