//! `sumologic`: sends logs, metrics and traces to Sumo Logic as otelcol-contrib's exporter does.
//! With `endpoint` (an HTTP Source URL) data goes there (`/v1/<signal>` appended for the OTLP
//! formats); without it, the `sumologic` extension named by `auth::authenticator` (by default the
//! one called `sumologic`) registered the collector, and data goes to its API base URL's
//! `/api/v1/collector/{logs,metrics,traces}` with the collector's credentials (Basic) on every
//! request. Formats: logs `otlp` (default), `json` or `text`; metrics `otlp` (default) or
//! `prometheus`; traces `otlp`. Non-OTLP bodies are one line per record, cut at
//! `max_request_body_size` (1 MiB, before compression), one request group per resource carrying
//! its source headers; a retry resends only the bodies not yet accepted. Compression gzip
//! (default), deflate, zstd or none. Delivery, retries and the queue are the shared `SendStack`.
//!
//! `decompose_otlp_histograms` sends each OTLP histogram as gauges `<name>_sum`, `<name>_count`
//! and cumulative `<name>_bucket` points with an `le` bound (`+Inf` last), as upstream does for
//! Sumo, which does not take OTLP histograms.
//!
//! Differences, said so in the README: a 4xx answer other than 401, 403, 408 and 429 is final (otelcol retries every failure until
//! `max_elapsed_time`), 401/403 are retried because the extension re-registers and the next
//! attempt carries the new credentials.

mod format;

#[cfg(test)]
mod tests;

use crate::helper::auth::{AuthConfig, Authenticator};
use crate::helper::http::{error_chain, header_map, http_client_with, ClientTransport};
use crate::helper::queue::Persist;
use crate::helper::{
    classify, Compression, Delivered, QueueConfig, RetryConfig, SendError, SendSettings, SendStack,
    Sender,
};
use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use vigil_core::codec::encode::proto_request;
use vigil_core::config::{duration, opt_duration, TlsClientConfig};
use vigil_core::factory::{DynExporterFactory, ExporterFactory, FactoryBase};
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::{
    lock, ComponentId, ComponentKind, ConfigError, Exporter, Host, ServiceKey, Settings, Signal,
    Stability, Telemetry,
};

/// The API base URL each running `sumologic` extension registered against (it may move on a
/// 301 during registration), shared through the host so the exporter reads the current one on
/// every request. The extension (in the agent crate) writes it; the type lives here because the
/// agent depends on this crate, not the other way round.
#[derive(Default)]
pub struct SumoApis {
    urls: Mutex<HashMap<ComponentId, String>>,
}

impl SumoApis {
    pub fn set(&self, extension: &ComponentId, base_url: &str) {
        lock(&self.urls).insert(
            extension.clone(),
            base_url.trim_end_matches('/').to_string(),
        );
    }

    pub fn get(&self, extension: &ComponentId) -> Option<String> {
        lock(&self.urls).get(extension).cloned()
    }
}

/// The host service holding [`SumoApis`].
pub const SUMO_APIS: ServiceKey<SumoApis> = ServiceKey::new("sumologic.api_base_urls");

/// The extension type whose credentials and base URL the exporter uses.
pub const EXTENSION_TYPE: &str = "sumologic";
const LOGS_PATH: &str = "/api/v1/collector/logs";
const METRICS_PATH: &str = "/api/v1/collector/metrics";
const TRACES_PATH: &str = "/api/v1/collector/traces";
const MAX_TIMEOUT: Duration = Duration::from_secs(55);
const STICKY_COOKIE: &str = "AWSALB";

const CONTENT_LOGS: &str = "application/x-www-form-urlencoded";
const CONTENT_PROMETHEUS: &str = "application/vnd.sumologic.prometheus";
const CONTENT_OTLP: &str = "application/x-protobuf";

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_body_size() -> usize {
    1024 * 1024
}
fn default_client() -> String {
    "otelcol".into()
}
fn default_auth() -> Option<AuthConfig> {
    Some(AuthConfig {
        authenticator: EXTENSION_TYPE.into(),
    })
}

/// `log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Otlp,
    Json,
    Text,
}

/// `metric_format`; `graphite` and `carbon2` are read so the refusal can say they were removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricFormat {
    #[default]
    Otlp,
    Prometheus,
    Graphite,
    Carbon2,
}

/// `compression`: confighttp's names, `deflate` included (Sumo's sources accept it), and the
/// empty string for none, as otelcol writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SumoCompression(Compression);

impl<'de> Deserialize<'de> for SumoCompression {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(SumoCompression(match s.as_str() {
            "gzip" => Compression::Gzip,
            "deflate" => Compression::Deflate,
            "zstd" => Compression::Zstd,
            "" | "none" => Compression::None,
            other => {
                return Err(serde::de::Error::custom(format!(
                    "invalid compression encoding type: {other:?} (expected gzip, deflate, zstd \
                     or \"\")"
                )))
            }
        }))
    }
}

impl Serialize for SumoCompression {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.encoding_name().unwrap_or(""))
    }
}

/// The `sumologic` exporter config, with otelcol-contrib's keys and defaults.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SumologicConfig {
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default = "default_auth")]
    auth: Option<AuthConfig>,
    #[serde(default)]
    compression: SumoCompression,
    /// Removed upstream in favour of `compression`; refused with otelcol's message.
    #[serde(default, skip_serializing)]
    compress_encoding: Option<serde_json::Value>,
    #[serde(default = "default_body_size")]
    max_request_body_size: usize,
    #[serde(default)]
    log_format: LogFormat,
    #[serde(default)]
    metric_format: MetricFormat,
    /// `trace_format`: only `otlp` exists.
    #[serde(default)]
    trace_format: Option<String>,
    #[serde(default)]
    decompose_otlp_histograms: bool,
    #[serde(default = "default_client")]
    client: String,
    #[serde(default)]
    sticky_session_enabled: bool,
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
    // confighttp's client transport keys; see `helper::http::ClientTransport`.
    #[serde(default)]
    proxy_url: Option<String>,
    #[serde(default)]
    max_idle_conns: Option<usize>,
    #[serde(default)]
    max_idle_conns_per_host: Option<usize>,
    /// Read; concurrent requests are bounded by `sending_queue::num_consumers` instead.
    #[serde(default)]
    max_conns_per_host: Option<usize>,
    #[serde(default, with = "opt_duration")]
    idle_conn_timeout: Option<Duration>,
    #[serde(default)]
    disable_keep_alives: bool,
    #[serde(default, with = "duration")]
    http2_read_idle_timeout: Duration,
    #[serde(default, with = "duration")]
    http2_ping_timeout: Duration,
    /// Go's buffer sizes: read, not used (reqwest sizes its own).
    #[serde(default)]
    read_buffer_size: usize,
    #[serde(default)]
    write_buffer_size: usize,
}

fn config_error(id: &ComponentId, path: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Exporter, id, path, msg)
}

/// Where the data goes: a fixed HTTP Source, or the API of the extension that registered.
#[derive(Debug, Clone)]
enum Target {
    Source(Box<SourceUrls>),
    Extension(ComponentId),
}

/// The HTTP Source's URL per signal.
#[derive(Debug, Clone)]
struct SourceUrls {
    logs: Url,
    metrics: Url,
    traces: Url,
}

impl SumologicConfig {
    fn settings(&self) -> SendSettings {
        SendSettings {
            timeout: self.timeout,
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
        }
    }

    fn transport(&self) -> ClientTransport {
        ClientTransport {
            proxy_url: self.proxy_url.clone(),
            max_idle_conns: self.max_idle_conns,
            max_idle_conns_per_host: self.max_idle_conns_per_host,
            idle_conn_timeout: self.idle_conn_timeout,
            disable_keep_alives: self.disable_keep_alives,
            http2_read_idle_timeout: self.http2_read_idle_timeout,
            http2_ping_timeout: self.http2_ping_timeout,
        }
    }

    fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref().filter(|e| !e.is_empty())
    }

    /// As otelcol's `configure`: an endpoint wins (and a `sumologic` authenticator is dropped);
    /// otherwise the authenticator must be a `sumologic` extension.
    fn target(&self, id: &ComponentId) -> Result<Target, ConfigError> {
        if let Some(raw) = self.endpoint() {
            let url = Url::parse(raw).map_err(|e| {
                config_error(
                    id,
                    "endpoint",
                    format!("failed parsing endpoint URL {raw:?}: {e}"),
                )
            })?;
            if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
                return Err(config_error(
                    id,
                    "endpoint",
                    format!("{raw:?}: expected an http:// or https:// URL with a host"),
                ));
            }
            let signal_url = |suffix: &str, otlp: bool| {
                let mut u = url.clone();
                if otlp && !u.path().ends_with(suffix) {
                    let path = format!("{}{suffix}", u.path().trim_end_matches('/'));
                    u.set_path(&path);
                }
                u
            };
            return Ok(Target::Source(Box::new(SourceUrls {
                logs: signal_url("/v1/logs", self.log_format == LogFormat::Otlp),
                metrics: signal_url("/v1/metrics", self.metric_format == MetricFormat::Otlp),
                traces: signal_url("/v1/traces", true),
            })));
        }
        let Some(auth) = &self.auth else {
            return Err(config_error(
                id,
                "endpoint",
                "no endpoint and no auth extension specified",
            ));
        };
        let ext = auth.id(id)?;
        if ext.type_name() != EXTENSION_TYPE {
            return Err(config_error(
                id,
                "auth::authenticator",
                format!(
                    "{ext} is not a sumologic extension: without endpoint the exporter sends to \
                     the API a sumologic extension registered with"
                ),
            ));
        }
        Ok(Target::Extension(ext))
    }

    fn validate(&self, id: &ComponentId) -> Result<(), ConfigError> {
        if self.compress_encoding.is_some() {
            return Err(config_error(
                id,
                "compress_encoding",
                "support for compress_encoding configuration has been removed, in favor of \
                 compression",
            ));
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err(config_error(
                id,
                "timeout",
                format!(
                    "timeout must be between 1 and 55 seconds, got {:?}",
                    self.timeout
                ),
            ));
        }
        match self.metric_format {
            MetricFormat::Graphite => {
                return Err(config_error(
                    id,
                    "metric_format",
                    "support for the graphite metric format was removed, please use prometheus \
                     or otlp instead",
                ))
            }
            MetricFormat::Carbon2 => {
                return Err(config_error(
                    id,
                    "metric_format",
                    "support for the carbon2 metric format was removed, please use prometheus \
                     or otlp instead",
                ))
            }
            _ => {}
        }
        if let Some(f) = self.trace_format.as_deref().filter(|f| *f != "otlp") {
            return Err(config_error(
                id,
                "trace_format",
                format!("unexpected trace format: {f} (only otlp)"),
            ));
        }
        if self.max_request_body_size == 0 {
            return Err(config_error(
                id,
                "max_request_body_size",
                "must be greater than 0",
            ));
        }
        self.target(id)?;
        self.settings().validate(id)?;
        http_client_with(id, &BTreeMap::new(), &self.tls, &self.transport())?;
        header_map(id, &self.headers).map(drop)
    }
}

/// Which URL a body goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Logs = 0,
    Metrics = 1,
    Traces = 2,
}

impl Route {
    fn from_u8(b: u8) -> Option<Route> {
        match b {
            0 => Some(Route::Logs),
            1 => Some(Route::Metrics),
            2 => Some(Route::Traces),
            _ => None,
        }
    }
}

/// One POST: its route, its own headers (content type, source headers, fields) and its body as
/// it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Body {
    route: Route,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// The bodies of one batch, sent in order; those accepted are remembered so that a retry after
/// a failure resends only the rest.
#[derive(Debug, Default)]
pub struct SumoRequest {
    bodies: Vec<Body>,
    dropped: u64,
    done: AtomicUsize,
}

use crate::helper::parts::{put_bytes as put, take_bytes as take, take_u64};

/// Stored as: dropped, done, body count, then per body its route, header count, each name and
/// value, and the body. Lengths and counts are 8-byte big-endian.
impl Persist for SumoRequest {
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.dropped.to_be_bytes());
        out.extend_from_slice(&(self.done.load(Ordering::Acquire) as u64).to_be_bytes());
        out.extend_from_slice(&(self.bodies.len() as u64).to_be_bytes());
        for b in &self.bodies {
            out.push(b.route as u8);
            out.extend_from_slice(&(b.headers.len() as u64).to_be_bytes());
            for (k, v) in &b.headers {
                put(&mut out, k.as_bytes());
                put(&mut out, v.as_bytes());
            }
            put(&mut out, &b.body);
        }
        out
    }

    fn from_bytes(mut bytes: &[u8]) -> Option<Self> {
        let input = &mut bytes;
        let dropped = take_u64(input)?;
        let done = usize::try_from(take_u64(input)?).ok()?;
        let n = take_u64(input)?;
        let mut bodies = Vec::new();
        for _ in 0..n {
            let (&route, rest) = input.split_first()?;
            *input = rest;
            let route = Route::from_u8(route)?;
            let nh = take_u64(input)?;
            let mut headers = Vec::new();
            for _ in 0..nh {
                let k = String::from_utf8(take(input)?.to_vec()).ok()?;
                let v = String::from_utf8(take(input)?.to_vec()).ok()?;
                headers.push((k, v));
            }
            let body = Bytes::copy_from_slice(take(input)?);
            bodies.push(Body {
                route,
                headers,
                body,
            });
        }
        if !input.is_empty() || done > bodies.len() {
            return None;
        }
        Some(SumoRequest {
            bodies,
            dropped,
            done: AtomicUsize::new(done),
        })
    }
}

/// The Sumo transport.
pub struct SumoSender {
    id: ComponentId,
    client: reqwest::Client,
    target: Target,
    /// The extension's base URLs, found at start.
    apis: OnceLock<Arc<SumoApis>>,
    auth: Authenticator,
    headers: http::HeaderMap,
    compression: Compression,
    log_format: LogFormat,
    metric_format: MetricFormat,
    /// `decompose_otlp_histograms` (OTLP metrics only).
    decompose: bool,
    max_body: usize,
    client_name: String,
    sticky: Option<Mutex<Option<String>>>,
}

fn resource_attrs(r: &Option<vigil_core::otlp::resource::v1::Resource>) -> &[KeyValue] {
    r.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[])
}

impl SumoSender {
    fn compress(&self, body: Vec<u8>) -> Result<Bytes, SendError> {
        self.compression
            .compress(body)
            .map(Bytes::from)
            .map_err(|e| SendError::permanent(format!("cannot compress the request: {e}")))
    }

    /// Lines joined by newlines into bodies of at most `max_body` bytes before compression; a
    /// single line over the limit goes alone, as upstream sends it.
    fn cut(
        &self,
        route: Route,
        headers: &[(String, String)],
        lines: Vec<String>,
        out: &mut Vec<Body>,
    ) -> Result<(), SendError> {
        let mut body: Vec<u8> = Vec::new();
        for line in lines {
            if !body.is_empty() && body.len() + 1 + line.len() > self.max_body {
                out.push(Body {
                    route,
                    headers: headers.to_vec(),
                    body: self.compress(std::mem::take(&mut body))?,
                });
            }
            if !body.is_empty() {
                body.push(b'\n');
            }
            body.extend_from_slice(line.as_bytes());
        }
        if !body.is_empty() {
            out.push(Body {
                route,
                headers: headers.to_vec(),
                body: self.compress(body)?,
            });
        }
        Ok(())
    }

    fn otlp(&self, route: Route, data: &Telemetry) -> Result<Body, SendError> {
        Ok(Body {
            route,
            headers: vec![("Content-Type".into(), CONTENT_OTLP.into())],
            body: self.compress(proto_request(data))?,
        })
    }

    fn url(&self, route: Route) -> Result<Url, SendError> {
        match &self.target {
            Target::Source(u) => Ok(match route {
                Route::Logs => u.logs.clone(),
                Route::Metrics => u.metrics.clone(),
                Route::Traces => u.traces.clone(),
            }),
            Target::Extension(ext) => {
                let base = self.apis.get().and_then(|a| a.get(ext)).ok_or_else(|| {
                    SendError::retryable(format!(
                        "the sumologic extension {ext} has not registered the collector yet"
                    ))
                })?;
                let path = match route {
                    Route::Logs => LOGS_PATH,
                    Route::Metrics => METRICS_PATH,
                    Route::Traces => TRACES_PATH,
                };
                Url::parse(&format!("{base}{path}")).map_err(|e| {
                    SendError::permanent(format!("the API base URL {base:?} of {ext}: {e}"))
                })
            }
        }
    }

    fn remember_cookie(&self, headers: &http::HeaderMap) {
        let Some(sticky) = &self.sticky else { return };
        for v in headers.get_all(http::header::SET_COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            let first = v.split(';').next().unwrap_or("");
            if let Some(value) = first.trim().strip_prefix(&format!("{STICKY_COOKIE}=")) {
                *lock(sticky) = Some(value.to_string());
                return;
            }
        }
    }
}

fn set_header(headers: &mut http::HeaderMap, k: &str, v: &str) -> Result<(), SendError> {
    let name = http::HeaderName::from_bytes(k.as_bytes())
        .map_err(|e| SendError::permanent(format!("header {k:?}: {e}")))?;
    let value = http::HeaderValue::from_bytes(v.as_bytes())
        .map_err(|e| SendError::permanent(format!("header {k}: {e}")))?;
    headers.insert(name, value);
    Ok(())
}

/// The points of a metric with no Prometheus form (an exponential histogram's).
fn exp_points(m: &vigil_core::otlp::metrics::v1::Metric) -> u64 {
    use vigil_core::otlp::metrics::v1::metric::Data;
    match &m.data {
        Some(Data::ExponentialHistogram(h)) => h.data_points.len() as u64,
        _ => 0,
    }
}

#[async_trait]
impl Sender for SumoSender {
    type Request = SumoRequest;

    fn prepare(&self, data: &Telemetry) -> Result<SumoRequest, SendError> {
        let mut bodies = Vec::new();
        let mut dropped = 0u64;
        match data {
            Telemetry::Logs(rls) if self.log_format != LogFormat::Otlp => {
                for rl in rls {
                    let res = resource_attrs(&rl.resource);
                    let mut headers = vec![("Content-Type".to_string(), CONTENT_LOGS.to_string())];
                    headers.extend(format::source_headers(res));
                    let fields = format::fields_header(res);
                    if !fields.is_empty() {
                        headers.push(("X-Sumo-Fields".into(), fields));
                    }
                    let lines = rl
                        .scope_logs
                        .iter()
                        .flat_map(|sl| sl.log_records.iter())
                        .map(|r| match self.log_format {
                            LogFormat::Json => format::log_json(r),
                            _ => format::log_text(r),
                        })
                        .collect();
                    self.cut(Route::Logs, &headers, lines, &mut bodies)?;
                }
            }
            Telemetry::Logs(_) => bodies.push(self.otlp(Route::Logs, data)?),
            Telemetry::Metrics(rms) if self.metric_format == MetricFormat::Prometheus => {
                for rm in rms {
                    let res = resource_attrs(&rm.resource);
                    let mut headers =
                        vec![("Content-Type".to_string(), CONTENT_PROMETHEUS.to_string())];
                    headers.extend(format::source_headers(res));
                    let mut lines = Vec::new();
                    for m in rm.scope_metrics.iter().flat_map(|sm| sm.metrics.iter()) {
                        match format::metric_lines(m, res) {
                            Some(l) => lines.extend(l),
                            None => dropped += exp_points(m),
                        }
                    }
                    self.cut(Route::Metrics, &headers, lines, &mut bodies)?;
                }
            }
            Telemetry::Metrics(rms) if self.decompose && format::has_histogram(rms) => {
                let decomposed = Telemetry::Metrics(format::decompose_histograms(rms));
                bodies.push(self.otlp(Route::Metrics, &decomposed)?)
            }
            Telemetry::Metrics(_) => bodies.push(self.otlp(Route::Metrics, data)?),
            Telemetry::Traces(_) => bodies.push(self.otlp(Route::Traces, data)?),
            // The stability table keeps other signals out.
            _ => {}
        }
        Ok(SumoRequest {
            bodies,
            dropped,
            done: AtomicUsize::new(0),
        })
    }

    async fn send(&self, req: &SumoRequest) -> Result<Delivered, SendError> {
        let done = req.done.load(Ordering::Acquire);
        for (i, b) in req.bodies.iter().enumerate().skip(done) {
            let url = self.url(b.route)?;
            let mut headers = self.headers.clone();
            set_header(&mut headers, "X-Sumo-Client", &self.client_name)?;
            for (k, v) in &b.headers {
                set_header(&mut headers, k, v)?;
            }
            if let Some(enc) = self.compression.encoding_name() {
                headers.insert(CONTENT_ENCODING, http::HeaderValue::from_static(enc));
            }
            if let Some(cookie) = self.sticky.as_ref().and_then(|s| lock(s).clone()) {
                set_header(&mut headers, "Cookie", &format!("{STICKY_COOKIE}={cookie}"))?;
            }
            self.auth
                .apply(&mut headers)
                .await
                .map_err(SendError::retryable)?;
            let resp = self
                .client
                .post(url.clone())
                .headers(headers)
                .body(b.body.clone())
                .send()
                .await
                .map_err(|e| {
                    SendError::retryable(format!("cannot send to {url}: {}", error_chain(&e)))
                })?;
            let status = resp.status();
            self.remember_cookie(resp.headers());
            let retry_after = classify::retry_after_header(resp.headers());
            let json = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.contains("json"));
            let body = resp.bytes().await.unwrap_or_default();
            if status.is_success() {
                req.done.fetch_max(i + 1, Ordering::AcqRel);
                continue;
            }
            let message = classify::http_error_message(&body, json);
            let reason = format!("HTTP {status} from {url}: {message}");
            // 401/403: the extension re-registers on its next heartbeat, and the next attempt
            // carries the new credentials.
            let retry = classify::http_status_is_retryable(status)
                || matches!(status.as_u16(), 401 | 403 | 408);
            return Err(if retry {
                SendError::Retryable {
                    reason,
                    retry_after,
                }
            } else {
                SendError::Permanent { reason }
            });
        }
        Ok(Delivered {
            rejected: req.dropped,
            message: if req.dropped > 0 {
                format!(
                    "{} exponential histogram points have no Prometheus form",
                    req.dropped
                )
            } else {
                String::new()
            },
        })
    }

    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        if let Target::Extension(ext) = &self.target {
            if host.extension(ext).is_none() {
                anyhow::bail!(
                    "exporters::{}: sumologic was specified as auth extension (named: {ext:?}) \
                     but a matching extension was not found in the config, please re-check the \
                     config and/or define the sumologicextension",
                    self.id
                );
            }
            let apis = host.service(&SUMO_APIS).map_err(|e| anyhow::anyhow!(e))?;
            let _ = self.apis.set(apis);
        }
        self.auth.start(host, &self.id)
    }
}

fn build(set: &Settings, cfg: SumologicConfig) -> Result<SendStack<SumoSender>, ConfigError> {
    let id = &set.id;
    let target = cfg.target(id)?;
    // With an endpoint, a `sumologic` authenticator is dropped as upstream does; any other one
    // still applies.
    let auth = match (&target, &cfg.auth) {
        (Target::Extension(ext), _) => Some(ext.clone()),
        (Target::Source(_), Some(a)) => {
            let a = a.id(id)?;
            (a.type_name() != EXTENSION_TYPE).then_some(a)
        }
        (Target::Source(_), None) => None,
    };
    let sender = SumoSender {
        id: id.clone(),
        client: http_client_with(id, &BTreeMap::new(), &cfg.tls, &cfg.transport())?,
        headers: header_map(id, &cfg.headers)?,
        target,
        apis: OnceLock::new(),
        auth: Authenticator::new(auth),
        compression: cfg.compression.0,
        log_format: cfg.log_format,
        metric_format: cfg.metric_format,
        decompose: cfg.decompose_otlp_histograms,
        max_body: cfg.max_request_body_size,
        client_name: cfg.client.clone(),
        sticky: cfg.sticky_session_enabled.then(|| Mutex::new(None)),
    };
    Ok(SendStack::new(set, cfg.settings(), sender))
}

struct Factory;

/// The `sumologic` exporter factory.
pub fn factory() -> Arc<dyn DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl FactoryBase for Factory {
    type Config = SumologicConfig;

    fn type_name(&self) -> &'static str {
        "sumologic"
    }

    fn validate(&self, id: &ComponentId, cfg: &SumologicConfig) -> Result<(), ConfigError> {
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
        cfg: SumologicConfig,
    ) -> Result<Arc<dyn Exporter>, ConfigError> {
        Ok(Arc::new(build(&set, cfg)?))
    }
}
