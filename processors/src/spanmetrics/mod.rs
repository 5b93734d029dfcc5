//! `spanmetrics` (`span_metrics`, traces → metrics): otelcol-contrib's connector that turns spans into
//! request, error and duration (R.E.D.) metrics, with its keys, defaults and names:
//! `<namespace>.calls` (a monotonic sum of spans), `<namespace>.duration` (an explicit or exponential
//! histogram of span durations in `ms` or `s`) and, with `events`, `<namespace>.events`, per resource
//! and per set of dimensions (`service.name`, `span.name`, `span.kind`, `status.code`,
//! `collector.instance.id`, then the configured ones). Metrics leave every `metrics_flush_interval`,
//! and once more at shutdown.
//!
//! State is bounded: at most `resource_metrics_cache_size` resources (least recently used first out,
//! counted in `vigil_spanmetrics_resources_evicted`), and per resource and metric at most
//! `aggregation_cardinality_limit` series (when set) or [`config::DEFAULT_MAX_SERIES`] series across
//! all resources (when not); a span that would open one more series is counted in that resource's
//! overflow series (`otel.metric.overflow: true`, as the SDKs' cardinality limit does) and in
//! `vigil_spanmetrics_overflow_spans`.

pub mod config;
pub(crate) mod expo;

use async_trait::async_trait;
use config::*;
use expo::ExpoHistogram;
use lru::LruCache;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use vigil_core::attrs::{get, kv, value_to_string};
use vigil_core::factory::{self, ConnectorFactory, DynConnectorFactory, FactoryBase};
use vigil_core::otlp::common::v1::{any_value, InstrumentationScope, KeyValue};
use vigil_core::otlp::metrics::v1::{
    exemplar, metric, number_data_point, AggregationTemporality, Exemplar, ExponentialHistogram,
    ExponentialHistogramDataPoint, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::otlp::trace::v1::{span::SpanKind, status::StatusCode, ResourceSpans, Span};
use vigil_core::time::now_nanos;
use vigil_core::{
    lock, Component, ComponentId, ConfigError, ConnectorObs, ConsumeError, Consumer, NextConsumers,
    Settings, Signal, Stability, Tasks, Telemetry,
};

pub use config::SpanMetricsConfig;

struct Factory;

/// The `spanmetrics` connector factory.
pub fn factory() -> Arc<dyn DynConnectorFactory> {
    factory::connector(Factory)
}

impl FactoryBase for Factory {
    type Config = SpanMetricsConfig;

    fn type_name(&self) -> &'static str {
        "spanmetrics"
    }

    fn validate(&self, _id: &ComponentId, cfg: &SpanMetricsConfig) -> Result<(), ConfigError> {
        cfg.validate()
    }
}

impl ConnectorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Signal, Stability)] {
        &[(Signal::Traces, Signal::Metrics, Stability::Alpha)]
    }

    fn create(
        &self,
        set: Settings,
        cfg: SpanMetricsConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn vigil_core::Connector>, ConfigError> {
        let inner = Inner::new(&set, cfg, next);
        Ok(Arc::new(SpanMetrics {
            inner: Arc::new(inner),
            tasks: set.tasks,
        }))
    }
}

/// otelcol's `collector.instance.id`: one random UUID (v4) per process.
fn instance_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the OS's randomness; two hashers give 128 random bits
        // without adding a dependency for one id.
        let word = |salt: u64| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(salt);
            h.finish()
        };
        let (a, b) = (word(1), word(2));
        let a = (a & !0xf000) | 0x4000;
        let b = (b & !(0b11 << 62)) | (0b10 << 62);
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    })
}

/// otelcol's `traceutil.SpanKindStr`.
pub(crate) fn kind_str(kind: i32) -> &'static str {
    match SpanKind::try_from(kind).unwrap_or(SpanKind::Unspecified) {
        SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
        SpanKind::Internal => "SPAN_KIND_INTERNAL",
        SpanKind::Server => "SPAN_KIND_SERVER",
        SpanKind::Client => "SPAN_KIND_CLIENT",
        SpanKind::Producer => "SPAN_KIND_PRODUCER",
        SpanKind::Consumer => "SPAN_KIND_CONSUMER",
    }
}

/// otelcol's `traceutil.StatusCodeStr`.
pub(crate) fn status_str(span: &Span) -> &'static str {
    let code = span.status.as_ref().map(|s| s.code).unwrap_or(0);
    match StatusCode::try_from(code).unwrap_or(StatusCode::Unset) {
        StatusCode::Unset => "STATUS_CODE_UNSET",
        StatusCode::Ok => "STATUS_CODE_OK",
        StatusCode::Error => "STATUS_CODE_ERROR",
    }
}

/// A sum's series: the number of spans (or events) with one set of dimensions.
struct SumSeries {
    attrs: Vec<KeyValue>,
    count: u64,
    start: u64,
    touched: Instant,
    exemplars: Vec<Exemplar>,
}

enum Buckets {
    Explicit { counts: Vec<u64> },
    Exponential(ExpoHistogram),
}

struct HistSeries {
    attrs: Vec<KeyValue>,
    buckets: Buckets,
    count: u64,
    sum: f64,
    start: u64,
    touched: Instant,
    exemplars: Vec<Exemplar>,
}

/// The series of one metric in one resource, keyed by their dimension values.
struct Series<T> {
    map: HashMap<String, T>,
}

impl<T> Default for Series<T> {
    fn default() -> Self {
        Series {
            map: HashMap::new(),
        }
    }
}

/// The key of a resource's overflow series: no dimension value contains it.
const OVERFLOW_KEY: &str = "\u{0}otel.metric.overflow";

fn overflow_attrs() -> Vec<KeyValue> {
    vec![kv(
        "otel.metric.overflow",
        any_value::Value::BoolValue(true),
    )]
}

struct ResourceState {
    attributes: Vec<KeyValue>,
    calls: Series<SumSeries>,
    durations: Series<HistSeries>,
    events: Series<SumSeries>,
    touched: Instant,
}

impl ResourceState {
    fn series_count(&self) -> usize {
        self.calls.map.len() + self.durations.map.len() + self.events.map.len()
    }
}

struct State {
    resources: LruCache<String, ResourceState>,
    /// Series held across all resources, for [`DEFAULT_MAX_SERIES`].
    series: usize,
    /// Delta only: when each series last left, the start of its next point (otelcol's
    /// `metric_timestamp_cache_size`).
    last_delta: LruCache<String, u64>,
}

struct Inner {
    cfg: SpanMetricsConfig,
    label: String,
    bounds: Vec<f64>,
    /// `aggregation_cardinality_limit`; 0 is none (then [`DEFAULT_MAX_SERIES`] overall applies).
    limit: usize,
    key_attrs: Vec<String>,
    state: Mutex<State>,
    next: NextConsumers,
    obs: ConnectorObs,
    evicted: metrics::Counter,
    overflowed: metrics::Counter,
}

struct SpanMetrics {
    inner: Arc<Inner>,
    tasks: Tasks,
}

/// Where a dimension's value comes from: the span's attributes first, then `fallback` (the
/// resource's, or for events the resource's overlaid with the event's).
fn lookup<'a>(
    d: &Dimension,
    span: &'a [KeyValue],
    fallback: &[&'a [KeyValue]],
) -> Option<any_value::Value> {
    if let Some(v) = get(span, &d.name) {
        return Some(v.clone());
    }
    for attrs in fallback {
        if let Some(v) = get(attrs, &d.name) {
            return Some(v.clone());
        }
    }
    d.default.clone().map(any_value::Value::StringValue)
}

impl Inner {
    fn new(set: &Settings, cfg: SpanMetricsConfig, next: NextConsumers) -> Inner {
        let label = set.id.to_string();
        let limit = usize::try_from(cfg.aggregation_cardinality_limit).unwrap_or(0);
        let resources =
            NonZeroUsize::new(cfg.resource_metrics_cache_size).unwrap_or(NonZeroUsize::MIN);
        let stamps = usize::try_from(cfg.timestamp_cache_size())
            .ok()
            .and_then(NonZeroUsize::new)
            .unwrap_or(NonZeroUsize::MIN);
        Inner {
            bounds: cfg.bounds(),
            limit,
            key_attrs: cfg.resource_metrics_key_attributes.clone(),
            state: Mutex::new(State {
                resources: LruCache::new(resources),
                series: 0,
                last_delta: LruCache::new(stamps),
            }),
            next,
            obs: set.connector_obs(),
            evicted: metrics::counter!("vigil_spanmetrics_resources_evicted", "connector" => label.clone()),
            overflowed: metrics::counter!("vigil_spanmetrics_overflow_spans", "connector" => label.clone()),
            label,
            cfg,
        }
    }

    fn excluded(&self, name: &str) -> bool {
        self.cfg.exclude_dimensions.iter().any(|e| e == name)
    }

    /// The dimension key and attributes of a span for one metric: the defaults, then `dims`.
    fn dimensions(
        &self,
        service: &str,
        span: &Span,
        scope: Option<&InstrumentationScope>,
        dims: &[&Dimension],
        fallback: &[&[KeyValue]],
    ) -> (String, Vec<KeyValue>) {
        let mut key = String::new();
        let mut attrs = Vec::with_capacity(5 + dims.len());
        let mut push = |name: &str, value: any_value::Value, key: &mut String| {
            if !key.is_empty() {
                key.push('\u{0}');
            }
            key.push_str(name);
            key.push('=');
            key.push_str(&value_to_string(&value));
            attrs.push(kv(name, value));
        };
        for (name, value) in [
            (SERVICE_NAME, service),
            (SPAN_NAME, span.name.as_str()),
            (SPAN_KIND, kind_str(span.kind)),
            (STATUS_CODE, status_str(span)),
            (COLLECTOR_INSTANCE_ID, instance_id()),
        ] {
            if !self.excluded(name) {
                push(name, any_value::Value::StringValue(value.into()), &mut key);
            }
        }
        for d in dims {
            if let Some(v) = lookup(d, &span.attributes, fallback) {
                push(&d.name, v, &mut key);
            }
        }
        if let Some(s) = scope.filter(|s| {
            !s.name.is_empty() && self.cfg.include_instrumentation_scope.contains(&s.name)
        }) {
            push(
                "span.instrumentation.scope.name",
                any_value::Value::StringValue(s.name.clone()),
                &mut key,
            );
            if !s.version.is_empty() {
                push(
                    "span.instrumentation.scope.version",
                    any_value::Value::StringValue(s.version.clone()),
                    &mut key,
                );
            }
        }
        (key, attrs)
    }

    fn resource_key(&self, attrs: &[KeyValue]) -> String {
        let mut pairs: Vec<(&str, String)> = attrs
            .iter()
            .filter(|a| self.key_attrs.is_empty() || self.key_attrs.contains(&a.key))
            .map(|a| {
                let v = a.value.as_ref().and_then(|v| v.value.as_ref());
                (a.key.as_str(), v.map(value_to_string).unwrap_or_default())
            })
            .collect();
        pairs.sort();
        let mut key = String::new();
        for (k, v) in pairs {
            key.push_str(k);
            key.push('=');
            key.push_str(&v);
            key.push('\u{0}');
        }
        key
    }

    /// Whether one more series may open in a metric of `len` series.
    fn room(&self, len: usize, total: usize) -> bool {
        if self.limit > 0 {
            len < self.limit
        } else {
            total < DEFAULT_MAX_SERIES
        }
    }

    fn max_exemplars(&self) -> usize {
        self.cfg
            .exemplars
            .max_per_data_point
            .unwrap_or(DEFAULT_MAX_EXEMPLARS)
    }

    fn exemplar(&self, span: &Span, value: f64, list: &mut Vec<Exemplar>) {
        if !self.cfg.exemplars.enabled
            || span.trace_id.iter().all(|b| *b == 0)
            || list.len() >= self.max_exemplars()
        {
            return;
        }
        list.push(Exemplar {
            trace_id: span.trace_id.clone(),
            span_id: span.span_id.clone(),
            value: Some(exemplar::Value::AsDouble(value)),
            ..Default::default()
        });
    }

    fn aggregate(&self, batch: &[ResourceSpans]) {
        let now = Instant::now();
        let start = now_nanos();
        let mut st = lock(&self.state);
        let st = &mut *st;
        for rs in batch {
            let rattrs: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
            let Some(service) = get(rattrs, SERVICE_NAME).map(value_to_string) else {
                continue;
            };
            let rkey = self.resource_key(rattrs);
            if !st.resources.contains(&rkey) {
                let fresh = ResourceState {
                    attributes: rattrs.to_vec(),
                    calls: Series::default(),
                    durations: Series::default(),
                    events: Series::default(),
                    touched: now,
                };
                if let Some((_, gone)) = st.resources.push(rkey.clone(), fresh) {
                    st.series -= gone.series_count();
                    self.evicted.increment(1);
                }
            }
            let Some(res) = st.resources.get_mut(&rkey) else {
                continue;
            };
            res.touched = now;
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    let nanos = span
                        .end_time_unix_nano
                        .saturating_sub(span.start_time_unix_nano);
                    let duration = nanos as f64 / self.cfg.histogram.unit.nanos();
                    let scope = ss.scope.as_ref();
                    let fallback = [rattrs];
                    let calls_dims: Vec<&Dimension> = self
                        .cfg
                        .dimensions
                        .iter()
                        .chain(&self.cfg.calls_dimensions)
                        .collect();
                    let (key, attrs) =
                        self.dimensions(&service, span, scope, &calls_dims, &fallback);
                    let mut overflow = false;
                    let room = self.room(res.calls.map.len(), st.series);
                    let s = sum_series(
                        &mut res.calls,
                        key,
                        attrs,
                        room,
                        start,
                        now,
                        &mut st.series,
                        &mut overflow,
                    );
                    s.count += 1;
                    s.touched = now;
                    self.exemplar(span, duration, &mut s.exemplars);

                    if !self.cfg.histogram.disable {
                        let hist_dims: Vec<&Dimension> = self
                            .cfg
                            .dimensions
                            .iter()
                            .chain(&self.cfg.histogram.dimensions)
                            .collect();
                        let (key, attrs) =
                            self.dimensions(&service, span, scope, &hist_dims, &fallback);
                        let room = self.room(res.durations.map.len(), st.series);
                        let h = self.hist_series(
                            &mut res.durations,
                            key,
                            attrs,
                            room,
                            start,
                            now,
                            &mut st.series,
                            &mut overflow,
                        );
                        h.count += 1;
                        h.sum += duration;
                        h.touched = now;
                        match &mut h.buckets {
                            Buckets::Explicit { counts } => {
                                counts[self.bounds.partition_point(|b| *b < duration)] += 1;
                            }
                            Buckets::Exponential(e) => e.record(duration),
                        }
                        self.exemplar(span, duration, &mut h.exemplars);
                    }

                    if self.cfg.events.enabled {
                        for event in &span.events {
                            let dims: Vec<&Dimension> = self
                                .cfg
                                .dimensions
                                .iter()
                                .chain(&self.cfg.events.dimensions)
                                .collect();
                            let fallback = [event.attributes.as_slice(), rattrs];
                            let (key, attrs) =
                                self.dimensions(&service, span, scope, &dims, &fallback);
                            let room = self.room(res.events.map.len(), st.series);
                            let e = sum_series(
                                &mut res.events,
                                key,
                                attrs,
                                room,
                                start,
                                now,
                                &mut st.series,
                                &mut overflow,
                            );
                            e.count += 1;
                            e.touched = now;
                            self.exemplar(span, duration, &mut e.exemplars);
                        }
                    }
                    if overflow {
                        self.overflowed.increment(1);
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn hist_series<'a>(
        &self,
        series: &'a mut Series<HistSeries>,
        key: String,
        attrs: Vec<KeyValue>,
        room: bool,
        start: u64,
        now: Instant,
        total: &mut usize,
        overflow: &mut bool,
    ) -> &'a mut HistSeries {
        let (key, attrs) = if series.map.contains_key(&key) || room {
            (key, attrs)
        } else {
            *overflow = true;
            (OVERFLOW_KEY.to_string(), overflow_attrs())
        };
        series.map.entry(key).or_insert_with(|| {
            *total += 1;
            HistSeries {
                attrs,
                buckets: match &self.cfg.histogram.exponential {
                    Some(e) => Buckets::Exponential(ExpoHistogram::new(if e.max_size == 0 {
                        160
                    } else {
                        e.max_size as usize
                    })),
                    None => Buckets::Explicit {
                        counts: vec![0; self.bounds.len() + 1],
                    },
                },
                count: 0,
                sum: 0.0,
                start,
                touched: now,
                exemplars: Vec::new(),
            }
        })
    }

    /// The metrics to send now; resets delta state and drops expired cumulative state.
    fn build(&self) -> Vec<ResourceMetrics> {
        let now = now_nanos();
        let clock = Instant::now();
        let delta = self.cfg.delta();
        let temporality = if delta {
            AggregationTemporality::Delta
        } else {
            AggregationTemporality::Cumulative
        } as i32;
        let name = |m: &str| {
            if self.cfg.namespace.is_empty() {
                m.to_string()
            } else {
                format!("{}.{m}", self.cfg.namespace)
            }
        };
        let mut st = lock(&self.state);
        let st = &mut *st;
        let mut out = Vec::new();
        let series_expiration = self.cfg.series_expiration;
        for (rkey, res) in st.resources.iter_mut() {
            if !series_expiration.is_zero() && !delta {
                let before = res.series_count();
                res.calls
                    .map
                    .retain(|_, s| clock.duration_since(s.touched) < series_expiration);
                res.durations
                    .map
                    .retain(|_, s| clock.duration_since(s.touched) < series_expiration);
                res.events
                    .map
                    .retain(|_, s| clock.duration_since(s.touched) < series_expiration);
                st.series -= before - res.series_count();
            }
            let mut start_of = |metric: &str, key: &str, created: u64| -> u64 {
                if !delta {
                    return created;
                }
                let k = format!("{rkey}\u{1}{metric}\u{1}{key}");
                let start = st.last_delta.get(&k).copied().unwrap_or(created);
                st.last_delta.put(k, now);
                start
            };
            let mut metrics = Vec::new();
            if !res.calls.map.is_empty() {
                let points = res
                    .calls
                    .map
                    .iter_mut()
                    .map(|(k, s)| sum_point(s, start_of("calls", k, s.start), now))
                    .collect();
                metrics.push(sum_metric(name("calls"), points, temporality));
            }
            if !self.cfg.histogram.disable && !res.durations.map.is_empty() {
                let unit = self.cfg.histogram.unit.as_str().to_string();
                let mut explicit = Vec::new();
                let mut exponential = Vec::new();
                for (k, h) in res.durations.map.iter_mut() {
                    let start = start_of("duration", k, h.start);
                    let exemplars = stamp(std::mem::take(&mut h.exemplars), now);
                    match &h.buckets {
                        Buckets::Explicit { counts } => explicit.push(HistogramDataPoint {
                            attributes: h.attrs.clone(),
                            start_time_unix_nano: start,
                            time_unix_nano: now,
                            count: h.count,
                            sum: Some(h.sum),
                            bucket_counts: counts.clone(),
                            explicit_bounds: self.bounds.clone(),
                            exemplars,
                            ..Default::default()
                        }),
                        Buckets::Exponential(e) => {
                            exponential.push(ExponentialHistogramDataPoint {
                                attributes: h.attrs.clone(),
                                start_time_unix_nano: start,
                                time_unix_nano: now,
                                count: e.count,
                                sum: Some(e.sum),
                                scale: e.scale(),
                                zero_count: e.zero_count,
                                positive: Some(e.positive()),
                                min: (e.count > 0).then_some(e.min),
                                max: (e.count > 0).then_some(e.max),
                                exemplars,
                                ..Default::default()
                            })
                        }
                    }
                }
                let data = if self.cfg.histogram.exponential.is_some() {
                    metric::Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: exponential,
                        aggregation_temporality: temporality,
                    })
                } else {
                    metric::Data::Histogram(Histogram {
                        data_points: explicit,
                        aggregation_temporality: temporality,
                    })
                };
                metrics.push(Metric {
                    name: name("duration"),
                    unit,
                    data: Some(data),
                    ..Default::default()
                });
            }
            if self.cfg.events.enabled && !res.events.map.is_empty() {
                let points = res
                    .events
                    .map
                    .iter_mut()
                    .map(|(k, s)| sum_point(s, start_of("events", k, s.start), now))
                    .collect();
                metrics.push(sum_metric(name("events"), points, temporality));
            }
            if metrics.is_empty() {
                continue;
            }
            out.push(ResourceMetrics {
                resource: Some(Resource {
                    attributes: res.attributes.clone(),
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "spanmetricsconnector".into(),
                        ..Default::default()
                    }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        if delta {
            st.resources.clear();
            st.series = 0;
        } else if !self.cfg.metrics_expiration.is_zero() {
            let expired: Vec<String> = st
                .resources
                .iter()
                .filter(|(_, r)| clock.duration_since(r.touched) >= self.cfg.metrics_expiration)
                .map(|(k, _)| k.clone())
                .collect();
            for k in expired {
                if let Some(r) = st.resources.pop(&k) {
                    st.series -= r.series_count();
                }
            }
        }
        out
    }

    async fn flush(&self) {
        let m = self.build();
        if m.is_empty() {
            return;
        }
        let data = Telemetry::Metrics(m);
        self.obs.produced(Signal::Metrics, data.item_count());
        // Cumulative metrics carry whatever a refused flush held into the next one; delta ones
        // are lost with it, as in otelcol, and the refusal says so.
        if let Err(e) = self.next.consume(data).await {
            tracing::warn!(connector = %self.label, error = %e, "span metrics not delivered");
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn sum_series<'a>(
    series: &'a mut Series<SumSeries>,
    key: String,
    attrs: Vec<KeyValue>,
    room: bool,
    start: u64,
    now: Instant,
    total: &mut usize,
    overflow: &mut bool,
) -> &'a mut SumSeries {
    let (key, attrs) = if series.map.contains_key(&key) || room {
        (key, attrs)
    } else {
        *overflow = true;
        (OVERFLOW_KEY.to_string(), overflow_attrs())
    };
    series.map.entry(key).or_insert_with(|| {
        *total += 1;
        SumSeries {
            attrs,
            count: 0,
            start,
            touched: now,
            exemplars: Vec::new(),
        }
    })
}

fn stamp(mut exemplars: Vec<Exemplar>, now: u64) -> Vec<Exemplar> {
    for e in &mut exemplars {
        e.time_unix_nano = now;
    }
    exemplars
}

fn sum_point(s: &mut SumSeries, start: u64, now: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: s.attrs.clone(),
        start_time_unix_nano: start,
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsInt(s.count as i64)),
        exemplars: stamp(std::mem::take(&mut s.exemplars), now),
        ..Default::default()
    }
}

fn sum_metric(name: String, points: Vec<NumberDataPoint>, temporality: i32) -> Metric {
    Metric {
        name,
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

#[async_trait]
impl Component for SpanMetrics {
    async fn start(&self, _host: &vigil_core::Host) -> anyhow::Result<()> {
        let inner = Arc::clone(&self.inner);
        self.tasks
            .spawn_ticker(inner.cfg.metrics_flush_interval, move || {
                let inner = Arc::clone(&inner);
                async move { inner.flush().await }
            });
        Ok(())
    }

    /// Stops the ticker and sends what was aggregated since the last flush, within the deadline.
    async fn shutdown_by(&self, deadline: std::time::Instant) -> anyhow::Result<()> {
        self.tasks.stop(deadline).await;
        if vigil_core::task::within(deadline, self.inner.flush())
            .await
            .is_none()
        {
            tracing::warn!(connector = %self.inner.label, "span metrics not sent by the shutdown deadline");
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for SpanMetrics {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let Telemetry::Traces(rs) = &data else {
            return Err(ConsumeError::permanent(
                format!("spanmetrics takes traces, not {}", data.signal()),
                data.item_count(),
            ));
        };
        self.inner.obs.consumed(Signal::Traces, data.item_count());
        self.inner.aggregate(rs);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
