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
//! - a request taken from the queue while the executor's `purge_when` check says busy (the
//!   send executor: the store's page cache is busy) → `SYSTEM_BUSY` `[PCBUSY_CLEAN_QUEUE]…`;
//! - a request that waited in the queue `queue_wait_max` or longer → `SYSTEM_BUSY`
//!   `[TIMEOUT_CLEAN_QUEUE]…`;
//! - a processor error or panic → `SYSTEM_ERROR` with a remark, never a dropped connection.
//!
//! `[PCBUSY_CLEAN_QUEUE]` and `[TIMEOUT_CLEAN_QUEUE]` are Java's `BrokerFastFailure`, which a
//! separate thread applies to the queues every 10 ms; here each worker applies them to the
//! request it takes, so a purged request is answered when a worker reaches it rather than
//! within 10 ms. Both remarks are Java's, with the time the request waited and the number of
//! requests still queued behind it.
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

/// Says whether the requests an executor has queued should be answered `SYSTEM_BUSY` now
/// instead of processed. Called once per request taken from the queue, so it must be cheap.
pub type BusyCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// The executor of one processor.
#[derive(Clone)]
pub struct ExecutorConfig {
    /// Requests processed at once.
    pub workers: usize,
    /// Requests that may wait; beyond this they are answered `SYSTEM_BUSY`.
    pub queue_capacity: usize,
    /// A request that waited this long or longer is answered `SYSTEM_BUSY` instead of being
    /// processed (the broker's `[TIMEOUT_CLEAN_QUEUE]` fast-fail); `None` waits forever.
    pub queue_wait_max: Option<Duration>,
    /// While this says busy, every request taken from the queue is answered `SYSTEM_BUSY`
    /// instead of being processed (the broker's `[PCBUSY_CLEAN_QUEUE]` fast-fail of sends);
    /// `None` never purges.
    pub purge_when: Option<BusyCheck>,
}

impl fmt::Debug for ExecutorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorConfig")
            .field("workers", &self.workers)
            .field("queue_capacity", &self.queue_capacity)
            .field("queue_wait_max", &self.queue_wait_max)
            .field("purge_when", &self.purge_when.is_some())
            .finish()
    }
}

impl ExecutorConfig {
    /// `workers` workers and a queue of `queue_capacity`, no wait limit, no purge.
    pub fn new(workers: usize, queue_capacity: usize) -> Self {
        Self {
            workers: workers.max(1),
            queue_capacity: queue_capacity.max(1),
            queue_wait_max: None,
            purge_when: None,
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
            let fast_fail = FastFail {
                queue_wait_max: registration.config.queue_wait_max,
                purge_when: registration.config.purge_when.clone(),
            };
            for _ in 0..registration.config.workers {
                workers.push(AbortOnDrop(tokio::spawn(work(
                    receiver.clone(),
                    registration.processor.clone(),
                    fast_fail.clone(),
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

/// The fast-fail rules a worker applies to each request it takes from the queue.
#[derive(Clone)]
struct FastFail {
    queue_wait_max: Option<Duration>,
    purge_when: Option<BusyCheck>,
}

impl FastFail {
    /// The `SYSTEM_BUSY` remark for a request that `waited` in the queue with `queue_len`
    /// requests still behind it, or `None` to process it. As Java's `cleanExpiredRequest`,
    /// the page-cache purge comes first, then the age limit (`behind >= maxWait`).
    fn remark(&self, waited: Duration, queue_len: usize) -> Option<String> {
        let cause = if self.purge_when.as_ref().is_some_and(|busy| busy()) {
            "PCBUSY_CLEAN_QUEUE"
        } else if self
            .queue_wait_max
            .is_some_and(|wait_max| waited >= wait_max)
        {
            "TIMEOUT_CLEAN_QUEUE"
        } else {
            return None;
        };
        Some(format!(
            "[{cause}]broker busy, start flow control for a while, period in queue: {}ms, size of queue: {queue_len}",
            waited.as_millis()
        ))
    }
}

/// Requests a worker processes in a row before letting the other tasks run: the connection
/// writers send the answers so far while the rest of the queue waits, rather than after the
/// whole queue (see the channel's `FRAMES_PER_TURN`). With the send executor's four workers a
/// current-thread runtime answers in turns of about sixteen. A worker that found the queue
/// empty behind its last request yields nothing: it is about to wait anyway, and one request
/// at a time pays no extra scheduler round.
const REQUESTS_PER_TURN: u32 = 4;

async fn work(
    receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    processor: Arc<dyn RequestProcessor>,
    fast_fail: FastFail,
    clock: SharedClock,
) {
    let mut requests_this_turn = 0;
    let mut more_queued = false;
    loop {
        if !more_queued {
            requests_this_turn = 0;
        } else if requests_this_turn == REQUESTS_PER_TURN {
            requests_this_turn = 0;
            tokio::task::yield_now().await;
        }
        requests_this_turn += 1;
        let (job, queue_len) = {
            let mut receiver = receiver.lock().await;
            match receiver.recv().await {
                // Java reports the queue's size after taking the request out.
                Some(job) => (job, receiver.len()),
                None => return,
            }
        };
        more_queued = queue_len > 0;
        let meta = RequestMeta::of(&job.request);
        let waited = clock.instant().saturating_duration_since(job.enqueued_at);
        if let Some(remark) = fast_fail.remark(waited, queue_len) {
            if !meta.oneway {
                send_reply(&job.channel, meta.reply(response_code::SYSTEM_BUSY, remark)).await;
            }
            continue;
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use futures::StreamExt;
    use tokio::sync::{Notify, Semaphore};
    use tokio_util::codec::FramedRead;

    use super::*;
    use crate::clock::test_support::StepClock;
    use crate::net::Connection;
    use crate::remoting::RemotingCodec;

    const CODE: i32 = 10;

    /// A processor that answers SUCCESS once the test lets each request through, and says
    /// when a request has reached it (so the test knows the worker is occupied).
    struct Gate {
        reached: Notify,
        permits: Semaphore,
        reject: AtomicBool,
    }

    #[async_trait::async_trait]
    impl RequestProcessor for Gate {
        async fn process(
            &self,
            _channel: &Channel,
            request: RemotingCommand,
        ) -> Result<Option<RemotingCommand>, ProcessError> {
            self.reached.notify_one();
            self.permits
                .acquire()
                .await
                .expect("the semaphore is never closed")
                .forget();
            Ok(Some(RemotingCommand::success_to(&request)))
        }

        fn reject_request(&self) -> bool {
            self.reject.load(Ordering::SeqCst)
        }
    }

    struct Fixture {
        clock: Arc<StepClock>,
        gate: Arc<Gate>,
        dispatcher: Arc<Dispatcher>,
        channel: Channel,
        peer: FramedRead<tokio::io::DuplexStream, RemotingCodec>,
    }

    /// One worker behind `config`'s rules, on a clock that moves only when told to.
    fn fixture(configure: impl FnOnce(&mut ExecutorConfig)) -> Fixture {
        let clock = StepClock::at(1_700_000_000_000);
        let gate = Arc::new(Gate {
            reached: Notify::new(),
            permits: Semaphore::new(0),
            reject: AtomicBool::new(false),
        });
        let mut config = ExecutorConfig::new(1, 16);
        configure(&mut config);
        let table = ProcessorTable::new().register(&[CODE], gate.clone(), config);
        let dispatcher = Dispatcher::start(table, clock.clone());
        let (channel, peer) = connected_channel(clock.clone(), ProcessorTable::new());
        Fixture {
            channel,
            peer,
            clock,
            gate,
            dispatcher,
        }
    }

    /// A broker-side channel whose peer's requests go to `processors`, and the client's end
    /// of its connection.
    fn connected_channel(
        clock: Arc<StepClock>,
        processors: ProcessorTable,
    ) -> (Channel, FramedRead<tokio::io::DuplexStream, RemotingCodec>) {
        let (broker_side, client_side) = tokio::io::duplex(1 << 16);
        let connection = Connection {
            stream: Box::new(broker_side),
            local_addr: "127.0.0.1:10911".parse().expect("literal address"),
            peer_addr: "127.0.0.1:5555".parse().expect("literal address"),
        };
        (
            Channel::start_for_test_with(connection, clock, processors),
            FramedRead::new(client_side, RemotingCodec),
        )
    }

    impl Fixture {
        fn send(&self, opaque: i32) {
            let mut request = RemotingCommand::request(CODE);
            request.opaque = opaque;
            self.dispatcher.dispatch(&self.channel, request);
        }

        /// Sends request 1 and waits until the only worker is busy with it.
        async fn occupy_the_worker(&self) {
            self.send(1);
            self.gate.reached.notified().await;
        }

        async fn answer(&mut self) -> (i32, i32, String) {
            let response = self
                .peer
                .next()
                .await
                .expect("the connection is open")
                .expect("the broker writes valid frames");
            assert!(response.is_response());
            (
                response.opaque,
                response.code,
                response.remark.unwrap_or_default(),
            )
        }
    }

    fn java_remark(cause: &str, waited_ms: u64, queue_len: usize) -> String {
        format!(
            "[{cause}]broker busy, start flow control for a while, period in queue: {waited_ms}ms, size of queue: {queue_len}"
        )
    }

    #[test]
    fn the_age_limit_is_reached_at_the_limit_itself_as_javas_behind_ge_max_wait() {
        let fast_fail = FastFail {
            queue_wait_max: Some(Duration::from_millis(200)),
            purge_when: None,
        };
        assert_eq!(fast_fail.remark(Duration::from_micros(199_999), 5), None);
        assert_eq!(
            fast_fail.remark(Duration::from_millis(200), 5),
            Some(java_remark("TIMEOUT_CLEAN_QUEUE", 200, 5))
        );
        let no_limit = FastFail {
            queue_wait_max: None,
            purge_when: None,
        };
        assert_eq!(no_limit.remark(Duration::from_secs(3600), 0), None);
    }

    #[test]
    fn the_page_cache_purge_comes_before_the_age_limit() {
        let fast_fail = FastFail {
            queue_wait_max: Some(Duration::from_millis(200)),
            purge_when: Some(Arc::new(|| true)),
        };
        assert_eq!(
            fast_fail.remark(Duration::from_millis(250), 2),
            Some(java_remark("PCBUSY_CLEAN_QUEUE", 250, 2))
        );
        assert_eq!(
            fast_fail.remark(Duration::ZERO, 0),
            Some(java_remark("PCBUSY_CLEAN_QUEUE", 0, 0))
        );
    }

    #[tokio::test]
    async fn requests_queued_past_the_wait_limit_are_answered_timeout_clean_queue() {
        let mut f = fixture(|config| config.queue_wait_max = Some(Duration::from_millis(200)));
        f.occupy_the_worker().await;
        f.send(2);
        f.send(3);
        f.clock.advance(Duration::from_millis(250));
        f.gate.permits.add_permits(1);

        assert_eq!(f.answer().await, (1, response_code::SUCCESS, String::new()));
        let busy = response_code::SYSTEM_BUSY;
        let timeout = |queue_len| java_remark("TIMEOUT_CLEAN_QUEUE", 250, queue_len);
        assert_eq!(f.answer().await, (2, busy, timeout(1)));
        assert_eq!(f.answer().await, (3, busy, timeout(0)));

        // A request that did not wait is processed.
        f.send(4);
        f.gate.permits.add_permits(1);
        assert_eq!(f.answer().await, (4, response_code::SUCCESS, String::new()));
    }

    #[tokio::test]
    async fn queued_requests_are_purged_pcbusy_clean_queue_while_the_check_says_busy() {
        let busy = Arc::new(AtomicBool::new(false));
        let check = busy.clone();
        let mut f = fixture(|config| {
            config.queue_wait_max = Some(Duration::from_millis(200));
            config.purge_when = Some(Arc::new(move || check.load(Ordering::SeqCst)));
        });
        f.occupy_the_worker().await;
        f.send(2);
        f.send(3);
        busy.store(true, Ordering::SeqCst);
        f.clock.advance(Duration::from_millis(30));
        f.gate.permits.add_permits(1);

        assert_eq!(f.answer().await, (1, response_code::SUCCESS, String::new()));
        let code = response_code::SYSTEM_BUSY;
        let purged = |queue_len| java_remark("PCBUSY_CLEAN_QUEUE", 30, queue_len);
        assert_eq!(f.answer().await, (2, code, purged(1)));
        assert_eq!(f.answer().await, (3, code, purged(0)));

        busy.store(false, Ordering::SeqCst);
        f.send(4);
        f.gate.permits.add_permits(1);
        assert_eq!(f.answer().await, (4, response_code::SUCCESS, String::new()));
    }

    #[tokio::test]
    async fn a_rejecting_processor_is_answered_rejectrequest_without_queueing() {
        let mut f = fixture(|_| {});
        f.gate.reject.store(true, Ordering::SeqCst);
        f.send(1);
        let remark = "[REJECTREQUEST]system busy, start flow control for a while".to_owned();
        assert_eq!(f.answer().await, (1, response_code::SYSTEM_BUSY, remark));

        f.gate.reject.store(false, Ordering::SeqCst);
        f.send(2);
        f.gate.permits.add_permits(1);
        assert_eq!(f.answer().await, (2, response_code::SUCCESS, String::new()));
    }

    /// Turns: a worker and a connection reader let other tasks run during a long burst. They
    /// are claims about the order in which tokio's scheduler runs ready tasks; the simulator
    /// picks the next ready task at random by design, so they are checked on tokio only.
    #[cfg(not(madsim))]
    mod turns {
        use super::*;

        /// Answers at once and counts the requests it has processed.
        #[derive(Default)]
        struct Counting(std::sync::atomic::AtomicUsize);

        #[async_trait::async_trait]
        impl RequestProcessor for Counting {
            async fn process(
                &self,
                _channel: &Channel,
                request: RemotingCommand,
            ) -> Result<Option<RemotingCommand>, ProcessError> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Ok(Some(RemotingCommand::success_to(&request)))
            }
        }

        #[tokio::test]
        async fn the_first_answers_leave_before_a_worker_has_worked_through_a_long_queue() {
            const QUEUED: usize = 32;
            let clock = StepClock::at(1_700_000_000_000);
            let counting = Arc::new(Counting::default());
            let table = ProcessorTable::new().register(
                &[CODE],
                counting.clone(),
                ExecutorConfig::new(1, QUEUED),
            );
            let dispatcher = Dispatcher::start(table, clock.clone());
            let (channel, mut peer) = connected_channel(clock, ProcessorTable::new());
            let processed_at_first_answer = tokio::spawn({
                let counting = counting.clone();
                async move {
                    peer.next()
                        .await
                        .expect("the connection is open")
                        .expect("the broker writes valid frames");
                    counting.0.load(Ordering::SeqCst)
                }
            });
            for opaque in 1..=QUEUED {
                let mut request = RemotingCommand::request(CODE);
                request.opaque = i32::try_from(opaque).expect("a small number");
                dispatcher.dispatch(&channel, request);
            }
            let processed = processed_at_first_answer.await.expect("the peer task ends");
            // A worker that went through the whole queue before the writer ran would answer only
            // after all of it: the peer would wait for the last request's processing.
            assert!(
                processed < QUEUED,
                "the first answer arrived after {processed} of {QUEUED} requests were processed"
            );
        }

        #[tokio::test]
        async fn the_reader_hands_over_a_turn_of_frames_then_lets_the_workers_run() {
            use tokio::io::AsyncWriteExt;
            const SENT: usize = 40;
            // Every request is answered SYSTEM_BUSY by the fast-fail rule, whose remark tells how
            // many requests were still queued when the worker took the first one: all the reader
            // had handed over by then.
            let table = ProcessorTable::new().register(
                &[CODE],
                Arc::new(Counting::default()),
                ExecutorConfig {
                    purge_when: Some(Arc::new(|| true)),
                    ..ExecutorConfig::new(1, SENT)
                },
            );
            let (_channel, mut peer) = connected_channel(StepClock::at(1_700_000_000_000), table);
            let mut burst = bytes::BytesMut::new();
            for opaque in 1..=SENT {
                let mut request = RemotingCommand::request(CODE);
                request.opaque = i32::try_from(opaque).expect("a small number");
                crate::remoting::codec::encode(&request, &mut burst).expect("the request encodes");
            }
            peer.get_mut()
                .write_all(&burst)
                .await
                .expect("the burst is written");
            let first = peer
                .next()
                .await
                .expect("the connection is open")
                .expect("the broker writes valid frames");
            let queued_behind = super::super::super::channel::FRAMES_PER_TURN - 1;
            assert_eq!(
                first.remark,
                Some(java_remark("PCBUSY_CLEAN_QUEUE", 0, queued_behind as usize)),
                "the reader handed over more than one turn of frames before the worker ran"
            );
        }
    }
}
