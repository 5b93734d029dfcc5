//! `coralogix`: otelcol-contrib's exporter to Coralogix. It is the `otlp` exporter's gRPC transport
//! (one [`GrpcSender`] per signal) behind one sending queue and retry stack, with Coralogix's
//! addressing, key and naming:
//!
//! - Endpoints: `domain: eu2.coralogix.com` sends every signal to `ingress.eu2.coralogix.com:443`
//!   (`ingress.private.<domain>:443` with `private_link: true`); a signal's own block
//!   (`traces::endpoint`, ...) overrides it. A signal's block is merged over `domain_settings` as
//!   upstream merges them: its compression, TLS (when it sets `insecure`, `insecure_skip_verify` or
//!   `ca_file`), balancer, keepalive and `auth` win, headers are joined with the signal's winning.
//! - `private_key` goes on every request as `Authorization: Bearer <key>`.
//! - Each resource gets `cx.application.name` and `cx.subsystem.name`: the first non-empty resource
//!   attribute named in `application_name_attributes` / `subsystem_name_attributes`, else
//!   `application_name` / `subsystem_name`, else the attribute already there.
//! - `rate_limiter` (default on, 10 errors, 1m): after `threshold` answers that retrying cannot fix
//!   (UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED without RetryInfo), every export
//!   fails permanently for `duration` without being sent, so a bad key or a spent quota does not
//!   flood Coralogix; counted in `vigil_coralogix_rate_limited_requests{exporter}`.
//! - `timeout`, `retry_on_failure` and `sending_queue` (with `batch`) are the exporterhelper keys.
//!
//! Profiles (`profiles` pipelines, alpha as upstream) go over the same transport, to their own
//! block's endpoint or the domain's. Not built, refused by name: `protocol: http` (upstream's
//! OTLP/HTTP mode) and a signal's `proxy_url`. gRPC-Go's `read_buffer_size`,
//! `write_buffer_size`, `wait_for_ready`, `authority` and `accept_encoding` are accepted and have no effect (tonic sizes its own buffers;
//! a call that cannot connect fails retryably and the retry stack waits; answers are accepted
//! gzip- or zstd-compressed). The top-level `endpoint` of old versions (the Jaeger-based traces
//! protocol), removed from contrib, is refused as the different component it was.

use crate::helper::auth::AuthConfig;
use crate::helper::{
    Compression, Delivered, QueueConfig, RetryConfig, SendError, SendSettings, SendStack, Sender,
};
use crate::otlp::{Balancer, GrpcRequest, GrpcSender, Keepalive, OtlpConfig};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_core::config::{duration, TlsClientConfig};
use vigil_core::factory::{DynExporterFactory, ExporterFactory, FactoryBase};
use vigil_core::otlp::common::v1::{any_value, AnyValue, KeyValue};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::{
    lock, ComponentId, ComponentKind, ConfigError, Exporter, Host, Settings, Signal, Stability,
    Telemetry,
};

const APP_ATTR: &str = "cx.application.name";
const SUBSYSTEM_ATTR: &str = "cx.subsystem.name";

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// `protocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Grpc,
    Http,
}

/// A signal's transport block and `domain_settings`: configgrpc's client keys and upstream's two
/// HTTP-only ones. Every key is optional, so that merging can tell "set" from "default".
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransportConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    #[serde(default)]
    pub tls: TlsClientConfig,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balancer_name: Option<Balancer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<Keepalive>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// gRPC-Go tuning without a tonic counterpart: accepted, no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_buffer_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_buffer_size: Option<u64>,
    #[serde(default)]
    pub wait_for_ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_encoding: Option<String>,
    /// HTTP only (`protocol: http`, not built).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
    /// HTTP only: the top-level `timeout` applies to gRPC calls.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "vigil_core::config::opt_duration"
    )]
    pub timeout: Option<Duration>,
}

/// `rate_limiter`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimiterConfig {
    pub enabled: bool,
    /// Errors that retrying cannot fix before sending stops.
    pub threshold: u32,
    /// How long sending stops.
    #[serde(with = "duration")]
    pub duration: Duration,
}

impl Default for RateLimiterConfig {
    fn default() -> Self {
        RateLimiterConfig {
            enabled: true,
            threshold: 10,
            duration: Duration::from_secs(60),
        }
    }
}

/// The `coralogix` exporter config, with otelcol-contrib's keys.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CoralogixConfig {
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default)]
    pub domain_settings: TransportConfig,
    #[serde(default)]
    pub private_link: bool,
    #[serde(default)]
    pub traces: TransportConfig,
    #[serde(default)]
    pub metrics: TransportConfig,
    #[serde(default)]
    pub logs: TransportConfig,
    #[serde(default)]
    pub profiles: TransportConfig,
    #[serde(default, serialize_with = "redacted")]
    pub private_key: String,
    #[serde(default)]
    pub application_name: String,
    #[serde(default)]
    pub subsystem_name: String,
    #[serde(default)]
    pub application_name_attributes: Vec<String>,
    #[serde(default)]
    pub subsystem_name_attributes: Vec<String>,
    #[serde(default)]
    pub rate_limiter: RateLimiterConfig,
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    #[serde(default)]
    pub sending_queue: QueueConfig,
    /// Removed from contrib (it was the traces endpoint of the Jaeger-based protocol); refused.
    #[serde(default, skip_serializing)]
    pub endpoint: Option<String>,
}

fn redacted<S: serde::Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    if v.is_empty() {
        s.serialize_str("")
    } else {
        s.serialize_str("[REDACTED]")
    }
}

fn config_error(id: &ComponentId, path: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Exporter, id, path, msg)
}

/// Upstream's test for an endpoint that is not set.
fn is_empty(endpoint: &str) -> bool {
    matches!(endpoint, "" | "https://" | "http://")
}

const SIGNALS: [(Signal, &str); 4] = [
    (Signal::Traces, "traces"),
    (Signal::Metrics, "metrics"),
    (Signal::Logs, "logs"),
    (Signal::Profiles, "profiles"),
];

impl CoralogixConfig {
    fn signal(&self, name: &str) -> &TransportConfig {
        match name {
            "traces" => &self.traces,
            "metrics" => &self.metrics,
            "logs" => &self.logs,
            _ => &self.profiles,
        }
    }

    fn domain_endpoint(&self) -> Option<String> {
        if is_empty(&self.domain) {
            return None;
        }
        Some(if self.private_link && !self.domain.contains("private.") {
            format!("ingress.private.{}:443", self.domain)
        } else {
            format!("ingress.{}:443", self.domain)
        })
    }

    /// The `otlp` transport config of one signal (`traces`, ...): its block merged over
    /// `domain_settings`; `None` when neither it nor `domain` gives an endpoint.
    fn transport(&self, name: &str) -> Option<OtlpConfig> {
        let d = &self.domain_settings;
        let s = self.signal(name);
        let endpoint = if is_empty(&s.endpoint) {
            self.domain_endpoint()?
        } else {
            s.endpoint.clone()
        };
        let tls = if s.tls.insecure || s.tls.insecure_skip_verify || s.tls.ca_file.is_some() {
            s.tls.clone()
        } else {
            d.tls.clone()
        };
        let mut headers = d.headers.clone();
        headers.extend(s.headers.clone());
        headers.insert(
            "Authorization".into(),
            format!("Bearer {}", self.private_key),
        );
        Some(OtlpConfig {
            endpoint,
            tls,
            headers,
            compression: s.compression.or(d.compression).unwrap_or(Compression::Gzip),
            timeout: self.timeout,
            retry_on_failure: RetryConfig {
                enabled: false,
                ..RetryConfig::default()
            },
            sending_queue: QueueConfig {
                enabled: false,
                ..QueueConfig::default()
            },
            auth: s.auth.clone().or_else(|| d.auth.clone()),
            balancer_name: s.balancer_name.or(d.balancer_name).unwrap_or_default(),
            keepalive: s.keepalive.clone().or_else(|| d.keepalive.clone()),
            authority: None,
            wait_for_ready: false,
            read_buffer_size: None,
            write_buffer_size: None,
        })
    }

    fn settings(&self) -> SendSettings {
        SendSettings {
            timeout: self.timeout,
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
        }
    }

    fn validate(&self, id: &ComponentId) -> Result<(), ConfigError> {
        if self.endpoint.is_some() {
            // Said the way a component vigil lacks is said (tests/tests/compat.rs counts such
            // errors with the unknown types): the old exporter spoke another protocol.
            return Err(config_error(
                id,
                "endpoint",
                "a component vigil does not have: the coralogix exporter of old otelcol-contrib \
                 versions (a top-level `endpoint` for Coralogix's Jaeger-based traces ingress, \
                 removed from contrib); the current one, which vigil has, takes `domain` or \
                 `traces::endpoint`",
            ));
        }
        if self.protocol == Protocol::Http {
            return Err(config_error(
                id,
                "protocol",
                "http is not built in vigil's coralogix exporter: use grpc (the default)",
            ));
        }
        let any = self.domain_endpoint().is_some()
            || ["traces", "metrics", "logs", "profiles"]
                .iter()
                .any(|n| !is_empty(&self.signal(n).endpoint));
        if !any {
            return Err(config_error(
                id,
                "domain",
                "`domain` or `traces::endpoint` or `metrics::endpoint` or `logs::endpoint` or \
                 `profiles::endpoint` not specified",
            ));
        }
        if self.private_key.is_empty() {
            return Err(config_error(id, "private_key", "not specified"));
        }
        if self.application_name.is_empty() {
            return Err(config_error(id, "application_name", "not specified"));
        }
        if self.rate_limiter.enabled {
            if self.rate_limiter.threshold == 0 {
                return Err(config_error(
                    id,
                    "rate_limiter::threshold",
                    "must be greater than 0",
                ));
            }
            if self.rate_limiter.duration.is_zero() {
                return Err(config_error(
                    id,
                    "rate_limiter::duration",
                    "must be greater than 0",
                ));
            }
        }
        for name in ["domain_settings", "traces", "metrics", "logs", "profiles"] {
            let t = if name == "domain_settings" {
                &self.domain_settings
            } else {
                self.signal(name)
            };
            if t.proxy_url.is_some() {
                return Err(config_error(
                    id,
                    &format!("{name}::proxy_url"),
                    "is for protocol: http, which is not built",
                ));
            }
        }
        // Each signal's transport is checked as the `otlp` exporter checks its own config (TLS
        // files, headers, endpoint syntax), its errors put under the signal's key.
        for name in ["traces", "metrics", "logs", "profiles"] {
            if let Some(t) = self.transport(name) {
                let own = !is_empty(&self.signal(name).endpoint);
                t.validate(id).map_err(|e| reroot(id, name, own, &e))?;
            }
        }
        self.settings().validate(id)
    }
}

/// `e` (an `otlp` config error on `id`) with its key path under `name`: the key a user wrote.
fn reroot(id: &ComponentId, name: &str, own_endpoint: bool, e: &ConfigError) -> ConfigError {
    let text = e.to_string();
    let inner = text
        .split_once(&format!("exporters::{id}::"))
        .map_or(text.as_str(), |(_, rest)| rest);
    let (path, msg) = inner.split_once(": ").unwrap_or(("", inner));
    let key = match path {
        // The endpoint of a signal without one of its own is the domain's.
        "endpoint" if !own_endpoint => "domain".to_string(),
        _ => format!("{name}::{path}"),
    };
    config_error(id, &key, msg)
}

/// Applies `application_name(_attributes)` and `subsystem_name(_attributes)` to one resource, as
/// upstream's `getMetadataFromResource`.
fn name_resource(cfg: &CoralogixConfig, resource: &mut Option<Resource>) {
    let r = resource.get_or_insert_with(Resource::default);
    let text = |key: &str| {
        r.attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
            let s = match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => s.clone(),
                any_value::Value::IntValue(i) => i.to_string(),
                any_value::Value::DoubleValue(d) => d.to_string(),
                any_value::Value::BoolValue(b) => b.to_string(),
                _ => return None,
            };
            (!s.is_empty()).then_some(s)
        })
    };
    let pick = |keys: &[String], default: &str, own: &str| {
        keys.iter()
            .find_map(|k| text(k))
            .or_else(|| (!default.is_empty()).then(|| default.to_string()))
            .or_else(|| text(own))
            .unwrap_or_default()
    };
    let app = pick(
        &cfg.application_name_attributes,
        &cfg.application_name,
        APP_ATTR,
    );
    let subsystem = pick(
        &cfg.subsystem_name_attributes,
        &cfg.subsystem_name,
        SUBSYSTEM_ATTR,
    );
    for (key, value) in [(APP_ATTR, app), (SUBSYSTEM_ATTR, subsystem)] {
        let value = Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        });
        match r.attributes.iter_mut().find(|kv| kv.key == key) {
            Some(kv) => kv.value = value,
            None => r.attributes.push(KeyValue {
                key: key.into(),
                value,
                ..Default::default()
            }),
        }
    }
}

/// `rate_limiter`'s state.
struct RateLimit {
    cfg: RateLimiterConfig,
    state: Mutex<(u32, Option<Instant>)>,
    refused: metrics::Counter,
}

impl RateLimit {
    /// `Err` while sending is stopped.
    fn check(&self, now: Instant) -> Result<(), SendError> {
        if !self.cfg.enabled {
            return Ok(());
        }
        let mut st = lock(&self.state);
        match st.1 {
            Some(since) if now.duration_since(since) <= self.cfg.duration => {
                self.refused.increment(1);
                Err(SendError::permanent(format!(
                    "rate limit exceeded: {} errors that retrying cannot fix; sending resumes {:?} after the last",
                    self.cfg.threshold, self.cfg.duration
                )))
            }
            Some(_) => {
                *st = (0, None);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Notes an answer; errors that retrying cannot fix count towards the threshold.
    fn note(&self, e: &SendError, now: Instant) {
        if !self.cfg.enabled || !flags_rate_limit(e) {
            return;
        }
        let mut st = lock(&self.state);
        st.0 += 1;
        if st.0 >= self.cfg.threshold {
            st.1 = Some(now);
        }
    }
}

/// Upstream's `shouldRetry` second answer: an authentication or quota failure. The classifier
/// names the gRPC code first in its reason; RESOURCE_EXHAUSTED counts only when it was final (no
/// RetryInfo), i.e. when the error is permanent.
fn flags_rate_limit(e: &SendError) -> bool {
    let SendError::Permanent { reason } = e else {
        return false;
    };
    [
        "gRPC UNAUTHENTICATED",
        "gRPC PERMISSION_DENIED",
        "gRPC RESOURCE_EXHAUSTED",
    ]
    .iter()
    .any(|code| reason.starts_with(code))
}

/// One `otlp` transport per signal that has an endpoint, the naming, and the rate limit.
pub struct CoralogixSender {
    id: ComponentId,
    cfg: Arc<CoralogixConfig>,
    signals: BTreeMap<Signal, GrpcSender>,
    limit: RateLimit,
}

#[async_trait]
impl Sender for CoralogixSender {
    type Request = GrpcRequest;

    fn prepare(&self, data: &Telemetry) -> Result<GrpcRequest, SendError> {
        let sender = self.signals.get(&data.signal()).ok_or_else(|| {
            SendError::permanent(format!(
                "{}: no endpoint for {}: set `domain` or `{}::endpoint`",
                self.id,
                data.signal(),
                data.signal()
            ))
        })?;
        let mut data = data.clone();
        match &mut data {
            Telemetry::Traces(rs) => rs
                .iter_mut()
                .for_each(|r| name_resource(&self.cfg, &mut r.resource)),
            Telemetry::Metrics(rs) => rs
                .iter_mut()
                .for_each(|r| name_resource(&self.cfg, &mut r.resource)),
            Telemetry::Logs(rs) => rs
                .iter_mut()
                .for_each(|r| name_resource(&self.cfg, &mut r.resource)),
            Telemetry::Profiles(p) => p
                .resource_profiles
                .iter_mut()
                .for_each(|r| name_resource(&self.cfg, &mut r.resource)),
        }
        sender.prepare(&data)
    }

    async fn send(&self, req: &GrpcRequest) -> Result<Delivered, SendError> {
        let now = Instant::now();
        self.limit.check(now)?;
        let sender = self.signals.get(&req.signal()).ok_or_else(|| {
            SendError::permanent(format!("{}: no endpoint for {}", self.id, req.signal()))
        })?;
        let result = sender.send(req).await;
        if let Err(e) = &result {
            self.limit.note(e, now);
        }
        result
    }

    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        for s in self.signals.values() {
            s.start(host).await?;
        }
        Ok(())
    }
}

fn build(set: &Settings, cfg: CoralogixConfig) -> Result<SendStack<CoralogixSender>, ConfigError> {
    let id = &set.id;
    cfg.validate(id)?;
    let mut signals = BTreeMap::new();
    for (signal, name) in SIGNALS {
        if let Some(t) = cfg.transport(name) {
            signals.insert(signal, crate::otlp::sender(id, &t)?);
        }
    }
    let settings = cfg.settings();
    let refused =
        metrics::counter!("vigil_coralogix_rate_limited_requests", "exporter" => id.to_string());
    let sender = CoralogixSender {
        id: id.clone(),
        limit: RateLimit {
            cfg: cfg.rate_limiter.clone(),
            state: Mutex::new((0, None)),
            refused,
        },
        cfg: Arc::new(cfg),
        signals,
    };
    Ok(SendStack::new(set, settings, sender))
}

struct Factory;

/// The `coralogix` exporter factory.
pub fn factory() -> Arc<dyn DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl FactoryBase for Factory {
    type Config = CoralogixConfig;

    fn type_name(&self) -> &'static str {
        "coralogix"
    }

    /// `private_key`, `application_name` and an endpoint have no default.
    fn default_config(&self) -> Option<CoralogixConfig> {
        None
    }

    fn validate(&self, id: &ComponentId, cfg: &CoralogixConfig) -> Result<(), ConfigError> {
        cfg.validate(id)
    }
}

impl ExporterFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Beta),
            (Signal::Metrics, Stability::Beta),
            (Signal::Logs, Stability::Beta),
            (Signal::Profiles, Stability::Alpha),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: CoralogixConfig,
    ) -> Result<Arc<dyn Exporter>, ConfigError> {
        Ok(Arc::new(build(&set, cfg)?))
    }
}

#[cfg(test)]
#[path = "coralogix_tests.rs"]
mod tests;
