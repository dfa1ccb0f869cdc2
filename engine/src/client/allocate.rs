//! Queue allocation strategies: which queues of a topic one consumer of a CLUSTERING group
//! takes in a rebalance (Java's `AllocateMessageQueueStrategy` and its 4.9.x implementations).
//!
//! Where it sits: the rebalance of a push or pull consumer (spec `clients.md` C42) fetches
//! every readable queue of the topic (`mqAll`, from the route) and every client id of the group
//! (`cidAll`, from `GET_CONSUMER_LIST_BY_GROUP`), and asks the group's strategy for this
//! client's share. Each consumer of the group runs the same strategy on the same inputs, with
//! no coordination, so the strategies are pure functions of their arguments: given the same
//! lists in the same order every consumer computes the same split, and together the consumers
//! cover every queue exactly once.
//!
//! **Who sorts.** Java's `RebalanceImpl` sorts both lists before it calls the strategy (queues
//! by topic, broker name, queue id; client ids as strings), and the strategies rely on that
//! order. Here [`AllocateMessageQueueStrategy::allocate`] does it: it sorts (and de-duplicates)
//! copies of both lists with [`sort_message_queues`] and [`sort_client_ids`], then calls the
//! strategy's [`AllocateMessageQueueStrategy::allocate_sorted`]. A caller may therefore pass
//! the lists in any order (a route's set, a broker's reply), and a new strategy only has to
//! implement `allocate_sorted`. Java's inputs never hold duplicates (`mqAll` comes from a
//! `Set`, `cidAll` from the keys of the broker's channel table), so de-duplication only makes
//! a malformed input harmless.
//!
//! Strategies (with Java's `getName()`): [`Averagely`] (`AVG`, the default), [`AveragelyByCircle`]
//! (`AVG_BY_CIRCLE`), [`ByConfig`] (`CONFIG`), [`ConsistentHash`] (`CONSISTENT_HASH`) and
//! [`ByMachineRoom`] (`MACHINE_ROOM`).
//!
//! Invariants: for [`Averagely`], [`AveragelyByCircle`] and [`ConsistentHash`] (with at least
//! one virtual node), the results of all consumers of a group are pairwise disjoint and their
//! union is `mqAll`; [`ByMachineRoom`] does the same for the queues of its machine rooms.
//! [`ByConfig`] returns its fixed list whatever the inputs.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use md5::{Digest, Md5};

use crate::protocol::heartbeat::MessageQueue;

/// Why a strategy refused its arguments (Java throws `IllegalArgumentException`).
///
/// `RebalanceImpl` catches the exception, logs it and returns: the consumer keeps its current
/// queues for this topic until the next rebalance (every 20 s, or on a wake-up).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocateError {
    /// The current client id is empty: the client instance has no id yet; nothing to do but
    /// fix the configuration (`clientIP@instanceName`).
    #[error("currentCID is empty")]
    CurrentClientIdEmpty,
    /// The topic has no readable queue: wait for the route to gain some.
    #[error("mqAll is null or mqAll empty")]
    MessageQueuesEmpty,
    /// The broker listed no consumer for the group: wait for the next heartbeat round.
    #[error("cidAll is null or cidAll empty")]
    ClientIdsEmpty,
}

/// A rule that splits a topic's queues among the consumers of a group.
///
/// Implementations must be deterministic: every consumer of the group evaluates the rule on
/// its own and they must agree without talking to each other.
pub trait AllocateMessageQueueStrategy: Send + Sync + Debug {
    /// The strategy's name, as Java's `getName()` (logged by the rebalance).
    fn name(&self) -> &str;

    /// The queues `current_client_id` takes, given inputs already in canonical order: `mq_all`
    /// sorted by [`java_message_queue_order`] and `client_ids` sorted as strings, both without
    /// duplicates. Callers normally use [`allocate`](Self::allocate), which establishes that.
    fn allocate_sorted(
        &self,
        group: &str,
        current_client_id: &str,
        mq_all: &[MessageQueue],
        client_ids: &[String],
    ) -> Result<Vec<MessageQueue>, AllocateError>;

    /// The queues `current_client_id` takes. Sorts and de-duplicates copies of both lists as
    /// Java's `RebalanceImpl` does before calling the strategy, so the result does not depend
    /// on the order of the inputs.
    fn allocate(
        &self,
        group: &str,
        current_client_id: &str,
        mq_all: &[MessageQueue],
        client_ids: &[String],
    ) -> Result<Vec<MessageQueue>, AllocateError> {
        let mut mqs = mq_all.to_vec();
        sort_message_queues(&mut mqs);
        let mut cids = client_ids.to_vec();
        sort_client_ids(&mut cids);
        self.allocate_sorted(group, current_client_id, &mqs, &cids)
    }
}

/// Java's `MessageQueue.compareTo`: topic, then broker name, then queue id.
///
/// The derived `Ord` of [`MessageQueue`] compares the broker name first; within one topic (the
/// only case a rebalance sees) both orders agree. Strings compare by UTF-8 bytes, which equals
/// Java's UTF-16 comparison for every name without characters above U+FFFF next to ones in
/// U+E000..U+FFFF, i.e. for all realistic topic and broker names.
pub fn java_message_queue_order(a: &MessageQueue, b: &MessageQueue) -> Ordering {
    a.topic
        .cmp(&b.topic)
        .then_with(|| a.broker_name.cmp(&b.broker_name))
        .then_with(|| a.queue_id.cmp(&b.queue_id))
}

/// Sorts queues as `RebalanceImpl` does (`Collections.sort(mqAll)`) and drops duplicates.
pub fn sort_message_queues(mqs: &mut Vec<MessageQueue>) {
    mqs.sort_by(java_message_queue_order);
    mqs.dedup();
}

/// Sorts client ids as `RebalanceImpl` does (`Collections.sort(cidAll)`) and drops duplicates.
pub fn sort_client_ids(client_ids: &mut Vec<String>) {
    client_ids.sort();
    client_ids.dedup();
}

/// Java's argument checks (`AbstractAllocateMessageQueueStrategy.check`, 4.9.4+): errors for
/// an empty client id or an empty list, then the index of `current_client_id` in
/// `client_ids`, or `None` (logged as "\[BUG\]" — the broker does not know this consumer yet)
/// when it is absent, in which case the strategy allocates nothing.
pub fn check_allocate_arguments(
    group: &str,
    current_client_id: &str,
    mq_all: &[MessageQueue],
    client_ids: &[String],
) -> Result<Option<usize>, AllocateError> {
    if current_client_id.is_empty() {
        return Err(AllocateError::CurrentClientIdEmpty);
    }
    if mq_all.is_empty() {
        return Err(AllocateError::MessageQueuesEmpty);
    }
    if client_ids.is_empty() {
        return Err(AllocateError::ClientIdsEmpty);
    }
    let index = client_ids.iter().position(|cid| cid == current_client_id);
    if index.is_none() {
        tracing::info!(
            group,
            current_client_id,
            ?client_ids,
            "[BUG] ConsumerGroup: the consumerId is not in cidAll"
        );
    }
    Ok(index)
}

/// Contiguous blocks of nearly equal size (`AllocateMessageQueueAveragely`, the default).
///
/// With `n` queues and `c` consumers, the first `n % c` consumers take `n / c + 1` queues and
/// the others `n / c`, in consumer order: 10 queues over 3 consumers give `[0..4)`, `[4..7)`,
/// `[7..10)`. When `n < c` the last `c - n` consumers take nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Averagely;

impl AllocateMessageQueueStrategy for Averagely {
    fn name(&self) -> &str {
        "AVG"
    }

    fn allocate_sorted(
        &self,
        group: &str,
        current_client_id: &str,
        mq_all: &[MessageQueue],
        client_ids: &[String],
    ) -> Result<Vec<MessageQueue>, AllocateError> {
        let Some(index) = check_allocate_arguments(group, current_client_id, mq_all, client_ids)?
        else {
            return Ok(Vec::new());
        };
        let queue_count = mq_all.len();
        let client_count = client_ids.len();
        let remainder = queue_count % client_count;
        let takes_extra = remainder > 0 && index < remainder;
        let average = if queue_count <= client_count {
            1
        } else if takes_extra {
            queue_count / client_count + 1
        } else {
            queue_count / client_count
        };
        let start = if takes_extra {
            index * average
        } else {
            index * average + remainder
        };
        // Java's `range` goes negative (no queue) for the consumers past the last queue.
        let range = average.min(queue_count.saturating_sub(start));
        Ok((0..range)
            .map(|i| mq_all[(start + i) % queue_count].clone())
            .collect())
    }
}

/// Round robin (`AllocateMessageQueueAveragelyByCircle`): queue `i` goes to consumer
/// `i % c`, so consumer `k` takes queues `k, k + c, k + 2c, ...`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AveragelyByCircle;

impl AllocateMessageQueueStrategy for AveragelyByCircle {
    fn name(&self) -> &str {
        "AVG_BY_CIRCLE"
    }

    fn allocate_sorted(
        &self,
        group: &str,
        current_client_id: &str,
        mq_all: &[MessageQueue],
        client_ids: &[String],
    ) -> Result<Vec<MessageQueue>, AllocateError> {
        let Some(index) = check_allocate_arguments(group, current_client_id, mq_all, client_ids)?
        else {
            return Ok(Vec::new());
        };
        Ok(mq_all
            .iter()
            .skip(index)
            .step_by(client_ids.len())
            .cloned()
            .collect())
    }
}

/// A fixed list of queues (`AllocateMessageQueueByConfig`): returned as configured, whatever
/// the topic's queues and the group's consumers are. Like Java, no argument is checked, and
/// splitting the queues among the consumers is up to whoever configures each of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ByConfig(pub Vec<MessageQueue>);

impl AllocateMessageQueueStrategy for ByConfig {
    fn name(&self) -> &str {
        "CONFIG"
    }

    fn allocate_sorted(
        &self,
        _group: &str,
        _current_client_id: &str,
        _mq_all: &[MessageQueue],
        _client_ids: &[String],
    ) -> Result<Vec<MessageQueue>, AllocateError> {
        Ok(self.0.clone())
    }
}

/// Java's default virtual node count of [`ConsistentHash`]
/// (`new AllocateMessageQueueConsistentHash()`).
pub const CONSISTENT_HASH_VIRTUAL_NODE_COUNT_DEFAULT: usize = 10;

/// A consistent-hash ring over the client ids (`AllocateMessageQueueConsistentHash` with
/// `ConsistentHashRouter` and its default `MD5Hash`).
///
/// Each client id `cid` puts `virtual_node_count` virtual nodes on a ring of `u32` points, node
/// `i` at [`java_md5_hash`]`("{cid}-{i}")`; a later node on an occupied point replaces the
/// earlier one, as Java's `TreeMap.put` does. A queue goes to the first virtual node at or
/// after the hash of its Java `toString()` ([`java_message_queue_string`]), wrapping to the
/// smallest point. When a consumer joins, the only queues that move are those it takes; when
/// one leaves, only its queues move. With zero virtual nodes the ring is empty and nobody gets
/// a queue (Java routes to `null`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsistentHash {
    /// Virtual nodes per client id (Java's `virtualNodeCnt`, default
    /// [`CONSISTENT_HASH_VIRTUAL_NODE_COUNT_DEFAULT`]).
    pub virtual_node_count: usize,
}

impl Default for ConsistentHash {
    fn default() -> Self {
        Self {
            virtual_node_count: CONSISTENT_HASH_VIRTUAL_NODE_COUNT_DEFAULT,
        }
    }
}

/// Java's `ConsistentHashRouter.MD5Hash.hash`: the first four bytes of the MD5 digest of the
/// key's bytes, big-endian (Java keeps them in a non-negative `long`). Java encodes with the
/// platform charset (`String.getBytes()`); this takes UTF-8, which is what Linux JVMs use and
/// what every ASCII id gives anyway.
pub fn java_md5_hash(key: &str) -> u32 {
    let digest = Md5::digest(key.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Java's `MessageQueue.toString()`, the key [`ConsistentHash`] hashes a queue by.
pub fn java_message_queue_string(mq: &MessageQueue) -> String {
    format!(
        "MessageQueue [topic={}, brokerName={}, queueId={}]",
        mq.topic, mq.broker_name, mq.queue_id
    )
}

impl ConsistentHash {
    /// The ring: point -> client id, built as `ConsistentHashRouter`'s constructor does.
    fn ring<'a>(&self, client_ids: &'a [String]) -> BTreeMap<u32, &'a str> {
        let mut ring: BTreeMap<u32, &str> = BTreeMap::new();
        for cid in client_ids {
            // `getExistingReplicas`: a repeated id continues its replica numbering. Counted
            // over the ring as Java does, so points lost to collisions do not count.
            let existing = ring
                .values()
                .filter(|owner| **owner == cid.as_str())
                .count();
            for i in 0..self.virtual_node_count {
                let point = java_md5_hash(&format!("{cid}-{}", i + existing));
                ring.insert(point, cid.as_str());
            }
        }
        ring
    }
}

impl AllocateMessageQueueStrategy for ConsistentHash {
    fn name(&self) -> &str {
        "CONSISTENT_HASH"
    }

    fn allocate_sorted(
        &self,
        group: &str,
        current_client_id: &str,
        mq_all: &[MessageQueue],
        client_ids: &[String],
    ) -> Result<Vec<MessageQueue>, AllocateError> {
        if check_allocate_arguments(group, current_client_id, mq_all, client_ids)?.is_none() {
            return Ok(Vec::new());
        }
        let ring = self.ring(client_ids);
        let route = |mq: &MessageQueue| -> Option<&str> {
            let point = java_md5_hash(&java_message_queue_string(mq));
            ring.range(point..)
                .next()
                .or_else(|| ring.iter().next())
                .map(|(_, owner)| *owner)
        };
        Ok(mq_all
            .iter()
            .filter(|mq| route(mq) == Some(current_client_id))
            .cloned()
            .collect())
    }
}

/// Queues of chosen machine rooms only (`AllocateMessageQueueByMachineRoom`).
///
/// A queue belongs to room `idc` when its broker name is `idc@name` (Java: `split("@")` gives
/// exactly two parts, after dropping trailing empty parts). The queues of the rooms in
/// `consumer_idcs` are split in blocks of `m / c` per consumer, and the `m % c` left over go one
/// each to the first consumers. Queues of other rooms go to nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ByMachineRoom {
    /// The machine rooms (Java's `consumeridcs`) whose queues this group consumes.
    pub consumer_idcs: BTreeSet<String>,
}

/// The machine room of a broker name, by Java's `brokerName.split("@")` rule.
fn machine_room(broker_name: &str) -> Option<&str> {
    let mut parts: Vec<&str> = broker_name.split('@').collect();
    // Java's `String.split` drops trailing empty strings.
    while parts.last().is_some_and(|part| part.is_empty()) {
        parts.pop();
    }
    match parts.as_slice() {
        [room, _] => Some(room),
        _ => None,
    }
}

impl AllocateMessageQueueStrategy for ByMachineRoom {
    fn name(&self) -> &str {
        "MACHINE_ROOM"
    }

    fn allocate_sorted(
        &self,
        group: &str,
        current_client_id: &str,
        mq_all: &[MessageQueue],
        client_ids: &[String],
    ) -> Result<Vec<MessageQueue>, AllocateError> {
        let Some(index) = check_allocate_arguments(group, current_client_id, mq_all, client_ids)?
        else {
            return Ok(Vec::new());
        };
        let in_rooms: Vec<&MessageQueue> = mq_all
            .iter()
            .filter(|mq| {
                machine_room(&mq.broker_name).is_some_and(|room| self.consumer_idcs.contains(room))
            })
            .collect();
        let client_count = client_ids.len();
        let block = in_rooms.len() / client_count;
        let remainder = in_rooms.len() % client_count;
        let start = block * index;
        let mut result: Vec<MessageQueue> = in_rooms[start..start + block]
            .iter()
            .map(|mq| (*mq).clone())
            .collect();
        if remainder > index {
            result.push(in_rooms[index + block * client_count].clone());
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests;
