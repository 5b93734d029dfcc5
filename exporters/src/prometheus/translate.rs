//! OTLP → Prometheus naming and labels, per the OpenTelemetry Prometheus compatibility specification
//! as otelcol's translator applies it: metric names sanitised into tokens with the unit appended
//! (`s` → `_seconds`, `By` → `_bytes`, `1` → `_ratio` for gauges, `{…}` annotations dropped),
//! `_total` on monotonic sums, label names sanitised (colliding values joined with `;`), `job` and
//! `instance` from `service.*`, `target_info` from the other resource attributes, and exponential
//! histograms converted to classic `le` buckets. Shared by the `prometheus` and
//! `prometheusremotewrite` exporters so that both name a series the same way.

use std::collections::BTreeMap;
use vigil_core::attrs::value_to_string;
use vigil_core::otlp::common::v1::{InstrumentationScope, KeyValue};
use vigil_core::otlp::metrics::v1::{metric::Data, ExponentialHistogramDataPoint, Metric};

/// The Prometheus type a metric becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl Kind {
    /// Counter for a monotonic Sum, Gauge for a Gauge or a non-monotonic Sum, and so on.
    pub fn of(m: &Metric) -> Option<Kind> {
        Some(match m.data.as_ref()? {
            Data::Gauge(_) => Kind::Gauge,
            Data::Sum(s) if s.is_monotonic => Kind::Counter,
            Data::Sum(_) => Kind::Gauge,
            Data::Histogram(_) | Data::ExponentialHistogram(_) => Kind::Histogram,
            Data::Summary(_) => Kind::Summary,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }
}

/// A sorted label set, the identity of a series.
pub type Labels = Vec<(String, String)>;

/// How names are built: the exporter's `namespace` and `add_metric_suffixes`.
#[derive(Debug, Clone, Default)]
pub struct Naming {
    pub namespace: String,
    pub add_suffixes: bool,
}

fn unit_word(u: &str) -> Option<&'static str> {
    Some(match u {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

fn per_unit_word(u: &str) -> Option<&'static str> {
    Some(match u {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// A unit with `{annotations}` removed, as name tokens (`KiBy/s` → `kibibytes`, `per`, `second`).
fn unit_tokens(unit: &str) -> (Vec<String>, Vec<String>) {
    let mut clean = String::new();
    let mut depth = 0;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            _ if depth == 0 => clean.push(c),
            _ => {}
        }
    }
    let (main, per) = match clean.split_once('/') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (clean.trim(), ""),
    };
    let word = |u: &str, f: fn(&str) -> Option<&'static str>| -> Vec<String> {
        if u.is_empty() || u == "1" {
            return vec![];
        }
        let w = f(u).map(str::to_string).unwrap_or_else(|| u.to_string());
        tokens(&w)
    };
    let main_t = word(main, unit_word);
    let per_t = word(per, per_unit_word);
    (main_t, per_t)
}

/// Splits on every character Prometheus does not allow in a name token.
fn tokens(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Replaces each invalid name character with `_` (names may hold `[a-zA-Z0-9_:]`).
fn sanitize_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

impl Naming {
    /// The Prometheus family name of `m` (without `_bucket`/`_sum`/`_count`).
    pub fn metric_name(&self, m: &Metric, kind: Kind) -> String {
        let name = if self.add_suffixes {
            let mut t = tokens(&m.name);
            if kind == Kind::Counter {
                t.retain(|x| x != "total");
            }
            let (main, per) = unit_tokens(&m.unit);
            if !main.is_empty() && !t.ends_with(&main) {
                t.extend(main);
            }
            if !per.is_empty() && !t.ends_with(&per) {
                t.push("per".into());
                t.extend(per);
            }
            if kind == Kind::Counter {
                t.push("total".into());
            }
            if kind == Kind::Gauge && m.unit == "1" && t.last().map(String::as_str) != Some("ratio")
            {
                t.push("ratio".into());
            }
            t.join("_")
        } else {
            sanitize_name(&m.name)
        };
        let full = if self.namespace.is_empty() {
            name
        } else {
            format!("{}_{}", self.namespace, name)
        };
        sanitize_name(&full)
    }
}

/// A label name Prometheus accepts: invalid characters become `_`, a leading digit gets `key_`, and a
/// single leading `_` gets `key` (double underscores are reserved).
pub fn sanitize_label(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        return out;
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with('_') && !out.starts_with("__") {
        out.insert_str(0, "key");
    }
    out
}

/// Adds attributes to a label map; two keys that sanitise alike have their values joined with `;`,
/// in key order, and an existing label (job, instance) is not overwritten.
pub fn add_attrs(labels: &mut BTreeMap<String, String>, attrs: &[KeyValue]) {
    let mut sorted: Vec<&KeyValue> = attrs.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let mut fresh: BTreeMap<String, String> = BTreeMap::new();
    for kv in sorted {
        let name = sanitize_label(&kv.key);
        if name.is_empty() || labels.contains_key(&name) {
            continue;
        }
        let v = kv
            .value
            .as_ref()
            .and_then(|v| v.value.as_ref())
            .map(value_to_string)
            .unwrap_or_default();
        fresh
            .entry(name)
            .and_modify(|e| {
                e.push(';');
                e.push_str(&v);
            })
            .or_insert(v);
    }
    labels.extend(fresh);
}

/// `job` and `instance` from `service.namespace`/`service.name` and `service.instance.id`.
pub fn job_instance(resource: &[KeyValue]) -> BTreeMap<String, String> {
    let get = |k: &str| {
        vigil_core::attrs::get(resource, k)
            .map(value_to_string)
            .filter(|s| !s.is_empty())
    };
    let mut out = BTreeMap::new();
    if let Some(name) = get("service.name") {
        let job = match get("service.namespace") {
            Some(ns) => format!("{ns}/{name}"),
            None => name,
        };
        out.insert("job".to_string(), job);
    }
    if let Some(i) = get("service.instance.id") {
        out.insert("instance".to_string(), i);
    }
    out
}

/// The attributes `target_info` carries: the resource's, minus those that became job and instance.
pub fn target_info_attrs(resource: &[KeyValue]) -> Vec<KeyValue> {
    resource
        .iter()
        .filter(|kv| {
            !matches!(
                kv.key.as_str(),
                "service.name" | "service.namespace" | "service.instance.id"
            )
        })
        .cloned()
        .collect()
}

/// The labels every series of a resource and scope carries: job/instance, all resource attributes
/// when `resource_to_telemetry_conversion` is on, and `otel_scope_name`/`otel_scope_version`.
pub fn base_labels(
    resource: &[KeyValue],
    scope: Option<&InstrumentationScope>,
    resource_to_telemetry: bool,
) -> BTreeMap<String, String> {
    let mut labels = job_instance(resource);
    if let Some(s) = scope.filter(|s| !s.name.is_empty()) {
        labels.insert("otel_scope_name".into(), s.name.clone());
        if !s.version.is_empty() {
            labels.insert("otel_scope_version".into(), s.version.clone());
        }
    }
    if resource_to_telemetry {
        add_attrs(&mut labels, resource);
    }
    labels
}

/// Final labels of one data point: the base, then the point's own attributes.
pub fn point_labels(base: &BTreeMap<String, String>, attrs: &[KeyValue]) -> Labels {
    let mut l = base.clone();
    // A point attribute wins over a resource attribute of the same name, but not over job/instance.
    let keep: Vec<String> = l
        .keys()
        .filter(|k| *k == "job" || *k == "instance")
        .cloned()
        .collect();
    let mut own = BTreeMap::new();
    add_attrs(&mut own, attrs);
    for (k, v) in own {
        if !keep.contains(&k) {
            l.insert(k, v);
        }
    }
    l.into_iter().collect()
}

/// Classic buckets of an exponential histogram point: ascending (upper bound, cumulative count),
/// ending below `+Inf` (whose count is the point's `count`). Negative buckets come first, then the
/// zero bucket (bounded by `zero_threshold`), then the positive ones.
pub fn exponential_buckets(p: &ExponentialHistogramDataPoint) -> Vec<(f64, u64)> {
    let base = 2f64.powf(2f64.powi(-p.scale));
    let mut out = Vec::new();
    let mut cum = 0u64;
    if let Some(neg) = &p.negative {
        for (k, c) in neg.bucket_counts.iter().enumerate().rev() {
            let idx = neg.offset as i64 + k as i64;
            cum += c;
            out.push((-base.powf(idx as f64), cum));
        }
    }
    cum += p.zero_count;
    out.push((p.zero_threshold, cum));
    if let Some(pos) = &p.positive {
        for (k, c) in pos.bucket_counts.iter().enumerate() {
            let idx = pos.offset as i64 + k as i64;
            cum += c;
            out.push((base.powf((idx + 1) as f64), cum));
        }
    }
    out
}

/// Formats a sample value as Prometheus does (`+Inf`, `-Inf`, `NaN`).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::attrs::kv_str;
    use vigil_core::otlp::metrics::v1::{exponential_histogram_data_point::Buckets, Gauge, Sum};

    fn metric(name: &str, unit: &str, data: Data) -> Metric {
        Metric {
            name: name.into(),
            unit: unit.into(),
            data: Some(data),
            ..Default::default()
        }
    }

    #[test]
    fn names_follow_the_compatibility_spec() {
        let n = Naming {
            namespace: String::new(),
            add_suffixes: true,
        };
        let counter = |name, unit| {
            let m = metric(
                name,
                unit,
                Data::Sum(Sum {
                    is_monotonic: true,
                    ..Default::default()
                }),
            );
            n.metric_name(&m, Kind::of(&m).unwrap())
        };
        let gauge = |name, unit| {
            let m = metric(name, unit, Data::Gauge(Gauge::default()));
            n.metric_name(&m, Kind::Gauge)
        };
        assert_eq!(
            counter("system.cpu.time", "s"),
            "system_cpu_time_seconds_total"
        );
        assert_eq!(
            counter("http.requests.total", "{request}"),
            "http_requests_total"
        );
        assert_eq!(
            gauge("process.memory.usage", "By"),
            "process_memory_usage_bytes"
        );
        assert_eq!(
            gauge("system.cpu.utilization", "1"),
            "system_cpu_utilization_ratio"
        );
        assert_eq!(
            gauge("system.cpu.load_average.1m", "{thread}"),
            "system_cpu_load_average_1m"
        );
        assert_eq!(gauge("net.rate", "KiBy/s"), "net_rate_kibibytes_per_second");
        assert_eq!(gauge("latency_seconds", "s"), "latency_seconds");
        assert_eq!(gauge("1st-metric", "widgets"), "_1st_metric_widgets");
        let n = Naming {
            namespace: "vigil".into(),
            add_suffixes: false,
        };
        let m = metric(
            "system.cpu.time",
            "s",
            Data::Sum(Sum {
                is_monotonic: true,
                ..Default::default()
            }),
        );
        assert_eq!(n.metric_name(&m, Kind::Counter), "vigil_system_cpu_time");
    }

    #[test]
    fn labels_sanitise_and_join_collisions() {
        assert_eq!(sanitize_label("http.method"), "http_method");
        assert_eq!(sanitize_label("0day"), "key_0day");
        assert_eq!(sanitize_label("_x"), "key_x");
        assert_eq!(sanitize_label("__x"), "__x");
        let res = vec![
            kv_str("service.name", "api"),
            kv_str("service.namespace", "shop"),
            kv_str("service.instance.id", "pod-1"),
            kv_str("host.name", "n1"),
        ];
        let base = base_labels(&res, None, false);
        let l = point_labels(
            &base,
            &[kv_str("a.b", "1"), kv_str("a_b", "2"), kv_str("job", "x")],
        );
        assert_eq!(
            l,
            vec![
                ("a_b".to_string(), "1;2".to_string()),
                ("instance".into(), "pod-1".into()),
                ("job".into(), "shop/api".into()),
            ]
        );
        assert_eq!(target_info_attrs(&res).len(), 1);
        let base = base_labels(&res, None, true);
        assert_eq!(base.get("host_name").map(String::as_str), Some("n1"));
    }

    #[test]
    fn exponential_histograms_become_cumulative_buckets() {
        let p = ExponentialHistogramDataPoint {
            scale: 0,
            count: 7,
            zero_count: 1,
            positive: Some(Buckets {
                offset: 0,
                bucket_counts: vec![2, 3],
            }),
            negative: Some(Buckets {
                offset: 1,
                bucket_counts: vec![1],
            }),
            ..Default::default()
        };
        // base 2: negative bucket 1 is [-4,-2), positive 0 is (1,2], positive 1 is (2,4].
        assert_eq!(
            exponential_buckets(&p),
            vec![(-2.0, 1), (0.0, 2), (2.0, 4), (4.0, 7)]
        );
    }
}
