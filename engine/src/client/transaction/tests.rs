//! Unit tests of the transaction decisions that need no broker: the state codes, the
//! END_TRANSACTION headers of a half send and of a check-back, and how a listener's error or
//! panic is answered.

use std::net::SocketAddr;

use super::*;
use crate::protocol::heartbeat::MessageQueue;
use crate::store::message::create_message_id;

fn store_host() -> SocketAddr {
    "10.0.0.7:10911".parse().unwrap()
}

fn send_result(offset_msg_id: String) -> SendResult {
    SendResult {
        status: SendStatus::SendOk,
        msg_id: Some("0A00000100002A9F0000000000000001".into()),
        offset_msg_id,
        queue: MessageQueue {
            broker_name: "broker-a".into(),
            queue_id: 2,
            topic: "TopicTx".into(),
        },
        queue_offset: 17,
        transaction_id: Some("TX-1".into()),
        region_id: "DefaultRegion".into(),
        trace_on: true,
    }
}

#[test]
fn each_state_maps_to_its_transaction_type_and_back() {
    let cases = [
        (LocalTransactionState::CommitMessage, 0x8),
        (LocalTransactionState::RollbackMessage, 0xC),
        (LocalTransactionState::Unknow, 0x0),
    ];
    for (state, code) in cases {
        assert_eq!(state.transaction_type(), code, "{state:?}");
        assert_eq!(
            LocalTransactionState::from_transaction_type(code),
            Some(state)
        );
    }
    assert_eq!(
        LocalTransactionState::from_transaction_type(sys_flag::TRANSACTION_PREPARED_TYPE),
        None,
        "the prepared type is not an end state"
    );
}

#[test]
fn the_end_of_a_half_send_names_the_half_message_by_offsets_and_ids() {
    let result = send_result(create_message_id(store_host(), 123_456));
    let header =
        end_transaction_header("tx_pg", &result, LocalTransactionState::RollbackMessage).unwrap();
    assert_eq!(header.producer_group, "tx_pg");
    assert_eq!(header.commit_log_offset, 123_456);
    assert_eq!(header.tran_state_table_offset, 17);
    assert_eq!(header.commit_or_rollback, 0xC);
    assert_eq!(header.from_transaction_check, Some(false));
    assert_eq!(header.msg_id, "0A00000100002A9F0000000000000001");
    assert_eq!(header.transaction_id.as_deref(), Some("TX-1"));
    assert_eq!(header.broker_name.as_deref(), Some("broker-a"));
}

#[test]
fn without_an_offset_id_the_msg_id_gives_the_offset_and_a_bad_id_is_an_error() {
    let mut result = send_result(String::new());
    result.msg_id = Some(create_message_id(store_host(), 99));
    let header = end_transaction_header("tx_pg", &result, LocalTransactionState::Unknow).unwrap();
    assert_eq!(header.commit_log_offset, 99);
    assert_eq!(header.commit_or_rollback, 0);

    let result = send_result("not-an-id".into());
    assert!(
        end_transaction_header("tx_pg", &result, LocalTransactionState::CommitMessage).is_err()
    );
}

fn check_request(properties: &str) -> TransactionCheckRequest {
    TransactionCheckRequest {
        broker_addr: "10.0.0.7:10911".into(),
        header: CheckTransactionStateRequestHeader {
            tran_state_table_offset: 5,
            commit_log_offset: 4096,
            msg_id: Some("OFFSET".into()),
            transaction_id: Some("TX-9".into()),
            offset_msg_id: None,
            broker_name: Some("broker-a".into()),
        },
        message: StoredMessage {
            store_size: 0,
            body_crc: 0,
            queue_id: 0,
            flag: 0,
            queue_offset: 5,
            commit_log_offset: 4096,
            sys_flag: sys_flag::TRANSACTION_PREPARED_TYPE,
            born_timestamp: 0,
            born_host: store_host(),
            store_timestamp: 0,
            store_host: store_host(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: None,
            topic: "TopicTx".into(),
            properties: properties.into(),
            msg_id: create_message_id(store_host(), 4096),
        },
    }
}

#[test]
fn a_check_answer_copies_the_check_and_names_the_message_by_its_uniq_key() {
    let request = check_request("UNIQ_KEY\u{1}U-1\u{2}PGROUP\u{1}tx_pg\u{2}");
    let header = check_answer_header("tx_pg", &request, LocalTransactionState::CommitMessage);
    assert_eq!(header.commit_log_offset, 4096);
    assert_eq!(header.tran_state_table_offset, 5);
    assert_eq!(header.commit_or_rollback, 0x8);
    assert_eq!(header.from_transaction_check, Some(true));
    assert_eq!(header.msg_id, "U-1");
    assert_eq!(header.transaction_id.as_deref(), Some("TX-9"));
    assert_eq!(header.broker_name.as_deref(), Some("broker-a"));

    let request = check_request("PGROUP\u{1}tx_pg\u{2}");
    let header = check_answer_header("tx_pg", &request, LocalTransactionState::Unknow);
    assert_eq!(
        header.msg_id, request.message.msg_id,
        "without a UNIQ_KEY, the offset id"
    );
}

#[test]
fn a_listener_error_or_panic_is_unknow_with_a_description() {
    let ok = futures::executor::block_on(call_listener(async {
        Ok(LocalTransactionState::RollbackMessage)
    }));
    assert_eq!(ok, (LocalTransactionState::RollbackMessage, None));

    let failed = futures::executor::block_on(call_listener(async {
        Err::<LocalTransactionState, ListenerError>("database down".into())
    }));
    assert_eq!(
        failed,
        (LocalTransactionState::Unknow, Some("database down".into()))
    );

    let panicked = futures::executor::block_on(call_listener(async {
        if true {
            panic!("listener bug");
        }
        Ok(LocalTransactionState::CommitMessage)
    }));
    assert_eq!(panicked.0, LocalTransactionState::Unknow);
    assert!(
        panicked.1.as_deref().unwrap().contains("listener bug"),
        "{panicked:?}"
    );
}
