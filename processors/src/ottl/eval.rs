//! The contexts conditions run in: a span, a metric, a data point or a log record, each with its
//! resource attributes.

use super::{Path, Target, Val};
use vigil_core::otlp::common::v1::any_value::Value;
use vigil_core::otlp::common::v1::{AnyValue, KeyValue};
use vigil_core::otlp::logs::v1::LogRecord;
use vigil_core::otlp::metrics::v1::{metric::Data, Metric};
use vigil_core::otlp::trace::v1::Span;

fn lookup(attrs: &[KeyValue], keys: &[String]) -> Val {
    let Some((first, rest)) = keys.split_first() else {
        return Val::Other;
    };
    let v = attrs
        .iter()
        .find(|kv| &kv.key == first)
        .and_then(|kv| kv.value.as_ref());
    value_at(v, rest)
}

fn value_at(v: Option<&AnyValue>, keys: &[String]) -> Val {
    let Some(v) = v.and_then(|a| a.value.as_ref()) else {
        return Val::Nil;
    };
    if !keys.is_empty() {
        return match v {
            Value::KvlistValue(l) => lookup(&l.values, keys),
            _ => Val::Nil,
        };
    }
    match v {
        Value::StringValue(s) => Val::Str(s.clone()),
        Value::IntValue(i) => Val::Int(*i),
        Value::DoubleValue(d) => Val::Float(*d),
        Value::BoolValue(b) => Val::Bool(*b),
        _ => Val::Other,
    }
}

/// The OTTL `metric.type` number of a metric.
fn metric_type(m: &Metric) -> i64 {
    match &m.data {
        None => 0,
        Some(Data::Gauge(_)) => 1,
        Some(Data::Sum(_)) => 2,
        Some(Data::Histogram(_)) => 3,
        Some(Data::ExponentialHistogram(_)) => 4,
        Some(Data::Summary(_)) => 5,
    }
}

/// A span and its resource.
pub struct SpanCtx<'a> {
    pub span: &'a Span,
    pub resource: &'a [KeyValue],
}

impl Target for SpanCtx<'_> {
    fn get(&self, p: &Path) -> Val {
        match p {
            Path::Attributes(k) => lookup(&self.span.attributes, k),
            Path::ResourceAttributes(k) => lookup(self.resource, k),
            Path::Name => Val::Str(self.span.name.clone()),
            Path::Kind => Val::Int(self.span.kind as i64),
            Path::StatusCode => Val::Int(self.span.status.as_ref().map_or(0, |s| s.code as i64)),
            _ => Val::Nil,
        }
    }
}

/// A metric and its resource.
pub struct MetricCtx<'a> {
    pub metric: &'a Metric,
    pub resource: &'a [KeyValue],
}

impl Target for MetricCtx<'_> {
    fn get(&self, p: &Path) -> Val {
        match p {
            Path::ResourceAttributes(k) => lookup(self.resource, k),
            Path::MetricName => Val::Str(self.metric.name.clone()),
            Path::MetricType => Val::Int(metric_type(self.metric)),
            _ => Val::Nil,
        }
    }
}

/// A data point's attributes, its metric and its resource.
pub struct DataPointCtx<'a> {
    pub metric: &'a Metric,
    pub attributes: &'a [KeyValue],
    pub resource: &'a [KeyValue],
}

impl Target for DataPointCtx<'_> {
    fn get(&self, p: &Path) -> Val {
        match p {
            Path::Attributes(k) => lookup(self.attributes, k),
            Path::ResourceAttributes(k) => lookup(self.resource, k),
            Path::MetricName => Val::Str(self.metric.name.clone()),
            Path::MetricType => Val::Int(metric_type(self.metric)),
            _ => Val::Nil,
        }
    }
}

/// A log record and its resource.
pub struct LogCtx<'a> {
    pub log: &'a LogRecord,
    pub resource: &'a [KeyValue],
}

impl Target for LogCtx<'_> {
    fn get(&self, p: &Path) -> Val {
        match p {
            Path::Attributes(k) => lookup(&self.log.attributes, k),
            Path::ResourceAttributes(k) => lookup(self.resource, k),
            Path::Body(k) => value_at(self.log.body.as_ref(), k),
            Path::SeverityNumber => Val::Int(self.log.severity_number as i64),
            Path::SeverityText => Val::Str(self.log.severity_text.clone()),
            _ => Val::Nil,
        }
    }
}
