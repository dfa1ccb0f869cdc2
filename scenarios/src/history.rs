//! What a simulation run recorded: every send with its outcome, every delivery, the
//! final contents of every queue, the crashes, and samples of committed consumer offsets.
//! The checkers ([`crate::checkers`]) judge a run from this alone.
//!
//! Times are offsets from the run's start in simulated time, so a history is the same
//! for the same seed.

use std::collections::BTreeMap;
use std::time::Duration;

/// How a broker group flushes: what its acknowledgements promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// SYNC_FLUSH: an acknowledged message survives power loss.
    SyncFlush,
    /// ASYNC_FLUSH: an acknowledged message survives a process crash, not a power loss.
    AsyncFlush,
}

/// Where and when a broker acknowledged a message (SEND_OK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The broker group.
    pub broker: String,
    /// The queue.
    pub queue_id: i32,
    /// The message's queue offset.
    pub queue_offset: i64,
    /// When the acknowledgement arrived.
    pub at: Duration,
}

/// How a send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// SEND_OK.
    Acked(Ack),
    /// The send failed (it may still have been stored: a timeout is not a refusal).
    Failed {
        /// The error, as the producer reported it.
        error: String,
    },
}

/// One send of a unique body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRecord {
    /// The producer.
    pub producer: String,
    /// Its sequence number at that producer.
    pub seq: u64,
    /// The ordering key, for orderly sends.
    pub order_key: Option<String>,
    /// When the send started.
    pub started: Duration,
    /// How it ended.
    pub outcome: SendOutcome,
}

/// A message handed to a consumer's listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The consumer (one incarnation of it).
    pub consumer: String,
    /// Whether the consumer is orderly.
    pub orderly: bool,
    /// The broker group.
    pub broker: String,
    /// The queue.
    pub queue_id: i32,
    /// The message's queue offset.
    pub queue_offset: i64,
    /// The body.
    pub body: String,
    /// When it was delivered.
    pub at: Duration,
}

/// A message found by the final read of every queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// The broker group.
    pub broker: String,
    /// The queue.
    pub queue_id: i32,
    /// The queue offset.
    pub queue_offset: i64,
    /// The body.
    pub body: String,
}

/// A crash of a broker's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashEvent {
    /// The broker group.
    pub broker: String,
    /// Whether unsynced writes were lost (power loss) or kept (process crash).
    pub power_loss: bool,
    /// When.
    pub at: Duration,
    /// When the broker was started again (`None`: not yet). Until then it wrote nothing, so
    /// whatever it acknowledged or delivered before this was written before the crash.
    pub restarted: Option<Duration>,
}

/// A committed consumer offset read back from a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetSample {
    /// The consumer group.
    pub group: String,
    /// The broker group.
    pub broker: String,
    /// The queue.
    pub queue_id: i32,
    /// The committed offset.
    pub offset: i64,
    /// When it was read.
    pub at: Duration,
}

/// A run's record. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Body → its send.
    pub sends: BTreeMap<String, SendRecord>,
    /// Every delivery, in delivery order.
    pub deliveries: Vec<Delivery>,
    /// The final read of every queue (`None` until it ran).
    pub stored: Option<Vec<StoredEntry>>,
    /// Broker crashes, in order.
    pub crashes: Vec<CrashEvent>,
    /// Committed-offset samples, in order.
    pub offsets: Vec<OffsetSample>,
    /// Broker group → its durability.
    pub durability: BTreeMap<String, Durability>,
    /// Whether any fault that can make a client retry or a consumer re-read was injected
    /// (crash, pause, partition, disk fault) or consumers churned; duplicates need one.
    pub disturbed: bool,
    /// Bodies of the liveness phase (sent after every fault healed).
    pub liveness_bodies: Vec<String>,
}

impl History {
    /// The acknowledged sends: body, send and acknowledgement.
    pub fn acked(&self) -> impl Iterator<Item = (&String, &SendRecord, &Ack)> {
        self.sends
            .iter()
            .filter_map(|(body, send)| match &send.outcome {
                SendOutcome::Acked(ack) => Some((body, send, ack)),
                SendOutcome::Failed { .. } => None,
            })
    }

    /// Notes that `broker`, crashed, was started again at `at`.
    pub fn record_restart(&mut self, broker: &str, at: Duration) {
        if let Some(crash) = self
            .crashes
            .iter_mut()
            .rev()
            .find(|crash| crash.broker == broker && crash.restarted.is_none())
        {
            crash.restarted = Some(at);
        }
    }

    /// How many sends were acknowledged.
    pub fn acked_count(&self) -> usize {
        self.acked().count()
    }
}
