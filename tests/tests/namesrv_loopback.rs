//! The name server over real loopback TCP, driven the way Java brokers and clients drive it:
//! REGISTER_BROKER with the real request header and a JSON (or compressed) body carrying its
//! CRC, route and listing queries compared against the JSON shapes of
//! `spec/wire-protocol.md` §7, KV settings across a restart on the same disk, run-time
//! config updates, and malformed requests that must cost an error answer, not the connection.
//!
//! Every test starts its own `NamesrvController` in-process on `127.0.0.1:0` over an in-memory
//! [`SimDisk`], and talks to it only through `RemotingClient`, as a remote peer would.
#![cfg(not(madsim))]

use std::collections::BTreeMap;
use std::time::Duration;

use ferrocket_engine::Env;
use ferrocket_engine::disk::SharedDisk;
use ferrocket_engine::namesrv::{NamesrvConfig, NamesrvController};
use ferrocket_engine::protocol::{
    ClusterInfo, DataVersion, KvTable, ORDER_TOPIC_CONFIG_NAMESPACE, RegisterBrokerBody,
    TopicConfig, TopicConfigSerializeWrapper, TopicList, TopicRouteData, from_json, perm,
};
use ferrocket_engine::remoting::headers::{
    DeleteKVConfigRequestHeader, GetKVConfigRequestHeader, GetKVConfigResponseHeader,
    GetKVListByNamespaceRequestHeader, GetRouteInfoRequestHeader, GetTopicsByClusterRequestHeader,
    PutKVConfigRequestHeader, QueryDataVersionRequestHeader, QueryDataVersionResponseHeader,
    RegisterBrokerRequestHeader, RegisterBrokerResponseHeader, WipeWritePermOfBrokerRequestHeader,
    WipeWritePermOfBrokerResponseHeader,
};
use ferrocket_engine::remoting::transport::{NettyServerConfig, RemotingClient};
use ferrocket_engine::remoting::{RemotingCommand, request_code as rc, response_code};
use ferrocket_engine::rng::Rng;
use ferrocket_net::{SystemClock, TokioNet};
use ferrocket_sim::SimDisk;
use ferrocket_tests::remoting_client;

const TIMEOUT: Duration = Duration::from_secs(5);
const CLUSTER: &str = "DefaultCluster";
const MASTER_ADDR: &str = "127.0.0.1:10911";
const MASTER_HA_ADDR: &str = "127.0.0.1:10912";

// ---------------------------------------------------------------------------------------------
// Helpers: a name server with a client, a broker that registers, a few request builders.
// ---------------------------------------------------------------------------------------------

/// CRC-32 (IEEE), written out here rather than taken from the engine so that the test checks
/// the name server's checksum against an independent computation.
const fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    let mut i = 0;
    while i < bytes.len() {
        crc ^= bytes[i] as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        i += 1;
    }
    !crc
}

// The standard check value of CRC-32.
const _: () = assert!(crc32(b"123456789") == 0xCBF4_3926);

/// RocketMQ's `bodyCrc32`: `crc32(body) & 0x7FFFFFFF`.
fn body_crc32(body: &[u8]) -> i32 {
    (crc32(body) & 0x7FFF_FFFF) as i32
}

/// A name server listening on a loopback port, and a client connected to it (an admin tool,
/// or a broker when a test registers through it).
struct NameServer {
    controller: NamesrvController,
    addr: String,
    disk: SharedDisk,
    client: RemotingClient,
}

impl NameServer {
    /// A name server with default settings on a fresh disk.
    async fn start() -> Self {
        Self::start_with(SimDisk::new().shared(), NamesrvConfig::default()).await
    }

    /// A name server with `config` over `disk` (pass an earlier server's disk to restart it).
    async fn start_with(disk: SharedDisk, config: NamesrvConfig) -> Self {
        let env = Env {
            clock: SystemClock::shared(),
            net: TokioNet::shared(),
            disk: disk.clone(),
            rng: Rng::shared(7),
        };
        let server_config = NettyServerConfig {
            listen_port: 0,
            bind_address: "127.0.0.1".into(),
            ..Default::default()
        };
        let controller = NamesrvController::start(env, config, server_config)
            .await
            .expect("the name server starts on a free loopback port");
        let addr = controller.local_addr().to_string();
        Self {
            controller,
            addr,
            disk,
            client: remoting_client(1),
        }
    }

    /// Sends `request` over this server's client and returns the response.
    async fn call(&self, request: RemotingCommand) -> RemotingCommand {
        self.call_via(&self.client, request).await
    }

    /// Sends `request` over `client` (another connection) and returns the response.
    async fn call_via(&self, client: &RemotingClient, request: RemotingCommand) -> RemotingCommand {
        let code = request.code;
        client
            .invoke(&self.addr, request, TIMEOUT)
            .await
            .unwrap_or_else(|error| panic!("request {code} to {} failed: {error}", self.addr))
    }

    /// Registers `broker` over this server's client; the registration must succeed.
    async fn register(&self, broker: &Broker) -> RemotingCommand {
        let response = self.call(broker.register_request()).await;
        assert_success(&response);
        response
    }

    /// GET_ROUTEINFO_BY_TOPIC, as a client asks it.
    async fn route(&self, topic: &str) -> RemotingCommand {
        self.call(route_request(topic)).await
    }

    /// The route of `topic`, which must exist.
    async fn route_data(&self, topic: &str) -> TopicRouteData {
        let response = self.route(topic).await;
        assert_success(&response);
        from_json("TopicRouteData", &response.body).expect("the route body is TopicRouteData")
    }

    /// GET_BROKER_CLUSTER_INFO.
    async fn cluster_info(&self) -> ClusterInfo {
        let response = self
            .call(RemotingCommand::request(rc::GET_BROKER_CLUSTER_INFO))
            .await;
        assert_success(&response);
        from_json("ClusterInfo", &response.body).expect("the body is ClusterInfo")
    }

    /// GET_NAMESRV_CONFIG, as key → value.
    async fn namesrv_config(&self) -> BTreeMap<String, String> {
        let response = self
            .call(RemotingCommand::request(rc::GET_NAMESRV_CONFIG))
            .await;
        assert_success(&response);
        std::str::from_utf8(&response.body)
            .expect("the config body is text")
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect()
    }

    /// UPDATE_NAMESRV_CONFIG with `properties` as the body; returns the response.
    async fn update_config(&self, properties: &str) -> RemotingCommand {
        let request = RemotingCommand::request(rc::UPDATE_NAMESRV_CONFIG)
            .with_body(properties.as_bytes().to_vec());
        self.call(request).await
    }

    /// PUT_KV_CONFIG; must succeed.
    async fn put_kv(&self, namespace: &str, key: &str, value: &str) {
        let header = PutKVConfigRequestHeader {
            namespace: namespace.into(),
            key: key.into(),
            value: value.into(),
        };
        let response = self
            .call(RemotingCommand::request_with_header(
                rc::PUT_KV_CONFIG,
                &header,
            ))
            .await;
        assert_success(&response);
    }

    /// GET_KV_CONFIG; returns the response.
    async fn get_kv(&self, namespace: &str, key: &str) -> RemotingCommand {
        let header = GetKVConfigRequestHeader {
            namespace: namespace.into(),
            key: key.into(),
        };
        self.call(RemotingCommand::request_with_header(
            rc::GET_KV_CONFIG,
            &header,
        ))
        .await
    }

    /// The value GET_KV_CONFIG answers, or `None` for QUERY_NOT_FOUND.
    async fn kv_value(&self, namespace: &str, key: &str) -> Option<String> {
        let response = self.get_kv(namespace, key).await;
        if response.code == response_code::QUERY_NOT_FOUND {
            return None;
        }
        assert_success(&response);
        let header: GetKVConfigResponseHeader = response
            .decode_header()
            .expect("a GET_KV_CONFIG answer carries its header");
        Some(header.value.expect("a found key has a value"))
    }

    /// GET_KVLIST_BY_NAMESPACE; returns the response.
    async fn kv_list(&self, namespace: &str) -> RemotingCommand {
        let header = GetKVListByNamespaceRequestHeader {
            namespace: namespace.into(),
        };
        self.call(RemotingCommand::request_with_header(
            rc::GET_KVLIST_BY_NAMESPACE,
            &header,
        ))
        .await
    }

    /// Polls the route of `topic` until it is TOPIC_NOT_EXIST; panics after `TIMEOUT`.
    async fn wait_until_route_is_gone(&self, topic: &str) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let response = self.route(topic).await;
            if response.code == response_code::TOPIC_NOT_EXIST {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the route of {topic} is still served: {response:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A broker as the name server sees it: its identity and the topics it registers.
#[derive(Debug, Clone)]
struct Broker {
    cluster: String,
    name: String,
    addr: String,
    id: i64,
    ha_addr: String,
    topics: Vec<TopicConfig>,
    data_version: DataVersion,
}

impl Broker {
    /// A master (id 0) of group `name` in [`CLUSTER`] serving `topics` as (name, queues).
    fn master(name: &str, addr: &str, topics: &[(&str, i32)]) -> Self {
        Self {
            cluster: CLUSTER.into(),
            name: name.into(),
            addr: addr.into(),
            id: 0,
            ha_addr: MASTER_HA_ADDR.into(),
            topics: topics
                .iter()
                .map(|&(topic, queues)| TopicConfig::new(topic, queues))
                .collect(),
            data_version: DataVersion {
                counter: 1,
                timestamp: 1_700_000_000_000,
            },
        }
    }

    /// The same broker in cluster `cluster`.
    fn in_cluster(mut self, cluster: &str) -> Self {
        self.cluster = cluster.into();
        self
    }

    /// A slave of `master`'s group with `id` at `addr`, registering the same topics.
    fn slave_of(master: &Broker, id: i64, addr: &str) -> Self {
        Self {
            addr: addr.into(),
            id,
            ha_addr: "127.0.0.1:10922".into(),
            ..master.clone()
        }
    }

    fn body(&self) -> RegisterBrokerBody {
        RegisterBrokerBody {
            filter_server_list: Vec::new(),
            topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
                data_version: self.data_version,
                topic_config_table: self
                    .topics
                    .iter()
                    .map(|topic| (topic.topic_name.clone(), topic.clone()))
                    .collect(),
            },
        }
    }

    /// REGISTER_BROKER with `body` and the header a Java broker sends for it, `bodyCrc32`
    /// set to `crc`.
    fn register_request_raw(&self, body: Vec<u8>, compressed: bool, crc: i32) -> RemotingCommand {
        let header = RegisterBrokerRequestHeader {
            broker_name: self.name.clone(),
            broker_addr: self.addr.clone(),
            cluster_name: self.cluster.clone(),
            ha_server_addr: self.ha_addr.clone(),
            broker_id: self.id,
            compressed: Some(compressed),
            body_crc32: Some(crc),
        };
        RemotingCommand::request_with_header(rc::REGISTER_BROKER, &header).with_body(body)
    }

    /// REGISTER_BROKER with the JSON body and its correct CRC.
    fn register_request(&self) -> RemotingCommand {
        let body = self.body().encode();
        let crc = body_crc32(&body);
        self.register_request_raw(body, false, crc)
    }

    /// REGISTER_BROKER with the compressed body and its correct CRC.
    fn register_request_compressed(&self) -> RemotingCommand {
        let body = self.body().encode_compressed();
        let crc = body_crc32(&body);
        self.register_request_raw(body, true, crc)
    }

    /// QUERY_DATA_VERSION offering `version`.
    fn query_data_version_request(&self, version: DataVersion) -> RemotingCommand {
        let header = QueryDataVersionRequestHeader {
            broker_name: self.name.clone(),
            broker_addr: self.addr.clone(),
            cluster_name: self.cluster.clone(),
            broker_id: self.id,
        };
        RemotingCommand::request_with_header(rc::QUERY_DATA_VERSION, &header)
            .with_body(serde_json::to_vec(&version).expect("a DataVersion serializes"))
    }
}

fn route_request(topic: &str) -> RemotingCommand {
    let header = GetRouteInfoRequestHeader {
        topic: topic.into(),
        accept_standard_json_only: None,
    };
    RemotingCommand::request_with_header(rc::GET_ROUTEINFO_BY_TOPIC, &header)
}

fn assert_success(response: &RemotingCommand) {
    assert!(response.is_response(), "not a response: {response:?}");
    assert_eq!(
        response.code,
        response_code::SUCCESS,
        "remark {:?}",
        response.remark
    );
}

fn assert_code(response: &RemotingCommand, code: i32) {
    assert!(response.is_response(), "not a response: {response:?}");
    assert_eq!(response.code, code, "remark {:?}", response.remark);
}

fn remark(response: &RemotingCommand) -> &str {
    response.remark.as_deref().unwrap_or_default()
}

fn body_text(response: &RemotingCommand) -> &str {
    std::str::from_utf8(&response.body).expect("the body is UTF-8 JSON")
}

fn topic_names(list: &TopicList) -> Vec<&str> {
    list.topic_list.iter().map(String::as_str).collect()
}

/// `spec/wire-protocol.md` §7.1, with the `enableActingMaster` field 5.x clients need: the
/// route of a topic with 4 queues on master `broker-a` at [`MASTER_ADDR`].
const GOLDEN_ROUTE: &str = concat!(
    r#"{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:10911"},"brokerName":"broker-a","#,
    r#""cluster":"DefaultCluster","enableActingMaster":false}],"#,
    r#""filterServerTable":{},"#,
    r#""queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"#,
    r#""writeQueueNums":4}]}"#
);

// ---------------------------------------------------------------------------------------------
// Registration and routes.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn registered_master_makes_the_route_answer_the_golden_json_of_the_spec() {
    let namesrv = NameServer::start().await;
    let master = Broker::master("broker-a", MASTER_ADDR, &[("TopicTest", 4)]);

    let registered = namesrv.register(&master).await;
    let header: RegisterBrokerResponseHeader = registered.decode_header().unwrap();
    assert_eq!(
        header,
        RegisterBrokerResponseHeader::default(),
        "a master has no master"
    );

    let response = namesrv.route("TopicTest").await;
    assert_success(&response);
    assert_eq!(body_text(&response), GOLDEN_ROUTE);
}

#[tokio::test]
async fn route_of_an_unknown_topic_is_answered_topic_not_exist() {
    let namesrv = NameServer::start().await;
    namesrv
        .register(&Broker::master(
            "broker-a",
            MASTER_ADDR,
            &[("TopicTest", 4)],
        ))
        .await;

    let response = namesrv.route("NoSuchTopic").await;
    assert_code(&response, response_code::TOPIC_NOT_EXIST);
    assert!(
        remark(&response)
            .starts_with("No topic route info in name server for the topic: NoSuchTopic"),
        "{:?}",
        response.remark
    );
    assert!(response.body.is_empty());
}

#[tokio::test]
async fn registration_with_a_wrong_crc_is_refused_and_registers_nothing() {
    let namesrv = NameServer::start().await;
    let master = Broker::master("broker-a", MASTER_ADDR, &[("TopicTest", 4)]);
    let body = master.body().encode();
    let wrong_crc = body_crc32(&body) ^ 1;

    let response = namesrv
        .call(master.register_request_raw(body, false, wrong_crc))
        .await;
    assert_code(&response, response_code::SYSTEM_ERROR);
    assert!(
        remark(&response).contains("crc32 not match"),
        "{:?}",
        response.remark
    );

    assert_code(
        &namesrv.route("TopicTest").await,
        response_code::TOPIC_NOT_EXIST,
    );
    assert_eq!(namesrv.cluster_info().await, ClusterInfo::default());
}

#[tokio::test]
async fn compressed_registration_registers_the_same_routes_as_the_json_form() {
    let mut master = Broker::master(
        "broker-a",
        MASTER_ADDR,
        &[("TopicA", 8), ("TopicB", 2), ("TBW102", 8)],
    );
    master.topics[1].perm = perm::READ;
    master.topics[1].write_queue_nums = 1;
    let json_namesrv = NameServer::start().await;
    let compressed_namesrv = NameServer::start().await;

    json_namesrv.register(&master).await;
    let response = compressed_namesrv
        .call(master.register_request_compressed())
        .await;
    assert_success(&response);

    for topic in ["TopicA", "TopicB", "TBW102"] {
        let from_json = json_namesrv.route(topic).await;
        let from_compressed = compressed_namesrv.route(topic).await;
        assert_success(&from_compressed);
        assert_eq!(
            body_text(&from_compressed),
            body_text(&from_json),
            "{topic}"
        );
    }
    let route_b = compressed_namesrv.route_data("TopicB").await;
    assert_eq!(route_b.queue_datas[0].perm, perm::READ);
    assert_eq!(route_b.queue_datas[0].read_queue_nums, 2);
    assert_eq!(route_b.queue_datas[0].write_queue_nums, 1);
}

#[tokio::test]
async fn slave_registering_after_its_master_is_told_the_master_and_ha_addresses() {
    let namesrv = NameServer::start().await;
    let master = Broker::master("broker-a", MASTER_ADDR, &[("TopicTest", 4)]);
    let slave = Broker::slave_of(&master, 1, "127.0.0.1:10921");
    namesrv.register(&master).await;

    let response = namesrv.register(&slave).await;
    let header: RegisterBrokerResponseHeader = response.decode_header().unwrap();
    assert_eq!(header.master_addr.as_deref(), Some(MASTER_ADDR));
    assert_eq!(header.ha_server_addr.as_deref(), Some(MASTER_HA_ADDR));

    let route = namesrv.route_data("TopicTest").await;
    let addrs = &route.broker_datas[0].broker_addrs;
    assert_eq!(addrs.get(&0).map(String::as_str), Some(MASTER_ADDR));
    assert_eq!(addrs.get(&1).map(String::as_str), Some("127.0.0.1:10921"));
}

#[tokio::test]
async fn closing_the_registering_connection_removes_the_brokers_routes() {
    let namesrv = NameServer::start().await;
    let broker_connection = remoting_client(2);
    let master = Broker::master("broker-a", MASTER_ADDR, &[("TopicTest", 4)]);
    let response = namesrv
        .call_via(&broker_connection, master.register_request())
        .await;
    assert_success(&response);
    assert_success(&namesrv.route("TopicTest").await);

    broker_connection.shutdown();

    namesrv.wait_until_route_is_gone("TopicTest").await;
    assert_eq!(namesrv.cluster_info().await, ClusterInfo::default());
}

#[tokio::test]
async fn query_data_version_reports_changed_only_for_another_version() {
    let namesrv = NameServer::start().await;
    let master = Broker::master("broker-a", MASTER_ADDR, &[("TopicTest", 4)]);
    namesrv.register(&master).await;

    let same = namesrv
        .call(master.query_data_version_request(master.data_version))
        .await;
    assert_success(&same);
    let header: QueryDataVersionResponseHeader = same.decode_header().unwrap();
    assert!(!header.changed);
    let stored: DataVersion = from_json("DataVersion", &same.body).unwrap();
    assert_eq!(
        stored, master.data_version,
        "the answer carries the stored version"
    );

    let mut newer = master.data_version;
    newer.next_version(1_700_000_001_000);
    let other = namesrv.call(master.query_data_version_request(newer)).await;
    assert_success(&other);
    let header: QueryDataVersionResponseHeader = other.decode_header().unwrap();
    assert!(header.changed);
}

#[tokio::test]
async fn cluster_info_and_topic_listings_have_the_spec_shapes() {
    let namesrv = NameServer::start().await;
    namesrv
        .register(&Broker::master(
            "broker-a",
            MASTER_ADDR,
            &[("TopicA", 4), ("TopicShared", 4)],
        ))
        .await;
    namesrv
        .register(
            &Broker::master(
                "broker-b",
                "127.0.0.1:20911",
                &[("TopicB", 4), ("TopicShared", 4)],
            )
            .in_cluster("OtherCluster"),
        )
        .await;

    let response = namesrv
        .call(RemotingCommand::request(rc::GET_BROKER_CLUSTER_INFO))
        .await;
    assert_success(&response);
    assert_eq!(
        body_text(&response),
        concat!(
            r#"{"brokerAddrTable":{"#,
            r#""broker-a":{"brokerAddrs":{"0":"127.0.0.1:10911"},"brokerName":"broker-a","#,
            r#""cluster":"DefaultCluster","enableActingMaster":false},"#,
            r#""broker-b":{"brokerAddrs":{"0":"127.0.0.1:20911"},"brokerName":"broker-b","#,
            r#""cluster":"OtherCluster","enableActingMaster":false}},"#,
            r#""clusterAddrTable":{"DefaultCluster":["broker-a"],"OtherCluster":["broker-b"]}}"#
        )
    );
    let info: ClusterInfo = from_json("ClusterInfo", &response.body).unwrap();
    assert_eq!(info.broker_addr_table["broker-b"].cluster, "OtherCluster");
    assert_eq!(
        info.broker_addr_table["broker-a"].master_addr(),
        Some(MASTER_ADDR)
    );

    let response = namesrv
        .call(RemotingCommand::request(
            rc::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
        ))
        .await;
    assert_success(&response);
    assert_eq!(
        body_text(&response),
        r#"{"topicList":["TopicA","TopicB","TopicShared"]}"#
    );
    let all: TopicList = from_json("TopicList", &response.body).unwrap();
    assert_eq!(topic_names(&all), ["TopicA", "TopicB", "TopicShared"]);

    let header = GetTopicsByClusterRequestHeader {
        cluster: CLUSTER.into(),
    };
    let response = namesrv
        .call(RemotingCommand::request_with_header(
            rc::GET_TOPICS_BY_CLUSTER,
            &header,
        ))
        .await;
    assert_success(&response);
    assert_eq!(
        body_text(&response),
        r#"{"topicList":["TopicA","TopicShared"]}"#
    );
    let by_cluster: TopicList = from_json("TopicList", &response.body).unwrap();
    assert_eq!(topic_names(&by_cluster), ["TopicA", "TopicShared"]);
}

// ---------------------------------------------------------------------------------------------
// KV settings and name-server config.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn kv_settings_are_served_listed_deleted_and_survive_a_restart() {
    let namesrv = NameServer::start().await;
    namesrv.put_kv("ns1", "k1", "v1").await;
    namesrv.put_kv("ns1", "k2", "v2").await;
    namesrv.put_kv("ns2", "k", "v").await;
    namesrv.put_kv("ns1", "k1", "v1-updated").await;

    assert_eq!(
        namesrv.kv_value("ns1", "k1").await.as_deref(),
        Some("v1-updated")
    );
    let missing = namesrv.get_kv("ns1", "nope").await;
    assert_code(&missing, response_code::QUERY_NOT_FOUND);
    assert!(remark(&missing).contains("nope"), "{:?}", missing.remark);

    let list = namesrv.kv_list("ns1").await;
    assert_success(&list);
    assert_eq!(
        body_text(&list),
        r#"{"table":{"k1":"v1-updated","k2":"v2"}}"#
    );
    let table: KvTable = from_json("KVTable", &list.body).unwrap();
    assert_eq!(table.table.len(), 2);
    assert_code(
        &namesrv.kv_list("no-such-namespace").await,
        response_code::QUERY_NOT_FOUND,
    );

    let header = DeleteKVConfigRequestHeader {
        namespace: "ns1".into(),
        key: "k2".into(),
    };
    let deleted = namesrv
        .call(RemotingCommand::request_with_header(
            rc::DELETE_KV_CONFIG,
            &header,
        ))
        .await;
    assert_success(&deleted);
    assert_eq!(namesrv.kv_value("ns1", "k2").await, None);

    let disk = namesrv.disk.clone();
    namesrv.controller.shutdown();
    let restarted = NameServer::start_with(disk, NamesrvConfig::default()).await;
    assert_eq!(
        restarted.kv_value("ns1", "k1").await.as_deref(),
        Some("v1-updated")
    );
    assert_eq!(restarted.kv_value("ns1", "k2").await, None);
    assert_eq!(restarted.kv_value("ns2", "k").await.as_deref(), Some("v"));
}

#[tokio::test]
async fn namesrv_config_update_of_a_black_listed_key_is_refused() {
    let namesrv = NameServer::start().await;
    let before = namesrv.namesrv_config().await;

    let response = namesrv
        .update_config("kvConfigPath=/tmp/elsewhere.json\n")
        .await;
    assert_code(&response, response_code::NO_PERMISSION);
    assert!(
        remark(&response).contains("kvConfigPath"),
        "{:?}",
        response.remark
    );

    let after = namesrv.namesrv_config().await;
    assert_eq!(after["kvConfigPath"], "namesrv/kvConfig.json");
    assert_eq!(after, before);
}

/// Java's UPDATE_NAMESRV_CONFIG changes the live `NamesrvConfig` that GET_ROUTEINFO_BY_TOPIC
/// reads, so enabling order messages at run time gives order topics their `orderTopicConf`.
#[tokio::test]
async fn order_messages_enabled_by_config_update_give_order_topic_routes_their_conf() {
    let namesrv = NameServer::start().await;
    namesrv
        .register(&Broker::master(
            "broker-a",
            MASTER_ADDR,
            &[("TopicOrder", 4)],
        ))
        .await;
    namesrv
        .put_kv(ORDER_TOPIC_CONFIG_NAMESPACE, "TopicOrder", "broker-a:4")
        .await;
    assert_eq!(
        namesrv.namesrv_config().await["orderMessageEnable"],
        "false"
    );
    assert_eq!(
        namesrv.route_data("TopicOrder").await.order_topic_conf,
        None
    );

    let response = namesrv.update_config("orderMessageEnable=true\n").await;
    assert_success(&response);
    assert_eq!(namesrv.namesrv_config().await["orderMessageEnable"], "true");

    let route = namesrv.route_data("TopicOrder").await;
    assert_eq!(route.order_topic_conf.as_deref(), Some("broker-a:4"));
}

#[tokio::test]
async fn order_topic_route_carries_its_conf_when_order_messages_are_enabled_at_start() {
    let config = NamesrvConfig {
        order_message_enable: true,
        ..NamesrvConfig::default()
    };
    let namesrv = NameServer::start_with(SimDisk::new().shared(), config).await;
    namesrv
        .put_kv(ORDER_TOPIC_CONFIG_NAMESPACE, "TopicOrder", "broker-a:4")
        .await;
    let master = Broker::master(
        "broker-a",
        MASTER_ADDR,
        &[("TopicOrder", 4), ("TopicPlain", 4)],
    );

    // A registering broker is handed the order-topic namespace as a KVTable body.
    let registered = namesrv.register(&master).await;
    assert_eq!(
        body_text(&registered),
        r#"{"table":{"TopicOrder":"broker-a:4"}}"#
    );

    let response = namesrv.route("TopicOrder").await;
    assert_success(&response);
    assert!(
        body_text(&response).contains(r#""orderTopicConf":"broker-a:4""#),
        "{}",
        body_text(&response)
    );
    let route: TopicRouteData = from_json("TopicRouteData", &response.body).unwrap();
    assert_eq!(route.order_topic_conf.as_deref(), Some("broker-a:4"));
    assert_eq!(
        namesrv.route_data("TopicPlain").await.order_topic_conf,
        None
    );
}

// ---------------------------------------------------------------------------------------------
// Permissions and malformed requests.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn wipe_write_perm_answers_the_topic_count_and_routes_lose_write() {
    let namesrv = NameServer::start().await;
    namesrv
        .register(&Broker::master(
            "broker-a",
            MASTER_ADDR,
            &[("TopicA", 4), ("TopicShared", 4)],
        ))
        .await;
    namesrv
        .register(&Broker::master(
            "broker-b",
            "127.0.0.1:20911",
            &[("TopicShared", 4)],
        ))
        .await;

    let header = WipeWritePermOfBrokerRequestHeader {
        broker_name: "broker-a".into(),
    };
    let response = namesrv
        .call(RemotingCommand::request_with_header(
            rc::WIPE_WRITE_PERM_OF_BROKER,
            &header,
        ))
        .await;
    assert_success(&response);
    let answer: WipeWritePermOfBrokerResponseHeader = response.decode_header().unwrap();
    assert_eq!(answer.wipe_topic_count, 2);

    for topic in ["TopicA", "TopicShared"] {
        let route = namesrv.route_data(topic).await;
        for queue in &route.queue_datas {
            let writeable = perm::is_writeable(queue.perm);
            assert!(perm::is_readable(queue.perm), "{topic} {queue:?}");
            assert_eq!(
                writeable,
                queue.broker_name == "broker-b",
                "{topic} {queue:?}"
            );
        }
    }
}

#[tokio::test]
async fn unknown_code_and_missing_header_field_are_answered_and_the_connection_survives() {
    let namesrv = NameServer::start().await;
    // Registered over the same connection: were the connection dropped, so would the route.
    namesrv
        .register(&Broker::master(
            "broker-a",
            MASTER_ADDR,
            &[("TopicTest", 4)],
        ))
        .await;

    let unknown = namesrv.call(RemotingCommand::request(9999)).await;
    assert_code(&unknown, response_code::REQUEST_CODE_NOT_SUPPORTED);
    assert!(remark(&unknown).contains("9999"), "{:?}", unknown.remark);

    let no_topic = namesrv
        .call(RemotingCommand::request(rc::GET_ROUTEINFO_BY_TOPIC))
        .await;
    assert_code(&no_topic, response_code::SYSTEM_ERROR);
    assert!(
        remark(&no_topic).contains("`topic`"),
        "{:?}",
        no_topic.remark
    );

    // Give a close, had there been one, time to reach the broker housekeeping.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let route = namesrv.route_data("TopicTest").await;
    assert_eq!(route.broker_datas[0].master_addr(), Some(MASTER_ADDR));
}
