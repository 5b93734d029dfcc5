//! What the exporters of vigil's events (`webhook`, `alertmanager`) share: an event record's name,
//! text and time, OTLP values as plain JSON, the `endpoint` key's check, and a JSON POST whose
//! answer is classified as exporterhelper does.

use super::http::error_chain;
use super::{classify, Delivered, Persist, SendError};
use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use reqwest::Url;
use serde_json::{json, Map, Value as Json};
use vigil_core::attrs::get_str;
use vigil_core::otlp::common::v1::{any_value::Value, AnyValue, KeyValue};
use vigil_core::otlp::logs::v1::LogRecord;
use vigil_core::{ComponentId, ComponentKind, ConfigError};

/// Parses and checks an `endpoint` key: an http(s) URL with a host.
pub fn endpoint_url(id: &ComponentId, raw: Option<&str>) -> Result<Url, ConfigError> {
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
pub fn any_to_json(v: Option<&Value>) -> Json {
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

pub fn attrs_to_json(attrs: &[KeyValue]) -> Map<String, Json> {
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
pub fn event_name(r: &LogRecord) -> &str {
    if !r.event_name.is_empty() {
        return &r.event_name;
    }
    get_str(&r.attributes, "event.name").unwrap_or("")
}

pub fn body_text(r: &LogRecord) -> String {
    match r.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(v) => any_to_json(Some(v)).to_string(),
        None => String::new(),
    }
}

/// RFC 3339 UTC with milliseconds, or `None` for an unset (zero) time.
pub fn rfc3339(ns: u64) -> Option<String> {
    if ns == 0 {
        return None;
    }
    let secs = i64::try_from(ns / 1_000_000_000).ok()?;
    chrono::DateTime::from_timestamp(secs, (ns % 1_000_000_000) as u32)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Posts a JSON body; 429 and 5xx gateway errors are retried as exporterhelper does.
pub async fn post_json(
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
