//! The recursive-descent parser for both dialects, and the binding of paths to a context.
//!
//! Precedence, loosest first: `or`, `and`, `not`, comparisons (and expr's `matches`/`contains`),
//! `+ -`, `* /`, unary `-`, then literals, paths, calls and parentheses.

use crate::funcs::{self, FuncKind};
use crate::lex::{lex, Tok};
use crate::{CmpOp, Condition, Context, Dialect, Expr, Field, Key, MathOp, Path, Statement, Value};

/// What a statement may call beyond the standard editors.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatementOptions {
    /// `routing`'s `route()`, which only marks a table row.
    pub allow_route: bool,
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    dialect: Dialect,
    ctx: Context,
}

impl Parser {
    fn new(src: &str, dialect: Dialect, ctx: Context) -> Result<Parser, String> {
        Ok(Parser {
            toks: lex(src, dialect)?,
            pos: 0,
            dialect,
            ctx,
        })
    }
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.toks.get(self.pos + n)
    }
    fn bump(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn at_word(&self, w: &str) -> bool {
        match self.peek() {
            Some(Tok::Ident(i)) => i == w,
            Some(Tok::Op(o)) => *o == w,
            _ => false,
        }
    }
    fn expect(&mut self, t: Tok, what: &str) -> Result<(), String> {
        match self.bump() {
            Some(x) if x == t => Ok(()),
            Some(x) => Err(format!("expected {what}, found {x}")),
            None => Err(format!("expected {what}, found the end")),
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut l = self.and()?;
        while self.at_word("or") {
            self.pos += 1;
            l = Expr::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut l = self.not()?;
        while self.at_word("and") {
            self.pos += 1;
            l = Expr::And(Box::new(l), Box::new(self.not()?));
        }
        Ok(l)
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.at_word("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Expr, String> {
        let mut l = self.math()?;
        // expr chains comparisons left to right (`body matches "x" == true`); OTTL has one at most.
        loop {
            let op = match self.peek() {
                Some(Tok::Op("==")) => CmpOp::Eq,
                Some(Tok::Op("!=")) => CmpOp::Ne,
                Some(Tok::Op("<")) => CmpOp::Lt,
                Some(Tok::Op("<=")) => CmpOp::Le,
                Some(Tok::Op(">")) => CmpOp::Gt,
                Some(Tok::Op(">=")) => CmpOp::Ge,
                Some(Tok::Ident(w)) if self.dialect == Dialect::Expr => {
                    let w = w.clone();
                    let build: fn(Box<Expr>, Box<Expr>) -> Expr = match w.as_str() {
                        "matches" => {
                            self.pos += 1;
                            l = match self.bump() {
                                Some(Tok::Str(re)) => {
                                    let re = vigil_core::config::re2_regex(&re)
                                        .map_err(|e| format!("invalid regex {re:?}: {e}"))?;
                                    Expr::Matches(Box::new(l), re)
                                }
                                _ => return Err("matches takes a quoted regex".into()),
                            };
                            continue;
                        }
                        "contains" => Expr::Contains,
                        "startsWith" => Expr::StartsWith,
                        "endsWith" => Expr::EndsWith,
                        _ => return Ok(l),
                    };
                    self.pos += 1;
                    l = build(Box::new(l), Box::new(self.math()?));
                    continue;
                }
                _ => return Ok(l),
            };
            self.pos += 1;
            let r = self.math()?;
            l = Expr::Cmp(Box::new(l), op, Box::new(r));
            if self.dialect == Dialect::Ottl {
                return Ok(l);
            }
        }
    }

    fn math(&mut self) -> Result<Expr, String> {
        let mut l = self.term()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op("+")) => MathOp::Add,
                Some(Tok::Op("-")) => MathOp::Sub,
                _ => return Ok(l),
            };
            self.pos += 1;
            l = Expr::Math(Box::new(l), op, Box::new(self.term()?));
        }
    }

    fn term(&mut self) -> Result<Expr, String> {
        let mut l = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op("*")) => MathOp::Mul,
                Some(Tok::Op("/")) => MathOp::Div,
                _ => return Ok(l),
            };
            self.pos += 1;
            l = Expr::Math(Box::new(l), op, Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.peek() == Some(&Tok::Op("-")) {
            self.pos += 1;
            // A negative literal stays a literal, so that it can be a constant argument.
            return Ok(match self.unary()? {
                Expr::Lit(Value::Int(i)) => Expr::Lit(Value::Int(-i)),
                Expr::Lit(Value::Double(d)) => Expr::Lit(Value::Double(-d)),
                e => Expr::Neg(Box::new(e)),
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, String> {
        match self.bump() {
            Some(Tok::LParen) => {
                let e = self.or()?;
                self.expect(Tok::RParen, ")")?;
                Ok(e)
            }
            Some(Tok::Str(s)) => Ok(Expr::Lit(Value::Str(s))),
            Some(Tok::Int(i)) => Ok(Expr::Lit(Value::Int(i))),
            Some(Tok::Float(f)) => Ok(Expr::Lit(Value::Double(f))),
            Some(Tok::Bytes(b)) => Ok(Expr::Lit(Value::Bytes(b))),
            Some(Tok::LBrace) if self.dialect == Dialect::Ottl => self.map_lit(),
            Some(Tok::LBracket) if self.dialect == Dialect::Ottl => self.list_lit(),
            Some(Tok::Ident(w)) => self.ident(w),
            Some(t) => Err(format!("unexpected {t}")),
            None => Err("unexpected end of expression".into()),
        }
    }

    fn map_lit(&mut self) -> Result<Expr, String> {
        let mut items = Vec::new();
        loop {
            match self.bump() {
                Some(Tok::RBrace) if items.is_empty() => return Ok(Expr::MapLit(items)),
                Some(Tok::Str(k)) => {
                    self.expect(Tok::Colon, ": after a map key")?;
                    items.push((k, self.or()?));
                }
                Some(t) => return Err(format!("a map literal's keys are strings, found {t}")),
                None => return Err("unterminated map literal".into()),
            }
            match self.bump() {
                Some(Tok::Comma) => {}
                Some(Tok::RBrace) => return Ok(Expr::MapLit(items)),
                _ => return Err("expected , or } in a map literal".into()),
            }
        }
    }

    fn list_lit(&mut self) -> Result<Expr, String> {
        let mut items = Vec::new();
        if self.peek() == Some(&Tok::RBracket) {
            self.pos += 1;
            return Ok(Expr::ListLit(items));
        }
        loop {
            items.push(self.or()?);
            match self.bump() {
                Some(Tok::Comma) => {}
                Some(Tok::RBracket) => return Ok(Expr::ListLit(items)),
                _ => return Err("expected , or ] in a list literal".into()),
            }
        }
    }

    /// A call's arguments, each with its name when given as `name = value`.
    fn args(&mut self) -> Result<Vec<(Option<String>, Expr)>, String> {
        let mut args = Vec::new();
        if self.peek() == Some(&Tok::RParen) {
            self.pos += 1;
            return Ok(args);
        }
        loop {
            let mut named = None;
            if let (Some(Tok::Ident(n)), Some(Tok::Op("="))) = (self.peek(), self.peek_at(1)) {
                named = Some(n.clone());
                self.pos += 2;
            }
            args.push((named, self.or()?));
            match self.bump() {
                Some(Tok::Comma) => {}
                Some(Tok::RParen) => return Ok(args),
                Some(t) => return Err(format!("expected , or ) in arguments, found {t}")),
                None => return Err("unterminated argument list".into()),
            }
        }
    }

    fn keys(&mut self) -> Result<Vec<Key>, String> {
        let mut keys = Vec::new();
        while self.peek() == Some(&Tok::LBracket) {
            self.pos += 1;
            match self.bump() {
                Some(Tok::Str(k)) => keys.push(Key::Str(k)),
                Some(Tok::Int(i)) if self.dialect == Dialect::Ottl => keys.push(Key::Int(i)),
                Some(t) => {
                    return Err(format!(
                        "an index must be a string or integer literal, found {t}"
                    ))
                }
                None => return Err("unterminated index".into()),
            }
            self.expect(Tok::RBracket, "]")?;
        }
        Ok(keys)
    }

    fn ident(&mut self, w: String) -> Result<Expr, String> {
        match w.as_str() {
            "true" => return Ok(Expr::Lit(Value::Bool(true))),
            "false" => return Ok(Expr::Lit(Value::Bool(false))),
            "nil" => return Ok(Expr::Lit(Value::Nil)),
            _ => {}
        }
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            if self.dialect == Dialect::Expr {
                return Err(format!(
                    "unsupported function {w:?}: expressions here support paths, literals, ==, !=, <, >, matches, contains, and, or, not"
                ));
            }
            let args = funcs::by_position(&w, self.args()?)?;
            let call = funcs::resolve(&w, FuncKind::Converter, args, false)?;
            let keys = self.keys()?;
            return Ok(Expr::Call(Box::new(call), keys));
        }
        if self.dialect == Dialect::Ottl {
            if let Some(v) = crate::enum_value(&w) {
                return Ok(Expr::Lit(Value::Int(v)));
            }
            // A converter's bare name is a function argument (`replace_pattern(…, SHA256)`).
            if let Some(f) = funcs::converter_named(&w) {
                return Ok(Expr::Func(f));
            }
            if w.chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
            {
                return Err(format!("unknown enum {w:?}"));
            }
        }
        let mut segs = vec![w];
        while self.peek() == Some(&Tok::Dot) {
            self.pos += 1;
            match self.bump() {
                Some(Tok::Ident(s)) => segs.push(s),
                _ => return Err(format!("expected a name after {}.", segs.join("."))),
            }
        }
        let keys = self.keys()?;
        let p = match self.dialect {
            Dialect::Ottl => bind(self.ctx, &segs, keys)?,
            Dialect::Expr => bind_expr(&segs, keys)?,
        };
        Ok(Expr::Path(p))
    }
}

fn path_text(segs: &[String], keys: &[Key]) -> String {
    let mut t = segs.join(".");
    for k in keys {
        t.push_str(&k.to_string());
    }
    t
}

/// Binds an OTTL path for a context: an optional context prefix (`resource.`, `span.`, …; the
/// context's own prefix is optional), a field, and keys.
fn bind(ctx: Context, segs: &[String], keys: Vec<Key>) -> Result<Path, String> {
    let text = path_text(segs, &keys);
    if segs[0] == "cache" {
        if segs.len() > 1 {
            return Err(format!(
                "unsupported path {text}: cache takes [\"key\"] indexes only"
            ));
        }
        return Ok(Path {
            level: ctx,
            field: Field::Cache,
            keys,
            text,
        });
    }
    let (level, rest) = match Context::from_name(&segs[0]) {
        Some(c) if segs.len() > 1 => {
            if !ctx.reachable().contains(&c) {
                return Err(format!(
                    "path {text} is not reachable from the {} context",
                    ctx.name()
                ));
            }
            (c, &segs[1..])
        }
        _ => (ctx, segs),
    };
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let field = field_for(level, &rest).ok_or_else(|| {
        format!(
            "unsupported path {text} in the {} context (docs/ottl.md lists the paths)",
            ctx.name()
        )
    })?;
    let indexable = matches!(
        field,
        Field::Attributes
            | Field::Body
            | Field::BucketCounts
            | Field::ExplicitBounds
            | Field::PositiveBucketCounts
            | Field::NegativeBucketCounts
            | Field::Metadata
    );
    if field == Field::TraceState && !keys.is_empty() {
        if !matches!(keys[..], [Key::Str(_)]) {
            return Err(format!(
                "path {text}: trace_state takes exactly one string key, as trace_state[\"key\"]"
            ));
        }
    } else if !keys.is_empty() && !indexable {
        return Err(format!("path {text} does not take [\"key\"] indexes"));
    }
    Ok(Path {
        level,
        field,
        keys,
        text,
    })
}

fn field_for(level: Context, rest: &[&str]) -> Option<Field> {
    use Context as C;
    use Field as F;
    Some(match (level, rest) {
        (C::Profile, _) => return None,
        (_, ["attributes"]) => F::Attributes,
        (_, ["dropped_attributes_count"]) => F::DroppedAttributesCount,
        (C::Scope, ["name"]) => F::Name,
        (C::Scope, ["version"]) => F::Version,
        (C::Span | C::Log, ["trace_id"]) => F::TraceId,
        (C::Span | C::Log, ["trace_id", "string"]) => F::TraceIdString,
        (C::Span | C::Log, ["span_id"]) => F::SpanId,
        (C::Span | C::Log, ["span_id", "string"]) => F::SpanIdString,
        (C::Span, ["parent_span_id"]) => F::ParentSpanId,
        (C::Span, ["parent_span_id", "string"]) => F::ParentSpanIdString,
        (C::Span, ["trace_state"]) => F::TraceState,
        (C::Span | C::SpanEvent | C::Metric, ["name"]) => F::Name,
        (C::Span, ["kind"]) => F::Kind,
        (C::Span, ["kind", "string"]) => F::KindString,
        (C::Span, ["kind", "deprecated_string"]) => F::KindDeprecatedString,
        (C::Log, ["body", "string"]) => F::BodyString,
        (C::Span | C::DataPoint, ["start_time_unix_nano"]) => F::StartTimeUnixNano,
        (C::Span, ["end_time_unix_nano"]) => F::EndTimeUnixNano,
        (C::Span | C::DataPoint, ["start_time"]) => F::StartTime,
        (C::Span, ["end_time"]) => F::EndTime,
        (C::Span, ["dropped_events_count"]) => F::DroppedEventsCount,
        (C::Span, ["dropped_links_count"]) => F::DroppedLinksCount,
        (C::Span, ["status", "code"]) => F::StatusCode,
        (C::Span, ["status", "message"]) => F::StatusMessage,
        (C::Span | C::Log | C::DataPoint, ["flags"]) => F::Flags,
        (C::SpanEvent | C::DataPoint | C::Log, ["time_unix_nano"]) => F::TimeUnixNano,
        (C::SpanEvent | C::DataPoint | C::Log, ["time"]) => F::Time,
        (C::Log, ["observed_time_unix_nano"]) => F::ObservedTimeUnixNano,
        (C::Log, ["observed_time"]) => F::ObservedTime,
        (C::Log, ["severity_number"]) => F::SeverityNumber,
        (C::Log, ["severity_text"]) => F::SeverityText,
        (C::Log, ["body"]) => F::Body,
        (C::Log, ["event_name"]) => F::EventName,
        (C::Metric, ["description"]) => F::Description,
        (C::Metric, ["unit"]) => F::Unit,
        (C::Metric, ["type"]) => F::Type,
        (C::Metric, ["aggregation_temporality"]) => F::AggregationTemporality,
        (C::Metric, ["is_monotonic"]) => F::IsMonotonic,
        (C::Metric, ["metadata"]) => F::Metadata,
        (C::DataPoint, ["value_double"]) => F::ValueDouble,
        (C::DataPoint, ["value_int"]) => F::ValueInt,
        (C::DataPoint, ["count"]) => F::Count,
        (C::DataPoint, ["sum"]) => F::Sum,
        (C::DataPoint, ["bucket_counts"]) => F::BucketCounts,
        (C::DataPoint, ["explicit_bounds"]) => F::ExplicitBounds,
        (C::DataPoint, ["scale"]) => F::Scale,
        (C::DataPoint, ["zero_count"]) => F::ZeroCount,
        (C::DataPoint, ["positive", "offset"]) => F::PositiveOffset,
        (C::DataPoint, ["positive", "bucket_counts"]) => F::PositiveBucketCounts,
        (C::DataPoint, ["negative", "offset"]) => F::NegativeOffset,
        (C::DataPoint, ["negative", "bucket_counts"]) => F::NegativeBucketCounts,
        _ => return None,
    })
}

/// Binds a stanza field path: `body`, `body.a`, `attributes.k`, `attributes["k"]`, `resource.k`.
fn bind_expr(segs: &[String], keys: Vec<Key>) -> Result<Path, String> {
    let text = path_text(segs, &keys);
    let mut all: Vec<Key> = segs[1..].iter().cloned().map(Key::Str).collect();
    all.extend(keys);
    let (level, field) = match segs[0].as_str() {
        "body" => (Context::Log, Field::Body),
        "attributes" => (Context::Log, Field::Attributes),
        "resource" => (Context::Resource, Field::Attributes),
        w => {
            return Err(format!(
                "unsupported {w:?}: a field starts with body, attributes or resource"
            ))
        }
    };
    Ok(Path {
        level,
        field,
        keys: all,
        text,
    })
}

/// Parses one OTTL condition for a context. The error names the unsupported part.
pub fn parse_condition(ctx: Context, source: &str) -> Result<Condition, String> {
    let mut p = Parser::new(source, Dialect::Ottl, ctx)?;
    let expr = p.or()?;
    if let Some(t) = p.peek() {
        return Err(format!("unexpected {t} after a complete condition"));
    }
    Ok(Condition {
        source: source.to_string(),
        expr,
    })
}

/// Parses one stanza expr (filelog's `router` routes and operators' `if`).
pub fn parse_expr(source: &str) -> Result<Condition, String> {
    let mut p = Parser::new(source, Dialect::Expr, Context::Log)?;
    let expr = p.or()?;
    if let Some(t) = p.peek() {
        return Err(format!("unexpected {t} after a complete expression"));
    }
    Ok(Condition {
        source: source.to_string(),
        expr,
    })
}

/// Parses one OTTL statement (`editor(args) where condition`) for a context.
pub fn parse_statement(
    ctx: Context,
    source: &str,
    opts: StatementOptions,
) -> Result<Statement, String> {
    let mut p = Parser::new(source, Dialect::Ottl, ctx)?;
    let name = match p.bump() {
        Some(Tok::Ident(w)) => w,
        Some(t) => return Err(format!("a statement starts with an editor name, found {t}")),
        None => return Err("empty statement".into()),
    };
    p.expect(Tok::LParen, &format!("( after {name}"))?;
    let args = funcs::by_position(&name, p.args()?)?;
    let editor = funcs::resolve(&name, FuncKind::Editor, args, opts.allow_route)?;
    let condition = if p.at_word("where") {
        p.pos += 1;
        Some(p.or()?)
    } else {
        None
    };
    if let Some(t) = p.peek() {
        return Err(format!("unexpected {t} after a complete statement"));
    }
    Ok(Statement {
        source: source.to_string(),
        context: ctx,
        editor,
        condition,
    })
}

/// The context of a statement or condition in otelcol's flat form, from its path prefixes: the most
/// specific of `candidates` (listed from resource down) that a path names.
pub fn infer_context(source: &str, candidates: &[Context]) -> Result<Context, String> {
    let toks = lex(source, Dialect::Ottl)?;
    let mut best: Option<usize> = None;
    for (i, t) in toks.iter().enumerate() {
        let Tok::Ident(w) = t else { continue };
        if i > 0 && toks[i - 1] == Tok::Dot || toks.get(i + 1) != Some(&Tok::Dot) {
            continue;
        }
        let Some(c) = Context::from_name(w) else {
            continue;
        };
        let Some(at) = candidates.iter().position(|x| *x == c) else {
            return Err(format!(
                "path prefix {w}. cannot be used here: expected one of {}",
                names(candidates)
            ));
        };
        best = Some(best.map_or(at, |b| b.max(at)));
    }
    // A statement without a context prefix starts with a function that has one home (the metric
    // editors, merge_histogram_buckets, set_semconv_span_name), as otelcol infers from functions.
    if best.is_none() {
        if let Some(Tok::Ident(w)) = toks.first() {
            if let Some(at) =
                funcs::home_context(w).and_then(|c| candidates.iter().position(|x| *x == c))
            {
                best = Some(at);
            }
        }
    }
    best.map(|b| candidates[b]).ok_or_else(|| {
        format!(
            "cannot infer the context of {source:?}: prefix its paths with one of {}, or use the grouped form with `context:`",
            names(candidates)
        )
    })
}

fn names(cs: &[Context]) -> String {
    cs.iter()
        .map(|c| format!("{}.", c.name()))
        .collect::<Vec<_>>()
        .join(", ")
}
