//! The three workloads, start to summary: set the topic up, start the clients, run the warm-up
//! and the measured window with a live line per second, stop, and sum up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferrocket_engine::Env;
use ferrocket_engine::client::producer::DefaultMqProducer;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::body::BodyFactory;
use crate::cli::{
    Command, ConsumeArgs, ConsumerKind, E2eArgs, ProduceArgs, RunArgs, SendArgs, StartFrom,
    TopicArgs,
};
use crate::consume::{self, ConsumeSink};
use crate::control::{Phase, Stop, Timeline, WallClock};
use crate::procstat::{CpuCost, MachineCpu, MachineTicks, Memory, Process};
use crate::produce::{SendPlan, send_loop, start_producers};
use crate::stats::{
    FirstErrors, LatencySummary, Recorder, Window, format_ms, live_line, mb_per_s, per_second,
};
use crate::topic::Admin;

/// How often an `e2e` drain looks at what has arrived.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// The shortest warm-up of an `e2e` run with a push consumer: its first rebalance must have
/// placed it at the end of every queue before measured messages are sent.
pub const PUSH_E2E_WARMUP_MIN: Duration = Duration::from_secs(1);

/// What was run, as the summary repeats it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Workload {
    /// Body size in bytes.
    pub size: Option<usize>,
    /// Requests in flight (closed loop) or at most in flight (open loop).
    pub inflight: Option<usize>,
    /// Requests started per second (open loop).
    pub rate: Option<f64>,
    /// Messages per request.
    pub batch: Option<usize>,
    /// Producers (connections per broker).
    pub producers: Option<usize>,
    /// KEYS set on every message.
    pub keys: Option<bool>,
    /// TAGS set on every message.
    pub tags: Option<bool>,
    /// `push` or `pull`.
    pub consumer: Option<String>,
    /// Runtime worker threads of the load generator.
    pub threads: usize,
}

/// The result of a run; printed readable or as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// `produce`, `consume` or `e2e`.
    pub mode: String,
    /// The topic.
    pub topic: String,
    /// The workload's settings.
    pub workload: Workload,
    /// Warm-up before the measured window, seconds.
    pub warmup_s: f64,
    /// Whether the run was cut short by Ctrl-C.
    pub interrupted: bool,
    /// Messages sent in the measured window (acknowledged or failed).
    pub sent: u64,
    /// Messages stored with SEND_OK.
    pub acked: u64,
    /// Messages whose send failed.
    pub errors: u64,
    /// Failed messages by response code or failure.
    pub errors_by_code: BTreeMap<String, u64>,
    /// From the window's start to the last measured send's answer, seconds.
    pub elapsed_s: f64,
    /// Acknowledged messages per second.
    pub msgs_per_s: f64,
    /// Acknowledged body megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// Send latency per request, microseconds.
    pub send_latency_us: Option<LatencySummary>,
    /// Messages delivered in the measured window (duplicates included).
    pub consumed: u64,
    /// Messages delivered, duplicates excluded.
    pub consumed_unique: u64,
    /// Repeated deliveries of a message of this run.
    pub duplicates: u64,
    /// Messages of other runs delivered (and ignored) during an `e2e` run.
    pub foreign: u64,
    /// Acknowledged messages of the measured window never delivered (`e2e` only).
    pub lost: Option<u64>,
    /// Failed pulls by response code or failure.
    pub consume_errors_by_code: BTreeMap<String, u64>,
    /// From the window's start to the last measured delivery, seconds.
    pub consume_elapsed_s: f64,
    /// Delivered messages per second.
    pub consume_msgs_per_s: f64,
    /// Delivered body megabytes per second.
    pub consume_mb_per_s: f64,
    /// End-to-end latency per delivered message, microseconds.
    pub e2e_latency_us: Option<LatencySummary>,
    /// The load generator's CPU over the measured window (per acknowledged message, or per
    /// delivered message in a `consume` run).
    pub client_cpu: Option<CpuCost>,
    /// The broker's CPU over the measured window (with `--broker-pid`).
    pub broker_cpu: Option<CpuCost>,
    /// The broker's memory at the end of the measured window (with `--broker-pid`).
    pub broker_memory: Option<Memory>,
    /// How the machine's CPUs spent the measured window.
    pub machine_cpu: Option<MachineCpu>,
}

/// CPU time used so far by the load generator and the broker, read at one instant.
#[derive(Debug, Clone, Copy)]
struct CpuReading {
    at: Instant,
    client: Option<Duration>,
    broker: Option<Duration>,
    machine: Option<MachineTicks>,
}

/// CPU readings of the load generator and the broker at the start of the measured window,
/// then again at its end.
struct CpuWindow {
    broker: Option<u32>,
    start: Arc<std::sync::OnceLock<CpuReading>>,
    task: JoinHandle<()>,
}

impl CpuWindow {
    /// Takes the first readings when `timeline`'s measured window starts.
    fn start(timeline: &Timeline, broker: Option<u32>) -> Self {
        let start = Arc::new(std::sync::OnceLock::new());
        let reading = start.clone();
        let at = timeline.measure_start;
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let _ = reading.set(CpuReading {
                at: Instant::now(),
                client: Process::Own.cpu_time(),
                broker: broker.and_then(|pid| Process::Pid(pid).cpu_time()),
                machine: MachineTicks::now(),
            });
        });
        Self {
            broker,
            start,
            task,
        }
    }

    /// Takes the second readings now and records the costs of `messages` messages into
    /// `summary`.
    fn finish(self, summary: &mut Summary, messages: u64) {
        self.task.abort();
        let Some(start) = self.start.get().copied() else {
            return;
        };
        let window = Instant::now().saturating_duration_since(start.at);
        let cost = |before: Option<Duration>, after: Option<Duration>| {
            Some(CpuCost::new(
                after?.saturating_sub(before?),
                window,
                messages,
            ))
        };
        summary.client_cpu = cost(start.client, Process::Own.cpu_time());
        summary.machine_cpu = start
            .machine
            .zip(MachineTicks::now())
            .map(|(before, after)| MachineCpu::between(before, after, window));
        if let Some(pid) = self.broker {
            let broker = Process::Pid(pid);
            summary.broker_cpu = cost(start.broker, broker.cpu_time());
            summary.broker_memory = broker.memory();
        }
    }
}

impl Summary {
    fn new(
        mode: &str,
        topic: &str,
        workload: Workload,
        timeline: &Timeline,
        total: &Window,
        foreign: u64,
    ) -> Self {
        let since_start = |at: Option<Instant>| {
            at.map_or(Duration::ZERO, |at| {
                at.saturating_duration_since(timeline.measure_start)
            })
        };
        let elapsed = since_start(total.last_send);
        let consume_elapsed = since_start(total.last_consumed);
        Self {
            mode: mode.to_owned(),
            topic: topic.to_owned(),
            workload,
            warmup_s: timeline
                .measure_start
                .saturating_duration_since(timeline.start)
                .as_secs_f64(),
            interrupted: false,
            sent: total.sent,
            acked: total.acked,
            errors: total.failed,
            errors_by_code: total.errors.clone(),
            elapsed_s: elapsed.as_secs_f64(),
            msgs_per_s: per_second(total.acked, elapsed),
            mb_per_s: mb_per_s(total.acked_bytes, elapsed),
            send_latency_us: LatencySummary::of(&total.send_latency),
            consumed: total.consumed,
            consumed_unique: total.consumed - total.duplicates,
            duplicates: total.duplicates,
            foreign,
            lost: None,
            consume_errors_by_code: total.consume_errors.clone(),
            consume_elapsed_s: consume_elapsed.as_secs_f64(),
            consume_msgs_per_s: per_second(total.consumed, consume_elapsed),
            consume_mb_per_s: mb_per_s(total.consumed_bytes, consume_elapsed),
            e2e_latency_us: LatencySummary::of(&total.e2e_latency),
            client_cpu: None,
            broker_cpu: None,
            broker_memory: None,
            machine_cpu: None,
        }
    }

    /// The summary as text, one fact per line.
    pub fn render(&self) -> String {
        let mut text = format!(
            "mqbench {} on topic {}: {} s measured after {} s warm-up{}\n",
            self.mode,
            self.topic,
            round(self.elapsed_s.max(self.consume_elapsed_s)),
            round(self.warmup_s),
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
        let latency_line = |name: &str, latency: &LatencySummary| {
            format!(
                "  {name:<12} p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} samples)\n",
                format_ms(latency.p50),
                format_ms(latency.p90),
                format_ms(latency.p99),
                format_ms(latency.p999),
                format_ms(latency.max),
                latency.count
            )
        };
        if self.mode != "consume" {
            text.push_str(&format!(
                "  sent         {} messages: {} acknowledged, {} failed\n  throughput   {:.0} msgs/s, {:.1} MB/s\n",
                self.sent, self.acked, self.errors, self.msgs_per_s, self.mb_per_s
            ));
            if let Some(latency) = &self.send_latency_us {
                text.push_str(&latency_line("send", latency));
            }
            for (key, count) in &self.errors_by_code {
                text.push_str(&format!("  send error   {key}: {count}\n"));
            }
        }
        if self.mode != "produce" {
            text.push_str(&format!(
                "  consumed     {} messages ({} duplicates{}), {:.0} msgs/s, {:.1} MB/s\n",
                self.consumed,
                self.duplicates,
                self.lost
                    .map_or(String::new(), |lost| format!(", {lost} lost")),
                self.consume_msgs_per_s,
                self.consume_mb_per_s
            ));
            if let Some(latency) = &self.e2e_latency_us {
                text.push_str(&latency_line("end-to-end", latency));
            }
            for (key, count) in &self.consume_errors_by_code {
                text.push_str(&format!("  pull error   {key}: {count}\n"));
            }
        }
        for (name, cost) in [
            ("client cpu", &self.client_cpu),
            ("broker cpu", &self.broker_cpu),
        ] {
            if let Some(cost) = cost {
                text.push_str(&format!(
                    "  {name:<12} {:.2} cores, {:.1} µs/msg\n",
                    cost.cores, cost.us_per_msg
                ));
            }
        }
        if let Some(machine) = &self.machine_cpu {
            text.push_str(&format!(
                "  machine      {:.2} CPUs busy, {:.2} idle, {:.2} taken by the hypervisor (steal)\n",
                machine.busy_cpus, machine.idle_cpus, machine.steal_cpus
            ));
        }
        if let Some(memory) = &self.broker_memory {
            text.push_str(&format!(
                "  broker rss   {} MiB anonymous, {} MiB file-backed, peak {} MiB\n",
                memory.rss_anon_kib / 1024,
                memory.rss_file_kib / 1024,
                memory.hwm_kib / 1024
            ));
        }
        text
    }
}

fn round(seconds: f64) -> f64 {
    (seconds * 10.0).round() / 10.0
}

/// Runs `command` on `env` until it ends or `stop` is signalled.
pub async fn run(env: &Env, command: Command, threads: usize, stop: Arc<Stop>) -> Result<Summary> {
    match command {
        Command::Produce(args) => produce(env, args, threads, stop).await,
        Command::Consume(args) => consume(env, args, threads, stop).await,
        Command::E2e(args) => e2e(env, args, threads, stop).await,
    }
}

/// Creates the topic unless told not to.
async fn set_up_topic(env: &Env, run: &RunArgs, topic: &TopicArgs) -> Result<()> {
    if topic.no_create {
        return Ok(());
    }
    let admin = Admin::new(env, &run.namesrv);
    let result = async {
        let masters = admin.masters(topic.cluster.as_deref()).await?;
        let (names, addrs): (Vec<String>, Vec<String>) = if topic.brokers.is_empty() {
            masters
                .into_iter()
                .map(|master| (master.broker_name, master.addr))
                .unzip()
        } else {
            let names = masters
                .into_iter()
                .filter(|master| topic.brokers.contains(&master.addr))
                .map(|master| master.broker_name)
                .collect();
            (names, topic.brokers.clone())
        };
        admin.create_topic(&run.topic, topic.queues, &addrs).await?;
        admin
            .wait_for_route(&run.topic, topic.queues, &names)
            .await?;
        Ok(())
    }
    .await;
    admin.shutdown();
    result
}

fn send_workload(send: &SendArgs, threads: usize) -> Workload {
    Workload {
        size: Some(send.size),
        inflight: Some(send.inflight),
        rate: send.rate,
        batch: Some(send.batch),
        producers: Some(send.producers.clamp(1, send.inflight.max(1))),
        keys: Some(send.keys),
        tags: Some(send.tags),
        consumer: None,
        threads,
    }
}

fn consumer_name(kind: ConsumerKind) -> String {
    match kind {
        ConsumerKind::Push => "push".into(),
        ConsumerKind::Pull => "pull".into(),
    }
}

fn check_send_args(send: &SendArgs) -> Result<()> {
    if send.inflight == 0 {
        bail!("--inflight must be at least 1");
    }
    if send
        .rate
        .is_some_and(|rate| !(rate.is_finite() && rate > 0.0))
    {
        bail!("--rate must be a positive number of requests per second");
    }
    if send.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if send.size == 0 {
        bail!("--size must be at least 1 byte (brokers refuse empty bodies)");
    }
    Ok(())
}

/// The live line printer: one line per second on stderr until `done`.
async fn report_live(
    recorder: Arc<Recorder>,
    timeline: Timeline,
    sending: bool,
    consuming: bool,
    done: Arc<Stop>,
) {
    let mut last = timeline.start;
    let mut next = timeline.start + Duration::from_secs(1);
    while done.sleep_until(next).await {
        let now = Instant::now();
        let window = recorder.take_second();
        let label = match timeline.phase(last) {
            Phase::Warmup => "warmup",
            Phase::Measured => "run",
            Phase::Over => "drain",
        };
        crate::progress(format_args!(
            "{}",
            live_line(
                now.saturating_duration_since(timeline.start),
                label,
                &window,
                now.saturating_duration_since(last),
                sending,
                consuming
            )
        ));
        last = now;
        next += Duration::from_secs(1);
    }
}

/// The producers of a run, started before its timeline so that no schedule slot is spent
/// on start-up, and then its send loops.
struct Sending {
    producers: Vec<Arc<DefaultMqProducer>>,
    loops: Vec<JoinHandle<()>>,
    bodies: BodyFactory,
}

impl Sending {
    /// Starts the producers `send` asks for (at most one per request in flight).
    async fn start(env: &Env, run: &RunArgs, send: &SendArgs) -> Result<Self> {
        let producers = start_producers(
            env,
            &run.namesrv,
            &SendArgs {
                producers: send.producers.clamp(1, send.inflight),
                ..send.clone()
            },
        )
        .await?;
        let run_id = env.rng.next_u64() as u32;
        Ok(Self {
            producers,
            loops: Vec::new(),
            bodies: BodyFactory::new(run_id, send.size, || env.rng.next_u64()),
        })
    }

    /// Spawns `send.inflight` send loops on `timeline`, spread over the producers.
    fn spawn_loops(
        &mut self,
        run: &RunArgs,
        send: &SendArgs,
        timeline: Timeline,
        wall: WallClock,
        recorder: &Arc<Recorder>,
        stop: &Arc<Stop>,
    ) {
        let plan = Arc::new(SendPlan::new(
            &run.topic,
            send,
            run.count,
            timeline,
            wall,
            self.bodies.clone(),
        ));
        let first_errors = Arc::new(FirstErrors::default());
        self.loops = (0..send.inflight)
            .map(|index| {
                tokio::spawn(send_loop(
                    self.producers[index % self.producers.len()].clone(),
                    plan.clone(),
                    recorder.clone(),
                    first_errors.clone(),
                    stop.clone(),
                ))
            })
            .collect();
    }

    /// Waits for every send loop to run out of requests.
    async fn finish(&mut self) -> Result<()> {
        for send in self.loops.drain(..) {
            send.await.context("a send loop panicked")?;
        }
        Ok(())
    }

    async fn shutdown(self) {
        for producer in &self.producers {
            producer.shutdown().await;
        }
    }
}

async fn produce(env: &Env, args: ProduceArgs, threads: usize, stop: Arc<Stop>) -> Result<Summary> {
    check_send_args(&args.send)?;
    set_up_topic(env, &args.run, &args.topic).await?;
    let mut sending = Sending::start(env, &args.run, &args.send).await?;
    let recorder = Arc::new(Recorder::new());
    let timeline = Timeline::starting_now(args.run.warmup, args.run.window());
    let report_done = Arc::new(Stop::default());
    let report = tokio::spawn(report_live(
        recorder.clone(),
        timeline,
        true,
        false,
        report_done.clone(),
    ));
    let cpu = CpuWindow::start(&timeline, args.run.broker_pid);
    sending.spawn_loops(
        &args.run,
        &args.send,
        timeline,
        WallClock::new(),
        &recorder,
        &stop,
    );
    let finished = sending.finish().await;
    let total = recorder.total();
    let mut summary = Summary::new(
        "produce",
        &args.run.topic,
        send_workload(&args.send, threads),
        &timeline,
        &total,
        0,
    );
    cpu.finish(&mut summary, total.acked);
    report_done.stop();
    report.await.context("the live report panicked")?;
    sending.shutdown().await;
    finished?;
    Ok(summary)
}

async fn consume(env: &Env, args: ConsumeArgs, threads: usize, stop: Arc<Stop>) -> Result<Summary> {
    let recorder = Arc::new(Recorder::new());
    let sink = Arc::new(ConsumeSink::new(
        recorder.clone(),
        Arc::default(),
        WallClock::new(),
        None,
        args.run.count,
        stop.clone(),
    ));
    let timeline = Timeline::starting_now(args.run.warmup, args.run.window());
    sink.begin(timeline);
    let report_done = Arc::new(Stop::default());
    let report = tokio::spawn(report_live(
        recorder.clone(),
        timeline,
        false,
        true,
        report_done.clone(),
    ));
    let cpu = CpuWindow::start(&timeline, args.run.broker_pid);
    let consumer = consume::start(
        env,
        &args.run.namesrv,
        &args.run.topic,
        &args.receive,
        args.from,
        sink.clone(),
        stop.clone(),
    )
    .await;
    if consumer.is_ok() {
        match timeline.measure_end {
            Some(end) => {
                stop.sleep_until(end).await;
            }
            None => stop.stopped().await,
        }
    }
    stop.stop();
    let total = recorder.total();
    let workload = Workload {
        consumer: Some(consumer_name(args.receive.consumer)),
        threads,
        ..Workload::default()
    };
    let mut summary = Summary::new(
        "consume",
        &args.run.topic,
        workload,
        &timeline,
        &total,
        sink.foreign(),
    );
    cpu.finish(&mut summary, total.consumed);
    report_done.stop();
    report.await.context("the live report panicked")?;
    consumer?.shutdown().await;
    Ok(summary)
}

async fn e2e(env: &Env, args: E2eArgs, threads: usize, stop: Arc<Stop>) -> Result<Summary> {
    check_send_args(&args.send)?;
    if args.receive.consumer == ConsumerKind::Push && args.run.warmup < PUSH_E2E_WARMUP_MIN {
        bail!(
            "e2e with a push consumer needs --warmup of at least {} s: the consumer joins \
             at the end of each queue once its first rebalance is done",
            PUSH_E2E_WARMUP_MIN.as_secs_f64()
        );
    }
    set_up_topic(env, &args.run, &args.topic).await?;
    let mut sending = Sending::start(env, &args.run, &args.send).await?;
    let recorder = Arc::new(Recorder::new());
    let wall = WallClock::new();
    let consumer_stop = Arc::new(Stop::default());
    let sink = Arc::new(ConsumeSink::new(
        recorder.clone(),
        Arc::default(),
        wall,
        Some(sending.bodies.run_id()),
        None,
        consumer_stop.clone(),
    ));
    let consumer = consume::start(
        env,
        &args.run.namesrv,
        &args.run.topic,
        &args.receive,
        StartFrom::Last,
        sink.clone(),
        consumer_stop.clone(),
    )
    .await;
    let consumer = match consumer {
        Ok(consumer) => consumer,
        Err(error) => {
            sending.shutdown().await;
            return Err(error);
        }
    };
    let timeline = Timeline::starting_now(args.run.warmup, args.run.window());
    sink.begin(timeline);
    let report_done = Arc::new(Stop::default());
    let report = tokio::spawn(report_live(
        recorder.clone(),
        timeline,
        true,
        true,
        report_done.clone(),
    ));
    let cpu = CpuWindow::start(&timeline, args.run.broker_pid);
    sending.spawn_loops(&args.run, &args.send, timeline, wall, &recorder, &stop);
    let finished = sending.finish().await;
    // Drain: wait until every acknowledged measured message has arrived, or give up.
    let acked = recorder.total().acked;
    let drain_end = Instant::now() + args.drain;
    while recorder.consumed_unique() < acked
        && Instant::now() < drain_end
        && stop.sleep_until(Instant::now() + DRAIN_POLL).await
    {}
    consumer_stop.stop();
    let total = recorder.total();
    let mut summary = Summary::new(
        "e2e",
        &args.run.topic,
        Workload {
            consumer: Some(consumer_name(args.receive.consumer)),
            ..send_workload(&args.send, threads)
        },
        &timeline,
        &total,
        sink.foreign(),
    );
    summary.lost = Some(total.acked.saturating_sub(summary.consumed_unique));
    cpu.finish(&mut summary, total.acked);
    report_done.stop();
    report.await.context("the live report panicked")?;
    consumer.shutdown().await;
    sending.shutdown().await;
    finished?;
    Ok(summary)
}
