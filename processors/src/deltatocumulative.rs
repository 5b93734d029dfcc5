//! `deltatocumulative` (`delta_to_cumulative`): otelcol-contrib's processor that turns delta sums,
//! histograms and exponential histograms into cumulative ones by adding each stream's points in
//! memory, for backends that only take cumulative data (Prometheus remote write). A stream is the
//! resource, scope, metric identity and point attributes; the first point of a stream starts it,
//! and every later point is added to the running total and sent with the stream's start time.
//! Cumulative metrics, gauges and summaries pass unchanged.
//!
//! - A point that starts before the stream did, or is not newer than its last point, is dropped
//!   (`otelcol_deltatocumulative_datapoints{error="delta.ErrOlderStart"|"delta.ErrOutOfOrder"}`), as otelcol does.
//! - A histogram whose bounds changed starts its total again from that point. Exponential
//!   histograms of different scales are added at the coarser scale; zero buckets are added with
//!   the wider threshold (otelcol moves buckets below it into the zero bucket; vigil does not).
//! - Bounded: at most `max_streams` streams. otelcol's default is unlimited; vigil's is
//!   [`DEFAULT_MAX_STREAMS`] when the key is unset. A point of a new stream over the limit is
//!   dropped and counted (`otelcol_deltatocumulative_datapoints{error="limit"}`). Streams with no
//!   point for `max_stale` (default 5m) are forgotten, checked every `max_stale` (at most 1 min).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_core::config::duration;
use vigil_core::factory::{self, DynProcessorFactory, FactoryBase, ProcessorFactory};
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::otlp::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric, number_data_point, AggregationTemporality,
    ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
};
use vigil_core::{
    lock, Component, ComponentId, ConfigError, ConsumeError, Consumer, Processor, ProcessorObs,
    Settings, Signal, Stability, Tasks, Telemetry,
};

use crate::points;

/// vigil's bound on the streams one processor tracks when `max_streams` is left at otelcol's
/// default (unlimited).
pub const DEFAULT_MAX_STREAMS: usize = 100_000;

/// The `deltatocumulative` processor config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeltaToCumulativeConfig {
    #[serde(with = "duration")]
    pub max_stale: Duration,
    /// otelcol's default, the largest int, means "no limit" there; vigil then tracks at most
    /// [`DEFAULT_MAX_STREAMS`].
    pub max_streams: i64,
}

impl Default for DeltaToCumulativeConfig {
    fn default() -> Self {
        DeltaToCumulativeConfig {
            max_stale: Duration::from_secs(300),
            max_streams: i64::MAX,
        }
    }
}

impl DeltaToCumulativeConfig {
    fn limit(&self) -> usize {
        if self.max_streams == i64::MAX {
            DEFAULT_MAX_STREAMS
        } else {
            usize::try_from(self.max_streams).unwrap_or(0)
        }
    }
}

struct Factory;

/// The `deltatocumulative` processor factory (`delta_to_cumulative` is accepted too).
pub fn factory() -> Arc<dyn DynProcessorFactory> {
    factory::processor(Factory)
}

impl FactoryBase for Factory {
    type Config = DeltaToCumulativeConfig;

    fn type_name(&self) -> &'static str {
        "deltatocumulative"
    }

    fn validate(
        &self,
        _id: &ComponentId,
        cfg: &DeltaToCumulativeConfig,
    ) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        if cfg.max_stale.is_zero() {
            errors.push(ConfigError::at(
                "max_stale",
                "max_stale must be a positive duration (got 0s)",
            ));
        }
        if cfg.max_streams < 0 {
            errors.push(ConfigError::at(
                "max_streams",
                format!(
                    "max_streams must be a positive number (got {})",
                    cfg.max_streams
                ),
            ));
        }
        ConfigError::join(errors).map_or(Ok(()), Err)
    }
}

impl ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[(Signal::Metrics, Stability::Alpha)]
    }

    fn create(
        &self,
        set: Settings,
        cfg: DeltaToCumulativeConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let p = set.id.to_string();
        let limit = cfg.limit();
        metrics::gauge!("otelcol_deltatocumulative_streams_limit", "processor" => p.clone())
            .set(limit as f64);
        metrics::gauge!("otelcol_deltatocumulative_streams_max_stale", "processor" => p.clone())
            .set(cfg.max_stale.as_secs_f64());
        Ok(Arc::new(DeltaToCumulative {
            inner: Arc::new(Inner::new(limit, Telem::new(&p))),
            max_stale: cfg.max_stale,
            next,
            obs: set.processor_obs(signal),
            tasks: set.tasks,
        }))
    }
}

/// otelcol's own metrics of this processor.
pub(crate) struct Telem {
    ok: metrics::Counter,
    limit: metrics::Counter,
    older_start: metrics::Counter,
    out_of_order: metrics::Counter,
    tracked: metrics::Gauge,
}

impl Telem {
    pub(crate) fn new(p: &str) -> Telem {
        let dps = |e: &'static str| metrics::counter!("otelcol_deltatocumulative_datapoints", "processor" => p.to_string(), "error" => e);
        Telem {
            ok: metrics::counter!("otelcol_deltatocumulative_datapoints", "processor" => p.to_string()),
            limit: dps("limit"),
            older_start: dps("delta.ErrOlderStart"),
            out_of_order: dps("delta.ErrOutOfOrder"),
            tracked: metrics::gauge!("otelcol_deltatocumulative_streams_tracked", "processor" => p.to_string()),
        }
    }
}

/// A stream's running total.
#[derive(Clone)]
enum Total {
    Int(i64),
    Double(f64),
    Histogram(Box<HistogramDataPoint>),
    Exponential(Box<ExponentialHistogramDataPoint>),
}

struct Stream {
    start: u64,
    time: u64,
    seen: Instant,
    total: Total,
}

pub(crate) struct Inner {
    limit: usize,
    streams: Mutex<HashMap<String, Stream>>,
    telem: Telem,
}

impl Inner {
    pub(crate) fn new(limit: usize, telem: Telem) -> Inner {
        Inner {
            limit,
            streams: Mutex::new(HashMap::new()),
            telem,
        }
    }

    /// Adds one point to its stream (`base` and the point's `attrs`): the stream's start and
    /// running total when the point goes on, `None` when it is dropped (and counted).
    fn add(
        &self,
        base: &str,
        attrs: &[KeyValue],
        start: u64,
        time: u64,
        value: Total,
        now: Instant,
    ) -> Option<(u64, Total)> {
        let key = points::stream_key(base, attrs);
        let mut streams = lock(&self.streams);
        let Some(s) = streams.get_mut(&key) else {
            if streams.len() >= self.limit {
                self.telem.limit.increment(1);
                return None;
            }
            self.telem.ok.increment(1);
            streams.insert(
                key,
                Stream {
                    start,
                    time,
                    seen: now,
                    total: value.clone(),
                },
            );
            return Some((start, value));
        };
        if start < s.start {
            self.telem.older_start.increment(1);
            return None;
        }
        if time <= s.time {
            self.telem.out_of_order.increment(1);
            return None;
        }
        self.telem.ok.increment(1);
        s.time = time;
        s.seen = now;
        match (&mut s.total, value) {
            (Total::Int(a), Total::Int(b)) => *a = a.wrapping_add(b),
            (Total::Double(a), Total::Double(b)) => *a += b,
            (Total::Int(a), Total::Double(b)) => s.total = Total::Double(*a as f64 + b),
            (Total::Double(a), Total::Int(b)) => *a += b as f64,
            (Total::Histogram(a), Total::Histogram(b)) => {
                if a.explicit_bounds != b.explicit_bounds
                    || a.bucket_counts.len() != b.bucket_counts.len()
                {
                    // A new bucket layout cannot be added to the old one: the total starts again.
                    s.start = start;
                    *a = b;
                } else {
                    add_histogram(a, &b);
                }
            }
            (Total::Exponential(a), Total::Exponential(b)) => add_exponential(a, *b),
            (t, v) => *t = v,
        }
        Some((s.start, s.total.clone()))
    }

    /// Forgets streams with no point since `now - max_stale`.
    pub(crate) fn remove_stale(&self, max_stale: Duration, now: Instant) {
        let mut streams = lock(&self.streams);
        streams.retain(|_, s| now.saturating_duration_since(s.seen) < max_stale);
        self.telem.tracked.set(streams.len() as f64);
    }

    pub(crate) fn process(&self, rms: &mut Vec<ResourceMetrics>, now: Instant) {
        for rm in rms.iter_mut() {
            let resource = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            for sm in rm.scope_metrics.iter_mut() {
                let scope = sm.scope.as_ref();
                sm.metrics
                    .retain_mut(|m| self.metric(points::metric_key(resource, scope, m), m, now));
            }
            rm.scope_metrics.retain(|sm| !sm.metrics.is_empty());
        }
        rms.retain(|rm| !rm.scope_metrics.is_empty());
        self.telem.tracked.set(lock(&self.streams).len() as f64);
    }

    /// Accumulates one delta metric in place; `false` when none of its points is left.
    fn metric(&self, base: String, m: &mut Metric, now: Instant) -> bool {
        if points::temporality(m) != Some(AggregationTemporality::Delta) {
            return true;
        }
        let cumulative = AggregationTemporality::Cumulative as i32;
        match &mut m.data {
            Some(metric::Data::Sum(s)) => {
                s.aggregation_temporality = cumulative;
                self.accumulate(&base, &mut s.data_points, now, number, |p, total| {
                    p.value = Some(match total {
                        Total::Int(i) => number_data_point::Value::AsInt(i),
                        Total::Double(d) => number_data_point::Value::AsDouble(d),
                        _ => return false,
                    });
                    true
                })
            }
            Some(metric::Data::Histogram(h)) => {
                h.aggregation_temporality = cumulative;
                let value = |p: &HistogramDataPoint| Some(Total::Histogram(Box::new(p.clone())));
                self.accumulate(&base, &mut h.data_points, now, value, |p, total| {
                    let Total::Histogram(t) = total else {
                        return false;
                    };
                    p.count = t.count;
                    p.sum = t.sum;
                    p.min = t.min;
                    p.max = t.max;
                    p.bucket_counts = t.bucket_counts;
                    p.explicit_bounds = t.explicit_bounds;
                    true
                })
            }
            Some(metric::Data::ExponentialHistogram(h)) => {
                h.aggregation_temporality = cumulative;
                let value = |p: &ExponentialHistogramDataPoint| {
                    Some(Total::Exponential(Box::new(p.clone())))
                };
                self.accumulate(&base, &mut h.data_points, now, value, |p, total| {
                    let Total::Exponential(t) = total else {
                        return false;
                    };
                    *p = ExponentialHistogramDataPoint {
                        attributes: std::mem::take(&mut p.attributes),
                        exemplars: std::mem::take(&mut p.exemplars),
                        time_unix_nano: p.time_unix_nano,
                        start_time_unix_nano: p.start_time_unix_nano,
                        ..*t
                    };
                    true
                })
            }
            _ => true,
        }
    }

    /// Accumulates one metric's points in place, whatever their type: `value` reads a point's
    /// delta (`None` drops it), and `set` writes its stream's running total into it once its
    /// start is the stream's (`false` drops it). `false` when no point is left.
    fn accumulate<P: Point>(
        &self,
        base: &str,
        pts: &mut Vec<P>,
        now: Instant,
        value: impl Fn(&P) -> Option<Total>,
        set: impl Fn(&mut P, Total) -> bool,
    ) -> bool {
        pts.retain_mut(|p| {
            let Some(value) = value(p) else {
                return false;
            };
            let (start, time) = p.times();
            let Some((start, total)) = self.add(base, p.attributes(), start, time, value, now)
            else {
                return false;
            };
            p.set_start(start);
            set(p, total)
        });
        !pts.is_empty()
    }
}

/// A number point's delta.
fn number(p: &NumberDataPoint) -> Option<Total> {
    match p.value? {
        number_data_point::Value::AsInt(i) => Some(Total::Int(i)),
        number_data_point::Value::AsDouble(d) => Some(Total::Double(d)),
    }
}

/// What [`Inner::accumulate`] reads and writes of a point of any type with a start time.
trait Point {
    fn attributes(&self) -> &[KeyValue];
    /// Start and time.
    fn times(&self) -> (u64, u64);
    fn set_start(&mut self, start: u64);
}

macro_rules! point {
    ($($t:ty),*) => {$(
        impl Point for $t {
            fn attributes(&self) -> &[KeyValue] {
                &self.attributes
            }
            fn times(&self) -> (u64, u64) {
                (self.start_time_unix_nano, self.time_unix_nano)
            }
            fn set_start(&mut self, start: u64) {
                self.start_time_unix_nano = start;
            }
        }
    )*};
}
point!(
    NumberDataPoint,
    HistogramDataPoint,
    ExponentialHistogramDataPoint
);

/// Adds a point's `[sum, min, max]` into a total's: a sum missing on one side is the other's; a
/// min or max is known only when both sides know it.
fn add_stats([sum, min, max]: [&mut Option<f64>; 3], [b_sum, b_min, b_max]: [Option<f64>; 3]) {
    *sum = match (*sum, b_sum) {
        (Some(x), Some(y)) => Some(x + y),
        (x, y) => x.or(y),
    };
    *min = min.zip(b_min).map(|(x, y)| x.min(y));
    *max = max.zip(b_max).map(|(x, y)| x.max(y));
}

fn add_histogram(a: &mut HistogramDataPoint, b: &HistogramDataPoint) {
    a.count += b.count;
    add_stats([&mut a.sum, &mut a.min, &mut a.max], [b.sum, b.min, b.max]);
    for (x, y) in a.bucket_counts.iter_mut().zip(&b.bucket_counts) {
        *x += y;
    }
}

/// Buckets at a scale `by` steps coarser: bucket `i` becomes `i >> by` (each step merges pairs).
fn downscale(b: &mut Buckets, by: i32) {
    if by <= 0 {
        return;
    }
    if b.bucket_counts.is_empty() {
        b.offset >>= by;
        return;
    }
    let offset = b.offset >> by;
    let mut counts: Vec<u64> = Vec::new();
    for (i, c) in b.bucket_counts.iter().enumerate() {
        let at = ((b.offset + i as i32) >> by) - offset;
        let at = at as usize;
        if counts.len() <= at {
            counts.resize(at + 1, 0);
        }
        counts[at] += c;
    }
    b.offset = offset;
    b.bucket_counts = counts;
}

fn add_buckets(a: &mut Buckets, b: &Buckets) {
    if b.bucket_counts.is_empty() {
        return;
    }
    if a.bucket_counts.is_empty() {
        *a = b.clone();
        return;
    }
    let lo = a.offset.min(b.offset);
    let hi = (a.offset + a.bucket_counts.len() as i32).max(b.offset + b.bucket_counts.len() as i32);
    let mut counts = vec![0u64; (hi - lo) as usize];
    for (bk, off) in [(&a.bucket_counts, a.offset), (&b.bucket_counts, b.offset)] {
        for (i, c) in bk.iter().enumerate() {
            counts[(off - lo) as usize + i] += c;
        }
    }
    a.offset = lo;
    a.bucket_counts = counts;
}

fn add_exponential(a: &mut ExponentialHistogramDataPoint, mut b: ExponentialHistogramDataPoint) {
    let scale = a.scale.min(b.scale);
    for p in [&mut *a, &mut b] {
        let by = p.scale - scale;
        for side in [&mut p.positive, &mut p.negative].into_iter().flatten() {
            downscale(side, by);
        }
        p.scale = scale;
    }
    for (to, from) in [
        (&mut a.positive, &b.positive),
        (&mut a.negative, &b.negative),
    ] {
        if let Some(from) = from {
            add_buckets(to.get_or_insert_with(Default::default), from);
        }
    }
    a.count += b.count;
    a.zero_count += b.zero_count;
    a.zero_threshold = a.zero_threshold.max(b.zero_threshold);
    add_stats([&mut a.sum, &mut a.min, &mut a.max], [b.sum, b.min, b.max]);
}

/// A running `deltatocumulative` processor.
pub struct DeltaToCumulative {
    inner: Arc<Inner>,
    max_stale: Duration,
    next: Arc<dyn Consumer>,
    obs: ProcessorObs,
    tasks: Tasks,
}

#[async_trait]
impl Component for DeltaToCumulative {
    async fn start(&self, _host: &vigil_core::Host) -> anyhow::Result<()> {
        let (inner, max_stale) = (Arc::clone(&self.inner), self.max_stale);
        self.tasks
            .spawn_ticker(max_stale.min(Duration::from_secs(60)), move || {
                inner.remove_stale(max_stale, Instant::now());
                std::future::ready(())
            });
        Ok(())
    }

    fn tasks(&self) -> Option<&Tasks> {
        Some(&self.tasks)
    }
}

#[async_trait]
impl Consumer for DeltaToCumulative {
    async fn consume(&self, mut data: Telemetry) -> Result<(), ConsumeError> {
        self.obs.incoming(data.item_count());
        if let Telemetry::Metrics(rms) = &mut data {
            self.inner.process(rms, Instant::now());
        }
        self.obs.outgoing(data.item_count());
        self.next.consume(data).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vigil_core::attrs::kv_str;
    use vigil_core::otlp::metrics::v1::{ExponentialHistogram, Histogram, ScopeMetrics, Sum};
    use vigil_core::otlp::resource::v1::Resource;

    fn inner(limit: usize) -> Inner {
        Inner::new(limit, Telem::new("deltatocumulative/test"))
    }

    fn sum(points: Vec<(u64, u64, i64, &str)>) -> Vec<ResourceMetrics> {
        let m = Metric {
            name: "http.server.requests".into(),
            unit: "{request}".into(),
            data: Some(metric::Data::Sum(Sum {
                aggregation_temporality: AggregationTemporality::Delta as i32,
                is_monotonic: true,
                data_points: points
                    .into_iter()
                    .map(|(start, time, v, route)| NumberDataPoint {
                        start_time_unix_nano: start,
                        time_unix_nano: time,
                        value: Some(number_data_point::Value::AsInt(v)),
                        attributes: vec![kv_str("http.route", route)],
                        ..Default::default()
                    })
                    .collect(),
            })),
            ..Default::default()
        };
        wrap(m)
    }

    fn wrap(m: Metric) -> Vec<ResourceMetrics> {
        vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "checkout")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![m],
                ..Default::default()
            }],
            ..Default::default()
        }]
    }

    /// (start, time, value) of every number point out.
    fn out(rms: &[ResourceMetrics]) -> Vec<(u64, u64, i64)> {
        let mut v = Vec::new();
        for m in rms
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
        {
            let Some(metric::Data::Sum(s)) = &m.data else {
                continue;
            };
            assert_eq!(
                s.aggregation_temporality,
                AggregationTemporality::Cumulative as i32
            );
            for p in &s.data_points {
                let Some(number_data_point::Value::AsInt(i)) = p.value else {
                    panic!("int")
                };
                v.push((p.start_time_unix_nano, p.time_unix_nano, i));
            }
        }
        v
    }

    #[test]
    fn deltas_add_up_with_the_first_start() {
        let d = inner(10);
        let now = Instant::now();
        let mut total = Vec::new();
        for (start, time, v) in [(100, 200, 3), (200, 300, 4), (300, 400, 0), (400, 500, 10)] {
            let mut b = sum(vec![(start, time, v, "/cart")]);
            d.process(&mut b, now);
            total.extend(out(&b));
        }
        assert_eq!(
            total,
            [(100, 200, 3), (100, 300, 7), (100, 400, 7), (100, 500, 17)]
        );
    }

    #[test]
    fn out_of_order_and_older_start_points_are_dropped() {
        let d = inner(10);
        let now = Instant::now();
        let mut b = sum(vec![(100, 200, 3, "/a")]);
        d.process(&mut b, now);
        let mut b = sum(vec![
            (100, 200, 5, "/a"),
            (50, 250, 5, "/a"),
            (200, 300, 1, "/a"),
        ]);
        d.process(&mut b, now);
        assert_eq!(out(&b), [(100, 300, 4)]);
    }

    #[test]
    fn streams_over_the_limit_are_refused_and_stale_ones_forgotten() {
        let rec = metrics_util::debugging::DebuggingRecorder::new();
        let snap = rec.snapshotter();
        let _g = metrics::set_default_local_recorder(&rec);
        let d = inner(2);
        let t0 = Instant::now();
        let mut b = sum(vec![(1, 2, 1, "/a"), (1, 2, 1, "/b"), (1, 2, 1, "/c")]);
        d.process(&mut b, t0);
        assert_eq!(out(&b).len(), 2, "the third stream is over the limit");
        let refused = vigil_core::testing::counter(
            &snap,
            "otelcol_deltatocumulative_datapoints",
            &[("error", "limit")],
        );
        assert_eq!(refused, 1, "the refused point is counted");
        assert_eq!(lock(&d.streams).len(), 2);
        d.remove_stale(Duration::from_secs(300), t0 + Duration::from_secs(301));
        assert_eq!(lock(&d.streams).len(), 0);
        let mut b = sum(vec![(1, 2, 1, "/c")]);
        d.process(&mut b, t0 + Duration::from_secs(302));
        assert_eq!(
            out(&b),
            [(1, 2, 1)],
            "room again once stale streams are gone"
        );
    }

    #[test]
    fn cumulative_and_gauges_pass_unchanged() {
        let d = inner(10);
        let mut b = sum(vec![(1, 2, 5, "/a")]);
        if let Some(metric::Data::Sum(s)) = &mut b[0].scope_metrics[0].metrics[0].data {
            s.aggregation_temporality = AggregationTemporality::Cumulative as i32;
        }
        let before = b.clone();
        d.process(&mut b, Instant::now());
        assert_eq!(b, before);
        assert!(lock(&d.streams).is_empty());
    }

    #[test]
    fn sums_add_and_min_max_need_both_sides() {
        let (mut sum, mut min, mut max) = (Some(1.0), Some(2.0), Some(5.0));
        add_stats(
            [&mut sum, &mut min, &mut max],
            [Some(3.0), Some(1.0), Some(4.0)],
        );
        assert_eq!((sum, min, max), (Some(4.0), Some(1.0), Some(5.0)));
        add_stats([&mut sum, &mut min, &mut max], [None, None, Some(9.0)]);
        assert_eq!((sum, min, max), (Some(4.0), None, Some(9.0)));
        let (mut sum, mut min, mut max) = (None, None, None);
        add_stats(
            [&mut sum, &mut min, &mut max],
            [Some(2.5), Some(1.0), Some(1.0)],
        );
        assert_eq!((sum, min, max), (Some(2.5), None, None));
    }

    #[test]
    fn histograms_add_bucket_by_bucket() {
        let d = inner(10);
        let h = |start, time, counts: Vec<u64>| {
            wrap(Metric {
                name: "http.server.duration".into(),
                data: Some(metric::Data::Histogram(Histogram {
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                    data_points: vec![HistogramDataPoint {
                        start_time_unix_nano: start,
                        time_unix_nano: time,
                        count: counts.iter().sum(),
                        sum: Some(counts.iter().sum::<u64>() as f64 * 10.0),
                        explicit_bounds: vec![5.0, 50.0],
                        bucket_counts: counts,
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            })
        };
        let now = Instant::now();
        d.process(&mut h(1, 2, vec![1, 2, 3]), now);
        let mut b = h(2, 3, vec![0, 1, 1]);
        d.process(&mut b, now);
        let Some(metric::Data::Histogram(out)) = &b[0].scope_metrics[0].metrics[0].data else {
            panic!("histogram")
        };
        let p = &out.data_points[0];
        assert_eq!(
            (
                p.start_time_unix_nano,
                p.count,
                p.sum,
                p.bucket_counts.clone()
            ),
            (1, 8, Some(80.0), vec![1, 3, 4])
        );
    }

    #[test]
    fn exponential_histograms_of_different_scales_add_at_the_coarser() {
        let d = inner(10);
        let e = |start, time, scale, offset, counts: Vec<u64>| {
            wrap(Metric {
                name: "rpc.duration".into(),
                data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                    data_points: vec![ExponentialHistogramDataPoint {
                        start_time_unix_nano: start,
                        time_unix_nano: time,
                        scale,
                        count: counts.iter().sum(),
                        positive: Some(Buckets {
                            offset,
                            bucket_counts: counts,
                        }),
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            })
        };
        let now = Instant::now();
        // Scale 1 buckets 2..=5 are scale 0 buckets 1, 1, 2, 2.
        d.process(&mut e(1, 2, 1, 2, vec![1, 1, 1, 1]), now);
        let mut b = e(2, 3, 0, 0, vec![5, 0, 0]);
        d.process(&mut b, now);
        let Some(metric::Data::ExponentialHistogram(out)) = &b[0].scope_metrics[0].metrics[0].data
        else {
            panic!("exponential histogram")
        };
        let p = &out.data_points[0];
        assert_eq!(p.scale, 0);
        assert_eq!(p.count, 9);
        let pos = p.positive.as_ref().expect("positive");
        assert_eq!((pos.offset, pos.bucket_counts.clone()), (0, vec![5, 2, 2]));
    }

    #[test]
    fn config_defaults_and_errors() {
        let id = ComponentId::new("deltatocumulative", Some("x"));
        let f = factory();
        f.validate(&id, &json!(null)).expect("defaults");
        let d = DeltaToCumulativeConfig::default();
        assert_eq!(d.limit(), DEFAULT_MAX_STREAMS);
        assert_eq!(d.max_stale, Duration::from_secs(300));
        crate::testdata::check_all("deltatocumulative", 2, |v| {
            f.validate(&id, v).map_err(|e| e.to_string())
        });
    }
}
