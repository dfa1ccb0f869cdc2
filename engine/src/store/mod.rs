//! The message store: commit log, consume queues, index, flush, dispatch and recovery.
pub mod checkpoint;
pub mod config;
pub mod index;
pub mod mapped_file_queue;
pub mod message;
pub mod commit_log;
