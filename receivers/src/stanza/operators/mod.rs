//! A subset of stanza's operators, shared by `filelog` and `syslog`: `json_parser`, `regex_parser`,
//! `timestamp`, `severity`, `move`, `remove`, `add`, `router` and `container`. The list is compiled
//! once at config load into a `Pipeline` (fields parsed, regexes and layouts compiled, outputs
//! resolved to indices), so that the per-line path only runs already-checked steps.

pub mod container;
pub mod expr;
pub mod severity;
pub mod time;

use crate::stanza::entry::{json_to_value, Entry, Field, Root};
use container::{ContainerOp, ContainerState, Format};
use expr::Expr;
use regex::Regex;
use serde::Deserialize;
use serde_json::Value as Json;
use severity::SeverityMap;
use std::collections::{BTreeMap, HashMap};
use time::TimeParser;
use vigil_core::otlp::common::v1::any_value::Value;
use vigil_core::otlp::common::v1::{AnyValue, KeyValue, KeyValueList};

/// The ids of a list of operators, as stanza numbers them: an operator without an `id` (or with its
/// type as id) is called by its type, and the second and later ones of a type get a number (`move`,
/// `move1`, `move2`, …), skipping any id the list already uses.
fn default_ids(configs: &[OperatorConfig], explicit: &[Option<&str>]) -> Vec<String> {
    let mut next: HashMap<&str, usize> = HashMap::new();
    let mut ids: Vec<String> = Vec::with_capacity(configs.len());
    for (c, given) in configs.iter().zip(explicit) {
        let t = c.type_name();
        if given.is_some_and(|g| g != t) {
            ids.push(given.unwrap_or(t).to_string());
            continue;
        }
        let n = next.entry(t).or_insert(0);
        if *n == 0 {
            *n = 1;
            ids.push(t.to_string());
            continue;
        }
        let taken = |candidate: &str| explicit.iter().flatten().any(|e| *e == candidate);
        let mut candidate = format!("{t}{n}");
        while taken(&candidate) {
            *n += 1;
            candidate = format!("{t}{n}");
        }
        *n += 1;
        ids.push(candidate);
    }
    ids
}

/// One operator as written in config; `type` picks the variant.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OperatorConfig {
    JsonParser(ParserConfig),
    RegexParser(RegexParserConfig),
    /// Stanza's `time_parser` is the same operator under its upstream name.
    #[serde(alias = "time_parser")]
    Timestamp(TimestampOpConfig),
    /// Stanza's `severity_parser` likewise.
    #[serde(alias = "severity_parser")]
    Severity(SeverityOpConfig),
    Move(MoveConfig),
    Remove(RemoveConfig),
    Add(AddConfig),
    Router(RouterConfig),
    Container(ContainerConfig),
}

impl OperatorConfig {
    /// The `type` as written in config, which is also the operator's default id.
    pub fn type_name(&self) -> &'static str {
        match self {
            OperatorConfig::JsonParser(_) => "json_parser",
            OperatorConfig::RegexParser(_) => "regex_parser",
            OperatorConfig::Timestamp(_) => "timestamp",
            OperatorConfig::Severity(_) => "severity",
            OperatorConfig::Move(_) => "move",
            OperatorConfig::Remove(_) => "remove",
            OperatorConfig::Add(_) => "add",
            OperatorConfig::Router(_) => "router",
            OperatorConfig::Container(_) => "container",
        }
    }

    /// The `id` the config gives, if any.
    pub fn id(&self) -> Option<&str> {
        match self {
            OperatorConfig::JsonParser(c) => c.id.as_deref(),
            OperatorConfig::RegexParser(c) => c.id.as_deref(),
            OperatorConfig::Timestamp(c) => c.id.as_deref(),
            OperatorConfig::Severity(c) => c.id.as_deref(),
            OperatorConfig::Move(c) => c.id.as_deref(),
            OperatorConfig::Remove(c) => c.id.as_deref(),
            OperatorConfig::Add(c) => c.id.as_deref(),
            OperatorConfig::Router(c) => c.id.as_deref(),
            OperatorConfig::Container(c) => c.id.as_deref(),
        }
    }
}

/// Keys every operator has.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParserConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    /// `send` (default), `send_quiet`, `drop`, `drop_quiet`.
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub parse_from: Option<String>,
    pub parse_to: Option<String>,
    pub timestamp: Option<TimestampConfig>,
    pub severity: Option<SeverityConfig>,
    /// The parsed field that becomes the body (stanza's parser `body`).
    pub body: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegexParserConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub parse_from: Option<String>,
    pub parse_to: Option<String>,
    pub regex: String,
    /// Accepted for otelcol compatibility; compiled regexes need no cache.
    pub cache: Option<Json>,
    pub timestamp: Option<TimestampConfig>,
    pub severity: Option<SeverityConfig>,
    /// The parsed field that becomes the body (stanza's parser `body`).
    pub body: Option<String>,
}

/// A parser's `timestamp:` block.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampConfig {
    pub parse_from: String,
    #[serde(default = "strptime")]
    pub layout_type: String,
    #[serde(default)]
    pub layout: String,
    pub location: Option<String>,
}

fn strptime() -> String {
    "strptime".into()
}

/// A parser's `severity:` block.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityConfig {
    pub parse_from: String,
    #[serde(default)]
    pub mapping: BTreeMap<String, Json>,
    #[serde(default = "default_preset")]
    pub preset: String,
    #[serde(default)]
    pub overwrite_text: bool,
}

fn default_preset() -> String {
    "default".into()
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampOpConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub parse_from: String,
    #[serde(default = "strptime")]
    pub layout_type: String,
    #[serde(default)]
    pub layout: String,
    pub location: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityOpConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub parse_from: String,
    #[serde(default)]
    pub mapping: BTreeMap<String, Json>,
    #[serde(default = "default_preset")]
    pub preset: String,
    #[serde(default)]
    pub overwrite_text: bool,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MoveConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub field: String,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AddConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub field: String,
    pub value: Json,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    pub id: Option<String>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Where entries that match no route go; absent: they are dropped, as in stanza.
    pub default: Option<String>,
    pub on_error: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub expr: String,
    pub output: String,
    #[serde(default)]
    pub attributes: HashMap<String, Json>,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    #[serde(default)]
    pub format: String,
    pub add_metadata_from_filepath: Option<bool>,
    /// Largest joined record in bytes; 0 means no limit.
    #[serde(default)]
    pub max_log_size: Option<Json>,
    pub parse_from: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnError {
    Send,
    SendQuiet,
    Drop,
    DropQuiet,
}

#[derive(Debug, Clone, Copy)]
enum Next {
    Op(usize),
    Emit,
    Drop,
}

#[derive(Debug, Clone)]
struct TsStep {
    from: Field,
    parser: TimeParser,
}

#[derive(Debug, Clone)]
struct SevStep {
    from: Field,
    map: SeverityMap,
    overwrite_text: bool,
}

#[derive(Debug, Clone)]
enum Kind {
    Json {
        from: Field,
        to: Field,
    },
    Regex {
        from: Field,
        to: Field,
        re: Regex,
    },
    Timestamp,
    Severity,
    Move {
        from: Field,
        to: Field,
    },
    Remove {
        field: Field,
    },
    Add {
        field: Field,
        value: Value,
    },
    Router {
        routes: Vec<(Expr, Vec<KeyValue>, Next)>,
        default: Next,
    },
    Container {
        from: Field,
        op: ContainerOp,
    },
}

#[derive(Debug, Clone)]
struct Op {
    id: String,
    kind: Kind,
    cond: Option<Expr>,
    on_error: OnError,
    ts: Option<TsStep>,
    sev: Option<SevStep>,
    /// A parser's `body`: the field copied into the body once parsing is done.
    body: Option<Field>,
    next: Next,
}

/// The compiled operator list.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    ops: Vec<Op>,
}

/// Per-source state of stateful operators (partial container lines), kept by each file reader.
#[derive(Debug, Default)]
pub struct PipelineState {
    container: HashMap<usize, ContainerState>,
}

impl PipelineState {
    /// The lowest file offset an operator still holds unfinished input from.
    pub fn held_from(&self) -> Option<u64> {
        self.container.values().filter_map(|c| c.held_from()).min()
    }
}

fn field(path: &str, key: &str, s: &str) -> Result<Field, (String, String)> {
    Field::parse(s).map_err(|e| (format!("{path}::{key}"), e))
}

fn on_error(path: &str, s: &Option<String>) -> Result<OnError, (String, String)> {
    match s.as_deref() {
        None | Some("send") => Ok(OnError::Send),
        Some("send_quiet") => Ok(OnError::SendQuiet),
        Some("drop") => Ok(OnError::Drop),
        Some("drop_quiet") => Ok(OnError::DropQuiet),
        Some(o) => Err((
            format!("{path}::on_error"),
            format!("unknown on_error {o:?}: expected send, send_quiet, drop or drop_quiet"),
        )),
    }
}

fn cond(path: &str, s: &Option<String>) -> Result<Option<Expr>, (String, String)> {
    s.as_deref()
        .map(|x| Expr::parse(x).map_err(|e| (format!("{path}::if"), e)))
        .transpose()
}

fn body_step(path: &str, b: &Option<String>) -> Result<Option<Field>, (String, String)> {
    b.as_deref().map(|s| field(path, "body", s)).transpose()
}

fn ts_step(path: &str, t: &Option<TimestampConfig>) -> Result<Option<TsStep>, (String, String)> {
    let Some(t) = t else { return Ok(None) };
    Ok(Some(TsStep {
        from: field(path, "timestamp::parse_from", &t.parse_from)?,
        parser: TimeParser::new(&t.layout_type, &t.layout, t.location.as_deref())
            .map_err(|e| (format!("{path}::timestamp"), e))?,
    }))
}

fn sev_step(path: &str, s: &Option<SeverityConfig>) -> Result<Option<SevStep>, (String, String)> {
    let Some(s) = s else { return Ok(None) };
    Ok(Some(SevStep {
        from: field(path, "severity::parse_from", &s.parse_from)?,
        map: SeverityMap::new(&s.preset, &s.mapping)
            .map_err(|e| (format!("{path}::severity"), e))?,
        overwrite_text: s.overwrite_text,
    }))
}

fn to_value(j: &Json) -> Value {
    match j {
        Json::String(s) => Value::StringValue(s.clone()),
        other => json_to_value(other.clone()),
    }
}

impl Pipeline {
    /// Compiles the `operators` list. An error is `(key path under operators, message)`.
    pub fn build(configs: &[OperatorConfig]) -> Result<Pipeline, (String, String)> {
        Pipeline::build_all(configs).map_err(|mut errors| errors.swap_remove(0))
    }

    /// [`Pipeline::build`], reporting every operator that does not compile rather than the first.
    pub fn build_all(configs: &[OperatorConfig]) -> Result<Pipeline, Vec<(String, String)>> {
        let mut ops = Vec::with_capacity(configs.len());
        let mut outputs: Vec<(Option<String>, Vec<String>, Option<String>)> = Vec::new();
        let mut errors = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let path = format!("operators::{i}");
            let p = path.as_str();
            let built = || -> Result<(String, Option<String>, Op), (String, String)> {
                Ok(match c {
                    OperatorConfig::JsonParser(c) => (
                        c.id.clone().unwrap_or_else(|| "json_parser".into()),
                        c.output.clone(),
                        Op {
                            id: String::new(),
                            kind: Kind::Json {
                                from: field(
                                    p,
                                    "parse_from",
                                    c.parse_from.as_deref().unwrap_or("body"),
                                )?,
                                to: field(
                                    p,
                                    "parse_to",
                                    c.parse_to.as_deref().unwrap_or("attributes"),
                                )?,
                            },
                            cond: cond(p, &c.if_)?,
                            on_error: on_error(p, &c.on_error)?,
                            ts: ts_step(p, &c.timestamp)?,
                            sev: sev_step(p, &c.severity)?,
                            body: body_step(p, &c.body)?,
                            next: Next::Emit,
                        },
                    ),
                    OperatorConfig::RegexParser(c) => {
                        let re = vigil_core::config::re2_regex(&c.regex)
                            .map_err(|e| (format!("{p}::regex"), format!("invalid regex: {e}")))?;
                        if re.capture_names().flatten().next().is_none() {
                            return Err((
                                format!("{p}::regex"),
                                "the regex has no named capture groups ((?P<name>...))".into(),
                            ));
                        }
                        (
                            c.id.clone().unwrap_or_else(|| "regex_parser".into()),
                            c.output.clone(),
                            Op {
                                id: String::new(),
                                kind: Kind::Regex {
                                    from: field(
                                        p,
                                        "parse_from",
                                        c.parse_from.as_deref().unwrap_or("body"),
                                    )?,
                                    to: field(
                                        p,
                                        "parse_to",
                                        c.parse_to.as_deref().unwrap_or("attributes"),
                                    )?,
                                    re,
                                },
                                cond: cond(p, &c.if_)?,
                                on_error: on_error(p, &c.on_error)?,
                                ts: ts_step(p, &c.timestamp)?,
                                sev: sev_step(p, &c.severity)?,
                                body: body_step(p, &c.body)?,
                                next: Next::Emit,
                            },
                        )
                    }
                    OperatorConfig::Timestamp(c) => (
                        c.id.clone().unwrap_or_else(|| "timestamp".into()),
                        c.output.clone(),
                        Op {
                            id: String::new(),
                            kind: Kind::Timestamp,
                            cond: cond(p, &c.if_)?,
                            on_error: on_error(p, &c.on_error)?,
                            ts: ts_step(
                                p,
                                &Some(TimestampConfig {
                                    parse_from: c.parse_from.clone(),
                                    layout_type: c.layout_type.clone(),
                                    layout: c.layout.clone(),
                                    location: c.location.clone(),
                                }),
                            )?,
                            sev: None,
                            body: None,
                            next: Next::Emit,
                        },
                    ),
                    OperatorConfig::Severity(c) => (
                        c.id.clone().unwrap_or_else(|| "severity".into()),
                        c.output.clone(),
                        Op {
                            id: String::new(),
                            kind: Kind::Severity,
                            cond: cond(p, &c.if_)?,
                            on_error: on_error(p, &c.on_error)?,
                            ts: None,
                            sev: sev_step(
                                p,
                                &Some(SeverityConfig {
                                    parse_from: c.parse_from.clone(),
                                    mapping: c.mapping.clone(),
                                    preset: c.preset.clone(),
                                    overwrite_text: c.overwrite_text,
                                }),
                            )?,
                            body: None,
                            next: Next::Emit,
                        },
                    ),
                    OperatorConfig::Move(c) => (
                        c.id.clone().unwrap_or_else(|| "move".into()),
                        c.output.clone(),
                        Op {
                            id: String::new(),
                            kind: Kind::Move {
                                from: field(p, "from", &c.from)?,
                                to: field(p, "to", &c.to)?,
                            },
                            cond: cond(p, &c.if_)?,
                            on_error: on_error(p, &c.on_error)?,
                            ts: None,
                            sev: None,
                            body: None,
                            next: Next::Emit,
                        },
                    ),
                    OperatorConfig::Remove(c) => (
                        c.id.clone().unwrap_or_else(|| "remove".into()),
                        c.output.clone(),
                        Op {
                            id: String::new(),
                            kind: Kind::Remove {
                                field: field(p, "field", &c.field)?,
                            },
                            cond: cond(p, &c.if_)?,
                            on_error: on_error(p, &c.on_error)?,
                            ts: None,
                            sev: None,
                            body: None,
                            next: Next::Emit,
                        },
                    ),
                    OperatorConfig::Add(c) => (
                        c.id.clone().unwrap_or_else(|| "add".into()),
                        c.output.clone(),
                        Op {
                            id: String::new(),
                            kind: Kind::Add {
                                field: field(p, "field", &c.field)?,
                                value: to_value(&c.value),
                            },
                            cond: cond(p, &c.if_)?,
                            on_error: on_error(p, &c.on_error)?,
                            ts: None,
                            sev: None,
                            body: None,
                            next: Next::Emit,
                        },
                    ),
                    OperatorConfig::Router(c) => {
                        let mut routes = Vec::new();
                        for (j, r) in c.routes.iter().enumerate() {
                            let e = Expr::parse(&r.expr)
                                .map_err(|e| (format!("{p}::routes::{j}::expr"), e))?;
                            let attrs = r
                                .attributes
                                .iter()
                                .map(|(k, v)| KeyValue {
                                    key: k.clone(),
                                    value: Some(AnyValue {
                                        value: Some(to_value(v)),
                                    }),
                                    ..Default::default()
                                })
                                .collect();
                            routes.push((e, attrs, Next::Drop));
                        }
                        (
                            c.id.clone().unwrap_or_else(|| "router".into()),
                            None,
                            Op {
                                id: String::new(),
                                kind: Kind::Router {
                                    routes,
                                    default: Next::Drop,
                                },
                                cond: None,
                                on_error: on_error(p, &c.on_error)?,
                                ts: None,
                                sev: None,
                                body: None,
                                next: Next::Emit,
                            },
                        )
                    }
                    OperatorConfig::Container(c) => {
                        let max = match &c.max_log_size {
                            None => 0,
                            Some(Json::Number(n)) => n.as_u64().unwrap_or(0) as usize,
                            Some(Json::String(s)) => crate::stanza::parse_size(s)
                                .map_err(|e| (format!("{p}::max_log_size"), e))?,
                            Some(_) => {
                                return Err((
                                    format!("{p}::max_log_size"),
                                    "expected a size such as 1MiB".into(),
                                ))
                            }
                        };
                        (
                            c.id.clone().unwrap_or_else(|| "container".into()),
                            c.output.clone(),
                            Op {
                                id: String::new(),
                                kind: Kind::Container {
                                    from: field(
                                        p,
                                        "parse_from",
                                        c.parse_from.as_deref().unwrap_or("body"),
                                    )?,
                                    op: ContainerOp {
                                        format: Format::parse(&c.format)
                                            .map_err(|e| (format!("{p}::format"), e))?,
                                        add_metadata_from_filepath: c
                                            .add_metadata_from_filepath
                                            .unwrap_or(true),
                                        max_log_size: max,
                                    },
                                },
                                cond: cond(p, &c.if_)?,
                                on_error: on_error(p, &c.on_error)?,
                                ts: None,
                                sev: None,
                                body: None,
                                next: Next::Emit,
                            },
                        )
                    }
                })
            };
            let (id, output, op) = match built() {
                Ok(b) => b,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let route_outputs = match c {
                OperatorConfig::Router(r) => r.routes.iter().map(|r| r.output.clone()).collect(),
                _ => Vec::new(),
            };
            let default = match c {
                OperatorConfig::Router(r) => r.default.clone(),
                _ => None,
            };
            outputs.push((output, route_outputs, default));
            ops.push(Op { id, ..op });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let explicit: Vec<Option<&str>> = configs.iter().map(|c| c.id()).collect();
        for (op, id) in ops.iter_mut().zip(default_ids(configs, &explicit)) {
            op.id = id;
        }
        Pipeline::link(ops, outputs).map_err(|e| vec![e])
    }

    /// Points each operator at the next one: its `output`, its routes, or the one after it.
    fn link(
        mut ops: Vec<Op>,
        outputs: Vec<(Option<String>, Vec<String>, Option<String>)>,
    ) -> Result<Pipeline, (String, String)> {
        // Resolve outputs to indices. Only forward references are allowed, which rules out cycles.
        let ids: Vec<String> = ops.iter().map(|o| o.id.clone()).collect();
        for (i, id) in ids.iter().enumerate() {
            if ids[..i].contains(id) {
                return Err((
                    format!("operators::{i}::id"),
                    format!("duplicate operator id {id:?}"),
                ));
            }
        }
        let resolve = |i: usize, key: &str, target: &str| -> Result<Next, (String, String)> {
            match ids.iter().position(|x| x == target) {
                Some(j) if j > i => Ok(Next::Op(j)),
                Some(_) => Err((
                    format!("operators::{i}::{key}"),
                    format!("output {target:?} must name an operator later in the list"),
                )),
                None => Err((
                    format!("operators::{i}::{key}"),
                    format!("no operator has id {target:?}"),
                )),
            }
        };
        let n = ops.len();
        for (i, (output, routes, default)) in outputs.into_iter().enumerate() {
            let fallthrough = if i + 1 < n {
                Next::Op(i + 1)
            } else {
                Next::Emit
            };
            ops[i].next = match output {
                Some(o) => resolve(i, "output", &o)?,
                None => fallthrough,
            };
            if let Kind::Router {
                routes: rs,
                default: d,
            } = &mut ops[i].kind
            {
                for (j, target) in routes.iter().enumerate() {
                    rs[j].2 = resolve(i, &format!("routes::{j}::output"), target)?;
                }
                *d = match default {
                    Some(t) => resolve(i, "default", &t)?,
                    None => Next::Drop,
                };
            }
        }
        Ok(Pipeline { ops })
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Runs one entry through the operators; finished entries are pushed to `out`. `offset` is where
    /// the entry's line starts in its file, `path` the file it came from.
    pub fn process(
        &self,
        e: Entry,
        offset: u64,
        path: Option<&str>,
        st: &mut PipelineState,
        out: &mut Vec<Entry>,
    ) {
        self.run_from(0, e, offset, path, st, out);
    }

    /// Passes on every entry a stateful operator still holds (partial lines at a file's end).
    pub fn flush(&self, path: Option<&str>, st: &mut PipelineState, out: &mut Vec<Entry>) {
        let mut idx: Vec<usize> = st.container.keys().copied().collect();
        idx.sort_unstable();
        for i in idx {
            let held = st
                .container
                .get_mut(&i)
                .map(|c| c.drain())
                .unwrap_or_default();
            for e in held {
                self.continue_after(i, e, 0, path, st, out);
            }
        }
    }

    fn continue_after(
        &self,
        i: usize,
        e: Entry,
        offset: u64,
        path: Option<&str>,
        st: &mut PipelineState,
        out: &mut Vec<Entry>,
    ) {
        match self.ops[i].next {
            Next::Op(j) => self.run_from(j, e, offset, path, st, out),
            Next::Emit => out.push(e),
            Next::Drop => {}
        }
    }

    fn run_from(
        &self,
        mut i: usize,
        mut e: Entry,
        offset: u64,
        path: Option<&str>,
        st: &mut PipelineState,
        out: &mut Vec<Entry>,
    ) {
        loop {
            let Some(op) = self.ops.get(i) else {
                out.push(e);
                return;
            };
            let skip = op.cond.as_ref().is_some_and(|c| !c.matches(&e));
            let mut next = op.next;
            if !skip {
                match self.apply(op, i, &mut e, offset, path, st) {
                    Ok(Step::Next) => {}
                    Ok(Step::To(n)) => next = n,
                    Ok(Step::Held) => return,
                    Ok(Step::Replace(x)) => e = x,
                    Err(msg) => {
                        if matches!(op.on_error, OnError::Send | OnError::Drop) {
                            tracing::debug!(operator = %op.id, error = %msg, "operator failed on an entry");
                        }
                        if matches!(op.on_error, OnError::Drop | OnError::DropQuiet) {
                            return;
                        }
                    }
                }
            }
            match next {
                Next::Op(j) => i = j,
                Next::Emit => {
                    out.push(e);
                    return;
                }
                Next::Drop => return,
            }
        }
    }

    fn apply(
        &self,
        op: &Op,
        i: usize,
        e: &mut Entry,
        offset: u64,
        path: Option<&str>,
        st: &mut PipelineState,
    ) -> Result<Step, String> {
        match &op.kind {
            Kind::Json { from, to } => {
                let text = from
                    .get_str(e)
                    .ok_or_else(|| format!("json_parser: {from} is not a string"))?;
                let j: Json =
                    serde_json::from_str(text).map_err(|x| format!("json_parser: {x}"))?;
                if !j.is_object() {
                    return Err("json_parser: the value is not a JSON object".into());
                }
                to.set(e, json_to_value(j));
            }
            Kind::Regex { from, to, re } => {
                let text = from
                    .get_str(e)
                    .ok_or_else(|| format!("regex_parser: {from} is not a string"))?;
                let caps = re
                    .captures(text)
                    .ok_or_else(|| "regex_parser: the regex does not match".to_string())?;
                let mut values = Vec::new();
                for name in re.capture_names().flatten() {
                    if let Some(m) = caps.name(name) {
                        values.push(KeyValue {
                            key: name.to_string(),
                            value: Some(AnyValue {
                                value: Some(Value::StringValue(m.as_str().to_string())),
                            }),
                            ..Default::default()
                        });
                    }
                }
                to.set(e, Value::KvlistValue(KeyValueList { values }));
            }
            Kind::Timestamp | Kind::Severity => {}
            Kind::Move { from, to } => {
                let v = from
                    .remove(e)
                    .ok_or_else(|| format!("move: {from} does not exist"))?;
                to.set(e, v);
            }
            Kind::Remove { field } => {
                field
                    .remove(e)
                    .ok_or_else(|| format!("remove: {field} does not exist"))?;
            }
            Kind::Add { field, value } => field.set(e, value.clone()),
            Kind::Router { routes, default } => {
                for (x, attrs, next) in routes {
                    if x.matches(e) {
                        for kv in attrs {
                            e.attributes.push(kv.clone());
                        }
                        return Ok(Step::To(*next));
                    }
                }
                return Ok(Step::To(*default));
            }
            Kind::Container { from, op: c } => {
                if !(from.keys.is_empty() && from.root == Root::Body) {
                    let v = from
                        .get(e)
                        .cloned()
                        .ok_or_else(|| format!("container: {from} does not exist"))?;
                    e.body = v;
                }
                let state = st.container.entry(i).or_default();
                return match c.apply(e, offset, path, state)? {
                    Some(x) => Ok(Step::Replace(x)),
                    None => Ok(Step::Held),
                };
            }
        }
        if let Some(t) = &op.ts {
            let raw = match t.from.get(e) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                _ => return Err(format!("timestamp: {} does not exist", t.from)),
            };
            e.timestamp = t.parser.parse(&raw)?;
        }
        if let Some(s) = &op.sev {
            let raw = s
                .from
                .get(e)
                .cloned()
                .ok_or_else(|| format!("severity: {} does not exist", s.from))?;
            e.severity_number = s.map.lookup(&raw).unwrap_or(0);
            if s.overwrite_text || e.severity_text.is_empty() {
                e.severity_text = vigil_core::attrs::value_to_string(&raw);
            }
        }
        if let Some(b) = &op.body {
            let v = b
                .get(e)
                .cloned()
                .ok_or_else(|| format!("body: {b} does not exist"))?;
            e.body = v;
        }
        Ok(Step::Next)
    }
}

enum Step {
    Next,
    To(Next),
    Held,
    Replace(Entry),
}

#[cfg(test)]
mod tests;
