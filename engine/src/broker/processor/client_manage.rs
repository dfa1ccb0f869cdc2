//! Client management: the requests by which producers and consumers make themselves known to
//! the broker, share out queues and keep their consume offsets, and the housekeeping that
//! forgets clients that went away.
//!
//! - [`ClientManageProcessor`] (`ClientManageProcessor.java`): HEART_BEAT (34),
//!   UNREGISTER_CLIENT (35), CHECK_CLIENT_CONFIG (46);
//! - [`ConsumerManageProcessor`] (`ConsumerManageProcessor.java`):
//!   GET_CONSUMER_LIST_BY_GROUP (38), UPDATE_CONSUMER_OFFSET (15), QUERY_CONSUMER_OFFSET (14),
//!   and the queue locks of orderly consumers, LOCK_BATCH_MQ (41) and UNLOCK_BATCH_MQ (42),
//!   which Java serves from `AdminBrokerProcessor` (its default processor) and which fit
//!   here with the rest of a consumer's rebalance traffic;
//! - [`ClientHousekeeping`] (`ClientHousekeepingService.java`): a connection listener that
//!   drops a closed connection's clients, and [`run_scan`], the 10 s scan that expires clients
//!   silent for 120 s.
//!
//! Whenever a consumer group's membership changes (a consumer joins, leaves, closes its
//! connection or expires) the group's remaining connections get a oneway
//! NOTIFY_CONSUMER_IDS_CHANGED (40) so they rebalance at once instead of at their next 20 s
//! rebalance ([`notify_consumer_ids_changed`], `Broker2Client.notifyConsumerIdsChanged`).
//! Notifications are best effort: a write that fails, or that a backed-up connection cannot
//! take within [`NOTIFY_WRITE_TIMEOUT`], is logged and dropped; it never fails the request
//! that caused it.
//!
//! The processors read time from the context's clock only in `process`; the decisions take
//! `now` as a value so tests can step past the 60 s lock and 120 s client expiries.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::broker::client_manager::{ClientChannelInfo, ConsumerRegistration};
use crate::broker::context::BrokerContext;
use crate::broker::topic_config::system_topic;
use crate::clock::{ClockExt, Instant};
use crate::protocol::heartbeat::{
    EXPRESSION_TYPE_TAG, GetConsumerListByGroupResponseBody, HeartbeatData, LockBatchRequestBody,
    LockBatchResponseBody, SubscriptionData,
};
use crate::protocol::{from_json, perm, to_json};
use crate::remoting::headers::{
    GetConsumerListByGroupRequestHeader, NotifyConsumerIdsChangedRequestHeader,
    QueryConsumerOffsetRequestHeader, QueryConsumerOffsetResponseHeader,
    UnregisterClientRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use crate::remoting::transport::{
    Channel, ChannelEvent, ChannelEventListener, ProcessError, RequestProcessor,
};
use crate::remoting::{RemotingCommand, request_code as rc, response_code};
use crate::store::message_store::MessageStore;

/// How long one NOTIFY_CONSUMER_IDS_CHANGED may wait to be queued on a connection (Java waits
/// 10 ms for a oneway permit, then gives up).
pub const NOTIFY_WRITE_TIMEOUT: Duration = Duration::from_millis(10);

/// How often [`run_scan`] looks for silent clients (`ClientHousekeepingService`: first after
/// 10 s, then every 10 s).
pub const CLIENT_SCAN_INTERVAL: Duration = Duration::from_secs(10);

/// `TopicSysFlag` bit of a topic subscribed in unit mode (`FLAG_UNIT_SUB`).
const TOPIC_SYS_FLAG_UNIT_SUB: i32 = 1 << 1;

/// Java's remark on QUERY_NOT_FOUND for a group with no committed offset.
pub const QUERY_OFFSET_NOT_FOUND_REMARK: &str =
    "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first";

type Outcome = Result<Option<RemotingCommand>, ProcessError>;

fn not_supported(request: &RemotingCommand) -> Outcome {
    Ok(Some(RemotingCommand::error_to(
        request,
        response_code::REQUEST_CODE_NOT_SUPPORTED,
        format!(" request type {} not supported", request.code),
    )))
}

/// Reads a JSON body; a missing or malformed body is a `SYSTEM_ERROR` naming the body, as
/// Java answers the exception its decoder throws.
fn decode_body<T: serde::de::DeserializeOwned>(
    request: &RemotingCommand,
    what: &'static str,
) -> Result<T, ProcessError> {
    if request.body.is_empty() {
        return Err(ProcessError::system(format!(
            "the request has no {what} body"
        )));
    }
    from_json(what, &request.body).map_err(|error| ProcessError::system(error.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Notifications.
// ---------------------------------------------------------------------------------------------

/// Tells every connection of consumer group `group` that the group's membership changed
/// (oneway NOTIFY_CONSUMER_IDS_CHANGED, header `consumerGroup`), unless the broker's
/// `notifyConsumerIdsChangedEnable` is off. Returns how many notifications were queued; a
/// connection that is closed or cannot take the write within [`NOTIFY_WRITE_TIMEOUT`] is
/// skipped.
pub async fn notify_consumer_ids_changed(context: &BrokerContext, group: &str) -> usize {
    if !context.config.notify_consumer_ids_changed_enable {
        return 0;
    }
    let header = NotifyConsumerIdsChangedRequestHeader {
        consumer_group: group.to_owned(),
    };
    let mut sent = 0;
    for channel in context.consumer_manager.channels_of_group(group) {
        let request =
            RemotingCommand::request_with_header(rc::NOTIFY_CONSUMER_IDS_CHANGED, &header);
        let outcome = context
            .env
            .clock
            .timeout(NOTIFY_WRITE_TIMEOUT, channel.invoke_oneway(request))
            .await;
        match outcome {
            Ok(Ok(())) => sent += 1,
            Ok(Err(error)) => {
                tracing::warn!(group, peer = %channel.peer_addr(), %error, "notifyConsumerIdsChanged failed");
            }
            Err(_) => {
                tracing::warn!(group, peer = %channel.peer_addr(), "notifyConsumerIdsChanged timed out");
            }
        }
    }
    sent
}

/// Notifies `groups` from a task of its own, for callers that cannot wait (the connection
/// listener runs synchronously).
fn spawn_notify(context: &Arc<BrokerContext>, groups: Vec<String>) {
    if groups.is_empty() || !context.config.notify_consumer_ids_changed_enable {
        return;
    }
    let context = context.clone();
    tokio::spawn(async move {
        for group in groups {
            notify_consumer_ids_changed(&context, &group).await;
        }
    });
}

/// Writes `config/topics.json` after a topic was created; Java logs a failure and carries on.
async fn persist_topics(context: &BrokerContext) {
    if let Err(error) = context.topic_config_manager.persist().await {
        tracing::error!(%error, "could not persist the topic table");
    }
}

/// Writes `config/subscriptionGroup.json` after a group was created; Java logs a failure and
/// carries on.
async fn persist_subscription_groups(context: &BrokerContext) {
    if let Err(error) = context.subscription_group_manager.persist().await {
        tracing::error!(%error, "could not persist the subscription group table");
    }
}

// ---------------------------------------------------------------------------------------------
// HEART_BEAT, UNREGISTER_CLIENT, CHECK_CLIENT_CONFIG.
// ---------------------------------------------------------------------------------------------

/// The body of CHECK_CLIENT_CONFIG (`CheckClientRequestBody`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct CheckClientRequestBody {
    /// The client asking.
    #[serde(default)]
    client_id: String,
    /// Its consumer group.
    #[serde(default)]
    group: String,
    /// The subscription to check.
    #[serde(default)]
    subscription_data: Option<SubscriptionData>,
}

/// `ExpressionType.isTagType`: absent, empty or `TAG`.
fn is_tag_type(expression_type: &str) -> bool {
    expression_type.is_empty() || expression_type == EXPRESSION_TYPE_TAG
}

/// HEART_BEAT, UNREGISTER_CLIENT and CHECK_CLIENT_CONFIG (`ClientManageProcessor`).
#[derive(Debug)]
pub struct ClientManageProcessor {
    context: Arc<BrokerContext>,
}

impl ClientManageProcessor {
    /// A processor over `context`.
    pub fn new(context: Arc<BrokerContext>) -> Self {
        Self { context }
    }

    /// Registers the heartbeat's consumer and producer groups on `channel`. For each
    /// consumer group: find (or auto-create) its settings, create `%RETRY%<group>` with the
    /// group's `retryQueueNums` queues and perm RW, register the consumer, and notify the
    /// group when a connection joined or a topic was added. An unknown group with
    /// auto-creation off still registers, without a retry topic (as Java).
    async fn heart_beat(
        &self,
        channel: &Channel,
        request: &RemotingCommand,
        now: Instant,
    ) -> Outcome {
        let context = &self.context;
        let heartbeat: HeartbeatData = decode_body(request, "HeartbeatData")?;
        let client = ClientChannelInfo {
            channel: channel.clone(),
            client_id: heartbeat.client_id.clone(),
            language: request.language,
            version: request.version,
            last_update: now,
        };
        let mut groups_created = false;
        let mut topics_created = false;
        let mut changed_groups = Vec::new();
        for consumer in heartbeat.consumer_data_set {
            let group = consumer.group_name;
            if group.is_empty() {
                tracing::warn!(client = %heartbeat.client_id, "heartbeat names a consumer group \"\"; ignored");
                continue;
            }
            let mut notify_enabled = true;
            if let Some((config, created)) = context
                .subscription_group_manager
                .find_subscription_group_config(&group)
            {
                groups_created |= created;
                notify_enabled = config.notify_consumer_ids_changed_enable;
                let sys_flag = if consumer.unit_mode {
                    TOPIC_SYS_FLAG_UNIT_SUB
                } else {
                    0
                };
                let (_, created) = context
                    .topic_config_manager
                    .create_topic_in_send_message_back_method(
                        &system_topic::retry_topic(&group),
                        config.retry_queue_nums,
                        perm::READ | perm::WRITE,
                        sys_flag,
                    );
                topics_created |= created;
            }
            // Java also reports a subscription change (a topic added) as a change of the
            // group; the consumer table says only whether a connection joined.
            let topic_added = consumer.subscription_data_set.iter().any(|subscription| {
                context
                    .consumer_manager
                    .find_subscription_data(&group, &subscription.topic)
                    .is_none()
            });
            let joined = context.consumer_manager.register_consumer(
                ConsumerRegistration {
                    group: group.clone(),
                    client: client.clone(),
                    consume_type: consumer.consume_type,
                    message_model: consumer.message_model,
                    consume_from_where: consumer.consume_from_where,
                    subscriptions: consumer.subscription_data_set,
                },
                now,
            );
            if joined || topic_added {
                tracing::info!(group, client = %heartbeat.client_id, peer = %channel.peer_addr(), joined, topic_added, "consumer group changed");
                if notify_enabled {
                    changed_groups.push(group);
                }
            }
        }
        for producer in heartbeat.producer_data_set {
            if producer.group_name.is_empty() {
                continue;
            }
            context
                .producer_manager
                .register_producer(&producer.group_name, client.clone(), now);
        }
        if groups_created {
            persist_subscription_groups(context).await;
        }
        if topics_created {
            persist_topics(context).await;
            context.topics_registered().await;
        }
        for group in changed_groups {
            notify_consumer_ids_changed(context, &group).await;
        }
        Ok(Some(RemotingCommand::success_to(request)))
    }

    /// Removes `channel` from the named producer and consumer groups and notifies the rest
    /// of the consumer group. Empty group names (the C++ client's unused one) are skipped.
    async fn unregister_client(&self, channel: &Channel, request: &RemotingCommand) -> Outcome {
        let context = &self.context;
        let header: UnregisterClientRequestHeader = request.decode_header()?;
        if let Some(group) = header.producer_group.filter(|g| !g.is_empty()) {
            context
                .producer_manager
                .unregister_producer(&group, channel.id());
        }
        if let Some(group) = header.consumer_group.filter(|g| !g.is_empty()) {
            let mut notify_enabled = true;
            if let Some((config, created)) = context
                .subscription_group_manager
                .find_subscription_group_config(&group)
            {
                notify_enabled = config.notify_consumer_ids_changed_enable;
                if created {
                    persist_subscription_groups(context).await;
                }
            }
            let removed = context
                .consumer_manager
                .unregister_consumer(&group, channel.id());
            if removed {
                tracing::info!(group, client = %header.client_id, "consumer unregistered");
                if notify_enabled {
                    notify_consumer_ids_changed(context, &group).await;
                }
            }
        }
        Ok(Some(RemotingCommand::success_to(request)))
    }

    /// Accepts tag subscriptions; other expression types (SQL92) need the property filter,
    /// which this broker does not have (Java with `enablePropertyFilter=false`).
    fn check_client_config(&self, request: &RemotingCommand) -> Outcome {
        let body: CheckClientRequestBody = decode_body(request, "CheckClientRequestBody")?;
        if let Some(subscription) = body.subscription_data
            && !is_tag_type(&subscription.expression_type)
        {
            tracing::info!(client = %body.client_id, group = %body.group, expression_type = %subscription.expression_type, "refused a non-tag subscription");
            return Ok(Some(RemotingCommand::error_to(
                request,
                response_code::SYSTEM_ERROR,
                format!(
                    "The broker does not support consumer to filter message by {}",
                    subscription.expression_type
                ),
            )));
        }
        Ok(Some(RemotingCommand::success_to(request)))
    }
}

#[async_trait::async_trait]
impl RequestProcessor for ClientManageProcessor {
    async fn process(&self, channel: &Channel, request: RemotingCommand) -> Outcome {
        match request.code {
            rc::HEART_BEAT => {
                let now = self.context.env.clock.instant();
                self.heart_beat(channel, &request, now).await
            }
            rc::UNREGISTER_CLIENT => self.unregister_client(channel, &request).await,
            rc::CHECK_CLIENT_CONFIG => self.check_client_config(&request),
            _ => not_supported(&request),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GET_CONSUMER_LIST_BY_GROUP, UPDATE_CONSUMER_OFFSET, QUERY_CONSUMER_OFFSET.
// ---------------------------------------------------------------------------------------------

/// What a group without a committed offset on a queue is told (`queryConsumerOffset`): offset
/// 0 while the queue still starts at 0 and its first message is hot (in the page-cache
/// window of `accessMessageInMemoryMaxRatio`) or the queue is empty, so a brand-new group
/// reads a young queue from its start; otherwise `None` (QUERY_NOT_FOUND), and the client
/// applies its ConsumeFromWhere.
fn first_offset_without_commit(store: &MessageStore, topic: &str, queue_id: i32) -> Option<i64> {
    if store.min_offset_in_queue(topic, queue_id) > 0 {
        return None;
    }
    // `checkInDiskByConsumeOffset(topic, queue, 0)` is false for a queue with no entry 0.
    if store.max_offset_in_queue(topic, queue_id) <= 0 {
        return Some(0);
    }
    (!store.check_in_disk_by_consume_offset(topic, queue_id, 0)).then_some(0)
}

/// GET_CONSUMER_LIST_BY_GROUP, UPDATE_CONSUMER_OFFSET and QUERY_CONSUMER_OFFSET
/// (`ConsumerManageProcessor`), and the queue locks of orderly consumers, LOCK_BATCH_MQ and
/// UNLOCK_BATCH_MQ (which Java serves in `AdminBrokerProcessor`).
#[derive(Debug)]
pub struct ConsumerManageProcessor {
    context: Arc<BrokerContext>,
}

impl ConsumerManageProcessor {
    /// A processor over `context`.
    pub fn new(context: Arc<BrokerContext>) -> Self {
        Self { context }
    }

    /// The client ids of the group's consumers; `SYSTEM_ERROR` when it has none.
    fn consumer_list_by_group(&self, channel: &Channel, request: &RemotingCommand) -> Outcome {
        let header: GetConsumerListByGroupRequestHeader = request.decode_header()?;
        let ids = self
            .context
            .consumer_manager
            .consumer_group_info(&header.consumer_group)
            .map(|info| info.client_ids())
            .unwrap_or_default();
        if ids.is_empty() {
            tracing::warn!(group = %header.consumer_group, peer = %channel.peer_addr(), "no consumer for this group");
            return Ok(Some(RemotingCommand::error_to(
                request,
                response_code::SYSTEM_ERROR,
                format!("no consumer for this group, {}", header.consumer_group),
            )));
        }
        let body = GetConsumerListByGroupResponseBody {
            consumer_id_list: ids,
        };
        Ok(Some(
            RemotingCommand::success_to(request).with_body(to_json(&body)),
        ))
    }

    /// Commits the offset (the request may be oneway). A negative offset (ali-ons sends -1
    /// for queues it has none for) is not stored: Java stores it, overwriting a real offset
    /// with one that reads back as "no offset".
    fn update_consumer_offset(&self, channel: &Channel, request: &RemotingCommand) -> Outcome {
        let header: UpdateConsumerOffsetRequestHeader = request.decode_header()?;
        if header.commit_offset < 0 {
            tracing::debug!(group = %header.consumer_group, topic = %header.topic, queue_id = header.queue_id, offset = header.commit_offset, peer = %channel.peer_addr(), "negative consumer offset not stored");
        } else {
            self.context.consumer_offset_manager.commit_offset(
                &header.consumer_group,
                &header.topic,
                header.queue_id,
                header.commit_offset,
            );
        }
        Ok(Some(RemotingCommand::success_to(request)))
    }

    /// The committed offset, or Java's first-offset rule ([`first_offset_without_commit`]).
    fn query_consumer_offset(&self, request: &RemotingCommand) -> Outcome {
        let header: QueryConsumerOffsetRequestHeader = request.decode_header()?;
        let committed = self
            .context
            .consumer_offset_manager
            .query_offset(&header.consumer_group, &header.topic, header.queue_id)
            .filter(|offset| *offset >= 0);
        let offset = committed.or_else(|| {
            first_offset_without_commit(&self.context.store, &header.topic, header.queue_id)
        });
        Ok(Some(match offset {
            Some(offset) => RemotingCommand::success_to(request)
                .with_header(&QueryConsumerOffsetResponseHeader { offset }),
            None => RemotingCommand::error_to(
                request,
                response_code::QUERY_NOT_FOUND,
                QUERY_OFFSET_NOT_FOUND_REMARK,
            ),
        }))
    }

    /// Reads a lock or unlock body; one without a group or client id is refused, since a
    /// lock held for nobody would block the group's queues until it expired.
    fn decode_lock_body(request: &RemotingCommand) -> Result<LockBatchRequestBody, ProcessError> {
        let what = if request.code == rc::LOCK_BATCH_MQ {
            "LockBatchRequestBody"
        } else {
            "UnlockBatchRequestBody"
        };
        let body: LockBatchRequestBody = decode_body(request, what)?;
        if body.consumer_group.is_empty() || body.client_id.is_empty() {
            return Err(ProcessError::system(format!(
                "{what} needs consumerGroup and clientId"
            )));
        }
        Ok(body)
    }

    /// Locks (or renews) the queues that are free, expired or already the client's; answers
    /// the set the client now holds.
    fn lock_batch_mq(&self, request: &RemotingCommand, now: Instant) -> Outcome {
        let body = Self::decode_lock_body(request)?;
        let locked = self.context.rebalance_lock_manager.try_lock_batch(
            &body.consumer_group,
            &body.mq_set,
            &body.client_id,
            now,
        );
        let response = LockBatchResponseBody {
            lock_ok_mq_set: locked,
        };
        Ok(Some(
            RemotingCommand::success_to(request).with_body(to_json(&response)),
        ))
    }

    /// Releases the client's locks on the queues (the request may be oneway).
    fn unlock_batch_mq(&self, request: &RemotingCommand) -> Outcome {
        let body = Self::decode_lock_body(request)?;
        self.context.rebalance_lock_manager.unlock_batch(
            &body.consumer_group,
            &body.mq_set,
            &body.client_id,
        );
        Ok(Some(RemotingCommand::success_to(request)))
    }
}

#[async_trait::async_trait]
impl RequestProcessor for ConsumerManageProcessor {
    async fn process(&self, channel: &Channel, request: RemotingCommand) -> Outcome {
        match request.code {
            rc::GET_CONSUMER_LIST_BY_GROUP => self.consumer_list_by_group(channel, &request),
            rc::UPDATE_CONSUMER_OFFSET => self.update_consumer_offset(channel, &request),
            rc::QUERY_CONSUMER_OFFSET => self.query_consumer_offset(&request),
            rc::LOCK_BATCH_MQ => {
                let now = self.context.env.clock.instant();
                self.lock_batch_mq(&request, now)
            }
            rc::UNLOCK_BATCH_MQ => self.unlock_batch_mq(&request),
            _ => not_supported(&request),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Housekeeping.
// ---------------------------------------------------------------------------------------------

/// Drops a connection's producers and consumers when it closes, idles out or fails, and
/// notifies the consumer groups it left (`ClientHousekeepingService` as a listener).
#[derive(Debug)]
pub struct ClientHousekeeping {
    context: Arc<BrokerContext>,
}

impl ClientHousekeeping {
    /// A listener over `context`.
    pub fn new(context: Arc<BrokerContext>) -> Self {
        Self { context }
    }

    /// Removes connection `channel_id` from every producer and consumer group; returns the
    /// consumer groups that lost it and still have members (`doChannelCloseEvent`).
    pub fn do_channel_close_event(&self, channel_id: u64) -> Vec<String> {
        self.context
            .producer_manager
            .do_channel_close_event(channel_id);
        self.context
            .consumer_manager
            .do_channel_close_event(channel_id)
    }

    /// [`run_scan`] over this listener's context, for spawning next to the server.
    pub async fn run_scan(self: Arc<Self>) {
        run_scan(self.context.clone()).await;
    }
}

impl ChannelEventListener for ClientHousekeeping {
    fn on_event(&self, channel: &Channel, event: &ChannelEvent) {
        match event {
            ChannelEvent::Connect => {}
            ChannelEvent::Close | ChannelEvent::Idle | ChannelEvent::Exception(_) => {
                let changed = self.do_channel_close_event(channel.id());
                if !changed.is_empty() {
                    tracing::info!(peer = %channel.peer_addr(), ?event, groups = ?changed, "consumer connection gone");
                }
                spawn_notify(&self.context, changed);
            }
        }
    }
}

/// What one scan for silent clients did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientScanReport {
    /// The connections closed (by id), each silent for over 120 s in some group.
    pub closed_channel_ids: Vec<u64>,
    /// The consumer groups that lost a member.
    pub changed_groups: Vec<String>,
}

/// One scan (`scanExceptionChannel`): drops producers and consumers whose last heartbeat is
/// more than 120 s before `now`, closes their connections and notifies the consumer groups
/// that lost members. (Java does not notify here: its scan removes the channel before
/// closing it, so the close event finds nothing left to report; the remaining consumers
/// then wait for their 20 s rebalance.)
pub async fn scan_not_active_channels(context: &BrokerContext, now: Instant) -> ClientScanReport {
    let mut expired: BTreeMap<u64, Channel> = BTreeMap::new();
    for channel in context.producer_manager.scan_not_active_channel(now) {
        expired.insert(channel.id(), channel);
    }
    let (consumers, changed_groups) = context.consumer_manager.scan_not_active_channel(now);
    for channel in consumers {
        expired.insert(channel.id(), channel);
    }
    for channel in expired.values() {
        tracing::warn!(peer = %channel.peer_addr(), "SCAN: closing a client connection silent for over 120 s");
        channel.close();
    }
    for group in &changed_groups {
        notify_consumer_ids_changed(context, group).await;
    }
    ClientScanReport {
        closed_channel_ids: expired.into_keys().collect(),
        changed_groups,
    }
}

/// Runs [`scan_not_active_channels`] every [`CLIENT_SCAN_INTERVAL`], the first time one
/// interval after the start, until the task is dropped.
pub async fn run_scan(context: Arc<BrokerContext>) {
    let clock = context.env.clock.clone();
    let mut next = clock.instant() + CLIENT_SCAN_INTERVAL;
    loop {
        clock.sleep_until(next).await;
        let report = scan_not_active_channels(&context, clock.instant()).await;
        if !report.closed_channel_ids.is_empty() {
            tracing::info!(?report, "client scan");
        }
        // Fixed rate, without a burst of catch-up scans after a stall.
        next = (next + CLIENT_SCAN_INTERVAL).max(clock.instant());
    }
}

#[cfg(test)]
mod tests;
