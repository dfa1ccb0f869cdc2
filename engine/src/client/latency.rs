//! Latency fault tolerance: keeping sends away from brokers that were slow or failed
//! (`LatencyFaultToleranceImpl`, `MQFaultStrategy`, clients.md C23-C24).
//!
//! Where it sits: the producer's default send (no selector, C14) asks
//! [`MqFaultStrategy::select_one_message_queue`] for the queue of each attempt and reports
//! every attempt's outcome with [`MqFaultStrategy::update_fault_item`]. With
//! `sendLatencyFaultEnable` off (the Java default) updates are ignored and selection is the
//! publish info's round-robin that skips the last broker on a retry. With it on, a broker
//! whose send took `latency` is kept out of selection until `now + duration`, the duration
//! looked up in Java's tables ([`LATENCY_MAX`] → [`NOT_AVAILABLE_DURATION`]); a failed send
//! counts as [`ISOLATION_LATENCY`], i.e. ten minutes out.
//!
//! Decisions (clients.md Q1, Q2): this follows 4.9.x, not 4.7. The first scan returns any
//! queue on an available broker (4.7 demanded the broker equal `lastBrokerName`, a known
//! bug), and the not-best fallback returns a new `MessageQueue` instead of changing a shared
//! list entry.
//!
//! Time is the monotonic [`Instant`] passed in by the caller (Java reads the wall clock).
//! Invariants: a fault item's `start_timestamp` is never more than
//! [`NOT_AVAILABLE_DURATION_MAX`] after the `now` it was recorded at.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::publish_info::{RoundRobinIndex, TopicPublishInfo};
use crate::clock::Instant;
use crate::protocol::heartbeat::MessageQueue;
use crate::rng::Rng;

/// Java's `latencyMax`: send latencies at which a broker starts to be avoided, by tier.
pub const LATENCY_MAX: [Duration; 7] = [
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(550),
    Duration::from_millis(1_000),
    Duration::from_millis(2_000),
    Duration::from_millis(3_000),
    Duration::from_millis(15_000),
];

/// Java's `notAvailableDuration`: how long a broker is avoided for each [`LATENCY_MAX`] tier.
pub const NOT_AVAILABLE_DURATION: [Duration; 7] = [
    Duration::ZERO,
    Duration::ZERO,
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(120),
    Duration::from_secs(180),
    Duration::from_secs(600),
];

/// The latency a failed send (`isolation`) is treated as: Java's hard-coded 30000 ms, which
/// falls in the 15 s tier and so avoids the broker for 600 s.
pub const ISOLATION_LATENCY: Duration = Duration::from_secs(30);

/// Longest time one fault item keeps a broker out, whatever custom tables say, so an
/// `Instant` addition can never overflow.
pub const NOT_AVAILABLE_DURATION_MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// What is known about one broker's recent sends (`FaultItem`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultItem {
    /// The broker group.
    pub name: String,
    /// The latency of the send recorded last.
    pub current_latency: Duration,
    /// The broker is available again from this instant on (Java's `startTimestamp`).
    pub start_timestamp: Instant,
}

impl FaultItem {
    /// Whether the broker may be chosen at `now`.
    pub fn is_available(&self, now: Instant) -> bool {
        now >= self.start_timestamp
    }
}

/// The table of brokers to avoid (`LatencyFaultToleranceImpl`), keyed by broker name.
#[derive(Debug, Default)]
pub struct LatencyFaultTolerance {
    fault_item_table: Mutex<BTreeMap<String, FaultItem>>,
    which_item_worst: RoundRobinIndex,
}

impl LatencyFaultTolerance {
    /// An empty table: every broker is available.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a send to `name` that took `current_latency`, and keeps the broker out until
    /// `now + not_available_duration` (capped at [`NOT_AVAILABLE_DURATION_MAX`]). Overwrites
    /// any earlier item.
    pub fn update_fault_item(
        &self,
        name: &str,
        current_latency: Duration,
        not_available_duration: Duration,
        now: Instant,
    ) {
        let duration = not_available_duration.min(NOT_AVAILABLE_DURATION_MAX);
        let start_timestamp = now.checked_add(duration).unwrap_or(now);
        let item = FaultItem {
            name: name.to_string(),
            current_latency,
            start_timestamp,
        };
        self.lock().insert(name.to_string(), item);
    }

    /// Whether `name` may be chosen at `now`: it has no item, or its item has expired.
    pub fn is_available(&self, name: &str, now: Instant) -> bool {
        self.lock()
            .get(name)
            .is_none_or(|item| item.is_available(now))
    }

    /// Forgets `name`'s item.
    pub fn remove(&self, name: &str) {
        self.lock().remove(name);
    }

    /// `name`'s item, if one was recorded.
    pub fn fault_item(&self, name: &str) -> Option<FaultItem> {
        self.lock().get(name).cloned()
    }

    /// How many brokers have an item.
    pub fn fault_item_count(&self) -> usize {
        self.lock().len()
    }

    /// The broker to fall back on when no queue is on an available broker
    /// (`pickOneAtLeast`): the items sorted available first, then by lower latency, then by
    /// earlier `start_timestamp` (ties by name, Java's are by hash-table order); with one
    /// item that one, otherwise the next of the better half in turn. `None` with no items.
    pub fn pick_one_at_least(&self, now: Instant, rng: &Rng) -> Option<String> {
        let mut items: Vec<FaultItem> = self.lock().values().cloned().collect();
        if items.is_empty() {
            return None;
        }
        // `sort_by_key` is stable, so equal items keep the table's name order.
        items.sort_by_key(|item| {
            (
                !item.is_available(now),
                item.current_latency,
                item.start_timestamp,
            )
        });
        let half = items.len() / 2;
        let pos = if half == 0 {
            0
        } else {
            // The index is non-negative, so the cast keeps its value.
            self.which_item_worst.increment_and_get(rng) as usize % half
        };
        items.into_iter().nth(pos).map(|item| item.name)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, FaultItem>> {
        // Each update replaces a whole entry, so a poisoned table is still consistent.
        self.fault_item_table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Queue selection and fault recording for the producer's default send (`MQFaultStrategy`).
#[derive(Debug)]
pub struct MqFaultStrategy {
    latency_fault_tolerance: LatencyFaultTolerance,
    send_latency_fault_enable: bool,
    /// `(latencyMax[i], notAvailableDuration[i])`, walked from the last tier down.
    tables: Vec<(Duration, Duration)>,
}

impl Default for MqFaultStrategy {
    /// Fault avoidance off, as Java's `sendLatencyFaultEnable = false`.
    fn default() -> Self {
        Self::new(false)
    }
}

impl MqFaultStrategy {
    /// A strategy with Java's tables, avoiding slow brokers only if
    /// `send_latency_fault_enable`.
    pub fn new(send_latency_fault_enable: bool) -> Self {
        Self {
            latency_fault_tolerance: LatencyFaultTolerance::new(),
            send_latency_fault_enable,
            tables: LATENCY_MAX
                .into_iter()
                .zip(NOT_AVAILABLE_DURATION)
                .collect(),
        }
    }

    /// The same strategy with custom `(latency_max, not_available_duration)` tiers (Java's
    /// `setLatencyMax` and `setNotAvailableDuration`, given as pairs so they cannot differ in
    /// length).
    pub fn with_tables(mut self, tables: Vec<(Duration, Duration)>) -> Self {
        self.tables = tables;
        self
    }

    /// Whether slow and failed brokers are avoided (`sendLatencyFaultEnable`).
    pub fn send_latency_fault_enable(&self) -> bool {
        self.send_latency_fault_enable
    }

    /// Turns avoidance on or off.
    pub fn set_send_latency_fault_enable(&mut self, enable: bool) {
        self.send_latency_fault_enable = enable;
    }

    /// The table of brokers to avoid.
    pub fn latency_fault_tolerance(&self) -> &LatencyFaultTolerance {
        &self.latency_fault_tolerance
    }

    /// The queue for one attempt of a default send (`selectOneMessageQueue`). `None` only
    /// when the publish info has no queues.
    ///
    /// With avoidance off: [`TopicPublishInfo::select_one_message_queue`], which skips
    /// `last_broker_name` on a retry. With it on, `last_broker_name` is not looked at (a
    /// broker that just failed was isolated by its fault item):
    /// 1. scan one round from the next index for a queue whose broker is available at `now`;
    /// 2. else take the broker [`LatencyFaultTolerance::pick_one_at_least`] names; if the
    ///    route gives it write queues, advance the round-robin once and return queue
    ///    `next index % its write queue count` on that broker, under the round-robin queue's
    ///    topic;
    /// 3. else forget that broker's item and fall back to plain round-robin.
    pub fn select_one_message_queue(
        &self,
        tp_info: &TopicPublishInfo,
        last_broker_name: Option<&str>,
        now: Instant,
        rng: &Rng,
    ) -> Option<MessageQueue> {
        if !self.send_latency_fault_enable {
            return tp_info
                .select_one_message_queue(last_broker_name, rng)
                .cloned();
        }
        let tolerance = &self.latency_fault_tolerance;
        let count = tp_info.message_queue_list().len();
        if count == 0 {
            return None;
        }
        let mut index = tp_info.send_which_queue().increment_and_get(rng);
        for _ in 0..count {
            let mq = tp_info.queue_at(index)?;
            // Java's `index++` on an int: it wraps, and `queue_at` maps the negative values
            // as Java's `Math.abs` and `pos < 0` check do.
            index = index.wrapping_add(1);
            if tolerance.is_available(&mq.broker_name, now) {
                return Some(mq.clone());
            }
        }

        if let Some(not_best_broker) = tolerance.pick_one_at_least(now, rng) {
            match tp_info.write_queue_nums_of(&not_best_broker) {
                Some(write_queue_nums) if write_queue_nums > 0 => {
                    let mq = tp_info.select_next(rng)?;
                    let next = tp_info.send_which_queue().increment_and_get(rng);
                    return Some(MessageQueue {
                        broker_name: not_best_broker,
                        queue_id: next % write_queue_nums,
                        topic: mq.topic.clone(),
                    });
                }
                _ => tolerance.remove(&not_best_broker),
            }
        }
        tp_info.select_next(rng).cloned()
    }

    /// Records how a send to `broker_name` went (`updateFaultItem`): it took
    /// `current_latency`, or failed if `isolation`. Does nothing with avoidance off.
    pub fn update_fault_item(
        &self,
        broker_name: &str,
        current_latency: Duration,
        isolation: bool,
        now: Instant,
    ) {
        if !self.send_latency_fault_enable {
            return;
        }
        let measured = if isolation {
            ISOLATION_LATENCY
        } else {
            current_latency
        };
        let duration = self.compute_not_available_duration(measured);
        self.latency_fault_tolerance
            .update_fault_item(broker_name, current_latency, duration, now);
    }

    /// How long a broker whose send took `current_latency` is avoided: the duration of the
    /// highest tier whose latency it reaches, zero below every tier
    /// (`computeNotAvailableDuration`).
    pub fn compute_not_available_duration(&self, current_latency: Duration) -> Duration {
        self.tables
            .iter()
            .rev()
            .find(|(latency_max, _)| current_latency >= *latency_max)
            .map_or(Duration::ZERO, |&(_, duration)| duration)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::clock::test_support::now;
    use crate::protocol::route::{BrokerData, QueueData, TopicRouteData};
    use crate::rng::Rng;

    fn publish_info(brokers: &[(&str, i32)]) -> TopicPublishInfo {
        let mut route = TopicRouteData::default();
        for &(name, write) in brokers {
            route.queue_datas.push(QueueData {
                broker_name: name.into(),
                perm: 6,
                read_queue_nums: write,
                topic_sys_flag: 0,
                write_queue_nums: write,
            });
            let mut data = BrokerData::new("c", name);
            data.broker_addrs.insert(0, format!("{name}:10911"));
            route.broker_datas.push(data);
        }
        TopicPublishInfo::from_route("TopicA", &route).unwrap()
    }

    fn brokers_chosen(
        strategy: &MqFaultStrategy,
        info: &TopicPublishInfo,
        at: Instant,
        rng: &Rng,
    ) -> BTreeSet<String> {
        (0..40)
            .map(|_| {
                strategy
                    .select_one_message_queue(info, None, at, rng)
                    .unwrap()
                    .broker_name
            })
            .collect()
    }

    #[test]
    fn durations_follow_javas_tables() {
        let strategy = MqFaultStrategy::new(true);
        let ms = Duration::from_millis;
        let cases = [
            (0, 0),
            (49, 0),
            (50, 0),
            (549, 0),
            (550, 30_000),
            (999, 30_000),
            (1_000, 60_000),
            (2_000, 120_000),
            (3_000, 180_000),
            (14_999, 180_000),
            (15_000, 600_000),
            (30_000, 600_000),
        ];
        for (latency, duration) in cases {
            assert_eq!(
                strategy.compute_not_available_duration(ms(latency)),
                ms(duration),
                "{latency} ms"
            );
        }
        let custom = MqFaultStrategy::new(true).with_tables(vec![(ms(10), ms(1))]);
        assert_eq!(custom.compute_not_available_duration(ms(9)), Duration::ZERO);
        assert_eq!(custom.compute_not_available_duration(ms(10)), ms(1));
    }

    #[test]
    fn slow_broker_is_isolated_for_the_tables_duration_then_recovers() {
        let strategy = MqFaultStrategy::new(true);
        let info = publish_info(&[("broker-a", 4), ("broker-b", 4)]);
        let rng = Rng::from_seed(1);
        let t0 = now();
        strategy.update_fault_item("broker-a", Duration::from_millis(600), false, t0);
        let item = strategy
            .latency_fault_tolerance()
            .fault_item("broker-a")
            .unwrap();
        assert_eq!(item.current_latency, Duration::from_millis(600));
        assert_eq!(item.start_timestamp, t0 + Duration::from_secs(30));

        let during = t0 + Duration::from_secs(29);
        assert_eq!(
            brokers_chosen(&strategy, &info, during, &rng),
            BTreeSet::from(["broker-b".to_string()])
        );
        let after = t0 + Duration::from_secs(30);
        assert_eq!(brokers_chosen(&strategy, &info, after, &rng).len(), 2);
    }

    #[test]
    fn failed_send_isolates_for_ten_minutes() {
        let strategy = MqFaultStrategy::new(true);
        let tolerance = strategy.latency_fault_tolerance();
        let t0 = now();
        strategy.update_fault_item("broker-a", Duration::from_millis(3), true, t0);
        assert!(!tolerance.is_available("broker-a", t0 + Duration::from_secs(599)));
        assert!(tolerance.is_available("broker-a", t0 + Duration::from_secs(600)));
        assert_eq!(
            tolerance.fault_item("broker-a").unwrap().current_latency,
            Duration::from_millis(3)
        );
    }

    #[test]
    fn fast_send_records_an_item_that_is_available_at_once() {
        let strategy = MqFaultStrategy::new(true);
        let t0 = now();
        strategy.update_fault_item("broker-a", Duration::from_millis(80), false, t0);
        assert!(
            strategy
                .latency_fault_tolerance()
                .is_available("broker-a", t0)
        );
        assert_eq!(strategy.latency_fault_tolerance().fault_item_count(), 1);
    }

    #[test]
    fn disabled_strategy_records_nothing_and_skips_the_last_broker() {
        let strategy = MqFaultStrategy::default();
        let info = publish_info(&[("broker-a", 2), ("broker-b", 2)]);
        let rng = Rng::from_seed(2);
        let t0 = now();
        strategy.update_fault_item("broker-b", Duration::ZERO, true, t0);
        assert_eq!(strategy.latency_fault_tolerance().fault_item_count(), 0);
        for _ in 0..20 {
            let mq = strategy
                .select_one_message_queue(&info, Some("broker-b"), t0, &rng)
                .unwrap();
            assert_eq!(mq.broker_name, "broker-a");
        }
    }

    #[test]
    fn all_brokers_isolated_falls_back_to_the_least_bad_one() {
        let strategy = MqFaultStrategy::new(true);
        let info = publish_info(&[("broker-a", 4), ("broker-b", 2), ("broker-c", 4)]);
        let rng = Rng::from_seed(3);
        let t0 = now();
        strategy.update_fault_item("broker-a", Duration::from_millis(5_000), false, t0);
        strategy.update_fault_item("broker-b", Duration::from_millis(700), false, t0);
        strategy.update_fault_item("broker-c", Duration::from_millis(20_000), false, t0);
        // Sorted by latency: b (700 ms), a, c; half = 1, so always the first: broker-b.
        for _ in 0..20 {
            let mq = strategy
                .select_one_message_queue(&info, None, t0, &rng)
                .unwrap();
            assert_eq!(mq.broker_name, "broker-b");
            assert!((0..2).contains(&mq.queue_id));
            assert_eq!(mq.topic, "TopicA");
        }
        // The publish list itself is left untouched (clients.md Q2).
        let fresh = publish_info(&[("broker-a", 4), ("broker-b", 2), ("broker-c", 4)]);
        assert_eq!(info.message_queue_list(), fresh.message_queue_list());
    }

    #[test]
    fn not_best_broker_without_write_queues_is_forgotten() {
        let strategy = MqFaultStrategy::new(true);
        let info = publish_info(&[("broker-a", 2)]);
        let rng = Rng::from_seed(4);
        let t0 = now();
        strategy.update_fault_item("broker-a", Duration::ZERO, true, t0);
        strategy.update_fault_item("gone", Duration::ZERO, false, t0);
        // "gone" is available, so it sorts first and is picked; the route has no queues for
        // it, so its item is dropped and plain round-robin answers.
        let mq = strategy
            .select_one_message_queue(&info, None, t0, &rng)
            .unwrap();
        assert_eq!(mq.broker_name, "broker-a");
        assert!(
            strategy
                .latency_fault_tolerance()
                .fault_item("gone")
                .is_none()
        );
        assert!(
            strategy
                .latency_fault_tolerance()
                .fault_item("broker-a")
                .is_some()
        );
    }

    #[test]
    fn pick_one_at_least_rotates_over_the_better_half() {
        let tolerance = LatencyFaultTolerance::new();
        let rng = Rng::from_seed(5);
        let t0 = now();
        let later = t0 + Duration::from_secs(60);
        for (name, latency) in [("a", 400), ("b", 100), ("c", 300), ("d", 200)] {
            tolerance.update_fault_item(
                name,
                Duration::from_millis(latency),
                Duration::from_secs(60),
                t0,
            );
        }
        tolerance.update_fault_item("e", Duration::from_millis(900), Duration::ZERO, t0);
        // At t0 only "e" is available, so it sorts first; half of 5 is 2: "e" and "b".
        let picks: BTreeSet<_> = (0..10)
            .map(|_| tolerance.pick_one_at_least(t0, &rng).unwrap())
            .collect();
        assert_eq!(picks, BTreeSet::from(["b".to_string(), "e".to_string()]));
        // Once all are available, latency alone orders them: "b" and "d".
        let picks: BTreeSet<_> = (0..10)
            .map(|_| tolerance.pick_one_at_least(later, &rng).unwrap())
            .collect();
        assert_eq!(picks, BTreeSet::from(["b".to_string(), "d".to_string()]));
        assert_eq!(
            LatencyFaultTolerance::new().pick_one_at_least(t0, &rng),
            None
        );
    }

    #[test]
    fn huge_custom_durations_are_capped() {
        let tolerance = LatencyFaultTolerance::new();
        let t0 = now();
        tolerance.update_fault_item("a", Duration::ZERO, Duration::MAX, t0);
        assert_eq!(
            tolerance.fault_item("a").unwrap().start_timestamp,
            t0 + NOT_AVAILABLE_DURATION_MAX
        );
    }

    #[test]
    fn empty_publish_info_selects_nothing_either_way() {
        let info = TopicPublishInfo::empty("T");
        let rng = Rng::from_seed(6);
        for enable in [false, true] {
            let strategy = MqFaultStrategy::new(enable);
            assert_eq!(
                strategy.select_one_message_queue(&info, None, now(), &rng),
                None
            );
        }
    }

    proptest! {
        /// With avoidance on, a selection lands on an available broker whenever one exists,
        /// and always on a queue the route makes writable.
        #[test]
        fn selection_prefers_available_brokers(
            isolated in prop::collection::vec(any::<bool>(), 3),
            seed in any::<u64>(),
            elapsed_secs in 0u64..700,
        ) {
            let strategy = MqFaultStrategy::new(true);
            let names = ["broker-a", "broker-b", "broker-c"];
            let info = publish_info(&[(names[0], 4), (names[1], 1), (names[2], 3)]);
            let rng = Rng::from_seed(seed);
            let t0 = now();
            for (name, &isolate) in names.iter().zip(&isolated) {
                if isolate {
                    strategy.update_fault_item(name, Duration::from_millis(10), true, t0);
                }
            }
            let at = t0 + Duration::from_secs(elapsed_secs);
            let any_available = names.iter().any(|n| strategy.latency_fault_tolerance().is_available(n, at));
            for _ in 0..10 {
                let mq = strategy.select_one_message_queue(&info, None, at, &rng).unwrap();
                let writable = info.write_queue_nums_of(&mq.broker_name).unwrap();
                prop_assert!((0..writable).contains(&mq.queue_id));
                if any_available {
                    prop_assert!(strategy.latency_fault_tolerance().is_available(&mq.broker_name, at));
                }
            }
        }
    }
}
