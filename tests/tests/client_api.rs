//! The Rust client's foundation against the real binaries over TCP: every [`MqClientApi`]
//! call answered by `mqnamesrv` and `mqbroker` processes — routes (TOPIC_NOT_EXIST
//! included), sends (sync, oneway, batch) to an auto-created topic, pulls of every status,
//! heartbeats, consumer lists, offsets (QUERY_NOT_FOUND included), queue locks, send-back
//! to the DLQ, END_TRANSACTION and unregistration — and a [`ClientInstance`] that finds a
//! new topic through TBW102, heartbeats on its own timer, serves the broker's
//! NOTIFY_CONSUMER_IDS_CHANGED with a plugged-in processor and unregisters at shutdown.
//!
//! The broker runs with `accessMessageInMemoryMaxRatio=0`, so every stored message counts as
//! cold: a group without a committed offset is then answered QUERY_NOT_FOUND, as a Java
//! broker answers it for a queue whose first message left the page cache.
//!
//! Build the binaries first: `cargo build --bins`.
#![cfg(not(madsim))]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ferrocket_engine::client::api::{ClientError, MqClientApi, PullStatus, SendStatus};
use ferrocket_engine::client::config::ClientConfig;
use ferrocket_engine::client::instance::{
    ClientInstance, ClientInstanceRegistry, ClientProcessorTable, ClientRequestProcessor,
    HeartbeatOnly, MqConsumerInner, ServiceState,
};
use ferrocket_engine::protocol::heartbeat::{
    ConsumeFromWhere, ConsumeType, ConsumerData, HeartbeatData, LockBatchRequestBody, MessageModel,
    MessageQueue, ProducerData, SubscriptionData,
};
use ferrocket_engine::remoting::headers::{
    EndTransactionRequestHeader, NotifyConsumerIdsChangedRequestHeader,
    QueryConsumerOffsetRequestHeader, SendMessageRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use ferrocket_engine::remoting::transport::{Channel, ProcessError};
use ferrocket_engine::remoting::{RemotingCommand, request_code, response_code};
use ferrocket_engine::store::message::{BatchItem, encode_properties, property_key};
use ferrocket_tests::client::{Cluster, client_env, pull_header, raw_api, runtime, until_some};

const TIMEOUT: Duration = Duration::from_secs(3);
/// How long a condition that depends on the broker's background work may take.
const EVENTUALLY_MAX: Duration = Duration::from_secs(15);
/// The version ordinal of RocketMQ 4.9.8, which the broker announces.
const V4_9_8: i32 = 409;

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn properties(pairs: &[(&str, &str)]) -> String {
    encode_properties(
        &pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// The header a Java 4.9 producer sends for a plain message.
fn send_header(topic: &str, queue_id: i32, properties: String) -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id,
        sys_flag: 0,
        born_timestamp: wall_ms(),
        flag: 0,
        properties: Some(properties),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        batch: Some(false),
        max_reconsume_times: None,
        broker_name: None,
    }
}

fn offset_query(topic: &str, queue_id: i32) -> QueryConsumerOffsetRequestHeader {
    QueryConsumerOffsetRequestHeader {
        consumer_group: "cg".into(),
        topic: topic.into(),
        queue_id,
        broker_name: None,
    }
}

fn offset_update(
    topic: &str,
    queue_id: i32,
    commit_offset: i64,
) -> UpdateConsumerOffsetRequestHeader {
    UpdateConsumerOffsetRequestHeader {
        consumer_group: "cg".into(),
        topic: topic.into(),
        queue_id,
        commit_offset,
        broker_name: None,
    }
}

/// [`until_some`] over `probe(api, broker)`, within [`EVENTUALLY_MAX`]: for answers that
/// follow the broker's background work.
async fn until_the_broker_answers<T, F, Fut>(
    what: &str,
    cluster: &Cluster,
    api: &MqClientApi,
    broker: &str,
    probe: F,
) -> T
where
    F: Fn(MqClientApi, String) -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    until_some(what, EVENTUALLY_MAX, cluster, || {
        probe(api.clone(), broker.to_owned())
    })
    .await
}

fn queue(topic: &str, queue_id: i32) -> MessageQueue {
    MessageQueue {
        broker_name: "broker-a".into(),
        queue_id,
        topic: topic.into(),
    }
}

fn consumer_data(group: &str, topic: &str) -> ConsumerData {
    ConsumerData {
        consume_from_where: ConsumeFromWhere::ConsumeFromFirstOffset,
        consume_type: ConsumeType::ConsumePassively,
        group_name: group.into(),
        message_model: MessageModel::Clustering,
        subscription_data_set: vec![
            SubscriptionData::build(topic, "*", 1),
            SubscriptionData::build(&format!("%RETRY%{group}"), "*", 1),
        ],
        unit_mode: false,
    }
}

#[test]
fn every_client_api_call_is_answered_by_mqnamesrv_and_mqbroker() {
    let cluster = Cluster::start("accessMessageInMemoryMaxRatio=0");
    runtime().block_on(every_client_api_call(&cluster));
}

async fn every_client_api_call(cluster: &Cluster) {
    let broker = cluster.broker_addr();
    let api = raw_api(&cluster.namesrv.addr.to_string(), 11);
    let topic = "ClientApiTopic";
    let client_id = "127.0.0.1@client-api";

    // Routes: the auto-create template is served; the new topic is not known yet.
    let template = api.topic_route("TBW102", TIMEOUT).await.unwrap();
    assert_eq!(template.broker_datas.len(), 1);
    assert_eq!(template.broker_datas[0].broker_name, "broker-a");
    assert_eq!(
        template.broker_datas[0].master_addr(),
        Some(broker.as_str())
    );
    let error = api.topic_route(topic, TIMEOUT).await.unwrap_err();
    assert!(
        matches!(&error, ClientError::TopicNotExist { topic: t, .. } if t == topic),
        "{error:?}"
    );

    // Sends: sync (which auto-creates the topic with 4 queues), oneway, batch.
    let sent = api
        .send_message(
            &broker,
            "broker-a",
            send_header(
                topic,
                0,
                properties(&[("UNIQ_KEY", "U-sync"), ("TAGS", "TagA"), ("KEYS", "k1")]),
            ),
            Bytes::from_static(b"hello"),
            TIMEOUT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    assert_eq!(sent.status, SendStatus::SendOk);
    assert_eq!(sent.msg_id.as_deref(), Some("U-sync"));
    assert_eq!(sent.offset_msg_id.len(), 32, "{}", sent.offset_msg_id);
    assert_eq!(sent.queue, queue(topic, 0));
    assert_eq!(sent.queue_offset, 0);
    assert!(sent.trace_on);

    api.send_message_oneway(
        &broker,
        send_header(topic, 2, properties(&[("UNIQ_KEY", "U-oneway")])),
        Bytes::from_static(b"oneway"),
        TIMEOUT,
    )
    .await
    .unwrap();

    let items: Vec<BatchItem> = ["B1", "B2"]
        .iter()
        .map(|uniq| BatchItem {
            flag: 0,
            body: Bytes::from(format!("body-{uniq}")),
            properties: properties(&[("UNIQ_KEY", uniq), ("TAGS", "TagB")]),
        })
        .collect();
    let batch = api
        .send_batch_message(
            &broker,
            "broker-a",
            send_header(topic, 1, String::new()),
            &items,
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(batch.status, SendStatus::SendOk);
    assert_eq!(batch.msg_id.as_deref(), Some("B1,B2"));
    assert_eq!(batch.offset_msg_id.split(',').count(), 2);
    assert_eq!((batch.queue.queue_id, batch.queue_offset), (1, 0));

    // Offsets of the queues: the oneway send lands as well. A queue's max offset follows the
    // broker's dispatch of the commit log, which runs behind the acknowledgements (as in
    // Java), so each is waited for.
    for (queue_id, stored) in [(0, 1), (1, 2), (2, 1)] {
        until_the_broker_answers(
            "the messages are dispatched to their queue",
            cluster,
            &api,
            &broker,
            |api, broker| async move {
                let max = api
                    .max_offset(&broker, topic, queue_id, TIMEOUT)
                    .await
                    .ok()?;
                (max == stored).then_some(())
            },
        )
        .await;
    }
    assert_eq!(api.min_offset(&broker, topic, 0, TIMEOUT).await.unwrap(), 0);

    // Pulls: found (decoded, decorated), nothing new, offset moved, an empty queue.
    let found = api
        .pull_message(&broker, &pull_header(topic, 0, 0), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(found.status, PullStatus::Found);
    assert_eq!(
        (found.next_begin_offset, found.min_offset, found.max_offset),
        (1, 0, 1)
    );
    assert_eq!(found.messages.len(), 1);
    let message = &found.messages[0];
    assert_eq!(message.body.as_deref(), Some(&b"hello"[..]));
    assert_eq!(message.topic, topic);
    assert_eq!((message.queue_id, message.queue_offset), (0, 0));
    assert_eq!(message.uniq_key(), Some("U-sync"));
    assert_eq!(message.tags(), Some("TagA"));
    assert_eq!(message.keys(), Some("k1"));
    assert_eq!(message.property(property_key::MIN_OFFSET), Some("0"));
    assert_eq!(message.property(property_key::MAX_OFFSET), Some("1"));
    assert_eq!(message.msg_id, sent.offset_msg_id);
    let batch_found = api
        .pull_message(&broker, &pull_header(topic, 1, 0), TIMEOUT)
        .await
        .unwrap();
    let bodies: Vec<&[u8]> = batch_found
        .messages
        .iter()
        .map(|m| m.body.as_deref().unwrap())
        .collect();
    assert_eq!(bodies, vec![&b"body-B1"[..], &b"body-B2"[..]]);
    assert_eq!(batch_found.messages[1].uniq_key(), Some("B2"));
    let nothing_new = api
        .pull_message(&broker, &pull_header(topic, 0, 1), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(nothing_new.status, PullStatus::NoNewMsg);
    assert_eq!(nothing_new.next_begin_offset, 1);
    assert!(nothing_new.messages.is_empty());
    let moved = api
        .pull_message(&broker, &pull_header(topic, 0, 50), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(moved.status, PullStatus::OffsetIllegal);
    let empty = api
        .pull_message(&broker, &pull_header(topic, 3, 0), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(empty.status, PullStatus::NoNewMsg);

    // Search by time: nothing is older than the epoch; the message is found by its own time.
    assert_eq!(
        api.search_offset(&broker, topic, 0, 0, TIMEOUT)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        api.search_offset(&broker, topic, 0, message.store_timestamp, TIMEOUT)
            .await
            .unwrap(),
        0
    );

    // Heartbeat and the consumer list.
    let heartbeat = HeartbeatData {
        client_id: client_id.into(),
        consumer_data_set: vec![consumer_data("cg", topic)],
        producer_data_set: vec![ProducerData {
            group_name: "pg".into(),
        }],
    };
    assert_eq!(
        api.heartbeat(&broker, &heartbeat, TIMEOUT).await.unwrap(),
        V4_9_8
    );
    assert_eq!(
        api.consumer_id_list(&broker, "cg", TIMEOUT).await.unwrap(),
        vec![client_id.to_string()]
    );
    let error = api
        .consumer_id_list(&broker, "nobody", TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(
        error.response_code(),
        Some(response_code::SYSTEM_ERROR),
        "{error:?}"
    );

    // Consumer offsets: none yet (QUERY_NOT_FOUND), then a sync and a oneway commit.
    assert_eq!(
        api.query_consumer_offset(&broker, &offset_query(topic, 0), TIMEOUT)
            .await
            .unwrap(),
        None
    );
    api.update_consumer_offset(&broker, &offset_update(topic, 0, 1), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        api.query_consumer_offset(&broker, &offset_query(topic, 0), TIMEOUT)
            .await
            .unwrap(),
        Some(1)
    );
    api.update_consumer_offset_oneway(&broker, &offset_update(topic, 1, 2), TIMEOUT)
        .await
        .unwrap();
    until_the_broker_answers(
        "the oneway offset commit is stored",
        cluster,
        &api,
        &broker,
        |api, broker| async move {
            let offset = api
                .query_consumer_offset(&broker, &offset_query(topic, 1), TIMEOUT)
                .await
                .ok()?;
            (offset == Some(2)).then_some(())
        },
    )
    .await;

    // Queue locks: held by one client, refused to another, released, then taken by it.
    let lock_body = |client: &str, ids: &[i32]| LockBatchRequestBody {
        client_id: client.into(),
        consumer_group: "cg".into(),
        mq_set: ids.iter().map(|id| queue(topic, *id)).collect(),
    };
    let locked = api
        .lock_batch_mq(&broker, &lock_body(client_id, &[0, 1]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(locked, BTreeSet::from([queue(topic, 0), queue(topic, 1)]));
    let refused = api
        .lock_batch_mq(&broker, &lock_body("127.0.0.1@other", &[0]), TIMEOUT)
        .await
        .unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    api.unlock_batch_mq(&broker, &lock_body(client_id, &[0, 1]), TIMEOUT, false)
        .await
        .unwrap();
    let taken = api
        .lock_batch_mq(&broker, &lock_body("127.0.0.1@other", &[0]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(taken, BTreeSet::from([queue(topic, 0)]));
    api.unlock_batch_mq(&broker, &lock_body("127.0.0.1@other", &[0]), TIMEOUT, true)
        .await
        .unwrap();

    // Send-back straight to the dead-letter queue (delay level below 0).
    api.consumer_send_message_back(&broker, message, "cg", -1, 16, TIMEOUT)
        .await
        .unwrap();
    let dead = until_the_broker_answers(
        "the message reaches %DLQ%cg",
        cluster,
        &api,
        &broker,
        |api, broker| async move {
            let mut header = pull_header("%DLQ%cg", 0, 0);
            header.sys_flag = 0x4;
            let pulled = api.pull_message(&broker, &header, TIMEOUT).await.ok()?;
            (pulled.status == PullStatus::Found).then_some(pulled)
        },
    )
    .await;
    assert_eq!(dead.messages[0].body.as_deref(), Some(&b"hello"[..]));

    // END_TRANSACTION is oneway: written, never answered.
    api.end_transaction_oneway(
        &broker,
        &EndTransactionRequestHeader {
            producer_group: "pg".into(),
            tran_state_table_offset: 0,
            commit_log_offset: message.commit_log_offset,
            commit_or_rollback: 12,
            from_transaction_check: Some(false),
            msg_id: "U-sync".into(),
            transaction_id: Some("U-sync".into()),
            broker_name: None,
        },
        Some("rolled back by the test".into()),
        TIMEOUT,
    )
    .await
    .unwrap();

    // Unregistration: the group has no consumer left.
    api.unregister_client(&broker, client_id, Some("pg"), Some("cg"), TIMEOUT)
        .await
        .unwrap();
    let error = api
        .consumer_id_list(&broker, "cg", TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(
        error.response_code(),
        Some(response_code::SYSTEM_ERROR),
        "{error:?}"
    );
}

/// Records NOTIFY_CONSUMER_IDS_CHANGED requests: (group, client id of the instance).
#[derive(Default)]
struct NotifyRecorder {
    seen: Mutex<Vec<(String, String)>>,
}

#[async_trait::async_trait]
impl ClientRequestProcessor for NotifyRecorder {
    async fn process(
        &self,
        instance: &Arc<ClientInstance>,
        _channel: &Channel,
        request: RemotingCommand,
    ) -> Result<Option<RemotingCommand>, ProcessError> {
        let header: NotifyConsumerIdsChangedRequestHeader = request.decode_header()?;
        self.seen
            .lock()
            .unwrap()
            .push((header.consumer_group, instance.client_id().to_owned()));
        Ok(None)
    }
}

/// A consumer that records what the instance hands it.
struct TestConsumer {
    data: ConsumerData,
    queues: Mutex<BTreeMap<String, BTreeSet<MessageQueue>>>,
    persisted: AtomicUsize,
}

#[async_trait::async_trait]
impl MqConsumerInner for TestConsumer {
    fn consumer_data(&self) -> ConsumerData {
        self.data.clone()
    }

    fn is_subscribe_topic_need_update(&self, topic: &str) -> bool {
        !self.queues.lock().unwrap().contains_key(topic)
    }

    fn update_topic_subscribe_info(&self, topic: &str, queues: &BTreeSet<MessageQueue>) {
        self.queues
            .lock()
            .unwrap()
            .insert(topic.to_owned(), queues.clone());
    }

    async fn persist_consumer_offset(&self) {
        self.persisted.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn client_instance_finds_a_new_topic_through_tbw102_heartbeats_and_unregisters() {
    let cluster = Cluster::start("accessMessageInMemoryMaxRatio=0");
    runtime().block_on(client_instance_lifecycle(&cluster));
}

async fn client_instance_lifecycle(cluster: &Cluster) {
    let broker = cluster.broker_addr();
    let namesrv = cluster.namesrv.addr.to_string();
    let topic = "InstanceTopic";

    let mut config = ClientConfig {
        heartbeat_broker_interval: Duration::from_millis(500),
        ..ClientConfig::with_namesrv_addr(format!("{namesrv};"))
    };
    config.change_instance_name_to_pid(format!("{}#instance-test", std::process::id()));
    let registry = ClientInstanceRegistry::new();
    let notified = Arc::new(NotifyRecorder::default());
    let processors = ClientProcessorTable::new().register(
        &[request_code::NOTIFY_CONSUMER_IDS_CHANGED],
        notified.clone(),
    );
    let instance = registry.get_or_create(&client_env(21), &config, processors);
    assert_eq!(
        instance.client_id(),
        format!("127.0.0.1@{}#instance-test", std::process::id())
    );
    assert!(instance.register_producer("pg2", Arc::new(HeartbeatOnly)));
    let consumer = Arc::new(TestConsumer {
        data: consumer_data("cg2", topic),
        queues: Mutex::default(),
        persisted: AtomicUsize::new(0),
    });
    assert!(instance.register_consumer("cg2", consumer.clone()));

    // The topic is unknown: its route comes from TBW102, capped at 4 queues.
    let route = instance
        .route_or_default(topic, "TBW102", 4)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    assert_eq!(route.queue_datas.len(), 1);
    assert_eq!(route.queue_datas[0].write_queue_nums, 4);
    assert_eq!(
        instance.find_broker_address_in_publish("broker-a"),
        Some(broker.clone())
    );
    assert_eq!(
        consumer
            .queues
            .lock()
            .unwrap()
            .get(topic)
            .map(BTreeSet::len),
        Some(4),
        "the consumer got the readable queues of the installed route"
    );

    // A send through it creates the topic; the real route then replaces the template's.
    let sent = instance
        .api()
        .send_message(
            &broker,
            "broker-a",
            send_header(topic, 3, properties(&[("UNIQ_KEY", "U-instance")])),
            Bytes::from_static(b"via TBW102"),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(sent.queue, queue(topic, 3));
    until_some(
        "the broker registers the new topic",
        EVENTUALLY_MAX,
        cluster,
        || {
            let instance = instance.clone();
            async move { instance.update_topic_route(topic).await.ok()?.then_some(()) }
        },
    )
    .await;
    let real = instance.topic_route(topic).unwrap();
    assert_eq!(
        real.queue_datas[0].perm, 6,
        "TBW102's inherit bit is not inherited"
    );
    assert_eq!(
        instance.route_or_default(topic, "TBW102", 4).await.unwrap(),
        real,
        "a publishable cached route is used as is"
    );

    // The periodic heartbeat registers the consumer and records the broker's version.
    instance.start();
    assert_eq!(instance.state(), ServiceState::Running);
    let probe = raw_api(&namesrv, 22);
    until_some("a heartbeat registers cg2", EVENTUALLY_MAX, cluster, || {
        let probe = probe.clone();
        let broker = broker.clone();
        let client_id = instance.client_id().to_owned();
        async move {
            let ids = probe.consumer_id_list(&broker, "cg2", TIMEOUT).await.ok()?;
            ids.contains(&client_id).then_some(())
        }
    })
    .await;
    until_some(
        "the broker's version is recorded",
        EVENTUALLY_MAX,
        cluster,
        || {
            let version = instance.find_broker_version("broker-a", &broker);
            async move { (version == V4_9_8).then_some(()) }
        },
    )
    .await;
    until_some(
        "the broker notifies the joined group through the plugged-in processor",
        EVENTUALLY_MAX,
        cluster,
        || {
            let seen = notified.seen.lock().unwrap().clone();
            let client_id = instance.client_id().to_owned();
            async move { seen.contains(&("cg2".to_string(), client_id)).then_some(()) }
        },
    )
    .await;
    assert_eq!(
        instance
            .find_broker_address_in_subscribe("broker-a", 0, true)
            .map(|found| (found.broker_addr, found.slave, found.broker_version)),
        Some((broker.clone(), false, V4_9_8))
    );
    assert_eq!(
        instance.find_consumer_id_list(topic, "cg2").await.unwrap(),
        vec![instance.client_id().to_owned()]
    );

    // Shutdown persists offsets and unregisters: the broker forgets the group.
    instance.shutdown().await;
    assert!(consumer.persisted.load(Ordering::SeqCst) >= 1);
    let error = probe
        .consumer_id_list(&broker, "cg2", TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(
        error.response_code(),
        Some(response_code::SYSTEM_ERROR),
        "{error:?}"
    );
    assert!(registry.remove(instance.client_id()).is_some());
}
