//! The name server's request processor (`DefaultRequestProcessor`): every request code the
//! Java 4.9 name server answers, and `REQUEST_CODE_NOT_SUPPORTED` for the rest (where Java
//! stays silent and leaves the caller to time out).

use std::sync::Arc;

use crate::config::{apply_properties, parse_properties, render_properties};
use crate::protocol::{ORDER_TOPIC_CONFIG_NAMESPACE, RegisterBrokerBody, to_json};
use crate::remoting::headers::{
    AddWritePermOfBrokerRequestHeader, AddWritePermOfBrokerResponseHeader,
    DeleteKVConfigRequestHeader, DeleteTopicFromNamesrvRequestHeader, GetKVConfigRequestHeader,
    GetKVConfigResponseHeader, GetKVListByNamespaceRequestHeader, GetRouteInfoRequestHeader,
    GetTopicsByClusterRequestHeader, PutKVConfigRequestHeader, QueryDataVersionRequestHeader,
    QueryDataVersionResponseHeader, RegisterBrokerRequestHeader, RegisterBrokerResponseHeader,
    UnRegisterBrokerRequestHeader, WipeWritePermOfBrokerRequestHeader,
    WipeWritePermOfBrokerResponseHeader,
};
use crate::remoting::transport::{Channel, ProcessError, RequestProcessor};
use crate::remoting::{RemotingCommand, request_code as rc, response_code};

use super::NamesrvState;
use super::route_info::BrokerRegistration;

/// Answers name-server requests against the shared [`NamesrvState`].
#[derive(Debug)]
pub struct NamesrvProcessor {
    state: Arc<NamesrvState>,
}

type Outcome = Result<Option<RemotingCommand>, ProcessError>;

impl NamesrvProcessor {
    /// A processor over `state`.
    pub fn new(state: Arc<NamesrvState>) -> Self {
        Self { state }
    }

    fn get_kv_config(&self, request: &RemotingCommand) -> Outcome {
        let header: GetKVConfigRequestHeader = request.decode_header()?;
        Ok(Some(
            match self.state.kv_config.get(&header.namespace, &header.key) {
                Some(value) => RemotingCommand::success_to(request)
                    .with_header(&GetKVConfigResponseHeader { value: Some(value) }),
                None => RemotingCommand::error_to(
                    request,
                    response_code::QUERY_NOT_FOUND,
                    format!(
                        "No config item, Namespace: {} Key: {}",
                        header.namespace, header.key
                    ),
                ),
            },
        ))
    }

    fn get_kv_list_by_namespace(&self, request: &RemotingCommand) -> Outcome {
        let header: GetKVListByNamespaceRequestHeader = request.decode_header()?;
        Ok(Some(
            match self.state.kv_config.namespace(&header.namespace) {
                Some(table) => RemotingCommand::success_to(request).with_body(to_json(&table)),
                None => RemotingCommand::error_to(
                    request,
                    response_code::QUERY_NOT_FOUND,
                    format!("No config item, Namespace: {}", header.namespace),
                ),
            },
        ))
    }

    fn register_broker(&self, channel: &Channel, request: &RemotingCommand) -> Outcome {
        let header: RegisterBrokerRequestHeader = request.decode_header()?;
        let crc = header.body_crc32.unwrap_or(0);
        if crc != 0 && !request.body.is_empty() && crc32_masked(&request.body) != crc {
            return Err(ProcessError::system(format!(
                "crc32 not match, broker {} sent {crc}",
                header.broker_addr
            )));
        }
        let body = if request.body.is_empty() {
            // A registration without a body still refreshes liveness; its topics are empty
            // with data version 0.
            RegisterBrokerBody::default()
        } else {
            RegisterBrokerBody::decode(&request.body, header.compressed.unwrap_or(false))
                .map_err(|e| ProcessError::system(e.to_string()))?
        };
        let now = self.state.clock.instant();
        let result = self.state.route().register_broker(
            &BrokerRegistration {
                cluster_name: &header.cluster_name,
                broker_addr: &header.broker_addr,
                broker_name: &header.broker_name,
                broker_id: header.broker_id,
                ha_server_addr: &header.ha_server_addr,
                topic_config_wrapper: &body.topic_config_serialize_wrapper,
                filter_server_list: &body.filter_server_list,
                channel_id: Some(channel.id()),
            },
            now,
        );
        let mut response =
            RemotingCommand::success_to(request).with_header(&RegisterBrokerResponseHeader {
                ha_server_addr: result.ha_server_addr,
                master_addr: result.master_addr,
            });
        if let Some(order_topics) = self.state.kv_config.namespace(ORDER_TOPIC_CONFIG_NAMESPACE) {
            response.body = to_json(&order_topics).into();
        }
        Ok(Some(response))
    }

    fn unregister_broker(&self, request: &RemotingCommand) -> Outcome {
        let header: UnRegisterBrokerRequestHeader = request.decode_header()?;
        self.state.route().unregister_broker(
            &header.cluster_name,
            &header.broker_addr,
            &header.broker_name,
            header.broker_id,
        );
        Ok(Some(RemotingCommand::success_to(request)))
    }

    fn query_data_version(&self, request: &RemotingCommand) -> Outcome {
        let header: QueryDataVersionRequestHeader = request.decode_header()?;
        let offered: crate::protocol::DataVersion =
            crate::protocol::from_json("DataVersion", &request.body)
                .map_err(|e| ProcessError::system(e.to_string()))?;
        let now = self.state.clock.instant();
        let mut route = self.state.route();
        let changed = route.is_broker_topic_config_changed(&header.broker_addr, &offered);
        if !changed {
            route.update_broker_info_update_timestamp(&header.broker_addr, now);
        }
        let stored = route.broker_data_version(&header.broker_addr);
        drop(route);
        let mut response = RemotingCommand::success_to(request)
            .with_header(&QueryDataVersionResponseHeader { changed });
        if let Some(stored) = stored {
            response.body = to_json(&stored).into();
        }
        Ok(Some(response))
    }

    fn route_info_by_topic(&self, request: &RemotingCommand) -> Outcome {
        let header: GetRouteInfoRequestHeader = request.decode_header()?;
        let route = self.state.route().pickup_topic_route_data(&header.topic);
        Ok(Some(match route {
            Some(mut route) => {
                let order_message_enable = self.state.live_config().order_message_enable;
                if order_message_enable {
                    route.order_topic_conf = self
                        .state
                        .kv_config
                        .get(ORDER_TOPIC_CONFIG_NAMESPACE, &header.topic);
                }
                // Quoted map keys for every client: 4.9.4+ Java asks for them, and every
                // older client parses them too (spec/wire-protocol.md §7.1).
                RemotingCommand::success_to(request).with_body(to_json(&route))
            }
            None => RemotingCommand::error_to(
                request,
                response_code::TOPIC_NOT_EXIST,
                format!(
                    "No topic route info in name server for the topic: {}\nSee http://rocketmq.apache.org/docs/faq/ for further details.",
                    header.topic
                ),
            ),
        }))
    }

    fn wipe_write_perm(&self, request: &RemotingCommand) -> Outcome {
        let header: WipeWritePermOfBrokerRequestHeader = request.decode_header()?;
        let count = self
            .state
            .route()
            .wipe_write_perm_of_broker(&header.broker_name);
        Ok(Some(RemotingCommand::success_to(request).with_header(
            &WipeWritePermOfBrokerResponseHeader {
                wipe_topic_count: count,
            },
        )))
    }

    fn add_write_perm(&self, request: &RemotingCommand) -> Outcome {
        let header: AddWritePermOfBrokerRequestHeader = request.decode_header()?;
        let count = self
            .state
            .route()
            .add_write_perm_of_broker(&header.broker_name);
        Ok(Some(RemotingCommand::success_to(request).with_header(
            &AddWritePermOfBrokerResponseHeader {
                add_topic_count: count,
            },
        )))
    }

    fn delete_topic(&self, request: &RemotingCommand) -> Outcome {
        let header: DeleteTopicFromNamesrvRequestHeader = request.decode_header()?;
        self.state
            .route()
            .delete_topic(&header.topic, header.cluster_name.as_deref());
        Ok(Some(RemotingCommand::success_to(request)))
    }

    fn topics_by_cluster(&self, request: &RemotingCommand) -> Outcome {
        let header: GetTopicsByClusterRequestHeader = request.decode_header()?;
        let list = self.state.route().topics_by_cluster(&header.cluster);
        Ok(Some(
            RemotingCommand::success_to(request).with_body(to_json(&list)),
        ))
    }

    async fn update_config(&self, request: &RemotingCommand) -> Outcome {
        let text = std::str::from_utf8(&request.body)
            .map_err(|_| ProcessError::system("config body is not UTF-8"))?;
        let properties = parse_properties(text).map_err(|e| ProcessError::system(e.to_string()))?;
        let black_list = self.state.config.config_black_list.clone();
        if let Some(key) = properties
            .keys()
            .find(|key| black_list.split(';').any(|blocked| blocked == key.as_str()))
        {
            return Ok(Some(RemotingCommand::error_to(
                request,
                response_code::NO_PERMISSION,
                format!("Can not update config in black list: {key}"),
            )));
        }
        let updated = {
            let mut live = self.state.live_config();
            let mut updated = live.clone();
            apply_properties(&mut [&mut updated], &properties)
                .map_err(|e| ProcessError::system(e.to_string()))?;
            *live = updated.clone();
            updated
        };
        // Persist every setting to `configStorePath`, as Java's Configuration does.
        let text = render_properties(&[&updated, &self.state.server_config]);
        self.state
            .disk
            .write_file_atomic(&updated.config_store_path, text.as_bytes())
            .await
            .map_err(|e| {
                ProcessError::system(format!(
                    "config updated but not persisted to {}: {e}",
                    updated.config_store_path
                ))
            })?;
        Ok(Some(RemotingCommand::success_to(request)))
    }

    fn get_config(&self, request: &RemotingCommand) -> Outcome {
        let live = self.state.live_config().clone();
        let text = render_properties(&[&live, &self.state.server_config]);
        Ok(Some(
            RemotingCommand::success_to(request).with_body(text.into_bytes()),
        ))
    }

    fn with_body<T: serde::Serialize>(request: &RemotingCommand, body: &T) -> Outcome {
        Ok(Some(
            RemotingCommand::success_to(request).with_body(to_json(body)),
        ))
    }
}

/// `crc32(body) & 0x7FFFFFFF`, RocketMQ's body checksum.
pub fn crc32_masked(bytes: &[u8]) -> i32 {
    (crc32fast::hash(bytes) & 0x7FFF_FFFF) as i32
}

#[async_trait::async_trait]
impl RequestProcessor for NamesrvProcessor {
    async fn process(&self, channel: &Channel, request: RemotingCommand) -> Outcome {
        let state = &self.state;
        match request.code {
            rc::PUT_KV_CONFIG => {
                let header: PutKVConfigRequestHeader = request.decode_header()?;
                state
                    .kv_config
                    .put(&header.namespace, &header.key, &header.value)
                    .await
                    .map_err(|e| ProcessError::system(e.to_string()))?;
                Ok(Some(RemotingCommand::success_to(&request)))
            }
            rc::GET_KV_CONFIG => self.get_kv_config(&request),
            rc::DELETE_KV_CONFIG => {
                let header: DeleteKVConfigRequestHeader = request.decode_header()?;
                state
                    .kv_config
                    .delete(&header.namespace, &header.key)
                    .await
                    .map_err(|e| ProcessError::system(e.to_string()))?;
                Ok(Some(RemotingCommand::success_to(&request)))
            }
            rc::GET_KVLIST_BY_NAMESPACE => self.get_kv_list_by_namespace(&request),
            rc::QUERY_DATA_VERSION => self.query_data_version(&request),
            rc::REGISTER_BROKER => self.register_broker(channel, &request),
            rc::UNREGISTER_BROKER => self.unregister_broker(&request),
            rc::GET_ROUTEINFO_BY_TOPIC => self.route_info_by_topic(&request),
            rc::GET_BROKER_CLUSTER_INFO => {
                Self::with_body(&request, &state.route().all_cluster_info())
            }
            rc::WIPE_WRITE_PERM_OF_BROKER => self.wipe_write_perm(&request),
            rc::ADD_WRITE_PERM_OF_BROKER => self.add_write_perm(&request),
            rc::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => {
                Self::with_body(&request, &state.route().all_topic_list())
            }
            rc::DELETE_TOPIC_IN_NAMESRV => self.delete_topic(&request),
            rc::GET_TOPICS_BY_CLUSTER => self.topics_by_cluster(&request),
            rc::GET_SYSTEM_TOPIC_LIST_FROM_NS => {
                Self::with_body(&request, &state.route().system_topic_list())
            }
            rc::GET_UNIT_TOPIC_LIST => Self::with_body(&request, &state.route().unit_topics()),
            rc::GET_HAS_UNIT_SUB_TOPIC_LIST => {
                Self::with_body(&request, &state.route().has_unit_sub_topics())
            }
            rc::GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST => {
                Self::with_body(&request, &state.route().has_unit_sub_non_unit_topics())
            }
            rc::UPDATE_NAMESRV_CONFIG => self.update_config(&request).await,
            rc::GET_NAMESRV_CONFIG => self.get_config(&request),
            other => Ok(Some(RemotingCommand::error_to(
                &request,
                response_code::REQUEST_CODE_NOT_SUPPORTED,
                format!(" request type {other} not supported"),
            ))),
        }
    }
}
