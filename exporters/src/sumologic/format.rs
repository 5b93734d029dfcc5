//! Sumo Logic's non-OTLP bodies, as otelcol-contrib's exporter writes them: logs as one line per
//! record (`text`: the body as a string; `json`: the record's attributes with the body under
//! `log`) and metrics in Prometheus text exposition lines (`name{labels} value timestamp_ms`,
//! histograms as `_bucket`/`_sum`/`_count`, summaries as quantiles with `_sum`/`_count`). The
//! source headers (`X-Sumo-Category`, `X-Sumo-Name`, `X-Sumo-Host`) come from the resource's
//! `_sourceCategory`, `_sourceName` and `_sourceHost`; every other resource attribute goes in
//! `X-Sumo-Fields` for logs and in the labels for metrics.

use crate::helper::events::{any_to_json, attrs_to_json};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::fmt::Write;
use vigil_core::attrs::{kv_f64, value_to_string};
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::otlp::logs::v1::LogRecord;
use vigil_core::otlp::metrics::v1::{
    metric, number_data_point, Gauge, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
};

/// The resource attributes that become source headers, with their header.
pub const SOURCE_HEADERS: [(&str, &str); 3] = [
    ("_sourceCategory", "X-Sumo-Category"),
    ("_sourceName", "X-Sumo-Name"),
    ("_sourceHost", "X-Sumo-Host"),
];

fn text_of(kv: &KeyValue) -> String {
    kv.value
        .as_ref()
        .and_then(|v| v.value.as_ref())
        .map(value_to_string)
        .unwrap_or_default()
}

fn is_source_key(key: &str) -> bool {
    SOURCE_HEADERS.iter().any(|(k, _)| *k == key)
}

/// The source headers a resource asks for.
pub fn source_headers(resource: &[KeyValue]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (attr, header) in SOURCE_HEADERS {
        if let Some(kv) = resource.iter().find(|kv| kv.key == attr) {
            let v = text_of(kv);
            if !v.is_empty() {
                out.push((header.to_string(), v));
            }
        }
    }
    out
}

/// `X-Sumo-Fields`: the other resource attributes, `k=v` sorted by key and joined by `, `.
/// Commas and newlines in values would split a field, so they are escaped as otelcol does.
pub fn fields_header(resource: &[KeyValue]) -> String {
    let fields: BTreeMap<&str, String> = resource
        .iter()
        .filter(|kv| !is_source_key(&kv.key))
        .map(|kv| {
            let v = text_of(kv).replace('\\', "\\\\").replace(',', "\\,");
            (kv.key.as_str(), v.replace('\n', "\\n"))
        })
        .collect();
    fields
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A log record as a `text` line: its body as a string.
pub fn log_text(r: &LogRecord) -> String {
    r.body
        .as_ref()
        .and_then(|b| b.value.as_ref())
        .map(value_to_string)
        .unwrap_or_default()
}

/// A log record as a `json` line: its attributes, with the body under `log`.
pub fn log_json(r: &LogRecord) -> String {
    let mut obj = attrs_to_json(&r.attributes);
    obj.insert(
        "log".into(),
        any_to_json(r.body.as_ref().and_then(|b| b.value.as_ref())),
    );
    Json::Object(obj).to_string()
}

/// Prometheus' metric and label name alphabet; anything else becomes `_`.
fn sanitize_key(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn sanitize_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels_text(labels: &BTreeMap<String, String>, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", sanitize_value(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn labels_of(resource: &[KeyValue], point: &[KeyValue]) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for kv in resource.iter().filter(|kv| !is_source_key(&kv.key)) {
        labels.insert(sanitize_key(&kv.key), text_of(kv));
    }
    for kv in point {
        labels.insert(sanitize_key(&kv.key), text_of(kv));
    }
    labels
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

fn ms(ns: u64) -> u64 {
    ns / 1_000_000
}

/// One metric's lines; `None` when its type has no Prometheus form here (exponential
/// histograms, which otelcol's Sumo formatter does not write either).
pub fn metric_lines(m: &Metric, resource: &[KeyValue]) -> Option<Vec<String>> {
    let name = sanitize_key(&m.name);
    let mut out = Vec::new();
    let number = |out: &mut Vec<String>,
                  points: &[vigil_core::otlp::metrics::v1::NumberDataPoint]| {
        for p in points {
            let v = match p.value {
                Some(number_data_point::Value::AsInt(i)) => i.to_string(),
                Some(number_data_point::Value::AsDouble(d)) => num(d),
                None => continue,
            };
            let l = labels_text(&labels_of(resource, &p.attributes), None);
            out.push(format!("{name}{l} {v} {}", ms(p.time_unix_nano)));
        }
    };
    match m.data.as_ref()? {
        metric::Data::Gauge(g) => number(&mut out, &g.data_points),
        metric::Data::Sum(s) => number(&mut out, &s.data_points),
        metric::Data::Histogram(h) => {
            for p in &h.data_points {
                let labels = labels_of(resource, &p.attributes);
                let ts = ms(p.time_unix_nano);
                let mut cumulative = 0u64;
                for (i, c) in p.bucket_counts.iter().enumerate() {
                    cumulative += c;
                    let le = p
                        .explicit_bounds
                        .get(i)
                        .map(|b| num(*b))
                        .unwrap_or("+Inf".into());
                    let l = labels_text(&labels, Some(("le", le)));
                    out.push(format!("{name}_bucket{l} {cumulative} {ts}"));
                }
                let l = labels_text(&labels, None);
                if let Some(sum) = p.sum {
                    out.push(format!("{name}_sum{l} {} {ts}", num(sum)));
                }
                out.push(format!("{name}_count{l} {} {ts}", p.count));
            }
        }
        metric::Data::Summary(s) => {
            for p in &s.data_points {
                let labels = labels_of(resource, &p.attributes);
                let ts = ms(p.time_unix_nano);
                for q in &p.quantile_values {
                    let l = labels_text(&labels, Some(("quantile", num(q.quantile))));
                    out.push(format!("{name}{l} {} {ts}", num(q.value)));
                }
                let l = labels_text(&labels, None);
                let mut line = String::new();
                let _ = write!(line, "{name}_sum{l} {} {ts}", num(p.sum));
                out.push(line);
                out.push(format!("{name}_count{l} {} {ts}", p.count));
            }
        }
        metric::Data::ExponentialHistogram(_) => return None,
    }
    Some(out)
}

/// Whether any metric is an OTLP histogram (`decompose_otlp_histograms` then copies the batch).
pub fn has_histogram(rms: &[ResourceMetrics]) -> bool {
    rms.iter()
        .flat_map(|rm| rm.scope_metrics.iter())
        .flat_map(|sm| sm.metrics.iter())
        .any(|m| matches!(m.data, Some(metric::Data::Histogram(_))))
}

/// `decompose_otlp_histograms`: each histogram of a scope is replaced by three gauges appended
/// after the scope's other metrics, in upstream's order `<name>_sum` (double), `<name>_count`
/// (int) and `<name>_bucket` (int, cumulative, one point per bound with a double `le` attribute
/// and a last one at `+Inf`): the semantics of the Prometheus lines above, kept in OTLP.
pub fn decompose_histograms(rms: &[ResourceMetrics]) -> Vec<ResourceMetrics> {
    let mut out = rms.to_vec();
    for sm in out.iter_mut().flat_map(|rm| rm.scope_metrics.iter_mut()) {
        let mut kept = Vec::with_capacity(sm.metrics.len());
        let mut added = Vec::new();
        for m in sm.metrics.drain(..) {
            match &m.data {
                Some(metric::Data::Histogram(h)) => added.extend(decompose(&m, &h.data_points)),
                _ => kept.push(m),
            }
        }
        kept.extend(added);
        sm.metrics = kept;
    }
    out
}

fn decompose(m: &Metric, points: &[HistogramDataPoint]) -> [Metric; 3] {
    let gauge = |suffix: &str, data_points: Vec<NumberDataPoint>| Metric {
        name: format!("{}{suffix}", m.name),
        description: m.description.clone(),
        unit: m.unit.clone(),
        data: Some(metric::Data::Gauge(Gauge { data_points })),
        ..Default::default()
    };
    let point = |p: &HistogramDataPoint, attributes: Vec<KeyValue>, v| NumberDataPoint {
        attributes,
        start_time_unix_nano: p.start_time_unix_nano,
        time_unix_nano: p.time_unix_nano,
        value: Some(v),
        ..Default::default()
    };
    let sums = points
        .iter()
        .map(|p| {
            let v = number_data_point::Value::AsDouble(p.sum.unwrap_or(0.0));
            point(p, p.attributes.clone(), v)
        })
        .collect();
    let counts = points
        .iter()
        .map(|p| {
            let v = number_data_point::Value::AsInt(p.count as i64);
            point(p, p.attributes.clone(), v)
        })
        .collect();
    let mut buckets = Vec::new();
    for p in points {
        let mut cumulative = 0u64;
        let bounds = p.explicit_bounds.iter().copied().chain([f64::INFINITY]);
        for (i, le) in bounds.enumerate() {
            // A point with fewer counts than bounds + 1 is malformed; a missing count is 0
            // rather than a panic.
            cumulative += p.bucket_counts.get(i).copied().unwrap_or(0);
            let mut attributes = p.attributes.clone();
            attributes.push(kv_f64("le", le));
            let v = number_data_point::Value::AsInt(cumulative as i64);
            buckets.push(point(p, attributes, v));
        }
    }
    [
        gauge("_sum", sums),
        gauge("_count", counts),
        gauge("_bucket", buckets),
    ]
}
