//! The transactional producer (Java's `TransactionMQProducer` and the transaction half of
//! `DefaultMQProducerImpl`, clients.md C25-C29) and the client side of the broker's
//! transaction check-back (`ClientRemotingProcessor.checkTransactionState`).
//!
//! Where it sits: on top of the [`DefaultMqProducer`]. A transaction is a half message (sent
//! with `TRAN_MSG=true` and `PGROUP=<group>`, which the broker stores out of its consumers'
//! sight), then the application's local transaction, then an END_TRANSACTION (37, oneway)
//! that commits, rolls back or leaves the half message open ([`LocalTransactionState`]).
//! A half message left open is later checked by the broker: it sends CHECK_TRANSACTION_STATE
//! (39, oneway) with the half message to a producer of the group; every [`ClientInstance`]
//! serves that code with [`CheckTransactionStateProcessor`], which hands the check to the
//! producer registered for the message's `PGROUP`. A transactional producer queues it (at most
//! `check_request_hold_max`, as Java's check executor) for `check_thread_pool_size` worker
//! tasks, which ask the [`TransactionListener`] and answer the broker that asked with an
//! END_TRANSACTION marked `fromTransactionCheck`.
//!
//! Invariants: the local transaction runs only after the broker stored the half message with
//! SEND_OK; a stored answer other than SEND_OK rolls back without running it; a half send
//! that fails sends no END_TRANSACTION. A listener's error or panic is the state UNKNOW,
//! with its description in the END_TRANSACTION's remark — the broker then checks back
//! later. A check never runs on the connection's I/O path, and a check that finds the queue
//! full is dropped with a warning (the broker asks again).

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::api::{ClientError, MqClientApi, SendResult, SendStatus, inflate_body};
use super::instance::{ClientInstance, ClientInstanceRegistry, ClientRequestProcessor};
use super::producer::{DefaultMqProducer, Message, ProducerConfig, ProducerError, check_message};
use crate::Env;
use crate::remoting::RemotingCommand;
use crate::remoting::headers::{CheckTransactionStateRequestHeader, EndTransactionRequestHeader};
use crate::remoting::transport::{AbortOnDrop, Channel, ProcessError};
use crate::store::message::{
    RecordError, StoredMessage, decode_message_id, decode_record, property_key, sys_flag,
};

/// How long the answer to a check-back may take to be written (Java's fixed 3000 ms).
pub const CHECK_END_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(3);

/// The user property a SEND_OK half message gets when the broker's answer carries a
/// transaction id (`__transactionId__`).
pub const TRANSACTION_ID_PROPERTY: &str = "__transactionId__";

/// What the application says about its local transaction (`LocalTransactionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalTransactionState {
    /// Committed: the broker makes the half message visible to consumers.
    CommitMessage,
    /// Rolled back: the broker discards the half message.
    RollbackMessage,
    /// Not known yet (Java's spelling `UNKNOW`): the broker checks back later.
    Unknow,
}

impl LocalTransactionState {
    /// The `commitOrRollback` value of END_TRANSACTION for this state (`MessageSysFlag`):
    /// TRANSACTION_COMMIT_TYPE (0x8), TRANSACTION_ROLLBACK_TYPE (0xC) or
    /// TRANSACTION_NOT_TYPE (0x0).
    pub fn transaction_type(self) -> i32 {
        match self {
            Self::CommitMessage => sys_flag::TRANSACTION_COMMIT_TYPE,
            Self::RollbackMessage => sys_flag::TRANSACTION_ROLLBACK_TYPE,
            Self::Unknow => sys_flag::TRANSACTION_NOT_TYPE,
        }
    }

    /// The state a `commitOrRollback` value stands for; `None` for any other value (the
    /// prepared type 0x4 among them).
    pub fn from_transaction_type(value: i32) -> Option<Self> {
        match value {
            sys_flag::TRANSACTION_COMMIT_TYPE => Some(Self::CommitMessage),
            sys_flag::TRANSACTION_ROLLBACK_TYPE => Some(Self::RollbackMessage),
            sys_flag::TRANSACTION_NOT_TYPE => Some(Self::Unknow),
            _ => None,
        }
    }
}

/// An error a [`TransactionListener`] reports; the producer answers it as
/// [`LocalTransactionState::Unknow`] and puts its text in the END_TRANSACTION's remark.
pub type ListenerError = Box<dyn std::error::Error + Send + Sync>;

/// The application's side of transactional messages (`TransactionListener`).
///
/// The transaction id of a message is its `UNIQ_KEY`: property
/// [`property_key::UNIQ_KEY`] of the [`Message`] handed to
/// [`execute_local_transaction`](Self::execute_local_transaction), and
/// [`StoredMessage::uniq_key`] of the half message handed to
/// [`check_local_transaction`](Self::check_local_transaction). Key the local transaction's
/// record by it, so a check can find it.
#[async_trait::async_trait]
pub trait TransactionListener: Send + Sync + 'static {
    /// What [`TransactionMqProducer::send_message_in_transaction`] passes through to
    /// [`execute_local_transaction`](Self::execute_local_transaction) (Java's `Object arg`).
    type Arg: Send + Sync;

    /// Runs the local transaction of `message`, whose half message the broker has stored.
    /// An error, or a panic, counts as [`LocalTransactionState::Unknow`].
    async fn execute_local_transaction(
        &self,
        message: &Message,
        arg: &Self::Arg,
    ) -> Result<LocalTransactionState, ListenerError>;

    /// Says what became of the local transaction of the half message `message`, which the
    /// broker still holds open. An error, or a panic, counts as
    /// [`LocalTransactionState::Unknow`].
    async fn check_local_transaction(
        &self,
        message: &StoredMessage,
    ) -> Result<LocalTransactionState, ListenerError>;
}

/// The outcome of [`TransactionMqProducer::send_message_in_transaction`]
/// (`TransactionSendResult`): how the half message was stored and what the local
/// transaction said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionSendResult {
    /// The half message's send result.
    pub send_result: SendResult,
    /// The state sent to the broker with END_TRANSACTION.
    pub local_transaction_state: LocalTransactionState,
}

/// Where check-backs run (`TransactionMQProducer`'s check executor settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckExecutorConfig {
    /// Worker tasks asking the listener (`checkThreadPoolMinSize` = `MaxSize`, 1).
    pub check_thread_pool_size: usize,
    /// Checks that may wait for a worker (`checkRequestHoldMax`, 2000); one more is dropped
    /// with a warning.
    pub check_request_hold_max: usize,
}

impl Default for CheckExecutorConfig {
    fn default() -> Self {
        Self {
            check_thread_pool_size: 1,
            check_request_hold_max: 2000,
        }
    }
}

/// A broker's CHECK_TRANSACTION_STATE, as the producer of the half message's group gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionCheckRequest {
    /// The broker that asked, as the connection's peer address: the answer goes there.
    pub broker_addr: String,
    /// The request's header.
    pub header: CheckTransactionStateRequestHeader,
    /// The half message, its body inflated if it was compressed.
    pub message: StoredMessage,
}

/// The END_TRANSACTION after a half send (`endTransaction`, clients.md C27): the commit-log
/// offset from the result's offset message id (or from its `msg_id` when there is none), the
/// queue offset as `tranStateTableOffset`, the result's transaction id, the `UNIQ_KEY` as
/// `msgId`, `fromTransactionCheck` false, and the broker name as 4.9.5+ clients send it.
pub fn end_transaction_header(
    group: &str,
    send_result: &SendResult,
    state: LocalTransactionState,
) -> Result<EndTransactionRequestHeader, RecordError> {
    let id = if send_result.offset_msg_id.is_empty() {
        send_result.msg_id.as_deref().unwrap_or_default()
    } else {
        &send_result.offset_msg_id
    };
    let (_, commit_log_offset) = decode_message_id(id)?;
    Ok(EndTransactionRequestHeader {
        producer_group: group.to_owned(),
        tran_state_table_offset: send_result.queue_offset,
        commit_log_offset,
        commit_or_rollback: state.transaction_type(),
        from_transaction_check: Some(false),
        msg_id: send_result
            .msg_id
            .clone()
            .unwrap_or_else(|| send_result.offset_msg_id.clone()),
        transaction_id: send_result.transaction_id.clone(),
        broker_name: Some(send_result.queue.broker_name.clone()),
    })
}

/// The END_TRANSACTION answering a check-back (`processTransactionState`, clients.md C29):
/// both offsets, the transaction id and the broker name from the check's header, the
/// message's `UNIQ_KEY` (its offset id when it has none) as `msgId`, `fromTransactionCheck`
/// true.
pub fn check_answer_header(
    group: &str,
    request: &TransactionCheckRequest,
    state: LocalTransactionState,
) -> EndTransactionRequestHeader {
    EndTransactionRequestHeader {
        producer_group: group.to_owned(),
        tran_state_table_offset: request.header.tran_state_table_offset,
        commit_log_offset: request.header.commit_log_offset,
        commit_or_rollback: state.transaction_type(),
        from_transaction_check: Some(true),
        msg_id: request
            .message
            .uniq_key()
            .map_or_else(|| request.message.msg_id.clone(), str::to_owned),
        transaction_id: request.header.transaction_id.clone(),
        broker_name: request.header.broker_name.clone(),
    }
}

/// Why the END_TRANSACTION after a half send was not sent. Only logged: the broker's
/// check-back settles the transaction.
#[derive(Debug, thiserror::Error)]
enum EndTransactionError {
    /// The send result's message id does not hold a commit-log offset.
    #[error("the offset message id is not readable: {0}")]
    MessageId(#[from] RecordError),
    /// The producer was shut down after the half send.
    #[error("the producer is not running")]
    NotRunning,
    /// No address for the broker, or the request could not be written.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The transactional producer. See the module docs.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use ferrocket_engine::Env;
/// # use ferrocket_engine::client::instance::ClientInstanceRegistry;
/// # use ferrocket_engine::client::producer::{Message, ProducerConfig};
/// # use ferrocket_engine::client::transaction::{
/// #     ListenerError, LocalTransactionState, TransactionListener, TransactionMqProducer,
/// # };
/// # use ferrocket_engine::store::message::StoredMessage;
/// struct Orders;
///
/// #[async_trait::async_trait]
/// impl TransactionListener for Orders {
///     type Arg = u64;
///
///     async fn execute_local_transaction(
///         &self,
///         _message: &Message,
///         order_id: &u64,
///     ) -> Result<LocalTransactionState, ListenerError> {
///         // Write the order and the message's UNIQ_KEY in one local transaction.
///         println!("order {order_id} written");
///         Ok(LocalTransactionState::CommitMessage)
///     }
///
///     async fn check_local_transaction(
///         &self,
///         message: &StoredMessage,
///     ) -> Result<LocalTransactionState, ListenerError> {
///         // Look the UNIQ_KEY up in the local store.
///         println!("checking {:?}", message.uniq_key());
///         Ok(LocalTransactionState::Unknow)
///     }
/// }
///
/// # async fn example(env: Env) -> Result<(), Box<dyn std::error::Error>> {
/// let config = ProducerConfig::new("order_tx_group", "127.0.0.1:9876");
/// let producer =
///     TransactionMqProducer::new(&env, Arc::new(ClientInstanceRegistry::new()), config, Orders);
/// producer.start().await?;
/// let mut message = Message::new("OrderTopic", "order 42 created");
/// let sent = producer.send_message_in_transaction(&mut message, &42).await?;
/// println!("{:?}", sent.local_transaction_state);
/// producer.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct TransactionMqProducer<L: TransactionListener> {
    producer: DefaultMqProducer,
    listener: Arc<L>,
    check_config: CheckExecutorConfig,
    check_workers: Mutex<Vec<AbortOnDrop>>,
}

impl<L: TransactionListener> std::fmt::Debug for TransactionMqProducer<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionMqProducer")
            .field("producer", &self.producer)
            .field("check_config", &self.check_config)
            .finish_non_exhaustive()
    }
}

impl<L: TransactionListener> TransactionMqProducer<L> {
    /// A transactional producer of `config`'s group asking `listener`, with Java's check
    /// executor settings; see [`DefaultMqProducer::new`] for `env` and `registry`.
    pub fn new(
        env: &Env,
        registry: Arc<ClientInstanceRegistry>,
        config: ProducerConfig,
        listener: L,
    ) -> Self {
        Self::with_producer(DefaultMqProducer::new(env, registry, config), listener)
    }

    /// A transactional producer over `producer` (not started yet), asking `listener`.
    pub fn with_producer(producer: DefaultMqProducer, listener: L) -> Self {
        Self {
            producer,
            listener: Arc::new(listener),
            check_config: CheckExecutorConfig::default(),
            check_workers: Mutex::default(),
        }
    }

    /// The same producer running check-backs as `config` says.
    pub fn with_check_executor(mut self, config: CheckExecutorConfig) -> Self {
        self.check_config = config;
        self
    }

    /// The producer underneath, for plain sends of the same group.
    pub fn producer(&self) -> &DefaultMqProducer {
        &self.producer
    }

    /// The listener.
    pub fn listener(&self) -> &Arc<L> {
        &self.listener
    }

    /// Starts the producer ([`DefaultMqProducer::start`]) registered as the answerer of its
    /// group's check-backs, and the check workers.
    pub async fn start(&self) -> Result<(), ProducerError> {
        let hold_max = self.check_config.check_request_hold_max.max(1);
        let (sender, receiver) = mpsc::channel(hold_max);
        let queue = CheckQueue {
            sender,
            hold_max,
            group: self.producer.config().group.clone(),
        };
        self.producer.start_member(Some(Arc::new(queue))).await?;
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let workers = (0..self.check_config.check_thread_pool_size.max(1))
            .map(|_| {
                AbortOnDrop(tokio::spawn(run_check_worker(
                    receiver.clone(),
                    self.listener.clone(),
                    self.producer.config().group.clone(),
                )))
            })
            .collect();
        *self.lock_workers() = workers;
        Ok(())
    }

    /// Stops the producer ([`DefaultMqProducer::shutdown`]) and its check workers; checks
    /// still queued are dropped (the broker asks again).
    pub async fn shutdown(&self) {
        self.producer.shutdown().await;
        self.lock_workers().clear();
    }

    fn lock_workers(&self) -> MutexGuard<'_, Vec<AbortOnDrop>> {
        // The list is replaced whole, so a poisoned lock is still consistent.
        self.check_workers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends `message` as a half message and runs its local transaction
    /// (`sendMessageInTransaction`, clients.md C26): drops a delay level (a transactional
    /// message cannot be delayed), validates, sets `TRAN_MSG=true` and `PGROUP=<group>`,
    /// and sends it as [`DefaultMqProducer::send`] does. With SEND_OK the listener runs
    /// (`message` then carries its `UNIQ_KEY`, and [`TRANSACTION_ID_PROPERTY`] when the
    /// broker answered a transaction id); any other stored answer means ROLLBACK without
    /// running it. The state then goes to the broker that stored the half message with
    /// END_TRANSACTION (oneway, within `send_msg_timeout`); a failure there is only logged,
    /// since the broker's check-back settles it.
    ///
    /// A send that fails is the error, and no END_TRANSACTION is sent.
    pub async fn send_message_in_transaction(
        &self,
        message: &mut Message,
        arg: &L::Arg,
    ) -> Result<TransactionSendResult, ProducerError> {
        let config = self.producer.config();
        if message.delay_time_level() != 0 {
            message.properties.remove(property_key::DELAY);
        }
        check_message(message, config.max_message_size)?;
        message
            .properties
            .insert(property_key::TRAN_MSG.to_owned(), "true".to_owned());
        message
            .properties
            .insert(property_key::PGROUP.to_owned(), config.group.clone());
        let send_result = self.producer.send(message).await?;
        let (state, local_error) = match send_result.status {
            SendStatus::SendOk => {
                if let Some(id) = &send_result.transaction_id {
                    message
                        .properties
                        .insert(TRANSACTION_ID_PROPERTY.to_owned(), id.clone());
                }
                let (state, error) =
                    call_listener(self.listener.execute_local_transaction(message, arg)).await;
                match &error {
                    Some(error) => {
                        tracing::info!(msg_id = ?send_result.msg_id, %error, "executeLocalTransactionBranch exception");
                    }
                    None if state != LocalTransactionState::CommitMessage => {
                        tracing::info!(msg_id = ?send_result.msg_id, ?state, "executeLocalTransactionBranch return");
                    }
                    None => {}
                }
                (state, error)
            }
            SendStatus::FlushDiskTimeout
            | SendStatus::FlushSlaveTimeout
            | SendStatus::SlaveNotAvailable => (LocalTransactionState::RollbackMessage, None),
        };
        if let Err(error) = self.end_transaction(&send_result, state, local_error).await {
            tracing::warn!(msg_id = ?send_result.msg_id, ?state, %error, "local transaction executed, but end broker transaction failed");
        }
        Ok(TransactionSendResult {
            send_result,
            local_transaction_state: state,
        })
    }

    /// `endTransaction` (clients.md C27): END_TRANSACTION oneway to the master of the broker
    /// that stored the half message.
    async fn end_transaction(
        &self,
        send_result: &SendResult,
        state: LocalTransactionState,
        local_error: Option<String>,
    ) -> Result<(), EndTransactionError> {
        let config = self.producer.config();
        let header = end_transaction_header(&config.group, send_result, state)?;
        let instance = self
            .producer
            .instance()
            .ok_or(EndTransactionError::NotRunning)?;
        let broker_name = &send_result.queue.broker_name;
        let addr = instance
            .find_broker_address_in_publish(broker_name)
            .ok_or_else(|| ClientError::BrokerNotFound(broker_name.clone()))?;
        let remark =
            local_error.map(|error| format!("executeLocalTransactionBranch exception: {error}"));
        instance
            .api()
            .end_transaction_oneway(&addr, &header, remark, config.send_msg_timeout)
            .await?;
        Ok(())
    }
}

/// Runs a listener call: its state, or UNKNOW with a description of its error or panic.
async fn call_listener<F>(call: F) -> (LocalTransactionState, Option<String>)
where
    F: std::future::Future<Output = Result<LocalTransactionState, ListenerError>>,
{
    match AssertUnwindSafe(call).catch_unwind().await {
        Ok(Ok(state)) => (state, None),
        Ok(Err(error)) => (LocalTransactionState::Unknow, Some(error.to_string())),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            (
                LocalTransactionState::Unknow,
                Some(format!("the listener panicked: {what}")),
            )
        }
    }
}

/// One queued check-back, with the API of the instance it arrived on.
struct CheckJob {
    api: MqClientApi,
    request: TransactionCheckRequest,
}

/// The bounded queue in front of a transactional producer's check workers (Java's
/// `checkExecutor` queue).
pub(crate) struct CheckQueue {
    sender: mpsc::Sender<CheckJob>,
    hold_max: usize,
    group: String,
}

impl CheckQueue {
    /// Queues `request` for the workers, or drops it with a warning when `hold_max` checks
    /// are already waiting or the workers have stopped.
    pub(crate) fn submit(&self, api: &MqClientApi, request: TransactionCheckRequest) {
        let job = CheckJob {
            api: api.clone(),
            request,
        };
        match self.sender.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => tracing::warn!(
                group = %self.group,
                hold_max = self.hold_max,
                msg_id = ?job.request.header.msg_id,
                "transaction check queue full; check dropped, the broker will ask again"
            ),
            Err(TrySendError::Closed(job)) => tracing::warn!(
                group = %self.group,
                msg_id = ?job.request.header.msg_id,
                "transaction check workers stopped; check dropped"
            ),
        }
    }
}

/// A check worker: takes queued checks one at a time until the queue closes.
async fn run_check_worker<L: TransactionListener>(
    jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<CheckJob>>>,
    listener: Arc<L>,
    group: String,
) {
    loop {
        let job = jobs.lock().await.recv().await;
        let Some(job) = job else { return };
        answer_check(&*listener, &group, job).await;
    }
}

/// Asks the listener about one check and answers the broker that asked
/// (`checkTransactionState`'s task, clients.md C29).
async fn answer_check<L: TransactionListener>(listener: &L, group: &str, job: CheckJob) {
    let CheckJob { api, request } = job;
    let (state, error) = call_listener(listener.check_local_transaction(&request.message)).await;
    if let Some(error) = &error {
        tracing::error!(msg_id = %request.message.msg_id, %error, "checkLocalTransactionState exception");
    }
    let header = check_answer_header(group, &request, state);
    match state {
        LocalTransactionState::CommitMessage => {}
        LocalTransactionState::RollbackMessage => {
            tracing::warn!(
                ?header,
                "when broker check, client rollback this transaction"
            );
        }
        LocalTransactionState::Unknow => {
            tracing::warn!(
                ?header,
                "when broker check, client does not know this transaction state"
            );
        }
    }
    let remark = error.map(|error| format!("checkLocalTransactionState Exception: {error}"));
    if let Err(error) = api
        .end_transaction_oneway(
            &request.broker_addr,
            &header,
            remark,
            CHECK_END_TRANSACTION_TIMEOUT,
        )
        .await
    {
        tracing::error!(broker = %request.broker_addr, %error, "endTransactionOneway exception");
    }
}

/// Serves CHECK_TRANSACTION_STATE for a client instance (`ClientRemotingProcessor
/// .checkTransactionState`, clients.md C28): decodes the header and the half message in the
/// body, and hands them, with the connection's peer as the broker to answer, to the producer
/// registered for the message's `PGROUP`. The request is oneway: nothing is answered here. A
/// message that does not decode, one without `PGROUP` and a group with no producer here are
/// logged and ignored, as Java does.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckTransactionStateProcessor;

#[async_trait::async_trait]
impl ClientRequestProcessor for CheckTransactionStateProcessor {
    async fn process(
        &self,
        instance: &Arc<ClientInstance>,
        channel: &Channel,
        request: RemotingCommand,
    ) -> Result<Option<RemotingCommand>, ProcessError> {
        let header: CheckTransactionStateRequestHeader = match request.decode_header() {
            Ok(header) => header,
            Err(error) => {
                tracing::warn!(%error, "checkTransactionState, header not readable");
                return Ok(None);
            }
        };
        let mut message = match decode_record(&request.body, false, true) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "checkTransactionState, decode message failed");
                return Ok(None);
            }
        };
        inflate_body(&mut message);
        let Some(group) = message.property(property_key::PGROUP).map(str::to_owned) else {
            tracing::warn!(msg_id = %message.msg_id, "checkTransactionState, pick producer group failed");
            return Ok(None);
        };
        let Some(producer) = instance.select_producer(&group) else {
            tracing::debug!(%group, "checkTransactionState, pick producer by group failed");
            return Ok(None);
        };
        let request = TransactionCheckRequest {
            broker_addr: channel.peer_addr().to_string(),
            header,
            message,
        };
        producer.check_transaction_state(instance.api(), request);
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
