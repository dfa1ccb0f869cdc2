use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

const GROUP: &str = "please_rename_unique_group_name_4";
const TOPIC: &str = "TopicTest";

fn mq(broker_name: &str, queue_id: i32) -> MessageQueue {
    MessageQueue {
        broker_name: broker_name.to_owned(),
        queue_id,
        topic: TOPIC.to_owned(),
    }
}

/// `count` queues of one broker, ids `0..count`.
fn queues(count: i32) -> Vec<MessageQueue> {
    (0..count).map(|id| mq("broker-a", id)).collect()
}

fn client_ids(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("10.0.0.{i}@{i}")).collect()
}

fn ids(mqs: &[MessageQueue]) -> Vec<i32> {
    mqs.iter().map(|mq| mq.queue_id).collect()
}

/// Each client's share, in client order.
fn shares(
    strategy: &dyn AllocateMessageQueueStrategy,
    mq_all: &[MessageQueue],
    cids: &[String],
) -> Vec<Vec<MessageQueue>> {
    cids.iter()
        .map(|cid| {
            strategy
                .allocate(GROUP, cid, mq_all, cids)
                .expect("the inputs are valid")
        })
        .collect()
}

/// Asserts the shares are pairwise disjoint and cover exactly `expected`.
fn assert_partition(shares: &[Vec<MessageQueue>], expected: &[MessageQueue]) {
    let mut seen = BTreeSet::new();
    for share in shares {
        for mq in share {
            assert!(seen.insert(mq.clone()), "{mq:?} allocated twice");
        }
    }
    let expected: BTreeSet<MessageQueue> = expected.iter().cloned().collect();
    assert_eq!(seen, expected);
}

#[test]
fn averagely_splits_ten_queues_over_three_consumers_four_three_three() {
    let shares = shares(&Averagely, &queues(10), &client_ids(3));
    let got: Vec<Vec<i32>> = shares.iter().map(|s| ids(s)).collect();
    assert_eq!(got, [vec![0, 1, 2, 3], vec![4, 5, 6], vec![7, 8, 9]]);
}

#[test]
fn averagely_splits_eight_queues_over_three_consumers_three_three_two() {
    let shares = shares(&Averagely, &queues(8), &client_ids(3));
    let got: Vec<Vec<i32>> = shares.iter().map(|s| ids(s)).collect();
    assert_eq!(got, [vec![0, 1, 2], vec![3, 4, 5], vec![6, 7]]);
}

#[test]
fn averagely_gives_nothing_to_consumers_beyond_the_queue_count() {
    let shares = shares(&Averagely, &queues(2), &client_ids(4));
    let got: Vec<Vec<i32>> = shares.iter().map(|s| ids(s)).collect();
    assert_eq!(got, [vec![0], vec![1], vec![], vec![]]);
}

#[test]
fn averagely_by_circle_deals_queues_round_robin() {
    let shares = shares(&AveragelyByCircle, &queues(8), &client_ids(3));
    let got: Vec<Vec<i32>> = shares.iter().map(|s| ids(s)).collect();
    assert_eq!(got, [vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]]);
}

#[test]
fn allocate_sorts_queues_by_broker_then_numeric_queue_id_and_client_ids_as_strings() {
    // Queue 10 sorts after queue 9 (numbers, not strings); broker-a before broker-b.
    let mut mq_all: Vec<MessageQueue> = (0..11).map(|id| mq("broker-b", id)).collect();
    mq_all.extend((0..11).map(|id| mq("broker-a", id)));
    mq_all.reverse();
    let cids = vec!["b@1".to_owned(), "a@1".to_owned()];
    let first = Averagely.allocate(GROUP, "a@1", &mq_all, &cids).unwrap();
    assert_eq!(
        first,
        (0..11).map(|id| mq("broker-a", id)).collect::<Vec<_>>()
    );
    let second = Averagely.allocate(GROUP, "b@1", &mq_all, &cids).unwrap();
    assert_eq!(
        second,
        (0..11).map(|id| mq("broker-b", id)).collect::<Vec<_>>()
    );
}

#[test]
fn java_message_queue_order_compares_topic_first() {
    let a = MessageQueue {
        broker_name: "broker-z".into(),
        queue_id: 0,
        topic: "A".into(),
    };
    let b = MessageQueue {
        broker_name: "broker-a".into(),
        queue_id: 0,
        topic: "B".into(),
    };
    assert_eq!(java_message_queue_order(&a, &b), Ordering::Less);
}

#[test]
fn allocate_drops_duplicate_inputs() {
    let mut mq_all = queues(4);
    mq_all.extend(queues(4));
    let mut cids = client_ids(2);
    cids.extend(client_ids(2));
    let shares = shares(&Averagely, &mq_all, &cids);
    assert_eq!(ids(&shares[0]), [0, 1]);
    assert_eq!(ids(&shares[1]), [2, 3]);
}

fn checked_strategies() -> Vec<Box<dyn AllocateMessageQueueStrategy>> {
    vec![
        Box::new(Averagely),
        Box::new(AveragelyByCircle),
        Box::new(ConsistentHash::default()),
        Box::new(ByMachineRoom::default()),
    ]
}

#[test]
fn strategies_reject_empty_arguments_like_java() {
    for strategy in checked_strategies() {
        let name = strategy.name();
        assert_eq!(
            strategy.allocate(GROUP, "", &[], &[]),
            Err(AllocateError::CurrentClientIdEmpty),
            "{name}"
        );
        assert_eq!(
            strategy.allocate(GROUP, "c", &[], &["c".to_owned()]),
            Err(AllocateError::MessageQueuesEmpty),
            "{name}"
        );
        assert_eq!(
            strategy.allocate(GROUP, "c", &queues(1), &[]),
            Err(AllocateError::ClientIdsEmpty),
            "{name}"
        );
    }
}

#[test]
fn strategies_allocate_nothing_to_a_client_the_broker_does_not_list() {
    for strategy in checked_strategies() {
        let got = strategy
            .allocate(GROUP, "stranger@1", &queues(4), &client_ids(2))
            .unwrap();
        assert!(got.is_empty(), "{}", strategy.name());
    }
}

#[test]
fn strategies_carry_java_names() {
    let names: Vec<String> = checked_strategies()
        .iter()
        .map(|s| s.name().to_owned())
        .chain([ByConfig::default().name().to_owned()])
        .collect();
    assert_eq!(
        names,
        [
            "AVG",
            "AVG_BY_CIRCLE",
            "CONSISTENT_HASH",
            "MACHINE_ROOM",
            "CONFIG"
        ]
    );
}

#[test]
fn by_config_returns_its_list_whatever_the_inputs() {
    let configured = vec![mq("broker-b", 3), mq("broker-a", 1)];
    let strategy = ByConfig(configured.clone());
    assert_eq!(
        strategy.allocate(GROUP, "", &[], &[]),
        Ok(configured.clone())
    );
    assert_eq!(
        strategy.allocate(GROUP, "x@1", &queues(8), &client_ids(3)),
        Ok(configured)
    );
}

#[test]
fn java_md5_hash_takes_the_first_four_digest_bytes_big_endian() {
    // MD5("") = d41d8cd98f00b204e9800998ecf8427e.
    assert_eq!(java_md5_hash(""), 0xd41d_8cd9);
    // From `hashlib.md5(key.encode()).digest()[:4]`.
    assert_eq!(java_md5_hash("192.168.0.1@1-0"), 0x8a9c_13de);
    assert_eq!(
        java_md5_hash("MessageQueue [topic=TopicTest, brokerName=broker-a, queueId=0]"),
        1_987_926_524
    );
}

#[test]
fn java_message_queue_string_matches_to_string() {
    assert_eq!(
        java_message_queue_string(&mq("broker-a", 7)),
        "MessageQueue [topic=TopicTest, brokerName=broker-a, queueId=7]"
    );
}

/// Eight queues on two brokers, three (then four) consumers.
fn ring_example() -> (Vec<MessageQueue>, Vec<String>) {
    let mq_all = ["broker-a", "broker-b"]
        .iter()
        .flat_map(|broker| (0..4).map(move |id| mq(broker, id)))
        .collect();
    let cids = ["192.168.0.1@1", "192.168.0.2@1", "192.168.0.3@1"]
        .map(str::to_owned)
        .to_vec();
    (mq_all, cids)
}

fn broker_ids(share: &[MessageQueue]) -> Vec<(&str, i32)> {
    share
        .iter()
        .map(|mq| (mq.broker_name.as_str(), mq.queue_id))
        .collect()
}

/// Expected values computed with Java's algorithm (MD5 prefix ring, `TreeMap.tailMap` lookup)
/// in a Python transcription: `md5(key.encode()).digest()[:4]` as a big-endian point, nodes
/// `"{cid}-{i}"` inserted in client order (later wins), `bisect_left` with wrap-around.
#[test]
fn consistent_hash_matches_java_ring_for_three_consumers() {
    let (mq_all, cids) = ring_example();
    let ten = shares(&ConsistentHash::default(), &mq_all, &cids);
    assert_eq!(broker_ids(&ten[0]), [("broker-a", 2)]);
    assert_eq!(
        broker_ids(&ten[1]),
        [
            ("broker-a", 1),
            ("broker-b", 0),
            ("broker-b", 1),
            ("broker-b", 3)
        ]
    );
    assert_eq!(
        broker_ids(&ten[2]),
        [("broker-a", 0), ("broker-a", 3), ("broker-b", 2)]
    );

    let three_nodes = ConsistentHash {
        virtual_node_count: 3,
    };
    let three = shares(&three_nodes, &mq_all, &cids);
    assert_eq!(broker_ids(&three[0]), [("broker-a", 2)]);
    assert_eq!(
        broker_ids(&three[1]),
        [("broker-a", 1), ("broker-b", 1), ("broker-b", 3)]
    );
    assert_eq!(
        broker_ids(&three[2]),
        [
            ("broker-a", 0),
            ("broker-a", 3),
            ("broker-b", 0),
            ("broker-b", 2)
        ]
    );
}

#[test]
fn consistent_hash_moves_only_the_joiners_queues_when_a_consumer_joins() {
    let (mq_all, mut cids) = ring_example();
    cids.push("192.168.0.4@1".to_owned());
    let shares = shares(&ConsistentHash::default(), &mq_all, &cids);
    assert_eq!(broker_ids(&shares[0]), [("broker-a", 2)]);
    assert_eq!(
        broker_ids(&shares[1]),
        [
            ("broker-a", 1),
            ("broker-b", 0),
            ("broker-b", 1),
            ("broker-b", 3)
        ]
    );
    assert_eq!(broker_ids(&shares[2]), [("broker-a", 0)]);
    assert_eq!(broker_ids(&shares[3]), [("broker-a", 3), ("broker-b", 2)]);
}

#[test]
fn consistent_hash_with_no_virtual_node_allocates_nothing() {
    let strategy = ConsistentHash {
        virtual_node_count: 0,
    };
    for share in shares(&strategy, &queues(4), &client_ids(2)) {
        assert!(share.is_empty());
    }
}

#[test]
fn machine_room_is_the_part_before_the_at_sign_of_a_two_part_broker_name() {
    assert_eq!(machine_room("hz@broker-a"), Some("hz"));
    assert_eq!(machine_room("hz@broker-a@"), Some("hz"));
    assert_eq!(machine_room("@broker-a"), Some(""));
    assert_eq!(machine_room("hz@"), None);
    assert_eq!(machine_room("broker-a"), None);
    assert_eq!(machine_room("a@b@c"), None);
    assert_eq!(machine_room(""), None);
}

#[test]
fn by_machine_room_splits_only_the_chosen_rooms_queues() {
    let mut mq_all: Vec<MessageQueue> = (0..5).map(|id| mq("hz@broker-a", id)).collect();
    mq_all.extend((0..4).map(|id| mq("sh@broker-b", id)));
    mq_all.extend((0..4).map(|id| mq("broker-c", id)));
    let strategy = ByMachineRoom {
        consumer_idcs: ["hz".to_owned()].into(),
    };
    let shares = shares(&strategy, &mq_all, &client_ids(2));
    // Blocks of 5 / 2 = 2, then the one left over to the first consumer.
    assert_eq!(ids(&shares[0]), [0, 1, 4]);
    assert_eq!(ids(&shares[1]), [2, 3]);
}

// ---------------------------------------------------------------------------------------------
// Properties

/// A topic's queues (unique, unordered) and a group's client ids (unique, unordered), each
/// given twice: once as generated and once shuffled.
type Inputs = (
    Vec<MessageQueue>,
    Vec<String>,
    Vec<MessageQueue>,
    Vec<String>,
);

fn inputs() -> impl Strategy<Value = Inputs> {
    let mqs = prop::collection::btree_set(
        (
            prop::sample::select(vec!["broker-a", "broker-b", "hz@broker-c", "sh@broker-d"]),
            0..24i32,
        ),
        1..40,
    )
    .prop_map(|set| {
        set.into_iter()
            .map(|(broker, id)| mq(broker, id))
            .collect::<Vec<_>>()
    });
    let cids = prop::collection::btree_set("[a-z0-9.@]{1,12}", 1..12)
        .prop_map(|set| set.into_iter().collect::<Vec<_>>());
    (mqs, cids).prop_flat_map(|(mqs, cids)| {
        (
            Just(mqs.clone()).prop_shuffle(),
            Just(cids.clone()).prop_shuffle(),
            Just(mqs).prop_shuffle(),
            Just(cids).prop_shuffle(),
        )
    })
}

fn partitioning_strategies(
    virtual_node_count: usize,
) -> Vec<Box<dyn AllocateMessageQueueStrategy>> {
    vec![
        Box::new(Averagely),
        Box::new(AveragelyByCircle),
        Box::new(ConsistentHash { virtual_node_count }),
    ]
}

proptest! {
    #[test]
    fn every_queue_goes_to_exactly_one_consumer(
        (mqs, cids, _, _) in inputs(),
        virtual_node_count in 1..16usize,
    ) {
        for strategy in partitioning_strategies(virtual_node_count) {
            assert_partition(&shares(strategy.as_ref(), &mqs, &cids), &mqs);
        }
        let by_room = ByMachineRoom { consumer_idcs: ["hz".to_owned(), "sh".to_owned()].into() };
        let in_rooms: Vec<MessageQueue> =
            mqs.iter().filter(|mq| mq.broker_name.contains('@')).cloned().collect();
        assert_partition(&shares(&by_room, &mqs, &cids), &in_rooms);
    }

    #[test]
    fn allocation_does_not_depend_on_input_order(
        (mqs, cids, mqs_shuffled, cids_shuffled) in inputs(),
        virtual_node_count in 1..16usize,
    ) {
        let mut strategies = partitioning_strategies(virtual_node_count);
        strategies.push(Box::new(ByMachineRoom { consumer_idcs: ["hz".to_owned()].into() }));
        for strategy in strategies {
            for cid in &cids {
                prop_assert_eq!(
                    strategy.allocate(GROUP, cid, &mqs, &cids),
                    strategy.allocate(GROUP, cid, &mqs_shuffled, &cids_shuffled),
                    "{}", strategy.name()
                );
            }
        }
    }

    #[test]
    fn averagely_shares_differ_by_at_most_one_and_are_contiguous(
        (mqs, cids, _, _) in inputs(),
    ) {
        let mut sorted = mqs.clone();
        sort_message_queues(&mut sorted);
        let mut sorted_cids = cids.clone();
        sort_client_ids(&mut sorted_cids);
        let shares = shares(&Averagely, &mqs, &sorted_cids);
        let sizes: Vec<usize> = shares.iter().map(Vec::len).collect();
        let min = sizes.iter().min().copied().unwrap_or(0);
        let max = sizes.iter().max().copied().unwrap_or(0);
        prop_assert!(max - min <= 1, "sizes {:?}", sizes);
        // Larger shares first, and concatenated in client order they give the sorted queues.
        prop_assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "sizes {:?}", sizes);
        prop_assert_eq!(shares.concat(), sorted);
    }

    #[test]
    fn averagely_by_circle_gives_queue_i_to_consumer_i_mod_c(
        (mqs, cids, _, _) in inputs(),
    ) {
        let mut sorted = mqs.clone();
        sort_message_queues(&mut sorted);
        let mut sorted_cids = cids.clone();
        sort_client_ids(&mut sorted_cids);
        let shares = shares(&AveragelyByCircle, &mqs, &sorted_cids);
        for (i, mq) in sorted.iter().enumerate() {
            prop_assert!(shares[i % sorted_cids.len()].contains(mq));
        }
    }

    #[test]
    fn consistent_hash_moves_queues_only_to_a_joining_consumer(
        (mqs, cids, _, _) in inputs(),
        joiner in "[A-Z]{1,8}",
        virtual_node_count in 1..16usize,
    ) {
        prop_assume!(!cids.contains(&joiner));
        let strategy = ConsistentHash { virtual_node_count };
        let before = shares(&strategy, &mqs, &cids);
        let mut joined = cids.clone();
        joined.push(joiner.clone());
        for (cid, old) in cids.iter().zip(&before) {
            let new = strategy.allocate(GROUP, cid, &mqs, &joined).unwrap();
            // A consumer that stays only ever loses queues (to the joiner), never gains any.
            prop_assert!(new.iter().all(|mq| old.contains(mq)), "{} gained queues", cid);
        }
    }
}
