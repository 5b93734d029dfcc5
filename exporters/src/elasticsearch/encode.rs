//! OTLP to Elasticsearch documents, as otelcol-contrib's exporter writes them, and the index each
//! goes to. Modes: `otel` (the default: the OTLP structure with `attributes`, `resource`, `scope`,
//! `body.text`/`body.structured`, metrics grouped into one document per resource, scope,
//! timestamp and attribute set with `dynamic_templates` in the action), `none` and `raw` (flat
//! `Attributes.*`/`Resource.*` fields, `raw` without the prefixes), and `bodymap` (a log's map
//! body is the document). Routing: `elasticsearch.index`, then the static `*_index`, then the
//! data stream `{type}-{dataset}-{namespace}` from the `data_stream.*` attributes (record >
//! scope > resource), a receiver's name in the scope, or `generic`/`default`; `otel` adds
//! `.otel` to the dataset.

use crate::helper::events::{any_to_json, attrs_to_json};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value as Json};
use std::collections::BTreeMap;
use vigil_core::attrs::value_to_string;
use vigil_core::otlp::common::v1::{any_value::Value, InstrumentationScope, KeyValue};
use vigil_core::otlp::logs::v1::LogRecord;
use vigil_core::otlp::metrics::v1::{metric::Data, number_data_point, Metric};
use vigil_core::otlp::trace::v1::{span::SpanKind, status::StatusCode, Span};

/// `mapping::mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    None,
    Raw,
    Otel,
    BodyMap,
}

impl Mode {
    /// The canonical name, or `Err` with what it is when the mode is known but not built.
    pub fn parse(name: &str) -> Result<Mode, String> {
        match name.to_ascii_lowercase().as_str() {
            "" | "none" | "no" => Ok(Mode::None),
            "raw" => Ok(Mode::Raw),
            "otel" => Ok(Mode::Otel),
            "bodymap" => Ok(Mode::BodyMap),
            "ecs" => Err(
                "the ecs mapping mode is not built in vigil (otel, none, raw and bodymap are)"
                    .into(),
            ),
            other => Err(format!(
                "unknown mapping mode {other:?}; expected one of otel, none, raw, bodymap, ecs"
            )),
        }
    }
}

/// The attribute that picks a scope's mapping mode, as upstream.
pub const MODE_ATTR: &str = "elastic.mapping.mode";
const INDEX_ATTR: &str = "elasticsearch.index";
const DS_TYPE: &str = "data_stream.type";
const DS_DATASET: &str = "data_stream.dataset";
const DS_NAMESPACE: &str = "data_stream.namespace";
/// Attributes the otel mode keeps out of `attributes` (they become fields or routing).
const ELASTIC_ATTRS: [&str; 8] = [
    DS_TYPE,
    DS_DATASET,
    DS_NAMESPACE,
    "elasticsearch.mapping.hints",
    MODE_ATTR,
    "elasticsearch.document_id",
    "elasticsearch.document_pipeline",
    INDEX_ATTR,
];

/// Where a document goes, with its data stream when it is one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Index {
    pub name: String,
    pub stream: Option<(String, String, String)>,
}

/// `logstash_format`.
#[derive(Debug, Clone)]
pub struct Logstash {
    pub separator: String,
    pub date_format: String,
}

/// The routing of one signal.
#[derive(Debug, Clone)]
pub struct Router {
    /// The configured `*_index`; empty means data stream routing.
    pub static_index: String,
    pub logstash: Option<Logstash>,
}

fn find(key: &str, maps: &[&[KeyValue]]) -> Option<String> {
    maps.iter().find_map(|m| {
        m.iter().find(|kv| kv.key == key).map(|kv| {
            kv.value
                .as_ref()
                .and_then(|v| v.value.as_ref())
                .map(value_to_string)
                .unwrap_or_default()
        })
    })
}

fn sanitize(field: &str, disallowed: &str, suffix: &str) -> String {
    let mut s: String = field
        .chars()
        .map(|c| {
            if disallowed.contains(c) {
                '_'
            } else {
                c.to_lowercase().next().unwrap_or(c)
            }
        })
        .collect();
    let max = 100usize.saturating_sub(suffix.len());
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s + suffix
}

/// The receiver a scope name comes from (`.../receiver/hostmetricsreceiver/...`).
fn receiver_of(scope: &str) -> Option<&str> {
    let rest = &scope[scope.find("/receiver/")? + "/receiver/".len()..];
    let name = rest.split('/').next()?;
    (name.ends_with("receiver") && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some(name)
}

impl Router {
    /// The index of a record of data stream type `ds_type`; `record`, `scope`, `resource` are
    /// the attribute lists in that precedence.
    pub fn route(
        &self,
        ds_type: &str,
        mode: Mode,
        record: &[KeyValue],
        scope: &InstrumentationScope,
        resource: &[KeyValue],
        time_ns: u64,
    ) -> Index {
        let maps = [record, scope.attributes.as_slice(), resource];
        let index = if let Some(name) = find(INDEX_ATTR, &maps) {
            Index { name, stream: None }
        } else if !self.static_index.is_empty() {
            Index {
                name: self.static_index.clone(),
                stream: None,
            }
        } else {
            let dataset = find(DS_DATASET, &maps);
            let namespace = find(DS_NAMESPACE, &maps).unwrap_or_else(|| "default".into());
            let dataset = dataset.unwrap_or_else(|| {
                receiver_of(&scope.name)
                    .map(str::to_string)
                    .unwrap_or_else(|| "generic".into())
            });
            let suffix = if mode == Mode::Otel { ".otel" } else { "" };
            let dataset = sanitize(&dataset, "-\\/*?\"<>| ,#:", suffix);
            let namespace = sanitize(&namespace, "\\/*?\"<>| ,#:", "");
            Index {
                name: format!("{ds_type}-{dataset}-{namespace}"),
                stream: Some((ds_type.to_string(), dataset, namespace)),
            }
        };
        match &self.logstash {
            None => index,
            Some(l) => {
                // Upstream dates the index by the time of sending, not of the data.
                let _ = time_ns;
                let date = Utc::now().format(&l.date_format).to_string();
                Index {
                    name: format!("{}{}{}", index.name, l.separator, date),
                    stream: None,
                }
            }
        }
    }
}

/// `@timestamp` as the otel mode writes it: epoch milliseconds with the sub-millisecond
/// nanoseconds as a fraction, a string Elasticsearch reads into `date_nanos`.
pub fn epoch_millis(ns: u64) -> Json {
    let (ms, rest) = (ns / 1_000_000, ns % 1_000_000);
    if rest == 0 {
        Json::String(format!("{ms}.0"))
    } else {
        let frac = format!("{rest:06}");
        Json::String(format!("{ms}.{}", frac.trim_end_matches('0')))
    }
}

fn rfc3339(ns: u64) -> Json {
    let secs = (ns / 1_000_000_000) as i64;
    let nanos = (ns % 1_000_000_000) as u32;
    DateTime::<Utc>::from_timestamp(secs, nanos)
        .map(|t| Json::String(t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()))
        .unwrap_or(Json::Null)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `attributes` without Elastic's routing attributes, or `None` when empty.
fn otel_attrs(attrs: &[KeyValue]) -> Option<Json> {
    let m: Map<String, Json> = attrs_to_json(attrs)
        .into_iter()
        .filter(|(k, _)| !ELASTIC_ATTRS.contains(&k.as_str()))
        .collect();
    (!m.is_empty()).then_some(Json::Object(m))
}

fn put_opt(doc: &mut Map<String, Json>, key: &str, v: Option<Json>) {
    if let Some(v) = v {
        doc.insert(key.into(), v);
    }
}

fn put_str(doc: &mut Map<String, Json>, key: &str, v: &str) {
    if !v.is_empty() {
        doc.insert(key.into(), Json::String(v.into()));
    }
}

fn put_count(doc: &mut Map<String, Json>, key: &str, n: u32) {
    if n > 0 {
        doc.insert(key.into(), json!(n));
    }
}

/// The OTLP context every otel-mode document carries.
pub struct Context<'a> {
    pub resource: &'a [KeyValue],
    pub resource_dropped: u32,
    pub resource_schema: &'a str,
    pub scope: &'a InstrumentationScope,
    pub scope_schema: &'a str,
}

fn otel_common(doc: &mut Map<String, Json>, idx: &Index, ctx: &Context) {
    if let Some((t, d, n)) = &idx.stream {
        doc.insert(
            "data_stream".into(),
            json!({"type": t, "dataset": d, "namespace": n}),
        );
    }
    let mut r = Map::new();
    put_str(&mut r, "schema_url", ctx.resource_schema);
    put_opt(&mut r, "attributes", otel_attrs(ctx.resource));
    put_count(&mut r, "dropped_attributes_count", ctx.resource_dropped);
    doc.insert("resource".into(), Json::Object(r));
    let mut s = Map::new();
    put_str(&mut s, "schema_url", ctx.scope_schema);
    put_str(&mut s, "name", &ctx.scope.name);
    put_str(&mut s, "version", &ctx.scope.version);
    put_opt(&mut s, "attributes", otel_attrs(&ctx.scope.attributes));
    put_count(
        &mut s,
        "dropped_attributes_count",
        ctx.scope.dropped_attributes_count,
    );
    doc.insert("scope".into(), Json::Object(s));
}

/// A log record in the otel mode.
pub fn otel_log(r: &LogRecord, idx: &Index, ctx: &Context) -> Json {
    let mut d = Map::new();
    let ts = if r.time_unix_nano != 0 {
        r.time_unix_nano
    } else {
        r.observed_time_unix_nano
    };
    d.insert("@timestamp".into(), epoch_millis(ts));
    d.insert(
        "observed_timestamp".into(),
        epoch_millis(r.observed_time_unix_nano),
    );
    otel_common(&mut d, idx, ctx);
    put_str(&mut d, "severity_text", &r.severity_text);
    if r.severity_number != 0 {
        d.insert("severity_number".into(), json!(r.severity_number));
    }
    if !r.trace_id.is_empty() {
        d.insert("trace_id".into(), Json::String(hex(&r.trace_id)));
    }
    if !r.span_id.is_empty() {
        d.insert("span_id".into(), Json::String(hex(&r.span_id)));
    }
    put_opt(&mut d, "attributes", otel_attrs(&r.attributes));
    put_count(
        &mut d,
        "dropped_attributes_count",
        r.dropped_attributes_count,
    );
    let event = if !r.event_name.is_empty() {
        r.event_name.clone()
    } else {
        vigil_core::attrs::get_str(&r.attributes, "event.name")
            .unwrap_or_default()
            .to_string()
    };
    put_str(&mut d, "event_name", &event);
    if let Some(body) = r.body.as_ref().and_then(|b| b.value.as_ref()) {
        let (kind, v) = match body {
            Value::KvlistValue(_) => ("structured", any_to_json(Some(body))),
            Value::ArrayValue(a) => {
                let all_maps = a
                    .values
                    .iter()
                    .all(|x| matches!(x.value, Some(Value::KvlistValue(_))));
                let v = any_to_json(Some(body));
                // Elasticsearch takes an array only of objects; anything else is wrapped.
                (
                    "structured",
                    if all_maps { v } else { json!({ "value": v }) },
                )
            }
            _ => ("text", Json::String(value_to_string(body))),
        };
        d.insert("body".into(), json!({ kind: v }));
    }
    Json::Object(d)
}

fn kind_name(k: i32) -> &'static str {
    match SpanKind::try_from(k).unwrap_or(SpanKind::Unspecified) {
        SpanKind::Unspecified => "Unspecified",
        SpanKind::Internal => "Internal",
        SpanKind::Server => "Server",
        SpanKind::Client => "Client",
        SpanKind::Producer => "Producer",
        SpanKind::Consumer => "Consumer",
    }
}

fn status_name(c: i32) -> &'static str {
    match StatusCode::try_from(c).unwrap_or(StatusCode::Unset) {
        StatusCode::Unset => "Unset",
        StatusCode::Ok => "Ok",
        StatusCode::Error => "Error",
    }
}

/// A span in the otel mode.
pub fn otel_span(s: &Span, idx: &Index, ctx: &Context) -> Json {
    let mut d = Map::new();
    d.insert("@timestamp".into(), epoch_millis(s.start_time_unix_nano));
    otel_common(&mut d, idx, ctx);
    d.insert("trace_id".into(), Json::String(hex(&s.trace_id)));
    d.insert("span_id".into(), Json::String(hex(&s.span_id)));
    put_str(&mut d, "trace_state", &s.trace_state);
    if !s.parent_span_id.is_empty() {
        d.insert(
            "parent_span_id".into(),
            Json::String(hex(&s.parent_span_id)),
        );
    }
    put_str(&mut d, "name", &s.name);
    d.insert("kind".into(), Json::String(kind_name(s.kind).into()));
    d.insert(
        "duration".into(),
        json!(s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano)),
    );
    put_opt(&mut d, "attributes", otel_attrs(&s.attributes));
    put_count(
        &mut d,
        "dropped_attributes_count",
        s.dropped_attributes_count,
    );
    put_count(&mut d, "dropped_events_count", s.dropped_events_count);
    let links: Vec<Json> = s
        .links
        .iter()
        .map(|l| {
            let mut m = Map::new();
            m.insert("trace_id".into(), Json::String(hex(&l.trace_id)));
            m.insert("span_id".into(), Json::String(hex(&l.span_id)));
            put_str(&mut m, "trace_state", &l.trace_state);
            put_opt(&mut m, "attributes", otel_attrs(&l.attributes));
            put_count(
                &mut m,
                "dropped_attributes_count",
                l.dropped_attributes_count,
            );
            Json::Object(m)
        })
        .collect();
    d.insert("links".into(), Json::Array(links));
    put_count(&mut d, "dropped_links_count", s.dropped_links_count);
    let mut st = Map::new();
    if let Some(status) = &s.status {
        put_str(&mut st, "message", &status.message);
        st.insert("code".into(), Json::String(status_name(status.code).into()));
    } else {
        st.insert("code".into(), Json::String("Unset".into()));
    }
    d.insert("status".into(), Json::Object(st));
    Json::Object(d)
}

/// A span event in the otel mode: a document of its own, routed as a log.
pub fn otel_span_event(
    s: &Span,
    e: &vigil_core::otlp::trace::v1::span::Event,
    idx: &Index,
    ctx: &Context,
) -> Json {
    let mut d = Map::new();
    d.insert("@timestamp".into(), epoch_millis(e.time_unix_nano));
    otel_common(&mut d, idx, ctx);
    d.insert("trace_id".into(), Json::String(hex(&s.trace_id)));
    d.insert("span_id".into(), Json::String(hex(&s.span_id)));
    put_count(
        &mut d,
        "dropped_attributes_count",
        e.dropped_attributes_count,
    );
    put_str(&mut d, "event_name", &e.name);
    let mut attrs = match otel_attrs(&e.attributes) {
        Some(Json::Object(m)) => m,
        _ => Map::new(),
    };
    if !e.name.is_empty() {
        attrs.insert("event.name".into(), Json::String(e.name.clone()));
    }
    if !attrs.is_empty() {
        d.insert("attributes".into(), Json::Object(attrs));
    }
    Json::Object(d)
}

fn prefixed(d: &mut Map<String, Json>, prefix: &str, attrs: &[KeyValue]) {
    for (k, v) in attrs_to_json(attrs) {
        d.insert(format!("{prefix}{k}"), v);
    }
}

/// The flat fields of the `none` and `raw` modes, after the record's own.
fn flat_common(
    d: &mut Map<String, Json>,
    idx: &Index,
    ctx: &Context,
    record_attrs: &[KeyValue],
    raw: bool,
) {
    prefixed(d, if raw { "" } else { "Attributes." }, record_attrs);
    if let Some((t, ds, ns)) = &idx.stream {
        let p = if raw { "" } else { "Attributes." };
        d.insert(format!("{p}data_stream.type"), Json::String(t.clone()));
        d.insert(format!("{p}data_stream.dataset"), Json::String(ds.clone()));
        d.insert(
            format!("{p}data_stream.namespace"),
            Json::String(ns.clone()),
        );
    }
    prefixed(d, "Resource.", ctx.resource);
    put_str(d, "Scope.name", &ctx.scope.name);
    put_str(d, "Scope.version", &ctx.scope.version);
    prefixed(d, "Scope.", &ctx.scope.attributes);
}

/// A log record in the `none` or `raw` mode.
pub fn flat_log(r: &LogRecord, idx: &Index, ctx: &Context, raw: bool) -> Json {
    let mut d = Map::new();
    let ts = if r.time_unix_nano != 0 {
        r.time_unix_nano
    } else {
        r.observed_time_unix_nano
    };
    d.insert("@timestamp".into(), rfc3339(ts));
    if let Some(b) = &r.body {
        d.insert("Body".into(), any_to_json(b.value.as_ref()));
    }
    put_str(&mut d, "SeverityText", &r.severity_text);
    if r.severity_number != 0 {
        d.insert("SeverityNumber".into(), json!(r.severity_number));
    }
    if !r.trace_id.is_empty() {
        d.insert("TraceId".into(), Json::String(hex(&r.trace_id)));
    }
    if !r.span_id.is_empty() {
        d.insert("SpanId".into(), Json::String(hex(&r.span_id)));
    }
    if r.flags != 0 {
        d.insert("TraceFlags".into(), json!(r.flags & 0xff));
    }
    flat_common(&mut d, idx, ctx, &r.attributes, raw);
    Json::Object(d)
}

/// A span in the `none` or `raw` mode; its events are fields (`Events.<name>.<attr>`).
pub fn flat_span(s: &Span, idx: &Index, ctx: &Context, raw: bool) -> Json {
    let mut d = Map::new();
    d.insert("@timestamp".into(), rfc3339(s.start_time_unix_nano));
    d.insert("EndTimestamp".into(), rfc3339(s.end_time_unix_nano));
    d.insert("TraceId".into(), Json::String(hex(&s.trace_id)));
    d.insert("SpanId".into(), Json::String(hex(&s.span_id)));
    if !s.parent_span_id.is_empty() {
        d.insert("ParentSpanId".into(), Json::String(hex(&s.parent_span_id)));
    }
    put_str(&mut d, "Name", &s.name);
    let kind = match SpanKind::try_from(s.kind).unwrap_or(SpanKind::Unspecified) {
        SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
        SpanKind::Internal => "SPAN_KIND_INTERNAL",
        SpanKind::Server => "SPAN_KIND_SERVER",
        SpanKind::Client => "SPAN_KIND_CLIENT",
        SpanKind::Producer => "SPAN_KIND_PRODUCER",
        SpanKind::Consumer => "SPAN_KIND_CONSUMER",
    };
    d.insert("Kind".into(), Json::String(kind.into()));
    // Microseconds, as upstream's none mode.
    d.insert(
        "Duration".into(),
        json!(s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) / 1000),
    );
    if let Some(st) = &s.status {
        d.insert("TraceStatus".into(), json!(st.code));
        put_str(&mut d, "TraceStatusDescription", &st.message);
    }
    if !s.links.is_empty() {
        let links: Vec<Json> = s
            .links
            .iter()
            .map(|l| json!({"traceID": hex(&l.trace_id), "spanID": hex(&l.span_id), "attribute": attrs_to_json(&l.attributes)}))
            .collect();
        d.insert("Link".into(), Json::String(Json::Array(links).to_string()));
    }
    let ep = if raw { "" } else { "Events." };
    for e in &s.events {
        d.insert(format!("{ep}{}.time", e.name), rfc3339(e.time_unix_nano));
        for (k, v) in attrs_to_json(&e.attributes) {
            d.insert(format!("{ep}{}.{k}", e.name), v);
        }
    }
    flat_common(&mut d, idx, ctx, &s.attributes, raw);
    Json::Object(d)
}

/// A data point as the otel mode stores it: its time, start, attributes, and its value with its
/// dynamic template, or why it cannot be stored.
pub struct Point<'a> {
    pub ts: u64,
    pub start: u64,
    pub attrs: &'a [KeyValue],
    pub value: Result<(Json, &'static str), String>,
}

/// The data points of a metric as the otel mode stores them.
pub fn metric_values(m: &Metric) -> Vec<Point<'_>> {
    let mut out = Vec::new();
    fn point<'a>(
        ts: u64,
        start: u64,
        attrs: &'a [KeyValue],
        value: Result<(Json, &'static str), String>,
    ) -> Point<'a> {
        Point {
            ts,
            start,
            attrs,
            value,
        }
    }
    let number = |p: &vigil_core::otlp::metrics::v1::NumberDataPoint, counter: bool| {
        let (v, long) = match p.value {
            Some(number_data_point::Value::AsInt(i)) => (json!(i), true),
            Some(number_data_point::Value::AsDouble(d)) => match serde_json::Number::from_f64(d) {
                Some(n) => (Json::Number(n), false),
                None => return Err(format!("{d} cannot be indexed")),
            },
            None => return Err("a data point without a value".into()),
        };
        let t = match (counter, long) {
            (true, true) => "counter_long",
            (true, false) => "counter_double",
            (false, true) => "gauge_long",
            (false, false) => "gauge_double",
        };
        Ok((v, t))
    };
    match &m.data {
        Some(Data::Gauge(g)) => {
            for p in &g.data_points {
                out.push(point(
                    p.time_unix_nano,
                    p.start_time_unix_nano,
                    p.attributes.as_slice(),
                    number(p, false),
                ));
            }
        }
        Some(Data::Sum(s)) => {
            // A cumulative monotonic sum is a counter; anything else a gauge, as upstream.
            let counter = s.is_monotonic && s.aggregation_temporality == 2;
            for p in &s.data_points {
                out.push(point(
                    p.time_unix_nano,
                    p.start_time_unix_nano,
                    p.attributes.as_slice(),
                    number(p, counter),
                ));
            }
        }
        Some(Data::Histogram(h)) => {
            for p in &h.data_points {
                let mut counts = Vec::new();
                let mut values = Vec::new();
                let b = &p.explicit_bounds;
                for (i, &c) in p.bucket_counts.iter().enumerate() {
                    if c == 0 {
                        continue;
                    }
                    // Each bucket is represented by its midpoint; the open ends by their bound.
                    let v = if b.is_empty() {
                        0.0
                    } else if i == 0 {
                        if b[0] > 0.0 {
                            b[0] / 2.0
                        } else {
                            b[0]
                        }
                    } else if i >= b.len() {
                        b[b.len() - 1]
                    } else {
                        b[i - 1] + (b[i] - b[i - 1]) / 2.0
                    };
                    counts.push(c);
                    values.push(v);
                }
                let r = if p.bucket_counts.len() != b.len() + 1 && !p.bucket_counts.is_empty() {
                    Err("a histogram whose bucket counts do not match its bounds".into())
                } else {
                    Ok((json!({"counts": counts, "values": values}), "histogram"))
                };
                out.push(point(
                    p.time_unix_nano,
                    p.start_time_unix_nano,
                    p.attributes.as_slice(),
                    r,
                ));
            }
        }
        Some(Data::Summary(s)) => {
            for p in &s.data_points {
                out.push(point(
                    p.time_unix_nano,
                    p.start_time_unix_nano,
                    p.attributes.as_slice(),
                    Ok((json!({"sum": p.sum, "value_count": p.count}), "summary")),
                ));
            }
        }
        Some(Data::ExponentialHistogram(e)) => {
            for p in &e.data_points {
                out.push(point(
                    p.time_unix_nano,
                    p.start_time_unix_nano,
                    p.attributes.as_slice(),
                    Err(
                        "exponential histograms are not built in vigil's elasticsearch exporter"
                            .into(),
                    ),
                ));
            }
        }
        None => {}
    }
    out
}

/// A metrics document being gathered: one per index, timestamp, start, unit and attribute set.
#[derive(Default)]
pub struct MetricDoc {
    pub metrics: Map<String, Json>,
    pub templates: BTreeMap<String, String>,
    pub items: u32,
}

/// The key that groups data points into one document.
pub fn metric_key(idx: &Index, ts: u64, start: u64, unit: &str, attrs: &[KeyValue]) -> String {
    let mut sorted: Vec<(String, String)> = attrs_to_json(attrs)
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    sorted.sort();
    json!([idx.name, ts, start, unit, sorted]).to_string()
}

/// The source of a gathered metrics document.
pub fn otel_metric_doc(
    doc: &MetricDoc,
    idx: &Index,
    ctx: &Context,
    ts: u64,
    start: u64,
    unit: &str,
    attrs: &[KeyValue],
) -> Json {
    let mut d = Map::new();
    d.insert("@timestamp".into(), json!(ts / 1_000_000));
    if start != 0 {
        d.insert("start_timestamp".into(), json!(start / 1_000_000));
    }
    put_str(&mut d, "unit", unit);
    otel_common(&mut d, idx, ctx);
    put_opt(&mut d, "attributes", otel_attrs(attrs));
    d.insert("metrics".into(), Json::Object(doc.metrics.clone()));
    // A hash of the metric names keeps documents of different metric sets apart in a
    // time series data stream (upstream's workaround for elastic/elasticsearch#99123).
    let mut names: Vec<&String> = doc.metrics.keys().collect();
    names.sort();
    let joined: String = names.iter().map(|s| s.as_str()).collect();
    d.insert(
        "_metric_names_hash".into(),
        Json::String(format!("{:x}", crc32fast::hash(joined.as_bytes()))),
    );
    Json::Object(d)
}

/// The scope's mapping mode: `elastic.mapping.mode` on the scope, else the configured one. An
/// unknown or disallowed name keeps the configured mode.
pub fn scope_mode(scope: &InstrumentationScope, default: Mode, allowed: &[Mode]) -> Mode {
    match vigil_core::attrs::get_str(&scope.attributes, MODE_ATTR).map(Mode::parse) {
        Some(Ok(m)) if allowed.is_empty() || allowed.contains(&m) => m,
        _ => default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::attrs::kv_str;

    #[test]
    fn routing_follows_upstream_precedence() {
        let r = Router {
            static_index: String::new(),
            logstash: None,
        };
        let scope = InstrumentationScope {
            name: "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/hostmetricsreceiver/internal/scraper/cpuscraper".into(),
            ..Default::default()
        };
        let i = r.route("metrics", Mode::Otel, &[], &scope, &[], 0);
        assert_eq!(i.name, "metrics-hostmetricsreceiver.otel-default");
        let rec = [
            kv_str("data_stream.dataset", "My-App"),
            kv_str("data_stream.namespace", "Prod"),
        ];
        let res = [kv_str("data_stream.dataset", "other")];
        let i = r.route("logs", Mode::Otel, &rec, &scope, &res, 0);
        assert_eq!(i.name, "logs-my_app.otel-prod");
        let i = r.route(
            "logs",
            Mode::None,
            &[],
            &InstrumentationScope::default(),
            &[],
            0,
        );
        assert_eq!(i.name, "logs-generic-default");
        let i = r.route(
            "logs",
            Mode::Otel,
            &[],
            &InstrumentationScope::default(),
            &[kv_str("elasticsearch.index", "idx")],
            0,
        );
        assert_eq!((i.name.as_str(), i.stream), ("idx", None));
        let s = Router {
            static_index: "fixed".into(),
            logstash: Some(Logstash {
                separator: "-".into(),
                date_format: "%Y".into(),
            }),
        };
        assert!(s
            .route("logs", Mode::Otel, &[], &scope, &[], 0)
            .name
            .starts_with("fixed-20"));
    }

    #[test]
    fn timestamps_are_epoch_millis_with_a_fraction() {
        assert_eq!(
            epoch_millis(1_705_314_600_000_000_000),
            json!("1705314600000.0")
        );
        assert_eq!(
            epoch_millis(1_705_314_600_000_123_000),
            json!("1705314600000.123")
        );
        assert_eq!(
            epoch_millis(1_705_314_600_000_000_005),
            json!("1705314600000.000005")
        );
    }
}
