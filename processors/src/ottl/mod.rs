//! A subset of OTTL (the OpenTelemetry Transformation Language) for conditions: paths into spans,
//! metrics, data points and log records, literals, comparisons, `and`/`or`/`not`, `IsMatch` and `nil`,
//! plus OTTL's enum names (`SPAN_KIND_SERVER`, `STATUS_CODE_ERROR`, `SEVERITY_NUMBER_WARN`, …).
//! Conditions are parsed once, for one context, at config load; anything outside the subset is an
//! error naming the part that is not supported. `filter` uses it now, `transform` will later.
//!
//! Hand-written: there is no OTTL implementation in Rust, and the grammar subset is small.

mod eval;
mod parse;

pub use eval::{DataPointCtx, LogCtx, MetricCtx, SpanCtx};
pub use parse::parse_condition;

use regex::Regex;

/// The context a condition is evaluated in; it decides which paths exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Span,
    Metric,
    DataPoint,
    LogRecord,
}

impl Context {
    pub fn name(self) -> &'static str {
        match self {
            Context::Span => "span",
            Context::Metric => "metric",
            Context::DataPoint => "datapoint",
            Context::LogRecord => "log",
        }
    }
}

/// A path, resolved for its context at parse time.
#[derive(Debug, Clone, PartialEq)]
pub enum Path {
    /// `attributes["k"]` (of the span, data point or log record), with optional nested map keys.
    Attributes(Vec<String>),
    ResourceAttributes(Vec<String>),
    Body(Vec<String>),
    SeverityNumber,
    SeverityText,
    Name,
    Kind,
    StatusCode,
    MetricName,
    MetricType,
}

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Nil,
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Maps, lists and bytes: only equal to nil-checks.
    Other,
}

/// A parsed condition or sub-expression.
#[derive(Debug, Clone)]
pub enum Expr {
    Lit(Val),
    Path(Path),
    Cmp(Box<Expr>, CmpOp, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    IsMatch(Box<Expr>, Regex),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// What a context gives a condition: the value at a path.
pub trait Target {
    fn get(&self, path: &Path) -> Val;
}

/// A condition ready to run.
#[derive(Debug, Clone)]
pub struct Condition {
    pub source: String,
    pub expr: Expr,
}

impl Condition {
    /// Whether the target satisfies the condition. A condition whose result is not a boolean is an
    /// error, which the caller handles according to its `error_mode`.
    pub fn eval(&self, t: &dyn Target) -> Result<bool, String> {
        match eval_expr(&self.expr, t)? {
            Val::Bool(b) => Ok(b),
            other => Err(format!(
                "condition {:?} gave {other:?}, not a boolean",
                self.source
            )),
        }
    }
}

fn eval_expr(e: &Expr, t: &dyn Target) -> Result<Val, String> {
    Ok(match e {
        Expr::Lit(v) => v.clone(),
        Expr::Path(p) => t.get(p),
        Expr::Cmp(a, op, b) => Val::Bool(compare(&eval_expr(a, t)?, *op, &eval_expr(b, t)?)),
        Expr::And(a, b) => Val::Bool(truthy(eval_expr(a, t)?)? && truthy(eval_expr(b, t)?)?),
        Expr::Or(a, b) => Val::Bool(truthy(eval_expr(a, t)?)? || truthy(eval_expr(b, t)?)?),
        Expr::Not(a) => Val::Bool(!truthy(eval_expr(a, t)?)?),
        Expr::IsMatch(a, re) => match eval_expr(a, t)? {
            Val::Str(s) => Val::Bool(re.is_match(&s)),
            Val::Int(i) => Val::Bool(re.is_match(&i.to_string())),
            Val::Float(f) => Val::Bool(re.is_match(&f.to_string())),
            Val::Bool(b) => Val::Bool(re.is_match(&b.to_string())),
            // OTTL's IsMatch is false for nil.
            Val::Nil => Val::Bool(false),
            Val::Other => return Err("IsMatch: the target is not a string".into()),
        },
    })
}

fn truthy(v: Val) -> Result<bool, String> {
    match v {
        Val::Bool(b) => Ok(b),
        other => Err(format!("expected a boolean, got {other:?}")),
    }
}

/// OTTL comparison: values of different kinds are unequal (ints and floats compare as numbers), and
/// an ordering between kinds that have none is false.
fn compare(a: &Val, op: CmpOp, b: &Val) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (a, b) {
        (Val::Nil, Val::Nil) => Some(Ordering::Equal),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::Int(x), Val::Float(y)) => (*x as f64).partial_cmp(y),
        (Val::Float(x), Val::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Val::Float(x), Val::Float(y)) => x.partial_cmp(y),
        (Val::Bool(x), Val::Bool(y)) => {
            return match op {
                CmpOp::Eq => x == y,
                CmpOp::Ne => x != y,
                _ => false,
            }
        }
        _ => None,
    };
    match (ord, op) {
        (Some(o), CmpOp::Eq) => o == Ordering::Equal,
        (Some(o), CmpOp::Ne) => o != Ordering::Equal,
        (None, CmpOp::Ne) => true,
        (None, _) => false,
        (Some(o), CmpOp::Lt) => o == Ordering::Less,
        (Some(o), CmpOp::Le) => o != Ordering::Greater,
        (Some(o), CmpOp::Gt) => o == Ordering::Greater,
        (Some(o), CmpOp::Ge) => o != Ordering::Less,
    }
}

#[cfg(test)]
mod tests;
