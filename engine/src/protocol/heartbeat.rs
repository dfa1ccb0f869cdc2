//! Client heartbeats and subscriptions (`HeartbeatData`, `ConsumerData`, `ProducerData`,
//! `SubscriptionData`) and the small bodies of the client-management requests
//! (`MessageQueue`, lock bodies, the consumer list).
//!
//! Readers accept what each client sends: the C++ client's enum ordinals and string
//! numbers, ali-ons' empty producer sets, 5.x extras.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::lenient::{bool_any, i64_any, null_default};
use crate::store::message::java_string_hash;

crate::java_enum! {
    /// Pull (`CONSUME_ACTIVELY`) or push (`CONSUME_PASSIVELY`) consumer.
    pub enum ConsumeType {
        /// Pull consumer.
        ConsumeActively = "CONSUME_ACTIVELY",
        /// Push consumer.
        ConsumePassively = "CONSUME_PASSIVELY",
    }
}

crate::java_enum! {
    /// How a group shares messages.
    pub enum MessageModel {
        /// Every consumer gets every message.
        Broadcasting = "BROADCASTING",
        /// Each message goes to one consumer of the group.
        Clustering = "CLUSTERING",
    }
}

crate::java_enum! {
    /// Where a consumer with no committed offset starts.
    pub enum ConsumeFromWhere {
        /// The end of the queue.
        ConsumeFromLastOffset = "CONSUME_FROM_LAST_OFFSET",
        /// Deprecated.
        ConsumeFromLastOffsetAndFromMinWhenBootFirst = "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
        /// Deprecated.
        ConsumeFromMinOffset = "CONSUME_FROM_MIN_OFFSET",
        /// Deprecated.
        ConsumeFromMaxOffset = "CONSUME_FROM_MAX_OFFSET",
        /// The start of the queue.
        ConsumeFromFirstOffset = "CONSUME_FROM_FIRST_OFFSET",
        /// A point in time.
        ConsumeFromTimestamp = "CONSUME_FROM_TIMESTAMP",
    }
}

/// The expression type of tag subscriptions.
pub const EXPRESSION_TYPE_TAG: &str = "TAG";
/// The "every tag" expression.
pub const SUB_ALL: &str = "*";

/// One topic subscription of a consumer group (`SubscriptionData`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionData {
    /// Class filter mode (deprecated, always false).
    #[serde(default, deserialize_with = "bool_any")]
    pub class_filter_mode: bool,
    /// Hash codes of the tags (`String.hashCode`).
    #[serde(default, deserialize_with = "null_default")]
    pub code_set: BTreeSet<i32>,
    /// `TAG` or `SQL92`.
    #[serde(default = "default_expression_type")]
    pub expression_type: String,
    /// The expression as written (`*`, `A || B`).
    #[serde(default)]
    pub sub_string: String,
    /// Version (a timestamp); a newer one replaces an older.
    #[serde(default, deserialize_with = "i64_any")]
    pub sub_version: i64,
    /// The tags.
    #[serde(default, deserialize_with = "null_default")]
    pub tags_set: BTreeSet<String>,
    /// The topic.
    pub topic: String,
}

fn default_expression_type() -> String {
    EXPRESSION_TYPE_TAG.into()
}

impl SubscriptionData {
    /// A tag subscription to `topic` with `expression` (`*`, empty, or `A || B`), as
    /// `FilterAPI.buildSubscriptionData` builds it.
    pub fn build(topic: &str, expression: &str, sub_version: i64) -> Self {
        let expression = expression.trim();
        let mut data = Self {
            class_filter_mode: false,
            code_set: BTreeSet::new(),
            expression_type: EXPRESSION_TYPE_TAG.into(),
            sub_string: SUB_ALL.into(),
            sub_version,
            tags_set: BTreeSet::new(),
            topic: topic.to_owned(),
        };
        if expression.is_empty() || expression == SUB_ALL {
            return data;
        }
        data.sub_string = expression.to_owned();
        for tag in expression
            .split("||")
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            data.tags_set.insert(tag.to_owned());
            data.code_set.insert(java_string_hash(tag));
        }
        data
    }

    /// Whether this subscribes to every tag.
    pub fn is_all(&self) -> bool {
        self.sub_string.trim().is_empty() || self.sub_string.trim() == SUB_ALL
    }

    /// Whether a message with consume-queue tags code `tags_code` may match (tag
    /// subscriptions only; other expression types are left to the client).
    pub fn matches_tags_code(&self, tags_code: i64) -> bool {
        if self.expression_type != EXPRESSION_TYPE_TAG || self.is_all() {
            return true;
        }
        i32::try_from(tags_code).is_ok_and(|code| self.code_set.contains(&code))
    }
}

/// A consumer group in a heartbeat (`ConsumerData`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerData {
    /// Where new consumers start.
    #[serde(default = "default_from_where")]
    pub consume_from_where: ConsumeFromWhere,
    /// Push or pull.
    #[serde(default = "default_consume_type")]
    pub consume_type: ConsumeType,
    /// The group's name.
    pub group_name: String,
    /// Clustering or broadcasting.
    #[serde(default = "default_model")]
    pub message_model: MessageModel,
    /// The group's subscriptions.
    #[serde(default, deserialize_with = "null_default")]
    pub subscription_data_set: Vec<SubscriptionData>,
    /// Unit mode.
    #[serde(default, deserialize_with = "bool_any")]
    pub unit_mode: bool,
}

fn default_from_where() -> ConsumeFromWhere {
    ConsumeFromWhere::ConsumeFromLastOffset
}

fn default_consume_type() -> ConsumeType {
    ConsumeType::ConsumePassively
}

fn default_model() -> MessageModel {
    MessageModel::Clustering
}

/// A producer group in a heartbeat (`ProducerData`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerData {
    /// The group's name.
    pub group_name: String,
}

/// The body of HEART_BEAT (`HeartbeatData`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatData {
    /// The client's id (`ip@instance`).
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// Consumer groups of this client.
    #[serde(rename = "consumerDataSet", default, deserialize_with = "null_default")]
    pub consumer_data_set: Vec<ConsumerData>,
    /// Producer groups of this client.
    #[serde(rename = "producerDataSet", default, deserialize_with = "null_default")]
    pub producer_data_set: Vec<ProducerData>,
}

/// A queue of a topic on one broker group (`MessageQueue`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueue {
    /// The broker group.
    pub broker_name: String,
    /// The queue id.
    #[serde(deserialize_with = "super::lenient::i32_any")]
    pub queue_id: i32,
    /// The topic.
    pub topic: String,
}

/// LOCK_BATCH_MQ and UNLOCK_BATCH_MQ request bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockBatchRequestBody {
    /// The client asking.
    #[serde(default)]
    pub client_id: String,
    /// Its group.
    #[serde(default)]
    pub consumer_group: String,
    /// The queues.
    #[serde(default, deserialize_with = "null_default")]
    pub mq_set: BTreeSet<MessageQueue>,
}

/// LOCK_BATCH_MQ response body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockBatchResponseBody {
    /// The queues now locked by the client.
    #[serde(rename = "lockOKMQSet", default, deserialize_with = "null_default")]
    pub lock_ok_mq_set: BTreeSet<MessageQueue>,
}

/// GET_CONSUMER_LIST_BY_GROUP response body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetConsumerListByGroupResponseBody {
    /// The client ids of the group's consumers.
    #[serde(default, deserialize_with = "null_default")]
    pub consumer_id_list: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{from_json, to_json};

    #[test]
    fn java_heartbeat_of_the_spec_reads() {
        let java = r#"{"clientID":"192.0.2.2@3458#473562832205","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"cg","messageModel":"CLUSTERING","unitMode":false,"subscriptionDataSet":[{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":1700000000000,"tagsSet":[],"topic":"TopicTest"}]}],"producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"},{"groupName":"pg"}]}"#;
        let heartbeat: HeartbeatData = from_json("HeartbeatData", java.as_bytes()).unwrap();
        assert_eq!(heartbeat.client_id, "192.0.2.2@3458#473562832205");
        let consumer = &heartbeat.consumer_data_set[0];
        assert_eq!(consumer.message_model, MessageModel::Clustering);
        assert!(consumer.subscription_data_set[0].is_all());
        assert_eq!(heartbeat.producer_data_set.len(), 2);
    }

    #[test]
    fn cpp_heartbeat_with_ordinals_and_string_numbers_reads() {
        let cpp = r#"{"clientID":"1234-127.0.0.1@DEFAULT","consumerDataSet":[{"consumeFromWhere":0,"consumeType":1,"groupName":"cg","messageModel":1,"subscriptionDataSet":[{"classFilterMode":false,"expressionType":"TAG","subString":"*","subVersion":"1795000000000","topic":"T"}],"unitMode":false}]}"#;
        let heartbeat: HeartbeatData = from_json("HeartbeatData", cpp.as_bytes()).unwrap();
        let consumer = &heartbeat.consumer_data_set[0];
        assert_eq!(consumer.consume_type, ConsumeType::ConsumePassively);
        assert_eq!(consumer.message_model, MessageModel::Clustering);
        assert_eq!(
            consumer.subscription_data_set[0].sub_version,
            1_795_000_000_000
        );
        assert!(heartbeat.producer_data_set.is_empty());
    }

    #[test]
    fn tag_expressions_build_tag_and_code_sets() {
        let data = SubscriptionData::build("T", "TagA || TagB", 1);
        assert_eq!(data.tags_set.len(), 2);
        assert!(data.code_set.contains(&2_598_919));
        assert!(data.matches_tags_code(2_598_919));
        assert!(!data.matches_tags_code(0));
        assert!(SubscriptionData::build("T", "*", 1).matches_tags_code(42));
    }

    #[test]
    fn lock_bodies_use_java_names() {
        let mut body = LockBatchResponseBody::default();
        body.lock_ok_mq_set.insert(MessageQueue {
            broker_name: "b".into(),
            queue_id: 0,
            topic: "T".into(),
        });
        assert_eq!(
            to_json(&body),
            br#"{"lockOKMQSet":[{"brokerName":"b","queueId":0,"topic":"T"}]}"#.to_vec()
        );
    }
}
