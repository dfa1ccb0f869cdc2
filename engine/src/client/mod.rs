//! The Rust RocketMQ client: producer, push, pull and lite pull consumers, over the remoting protocol
//! only — so it works against any RocketMQ 4.x broker, not just ferrocket's.

pub mod allocate;
pub mod api;
pub mod compression;
pub mod config;
pub mod instance;
pub mod latency;
pub mod lite_pull_consumer;
pub mod message_id;
pub mod offset_store;
pub mod process_queue;
pub mod producer;
pub mod publish_info;
pub mod pull_consumer;
pub mod push_consumer;
pub mod rebalance;
pub mod transaction;
