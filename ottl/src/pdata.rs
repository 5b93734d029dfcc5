//! OTTL's contexts over OTLP data: [`Item`] is one span, span event, metric, data point, log record,
//! scope or resource with everything above it, and [`visit`] walks a batch item by item for a
//! context, dropping the items a visitor refuses (filter) and pruning what that leaves empty.

mod tracestate;

use crate::{get_in_kvs, set_in_any, set_in_kvs, Context, Field, Path, Target, Value};
use vigil_core::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use vigil_core::otlp::logs::v1::LogRecord;
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point, ExponentialHistogramDataPoint, HistogramDataPoint, Metric,
    NumberDataPoint, SummaryDataPoint,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::otlp::trace::v1::{span::Event, status, Span, Status};
use vigil_core::Telemetry;

/// The most keys `cache` holds for one item; setting more is an error (handled by `error_mode`).
pub const MAX_CACHE_KEYS: usize = 1024;

/// A data point of any metric type.
pub enum Point<'a> {
    Number(&'a mut NumberDataPoint),
    Histogram(&'a mut HistogramDataPoint),
    ExpHistogram(&'a mut ExponentialHistogramDataPoint),
    Summary(&'a mut SummaryDataPoint),
}

/// One item in its context, with mutable access to it and to everything above it.
pub struct Item<'a> {
    pub resource: &'a mut Option<Resource>,
    pub scope: Option<&'a mut Option<InstrumentationScope>>,
    pub span: Option<&'a mut Span>,
    pub event: Option<&'a mut Event>,
    pub metric: Option<&'a mut Metric>,
    /// The metric's OTTL type, kept apart because a data point's metric is visited without its data.
    pub metric_type: i64,
    pub point: Option<Point<'a>>,
    pub log: Option<&'a mut LogRecord>,
    /// OTTL's `cache`: scratch space that lives as long as the item is being processed.
    pub cache: Vec<KeyValue>,
    /// In the metric context: metrics an editor made (`copy_metric`, `extract_count_metric`, …),
    /// appended to the scope's metrics once the visit of that scope is done.
    pub added: Option<&'a mut Vec<Metric>>,
}

impl<'a> Item<'a> {
    /// An item for the resource context.
    pub fn resource(resource: &'a mut Option<Resource>) -> Item<'a> {
        Item {
            resource,
            scope: None,
            span: None,
            event: None,
            metric: None,
            metric_type: 0,
            point: None,
            log: None,
            cache: Vec::new(),
            added: None,
        }
    }
}

/// The OTTL `metric.type` number of a metric.
pub fn metric_type(m: &Metric) -> i64 {
    match &m.data {
        None => 0,
        Some(Data::Gauge(_)) => 1,
        Some(Data::Sum(_)) => 2,
        Some(Data::Histogram(_)) => 3,
        Some(Data::ExponentialHistogram(_)) => 4,
        Some(Data::Summary(_)) => 5,
    }
}

/// Walks every item of `ctx` in a batch (traces: resource, scope, span, spanevent; metrics:
/// resource, scope, metric, datapoint; logs: resource, scope, log; profiles: resource, scope,
/// profile). An item for which `f` returns
/// false is removed (resources and scopes are never removed this way); a container that loses its
/// last item that way goes too. A context that does not fit the signal visits nothing.
pub fn visit(data: &mut Telemetry, ctx: Context, f: &mut dyn FnMut(&mut Item<'_>) -> bool) {
    match data {
        Telemetry::Traces(rss) => {
            rss.retain_mut(|rs| {
                let res = &mut rs.resource;
                if ctx == Context::Resource {
                    f(&mut Item::resource(res));
                    return true;
                }
                let mut lost = false;
                rs.scope_spans.retain_mut(|ss| {
                    let scope = &mut ss.scope;
                    if ctx == Context::Scope {
                        let mut it = Item::resource(res);
                        it.scope = Some(scope);
                        f(&mut it);
                        return true;
                    }
                    let spans = &mut ss.spans;
                    let lost_here = retain(spans, |span| {
                        if ctx == Context::Span {
                            let mut it = Item::resource(res);
                            it.scope = Some(scope);
                            it.span = Some(span);
                            return f(&mut it);
                        }
                        if ctx == Context::SpanEvent {
                            let mut events = std::mem::take(&mut span.events);
                            retain(&mut events, |ev| {
                                let mut it = Item::resource(res);
                                it.scope = Some(scope);
                                it.span = Some(span);
                                it.event = Some(ev);
                                f(&mut it)
                            });
                            span.events = events;
                        }
                        true
                    });
                    lost |= lost_here;
                    !(lost_here && ss.spans.is_empty())
                });
                !(lost && rs.scope_spans.is_empty())
            });
        }
        Telemetry::Metrics(rms) => {
            rms.retain_mut(|rm| {
                let res = &mut rm.resource;
                if ctx == Context::Resource {
                    f(&mut Item::resource(res));
                    return true;
                }
                let mut lost = false;
                rm.scope_metrics.retain_mut(|sm| {
                    let scope = &mut sm.scope;
                    if ctx == Context::Scope {
                        let mut it = Item::resource(res);
                        it.scope = Some(scope);
                        f(&mut it);
                        return true;
                    }
                    let mut added = Vec::new();
                    let lost_here = retain(&mut sm.metrics, |m| {
                        let mt = metric_type(m);
                        if ctx == Context::Metric {
                            let mut it = Item::resource(res);
                            it.scope = Some(scope);
                            it.metric = Some(m);
                            it.metric_type = mt;
                            it.added = Some(&mut added);
                            return f(&mut it);
                        }
                        if ctx != Context::DataPoint {
                            return true;
                        }
                        // The points are taken out so that the metric and one point can both be
                        // borrowed; the metric's type is carried apart.
                        let mut d = m.data.take();
                        macro_rules! points {
                            ($pts:expr, $variant:ident) => {
                                retain($pts, |p| {
                                    let mut it = Item::resource(res);
                                    it.scope = Some(scope);
                                    it.metric = Some(m);
                                    it.metric_type = mt;
                                    it.point = Some(Point::$variant(p));
                                    it.added = Some(&mut added);
                                    f(&mut it)
                                }) && $pts.is_empty()
                            };
                        }
                        let emptied = match &mut d {
                            Some(Data::Gauge(g)) => points!(&mut g.data_points, Number),
                            Some(Data::Sum(s)) => points!(&mut s.data_points, Number),
                            Some(Data::Histogram(h)) => points!(&mut h.data_points, Histogram),
                            Some(Data::ExponentialHistogram(h)) => {
                                points!(&mut h.data_points, ExpHistogram)
                            }
                            Some(Data::Summary(s)) => points!(&mut s.data_points, Summary),
                            None => false,
                        };
                        m.data = d;
                        !emptied
                    });
                    sm.metrics.append(&mut added);
                    lost |= lost_here;
                    !(lost_here && sm.metrics.is_empty())
                });
                !(lost && rm.scope_metrics.is_empty())
            });
        }
        Telemetry::Logs(rls) => {
            rls.retain_mut(|rl| {
                let res = &mut rl.resource;
                if ctx == Context::Resource {
                    f(&mut Item::resource(res));
                    return true;
                }
                let mut lost = false;
                rl.scope_logs.retain_mut(|sl| {
                    let scope = &mut sl.scope;
                    if ctx == Context::Scope {
                        let mut it = Item::resource(res);
                        it.scope = Some(scope);
                        f(&mut it);
                        return true;
                    }
                    if ctx != Context::Log {
                        return true;
                    }
                    let lost_here = retain(&mut sl.log_records, |l| {
                        let mut it = Item::resource(res);
                        it.scope = Some(scope);
                        it.log = Some(l);
                        f(&mut it)
                    });
                    lost |= lost_here;
                    !(lost_here && sl.log_records.is_empty())
                });
                !(lost && rl.scope_logs.is_empty())
            });
        }
        Telemetry::Profiles(pd) => {
            pd.resource_profiles.retain_mut(|rp| {
                let res = &mut rp.resource;
                if ctx == Context::Resource {
                    f(&mut Item::resource(res));
                    return true;
                }
                let mut lost = false;
                rp.scope_profiles.retain_mut(|sp| {
                    let scope = &mut sp.scope;
                    if ctx == Context::Scope {
                        let mut it = Item::resource(res);
                        it.scope = Some(scope);
                        f(&mut it);
                        return true;
                    }
                    if ctx != Context::Profile {
                        return true;
                    }
                    // The item carries no profile: no path reaches into one (Context::Profile).
                    let lost_here = retain(&mut sp.profiles, |_| {
                        let mut it = Item::resource(res);
                        it.scope = Some(scope);
                        f(&mut it)
                    });
                    lost |= lost_here;
                    !(lost_here && sp.profiles.is_empty())
                });
                !(lost && rp.scope_profiles.is_empty())
            });
        }
    }
}

/// `retain_mut` that says whether anything was removed.
fn retain<T>(v: &mut Vec<T>, mut f: impl FnMut(&mut T) -> bool) -> bool {
    let before = v.len();
    v.retain_mut(|x| f(x));
    v.len() < before
}

fn int(x: u64) -> Value {
    Value::Int(x as i64)
}

fn want_int(p: &Path, v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(i) | Value::Time(i) => Ok(*i),
        o => Err(format!("{} takes an int, got a {}", p.text, o.kind())),
    }
}

fn want_u64(p: &Path, v: &Value) -> Result<u64, String> {
    u64::try_from(want_int(p, v)?).map_err(|_| format!("{} cannot be negative", p.text))
}

fn want_u32(p: &Path, v: &Value) -> Result<u32, String> {
    u32::try_from(want_int(p, v)?).map_err(|_| format!("{} is out of range", p.text))
}

fn want_i32(p: &Path, v: &Value) -> Result<i32, String> {
    i32::try_from(want_int(p, v)?).map_err(|_| format!("{} is out of range", p.text))
}

fn want_str(p: &Path, v: Value) -> Result<String, String> {
    match v {
        Value::Str(s) => Ok(s),
        o => Err(format!("{} takes a string, got a {}", p.text, o.kind())),
    }
}

fn want_f64(p: &Path, v: &Value) -> Result<f64, String> {
    match v {
        Value::Double(d) => Ok(*d),
        Value::Int(i) => Ok(*i as f64),
        o => Err(format!("{} takes a double, got a {}", p.text, o.kind())),
    }
}

fn want_time(p: &Path, v: &Value) -> Result<u64, String> {
    match v {
        Value::Time(t) | Value::Int(t) => {
            u64::try_from(*t).map_err(|_| format!("{} cannot be before 1970", p.text))
        }
        o => Err(format!("{} takes a time, got a {}", p.text, o.kind())),
    }
}

fn want_id(p: &Path, v: Value, len: usize) -> Result<Vec<u8>, String> {
    let b = match v {
        Value::Bytes(b) => b,
        Value::Str(s) => hex::decode(&s).map_err(|_| format!("{}: {s:?} is not hex", p.text))?,
        o => return Err(format!("{} takes bytes, got a {}", p.text, o.kind())),
    };
    if b.len() != len {
        return Err(format!("{} takes {len} bytes, got {}", p.text, b.len()));
    }
    Ok(b)
}

fn missing(p: &Path) -> String {
    format!("path {} has no item here", p.text)
}

impl Item<'_> {
    fn attrs(&self, level: Context) -> Option<&Vec<KeyValue>> {
        Some(match level {
            Context::Resource => return self.resource.as_ref().map(|r| &r.attributes),
            Context::Scope => return self.scope.as_ref()?.as_ref().map(|s| &s.attributes),
            Context::Span => &self.span.as_ref()?.attributes,
            Context::SpanEvent => &self.event.as_ref()?.attributes,
            Context::Metric => &self.metric.as_ref()?.metadata,
            Context::DataPoint => match self.point.as_ref()? {
                Point::Number(p) => &p.attributes,
                Point::Histogram(p) => &p.attributes,
                Point::ExpHistogram(p) => &p.attributes,
                Point::Summary(p) => &p.attributes,
            },
            Context::Log => &self.log.as_ref()?.attributes,
            Context::Profile => return None,
        })
    }

    fn attrs_mut(&mut self, level: Context) -> Option<&mut Vec<KeyValue>> {
        Some(match level {
            Context::Resource => {
                &mut self
                    .resource
                    .get_or_insert_with(Default::default)
                    .attributes
            }
            Context::Scope => {
                &mut self
                    .scope
                    .as_mut()?
                    .get_or_insert_with(Default::default)
                    .attributes
            }
            Context::Span => &mut self.span.as_mut()?.attributes,
            Context::SpanEvent => &mut self.event.as_mut()?.attributes,
            Context::Metric => &mut self.metric.as_mut()?.metadata,
            Context::DataPoint => match self.point.as_mut()? {
                Point::Number(p) => &mut p.attributes,
                Point::Histogram(p) => &mut p.attributes,
                Point::ExpHistogram(p) => &mut p.attributes,
                Point::Summary(p) => &mut p.attributes,
            },
            Context::Log => &mut self.log.as_mut()?.attributes,
            Context::Profile => return None,
        })
    }

    fn get_inner(&self, p: &Path) -> Option<Result<Value, String>> {
        use Context as C;
        use Field as F;
        let v = match (p.level, p.field) {
            (_, F::Cache) => return Some(get_in_kvs(&self.cache, &p.keys)),
            (level, F::Attributes) => {
                return Some(match self.attrs(level) {
                    Some(a) => get_in_kvs(a, &p.keys),
                    None if level == C::Resource || level == C::Scope => get_in_kvs(&[], &p.keys),
                    None => return None,
                })
            }
            (C::Resource, F::DroppedAttributesCount) => Value::Int(
                self.resource
                    .as_ref()
                    .map_or(0, |r| r.dropped_attributes_count.into()),
            ),
            (C::Scope, f) => {
                let s = self.scope.as_ref()?.as_ref();
                match f {
                    F::Name => Value::Str(s.map(|s| s.name.clone()).unwrap_or_default()),
                    F::Version => Value::Str(s.map(|s| s.version.clone()).unwrap_or_default()),
                    F::DroppedAttributesCount => {
                        Value::Int(s.map_or(0, |s| s.dropped_attributes_count.into()))
                    }
                    _ => return None,
                }
            }
            (C::Span, f) => {
                let s = self.span.as_ref()?;
                match f {
                    F::TraceId => Value::Bytes(s.trace_id.clone()),
                    F::TraceIdString => Value::Str(hex::encode(&s.trace_id)),
                    F::SpanId => Value::Bytes(s.span_id.clone()),
                    F::SpanIdString => Value::Str(hex::encode(&s.span_id)),
                    F::ParentSpanId => Value::Bytes(s.parent_span_id.clone()),
                    F::ParentSpanIdString => Value::Str(hex::encode(&s.parent_span_id)),
                    F::TraceState => match p.keys.first() {
                        Some(crate::Key::Str(k)) => tracestate::get(&s.trace_state, k)
                            .map_or(Value::Nil, |v| Value::Str(v.to_string())),
                        _ => Value::Str(s.trace_state.clone()),
                    },
                    F::Name => Value::Str(s.name.clone()),
                    F::Kind => Value::Int(s.kind.into()),
                    F::KindString => Value::Str(
                        tracestate::KINDS
                            .get(s.kind as usize)
                            .map_or("", |k| k.0)
                            .to_string(),
                    ),
                    F::KindDeprecatedString => Value::Str(
                        tracestate::KINDS
                            .get(s.kind as usize)
                            .map_or("", |k| k.1)
                            .to_string(),
                    ),
                    F::StartTimeUnixNano => int(s.start_time_unix_nano),
                    F::EndTimeUnixNano => int(s.end_time_unix_nano),
                    F::StartTime => Value::Time(s.start_time_unix_nano as i64),
                    F::EndTime => Value::Time(s.end_time_unix_nano as i64),
                    F::DroppedAttributesCount => Value::Int(s.dropped_attributes_count.into()),
                    F::DroppedEventsCount => Value::Int(s.dropped_events_count.into()),
                    F::DroppedLinksCount => Value::Int(s.dropped_links_count.into()),
                    F::StatusCode => Value::Int(s.status.as_ref().map_or(0, |x| x.code.into())),
                    F::StatusMessage => Value::Str(
                        s.status
                            .as_ref()
                            .map(|x| x.message.clone())
                            .unwrap_or_default(),
                    ),
                    F::Flags => Value::Int(s.flags.into()),
                    _ => return None,
                }
            }
            (C::SpanEvent, f) => {
                let e = self.event.as_ref()?;
                match f {
                    F::Name => Value::Str(e.name.clone()),
                    F::TimeUnixNano => int(e.time_unix_nano),
                    F::Time => Value::Time(e.time_unix_nano as i64),
                    F::DroppedAttributesCount => Value::Int(e.dropped_attributes_count.into()),
                    _ => return None,
                }
            }
            (C::Metric, f) => {
                let m = self.metric.as_ref()?;
                match f {
                    F::Metadata => return Some(get_in_kvs(&m.metadata, &p.keys)),
                    F::Name => Value::Str(m.name.clone()),
                    F::Description => Value::Str(m.description.clone()),
                    F::Unit => Value::Str(m.unit.clone()),
                    F::Type => Value::Int(self.metric_type),
                    F::AggregationTemporality => Value::Int(match &m.data {
                        Some(Data::Sum(s)) => s.aggregation_temporality.into(),
                        Some(Data::Histogram(h)) => h.aggregation_temporality.into(),
                        Some(Data::ExponentialHistogram(h)) => h.aggregation_temporality.into(),
                        _ => 0,
                    }),
                    F::IsMonotonic => {
                        Value::Bool(matches!(&m.data, Some(Data::Sum(s)) if s.is_monotonic))
                    }
                    _ => return None,
                }
            }
            (C::DataPoint, f) => {
                let v = self.point_get(f)?;
                if p.keys.is_empty() {
                    v
                } else {
                    // `bucket_counts[0]`: an index into the list read.
                    return Some(crate::index(v, &p.keys));
                }
            }
            (C::Log, f) => {
                let l = self.log.as_ref()?;
                match f {
                    F::TimeUnixNano => int(l.time_unix_nano),
                    F::Time => Value::Time(l.time_unix_nano as i64),
                    F::ObservedTimeUnixNano => int(l.observed_time_unix_nano),
                    F::ObservedTime => Value::Time(l.observed_time_unix_nano as i64),
                    F::SeverityNumber => Value::Int(l.severity_number.into()),
                    F::SeverityText => Value::Str(l.severity_text.clone()),
                    F::Body => return Some(crate::get_in_any(l.body.as_ref(), &p.keys)),
                    // pdata's AsString: bytes as base64, maps and lists as JSON, empty as "".
                    F::BodyString => Value::Str(match Value::from_any(l.body.as_ref()) {
                        Value::Bytes(b) => {
                            use base64::Engine;
                            base64::engine::general_purpose::STANDARD.encode(b)
                        }
                        v => v.to_text(),
                    }),
                    F::DroppedAttributesCount => Value::Int(l.dropped_attributes_count.into()),
                    F::Flags => Value::Int(l.flags.into()),
                    F::TraceId => Value::Bytes(l.trace_id.clone()),
                    F::TraceIdString => Value::Str(hex::encode(&l.trace_id)),
                    F::SpanId => Value::Bytes(l.span_id.clone()),
                    F::SpanIdString => Value::Str(hex::encode(&l.span_id)),
                    F::EventName => Value::Str(l.event_name.clone()),
                    _ => return None,
                }
            }
            _ => return None,
        };
        Some(Ok(v))
    }

    fn point_get(&self, f: Field) -> Option<Value> {
        use Field as F;
        let p = self.point.as_ref()?;
        let (start, time, flags) = match p {
            Point::Number(x) => (x.start_time_unix_nano, x.time_unix_nano, x.flags),
            Point::Histogram(x) => (x.start_time_unix_nano, x.time_unix_nano, x.flags),
            Point::ExpHistogram(x) => (x.start_time_unix_nano, x.time_unix_nano, x.flags),
            Point::Summary(x) => (x.start_time_unix_nano, x.time_unix_nano, x.flags),
        };
        Some(match f {
            F::StartTimeUnixNano => int(start),
            F::TimeUnixNano => int(time),
            F::StartTime => Value::Time(start as i64),
            F::Time => Value::Time(time as i64),
            F::Flags => Value::Int(flags.into()),
            F::ValueDouble => match p {
                Point::Number(x) => match x.value {
                    Some(number_data_point::Value::AsDouble(d)) => Value::Double(d),
                    _ => Value::Double(0.0),
                },
                _ => return None,
            },
            F::ValueInt => match p {
                Point::Number(x) => match x.value {
                    Some(number_data_point::Value::AsInt(i)) => Value::Int(i),
                    _ => Value::Int(0),
                },
                _ => return None,
            },
            F::Count => match p {
                Point::Histogram(x) => int(x.count),
                Point::ExpHistogram(x) => int(x.count),
                Point::Summary(x) => int(x.count),
                Point::Number(_) => return None,
            },
            F::Sum => match p {
                Point::Histogram(x) => Value::Double(x.sum.unwrap_or(0.0)),
                Point::ExpHistogram(x) => Value::Double(x.sum.unwrap_or(0.0)),
                Point::Summary(x) => Value::Double(x.sum),
                Point::Number(_) => return None,
            },
            F::BucketCounts => match p {
                Point::Histogram(x) => {
                    Value::List(x.bucket_counts.iter().map(|c| int(*c).into_any()).collect())
                }
                _ => return None,
            },
            F::Scale | F::ZeroCount => match p {
                Point::ExpHistogram(x) if f == F::Scale => Value::Int(x.scale.into()),
                Point::ExpHistogram(x) => int(x.zero_count),
                _ => return None,
            },
            F::PositiveOffset
            | F::NegativeOffset
            | F::PositiveBucketCounts
            | F::NegativeBucketCounts => match p {
                Point::ExpHistogram(x) => {
                    let b = if matches!(f, F::PositiveOffset | F::PositiveBucketCounts) {
                        x.positive.as_ref()
                    } else {
                        x.negative.as_ref()
                    };
                    if matches!(f, F::PositiveOffset | F::NegativeOffset) {
                        Value::Int(b.map_or(0, |b| b.offset.into()))
                    } else {
                        Value::List(
                            b.map(|b| b.bucket_counts.iter().map(|c| int(*c).into_any()).collect())
                                .unwrap_or_default(),
                        )
                    }
                }
                _ => return None,
            },
            F::ExplicitBounds => match p {
                Point::Histogram(x) => Value::List(
                    x.explicit_bounds
                        .iter()
                        .map(|c| Value::Double(*c).into_any())
                        .collect(),
                ),
                _ => return None,
            },
            _ => return None,
        })
    }

    fn set_inner(&mut self, p: &Path, v: Value) -> Option<Result<(), String>> {
        use Context as C;
        use Field as F;
        let r: Result<(), String> = (|| -> Option<Result<(), String>> {
            Some(match (p.level, p.field) {
                (_, F::Cache) => {
                    let new_key = match p.keys.first() {
                        Some(crate::Key::Str(k)) => !self.cache.iter().any(|x| &x.key == k),
                        _ => false,
                    };
                    if new_key && self.cache.len() >= MAX_CACHE_KEYS {
                        Err(format!("cache is full ({MAX_CACHE_KEYS} keys)"))
                    } else {
                        set_in_kvs(&mut self.cache, &p.keys, v)
                    }
                }
                (level, F::Attributes) => set_in_kvs(self.attrs_mut(level)?, &p.keys, v),
                (C::Resource, F::DroppedAttributesCount) => want_u32(p, &v).map(|n| {
                    self.resource
                        .get_or_insert_with(Default::default)
                        .dropped_attributes_count = n
                }),
                (C::Scope, f) => {
                    let s = self.scope.as_mut()?.get_or_insert_with(Default::default);
                    match f {
                        F::Name => want_str(p, v).map(|x| s.name = x),
                        F::Version => want_str(p, v).map(|x| s.version = x),
                        F::DroppedAttributesCount => {
                            want_u32(p, &v).map(|x| s.dropped_attributes_count = x)
                        }
                        _ => return None,
                    }
                }
                (C::Span, f) => {
                    let s = self.span.as_mut()?;
                    match f {
                        F::TraceId | F::TraceIdString => want_id(p, v, 16).map(|x| s.trace_id = x),
                        F::SpanId | F::SpanIdString => want_id(p, v, 8).map(|x| s.span_id = x),
                        F::ParentSpanId | F::ParentSpanIdString => {
                            want_id(p, v, 8).map(|x| s.parent_span_id = x)
                        }
                        F::TraceState => want_str(p, v).map(|x| match p.keys.first() {
                            Some(crate::Key::Str(k)) => {
                                if let Some(new) = tracestate::insert(&s.trace_state, k, &x) {
                                    s.trace_state = new;
                                }
                            }
                            _ => s.trace_state = x,
                        }),
                        F::Name => want_str(p, v).map(|x| s.name = x),
                        F::Kind => want_i32(p, &v).map(|x| s.kind = x),
                        F::KindString | F::KindDeprecatedString => want_str(p, v).and_then(|x| {
                            let at = tracestate::KINDS.iter().position(|k| {
                                if f == F::KindString {
                                    k.0 == x
                                } else {
                                    k.1 == x
                                }
                            });
                            at.map(|i| s.kind = i as i32).ok_or_else(|| {
                                format!("{}: unknown span kind string {x:?}", p.text)
                            })
                        }),
                        F::StartTimeUnixNano | F::StartTime => {
                            want_time(p, &v).map(|x| s.start_time_unix_nano = x)
                        }
                        F::EndTimeUnixNano | F::EndTime => {
                            want_time(p, &v).map(|x| s.end_time_unix_nano = x)
                        }
                        F::DroppedAttributesCount => {
                            want_u32(p, &v).map(|x| s.dropped_attributes_count = x)
                        }
                        F::DroppedEventsCount => {
                            want_u32(p, &v).map(|x| s.dropped_events_count = x)
                        }
                        F::DroppedLinksCount => want_u32(p, &v).map(|x| s.dropped_links_count = x),
                        F::StatusCode => want_i32(p, &v).map(|x| {
                            s.status.get_or_insert_with(Status::default).code = x;
                        }),
                        F::StatusMessage => want_str(p, v).map(|x| {
                            s.status
                                .get_or_insert_with(|| Status {
                                    code: status::StatusCode::Unset as i32,
                                    ..Default::default()
                                })
                                .message = x;
                        }),
                        F::Flags => want_u32(p, &v).map(|x| s.flags = x),
                        _ => return None,
                    }
                }
                (C::SpanEvent, f) => {
                    let e = self.event.as_mut()?;
                    match f {
                        F::Name => want_str(p, v).map(|x| e.name = x),
                        F::TimeUnixNano | F::Time => want_time(p, &v).map(|x| e.time_unix_nano = x),
                        F::DroppedAttributesCount => {
                            want_u32(p, &v).map(|x| e.dropped_attributes_count = x)
                        }
                        _ => return None,
                    }
                }
                (C::Metric, f) => {
                    let m = self.metric.as_mut()?;
                    match f {
                        F::Metadata => set_in_kvs(&mut m.metadata, &p.keys, v),
                        F::Name => want_str(p, v).map(|x| m.name = x),
                        F::Description => want_str(p, v).map(|x| m.description = x),
                        F::Unit => want_str(p, v).map(|x| m.unit = x),
                        F::AggregationTemporality => want_i32(p, &v).map(|x| match &mut m.data {
                            Some(Data::Sum(s)) => s.aggregation_temporality = x,
                            Some(Data::Histogram(h)) => h.aggregation_temporality = x,
                            Some(Data::ExponentialHistogram(h)) => h.aggregation_temporality = x,
                            _ => {}
                        }),
                        F::IsMonotonic => match (&mut m.data, v) {
                            (Some(Data::Sum(s)), Value::Bool(b)) => {
                                s.is_monotonic = b;
                                Ok(())
                            }
                            (Some(Data::Sum(_)), o) => {
                                Err(format!("{} takes a bool, got a {}", p.text, o.kind()))
                            }
                            _ => Ok(()),
                        },
                        F::Type => Err(format!(
                            "{} cannot be set: converting between metric types is not supported",
                            p.text
                        )),
                        _ => return None,
                    }
                }
                (C::DataPoint, f) => return self.point_set(p, f, v),
                (C::Log, f) => {
                    let l = self.log.as_mut()?;
                    match f {
                        F::TimeUnixNano | F::Time => want_time(p, &v).map(|x| l.time_unix_nano = x),
                        F::ObservedTimeUnixNano | F::ObservedTime => {
                            want_time(p, &v).map(|x| l.observed_time_unix_nano = x)
                        }
                        F::SeverityNumber => want_i32(p, &v).map(|x| l.severity_number = x),
                        F::SeverityText => want_str(p, v).map(|x| l.severity_text = x),
                        F::BodyString => want_str(p, v).map(|x| {
                            l.body = Some(Value::Str(x).into_any());
                        }),
                        F::Body => {
                            let slot = l.body.get_or_insert_with(AnyValue::default);
                            set_in_any(slot, &p.keys, v)
                        }
                        F::DroppedAttributesCount => {
                            want_u32(p, &v).map(|x| l.dropped_attributes_count = x)
                        }
                        F::Flags => want_u32(p, &v).map(|x| l.flags = x),
                        F::TraceId | F::TraceIdString => want_id(p, v, 16).map(|x| l.trace_id = x),
                        F::SpanId | F::SpanIdString => want_id(p, v, 8).map(|x| l.span_id = x),
                        F::EventName => want_str(p, v).map(|x| l.event_name = x),
                        _ => return None,
                    }
                }
                _ => return None,
            })
        })()?;
        Some(r)
    }

    fn point_set(&mut self, p: &Path, f: Field, v: Value) -> Option<Result<(), String>> {
        use Field as F;
        let pt = self.point.as_mut()?;
        let (start, time, flags) = match pt {
            Point::Number(x) => (
                &mut x.start_time_unix_nano,
                &mut x.time_unix_nano,
                &mut x.flags,
            ),
            Point::Histogram(x) => (
                &mut x.start_time_unix_nano,
                &mut x.time_unix_nano,
                &mut x.flags,
            ),
            Point::ExpHistogram(x) => (
                &mut x.start_time_unix_nano,
                &mut x.time_unix_nano,
                &mut x.flags,
            ),
            Point::Summary(x) => (
                &mut x.start_time_unix_nano,
                &mut x.time_unix_nano,
                &mut x.flags,
            ),
        };
        Some(match f {
            F::StartTimeUnixNano | F::StartTime => want_time(p, &v).map(|x| *start = x),
            F::TimeUnixNano | F::Time => want_time(p, &v).map(|x| *time = x),
            F::Flags => want_u32(p, &v).map(|x| *flags = x),
            F::ValueDouble => match pt {
                Point::Number(x) => {
                    want_f64(p, &v).map(|d| x.value = Some(number_data_point::Value::AsDouble(d)))
                }
                _ => return None,
            },
            F::ValueInt => match pt {
                Point::Number(x) => {
                    want_int(p, &v).map(|i| x.value = Some(number_data_point::Value::AsInt(i)))
                }
                _ => return None,
            },
            F::Count => match pt {
                Point::Histogram(x) => want_u64(p, &v).map(|c| x.count = c),
                Point::ExpHistogram(x) => want_u64(p, &v).map(|c| x.count = c),
                Point::Summary(x) => want_u64(p, &v).map(|c| x.count = c),
                Point::Number(_) => return None,
            },
            F::Sum => match pt {
                Point::Histogram(x) => want_f64(p, &v).map(|s| x.sum = Some(s)),
                Point::ExpHistogram(x) => want_f64(p, &v).map(|s| x.sum = Some(s)),
                Point::Summary(x) => want_f64(p, &v).map(|s| x.sum = s),
                Point::Number(_) => return None,
            },
            F::Scale => match pt {
                Point::ExpHistogram(x) => want_i32(p, &v).map(|s| x.scale = s),
                _ => return None,
            },
            F::ZeroCount => match pt {
                Point::ExpHistogram(x) => want_u64(p, &v).map(|c| x.zero_count = c),
                _ => return None,
            },
            F::PositiveOffset | F::NegativeOffset => match pt {
                Point::ExpHistogram(x) => {
                    let b = if f == F::PositiveOffset {
                        &mut x.positive
                    } else {
                        &mut x.negative
                    };
                    want_i32(p, &v).map(|o| b.get_or_insert_with(Default::default).offset = o)
                }
                _ => return None,
            },
            _ => return None,
        })
    }
}

impl Target for Item<'_> {
    fn get(&self, p: &Path) -> Result<Value, String> {
        self.get_inner(p).unwrap_or_else(|| Err(missing(p)))
    }

    fn set(&mut self, p: &Path, v: Value) -> Result<(), String> {
        self.set_inner(p, v)
            .unwrap_or_else(|| Err(format!("path {} cannot be set for this item", p.text)))
    }

    fn edit_metric(&mut self, f: &mut crate::MetricEdit<'_>) -> Result<(), String> {
        let (Some(m), Some(added), None) = (
            self.metric.as_deref_mut(),
            self.added.as_deref_mut(),
            &self.point,
        ) else {
            return Err("this function runs in the metric context only".into());
        };
        f(m, added)?;
        self.metric_type = metric_type(m);
        Ok(())
    }

    fn edit_histogram_point(
        &mut self,
        f: &mut dyn FnMut(&mut HistogramDataPoint),
    ) -> Result<(), String> {
        match &mut self.point {
            Some(Point::Histogram(p)) => {
                f(p);
                Ok(())
            }
            Some(_) => Ok(()),
            None => Err("this function runs in the datapoint context only".into()),
        }
    }

    fn with_summary_point(
        &mut self,
        f: &mut dyn FnMut(&Metric, &SummaryDataPoint, &mut Vec<Metric>),
    ) -> Result<(), String> {
        let (Some(m), Some(added)) = (self.metric.as_deref(), self.added.as_deref_mut()) else {
            return Err("this function runs in the metric or datapoint context only".into());
        };
        match &self.point {
            Some(Point::Summary(p)) => {
                f(m, p, added);
                Ok(())
            }
            Some(_) => Ok(()),
            None => Err("this function runs in the metric or datapoint context only".into()),
        }
    }

    fn datapoint_attributes(&self) -> Result<Vec<&[KeyValue]>, String> {
        let m = self
            .metric
            .as_ref()
            .ok_or("data points are only reachable from the metric context")?;
        Ok(match &m.data {
            Some(Data::Gauge(g)) => g
                .data_points
                .iter()
                .map(|p| p.attributes.as_slice())
                .collect(),
            Some(Data::Sum(s)) => s
                .data_points
                .iter()
                .map(|p| p.attributes.as_slice())
                .collect(),
            Some(Data::Histogram(h)) => h
                .data_points
                .iter()
                .map(|p| p.attributes.as_slice())
                .collect(),
            Some(Data::ExponentialHistogram(h)) => h
                .data_points
                .iter()
                .map(|p| p.attributes.as_slice())
                .collect(),
            Some(Data::Summary(s)) => s
                .data_points
                .iter()
                .map(|p| p.attributes.as_slice())
                .collect(),
            None => Vec::new(),
        })
    }
}
