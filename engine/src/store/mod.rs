//! The message store: commit log, consume queues, index, flush, dispatch, recovery, and the
//! delivery of delayed messages (`schedule`).
pub mod checkpoint;
pub mod commit_log;
pub mod config;
pub mod consume_queue;
pub mod index;
pub mod mapped_file_queue;
pub mod message;
pub mod message_store;
pub mod metadata;
pub mod schedule;
#[cfg(test)]
pub(crate) mod test_disk;
