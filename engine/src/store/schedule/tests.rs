//! Tests of the schedule service over a real store on an in-memory disk, with a clock the
//! test moves: each test puts delayed messages, dispatches, and runs passes
//! ([`ScheduleMessageService::deliver_due`]) by hand at chosen times.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::clock::test_support::StepClock;
use crate::disk::Disk;
use crate::net::{Connection, Listener, Net};
use crate::rng::Rng;
use crate::store::config::MessageStoreConfig;
use crate::store::message::{encode_properties, tags_code};
use crate::store::message_store::{GetMessageStatus, PutMessageStatus};
use crate::store::test_disk::MemoryDisk;

const T0: i64 = 1_700_000_000_000;
const TOPIC: &str = "TopicA";

/// A network that refuses everything: the store never dials out.
#[derive(Debug)]
struct NoNet;

impl Net for NoNet {
    fn bind(
        &self,
        _addr: std::net::SocketAddr,
    ) -> futures::future::BoxFuture<'_, std::io::Result<Box<dyn Listener>>> {
        Box::pin(async { Err(std::io::Error::other("no network in store unit tests")) })
    }

    fn connect(&self, _addr: &str) -> futures::future::BoxFuture<'_, std::io::Result<Connection>> {
        Box::pin(async { Err(std::io::Error::other("no network in store unit tests")) })
    }
}

/// A store (not started: the test dispatches) and its schedule service, loaded.
struct Broker {
    clock: Arc<StepClock>,
    store: Arc<MessageStore>,
    service: Arc<ScheduleMessageService>,
}

impl Broker {
    /// Opens the store on `disk` (a restart when it holds one) with `clock`, and loads the
    /// service.
    async fn open(disk: &Arc<MemoryDisk>, clock: Arc<StepClock>) -> Self {
        let env = Env {
            clock: clock.clone(),
            net: Arc::new(NoNet),
            disk: disk.clone(),
            rng: Rng::shared(1),
        };
        let config = MessageStoreConfig {
            mapped_file_size_commit_log: 64 * 1024,
            mapped_file_size_consume_queue: 20 * 64,
            max_hash_slot_num: 128,
            max_index_num: 512,
            ..MessageStoreConfig::default()
        };
        let store = MessageStore::open(env.clone(), config, 1 << 30)
            .await
            .expect("the test store opens");
        let service =
            ScheduleMessageService::load(&env, store.clone()).expect("delayOffset.json loads");
        Self {
            clock,
            store,
            service,
        }
    }

    /// Stores `message` and dispatches it.
    async fn put(&self, message: MessageInner) {
        let result = self.store.put_message(message).await;
        assert_eq!(result.status, PutMessageStatus::PutOk, "{result:?}");
        self.store.dispatch_pending().await;
    }

    /// One pass over `level`, with what it put dispatched.
    async fn pass(&self, level: i32) -> Duration {
        let wait = self.service.deliver_due(level).await;
        self.store.dispatch_pending().await;
        wait
    }

    /// One pass over every level.
    async fn pass_all(&self) {
        for level in self.service.levels() {
            self.pass(level).await;
        }
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// The messages of `topic` queue `queue_id`, in queue order.
    fn messages(&self, topic: &str, queue_id: i32) -> Vec<StoredMessage> {
        let mut messages = Vec::new();
        let mut offset = 0;
        loop {
            let result = self.store.get_message(topic, queue_id, offset, 32, None);
            if result.status != GetMessageStatus::Found {
                return messages;
            }
            messages.extend(
                result.messages.iter().map(|record| {
                    decode_record(record, true, true).expect("a stored record decodes")
                }),
            );
            offset = result.next_begin_offset;
        }
    }

    /// The bodies of `topic` queue `queue_id`, in queue order.
    fn bodies(&self, topic: &str, queue_id: i32) -> Vec<String> {
        self.messages(topic, queue_id)
            .into_iter()
            .map(|m| String::from_utf8_lossy(&m.body.unwrap_or_default()).into_owned())
            .collect()
    }

    async fn shutdown(self) {
        self.service.shutdown().await.expect("the offsets persist");
        self.store.shutdown().await.expect("the store shuts down");
    }
}

/// A message for `topic`/`queue_id` delayed by `level`, with tag `TagA`, a key and a user
/// property.
fn delayed(topic: &str, queue_id: i32, body: &str, level: i32) -> MessageInner {
    let properties: BTreeMap<String, String> = [
        ("KEYS", "key-1"),
        ("TAGS", "TagA"),
        ("DELAY", &level.to_string()),
        ("color", "blue"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    MessageInner {
        topic: topic.into(),
        queue_id,
        flag: 7,
        body: Bytes::copy_from_slice(body.as_bytes()),
        properties: encode_properties(&properties),
        tags_code: 0,
        sys_flag: 0,
        born_timestamp: T0 - 5,
        born_host: "127.0.0.2:5555".parse().expect("literal address"),
        store_host: "127.0.0.1:10911".parse().expect("literal address"),
        store_timestamp: 0,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    }
}

#[test]
fn a_delivery_time_beyond_now_plus_the_delay_is_corrected_to_now() {
    let delay = Duration::from_secs(5);
    assert_eq!(correct_deliver_timestamp(T0, T0 + 5_000, delay), T0 + 5_000);
    assert_eq!(correct_deliver_timestamp(T0, T0 + 5_001, delay), T0);
    assert_eq!(correct_deliver_timestamp(T0, T0 - 10, delay), T0 - 10);
    assert_eq!(correct_deliver_timestamp(T0, i64::MAX, delay), T0);
}

#[tokio::test]
async fn a_level_one_message_reaches_its_real_topic_and_queue_with_its_properties_after_one_second_and_not_before()
 {
    let broker = Broker::open(&MemoryDisk::new(), StepClock::at(T0)).await;
    let mut message = delayed(TOPIC, 2, "hello", 1);
    message.reconsume_times = 3;
    message.set_property(property_key::RETRY_TOPIC, "OriginTopic");
    broker.put(message).await;
    let parked = broker.messages(SCHEDULE_TOPIC, 0);
    assert_eq!(parked.len(), 1, "parked in queue level - 1");
    let unit = broker
        .store
        .find_consume_queue(SCHEDULE_TOPIC, 0)
        .and_then(|queue| queue.unit(0))
        .expect("the parked unit");
    assert_eq!(
        unit.tags_code,
        T0 + 1_000,
        "the unit carries the delivery time"
    );

    broker.advance(Duration::from_millis(999));
    assert_eq!(broker.pass(1).await, Duration::from_millis(1));
    assert!(broker.messages(TOPIC, 2).is_empty(), "not before its time");
    assert_eq!(broker.service.offset(1), 0);

    broker.advance(Duration::from_millis(1));
    assert_eq!(broker.pass(1).await, DELAY_FOR_A_WHILE, "caught up");
    let delivered = broker.messages(TOPIC, 2);
    assert_eq!(delivered.len(), 1);
    let message = &delivered[0];
    assert_eq!(message.body.as_deref(), Some(&b"hello"[..]));
    assert_eq!(message.flag, 7);
    assert_eq!(message.reconsume_times, 3);
    assert_eq!(message.born_timestamp, T0 - 5);
    assert_eq!(message.store_timestamp, T0 + 1_000);
    assert_eq!(message.sys_flag & sys_flag_transaction_mask(), 0);
    let expected: BTreeMap<String, String> = [
        ("KEYS", "key-1"),
        ("TAGS", "TagA"),
        ("color", "blue"),
        ("RETRY_TOPIC", "OriginTopic"),
        ("REAL_TOPIC", TOPIC),
        ("REAL_QID", "2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(message.properties_map(), expected, "all but DELAY kept");
    let unit = broker
        .store
        .find_consume_queue(TOPIC, 2)
        .and_then(|queue| queue.unit(0))
        .expect("dispatched to the real queue");
    assert_eq!(
        unit.tags_code,
        tags_code("TagA"),
        "tags code from TAGS again"
    );
    assert_eq!(broker.service.offset(1), 1);

    broker.advance(Duration::from_secs(5));
    broker.pass(1).await;
    assert_eq!(broker.messages(TOPIC, 2).len(), 1, "delivered once");
}

fn sys_flag_transaction_mask() -> i32 {
    crate::store::message::sys_flag::TRANSACTION_TYPE_MASK
}

#[tokio::test]
async fn each_level_delivers_after_its_own_delay_in_queue_order() {
    let broker = Broker::open(&MemoryDisk::new(), StepClock::at(T0)).await;
    broker.put(delayed(TOPIC, 0, "level3", 3)).await;
    broker.put(delayed(TOPIC, 0, "level2-a", 2)).await;
    broker.put(delayed(TOPIC, 0, "level1", 1)).await;
    broker.advance(Duration::from_secs(1));
    broker.put(delayed(TOPIC, 0, "level2-b", 2)).await;

    // At 1 s only level 1 is due; level 2 waits (rechecking within a second).
    broker.pass_all().await;
    assert_eq!(broker.bodies(TOPIC, 0), ["level1"]);
    assert_eq!(broker.pass(2).await, DUE_RECHECK_MAX);

    broker.advance(Duration::from_secs(4));
    broker.pass_all().await;
    assert_eq!(broker.bodies(TOPIC, 0), ["level1", "level2-a"]);
    assert_eq!(broker.pass(2).await, Duration::from_secs(1));

    broker.advance(Duration::from_secs(1));
    broker.pass_all().await;
    assert_eq!(broker.bodies(TOPIC, 0), ["level1", "level2-a", "level2-b"]);

    broker.advance(Duration::from_millis(3_999));
    broker.pass_all().await;
    assert_eq!(broker.bodies(TOPIC, 0).len(), 3, "level 3 not before 10 s");
    broker.advance(Duration::from_millis(1));
    broker.pass_all().await;
    assert_eq!(
        broker.bodies(TOPIC, 0),
        ["level1", "level2-a", "level2-b", "level3"]
    );
    let offsets: Vec<i64> = (1..=4).map(|level| broker.service.offset(level)).collect();
    assert_eq!(offsets, [1, 2, 1, 0]);
}

#[tokio::test]
async fn a_put_refused_while_the_page_cache_is_busy_is_retried_and_not_lost() {
    let broker = Broker::open(&MemoryDisk::new(), StepClock::at(T0)).await;
    broker.put(delayed(TOPIC, 0, "first", 1)).await;
    broker.put(delayed(TOPIC, 0, "second", 1)).await;
    broker.advance(Duration::from_secs(1));
    let wait = {
        // An append stalled in the commit log for longer than osPageCacheBusyTimeOutMills:
        // the store turns puts away.
        let stalled = broker.store.commit_log().hold_append_lock_for_test();
        broker.advance(Duration::from_millis(1_500));
        assert!(broker.store.is_os_page_cache_busy());
        let wait = broker.service.deliver_due(1).await;
        drop(stalled);
        wait
    };
    assert_eq!(wait, DELAY_FOR_A_PERIOD, "retried after a period");
    assert_eq!(
        broker.service.offset(1),
        0,
        "the failed unit is not skipped"
    );
    broker.store.dispatch_pending().await;
    assert!(broker.bodies(TOPIC, 0).is_empty());

    broker.advance(DELAY_FOR_A_PERIOD);
    broker.pass(1).await;
    assert_eq!(broker.bodies(TOPIC, 0), ["first", "second"]);
    assert_eq!(broker.service.offset(1), 2);
}

#[tokio::test]
async fn offsets_persist_and_a_restarted_service_does_not_deliver_again() {
    let disk = MemoryDisk::new();
    let clock = StepClock::at(T0);
    let broker = Broker::open(&disk, clock.clone()).await;
    broker.put(delayed(TOPIC, 0, "first", 1)).await;
    broker.advance(Duration::from_secs(1));
    broker.pass(1).await;
    broker.put(delayed(TOPIC, 0, "second", 1)).await;
    broker.put(delayed(TOPIC, 0, "third", 2)).await;
    assert_eq!(broker.bodies(TOPIC, 0), ["first"]);
    broker.shutdown().await;
    let persisted = disk
        .read_file("store/config/delayOffset.json")
        .unwrap()
        .expect("persisted on shutdown");
    let table: DelayOffsetTable = serde_json::from_slice(&persisted).unwrap();
    assert_eq!(table.offset_table, BTreeMap::from([(1, 1)]));

    let broker = Broker::open(&disk, clock).await;
    assert_eq!(broker.service.offset(1), 1);
    broker.advance(Duration::from_secs(5));
    broker.pass_all().await;
    broker.pass_all().await;
    assert_eq!(
        broker.bodies(TOPIC, 0),
        ["first", "second", "third"],
        "each delivered exactly once across the restart"
    );
    assert_eq!(
        broker.service.offsets().offset_table,
        BTreeMap::from([(1, 2), (2, 1)])
    );
}

#[tokio::test]
async fn a_delivery_time_further_ahead_than_the_delay_after_the_clock_went_back_is_delivered_now() {
    let disk = MemoryDisk::new();
    let broker = Broker::open(&disk, StepClock::at(T0 + 3_600_000)).await;
    broker.put(delayed(TOPIC, 0, "from-the-future", 2)).await;
    broker.shutdown().await;

    // The wall clock is an hour behind after the restart: the unit's delivery time is an
    // hour and 5 s ahead, more than level 2 can ever ask for.
    let broker = Broker::open(&disk, StepClock::at(T0)).await;
    assert_eq!(broker.pass(2).await, DELAY_FOR_A_WHILE);
    assert_eq!(broker.bodies(TOPIC, 0), ["from-the-future"]);
}

#[tokio::test]
async fn loaded_offsets_are_clamped_into_their_queues() {
    let disk = MemoryDisk::new();
    let broker = Broker::open(&disk, StepClock::at(T0)).await;
    broker.put(delayed(TOPIC, 0, "one", 1)).await;
    broker.put(delayed(TOPIC, 0, "two", 1)).await;
    broker.shutdown().await;
    // As fastjson writes it: integer keys unquoted.
    disk.write_file_atomic(
        "store/config/delayOffset.json",
        b"{\"offsetTable\":{1:99,2:5}}",
    )
    .await
    .unwrap();

    let broker = Broker::open(&disk, StepClock::at(T0)).await;
    assert_eq!(
        broker.service.offsets().offset_table,
        BTreeMap::from([(1, 2), (2, 5)]),
        "level 1 clamped to its queue's max; level 2 has no queue and keeps its offset"
    );
}

#[tokio::test]
async fn a_delayed_message_for_the_transaction_half_topic_is_discarded() {
    let broker = Broker::open(&MemoryDisk::new(), StepClock::at(T0)).await;
    broker.put(delayed(TRANS_HALF_TOPIC, 0, "half", 1)).await;
    broker.put(delayed(TOPIC, 0, "plain", 1)).await;
    broker.advance(Duration::from_secs(1));
    broker.pass(1).await;
    assert!(broker.messages(TRANS_HALF_TOPIC, 0).is_empty());
    assert_eq!(
        broker.bodies(TOPIC, 0),
        ["plain"],
        "the level goes on past it"
    );
    assert_eq!(broker.service.offset(1), 2);
}

#[tokio::test]
async fn a_backlog_is_delivered_in_batches() {
    let broker = Broker::open(&MemoryDisk::new(), StepClock::at(T0)).await;
    for i in 0..DELIVER_BATCH_COUNT_MAX + 3 {
        broker.put(delayed(TOPIC, 0, &format!("m{i}"), 1)).await;
    }
    broker.advance(Duration::from_secs(1));
    assert_eq!(broker.pass(1).await, Duration::ZERO, "more to come at once");
    assert_eq!(broker.service.offset(1), DELIVER_BATCH_COUNT_MAX as i64);
    assert_eq!(broker.pass(1).await, DELAY_FOR_A_WHILE);
    let bodies = broker.bodies(TOPIC, 0);
    let expected: Vec<String> = (0..DELIVER_BATCH_COUNT_MAX + 3)
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(bodies, expected);
}

#[tokio::test]
async fn shutdown_stops_the_started_service_and_persists_its_offsets() {
    let disk = MemoryDisk::new();
    let broker = Broker::open(&disk, StepClock::at(T0)).await;
    broker.put(delayed(TOPIC, 0, "one", 1)).await;
    broker.advance(Duration::from_secs(1));
    broker.pass(1).await;
    broker.service.start();
    broker.service.start();
    // Let the task reach its first sleep (which this clock never ends).
    tokio::task::yield_now().await;
    broker
        .service
        .shutdown()
        .await
        .expect("the offsets persist");
    let persisted = disk
        .read_file("store/config/delayOffset.json")
        .unwrap()
        .expect("persisted on shutdown");
    assert_eq!(
        std::str::from_utf8(&persisted).unwrap(),
        "{\n\t\"offsetTable\":{\n\t\t\"1\":1\n\t}\n}",
        "fastjson's layout, keys quoted"
    );
}
