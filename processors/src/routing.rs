//! `routing`: otelcol's routing connector. Each row of `table` holds an OTTL `condition` (or a
//! `statement` of the form `route() where …`) and the `pipelines` that get what matches. Rows are
//! tried in order and the first that matches wins, which is what otelcol's deprecated `match_once:
//! true` meant and what it does now; what no row matches goes to `default_pipelines` (or nowhere).
//! A row's `context` is `resource` (the default: whole resource groups are routed) or the signal's
//! item (`span`, `metric`, `log`: items are routed one by one, under copies of their resource and
//! scope). `error_mode` decides what a condition that fails at run time does.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use vigil_core::factory::{ConnectorFactory, FactoryBase};
use vigil_core::otlp::logs::v1::{ResourceLogs, ScopeLogs};
use vigil_core::otlp::metrics::v1::{ResourceMetrics, ScopeMetrics};
use vigil_core::otlp::trace::v1::{ResourceSpans, ScopeSpans};
use vigil_core::{
    Component, ComponentId, ConfigError, ConnectorObs, ConsumeError, Consumer, NextConsumers,
    Settings, Signal, Stability, Telemetry,
};
use vigil_ottl::pdata::{visit, Item};
use vigil_ottl::{
    parse_condition, parse_statement, Condition, Context, ErrorMode, StatementOptions,
};

/// The `routing` connector config as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Pipelines that get what no route matches (nothing when empty).
    #[serde(default)]
    pub default_pipelines: Vec<String>,
    /// `propagate` (default), `ignore` or `silent`.
    #[serde(default = "default_error_mode")]
    pub error_mode: String,
    /// Deprecated in otelcol; accepted, and routing is always first-match.
    #[serde(default)]
    pub match_once: Option<bool>,
    #[serde(default)]
    pub table: Vec<RouteConfig>,
}

fn default_error_mode() -> String {
    "propagate".into()
}

/// One row of `table`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `route() where <condition>`; exclusive with `condition`.
    #[serde(default)]
    pub statement: Option<String>,
    #[serde(default)]
    pub condition: Option<String>,
    /// `resource` (default), `span`, `metric` or `log`.
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub pipelines: Vec<String>,
}

#[derive(Debug, Clone)]
struct Route {
    context: Context,
    condition: Condition,
    pipelines: Vec<String>,
}

#[derive(Debug, Clone)]
struct Compiled {
    routes: Vec<Route>,
    default_pipelines: Vec<String>,
    error_mode: ErrorMode,
}

/// Parses every route; pure, so `validate` and `create` both call it.
fn compile(c: &RoutingConfig) -> Result<Compiled, ConfigError> {
    let err = |key: String, msg: String| ConfigError::at(key, msg);
    let error_mode = ErrorMode::parse(&c.error_mode).map_err(|e| err("error_mode".into(), e))?;
    if c.table.is_empty() {
        return Err(err("table".into(), "at least one route is needed".into()));
    }
    let mut routes = Vec::new();
    for (i, r) in c.table.iter().enumerate() {
        let at = format!("table::{i}");
        let context = match r.context.as_deref() {
            None | Some("resource") => Context::Resource,
            Some("span") => Context::Span,
            Some("metric") => Context::Metric,
            Some("log") => Context::Log,
            // Checked against the row's pipelines at create: inert on logs and traces, as in otelcol.
            Some("datapoint") => Context::DataPoint,
            Some(o @ "request") => {
                return Err(err(
                    format!("{at}::context"),
                    format!(
                    "context {o:?} is not supported; use resource, span, metric, datapoint or log"
                ),
                ))
            }
            Some(o) => {
                return Err(err(
                    format!("{at}::context"),
                    format!(
                        "invalid context {o:?}: expected resource, span, metric, datapoint or log"
                    ),
                ))
            }
        };
        let condition = match (&r.statement, &r.condition) {
            (Some(s), None) => {
                let st = parse_statement(context, s, StatementOptions { allow_route: true })
                    .map_err(|e| {
                        err(format!("{at}::statement"), format!("statement {s:?}: {e}"))
                    })?;
                if st.editor.func != vigil_ottl::route_func() {
                    return Err(err(
                        format!("{at}::statement"),
                        format!(
                            "statement {s:?}: a routing statement is route() where <condition>"
                        ),
                    ));
                }
                Condition {
                    source: s.clone(),
                    expr: st
                        .condition
                        .unwrap_or(vigil_ottl::Expr::Lit(vigil_ottl::Value::Bool(true))),
                }
            }
            (None, Some(s)) => parse_condition(context, s)
                .map_err(|e| err(format!("{at}::condition"), format!("condition {s:?}: {e}")))?,
            _ => {
                return Err(err(
                    at,
                    "a route needs exactly one of statement and condition".into(),
                ))
            }
        };
        if r.pipelines.is_empty() {
            return Err(err(
                format!("{at}::pipelines"),
                "a route needs at least one pipeline".into(),
            ));
        }
        routes.push(Route {
            context,
            condition,
            pipelines: r.pipelines.clone(),
        });
    }
    Ok(Compiled {
        routes,
        default_pipelines: c.default_pipelines.clone(),
        error_mode,
    })
}

/// The signal a pipeline id (`traces`, `traces/x`) carries.
pub(crate) fn pipeline_signal(p: &str) -> Option<Signal> {
    match p.split('/').next() {
        Some("traces") => Some(Signal::Traces),
        Some("metrics") => Some(Signal::Metrics),
        Some("logs") => Some(Signal::Logs),
        _ => None,
    }
}

struct Factory;

/// The `routing` connector factory.
pub fn factory() -> Arc<dyn vigil_core::factory::DynConnectorFactory> {
    vigil_core::factory::connector(Factory)
}

impl FactoryBase for Factory {
    type Config = RoutingConfig;

    fn type_name(&self) -> &'static str {
        "routing"
    }

    /// `table` has no default: a routing connector without routes is a mistake.
    fn default_config(&self) -> Option<RoutingConfig> {
        None
    }

    fn validate(&self, _id: &ComponentId, cfg: &RoutingConfig) -> Result<(), ConfigError> {
        compile(cfg).map(|_| ())
    }
}

impl ConnectorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Signal, Stability)] {
        &[
            (Signal::Traces, Signal::Traces, Stability::Alpha),
            (Signal::Metrics, Signal::Metrics, Stability::Alpha),
            (Signal::Logs, Signal::Logs, Stability::Alpha),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: RoutingConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn vigil_core::Connector>, ConfigError> {
        let c = compile(&cfg)?;
        if cfg.match_once == Some(false) {
            let _in = set.span.enter();
            tracing::warn!("routing: match_once is deprecated and routing is always first-match");
        }
        // Every pipeline named must be one this connector feeds, so a typo fails validate, not data.
        let resolve = |key: String, names: &[String]| -> Result<Vec<Target>, ConfigError> {
            names
                .iter()
                .map(|p| match (next.pipeline(p), pipeline_signal(p)) {
                    (Some(c), Some(signal)) => Ok(Target {
                        signal,
                        consumer: c.clone(),
                    }),
                    _ => Err(ConfigError::at(
                        key.clone(),
                        format!("pipeline {p:?} does not list this connector among its receivers"),
                    )),
                })
                .collect()
        };
        let mut routes = Vec::new();
        for (i, r) in c.routes.into_iter().enumerate() {
            let targets = resolve(format!("table::{i}::pipelines"), &r.pipelines)?;
            if r.context == Context::DataPoint {
                // otelcol's logs and traces routers never match a datapoint row, so what it would
                // take goes on to later rows and the defaults; its metrics router moves single
                // points, which this connector does not do yet.
                if targets.iter().any(|t| t.signal == Signal::Metrics) {
                    return Err(ConfigError::at(
                        format!("table::{i}::context"),
                        "context \"datapoint\" is not supported for metrics pipelines yet; use \"metric\"",
                    ));
                }
                let _in = set.span.enter();
                tracing::warn!(
                    "routing: table row {i} has context datapoint and routes logs or traces: it never matches, as in otelcol"
                );
            }
            routes.push((r, targets));
        }
        let default = resolve("default_pipelines".into(), &c.default_pipelines)?;
        let labels = [("connector", set.id.to_string())];
        Ok(Arc::new(Routing {
            id: set.id.to_string(),
            routes,
            default,
            error_mode: c.error_mode,
            obs: set.connector_obs(),
            unrouted: metrics::counter!("vigil_connector_routing_unrouted_items", &labels),
            errors: metrics::counter!("vigil_connector_routing_errors", &labels),
        }))
    }
}

struct Target {
    signal: Signal,
    consumer: Arc<dyn Consumer>,
}

struct Routing {
    id: String,
    routes: Vec<(Route, Vec<Target>)>,
    default: Vec<Target>,
    error_mode: ErrorMode,
    obs: ConnectorObs,
    /// Items no route matched while there are no default pipelines: they go nowhere, as in otelcol.
    unrouted: metrics::Counter,
    /// Conditions that failed at run time, whatever the `error_mode`.
    errors: metrics::Counter,
}

/// The item context of a signal.
fn item_context(s: Signal) -> Context {
    match s {
        Signal::Traces => Context::Span,
        Signal::Metrics => Context::Metric,
        Signal::Logs => Context::Log,
        Signal::Profiles => Context::Profile,
    }
}

impl Routing {
    /// The index of the first matching route for one item (`routes.len()` for the default).
    fn route_of(&self, signal: Signal, item: &Item<'_>) -> Result<usize, String> {
        for (i, (r, _)) in self.routes.iter().enumerate() {
            if r.context != Context::Resource && r.context != item_context(signal) {
                continue;
            }
            match r.condition.eval(item) {
                Ok(true) => return Ok(i),
                Ok(false) => {}
                Err(e) => {
                    self.errors.increment(1);
                    match self.error_mode {
                        ErrorMode::Propagate => return Err(e),
                        ErrorMode::Ignore => {
                            tracing::warn!(connector = %self.id, error = %e, "routing condition failed; treated as no match")
                        }
                        ErrorMode::Silent => {}
                    }
                }
            }
        }
        Ok(self.routes.len())
    }
}

/// Splits a batch by per-item route decisions taken in [`visit`]'s order. With `by_item` false
/// there is one decision per resource group.
macro_rules! split {
    ($items:expr, $routes:expr, $n:expr, $by_item:expr, $R:ident, $S:ident, $scopes:ident, $list:ident) => {{
        let mut out: Vec<Vec<$R>> = (0..$n).map(|_| Vec::new()).collect();
        let mut k = 0;
        for rs in $items {
            if !$by_item {
                out[$routes[k]].push(rs);
                k += 1;
                continue;
            }
            let mut per: Vec<Option<$R>> = (0..$n).map(|_| None).collect();
            for ss in rs.$scopes {
                let mut per_scope: Vec<Option<$S>> = (0..$n).map(|_| None).collect();
                for item in ss.$list {
                    let r = $routes[k];
                    k += 1;
                    per_scope[r]
                        .get_or_insert_with(|| $S {
                            scope: ss.scope.clone(),
                            schema_url: ss.schema_url.clone(),
                            ..Default::default()
                        })
                        .$list
                        .push(item);
                }
                for (r, s) in per_scope.into_iter().enumerate() {
                    if let Some(s) = s {
                        per[r]
                            .get_or_insert_with(|| $R {
                                resource: rs.resource.clone(),
                                schema_url: rs.schema_url.clone(),
                                ..Default::default()
                            })
                            .$scopes
                            .push(s);
                    }
                }
            }
            for (r, x) in per.into_iter().enumerate() {
                if let Some(x) = x {
                    out[r].push(x);
                }
            }
        }
        out
    }};
}

impl Component for Routing {}

#[async_trait]
impl Consumer for Routing {
    async fn consume(&self, mut data: Telemetry) -> Result<(), ConsumeError> {
        let signal = data.signal();
        self.obs.consumed(signal, data.item_count());
        let by_item = self
            .routes
            .iter()
            .any(|(r, _)| r.context == item_context(signal));
        let ctx = if by_item {
            item_context(signal)
        } else {
            Context::Resource
        };
        let mut decisions = Vec::new();
        let mut failed = None;
        visit(&mut data, ctx, &mut |item: &mut Item<'_>| {
            match self.route_of(signal, item) {
                Ok(r) => decisions.push(r),
                Err(e) => {
                    failed.get_or_insert(e);
                    decisions.push(self.routes.len());
                }
            }
            true
        });
        if let Some(e) = failed {
            self.obs.refused(signal, data.item_count());
            return Err(ConsumeError::permanent(
                format!("routing connector {}: {e}", self.id),
                data.item_count(),
            ));
        }
        let n = self.routes.len() + 1;
        let parts: Vec<Telemetry> = match data {
            Telemetry::Traces(x) => split!(
                x,
                decisions,
                n,
                by_item,
                ResourceSpans,
                ScopeSpans,
                scope_spans,
                spans
            )
            .into_iter()
            .map(Telemetry::Traces)
            .collect(),
            Telemetry::Metrics(x) => split!(
                x,
                decisions,
                n,
                by_item,
                ResourceMetrics,
                ScopeMetrics,
                scope_metrics,
                metrics
            )
            .into_iter()
            .map(Telemetry::Metrics)
            .collect(),
            Telemetry::Logs(x) => split!(
                x,
                decisions,
                n,
                by_item,
                ResourceLogs,
                ScopeLogs,
                scope_logs,
                log_records
            )
            .into_iter()
            .map(Telemetry::Logs)
            .collect(),
            // Not in the stability table: routes never see profiles.
            p @ Telemetry::Profiles(_) => vec![p],
        };
        let mut first_err = None;
        for (i, part) in parts.into_iter().enumerate() {
            if part.item_count() == 0 {
                continue;
            }
            let targets: Vec<&Target> = match self.routes.get(i) {
                Some((_, t)) => t.iter(),
                None => self.default.iter(),
            }
            .filter(|t| t.signal == signal)
            .collect();
            if targets.is_empty() {
                self.unrouted.increment(part.item_count() as u64);
                continue;
            }
            // Every target but the last gets a copy; the last takes the batch.
            self.obs.produced(signal, part.item_count() * targets.len());
            if let Some((last, rest)) = targets.split_last() {
                for t in rest {
                    if let Err(e) = t.consumer.consume(part.clone()).await {
                        first_err.get_or_insert(e);
                    }
                }
                if let Err(e) = last.consumer.consume(part).await {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests;
