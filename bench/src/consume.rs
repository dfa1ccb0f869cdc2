//! The receiving side: a push consumer (the client's background pulls and a listener) or a
//! pull consumer (one long-polling pull loop per queue), both feeding a [`ConsumeSink`].
//!
//! The sink classifies each delivered message. In an `e2e` run only messages of this run
//! count, by the run id in their body, and each is attributed to the phase it was *sent* in;
//! messages of other runs are counted as foreign and otherwise ignored. In a `consume` run
//! every message counts, attributed to the phase it *arrived* in. End-to-end latency is the
//! wall-clock time from the send time in the body to the delivery, or from the broker's born
//! timestamp (millisecond resolution) for bodies without one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use ferrocket_engine::Env;
use ferrocket_engine::client::api::{ClientError, PullStatus};
use ferrocket_engine::client::instance::ClientInstanceRegistry;
use ferrocket_engine::client::pull_consumer::{
    DefaultMqPullConsumer, PullConsumerConfig, PullConsumerError,
};
use ferrocket_engine::client::push_consumer::{
    ConsumeStatus, DefaultMqPushConsumer, MessageListener, PushConsumerConfig,
};
use ferrocket_engine::protocol::heartbeat::{ConsumeFromWhere, MessageQueue};
use ferrocket_engine::store::message::StoredMessage;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::body::read_header;
use crate::cli::{ConsumerKind, ReceiveArgs, StartFrom};
use crate::control::{Phase, Stop, Timeline, WallClock};
use crate::stats::{Consumed, FirstErrors, Recorder, code_key};

/// Pause of a pull loop after a failed pull.
pub const PULL_RETRY_DELAY: Duration = Duration::from_millis(100);

/// The subscription expression: every tag.
const SUB_ALL: &str = "*";

/// Where delivered messages go.
#[derive(Debug)]
pub struct ConsumeSink {
    recorder: Arc<Recorder>,
    first_errors: Arc<FirstErrors>,
    timeline: OnceLock<Timeline>,
    wall: WallClock,
    own_run: Option<u32>,
    count: Option<u64>,
    done: Arc<Stop>,
    measured: AtomicU64,
    foreign: AtomicU64,
}

impl ConsumeSink {
    /// A sink recording into `recorder`. With `own_run`, only that run's messages count (an
    /// `e2e` run); with `count`, `done` is signalled once that many measured messages
    /// arrived. Until [`begin`](Self::begin) gives it the run's timeline, every arrival is
    /// in the warm-up.
    pub fn new(
        recorder: Arc<Recorder>,
        first_errors: Arc<FirstErrors>,
        wall: WallClock,
        own_run: Option<u32>,
        count: Option<u64>,
        done: Arc<Stop>,
    ) -> Self {
        Self {
            recorder,
            first_errors,
            timeline: OnceLock::new(),
            wall,
            own_run,
            count,
            done,
            measured: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
        }
    }

    /// Starts the run's `timeline` (once; later calls are ignored).
    pub fn begin(&self, timeline: Timeline) {
        let _ = self.timeline.set(timeline);
    }

    fn in_measured_window(&self, at: Instant) -> bool {
        self.timeline
            .get()
            .is_some_and(|timeline| timeline.phase(at) == Phase::Measured)
    }

    /// Records delivered `messages`.
    pub fn accept(&self, messages: &[StoredMessage]) {
        let now = Instant::now();
        let now_unix_ns = self.wall.unix_ns(now);
        let arrived_measured = self.in_measured_window(now);
        let consumed: Vec<Consumed> = messages
            .iter()
            .filter_map(|message| self.classify(message, now_unix_ns, arrived_measured))
            .collect();
        let measured = consumed.iter().filter(|c| c.measured).count() as u64;
        self.recorder.record_consumed(consumed);
        let total = self.measured.fetch_add(measured, Ordering::Relaxed) + measured;
        if self.count.is_some_and(|count| total >= count) {
            self.done.stop();
        }
    }

    fn classify(
        &self,
        message: &StoredMessage,
        now_unix_ns: u64,
        arrived_measured: bool,
    ) -> Option<Consumed> {
        let body = message.body.as_deref().unwrap_or_default();
        let bytes = body.len() as u64;
        let header = read_header(body);
        match (self.own_run, header) {
            (Some(run), Some(header)) if header.run_id == run => Some(Consumed {
                measured: header.measured,
                bytes,
                e2e: Some(Duration::from_nanos(
                    now_unix_ns.saturating_sub(header.sent_unix_ns),
                )),
                seq: Some(header.seq),
            }),
            (Some(_), _) => {
                self.foreign.fetch_add(1, Ordering::Relaxed);
                None
            }
            (None, header) => {
                let sent_unix_ns = header.map_or_else(
                    || u64::try_from(message.born_timestamp).unwrap_or(0) * 1_000_000,
                    |header| header.sent_unix_ns,
                );
                Some(Consumed {
                    measured: arrived_measured,
                    bytes,
                    e2e: Some(Duration::from_nanos(
                        now_unix_ns.saturating_sub(sent_unix_ns),
                    )),
                    seq: None,
                })
            }
        }
    }

    /// Records a failed pull.
    pub fn error(&self, error: &PullConsumerError) {
        let key = pull_error_key(error);
        self.first_errors.note(&key, error);
        let measured = self.in_measured_window(Instant::now());
        self.recorder.record_consume_error(measured, key);
    }

    /// Messages of other runs delivered and ignored.
    pub fn foreign(&self) -> u64 {
        self.foreign.load(Ordering::Relaxed)
    }
}

/// The key a failed pull is counted under.
pub fn pull_error_key(error: &PullConsumerError) -> String {
    match error {
        PullConsumerError::Client(ClientError::Remoting(remoting)) if remoting.is_timeout() => {
            "PULL_TIMEOUT".into()
        }
        PullConsumerError::Client(ClientError::Remoting(remoting)) if remoting.is_connect() => {
            "CONNECT_BROKER_EXCEPTION".into()
        }
        PullConsumerError::Client(client) => client
            .response_code()
            .map_or_else(|| "CLIENT_ERROR".into(), code_key),
        _ => "CLIENT_ERROR".into(),
    }
}

/// A running consumer.
pub enum Consumer {
    /// A push consumer.
    Push(Box<DefaultMqPushConsumer>),
    /// A pull consumer and its pull loops.
    Pull {
        /// The consumer.
        consumer: Arc<DefaultMqPullConsumer>,
        /// One loop per queue.
        loops: Vec<JoinHandle<()>>,
    },
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Push(_) => f.write_str("Consumer::Push"),
            Self::Pull { loops, .. } => write!(f, "Consumer::Pull({} queues)", loops.len()),
        }
    }
}

/// The consumer group of a run: `--group`, else one no other process uses.
pub fn group(args: &ReceiveArgs) -> String {
    args.group
        .clone()
        .unwrap_or_else(|| format!("mqbench_{}", std::process::id()))
}

/// Starts a consumer of `topic` as `args` say, from `from` in every queue, delivering into
/// `sink`; its loops end at `stop`.
pub async fn start(
    env: &Env,
    namesrv: &str,
    topic: &str,
    args: &ReceiveArgs,
    from: StartFrom,
    sink: Arc<ConsumeSink>,
    stop: Arc<Stop>,
) -> Result<Consumer> {
    let registry = Arc::new(ClientInstanceRegistry::new());
    let group = group(args);
    let instance_name = format!("{}#mqbench-consumer", std::process::id());
    match args.consumer {
        ConsumerKind::Push => {
            let mut config = PushConsumerConfig::new(group.as_str(), namesrv);
            config.consume_from_where = match from {
                StartFrom::First => ConsumeFromWhere::ConsumeFromFirstOffset,
                StartFrom::Last => ConsumeFromWhere::ConsumeFromLastOffset,
            };
            config
                .subscriptions
                .insert(topic.to_owned(), SUB_ALL.to_owned());
            config.consume_thread_max = args.consume_threads;
            config.consume_message_batch_max_size = args.consume_batch;
            config.pull_batch_size = args.pull_batch;
            config.client.change_instance_name_to_pid(instance_name);
            let listener = MessageListener::concurrently(move |messages: &[StoredMessage], _| {
                sink.accept(messages);
                ConsumeStatus::ConsumeSuccess
            });
            let consumer = DefaultMqPushConsumer::new(env, registry, config, listener);
            consumer
                .start()
                .await
                .with_context(|| format!("push consumer of group {group} failed to start"))?;
            Ok(Consumer::Push(Box::new(consumer)))
        }
        ConsumerKind::Pull => {
            let mut config = PullConsumerConfig::new(group.as_str(), namesrv);
            config.client.change_instance_name_to_pid(instance_name);
            let consumer = Arc::new(DefaultMqPullConsumer::new(env, registry, config));
            consumer
                .start()
                .await
                .with_context(|| format!("pull consumer of group {group} failed to start"))?;
            let queues = consumer
                .fetch_subscribe_message_queues(topic)
                .await
                .with_context(|| format!("no queues of topic {topic}"))?;
            let mut loops = Vec::with_capacity(queues.len());
            for queue in queues {
                let offset = match from {
                    StartFrom::First => consumer.min_offset(&queue).await,
                    StartFrom::Last => consumer.max_offset(&queue).await,
                }
                .with_context(|| format!("no offset of {queue:?}"))?;
                loops.push(tokio::spawn(pull_loop(
                    consumer.clone(),
                    queue,
                    offset,
                    args.pull_batch,
                    sink.clone(),
                    stop.clone(),
                )));
            }
            Ok(Consumer::Pull { consumer, loops })
        }
    }
}

/// Pulls `queue` from `offset` on, blocking at its end, until `stop`.
async fn pull_loop(
    consumer: Arc<DefaultMqPullConsumer>,
    queue: MessageQueue,
    mut offset: i64,
    batch: i32,
    sink: Arc<ConsumeSink>,
    stop: Arc<Stop>,
) {
    loop {
        let pulled = tokio::select! {
            pulled = consumer.pull_block_if_not_found(&queue, SUB_ALL, offset, batch) => pulled,
            () = stop.stopped() => return,
        };
        match pulled {
            Ok(result) => {
                if result.status == PullStatus::Found {
                    sink.accept(&result.messages);
                }
                offset = result.next_begin_offset;
            }
            Err(error) => {
                sink.error(&error);
                if !stop.sleep_until(Instant::now() + PULL_RETRY_DELAY).await {
                    return;
                }
            }
        }
    }
}

impl Consumer {
    /// Stops the consumer: ends the pull loops and shuts the client down.
    pub async fn shutdown(self) {
        match self {
            Self::Push(consumer) => consumer.shutdown().await,
            Self::Pull { consumer, loops } => {
                for pull in &loops {
                    pull.abort();
                }
                for pull in loops {
                    // An aborted loop ends with a cancellation, which is the point.
                    let _ = pull.await;
                }
                consumer.shutdown().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use bytes::Bytes;

    use super::*;
    use crate::body::BodyFactory;

    fn stored(body: Bytes, born_timestamp: i64) -> StoredMessage {
        let host: SocketAddr = "127.0.0.1:10911".parse().expect("literal address");
        StoredMessage {
            store_size: 0,
            body_crc: 0,
            queue_id: 0,
            flag: 0,
            queue_offset: 0,
            commit_log_offset: 0,
            sys_flag: 0,
            born_timestamp,
            born_host: host,
            store_timestamp: born_timestamp,
            store_host: host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: Some(body),
            topic: "T".into(),
            properties: String::new(),
            msg_id: String::new(),
        }
    }

    fn sink(own_run: Option<u32>, count: Option<u64>) -> (Arc<Recorder>, Arc<Stop>, ConsumeSink) {
        let recorder = Arc::new(Recorder::new());
        let done = Arc::new(Stop::default());
        let sink = ConsumeSink::new(
            recorder.clone(),
            Arc::default(),
            WallClock::new(),
            own_run,
            count,
            done.clone(),
        );
        sink.begin(Timeline::starting_now(Duration::ZERO, None));
        (recorder, done, sink)
    }

    #[test]
    fn an_e2e_sink_counts_its_own_run_by_send_phase_and_ignores_others() {
        let (recorder, _, sink) = sink(Some(5), None);
        let ours = BodyFactory::new(5, 64, || 1);
        let theirs = BodyFactory::new(6, 64, || 1);
        let sent = WallClock::new().unix_ns(Instant::now());
        sink.accept(&[
            stored(ours.body(0, true, sent), 0),
            stored(ours.body(1, false, sent), 0),
            stored(theirs.body(0, true, sent), 0),
            stored(ours.body(0, true, sent), 0),
        ]);
        let total = recorder.total();
        assert_eq!((total.consumed, total.duplicates), (2, 1));
        assert_eq!(total.consumed_bytes, 128);
        assert_eq!(sink.foreign(), 1);
    }

    #[test]
    fn a_consume_sink_signals_done_at_its_count_and_falls_back_to_born_time() {
        let (recorder, done, sink) = sink(None, Some(2));
        sink.accept(&[stored(Bytes::from_static(b"short"), 1_000)]);
        assert!(!done.is_stopped());
        sink.accept(&[stored(Bytes::from_static(b"short"), 1_000)]);
        assert!(done.is_stopped());
        let total = recorder.total();
        assert_eq!(total.consumed, 2);
        // Born at 1 s after the epoch: the latency is the age of the message.
        assert!(total.e2e_latency.max() > 1_000_000);
    }
}
