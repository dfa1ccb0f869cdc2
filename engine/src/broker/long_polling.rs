//! Long polling (`PullRequestHoldService`): pulls that found nothing, held per (topic, queue)
//! until a message arrives for them or their time runs out.
//!
//! The pull processor ([`super::processor::pull`]) parks a request here instead of
//! answering PULL_NOT_FOUND, and answers it later by running the whole pull again (with
//! suspension no longer allowed) and writing the response on the request's connection. This
//! module only keeps the table and decides *which* requests are due; the processor runs them.
//! Requests become due in three ways:
//!
//! - **arrival** ([`PullRequestHoldService::notify_message_arriving`]): the store's reput
//!   service reports every dispatched message (`NotifyMessageArrivingListener`); the held
//!   requests of that queue whose offset is now below the queue's end and whose filter
//!   accepts the message's tags code are due;
//! - **periodic check** ([`PullRequestHoldService::check_hold_request`]): every 5 s (or every
//!   `shortPollingTimeMills` with long polling off) each queue is checked against the store's
//!   max offset with an unknown tags code, which every filter accepts — the fallback when an
//!   arrival was missed;
//! - **timeout**: a request whose `suspended_at + timeout` has passed is due whatever the
//!   queue holds; its re-run answers PULL_NOT_FOUND. Unlike Java, which notices timeouts only
//!   at the 5 s check, [`PullRequestHoldService::next_wake`] also wakes the checker at the
//!   earliest deadline (but at most every [`HOLD_CHECK_GAP_MIN`]), so a 15 s hold is answered
//!   after 15 s, not 15–20 s.
//!
//! A request whose connection has closed is dropped without an answer.
//!
//! Lost wake-ups are impossible: the store updates the consume queue before it reports the
//! arrival, and [`PullRequestHoldService::suspend_pull_request`] re-reads the queue's end under
//! the table lock that the arrival path also takes, refusing to hold a request whose queue grew
//! after the pull looked at it (the caller then reads again).
//!
//! Invariants ([`PullRequestHoldService::check_invariants`]): the table holds no empty lists
//! or topics;
//! `next_deadline`, when set, is at or before every held request's deadline.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use crate::clock::Instant;
use crate::remoting::RemotingCommand;
use crate::remoting::transport::Channel;
use crate::store::message_store::{MessageFilter, MessageStore};

/// How often held requests are re-checked with long polling on (Java's fixed 5 s).
pub const LONG_POLLING_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The least time between two checks, so that many requests with spread-out deadlines do
/// not make the checker scan the table for each one.
pub const HOLD_CHECK_GAP_MIN: Duration = Duration::from_millis(100);

/// The longest a request is held, whatever the client asks (clients ask 15–30 s; this only
/// keeps a hostile `suspendTimeoutMillis` from overflowing the deadline arithmetic).
pub const HOLD_TIMEOUT_MAX: Duration = Duration::from_secs(3600);

/// One held pull (`PullRequest`).
pub struct PullRequest {
    /// The PULL_MESSAGE request as received: it is run again when due.
    pub request: RemotingCommand,
    /// The connection to answer on.
    pub channel: Channel,
    /// How long it may be held.
    pub timeout: Duration,
    /// When it was held.
    pub suspended_at: Instant,
    /// The queue offset it asked for: a queue end above it means there is something to read.
    pub pull_from_this_offset: i64,
    /// Its subscription's filter, asked about arriving messages' tags codes.
    pub filter: Arc<dyn MessageFilter>,
}

impl PullRequest {
    /// When it times out.
    pub fn deadline(&self) -> Instant {
        self.suspended_at + self.timeout
    }
}

impl fmt::Debug for PullRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullRequest")
            .field("opaque", &self.request.opaque)
            .field("channel", &self.channel)
            .field("timeout", &self.timeout)
            .field("suspended_at", &self.suspended_at)
            .field("pull_from_this_offset", &self.pull_from_this_offset)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct HoldTable {
    /// Held requests by topic and queue id, in the order they were held. (Nested so the
    /// arrival path, run for every dispatched message, looks up without allocating.)
    requests: BTreeMap<String, BTreeMap<i32, Vec<PullRequest>>>,
    /// At or before the earliest deadline of any held request; `None` when none is held.
    next_deadline: Option<Instant>,
}

/// The held pulls. See the module docs.
pub struct PullRequestHoldService {
    store: Arc<MessageStore>,
    check_interval: Duration,
    table: Mutex<HoldTable>,
    deadline_changed: Notify,
}

impl fmt::Debug for PullRequestHoldService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullRequestHoldService")
            .field("check_interval", &self.check_interval)
            .field("held", &self.held_count())
            .finish_non_exhaustive()
    }
}

impl PullRequestHoldService {
    /// An empty table over `store`, checked every `check_interval` (5 s with long polling,
    /// else `shortPollingTimeMills`).
    pub fn new(store: Arc<MessageStore>, check_interval: Duration) -> Self {
        Self {
            store,
            check_interval: check_interval.max(HOLD_CHECK_GAP_MIN),
            table: Mutex::new(HoldTable::default()),
            deadline_changed: Notify::new(),
        }
    }

    /// Holds `request` for (topic, queue) (`suspendPullRequest`), unless the queue's end has
    /// moved past `seen_max_offset` — the end the caller's read saw — since: a message
    /// arrived between the read and now, and its wake-up may already have passed. Returns
    /// whether the request is held; if not, the caller should read again and answer.
    pub fn suspend_pull_request(
        &self,
        topic: &str,
        queue_id: i32,
        request: PullRequest,
        seen_max_offset: i64,
    ) -> bool {
        let mut table = self.lock();
        if self.store.max_offset_in_queue(topic, queue_id) > seen_max_offset {
            return false;
        }
        let deadline = request.deadline();
        table
            .requests
            .entry(topic.to_owned())
            .or_default()
            .entry(queue_id)
            .or_default()
            .push(request);
        if table.next_deadline.is_none_or(|next| deadline < next) {
            table.next_deadline = Some(deadline);
            drop(table);
            self.deadline_changed.notify_one();
        }
        true
    }

    /// A message up to queue offset `max_offset` (exclusive) has arrived on (topic, queue)
    /// with consume-queue `tags_code` (`None`: unknown, which every filter accepts). Takes
    /// out and returns the requests now due: those with something to read that the filter
    /// accepts, and those timed out at `now`. Requests on closed connections are dropped.
    pub fn notify_message_arriving(
        &self,
        topic: &str,
        queue_id: i32,
        max_offset: i64,
        tags_code: Option<i64>,
        now: Instant,
    ) -> Vec<PullRequest> {
        let mut table = self.lock();
        let Some(queues) = table.requests.get_mut(topic) else {
            return Vec::new();
        };
        let Some(held) = queues.remove(&queue_id) else {
            return Vec::new();
        };
        let (due, kept) = self.sweep(topic, queue_id, held, max_offset, tags_code, now);
        if !kept.is_empty() {
            queues.insert(queue_id, kept);
        } else if queues.is_empty() {
            table.requests.remove(topic);
        }
        due
    }

    /// The periodic check (`checkHoldRequest`): every queue with held requests is checked
    /// against the store's max offset, with an unknown tags code. Returns the requests due
    /// at `now` and recomputes the earliest deadline.
    pub fn check_hold_request(&self, now: Instant) -> Vec<PullRequest> {
        let mut table = self.lock();
        let mut due = Vec::new();
        let mut next_deadline: Option<Instant> = None;
        let requests = std::mem::take(&mut table.requests);
        for (topic, queues) in requests {
            let mut kept_queues = BTreeMap::new();
            for (queue_id, held) in queues {
                let max_offset = self.store.max_offset_in_queue(&topic, queue_id);
                let (woken, kept) = self.sweep(&topic, queue_id, held, max_offset, None, now);
                due.extend(woken);
                if let Some(earliest) = kept.iter().map(PullRequest::deadline).min() {
                    next_deadline = Some(next_deadline.map_or(earliest, |next| next.min(earliest)));
                }
                if !kept.is_empty() {
                    kept_queues.insert(queue_id, kept);
                }
            }
            if !kept_queues.is_empty() {
                table.requests.insert(topic, kept_queues);
            }
        }
        table.next_deadline = next_deadline;
        due
    }

    /// Splits one queue's held requests into (due, kept) (`notifyMessageArriving`'s loop).
    fn sweep(
        &self,
        topic: &str,
        queue_id: i32,
        held: Vec<PullRequest>,
        max_offset: i64,
        tags_code: Option<i64>,
        now: Instant,
    ) -> (Vec<PullRequest>, Vec<PullRequest>) {
        let mut due = Vec::new();
        let mut kept = Vec::new();
        for request in held {
            if request.channel.is_closed() {
                tracing::debug!(?request, "dropping a held pull: its connection closed");
                continue;
            }
            let mut newest = max_offset;
            if newest <= request.pull_from_this_offset {
                newest = self.store.max_offset_in_queue(topic, queue_id);
            }
            let readable = newest > request.pull_from_this_offset
                && request.filter.is_matched_by_consume_queue(tags_code);
            if readable || now >= request.deadline() {
                due.push(request);
            } else {
                kept.push(request);
            }
        }
        (due, kept)
    }

    /// When the checker should next run, given that it last ran at `last_check`: after
    /// the check interval, or at the earliest deadline if sooner, but not before
    /// [`HOLD_CHECK_GAP_MIN`] has passed.
    pub fn next_wake(&self, last_check: Instant) -> Instant {
        let periodic = last_check + self.check_interval;
        match self.lock().next_deadline {
            Some(deadline) => periodic.min(deadline.max(last_check + HOLD_CHECK_GAP_MIN)),
            None => periodic,
        }
    }

    /// Completes once a request with an earlier deadline than any before is held (the
    /// checker then recomputes [`next_wake`](Self::next_wake)). A notification sent while
    /// nobody waits is kept for the next caller.
    pub fn deadline_changed(&self) -> Notified<'_> {
        self.deadline_changed.notified()
    }

    /// How many requests are held.
    pub fn held_count(&self) -> usize {
        self.lock()
            .requests
            .values()
            .flat_map(BTreeMap::values)
            .map(Vec::len)
            .sum()
    }

    /// Asserts the invariants of the module docs.
    pub fn check_invariants(&self) {
        let table = self.lock();
        for (topic, queues) in &table.requests {
            assert!(!queues.is_empty(), "empty queue table kept for {topic}");
            for (queue_id, held) in queues {
                assert!(
                    !held.is_empty(),
                    "empty hold list kept for {topic}@{queue_id}"
                );
            }
            for request in queues.values().flatten() {
                assert!(
                    table
                        .next_deadline
                        .is_some_and(|next| next <= request.deadline()),
                    "held request {request:?} has a deadline before next_deadline {:?}",
                    table.next_deadline
                );
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HoldTable> {
        // Every critical section leaves the table consistent before anything can panic.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::test_support::{TestPeer, test_context};
    use crate::remoting::request_code;

    /// Accepts only tags code 7.
    struct OnlySeven;

    impl MessageFilter for OnlySeven {
        fn is_matched_by_consume_queue(&self, tags_code: Option<i64>) -> bool {
            tags_code.is_none_or(|code| code == 7)
        }
    }

    fn held(peer: &TestPeer, now: Instant, timeout: Duration, offset: i64) -> PullRequest {
        PullRequest {
            request: RemotingCommand::request(request_code::PULL_MESSAGE),
            channel: peer.channel.clone(),
            timeout,
            suspended_at: now,
            pull_from_this_offset: offset,
            filter: Arc::new(OnlySeven),
        }
    }

    #[tokio::test]
    async fn arrival_wakes_only_requests_below_the_new_end_whose_filter_matches() {
        let context = test_context(|_, _| {}).await;
        let service = PullRequestHoldService::new(context.store.clone(), Duration::from_secs(5));
        let peer = TestPeer::connect(&context);
        let now = context.env.clock.instant();
        let hour = Duration::from_secs(3600);
        assert!(service.suspend_pull_request("T", 0, held(&peer, now, hour, 0), 0));
        assert!(service.suspend_pull_request("T", 0, held(&peer, now, hour, 5), 0));
        service.check_invariants();

        assert!(
            service
                .notify_message_arriving("T", 1, 1, Some(7), now)
                .is_empty()
        );
        assert!(
            service
                .notify_message_arriving("T", 0, 1, Some(8), now)
                .is_empty()
        );
        let due = service.notify_message_arriving("T", 0, 1, Some(7), now);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].pull_from_this_offset, 0);
        assert_eq!(service.held_count(), 1);
        service.check_invariants();
    }

    #[tokio::test]
    async fn check_expires_timed_out_requests_and_drops_closed_connections() {
        let context = test_context(|_, _| {}).await;
        let service = PullRequestHoldService::new(context.store.clone(), Duration::from_secs(5));
        let open = TestPeer::connect(&context);
        let closed = TestPeer::connect(&context);
        let now = context.env.clock.instant();
        let short = Duration::from_millis(200);
        assert!(service.suspend_pull_request("T", 0, held(&open, now, short, 0), 0));
        assert!(service.suspend_pull_request("T", 0, held(&closed, now, short, 0), 0));
        assert!(service.suspend_pull_request("T", 1, held(&open, now, short * 10, 0), 0));
        assert_eq!(service.next_wake(now), now + HOLD_CHECK_GAP_MIN.max(short));
        closed.channel.close();

        assert!(service.check_hold_request(now).is_empty());
        assert_eq!(
            service.held_count(),
            2,
            "the closed connection's request is gone"
        );
        let due = service.check_hold_request(now + short);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].channel.id(), open.channel.id());
        assert_eq!(service.next_wake(now + short), now + short * 10);
        service.check_invariants();
    }

    #[tokio::test]
    async fn suspend_refuses_when_the_queue_grew_after_the_read() {
        let context = test_context(|_, _| {}).await;
        let service = PullRequestHoldService::new(context.store.clone(), Duration::from_secs(5));
        let peer = TestPeer::connect(&context);
        let now = context.env.clock.instant();
        // An unknown queue ends at 0: a read that saw -1 is stale, one that saw 0 is not.
        let hour = Duration::from_secs(3600);
        assert!(!service.suspend_pull_request("T", 0, held(&peer, now, hour, 0), -1));
        assert!(service.suspend_pull_request("T", 0, held(&peer, now, hour, 0), 0));
        assert_eq!(service.held_count(), 1);
    }
}
