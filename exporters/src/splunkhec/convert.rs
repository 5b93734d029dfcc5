//! OTLP to Splunk HEC JSON events, as otelcol-contrib's splunk_hec exporter maps them: a log
//! record is one event whose `event` is its body; a metric data point is one
//! `"event":"metric"` event with its value in the field `metric_name:<name>` (histograms as
//! `_sum`, `_count` and cumulative `_bucket{le}` events, summaries as `_sum`, `_count` and
//! `{qt}` events); a span is one event whose `event` is the span as JSON. `host`, `source`,
//! `sourcetype` and `index` come from the attributes named in `hec_metadata_to_otel_attrs`,
//! else from the config; every other resource and record attribute is an indexed field.

use crate::helper::events::any_to_json;
use serde_json::{json, Map, Value as Json};
use vigil_core::otlp::common::v1::{any_value::Value, AnyValue, KeyValue};
use vigil_core::otlp::logs::v1::LogRecord;
use vigil_core::otlp::metrics::v1::{metric::Data, number_data_point, Metric};
use vigil_core::otlp::trace::v1::{span::SpanKind, status::StatusCode, Span};

/// The resource attribute whose value replaces the configured token for that resource.
pub const TOKEN_ATTR: &str = "com.splunk.hec.access_token";

/// Which attributes hold HEC's metadata (`hec_metadata_to_otel_attrs`).
#[derive(Debug, Clone)]
pub struct MetaKeys {
    pub source: String,
    pub sourcetype: String,
    pub index: String,
    pub host: String,
}

/// The config's defaults for the metadata, and where severity goes.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub source: String,
    pub sourcetype: String,
    pub index: String,
    pub severity_text: String,
    pub severity_number: String,
}

/// An event's metadata and fields, from the resource and then the record (the record wins).
struct Meta {
    host: Option<String>,
    source: Option<String>,
    sourcetype: Option<String>,
    index: Option<String>,
    fields: Map<String, Json>,
}

fn text(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(other) => vigil_core::attrs::value_to_string(other),
        None => String::new(),
    }
}

/// A field value: maps are flattened into dotted keys, since HEC's indexed fields take only
/// strings, numbers and lists.
fn put_field(fields: &mut Map<String, Json>, key: String, v: Option<&AnyValue>) {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::KvlistValue(l)) => {
            for kv in &l.values {
                put_field(fields, format!("{key}.{}", kv.key), kv.value.as_ref());
            }
        }
        other => {
            fields.insert(key, any_to_json(other));
        }
    }
}

fn meta(keys: &MetaKeys, layers: &[&[KeyValue]]) -> Meta {
    let mut m = Meta {
        host: None,
        source: None,
        sourcetype: None,
        index: None,
        fields: Map::new(),
    };
    for attrs in layers {
        for kv in *attrs {
            let k = kv.key.as_str();
            if k == keys.host {
                m.host = Some(text(kv.value.as_ref()));
            } else if k == keys.source {
                m.source = Some(text(kv.value.as_ref()));
            } else if k == keys.sourcetype {
                m.sourcetype = Some(text(kv.value.as_ref()));
            } else if k == keys.index {
                m.index = Some(text(kv.value.as_ref()));
            } else if k != TOKEN_ATTR {
                put_field(&mut m.fields, kv.key.clone(), kv.value.as_ref());
            }
        }
    }
    m
}

/// Seconds since the epoch with millisecond precision, HEC's `time`.
fn seconds(ns: u64) -> Option<Json> {
    if ns == 0 {
        return None;
    }
    let ms = (ns / 1_000_000) as f64;
    serde_json::Number::from_f64(ms / 1000.0).map(Json::Number)
}

fn envelope(m: Meta, d: &Defaults, time_ns: u64, event: Json) -> Json {
    let mut e = Map::new();
    if let Some(t) = seconds(time_ns) {
        e.insert("time".into(), t);
    }
    e.insert(
        "host".into(),
        Json::String(m.host.unwrap_or_else(|| "unknown".into())),
    );
    for (key, own, default) in [
        ("source", m.source, &d.source),
        ("sourcetype", m.sourcetype, &d.sourcetype),
        ("index", m.index, &d.index),
    ] {
        let v = own.unwrap_or_else(|| default.clone());
        if !v.is_empty() {
            e.insert(key.into(), Json::String(v));
        }
    }
    e.insert("event".into(), event);
    if !m.fields.is_empty() {
        e.insert("fields".into(), Json::Object(m.fields));
    }
    Json::Object(e)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A log record as a HEC event, or `None` when its body is empty: HEC refuses a blank event
/// with an error that fails the whole request, so such a record is dropped (and counted) alone.
pub fn log_event(
    r: &LogRecord,
    resource: &[KeyValue],
    keys: &MetaKeys,
    d: &Defaults,
) -> Option<Json> {
    let body = match r.body.as_ref().and_then(|b| b.value.as_ref()) {
        None => return None,
        Some(Value::StringValue(s)) if s.is_empty() => return None,
        Some(v) => any_to_json(Some(v)),
    };
    let mut m = meta(keys, &[resource, &r.attributes]);
    if !r.severity_text.is_empty() {
        m.fields.insert(
            d.severity_text.clone(),
            Json::String(r.severity_text.clone()),
        );
    }
    if r.severity_number != 0 {
        m.fields
            .insert(d.severity_number.clone(), json!(r.severity_number));
    }
    if !r.trace_id.is_empty() {
        m.fields
            .insert("trace_id".into(), Json::String(hex(&r.trace_id)));
    }
    if !r.span_id.is_empty() {
        m.fields
            .insert("span_id".into(), Json::String(hex(&r.span_id)));
    }
    let t = if r.time_unix_nano != 0 {
        r.time_unix_nano
    } else {
        r.observed_time_unix_nano
    };
    Some(envelope(m, d, t, body))
}

/// What every metric event of one resource shares.
struct Ctx<'a> {
    resource: &'a [KeyValue],
    keys: &'a MetaKeys,
    d: &'a Defaults,
}

fn metric_event(
    ctx: &Ctx<'_>,
    attrs: &[KeyValue],
    time_ns: u64,
    name: &str,
    mtype: &str,
    value: Json,
    extra: Option<(&str, String)>,
) -> Json {
    let mut m = meta(ctx.keys, &[ctx.resource, attrs]);
    m.fields.insert(format!("metric_name:{name}"), value);
    m.fields
        .insert("metric_type".into(), Json::String(mtype.into()));
    if let Some((k, v)) = extra {
        m.fields.insert(k.into(), Json::String(v));
    }
    envelope(m, ctx.d, time_ns, Json::String("metric".into()))
}

fn num(f: f64) -> Json {
    serde_json::Number::from_f64(f)
        .map(Json::Number)
        .unwrap_or_else(|| Json::String(f.to_string()))
}

/// The metric events of one metric.
pub fn metric_events(
    m: &Metric,
    resource: &[KeyValue],
    keys: &MetaKeys,
    d: &Defaults,
    out: &mut Vec<Json>,
) {
    let name = &m.name;
    let ctx = Ctx { resource, keys, d };
    match &m.data {
        Some(Data::Gauge(g)) => {
            for p in &g.data_points {
                if let Some(v) = number(p) {
                    out.push(metric_event(
                        &ctx,
                        &p.attributes,
                        p.time_unix_nano,
                        name,
                        "Gauge",
                        v,
                        None,
                    ));
                }
            }
        }
        Some(Data::Sum(s)) => {
            for p in &s.data_points {
                if let Some(v) = number(p) {
                    out.push(metric_event(
                        &ctx,
                        &p.attributes,
                        p.time_unix_nano,
                        name,
                        "Sum",
                        v,
                        None,
                    ));
                }
            }
        }
        Some(Data::Histogram(h)) => {
            for p in &h.data_points {
                let t = p.time_unix_nano;
                let ev = |n: String, v: Json, extra: Option<(&str, String)>| {
                    metric_event(&ctx, &p.attributes, t, &n, "Histogram", v, extra)
                };
                if let Some(sum) = p.sum {
                    out.push(ev(format!("{name}_sum"), num(sum), None));
                }
                out.push(ev(format!("{name}_count"), json!(p.count), None));
                if p.bucket_counts.len() == p.explicit_bounds.len() + 1 {
                    let mut cumulative: u64 = 0;
                    for (j, c) in p.bucket_counts.iter().enumerate() {
                        cumulative = cumulative.saturating_add(*c);
                        let le = p
                            .explicit_bounds
                            .get(j)
                            .map_or_else(|| "+Inf".to_string(), |b| format!("{b}"));
                        out.push(ev(
                            format!("{name}_bucket"),
                            json!(cumulative),
                            Some(("le", le)),
                        ));
                    }
                }
            }
        }
        Some(Data::Summary(s)) => {
            for p in &s.data_points {
                let t = p.time_unix_nano;
                let ev = |n: String, v: Json, extra: Option<(&str, String)>| {
                    metric_event(&ctx, &p.attributes, t, &n, "Summary", v, extra)
                };
                out.push(ev(format!("{name}_sum"), num(p.sum), None));
                out.push(ev(format!("{name}_count"), json!(p.count), None));
                for q in &p.quantile_values {
                    out.push(ev(
                        name.clone(),
                        num(q.value),
                        Some(("qt", format!("{}", q.quantile))),
                    ));
                }
            }
        }
        // Upstream has no HEC form for exponential histograms either.
        Some(Data::ExponentialHistogram(_)) | None => {}
    }
}

fn number(p: &vigil_core::otlp::metrics::v1::NumberDataPoint) -> Option<Json> {
    match p.value? {
        number_data_point::Value::AsInt(i) => Some(json!(i)),
        number_data_point::Value::AsDouble(f) => Some(num(f)),
    }
}

fn attrs_json(attrs: &[KeyValue]) -> Json {
    Json::Object(crate::helper::events::attrs_to_json(attrs))
}

/// A span as a HEC event.
pub fn span_event(s: &Span, resource: &[KeyValue], keys: &MetaKeys, d: &Defaults) -> Json {
    let m = meta(keys, &[resource]);
    let kind = SpanKind::try_from(s.kind)
        .map(|k| k.as_str_name())
        .unwrap_or("SPAN_KIND_UNSPECIFIED");
    let status = s.status.as_ref();
    let code = status
        .and_then(|st| StatusCode::try_from(st.code).ok())
        .map(|c| c.as_str_name())
        .unwrap_or("STATUS_CODE_UNSET");
    let span = json!({
        "trace_id": hex(&s.trace_id),
        "span_id": hex(&s.span_id),
        "parent_span_id": hex(&s.parent_span_id),
        "name": s.name,
        "kind": kind,
        "start_time": s.start_time_unix_nano,
        "end_time": s.end_time_unix_nano,
        "attributes": attrs_json(&s.attributes),
        "events": s.events.iter().map(|e| json!({
            "name": e.name,
            "timestamp": e.time_unix_nano,
            "attributes": attrs_json(&e.attributes),
        })).collect::<Vec<_>>(),
        "links": s.links.iter().map(|l| json!({
            "trace_id": hex(&l.trace_id),
            "span_id": hex(&l.span_id),
            "trace_state": l.trace_state,
            "attributes": attrs_json(&l.attributes),
        })).collect::<Vec<_>>(),
        "status": {
            "code": code,
            "message": status.map(|st| st.message.as_str()).unwrap_or(""),
        },
    });
    envelope(m, d, s.start_time_unix_nano, span)
}
