//! `count` (traces, metrics, logs → metrics): otelcol-contrib's connector that counts spans, span
//! events, metrics, data points and log records, each into delta sums named in config, optionally only
//! those that match OTTL conditions and per value of chosen attributes. When a kind's key is not set,
//! it counts that kind into otelcol's default metric (`trace.span.count`,
//! `trace.span.event.count`, `metric.count`, `metric.datapoint.count`, `log.record.count`).
//!
//! Each batch is counted as it passes and the counts leave at once, one resource of metrics per
//! resource of input, so the connector holds no state. An attribute is looked up on the item, then
//! its scope, then its resource; an item that lacks one with no `default_value` is not counted, as in
//! otelcol. A condition that fails to evaluate counts as not matched and is counted in
//! `vigil_count_condition_errors{connector}`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use vigil_core::attrs::{get, kv};
use vigil_core::factory::{self, ConnectorFactory, DynConnectorFactory, FactoryBase};
use vigil_core::otlp::common::v1::{any_value, InstrumentationScope, KeyValue};
use vigil_core::otlp::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::{
    Component, ComponentId, ConfigError, ConnectorObs, ConsumeError, Consumer, NextConsumers,
    Settings, Signal, Stability, Telemetry,
};
use vigil_ottl::pdata::{visit, Item, Point};
use vigil_ottl::{parse_condition, Condition, Context};

/// One attribute to count by.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeConfig {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<serde_json::Value>,
}

/// One count metric.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricInfo {
    pub description: String,
    /// OTTL conditions; an item is counted when any holds (all items when there are none).
    pub conditions: Vec<String>,
    pub attributes: Vec<AttributeConfig>,
}

/// The `count` connector config: metric name → what it counts, per kind of item.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CountConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spans: Option<BTreeMap<String, MetricInfo>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spanevents: Option<BTreeMap<String, MetricInfo>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<BTreeMap<String, MetricInfo>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datapoints: Option<BTreeMap<String, MetricInfo>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<BTreeMap<String, MetricInfo>>,
}

/// The kinds of item, with otelcol's key, OTTL context and default metric.
const KINDS: [(&str, Context, &str, &str); 5] = [
    (
        "spans",
        Context::Span,
        "trace.span.count",
        "The number of spans observed.",
    ),
    (
        "spanevents",
        Context::SpanEvent,
        "trace.span.event.count",
        "The number of span events observed.",
    ),
    (
        "metrics",
        Context::Metric,
        "metric.count",
        "The number of metrics observed.",
    ),
    (
        "datapoints",
        Context::DataPoint,
        "metric.datapoint.count",
        "The number of data points observed.",
    ),
    (
        "logs",
        Context::Log,
        "log.record.count",
        "The number of log records observed.",
    ),
];

impl CountConfig {
    /// A kind's metrics; `None` when the key is not set, which means otelcol's default metric
    /// (`spans: {}` counts no spans).
    fn section(&self, kind: &str) -> Option<&BTreeMap<String, MetricInfo>> {
        match kind {
            "spans" => self.spans.as_ref(),
            "spanevents" => self.spanevents.as_ref(),
            "metrics" => self.metrics.as_ref(),
            "datapoints" => self.datapoints.as_ref(),
            _ => self.logs.as_ref(),
        }
    }
}

/// A compiled count metric.
struct Def {
    name: String,
    description: String,
    conditions: Vec<Condition>,
    attributes: Vec<(String, Option<any_value::Value>)>,
}

fn json_to_value(v: &serde_json::Value) -> Option<any_value::Value> {
    Some(match v {
        serde_json::Value::String(s) => any_value::Value::StringValue(s.clone()),
        serde_json::Value::Bool(b) => any_value::Value::BoolValue(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64()?),
        },
        _ => return None,
    })
}

/// Every kind's metrics, compiled; a kind with none configured gets otelcol's default.
fn compile(cfg: &CountConfig) -> Result<Vec<(Context, Vec<Def>)>, ConfigError> {
    let mut out = Vec::new();
    for (kind, ctx, default_name, default_desc) in KINDS {
        let empty = BTreeMap::new();
        let section = cfg.section(kind);
        let mut defs = Vec::new();
        if section.is_none() {
            defs.push(Def {
                name: default_name.into(),
                description: default_desc.into(),
                conditions: Vec::new(),
                attributes: Vec::new(),
            });
        }
        for (name, info) in section.unwrap_or(&empty) {
            if name.is_empty() {
                return Err(ConfigError::at(kind, "a metric name must not be empty"));
            }
            let conditions = info
                .conditions
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    parse_condition(ctx, c)
                        .map_err(|e| ConfigError::at(format!("{kind}::{name}::conditions::{i}"), e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if ctx == Context::Metric && !info.attributes.is_empty() {
                return Err(ConfigError::at(
                    format!("{kind}::{name}::attributes"),
                    format!("metrics attributes not supported: metric {name:?}"),
                ));
            }
            let mut attributes = Vec::new();
            for (i, a) in info.attributes.iter().enumerate() {
                if a.key.is_empty() {
                    return Err(ConfigError::at(
                        format!("{kind}::{name}::attributes::{i}::key"),
                        "attribute key missing",
                    ));
                }
                if attributes.iter().any(|(k, _)| *k == a.key) {
                    return Err(ConfigError::at(
                        format!("{kind}::{name}::attributes::{i}::key"),
                        format!("duplicate attribute key {:?}", a.key),
                    ));
                }
                let default = match &a.default_value {
                    None => None,
                    Some(v) => Some(json_to_value(v).ok_or_else(|| {
                        ConfigError::at(
                            format!("{kind}::{name}::attributes::{i}::default_value"),
                            "expected a string, number or boolean",
                        )
                    })?),
                };
                attributes.push((a.key.clone(), default));
            }
            defs.push(Def {
                name: name.clone(),
                description: info.description.clone(),
                conditions,
                attributes,
            });
        }
        out.push((ctx, defs));
    }
    Ok(out)
}

struct Factory;

/// The `count` connector factory.
pub fn factory() -> Arc<dyn DynConnectorFactory> {
    factory::connector(Factory)
}

impl FactoryBase for Factory {
    type Config = CountConfig;

    fn type_name(&self) -> &'static str {
        "count"
    }

    fn validate(&self, _id: &ComponentId, cfg: &CountConfig) -> Result<(), ConfigError> {
        compile(cfg).map(|_| ())
    }
}

impl ConnectorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Signal, Stability)] {
        &[
            (Signal::Traces, Signal::Metrics, Stability::Alpha),
            (Signal::Metrics, Signal::Metrics, Stability::Alpha),
            (Signal::Logs, Signal::Metrics, Stability::Alpha),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: CountConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn vigil_core::Connector>, ConfigError> {
        Ok(Arc::new(Count {
            defs: compile(&cfg)?,
            errors: metrics::counter!("vigil_count_condition_errors", "connector" => set.id.to_string()),
            obs: set.connector_obs(),
            next,
        }))
    }
}

struct Count {
    defs: Vec<(Context, Vec<Def>)>,
    errors: metrics::Counter,
    obs: ConnectorObs,
    next: NextConsumers,
}

impl Component for Count {}

/// The attributes of the item itself, by context.
fn own_attributes<'a>(it: &'a Item<'_>, ctx: Context) -> &'a [KeyValue] {
    match ctx {
        Context::Span => it.span.as_deref().map_or(&[], |s| &s.attributes),
        Context::SpanEvent => it.event.as_deref().map_or(&[], |e| &e.attributes),
        Context::Log => it.log.as_deref().map_or(&[], |l| &l.attributes),
        Context::DataPoint => match &it.point {
            Some(Point::Number(p)) => &p.attributes,
            Some(Point::Histogram(p)) => &p.attributes,
            Some(Point::ExpHistogram(p)) => &p.attributes,
            Some(Point::Summary(p)) => &p.attributes,
            None => &[],
        },
        _ => &[],
    }
}

/// Counts per metric name, per attribute set (kept as the attribute list), for one resource.
type Counts = BTreeMap<String, HashMap<Vec<(String, String)>, (Vec<KeyValue>, i64)>>;

impl Count {
    fn count_item(&self, defs: &[Def], ctx: Context, it: &Item<'_>, counts: &mut Counts) {
        for def in defs {
            if !def.conditions.is_empty() {
                let mut hit = false;
                for c in &def.conditions {
                    match c.eval(it) {
                        Ok(true) => {
                            hit = true;
                            break;
                        }
                        Ok(false) => {}
                        Err(_) => self.errors.increment(1),
                    }
                }
                if !hit {
                    continue;
                }
            }
            let mut attrs = Vec::with_capacity(def.attributes.len());
            let scope: &[KeyValue] = it
                .scope
                .as_deref()
                .and_then(Option::as_ref)
                .map_or(&[], |s: &InstrumentationScope| &s.attributes);
            let resource: &[KeyValue] = it.resource.as_ref().map_or(&[], |r| &r.attributes);
            for (key, default) in &def.attributes {
                let v = get(own_attributes(it, ctx), key)
                    .or_else(|| get(scope, key))
                    .or_else(|| get(resource, key))
                    .cloned()
                    .or_else(|| default.clone());
                match v {
                    Some(v) => attrs.push(kv(key, v)),
                    None => break,
                }
            }
            if attrs.len() != def.attributes.len() {
                continue;
            }
            let key: Vec<(String, String)> = attrs
                .iter()
                .map(|a| {
                    let v = a.value.as_ref().and_then(|v| v.value.as_ref());
                    (a.key.clone(), format!("{v:?}"))
                })
                .collect();
            let entry = counts
                .entry(def.name.clone())
                .or_default()
                .entry(key)
                .or_insert_with(|| (attrs, 0));
            entry.1 += 1;
        }
    }
}

#[async_trait]
impl Consumer for Count {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let signal = data.signal();
        self.obs.consumed(signal, data.item_count());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        // One visit per input resource, so that each resource's counts stay apart.
        let batches: Vec<(Option<Resource>, Telemetry)> = match data {
            Telemetry::Traces(v) => v
                .into_iter()
                .map(|r| (r.resource.clone(), Telemetry::Traces(vec![r])))
                .collect(),
            Telemetry::Metrics(v) => v
                .into_iter()
                .map(|r| (r.resource.clone(), Telemetry::Metrics(vec![r])))
                .collect(),
            Telemetry::Logs(v) => v
                .into_iter()
                .map(|r| (r.resource.clone(), Telemetry::Logs(vec![r])))
                .collect(),
            // Not an input this connector takes (its stability table has no profiles).
            Telemetry::Profiles(_) => Vec::new(),
        };
        let fits = |ctx: Context| match signal {
            Signal::Traces => matches!(ctx, Context::Span | Context::SpanEvent),
            Signal::Metrics => matches!(ctx, Context::Metric | Context::DataPoint),
            Signal::Logs => ctx == Context::Log,
            Signal::Profiles => false,
        };
        let mut per_resource = Vec::with_capacity(batches.len());
        for (resource, mut one) in batches {
            let mut counts = Counts::new();
            for (ctx, defs) in self.defs.iter().filter(|(c, _)| fits(*c)) {
                visit(&mut one, *ctx, &mut |it| {
                    self.count_item(defs, *ctx, it, &mut counts);
                    true
                });
            }
            per_resource.push((resource, counts));
        }
        let mut out = Vec::new();
        for (resource, counts) in per_resource {
            if counts.is_empty() {
                continue;
            }
            let metrics = self
                .defs
                .iter()
                .flat_map(|(_, defs)| defs)
                .filter_map(|def| {
                    let points = counts.get(&def.name)?;
                    Some(Metric {
                        name: def.name.clone(),
                        description: def.description.clone(),
                        unit: "1".into(),
                        data: Some(metric::Data::Sum(Sum {
                            data_points: points
                                .values()
                                .map(|(attrs, n)| NumberDataPoint {
                                    attributes: attrs.clone(),
                                    time_unix_nano: now,
                                    value: Some(number_data_point::Value::AsInt(*n)),
                                    ..Default::default()
                                })
                                .collect(),
                            aggregation_temporality: AggregationTemporality::Delta as i32,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    })
                })
                .collect();
            out.push(ResourceMetrics {
                resource,
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "github.com/open-telemetry/opentelemetry-collector-contrib/connector/countconnector".into(),
                        ..Default::default()
                    }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        if out.is_empty() {
            return Ok(());
        }
        let counted = Telemetry::Metrics(out);
        self.obs.produced(Signal::Metrics, counted.item_count());
        self.next.consume(counted).await
    }
}

#[cfg(test)]
mod tests;
