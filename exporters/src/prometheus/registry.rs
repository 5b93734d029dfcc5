//! What the `prometheus` exporter serves: the latest value of every series it was sent, keyed by
//! family name and label set. Cumulative points replace the value, delta points are added onto it
//! (so a delta counter reads as a cumulative one), series not updated within `metric_expiration` are
//! forgotten, and the whole set renders as the text format 0.0.4 or OpenMetrics 1.0.

use super::translate::{
    base_labels, exponential_buckets, format_value, point_labels, target_info_attrs, Kind, Labels,
    Naming,
};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::time::{Duration, Instant};
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Metric, NumberDataPoint,
    ResourceMetrics,
};

/// `DataPointFlags.NO_RECORDED_VALUE`: the series is gone (a staleness marker).
const NO_RECORDED_VALUE: u32 = 1;

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Number(f64),
    /// Upper bounds (without `+Inf`) and per-bucket counts (one more than the bounds).
    Histogram {
        bounds: Vec<f64>,
        counts: Vec<u64>,
        sum: f64,
        count: u64,
    },
    /// Ascending (bound, cumulative count) pairs already converted from an exponential histogram.
    Cumulative {
        buckets: Vec<(f64, u64)>,
        sum: f64,
        count: u64,
    },
    Summary {
        quantiles: Vec<(f64, f64)>,
        sum: f64,
        count: u64,
    },
}

#[derive(Debug)]
struct Series {
    value: Value,
    /// Milliseconds since the Unix epoch of the last point.
    timestamp_ms: i64,
    updated: Instant,
}

#[derive(Debug)]
struct Family {
    kind: Kind,
    help: String,
    series: HashMap<Labels, Series>,
}

/// The exporter's settings that shape what is stored and how it renders.
#[derive(Debug, Clone)]
pub struct Settings {
    pub naming: Naming,
    pub const_labels: BTreeMap<String, String>,
    pub resource_to_telemetry: bool,
    pub expiration: Duration,
    pub send_timestamps: bool,
}

/// The stored series.
#[derive(Debug)]
pub struct Registry {
    settings: Settings,
    families: BTreeMap<String, Family>,
}

fn number(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => 0.0,
    }
}

fn ms(nanos: u64) -> i64 {
    (nanos / 1_000_000) as i64
}

/// A data point as the registry stores it: its attributes, value, time and flags.
type Point<'a> = (&'a [KeyValue], Value, u64, u32);

impl Registry {
    pub fn new(settings: Settings) -> Registry {
        Registry {
            settings,
            families: BTreeMap::new(),
        }
    }

    /// Stores every data point of a batch. Returns the number of points dropped because their name
    /// is already taken by a family of another type.
    pub fn update(&mut self, batch: &[ResourceMetrics], now: Instant) -> usize {
        let mut conflicts = 0;
        for rm in batch {
            let resource = rm
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            let info = target_info_attrs(resource);
            if !info.is_empty() {
                let base = base_labels(resource, None, false);
                let labels = self.finish(point_labels(&base, &info));
                self.put(
                    "target_info",
                    Kind::Gauge,
                    "Target metadata",
                    labels,
                    Value::Number(1.0),
                    0,
                    false,
                    now,
                );
            }
            for sm in &rm.scope_metrics {
                let base = base_labels(
                    resource,
                    sm.scope.as_ref(),
                    self.settings.resource_to_telemetry,
                );
                for m in &sm.metrics {
                    conflicts += self.metric(m, &base, now);
                }
            }
        }
        conflicts
    }

    fn finish(&self, mut labels: Labels) -> Labels {
        for (k, v) in &self.settings.const_labels {
            if !labels.iter().any(|(l, _)| l == k) {
                labels.push((k.clone(), v.clone()));
            }
        }
        labels.sort();
        labels
    }

    fn metric(&mut self, m: &Metric, base: &BTreeMap<String, String>, now: Instant) -> usize {
        let Some(kind) = Kind::of(m) else { return 0 };
        let name = self.settings.naming.metric_name(m, kind);
        if let Some(f) = self.families.get(&name) {
            if f.kind != kind {
                return vigil_core::telemetry::metric_point_count(m.data.as_ref());
            }
        }
        let help = m.description.as_str();
        let is_delta = |t: i32| t == AggregationTemporality::Delta as i32;
        // Each point, and whether the metric is a delta.
        let (delta, points): (bool, Vec<Point>) = match m.data.as_ref() {
            Some(Data::Gauge(g)) => (
                false,
                g.data_points
                    .iter()
                    .map(|p| {
                        (
                            &p.attributes[..],
                            Value::Number(number(p)),
                            p.time_unix_nano,
                            p.flags,
                        )
                    })
                    .collect(),
            ),
            Some(Data::Sum(s)) => (
                is_delta(s.aggregation_temporality),
                s.data_points
                    .iter()
                    .map(|p| {
                        (
                            &p.attributes[..],
                            Value::Number(number(p)),
                            p.time_unix_nano,
                            p.flags,
                        )
                    })
                    .collect(),
            ),
            Some(Data::Histogram(h)) => (
                is_delta(h.aggregation_temporality),
                h.data_points
                    .iter()
                    .map(|p| {
                        let mut counts = p.bucket_counts.clone();
                        counts.resize(p.explicit_bounds.len() + 1, 0);
                        let v = Value::Histogram {
                            bounds: p.explicit_bounds.clone(),
                            counts,
                            sum: p.sum.unwrap_or(0.0),
                            count: p.count,
                        };
                        (&p.attributes[..], v, p.time_unix_nano, p.flags)
                    })
                    .collect(),
            ),
            Some(Data::ExponentialHistogram(h)) => (
                is_delta(h.aggregation_temporality),
                h.data_points
                    .iter()
                    .map(|p| {
                        let v = Value::Cumulative {
                            buckets: exponential_buckets(p),
                            sum: p.sum.unwrap_or(0.0),
                            count: p.count,
                        };
                        (&p.attributes[..], v, p.time_unix_nano, p.flags)
                    })
                    .collect(),
            ),
            Some(Data::Summary(s)) => (
                false,
                s.data_points
                    .iter()
                    .map(|p| {
                        let v = Value::Summary {
                            quantiles: p
                                .quantile_values
                                .iter()
                                .map(|q| (q.quantile, q.value))
                                .collect(),
                            sum: p.sum,
                            count: p.count,
                        };
                        (&p.attributes[..], v, p.time_unix_nano, p.flags)
                    })
                    .collect(),
            ),
            None => return 0,
        };
        for (attrs, v, time, flags) in points {
            let l = self.finish(point_labels(base, attrs));
            let stale = flags & NO_RECORDED_VALUE != 0;
            self.put_or_remove(&name, kind, help, l, v, ms(time), delta, stale, now);
        }
        0
    }

    #[allow(clippy::too_many_arguments)]
    fn put_or_remove(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        labels: Labels,
        value: Value,
        ts: i64,
        delta: bool,
        stale: bool,
        now: Instant,
    ) {
        if stale {
            if let Some(f) = self.families.get_mut(name) {
                f.series.remove(&labels);
            }
            return;
        }
        self.put(name, kind, help, labels, value, ts, delta, now);
    }

    #[allow(clippy::too_many_arguments)]
    fn put(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        labels: Labels,
        value: Value,
        ts: i64,
        delta: bool,
        now: Instant,
    ) {
        let f = self
            .families
            .entry(name.to_string())
            .or_insert_with(|| Family {
                kind,
                help: help.to_string(),
                series: HashMap::new(),
            });
        if f.help.is_empty() && !help.is_empty() {
            f.help = help.to_string();
        }
        match f.series.get_mut(&labels) {
            Some(s) => {
                s.value = if delta {
                    accumulate(&s.value, value)
                } else {
                    value
                };
                s.timestamp_ms = s.timestamp_ms.max(ts);
                s.updated = now;
            }
            None => {
                f.series.insert(
                    labels,
                    Series {
                        value,
                        timestamp_ms: ts,
                        updated: now,
                    },
                );
            }
        }
    }

    /// Forgets series older than `metric_expiration`, and families left empty.
    pub fn expire(&mut self, now: Instant) {
        let exp = self.settings.expiration;
        for f in self.families.values_mut() {
            f.series
                .retain(|_, s| now.saturating_duration_since(s.updated) <= exp);
        }
        self.families.retain(|_, f| !f.series.is_empty());
    }

    /// The number of stored series.
    pub fn len(&self) -> usize {
        self.families.values().map(|f| f.series.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Renders every family: the text format 0.0.4, or OpenMetrics 1.0 with `# EOF`.
    pub fn render(&self, open_metrics: bool) -> String {
        let mut out = String::with_capacity(self.len() * 96);
        for (name, f) in &self.families {
            // OpenMetrics names a counter family without `_total` and requires it on the sample; a
            // counter named without it (add_metric_suffixes: false) is declared `unknown` instead.
            let (family, declared) = match (open_metrics, f.kind) {
                (true, Kind::Counter) => match name.strip_suffix("_total") {
                    Some(base) => (base, "counter"),
                    None => (name.as_str(), "unknown"),
                },
                _ => (name.as_str(), f.kind.as_str()),
            };
            if !f.help.is_empty() {
                let _ = writeln!(out, "# HELP {family} {}", escape_help(&f.help));
            }
            let _ = writeln!(out, "# TYPE {family} {declared}");
            let mut series: Vec<(&Labels, &Series)> = f.series.iter().collect();
            series.sort_by(|a, b| a.0.cmp(b.0));
            for (labels, s) in series {
                let ts = self.settings.send_timestamps.then_some(s.timestamp_ms);
                let ts = ts.filter(|t| *t > 0);
                self.render_series(&mut out, name, labels, s, ts, open_metrics);
            }
        }
        if open_metrics {
            out.push_str("# EOF\n");
        }
        out
    }

    fn render_series(
        &self,
        out: &mut String,
        name: &str,
        labels: &Labels,
        s: &Series,
        ts: Option<i64>,
        om: bool,
    ) {
        let line = |out: &mut String, suffix: &str, extra: Option<(&str, String)>, v: f64| {
            out.push_str(name);
            out.push_str(suffix);
            write_labels(out, labels, extra);
            out.push(' ');
            out.push_str(&format_value(v));
            if let Some(t) = ts {
                if om {
                    let _ = write!(out, " {}.{:03}", t.div_euclid(1000), t.rem_euclid(1000));
                } else {
                    let _ = write!(out, " {t}");
                }
            }
            out.push('\n');
        };
        match &s.value {
            Value::Number(v) => line(out, "", None, *v),
            Value::Histogram {
                bounds,
                counts,
                sum,
                count,
            } => {
                let mut cum = 0;
                for (b, c) in bounds.iter().zip(counts) {
                    cum += c;
                    line(out, "_bucket", Some(("le", format_value(*b))), cum as f64);
                }
                line(out, "_bucket", Some(("le", "+Inf".into())), *count as f64);
                line(out, "_sum", None, *sum);
                line(out, "_count", None, *count as f64);
            }
            Value::Cumulative {
                buckets,
                sum,
                count,
            } => {
                for (b, c) in buckets {
                    line(out, "_bucket", Some(("le", format_value(*b))), *c as f64);
                }
                line(out, "_bucket", Some(("le", "+Inf".into())), *count as f64);
                line(out, "_sum", None, *sum);
                line(out, "_count", None, *count as f64);
            }
            Value::Summary {
                quantiles,
                sum,
                count,
            } => {
                for (q, v) in quantiles {
                    line(out, "", Some(("quantile", format_value(*q))), *v);
                }
                line(out, "_sum", None, *sum);
                line(out, "_count", None, *count as f64);
            }
        }
    }
}

/// Adds a delta point onto the stored value. Histograms add bucket by bucket when their bounds
/// match; otherwise the newer point replaces the older.
fn accumulate(old: &Value, new: Value) -> Value {
    match (old, new) {
        (Value::Number(a), Value::Number(b)) => Value::Number(a + b),
        (
            Value::Histogram {
                bounds: ob,
                counts: oc,
                sum: os,
                count: on,
            },
            Value::Histogram {
                bounds,
                counts,
                sum,
                count,
            },
        ) if *ob == bounds => Value::Histogram {
            counts: oc.iter().zip(&counts).map(|(a, b)| a + b).collect(),
            bounds,
            sum: os + sum,
            count: on + count,
        },
        (_, new) => new,
    }
}

fn write_labels(out: &mut String, labels: &Labels, extra: Option<(&str, String)>) {
    if labels.is_empty() && extra.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    let all = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(extra.as_ref().map(|(k, v)| (*k, v.as_str())));
    for (k, v) in all {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}
