//! PULL_MESSAGE (11) (`PullMessageProcessor`): reads a batch of messages from one queue for a
//! consumer group, and long-polls when there is nothing to read yet.
//!
//! A pull goes through, in Java's order:
//!
//! 1. **checks**, each answered with Java's code and remark: the broker is readable; the
//!    consumer group exists (or is auto-created) and may consume; the topic exists, is
//!    readable, and has the queue;
//! 2. **subscription**: from the request when the SUBSCRIPTION flag is set (C++, ali-ons,
//!    lite pull; a missing or empty expression is `*`, as C++ and mxsm clients send), else from
//!    the group's last heartbeat (the Java push consumer), which must exist and be at least
//!    as new as the request's `subVersion`. Only tag expressions are served; SQL92 is
//!    answered as a Java broker without `enablePropertyFilter` answers it;
//! 3. **read**: `MessageStore::get_message` through a [`SubscriptionFilter`] on the
//!    consume-queue tags codes, and the store status mapped to a pull code
//!    ([`pull_response_code`], `spec/wire-protocol.md` §6). Every pull response carries
//!    `suggestWhichBrokerId`, `nextBeginOffset`, `minOffset` and `maxOffset` — Java clients
//!    fail on a missing one — and the status name as its remark;
//! 4. **long polling**: a PULL_NOT_FOUND for a request with the SUSPEND flag is not answered
//!    now: the request is held ([`crate::broker::long_polling`]) for `suspendTimeoutMillis`
//!    (`shortPollingTimeMills` with `longPollingEnable` off) and the processor returns
//!    `Ok(None)` at once, so a held pull never occupies a worker. When a message arrives for
//!    its queue, or the hold times out, the pull is run again with suspension not allowed and
//!    the answer is written on the request's connection with the request's opaque;
//! 5. **commit-offset piggyback**: with the COMMIT_OFFSET flag, `commitOffset` is committed
//!    for the group on a master whatever the read found — on the first run only, never on the
//!    re-run of a held request (as Java);
//! 6. **fall-behind**: every read that examined consume-queue units records how far behind
//!    the commit log's end the group reads ([`DiskFallBehindTable`]), for
//!    [`crate::broker::protect`].
//!
//! Not done (Java does them, no client depends on them): the OFFSET_MOVED_EVENT record on
//! PULL_OFFSET_MOVED, consume-message hooks and statistics.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use crate::broker::context::BrokerContext;
use crate::broker::long_polling::{
    HOLD_TIMEOUT_MAX, LONG_POLLING_CHECK_INTERVAL, PullRequest, PullRequestHoldService,
};
use crate::broker::protect::DiskFallBehindTable;
use crate::protocol::heartbeat::{EXPRESSION_TYPE_TAG, MessageModel, SubscriptionData};
use crate::protocol::{MASTER_ID, perm};
use crate::remoting::headers::{PullMessageRequestHeader, PullMessageResponseHeader};
use crate::remoting::transport::{Channel, ProcessError, RequestProcessor};
use crate::remoting::{RemotingCommand, response_code};
use crate::store::config::BrokerRole;
use crate::store::message_store::{
    ArrivalListener, GetMessageResult, GetMessageStatus, MessageFilter,
};
use crate::store::metadata::SubscriptionGroupConfig;

#[cfg(test)]
mod tests;

/// The `sysFlag` bits of a pull request (`PullSysFlag`).
pub mod pull_sys_flag {
    /// Commit `commitOffset` for the group before reading.
    pub const COMMIT_OFFSET: i32 = 0x1;
    /// Hold the request while there is nothing to read.
    pub const SUSPEND: i32 = 0x2;
    /// The request's `subscription`/`expressionType` are authoritative.
    pub const SUBSCRIPTION: i32 = 0x4;
    /// Class filter (deprecated; ignored).
    pub const CLASS_FILTER: i32 = 0x8;
    /// A lite pull consumer.
    pub const LITE_PULL: i32 = 0x10;
}

/// Java's `FAQUrl.suggestTodo` suffix of some remarks.
const FAQ_SUFFIX: &str = "\nSee http://rocketmq.apache.org/docs/faq/ for further details.";

/// Why a pull is refused before the store is read. Each variant is answered with its
/// [`code`](PullError::code) and, as remark, its text (Java's remark).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullError {
    /// `brokerPermission` lacks READ: the operator has closed the broker to consumers; the
    /// client retries later or elsewhere.
    #[error("the broker[{broker_ip}] pulling message is forbidden")]
    BrokerNotReadable {
        /// `brokerIP1`.
        broker_ip: String,
    },
    /// The group is unknown and `autoCreateSubscriptionGroup` is off: create the group.
    #[error("subscription group [{group}] does not exist, {FAQ_SUFFIX}")]
    SubscriptionGroupNotExist {
        /// The group.
        group: String,
    },
    /// The group's `consumeEnable` is off.
    #[error("subscription group no permission, {group}")]
    GroupConsumeDisabled {
        /// The group.
        group: String,
    },
    /// The topic is not on this broker: its route is stale.
    #[error("topic[{topic}] not exist, apply first please! {FAQ_SUFFIX}")]
    TopicNotExist {
        /// The topic.
        topic: String,
    },
    /// The topic's perm lacks READ.
    #[error("the topic[{topic}] pulling message is forbidden")]
    TopicNotReadable {
        /// The topic.
        topic: String,
    },
    /// The queue id is negative or not below the topic's read queue count (SYSTEM_ERROR in
    /// Java).
    #[error(
        "queueId[{queue_id}] is illegal, topic:[{topic}] topicConfig.readQueueNums:[{read_queue_nums}] consumer:[/{consumer}]"
    )]
    IllegalQueueId {
        /// The queue asked for.
        queue_id: i32,
        /// The topic.
        topic: String,
        /// Its read queue count.
        read_queue_nums: i32,
        /// The consumer's address.
        consumer: std::net::SocketAddr,
    },
    /// A non-tag expression without text.
    #[error("parse the consumer's subscription failed")]
    SubscriptionParseFailed,
    /// A non-tag (SQL92) expression: this broker filters by tag only (Java without
    /// `enablePropertyFilter`).
    #[error("The broker does not support consumer to filter message by {expression_type}")]
    FilterNotSupported {
        /// The expression type asked for.
        expression_type: String,
    },
    /// No heartbeat from the group yet: the consumer sends one and pulls again.
    #[error("the consumer's group info not exist{FAQ_SUFFIX}")]
    GroupInfoNotExist,
    /// A broadcasting group whose `consumeBroadcastEnable` is off.
    #[error("the consumer group[{group}] can not consume by broadcast way")]
    BroadcastNotAllowed {
        /// The group.
        group: String,
    },
    /// The group's heartbeats do not subscribe to the topic.
    #[error("the consumer's subscription not exist{FAQ_SUFFIX}")]
    SubscriptionNotExist,
    /// The heartbeat's subscription is older than the request's `subVersion`: the next
    /// heartbeat fixes it.
    #[error("the consumer's subscription not latest")]
    SubscriptionNotLatest,
}

impl PullError {
    /// The response code to answer with.
    pub fn code(&self) -> i32 {
        match self {
            Self::BrokerNotReadable { .. }
            | Self::GroupConsumeDisabled { .. }
            | Self::TopicNotReadable { .. }
            | Self::BroadcastNotAllowed { .. } => response_code::NO_PERMISSION,
            Self::SubscriptionGroupNotExist { .. } => response_code::SUBSCRIPTION_GROUP_NOT_EXIST,
            Self::TopicNotExist { .. } => response_code::TOPIC_NOT_EXIST,
            Self::IllegalQueueId { .. } | Self::FilterNotSupported { .. } => {
                response_code::SYSTEM_ERROR
            }
            Self::SubscriptionParseFailed => response_code::SUBSCRIPTION_PARSE_FAILED,
            Self::GroupInfoNotExist | Self::SubscriptionNotExist => {
                response_code::SUBSCRIPTION_NOT_EXIST
            }
            Self::SubscriptionNotLatest => response_code::SUBSCRIPTION_NOT_LATEST,
        }
    }
}

impl From<PullError> for ProcessError {
    fn from(error: PullError) -> Self {
        ProcessError::new(error.code(), error.to_string())
    }
}

/// The broker-side filter of a pull (`ExpressionMessageFilter` for tag subscriptions):
/// accepts a consume-queue unit when its tags code is one of the subscription's, when the
/// subscription is `*` or not a tag expression, or when the code is unknown. The client
/// filters by tag again, so this is only an optimisation.
#[derive(Debug, Clone)]
pub struct SubscriptionFilter {
    subscription: SubscriptionData,
}

impl SubscriptionFilter {
    /// A filter for `subscription`.
    pub fn new(subscription: SubscriptionData) -> Self {
        Self { subscription }
    }

    /// The subscription filtered by.
    pub fn subscription(&self) -> &SubscriptionData {
        &self.subscription
    }
}

impl MessageFilter for SubscriptionFilter {
    fn is_matched_by_consume_queue(&self, tags_code: Option<i64>) -> bool {
        let Some(code) = tags_code else {
            return true;
        };
        self.subscription.class_filter_mode || self.subscription.matches_tags_code(code)
    }
}

/// Whether an expression type is a tag expression (`ExpressionType.isTagType`: absent,
/// empty or `TAG`).
fn is_tag_type(expression_type: Option<&str>) -> bool {
    expression_type.is_none_or(|t| t.is_empty() || t == EXPRESSION_TYPE_TAG)
}

/// The pull response code of a store status for a request at `request_offset` (before the
/// slave rule of [`PullMessageProcessor`]).
pub fn pull_response_code(status: GetMessageStatus, request_offset: i64) -> i32 {
    match status {
        GetMessageStatus::Found => response_code::SUCCESS,
        GetMessageStatus::MessageWasRemoving | GetMessageStatus::NoMatchedMessage => {
            response_code::PULL_RETRY_IMMEDIATELY
        }
        GetMessageStatus::NoMatchedLogicQueue | GetMessageStatus::NoMessageInQueue => {
            if request_offset != 0 {
                response_code::PULL_OFFSET_MOVED
            } else {
                response_code::PULL_NOT_FOUND
            }
        }
        GetMessageStatus::OffsetFoundNull | GetMessageStatus::OffsetOverflowOne => {
            response_code::PULL_NOT_FOUND
        }
        GetMessageStatus::OffsetOverflowBadly | GetMessageStatus::OffsetTooSmall => {
            response_code::PULL_OFFSET_MOVED
        }
    }
}

/// The Java name of a store status: the remark of every pull response.
pub fn status_name(status: GetMessageStatus) -> &'static str {
    match status {
        GetMessageStatus::Found => "FOUND",
        GetMessageStatus::NoMatchedMessage => "NO_MATCHED_MESSAGE",
        GetMessageStatus::MessageWasRemoving => "MESSAGE_WAS_REMOVING",
        GetMessageStatus::OffsetFoundNull => "OFFSET_FOUND_NULL",
        GetMessageStatus::OffsetOverflowBadly => "OFFSET_OVERFLOW_BADLY",
        GetMessageStatus::OffsetOverflowOne => "OFFSET_OVERFLOW_ONE",
        GetMessageStatus::OffsetTooSmall => "OFFSET_TOO_SMALL",
        GetMessageStatus::NoMatchedLogicQueue => "NO_MATCHED_LOGIC_QUEUE",
        GetMessageStatus::NoMessageInQueue => "NO_MESSAGE_IN_QUEUE",
    }
}

/// A pull that passed the checks: what to read and how to filter.
struct PullPlan {
    header: PullMessageRequestHeader,
    group: SubscriptionGroupConfig,
    filter: Arc<SubscriptionFilter>,
}

/// The PULL_MESSAGE processor and its hold service. See the module docs.
#[derive(Debug)]
pub struct PullMessageProcessor {
    context: Arc<BrokerContext>,
    hold: PullRequestHoldService,
    disk_fall_behind: Arc<DiskFallBehindTable>,
}

impl PullMessageProcessor {
    /// A processor over `context`, with an empty hold table.
    pub fn new(context: Arc<BrokerContext>) -> Arc<Self> {
        let check_interval = if context.config.long_polling_enable {
            LONG_POLLING_CHECK_INTERVAL
        } else {
            Duration::from_millis(context.config.short_polling_time_mills)
        };
        Arc::new(Self {
            hold: PullRequestHoldService::new(context.store.clone(), check_interval),
            disk_fall_behind: Arc::new(DiskFallBehindTable::new()),
            context,
        })
    }

    /// The hold service (for tests and the simulator's invariant checks).
    pub fn hold_service(&self) -> &PullRequestHoldService {
        &self.hold
    }

    /// How far behind the commit log's end each group's pulls read, for `protectBroker`.
    pub fn disk_fall_behind(&self) -> &Arc<DiskFallBehindTable> {
        &self.disk_fall_behind
    }

    /// The listener for `MessageStore::set_arrival_listener`: wakes the held pulls of the
    /// queue a message was dispatched to. As in Java, only a master with long polling on
    /// reacts; otherwise held pulls are found by the periodic check. The listener holds the
    /// processor weakly (the store outlives nothing it refers to).
    pub fn arrival_listener(self: &Arc<Self>) -> ArrivalListener {
        let processor = Arc::downgrade(self);
        Arc::new(
            move |topic, queue_id, max_offset, tags_code, _store_timestamp| {
                let Some(processor) = processor.upgrade() else {
                    return;
                };
                if processor.context.config.long_polling_enable
                    && processor.context.store_config.broker_role != BrokerRole::Slave
                {
                    processor.notify_message_arriving(topic, queue_id, max_offset, Some(tags_code));
                }
            },
        )
    }

    /// Messages up to `max_offset` (exclusive) are in (topic, queue), the last with
    /// `tags_code` (`None`: unknown): runs again the held pulls now due and answers them.
    pub fn notify_message_arriving(
        self: &Arc<Self>,
        topic: &str,
        queue_id: i32,
        max_offset: i64,
        tags_code: Option<i64>,
    ) {
        let now = self.context.env.clock.instant();
        for request in self
            .hold
            .notify_message_arriving(topic, queue_id, max_offset, tags_code, now)
        {
            self.execute_request_when_wakeup(request);
        }
    }

    /// One periodic check: every held pull is checked against its queue's end, and the due
    /// ones (new data or timed out) are run again and answered.
    pub fn check_hold_request(self: &Arc<Self>) {
        let now = self.context.env.clock.instant();
        for request in self.hold.check_hold_request(now) {
            self.execute_request_when_wakeup(request);
        }
    }

    /// The hold service's loop, for the broker to spawn: a check every 5 s
    /// (`shortPollingTimeMills` with long polling off), and at the earliest deadline of a
    /// held pull when that is sooner. Runs until its task is aborted.
    pub async fn run_hold_service(self: Arc<Self>) {
        let clock = self.context.env.clock.clone();
        let mut last_check = clock.instant();
        loop {
            let changed = self.hold.deadline_changed();
            let wake_at = self.hold.next_wake(last_check);
            tokio::select! {
                // Fixed polling order: tokio's random order draws from an RNG outside the
                // simulator's control and would make simulated runs irreproducible.
                biased;
                () = clock.sleep_until(wake_at) => {
                    self.check_hold_request();
                    last_check = clock.instant();
                }
                () = changed => {}
            }
        }
    }

    /// Runs a due held pull again, suspension not allowed, and writes the answer on its
    /// connection (`executeRequestWhenWakeup`). The work runs on its own task so the caller
    /// (the reput service, the checker) never waits on a read or a slow connection.
    fn execute_request_when_wakeup(self: &Arc<Self>, held: PullRequest) {
        if held.channel.is_closed() {
            return;
        }
        let processor = self.clone();
        tokio::spawn(async move {
            let PullRequest {
                request, channel, ..
            } = held;
            let response = match processor.process_request(&channel, &request, false).await {
                Ok(Some(response)) => response,
                Ok(None) => return,
                Err(error) => RemotingCommand::error_to(&request, error.code, error.remark),
            };
            if request.is_oneway() {
                return;
            }
            if let Err(error) = channel.send(&response).await {
                tracing::debug!(peer = %channel.peer_addr(), %error, "could not answer a held pull");
            }
        });
    }

    /// The whole pull (`processRequest(channel, request, brokerAllowSuspend)`). `Ok(None)`:
    /// the request is held and will be answered later.
    async fn process_request(
        &self,
        channel: &Channel,
        request: &RemotingCommand,
        allow_suspend: bool,
    ) -> Result<Option<RemotingCommand>, ProcessError> {
        let header: PullMessageRequestHeader = request.decode_header()?;
        let plan = self.prepare(channel, header).await?;
        let header = &plan.header;
        let (response, result) = self.read(channel, request, &plan);
        let mut answer = Some(response);
        if answer
            .as_ref()
            .is_some_and(|r| r.code == response_code::PULL_NOT_FOUND)
            && allow_suspend
            && header.sys_flag & pull_sys_flag::SUSPEND != 0
        {
            let timeout_ms = if self.context.config.long_polling_enable {
                u64::try_from(header.suspend_timeout_millis).unwrap_or(0)
            } else {
                self.context.config.short_polling_time_mills
            };
            let held = PullRequest {
                request: request.clone(),
                channel: channel.clone(),
                timeout: Duration::from_millis(timeout_ms).min(HOLD_TIMEOUT_MAX),
                suspended_at: self.context.env.clock.instant(),
                pull_from_this_offset: header.queue_offset,
                filter: plan.filter.clone(),
            };
            if self.hold.suspend_pull_request(
                &header.topic,
                header.queue_id,
                held,
                result.max_offset,
            ) {
                answer = None;
            } else {
                // A message arrived between the read and the hold: read again.
                answer = Some(self.read(channel, request, &plan).0);
            }
        }
        if allow_suspend
            && header.sys_flag & pull_sys_flag::COMMIT_OFFSET != 0
            && self.context.store_config.broker_role != BrokerRole::Slave
        {
            self.context.consumer_offset_manager.commit_offset(
                &header.consumer_group,
                &header.topic,
                header.queue_id,
                header.commit_offset,
            );
        }
        Ok(answer)
    }

    /// The checks and the subscription, in Java's order.
    async fn prepare(
        &self,
        channel: &Channel,
        header: PullMessageRequestHeader,
    ) -> Result<PullPlan, PullError> {
        let context = &self.context;
        if !perm::is_readable(context.config.broker_permission) {
            return Err(PullError::BrokerNotReadable {
                broker_ip: context.config.broker_ip1.clone(),
            });
        }
        let group_name = &header.consumer_group;
        let Some((group, created)) = context
            .subscription_group_manager
            .find_subscription_group_config(group_name)
        else {
            return Err(PullError::SubscriptionGroupNotExist {
                group: group_name.clone(),
            });
        };
        if created && let Err(error) = context.subscription_group_manager.persist().await {
            tracing::error!(group = %group_name, %error, "could not persist an auto-created subscription group");
        }
        if !group.consume_enable {
            return Err(PullError::GroupConsumeDisabled {
                group: group_name.clone(),
            });
        }
        let Some(topic_config) = context
            .topic_config_manager
            .select_topic_config(&header.topic)
        else {
            tracing::error!(topic = %header.topic, consumer = %channel.peer_addr(), "pull from a topic that does not exist");
            return Err(PullError::TopicNotExist {
                topic: header.topic.clone(),
            });
        };
        if !perm::is_readable(topic_config.perm) {
            return Err(PullError::TopicNotReadable {
                topic: header.topic.clone(),
            });
        }
        if header.queue_id < 0 || header.queue_id >= topic_config.read_queue_nums {
            let error = PullError::IllegalQueueId {
                queue_id: header.queue_id,
                topic: header.topic.clone(),
                read_queue_nums: topic_config.read_queue_nums,
                consumer: channel.peer_addr(),
            };
            tracing::warn!(%error, "pull from an illegal queue");
            return Err(error);
        }
        let subscription = if header.sys_flag & pull_sys_flag::SUBSCRIPTION != 0 {
            self.request_subscription(&header)?
        } else {
            self.heartbeat_subscription(&header, &group)?
        };
        Ok(PullPlan {
            filter: Arc::new(SubscriptionFilter::new(subscription)),
            header,
            group,
        })
    }

    /// The subscription the request carries (`FilterAPI.build`).
    fn request_subscription(
        &self,
        header: &PullMessageRequestHeader,
    ) -> Result<SubscriptionData, PullError> {
        let expression = header.subscription.as_deref().unwrap_or("");
        let expression_type = header.expression_type.as_deref();
        if is_tag_type(expression_type) {
            return Ok(SubscriptionData::build(
                &header.topic,
                expression,
                header.sub_version,
            ));
        }
        if expression.trim().is_empty() {
            tracing::warn!(group = %header.consumer_group, ?expression_type, "empty non-tag subscription");
            return Err(PullError::SubscriptionParseFailed);
        }
        Err(PullError::FilterNotSupported {
            expression_type: expression_type.unwrap_or_default().to_owned(),
        })
    }

    /// The subscription from the group's heartbeats.
    fn heartbeat_subscription(
        &self,
        header: &PullMessageRequestHeader,
        group: &SubscriptionGroupConfig,
    ) -> Result<SubscriptionData, PullError> {
        let Some(info) = self
            .context
            .consumer_manager
            .consumer_group_info(&header.consumer_group)
        else {
            tracing::warn!(group = %header.consumer_group, "pull from a group with no heartbeat");
            return Err(PullError::GroupInfoNotExist);
        };
        if !group.consume_broadcast_enable && info.message_model == MessageModel::Broadcasting {
            return Err(PullError::BroadcastNotAllowed {
                group: header.consumer_group.clone(),
            });
        }
        let Some(subscription) = info.subscriptions.get(&header.topic).cloned() else {
            tracing::warn!(group = %header.consumer_group, topic = %header.topic, "pull without a subscription");
            return Err(PullError::SubscriptionNotExist);
        };
        if subscription.sub_version < header.sub_version {
            tracing::warn!(group = %header.consumer_group, sub = %subscription.sub_string, "the broker's subscription is not the latest");
            return Err(PullError::SubscriptionNotLatest);
        }
        if !is_tag_type(Some(&subscription.expression_type)) {
            return Err(PullError::FilterNotSupported {
                expression_type: subscription.expression_type,
            });
        }
        Ok(subscription)
    }

    /// Reads from the store and builds the response (which may still be held).
    fn read(
        &self,
        channel: &Channel,
        request: &RemotingCommand,
        plan: &PullPlan,
    ) -> (RemotingCommand, GetMessageResult) {
        let header = &plan.header;
        let filter: &dyn MessageFilter = plan.filter.as_ref();
        let result = self.context.store.get_message(
            &header.topic,
            header.queue_id,
            header.queue_offset,
            header.max_msg_nums,
            Some(filter),
        );
        if let Some(fall_behind) = result.disk_fall_behind {
            self.disk_fall_behind.record(
                &header.consumer_group,
                &header.topic,
                header.queue_id,
                fall_behind,
            );
        }
        // Java suggests `whichBrokerWhenConsumeSlowly` for data out of memory only with
        // `slaveReadEnable` (off by default, and not a ferrocket setting): always the master.
        let mut suggest_which_broker_id = MASTER_ID;
        let mut code = pull_response_code(result.status, header.queue_offset);
        if code == response_code::PULL_OFFSET_MOVED {
            if self.context.store_config.broker_role == BrokerRole::Slave {
                // A slave never moves a consumer (offsetCheckInSlave off): retry, at the
                // group's broker.
                suggest_which_broker_id = plan.group.broker_id;
                code = response_code::PULL_RETRY_IMMEDIATELY;
                tracing::warn!(topic = %header.topic, group = %header.consumer_group, request_offset = header.queue_offset, "PULL_OFFSET_MOVED: no correction on a slave");
            } else {
                tracing::warn!(topic = %header.topic, group = %header.consumer_group, request_offset = header.queue_offset, new_offset = result.next_begin_offset, status = status_name(result.status), consumer = %channel.peer_addr(), "PULL_OFFSET_MOVED: offset corrected");
            }
        }
        let mut response =
            RemotingCommand::response_to(request, code, Some(status_name(result.status).into()))
                .with_header(&PullMessageResponseHeader {
                    suggest_which_broker_id,
                    next_begin_offset: result.next_begin_offset,
                    min_offset: result.min_offset,
                    max_offset: result.max_offset,
                });
        if code == response_code::SUCCESS {
            let mut body = BytesMut::with_capacity(result.buffer_total_size());
            for record in &result.messages {
                body.extend_from_slice(record);
            }
            response.body = body.freeze();
        }
        (response, result)
    }
}

#[async_trait::async_trait]
impl RequestProcessor for PullMessageProcessor {
    async fn process(
        &self,
        channel: &Channel,
        request: RemotingCommand,
    ) -> Result<Option<RemotingCommand>, ProcessError> {
        self.process_request(channel, &request, true).await
    }
}
