//! The broker's request processors, one file per request family, each over an
//! `Arc<BrokerContext>`.
