//! RocketMQ's JSON bodies and the domain values they carry, shared by the name server, the
//! broker and the client.
//!
//! Shapes follow what Java's fastjson writes (`spec/wire-protocol.md` §7): fields in
//! alphabetical order, nulls omitted, enums as names, map keys always quoted. Readers accept
//! what real clients send besides: enum ordinals, numbers as strings, missing collections and
//! unknown fields ([`lenient`]).

pub mod heartbeat;
pub mod lenient;
pub mod route;
pub mod topic;

pub use route::{BrokerData, ClusterInfo, KvTable, QueueData, TopicList, TopicRouteData};
pub use topic::{
    DataVersion, RegisterBrokerBody, TopicConfig, TopicConfigSerializeWrapper, TopicFilterType,
    perm,
};

/// The id of a master in `brokerAddrs`; slaves have ids above it.
pub const MASTER_ID: i64 = 0;

/// The auto-create template topic (`TopicValidator.AUTO_CREATE_TOPIC_KEY_TOPIC`).
pub const AUTO_CREATE_TOPIC: &str = "TBW102";

/// The KV-config namespace holding order-topic settings.
pub const ORDER_TOPIC_CONFIG_NAMESPACE: &str = "ORDER_TOPIC_CONFIG";

/// Serializes a body as compact JSON. Serializing these plain data types cannot fail.
pub fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("protocol bodies are plain data and always serialize")
}

/// Why a JSON body could not be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed {what} body: {source}")]
pub struct BodyError {
    /// Which body.
    pub what: &'static str,
    /// The parser's complaint.
    #[source]
    pub source: serde_json::Error,
}

/// Reads a JSON body of type `T`.
pub fn from_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, BodyError> {
    serde_json::from_slice(bytes).map_err(|source| BodyError { what, source })
}
