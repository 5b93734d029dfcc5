//! `awsemf`: metrics to CloudWatch as Embedded Metric Format (EMF) log events, sent with
//! CloudWatch Logs' `PutLogEvents` (the log group and stream are created when missing), or
//! printed on stdout (`output_destination: stdout`) for an agent that forwards them. After
//! otelcol's awsemfexporter: data points that share their labels (and namespace, log group and
//! stream) become one JSON event whose `_aws.CloudWatchMetrics` names the metrics and their
//! dimension sets; `metric_declarations` choose which metrics and dimensions CloudWatch extracts.
//!
//! Cumulative sums (and a summary's count and sum) are sent as deltas, as CloudWatch wants: the
//! first point of a series only sets the baseline unless `retain_initial_value_of_delta_metric`.
//! That baseline table is bounded ([`MAX_SERIES`]); series unseen for [`SERIES_TTL`] are dropped
//! first, and a new series refused when it is full is counted in
//! `vigil_awsemf_series_refused{exporter}`.
//!
//! A batch becomes one request of several `PutLogEvents` calls (one per log stream, split at
//! CloudWatch's limits by `helper::cwlogs`, which `awscloudwatchlogs` shares); the request
//! remembers how many went through, so a retry resends only the rest and never duplicates an event.

use crate::helper::aws::{CredentialSource, JsonApi};
use crate::helper::cwlogs::{self, CwLogs, CwRequest, EventCounters};
use crate::helper::{
    Delivered, QueueConfig, RetryConfig, SendError, SendSettings, SendStack, Sender,
};
use async_trait::async_trait;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, ResourceMetrics,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_core::attrs::value_to_string;
use vigil_core::config::duration;
use vigil_core::factory::{DynExporterFactory, ExporterFactory, FactoryBase};
use vigil_core::{ComponentId, ConfigError, Exporter, Host, Settings, Signal};
use vigil_core::{Stability, Telemetry};

/// Series whose previous value is kept for deltas.
pub const MAX_SERIES: usize = 100_000;
/// A series not seen for this long loses its baseline first when the table is full.
pub const SERIES_TTL: Duration = Duration::from_secs(300);
fn default_log_group() -> String {
    String::new()
}
fn default_version() -> String {
    "1".into()
}
fn default_output() -> String {
    "cloudwatch".into()
}
fn default_rollup() -> String {
    "NoDimensionRollup".into()
}
fn default_separator() -> String {
    ";".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

crate::aws_session_config! {
    /// The `awsemf` exporter config (otelcol's keys and defaults).
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct AwsEmfConfig {
        /// Supports `{ClusterName}`, `{TaskId}`, `{NodeName}`, `{ContainerInstanceId}`,
        /// `{TaskDefinitionFamily}` and any resource attribute name; empty: `/metrics/<namespace>`.
        #[serde(default = "default_log_group")]
        pub log_group_name: String,
        /// The same placeholders; empty: `otel-stream`.
        #[serde(default)]
        pub log_stream_name: String,
        /// Empty: `service.namespace/service.name` of the resource, else `default`.
        #[serde(default)]
        pub namespace: String,
        #[serde(default)]
        pub retain_initial_value_of_delta_metric: bool,
        /// `NoDimensionRollup`, `SingleDimensionRollupOnly` or `ZeroAndSingleDimensionRollup`.
        #[serde(default = "default_rollup")]
        pub dimension_rollup_option: String,
        /// Days (0: never expire), set on a log group this exporter creates.
        #[serde(default)]
        pub log_retention: i64,
        /// Tags of a log group this exporter creates.
        #[serde(default)]
        pub tags: BTreeMap<String, String>,
        /// Attribute keys whose values are JSON text, written as the JSON they hold.
        #[serde(default)]
        pub parse_json_encoded_attr_values: Vec<String>,
        #[serde(default)]
        pub metric_declarations: Vec<MetricDeclaration>,
        #[serde(default)]
        pub metric_descriptors: Vec<MetricDescriptor>,
        /// `cloudwatch` or `stdout`.
        #[serde(default = "default_output")]
        pub output_destination: String,
        /// Reshapes EKS Fargate labels; not built in vigil, so `true` is refused.
        #[serde(default)]
        pub eks_fargate_container_insights_enabled: bool,
        /// Send the fields without `_aws` (no metrics extracted).
        #[serde(default)]
        pub disable_metric_extraction: bool,
        #[serde(default)]
        pub resource_to_telemetry_conversion: ResourceToTelemetry,
        /// A summary's quantiles as separate values (label `quantile`) instead of statistics.
        #[serde(default)]
        pub detailed_metrics: bool,
        /// EMF version: `1` (with `_aws`) or `0`.
        #[serde(default = "default_version")]
        pub version: String,
        /// Accepted for otelcol's configs (AppSignals' middleware is otelcol's own).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub middleware: Option<Value>,
        #[serde(default = "default_timeout", with = "duration")]
        pub timeout: Duration,
        #[serde(default)]
        pub retry_on_failure: RetryConfig,
        #[serde(default)]
        pub sending_queue: QueueConfig,
    }
}

/// `resource_to_telemetry_conversion`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceToTelemetry {
    #[serde(default)]
    pub enabled: bool,
}

/// One `metric_declarations` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricDeclaration {
    #[serde(default)]
    pub dimensions: Vec<Vec<String>>,
    #[serde(default)]
    pub metric_name_selectors: Vec<String>,
    #[serde(default)]
    pub label_matchers: Vec<LabelMatcher>,
}

/// `label_matchers` entry: the values of `label_names` joined by `separator` match `regex`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabelMatcher {
    #[serde(default)]
    pub label_names: Vec<String>,
    #[serde(default = "default_separator")]
    pub separator: String,
    #[serde(default)]
    pub regex: String,
}

/// `metric_descriptors` entry: the unit of a metric.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricDescriptor {
    #[serde(default)]
    pub metric_name: String,
    #[serde(default)]
    pub unit: String,
    #[serde(default)]
    pub overwrite: bool,
}

/// CloudWatch's units.
const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

impl AwsEmfConfig {
    fn validate(&self, id: &ComponentId) -> Result<(), ConfigError> {
        let at = |k: &str, m: String| ConfigError::at(k, m);
        self.session().validate(at)?;
        cwlogs::validate_retention(self.log_retention)?;
        cwlogs::validate_tags(&self.tags)?;
        if !matches!(
            self.output_destination.to_ascii_lowercase().as_str(),
            "cloudwatch" | "stdout"
        ) {
            return Err(at(
                "output_destination",
                format!(
                    "{:?} is neither \"cloudwatch\" nor \"stdout\"",
                    self.output_destination
                ),
            ));
        }
        if !matches!(self.version.as_str(), "0" | "1") {
            return Err(at(
                "version",
                format!("{:?} is neither \"0\" nor \"1\"", self.version),
            ));
        }
        if !matches!(
            self.dimension_rollup_option.as_str(),
            "NoDimensionRollup" | "SingleDimensionRollupOnly" | "ZeroAndSingleDimensionRollup" | ""
        ) {
            return Err(at(
                "dimension_rollup_option",
                format!(
                    "{:?} is not NoDimensionRollup, SingleDimensionRollupOnly or \
                     ZeroAndSingleDimensionRollup",
                    self.dimension_rollup_option
                ),
            ));
        }
        if self.eks_fargate_container_insights_enabled {
            return Err(at(
                "eks_fargate_container_insights_enabled",
                "reshaping EKS Fargate labels is not built in vigil; leave it false".into(),
            ));
        }
        for (i, d) in self.metric_descriptors.iter().enumerate() {
            if !d.metric_name.is_empty() && !UNITS.contains(&d.unit.as_str()) {
                return Err(at(
                    &format!("metric_descriptors::{i}::unit"),
                    format!(
                        "{:?} is not a CloudWatch unit ({})",
                        d.unit,
                        UNITS.join(", ")
                    ),
                ));
            }
        }
        compile_declarations(&self.metric_declarations)?;
        self.settings().validate(id)
    }

    fn settings(&self) -> SendSettings {
        SendSettings {
            timeout: self.timeout,
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
        }
    }
}

/// A declaration with its regexes compiled and dimension sets cleaned as otelcol cleans them
/// (names deduplicated and sorted in a set, repeated sets dropped).
struct Declaration {
    dimensions: Vec<Vec<String>>,
    selectors: Vec<regex::Regex>,
    matchers: Vec<(Vec<String>, String, regex::Regex)>,
}

impl Declaration {
    fn matches_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.is_empty()
            || self.matchers.iter().any(|(names, sep, re)| {
                let joined = names
                    .iter()
                    .map(|n| labels.get(n).map_or("", String::as_str))
                    .collect::<Vec<_>>()
                    .join(sep);
                re.is_match(&joined)
            })
    }

    fn matches_name(&self, name: &str) -> bool {
        self.selectors.iter().any(|r| r.is_match(name))
    }

    /// The dimension sets all of whose names are labels of the point.
    fn dimensions_for(&self, labels: &BTreeMap<String, String>) -> Vec<Vec<String>> {
        self.dimensions
            .iter()
            .filter(|set| set.iter().all(|d| labels.contains_key(d)))
            .cloned()
            .collect()
    }
}

fn compile_declarations(decls: &[MetricDeclaration]) -> Result<Vec<Declaration>, ConfigError> {
    let mut out = Vec::with_capacity(decls.len());
    for (i, d) in decls.iter().enumerate() {
        let at =
            |k: String, m: String| ConfigError::at(format!("metric_declarations::{i}::{k}"), m);
        if d.metric_name_selectors.is_empty() {
            return Err(at(
                "metric_name_selectors".into(),
                "must name at least one metric (a regular expression)".into(),
            ));
        }
        let mut selectors = Vec::new();
        for (j, s) in d.metric_name_selectors.iter().enumerate() {
            selectors.push(
                vigil_core::config::re2_regex(s).map_err(|e| {
                    at(format!("metric_name_selectors::{j}"), format!("{s:?}: {e}"))
                })?,
            );
        }
        let mut matchers = Vec::new();
        for (j, m) in d.label_matchers.iter().enumerate() {
            if m.label_names.is_empty() {
                return Err(at(
                    format!("label_matchers::{j}::label_names"),
                    "must not be empty".into(),
                ));
            }
            let re = vigil_core::config::re2_regex(&m.regex).map_err(|e| {
                at(
                    format!("label_matchers::{j}::regex"),
                    format!("{:?}: {e}", m.regex),
                )
            })?;
            matchers.push((m.label_names.clone(), m.separator.clone(), re));
        }
        let mut dimensions: Vec<Vec<String>> = Vec::new();
        for set in &d.dimensions {
            let mut s = set.clone();
            s.sort();
            s.dedup();
            if s.len() > 30 {
                return Err(at(
                    "dimensions".into(),
                    format!(
                        "a dimension set has {} names; CloudWatch takes at most 30",
                        s.len()
                    ),
                ));
            }
            if !dimensions.contains(&s) {
                dimensions.push(s);
            }
        }
        out.push(Declaration {
            dimensions,
            selectors,
            matchers,
        });
    }
    Ok(out)
}

/// otelcol's placeholders and the resource attribute each falls back to.
const PLACEHOLDERS: &[(&str, &str)] = &[
    ("ClusterName", "aws.ecs.cluster.name"),
    ("TaskId", "aws.ecs.task.id"),
    ("NodeName", "k8s.node.name"),
    ("ContainerInstanceId", "aws.ecs.container.instance.id"),
    ("TaskDefinitionFamily", "aws.ecs.task.family"),
];

/// Replaces each `{Name}` with the resource attribute `Name` (or its otelcol fallback), and
/// with `undefined` when neither is there, as otelcol does.
fn replace_placeholders(pattern: &str, attrs: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        let name = &rest[start + 1..start + len];
        let value = attrs.get(name).or_else(|| {
            PLACEHOLDERS
                .iter()
                .find(|(p, _)| *p == name)
                .and_then(|(_, fallback)| attrs.get(*fallback))
        });
        match value {
            Some(v) if !v.is_empty() => out.push_str(v),
            _ => out.push_str("undefined"),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

/// An OTel unit as CloudWatch names it (otelcol's table); empty when CloudWatch has none.
fn cloudwatch_unit(unit: &str) -> &str {
    match unit {
        "ms" => "Milliseconds",
        "s" => "Seconds",
        "us" => "Microseconds",
        "By" => "Bytes",
        "bit" => "Bits",
        "By/s" => "Bytes/Second",
        "%" => "Percent",
        u if UNITS.contains(&u) => u,
        _ => "",
    }
}

fn attr_map(attrs: &[KeyValue]) -> BTreeMap<String, String> {
    attrs
        .iter()
        .filter_map(|kv| {
            let v = kv.value.as_ref()?.value.as_ref()?;
            Some((kv.key.clone(), value_to_string(v)))
        })
        .collect()
}

/// Baselines of cumulative series, bounded by [`MAX_SERIES`].
#[derive(Default)]
struct Baselines {
    seen: HashMap<String, (f64, f64, Instant)>,
}

impl Baselines {
    /// The delta since the last point of `key` (value and, for summaries, count), `None` for a
    /// first point. A value below the last one is a reset: the new value is the delta.
    fn delta(
        &mut self,
        key: String,
        value: f64,
        count: f64,
        refused: &metrics::Counter,
    ) -> Option<(f64, f64)> {
        let now = Instant::now();
        if let Some(prev) = self.seen.get_mut(&key) {
            let (dv, dc) = if value < prev.0 || count < prev.1 {
                (value, count)
            } else {
                (value - prev.0, count - prev.1)
            };
            *prev = (value, count, now);
            return Some((dv, dc));
        }
        if self.seen.len() >= MAX_SERIES {
            self.seen
                .retain(|_, v| now.duration_since(v.2) < SERIES_TTL);
        }
        if self.seen.len() >= MAX_SERIES {
            refused.increment(1);
            return None;
        }
        self.seen.insert(key, (value, count, now));
        None
    }
}

/// The points that share labels: one EMF event.
struct Group {
    namespace: String,
    log_group: String,
    log_stream: String,
    labels: BTreeMap<String, String>,
    receiver: String,
    kind: &'static str,
    /// Metric name → (value, CloudWatch unit).
    metrics: BTreeMap<String, (Value, String)>,
}

fn number(v: f64) -> Option<Value> {
    serde_json::Number::from_f64(v).map(Value::Number)
}

fn point_value(v: &Option<number_data_point::Value>) -> Option<(f64, Value)> {
    match v {
        Some(number_data_point::Value::AsInt(i)) => Some((*i as f64, json!(i))),
        Some(number_data_point::Value::AsDouble(d)) if d.is_finite() => Some((*d, number(*d)?)),
        _ => None,
    }
}

/// The translator: config compiled, baselines kept across batches.
pub struct Translator {
    cfg: AwsEmfConfig,
    declarations: Vec<Declaration>,
    descriptors: HashMap<String, MetricDescriptor>,
    baselines: Mutex<Baselines>,
    refused: metrics::Counter,
}

impl Translator {
    fn new(cfg: AwsEmfConfig, id: &ComponentId) -> Result<Translator, ConfigError> {
        let declarations = compile_declarations(&cfg.metric_declarations)?;
        let descriptors = cfg
            .metric_descriptors
            .iter()
            .filter(|d| !d.metric_name.is_empty())
            .map(|d| (d.metric_name.clone(), d.clone()))
            .collect();
        Ok(Translator {
            cfg,
            declarations,
            descriptors,
            baselines: Mutex::default(),
            refused: metrics::counter!("vigil_awsemf_series_refused", "exporter" => id.to_string()),
        })
    }

    fn unit(&self, name: &str, otel: &str) -> String {
        let unit = cloudwatch_unit(otel);
        match self.descriptors.get(name) {
            Some(d) if d.overwrite || unit.is_empty() => d.unit.clone(),
            _ => unit.to_string(),
        }
    }

    fn cumulative_delta(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        v: f64,
        c: f64,
    ) -> Option<(f64, f64)> {
        let key = format!("{name}\u{0}{labels:?}");
        let d = vigil_core::lock(&self.baselines).delta(key, v, c, &self.refused);
        match d {
            Some(d) => Some(d),
            None if self.cfg.retain_initial_value_of_delta_metric => Some((v, c)),
            None => None,
        }
    }

    /// The EMF events of a batch, by (log group, log stream), each with its timestamp (ms).
    pub fn translate(
        &self,
        rms: &[ResourceMetrics],
        now_ms: i64,
    ) -> BTreeMap<(String, String), Vec<(i64, String)>> {
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        for rm in rms {
            let res = attr_map(rm.resource.as_ref().map_or(&[][..], |r| &r.attributes));
            let namespace = if !self.cfg.namespace.is_empty() {
                self.cfg.namespace.clone()
            } else {
                match (res.get("service.namespace"), res.get("service.name")) {
                    (Some(ns), Some(n)) => format!("{ns}/{n}"),
                    (None, Some(n)) => n.clone(),
                    (Some(ns), None) => ns.clone(),
                    (None, None) => "default".into(),
                }
            };
            let log_group = if self.cfg.log_group_name.is_empty() {
                format!("/metrics/{namespace}")
            } else {
                replace_placeholders(&self.cfg.log_group_name, &res)
            };
            let log_stream = if self.cfg.log_stream_name.is_empty() {
                "otel-stream".to_string()
            } else {
                replace_placeholders(&self.cfg.log_stream_name, &res)
            };
            let receiver = res.get("receiver").cloned().unwrap_or_default();
            for sm in &rm.scope_metrics {
                let scope = sm.scope.as_ref().map_or("", |s| s.name.as_str());
                for m in &sm.metrics {
                    let Some(data) = &m.data else { continue };
                    let mut add = |kind: &'static str,
                                   attrs: &[KeyValue],
                                   name: String,
                                   value: Value,
                                   unit: String| {
                        let mut labels = if self.cfg.resource_to_telemetry_conversion.enabled {
                            res.clone()
                        } else {
                            BTreeMap::new()
                        };
                        labels.extend(attr_map(attrs));
                        if !scope.is_empty() {
                            labels.insert("OTelLib".into(), scope.to_string());
                        }
                        let key = format!("{namespace}\u{0}{log_group}\u{0}{log_stream}\u{0}{kind}\u{0}{labels:?}");
                        let g = groups.entry(key).or_insert_with(|| Group {
                            namespace: namespace.clone(),
                            log_group: log_group.clone(),
                            log_stream: log_stream.clone(),
                            labels,
                            receiver: receiver.clone(),
                            kind,
                            metrics: BTreeMap::new(),
                        });
                        g.metrics.insert(name, (value, unit));
                    };
                    let labels_of = |attrs: &[KeyValue]| {
                        let mut l = if self.cfg.resource_to_telemetry_conversion.enabled {
                            res.clone()
                        } else {
                            BTreeMap::new()
                        };
                        l.extend(attr_map(attrs));
                        l
                    };
                    let unit = self.unit(&m.name, &m.unit);
                    match data {
                        Data::Gauge(g) => {
                            for p in &g.data_points {
                                if let Some((_, v)) = point_value(&p.value) {
                                    add("gauge", &p.attributes, m.name.clone(), v, unit.clone());
                                }
                            }
                        }
                        Data::Sum(s) => {
                            let cumulative = s.aggregation_temporality
                                == AggregationTemporality::Cumulative as i32;
                            for p in &s.data_points {
                                let Some((f, v)) = point_value(&p.value) else {
                                    continue;
                                };
                                let v = if cumulative {
                                    match self.cumulative_delta(
                                        &m.name,
                                        &labels_of(&p.attributes),
                                        f,
                                        0.0,
                                    ) {
                                        Some((d, _)) => match number(d) {
                                            Some(n) => n,
                                            None => continue,
                                        },
                                        None => continue,
                                    }
                                } else {
                                    v
                                };
                                add("counter", &p.attributes, m.name.clone(), v, unit.clone());
                            }
                        }
                        Data::Histogram(h) => {
                            for p in &h.data_points {
                                let v = json!({
                                    "Max": p.max.unwrap_or(0.0), "Min": p.min.unwrap_or(0.0),
                                    "Count": p.count, "Sum": p.sum.unwrap_or(0.0),
                                });
                                add("histogram", &p.attributes, m.name.clone(), v, unit.clone());
                            }
                        }
                        Data::ExponentialHistogram(h) => {
                            for p in &h.data_points {
                                let (values, counts) = exp_buckets(p);
                                let v = json!({
                                    "Values": values, "Counts": counts,
                                    "Max": p.max.unwrap_or(0.0), "Min": p.min.unwrap_or(0.0),
                                    "Count": p.count, "Sum": p.sum.unwrap_or(0.0),
                                });
                                add("histogram", &p.attributes, m.name.clone(), v, unit.clone());
                            }
                        }
                        Data::Summary(s) => {
                            for p in &s.data_points {
                                if self.cfg.detailed_metrics {
                                    for q in &p.quantile_values {
                                        let mut attrs = p.attributes.clone();
                                        attrs.push(vigil_core::attrs::kv_str(
                                            "quantile",
                                            q.quantile.to_string(),
                                        ));
                                        if let Some(v) = number(q.value) {
                                            add("summary", &attrs, m.name.clone(), v, unit.clone());
                                        }
                                    }
                                    continue;
                                }
                                let Some((sum, count)) = self.cumulative_delta(
                                    &m.name,
                                    &labels_of(&p.attributes),
                                    p.sum,
                                    p.count as f64,
                                ) else {
                                    continue;
                                };
                                let q = |want: f64| {
                                    p.quantile_values
                                        .iter()
                                        .find(|q| q.quantile == want)
                                        .map_or(0.0, |q| q.value)
                                };
                                let v = json!({"Max": q(1.0), "Min": q(0.0), "Count": count as u64, "Sum": sum});
                                add("summary", &p.attributes, m.name.clone(), v, unit.clone());
                            }
                        }
                    }
                }
            }
        }
        let mut out: BTreeMap<(String, String), Vec<(i64, String)>> = BTreeMap::new();
        for g in groups.into_values() {
            let event = self.event(&g, now_ms);
            out.entry((g.log_group, g.log_stream))
                .or_default()
                .push((now_ms, event));
        }
        out
    }

    /// One group as EMF JSON.
    fn event(&self, g: &Group, now_ms: i64) -> String {
        let mut fields = Map::new();
        for (k, v) in &g.labels {
            fields.insert(k.clone(), Value::String(v.clone()));
        }
        for (name, (v, _)) in &g.metrics {
            fields.insert(name.clone(), v.clone());
        }
        if g.receiver == "prometheus" {
            fields.insert("prom_metric_type".into(), Value::String(g.kind.into()));
        }
        for key in &self.cfg.parse_json_encoded_attr_values {
            if let Some(Value::String(s)) = fields.get(key) {
                if let Ok(parsed) = serde_json::from_str::<Value>(s) {
                    fields.insert(key.clone(), parsed);
                }
            }
        }
        let measurements = if self.cfg.disable_metric_extraction {
            Vec::new()
        } else {
            self.measurements(g)
        };
        if self.cfg.version == "0" {
            fields.insert("Timestamp".into(), Value::String(now_ms.to_string()));
            if !measurements.is_empty() {
                fields.insert("Version".into(), json!("0"));
                fields.insert("CloudWatchMetrics".into(), Value::Array(measurements));
            }
        } else if !measurements.is_empty() {
            fields.insert("Version".into(), json!("1"));
            fields.insert(
                "_aws".into(),
                json!({"CloudWatchMetrics": measurements, "Timestamp": now_ms}),
            );
        }
        Value::Object(fields).to_string()
    }

    /// `_aws.CloudWatchMetrics`: every metric with all labels as one dimension set (plus the
    /// rollups), or, with declarations, the metrics and sets they choose.
    fn measurements(&self, g: &Group) -> Vec<Value> {
        let rollup = self.rollup(&g.labels);
        let metric = |name: &str, unit: &str| {
            if unit.is_empty() {
                json!({"Name": name})
            } else {
                json!({"Name": name, "Unit": unit})
            }
        };
        if self.declarations.is_empty() {
            let all: Vec<String> = g.labels.keys().cloned().collect();
            let only_lib = all.len() <= 1 || (all.len() == 2 && g.labels.contains_key("OTelLib"));
            let single = matches!(
                self.cfg.dimension_rollup_option.as_str(),
                "SingleDimensionRollupOnly" | "ZeroAndSingleDimensionRollup"
            );
            let mut dims = if !rollup.is_empty() && only_lib && single {
                Vec::new()
            } else {
                vec![all]
            };
            dims.extend(rollup);
            let metrics: Vec<Value> = g.metrics.iter().map(|(n, (_, u))| metric(n, u)).collect();
            return vec![json!({"Namespace": g.namespace, "Dimensions": dims, "Metrics": metrics})];
        }
        let decls: Vec<&Declaration> = self
            .declarations
            .iter()
            .filter(|d| d.matches_labels(&g.labels))
            .collect();
        if decls.is_empty() {
            return Vec::new();
        }
        // Metrics that match the same declarations share one measurement.
        let mut by_decls: BTreeMap<Vec<usize>, Vec<Value>> = BTreeMap::new();
        for (name, (_, unit)) in &g.metrics {
            let idx: Vec<usize> = decls
                .iter()
                .enumerate()
                .filter(|(_, d)| d.matches_name(name))
                .map(|(i, _)| i)
                .collect();
            if !idx.is_empty() {
                by_decls.entry(idx).or_default().push(metric(name, unit));
            }
        }
        let mut out = Vec::new();
        for (idx, metrics) in by_decls {
            let mut dims: Vec<Vec<String>> = Vec::new();
            for i in idx {
                for set in decls[i].dimensions_for(&g.labels) {
                    if !dims.contains(&set) {
                        dims.push(set);
                    }
                }
            }
            for set in &rollup {
                if !dims.contains(set) {
                    dims.push(set.clone());
                }
            }
            if !dims.is_empty() {
                out.push(json!({"Namespace": g.namespace, "Dimensions": dims, "Metrics": metrics}));
            }
        }
        out
    }

    /// otelcol's rollup: `[OTelLib]` (zero), and `[OTelLib, label]` for each label (single).
    fn rollup(&self, labels: &BTreeMap<String, String>) -> Vec<Vec<String>> {
        let opt = self.cfg.dimension_rollup_option.as_str();
        let lib = labels.contains_key("OTelLib");
        let base = || {
            if lib {
                vec!["OTelLib".to_string()]
            } else {
                Vec::new()
            }
        };
        let mut out = Vec::new();
        if opt == "ZeroAndSingleDimensionRollup" {
            out.push(base());
        }
        if matches!(
            opt,
            "ZeroAndSingleDimensionRollup" | "SingleDimensionRollupOnly"
        ) {
            for k in labels.keys().filter(|k| *k != "OTelLib") {
                let mut set = base();
                set.push(k.clone());
                out.push(set);
            }
        }
        out
    }
}

/// An exponential histogram's buckets as (midpoint, count) arrays, largest first as otelcol
/// writes them; empty buckets are left out.
fn exp_buckets(
    p: &opentelemetry_proto::tonic::metrics::v1::ExponentialHistogramDataPoint,
) -> (Vec<f64>, Vec<f64>) {
    let base = 2f64.powf(2f64.powi(-p.scale));
    let mid = |index: i64| {
        let lo = base.powf(index as f64);
        (lo + lo * base) / 2.0
    };
    let mut values = Vec::new();
    let mut counts = Vec::new();
    if let Some(pos) = &p.positive {
        for (i, c) in pos.bucket_counts.iter().enumerate().rev() {
            if *c > 0 {
                values.push(mid(i64::from(pos.offset) + i as i64));
                counts.push(*c as f64);
            }
        }
    }
    if p.zero_count > 0 {
        values.push(0.0);
        counts.push(p.zero_count as f64);
    }
    if let Some(neg) = &p.negative {
        for (i, c) in neg.bucket_counts.iter().enumerate() {
            if *c > 0 {
                values.push(-mid(i64::from(neg.offset) + i as i64));
                counts.push(*c as f64);
            }
        }
    }
    (values, counts)
}

/// The CloudWatch Logs (or stdout) transport.
pub struct EmfSender {
    id: ComponentId,
    translator: Translator,
    stdout: bool,
    logs: CwLogs,
    counters: EventCounters,
    rejected: metrics::Counter,
}

#[async_trait]
impl Sender for EmfSender {
    type Request = CwRequest;

    fn prepare(&self, data: &Telemetry) -> Result<CwRequest, SendError> {
        let Telemetry::Metrics(rms) = data else {
            return Err(SendError::permanent("awsemf exports metrics only"));
        };
        let now = chrono::Utc::now().timestamp_millis();
        let mut batches = Vec::new();
        for ((group, stream), events) in self.translator.translate(rms, now) {
            // Every event is stamped `now`: none is dropped for its time or emptiness.
            batches.extend(cwlogs::split(&group, &stream, events, now, &self.counters).0);
        }
        Ok(CwRequest::new(batches, 0))
    }

    async fn send(&self, req: &CwRequest) -> Result<Delivered, SendError> {
        if self.stdout {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            for b in &req.batches {
                for (_, e) in &b.events {
                    let _ = writeln!(out, "{e}");
                }
            }
            return Ok(Delivered::default());
        }
        let rejected = self.logs.send(req).await?;
        if rejected > 0 {
            self.rejected.increment(rejected);
            tracing::warn!(exporter = %self.id, rejected, "CloudWatch Logs refused events outside its time window");
        }
        Ok(Delivered::default())
    }

    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        if self.stdout {
            return Ok(());
        }
        self.logs
            .api
            .start(&self.id, &self.translator.cfg.session())
            .await
    }
}

fn build(
    set: &Settings,
    cfg: AwsEmfConfig,
    credentials: CredentialSource,
) -> Result<SendStack<EmfSender>, ConfigError> {
    let client = cfg.session().client(&set.id)?;
    let stdout = cfg.output_destination.eq_ignore_ascii_case("stdout");
    let settings = cfg.settings();
    let id = set.id.to_string();
    let sender = EmfSender {
        id: set.id.clone(),
        stdout,
        logs: CwLogs::new(
            JsonApi::new("logs", "CloudWatch Logs", client, credentials),
            cfg.log_retention,
            cfg.tags.clone(),
        ),
        translator: Translator::new(cfg, &set.id)?,
        counters: EventCounters {
            truncated: metrics::counter!("vigil_awsemf_events_truncated", "exporter" => id.clone()),
            dropped: metrics::counter!("vigil_awsemf_events_dropped", "exporter" => id.clone()),
        },
        rejected: metrics::counter!("vigil_awsemf_events_rejected", "exporter" => id),
    };
    Ok(SendStack::new(set, settings, sender))
}

struct Factory;

/// The `awsemf` exporter factory (`aws_emf` is accepted too).
pub fn factory() -> Arc<dyn DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl FactoryBase for Factory {
    type Config = AwsEmfConfig;

    fn type_name(&self) -> &'static str {
        "awsemf"
    }

    fn validate(&self, id: &ComponentId, cfg: &AwsEmfConfig) -> Result<(), ConfigError> {
        cfg.validate(id)
    }
}

impl ExporterFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[(Signal::Metrics, Stability::Beta)]
    }

    fn create(&self, set: Settings, cfg: AwsEmfConfig) -> Result<Arc<dyn Exporter>, ConfigError> {
        Ok(Arc::new(build(&set, cfg, CredentialSource::from_env())?))
    }
}

#[cfg(test)]
mod tests;
