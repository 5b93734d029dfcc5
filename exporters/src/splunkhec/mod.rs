//! `splunk_hec`: sends logs, metrics and traces to a Splunk HTTP Event Collector as HEC JSON
//! events (`convert.rs`), `POST {endpoint}` (`/services/collector` when the endpoint has no
//! path) with `Authorization: Splunk <token>`, gzip unless `disable_compression`, as
//! otelcol-contrib's exporter does. A batch is cut into bodies of at most
//! `max_content_length_<signal>` bytes (a [`Parts`] request, so a retry resends only bodies not
//! yet accepted); an event over `max_event_size`, or a log record with an empty body, is dropped
//! and counted as failed. A resource with `com.splunk.hec.access_token` is sent with that token.
//! `log_data_enabled` / `profiling_data_enabled` pick which logs go (profiling logs are those of
//! the `otel.profiling` scope). Delivery, retries and the queue are the shared `SendStack`.
//!
//! Not built, refused at validate when turned on: `export_raw`, `use_multi_metric_format`,
//! `heartbeat`, `telemetry.enabled`.

mod convert;

#[cfg(test)]
mod tests;

use crate::helper::http::{check_client, error_chain, http_client};
use crate::helper::parts::{Part, Parts};
use crate::helper::{
    Compression, Delivered, QueueConfig, RetryConfig, SendError, SendSettings, SendStack, Sender,
};
use crate::signalfx::classify_splunk;
use async_trait::async_trait;
use bytes::Bytes;
use convert::{Defaults, MetaKeys, TOKEN_ATTR};
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use vigil_core::attrs::get_str;
use vigil_core::config::{duration, opt_duration, TlsClientConfig};
use vigil_core::factory::{DynExporterFactory, ExporterFactory, FactoryBase};
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::{
    ComponentId, ComponentKind, ConfigError, Exporter, Host, Settings, Signal, Stability, Telemetry,
};

const MIB: u64 = 1024 * 1024;
/// The largest `max_content_length_*` and `max_event_size` upstream accepts (800 MiB).
const MAX_LIMIT: u64 = 800 * MIB;
/// The scope name of profiling data sent as logs.
const PROFILING_SCOPE: &str = "otel.profiling";

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn yes() -> bool {
    true
}
fn two_mib() -> u64 {
    2 * MIB
}
fn five_mib() -> u64 {
    5 * MIB
}
fn default_app_name() -> String {
    "OpenTelemetry Collector Contrib".into()
}
fn default_health_path() -> String {
    "/services/collector/health".into()
}

pub use vigil_core::splunkhec::HecToOtelAttrs;

/// `otel_to_hec_fields`: the fields a log record's severity goes to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtelToHecFields {
    pub severity_text: String,
    pub severity_number: String,
}

impl Default for OtelToHecFields {
    fn default() -> Self {
        OtelToHecFields {
            severity_text: "otel.log.severity.text".into(),
            severity_number: "otel.log.severity.number".into(),
        }
    }
}

/// `heartbeat`: not built; refused when turned on.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    #[serde(default, with = "opt_duration")]
    pub interval: Option<Duration>,
    #[serde(default)]
    pub startup: bool,
}

/// `telemetry`: the exporter's own extra metrics; not built, refused when enabled.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HecTelemetry {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub override_metrics_names: BTreeMap<String, String>,
    #[serde(default)]
    pub extra_attributes: BTreeMap<String, String>,
}

/// The `splunk_hec` config, with otelcol-contrib's keys and defaults.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkHecConfig {
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    source: String,
    #[serde(default)]
    sourcetype: String,
    #[serde(default)]
    index: String,
    #[serde(default)]
    disable_compression: bool,
    #[serde(default = "two_mib")]
    max_content_length_logs: u64,
    #[serde(default = "two_mib")]
    max_content_length_metrics: u64,
    #[serde(default = "two_mib")]
    max_content_length_traces: u64,
    #[serde(default = "five_mib")]
    max_event_size: u64,
    #[serde(default = "default_app_name")]
    splunk_app_name: String,
    #[serde(default)]
    splunk_app_version: String,
    #[serde(default)]
    hec_metadata_to_otel_attrs: HecToOtelAttrs,
    #[serde(default)]
    otel_to_hec_fields: OtelToHecFields,
    #[serde(default = "default_health_path")]
    health_path: String,
    #[serde(default)]
    health_check_enabled: bool,
    #[serde(default)]
    export_raw: bool,
    #[serde(default)]
    use_multi_metric_format: bool,
    #[serde(default)]
    heartbeat: Heartbeat,
    #[serde(default)]
    telemetry: HecTelemetry,
    #[serde(default = "yes")]
    log_data_enabled: bool,
    #[serde(default = "yes")]
    profiling_data_enabled: bool,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    tls: TlsClientConfig,
    #[serde(default = "default_timeout", with = "duration")]
    timeout: Duration,
    #[serde(default)]
    retry_on_failure: RetryConfig,
    #[serde(default)]
    sending_queue: QueueConfig,
    // Connection-pool keys (confighttp's, and the older `max_connections`): read; reqwest's pool
    // keeps its own limits.
    #[serde(default)]
    max_connections: Option<u64>,
    #[serde(default)]
    max_idle_conns: Option<u64>,
    #[serde(default)]
    max_idle_conns_per_host: Option<u64>,
    #[serde(default)]
    max_conns_per_host: Option<u64>,
    #[serde(default, with = "opt_duration")]
    idle_conn_timeout: Option<Duration>,
    #[serde(default)]
    disable_keep_alives: bool,
}

fn config_error(id: &ComponentId, path: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Exporter, id, path, msg)
}

impl SplunkHecConfig {
    fn settings(&self) -> SendSettings {
        SendSettings {
            timeout: self.timeout,
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
        }
    }

    /// `endpoint`, with HEC's path when it has none.
    fn url(&self, id: &ComponentId) -> Result<Url, ConfigError> {
        let raw = self
            .endpoint
            .as_deref()
            .filter(|e| !e.is_empty())
            .ok_or_else(|| config_error(id, "endpoint", "requires a non-empty \"endpoint\""))?;
        let mut url = Url::parse(raw)
            .map_err(|e| config_error(id, "endpoint", format!("invalid URL {raw:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(config_error(
                id,
                "endpoint",
                format!("invalid URL {raw:?}: expected an http:// or https:// URL with a host"),
            ));
        }
        if url.path().is_empty() || url.path() == "/" {
            url.set_path("/services/collector");
        }
        Ok(url)
    }

    fn health_url(&self, id: &ComponentId) -> Result<Url, ConfigError> {
        let mut url = self.url(id)?;
        url.set_path(&self.health_path);
        url.set_query(None);
        Ok(url)
    }

    fn validate(&self, id: &ComponentId) -> Result<(), ConfigError> {
        if !self.log_data_enabled && !self.profiling_data_enabled {
            return Err(config_error(
                id,
                "log_data_enabled",
                "either \"log_data_enabled\" or \"profiling_data_enabled\" has to be true",
            ));
        }
        self.url(id)?;
        if self.token.as_deref().is_none_or(str::is_empty) {
            return Err(config_error(id, "token", "requires a non-empty \"token\""));
        }
        for (key, v) in [
            ("max_content_length_logs", self.max_content_length_logs),
            (
                "max_content_length_metrics",
                self.max_content_length_metrics,
            ),
            ("max_content_length_traces", self.max_content_length_traces),
            ("max_event_size", self.max_event_size),
        ] {
            if v > MAX_LIMIT {
                return Err(config_error(
                    id,
                    key,
                    format!("requires {key} <= {MAX_LIMIT}, got {v}"),
                ));
            }
        }
        for (key, on) in [
            ("export_raw", self.export_raw),
            ("use_multi_metric_format", self.use_multi_metric_format),
            (
                "heartbeat",
                self.heartbeat.startup || self.heartbeat.interval.is_some_and(|d| !d.is_zero()),
            ),
            ("telemetry::enabled", self.telemetry.enabled),
        ] {
            if on {
                return Err(config_error(
                    id,
                    key,
                    "not built in vigil; leave it off (events are sent one JSON object each)",
                ));
            }
        }
        self.settings().validate(id)?;
        check_client(id, &self.headers, &self.tls)
    }
}

/// The HEC transport.
pub struct HecSender {
    client: reqwest::Client,
    url: Url,
    health: Option<Url>,
    token: String,
    compression: Compression,
    keys: MetaKeys,
    defaults: Defaults,
    limits: [u64; 3],
    max_event: u64,
    logs: bool,
    profiling: bool,
}

fn resource_attrs(r: &Option<vigil_core::otlp::resource::v1::Resource>) -> &[KeyValue] {
    r.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[])
}

impl HecSender {
    fn limit(&self, signal: Signal) -> u64 {
        let l = if signal == Signal::Logs {
            self.limits[0]
        } else if signal == Signal::Metrics {
            self.limits[1]
        } else {
            self.limits[2]
        };
        // 0 means no limit, as upstream.
        if l == 0 {
            u64::MAX
        } else {
            l
        }
    }

    /// Events per token, in first-seen order.
    fn events(&self, data: &Telemetry, dropped: &mut u64) -> Vec<(Option<String>, Vec<Json>)> {
        let mut groups: Vec<(Option<String>, Vec<Json>)> = Vec::new();
        let mut push = |token: Option<String>, evs: Vec<Json>| match groups
            .iter_mut()
            .find(|(t, _)| *t == token)
        {
            Some((_, g)) => g.extend(evs),
            None => groups.push((token, evs)),
        };
        let token_of = |attrs: &[KeyValue]| get_str(attrs, TOKEN_ATTR).map(str::to_string);
        // Spelled as `if let`s so that a signal this exporter does not take (its stability
        // table keeps it out) yields no events.
        if let Telemetry::Logs(rls) = data {
            {
                for rl in rls {
                    let res = resource_attrs(&rl.resource);
                    let mut evs = Vec::new();
                    for sl in &rl.scope_logs {
                        let profiling =
                            sl.scope.as_ref().is_some_and(|s| s.name == PROFILING_SCOPE);
                        if (profiling && !self.profiling) || (!profiling && !self.logs) {
                            continue;
                        }
                        for r in &sl.log_records {
                            match convert::log_event(r, res, &self.keys, &self.defaults) {
                                Some(e) => evs.push(e),
                                None => *dropped += 1,
                            }
                        }
                    }
                    push(token_of(res), evs);
                }
            }
        }
        if let Telemetry::Metrics(rms) = data {
            {
                for rm in rms {
                    let res = resource_attrs(&rm.resource);
                    let mut evs = Vec::new();
                    for sm in &rm.scope_metrics {
                        for m in &sm.metrics {
                            convert::metric_events(m, res, &self.keys, &self.defaults, &mut evs);
                        }
                    }
                    push(token_of(res), evs);
                }
            }
        }
        if let Telemetry::Traces(rss) = data {
            {
                for rs in rss {
                    let res = resource_attrs(&rs.resource);
                    let evs = rs
                        .scope_spans
                        .iter()
                        .flat_map(|ss| ss.spans.iter())
                        .map(|s| convert::span_event(s, res, &self.keys, &self.defaults))
                        .collect();
                    push(token_of(res), evs);
                }
            }
        }
        groups
    }

    fn finish(&self, body: Vec<u8>, token: Option<String>) -> Result<Part, SendError> {
        let body = self
            .compression
            .compress(body)
            .map_err(|e| SendError::permanent(format!("cannot compress the request: {e}")))?;
        Ok(Part {
            route: 0,
            token,
            body: Bytes::from(body),
        })
    }
}

#[async_trait]
impl Sender for HecSender {
    type Request = Parts;

    fn prepare(&self, data: &Telemetry) -> Result<Parts, SendError> {
        let mut dropped = 0u64;
        let mut too_big = 0u64;
        let limit = self.limit(data.signal());
        let mut parts = Vec::new();
        for (token, events) in self.events(data, &mut dropped) {
            let mut body: Vec<u8> = Vec::new();
            for e in events {
                let bytes = serde_json::to_vec(&e)
                    .map_err(|e| SendError::permanent(format!("cannot encode an event: {e}")))?;
                let len = bytes.len() as u64;
                if len > self.max_event || len > limit {
                    too_big += 1;
                    continue;
                }
                // Bodies are cut on the uncompressed size, which bounds the compressed one.
                if !body.is_empty() && body.len() as u64 + 1 + len > limit {
                    parts.push(self.finish(std::mem::take(&mut body), token.clone())?);
                }
                if !body.is_empty() {
                    body.push(b'\n');
                }
                body.extend_from_slice(&bytes);
            }
            if !body.is_empty() {
                parts.push(self.finish(body, token)?);
            }
        }
        let mut reasons = Vec::new();
        if dropped > 0 {
            reasons.push(format!("{dropped} log records with an empty body"));
        }
        if too_big > 0 {
            reasons.push(format!(
                "{too_big} events over max_event_size or max_content_length"
            ));
        }
        Ok(Parts::new(parts, dropped + too_big, reasons.join(", ")))
    }

    async fn send(&self, req: &Parts) -> Result<Delivered, SendError> {
        for (i, part) in req.pending() {
            let token = part.token.as_deref().unwrap_or(&self.token);
            let mut b = self
                .client
                .post(self.url.clone())
                .header(AUTHORIZATION, format!("Splunk {token}"))
                .header(CONTENT_TYPE, "application/json")
                .body(part.body.clone());
            if let Some(enc) = self.compression.encoding_name() {
                b = b.header(CONTENT_ENCODING, enc);
            }
            let resp = b.send().await.map_err(|e| {
                SendError::retryable(format!("cannot send to {}: {}", self.url, error_chain(&e)))
            })?;
            classify_splunk(resp, &self.url).await?;
            req.accepted(i);
        }
        Ok(Delivered {
            rejected: req.dropped,
            message: req.dropped_reason.clone(),
        })
    }

    /// With `health_check_enabled`, HEC's health endpoint must answer 200 before the exporter
    /// starts, as upstream checks it.
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let Some(url) = &self.health else {
            return Ok(());
        };
        let resp = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("HEC health check {url}: {}", error_chain(&e)))?;
        if !resp.status().is_success() {
            anyhow::bail!("HEC health check {url}: HTTP {}", resp.status());
        }
        Ok(())
    }
}

fn build(set: &Settings, cfg: SplunkHecConfig) -> Result<SendStack<HecSender>, ConfigError> {
    let id = &set.id;
    let mut headers = cfg.headers.clone();
    headers.insert("__splunk_app_name".into(), cfg.splunk_app_name.clone());
    headers.insert(
        "__splunk_app_version".into(),
        cfg.splunk_app_version.clone(),
    );
    let a = &cfg.hec_metadata_to_otel_attrs;
    let sender = HecSender {
        client: http_client(id, &headers, &cfg.tls)?,
        url: cfg.url(id)?,
        health: if cfg.health_check_enabled {
            Some(cfg.health_url(id)?)
        } else {
            None
        },
        token: cfg.token.clone().unwrap_or_default(),
        compression: if cfg.disable_compression {
            Compression::None
        } else {
            Compression::Gzip
        },
        keys: MetaKeys {
            source: a.source.clone(),
            sourcetype: a.sourcetype.clone(),
            index: a.index.clone(),
            host: a.host.clone(),
        },
        defaults: Defaults {
            source: cfg.source.clone(),
            sourcetype: cfg.sourcetype.clone(),
            index: cfg.index.clone(),
            severity_text: cfg.otel_to_hec_fields.severity_text.clone(),
            severity_number: cfg.otel_to_hec_fields.severity_number.clone(),
        },
        limits: [
            cfg.max_content_length_logs,
            cfg.max_content_length_metrics,
            cfg.max_content_length_traces,
        ],
        max_event: if cfg.max_event_size == 0 {
            u64::MAX
        } else {
            cfg.max_event_size
        },
        logs: cfg.log_data_enabled,
        profiling: cfg.profiling_data_enabled,
    };
    Ok(SendStack::new(set, cfg.settings(), sender))
}

struct Factory;

/// The `splunk_hec` exporter factory (`splunkhec` resolves to it too).
pub fn factory() -> Arc<dyn DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl FactoryBase for Factory {
    type Config = SplunkHecConfig;

    fn type_name(&self) -> &'static str {
        "splunk_hec"
    }

    fn validate(&self, id: &ComponentId, cfg: &SplunkHecConfig) -> Result<(), ConfigError> {
        cfg.validate(id)
    }
}

impl ExporterFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Beta),
            (Signal::Metrics, Stability::Beta),
            (Signal::Logs, Stability::Beta),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: SplunkHecConfig,
    ) -> Result<Arc<dyn Exporter>, ConfigError> {
        Ok(Arc::new(build(&set, cfg)?))
    }
}
