//! `elasticapm` connector: the aggregated metrics the Elastic APM UI reads, from spans (and
//! `service_summary` from logs and metric data points), as elastic/opentelemetry-collector-components'
//! `connector/elasticapmconnector` defines them through its fixed signaltometrics rules and its
//! lsmintervalprocessor:
//!
//! - `service_summary` (sum): every span (its adjusted count), log record and data point;
//! - `transaction.duration.histogram` (exponential histogram, µs), `transaction.duration.summary`
//!   (one-bucket histogram, µs) and `event.success_count` (one-bucket histogram) per *service
//!   transaction* (`transaction.root`, `transaction.type`) and per *transaction* (also
//!   `transaction.name`, `transaction.result`, `event.outcome`, and the finer resource attributes);
//! - `span.destination.service.response_time.sum.us` and `.count` (sums) per *service destination*
//!   (`span.name`, `event.outcome`, `service.target.*`, `span.destination.service.resource`).
//!
//! A rule applies only to spans that carry its required attributes (which the `elasticapm`
//! processor adds), as signaltometrics does. Each aggregate is kept once per interval (1m, 10m, 60m
//! by default) and sent as delta metrics when its interval ends, stamped with `metricset.interval`,
//! `data_stream.dataset` and `processor.event: metric`.
//!
//! State is bounded per interval as lsmintervalprocessor bounds it: at most
//! `limits.resource.max_cardinality` resources (further ones are merged into one overflow resource,
//! `service.name: _other`, `overflow: resource`), `limits.metric.max_cardinality` metrics per
//! resource (further ones are dropped) and `limits.datapoint.max_cardinality` data points per metric
//! (further ones are merged into one data point with `overflow: datapoint`). Each overflow is sent
//! as a `_overflow_<level>` sum of how many distinct identities overflowed in the interval (exact up
//! to [`OVERFLOW_REMEMBERED`] per resource, a lower bound past it), and each sample that overflowed
//! is counted in `vigil_elasticapm_overflow_total{level}`. Only one scope is ever used, so the scope
//! limit never binds.

use super::config::ConnectorConfig;
use super::processor::representative_count;
use crate::spanmetrics::expo::ExpoHistogram;
use async_trait::async_trait;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_core::attrs::{get, kv, kv_str, value_to_string};
use vigil_core::otlp::common::v1::{
    any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use vigil_core::otlp::metrics::v1::{
    metric, number_data_point, AggregationTemporality, ExponentialHistogram,
    ExponentialHistogramDataPoint, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::otlp::trace::v1::ResourceSpans;
use vigil_core::time::now_nanos;
use vigil_core::{
    lock, Component, ConnectorObs, ConsumeError, Consumer, NextConsumers, Signal, Tasks, Telemetry,
};

/// The scope the original's metrics carry (they come out of signaltometrics).
const SCOPE: &str =
    "github.com/open-telemetry/opentelemetry-collector-contrib/connector/signaltometricsconnector";

/// Exponential histograms keep at most this many buckets, as the original's lsm config.
const EXPO_MAX_BUCKETS: usize = 160;

/// Resource attributes of every aggregate: `(key, default)`; a missing one without default is left out.
const COMMON_RESOURCE: &[(&str, Option<&str>)] = &[
    ("service.name", None),
    ("deployment.environment", None),
    ("telemetry.sdk.language", None),
    ("data_stream.namespace", None),
    ("agent.name", Some("unknown")),
];

/// The finer resource attributes of transaction-level aggregates (before the common ones).
const TRANSACTION_RESOURCE: &[&str] = &[
    "container.id",
    "k8s.pod.name",
    "service.version",
    "service.instance.id",
    "process.runtime.name",
    "process.runtime.version",
    "telemetry.sdk.version",
    "host.name",
    "os.type",
    "faas.instance",
    "faas.name",
    "faas.version",
    "cloud.provider",
    "cloud.region",
    "cloud.availability_zone",
    "cloud.platform",
    "cloud.account.id",
    "faas.trigger",
    "faas.coldstart",
    "host.hostname",
    "cloud.account.name",
    "cloud.machine.type",
    "cloud.project.id",
    "cloud.project.name",
];

/// A rule's span attributes: `(key, required)`.
const SERVICE_TRANSACTION: &[(&str, bool)] =
    &[("transaction.root", true), ("transaction.type", true)];
const TRANSACTION: &[(&str, bool)] = &[
    ("transaction.root", true),
    ("transaction.name", true),
    ("transaction.type", true),
    ("transaction.result", false),
    ("event.outcome", true),
];
const DESTINATION: &[(&str, bool)] = &[
    ("span.name", true),
    ("event.outcome", true),
    ("service.target.type", true),
    ("service.target.name", true),
    ("span.destination.service.resource", true),
];

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    SumInt,
    SumDouble,
    Expo,
    /// A histogram with explicit bounds `[bound]`.
    OneBucket(u8),
}

/// One output metric's identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Def {
    name: &'static str,
    description: &'static str,
    unit: &'static str,
    kind: Kind,
}

const SUMMARY: Def = Def {
    name: "service_summary",
    description: "",
    unit: "",
    kind: Kind::SumInt,
};

/// One contribution to one aggregate.
#[derive(Clone, Copy)]
enum Sample {
    Int(i64),
    Double(f64),
    /// `value` seen `count` times.
    Hist {
        value: f64,
        count: u64,
    },
}

enum Agg {
    Int(i64),
    Double(f64),
    Expo(ExpoHistogram),
    Explicit {
        bound: f64,
        counts: [u64; 2],
        count: u64,
        sum: f64,
    },
}

impl Agg {
    fn new(kind: Kind) -> Agg {
        match kind {
            Kind::SumInt => Agg::Int(0),
            Kind::SumDouble => Agg::Double(0.0),
            Kind::Expo => Agg::Expo(ExpoHistogram::new(EXPO_MAX_BUCKETS)),
            Kind::OneBucket(b) => Agg::Explicit {
                bound: f64::from(b),
                counts: [0, 0],
                count: 0,
                sum: 0.0,
            },
        }
    }

    fn add(&mut self, s: Sample) {
        match (self, s) {
            (Agg::Int(v), Sample::Int(n)) => *v += n,
            (Agg::Double(v), Sample::Double(n)) => *v += n,
            (Agg::Expo(h), Sample::Hist { value, count }) => h.record_n(value, count),
            (
                Agg::Explicit {
                    bound,
                    counts,
                    count: c,
                    sum,
                },
                Sample::Hist { value, count },
            ) => {
                counts[usize::from(value > *bound)] += count;
                *c += count;
                // `value` is already the total of the spans one sample stands for.
                *sum += value;
            }
            _ => {}
        }
    }
}

struct Point {
    attrs: Vec<KeyValue>,
    agg: Agg,
}

struct MetricState {
    def: Def,
    points: HashMap<u64, Point>,
    overflow: Option<Point>,
}

struct ResourceState {
    attrs: Vec<KeyValue>,
    metrics: HashMap<Def, MetricState>,
    /// Distinct identities that overflowed, by hash; bounded by the limit they overflowed.
    overflowed_metrics: HashSet<u64>,
    overflowed_points: HashSet<u64>,
}

impl ResourceState {
    fn new(attrs: Vec<KeyValue>) -> ResourceState {
        ResourceState {
            attrs,
            metrics: HashMap::new(),
            overflowed_metrics: HashSet::new(),
            overflowed_points: HashSet::new(),
        }
    }
}

/// One interval's aggregates.
struct Table {
    interval: Duration,
    resources: HashMap<u64, ResourceState>,
    overflow: Option<ResourceState>,
    overflowed_resources: HashSet<u64>,
}

/// The limits, as `usize`, and the counters of samples sent to an overflow (once per interval
/// table each sample enters).
struct Bounds {
    resources: usize,
    metrics: usize,
    points: usize,
    resource_overflow: metrics::Counter,
    metric_overflow: metrics::Counter,
    point_overflow: metrics::Counter,
}

fn hash_attrs(attrs: &[KeyValue]) -> u64 {
    let mut h = DefaultHasher::new();
    for kv in attrs {
        kv.key.hash(&mut h);
        if let Some(v) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            value_to_string(v).hash(&mut h);
        }
        0xffu8.hash(&mut h);
    }
    h.finish()
}

/// How many distinct overflowed identities one resource (or the resource level) remembers per
/// interval for its `_overflow_*` count; past it the count is a lower bound. Bounds the sets at
/// 8 bytes an identity (the original estimates the same counts with a HyperLogLog sketch).
pub(crate) const OVERFLOW_REMEMBERED: usize = 256;

/// Remembers a distinct overflowed identity while there is room.
fn note(set: &mut HashSet<u64>, id: u64) {
    if set.len() < OVERFLOW_REMEMBERED {
        set.insert(id);
    }
}

impl Table {
    fn add(&mut self, b: &Bounds, res: &[KeyValue], def: Def, attrs: Vec<KeyValue>, s: Sample) {
        let rid = hash_attrs(res);
        let r = if self.resources.contains_key(&rid) || self.resources.len() < b.resources {
            self.resources
                .entry(rid)
                .or_insert_with(|| ResourceState::new(res.to_vec()))
        } else {
            note(&mut self.overflowed_resources, rid);
            b.resource_overflow.increment(1);
            self.overflow.get_or_insert_with(|| {
                ResourceState::new(vec![
                    kv_str("service.name", "_other"),
                    kv_str("overflow", "resource"),
                ])
            })
        };
        let m = if r.metrics.contains_key(&def) || r.metrics.len() < b.metrics {
            r.metrics.entry(def).or_insert_with(|| MetricState {
                def,
                points: HashMap::new(),
                overflow: None,
            })
        } else {
            let mut h = DefaultHasher::new();
            def.hash(&mut h);
            note(&mut r.overflowed_metrics, h.finish());
            b.metric_overflow.increment(1);
            return;
        };
        let pid = hash_attrs(&attrs);
        let p = if m.points.contains_key(&pid) || m.points.len() < b.points {
            m.points.entry(pid).or_insert_with(|| Point {
                attrs,
                agg: Agg::new(def.kind),
            })
        } else {
            let mut h = DefaultHasher::new();
            (def, pid).hash(&mut h);
            note(&mut r.overflowed_points, h.finish());
            b.point_overflow.increment(1);
            m.overflow.get_or_insert_with(|| Point {
                attrs: vec![kv_str("overflow", "datapoint")],
                agg: Agg::new(def.kind),
            })
        };
        p.agg.add(s);
    }

    /// The table as delta metrics, stamped with its interval; leaves it empty.
    fn drain(&mut self, now: u64) -> Vec<ResourceMetrics> {
        let mins = self.interval.as_secs() / 60;
        let stamp = |attrs: &mut Vec<KeyValue>| {
            let set = get(attrs, "metricset.name")
                .map(value_to_string)
                .unwrap_or_else(|| "<nil>".into());
            attrs.push(kv_str("metricset.interval", format!("{mins}m")));
            attrs.push(kv_str("data_stream.dataset", format!("{set}.{mins}m")));
            attrs.push(kv_str("processor.event", "metric"));
            attrs.sort_by(|a, b| a.key.cmp(&b.key));
        };
        let counter = |name: &'static str, level: &str, n: usize| {
            let mut attrs = Vec::new();
            stamp(&mut attrs);
            Metric {
                name: name.into(),
                description: format!("Overflow {level} count due to {level} limit"),
                data: Some(metric::Data::Sum(Sum {
                    data_points: vec![NumberDataPoint {
                        attributes: attrs,
                        time_unix_nano: now,
                        value: Some(number_data_point::Value::AsInt(n as i64)),
                        ..Default::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                    is_monotonic: false,
                })),
                ..Default::default()
            }
        };
        let overflowed_resources = std::mem::take(&mut self.overflowed_resources).len();
        let mut out = Vec::new();
        let resources = self.resources.drain().map(|(_, r)| r);
        for r in resources.chain(self.overflow.take()) {
            let mut metrics = Vec::new();
            let is_overflow = get(&r.attrs, "overflow").is_some();
            if is_overflow && overflowed_resources > 0 {
                metrics.push(counter(
                    "_overflow_resource",
                    "resource",
                    overflowed_resources,
                ));
            }
            if !r.overflowed_metrics.is_empty() {
                metrics.push(counter(
                    "_overflow_metric",
                    "metric",
                    r.overflowed_metrics.len(),
                ));
            }
            if !r.overflowed_points.is_empty() {
                metrics.push(counter(
                    "_overflow_datapoint",
                    "datapoint",
                    r.overflowed_points.len(),
                ));
            }
            let mut defs: Vec<MetricState> = r.metrics.into_values().collect();
            defs.sort_by_key(|m| (m.def.name, m.def.description));
            for m in defs {
                let points: Vec<Point> = m.points.into_values().chain(m.overflow).collect();
                metrics.push(to_metric(m.def, points, now, &stamp));
            }
            out.push(ResourceMetrics {
                resource: Some(Resource {
                    attributes: r.attrs,
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: SCOPE.into(),
                        ..Default::default()
                    }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        out
    }
}

fn to_metric(def: Def, points: Vec<Point>, now: u64, stamp: &dyn Fn(&mut Vec<KeyValue>)) -> Metric {
    let delta = AggregationTemporality::Delta as i32;
    let mut sums = Vec::new();
    let mut expos = Vec::new();
    let mut hists = Vec::new();
    for mut p in points {
        stamp(&mut p.attrs);
        match p.agg {
            Agg::Int(v) => sums.push(NumberDataPoint {
                attributes: p.attrs,
                time_unix_nano: now,
                value: Some(number_data_point::Value::AsInt(v)),
                ..Default::default()
            }),
            Agg::Double(v) => sums.push(NumberDataPoint {
                attributes: p.attrs,
                time_unix_nano: now,
                value: Some(number_data_point::Value::AsDouble(v)),
                ..Default::default()
            }),
            Agg::Expo(h) => expos.push(ExponentialHistogramDataPoint {
                attributes: p.attrs,
                time_unix_nano: now,
                count: h.count,
                sum: Some(h.sum),
                scale: h.scale(),
                zero_count: h.zero_count,
                positive: Some(h.positive()),
                min: (h.count > 0).then_some(h.min),
                max: (h.count > 0).then_some(h.max),
                ..Default::default()
            }),
            Agg::Explicit {
                bound,
                counts,
                count,
                sum,
            } => hists.push(HistogramDataPoint {
                attributes: p.attrs,
                time_unix_nano: now,
                count,
                sum: Some(sum),
                bucket_counts: counts.to_vec(),
                explicit_bounds: vec![bound],
                ..Default::default()
            }),
        }
    }
    let data = match def.kind {
        Kind::SumInt | Kind::SumDouble => metric::Data::Sum(Sum {
            data_points: sums,
            aggregation_temporality: delta,
            is_monotonic: false,
        }),
        Kind::Expo => metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: expos,
            aggregation_temporality: delta,
        }),
        Kind::OneBucket(_) => metric::Data::Histogram(Histogram {
            data_points: hists,
            aggregation_temporality: delta,
        }),
    };
    Metric {
        name: def.name.into(),
        description: def.description.into(),
        unit: def.unit.into(),
        data: Some(data),
        ..Default::default()
    }
}

fn hints(hint: &str) -> KeyValue {
    kv(
        "elasticsearch.mapping.hints",
        Value::ArrayValue(ArrayValue {
            values: vec![AnyValue {
                value: Some(Value::StringValue(hint.into())),
            }],
        }),
    )
}

/// Shared by every input signal's side of one connector.
pub(crate) struct Inner {
    pub(crate) label: String,
    custom_resource: Vec<String>,
    custom_span: Vec<String>,
    tables: Mutex<Vec<Table>>,
    bounds: Bounds,
    next: NextConsumers,
    obs: ConnectorObs,
    /// The shortest interval, the ticker's period.
    pub(crate) tick: Duration,
    ticks: Mutex<u64>,
}

impl Inner {
    pub(crate) fn new(
        label: String,
        cfg: &ConnectorConfig,
        next: NextConsumers,
        obs: ConnectorObs,
    ) -> Inner {
        let l = &cfg.aggregation.limits;
        let as_usize = |v: i64| usize::try_from(v).unwrap_or(usize::MAX).max(1);
        let counter = |level: &'static str| metrics::counter!("vigil_elasticapm_overflow_total", "connector" => label.clone(), "level" => level);
        let intervals = cfg.intervals();
        Inner {
            custom_resource: cfg
                .custom_resource_attributes
                .iter()
                .map(|a| a.key.clone())
                .collect(),
            custom_span: cfg.custom_span_attributes.clone(),
            tick: intervals[0],
            tables: Mutex::new(
                intervals
                    .iter()
                    .map(|d| Table {
                        interval: *d,
                        resources: HashMap::new(),
                        overflow: None,
                        overflowed_resources: HashSet::new(),
                    })
                    .collect(),
            ),
            bounds: Bounds {
                resources: as_usize(l.resource.max_cardinality),
                metrics: as_usize(l.metric.max_cardinality),
                points: as_usize(l.datapoint.max_cardinality),
                resource_overflow: counter("resource"),
                metric_overflow: counter("metric"),
                point_overflow: counter("datapoint"),
            },
            next,
            obs,
            ticks: Mutex::new(0),
            label,
        }
    }

    fn resource_attrs(&self, res: &[KeyValue], transaction: bool) -> Vec<KeyValue> {
        let mut out = Vec::new();
        let mut copy = |key: &str| {
            if let Some(v) = get(res, key) {
                out.push(kv(key, v.clone()));
            }
        };
        if transaction {
            TRANSACTION_RESOURCE.iter().for_each(|k| copy(k));
        }
        for (k, _) in COMMON_RESOURCE {
            copy(k);
        }
        for k in &self.custom_resource {
            copy(k);
        }
        for (k, default) in COMMON_RESOURCE {
            if let (Some(d), None) = (default, get(&out, k)) {
                out.push(kv_str(k, *d));
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.dedup_by(|a, b| a.key == b.key);
        out
    }

    /// A rule's data point attributes, or `None` when the span lacks a required one.
    fn span_attrs(
        &self,
        span: &[KeyValue],
        rule: &[(&str, bool)],
        set: &str,
    ) -> Option<Vec<KeyValue>> {
        let mut out = Vec::new();
        for (k, required) in rule {
            match get(span, k) {
                Some(v) => out.push(kv(k, v.clone())),
                None if *required => return None,
                None => {}
            }
        }
        for k in &self.custom_span {
            if let Some(v) = get(span, k) {
                out.push(kv(k, v.clone()));
            }
        }
        out.push(kv_str("metricset.name", set));
        Some(out)
    }

    /// The samples of one batch of spans, as `(resource, metric, attributes, sample)`.
    fn span_samples(
        &self,
        batch: &[ResourceSpans],
    ) -> Vec<(Vec<KeyValue>, Def, Vec<KeyValue>, Sample)> {
        let mut out = Vec::new();
        for rs in batch {
            let res: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
            let common = self.resource_attrs(res, false);
            let fine = self.resource_attrs(res, true);
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    let a = &span.attributes;
                    let n = representative_count(&span.trace_state);
                    let count = n.round().max(0.0) as u64;
                    let us = (span
                        .end_time_unix_nano
                        .saturating_sub(span.start_time_unix_nano)
                        / 1000) as f64;
                    out.push((
                        common.clone(),
                        SUMMARY,
                        vec![kv_str("metricset.name", "service_summary")],
                        Sample::Int(count as i64),
                    ));
                    let success = get(a, "event.outcome").map(value_to_string);
                    for (rule, set, res_attrs, which) in [
                        (
                            SERVICE_TRANSACTION,
                            "service_transaction",
                            &common,
                            "service transaction",
                        ),
                        (TRANSACTION, "transaction", &fine, "transaction"),
                    ] {
                        let Some(attrs) = self.span_attrs(a, rule, set) else {
                            continue;
                        };
                        let mut base = attrs.clone();
                        base.push(hints("_doc_count"));
                        out.push((
                            res_attrs.clone(),
                            Def {
                                name: "transaction.duration.histogram",
                                description: if which == "transaction" {
                                    "APM transaction aggregated metrics as histogram"
                                } else {
                                    "APM service transaction aggregated metrics as histogram"
                                },
                                unit: "us",
                                kind: Kind::Expo,
                            },
                            base,
                            Sample::Hist { value: us, count },
                        ));
                        let mut summary = attrs.clone();
                        summary.push(hints("aggregate_metric_double"));
                        out.push((
                            res_attrs.clone(),
                            Def {
                                name: "transaction.duration.summary",
                                description: if which == "transaction" {
                                    "APM transaction aggregated metrics as summary"
                                } else {
                                    "APM service transaction aggregated metrics as summary"
                                },
                                unit: "us",
                                kind: Kind::OneBucket(1),
                            },
                            summary.clone(),
                            Sample::Hist {
                                value: us * count as f64,
                                count,
                            },
                        ));
                        if let Some(outcome) = &success {
                            let ok = outcome == "success";
                            out.push((
                                res_attrs.clone(),
                                Def {
                                    name: "event.success_count",
                                    description: if which == "transaction" {
                                        "Success count as a metric for transaction"
                                    } else {
                                        "Success count as a metric for service transaction"
                                    },
                                    unit: "us",
                                    kind: Kind::OneBucket(1),
                                },
                                summary,
                                Sample::Hist {
                                    value: if ok { count as f64 } else { 0.0 },
                                    count,
                                },
                            ));
                        }
                    }
                    if let Some(attrs) = self.span_attrs(a, DESTINATION, "service_destination") {
                        let composite_sum = get(a, "span.composite.sum.us").map(|v| match v {
                            Value::DoubleValue(d) => *d,
                            Value::IntValue(i) => *i as f64,
                            other => value_to_string(other).parse().unwrap_or(0.0),
                        });
                        let composite_count = get(a, "span.composite.count").map(|v| match v {
                            Value::IntValue(i) => *i,
                            Value::DoubleValue(d) => *d as i64,
                            other => value_to_string(other).parse().unwrap_or(0),
                        });
                        out.push((
                            common.clone(),
                            Def {
                                name: "span.destination.service.response_time.sum.us",
                                description: "APM span destination metrics",
                                unit: "us",
                                kind: Kind::SumDouble,
                            },
                            attrs.clone(),
                            Sample::Double(composite_sum.unwrap_or(us)),
                        ));
                        out.push((
                            common.clone(),
                            Def {
                                name: "span.destination.service.response_time.count",
                                description: "APM span destination metrics",
                                unit: "",
                                kind: Kind::SumInt,
                            },
                            attrs,
                            Sample::Int(composite_count.unwrap_or(count as i64)),
                        ));
                    }
                }
            }
        }
        out
    }

    /// One `service_summary` sample per log record or data point, by resource.
    fn summary_samples(
        &self,
        data: &Telemetry,
    ) -> Vec<(Vec<KeyValue>, Def, Vec<KeyValue>, Sample)> {
        let mut per_resource: Vec<(&Option<Resource>, usize)> = Vec::new();
        match data {
            Telemetry::Logs(rl) => {
                for r in rl {
                    per_resource.push((
                        &r.resource,
                        r.scope_logs.iter().map(|s| s.log_records.len()).sum(),
                    ));
                }
            }
            Telemetry::Metrics(rm) => {
                for r in rm {
                    let n = Telemetry::Metrics(vec![ResourceMetrics {
                        scope_metrics: r.scope_metrics.clone(),
                        ..Default::default()
                    }])
                    .item_count();
                    per_resource.push((&r.resource, n));
                }
            }
            _ => {}
        }
        per_resource
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| {
                let res: &[KeyValue] = r.as_ref().map_or(&[], |r| &r.attributes);
                (
                    self.resource_attrs(res, false),
                    SUMMARY,
                    vec![kv_str("metricset.name", "service_summary")],
                    Sample::Int(n as i64),
                )
            })
            .collect()
    }

    pub(crate) fn aggregate_spans(&self, batch: &[ResourceSpans]) {
        self.aggregate(self.span_samples(batch));
    }

    pub(crate) fn aggregate_other(&self, data: &Telemetry) {
        self.aggregate(self.summary_samples(data));
    }

    fn aggregate(&self, samples: Vec<(Vec<KeyValue>, Def, Vec<KeyValue>, Sample)>) {
        let mut tables = lock(&self.tables);
        for (res, def, attrs, s) in samples {
            for t in tables.iter_mut() {
                t.add(&self.bounds, &res, def, attrs.clone(), s);
            }
        }
    }

    /// Sends the tables whose interval ends at this tick (every table when `all`).
    pub(crate) async fn flush(&self, all: bool) {
        let now = now_nanos();
        let out = {
            let mut ticks = lock(&self.ticks);
            *ticks += 1;
            let elapsed = self.tick * u32::try_from(*ticks).unwrap_or(u32::MAX);
            let mut tables = lock(&self.tables);
            let mut out = Vec::new();
            for t in tables.iter_mut() {
                if all || elapsed.as_nanos().is_multiple_of(t.interval.as_nanos()) {
                    out.extend(t.drain(now));
                }
            }
            out
        };
        if out.is_empty() {
            return;
        }
        let data = Telemetry::Metrics(out);
        self.obs.produced(Signal::Metrics, data.item_count());
        // Delta aggregates a refusing consumer did not take are lost, as in the original's
        // export; the warning says so.
        if let Err(e) = self.next.consume(data).await {
            tracing::warn!(connector = %self.label, error = %e, "elasticapm aggregated metrics not delivered");
        }
    }
}

/// A running `elasticapm` connector.
pub struct ElasticApmConnector {
    pub(crate) inner: Arc<Inner>,
    pub(crate) tasks: Tasks,
}

#[async_trait]
impl Component for ElasticApmConnector {
    async fn start(&self, _host: &vigil_core::Host) -> anyhow::Result<()> {
        let inner = Arc::clone(&self.inner);
        self.tasks.spawn_ticker(inner.tick, move || {
            let inner = Arc::clone(&inner);
            async move { inner.flush(false).await }
        });
        Ok(())
    }

    /// Stops the ticker and sends every interval's partial aggregates, within the deadline.
    async fn shutdown_by(&self, deadline: std::time::Instant) -> anyhow::Result<()> {
        self.tasks.stop(deadline).await;
        if vigil_core::task::within(deadline, self.inner.flush(true))
            .await
            .is_none()
        {
            tracing::warn!(connector = %self.inner.label, "elasticapm aggregates not sent by the shutdown deadline");
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for ElasticApmConnector {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let signal = data.signal();
        self.inner.obs.consumed(signal, data.item_count());
        match &data {
            Telemetry::Traces(rs) => self.inner.aggregate_spans(rs),
            Telemetry::Logs(_) | Telemetry::Metrics(_) => self.inner.aggregate_other(&data),
            Telemetry::Profiles(_) => {
                return Err(ConsumeError::permanent(
                    "elasticapm takes traces, logs and metrics, not profiles",
                    data.item_count(),
                ))
            }
        }
        Ok(())
    }
}
