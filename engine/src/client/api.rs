//! The typed remote API of the client (Java's `MQClientAPIImpl`): one async method per
//! request the producer and the consumers send, each turning the answer into a typed result
//! or a [`ClientError`].
//!
//! Where it sits: above the [`RemotingClient`] (connections, name-server selection, timeouts)
//! and below the [`ClientInstance`](super::instance::ClientInstance), producers and consumers,
//! which decide *where* to send (which broker, which queue) and *when* to retry. This layer
//! decides nothing: it builds the request exactly as the Java client does, sends it once, and
//! maps the response code the way Java's `processSendResponse`, `processPullResponse` and
//! friends map it. Error codes a caller must branch on get their own result values instead of
//! an error: TOPIC_NOT_EXIST of a route lookup ([`ClientError::TopicNotExist`]), the four
//! "stored" codes of a send ([`SendStatus`]), the four codes of a pull ([`PullStatus`]) and
//! QUERY_NOT_FOUND of an offset query (`Ok(None)`).
//!
//! Invariants: every request carries the configured language code; a response is only
//! decoded after its code was checked, so a refusal is never misread as a malformed answer;
//! bytes from a peer never panic — they become [`ClientError::Malformed`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::compression;

use crate::protocol::heartbeat::{
    GetConsumerListByGroupResponseBody, HeartbeatData, LockBatchRequestBody, LockBatchResponseBody,
    MessageQueue,
};
use crate::protocol::{TopicRouteData, from_json, to_json};
use crate::remoting::headers::{
    ConsumerSendMsgBackRequestHeader, EndTransactionRequestHeader,
    GetConsumerListByGroupRequestHeader, GetMaxOffsetRequestHeader, GetMaxOffsetResponseHeader,
    GetMinOffsetRequestHeader, GetMinOffsetResponseHeader, GetRouteInfoRequestHeader,
    PullMessageRequestHeader, PullMessageResponseHeader, QueryConsumerOffsetRequestHeader,
    QueryConsumerOffsetResponseHeader, SearchOffsetRequestHeader, SearchOffsetResponseHeader,
    SendMessageRequestHeader, SendMessageRequestHeaderV2, SendMessageResponseHeader,
    UnregisterClientRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use crate::remoting::transport::{RemotingClient, RemotingError};
use crate::remoting::{CommandHeader, LanguageCode, RemotingCommand, request_code, response_code};
use crate::store::message::{
    BatchItem, StoredMessage, decode_records, encode_batch, encode_properties, find_property,
    property_key, sys_flag,
};

/// `MixAll.DEFAULT_TRACE_REGION_ID`: the region of a send answer without `MSG_REGION`.
pub const DEFAULT_REGION_ID: &str = "DefaultRegion";

/// Why a call did not produce its typed result.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request got no answer: no connection, a failed write, a timeout, too many requests
    /// in flight, no reachable name server. When [`RemotingError::is_connect`] holds the
    /// request never left, so it can be sent elsewhere without risk of a duplicate; after a
    /// timeout it may still have been processed. Producers count every remoting error as
    /// retriable on another broker ([`ClientError::is_send_retriable`]).
    #[error(transparent)]
    Remoting(#[from] RemotingError),
    /// The name server knows no route for the topic (TOPIC_NOT_EXIST). A producer falls back
    /// to the route of the auto-create template `TBW102`, so that its first send makes the
    /// broker create the topic; a consumer keeps what it has and asks again at the next
    /// refresh.
    #[error("no route info of topic {topic} in the name server: {remark}")]
    TopicNotExist {
        /// The topic asked for.
        topic: String,
        /// The name server's remark.
        remark: String,
    },
    /// The name server answered another error code (Java's `MQClientException(code,
    /// remark)`), or SUCCESS without a body. Ask again later.
    #[error("name server answered {code} ({}): {remark}", code_name(.code))]
    NameServer {
        /// The response code.
        code: i32,
        /// The remark.
        remark: String,
    },
    /// A broker answered an error code (Java's `MQBrokerException(code, remark, addr)`). A
    /// producer retries another broker for the codes of [`ClientError::is_send_retriable`];
    /// SYSTEM_BUSY is flow control (back off); anything else is final for this request.
    #[error("broker {addr} answered {code} ({}): {remark}", code_name(.code))]
    Broker {
        /// The broker's address.
        addr: String,
        /// The response code.
        code: i32,
        /// The remark.
        remark: String,
    },
    /// The answer's code was fine but its header or body could not be read: the peer is not
    /// a RocketMQ 4.x server or is broken. Treat it like a failed broker; retrying the same
    /// peer at once will not help.
    #[error("malformed answer from {addr}: {reason}")]
    Malformed {
        /// The peer's address (`name server` for name-server calls).
        addr: String,
        /// What could not be read.
        reason: String,
    },
    /// The request could not be built (a batch item's properties over 32,767 bytes, say).
    /// Nothing was sent; the message must change.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// No address is known for the broker (Java's `The broker[<name>] not exist`, client
    /// code 10003). Refresh the topic's route and look again.
    #[error("the broker[{0}] not exist")]
    BrokerNotFound(String),
    /// A broadcasting consumer's local offsets file could not be read or written. The
    /// offsets stay in memory; the next persist tries again.
    #[error("local offset store {path}: {reason}")]
    LocalOffsetStore {
        /// The file.
        path: String,
        /// What failed.
        reason: String,
    },
}

fn code_name(code: &i32) -> &'static str {
    response_code::name(*code).unwrap_or("?")
}

impl ClientError {
    /// The response code of a refusal (broker or name server), if this is one.
    pub fn response_code(&self) -> Option<i32> {
        match self {
            Self::TopicNotExist { .. } => Some(response_code::TOPIC_NOT_EXIST),
            Self::NameServer { code, .. } | Self::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether a producer may retry the send on another broker (`sendDefaultImpl`): every
    /// remoting error and every client-side error, and the broker codes of
    /// `DefaultMQProducer.retryResponseCodes` (TOPIC_NOT_EXIST, SERVICE_NOT_AVAILABLE,
    /// SYSTEM_ERROR, NO_PERMISSION, NO_BUYER_ID, NOT_IN_CURRENT_UNIT).
    pub fn is_send_retriable(&self) -> bool {
        match self {
            Self::Broker { code, .. } => matches!(
                *code,
                response_code::TOPIC_NOT_EXIST
                    | response_code::SERVICE_NOT_AVAILABLE
                    | response_code::SYSTEM_ERROR
                    | response_code::NO_PERMISSION
                    | response_code::NO_BUYER_ID
                    | response_code::NOT_IN_CURRENT_UNIT
            ),
            Self::Malformed { .. } | Self::InvalidRequest(_) | Self::LocalOffsetStore { .. } => {
                false
            }
            Self::Remoting(_)
            | Self::TopicNotExist { .. }
            | Self::NameServer { .. }
            | Self::BrokerNotFound(_) => true,
        }
    }

    /// Whether an async send is retried on another broker (`onExceptionImpl` with
    /// `needRetry`, clients.md C21): only when the attempt got no answer — the request could
    /// not be sent, or its answer did not come in time — or its broker's address was unknown.
    /// A broker's refusal and an unreadable answer are final, unlike for a sync send.
    pub fn is_async_send_retriable(&self) -> bool {
        matches!(self, Self::Remoting(_) | Self::BrokerNotFound(_))
    }
}

/// How a broker stored a sent message (`SendStatus`). Every value means *stored on the
/// master*; the three others say what did not happen in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendStatus {
    /// SUCCESS: stored (and flushed / replicated as the broker is configured to wait for).
    SendOk,
    /// FLUSH_DISK_TIMEOUT: stored, but a SYNC_FLUSH broker did not flush in time.
    FlushDiskTimeout,
    /// FLUSH_SLAVE_TIMEOUT: stored, but a SYNC_MASTER's slave did not acknowledge in time.
    FlushSlaveTimeout,
    /// SLAVE_NOT_AVAILABLE: stored, but a SYNC_MASTER has no slave in sync.
    SlaveNotAvailable,
}

impl SendStatus {
    /// The status for a send response code; `None` for codes that mean "not stored".
    pub fn from_code(code: i32) -> Option<Self> {
        match code {
            response_code::SUCCESS => Some(Self::SendOk),
            response_code::FLUSH_DISK_TIMEOUT => Some(Self::FlushDiskTimeout),
            response_code::FLUSH_SLAVE_TIMEOUT => Some(Self::FlushSlaveTimeout),
            response_code::SLAVE_NOT_AVAILABLE => Some(Self::SlaveNotAvailable),
            _ => None,
        }
    }
}

/// The outcome of a stored send (`SendResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    /// How the broker stored it.
    pub status: SendStatus,
    /// The client's unique id (`UNIQ_KEY` of the message; for a batch, the items' ids joined
    /// with commas). `None` when the message carried none.
    pub msg_id: Option<String>,
    /// The broker's offset message id (store host + commit-log offset; comma-joined for a
    /// batch).
    pub offset_msg_id: String,
    /// The queue the message went to.
    pub queue: MessageQueue,
    /// Its consume-queue offset (the first item's, for a batch).
    pub queue_offset: i64,
    /// The transaction id, for a half message.
    pub transaction_id: Option<String>,
    /// The broker's region (`MSG_REGION`, default [`DEFAULT_REGION_ID`]).
    pub region_id: String,
    /// Whether the broker allows tracing (`TRACE_ON` is not `false`).
    pub trace_on: bool,
}

/// What a pull found (`PullStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PullStatus {
    /// SUCCESS: messages are in [`PullResult::messages`].
    Found,
    /// PULL_NOT_FOUND: nothing at or after the offset yet.
    NoNewMsg,
    /// PULL_RETRY_IMMEDIATELY: messages were there but none matched the subscription;
    /// continue at `next_begin_offset`.
    NoMatchedMsg,
    /// PULL_OFFSET_MOVED: the offset is outside the queue; continue at `next_begin_offset`.
    OffsetIllegal,
}

impl PullStatus {
    /// The status for a pull response code; `None` for error codes.
    pub fn from_code(code: i32) -> Option<Self> {
        match code {
            response_code::SUCCESS => Some(Self::Found),
            response_code::PULL_NOT_FOUND => Some(Self::NoNewMsg),
            response_code::PULL_RETRY_IMMEDIATELY => Some(Self::NoMatchedMsg),
            response_code::PULL_OFFSET_MOVED => Some(Self::OffsetIllegal),
            _ => None,
        }
    }
}

/// The answer to a pull (`PullResultExt` after `processPullResult`, without the tag
/// re-filtering, which needs the consumer's subscription).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullResult {
    /// What the pull found.
    pub status: PullStatus,
    /// Where to pull next.
    pub next_begin_offset: i64,
    /// The queue's smallest offset.
    pub min_offset: i64,
    /// The queue's next offset to be written.
    pub max_offset: i64,
    /// The broker id to pull from next (0 = master; a slave when the master is behind).
    pub suggest_which_broker_id: i64,
    /// The messages of a [`PullStatus::Found`] answer, in queue order: bodies inflated when
    /// compressed (and their SYSFLAG's compression bits cleared), properties `MIN_OFFSET` and
    /// `MAX_OFFSET` set from the answer's header.
    pub messages: Vec<StoredMessage>,
}

/// The client's remote API. Cheap to clone; every clone shares one [`RemotingClient`].
#[derive(Debug, Clone)]
pub struct MqClientApi {
    remoting: Arc<RemotingClient>,
    language: LanguageCode,
}

impl MqClientApi {
    /// An API over `remoting` whose requests say they come from `language`.
    pub fn new(remoting: Arc<RemotingClient>, language: LanguageCode) -> Self {
        Self { remoting, language }
    }

    /// The remoting client underneath.
    pub fn remoting(&self) -> &Arc<RemotingClient> {
        &self.remoting
    }

    // -----------------------------------------------------------------------------------------
    // Name server.

    /// GET_ROUTEINFO_BY_TOPIC (105) to a name server (`getTopicRouteInfoFromNameServer`).
    /// TOPIC_NOT_EXIST is [`ClientError::TopicNotExist`]; SUCCESS without a body, like any
    /// other code, is [`ClientError::NameServer`].
    pub async fn topic_route(
        &self,
        topic: &str,
        timeout: Duration,
    ) -> Result<TopicRouteData, ClientError> {
        let header = GetRouteInfoRequestHeader {
            topic: topic.to_owned(),
            accept_standard_json_only: None,
        };
        let request = self.request(request_code::GET_ROUTEINFO_BY_TOPIC, &header);
        let response = self.remoting.invoke_name_server(request, timeout).await?;
        match response.code {
            response_code::TOPIC_NOT_EXIST => Err(ClientError::TopicNotExist {
                topic: topic.to_owned(),
                remark: response.remark.unwrap_or_default(),
            }),
            response_code::SUCCESS if !response.body.is_empty() => decode_route(&response.body)
                .map_err(|reason| ClientError::Malformed {
                    addr: "name server".into(),
                    reason,
                }),
            code => Err(ClientError::NameServer {
                code,
                remark: response.remark.unwrap_or_default(),
            }),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Send.

    /// Sends one message and waits for the broker's answer (`sendMessageSync`), as
    /// SEND_MESSAGE_V2 (310) with the one-letter keys of `header`. `broker_name` names the
    /// broker group for the result's queue; `body` is sent as is (compressed by the caller if
    /// `header.sys_flag` says so); the result's `msg_id` is the `UNIQ_KEY` of
    /// `header.properties`. The header is taken whole: it becomes the V2 header as it is.
    pub async fn send_message(
        &self,
        addr: &str,
        broker_name: &str,
        header: SendMessageRequestHeader,
        body: Bytes,
        timeout: Duration,
    ) -> Result<SendResult, ClientError> {
        let uniq_key = header
            .properties
            .as_deref()
            .and_then(|properties| find_property(properties, property_key::UNIQ_KEY))
            .map(str::to_owned);
        let v2 = SendMessageRequestHeaderV2::from(header);
        let request = self
            .request(request_code::SEND_MESSAGE_V2, &v2)
            .with_body(body);
        let response = self.invoke(addr, request, timeout).await?;
        process_send_response(addr, broker_name, &v2.topic, uniq_key, &response)
    }

    /// Sends one message oneway (SEND_MESSAGE_V2, no answer): `Ok` once it is written.
    pub async fn send_message_oneway(
        &self,
        addr: &str,
        header: SendMessageRequestHeader,
        body: Bytes,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let v2 = SendMessageRequestHeaderV2::from(header);
        let request = self
            .request(request_code::SEND_MESSAGE_V2, &v2)
            .with_body(body);
        self.invoke_oneway(addr, request, timeout).await
    }

    /// Sends a batch (SEND_BATCH_MESSAGE, 320, V2 header with `batch = true`) and waits for the
    /// answer. `header` carries the batch's topic, queue and batch-level properties; each item
    /// carries its own properties, `UNIQ_KEY` among them. The result's `msg_id` joins the
    /// items' unique ids with commas, as Java does.
    pub async fn send_batch_message(
        &self,
        addr: &str,
        broker_name: &str,
        header: SendMessageRequestHeader,
        items: &[BatchItem],
        timeout: Duration,
    ) -> Result<SendResult, ClientError> {
        let body = encode_batch(items).map_err(|e| ClientError::InvalidRequest(e.to_string()))?;
        let uniq_keys: Vec<&str> = items
            .iter()
            .map(|item| find_property(&item.properties, property_key::UNIQ_KEY).unwrap_or(""))
            .collect();
        let mut v2 = SendMessageRequestHeaderV2::from(header);
        v2.batch = Some(true);
        let request = self
            .request(request_code::SEND_BATCH_MESSAGE, &v2)
            .with_body(body);
        let response = self.invoke(addr, request, timeout).await?;
        process_send_response(
            addr,
            broker_name,
            &v2.topic,
            Some(uniq_keys.join(",")),
            &response,
        )
    }

    // -----------------------------------------------------------------------------------------
    // Pull.

    /// PULL_MESSAGE (11) and `processPullResult`: maps the four pull codes to a
    /// [`PullStatus`], decodes the messages of a FOUND answer (stopping silently at a
    /// malformed record, as `MessageDecoder.decodes`), inflates compressed bodies and sets
    /// `MIN_OFFSET` / `MAX_OFFSET` on each. `timeout` must exceed the header's
    /// `suspend_timeout_millis` when the SUSPEND flag is set (Java: 30 s against 15 s).
    pub async fn pull_message(
        &self,
        addr: &str,
        header: &PullMessageRequestHeader,
        timeout: Duration,
    ) -> Result<PullResult, ClientError> {
        let request = self.request(request_code::PULL_MESSAGE, header);
        let response = self.invoke(addr, request, timeout).await?;
        process_pull_response(addr, &response)
    }

    // -----------------------------------------------------------------------------------------
    // Client management.

    /// HEART_BEAT (34) with `heartbeat` as the body (`sendHearbeat`); answers the broker's
    /// version ordinal (409 for 4.9.8 and ferrocket).
    pub async fn heartbeat(
        &self,
        addr: &str,
        heartbeat: &HeartbeatData,
        timeout: Duration,
    ) -> Result<i32, ClientError> {
        let request = self
            .request_without_header(request_code::HEART_BEAT)
            .with_body(to_json(heartbeat));
        let response = self.invoke(addr, request, timeout).await?;
        expect_success(addr, &response)?;
        Ok(response.version)
    }

    /// UNREGISTER_CLIENT (35): `client_id` leaves `producer_group` and/or `consumer_group`
    /// on the broker at `addr`.
    pub async fn unregister_client(
        &self,
        addr: &str,
        client_id: &str,
        producer_group: Option<&str>,
        consumer_group: Option<&str>,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let header = UnregisterClientRequestHeader {
            client_id: client_id.to_owned(),
            producer_group: producer_group.map(str::to_owned),
            consumer_group: consumer_group.map(str::to_owned),
        };
        let request = self.request(request_code::UNREGISTER_CLIENT, &header);
        let response = self.invoke(addr, request, timeout).await?;
        expect_success(addr, &response)
    }

    /// GET_CONSUMER_LIST_BY_GROUP (38): the client ids of the group's consumers the broker
    /// knows. A broker with none answers SYSTEM_ERROR ([`ClientError::Broker`]).
    pub async fn consumer_id_list(
        &self,
        addr: &str,
        group: &str,
        timeout: Duration,
    ) -> Result<Vec<String>, ClientError> {
        let header = GetConsumerListByGroupRequestHeader {
            consumer_group: group.to_owned(),
        };
        let request = self.request(request_code::GET_CONSUMER_LIST_BY_GROUP, &header);
        let response = self.invoke(addr, request, timeout).await?;
        expect_success(addr, &response)?;
        if response.body.is_empty() {
            return Err(malformed(addr, "consumer list answer without a body"));
        }
        let body: GetConsumerListByGroupResponseBody =
            from_json("GetConsumerListByGroupResponseBody", &response.body)
                .map_err(|e| malformed(addr, e))?;
        Ok(body.consumer_id_list)
    }

    // -----------------------------------------------------------------------------------------
    // Offsets.

    /// QUERY_CONSUMER_OFFSET (14): the group's committed offset, or `None` when the broker has
    /// none (QUERY_NOT_FOUND; the consumer then applies its ConsumeFromWhere).
    pub async fn query_consumer_offset(
        &self,
        addr: &str,
        header: &QueryConsumerOffsetRequestHeader,
        timeout: Duration,
    ) -> Result<Option<i64>, ClientError> {
        let request = self.request(request_code::QUERY_CONSUMER_OFFSET, header);
        let response = self.invoke(addr, request, timeout).await?;
        if response.code == response_code::QUERY_NOT_FOUND {
            return Ok(None);
        }
        expect_success(addr, &response)?;
        let answer: QueryConsumerOffsetResponseHeader = decode_header(addr, &response)?;
        Ok(Some(answer.offset))
    }

    /// UPDATE_CONSUMER_OFFSET (15), waiting for the broker's answer.
    pub async fn update_consumer_offset(
        &self,
        addr: &str,
        header: &UpdateConsumerOffsetRequestHeader,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let request = self.request(request_code::UPDATE_CONSUMER_OFFSET, header);
        let response = self.invoke(addr, request, timeout).await?;
        expect_success(addr, &response)
    }

    /// UPDATE_CONSUMER_OFFSET (15) oneway, as Java's periodic persist sends it.
    pub async fn update_consumer_offset_oneway(
        &self,
        addr: &str,
        header: &UpdateConsumerOffsetRequestHeader,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let request = self.request(request_code::UPDATE_CONSUMER_OFFSET, header);
        self.invoke_oneway(addr, request, timeout).await
    }

    /// GET_MAX_OFFSET (30): the queue's next offset to be written.
    pub async fn max_offset(
        &self,
        addr: &str,
        topic: &str,
        queue_id: i32,
        timeout: Duration,
    ) -> Result<i64, ClientError> {
        let header = GetMaxOffsetRequestHeader {
            topic: topic.to_owned(),
            queue_id,
            broker_name: None,
        };
        let request = self.request(request_code::GET_MAX_OFFSET, &header);
        let answer: GetMaxOffsetResponseHeader =
            self.invoke_for_header(addr, request, timeout).await?;
        Ok(answer.offset)
    }

    /// GET_MIN_OFFSET (31): the queue's smallest offset still stored.
    pub async fn min_offset(
        &self,
        addr: &str,
        topic: &str,
        queue_id: i32,
        timeout: Duration,
    ) -> Result<i64, ClientError> {
        let header = GetMinOffsetRequestHeader {
            topic: topic.to_owned(),
            queue_id,
            broker_name: None,
        };
        let request = self.request(request_code::GET_MIN_OFFSET, &header);
        let answer: GetMinOffsetResponseHeader =
            self.invoke_for_header(addr, request, timeout).await?;
        Ok(answer.offset)
    }

    /// SEARCH_OFFSET_BY_TIMESTAMP (29): the offset of the queue's first message stored at or
    /// after `timestamp_ms` (ms since the epoch), as the broker's store searches it.
    pub async fn search_offset(
        &self,
        addr: &str,
        topic: &str,
        queue_id: i32,
        timestamp_ms: i64,
        timeout: Duration,
    ) -> Result<i64, ClientError> {
        let header = SearchOffsetRequestHeader {
            topic: topic.to_owned(),
            queue_id,
            timestamp: timestamp_ms,
            broker_name: None,
        };
        let request = self.request(request_code::SEARCH_OFFSET_BY_TIMESTAMP, &header);
        let answer: SearchOffsetResponseHeader =
            self.invoke_for_header(addr, request, timeout).await?;
        Ok(answer.offset)
    }

    // -----------------------------------------------------------------------------------------
    // Orderly consumption.

    /// LOCK_BATCH_MQ (41) to a master: the queues of `body` the client now holds.
    pub async fn lock_batch_mq(
        &self,
        addr: &str,
        body: &LockBatchRequestBody,
        timeout: Duration,
    ) -> Result<BTreeSet<MessageQueue>, ClientError> {
        let request = self
            .request_without_header(request_code::LOCK_BATCH_MQ)
            .with_body(to_json(body));
        let response = self.invoke(addr, request, timeout).await?;
        expect_success(addr, &response)?;
        let answer: LockBatchResponseBody =
            from_json("LockBatchResponseBody", &response.body).map_err(|e| malformed(addr, e))?;
        Ok(answer.lock_ok_mq_set)
    }

    /// UNLOCK_BATCH_MQ (42): releases the client's locks on the queues of `body`; `oneway`
    /// returns once the request is written.
    pub async fn unlock_batch_mq(
        &self,
        addr: &str,
        body: &LockBatchRequestBody,
        timeout: Duration,
        oneway: bool,
    ) -> Result<(), ClientError> {
        let request = self
            .request_without_header(request_code::UNLOCK_BATCH_MQ)
            .with_body(to_json(body));
        if oneway {
            return self.invoke_oneway(addr, request, timeout).await;
        }
        let response = self.invoke(addr, request, timeout).await?;
        expect_success(addr, &response)
    }

    // -----------------------------------------------------------------------------------------
    // Retries and transactions.

    /// CONSUMER_SEND_MSG_BACK (36): hands a message the consumer failed on back to the
    /// broker, which stores it in the group's retry topic with `delay_level` (0: the broker
    /// picks from the retry count; below 0: straight to the DLQ). The header names the
    /// message by its commit-log offset, its unique id (the offset id when it has none) and
    /// its topic, as Java's `consumerSendMessageBack` does.
    pub async fn consumer_send_message_back(
        &self,
        addr: &str,
        message: &StoredMessage,
        group: &str,
        delay_level: i32,
        max_reconsume_times: i32,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let header = ConsumerSendMsgBackRequestHeader {
            offset: message.commit_log_offset,
            group: group.to_owned(),
            delay_level,
            origin_msg_id: Some(
                message
                    .uniq_key()
                    .map_or_else(|| message.msg_id.clone(), str::to_owned),
            ),
            origin_topic: Some(message.topic.clone()),
            unit_mode: Some(false),
            max_reconsume_times: Some(max_reconsume_times),
            broker_name: None,
        };
        let request = self.request(request_code::CONSUMER_SEND_MSG_BACK, &header);
        let response = self.invoke(addr, request, timeout).await?;
        expect_success(addr, &response)
    }

    /// END_TRANSACTION (37), oneway: commits or rolls back a half message; `remark` carries
    /// the local transaction's exception text, if any.
    pub async fn end_transaction_oneway(
        &self,
        addr: &str,
        header: &EndTransactionRequestHeader,
        remark: Option<String>,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let mut request = self.request(request_code::END_TRANSACTION, header);
        request.remark = remark;
        self.invoke_oneway(addr, request, timeout).await
    }

    // -----------------------------------------------------------------------------------------
    // Plumbing.

    fn request(&self, code: i32, header: &impl CommandHeader) -> RemotingCommand {
        let mut request = RemotingCommand::request_with_header(code, header);
        request.language = self.language;
        request
    }

    fn request_without_header(&self, code: i32) -> RemotingCommand {
        let mut request = RemotingCommand::request(code);
        request.language = self.language;
        request
    }

    async fn invoke(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, ClientError> {
        Ok(self.remoting.invoke(addr, request, timeout).await?)
    }

    /// Invokes `request` and decodes the header of its SUCCESS answer.
    async fn invoke_for_header<H: CommandHeader>(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<H, ClientError> {
        let response = self.invoke(addr, request, timeout).await?;
        expect_success(addr, &response)?;
        decode_header(addr, &response)
    }

    async fn invoke_oneway(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        Ok(self.remoting.invoke_oneway(addr, request, timeout).await?)
    }
}

fn refused(addr: &str, response: &RemotingCommand) -> ClientError {
    ClientError::Broker {
        addr: addr.to_owned(),
        code: response.code,
        remark: response.remark.clone().unwrap_or_default(),
    }
}

fn malformed(addr: &str, reason: impl ToString) -> ClientError {
    ClientError::Malformed {
        addr: addr.to_owned(),
        reason: reason.to_string(),
    }
}

fn expect_success(addr: &str, response: &RemotingCommand) -> Result<(), ClientError> {
    if response.is_success() {
        Ok(())
    } else {
        Err(refused(addr, response))
    }
}

fn decode_header<H: CommandHeader>(
    addr: &str,
    response: &RemotingCommand,
) -> Result<H, ClientError> {
    response.decode_header().map_err(|e| malformed(addr, e))
}

/// `processSendResponse`: the four "stored" codes become a [`SendResult`], any other code a
/// [`ClientError::Broker`].
fn process_send_response(
    addr: &str,
    broker_name: &str,
    topic: &str,
    msg_id: Option<String>,
    response: &RemotingCommand,
) -> Result<SendResult, ClientError> {
    let status = SendStatus::from_code(response.code).ok_or_else(|| refused(addr, response))?;
    let answer: SendMessageResponseHeader = decode_header(addr, response)?;
    let region_id = answer
        .msg_region
        .filter(|region| !region.is_empty())
        .unwrap_or_else(|| DEFAULT_REGION_ID.to_owned());
    Ok(SendResult {
        status,
        msg_id,
        offset_msg_id: answer.msg_id,
        queue: MessageQueue {
            broker_name: broker_name.to_owned(),
            queue_id: answer.queue_id,
            topic: topic.to_owned(),
        },
        queue_offset: answer.queue_offset,
        transaction_id: answer.transaction_id,
        region_id,
        trace_on: response.ext_fields.get(property_key::TRACE_ON) != Some("false"),
    })
}

/// `processPullResponse` and the decoding half of `processPullResult`: the four pull codes
/// become a [`PullResult`], any other code a [`ClientError::Broker`].
fn process_pull_response(
    addr: &str,
    response: &RemotingCommand,
) -> Result<PullResult, ClientError> {
    let status = PullStatus::from_code(response.code).ok_or_else(|| refused(addr, response))?;
    let answer: PullMessageResponseHeader = decode_header(addr, response)?;
    let mut messages = if status == PullStatus::Found {
        decode_records(&response.body)
    } else {
        Vec::new()
    };
    for message in &mut messages {
        inflate_body(message);
        let mut properties = message.properties_map();
        properties.insert(
            property_key::MIN_OFFSET.into(),
            answer.min_offset.to_string(),
        );
        properties.insert(
            property_key::MAX_OFFSET.into(),
            answer.max_offset.to_string(),
        );
        message.properties = encode_properties(&properties);
    }
    Ok(PullResult {
        status,
        next_begin_offset: answer.next_begin_offset,
        min_offset: answer.min_offset,
        max_offset: answer.max_offset,
        suggest_which_broker_id: answer.suggest_which_broker_id,
        messages,
    })
}

/// Reads a route body. Java name servers before 4.9.4 (and later ones, for clients that
/// announce a version below 4.9.4) write the broker-id keys of `brokerAddrs` bare, as
/// fastjson does (`{0:"10.0.0.1:10911"}`), which strict JSON refuses; such a body is read
/// again with the bare numeric keys quoted.
pub fn decode_route(body: &[u8]) -> Result<TopicRouteData, String> {
    match from_json::<TopicRouteData>("TopicRouteData", body) {
        Ok(route) => Ok(route),
        Err(strict) => {
            let text = std::str::from_utf8(body).map_err(|_| strict.to_string())?;
            from_json("TopicRouteData", quote_bare_numeric_keys(text).as_bytes())
                .map_err(|_| strict.to_string())
        }
    }
}

/// Quotes object keys that are bare integers (`{0:"a",-1:"b"}` → `{"0":"a","-1":"b"}`),
/// leaving strings and array elements alone.
fn quote_bare_numeric_keys(json: &str) -> String {
    let bytes = json.as_bytes();
    let mut out = String::with_capacity(json.len() + 8);
    let mut in_string = false;
    let mut escaped = false;
    // Whether the next token, if a number followed by ':', is an object key.
    let mut key_position = false;
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match byte {
            b'"' => {
                in_string = true;
                key_position = false;
            }
            b'{' | b',' => key_position = true,
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'-' | b'0'..=b'9' if key_position => {
                let start = i;
                let mut end = i + 1;
                while end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
                let mut next = end;
                while next < bytes.len() && bytes[next].is_ascii_whitespace() {
                    next += 1;
                }
                if bytes.get(next) == Some(&b':') {
                    // Every index here sits on an ASCII byte, so on a char boundary.
                    out.push_str(&json[copied..start]);
                    out.push('"');
                    out.push_str(&json[start..end]);
                    out.push('"');
                    copied = end;
                }
                key_position = false;
                i = end;
                continue;
            }
            _ => key_position = false,
        }
        i += 1;
    }
    out.push_str(&json[copied..]);
    out
}

/// Inflates a compressed body as `MessageDecoder.decode(…, deCompressBody = true)` does,
/// with [`compression::decompress`]. Unlike Java, the COMPRESSED bit and the compression type
/// are then cleared from SYSFLAG, so the flag describes the body as handed over and a second
/// [`compression::decompress`] is a no-op. A body that cannot be inflated (LZ4, ZSTD,
/// corrupt, over the size limit) is handed over as stored, flag intact, with a warning; Java
/// would instead stop decoding the pull at that record.
pub(crate) fn inflate_body(message: &mut StoredMessage) {
    if message.sys_flag & sys_flag::COMPRESSED == 0 {
        return;
    }
    let Some(body) = message.body.as_ref() else {
        return;
    };
    match compression::decompress(body, message.sys_flag) {
        Ok(inflated) => {
            message.body = Some(Bytes::from(inflated.into_owned()));
            message.sys_flag &= !(sys_flag::COMPRESSED | sys_flag::COMPRESSION_TYPE_MASK);
        }
        Err(error) => {
            tracing::warn!(msg_id = %message.msg_id, sys_flag = message.sys_flag, %error, "pulled body left as stored");
        }
    }
}

#[cfg(test)]
mod tests;
