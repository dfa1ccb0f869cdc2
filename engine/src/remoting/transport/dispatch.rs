//! Request dispatch: the processor table and the per-processor executors.
//!
//! As in RocketMQ, each request code maps to a processor and the executor it runs on. An
//! executor is a bounded queue and a fixed number of worker tasks, so one family of requests
//! (pulls held for long polling, slow admin calls) can never starve another (sends,
//! heartbeats) on the same connection. At the edges:
//!
//! - no processor for a code → `REQUEST_CODE_NOT_SUPPORTED`, remark
//!   `" request type <code> not supported"`, even for a oneway request (as Java);
//! - the processor rejects (`reject_request`) → `SYSTEM_BUSY` `[REJECTREQUEST]…`;
//! - the queue is full → `SYSTEM_BUSY` `[OVERLOAD]…` (not for oneway requests);
//! - a request that waited in the queue longer than `queue_wait_max` → `SYSTEM_BUSY`
//!   `[TIMEOUT_CLEAN_QUEUE]…`, the broker's fast-fail;
//! - a processor error or panic → `SYSTEM_ERROR` with a remark, never a dropped connection.
//!
//! Every response gets the request's `opaque` and serialize type and the response flag; a
//! oneway request is never answered by a processor.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::mpsc;

use super::AbortOnDrop;
use super::channel::Channel;
use crate::clock::{Instant, SharedClock};
use crate::remoting::code::{SerializeType, response_code};
use crate::remoting::command::RemotingCommand;
use crate::remoting::header::HeaderError;

/// Handles the requests of one or more codes.
#[async_trait::async_trait]
pub trait RequestProcessor: Send + Sync + 'static {
    /// Handles one request. `Ok(Some(response))` is written back (unless the request was
    /// oneway); `Ok(None)` writes nothing now — the processor may answer later through
    /// `channel`, as a held long-polling pull does.
    async fn process(
        &self,
        channel: &Channel,
        request: RemotingCommand,
    ) -> Result<Option<RemotingCommand>, ProcessError>;

    /// Whether to turn requests away right now (flow control), before they are queued.
    fn reject_request(&self) -> bool {
        false
    }
}

/// A failure while processing a request, answered with `code` and `remark`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{remark}")]
pub struct ProcessError {
    /// The response code to answer with.
    pub code: i32,
    /// The remark to answer with.
    pub remark: String,
}

impl ProcessError {
    /// An error answered with `code` and `remark`.
    pub fn new(code: i32, remark: impl Into<String>) -> Self {
        Self {
            code,
            remark: remark.into(),
        }
    }

    /// A `SYSTEM_ERROR` with `remark`.
    pub fn system(remark: impl Into<String>) -> Self {
        Self::new(response_code::SYSTEM_ERROR, remark)
    }
}

/// A malformed request header is answered `SYSTEM_ERROR` with the field named, as the Java
/// dispatch layer answers a `RemotingCommandException`.
impl From<HeaderError> for ProcessError {
    fn from(error: HeaderError) -> Self {
        Self::system(error.to_string())
    }
}

/// The executor of one processor.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Requests processed at once.
    pub workers: usize,
    /// Requests that may wait; beyond this they are answered `SYSTEM_BUSY`.
    pub queue_capacity: usize,
    /// A request that waited longer than this is answered `SYSTEM_BUSY` instead of being
    /// processed (the broker's `[TIMEOUT_CLEAN_QUEUE]` fast-fail); `None` waits forever.
    pub queue_wait_max: Option<Duration>,
}

impl ExecutorConfig {
    /// `workers` workers and a queue of `queue_capacity`, no wait limit.
    pub fn new(workers: usize, queue_capacity: usize) -> Self {
        Self {
            workers: workers.max(1),
            queue_capacity: queue_capacity.max(1),
            queue_wait_max: None,
        }
    }
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self::new(8, 10_000)
    }
}

struct Registration {
    codes: Vec<i32>,
    processor: Arc<dyn RequestProcessor>,
    config: ExecutorConfig,
}

/// Which processor serves which request code: built before a server or client starts.
#[derive(Default)]
pub struct ProcessorTable {
    registrations: Vec<Registration>,
    default: Option<Registration>,
}

impl fmt::Debug for ProcessorTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessorTable")
            .field(
                "codes",
                &self
                    .registrations
                    .iter()
                    .map(|r| &r.codes)
                    .collect::<Vec<_>>(),
            )
            .field("has_default", &self.default.is_some())
            .finish()
    }
}

impl ProcessorTable {
    /// An empty table: every request is answered `REQUEST_CODE_NOT_SUPPORTED`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `codes` to `processor`, which runs on its own executor. A later registration
    /// of the same code wins.
    pub fn register(
        mut self,
        codes: &[i32],
        processor: Arc<dyn RequestProcessor>,
        config: ExecutorConfig,
    ) -> Self {
        self.registrations.push(Registration {
            codes: codes.to_vec(),
            processor,
            config,
        });
        self
    }

    /// Routes every code without a registration of its own to `processor` (the name
    /// server's single processor).
    pub fn register_default(
        mut self,
        processor: Arc<dyn RequestProcessor>,
        config: ExecutorConfig,
    ) -> Self {
        self.default = Some(Registration {
            codes: Vec::new(),
            processor,
            config,
        });
        self
    }
}

struct Job {
    channel: Channel,
    request: RemotingCommand,
    enqueued_at: Instant,
}

struct Executor {
    queue: mpsc::Sender<Job>,
    processor: Arc<dyn RequestProcessor>,
}

/// A started processor table: queues and their workers.
pub(crate) struct Dispatcher {
    routes: BTreeMap<i32, usize>,
    default: Option<usize>,
    executors: Vec<Executor>,
    _workers: Vec<AbortOnDrop>,
}

/// The parts of a request needed to answer it after the request itself has been handed on.
#[derive(Clone, Copy)]
struct RequestMeta {
    code: i32,
    opaque: i32,
    oneway: bool,
    serialize_type: SerializeType,
}

impl RequestMeta {
    fn of(request: &RemotingCommand) -> Self {
        Self {
            code: request.code,
            opaque: request.opaque,
            oneway: request.is_oneway(),
            serialize_type: request.serialize_type,
        }
    }

    fn reply(&self, code: i32, remark: String) -> RemotingCommand {
        let mut response = RemotingCommand {
            code,
            remark: Some(remark),
            ..RemotingCommand::default()
        };
        self.stamp(&mut response);
        response
    }

    fn stamp(&self, response: &mut RemotingCommand) {
        response.opaque = self.opaque;
        response.serialize_type = self.serialize_type;
        response.mark_response();
    }
}

impl Dispatcher {
    /// Starts the workers of every executor in `table`.
    pub(crate) fn start(table: ProcessorTable, clock: SharedClock) -> Arc<Self> {
        let mut routes = BTreeMap::new();
        let mut executors = Vec::new();
        let mut workers = Vec::new();
        let mut start_executor = |registration: Registration| -> usize {
            let (queue, receiver) = mpsc::channel::<Job>(registration.config.queue_capacity);
            let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
            for _ in 0..registration.config.workers {
                workers.push(AbortOnDrop(tokio::spawn(work(
                    receiver.clone(),
                    registration.processor.clone(),
                    registration.config.queue_wait_max,
                    clock.clone(),
                ))));
            }
            executors.push(Executor {
                queue,
                processor: registration.processor,
            });
            executors.len() - 1
        };
        for registration in table.registrations {
            let codes = registration.codes.clone();
            let index = start_executor(registration);
            for code in codes {
                routes.insert(code, index);
            }
        }
        let default = table.default.map(&mut start_executor);
        Arc::new(Self {
            routes,
            default,
            executors,
            _workers: workers,
        })
    }

    /// Hands a request to its executor, or answers it at once when it cannot be queued.
    /// Never waits.
    pub(crate) fn dispatch(&self, channel: &Channel, request: RemotingCommand) {
        let meta = RequestMeta::of(&request);
        let Some(index) = self.routes.get(&meta.code).copied().or(self.default) else {
            reply_now(
                channel,
                meta.reply(
                    response_code::REQUEST_CODE_NOT_SUPPORTED,
                    format!(" request type {} not supported", meta.code),
                ),
            );
            return;
        };
        let executor = &self.executors[index];
        if executor.processor.reject_request() {
            reply_now(
                channel,
                meta.reply(
                    response_code::SYSTEM_BUSY,
                    "[REJECTREQUEST]system busy, start flow control for a while".into(),
                ),
            );
            return;
        }
        let job = Job {
            channel: channel.clone(),
            request,
            enqueued_at: channel_clock_now(channel),
        };
        if executor.queue.try_send(job).is_err() && !meta.oneway {
            reply_now(
                channel,
                meta.reply(
                    response_code::SYSTEM_BUSY,
                    "[OVERLOAD]system busy, start flow control for a while".into(),
                ),
            );
        }
    }
}

fn channel_clock_now(channel: &Channel) -> Instant {
    channel.clock().instant()
}

/// Writes a dispatch-layer answer without waiting on the connection's backpressure.
fn reply_now(channel: &Channel, response: RemotingCommand) {
    let channel = channel.clone();
    tokio::spawn(async move {
        if let Err(error) = channel.send(&response).await {
            tracing::debug!(%error, "could not write a dispatch-layer reply");
        }
    });
}

async fn work(
    receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    processor: Arc<dyn RequestProcessor>,
    queue_wait_max: Option<Duration>,
    clock: SharedClock,
) {
    loop {
        let job = {
            let mut receiver = receiver.lock().await;
            match receiver.recv().await {
                Some(job) => job,
                None => return,
            }
        };
        let meta = RequestMeta::of(&job.request);
        if let Some(wait_max) = queue_wait_max {
            let waited = clock.instant().saturating_duration_since(job.enqueued_at);
            if waited > wait_max {
                if !meta.oneway {
                    let remark = format!(
                        "[TIMEOUT_CLEAN_QUEUE]broker busy, start flow control for a while, period in queue: {}ms",
                        waited.as_millis()
                    );
                    send_reply(&job.channel, meta.reply(response_code::SYSTEM_BUSY, remark)).await;
                }
                continue;
            }
        }
        let outcome = AssertUnwindSafe(processor.process(&job.channel, job.request))
            .catch_unwind()
            .await;
        let response = match outcome {
            Ok(Ok(Some(mut response))) => {
                meta.stamp(&mut response);
                Some(response)
            }
            Ok(Ok(None)) => None,
            Ok(Err(error)) => Some(meta.reply(error.code, error.remark)),
            Err(_) => {
                tracing::error!(code = meta.code, "request processor panicked");
                Some(meta.reply(
                    response_code::SYSTEM_ERROR,
                    format!("internal error while processing request code {}", meta.code),
                ))
            }
        };
        if let Some(response) = response.filter(|_| !meta.oneway) {
            send_reply(&job.channel, response).await;
        }
    }
}

async fn send_reply(channel: &Channel, response: RemotingCommand) {
    if let Err(error) = channel.send(&response).await {
        tracing::debug!(peer = %channel.peer_addr(), %error, "could not write a response");
    }
}
