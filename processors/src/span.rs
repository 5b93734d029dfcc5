//! `span`: otelcol-contrib's span processor. It renames spans from their attributes
//! (`name::from_attributes`), extracts attributes from span names with named regex groups
//! (`name::to_attributes`), and sets span status (`status`), in that order, on the spans that
//! `include`/`exclude` select (the `attributes` processor's filter, [`crate::attributes::Filter`]).
//!
//! It holds nothing between batches: every span is edited in place and passed on.

use crate::attributes::{Filter, MatchConfig};
use async_trait::async_trait;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use vigil_core::factory::{self, DynProcessorFactory, FactoryBase, ProcessorFactory};
use vigil_core::otlp::common::v1::any_value::Value;
use vigil_core::otlp::trace::v1::{status::StatusCode, Span, Status};
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Processor,
    Settings, Signal, Stability, Telemetry,
};

/// The `span` processor config. otelcol has no defaults here: one of `name::from_attributes`,
/// `name::to_attributes::rules` or `status` must be given.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpanConfig {
    /// Only spans that match are processed.
    #[serde(default)]
    pub include: Option<MatchConfig>,
    /// Spans that match are left alone.
    #[serde(default)]
    pub exclude: Option<MatchConfig>,
    /// Renaming from attributes and extracting attributes from the name.
    #[serde(default)]
    pub name: NameConfig,
    /// The status every selected span gets.
    #[serde(default)]
    pub status: Option<StatusConfig>,
}

/// `name`: `from_attributes` runs first, then `to_attributes` on the name it left.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NameConfig {
    /// Attribute keys whose values, in this order, make the new name; a span lacking any of them
    /// keeps its name.
    #[serde(default)]
    pub from_attributes: Vec<String>,
    /// Put between the values of `from_attributes`; none by default.
    #[serde(default)]
    pub separator: String,
    /// Attributes extracted from the span name.
    #[serde(default)]
    pub to_attributes: Option<ToAttributes>,
}

/// `name::to_attributes`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ToAttributes {
    /// Regexes (RE2 syntax) tried in order on the span name; each named group that matches becomes
    /// an attribute, and its text in the name becomes `{group}`.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Stop after the first rule that matches.
    #[serde(default)]
    pub break_after_match: bool,
    /// Extract the attributes but leave the span name as it was.
    #[serde(default)]
    pub keep_original_name: bool,
}

/// `status`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    /// `Ok`, `Error` or `Unset`, spelled as otelcol spells them.
    #[serde(default)]
    pub code: String,
    /// The status message; only with `code: Error`.
    #[serde(default)]
    pub description: String,
}

/// One compiled `to_attributes` rule: the regex and, per capture group, its name (`None` for an
/// unnamed group, which is left in the name and extracts nothing).
struct Rule {
    re: Regex,
    names: Vec<Option<String>>,
}

/// The checked config.
struct Compiled {
    filter: Filter,
    from_attributes: Vec<String>,
    separator: String,
    rules: Vec<Rule>,
    break_after_match: bool,
    keep_original_name: bool,
    status: Option<(StatusCode, String)>,
}

fn compile(id: &ComponentId, cfg: &SpanConfig) -> Result<Compiled, ConfigError> {
    let err =
        |path: &str, msg: String| ConfigError::component(ComponentKind::Processor, id, path, msg);
    let to = cfg.name.to_attributes.as_ref();
    if cfg.name.from_attributes.is_empty()
        && to.is_none_or(|t| t.rules.is_empty())
        && cfg.status.is_none()
    {
        return Err(err(
            "name",
            "either \"from_attributes\" or \"to_attributes::rules\" must be given under \"name\", \
             or \"status\" must be given"
                .into(),
        ));
    }
    let status = match &cfg.status {
        None => None,
        Some(s) => {
            let code = match s.code.as_str() {
                "Ok" => StatusCode::Ok,
                "Error" => StatusCode::Error,
                "Unset" => StatusCode::Unset,
                other => {
                    return Err(err(
                        "status::code",
                        format!("invalid code {other:?}: expected \"Ok\", \"Error\" or \"Unset\""),
                    ))
                }
            };
            if !s.description.is_empty() && code != StatusCode::Error {
                return Err(err(
                    "status::description",
                    format!(
                        "a description is allowed only with code \"Error\", not {:?}",
                        s.code
                    ),
                ));
            }
            Some((code, s.description.clone()))
        }
    };
    let mut rules = Vec::new();
    for (i, pattern) in to
        .map_or(&[][..], |t| t.rules.as_slice())
        .iter()
        .enumerate()
    {
        let re = vigil_core::config::re2_regex(pattern).map_err(|e| {
            err(
                &format!("name::to_attributes::rules::{i}"),
                format!("invalid regexp {pattern:?}: {e}"),
            )
        })?;
        let names = re
            .capture_names()
            .skip(1)
            .map(|n| n.map(str::to_string))
            .collect();
        rules.push(Rule { re, names });
    }
    Ok(Compiled {
        filter: Filter::compile(
            id,
            cfg.include.as_ref(),
            cfg.exclude.as_ref(),
            Some(Signal::Traces),
        )?,
        from_attributes: cfg.name.from_attributes.clone(),
        separator: cfg.name.separator.clone(),
        rules,
        break_after_match: to.is_some_and(|t| t.break_after_match),
        keep_original_name: to.is_some_and(|t| t.keep_original_name),
        status,
    })
}

struct Factory;

/// The `span` processor factory.
pub fn factory() -> Arc<dyn DynProcessorFactory> {
    factory::processor(Factory)
}

impl FactoryBase for Factory {
    type Config = SpanConfig;

    fn type_name(&self) -> &'static str {
        "span"
    }

    fn validate(&self, id: &ComponentId, cfg: &SpanConfig) -> Result<(), ConfigError> {
        compile(id, cfg).map(|_| ())
    }
}

impl ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[(Signal::Traces, Stability::Alpha)]
    }

    fn create(
        &self,
        set: Settings,
        cfg: SpanConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        Ok(Arc::new(SpanProcessor {
            c: compile(&set.id, &cfg)?,
            next,
            obs: set.processor_obs(signal),
        }))
    }
}

/// A running `span` processor.
pub struct SpanProcessor {
    c: Compiled,
    next: Arc<dyn Consumer>,
    obs: vigil_core::ProcessorObs,
}

/// An attribute value as otelcol writes it into a span name: strings as they are, numbers in
/// Go's shortest decimal form, booleans as `true`/`false`; arrays, maps, bytes and empty values
/// add nothing.
fn push_value(out: &mut String, v: Option<&Value>) {
    match v {
        Some(Value::StringValue(s)) => out.push_str(s),
        Some(Value::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(Value::IntValue(i)) => out.push_str(&i.to_string()),
        // Rust's Display for f64 is, like Go's FormatFloat(f, 'f', -1, 64), the shortest decimal
        // that reads back the same, without an exponent; only the infinities are spelled apart.
        Some(Value::DoubleValue(d)) if d.is_infinite() => {
            out.push_str(if *d > 0.0 { "+Inf" } else { "-Inf" })
        }
        Some(Value::DoubleValue(d)) => out.push_str(&d.to_string()),
        _ => {}
    }
}

impl Compiled {
    fn rename_from_attributes(&self, span: &mut Span) {
        if self.from_attributes.is_empty() || span.attributes.is_empty() {
            return;
        }
        let mut name = String::new();
        for (i, key) in self.from_attributes.iter().enumerate() {
            let Some(kv) = span.attributes.iter().find(|kv| &kv.key == key) else {
                return;
            };
            if i > 0 {
                name.push_str(&self.separator);
            }
            push_value(&mut name, kv.value.as_ref().and_then(|v| v.value.as_ref()));
        }
        span.name = name;
    }

    fn extract_to_attributes(&self, span: &mut Span) {
        if span.name.is_empty() {
            return;
        }
        for rule in &self.rules {
            let Some(caps) = rule.re.captures(&span.name) else {
                continue;
            };
            let mut name = String::with_capacity(span.name.len());
            let mut at = 0;
            let mut found = Vec::new();
            for (g, group) in rule.names.iter().enumerate() {
                let (Some(group), Some(m)) = (group, caps.get(g + 1)) else {
                    // An unnamed group, or a named one that took no part in the match: otelcol
                    // would add an attribute with an empty key, or panic; vigil skips it.
                    continue;
                };
                found.push((group.as_str(), m.as_str().to_string()));
                // A group inside one already replaced sets its attribute; its text is gone.
                if m.start() >= at {
                    name.push_str(&span.name[at..m.start()]);
                    name.push('{');
                    name.push_str(group);
                    name.push('}');
                    at = m.end();
                }
            }
            name.push_str(&span.name[at..]);
            for (key, text) in found {
                vigil_core::attrs::upsert(&mut span.attributes, key, Value::StringValue(text));
            }
            if !self.keep_original_name {
                span.name = name;
            }
            if self.break_after_match {
                break;
            }
        }
    }

    fn set_status(&self, span: &mut Span) {
        if let Some((code, message)) = &self.status {
            span.status = Some(Status {
                code: *code as i32,
                message: message.clone(),
            });
        }
    }
}

impl SpanProcessor {
    fn process(&self, data: &mut Telemetry) {
        let Telemetry::Traces(rs) = data else { return };
        self.c.filter.each_selected_span(rs, |span| {
            self.c.rename_from_attributes(span);
            self.c.extract_to_attributes(span);
            self.c.set_status(span);
        });
    }
}

impl Component for SpanProcessor {}

#[async_trait]
impl Consumer for SpanProcessor {
    async fn consume(&self, mut data: Telemetry) -> Result<(), ConsumeError> {
        let n = data.item_count();
        self.obs.incoming(n);
        self.process(&mut data);
        self.obs.outgoing(n);
        self.next.consume(data).await
    }
}

#[cfg(test)]
#[path = "span_tests.rs"]
mod tests;
