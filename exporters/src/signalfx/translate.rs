//! OTLP to SignalFx, as otelcol-contrib's signalfx exporter converts: every data point becomes
//! one or more SignalFx datapoints named after the metric, with the resource's and the point's
//! attributes as dimensions (the point's win); histograms become `_count`, `_sum`, `_min`,
//! `_max` and cumulative `_bucket{le}` series, summaries `_count`, `_sum` and
//! `_quantile{quantile}`. Exponential histograms are skipped, as upstream skips them. Log records
//! that carry a SignalFx event (`com.splunk.signalfx.event_category`) become events.

use super::proto::{DataPoint, Datum, Dimension, Event, MetricType, Property, PropertyValue};
use base64::Engine;
use vigil_core::otlp::common::v1::{any_value::Value, AnyValue, KeyValue};
use vigil_core::otlp::logs::v1::LogRecord;
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Metric,
};

/// The resource attribute that carries a per-origin access token (set by the signalfx receiver).
pub const TOKEN_ATTR: &str = "com.splunk.signalfx.access_token";
pub const EVENT_CATEGORY: &str = "com.splunk.signalfx.event_category";
pub const EVENT_PROPERTIES: &str = "com.splunk.signalfx.event_properties";
pub const EVENT_TYPE: &str = "com.splunk.signalfx.event_type";

/// A float as Go's `strconv.FormatFloat(f, 'g', -1, 64)` writes it (what upstream puts in `le`
/// and attribute dimensions): the shortest digits that round-trip, in exponent form when the
/// decimal exponent is below -4 or at least 6 (Go's rule for the shortest precision), with a
/// signed exponent of at least two digits.
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return "0".into();
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    format!("{f}")
}

/// An attribute value as a dimension value: strings as is, bytes base64, maps and lists as JSON.
pub fn dim_value(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => go_float(*d),
        Some(Value::BytesValue(b)) => base64::engine::general_purpose::STANDARD.encode(b),
        Some(other) => crate::helper::events::any_to_json(Some(other)).to_string(),
    }
}

/// The dimensions of a point: the resource's, then the point's, a point attribute replacing a
/// resource attribute of the same key. The passthrough token never becomes a dimension.
fn dimensions(resource: &[Dimension], attrs: &[KeyValue]) -> Vec<Dimension> {
    let mut out: Vec<Dimension> = resource
        .iter()
        .filter(|d| !attrs.iter().any(|a| a.key == d.key()))
        .cloned()
        .collect();
    out.extend(
        attrs
            .iter()
            .filter(|a| a.key != TOKEN_ATTR)
            .map(|a| Dimension::new(a.key.clone(), dim_value(a.value.as_ref()))),
    );
    out
}

/// A resource's attributes as dimensions (the token left out).
pub fn resource_dimensions(attrs: &[KeyValue]) -> Vec<Dimension> {
    attrs
        .iter()
        .filter(|a| a.key != TOKEN_ATTR)
        .map(|a| Dimension::new(a.key.clone(), dim_value(a.value.as_ref())))
        .collect()
}

fn ms(ns: u64) -> Option<i64> {
    Some(i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX))
}

fn point(
    metric: String,
    mtype: MetricType,
    ns: u64,
    value: Datum,
    dims: Vec<Dimension>,
) -> DataPoint {
    DataPoint {
        source: None,
        metric,
        timestamp: ms(ns),
        value,
        metric_type: Some(mtype as i32),
        dimensions: dims,
    }
}

pub fn int(v: i64) -> Datum {
    Datum {
        int_value: Some(v),
        ..Default::default()
    }
}

pub fn double(v: f64) -> Datum {
    Datum {
        double_value: Some(v),
        ..Default::default()
    }
}

fn counter_type(temporality: i32) -> MetricType {
    if temporality == AggregationTemporality::Delta as i32 {
        MetricType::Counter
    } else {
        MetricType::CumulativeCounter
    }
}

/// Appends the datapoints of one metric. `drop_buckets` leaves out histogram `_bucket` series
/// (`drop_histogram_buckets`); `skip_histograms` leaves histograms out entirely (they go as OTLP
/// with `send_otlp_histograms`).
pub fn from_metric(
    m: &Metric,
    resource: &[Dimension],
    drop_buckets: bool,
    skip_histograms: bool,
    out: &mut Vec<DataPoint>,
) {
    let name = &m.name;
    match &m.data {
        Some(Data::Gauge(g)) => numbers(name, MetricType::Gauge, &g.data_points, resource, out),
        Some(Data::Sum(s)) => {
            let t = if !s.is_monotonic {
                MetricType::Gauge
            } else {
                counter_type(s.aggregation_temporality)
            };
            numbers(name, t, &s.data_points, resource, out)
        }
        Some(Data::Histogram(h)) if !skip_histograms => {
            let t = counter_type(h.aggregation_temporality);
            for p in &h.data_points {
                let dims = dimensions(resource, &p.attributes);
                let ns = p.time_unix_nano;
                let count = i64::try_from(p.count).unwrap_or(i64::MAX);
                out.push(point(
                    format!("{name}_count"),
                    t,
                    ns,
                    int(count),
                    dims.clone(),
                ));
                if let Some(sum) = p.sum {
                    out.push(point(
                        format!("{name}_sum"),
                        t,
                        ns,
                        double(sum),
                        dims.clone(),
                    ));
                }
                if let Some(min) = p.min {
                    let g = MetricType::Gauge;
                    out.push(point(
                        format!("{name}_min"),
                        g,
                        ns,
                        double(min),
                        dims.clone(),
                    ));
                }
                if let Some(max) = p.max {
                    let g = MetricType::Gauge;
                    out.push(point(
                        format!("{name}_max"),
                        g,
                        ns,
                        double(max),
                        dims.clone(),
                    ));
                }
                // The data model allows no counts; with counts there is one more than bounds.
                if drop_buckets
                    || p.bucket_counts.is_empty()
                    || p.bucket_counts.len() != p.explicit_bounds.len() + 1
                {
                    continue;
                }
                let mut cumulative: u64 = 0;
                for (j, c) in p.bucket_counts.iter().enumerate() {
                    cumulative = cumulative.saturating_add(*c);
                    let le = p
                        .explicit_bounds
                        .get(j)
                        .map_or_else(|| "+Inf".to_string(), |b| go_float(*b));
                    let mut d = dims.clone();
                    d.push(Dimension::new("le", le));
                    let v = int(i64::try_from(cumulative).unwrap_or(i64::MAX));
                    out.push(point(format!("{name}_bucket"), t, ns, v, d));
                }
            }
        }
        Some(Data::Summary(s)) => {
            for p in &s.data_points {
                let dims = dimensions(resource, &p.attributes);
                let ns = p.time_unix_nano;
                let cc = MetricType::CumulativeCounter;
                let count = int(i64::try_from(p.count).unwrap_or(i64::MAX));
                out.push(point(format!("{name}_count"), cc, ns, count, dims.clone()));
                out.push(point(
                    format!("{name}_sum"),
                    cc,
                    ns,
                    double(p.sum),
                    dims.clone(),
                ));
                for q in &p.quantile_values {
                    let mut d = dims.clone();
                    d.push(Dimension::new("quantile", format!("{}", q.quantile)));
                    let g = MetricType::Gauge;
                    out.push(point(format!("{name}_quantile"), g, ns, double(q.value), d));
                }
            }
        }
        // Exponential histograms have no SignalFx form upstream either; histograms sent as OTLP
        // are handled by the caller.
        Some(Data::Histogram(_)) | Some(Data::ExponentialHistogram(_)) | None => {}
    }
}

fn numbers(
    name: &str,
    t: MetricType,
    points: &[vigil_core::otlp::metrics::v1::NumberDataPoint],
    resource: &[Dimension],
    out: &mut Vec<DataPoint>,
) {
    for p in points {
        let value = match p.value {
            Some(number_data_point::Value::AsInt(i)) => int(i),
            Some(number_data_point::Value::AsDouble(d)) => double(d),
            None => continue,
        };
        let dims = dimensions(resource, &p.attributes);
        out.push(point(name.to_string(), t, p.time_unix_nano, value, dims));
    }
}

/// Replaces every character of a dimension key that is neither alphanumeric nor one of
/// `allowed` (`nonalphanumeric_dimension_chars`) with `_`, as SignalFx requires.
pub fn sanitize_keys(points: &mut [DataPoint], allowed: &str) {
    for p in points {
        for d in &mut p.dimensions {
            if let Some(k) = &mut d.key {
                if k.chars()
                    .any(|c| !c.is_ascii_alphanumeric() && !allowed.contains(c))
                {
                    *k = k
                        .chars()
                        .map(|c| {
                            if c.is_ascii_alphanumeric() || allowed.contains(c) {
                                c
                            } else {
                                '_'
                            }
                        })
                        .collect();
                }
            }
        }
    }
}

fn property_value(v: &Value) -> Option<PropertyValue> {
    let mut out = PropertyValue::default();
    match v {
        Value::StringValue(s) => out.str_value = Some(s.clone()),
        Value::IntValue(i) => out.int_value = Some(*i),
        Value::DoubleValue(d) => out.double_value = Some(*d),
        Value::BoolValue(b) => out.bool_value = Some(*b),
        _ => return None,
    }
    Some(out)
}

/// A log record as a SignalFx event, or `None` when it carries none (no event category
/// attribute): such records are not sent, as upstream drops them.
pub fn event(r: &LogRecord, resource: &[KeyValue]) -> Option<Event> {
    let category = r.attributes.iter().find(|a| a.key == EVENT_CATEGORY)?;
    let mut ev = Event {
        category: match category.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::IntValue(i)) => i32::try_from(*i).ok(),
            _ => None,
        },
        ..Default::default()
    };
    let mut add = |kv: &KeyValue| match kv.key.as_str() {
        EVENT_CATEGORY | EVENT_PROPERTIES | TOKEN_ATTR => {}
        EVENT_TYPE => {
            if let Some(Value::StringValue(s)) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                ev.event_type = s.clone();
            }
        }
        _ => {
            // Only string attributes become dimensions, as upstream.
            if let Some(Value::StringValue(s)) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                ev.dimensions
                    .push(Dimension::new(kv.key.clone(), s.clone()));
            }
        }
    };
    for kv in resource {
        if !r.attributes.iter().any(|a| a.key == kv.key) {
            add(kv);
        }
    }
    for kv in &r.attributes {
        add(kv);
    }
    if let Some(Value::KvlistValue(props)) = r
        .attributes
        .iter()
        .find(|a| a.key == EVENT_PROPERTIES)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
    {
        for kv in &props.values {
            if let Some(v) = kv
                .value
                .as_ref()
                .and_then(|v| v.value.as_ref())
                .and_then(property_value)
            {
                ev.properties.push(Property {
                    key: Some(kv.key.clone()),
                    value: Some(v),
                });
            }
        }
    }
    ev.timestamp = ms(r.time_unix_nano);
    // The ingest API drops an event without a type; upstream names it "unknown".
    if ev.event_type.is_empty() {
        ev.event_type = "unknown".into();
    }
    Some(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_as_go_writes_them() {
        for (f, s) in [
            (0.0, "0"),
            (1.0, "1"),
            (0.005, "0.005"),
            (2.5, "2.5"),
            (100000.0, "100000"),
            (1e6, "1e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e300, "1.5e+300"),
            (f64::INFINITY, "+Inf"),
        ] {
            assert_eq!(go_float(f), s, "{f}");
        }
    }
}
