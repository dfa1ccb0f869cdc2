//! An in-process stand-in for a name server and the master of one broker group, for client
//! tests of requests ferrocket's broker does not serve yet (transactional half messages).
//!
//! One remoting server plays both roles: it routes every topic to itself (broker group
//! [`FAKE_BROKER_NAME`], four queues), accepts heartbeats and unregistrations, answers
//! sends as the test says ([`SendAnswer`]) without storing anything, records every send and
//! every END_TRANSACTION, and can ask its clients CHECK_TRANSACTION_STATE about a send it
//! received, with the half message encoded in the body as a broker sends it. Offsets are
//! handed out in arrival order: commit-log offsets 1000 apart, queue offsets counting up.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use ferrocket_engine::clock::{ClockExt, SharedClock};
use ferrocket_engine::net::SharedNet;
use ferrocket_engine::protocol::route::{BrokerData, QueueData};
use ferrocket_engine::protocol::{TopicRouteData, to_json};
use ferrocket_engine::remoting::headers::{
    CheckTransactionStateRequestHeader, EndTransactionRequestHeader, SendMessageRequestHeader,
    SendMessageRequestHeaderV2, SendMessageResponseHeader,
};
use ferrocket_engine::remoting::transport::{
    Channel, ExecutorConfig, ProcessError, ProcessorTable, RemotingError, RemotingServer,
    RequestProcessor, ServerConfig,
};
use ferrocket_engine::remoting::{RemotingCommand, request_code, response_code};
use ferrocket_engine::store::message::{
    MessageInner, create_message_id, encode_record, find_property, property_key,
};

/// The broker group the fake broker serves.
pub const FAKE_BROKER_NAME: &str = "broker-a";
/// Write (and read) queues of every topic on the fake broker.
pub const FAKE_QUEUE_COUNT: i32 = 4;
/// The distance between the commit-log offsets of two sends.
const RECORD_SPACING: i64 = 1000;

/// How the fake broker answers sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendAnswer {
    /// Stored, with this code (SUCCESS, FLUSH_DISK_TIMEOUT, FLUSH_SLAVE_TIMEOUT or
    /// SLAVE_NOT_AVAILABLE) and a send response header.
    Stored(i32),
    /// Refused with this code.
    Refused(i32),
}

/// A send the fake broker received.
#[derive(Debug, Clone)]
pub struct ReceivedSend {
    /// Its header.
    pub header: SendMessageRequestHeader,
    /// Its body, as sent.
    pub body: Bytes,
    /// The commit-log offset it was given (also when refused).
    pub commit_log_offset: i64,
    /// The queue offset it was given.
    pub queue_offset: i64,
}

impl ReceivedSend {
    /// The value of property `key` of the sent message.
    pub fn property(&self, key: &str) -> Option<&str> {
        find_property(self.header.properties.as_deref().unwrap_or_default(), key)
    }
}

/// An END_TRANSACTION the fake broker received.
#[derive(Debug, Clone)]
pub struct ReceivedEnd {
    /// Its header.
    pub header: EndTransactionRequestHeader,
    /// Its remark.
    pub remark: Option<String>,
    /// Whether it came oneway.
    pub oneway: bool,
}

struct State {
    /// The server's address, set once it is bound (before any client can know it).
    addr: OnceLock<SocketAddr>,
    answer: Mutex<SendAnswer>,
    sends: Mutex<Vec<ReceivedSend>>,
    ends: Mutex<Vec<ReceivedEnd>>,
    next_offset: AtomicI64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl State {
    fn addr(&self) -> SocketAddr {
        *self
            .addr
            .get()
            .expect("the address is set before any client knows it")
    }

    fn route(&self) -> TopicRouteData {
        let mut broker = BrokerData::new("DefaultCluster", FAKE_BROKER_NAME);
        broker.broker_addrs.insert(0, self.addr().to_string());
        TopicRouteData {
            broker_datas: vec![broker],
            queue_datas: vec![QueueData {
                broker_name: FAKE_BROKER_NAME.into(),
                perm: 6,
                read_queue_nums: FAKE_QUEUE_COUNT,
                topic_sys_flag: 0,
                write_queue_nums: FAKE_QUEUE_COUNT,
            }],
            ..TopicRouteData::default()
        }
    }

    fn send(&self, request: &RemotingCommand) -> Result<RemotingCommand, ProcessError> {
        let header: SendMessageRequestHeader = if request.code == request_code::SEND_MESSAGE_V2 {
            request
                .decode_header::<SendMessageRequestHeaderV2>()?
                .into()
        } else {
            request.decode_header()?
        };
        let index = self.next_offset.fetch_add(1, Ordering::SeqCst);
        let received = ReceivedSend {
            header,
            body: request.body.clone(),
            commit_log_offset: (index + 1) * RECORD_SPACING,
            queue_offset: index,
        };
        let answer = *lock(&self.answer);
        let response = match answer {
            SendAnswer::Refused(code) => {
                RemotingCommand::error_to(request, code, "refused by the fake broker")
            }
            SendAnswer::Stored(code) => {
                let answer = SendMessageResponseHeader {
                    msg_id: create_message_id(self.addr(), received.commit_log_offset),
                    queue_id: received.header.queue_id,
                    queue_offset: received.queue_offset,
                    transaction_id: received.property(property_key::UNIQ_KEY).map(str::to_owned),
                    msg_region: None,
                    trace_on: None,
                };
                RemotingCommand::response_to(request, code, None).with_header(&answer)
            }
        };
        lock(&self.sends).push(received);
        Ok(response)
    }
}

struct FakeProcessor {
    state: Arc<State>,
}

#[async_trait::async_trait]
impl RequestProcessor for FakeProcessor {
    async fn process(
        &self,
        _channel: &Channel,
        request: RemotingCommand,
    ) -> Result<Option<RemotingCommand>, ProcessError> {
        match request.code {
            request_code::GET_ROUTEINFO_BY_TOPIC => Ok(Some(
                RemotingCommand::success_to(&request).with_body(to_json(&self.state.route())),
            )),
            request_code::HEART_BEAT | request_code::UNREGISTER_CLIENT => {
                Ok(Some(RemotingCommand::success_to(&request)))
            }
            request_code::SEND_MESSAGE | request_code::SEND_MESSAGE_V2 => {
                self.state.send(&request).map(Some)
            }
            request_code::END_TRANSACTION => {
                lock(&self.state.ends).push(ReceivedEnd {
                    header: request.decode_header()?,
                    remark: request.remark.clone(),
                    oneway: request.is_oneway(),
                });
                Ok(None)
            }
            code => Err(ProcessError::new(
                response_code::REQUEST_CODE_NOT_SUPPORTED,
                format!("the fake broker does not serve {code}"),
            )),
        }
    }
}

/// The fake name server and broker. See the module docs.
pub struct FakeBroker {
    server: RemotingServer,
    state: Arc<State>,
    clock: SharedClock,
}

impl FakeBroker {
    /// Starts it on `bind` (port 0 picks a free one), answering sends with SUCCESS.
    pub async fn start(net: SharedNet, clock: SharedClock, bind: SocketAddr) -> Self {
        let state = Arc::new(State {
            addr: OnceLock::new(),
            answer: Mutex::new(SendAnswer::Stored(response_code::SUCCESS)),
            sends: Mutex::default(),
            ends: Mutex::default(),
            next_offset: AtomicI64::new(0),
        });
        let table = ProcessorTable::new().register(
            &[
                request_code::GET_ROUTEINFO_BY_TOPIC,
                request_code::HEART_BEAT,
                request_code::UNREGISTER_CLIENT,
                request_code::SEND_MESSAGE,
                request_code::SEND_MESSAGE_V2,
                request_code::END_TRANSACTION,
            ],
            Arc::new(FakeProcessor {
                state: state.clone(),
            }),
            ExecutorConfig::new(4, 1024),
        );
        let server =
            RemotingServer::start(net, clock.clone(), ServerConfig::new(bind), table, None)
                .await
                .expect("the fake broker binds");
        state
            .addr
            .set(server.local_addr())
            .expect("the address is set once");
        Self {
            server,
            state,
            clock,
        }
    }

    /// Its address, `host:port`: the name-server address and the broker address both.
    pub fn addr(&self) -> String {
        self.state.addr().to_string()
    }

    /// Answers later sends with `answer`.
    pub fn answer_sends(&self, answer: SendAnswer) {
        *lock(&self.state.answer) = answer;
    }

    /// Every send received so far, in arrival order.
    pub fn sends(&self) -> Vec<ReceivedSend> {
        lock(&self.state.sends).clone()
    }

    /// Every END_TRANSACTION received so far, in arrival order.
    pub fn end_transactions(&self) -> Vec<ReceivedEnd> {
        lock(&self.state.ends).clone()
    }

    /// The END_TRANSACTIONs once at least `count` arrived, polling every 10 ms for at most
    /// `max`; whatever arrived by then otherwise.
    pub async fn wait_end_transactions(&self, count: usize, max: Duration) -> Vec<ReceivedEnd> {
        let deadline = self.clock.instant() + max;
        loop {
            let ends = self.end_transactions();
            if ends.len() >= count || self.clock.instant() >= deadline {
                return ends;
            }
            self.clock.sleep(Duration::from_millis(10)).await;
        }
    }

    /// The offset message id of a record at `commit_log_offset` on this broker.
    pub fn offset_msg_id(&self, commit_log_offset: i64) -> String {
        create_message_id(self.state.addr(), commit_log_offset)
    }

    /// Sends CHECK_TRANSACTION_STATE about `send` (oneway) to every connected client, as a
    /// broker checking a half message does: the half message as a commit-log record in the
    /// body; offsets, `UNIQ_KEY` as msg id and transaction id, offset id and broker name in
    /// the header. Returns how many clients it was sent to.
    pub async fn check_transaction_state(
        &self,
        send: &ReceivedSend,
    ) -> Result<usize, RemotingError> {
        let properties = send.header.properties.clone().unwrap_or_default();
        let message = MessageInner {
            topic: send.header.topic.clone(),
            queue_id: send.header.queue_id,
            flag: send.header.flag,
            body: send.body.clone(),
            properties,
            tags_code: 0,
            sys_flag: send.header.sys_flag,
            born_timestamp: send.header.born_timestamp,
            born_host: self.state.addr(),
            store_host: self.state.addr(),
            store_timestamp: send.header.born_timestamp,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        };
        let mut body = Vec::new();
        encode_record(
            &message,
            send.queue_offset,
            send.commit_log_offset,
            &mut body,
        )
        .expect("a received message encodes as a record");
        let uniq_key = send.property(property_key::UNIQ_KEY).map(str::to_owned);
        let header = CheckTransactionStateRequestHeader {
            tran_state_table_offset: send.queue_offset,
            commit_log_offset: send.commit_log_offset,
            msg_id: uniq_key.clone(),
            transaction_id: uniq_key,
            offset_msg_id: Some(self.offset_msg_id(send.commit_log_offset)),
            broker_name: Some(FAKE_BROKER_NAME.into()),
        };
        let request =
            RemotingCommand::request_with_header(request_code::CHECK_TRANSACTION_STATE, &header)
                .with_body(body);
        let channels = self.server.channels();
        for channel in &channels {
            self.server
                .invoke_oneway(channel, request.clone(), Duration::from_secs(3))
                .await?;
        }
        Ok(channels.len())
    }
}
