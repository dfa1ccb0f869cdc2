//! The broker's calls to the name servers (`BrokerOuterAPI`): register with all of them,
//! unregister on shutdown, ask whether a registration is stale, and the driver that
//! re-registers periodically.
//!
//! Registration fans out to every name server concurrently (as 4.7+ does) and each name
//! server's outcome is reported separately: one unreachable name server must not keep a
//! broker out of the others. The periodic driver registers at start and then every
//! `registerNameServerPeriod` (clamped to 10–60 s, default 30 s); when `forceRegister` is off
//! it first asks QUERY_DATA_VERSION and skips name servers that are up to date.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use crate::clock::{ClockExt, SharedClock};
use crate::protocol::{DataVersion, KvTable, RegisterBrokerBody, from_json, to_json};
use crate::remoting::headers::{
    QueryDataVersionRequestHeader, QueryDataVersionResponseHeader, RegisterBrokerRequestHeader,
    RegisterBrokerResponseHeader, UnRegisterBrokerRequestHeader,
};
use crate::remoting::transport::{RemotingClient, RemotingError};
use crate::remoting::{CommandHeader, RemotingCommand, request_code, response_code};

/// Who a broker is, as it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerIdentity {
    /// `brokerClusterName`.
    pub cluster_name: String,
    /// `brokerName`: the group a master and its slaves share.
    pub broker_name: String,
    /// `brokerId`: 0 for the master.
    pub broker_id: i64,
    /// The `ip:port` clients reach this broker at.
    pub broker_addr: String,
    /// The `ip:port` slaves replicate from.
    pub ha_server_addr: String,
}

/// What one name server answered a registration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterOutcome {
    /// The master's address (for a slave).
    pub master_addr: Option<String>,
    /// The master's HA address (for a slave).
    pub ha_server_addr: Option<String>,
    /// The name server's ORDER_TOPIC_CONFIG settings.
    pub order_topic_config: KvTable,
}

/// Why a call to one name server failed.
#[derive(Debug, thiserror::Error)]
pub enum OuterApiError {
    /// The name server could not be reached or did not answer in time.
    #[error(transparent)]
    Remoting(#[from] RemotingError),
    /// The name server answered with an error code.
    #[error("name server answered code {code}: {remark}")]
    Refused {
        /// The response code.
        code: i32,
        /// The remark.
        remark: String,
    },
    /// The answer was malformed.
    #[error("malformed answer from the name server: {0}")]
    Malformed(String),
}

/// The broker's client of the name servers.
#[derive(Debug, Clone)]
pub struct BrokerOuterApi {
    client: Arc<RemotingClient>,
    /// Per-call timeout (`registerBrokerTimeoutMills`, 6 s).
    pub timeout: Duration,
    /// Whether to send the zlib body form (`compressedRegister`).
    pub compressed: bool,
}

impl BrokerOuterApi {
    /// A client over `client`, with Java's defaults.
    pub fn new(client: Arc<RemotingClient>) -> Self {
        Self {
            client,
            timeout: Duration::from_secs(6),
            compressed: false,
        }
    }

    /// Registers with every name server in `namesrv_addrs` at once; one result per address.
    pub async fn register_broker_all(
        &self,
        namesrv_addrs: &[String],
        identity: &BrokerIdentity,
        body: &RegisterBrokerBody,
    ) -> Vec<(String, Result<RegisterOutcome, OuterApiError>)> {
        let bytes = if self.compressed {
            body.encode_compressed()
        } else {
            body.encode()
        };
        let header = RegisterBrokerRequestHeader {
            broker_name: identity.broker_name.clone(),
            broker_addr: identity.broker_addr.clone(),
            cluster_name: identity.cluster_name.clone(),
            ha_server_addr: identity.ha_server_addr.clone(),
            broker_id: identity.broker_id,
            compressed: Some(self.compressed),
            body_crc32: Some(crate::namesrv::processor::crc32_masked(&bytes)),
        };
        let request = RemotingCommand::request_with_header(request_code::REGISTER_BROKER, &header)
            .with_body(bytes);
        let calls = namesrv_addrs.iter().map(|addr| {
            let request = request.clone();
            async move {
                let outcome = self
                    .call(addr, request)
                    .await
                    .and_then(|response| parse_register_response(&response));
                (addr.clone(), outcome)
            }
        });
        join_all(calls).await
    }

    /// Unregisters from every name server; failures are logged (the name servers expire the
    /// broker anyway).
    pub async fn unregister_broker_all(&self, namesrv_addrs: &[String], identity: &BrokerIdentity) {
        let header = UnRegisterBrokerRequestHeader {
            broker_name: identity.broker_name.clone(),
            broker_addr: identity.broker_addr.clone(),
            cluster_name: identity.cluster_name.clone(),
            broker_id: identity.broker_id,
        };
        let request =
            RemotingCommand::request_with_header(request_code::UNREGISTER_BROKER, &header);
        let calls = namesrv_addrs.iter().map(|addr| {
            let request = request.clone();
            async move {
                if let Err(error) = self.call(addr, request).await {
                    tracing::warn!(%addr, %error, "unregister from name server failed");
                }
            }
        });
        join_all(calls).await;
    }

    /// Whether the name server at `addr` holds a stale or no registration of this broker
    /// (QUERY_DATA_VERSION). An unreachable name server counts as stale.
    pub async fn need_register(
        &self,
        addr: &str,
        identity: &BrokerIdentity,
        data_version: &DataVersion,
    ) -> bool {
        let header = QueryDataVersionRequestHeader {
            broker_name: identity.broker_name.clone(),
            broker_addr: identity.broker_addr.clone(),
            cluster_name: identity.cluster_name.clone(),
            broker_id: identity.broker_id,
        };
        let request =
            RemotingCommand::request_with_header(request_code::QUERY_DATA_VERSION, &header)
                .with_body(to_json(data_version));
        match self.call(addr, request).await {
            Ok(response) => QueryDataVersionResponseHeader::decode(&response.ext_fields)
                .map(|h| h.changed)
                .unwrap_or(true),
            Err(_) => true,
        }
    }

    async fn call(
        &self,
        addr: &str,
        request: RemotingCommand,
    ) -> Result<RemotingCommand, OuterApiError> {
        let response = self.client.invoke(addr, request, self.timeout).await?;
        if response.code == response_code::SUCCESS {
            Ok(response)
        } else {
            Err(OuterApiError::Refused {
                code: response.code,
                remark: response.remark.unwrap_or_default(),
            })
        }
    }
}

fn parse_register_response(response: &RemotingCommand) -> Result<RegisterOutcome, OuterApiError> {
    let header = RegisterBrokerResponseHeader::decode(&response.ext_fields)
        .map_err(|e| OuterApiError::Malformed(e.to_string()))?;
    let order_topic_config = if response.body.is_empty() {
        KvTable::default()
    } else {
        from_json("KVTable", &response.body).map_err(|e| OuterApiError::Malformed(e.to_string()))?
    };
    Ok(RegisterOutcome {
        master_addr: header.master_addr,
        ha_server_addr: header.ha_server_addr,
        order_topic_config,
    })
}

/// Settings of the periodic registration.
#[derive(Debug, Clone)]
pub struct RegistrationSchedule {
    /// `registerNameServerPeriod`, clamped to 10–60 s.
    pub period: Duration,
    /// `forceRegister`: register in full every period instead of asking first.
    pub force_register: bool,
}

impl RegistrationSchedule {
    /// A schedule from Java's `registerNameServerPeriod` (ms) and `forceRegister`.
    pub fn new(register_name_server_period_ms: u64, force_register: bool) -> Self {
        Self {
            period: Duration::from_millis(register_name_server_period_ms.clamp(10_000, 60_000)),
            force_register,
        }
    }
}

/// Registers now, then every period and whenever `changed` completes, forever (cancel by
/// aborting the task). `body` supplies the broker's current topics each time; `on_outcome`
/// sees every result (a slave learns its master's address from it); `on_round` sees the data
/// version of each round's body once every name server has been asked (or found up to date).
#[allow(clippy::too_many_arguments)]
pub async fn run_periodic_registration<Changed, ChangedFuture>(
    api: BrokerOuterApi,
    clock: SharedClock,
    namesrv_addrs: Vec<String>,
    identity: BrokerIdentity,
    schedule: RegistrationSchedule,
    body: impl Fn() -> RegisterBrokerBody + Send + Sync,
    on_outcome: impl Fn(&str, &Result<RegisterOutcome, OuterApiError>) + Send + Sync,
    on_round: impl Fn(&DataVersion) + Send + Sync,
    changed: Changed,
) where
    Changed: Fn() -> ChangedFuture,
    ChangedFuture: std::future::Future<Output = ()>,
{
    loop {
        let current = body();
        let mut targets = namesrv_addrs.clone();
        if !schedule.force_register {
            let version = current.topic_config_serialize_wrapper.data_version;
            let mut stale = Vec::new();
            for addr in targets {
                if api.need_register(&addr, &identity, &version).await {
                    stale.push(addr);
                }
            }
            targets = stale;
        }
        for (addr, outcome) in api.register_broker_all(&targets, &identity, &current).await {
            if let Err(error) = &outcome {
                tracing::warn!(%addr, %error, "register to name server failed");
            }
            on_outcome(&addr, &outcome);
        }
        on_round(&current.topic_config_serialize_wrapper.data_version);
        tokio::select! {
            // Fixed polling order: tokio's random order draws from an RNG outside the
            // simulator's control and would make simulated runs irreproducible.
            biased;
            () = clock.sleep(schedule.period) => {}
            () = changed() => {}
        }
    }
}
