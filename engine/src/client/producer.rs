//! The default producer (Java's `DefaultMQProducer` and `DefaultMQProducerImpl`,
//! clients.md C9-C24): validates a message, finds the topic's publish queues, picks one per
//! attempt and sends through the shared [`ClientInstance`], retrying another broker after a
//! failure.
//!
//! Where it sits: on top of the client building blocks. The [`ClientInstance`] owns
//! connections and routes ([`ClientInstance::route_or_default`] fetches a topic's route, or
//! the `TBW102` template's for a topic the name server does not know yet); this producer
//! keeps one [`TopicPublishInfo`] per topic it sends to, handed over by the instance through
//! [`MqProducerInner::update_topic_publish_info`]; [`MqFaultStrategy`] picks the queue of
//! each attempt and remembers slow brokers; [`MqClientApi`] builds the request and maps the
//! answer.
//!
//! A send is prepared once (`Outgoing`): the `UNIQ_KEY` is stamped on the caller's message
//! if absent, a single body of at least `compress_msg_body_over_howmuch` bytes is
//! zlib-compressed, a batch is encoded item by item. Each attempt then only picks a queue and
//! a broker address. Java re-prepares on every attempt and restores the caller's body in a
//! `finally`; the bytes on the wire are the same.
//!
//! Retries (`sendDefaultImpl`, C14): a sync send makes up to `1 + retry_times_when_send_failed`
//! attempts within one `send_msg_timeout` budget, each on a queue chosen away from the last
//! attempt's broker; an error counts for a retry when [`ClientError::is_send_retriable`]
//! says so; a stored answer other than SEND_OK is retried only with
//! `retry_another_broker_when_not_store_ok`. Oneway sends, sends to a given queue and sends
//! through a selector (ordered messages, C16) make one attempt.
//!
//! Async sends (C10, C21): [`DefaultMqProducer::send_async`] and
//! [`send_with_callback`](DefaultMqProducer::send_with_callback) spawn a task per send and
//! return at once; at most `async_send_in_flight_max` run at once. The task makes up to
//! `1 + retry_times_when_send_async_failed` attempts within `send_msg_timeout` counted from
//! the call, retrying on another broker only an attempt that got no answer
//! ([`ClientError::is_async_send_retriable`]), as Java's `onExceptionImpl` does. Java's
//! retry resends the first attempt's request, queue id included, to the new broker; here a
//! retry sends to a queue of the new broker, so the result names the queue that stored the
//! message.
//!
//! A transactional producer ([`TransactionMqProducer`](super::transaction::TransactionMqProducer))
//! is this producer registered with a queue for the broker's check-backs.
//!
//! Every time comes from the injected clock and every random choice from the injected
//! seeded RNG; background sends run on tasks of the ambient runtime (tokio, or madsim's
//! simulated one).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Semaphore, oneshot};

use super::api::{ClientError, MqClientApi, SendResult, SendStatus};
use super::compression::BodyCompressor;
use super::config::ClientConfig;
use super::instance::{
    CLIENT_INNER_PRODUCER_GROUP, ClientInstance, ClientInstanceRegistry, ClientProcessorTable,
    HeartbeatOnly, MqProducerInner, ServiceState,
};
use super::latency::MqFaultStrategy;
use super::message_id::MessageClientIdSetter;
use super::publish_info::{SelectMessageQueueByHash, TopicPublishInfo};
use super::transaction::{CheckQueue, TransactionCheckRequest};
use crate::Env;
use crate::broker::topic_config::{TopicNameError, system_topic, validate_topic};
use crate::clock::SharedClock;
use crate::protocol::AUTO_CREATE_TOPIC;
use crate::protocol::heartbeat::MessageQueue;
use crate::protocol::route::TopicRouteData;
use crate::remoting::headers::SendMessageRequestHeader;
use crate::remoting::response_code;
use crate::rng::SharedRng;
use crate::store::message::{
    BatchItem, MESSAGE_SIZE_MAX_DEFAULT, encode_batch, encode_properties, property_key, sys_flag,
};

/// The group a producer may not use (`MixAll.DEFAULT_PRODUCER_GROUP`): Java reserves it.
pub const DEFAULT_PRODUCER_GROUP: &str = "DEFAULT_PRODUCER";

/// Longest legal group name (`Validators.CHARACTER_MAX_LENGTH`).
pub const GROUP_NAME_LENGTH_MAX: usize = 255;

/// Default of [`ProducerConfig::async_send_in_flight_max`]: the capacity of Java's async
/// sender queue (clients.md C10).
pub const ASYNC_SEND_IN_FLIGHT_MAX_DEFAULT: usize = 50_000;

/// Client-side error codes of Java's `ClientErrorCode`, carried by [`ProducerError`] so a
/// caller can branch the way a Java caller branches on `MQClientException.getResponseCode`.
pub mod client_error_code {
    /// `CONNECT_BROKER_EXCEPTION`: the last attempt could not connect.
    pub const CONNECT_BROKER_EXCEPTION: i32 = 10001;
    /// `ACCESS_BROKER_TIMEOUT`: the last attempt timed out.
    pub const ACCESS_BROKER_TIMEOUT: i32 = 10002;
    /// `BROKER_NOT_EXIST_EXCEPTION`: no address was known for the chosen broker.
    pub const BROKER_NOT_EXIST_EXCEPTION: i32 = 10003;
    /// `NO_NAME_SERVER_EXCEPTION`: no name server is configured.
    pub const NO_NAME_SERVER_EXCEPTION: i32 = 10004;
    /// `NOT_FOUND_TOPIC_EXCEPTION`: no route for the topic.
    pub const NOT_FOUND_TOPIC_EXCEPTION: i32 = 10005;
}

/// A message to send (Java's `Message`): topic, user flag, properties and body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The topic.
    pub topic: String,
    /// The user flag, stored as is.
    pub flag: i32,
    /// Properties (`TAGS`, `KEYS`, `UNIQ_KEY`, `DELAY`, user properties, ...).
    pub properties: BTreeMap<String, String>,
    /// The body.
    pub body: Bytes,
}

impl Message {
    /// A message of `body` to `topic`, with no flag and no properties.
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            body: body.into(),
            ..Self::default()
        }
    }

    /// The same message with property `key` set to `value`.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// The same message with tag `tags` (property `TAGS`).
    pub fn with_tags(self, tags: impl Into<String>) -> Self {
        self.with_property(property_key::TAGS, tags)
    }

    /// The same message with index keys `keys` (property `KEYS`, space-separated).
    pub fn with_keys(self, keys: impl Into<String>) -> Self {
        self.with_property(property_key::KEYS, keys)
    }

    /// The value of property `key`.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }

    /// The delay level (`DELAY`), 0 when absent or unreadable.
    pub fn delay_time_level(&self) -> i32 {
        self.property(property_key::DELAY)
            .and_then(|level| level.parse().ok())
            .unwrap_or(0)
    }
}

/// The producer's settings (`DefaultMQProducer`'s fields, clients.md C9).
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `producerGroup`.
    pub group: String,
    /// `createTopicKey`: the template topic a broker auto-creates unknown topics from.
    pub create_topic_key: String,
    /// `defaultTopicQueueNums`: queues per broker of an auto-created topic.
    pub default_topic_queue_nums: i32,
    /// `sendMsgTimeout`: the whole budget of one send, retries included.
    pub send_msg_timeout: Duration,
    /// `compressMsgBodyOverHowmuch`: single bodies of at least this many bytes are
    /// compressed.
    pub compress_msg_body_over_howmuch: usize,
    /// `retryTimesWhenSendFailed`: extra attempts of a sync send.
    pub retry_times_when_send_failed: u32,
    /// `retryTimesWhenSendAsyncFailed`: extra attempts of an async send that got no answer.
    pub retry_times_when_send_async_failed: u32,
    /// Async sends in flight at once; one more is refused with
    /// [`ProducerError::AsyncSendRejected`]. Java bounds the queue of its async sender
    /// executor at 50,000 tasks.
    pub async_send_in_flight_max: usize,
    /// `retryAnotherBrokerWhenNotStoreOK`: retry a stored answer other than SEND_OK.
    pub retry_another_broker_when_not_store_ok: bool,
    /// `maxMessageSize`: the largest body (or encoded batch) accepted, in bytes.
    pub max_message_size: usize,
    /// `sendLatencyFaultEnable`: keep away from slow and failed brokers.
    pub send_latency_fault_enable: bool,
    /// The client settings, shared with the client instance.
    pub client: ClientConfig,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            group: String::new(),
            create_topic_key: AUTO_CREATE_TOPIC.into(),
            default_topic_queue_nums: 4,
            send_msg_timeout: Duration::from_secs(3),
            compress_msg_body_over_howmuch: super::compression::COMPRESS_MSG_BODY_OVER_HOWMUCH,
            retry_times_when_send_failed: 2,
            retry_times_when_send_async_failed: 2,
            async_send_in_flight_max: ASYNC_SEND_IN_FLIGHT_MAX_DEFAULT,
            retry_another_broker_when_not_store_ok: false,
            max_message_size: MESSAGE_SIZE_MAX_DEFAULT,
            send_latency_fault_enable: false,
            client: ClientConfig::default(),
        }
    }
}

impl ProducerConfig {
    /// Java's defaults for group `group` with the name servers `namesrv_addr`.
    pub fn new(group: impl Into<String>, namesrv_addr: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            client: ClientConfig::with_namesrv_addr(namesrv_addr),
            ..Self::default()
        }
    }
}

/// Why a group name is refused (`Validators.checkGroup` and `checkConfig`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupNameError {
    /// Empty or blank. Set a group.
    #[error("the specified group is blank")]
    Blank,
    /// A character outside `[%|a-zA-Z0-9_-]`.
    #[error(
        "the specified group[{0}] contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
    )]
    IllegalCharacters(String),
    /// Longer than [`GROUP_NAME_LENGTH_MAX`].
    #[error("the specified group is longer than group max length 255")]
    TooLong,
    /// [`DEFAULT_PRODUCER_GROUP`], which Java reserves.
    #[error("producerGroup can not equal DEFAULT_PRODUCER, please specify another one")]
    Reserved,
}

/// Why a message is refused before anything is sent (`Validators.checkMessage`,
/// `MessageBatch.generateFromList`). Java raises these as `MQClientException` with code
/// MESSAGE_ILLEGAL (13) for body problems; the message must change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The topic name is not legal.
    #[error(transparent)]
    Topic(#[from] TopicNameError),
    /// The topic is the auto-create template or a system topic producers may not send to.
    #[error("sending message to topic[{0}] is forbidden")]
    TopicNotAllowed(String),
    /// The body is empty.
    #[error("the message body length is zero")]
    EmptyBody,
    /// The body (for a batch: the encoded batch) is larger than `max_message_size`.
    #[error("the message body size over max value, MAX: {max}, got {size}")]
    BodyTooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A batch without messages.
    #[error("a batch needs at least one message")]
    EmptyBatch,
    /// A batch whose messages go to different topics.
    #[error("the topic of the messages in one batch should be the same")]
    BatchTopicsDiffer,
    /// A batch message with a delay level.
    #[error("TimeDelayLevel is not supported for batching")]
    BatchDelay,
    /// A batch to a retry topic.
    #[error("retry group is not supported for batching")]
    BatchRetryTopic,
    /// A batch whose messages disagree on `WAIT` (waitStoreMsgOK).
    #[error("the waitStoreMsgOK of the messages in one batch should be the same")]
    BatchWaitDiffers,
    /// The message was sent to a queue of another topic.
    #[error("message's topic {message} not equal mq's topic {queue}")]
    QueueTopicDiffers {
        /// The message's topic.
        message: String,
        /// The queue's topic.
        queue: String,
    },
    /// The batch could not be encoded (an item's properties over 32,767 bytes).
    #[error("batch not encodable: {0}")]
    BatchEncoding(String),
}

/// Why a producer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// The producer is not running (not started, start failed, or shut down). Start it.
    #[error("the producer service state not OK, {0:?}")]
    NotRunning(ServiceState),
    /// The group name is refused; nothing was registered.
    #[error("invalid producer group: {0}")]
    InvalidGroup(#[from] GroupNameError),
    /// Another producer of this group is registered with the same client instance. Use
    /// another group or instance name.
    #[error("the producer group[{0}] has been created before, specify another name please")]
    GroupAlreadyCreated(String),
    /// The message is refused client-side; nothing was sent.
    #[error("invalid message: {0}")]
    InvalidMessage(#[from] MessageError),
    /// No name server address is configured.
    #[error("no name server address, please set it")]
    NoNameServer,
    /// No route was found for the topic, nor through the auto-create template. Create the
    /// topic, or enable auto-creation on a broker.
    #[error("no route info of this topic: {topic}")]
    NoRouteInfo {
        /// The topic.
        topic: String,
        /// What the last route lookup answered, if it failed.
        #[source]
        source: Option<ClientError>,
    },
    /// The send budget ran out before an attempt could start (Java's
    /// `RemotingTooMuchRequestException("... call timeout")`). Retry later or raise
    /// `send_msg_timeout`.
    #[error("{operation} call timeout")]
    CallTimeout {
        /// Which step found the budget spent.
        operation: &'static str,
    },
    /// Every attempt failed. `source` is the last attempt's error, `None` when no queue
    /// could be selected.
    #[error(
        "send [{attempts}] times, still failed, cost [{cost:?}], topic: {topic}, brokers sent: {brokers_sent:?}"
    )]
    SendFailed {
        /// Attempts made.
        attempts: usize,
        /// Time spent.
        cost: Duration,
        /// The topic.
        topic: String,
        /// The broker of each attempt, in order.
        brokers_sent: Vec<String>,
        /// The last attempt's error (boxed: it is the largest part of the error).
        #[source]
        source: Option<Box<ClientError>>,
    },
    /// A single-attempt send (to a given queue, through a selector, or a non-retriable
    /// broker answer) failed; the error says what happened.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A queue selector chose no queue, or an index outside the queue list.
    #[error("select message queue return null or an index out of range")]
    SelectorChoseNothing,
    /// `async_send_in_flight_max` async sends are already in flight (Java's "executor
    /// rejected"); nothing was sent. Wait for some to complete, then send again.
    #[error("async send rejected: {in_flight_max} sends already in flight")]
    AsyncSendRejected {
        /// The bound that was reached.
        in_flight_max: usize,
    },
    /// The background task of an async send was dropped before it reported, because the
    /// runtime it ran on shut down. Whether the message was stored is unknown.
    #[error("the async send was dropped before it completed")]
    AsyncSendLost,
}

impl ProducerError {
    /// The response code a Java caller would read from the exception
    /// (`MQClientException.getResponseCode`, clients.md C15): MESSAGE_ILLEGAL for a refused
    /// message; for a failed send the broker's code, or [`client_error_code`]'s connect,
    /// timeout or broker-not-exist code of the last attempt.
    pub fn response_code(&self) -> Option<i32> {
        match self {
            Self::InvalidMessage(_) => Some(response_code::MESSAGE_ILLEGAL),
            Self::NoNameServer => Some(client_error_code::NO_NAME_SERVER_EXCEPTION),
            Self::NoRouteInfo { .. } => Some(client_error_code::NOT_FOUND_TOPIC_EXCEPTION),
            Self::SendFailed { source, .. } => {
                source.as_deref().and_then(client_error_response_code)
            }
            Self::Client(error) => client_error_response_code(error),
            _ => None,
        }
    }
}

fn client_error_response_code(error: &ClientError) -> Option<i32> {
    match error {
        ClientError::Remoting(remoting) if remoting.is_connect() => {
            Some(client_error_code::CONNECT_BROKER_EXCEPTION)
        }
        ClientError::Remoting(remoting) if remoting.is_timeout() => {
            Some(client_error_code::ACCESS_BROKER_TIMEOUT)
        }
        ClientError::BrokerNotFound(_) => Some(client_error_code::BROKER_NOT_EXIST_EXCEPTION),
        other => other.response_code(),
    }
}

/// Checks a producer group (`checkConfig`): legal as [`check_group_name`] says, and not
/// [`DEFAULT_PRODUCER_GROUP`].
pub fn check_group(group: &str) -> Result<(), GroupNameError> {
    check_group_name(group)?;
    if group == DEFAULT_PRODUCER_GROUP {
        return Err(GroupNameError::Reserved);
    }
    Ok(())
}

/// Checks any group name, producer's or consumer's (`Validators.checkGroup`): not blank, only
/// `[%|a-zA-Z0-9_-]`, at most [`GROUP_NAME_LENGTH_MAX`] characters.
pub fn check_group_name(group: &str) -> Result<(), GroupNameError> {
    // Groups follow the topic character rule with a longer limit: a topic-length refusal
    // means the characters were fine.
    match validate_topic(group) {
        Ok(()) | Err(TopicNameError::TooLong) => {}
        Err(TopicNameError::Blank) => return Err(GroupNameError::Blank),
        Err(TopicNameError::IllegalCharacters(name)) => {
            return Err(GroupNameError::IllegalCharacters(name));
        }
    }
    if group.len() > GROUP_NAME_LENGTH_MAX {
        return Err(GroupNameError::TooLong);
    }
    Ok(())
}

/// Checks a topic a producer sends to (`Validators.checkTopic`): a legal name, neither the
/// auto-create template nor a system topic producers may not send to.
pub fn check_topic(topic: &str) -> Result<(), MessageError> {
    validate_topic(topic)?;
    if topic == AUTO_CREATE_TOPIC || system_topic::is_not_allowed_send(topic) {
        return Err(MessageError::TopicNotAllowed(topic.to_owned()));
    }
    Ok(())
}

/// Checks a message before it is sent (`Validators.checkMessage`): its topic, and a body
/// that is neither empty nor larger than `max_message_size`.
pub fn check_message(message: &Message, max_message_size: usize) -> Result<(), MessageError> {
    check_topic(&message.topic)?;
    check_body_size(message.body.len(), max_message_size)
}

fn check_body_size(size: usize, max: usize) -> Result<(), MessageError> {
    if size == 0 {
        return Err(MessageError::EmptyBody);
    }
    if size > max {
        return Err(MessageError::BodyTooLarge { size, max });
    }
    Ok(())
}

/// What one send puts on the wire, prepared once for all its attempts.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    topic: String,
    flag: i32,
    /// Encoded properties of the message (for a batch, of the batch).
    properties: String,
    sys_flag: i32,
    reconsume_times: i32,
    max_reconsume_times: Option<i32>,
    body: OutgoingBody,
}

#[derive(Debug, Clone)]
enum OutgoingBody {
    Single(Bytes),
    Batch(Vec<BatchItem>),
}

impl Outgoing {
    /// A single message (clients.md C18, C20): compressed if `compressor` says so, marked
    /// prepared when `TRAN_MSG` is `true`; for a retry topic, `RECONSUME_TIME` and
    /// `MAX_RECONSUME_TIMES` move from the properties to the header.
    pub(crate) fn single(message: &Message, compressor: &BodyCompressor) -> Self {
        let mut sys_flag = 0;
        let body = match compressor.try_to_compress(&message.body) {
            Some(compressed) => {
                sys_flag |= compressed.sys_flag;
                Bytes::from(compressed.body)
            }
            None => message.body.clone(),
        };
        if message
            .property(property_key::TRAN_MSG)
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
        {
            sys_flag |= sys_flag::TRANSACTION_PREPARED_TYPE;
        }
        let (mut reconsume_times, mut max_reconsume_times) = (0, None);
        // Only a retry topic's properties change on the way: the others are encoded as they are.
        let properties = if message.topic.starts_with(system_topic::RETRY_GROUP_PREFIX) {
            let mut properties = message.properties.clone();
            if let Some(value) = properties.remove(property_key::RECONSUME_TIME) {
                reconsume_times = value.parse().unwrap_or(0);
            }
            if let Some(value) = properties.remove(property_key::MAX_RECONSUME_TIMES) {
                max_reconsume_times = value.parse().ok();
            }
            encode_properties(&properties)
        } else {
            encode_properties(&message.properties)
        };
        Self {
            topic: message.topic.clone(),
            flag: message.flag,
            properties,
            sys_flag,
            reconsume_times,
            max_reconsume_times,
            body: OutgoingBody::Single(body),
        }
    }

    /// A batch (`MessageBatch.generateFromList` and `DefaultMQProducer.batch`): one topic,
    /// no delay, no retry topic, one `WAIT`; every item checked and carrying its own
    /// properties; the encoded batch no larger than `max_message_size`. Never compressed.
    pub(crate) fn batch(
        messages: &[Message],
        max_message_size: usize,
    ) -> Result<Self, MessageError> {
        let first = messages.first().ok_or(MessageError::EmptyBatch)?;
        let wait = first.property(property_key::WAIT);
        for message in messages {
            if message.delay_time_level() > 0 {
                return Err(MessageError::BatchDelay);
            }
            if message.topic.starts_with(system_topic::RETRY_GROUP_PREFIX) {
                return Err(MessageError::BatchRetryTopic);
            }
            if message.topic != first.topic {
                return Err(MessageError::BatchTopicsDiffer);
            }
            if message.property(property_key::WAIT) != wait {
                return Err(MessageError::BatchWaitDiffers);
            }
            check_message(message, max_message_size)?;
        }
        let items: Vec<BatchItem> = messages
            .iter()
            .map(|message| BatchItem {
                flag: message.flag,
                body: message.body.clone(),
                properties: encode_properties(&message.properties),
            })
            .collect();
        let encoded_size = encode_batch(&items)
            .map_err(|error| MessageError::BatchEncoding(error.to_string()))?
            .len();
        check_body_size(encoded_size, max_message_size)?;
        let mut properties = BTreeMap::new();
        if let Some(wait) = wait {
            properties.insert(property_key::WAIT.to_owned(), wait.to_owned());
        }
        Ok(Self {
            topic: first.topic.clone(),
            flag: 0,
            properties: encode_properties(&properties),
            sys_flag: 0,
            reconsume_times: 0,
            max_reconsume_times: None,
            body: OutgoingBody::Batch(items),
        })
    }
}

/// How a send waits for the broker (`CommunicationMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendMode {
    /// Wait for the answer; retried after any retriable failure, and after a stored answer
    /// other than SEND_OK with `retry_another_broker_when_not_store_ok` (C12, C14).
    Sync,
    /// Wait for the answer on a background task; retried only when no answer came (C21).
    Async,
    /// Write and return; one attempt.
    Oneway,
}

/// The producer's per-topic publish info, shared with the client instance
/// (`topicPublishInfoTable`).
#[derive(Debug, Default)]
struct PublishInfoTable {
    topics: Mutex<BTreeMap<String, Arc<TopicPublishInfo>>>,
}

impl PublishInfoTable {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<TopicPublishInfo>>> {
        // Entries are replaced whole, so a poisoned table is still consistent.
        self.topics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, topic: &str) -> Option<Arc<TopicPublishInfo>> {
        self.lock().get(topic).cloned()
    }

    fn insert_if_absent(&self, topic: &str) {
        self.lock()
            .entry(topic.to_owned())
            .or_insert_with(|| Arc::new(TopicPublishInfo::empty(topic)));
    }
}

impl MqProducerInner for PublishInfoTable {
    fn publish_topics(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn is_publish_topic_need_update(&self, topic: &str) -> bool {
        self.get(topic).is_none_or(|info| !info.ok())
    }

    fn update_topic_publish_info(&self, topic: &str, route: &TopicRouteData) {
        match TopicPublishInfo::from_route(topic, route) {
            // Java only updates topics already in the table, which is every topic the
            // producer sends to (they are put there before the first lookup).
            Ok(info) => {
                if let Some(entry) = self.lock().get_mut(topic) {
                    *entry = Arc::new(info);
                }
            }
            Err(error) => tracing::warn!(topic, %error, "route not usable for publishing"),
        }
    }
}

/// The retry decisions of the default send, independent of the network: which queue each
/// attempt uses, what counts as a retriable outcome, when the budget is spent.
#[derive(Debug)]
pub(crate) struct RetryPolicy {
    pub(crate) clock: SharedClock,
    pub(crate) rng: SharedRng,
    pub(crate) fault_strategy: MqFaultStrategy,
    pub(crate) retry_times_when_send_failed: u32,
    pub(crate) retry_times_when_send_async_failed: u32,
    pub(crate) retry_another_broker_when_not_store_ok: bool,
}

impl RetryPolicy {
    /// `sendDefaultImpl`'s loop (clients.md C14, C15), with the async retries Java makes in
    /// its RPC layer (`onExceptionImpl`, C21) folded in: up to
    /// `1 + retry_times_when_send_failed` attempts for a sync send, up to
    /// `1 + retry_times_when_send_async_failed` for an async one, one for a oneway send, all
    /// within `timeout` counted from `begin_first`. Each retry picks a queue away from the
    /// last attempt's broker. `attempt(queue, remaining)` makes one attempt and answers
    /// `None` for a oneway send.
    pub(crate) async fn send<F, Fut>(
        &self,
        info: &TopicPublishInfo,
        mode: SendMode,
        timeout: Duration,
        begin_first: crate::clock::Instant,
        mut attempt: F,
    ) -> Result<Option<SendResult>, ProducerError>
    where
        F: FnMut(MessageQueue, Duration) -> Fut,
        Fut: Future<Output = Result<Option<SendResult>, ClientError>>,
    {
        let times_total = match mode {
            SendMode::Sync => 1 + self.retry_times_when_send_failed as usize,
            SendMode::Async => 1 + self.retry_times_when_send_async_failed as usize,
            SendMode::Oneway => 1,
        };
        let mut brokers_sent: Vec<String> = Vec::with_capacity(times_total);
        let mut last_result: Option<SendResult> = None;
        let mut last_error: Option<ClientError> = None;
        let mut call_timeout = false;
        for _ in 0..times_total {
            let last_broker = brokers_sent.last().map(String::as_str);
            // The attempt's clock starts with the queue's selection: selecting takes no time
            // worth a second reading of the clock.
            let begin = self.clock.instant();
            let Some(queue) =
                self.fault_strategy
                    .select_one_message_queue(info, last_broker, begin, &self.rng)
            else {
                break;
            };
            let broker_name = queue.broker_name.clone();
            let spent = begin.saturating_duration_since(begin_first);
            if timeout < spent {
                call_timeout = true;
                break;
            }
            let outcome = attempt(queue, timeout - spent).await;
            let end = self.clock.instant();
            let latency = end.saturating_duration_since(begin);
            match outcome {
                Ok(result) => {
                    self.fault_strategy
                        .update_fault_item(&broker_name, latency, false, end);
                    match result {
                        Some(result)
                            if mode == SendMode::Sync
                                && result.status != SendStatus::SendOk
                                && self.retry_another_broker_when_not_store_ok =>
                        {
                            last_result = Some(result);
                        }
                        result => return Ok(result),
                    }
                }
                Err(error) => {
                    self.fault_strategy
                        .update_fault_item(&broker_name, latency, true, end);
                    tracing::warn!(broker = %broker_name, %error, ?mode, "send failed");
                    let retriable = match mode {
                        SendMode::Async => error.is_async_send_retriable(),
                        SendMode::Sync | SendMode::Oneway => error.is_send_retriable(),
                    };
                    if !retriable {
                        return match last_result {
                            Some(result) => Ok(Some(result)),
                            None => Err(ProducerError::Client(error)),
                        };
                    }
                    last_error = Some(error);
                }
            }
            brokers_sent.push(broker_name);
        }
        if let Some(result) = last_result {
            return Ok(Some(result));
        }
        if call_timeout {
            return Err(ProducerError::CallTimeout {
                operation: "sendDefaultImpl",
            });
        }
        Err(ProducerError::SendFailed {
            attempts: brokers_sent.len(),
            cost: self.clock.instant().saturating_duration_since(begin_first),
            topic: info.topic().to_owned(),
            brokers_sent,
            source: last_error.map(Box::new),
        })
    }
}

/// What a producer registers with its client instance: its publish table, through which the
/// instance hands over routes, and for a transactional producer the queue its broker
/// check-backs go to.
struct ProducerMember {
    publish_infos: Arc<PublishInfoTable>,
    transaction_checks: Option<Arc<CheckQueue>>,
}

impl MqProducerInner for ProducerMember {
    fn publish_topics(&self) -> Vec<String> {
        self.publish_infos.publish_topics()
    }

    fn is_publish_topic_need_update(&self, topic: &str) -> bool {
        self.publish_infos.is_publish_topic_need_update(topic)
    }

    fn update_topic_publish_info(&self, topic: &str, route: &TopicRouteData) {
        self.publish_infos.update_topic_publish_info(topic, route);
    }

    fn check_transaction_state(&self, api: &MqClientApi, request: TransactionCheckRequest) {
        match &self.transaction_checks {
            Some(checks) => checks.submit(api, request),
            // A producer without a listener answers as any non-transactional member does.
            None => HeartbeatOnly.check_transaction_state(api, request),
        }
    }
}

/// A send running in the background ([`DefaultMqProducer::send_async`]): a future of its
/// outcome. Dropping it does not cancel the send.
#[derive(Debug)]
#[must_use = "the outcome of the send is only known by awaiting it"]
pub struct SendFuture {
    outcome: oneshot::Receiver<Result<SendResult, ProducerError>>,
}

impl Future for SendFuture {
    type Output = Result<SendResult, ProducerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.outcome)
            .poll(cx)
            .map(|outcome| outcome.unwrap_or(Err(ProducerError::AsyncSendLost)))
    }
}

/// The default producer. See the module docs.
#[derive(Debug)]
pub struct DefaultMqProducer {
    core: Arc<ProducerCore>,
    id_setter: Arc<MessageClientIdSetter>,
}

/// The part of the producer that background sends share with it.
#[derive(Debug)]
struct ProducerCore {
    config: ProducerConfig,
    env: Env,
    registry: Arc<ClientInstanceRegistry>,
    publish_infos: Arc<PublishInfoTable>,
    retry: RetryPolicy,
    compressor: BodyCompressor,
    state: Mutex<(ServiceState, Option<Arc<ClientInstance>>)>,
    /// One permit per async send in flight (`async_send_in_flight_max`).
    async_sends: Arc<Semaphore>,
}

impl DefaultMqProducer {
    /// A producer with `config` that gets its client instance from `registry` and runs on
    /// `env`. Message ids are made from the client IP and values drawn from `env`'s RNG in
    /// place of Java's process id and class-loader hash; use
    /// [`with_id_setter`](Self::with_id_setter) to share one process-wide generator.
    pub fn new(env: &Env, registry: Arc<ClientInstanceRegistry>, config: ProducerConfig) -> Self {
        let ip: IpAddr = config
            .client
            .client_ip
            .parse()
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let id_setter =
            MessageClientIdSetter::new(ip, env.rng.next_u64() as u32, env.rng.next_u64() as i32);
        let compressor = BodyCompressor::new(
            config.compress_msg_body_over_howmuch,
            super::compression::COMPRESS_LEVEL,
        )
        .expect("COMPRESS_LEVEL is a valid zlib level");
        let core = ProducerCore {
            retry: RetryPolicy {
                clock: env.clock.clone(),
                rng: Arc::new(env.rng.fork()),
                fault_strategy: MqFaultStrategy::new(config.send_latency_fault_enable),
                retry_times_when_send_failed: config.retry_times_when_send_failed,
                retry_times_when_send_async_failed: config.retry_times_when_send_async_failed,
                retry_another_broker_when_not_store_ok: config
                    .retry_another_broker_when_not_store_ok,
            },
            env: env.clone(),
            registry,
            publish_infos: Arc::default(),
            compressor,
            state: Mutex::new((ServiceState::CreateJust, None)),
            async_sends: Arc::new(Semaphore::new(config.async_send_in_flight_max)),
            config,
        };
        Self {
            core: Arc::new(core),
            id_setter: Arc::new(id_setter),
        }
    }

    /// The same producer stamping `UNIQ_KEY`s with `id_setter`.
    pub fn with_id_setter(mut self, id_setter: Arc<MessageClientIdSetter>) -> Self {
        self.id_setter = id_setter;
        self
    }

    /// The producer's settings.
    pub fn config(&self) -> &ProducerConfig {
        &self.core.config
    }

    /// Where the producer is in its life.
    pub fn state(&self) -> ServiceState {
        self.core.lock_state().0
    }

    /// The client instance, while running.
    pub fn instance(&self) -> Option<Arc<ClientInstance>> {
        self.core.lock_state().1.clone()
    }

    /// Starts the producer (`start`, clients.md C11): checks the group, registers it with
    /// the client instance of its config, starts the instance and sends a heartbeat to every
    /// broker it knows. Only a new producer can start; a failed start leaves it
    /// `CreateJust` (Java's START_FAILED has no counterpart in [`ServiceState`]).
    pub async fn start(&self) -> Result<(), ProducerError> {
        self.start_member(None).await
    }

    /// [`start`](Self::start), registering `transaction_checks` as the queue of the
    /// broker's transaction check-backs for this group.
    pub(crate) async fn start_member(
        &self,
        transaction_checks: Option<Arc<CheckQueue>>,
    ) -> Result<(), ProducerError> {
        let core = &self.core;
        let instance = {
            let mut state = core.lock_state();
            if state.0 != ServiceState::CreateJust {
                return Err(ProducerError::NotRunning(state.0));
            }
            let group = core.config.group.as_str();
            if group != CLIENT_INNER_PRODUCER_GROUP {
                check_group(group)?;
            }
            let instance = core.registry.get_or_create(
                &core.env,
                &core.config.client,
                ClientProcessorTable::new(),
            );
            let member = ProducerMember {
                publish_infos: core.publish_infos.clone(),
                transaction_checks,
            };
            if !instance.register_producer(group, Arc::new(member)) {
                return Err(ProducerError::GroupAlreadyCreated(group.to_owned()));
            }
            core.publish_infos
                .insert_if_absent(&core.config.create_topic_key);
            instance.start();
            *state = (ServiceState::Running, Some(instance.clone()));
            instance
        };
        instance.send_heartbeat_to_all_brokers().await;
        tracing::info!(group = %core.config.group, client_id = instance.client_id(), "producer started");
        Ok(())
    }

    /// Stops the producer (`shutdown`): unregisters its group from the client instance and
    /// every broker; when no producer or consumer is left on the instance, shuts the instance
    /// down and removes it from the registry. Async sends already in flight are not waited
    /// for; each still reports its outcome.
    pub async fn shutdown(&self) {
        let core = &self.core;
        let instance = {
            let mut state = core.lock_state();
            if state.0 != ServiceState::Running {
                return;
            }
            let instance = state.1.take();
            state.0 = ServiceState::ShutdownAlready;
            instance
        };
        let Some(instance) = instance else { return };
        instance.unregister_producer(&core.config.group).await;
        core.registry.release_if_unused(&instance).await;
        tracing::info!(group = %core.config.group, "producer shut down");
    }

    /// Sends `message` and waits for the broker, retrying another broker after a retriable
    /// failure (`send(msg)`, clients.md C14). Stamps `UNIQ_KEY` on `message` if it has none.
    pub async fn send(&self, message: &mut Message) -> Result<SendResult, ProducerError> {
        let outgoing = self.prepare(message)?;
        self.core
            .send_default(outgoing, SendMode::Sync, self.core.env.clock.instant())
            .await?
            .ok_or(ProducerError::CallTimeout {
                operation: "sendDefaultImpl",
            })
    }

    /// Sends `message` in the background and returns at once (`send(msg, callback)`,
    /// clients.md C10, C21): the returned [`SendFuture`] resolves to the outcome. The send
    /// runs on a spawned task whether or not the future is polled; its budget,
    /// `send_msg_timeout`, counts from this call. A send that gets no answer (no connection,
    /// a failed write, a timeout) is retried up to `retry_times_when_send_async_failed` times
    /// on a queue of another broker; a broker's refusal or a stored answer other than
    /// SEND_OK is final. `UNIQ_KEY` is stamped on `message` before this returns; everything
    /// else — validation, route lookup — happens in the background and fails the future.
    ///
    /// Fails at once, sending nothing, only when `async_send_in_flight_max` sends are
    /// already in flight ([`ProducerError::AsyncSendRejected`]: back off and retry).
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use ferrocket_engine::Env;
    /// # use ferrocket_engine::client::instance::ClientInstanceRegistry;
    /// # use ferrocket_engine::client::producer::{DefaultMqProducer, Message, ProducerConfig};
    /// # async fn example(env: Env) -> Result<(), Box<dyn std::error::Error>> {
    /// let config = ProducerConfig::new("my_producer_group", "127.0.0.1:9876");
    /// let producer = DefaultMqProducer::new(&env, Arc::new(ClientInstanceRegistry::new()), config);
    /// producer.start().await?;
    /// let mut pending = Vec::new();
    /// for i in 0..100 {
    ///     let mut message = Message::new("TopicTest", format!("hello {i}"));
    ///     pending.push(producer.send_async(&mut message)?);
    /// }
    /// for sent in pending {
    ///     println!("{:?}", sent.await?.status);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn send_async(&self, message: &mut Message) -> Result<SendFuture, ProducerError> {
        let (sender, outcome) = oneshot::channel();
        self.send_with_callback(message, move |result| {
            // The caller may have dropped the future: the outcome is then unwanted.
            let _ = sender.send(result);
        })?;
        Ok(SendFuture { outcome })
    }

    /// [`send_async`](Self::send_async) with a callback in place of a future (Java's
    /// `SendCallback`): `callback` gets the outcome exactly once, on the background task,
    /// when this returns `Ok` (unless the runtime shuts down first, dropping the task); it is
    /// dropped uncalled when this returns `Err`. It should not block: hand long work to
    /// another task.
    ///
    /// ```no_run
    /// # use ferrocket_engine::client::producer::{DefaultMqProducer, Message};
    /// # fn example(producer: &DefaultMqProducer) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut message = Message::new("TopicTest", "hello").with_tags("TagA");
    /// producer.send_with_callback(&mut message, |outcome| match outcome {
    ///     Ok(sent) => println!("stored at {:?} offset {}", sent.queue, sent.queue_offset),
    ///     Err(error) => eprintln!("send failed: {error}"),
    /// })?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn send_with_callback<F>(
        &self,
        message: &mut Message,
        callback: F,
    ) -> Result<(), ProducerError>
    where
        F: FnOnce(Result<SendResult, ProducerError>) + Send + 'static,
    {
        let begin = self.core.env.clock.instant();
        let permit = self
            .core
            .async_sends
            .clone()
            .try_acquire_owned()
            .map_err(|_| ProducerError::AsyncSendRejected {
                in_flight_max: self.core.config.async_send_in_flight_max,
            })?;
        self.stamp_uniq_key(message);
        let message = message.clone();
        let core = self.core.clone();
        tokio::spawn(async move {
            let outcome = core.send_async_in_background(&message, begin).await;
            drop(permit);
            callback(outcome);
        });
        Ok(())
    }

    /// Sends `message` without waiting for an answer (`sendOneway`): one attempt; `Ok` once
    /// the request is written.
    pub async fn send_oneway(&self, message: &mut Message) -> Result<(), ProducerError> {
        let outgoing = self.prepare(message)?;
        self.core
            .send_default(outgoing, SendMode::Oneway, self.core.env.clock.instant())
            .await?;
        Ok(())
    }

    /// Sends `messages` as one batch (`send(Collection<Message>)`): one topic, no delay
    /// level, no retry topic; each message gets a `UNIQ_KEY` if it has none; retried like
    /// [`send`](Self::send). The result's `msg_id` joins the items' ids with commas.
    pub async fn send_batch(&self, messages: &mut [Message]) -> Result<SendResult, ProducerError> {
        self.core.running_instance()?;
        for message in messages.iter_mut() {
            self.stamp_uniq_key(message);
        }
        let outgoing = Outgoing::batch(messages, self.core.config.max_message_size)?;
        self.core
            .send_default(outgoing, SendMode::Sync, self.core.env.clock.instant())
            .await?
            .ok_or(ProducerError::CallTimeout {
                operation: "sendDefaultImpl",
            })
    }

    /// Sends `message` to `queue` and waits (`send(msg, mq)`): one attempt, no other broker.
    pub async fn send_to_queue(
        &self,
        message: &mut Message,
        queue: &MessageQueue,
    ) -> Result<SendResult, ProducerError> {
        let begin = self.core.env.clock.instant();
        let outgoing = self.prepare(message)?;
        if message.topic != queue.topic {
            return Err(MessageError::QueueTopicDiffers {
                message: message.topic.clone(),
                queue: queue.topic.clone(),
            }
            .into());
        }
        self.core.send_once(&outgoing, queue, begin).await
    }

    /// Sends `message` to the queue `select` picks from the topic's publish queues, and
    /// waits (`send(msg, selector, arg)`, clients.md C16): the path of ordered messages, so
    /// there is no retry on another broker. `select` answers an index into the queue list.
    pub async fn send_with_selector<S>(
        &self,
        message: &mut Message,
        select: S,
    ) -> Result<SendResult, ProducerError>
    where
        S: FnOnce(&[MessageQueue], &Message) -> Option<usize>,
    {
        let begin = self.core.env.clock.instant();
        let outgoing = self.prepare(message)?;
        let info = self.core.publish_info(&message.topic).await?;
        let queues = info.message_queue_list();
        let queue = select(queues, message)
            .and_then(|index| queues.get(index))
            .ok_or(ProducerError::SelectorChoseNothing)?
            .clone();
        self.core.send_once(&outgoing, &queue, begin).await
    }

    /// Sends `message` to the queue [`SelectMessageQueueByHash`] picks for `key`: every
    /// message with the same key lands on the same queue while the route is unchanged.
    pub async fn send_ordered_by_key(
        &self,
        message: &mut Message,
        key: &str,
    ) -> Result<SendResult, ProducerError> {
        self.send_with_selector(message, |queues, _| {
            let chosen = SelectMessageQueueByHash.select(queues, key)?;
            queues.iter().position(|queue| queue == chosen)
        })
        .await
    }

    /// Validates `message`, stamps its `UNIQ_KEY` and prepares its wire form.
    fn prepare(&self, message: &mut Message) -> Result<Outgoing, ProducerError> {
        self.core.running_instance()?;
        check_message(message, self.core.config.max_message_size)?;
        self.stamp_uniq_key(message);
        Ok(Outgoing::single(message, &self.core.compressor))
    }

    /// `MessageClientIDSetter.setUniqID`: a fresh id unless the message has one.
    fn stamp_uniq_key(&self, message: &mut Message) {
        if message.property(property_key::UNIQ_KEY).is_none() {
            let id = self.id_setter.create_uniq_id(self.core.env.clock.wall_ms());
            message
                .properties
                .insert(property_key::UNIQ_KEY.to_owned(), id);
        }
    }
}

impl ProducerCore {
    fn lock_state(&self) -> MutexGuard<'_, (ServiceState, Option<Arc<ClientInstance>>)> {
        // The state is replaced whole, so a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn running_instance(&self) -> Result<Arc<ClientInstance>, ProducerError> {
        match &*self.lock_state() {
            (ServiceState::Running, Some(instance)) => Ok(instance.clone()),
            (state, _) => Err(ProducerError::NotRunning(*state)),
        }
    }

    /// The body of an async send (the task Java's `send(msg, callback)` submits): the
    /// budget left since `begin`, then the default send in async mode.
    async fn send_async_in_background(
        &self,
        message: &Message,
        begin: crate::clock::Instant,
    ) -> Result<SendResult, ProducerError> {
        let timeout = self.config.send_msg_timeout;
        let spent = self.env.clock.instant().saturating_duration_since(begin);
        if timeout <= spent {
            return Err(ProducerError::CallTimeout {
                operation: "DEFAULT ASYNC send",
            });
        }
        self.running_instance()?;
        check_message(message, self.config.max_message_size)?;
        let outgoing = Outgoing::single(message, &self.compressor);
        self.send_default(outgoing, SendMode::Async, begin)
            .await?
            .ok_or(ProducerError::CallTimeout {
                operation: "sendDefaultImpl",
            })
    }

    /// `tryToFindTopicPublishInfo`: the cached publish info when it has queues, else the one
    /// built from the route the instance finds (the topic's own, or `TBW102`'s).
    async fn publish_info(&self, topic: &str) -> Result<Arc<TopicPublishInfo>, ProducerError> {
        if let Some(info) = self.publish_infos.get(topic).filter(|info| info.ok()) {
            return Ok(info);
        }
        let instance = self.running_instance()?;
        if instance.config().namesrv_addrs().is_empty() {
            return Err(ProducerError::NoNameServer);
        }
        self.publish_infos.insert_if_absent(topic);
        let route = instance
            .route_or_default(
                topic,
                &self.config.create_topic_key,
                self.config.default_topic_queue_nums,
            )
            .await
            .map_err(|source| ProducerError::NoRouteInfo {
                topic: topic.to_owned(),
                source: Some(source),
            })?;
        // The instance hands over only routes it installs; a route another member installed
        // before this producer asked is taken from the answer.
        if self.publish_infos.is_publish_topic_need_update(topic) {
            self.publish_infos.update_topic_publish_info(topic, &route);
        }
        self.publish_infos
            .get(topic)
            .filter(|info| info.ok())
            .ok_or_else(|| ProducerError::NoRouteInfo {
                topic: topic.to_owned(),
                source: None,
            })
    }

    /// The default send (`sendDefaultImpl`) of `outgoing` in `mode`, within
    /// `send_msg_timeout` counted from `begin` (route lookup included).
    async fn send_default(
        &self,
        outgoing: Outgoing,
        mode: SendMode,
        begin: crate::clock::Instant,
    ) -> Result<Option<SendResult>, ProducerError> {
        let instance = self.running_instance()?;
        let info = self.publish_info(&outgoing.topic).await?;
        let (outgoing, instance) = (&outgoing, &instance);
        let timeout = self.config.send_msg_timeout;
        self.retry
            .send(&info, mode, timeout, begin, |queue, remaining| async move {
                self.send_kernel(instance, outgoing, &queue, mode, remaining)
                    .await
            })
            .await
    }

    /// A single attempt within the budget started at `begin` (sends to a given queue and
    /// through a selector).
    async fn send_once(
        &self,
        outgoing: &Outgoing,
        queue: &MessageQueue,
        begin: crate::clock::Instant,
    ) -> Result<SendResult, ProducerError> {
        let timeout = self.config.send_msg_timeout;
        let spent = self.env.clock.instant().saturating_duration_since(begin);
        if timeout < spent {
            return Err(ProducerError::CallTimeout {
                operation: "sendSelectImpl",
            });
        }
        let instance = self.running_instance()?;
        self.send_kernel(&instance, outgoing, queue, SendMode::Sync, timeout - spent)
            .await?
            .ok_or(ProducerError::CallTimeout {
                operation: "sendKernelImpl",
            })
    }

    /// `sendKernelImpl` (clients.md C17, C20, C21): finds the master of the queue's broker
    /// (refreshing the route once if unknown), builds the header and sends within what is
    /// left of `timeout` (a spent budget makes the remoting layer time out at once). An
    /// async attempt waits for its answer here: it runs on its own task already.
    async fn send_kernel(
        &self,
        instance: &ClientInstance,
        outgoing: &Outgoing,
        queue: &MessageQueue,
        mode: SendMode,
        timeout: Duration,
    ) -> Result<Option<SendResult>, ClientError> {
        // Only a route refresh spends time worth counting against `timeout` before the send.
        let (addr, spent) = match instance.find_broker_address_in_publish(&queue.broker_name) {
            Some(addr) => (Some(addr), Duration::ZERO),
            None => {
                let begin = self.env.clock.instant();
                // A failed refresh leaves the address unknown, reported below.
                let _ = self.publish_info(&queue.topic).await;
                let addr = instance.find_broker_address_in_publish(&queue.broker_name);
                (
                    addr,
                    self.env.clock.instant().saturating_duration_since(begin),
                )
            }
        };
        let addr = addr.ok_or_else(|| ClientError::BrokerNotFound(queue.broker_name.clone()))?;
        let header = SendMessageRequestHeader {
            producer_group: self.config.group.clone(),
            topic: outgoing.topic.clone(),
            default_topic: self.config.create_topic_key.clone(),
            default_topic_queue_nums: self.config.default_topic_queue_nums,
            queue_id: queue.queue_id,
            sys_flag: outgoing.sys_flag,
            born_timestamp: self.env.clock.wall_ms(),
            flag: outgoing.flag,
            properties: Some(outgoing.properties.clone()),
            reconsume_times: Some(outgoing.reconsume_times),
            unit_mode: Some(false),
            batch: Some(matches!(outgoing.body, OutgoingBody::Batch(_))),
            max_reconsume_times: outgoing.max_reconsume_times,
            broker_name: None,
        };
        let remaining = timeout.saturating_sub(spent);
        let api = instance.api();
        match (&outgoing.body, mode) {
            (OutgoingBody::Single(body), SendMode::Sync | SendMode::Async) => api
                .send_message(&addr, &queue.broker_name, header, body.clone(), remaining)
                .await
                .map(Some),
            (OutgoingBody::Single(body), SendMode::Oneway) => api
                .send_message_oneway(&addr, header, body.clone(), remaining)
                .await
                .map(|()| None),
            (OutgoingBody::Batch(items), _) => api
                .send_batch_message(&addr, &queue.broker_name, header, items, remaining)
                .await
                .map(Some),
        }
    }
}

#[cfg(test)]
mod tests;
