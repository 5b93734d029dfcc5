//! `webhook` (logs): posts vigil's events (incidents by default) as one JSON document per batch to any
//! URL, with a Slack-compatible `text` field, so that chat, runbook tools (StackStorm, Rundeck) or a
//! small relay can act on them. The payload is documented in docs/events.md; delivery, retry and
//! queueing are the shared `SendStack`.

use crate::helper::http::{error_chain, http_client};
use crate::helper::{
    classify, Delivered, Persist, QueueConfig, RetryConfig, SendError, SendSettings, SendStack,
    Sender,
};
use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use reqwest::Url;
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use vigil_core::attrs::get_str;
use vigil_core::config::{decode, duration, TlsClientConfig};
use vigil_core::otlp::common::v1::{any_value::Value, AnyValue, KeyValue};
use vigil_core::otlp::logs::v1::LogRecord;
use vigil_core::{
    ComponentId, ComponentKind, ConfigError, Exporter, ExporterFactory, Signal, Telemetry,
};

/// The payload's format version; bumped only on an incompatible change.
pub const PAYLOAD_VERSION: u64 = 1;

fn default_events() -> Vec<String> {
    vec!["vigil.incident".into()]
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookConfig {
    endpoint: Option<String>,
    /// Event names to send; `*` sends every log record.
    #[serde(default = "default_events")]
    events: Vec<String>,
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
}

/// Parses and checks an `endpoint` key: an http(s) URL with a host.
pub(crate) fn endpoint_url(id: &ComponentId, raw: Option<&str>) -> Result<Url, ConfigError> {
    let err = |msg: String| ConfigError::component(ComponentKind::Exporter, id, "endpoint", msg);
    let raw = raw.ok_or_else(|| err("is required (expected an http:// or https:// URL)".into()))?;
    let url = Url::parse(raw).map_err(|e| err(format!("invalid URL {raw:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(err(format!(
            "invalid URL {raw:?}: expected an http:// or https:// URL with a host"
        )));
    }
    Ok(url)
}

/// A JSON body ready to post; stored as is by a durable queue.
pub struct JsonBody {
    /// How many events it carries; zero means there is nothing to send.
    pub events: u32,
    pub body: Bytes,
}

impl Persist for JsonBody {
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.events.to_be_bytes().to_vec();
        out.extend_from_slice(&self.body);
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (n, body) = bytes.split_first_chunk::<4>()?;
        Some(JsonBody {
            events: u32::from_be_bytes(*n),
            body: Bytes::copy_from_slice(body),
        })
    }
}

/// An OTLP value as plain JSON (bytes as hex, key-value lists as objects).
pub(crate) fn any_to_json(v: Option<&Value>) -> Json {
    match v {
        None => Json::Null,
        Some(Value::StringValue(s)) => Json::String(s.clone()),
        Some(Value::BoolValue(b)) => Json::Bool(*b),
        Some(Value::IntValue(i)) => json!(i),
        Some(Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        Some(Value::BytesValue(b)) => Json::String(b.iter().map(|x| format!("{x:02x}")).collect()),
        Some(Value::ArrayValue(a)) => Json::Array(
            a.values
                .iter()
                .map(|x| any_to_json(x.value.as_ref()))
                .collect(),
        ),
        Some(Value::KvlistValue(l)) => Json::Object(attrs_to_json(&l.values)),
        Some(_) => Json::Null,
    }
}

pub(crate) fn attrs_to_json(attrs: &[KeyValue]) -> Map<String, Json> {
    attrs
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                any_to_json(kv.value.as_ref().and_then(|v: &AnyValue| v.value.as_ref())),
            )
        })
        .collect()
}

/// The event name of a record: its `EventName` field, else its `event.name` attribute.
pub(crate) fn event_name(r: &LogRecord) -> &str {
    if !r.event_name.is_empty() {
        return &r.event_name;
    }
    get_str(&r.attributes, "event.name").unwrap_or("")
}

pub(crate) fn body_text(r: &LogRecord) -> String {
    match r.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(v) => any_to_json(Some(v)).to_string(),
        None => String::new(),
    }
}

/// RFC 3339 UTC with milliseconds, or `None` for an unset (zero) time.
pub(crate) fn rfc3339(ns: u64) -> Option<String> {
    if ns == 0 {
        return None;
    }
    let secs = i64::try_from(ns / 1_000_000_000).ok()?;
    chrono::DateTime::from_timestamp(secs, (ns % 1_000_000_000) as u32)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Builds the documented payload from the records whose event name `wanted` accepts.
pub fn payload(data: &Telemetry, wanted: &dyn Fn(&str) -> bool) -> (u32, Json) {
    let mut events = Vec::new();
    let mut lines = Vec::new();
    if let Telemetry::Logs(rls) = data {
        for rl in rls {
            let res = rl
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            for sl in &rl.scope_logs {
                for r in &sl.log_records {
                    let name = event_name(r);
                    if !wanted(name) {
                        continue;
                    }
                    let body = body_text(r);
                    let severity = if r.severity_text.is_empty() {
                        "INFO".to_string()
                    } else {
                        r.severity_text.clone()
                    };
                    lines.push(format!("[{severity}] {body}"));
                    events.push(json!({
                        "event": name,
                        "time": rfc3339(r.time_unix_nano).or_else(|| rfc3339(r.observed_time_unix_nano)),
                        "severity": severity,
                        "body": body,
                        "resource": attrs_to_json(res),
                        "attributes": attrs_to_json(&r.attributes),
                    }));
                }
            }
        }
    }
    let n = u32::try_from(events.len()).unwrap_or(u32::MAX);
    (
        n,
        json!({
            "source": "vigil",
            "version": PAYLOAD_VERSION,
            "text": lines.join("\n"),
            "events": events,
        }),
    )
}

/// Posts a JSON body; 429 and 5xx gateway errors are retried as exporterhelper does.
pub(crate) async fn post_json(
    client: &reqwest::Client,
    url: &Url,
    body: Bytes,
) -> Result<Delivered, SendError> {
    let resp = client
        .post(url.clone())
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| SendError::retryable(format!("cannot send to {url}: {}", error_chain(&e))))?;
    let status = resp.status();
    let retry_after = classify::retry_after_header(resp.headers());
    let text = resp.bytes().await.unwrap_or_default();
    if status.is_success() {
        return Ok(Delivered::default());
    }
    let mut message = String::from_utf8_lossy(&text).into_owned();
    message.truncate(300);
    let reason = format!("HTTP {status} from {url}: {}", message.trim());
    if classify::http_status_is_retryable(status) || status.is_server_error() {
        Err(SendError::Retryable {
            reason,
            retry_after,
        })
    } else {
        Err(SendError::Permanent { reason })
    }
}

/// The webhook transport.
pub struct WebhookSender {
    client: reqwest::Client,
    url: Url,
    events: Vec<String>,
}

#[async_trait]
impl Sender for WebhookSender {
    type Request = JsonBody;

    fn prepare(&self, data: &Telemetry) -> Result<JsonBody, SendError> {
        let all = self.events.iter().any(|e| e == "*");
        let (n, body) = payload(data, &|name| all || self.events.iter().any(|e| e == name));
        let body = serde_json::to_vec(&body)
            .map_err(|e| SendError::permanent(format!("cannot encode the payload: {e}")))?;
        Ok(JsonBody {
            events: n,
            body: Bytes::from(body),
        })
    }

    async fn send(&self, req: &JsonBody) -> Result<Delivered, SendError> {
        // Batches with no selected event are normal (most logs are not vigil events).
        if req.events == 0 {
            return Ok(Delivered::default());
        }
        post_json(&self.client, &self.url, req.body.clone()).await
    }
}

fn build(id: &ComponentId, config: &Json) -> Result<SendStack<WebhookSender>, ConfigError> {
    let cfg: WebhookConfig = decode(ComponentKind::Exporter, id, config)?;
    let url = endpoint_url(id, cfg.endpoint.as_deref())?;
    if cfg.events.is_empty() {
        return Err(ConfigError::component(
            ComponentKind::Exporter,
            id,
            "events",
            "expected at least one event name (or \"*\")",
        ));
    }
    let settings = SendSettings {
        timeout: cfg.timeout,
        retry_on_failure: cfg.retry_on_failure,
        sending_queue: cfg.sending_queue,
    };
    settings.validate(id)?;
    let sender = WebhookSender {
        client: http_client(id, &cfg.headers, &cfg.tls)?,
        url,
        events: cfg.events,
    };
    Ok(SendStack::new(id, settings, sender))
}

struct Factory;

/// The `webhook` exporter factory.
pub fn factory() -> Arc<dyn ExporterFactory> {
    Arc::new(Factory)
}

impl ExporterFactory for Factory {
    fn type_name(&self) -> &'static str {
        "webhook"
    }

    fn signals(&self) -> &'static [Signal] {
        &[Signal::Logs]
    }

    fn validate(&self, id: &ComponentId, config: &Json) -> Result<(), ConfigError> {
        build(id, config).map(|_| ())
    }

    fn create(&self, id: &ComponentId, config: &Json) -> Result<Arc<dyn Exporter>, ConfigError> {
        Ok(Arc::new(build(id, config)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::attrs::kv_str;
    use vigil_core::otlp::logs::v1::{ResourceLogs, ScopeLogs};
    use vigil_core::otlp::resource::v1::Resource;

    fn rec(event: &str, body: &str) -> LogRecord {
        LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000,
            event_name: event.into(),
            severity_text: "ERROR".into(),
            body: Some(AnyValue {
                value: Some(Value::StringValue(body.into())),
            }),
            attributes: vec![kv_str("vigil.incident.id", "7")],
            ..Default::default()
        }
    }

    #[test]
    fn payload_selects_events_and_carries_slack_text() {
        let data = Telemetry::Logs(vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv_str("host.name", "n1")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![rec("vigil.incident", "incident 7 open"), rec("", "noise")],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let (n, p) = payload(&data, &|e| e == "vigil.incident");
        assert_eq!(n, 1);
        assert_eq!(p["text"], "[ERROR] incident 7 open");
        assert_eq!(p["version"], 1);
        assert_eq!(p["events"][0]["attributes"]["vigil.incident.id"], "7");
        assert_eq!(p["events"][0]["resource"]["host.name"], "n1");
        assert_eq!(p["events"][0]["time"], "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn config_errors_name_the_key() {
        let id = ComponentId::parse("webhook").unwrap();
        let e = build(&id, &json!({})).err().unwrap().to_string();
        assert!(e.contains("endpoint"), "{e}");
        let e = build(&id, &json!({"endpoint": "ftp://x"}))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("endpoint"), "{e}");
        let e = build(
            &id,
            &json!({"endpoint": "http://x", "headers": {"a b": "1"}}),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("headers"), "{e}");
    }
}
