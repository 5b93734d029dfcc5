//! `prometheusremotewrite`: otelcol's remote-write exporter. Each batch becomes Prometheus time
//! series (named as the `prometheus` exporter names them, through the shared `translate` module),
//! samples are grouped and ordered per series, split into requests of at most
//! `max_batch_size_bytes`, and each request is sent as remote write 1.0: snappy block-compressed
//! protobuf. Timeout, retry and the sending queue come from `helper`, as for every network exporter.

pub mod proto;

use crate::helper::auth::{AuthConfig, Authenticator};
use crate::helper::classify::{http_error_message, retry_after_header};
use crate::helper::queue::Persist;
use crate::helper::{
    Delivered, QueueConfig, RetryConfig, SendError, SendSettings, SendStack, Sender,
};
use crate::prometheus::translate::{
    base_labels, exponential_buckets, point_labels, target_info_attrs, Kind, Labels, Naming,
};
use async_trait::async_trait;
use prost::Message;
use proto::{Label, MetricMetadata, Sample, TimeSeries, WriteRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vigil_core::component::OutgoingRequest;
use vigil_core::config::{decode, duration, TlsClientConfig};
use vigil_core::factory::{DynExporterFactory, ExporterFactory, FactoryBase};
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, ResourceMetrics,
};
use vigil_core::{
    ComponentId, ComponentKind, ConfigError, Exporter, Host, Settings, Signal, Stability, Telemetry,
};

/// Prometheus's staleness marker: a NaN with this exact bit pattern ends a series.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// `DataPointFlags.NO_RECORDED_VALUE`.
const NO_RECORDED_VALUE: u32 = 1;

/// `resource_to_telemetry_conversion` and `target_info`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Enabled {
    #[serde(default)]
    pub enabled: bool,
}

/// otelcol's older `remote_write_queue` section, mapped onto the shared `sending_queue`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteQueue {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    #[serde(default = "default_consumers")]
    pub num_consumers: usize,
}

/// The `prometheusremotewrite` exporter config, with otelcol's keys and defaults.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The remote write URL, such as `http://prometheus:9090/api/v1/write`.
    #[serde(default)]
    pub endpoint: String,
    /// Extra HTTP headers on every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Labels added to every series that does not already have them.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    #[serde(default = "disabled")]
    pub resource_to_telemetry_conversion: Enabled,
    #[serde(default)]
    pub namespace: String,
    #[serde(default = "yes")]
    pub add_metric_suffixes: bool,
    /// Send `MetricMetadata` (type and help) with the series.
    #[serde(default)]
    pub send_metadata: bool,
    /// A request's uncompressed protobuf size limit (default 3,000,000).
    #[serde(default = "default_batch_bytes")]
    pub max_batch_size_bytes: usize,
    #[serde(default = "enabled")]
    pub target_info: Enabled,
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default = "remote_write_retry")]
    pub retry_on_failure: RetryConfig,
    #[serde(default)]
    pub sending_queue: QueueConfig,
    #[serde(default)]
    pub remote_write_queue: Option<RemoteWriteQueue>,
    #[serde(default)]
    pub tls: TlsClientConfig,
    /// confighttp's `auth: {authenticator: <extension>}`: `sigv4auth` for Amazon Managed
    /// Prometheus, or any other client authenticator.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
}

fn yes() -> bool {
    true
}
fn disabled() -> Enabled {
    Enabled { enabled: false }
}
fn enabled() -> Enabled {
    Enabled { enabled: true }
}
fn default_queue_size() -> usize {
    10_000
}
fn default_consumers() -> usize {
    5
}
fn default_batch_bytes() -> usize {
    3_000_000
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// otelcol's remote-write retry defaults are shorter than exporterhelper's: Prometheus answers fast
/// or not at all, and samples too old are rejected anyway.
fn remote_write_retry() -> RetryConfig {
    RetryConfig {
        initial_interval: Duration::from_millis(50),
        max_interval: Duration::from_millis(200),
        max_elapsed_time: Duration::from_secs(60),
        ..RetryConfig::default()
    }
}

/// Decodes and checks the section, as the registry does before `create`.
pub fn load(id: &ComponentId, config: &Json) -> Result<RemoteWriteConfig, ConfigError> {
    let cfg: RemoteWriteConfig = decode(ComponentKind::Exporter, id, config)?;
    validate(id, &cfg)?;
    Ok(cfg)
}

/// Checks what serde cannot. Reads the TLS files, as start would; starts nothing.
fn validate(id: &ComponentId, cfg: &RemoteWriteConfig) -> Result<(), ConfigError> {
    let err = |k: &str, m: String| ConfigError::component(ComponentKind::Exporter, id, k, m);
    if cfg.endpoint.is_empty() {
        return Err(err(
            "endpoint",
            "must be specified (the remote write URL)".into(),
        ));
    }
    let url = reqwest::Url::parse(&cfg.endpoint)
        .map_err(|e| err("endpoint", format!("invalid URL {:?}: {e}", cfg.endpoint)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(err(
            "endpoint",
            format!("{:?} must be an http or https URL", cfg.endpoint),
        ));
    }
    if cfg.max_batch_size_bytes == 0 {
        return Err(err(
            "max_batch_size_bytes",
            "must be greater than zero".into(),
        ));
    }
    for (k, v) in &cfg.headers {
        if http::HeaderName::from_bytes(k.as_bytes()).is_err()
            || http::HeaderValue::from_str(v).is_err()
        {
            return Err(err(
                &format!("headers::{k}"),
                "is not a valid HTTP header".into(),
            ));
        }
    }
    for k in cfg.external_labels.keys() {
        if crate::prometheus::translate::sanitize_label(k) != *k {
            return Err(err(
                &format!("external_labels::{k}"),
                "is not a valid Prometheus label name".into(),
            ));
        }
    }
    if let Some(auth) = &cfg.auth {
        auth.id(id)?;
    }
    settings(cfg).validate(id)?;
    // The client every HTTP exporter builds, so `tls` (certificates, client certificate, versions)
    // is read and checked here at validate, as start builds it.
    crate::helper::http::check_client(id, &cfg.headers, &cfg.tls)
}

/// The exporterhelper settings, with otelcol's older `remote_write_queue` taking the place of
/// `sending_queue`'s keys it names.
fn settings(cfg: &RemoteWriteConfig) -> SendSettings {
    let mut sending_queue = cfg.sending_queue.clone();
    if let Some(q) = &cfg.remote_write_queue {
        sending_queue.enabled = q.enabled;
        sending_queue.queue_size = q.queue_size;
        sending_queue.num_consumers = q.num_consumers;
    }
    SendSettings {
        timeout: cfg.timeout,
        retry_on_failure: cfg.retry_on_failure.clone(),
        sending_queue,
    }
}

struct Factory;

/// The `prometheusremotewrite` exporter factory, for the registry.
pub fn factory() -> Arc<dyn DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl FactoryBase for Factory {
    type Config = RemoteWriteConfig;

    fn type_name(&self) -> &'static str {
        "prometheusremotewrite"
    }

    fn validate(&self, id: &ComponentId, cfg: &RemoteWriteConfig) -> Result<(), ConfigError> {
        validate(id, cfg)
    }
}

impl ExporterFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[(Signal::Metrics, Stability::Beta)]
    }

    fn create(
        &self,
        set: Settings,
        cfg: RemoteWriteConfig,
    ) -> Result<Arc<dyn Exporter>, ConfigError> {
        let sender = RemoteWriteSender::new(&set.id, &cfg)?;
        Ok(Arc::new(SendStack::new(&set, settings(&cfg), sender)))
    }
}

/// How OTLP becomes series: naming, extra labels and what else to send.
#[derive(Debug, Clone)]
pub struct Translation {
    pub naming: Naming,
    pub external_labels: BTreeMap<String, String>,
    pub resource_to_telemetry: bool,
    pub target_info: bool,
    pub send_metadata: bool,
}

/// The series of one batch, samples ordered by time, and the points left out (delta temporality,
/// which remote write cannot carry).
#[derive(Debug, Default)]
pub struct Converted {
    pub series: Vec<TimeSeries>,
    pub metadata: Vec<MetricMetadata>,
    pub dropped: usize,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Translation {
    /// Turns a batch into remote-write series.
    pub fn convert(&self, batch: &[ResourceMetrics]) -> Converted {
        let mut by_series: HashMap<Labels, Vec<Sample>> = HashMap::new();
        let mut metadata: BTreeMap<String, MetricMetadata> = BTreeMap::new();
        let mut dropped = 0;
        let now = now_ms();
        let ts = |nanos: u64| {
            if nanos == 0 {
                now
            } else {
                (nanos / 1_000_000) as i64
            }
        };
        for rm in batch {
            let resource = rm
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            let mut latest = 0i64;
            for sm in &rm.scope_metrics {
                let base = base_labels(resource, sm.scope.as_ref(), self.resource_to_telemetry);
                for m in &sm.metrics {
                    let Some(kind) = Kind::of(m) else { continue };
                    let name = self.naming.metric_name(m, kind);
                    let mut push = |suffix: &str,
                                    labels: Labels,
                                    extra: Option<(&str, String)>,
                                    v: f64,
                                    t: i64,
                                    stale: bool| {
                        let mut l = labels;
                        l.push(("__name__".to_string(), format!("{name}{suffix}")));
                        if let Some((k, v)) = extra {
                            l.push((k.to_string(), v));
                        }
                        for (k, v) in &self.external_labels {
                            if !l.iter().any(|(n, _)| n == k) {
                                l.push((k.clone(), v.clone()));
                            }
                        }
                        l.sort();
                        let value = if stale { f64::from_bits(STALE_NAN) } else { v };
                        by_series.entry(l).or_default().push(Sample {
                            value,
                            timestamp: t,
                        });
                    };
                    let is_delta = |t: i32| t == AggregationTemporality::Delta as i32;
                    match m.data.as_ref() {
                        Some(Data::Gauge(g)) => {
                            for p in &g.data_points {
                                let t = ts(p.time_unix_nano);
                                latest = latest.max(t);
                                push(
                                    "",
                                    point_labels(&base, &p.attributes),
                                    None,
                                    number(p),
                                    t,
                                    p.flags & NO_RECORDED_VALUE != 0,
                                );
                            }
                        }
                        Some(Data::Sum(s)) => {
                            if is_delta(s.aggregation_temporality) && s.is_monotonic {
                                dropped += s.data_points.len();
                                continue;
                            }
                            for p in &s.data_points {
                                let t = ts(p.time_unix_nano);
                                latest = latest.max(t);
                                push(
                                    "",
                                    point_labels(&base, &p.attributes),
                                    None,
                                    number(p),
                                    t,
                                    p.flags & NO_RECORDED_VALUE != 0,
                                );
                            }
                        }
                        Some(Data::Histogram(h)) => {
                            if is_delta(h.aggregation_temporality) {
                                dropped += h.data_points.len();
                                continue;
                            }
                            for p in &h.data_points {
                                let t = ts(p.time_unix_nano);
                                latest = latest.max(t);
                                let stale = p.flags & NO_RECORDED_VALUE != 0;
                                let l = point_labels(&base, &p.attributes);
                                let mut cum = 0u64;
                                for (i, b) in p.explicit_bounds.iter().enumerate() {
                                    cum += p.bucket_counts.get(i).copied().unwrap_or(0);
                                    push(
                                        "_bucket",
                                        l.clone(),
                                        Some((
                                            "le",
                                            crate::prometheus::translate::format_value(*b),
                                        )),
                                        cum as f64,
                                        t,
                                        stale,
                                    );
                                }
                                push(
                                    "_bucket",
                                    l.clone(),
                                    Some(("le", "+Inf".into())),
                                    p.count as f64,
                                    t,
                                    stale,
                                );
                                if let Some(sum) = p.sum {
                                    push("_sum", l.clone(), None, sum, t, stale);
                                }
                                push("_count", l, None, p.count as f64, t, stale);
                            }
                        }
                        Some(Data::ExponentialHistogram(h)) => {
                            if is_delta(h.aggregation_temporality) {
                                dropped += h.data_points.len();
                                continue;
                            }
                            // Sent as classic buckets: every Prometheus version can query them, where
                            // native histograms need a receiver with them enabled.
                            for p in &h.data_points {
                                let t = ts(p.time_unix_nano);
                                latest = latest.max(t);
                                let stale = p.flags & NO_RECORDED_VALUE != 0;
                                let l = point_labels(&base, &p.attributes);
                                for (b, c) in exponential_buckets(p) {
                                    push(
                                        "_bucket",
                                        l.clone(),
                                        Some(("le", crate::prometheus::translate::format_value(b))),
                                        c as f64,
                                        t,
                                        stale,
                                    );
                                }
                                push(
                                    "_bucket",
                                    l.clone(),
                                    Some(("le", "+Inf".into())),
                                    p.count as f64,
                                    t,
                                    stale,
                                );
                                if let Some(sum) = p.sum {
                                    push("_sum", l.clone(), None, sum, t, stale);
                                }
                                push("_count", l, None, p.count as f64, t, stale);
                            }
                        }
                        Some(Data::Summary(s)) => {
                            for p in &s.data_points {
                                let t = ts(p.time_unix_nano);
                                latest = latest.max(t);
                                let stale = p.flags & NO_RECORDED_VALUE != 0;
                                let l = point_labels(&base, &p.attributes);
                                for q in &p.quantile_values {
                                    push(
                                        "",
                                        l.clone(),
                                        Some((
                                            "quantile",
                                            crate::prometheus::translate::format_value(q.quantile),
                                        )),
                                        q.value,
                                        t,
                                        stale,
                                    );
                                }
                                push("_sum", l.clone(), None, p.sum, t, stale);
                                push("_count", l, None, p.count as f64, t, stale);
                            }
                        }
                        None => {}
                    }
                    if self.send_metadata {
                        metadata
                            .entry(name.clone())
                            .or_insert_with(|| MetricMetadata {
                                r#type: match kind {
                                    Kind::Counter => 1,
                                    Kind::Gauge => 2,
                                    Kind::Histogram => 3,
                                    Kind::Summary => 5,
                                },
                                metric_family_name: name.clone(),
                                help: m.description.clone(),
                                unit: m.unit.clone(),
                            });
                    }
                }
            }
            let info = target_info_attrs(resource);
            if self.target_info && !info.is_empty() && latest > 0 {
                let base = base_labels(resource, None, false);
                let mut l = point_labels(&base, &info);
                l.push(("__name__".into(), "target_info".into()));
                for (k, v) in &self.external_labels {
                    if !l.iter().any(|(n, _)| n == k) {
                        l.push((k.clone(), v.clone()));
                    }
                }
                l.sort();
                by_series.entry(l).or_default().push(Sample {
                    value: 1.0,
                    timestamp: latest,
                });
            }
        }
        let mut series: Vec<TimeSeries> = by_series
            .into_iter()
            .map(|(labels, mut samples)| {
                // Prometheus refuses out-of-order samples within a series; one batch may hold the same
                // series from several resources or scrapes.
                samples.sort_by_key(|s| s.timestamp);
                samples.dedup_by_key(|s| s.timestamp);
                TimeSeries {
                    labels: labels
                        .into_iter()
                        .map(|(name, value)| Label { name, value })
                        .collect(),
                    samples,
                    exemplars: Vec::new(),
                }
            })
            .collect();
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        Converted {
            series,
            metadata: metadata.into_values().collect(),
            dropped,
        }
    }
}

fn number(p: &vigil_core::otlp::metrics::v1::NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => 0.0,
    }
}

/// Splits series into write requests whose encoded size stays within `max_bytes` (a single series
/// larger than that goes alone), then encodes and snappy-compresses each.
pub fn split_requests(c: Converted, max_bytes: usize) -> Result<Vec<Vec<u8>>, SendError> {
    let mut out = Vec::new();
    let mut current = WriteRequest::default();
    let mut size = 0usize;
    let flush = |req: &mut WriteRequest, out: &mut Vec<Vec<u8>>| -> Result<(), SendError> {
        let body = req.encode_to_vec();
        let compressed = snap::raw::Encoder::new()
            .compress_vec(&body)
            .map_err(|e| SendError::permanent(format!("snappy compression failed: {e}")))?;
        out.push(compressed);
        *req = WriteRequest::default();
        Ok(())
    };
    // Metadata entries count toward the limit like series do, so many families cannot push the
    // first request over it.
    for m in c.metadata {
        let len = m.encoded_len() + 6;
        if size > 0 && size + len > max_bytes {
            flush(&mut current, &mut out)?;
            size = 0;
        }
        size += len;
        current.metadata.push(m);
    }
    for ts in c.series {
        // Field tag and length prefix of the embedded message.
        let len = ts.encoded_len() + 6;
        if size > 0 && size + len > max_bytes {
            flush(&mut current, &mut out)?;
            size = 0;
        }
        size += len;
        current.timeseries.push(ts);
    }
    if !current.timeseries.is_empty() || !current.metadata.is_empty() {
        flush(&mut current, &mut out)?;
    }
    Ok(out)
}

/// The encoded requests of one batch, and how many of them the endpoint has taken: a retry resumes
/// after the last accepted request instead of sending the earlier ones again.
pub struct Requests {
    bodies: Vec<Vec<u8>>,
    done: AtomicUsize,
}

impl Persist for Requests {
    /// The requests not yet taken, each as a little-endian u32 length and its bytes.
    fn to_bytes(&self) -> Vec<u8> {
        let from = self.done.load(Ordering::SeqCst).min(self.bodies.len());
        let rest = &self.bodies[from..];
        let mut out = Vec::with_capacity(rest.iter().map(|b| b.len() + 4).sum());
        for b in rest {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }
        out
    }

    fn from_bytes(mut bytes: &[u8]) -> Option<Self> {
        let mut bodies = Vec::new();
        while !bytes.is_empty() {
            let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
            bodies.push(bytes.get(4..4 + len)?.to_vec());
            bytes = &bytes[4 + len..];
        }
        Some(Requests {
            bodies,
            done: AtomicUsize::new(0),
        })
    }
}

/// The transport: HTTP POSTs of snappy protobuf.
pub struct RemoteWriteSender {
    client: reqwest::Client,
    endpoint: String,
    headers: http::HeaderMap,
    translation: Translation,
    max_batch_size_bytes: usize,
    id: ComponentId,
    auth: Authenticator,
}

impl RemoteWriteSender {
    fn new(id: &ComponentId, cfg: &RemoteWriteConfig) -> Result<Self, ConfigError> {
        let mut headers = http::HeaderMap::new();
        for (k, v) in &cfg.headers {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                headers.insert(k, v);
            }
        }
        Ok(RemoteWriteSender {
            client: crate::helper::http::http_client(id, &BTreeMap::new(), &cfg.tls)?,
            endpoint: cfg.endpoint.clone(),
            headers,
            translation: Translation {
                naming: Naming {
                    namespace: cfg.namespace.clone(),
                    add_suffixes: cfg.add_metric_suffixes,
                },
                external_labels: cfg.external_labels.clone(),
                resource_to_telemetry: cfg.resource_to_telemetry_conversion.enabled,
                target_info: cfg.target_info.enabled,
                send_metadata: cfg.send_metadata,
            },
            max_batch_size_bytes: cfg.max_batch_size_bytes,
            id: id.clone(),
            auth: Authenticator::new(cfg.auth.as_ref().map(|a| a.id(id)).transpose()?)
                .passing_requests(),
        })
    }
}

#[async_trait]
impl Sender for RemoteWriteSender {
    type Request = Requests;

    fn prepare(&self, data: &Telemetry) -> Result<Requests, SendError> {
        let Telemetry::Metrics(batch) = data else {
            return Err(SendError::permanent(
                "prometheusremotewrite only exports metrics",
            ));
        };
        let converted = self.translation.convert(batch);
        if converted.dropped > 0 {
            tracing::warn!(
                points = converted.dropped,
                "prometheusremotewrite: dropped points with delta temporality (remote write carries \
                 cumulative data only; put a deltatocumulative step before this exporter)"
            );
        }
        Ok(Requests {
            bodies: split_requests(converted, self.max_batch_size_bytes)?,
            done: AtomicUsize::new(0),
        })
    }

    async fn send(&self, req: &Requests) -> Result<Delivered, SendError> {
        while let Some(body) = req.bodies.get(req.done.load(Ordering::SeqCst)) {
            // One map of every header, so that an authenticator that signs the request
            // (sigv4auth) sees what is sent.
            let mut headers = self.headers.clone();
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-protobuf"),
            );
            headers.insert(
                http::header::CONTENT_ENCODING,
                http::HeaderValue::from_static("snappy"),
            );
            headers.insert(
                "X-Prometheus-Remote-Write-Version",
                http::HeaderValue::from_static("0.1.0"),
            );
            headers.insert(
                http::header::USER_AGENT,
                http::HeaderValue::from_static(concat!("vigil/", env!("CARGO_PKG_VERSION"))),
            );
            let request = OutgoingRequest {
                method: "POST",
                url: &self.endpoint,
                body,
            };
            self.auth
                .apply_request(request, &mut headers)
                .await
                .map_err(SendError::retryable)?;
            let resp = self
                .client
                .post(&self.endpoint)
                .headers(headers)
                .body(body.clone())
                .send()
                .await
                .map_err(|e| {
                    SendError::retryable(format!("remote write to {}: {e}", self.endpoint))
                })?;
            let status = resp.status();
            if status.is_success() {
                req.done.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            let retry_after = retry_after_header(resp.headers());
            let text = resp.bytes().await.unwrap_or_default();
            let reason = format!(
                "remote write to {}: HTTP {status}: {}",
                self.endpoint,
                http_error_message(&text, false)
            );
            // Prometheus answers 5xx for what may pass later and 4xx for samples it will never take.
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                SendError::Retryable {
                    reason,
                    retry_after,
                }
            } else {
                SendError::permanent(reason)
            });
        }
        Ok(Delivered::default())
    }

    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        self.auth.start(host, &self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::attrs::kv_str;
    use vigil_core::otlp::metrics::v1::{Metric, NumberDataPoint, ScopeMetrics, Sum};
    use vigil_core::otlp::resource::v1::Resource;

    fn translation() -> Translation {
        Translation {
            naming: Naming {
                namespace: String::new(),
                add_suffixes: true,
            },
            external_labels: BTreeMap::from([("cluster".to_string(), "c1".to_string())]),
            resource_to_telemetry: false,
            target_info: true,
            send_metadata: true,
        }
    }

    fn batch(points: Vec<(u64, f64)>, delta: bool) -> Vec<ResourceMetrics> {
        vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "node"), kv_str("host.name", "h1")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "system.cpu.time".into(),
                    unit: "s".into(),
                    data: Some(Data::Sum(Sum {
                        data_points: points
                            .into_iter()
                            .map(|(t, v)| NumberDataPoint {
                                attributes: vec![kv_str("cpu", "cpu0"), kv_str("state", "user")],
                                time_unix_nano: t * 1_000_000,
                                value: Some(number_data_point::Value::AsDouble(v)),
                                ..Default::default()
                            })
                            .collect(),
                        aggregation_temporality: if delta { 1 } else { 2 },
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }]
    }

    fn labels(ts: &TimeSeries) -> Vec<(String, String)> {
        ts.labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect()
    }

    #[test]
    fn series_are_named_labelled_and_ordered() {
        let c = translation().convert(&batch(vec![(3000, 3.0), (1000, 1.0), (2000, 2.0)], false));
        assert_eq!(c.series.len(), 2);
        let cpu = c
            .series
            .iter()
            .find(|s| {
                labels(s).contains(&("__name__".into(), "system_cpu_time_seconds_total".into()))
            })
            .unwrap();
        assert_eq!(
            labels(cpu),
            vec![
                (
                    "__name__".to_string(),
                    "system_cpu_time_seconds_total".to_string()
                ),
                ("cluster".into(), "c1".into()),
                ("cpu".into(), "cpu0".into()),
                ("job".into(), "node".into()),
                ("state".into(), "user".into()),
            ]
        );
        let ts: Vec<i64> = cpu.samples.iter().map(|s| s.timestamp).collect();
        assert_eq!(ts, vec![1000, 2000, 3000]);
        let info = c
            .series
            .iter()
            .find(|s| labels(s).contains(&("__name__".into(), "target_info".into())))
            .unwrap();
        assert!(labels(info).contains(&("host_name".into(), "h1".into())));
        assert_eq!(info.samples[0].timestamp, 3000);
        assert_eq!(c.metadata[0].r#type, 1);

        let c = translation().convert(&batch(vec![(1000, 1.0)], true));
        assert_eq!(c.dropped, 1);
    }

    #[test]
    fn requests_respect_the_size_limit_and_decode() {
        let mut b = Vec::new();
        for i in 0..50 {
            let mut one = batch(vec![(1000, i as f64)], false);
            one[0].scope_metrics[0].metrics[0].name = format!("m{i}");
            b.extend(one);
        }
        let c = translation().convert(&b);
        let n = c.series.len();
        let reqs = split_requests(c, 1000).unwrap();
        assert!(reqs.len() > 1);
        let mut total = 0;
        for r in &reqs {
            let raw = snap::raw::Decoder::new().decompress_vec(r).unwrap();
            assert!(raw.len() <= 1000, "{}", raw.len());
            total += WriteRequest::decode(raw.as_slice())
                .unwrap()
                .timeseries
                .len();
        }
        assert_eq!(total, n);
    }

    #[test]
    fn queued_requests_persist_what_is_left() {
        let r = Requests {
            bodies: vec![vec![1, 2, 3], vec![], vec![9; 300]],
            done: AtomicUsize::new(1),
        };
        let back = Requests::from_bytes(&r.to_bytes()).unwrap();
        assert_eq!(back.bodies, vec![vec![], vec![9; 300]]);
        assert!(Requests::from_bytes(&[5, 0, 0, 0, 1]).is_none());
    }

    #[test]
    fn config_defaults_and_errors() {
        let id = ComponentId::parse("prometheusremotewrite").unwrap();
        let cfg = load(
            &id,
            &serde_json::json!({"endpoint": "http://localhost:9090/api/v1/write"}),
        )
        .unwrap();
        assert_eq!(cfg.max_batch_size_bytes, 3_000_000);
        assert_eq!(
            cfg.retry_on_failure.initial_interval,
            Duration::from_millis(50)
        );
        assert!(cfg.target_info.enabled);
        let e = load(&id, &serde_json::json!({"endpoint": "nope"})).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("exporters::prometheusremotewrite::endpoint"),
            "{e}"
        );
        let e = load(
            &id,
            &serde_json::json!({"endpoint": "http://x", "sending_queue": {"num_consumers": 0}}),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("sending_queue::num_consumers"),
            "{e}"
        );
        // `tls` goes through the shared HTTP client at validate: files, versions, client keys.
        for (tls, want) in [
            (
                serde_json::json!({"ca_file": "/nonexistent/ca.pem"}),
                "tls::ca_file: cannot read",
            ),
            (
                serde_json::json!({"min_version": "1.1"}),
                "tls::min_version: TLS 1.1",
            ),
            (
                serde_json::json!({"cert_file": "/nonexistent/c.pem"}),
                "tls::key_file: cert_file needs key_file",
            ),
        ] {
            let e = load(
                &id,
                &serde_json::json!({"endpoint": "https://x", "tls": tls}),
            )
            .unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
    }
}
