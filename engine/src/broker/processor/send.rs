//! The SEND processor (`SendMessageProcessor` with `AbstractSendMessageProcessor`): producers'
//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320), and consumers'
//! CONSUMER_SEND_MSG_BACK (36).
//!
//! Where it sits: the dispatcher hands each request here with the producer's [`Channel`]; the
//! processor checks it against the broker's metadata (`msgCheck`), creates unknown topics from
//! the `defaultTopic` template and retry/DLQ topics on demand, builds the message the store
//! appends ([`MessageInner`]) and maps the store's [`PutMessageStatus`] to the response code
//! every RocketMQ client interprets the same way (`spec/wire-protocol.md` §4–§5, §8, §9.5).
//!
//! Invariants:
//!
//! - every request gets an answer and nothing a peer sends panics: a malformed header is a
//!   `SYSTEM_ERROR` naming the field (through [`ProcessError`], as Java's
//!   `RemotingCommandException`); every other refusal is the Java response code with a remark;
//! - a send response whose message was stored (SUCCESS, FLUSH_DISK_TIMEOUT,
//!   FLUSH_SLAVE_TIMEOUT, SLAVE_NOT_AVAILABLE) always carries `msgId`, `queueId` and
//!   `queueOffset` — Java's `processSendResponse` dereferences them unchecked — and every send
//!   response carries the `MSG_REGION` and `TRACE_ON` ext fields, as Java's `preSend` adds
//!   them before any check;
//! - a topic or group created here is persisted at once; the topic manager's change signal
//!   makes the broker re-register with the name servers.
//!
//! Deliberate differences from the 4.9.8 Java broker (each answers with a code Java clients
//! already handle):
//!
//! - a broker without WRITE permission refuses every send (Java: only order topics), and a
//!   topic without WRITE permission refuses sends (Java does not check); both answer
//!   NO_PERMISSION, on which producers retry another broker;
//! - `batch=1` (the C++ client's batch flag) is a batch (Java's `Boolean.parseBoolean` reads
//!   it as false and stores the encoded batch as one message), and SEND_BATCH_MESSAGE is always
//!   a batch; batches to retry topics or with DELAY inside are MESSAGE_ILLEGAL;
//! - a retry message sent to the DLQ is not delayed (4.9.8 loses its `setDelayTimeLevel(0)`
//!   when it replaces the properties, so the DLQ copy kept the retry's DELAY).
//!
//! Half (transactional) messages are refused (NO_PERMISSION) until END_TRANSACTION and the
//! check-back service exist: acknowledging them would lose them.
//!
//! Flow control: while the store's page cache is busy (an append has held the commit-log
//! lock longer than `osPageCacheBusyTimeOutMills`), sends are turned away before they are
//! queued (`reject_request`, `[REJECTREQUEST]`), and one already past that is refused by the
//! store (OS_PAGECACHE_BUSY, `[PC_SYNCHRONIZED]`).
//!
//! Waiting for the disk: under SYNC_FLUSH a send is answered from a task of its own once the
//! group commit covering it completes (`answer_when_durable`), so the send workers append
//! without waiting and every sync covers all that was appended while the previous one ran.
//! A single send's `WAIT` property is stripped from the stored record
//! (as Java) and passed to the store separately, so `WAIT=false` sends are answered without
//! waiting for SYNC_FLUSH; a batch keeps the outer properties, `WAIT` included, in every
//! record (as Java), and a send-back stores `WAIT=false` (as Java).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::broker::context::BrokerContext;
use crate::broker::topic_config::{TopicNameError, system_topic, validate_topic};
use crate::protocol::{TopicConfig, TopicFilterType, perm};
use crate::remoting::headers::{
    ConsumerSendMsgBackRequestHeader, SendMessageRequestHeader, SendMessageResponseHeader,
};
use crate::remoting::transport::{Channel, ProcessError, RequestProcessor};
use crate::remoting::{RemotingCommand, request_code, response_code};
use crate::store::message::{
    BatchItem, MessageInner, PROPERTY_SEPARATOR, decode_batch, decode_record, encode_properties,
    find_property, property_key, property_map, sys_flag, tags_code,
};
use crate::store::message_store::{FlushWait, PendingPut, PutMessageResult, PutMessageStatus};
use crate::store::metadata::SubscriptionGroupConfig;

/// `BrokerConfig.regionId`'s default, sent as the `MSG_REGION` ext field of send responses.
pub const REGION_ID_DEFAULT: &str = "DefaultRegion";

/// `BrokerConfig.traceOn`'s default, sent as the `TRACE_ON` ext field of send responses.
pub const TRACE_ON_DEFAULT: bool = true;

/// Queues of a dead-letter topic (`DLQ_NUMS_PER_GROUP`).
pub const DLQ_NUMS_PER_GROUP: i32 = 1;

/// `MQVersion.V3_4_9`'s ordinal: from this client version on, a request's
/// `maxReconsumeTimes` overrides the subscription group's `retryMaxTimes`.
pub const VERSION_V3_4_9: i32 = 121;

/// Delay level of a sent-back message whose request leaves it to the broker:
/// `SEND_BACK_DELAY_LEVEL_BASE + reconsumeTimes` (level 3 is 10 s by default).
pub const SEND_BACK_DELAY_LEVEL_BASE: i32 = 3;

/// `TopicSysFlag.FLAG_UNIT`: a unit topic.
const TOPIC_SYS_FLAG_UNIT: i32 = 1;

/// `TopicSysFlag.FLAG_UNIT_SUB`: a topic with unit subscriptions (unit-mode retry topics).
const TOPIC_SYS_FLAG_UNIT_SUB: i32 = 1 << 1;

/// `FAQUrl.suggestTodo(...)` as the Java broker appends it to some remarks.
const FAQ_SUFFIX: &str = "\nSee http://rocketmq.apache.org/docs/faq/ for further details.";

type Outcome = Result<Option<RemotingCommand>, ProcessError>;

/// Answers the send request codes over the broker's shared state. See the module docs.
#[derive(Debug)]
pub struct SendMessageProcessor {
    context: Arc<BrokerContext>,
}

/// Where a single or batch send goes before the store is asked: the checked topic, and the
/// queue the producer asked for (or the one picked for it), which the response reports.
struct SendTarget {
    topic_config: TopicConfig,
    queue_id: i32,
}

#[async_trait::async_trait]
impl RequestProcessor for SendMessageProcessor {
    async fn process(&self, channel: &Channel, request: RemotingCommand) -> Outcome {
        match request.code {
            request_code::SEND_MESSAGE
            | request_code::SEND_MESSAGE_V2
            | request_code::SEND_BATCH_MESSAGE => self.send(channel, &request).await,
            request_code::CONSUMER_SEND_MSG_BACK => self.consumer_send_msg_back(&request).await,
            code => Ok(Some(RemotingCommand::error_to(
                &request,
                response_code::REQUEST_CODE_NOT_SUPPORTED,
                format!(" request type {code} not supported"),
            ))),
        }
    }

    /// Sends are turned away (`[REJECTREQUEST]`) while the store's page cache is busy, as
    /// Java's `rejectRequest` (which also checks the transient store pool; ferrocket has
    /// none).
    fn reject_request(&self) -> bool {
        self.context.store.is_os_page_cache_busy()
    }
}

impl SendMessageProcessor {
    /// A processor over `context`.
    pub fn new(context: Arc<BrokerContext>) -> Self {
        Self { context }
    }

    // -----------------------------------------------------------------------------------------
    // SEND_MESSAGE, SEND_MESSAGE_V2, SEND_BATCH_MESSAGE

    async fn send(&self, channel: &Channel, request: &RemotingCommand) -> Outcome {
        let header = SendMessageRequestHeader::decode_for_code(request.code, &request.ext_fields)?;
        let batch = request.code == request_code::SEND_BATCH_MESSAGE || header.batch == Some(true);
        let peer = channel.peer_addr();
        let put = async {
            let target = self.check_message(&header, peer).await?;
            let result = if batch {
                self.put_batch(request, &header, &target, peer).await?
            } else {
                self.put_single(request, &header, &target, peer).await?
            };
            Ok::<_, ProcessError>((target.queue_id, result))
        };
        Ok(match put.await {
            Ok((queue_id, PendingPut { result, flush })) => {
                let response = self.put_result_response(request, queue_id, result);
                match flush {
                    None => Some(response),
                    Some(_) if request.is_oneway() => None,
                    Some(flush) => {
                        tokio::spawn(answer_when_durable(channel.clone(), response, flush));
                        None
                    }
                }
            }
            Err(refusal) => {
                tracing::debug!(
                    topic = %header.topic,
                    %peer,
                    code = refusal.code,
                    remark = %refusal.remark,
                    "send refused"
                );
                Some(send_response(request, refusal.code, Some(refusal.remark)))
            }
        })
    }

    /// `msgCheck`: may this broker take messages for the header's topic and queue? Creates
    /// an unknown topic from the template `defaultTopic`. Returns the topic and the queue to
    /// report (a negative queue id becomes a random write queue).
    async fn check_message(
        &self,
        header: &SendMessageRequestHeader,
        peer: SocketAddr,
    ) -> Result<SendTarget, ProcessError> {
        let config = &self.context.config;
        if !perm::is_writeable(config.broker_permission) {
            return Err(ProcessError::new(
                response_code::NO_PERMISSION,
                format!(
                    "the broker[{}] sending message is forbidden",
                    config.broker_ip1
                ),
            ));
        }
        let topic = header.topic.as_str();
        validate_topic(topic).map_err(|error| {
            ProcessError::new(response_code::SYSTEM_ERROR, java_topic_name_remark(&error))
        })?;
        if system_topic::is_not_allowed_send(topic) {
            return Err(ProcessError::new(
                response_code::NO_PERMISSION,
                format!("Sending message to topic[{topic}] is forbidden."),
            ));
        }
        let topic_config = match self.context.topic_config_manager.select_topic_config(topic) {
            Some(existing) => existing,
            None => self.create_topic_on_send(header, peer).await?,
        };
        if !perm::is_writeable(topic_config.perm) {
            return Err(ProcessError::new(
                response_code::NO_PERMISSION,
                format!("the topic[{topic}] sending message is forbidden"),
            ));
        }
        let queue_id_bound = topic_config
            .write_queue_nums
            .max(topic_config.read_queue_nums);
        if header.queue_id >= queue_id_bound {
            return Err(ProcessError::system(format!(
                "request queueId[{}] is illegal, {} Producer: {peer}",
                header.queue_id,
                java_topic_config_string(&topic_config)
            )));
        }
        let queue_id = if header.queue_id < 0 {
            if topic_config.write_queue_nums <= 0 {
                return Err(ProcessError::system(format!(
                    "topic[{topic}] has no write queue to pick from, Producer: {peer}"
                )));
            }
            self.random_queue_id(topic_config.write_queue_nums)
        } else {
            header.queue_id
        };
        Ok(SendTarget {
            topic_config,
            queue_id,
        })
    }

    /// Creates the unknown topic of a send from its template, or — for a retry topic whose
    /// template refuses — with one read-write queue, as Java does.
    async fn create_topic_on_send(
        &self,
        header: &SendMessageRequestHeader,
        peer: SocketAddr,
    ) -> Result<TopicConfig, ProcessError> {
        let topic = header.topic.as_str();
        let is_retry = topic.starts_with(system_topic::RETRY_GROUP_PREFIX);
        let topic_sys_flag = match (header.unit_mode.unwrap_or(false), is_retry) {
            (false, _) => 0,
            (true, true) => TOPIC_SYS_FLAG_UNIT_SUB,
            (true, false) => TOPIC_SYS_FLAG_UNIT,
        };
        tracing::warn!(
            topic,
            %peer,
            default_topic = %header.default_topic,
            "the topic does not exist; creating it on send"
        );
        let manager = &self.context.topic_config_manager;
        let created = manager
            .create_topic_in_send_message_method(
                topic,
                &header.default_topic,
                header.default_topic_queue_nums,
                topic_sys_flag,
            )
            .or_else(|| {
                is_retry.then(|| {
                    manager.create_topic_in_send_message_back_method(
                        topic,
                        1,
                        perm::READ | perm::WRITE,
                        topic_sys_flag,
                    )
                })
            });
        let Some((topic_config, new)) = created else {
            return Err(ProcessError::new(
                response_code::TOPIC_NOT_EXIST,
                format!("topic[{topic}] not exist, apply first please!{FAQ_SUFFIX}"),
            ));
        };
        if new {
            self.persist_topics().await;
            self.context.topics_registered().await;
        }
        Ok(topic_config)
    }

    /// A single message (SEND_MESSAGE/SEND_MESSAGE_V2 without the batch flag), with the
    /// retry/DLQ rewrite and the half-message parking.
    async fn put_single(
        &self,
        request: &RemotingCommand,
        header: &SendMessageRequestHeader,
        target: &SendTarget,
        peer: SocketAddr,
    ) -> Result<PendingPut, ProcessError> {
        let mut properties = property_map(header.properties.as_deref().unwrap_or(""));
        let reconsume_times = header.reconsume_times.unwrap_or(0);
        let mut topic = header.topic.clone();
        let mut queue_id = target.queue_id;
        let mut filter_type = target.topic_config.topic_filter_type;
        if let Some(group) = header.topic.strip_prefix(system_topic::RETRY_GROUP_PREFIX) {
            // `handleRetryAndDLQ`: a message whose retries are used up goes to the group's DLQ.
            let group_config = self.find_subscription_group(group).await?;
            let max_reconsume_times = if request.version >= VERSION_V3_4_9 {
                header
                    .max_reconsume_times
                    .unwrap_or(group_config.retry_max_times)
            } else {
                group_config.retry_max_times
            };
            if reconsume_times >= max_reconsume_times {
                let dlq = system_topic::dlq_topic(group);
                tracing::info!(
                    topic = %dlq,
                    reconsume_times,
                    max_reconsume_times,
                    "retries used up; the message goes to the dead-letter queue"
                );
                let dlq_config = self
                    .create_topic_on_send_back(
                        &dlq,
                        DLQ_NUMS_PER_GROUP,
                        perm::READ | perm::WRITE,
                        0,
                    )
                    .await;
                filter_type = dlq_config.topic_filter_type;
                queue_id = self.random_queue_id(DLQ_NUMS_PER_GROUP);
                properties.insert(property_key::DELAY, "0");
                topic = dlq;
            }
        }
        let mut sys_flag = header.sys_flag;
        if filter_type == TopicFilterType::MultiTag {
            sys_flag |= sys_flag::MULTI_TAGS;
        }
        // Java strips WAIT to save its bytes in every record; the store is told separately.
        let wait_store_msg_ok = properties
            .remove(property_key::WAIT)
            .is_none_or(|wait| !wait.eq_ignore_ascii_case("false"));
        properties.insert(
            property_key::CLUSTER,
            &self.context.config.broker_cluster_name,
        );
        let delay_level = parse_level(properties.get(property_key::DELAY));
        let half = properties
            .get(property_key::TRAN_MSG)
            .is_some_and(|flag| flag.eq_ignore_ascii_case("true"))
            // Clients before 4.6.1 kept TRAN_MSG on the retries of a transactional message.
            && !(reconsume_times > 0 && delay_level > 0);
        if half {
            // Half messages are only safe with END_TRANSACTION and the check-back service,
            // which this broker does not have yet: refuse them rather than acknowledge
            // messages that would never be delivered.
            let remark = if self.context.config.reject_transaction_message {
                format!(
                    "the broker[{}] sending transaction message is forbidden",
                    self.context.config.broker_ip1
                )
            } else {
                "transactional messages are not supported by this broker yet".to_owned()
            };
            return Err(ProcessError::new(response_code::NO_PERMISSION, remark));
        }
        let message = MessageInner {
            topic,
            queue_id,
            flag: header.flag,
            body: request.body.clone(),
            tags_code: tags_code(properties.get(property_key::TAGS).unwrap_or(&"")),
            properties: encode_properties(&properties),
            sys_flag,
            born_timestamp: header.born_timestamp,
            born_host: peer,
            store_host: self.context.store_host,
            store_timestamp: 0,
            reconsume_times,
            prepared_transaction_offset: 0,
        };
        Ok(self
            .context
            .store
            .append_message(message, wait_store_msg_ok))
    }

    /// A batch (SEND_BATCH_MESSAGE, or a send with the batch flag): one record per inner
    /// message, consecutive in one queue, each with its own properties followed by the outer
    /// ones (`CommitLog.MessageExtBatchEncoder`).
    async fn put_batch(
        &self,
        request: &RemotingCommand,
        header: &SendMessageRequestHeader,
        target: &SendTarget,
        peer: SocketAddr,
    ) -> Result<PendingPut, ProcessError> {
        let illegal = |remark: String| ProcessError::new(response_code::MESSAGE_ILLEGAL, remark);
        if header.topic.starts_with(system_topic::RETRY_GROUP_PREFIX) {
            return Err(illegal("Retry Group is not supported for batching".into()));
        }
        if sys_flag::transaction_value(header.sys_flag) != sys_flag::TRANSACTION_NOT_TYPE {
            return Err(illegal(
                "transactional messages are not supported for batching".into(),
            ));
        }
        if request.body.len() as u64 > self.context.store_config.max_message_size {
            return Err(illegal(self.message_illegal_remark()));
        }
        let mut outer = property_map(header.properties.as_deref().unwrap_or(""));
        if parse_level(outer.get(property_key::DELAY)) > 0 {
            return Err(illegal(
                "TimeDelayLevel is not supported for batching".into(),
            ));
        }
        let items = decode_batch(&request.body)
            .map_err(|error| illegal(format!("the batch body is malformed: {error}")))?;
        if items.is_empty() {
            return Err(illegal("the batch holds no message".into()));
        }
        if items
            .iter()
            .any(|item| parse_level(find_property(&item.properties, property_key::DELAY)) > 0)
        {
            return Err(illegal(
                "TimeDelayLevel is not supported for batching".into(),
            ));
        }
        outer.insert(
            property_key::CLUSTER,
            &self.context.config.broker_cluster_name,
        );
        let outer = encode_properties(&outer);
        let mut sys_flag = header.sys_flag;
        if target.topic_config.topic_filter_type == TopicFilterType::MultiTag {
            sys_flag |= sys_flag::MULTI_TAGS;
        }
        let messages = items
            .into_iter()
            .map(|item: BatchItem| {
                let properties = join_batch_properties(&item.properties, &outer);
                MessageInner {
                    topic: header.topic.clone(),
                    queue_id: target.queue_id,
                    flag: item.flag,
                    body: item.body,
                    tags_code: tags_code(
                        find_property(&properties, property_key::TAGS).unwrap_or(""),
                    ),
                    properties,
                    sys_flag,
                    born_timestamp: header.born_timestamp,
                    born_host: peer,
                    store_host: self.context.store_host,
                    store_timestamp: 0,
                    reconsume_times: header.reconsume_times.unwrap_or(0),
                    prepared_transaction_offset: 0,
                }
            })
            .collect();
        Ok(self.context.store.append_messages(messages))
    }

    /// `handlePutMessageResult`: the response code of a store outcome, with the three
    /// required headers whenever the message was stored.
    fn put_result_response(
        &self,
        request: &RemotingCommand,
        queue_id: i32,
        result: PutMessageResult,
    ) -> RemotingCommand {
        use PutMessageStatus as S;
        if let Some(remark) = &result.remark {
            tracing::debug!(status = ?result.status, remark, "the store refused a send");
        }
        let (code, remark) = match result.status {
            S::PutOk => (response_code::SUCCESS, None),
            S::FlushDiskTimeout => (response_code::FLUSH_DISK_TIMEOUT, None),
            S::FlushSlaveTimeout => (response_code::FLUSH_SLAVE_TIMEOUT, None),
            S::SlaveNotAvailable => (response_code::SLAVE_NOT_AVAILABLE, None),
            S::CreateMappedFileFailed => (
                response_code::SYSTEM_ERROR,
                Some("create mapped file failed, server is busy or broken.".to_owned()),
            ),
            S::MessageIllegal | S::PropertiesSizeExceeded => (
                response_code::MESSAGE_ILLEGAL,
                Some(self.message_illegal_remark()),
            ),
            S::ServiceNotAvailable => (
                response_code::SERVICE_NOT_AVAILABLE,
                Some(format!(
                    "service not available now. It may be caused by one of the following \
                     reasons: the broker's disk is full, messages are put to the slave, \
                     message store has been shut down, etc. ({})",
                    result.remark.as_deref().unwrap_or("no detail")
                )),
            ),
            S::OsPageCacheBusy => (
                response_code::SYSTEM_ERROR,
                Some("[PC_SYNCHRONIZED]broker busy, start flow control for a while".to_owned()),
            ),
            S::UnknownError => (
                response_code::SYSTEM_ERROR,
                Some("UNKNOWN_ERROR".to_owned()),
            ),
        };
        if !result.status.is_stored() {
            return send_response(request, code, remark);
        }
        let append = result
            .append
            .expect("the store reports where every stored message landed");
        // The header carries the region and trace switch `send_response` adds to a refusal.
        RemotingCommand::response_to(request, code, remark).with_header(
            &SendMessageResponseHeader {
                msg_id: append.msg_id,
                queue_id,
                queue_offset: append.logics_offset,
                transaction_id: None,
                msg_region: Some(REGION_ID_DEFAULT.to_owned()),
                trace_on: Some(TRACE_ON_DEFAULT),
            },
        )
    }

    /// Java's remark for MESSAGE_ILLEGAL and PROPERTIES_SIZE_EXCEEDED.
    fn message_illegal_remark(&self) -> String {
        format!(
            "the message is illegal, maybe msg body or properties length not matched. msg body \
             length limit {}B, msg properties length limit 32KB.",
            self.context.store_config.max_message_size
        )
    }

    // -----------------------------------------------------------------------------------------
    // CONSUMER_SEND_MSG_BACK

    async fn consumer_send_msg_back(&self, request: &RemotingCommand) -> Outcome {
        let header: ConsumerSendMsgBackRequestHeader = request.decode_header()?;
        Ok(Some(match self.send_back(request, &header).await {
            Ok(()) => RemotingCommand::success_to(request),
            Err(refusal) => {
                tracing::debug!(
                    group = %header.group,
                    offset = header.offset,
                    code = refusal.code,
                    remark = %refusal.remark,
                    "send-back refused"
                );
                RemotingCommand::error_to(request, refusal.code, refusal.remark)
            }
        }))
    }

    /// `asyncConsumerSendMsgBack`: re-stores the message at `header.offset` in the group's
    /// retry topic, delayed by its retry count, or in its DLQ once retries are used up.
    async fn send_back(
        &self,
        request: &RemotingCommand,
        header: &ConsumerSendMsgBackRequestHeader,
    ) -> Result<(), ProcessError> {
        let group = header.group.as_str();
        let group_config = self.find_subscription_group(group).await?;
        let config = &self.context.config;
        if !perm::is_writeable(config.broker_permission) {
            return Err(ProcessError::new(
                response_code::NO_PERMISSION,
                format!(
                    "the broker[{}] sending message is forbidden",
                    config.broker_ip1
                ),
            ));
        }
        if group_config.retry_queue_nums <= 0 {
            // Java's answer for a group configured without retries: the message is dropped.
            return Ok(());
        }
        let retry_topic = system_topic::retry_topic(group);
        let topic_sys_flag = if header.unit_mode.unwrap_or(false) {
            TOPIC_SYS_FLAG_UNIT_SUB
        } else {
            0
        };
        let retry_config = self
            .create_topic_on_send_back(
                &retry_topic,
                group_config.retry_queue_nums,
                perm::READ | perm::WRITE,
                topic_sys_flag,
            )
            .await;
        if !perm::is_writeable(retry_config.perm) {
            return Err(ProcessError::new(
                response_code::NO_PERMISSION,
                format!("the topic[{retry_topic}] sending message is forbidden"),
            ));
        }
        let original = self
            .context
            .store
            .look_message_by_offset(header.offset)
            .and_then(|record| decode_record(&record, false, true).ok())
            .ok_or_else(|| {
                ProcessError::system(format!("look message by offset failed, {}", header.offset))
            })?;

        let mut properties = original.properties_map();
        properties
            .entry(property_key::RETRY_TOPIC.into())
            .or_insert_with(|| original.topic.clone());
        // Java sends back with waitStoreMsgOK=false: the consumer does not wait for the disk.
        properties.insert(property_key::WAIT.into(), "false".into());
        let max_reconsume_times = match header.max_reconsume_times {
            Some(times) if request.version >= VERSION_V3_4_9 => times,
            _ => group_config.retry_max_times,
        };
        let (topic, queue_id, delay_level) = if original.reconsume_times >= max_reconsume_times
            || header.delay_level < 0
        {
            let dlq = system_topic::dlq_topic(group);
            self.create_topic_on_send_back(&dlq, DLQ_NUMS_PER_GROUP, perm::READ | perm::WRITE, 0)
                .await;
            tracing::info!(
                topic = %dlq,
                reconsume_times = original.reconsume_times,
                max_reconsume_times,
                delay_level = header.delay_level,
                "send-back goes to the dead-letter queue"
            );
            (dlq, self.random_queue_id(DLQ_NUMS_PER_GROUP), 0)
        } else {
            let level = if header.delay_level == 0 {
                SEND_BACK_DELAY_LEVEL_BASE.saturating_add(original.reconsume_times)
            } else {
                header.delay_level
            };
            let queue_id = self.random_queue_id(group_config.retry_queue_nums);
            (retry_topic, queue_id, level)
        };
        properties.insert(property_key::DELAY.into(), delay_level.to_string());
        let origin_message_id = properties
            .get(property_key::ORIGIN_MESSAGE_ID)
            .filter(|id| !id.trim().is_empty())
            .cloned()
            .unwrap_or_else(|| original.msg_id.clone());
        properties.insert(property_key::ORIGIN_MESSAGE_ID.into(), origin_message_id);

        let message = MessageInner {
            topic,
            queue_id,
            flag: original.flag,
            body: original.body.clone().unwrap_or_default(),
            tags_code: tags_code(original.tags().unwrap_or("")),
            properties: encode_properties(&properties),
            sys_flag: original.sys_flag,
            born_timestamp: original.born_timestamp,
            born_host: original.born_host,
            store_host: original.store_host,
            store_timestamp: 0,
            reconsume_times: original.reconsume_times.saturating_add(1),
            prepared_transaction_offset: 0,
        };
        let result = self.context.store.put_message(message).await;
        if result.status == PutMessageStatus::PutOk {
            Ok(())
        } else {
            // Java answers every other status, stored or not, with its name.
            Err(ProcessError::system(put_status_name(result.status)))
        }
    }

    // -----------------------------------------------------------------------------------------
    // Shared helpers

    /// The group's settings, created (and persisted) when unknown and auto-creation is on.
    async fn find_subscription_group(
        &self,
        group: &str,
    ) -> Result<SubscriptionGroupConfig, ProcessError> {
        let manager = &self.context.subscription_group_manager;
        let Some((group_config, created)) = manager.find_subscription_group_config(group) else {
            return Err(ProcessError::new(
                response_code::SUBSCRIPTION_GROUP_NOT_EXIST,
                format!("subscription group not exist, {group} {FAQ_SUFFIX}"),
            ));
        };
        if created && let Err(error) = manager.persist().await {
            tracing::warn!(%error, group, "persisting the subscription groups failed");
        }
        Ok(group_config)
    }

    /// A retry or dead-letter topic, created (and persisted) on demand.
    async fn create_topic_on_send_back(
        &self,
        topic: &str,
        queue_nums: i32,
        perm_bits: i32,
        topic_sys_flag: i32,
    ) -> TopicConfig {
        let (topic_config, created) = self
            .context
            .topic_config_manager
            .create_topic_in_send_message_back_method(topic, queue_nums, perm_bits, topic_sys_flag);
        if created {
            self.persist_topics().await;
            self.context.topics_registered().await;
        }
        topic_config
    }

    /// Writes `topics.json` after a topic was created. A failure is logged, not answered: the
    /// topic exists in memory and the next successful persist writes it (as Java).
    async fn persist_topics(&self) {
        if let Err(error) = self.context.topic_config_manager.persist().await {
            tracing::warn!(%error, "persisting the topic configs failed");
        }
    }

    /// A uniformly random queue in `0..queue_nums` from the broker's seeded generator.
    fn random_queue_id(&self, queue_nums: i32) -> i32 {
        let bound = u64::try_from(queue_nums)
            .ok()
            .filter(|&bound| bound > 0)
            .expect("callers only pick among a positive number of queues");
        i32::try_from(self.context.env.rng.below(bound))
            .expect("a value below an i32 bound fits an i32")
    }
}

/// Answers a SYNC_FLUSH send once the group commit covering its records completes, as Java's
/// asynchronous put path does: `response` is the answer for a durable put, and becomes
/// FLUSH_DISK_TIMEOUT (with the same headers, the message being stored) when the sync does
/// not complete within `syncFlushTimeout`. The send worker that appended is not held
/// meanwhile, so one group commit covers every send appended during the previous sync.
async fn answer_when_durable(channel: Channel, mut response: RemotingCommand, flush: FlushWait) {
    if !flush.wait().await {
        response.code = response_code::FLUSH_DISK_TIMEOUT;
    }
    if let Err(error) = channel.send(&response).await {
        tracing::debug!(peer = %channel.peer_addr(), %error, "could not write a send response");
    }
}

/// A send response with the ext fields Java's `preSend` adds to every one.
fn send_response(request: &RemotingCommand, code: i32, remark: Option<String>) -> RemotingCommand {
    let mut response = RemotingCommand::response_to(request, code, remark);
    response
        .ext_fields
        .insert(property_key::MSG_REGION, REGION_ID_DEFAULT);
    response
        .ext_fields
        .insert(property_key::TRACE_ON, TRACE_ON_DEFAULT.to_string());
    response
}

/// Java's remark (`TopicValidator.validateTopic`) for a refused topic name.
fn java_topic_name_remark(error: &TopicNameError) -> &'static str {
    match error {
        TopicNameError::Blank => "The specified topic is blank.",
        TopicNameError::IllegalCharacters(_) => {
            "The specified topic contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
        }
        TopicNameError::TooLong => "The specified topic is longer than topic max length.",
    }
}

/// `TopicConfig.toString()`, as Java quotes it in the illegal-queue remark.
fn java_topic_config_string(config: &TopicConfig) -> String {
    format!(
        "TopicConfig [topicName={}, readQueueNums={}, writeQueueNums={}, perm={}, \
         topicFilterType={}, topicSysFlag={}, order={}]",
        config.topic_name,
        config.read_queue_nums,
        config.write_queue_nums,
        perm::to_display(config.perm),
        config.topic_filter_type.name(),
        config.topic_sys_flag,
        config.order
    )
}

/// A delay level as Java's `Integer.parseInt` reads it; absent or unparsable is 0.
fn parse_level<S: AsRef<str>>(value: Option<S>) -> i32 {
    value
        .and_then(|level| level.as_ref().parse().ok())
        .unwrap_or(0)
}

/// An inner message's properties followed by the batch's outer ones, with a separator
/// between them unless the inner ones already end with one (`MessageExtBatchEncoder`).
fn join_batch_properties(inner: &str, outer: &str) -> String {
    let mut joined = String::with_capacity(inner.len() + 1 + outer.len());
    joined.push_str(inner);
    if !inner.is_empty() && !outer.is_empty() && !inner.ends_with(PROPERTY_SEPARATOR) {
        joined.push(PROPERTY_SEPARATOR);
    }
    joined.push_str(outer);
    joined
}

/// The Java name of a put status (`PutMessageStatus.name()`), the remark of a failed
/// send-back.
fn put_status_name(status: PutMessageStatus) -> &'static str {
    use PutMessageStatus as S;
    match status {
        S::PutOk => "PUT_OK",
        S::FlushDiskTimeout => "FLUSH_DISK_TIMEOUT",
        S::FlushSlaveTimeout => "FLUSH_SLAVE_TIMEOUT",
        S::SlaveNotAvailable => "SLAVE_NOT_AVAILABLE",
        S::ServiceNotAvailable => "SERVICE_NOT_AVAILABLE",
        S::CreateMappedFileFailed => "CREATE_MAPEDFILE_FAILED",
        S::MessageIllegal => "MESSAGE_ILLEGAL",
        S::PropertiesSizeExceeded => "PROPERTIES_SIZE_EXCEEDED",
        S::OsPageCacheBusy => "OS_PAGECACHE_BUSY",
        S::UnknownError => "UNKNOWN_ERROR",
    }
}

#[cfg(test)]
mod tests;
