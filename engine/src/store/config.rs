//! Message-store settings (`MessageStoreConfig`), bound to the Java property keys of
//! `broker.conf`.

use std::time::Duration;

use crate::config::ConfigValue;

macro_rules! config_enum {
    ($(#[$meta:meta])* $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $java:literal ),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $( $(#[$vmeta])* $variant, )* }

        impl ConfigValue for $name {
            const EXPECTED: &'static str = concat!("one of", $( " ", $java, )*);
            fn parse_config(text: &str) -> Option<Self> {
                match text { $( $java => Some(Self::$variant), )* _ => None }
            }
            fn render_config(&self) -> String {
                match self { $( Self::$variant => $java.to_owned(), )* }
            }
        }
    };
}

config_enum! {
    /// When an append counts as stored (`FlushDiskType`).
    FlushDiskType {
        /// Acknowledged once synced to disk (group commit).
        SyncFlush = "SYNC_FLUSH",
        /// Acknowledged once in the page cache; synced in the background.
        AsyncFlush = "ASYNC_FLUSH",
    }
}

config_enum! {
    /// A broker's replication role (`BrokerRole`).
    BrokerRole {
        /// Master acknowledging before replication.
        AsyncMaster = "ASYNC_MASTER",
        /// Master acknowledging after a slave has the data.
        SyncMaster = "SYNC_MASTER",
        /// Replica of a master.
        Slave = "SLAVE",
    }
}

crate::properties_config! {
    /// Message-store settings. Paths are relative to the broker's disk.
    pub struct MessageStoreConfig {
        /// Root of the store (`commitlog/`, `consumequeue/`, `index/`, `checkpoint`, `abort`).
        store_path_root_dir: String = "store".into(); "storePathRootDir",
        /// Size of a commit-log segment (1 GiB).
        mapped_file_size_commit_log: u64 = 1024 * 1024 * 1024; "mappedFileSizeCommitLog",
        /// Size of a consume-queue segment (300,000 units of 20 bytes).
        mapped_file_size_consume_queue: u64 = 300_000 * 20; "mappedFileSizeConsumeQueue",
        /// When an append counts as stored.
        flush_disk_type: FlushDiskType = FlushDiskType::AsyncFlush; "flushDiskType",
        /// Replication role.
        broker_role: BrokerRole = BrokerRole::AsyncMaster; "brokerRole",
        /// Async flush period, ms.
        flush_interval_commit_log: u64 = 500; "flushIntervalCommitLog",
        /// Dirty pages needed before an async flush.
        flush_commit_log_least_pages: u64 = 4; "flushCommitLogLeastPages",
        /// A full flush at least this often, ms.
        flush_commit_log_thorough_interval: u64 = 10_000; "flushCommitLogThoroughInterval",
        /// Sleep a fixed period instead of waking on appends (async flush).
        flush_commit_log_timed: bool = false; "flushCommitLogTimed",
        /// How long a SYNC_FLUSH send waits for its sync, ms.
        sync_flush_timeout: u64 = 5_000; "syncFlushTimeout",
        /// Consume-queue flush period, ms.
        flush_interval_consume_queue: u64 = 1_000; "flushIntervalConsumeQueue",
        /// Dirty pages needed before a consume-queue flush.
        flush_consume_queue_least_pages: u64 = 2; "flushConsumeQueueLeastPages",
        /// A full consume-queue flush at least this often, ms.
        flush_consume_queue_thorough_interval: u64 = 60_000; "flushConsumeQueueThoroughInterval",
        /// Largest encoded message record, bytes.
        max_message_size: u64 = 4 * 1024 * 1024; "maxMessageSize",
        /// Verify body CRCs when recovering.
        check_crc_on_recover: bool = true; "checkCRCOnRecover",
        /// Build index files (query by key).
        message_index_enable: bool = true; "messageIndexEnable",
        /// Abnormal recovery starts early enough to rebuild index files too.
        message_index_safe: bool = false; "messageIndexSafe",
        /// Hash slots per index file.
        max_hash_slot_num: u32 = 5_000_000; "maxHashSlotNum",
        /// Entries per index file.
        max_index_num: u32 = 20_000_000; "maxIndexNum",
        /// Hours a commit-log segment is kept after its last write.
        file_reserved_time: u64 = 72; "fileReservedTime",
        /// Hours of the day (`;`-separated, e.g. `04`) when expired segments are deleted.
        delete_when: String = "04".into(); "deleteWhen",
        /// Disk usage (%) above which expired segments are deleted at any hour (read as 10
        /// to 95, as Java clamps it).
        disk_max_used_space_ratio: u32 = 75; "diskMaxUsedSpaceRatio",
        /// Disk usage (%) above which the store is marked full and refuses sends
        /// (`rocketmq.broker.diskSpaceWarningLevelRatio`), until usage falls to
        /// `diskSpaceCleanForciblyRatio` or below.
        disk_space_warning_level_ratio: u32 = 90; "diskSpaceWarningLevelRatio",
        /// Disk usage (%) above which the oldest segments are deleted whether expired or not,
        /// when `cleanFileForciblyEnable` (`rocketmq.broker.diskSpaceCleanForciblyRatio`).
        disk_space_clean_forcibly_ratio: u32 = 85; "diskSpaceCleanForciblyRatio",
        /// Whether a disk past `diskSpaceCleanForciblyRatio` has its oldest segments deleted
        /// before they expire.
        clean_file_forcibly_enable: bool = true; "cleanFileForciblyEnable",
        /// Delay levels 1..n.
        message_delay_level: String = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h".into(); "messageDelayLevel",
        /// How often the schedule service persists `config/delayOffset.json`, ms.
        flush_delay_offset_interval: u64 = 10_000; "flushDelayOffsetInterval",
        /// Pull batch byte cap for data in memory.
        max_transfer_bytes_on_message_in_memory: u64 = 256 * 1024; "maxTransferBytesOnMessageInMemory",
        /// Pull batch count cap for data in memory.
        max_transfer_count_on_message_in_memory: u32 = 32; "maxTransferCountOnMessageInMemory",
        /// Pull batch byte cap for data on disk.
        max_transfer_bytes_on_message_in_disk: u64 = 64 * 1024; "maxTransferBytesOnMessageInDisk",
        /// Pull batch count cap for data on disk.
        max_transfer_count_on_message_in_disk: u32 = 8; "maxTransferCountOnMessageInDisk",
        /// Share of memory (%) counted as hot data for pull batching.
        access_message_in_memory_max_ratio: u32 = 40; "accessMessageInMemoryMaxRatio",
        /// Record how far behind the commit log's end each group's pulls read (for
        /// `disableConsumeIfConsumerReadSlowly`).
        disk_fall_recorded: bool = true; "diskFallRecorded",
        /// An append holding the commit-log lock longer than this (ms) means the page cache
        /// is busy: sends are turned away until it lets go.
        os_page_cache_busy_time_out_mills: u64 = 1_000; "osPageCacheBusyTimeOutMills",
        /// Default number of results of a query by key.
        default_query_max_num: u32 = 32; "defaultQueryMaxNum",
    }
}

impl MessageStoreConfig {
    /// The sync-flush timeout as a duration.
    pub fn sync_flush_timeout(&self) -> Duration {
        Duration::from_millis(self.sync_flush_timeout)
    }

    /// `diskMaxUsedSpaceRatio` as Java reads it (`getDiskMaxUsedSpaceRatio`): at least 10, at
    /// most 95.
    pub fn disk_max_used_space_percent(&self) -> u32 {
        self.disk_max_used_space_ratio.clamp(10, 95)
    }

    /// Parses `messageDelayLevel` into delays for levels 1..=n.
    pub fn delay_levels(&self) -> Result<Vec<Duration>, String> {
        parse_delay_levels(&self.message_delay_level)
    }
}

/// Parses a delay-level table such as `1s 5s 1m 2h` (units s, m, h, d).
pub fn parse_delay_levels(text: &str) -> Result<Vec<Duration>, String> {
    text.split(' ')
        .filter(|token| !token.is_empty())
        .map(|token| {
            let (number, unit) = token.split_at(token.len() - 1);
            let unit_ms: u64 = match unit {
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(format!("delay level {token:?} has no unit s/m/h/d")),
            };
            let number: u64 = number
                .parse()
                .map_err(|_| format!("delay level {token:?} is not a number"))?;
            Ok(Duration::from_millis(number * unit_ms))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PropertiesConfig, apply_properties, parse_properties};

    #[test]
    fn default_delay_levels_are_the_eighteen_of_rocketmq() {
        let levels = MessageStoreConfig::default().delay_levels().unwrap();
        assert_eq!(levels.len(), 18);
        assert_eq!(levels[0], Duration::from_secs(1));
        assert_eq!(levels[4], Duration::from_secs(60));
        assert_eq!(levels[17], Duration::from_secs(7200));
        assert!(parse_delay_levels("1s 5x").is_err());
        assert!(parse_delay_levels("as").is_err());
    }

    #[test]
    fn disk_ratios_bind_by_java_name_and_the_max_used_ratio_is_clamped_as_java_reads_it() {
        let mut config = MessageStoreConfig::default();
        assert_eq!(
            (
                config.disk_max_used_space_percent(),
                config.disk_space_clean_forcibly_ratio,
                config.disk_space_warning_level_ratio,
                config.clean_file_forcibly_enable
            ),
            (75, 85, 90, true)
        );
        let properties = parse_properties(
            "diskMaxUsedSpaceRatio=99\ndiskSpaceWarningLevelRatio=97\n\
             diskSpaceCleanForciblyRatio=93\ncleanFileForciblyEnable=false\n",
        )
        .unwrap();
        assert!(
            apply_properties(&mut [&mut config], &properties)
                .unwrap()
                .is_empty()
        );
        assert_eq!(config.disk_max_used_space_percent(), 95);
        assert_eq!(config.disk_space_warning_level_ratio, 97);
        assert_eq!(config.disk_space_clean_forcibly_ratio, 93);
        assert!(!config.clean_file_forcibly_enable);
        config.disk_max_used_space_ratio = 3;
        assert_eq!(config.disk_max_used_space_percent(), 10);
    }

    #[test]
    fn enums_bind_by_java_name() {
        let mut config = MessageStoreConfig::default();
        let properties = parse_properties("flushDiskType=SYNC_FLUSH\nbrokerRole=SLAVE\n").unwrap();
        assert!(
            apply_properties(&mut [&mut config], &properties)
                .unwrap()
                .is_empty()
        );
        assert_eq!(config.flush_disk_type, FlushDiskType::SyncFlush);
        assert_eq!(config.broker_role, BrokerRole::Slave);
        let error = config.set_property("flushDiskType", "FAST").unwrap_err();
        assert!(error.to_string().contains("SYNC_FLUSH"), "{error}");
    }
}
