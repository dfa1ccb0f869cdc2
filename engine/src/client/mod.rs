//! The Rust RocketMQ client: producer, push and pull consumers, over the remoting protocol
//! only — so it works against any RocketMQ 4.x broker, not just ferrocket's.
