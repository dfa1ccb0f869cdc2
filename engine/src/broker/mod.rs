//! The broker: message store front-end, request processors, and its dealings with the name
//! servers.
//!
//! - [`outer_api`]: registration with every name server (`BrokerOuterAPI`) and the periodic
//!   re-registration driver.

pub mod outer_api;
