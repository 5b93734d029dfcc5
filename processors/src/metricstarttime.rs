//! `metricstarttime` (`metric_start_time`): otelcol-contrib's processor that gives cumulative points
//! without a start time (what the `prometheus` receiver scrapes from most exporters) one, so that a
//! backend can compute rates. Cumulative sums, histograms, exponential histograms and summaries are
//! adjusted; gauges, deltas and points that already carry a start time pass unchanged.
//!
//! `strategy`, as otelcol's:
//! - `true_reset_point` (default): the first point of a series is a true reset point (start time =
//!   its timestamp); later points get that start time.
//! - `subtract_initial_point`: the first point is dropped and remembered; later points carry the
//!   value counted since it (value minus the first point's) and its timestamp as their start time.
//! - `start_time_metric`: every series starts at the value of the first metric in the batch named
//!   `process_start_time_seconds` (or matching `start_time_metric_regex`), in seconds since the
//!   epoch; without one, at the time this processor was created (otelcol's "approximate collector
//!   start time").
//!
//! A point whose value went down (a monotonic sum, or a histogram's or summary's count or sum, or
//! its buckets) marks a reset: its series starts again one millisecond before that point, as
//! otelcol does. Non-monotonic sums have no resets. A point flagged "no recorded value" gets the
//! series' start time and changes nothing.
//!
//! State: one entry per series (resource, scope, metric identity and point attributes). Series not
//! seen for `gc_interval` (default 10m) are forgotten; at most [`MAX_SERIES`] are kept, the least
//! recently seen evicted first and counted (`vigil_metricstarttime_series_evicted{processor}`).
//! otelcol bounds its cache only by `gc_interval`.

use crate::points::{metric_key, stream_key};
use async_trait::async_trait;
use lru::LruCache;
use serde::{Deserialize, Serialize};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_core::config::{duration, re2_regex};
use vigil_core::factory::{self, DynProcessorFactory, FactoryBase, ProcessorFactory};
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::otlp::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric, number_data_point, AggregationTemporality,
    DataPointFlags, ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint,
    ResourceMetrics, SummaryDataPoint,
};
use vigil_core::time::now_nanos;
use vigil_core::{
    lock, Component, ComponentId, ConfigError, ConsumeError, Consumer, Processor, ProcessorObs,
    Settings, Signal, Stability, Telemetry,
};

/// vigil's bound on the series one processor remembers.
pub const MAX_SERIES: usize = 100_000;

/// The start time metric's name when `start_time_metric_regex` is not set.
const START_TIME_METRIC: &str = "process_start_time_seconds";

/// How far before a reset point its series is said to start (otelcol's choice).
const RESET_OFFSET_NANOS: u64 = 1_000_000;

/// `strategy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    TrueResetPoint,
    SubtractInitialPoint,
    StartTimeMetric,
}

fn default_gc_interval() -> Duration {
    Duration::from_secs(600)
}

/// The `metricstarttime` processor config, with otelcol's keys and defaults.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricStartTimeConfig {
    #[serde(default)]
    pub strategy: Strategy,
    /// How long a series is remembered after its last point.
    #[serde(default = "default_gc_interval", with = "duration")]
    pub gc_interval: Duration,
    /// With `start_time_metric`: the metrics whose value is the start time (RE2 syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time_metric_regex: Option<String>,
}

impl Default for MetricStartTimeConfig {
    fn default() -> Self {
        MetricStartTimeConfig {
            strategy: Strategy::default(),
            gc_interval: default_gc_interval(),
            start_time_metric_regex: None,
        }
    }
}

impl MetricStartTimeConfig {
    fn regex(&self) -> Result<Option<regex::Regex>, ConfigError> {
        match self.start_time_metric_regex.as_deref() {
            None | Some("") => Ok(None),
            Some(p) => re2_regex(p).map(Some).map_err(|e| {
                ConfigError::at(
                    "start_time_metric_regex",
                    format!("{p:?} is not a valid regular expression: {e}"),
                )
            }),
        }
    }
}

struct Factory;

/// The `metricstarttime` processor factory (`metric_start_time` is accepted too).
pub fn factory() -> Arc<dyn DynProcessorFactory> {
    factory::processor(Factory)
}

impl FactoryBase for Factory {
    type Config = MetricStartTimeConfig;

    fn type_name(&self) -> &'static str {
        "metricstarttime"
    }

    fn validate(&self, _id: &ComponentId, cfg: &MetricStartTimeConfig) -> Result<(), ConfigError> {
        if cfg.gc_interval.is_zero() {
            return Err(ConfigError::at("gc_interval", "must be positive"));
        }
        cfg.regex()?;
        Ok(())
    }
}

impl ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[(Signal::Metrics, Stability::Alpha)]
    }

    fn create(
        &self,
        set: Settings,
        cfg: MetricStartTimeConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let evicted = metrics::counter!(
            "vigil_metricstarttime_series_evicted",
            "processor" => set.id.to_string()
        );
        Ok(Arc::new(MetricStartTime {
            inner: Adjuster::new(&cfg, evicted, MAX_SERIES)?,
            next,
            obs: set.processor_obs(signal),
        }))
    }
}

/// What a series remembers of a point: enough to see a reset and to subtract.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Int(i64),
    Double(f64),
    Histogram {
        count: u64,
        sum: f64,
        buckets: Vec<u64>,
    },
    Exponential {
        count: u64,
        sum: f64,
        zero: u64,
        scale: i32,
        positive: (i32, Vec<u64>),
        negative: (i32, Vec<u64>),
    },
    Summary {
        count: u64,
        sum: f64,
    },
}

impl Value {
    /// Whether `self` (the current point) went below `prev`: the source restarted.
    fn is_reset(&self, prev: &Value, monotonic: bool) -> bool {
        match (self, prev) {
            (Value::Int(v), Value::Int(p)) => monotonic && v < p,
            (Value::Double(v), Value::Double(p)) => monotonic && v < p,
            (
                Value::Histogram {
                    count,
                    sum,
                    buckets,
                },
                Value::Histogram {
                    count: pc,
                    sum: ps,
                    buckets: pb,
                },
            ) => {
                count < pc
                    || sum < ps
                    || buckets.len() != pb.len()
                    || buckets.iter().zip(pb).any(|(b, p)| b < p)
            }
            (
                Value::Exponential {
                    count,
                    sum,
                    zero,
                    scale,
                    ..
                },
                Value::Exponential {
                    count: pc,
                    sum: ps,
                    zero: pz,
                    scale: psc,
                    ..
                },
            ) => count < pc || sum < ps || zero < pz || scale != psc,
            (Value::Summary { count, sum }, Value::Summary { count: pc, sum: ps }) => {
                count < pc || sum < ps
            }
            // The point changed type or value type: a new source.
            _ => true,
        }
    }
}

/// What the adjuster reads and writes of every point type alike.
trait Stamped {
    fn start_mut(&mut self) -> &mut u64;
    fn time(&self) -> u64;
    fn flags(&self) -> u32;
    fn attributes(&self) -> &[KeyValue];
}

/// The point types' fields have the same names but no common trait in the generated code.
macro_rules! stamped {
    ($($t:ty),*) => {$(
        impl Stamped for $t {
            fn start_mut(&mut self) -> &mut u64 {
                &mut self.start_time_unix_nano
            }
            fn time(&self) -> u64 {
                self.time_unix_nano
            }
            fn flags(&self) -> u32 {
                self.flags
            }
            fn attributes(&self) -> &[KeyValue] {
                &self.attributes
            }
        }
    )*};
}
stamped!(
    NumberDataPoint,
    HistogramDataPoint,
    ExponentialHistogramDataPoint,
    SummaryDataPoint
);

/// One point type, as the adjuster sees it: its value, and how to subtract a reference from it.
trait Point: Stamped {
    /// `None` for a point without a value (a number point with neither an int nor a double).
    fn value(&self) -> Option<Value>;
    /// Takes `reference` (a point of the same series) off this point's counts.
    fn subtract(&mut self, reference: &Value);
}

impl Point for NumberDataPoint {
    fn value(&self) -> Option<Value> {
        match self.value? {
            number_data_point::Value::AsInt(i) => Some(Value::Int(i)),
            number_data_point::Value::AsDouble(d) => Some(Value::Double(d)),
        }
    }
    fn subtract(&mut self, reference: &Value) {
        self.value = match (self.value, reference) {
            (Some(number_data_point::Value::AsInt(v)), Value::Int(r)) => {
                Some(number_data_point::Value::AsInt(v.wrapping_sub(*r)))
            }
            (Some(number_data_point::Value::AsDouble(v)), Value::Double(r)) => {
                Some(number_data_point::Value::AsDouble(v - r))
            }
            (v, _) => v,
        };
    }
}

impl Point for HistogramDataPoint {
    fn value(&self) -> Option<Value> {
        Some(Value::Histogram {
            count: self.count,
            sum: self.sum.unwrap_or(0.0),
            buckets: self.bucket_counts.clone(),
        })
    }
    fn subtract(&mut self, reference: &Value) {
        let Value::Histogram {
            count,
            sum,
            buckets,
        } = reference
        else {
            return;
        };
        self.count = self.count.saturating_sub(*count);
        self.sum = self.sum.map(|s| s - sum);
        // After a reset the reference has no buckets: the counts are kept whole, as otelcol does.
        if self.bucket_counts.len() == buckets.len() {
            for (b, r) in self.bucket_counts.iter_mut().zip(buckets) {
                *b = b.saturating_sub(*r);
            }
        }
    }
}

fn exp_buckets(b: &Option<Buckets>) -> (i32, Vec<u64>) {
    b.as_ref()
        .map_or((0, Vec::new()), |b| (b.offset, b.bucket_counts.clone()))
}

/// Subtracts the reference's buckets, aligned by offset; a bucket the reference lacks is kept.
fn subtract_exp_buckets(b: &mut Option<Buckets>, reference: &(i32, Vec<u64>)) {
    let Some(b) = b else { return };
    let (roff, rcounts) = reference;
    for (i, c) in b.bucket_counts.iter_mut().enumerate() {
        let j = i as i64 + i64::from(b.offset) - i64::from(*roff);
        if let Some(r) = usize::try_from(j).ok().and_then(|j| rcounts.get(j)) {
            *c = c.saturating_sub(*r);
        }
    }
}

impl Point for ExponentialHistogramDataPoint {
    fn value(&self) -> Option<Value> {
        Some(Value::Exponential {
            count: self.count,
            sum: self.sum.unwrap_or(0.0),
            zero: self.zero_count,
            scale: self.scale,
            positive: exp_buckets(&self.positive),
            negative: exp_buckets(&self.negative),
        })
    }
    fn subtract(&mut self, reference: &Value) {
        let Value::Exponential {
            count,
            sum,
            zero,
            positive,
            negative,
            ..
        } = reference
        else {
            return;
        };
        self.count = self.count.saturating_sub(*count);
        self.sum = self.sum.map(|s| s - sum);
        self.zero_count = self.zero_count.saturating_sub(*zero);
        subtract_exp_buckets(&mut self.positive, positive);
        subtract_exp_buckets(&mut self.negative, negative);
    }
}

impl Point for SummaryDataPoint {
    fn value(&self) -> Option<Value> {
        Some(Value::Summary {
            count: self.count,
            sum: self.sum,
        })
    }
    fn subtract(&mut self, reference: &Value) {
        if let Value::Summary { count, sum } = reference {
            self.count = self.count.saturating_sub(*count);
            self.sum -= sum;
        }
    }
}

/// What one series remembers.
struct Series {
    /// The start time its points get.
    start: u64,
    /// The last point's value (as received), for reset detection.
    prev: Value,
    /// With `subtract_initial_point`: what is taken off every point (`None` after a reset: the
    /// counts since the restart are sent whole).
    reference: Option<Value>,
    /// When it last had a point, for `gc_interval`.
    seen: Instant,
}

struct State {
    series: LruCache<String, Series>,
    last_gc: Instant,
}

/// The strategy and the per-series state, without the pipeline around them.
struct Adjuster {
    strategy: Strategy,
    regex: Option<regex::Regex>,
    gc_interval: Duration,
    /// `start_time_metric`'s fallback: when this processor was created, in Unix nanoseconds.
    created: u64,
    state: Mutex<State>,
    evicted: metrics::Counter,
}

impl Adjuster {
    fn new(
        cfg: &MetricStartTimeConfig,
        evicted: metrics::Counter,
        limit: usize,
    ) -> Result<Adjuster, ConfigError> {
        Ok(Adjuster {
            strategy: cfg.strategy,
            regex: cfg.regex()?,
            gc_interval: cfg.gc_interval,
            created: now_nanos(),
            state: Mutex::new(State {
                series: LruCache::new(NonZeroUsize::new(limit).unwrap_or(NonZeroUsize::MIN)),
                last_gc: Instant::now(),
            }),
            evicted,
        })
    }

    /// `start_time_metric`: the first matching gauge or sum's first point, in Unix nanoseconds.
    fn start_time_metric(&self, rms: &[ResourceMetrics]) -> Option<u64> {
        let wanted = |name: &str| match &self.regex {
            Some(r) => r.is_match(name),
            None => name == START_TIME_METRIC,
        };
        let m = rms
            .iter()
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .find(|m| wanted(&m.name))?;
        let p = match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.first()?,
            Some(metric::Data::Sum(s)) => s.data_points.first()?,
            _ => return None,
        };
        let secs = match p.value? {
            number_data_point::Value::AsDouble(d) => d,
            number_data_point::Value::AsInt(i) => i as f64,
        };
        (secs.is_finite() && secs > 0.0).then_some((secs * 1e9) as u64)
    }

    fn process(&self, rms: &mut Vec<ResourceMetrics>, now: Instant) {
        let base_start = match self.strategy {
            Strategy::StartTimeMetric => self.start_time_metric(rms).or(Some(self.created)),
            _ => None,
        };
        let mut st = lock(&self.state);
        if now.duration_since(st.last_gc) >= self.gc_interval {
            while st
                .series
                .peek_lru()
                .is_some_and(|(_, s)| now.duration_since(s.seen) >= self.gc_interval)
            {
                st.series.pop_lru();
            }
            st.last_gc = now;
        }
        for rm in rms.iter_mut() {
            let resource = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            for sm in rm.scope_metrics.iter_mut() {
                let scope = sm.scope.as_ref();
                for m in sm.metrics.iter_mut() {
                    let key = metric_key(resource, scope, m);
                    let cumulative = AggregationTemporality::Cumulative as i32;
                    let st = &mut *st;
                    match &mut m.data {
                        Some(metric::Data::Sum(s)) if s.aggregation_temporality == cumulative => {
                            let monotonic = s.is_monotonic;
                            self.adjust(st, now, &key, &mut s.data_points, monotonic, base_start);
                        }
                        Some(metric::Data::Histogram(h))
                            if h.aggregation_temporality == cumulative =>
                        {
                            self.adjust(st, now, &key, &mut h.data_points, true, base_start);
                        }
                        Some(metric::Data::ExponentialHistogram(h))
                            if h.aggregation_temporality == cumulative =>
                        {
                            self.adjust(st, now, &key, &mut h.data_points, true, base_start);
                        }
                        Some(metric::Data::Summary(s)) => {
                            self.adjust(st, now, &key, &mut s.data_points, true, base_start);
                        }
                        _ => {}
                    }
                }
                // Only `subtract_initial_point` drops points; a metric left without any goes.
                sm.metrics
                    .retain(|m| crate::points::count(m) > 0 || m.data.is_none());
            }
            rm.scope_metrics.retain(|sm| !sm.metrics.is_empty());
        }
        rms.retain(|rm| !rm.scope_metrics.is_empty());
    }

    /// Adjusts the points of one metric, dropping those `subtract_initial_point` keeps back.
    fn adjust<P: Point>(
        &self,
        st: &mut State,
        now: Instant,
        metric_key: &str,
        pts: &mut Vec<P>,
        monotonic: bool,
        base_start: Option<u64>,
    ) {
        let no_value = DataPointFlags::NoRecordedValueMask as u32;
        pts.retain_mut(|p| {
            // A point that has a start time needs nothing from us.
            if *p.start_mut() != 0 {
                return true;
            }
            let Some(value) = p.value() else {
                return true;
            };
            let key = stream_key(metric_key, p.attributes());
            let time = p.time();
            let Some(series) = st.series.get_mut(&key) else {
                let (start, keep, reference) = match self.strategy {
                    Strategy::TrueResetPoint => (time, true, None),
                    Strategy::SubtractInitialPoint => (time, false, Some(value.clone())),
                    Strategy::StartTimeMetric => (base_start.unwrap_or(time), true, None),
                };
                *p.start_mut() = start;
                let fresh = Series {
                    start,
                    prev: value,
                    reference,
                    seen: now,
                };
                if st.series.push(key, fresh).is_some() {
                    self.evicted.increment(1);
                }
                return keep;
            };
            series.seen = now;
            if p.flags() & no_value != 0 {
                *p.start_mut() = series.start;
                return true;
            }
            if value.is_reset(&series.prev, monotonic) {
                series.start = time.saturating_sub(RESET_OFFSET_NANOS);
                series.reference = None;
            } else if let Some(r) = &series.reference {
                p.subtract(r);
            }
            *p.start_mut() = series.start;
            series.prev = value;
            true
        });
    }
}

/// A running `metricstarttime` processor.
pub struct MetricStartTime {
    inner: Adjuster,
    next: Arc<dyn Consumer>,
    obs: ProcessorObs,
}

#[async_trait]
impl Component for MetricStartTime {}

#[async_trait]
impl Consumer for MetricStartTime {
    async fn consume(&self, mut data: Telemetry) -> Result<(), ConsumeError> {
        self.obs.incoming(data.item_count());
        if let Telemetry::Metrics(rms) = &mut data {
            self.inner.process(rms, Instant::now());
            if rms.is_empty() {
                return Ok(());
            }
        }
        self.obs.outgoing(data.item_count());
        self.next.consume(data).await
    }
}

#[cfg(test)]
#[path = "metricstarttime_tests.rs"]
mod tests;
