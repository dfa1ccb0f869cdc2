//! What a run measures: counts, bytes, errors by response code and HDR latency histograms,
//! kept twice — once for the current second (the live line) and once for the measured window
//! (the summary) — plus the set of sequence numbers seen, for duplicates and losses.
//!
//! Latencies are recorded in microseconds with three significant digits, from 1 µs to one
//! hour; longer values are clamped to the top. One lock guards everything: a record is a few
//! additions, so even at a few hundred thousand events a second the lock is never the
//! bottleneck next to the network round trips it accounts for.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ferrocket_engine::client::producer::client_error_code;
use ferrocket_engine::remoting::response_code;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

/// Highest latency a histogram holds, in microseconds (one hour).
pub const LATENCY_MAX_US: u64 = 3_600_000_000;

/// Sequence numbers at or above this are not tracked for duplicates (the bitmap would pass
/// 32 MiB).
pub const SEQ_TRACKED_MAX: u64 = 1 << 28;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)
        .expect("1 µs to one hour at 3 significant digits are valid histogram bounds")
}

fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The outcome of one send request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Stored with SEND_OK.
    Acked,
    /// Refused, timed out, or stored with a status other than SEND_OK; the key names the
    /// response code (or the client-side failure).
    Failed(String),
}

/// One consumed message, as the consumer side saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consumed {
    /// Whether it counts in the measured window.
    pub measured: bool,
    /// Its body size.
    pub bytes: u64,
    /// Its end-to-end latency, when known.
    pub e2e: Option<Duration>,
    /// Its sequence number in this run, when it was sent by this run.
    pub seq: Option<u64>,
}

/// Counts and histograms over one span of time.
#[derive(Debug, Clone)]
pub struct Window {
    /// Messages whose send completed (acknowledged or failed).
    pub sent: u64,
    /// Messages stored with SEND_OK.
    pub acked: u64,
    /// Messages whose send failed.
    pub failed: u64,
    /// Body bytes of acknowledged messages.
    pub acked_bytes: u64,
    /// Failed messages by response code or failure.
    pub errors: BTreeMap<String, u64>,
    /// Latency of each send request (one per batch).
    pub send_latency: Histogram<u64>,
    /// When the last send of the window completed.
    pub last_send: Option<Instant>,
    /// Messages delivered to the consumer (duplicates included).
    pub consumed: u64,
    /// Body bytes delivered.
    pub consumed_bytes: u64,
    /// Deliveries of a message of this run already delivered.
    pub duplicates: u64,
    /// Failed pulls by response code or failure.
    pub consume_errors: BTreeMap<String, u64>,
    /// End-to-end latency of each delivered message whose send time is known.
    pub e2e_latency: Histogram<u64>,
    /// When the last message of the window was delivered.
    pub last_consumed: Option<Instant>,
}

impl Window {
    fn new() -> Self {
        Self {
            sent: 0,
            acked: 0,
            failed: 0,
            acked_bytes: 0,
            errors: BTreeMap::new(),
            send_latency: histogram(),
            last_send: None,
            consumed: 0,
            consumed_bytes: 0,
            duplicates: 0,
            consume_errors: BTreeMap::new(),
            e2e_latency: histogram(),
            last_consumed: None,
        }
    }

    fn record_send(
        &mut self,
        messages: u64,
        bytes: u64,
        outcome: &SendOutcome,
        latency: Duration,
        now: Instant,
    ) {
        self.sent += messages;
        match outcome {
            SendOutcome::Acked => {
                self.acked += messages;
                self.acked_bytes += bytes;
            }
            SendOutcome::Failed(key) => {
                self.failed += messages;
                *self.errors.entry(key.clone()).or_default() += messages;
            }
        }
        self.send_latency.saturating_record(micros(latency));
        self.last_send = Some(now);
    }

    fn record_consumed(&mut self, message: &Consumed, duplicate: bool, now: Instant) {
        self.consumed += 1;
        self.consumed_bytes += message.bytes;
        self.duplicates += u64::from(duplicate);
        if let Some(e2e) = message.e2e {
            self.e2e_latency.saturating_record(micros(e2e));
        }
        self.last_consumed = Some(now);
    }

    fn total_errors(&self) -> u64 {
        self.failed + self.consume_errors.values().sum::<u64>()
    }
}

/// The sequence numbers of this run delivered so far.
#[derive(Debug, Default)]
struct SeqSet {
    bits: Vec<u64>,
}

impl SeqSet {
    /// Marks `seq`; `true` if it was marked before. Numbers past [`SEQ_TRACKED_MAX`] are
    /// never duplicates.
    fn insert(&mut self, seq: u64) -> bool {
        if seq >= SEQ_TRACKED_MAX {
            return false;
        }
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        let seen = self.bits[word] & (1 << bit) != 0;
        self.bits[word] |= 1 << bit;
        seen
    }
}

#[derive(Debug)]
struct Windows {
    second: Window,
    total: Window,
    seen: SeqSet,
}

/// The recorder every task of a run writes to.
#[derive(Debug)]
pub struct Recorder {
    windows: Mutex<Windows>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self {
            windows: Mutex::new(Windows {
                second: Window::new(),
                total: Window::new(),
                seen: SeqSet::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Windows> {
        // Every record leaves the windows consistent, so a poisoned lock is still usable.
        self.windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records one send request of `messages` messages and `bytes` body bytes that took
    /// `latency`; `measured` when it started inside the measured window.
    pub fn record_send(
        &self,
        measured: bool,
        messages: u64,
        bytes: u64,
        outcome: &SendOutcome,
        latency: Duration,
    ) {
        let now = Instant::now();
        let mut windows = self.lock();
        windows
            .second
            .record_send(messages, bytes, outcome, latency, now);
        if measured {
            windows
                .total
                .record_send(messages, bytes, outcome, latency, now);
        }
    }

    /// Records delivered messages.
    pub fn record_consumed(&self, messages: impl IntoIterator<Item = Consumed>) {
        let now = Instant::now();
        let mut windows = self.lock();
        for message in messages {
            let duplicate = message.seq.is_some_and(|seq| windows.seen.insert(seq));
            windows.second.record_consumed(&message, duplicate, now);
            if message.measured {
                windows.total.record_consumed(&message, duplicate, now);
            }
        }
    }

    /// Records a failed pull; `measured` when it happened inside the measured window.
    pub fn record_consume_error(&self, measured: bool, key: String) {
        let mut windows = self.lock();
        if measured {
            *windows.total.consume_errors.entry(key.clone()).or_default() += 1;
        }
        *windows.second.consume_errors.entry(key).or_default() += 1;
    }

    /// The current second's window, replaced by an empty one.
    pub fn take_second(&self) -> Window {
        std::mem::replace(&mut self.lock().second, Window::new())
    }

    /// A copy of the measured window so far.
    pub fn total(&self) -> Window {
        self.lock().total.clone()
    }

    /// Messages of the measured window delivered so far, duplicates excluded.
    pub fn consumed_unique(&self) -> u64 {
        let windows = self.lock();
        windows.total.consumed - windows.total.duplicates
    }
}

/// The key a failure is counted under: the Java name of a broker response code or of a
/// client-side error code (`ClientErrorCode`), else `code N`.
pub fn code_key(code: i32) -> String {
    let client_side = match code {
        client_error_code::CONNECT_BROKER_EXCEPTION => Some("CONNECT_BROKER_EXCEPTION"),
        client_error_code::ACCESS_BROKER_TIMEOUT => Some("ACCESS_BROKER_TIMEOUT"),
        client_error_code::BROKER_NOT_EXIST_EXCEPTION => Some("BROKER_NOT_EXIST_EXCEPTION"),
        client_error_code::NO_NAME_SERVER_EXCEPTION => Some("NO_NAME_SERVER_EXCEPTION"),
        client_error_code::NOT_FOUND_TOPIC_EXCEPTION => Some("NOT_FOUND_TOPIC_EXCEPTION"),
        _ => None,
    };
    client_side
        .or_else(|| response_code::name(code))
        .map_or_else(|| format!("code {code}"), str::to_owned)
}

/// Prints the first failure of each kind on stderr, so a run that fails says why without
/// flooding the terminal.
#[derive(Debug, Default)]
pub struct FirstErrors {
    seen: Mutex<BTreeSet<String>>,
}

impl FirstErrors {
    /// Prints `detail` if no failure counted under `key` was printed before.
    pub fn note(&self, key: &str, detail: &dyn std::fmt::Display) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.insert(key.to_owned()) {
            crate::progress(format_args!("mqbench: first {key}: {detail}"));
        }
    }
}

/// Latency percentiles of a histogram, in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Smallest sample.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
}

impl LatencySummary {
    /// The summary of `histogram`; `None` when it holds no sample.
    pub fn of(histogram: &Histogram<u64>) -> Option<Self> {
        if histogram.is_empty() {
            return None;
        }
        Some(Self {
            count: histogram.len(),
            mean: histogram.mean(),
            min: histogram.min(),
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        })
    }
}

/// Microseconds as milliseconds with a fitting number of decimals.
pub fn format_ms(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms < 10.0 {
        format!("{ms:.3} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// Bytes per second as megabytes (10^6 bytes) per second.
pub fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    per_second(bytes, elapsed) / 1e6
}

/// Events per second over `elapsed`; 0 over an empty span.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// The live line of one second: `label` (`warmup` or `run`), then what was sent and what
/// was consumed during that second, and errors.
pub fn live_line(
    at: Duration,
    label: &str,
    window: &Window,
    span: Duration,
    sending: bool,
    consuming: bool,
) -> String {
    let mut line = format!("[{:>5.0}s] {label:<6}", at.as_secs_f64());
    if sending {
        line.push_str(&format!(
            " send {:>9.0} msgs/s {:>7.1} MB/s",
            per_second(window.acked, span),
            mb_per_s(window.acked_bytes, span)
        ));
        if let Some(latency) = LatencySummary::of(&window.send_latency) {
            line.push_str(&format!(
                "  p50 {:>9}  p99 {:>9}",
                format_ms(latency.p50),
                format_ms(latency.p99)
            ));
        }
    }
    if consuming {
        line.push_str(&format!(
            " | consume {:>9.0} msgs/s {:>7.1} MB/s",
            per_second(window.consumed, span),
            mb_per_s(window.consumed_bytes, span)
        ));
        if let Some(latency) = LatencySummary::of(&window.e2e_latency) {
            line.push_str(&format!(
                "  e2e p50 {:>9}  p99 {:>9}",
                format_ms(latency.p50),
                format_ms(latency.p99)
            ));
        }
    }
    line.push_str(&format!("  errors {}", window.total_errors()));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_count_in_the_total_only_when_measured() {
        let recorder = Recorder::new();
        let latency = Duration::from_micros(250);
        recorder.record_send(false, 1, 128, &SendOutcome::Acked, latency);
        recorder.record_send(true, 4, 512, &SendOutcome::Acked, latency);
        recorder.record_send(
            true,
            1,
            128,
            &SendOutcome::Failed("SYSTEM_BUSY".into()),
            latency,
        );
        let total = recorder.total();
        assert_eq!((total.sent, total.acked, total.failed), (5, 4, 1));
        assert_eq!(total.acked_bytes, 512);
        assert_eq!(total.errors.get("SYSTEM_BUSY"), Some(&1));
        assert_eq!(total.send_latency.len(), 2);
        let second = recorder.take_second();
        assert_eq!(second.sent, 6);
        assert_eq!(recorder.take_second().sent, 0);
    }

    #[test]
    fn a_second_delivery_of_a_sequence_number_is_a_duplicate() {
        let recorder = Recorder::new();
        let message = |seq| Consumed {
            measured: true,
            bytes: 10,
            e2e: Some(Duration::from_millis(2)),
            seq: Some(seq),
        };
        recorder.record_consumed([message(3), message(900), message(3)]);
        let total = recorder.total();
        assert_eq!((total.consumed, total.duplicates), (3, 1));
        assert_eq!(recorder.consumed_unique(), 2);
        let e2e = LatencySummary::of(&total.e2e_latency).expect("samples");
        assert_eq!(e2e.count, 3);
        assert!((1990..=2010).contains(&e2e.p50), "{e2e:?}");
    }

    #[test]
    fn latency_summary_reads_percentiles_in_microseconds() {
        let mut histogram = histogram();
        for us in 1..=1000 {
            histogram.record(us).expect("within bounds");
        }
        let summary = LatencySummary::of(&histogram).expect("samples");
        assert_eq!((summary.min, summary.max), (1, 1000));
        assert_eq!(summary.p50, 500);
        assert_eq!(summary.p99, 990);
        assert!(LatencySummary::of(&self::histogram()).is_none());
    }

    #[test]
    fn failures_are_keyed_by_their_java_code_names() {
        assert_eq!(code_key(response_code::SYSTEM_BUSY), "SYSTEM_BUSY");
        assert_eq!(
            code_key(client_error_code::ACCESS_BROKER_TIMEOUT),
            "ACCESS_BROKER_TIMEOUT"
        );
        assert_eq!(code_key(-4242), "code -4242");
    }

    #[test]
    fn milliseconds_read_naturally() {
        assert_eq!(format_ms(512), "0.512 ms");
        assert_eq!(format_ms(25_400), "25.4 ms");
        assert_eq!(format_ms(3_210_000), "3210 ms");
    }
}
