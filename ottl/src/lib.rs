//! vigil's one expression engine: a lexer, parser, AST and evaluator for OTTL (the OpenTelemetry
//! Transformation Language: `filter`, `transform`, `routing`) and for stanza's expr dialect (filelog's
//! `router` routes and operators' `if`). The two dialects share every stage; they differ in a few
//! tokens, in the functions they know, and in how a path such as `body.a` is bound.
//!
//! Statements and conditions are parsed once, for one context, at config load. A path, function or
//! argument the engine does not support is an error that names it, so `vigil validate` refuses what
//! would fail at run time. What is supported is listed in docs/ottl.md.
//!
//! The parser is a hand-written recursive descent: OTTL's grammar is small and LL(1), and writing it
//! by hand gives error messages that name the offending function or path in the user's words, which a
//! generated parser's "expected one of …" does not. There is no maintained OTTL crate for Rust.
//!
//! This is a crate of its own, below the component crates, because both receivers (filelog) and
//! processors use it and receivers must not depend on processors; it is not in vigil-core so that a
//! change to the language does not rebuild every crate.

mod aggregate;
mod eval;
mod funcs;
mod histogram;
mod lex;
mod metricfns;
mod parse;
pub mod pdata;
mod value;

pub use funcs::{function_names, Func, FuncKind};
pub use parse::{infer_context, parse_condition, parse_expr, parse_statement, StatementOptions};
pub use value::{get_in_any, get_in_kvs, index, kv, set_in_any, set_in_kvs, Key, Value};

use regex::Regex;
use vigil_core::otlp::common::v1::KeyValue;

/// `routing`'s `route()` editor, to tell a routing statement from others.
pub fn route_func() -> funcs::Func {
    funcs::Func::Route
}

/// Which language a source text is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OTTL, as otelcol's filter, transform and routing components read it.
    Ottl,
    /// stanza's expr subset: `body`, `attributes["k"]`, `matches`, `contains`, `&&`, `'single'`.
    Expr,
}

/// An OTTL context: the kind of item a statement runs on. It decides which paths exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Context {
    Resource,
    Scope,
    Span,
    SpanEvent,
    Metric,
    DataPoint,
    Log,
    /// A profile. Only its resource and scope are reachable: the profile's own fields index the
    /// batch's dictionary, and no path into them is built (docs/ottl.md).
    Profile,
}

impl Context {
    /// The name as OTTL spells it in config and path prefixes.
    pub fn name(self) -> &'static str {
        match self {
            Context::Resource => "resource",
            Context::Scope => "scope",
            Context::Span => "span",
            Context::SpanEvent => "spanevent",
            Context::Metric => "metric",
            Context::DataPoint => "datapoint",
            Context::Log => "log",
            Context::Profile => "profile",
        }
    }

    /// The context a config or path prefix names.
    pub fn from_name(s: &str) -> Option<Context> {
        Some(match s {
            "resource" => Context::Resource,
            "scope" | "instrumentation_scope" => Context::Scope,
            "span" => Context::Span,
            "spanevent" => Context::SpanEvent,
            "metric" => Context::Metric,
            "datapoint" => Context::DataPoint,
            "log" => Context::Log,
            "profile" => Context::Profile,
            _ => return None,
        })
    }

    /// The contexts whose paths a statement in this context can reach (itself and its parents).
    pub fn reachable(self) -> &'static [Context] {
        use Context::*;
        match self {
            Resource => &[Resource],
            Scope => &[Resource, Scope],
            Span => &[Resource, Scope, Span],
            SpanEvent => &[Resource, Scope, Span, SpanEvent],
            Metric => &[Resource, Scope, Metric],
            DataPoint => &[Resource, Scope, Metric, DataPoint],
            Log => &[Resource, Scope, Log],
            Profile => &[Resource, Scope, Profile],
        }
    }
}

/// Which part of the item at a path's level a path reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Attributes,
    DroppedAttributesCount,
    Name,
    Version,
    TraceId,
    TraceIdString,
    SpanId,
    SpanIdString,
    ParentSpanId,
    ParentSpanIdString,
    TraceState,
    Kind,
    /// `span.kind.string`: `Server`, `Client`, … (pdata's names).
    KindString,
    /// `span.kind.deprecated_string`: `SPAN_KIND_SERVER`, … (the proto's names).
    KindDeprecatedString,
    /// `log.body.string`: the body as text, whatever its type.
    BodyString,
    StartTimeUnixNano,
    EndTimeUnixNano,
    StartTime,
    EndTime,
    DroppedEventsCount,
    DroppedLinksCount,
    StatusCode,
    StatusMessage,
    Flags,
    TimeUnixNano,
    Time,
    ObservedTimeUnixNano,
    ObservedTime,
    SeverityNumber,
    SeverityText,
    Body,
    EventName,
    Description,
    Unit,
    Type,
    AggregationTemporality,
    IsMonotonic,
    ValueDouble,
    ValueInt,
    Count,
    Sum,
    BucketCounts,
    ExplicitBounds,
    /// An exponential histogram point's `scale`, `zero_count`, `positive.offset`,
    /// `positive.bucket_counts`, `negative.offset` and `negative.bucket_counts`.
    Scale,
    ZeroCount,
    PositiveOffset,
    PositiveBucketCounts,
    NegativeOffset,
    NegativeBucketCounts,
    /// The per-item scratch map `cache`.
    Cache,
    /// A metric's `metadata` map (Prometheus' `prometheus.type`, …).
    Metadata,
}

/// A path bound to its context: which item (`level`), which field, and map/slice keys below it.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub level: Context,
    pub field: Field,
    pub keys: Vec<Key>,
    /// The path as written, for error messages.
    pub text: String,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// An arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MathOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// A parsed expression (a value or a condition) of either dialect.
#[derive(Debug, Clone)]
pub enum Expr {
    Lit(Value),
    Path(Path),
    /// A converter call, optionally indexed: `ParseJSON(body)["a"]`.
    Call(Box<Call>, Vec<Key>),
    MapLit(Vec<(String, Expr)>),
    ListLit(Vec<Expr>),
    Neg(Box<Expr>),
    Math(Box<Expr>, MathOp, Box<Expr>),
    Cmp(Box<Expr>, CmpOp, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// expr's `a matches "re"`.
    Matches(Box<Expr>, Regex),
    /// expr's `a contains b`.
    Contains(Box<Expr>, Box<Expr>),
    /// expr's `a startsWith b`.
    StartsWith(Box<Expr>, Box<Expr>),
    /// expr's `a endsWith b`.
    EndsWith(Box<Expr>, Box<Expr>),
    /// A converter named without a call (`SHA256`), as the `function` argument of the `replace_*`
    /// editors; it has no value of its own.
    Func(funcs::Func),
}

/// A function call with its arguments checked at parse time.
#[derive(Debug, Clone)]
pub struct Call {
    pub func: funcs::Func,
    pub args: Vec<Expr>,
    /// The compiled pattern of functions that take a regex or glob literal.
    pub regex: Option<Regex>,
    /// `ExtractGrokPatterns`' pattern set, and its pattern when that is a literal.
    pub grok: Option<std::sync::Arc<funcs::grok::Compiled>>,
}

/// An edit of the metric in context, given the list new metrics are appended to.
pub type MetricEdit<'a> = dyn FnMut(
        &mut vigil_core::otlp::metrics::v1::Metric,
        &mut Vec<vigil_core::otlp::metrics::v1::Metric>,
    ) -> Result<(), String>
    + 'a;

/// What a context gives an expression: the value at a path, and a place to write one.
pub trait Target {
    fn get(&self, path: &Path) -> Result<Value, String>;

    fn set(&mut self, path: &Path, _v: Value) -> Result<(), String> {
        Err(format!("path {} cannot be set here", path.text))
    }

    /// Runs `f` on the metric in context with the list new metrics are appended to (metric context
    /// only: `convert_*`, `copy_metric`, `extract_*_metric`).
    fn edit_metric(&mut self, _f: &mut MetricEdit<'_>) -> Result<(), String> {
        Err("this function runs in the metric context only".into())
    }

    /// Runs `f` on the histogram data point in context (data point context only; a point of another
    /// type is left alone, as otelcol's bucket editors leave it).
    fn edit_histogram_point(
        &mut self,
        _f: &mut dyn FnMut(&mut vigil_core::otlp::metrics::v1::HistogramDataPoint),
    ) -> Result<(), String> {
        Err("this function runs in the datapoint context only".into())
    }

    /// Runs `f` on the summary data point in context, its metric (whose points are out of it) and
    /// the list new metrics are appended to (data point context only; another point is left alone).
    fn with_summary_point(
        &mut self,
        _f: &mut dyn FnMut(
            &vigil_core::otlp::metrics::v1::Metric,
            &vigil_core::otlp::metrics::v1::SummaryDataPoint,
            &mut Vec<vigil_core::otlp::metrics::v1::Metric>,
        ),
    ) -> Result<(), String> {
        Err("this function runs in the metric or datapoint context only".into())
    }

    /// The attributes of each data point of the metric in context (for `HasAttrOnDatapoint`).
    fn datapoint_attributes(&self) -> Result<Vec<&[KeyValue]>, String> {
        Err("data points are only reachable from the metric context".into())
    }
}

/// A condition ready to run.
#[derive(Debug, Clone)]
pub struct Condition {
    pub source: String,
    pub expr: Expr,
}

impl Condition {
    /// Whether the target satisfies the condition. A result that is not a boolean, or a failing
    /// converter, is an error the caller handles by its `error_mode`.
    pub fn eval(&self, t: &dyn Target) -> Result<bool, String> {
        match eval::eval(&self.expr, t)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!(
                "condition {:?} gave a {}, not a boolean",
                self.source,
                other.kind()
            )),
        }
    }

    /// stanza's reading: anything but `true`, including an error, does not match.
    pub fn matches(&self, t: &dyn Target) -> bool {
        matches!(eval::eval(&self.expr, t), Ok(Value::Bool(true)))
    }
}

/// A statement ready to run: an editor and an optional `where` condition.
#[derive(Debug, Clone)]
pub struct Statement {
    pub source: String,
    pub context: Context,
    pub editor: Call,
    pub condition: Option<Expr>,
}

impl Statement {
    /// Runs the statement: evaluates the `where` condition and, when it holds, the editor. Returns
    /// whether the editor ran.
    pub fn execute(&self, t: &mut dyn Target) -> Result<bool, String> {
        if let Some(c) = &self.condition {
            match eval::eval(c, t)? {
                Value::Bool(true) => {}
                Value::Bool(false) => return Ok(false),
                other => {
                    return Err(format!(
                        "statement {:?}: the where clause gave a {}, not a boolean",
                        self.source,
                        other.kind()
                    ))
                }
            }
        }
        funcs::run_editor(&self.editor, t)
            .map_err(|e| format!("statement {:?}: {e}", self.source))?;
        Ok(true)
    }

    /// Whether the `where` condition holds (true when there is none); `routing` uses this for its
    /// `route() where …` statements.
    pub fn condition_holds(&self, t: &dyn Target) -> Result<bool, String> {
        match &self.condition {
            None => Ok(true),
            Some(c) => match eval::eval(c, t)? {
                Value::Bool(b) => Ok(b),
                other => Err(format!(
                    "statement {:?}: the where clause gave a {}, not a boolean",
                    self.source,
                    other.kind()
                )),
            },
        }
    }
}

/// otelcol's `error_mode`: what a statement or condition that fails at run time does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorMode {
    /// The error fails the batch (the default).
    #[default]
    Propagate,
    /// The error is logged and the statement or condition is skipped.
    Ignore,
    /// As `ignore`, without the log line.
    Silent,
}

impl ErrorMode {
    /// Parses the config value; the error lists the choices.
    pub fn parse(s: &str) -> Result<ErrorMode, String> {
        match s {
            "propagate" => Ok(ErrorMode::Propagate),
            "ignore" => Ok(ErrorMode::Ignore),
            "silent" => Ok(ErrorMode::Silent),
            o => Err(format!(
                "invalid error_mode {o:?}: expected propagate, ignore or silent"
            )),
        }
    }
}

/// OTTL's enum names, as the integers OTLP uses.
pub fn enum_value(w: &str) -> Option<i64> {
    Some(match w {
        "SPAN_KIND_UNSPECIFIED" => 0,
        "SPAN_KIND_INTERNAL" => 1,
        "SPAN_KIND_SERVER" => 2,
        "SPAN_KIND_CLIENT" => 3,
        "SPAN_KIND_PRODUCER" => 4,
        "SPAN_KIND_CONSUMER" => 5,
        "STATUS_CODE_UNSET" => 0,
        "STATUS_CODE_OK" => 1,
        "STATUS_CODE_ERROR" => 2,
        "METRIC_DATA_TYPE_NONE" => 0,
        "METRIC_DATA_TYPE_GAUGE" => 1,
        "METRIC_DATA_TYPE_SUM" => 2,
        "METRIC_DATA_TYPE_HISTOGRAM" => 3,
        "METRIC_DATA_TYPE_EXPONENTIAL_HISTOGRAM" => 4,
        "METRIC_DATA_TYPE_SUMMARY" => 5,
        "AGGREGATION_TEMPORALITY_UNSPECIFIED" => 0,
        "AGGREGATION_TEMPORALITY_DELTA" => 1,
        "AGGREGATION_TEMPORALITY_CUMULATIVE" => 2,
        "FLAG_NONE" => 0,
        "FLAG_NO_RECORDED_VALUE" => 1,
        "SEVERITY_NUMBER_UNSPECIFIED" => 0,
        _ => {
            let rest = w.strip_prefix("SEVERITY_NUMBER_")?;
            let (base, n) = match rest.char_indices().find(|(_, c)| c.is_ascii_digit()) {
                Some((i, _)) => (&rest[..i], rest[i..].parse::<i64>().ok()?),
                None => (rest, 1),
            };
            if !(1..=4).contains(&n) {
                return None;
            }
            let start = match base {
                "TRACE" => 1,
                "DEBUG" => 5,
                "INFO" => 9,
                "WARN" => 13,
                "ERROR" => 17,
                "FATAL" => 21,
                _ => return None,
            };
            start + n - 1
        }
    })
}

#[cfg(test)]
mod tests;
