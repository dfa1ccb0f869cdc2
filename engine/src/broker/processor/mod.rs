//! The broker's request processors, one file per request family, each over an
//! `Arc<BrokerContext>`.

pub mod admin;
pub mod client_manage;
pub mod pull;
pub mod query;
pub mod send;
