//! The named scenarios: stories about the failures RocketMQ deployments meet, each run with
//! every checker.
//!
//! - `sync_flush_crash`: two SYNC_FLUSH broker groups; broker-a loses power mid-produce,
//!   broker-b's process is killed later; every acknowledgement must survive.
//! - `torn_tail`: an ASYNC_FLUSH broker loses power twice, tearing its commit-log tail;
//!   recovery must keep the store consistent and lose only what ASYNC_FLUSH may lose.
//! - `namesrv_partition`: the name server is cut off from broker-a long enough to expire
//!   its route (routes change under the clients), the producer from the name server for a
//!   while; sends go on through broker-b and broker-a comes back after healing.
//! - `consumer_churn`: three orderly consumers stop and start while ordered messages flow;
//!   queues move between them and per-queue order must hold.
//! - `long_poll_timeouts`: the consumer's link to broker-a is cut for longer than a held
//!   pull's timeout, then one way only; pulls time out and resume.
//! - `disk_full`: broker-a's disk fails writes and is full for a while, then is freed;
//!   the clean service marks the store full and it refuses sends until a later pass finds
//!   room; sends fail cleanly or go elsewhere, and nothing acknowledged is lost.

use std::time::Duration;

use ferrocket_sim::{CrashKind, SimDiskFaults};

use crate::history::Durability;
use crate::story::{Endpoint, Fault, SendMode, Story, Workload};

fn at(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn two_brokers(a: Durability, b: Durability) -> Vec<(String, Durability)> {
    vec![("broker-a".into(), a), ("broker-b".into(), b)]
}

fn broker(name: &str) -> Endpoint {
    Endpoint::Broker(name.into())
}

/// Every named scenario's name.
pub const NAMES: [&str; 6] = [
    "sync_flush_crash",
    "torn_tail",
    "namesrv_partition",
    "consumer_churn",
    "long_poll_timeouts",
    "disk_full",
];

/// The story of the scenario `name`; `None` for an unknown name.
pub fn story(name: &str) -> Option<Story> {
    let (brokers, workload, timeline) = match name {
        "sync_flush_crash" => (
            two_brokers(Durability::SyncFlush, Durability::SyncFlush),
            Workload::default(),
            vec![
                (at(5), Fault::Crash("broker-a".into(), CrashKind::PowerLoss)),
                (at(9), Fault::Restart("broker-a".into())),
                (at(14), Fault::Crash("broker-b".into(), CrashKind::Process)),
                (at(17), Fault::Restart("broker-b".into())),
            ],
        ),
        "torn_tail" => (
            two_brokers(Durability::AsyncFlush, Durability::SyncFlush),
            Workload::default(),
            vec![
                (at(6), Fault::Crash("broker-a".into(), CrashKind::PowerLoss)),
                (at(10), Fault::Restart("broker-a".into())),
                (
                    at(15),
                    Fault::Crash("broker-a".into(), CrashKind::PowerLoss),
                ),
                (at(18), Fault::Restart("broker-a".into())),
            ],
        ),
        "namesrv_partition" => (
            two_brokers(Durability::AsyncFlush, Durability::AsyncFlush),
            Workload::default(),
            vec![
                (
                    at(2),
                    Fault::Partition(Endpoint::Namesrv, broker("broker-a")),
                ),
                (
                    at(8),
                    Fault::Partition(Endpoint::Producer, Endpoint::Namesrv),
                ),
                (at(40), Fault::Heal(Endpoint::Producer, Endpoint::Namesrv)),
                (at(150), Fault::Heal(Endpoint::Namesrv, broker("broker-a"))),
            ],
        ),
        "consumer_churn" => (
            two_brokers(Durability::AsyncFlush, Durability::AsyncFlush),
            Workload {
                mode: SendMode::Orderly,
                consumers: 3,
                orderly_consumers: true,
                ..Workload::default()
            },
            vec![
                (at(4), Fault::StopConsumer(0)),
                (at(7), Fault::StartConsumer(0)),
                (at(9), Fault::StopConsumer(1)),
                (at(10), Fault::StopConsumer(2)),
                (at(14), Fault::StartConsumer(1)),
                (at(16), Fault::StartConsumer(2)),
            ],
        ),
        "long_poll_timeouts" => (
            two_brokers(Durability::AsyncFlush, Durability::AsyncFlush),
            Workload::default(),
            vec![
                (
                    at(4),
                    Fault::Partition(Endpoint::Consumer, broker("broker-a")),
                ),
                (at(45), Fault::Heal(Endpoint::Consumer, broker("broker-a"))),
                (
                    at(50),
                    Fault::ClogOneWay(broker("broker-a"), Endpoint::Consumer),
                ),
                (at(58), Fault::Heal(broker("broker-a"), Endpoint::Consumer)),
            ],
        ),
        "disk_full" => (
            two_brokers(Durability::SyncFlush, Durability::AsyncFlush),
            Workload::default(),
            vec![
                (
                    at(4),
                    Fault::DiskFaults(
                        "broker-a".into(),
                        SimDiskFaults {
                            write_error: true,
                            capacity_bytes: Some(0),
                            ..SimDiskFaults::default()
                        },
                    ),
                ),
                (
                    at(11),
                    Fault::DiskFaults("broker-a".into(), SimDiskFaults::default()),
                ),
            ],
        ),
        _ => return None,
    };
    Some(Story {
        name: name.to_owned(),
        brokers,
        workload,
        timeline,
        bug: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_has_a_story_with_a_sorted_timeline() {
        for name in NAMES {
            let story = story(name).expect("a story");
            assert_eq!(story.name, name);
            assert!(
                story.timeline.windows(2).all(|w| w[0].0 <= w[1].0),
                "{name}"
            );
        }
        assert!(story("nope").is_none());
    }
}
