//! The broker's topics (`TopicConfigManager`): which topics exist here, with how many queues
//! and which permissions, versioned so the name servers rewrite routes only on change.
//!
//! System topics are created at start (the auto-create template `TBW102` when
//! `autoCreateTopicEnable`, `SELF_TEST_TOPIC`, the cluster- and broker-name topics,
//! `OFFSET_MOVED_EVENT`, `SCHEDULE_TOPIC_XXXX` with one queue per delay level, ...);
//! `config/topics.json` is merged over them. Unknown topics are created on first send from
//! the template, and retry/DLQ topics on demand; every change bumps the data version, is
//! persisted, and tells the broker to re-register.
//!
//! The registration driver reports each version it has sent to the name servers, so that a
//! request that created a topic can wait for that before it is answered
//! ([`TopicConfigManager::wait_registered`]): as in Java, whose broker registers a topic
//! created on send before answering the send, a consumer started once the first send has
//! been answered finds the topic's route.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use super::config::BrokerConfig;
use crate::clock::{ClockExt, SharedClock};
use crate::disk::SharedDisk;
use crate::protocol::{AUTO_CREATE_TOPIC, TopicConfig, TopicConfigSerializeWrapper, perm};
use crate::store::message_store::SCHEDULE_TOPIC;
use crate::store::metadata::{MetadataError, TOPICS_FILE, config_path, load_json, persist_json};
use crate::sync::Progress;

/// Topic names with a fixed meaning (`TopicValidator`).
pub mod system_topic {
    /// Self-test topic.
    pub const SELF_TEST: &str = "SELF_TEST_TOPIC";
    /// Benchmark topic.
    pub const BENCHMARK: &str = "BenchmarkTest";
    /// Offset-moved events.
    pub const OFFSET_MOVED_EVENT: &str = "OFFSET_MOVED_EVENT";
    /// Transaction half messages.
    pub const TRANS_HALF: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
    /// Transaction op records.
    pub const TRANS_OP_HALF: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
    /// Transaction messages checked too often.
    pub const TRANS_CHECK_MAX_TIME: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
    /// Message traces.
    pub const TRACE: &str = "RMQ_SYS_TRACE_TOPIC";
    /// Retry topics start with this, followed by the consumer group.
    pub const RETRY_GROUP_PREFIX: &str = "%RETRY%";
    /// Dead-letter topics start with this, followed by the consumer group.
    pub const DLQ_GROUP_PREFIX: &str = "%DLQ%";
    /// Reply topics of request-reply end with this after the cluster name.
    pub const REPLY_TOPIC_POSTFIX: &str = "REPLY_TOPIC";

    /// Whether producers may not send to `topic` directly (`isNotAllowedSendTopic`, 4.9.4+).
    pub fn is_not_allowed_send(topic: &str) -> bool {
        [
            super::SCHEDULE_TOPIC,
            TRANS_HALF,
            TRANS_OP_HALF,
            TRANS_CHECK_MAX_TIME,
            SELF_TEST,
            OFFSET_MOVED_EVENT,
        ]
        .contains(&topic)
    }

    /// Whether `topic` is a system topic (`isSystemTopic`).
    pub fn is_system(topic: &str) -> bool {
        [
            super::AUTO_CREATE_TOPIC,
            super::SCHEDULE_TOPIC,
            BENCHMARK,
            TRANS_HALF,
            TRANS_OP_HALF,
            TRANS_CHECK_MAX_TIME,
            TRACE,
            SELF_TEST,
            OFFSET_MOVED_EVENT,
        ]
        .contains(&topic)
    }

    /// The retry topic of consumer group `group`.
    pub fn retry_topic(group: &str) -> String {
        format!("{RETRY_GROUP_PREFIX}{group}")
    }

    /// The dead-letter topic of consumer group `group`.
    pub fn dlq_topic(group: &str) -> String {
        format!("{DLQ_GROUP_PREFIX}{group}")
    }
}

/// Why a topic name is refused (`TopicValidator.validateTopic`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    /// Empty name.
    #[error("the specified topic is blank")]
    Blank,
    /// A character outside `[%|a-zA-Z0-9_-]`.
    #[error(
        "the specified topic[{0}] contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
    )]
    IllegalCharacters(String),
    /// Longer than 127 characters.
    #[error("the specified topic is longer than topic max length 127")]
    TooLong,
}

/// Where data-version counter `counter` stands in [`TopicConfigManager`]'s registration
/// progress: one past it, so that 0 means nothing sent (a counter read from a damaged file
/// may be negative; it counts as 0).
fn registration_position(counter: i64) -> u64 {
    u64::try_from(counter).unwrap_or(0).saturating_add(1)
}

/// Checks a topic name as the Java broker does.
pub fn validate_topic(topic: &str) -> Result<(), TopicNameError> {
    if topic.trim().is_empty() {
        return Err(TopicNameError::Blank);
    }
    if !topic
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-'))
    {
        return Err(TopicNameError::IllegalCharacters(topic.to_owned()));
    }
    if topic.len() > 127 {
        return Err(TopicNameError::TooLong);
    }
    Ok(())
}

/// What the broker's topics are built from.
#[derive(Debug, Clone)]
pub struct TopicDefaults {
    /// `autoCreateTopicEnable`.
    pub auto_create_topic_enable: bool,
    /// `defaultTopicQueueNums`.
    pub default_topic_queue_nums: i32,
    /// `brokerClusterName`.
    pub cluster_name: String,
    /// `brokerName`.
    pub broker_name: String,
    /// `clusterTopicEnable`.
    pub cluster_topic_enable: bool,
    /// `brokerTopicEnable`.
    pub broker_topic_enable: bool,
    /// `traceTopicEnable` and the trace topic's name.
    pub trace_topic: Option<String>,
    /// Delay levels (queues of `SCHEDULE_TOPIC_XXXX`).
    pub delay_level_count: i32,
}

impl TopicDefaults {
    /// The defaults of `config` with `delay_level_count` delay levels.
    pub fn from_config(config: &BrokerConfig, delay_level_count: i32) -> Self {
        Self {
            auto_create_topic_enable: config.auto_create_topic_enable,
            default_topic_queue_nums: config.default_topic_queue_nums,
            cluster_name: config.broker_cluster_name.clone(),
            broker_name: config.broker_name.clone(),
            cluster_topic_enable: config.cluster_topic_enable,
            broker_topic_enable: config.broker_topic_enable,
            trace_topic: config
                .trace_topic_enable
                .then(|| config.msg_trace_topic_name.clone()),
            delay_level_count,
        }
    }
}

/// The broker's topics. See the module docs.
#[derive(Debug)]
pub struct TopicConfigManager {
    disk: SharedDisk,
    path: String,
    clock: SharedClock,
    defaults: TopicDefaults,
    state: Mutex<TopicConfigSerializeWrapper>,
    persist_lock: tokio::sync::Mutex<()>,
    changed: Notify,
    /// Whether a registration driver runs (else nobody would report to waiters).
    registration_driven: AtomicBool,
    /// The position of the newest data-version counter the driver has sent to the name
    /// servers ([`registration_position`]; 0: none yet).
    registered: Progress,
}

impl TopicConfigManager {
    /// The system topics of `defaults`, before loading `config/topics.json`.
    pub fn new(
        disk: SharedDisk,
        store_root: &str,
        clock: SharedClock,
        defaults: TopicDefaults,
    ) -> Self {
        let mut table = BTreeMap::new();
        let mut add = |name: &str, read: i32, write: i32, perm_bits: i32| {
            let mut config = TopicConfig::new(name, read);
            config.write_queue_nums = write;
            config.perm = perm_bits;
            table.insert(name.to_owned(), config);
        };
        let read_write = perm::READ | perm::WRITE;
        add(system_topic::SELF_TEST, 1, 1, read_write);
        if defaults.auto_create_topic_enable {
            add(
                AUTO_CREATE_TOPIC,
                defaults.default_topic_queue_nums,
                defaults.default_topic_queue_nums,
                perm::INHERIT | read_write,
            );
        }
        add(system_topic::BENCHMARK, 1024, 1024, read_write);
        let cluster_perm = perm::INHERIT
            | if defaults.cluster_topic_enable {
                read_write
            } else {
                0
            };
        add(&defaults.cluster_name, 16, 16, cluster_perm);
        let broker_perm = perm::INHERIT
            | if defaults.broker_topic_enable {
                read_write
            } else {
                0
            };
        add(&defaults.broker_name, 1, 1, broker_perm);
        add(system_topic::OFFSET_MOVED_EVENT, 1, 1, read_write);
        add(
            SCHEDULE_TOPIC,
            defaults.delay_level_count,
            defaults.delay_level_count,
            read_write,
        );
        if let Some(trace) = &defaults.trace_topic {
            add(trace, 1, 1, read_write);
        }
        let reply = format!(
            "{}_{}",
            defaults.cluster_name,
            system_topic::REPLY_TOPIC_POSTFIX
        );
        add(&reply, 1, 1, read_write);
        let state = TopicConfigSerializeWrapper {
            data_version: crate::protocol::DataVersion::new(clock.wall_ms()),
            topic_config_table: table,
        };
        Self {
            disk,
            path: config_path(store_root, TOPICS_FILE),
            clock,
            defaults,
            state: Mutex::new(state),
            persist_lock: tokio::sync::Mutex::new(()),
            changed: Notify::new(),
            registration_driven: AtomicBool::new(false),
            registered: Progress::new(0),
        }
    }

    /// Merges `config/topics.json` over the system topics (a missing file is fine).
    pub fn load(&self) -> Result<(), MetadataError> {
        if let Some(saved) =
            load_json::<TopicConfigSerializeWrapper>(self.disk.as_ref(), &self.path)?
        {
            let mut state = self.lock();
            state.topic_config_table.extend(saved.topic_config_table);
            state.data_version = saved.data_version;
        }
        Ok(())
    }

    /// Writes `config/topics.json`.
    pub async fn persist(&self) -> Result<(), MetadataError> {
        let _serialized = self.persist_lock.lock().await;
        let snapshot = self.serialize_wrapper();
        persist_json(self.disk.as_ref(), &self.path, &snapshot).await
    }

    /// The topic's configuration, if it exists here.
    pub fn select_topic_config(&self, topic: &str) -> Option<TopicConfig> {
        self.lock().topic_config_table.get(topic).cloned()
    }

    /// The table and its version (the body of registration and GET_ALL_TOPIC_CONFIG).
    pub fn serialize_wrapper(&self) -> TopicConfigSerializeWrapper {
        self.lock().clone()
    }

    /// Every topic name.
    pub fn topic_names(&self) -> Vec<String> {
        self.lock().topic_config_table.keys().cloned().collect()
    }

    /// Waits until the table changes (the broker then re-registers).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Declares that a registration driver runs: from now on
    /// [`wait_registered`](Self::wait_registered) waits for it to report.
    pub fn registration_driven(&self) {
        self.registration_driven.store(true, Ordering::Release);
    }

    /// Reports that the table at data-version counter `counter` has been sent to the name
    /// servers, whatever they answered (Java's registration of a created topic is one-way).
    pub fn registration_sent(&self, counter: i64) {
        self.registered.advance_to(registration_position(counter));
    }

    /// Waits until the table as it is now has been sent to the name servers, at most `max`
    /// (`registerBrokerTimeoutMills`); returns at once when no registration driver runs.
    pub async fn wait_registered(&self, max: Duration) {
        if !self.registration_driven.load(Ordering::Acquire) {
            return;
        }
        let counter = self.lock().data_version.counter;
        let target = registration_position(counter);
        let reached = self.registered.wait_until(|sent| sent >= target);
        if self.clock.timeout(max, reached).await.is_err() {
            tracing::warn!(
                counter,
                ?max,
                "the topic table was not registered in time; answering anyway"
            );
        }
    }

    /// Creates an unknown topic on first send from the template `default_topic` (which must
    /// exist and inherit): `min(client_default_queue_nums, template write queues)` queues,
    /// the template's perm without INHERIT. `None` when the template refuses. The second
    /// value says whether the topic was created by this call.
    pub fn create_topic_in_send_message_method(
        &self,
        topic: &str,
        default_topic: &str,
        client_default_queue_nums: i32,
        topic_sys_flag: i32,
    ) -> Option<(TopicConfig, bool)> {
        let mut state = self.lock();
        if let Some(existing) = state.topic_config_table.get(topic) {
            return Some((existing.clone(), false));
        }
        let template = state.topic_config_table.get(default_topic)?.clone();
        let template_inherits = perm::is_inherited(template.perm)
            || (default_topic == AUTO_CREATE_TOPIC && self.defaults.auto_create_topic_enable);
        if !template_inherits {
            tracing::warn!(
                topic,
                default_topic,
                "template topic cannot be inherited; not creating"
            );
            return None;
        }
        let queue_nums = client_default_queue_nums
            .min(template.write_queue_nums)
            .max(0);
        let mut config = TopicConfig::new(topic, queue_nums);
        config.perm = template.perm & !perm::INHERIT;
        config.topic_sys_flag = topic_sys_flag;
        config.topic_filter_type = template.topic_filter_type;
        Some((self.insert_locked(&mut state, config), true))
    }

    /// Creates a retry or dead-letter topic on demand with `queue_nums` queues and `perm`.
    /// The second value says whether the topic was created by this call.
    pub fn create_topic_in_send_message_back_method(
        &self,
        topic: &str,
        queue_nums: i32,
        perm_bits: i32,
        topic_sys_flag: i32,
    ) -> (TopicConfig, bool) {
        let mut state = self.lock();
        if let Some(existing) = state.topic_config_table.get(topic) {
            return (existing.clone(), false);
        }
        let mut config = TopicConfig::new(topic, queue_nums);
        config.perm = perm_bits;
        config.topic_sys_flag = topic_sys_flag;
        (self.insert_locked(&mut state, config), true)
    }

    /// Creates or replaces a topic (UPDATE_AND_CREATE_TOPIC).
    pub fn update_topic_config(&self, config: TopicConfig) {
        let mut state = self.lock();
        self.insert_locked(&mut state, config);
    }

    /// Deletes a topic; whether it existed.
    pub fn delete_topic_config(&self, topic: &str) -> bool {
        let mut state = self.lock();
        let existed = state.topic_config_table.remove(topic).is_some();
        if existed {
            let now = self.clock.wall_ms();
            state.data_version.next_version(now);
            self.changed.notify_one();
        }
        existed
    }

    fn insert_locked(
        &self,
        state: &mut TopicConfigSerializeWrapper,
        config: TopicConfig,
    ) -> TopicConfig {
        tracing::info!(topic = %config.topic_name, ?config, "topic config created or updated");
        state
            .topic_config_table
            .insert(config.topic_name.clone(), config.clone());
        state.data_version.next_version(self.clock.wall_ms());
        self.changed.notify_one();
        config
    }

    fn lock(&self) -> MutexGuard<'_, TopicConfigSerializeWrapper> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
