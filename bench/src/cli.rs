//! The command line of `mqbench`: one subcommand per workload (`produce`, `consume`, `e2e`)
//! and the option groups they share.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A load generator for RocketMQ 4.x brokers (ferrocket or Java), speaking the remoting
/// protocol. Prints a line per second on stderr and a summary at the end.
#[derive(Debug, Parser)]
#[command(name = "mqbench", version)]
pub struct Cli {
    /// The workload.
    #[command(subcommand)]
    pub command: Command,
}

/// The workloads.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send messages: closed loop with a fixed number in flight, or open loop at a fixed rate.
    Produce(ProduceArgs),
    /// Consume a topic (for example a backlog written by `produce`) with a push or pull
    /// consumer.
    Consume(ConsumeArgs),
    /// Send and consume at once, measuring end-to-end latency from the send time carried in
    /// each body.
    E2e(E2eArgs),
}

/// Options of every workload.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Name server address(es), `host:port` separated by `;`.
    #[arg(short = 'n', long, default_value = "127.0.0.1:9876")]
    pub namesrv: String,
    /// Topic (not `BenchmarkTest`: brokers keep that name as a system topic).
    #[arg(short = 't', long, default_value = "mqbench")]
    pub topic: String,
    /// Length of the measured window in seconds (default 60 unless --count is given).
    #[arg(short = 'd', long, value_parser = parse_seconds)]
    pub duration: Option<Duration>,
    /// Messages in the measured window (sent by produce and e2e, received by consume); the
    /// run ends at whichever of --count and --duration comes first.
    #[arg(long)]
    pub count: Option<u64>,
    /// Seconds run before the measured window; nothing sent or received in it is counted.
    #[arg(short = 'w', long, value_parser = parse_seconds, default_value = "5")]
    pub warmup: Duration,
    /// Print the summary as one JSON object on stdout (the readable summary goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Process id of the broker under test (on this host): its CPU time over the measured
    /// window and its memory at the end are added to the summary.
    #[arg(long)]
    pub broker_pid: Option<u32>,
}

impl RunArgs {
    /// The measured window's length: `--duration`, or unbounded with `--count`, else 60 s.
    pub fn window(&self) -> Option<Duration> {
        match (self.duration, self.count) {
            (Some(duration), _) => Some(duration),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(60)),
        }
    }
}

/// How the benchmark topic is set up.
#[derive(Debug, Clone, Args)]
pub struct TopicArgs {
    /// Queues per broker: the topic is created (or updated) with this many read and write
    /// queues on every master before the run.
    #[arg(short = 'q', long, default_value_t = 8)]
    pub queues: i32,
    /// Use the topic as it is (existing or auto-created on first send); do not create it.
    #[arg(long)]
    pub no_create: bool,
    /// Create the topic only on the masters of this cluster.
    #[arg(long)]
    pub cluster: Option<String>,
    /// Create the topic on this broker address instead of the masters the name server lists
    /// (repeatable).
    #[arg(long = "broker")]
    pub brokers: Vec<String>,
}

/// How messages are sent.
#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    /// Body size in bytes (bodies of at least 24 bytes carry their send time).
    #[arg(short = 's', long, default_value_t = 1024)]
    pub size: usize,
    /// Send requests in flight at once (closed loop), or the most in flight (open loop).
    #[arg(short = 'c', long, default_value_t = 64)]
    pub inflight: usize,
    /// Open loop: start this many send requests per second, on a fixed schedule; latency is
    /// measured from each request's scheduled start.
    #[arg(short = 'r', long)]
    pub rate: Option<f64>,
    /// Messages per send request (SEND_BATCH_MESSAGE when above 1).
    #[arg(short = 'b', long, default_value_t = 1)]
    pub batch: usize,
    /// Producers, each with its own client instance and so its own connection to every
    /// broker; the in-flight requests are spread over them.
    #[arg(short = 'p', long, default_value_t = 4)]
    pub producers: usize,
    /// Set a KEYS property (indexed by the broker) on every message.
    #[arg(long)]
    pub keys: bool,
    /// Set a TAGS property on every message.
    #[arg(long)]
    pub tags: bool,
    /// Timeout of one send in seconds.
    #[arg(long, value_parser = parse_seconds, default_value = "3")]
    pub send_timeout: Duration,
    /// Extra attempts after a failed send (Java's default is 2; 0 shows every failure).
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
}

/// The consumer kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConsumerKind {
    /// DefaultMQPushConsumer: background long-polling pulls, a listener per message batch.
    Push,
    /// DefaultMQPullConsumer: one long-polling pull loop per queue.
    Pull,
}

/// Where a consumer starts in each queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StartFrom {
    /// The oldest stored message (a backlog).
    First,
    /// The queue's end: only messages sent from now on.
    Last,
}

/// How messages are received.
#[derive(Debug, Clone, Args)]
pub struct ReceiveArgs {
    /// Consumer kind.
    #[arg(long, value_enum, default_value_t = ConsumerKind::Push)]
    pub consumer: ConsumerKind,
    /// Consumer group (default: a fresh `mqbench_<pid>` group).
    #[arg(short = 'g', long)]
    pub group: Option<String>,
    /// Messages asked for per pull.
    #[arg(long, default_value_t = 32)]
    pub pull_batch: i32,
    /// Push consumer: concurrent listener calls (consumeThreadMax).
    #[arg(long, default_value_t = 20)]
    pub consume_threads: usize,
    /// Push consumer: messages per listener call (consumeMessageBatchMaxSize).
    #[arg(long, default_value_t = 1)]
    pub consume_batch: usize,
}

/// `mqbench produce`.
#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    /// Run options.
    #[command(flatten)]
    pub run: RunArgs,
    /// Topic set-up.
    #[command(flatten)]
    pub topic: TopicArgs,
    /// Send options.
    #[command(flatten)]
    pub send: SendArgs,
}

/// `mqbench consume`.
#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    /// Run options.
    #[command(flatten)]
    pub run: RunArgs,
    /// Receive options.
    #[command(flatten)]
    pub receive: ReceiveArgs,
    /// Where to start in each queue.
    #[arg(long, value_enum, default_value_t = StartFrom::Last)]
    pub from: StartFrom,
}

/// `mqbench e2e`.
#[derive(Debug, Clone, Args)]
pub struct E2eArgs {
    /// Run options.
    #[command(flatten)]
    pub run: RunArgs,
    /// Topic set-up.
    #[command(flatten)]
    pub topic: TopicArgs,
    /// Send options.
    #[command(flatten)]
    pub send: SendArgs,
    /// Receive options.
    #[command(flatten)]
    pub receive: ReceiveArgs,
    /// Seconds to wait after the last send for the consumer to receive every acknowledged
    /// message of the measured window.
    #[arg(long, value_parser = parse_seconds, default_value = "10")]
    pub drain: Duration,
}

/// Parses a number of seconds (fractions allowed) into a duration.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is not a valid duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse_with_fractions_and_an_optional_unit() {
        assert_eq!(parse_seconds("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_seconds("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
    }

    #[test]
    fn the_window_defaults_to_a_minute_unless_a_count_ends_the_run() {
        let parse = |args: &[&str]| match Cli::parse_from(args).command {
            Command::Produce(produce) => produce.run.window(),
            other => panic!("parsed {other:?}"),
        };
        assert_eq!(
            parse(&["mqbench", "produce"]),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse(&["mqbench", "produce", "--count", "10"]), None);
        assert_eq!(
            parse(&["mqbench", "produce", "--count", "10", "-d", "2"]),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
