//! Creating the benchmark topic with a fixed number of queues, as `mqadmin updateTopic -c`
//! does: ask the name server for the cluster (GET_BROKER_CLUSTER_INFO), send
//! UPDATE_AND_CREATE_TOPIC to every master, then wait until the name server routes the topic
//! with those queues. Benchmarks never rely on auto-creation, which gives 4 queues per broker
//! whatever the workload asks for.
//!
//! A Java name server older than 4.9.4 writes the cluster body's broker ids as bare JSON keys,
//! which a strict reader refuses; the masters are then taken from the route of the
//! auto-create template topic `TBW102` instead (read leniently by the client), or named with
//! `--broker`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferrocket_engine::Env;
use ferrocket_engine::client::api::MqClientApi;
use ferrocket_engine::protocol::route::TopicRouteData;
use ferrocket_engine::protocol::{
    AUTO_CREATE_TOPIC, ClusterInfo, MASTER_ID, TopicFilterType, perm,
};
use ferrocket_engine::remoting::headers::CreateTopicRequestHeader;
use ferrocket_engine::remoting::transport::{ClientConfig, ProcessorTable, RemotingClient};
use ferrocket_engine::remoting::{LanguageCode, RemotingCommand, request_code, response_code};
use tokio::time::Instant;

use crate::stats::code_key;

/// Timeout of each admin request.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a created topic may take to appear in the name server's route.
pub const ROUTE_WAIT_MAX: Duration = Duration::from_secs(30);

/// How often the route is asked for while waiting.
const ROUTE_POLL: Duration = Duration::from_millis(100);

/// A master broker: its group name and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    /// The broker group.
    pub broker_name: String,
    /// The master's address.
    pub addr: String,
}

/// An admin connection to the name server and the brokers.
#[derive(Debug)]
pub struct Admin {
    remoting: Arc<RemotingClient>,
    api: MqClientApi,
}

impl Admin {
    /// An admin client of the name servers `namesrv` (`;`-separated).
    pub fn new(env: &Env, namesrv: &str) -> Self {
        let remoting = Arc::new(RemotingClient::new(
            env.net.clone(),
            env.clock.clone(),
            env.rng.clone(),
            ClientConfig::default(),
            ProcessorTable::new(),
            None,
        ));
        let addrs: Vec<String> = namesrv
            .split(';')
            .map(str::trim)
            .filter(|addr| !addr.is_empty())
            .map(str::to_owned)
            .collect();
        remoting.update_name_server_address_list(&addrs);
        Self {
            api: MqClientApi::new(remoting.clone(), LanguageCode::Java),
            remoting,
        }
    }

    /// The masters of `cluster` (of every cluster when `None`).
    pub async fn masters(&self, cluster: Option<&str>) -> Result<Vec<Master>> {
        let request = RemotingCommand::request(request_code::GET_BROKER_CLUSTER_INFO);
        let response = self
            .remoting
            .invoke_name_server(request, ADMIN_TIMEOUT)
            .await
            .context("GET_BROKER_CLUSTER_INFO to the name server failed")?;
        if response.code != response_code::SUCCESS {
            bail!(
                "the name server answered GET_BROKER_CLUSTER_INFO with {}: {}",
                code_key(response.code),
                response.remark.unwrap_or_default()
            );
        }
        let masters = match serde_json::from_slice::<ClusterInfo>(&response.body) {
            Ok(info) => masters_of_cluster(&info, cluster),
            Err(_) => self.masters_from_template_route(cluster).await?,
        };
        if masters.is_empty() {
            bail!(
                "the name server knows no master broker{}",
                cluster.map_or(String::new(), |name| format!(" in cluster {name}"))
            );
        }
        Ok(masters)
    }

    async fn masters_from_template_route(&self, cluster: Option<&str>) -> Result<Vec<Master>> {
        let route = self
            .api
            .topic_route(AUTO_CREATE_TOPIC, ADMIN_TIMEOUT)
            .await
            .context(
                "the cluster info was unreadable and the TBW102 route unavailable: name the \
                 brokers with --broker",
            )?;
        Ok(route
            .broker_datas
            .iter()
            .filter(|broker| cluster.is_none_or(|name| broker.cluster == name))
            .filter_map(|broker| {
                Some(Master {
                    broker_name: broker.broker_name.clone(),
                    addr: broker.broker_addrs.get(&MASTER_ID)?.clone(),
                })
            })
            .collect())
    }

    /// Creates (or updates) `topic` with `queues` read and write queues on every broker
    /// address in `brokers`.
    pub async fn create_topic(&self, topic: &str, queues: i32, brokers: &[String]) -> Result<()> {
        for addr in brokers {
            let header = CreateTopicRequestHeader {
                topic: topic.to_owned(),
                default_topic: AUTO_CREATE_TOPIC.to_owned(),
                read_queue_nums: queues,
                write_queue_nums: queues,
                perm: perm::READ | perm::WRITE,
                topic_filter_type: TopicFilterType::SingleTag.name().to_owned(),
                topic_sys_flag: Some(0),
                order: false,
            };
            let request = RemotingCommand::request_with_header(
                request_code::UPDATE_AND_CREATE_TOPIC,
                &header,
            );
            let response = self
                .remoting
                .invoke(addr, request, ADMIN_TIMEOUT)
                .await
                .with_context(|| format!("UPDATE_AND_CREATE_TOPIC to {addr} failed"))?;
            if response.code != response_code::SUCCESS {
                bail!(
                    "broker {addr} refused to create topic {topic}: {} {}",
                    code_key(response.code),
                    response.remark.unwrap_or_default()
                );
            }
        }
        Ok(())
    }

    /// Waits until the name server routes `topic` to every broker group in `broker_names`
    /// with `queues` readable and writable queues each.
    pub async fn wait_for_route(
        &self,
        topic: &str,
        queues: i32,
        broker_names: &[String],
    ) -> Result<TopicRouteData> {
        let deadline = Instant::now() + ROUTE_WAIT_MAX;
        loop {
            let route = self.api.topic_route(topic, ADMIN_TIMEOUT).await;
            if let Ok(route) = &route
                && route_is_complete(route, queues, broker_names)
            {
                return Ok(route.clone());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the name server did not route topic {topic} with {queues} queues on {} \
                     within {ROUTE_WAIT_MAX:?} (last answer: {route:?})",
                    broker_names.join(", ")
                );
            }
            tokio::time::sleep(ROUTE_POLL).await;
        }
    }

    /// Closes the connections.
    pub fn shutdown(&self) {
        self.remoting.shutdown();
    }
}

/// The masters of `cluster` (every cluster when `None`) in `info`, by broker name.
pub fn masters_of_cluster(info: &ClusterInfo, cluster: Option<&str>) -> Vec<Master> {
    info.broker_addr_table
        .values()
        .filter(|broker| {
            cluster.is_none_or(|name| {
                broker.cluster == name
                    || info
                        .cluster_addr_table
                        .get(name)
                        .is_some_and(|names| names.contains(&broker.broker_name))
            })
        })
        .filter_map(|broker| {
            Some(Master {
                broker_name: broker.broker_name.clone(),
                addr: broker.broker_addrs.get(&MASTER_ID)?.clone(),
            })
        })
        .collect()
}

/// Whether `route` has `queues` readable and writable queues on each of `broker_names`.
pub fn route_is_complete(route: &TopicRouteData, queues: i32, broker_names: &[String]) -> bool {
    broker_names.iter().all(|name| {
        route.queue_datas.iter().any(|queue| {
            &queue.broker_name == name
                && queue.read_queue_nums == queues
                && queue.write_queue_nums == queues
                && perm::is_readable(queue.perm)
                && perm::is_writeable(queue.perm)
        })
    })
}

#[cfg(test)]
mod tests {
    use ferrocket_engine::protocol::{BrokerData, QueueData};

    use super::*;

    fn broker(cluster: &str, name: &str, master: Option<&str>) -> BrokerData {
        let mut broker = BrokerData::new(cluster, name);
        if let Some(addr) = master {
            broker.broker_addrs.insert(MASTER_ID, addr.into());
        }
        broker.broker_addrs.insert(1, format!("{name}-slave:10911"));
        broker
    }

    #[test]
    fn masters_are_taken_from_the_named_cluster_only() {
        let mut info = ClusterInfo::default();
        for broker in [
            broker("c1", "a", Some("10.0.0.1:10911")),
            broker("c1", "b", None),
            broker("c2", "c", Some("10.0.0.3:10911")),
        ] {
            info.cluster_addr_table
                .entry(broker.cluster.clone())
                .or_default()
                .insert(broker.broker_name.clone());
            info.broker_addr_table
                .insert(broker.broker_name.clone(), broker);
        }
        let names = |masters: Vec<Master>| -> Vec<String> {
            masters.into_iter().map(|master| master.addr).collect()
        };
        assert_eq!(
            names(masters_of_cluster(&info, Some("c1"))),
            ["10.0.0.1:10911"]
        );
        assert_eq!(
            names(masters_of_cluster(&info, None)),
            ["10.0.0.1:10911", "10.0.0.3:10911"]
        );
    }

    #[test]
    fn a_route_is_complete_once_every_broker_has_the_queues() {
        let queue = |name: &str, nums| QueueData {
            broker_name: name.into(),
            perm: perm::READ | perm::WRITE,
            read_queue_nums: nums,
            topic_sys_flag: 0,
            write_queue_nums: nums,
        };
        let route = TopicRouteData {
            queue_datas: vec![queue("a", 8), queue("b", 4)],
            ..TopicRouteData::default()
        };
        assert!(route_is_complete(&route, 8, &["a".into()]));
        assert!(!route_is_complete(&route, 8, &["a".into(), "b".into()]));
        assert!(!route_is_complete(&route, 8, &["c".into()]));
    }
}
