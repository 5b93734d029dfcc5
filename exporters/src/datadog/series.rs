//! OTLP metrics as Datadog series (metrics intake v2 JSON) and sketches, after the mapping
//! Datadog documents for OTLP (docs.datadoghq.com, "OTLP Metrics Types"): gauges and
//! non-monotonic cumulative sums are gauges; delta sums are counts; cumulative monotonic sums are
//! counts of the difference from the previous point (`to_delta`) or gauges of the raw value
//! (`raw_value`); summaries are `.count` / `.sum` counts and `.quantile` gauges tagged
//! `quantile:<q>`; explicit histograms are a distribution (a DDSketch, `distributions`), one
//! `.bucket` count per bucket tagged `lower_bound`/`upper_bound` (`counters`) or nothing
//! (`nobuckets`), with `.count`/`.sum` counts and `.min`/`.max` gauges when aggregations are on;
//! delta exponential histograms are distributions in every mode (cumulative ones are refused
//! and counted, as upstream does not support them).
//!
//! Cumulative values are turned into deltas against the last point of the same series, kept for
//! `delta_ttl` and for at most [`MAX_DELTA_SERIES`] series; a series that finds the table full is
//! not tracked, its points refused and counted in `vigil_datadog_delta_series_refused{exporter}`.

use super::attrs::{go_float, hostname, resource_tags, tag, text};
use super::proto::{Sketch, SketchPayload};
use super::sketch::Builder;
use super::HistogramMode;
use super::InitialValueMode;
use prost::Message;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Metric, ResourceMetrics,
};
use vigil_core::ComponentId;

/// The most series whose last cumulative point is remembered.
pub const MAX_DELTA_SERIES: usize = 100_000;
/// Datadog's limit on an uncompressed series body is 5 MB; bodies are cut below it.
const MAX_BODY: usize = 5_000_000;

const COUNT: u8 = 1;
const GAUGE: u8 = 3;

pub struct Options {
    pub host: String,
    pub resource_attributes_as_tags: bool,
    pub scope_as_tags: bool,
    pub histogram_mode: HistogramMode,
    pub aggregations: bool,
    pub raw_cumulative: bool,
    pub initial_value: InitialValueMode,
    pub quantiles: bool,
    pub delta_ttl: Duration,
}

/// The series bodies of one batch and the points that could not be sent.
pub struct Output {
    pub bodies: Vec<Vec<u8>>,
    /// Encoded `SketchPayload`s for `/api/beta/sketches`.
    pub sketches: Vec<Vec<u8>>,
    pub refused: u64,
    pub refused_reason: String,
}

#[derive(Serialize)]
struct Point {
    timestamp: i64,
    value: f64,
}

#[derive(Serialize)]
struct Resource<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Series<'a> {
    metric: String,
    #[serde(rename = "type")]
    kind: u8,
    points: [Point; 1],
    tags: Vec<String>,
    resources: [Resource<'a>; 1],
}

struct Prev {
    start: u64,
    ts: u64,
    value: f64,
    seen: Instant,
}

struct Deltas {
    map: HashMap<String, Prev>,
    last_sweep: Instant,
}

pub struct Translator {
    opts: Options,
    /// When this exporter started: `auto` reports a first cumulative value only when its series
    /// started after this.
    started_ns: u64,
    deltas: Mutex<Deltas>,
    refused_series: ::metrics::Counter,
}

/// What one batch collects while it is mapped.
struct Batch<'a> {
    series: Vec<Series<'a>>,
    sketches: Vec<Sketch>,
    refused: u64,
    unbuilt: u64,
    untracked: u64,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn secs(ns: u64) -> i64 {
    i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX)
}

fn point_tags(base: &[String], attrs: &[KeyValue]) -> Vec<String> {
    let mut tags = base.to_vec();
    tags.extend(attrs.iter().map(|kv| tag(&kv.key, &text(&kv.value))));
    tags
}

fn number(v: &Option<number_data_point::Value>) -> Option<f64> {
    match v {
        Some(number_data_point::Value::AsDouble(d)) => Some(*d),
        Some(number_data_point::Value::AsInt(i)) => Some(*i as f64),
        None => None,
    }
}

impl Translator {
    pub fn new(id: &ComponentId, opts: Options) -> Self {
        Translator {
            opts,
            started_ns: now_ns(),
            deltas: Mutex::new(Deltas {
                map: HashMap::new(),
                last_sweep: Instant::now(),
            }),
            refused_series: ::metrics::counter!("vigil_datadog_delta_series_refused", "exporter" => id.to_string()),
        }
    }

    /// The difference from the series' last point, or `None` when there is nothing to report
    /// (a first point the initial-value rule drops, a point not newer than the last, a series
    /// the full table cannot take: `untracked` is then raised).
    fn delta(
        &self,
        key: String,
        start: u64,
        ts: u64,
        value: f64,
        untracked: &mut u64,
    ) -> Option<f64> {
        let mut d = vigil_core::lock(&self.deltas);
        let now = Instant::now();
        let ttl = self.opts.delta_ttl;
        if now.duration_since(d.last_sweep) > ttl.min(Duration::from_secs(60))
            || d.map.len() >= MAX_DELTA_SERIES
        {
            d.map.retain(|_, p| now.duration_since(p.seen) <= ttl);
            d.last_sweep = now;
        }
        let first = |start: u64| match self.opts.initial_value {
            InitialValueMode::Keep => Some(value),
            InitialValueMode::Drop => None,
            InitialValueMode::Auto => (start != 0 && start >= self.started_ns).then_some(value),
        };
        let full = d.map.len() >= MAX_DELTA_SERIES;
        match d.map.get_mut(&key) {
            Some(p) if now.duration_since(p.seen) <= ttl => {
                if ts <= p.ts {
                    return None;
                }
                let out = if (start != 0 && start != p.start) || value < p.value {
                    // A reset: the series restarted after our last point, so all of its value
                    // is new when its start is known to follow that point.
                    if start != 0 && start >= p.ts {
                        Some(value)
                    } else {
                        first(start)
                    }
                } else {
                    Some(value - p.value)
                };
                *p = Prev {
                    start,
                    ts,
                    value,
                    seen: now,
                };
                out
            }
            _ if full => {
                *untracked += 1;
                self.refused_series.increment(1);
                None
            }
            _ => {
                d.map.insert(
                    key,
                    Prev {
                        start,
                        ts,
                        value,
                        seen: now,
                    },
                );
                first(start)
            }
        }
    }

    fn push<'a>(
        b: &mut Batch<'a>,
        host: &'a str,
        metric: String,
        kind: u8,
        ts: u64,
        value: f64,
        tags: Vec<String>,
    ) {
        if !value.is_finite() {
            return;
        }
        b.series.push(Series {
            metric,
            kind,
            points: [Point {
                timestamp: secs(ts),
                value,
            }],
            tags,
            resources: [Resource {
                name: host,
                kind: "host",
            }],
        });
    }

    fn series_key(name: &str, host: &str, tags: &[String]) -> String {
        let mut sorted: Vec<&str> = tags.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        format!("{name}\u{0}{host}\u{0}{}", sorted.join("\u{0}"))
    }

    /// A cumulative monotonic value as a count of its increase.
    #[allow(clippy::too_many_arguments)]
    fn cumulative<'a>(
        &self,
        b: &mut Batch<'a>,
        host: &'a str,
        name: String,
        start: u64,
        ts: u64,
        value: f64,
        tags: Vec<String>,
    ) {
        let key = Self::series_key(&name, host, &tags);
        if let Some(dx) = self.delta(key, start, ts, value, &mut b.untracked) {
            Self::push(b, host, name, COUNT, ts, dx, tags);
        }
    }

    fn metric<'a>(&self, b: &mut Batch<'a>, host: &'a str, base: &[String], m: &Metric) {
        let name = &m.name;
        let cumulative = |t: i32| t == AggregationTemporality::Cumulative as i32;
        match &m.data {
            Some(Data::Gauge(g)) => {
                for p in &g.data_points {
                    if let Some(v) = number(&p.value) {
                        let tags = point_tags(base, &p.attributes);
                        Self::push(b, host, name.clone(), GAUGE, p.time_unix_nano, v, tags);
                    }
                }
            }
            Some(Data::Sum(s)) => {
                for p in &s.data_points {
                    let Some(v) = number(&p.value) else { continue };
                    let tags = point_tags(base, &p.attributes);
                    let ts = p.time_unix_nano;
                    if !cumulative(s.aggregation_temporality) {
                        Self::push(b, host, name.clone(), COUNT, ts, v, tags);
                    } else if !s.is_monotonic || self.opts.raw_cumulative {
                        Self::push(b, host, name.clone(), GAUGE, ts, v, tags);
                    } else {
                        self.cumulative(b, host, name.clone(), p.start_time_unix_nano, ts, v, tags);
                    }
                }
            }
            Some(Data::Summary(s)) => {
                for p in &s.data_points {
                    let tags = point_tags(base, &p.attributes);
                    let (start, ts) = (p.start_time_unix_nano, p.time_unix_nano);
                    self.cumulative(
                        b,
                        host,
                        format!("{name}.count"),
                        start,
                        ts,
                        p.count as f64,
                        tags.clone(),
                    );
                    self.cumulative(
                        b,
                        host,
                        format!("{name}.sum"),
                        start,
                        ts,
                        p.sum,
                        tags.clone(),
                    );
                    if self.opts.quantiles {
                        for q in &p.quantile_values {
                            let mut t = tags.clone();
                            t.push(tag("quantile", &go_float(q.quantile)));
                            Self::push(b, host, format!("{name}.quantile"), GAUGE, ts, q.value, t);
                        }
                    }
                }
            }
            Some(Data::Histogram(h)) => {
                let cumul = cumulative(h.aggregation_temporality);
                for p in &h.data_points {
                    let tags = point_tags(base, &p.attributes);
                    let (start, ts) = (p.start_time_unix_nano, p.time_unix_nano);
                    match self.opts.histogram_mode {
                        HistogramMode::Counters => {
                            let n = p.bucket_counts.len();
                            for (i, c) in p.bucket_counts.iter().enumerate() {
                                let lower = if i == 0 {
                                    f64::NEG_INFINITY
                                } else {
                                    p.explicit_bounds
                                        .get(i - 1)
                                        .copied()
                                        .unwrap_or(f64::INFINITY)
                                };
                                let upper = if i + 1 == n {
                                    f64::INFINITY
                                } else {
                                    p.explicit_bounds.get(i).copied().unwrap_or(f64::INFINITY)
                                };
                                let mut t = tags.clone();
                                t.push(tag("lower_bound", &go_float(lower)));
                                t.push(tag("upper_bound", &go_float(upper)));
                                let metric = format!("{name}.bucket");
                                if cumul {
                                    self.cumulative(b, host, metric, start, ts, *c as f64, t);
                                } else {
                                    Self::push(b, host, metric, COUNT, ts, *c as f64, t);
                                }
                            }
                        }
                        HistogramMode::Nobuckets => {}
                        HistogramMode::Distributions => {
                            let n = p.bucket_counts.len();
                            let buckets = p
                                .bucket_counts
                                .iter()
                                .enumerate()
                                .map(|(i, c)| {
                                    let lower = if i == 0 {
                                        f64::NEG_INFINITY
                                    } else {
                                        p.explicit_bounds
                                            .get(i - 1)
                                            .copied()
                                            .unwrap_or(f64::INFINITY)
                                    };
                                    let upper = if i + 1 == n {
                                        f64::INFINITY
                                    } else {
                                        p.explicit_bounds.get(i).copied().unwrap_or(f64::INFINITY)
                                    };
                                    (lower, upper, *c)
                                })
                                .collect();
                            let stats = (p.count, p.sum, p.min, p.max);
                            self.distribution(
                                b,
                                host,
                                name,
                                &tags,
                                cumul,
                                (start, ts),
                                buckets,
                                0,
                                stats,
                            );
                        }
                    }
                    if self.opts.aggregations {
                        self.aggregations(
                            b,
                            host,
                            name,
                            cumul,
                            (start, ts),
                            p.count,
                            p.sum,
                            p.min,
                            p.max,
                            tags,
                        );
                    }
                }
            }
            Some(Data::ExponentialHistogram(h)) => {
                let cumul = cumulative(h.aggregation_temporality);
                for p in &h.data_points {
                    // As upstream: only delta exponential histograms are supported.
                    if cumul {
                        b.unbuilt += 1;
                        continue;
                    }
                    let tags = point_tags(base, &p.attributes);
                    let times = (p.start_time_unix_nano, p.time_unix_nano);
                    let base_v = 2f64.powf(2f64.powi(-p.scale));
                    let mut buckets = Vec::new();
                    let bounds = |i: i64| base_v.powf(i as f64);
                    if let Some(pos) = &p.positive {
                        for (i, c) in pos.bucket_counts.iter().enumerate() {
                            let idx = i64::from(pos.offset) + i as i64;
                            buckets.push((bounds(idx), bounds(idx + 1), *c));
                        }
                    }
                    if let Some(neg) = &p.negative {
                        for (i, c) in neg.bucket_counts.iter().enumerate() {
                            let idx = i64::from(neg.offset) + i as i64;
                            buckets.push((-bounds(idx + 1), -bounds(idx), *c));
                        }
                    }
                    let stats = (p.count, p.sum, p.min, p.max);
                    self.distribution(
                        b,
                        host,
                        name,
                        &tags,
                        false,
                        times,
                        buckets,
                        p.zero_count,
                        stats,
                    );
                    if !self.opts.aggregations {
                        continue;
                    }
                    self.aggregations(
                        b, host, name, cumul, times, p.count, p.sum, p.min, p.max, tags,
                    );
                }
            }
            None => {}
        }
    }

    /// A histogram point as a sketch (`distributions`); a cumulative one as the difference of
    /// each bucket, count and sum from the series' last point.
    #[allow(clippy::too_many_arguments)]
    fn distribution(
        &self,
        b: &mut Batch<'_>,
        host: &str,
        name: &str,
        tags: &[String],
        cumul: bool,
        (start, ts): (u64, u64),
        buckets: Vec<(f64, f64, u64)>,
        zero: u64,
        (count, sum, min, max): (u64, Option<f64>, Option<f64>, Option<f64>),
    ) {
        let mut builder = Builder::default();
        let (count, sum, min, max) = if cumul {
            let key = |what: &str| Self::series_key(&format!("{name}\u{0}{what}"), host, tags);
            let Some(dc) = self.delta(key("count"), start, ts, count as f64, &mut b.untracked)
            else {
                // The first point (or one the table cannot take): buckets are remembered too.
                for (lo, hi, c) in &buckets {
                    let k = key(&format!("{lo}:{hi}"));
                    let _ = self.delta(k, start, ts, *c as f64, &mut b.untracked);
                }
                if let Some(s) = sum {
                    let _ = self.delta(key("sum"), start, ts, s, &mut b.untracked);
                }
                return;
            };
            for (lo, hi, c) in &buckets {
                let k = key(&format!("{lo}:{hi}"));
                if let Some(d) = self.delta(k, start, ts, *c as f64, &mut b.untracked) {
                    builder.insert_interpolate(*lo, *hi, d.max(0.0) as u64);
                }
            }
            let ds = sum.and_then(|s| self.delta(key("sum"), start, ts, s, &mut b.untracked));
            // Min and max of a cumulative histogram cover its whole life: estimated from bins.
            (dc.max(0.0) as u64, ds.unwrap_or(0.0), None, None)
        } else {
            for (lo, hi, c) in &buckets {
                builder.insert_interpolate(*lo, *hi, *c);
            }
            (count, sum.unwrap_or(0.0), min, max)
        };
        builder.insert_zero(zero);
        if count == 0 && builder.is_empty() {
            return;
        }
        b.sketches.push(Sketch {
            metric: name.to_string(),
            host: host.to_string(),
            tags: tags.to_vec(),
            dogsketches: vec![builder.finish(secs(ts), count, sum, min, max)],
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn aggregations<'a>(
        &self,
        b: &mut Batch<'a>,
        host: &'a str,
        name: &str,
        cumul: bool,
        (start, ts): (u64, u64),
        count: u64,
        sum: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
        tags: Vec<String>,
    ) {
        let mut counts = vec![(format!("{name}.count"), count as f64)];
        if let Some(s) = sum {
            counts.push((format!("{name}.sum"), s));
        }
        for (metric, v) in counts {
            if cumul {
                self.cumulative(b, host, metric, start, ts, v, tags.clone());
            } else {
                Self::push(b, host, metric, COUNT, ts, v, tags.clone());
            }
        }
        // Min and max of a cumulative histogram cover its whole life, not the interval.
        if !cumul {
            for (suffix, v) in [("min", min), ("max", max)] {
                if let Some(v) = v {
                    Self::push(
                        b,
                        host,
                        format!("{name}.{suffix}"),
                        GAUGE,
                        ts,
                        v,
                        tags.clone(),
                    );
                }
            }
        }
    }

    /// Maps a batch into series bodies of at most [`MAX_BODY`] bytes each.
    pub fn translate(&self, rms: &[ResourceMetrics]) -> Output {
        let hosts: Vec<String> = rms
            .iter()
            .map(|rm| {
                rm.resource
                    .as_ref()
                    .and_then(|r| hostname(&r.attributes))
                    .unwrap_or_else(|| self.opts.host.clone())
            })
            .collect();
        let mut b = Batch {
            series: Vec::new(),
            sketches: Vec::new(),
            refused: 0,
            unbuilt: 0,
            untracked: 0,
        };
        for (rm, host) in rms.iter().zip(&hosts) {
            let attrs = rm
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            let res_tags = resource_tags(attrs, self.opts.resource_attributes_as_tags);
            for sm in &rm.scope_metrics {
                let mut base = res_tags.clone();
                if self.opts.scope_as_tags {
                    if let Some(s) = &sm.scope {
                        base.push(tag("instrumentation_scope", &s.name));
                        base.push(tag("instrumentation_scope_version", &s.version));
                    }
                }
                for m in &sm.metrics {
                    self.metric(&mut b, host, &base, m);
                }
            }
        }
        let mut bodies = Vec::new();
        let mut body = Vec::new();
        for s in &b.series {
            // Serializing plain strings and numbers cannot fail.
            let Ok(one) = serde_json::to_vec(s) else {
                b.refused += 1;
                continue;
            };
            if !body.is_empty() && body.len() + one.len() + 3 > MAX_BODY {
                body.extend_from_slice(b"]}");
                bodies.push(std::mem::take(&mut body));
            }
            if body.is_empty() {
                body.extend_from_slice(br#"{"series":["#);
            } else {
                body.push(b',');
            }
            body.extend_from_slice(&one);
        }
        if !body.is_empty() {
            body.extend_from_slice(b"]}");
            bodies.push(body);
        }
        let mut sketches = Vec::new();
        let mut payload = SketchPayload::default();
        let mut size = 0;
        for s in b.sketches {
            let len = s.encoded_len() + 8;
            if size > 0 && size + len > MAX_BODY {
                sketches.push(std::mem::take(&mut payload).encode_to_vec());
                size = 0;
            }
            size += len;
            payload.sketches.push(s);
        }
        if !payload.sketches.is_empty() {
            sketches.push(payload.encode_to_vec());
        }
        let mut reasons = Vec::new();
        if b.unbuilt > 0 {
            reasons.push(format!(
                "{} cumulative exponential histogram points: only delta ones are supported, as \
                 upstream",
                b.unbuilt
            ));
        }
        if b.untracked > 0 {
            reasons.push(format!(
                "{} cumulative points: the delta table is full ({MAX_DELTA_SERIES} series)",
                b.untracked
            ));
        }
        Output {
            bodies,
            sketches,
            refused: b.refused + b.unbuilt + b.untracked,
            refused_reason: reasons.join("; "),
        }
    }
}
