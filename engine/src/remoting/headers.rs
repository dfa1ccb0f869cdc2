//! The header catalog: every custom header of the RocketMQ 4.x protocol as a typed struct.
//!
//! Each struct mirrors one `CommandCustomHeader` class of apache/rocketmq 4.9.x (packages
//! `common.protocol.header` and `common.protocol.header.namesrv`) and keeps its Java name, so
//! a reader of the Java code finds the way. Processors decode a request's `extFields` into
//! one of these with [`CommandHeader::decode`] and answer with another one through
//! [`CommandHeader::encode`]; [`super::header`] holds the machinery.
//!
//! Invariants of every declaration below:
//!
//! - the wire key is the Java field name, letter for letter (`clientID`, `isForce`, the
//!   one-letter keys of [`SendMessageRequestHeaderV2`]);
//! - a field is required exactly when the Java field is `@CFNotNull`; every other field is an
//!   `Option`, including Java primitives such as `boolean unitMode` that Java always writes;
//! - Java `Integer`/`int` is `i32`, `Long`/`long` is `i64`, `Boolean`/`boolean` is `bool`;
//!   fields whose meaning is a Java enum travel as the enum's name and are `String` here.
//!
//! Java itself is laxer than this catalog: its reflective decoder only logs a missing
//! `@CFNotNull` field (the processor then fails on a `null`), whereas here a missing required
//! field is a [`HeaderError::Missing`] naming the wire key, which a processor turns into an
//! error response.
//!
//! Since 4.9.5 the headers that extend `RpcRequestHeader` also carry the broker name under
//! the key `bname` (`n` in [`SendMessageRequestHeaderV2`]); older clients omit it, so it is
//! always optional. (5.x renamed nothing here but added `ns`, `nsd` and `oway`, which are
//! unknown keys to a 4.x broker and ignored.)
//!
//! Headers whose Java class has no fields are unit structs, so a processor can still name the
//! header it answers with.

use super::code::request_code;
use super::command::ExtFields;
use super::header::{CommandHeader, HeaderError};

/// Declares a header whose Java class has no fields: it reads and writes nothing.
macro_rules! empty_header {
    ($(#[$meta:meta])* $vis:vis struct $name:ident;) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        $vis struct $name;

        impl CommandHeader for $name {
            fn decode(_: &ExtFields) -> Result<Self, HeaderError> {
                Ok(Self)
            }
            fn encode(&self, _: &mut ExtFields) {}
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Name server: KV config.
// ---------------------------------------------------------------------------------------------

crate::command_header! {
    /// `PutKVConfigRequestHeader`: PUT_KV_CONFIG (100), store one namespaced KV pair.
    pub struct PutKVConfigRequestHeader {
        /// The KV namespace, e.g. `ORDER_TOPIC_CONFIG`.
        namespace: String = "namespace",
        /// The key inside the namespace.
        key: String = "key",
        /// The value to store.
        value: String = "value",
    }
}

crate::command_header! {
    /// `GetKVConfigRequestHeader`: GET_KV_CONFIG (101), read one namespaced KV pair.
    pub struct GetKVConfigRequestHeader {
        /// The KV namespace.
        namespace: String = "namespace",
        /// The key inside the namespace.
        key: String = "key",
    }
}

crate::command_header! {
    /// `GetKVConfigResponseHeader`: the answer to GET_KV_CONFIG (101).
    pub struct GetKVConfigResponseHeader {
        /// The stored value; absent when the key is unknown (the code is then QUERY_NOT_FOUND).
        value: Option<String> = "value",
    }
}

crate::command_header! {
    /// `DeleteKVConfigRequestHeader`: DELETE_KV_CONFIG (102), remove one namespaced KV pair.
    pub struct DeleteKVConfigRequestHeader {
        /// The KV namespace.
        namespace: String = "namespace",
        /// The key inside the namespace.
        key: String = "key",
    }
}

crate::command_header! {
    /// `GetKVListByNamespaceRequestHeader`: GET_KVLIST_BY_NAMESPACE (219), read a whole
    /// namespace as a KVTable body.
    pub struct GetKVListByNamespaceRequestHeader {
        /// The KV namespace.
        namespace: String = "namespace",
    }
}

// ---------------------------------------------------------------------------------------------
// Name server: broker registration and routes.
// ---------------------------------------------------------------------------------------------

crate::command_header! {
    /// `RegisterBrokerRequestHeader`: REGISTER_BROKER (103), a broker's periodic registration
    /// (body: RegisterBrokerBody).
    pub struct RegisterBrokerRequestHeader {
        /// The broker group name, e.g. `broker-a`.
        broker_name: String = "brokerName",
        /// The broker's client-facing address, `ip:port`.
        broker_addr: String = "brokerAddr",
        /// The cluster the broker belongs to.
        cluster_name: String = "clusterName",
        /// The broker's HA listen address, `ip:port`.
        ha_server_addr: String = "haServerAddr",
        /// The broker id: 0 for the master, above 0 for slaves.
        broker_id: i64 = "brokerId",
        /// Whether the body is zlib-compressed; absent reads as `false`.
        compressed: Option<bool> = "compressed",
        /// `crc32(body) & 0x7FFFFFFF`; absent or 0 means "do not check" (Java default 0).
        body_crc32: Option<i32> = "bodyCrc32",
    }
}

crate::command_header! {
    /// `RegisterBrokerResponseHeader`: the answer to REGISTER_BROKER (103).
    pub struct RegisterBrokerResponseHeader {
        /// The master's HA address, for a registering slave.
        ha_server_addr: Option<String> = "haServerAddr",
        /// The master's address, for a registering slave.
        master_addr: Option<String> = "masterAddr",
    }
}

crate::command_header! {
    /// `UnRegisterBrokerRequestHeader`: UNREGISTER_BROKER (104), a broker's goodbye.
    pub struct UnRegisterBrokerRequestHeader {
        /// The broker group name.
        broker_name: String = "brokerName",
        /// The broker's address, `ip:port`.
        broker_addr: String = "brokerAddr",
        /// The cluster the broker belongs to.
        cluster_name: String = "clusterName",
        /// The broker id: 0 for the master.
        broker_id: i64 = "brokerId",
    }
}

crate::command_header! {
    /// `GetRouteInfoRequestHeader`: GET_ROUTEINFO_BY_TOPIC (105), a client's route lookup.
    pub struct GetRouteInfoRequestHeader {
        /// The topic whose route is wanted.
        topic: String = "topic",
        /// Whether the client wants strictly standard JSON in the body (4.9.4+; Java clients
        /// do not send it).
        accept_standard_json_only: Option<bool> = "acceptStandardJsonOnly",
    }
}

crate::command_header! {
    /// `QueryDataVersionRequestHeader`: QUERY_DATA_VERSION (322), a broker asking whether its
    /// registration is stale (body: DataVersion).
    pub struct QueryDataVersionRequestHeader {
        /// The broker group name.
        broker_name: String = "brokerName",
        /// The broker's address, `ip:port`.
        broker_addr: String = "brokerAddr",
        /// The cluster the broker belongs to.
        cluster_name: String = "clusterName",
        /// The broker id: 0 for the master.
        broker_id: i64 = "brokerId",
    }
}

crate::command_header! {
    /// `QueryDataVersionResponseHeader`: the answer to QUERY_DATA_VERSION (322).
    pub struct QueryDataVersionResponseHeader {
        /// Whether the name server's data version differs from the broker's.
        changed: bool = "changed",
    }
}

crate::command_header! {
    /// `WipeWritePermOfBrokerRequestHeader`: WIPE_WRITE_PERM_OF_BROKER (205), drop the write
    /// permission of a broker in every route.
    pub struct WipeWritePermOfBrokerRequestHeader {
        /// The broker group name.
        broker_name: String = "brokerName",
    }
}

crate::command_header! {
    /// `WipeWritePermOfBrokerResponseHeader`: the answer to WIPE_WRITE_PERM_OF_BROKER (205).
    pub struct WipeWritePermOfBrokerResponseHeader {
        /// How many topics lost the write permission.
        wipe_topic_count: i32 = "wipeTopicCount",
    }
}

crate::command_header! {
    /// `AddWritePermOfBrokerRequestHeader`: ADD_WRITE_PERM_OF_BROKER (327, 4.9.2+), restore
    /// the write permission of a broker in every route.
    pub struct AddWritePermOfBrokerRequestHeader {
        /// The broker group name.
        broker_name: String = "brokerName",
    }
}

crate::command_header! {
    /// `AddWritePermOfBrokerResponseHeader`: the answer to ADD_WRITE_PERM_OF_BROKER (327).
    pub struct AddWritePermOfBrokerResponseHeader {
        /// How many topics regained the write permission.
        add_topic_count: i32 = "addTopicCount",
    }
}

crate::command_header! {
    /// `DeleteTopicFromNamesrvRequestHeader` (`DeleteTopicInNamesrvRequestHeader` before
    /// 4.9.3): DELETE_TOPIC_IN_NAMESRV (216).
    pub struct DeleteTopicFromNamesrvRequestHeader {
        /// The topic to remove from the route table.
        topic: String = "topic",
        /// Limit the removal to this cluster's brokers (4.9.3+); absent means everywhere.
        cluster_name: Option<String> = "clusterName",
    }
}

crate::command_header! {
    /// `GetTopicsByClusterRequestHeader`: GET_TOPICS_BY_CLUSTER (224), list a cluster's topics.
    pub struct GetTopicsByClusterRequestHeader {
        /// The cluster name.
        cluster: String = "cluster",
    }
}

// ---------------------------------------------------------------------------------------------
// Broker: send.
// ---------------------------------------------------------------------------------------------

crate::command_header! {
    /// `SendMessageRequestHeader`: SEND_MESSAGE (10) and SEND_REPLY_MESSAGE (324); also the
    /// form every processor works with after converting a [`SendMessageRequestHeaderV2`].
    pub struct SendMessageRequestHeader {
        /// The producer group.
        producer_group: String = "producerGroup",
        /// The target topic.
        topic: String = "topic",
        /// The template topic for auto-creation, normally `TBW102`.
        default_topic: String = "defaultTopic",
        /// The queue count an auto-created topic gets.
        default_topic_queue_nums: i32 = "defaultTopicQueueNums",
        /// The target queue; negative lets the broker choose.
        queue_id: i32 = "queueId",
        /// MessageSysFlag bits (compressed, transaction type, ...).
        sys_flag: i32 = "sysFlag",
        /// The producer's clock at send time, ms since the epoch.
        born_timestamp: i64 = "bornTimestamp",
        /// The message's user flag.
        flag: i32 = "flag",
        /// The message properties, `key\u{1}value\u{2}` encoded.
        properties: Option<String> = "properties",
        /// How often the message was consumed and sent back (retry sends).
        reconsume_times: Option<i32> = "reconsumeTimes",
        /// Unit (namespace) mode; absent reads as `false`.
        unit_mode: Option<bool> = "unitMode",
        /// Whether the body is a batch encoding; absent reads as `false`. The C++ client sends
        /// `1`/`0`.
        batch: Option<bool> = "batch",
        /// The retry limit of the consumer group, on retry sends.
        max_reconsume_times: Option<i32> = "maxReconsumeTimes",
        /// The target broker name (4.9.5+ `RpcRequestHeader`).
        broker_name: Option<String> = "bname",
    }
}

crate::command_header! {
    /// `SendMessageRequestHeaderV2`: SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320) and
    /// SEND_REPLY_MESSAGE_V2 (325). The fields of [`SendMessageRequestHeader`] under
    /// one-letter keys; convert with `From` in either direction.
    pub struct SendMessageRequestHeaderV2 {
        /// `a`: the producer group.
        producer_group: String = "a",
        /// `b`: the target topic.
        topic: String = "b",
        /// `c`: the template topic for auto-creation.
        default_topic: String = "c",
        /// `d`: the queue count an auto-created topic gets.
        default_topic_queue_nums: i32 = "d",
        /// `e`: the target queue.
        queue_id: i32 = "e",
        /// `f`: MessageSysFlag bits.
        sys_flag: i32 = "f",
        /// `g`: the producer's clock at send time, ms since the epoch.
        born_timestamp: i64 = "g",
        /// `h`: the message's user flag.
        flag: i32 = "h",
        /// `i`: the message properties.
        properties: Option<String> = "i",
        /// `j`: how often the message was consumed and sent back.
        reconsume_times: Option<i32> = "j",
        /// `k`: unit (namespace) mode.
        unit_mode: Option<bool> = "k",
        /// `l`: the retry limit of the consumer group.
        max_reconsume_times: Option<i32> = "l",
        /// `m`: whether the body is a batch encoding.
        batch: Option<bool> = "m",
        /// `n`: the target broker name (4.9.5+).
        broker_name: Option<String> = "n",
    }
}

impl From<SendMessageRequestHeaderV2> for SendMessageRequestHeader {
    fn from(v2: SendMessageRequestHeaderV2) -> Self {
        Self {
            producer_group: v2.producer_group,
            topic: v2.topic,
            default_topic: v2.default_topic,
            default_topic_queue_nums: v2.default_topic_queue_nums,
            queue_id: v2.queue_id,
            sys_flag: v2.sys_flag,
            born_timestamp: v2.born_timestamp,
            flag: v2.flag,
            properties: v2.properties,
            reconsume_times: v2.reconsume_times,
            unit_mode: v2.unit_mode,
            batch: v2.batch,
            max_reconsume_times: v2.max_reconsume_times,
            broker_name: v2.broker_name,
        }
    }
}

impl From<SendMessageRequestHeader> for SendMessageRequestHeaderV2 {
    fn from(v1: SendMessageRequestHeader) -> Self {
        Self {
            producer_group: v1.producer_group,
            topic: v1.topic,
            default_topic: v1.default_topic,
            default_topic_queue_nums: v1.default_topic_queue_nums,
            queue_id: v1.queue_id,
            sys_flag: v1.sys_flag,
            born_timestamp: v1.born_timestamp,
            flag: v1.flag,
            properties: v1.properties,
            reconsume_times: v1.reconsume_times,
            unit_mode: v1.unit_mode,
            max_reconsume_times: v1.max_reconsume_times,
            batch: v1.batch,
            broker_name: v1.broker_name,
        }
    }
}

impl SendMessageRequestHeader {
    /// Reads the send header of a request with code `code`, the way the Java broker does: the
    /// one-letter V2 keys for SEND_MESSAGE_V2, SEND_BATCH_MESSAGE and SEND_REPLY_MESSAGE_V2,
    /// the long keys for anything else (SEND_MESSAGE, SEND_REPLY_MESSAGE).
    pub fn decode_for_code(code: i32, fields: &ExtFields) -> Result<Self, HeaderError> {
        match code {
            request_code::SEND_MESSAGE_V2
            | request_code::SEND_BATCH_MESSAGE
            | request_code::SEND_REPLY_MESSAGE_V2 => {
                SendMessageRequestHeaderV2::decode(fields).map(Self::from)
            }
            _ => Self::decode(fields),
        }
    }
}

crate::command_header! {
    /// `SendMessageResponseHeader`: the answer to every send code (10, 310, 320, 324, 325).
    ///
    /// The Java broker also adds `MSG_REGION` and `TRACE_ON` with `addExtField`; they are not
    /// fields of the Java class but are declared here so one struct describes the response.
    /// The fields are declared in the order their keys sort, so every answer to a send is
    /// read and written in one pass over `extFields`.
    pub struct SendMessageResponseHeader {
        /// The broker's region id, `MessageConst.PROPERTY_MSG_REGION` (not in the Java class).
        msg_region: Option<String> = "MSG_REGION",
        /// Whether the broker allows message tracing, `MessageConst.PROPERTY_TRACE_SWITCH`
        /// (not in the Java class); the client only reacts to `false`.
        trace_on: Option<bool> = "TRACE_ON",
        /// The offset message id; comma-joined ids for a batch.
        msg_id: String = "msgId",
        /// The queue the message went to.
        queue_id: i32 = "queueId",
        /// The message's consume-queue offset (the first one's, for a batch).
        queue_offset: i64 = "queueOffset",
        /// The transaction id, for a transactional half message.
        transaction_id: Option<String> = "transactionId",
    }
}

crate::command_header! {
    /// `ReplyMessageRequestHeader`: PUSH_REPLY_MESSAGE_TO_CLIENT (326), the broker handing a
    /// request-reply answer to the requesting producer.
    pub struct ReplyMessageRequestHeader {
        /// The producer group.
        producer_group: String = "producerGroup",
        /// The reply topic.
        topic: String = "topic",
        /// The template topic for auto-creation.
        default_topic: String = "defaultTopic",
        /// The queue count an auto-created topic gets.
        default_topic_queue_nums: i32 = "defaultTopicQueueNums",
        /// The queue of the reply.
        queue_id: i32 = "queueId",
        /// MessageSysFlag bits.
        sys_flag: i32 = "sysFlag",
        /// The replier's clock at send time, ms since the epoch.
        born_timestamp: i64 = "bornTimestamp",
        /// The message's user flag.
        flag: i32 = "flag",
        /// The message properties.
        properties: Option<String> = "properties",
        /// How often the message was consumed and sent back.
        reconsume_times: Option<i32> = "reconsumeTimes",
        /// Unit (namespace) mode.
        unit_mode: Option<bool> = "unitMode",
        /// The replier's address, `ip:port`.
        born_host: String = "bornHost",
        /// The broker's address, `ip:port`.
        store_host: String = "storeHost",
        /// The broker's clock when it stored the reply, ms since the epoch.
        store_timestamp: i64 = "storeTimestamp",
    }
}

// ---------------------------------------------------------------------------------------------
// Broker: pull and offsets.
// ---------------------------------------------------------------------------------------------

crate::command_header! {
    /// `PullMessageRequestHeader`: PULL_MESSAGE (11).
    pub struct PullMessageRequestHeader {
        /// The consumer group.
        consumer_group: String = "consumerGroup",
        /// The topic.
        topic: String = "topic",
        /// The queue.
        queue_id: i32 = "queueId",
        /// The first consume-queue offset wanted.
        queue_offset: i64 = "queueOffset",
        /// The most messages to return.
        max_msg_nums: i32 = "maxMsgNums",
        /// PullSysFlag bits (commit offset, suspend, subscription, class filter, lite pull).
        sys_flag: i32 = "sysFlag",
        /// The offset to commit first, when the COMMIT_OFFSET flag is set.
        commit_offset: i64 = "commitOffset",
        /// How long the broker may hold the pull when nothing is there, ms.
        suspend_timeout_millis: i64 = "suspendTimeoutMillis",
        /// The subscription expression (tags or SQL92), when the SUBSCRIPTION flag is set.
        subscription: Option<String> = "subscription",
        /// The version of the client's subscription.
        sub_version: i64 = "subVersion",
        /// `ExpressionType` of the subscription: `TAG` or `SQL92`.
        expression_type: Option<String> = "expressionType",
        /// The target broker name (4.9.5+ `RpcRequestHeader`).
        broker_name: Option<String> = "bname",
    }
}

crate::command_header! {
    /// `PullMessageResponseHeader`: the answer to PULL_MESSAGE (11). Java clients need all four
    /// fields on every pull response code, or they fail with a `NullPointerException`.
    pub struct PullMessageResponseHeader {
        /// The broker id the client should pull from next (0 = master).
        suggest_which_broker_id: i64 = "suggestWhichBrokerId",
        /// The offset to pull from next.
        next_begin_offset: i64 = "nextBeginOffset",
        /// The queue's smallest offset.
        min_offset: i64 = "minOffset",
        /// The queue's next offset to be written.
        max_offset: i64 = "maxOffset",
    }
}

crate::command_header! {
    /// `QueryConsumerOffsetRequestHeader`: QUERY_CONSUMER_OFFSET (14).
    pub struct QueryConsumerOffsetRequestHeader {
        /// The consumer group.
        consumer_group: String = "consumerGroup",
        /// The topic.
        topic: String = "topic",
        /// The queue.
        queue_id: i32 = "queueId",
        /// The target broker name (4.9.5+ `RpcRequestHeader`).
        broker_name: Option<String> = "bname",
    }
}

crate::command_header! {
    /// `QueryConsumerOffsetResponseHeader`: the answer to QUERY_CONSUMER_OFFSET (14).
    pub struct QueryConsumerOffsetResponseHeader {
        /// The committed offset.
        offset: i64 = "offset",
    }
}

crate::command_header! {
    /// `UpdateConsumerOffsetRequestHeader`: UPDATE_CONSUMER_OFFSET (15).
    pub struct UpdateConsumerOffsetRequestHeader {
        /// The consumer group.
        consumer_group: String = "consumerGroup",
        /// The topic.
        topic: String = "topic",
        /// The queue.
        queue_id: i32 = "queueId",
        /// The offset to commit; ali-ons sends -1 for queues it has no offset for.
        commit_offset: i64 = "commitOffset",
        /// The target broker name (4.9.5+ `RpcRequestHeader`).
        broker_name: Option<String> = "bname",
    }
}

empty_header! {
    /// `UpdateConsumerOffsetResponseHeader`: the (empty) answer to UPDATE_CONSUMER_OFFSET (15).
    pub struct UpdateConsumerOffsetResponseHeader;
}

crate::command_header! {
    /// `GetMaxOffsetRequestHeader`: GET_MAX_OFFSET (30).
    pub struct GetMaxOffsetRequestHeader {
        /// The topic.
        topic: String = "topic",
        /// The queue.
        queue_id: i32 = "queueId",
        /// The target broker name (4.9.5+ `RpcRequestHeader`).
        broker_name: Option<String> = "bname",
    }
}

crate::command_header! {
    /// `GetMaxOffsetResponseHeader`: the answer to GET_MAX_OFFSET (30).
    pub struct GetMaxOffsetResponseHeader {
        /// The queue's next offset to be written.
        offset: i64 = "offset",
    }
}

crate::command_header! {
    /// `GetMinOffsetRequestHeader`: GET_MIN_OFFSET (31).
    pub struct GetMinOffsetRequestHeader {
        /// The topic.
        topic: String = "topic",
        /// The queue.
        queue_id: i32 = "queueId",
        /// The target broker name (4.9.5+ `RpcRequestHeader`).
        broker_name: Option<String> = "bname",
    }
}

crate::command_header! {
    /// `GetMinOffsetResponseHeader`: the answer to GET_MIN_OFFSET (31).
    pub struct GetMinOffsetResponseHeader {
        /// The queue's smallest offset still stored.
        offset: i64 = "offset",
    }
}

crate::command_header! {
    /// `SearchOffsetRequestHeader`: SEARCH_OFFSET_BY_TIMESTAMP (29).
    pub struct SearchOffsetRequestHeader {
        /// The topic.
        topic: String = "topic",
        /// The queue.
        queue_id: i32 = "queueId",
        /// The store time to search for, ms since the epoch.
        timestamp: i64 = "timestamp",
        /// The target broker name (4.9.5+ `RpcRequestHeader`).
        broker_name: Option<String> = "bname",
    }
}

crate::command_header! {
    /// `SearchOffsetResponseHeader`: the answer to SEARCH_OFFSET_BY_TIMESTAMP (29).
    pub struct SearchOffsetResponseHeader {
        /// The offset found.
        offset: i64 = "offset",
    }
}

crate::command_header! {
    /// `GetEarliestMsgStoretimeRequestHeader`: GET_EARLIEST_MSG_STORETIME (32).
    pub struct GetEarliestMsgStoretimeRequestHeader {
        /// The topic.
        topic: String = "topic",
        /// The queue.
        queue_id: i32 = "queueId",
        /// The target broker name (4.9.5+ `RpcRequestHeader`).
        broker_name: Option<String> = "bname",
    }
}

crate::command_header! {
    /// `GetEarliestMsgStoretimeResponseHeader`: the answer to GET_EARLIEST_MSG_STORETIME (32).
    pub struct GetEarliestMsgStoretimeResponseHeader {
        /// The store time of the queue's oldest message, ms since the epoch.
        timestamp: i64 = "timestamp",
    }
}

// ---------------------------------------------------------------------------------------------
// Broker: message queries.
// ---------------------------------------------------------------------------------------------

crate::command_header! {
    /// `ViewMessageRequestHeader`: VIEW_MESSAGE_BY_ID (33).
    pub struct ViewMessageRequestHeader {
        /// The commit-log offset, decoded from the offset message id.
        offset: i64 = "offset",
    }
}

crate::command_header! {
    /// `QueryMessageRequestHeader`: QUERY_MESSAGE (12), a lookup in the index file.
    pub struct QueryMessageRequestHeader {
        /// The topic.
        topic: String = "topic",
        /// The key (KEYS or UNIQ_KEY) to look up.
        key: String = "key",
        /// The most messages to return.
        max_num: i32 = "maxNum",
        /// The start of the store-time window, ms since the epoch.
        begin_timestamp: i64 = "beginTimestamp",
        /// The end of the store-time window, ms since the epoch.
        end_timestamp: i64 = "endTimestamp",
        /// `MixAll.UNIQUE_MSG_QUERY_FLAG`: `true` when querying by UNIQ_KEY. Not a field of the
        /// Java class; the client adds it with `addExtField`.
        unique_key_query: Option<bool> = "_UNIQUE_KEY_QUERY",
    }
}

crate::command_header! {
    /// `QueryMessageResponseHeader`: the answer to QUERY_MESSAGE (12).
    pub struct QueryMessageResponseHeader {
        /// When the index was last updated, ms since the epoch.
        index_last_update_timestamp: i64 = "indexLastUpdateTimestamp",
        /// The commit-log offset the index covers.
        index_last_update_phyoffset: i64 = "indexLastUpdatePhyoffset",
    }
}

// ---------------------------------------------------------------------------------------------
// Broker: clients and consumers.
// ---------------------------------------------------------------------------------------------

crate::command_header! {
    /// `UnregisterClientRequestHeader`: UNREGISTER_CLIENT (35), a client shutting down.
    pub struct UnregisterClientRequestHeader {
        /// The client id, `ip@instance` (the key is `clientID`, capital `ID`).
        client_id: String = "clientID",
        /// The producer group being left; the C++ client sends `""` for the unused one.
        producer_group: Option<String> = "producerGroup",
        /// The consumer group being left; the C++ client sends `""` for the unused one.
        consumer_group: Option<String> = "consumerGroup",
    }
}

empty_header! {
    /// `UnregisterClientResponseHeader`: the (empty) answer to UNREGISTER_CLIENT (35).
    pub struct UnregisterClientResponseHeader;
}

crate::command_header! {
    /// `GetConsumerListByGroupRequestHeader`: GET_CONSUMER_LIST_BY_GROUP (38).
    pub struct GetConsumerListByGroupRequestHeader {
        /// The consumer group.
        consumer_group: String = "consumerGroup",
    }
}

empty_header! {
    /// `GetConsumerListByGroupResponseHeader`: the answer to GET_CONSUMER_LIST_BY_GROUP (38);
    /// the ids travel in the body.
    pub struct GetConsumerListByGroupResponseHeader;
}

crate::command_header! {
    /// `NotifyConsumerIdsChangedRequestHeader`: NOTIFY_CONSUMER_IDS_CHANGED (40, broker to
    /// client, oneway): rebalance now.
    pub struct NotifyConsumerIdsChangedRequestHeader {
        /// The consumer group whose membership changed.
        consumer_group: String = "consumerGroup",
    }
}

crate::command_header! {
    /// `ConsumerSendMsgBackRequestHeader`: CONSUMER_SEND_MSG_BACK (36), a failed message back
    /// to the broker for retry or the DLQ.
    pub struct ConsumerSendMsgBackRequestHeader {
        /// The commit-log offset of the original message.
        offset: i64 = "offset",
        /// The consumer group.
        group: String = "group",
        /// The delay level: 0 lets the broker pick from the retry count, below 0 sends the
        /// message to the DLQ at once.
        delay_level: i32 = "delayLevel",
        /// The original message's unique id.
        origin_msg_id: Option<String> = "originMsgId",
        /// The original message's topic.
        origin_topic: Option<String> = "originTopic",
        /// Unit (namespace) mode; absent reads as `false`.
        unit_mode: Option<bool> = "unitMode",
        /// The group's retry limit; absent means the subscription group's `retryMaxTimes`.
        max_reconsume_times: Option<i32> = "maxReconsumeTimes",
        /// The target broker name (4.9.5+ `RpcRequestHeader`).
        broker_name: Option<String> = "bname",
    }
}

// ---------------------------------------------------------------------------------------------
// Broker: transactions.
// ---------------------------------------------------------------------------------------------

crate::command_header! {
    /// `EndTransactionRequestHeader`: END_TRANSACTION (37, oneway), commit or roll back a half
    /// message.
    pub struct EndTransactionRequestHeader {
        /// The producer group.
        producer_group: String = "producerGroup",
        /// The consume-queue offset of the half message.
        tran_state_table_offset: i64 = "tranStateTableOffset",
        /// The commit-log offset of the half message.
        commit_log_offset: i64 = "commitLogOffset",
        /// MessageSysFlag transaction type: 0 unknown, 8 commit, 12 rollback; Java rejects any
        /// other value.
        commit_or_rollback: i32 = "commitOrRollback",
        /// Whether this answers a CHECK_TRANSACTION_STATE; absent reads as `false`.
        from_transaction_check: Option<bool> = "fromTransactionCheck",
        /// The half message's unique id.
        msg_id: String = "msgId",
        /// The transaction id.
        transaction_id: Option<String> = "transactionId",
        /// The target broker name (4.9.5+ `RpcRequestHeader`).
        broker_name: Option<String> = "bname",
    }
}

crate::command_header! {
    /// `CheckTransactionStateRequestHeader`: CHECK_TRANSACTION_STATE (39, broker to producer,
    /// oneway); the body is the half message.
    pub struct CheckTransactionStateRequestHeader {
        /// The consume-queue offset of the half message.
        tran_state_table_offset: i64 = "tranStateTableOffset",
        /// The commit-log offset of the half message.
        commit_log_offset: i64 = "commitLogOffset",
        /// The half message's unique id.
        msg_id: Option<String> = "msgId",
        /// The transaction id.
        transaction_id: Option<String> = "transactionId",
        /// The half message's offset message id.
        offset_msg_id: Option<String> = "offsetMsgId",
        /// The broker name (4.9.5+ `RpcRequestHeader`); the producer copies it into its
        /// END_TRANSACTION.
        broker_name: Option<String> = "bname",
    }
}

crate::command_header! {
    /// `ResumeCheckHalfMessageRequestHeader`: RESUME_CHECK_HALF_MESSAGE (323), an admin asking
    /// the broker to check a half message again.
    pub struct ResumeCheckHalfMessageRequestHeader {
        /// The half message's id.
        msg_id: Option<String> = "msgId",
    }
}

// ---------------------------------------------------------------------------------------------
// Broker: administration.
// ---------------------------------------------------------------------------------------------

crate::command_header! {
    /// `CreateTopicRequestHeader`: UPDATE_AND_CREATE_TOPIC (17), create or update a topic on a
    /// broker.
    pub struct CreateTopicRequestHeader {
        /// The topic.
        topic: String = "topic",
        /// The template topic.
        default_topic: String = "defaultTopic",
        /// The number of readable queues.
        read_queue_nums: i32 = "readQueueNums",
        /// The number of writable queues.
        write_queue_nums: i32 = "writeQueueNums",
        /// PermName bits: 2 write, 4 read, 6 both.
        perm: i32 = "perm",
        /// The `TopicFilterType` enum's name, `SINGLE_TAG` or `MULTI_TAG` (a Java enum, so a
        /// string here); Java rejects other names.
        topic_filter_type: String = "topicFilterType",
        /// TopicSysFlag bits.
        topic_sys_flag: Option<i32> = "topicSysFlag",
        /// Whether the topic is ordered.
        order: bool = "order",
    }
}

crate::command_header! {
    /// `DeleteTopicRequestHeader`: DELETE_TOPIC_IN_BROKER (215).
    pub struct DeleteTopicRequestHeader {
        /// The topic.
        topic: String = "topic",
    }
}

crate::command_header! {
    /// `DeleteSubscriptionGroupRequestHeader`: DELETE_SUBSCRIPTIONGROUP (207).
    pub struct DeleteSubscriptionGroupRequestHeader {
        /// The consumer group.
        group_name: String = "groupName",
        /// Whether to drop the group's committed offsets too; absent reads as `false`.
        remove_offset: Option<bool> = "removeOffset",
    }
}

crate::command_header! {
    /// `GetTopicStatsInfoRequestHeader`: GET_TOPIC_STATS_INFO (202).
    pub struct GetTopicStatsInfoRequestHeader {
        /// The topic.
        topic: String = "topic",
    }
}

crate::command_header! {
    /// `GetConsumeStatsRequestHeader`: GET_CONSUME_STATS (208).
    pub struct GetConsumeStatsRequestHeader {
        /// The consumer group.
        consumer_group: String = "consumerGroup",
        /// Limit the stats to this topic; absent means all the group's topics.
        topic: Option<String> = "topic",
    }
}

crate::command_header! {
    /// `GetConsumerConnectionListRequestHeader`: GET_CONSUMER_CONNECTION_LIST (203).
    pub struct GetConsumerConnectionListRequestHeader {
        /// The consumer group.
        consumer_group: String = "consumerGroup",
    }
}

crate::command_header! {
    /// `GetProducerConnectionListRequestHeader`: GET_PRODUCER_CONNECTION_LIST (204).
    pub struct GetProducerConnectionListRequestHeader {
        /// The producer group.
        producer_group: String = "producerGroup",
    }
}

empty_header! {
    /// `GetAllProducerInfoRequestHeader`: GET_ALL_PRODUCER_INFO (328).
    pub struct GetAllProducerInfoRequestHeader;
}

crate::command_header! {
    /// `GetConsumerRunningInfoRequestHeader`: GET_CONSUMER_RUNNING_INFO (307), admin to broker
    /// and broker to client.
    pub struct GetConsumerRunningInfoRequestHeader {
        /// The consumer group.
        consumer_group: String = "consumerGroup",
        /// The client id, `ip@instance`.
        client_id: String = "clientId",
        /// Whether to include a thread dump; absent reads as `false`.
        jstack_enable: Option<bool> = "jstackEnable",
    }
}

crate::command_header! {
    /// `ConsumeMessageDirectlyResultRequestHeader`: CONSUME_MESSAGE_DIRECTLY (309), admin to
    /// broker and broker to client: consume one message now (body: the message).
    pub struct ConsumeMessageDirectlyResultRequestHeader {
        /// The consumer group.
        consumer_group: String = "consumerGroup",
        /// The client id, `ip@instance`.
        client_id: Option<String> = "clientId",
        /// The message's id.
        msg_id: Option<String> = "msgId",
        /// The broker holding the message (a plain field here, not the `bname` key).
        broker_name: Option<String> = "brokerName",
    }
}

crate::command_header! {
    /// `ResetOffsetRequestHeader`: INVOKE_BROKER_TO_RESET_OFFSET (222, admin to broker) and
    /// RESET_CONSUMER_CLIENT_OFFSET (220, broker to client).
    pub struct ResetOffsetRequestHeader {
        /// The topic.
        topic: String = "topic",
        /// The consumer group.
        group: String = "group",
        /// Reset to the offsets at this store time, ms since the epoch.
        timestamp: i64 = "timestamp",
        /// Whether to move offsets forward too, not only back (the key is `isForce`).
        is_force: bool = "isForce",
    }
}

crate::command_header! {
    /// `GetConsumerStatusRequestHeader`: INVOKE_BROKER_TO_GET_CONSUMER_STATUS (223, admin to
    /// broker) and GET_CONSUMER_STATUS_FROM_CLIENT (221, broker to client).
    pub struct GetConsumerStatusRequestHeader {
        /// The topic.
        topic: String = "topic",
        /// The consumer group.
        group: String = "group",
        /// Limit the query to this client address; absent means all clients.
        client_addr: Option<String> = "clientAddr",
    }
}

crate::command_header! {
    /// `QueryTopicConsumeByWhoRequestHeader`: QUERY_TOPIC_CONSUME_BY_WHO (300).
    pub struct QueryTopicConsumeByWhoRequestHeader {
        /// The topic.
        topic: String = "topic",
    }
}

crate::command_header! {
    /// `QueryConsumeTimeSpanRequestHeader`: QUERY_CONSUME_TIME_SPAN (303).
    pub struct QueryConsumeTimeSpanRequestHeader {
        /// The topic.
        topic: String = "topic",
        /// The consumer group.
        group: String = "group",
    }
}

crate::command_header! {
    /// `QueryCorrectionOffsetHeader`: QUERY_CORRECTION_OFFSET (308).
    pub struct QueryCorrectionOffsetHeader {
        /// Comma-separated groups to take into account.
        filter_groups: Option<String> = "filterGroups",
        /// The group to compare against.
        compare_group: String = "compareGroup",
        /// The topic.
        topic: String = "topic",
    }
}

crate::command_header! {
    /// `CloneGroupOffsetRequestHeader`: CLONE_GROUP_OFFSET (314), copy one group's offsets to
    /// another.
    pub struct CloneGroupOffsetRequestHeader {
        /// The group to copy from.
        src_group: String = "srcGroup",
        /// The group to copy to.
        dest_group: String = "destGroup",
        /// Limit the copy to this topic; absent means all topics.
        topic: Option<String> = "topic",
        /// Whether the source group is offline; absent reads as `false`.
        offline: Option<bool> = "offline",
    }
}

crate::command_header! {
    /// `ViewBrokerStatsDataRequestHeader`: VIEW_BROKER_STATS_DATA (315).
    pub struct ViewBrokerStatsDataRequestHeader {
        /// The stats item name, e.g. `TOPIC_PUT_NUMS`.
        stats_name: String = "statsName",
        /// The stats key, e.g. a topic.
        stats_key: String = "statsKey",
    }
}

crate::command_header! {
    /// `GetConsumeStatsInBrokerHeader`: GET_BROKER_CONSUME_STATS (317).
    pub struct GetConsumeStatsInBrokerHeader {
        /// Whether to report only ordered topics (the key is `isOrder`).
        is_order: bool = "isOrder",
    }
}

crate::command_header! {
    /// `QueryConsumeQueueRequestHeader`: QUERY_CONSUME_QUEUE (321), dump consume-queue entries.
    /// No field of the Java class is `@CFNotNull`, so all are optional here.
    pub struct QueryConsumeQueueRequestHeader {
        /// The topic.
        topic: Option<String> = "topic",
        /// The queue.
        queue_id: Option<i32> = "queueId",
        /// The first consume-queue index to dump.
        index: Option<i64> = "index",
        /// How many entries to dump.
        count: Option<i32> = "count",
        /// The consumer group, to evaluate its filter on each entry.
        consumer_group: Option<String> = "consumerGroup",
    }
}

crate::command_header! {
    /// `GetBrokerConfigResponseHeader`: the answer to GET_BROKER_CONFIG (26); the
    /// configuration travels in the body.
    pub struct GetBrokerConfigResponseHeader {
        /// The configuration's DataVersion as JSON.
        version: String = "version",
    }
}

empty_header! {
    /// `GetAllTopicConfigResponseHeader`: the answer to GET_ALL_TOPIC_CONFIG (21); the topic
    /// configs travel in the body.
    pub struct GetAllTopicConfigResponseHeader;
}

// ---------------------------------------------------------------------------------------------
// Broker: ACL (plain access validator).
// ---------------------------------------------------------------------------------------------

crate::command_header! {
    /// `CreateAccessConfigRequestHeader`: UPDATE_AND_CREATE_ACL_CONFIG (50).
    pub struct CreateAccessConfigRequestHeader {
        /// The account's access key.
        access_key: String = "accessKey",
        /// The account's secret key.
        secret_key: Option<String> = "secretKey",
        /// The address pattern the account may connect from.
        white_remote_address: Option<String> = "whiteRemoteAddress",
        /// Whether the account is an administrator; absent reads as `false`.
        admin: Option<bool> = "admin",
        /// The default topic permission (`DENY`, `PUB`, `SUB`, `PUB|SUB`).
        default_topic_perm: Option<String> = "defaultTopicPerm",
        /// The default group permission.
        default_group_perm: Option<String> = "defaultGroupPerm",
        /// Comma-separated `topic=PERM` entries.
        topic_perms: Option<String> = "topicPerms",
        /// Comma-separated `group=PERM` entries.
        group_perms: Option<String> = "groupPerms",
    }
}

crate::command_header! {
    /// `DeleteAccessConfigRequestHeader`: DELETE_ACL_CONFIG (51).
    pub struct DeleteAccessConfigRequestHeader {
        /// The account's access key.
        access_key: String = "accessKey",
    }
}

crate::command_header! {
    /// `GetBrokerAclConfigResponseHeader`: the answer to GET_BROKER_CLUSTER_ACL_INFO (52).
    pub struct GetBrokerAclConfigResponseHeader {
        /// The ACL file's DataVersion as JSON.
        version: String = "version",
        /// The versions of every ACL file, as JSON (4.9.x).
        all_acl_file_version: Option<String> = "allAclFileVersion",
        /// The broker group name.
        broker_name: String = "brokerName",
        /// The broker's address, `ip:port`.
        broker_addr: String = "brokerAddr",
        /// The cluster the broker belongs to.
        cluster_name: String = "clusterName",
    }
}

crate::command_header! {
    /// `UpdateGlobalWhiteAddrsConfigRequestHeader`: UPDATE_GLOBAL_WHITE_ADDRS_CONFIG (53).
    pub struct UpdateGlobalWhiteAddrsConfigRequestHeader {
        /// Comma-separated address patterns allowed without credentials.
        global_white_addrs: String = "globalWhiteAddrs",
        /// The ACL file to update (added in 4.9.4, `@CFNotNull`; older admin tools omit
        /// it).
        acl_file_full_path: String = "aclFileFullPath",
    }
}

#[cfg(test)]
mod tests;
