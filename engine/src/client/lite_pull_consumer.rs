//! The lite pull consumer (Java 4.9's `DefaultLitePullConsumer` with
//! `DefaultLitePullConsumerImpl`, `RebalanceLitePullImpl` and `AssignedMessageQueue`): the
//! client pulls in the background into a bounded local buffer, and the application takes
//! batches out of it with [`poll`](LitePullConsumer::poll) when it is ready for them.
//!
//! Where it sits: on top of the client building blocks, beside the push and pull consumers.
//! The consumer gets its queues one of two ways, never both:
//!
//! - [`subscribe`](LitePullConsumer::subscribe): the group's queues of the topic are split
//!   among its consumers by the [`Rebalance`] core with the configured
//!   [`AllocateMessageQueueStrategy`] (every [`LitePullConsumerConfig::rebalance_interval`],
//!   and at once when a broker sends NOTIFY_CONSUMER_IDS_CHANGED); a queue that comes gets a
//!   pull task starting at the group's committed offset (or where `consume_from_where` says),
//!   a queue that goes has its task stopped and its buffered messages discarded
//!   (`RebalanceLitePullImpl` with `MessageQueueListenerImpl`);
//! - [`assign`](LitePullConsumer::assign): the application names the queues; no rebalance.
//!
//! Each assigned queue has one pull task (a spawned task, Java's `PullTaskImpl`) that
//! long-polls its broker (SUSPEND, SUBSCRIPTION and LITE_PULL, no COMMIT_OFFSET) for
//! `pull_batch_size` messages at a time and appends each non-empty answer to the buffer as
//! one batch (Java's `ConsumeRequest`), unless the queue is paused or the buffer is over a
//! threshold (flow control: all batches, the queue's message count, its body size, its offset
//! span). [`poll`](LitePullConsumer::poll) hands out one batch, oldest first, and records the
//! queue's consume offset; with `auto_commit` a poll at least `auto_commit_interval` after the
//! last one records every queue's consume offset in the [`OffsetStore`], which the
//! client instance persists every `persistConsumerOffsetInterval` and at
//! shutdown. [`seek`](LitePullConsumer::seek) discards the queue's buffered messages and
//! restarts its task at the new offset.
//!
//! The bookkeeping — assigned queues, pull and consume offsets, the buffer, flow control — is
//! the plain struct [`AssignedQueues`], tested without a network; the consumer wraps it with
//! the tasks.
//!
//! Invariants: a queue has at most one pull task whose answers count (each task carries a
//! generation, and answers of a replaced task are dropped); a queue's buffered batches are in
//! offset order and its process queue holds exactly the messages of those batches, so the
//! consume offset recorded by a poll never passes a message not yet handed out; no lock is
//! held across an await except the rebalance's and the poll's own async mutexes.
//!
//! Offsets live where the message model keeps them: on the brokers for clustering, in a
//! local file for broadcasting, where every consumer pulls every queue of its topics.
//!
//! Deviations from Java: SQL92 and class filters, hooks, namespaces, `unsubscribe` and the
//! topic-metadata change listener are not implemented; the user's [`MessageQueueListener`] is
//! called after the consumer's own update (Java replaces the user's listener with its own on
//! `subscribe`); when a pull finds no new or no matching message and nothing of the queue is
//! buffered, the consume offset moves to the next pull offset (the push consumer's
//! `correctTagsOffset`), so filtered-out messages are committed as consumed; a failed pull
//! after a seek retries from the seek offset; [`seek`] records the seek offset as the consume
//! offset at once; [`commit_sync`] also persists the offsets; `shutdown` records the consume
//! offsets before its final commit when `auto_commit` is on; a queue of a subscribed topic
//! whose start offset cannot be computed is taken when a later rebalance succeeds with it.
//!
//! [`seek`]: LitePullConsumer::seek
//! [`commit_sync`]: LitePullConsumer::commit_sync

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::allocate::{AllocateMessageQueueStrategy, Averagely};
use super::api::{ClientError, PullResult, PullStatus};
use super::config::ClientConfig;
use super::instance::{
    ClientInstance, ClientInstanceRegistry, ClientProcessorTable, MqConsumerInner, ServiceState,
};
use super::offset_store::{
    DEFAULT_LOCAL_OFFSET_STORE_DIR, OffsetStore, ReadOffset, ReadOffsetType, offset_storage_for,
};
use super::process_queue::{FlowControl, FlowControlThresholds};
use super::producer::{GroupNameError, check_group_name};
use super::pull_consumer::{
    AdminOffset, DEFAULT_CONSUMER_GROUP, KernelPull, PullApiWrapper, admin_offset,
    build_pull_sys_flag, fetch_topic_queues,
};
use super::push_consumer::InstanceRebalanceBroker;
use super::rebalance::{
    ComputePullFromWhereError, ProcessQueueHandle, Rebalance, RebalanceConfig,
    run_rebalance_service,
};
use crate::Env;
use crate::broker::processor::pull::pull_sys_flag;
use crate::clock::{ClockExt, Instant};
use crate::protocol::heartbeat::{
    ConsumeFromWhere, ConsumeType, ConsumerData, MessageModel, MessageQueue, SUB_ALL,
    SubscriptionData,
};
use crate::remoting::transport::AbortOnDrop;
use crate::store::message::StoredMessage;

/// Pause of a pull task while the buffer is over a threshold
/// (`PULL_TIME_DELAY_MILLS_WHEN_FLOW_CONTROL`, 50 ms).
pub const PULL_DELAY_WHEN_FLOW_CONTROL: Duration = Duration::from_millis(50);
/// Pause of a pull task while its queue is paused (`PULL_TIME_DELAY_MILLS_WHEN_PAUSE`, 1 s).
pub const PULL_DELAY_WHEN_PAUSE: Duration = Duration::from_secs(1);
/// Pause of a pull task after its start offset could not be computed
/// (`PULL_TIME_DELAY_MILLS_ON_EXCEPTION`, 3 s).
pub const PULL_DELAY_ON_EXCEPTION: Duration = Duration::from_secs(3);
/// The shortest auto-commit interval (`MIN_AUTOCOMMIT_INTERVAL_MILLIS`, 1 s).
pub const AUTO_COMMIT_INTERVAL_MIN: Duration = Duration::from_secs(1);
/// How often the rebalance runs without a wake-up (`rocketmq.client.rebalance.waitInterval`).
pub const REBALANCE_INTERVAL: Duration = Duration::from_secs(20);

/// Told of every change of a subscribed topic's assignment (`MessageQueueListener`): the
/// topic, all its readable queues and those this consumer now pulls. It runs on the
/// rebalance task, after the consumer updated its pull tasks; a panic in it is logged.
pub type MessageQueueListener =
    Arc<dyn Fn(&str, &BTreeSet<MessageQueue>, &BTreeSet<MessageQueue>) + Send + Sync + 'static>;

/// The lite pull consumer's settings (`DefaultLitePullConsumer`'s fields), Java's defaults
/// from [`new`](Self::new).
#[derive(Debug, Clone)]
pub struct LitePullConsumerConfig {
    /// `consumerGroup`.
    pub group: String,
    /// `messageModel`: clustering (the group shares the queues, offsets on the brokers) or
    /// broadcasting (every consumer pulls every queue, offsets in a local file).
    pub message_model: MessageModel,
    /// `consumeFromWhere`: where a queue without a committed offset starts
    /// (CONSUME_FROM_LAST_OFFSET).
    pub consume_from_where: ConsumeFromWhere,
    /// `consumeTimestamp` as epoch ms, for CONSUME_FROM_TIMESTAMP (Java: half an hour before
    /// start; here 0 until set).
    pub consume_timestamp_ms: i64,
    /// `allocateMessageQueueStrategy` ([`Averagely`]).
    pub allocate_strategy: Arc<dyn AllocateMessageQueueStrategy>,
    /// `autoCommit` (on): polls record consume offsets every `auto_commit_interval`.
    pub auto_commit: bool,
    /// `autoCommitIntervalMillis` (5 s, at least [`AUTO_COMMIT_INTERVAL_MIN`]).
    pub auto_commit_interval: Duration,
    /// `pullBatchSize` (10): messages per pull, so at most per batch.
    pub pull_batch_size: i32,
    /// `pullThresholdForAll` (10,000): pulls wait while buffered batches times
    /// `pull_batch_size` exceed it.
    pub pull_threshold_for_all: u64,
    /// `pullThresholdForQueue` (1,000): a queue's pulls wait while it buffers more messages.
    pub pull_threshold_for_queue: u64,
    /// `pullThresholdSizeForQueue` (100 MiB): a queue's pulls wait while it buffers more body
    /// MiB.
    pub pull_threshold_size_for_queue: u64,
    /// `consumeMaxSpan` (2,000): a queue's pulls wait while its buffered offsets span more.
    pub consume_max_span: i64,
    /// `pollTimeoutMillis` (5 s): the wait of [`LitePullConsumer::poll_default`].
    pub poll_timeout: Duration,
    /// `pullTimeDelayMillsWhenException` (1 s): pause after a failed pull.
    pub pull_delay_when_exception: Duration,
    /// `brokerSuspendMaxTimeMillis` (20 s): how long a broker may hold a pull.
    pub broker_suspend_max_time: Duration,
    /// `consumerTimeoutMillisWhenSuspend` (30 s): how long a held pull's answer is awaited;
    /// at least `broker_suspend_max_time`.
    pub consumer_timeout_when_suspend: Duration,
    /// The rebalance period of subscribe mode ([`REBALANCE_INTERVAL`]).
    pub rebalance_interval: Duration,
    /// Where a broadcasting consumer keeps its offsets (`rocketmq.client.localOffsetStoreDir`),
    /// a path on the consumer's disk.
    pub local_offset_store_dir: String,
    /// The client settings, shared with the client instance.
    pub client: ClientConfig,
}

impl Default for LitePullConsumerConfig {
    fn default() -> Self {
        Self {
            group: String::new(),
            message_model: MessageModel::Clustering,
            consume_from_where: ConsumeFromWhere::ConsumeFromLastOffset,
            consume_timestamp_ms: 0,
            allocate_strategy: Arc::new(Averagely),
            auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            pull_batch_size: 10,
            pull_threshold_for_all: 10_000,
            pull_threshold_for_queue: 1_000,
            pull_threshold_size_for_queue: 100,
            consume_max_span: 2_000,
            poll_timeout: Duration::from_secs(5),
            pull_delay_when_exception: Duration::from_secs(1),
            broker_suspend_max_time: Duration::from_secs(20),
            consumer_timeout_when_suspend: Duration::from_secs(30),
            rebalance_interval: REBALANCE_INTERVAL,
            local_offset_store_dir: DEFAULT_LOCAL_OFFSET_STORE_DIR.to_owned(),
            client: ClientConfig::default(),
        }
    }
}

impl LitePullConsumerConfig {
    /// Java's defaults for group `group` with the name servers `namesrv_addr`.
    pub fn new(group: impl Into<String>, namesrv_addr: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            client: ClientConfig::with_namesrv_addr(namesrv_addr),
            ..Self::default()
        }
    }

    /// The buffer's limits.
    pub fn thresholds(&self) -> BufferThresholds {
        BufferThresholds {
            pull_batch_size: self.pull_batch_size,
            pull_threshold_for_all: self.pull_threshold_for_all,
            queue: FlowControlThresholds {
                pull_threshold_for_queue: self.pull_threshold_for_queue,
                pull_threshold_size_for_queue: self.pull_threshold_size_for_queue,
                consume_concurrently_max_span: self.consume_max_span,
            },
        }
    }

    /// Java's `checkConfig` and setter checks, as the error [`LitePullConsumer::start`]
    /// returns.
    fn check(&self) -> Result<(), LitePullConsumerError> {
        check_group_name(&self.group)?;
        if self.group == DEFAULT_CONSUMER_GROUP {
            return Err(LitePullConsumerError::ReservedGroup);
        }
        if self.consumer_timeout_when_suspend < self.broker_suspend_max_time {
            return Err(LitePullConsumerError::InvalidConfig(
                "Long polling mode, the consumer consumerTimeoutMillisWhenSuspend must greater than brokerSuspendMaxTimeMillis",
            ));
        }
        if self.pull_batch_size <= 0 {
            return Err(LitePullConsumerError::InvalidConfig(
                "pullBatchSize must be > 0",
            ));
        }
        if self.auto_commit_interval < AUTO_COMMIT_INTERVAL_MIN {
            return Err(LitePullConsumerError::InvalidConfig(
                "autoCommitIntervalMillis must be at least 1000",
            ));
        }
        Ok(())
    }
}

/// Why a lite-pull-consumer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LitePullConsumerError {
    /// The consumer is not running (not started, or shut down) for an operation that needs
    /// it, or not new for [`LitePullConsumer::start`]. Start a new consumer.
    #[error("the lite pull consumer is not running or not new: {0:?}")]
    NotRunning(ServiceState),
    /// The group name is refused; nothing was registered.
    #[error("invalid consumer group: {0}")]
    InvalidGroup(#[from] GroupNameError),
    /// The group is [`DEFAULT_CONSUMER_GROUP`]. Choose another.
    #[error("consumerGroup can not equal {DEFAULT_CONSUMER_GROUP}, please specify another one")]
    ReservedGroup,
    /// A setting is out of range; fix the config.
    #[error("{0}")]
    InvalidConfig(&'static str),
    /// Another consumer of this group is registered with the same client instance. Use
    /// another group or instance name.
    #[error("the consumer group[{0}] has been created before, specify another name please")]
    GroupAlreadyCreated(String),
    /// `subscribe` after `assign`, or the other way round. A consumer does one or the other.
    #[error("Subscribe and assign are mutually exclusive.")]
    SubscriptionConflict,
    /// `subscribe` with an empty topic.
    #[error("Topic can not be null or empty.")]
    EmptyTopic,
    /// `assign` with no queue.
    #[error("Message queues can not be null or empty.")]
    EmptyAssignment,
    /// The queue is not assigned to this consumer; in subscribe mode a rebalance may just
    /// have moved it. Seek an assigned queue.
    #[error("The message queue is not in assigned list{}, message queue: {queue:?}",
        if *.rebalancing { ", may be rebalancing" } else { "" })]
    NotAssigned {
        /// The queue asked for.
        queue: MessageQueue,
        /// Whether the consumer subscribes (so the queue may come back with a rebalance).
        rebalancing: bool,
    },
    /// The seek offset is outside the queue's stored range `[min, max]`; nothing changed.
    #[error("Seek offset illegal, seek offset = {offset}, min offset = {min}, max offset = {max}")]
    SeekOffsetIllegal {
        /// The offset asked for.
        offset: i64,
        /// The queue's smallest stored offset.
        min: i64,
        /// The queue's next offset to be written.
        max: i64,
    },
    /// The name server knows the topic but lists no readable queue for it.
    #[error("namesrv find no queue for topic {0}")]
    NoQueues(String),
    /// The commit of a queue's offset could not be sent; the offset stays recorded and the
    /// periodic persist sends it again.
    #[error("commit of {queue:?} at offset {offset} failed: {source}")]
    Commit {
        /// The queue.
        queue: MessageQueue,
        /// The offset that was not sent.
        offset: i64,
        /// Why.
        source: Box<ClientError>,
    },
    /// A call failed on the way or at the broker or name server; the error says which.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Checks a seek offset against the queue's stored range (`seek`'s check): `min <= offset <=
/// max`, where `max` (the next offset to be written) is the end.
pub fn check_seek_offset(offset: i64, min: i64, max: i64) -> Result<(), LitePullConsumerError> {
    if offset < min || offset > max {
        return Err(LitePullConsumerError::SeekOffsetIllegal { offset, min, max });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The bookkeeping.

/// The buffer's limits (see the config fields of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferThresholds {
    /// `pullBatchSize`.
    pub pull_batch_size: i32,
    /// `pullThresholdForAll`.
    pub pull_threshold_for_all: u64,
    /// The per-queue limits: `pullThresholdForQueue`, `pullThresholdSizeForQueue` and
    /// `consumeMaxSpan` as the span.
    pub queue: FlowControlThresholds,
}

/// Why a pull task must wait before its next pull (checked in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferFlowControl {
    /// Buffered batches times `pull_batch_size` exceed `pull_threshold_for_all`.
    ConsumeRequests {
        /// Buffered batches.
        count: usize,
    },
    /// The queue is over one of its own limits.
    Queue(FlowControl),
}

/// What a pull task does next ([`AssignedQueues::pull_gate`]).
#[derive(Debug)]
pub enum PullGate {
    /// The task is no longer the queue's (unassigned, dropped, or replaced after a seek):
    /// it ends.
    Stop,
    /// The queue is paused: ask again after [`PULL_DELAY_WHEN_PAUSE`].
    Paused,
    /// The buffer is full: ask again after [`PULL_DELAY_WHEN_FLOW_CONTROL`].
    FlowControl(BufferFlowControl),
    /// Pull. `offset` is `None` when the queue has no position yet: the task computes the
    /// start offset (committed offset, else `consume_from_where`) and records it with
    /// [`AssignedQueues::set_start_offset`].
    Pull {
        /// The first offset to pull.
        offset: Option<i64>,
    },
}

/// One assigned queue (Java's `AssignedMessageQueue.MessageQueueState`).
#[derive(Debug)]
struct QueueState {
    process_queue: Arc<ProcessQueueHandle>,
    paused: bool,
    /// Where the next pull starts; `None` until known.
    pull_offset: Option<i64>,
    /// The next offset to consume: past everything polled; `None` until known.
    consume_offset: Option<i64>,
    /// A seek not yet taken by the pull task.
    seek_offset: Option<i64>,
    /// The generation of the pull task whose answers count.
    task: u64,
}

/// One pulled batch waiting for a poll (Java's `ConsumeRequest`).
#[derive(Debug)]
struct ConsumeRequest {
    queue: MessageQueue,
    process_queue: Arc<ProcessQueueHandle>,
    messages: Vec<StoredMessage>,
}

/// What an assignment change did: queues whose task must stop, and queues whose new task
/// (of the given generation) must start.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AssignmentChange {
    /// Queues no longer assigned; their process queues are dropped.
    pub removed: Vec<MessageQueue>,
    /// Queues to start a pull task for, with its generation.
    pub started: Vec<(MessageQueue, u64)>,
}

/// The lite pull consumer's bookkeeping (Java's `AssignedMessageQueue` with the consume
/// request cache): the assigned queues with their pause flag and offsets, and the buffer of
/// pulled batches. Plain data: the caller passes `now` in and runs what the answers say.
#[derive(Debug, Default)]
pub struct AssignedQueues {
    queues: BTreeMap<MessageQueue, QueueState>,
    buffer: VecDeque<ConsumeRequest>,
    next_task: u64,
}

impl AssignedQueues {
    /// No queue, empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The assigned queues.
    pub fn queues(&self) -> BTreeSet<MessageQueue> {
        self.queues.keys().cloned().collect()
    }

    /// Whether `queue` is assigned.
    pub fn contains(&self, queue: &MessageQueue) -> bool {
        self.queues.contains_key(queue)
    }

    /// The process queue of `queue`, if assigned.
    pub fn process_queue(&self, queue: &MessageQueue) -> Option<Arc<ProcessQueueHandle>> {
        self.queues
            .get(queue)
            .map(|state| state.process_queue.clone())
    }

    /// Buffered batches.
    pub fn buffered_batch_count(&self) -> usize {
        self.buffer.len()
    }

    /// Buffered messages of `queue`.
    pub fn buffered_message_count(&self, queue: &MessageQueue) -> u64 {
        self.queues
            .get(queue)
            .map_or(0, |state| state.process_queue.state().msg_count())
    }

    /// Where `queue`'s next pull starts.
    pub fn pull_offset(&self, queue: &MessageQueue) -> Option<i64> {
        self.queues.get(queue).and_then(|state| state.pull_offset)
    }

    /// `queue`'s next offset to consume, as polls and seeks left it.
    pub fn consume_offset(&self, queue: &MessageQueue) -> Option<i64> {
        self.queues
            .get(queue)
            .and_then(|state| state.consume_offset)
    }

    /// Whether `queue` is assigned and paused.
    pub fn is_paused(&self, queue: &MessageQueue) -> bool {
        self.queues.get(queue).is_some_and(|state| state.paused)
    }

    /// Makes the assignment exactly `queues` (assign mode, Java's
    /// `updateAssignedMessageQueue(Collection)`): new queues get an empty process queue
    /// created at `now`; queues kept keep their state.
    pub fn assign(&mut self, queues: &BTreeSet<MessageQueue>, now: Instant) -> AssignmentChange {
        let assigned = queues
            .iter()
            .map(|queue| {
                let process_queue = self
                    .process_queue(queue)
                    .unwrap_or_else(|| Arc::new(ProcessQueueHandle::new(now)));
                (queue.clone(), process_queue)
            })
            .collect();
        self.update(None, &assigned, &BTreeMap::new())
    }

    /// Makes the assignment of `topic` the rebalance's process-queue table of it (subscribe
    /// mode, Java's `updateAssignedMessageQueue(topic, mqDivided)`): a queue whose process
    /// queue is new (added, or re-created by the rebalance) restarts at its `start_offsets`
    /// entry when there is one.
    pub fn update_topic(
        &mut self,
        topic: &str,
        table: &BTreeMap<MessageQueue, Arc<ProcessQueueHandle>>,
        start_offsets: &BTreeMap<MessageQueue, i64>,
    ) -> AssignmentChange {
        let of_topic = table
            .iter()
            .filter(|(queue, _)| queue.topic == topic)
            .map(|(queue, handle)| (queue.clone(), handle.clone()))
            .collect();
        self.update(Some(topic), &of_topic, start_offsets)
    }

    fn update(
        &mut self,
        topic: Option<&str>,
        assigned: &BTreeMap<MessageQueue, Arc<ProcessQueueHandle>>,
        start_offsets: &BTreeMap<MessageQueue, i64>,
    ) -> AssignmentChange {
        let mut change = AssignmentChange::default();
        let in_scope = |queue: &MessageQueue| topic.is_none_or(|topic| queue.topic == topic);
        let gone: Vec<MessageQueue> = self
            .queues
            .keys()
            .filter(|queue| in_scope(queue) && !assigned.contains_key(*queue))
            .cloned()
            .collect();
        for queue in gone {
            if let Some(state) = self.queues.remove(&queue) {
                state.process_queue.state().set_dropped(true);
            }
            self.discard_buffered(&queue);
            change.removed.push(queue);
        }
        for (queue, handle) in assigned {
            if let Some(state) = self.queues.get(queue)
                && Arc::ptr_eq(&state.process_queue, handle)
            {
                continue;
            }
            if self.queues.contains_key(queue) {
                // The rebalance replaced the process queue: what the old one buffered goes.
                self.discard_buffered(queue);
            }
            let task = self.next_task();
            self.queues.insert(
                queue.clone(),
                QueueState {
                    process_queue: handle.clone(),
                    paused: false,
                    pull_offset: start_offsets.get(queue).copied(),
                    consume_offset: None,
                    seek_offset: None,
                    task,
                },
            );
            change.started.push((queue.clone(), task));
        }
        change
    }

    fn next_task(&mut self) -> u64 {
        self.next_task += 1;
        self.next_task
    }

    /// Drops every queue (shutdown): their process queues are dropped, the buffer emptied.
    pub fn clear(&mut self) -> Vec<MessageQueue> {
        let queues: Vec<MessageQueue> = self.queues.keys().cloned().collect();
        for state in self.queues.values() {
            state.process_queue.state().set_dropped(true);
        }
        self.queues.clear();
        self.buffer.clear();
        queues
    }

    /// Pauses the pulls of the assigned queues among `queues`; others are ignored.
    pub fn pause(&mut self, queues: &[MessageQueue]) {
        self.set_paused(queues, true);
    }

    /// Resumes the pulls of the assigned queues among `queues`; others are ignored.
    pub fn resume(&mut self, queues: &[MessageQueue]) {
        self.set_paused(queues, false);
    }

    fn set_paused(&mut self, queues: &[MessageQueue], paused: bool) {
        for queue in queues {
            if let Some(state) = self.queues.get_mut(queue) {
                state.paused = paused;
            }
        }
    }

    /// What the pull task of generation `task` for `queue` does now (the checks at the top
    /// of Java's `PullTaskImpl.run`, then `nextPullOffset`). Stamps the process queue's
    /// last pull at `now` whatever the answer, so the rebalance never takes a paused or
    /// flow-controlled queue for a stalled one. A pending seek is taken here: it becomes the
    /// pull offset.
    pub fn pull_gate(
        &mut self,
        queue: &MessageQueue,
        task: u64,
        thresholds: &BufferThresholds,
        now: Instant,
    ) -> PullGate {
        let buffered = self.buffer.len();
        let Some(state) = self.queues.get_mut(queue) else {
            return PullGate::Stop;
        };
        if state.task != task {
            return PullGate::Stop;
        }
        let flow = {
            let mut process_queue = state.process_queue.state();
            if process_queue.dropped() {
                return PullGate::Stop;
            }
            process_queue.set_last_pull_timestamp(now);
            if state.paused {
                return PullGate::Paused;
            }
            let all = (buffered as u64).saturating_mul(thresholds.pull_batch_size.max(0) as u64);
            if all > thresholds.pull_threshold_for_all {
                Some(BufferFlowControl::ConsumeRequests { count: buffered })
            } else {
                process_queue
                    .flow_control(&thresholds.queue, false)
                    .map(BufferFlowControl::Queue)
            }
        };
        if let Some(flow) = flow {
            return PullGate::FlowControl(flow);
        }
        if let Some(seek) = state.seek_offset.take() {
            state.pull_offset = Some(seek);
        }
        PullGate::Pull {
            offset: state.pull_offset,
        }
    }

    /// Records the start offset the task of generation `task` computed for `queue`, unless
    /// a position arrived meanwhile.
    pub fn set_start_offset(&mut self, queue: &MessageQueue, task: u64, offset: i64) {
        if let Some(state) = self.current_mut(queue, task)
            && state.pull_offset.is_none()
        {
            state.pull_offset = Some(offset);
        }
    }

    /// Takes the answer to the pull of the task of generation `task` (the end of Java's
    /// `PullTaskImpl.run`): a FOUND batch is buffered, and the pull offset moves to
    /// `next_begin_offset` (for OFFSET_ILLEGAL that is the broker's correction). An answer of
    /// a replaced task, or for a dropped or re-seeked queue, is discarded. Returns whether a
    /// batch was buffered.
    pub fn on_pulled(&mut self, queue: &MessageQueue, task: u64, result: PullResult) -> bool {
        let Some(state) = self.current_mut(queue, task) else {
            return false;
        };
        if state.seek_offset.is_some() || state.process_queue.state().dropped() {
            return false;
        }
        state.pull_offset = Some(result.next_begin_offset);
        let process_queue = state.process_queue.clone();
        if result.status == PullStatus::OffsetIllegal {
            tracing::warn!(
                ?queue,
                next = result.next_begin_offset,
                "the pull request offset illegal"
            );
        }
        if result.status == PullStatus::Found && !result.messages.is_empty() {
            process_queue.state().put_messages(&result.messages);
            self.buffer.push_back(ConsumeRequest {
                queue: queue.clone(),
                process_queue,
                messages: result.messages,
            });
            return true;
        }
        // Nothing new to hand out: when nothing of the queue waits either, everything before
        // the next pull offset is consumed (the push consumer's correctTagsOffset).
        if process_queue.state().msg_count() == 0 {
            state.consume_offset = Some(result.next_begin_offset);
        }
        false
    }

    /// Takes the oldest buffered batch of a queue still assigned (Java's `poll` after its
    /// wait), removes its messages from the queue's process queue and records the queue's
    /// consume offset: the first offset still buffered, or past the last one pulled.
    pub fn take(&mut self, now: Instant) -> Option<(MessageQueue, Vec<StoredMessage>)> {
        while let Some(request) = self.buffer.pop_front() {
            let Some(state) = self.queues.get_mut(&request.queue) else {
                continue;
            };
            if !Arc::ptr_eq(&state.process_queue, &request.process_queue) {
                continue;
            }
            let mut process_queue = state.process_queue.state();
            if process_queue.dropped() {
                continue;
            }
            let offsets: Vec<i64> = request.messages.iter().map(|m| m.queue_offset).collect();
            if let Some(offset) = process_queue.remove_messages(&offsets, now) {
                state.consume_offset = Some(offset);
            }
            drop(process_queue);
            return Some((request.queue, request.messages));
        }
        None
    }

    /// Moves `queue` to `offset` (Java's `seek` after its checks): discards what the queue
    /// buffered, records `offset` as its consume offset and as the pull offset of a new pull
    /// task, whose generation is returned; `None` when `queue` is not assigned.
    pub fn seek(&mut self, queue: &MessageQueue, offset: i64, now: Instant) -> Option<u64> {
        if !self.queues.contains_key(queue) {
            return None;
        }
        self.discard_buffered_at(queue, now);
        let task = self.next_task();
        let state = self.queues.get_mut(queue)?;
        state.seek_offset = Some(offset);
        state.consume_offset = Some(offset);
        state.task = task;
        Some(task)
    }

    /// The consume offsets to record in the offset store (Java's `commitAll`): of every
    /// assigned, not dropped queue that has one.
    pub fn committable(&self) -> Vec<(MessageQueue, i64)> {
        self.queues
            .iter()
            .filter(|(_, state)| !state.process_queue.state().dropped())
            .filter_map(|(queue, state)| Some((queue.clone(), state.consume_offset?)))
            .collect()
    }

    fn current_mut(&mut self, queue: &MessageQueue, task: u64) -> Option<&mut QueueState> {
        self.queues
            .get_mut(queue)
            .filter(|state| state.task == task)
    }

    /// Removes `queue`'s batches from the buffer (its process queue is dropped or replaced).
    fn discard_buffered(&mut self, queue: &MessageQueue) {
        self.buffer.retain(|request| &request.queue != queue);
    }

    /// Removes `queue`'s batches from the buffer and their messages from its process queue
    /// (Java's `clearMessageQueueInCache`).
    fn discard_buffered_at(&mut self, queue: &MessageQueue, now: Instant) {
        let mut offsets = Vec::new();
        self.buffer.retain(|request| {
            if &request.queue != queue {
                return true;
            }
            offsets.extend(request.messages.iter().map(|m| m.queue_offset));
            false
        });
        if let Some(state) = self.queues.get(queue) {
            state.process_queue.state().remove_messages(&offsets, now);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The consumer.

/// How the consumer gets its queues (Java's `SubscriptionType`).
#[derive(Debug, Clone, Default)]
enum Mode {
    /// Neither yet.
    #[default]
    None,
    /// Rebalanced: topic → subscription.
    Subscribe(BTreeMap<String, SubscriptionData>),
    /// Fixed by the application.
    Assign(BTreeSet<MessageQueue>),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every guarded value is changed by calls that leave it consistent before they can
    // panic, so a poisoned lock still guards a usable value.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The consumer as the instance, the rebalance task and the pull tasks see it.
struct LiteInner {
    config: LitePullConsumerConfig,
    thresholds: BufferThresholds,
    env: Env,
    instance: Weak<ClientInstance>,
    mode: Arc<Mutex<Mode>>,
    listener: Option<MessageQueueListener>,
    offset_store: Arc<OffsetStore>,
    rebalance: tokio::sync::Mutex<Rebalance>,
    /// Topic → readable queues, from installed routes; copied into the rebalance when it runs.
    subscribe_infos: Mutex<BTreeMap<String, BTreeSet<MessageQueue>>>,
    queues: Mutex<AssignedQueues>,
    /// The pull task of each assigned queue.
    tasks: Mutex<BTreeMap<MessageQueue, AbortOnDrop>>,
    /// The rebalance task.
    rebalance_task: Mutex<Option<AbortOnDrop>>,
    pull_api: PullApiWrapper,
    /// Woken when a batch is buffered or the consumer stops.
    available: Notify,
    /// Wakes the rebalance task (NOTIFY_CONSUMER_IDS_CHANGED, a new subscription).
    wake: Notify,
    /// Serializes polls (Java's `poll` is synchronized) and keeps the next auto-commit time.
    next_auto_commit: tokio::sync::Mutex<Option<Instant>>,
    stopped: AtomicBool,
}

impl std::fmt::Debug for LiteInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiteInner")
            .field("group", &self.config.group)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl MqConsumerInner for LiteInner {
    fn consumer_data(&self) -> ConsumerData {
        ConsumerData {
            consume_from_where: self.config.consume_from_where,
            consume_type: ConsumeType::ConsumeActively,
            group_name: self.config.group.clone(),
            message_model: self.config.message_model,
            subscription_data_set: self.subscriptions().into_values().collect(),
            unit_mode: false,
        }
    }

    fn is_subscribe_topic_need_update(&self, topic: &str) -> bool {
        self.subscriptions().contains_key(topic) && !lock(&self.subscribe_infos).contains_key(topic)
    }

    fn update_topic_subscribe_info(&self, topic: &str, queues: &BTreeSet<MessageQueue>) {
        if self.subscriptions().contains_key(topic) {
            lock(&self.subscribe_infos).insert(topic.to_owned(), queues.clone());
        }
    }

    async fn persist_consumer_offset(&self) {
        let queues = lock(&self.queues).queues();
        self.offset_store.persist_all(&queues).await;
    }

    fn rebalance_immediately(&self) {
        self.wake.notify_one();
    }
}

impl LiteInner {
    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Topic → subscription; empty unless subscribing.
    fn subscriptions(&self) -> BTreeMap<String, SubscriptionData> {
        match &*lock(&self.mode) {
            Mode::Subscribe(subscriptions) => subscriptions.clone(),
            Mode::None | Mode::Assign(_) => BTreeMap::new(),
        }
    }

    /// The subscription a pull of `topic` carries: the subscribed one, `*` when assigned.
    fn subscription_of(&self, topic: &str) -> SubscriptionData {
        self.subscriptions()
            .remove(topic)
            .unwrap_or_else(|| SubscriptionData::build(topic, SUB_ALL, 0))
    }

    /// Stops the tasks of removed queues and starts those of new ones.
    fn apply(self: &Arc<Self>, change: AssignmentChange) {
        let mut tasks = lock(&self.tasks);
        for queue in change.removed {
            tasks.remove(&queue);
        }
        if self.stopped() {
            return;
        }
        for (queue, task) in change.started {
            let handle = tokio::spawn(self.clone().pull_task(queue.clone(), task));
            // Replacing the entry aborts the queue's previous task.
            tasks.insert(queue, AbortOnDrop(handle));
        }
    }

    /// Assign mode: the assignment becomes `queues`.
    fn assign(self: &Arc<Self>, queues: &BTreeSet<MessageQueue>) {
        let change = lock(&self.queues).assign(queues, self.env.clock.instant());
        self.apply(change);
    }

    /// Records every assigned queue's consume offset in the offset store (`commitAll`).
    fn commit_all(&self) {
        for (queue, offset) in lock(&self.queues).committable() {
            self.offset_store.update_offset(&queue, offset, false);
        }
    }

    /// The rebalance task: at start, every `rebalance_interval`, and when woken.
    async fn rebalance_service(self: Arc<Self>) {
        run_rebalance_service(
            &self.env.clock,
            self.config.rebalance_interval,
            &self.wake,
            || self.stopped(),
            || self.do_rebalance(),
        )
        .await;
    }

    /// `doRebalance` with `RebalanceLitePullImpl`: every subscribed topic, then its pull tasks
    /// follow the rebalance's process-queue table (`MessageQueueListenerImpl`).
    async fn do_rebalance(self: &Arc<Self>) {
        let Some(instance) = self.instance.upgrade() else {
            return;
        };
        let subscriptions = self.subscriptions();
        if subscriptions.is_empty() {
            return;
        }
        let mut rebalance = self.rebalance.lock().await;
        for subscription in subscriptions.values() {
            if rebalance.subscriptions().get(&subscription.topic) != Some(subscription) {
                rebalance.set_subscription(subscription.clone());
            }
        }
        let infos = lock(&self.subscribe_infos).clone();
        for (topic, queues) in &infos {
            rebalance.update_topic_subscribe_info(topic, queues);
        }
        let mut changed = false;
        for topic in subscriptions.keys() {
            if self.stopped() {
                return;
            }
            let ids = if self.config.message_model == MessageModel::Broadcasting {
                // Broadcasting takes every queue; the group's members do not matter.
                Some(Vec::new())
            } else {
                instance
                    .rebalance_consumer_ids(topic, &self.config.group)
                    .await
            };
            let Some(ids) = ids else {
                continue;
            };
            let now = self.env.clock.instant();
            let outcome = match rebalance.rebalance_by_topic(topic, &ids, now).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    tracing::warn!(group = %self.config.group, topic, %error, "rebalance failed");
                    continue;
                }
            };
            let start_offsets: BTreeMap<MessageQueue, i64> = outcome
                .changes
                .pull_requests
                .iter()
                .map(|request| (request.message_queue.clone(), request.next_offset))
                .collect();
            let change =
                lock(&self.queues).update_topic(topic, rebalance.process_queues(), &start_offsets);
            self.apply(change);
            if let Some(queue_changed) = outcome.message_queue_changed {
                changed = true;
                if let Some(listener) = &self.listener {
                    let call = std::panic::AssertUnwindSafe(|| {
                        listener(
                            &queue_changed.topic,
                            &queue_changed.mq_all,
                            &queue_changed.mq_divided,
                        )
                    });
                    if std::panic::catch_unwind(call).is_err() {
                        tracing::error!(group = %self.config.group, topic, "messageQueueChanged exception");
                    }
                }
            }
        }
        drop(rebalance);
        if changed {
            instance.send_heartbeat_to_all_brokers().await;
        }
    }

    /// One queue's pull task (`PullTaskImpl`), as generation `task`.
    async fn pull_task(self: Arc<Self>, queue: MessageQueue, task: u64) {
        loop {
            if self.stopped() {
                return;
            }
            let now = self.env.clock.instant();
            let gate = lock(&self.queues).pull_gate(&queue, task, &self.thresholds, now);
            let offset = match gate {
                PullGate::Stop => return,
                PullGate::Paused => {
                    self.env.clock.sleep(PULL_DELAY_WHEN_PAUSE).await;
                    continue;
                }
                PullGate::FlowControl(flow) => {
                    tracing::debug!(?queue, ?flow, "lite pull flow control");
                    self.env.clock.sleep(PULL_DELAY_WHEN_FLOW_CONTROL).await;
                    continue;
                }
                PullGate::Pull {
                    offset: Some(offset),
                } => offset,
                PullGate::Pull { offset: None } => match self.start_offset(&queue).await {
                    Ok(offset) => {
                        lock(&self.queues).set_start_offset(&queue, task, offset);
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(?queue, %error, "failed to get next pull offset");
                        self.env.clock.sleep(PULL_DELAY_ON_EXCEPTION).await;
                        continue;
                    }
                },
            };
            let result = match self.pull(&queue, offset).await {
                Ok(result) => result,
                Err(error) => {
                    tracing::warn!(?queue, offset, %error, "lite pull failed");
                    self.env
                        .clock
                        .sleep(self.config.pull_delay_when_exception)
                        .await;
                    continue;
                }
            };
            if lock(&self.queues).on_pulled(&queue, task, result) {
                self.available.notify_waiters();
            }
        }
    }

    /// Where a queue without a position starts (`RebalanceLitePullImpl.computePullFromWhere`):
    /// the offset recorded in memory, else the rebalance's rule (the committed offset, else
    /// `consume_from_where`).
    async fn start_offset(&self, queue: &MessageQueue) -> Result<i64, ComputePullFromWhereError> {
        if let ReadOffset::Found(offset) = self
            .offset_store
            .read_offset(queue, ReadOffsetType::ReadFromMemory)
            .await
            && offset >= 0
        {
            return Ok(offset);
        }
        let rebalance = self.rebalance.lock().await;
        rebalance.compute_pull_from_where(queue).await
    }

    /// One long-polling pull of `pull_batch_size` messages (`pullSyncImpl` with block).
    async fn pull(&self, queue: &MessageQueue, offset: i64) -> Result<PullResult, ClientError> {
        let instance = self
            .instance
            .upgrade()
            .ok_or_else(|| ClientError::BrokerNotFound(queue.broker_name.clone()))?;
        let subscription = self.subscription_of(&queue.topic);
        let pull = KernelPull {
            group: &self.config.group,
            queue,
            subscription: &subscription,
            offset,
            max_nums: self.config.pull_batch_size,
            sys_flag: build_pull_sys_flag(false, true, true, false) | pull_sys_flag::LITE_PULL,
            commit_offset: 0,
            broker_suspend_max_time: self.config.broker_suspend_max_time,
            timeout: self.config.consumer_timeout_when_suspend,
        };
        self.pull_api.pull_kernel(&instance, &pull).await
    }

    /// `poll`: one buffered batch, waiting up to `timeout` for one.
    async fn poll(&self, timeout: Duration) -> Vec<StoredMessage> {
        let mut next_auto_commit = self.next_auto_commit.lock().await;
        let now = self.env.clock.instant();
        if self.config.auto_commit && next_auto_commit.is_none_or(|deadline| now >= deadline) {
            self.commit_all();
            *next_auto_commit = Some(now + self.config.auto_commit_interval);
        }
        let deadline = now + timeout;
        loop {
            let available = self.available.notified();
            tokio::pin!(available);
            // Register before looking, so a batch buffered in between wakes this poll.
            available.as_mut().enable();
            if let Some((_, messages)) = lock(&self.queues).take(self.env.clock.instant()) {
                return messages;
            }
            if self.stopped() || self.env.clock.instant() >= deadline {
                return Vec::new();
            }
            let expired = self.env.clock.sleep_until(deadline);
            tokio::select! {
                biased;
                () = available => {}
                () = expired => {}
            }
        }
    }

    /// Stops every task and drops every queue.
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        lock(&self.queues).clear();
        lock(&self.tasks).clear();
        lock(&self.rebalance_task).take();
        self.available.notify_waiters();
    }
}

/// A running consumer's links.
#[derive(Debug, Clone)]
struct Running {
    instance: Arc<ClientInstance>,
    inner: Arc<LiteInner>,
}

/// The lite pull consumer. See the module docs.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// use ferrocket_engine::Env;
/// use ferrocket_engine::client::instance::ClientInstanceRegistry;
/// use ferrocket_engine::client::lite_pull_consumer::{LitePullConsumer, LitePullConsumerConfig};
///
/// async fn consume(env: &Env) -> Result<(), Box<dyn std::error::Error>> {
///     let config = LitePullConsumerConfig::new("example_cg", "127.0.0.1:9876");
///     let consumer = LitePullConsumer::new(env, Arc::new(ClientInstanceRegistry::new()), config);
///     consumer.subscribe("TopicTest", "TagA || TagB").await?;
///     consumer.start().await?;
///     for _ in 0..100 {
///         for message in consumer.poll(Duration::from_secs(1)).await? {
///             println!("{} {:?}", message.queue_offset, message.body);
///         }
///     }
///     // Offsets are recorded every 5 s by polls and committed at shutdown.
///     consumer.shutdown().await;
///     Ok(())
/// }
/// ```
pub struct LitePullConsumer {
    config: LitePullConsumerConfig,
    env: Env,
    registry: Arc<ClientInstanceRegistry>,
    mode: Arc<Mutex<Mode>>,
    listener: Option<MessageQueueListener>,
    state: Mutex<(ServiceState, Option<Running>)>,
}

impl std::fmt::Debug for LitePullConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LitePullConsumer")
            .field("config", &self.config)
            .field("mode", &*lock(&self.mode))
            .field("state", &lock(&self.state).0)
            .finish_non_exhaustive()
    }
}

impl LitePullConsumer {
    /// A consumer with `config` that gets its client instance from `registry` and runs on
    /// `env`. Like the other clients it leaves the instance name as configured: callers set
    /// a process-unique one (Java's `changeInstanceNameToPID`).
    pub fn new(
        env: &Env,
        registry: Arc<ClientInstanceRegistry>,
        config: LitePullConsumerConfig,
    ) -> Self {
        Self {
            config,
            env: env.clone(),
            registry,
            mode: Arc::default(),
            listener: None,
            state: Mutex::new((ServiceState::CreateJust, None)),
        }
    }

    /// The consumer with `listener` told of every assignment change of a subscribed topic.
    pub fn with_message_queue_listener(mut self, listener: MessageQueueListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// The consumer's settings.
    pub fn config(&self) -> &LitePullConsumerConfig {
        &self.config
    }

    /// Where the consumer is in its life.
    pub fn state(&self) -> ServiceState {
        lock(&self.state).0
    }

    /// The client instance, while running.
    pub fn instance(&self) -> Option<Arc<ClientInstance>> {
        lock(&self.state).1.as_ref().map(|r| r.instance.clone())
    }

    fn running(&self) -> Result<Running, LitePullConsumerError> {
        match &*lock(&self.state) {
            (ServiceState::Running, Some(running)) => Ok(running.clone()),
            (state, _) => Err(LitePullConsumerError::NotRunning(*state)),
        }
    }

    fn running_opt(&self) -> Option<Running> {
        self.running().ok()
    }

    /// Starts the consumer (`start`): checks the config, registers the group with the
    /// client instance and starts it; then, when subscribing, fetches the topics' routes,
    /// heartbeats and rebalances at once, and when assigned starts the pull tasks. Only a
    /// new consumer starts; a refused start leaves it `CreateJust`.
    pub async fn start(&self) -> Result<(), LitePullConsumerError> {
        let group = self.config.group.clone();
        let (instance, inner) = {
            let mut state = lock(&self.state);
            if state.0 != ServiceState::CreateJust {
                return Err(LitePullConsumerError::NotRunning(state.0));
            }
            self.config.check()?;
            let instance = self.registry.get_or_create(
                &self.env,
                &self.config.client,
                ClientProcessorTable::new(),
            );
            let storage = offset_storage_for(
                self.config.message_model,
                &instance,
                &self.env.disk,
                &self.config.local_offset_store_dir,
                &group,
            );
            let offset_store = Arc::new(OffsetStore::new(group.as_str(), storage));
            let rebalance = Rebalance::new(
                RebalanceConfig {
                    group: group.clone(),
                    client_id: instance.client_id().to_owned(),
                    message_model: self.config.message_model,
                    consume_from_where: self.config.consume_from_where,
                    consume_timestamp_ms: self.config.consume_timestamp_ms,
                    consume_orderly: false,
                },
                self.config.allocate_strategy.clone(),
                offset_store.clone(),
                Arc::new(InstanceRebalanceBroker::new(&instance)),
            );
            let inner = Arc::new(LiteInner {
                config: self.config.clone(),
                thresholds: self.config.thresholds(),
                env: self.env.clone(),
                instance: Arc::downgrade(&instance),
                mode: self.mode.clone(),
                listener: self.listener.clone(),
                offset_store,
                rebalance: tokio::sync::Mutex::new(rebalance),
                subscribe_infos: Mutex::default(),
                queues: Mutex::default(),
                tasks: Mutex::default(),
                rebalance_task: Mutex::default(),
                pull_api: PullApiWrapper::default(),
                available: Notify::new(),
                wake: Notify::new(),
                next_auto_commit: tokio::sync::Mutex::new(None),
                stopped: AtomicBool::new(false),
            });
            if !instance.register_consumer(&group, inner.clone()) {
                return Err(LitePullConsumerError::GroupAlreadyCreated(group));
            }
            instance.start();
            *state = (
                ServiceState::Running,
                Some(Running {
                    instance: instance.clone(),
                    inner: inner.clone(),
                }),
            );
            (instance, inner)
        };
        // operateAfterRunning.
        let mode = lock(&self.mode).clone();
        match mode {
            Mode::Subscribe(subscriptions) => {
                for topic in subscriptions.keys() {
                    if let Err(error) = instance.update_topic_route(topic).await {
                        tracing::warn!(%group, topic, %error, "topic route update failed at start");
                    }
                }
                instance.send_heartbeat_to_all_brokers().await;
            }
            Mode::Assign(queues) => inner.assign(&queues),
            Mode::None => {}
        }
        let service = tokio::spawn(inner.clone().rebalance_service());
        *lock(&inner.rebalance_task) = Some(AbortOnDrop(service));
        tracing::info!(%group, client_id = instance.client_id(), "lite pull consumer started");
        Ok(())
    }

    /// Subscribes `topic` with the tag expression `expression` (`*`, or tags joined by
    /// `||`): its queues are rebalanced across the group. Before or after start; a topic
    /// subscribed again gets the new expression. Refused after [`assign`](Self::assign).
    pub async fn subscribe(
        &self,
        topic: &str,
        expression: &str,
    ) -> Result<(), LitePullConsumerError> {
        if topic.is_empty() {
            return Err(LitePullConsumerError::EmptyTopic);
        }
        let subscription = SubscriptionData::build(topic, expression, self.env.clock.wall_ms());
        {
            let mut mode = lock(&self.mode);
            match &mut *mode {
                Mode::Assign(_) => return Err(LitePullConsumerError::SubscriptionConflict),
                Mode::Subscribe(subscriptions) => {
                    subscriptions.insert(topic.to_owned(), subscription);
                }
                Mode::None => {
                    *mode = Mode::Subscribe(BTreeMap::from([(topic.to_owned(), subscription)]));
                }
            }
        }
        if let Some(Running { instance, inner }) = self.running_opt() {
            instance.send_heartbeat_to_all_brokers().await;
            if let Err(error) = instance.update_topic_route(topic).await {
                tracing::warn!(group = %self.config.group, topic, %error, "topic route update failed at subscribe");
            }
            inner.wake.notify_one();
        }
        Ok(())
    }

    /// Pulls exactly `queues`, without rebalance (`assign`); a later call replaces the set.
    /// Before or after start. Refused after [`subscribe`](Self::subscribe).
    pub fn assign(&self, queues: &BTreeSet<MessageQueue>) -> Result<(), LitePullConsumerError> {
        if queues.is_empty() {
            return Err(LitePullConsumerError::EmptyAssignment);
        }
        {
            let mut mode = lock(&self.mode);
            if matches!(*mode, Mode::Subscribe(_)) {
                return Err(LitePullConsumerError::SubscriptionConflict);
            }
            *mode = Mode::Assign(queues.clone());
        }
        if let Some(Running { inner, .. }) = self.running_opt() {
            inner.assign(queues);
        }
        Ok(())
    }

    /// The queues the consumer pulls now: the assigned ones, or its share of the subscribed
    /// topics after the last rebalance.
    pub fn assignment(&self) -> Result<BTreeSet<MessageQueue>, LitePullConsumerError> {
        let Running { inner, .. } = self.running()?;
        let queues = lock(&inner.queues).queues();
        Ok(queues)
    }

    /// One batch of buffered messages (up to `pull_batch_size`, all of one queue, in queue
    /// order), waiting up to `timeout` for one; empty when none came (`poll`). Batches come
    /// out in the order they were pulled, so each queue's messages come in offset order.
    /// With `auto_commit`, a poll `auto_commit_interval` after the last recording first
    /// records what earlier polls handed out as consumed.
    pub async fn poll(
        &self,
        timeout: Duration,
    ) -> Result<Vec<StoredMessage>, LitePullConsumerError> {
        let Running { inner, .. } = self.running()?;
        Ok(inner.poll(timeout).await)
    }

    /// [`poll`](Self::poll) with the configured `poll_timeout`.
    pub async fn poll_default(&self) -> Result<Vec<StoredMessage>, LitePullConsumerError> {
        self.poll(self.config.poll_timeout).await
    }

    /// Records the consume offset of every assigned queue — past everything polled — and
    /// persists them: to the brokers, or the local file when broadcasting (`commitSync`,
    /// and the persist Java leaves to the periodic task). A failed send is returned (the first one); the offsets stay recorded and are
    /// sent again by the periodic persist.
    pub async fn commit_sync(&self) -> Result<(), LitePullConsumerError> {
        let Running { inner, .. } = self.running()?;
        inner.commit_all();
        let queues = lock(&inner.queues).queues();
        let outcomes = inner.offset_store.persist_all(&queues).await;
        match outcomes.into_iter().find(|(_, _, result)| result.is_err()) {
            Some((queue, offset, Err(source))) => Err(LitePullConsumerError::Commit {
                queue,
                offset,
                source: Box::new(source),
            }),
            _ => Ok(()),
        }
    }

    /// The group's next offset to consume of `queue` (`committed`): the recorded one, else
    /// the broker's; `Ok(None)` when there is none (Java's `-1`).
    pub async fn committed(
        &self,
        queue: &MessageQueue,
    ) -> Result<Option<i64>, LitePullConsumerError> {
        let Running { inner, .. } = self.running()?;
        match inner
            .offset_store
            .read_offset(queue, ReadOffsetType::MemoryFirstThenStore)
            .await
        {
            ReadOffset::Found(offset) => Ok(Some(offset)),
            ReadOffset::NotFound => Ok(None),
            ReadOffset::QueryFailed(error) => Err(error.into()),
        }
    }

    /// Moves `queue` to `offset` (`seek`): it must be assigned and `offset` within the
    /// queue's stored range (min to max offset, asked of its master). Buffered messages of
    /// the queue are discarded, `offset` becomes its consume offset, and pulling restarts
    /// there.
    pub async fn seek(
        &self,
        queue: &MessageQueue,
        offset: i64,
    ) -> Result<(), LitePullConsumerError> {
        let Running { instance, inner } = self.running()?;
        self.check_assigned(&inner, queue)?;
        let min = admin_offset(&instance, queue, AdminOffset::Min).await?;
        let max = admin_offset(&instance, queue, AdminOffset::Max).await?;
        check_seek_offset(offset, min, max)?;
        self.seek_checked(&inner, queue, offset)
    }

    /// Moves `queue` to its smallest stored offset (`seekToBegin`).
    pub async fn seek_to_begin(&self, queue: &MessageQueue) -> Result<(), LitePullConsumerError> {
        let Running { instance, inner } = self.running()?;
        self.check_assigned(&inner, queue)?;
        let min = admin_offset(&instance, queue, AdminOffset::Min).await?;
        self.seek_checked(&inner, queue, min)
    }

    /// Moves `queue` to its end, the next offset to be written (`seekToEnd`).
    pub async fn seek_to_end(&self, queue: &MessageQueue) -> Result<(), LitePullConsumerError> {
        let Running { instance, inner } = self.running()?;
        self.check_assigned(&inner, queue)?;
        let max = admin_offset(&instance, queue, AdminOffset::Max).await?;
        self.seek_checked(&inner, queue, max)
    }

    fn check_assigned(
        &self,
        inner: &LiteInner,
        queue: &MessageQueue,
    ) -> Result<(), LitePullConsumerError> {
        if lock(&inner.queues).contains(queue) {
            return Ok(());
        }
        Err(LitePullConsumerError::NotAssigned {
            queue: queue.clone(),
            rebalancing: matches!(*lock(&self.mode), Mode::Subscribe(_)),
        })
    }

    fn seek_checked(
        &self,
        inner: &Arc<LiteInner>,
        queue: &MessageQueue,
        offset: i64,
    ) -> Result<(), LitePullConsumerError> {
        let task = lock(&inner.queues).seek(queue, offset, self.env.clock.instant());
        let Some(task) = task else {
            // A rebalance took the queue away since the check.
            return self.check_assigned(inner, queue);
        };
        inner.apply(AssignmentChange {
            removed: Vec::new(),
            started: vec![(queue.clone(), task)],
        });
        Ok(())
    }

    /// Stops pulling `queues` (those assigned); what they buffered can still be polled.
    pub fn pause(&self, queues: &[MessageQueue]) -> Result<(), LitePullConsumerError> {
        let Running { inner, .. } = self.running()?;
        lock(&inner.queues).pause(queues);
        Ok(())
    }

    /// Pulls `queues` (those assigned) again.
    pub fn resume(&self, queues: &[MessageQueue]) -> Result<(), LitePullConsumerError> {
        let Running { inner, .. } = self.running()?;
        lock(&inner.queues).resume(queues);
        Ok(())
    }

    /// The readable queues of `topic`, fresh from the name server (`fetchMessageQueues`).
    pub async fn fetch_message_queues(
        &self,
        topic: &str,
    ) -> Result<BTreeSet<MessageQueue>, LitePullConsumerError> {
        let Running { instance, .. } = self.running()?;
        let queues = fetch_topic_queues(&instance, topic).await?;
        if queues.is_empty() {
            return Err(LitePullConsumerError::NoQueues(topic.to_owned()));
        }
        Ok(queues)
    }

    /// The offset of `queue`'s first message stored at or after `timestamp_ms`
    /// (`offsetForTimestamp`), from its master.
    pub async fn offset_for_timestamp(
        &self,
        queue: &MessageQueue,
        timestamp_ms: i64,
    ) -> Result<i64, LitePullConsumerError> {
        let Running { instance, .. } = self.running()?;
        Ok(admin_offset(&instance, queue, AdminOffset::Search(timestamp_ms)).await?)
    }

    /// Stops the consumer (`shutdown`): stops its tasks, records the consume offsets when
    /// `auto_commit` is on, commits the recorded offsets, unregisters the group from the
    /// client instance and every broker and, when no producer or consumer is left on the
    /// instance, shuts the instance down and removes it from the registry.
    pub async fn shutdown(&self) {
        let running = {
            let mut state = lock(&self.state);
            if state.0 != ServiceState::Running {
                return;
            }
            state.0 = ServiceState::ShutdownAlready;
            state.1.take()
        };
        let Some(Running { instance, inner }) = running else {
            return;
        };
        if self.config.auto_commit {
            inner.commit_all();
        }
        let queues = lock(&inner.queues).queues();
        inner.stop();
        inner.offset_store.persist_all(&queues).await;
        instance.unregister_consumer(&self.config.group).await;
        self.registry.release_if_unused(&instance).await;
        tracing::info!(group = %self.config.group, "lite pull consumer shut down");
    }
}

impl Drop for LitePullConsumer {
    fn drop(&mut self) {
        // A consumer dropped without shutdown stops its tasks; its group stays registered
        // until the instance goes.
        if let Some(Running { inner, .. }) = &lock(&self.state).1 {
            inner.stop();
        }
    }
}

#[cfg(test)]
mod tests;
