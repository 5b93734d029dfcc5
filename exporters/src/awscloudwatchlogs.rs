//! `awscloudwatchlogs`: log records to CloudWatch Logs with `PutLogEvents`, after otelcol-contrib's
//! awscloudwatchlogsexporter. Each record becomes one event: by default the JSON object otelcol
//! writes (`body`, `severity_number`, `severity_text`, `dropped_attributes_count`, `flags`,
//! `trace_id`, `span_id`, `attributes`, `scope`, `resource`, empty ones left out); with `raw_log`
//! the body alone, and an EMF body's `_aws.LogGroupName`/`LogStreamName` (or v0's
//! `log_group_name`/`log_stream_name`) choose its group and stream.
//!
//! The calls, their limits and the creation of missing groups and streams are
//! `helper::cwlogs`'s, shared with `awsemf`; a retry resends only the calls not yet made.

use crate::helper::aws::{CredentialSource, JsonApi};
use crate::helper::cwlogs::{self, CwLogs, CwRequest, EventCounters};
use crate::helper::{
    Delivered, QueueConfig, RetryConfig, SendError, SendSettings, SendStack, Sender,
};
use async_trait::async_trait;
use base64::Engine;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value as Any, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use vigil_core::factory::{DynExporterFactory, ExporterFactory, FactoryBase};
use vigil_core::{
    ComponentId, ConfigError, Exporter, Host, Settings, Signal, Stability, Telemetry,
};

/// otelcol's default queue with one consumer ("for backwards compatibility" there), which also
/// keeps a stream's calls in the order the records came.
fn default_queue() -> QueueConfig {
    QueueConfig {
        num_consumers: 1,
        ..QueueConfig::default()
    }
}

/// `sending_queue` with [`default_queue`]'s values under the keys it does not set, as otelcol
/// merges a section into the component's defaults.
fn queue<'de, D: Deserializer<'de>>(d: D) -> Result<QueueConfig, D::Error> {
    let mut v = Value::deserialize(d)?;
    if let Value::Object(m) = &mut v {
        m.entry("num_consumers").or_insert(Value::from(1));
    }
    serde_json::from_value(v).map_err(serde::de::Error::custom)
}

crate::aws_session_config! {
    /// The `awscloudwatchlogs` exporter config (otelcol-contrib's keys and defaults). It has no
    /// `timeout` key (otelcol refuses one too): an attempt is bounded by `request_timeout_seconds`.
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct AwsCloudWatchLogsConfig {
        /// Required.
        #[serde(default)]
        pub log_group_name: String,
        /// Required.
        #[serde(default)]
        pub log_stream_name: String,
        /// Days (0: never expire), set on a log group this exporter creates.
        #[serde(default)]
        pub log_retention: i64,
        /// Tags of a log group this exporter creates.
        #[serde(default)]
        pub tags: BTreeMap<String, String>,
        /// Send the body alone (as text), and route EMF bodies by their own group and stream.
        #[serde(default)]
        pub raw_log: bool,
        /// The AWS distribution's key (CloudWatch agent): leave out records whose body is not
        /// an EMF object; not in upstream otelcol-contrib.
        #[serde(default)]
        pub emf_only: bool,
        #[serde(default)]
        pub retry_on_failure: RetryConfig,
        #[serde(default = "default_queue", deserialize_with = "queue")]
        pub sending_queue: QueueConfig,
    }
}

impl AwsCloudWatchLogsConfig {
    fn validate(&self, id: &ComponentId) -> Result<(), ConfigError> {
        self.session()
            .validate(|k: &str, m: String| ConfigError::at(k, m))?;
        if self.log_group_name.is_empty() {
            return Err(ConfigError::at(
                "log_group_name",
                "must be set (the CloudWatch Logs group to write to)",
            ));
        }
        if self.log_stream_name.is_empty() {
            return Err(ConfigError::at(
                "log_stream_name",
                "must be set (the CloudWatch Logs stream to write to)",
            ));
        }
        cwlogs::validate_retention(self.log_retention)?;
        cwlogs::validate_tags(&self.tags)?;
        self.settings().validate(id)
    }

    fn settings(&self) -> SendSettings {
        SendSettings {
            timeout: self.session().timeout(),
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
        }
    }
}

/// A value as otelcol's `AsRaw` marshals it to JSON: bytes in base64, maps with sorted keys
/// (serde_json's map is ordered); `None` for what Go's encoder refuses (a NaN or infinite double),
/// which costs the record.
fn raw(v: Option<&Any>) -> Option<Value> {
    Some(match v {
        None => Value::Null,
        Some(Any::StringValue(s)) => Value::String(s.clone()),
        Some(Any::BoolValue(b)) => Value::Bool(*b),
        Some(Any::IntValue(i)) => Value::from(*i),
        Some(Any::DoubleValue(d)) => Value::Number(serde_json::Number::from_f64(*d)?),
        Some(Any::BytesValue(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(Any::ArrayValue(a)) => Value::Array(
            a.values
                .iter()
                .map(|x| raw(x.value.as_ref()))
                .collect::<Option<_>>()?,
        ),
        Some(Any::KvlistValue(l)) => Value::Object(raw_map(&l.values)?),
        Some(Any::StringValueStrindex(_)) => Value::Null,
    })
}

fn raw_map(attrs: &[KeyValue]) -> Option<Map<String, Value>> {
    attrs
        .iter()
        .map(|kv| {
            Some((
                kv.key.clone(),
                raw(kv.value.as_ref().and_then(|v| v.value.as_ref()))?,
            ))
        })
        .collect()
}

/// `attributes`, `resource` and `scope.attributes` as JSON text: left out when empty; `None`
/// when a value cannot be written.
fn attrs(list: &[KeyValue]) -> Option<Option<String>> {
    if list.is_empty() {
        return Some(None);
    }
    Some(Some(Value::Object(raw_map(list)?).to_string()))
}

/// The body as otelcol's `AsString`: a string as it is, anything else as its JSON.
fn body_string(r: &LogRecord) -> Option<String> {
    Some(match r.body.as_ref().and_then(|b| b.value.as_ref()) {
        None => String::new(),
        Some(Any::StringValue(s)) => s.clone(),
        Some(v) => raw(Some(v))?.to_string(),
    })
}

/// Writes `fields` (JSON text each) as one JSON object in their order (otelcol's struct order),
/// which serde_json's sorted map would not keep; `None` fields are left out.
fn object(fields: &[(&str, Option<String>)]) -> String {
    let mut out = String::from("{");
    for (k, v) in fields {
        let Some(v) = v else { continue };
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&Value::String((*k).into()).to_string());
        out.push(':');
        out.push_str(v);
    }
    out.push('}');
    out
}

fn json_text(v: Option<Value>) -> Option<String> {
    v.map(|v| v.to_string())
}

fn hex(id: &[u8]) -> Option<String> {
    (id.iter().any(|b| *b != 0)).then(|| Value::String(hex::encode(id)).to_string())
}

/// A record as otelcol's `cwLogBody` JSON; `None` when a value cannot be written as JSON.
fn wrapped(
    r: &LogRecord,
    scope: Option<&InstrumentationScope>,
    resource: &Option<String>,
) -> Option<String> {
    let body = match r.body.as_ref().and_then(|b| b.value.as_ref()) {
        None => None,
        Some(v) => Some(raw(Some(v))?.to_string()),
    };
    let scope = match scope.filter(|s| !s.name.is_empty()) {
        None => None,
        Some(s) => Some(object(&[
            ("name", json_text(Some(Value::String(s.name.clone())))),
            (
                "version",
                json_text((!s.version.is_empty()).then(|| Value::String(s.version.clone()))),
            ),
            ("attributes", attrs(&s.attributes)?),
        ])),
    };
    let text = |s: &str| json_text((!s.is_empty()).then(|| Value::String(s.to_string())));
    let nonzero = |n: u64| (n != 0).then(|| n.to_string());
    Some(object(&[
        ("body", body),
        ("severity_number", nonzero(r.severity_number.max(0) as u64)),
        ("severity_text", text(&r.severity_text)),
        (
            "dropped_attributes_count",
            nonzero(u64::from(r.dropped_attributes_count)),
        ),
        ("flags", nonzero(u64::from(r.flags))),
        ("trace_id", hex(&r.trace_id)),
        ("span_id", hex(&r.span_id)),
        ("attributes", attrs(&r.attributes)?),
        ("scope", scope),
        ("resource", resource.clone()),
    ]))
}

/// An EMF body's own group and stream: v1's `_aws.LogGroupName`/`LogStreamName`, else v0's
/// `log_group_name`/`log_stream_name` (a stream only with a group, as otelcol reads them).
fn emf_target(body: &Value) -> Option<(String, Option<String>)> {
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    if let Some(g) = text(&body["_aws"]["LogGroupName"]) {
        return Some((g, text(&body["_aws"]["LogStreamName"])));
    }
    text(&body["log_group_name"]).map(|g| (g, text(&body["log_stream_name"])))
}

/// Whether a body is an EMF object: v1's `_aws.CloudWatchMetrics` or v0's `CloudWatchMetrics`.
fn is_emf(body: &Value) -> bool {
    body["_aws"]["CloudWatchMetrics"].is_array() || body["CloudWatchMetrics"].is_array()
}

/// Events (ms, message) by (group, stream), streams in the order they first appear.
type Streams = Vec<((String, String), Vec<(i64, String)>)>;

/// The CloudWatch Logs transport.
pub struct CwlSender {
    id: ComponentId,
    cfg: AwsCloudWatchLogsConfig,
    logs: CwLogs,
    counters: EventCounters,
    /// Records that cannot become an event (a NaN as JSON), or not EMF under `emf_only`.
    unwritable: metrics::Counter,
    rejected: metrics::Counter,
}

impl CwlSender {
    /// The events of a batch, by (group, stream) in the order streams first appear, and the
    /// records left out.
    fn events(&self, rls: &[opentelemetry_proto::tonic::logs::v1::ResourceLogs]) -> (Streams, u64) {
        let mut streams: Streams = Vec::new();
        let mut left_out = 0u64;
        let default = (
            self.cfg.log_group_name.clone(),
            self.cfg.log_stream_name.clone(),
        );
        for rl in rls {
            let resource = rl
                .resource
                .as_ref()
                .map_or(Some(None), |r| attrs(&r.attributes));
            for sl in &rl.scope_logs {
                for r in &sl.log_records {
                    let mut key = default.clone();
                    let message = if self.cfg.raw_log || self.cfg.emf_only {
                        let Some(text) = body_string(r) else {
                            left_out += 1;
                            continue;
                        };
                        let parsed: Option<Value> = serde_json::from_str(&text).ok();
                        if self.cfg.emf_only && !parsed.as_ref().is_some_and(is_emf) {
                            left_out += 1;
                            continue;
                        }
                        if self.cfg.raw_log {
                            if let Some((g, s)) = parsed.as_ref().and_then(emf_target) {
                                key.0 = g;
                                if let Some(s) = s {
                                    key.1 = s;
                                }
                            }
                            Some(text)
                        } else {
                            resource
                                .as_ref()
                                .and_then(|res| wrapped(r, sl.scope.as_ref(), res))
                        }
                    } else {
                        resource
                            .as_ref()
                            .and_then(|res| wrapped(r, sl.scope.as_ref(), res))
                    };
                    let Some(message) = message else {
                        left_out += 1;
                        continue;
                    };
                    let ms = i64::try_from(r.time_unix_nano / 1_000_000).unwrap_or(i64::MAX);
                    match streams.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, evs)) => evs.push((ms, message)),
                        None => streams.push((key, vec![(ms, message)])),
                    }
                }
            }
        }
        if left_out > 0 {
            self.unwritable.increment(left_out);
        }
        (streams, left_out)
    }
}

#[async_trait]
impl Sender for CwlSender {
    type Request = CwRequest;

    fn prepare(&self, data: &Telemetry) -> Result<CwRequest, SendError> {
        let Telemetry::Logs(rls) = data else {
            return Err(SendError::permanent("awscloudwatchlogs exports logs only"));
        };
        let now = chrono::Utc::now().timestamp_millis();
        let (streams, mut dropped) = self.events(rls);
        let mut batches = Vec::new();
        for ((group, stream), events) in streams {
            let (b, d) = cwlogs::split(&group, &stream, events, now, &self.counters);
            batches.extend(b);
            dropped += d;
        }
        Ok(CwRequest::new(batches, dropped))
    }

    async fn send(&self, req: &CwRequest) -> Result<Delivered, SendError> {
        let rejected = self.logs.send(req).await?;
        if rejected > 0 {
            self.rejected.increment(rejected);
        }
        let failed = rejected + req.dropped;
        Ok(Delivered {
            rejected: failed,
            message: if failed > 0 {
                format!(
                    "{failed} log records not stored: {rejected} refused by CloudWatch Logs for \
                     their time, {} left out before sending",
                    req.dropped
                )
            } else {
                String::new()
            },
        })
    }

    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        self.logs.api.start(&self.id, &self.cfg.session()).await
    }
}

fn build(
    set: &Settings,
    cfg: AwsCloudWatchLogsConfig,
    credentials: CredentialSource,
) -> Result<SendStack<CwlSender>, ConfigError> {
    let client = cfg.session().client(&set.id)?;
    let settings = cfg.settings();
    let id = set.id.to_string();
    let counter = |name: &'static str| metrics::counter!(name, "exporter" => id.clone());
    let sender = CwlSender {
        id: set.id.clone(),
        logs: CwLogs::new(
            JsonApi::new("logs", "CloudWatch Logs", client, credentials),
            cfg.log_retention,
            cfg.tags.clone(),
        ),
        counters: EventCounters {
            truncated: counter("vigil_awscloudwatchlogs_events_truncated"),
            dropped: counter("vigil_awscloudwatchlogs_events_dropped"),
        },
        unwritable: counter("vigil_awscloudwatchlogs_records_left_out"),
        rejected: counter("vigil_awscloudwatchlogs_events_rejected"),
        cfg,
    };
    Ok(SendStack::new(set, settings, sender))
}

struct Factory;

/// The `awscloudwatchlogs` exporter factory (`aws_cloudwatch_logs` is accepted too).
pub fn factory() -> Arc<dyn DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl FactoryBase for Factory {
    type Config = AwsCloudWatchLogsConfig;

    fn type_name(&self) -> &'static str {
        "awscloudwatchlogs"
    }

    fn validate(&self, id: &ComponentId, cfg: &AwsCloudWatchLogsConfig) -> Result<(), ConfigError> {
        cfg.validate(id)
    }
}

impl ExporterFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[(Signal::Logs, Stability::Beta)]
    }

    fn create(
        &self,
        set: Settings,
        cfg: AwsCloudWatchLogsConfig,
    ) -> Result<Arc<dyn Exporter>, ConfigError> {
        Ok(Arc::new(build(&set, cfg, CredentialSource::from_env())?))
    }
}

#[cfg(test)]
mod tests;
