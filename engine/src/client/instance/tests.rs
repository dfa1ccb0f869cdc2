use std::collections::BTreeMap;
use std::sync::Mutex as StdMutex;

use super::*;
use crate::clock::test_support::TestClock;
use crate::net::{Connection, Listener, Net};
use crate::protocol::heartbeat::{ConsumeFromWhere, ConsumeType, MessageModel, SubscriptionData};
use crate::protocol::{BrokerData, QueueData};
use crate::rng::Rng;
use crate::store::test_disk::MemoryDisk;

/// A network where every connect is refused: the instance's unit tests never dial out, and
/// a refused connect shows which broker a call was meant for.
#[derive(Debug)]
struct NoNet;

impl Net for NoNet {
    fn bind(
        &self,
        _addr: std::net::SocketAddr,
    ) -> futures::future::BoxFuture<'_, std::io::Result<Box<dyn Listener>>> {
        Box::pin(async { Err(std::io::Error::other("no network in client unit tests")) })
    }

    fn connect(&self, _addr: &str) -> futures::future::BoxFuture<'_, std::io::Result<Connection>> {
        Box::pin(async { Err(std::io::Error::other("no network in client unit tests")) })
    }
}

fn env() -> Env {
    let (_disk, disk) = MemoryDisk::shared();
    Env {
        clock: TestClock::at(1_700_000_000_000),
        net: Arc::new(NoNet),
        disk,
        rng: Rng::shared(7),
    }
}

fn instance() -> Arc<ClientInstance> {
    let config = ClientConfig {
        client_ip: "10.0.0.9".into(),
        instance_name: "4242".into(),
        ..ClientConfig::with_namesrv_addr("10.0.0.100:9876")
    };
    ClientInstance::new(&env(), config, ClientProcessorTable::new())
}

fn broker(name: &str, addrs: &[(i64, &str)]) -> BrokerData {
    let mut broker = BrokerData::new("DefaultCluster", name);
    for (id, addr) in addrs {
        broker.broker_addrs.insert(*id, (*addr).to_owned());
    }
    broker
}

fn queues(name: &str, perm: i32, nums: i32) -> QueueData {
    QueueData {
        broker_name: name.into(),
        perm,
        read_queue_nums: nums,
        topic_sys_flag: 0,
        write_queue_nums: nums,
    }
}

/// Two broker groups: `broker-a` with a master and a slave, `broker-b` with a master.
fn two_group_route() -> TopicRouteData {
    TopicRouteData {
        broker_datas: vec![
            broker("broker-a", &[(0, "10.0.0.1:10911"), (1, "10.0.0.2:10911")]),
            broker("broker-b", &[(0, "10.0.0.3:10911")]),
        ],
        queue_datas: vec![queues("broker-a", 6, 4), queues("broker-b", 6, 2)],
        ..TopicRouteData::default()
    }
}

#[derive(Default)]
struct RecordingProducer {
    needs: bool,
    routes: StdMutex<Vec<(String, TopicRouteData)>>,
}

impl MqProducerInner for RecordingProducer {
    fn publish_topics(&self) -> Vec<String> {
        vec!["TBW102".into(), "T".into()]
    }

    fn is_publish_topic_need_update(&self, _topic: &str) -> bool {
        self.needs
    }

    fn update_topic_publish_info(&self, topic: &str, route: &TopicRouteData) {
        self.routes
            .lock()
            .unwrap()
            .push((topic.to_owned(), route.clone()));
    }
}

#[derive(Default)]
struct RecordingConsumer {
    needs: bool,
    subscribed: StdMutex<Vec<(String, BTreeSet<MessageQueue>)>>,
}

#[async_trait::async_trait]
impl MqConsumerInner for RecordingConsumer {
    fn consumer_data(&self) -> ConsumerData {
        ConsumerData {
            consume_from_where: ConsumeFromWhere::ConsumeFromFirstOffset,
            consume_type: ConsumeType::ConsumePassively,
            group_name: "ignored: the registration's group wins".into(),
            message_model: MessageModel::Clustering,
            subscription_data_set: vec![SubscriptionData::build("T", "*", 1)],
            unit_mode: false,
        }
    }

    fn is_subscribe_topic_need_update(&self, _topic: &str) -> bool {
        self.needs
    }

    fn update_topic_subscribe_info(&self, topic: &str, queues: &BTreeSet<MessageQueue>) {
        self.subscribed
            .lock()
            .unwrap()
            .push((topic.to_owned(), queues.clone()));
    }
}

// ---------------------------------------------------------------------------------------------
// Route change detection.

#[test]
fn a_first_route_is_a_change() {
    assert!(topic_route_data_changed(None, &two_group_route()));
}

#[test]
fn the_same_route_in_another_order_is_no_change() {
    let route = two_group_route();
    let mut shuffled = route.clone();
    shuffled.broker_datas.reverse();
    shuffled.queue_datas.reverse();
    assert!(!topic_route_data_changed(Some(&route), &shuffled));
}

#[test]
fn a_new_slave_a_lost_permission_or_more_queues_is_a_change() {
    let route = two_group_route();
    let mut slave_added = route.clone();
    slave_added.broker_datas[1]
        .broker_addrs
        .insert(1, "10.0.0.4:10911".into());
    assert!(topic_route_data_changed(Some(&route), &slave_added));
    let mut write_wiped = route.clone();
    write_wiped.queue_datas[0].perm = perm::READ;
    assert!(topic_route_data_changed(Some(&route), &write_wiped));
    let mut more_queues = route.clone();
    more_queues.queue_datas[1].write_queue_nums = 8;
    assert!(topic_route_data_changed(Some(&route), &more_queues));
    let mut ordered = route.clone();
    ordered.order_topic_conf = Some("broker-a:4".into());
    assert!(topic_route_data_changed(Some(&route), &ordered));
}

#[tokio::test]
async fn an_unchanged_route_is_installed_again_only_while_a_member_needs_it() {
    let instance = instance();
    let producer = Arc::new(RecordingProducer::default());
    assert!(instance.register_producer("pg", producer.clone()));
    assert!(instance.apply_topic_route("T", two_group_route()));
    assert!(!instance.apply_topic_route("T", two_group_route()));
    assert_eq!(producer.routes.lock().unwrap().len(), 1);

    let needy = Arc::new(RecordingConsumer {
        needs: true,
        ..RecordingConsumer::default()
    });
    assert!(instance.register_consumer("cg", needy.clone()));
    assert!(instance.apply_topic_route("T", two_group_route()));
    assert_eq!(producer.routes.lock().unwrap().len(), 2);
    let subscribed = needy.subscribed.lock().unwrap();
    assert_eq!(subscribed.len(), 1);
    assert_eq!(
        subscribed[0].1.len(),
        6,
        "4 queues on broker-a and 2 on broker-b"
    );
}

#[tokio::test]
async fn installing_a_route_fills_the_address_table_and_informs_every_member() {
    let instance = instance();
    let producer = Arc::new(RecordingProducer::default());
    let consumer = Arc::new(RecordingConsumer::default());
    instance.register_producer("pg", producer.clone());
    instance.register_consumer("cg", consumer.clone());
    assert!(instance.apply_topic_route("T", two_group_route()));
    assert_eq!(instance.broker_addr_table().len(), 2);
    assert_eq!(instance.topic_route("T"), Some(two_group_route()));
    let routes = producer.routes.lock().unwrap();
    assert_eq!(routes[0], ("T".to_string(), two_group_route()));
    let subscribed = consumer.subscribed.lock().unwrap();
    assert_eq!(subscribed[0].0, "T");
    assert!(subscribed[0].1.contains(&MessageQueue {
        broker_name: "broker-b".into(),
        queue_id: 1,
        topic: "T".into()
    }));
}

#[test]
fn subscribe_info_takes_readable_queues_even_without_a_master() {
    let mut route = two_group_route();
    route.broker_datas[1].broker_addrs.remove(&0);
    route.queue_datas.push(queues("broker-c", perm::WRITE, 8));
    let queues = topic_route_to_subscribe_info("T", &route);
    assert_eq!(queues.len(), 6, "write-only broker-c is not read");
    assert!(queues.iter().all(|queue| queue.topic == "T"));
    assert_eq!(
        queues
            .iter()
            .filter(|q| q.broker_name == "broker-b")
            .count(),
        2
    );
}

#[test]
fn the_default_route_is_capped_at_the_producers_queue_count() {
    let mut template = two_group_route();
    template.queue_datas[0] = queues("broker-a", 7, 8);
    template.queue_datas[1] = queues("broker-b", 7, 2);
    let capped = default_route_capped(template, 4);
    assert_eq!(
        (
            capped.queue_datas[0].read_queue_nums,
            capped.queue_datas[0].write_queue_nums
        ),
        (4, 4)
    );
    assert_eq!(
        (
            capped.queue_datas[1].read_queue_nums,
            capped.queue_datas[1].write_queue_nums
        ),
        (2, 2),
        "never more than the template's read queues"
    );
}

#[test]
fn a_route_is_publishable_with_a_writable_queue_on_a_master() {
    assert!(has_publishable_queue(&two_group_route()));
    let mut no_master = two_group_route();
    for broker in &mut no_master.broker_datas {
        broker.broker_addrs.remove(&0);
    }
    assert!(!has_publishable_queue(&no_master));
    let mut read_only = two_group_route();
    for queue in &mut read_only.queue_datas {
        queue.perm = perm::READ;
    }
    assert!(!has_publishable_queue(&read_only));
    assert!(!has_publishable_queue(&TopicRouteData::default()));
}

// ---------------------------------------------------------------------------------------------
// Client id, registration, registry.

#[tokio::test]
async fn the_instance_is_known_by_its_client_id_and_shared_per_id() {
    let registry = ClientInstanceRegistry::new();
    let env = env();
    let mut config = ClientConfig {
        client_ip: "10.0.0.9".into(),
        ..ClientConfig::default()
    };
    config.change_instance_name_to_pid("4242");
    let first = registry.get_or_create(&env, &config, ClientProcessorTable::new());
    assert_eq!(first.client_id(), "10.0.0.9@4242");
    let again = registry.get_or_create(&env, &config, ClientProcessorTable::new());
    assert!(Arc::ptr_eq(&first, &again));
    config.instance_name = "other".into();
    let other = registry.get_or_create(&env, &config, ClientProcessorTable::new());
    assert!(!Arc::ptr_eq(&first, &other));
    assert!(registry.remove("10.0.0.9@4242").is_some());
    assert!(registry.get("10.0.0.9@4242").is_none());
}

#[tokio::test]
async fn a_group_registers_once() {
    let instance = instance();
    assert!(instance.register_producer("pg", Arc::new(HeartbeatOnly)));
    assert!(!instance.register_producer("pg", Arc::new(HeartbeatOnly)));
    assert!(!instance.register_producer("", Arc::new(HeartbeatOnly)));
    assert!(instance.register_consumer("cg", Arc::new(RecordingConsumer::default())));
    assert!(!instance.register_consumer("cg", Arc::new(RecordingConsumer::default())));
    assert!(instance.select_producer("pg").is_some());
    assert!(instance.select_consumer("cg").is_some());
    assert!(instance.select_consumer("pg").is_none());
}

#[tokio::test]
async fn a_shut_down_instance_refuses_registrations() {
    let instance = instance();
    instance.start();
    assert_eq!(instance.state(), ServiceState::Running);
    instance.shutdown().await;
    assert_eq!(instance.state(), ServiceState::ShutdownAlready);
    assert!(!instance.register_producer("pg", Arc::new(HeartbeatOnly)));
    instance.start();
    assert_eq!(instance.state(), ServiceState::ShutdownAlready);
}

// ---------------------------------------------------------------------------------------------
// Address lookup.

#[tokio::test]
async fn publish_uses_the_master_only() {
    let instance = instance();
    instance.apply_topic_route("T", two_group_route());
    assert_eq!(
        instance
            .find_broker_address_in_publish("broker-a")
            .as_deref(),
        Some("10.0.0.1:10911")
    );
    assert_eq!(instance.find_broker_address_in_publish("broker-z"), None);
    let mut slave_only = two_group_route();
    slave_only.broker_datas[0].broker_addrs.remove(&0);
    instance.apply_topic_route("T", slave_only);
    assert_eq!(instance.find_broker_address_in_publish("broker-a"), None);
}

#[tokio::test]
async fn subscribe_finds_the_asked_broker_then_the_next_slave_then_any() {
    let instance = instance();
    instance.apply_topic_route("T", two_group_route());
    let slave = instance
        .find_broker_address_in_subscribe("broker-a", 1, false)
        .unwrap();
    assert_eq!(
        slave,
        FindBrokerResult {
            broker_addr: "10.0.0.2:10911".into(),
            slave: true,
            broker_version: 0
        }
    );
    let master = instance
        .find_broker_address_in_subscribe("broker-a", 0, true)
        .unwrap();
    assert_eq!(master.broker_addr, "10.0.0.1:10911");
    assert!(!master.slave);

    let addrs = BTreeMap::from([(0, "m".to_string()), (2, "s2".to_string())]);
    assert_eq!(
        find_in_subscribe(&addrs, 1, true),
        Some(("s2".to_string(), true)),
        "a missing slave falls back to the next id"
    );
    assert_eq!(find_in_subscribe(&addrs, 3, true), None);
    assert_eq!(
        find_in_subscribe(&addrs, 3, false),
        Some(("m".to_string(), false)),
        "unless only this broker will do, the lowest id answers"
    );
    let slaves = BTreeMap::from([(1, "s1".to_string())]);
    assert_eq!(
        find_in_subscribe(&slaves, 0, false),
        Some(("s1".to_string(), true))
    );
    assert_eq!(find_in_subscribe(&slaves, 0, true), None);
    assert_eq!(find_in_subscribe(&BTreeMap::new(), 0, false), None);
    assert!(
        instance
            .find_broker_address_in_subscribe("broker-z", 0, false)
            .is_none()
    );
}

#[tokio::test]
async fn admin_takes_the_lowest_id() {
    let instance = instance();
    let mut route = two_group_route();
    route.broker_datas[0].broker_addrs.remove(&0);
    instance.apply_topic_route("T", route);
    let found = instance.find_broker_address_in_admin("broker-a").unwrap();
    assert_eq!(found.broker_addr, "10.0.0.2:10911");
    assert!(found.slave);
}

#[tokio::test]
async fn offline_brokers_are_cleaned_when_no_route_mentions_them() {
    let instance = instance();
    instance.apply_topic_route("T", two_group_route());
    let mut smaller = two_group_route();
    smaller.broker_datas.truncate(1);
    smaller.broker_datas[0].broker_addrs.remove(&1);
    smaller.queue_datas.truncate(1);
    instance.apply_topic_route("T", smaller);
    // Installing never removes: broker-b and broker-a's slave are still known.
    assert_eq!(instance.broker_addr_table().len(), 2);
    instance.clean_offline_brokers().await;
    assert_eq!(
        instance.broker_addr_table(),
        BTreeMap::from([(
            "broker-a".to_string(),
            BTreeMap::from([(0, "10.0.0.1:10911".to_string())])
        )])
    );
}

// ---------------------------------------------------------------------------------------------
// Heartbeats.

#[test]
fn heartbeats_go_to_masters_only_without_consumers() {
    let table: BrokerAddrTable = BTreeMap::from([
        (
            "broker-a".to_string(),
            BTreeMap::from([(0, "a0".to_string()), (1, "a1".to_string())]),
        ),
        (
            "broker-b".to_string(),
            BTreeMap::from([(1, "b1".to_string())]),
        ),
    ]);
    assert_eq!(
        heartbeat_targets(&table, false),
        vec![("broker-a".to_string(), 0, "a0".to_string())]
    );
    assert_eq!(
        heartbeat_targets(&table, true)
            .into_iter()
            .map(|(_, _, addr)| addr)
            .collect::<Vec<_>>(),
        vec!["a0", "a1", "b1"]
    );
}

#[tokio::test]
async fn heartbeat_data_lists_producer_groups_and_consumer_data() {
    let instance = instance();
    instance.register_producer("pg-b", Arc::new(HeartbeatOnly));
    instance.register_producer("pg-a", Arc::new(HeartbeatOnly));
    instance.register_consumer("cg", Arc::new(RecordingConsumer::default()));
    let heartbeat = instance.heartbeat_data();
    assert_eq!(heartbeat.client_id, "10.0.0.9@4242");
    let groups: Vec<&str> = heartbeat
        .producer_data_set
        .iter()
        .map(|p| p.group_name.as_str())
        .collect();
    assert_eq!(groups, vec!["pg-a", "pg-b"]);
    assert_eq!(heartbeat.consumer_data_set.len(), 1);
    let consumer = &heartbeat.consumer_data_set[0];
    assert_eq!(consumer.group_name, "cg");
    assert_eq!(consumer.subscription_data_set[0].topic, "T");
}

#[tokio::test]
async fn a_producer_only_heartbeat_round_skips_slaves_and_a_consumer_adds_them() {
    let instance = instance();
    instance.apply_topic_route("T", two_group_route());
    assert!(
        instance.send_heartbeat_to_all_brokers().await.is_empty(),
        "nothing registered: nothing sent"
    );
    instance.register_producer("pg", Arc::new(HeartbeatOnly));
    let attempted: Vec<String> = instance
        .send_heartbeat_to_all_brokers()
        .await
        .into_iter()
        .map(|outcome| {
            assert!(outcome.result.is_err(), "the test network refuses");
            outcome.addr
        })
        .collect();
    assert_eq!(attempted, vec!["10.0.0.1:10911", "10.0.0.3:10911"]);
    instance.register_consumer("cg", Arc::new(RecordingConsumer::default()));
    let attempted: Vec<(String, i64)> = instance
        .send_heartbeat_to_all_brokers()
        .await
        .into_iter()
        .map(|outcome| (outcome.broker_name, outcome.broker_id))
        .collect();
    assert_eq!(
        attempted,
        vec![
            ("broker-a".to_string(), 0),
            ("broker-a".to_string(), 1),
            ("broker-b".to_string(), 0)
        ]
    );
}

#[tokio::test]
async fn unregistering_tells_every_known_broker_masters_and_slaves() {
    let instance = instance();
    instance.apply_topic_route("T", two_group_route());
    instance.register_producer("pg", Arc::new(HeartbeatOnly));
    let told: Vec<String> = instance
        .unregister_producer("pg")
        .await
        .into_iter()
        .map(|(addr, _)| addr)
        .collect();
    assert_eq!(
        told,
        vec!["10.0.0.1:10911", "10.0.0.2:10911", "10.0.0.3:10911"]
    );
    assert!(instance.select_producer("pg").is_none());
}

#[tokio::test]
async fn route_refresh_asks_the_name_server_for_every_used_topic() {
    // The name server is unreachable: every refresh fails with a remoting error and leaves
    // the caches as they were, and the round still covers every topic.
    let instance = instance();
    instance.register_producer("pg", Arc::new(RecordingProducer::default()));
    let error = instance.update_topic_route("T").await.unwrap_err();
    assert!(matches!(error, ClientError::Remoting(_)), "{error:?}");
    instance.update_all_topic_routes().await;
    assert!(instance.topic_route("T").is_none());
    let error = instance
        .route_or_default("T", "TBW102", 4)
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Remoting(_)), "{error:?}");
}
