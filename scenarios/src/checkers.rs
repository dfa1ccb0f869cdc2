//! The checkers: rules a run must keep, judged from its [`History`]. Each returns the
//! violations it found (empty: the rule held), worded so that a failing seed's report says
//! what went wrong and where.
//!
//! - [`no_acked_message_lost`]: every acknowledged message is in the final read of its
//!   broker — unless it was acknowledged under ASYNC_FLUSH and its broker lost power
//!   afterwards (SYNC_FLUSH acknowledgements survive power loss; ASYNC_FLUSH ones survive a
//!   process crash).
//! - [`dense_queue_offsets`]: every queue reads back as consecutive offsets.
//! - [`acked_where_stored`]: an acknowledged message sits at the queue and offset the
//!   acknowledgement named — unless it may have been lost (then a later message may take
//!   its offset).
//! - [`producer_order`]: one producer's acknowledged sends to a queue have increasing
//!   offsets in send order (it sends one at a time), unless the earlier one may have been
//!   lost.
//! - [`nothing_unsent`]: nothing is stored or delivered that was never sent.
//! - [`duplicates_explained`]: a message stored or delivered twice needs a reason — a
//!   fault that makes a client retry or re-read, or consumer churn.
//! - [`orderly_delivery`]: an orderly group consumes each queue without skipping: in
//!   delivery order, each offset is at most one past the previous one.
//! - [`committed_offsets_monotonic`]: a group's committed offset never moves backwards,
//!   except across a crash of the broker that holds it (its last 5 s of commits may be
//!   lost), after the broker lost acknowledged messages legitimately (ASYNC_FLUSH power
//!   loss: the queue shrank, and consumers reset past-the-end offsets to its end), or when
//!   a concurrent (lock-free) queue changed hands: two consumers briefly both own a queue
//!   while their views of the group differ, and the one behind commits last (RocketMQ's
//!   at-least-once rebalance; orderly groups hold broker locks and get no such pass).
//! - [`liveness`]: after every fault healed, the final sends were acknowledged and every
//!   acknowledged message was delivered — except one that took a queue offset an
//!   ASYNC_FLUSH power loss had freed: a consumer already past that offset does not go back
//!   (RocketMQ's offsets are positions, and the lost messages' positions were reused).

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{Ack, Durability, History, SendOutcome};

/// How far before an offset sample a delivery by another consumer still explains a stale
/// commit: two persist intervals of the consumers (5 s each).
const HANDOVER_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// At most this many examples per violated rule, so that one broken rule does not flood
/// the report.
const EXAMPLES: usize = 5;

fn report(rule: &str, problems: Vec<String>) -> Vec<String> {
    if problems.is_empty() {
        return Vec::new();
    }
    let shown: Vec<&String> = problems.iter().take(EXAMPLES).collect();
    vec![format!(
        "{rule}: {} violation(s), e.g. {}",
        problems.len(),
        shown
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    )]
}

/// Every checker, in the order the runner reports them.
pub fn all(history: &History) -> Vec<String> {
    [
        no_acked_message_lost(history),
        dense_queue_offsets(history),
        acked_where_stored(history),
        producer_order(history),
        nothing_unsent(history),
        duplicates_explained(history),
        orderly_delivery(history),
        committed_offsets_monotonic(history),
        liveness(history),
    ]
    .concat()
}

/// Bodies of the final read, by broker.
fn stored_bodies(history: &History) -> BTreeMap<&str, BTreeSet<&str>> {
    let mut by_broker: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for entry in history.stored.iter().flatten() {
        by_broker
            .entry(entry.broker.as_str())
            .or_default()
            .insert(entry.body.as_str());
    }
    by_broker
}

/// Whether a message sent to `broker` at `started` may have been lost by a crash: an
/// ASYNC_FLUSH broker lost power after the send began. (From the send's start, not its
/// acknowledgement: the broker wrote before it answered, and the answer may still be on
/// the wire when the power goes.)
fn loss_allowed(history: &History, broker: &str, started: std::time::Duration) -> bool {
    history.durability.get(broker) == Some(&Durability::AsyncFlush)
        && history
            .crashes
            .iter()
            .any(|crash| crash.broker == broker && crash.power_loss && crash.at >= started)
}

/// Whether the message acknowledged at `queue_offset` of `broker`/`queue_id` at `at` took
/// an offset that an ASYNC_FLUSH power loss before `at` had freed: before that crash, the
/// queue already held a message at the same or a later offset — one the broker acknowledged
/// or delivered before it was restarted (an answer may still be on the wire when the power
/// goes, but nothing is written while the broker is down).
fn reused_offset(
    history: &History,
    broker: &str,
    queue_id: i32,
    queue_offset: i64,
    at: std::time::Duration,
) -> bool {
    if history.durability.get(broker) != Some(&Durability::AsyncFlush) {
        return false;
    }
    let held_before = |written_by: std::time::Duration| {
        let acked = history.acked().any(|(_, _, ack)| {
            ack.broker == broker
                && ack.queue_id == queue_id
                && ack.queue_offset >= queue_offset
                && ack.at < written_by
        });
        acked
            || history.deliveries.iter().any(|d| {
                d.broker == broker
                    && d.queue_id == queue_id
                    && d.queue_offset >= queue_offset
                    && d.at < written_by
            })
    };
    history
        .crashes
        .iter()
        .filter(|crash| crash.broker == broker && crash.power_loss && crash.at <= at)
        .any(|crash| held_before(crash.restarted.unwrap_or(crash.at)))
}

/// See the module docs.
pub fn no_acked_message_lost(history: &History) -> Vec<String> {
    let Some(_) = &history.stored else {
        return vec!["no acked message lost: the final read did not run".into()];
    };
    let stored = stored_bodies(history);
    let problems = history
        .acked()
        .filter_map(|(body, send, ack)| {
            let Ack {
                broker,
                queue_id,
                queue_offset,
                at,
            } = ack;
            let present = stored
                .get(broker.as_str())
                .is_some_and(|b| b.contains(body.as_str()));
            (!present && !loss_allowed(history, broker, send.started)).then(|| {
                format!("{body} acked by {broker} q{queue_id}@{queue_offset} at {at:?} is gone")
            })
        })
        .collect();
    report("no acked message lost", problems)
}

/// See the module docs.
pub fn dense_queue_offsets(history: &History) -> Vec<String> {
    let mut queues: BTreeMap<(&str, i32), Vec<i64>> = BTreeMap::new();
    for entry in history.stored.iter().flatten() {
        queues
            .entry((entry.broker.as_str(), entry.queue_id))
            .or_default()
            .push(entry.queue_offset);
    }
    let problems = queues
        .into_iter()
        .filter_map(|((broker, queue_id), offsets)| {
            let gap = offsets.windows(2).find(|pair| pair[1] != pair[0] + 1)?;
            Some(format!(
                "{broker} q{queue_id}: offset {} then {}",
                gap[0], gap[1]
            ))
        })
        .collect();
    report("dense queue offsets", problems)
}

/// See the module docs.
pub fn acked_where_stored(history: &History) -> Vec<String> {
    let at_position: BTreeMap<(&str, i32, i64), &str> = history
        .stored
        .iter()
        .flatten()
        .map(|e| {
            (
                (e.broker.as_str(), e.queue_id, e.queue_offset),
                e.body.as_str(),
            )
        })
        .collect();
    let problems = history
        .acked()
        .filter_map(|(body, send, ack)| {
            let Ack {
                broker,
                queue_id,
                queue_offset,
                ..
            } = ack;
            if loss_allowed(history, broker, send.started) {
                return None;
            }
            let found = at_position.get(&(broker.as_str(), *queue_id, *queue_offset))?;
            (found != body).then(|| {
                format!("{broker} q{queue_id}@{queue_offset} holds {found}, acked for {body}")
            })
        })
        .collect();
    report("acked where stored", problems)
}

/// See the module docs.
pub fn producer_order(history: &History) -> Vec<String> {
    let mut last: BTreeMap<(&str, &str, i32), (u64, i64, std::time::Duration)> = BTreeMap::new();
    let mut sends: Vec<_> = history.acked().collect();
    sends.sort_by_key(|(_, send, _)| (send.producer.clone(), send.seq));
    let mut problems = Vec::new();
    for (body, send, ack) in sends {
        let Ack {
            broker,
            queue_id,
            queue_offset,
            ..
        } = ack;
        let key = (send.producer.as_str(), broker.as_str(), *queue_id);
        if let Some((seq, offset, previous_at)) = last.get(&key)
            && *offset >= *queue_offset
            && !loss_allowed(history, broker, *previous_at)
        {
            problems.push(format!(
                "{body} (seq {}) at {broker} q{queue_id}@{queue_offset} after seq {seq} at @{offset}",
                send.seq
            ));
        }
        last.insert(key, (send.seq, *queue_offset, send.started));
    }
    report("producer order", problems)
}

/// See the module docs.
pub fn nothing_unsent(history: &History) -> Vec<String> {
    let stored = history.stored.iter().flatten().map(|e| e.body.as_str());
    let delivered = history.deliveries.iter().map(|d| d.body.as_str());
    let problems: BTreeSet<String> = stored
        .chain(delivered)
        .filter(|body| !history.sends.contains_key(*body))
        .map(|body| format!("{body} was never sent"))
        .collect();
    report("nothing unsent", problems.into_iter().collect())
}

/// See the module docs.
pub fn duplicates_explained(history: &History) -> Vec<String> {
    if history.disturbed {
        return Vec::new();
    }
    let mut problems = Vec::new();
    let mut stored_count: BTreeMap<&str, usize> = BTreeMap::new();
    for entry in history.stored.iter().flatten() {
        *stored_count.entry(entry.body.as_str()).or_default() += 1;
    }
    problems.extend(
        stored_count
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(body, n)| format!("{body} stored {n} times")),
    );
    let mut delivered: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for delivery in &history.deliveries {
        *delivered
            .entry((delivery.consumer.as_str(), delivery.body.as_str()))
            .or_default() += 1;
    }
    problems.extend(
        delivered
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|((consumer, body), n)| format!("{body} delivered {n} times to {consumer}")),
    );
    report("duplicates explained (no fault, no churn)", problems)
}

/// See the module docs.
pub fn orderly_delivery(history: &History) -> Vec<String> {
    let mut last: BTreeMap<(&str, i32), (i64, &str)> = BTreeMap::new();
    let mut problems = Vec::new();
    for delivery in history.deliveries.iter().filter(|d| d.orderly) {
        let key = (delivery.broker.as_str(), delivery.queue_id);
        if let Some((offset, consumer)) = last.get(&key)
            && delivery.queue_offset > offset + 1
        {
            problems.push(format!(
                "{} q{}: {} delivered @{} after @{offset} by {consumer}",
                delivery.broker, delivery.queue_id, delivery.consumer, delivery.queue_offset
            ));
        }
        last.insert(key, (delivery.queue_offset, delivery.consumer.as_str()));
    }
    report("orderly delivery", problems)
}

/// See the module docs.
pub fn committed_offsets_monotonic(history: &History) -> Vec<String> {
    let mut last: BTreeMap<(&str, &str, i32), (i64, std::time::Duration)> = BTreeMap::new();
    let mut problems = Vec::new();
    for sample in &history.offsets {
        let key = (
            sample.group.as_str(),
            sample.broker.as_str(),
            sample.queue_id,
        );
        if let Some((offset, at)) = last.get(&key)
            && sample.offset < *offset
        {
            let crashed_between = history.crashes.iter().any(|c| {
                // The broker went down or came back (reloading its offsets file) between
                // the samples; a sample just after the crash may still carry a pre-crash
                // answer that was on the wire.
                let restarted_between = c.restarted.is_some_and(|r| r > *at && r <= sample.at);
                c.broker == sample.broker
                    && ((c.at >= *at && c.at <= sample.at) || restarted_between)
            });
            let shrank_before = history.durability.get(&sample.broker)
                == Some(&Durability::AsyncFlush)
                && history
                    .crashes
                    .iter()
                    .any(|c| c.broker == sample.broker && c.power_loss && c.at <= sample.at);
            let changed_hands = history
                .deliveries
                .iter()
                .filter(|d| {
                    !d.orderly
                        && d.broker == sample.broker
                        && d.queue_id == sample.queue_id
                        && d.at + HANDOVER_WINDOW >= *at
                        && d.at <= sample.at
                })
                .map(|d| d.consumer.as_str())
                .collect::<BTreeSet<_>>()
                .len()
                > 1;
            if !crashed_between && !shrank_before && !changed_hands {
                problems.push(format!(
                    "{} at {} q{}: {offset} at {at:?}, then {} at {:?}",
                    sample.group, sample.broker, sample.queue_id, sample.offset, sample.at
                ));
            }
        }
        last.insert(key, (sample.offset, sample.at));
    }
    report("committed offsets monotonic", problems)
}

/// See the module docs.
pub fn liveness(history: &History) -> Vec<String> {
    let mut problems: Vec<String> = history
        .liveness_bodies
        .iter()
        .filter(|body| {
            !history
                .sends
                .get(*body)
                .is_some_and(|send| matches!(send.outcome, SendOutcome::Acked(_)))
        })
        .map(|body| format!("{body}, sent after healing, was not acknowledged"))
        .collect();
    let consuming = !history.deliveries.is_empty();
    if consuming {
        let delivered: BTreeSet<&str> =
            history.deliveries.iter().map(|d| d.body.as_str()).collect();
        let stored = stored_bodies(history);
        problems.extend(
            history
                .acked()
                .filter(|(body, _, ack)| {
                    // A message lost legitimately (ASYNC_FLUSH power loss) cannot be consumed.
                    let Ack { broker, queue_id, queue_offset, at } = ack;
                    let survived = stored
                        .get(broker.as_str())
                        .is_some_and(|b| b.contains(body.as_str()));
                    survived
                        && !delivered.contains(body.as_str())
                        && !reused_offset(history, broker, *queue_id, *queue_offset, *at)
                })
                .map(|(body, _, ack)| {
                    let Ack { broker, queue_id, queue_offset, at } = ack;
                    format!(
                        "{body} acknowledged by {broker} q{queue_id}@{queue_offset} at {at:?}, stored, never delivered"
                    )
                }),
        );
    }
    report("liveness", problems)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::history::{CrashEvent, Delivery, OffsetSample, SendRecord, StoredEntry};

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn acked(history: &mut History, body: &str, seq: u64, queue_offset: i64, at: u64) {
        history.sends.insert(
            body.into(),
            SendRecord {
                producer: "producer-0".into(),
                seq,
                order_key: None,
                started: secs(at),
                outcome: SendOutcome::Acked(Ack {
                    broker: "broker-a".into(),
                    queue_id: 0,
                    queue_offset,
                    at: secs(at),
                }),
            },
        );
    }

    fn stored(history: &mut History, body: &str, queue_offset: i64) {
        history
            .stored
            .get_or_insert_with(Vec::new)
            .push(StoredEntry {
                broker: "broker-a".into(),
                queue_id: 0,
                queue_offset,
                body: body.into(),
            });
    }

    fn base(durability: Durability) -> History {
        let mut history = History::default();
        history.durability.insert("broker-a".into(), durability);
        acked(&mut history, "m-0", 0, 0, 1);
        acked(&mut history, "m-1", 1, 1, 2);
        stored(&mut history, "m-0", 0);
        stored(&mut history, "m-1", 1);
        history
    }

    #[test]
    fn a_clean_history_passes_every_checker() {
        assert_eq!(all(&base(Durability::SyncFlush)), Vec::<String>::new());
    }

    #[test]
    fn a_lost_ack_is_caught_unless_async_flush_lost_power_after_it() {
        let mut history = base(Durability::SyncFlush);
        history.stored.as_mut().unwrap().pop();
        history.crashes.push(CrashEvent {
            broker: "broker-a".into(),
            power_loss: true,
            at: secs(3),
            restarted: None,
        });
        let violations = no_acked_message_lost(&history);
        assert_eq!(violations.len(), 1);
        assert!(violations[0].contains("m-1"), "{violations:?}");
        history
            .durability
            .insert("broker-a".into(), Durability::AsyncFlush);
        assert!(no_acked_message_lost(&history).is_empty());
        // A process crash loses nothing even under ASYNC_FLUSH.
        history.crashes[0].power_loss = false;
        assert_eq!(no_acked_message_lost(&history).len(), 1);
    }

    #[test]
    fn gaps_misplaced_acks_order_and_phantoms_are_caught() {
        let mut history = base(Durability::SyncFlush);
        stored(&mut history, "ghost", 3);
        assert_eq!(dense_queue_offsets(&history).len(), 1);
        assert_eq!(nothing_unsent(&history).len(), 1);
        let mut history = base(Durability::SyncFlush);
        history.stored.as_mut().unwrap()[1].body = "m-0".into();
        assert_eq!(acked_where_stored(&history).len(), 1);
        assert_eq!(duplicates_explained(&history).len(), 1);
        history.disturbed = true;
        assert!(duplicates_explained(&history).is_empty());
        let mut history = base(Durability::SyncFlush);
        acked(&mut history, "m-2", 2, 0, 3);
        assert_eq!(producer_order(&history).len(), 1);
    }

    #[test]
    fn orderly_skips_backward_offsets_and_missed_deliveries_are_caught() {
        let mut history = base(Durability::SyncFlush);
        let delivery = |body: &str, offset: i64| Delivery {
            consumer: "c1".into(),
            orderly: true,
            broker: "broker-a".into(),
            queue_id: 0,
            queue_offset: offset,
            body: body.into(),
            at: secs(5),
        };
        history.deliveries = vec![delivery("m-0", 0), delivery("m-1", 1)];
        assert!(orderly_delivery(&history).is_empty());
        assert!(liveness(&history).is_empty());
        history.deliveries = vec![delivery("m-1", 1)];
        history.deliveries.insert(0, delivery("m-0", 0));
        history.deliveries[1].queue_offset = 2;
        assert_eq!(orderly_delivery(&history).len(), 1);
        history.deliveries.truncate(1);
        assert_eq!(liveness(&history).len(), 1, "m-1 never delivered");
        history.liveness_bodies.push("late".into());
        assert!(liveness(&history)[0].contains("2 violation"));

        // A message at an offset an ASYNC_FLUSH power loss freed may be skipped.
        let mut reuse = base(Durability::AsyncFlush);
        reuse.crashes.push(CrashEvent {
            broker: "broker-a".into(),
            power_loss: true,
            at: secs(3),
            restarted: None,
        });
        acked(&mut reuse, "m-2", 2, 1, 4);
        stored(&mut reuse, "m-2", 2);
        reuse.deliveries = vec![delivery("m-0", 0), delivery("m-1", 1)];
        assert!(liveness(&reuse).is_empty(), "{:?}", liveness(&reuse));
        reuse
            .durability
            .insert("broker-a".into(), Durability::SyncFlush);
        assert_eq!(liveness(&reuse).len(), 1);

        let sample = |offset: i64, at: u64| OffsetSample {
            group: "cg".into(),
            broker: "broker-a".into(),
            queue_id: 0,
            offset,
            at: secs(at),
        };
        history.offsets = vec![sample(5, 1), sample(3, 2)];
        assert_eq!(committed_offsets_monotonic(&history).len(), 1);
        history.crashes.push(CrashEvent {
            broker: "broker-a".into(),
            power_loss: false,
            at: secs(1),
            restarted: None,
        });
        assert!(committed_offsets_monotonic(&history).is_empty());
    }
}
