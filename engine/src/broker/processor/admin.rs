//! The broker's administration requests (`AdminBrokerProcessor`): what `mqadmin`, the
//! dashboard and `MQAdmin` clients ask a broker — create, delete and list topics and
//! consumer groups, queue offsets and their store times, committed offsets, consumption
//! progress, connected clients, the settings and the runtime numbers.
//!
//! The controller routes every code no other processor claims here, so a code this file
//! does not know is answered `REQUEST_CODE_NOT_SUPPORTED` with Java's remark.
//!
//! Answers follow 4.9.8 `AdminBrokerProcessor`: the same response codes and remarks, the same
//! bodies. Where Java fails with an exception (a malformed header or body) the answer is
//! `SYSTEM_ERROR` with a remark, as Java's dispatch layer answers. Changes a slave must not
//! make (topics, groups) are refused on a slave, as Java's `validateSlave` does.
//!
//! # Maps keyed by objects
//!
//! `TopicStatsTable.offsetTable` and `ConsumeStats.offsetTable` are `Map<MessageQueue, _>`.
//! fastjson writes such a map with the key *object* in place of a key string:
//! `{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:{"lastUpdateTimestamp":0,…}}}`.
//! That is not JSON, but every fastjson version reads its own output, so we write exactly
//! that (`fastjson_object_keyed_map`). Quoting the key as a JSON string would be
//! standard JSON, but only fastjson 1.2.66 and later (RocketMQ 4.7.1 and later tools) parse
//! a string key back into a `MessageQueue`; older tools would fail. Nothing but
//! fastjson-based admin tools reads these two bodies.
//!
//! Invariants: every loop over a topic's queues stops at [`QUEUE_NUMS_MAX`]; a topic or
//! group change is persisted before the answer (a failed persist is a `SYSTEM_ERROR`, the
//! in-memory change stays, as the name servers already learn of it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::broker::context::BrokerContext;
use crate::broker::topic_config::{TopicNameError, system_topic, validate_topic};
use crate::config::render_properties;
use crate::protocol::heartbeat::{
    ConsumeFromWhere, ConsumeType, MessageModel, MessageQueue, SubscriptionData,
};
use crate::protocol::{DataVersion, KvTable, TopicConfig, TopicFilterType, from_json, to_json};
use crate::remoting::code::CURRENT_VERSION;
use crate::remoting::headers::{
    CreateTopicRequestHeader, DeleteSubscriptionGroupRequestHeader, DeleteTopicRequestHeader,
    GetBrokerConfigResponseHeader, GetConsumeStatsRequestHeader,
    GetConsumerConnectionListRequestHeader, GetEarliestMsgStoretimeRequestHeader,
    GetEarliestMsgStoretimeResponseHeader, GetMaxOffsetRequestHeader, GetMaxOffsetResponseHeader,
    GetMinOffsetRequestHeader, GetMinOffsetResponseHeader, GetProducerConnectionListRequestHeader,
    GetTopicStatsInfoRequestHeader, QueryTopicConsumeByWhoRequestHeader, SearchOffsetRequestHeader,
    SearchOffsetResponseHeader,
};
use crate::remoting::transport::{Channel, ProcessError, RequestProcessor};
use crate::remoting::{RemotingCommand, request_code as rc, response_code};
use crate::store::config::BrokerRole;
use crate::store::message::decode_record;
use crate::store::message_store::MessageStore;
use crate::store::metadata::SubscriptionGroupConfig;

/// Queue counts a topic may be created with at most; loops over a topic's queues (stats,
/// consumption progress) never go past it either. Java has no limit; no real topic comes
/// near it (`BenchmarkTest`, the largest system topic, has 1024).
pub const QUEUE_NUMS_MAX: i32 = 1 << 16;

/// Topics starting with this are system topics (`TopicValidator.SYSTEM_TOPIC_PREFIX`).
const SYSTEM_TOPIC_PREFIX: &str = "rmq_sys_";

/// `MQVersion.getVersionDesc(CURRENT_VERSION)`: the name of version ordinal 409.
const BROKER_VERSION_DESC: &str = "V4_9_8";
const _: () = assert!(
    CURRENT_VERSION == 409,
    "BROKER_VERSION_DESC names ordinal 409"
);

/// What Java reports as `remainTransientStoreBufferNumbs` without a transient store pool
/// (`TransientStorePool.availableBufferNums` is `Integer.MAX_VALUE` when it is disabled,
/// and ferrocket has none).
const NO_TRANSIENT_STORE_POOL: i32 = i32::MAX;

type Outcome = Result<Option<RemotingCommand>, ProcessError>;

/// Answers the administration requests. See the module docs.
#[derive(Debug)]
pub struct AdminBrokerProcessor {
    context: Arc<BrokerContext>,
    /// The version of the broker's settings (Java's `Configuration.dataVersion`): stamped
    /// when the broker starts and never bumped, since settings are not changed at runtime.
    config_data_version: DataVersion,
}

impl AdminBrokerProcessor {
    /// A processor over the broker's shared state.
    pub fn new(context: Arc<BrokerContext>) -> Self {
        let config_data_version = DataVersion::new(context.env.clock.wall_ms());
        Self {
            context,
            config_data_version,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Topics

    /// UPDATE_AND_CREATE_TOPIC (17).
    async fn update_and_create_topic(
        &self,
        channel: &Channel,
        request: &RemotingCommand,
    ) -> Outcome {
        if let Some(refused) = self.refuse_on_slave(request) {
            return Ok(Some(refused));
        }
        let header: CreateTopicRequestHeader = request.decode_header()?;
        tracing::info!(topic = %header.topic, peer = %channel.peer_addr(), "updateAndCreateTopic");
        if let Some(refused) = self.refuse_topic(request, &header.topic) {
            return Ok(Some(refused));
        }
        let Some(topic_filter_type) = TopicFilterType::from_name(&header.topic_filter_type) else {
            return Err(ProcessError::system(format!(
                "topicFilterType {:?} is neither SINGLE_TAG nor MULTI_TAG",
                header.topic_filter_type
            )));
        };
        for (field, value) in [
            ("readQueueNums", header.read_queue_nums),
            ("writeQueueNums", header.write_queue_nums),
        ] {
            if !(0..=QUEUE_NUMS_MAX).contains(&value) {
                return Err(ProcessError::system(format!(
                    "{field} {value} is out of range 0..={QUEUE_NUMS_MAX}"
                )));
            }
        }
        // As Java 4.9.8: a fresh config, so `order` stays false (ordered topics are declared
        // in the name server's ORDER_TOPIC_CONFIG instead).
        let mut config = TopicConfig::new(header.topic.as_str(), header.read_queue_nums);
        config.write_queue_nums = header.write_queue_nums;
        config.perm = header.perm;
        config.topic_filter_type = topic_filter_type;
        config.topic_sys_flag = header.topic_sys_flag.unwrap_or(0);
        // Updating the table tells the registration driver to re-register at once; the
        // answer waits for that (Java's `registerIncrementBrokerData`).
        self.context
            .topic_config_manager
            .update_topic_config(config);
        self.context
            .topic_config_manager
            .persist()
            .await
            .map_err(not_persisted(format!("topic {} updated", header.topic)))?;
        self.context.topics_registered().await;
        Ok(Some(RemotingCommand::success_to(request)))
    }

    /// DELETE_TOPIC_IN_BROKER (215): the topic and every group's committed offsets on it.
    async fn delete_topic(&self, channel: &Channel, request: &RemotingCommand) -> Outcome {
        if let Some(refused) = self.refuse_on_slave(request) {
            return Ok(Some(refused));
        }
        let header: DeleteTopicRequestHeader = request.decode_header()?;
        tracing::info!(topic = %header.topic, peer = %channel.peer_addr(), "deleteTopic");
        if let Some(refused) = self.refuse_topic(request, &header.topic) {
            return Ok(Some(refused));
        }
        let context = &self.context;
        if context
            .topic_config_manager
            .delete_topic_config(&header.topic)
        {
            context
                .topic_config_manager
                .persist()
                .await
                .map_err(not_persisted(format!("topic {} deleted", header.topic)))?;
        }
        let groups = context
            .consumer_offset_manager
            .groups_of_topic(&header.topic);
        if !groups.is_empty() {
            context.consumer_offset_manager.remove_topic(&header.topic);
            tracing::info!(
                topic = %header.topic,
                ?groups,
                "committed offsets of a deleted topic removed"
            );
            context
                .consumer_offset_manager
                .persist()
                .await
                .map_err(not_persisted(format!(
                    "offsets of topic {} removed",
                    header.topic
                )))?;
        }
        Ok(Some(RemotingCommand::success_to(request)))
    }

    /// GET_ALL_TOPIC_CONFIG (21): the TopicConfigSerializeWrapper.
    fn all_topic_config(&self, request: &RemotingCommand) -> Outcome {
        let wrapper = self.context.topic_config_manager.serialize_wrapper();
        Ok(Some(
            RemotingCommand::success_to(request).with_body(to_json(&wrapper)),
        ))
    }

    /// GET_TOPIC_STATS_INFO (202): min and max offset and last store time of every write
    /// queue.
    fn topic_stats_info(&self, request: &RemotingCommand) -> Outcome {
        let header: GetTopicStatsInfoRequestHeader = request.decode_header()?;
        let topic = header.topic.as_str();
        let Some(config) = self.context.topic_config_manager.select_topic_config(topic) else {
            return Ok(Some(RemotingCommand::error_to(
                request,
                response_code::TOPIC_NOT_EXIST,
                format!("topic[{topic}] not exist"),
            )));
        };
        let store = &self.context.store;
        let entries: Vec<(MessageQueue, TopicOffset)> = queue_ids(config.write_queue_nums)
            .map(|queue_id| {
                let min_offset = store.min_offset_in_queue(topic, queue_id).max(0);
                let max_offset = store.max_offset_in_queue(topic, queue_id).max(0);
                let last_update_timestamp = if max_offset > 0 {
                    message_store_timestamp(store, topic, queue_id, max_offset - 1)
                } else {
                    0
                };
                (
                    self.message_queue(topic, queue_id),
                    TopicOffset {
                        last_update_timestamp,
                        max_offset,
                        min_offset,
                    },
                )
            })
            .collect();
        Ok(Some(
            RemotingCommand::success_to(request).with_body(topic_stats_table_body(&entries)),
        ))
    }

    /// QUERY_TOPIC_CONSUME_BY_WHO (300): the groups subscribed to the topic or holding
    /// offsets on it.
    fn query_topic_consume_by_who(&self, request: &RemotingCommand) -> Outcome {
        let header: QueryTopicConsumeByWhoRequestHeader = request.decode_header()?;
        let mut group_list: BTreeSet<String> = self
            .context
            .consumer_manager
            .query_topic_consume_by_who(&header.topic)
            .into_iter()
            .collect();
        group_list.extend(
            self.context
                .consumer_offset_manager
                .groups_of_topic(&header.topic),
        );
        Ok(Some(
            RemotingCommand::success_to(request).with_body(to_json(&GroupList { group_list })),
        ))
    }

    // -----------------------------------------------------------------------------------------
    // Queue offsets

    /// GET_MAX_OFFSET (30): the next offset to be written (0 for an unknown queue).
    fn max_offset(&self, request: &RemotingCommand) -> Outcome {
        let header: GetMaxOffsetRequestHeader = request.decode_header()?;
        let offset = self
            .context
            .store
            .max_offset_in_queue(&header.topic, header.queue_id);
        Ok(Some(
            RemotingCommand::success_to(request)
                .with_header(&GetMaxOffsetResponseHeader { offset }),
        ))
    }

    /// GET_MIN_OFFSET (31): the first offset still stored (0 for an unknown queue).
    fn min_offset(&self, request: &RemotingCommand) -> Outcome {
        let header: GetMinOffsetRequestHeader = request.decode_header()?;
        let offset = self
            .context
            .store
            .min_offset_in_queue(&header.topic, header.queue_id);
        Ok(Some(
            RemotingCommand::success_to(request)
                .with_header(&GetMinOffsetResponseHeader { offset }),
        ))
    }

    /// SEARCH_OFFSET_BY_TIMESTAMP (29): the first offset stored at or after the time.
    fn search_offset_by_timestamp(&self, request: &RemotingCommand) -> Outcome {
        let header: SearchOffsetRequestHeader = request.decode_header()?;
        let offset = self.context.store.offset_in_queue_by_time(
            &header.topic,
            header.queue_id,
            header.timestamp,
        );
        Ok(Some(
            RemotingCommand::success_to(request)
                .with_header(&SearchOffsetResponseHeader { offset }),
        ))
    }

    /// GET_EARLIEST_MSG_STORETIME (32): the store time of the oldest message of the queue,
    /// -1 when there is none (as Java).
    fn earliest_msg_storetime(&self, request: &RemotingCommand) -> Outcome {
        let header: GetEarliestMsgStoretimeRequestHeader = request.decode_header()?;
        let timestamp = self
            .context
            .store
            .earliest_message_time(&header.topic, header.queue_id)
            .unwrap_or(-1);
        Ok(Some(RemotingCommand::success_to(request).with_header(
            &GetEarliestMsgStoretimeResponseHeader { timestamp },
        )))
    }

    // -----------------------------------------------------------------------------------------
    // Consumer groups and offsets

    /// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP (200): body SubscriptionGroupConfig.
    async fn update_and_create_subscription_group(
        &self,
        channel: &Channel,
        request: &RemotingCommand,
    ) -> Outcome {
        if let Some(refused) = self.refuse_on_slave(request) {
            return Ok(Some(refused));
        }
        tracing::info!(peer = %channel.peer_addr(), "updateAndCreateSubscriptionGroup");
        if request.body.is_empty() {
            return Err(ProcessError::system(
                "the SubscriptionGroupConfig body is missing",
            ));
        }
        // Java decodes `null` to no config and answers SUCCESS without a change.
        let config: Option<SubscriptionGroupConfig> =
            from_json("SubscriptionGroupConfig", &request.body)
                .map_err(|e| ProcessError::system(e.to_string()))?;
        let Some(config) = config else {
            return Ok(Some(RemotingCommand::success_to(request)));
        };
        if config.group_name.trim().is_empty() {
            // Java would store it under the empty name; nothing could ever use it.
            return Err(ProcessError::system(
                "the subscription group's groupName is blank",
            ));
        }
        let group = config.group_name.clone();
        let manager = &self.context.subscription_group_manager;
        manager.update_subscription_group_config(config);
        manager
            .persist()
            .await
            .map_err(not_persisted(format!("subscription group {group} updated")))?;
        Ok(Some(RemotingCommand::success_to(request)))
    }

    /// GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201): the SubscriptionGroupWrapper.
    fn all_subscription_group(&self, request: &RemotingCommand) -> Outcome {
        let wrapper = self.context.subscription_group_manager.wrapper();
        Ok(Some(
            RemotingCommand::success_to(request).with_body(to_json(&wrapper)),
        ))
    }

    /// DELETE_SUBSCRIPTIONGROUP (207), and the group's committed offsets when `removeOffset`.
    async fn delete_subscription_group(
        &self,
        channel: &Channel,
        request: &RemotingCommand,
    ) -> Outcome {
        if let Some(refused) = self.refuse_on_slave(request) {
            return Ok(Some(refused));
        }
        let header: DeleteSubscriptionGroupRequestHeader = request.decode_header()?;
        tracing::info!(
            group = %header.group_name,
            peer = %channel.peer_addr(),
            "deleteSubscriptionGroup"
        );
        let context = &self.context;
        if context
            .subscription_group_manager
            .delete_subscription_group_config(&header.group_name)
        {
            context
                .subscription_group_manager
                .persist()
                .await
                .map_err(not_persisted(format!(
                    "subscription group {} deleted",
                    header.group_name
                )))?;
        } else {
            tracing::warn!(group = %header.group_name, "deleteSubscriptionGroup: no such group");
        }
        if header.remove_offset.unwrap_or(false) {
            context
                .consumer_offset_manager
                .remove_group(&header.group_name);
            context
                .consumer_offset_manager
                .persist()
                .await
                .map_err(not_persisted(format!(
                    "offsets of group {} removed",
                    header.group_name
                )))?;
        }
        Ok(Some(RemotingCommand::success_to(request)))
    }

    /// GET_ALL_CONSUMER_OFFSET (43): the ConsumerOffsetSerializeWrapper (`{"offsetTable":…}`).
    fn all_consumer_offset(&self, request: &RemotingCommand) -> Outcome {
        let table = self.context.consumer_offset_manager.table();
        Ok(Some(
            RemotingCommand::success_to(request).with_body(to_json(&table)),
        ))
    }

    /// GET_CONSUME_STATS (208): per read queue of each topic the group consumes, the broker's
    /// and the group's offsets.
    fn consume_stats(&self, request: &RemotingCommand) -> Outcome {
        let header: GetConsumeStatsRequestHeader = request.decode_header()?;
        let group = header.consumer_group.as_str();
        let context = &self.context;
        let topics: BTreeSet<String> = match header.topic.as_deref().map(str::trim) {
            Some(topic) if !topic.is_empty() => BTreeSet::from([topic.to_owned()]),
            _ => context
                .consumer_offset_manager
                .table()
                .topics_of_group(group)
                .into_iter()
                .map(str::to_owned)
                .collect(),
        };
        let subscriptions = context
            .consumer_manager
            .consumer_group_info(group)
            .map(|info| info.subscriptions)
            .unwrap_or_default();
        let store = &context.store;
        let mut entries = Vec::new();
        for topic in &topics {
            let Some(config) = context.topic_config_manager.select_topic_config(topic) else {
                tracing::warn!(topic, "consumeStats: topic config not exist");
                continue;
            };
            if !subscriptions.is_empty() && !subscriptions.contains_key(topic) {
                tracing::warn!(
                    group,
                    topic,
                    "consumeStats: the group does not subscribe the topic"
                );
                continue;
            }
            for queue_id in queue_ids(config.read_queue_nums) {
                let broker_offset = store.max_offset_in_queue(topic, queue_id).max(0);
                let consumer_offset = context
                    .consumer_offset_manager
                    .query_offset(group, topic, queue_id)
                    .unwrap_or(-1)
                    .max(0);
                let last_timestamp = if consumer_offset > 0 {
                    message_store_timestamp(store, topic, queue_id, consumer_offset - 1).max(0)
                } else {
                    0
                };
                entries.push((
                    self.message_queue(topic, queue_id),
                    OffsetWrapper {
                        broker_offset,
                        consumer_offset,
                        last_timestamp,
                    },
                ));
            }
        }
        // The broker keeps no per-group consumption rate; 0 is what Java reports for a group
        // that consumed nothing in the stats window.
        let consume_tps = 0.0;
        Ok(Some(
            RemotingCommand::success_to(request)
                .with_body(consume_stats_body(consume_tps, &entries)),
        ))
    }

    // -----------------------------------------------------------------------------------------
    // Connections

    /// GET_CONSUMER_CONNECTION_LIST (203): the group's connections and subscriptions.
    fn consumer_connection_list(&self, request: &RemotingCommand) -> Outcome {
        let header: GetConsumerConnectionListRequestHeader = request.decode_header()?;
        let Some(info) = self
            .context
            .consumer_manager
            .consumer_group_info(&header.consumer_group)
        else {
            return Ok(Some(RemotingCommand::error_to(
                request,
                response_code::CONSUMER_NOT_ONLINE,
                format!("the consumer group[{}] not online", header.consumer_group),
            )));
        };
        let body = ConsumerConnection {
            connection_set: info
                .channels
                .values()
                .map(|client| Connection {
                    client_addr: Some(client.channel.peer_addr().to_string()),
                    client_id: client.client_id.clone(),
                    language: Some(client.language.name().to_owned()),
                    version: Some(client.version),
                })
                .collect(),
            consume_from_where: info.consume_from_where,
            consume_type: info.consume_type,
            message_model: info.message_model,
            subscription_table: info.subscriptions,
        };
        Ok(Some(
            RemotingCommand::success_to(request).with_body(to_json(&body)),
        ))
    }

    /// GET_PRODUCER_CONNECTION_LIST (204): the producer group's connections.
    ///
    /// `ProducerManager` exposes only each connection's client id, so `clientAddr`,
    /// `language` and `version` are left out (Java tools then print `null` and the lowest
    /// version) rather than guessed.
    fn producer_connection_list(&self, request: &RemotingCommand) -> Outcome {
        let header: GetProducerConnectionListRequestHeader = request.decode_header()?;
        let groups = self.context.producer_manager.groups();
        let Some(client_ids) = groups.get(&header.producer_group) else {
            return Err(ProcessError::system(format!(
                "the producer group[{}] not exist",
                header.producer_group
            )));
        };
        let body = ProducerConnection {
            connection_set: client_ids
                .iter()
                .map(|client_id| Connection {
                    client_addr: None,
                    client_id: client_id.clone(),
                    language: None,
                    version: None,
                })
                .collect(),
        };
        Ok(Some(
            RemotingCommand::success_to(request).with_body(to_json(&body)),
        ))
    }

    // -----------------------------------------------------------------------------------------
    // Settings and runtime numbers

    /// GET_BROKER_CONFIG (26): every setting as properties text, and the settings' version.
    fn broker_config(&self, request: &RemotingCommand) -> Outcome {
        let context = &self.context;
        let text = render_properties(&[
            &context.config,
            &context.server_config,
            &context.store_config,
        ]);
        Ok(Some(
            RemotingCommand::success_to(request)
                .with_header(&GetBrokerConfigResponseHeader {
                    version: String::from_utf8(to_json(&self.config_data_version))
                        .expect("serde_json writes UTF-8"),
                })
                .with_body(text.into_bytes()),
        ))
    }

    /// GET_BROKER_RUNTIME_INFO (28): a KVTable of the runtime numbers Java reports that this
    /// broker can compute. Numbers it does not track (put/get totals and rates, executor queue
    /// sizes, schedule progress) are absent rather than invented.
    fn broker_runtime_info(&self, request: &RemotingCommand) -> Outcome {
        let table = self.runtime_info();
        Ok(Some(
            RemotingCommand::success_to(request).with_body(to_json(&KvTable { table })),
        ))
    }

    fn runtime_info(&self) -> BTreeMap<String, String> {
        let context = &self.context;
        let store = &context.store;
        let commit_log = store.commit_log();
        let config = &context.config;
        let mut info = BTreeMap::new();
        let mut put = |key: &str, value: String| {
            info.insert(key.to_owned(), value);
        };
        put("brokerVersionDesc", BROKER_VERSION_DESC.to_owned());
        put("brokerVersion", CURRENT_VERSION.to_string());
        put("commitLogMinOffset", commit_log.min_offset().to_string());
        put("commitLogMaxOffset", commit_log.max_offset().to_string());
        put(
            "dispatchBehindBytes",
            store.dispatch_behind_bytes().to_string(),
        );
        // Java: how long the current append has held the commit-log lock. An append here
        // holds it only for the copy, so a reader never observes a stuck one.
        put("pageCacheLockTimeMills", "0".to_owned());
        put(
            "earliestMessageTimeStamp",
            earliest_message_time(store).to_string(),
        );
        put(
            "remainHowManyDataToFlush",
            human_readable_byte_count(
                commit_log
                    .max_offset()
                    .saturating_sub(commit_log.flushed_offset()),
            ),
        );
        put(
            "remainTransientStoreBufferNumbs",
            NO_TRANSIENT_STORE_POOL.to_string(),
        );
        put(
            "sendThreadPoolQueueCapacity",
            config.send_thread_pool_queue_capacity.to_string(),
        );
        put(
            "pullThreadPoolQueueCapacity",
            config.pull_thread_pool_queue_capacity.to_string(),
        );
        put(
            "queryThreadPoolQueueCapacity",
            config.query_thread_pool_queue_capacity.to_string(),
        );
        put(
            "EndTransactionThreadPoolQueueCapacity",
            config.end_transaction_pool_queue_capacity.to_string(),
        );
        let commit_log_dir =
            crate::disk::join(&context.store_config.store_path_root_dir, "commitlog");
        match context.env.disk.space() {
            Ok(space) => {
                // `UtilAll.getDiskPartitionSpaceUsedPercent`: a fraction, -1 when unknown.
                let ratio = if space.total > 0 {
                    space.total.saturating_sub(space.available) as f64 / space.total as f64
                } else {
                    -1.0
                };
                put("commitLogDiskRatio", ratio.to_string());
                put(
                    &format!("commitLogDiskRatio_{commit_log_dir}"),
                    ratio.to_string(),
                );
                put("consumeQueueDiskRatio", ratio.to_string());
                put(
                    "commitLogDirCapacity",
                    format!(
                        "Total : {}, Free : {}.",
                        human_readable_byte_count(space.total),
                        human_readable_byte_count(space.available)
                    ),
                );
            }
            Err(error) => {
                tracing::warn!(%error, "disk space unknown for the runtime info");
                put("commitLogDiskRatio", "-1.0".to_owned());
                put("consumeQueueDiskRatio", "-1.0".to_owned());
            }
        }
        info
    }

    // -----------------------------------------------------------------------------------------
    // Helpers

    /// Java's `validateSlave`: a slave refuses topic and group changes.
    fn refuse_on_slave(&self, request: &RemotingCommand) -> Option<RemotingCommand> {
        (self.context.store_config.broker_role == BrokerRole::Slave).then(|| {
            RemotingCommand::error_to(
                request,
                response_code::SYSTEM_ERROR,
                "Can't modify topic or subscription group from slave broker, please execute it from master broker.",
            )
        })
    }

    /// Java's `TopicValidator.validateTopic` and `isSystemTopic`, with their remarks.
    fn refuse_topic(&self, request: &RemotingCommand, topic: &str) -> Option<RemotingCommand> {
        let remark = match validate_topic(topic) {
            Err(TopicNameError::Blank) => "The specified topic is blank.".to_owned(),
            Err(TopicNameError::IllegalCharacters(_)) => {
                "The specified topic contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
                    .to_owned()
            }
            Err(TopicNameError::TooLong) => {
                "The specified topic is longer than topic max length.".to_owned()
            }
            Ok(()) if self.is_system_topic(topic) => {
                format!("The topic[{topic}] is conflict with system topic.")
            }
            Ok(()) => return None,
        };
        Some(RemotingCommand::error_to(
            request,
            response_code::SYSTEM_ERROR,
            remark,
        ))
    }

    /// Java's `TopicValidator.isSystemTopic` as a running broker sees it: the fixed system
    /// topics, the `rmq_sys_` prefix, and the topics `TopicConfigManager` registers as system
    /// topics at start (cluster name, broker name, reply topic, trace topic when enabled).
    fn is_system_topic(&self, topic: &str) -> bool {
        let config = &self.context.config;
        system_topic::is_system(topic)
            || topic.starts_with(SYSTEM_TOPIC_PREFIX)
            || topic == config.broker_cluster_name
            || topic == config.broker_name
            || topic
                == format!(
                    "{}_{}",
                    config.broker_cluster_name,
                    system_topic::REPLY_TOPIC_POSTFIX
                )
            || (config.trace_topic_enable && topic == config.msg_trace_topic_name)
    }

    fn message_queue(&self, topic: &str, queue_id: i32) -> MessageQueue {
        MessageQueue {
            broker_name: self.context.config.broker_name.clone(),
            queue_id,
            topic: topic.to_owned(),
        }
    }
}

#[async_trait::async_trait]
impl RequestProcessor for AdminBrokerProcessor {
    async fn process(&self, channel: &Channel, request: RemotingCommand) -> Outcome {
        match request.code {
            rc::UPDATE_AND_CREATE_TOPIC => self.update_and_create_topic(channel, &request).await,
            rc::DELETE_TOPIC_IN_BROKER => self.delete_topic(channel, &request).await,
            rc::GET_ALL_TOPIC_CONFIG => self.all_topic_config(&request),
            rc::GET_BROKER_CONFIG => self.broker_config(&request),
            rc::SEARCH_OFFSET_BY_TIMESTAMP => self.search_offset_by_timestamp(&request),
            rc::GET_MAX_OFFSET => self.max_offset(&request),
            rc::GET_MIN_OFFSET => self.min_offset(&request),
            rc::GET_EARLIEST_MSG_STORETIME => self.earliest_msg_storetime(&request),
            rc::GET_BROKER_RUNTIME_INFO => self.broker_runtime_info(&request),
            rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => {
                self.update_and_create_subscription_group(channel, &request)
                    .await
            }
            rc::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => self.all_subscription_group(&request),
            rc::DELETE_SUBSCRIPTIONGROUP => self.delete_subscription_group(channel, &request).await,
            rc::GET_TOPIC_STATS_INFO => self.topic_stats_info(&request),
            rc::GET_CONSUMER_CONNECTION_LIST => self.consumer_connection_list(&request),
            rc::GET_PRODUCER_CONNECTION_LIST => self.producer_connection_list(&request),
            rc::GET_CONSUME_STATS => self.consume_stats(&request),
            rc::GET_ALL_CONSUMER_OFFSET => self.all_consumer_offset(&request),
            rc::QUERY_TOPIC_CONSUME_BY_WHO => self.query_topic_consume_by_who(&request),
            // This processor is the broker's default: Java's `getUnknownCmdResponse`.
            other => Ok(Some(RemotingCommand::error_to(
                &request,
                response_code::REQUEST_CODE_NOT_SUPPORTED,
                format!(" request type {other} not supported"),
            ))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Store lookups

/// `getMessageStoreTimeStamp`: the store time of queue entry `offset`, -1 when it is gone.
fn message_store_timestamp(store: &MessageStore, topic: &str, queue_id: i32, offset: i64) -> i64 {
    store
        .find_consume_queue(topic, queue_id)
        .and_then(|queue| queue.unit(offset))
        .and_then(|unit| store.store_timestamp_at(unit.commit_log_offset, unit.size))
        .unwrap_or(-1)
}

/// `getEarliestMessageTime()`: the store time of the first record of the commit log, -1
/// when it is empty.
fn earliest_message_time(store: &MessageStore) -> i64 {
    let min_offset = store.commit_log().min_offset();
    i64::try_from(min_offset)
        .ok()
        .and_then(|offset| store.look_message_by_offset(offset))
        .and_then(|record| decode_record(&record, false, false).ok())
        .map_or(-1, |message| message.store_timestamp)
}

/// The queue ids `0..count` of a topic, never more than [`QUEUE_NUMS_MAX`].
fn queue_ids(count: i32) -> std::ops::Range<i32> {
    0..count.clamp(0, QUEUE_NUMS_MAX)
}

/// `MixAll.humanReadableByteCount(bytes, false)`: `512 B`, `1.5 KiB`, `3.0 GiB`.
fn human_readable_byte_count(bytes: u64) -> String {
    const UNIT: u64 = 1024;
    if bytes < UNIT {
        return format!("{bytes} B");
    }
    let mut exp = 0usize;
    let mut scale = 1u64;
    while bytes / scale >= UNIT && exp < 6 {
        scale *= UNIT;
        exp += 1;
    }
    let prefix = ['K', 'M', 'G', 'T', 'P', 'E'][exp - 1];
    format!("{:.1} {prefix}iB", bytes as f64 / scale as f64)
}

// ---------------------------------------------------------------------------------------------
// Bodies (fastjson shapes: fields in alphabetical order, enums by name)

/// `TopicOffset`: one queue of GET_TOPIC_STATS_INFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TopicOffset {
    last_update_timestamp: i64,
    max_offset: i64,
    min_offset: i64,
}

/// `OffsetWrapper`: one queue of GET_CONSUME_STATS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OffsetWrapper {
    broker_offset: i64,
    consumer_offset: i64,
    last_timestamp: i64,
}

/// `GroupList`: the body of QUERY_TOPIC_CONSUME_BY_WHO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupList {
    group_list: BTreeSet<String>,
}

/// `Connection`: one client connection. Unknown fields are left out (Java reads them as
/// `null` / 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Connection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_addr: Option<String>,
    client_id: String,
    /// The `LanguageCode` name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<i32>,
}

/// `ConsumerConnection`: the body of GET_CONSUMER_CONNECTION_LIST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConsumerConnection {
    connection_set: Vec<Connection>,
    consume_from_where: ConsumeFromWhere,
    consume_type: ConsumeType,
    message_model: MessageModel,
    subscription_table: BTreeMap<String, SubscriptionData>,
}

/// `ProducerConnection`: the body of GET_PRODUCER_CONNECTION_LIST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProducerConnection {
    connection_set: Vec<Connection>,
}

/// Writes a `Map` whose keys are beans as fastjson does: each key object where a key
/// string would be, `{{"brokerName":"b","queueId":0,"topic":"T"}:{…},…}`. See the module
/// docs for why not a quoted key.
fn fastjson_object_keyed_map<K: Serialize, V: Serialize>(entries: &[(K, V)]) -> Vec<u8> {
    let mut out = vec![b'{'];
    for (index, (key, value)) in entries.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&to_json(key));
        out.push(b':');
        out.extend_from_slice(&to_json(value));
    }
    out.push(b'}');
    out
}

/// `TopicStatsTable`: `{"offsetTable":{<MessageQueue>:<TopicOffset>,…}}`.
fn topic_stats_table_body(entries: &[(MessageQueue, TopicOffset)]) -> Vec<u8> {
    let mut out = br#"{"offsetTable":"#.to_vec();
    out.extend_from_slice(&fastjson_object_keyed_map(entries));
    out.push(b'}');
    out
}

/// `ConsumeStats`: `{"consumeTps":0.0,"offsetTable":{<MessageQueue>:<OffsetWrapper>,…}}`.
fn consume_stats_body(consume_tps: f64, entries: &[(MessageQueue, OffsetWrapper)]) -> Vec<u8> {
    let mut out = br#"{"consumeTps":"#.to_vec();
    out.extend_from_slice(&to_json(&consume_tps));
    out.extend_from_slice(br#","offsetTable":"#);
    out.extend_from_slice(&fastjson_object_keyed_map(entries));
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests;

/// The SYSTEM_ERROR of a change applied in memory that could not be written to its file:
/// `change` says what changed.
fn not_persisted<E: std::fmt::Display>(change: String) -> impl FnOnce(E) -> ProcessError {
    move |e| ProcessError::system(format!("{change} but not persisted: {e}"))
}
