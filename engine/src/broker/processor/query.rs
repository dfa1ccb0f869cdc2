//! Message lookups (`QueryMessageProcessor`): QUERY_MESSAGE finds messages of a topic by
//! one of their `KEYS` or by their client unique id (`UNIQ_KEY`) through the index files;
//! VIEW_MESSAGE_BY_ID returns the record at a commit-log offset (decoded by the client from
//! an offset message id). Both answer with the stored records, byte for byte, concatenated
//! as a PULL body is, which is what `MessageDecoder.decodes` reads.
//!
//! The index stores 4-byte key hashes, so its answers are candidates. Unlike Java 4.9.8,
//! which returns every candidate and leaves the client to drop the ones whose keys differ,
//! each candidate's topic and real keys (or unique id) are compared here, so a body holds
//! only true matches and a query whose candidates are all collisions is QUERY_NOT_FOUND.
//!
//! As Java's `DefaultMessageStore.queryMessage`, a query runs at most [`QUERY_ROUNDS_MAX`]
//! rounds: when a round finds candidates but no match, the next one looks again with the
//! window ending at the oldest candidate's store time, so a window crowded with colliding
//! keys can still reach an older true match. Each round returns at most `maxNum` candidates
//! (the index caps it again at `maxMsgsNumBatch`); a unique-key query always asks for
//! `defaultQueryMaxNum`, as Java.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::broker::context::BrokerContext;
use crate::remoting::headers::{
    QueryMessageRequestHeader, QueryMessageResponseHeader, ViewMessageRequestHeader,
};
use crate::remoting::transport::{Channel, ProcessError, RequestProcessor};
use crate::remoting::{RemotingCommand, request_code as rc, response_code};
use crate::store::message::{StoredMessage, decode_record, split_keys};

/// Index rounds of one QUERY_MESSAGE at most (Java's loop of 3).
pub const QUERY_ROUNDS_MAX: usize = 3;

type Outcome = Result<Option<RemotingCommand>, ProcessError>;

/// Answers QUERY_MESSAGE and VIEW_MESSAGE_BY_ID. See the module docs.
#[derive(Debug)]
pub struct QueryMessageProcessor {
    context: Arc<BrokerContext>,
}

/// What a query found.
#[derive(Debug, Default)]
struct QueryMessageResult {
    /// The matching records, oldest first within each round.
    records: Vec<Bytes>,
    /// From the last round that had candidates (0 when none had, as Java).
    index_last_update_timestamp: i64,
    index_last_update_phyoffset: i64,
}

impl QueryMessageProcessor {
    /// A processor over the broker's shared state.
    pub fn new(context: Arc<BrokerContext>) -> Self {
        Self { context }
    }

    /// QUERY_MESSAGE (12).
    fn query_message(&self, request: &RemotingCommand) -> Outcome {
        let header: QueryMessageRequestHeader = request.decode_header()?;
        let unique_key = header.unique_key_query.unwrap_or(false);
        let max_num = if unique_key {
            self.context.store_config.default_query_max_num as usize
        } else {
            // A negative count finds nothing, as in Java.
            usize::try_from(header.max_num).unwrap_or(0)
        };
        let result = self.find(
            &header.topic,
            &header.key,
            unique_key,
            max_num,
            header.begin_timestamp,
            header.end_timestamp,
        );
        let response_header = QueryMessageResponseHeader {
            index_last_update_timestamp: result.index_last_update_timestamp,
            index_last_update_phyoffset: result.index_last_update_phyoffset,
        };
        if result.records.is_empty() {
            return Ok(Some(
                RemotingCommand::error_to(
                    request,
                    response_code::QUERY_NOT_FOUND,
                    "can not find message, maybe time range not correct",
                )
                .with_header(&response_header),
            ));
        }
        let mut body = BytesMut::with_capacity(result.records.iter().map(Bytes::len).sum());
        for record in &result.records {
            body.extend_from_slice(record);
        }
        Ok(Some(
            RemotingCommand::success_to(request)
                .with_header(&response_header)
                .with_body(body.freeze()),
        ))
    }

    /// The records of `topic` whose keys (or unique id) include `key`, stored in
    /// `[begin, end]`.
    fn find(
        &self,
        topic: &str,
        key: &str,
        unique_key: bool,
        max_num: usize,
        begin: i64,
        mut end: i64,
    ) -> QueryMessageResult {
        let store = &self.context.store;
        let mut result = QueryMessageResult::default();
        for _ in 0..QUERY_ROUNDS_MAX {
            let mut found = store.query_message(topic, key, max_num, begin, end);
            if found.phy_offsets.is_empty() {
                break;
            }
            found.phy_offsets.sort_unstable();
            found.phy_offsets.dedup();
            result.index_last_update_timestamp = found.index_last_update_timestamp;
            result.index_last_update_phyoffset = found.index_last_update_phyoffset;
            let mut oldest_store_time = None;
            for &offset in &found.phy_offsets {
                let Some(record) = store.look_message_by_offset(offset) else {
                    // Deleted by retention since it was indexed.
                    continue;
                };
                let message = match decode_record(&record, false, false) {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::warn!(offset, %error, "queryMessage: undecodable record");
                        continue;
                    }
                };
                oldest_store_time.get_or_insert(message.store_timestamp);
                if is_match(&message, topic, key, unique_key) {
                    result.records.push(record);
                } else {
                    tracing::debug!(offset, topic, key, "queryMessage: index hash collision");
                }
            }
            let exhausted = found.phy_offsets.len() < max_num;
            match oldest_store_time {
                Some(oldest) if result.records.is_empty() && !exhausted && oldest >= begin => {
                    // Every candidate collided and the index may hold more, older ones.
                    end = oldest;
                }
                _ => break,
            }
        }
        result
    }

    /// VIEW_MESSAGE_BY_ID (33).
    fn view_message_by_id(&self, request: &RemotingCommand) -> Outcome {
        let header: ViewMessageRequestHeader = request.decode_header()?;
        match self.context.store.look_message_by_offset(header.offset) {
            Some(record) => Ok(Some(RemotingCommand::success_to(request).with_body(record))),
            None => Err(ProcessError::system(format!(
                "can not find message by the offset, {}",
                header.offset
            ))),
        }
    }
}

/// Whether `message` really carries `key` in `topic`: as the Java client checks a query's
/// answers, the unique id (`getMsgId()`: `UNIQ_KEY`, else the offset id) for a unique-key
/// query, otherwise one of the space-separated `KEYS`.
fn is_match(message: &StoredMessage, topic: &str, key: &str, unique_key: bool) -> bool {
    if message.topic != topic {
        return false;
    }
    if unique_key {
        message.uniq_key().unwrap_or(&message.msg_id) == key
    } else {
        message
            .keys()
            .is_some_and(|keys| split_keys(keys).any(|k| k == key))
    }
}

#[async_trait::async_trait]
impl RequestProcessor for QueryMessageProcessor {
    async fn process(&self, _channel: &Channel, request: RemotingCommand) -> Outcome {
        match request.code {
            rc::QUERY_MESSAGE => self.query_message(&request),
            rc::VIEW_MESSAGE_BY_ID => self.view_message_by_id(&request),
            other => Ok(Some(RemotingCommand::error_to(
                &request,
                response_code::REQUEST_CODE_NOT_SUPPORTED,
                format!(" request type {other} not supported"),
            ))),
        }
    }
}

#[cfg(test)]
mod tests;
