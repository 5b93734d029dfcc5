//! The default translation rules of otelcol-contrib's signalfx exporter: what turns hostmetrics'
//! OTel series into the SignalFx host series Splunk's built-in dashboards chart (`cpu.utilization`,
//! `memory.utilization`, `disk.utilization`, `network.total`, `vmpage_io.*`, ...). Upstream
//! expresses them in a small rule language; only the actions its defaults use are built here, and
//! the rules are upstream's list, step by step. User-written `translation_rules` were removed
//! from otelcol-contrib and are not read.
//!
//! State: `delta_metric` keeps the previous point of each series, bounded by
//! `delta_translation_ttl` and by [`MAX_DELTA_SERIES`] (evictions counted in
//! `vigil_signalfx_delta_series_evicted`).

use super::proto::{DataPoint, Datum, Dimension, MetricType};
use super::translate::{double, int};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most series whose previous point `delta_metric` keeps. Past it the oldest is evicted and
/// its next point starts over (no delta for that one interval).
pub const MAX_DELTA_SERIES: usize = 100_000;

#[derive(Clone, Copy)]
enum Agg {
    Sum,
    Avg,
    Count,
}

enum Rule {
    /// Adds a copy under a new name; with a dimension filter only points whose dimension has
    /// one of the values are copied.
    Copy {
        mapping: &'static [(&'static str, &'static str)],
        dim: Option<(&'static str, &'static [&'static str])>,
    },
    /// Adds, for each point of a cumulative series, the change since its previous point.
    Delta(&'static [(&'static str, &'static str)]),
    /// Replaces the points of one metric with one point per group of the other dimensions.
    Aggregate {
        metric: &'static str,
        method: Agg,
        without: &'static [&'static str],
    },
    /// `metric = op1 / op2`, for points whose dimensions are equal.
    Divide {
        metric: &'static str,
        op1: &'static str,
        op2: &'static str,
    },
    MultiplyFloat(&'static [(&'static str, f64)]),
    DivideInt(&'static [(&'static str, i64)]),
    ToInt(&'static [&'static str]),
    /// Renames points of one metric by the value of a dimension, which is removed.
    Split {
        metric: &'static str,
        dim: &'static str,
        mapping: &'static [(&'static str, &'static str)],
    },
    Rename(&'static [(&'static str, &'static str)]),
    Drop(&'static [&'static str]),
}

use Agg::*;
use Rule::*;

const CPU_STATES: &[&str] = &[
    "interrupt",
    "nice",
    "softirq",
    "steal",
    "system",
    "user",
    "wait",
];

const CPU_SPLIT: &[(&str, &str)] = &[
    ("idle", "sf_temp.cpu.idle"),
    ("interrupt", "sf_temp.cpu.interrupt"),
    ("system", "sf_temp.cpu.system"),
    ("user", "sf_temp.cpu.user"),
    ("steal", "sf_temp.cpu.steal"),
    ("wait", "sf_temp.cpu.wait"),
    ("softirq", "sf_temp.cpu.softirq"),
    ("nice", "sf_temp.cpu.nice"),
];

/// Upstream's `default_translation_rules.yaml`, in its order.
static DEFAULT_RULES: &[Rule] = &[
    Copy {
        mapping: &[("container.cpu.time", "sf_temp.container_cpu_utilization")],
        dim: None,
    },
    // cpu.utilization: busy share of the CPU time since the previous scrape.
    Delta(&[("system.cpu.time", "sf_temp.system.cpu.delta")]),
    Copy {
        mapping: &[("sf_temp.system.cpu.delta", "sf_temp.system.cpu.usage")],
        dim: Some(("state", CPU_STATES)),
    },
    Aggregate {
        metric: "sf_temp.system.cpu.usage",
        method: Sum,
        without: &["state"],
    },
    Copy {
        mapping: &[("sf_temp.system.cpu.delta", "sf_temp.system.cpu.total")],
        dim: None,
    },
    Aggregate {
        metric: "sf_temp.system.cpu.total",
        method: Sum,
        without: &["state"],
    },
    Divide {
        metric: "sf_temp.cpu.utilization",
        op1: "sf_temp.system.cpu.usage",
        op2: "sf_temp.system.cpu.total",
    },
    Aggregate {
        metric: "sf_temp.cpu.utilization",
        method: Avg,
        without: &["cpu"],
    },
    MultiplyFloat(&[("sf_temp.cpu.utilization", 100.0)]),
    // cpu.<state>: per-core CPU time in centiseconds.
    Copy {
        mapping: &[("system.cpu.time", "sf_temp.system.cpu.time")],
        dim: None,
    },
    Split {
        metric: "sf_temp.system.cpu.time",
        dim: "state",
        mapping: CPU_SPLIT,
    },
    MultiplyFloat(&[
        ("sf_temp.container_cpu_utilization", 100.0),
        ("sf_temp.cpu.idle", 100.0),
        ("sf_temp.cpu.interrupt", 100.0),
        ("sf_temp.cpu.system", 100.0),
        ("sf_temp.cpu.user", 100.0),
        ("sf_temp.cpu.steal", 100.0),
        ("sf_temp.cpu.wait", 100.0),
        ("sf_temp.cpu.softirq", 100.0),
        ("sf_temp.cpu.nice", 100.0),
    ]),
    ToInt(&[
        "sf_temp.container_cpu_utilization",
        "sf_temp.cpu.idle",
        "sf_temp.cpu.interrupt",
        "sf_temp.cpu.system",
        "sf_temp.cpu.user",
        "sf_temp.cpu.steal",
        "sf_temp.cpu.wait",
        "sf_temp.cpu.softirq",
        "sf_temp.cpu.nice",
    ]),
    // cpu.num_processors.
    Copy {
        mapping: &[("sf_temp.cpu.idle", "sf_temp.cpu.num_processors")],
        dim: None,
    },
    Aggregate {
        metric: "sf_temp.cpu.num_processors",
        method: Count,
        without: &["cpu"],
    },
    // The per-state totals across cores (the aggregate is applied to each in turn below).
    Aggregate {
        metric: "sf_temp.cpu.idle",
        method: Sum,
        without: &["cpu"],
    },
    Aggregate {
        metric: "sf_temp.cpu.interrupt",
        method: Sum,
        without: &["cpu"],
    },
    Aggregate {
        metric: "sf_temp.cpu.system",
        method: Sum,
        without: &["cpu"],
    },
    Aggregate {
        metric: "sf_temp.cpu.user",
        method: Sum,
        without: &["cpu"],
    },
    Aggregate {
        metric: "sf_temp.cpu.steal",
        method: Sum,
        without: &["cpu"],
    },
    Aggregate {
        metric: "sf_temp.cpu.wait",
        method: Sum,
        without: &["cpu"],
    },
    Aggregate {
        metric: "sf_temp.cpu.softirq",
        method: Sum,
        without: &["cpu"],
    },
    Aggregate {
        metric: "sf_temp.cpu.nice",
        method: Sum,
        without: &["cpu"],
    },
    // memory.total.
    Copy {
        mapping: &[("system.memory.usage", "sf_temp.memory.total")],
        dim: Some(("state", &["buffered", "cached", "free", "inactive", "used"])),
    },
    Aggregate {
        metric: "sf_temp.memory.total",
        method: Sum,
        without: &["state"],
    },
    Copy {
        mapping: &[("system.memory.usage", "sf_temp.system.memory.usage")],
        dim: None,
    },
    Split {
        metric: "sf_temp.system.memory.usage",
        dim: "state",
        mapping: &[("used", "sf_temp.memory.used")],
    },
    // disk.utilization and disk.summary_utilization, as df computes them: used / (used + free).
    Copy {
        mapping: &[("system.filesystem.usage", "sf_temp.disk.total")],
        dim: Some(("state", &["used", "free"])),
    },
    Aggregate {
        metric: "sf_temp.disk.total",
        method: Sum,
        without: &["state"],
    },
    Copy {
        mapping: &[("system.filesystem.usage", "sf_temp.disk.summary_total")],
        dim: Some(("state", &["used", "free"])),
    },
    Aggregate {
        metric: "sf_temp.disk.summary_total",
        method: Avg,
        without: &["mode", "mountpoint"],
    },
    Aggregate {
        metric: "sf_temp.disk.summary_total",
        method: Sum,
        without: &["state", "device", "type"],
    },
    Copy {
        mapping: &[("system.filesystem.usage", "sf_temp.system.filesystem.usage")],
        dim: None,
    },
    Split {
        metric: "sf_temp.system.filesystem.usage",
        dim: "state",
        mapping: &[("used", "sf_temp.df_complex.used")],
    },
    Divide {
        metric: "sf_temp.disk.utilization",
        op1: "sf_temp.df_complex.used",
        op2: "sf_temp.disk.total",
    },
    MultiplyFloat(&[("sf_temp.disk.utilization", 100.0)]),
    Copy {
        mapping: &[("sf_temp.df_complex.used", "sf_temp.df_complex.used_total")],
        dim: None,
    },
    Aggregate {
        metric: "sf_temp.df_complex.used_total",
        method: Avg,
        without: &["mode", "mountpoint"],
    },
    Aggregate {
        metric: "sf_temp.df_complex.used_total",
        method: Sum,
        without: &["device", "type"],
    },
    Divide {
        metric: "sf_temp.disk.summary_utilization",
        op1: "sf_temp.df_complex.used_total",
        op2: "sf_temp.disk.summary_total",
    },
    MultiplyFloat(&[("sf_temp.disk.summary_utilization", 100.0)]),
    // Disk I/O totals across devices, and disk_ops.total / disk_ops.pending.
    Copy {
        mapping: &[
            (
                "system.disk.operations",
                "sf_temp.system.disk.operations.total",
            ),
            ("system.disk.io", "sf_temp.system.disk.io.total"),
        ],
        dim: None,
    },
    Aggregate {
        metric: "sf_temp.system.disk.operations.total",
        method: Sum,
        without: &["device"],
    },
    Aggregate {
        metric: "sf_temp.system.disk.io.total",
        method: Sum,
        without: &["device"],
    },
    Copy {
        mapping: &[("system.disk.operations", "sf_temp.disk.ops")],
        dim: None,
    },
    Aggregate {
        metric: "sf_temp.disk.ops",
        method: Sum,
        without: &["direction", "device"],
    },
    Delta(&[("sf_temp.disk.ops", "disk_ops.total")]),
    Delta(&[("system.disk.pending_operations", "disk_ops.pending")]),
    // Network totals.
    Copy {
        mapping: &[
            (
                "system.network.packets",
                "sf_temp.system.network.packets.total",
            ),
            ("system.network.io", "sf_temp.system.network.io.total"),
        ],
        dim: None,
    },
    Aggregate {
        metric: "sf_temp.system.network.packets.total",
        method: Sum,
        without: &["device"],
    },
    Aggregate {
        metric: "sf_temp.system.network.io.total",
        method: Sum,
        without: &["device"],
    },
    Copy {
        mapping: &[("system.network.io", "sf_temp.network.total")],
        dim: Some(("direction", &["receive", "transmit"])),
    },
    Aggregate {
        metric: "sf_temp.network.total",
        method: Sum,
        without: &["direction", "device"],
    },
    // memory.utilization.
    Divide {
        metric: "sf_temp.memory.utilization",
        op1: "sf_temp.memory.used",
        op2: "sf_temp.memory.total",
    },
    MultiplyFloat(&[("sf_temp.memory.utilization", 100.0)]),
    // vmpage_io.*: paging operations by direction and type, in pages.
    Copy {
        mapping: &[(
            "system.paging.operations",
            "sf_temp.system.paging.operations",
        )],
        dim: None,
    },
    Split {
        metric: "sf_temp.system.paging.operations",
        dim: "direction",
        mapping: &[
            ("page_in", "sf_temp.system.paging.operations.page_in"),
            ("page_out", "sf_temp.system.paging.operations.page_out"),
        ],
    },
    Split {
        metric: "sf_temp.system.paging.operations.page_in",
        dim: "type",
        mapping: &[
            ("major", "vmpage_io.swap.in"),
            ("minor", "vmpage_io.memory.in"),
        ],
    },
    Split {
        metric: "sf_temp.system.paging.operations.page_out",
        dim: "type",
        mapping: &[
            ("major", "vmpage_io.swap.out"),
            ("minor", "vmpage_io.memory.out"),
        ],
    },
    DivideInt(&[
        ("vmpage_io.swap.in", 4096),
        ("vmpage_io.swap.out", 4096),
        ("vmpage_io.memory.in", 4096),
        ("vmpage_io.memory.out", 4096),
    ]),
    // process.cpu_time_seconds.
    Copy {
        mapping: &[("process.cpu.time", "sf_temp.process.cpu.time")],
        dim: Some(("state", &["user", "system"])),
    },
    Aggregate {
        metric: "sf_temp.process.cpu.time",
        method: Sum,
        without: &["state"],
    },
    Rename(&[
        (
            "sf_temp.container_cpu_utilization",
            "container_cpu_utilization",
        ),
        ("sf_temp.cpu.idle", "cpu.idle"),
        ("sf_temp.cpu.interrupt", "cpu.interrupt"),
        ("sf_temp.cpu.nice", "cpu.nice"),
        ("sf_temp.cpu.num_processors", "cpu.num_processors"),
        ("sf_temp.cpu.softirq", "cpu.softirq"),
        ("sf_temp.cpu.steal", "cpu.steal"),
        ("sf_temp.cpu.system", "cpu.system"),
        ("sf_temp.cpu.user", "cpu.user"),
        ("sf_temp.cpu.utilization", "cpu.utilization"),
        ("sf_temp.cpu.wait", "cpu.wait"),
        (
            "sf_temp.disk.summary_utilization",
            "disk.summary_utilization",
        ),
        ("sf_temp.disk.utilization", "disk.utilization"),
        ("sf_temp.memory.total", "memory.total"),
        ("sf_temp.memory.utilization", "memory.utilization"),
        ("sf_temp.network.total", "network.total"),
        ("sf_temp.system.disk.io.total", "system.disk.io.total"),
        (
            "sf_temp.system.disk.operations.total",
            "system.disk.operations.total",
        ),
        ("sf_temp.system.network.io.total", "system.network.io.total"),
        (
            "sf_temp.system.network.packets.total",
            "system.network.packets.total",
        ),
        ("sf_temp.process.cpu.time", "process.cpu_time_seconds"),
    ]),
    Drop(&[
        "sf_temp.df_complex.used",
        "sf_temp.df_complex.used_total",
        "sf_temp.disk.ops",
        "sf_temp.disk.summary_total",
        "sf_temp.disk.total",
        "sf_temp.memory.used",
        "sf_temp.system.cpu.delta",
        "sf_temp.system.cpu.total",
        "sf_temp.system.cpu.time",
        "sf_temp.system.cpu.usage",
        "sf_temp.system.filesystem.usage",
        "sf_temp.system.memory.usage",
        "sf_temp.system.paging.operations",
        "sf_temp.system.paging.operations.page_in",
        "sf_temp.system.paging.operations.page_out",
    ]),
];

fn lookup<T: std::marker::Copy>(map: &[(&'static str, T)], key: &str) -> Option<T> {
    map.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

fn dim<'a>(p: &'a DataPoint, key: &str) -> Option<&'a str> {
    p.dimensions
        .iter()
        .find(|d| d.key() == key)
        .map(|d| d.value())
}

fn num(d: &Datum) -> Option<f64> {
    d.int_value.map(|i| i as f64).or(d.double_value)
}

/// A series' identity: its metric and sorted dimensions.
fn series_key(metric: &str, dims: &[Dimension]) -> String {
    let mut pairs: Vec<(&str, &str)> = dims.iter().map(|d| (d.key(), d.value())).collect();
    pairs.sort_unstable();
    let mut key = String::from(metric);
    for (k, v) in pairs {
        key.push('\u{1}');
        key.push_str(k);
        key.push('\u{2}');
        key.push_str(v);
    }
    key
}

/// The previous points `delta_metric` compares with, each with when it was stored.
struct DeltaState {
    prev: HashMap<String, (Datum, Instant)>,
    order: std::collections::VecDeque<String>,
}

/// The default rules with their `delta_metric` state.
pub struct Translator {
    ttl: Duration,
    state: Mutex<DeltaState>,
}

impl Translator {
    pub fn new(ttl: Duration) -> Self {
        Translator {
            ttl,
            state: Mutex::new(DeltaState {
                prev: HashMap::new(),
                order: Default::default(),
            }),
        }
    }

    /// Applies every default rule, in order.
    pub fn translate(&self, mut points: Vec<DataPoint>) -> Vec<DataPoint> {
        for rule in DEFAULT_RULES {
            points = self.apply(rule, points);
        }
        points
    }

    fn apply(&self, rule: &Rule, mut pts: Vec<DataPoint>) -> Vec<DataPoint> {
        match rule {
            Copy { mapping, dim: f } => {
                let mut extra = Vec::new();
                for p in &pts {
                    let Some(to) = lookup(mapping, &p.metric) else {
                        continue;
                    };
                    if let Some((k, values)) = f {
                        if !dim(p, k).is_some_and(|v| values.contains(&v)) {
                            continue;
                        }
                    }
                    let mut c = p.clone();
                    c.metric = to.to_string();
                    extra.push(c);
                }
                pts.extend(extra);
                pts
            }
            Delta(mapping) => {
                let now = Instant::now();
                let mut extra = Vec::new();
                let mut st = vigil_core::lock(&self.state);
                for p in &pts {
                    let Some(to) = lookup(mapping, &p.metric) else {
                        continue;
                    };
                    let key = series_key(&p.metric, &p.dimensions);
                    let prev = st.prev.insert(key.clone(), (p.value.clone(), now));
                    match prev {
                        None => st.order.push_back(key),
                        Some((prev, at)) if now.duration_since(at) <= self.ttl => {
                            let value = match (&p.value, &prev) {
                                (
                                    Datum {
                                        int_value: Some(c), ..
                                    },
                                    Datum {
                                        int_value: Some(b), ..
                                    },
                                ) => int(if c >= b { c - b } else { *c }),
                                _ => match (num(&p.value), num(&prev)) {
                                    // A counter that went down was reset: its value is the delta.
                                    (Some(c), Some(b)) => double(if c >= b { c - b } else { c }),
                                    _ => continue,
                                },
                            };
                            let mut d = p.clone();
                            d.metric = to.to_string();
                            d.value = value;
                            d.metric_type = Some(MetricType::Gauge as i32);
                            extra.push(d);
                        }
                        // Stale: the stored point is too old to difference with.
                        Some(_) => {}
                    }
                }
                while st.order.len() > MAX_DELTA_SERIES {
                    if let Some(old) = st.order.pop_front() {
                        st.prev.remove(&old);
                        metrics::counter!("vigil_signalfx_delta_series_evicted").increment(1);
                    }
                }
                // Series unseen for longer than the TTL are forgotten (checked from the oldest).
                while let Some(front) = st.order.front() {
                    match st.prev.get(front) {
                        Some((_, at)) if now.duration_since(*at) > self.ttl => {
                            let k = st.order.pop_front().unwrap_or_default();
                            st.prev.remove(&k);
                        }
                        Some(_) => break,
                        None => {
                            st.order.pop_front();
                        }
                    }
                }
                drop(st);
                pts.extend(extra);
                pts
            }
            Aggregate {
                metric,
                method,
                without,
            } => {
                let (mine, mut rest): (Vec<_>, Vec<_>) =
                    pts.into_iter().partition(|p| p.metric == *metric);
                // Groups keep the order in which they were first seen.
                let mut groups: BTreeMap<String, (usize, Vec<DataPoint>)> = BTreeMap::new();
                for mut p in mine {
                    p.dimensions.retain(|d| !without.contains(&d.key()));
                    let key = series_key("", &p.dimensions);
                    let n = groups.len();
                    groups.entry(key).or_insert((n, Vec::new())).1.push(p);
                }
                let mut ordered: Vec<(usize, Vec<DataPoint>)> = groups.into_values().collect();
                ordered.sort_by_key(|(i, _)| *i);
                for (_, group) in ordered {
                    rest.extend(aggregate(group, *method));
                }
                rest
            }
            Divide { metric, op1, op2 } => {
                let denominators: HashMap<String, f64> = pts
                    .iter()
                    .filter(|p| p.metric == *op2)
                    .filter_map(|p| Some((series_key("", &p.dimensions), num(&p.value)?)))
                    .collect();
                let mut extra = Vec::new();
                for p in pts.iter().filter(|p| p.metric == *op1) {
                    let Some(a) = num(&p.value) else { continue };
                    let Some(b) = denominators.get(&series_key("", &p.dimensions)) else {
                        continue;
                    };
                    if *b == 0.0 {
                        continue;
                    }
                    let mut d = p.clone();
                    d.metric = metric.to_string();
                    d.value = double(a / b);
                    d.metric_type = Some(MetricType::Gauge as i32);
                    extra.push(d);
                }
                pts.extend(extra);
                pts
            }
            MultiplyFloat(factors) => {
                for p in &mut pts {
                    if let (Some(f), Some(v)) = (lookup(factors, &p.metric), p.value.double_value) {
                        p.value.double_value = Some(v * f);
                    }
                }
                pts
            }
            DivideInt(factors) => {
                for p in &mut pts {
                    if let (Some(f), Some(v)) = (lookup(factors, &p.metric), p.value.int_value) {
                        p.value.int_value = Some(v / f);
                    }
                }
                pts
            }
            ToInt(names) => {
                for p in &mut pts {
                    if names.contains(&p.metric.as_str()) {
                        if let Some(v) = p.value.double_value.take() {
                            p.value.int_value = Some(v as i64);
                        }
                    }
                }
                pts
            }
            Split {
                metric,
                dim: key,
                mapping,
            } => {
                for p in &mut pts {
                    if p.metric != *metric {
                        continue;
                    }
                    if let Some(to) = dim(p, key).and_then(|v| lookup(mapping, v)) {
                        p.metric = to.to_string();
                        p.dimensions.retain(|d| d.key() != *key);
                    }
                }
                pts
            }
            Rename(mapping) => {
                for p in &mut pts {
                    if let Some(to) = lookup(mapping, &p.metric) {
                        p.metric = to.to_string();
                    }
                }
                pts
            }
            Drop(names) => {
                pts.retain(|p| !names.contains(&p.metric.as_str()));
                pts
            }
        }
    }
}

/// One point for a group: the sum, mean or count of its values, with the first point's time
/// and type. Sums of integers stay integers.
fn aggregate(group: Vec<DataPoint>, method: Agg) -> Option<DataPoint> {
    let mut first = group.first()?.clone();
    first.value = match method {
        Count => int(group.len() as i64),
        Sum if group.iter().all(|p| p.value.int_value.is_some()) => {
            int(group.iter().filter_map(|p| p.value.int_value).sum())
        }
        Sum => double(group.iter().filter_map(|p| num(&p.value)).sum()),
        Avg => {
            let vals: Vec<f64> = group.iter().filter_map(|p| num(&p.value)).collect();
            if vals.is_empty() {
                return None;
            }
            double(vals.iter().sum::<f64>() / vals.len() as f64)
        }
    };
    Some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dp(name: &str, v: Datum, dims: &[(&str, &str)]) -> DataPoint {
        DataPoint {
            source: None,
            metric: name.into(),
            timestamp: Some(1000),
            value: v,
            metric_type: Some(MetricType::CumulativeCounter as i32),
            dimensions: dims.iter().map(|(k, v)| Dimension::new(*k, *v)).collect(),
        }
    }

    fn value(pts: &[DataPoint], name: &str) -> Option<f64> {
        pts.iter()
            .find(|p| p.metric == name)
            .and_then(|p| num(&p.value))
    }

    fn cpu(user: f64, idle: f64) -> Vec<DataPoint> {
        let mut v = Vec::new();
        for c in ["0", "1"] {
            v.push(dp(
                "system.cpu.time",
                double(user),
                &[("cpu", c), ("state", "user"), ("host.name", "h")],
            ));
            v.push(dp(
                "system.cpu.time",
                double(idle),
                &[("cpu", c), ("state", "idle"), ("host.name", "h")],
            ));
        }
        v
    }

    #[test]
    fn cpu_utilization_comes_from_the_second_scrape() {
        let t = Translator::new(Duration::from_secs(3600));
        let first = t.translate(cpu(10.0, 90.0));
        assert_eq!(value(&first, "cpu.utilization"), None);
        assert_eq!(value(&first, "cpu.num_processors"), Some(2.0));
        // cpu.user is per state, summed over cores, in centiseconds as an integer.
        assert_eq!(value(&first, "cpu.user"), Some(2000.0));
        assert!(first.iter().all(|p| !p.metric.starts_with("sf_temp")));
        // 5 s more of user and 15 s more of idle on each core: 25 % busy.
        let second = t.translate(cpu(15.0, 105.0));
        assert_eq!(value(&second, "cpu.utilization"), Some(25.0));
        let util = second
            .iter()
            .find(|p| p.metric == "cpu.utilization")
            .unwrap();
        assert_eq!(
            util.dimensions,
            vec![Dimension::new("host.name", "h")],
            "per-core and state dimensions are aggregated away"
        );
    }

    #[test]
    fn memory_disk_and_paging() {
        let t = Translator::new(Duration::from_secs(3600));
        let pts = vec![
            dp("system.memory.usage", int(300), &[("state", "used")]),
            dp("system.memory.usage", int(700), &[("state", "free")]),
            dp(
                "system.filesystem.usage",
                int(25),
                &[("state", "used"), ("device", "sda1"), ("mountpoint", "/")],
            ),
            dp(
                "system.filesystem.usage",
                int(75),
                &[("state", "free"), ("device", "sda1"), ("mountpoint", "/")],
            ),
            dp(
                "system.paging.operations",
                int(8192),
                &[("direction", "page_in"), ("type", "major")],
            ),
        ];
        let out = t.translate(pts);
        assert_eq!(value(&out, "memory.total"), Some(1000.0));
        assert_eq!(value(&out, "memory.utilization"), Some(30.0));
        assert_eq!(value(&out, "disk.utilization"), Some(25.0));
        assert_eq!(value(&out, "disk.summary_utilization"), Some(25.0));
        assert_eq!(value(&out, "vmpage_io.swap.in"), Some(2.0));
        // The source series are kept; the temporary ones are not.
        assert!(value(&out, "system.memory.usage").is_some());
        assert!(out.iter().all(|p| !p.metric.starts_with("sf_temp")));
    }
}
