//! The transactional producer against the in-process [`FakeBroker`] (ferrocket's own broker
//! refuses half messages), over real loopback TCP and, as the same scenarios, under madsim
//! with the fake broker and the producer on nodes of their own: the half message carries
//! `TRAN_MSG` and `PGROUP` and the prepared flag; each local state ends the transaction with
//! Java's END_TRANSACTION header (commit 0x8, rollback 0xC, unknown 0x0, offsets from the
//! send, `fromTransactionCheck` false); a listener's error or panic ends it UNKNOW with a
//! remark; a half send that fails runs no local transaction and ends nothing, one stored
//! other than SEND_OK rolls back without running it; and the broker's CHECK_TRANSACTION_STATE
//! is answered with the listener's state, `fromTransactionCheck` true, while a check about
//! another group's message is ignored.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrocket_engine::client::api::SendStatus;
use ferrocket_engine::client::instance::ClientInstanceRegistry;
use ferrocket_engine::client::producer::{Message, ProducerConfig, ProducerError};
use ferrocket_engine::client::transaction::{
    ListenerError, LocalTransactionState, TRANSACTION_ID_PROPERTY, TransactionListener,
    TransactionMqProducer,
};
use ferrocket_engine::remoting::response_code;
use ferrocket_engine::store::message::{StoredMessage, encode_properties, property_key, sys_flag};
use ferrocket_net::{SystemClock, TokioNet};
use ferrocket_sim::SimDisk;
use ferrocket_tests::fake_broker::{FAKE_BROKER_NAME, FakeBroker, ReceivedEnd, SendAnswer};
use ferrocket_tests::store::sim_env;

const GROUP: &str = "tx_test_pg";
const TOPIC: &str = "TxTopic";
/// How long an END_TRANSACTION may take to arrive.
const ARRIVAL_MAX: Duration = Duration::from_secs(5);
/// How long to wait before concluding that nothing more arrives.
const QUIET: Duration = Duration::from_millis(500);

/// What the local transaction does, chosen per send.
enum Local {
    /// Ends in this state.
    State(LocalTransactionState),
    /// Fails with an error.
    Fails,
    /// Panics.
    Panics,
}

/// A listener keeping each transaction's state by `UNIQ_KEY`, as an application keeps it in
/// its database, and recording what it was asked.
#[derive(Default)]
struct Ledger {
    states: Mutex<BTreeMap<String, LocalTransactionState>>,
    executed: Mutex<Vec<Message>>,
    checked: Mutex<Vec<StoredMessage>>,
    check_fails: Mutex<bool>,
}

impl Ledger {
    fn set(&self, uniq_key: &str, state: LocalTransactionState) {
        self.states
            .lock()
            .unwrap()
            .insert(uniq_key.to_owned(), state);
    }
}

#[async_trait::async_trait]
impl TransactionListener for Ledger {
    type Arg = Local;

    async fn execute_local_transaction(
        &self,
        message: &Message,
        arg: &Local,
    ) -> Result<LocalTransactionState, ListenerError> {
        self.executed.lock().unwrap().push(message.clone());
        let uniq_key = message.property(property_key::UNIQ_KEY).unwrap_or_default();
        match arg {
            Local::State(state) => {
                self.set(uniq_key, *state);
                Ok(*state)
            }
            Local::Fails => Err("database down".into()),
            Local::Panics => panic!("local transaction bug"),
        }
    }

    async fn check_local_transaction(
        &self,
        message: &StoredMessage,
    ) -> Result<LocalTransactionState, ListenerError> {
        self.checked.lock().unwrap().push(message.clone());
        if *self.check_fails.lock().unwrap() {
            return Err("ledger unreachable".into());
        }
        let uniq_key = message.uniq_key().unwrap_or_default();
        Ok(self
            .states
            .lock()
            .unwrap()
            .get(uniq_key)
            .copied()
            .unwrap_or(LocalTransactionState::Unknow))
    }
}

type Producer = TransactionMqProducer<Ledger>;

/// Starts a transactional producer of [`GROUP`] whose name server is the fake broker at
/// `namesrv`, on the current node.
async fn start_producer(namesrv: String, client_ip: &str, seed: u64) -> Arc<Producer> {
    let mut config = ProducerConfig::new(GROUP, namesrv);
    config.client.client_ip = client_ip.into();
    config
        .client
        .change_instance_name_to_pid(format!("{}#tx-{seed}", std::process::id()));
    let producer = TransactionMqProducer::new(
        &sim_env(&SimDisk::new(), seed),
        Arc::new(ClientInstanceRegistry::new()),
        config,
        Ledger::default(),
    );
    producer.start().await.expect("the producer starts");
    Arc::new(producer)
}

async fn start_broker(bind: SocketAddr) -> Arc<FakeBroker> {
    Arc::new(FakeBroker::start(TokioNet::shared(), SystemClock::shared(), bind).await)
}

/// Runs `scenario` over loopback TCP: the fake broker on a free port, the producer beside it.
#[cfg(not(madsim))]
async fn run<F, Fut>(seed: u64, scenario: F)
where
    F: FnOnce(Arc<FakeBroker>, Arc<Producer>) -> Fut,
    Fut: Future<Output = ()>,
{
    let broker = start_broker("127.0.0.1:0".parse().unwrap()).await;
    let producer = start_producer(broker.addr(), "127.0.0.1", seed).await;
    scenario(broker, producer.clone()).await;
    producer.shutdown().await;
}

/// Runs `scenario` under madsim: the fake broker on node `broker-a-0`, the producer and the
/// scenario on the client node.
#[cfg(madsim)]
async fn run<F, Fut>(seed: u64, scenario: F)
where
    F: FnOnce(Arc<FakeBroker>, Arc<Producer>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let handle = madsim::runtime::Handle::current();
    let broker_node = handle
        .create_node()
        .name("broker-a-0")
        .ip("10.0.2.1".parse().unwrap())
        .build();
    let broker = broker_node
        .spawn(start_broker("10.0.2.1:10911".parse().unwrap()))
        .await
        .unwrap();
    ferrocket_tests::sim_broker::client_node(&handle)
        .spawn(async move {
            let producer = start_producer(broker.addr(), "10.0.3.1", seed).await;
            scenario(broker, producer.clone()).await;
            producer.shutdown().await;
        })
        .await
        .unwrap();
}

/// Declares a test running `scenario` in the build's own way ([`run`]).
macro_rules! scenario_test {
    ($name:ident, $seed:expr, $scenario:ident) => {
        #[cfg_attr(not(madsim), tokio::test)]
        #[cfg_attr(madsim, madsim::test)]
        async fn $name() {
            run($seed, $scenario).await;
        }
    };
}

/// Waits until `count` END_TRANSACTIONs arrived and returns the last.
async fn nth_end(broker: &FakeBroker, count: usize) -> ReceivedEnd {
    let ends = broker.wait_end_transactions(count, ARRIVAL_MAX).await;
    assert_eq!(ends.len(), count, "END_TRANSACTIONs: {ends:#?}");
    ends.last().unwrap().clone()
}

scenario_test!(
    each_local_state_ends_the_half_message_with_javas_header,
    41,
    each_local_state
);

async fn each_local_state(broker: Arc<FakeBroker>, producer: Arc<Producer>) {
    let cases = [
        (
            Local::State(LocalTransactionState::CommitMessage),
            LocalTransactionState::CommitMessage,
            0x8,
            None,
        ),
        (
            Local::State(LocalTransactionState::RollbackMessage),
            LocalTransactionState::RollbackMessage,
            0xC,
            None,
        ),
        (
            Local::State(LocalTransactionState::Unknow),
            LocalTransactionState::Unknow,
            0x0,
            None,
        ),
        (
            Local::Fails,
            LocalTransactionState::Unknow,
            0x0,
            Some("executeLocalTransactionBranch exception: database down"),
        ),
        (
            Local::Panics,
            LocalTransactionState::Unknow,
            0x0,
            Some("local transaction bug"),
        ),
    ];
    for (index, (local, state, code, remark)) in cases.into_iter().enumerate() {
        let mut message =
            Message::new(TOPIC, format!("order-{index}")).with_property(property_key::DELAY, "3");
        let sent = producer
            .send_message_in_transaction(&mut message, &local)
            .await
            .unwrap();
        assert_eq!(sent.local_transaction_state, state, "case {index}");
        assert_eq!(sent.send_result.status, SendStatus::SendOk);
        let uniq_key = message.property(property_key::UNIQ_KEY).unwrap().to_owned();
        assert_eq!(sent.send_result.msg_id.as_deref(), Some(uniq_key.as_str()));

        // The half message as the broker got it.
        let half = broker.sends()[index].clone();
        assert_eq!(half.property(property_key::TRAN_MSG), Some("true"));
        assert_eq!(half.property(property_key::PGROUP), Some(GROUP));
        assert_eq!(half.property(property_key::DELAY), None, "no delay");
        assert_eq!(
            half.header.sys_flag & sys_flag::TRANSACTION_TYPE_MASK,
            sys_flag::TRANSACTION_PREPARED_TYPE
        );

        // What the local transaction saw: the UNIQ_KEY and the broker's transaction id.
        let executed = producer.listener().executed.lock().unwrap()[index].clone();
        assert_eq!(
            executed.property(property_key::UNIQ_KEY),
            Some(uniq_key.as_str())
        );
        assert_eq!(
            executed.property(TRANSACTION_ID_PROPERTY),
            Some(uniq_key.as_str())
        );

        let end = nth_end(&broker, index + 1).await;
        assert!(end.oneway, "END_TRANSACTION is oneway");
        let header = &end.header;
        assert_eq!(header.producer_group, GROUP);
        assert_eq!(header.commit_log_offset, half.commit_log_offset);
        assert_eq!(header.tran_state_table_offset, half.queue_offset);
        assert_eq!(header.commit_or_rollback, code, "case {index}");
        assert_eq!(header.from_transaction_check, Some(false));
        assert_eq!(header.msg_id, uniq_key);
        assert_eq!(header.transaction_id.as_deref(), Some(uniq_key.as_str()));
        assert_eq!(header.broker_name.as_deref(), Some(FAKE_BROKER_NAME));
        match remark {
            None => assert_eq!(end.remark, None, "case {index}"),
            Some(expected) => assert!(
                end.remark.as_deref().unwrap_or_default().contains(expected),
                "case {index}: {:?}",
                end.remark
            ),
        }
    }
}

scenario_test!(
    a_failed_or_not_ok_half_send_never_runs_the_local_transaction,
    42,
    failed_or_not_ok_half_send
);

async fn failed_or_not_ok_half_send(broker: Arc<FakeBroker>, producer: Arc<Producer>) {
    broker.answer_sends(SendAnswer::Refused(response_code::NO_PERMISSION));
    let mut message = Message::new(TOPIC, "refused");
    let error = producer
        .send_message_in_transaction(
            &mut message,
            &Local::State(LocalTransactionState::CommitMessage),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProducerError::SendFailed { .. }),
        "{error:?}"
    );
    assert_eq!(error.response_code(), Some(response_code::NO_PERMISSION));
    assert_eq!(broker.sends().len(), 3, "retried like any sync send");
    tokio::time::sleep(QUIET).await;
    assert!(broker.end_transactions().is_empty(), "nothing to end");
    assert!(producer.listener().executed.lock().unwrap().is_empty());

    broker.answer_sends(SendAnswer::Stored(response_code::FLUSH_DISK_TIMEOUT));
    let mut message = Message::new(TOPIC, "not flushed");
    let sent = producer
        .send_message_in_transaction(
            &mut message,
            &Local::State(LocalTransactionState::CommitMessage),
        )
        .await
        .unwrap();
    assert_eq!(sent.send_result.status, SendStatus::FlushDiskTimeout);
    assert_eq!(
        sent.local_transaction_state,
        LocalTransactionState::RollbackMessage
    );
    assert!(
        producer.listener().executed.lock().unwrap().is_empty(),
        "a half message not stored OK is rolled back without running the local transaction"
    );
    let end = nth_end(&broker, 1).await;
    assert_eq!(end.header.commit_or_rollback, 0xC);
    assert_eq!(
        end.header.commit_log_offset,
        broker.sends()[3].commit_log_offset
    );
}

scenario_test!(
    a_check_back_is_answered_with_the_listeners_state_and_other_groups_are_ignored,
    43,
    check_back
);

async fn check_back(broker: Arc<FakeBroker>, producer: Arc<Producer>) {
    let mut message = Message::new(TOPIC, "pending order").with_tags("TagA");
    let sent = producer
        .send_message_in_transaction(&mut message, &Local::State(LocalTransactionState::Unknow))
        .await
        .unwrap();
    assert_eq!(sent.local_transaction_state, LocalTransactionState::Unknow);
    assert_eq!(nth_end(&broker, 1).await.header.commit_or_rollback, 0x0);
    let half = broker.sends()[0].clone();
    let uniq_key = half.property(property_key::UNIQ_KEY).unwrap().to_owned();

    // The local transaction committed since; the broker checks.
    producer
        .listener()
        .set(&uniq_key, LocalTransactionState::CommitMessage);
    assert_eq!(broker.check_transaction_state(&half).await.unwrap(), 1);
    let end = nth_end(&broker, 2).await;
    let header = &end.header;
    assert_eq!(header.commit_or_rollback, 0x8);
    assert_eq!(header.from_transaction_check, Some(true));
    assert_eq!(header.producer_group, GROUP);
    assert_eq!(header.commit_log_offset, half.commit_log_offset);
    assert_eq!(header.tran_state_table_offset, half.queue_offset);
    assert_eq!(header.msg_id, uniq_key);
    assert_eq!(header.transaction_id.as_deref(), Some(uniq_key.as_str()));
    assert_eq!(header.broker_name.as_deref(), Some(FAKE_BROKER_NAME));
    assert!(end.oneway);
    assert_eq!(end.remark, None);
    let checked = producer.listener().checked.lock().unwrap()[0].clone();
    assert_eq!(checked.topic, TOPIC);
    assert_eq!(checked.body.as_deref(), Some(&b"pending order"[..]));
    assert_eq!(checked.tags(), Some("TagA"));
    assert_eq!(checked.commit_log_offset, half.commit_log_offset);

    // A failing check is answered UNKNOW with the error in the remark.
    *producer.listener().check_fails.lock().unwrap() = true;
    broker.check_transaction_state(&half).await.unwrap();
    let end = nth_end(&broker, 3).await;
    assert_eq!(end.header.commit_or_rollback, 0x0);
    assert_eq!(end.header.from_transaction_check, Some(true));
    assert!(
        end.remark
            .as_deref()
            .unwrap_or_default()
            .contains("checkLocalTransactionState Exception: ledger unreachable"),
        "{:?}",
        end.remark
    );

    // A half message of a group this client does not produce for is not answered.
    let mut foreign = half.clone();
    let mut properties = foreign
        .header
        .properties
        .clone()
        .map(|encoded| ferrocket_engine::store::message::decode_properties(&encoded));
    if let Some(properties) = properties.as_mut() {
        properties.insert(property_key::PGROUP.into(), "another_group".into());
    }
    foreign.header.properties = properties.as_ref().map(encode_properties);
    let checks_before = producer.listener().checked.lock().unwrap().len();
    broker.check_transaction_state(&foreign).await.unwrap();
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        broker.end_transactions().len(),
        3,
        "no answer for another group"
    );
    assert_eq!(
        producer.listener().checked.lock().unwrap().len(),
        checks_before
    );
}
