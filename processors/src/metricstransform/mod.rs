//! `metricstransform` (`metrics_transform`): otelcol-contrib's processor that renames metrics,
//! adds, renames and deletes labels and label values, scales and toggles values, and aggregates
//! points across labels, label values or whole metrics, within one batch (nothing is kept between
//! batches). Each transform selects metrics by `include` (`strict`, or an RE2 `regexp` matched
//! anywhere in the name whose groups `new_name` may use as `$1`), optionally narrowed to points
//! whose labels match `experimental_match_labels`, and `update`s them in place, `insert`s a
//! transformed copy, `combine`s them into one metric, or `group`s them under a new resource.
//! Transforms run in order, each on what the previous ones left; stateless, so nothing to bound.

mod ops;
#[cfg(test)]
mod tests;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use vigil_core::config::re2_regex;
use vigil_core::factory::{self, DynProcessorFactory, FactoryBase, ProcessorFactory};
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::otlp::metrics::v1::{metric, Metric, ResourceMetrics, ScopeMetrics};
use vigil_core::{
    ComponentId, ConfigError, ConsumeError, Consumer, Processor, ProcessorObs, Settings, Signal,
    Stability, Telemetry,
};

use crate::points;

/// What a transform does with the metrics it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Update,
    Insert,
    Combine,
    Group,
}

/// How points that become one are merged (otelcol's `aggregateutil` types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    Sum,
    Mean,
    Min,
    Max,
    Median,
    Count,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    Strict,
    Regexp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubmatchCase {
    Lower,
    Upper,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpAction {
    AddLabel,
    UpdateLabel,
    DeleteLabelValue,
    ToggleScalarDataType,
    ExperimentalScaleValue,
    AggregateLabels,
    AggregateLabelValues,
}

/// `value_actions` of `update_label`: a label value and what it becomes.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValueAction {
    pub value: String,
    pub new_value: String,
}

/// One entry of a transform's `operations`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Operation {
    pub action: Option<OpAction>,
    pub label: String,
    pub new_label: String,
    pub label_set: Vec<String>,
    pub aggregation_type: Option<Aggregation>,
    pub aggregated_values: Vec<String>,
    /// `{{version}}` is replaced by vigil's version, as otelcol puts its own there.
    pub new_value: String,
    pub value_actions: Vec<ValueAction>,
    pub experimental_scale: f64,
    pub label_value: String,
}

/// One entry of `transforms`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Transform {
    pub include: String,
    /// `strict` when unset.
    pub match_type: Option<MatchType>,
    /// Label → value (a regexp when `match_type` is `regexp`) that a point must have; a label
    /// absent from the point matches an empty value.
    pub experimental_match_labels: BTreeMap<String, String>,
    pub action: Option<Action>,
    pub new_name: String,
    pub group_resource_labels: Option<BTreeMap<String, String>>,
    pub aggregation_type: Option<Aggregation>,
    pub submatch_case: Option<SubmatchCase>,
    pub operations: Vec<Operation>,
}

/// The `metricstransform` processor config.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsTransformConfig {
    pub transforms: Vec<Transform>,
}

/// A label value test: equal to a text, or an RE2 match anywhere in the value (Go's `MatchString`).
enum Matcher {
    Strict(String),
    Regexp(regex::Regex),
}

impl Matcher {
    fn is_match(&self, s: &str) -> bool {
        match self {
            Matcher::Strict(t) => t == s,
            Matcher::Regexp(r) => r.is_match(s),
        }
    }
}

/// A transform's compiled `include` and `experimental_match_labels`.
pub(crate) struct Filter {
    name: Matcher,
    labels: Vec<(String, Matcher)>,
}

impl Filter {
    /// The name's match (with its groups for a regexp), `None` when it does not match.
    fn name_captures<'a>(&self, name: &'a str) -> Option<Option<regex::Captures<'a>>> {
        match &self.name {
            Matcher::Strict(t) => (t == name).then_some(None),
            Matcher::Regexp(r) => r.captures(name).map(Some),
        }
    }

    /// otelcol's `matchAttrs`: every configured label matches the point's value (`""` if absent).
    pub(crate) fn attrs_match(&self, attrs: &[KeyValue]) -> bool {
        self.labels
            .iter()
            .all(|(k, m)| m.is_match(points::str_value(attrs, k).unwrap_or("")))
    }

    /// The name matches and so does at least one point (or the metric has none).
    fn matches(&self, m: &Metric) -> bool {
        self.name_captures(&m.name).is_some() && {
            let a = points::attrs(m);
            a.is_empty() || a.iter().any(|p| self.attrs_match(p))
        }
    }

    fn all_points_match(&self, m: &Metric) -> bool {
        points::attrs(m).iter().all(|p| self.attrs_match(p))
    }

    /// `new_name` with `$1`/`${name}` filled from the name's groups (Go's `Regexp.Expand`), or
    /// `new_name` as written for `strict` or when the expansion is empty.
    fn expand(&self, template: &str, name: &str) -> String {
        if let Some(Some(c)) = self.name_captures(name) {
            let mut out = String::new();
            c.expand(template, &mut out);
            if !out.is_empty() {
                return out;
            }
        }
        template.to_string()
    }

    /// The copy of `m` with only its matching points; `None` when none matches.
    fn extract(&self, m: &Metric) -> Option<Metric> {
        self.name_captures(&m.name)?;
        let a = points::attrs(m);
        let matched = a.iter().filter(|p| self.attrs_match(p)).count();
        if matched == 0 && !a.is_empty() {
            return None;
        }
        let mut copy = m.clone();
        if matched != a.len() {
            points::retain(&mut copy, |p| self.attrs_match(p));
        }
        Some(copy)
    }
}

/// A compiled operation: the config with its lookups prepared.
pub(crate) struct Op {
    pub(crate) cfg: Operation,
    pub(crate) action: OpAction,
    pub(crate) value_map: HashMap<String, String>,
    pub(crate) set: BTreeSet<String>,
}

pub(crate) struct Compiled {
    pub(crate) filter: Filter,
    pub(crate) action: Action,
    pub(crate) new_name: String,
    pub(crate) group_resource_labels: BTreeMap<String, String>,
    pub(crate) aggregation: Option<Aggregation>,
    pub(crate) submatch_case: Option<SubmatchCase>,
    pub(crate) ops: Vec<Op>,
}

fn one_line(e: &regex::Error) -> String {
    e.to_string()
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Checks every transform and compiles it; every problem is reported, each with its key path.
fn compile(cfg: &MetricsTransformConfig) -> Result<Vec<Compiled>, ConfigError> {
    let version = env!("CARGO_PKG_VERSION");
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for (i, t) in cfg.transforms.iter().enumerate() {
        let at = |k: &str| format!("transforms::{i}::{k}");
        let before = errors.len();
        if t.include.is_empty() {
            errors.push(ConfigError::at(
                at("include"),
                "missing required field \"include\"",
            ));
        }
        let regexp = t.match_type == Some(MatchType::Regexp);
        let compile_re = |path: String, p: &str, errors: &mut Vec<ConfigError>| match re2_regex(p) {
            Ok(r) => Some(Matcher::Regexp(r)),
            Err(e) => {
                errors.push(ConfigError::at(
                    path,
                    format!("invalid regexp {p:?}: {}", one_line(&e)),
                ));
                None
            }
        };
        let name = if regexp {
            compile_re(at("include"), &t.include, &mut errors)
        } else {
            Some(Matcher::Strict(t.include.clone()))
        };
        let mut labels = Vec::new();
        for (k, v) in &t.experimental_match_labels {
            if regexp {
                let path = format!("{}::{k}", at("experimental_match_labels"));
                if let Some(m) = compile_re(path, v, &mut errors) {
                    labels.push((k.clone(), m));
                }
            } else {
                labels.push((k.clone(), Matcher::Strict(v.clone())));
            }
        }
        let action = match t.action {
            Some(a) => a,
            None => {
                errors.push(ConfigError::at(
                    at("action"),
                    "missing required field \"action\": expected one of insert, update, combine, group",
                ));
                Action::Update
            }
        };
        if action == Action::Insert && t.new_name.is_empty() {
            errors.push(ConfigError::at(
                at("new_name"),
                "missing required field \"new_name\" while \"action\" is insert",
            ));
        }
        if action == Action::Group && t.group_resource_labels.is_none() {
            errors.push(ConfigError::at(
                at("group_resource_labels"),
                "missing required field \"group_resource_labels\" while \"action\" is group",
            ));
        }
        let mut ops = Vec::new();
        for (j, op) in t.operations.iter().enumerate() {
            let at = |k: &str| format!("transforms::{i}::operations::{j}::{k}");
            let Some(action) = op.action else {
                errors.push(ConfigError::at(
                    at("action"),
                    "missing required field \"action\": expected one of add_label, update_label, \
                     delete_label_value, toggle_scalar_data_type, experimental_scale_value, \
                     aggregate_labels, aggregate_label_values",
                ));
                continue;
            };
            let need = |ok: bool, key: &str, errors: &mut Vec<ConfigError>| {
                if !ok {
                    let a = serde_json::to_value(action).unwrap_or_default();
                    errors.push(ConfigError::at(
                        at(key),
                        format!(
                            "missing required field {key:?} while \"action\" is {}",
                            a.as_str().unwrap_or_default()
                        ),
                    ));
                }
            };
            match action {
                OpAction::UpdateLabel => need(!op.label.is_empty(), "label", &mut errors),
                OpAction::AddLabel => {
                    need(!op.new_label.is_empty(), "new_label", &mut errors);
                    need(!op.new_value.is_empty(), "new_value", &mut errors);
                }
                OpAction::ExperimentalScaleValue => need(
                    op.experimental_scale != 0.0,
                    "experimental_scale",
                    &mut errors,
                ),
                _ => {}
            }
            let mut cfg = op.clone();
            cfg.new_value = cfg.new_value.replace("{{version}}", version);
            ops.push(Op {
                value_map: op
                    .value_actions
                    .iter()
                    .map(|v| (v.value.clone(), v.new_value.replace("{{version}}", version)))
                    .collect(),
                set: match action {
                    OpAction::AggregateLabels => op.label_set.iter().cloned().collect(),
                    OpAction::AggregateLabelValues => {
                        op.aggregated_values.iter().cloned().collect()
                    }
                    _ => BTreeSet::new(),
                },
                cfg,
                action,
            });
        }
        if errors.len() > before {
            continue;
        }
        if let Some(name) = name {
            out.push(Compiled {
                filter: Filter { name, labels },
                action,
                new_name: t.new_name.clone(),
                group_resource_labels: t.group_resource_labels.clone().unwrap_or_default(),
                aggregation: t.aggregation_type,
                submatch_case: t.submatch_case,
                ops,
            });
        }
    }
    ConfigError::join(errors).map_or(Ok(out), Err)
}

struct Factory;

/// The `metricstransform` processor factory (`metrics_transform` is accepted too).
pub fn factory() -> Arc<dyn DynProcessorFactory> {
    factory::processor(Factory)
}

impl FactoryBase for Factory {
    type Config = MetricsTransformConfig;

    fn type_name(&self) -> &'static str {
        "metricstransform"
    }

    fn validate(&self, _id: &ComponentId, cfg: &MetricsTransformConfig) -> Result<(), ConfigError> {
        compile(cfg).map(|_| ())
    }
}

impl ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[(Signal::Metrics, Stability::Beta)]
    }

    fn create(
        &self,
        set: Settings,
        cfg: MetricsTransformConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        Ok(Arc::new(MetricsTransform {
            transforms: compile(&cfg)?,
            next,
            obs: set.processor_obs(signal),
        }))
    }
}

/// A running `metricstransform` processor.
pub struct MetricsTransform {
    transforms: Vec<Compiled>,
    next: Arc<dyn Consumer>,
    obs: ProcessorObs,
}

/// Runs every transform over a batch, in order (otelcol's `processMetrics`).
pub(crate) fn process(transforms: &[Compiled], rms: &mut Vec<ResourceMetrics>) {
    let mut grouped = Vec::new();
    for rm in rms.iter_mut() {
        for sm in rm.scope_metrics.iter_mut() {
            for t in transforms {
                match t.action {
                    Action::Group => {
                        let (taken, kept) = take_matching(t, std::mem::take(&mut sm.metrics));
                        sm.metrics = kept;
                        if taken.is_empty() {
                            continue;
                        }
                        let mut resource = rm.resource.clone().unwrap_or_default();
                        for (k, v) in &t.group_resource_labels {
                            vigil_core::attrs::upsert(
                                &mut resource.attributes,
                                k,
                                vigil_core::otlp::common::v1::any_value::Value::StringValue(
                                    v.clone(),
                                ),
                            );
                        }
                        grouped.push(ResourceMetrics {
                            resource: Some(resource),
                            scope_metrics: vec![ScopeMetrics {
                                scope: sm.scope.clone(),
                                metrics: taken,
                                schema_url: sm.schema_url.clone(),
                            }],
                            schema_url: rm.schema_url.clone(),
                        });
                    }
                    Action::Combine => {
                        let matched: Vec<&Metric> =
                            sm.metrics.iter().filter(|m| t.filter.matches(m)).collect();
                        if matched.is_empty() {
                            continue;
                        }
                        if let Err(e) = ops::can_be_combined(&matched) {
                            tracing::warn!("{e}");
                            continue;
                        }
                        let (taken, kept) = take_matching(t, std::mem::take(&mut sm.metrics));
                        sm.metrics = kept;
                        let mut combined = ops::combine(t, taken);
                        if transform_metric(&mut combined, t) {
                            sm.metrics.push(combined);
                        }
                    }
                    Action::Insert => {
                        let n = sm.metrics.len();
                        for i in 0..n {
                            let Some(mut copy) = t.filter.extract(&sm.metrics[i]) else {
                                continue;
                            };
                            if transform_metric(&mut copy, t) {
                                sm.metrics.push(copy);
                            }
                        }
                    }
                    Action::Update => sm
                        .metrics
                        .retain_mut(|m| !t.filter.matches(m) || transform_metric(m, t)),
                }
            }
        }
        rm.scope_metrics.retain(|sm| !sm.metrics.is_empty());
    }
    rms.retain(|rm| !rm.scope_metrics.is_empty());
    rms.extend(grouped);
}

/// Splits `metrics` into the matching parts (a metric whose points match only in part gives its
/// matching points) and the metrics that did not match at all; a metric that matched in part is
/// taken whole from the batch, as otelcol's `extractAndRemoveMatchedMetrics` does.
fn take_matching(t: &Compiled, metrics: Vec<Metric>) -> (Vec<Metric>, Vec<Metric>) {
    let (mut taken, mut kept) = (Vec::new(), Vec::new());
    for m in metrics {
        match t.filter.extract(&m) {
            Some(part) => taken.push(part),
            None => kept.push(m),
        }
    }
    (taken, kept)
}

/// otelcol's `transformMetric`: renames and runs the operations; `false` when the metric had
/// points and has none left.
fn transform_metric(m: &mut Metric, t: &Compiled) -> bool {
    let was_empty = points::count(m) == 0;
    // An `update` that matched only some points may not change what the other points share.
    let can_change = t.action != Action::Update || t.filter.all_points_match(m);
    if !t.new_name.is_empty() && can_change {
        m.name = t.filter.expand(&t.new_name, &m.name);
    }
    for op in &t.ops {
        match op.action {
            OpAction::UpdateLabel => ops::update_label(m, op, &t.filter),
            OpAction::AggregateLabels if can_change => ops::aggregate_labels(m, op),
            OpAction::AggregateLabelValues if can_change => ops::aggregate_label_values(m, op),
            OpAction::ToggleScalarDataType => ops::toggle_scalar(m, &t.filter),
            OpAction::ExperimentalScaleValue => ops::scale(m, op, &t.filter),
            OpAction::AddLabel if can_change => ops::add_label(m, op),
            OpAction::DeleteLabelValue if can_change => ops::delete_label_value(m, op),
            _ => {}
        }
    }
    was_empty || points::count(m) > 0
}

#[async_trait]
impl vigil_core::Component for MetricsTransform {}

#[async_trait]
impl Consumer for MetricsTransform {
    async fn consume(&self, mut data: Telemetry) -> Result<(), ConsumeError> {
        self.obs.incoming(data.item_count());
        if let Telemetry::Metrics(rms) = &mut data {
            process(&self.transforms, rms);
        }
        self.obs.outgoing(data.item_count());
        self.next.consume(data).await
    }
}

/// The data of a metric with `from`'s type, temporality and monotonicity and no points.
pub(crate) fn empty_like(from: &Option<metric::Data>) -> Option<metric::Data> {
    use vigil_core::otlp::metrics::v1::{ExponentialHistogram, Gauge, Histogram, Sum, Summary};
    Some(match from.as_ref()? {
        metric::Data::Gauge(_) => metric::Data::Gauge(Gauge::default()),
        metric::Data::Sum(s) => metric::Data::Sum(Sum {
            data_points: Vec::new(),
            aggregation_temporality: s.aggregation_temporality,
            is_monotonic: s.is_monotonic,
        }),
        metric::Data::Histogram(h) => metric::Data::Histogram(Histogram {
            data_points: Vec::new(),
            aggregation_temporality: h.aggregation_temporality,
        }),
        metric::Data::ExponentialHistogram(h) => {
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: Vec::new(),
                aggregation_temporality: h.aggregation_temporality,
            })
        }
        metric::Data::Summary(_) => metric::Data::Summary(Summary::default()),
    })
}
