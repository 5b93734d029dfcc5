//! OTLP log records as Datadog log entries (`POST /api/v2/logs`, a JSON array), as upstream's
//! logs translator maps them: the body is `message` (an attribute `msg`/`message`/`log` when the
//! body is empty), `status` comes from a `status`/`severity`/`level`/`syslog.severity` attribute,
//! else the severity text, else the severity number's range; `ddtags` are the resource's
//! convention tags and `otel_source:datadog_exporter`; the record's and the resource's
//! attributes are fields (maps flattened with dots); trace and span ids are sent both as
//! Datadog's decimal ids of their low 64 bits (`dd.trace_id`, `dd.span_id`) and in hex
//! (`otel.trace_id`, `otel.span_id`). A body is cut at Datadog's limits: 1000 entries, 5 MB.

use super::attrs::{hostname, resource_str, resource_tags};
use crate::helper::SendError;
use serde_json::{Map, Value as Json};
use vigil_core::otlp::common::v1::{any_value::Value, AnyValue, KeyValue};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs};

const MAX_ENTRIES: usize = 1000;
const MAX_BODY: usize = 5_000_000;
/// What upstream sets as `ddsource` for logs it translated from OTLP.
const SOURCE: &str = "otlp_log_ingestion";

pub struct Options {
    pub host: String,
}

/// An OTLP value as JSON (maps and arrays keep their shape, bytes are base64 as in OTLP/JSON).
pub fn any_json(v: &AnyValue) -> Json {
    match &v.value {
        Some(Value::StringValue(s)) => Json::String(s.clone()),
        Some(Value::BoolValue(b)) => Json::Bool(*b),
        Some(Value::IntValue(i)) => Json::from(*i),
        Some(Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(Json::Number)
            .unwrap_or_else(|| Json::String(d.to_string())),
        Some(Value::ArrayValue(a)) => Json::Array(a.values.iter().map(any_json).collect()),
        Some(Value::KvlistValue(l)) => Json::Object(
            l.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map(any_json).unwrap_or(Json::Null),
                    )
                })
                .collect(),
        ),
        Some(Value::BytesValue(b)) => {
            use base64::Engine;
            Json::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(Value::StringValueStrindex(i)) => Json::from(*i),
        None => Json::Null,
    }
}

fn as_text(v: &AnyValue) -> String {
    match &v.value {
        Some(Value::StringValue(s)) => s.clone(),
        None => String::new(),
        _ => any_json(v).to_string(),
    }
}

/// Adds an attribute as fields, a map flattened into `key.sub` fields.
fn put(fields: &mut Map<String, Json>, key: &str, v: &AnyValue) {
    if let Some(Value::KvlistValue(l)) = &v.value {
        for kv in &l.values {
            if let Some(inner) = &kv.value {
                put(fields, &format!("{key}.{}", kv.key), inner);
            }
        }
        return;
    }
    let j = match &v.value {
        Some(Value::StringValue(_))
        | Some(Value::BoolValue(_))
        | Some(Value::IntValue(_))
        | Some(Value::DoubleValue(_)) => any_json(v),
        _ => Json::String(as_text(v)),
    };
    fields.insert(key.to_string(), j);
}

/// The status of a severity number, by OpenTelemetry's ranges.
fn status_of(number: i32) -> &'static str {
    match number {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warn",
        17..=20 => "error",
        21..=24 => "fatal",
        _ => "",
    }
}

fn low64(id: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = id.get(id.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn entry(r: &LogRecord, res: &[KeyValue], host: &str, ddtags: &str) -> Json {
    let mut f = Map::new();
    for kv in res.iter().chain(&r.attributes) {
        if let Some(v) = &kv.value {
            put(&mut f, &kv.key, v);
        }
    }
    let attr = |keys: &[&str]| {
        keys.iter().find_map(|k| {
            r.attributes
                .iter()
                .find(|kv| kv.key == *k)
                .and_then(|kv| kv.value.as_ref())
                .map(as_text)
                .filter(|s| !s.is_empty())
        })
    };
    let body = r.body.as_ref().map(as_text).unwrap_or_default();
    let message = if body.is_empty() {
        attr(&["msg", "message", "log"]).unwrap_or_default()
    } else {
        body
    };
    let status = attr(&["status", "severity", "level", "syslog.severity"])
        .or_else(|| (!r.severity_text.is_empty()).then(|| r.severity_text.clone()))
        .unwrap_or_else(|| status_of(r.severity_number).to_string());
    f.insert("message".into(), Json::String(message));
    if !status.is_empty() {
        f.insert("status".into(), Json::String(status));
    }
    f.insert("hostname".into(), Json::String(host.to_string()));
    if let Some(s) = resource_str(res, "service.name") {
        f.insert("service".into(), Json::String(s.to_string()));
    }
    f.insert("ddsource".into(), Json::String(SOURCE.into()));
    f.insert("ddtags".into(), Json::String(ddtags.to_string()));
    let ts = if r.time_unix_nano != 0 {
        r.time_unix_nano
    } else {
        r.observed_time_unix_nano
    };
    if ts != 0 {
        let t = chrono::DateTime::from_timestamp_nanos(i64::try_from(ts).unwrap_or(i64::MAX));
        f.insert(
            "@timestamp".into(),
            Json::String(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
        );
        f.insert("otel.timestamp".into(), Json::String(ts.to_string()));
    }
    if !r.severity_text.is_empty() {
        f.insert(
            "otel.severity_text".into(),
            Json::String(r.severity_text.clone()),
        );
    }
    if r.severity_number != 0 {
        f.insert(
            "otel.severity_number".into(),
            Json::String(r.severity_number.to_string()),
        );
    }
    if let (false, Some(t)) = (r.trace_id.iter().all(|b| *b == 0), low64(&r.trace_id)) {
        f.insert("dd.trace_id".into(), Json::String(t.to_string()));
        f.insert("otel.trace_id".into(), Json::String(hex(&r.trace_id)));
    }
    if let (false, Some(s)) = (r.span_id.iter().all(|b| *b == 0), low64(&r.span_id)) {
        f.insert("dd.span_id".into(), Json::String(s.to_string()));
        f.insert("otel.span_id".into(), Json::String(hex(&r.span_id)));
    }
    Json::Object(f)
}

/// The JSON array bodies of a batch, each within Datadog's limits.
pub fn bodies(rls: &[ResourceLogs], opts: &Options) -> Result<Vec<Vec<u8>>, SendError> {
    let mut out = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    let mut n = 0usize;
    for rl in rls {
        let res = rl
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let host = hostname(res).unwrap_or_else(|| opts.host.clone());
        let mut tags = resource_tags(res, false);
        tags.push("otel_source:datadog_exporter".into());
        let ddtags = tags.join(",");
        for r in rl.scope_logs.iter().flat_map(|sl| &sl.log_records) {
            let one = serde_json::to_vec(&entry(r, res, &host, &ddtags))
                .map_err(|e| SendError::permanent(format!("cannot encode a log entry: {e}")))?;
            if n > 0 && (n == MAX_ENTRIES || body.len() + one.len() + 2 > MAX_BODY) {
                body.push(b']');
                out.push(std::mem::take(&mut body));
                n = 0;
            }
            body.push(if n == 0 { b'[' } else { b',' });
            body.extend_from_slice(&one);
            n += 1;
        }
    }
    if n > 0 {
        body.push(b']');
        out.push(body);
    }
    Ok(out)
}
