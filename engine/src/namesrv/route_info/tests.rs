//! The route table's evolution under registrations, unregistrations, expiry and closed
//! connections, including a master and slave of one group and two clusters.

use super::*;
use crate::clock::test_support;
use crate::protocol::TopicConfig;

fn wrapper(counter: i64, topics: &[(&str, i32)]) -> TopicConfigSerializeWrapper {
    TopicConfigSerializeWrapper {
        data_version: DataVersion {
            counter,
            timestamp: 1_700_000_000_000,
        },
        topic_config_table: topics
            .iter()
            .map(|(name, queues)| (name.to_string(), TopicConfig::new(*name, *queues)))
            .collect(),
    }
}

struct Broker<'a> {
    cluster: &'a str,
    addr: &'a str,
    name: &'a str,
    id: i64,
    channel: u64,
}

const A0: Broker<'static> = Broker {
    cluster: "c1",
    addr: "10.0.0.1:10911",
    name: "broker-a",
    id: 0,
    channel: 1,
};
const A1: Broker<'static> = Broker {
    cluster: "c1",
    addr: "10.0.0.2:10911",
    name: "broker-a",
    id: 1,
    channel: 2,
};
const B0: Broker<'static> = Broker {
    cluster: "c2",
    addr: "10.0.0.3:10911",
    name: "broker-b",
    id: 0,
    channel: 3,
};

fn register(
    table: &mut RouteInfoManager,
    broker: &Broker<'_>,
    topics: &TopicConfigSerializeWrapper,
    now: Instant,
) -> RegisterBrokerResult {
    let ha = broker.addr.replace("10911", "10912");
    let result = table.register_broker(
        &BrokerRegistration {
            cluster_name: broker.cluster,
            broker_addr: broker.addr,
            broker_name: broker.name,
            broker_id: broker.id,
            ha_server_addr: &ha,
            topic_config_wrapper: topics,
            filter_server_list: &[],
            channel_id: Some(broker.channel),
        },
        now,
    );
    table.check_invariants();
    result
}

#[tokio::test]
async fn master_registration_creates_routes_for_its_topics() {
    let now = test_support::now();
    let mut table = RouteInfoManager::new();
    let result = register(
        &mut table,
        &A0,
        &wrapper(1, &[("T", 4), ("TBW102", 8)]),
        now,
    );
    assert_eq!(
        result,
        RegisterBrokerResult::default(),
        "a master learns no master"
    );
    let route = table.pickup_topic_route_data("T").unwrap();
    assert_eq!(route.broker_datas.len(), 1);
    assert_eq!(route.broker_datas[0].master_addr(), Some(A0.addr));
    assert_eq!(route.queue_datas[0].write_queue_nums, 4);
    assert!(table.pickup_topic_route_data("TBW102").is_some());
    assert!(table.pickup_topic_route_data("Unknown").is_none());
}

#[tokio::test]
async fn unchanged_data_version_does_not_rewrite_topics() {
    let now = test_support::now();
    let mut table = RouteInfoManager::new();
    register(&mut table, &A0, &wrapper(1, &[("T", 4)]), now);
    table.wipe_write_perm_of_broker("broker-a");
    // Same version again: the wiped permission stays, as topics are not rewritten.
    register(&mut table, &A0, &wrapper(1, &[("T", 4)]), now);
    assert_eq!(
        table.pickup_topic_route_data("T").unwrap().queue_datas[0].perm,
        4
    );
    // A new version rewrites them.
    register(&mut table, &A0, &wrapper(2, &[("T", 4)]), now);
    assert_eq!(
        table.pickup_topic_route_data("T").unwrap().queue_datas[0].perm,
        6
    );
}

#[tokio::test]
async fn re_registration_with_more_queues_updates_the_route() {
    let now = test_support::now();
    let mut table = RouteInfoManager::new();
    register(&mut table, &A0, &wrapper(1, &[("T", 4)]), now);
    register(&mut table, &A0, &wrapper(2, &[("T", 8), ("U", 2)]), now);
    assert_eq!(
        table.pickup_topic_route_data("T").unwrap().queue_datas[0].read_queue_nums,
        8
    );
    assert!(table.pickup_topic_route_data("U").is_some());
}

#[tokio::test]
async fn slave_learns_its_master_and_its_topics_are_not_registered() {
    let now = test_support::now();
    let mut table = RouteInfoManager::new();
    let lonely = register(&mut table, &A1, &wrapper(1, &[("SlaveOnly", 4)]), now);
    assert_eq!(lonely.master_addr, None, "no master registered yet");
    assert!(table.pickup_topic_route_data("SlaveOnly").is_none());

    register(&mut table, &A0, &wrapper(1, &[("T", 4)]), now);
    let result = register(&mut table, &A1, &wrapper(1, &[("T", 4)]), now);
    assert_eq!(result.master_addr.as_deref(), Some(A0.addr));
    assert_eq!(result.ha_server_addr.as_deref(), Some("10.0.0.1:10912"));
    let route = table.pickup_topic_route_data("T").unwrap();
    assert_eq!(route.broker_datas[0].broker_addrs.len(), 2);
    assert!(
        route.filter_server_table.is_empty(),
        "no broker has filter servers"
    );
}

#[tokio::test]
async fn a_slave_promoted_to_master_loses_its_old_id() {
    let now = test_support::now();
    let mut table = RouteInfoManager::new();
    register(&mut table, &A1, &wrapper(1, &[("T", 4)]), now);
    let promoted = Broker { id: 0, ..A1 };
    register(&mut table, &promoted, &wrapper(1, &[("T", 4)]), now);
    let data = &table.all_cluster_info().broker_addr_table["broker-a"];
    assert_eq!(
        data.broker_addrs.iter().collect::<Vec<_>>(),
        vec![(&0, &A1.addr.to_string())]
    );
}

#[tokio::test]
async fn two_clusters_are_listed_separately() {
    let now = test_support::now();
    let mut table = RouteInfoManager::new();
    register(&mut table, &A0, &wrapper(1, &[("T", 4), ("OnlyA", 1)]), now);
    register(&mut table, &B0, &wrapper(1, &[("T", 2)]), now);
    let info = table.all_cluster_info();
    assert_eq!(info.cluster_addr_table["c1"].len(), 1);
    assert!(info.cluster_addr_table["c2"].contains("broker-b"));
    let route = table.pickup_topic_route_data("T").unwrap();
    assert_eq!(route.broker_datas.len(), 2);
    assert_eq!(route.queue_datas.len(), 2);
    assert_eq!(
        table
            .topics_by_cluster("c2")
            .topic_list
            .into_iter()
            .collect::<Vec<_>>(),
        vec!["T"]
    );
    let system = table.system_topic_list();
    assert!(system.topic_list.contains("c1") && system.topic_list.contains("broker-b"));
    assert!(system.broker_addr.is_some());
    // Deleting a topic from one cluster leaves the other's queues.
    table.delete_topic("T", Some("c1"));
    let route = table.pickup_topic_route_data("T").unwrap();
    assert_eq!(route.broker_datas[0].broker_name, "broker-b");
    table.delete_topic("T", None);
    assert!(table.pickup_topic_route_data("T").is_none());
    table.check_invariants();
}

#[tokio::test]
async fn unregister_of_last_member_removes_group_cluster_and_topics() {
    let now = test_support::now();
    let mut table = RouteInfoManager::new();
    register(&mut table, &A0, &wrapper(1, &[("T", 4)]), now);
    register(&mut table, &A1, &wrapper(1, &[("T", 4)]), now);
    table.unregister_broker("c1", A1.addr, "broker-a", 1);
    table.check_invariants();
    assert!(
        table.pickup_topic_route_data("T").is_some(),
        "master remains"
    );
    table.unregister_broker("c1", A0.addr, "broker-a", 0);
    table.check_invariants();
    assert!(table.pickup_topic_route_data("T").is_none());
    assert!(table.all_cluster_info().cluster_addr_table.is_empty());
    assert!(table.live_brokers().is_empty());
}

#[tokio::test]
async fn silent_broker_expires_after_120_seconds_not_before() {
    let start = test_support::now();
    let mut table = RouteInfoManager::new();
    register(&mut table, &A0, &wrapper(1, &[("T", 4)]), start);
    register(&mut table, &B0, &wrapper(1, &[("T", 4)]), start);
    // B keeps registering; A falls silent.
    let later = start + Duration::from_secs(90);
    register(&mut table, &B0, &wrapper(1, &[("T", 4)]), later);
    assert!(
        table
            .scan_not_active_brokers(start + BROKER_CHANNEL_EXPIRED_TIME)
            .is_empty(),
        "exactly 120 s is not yet expired (strict comparison)"
    );
    let removed = table.scan_not_active_brokers(start + Duration::from_secs(121));
    assert_eq!(
        removed,
        vec![RemovedBroker {
            broker_addr: A0.addr.into(),
            channel_id: Some(A0.channel),
        }]
    );
    table.check_invariants();
    let route = table.pickup_topic_route_data("T").unwrap();
    assert_eq!(route.broker_datas.len(), 1);
    assert_eq!(route.broker_datas[0].broker_name, "broker-b");
}

#[tokio::test]
async fn query_data_version_keeps_a_broker_alive() {
    let start = test_support::now();
    let mut table = RouteInfoManager::new();
    register(&mut table, &A0, &wrapper(1, &[("T", 4)]), start);
    table.update_broker_info_update_timestamp(A0.addr, start + Duration::from_secs(100));
    assert!(
        table
            .scan_not_active_brokers(start + Duration::from_secs(150))
            .is_empty()
    );
    assert!(!table.is_broker_topic_config_changed(A0.addr, &wrapper(1, &[]).data_version));
    assert!(table.is_broker_topic_config_changed(A0.addr, &wrapper(2, &[]).data_version));
    assert!(table.is_broker_topic_config_changed("nobody", &wrapper(1, &[]).data_version));
}

#[tokio::test]
async fn closed_registration_channel_removes_the_broker() {
    let now = test_support::now();
    let mut table = RouteInfoManager::new();
    register(&mut table, &A0, &wrapper(1, &[("T", 4)]), now);
    register(&mut table, &A1, &wrapper(1, &[("T", 4)]), now);
    // A client connection closing changes nothing.
    assert_eq!(table.on_channel_destroy("10.9.9.9:5555", 99), None);
    assert_eq!(
        table.on_channel_destroy("ignored", A0.channel),
        Some(A0.addr.to_string())
    );
    table.check_invariants();
    let route = table.pickup_topic_route_data("T").unwrap();
    assert_eq!(
        route.broker_datas[0].master_addr(),
        None,
        "only the slave remains"
    );
    assert_eq!(
        table.on_channel_destroy(A1.addr, 12345),
        Some(A1.addr.into())
    );
    assert!(table.pickup_topic_route_data("T").is_none());
    table.check_invariants();
}

#[tokio::test]
async fn wipe_and_add_write_perm_count_topics() {
    let now = test_support::now();
    let mut table = RouteInfoManager::new();
    register(&mut table, &A0, &wrapper(1, &[("T", 4), ("U", 4)]), now);
    assert_eq!(table.wipe_write_perm_of_broker("broker-a"), 2);
    assert_eq!(
        table.pickup_topic_route_data("U").unwrap().queue_datas[0].perm,
        perm::READ
    );
    assert_eq!(table.add_write_perm_of_broker("broker-a"), 2);
    assert_eq!(
        table.pickup_topic_route_data("U").unwrap().queue_datas[0].perm,
        perm::READ | perm::WRITE
    );
    assert_eq!(table.wipe_write_perm_of_broker("nobody"), 0);
}

#[tokio::test]
async fn unit_topic_lists_follow_sys_flags() {
    let now = test_support::now();
    let mut table = RouteInfoManager::new();
    let mut topics = wrapper(1, &[("Unit", 1), ("Sub", 1), ("Both", 1), ("Plain", 1)]);
    topics
        .topic_config_table
        .get_mut("Unit")
        .unwrap()
        .topic_sys_flag = 1;
    topics
        .topic_config_table
        .get_mut("Sub")
        .unwrap()
        .topic_sys_flag = 2;
    topics
        .topic_config_table
        .get_mut("Both")
        .unwrap()
        .topic_sys_flag = 3;
    register(&mut table, &A0, &topics, now);
    let names = |list: TopicList| list.topic_list.into_iter().collect::<Vec<_>>();
    assert_eq!(names(table.unit_topics()), vec!["Both", "Unit"]);
    assert_eq!(names(table.has_unit_sub_topics()), vec!["Both", "Sub"]);
    assert_eq!(names(table.has_unit_sub_non_unit_topics()), vec!["Sub"]);
    assert_eq!(table.all_topic_list().topic_list.len(), 4);
}
