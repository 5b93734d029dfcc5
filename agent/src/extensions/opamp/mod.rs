//! `opamp`: otelcol's opampextension, an OpAMP client (https://opentelemetry.io/docs/specs/opamp/).
//! It reports this agent to an OpAMP server: its description (`service.name` `vigil`,
//! `service.version`, `service.instance.id`, and the host and OS as non-identifying attributes),
//! its health (from the service's lifecycle state), its effective config (the running config as
//! YAML, credentials redacted as otelcol's `configopaque` prints them) and the component types it
//! has. Messages are protobuf `AgentToServer`/`ServerToAgent` ([`proto`]).
//!
//! Transport: `server::http` polls: one `AgentToServer` POSTed every `polling_interval` (default
//! 30 s, which is also the heartbeat) and at once when the status changes (checked every second),
//! the answer being the `ServerToAgent`. `server::ws` keeps one WebSocket open ([`ws`]) and sends
//! the same reports, plus a heartbeat every 30 s or as the server's connection settings say.
//! Unchanged parts of the status are left out of later messages, as the spec allows; the server's
//! `ReportFullState` flag brings them back.
//!
//! Not built, and said so: remote configuration (an offered config is answered with a
//! `RemoteConfigStatus` of FAILED saying vigil does not accept it; the `AcceptsRemoteConfig`
//! capability is not claimed), packages, connection settings other than the heartbeat interval,
//! custom messages, and the restart command (`capabilities::accepts_restart_command: true` and
//! `server::*::auth` are refused by `validate`).
//!
//! Bounded: a `ServerToAgent` larger than [`MAX_MESSAGE_BYTES`] is refused and counted; one
//! message is in flight at a time. Counted in `vigil_opamp_messages{extension,direction}` and
//! `vigil_opamp_errors{extension,reason}`.

pub mod proto;
mod ws;

use crate::service::status::{self, Status};
use async_trait::async_trait;
use prost::Message;
use proto::{agent_caps, server_flags, AgentToServer, ServerToAgent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tracing::Instrument;
use vigil_core::config::TlsClientConfig;
use vigil_core::{Component, ComponentId, ComponentKind, ConfigError, Extension, Host};

/// The largest `ServerToAgent` read; more is refused (a remote config vigil would refuse anyway,
/// or a misbehaving server).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// How often the local status is compared with what was last reported.
const STATUS_CHECK: Duration = Duration::from_secs(1);
/// The WebSocket heartbeat when the server sets none (the spec's default).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);
/// The wait before a retry when the server is unreachable, doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct OpampConfig {
    #[serde(default)]
    server: ServerConfig,
    /// A UUID (36 characters) or ULID (26); generated (UUIDv7) at start when empty.
    #[serde(default)]
    instance_uid: String,
    #[serde(default)]
    capabilities: Capabilities,
    #[serde(default)]
    agent_description: AgentDescriptionConfig,
    /// A parent process to watch: when it is gone, the agent stops with an error.
    #[serde(default)]
    ppid: i32,
    #[serde(default = "default_ppid_poll", with = "vigil_core::config::duration")]
    ppid_poll_interval: Duration,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ServerConfig {
    #[serde(default)]
    ws: Option<Transport>,
    #[serde(default)]
    http: Option<Transport>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Transport {
    #[serde(default)]
    endpoint: String,
    #[serde(default, serialize_with = "redacted_values")]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    tls: TlsClientConfig,
    /// An authenticator extension; not built (use `headers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<Value>,
    /// HTTP only: how often to poll (default 30 s).
    #[serde(default, with = "vigil_core::config::opt_duration")]
    polling_interval: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Capabilities {
    #[serde(default = "yes")]
    reports_effective_config: bool,
    #[serde(default = "yes")]
    reports_health: bool,
    #[serde(default = "yes")]
    reports_available_components: bool,
    /// Not built: a restart command is ignored.
    #[serde(default)]
    accepts_restart_command: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            reports_effective_config: true,
            reports_health: true,
            reports_available_components: true,
            accepts_restart_command: false,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct AgentDescriptionConfig {
    /// Added to the non-identifying attributes, over the ones vigil sets.
    #[serde(default)]
    non_identifying_attributes: BTreeMap<String, String>,
    /// Copies `service::telemetry::resource` into the non-identifying attributes.
    #[serde(default)]
    include_resource_attributes: bool,
}

fn yes() -> bool {
    true
}
fn default_ppid_poll() -> Duration {
    Duration::from_secs(5)
}

fn redacted_values<S: serde::Serializer>(
    map: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(map.keys().map(|k| (k, "[REDACTED]")))
}

fn err(id: &ComponentId, path: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Extension, id, path, msg)
}

/// Which transport, and its settings.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Http,
    Ws,
}

fn transport(cfg: &OpampConfig) -> Option<(Kind, &Transport)> {
    match (&cfg.server.http, &cfg.server.ws) {
        (Some(t), None) => Some((Kind::Http, t)),
        (None, Some(t)) => Some((Kind::Ws, t)),
        _ => None,
    }
}

/// The HTTP client for the `http` transport, from the exporters' client; errors name this
/// extension's key.
fn http_client(id: &ComponentId, key: &str, t: &Transport) -> Result<reqwest::Client, ConfigError> {
    vigil_exporters::helper::http::http_client(id, &t.headers, &t.tls).map_err(|mut e| {
        e.location = format!("extensions::{id}");
        e.path = format!("server::{key}::{}", e.path);
        e
    })
}

fn check(id: &ComponentId, cfg: &OpampConfig) -> Result<(), ConfigError> {
    let (kind, t) = match (&cfg.server.http, &cfg.server.ws) {
        (None, None) => {
            return Err(err(
                id,
                "server",
                "opamp server must have at least ws or http set",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(err(
                id,
                "server",
                "opamp server must have only ws or http set",
            ))
        }
        _ => transport(cfg).ok_or_else(|| err(id, "server", "no transport"))?,
    };
    let key = if kind == Kind::Http { "http" } else { "ws" };
    if t.endpoint.is_empty() {
        return Err(err(
            id,
            format!("server::{key}::endpoint"),
            "opamp server endpoint must be provided",
        ));
    }
    let u = url::Url::parse(&t.endpoint).map_err(|e| {
        err(
            id,
            format!("server::{key}::endpoint"),
            format!("{:?} is not a URL: {e}", t.endpoint),
        )
    })?;
    let schemes: &[&str] = if kind == Kind::Http {
        &["http", "https"]
    } else {
        &["ws", "wss"]
    };
    if !schemes.contains(&u.scheme()) || u.host_str().is_none() {
        return Err(err(
            id,
            format!("server::{key}::endpoint"),
            format!(
                "{:?} must be a {} URL with a host",
                t.endpoint,
                schemes.join(":// or ") + "://"
            ),
        ));
    }
    if t.auth.is_some() {
        return Err(err(
            id,
            format!("server::{key}::auth"),
            "authenticator extensions are not built for opamp in vigil; put the credential in headers",
        ));
    }
    if kind == Kind::Ws && t.polling_interval.is_some() {
        return Err(err(
            id,
            "server::ws::polling_interval",
            "polling_interval belongs to the http transport; a WebSocket is not polled",
        ));
    }
    if cfg.capabilities.accepts_restart_command {
        return Err(err(
            id,
            "capabilities::accepts_restart_command",
            "the restart command is not built in vigil; leave it false",
        ));
    }
    if !cfg.instance_uid.is_empty() && parse_instance_uid(&cfg.instance_uid).is_none() {
        return Err(err(id, "instance_uid", "opamp instance_uid is invalid"));
    }
    if cfg.ppid < 0 {
        return Err(err(id, "ppid", "ppid must be a process id (0: none)"));
    }
    match kind {
        Kind::Http => http_client(id, key, t).map(drop),
        Kind::Ws => ws::check(id, t),
    }
}

/// A UUID in its canonical text form, or a ULID (Crockford base32), as 16 bytes.
fn parse_instance_uid(s: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    if s.len() == 36 {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        let dashes = [8, 13, 18, 23]
            .iter()
            .all(|i| s.as_bytes().get(*i) == Some(&b'-'));
        if hex.len() != 32 || !dashes {
            return None;
        }
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        return Some(out);
    }
    if s.len() == 26 {
        const ALPHA: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        let mut n: u128 = 0;
        for (i, c) in s.bytes().enumerate() {
            let v = ALPHA.iter().position(|a| *a == c.to_ascii_uppercase())? as u128;
            // The first character carries only 3 bits (128 = 2 + 25 * 5 ... 130 bits, top 2 zero).
            if i == 0 && v > 7 {
                return None;
            }
            n = (n << 5) | v;
        }
        return Some(n.to_be_bytes());
    }
    None
}

/// A UUIDv7: 48 bits of Unix milliseconds, then version, variant and random bits.
fn new_uuid_v7() -> [u8; 16] {
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut b: [u8; 16] = rand::random();
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = 0x70 | (b[6] & 0x0f);
    b[8] = 0x80 | (b[8] & 0x3f);
    b
}

fn uuid_text(b: &[u8]) -> String {
    let h = hex(b);
    if h.len() != 32 {
        return h;
    }
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Factory;

/// The `opamp` extension factory, for the registry.
pub fn factory() -> Arc<dyn vigil_core::factory::DynExtensionFactory> {
    Arc::new(NotSumoLogics(vigil_core::factory::extension(Factory)))
}

/// The keys of otelcol-contrib's `opamp` section.
const CONTRIB_KEYS: &[&str] = &[
    "server",
    "instance_uid",
    "capabilities",
    "agent_description",
    "ppid",
    "ppid_poll_interval",
];
/// Keys only Sumo Logic's own `opamp` extension has (their distribution's, also named `opamp`):
/// any of them marks a section written for it. Its HTTP client keys (`endpoint`, `tls`, ...) at the
/// top level are not markers: alone they are more likely contrib keys put one level too high.
const SUMO_LOGIC_KEYS: &[&str] = &[
    "remote_configuration_directory",
    "accepts_remote_configuration",
    "disable_tag_replacement",
];

/// A section written for Sumo Logic's `opamp` extension is refused as the component it is, one
/// vigil does not have, rather than by its keys one at a time: those keys are not typos of
/// contrib's. Checked on the raw section, before it is decoded as contrib's.
fn sumo_logics(id: &ComponentId, config: &Value) -> Result<(), ConfigError> {
    let Value::Object(section) = config else {
        return Ok(());
    };
    let Some(marker) = SUMO_LOGIC_KEYS.iter().find(|k| section.contains_key(**k)) else {
        return Ok(());
    };
    let mut theirs: Vec<&str> = section
        .keys()
        .map(String::as_str)
        .filter(|k| !CONTRIB_KEYS.contains(k))
        .collect();
    theirs.sort_unstable();
    Err(err(
        id,
        *marker,
        format!(
            "{VENDOR_COMPONENT}Sumo Logic's opamp extension (their distribution's; keys {}); \
             vigil's opamp is otelcol-contrib's, configured under server::ws or server::http",
            theirs.join(", ")
        ),
    ))
}

/// How an error about a vendor distribution's own component under a type name vigil has begins, so
/// that tools reading `vigil validate` count it with the unknown types (tests/tests/compat.rs).
const VENDOR_COMPONENT: &str = "a component vigil does not have: ";

/// The `opamp` factory with a look at the raw section first ([`sumo_logics`]).
struct NotSumoLogics(Arc<dyn vigil_core::factory::DynExtensionFactory>);

impl vigil_core::factory::DynFactory for NotSumoLogics {
    fn kind(&self) -> ComponentKind {
        self.0.kind()
    }
    fn type_name(&self) -> &'static str {
        self.0.type_name()
    }
    fn signal_stability(&self) -> Vec<(String, vigil_core::Stability)> {
        self.0.signal_stability()
    }
    fn default_value(&self) -> Option<Value> {
        self.0.default_value()
    }
    fn resolved(&self, id: &ComponentId, config: &Value) -> Result<Value, ConfigError> {
        sumo_logics(id, config)?;
        self.0.resolved(id, config)
    }
    fn validate(&self, id: &ComponentId, config: &Value) -> Result<(), ConfigError> {
        sumo_logics(id, config)?;
        self.0.validate(id, config)
    }
}

impl vigil_core::factory::DynExtensionFactory for NotSumoLogics {
    fn extension_stability(&self) -> vigil_core::Stability {
        self.0.extension_stability()
    }
    fn create(&self, id: &ComponentId, config: &Value) -> Result<Arc<dyn Extension>, ConfigError> {
        sumo_logics(id, config)?;
        self.0.create(id, config)
    }
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = OpampConfig;

    fn type_name(&self) -> &'static str {
        "opamp"
    }

    fn validate(&self, id: &ComponentId, cfg: &OpampConfig) -> Result<(), ConfigError> {
        check(id, cfg)
    }
}

impl vigil_core::factory::ExtensionFactory for Factory {
    fn stability(&self) -> vigil_core::Stability {
        vigil_core::Stability::Alpha
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: OpampConfig,
    ) -> Result<Arc<dyn Extension>, ConfigError> {
        let uid = if cfg.instance_uid.is_empty() {
            new_uuid_v7()
        } else {
            parse_instance_uid(&cfg.instance_uid)
                .ok_or_else(|| err(&set.id, "instance_uid", "opamp instance_uid is invalid"))?
        };
        let session = Session::new(set.id.to_string(), &cfg, uid);
        Ok(Arc::new(Opamp {
            id: set.id.clone(),
            cfg,
            tasks: set.tasks.clone(),
            session: Arc::new(Mutex::new(session)),
            span: set.span.clone(),
        }))
    }
}

struct Opamp {
    id: ComponentId,
    cfg: OpampConfig,
    tasks: vigil_core::task::Tasks,
    session: Arc<Mutex<Session>>,
    span: tracing::Span,
}

impl Extension for Opamp {}

/// What the agent last told the server, so unchanged parts are left out, and what it must say
/// next. Transport-independent: the HTTP and WebSocket loops both drive one.
pub(crate) struct Session {
    id: String,
    uid: [u8; 16],
    seq: u64,
    caps: u64,
    extra_attrs: BTreeMap<String, String>,
    include_resource: bool,
    /// What was last sent of each part (None: never, or the server asked for everything).
    sent_description: Option<proto::AgentDescription>,
    sent_health: Option<(bool, String)>,
    sent_config: Option<Vec<u8>>,
    sent_components: bool,
    /// A refused remote config not yet reported.
    remote_status: Option<proto::RemoteConfigStatus>,
    /// Set by the server's connection settings (WebSocket heartbeats).
    pub(crate) heartbeat: Duration,
    /// A wait the server asked for (`UNAVAILABLE` with retry info, or `Retry-After`).
    pub(crate) retry_after: Option<Duration>,
    disconnecting: bool,
}

impl Session {
    fn new(id: String, cfg: &OpampConfig, uid: [u8; 16]) -> Session {
        let mut caps = agent_caps::REPORTS_STATUS;
        if cfg.capabilities.reports_effective_config {
            caps |= agent_caps::REPORTS_EFFECTIVE_CONFIG;
        }
        if cfg.capabilities.reports_health {
            caps |= agent_caps::REPORTS_HEALTH;
        }
        if cfg.capabilities.reports_available_components {
            caps |= agent_caps::REPORTS_AVAILABLE_COMPONENTS;
        }
        if cfg.server.ws.is_some() {
            caps |= agent_caps::REPORTS_HEARTBEAT;
        }
        Session {
            id,
            uid,
            seq: 0,
            caps,
            extra_attrs: cfg.agent_description.non_identifying_attributes.clone(),
            include_resource: cfg.agent_description.include_resource_attributes,
            sent_description: None,
            sent_health: None,
            sent_config: None,
            sent_components: false,
            remote_status: None,
            heartbeat: DEFAULT_HEARTBEAT,
            retry_after: None,
            disconnecting: false,
        }
    }

    fn forget_sent(&mut self) {
        self.sent_description = None;
        self.sent_health = None;
        self.sent_config = None;
        self.sent_components = false;
    }

    fn description(&self, running: Option<&crate::config::Config>) -> proto::AgentDescription {
        use proto::KeyValue;
        let identifying = vec![
            KeyValue::string("service.name", "vigil"),
            KeyValue::string("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::string("service.instance.id", uuid_text(&self.uid)),
        ];
        let mut non: BTreeMap<String, String> = BTreeMap::new();
        non.insert("os.type".into(), std::env::consts::OS.into());
        if let Some(d) = os_description() {
            non.insert("os.description".into(), d);
        }
        non.insert("host.arch".into(), go_arch().into());
        if let Some(h) = hostname() {
            non.insert("host.name".into(), h);
        }
        if self.include_resource {
            if let Some(Value::Object(res)) = running.and_then(|c| c.telemetry.resource.as_ref()) {
                for (k, v) in res {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => continue,
                        other => other.to_string(),
                    };
                    non.insert(k.clone(), text);
                }
            }
        }
        for (k, v) in &self.extra_attrs {
            non.insert(k.clone(), v.clone());
        }
        proto::AgentDescription {
            identifying_attributes: identifying,
            non_identifying_attributes: non
                .into_iter()
                .map(|(k, v)| KeyValue::string(&k, v))
                .collect(),
        }
    }

    /// The next `AgentToServer`: every part that changed since it was last sent (all of them
    /// the first time, after an error, or when the server asked for the full state).
    pub(crate) fn next(&mut self) -> AgentToServer {
        let snapshot = crate::observed::global().snapshot();
        let running = snapshot.config.as_deref();
        self.seq += 1;
        let mut msg = AgentToServer {
            instance_uid: self.uid.to_vec(),
            sequence_num: self.seq,
            capabilities: self.caps,
            ..Default::default()
        };
        let d = self.description(running);
        if self.sent_description.as_ref() != Some(&d) {
            msg.agent_description = Some(d.clone());
            self.sent_description = Some(d);
        }
        if self.caps & agent_caps::REPORTS_HEALTH != 0 {
            let h = health();
            let key = (h.healthy, h.status.clone());
            if self.sent_health.as_ref() != Some(&key) {
                msg.health = Some(h);
                self.sent_health = Some(key);
            }
        }
        if self.caps & agent_caps::REPORTS_EFFECTIVE_CONFIG != 0 {
            if let Some(cfg) = running {
                let body = effective_yaml(cfg).into_bytes();
                if self.sent_config.as_ref() != Some(&body) {
                    let mut files = BTreeMap::new();
                    files.insert(
                        String::new(),
                        proto::AgentConfigFile {
                            body: body.clone(),
                            content_type: "text/yaml".into(),
                        },
                    );
                    msg.effective_config = Some(proto::EffectiveConfig {
                        config_map: Some(proto::AgentConfigMap { config_map: files }),
                    });
                    self.sent_config = Some(body);
                }
            }
        }
        if self.caps & agent_caps::REPORTS_AVAILABLE_COMPONENTS != 0 && !self.sent_components {
            msg.available_components = Some(available_components());
            self.sent_components = true;
        }
        msg.remote_config_status = self.remote_status.take();
        if self.disconnecting {
            msg.agent_disconnect = Some(proto::AgentDisconnect {});
        }
        msg
    }

    /// Whether something would be sent now that was not sent last time.
    pub(crate) fn changed(&self) -> bool {
        if self.remote_status.is_some() || self.sent_description.is_none() {
            return true;
        }
        if self.caps & agent_caps::REPORTS_HEALTH != 0 {
            let h = health();
            if self.sent_health.as_ref() != Some(&(h.healthy, h.status)) {
                return true;
            }
        }
        if self.caps & agent_caps::REPORTS_EFFECTIVE_CONFIG != 0 {
            if let Some(cfg) = crate::observed::global().snapshot().config {
                if self.sent_config.as_deref() != Some(effective_yaml(&cfg).as_bytes()) {
                    return true;
                }
            }
        }
        false
    }

    /// After a send failed: the server may have missed it, so everything goes again.
    pub(crate) fn failed(&mut self) {
        self.forget_sent();
    }

    /// Acts on a `ServerToAgent`. Returns whether a report should follow at once.
    pub(crate) fn handle(&mut self, m: ServerToAgent) -> bool {
        metrics::counter!("vigil_opamp_messages", "extension" => self.id.clone(), "direction" => "received")
            .increment(1);
        if let Some(e) = m.error_response {
            metrics::counter!("vigil_opamp_errors", "extension" => self.id.clone(), "reason" => "server_error")
                .increment(1);
            tracing::warn!(
                error_type = e.r#type,
                "the OpAMP server refused a report: {}",
                e.error_message
            );
            if e.r#type == proto::ERROR_UNAVAILABLE {
                self.retry_after = e
                    .retry_info
                    .map(|r| Duration::from_nanos(r.retry_after_nanoseconds))
                    .filter(|d| !d.is_zero())
                    .or(Some(FIRST_BACKOFF));
            }
            self.forget_sent();
            return false;
        }
        let mut again = false;
        if let Some(new) = m.agent_identification {
            if let Ok(uid) = <[u8; 16]>::try_from(new.new_instance_uid.as_slice()) {
                tracing::info!(
                    instance_uid = %uuid_text(&uid),
                    "the OpAMP server assigned a new instance uid"
                );
                self.uid = uid;
                self.forget_sent();
                again = true;
            } else if !new.new_instance_uid.is_empty() {
                tracing::warn!(
                    len = new.new_instance_uid.len(),
                    "ignored a new instance uid that is not 16 bytes"
                );
            }
        }
        if m.flags & server_flags::REPORT_FULL_STATE != 0 {
            self.forget_sent();
            again = true;
        }
        if m.flags & server_flags::REPORT_AVAILABLE_COMPONENTS != 0 {
            self.sent_components = false;
            again = true;
        }
        if let Some(rc) = m.remote_config {
            tracing::warn!("the OpAMP server offered a remote config; vigil does not accept remote configuration, so it was refused");
            metrics::counter!("vigil_opamp_errors", "extension" => self.id.clone(), "reason" => "remote_config_refused")
                .increment(1);
            self.remote_status = Some(proto::RemoteConfigStatus {
                last_remote_config_hash: rc.config_hash,
                status: proto::REMOTE_CONFIG_FAILED,
                error_message: "vigil does not accept remote configuration: its config is read \
                                from its own files and reloaded on SIGHUP"
                    .into(),
            });
            again = true;
        }
        if let Some(hb) = m
            .connection_settings
            .and_then(|c| c.opamp)
            .map(|o| o.heartbeat_interval_seconds)
            .filter(|s| *s > 0)
        {
            self.heartbeat = Duration::from_secs(hb);
        }
        if m.command.is_some() {
            tracing::warn!("the OpAMP server sent a restart command; vigil does not accept commands, so it was ignored");
        }
        again
    }
}

fn health() -> proto::ComponentHealth {
    let st = status::get();
    let now = unix_nanos(SystemTime::now());
    let up = status::up_since().1;
    let start = if st == Status::Starting {
        0
    } else {
        now.saturating_sub(up.as_nanos() as u64)
    };
    proto::ComponentHealth {
        healthy: st == Status::Ready,
        start_time_unix_nano: start,
        last_error: if st == Status::Ready {
            String::new()
        } else {
            format!("the agent is {}", st.as_str())
        },
        status: match st {
            Status::Ready => "StatusOK",
            Status::Starting => "StatusStarting",
            Status::Stopping => "StatusStopping",
        }
        .into(),
        status_time_unix_nano: now,
        component_health_map: BTreeMap::new(),
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Keys whose values are credentials wherever they appear, as otelcol marks them `configopaque`.
fn secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    matches!(
        k.as_str(),
        "password"
            | "token"
            | "bearer_token"
            | "client_secret"
            | "key_pem"
            | "secret"
            | "api_key"
            | "access_token"
            | "secret_key"
            | "session_token"
            | "private_key"
            | "sasl_password"
    ) || k.ends_with("_password")
        || k.ends_with("_secret")
        || k.ends_with("_token")
}

/// Replaces every credential in a config value with `[REDACTED]`: the values of `headers` maps
/// and of keys that name secrets.
pub(crate) fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if k == "headers" {
                    if let Value::Object(h) = child {
                        for hv in h.values_mut() {
                            if !hv.is_null() {
                                *hv = Value::String("[REDACTED]".into());
                            }
                        }
                        continue;
                    }
                }
                if secret_key(k) && (child.is_string() || child.is_number()) {
                    *child = Value::String("[REDACTED]".into());
                } else {
                    redact(child);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// The running config as otelcol's effective config shows it: the sections by component id,
/// then `service` with its extensions and pipelines; credentials redacted.
fn effective_yaml(cfg: &crate::config::Config) -> String {
    let section = |m: &BTreeMap<ComponentId, Value>| {
        Value::Object(
            m.iter()
                .map(|(id, v)| (id.to_string(), v.clone()))
                .collect(),
        )
    };
    let mut pipelines = serde_json::Map::new();
    for p in &cfg.pipelines {
        let ids =
            |v: &[ComponentId]| Value::from(v.iter().map(|i| i.to_string()).collect::<Vec<_>>());
        pipelines.insert(
            p.id.clone(),
            serde_json::json!({
                "receivers": ids(&p.receivers),
                "processors": ids(&p.processors),
                "exporters": ids(&p.exporters),
            }),
        );
    }
    let mut service = serde_json::json!({
        "extensions": cfg.service_extensions.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
        "pipelines": pipelines,
    });
    if let Some(r) = &cfg.telemetry.resource {
        service["telemetry"] = serde_json::json!({ "resource": r });
    }
    let mut root = serde_json::json!({
        "receivers": section(&cfg.receivers),
        "processors": section(&cfg.processors),
        "exporters": section(&cfg.exporters),
        "connectors": section(&cfg.connectors),
        "extensions": section(&cfg.extensions),
        "service": service,
    });
    redact(&mut root);
    serde_saphyr::to_string(&root).unwrap_or_else(|e| format!("# cannot show the config: {e}\n"))
}

/// Every component type vigil has, by kind, as otelcol reports its factories.
fn available_components() -> proto::AvailableComponents {
    let reg = crate::registry::Registry::builtin();
    let meta = vec![
        proto::KeyValue::string("code.namespace", "vigil"),
        proto::KeyValue::string("code.version", env!("CARGO_PKG_VERSION")),
    ];
    let kind = |names: Vec<&'static str>| proto::ComponentDetails {
        metadata: Vec::new(),
        sub_component_map: names
            .into_iter()
            .map(|n| {
                (
                    n.to_string(),
                    proto::ComponentDetails {
                        metadata: meta.clone(),
                        sub_component_map: BTreeMap::new(),
                    },
                )
            })
            .collect(),
    };
    let mut components: BTreeMap<String, proto::ComponentDetails> = BTreeMap::new();
    components.insert(
        "receivers".into(),
        kind(reg.receivers.keys().copied().collect()),
    );
    components.insert(
        "processors".into(),
        kind(reg.processors.keys().copied().collect()),
    );
    components.insert(
        "exporters".into(),
        kind(reg.exporters.keys().copied().collect()),
    );
    components.insert(
        "connectors".into(),
        kind(reg.connectors.keys().copied().collect()),
    );
    components.insert(
        "extensions".into(),
        kind(reg.extensions.keys().copied().collect()),
    );
    let mut h = sha2::Sha256::new();
    for (k, d) in &components {
        h.update(k.as_bytes());
        for n in d.sub_component_map.keys() {
            h.update(b"\0");
            h.update(n.as_bytes());
        }
        h.update(b"\n");
    }
    proto::AvailableComponents {
        components,
        hash: h.finalize().to_vec(),
    }
}

fn os_description() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    let line = text.lines().find(|l| l.starts_with("PRETTY_NAME="))?;
    Some(line["PRETTY_NAME=".len()..].trim_matches('"').to_string())
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// `host.arch` as otelcol reports it (Go's GOARCH names).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn sent(id: &str) {
    metrics::counter!("vigil_opamp_messages", "extension" => id.to_string(), "direction" => "sent")
        .increment(1);
}

fn failure(id: &str, reason: &'static str) {
    metrics::counter!("vigil_opamp_errors", "extension" => id.to_string(), "reason" => reason)
        .increment(1);
}

/// One HTTP exchange: POST the report, read the answer (bounded).
async fn exchange(
    client: &reqwest::Client,
    endpoint: &str,
    msg: &AgentToServer,
) -> Result<ServerToAgent, (&'static str, String, Option<Duration>)> {
    let resp = client
        .post(endpoint)
        .header("Content-Type", "application/x-protobuf")
        .body(msg.encode_to_vec())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| {
            (
                "unreachable",
                vigil_exporters::helper::http::error_chain(&e),
                None,
            )
        })?;
    let code = resp.status();
    if !code.is_success() {
        let wait = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return Err(("http_status", format!("the server answered {code}"), wait));
    }
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_MESSAGE_BYTES as u64)
    {
        return Err((
            "too_large",
            format!("the answer is larger than {MAX_MESSAGE_BYTES} bytes"),
            None,
        ));
    }
    let mut resp = resp;
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if body.len() + c.len() > MAX_MESSAGE_BYTES {
                    return Err((
                        "too_large",
                        format!("the answer is larger than {MAX_MESSAGE_BYTES} bytes"),
                        None,
                    ));
                }
                body.extend_from_slice(&c);
            }
            Ok(None) => break,
            Err(e) => {
                return Err((
                    "unreachable",
                    vigil_exporters::helper::http::error_chain(&e),
                    None,
                ))
            }
        }
    }
    ServerToAgent::decode(body.as_slice()).map_err(|e| {
        (
            "bad_message",
            format!("the answer is not a ServerToAgent: {e}"),
            None,
        )
    })
}

/// The HTTP transport: report, then wait for the poll interval or a status change.
async fn run_http(
    id: String,
    client: reqwest::Client,
    endpoint: String,
    poll: Duration,
    session: Arc<Mutex<Session>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut logged_down = false;
    // A server that asks for another report each time is answered at most this often in a row,
    // so a confused server cannot make the agent spin.
    let mut immediate = 0u32;
    loop {
        let msg = vigil_core::lock(&session).next();
        let wait = match exchange(&client, &endpoint, &msg).await {
            Ok(answer) => {
                sent(&id);
                backoff = FIRST_BACKOFF;
                if logged_down {
                    tracing::info!("the OpAMP server is reachable again");
                    logged_down = false;
                }
                let mut s = vigil_core::lock(&session);
                let again = s.handle(answer);
                if let Some(w) = s.retry_after.take() {
                    w
                } else if again && immediate < 3 {
                    immediate += 1;
                    Duration::ZERO
                } else {
                    immediate = 0;
                    poll
                }
            }
            Err((reason, text, wait)) => {
                failure(&id, reason);
                vigil_core::lock(&session).failed();
                if !logged_down {
                    tracing::warn!(endpoint = %endpoint, "cannot report to the OpAMP server (retrying): {text}");
                    logged_down = true;
                }
                let w = wait.unwrap_or(backoff).min(MAX_BACKOFF);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                w
            }
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next_check = (tokio::time::Instant::now() + STATUS_CHECK).min(deadline);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(next_check) => {}
            }
            if tokio::time::Instant::now() >= deadline || vigil_core::lock(&session).changed() {
                break;
            }
        }
    }
}

/// Stops the agent when the parent process `ppid` is gone, as otelcol's extension does for the
/// OpAMP supervisor.
async fn watch_parent(
    id: ComponentId,
    ppid: i32,
    every: Duration,
    host: Host,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // SAFETY: signal 0 only checks that the process exists and may be signalled.
        let gone = unsafe { libc::kill(ppid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            host.report_fatal(
                &id,
                format!("the parent process {ppid} (ppid) is no longer running"),
            );
            return;
        }
    }
}

#[async_trait]
impl Component for Opamp {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        let _in = self.span.enter();
        let (kind, t) = transport(&self.cfg)
            .ok_or_else(|| anyhow::anyhow!("extensions::{}::server: no transport", self.id))?;
        let id = self.id.to_string();
        let stop = self.tasks.stopping();
        match kind {
            Kind::Http => {
                let client = http_client(&self.id, "http", t)?;
                let poll = t
                    .polling_interval
                    .filter(|d| !d.is_zero())
                    .unwrap_or(Duration::from_secs(30));
                self.tasks.spawn(
                    run_http(
                        id,
                        client,
                        t.endpoint.clone(),
                        poll,
                        self.session.clone(),
                        stop.clone(),
                    )
                    .instrument(self.span.clone()),
                );
            }
            Kind::Ws => {
                let connect = ws::Connect::new(&self.id, t)?;
                self.tasks.spawn(
                    ws::run(id, connect, self.session.clone(), stop.clone())
                        .instrument(self.span.clone()),
                );
            }
        }
        if self.cfg.ppid > 0 {
            self.tasks.spawn(watch_parent(
                self.id.clone(),
                self.cfg.ppid,
                self.cfg.ppid_poll_interval,
                host.clone(),
                stop,
            ));
        }
        tracing::info!(
            instance_uid = %uuid_text(&vigil_core::lock(&self.session).uid),
            "OpAMP client started"
        );
        Ok(())
    }

    /// Stops the loop, then tells an HTTP server the agent is leaving (best effort, bounded by
    /// the deadline); the WebSocket loop sends its own disconnect before closing.
    async fn shutdown_by(&self, deadline: std::time::Instant) -> anyhow::Result<()> {
        self.tasks.stop(deadline).await;
        if let Some((Kind::Http, t)) = transport(&self.cfg) {
            let msg = {
                let mut s = vigil_core::lock(&self.session);
                s.disconnecting = true;
                s.next()
            };
            if let Ok(client) = http_client(&self.id, "http", t) {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let _ = tokio::time::timeout(left, exchange(&client, &t.endpoint, &msg)).await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
