//! Lexer and recursive-descent parser for the OTTL condition subset.

use super::{CmpOp, Condition, Context, Expr, Path, Val};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Op(&'static str),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    Comma,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push(Tok::LParen);
                i += 1
            }
            b')' => {
                out.push(Tok::RParen);
                i += 1
            }
            b'[' => {
                out.push(Tok::LBracket);
                i += 1
            }
            b']' => {
                out.push(Tok::RBracket);
                i += 1
            }
            b'.' => {
                out.push(Tok::Dot);
                i += 1
            }
            b',' => {
                out.push(Tok::Comma);
                i += 1
            }
            b'"' => {
                let mut v = String::new();
                let mut chars = s[i + 1..].char_indices();
                let mut end = None;
                while let Some((j, ch)) = chars.next() {
                    match ch {
                        '\\' => match chars.next() {
                            Some((_, 'n')) => v.push('\n'),
                            Some((_, 't')) => v.push('\t'),
                            Some((_, e)) => v.push(e),
                            None => break,
                        },
                        '"' => {
                            end = Some(i + 1 + j + 1);
                            break;
                        }
                        ch => v.push(ch),
                    }
                }
                i = end.ok_or("unterminated string literal")?;
                out.push(Tok::Str(v));
            }
            b'0'..=b'9' | b'-' if c != b'-' || b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let start = i;
                i += 1;
                let mut float = false;
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                    float |= b[i] == b'.';
                    i += 1;
                }
                let t = &s[start..i];
                out.push(if float {
                    Tok::Float(t.parse().map_err(|_| format!("invalid number {t:?}"))?)
                } else {
                    Tok::Int(t.parse().map_err(|_| format!("invalid number {t:?}"))?)
                });
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push(Tok::Ident(s[start..i].to_string()));
            }
            _ => {
                let two = s.get(i..i + 2).unwrap_or("");
                let op = match two {
                    "==" => "==",
                    "!=" => "!=",
                    "<=" => "<=",
                    ">=" => ">=",
                    _ => match c {
                        b'<' => "<",
                        b'>' => ">",
                        _ => {
                            return Err(format!(
                                "unsupported character {:?} at byte {i}",
                                s[i..].chars().next().unwrap_or('?')
                            ))
                        }
                    },
                };
                i += op.len();
                out.push(Tok::Op(op));
            }
        }
    }
    Ok(out)
}

struct P {
    toks: Vec<Tok>,
    pos: usize,
    ctx: Context,
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn bump(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn at_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(i)) if i == w)
    }
    fn expect(&mut self, t: Tok, what: &str) -> Result<(), String> {
        match self.bump() {
            Some(x) if x == t => Ok(()),
            Some(x) => Err(format!("expected {what}, found {x:?}")),
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
        let l = self.value()?;
        let op = match self.peek() {
            Some(Tok::Op(o)) => match *o {
                "==" => CmpOp::Eq,
                "!=" => CmpOp::Ne,
                "<" => CmpOp::Lt,
                "<=" => CmpOp::Le,
                ">" => CmpOp::Gt,
                ">=" => CmpOp::Ge,
                _ => return Ok(l),
            },
            _ => return Ok(l),
        };
        self.pos += 1;
        let r = self.value()?;
        Ok(Expr::Cmp(Box::new(l), op, Box::new(r)))
    }
    fn value(&mut self) -> Result<Expr, String> {
        match self.bump() {
            Some(Tok::LParen) => {
                let e = self.or()?;
                self.expect(Tok::RParen, ")")?;
                Ok(e)
            }
            Some(Tok::Str(s)) => Ok(Expr::Lit(Val::Str(s))),
            Some(Tok::Int(i)) => Ok(Expr::Lit(Val::Int(i))),
            Some(Tok::Float(f)) => Ok(Expr::Lit(Val::Float(f))),
            Some(Tok::Ident(w)) => self.ident(w),
            Some(t) => Err(format!("unexpected {t:?}")),
            None => Err("unexpected end of condition".into()),
        }
    }
    fn ident(&mut self, w: String) -> Result<Expr, String> {
        match w.as_str() {
            "true" => return Ok(Expr::Lit(Val::Bool(true))),
            "false" => return Ok(Expr::Lit(Val::Bool(false))),
            "nil" => return Ok(Expr::Lit(Val::Nil)),
            _ => {}
        }
        if let Some(v) = enum_value(&w) {
            return Ok(Expr::Lit(Val::Int(v)));
        }
        if self.peek() == Some(&Tok::LParen) {
            if w != "IsMatch" {
                return Err(format!(
                    "unsupported function {w:?}: only IsMatch is supported"
                ));
            }
            self.pos += 1;
            let target = self.value()?;
            self.expect(Tok::Comma, ", between IsMatch's arguments")?;
            let pattern = match self.bump() {
                Some(Tok::Str(s)) => s,
                _ => return Err("IsMatch's second argument must be a string literal regex".into()),
            };
            self.expect(Tok::RParen, ")")?;
            let re = vigil_core::config::re2_regex(&pattern)
                .map_err(|e| format!("IsMatch: invalid regex {pattern:?}: {e}"))?;
            return Ok(Expr::IsMatch(Box::new(target), re));
        }
        if w.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
            return Err(format!("unsupported enum or function {w:?}"));
        }
        // A path: segments joined by dots, then ["key"] indexes.
        let mut segs = vec![w];
        while self.peek() == Some(&Tok::Dot) {
            self.pos += 1;
            match self.bump() {
                Some(Tok::Ident(s)) => segs.push(s),
                _ => return Err(format!("expected a name after {}.", segs.join("."))),
            }
        }
        let mut keys = Vec::new();
        while self.peek() == Some(&Tok::LBracket) {
            self.pos += 1;
            match self.bump() {
                Some(Tok::Str(k)) => keys.push(k),
                _ => return Err(format!("{}[...] takes a string key", segs.join("."))),
            }
            self.expect(Tok::RBracket, "]")?;
        }
        path(self.ctx, &segs, keys).map(Expr::Path)
    }
}

fn path(ctx: Context, segs: &[String], keys: Vec<String>) -> Result<Path, String> {
    let mut s: Vec<&str> = segs.iter().map(String::as_str).collect();
    // The context may prefix its own paths (`span.name`, `log.body`, `datapoint.attributes`).
    let own = match ctx {
        Context::Span => "span",
        Context::Metric => "metric",
        Context::DataPoint => "datapoint",
        Context::LogRecord => "log",
    };
    if s.len() > 1 && s[0] == own && ctx != Context::Metric {
        s.remove(0);
    }
    let text = segs.join(".");
    let no_keys = |p: Path| -> Result<Path, String> {
        if keys.is_empty() {
            Ok(p)
        } else {
            Err(format!("path {text} does not take [\"key\"] indexes"))
        }
    };
    let need_key = |p: fn(Vec<String>) -> Path| -> Result<Path, String> {
        if keys.is_empty() {
            Err(format!(
                "path {text} needs a key, as in {text}[\"key\"]: whole maps are not supported"
            ))
        } else {
            Ok(p(keys.clone()))
        }
    };
    let p = match (ctx, s.as_slice()) {
        (_, ["resource", "attributes"]) => need_key(Path::ResourceAttributes)?,
        (Context::Span | Context::DataPoint | Context::LogRecord, ["attributes"]) => {
            need_key(Path::Attributes)?
        }
        (Context::LogRecord, ["body"]) => Path::Body(keys.clone()),
        (Context::LogRecord, ["severity_number"]) => no_keys(Path::SeverityNumber)?,
        (Context::LogRecord, ["severity_text"]) => no_keys(Path::SeverityText)?,
        (Context::Span, ["name"]) => no_keys(Path::Name)?,
        (Context::Span, ["kind"]) => no_keys(Path::Kind)?,
        (Context::Span, ["status", "code"]) => no_keys(Path::StatusCode)?,
        (Context::Metric, ["name"] | ["metric", "name"])
        | (Context::DataPoint, ["metric", "name"]) => no_keys(Path::MetricName)?,
        (Context::Metric, ["type"] | ["metric", "type"])
        | (Context::DataPoint, ["metric", "type"]) => no_keys(Path::MetricType)?,
        _ => {
            return Err(format!(
                "unsupported path {text} in the {} context",
                ctx.name()
            ))
        }
    };
    Ok(p)
}

/// OTTL's enum names, as the integers OTLP uses.
fn enum_value(w: &str) -> Option<i64> {
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

/// Parses one condition for a context. The error names the unsupported part.
pub fn parse_condition(ctx: Context, source: &str) -> Result<Condition, String> {
    let mut p = P {
        toks: lex(source)?,
        pos: 0,
        ctx,
    };
    let expr = p.or()?;
    if let Some(t) = p.peek() {
        return Err(format!("unsupported {t:?} after a complete condition"));
    }
    Ok(Condition {
        source: source.to_string(),
        expr,
    })
}
