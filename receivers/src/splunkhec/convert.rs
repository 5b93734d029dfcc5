//! HEC events to OTLP, as otelcol-contrib's `splunkhecreceiver` maps them.
//!
//! A request body is a stream of JSON event objects (not an array). An event whose `event` is the
//! string `"metric"` is a metric event: its values are the fields `metric_name:<name>` (or the pair
//! `metric_name`/`_value`), each a Gauge point whose attributes are the other fields as text. Any
//! other event is a log record: `event` is the body, `fields` the attributes, `time` (seconds,
//! fractional) the timestamp. Events are grouped by their `host`/`source`/`sourcetype`/`index`,
//! which become resource attributes named by `hec_metadata_to_otel_attrs`. JSON numbers become
//! doubles, as Go decodes them.

use super::HecToOtelAttrs;
use serde_json::{Map, Value as Json};
use vigil_core::attrs::kv_str;
use vigil_core::otlp::common::v1::{any_value, AnyValue, ArrayValue, KeyValue, KeyValueList};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use vigil_core::otlp::resource::v1::Resource;

/// One decoded HEC event.
#[derive(Debug, Clone, Default)]
pub struct Event {
    /// Seconds since the epoch (metric events also accept ms, µs and ns; see [`metric_time`]).
    pub time: Option<f64>,
    pub host: String,
    pub source: String,
    pub sourcetype: String,
    pub index: String,
    /// `None` when missing or null.
    pub event: Option<Json>,
    pub fields: Map<String, Json>,
}

impl Event {
    pub fn is_metric(&self) -> bool {
        self.event.as_ref().and_then(Json::as_str) == Some("metric")
    }

    fn key(&self) -> [&str; 4] {
        [&self.host, &self.source, &self.sourcetype, &self.index]
    }
}

/// Why a body is not HEC events; each is one of HEC's documented answers.
#[derive(Debug, PartialEq, Eq)]
pub enum EventError {
    /// Not a stream of JSON objects of HEC's shape (code 6).
    Format(String),
    /// A field value is an object, or an array holding one (code 15); the number of events
    /// before the bad one.
    IndexedFields(usize),
}

/// The events of a body, in order.
pub fn parse_events(body: &[u8]) -> Result<Vec<Event>, EventError> {
    let mut out = Vec::new();
    for v in serde_json::Deserializer::from_slice(body).into_iter::<Json>() {
        let v = v.map_err(|e| EventError::Format(e.to_string()))?;
        let Json::Object(mut o) = v else {
            return Err(EventError::Format(format!(
                "event {} is not a JSON object",
                out.len()
            )));
        };
        let text = |o: &mut Map<String, Json>, k: &str| match o.remove(k) {
            None | Some(Json::Null) => Ok(String::new()),
            Some(Json::String(s)) => Ok(s),
            Some(other) => Err(EventError::Format(format!(
                "{k:?} must be a string, got {other}"
            ))),
        };
        let time = match o.remove("time") {
            None | Some(Json::Null) => None,
            Some(Json::Number(n)) => n.as_f64(),
            // HEC clients often send the time as text; contrib accepts it.
            Some(Json::String(s)) => Some(s.trim().parse::<f64>().map_err(|_| {
                EventError::Format(format!("\"time\" must be a number of seconds, got {s:?}"))
            })?),
            Some(other) => {
                return Err(EventError::Format(format!(
                    "\"time\" must be a number of seconds, got {other}"
                )))
            }
        };
        let fields = match o.remove("fields") {
            None | Some(Json::Null) => Map::new(),
            Some(Json::Object(m)) => m,
            Some(other) => {
                return Err(EventError::Format(format!(
                    "\"fields\" must be an object, got {other}"
                )))
            }
        };
        if !fields.values().all(flat) {
            return Err(EventError::IndexedFields(out.len()));
        }
        out.push(Event {
            time,
            host: text(&mut o, "host")?,
            source: text(&mut o, "source")?,
            sourcetype: text(&mut o, "sourcetype")?,
            index: text(&mut o, "index")?,
            event: o.remove("event").filter(|e| !e.is_null()),
            fields,
        });
    }
    Ok(out)
}

/// HEC's indexed fields are flat: a value, or an array of values.
fn flat(v: &Json) -> bool {
    match v {
        Json::Object(_) => false,
        Json::Array(a) => !a
            .iter()
            .any(|x| matches!(x, Json::Object(_) | Json::Array(_))),
        _ => true,
    }
}

/// A JSON value as an OTLP value; numbers are doubles, as Go's decoder gives them.
pub fn any(v: &Json) -> AnyValue {
    use any_value::Value as V;
    let value = match v {
        Json::Null => None,
        Json::Bool(b) => Some(V::BoolValue(*b)),
        Json::Number(n) => Some(V::DoubleValue(n.as_f64().unwrap_or(0.0))),
        Json::String(s) => Some(V::StringValue(s.clone())),
        Json::Array(a) => Some(V::ArrayValue(ArrayValue {
            values: a.iter().map(any).collect(),
        })),
        Json::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            Some(V::KvlistValue(KeyValueList {
                values: keys.into_iter().map(|k| kv_any(k, any(&o[k]))).collect(),
            }))
        }
    };
    AnyValue { value }
}

fn kv_any(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(value),
        ..Default::default()
    }
}

/// The resource of a group: the HEC metadata under `hec_metadata_to_otel_attrs`' names (empty
/// values left out), then the extra attributes (the access token, when passed through).
pub fn resource(
    names: &HecToOtelAttrs,
    [host, source, sourcetype, index]: [&str; 4],
    extra: &[KeyValue],
) -> Resource {
    let mut attributes = Vec::new();
    for (name, v) in [
        (&names.host, host),
        (&names.source, source),
        (&names.sourcetype, sourcetype),
        (&names.index, index),
    ] {
        if !v.is_empty() {
            attributes.push(kv_str(name, v));
        }
    }
    attributes.extend_from_slice(extra);
    Resource {
        attributes,
        ..Default::default()
    }
}

/// Log events to logs, one resource per distinct metadata, in order of first appearance.
pub fn logs(events: &[Event], names: &HecToOtelAttrs, extra: &[KeyValue]) -> Vec<ResourceLogs> {
    let mut out: Vec<(Vec<String>, ResourceLogs)> = Vec::new();
    for e in events {
        let key: Vec<String> = e.key().iter().map(|s| s.to_string()).collect();
        let at = match out.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                out.push((
                    key,
                    ResourceLogs {
                        resource: Some(resource(names, e.key(), extra)),
                        scope_logs: vec![ScopeLogs::default()],
                        ..Default::default()
                    },
                ));
                out.len() - 1
            }
        };
        let mut keys: Vec<&String> = e.fields.keys().collect();
        keys.sort();
        let record = LogRecord {
            time_unix_nano: e.time.map(|t| (t * 1e9) as u64).unwrap_or(0),
            body: e.event.as_ref().map(any),
            attributes: keys
                .into_iter()
                .map(|k| kv_any(k, any(&e.fields[k])))
                .collect(),
            ..Default::default()
        };
        out[at].1.scope_logs[0].log_records.push(record);
    }
    out.into_iter().map(|(_, rl)| rl).collect()
}

/// A metric event's time in nanoseconds: HEC clients send seconds, milliseconds, microseconds or
/// nanoseconds, told apart by magnitude as contrib does.
pub fn metric_time(t: f64) -> u64 {
    // Whole numbers are scaled exactly: 1700000000123 ms times 1e6 in floating point is 64 ns off.
    if t.fract() == 0.0 && (0.0..9.0e15).contains(&t) {
        let n = t as u64;
        let scale = if t >= 1e13 {
            1_000
        } else if t >= 1e10 {
            1_000_000
        } else {
            1_000_000_000
        };
        return n.saturating_mul(scale);
    }
    let ns = if t >= 1e16 {
        t
    } else if t >= 1e13 {
        t * 1e3
    } else if t >= 1e10 {
        t * 1e6
    } else {
        t * 1e9
    };
    ns as u64
}

/// A field value as contrib's `fmt.Sprintf("%v")` writes it, for data point attributes.
fn go_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{}", f as i128),
            Some(f) => format!("{f}"),
            None => n.to_string(),
        },
        Json::Array(a) => format!("[{}]", a.iter().map(go_text).collect::<Vec<_>>().join(" ")),
        other => other.to_string(),
    }
}

/// Metric events to metrics, and how many values were dropped (neither a number nor a numeric
/// string).
pub fn metrics(
    events: &[Event],
    names: &HecToOtelAttrs,
    extra: &[KeyValue],
) -> (Vec<ResourceMetrics>, usize) {
    let mut dropped = 0;
    let mut out: Vec<(Vec<String>, ResourceMetrics)> = Vec::new();
    for e in events {
        let mut values: Vec<(String, &Json)> =
            match (e.fields.get("_value"), e.fields.get("metric_name")) {
                (Some(v), Some(Json::String(name))) => vec![(name.clone(), v)],
                (Some(_), _) => {
                    dropped += 1;
                    Vec::new()
                }
                (None, _) => e
                    .fields
                    .iter()
                    .filter_map(|(k, v)| k.strip_prefix("metric_name:").map(|n| (n.to_string(), v)))
                    .collect(),
            };
        values.sort_by(|a, b| a.0.cmp(&b.0));
        let mut attr_keys: Vec<&String> = e
            .fields
            .iter()
            .filter(|(k, v)| {
                !k.starts_with("metric_name") && *k != "_value" && !k.is_empty() && !v.is_null()
            })
            .map(|(k, _)| k)
            .collect();
        attr_keys.sort();
        let attributes: Vec<KeyValue> = attr_keys
            .into_iter()
            .map(|k| kv_str(k, go_text(&e.fields[k])))
            .collect();
        let ts = e.time.map(metric_time).unwrap_or(0);
        let mut metrics = Vec::new();
        for (name, v) in values {
            let x = match v {
                Json::Number(n) => n.as_f64(),
                Json::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            let Some(x) = x else {
                dropped += 1;
                continue;
            };
            metrics.push(Metric {
                name,
                data: Some(Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint {
                        attributes: attributes.clone(),
                        time_unix_nano: ts,
                        value: Some(number_data_point::Value::AsDouble(x)),
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            });
        }
        if metrics.is_empty() {
            continue;
        }
        let key: Vec<String> = e.key().iter().map(|s| s.to_string()).collect();
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, rm)) => rm.scope_metrics[0].metrics.extend(metrics),
            None => out.push((
                key,
                ResourceMetrics {
                    resource: Some(resource(names, e.key(), extra)),
                    scope_metrics: vec![ScopeMetrics {
                        metrics,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )),
        }
    }
    (out.into_iter().map(|(_, rm)| rm).collect(), dropped)
}

/// A raw body (`raw_path`) to logs: one record per line with `split_lines` (`splitting: line`; a
/// `\r` before the `\n` dropped, no record after a final newline), else one record for the whole
/// body. The query's `host`/`source`/`sourcetype`/`index` make the resource; `time` (seconds)
/// stamps every record.
pub fn raw_logs(
    body: &[u8],
    split_lines: bool,
    meta: [&str; 4],
    time_ns: u64,
    names: &HecToOtelAttrs,
    extra: &[KeyValue],
) -> ResourceLogs {
    let record = |line: &[u8]| LogRecord {
        time_unix_nano: time_ns,
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(
                String::from_utf8_lossy(line).into_owned(),
            )),
        }),
        ..Default::default()
    };
    let records: Vec<LogRecord> = if split_lines {
        let body = body.strip_suffix(b"\n").unwrap_or(body);
        if body.is_empty() {
            Vec::new()
        } else {
            body.split(|b| *b == b'\n')
                .map(|l| record(l.strip_suffix(b"\r").unwrap_or(l)))
                .collect()
        }
    } else {
        vec![record(body)]
    };
    ResourceLogs {
        resource: Some(resource(names, meta, extra)),
        scope_logs: vec![ScopeLogs {
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    }
}
