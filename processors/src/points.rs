//! What the metrics processors (`metricstransform`, `deltatocumulative`, `interval`,
//! `metricsgeneration`) share about a metric's data points whatever the metric's type: counting
//! them, reaching every point's attributes, dropping points by their attributes, and the text key
//! of a stream (resource, scope, metric identity and point attributes) that stateful processors
//! remember streams by.

use vigil_core::otlp::common::v1::{any_value, KeyValue};
use vigil_core::otlp::metrics::v1::{metric, AggregationTemporality, Metric};

/// Runs `$body` with `$pts` bound to the metric's point list, whatever its type (the point types
/// differ, so this is a macro: the body is checked once per type).
macro_rules! with_points {
    ($data:expr, $pts:ident => $body:expr) => {
        match $data {
            Some(vigil_core::otlp::metrics::v1::metric::Data::Gauge(g)) => {
                let $pts = &mut g.data_points;
                $body
            }
            Some(vigil_core::otlp::metrics::v1::metric::Data::Sum(s)) => {
                let $pts = &mut s.data_points;
                $body
            }
            Some(vigil_core::otlp::metrics::v1::metric::Data::Histogram(h)) => {
                let $pts = &mut h.data_points;
                $body
            }
            Some(vigil_core::otlp::metrics::v1::metric::Data::ExponentialHistogram(h)) => {
                let $pts = &mut h.data_points;
                $body
            }
            Some(vigil_core::otlp::metrics::v1::metric::Data::Summary(s)) => {
                let $pts = &mut s.data_points;
                $body
            }
            None => Default::default(),
        }
    };
}

/// How many points the metric has.
pub(crate) fn count(m: &Metric) -> usize {
    match &m.data {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// Every point's attributes, in order.
pub(crate) fn attrs(m: &Metric) -> Vec<&[KeyValue]> {
    match &m.data {
        Some(metric::Data::Gauge(g)) => g.data_points.iter().map(|p| &p.attributes[..]).collect(),
        Some(metric::Data::Sum(s)) => s.data_points.iter().map(|p| &p.attributes[..]).collect(),
        Some(metric::Data::Histogram(h)) => {
            h.data_points.iter().map(|p| &p.attributes[..]).collect()
        }
        Some(metric::Data::ExponentialHistogram(h)) => {
            h.data_points.iter().map(|p| &p.attributes[..]).collect()
        }
        Some(metric::Data::Summary(s)) => s.data_points.iter().map(|p| &p.attributes[..]).collect(),
        None => Vec::new(),
    }
}

/// Calls `f` on every point's attributes.
pub(crate) fn each_attrs(m: &mut Metric, mut f: impl FnMut(&mut Vec<KeyValue>)) {
    with_points!(&mut m.data, pts => pts.iter_mut().for_each(|p| f(&mut p.attributes)))
}

/// Keeps the points whose attributes `keep` accepts.
pub(crate) fn retain(m: &mut Metric, mut keep: impl FnMut(&[KeyValue]) -> bool) {
    with_points!(&mut m.data, pts => pts.retain(|p| keep(&p.attributes)))
}

/// The value of `key` as otelcol's `Value.Str()` reads it: the text of a string attribute, `""`
/// for an attribute of another type, `None` when absent.
pub(crate) fn str_value<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    let kv = attrs.iter().find(|kv| kv.key == key)?;
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => Some(""),
    }
}

/// The temporality of a sum, histogram or exponential histogram; `None` for other types.
pub(crate) fn temporality(m: &Metric) -> Option<AggregationTemporality> {
    let t = match &m.data {
        Some(metric::Data::Sum(s)) => s.aggregation_temporality,
        Some(metric::Data::Histogram(h)) => h.aggregation_temporality,
        Some(metric::Data::ExponentialHistogram(h)) => h.aggregation_temporality,
        _ => return None,
    };
    AggregationTemporality::try_from(t).ok()
}

/// The part of a stream's key that all points of one metric share: resource, scope and the
/// metric's identity (name, unit, type, monotonicity), as otelcol's `identity.Stream` has them.
pub(crate) fn metric_key(
    resource: &[KeyValue],
    scope: Option<&vigil_core::otlp::common::v1::InstrumentationScope>,
    m: &Metric,
) -> String {
    let mut key = String::new();
    crate::cumulativetodelta::attrs_key(&mut key, resource);
    if let Some(s) = scope {
        key.push_str(&s.name);
        key.push('\u{1}');
        key.push_str(&s.version);
        key.push('\u{1}');
        crate::cumulativetodelta::attrs_key(&mut key, &s.attributes);
    }
    key.push('\u{2}');
    key.push_str(&m.name);
    key.push('\u{1}');
    key.push_str(&m.unit);
    key.push('\u{1}');
    let kind = match &m.data {
        Some(metric::Data::Gauge(_)) => "g",
        Some(metric::Data::Sum(s)) if s.is_monotonic => "sm",
        Some(metric::Data::Sum(_)) => "s",
        Some(metric::Data::Histogram(_)) => "h",
        Some(metric::Data::ExponentialHistogram(_)) => "e",
        Some(metric::Data::Summary(_)) => "q",
        None => "-",
    };
    key.push_str(kind);
    key.push('\u{2}');
    key
}

/// A stream's whole key: [`metric_key`] and the point's attributes.
pub(crate) fn stream_key(metric_key: &str, attrs: &[KeyValue]) -> String {
    let mut key = metric_key.to_string();
    crate::cumulativetodelta::attrs_key(&mut key, attrs);
    key
}
