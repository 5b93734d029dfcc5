//! `datadog`: sends metrics, traces and logs to Datadog's intake as otelcol-contrib's exporter
//! does, with its keys and defaults. Metrics go to the metrics intake v2 (`POST
//! {metrics::endpoint}/api/v2/series`, gzip JSON) after upstream's OTLP-to-Datadog mapping
//! (`metrics.rs`); logs to `POST {logs::endpoint}/api/v2/logs` (gzip JSON, `logs.rs`); traces to
//! the trace intake as the trace agent's protobuf `AgentPayload` (`POST
//! {traces::endpoint}/api/v0.2/traces`, gzip, `traces.rs`). Every request carries `DD-API-KEY`.
//! Delivery, retries and the queue are the shared `SendStack`; a batch that needs several posts
//! (series and sketches, logs cut at Datadog's 1000 entries / 5 MB) is a [`Parts`] request, so a
//! retry resends only what is left. Histograms in `distributions` mode (the default) and delta
//! exponential histograms go as the agent's DDSketches to `/api/beta/sketches` (`sketch.rs`).
//!
//! Host metadata goes to `/intake` (`hostmeta.rs`); with `only_metadata` nothing else is sent.
//!
//! Not built: APM stats (`compute_stats_by_span_kind` and the peer-tag keys are read; no
//! `/api/v0.2/stats` payload is sent), host metadata's `gohai` and `processes` sections, and the
//! `logs::compression_level` (vigil's gzip level is used).

mod attrs;
mod hostmeta;
mod logs;
pub mod proto;
mod series;
mod sketch;
mod traces;

#[cfg(test)]
mod tests;

use crate::helper::http::{check_client, error_chain, http_client};
use crate::helper::parts::{Part, Parts};
use crate::helper::{
    classify, Compression, Delivered, QueueConfig, RetryConfig, SendError, SendSettings, SendStack,
    Sender,
};
use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::DropGuard;
use vigil_core::config::{duration, opt_duration, TlsClientConfig};
use vigil_core::factory::{DynExporterFactory, ExporterFactory, FactoryBase};
use vigil_core::{
    ComponentId, ComponentKind, ConfigError, Exporter, Host, Settings, Signal, Stability, Telemetry,
};

const ROUTE_SERIES: u8 = 0;
const ROUTE_LOGS: u8 = 1;
const ROUTE_TRACES: u8 = 2;
const ROUTE_SKETCHES: u8 = 3;

/// The header Datadog's intakes read the API key from.
const API_KEY_HEADER: &str = "DD-API-KEY";

fn default_site() -> String {
    "datadoghq.com".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(15)
}
fn yes() -> bool {
    true
}
fn default_delta_ttl() -> i64 {
    3600
}
fn default_compression_level() -> i64 {
    6
}
fn default_batch_wait() -> i64 {
    5
}
fn default_reporter_period() -> Duration {
    Duration::from_secs(30 * 60)
}

/// `api`: the key and the site every endpoint defaults from.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default)]
    pub key: String,
    #[serde(default = "default_site")]
    pub site: String,
    /// Upstream checks the key at start (`GET /api/v1/validate`) and only warns unless this is set.
    #[serde(default)]
    pub fail_on_invalid_key: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            key: String::new(),
            site: default_site(),
            fail_on_invalid_key: false,
        }
    }
}

/// `metrics::histograms::mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HistogramMode {
    #[default]
    Distributions,
    Counters,
    Nobuckets,
}

/// `metrics::sums::cumulative_monotonic_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CumulativeMonotonicMode {
    #[default]
    ToDelta,
    RawValue,
}

/// `metrics::sums::initial_cumulative_monotonic_value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialValueMode {
    #[default]
    Auto,
    Drop,
    Keep,
}

/// `metrics::summaries::mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SummaryMode {
    NoQuantiles,
    #[default]
    Gauges,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HistogramConfig {
    #[serde(default)]
    pub mode: HistogramMode,
    /// Deprecated upstream in favour of `send_aggregation_metrics`; either turns them on.
    #[serde(default)]
    pub send_count_sum_metrics: bool,
    #[serde(default)]
    pub send_aggregation_metrics: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SumConfig {
    #[serde(default)]
    pub cumulative_monotonic_mode: CumulativeMonotonicMode,
    /// `None` is upstream's `auto`; kept apart to refuse it with `raw_value`, as upstream does.
    #[serde(default)]
    pub initial_cumulative_monotonic_value: Option<InitialValueMode>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryConfig {
    #[serde(default)]
    pub mode: SummaryMode,
}

/// `metrics`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Seconds a cumulative series' last point is kept to compute the next delta.
    #[serde(default = "default_delta_ttl")]
    pub delta_ttl: i64,
    /// Default `https://api.{api::site}`.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub resource_attributes_as_tags: bool,
    #[serde(default)]
    pub instrumentation_scope_metadata_as_tags: bool,
    #[serde(default)]
    pub histograms: HistogramConfig,
    #[serde(default)]
    pub sums: SumConfig,
    #[serde(default)]
    pub summaries: SummaryConfig,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            delta_ttl: default_delta_ttl(),
            endpoint: None,
            resource_attributes_as_tags: false,
            instrumentation_scope_metadata_as_tags: false,
            histograms: HistogramConfig::default(),
            sums: SumConfig::default(),
            summaries: SummaryConfig::default(),
        }
    }
}

/// `traces`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    /// Default `https://trace.agent.{api::site}`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Regexes: a trace whose root span's resource matches one is not sent.
    #[serde(default)]
    pub ignore_resources: Vec<String>,
    #[serde(default)]
    pub span_name_remappings: BTreeMap<String, String>,
    #[serde(default)]
    pub span_name_as_resource_name: bool,
    /// Read; APM stats are not built (see the module docs).
    #[serde(default = "yes")]
    pub compute_stats_by_span_kind: bool,
    #[serde(default)]
    pub compute_top_level_by_span_kind: bool,
    #[serde(default = "yes")]
    pub peer_service_aggregation: bool,
    #[serde(default = "yes")]
    pub peer_tags_aggregation: bool,
    #[serde(default)]
    pub peer_tags: Vec<String>,
    /// Upstream's count of payloads its writer buffers; vigil's sending queue does that job.
    #[serde(default)]
    pub trace_buffer: i64,
}

impl Default for TracesConfig {
    fn default() -> Self {
        TracesConfig {
            endpoint: None,
            ignore_resources: Vec::new(),
            span_name_remappings: BTreeMap::new(),
            span_name_as_resource_name: false,
            compute_stats_by_span_kind: true,
            compute_top_level_by_span_kind: false,
            peer_service_aggregation: true,
            peer_tags_aggregation: true,
            peer_tags: Vec::new(),
            trace_buffer: 0,
        }
    }
}

/// `logs`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// Default `https://http-intake.logs.{api::site}`.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default = "yes")]
    pub use_compression: bool,
    /// 0-9; read, vigil's gzip level is used.
    #[serde(default = "default_compression_level")]
    pub compression_level: i64,
    /// Seconds upstream's logs agent waits to fill a batch; vigil sends each batch it is given.
    #[serde(default = "default_batch_wait")]
    pub batch_wait: i64,
    /// Older upstream key (log each payload); read.
    #[serde(default)]
    pub dump_payloads: bool,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            endpoint: None,
            use_compression: true,
            compression_level: default_compression_level(),
            batch_wait: default_batch_wait(),
            dump_payloads: false,
        }
    }
}

/// `host_metadata::hostname_source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostnameSource {
    FirstResource,
    #[default]
    ConfigOrSystem,
}

/// `host_metadata`: the payload `hostmeta.rs` sends.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostMetadataConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub hostname_source: HostnameSource,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default = "default_reporter_period", with = "duration")]
    pub reporter_period: Duration,
}

impl Default for HostMetadataConfig {
    fn default() -> Self {
        HostMetadataConfig {
            enabled: true,
            hostname_source: HostnameSource::default(),
            tags: Vec::new(),
            reporter_period: default_reporter_period(),
        }
    }
}

/// The `datadog` config, with otelcol-contrib's keys and defaults.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatadogConfig {
    #[serde(default)]
    api: ApiConfig,
    /// The fallback hostname for telemetry with no host attribute (else the system's).
    #[serde(default)]
    hostname: String,
    #[serde(default, with = "opt_duration")]
    hostname_detection_timeout: Option<Duration>,
    #[serde(default)]
    only_metadata: bool,
    #[serde(default)]
    metrics: MetricsConfig,
    #[serde(default)]
    traces: TracesConfig,
    #[serde(default)]
    logs: LogsConfig,
    #[serde(default)]
    host_metadata: HostMetadataConfig,
    #[serde(default = "default_timeout", with = "duration")]
    timeout: Duration,
    #[serde(default)]
    tls: TlsClientConfig,
    #[serde(default)]
    retry_on_failure: RetryConfig,
    #[serde(default)]
    sending_queue: QueueConfig,
    // confighttp keys that upstream refuses for this exporter (its validate names them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    compression: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<serde_json::Value>,
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    http2_read_idle_timeout: Option<Duration>,
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    http2_ping_timeout: Option<Duration>,
    // confighttp keys upstream reads: read; reqwest's pool and proxy settings keep their own.
    #[serde(default)]
    proxy_url: Option<String>,
    #[serde(default)]
    read_buffer_size: Option<u64>,
    #[serde(default)]
    write_buffer_size: Option<u64>,
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

fn parse_url(id: &ComponentId, key: &str, raw: &str) -> Result<Url, ConfigError> {
    if raw.is_empty() {
        return Err(config_error(id, key, "endpoint cannot be empty"));
    }
    let url =
        Url::parse(raw).map_err(|e| config_error(id, key, format!("invalid URL {raw:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(config_error(
            id,
            key,
            format!("invalid URL {raw:?}: expected an http:// or https:// URL with a host"),
        ));
    }
    Ok(url)
}

fn join(base: &Url, path: &str) -> Url {
    let mut u = base.clone();
    u.set_path(&format!("{}/{path}", base.path().trim_end_matches('/')));
    u
}

/// The Datadog agent's hostname check (which upstream's validate calls): RFC 1123 labels, at most
/// 255 characters, and not a name every machine has.
fn hostname_problem(name: &str) -> Option<String> {
    const LOCAL: &[&str] = &[
        "localhost",
        "localhost.localdomain",
        "localhost6.localdomain6",
        "ip6-localhost",
    ];
    if LOCAL.contains(&name.to_ascii_lowercase().as_str()) {
        return Some(format!("{name:?} is a local hostname"));
    }
    if name.len() > 255 {
        return Some(format!("{name:?} is longer than 255 characters"));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    (!name.split('.').all(label_ok)).then(|| format!("{name:?} is not RFC1123 compliant"))
}

impl DatadogConfig {
    fn settings(&self) -> SendSettings {
        SendSettings {
            timeout: self.timeout,
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
        }
    }

    fn endpoint(&self, which: &str) -> String {
        let (set, default) = match which {
            "metrics" => (
                &self.metrics.endpoint,
                format!("https://api.{}", self.api.site),
            ),
            "traces" => (
                &self.traces.endpoint,
                format!("https://trace.agent.{}", self.api.site),
            ),
            _ => (
                &self.logs.endpoint,
                format!("https://http-intake.logs.{}", self.api.site),
            ),
        };
        set.clone().unwrap_or(default)
    }

    fn url(&self, id: &ComponentId, which: &str) -> Result<Url, ConfigError> {
        parse_url(id, &format!("{which}::endpoint"), &self.endpoint(which))
    }

    fn validate(&self, id: &ComponentId) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let mut unsupported = Vec::new();
        for (key, set) in [
            ("auth", self.auth.is_some()),
            (
                "endpoint",
                self.endpoint.as_deref().is_some_and(|e| !e.is_empty()),
            ),
            (
                "compression",
                self.compression.as_deref().is_some_and(|c| !c.is_empty()),
            ),
            ("headers", !self.headers.is_empty()),
            (
                "http2_read_idle_timeout",
                self.http2_read_idle_timeout.is_some_and(|d| !d.is_zero()),
            ),
            (
                "http2_ping_timeout",
                self.http2_ping_timeout.is_some_and(|d| !d.is_zero()),
            ),
        ] {
            if set {
                unsupported.push(key);
            }
        }
        if let Some(first) = unsupported.first() {
            errors.push(config_error(
                id,
                first,
                format!(
                    "these confighttp client configs are currently not respected by Datadog \
                     exporter: {}",
                    unsupported.join(", ")
                ),
            ));
        }
        if self.only_metadata
            && (!self.host_metadata.enabled
                || self.host_metadata.hostname_source != HostnameSource::FirstResource)
        {
            errors.push(config_error(
                id,
                "only_metadata",
                "only_metadata can't be enabled when host_metadata::enabled = false or \
                 host_metadata::hostname_source != first_resource",
            ));
        }
        if !self.hostname.is_empty() {
            if let Some(p) = hostname_problem(&self.hostname) {
                errors.push(config_error(
                    id,
                    "hostname",
                    format!("hostname field is invalid: {p}"),
                ));
            }
        }
        if self.api.key.trim().is_empty() {
            errors.push(config_error(id, "api::key", "api.key is not set"));
        }
        for (i, re) in self.traces.ignore_resources.iter().enumerate() {
            if let Err(e) = vigil_core::config::re2_regex(re) {
                errors.push(config_error(
                    id,
                    &format!("traces::ignore_resources::{i}"),
                    format!("'{re}' is not valid resource filter regular expression: {e}"),
                ));
            }
        }
        for (k, v) in &self.traces.span_name_remappings {
            if k.is_empty() || v.is_empty() {
                errors.push(config_error(
                    id,
                    "traces::span_name_remappings",
                    format!("{k:?}: {v:?} is not a valid span name remapping (empty)"),
                ));
            }
        }
        if self.traces.trace_buffer < 0 {
            errors.push(config_error(
                id,
                "traces::trace_buffer",
                "trace buffer must be non-negative",
            ));
        }
        let h = &self.metrics.histograms;
        if h.mode == HistogramMode::Nobuckets
            && !h.send_aggregation_metrics
            && !h.send_count_sum_metrics
        {
            errors.push(config_error(
                id,
                "metrics::histograms::mode",
                "'nobuckets' mode and `send_aggregation_metrics` set to false will send no \
                 histogram metrics",
            ));
        }
        if self
            .metrics
            .sums
            .initial_cumulative_monotonic_value
            .is_some()
            && self.metrics.sums.cumulative_monotonic_mode != CumulativeMonotonicMode::ToDelta
        {
            errors.push(config_error(
                id,
                "metrics::sums::initial_cumulative_monotonic_value",
                "\"metrics::sums::initial_cumulative_monotonic_value\" can only be configured \
                 when \"metrics::sums::cumulative_monotonic_mode\" is set to \"to_delta\"",
            ));
        }
        if self.metrics.delta_ttl <= 0 {
            errors.push(config_error(
                id,
                "metrics::delta_ttl",
                "expected a number of seconds above 0",
            ));
        }
        if !(0..=9).contains(&self.logs.compression_level) {
            errors.push(config_error(
                id,
                "logs::compression_level",
                format!("expected 0 to 9, got {}", self.logs.compression_level),
            ));
        }
        if self.host_metadata.reporter_period < Duration::from_secs(300) {
            errors.push(config_error(
                id,
                "host_metadata::reporter_period",
                "reporter_period must be 5 minutes or higher",
            ));
        }
        for which in ["metrics", "traces", "logs"] {
            if let Err(e) = self.url(id, which) {
                errors.push(e);
            }
        }
        if let Err(e) = self.settings().validate(id) {
            errors.push(e);
        }
        if let Err(e) = check_client(id, &BTreeMap::new(), &self.tls) {
            errors.push(e);
        }
        ConfigError::join(errors).map_or(Ok(()), Err)
    }
}

fn system_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
}

/// The host telemetry without a host attribute is reported under: `hostname`, else the system's.
fn fallback_hostname(cfg: &DatadogConfig) -> String {
    if !cfg.hostname.is_empty() {
        return cfg.hostname.clone();
    }
    system_hostname().unwrap_or_else(|| "unknown".into())
}

/// The host of the first resource of a batch that names one.
fn first_resource_host(data: &Telemetry) -> Option<String> {
    let resources: Vec<&Option<vigil_core::otlp::resource::v1::Resource>> = match data {
        Telemetry::Metrics(v) => v.iter().map(|r| &r.resource).collect(),
        Telemetry::Logs(v) => v.iter().map(|r| &r.resource).collect(),
        Telemetry::Traces(v) => v.iter().map(|r| &r.resource).collect(),
        _ => Vec::new(),
    };
    resources
        .into_iter()
        .flatten()
        .find_map(|r| attrs::hostname(&r.attributes))
}

/// The Datadog transport: maps each signal on `prepare`, posts on `send`.
pub struct DatadogSender {
    client: reqwest::Client,
    key: String,
    urls: [Url; 4],
    validate_url: Url,
    fail_on_invalid_key: bool,
    metrics: series::Translator,
    logs: logs::Options,
    traces: traces::Options,
    log_compression: Compression,
    dump_payloads: bool,
    only_metadata: bool,
    /// With `hostname_source: first_resource`: where the first resource's host goes, and the
    /// signal that it is there.
    first_host: Option<(Arc<OnceLock<String>>, Arc<Notify>)>,
    /// The host metadata loop, started by `start`, and the guard that ends it with the exporter.
    pusher: Mutex<Option<hostmeta::Pusher>>,
    pusher_guard: Mutex<Option<DropGuard>>,
}

fn compress(c: Compression, body: Vec<u8>) -> Result<Bytes, SendError> {
    c.compress(body)
        .map(Bytes::from)
        .map_err(|e| SendError::permanent(format!("cannot compress the request: {e}")))
}

/// How upstream reads Datadog's answers: 2xx is success; 403 (the API key is invalid) is
/// permanent, as upstream's `clientutil.WrapError` makes it; any other status is retried,
/// honouring `Retry-After`.
async fn classify_datadog(resp: reqwest::Response, url: &Url) -> Result<(), SendError> {
    let status = resp.status();
    let retry_after = classify::retry_after_header(resp.headers());
    let body = resp.bytes().await.unwrap_or_default();
    if status.is_success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let reason = if text.is_empty() {
        format!("HTTP {status} from {url}")
    } else {
        format!("HTTP {status} from {url}: {text}")
    };
    if status.as_u16() == 403 {
        return Err(SendError::Permanent {
            reason: format!("{reason} (is api::key valid for this site?)"),
        });
    }
    Err(SendError::Retryable {
        reason,
        retry_after,
    })
}

impl DatadogSender {
    fn content(route: u8, log_compression: Compression) -> (&'static str, Option<&'static str>) {
        match route {
            ROUTE_SERIES => ("application/json", Some("gzip")),
            ROUTE_LOGS => ("application/json", log_compression.encoding_name()),
            _ => ("application/x-protobuf", Some("gzip")),
        }
    }
}

/// Upstream's start-up key check: `GET {metrics}/api/v1/validate`; only a 403 means refused.
async fn key_is_valid(client: &reqwest::Client, url: &Url, key: &str) -> anyhow::Result<bool> {
    let resp = client
        .get(url.clone())
        .header(API_KEY_HEADER, key)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))?;
    Ok(resp.status() != reqwest::StatusCode::FORBIDDEN)
}

#[async_trait]
impl Sender for DatadogSender {
    type Request = Parts;

    fn prepare(&self, data: &Telemetry) -> Result<Parts, SendError> {
        if let Some((first, ready)) = &self.first_host {
            if first.get().is_none() {
                if let Some(host) = first_resource_host(data) {
                    if first.set(host).is_ok() {
                        ready.notify_one();
                    }
                }
            }
        }
        if self.only_metadata {
            return Ok(Parts::new(Vec::new(), 0, String::new()));
        }
        let mut dropped = 0u64;
        let mut reason = String::new();
        let parts = match data {
            Telemetry::Metrics(rms) => {
                let out = self.metrics.translate(rms);
                dropped = out.refused;
                reason = out.refused_reason;
                let series = out.bodies.into_iter().map(|b| (ROUTE_SERIES, b));
                let sketches = out.sketches.into_iter().map(|b| (ROUTE_SKETCHES, b));
                series
                    .chain(sketches)
                    .map(|(route, b)| {
                        Ok(Part {
                            route,
                            token: None,
                            body: compress(Compression::Gzip, b)?,
                        })
                    })
                    .collect::<Result<Vec<_>, SendError>>()?
            }
            Telemetry::Logs(rls) => logs::bodies(rls, &self.logs)?
                .into_iter()
                .map(|b| {
                    Ok(Part {
                        route: ROUTE_LOGS,
                        token: None,
                        body: compress(self.log_compression, b)?,
                    })
                })
                .collect::<Result<Vec<_>, SendError>>()?,
            Telemetry::Traces(rss) => traces::payloads(rss, &self.traces)
                .into_iter()
                .map(|b| {
                    Ok(Part {
                        route: ROUTE_TRACES,
                        token: None,
                        body: compress(Compression::Gzip, b)?,
                    })
                })
                .collect::<Result<Vec<_>, SendError>>()?,
            // The stability table keeps profiles out of its pipelines.
            other => {
                return Err(SendError::permanent(format!(
                    "datadog takes no {}",
                    other.signal()
                )))
            }
        };
        if self.dump_payloads {
            tracing::debug!(parts = parts.len(), "datadog payloads prepared");
        }
        Ok(Parts::new(parts, dropped, reason))
    }

    async fn send(&self, req: &Parts) -> Result<Delivered, SendError> {
        for (i, part) in req.pending() {
            let url = &self.urls[usize::from(part.route).min(3)];
            let (ctype, encoding) = Self::content(part.route, self.log_compression);
            let mut b = self
                .client
                .post(url.clone())
                .header(API_KEY_HEADER, &self.key)
                .header(CONTENT_TYPE, ctype)
                .body(part.body.clone());
            if let Some(enc) = encoding {
                b = b.header(CONTENT_ENCODING, enc);
            }
            if part.route == ROUTE_TRACES {
                b = b.header("X-Datadog-Reported-Languages", "");
            }
            let resp = b.send().await.map_err(|e| {
                SendError::retryable(format!("cannot send to {url}: {}", error_chain(&e)))
            })?;
            classify_datadog(resp, url).await?;
            req.accepted(i);
        }
        Ok(Delivered {
            rejected: req.dropped,
            message: req.dropped_reason.clone(),
        })
    }

    /// Upstream checks the API key at start: a refused key fails the start with
    /// `api::fail_on_invalid_key`, and is only logged otherwise.
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        if let Some(p) = vigil_core::lock(&self.pusher).take() {
            *vigil_core::lock(&self.pusher_guard) = Some(p.start());
        }
        if self.fail_on_invalid_key {
            if !key_is_valid(&self.client, &self.validate_url, &self.key).await? {
                anyhow::bail!(
                    "API Key validation failed: {} refused api::key (HTTP 403)",
                    self.validate_url
                );
            }
            return Ok(());
        }
        // Only logged, so it runs beside the start, bounded by its own timeout.
        let (client, url, key) = (
            self.client.clone(),
            self.validate_url.clone(),
            self.key.clone(),
        );
        tokio::spawn(async move {
            let check = key_is_valid(&client, &url, &key);
            match tokio::time::timeout(Duration::from_secs(30), check).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    tracing::warn!(%url, "Datadog refused api::key (HTTP 403): data will be refused too")
                }
                Ok(Err(e)) => tracing::warn!(%url, "cannot check api::key: {e}"),
                Err(_) => tracing::warn!(%url, "cannot check api::key: no answer in 30 s"),
            }
        });
        Ok(())
    }
}

fn build(set: &Settings, cfg: DatadogConfig) -> Result<SendStack<DatadogSender>, ConfigError> {
    let id = &set.id;
    if cfg.api.key.trim().bytes().any(|b| !b.is_ascii_hexdigit()) {
        // Upstream refuses such a key at validate; vigil only warns, so that a published
        // config with a placeholder key validates (see README).
        tracing::warn!(exporter = %id, "api::key contains characters other than hex digits: Datadog will refuse it (HTTP 403)");
    }
    let metrics_base = cfg.url(id, "metrics")?;
    let host = fallback_hostname(&cfg);
    let m = &cfg.metrics;
    let client = http_client(id, &BTreeMap::new(), &cfg.tls)?;
    let hm = &cfg.host_metadata;
    let first_resource = hm.hostname_source == HostnameSource::FirstResource;
    let first_host = (hm.enabled && first_resource)
        .then(|| (Arc::new(OnceLock::new()), Arc::new(Notify::new())));
    let pusher = hm.enabled.then(|| hostmeta::Pusher {
        client: client.clone(),
        url: join(&metrics_base, "intake"),
        key: cfg.api.key.trim().to_string(),
        fallback: host.clone(),
        socket_hostname: system_hostname().unwrap_or_else(|| host.clone()),
        tags: hm.tags.clone(),
        period: hm.reporter_period,
        first_resource,
        first: first_host.as_ref().map(|(f, _)| f.clone()).unwrap_or_default(),
        ready: first_host.as_ref().map(|(_, r)| r.clone()).unwrap_or_default(),
        failures: ::metrics::counter!("vigil_datadog_host_metadata_failures", "exporter" => id.to_string()),
    });
    let sender = DatadogSender {
        client,
        key: cfg.api.key.trim().to_string(),
        urls: [
            join(&metrics_base, "api/v2/series"),
            join(&cfg.url(id, "logs")?, "api/v2/logs"),
            join(&cfg.url(id, "traces")?, "api/v0.2/traces"),
            join(&metrics_base, "api/beta/sketches"),
        ],
        validate_url: join(&metrics_base, "api/v1/validate"),
        fail_on_invalid_key: cfg.api.fail_on_invalid_key,
        metrics: series::Translator::new(
            id,
            series::Options {
                host: host.clone(),
                resource_attributes_as_tags: m.resource_attributes_as_tags,
                scope_as_tags: m.instrumentation_scope_metadata_as_tags,
                histogram_mode: m.histograms.mode,
                aggregations: m.histograms.send_aggregation_metrics
                    || m.histograms.send_count_sum_metrics,
                raw_cumulative: m.sums.cumulative_monotonic_mode
                    == CumulativeMonotonicMode::RawValue,
                initial_value: m
                    .sums
                    .initial_cumulative_monotonic_value
                    .unwrap_or_default(),
                quantiles: m.summaries.mode == SummaryMode::Gauges,
                delta_ttl: Duration::from_secs(u64::try_from(m.delta_ttl).unwrap_or(3600)),
            },
        ),
        logs: logs::Options { host: host.clone() },
        traces: traces::Options::new(&cfg.traces, host),
        log_compression: if cfg.logs.use_compression {
            Compression::Gzip
        } else {
            Compression::None
        },
        dump_payloads: cfg.logs.dump_payloads,
        only_metadata: cfg.only_metadata,
        first_host,
        pusher: Mutex::new(pusher),
        pusher_guard: Mutex::new(None),
    };
    let stack = SendStack::new(set, cfg.settings(), sender);
    Ok(stack)
}

struct Factory;

/// The `datadog` exporter factory.
pub fn factory() -> Arc<dyn DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl FactoryBase for Factory {
    type Config = DatadogConfig;

    fn type_name(&self) -> &'static str {
        "datadog"
    }

    fn validate(&self, id: &ComponentId, cfg: &DatadogConfig) -> Result<(), ConfigError> {
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

    fn create(&self, set: Settings, cfg: DatadogConfig) -> Result<Arc<dyn Exporter>, ConfigError> {
        Ok(Arc::new(build(&set, cfg)?))
    }
}
