//! Route bodies: which brokers serve a topic and with how many queues (`TopicRouteData`,
//! `QueueData`, `BrokerData`), and the cluster and topic listings of the name server.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::MASTER_ID;
use super::lenient::{bool_any, i32_any, null_default};

/// One broker group's queues of a topic (`QueueData.java`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueData {
    /// The broker group (master and slaves share the name).
    pub broker_name: String,
    /// Permission bits.
    #[serde(default, deserialize_with = "i32_any")]
    pub perm: i32,
    /// Queues consumers read.
    #[serde(default, deserialize_with = "i32_any")]
    pub read_queue_nums: i32,
    /// System flags.
    #[serde(default, deserialize_with = "i32_any", alias = "topicSynFlag")]
    pub topic_sys_flag: i32,
    /// Queues producers write.
    #[serde(default, deserialize_with = "i32_any")]
    pub write_queue_nums: i32,
}

/// A broker group: its name, cluster and the address of each member (`BrokerData.java`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerData {
    /// Addresses by broker id; id 0 ([`MASTER_ID`]) is the master. Keys are written quoted.
    #[serde(default, deserialize_with = "null_default")]
    pub broker_addrs: BTreeMap<i64, String>,
    /// The group's name.
    pub broker_name: String,
    /// The cluster the group belongs to.
    #[serde(default)]
    pub cluster: String,
    /// A 5.x field. Always written (`false`): 5.x clients fail to read a route without it.
    #[serde(default, deserialize_with = "bool_any")]
    pub enable_acting_master: bool,
}

impl BrokerData {
    /// A group with no members yet.
    pub fn new(cluster: impl Into<String>, broker_name: impl Into<String>) -> Self {
        Self {
            broker_addrs: BTreeMap::new(),
            broker_name: broker_name.into(),
            cluster: cluster.into(),
            enable_acting_master: false,
        }
    }

    /// The master's address, if the group has a master.
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&MASTER_ID).map(String::as_str)
    }
}

/// The route of one topic (`TopicRouteData.java`), body of GET_ROUTEINFO_BY_TOPIC.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRouteData {
    /// The broker groups serving the topic.
    #[serde(default, deserialize_with = "null_default")]
    pub broker_datas: Vec<BrokerData>,
    /// Filter servers by broker address (empty in 4.9).
    #[serde(default, deserialize_with = "null_default")]
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    /// `brokerName:queueNums;…` for order topics; when present clients publish by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    /// The queues of each broker group.
    #[serde(default, deserialize_with = "null_default")]
    pub queue_datas: Vec<QueueData>,
}

/// The clusters and their broker groups (`ClusterInfo.java`), body of
/// GET_BROKER_CLUSTER_INFO.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// Broker groups by name.
    #[serde(default, deserialize_with = "null_default")]
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// Broker-group names by cluster.
    #[serde(default, deserialize_with = "null_default")]
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

/// A list of topic names (`TopicList.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicList {
    /// A broker address, for the system-topic list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
    /// The topics.
    #[serde(default, deserialize_with = "null_default")]
    pub topic_list: BTreeSet<String>,
}

/// A string table (`KVTable.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KvTable {
    /// The entries.
    #[serde(default, deserialize_with = "null_default")]
    pub table: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{from_json, to_json};

    /// `spec/wire-protocol.md` §7.1 with the `enableActingMaster` field 5.x clients need.
    #[test]
    fn topic_route_data_is_written_as_the_spec_shows() {
        let mut broker = BrokerData::new("DefaultCluster", "broker-a");
        broker.broker_addrs.insert(0, "127.0.0.1:10911".into());
        let route = TopicRouteData {
            broker_datas: vec![broker],
            filter_server_table: BTreeMap::new(),
            order_topic_conf: None,
            queue_datas: vec![QueueData {
                broker_name: "broker-a".into(),
                perm: 6,
                read_queue_nums: 4,
                topic_sys_flag: 0,
                write_queue_nums: 4,
            }],
        };
        let json = String::from_utf8(to_json(&route)).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:10911"},"brokerName":"broker-a","#,
                r#""cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"#,
                r#""queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"#,
                r#""writeQueueNums":4}]}"#
            )
        );
        let back: TopicRouteData = from_json("route", json.as_bytes()).unwrap();
        assert_eq!(back, route);
    }

    #[test]
    fn route_from_a_java_name_server_is_read_with_unknown_fields() {
        let java = r#"{"brokerDatas":[{"brokerAddrs":{"0":"10.0.0.1:10911","1":"10.0.0.2:10911"},"brokerName":"b","cluster":"c","zoneName":"z"}],"filterServerTable":null,"queueDatas":[{"brokerName":"b","perm":"6","readQueueNums":8,"topicSynFlag":0,"writeQueueNums":8}]}"#;
        let route: TopicRouteData = from_json("route", java.as_bytes()).unwrap();
        assert_eq!(route.broker_datas[0].master_addr(), Some("10.0.0.1:10911"));
        assert_eq!(route.broker_datas[0].broker_addrs.len(), 2);
        assert_eq!(route.queue_datas[0].perm, 6);
        assert!(route.filter_server_table.is_empty());
    }

    #[test]
    fn cluster_info_and_topic_list_shapes() {
        let mut info = ClusterInfo::default();
        let mut broker = BrokerData::new("DefaultCluster", "broker-a");
        broker.broker_addrs.insert(0, "127.0.0.1:10911".into());
        info.broker_addr_table.insert("broker-a".into(), broker);
        info.cluster_addr_table
            .entry("DefaultCluster".into())
            .or_default()
            .insert("broker-a".into());
        let json = String::from_utf8(to_json(&info)).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{"0":"127.0.0.1:10911"},"#,
                r#""brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}},"#,
                r#""clusterAddrTable":{"DefaultCluster":["broker-a"]}}"#
            )
        );
        let list = TopicList {
            broker_addr: None,
            topic_list: ["B".to_string(), "A".to_string()].into_iter().collect(),
        };
        assert_eq!(to_json(&list), br#"{"topicList":["A","B"]}"#.to_vec());
        let kv = KvTable {
            table: [("k".to_string(), "v".to_string())].into_iter().collect(),
        };
        assert_eq!(to_json(&kv), br#"{"table":{"k":"v"}}"#.to_vec());
    }
}
