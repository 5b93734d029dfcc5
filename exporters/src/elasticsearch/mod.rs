//! `elasticsearch`: otelcol-contrib's Elasticsearch exporter. Logs, traces (span events as
//! documents of their own) and metrics become documents (`encode.rs`) posted with the Bulk API
//! (`bulk.rs`, shared with `opensearch`) to `endpoint`, `endpoints` (in turn), `cloudid` (decoded
//! to its Elasticsearch URL) or `$ELASTICSEARCH_URL`, with `api_key` (`Authorization: ApiKey`),
//! `user`/`password` or `auth: authenticator`, gzip unless `compression: none`. Items refused with
//! a status in `retry::retry_on_status` (429 by default) are resent alone; others (a 400 mapping
//! error) are counted as failed. `retry` maps onto the shared `SendStack`'s retry (with
//! `max_retries` counted), which also retries whole requests refused with 502-504 or not
//! answered; `sending_queue` is exporterhelper's.
//!
//! Mapping modes built: `otel` (default), `none`, `raw`, `bodymap`; a scope picks its own with
//! `elastic.mapping.mode` (within `allowed_modes`). Not built, refused at validate: the `ecs`
//! mode, `discover` (node sniffing), `logs_dynamic_id`/`logs_dynamic_pipeline`. Metrics are
//! written in the otel mode's shape whatever the mode.

pub(crate) mod bulk;
mod encode;

#[cfg(test)]
pub(crate) mod tests;

use crate::helper::auth::{AuthConfig, Authenticator};
use crate::helper::http::{check_client, header_map, http_client};
use crate::helper::queue::BatchSettings;
use crate::helper::{
    Compression, Delivered, QueueConfig, RetryConfig, SendError, SendSettings, SendStack, Sender,
    Sizer,
};
use async_trait::async_trait;
use base64::Engine;
use bulk::{action_line, bulk_url, BulkClient, BulkRequest, Doc};
use bytes::Bytes;
use encode::{Context, Index, Logstash, MetricDoc, Mode, Router};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use vigil_core::config::{duration, opt_duration, TlsClientConfig};
use vigil_core::factory::{DynExporterFactory, ExporterFactory, FactoryBase};
use vigil_core::otlp::common::v1::{any_value::Value, InstrumentationScope};
use vigil_core::{
    ComponentId, ComponentKind, ConfigError, Exporter, Host, Settings, Signal, Stability, Telemetry,
};

fn config_error(id: &ComponentId, path: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Exporter, id, path, msg)
}

/// `retry`: the exporter's own retry section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EsRetry {
    pub enabled: bool,
    /// Deprecated upstream: attempts in all (`max_retries` = this − 1).
    pub max_requests: u32,
    pub max_retries: u32,
    #[serde(with = "duration")]
    pub initial_interval: Duration,
    #[serde(with = "duration")]
    pub max_interval: Duration,
    pub retry_on_status: Vec<u16>,
}

impl Default for EsRetry {
    fn default() -> Self {
        EsRetry {
            enabled: true,
            max_requests: 0,
            max_retries: 2,
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(60),
            retry_on_status: vec![429],
        }
    }
}

/// `flush`: deprecated upstream; taken as `sending_queue::batch` when that is not set.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Flush {
    #[serde(default)]
    pub bytes: Option<usize>,
    #[serde(default, with = "opt_duration")]
    pub interval: Option<Duration>,
}

/// `mapping`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mapping {
    pub mode: String,
    pub allowed_modes: Vec<String>,
    /// Deprecated and without effect upstream.
    pub dedup: Option<bool>,
    pub dedot: Option<bool>,
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping {
            mode: "otel".into(),
            allowed_modes: Vec::new(),
            dedup: None,
            dedot: None,
        }
    }
}

/// `*_dynamic_index`: ignored upstream since v0.122 (routing is always dynamic); read.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Enabled {
    #[serde(default)]
    pub enabled: bool,
}

/// `discover`: node sniffing; not built, refused when turned on.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Discover {
    #[serde(default)]
    pub on_start: bool,
    #[serde(default, with = "opt_duration")]
    pub interval: Option<Duration>,
}

/// `logstash_format`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogstashFormat {
    pub enabled: bool,
    pub prefix_separator: String,
    pub date_format: String,
}

impl Default for LogstashFormat {
    fn default() -> Self {
        LogstashFormat {
            enabled: false,
            prefix_separator: "-".into(),
            date_format: "%Y.%m.%d".into(),
        }
    }
}

/// `telemetry`: request/response body logging; read, logged at debug level when set.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EsTelemetry {
    pub log_request_body: bool,
    pub log_response_body: bool,
    pub log_failed_docs_input: bool,
    #[serde(with = "opt_duration")]
    pub log_failed_docs_input_rate_limit: Option<Duration>,
}

/// `sending_queue` is optional upstream (configoptional): absent means no queue, so the exporter
/// answers the pipeline with the outcome; present, it is exporterhelper's with its defaults.
fn no_queue() -> QueueConfig {
    QueueConfig {
        enabled: false,
        ..QueueConfig::default()
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(90)
}

/// The `elasticsearch` config, with otelcol-contrib's keys and defaults.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EsConfig {
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub cloudid: Option<String>,
    #[serde(default)]
    pub num_workers: Option<usize>,
    /// Deprecated upstream alias of `logs_index`.
    #[serde(default)]
    pub index: Option<String>,
    #[serde(default)]
    pub logs_index: String,
    #[serde(default)]
    pub logs_dynamic_index: Enabled,
    #[serde(default)]
    pub metrics_index: String,
    #[serde(default)]
    pub metrics_dynamic_index: Enabled,
    #[serde(default)]
    pub traces_index: String,
    #[serde(default)]
    pub traces_dynamic_index: Enabled,
    #[serde(default)]
    pub logs_dynamic_id: Enabled,
    #[serde(default)]
    pub traces_dynamic_id: Enabled,
    #[serde(default)]
    pub logs_dynamic_pipeline: Enabled,
    #[serde(default)]
    pub pipeline: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub tls: TlsClientConfig,
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default)]
    pub discover: Discover,
    #[serde(default)]
    pub retry: EsRetry,
    #[serde(default)]
    pub flush: Option<Flush>,
    /// Deprecated upstream (the experimental `batcher`); read, `sending_queue::batch` batches.
    #[serde(default)]
    pub batcher: Option<serde_json::Value>,
    #[serde(default)]
    pub mapping: Mapping,
    #[serde(default)]
    pub logstash_format: LogstashFormat,
    #[serde(default)]
    pub telemetry: EsTelemetry,
    #[serde(default)]
    pub include_source_on_error: Option<bool>,
    #[serde(default)]
    pub bulk_response_filter_path: Option<String>,
    #[serde(default)]
    pub metadata_keys: Vec<String>,
    #[serde(default = "no_queue")]
    pub sending_queue: QueueConfig,
    // confighttp's connection-pool keys: read; reqwest keeps its own pool limits.
    #[serde(default)]
    pub read_buffer_size: Option<u64>,
    #[serde(default)]
    pub write_buffer_size: Option<u64>,
    #[serde(default)]
    pub max_idle_conns: Option<u64>,
    #[serde(default)]
    pub max_idle_conns_per_host: Option<u64>,
    #[serde(default)]
    pub max_conns_per_host: Option<u64>,
    #[serde(default, with = "opt_duration")]
    pub idle_conn_timeout: Option<Duration>,
    #[serde(default)]
    pub disable_keep_alives: bool,
}

/// Decodes a Cloud ID (`name:base64(host$es_uuid$kibana_uuid)`) to its Elasticsearch URL.
pub fn parse_cloud_id(input: &str) -> Result<Url, String> {
    let (_, encoded) = input
        .split_once(':')
        .ok_or_else(|| format!("invalid CloudID {input:?}: expected <name>:<base64>"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("invalid CloudID {input:?}: {e}"))?;
    let decoded =
        String::from_utf8(decoded).map_err(|_| format!("invalid CloudID {input:?}: not UTF-8"))?;
    let (host, rest) = decoded
        .split_once('$')
        .ok_or_else(|| format!("invalid decoded CloudID {decoded:?}"))?;
    let es = rest.split('$').next().unwrap_or_default();
    Url::parse(&format!("https://{es}.{host}"))
        .map_err(|e| format!("invalid CloudID {input:?}: {e}"))
}

impl EsConfig {
    fn urls(&self, id: &ComponentId) -> Result<Vec<Url>, ConfigError> {
        let mut sets = Vec::new();
        if let Some(e) = self.endpoint.as_deref().filter(|e| !e.is_empty()) {
            sets.push(("endpoint", vec![e.to_string()]));
        }
        if !self.endpoints.is_empty() {
            sets.push(("endpoints", self.endpoints.clone()));
        }
        if let Some(c) = self.cloudid.as_deref().filter(|c| !c.is_empty()) {
            let url = parse_cloud_id(c).map_err(|e| config_error(id, "cloudid", e))?;
            sets.push(("cloudid", vec![url.to_string()]));
        }
        if sets.is_empty() {
            if let Ok(v) = std::env::var("ELASTICSEARCH_URL") {
                if !v.is_empty() {
                    sets.push((
                        "endpoints",
                        v.split(',').map(|s| s.trim().to_string()).collect(),
                    ));
                }
            }
        }
        if sets.len() != 1 {
            return Err(config_error(
                id,
                "endpoint",
                "exactly one of [endpoint, endpoints, cloudid] must be specified (or ELASTICSEARCH_URL set)",
            ));
        }
        let (key, list) = sets.remove(0);
        list.iter()
            .map(|e| {
                if e.is_empty() {
                    return Err(config_error(id, key, "endpoint must not be empty"));
                }
                let url = Url::parse(e).map_err(|err| config_error(id, key, format!("invalid endpoint {e:?}: {err}")))?;
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return Err(config_error(
                        id,
                        key,
                        format!("invalid endpoint {e:?}: invalid scheme {:?}, expected \"http\" or \"https\"", url.scheme()),
                    ));
                }
                Ok(url)
            })
            .collect()
    }

    fn mode(&self, id: &ComponentId) -> Result<(Mode, Vec<Mode>), ConfigError> {
        let mode =
            Mode::parse(&self.mapping.mode).map_err(|e| config_error(id, "mapping::mode", e))?;
        let allowed = self
            .mapping
            .allowed_modes
            .iter()
            .map(|m| Mode::parse(m).map_err(|e| config_error(id, "mapping::allowed_modes", e)))
            .collect::<Result<Vec<_>, _>>()?;
        if !allowed.is_empty() && !allowed.contains(&mode) {
            return Err(config_error(
                id,
                "mapping::mode",
                format!(
                    "invalid or disallowed default mapping mode {:?}",
                    self.mapping.mode
                ),
            ));
        }
        Ok((mode, allowed))
    }

    fn logs_index(&self) -> String {
        if self.logs_index.is_empty() {
            self.index.clone().unwrap_or_default()
        } else {
            self.logs_index.clone()
        }
    }

    fn settings(&self) -> SendSettings {
        let r = &self.retry;
        let max_retries = if r.max_requests > 0 {
            r.max_requests - 1
        } else {
            r.max_retries
        };
        let mut queue = self.sending_queue.clone();
        if let (Some(f), None) = (&self.flush, &queue.batch) {
            // Upstream turns `flush` into the queue's batching when the queue is not configured.
            queue.enabled = true;
            queue.batch = Some(BatchSettings {
                flush_timeout: f.interval.unwrap_or(Duration::from_secs(10)),
                min_size: f.bytes.unwrap_or(5_000_000),
                sizer: Sizer::Bytes,
                ..BatchSettings::default()
            });
        }
        SendSettings {
            timeout: self.timeout,
            retry_on_failure: RetryConfig {
                enabled: r.enabled,
                initial_interval: r.initial_interval,
                max_interval: r.max_interval.max(r.initial_interval),
                randomization_factor: 0.0,
                multiplier: 2.0,
                // Bounded by the count, as upstream's retry is.
                max_elapsed_time: Duration::ZERO,
                max_retries: Some(max_retries),
            },
            sending_queue: queue,
        }
    }

    fn validate(&self, id: &ComponentId) -> Result<(), ConfigError> {
        self.urls(id)?;
        self.mode(id)?;
        if self.retry.max_requests != 0 && self.retry.max_retries != 2 {
            return Err(config_error(
                id,
                "retry::max_requests",
                "must not specify both retry::max_requests and retry::max_retries",
            ));
        }
        for (key, on) in [
            (
                "discover",
                self.discover.on_start || self.discover.interval.is_some_and(|d| !d.is_zero()),
            ),
            ("logs_dynamic_id::enabled", self.logs_dynamic_id.enabled),
            ("traces_dynamic_id::enabled", self.traces_dynamic_id.enabled),
            (
                "logs_dynamic_pipeline::enabled",
                self.logs_dynamic_pipeline.enabled,
            ),
        ] {
            if on {
                return Err(config_error(
                    id,
                    key,
                    "not built in vigil; leave it off (the configured endpoints are used as given)",
                ));
            }
        }
        if matches!(self.compression, Compression::Deflate | Compression::Zstd) {
            return Err(config_error(
                id,
                "compression",
                "must be one of [none, gzip]",
            ));
        }
        if let Some(a) = &self.auth {
            a.id(id)?;
        }
        self.settings().validate(id)?;
        check_client(id, &self.headers, &self.tls)
    }
}

/// The Elasticsearch transport.
pub struct EsSender {
    bulk: BulkClient,
    mode: Mode,
    allowed: Vec<Mode>,
    logs: Router,
    metrics: Router,
    traces: Router,
    pipeline: Option<String>,
}

/// Metric data points gathered into one document.
struct Group<'a> {
    idx: Index,
    ts: u64,
    start: u64,
    unit: String,
    attrs: &'a [vigil_core::otlp::common::v1::KeyValue],
    doc: MetricDoc,
}

fn res_attrs(
    r: &Option<vigil_core::otlp::resource::v1::Resource>,
) -> (&[vigil_core::otlp::common::v1::KeyValue], u32) {
    r.as_ref()
        .map(|r| (r.attributes.as_slice(), r.dropped_attributes_count))
        .unwrap_or((&[], 0))
}

fn empty_scope() -> &'static InstrumentationScope {
    static EMPTY: std::sync::OnceLock<InstrumentationScope> = std::sync::OnceLock::new();
    EMPTY.get_or_init(InstrumentationScope::default)
}

impl EsSender {
    fn doc(
        &self,
        idx: &Index,
        source: &Json,
        items: u32,
        extra: Map<String, Json>,
    ) -> Result<Doc, SendError> {
        let source = serde_json::to_vec(source)
            .map_err(|e| SendError::permanent(format!("cannot encode a document: {e}")))?;
        Ok(Doc {
            action: action_line("create", &idx.name, extra),
            source: Bytes::from(source),
            items,
        })
    }

    fn encode(&self, data: &Telemetry) -> Result<BulkRequest, SendError> {
        let mut docs = Vec::new();
        let mut dropped = 0u64;
        let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
        let mut drop_one = |why: String, n: u64| {
            *reasons.entry(why).or_default() += n;
        };
        match data {
            Telemetry::Logs(rls) => {
                for rl in rls {
                    let (res, res_dropped) = res_attrs(&rl.resource);
                    for sl in &rl.scope_logs {
                        let scope = sl.scope.as_ref().unwrap_or(empty_scope());
                        let mode = encode::scope_mode(scope, self.mode, &self.allowed);
                        let ctx = Context {
                            resource: res,
                            resource_dropped: res_dropped,
                            resource_schema: &rl.schema_url,
                            scope,
                            scope_schema: &sl.schema_url,
                        };
                        for r in &sl.log_records {
                            let t = if r.time_unix_nano != 0 {
                                r.time_unix_nano
                            } else {
                                r.observed_time_unix_nano
                            };
                            let idx = self.logs.route("logs", mode, &r.attributes, scope, res, t);
                            let source = match mode {
                                Mode::Otel => encode::otel_log(r, &idx, &ctx),
                                Mode::None | Mode::Raw => {
                                    encode::flat_log(r, &idx, &ctx, mode == Mode::Raw)
                                }
                                Mode::BodyMap => {
                                    match r.body.as_ref().and_then(|b| b.value.as_ref()) {
                                        Some(v @ Value::KvlistValue(_)) => {
                                            crate::helper::events::any_to_json(Some(v))
                                        }
                                        _ => {
                                            drop_one("log records whose body is not a map (bodymap mode)".into(), 1);
                                            continue;
                                        }
                                    }
                                }
                            };
                            docs.push(self.doc(&idx, &source, 1, self.extra())?);
                        }
                    }
                }
            }
            Telemetry::Traces(rss) => {
                for rs in rss {
                    let (res, res_dropped) = res_attrs(&rs.resource);
                    for ss in &rs.scope_spans {
                        let scope = ss.scope.as_ref().unwrap_or(empty_scope());
                        let mode = encode::scope_mode(scope, self.mode, &self.allowed);
                        let ctx = Context {
                            resource: res,
                            resource_dropped: res_dropped,
                            resource_schema: &rs.schema_url,
                            scope,
                            scope_schema: &ss.schema_url,
                        };
                        for s in &ss.spans {
                            let idx = self.traces.route(
                                "traces",
                                mode,
                                &s.attributes,
                                scope,
                                res,
                                s.start_time_unix_nano,
                            );
                            match mode {
                                Mode::Otel => {
                                    docs.push(self.doc(
                                        &idx,
                                        &encode::otel_span(s, &idx, &ctx),
                                        1,
                                        self.extra(),
                                    )?);
                                    // Span events are log documents of their own, counted with their span.
                                    for e in &s.events {
                                        let eidx = self.logs_for_events().route(
                                            "logs",
                                            mode,
                                            &e.attributes,
                                            scope,
                                            res,
                                            e.time_unix_nano,
                                        );
                                        docs.push(self.doc(
                                            &eidx,
                                            &encode::otel_span_event(s, e, &eidx, &ctx),
                                            0,
                                            self.extra(),
                                        )?);
                                    }
                                }
                                Mode::None | Mode::Raw => {
                                    docs.push(self.doc(
                                        &idx,
                                        &encode::flat_span(s, &idx, &ctx, mode == Mode::Raw),
                                        1,
                                        self.extra(),
                                    )?);
                                }
                                Mode::BodyMap => {
                                    drop_one("spans (the bodymap mode takes logs only)".into(), 1)
                                }
                            }
                        }
                    }
                }
            }
            Telemetry::Metrics(rms) => {
                for rm in rms {
                    let (res, res_dropped) = res_attrs(&rm.resource);
                    for sm in &rm.scope_metrics {
                        let scope = sm.scope.as_ref().unwrap_or(empty_scope());
                        let ctx = Context {
                            resource: res,
                            resource_dropped: res_dropped,
                            resource_schema: &rm.schema_url,
                            scope,
                            scope_schema: &sm.schema_url,
                        };
                        // One document per index, time, start, unit and attribute set, in first-seen order.
                        let mut order: Vec<String> = Vec::new();
                        let mut groups: HashMap<String, Group> = HashMap::new();
                        for m in &sm.metrics {
                            for encode::Point {
                                ts,
                                start,
                                attrs,
                                value,
                            } in encode::metric_values(m)
                            {
                                let (v, template) = match value {
                                    Ok(v) => v,
                                    Err(why) => {
                                        drop_one(why, 1);
                                        continue;
                                    }
                                };
                                let idx = self.metrics.route(
                                    "metrics",
                                    Mode::Otel,
                                    attrs,
                                    scope,
                                    res,
                                    ts,
                                );
                                let key = encode::metric_key(&idx, ts, start, &m.unit, attrs);
                                let g = groups.entry(key.clone()).or_insert_with(|| {
                                    order.push(key.clone());
                                    Group {
                                        idx,
                                        ts,
                                        start,
                                        unit: m.unit.clone(),
                                        attrs,
                                        doc: MetricDoc::default(),
                                    }
                                });
                                if g.doc.metrics.contains_key(&m.name) {
                                    drop_one(
                                        format!(
                                            "data points of metric {:?} repeated in one document",
                                            m.name
                                        ),
                                        1,
                                    );
                                    continue;
                                }
                                g.doc.metrics.insert(m.name.clone(), v);
                                g.doc
                                    .templates
                                    .insert(format!("metrics.{}", m.name), template.to_string());
                                g.doc.items += 1;
                            }
                        }
                        for key in order {
                            let Some(Group {
                                idx,
                                ts,
                                start,
                                unit,
                                attrs,
                                doc,
                            }) = groups.remove(&key)
                            else {
                                continue;
                            };
                            let source =
                                encode::otel_metric_doc(&doc, &idx, &ctx, ts, start, &unit, attrs);
                            let mut extra = self.extra();
                            extra.insert("dynamic_templates".into(), json!(doc.templates));
                            docs.push(self.doc(&idx, &source, doc.items, extra)?);
                        }
                    }
                }
            }
            Telemetry::Profiles(_) => {}
        }
        dropped += reasons.values().sum::<u64>();
        let reason = reasons
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(BulkRequest::new(docs, dropped, reason))
    }

    /// Span events go where logs go unless the traces index is static (then they follow it).
    fn logs_for_events(&self) -> &Router {
        if self.traces.static_index.is_empty() {
            &self.logs
        } else {
            &self.traces
        }
    }

    fn extra(&self) -> Map<String, Json> {
        let mut m = Map::new();
        if let Some(p) = &self.pipeline {
            m.insert("pipeline".into(), Json::String(p.clone()));
        }
        m
    }
}

#[async_trait]
impl Sender for EsSender {
    type Request = BulkRequest;

    fn prepare(&self, data: &Telemetry) -> Result<BulkRequest, SendError> {
        self.encode(data)
    }

    async fn send(&self, req: &BulkRequest) -> Result<Delivered, SendError> {
        self.bulk.send(req).await
    }

    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        self.bulk.start(host)
    }
}

fn build(set: &Settings, cfg: EsConfig) -> Result<SendStack<EsSender>, ConfigError> {
    let id = &set.id;
    let (mode, allowed) = cfg.mode(id)?;
    let (defaults, headers) = if cfg.auth.is_some() {
        (BTreeMap::new(), header_map(id, &cfg.headers)?)
    } else {
        (cfg.headers.clone(), http::HeaderMap::new())
    };
    let authorization = if let Some(k) = cfg.api_key.as_deref().filter(|k| !k.is_empty()) {
        Some(format!("ApiKey {k}"))
    } else {
        cfg.user.as_deref().filter(|u| !u.is_empty()).map(|u| {
            let pw = cfg.password.as_deref().unwrap_or("");
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{pw}"))
            )
        })
    };
    let mut query: Vec<(&str, &str)> = Vec::new();
    if let Some(p) = cfg.pipeline.as_deref().filter(|p| !p.is_empty()) {
        query.push(("pipeline", p));
    }
    if let Some(f) = cfg
        .bulk_response_filter_path
        .as_deref()
        .filter(|f| !f.is_empty())
    {
        query.push(("filter_path", f));
    }
    if let Some(i) = cfg.include_source_on_error {
        query.push(("include_source_on_error", if i { "true" } else { "false" }));
    }
    let urls = cfg.urls(id)?.iter().map(|u| bulk_url(u, &query)).collect();
    let logstash = cfg.logstash_format.enabled.then(|| Logstash {
        separator: cfg.logstash_format.prefix_separator.clone(),
        date_format: cfg.logstash_format.date_format.clone(),
    });
    let router = |index: String| Router {
        static_index: index,
        logstash: logstash.clone(),
    };
    let sender = EsSender {
        bulk: BulkClient {
            id: id.clone(),
            client: http_client(id, &defaults, &cfg.tls)?,
            urls,
            next: AtomicUsize::new(0),
            compression: cfg.compression,
            authorization,
            auth: Authenticator::new(cfg.auth.as_ref().map(|a| a.id(id)).transpose()?),
            headers,
            retry_on_status: if cfg.retry.enabled {
                cfg.retry.retry_on_status.clone()
            } else {
                Vec::new()
            },
        },
        mode,
        allowed,
        logs: router(cfg.logs_index()),
        metrics: router(cfg.metrics_index.clone()),
        traces: router(cfg.traces_index.clone()),
        pipeline: None,
    };
    Ok(SendStack::new(set, cfg.settings(), sender))
}

struct Factory;

/// The `elasticsearch` exporter factory.
pub fn factory() -> Arc<dyn DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl FactoryBase for Factory {
    type Config = EsConfig;

    fn type_name(&self) -> &'static str {
        "elasticsearch"
    }

    fn validate(&self, id: &ComponentId, cfg: &EsConfig) -> Result<(), ConfigError> {
        cfg.validate(id)
    }
}

impl ExporterFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Beta),
            (Signal::Metrics, Stability::Development),
            (Signal::Logs, Stability::Beta),
        ]
    }

    fn create(&self, set: Settings, cfg: EsConfig) -> Result<Arc<dyn Exporter>, ConfigError> {
        Ok(Arc::new(build(&set, cfg)?))
    }
}
