//! Broker settings (`BrokerConfig`), bound to the Java property keys of `broker.conf`.

crate::properties_config! {
    /// Broker settings. The listen port lives in `NettyServerConfig`, the store's settings in
    /// `MessageStoreConfig`; one `broker.conf` feeds all three.
    pub struct BrokerConfig {
        /// `ROCKETMQ_HOME`; informational.
        rocketmq_home: String = String::new(); "rocketmqHome",
        /// Name servers, `;`-separated `host:port`.
        namesrv_addr: Option<String> = None; "namesrvAddr",
        /// The address clients reach this broker at (registered with the name servers).
        broker_ip1: String = "127.0.0.1".into(); "brokerIP1",
        /// The address slaves replicate from.
        broker_ip2: String = "127.0.0.1".into(); "brokerIP2",
        /// The broker group's name (master and slaves share it).
        broker_name: String = "broker-a".into(); "brokerName",
        /// The cluster the broker belongs to.
        broker_cluster_name: String = "DefaultCluster".into(); "brokerClusterName",
        /// 0 for a master, above 0 for a slave.
        broker_id: i64 = 0; "brokerId",
        /// The broker's permission bits (6 = read and write).
        broker_permission: i32 = 6; "brokerPermission",
        /// Queues of a topic created automatically.
        default_topic_queue_nums: i32 = 8; "defaultTopicQueueNums",
        /// Create unknown topics on first send, from `TBW102`.
        auto_create_topic_enable: bool = true; "autoCreateTopicEnable",
        /// Make the cluster name a readable/writable topic.
        cluster_topic_enable: bool = true; "clusterTopicEnable",
        /// Make the broker name a readable/writable topic.
        broker_topic_enable: bool = true; "brokerTopicEnable",
        /// Create unknown consumer groups on first use.
        auto_create_subscription_group: bool = true; "autoCreateSubscriptionGroup",
        /// Create the message-trace topic.
        trace_topic_enable: bool = false; "traceTopicEnable",
        /// The message-trace topic's name.
        msg_trace_topic_name: String = "RMQ_SYS_TRACE_TOPIC".into(); "msgTraceTopicName",
        /// Hold pulls that find nothing until a message arrives or they time out.
        long_polling_enable: bool = true; "longPollingEnable",
        /// How long a pull is held when long polling is off, ms.
        short_polling_time_mills: u64 = 1_000; "shortPollingTimeMills",
        /// Tell a group's consumers when its membership changes.
        notify_consumer_ids_changed_enable: bool = true; "notifyConsumerIdsChangedEnable",
        /// Re-register every this many ms (clamped to 10–60 s).
        register_name_server_period: u64 = 30_000; "registerNameServerPeriod",
        /// Register in full every period instead of asking QUERY_DATA_VERSION first.
        force_register: bool = true; "forceRegister",
        /// Timeout of a registration, ms.
        register_broker_timeout_mills: u64 = 6_000; "registerBrokerTimeoutMills",
        /// Send the zlib form of the registration body.
        compressed_register: bool = false; "compressedRegister",
        /// Persist consumer offsets every this many ms.
        flush_consumer_offset_interval: u64 = 5_000; "flushConsumerOffsetInterval",
        /// Workers of the send executor.
        send_message_thread_pool_nums: usize = 1; "sendMessageThreadPoolNums",
        /// Workers of the pull executor.
        pull_message_thread_pool_nums: usize = 16; "pullMessageThreadPoolNums",
        /// Workers of the query executor.
        query_message_thread_pool_nums: usize = 8; "queryMessageThreadPoolNums",
        /// Workers of the admin executor.
        admin_broker_thread_pool_nums: usize = 16; "adminBrokerThreadPoolNums",
        /// Workers of the client-management executor.
        client_manage_thread_pool_nums: usize = 32; "clientManageThreadPoolNums",
        /// Workers of the consumer-management executor.
        consumer_manage_thread_pool_nums: usize = 32; "consumerManageThreadPoolNums",
        /// Workers of the heartbeat executor.
        heartbeat_thread_pool_nums: usize = 8; "heartbeatThreadPoolNums",
        /// Workers of the end-transaction executor.
        end_transaction_thread_pool_nums: usize = 8; "endTransactionThreadPoolNums",
        /// Send requests that may wait.
        send_thread_pool_queue_capacity: usize = 10_000; "sendThreadPoolQueueCapacity",
        /// Pull requests that may wait.
        pull_thread_pool_queue_capacity: usize = 100_000; "pullThreadPoolQueueCapacity",
        /// Query requests that may wait.
        query_thread_pool_queue_capacity: usize = 20_000; "queryThreadPoolQueueCapacity",
        /// Client-management requests that may wait.
        client_manager_thread_pool_queue_capacity: usize = 1_000_000; "clientManagerThreadPoolQueueCapacity",
        /// Consumer-management requests that may wait.
        consumer_manager_thread_pool_queue_capacity: usize = 1_000_000; "consumerManagerThreadPoolQueueCapacity",
        /// Heartbeats that may wait.
        heartbeat_thread_pool_queue_capacity: usize = 50_000; "heartbeatThreadPoolQueueCapacity",
        /// End-transaction requests that may wait.
        end_transaction_pool_queue_capacity: usize = 100_000; "endTransactionPoolQueueCapacity",
        /// Answer requests that waited too long with SYSTEM_BUSY.
        broker_fast_failure_enable: bool = true; "brokerFastFailureEnable",
        /// Longest wait of a send in its queue, ms.
        wait_time_mills_in_send_queue: u64 = 200; "waitTimeMillsInSendQueue",
        /// Longest wait of a pull in its queue, ms.
        wait_time_mills_in_pull_queue: u64 = 5_000; "waitTimeMillsInPullQueue",
        /// Longest wait of a heartbeat in its queue, ms.
        wait_time_mills_in_heartbeat_queue: u64 = 31_000; "waitTimeMillsInHeartbeatQueue",
        /// Longest wait of an end-transaction in its queue, ms.
        wait_time_mills_in_transaction_queue: u64 = 3_000; "waitTimeMillsInTransactionQueue",
        /// Stop serving a consumer group that falls too far behind.
        disable_consume_if_consumer_read_slowly: bool = false; "disableConsumeIfConsumerReadSlowly",
        /// How far behind (bytes) a group may fall before it is stopped.
        consumer_fallbehind_threshold: u64 = 16 * 1024 * 1024 * 1024; "consumerFallbehindThreshold",
        /// Refuse transactional (half) messages.
        reject_transaction_message: bool = false; "rejectTransactionMessage",
        /// Largest delay of a delayed message, ms (40 days).
        max_delay_time: u64 = 40 * 24 * 3600 * 1000; "maxDelayTime",
        /// Broker id suggested to consumers reading old data.
        which_broker_when_consume_slowly: i64 = 1; "whichBrokerWhenConsumeSlowly",
        /// Accepted for compatibility.
        fetch_namesrv_addr_by_address_server: bool = false; "fetchNamesrvAddrByAddressServer",
        /// Accepted for compatibility.
        transfer_msg_by_heap: bool = true; "transferMsgByHeap",
    }
}

impl BrokerConfig {
    /// The name-server addresses.
    pub fn namesrv_addrs(&self) -> Vec<String> {
        self.namesrv_addr
            .as_deref()
            .unwrap_or("")
            .split(';')
            .map(str::trim)
            .filter(|addr| !addr.is_empty())
            .map(str::to_owned)
            .collect()
    }
}
