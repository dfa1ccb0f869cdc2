//! Topic publish info: the queues a producer may send a topic's messages to, and how one of
//! them is picked (`TopicPublishInfo`, `ThreadLocalIndex` and the stock
//! `MessageQueueSelector`s of the Java client).
//!
//! Where it sits: whenever the client instance fetches a changed `TopicRouteData` from the
//! name server it builds a [`TopicPublishInfo`] ([`TopicPublishInfo::from_route`],
//! remoting-namesrv.md R72) and hands it to every producer. A send without a selector asks it,
//! through [`super::latency::MqFaultStrategy`], for one queue per attempt (clients.md C14,
//! C24); an orderly send hands its queue list to a selector such as
//! [`SelectMessageQueueByHash`] (C16), with no retries.
//!
//! Invariants: every queue of a publish info carries its topic; the list holds at most
//! [`PUBLISH_QUEUE_COUNT_MAX`] queues; the round-robin index only ever yields non-negative
//! values, so `index % queue_count` is a valid position.

use std::cmp::Ordering;
use std::sync::Mutex;

use crate::protocol::MASTER_ID;
use crate::protocol::heartbeat::MessageQueue;
use crate::protocol::route::TopicRouteData;
use crate::protocol::topic::perm;
use crate::rng::Rng;
use crate::store::message::java_string_hash;

/// Most queues one topic's publish info accepts. A route naming more (a broken or hostile
/// name server) is refused instead of allocated; real topics have a few hundred at most.
pub const PUBLISH_QUEUE_COUNT_MAX: usize = 65_536;

/// Java's `ThreadLocalIndex` keeps results non-negative by masking the sign bit.
const POSITIVE_MASK: i32 = 0x7FFF_FFFF;

/// Why a route could not become a publish info.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishInfoError {
    /// An `orderTopicConf` entry is not `brokerName:queueNums` (Java throws from
    /// `Integer.parseInt` or an index out of bounds). Keep the previous publish info and
    /// report the route as malformed.
    #[error("malformed orderTopicConf entry {entry:?} in {conf:?}")]
    MalformedOrderTopicConf {
        /// The whole `orderTopicConf`.
        conf: String,
        /// The entry that did not parse.
        entry: String,
    },
    /// The route lists more writable queues than [`PUBLISH_QUEUE_COUNT_MAX`]. Keep the
    /// previous publish info; the route is not one a producer can use.
    #[error("route lists {count} publish queues, more than the {max} a producer accepts")]
    TooManyQueues {
        /// Queues the route asked for.
        count: u64,
        /// [`PUBLISH_QUEUE_COUNT_MAX`].
        max: usize,
    },
}

/// The round-robin counter of the Java client (`ThreadLocalIndex`): it starts at a random
/// non-negative value drawn on first use and yields `++index & 0x7FFFFFFF` on every call.
///
/// Java keeps one per thread; here one value is shared by every caller of the publish info
/// (clients.md C24 suggests one counter per logical caller — a caller wanting that gives
/// each task its own index). The start is drawn from the seeded [`Rng`] passed to the first
/// call, so a simulation replays it.
#[derive(Debug, Default)]
pub struct RoundRobinIndex {
    value: Mutex<Option<i32>>,
}

impl RoundRobinIndex {
    /// An index whose start is drawn on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// An index whose next [`increment_and_get`](Self::increment_and_get) returns
    /// `start + 1` (masked), whatever generator is passed; for tests and replays.
    pub fn starting_at(start: i32) -> Self {
        Self {
            value: Mutex::new(Some(start)),
        }
    }

    /// Advances the index and returns it, always in `0..=i32::MAX`
    /// (`ThreadLocalIndex.incrementAndGet`).
    pub fn increment_and_get(&self, rng: &Rng) -> i32 {
        let mut value = self.lock();
        // Java draws `Math.abs(random.nextInt())`, a non-negative int.
        let current = value.unwrap_or_else(|| rng.below(1 << 31) as i32);
        let next = current.wrapping_add(1);
        *value = Some(next);
        next & POSITIVE_MASK
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<i32>> {
        // The guarded value is a plain integer that is always whole, so a poisoned lock is
        // recovered rather than propagated.
        self.value
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A clone continues from the same position, independently of the original.
impl Clone for RoundRobinIndex {
    fn clone(&self) -> Self {
        Self {
            value: Mutex::new(*self.lock()),
        }
    }
}

/// The queues a producer may send one topic's messages to (`TopicPublishInfo`).
#[derive(Debug, Clone)]
pub struct TopicPublishInfo {
    topic: String,
    order_topic: bool,
    have_topic_router_info: bool,
    message_queue_list: Vec<MessageQueue>,
    topic_route_data: Option<TopicRouteData>,
    send_which_queue: RoundRobinIndex,
}

impl TopicPublishInfo {
    /// A publish info with no route and no queues: what the producer caches for a topic
    /// before its first route lookup (`new TopicPublishInfo()` in `tryToFindTopicPublishInfo`).
    pub fn empty(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            order_topic: false,
            have_topic_router_info: false,
            message_queue_list: Vec::new(),
            topic_route_data: None,
            send_which_queue: RoundRobinIndex::new(),
        }
    }

    /// The publish info of `topic` under `route` (`MQClientInstance.topicRouteData2TopicPublishInfo`,
    /// R72), with `have_topic_router_info` set as the route refresh does.
    ///
    /// With a non-empty `orderTopicConf` (`"brokerA:4;brokerB:4"`) the queues are exactly the
    /// ones it lists, in its order, and the topic is an order topic. Otherwise the route's
    /// queue datas are sorted by broker name (Java's `String.compareTo`, kept in the stored
    /// route as Java sorts in place) and every writable one whose broker group has a master
    /// contributes queues `0..writeQueueNums`.
    pub fn from_route(topic: &str, route: &TopicRouteData) -> Result<Self, PublishInfoError> {
        let mut route = route.clone();
        let conf = route.order_topic_conf.clone().unwrap_or_default();
        let (message_queue_list, order_topic) = if conf.is_empty() {
            route
                .queue_datas
                .sort_by(|a, b| java_string_cmp(&a.broker_name, &b.broker_name));
            (writable_master_queues(topic, &route)?, false)
        } else {
            (order_topic_queues(topic, &conf)?, true)
        };
        Ok(Self {
            topic: topic.to_string(),
            order_topic,
            have_topic_router_info: true,
            message_queue_list,
            topic_route_data: Some(route),
            send_which_queue: RoundRobinIndex::new(),
        })
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Whether there is at least one queue to send to (`ok()`).
    pub fn ok(&self) -> bool {
        !self.message_queue_list.is_empty()
    }

    /// Whether the queues came from the route's `orderTopicConf`.
    pub fn is_order_topic(&self) -> bool {
        self.order_topic
    }

    /// Whether this was built from a route the name server returned.
    pub fn have_topic_router_info(&self) -> bool {
        self.have_topic_router_info
    }

    /// The publish queues, in selection order.
    pub fn message_queue_list(&self) -> &[MessageQueue] {
        &self.message_queue_list
    }

    /// The route this was built from (queue datas sorted by broker name), if any.
    pub fn topic_route_data(&self) -> Option<&TopicRouteData> {
        self.topic_route_data.as_ref()
    }

    /// The round-robin counter shared by every selection on this publish info
    /// (`sendWhichQueue`).
    pub fn send_which_queue(&self) -> &RoundRobinIndex {
        &self.send_which_queue
    }

    /// Picks the queue for one send attempt without fault avoidance
    /// (`selectOneMessageQueue(lastBrokerName)`).
    ///
    /// On the first attempt (`last_broker_name` is `None`) this is plain round-robin. On a
    /// retry it scans up to one round from the next index for a queue on another broker,
    /// advancing the index at each look, and falls back to plain round-robin when every queue
    /// is on the last broker. `None` only when there are no queues.
    pub fn select_one_message_queue(
        &self,
        last_broker_name: Option<&str>,
        rng: &Rng,
    ) -> Option<&MessageQueue> {
        if let Some(last) = last_broker_name {
            for _ in 0..self.message_queue_list.len() {
                let index = self.send_which_queue.increment_and_get(rng);
                let mq = self.queue_at(index)?;
                if mq.broker_name != last {
                    return Some(mq);
                }
            }
        }
        self.select_next(rng)
    }

    /// Plain round-robin: the queue at the next index (`selectOneMessageQueue()`).
    pub fn select_next(&self, rng: &Rng) -> Option<&MessageQueue> {
        if self.message_queue_list.is_empty() {
            return None;
        }
        let index = self.send_which_queue.increment_and_get(rng);
        self.queue_at(index)
    }

    /// The queue at `abs(index) % queue_count`, 0 where Java's `Math.abs` stays negative
    /// (`Integer.MIN_VALUE`). `None` only when there are no queues.
    pub fn queue_at(&self, index: i32) -> Option<&MessageQueue> {
        let count = self.message_queue_list.len();
        if count == 0 {
            return None;
        }
        // `count` is at most PUBLISH_QUEUE_COUNT_MAX, so it fits an i64 and so does the
        // position.
        let mut pos = i64::from(index.wrapping_abs()) % count as i64;
        if pos < 0 {
            pos = 0;
        }
        self.message_queue_list.get(pos as usize)
    }

    /// The write queue count of the first writable queue data of `broker_name` in the route
    /// (Java's misnamed `getQueueIdByBroker`, where `None` is `-1`).
    pub fn write_queue_nums_of(&self, broker_name: &str) -> Option<i32> {
        self.topic_route_data
            .as_ref()?
            .queue_datas
            .iter()
            .find(|qd| perm::is_writeable(qd.perm) && qd.broker_name == broker_name)
            .map(|qd| qd.write_queue_nums)
    }
}

/// Java's `String.compareTo`: lexicographic over UTF-16 code units (which differs from
/// `str`'s byte order only between supplementary characters and U+E000..U+FFFF).
fn java_string_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Queues `0..writeQueueNums` of every writable queue data, in the given order, whose broker
/// group is in the route and has a master.
fn writable_master_queues(
    topic: &str,
    route: &TopicRouteData,
) -> Result<Vec<MessageQueue>, PublishInfoError> {
    let publishing: Vec<_> = route
        .queue_datas
        .iter()
        .filter(|qd| perm::is_writeable(qd.perm))
        .filter(|qd| {
            route
                .broker_datas
                .iter()
                .find(|bd| bd.broker_name == qd.broker_name)
                .is_some_and(|bd| bd.broker_addrs.contains_key(&MASTER_ID))
        })
        .map(|qd| (qd.broker_name.as_str(), qd.write_queue_nums))
        .collect();
    build_queues(topic, &publishing)
}

/// The queues an `orderTopicConf` lists, parsed as Java's `split(";")` then `split(":")`:
/// trailing empty entries are dropped, parts after the second are ignored, and the count is
/// an `Integer.parseInt`.
fn order_topic_queues(topic: &str, conf: &str) -> Result<Vec<MessageQueue>, PublishInfoError> {
    let mut entries: Vec<&str> = conf.split(';').collect();
    while entries.last().is_some_and(|entry| entry.is_empty()) {
        entries.pop();
    }
    let mut brokers = Vec::with_capacity(entries.len());
    for entry in entries {
        let mut parts = entry.split(':');
        let name = parts.next().unwrap_or_default();
        let nums = parts.next().and_then(|nums| nums.parse::<i32>().ok());
        let Some(nums) = nums else {
            return Err(PublishInfoError::MalformedOrderTopicConf {
                conf: conf.to_string(),
                entry: entry.to_string(),
            });
        };
        brokers.push((name, nums));
    }
    build_queues(topic, &brokers)
}

/// `MessageQueue(topic, broker, i)` for `i` in `0..nums` of each `(broker, nums)`, refusing
/// more than [`PUBLISH_QUEUE_COUNT_MAX`] queues before allocating them.
fn build_queues(
    topic: &str,
    brokers: &[(&str, i32)],
) -> Result<Vec<MessageQueue>, PublishInfoError> {
    let count: u64 = brokers
        .iter()
        .map(|&(_, nums)| u64::try_from(nums).unwrap_or(0))
        .sum();
    if count > PUBLISH_QUEUE_COUNT_MAX as u64 {
        return Err(PublishInfoError::TooManyQueues {
            count,
            max: PUBLISH_QUEUE_COUNT_MAX,
        });
    }
    let mut queues = Vec::with_capacity(count as usize);
    for &(broker_name, nums) in brokers {
        queues.extend((0..nums).map(|queue_id| MessageQueue {
            broker_name: broker_name.to_string(),
            queue_id,
            topic: topic.to_string(),
        }));
    }
    Ok(queues)
}

/// Picks the queue whose index is the Java `hashCode` of the argument, modulo the queue
/// count, made non-negative (`SelectMessageQueueByHash`): the same key always lands on the
/// same queue while the queue list is unchanged, which is what partial ordering needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelectMessageQueueByHash;

impl SelectMessageQueueByHash {
    /// The queue for a string key (Java `String.hashCode`). `None` when `mqs` is empty.
    pub fn select<'a>(&self, mqs: &'a [MessageQueue], arg: &str) -> Option<&'a MessageQueue> {
        self.select_by_hash_code(mqs, java_string_hash(arg))
    }

    /// The queue for a key whose Java `hashCode` is `hash_code` (an `Integer` key hashes to
    /// itself, a `Long` to `(int)(v ^ (v >>> 32))`). `None` when `mqs` is empty.
    pub fn select_by_hash_code<'a>(
        &self,
        mqs: &'a [MessageQueue],
        hash_code: i32,
    ) -> Option<&'a MessageQueue> {
        if mqs.is_empty() {
            return None;
        }
        // Java's `%` keeps the dividend's sign; the remainder is then made non-negative.
        let count = i64::try_from(mqs.len()).unwrap_or(i64::MAX);
        let value = (i64::from(hash_code) % count).abs();
        mqs.get(usize::try_from(value).unwrap_or(0))
    }
}

/// Picks a uniformly random queue (`SelectMessageQueueByRandom`), from its own seeded
/// generator so its draws do not shift other components'.
#[derive(Debug)]
pub struct SelectMessageQueueByRandom {
    rng: Rng,
}

impl SelectMessageQueueByRandom {
    /// A selector drawing from `rng` (typically `shared.fork()`).
    pub fn new(rng: Rng) -> Self {
        Self { rng }
    }

    /// A random queue of `mqs`. `None` when `mqs` is empty.
    pub fn select<'a>(&self, mqs: &'a [MessageQueue]) -> Option<&'a MessageQueue> {
        if mqs.is_empty() {
            return None;
        }
        let pos = self.rng.below(mqs.len() as u64);
        mqs.get(usize::try_from(pos).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::protocol::route::{BrokerData, QueueData};
    use crate::rng::Rng;

    fn queue_data(broker: &str, perm: i32, write: i32) -> QueueData {
        QueueData {
            broker_name: broker.into(),
            perm,
            read_queue_nums: write,
            topic_sys_flag: 0,
            write_queue_nums: write,
        }
    }

    fn broker(name: &str, ids: &[i64]) -> BrokerData {
        let mut data = BrokerData::new("DefaultCluster", name);
        for &id in ids {
            data.broker_addrs.insert(id, format!("10.0.0.{id}:10911"));
        }
        data
    }

    fn route(queues: Vec<QueueData>, brokers: Vec<BrokerData>) -> TopicRouteData {
        TopicRouteData {
            broker_datas: brokers,
            queue_datas: queues,
            ..TopicRouteData::default()
        }
    }

    fn names(info: &TopicPublishInfo) -> Vec<(String, i32)> {
        info.message_queue_list()
            .iter()
            .map(|mq| (mq.broker_name.clone(), mq.queue_id))
            .collect()
    }

    fn two_brokers() -> TopicPublishInfo {
        let route = route(
            vec![queue_data("broker-b", 6, 4), queue_data("broker-a", 6, 4)],
            vec![broker("broker-a", &[0]), broker("broker-b", &[0, 1])],
        );
        TopicPublishInfo::from_route("TopicA", &route).unwrap()
    }

    #[test]
    fn from_route_keeps_writable_master_queues_sorted_by_broker_name() {
        let route = route(
            vec![
                queue_data("broker-c", 6, 2),
                queue_data("broker-b", 4, 8), // read-only
                queue_data("broker-a", 2, 2),
                queue_data("broker-d", 6, 2), // only a slave
                queue_data("broker-e", 6, 2), // no broker data
            ],
            vec![
                broker("broker-a", &[0]),
                broker("broker-b", &[0]),
                broker("broker-c", &[0, 1]),
                broker("broker-d", &[1]),
            ],
        );
        let info = TopicPublishInfo::from_route("TopicA", &route).unwrap();
        assert_eq!(
            names(&info),
            vec![
                ("broker-a".into(), 0),
                ("broker-a".into(), 1),
                ("broker-c".into(), 0),
                ("broker-c".into(), 1)
            ]
        );
        assert!(
            info.message_queue_list()
                .iter()
                .all(|mq| mq.topic == "TopicA")
        );
        assert!(info.ok() && info.have_topic_router_info() && !info.is_order_topic());
        let sorted: Vec<_> = info
            .topic_route_data()
            .unwrap()
            .queue_datas
            .iter()
            .map(|q| q.broker_name.as_str())
            .collect();
        assert_eq!(
            sorted,
            ["broker-a", "broker-b", "broker-c", "broker-d", "broker-e"]
        );
        assert_eq!(info.write_queue_nums_of("broker-c"), Some(2));
        assert_eq!(info.write_queue_nums_of("broker-b"), None, "not writable");
        assert_eq!(info.write_queue_nums_of("broker-x"), None);
    }

    #[test]
    fn from_route_follows_order_topic_conf_when_present() {
        let mut r = route(
            vec![queue_data("broker-a", 6, 8)],
            vec![broker("broker-a", &[0])],
        );
        r.order_topic_conf = Some("broker-b:2;broker-a:1;".into());
        let info = TopicPublishInfo::from_route("Ordered", &r).unwrap();
        assert!(info.is_order_topic());
        assert_eq!(
            names(&info),
            vec![
                ("broker-b".into(), 0),
                ("broker-b".into(), 1),
                ("broker-a".into(), 0)
            ]
        );
        r.order_topic_conf = Some(String::new());
        let info = TopicPublishInfo::from_route("Ordered", &r).unwrap();
        assert!(!info.is_order_topic());
        assert_eq!(info.message_queue_list().len(), 8);
    }

    #[test]
    fn from_route_refuses_malformed_order_topic_conf() {
        for conf in [
            "broker-a",
            "broker-a:x",
            "broker-a:1;;broker-b:1",
            "broker-a:",
        ] {
            let r = TopicRouteData {
                order_topic_conf: Some(conf.into()),
                ..TopicRouteData::default()
            };
            assert!(
                matches!(
                    TopicPublishInfo::from_route("T", &r),
                    Err(PublishInfoError::MalformedOrderTopicConf { .. })
                ),
                "{conf}"
            );
        }
    }

    #[test]
    fn from_route_refuses_more_queues_than_the_limit() {
        let r = route(
            vec![queue_data("a", 6, i32::MAX), queue_data("b", 6, i32::MAX)],
            vec![broker("a", &[0]), broker("b", &[0])],
        );
        assert_eq!(
            TopicPublishInfo::from_route("T", &r).unwrap_err(),
            PublishInfoError::TooManyQueues {
                count: 2 * i32::MAX as u64,
                max: PUBLISH_QUEUE_COUNT_MAX
            }
        );
    }

    #[test]
    fn empty_publish_info_selects_nothing() {
        let info = TopicPublishInfo::empty("T");
        let rng = Rng::from_seed(1);
        assert!(!info.ok() && !info.have_topic_router_info());
        assert_eq!(info.select_one_message_queue(None, &rng), None);
        assert_eq!(info.select_one_message_queue(Some("a"), &rng), None);
        assert_eq!(info.write_queue_nums_of("a"), None);
    }

    #[test]
    fn round_robin_index_masks_the_sign_bit_on_overflow() {
        let rng = Rng::from_seed(3);
        let index = RoundRobinIndex::starting_at(i32::MAX - 1);
        assert_eq!(index.increment_and_get(&rng), i32::MAX);
        assert_eq!(index.increment_and_get(&rng), 0);
        assert_eq!(index.increment_and_get(&rng), 1);
        let seeded = RoundRobinIndex::new();
        assert!((0..100).all(|_| seeded.increment_and_get(&rng) >= 0));
    }

    #[test]
    fn round_robin_start_comes_from_the_seed() {
        let first = |seed| RoundRobinIndex::new().increment_and_get(&Rng::from_seed(seed));
        assert_eq!(first(9), first(9));
        assert_ne!(first(9), first(10));
    }

    #[test]
    fn retry_avoids_the_last_broker_when_another_exists() {
        let info = two_brokers();
        let rng = Rng::from_seed(5);
        for _ in 0..100 {
            let mq = info
                .select_one_message_queue(Some("broker-a"), &rng)
                .unwrap();
            assert_eq!(mq.broker_name, "broker-b");
        }
    }

    #[test]
    fn retry_with_a_single_broker_still_sends() {
        let r = route(vec![queue_data("only", 6, 2)], vec![broker("only", &[0])]);
        let info = TopicPublishInfo::from_route("T", &r).unwrap();
        let rng = Rng::from_seed(5);
        let mq = info.select_one_message_queue(Some("only"), &rng).unwrap();
        assert_eq!(mq.broker_name, "only");
    }

    #[test]
    fn hash_selector_is_stable_and_matches_java() {
        let info = two_brokers();
        let mqs = info.message_queue_list();
        let selector = SelectMessageQueueByHash;
        // Java: "hello".hashCode() == 99162322, % 8 == 2; "order-0".hashCode() ==
        // -1207111311, % 8 == -7, made 7; "polygenelubricants".hashCode() == i32::MIN, % 8 == 0.
        assert_eq!(selector.select(mqs, "hello"), Some(&mqs[2]));
        assert_eq!(selector.select(mqs, "order-0"), Some(&mqs[7]));
        assert_eq!(selector.select(mqs, "polygenelubricants"), Some(&mqs[0]));
        assert_eq!(
            selector.select(mqs, "order-42"),
            selector.select(mqs, "order-42")
        );
        // Java: -7 % 8 == -7, abs → 7; i32::MIN % 8 == 0.
        assert_eq!(selector.select_by_hash_code(mqs, -7), Some(&mqs[7]));
        assert_eq!(selector.select_by_hash_code(mqs, i32::MIN), Some(&mqs[0]));
        // "Aa" and "BB" collide in Java's hash, so they share a queue.
        assert_eq!(selector.select(mqs, "Aa"), selector.select(mqs, "BB"));
        assert_eq!(selector.select(&[], "x"), None);
    }

    #[test]
    fn random_selector_is_reproducible_from_its_seed_and_reaches_every_queue() {
        let info = two_brokers();
        let mqs = info.message_queue_list();
        let a = SelectMessageQueueByRandom::new(Rng::from_seed(11));
        let b = SelectMessageQueueByRandom::new(Rng::from_seed(11));
        let mut seen = BTreeMap::new();
        for _ in 0..400 {
            let pick = a.select(mqs).unwrap();
            assert_eq!(Some(pick), b.select(mqs));
            *seen.entry(pick.clone()).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), mqs.len());
        assert_eq!(a.select(&[]), None);
    }

    fn arbitrary_route() -> impl Strategy<Value = TopicRouteData> {
        prop::collection::vec((0u8..6, 0i32..8, 0i32..8, any::<bool>()), 1..6).prop_map(|groups| {
            let mut queues = Vec::new();
            let mut brokers = Vec::new();
            for (i, (perm, write, _, has_master)) in groups.into_iter().enumerate() {
                let name = format!("broker-{}", (b'a' + (i as u8 * 7) % 26) as char);
                queues.push(queue_data(&name, i32::from(perm) + 2, write));
                brokers.push(broker(&name, if has_master { &[0, 1] } else { &[1] }));
            }
            route(queues, brokers)
        })
    }

    proptest! {
        /// One round of selections from any start covers every queue exactly once.
        #[test]
        fn round_robin_covers_every_writable_queue_evenly(
            route in arbitrary_route(),
            start in 0..i32::MAX - 100_000,
            rounds in 1usize..4,
        ) {
            let info = TopicPublishInfo::from_route("T", &route).unwrap();
            prop_assume!(info.ok());
            let rng = Rng::from_seed(0);
            let info = TopicPublishInfo { send_which_queue: RoundRobinIndex::starting_at(start), ..info };
            let mut counts: BTreeMap<MessageQueue, usize> = BTreeMap::new();
            for _ in 0..rounds * info.message_queue_list().len() {
                let mq = info.select_one_message_queue(None, &rng).unwrap();
                *counts.entry(mq.clone()).or_default() += 1;
            }
            prop_assert_eq!(counts.len(), info.message_queue_list().len());
            prop_assert!(counts.values().all(|&n| n == rounds));
        }

        /// Every publish queue is writable on a broker group that has a master.
        #[test]
        fn publish_queues_are_writable_master_queues(route in arbitrary_route()) {
            let info = TopicPublishInfo::from_route("T", &route).unwrap();
            for mq in info.message_queue_list() {
                let count = info.write_queue_nums_of(&mq.broker_name);
                prop_assert!(count.is_some_and(|n| mq.queue_id < n));
                let bd = route.broker_datas.iter().find(|b| b.broker_name == mq.broker_name).unwrap();
                prop_assert!(bd.master_addr().is_some());
            }
        }

        /// A retry lands on another broker whenever the topic has one.
        #[test]
        fn retries_avoid_the_last_broker_when_another_exists(route in arbitrary_route(), seed in any::<u64>()) {
            let info = TopicPublishInfo::from_route("T", &route).unwrap();
            let rng = Rng::from_seed(seed);
            for mq in info.message_queue_list() {
                let last = mq.broker_name.as_str();
                let others = info.message_queue_list().iter().any(|q| q.broker_name != last);
                let pick = info.select_one_message_queue(Some(last), &rng).unwrap();
                prop_assert_eq!(pick.broker_name != last, others);
            }
        }
    }
}
