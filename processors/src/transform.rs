//! `transform`: otelcol's transform processor. OTTL statements (`set(span.name, "x") where …`) edit
//! traces, metrics and logs in place, in order. `trace_statements`, `metric_statements` and
//! `log_statements` take otelcol's two forms, mixed freely: a plain string, whose context is inferred
//! from its path prefixes (`span.`, `resource.`, …), or a group with `context`, `conditions` (any one
//! must hold) and `statements`. `error_mode` (per group or for the processor) decides what a statement
//! that fails at run time does (`ignore` by default, as in otelcol v0.157+). Statements are parsed once at config load by [`vigil_ottl`]; an
//! unsupported function or path is a config error that names it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::sync::Arc;
use vigil_core::factory::{FactoryBase, ProcessorFactory};
use vigil_core::{
    Component, ComponentId, ConfigError, ConsumeError, Consumer, Processor, ProcessorObs, Settings,
    Signal, Stability, Telemetry,
};
use vigil_ottl::pdata::{visit, Item};
use vigil_ottl::{
    infer_context, parse_condition, parse_statement, Condition, Context, ErrorMode, Statement,
    StatementOptions,
};

/// The `transform` processor config as written; each list holds strings or groups.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// `ignore` (default, as in otelcol since v0.153's `processor.transform.defaultErrorModeIgnore`,
    /// stable from v0.157), `propagate` or `silent`.
    #[serde(default = "default_error_mode")]
    pub error_mode: String,
    /// otelcol's per-log-record copy of resource and scope, behind its alpha
    /// `transform.flatten.logs` gate. `false` is accepted; `true` is refused as not built (otelcol
    /// refuses it too unless the gate is enabled).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flatten_data: bool,
    #[serde(default)]
    pub trace_statements: Vec<Entry>,
    #[serde(default)]
    pub metric_statements: Vec<Entry>,
    #[serde(default)]
    pub log_statements: Vec<Entry>,
    /// Statements for a `profiles` pipeline, in the `resource`, `scope` or `profile` context; a
    /// profile's own fields are not reachable (docs/ottl.md), so these edit resources and scopes
    /// and test them per profile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profile_statements: Vec<Entry>,
}

fn default_error_mode() -> String {
    "ignore".into()
}

/// One entry of a `*_statements` list: otelcol's flat form (a statement whose context is
/// inferred from its paths) or its grouped form.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Entry {
    Flat(String),
    Group(GroupConfig),
}

impl<'de> Deserialize<'de> for Entry {
    /// By hand rather than `untagged`, whose error names neither form's problem.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Entry, D::Error> {
        use serde::de::Error;
        match Json::deserialize(d)? {
            Json::String(s) => Ok(Entry::Flat(s)),
            Json::Object(fields) => {
                // A key left empty (`statements:` holding only an anchor) means its default, as
                // everywhere in otelcol's config.
                let fields: serde_json::Map<String, Json> =
                    fields.into_iter().filter(|(_, v)| !v.is_null()).collect();
                serde_json::from_value(Json::Object(fields))
                    .map(Entry::Group)
                    .map_err(D::Error::custom)
            }
            other => Err(D::Error::custom(format!(
                "expected a statement string or a group with statements, got {other}"
            ))),
        }
    }
}

/// One group in otelcol's grouped form.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// `resource`, `scope`, `span`, `spanevent`, `metric`, `datapoint` or `log`; inferred from the
    /// paths when absent.
    #[serde(default)]
    pub context: Option<String>,
    /// The statements run on an item when any of these holds (all items when empty).
    #[serde(default)]
    pub conditions: Vec<String>,
    #[serde(default)]
    pub statements: Vec<String>,
    /// Overrides the processor's `error_mode` for this group.
    #[serde(default)]
    pub error_mode: Option<String>,
}

/// Statements that run together on each item of one context.
#[derive(Debug, Clone)]
struct Group {
    context: Context,
    conditions: Vec<Condition>,
    statements: Vec<Statement>,
    error_mode: ErrorMode,
}

#[derive(Debug, Clone, Default)]
struct Compiled {
    traces: Vec<Group>,
    metrics: Vec<Group>,
    logs: Vec<Group>,
    profiles: Vec<Group>,
}

/// The contexts each signal's statements may use, from the top down.
const TRACE_CONTEXTS: &[Context] = &[
    Context::Resource,
    Context::Scope,
    Context::Span,
    Context::SpanEvent,
];
const METRIC_CONTEXTS: &[Context] = &[
    Context::Resource,
    Context::Scope,
    Context::Metric,
    Context::DataPoint,
];
const LOG_CONTEXTS: &[Context] = &[Context::Resource, Context::Scope, Context::Log];
const PROFILE_CONTEXTS: &[Context] = &[Context::Resource, Context::Scope, Context::Profile];

/// Parses every statement and condition; pure, so `validate` and `create` both call it.
fn compile(c: &TransformConfig) -> Result<Compiled, ConfigError> {
    let mode = ErrorMode::parse(&c.error_mode).map_err(|e| ConfigError::at("error_mode", e))?;
    if c.flatten_data {
        return Err(ConfigError::at(
            "flatten_data",
            "not built: true needs otelcol's alpha transform.flatten.logs feature gate, which vigil \
             does not have; leave it out or set false",
        ));
    }
    let list =
        |key: &str, items: &[Entry], allowed: &[Context]| -> Result<Vec<Group>, ConfigError> {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let at = format!("{key}::{i}");
                match item {
                    Entry::Flat(src) => {
                        let ctx = infer_context(src, allowed)
                            .map_err(|e| ConfigError::at(at.clone(), e))?;
                        let st = parse_statement(ctx, src, StatementOptions::default()).map_err(
                            |e| ConfigError::at(at.clone(), format!("statement {src:?}: {e}")),
                        )?;
                        out.push(Group {
                            context: ctx,
                            conditions: Vec::new(),
                            statements: vec![st],
                            error_mode: mode,
                        });
                    }
                    Entry::Group(g) => out.push(
                        group(&at, g, allowed, mode).map_err(|(k, e)| ConfigError::at(k, e))?,
                    ),
                }
            }
            Ok(out)
        };
    Ok(Compiled {
        traces: list("trace_statements", &c.trace_statements, TRACE_CONTEXTS)?,
        metrics: list("metric_statements", &c.metric_statements, METRIC_CONTEXTS)?,
        logs: list("log_statements", &c.log_statements, LOG_CONTEXTS)?,
        profiles: list(
            "profile_statements",
            &c.profile_statements,
            PROFILE_CONTEXTS,
        )?,
    })
}

/// A grouped entry: its context as given (or inferred from the first statement), its conditions
/// and statements.
fn group(
    at: &str,
    g: &GroupConfig,
    allowed: &[Context],
    mode: ErrorMode,
) -> Result<Group, (String, String)> {
    let error_mode = match g.error_mode.as_deref() {
        None => mode,
        Some(m) => ErrorMode::parse(m).map_err(|e| (format!("{at}::error_mode"), e))?,
    };
    let context = match g.context.as_deref() {
        Some(name) => match Context::from_name(name).filter(|c| allowed.contains(c)) {
            Some(c) => c,
            None => {
                let names: Vec<&str> = allowed.iter().map(|c| c.name()).collect();
                return Err((
                    format!("{at}::context"),
                    format!(
                        "invalid context {name:?}: expected one of {}",
                        names.join(", ")
                    ),
                ));
            }
        },
        None => {
            let mut best = None;
            for s in g.statements.iter().chain(&g.conditions) {
                if let Ok(c) = infer_context(s, allowed) {
                    best = Some(best.map_or(c, |b: Context| b.max(c)));
                }
            }
            best.ok_or_else(|| {
                (
                    format!("{at}::context"),
                    "no context given and none can be inferred from the paths".to_string(),
                )
            })?
        }
    };
    let conditions = g
        .conditions
        .iter()
        .enumerate()
        .map(|(i, s)| {
            parse_condition(context, s).map_err(|e| {
                (
                    format!("{at}::conditions::{i}"),
                    format!("condition {s:?}: {e}"),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let statements = g
        .statements
        .iter()
        .enumerate()
        .map(|(i, s)| {
            parse_statement(context, s, StatementOptions::default()).map_err(|e| {
                (
                    format!("{at}::statements::{i}"),
                    format!("statement {s:?}: {e}"),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Group {
        context,
        conditions,
        statements,
        error_mode,
    })
}

struct Factory;

/// The `transform` processor factory.
pub fn factory() -> Arc<dyn vigil_core::factory::DynProcessorFactory> {
    vigil_core::factory::processor(Factory)
}

impl FactoryBase for Factory {
    type Config = TransformConfig;

    fn type_name(&self) -> &'static str {
        "transform"
    }

    fn validate(&self, _id: &ComponentId, cfg: &TransformConfig) -> Result<(), ConfigError> {
        compile(cfg).map(|_| ())
    }
}

impl ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Beta),
            (Signal::Metrics, Stability::Beta),
            (Signal::Logs, Stability::Beta),
            (Signal::Profiles, Stability::Development),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: TransformConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let c = compile(&cfg)?;
        let groups = match signal {
            Signal::Traces => c.traces,
            Signal::Metrics => c.metrics,
            Signal::Logs => c.logs,
            Signal::Profiles => c.profiles,
        };
        let labels = [("processor", set.id.to_string())];
        Ok(Arc::new(TransformProcessor {
            id: set.id.to_string(),
            groups,
            next,
            obs: set.processor_obs(signal),
            errors: metrics::counter!("vigil_processor_transform_errors", &labels),
        }))
    }
}

/// A running `transform` processor for one pipeline's signal.
pub struct TransformProcessor {
    id: String,
    groups: Vec<Group>,
    next: Arc<dyn Consumer>,
    obs: ProcessorObs,
    /// Statements and conditions that failed at run time, whatever the `error_mode`.
    errors: metrics::Counter,
}

impl TransformProcessor {
    /// Runs every group over the batch. Under `propagate` the first error stops the batch.
    fn transform(&self, data: &mut Telemetry) -> Result<(), String> {
        for g in &self.groups {
            let mut failed: Option<String> = None;
            visit(data, g.context, &mut |item: &mut Item<'_>| {
                if failed.is_none() {
                    if let Err(e) = self.run_group(g, item) {
                        failed = Some(e);
                    }
                }
                true
            });
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(())
    }

    /// One item through one group: the conditions (any must hold), then the statements in order.
    /// An error under `ignore` or `silent` skips that condition or statement only.
    fn run_group(&self, g: &Group, item: &mut Item<'_>) -> Result<(), String> {
        if !g.conditions.is_empty() {
            let mut any = false;
            for c in &g.conditions {
                match c.eval(item) {
                    Ok(true) => {
                        any = true;
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => self.failed(g.error_mode, e)?,
                }
            }
            if !any {
                return Ok(());
            }
        }
        for s in &g.statements {
            if let Err(e) = s.execute(item) {
                self.failed(g.error_mode, e)?;
            }
        }
        Ok(())
    }

    fn failed(&self, mode: ErrorMode, e: String) -> Result<(), String> {
        self.errors.increment(1);
        match mode {
            ErrorMode::Propagate => Err(e),
            ErrorMode::Ignore => {
                tracing::warn!(processor = %self.id, error = %e, "transform statement failed; skipped");
                Ok(())
            }
            ErrorMode::Silent => Ok(()),
        }
    }
}

impl Component for TransformProcessor {}

#[async_trait]
impl Consumer for TransformProcessor {
    async fn consume(&self, mut data: Telemetry) -> Result<(), ConsumeError> {
        self.obs.incoming(data.item_count());
        if let Err(e) = self.transform(&mut data) {
            return Err(ConsumeError::permanent(
                format!("transform processor {}: {e}", self.id),
                data.item_count(),
            ));
        }
        // Statements may drop items (a metric or attribute, not a record, today), so count again.
        self.obs.outgoing(data.item_count());
        self.next.consume(data).await
    }
}

#[cfg(test)]
mod tests;
