//! `opensearch`: otelcol-contrib's OpenSearch exporter. Logs and traces become documents in the
//! Simple Schema for Observability (`ss4o`, the default mapping mode) or, with `bodymap`, a
//! log's map body as is, written with the Bulk API through the client `elasticsearch` uses
//! (`bulk_action` `create` or `index`). Indexes: `ss4o_logs-{dataset}-{namespace}` and
//! `ss4o_traces-{dataset}-{namespace}` unless `logs_index`/`traces_index` name one, whose
//! `%{attribute}` placeholders are filled from the record's, scope's and resource's attributes
//! (else `*_index_fallback`, else `unknown`), with a `-{date}` suffix when
//! `*_index_time_format` (Java-style `yyyy.MM.dd`) is set. The connection is confighttp's under
//! `http`; `retry_on_failure`, `sending_queue` and `timeout` are exporterhelper's. Items refused
//! with 429 are resent alone; other item refusals are counted as failed.
//!
//! Not built, refused at validate: the `ecs`, `flatten_attributes` and `otel-v1` modes,
//! `manage_index_template`, `ism`, and the metrics signal (`metrics_index` is read).

#[cfg(test)]
mod tests;

use crate::elasticsearch::bulk::{action_line, bulk_url, BulkClient, BulkRequest, Doc};
use crate::helper::auth::{AuthConfig, Authenticator};
use crate::helper::events::{any_to_json, attrs_to_json};
use crate::helper::http::{check_client, header_map, http_client};
use crate::helper::{
    Compression, Delivered, QueueConfig, RetryConfig, SendError, SendSettings, SendStack, Sender,
};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use vigil_core::attrs::value_to_string;
use vigil_core::config::{duration, opt_duration, TlsClientConfig};
use vigil_core::factory::{DynExporterFactory, ExporterFactory, FactoryBase};
use vigil_core::otlp::common::v1::{any_value::Value, InstrumentationScope, KeyValue};
use vigil_core::otlp::trace::v1::{span::SpanKind, status::StatusCode};
use vigil_core::{
    ComponentId, ComponentKind, ConfigError, Exporter, Host, Settings, Signal, Stability, Telemetry,
};

fn config_error(id: &ComponentId, path: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Exporter, id, path, msg)
}

/// `http`: confighttp's client keys.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpClientConfig {
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub tls: TlsClientConfig,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default, with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// confighttp's `compression`: none unless set.
    #[serde(default)]
    pub compression: Option<String>,
    #[serde(default)]
    pub proxy_url: Option<String>,
    // Connection-pool keys: read; reqwest keeps its own pool limits.
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

/// `mapping`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OsMapping {
    pub mode: String,
    pub dedup: Option<bool>,
    pub dedot: Option<bool>,
    pub fields: BTreeMap<String, String>,
    pub file: Option<String>,
    pub timestamp_field: Option<String>,
    pub unix_timestamp: bool,
    pub manage_index_template: bool,
    pub index_template_file: Option<String>,
    pub ism: Option<serde_json::Value>,
}

impl Default for OsMapping {
    fn default() -> Self {
        OsMapping {
            mode: "ss4o".into(),
            dedup: None,
            dedot: None,
            fields: BTreeMap::new(),
            file: None,
            timestamp_field: None,
            unix_timestamp: false,
            manage_index_template: false,
            index_template_file: None,
            ism: None,
        }
    }
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
    Duration::from_secs(5)
}
fn default_dataset() -> String {
    "default".into()
}
fn default_namespace() -> String {
    "namespace".into()
}
fn default_action() -> String {
    "create".into()
}

/// The `opensearch` config, with otelcol-contrib's keys and defaults.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OsConfig {
    #[serde(default)]
    pub http: HttpClientConfig,
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    #[serde(default = "no_queue")]
    pub sending_queue: QueueConfig,
    #[serde(default = "default_dataset")]
    pub dataset: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub logs_index: String,
    #[serde(default)]
    pub logs_index_fallback: String,
    #[serde(default)]
    pub logs_index_time_format: String,
    #[serde(default)]
    pub traces_index: String,
    #[serde(default)]
    pub traces_index_fallback: String,
    #[serde(default)]
    pub traces_index_time_format: String,
    #[serde(default)]
    pub metrics_index: String,
    #[serde(default)]
    pub metrics_index_fallback: String,
    #[serde(default)]
    pub metrics_index_time_format: String,
    #[serde(default = "default_action")]
    pub bulk_action: String,
    #[serde(default)]
    pub pipeline: Option<String>,
    #[serde(default)]
    pub mapping: OsMapping,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OsMode {
    Ss4o,
    BodyMap,
}

impl OsConfig {
    fn url(&self, id: &ComponentId) -> Result<Url, ConfigError> {
        let raw = self
            .http
            .endpoint
            .as_deref()
            .filter(|e| !e.is_empty())
            .ok_or_else(|| {
                config_error(id, "http::endpoint", "requires a non-empty \"endpoint\"")
            })?;
        let url = Url::parse(raw)
            .map_err(|e| config_error(id, "http::endpoint", format!("invalid URL {raw:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(config_error(
                id,
                "http::endpoint",
                format!("invalid URL {raw:?}: expected an http:// or https:// URL with a host"),
            ));
        }
        Ok(url)
    }

    fn mode(&self, id: &ComponentId) -> Result<OsMode, ConfigError> {
        match self.mapping.mode.as_str() {
            "" | "ss4o" => Ok(OsMode::Ss4o),
            "bodymap" => Ok(OsMode::BodyMap),
            m @ ("ecs" | "flatten_attributes" | "otel-v1") => Err(config_error(
                id,
                "mapping::mode",
                format!("the {m} mapping mode is not built in vigil (ss4o and bodymap are)"),
            )),
            m => Err(config_error(
                id,
                "mapping::mode",
                format!("unknown mapping mode {m:?}; expected ss4o, ecs, flatten_attributes, bodymap or otel-v1"),
            )),
        }
    }

    fn compression(&self, id: &ComponentId) -> Result<Compression, ConfigError> {
        match self.http.compression.as_deref().unwrap_or("") {
            "" | "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "deflate" | "zlib" => Ok(Compression::Deflate),
            other => Err(config_error(
                id,
                "http::compression",
                format!("unsupported compression {other:?}; expected gzip, zstd, deflate or none"),
            )),
        }
    }

    fn settings(&self) -> SendSettings {
        SendSettings {
            timeout: self.http.timeout.unwrap_or(self.timeout),
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
        }
    }

    fn validate(&self, id: &ComponentId) -> Result<(), ConfigError> {
        self.url(id)?;
        self.mode(id)?;
        self.compression(id)?;
        if !matches!(self.bulk_action.as_str(), "create" | "index") {
            return Err(config_error(
                id,
                "bulk_action",
                format!(
                    "{:?} is not allowed; expected create or index",
                    self.bulk_action
                ),
            ));
        }
        if self.dataset.is_empty() && self.logs_index.is_empty() {
            return Err(config_error(
                id,
                "dataset",
                "must not be empty when logs_index is not set",
            ));
        }
        if self.namespace.is_empty() && self.logs_index.is_empty() {
            return Err(config_error(
                id,
                "namespace",
                "must not be empty when logs_index is not set",
            ));
        }
        for (key, on) in [
            (
                "mapping::manage_index_template",
                self.mapping.manage_index_template,
            ),
            (
                "mapping::ism",
                self.mapping
                    .ism
                    .as_ref()
                    .is_some_and(|v| v.get("enabled") == Some(&json!(true))),
            ),
            (
                "http::proxy_url",
                self.http
                    .proxy_url
                    .as_deref()
                    .is_some_and(|p| !p.is_empty()),
            ),
        ] {
            if on {
                return Err(config_error(id, key, "not built in vigil; leave it unset"));
            }
        }
        if let Some(a) = &self.http.auth {
            a.id(id)?;
        }
        self.settings().validate(id)?;
        check_client(id, &self.http.headers, &self.http.tls)
    }
}

/// A Java-style date format (`yyyy.MM.dd`) as chrono's, as upstream converts it.
fn java_date_format(f: &str) -> String {
    f.replace("yyyy", "%Y")
        .replace("yy", "%y")
        .replace("MM", "%m")
        .replace("dd", "%d")
        .replace("HH", "%H")
        .replace("mm", "%M")
        .replace("ss", "%S")
}

/// How one signal's index is named.
struct IndexName {
    /// `ss4o_{type}-{dataset}-{namespace}` or the configured pattern.
    pattern: String,
    placeholders: bool,
    fallback: String,
    time_format: Option<String>,
}

impl IndexName {
    fn new(kind: &str, index: &str, fallback: &str, time_format: &str, cfg: &OsConfig) -> Self {
        let pattern = if index.is_empty() {
            format!("ss4o_{kind}-{}-{}", cfg.dataset, cfg.namespace)
        } else {
            index.to_string()
        };
        IndexName {
            placeholders: !index.is_empty() && index.contains("%{"),
            pattern,
            fallback: fallback.to_string(),
            time_format: (!time_format.is_empty()).then(|| java_date_format(time_format)),
        }
    }

    fn resolve(&self, maps: &[&[KeyValue]], now: DateTime<Utc>) -> String {
        let mut out = String::new();
        if self.placeholders {
            let mut rest = self.pattern.as_str();
            while let Some(start) = rest.find("%{") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else {
                    out.push_str(&rest[start..]);
                    rest = "";
                    break;
                };
                let key = &after[..end];
                let value = maps.iter().find_map(|m| {
                    m.iter()
                        .find(|kv| kv.key == key)
                        .and_then(|kv| kv.value.as_ref()?.value.as_ref().map(value_to_string))
                        .filter(|v| !v.is_empty())
                });
                out.push_str(&value.unwrap_or_else(|| {
                    if self.fallback.is_empty() {
                        "unknown".into()
                    } else {
                        self.fallback.clone()
                    }
                }));
                rest = &after[end + 1..];
            }
            out.push_str(rest);
        } else {
            out.push_str(&self.pattern);
        }
        if let Some(f) = &self.time_format {
            out.push('-');
            out.push_str(&now.format(f).to_string());
        }
        out
    }
}

fn rfc3339(ns: u64) -> Json {
    DateTime::<Utc>::from_timestamp((ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as u32)
        .map(|t| Json::String(t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)))
        .unwrap_or(Json::Null)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn scope_json(s: &InstrumentationScope, schema: &str) -> Json {
    let mut m = Map::new();
    m.insert("name".into(), Json::String(s.name.clone()));
    m.insert("version".into(), Json::String(s.version.clone()));
    m.insert("schemaUrl".into(), Json::String(schema.into()));
    if !s.attributes.is_empty() {
        m.insert(
            "attributes".into(),
            Json::Object(attrs_to_json(&s.attributes)),
        );
    }
    m.insert(
        "droppedAttributesCount".into(),
        json!(s.dropped_attributes_count),
    );
    Json::Object(m)
}

/// The record's attributes with ss4o's `data_stream` object.
fn ss4o_attrs(attrs: &[KeyValue], cfg: &OsSender, kind: &str) -> Json {
    let mut m = attrs_to_json(attrs);
    m.insert(
        "data_stream".into(),
        json!({"dataset": cfg.dataset, "namespace": cfg.namespace, "type": kind}),
    );
    Json::Object(m)
}

/// The OpenSearch transport.
pub struct OsSender {
    bulk: BulkClient,
    mode: OsMode,
    action: String,
    dataset: String,
    namespace: String,
    logs: IndexName,
    traces: IndexName,
}

fn empty_scope() -> &'static InstrumentationScope {
    static EMPTY: std::sync::OnceLock<InstrumentationScope> = std::sync::OnceLock::new();
    EMPTY.get_or_init(InstrumentationScope::default)
}

impl OsSender {
    fn doc(&self, index: &str, source: &Json) -> Result<Doc, SendError> {
        let source = serde_json::to_vec(source)
            .map_err(|e| SendError::permanent(format!("cannot encode a document: {e}")))?;
        Ok(Doc {
            action: action_line(&self.action, index, Map::new()),
            source: Bytes::from(source),
            items: 1,
        })
    }

    fn encode(&self, data: &Telemetry, now: DateTime<Utc>) -> Result<BulkRequest, SendError> {
        let mut docs = Vec::new();
        let mut dropped = 0u64;
        let mut reason = String::new();
        match data {
            Telemetry::Logs(rls) => {
                for rl in rls {
                    let res = rl
                        .resource
                        .as_ref()
                        .map(|r| r.attributes.as_slice())
                        .unwrap_or(&[]);
                    for sl in &rl.scope_logs {
                        let scope = sl.scope.as_ref().unwrap_or(empty_scope());
                        for r in &sl.log_records {
                            let index = self
                                .logs
                                .resolve(&[&r.attributes, &scope.attributes, res], now);
                            let source = match self.mode {
                                OsMode::BodyMap => {
                                    match r.body.as_ref().and_then(|b| b.value.as_ref()) {
                                        Some(v @ Value::KvlistValue(_)) => any_to_json(Some(v)),
                                        _ => {
                                            dropped += 1;
                                            reason = "log records whose body is not a map (bodymap mode)".into();
                                            continue;
                                        }
                                    }
                                }
                                OsMode::Ss4o => {
                                    let mut d = Map::new();
                                    let ts = if r.time_unix_nano != 0 {
                                        r.time_unix_nano
                                    } else {
                                        r.observed_time_unix_nano
                                    };
                                    d.insert("@timestamp".into(), rfc3339(ts));
                                    if r.observed_time_unix_nano != 0 {
                                        d.insert(
                                            "observedTimestamp".into(),
                                            rfc3339(r.observed_time_unix_nano),
                                        );
                                    }
                                    d.insert(
                                        "attributes".into(),
                                        ss4o_attrs(&r.attributes, self, "record"),
                                    );
                                    if let Some(b) = r.body.as_ref().and_then(|b| b.value.as_ref())
                                    {
                                        d.insert("body".into(), Json::String(value_to_string(b)));
                                    }
                                    d.insert(
                                        "instrumentationScope".into(),
                                        scope_json(scope, &sl.schema_url),
                                    );
                                    if !res.is_empty() {
                                        d.insert(
                                            "resource".into(),
                                            Json::Object(attrs_to_json(res)),
                                        );
                                    }
                                    d.insert("severity".into(), json!({"text": r.severity_text, "number": r.severity_number}));
                                    if !r.span_id.is_empty() {
                                        d.insert("spanId".into(), Json::String(hex(&r.span_id)));
                                    }
                                    if !r.trace_id.is_empty() {
                                        d.insert("traceId".into(), Json::String(hex(&r.trace_id)));
                                    }
                                    if !rl.schema_url.is_empty() {
                                        d.insert(
                                            "schemaUrl".into(),
                                            Json::String(rl.schema_url.clone()),
                                        );
                                    }
                                    if r.flags != 0 {
                                        d.insert("flags".into(), json!(r.flags));
                                    }
                                    Json::Object(d)
                                }
                            };
                            docs.push(self.doc(&index, &source)?);
                        }
                    }
                }
            }
            Telemetry::Traces(rss) => {
                for rs in rss {
                    let res = rs
                        .resource
                        .as_ref()
                        .map(|r| r.attributes.as_slice())
                        .unwrap_or(&[]);
                    for ss in &rs.scope_spans {
                        let scope = ss.scope.as_ref().unwrap_or(empty_scope());
                        for s in &ss.spans {
                            if self.mode == OsMode::BodyMap {
                                dropped += 1;
                                reason = "spans (the bodymap mode takes logs only)".into();
                                continue;
                            }
                            let index = self
                                .traces
                                .resolve(&[&s.attributes, &scope.attributes, res], now);
                            let kind =
                                match SpanKind::try_from(s.kind).unwrap_or(SpanKind::Unspecified) {
                                    SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
                                    SpanKind::Internal => "SPAN_KIND_INTERNAL",
                                    SpanKind::Server => "SPAN_KIND_SERVER",
                                    SpanKind::Client => "SPAN_KIND_CLIENT",
                                    SpanKind::Producer => "SPAN_KIND_PRODUCER",
                                    SpanKind::Consumer => "SPAN_KIND_CONSUMER",
                                };
                            let status = s.status.clone().unwrap_or_default();
                            let code = match StatusCode::try_from(status.code)
                                .unwrap_or(StatusCode::Unset)
                            {
                                StatusCode::Unset => "Unset",
                                StatusCode::Ok => "Ok",
                                StatusCode::Error => "Error",
                            };
                            let events: Vec<Json> = s
                                .events
                                .iter()
                                .map(|e| json!({"attributes": attrs_to_json(&e.attributes), "droppedAttributesCount": e.dropped_attributes_count, "name": e.name, "@timestamp": rfc3339(e.time_unix_nano)}))
                                .collect();
                            let links: Vec<Json> = s
                                .links
                                .iter()
                                .map(|l| json!({"attributes": attrs_to_json(&l.attributes), "spanId": hex(&l.span_id), "traceId": hex(&l.trace_id), "traceState": l.trace_state, "droppedAttributesCount": l.dropped_attributes_count}))
                                .collect();
                            let mut d = json!({
                                "attributes": ss4o_attrs(&s.attributes, self, "span"),
                                "droppedAttributesCount": s.dropped_attributes_count,
                                "droppedEventsCount": s.dropped_events_count,
                                "droppedLinksCount": s.dropped_links_count,
                                "endTime": rfc3339(s.end_time_unix_nano),
                                "instrumentationScope": scope_json(scope, &ss.schema_url),
                                "kind": kind,
                                "name": s.name,
                                "parentSpanId": hex(&s.parent_span_id),
                                "resource": attrs_to_json(res),
                                "spanId": hex(&s.span_id),
                                "startTime": rfc3339(s.start_time_unix_nano),
                                "status": {"code": code, "message": status.message},
                                "traceId": hex(&s.trace_id),
                                "traceState": s.trace_state,
                            });
                            if let Some(m) = d.as_object_mut() {
                                if !events.is_empty() {
                                    m.insert("events".into(), Json::Array(events));
                                }
                                if !links.is_empty() {
                                    m.insert("links".into(), Json::Array(links));
                                }
                            }
                            docs.push(self.doc(&index, &d)?);
                        }
                    }
                }
            }
            Telemetry::Metrics(_) | Telemetry::Profiles(_) => {}
        }
        Ok(BulkRequest::new(docs, dropped, reason))
    }
}

#[async_trait]
impl Sender for OsSender {
    type Request = BulkRequest;

    fn prepare(&self, data: &Telemetry) -> Result<BulkRequest, SendError> {
        self.encode(data, Utc::now())
    }

    async fn send(&self, req: &BulkRequest) -> Result<Delivered, SendError> {
        self.bulk.send(req).await
    }

    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        self.bulk.start(host)
    }
}

fn build(set: &Settings, cfg: OsConfig) -> Result<SendStack<OsSender>, ConfigError> {
    let id = &set.id;
    let h = &cfg.http;
    let (defaults, headers) = if h.auth.is_some() {
        (BTreeMap::new(), header_map(id, &h.headers)?)
    } else {
        (h.headers.clone(), http::HeaderMap::new())
    };
    let mut query: Vec<(&str, &str)> = Vec::new();
    if let Some(p) = cfg.pipeline.as_deref().filter(|p| !p.is_empty()) {
        query.push(("pipeline", p));
    }
    let sender = OsSender {
        bulk: BulkClient {
            id: id.clone(),
            client: http_client(id, &defaults, &h.tls)?,
            urls: vec![bulk_url(&cfg.url(id)?, &query)],
            next: AtomicUsize::new(0),
            compression: cfg.compression(id)?,
            authorization: None,
            auth: Authenticator::new(h.auth.as_ref().map(|a| a.id(id)).transpose()?),
            headers,
            // otelcol's OpenSearch bulk indexer retries items refused with 429.
            retry_on_status: vec![429],
        },
        mode: cfg.mode(id)?,
        action: cfg.bulk_action.clone(),
        dataset: cfg.dataset.clone(),
        namespace: cfg.namespace.clone(),
        logs: IndexName::new(
            "logs",
            &cfg.logs_index,
            &cfg.logs_index_fallback,
            &cfg.logs_index_time_format,
            &cfg,
        ),
        traces: IndexName::new(
            "traces",
            &cfg.traces_index,
            &cfg.traces_index_fallback,
            &cfg.traces_index_time_format,
            &cfg,
        ),
    };
    Ok(SendStack::new(set, cfg.settings(), sender))
}

struct Factory;

/// The `opensearch` exporter factory.
pub fn factory() -> Arc<dyn DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl FactoryBase for Factory {
    type Config = OsConfig;

    fn type_name(&self) -> &'static str {
        "opensearch"
    }

    fn validate(&self, id: &ComponentId, cfg: &OsConfig) -> Result<(), ConfigError> {
        cfg.validate(id)
    }
}

impl ExporterFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Development),
            (Signal::Logs, Stability::Development),
        ]
    }

    fn create(&self, set: Settings, cfg: OsConfig) -> Result<Arc<dyn Exporter>, ConfigError> {
        Ok(Arc::new(build(&set, cfg)?))
    }
}
