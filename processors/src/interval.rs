//! `interval`: otelcol-contrib's processor that holds metrics and sends each stream's latest point
//! once per `interval` (default 60s), to lower the rate at which a backend receives points.
//! Cumulative monotonic sums, cumulative histograms and cumulative exponential histograms are
//! held; so are gauges and summaries unless `pass_through` says otherwise. Delta metrics and
//! non-monotonic sums pass at once, unchanged. A stream's later point replaces an earlier one (an
//! older point is ignored); after each send the state is empty, so a quiet stream sends nothing.
//!
//! Bounded: at most [`MAX_STREAMS`] held points per processor (otelcol has no limit). A point of a
//! new stream beyond that passes at once rather than being lost, counted in
//! `vigil_interval_streams_refused{processor}`. What is held when vigil stops is sent within the
//! shutdown deadline.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_core::config::duration;
use vigil_core::factory::{self, DynProcessorFactory, FactoryBase, ProcessorFactory};
use vigil_core::otlp::common::v1::InstrumentationScope;
use vigil_core::otlp::metrics::v1::{
    metric, AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, SummaryDataPoint,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::{
    lock, Component, ComponentId, ConfigError, ConsumeError, Consumer, Processor, ProcessorObs,
    Settings, Signal, Stability, Tasks, Telemetry,
};

use crate::points;

/// vigil's bound on the points one processor holds between sends.
pub const MAX_STREAMS: usize = 100_000;

/// `pass_through`: which types are sent at once instead of held.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassThrough {
    pub gauge: bool,
    pub summary: bool,
}

/// The `interval` processor config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntervalConfig {
    #[serde(with = "duration")]
    pub interval: Duration,
    pub pass_through: PassThrough,
}

impl Default for IntervalConfig {
    fn default() -> Self {
        IntervalConfig {
            interval: Duration::from_secs(60),
            pass_through: PassThrough::default(),
        }
    }
}

struct Factory;

/// The `interval` processor factory.
pub fn factory() -> Arc<dyn DynProcessorFactory> {
    factory::processor(Factory)
}

impl FactoryBase for Factory {
    type Config = IntervalConfig;

    fn type_name(&self) -> &'static str {
        "interval"
    }

    fn validate(&self, _id: &ComponentId, cfg: &IntervalConfig) -> Result<(), ConfigError> {
        if cfg.interval < Duration::from_secs(1) {
            return Err(ConfigError::at(
                "interval",
                format!(
                    "interval must be at least 1s (got {})",
                    vigil_core::config::format_duration(cfg.interval)
                ),
            ));
        }
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
        cfg: IntervalConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        Ok(Arc::new(Interval {
            inner: Arc::new(Inner {
                pass: cfg.pass_through,
                held: Mutex::new(Held::default()),
                limit: MAX_STREAMS,
                refused: metrics::counter!(
                    "vigil_interval_streams_refused",
                    "processor" => set.id.to_string()
                ),
                next,
                obs: set.processor_obs(signal),
            }),
            interval: cfg.interval,
            tasks: set.tasks,
        }))
    }
}

/// A held point, whatever its type.
#[derive(Clone)]
enum Point {
    Number(NumberDataPoint),
    Histogram(HistogramDataPoint),
    Exponential(ExponentialHistogramDataPoint),
    Summary(SummaryDataPoint),
}

impl Point {
    fn time(&self) -> u64 {
        match self {
            Point::Number(p) => p.time_unix_nano,
            Point::Histogram(p) => p.time_unix_nano,
            Point::Exponential(p) => p.time_unix_nano,
            Point::Summary(p) => p.time_unix_nano,
        }
    }
}

/// One metric's held streams, with what is needed to send them again.
struct HeldMetric {
    resource_key: String,
    resource: Option<Resource>,
    resource_schema: String,
    scope_key: String,
    scope: Option<InstrumentationScope>,
    scope_schema: String,
    /// The metric without its points.
    template: Metric,
    points: HashMap<String, Point>,
    /// Stream keys in arrival order, so that sends are in a stable order.
    order: Vec<String>,
}

#[derive(Default)]
struct Held {
    metrics: HashMap<String, HeldMetric>,
    order: Vec<String>,
    streams: usize,
}

struct Inner {
    pass: PassThrough,
    held: Mutex<Held>,
    limit: usize,
    refused: metrics::Counter,
    next: Arc<dyn Consumer>,
    obs: ProcessorObs,
}

impl Inner {
    fn held_type(&self, m: &Metric) -> bool {
        match &m.data {
            Some(metric::Data::Sum(s)) => {
                s.is_monotonic
                    && s.aggregation_temporality == AggregationTemporality::Cumulative as i32
            }
            Some(metric::Data::Histogram(_)) | Some(metric::Data::ExponentialHistogram(_)) => {
                points::temporality(m) == Some(AggregationTemporality::Cumulative)
            }
            Some(metric::Data::Gauge(_)) => !self.pass.gauge,
            Some(metric::Data::Summary(_)) => !self.pass.summary,
            None => false,
        }
    }

    /// Takes the points to hold out of `rms`; what is left passes at once.
    fn take(&self, rms: &mut Vec<ResourceMetrics>) {
        let mut held = lock(&self.held);
        for rm in rms.iter_mut() {
            let mut resource_key = String::new();
            crate::cumulativetodelta::attrs_key(
                &mut resource_key,
                rm.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]),
            );
            for sm in rm.scope_metrics.iter_mut() {
                let scope_key = points::metric_key(&[], sm.scope.as_ref(), &Metric::default());
                let resource = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
                let mut kept = Vec::new();
                for mut m in std::mem::take(&mut sm.metrics) {
                    if !self.held_type(&m) {
                        kept.push(m);
                        continue;
                    }
                    let mkey = points::metric_key(resource, sm.scope.as_ref(), &m);
                    let pts = take_points(&mut m);
                    let mut refused = Vec::new();
                    for (skey, p) in pts {
                        let Held {
                            metrics,
                            order,
                            streams,
                        } = &mut *held;
                        let entry = metrics.entry(mkey.clone()).or_insert_with(|| {
                            order.push(mkey.clone());
                            HeldMetric {
                                resource_key: resource_key.clone(),
                                resource: rm.resource.clone(),
                                resource_schema: rm.schema_url.clone(),
                                scope_key: scope_key.clone(),
                                scope: sm.scope.clone(),
                                scope_schema: sm.schema_url.clone(),
                                template: Metric {
                                    data: crate::metricstransform::empty_like(&m.data),
                                    ..m.clone()
                                },
                                points: HashMap::new(),
                                order: Vec::new(),
                            }
                        });
                        match entry.points.get_mut(&skey) {
                            Some(old) => {
                                if p.time() >= old.time() {
                                    *old = p;
                                }
                            }
                            None if *streams >= self.limit => {
                                self.refused.increment(1);
                                refused.push(p);
                            }
                            None => {
                                *streams += 1;
                                entry.order.push(skey.clone());
                                entry.points.insert(skey, p);
                            }
                        }
                    }
                    if !refused.is_empty() {
                        put_points(&mut m, refused);
                        kept.push(m);
                    }
                }
                sm.metrics = kept;
            }
            rm.scope_metrics.retain(|sm| !sm.metrics.is_empty());
        }
        rms.retain(|rm| !rm.scope_metrics.is_empty());
    }

    /// Everything held, as batches grouped by resource and scope again; the state is emptied.
    fn drain(&self) -> Vec<ResourceMetrics> {
        let held = std::mem::take(&mut *lock(&self.held));
        let mut metrics = held.metrics;
        let mut out: Vec<ResourceMetrics> = Vec::new();
        let mut res_index: HashMap<String, usize> = HashMap::new();
        let mut scope_index: HashMap<(usize, String), usize> = HashMap::new();
        for key in held.order {
            let Some(mut h) = metrics.remove(&key) else {
                continue;
            };
            let ri = *res_index.entry(h.resource_key.clone()).or_insert_with(|| {
                out.push(ResourceMetrics {
                    resource: h.resource.take(),
                    scope_metrics: Vec::new(),
                    schema_url: std::mem::take(&mut h.resource_schema),
                });
                out.len() - 1
            });
            let si = *scope_index
                .entry((ri, h.scope_key.clone()))
                .or_insert_with(|| {
                    out[ri].scope_metrics.push(ScopeMetrics {
                        scope: h.scope.take(),
                        metrics: Vec::new(),
                        schema_url: std::mem::take(&mut h.scope_schema),
                    });
                    out[ri].scope_metrics.len() - 1
                });
            let pts: Vec<Point> = h.order.iter().filter_map(|k| h.points.remove(k)).collect();
            let mut m = h.template;
            put_points(&mut m, pts);
            out[ri].scope_metrics[si].metrics.push(m);
        }
        out
    }

    async fn flush(&self) {
        let rms = self.drain();
        if rms.is_empty() {
            return;
        }
        let data = Telemetry::Metrics(rms);
        self.obs.outgoing(data.item_count());
        if let Err(e) = self.next.consume(data).await {
            tracing::warn!("interval: the next component refused the held metrics: {e}");
        }
    }
}

/// The metric's points, each with its stream key (its attributes); the metric is left empty.
fn take_points(m: &mut Metric) -> Vec<(String, Point)> {
    match &mut m.data {
        Some(metric::Data::Gauge(g)) => keyed(&mut g.data_points, |p| &p.attributes, Point::Number),
        Some(metric::Data::Sum(s)) => keyed(&mut s.data_points, |p| &p.attributes, Point::Number),
        Some(metric::Data::Histogram(h)) => {
            keyed(&mut h.data_points, |p| &p.attributes, Point::Histogram)
        }
        Some(metric::Data::ExponentialHistogram(h)) => {
            keyed(&mut h.data_points, |p| &p.attributes, Point::Exponential)
        }
        Some(metric::Data::Summary(s)) => {
            keyed(&mut s.data_points, |p| &p.attributes, Point::Summary)
        }
        None => Vec::new(),
    }
}

/// Takes `pts`, each with its stream key (its attributes) and wrapped as a [`Point`].
fn keyed<P>(
    pts: &mut Vec<P>,
    attrs: fn(&P) -> &Vec<vigil_core::otlp::common::v1::KeyValue>,
    wrap: fn(P) -> Point,
) -> Vec<(String, Point)> {
    std::mem::take(pts)
        .into_iter()
        .map(|p| {
            let mut k = String::new();
            crate::cumulativetodelta::attrs_key(&mut k, attrs(&p));
            (k, wrap(p))
        })
        .collect()
}

/// Appends points to a metric of their type.
fn put_points(m: &mut Metric, pts: Vec<Point>) {
    for p in pts {
        match (&mut m.data, p) {
            (Some(metric::Data::Gauge(g)), Point::Number(p)) => g.data_points.push(p),
            (Some(metric::Data::Sum(s)), Point::Number(p)) => s.data_points.push(p),
            (Some(metric::Data::Histogram(h)), Point::Histogram(p)) => h.data_points.push(p),
            (Some(metric::Data::ExponentialHistogram(h)), Point::Exponential(p)) => {
                h.data_points.push(p)
            }
            (Some(metric::Data::Summary(s)), Point::Summary(p)) => s.data_points.push(p),
            _ => {}
        }
    }
}

/// A running `interval` processor.
pub struct Interval {
    inner: Arc<Inner>,
    interval: Duration,
    tasks: Tasks,
}

#[async_trait]
impl Component for Interval {
    async fn start(&self, _host: &vigil_core::Host) -> anyhow::Result<()> {
        let inner = Arc::clone(&self.inner);
        self.tasks.spawn_ticker(self.interval, move || {
            let inner = Arc::clone(&inner);
            async move { inner.flush().await }
        });
        Ok(())
    }

    async fn shutdown_by(&self, deadline: std::time::Instant) -> anyhow::Result<()> {
        self.tasks.stop(deadline).await;
        if vigil_core::task::within(deadline, self.inner.flush())
            .await
            .is_none()
        {
            anyhow::bail!("interval: held metrics not sent by the shutdown deadline");
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for Interval {
    async fn consume(&self, mut data: Telemetry) -> Result<(), ConsumeError> {
        self.inner.obs.incoming(data.item_count());
        if let Telemetry::Metrics(rms) = &mut data {
            self.inner.take(rms);
            if rms.is_empty() {
                return Ok(());
            }
        }
        self.inner.obs.outgoing(data.item_count());
        self.inner.next.consume(data).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::Keep;
    use serde_json::json;
    use vigil_core::attrs::kv_str;
    use vigil_core::otlp::metrics::v1::{number_data_point, Gauge, Sum};

    fn inner(pass: PassThrough, limit: usize, next: Arc<Keep>) -> Inner {
        Inner {
            pass,
            held: Mutex::new(Held::default()),
            limit,
            refused: metrics::counter!("vigil_interval_streams_refused", "processor" => "interval"),
            next,
            obs: ProcessorObs::new(&ComponentId::new("interval", None), Signal::Metrics),
        }
    }

    fn sum(
        name: &str,
        temporality: AggregationTemporality,
        monotonic: bool,
        pts: Vec<(u64, f64, &str)>,
    ) -> Metric {
        Metric {
            name: name.into(),
            data: Some(metric::Data::Sum(Sum {
                aggregation_temporality: temporality as i32,
                is_monotonic: monotonic,
                data_points: pts
                    .into_iter()
                    .map(|(t, v, label)| point(t, v, label))
                    .collect(),
            })),
            ..Default::default()
        }
    }

    fn point(t: u64, v: f64, label: &str) -> NumberDataPoint {
        NumberDataPoint {
            time_unix_nano: t,
            value: Some(number_data_point::Value::AsDouble(v)),
            attributes: vec![kv_str("labelA", label)],
            ..Default::default()
        }
    }

    fn batch(metrics: Vec<Metric>) -> Vec<ResourceMetrics> {
        vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv_str("host.name", "node-1")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }]
    }

    /// (metric name, time, value, label) of every number point.
    fn flat(rms: &[ResourceMetrics]) -> Vec<(String, u64, f64, String)> {
        let mut v = Vec::new();
        for m in rms
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
        {
            let pts = match &m.data {
                Some(metric::Data::Sum(s)) => &s.data_points,
                Some(metric::Data::Gauge(g)) => &g.data_points,
                _ => continue,
            };
            for p in pts {
                let Some(number_data_point::Value::AsDouble(d)) = p.value else {
                    continue;
                };
                let l = vigil_core::attrs::get_str(&p.attributes, "labelA").unwrap_or_default();
                v.push((m.name.clone(), p.time_unix_nano, d, l.to_string()));
            }
        }
        v
    }

    /// otelcol's README example: the delta passes at once, and the interval sends the latest
    /// point of each cumulative stream.
    #[tokio::test]
    async fn latest_point_per_stream_at_the_interval() {
        let keep = Arc::new(Keep::default());
        let i = inner(PassThrough::default(), 100, Arc::clone(&keep));
        let c = AggregationTemporality::Cumulative;
        let mut passed = Vec::new();
        for m in [
            sum("test_metric", c, true, vec![(0, 4.0, "foo")]),
            sum("test_metric", c, true, vec![(2, 3.1, "bar")]),
            sum(
                "other_metric",
                AggregationTemporality::Delta,
                true,
                vec![(4, 77.4, "orange")],
            ),
            sum("test_metric", c, true, vec![(6, 8.2, "foo")]),
            sum(
                "test_metric",
                c,
                true,
                vec![(8, 12.8, "foo"), (1, 1.0, "bar")],
            ),
            sum("test_metric", c, true, vec![(10, 6.4, "bar")]),
        ] {
            let mut b = batch(vec![m]);
            i.take(&mut b);
            passed.extend(flat(&b));
        }
        assert_eq!(
            passed,
            [("other_metric".to_string(), 4, 77.4, "orange".to_string())]
        );
        i.flush().await;
        let sent: Vec<_> = lock(&keep.0)
            .iter()
            .flat_map(|t| match t {
                Telemetry::Metrics(rms) => flat(rms),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(
            sent,
            [
                ("test_metric".to_string(), 8, 12.8, "foo".to_string()),
                ("test_metric".to_string(), 10, 6.4, "bar".to_string())
            ]
        );
        assert!(i.drain().is_empty(), "state is empty after a send");
    }

    #[test]
    fn pass_through_and_non_monotonic_sums() {
        let keep = Arc::new(Keep::default());
        let gauge = Metric {
            name: "g".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![point(1, 1.0, "a")],
            })),
            ..Default::default()
        };
        let updown = sum(
            "u",
            AggregationTemporality::Cumulative,
            false,
            vec![(1, 1.0, "a")],
        );
        let i = inner(
            PassThrough {
                gauge: true,
                summary: false,
            },
            100,
            Arc::clone(&keep),
        );
        let mut b = batch(vec![gauge.clone(), updown.clone()]);
        i.take(&mut b);
        assert_eq!(flat(&b).len(), 2, "both pass at once");
        let i = inner(PassThrough::default(), 100, keep);
        let mut b = batch(vec![gauge, updown]);
        i.take(&mut b);
        assert_eq!(
            flat(&b).len(),
            1,
            "the gauge is held, the up-down sum passes"
        );
    }

    #[test]
    fn streams_over_the_bound_pass_at_once() {
        let rec = metrics_util::debugging::DebuggingRecorder::new();
        let snap = rec.snapshotter();
        let _g = metrics::set_default_local_recorder(&rec);
        let keep = Arc::new(Keep::default());
        let i = inner(PassThrough::default(), 1, keep);
        let c = AggregationTemporality::Cumulative;
        let mut b = batch(vec![sum("m", c, true, vec![(1, 1.0, "a"), (1, 2.0, "b")])]);
        i.take(&mut b);
        assert_eq!(flat(&b), [("m".to_string(), 1, 2.0, "b".to_string())]);
        assert_eq!(
            flat(&i.drain()),
            [("m".to_string(), 1, 1.0, "a".to_string())]
        );
        let refused = vigil_core::testing::counter(&snap, "vigil_interval_streams_refused", &[]);
        assert_eq!(refused, 1, "the point that passed at once is counted");
    }

    #[test]
    fn config_cases() {
        let id = ComponentId::new("interval", Some("x"));
        let f = factory();
        f.validate(&id, &json!(null)).expect("defaults");
        assert_eq!(IntervalConfig::default().interval, Duration::from_secs(60));
        crate::testdata::check_all("interval", 1, |v| {
            f.validate(&id, v).map_err(|e| e.to_string())
        });
    }
}
