//! The broker: message store front-end, request processors, and its dealings with the name
//! servers.
//!
//! - [`config`]: the broker settings, `BrokerConfig`;
//! - [`topic_config`], [`subscription_group`], [`consumer_offset`]: the broker's metadata
//!   tables, persisted under `config/`;
//! - [`client_manager`], [`rebalance_lock`]: connected producers and consumers, and the
//!   queue locks of orderly consumers;
//! - [`context`]: what every broker component shares;
//! - [`controller`]: the wiring — server, processors, services, registration;
//! - [`long_polling`]: pulls held until a message arrives;
//! - [`protect`]: slow-consumer protection (`protectBroker`);
//! - [`processor`]: the request processors;
//! - [`outer_api`]: registration with every name server (`BrokerOuterAPI`) and the periodic
//!   re-registration driver.

pub mod client_manager;
pub mod config;
pub mod consumer_offset;
pub mod context;
pub mod controller;
pub mod long_polling;
pub mod outer_api;
pub mod processor;
pub mod protect;
pub mod rebalance_lock;
pub mod subscription_group;
pub mod topic_config;

#[cfg(test)]
pub(crate) mod test_support;
