//! Swarm mode: which faults a run injects, how often and where, drawn from its seed
//! (TigerBeetle's VOPR idea: most bugs need a particular mix of faults, and a fixed mix
//! never finds them). The drawn plan is a [`Story`], printed before the run.
//!
//! A plan picks each broker group's flush mode, the workload (sync, ordered, batch or
//! async sends; 0–3 consumers, concurrent, orderly or broadcasting), a subset of the fault
//! kinds, and a timeline over the producer's sending phase where every fault is undone
//! after 1–8 s (a crash by a restart, a partition by a heal, a pause by a resume, a disk
//! fault by clearing it) — the harness heals anything left at the end anyway. A plan run
//! alone (one seed) is printed before it runs; `--verbose` prints every plan.

use std::time::Duration;

use ferrocket_engine::rng::Rng;
use ferrocket_sim::{CrashKind, SimDiskFaults};

use crate::history::Durability;
use crate::story::{Endpoint, Fault, SendMode, Story, Workload};

/// The fault kinds a plan draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A broker's process is killed (page cache kept).
    ProcessCrash,
    /// A broker loses power (unsynced writes lost or torn).
    PowerLoss,
    /// A broker freezes.
    Pause,
    /// The name server loses a broker.
    NamesrvPartition,
    /// A client loses a broker.
    ClientPartition,
    /// One direction of a client–broker link stalls.
    OneWayClog,
    /// A broker's wall clock steps.
    ClockJump,
    /// A broker's disk fails writes and is full.
    DiskFault,
    /// A consumer leaves and comes back.
    ConsumerChurn,
    /// Every link slows down.
    SlowNetwork,
}

const KINDS: [FaultKind; 10] = [
    FaultKind::ProcessCrash,
    FaultKind::PowerLoss,
    FaultKind::Pause,
    FaultKind::NamesrvPartition,
    FaultKind::ClientPartition,
    FaultKind::OneWayClog,
    FaultKind::ClockJump,
    FaultKind::DiskFault,
    FaultKind::ConsumerChurn,
    FaultKind::SlowNetwork,
];

const BROKERS: [&str; 2] = ["broker-a", "broker-b"];

/// The plan of `seed`. See the module docs.
pub fn plan(seed: u64) -> Story {
    let rng = Rng::from_seed(seed ^ 0x5eed_5a17_0f5a_a4a1);
    let brokers = BROKERS
        .iter()
        .map(|name| {
            let durability = if rng.chance(0.5) {
                Durability::SyncFlush
            } else {
                Durability::AsyncFlush
            };
            ((*name).to_owned(), durability)
        })
        .collect();
    let consumers = rng.below(4) as usize;
    let broadcast = consumers > 1 && rng.chance(0.2);
    let orderly = consumers > 0 && !broadcast && rng.chance(0.3);
    let workload = Workload {
        sends: 300,
        interval: Duration::from_millis(50),
        mode: if orderly {
            SendMode::Orderly
        } else {
            [
                SendMode::Sync,
                SendMode::Orderly,
                SendMode::Batch,
                SendMode::Async,
            ][rng.below(4) as usize]
        },
        consumers,
        orderly_consumers: orderly,
        broadcast,
        queues_per_broker: 2 + rng.below(3) as i32,
    };
    let enabled: Vec<FaultKind> = KINDS
        .iter()
        .copied()
        .filter(|kind| (*kind != FaultKind::ConsumerChurn || consumers > 0) && rng.chance(0.5))
        .collect();
    let mut timeline = Vec::new();
    let phase_ms = workload.interval.as_millis() as u64 * workload.sends as u64;
    let mut now_ms = 1_000 + rng.below(2_000);
    while !enabled.is_empty() && now_ms < phase_ms {
        let kind = enabled[rng.below(enabled.len() as u64) as usize];
        let broker = BROKERS[rng.below(2) as usize].to_owned();
        let undo_ms = now_ms + 1_000 + rng.below(7_000);
        let (fault, undo) = faults_of(kind, broker, &rng, consumers);
        timeline.push((Duration::from_millis(now_ms), fault));
        timeline.push((Duration::from_millis(undo_ms), undo));
        now_ms += 1_000 + rng.below(4_000);
    }
    timeline.sort_by_key(|(at, _)| *at);
    Story {
        name: format!(
            "swarm[{}]",
            enabled
                .iter()
                .map(|k| format!("{k:?}"))
                .collect::<Vec<_>>()
                .join(",")
        ),
        brokers,
        workload,
        timeline,
        bug: None,
    }
}

/// A fault of `kind` on `broker` and what undoes it.
fn faults_of(kind: FaultKind, broker: String, rng: &Rng, consumers: usize) -> (Fault, Fault) {
    let client = if rng.chance(0.5) {
        Endpoint::Producer
    } else {
        Endpoint::Consumer
    };
    let broker_end = Endpoint::Broker(broker.clone());
    match kind {
        FaultKind::ProcessCrash => (
            Fault::Crash(broker.clone(), CrashKind::Process),
            Fault::Restart(broker),
        ),
        FaultKind::PowerLoss => (
            Fault::Crash(broker.clone(), CrashKind::PowerLoss),
            Fault::Restart(broker),
        ),
        FaultKind::Pause => (Fault::Pause(broker.clone()), Fault::Resume(broker)),
        FaultKind::NamesrvPartition => (
            Fault::Partition(Endpoint::Namesrv, broker_end.clone()),
            Fault::Heal(Endpoint::Namesrv, broker_end),
        ),
        FaultKind::ClientPartition => (
            Fault::Partition(client.clone(), broker_end.clone()),
            Fault::Heal(client, broker_end),
        ),
        FaultKind::OneWayClog => (
            Fault::ClogOneWay(broker_end.clone(), client.clone()),
            Fault::Heal(broker_end, client),
        ),
        FaultKind::ClockJump => {
            let delta = rng.below(120_000) as i64 - 60_000;
            (
                Fault::ClockJump(broker.clone(), delta),
                Fault::ClockJump(broker, -delta),
            )
        }
        FaultKind::DiskFault => (
            Fault::DiskFaults(
                broker.clone(),
                SimDiskFaults {
                    write_error: rng.chance(0.5),
                    capacity_bytes: rng.chance(0.5).then_some(0),
                    sync_latency: Duration::from_millis(rng.below(200)),
                    ..SimDiskFaults::default()
                },
            ),
            Fault::DiskFaults(broker, SimDiskFaults::default()),
        ),
        FaultKind::ConsumerChurn => {
            let n = rng.below(consumers.max(1) as u64) as usize;
            (Fault::StopConsumer(n), Fault::StartConsumer(n))
        }
        FaultKind::SlowNetwork => {
            let low = 20 + rng.below(200);
            (
                Fault::SlowNetwork(low, low + 1 + rng.below(800)),
                Fault::NormalLatency,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_is_a_function_of_its_seed() {
        let (a, b) = (plan(11), plan(11));
        assert_eq!(a.name, b.name);
        assert_eq!(a.timeline, b.timeline);
        assert_eq!(a.brokers, b.brokers);
        let distinct: std::collections::BTreeSet<String> = (0..40).map(|s| plan(s).name).collect();
        assert!(
            distinct.len() > 10,
            "plans vary with the seed: {distinct:?}"
        );
    }

    #[test]
    fn every_fault_is_undone_later() {
        for seed in 0..50 {
            let story = plan(seed);
            assert!(story.timeline.windows(2).all(|w| w[0].0 <= w[1].0));
            let crashes = story
                .timeline
                .iter()
                .filter(|(_, f)| matches!(f, Fault::Crash(..)))
                .count();
            let restarts = story
                .timeline
                .iter()
                .filter(|(_, f)| matches!(f, Fault::Restart(..)))
                .count();
            assert_eq!(crashes, restarts, "seed {seed}");
        }
    }
}
