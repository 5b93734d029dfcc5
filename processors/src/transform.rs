//! `transform`: otelcol's transform processor. OTTL statements (`set(span.name, "x") where …`) edit
//! traces, metrics and logs in place, in order. `trace_statements`, `metric_statements` and
//! `log_statements` take otelcol's two forms, mixed freely: a plain string, whose context is inferred
//! from its path prefixes (`span.`, `resource.`, …), or a group with `context`, `conditions` (any one
//! must hold) and `statements`. `error_mode` (per group or for the processor) decides what a statement
//! that fails at run time does. Statements are parsed once at config load by [`vigil_ottl`]; an
//! unsupported function or path is a config error that names it.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value as Json;
use std::sync::Arc;
use vigil_core::config::decode;
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Processor,
    ProcessorFactory, Signal, Telemetry,
};
use vigil_ottl::pdata::{visit, Item};
use vigil_ottl::{
    infer_context, parse_condition, parse_statement, Condition, Context, ErrorMode, Statement,
    StatementOptions,
};

/// The `transform` processor config as written; each list holds strings or groups.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// `propagate` (default), `ignore` or `silent`.
    #[serde(default)]
    pub error_mode: Option<String>,
    #[serde(default)]
    pub trace_statements: Vec<Json>,
    #[serde(default)]
    pub metric_statements: Vec<Json>,
    #[serde(default)]
    pub log_statements: Vec<Json>,
}

/// One group in otelcol's grouped form.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupConfig {
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    conditions: Vec<String>,
    #[serde(default)]
    statements: Vec<String>,
    #[serde(default)]
    error_mode: Option<String>,
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

fn compile(id: &ComponentId, value: &Json) -> Result<Compiled, ConfigError> {
    let err =
        |key: String, msg: String| ConfigError::component(ComponentKind::Processor, id, key, msg);
    let c: TransformConfig = decode(ComponentKind::Processor, id, value)?;
    let mode = match c.error_mode.as_deref() {
        None => ErrorMode::Propagate,
        Some(m) => ErrorMode::parse(m).map_err(|e| err("error_mode".into(), e))?,
    };
    let list =
        |key: &str, items: &[Json], allowed: &[Context]| -> Result<Vec<Group>, ConfigError> {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let at = format!("{key}::{i}");
                match item {
                    Json::String(src) => {
                        let ctx = infer_context(src, allowed).map_err(|e| err(at.clone(), e))?;
                        let st = parse_statement(ctx, src, StatementOptions::default())
                            .map_err(|e| err(at.clone(), format!("statement {src:?}: {e}")))?;
                        out.push(Group {
                            context: ctx,
                            conditions: Vec::new(),
                            statements: vec![st],
                            error_mode: mode,
                        });
                    }
                    Json::Object(fields) => {
                        // A key left empty (`statements:` holding only an anchor) means its
                        // default, as everywhere in otelcol's config.
                        let fields: serde_json::Map<String, Json> = fields
                            .iter()
                            .filter(|(_, v)| !v.is_null())
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        let g: GroupConfig = serde_json::from_value(Json::Object(fields))
                            .map_err(|e| err(at.clone(), e.to_string()))?;
                        out.push(group(&at, g, allowed, mode).map_err(|(k, e)| err(k, e))?);
                    }
                    other => {
                        return Err(err(
                            at,
                            format!(
                            "expected a statement string or a group with statements, got {other}"
                        ),
                        ))
                    }
                }
            }
            Ok(out)
        };
    Ok(Compiled {
        traces: list("trace_statements", &c.trace_statements, TRACE_CONTEXTS)?,
        metrics: list("metric_statements", &c.metric_statements, METRIC_CONTEXTS)?,
        logs: list("log_statements", &c.log_statements, LOG_CONTEXTS)?,
    })
}

/// A grouped entry: its context as given (or inferred from the first statement), its conditions
/// and statements.
fn group(
    at: &str,
    g: GroupConfig,
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
pub fn factory() -> Arc<dyn ProcessorFactory> {
    Arc::new(Factory)
}

impl ProcessorFactory for Factory {
    fn type_name(&self) -> &'static str {
        "transform"
    }

    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn validate(&self, id: &ComponentId, config: &Json) -> Result<(), ConfigError> {
        compile(id, config).map(|_| ())
    }

    fn create(
        &self,
        id: &ComponentId,
        config: &Json,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let c = compile(id, config)?;
        let groups = match signal {
            Signal::Traces => c.traces,
            Signal::Metrics => c.metrics,
            Signal::Logs => c.logs,
        };
        let labels = [("processor", id.to_string())];
        Ok(Arc::new(TransformProcessor {
            id: id.to_string(),
            groups,
            next,
            errors: metrics::counter!("vigil_processor_transform_errors", &labels),
        }))
    }
}

/// A running `transform` processor for one pipeline's signal.
pub struct TransformProcessor {
    id: String,
    groups: Vec<Group>,
    next: Arc<dyn Consumer>,
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
        if let Err(e) = self.transform(&mut data) {
            return Err(ConsumeError::permanent(
                format!("transform processor {}: {e}", self.id),
                data.item_count(),
            ));
        }
        self.next.consume(data).await
    }
}

#[cfg(test)]
mod tests;
