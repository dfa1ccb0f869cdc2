//! Client configuration (Java's `ClientConfig`): where the name servers are, who this client
//! is, and how often the shared client instance refreshes routes, heartbeats and persists
//! consumer offsets.
//!
//! Producers and consumers whose configs give the same [`client_id`](ClientConfig::client_id)
//! share one [`ClientInstance`](super::instance::ClientInstance): one connection per broker,
//! one set of periodic tasks. The engine reads no environment, so what Java takes from system
//! properties (`rocketmq.namesrv.addr`, `rocketmq.client.name`) and from the host (the local
//! IP, the process id) is handed in by the caller.

use std::time::Duration;

use crate::remoting::LanguageCode;
use crate::remoting::transport::ClientConfig as RemotingClientConfig;

/// The instance name a config starts with (`ClientConfig.instanceName` without the
/// `rocketmq.client.name` property); producers and clustering consumers replace it with a
/// process-unique value ([`ClientConfig::change_instance_name_to_pid`]).
pub const DEFAULT_INSTANCE_NAME: &str = "DEFAULT";

/// Settings shared by producers and consumers (`ClientConfig.java`).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `namesrvAddr`: name-server addresses, `host:port` separated by `;`. `None` means
    /// unknown: Java would then ask an HTTP address server, which this client does not do,
    /// so every name-server call fails until an address is set.
    pub namesrv_addr: Option<String>,
    /// `clientIP`: the first part of the client id. Java defaults it to a local address it
    /// picks from the host's interfaces; the engine cannot look, so the caller sets it.
    pub client_ip: String,
    /// `instanceName`: the second part of the client id.
    pub instance_name: String,
    /// `unitName`: appended to the client id when not blank.
    pub unit_name: Option<String>,
    /// `pollNameServerInterval`: how often every used topic's route is fetched again.
    pub poll_name_server_interval: Duration,
    /// `heartbeatBrokerInterval`: how often every known broker gets a heartbeat.
    pub heartbeat_broker_interval: Duration,
    /// `persistConsumerOffsetInterval`: how often consumers persist their offsets.
    pub persist_consumer_offset_interval: Duration,
    /// `language`: the language code put on requests (Java clients say `JAVA`).
    pub language: LanguageCode,
    /// `mqClientApiTimeout`: the timeout of the instance's own calls (route fetches,
    /// heartbeats, unregistrations).
    pub mq_client_api_timeout: Duration,
    /// The remoting client's settings (`NettyClientConfig`).
    pub remoting: RemotingClientConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            namesrv_addr: None,
            client_ip: "127.0.0.1".into(),
            instance_name: DEFAULT_INSTANCE_NAME.into(),
            unit_name: None,
            poll_name_server_interval: Duration::from_secs(30),
            heartbeat_broker_interval: Duration::from_secs(30),
            persist_consumer_offset_interval: Duration::from_secs(5),
            language: LanguageCode::Java,
            mq_client_api_timeout: Duration::from_secs(3),
            remoting: RemotingClientConfig::default(),
        }
    }
}

impl ClientConfig {
    /// A config with Java's defaults and the given name servers (`;`-separated).
    pub fn with_namesrv_addr(namesrv_addr: impl Into<String>) -> Self {
        Self {
            namesrv_addr: Some(namesrv_addr.into()),
            ..Self::default()
        }
    }

    /// `buildMQClientId`: `clientIP@instanceName`, plus `@unitName` when the unit name is not
    /// blank.
    pub fn client_id(&self) -> String {
        let mut id = format!("{}@{}", self.client_ip, self.instance_name);
        if let Some(unit) = self.unit_name.as_deref().filter(|u| !u.trim().is_empty()) {
            id.push('@');
            id.push_str(unit);
        }
        id
    }

    /// `changeInstanceNameToPID`: replaces the instance name with `pid_like` when it is still
    /// [`DEFAULT_INSTANCE_NAME`], so that two processes on one host get different client ids.
    /// Java 4.9 passes `pid#nanoTime`; earlier versions the pid alone.
    pub fn change_instance_name_to_pid(&mut self, pid_like: impl Into<String>) {
        if self.instance_name == DEFAULT_INSTANCE_NAME {
            self.instance_name = pid_like.into();
        }
    }

    /// The name-server addresses of [`namesrv_addr`](Self::namesrv_addr): split on `;`,
    /// trimmed, empty entries dropped.
    pub fn namesrv_addrs(&self) -> Vec<String> {
        self.namesrv_addr
            .as_deref()
            .unwrap_or_default()
            .split(';')
            .map(str::trim)
            .filter(|addr| !addr.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_is_ip_at_instance() {
        let config = ClientConfig {
            client_ip: "10.0.0.7".into(),
            ..ClientConfig::default()
        };
        assert_eq!(config.client_id(), "10.0.0.7@DEFAULT");
    }

    #[test]
    fn client_id_appends_a_non_blank_unit_name() {
        let mut config = ClientConfig {
            client_ip: "10.0.0.7".into(),
            instance_name: "4242".into(),
            unit_name: Some("unit-1".into()),
            ..ClientConfig::default()
        };
        assert_eq!(config.client_id(), "10.0.0.7@4242@unit-1");
        config.unit_name = Some("  ".into());
        assert_eq!(config.client_id(), "10.0.0.7@4242");
    }

    #[test]
    fn instance_name_changes_to_pid_only_while_default() {
        let mut config = ClientConfig::default();
        config.change_instance_name_to_pid("4242#99");
        assert_eq!(config.instance_name, "4242#99");
        config.change_instance_name_to_pid("5555");
        assert_eq!(
            config.instance_name, "4242#99",
            "a chosen name is never replaced"
        );
    }

    #[test]
    fn namesrv_addrs_split_on_semicolons() {
        let config = ClientConfig::with_namesrv_addr(" 10.0.0.1:9876; ;10.0.0.2:9876;");
        assert_eq!(
            config.namesrv_addrs(),
            vec!["10.0.0.1:9876".to_string(), "10.0.0.2:9876".to_string()]
        );
        assert!(ClientConfig::default().namesrv_addrs().is_empty());
    }

    #[test]
    fn defaults_are_javas() {
        let config = ClientConfig::default();
        assert_eq!(config.poll_name_server_interval, Duration::from_secs(30));
        assert_eq!(config.heartbeat_broker_interval, Duration::from_secs(30));
        assert_eq!(
            config.persist_consumer_offset_interval,
            Duration::from_secs(5)
        );
        assert_eq!(config.mq_client_api_timeout, Duration::from_secs(3));
        assert_eq!(config.language, LanguageCode::Java);
        assert_eq!(config.instance_name, "DEFAULT");
    }
}
