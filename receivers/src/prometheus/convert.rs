//! Turns one scrape of one target into OTLP the way otelcol's `prometheusreceiver` does: counters
//! become monotonic cumulative Sums, gauges and untyped metrics Gauges, histograms and summaries
//! their OTLP types; `job`/`instance` become the resource (`service.name`, `service.instance.id`,
//! `server.address`, `server.port`, `url.scheme`). It keeps per-target state across scrapes: the
//! start time of every cumulative series (from `_created`, the start-time metric or first sight, reset
//! when a counter goes down) and the series of the last scrape, so that a series that disappears gets
//! a staleness marker (`NoRecordedValue`).

use super::parse::{Entry, Exemplar, Format, MetricType, ParseError, Parser, Sample};
use super::relabel::{self, get_label, Labels, Rule};
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric::Data, number_data_point, summary_data_point::ValueAtQuantile,
    AggregationTemporality, Exemplar as OtlpExemplar, Gauge, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::collections::{HashMap, HashSet};
use vigil_core::attrs::{kv_i64, kv_str};

/// The scope otelcol's receiver puts its metrics under; kept so that dashboards and processors keyed
/// on it work unchanged.
pub const SCOPE_NAME: &str =
    "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/prometheusreceiver";

/// OTLP's `DataPointFlags.FLAG_NO_RECORDED_VALUE`: the staleness marker.
pub const FLAG_NO_RECORDED_VALUE: u32 = 1;

/// What a scrape job contributes to the translation of a target's samples.
pub struct ScrapeSettings<'a> {
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub metric_relabel: &'a [Rule],
    pub sample_limit: u64,
    pub start_time_metric: Option<&'a regex::Regex>,
    /// `label_limit`, `label_name_length_limit`, `label_value_length_limit`.
    pub label_limits: LabelLimits,
}

/// Prometheus's per-series label bounds, checked after metric relabelling: one series over any
/// of them fails the whole scrape, as `sample_limit` does. 0 is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabelLimits {
    pub labels: u64,
    pub name_length: u64,
    pub value_length: u64,
}

impl LabelLimits {
    /// Why `labels` (the series' full set, `__name__` included) breaks a limit, as Prometheus
    /// words it.
    fn check(&self, labels: &Labels) -> Option<String> {
        let name = get_label(labels, "__name__");
        let short: String = name.chars().take(50).collect();
        if self.labels > 0 && labels.len() as u64 > self.labels {
            return Some(format!(
                "label_limit exceeded (metric: {short}, number of labels: {}, limit: {})",
                labels.len(),
                self.labels
            ));
        }
        for (k, v) in labels {
            if self.name_length > 0 && k.len() as u64 > self.name_length {
                return Some(format!(
                    "label_name_length_limit exceeded (metric: {short}, label name: {k}, length: {}, limit: {})",
                    k.len(),
                    self.name_length
                ));
            }
            if self.value_length > 0 && v.len() as u64 > self.value_length {
                return Some(format!(
                    "label_value_length_limit exceeded (metric: {short}, label name: {k}, value length: {}, limit: {})",
                    v.len(),
                    self.value_length
                ));
            }
        }
        None
    }
}

/// A target after discovery and relabelling: its final labels (with `job` and `instance`) and the
/// scheme it is scraped over.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetInfo {
    pub labels: Labels,
    pub scheme: String,
}

impl TargetInfo {
    pub fn job(&self) -> &str {
        get_label(&self.labels, "job")
    }
    pub fn instance(&self) -> &str {
        get_label(&self.labels, "instance")
    }
}

/// The counts Prometheus reports as `scrape_*` series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrapeCounts {
    pub scraped: u64,
    pub post_relabel: u64,
    pub series_added: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Sum,
    Histogram,
    Summary,
}

/// What is remembered of a series so that a marker can be written when it goes away.
#[derive(Debug, Clone)]
struct SeenSeries {
    resource: (String, String),
    metric: String,
    kind: Kind,
    attrs: Vec<KeyValue>,
}

#[derive(Debug, Clone, Copy)]
struct StartState {
    start_ns: u64,
    last: f64,
}

/// Per-target state kept between scrapes.
#[derive(Default)]
pub struct Translator {
    starts: HashMap<String, StartState>,
    seen: HashMap<String, SeenSeries>,
    /// The receiver's `trim_metric_suffixes`.
    trim_suffixes: bool,
}

/// The result of one successful scrape.
pub struct Translation {
    pub resource_metrics: Vec<ResourceMetrics>,
    pub counts: ScrapeCounts,
}

/// Why a scrape's body was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum TranslateError {
    Parse(ParseError),
    SampleLimit { limit: u64 },
    LabelLimit(String),
}

impl std::fmt::Display for TranslateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TranslateError::Parse(e) => write!(f, "parse error: {e}"),
            TranslateError::SampleLimit { limit } => {
                write!(f, "sample limit exceeded (more than {limit} samples)")
            }
            TranslateError::LabelLimit(why) => f.write_str(why),
        }
    }
}

struct FamilyMeta<'a> {
    kind: MetricType,
    help: String,
    unit: &'a str,
}

/// One series of a histogram or summary, gathered from its `_bucket`/quantile/`_sum`/`_count` lines.
#[derive(Default)]
struct Composite {
    attrs: Vec<KeyValue>,
    key: String,
    ts_ms: Option<i64>,
    buckets: Vec<(f64, f64)>,
    quantiles: Vec<(f64, f64)>,
    sum: Option<f64>,
    count: Option<f64>,
    created: Option<f64>,
    exemplars: Vec<OtlpExemplar>,
}

struct Scalar {
    point: NumberDataPoint,
    key: String,
    created: Option<f64>,
}

struct Build {
    resource: usize,
    name: String,
    help: String,
    unit: String,
    kind: Kind,
    scalars: Vec<Scalar>,
    composites: Vec<Composite>,
    index: HashMap<String, usize>,
}

/// `trim_metric_suffixes` as otelcol does it (its translator's `TrimPromSuffixes`): on a name of
/// more than one `_`-separated word, a counter's trailing `total`, then the words of the family's
/// unit (OpenMetrics `# UNIT`; none in text 0.0.4) when the name ends with them and has more.
fn trim_suffixes(name: &str, kind: Kind, unit: &str) -> String {
    let mut words: Vec<&str> = name.split('_').collect();
    if words.len() == 1 {
        return name.to_string();
    }
    if kind == Kind::Sum && words.last() == Some(&"total") {
        words.pop();
    }
    let unit_words: Vec<&str> = unit.split('_').collect();
    if words.len() > unit_words.len() && words.ends_with(&unit_words) {
        words.truncate(words.len() - unit_words.len());
    }
    words.join("_")
}

fn ms_to_ns(ms: i64) -> u64 {
    (ms.max(0) as u64).saturating_mul(1_000_000)
}

fn secs_to_ns(s: f64) -> u64 {
    if s.is_finite() && s > 0.0 {
        // Whole seconds and the fraction apart: a 2020s timestamp times 1e9 exceeds f64's exact range.
        let whole = s.trunc();
        (whole as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(((s - whole) * 1e9).round() as u64)
    } else {
        0
    }
}

fn series_key(attrs: &Labels) -> String {
    let mut k = String::with_capacity(64);
    for (n, v) in attrs {
        k.push_str(n);
        k.push('\u{1}');
        k.push_str(v);
        k.push('\u{2}');
    }
    k
}

fn to_attrs(labels: &Labels) -> Vec<KeyValue> {
    labels.iter().map(|(k, v)| kv_str(k, v.as_str())).collect()
}

fn to_exemplar(e: &Exemplar<'_>, default_ts_ns: u64) -> OtlpExemplar {
    let mut ex = OtlpExemplar {
        time_unix_nano: e.timestamp_ms.map(ms_to_ns).unwrap_or(default_ts_ns),
        value: Some(exemplar::Value::AsDouble(e.value)),
        ..Default::default()
    };
    for l in &e.labels {
        let decoded = match l.name {
            "trace_id" => hex_bytes(&l.value, 16).map(|b| ex.trace_id = b),
            "span_id" => hex_bytes(&l.value, 8).map(|b| ex.span_id = b),
            _ => None,
        };
        if decoded.is_none() {
            ex.filtered_attributes
                .push(kv_str(l.name, l.value.as_ref()));
        }
    }
    ex
}

/// Decodes a hex id of exactly `len` bytes; anything else stays an attribute.
fn hex_bytes(s: &str, len: usize) -> Option<Vec<u8>> {
    if s.len() != len * 2 {
        return None;
    }
    (0..len)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// The resource otelcol builds for a target.
pub fn resource(job: &str, instance: &str, scheme: &str) -> Resource {
    let mut attributes = vec![
        kv_str("service.name", job),
        kv_str("service.instance.id", instance),
    ];
    let (host, port) = match instance.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (instance, None),
    };
    attributes.push(kv_str(
        "server.address",
        host.trim_start_matches('[').trim_end_matches(']'),
    ));
    if let Some(p) = port.and_then(|p| p.parse::<i64>().ok()) {
        attributes.push(kv_i64("server.port", p));
    }
    attributes.push(kv_str("url.scheme", scheme));
    Resource {
        attributes,
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE_NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

fn gauge(name: &str, unit: &str, value: f64, ts_ns: u64) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                time_unix_nano: ts_ns,
                value: Some(number_data_point::Value::AsDouble(value)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

/// The synthetic series Prometheus adds to every scrape, in the target's resource.
pub fn scrape_report(
    up: bool,
    duration_s: f64,
    counts: ScrapeCounts,
    extra: Option<(u64, f64, u64)>,
    ts_ns: u64,
) -> Vec<Metric> {
    let mut m = vec![
        gauge("up", "", if up { 1.0 } else { 0.0 }, ts_ns),
        gauge("scrape_duration_seconds", "s", duration_s, ts_ns),
        gauge("scrape_samples_scraped", "", counts.scraped as f64, ts_ns),
        gauge(
            "scrape_samples_post_metric_relabeling",
            "",
            counts.post_relabel as f64,
            ts_ns,
        ),
        gauge("scrape_series_added", "", counts.series_added as f64, ts_ns),
    ];
    if let Some((body, timeout_s, limit)) = extra {
        m.push(gauge("scrape_body_size_bytes", "By", body as f64, ts_ns));
        m.push(gauge("scrape_timeout_seconds", "s", timeout_s, ts_ns));
        m.push(gauge("scrape_sample_limit", "", limit as f64, ts_ns));
    }
    m
}

impl Translator {
    pub fn new() -> Translator {
        Translator::default()
    }

    /// A translator that names metrics without their type and unit suffixes
    /// (`trim_metric_suffixes: true`).
    pub fn trimming_suffixes(trim: bool) -> Translator {
        Translator {
            trim_suffixes: trim,
            ..Translator::default()
        }
    }

    /// Staleness markers for every series of the last scrape; called when a scrape fails or the
    /// target goes away, as Prometheus marks a dead target's series stale.
    pub fn all_stale(&mut self, ts_ns: u64, scheme: &str) -> Vec<ResourceMetrics> {
        let seen = std::mem::take(&mut self.seen);
        markers(seen.into_values(), ts_ns, scheme)
    }

    /// Translates one scrape body. `ts_ns` is the scrape's start, used for samples without their own
    /// timestamp (or all of them when timestamps are not honoured).
    pub fn translate(
        &mut self,
        body: &str,
        format: Format,
        ts_ns: u64,
        target: &TargetInfo,
        settings: &ScrapeSettings<'_>,
    ) -> Result<Translation, TranslateError> {
        let trim = self.trim_suffixes;
        let mut meta: HashMap<&str, FamilyMeta<'_>> = HashMap::new();
        let mut builds: Vec<Build> = Vec::new();
        let mut build_index: HashMap<(usize, String), usize> = HashMap::new();
        let mut resources: Vec<(String, String)> = Vec::new();
        let mut counts = ScrapeCounts::default();
        let mut start_time_s: Option<f64> = None;

        for entry in Parser::new(body, format) {
            let entry = entry.map_err(TranslateError::Parse)?;
            let sample = match entry {
                Entry::Type { family, kind } => {
                    meta.entry(family)
                        .or_insert(FamilyMeta {
                            kind,
                            help: String::new(),
                            unit: "",
                        })
                        .kind = kind;
                    continue;
                }
                Entry::Help { family, text } => {
                    meta.entry(family)
                        .or_insert(FamilyMeta {
                            kind: MetricType::Unknown,
                            help: String::new(),
                            unit: "",
                        })
                        .help = text.into_owned();
                    continue;
                }
                Entry::Unit { family, unit } => {
                    meta.entry(family)
                        .or_insert(FamilyMeta {
                            kind: MetricType::Unknown,
                            help: String::new(),
                            unit: "",
                        })
                        .unit = unit;
                    continue;
                }
                Entry::Sample(s) => s,
            };
            counts.scraped += 1;
            let Some(labels) = self.sample_labels(&sample, target, settings) else {
                continue;
            };
            counts.post_relabel += 1;
            if settings.sample_limit > 0 && counts.post_relabel > settings.sample_limit {
                return Err(TranslateError::SampleLimit {
                    limit: settings.sample_limit,
                });
            }
            if let Some(why) = settings.label_limits.check(&labels) {
                return Err(TranslateError::LabelLimit(why));
            }
            let name = get_label(&labels, "__name__").to_string();
            if let Some(re) = settings.start_time_metric {
                if start_time_s.is_none() && re.is_match(&name) {
                    start_time_s = Some(sample.value);
                }
            }
            let res_key = (
                get_label(&labels, "job").to_string(),
                get_label(&labels, "instance").to_string(),
            );
            let res = match resources.iter().position(|r| *r == res_key) {
                Some(i) => i,
                None => {
                    resources.push(res_key);
                    resources.len() - 1
                }
            };
            // The relabelled name decides the family; a rename moves a sample to another family.
            let (family, suffix, kind) = resolve(&name, &meta);
            let (otlp_kind, special) = match kind {
                MetricType::Counter => (Kind::Sum, None),
                MetricType::Histogram => (Kind::Histogram, Some("le")),
                MetricType::Summary => (Kind::Summary, Some("quantile")),
                // Gauge histograms have no cumulative meaning; their lines are kept as gauges.
                _ => (Kind::Gauge, None),
            };
            let (family, suffix) = if otlp_kind == Kind::Gauge {
                (name.clone(), "")
            } else {
                (family, suffix)
            };
            let mut attrs_labels: Labels = Vec::with_capacity(labels.len());
            let mut special_value: Option<&str> = None;
            for (k, v) in &labels {
                if k == "__name__" || k == "job" || k == "instance" {
                    continue;
                }
                if Some(k.as_str()) == special {
                    special_value = Some(v);
                    continue;
                }
                attrs_labels.push((k.clone(), v.clone()));
            }
            let key = series_key(&attrs_labels);
            let bi = *build_index.entry((res, family.clone())).or_insert_with(|| {
                let m = meta.get(family.as_str());
                let unit = m.map(|m| m.unit.to_string()).unwrap_or_default();
                builds.push(Build {
                    resource: res,
                    name: if trim {
                        trim_suffixes(&family, otlp_kind, &unit)
                    } else {
                        family.clone()
                    },
                    help: m.map(|m| m.help.clone()).unwrap_or_default(),
                    unit,
                    kind: otlp_kind,
                    scalars: Vec::new(),
                    composites: Vec::new(),
                    index: HashMap::new(),
                });
                builds.len() - 1
            });
            let b = &mut builds[bi];
            let ts_ms = if settings.honor_timestamps {
                sample.timestamp_ms
            } else {
                None
            };
            let point_ts = ts_ms.map(ms_to_ns).unwrap_or(ts_ns);
            match otlp_kind {
                Kind::Gauge | Kind::Sum => {
                    if suffix == "_created" {
                        if let Some(&i) = b.index.get(&key) {
                            b.scalars[i].created = Some(sample.value);
                        } else {
                            // `_created` ahead of its value: remember it in an empty slot.
                            b.index.insert(key.clone(), b.scalars.len());
                            b.scalars.push(Scalar {
                                point: NumberDataPoint {
                                    attributes: to_attrs(&attrs_labels),
                                    ..Default::default()
                                },
                                key,
                                created: Some(sample.value),
                            });
                        }
                        continue;
                    }
                    if suffix == "_total" {
                        // A counter is named by its sample (`foo_total`), as otelcol names it.
                        b.name = if trim {
                            trim_suffixes(&name, Kind::Sum, &b.unit)
                        } else {
                            name.clone()
                        };
                    }
                    let exemplars = sample
                        .exemplar
                        .as_ref()
                        .map(|e| vec![to_exemplar(e, point_ts)])
                        .unwrap_or_default();
                    let point = NumberDataPoint {
                        attributes: to_attrs(&attrs_labels),
                        time_unix_nano: point_ts,
                        value: Some(number_data_point::Value::AsDouble(sample.value)),
                        exemplars,
                        ..Default::default()
                    };
                    match b.index.get(&key) {
                        Some(&i) if b.scalars[i].point.value.is_none() => {
                            b.scalars[i].point = point;
                        }
                        _ => {
                            b.index.insert(key.clone(), b.scalars.len());
                            b.scalars.push(Scalar {
                                point,
                                key,
                                created: None,
                            });
                        }
                    }
                }
                Kind::Histogram | Kind::Summary => {
                    let i = match b.index.get(&key) {
                        Some(&i) => i,
                        None => {
                            b.index.insert(key.clone(), b.composites.len());
                            b.composites.push(Composite {
                                attrs: to_attrs(&attrs_labels),
                                key,
                                ..Default::default()
                            });
                            b.composites.len() - 1
                        }
                    };
                    let c = &mut b.composites[i];
                    if c.ts_ms.is_none() {
                        c.ts_ms = ts_ms;
                    }
                    match suffix {
                        "_sum" => c.sum = Some(sample.value),
                        "_count" => c.count = Some(sample.value),
                        "_created" => c.created = Some(sample.value),
                        "_bucket" => {
                            if let Some(le) = special_value.and_then(|v| v.parse::<f64>().ok()) {
                                c.buckets.push((le, sample.value));
                            }
                            if let Some(e) = &sample.exemplar {
                                c.exemplars.push(to_exemplar(e, point_ts));
                            }
                        }
                        _ => {
                            if let Some(q) = special_value.and_then(|v| v.parse::<f64>().ok()) {
                                c.quantiles.push((q, sample.value));
                            }
                        }
                    }
                }
            }
        }

        // Assemble, fix start times, and work out which series are new and which went away.
        let start_metric_ns = start_time_s.map(secs_to_ns);
        let mut now_seen: HashMap<String, SeenSeries> = HashMap::new();
        let mut per_resource: Vec<Vec<Metric>> = vec![Vec::new(); resources.len()];
        let prev_seen = std::mem::take(&mut self.seen);
        for b in builds {
            let res_key = &resources[b.resource];
            let prefix = format!("{}\u{3}{}\u{3}{}\u{3}", res_key.0, res_key.1, b.name);
            let mut remember =
                |key: &str,
                 attrs: &Vec<KeyValue>,
                 kind: Kind,
                 seen: &mut HashMap<String, SeenSeries>| {
                    let full = format!("{prefix}{key}");
                    if !prev_seen.contains_key(&full) && !seen.contains_key(&full) {
                        counts.series_added += 1;
                    }
                    seen.insert(
                        full.clone(),
                        SeenSeries {
                            resource: res_key.clone(),
                            metric: b.name.clone(),
                            kind,
                            attrs: attrs.clone(),
                        },
                    );
                    full
                };
            let data = match b.kind {
                Kind::Gauge | Kind::Sum => {
                    let mut points = Vec::with_capacity(b.scalars.len());
                    for s in b.scalars {
                        let Some(value) = s.point.value.as_ref().map(|v| match v {
                            number_data_point::Value::AsDouble(d) => *d,
                            number_data_point::Value::AsInt(i) => *i as f64,
                        }) else {
                            continue;
                        };
                        let mut p = s.point;
                        let full = remember(&s.key, &p.attributes, b.kind, &mut now_seen);
                        if b.kind == Kind::Sum {
                            p.start_time_unix_nano = self.start_time(
                                &full,
                                value,
                                p.time_unix_nano,
                                s.created.map(secs_to_ns).or(start_metric_ns),
                            );
                        }
                        points.push(p);
                    }
                    if b.kind == Kind::Sum {
                        Data::Sum(Sum {
                            data_points: points,
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            is_monotonic: true,
                        })
                    } else {
                        Data::Gauge(Gauge {
                            data_points: points,
                        })
                    }
                }
                Kind::Histogram => {
                    let mut points = Vec::with_capacity(b.composites.len());
                    for mut c in b.composites {
                        let time = c.ts_ms.map(ms_to_ns).unwrap_or(ts_ns);
                        c.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                        let inf_count = c
                            .buckets
                            .last()
                            .filter(|b| b.0 == f64::INFINITY)
                            .map(|b| b.1);
                        let count = c.count.or(inf_count).unwrap_or(0.0);
                        let mut bounds = Vec::with_capacity(c.buckets.len());
                        let mut counts_out = Vec::with_capacity(c.buckets.len() + 1);
                        let mut prev = 0.0;
                        for (le, cum) in &c.buckets {
                            if *le == f64::INFINITY {
                                break;
                            }
                            bounds.push(*le);
                            counts_out.push((cum - prev).max(0.0) as u64);
                            prev = *cum;
                        }
                        counts_out.push((count - prev).max(0.0) as u64);
                        let full = remember(&c.key, &c.attrs, Kind::Histogram, &mut now_seen);
                        let start = self.start_time(
                            &full,
                            count,
                            time,
                            c.created.map(secs_to_ns).or(start_metric_ns),
                        );
                        points.push(HistogramDataPoint {
                            attributes: c.attrs,
                            start_time_unix_nano: start,
                            time_unix_nano: time,
                            count: count.max(0.0) as u64,
                            sum: c.sum,
                            bucket_counts: counts_out,
                            explicit_bounds: bounds,
                            exemplars: c.exemplars,
                            ..Default::default()
                        });
                    }
                    Data::Histogram(Histogram {
                        data_points: points,
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    })
                }
                Kind::Summary => {
                    let mut points = Vec::with_capacity(b.composites.len());
                    for mut c in b.composites {
                        let time = c.ts_ms.map(ms_to_ns).unwrap_or(ts_ns);
                        c.quantiles.sort_by(|a, b| a.0.total_cmp(&b.0));
                        let count = c.count.unwrap_or(0.0);
                        let full = remember(&c.key, &c.attrs, Kind::Summary, &mut now_seen);
                        let start = self.start_time(
                            &full,
                            count,
                            time,
                            c.created.map(secs_to_ns).or(start_metric_ns),
                        );
                        points.push(SummaryDataPoint {
                            attributes: c.attrs,
                            start_time_unix_nano: start,
                            time_unix_nano: time,
                            count: count.max(0.0) as u64,
                            sum: c.sum.unwrap_or(0.0),
                            quantile_values: c
                                .quantiles
                                .iter()
                                .map(|(q, v)| ValueAtQuantile {
                                    quantile: *q,
                                    value: *v,
                                })
                                .collect(),
                            ..Default::default()
                        });
                    }
                    Data::Summary(Summary {
                        data_points: points,
                    })
                }
            };
            per_resource[b.resource].push(Metric {
                name: b.name,
                description: b.help,
                unit: b.unit,
                data: Some(data),
                ..Default::default()
            });
        }

        // Series of the last scrape that are missing now get their marker.
        let gone: Vec<SeenSeries> = prev_seen
            .iter()
            .filter(|(k, _)| !now_seen.contains_key(*k))
            .map(|(_, v)| v.clone())
            .collect();
        let live: HashSet<&String> = now_seen.keys().collect();
        self.starts.retain(|k, _| live.contains(k));
        self.seen = now_seen;

        let mut out: Vec<ResourceMetrics> = resources
            .iter()
            .zip(per_resource)
            .map(|((job, inst), metrics)| ResourceMetrics {
                resource: Some(resource(job, inst, &target.scheme)),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope()),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        out.extend(markers(gone.into_iter(), ts_ns, &target.scheme));
        Ok(Translation {
            resource_metrics: out,
            counts,
        })
    }

    /// Builds a sample's label set: its own labels, the target's labels merged as `honor_labels`
    /// says, then `metric_relabel_configs`. `None` when a rule drops the sample.
    fn sample_labels(
        &self,
        sample: &Sample<'_>,
        target: &TargetInfo,
        settings: &ScrapeSettings<'_>,
    ) -> Option<Labels> {
        let mut labels: Labels = Vec::with_capacity(sample.labels.len() + target.labels.len() + 1);
        labels.push(("__name__".to_string(), sample.name.to_string()));
        for l in &sample.labels {
            labels.push((l.name.to_string(), l.value.to_string()));
        }
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, v) in &target.labels {
            match labels.binary_search_by(|(n, _)| n.as_str().cmp(k)) {
                Ok(i) => {
                    if !settings.honor_labels {
                        // The target's label wins; the scraped one is kept as `exported_<name>`,
                        // or dropped when empty.
                        let scraped = std::mem::replace(&mut labels[i].1, v.clone());
                        if !scraped.is_empty() {
                            relabel::set_label(&mut labels, &format!("exported_{k}"), &scraped);
                        }
                    }
                }
                Err(i) => labels.insert(i, (k.clone(), v.clone())),
            }
        }
        if !settings.metric_relabel.is_empty()
            && !relabel::process(settings.metric_relabel, &mut labels)
        {
            return None;
        }
        Some(labels)
    }

    /// The start time of a cumulative series: the given one (`_created` or the start-time metric),
    /// else the time it was first seen, moved forward when the value goes down (a reset).
    fn start_time(&mut self, key: &str, value: f64, time_ns: u64, given: Option<u64>) -> u64 {
        if let Some(g) = given.filter(|g| *g > 0) {
            self.starts.insert(
                key.to_string(),
                StartState {
                    start_ns: g,
                    last: value,
                },
            );
            return g;
        }
        match self.starts.get_mut(key) {
            Some(s) => {
                if value < s.last {
                    s.start_ns = time_ns.saturating_sub(1_000_000);
                }
                s.last = value;
                s.start_ns
            }
            None => {
                self.starts.insert(
                    key.to_string(),
                    StartState {
                        start_ns: time_ns,
                        last: value,
                    },
                );
                time_ns
            }
        }
    }
}

/// Splits a (possibly relabelled) sample name into its family, the suffix that tied it there, and
/// the family's declared type. A name that fits no declared family is its own untyped family.
fn resolve(name: &str, meta: &HashMap<&str, FamilyMeta<'_>>) -> (String, &'static str, MetricType) {
    if let Some(m) = meta.get(name) {
        return (name.to_string(), "", m.kind);
    }
    for suffix in [
        "_total", "_created", "_bucket", "_count", "_sum", "_gcount", "_gsum", "_info",
    ] {
        if let Some(base) = name.strip_suffix(suffix) {
            if let Some(m) = meta.get(base) {
                if m.kind.accepts_suffix(suffix) {
                    return (base.to_string(), suffix, m.kind);
                }
            }
            // 0.0.4 exporters declare a counter by its `_total` name and write `<base>_created`.
            if suffix == "_created" {
                let total = format!("{base}_total");
                if meta
                    .get(total.as_str())
                    .is_some_and(|m| m.kind == MetricType::Counter)
                {
                    return (total, suffix, MetricType::Counter);
                }
            }
        }
    }
    (name.to_string(), "", MetricType::Unknown)
}

fn markers(
    gone: impl Iterator<Item = SeenSeries>,
    ts_ns: u64,
    scheme: &str,
) -> Vec<ResourceMetrics> {
    let mut by_res: Vec<((String, String), Vec<Metric>)> = Vec::new();
    for s in gone {
        let idx = match by_res.iter().position(|(r, _)| *r == s.resource) {
            Some(i) => i,
            None => {
                by_res.push((s.resource.clone(), Vec::new()));
                by_res.len() - 1
            }
        };
        let data = match s.kind {
            Kind::Gauge => Data::Gauge(Gauge {
                data_points: vec![stale_number(s.attrs, ts_ns)],
            }),
            Kind::Sum => Data::Sum(Sum {
                data_points: vec![stale_number(s.attrs, ts_ns)],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            }),
            Kind::Histogram => Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: s.attrs,
                    time_unix_nano: ts_ns,
                    flags: FLAG_NO_RECORDED_VALUE,
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
            Kind::Summary => Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    attributes: s.attrs,
                    time_unix_nano: ts_ns,
                    flags: FLAG_NO_RECORDED_VALUE,
                    ..Default::default()
                }],
            }),
        };
        by_res[idx].1.push(Metric {
            name: s.metric,
            data: Some(data),
            ..Default::default()
        });
    }
    by_res
        .into_iter()
        .map(|((job, inst), metrics)| ResourceMetrics {
            resource: Some(resource(&job, &inst, scheme)),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect()
}

fn stale_number(attrs: Vec<KeyValue>, ts_ns: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        time_unix_nano: ts_ns,
        flags: FLAG_NO_RECORDED_VALUE,
        ..Default::default()
    }
}
