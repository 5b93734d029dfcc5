//! `metricsgeneration` (`metrics_generation`): otelcol-contrib's processor that makes new metrics
//! from existing ones, per resource, by `rules`: `calculate` applies `operation` (add, subtract,
//! multiply, divide, percent) to `metric1` and `metric2`, and `scale` applies it to `metric1` and
//! `scale_by`. Only gauges and sums are used; the new metric has `metric1`'s type and double
//! values, and is added to `metric1`'s scope with `name` and `unit`.
//!
//! For `calculate`, each point of `metric1` is paired with every point of `metric2` (looked up in
//! the same resource) whose attributes agree on the keys both have, and the new point carries both
//! points' attributes (otelcol's attribute matching, on by default since v0.115). A division by
//! zero makes no point. Stateless.
//!
//! Where vigil differs: a sum made from a sum keeps its temporality (otelcol leaves it
//! unspecified, which most backends refuse) and is not monotonic.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use vigil_core::factory::{self, DynProcessorFactory, FactoryBase, ProcessorFactory};
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::otlp::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, Sum,
};
use vigil_core::{
    Component, ComponentId, ConfigError, ConsumeError, Consumer, Processor, ProcessorObs, Settings,
    Signal, Stability, Telemetry,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GenerationType {
    Calculate,
    Scale,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Add,
    Subtract,
    Multiply,
    Divide,
    Percent,
}

/// One entry of `rules`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rule {
    /// The new metric's name (required).
    pub name: String,
    pub unit: String,
    #[serde(rename = "type")]
    pub kind: Option<GenerationType>,
    pub metric1: String,
    /// Required for `calculate`.
    pub metric2: String,
    pub operation: Option<Operation>,
    /// Required (> 0) for `scale`.
    pub scale_by: f64,
}

/// The `metricsgeneration` processor config.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsGenerationConfig {
    pub rules: Vec<Rule>,
}

struct Factory;

/// The `metricsgeneration` processor factory (`metrics_generation` is accepted too).
pub fn factory() -> Arc<dyn DynProcessorFactory> {
    factory::processor(Factory)
}

impl FactoryBase for Factory {
    type Config = MetricsGenerationConfig;

    fn type_name(&self) -> &'static str {
        "metricsgeneration"
    }

    fn validate(
        &self,
        _id: &ComponentId,
        cfg: &MetricsGenerationConfig,
    ) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        for (i, r) in cfg.rules.iter().enumerate() {
            let mut err =
                |k: &str, m: String| errors.push(ConfigError::at(format!("rules::{i}::{k}"), m));
            if r.name.is_empty() {
                err("name", "missing required field \"name\"".into());
            }
            match r.kind {
                None => err(
                    "type",
                    "missing required field \"type\": expected calculate or scale".into(),
                ),
                Some(GenerationType::Calculate) if r.metric2.is_empty() => err(
                    "metric2",
                    "missing required field \"metric2\" for generation type \"calculate\"".into(),
                ),
                Some(GenerationType::Scale) if r.scale_by <= 0.0 => err(
                    "scale_by",
                    "field \"scale_by\" required to be greater than 0 for generation type \"scale\""
                        .into(),
                ),
                _ => {}
            }
            if r.metric1.is_empty() {
                err("metric1", "missing required field \"metric1\"".into());
            }
            if !r.name.is_empty() && r.name == r.metric1 {
                err(
                    "name",
                    "value of field \"name\" may not match value of field \"metric1\"".into(),
                );
            } else if !r.name.is_empty() && r.name == r.metric2 {
                err(
                    "name",
                    "value of field \"name\" may not match value of field \"metric2\"".into(),
                );
            }
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
        cfg: MetricsGenerationConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        Ok(Arc::new(MetricsGeneration {
            rules: cfg.rules,
            next,
            obs: set.processor_obs(signal),
        }))
    }
}

/// A running `metricsgeneration` processor.
pub struct MetricsGeneration {
    rules: Vec<Rule>,
    next: Arc<dyn Consumer>,
    obs: ProcessorObs,
}

fn calculate(a: f64, b: f64, op: Option<Operation>) -> Option<f64> {
    match op? {
        Operation::Add => Some(a + b),
        Operation::Subtract => Some(a - b),
        Operation::Multiply => Some(a * b),
        Operation::Divide if b != 0.0 => Some(a / b),
        Operation::Percent if b != 0.0 => Some(a / b * 100.0),
        Operation::Divide | Operation::Percent => None,
    }
}

fn numbers(m: &Metric) -> Option<&[NumberDataPoint]> {
    match &m.data {
        Some(metric::Data::Gauge(g)) => Some(&g.data_points),
        Some(metric::Data::Sum(s)) => Some(&s.data_points),
        _ => None,
    }
}

fn value(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => 0.0,
    }
}

/// The keys both lists have hold equal values.
fn agree(a: &[KeyValue], b: &[KeyValue]) -> bool {
    a.iter().all(|x| {
        b.iter()
            .find(|y| y.key == x.key)
            .is_none_or(|y| y.value == x.value)
    })
}

/// The new metric from `m1`'s points and `other` (metric2's points, or the scale factor); `None`
/// when it has no point.
fn generate(rule: &Rule, m1: &Metric, other: Result<&[NumberDataPoint], f64>) -> Option<Metric> {
    let pts1 = numbers(m1)?;
    let mut out = Vec::new();
    for p in pts1 {
        match other {
            Err(k) => {
                if let Some(v) = calculate(value(p), k, rule.operation) {
                    out.push(NumberDataPoint {
                        value: Some(number_data_point::Value::AsDouble(v)),
                        ..p.clone()
                    });
                }
            }
            Ok(pts2) => {
                for q in pts2.iter().filter(|q| agree(&p.attributes, &q.attributes)) {
                    if let Some(v) = calculate(value(p), value(q), rule.operation) {
                        let mut n = NumberDataPoint {
                            value: Some(number_data_point::Value::AsDouble(v)),
                            ..p.clone()
                        };
                        for kv in &q.attributes {
                            match n.attributes.iter_mut().find(|a| a.key == kv.key) {
                                Some(a) => a.value = kv.value.clone(),
                                None => n.attributes.push(kv.clone()),
                            }
                        }
                        out.push(n);
                    }
                }
            }
        }
    }
    if out.is_empty() {
        return None;
    }
    let data = match &m1.data {
        Some(metric::Data::Sum(s)) => metric::Data::Sum(Sum {
            data_points: out,
            aggregation_temporality: s.aggregation_temporality,
            is_monotonic: false,
        }),
        _ => metric::Data::Gauge(Gauge { data_points: out }),
    };
    Some(Metric {
        name: rule.name.clone(),
        unit: rule.unit.clone(),
        data: Some(data),
        ..Default::default()
    })
}

fn process(rules: &[Rule], rms: &mut [ResourceMetrics]) {
    for rm in rms.iter_mut() {
        for rule in rules {
            let metric2: Option<Metric> = match rule.kind {
                Some(GenerationType::Calculate) => {
                    // The last metric of that name in the resource, as otelcol's name map keeps.
                    let found = rm
                        .scope_metrics
                        .iter()
                        .flat_map(|sm| &sm.metrics)
                        .rfind(|m| m.name == rule.metric2)
                        .cloned();
                    match found {
                        Some(m) => Some(m),
                        None => continue,
                    }
                }
                _ => None,
            };
            let other: Result<&[NumberDataPoint], f64> = match &metric2 {
                Some(m2) => match numbers(m2) {
                    Some(p) => Ok(p),
                    None => continue,
                },
                None => Err(rule.scale_by),
            };
            for sm in rm.scope_metrics.iter_mut() {
                let new: Vec<Metric> = sm
                    .metrics
                    .iter()
                    .filter(|m| m.name == rule.metric1)
                    .filter_map(|m1| generate(rule, m1, other))
                    .collect();
                sm.metrics.extend(new);
            }
        }
    }
}

#[async_trait]
impl Component for MetricsGeneration {}

#[async_trait]
impl Consumer for MetricsGeneration {
    async fn consume(&self, mut data: Telemetry) -> Result<(), ConsumeError> {
        self.obs.incoming(data.item_count());
        if let Telemetry::Metrics(rms) = &mut data {
            process(&self.rules, rms);
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
    use vigil_core::otlp::metrics::v1::ScopeMetrics;

    fn rules(v: serde_json::Value) -> Vec<Rule> {
        let id = ComponentId::new("metrics_generation", None);
        factory().validate(&id, &v).expect("valid");
        let cfg: MetricsGenerationConfig =
            vigil_core::config::decode(vigil_core::ComponentKind::Processor, &id, &v)
                .expect("decodes");
        cfg.rules
    }

    fn gauge(name: &str, pts: Vec<(Vec<(&str, &str)>, i64)>) -> Metric {
        Metric {
            name: name.into(),
            unit: "By".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: pts
                    .into_iter()
                    .map(|(a, v)| NumberDataPoint {
                        attributes: a.into_iter().map(|(k, v)| kv_str(k, v)).collect(),
                        time_unix_nano: 7,
                        value: Some(number_data_point::Value::AsInt(v)),
                        ..Default::default()
                    })
                    .collect(),
            })),
            ..Default::default()
        }
    }

    fn run(rules: &[Rule], metrics: Vec<Metric>) -> Vec<Metric> {
        let mut rms = vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }];
        process(rules, &mut rms);
        rms.into_iter()
            .flat_map(|r| r.scope_metrics)
            .flat_map(|s| s.metrics)
            .collect()
    }

    /// (attributes as "k=v" sorted, value) of a gauge's points.
    fn points(m: &Metric) -> Vec<(Vec<String>, f64)> {
        numbers(m)
            .expect("numbers")
            .iter()
            .map(|p| {
                let mut a: Vec<String> = p
                    .attributes
                    .iter()
                    .map(|kv| {
                        let v = kv.value.as_ref().and_then(|v| v.value.as_ref());
                        format!(
                            "{}={}",
                            kv.key,
                            v.map(vigil_core::attrs::value_to_string)
                                .unwrap_or_default()
                        )
                    })
                    .collect();
                a.sort();
                (a, value(p))
            })
            .collect()
    }

    /// kubeletstats-shaped: a pod's memory usage over its node's limit, paired by the attributes
    /// they share.
    #[test]
    fn calculate_pairs_points_whose_shared_attributes_agree() {
        let r = rules(
            json!({"rules": [{"name": "pod.memory.utilization", "unit": "%",
            "type": "calculate", "metric1": "pod.memory.usage", "metric2": "node.memory.limit",
            "operation": "percent"}]}),
        );
        let out = run(
            &r,
            vec![
                gauge(
                    "pod.memory.usage",
                    vec![
                        (vec![("node", "a"), ("pod", "p1")], 50),
                        (vec![("node", "b"), ("pod", "p2")], 30),
                    ],
                ),
                gauge(
                    "node.memory.limit",
                    vec![(vec![("node", "a")], 200), (vec![("node", "b")], 0)],
                ),
            ],
        );
        assert_eq!(out.len(), 3);
        let m = &out[2];
        assert_eq!(
            (m.name.as_str(), m.unit.as_str()),
            ("pod.memory.utilization", "%")
        );
        assert_eq!(
            points(m),
            vec![(vec!["node=a".to_string(), "pod=p1".to_string()], 25.0)],
            "node b's limit is 0: no point"
        );
    }

    #[test]
    fn scale_and_missing_operands() {
        let r = rules(json!({"rules": [
            {"name": "mem.bytes", "type": "scale", "metric1": "mem.mb", "operation": "multiply", "scale_by": 1048576},
            {"name": "x", "type": "calculate", "metric1": "mem.mb", "metric2": "absent", "operation": "add"}]}));
        let out = run(&r, vec![gauge("mem.mb", vec![(vec![("pod", "p")], 2)])]);
        let names: Vec<&str> = out.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["mem.mb", "mem.bytes"]);
        assert_eq!(
            points(&out[1]),
            vec![(vec!["pod=p".to_string()], 2097152.0)]
        );
    }

    #[test]
    fn config_cases() {
        let id = ComponentId::new("metricsgeneration", Some("x"));
        let f = factory();
        f.validate(&id, &json!(null)).expect("no rules");
        crate::testdata::check_all("metricsgeneration", 3, |v| {
            f.validate(&id, v).map_err(|e| e.to_string())
        });
    }
}
