//! `attributes`: otelcol's attributes processor. It applies a list of actions to the attributes of
//! every span, log record and metric data point, in place and without copying the batch.
//!
//! `include` and `exclude` narrow which items are touched, with `match_type: strict|regexp` over
//! `services`, `span_names` (traces), `metric_names` (metrics), `attributes` and `resources`. otelcol's
//! other match keys (`libraries`, `span_kinds`, `log_bodies`, severities, `expr`) are not supported
//! and are reported as invalid keys.

pub mod actions;

use actions::{json_to_any, ActionConfig, Actions};
use async_trait::async_trait;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::sync::Arc;
use vigil_core::attrs::value_to_string;
use vigil_core::factory::{self, DynProcessorFactory, FactoryBase, ProcessorFactory};
use vigil_core::otlp::common::v1::{any_value::Value, KeyValue};
use vigil_core::otlp::metrics::v1::metric::Data;
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::otlp::trace::v1::{ResourceSpans, Span};
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Processor,
    Settings, Signal, Stability, Telemetry,
};

/// The `attributes` processor config.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttributesConfig {
    /// The actions, applied in order.
    #[serde(default)]
    pub actions: Vec<ActionConfig>,
    /// Only items that match are processed.
    #[serde(default)]
    pub include: Option<MatchConfig>,
    /// Items that match are left alone.
    #[serde(default)]
    pub exclude: Option<MatchConfig>,
}

/// otelcol's match properties, the supported subset.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// `strict` (equality) or `regexp` (each entry is a regex).
    #[serde(default)]
    pub match_type: String,
    /// Matches the resource's `service.name`; any entry may match.
    #[serde(default)]
    pub services: Vec<String>,
    /// Matches the span name; traces only.
    #[serde(default)]
    pub span_names: Vec<String>,
    /// Matches the metric name; metrics only.
    #[serde(default)]
    pub metric_names: Vec<String>,
    /// Item attributes that must all be present (and equal or matching, when a value is given).
    #[serde(default)]
    pub attributes: Vec<AttributeMatch>,
    /// Resource attributes that must all be present (and equal or matching, when a value is given).
    #[serde(default)]
    pub resources: Vec<AttributeMatch>,
}

/// One attribute condition of a match.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeMatch {
    pub key: String,
    #[serde(default)]
    pub value: Option<Json>,
}

enum NameMatch {
    Strict(String),
    Regexp(Regex),
}

impl NameMatch {
    fn matches(&self, s: &str) -> bool {
        match self {
            NameMatch::Strict(x) => x == s,
            NameMatch::Regexp(re) => re.is_match(s),
        }
    }
}

enum ValueMatch {
    Any,
    Strict(Option<Value>),
    Regexp(Regex),
}

struct AttrCond {
    key: String,
    value: ValueMatch,
}

impl AttrCond {
    fn holds(&self, attrs: &[KeyValue]) -> bool {
        let Some(kv) = attrs.iter().find(|kv| kv.key == self.key) else {
            return false;
        };
        let v = kv.value.as_ref().and_then(|v| v.value.as_ref());
        match &self.value {
            ValueMatch::Any => true,
            ValueMatch::Strict(want) => v == want.as_ref(),
            ValueMatch::Regexp(re) => v.is_some_and(|v| match v {
                Value::StringValue(s) => re.is_match(s),
                other => re.is_match(&value_to_string(other)),
            }),
        }
    }
}

/// A compiled `include` or `exclude`: every given property must match.
struct Matcher {
    services: Vec<NameMatch>,
    names: Vec<NameMatch>,
    attributes: Vec<AttrCond>,
    resources: Vec<AttrCond>,
}

impl Matcher {
    fn compile(
        id: &ComponentId,
        which: &str,
        m: &MatchConfig,
        signal: Option<Signal>,
    ) -> Result<Matcher, ConfigError> {
        let err = |path: String, msg: String| {
            ConfigError::component(ComponentKind::Processor, id, path, msg)
        };
        let regexp = match m.match_type.as_str() {
            "strict" => false,
            "regexp" => true,
            "" => {
                return Err(err(
                    format!("{which}::match_type"),
                    "missing \"match_type\" (use strict or regexp)".into(),
                ))
            }
            other => {
                return Err(err(
                    format!("{which}::match_type"),
                    format!("invalid match_type {other:?} (use strict or regexp)"),
                ))
            }
        };
        if m.services.is_empty()
            && m.span_names.is_empty()
            && m.metric_names.is_empty()
            && m.attributes.is_empty()
            && m.resources.is_empty()
        {
            return Err(err(
                which.to_string(),
                "at least one of \"services\", \"span_names\", \"metric_names\", \"attributes\" or \
                 \"resources\" must be specified"
                    .into(),
            ));
        }
        if let Some(signal) = signal {
            for (key, list, only) in [
                ("span_names", &m.span_names, Signal::Traces),
                ("metric_names", &m.metric_names, Signal::Metrics),
            ] {
                if !list.is_empty() && signal != only {
                    return Err(err(
                        format!("{which}::{key}"),
                        format!("\"{key}\" applies to {only} only, not to a {signal} pipeline"),
                    ));
                }
            }
        }
        let compile_re = |path: String, pattern: &str| {
            vigil_core::config::re2_regex(pattern)
                .map_err(|e| err(path, format!("invalid regexp {pattern:?}: {e}")))
        };
        let names = |key: &str, list: &[String]| -> Result<Vec<NameMatch>, ConfigError> {
            list.iter()
                .enumerate()
                .map(|(i, s)| {
                    Ok(if regexp {
                        NameMatch::Regexp(compile_re(format!("{which}::{key}::{i}"), s)?)
                    } else {
                        NameMatch::Strict(s.clone())
                    })
                })
                .collect()
        };
        let conds = |key: &str, list: &[AttributeMatch]| -> Result<Vec<AttrCond>, ConfigError> {
            list.iter()
                .enumerate()
                .map(|(i, a)| {
                    if a.key.is_empty() {
                        return Err(err(
                            format!("{which}::{key}::{i}::key"),
                            "missing \"key\"".into(),
                        ));
                    }
                    let value = match (&a.value, regexp) {
                        (None, _) => ValueMatch::Any,
                        (Some(Json::String(p)), true) => ValueMatch::Regexp(compile_re(
                            format!("{which}::{key}::{i}::value"),
                            p,
                        )?),
                        (Some(_), true) => {
                            return Err(err(
                                format!("{which}::{key}::{i}::value"),
                                "with match_type regexp, \"value\" must be a string regexp".into(),
                            ))
                        }
                        (Some(v), false) => ValueMatch::Strict(json_to_any(v).value),
                    };
                    Ok(AttrCond {
                        key: a.key.clone(),
                        value,
                    })
                })
                .collect()
        };
        let mut item_names = names("span_names", &m.span_names)?;
        item_names.extend(names("metric_names", &m.metric_names)?);
        Ok(Matcher {
            services: names("services", &m.services)?,
            names: item_names,
            attributes: conds("attributes", &m.attributes)?,
            resources: conds("resources", &m.resources)?,
        })
    }

    fn matches(&self, resource: &[KeyValue], name: Option<&str>, attrs: &[KeyValue]) -> bool {
        if !self.services.is_empty() {
            let service = vigil_core::attrs::get_str(resource, "service.name").unwrap_or("");
            if !self.services.iter().any(|m| m.matches(service)) {
                return false;
            }
        }
        if !self.names.is_empty() {
            let name = name.unwrap_or("");
            if !self.names.iter().any(|m| m.matches(name)) {
                return false;
            }
        }
        self.resources.iter().all(|c| c.holds(resource))
            && self.attributes.iter().all(|c| c.holds(attrs))
    }
}

/// `include` and `exclude` together. The `span` processor selects its spans with the same filter.
#[derive(Default)]
pub(crate) struct Filter {
    include: Option<Matcher>,
    exclude: Option<Matcher>,
}

impl Filter {
    /// Compiles `include` and `exclude`; `signal`, when known, refuses the other signal's name keys.
    pub(crate) fn compile(
        id: &ComponentId,
        include: Option<&MatchConfig>,
        exclude: Option<&MatchConfig>,
        signal: Option<Signal>,
    ) -> Result<Filter, ConfigError> {
        Ok(Filter {
            include: include
                .map(|m| Matcher::compile(id, "include", m, signal))
                .transpose()?,
            exclude: exclude
                .map(|m| Matcher::compile(id, "exclude", m, signal))
                .transpose()?,
        })
    }

    pub(crate) fn selects(
        &self,
        resource: &[KeyValue],
        name: Option<&str>,
        attrs: &[KeyValue],
    ) -> bool {
        self.include
            .as_ref()
            .is_none_or(|m| m.matches(resource, name, attrs))
            && !self
                .exclude
                .as_ref()
                .is_some_and(|m| m.matches(resource, name, attrs))
    }

    /// Calls `f` on each span of `rs` that the filter selects by its resource, name and
    /// attributes: the walk `attributes` and `span` both make over traces.
    pub(crate) fn each_selected_span(
        &self,
        rs: &mut [ResourceSpans],
        mut f: impl FnMut(&mut Span),
    ) {
        for r in rs {
            let res = resource_attrs(&r.resource);
            for span in r.scope_spans.iter_mut().flat_map(|s| &mut s.spans) {
                if self.selects(res, Some(&span.name), &span.attributes) {
                    f(span);
                }
            }
        }
    }
}

/// The checked config: actions and filter.
struct Compiled {
    actions: Actions,
    filter: Filter,
}

fn compile(
    id: &ComponentId,
    cfg: &AttributesConfig,
    signal: Option<Signal>,
) -> Result<Compiled, ConfigError> {
    let actions = Actions::compile(id, "actions", &cfg.actions)?;
    let filter = Filter::compile(id, cfg.include.as_ref(), cfg.exclude.as_ref(), signal)?;
    Ok(Compiled { actions, filter })
}

struct Factory;

/// The `attributes` processor factory.
pub fn factory() -> Arc<dyn DynProcessorFactory> {
    factory::processor(Factory)
}

impl FactoryBase for Factory {
    type Config = AttributesConfig;

    fn type_name(&self) -> &'static str {
        "attributes"
    }

    fn validate(&self, id: &ComponentId, cfg: &AttributesConfig) -> Result<(), ConfigError> {
        compile(id, cfg, None).map(|_| ())
    }
}

impl ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Beta),
            (Signal::Metrics, Stability::Beta),
            (Signal::Logs, Stability::Beta),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: AttributesConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let c = compile(&set.id, &cfg, Some(signal))?;
        Ok(Arc::new(AttributesProcessor {
            actions: c.actions,
            filter: c.filter,
            next,
            obs: set.processor_obs(signal),
        }))
    }
}

/// A running `attributes` processor.
pub struct AttributesProcessor {
    actions: Actions,
    filter: Filter,
    next: Arc<dyn Consumer>,
    obs: vigil_core::ProcessorObs,
}

fn resource_attrs(r: &Option<Resource>) -> &[KeyValue] {
    r.as_ref().map_or(&[], |r| &r.attributes)
}

impl AttributesProcessor {
    fn process(&self, data: &mut Telemetry) {
        let (actions, filter) = (&self.actions, &self.filter);
        match data {
            // Not in the stability table: a profile's attributes live in the batch's dictionary,
            // and this processor does not edit them.
            Telemetry::Profiles(_) => {}
            Telemetry::Traces(rs) => {
                filter.each_selected_span(rs, |span| actions.apply(&mut span.attributes))
            }
            Telemetry::Logs(rl) => {
                for r in rl {
                    let res = resource_attrs(&r.resource);
                    for rec in r.scope_logs.iter_mut().flat_map(|s| &mut s.log_records) {
                        if filter.selects(res, None, &rec.attributes) {
                            actions.apply(&mut rec.attributes);
                        }
                    }
                }
            }
            Telemetry::Metrics(rm) => {
                for r in rm {
                    let res = resource_attrs(&r.resource);
                    for m in r.scope_metrics.iter_mut().flat_map(|s| &mut s.metrics) {
                        let name = m.name.as_str();
                        let each = |attrs: &mut Vec<KeyValue>| {
                            if filter.selects(res, Some(name), attrs) {
                                actions.apply(attrs);
                            }
                        };
                        match &mut m.data {
                            Some(Data::Gauge(g)) => g
                                .data_points
                                .iter_mut()
                                .for_each(|p| each(&mut p.attributes)),
                            Some(Data::Sum(s)) => s
                                .data_points
                                .iter_mut()
                                .for_each(|p| each(&mut p.attributes)),
                            Some(Data::Histogram(h)) => h
                                .data_points
                                .iter_mut()
                                .for_each(|p| each(&mut p.attributes)),
                            Some(Data::ExponentialHistogram(h)) => h
                                .data_points
                                .iter_mut()
                                .for_each(|p| each(&mut p.attributes)),
                            Some(Data::Summary(s)) => s
                                .data_points
                                .iter_mut()
                                .for_each(|p| each(&mut p.attributes)),
                            None => {}
                        }
                    }
                }
            }
        }
    }
}

impl Component for AttributesProcessor {}

#[async_trait]
impl Consumer for AttributesProcessor {
    async fn consume(&self, mut data: Telemetry) -> Result<(), ConsumeError> {
        let n = data.item_count();
        self.obs.incoming(n);
        self.process(&mut data);
        self.obs.outgoing(n);
        self.next.consume(data).await
    }
}

#[cfg(test)]
mod tests;
