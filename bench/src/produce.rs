//! The sending side: producers (each its own client instance, so its own connection to every
//! broker) and the send loops that keep a fixed number of requests in flight.
//!
//! Closed loop: each of `--inflight` loops sends its next request as soon as the last one is
//! answered. Open loop (`--rate R`): request `k` of the run is due at `start + k / R`; the
//! loops take the due times in order, so when every loop is busy the schedule runs ahead of
//! the sends and the wait shows up in the latency, which is measured from the due time (no
//! coordinated omission). Timers fire on a 1 ms wheel, so a loop wakes up to
//! [`TIMER_SLACK`] early and then measures from its real start.
//!
//! Each request is attributed to a phase by its start: a request started in the warm-up is
//! not counted, one started in the measured window counts even if answered after it. With
//! `--count`, the measured window ends after that many messages were claimed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use ferrocket_engine::Env;
use ferrocket_engine::client::api::SendStatus;
use ferrocket_engine::client::instance::ClientInstanceRegistry;
use ferrocket_engine::client::producer::{
    DefaultMqProducer, Message, ProducerConfig, ProducerError,
};
use ferrocket_engine::remoting::response_code;
use tokio::time::Instant;

use crate::body::BodyFactory;
use crate::cli::SendArgs;
use crate::control::{Phase, Stop, Timeline, WallClock};
use crate::stats::{FirstErrors, Recorder, SendOutcome, code_key};

/// How early an open-loop send loop wakes before a request's due time.
pub const TIMER_SLACK: Duration = Duration::from_millis(1);

/// The producer group of every benchmark producer.
pub const PRODUCER_GROUP: &str = "mqbench_pg";

/// The tag set with `--tags`.
pub const TAG: &str = "TagA";

/// Starts `args.producers` producers of the name servers `namesrv`, each with its own client
/// instance.
pub async fn start_producers(
    env: &Env,
    namesrv: &str,
    args: &SendArgs,
) -> Result<Vec<Arc<DefaultMqProducer>>> {
    let registry = Arc::new(ClientInstanceRegistry::new());
    let mut producers = Vec::with_capacity(args.producers);
    for index in 0..args.producers.max(1) {
        let mut config = ProducerConfig::new(PRODUCER_GROUP, namesrv);
        config.send_msg_timeout = args.send_timeout;
        config.retry_times_when_send_failed = args.retries;
        config.client.change_instance_name_to_pid(format!(
            "{}#mqbench-producer-{index}",
            std::process::id()
        ));
        let producer = Arc::new(DefaultMqProducer::new(env, registry.clone(), config));
        producer
            .start()
            .await
            .with_context(|| format!("producer {index} failed to start"))?;
        producers.push(producer);
    }
    Ok(producers)
}

/// One send request, as claimed from the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// When it started, or was due if it started late.
    pub start: Instant,
    /// Whether it counts in the measured window.
    pub measured: bool,
    /// The sequence number of its first message.
    pub first_seq: u64,
    /// Its message count.
    pub messages: u64,
}

/// What every send loop of a run shares: the schedule, the message counter and the bodies.
#[derive(Debug)]
pub struct SendPlan {
    topic: String,
    batch: u64,
    keys: bool,
    tags: bool,
    rate: Option<f64>,
    count: Option<u64>,
    timeline: Timeline,
    wall: WallClock,
    bodies: BodyFactory,
    next_slot: AtomicU64,
    next_seq: AtomicU64,
    measured_claimed: AtomicU64,
}

impl SendPlan {
    /// The plan of a run sending `bodies` to `topic` as `args` say, on `timeline`, ending
    /// after `count` measured messages if given.
    pub fn new(
        topic: &str,
        args: &SendArgs,
        count: Option<u64>,
        timeline: Timeline,
        wall: WallClock,
        bodies: BodyFactory,
    ) -> Self {
        Self {
            topic: topic.to_owned(),
            batch: args.batch.max(1) as u64,
            keys: args.keys,
            tags: args.tags,
            rate: args.rate,
            count,
            timeline,
            wall,
            bodies,
            next_slot: AtomicU64::new(0),
            next_seq: AtomicU64::new(0),
            measured_claimed: AtomicU64::new(0),
        }
    }

    /// Claims the next request, waiting for its due time in an open loop; `None` once the
    /// run is over (window ended, count reached or stop signalled).
    pub async fn next_request(&self, stop: &Stop) -> Option<Request> {
        if stop.is_stopped() {
            return None;
        }
        let start = match self.rate {
            None => Instant::now(),
            Some(rate) => {
                let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
                let due = self.timeline.start + Duration::from_secs_f64(slot as f64 / rate);
                if self.timeline.phase(due) == Phase::Over {
                    return None;
                }
                if let Some(wake) = due.checked_sub(TIMER_SLACK)
                    && Instant::now() < wake
                    && !stop.sleep_until(wake).await
                {
                    return None;
                }
                due.min(Instant::now())
            }
        };
        let (measured, messages) = match self.timeline.phase(start) {
            Phase::Over => return None,
            Phase::Warmup => (false, self.batch),
            Phase::Measured => match self.count {
                None => (true, self.batch),
                Some(count) => {
                    let claimed = self
                        .measured_claimed
                        .fetch_add(self.batch, Ordering::Relaxed);
                    if claimed >= count {
                        return None;
                    }
                    (true, self.batch.min(count - claimed))
                }
            },
        };
        let first_seq = self.next_seq.fetch_add(messages, Ordering::Relaxed);
        Some(Request {
            start,
            measured,
            first_seq,
            messages,
        })
    }

    /// The messages of `request`.
    pub fn messages(&self, request: &Request) -> Vec<Message> {
        let sent_unix_ns = self.wall.unix_ns(request.start);
        (request.first_seq..request.first_seq + request.messages)
            .map(|seq| {
                let body = self.bodies.body(seq, request.measured, sent_unix_ns);
                let mut message = Message::new(self.topic.as_str(), body);
                if self.keys {
                    message = message.with_keys(format!("mqbench-{seq}"));
                }
                if self.tags {
                    message = message.with_tags(TAG);
                }
                message
            })
            .collect()
    }

    /// Whether requests go out as SEND_BATCH_MESSAGE.
    pub fn batched(&self) -> bool {
        self.batch > 1
    }
}

/// The key a failed send is counted under.
pub fn error_key(error: &ProducerError) -> String {
    match (error.response_code(), error) {
        (Some(code), _) => code_key(code),
        (None, ProducerError::CallTimeout { .. }) => "CALL_TIMEOUT".into(),
        (None, ProducerError::SendFailed { .. }) => "SEND_FAILED".into(),
        (None, ProducerError::NotRunning(_)) => "PRODUCER_NOT_RUNNING".into(),
        (None, _) => "CLIENT_ERROR".into(),
    }
}

/// The key of a stored answer other than SEND_OK.
pub fn status_key(status: SendStatus) -> String {
    let code = match status {
        SendStatus::SendOk => response_code::SUCCESS,
        SendStatus::FlushDiskTimeout => response_code::FLUSH_DISK_TIMEOUT,
        SendStatus::FlushSlaveTimeout => response_code::FLUSH_SLAVE_TIMEOUT,
        SendStatus::SlaveNotAvailable => response_code::SLAVE_NOT_AVAILABLE,
    };
    code_key(code)
}

/// Sends requests from `plan` through `producer` until the plan runs out, recording each.
pub async fn send_loop(
    producer: Arc<DefaultMqProducer>,
    plan: Arc<SendPlan>,
    recorder: Arc<Recorder>,
    first_errors: Arc<FirstErrors>,
    stop: Arc<Stop>,
) {
    while let Some(request) = plan.next_request(&stop).await {
        let mut messages = plan.messages(&request);
        let bytes: u64 = messages.iter().map(|m| m.body.len() as u64).sum();
        let result = if plan.batched() {
            producer.send_batch(&mut messages).await
        } else {
            producer.send(&mut messages[0]).await
        };
        let latency = Instant::now().saturating_duration_since(request.start);
        let outcome = match result {
            Ok(result) if result.status == SendStatus::SendOk => SendOutcome::Acked,
            Ok(result) => {
                let key = status_key(result.status);
                first_errors.note(&key, &format_args!("stored as {:?}", result.status));
                SendOutcome::Failed(key)
            }
            Err(error) => {
                let key = error_key(&error);
                first_errors.note(&key, &error);
                SendOutcome::Failed(key)
            }
        };
        recorder.record_send(request.measured, request.messages, bytes, &outcome, latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(rate: Option<f64>, batch: usize) -> SendArgs {
        SendArgs {
            size: 64,
            inflight: 1,
            rate,
            batch,
            producers: 1,
            keys: true,
            tags: true,
            send_timeout: Duration::from_secs(3),
            retries: 0,
        }
    }

    fn plan(args: &SendArgs, warmup: Duration, count: Option<u64>) -> SendPlan {
        let timeline = Timeline::starting_now(warmup, None);
        let bodies = BodyFactory::new(9, args.size, || 7);
        SendPlan::new("T", args, count, timeline, WallClock::new(), bodies)
    }

    #[tokio::test]
    async fn a_counted_run_claims_exactly_the_count_in_batches() {
        let stop = Stop::default();
        let plan = plan(&args(None, 4), Duration::ZERO, Some(10));
        let mut claimed = Vec::new();
        while let Some(request) = plan.next_request(&stop).await {
            assert!(request.measured);
            claimed.push((request.first_seq, request.messages));
        }
        assert_eq!(claimed, [(0, 4), (4, 4), (8, 2)]);
        let messages = plan.messages(&Request {
            start: Instant::now(),
            measured: true,
            first_seq: 8,
            messages: 2,
        });
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].property("KEYS"), Some("mqbench-9"));
        assert_eq!(messages[1].property("TAGS"), Some(TAG));
    }

    #[tokio::test]
    async fn requests_started_in_the_warmup_are_not_measured() {
        let stop = Stop::default();
        let plan = plan(&args(None, 1), Duration::from_secs(3600), Some(1));
        let request = plan.next_request(&stop).await.expect("a request");
        assert!(!request.measured);
        stop.stop();
        assert_eq!(plan.next_request(&stop).await, None);
    }

    #[tokio::test]
    async fn an_open_loop_measures_from_the_due_time() {
        let stop = Stop::default();
        // 1000 requests a second: request k is due k ms after the start.
        let plan = plan(&args(Some(1000.0), 1), Duration::ZERO, None);
        let start = plan.timeline.start;
        let first = plan.next_request(&stop).await.expect("a request");
        assert_eq!(first.start, start);
        let second = plan.next_request(&stop).await.expect("a request");
        assert!(second.start <= start + Duration::from_millis(1));
        assert!(second.start >= start);
    }
}
