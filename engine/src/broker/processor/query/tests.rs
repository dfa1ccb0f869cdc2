//! The query processor against an in-memory broker: lookups by key and by unique id through
//! the index (hash collisions dropped), lookups by commit-log offset, and the error answers.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;

use super::*;
use crate::broker::test_support::{
    TEST_WALL_MS, TestPeer, processor_fixture, respond, test_context,
};
use crate::store::index::{build_key, index_key_hash};
use crate::store::message::{
    MessageInner, decode_message_id, decode_records, encode_properties, property_key,
};

async fn broker() -> (Arc<BrokerContext>, QueryMessageProcessor, TestPeer) {
    processor_fixture(QueryMessageProcessor::new).await
}

/// Stores a message of `topic` with `KEYS=keys` and `UNIQ_KEY=uniq_key`, and dispatches it
/// to the consume queue and the index; returns its commit-log offset.
async fn put(
    context: &BrokerContext,
    topic: &str,
    keys: &str,
    uniq_key: &str,
    body: &'static [u8],
) -> i64 {
    let mut properties = BTreeMap::new();
    if !keys.is_empty() {
        properties.insert(property_key::KEYS.to_owned(), keys.to_owned());
    }
    if !uniq_key.is_empty() {
        properties.insert(property_key::UNIQ_KEY.to_owned(), uniq_key.to_owned());
    }
    let born_host: SocketAddr = "127.0.0.1:5555".parse().unwrap();
    let message = MessageInner {
        topic: topic.into(),
        queue_id: 0,
        flag: 0,
        body: Bytes::from_static(body),
        properties: encode_properties(&properties),
        tags_code: 0,
        sys_flag: 0,
        born_timestamp: TEST_WALL_MS,
        born_host,
        store_host: context.store_host,
        store_timestamp: 0,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    };
    let result = context.store.put_message(message).await;
    assert!(result.status.is_stored(), "{result:?}");
    context.store.dispatch_pending().await;
    result.append.expect("stored").wrote_offset
}

fn query(topic: &str, key: &str, max_num: i32, unique_key: bool) -> RemotingCommand {
    RemotingCommand::request_with_header(
        rc::QUERY_MESSAGE,
        &QueryMessageRequestHeader {
            topic: topic.into(),
            key: key.into(),
            max_num,
            begin_timestamp: 0,
            end_timestamp: i64::MAX,
            unique_key_query: unique_key.then_some(true),
        },
    )
}

fn view(offset: i64) -> RemotingCommand {
    RemotingCommand::request_with_header(
        rc::VIEW_MESSAGE_BY_ID,
        &ViewMessageRequestHeader { offset },
    )
}

fn bodies(response: &RemotingCommand) -> Vec<Bytes> {
    decode_records(&response.body)
        .into_iter()
        .map(|message| message.body.expect("bodies are read"))
        .collect()
}

#[tokio::test]
async fn query_by_key_returns_the_matching_records_oldest_first_with_the_index_header() {
    let (context, processor, peer) = broker().await;
    put(&context, "TopicA", "order-1 order-2", "U1", b"first").await;
    put(&context, "TopicA", "order-3", "U2", b"other").await;
    put(&context, "TopicA", "order-2", "U3", b"second").await;
    put(&context, "TopicB", "order-2", "U4", b"other topic").await;

    let response = respond(&processor, &peer, query("TopicA", "order-2", 32, false)).await;
    assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
    assert_eq!(bodies(&response), [&b"first"[..], b"second"]);
    let header: QueryMessageResponseHeader = response.decode_header().unwrap();
    assert_eq!(header.index_last_update_timestamp, TEST_WALL_MS);
    let last = decode_records(&response.body)
        .last()
        .unwrap()
        .commit_log_offset;
    assert!(
        header.index_last_update_phyoffset >= last,
        "the index has seen every returned record: {header:?}"
    );

    // The body is the stored records byte for byte.
    let first = decode_records(&response.body)[0].clone();
    let stored = context
        .store
        .look_message_by_offset(first.commit_log_offset)
        .unwrap();
    assert_eq!(&response.body[..stored.len()], &stored[..]);
}

#[tokio::test]
async fn query_by_key_honours_max_num() {
    let (context, processor, peer) = broker().await;
    for _ in 0..3 {
        put(&context, "TopicA", "k", "", b"m").await;
    }
    let response = respond(&processor, &peer, query("TopicA", "k", 2, false)).await;
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(decode_records(&response.body).len(), 2);
}

#[tokio::test]
async fn query_drops_index_hash_collisions_and_answers_query_not_found() {
    let (context, processor, peer) = broker().await;
    // "Aa" and "BB" have the same Java hash, so the index cannot tell them apart.
    assert_eq!(
        index_key_hash(&build_key("TopicA", "Aa")),
        index_key_hash(&build_key("TopicA", "BB"))
    );
    put(&context, "TopicA", "Aa", "", b"aa").await;
    let response = respond(&processor, &peer, query("TopicA", "BB", 32, false)).await;
    assert_eq!(response.code, response_code::QUERY_NOT_FOUND);
    assert_eq!(
        response.remark.as_deref(),
        Some("can not find message, maybe time range not correct")
    );
    assert!(response.body.is_empty());
    let header: QueryMessageResponseHeader = response.decode_header().unwrap();
    assert_eq!(
        header.index_last_update_timestamp, TEST_WALL_MS,
        "the candidate's round"
    );

    put(&context, "TopicA", "BB", "", b"bb").await;
    let response = respond(&processor, &peer, query("TopicA", "BB", 32, false)).await;
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(bodies(&response), [&b"bb"[..]]);
}

#[tokio::test]
async fn query_by_unique_key_matches_uniq_key_and_asks_for_default_query_max_num() {
    let (context, processor, peer) = broker().await;
    put(&context, "TopicA", "", "7F0000010001", b"one").await;
    put(&context, "TopicA", "7F0000010001", "OTHER", b"key, not id").await;
    put(&context, "TopicA", "", "7F0000010001", b"resent").await;

    // maxNum=1 is replaced by defaultQueryMaxNum, as Java does for unique-key queries.
    let response = respond(&processor, &peer, query("TopicA", "7F0000010001", 1, true)).await;
    assert_eq!(response.code, response_code::SUCCESS, "{response:?}");
    assert_eq!(bodies(&response), [&b"one"[..], b"resent"]);

    // Without the flag the same text is a key.
    let response = respond(
        &processor,
        &peer,
        query("TopicA", "7F0000010001", 32, false),
    )
    .await;
    assert_eq!(bodies(&response), [&b"key, not id"[..]]);
}

#[tokio::test]
async fn query_misses_answer_query_not_found_with_the_header() {
    let (context, processor, peer) = broker().await;
    put(&context, "TopicA", "k", "", b"m").await;
    for request in [
        query("TopicA", "unknown", 32, false),
        query("TopicB", "k", 32, false),
        query("TopicA", "k", 0, false),
        query("TopicA", "k", -5, false),
    ] {
        let response = respond(&processor, &peer, request).await;
        assert_eq!(response.code, response_code::QUERY_NOT_FOUND);
        assert!(response.ext_fields.contains("indexLastUpdateTimestamp"));
        assert!(response.ext_fields.contains("indexLastUpdatePhyoffset"));
    }
    let mut window = query("TopicA", "k", 32, false);
    window
        .ext_fields
        .insert("endTimestamp", (TEST_WALL_MS - 1).to_string());
    let response = respond(&processor, &peer, window).await;
    assert_eq!(
        response.code,
        response_code::QUERY_NOT_FOUND,
        "stored after the window"
    );
}

#[tokio::test]
async fn query_without_an_index_finds_nothing() {
    let context = test_context(|_, store| store.message_index_enable = false).await;
    let processor = QueryMessageProcessor::new(context.clone());
    let peer = TestPeer::connect(&context);
    put(&context, "TopicA", "k", "", b"m").await;
    let response = respond(&processor, &peer, query("TopicA", "k", 32, false)).await;
    assert_eq!(response.code, response_code::QUERY_NOT_FOUND);
}

#[tokio::test]
async fn query_with_a_bad_header_is_a_system_error() {
    let (_context, processor, peer) = broker().await;
    let mut request = query("TopicA", "k", 32, false);
    request.ext_fields.remove("key");
    let response = respond(&processor, &peer, request).await;
    assert_eq!(response.code, response_code::SYSTEM_ERROR);
    assert!(response.remark.unwrap().contains("`key`"));

    let mut request = query("TopicA", "k", 32, false);
    request.ext_fields.insert("maxNum", "many");
    let response = respond(&processor, &peer, request).await;
    assert_eq!(response.code, response_code::SYSTEM_ERROR);
}

#[tokio::test]
async fn view_message_by_id_returns_the_record_at_the_offset_of_the_message_id() {
    let (context, processor, peer) = broker().await;
    put(&context, "TopicA", "", "", b"first").await;
    let offset = put(&context, "TopicA", "", "", b"second").await;
    let msg_id = crate::store::message::create_message_id(context.store_host, offset);
    let (_, decoded) = decode_message_id(&msg_id).unwrap();

    let response = respond(&processor, &peer, view(decoded)).await;
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(
        response.body,
        context.store.look_message_by_offset(offset).unwrap()
    );
    let messages = decode_records(&response.body);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].msg_id, msg_id);
    assert_eq!(bodies(&response), [&b"second"[..]]);
}

#[tokio::test]
async fn view_message_by_id_answers_system_error_where_there_is_no_record() {
    let (context, processor, peer) = broker().await;
    let offset = put(&context, "TopicA", "", "", b"first").await;
    for missing in [offset + 1, 1 << 40, -1] {
        let response = respond(&processor, &peer, view(missing)).await;
        assert_eq!(response.code, response_code::SYSTEM_ERROR);
        assert_eq!(
            response.remark.as_deref(),
            Some(format!("can not find message by the offset, {missing}").as_str())
        );
    }
    let response = respond(
        &processor,
        &peer,
        RemotingCommand::request(rc::VIEW_MESSAGE_BY_ID),
    )
    .await;
    assert_eq!(response.code, response_code::SYSTEM_ERROR);
    assert!(response.remark.unwrap().contains("`offset`"));
}

#[tokio::test]
async fn other_codes_are_not_supported() {
    let (_context, processor, peer) = broker().await;
    let response = respond(
        &processor,
        &peer,
        RemotingCommand::request(rc::PULL_MESSAGE),
    )
    .await;
    assert_eq!(response.code, response_code::REQUEST_CODE_NOT_SUPPORTED);
}
