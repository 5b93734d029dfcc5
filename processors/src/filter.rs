//! `filter`: otelcol's filter processor with OTTL conditions. A span, metric, data point or log record
//! that matches any condition of its kind is dropped; a metric whose data points are all dropped goes
//! too, and so do scopes and resources left empty. Conditions are parsed once at config load by the
//! shared OTTL engine ([`vigil_ottl`]); `error_mode` decides what an evaluation error does.

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
use vigil_ottl::{parse_condition, Condition, Context, ErrorMode, Target};

/// The `filter` processor config as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// `ignore` (default, as in otelcol since v0.153's `processor.filter.defaultErrorModeIgnore`,
    /// stable from v0.157), `propagate` or `silent`.
    #[serde(default = "default_error_mode")]
    pub error_mode: String,
    #[serde(default)]
    pub traces: TracesConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub logs: LogsConfig,
    /// otelcol's oldest form for spans (filterconfig.MatchConfig, deprecated there and still read):
    /// `spans: {include, exclude}`, the same blocks as `traces`' legacy ones.
    #[serde(default)]
    pub spans: SpansConfig,
    /// otelcol's flat form (contrib v0.146+): conditions whose context is inferred from their path
    /// prefixes (`span.`, `resource.`, ...), or groups `{context, conditions, error_mode}`.
    #[serde(default)]
    pub trace_conditions: Vec<Json>,
    #[serde(default)]
    pub metric_conditions: Vec<Json>,
    #[serde(default)]
    pub log_conditions: Vec<Json>,
    /// Conditions for a `profiles` pipeline, in the `profile` context. A profile's own fields
    /// are not reachable (docs/ottl.md): `resource.*` and `instrumentation_scope.*` paths are, and
    /// a profile whose resource or scope matches is dropped.
    #[serde(default)]
    pub profiles: ProfilesConfig,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profile_conditions: Vec<Json>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilesConfig {
    #[serde(default)]
    pub profile: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpansConfig {
    #[serde(default)]
    pub include: Option<MatchProperties>,
    #[serde(default)]
    pub exclude: Option<MatchProperties>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    #[serde(default)]
    pub span: Vec<String>,
    #[serde(default)]
    pub spanevent: Vec<String>,
    /// otelcol's legacy match config: keep only spans that match (`include`), drop those that do
    /// (`exclude`). Translated into OTTL span conditions at load (see [`legacy`]).
    #[serde(default)]
    pub include: Option<MatchProperties>,
    #[serde(default)]
    pub exclude: Option<MatchProperties>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    #[serde(default)]
    pub metric: Vec<String>,
    #[serde(default)]
    pub datapoint: Vec<String>,
    #[serde(default)]
    pub include: Option<MatchProperties>,
    #[serde(default)]
    pub exclude: Option<MatchProperties>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    #[serde(default)]
    pub log_record: Vec<String>,
    #[serde(default)]
    pub include: Option<MatchProperties>,
    #[serde(default)]
    pub exclude: Option<MatchProperties>,
}

/// otelcol's legacy `include`/`exclude` block (filterconfig.MatchProperties). Every field given
/// must match (names and bodies: any of the list; attributes: all of them).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatchProperties {
    /// `strict` (equality) or `regexp` (RE2 syntax; a match anywhere, as Go's MatchString).
    #[serde(default)]
    pub match_type: Option<String>,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub span_names: Vec<String>,
    #[serde(default, deserialize_with = "string_or_list")]
    pub metric_names: Vec<String>,
    #[serde(default)]
    pub attributes: Vec<AttrMatch>,
    /// `resources` is filterconfig.MatchProperties' name for it (the `spans` blocks).
    #[serde(default, alias = "resources")]
    pub resource_attributes: Vec<AttrMatch>,
    #[serde(default)]
    pub record_attributes: Vec<AttrMatch>,
    /// `bodies` is the logs blocks' name for it (filterprocessor's LogMatchProperties).
    #[serde(default, alias = "bodies")]
    pub log_bodies: Vec<String>,
    #[serde(default)]
    pub severity_texts: Vec<String>,
}

/// `{key, value}`; without `value` the key only has to be present.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttrMatch {
    pub key: String,
    #[serde(default)]
    pub value: Option<Json>,
}

fn default_error_mode() -> String {
    "ignore".into()
}

/// A list, or one name as a scalar (`${env:...}` may expand to either).
fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// Translates the legacy match config into OTTL conditions for the shared engine, so both forms
/// run the same way.
mod legacy {
    use super::{AttrMatch, Json, MatchProperties};

    /// The regex crate's parse errors span lines (the pattern, a caret, the message); validate
    /// prints one line per problem, so keep the message.
    fn one_line(e: &regex::Error) -> String {
        let t = e.to_string();
        t.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string()
    }

    /// An OTTL string literal.
    fn lit(s: &str) -> String {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }

    fn value_lit(v: &Json) -> Result<String, String> {
        match v {
            Json::String(s) => Ok(lit(s)),
            Json::Bool(b) => Ok(b.to_string()),
            Json::Number(n) => Ok(n.to_string()),
            other => Err(format!("value {other} must be a string, number or boolean")),
        }
    }

    fn one_of(path: &str, items: &[String], regexp: bool) -> Result<String, String> {
        let mut parts = Vec::new();
        for it in items {
            if regexp {
                regex::Regex::new(it)
                    .map_err(|e| format!("invalid regular expression {it:?}: {}", one_line(&e)))?;
                parts.push(format!("IsMatch({path}, {})", lit(it)));
            } else {
                parts.push(format!("{path} == {}", lit(it)));
            }
        }
        Ok(format!("({})", parts.join(" or ")))
    }

    fn attrs(map: &str, list: &[AttrMatch], regexp: bool) -> Result<Vec<String>, String> {
        list.iter()
            .map(|a| {
                let path = format!("{map}[{}]", lit(&a.key));
                Ok(match &a.value {
                    None | Some(Json::Null) => format!("{path} != nil"),
                    Some(Json::String(re)) if regexp => {
                        regex::Regex::new(re).map_err(|e| {
                            format!("invalid regular expression {re:?}: {}", one_line(&e))
                        })?;
                        format!("({path} != nil and IsMatch({path}, {}))", lit(re))
                    }
                    Some(v) => format!("{path} == {}", value_lit(v)?),
                })
            })
            .collect()
    }

    /// The condition that is true for an item this block matches. `allowed` are the fields that
    /// apply to the signal; any other non-empty field is refused.
    pub fn condition(m: &MatchProperties, allowed: &[&str]) -> Result<String, (String, String)> {
        let regexp = match m.match_type.as_deref() {
            Some("strict") => false,
            Some("regexp") => true,
            Some(other) => {
                return Err((
                    "match_type".into(),
                    format!("{other:?} is not supported; expected strict or regexp"),
                ))
            }
            None => return Err(("match_type".into(), "is required: strict or regexp".into())),
        };
        let given: [(&str, bool); 9] = [
            ("services", !m.services.is_empty()),
            ("span_names", !m.span_names.is_empty()),
            ("metric_names", !m.metric_names.is_empty()),
            ("attributes", !m.attributes.is_empty()),
            ("resource_attributes", !m.resource_attributes.is_empty()),
            ("record_attributes", !m.record_attributes.is_empty()),
            ("log_bodies", !m.log_bodies.is_empty()),
            ("severity_texts", !m.severity_texts.is_empty()),
            ("", false),
        ];
        for (k, set) in given {
            if set && !allowed.contains(&k) {
                return Err((
                    k.into(),
                    format!(
                        "does not apply here; this block takes {}",
                        allowed.join(", ")
                    ),
                ));
            }
        }
        let e = |k: &'static str| move |m: String| (k.to_string(), m);
        let mut parts = Vec::new();
        if !m.services.is_empty() {
            parts.push(
                one_of("resource.attributes[\"service.name\"]", &m.services, regexp)
                    .map_err(e("services"))?,
            );
        }
        if !m.span_names.is_empty() {
            parts.push(one_of("name", &m.span_names, regexp).map_err(e("span_names"))?);
        }
        if !m.metric_names.is_empty() {
            parts.push(one_of("name", &m.metric_names, regexp).map_err(e("metric_names"))?);
        }
        if !m.log_bodies.is_empty() {
            parts.push(one_of("body", &m.log_bodies, regexp).map_err(e("log_bodies"))?);
        }
        if !m.severity_texts.is_empty() {
            parts.push(
                one_of("severity_text", &m.severity_texts, regexp).map_err(e("severity_texts"))?,
            );
        }
        parts.extend(attrs("attributes", &m.attributes, regexp).map_err(e("attributes"))?);
        parts.extend(
            attrs("attributes", &m.record_attributes, regexp).map_err(e("record_attributes"))?,
        );
        parts.extend(
            attrs("resource.attributes", &m.resource_attributes, regexp)
                .map_err(e("resource_attributes"))?,
        );
        if parts.is_empty() {
            // otelcol: a block that names nothing matches nothing.
            return Ok("false".into());
        }
        Ok(format!("({})", parts.join(" and ")))
    }
}

/// A condition and the `error_mode` it runs under.
type Rule = (Condition, ErrorMode);

/// The compiled config.
#[derive(Debug, Clone)]
struct Compiled {
    span: Vec<Rule>,
    spanevent: Vec<Rule>,
    metric: Vec<Rule>,
    datapoint: Vec<Rule>,
    log_record: Vec<Rule>,
    profile: Vec<Rule>,
}

/// One entry of `trace_conditions`/`metric_conditions`/`log_conditions`: a condition whose
/// context is inferred from its paths, or a group naming its context. Returns each condition with
/// the context it is evaluated in. A resource or scope condition is evaluated on every item below
/// it, which drops the same data as dropping the resource or scope: vigil removes what is left
/// empty.
fn flat_entry(
    key: &str,
    entry: &Json,
    contexts: &[Context],
    mode: ErrorMode,
) -> Result<Vec<(Context, Rule)>, ConfigError> {
    let lowest = |c: Context| match c {
        Context::Resource | Context::Scope => contexts[2],
        c => c,
    };
    let parse = |at: &str, ctx: Context, src: &str, mode: ErrorMode| {
        parse_condition(ctx, src)
            .map(|c| (ctx, (c, mode)))
            .map_err(|e| ConfigError::at(at, format!("condition {src:?}: {e}")))
    };
    match entry {
        Json::String(src) => {
            let ctx =
                vigil_ottl::infer_context(src, contexts).map_err(|e| ConfigError::at(key, e))?;
            Ok(vec![parse(key, lowest(ctx), src, mode)?])
        }
        Json::Object(m) => {
            if let Some(k) = m
                .keys()
                .find(|k| !["context", "conditions", "error_mode"].contains(&k.as_str()))
            {
                return Err(ConfigError::at(
                    format!("{key}::{k}"),
                    "unknown key (expected context, conditions or error_mode)",
                ));
            }
            let mode = match m.get("error_mode") {
                None | Some(Json::Null) => mode,
                Some(Json::String(s)) => ErrorMode::parse(s)
                    .map_err(|e| ConfigError::at(format!("{key}::error_mode"), e))?,
                Some(_) => {
                    return Err(ConfigError::at(
                        format!("{key}::error_mode"),
                        "expected propagate, ignore or silent",
                    ))
                }
            };
            let srcs: Vec<&str> = match m.get("conditions") {
                Some(Json::Array(a)) => a
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        c.as_str().ok_or_else(|| {
                            ConfigError::at(format!("{key}::conditions::{i}"), "expected a string")
                        })
                    })
                    .collect::<Result<_, _>>()?,
                Some(Json::Null) | None => Vec::new(),
                Some(_) => {
                    return Err(ConfigError::at(
                        format!("{key}::conditions"),
                        "expected a list of conditions",
                    ))
                }
            };
            let ctx = match m.get("context") {
                Some(Json::String(name)) => Context::from_name(name)
                    .filter(|c| contexts.contains(c))
                    .ok_or_else(|| {
                        ConfigError::at(
                            format!("{key}::context"),
                            format!(
                                "unknown context {name:?} (expected one of {})",
                                contexts
                                    .iter()
                                    .map(|c| c.name())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    })?,
                None | Some(Json::Null) => match srcs.first() {
                    Some(first) => vigil_ottl::infer_context(first, contexts)
                        .map_err(|e| ConfigError::at(format!("{key}::conditions::0"), e))?,
                    None => return Ok(Vec::new()),
                },
                Some(_) => {
                    return Err(ConfigError::at(
                        format!("{key}::context"),
                        "expected a context name",
                    ))
                }
            };
            srcs.iter()
                .enumerate()
                .map(|(i, src)| parse(&format!("{key}::conditions::{i}"), lowest(ctx), src, mode))
                .collect()
        }
        _ => Err(ConfigError::at(
            key,
            "expected a condition, or a group with context and conditions",
        )),
    }
}

/// Parses every condition; pure, so `validate` and `create` both call it.
fn compile(c: &FilterConfig) -> Result<Compiled, ConfigError> {
    let error_mode =
        ErrorMode::parse(&c.error_mode).map_err(|e| ConfigError::at("error_mode", e))?;
    let list = |key: &str, ctx: Context, srcs: &[String]| -> Result<Vec<Rule>, ConfigError> {
        srcs.iter()
            .enumerate()
            .map(|(i, s)| {
                parse_condition(ctx, s)
                    .map(|c| (c, error_mode))
                    .map_err(|e| {
                        ConfigError::at(format!("{key}::{i}"), format!("condition {s:?}: {e}"))
                    })
            })
            .collect()
    };
    // The legacy blocks become conditions: drop what `exclude` matches and what `include` does not.
    let legacy = |section: &str,
                  include: &Option<MatchProperties>,
                  exclude: &Option<MatchProperties>,
                  allowed: &[&str],
                  ctx: Context|
     -> Result<Vec<Rule>, ConfigError> {
        let mut out = Vec::new();
        for (which, m, negate) in [("include", include, true), ("exclude", exclude, false)] {
            let Some(m) = m else { continue };
            let key = format!("{section}::{which}");
            let cond = legacy::condition(m, allowed)
                .map_err(|(k, msg)| ConfigError::at(format!("{key}::{k}"), msg))?;
            let src = if negate { format!("not {cond}") } else { cond };
            out.push((
                parse_condition(ctx, &src)
                    .map_err(|e| ConfigError::at(key, format!("{src:?}: {e}")))?,
                error_mode,
            ));
        }
        Ok(out)
    };
    let mut span = list("traces::span", Context::Span, &c.traces.span)?;
    span.extend(legacy(
        "spans",
        &c.spans.include,
        &c.spans.exclude,
        &[
            "services",
            "span_names",
            "attributes",
            "resource_attributes",
        ],
        Context::Span,
    )?);
    span.extend(legacy(
        "traces",
        &c.traces.include,
        &c.traces.exclude,
        &[
            "services",
            "span_names",
            "attributes",
            "resource_attributes",
        ],
        Context::Span,
    )?);
    let mut metric = list("metrics::metric", Context::Metric, &c.metrics.metric)?;
    metric.extend(legacy(
        "metrics",
        &c.metrics.include,
        &c.metrics.exclude,
        &["metric_names", "resource_attributes"],
        Context::Metric,
    )?);
    let mut log_record = list("logs::log_record", Context::Log, &c.logs.log_record)?;
    log_record.extend(legacy(
        "logs",
        &c.logs.include,
        &c.logs.exclude,
        &[
            "attributes",
            "record_attributes",
            "resource_attributes",
            "log_bodies",
            "severity_texts",
        ],
        Context::Log,
    )?);
    let mut compiled = Compiled {
        span,
        spanevent: list("traces::spanevent", Context::SpanEvent, &c.traces.spanevent)?,
        metric,
        datapoint: list(
            "metrics::datapoint",
            Context::DataPoint,
            &c.metrics.datapoint,
        )?,
        log_record,
        profile: list("profiles::profile", Context::Profile, &c.profiles.profile)?,
    };
    use Context::*;
    for (key, entries, contexts) in [
        (
            "trace_conditions",
            &c.trace_conditions,
            &[Resource, Scope, Span, SpanEvent][..],
        ),
        (
            "metric_conditions",
            &c.metric_conditions,
            &[Resource, Scope, Metric, DataPoint],
        ),
        ("log_conditions", &c.log_conditions, &[Resource, Scope, Log]),
        (
            "profile_conditions",
            &c.profile_conditions,
            &[Resource, Scope, Profile],
        ),
    ] {
        for (i, e) in entries.iter().enumerate() {
            for (ctx, rule) in flat_entry(&format!("{key}::{i}"), e, contexts, error_mode)? {
                match ctx {
                    Span => compiled.span.push(rule),
                    SpanEvent => compiled.spanevent.push(rule),
                    Metric => compiled.metric.push(rule),
                    DataPoint => compiled.datapoint.push(rule),
                    Profile => compiled.profile.push(rule),
                    _ => compiled.log_record.push(rule),
                }
            }
        }
    }
    Ok(compiled)
}

struct Factory;

/// The `filter` processor factory.
pub fn factory() -> Arc<dyn vigil_core::factory::DynProcessorFactory> {
    vigil_core::factory::processor(Factory)
}

impl FactoryBase for Factory {
    type Config = FilterConfig;

    fn type_name(&self) -> &'static str {
        "filter"
    }

    fn validate(&self, _id: &ComponentId, cfg: &FilterConfig) -> Result<(), ConfigError> {
        compile(cfg).map(|_| ())
    }
}

impl ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Alpha),
            (Signal::Metrics, Stability::Alpha),
            (Signal::Logs, Stability::Alpha),
            (Signal::Profiles, Stability::Development),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: FilterConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let c = compile(&cfg)?;
        let labels = [("processor", set.id.to_string())];
        Ok(Arc::new(FilterProcessor {
            id: set.id.to_string(),
            c,
            next,
            obs: set.processor_obs(signal),
            dropped: metrics::counter!("vigil_processor_filter_dropped_items", &labels),
        }))
    }
}

/// A running `filter` processor.
pub struct FilterProcessor {
    id: String,
    c: Compiled,
    next: Arc<dyn Consumer>,
    obs: ProcessorObs,
    dropped: metrics::Counter,
}

impl FilterProcessor {
    /// Whether any condition matches. An error follows `error_mode`: propagate fails the batch,
    /// ignore logs it and treats the condition as false, silent just treats it as false.
    fn matches(&self, conds: &[Rule], t: &dyn Target) -> Result<bool, String> {
        for (c, mode) in conds {
            match c.eval(t) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) => match mode {
                    ErrorMode::Propagate => return Err(e),
                    ErrorMode::Ignore => {
                        tracing::warn!(processor = %self.id, error = %e, "filter condition failed; keeping the item")
                    }
                    ErrorMode::Silent => {}
                },
            }
        }
        Ok(false)
    }

    /// Drops what matches, context by context: spans before their events, metrics before their
    /// data points (a metric left without points goes too). Returns the first error under
    /// `propagate`.
    fn filter(&self, data: &mut Telemetry) -> Result<(), String> {
        let mut err: Option<String> = None;
        let passes: [(&[Rule], Context); 6] = [
            (&self.c.span, Context::Span),
            (&self.c.spanevent, Context::SpanEvent),
            (&self.c.metric, Context::Metric),
            (&self.c.datapoint, Context::DataPoint),
            (&self.c.log_record, Context::Log),
            (&self.c.profile, Context::Profile),
        ];
        for (conds, ctx) in passes {
            if conds.is_empty() {
                continue;
            }
            visit(
                data,
                ctx,
                &mut |item: &mut Item<'_>| match self.matches(conds, item) {
                    Ok(drop) => !drop,
                    Err(e) => {
                        err.get_or_insert(e);
                        true
                    }
                },
            );
        }
        err.map_or(Ok(()), Err)
    }
}

impl Component for FilterProcessor {}

#[async_trait]
impl Consumer for FilterProcessor {
    async fn consume(&self, mut data: Telemetry) -> Result<(), ConsumeError> {
        let before = data.item_count();
        self.obs.incoming(before);
        if let Err(e) = self.filter(&mut data) {
            return Err(ConsumeError::permanent(
                format!("filter processor {}: {e}", self.id),
                before,
            ));
        }
        let after = data.item_count();
        if after < before {
            self.dropped.increment((before - after) as u64);
        }
        // Nothing left: otelcol skips the rest of the pipeline for an emptied batch.
        if after == 0 {
            return Ok(());
        }
        self.obs.outgoing(after);
        self.next.consume(data).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::attrs::kv_str;
    use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use vigil_core::otlp::metrics::v1::{
        metric::Data, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    use vigil_core::otlp::resource::v1::Resource;

    use crate::testdata::Keep;

    fn make(cfg: Json, signal: Signal) -> (Arc<dyn Processor>, Arc<Keep>) {
        let keep = Arc::new(Keep::default());
        let id = ComponentId::parse("filter/x").unwrap();
        (
            factory().create(&id, &cfg, signal, keep.clone()).unwrap(),
            keep,
        )
    }

    fn logs(sev: &[i32]) -> Telemetry {
        Telemetry::Logs(vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "web")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: sev
                    .iter()
                    .map(|s| LogRecord {
                        severity_number: *s,
                        attributes: vec![kv_str("n", s.to_string())],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    #[tokio::test]
    async fn drops_matching_log_records() {
        let (p, keep) = make(
            serde_json::json!({"logs": {"log_record": ["severity_number < SEVERITY_NUMBER_WARN", "attributes[\"n\"] == \"17\""]}}),
            Signal::Logs,
        );
        p.consume(logs(&[5, 9, 13, 17, 21])).await.unwrap();
        {
            let got = keep.0.lock().unwrap();
            assert_eq!(got.len(), 1);
            let Telemetry::Logs(rl) = &got[0] else {
                panic!()
            };
            let sev: Vec<i32> = rl[0].scope_logs[0]
                .log_records
                .iter()
                .map(|l| l.severity_number)
                .collect();
            assert_eq!(sev, vec![13, 21]);
        }
        // A batch emptied by the filter does not go on.
        p.consume(logs(&[1, 2])).await.unwrap();
        assert_eq!(keep.0.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn drops_data_points_then_empty_metrics() {
        let (p, keep) = make(
            serde_json::json!({"metrics": {
                "metric": ["name == \"noise\""],
                "datapoint": ["metric.type == METRIC_DATA_TYPE_GAUGE and attributes[\"cpu\"] != \"0\""],
            }}),
            Signal::Metrics,
        );
        let gauge = |name: &str, cpus: &[&str]| Metric {
            name: name.into(),
            data: Some(Data::Gauge(Gauge {
                data_points: cpus
                    .iter()
                    .map(|c| NumberDataPoint {
                        attributes: vec![kv_str("cpu", *c)],
                        ..Default::default()
                    })
                    .collect(),
            })),
            ..Default::default()
        };
        let data = Telemetry::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    gauge("noise", &["0"]),
                    gauge("cpu", &["0", "1"]),
                    gauge("other", &["1"]),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        p.consume(data).await.unwrap();
        let got = keep.0.lock().unwrap();
        let Telemetry::Metrics(rm) = &got[0] else {
            panic!()
        };
        let names: Vec<&str> = rm[0].scope_metrics[0]
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, vec!["cpu"]);
        assert_eq!(got[0].item_count(), 1);
    }

    /// The flat form: each condition's context comes from its path prefixes; a resource condition
    /// drops the resource's metrics; a group names its context and error_mode.
    #[tokio::test]
    async fn metric_conditions_infer_their_context() {
        let (p, keep) = make(
            serde_json::json!({"metric_conditions": [
                "metric.name == \"noise\"",
                "datapoint.attributes[\"cpu\"] == \"1\"",
                "resource.attributes[\"env\"] == \"test\"",
                {"context": "metric", "conditions": ["name == \"other\""], "error_mode": "ignore"},
            ]}),
            Signal::Metrics,
        );
        let gauge = |name: &str, cpus: &[&str]| Metric {
            name: name.into(),
            data: Some(Data::Gauge(Gauge {
                data_points: cpus
                    .iter()
                    .map(|c| NumberDataPoint {
                        attributes: vec![kv_str("cpu", *c)],
                        ..Default::default()
                    })
                    .collect(),
            })),
            ..Default::default()
        };
        let resource = |env: &str, metrics: Vec<Metric>| ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv_str("env", env)],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        };
        let data = Telemetry::Metrics(vec![
            resource(
                "prod",
                vec![
                    gauge("noise", &["0"]),
                    gauge("cpu", &["0", "1"]),
                    gauge("other", &["0"]),
                ],
            ),
            resource("test", vec![gauge("cpu", &["0"])]),
        ]);
        p.consume(data).await.unwrap();
        let got = keep.0.lock().unwrap();
        let Telemetry::Metrics(rm) = &got[0] else {
            panic!()
        };
        assert_eq!(rm.len(), 1, "the test resource is gone");
        let names: Vec<&str> = rm[0].scope_metrics[0]
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, vec!["cpu"]);
        assert_eq!(got[0].item_count(), 1, "cpu=1 is dropped");

        let bad = |cfg: Json| {
            let id = ComponentId::parse("filter/x").unwrap();
            let keep = Arc::new(Keep::default());
            match factory().create(&id, &cfg, Signal::Metrics, keep) {
                Ok(_) => panic!("accepted {cfg}"),
                Err(e) => e.to_string(),
            }
        };
        let e = bad(serde_json::json!({"metric_conditions": ["name == \"x\""]}));
        assert!(
            e.contains("metric_conditions::0: cannot infer the context"),
            "{e}"
        );
        let e = bad(serde_json::json!({"metric_conditions": ["span.name == \"x\""]}));
        assert!(e.contains("path prefix span. cannot be used here"), "{e}");
        let e = bad(
            serde_json::json!({"log_conditions": [{"context": "span", "conditions": ["true"]}]}),
        );
        assert!(
            e.contains("log_conditions::0::context: unknown context \"span\""),
            "{e}"
        );
    }

    /// The demo chart's profiles filter: a profile whose resource matches is dropped, with its
    /// scope and resource once empty; other profiles pass whole. A path into the profile itself
    /// is refused at load, naming it.
    #[tokio::test]
    async fn profile_conditions_drop_profiles_by_resource() {
        use vigil_core::otlp::profiles::v1development::{
            Profile, ProfilesData, ResourceProfiles, Sample, ScopeProfiles,
        };
        let (p, keep) = make(
            serde_json::json!({
                "profiles": {"profile": [
                    r#"IsMatch(resource.attributes["service.name"], "containerd-shim-.*")"#
                ]},
                "profile_conditions": [r#"resource.attributes["drop"] == true"#],
            }),
            Signal::Profiles,
        );
        let rp = |svc: &str, samples: usize| ResourceProfiles {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", svc)],
                ..Default::default()
            }),
            scope_profiles: vec![ScopeProfiles {
                profiles: vec![Profile {
                    samples: vec![Sample::default(); samples],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let data = Telemetry::Profiles(ProfilesData {
            resource_profiles: vec![rp("containerd-shim-runc-v2", 3), rp("checkout", 2)],
            dictionary: None,
        });
        p.consume(data).await.unwrap();
        let got = keep.0.lock().unwrap()[0].clone();
        let Telemetry::Profiles(got) = got else {
            panic!("not profiles")
        };
        assert_eq!(got.resource_profiles.len(), 1);
        assert_eq!(got.resource_profiles[0], rp("checkout", 2));

        let e = Factory
            .validate(
                &ComponentId::parse("filter").unwrap(),
                &serde_json::from_value(serde_json::json!({
                    "profiles": {"profile": ["duration_unix_nano > 0"]}
                }))
                .unwrap(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("profiles::profile::0") && e.contains("duration_unix_nano"),
            "{e}"
        );
    }

    /// otelcol's legacy include/exclude blocks, as published configs write them.
    #[tokio::test]
    async fn legacy_include_exclude() {
        let names = |t: &Telemetry| -> Vec<String> {
            let Telemetry::Metrics(rm) = t else { panic!() };
            rm.iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .map(|m| m.name.clone())
                .collect()
        };
        let batch = |svc: &str, ns: &[&str]| ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", svc)],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: ns
                    .iter()
                    .map(|n| Metric {
                        name: n.to_string(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint::default()],
                        })),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        };
        // include strict: only the named metrics stay.
        let (p, keep) = make(
            serde_json::json!({"metrics": {"include": {"match_type": "strict",
                "metric_names": ["otelcol_process_uptime", "a\"q"]}}}),
            Signal::Metrics,
        );
        let data = Telemetry::Metrics(vec![batch(
            "x",
            &["otelcol_process_uptime", "other", "a\"q"],
        )]);
        p.consume(data).await.unwrap();
        assert_eq!(
            names(&keep.0.lock().unwrap()[0]),
            vec!["otelcol_process_uptime", "a\"q"]
        );
        // exclude regexp on names and a resource attribute together: both must match.
        let (p, keep) = make(
            serde_json::json!({"metrics": {"exclude": {"match_type": "regexp",
                "metric_names": ["^system\\.cpu\\..*"],
                "resource_attributes": [{"key": "service.name", "value": "^ag.nt$"}]}}}),
            Signal::Metrics,
        );
        let data = Telemetry::Metrics(vec![
            batch("agent", &["system.cpu.time", "system.memory.usage"]),
            batch("other", &["system.cpu.time"]),
        ]);
        p.consume(data).await.unwrap();
        assert_eq!(
            names(&keep.0.lock().unwrap()[0]),
            vec!["system.memory.usage", "system.cpu.time"]
        );
        // An empty list (as `${env:METRICS_TO_EXCLUDE}` set to []) matches nothing.
        let (p, keep) = make(
            serde_json::json!({"metrics": {"exclude": {"match_type": "regexp", "metric_names": []}}}),
            Signal::Metrics,
        );
        p.consume(Telemetry::Metrics(vec![batch("x", &["m"])]))
            .await
            .unwrap();
        assert_eq!(names(&keep.0.lock().unwrap()[0]), vec!["m"]);

        // logs exclude on a resource attribute (Splunk's chart) and include on severity text.
        let (p, keep) = make(
            serde_json::json!({"logs": {"exclude": {"match_type": "strict",
                "resource_attributes": [{"key": "splunk.com/exclude", "value": "true"}]}}}),
            Signal::Logs,
        );
        let mut excluded = logs(&[9]);
        if let Telemetry::Logs(rl) = &mut excluded {
            rl[0]
                .resource
                .as_mut()
                .unwrap()
                .attributes
                .push(kv_str("splunk.com/exclude", "true"));
        }
        p.consume(excluded).await.unwrap();
        assert!(
            keep.0.lock().unwrap().is_empty(),
            "the excluded resource's logs are gone"
        );
        p.consume(logs(&[9])).await.unwrap();
        assert_eq!(keep.0.lock().unwrap().len(), 1);

        // Bad blocks name their key.
        let id = ComponentId::parse("filter/x").unwrap();
        for (cfg, want) in [
            (
                serde_json::json!({"metrics": {"include": {"metric_names": ["a"]}}}),
                "metrics::include::match_type: is required",
            ),
            (
                serde_json::json!({"metrics": {"include": {"match_type": "expr", "metric_names": ["a"]}}}),
                "metrics::include::match_type: \"expr\" is not supported",
            ),
            (
                serde_json::json!({"metrics": {"exclude": {"match_type": "strict", "span_names": ["a"]}}}),
                "metrics::exclude::span_names: does not apply here",
            ),
            (
                serde_json::json!({"traces": {"exclude": {"match_type": "regexp", "services": ["(x"]}}}),
                "traces::exclude::services: invalid regular expression",
            ),
        ] {
            let e = factory().validate(&id, &cfg).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    /// filterprocessor's oldest `spans: {include, exclude}` (with filterconfig's `resources`) and
    /// the logs blocks' `bodies`, as otelcol names them.
    #[tokio::test]
    async fn legacy_spans_section_and_bodies() {
        use vigil_core::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
        let rs = |svc: &str, env: &str| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", svc), kv_str("env", env)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    name: "GET /health".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let (p, keep) = make(
            serde_json::json!({"spans": {"exclude": {"match_type": "strict",
                "services": ["web"], "resources": [{"key": "env", "value": "dev"}]}}}),
            Signal::Traces,
        );
        p.consume(Telemetry::Traces(vec![rs("web", "dev"), rs("web", "prod")]))
            .await
            .unwrap();
        let got = keep.0.lock().unwrap()[0].clone();
        let Telemetry::Traces(got) = got else {
            panic!("not traces")
        };
        assert_eq!(got, vec![rs("web", "prod")]);
        let id = ComponentId::parse("filter/x").unwrap();
        let cfg = serde_json::json!({"logs": {"exclude": {"match_type": "regexp", "bodies": ["^health"]}}});
        assert!(factory().validate(&id, &cfg).is_ok());
    }

    /// Each bad config under testdata/filter names its key path and the unsupported part.
    #[test]
    fn bad_configs_name_the_key() {
        let id = ComponentId::parse("filter/x").unwrap();
        let n = crate::testdata::bad_configs("filter", |v| {
            factory().validate(&id, v).unwrap_err().to_string()
        });
        assert!(n >= 5, "expected bad-config cases in testdata/filter");
    }

    #[test]
    fn good_configs_compile() {
        let id = ComponentId::parse("filter/x").unwrap();
        let n = crate::testdata::good_configs("filter", |v| {
            factory().validate(&id, v).map_err(|e| e.to_string())
        });
        assert!(n >= 1, "expected good configs in testdata/filter");
    }
}
