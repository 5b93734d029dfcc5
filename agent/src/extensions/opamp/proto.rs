//! The OpAMP messages vigil sends and reads, declared with prost's derive from the field numbers of
//! the OpAMP specification (opamp.proto and anyvalue.proto, package `opamp.proto`). No crate on
//! crates.io carries them, and a derive needs no `protoc` at build time. Only the messages an agent
//! that reports status and refuses remote config needs are declared; fields it never reads are
//! left out, which protobuf decoding skips.

/// `AgentToServer`: everything an agent reports.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentToServer {
    #[prost(bytes = "vec", tag = "1")]
    pub instance_uid: Vec<u8>,
    #[prost(uint64, tag = "2")]
    pub sequence_num: u64,
    #[prost(message, optional, tag = "3")]
    pub agent_description: Option<AgentDescription>,
    #[prost(uint64, tag = "4")]
    pub capabilities: u64,
    #[prost(message, optional, tag = "5")]
    pub health: Option<ComponentHealth>,
    #[prost(message, optional, tag = "6")]
    pub effective_config: Option<EffectiveConfig>,
    #[prost(message, optional, tag = "7")]
    pub remote_config_status: Option<RemoteConfigStatus>,
    #[prost(message, optional, tag = "9")]
    pub agent_disconnect: Option<AgentDisconnect>,
    #[prost(uint64, tag = "10")]
    pub flags: u64,
    #[prost(message, optional, tag = "14")]
    pub available_components: Option<AvailableComponents>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentDisconnect {}

/// `ServerToAgent`: what a server answers or pushes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerToAgent {
    #[prost(bytes = "vec", tag = "1")]
    pub instance_uid: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pub error_response: Option<ServerErrorResponse>,
    #[prost(message, optional, tag = "3")]
    pub remote_config: Option<AgentRemoteConfig>,
    #[prost(message, optional, tag = "4")]
    pub connection_settings: Option<ConnectionSettingsOffers>,
    #[prost(uint64, tag = "6")]
    pub flags: u64,
    #[prost(uint64, tag = "7")]
    pub capabilities: u64,
    #[prost(message, optional, tag = "8")]
    pub agent_identification: Option<AgentIdentification>,
    #[prost(message, optional, tag = "9")]
    pub command: Option<ServerToAgentCommand>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerErrorResponse {
    /// 0 unknown, 1 bad request, 2 unavailable.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub error_message: String,
    #[prost(message, optional, tag = "3")]
    pub retry_info: Option<RetryInfo>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    #[prost(uint64, tag = "1")]
    pub retry_after_nanoseconds: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ConnectionSettingsOffers {
    #[prost(bytes = "vec", tag = "1")]
    pub hash: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pub opamp: Option<OpAmpConnectionSettings>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OpAmpConnectionSettings {
    #[prost(string, tag = "1")]
    pub destination_endpoint: String,
    #[prost(uint64, tag = "4")]
    pub heartbeat_interval_seconds: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentIdentification {
    #[prost(bytes = "vec", tag = "1")]
    pub new_instance_uid: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerToAgentCommand {
    /// 0 restart.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentDescription {
    #[prost(message, repeated, tag = "1")]
    pub identifying_attributes: Vec<KeyValue>,
    #[prost(message, repeated, tag = "2")]
    pub non_identifying_attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ComponentHealth {
    #[prost(bool, tag = "1")]
    pub healthy: bool,
    #[prost(fixed64, tag = "2")]
    pub start_time_unix_nano: u64,
    #[prost(string, tag = "3")]
    pub last_error: String,
    #[prost(string, tag = "4")]
    pub status: String,
    #[prost(fixed64, tag = "5")]
    pub status_time_unix_nano: u64,
    #[prost(btree_map = "string, message", tag = "6")]
    pub component_health_map: std::collections::BTreeMap<String, ComponentHealth>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EffectiveConfig {
    #[prost(message, optional, tag = "1")]
    pub config_map: Option<AgentConfigMap>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentConfigMap {
    #[prost(btree_map = "string, message", tag = "1")]
    pub config_map: std::collections::BTreeMap<String, AgentConfigFile>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentConfigFile {
    #[prost(bytes = "vec", tag = "1")]
    pub body: Vec<u8>,
    #[prost(string, tag = "2")]
    pub content_type: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentRemoteConfig {
    #[prost(message, optional, tag = "1")]
    pub config: Option<AgentConfigMap>,
    #[prost(bytes = "vec", tag = "2")]
    pub config_hash: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RemoteConfigStatus {
    #[prost(bytes = "vec", tag = "1")]
    pub last_remote_config_hash: Vec<u8>,
    /// 0 unset, 1 applied, 2 applying, 3 failed.
    #[prost(int32, tag = "2")]
    pub status: i32,
    #[prost(string, tag = "3")]
    pub error_message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AvailableComponents {
    #[prost(btree_map = "string, message", tag = "1")]
    pub components: std::collections::BTreeMap<String, ComponentDetails>,
    #[prost(bytes = "vec", tag = "2")]
    pub hash: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ComponentDetails {
    #[prost(message, repeated, tag = "1")]
    pub metadata: Vec<KeyValue>,
    #[prost(btree_map = "string, message", tag = "2")]
    pub sub_component_map: std::collections::BTreeMap<String, ComponentDetails>,
}

/// anyvalue.proto's `KeyValue` (the same layout as OTLP's).
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// anyvalue.proto's `AnyValue`, the string and integer cases an agent description uses.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    #[prost(oneof = "any_value::Value", tags = "1, 3")]
    pub value: Option<any_value::Value>,
}

pub mod any_value {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        StringValue(String),
        #[prost(int64, tag = "3")]
        IntValue(i64),
    }
}

impl KeyValue {
    pub fn string(key: &str, value: impl Into<String>) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
        }
    }
}

/// AgentCapabilities bits.
pub mod agent_caps {
    pub const REPORTS_STATUS: u64 = 0x1;
    pub const REPORTS_EFFECTIVE_CONFIG: u64 = 0x4;
    pub const REPORTS_HEALTH: u64 = 0x800;
    pub const REPORTS_HEARTBEAT: u64 = 0x2000;
    pub const REPORTS_AVAILABLE_COMPONENTS: u64 = 0x4000;
}

/// ServerToAgentFlags bits.
pub mod server_flags {
    pub const REPORT_FULL_STATE: u64 = 0x1;
    pub const REPORT_AVAILABLE_COMPONENTS: u64 = 0x2;
}

/// RemoteConfigStatuses.
pub const REMOTE_CONFIG_FAILED: i32 = 3;
/// ServerErrorResponseType UNAVAILABLE.
pub const ERROR_UNAVAILABLE: i32 = 2;
