//! The part of expr-lang (github.com/expr-lang/expr, which otelcol's `receiver_creator` evaluates
//! `rule`s and backtick config values with) that discovery rules use: literals (strings in double
//! or single quotes, numbers, `true`, `false`, `nil`, `[lists]`), variables and field access
//! (`pod.labels`), indexing (`annotations["prometheus.io/port"]`), `!`/`not`, `&&`/`and`,
//! `||`/`or`, `==`, `!=`, `<`, `<=`, `>`, `>=`, `matches` (an RE2 regular expression),
//! `contains`, `startsWith`, `endsWith`, `in`/`not in` (a list element or a map key), `+` (numbers
//! and strings) and parentheses. Anything else (function calls, the ternary, pipes, arithmetic
//! beyond `+`) is refused when the config is validated, naming what and where, rather than
//! evaluated differently from otelcol. There is no Rust port of expr-lang, hence this file.
//!
//! Values are JSON values: an endpoint's env is a JSON object. A missing key is `nil`, as in
//! expr-lang's maps; field access on `nil` is `nil`.

use serde_json::Value;

#[derive(Debug, Clone)]
pub enum Expr {
    Lit(Value),
    List(Vec<Expr>),
    Var(String),
    Field(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
    /// `matches` with a literal pattern, compiled once.
    Matches(Box<Expr>, regex::Regex),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Matches,
    Contains,
    StartsWith,
    EndsWith,
    In,
    NotIn,
    Add,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Sym(&'static str),
}

const SYMS: [&str; 20] = [
    "==", "!=", "<=", ">=", "&&", "||", "??", "?.", "<", ">", "!", "(", ")", "[", "]", ".", ",",
    "+", "?", "|",
];
const UNSUPPORTED_CHARS: &str = "-*/%^:{}#@$~=&";

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("unterminated string starting at column {col}")),
                    Some(&q) if q == c => break,
                    Some('\\') => {
                        i += 1;
                        match chars.get(i) {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(&e) => s.push(e),
                            None => return Err(format!("unterminated string at column {col}")),
                        }
                    }
                    Some(&ch) => s.push(ch),
                }
                i += 1;
            }
            i += 1;
            out.push((Tok::Str(s), col));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == '_')
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().filter(|c| **c != '_').collect();
            let n = text
                .parse::<f64>()
                .map_err(|_| format!("invalid number {text:?} at column {col}"))?;
            out.push((Tok::Num(n), col));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), col));
        } else if let Some(s) = SYMS.iter().find(|s| {
            let n = s.chars().count();
            i + n <= chars.len() && chars[i..i + n].iter().copied().eq(s.chars())
        }) {
            i += s.chars().count();
            out.push((Tok::Sym(s), col));
        } else if UNSUPPORTED_CHARS.contains(c) {
            return Err(format!(
                "{c:?} at column {col} is not supported by vigil's rule evaluator (supported: \
                 ==, !=, <, <=, >, >=, !, &&, ||, +, matches, contains, startsWith, endsWith, in, \
                 field access and [index])"
            ));
        } else {
            return Err(format!("unexpected {c:?} at column {col}"));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }
    fn col(&self) -> usize {
        self.toks.get(self.pos).map(|t| t.1).unwrap_or(self.len + 1)
    }
    fn eat_sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(x)) if *x == s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn eat_word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(x)) if x == w) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn peek_word(&self, w: &str, ahead: usize) -> bool {
        matches!(self.toks.get(self.pos + ahead), Some((Tok::Ident(x), _)) if x == w)
    }
    fn expect(&mut self, s: &str) -> Result<(), String> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            Err(format!("expected {s:?} at column {}", self.col()))
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut l = self.and()?;
        while self.eat_sym("||") || self.eat_word("or") {
            l = Expr::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut l = self.unary()?;
        while self.eat_sym("&&") || self.eat_word("and") {
            l = Expr::And(Box::new(l), Box::new(self.unary()?));
        }
        Ok(l)
    }
    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat_sym("!")
            || (self.peek_word("not", 0) && !self.peek_word("in", 1) && self.eat_word("not"))
        {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.cmp()
    }
    fn cmp(&mut self) -> Result<Expr, String> {
        let l = self.add()?;
        let op = match self.peek() {
            Some(Tok::Sym("==")) => Op::Eq,
            Some(Tok::Sym("!=")) => Op::Ne,
            Some(Tok::Sym("<")) => Op::Lt,
            Some(Tok::Sym("<=")) => Op::Le,
            Some(Tok::Sym(">")) => Op::Gt,
            Some(Tok::Sym(">=")) => Op::Ge,
            Some(Tok::Ident(w)) => match w.as_str() {
                "matches" => Op::Matches,
                "contains" => Op::Contains,
                "startsWith" => Op::StartsWith,
                "endsWith" => Op::EndsWith,
                "in" => Op::In,
                "not" if self.peek_word("in", 1) => {
                    self.pos += 1;
                    Op::NotIn
                }
                _ => return Ok(l),
            },
            _ => return Ok(l),
        };
        self.pos += 1;
        let r = self.add()?;
        if op == Op::Matches {
            if let Expr::Lit(Value::String(p)) = &r {
                let re = vigil_core::config::re2_regex(p)
                    .map_err(|e| format!("invalid regular expression {p:?}: {e}"))?;
                return Ok(Expr::Matches(Box::new(l), re));
            }
        }
        Ok(Expr::Bin(op, Box::new(l), Box::new(r)))
    }
    fn add(&mut self) -> Result<Expr, String> {
        let mut l = self.postfix()?;
        while self.eat_sym("+") {
            l = Expr::Bin(Op::Add, Box::new(l), Box::new(self.postfix()?));
        }
        Ok(l)
    }
    fn postfix(&mut self) -> Result<Expr, String> {
        let mut e = self.primary()?;
        loop {
            if self.eat_sym(".") || self.eat_sym("?.") {
                match self.toks.get(self.pos).cloned() {
                    Some((Tok::Ident(f), _)) => {
                        self.pos += 1;
                        e = Expr::Field(Box::new(e), f);
                    }
                    _ => return Err(format!("expected a field name at column {}", self.col())),
                }
            } else if self.eat_sym("[") {
                let i = self.or()?;
                self.expect("]")?;
                e = Expr::Index(Box::new(e), Box::new(i));
            } else {
                return Ok(e);
            }
        }
    }
    fn primary(&mut self) -> Result<Expr, String> {
        let col = self.col();
        let Some((tok, _)) = self.toks.get(self.pos).cloned() else {
            return Err(format!("unexpected end of expression at column {col}"));
        };
        self.pos += 1;
        match tok {
            Tok::Str(s) => Ok(Expr::Lit(Value::String(s))),
            Tok::Num(n) => Ok(Expr::Lit(num(n))),
            Tok::Ident(w) => match w.as_str() {
                "true" => Ok(Expr::Lit(Value::Bool(true))),
                "false" => Ok(Expr::Lit(Value::Bool(false))),
                "nil" => Ok(Expr::Lit(Value::Null)),
                _ if matches!(self.peek(), Some(Tok::Sym("("))) => Err(format!(
                    "function call {w}() at column {col} is not supported by vigil's rule evaluator"
                )),
                _ => Ok(Expr::Var(w)),
            },
            Tok::Sym("(") => {
                let e = self.or()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Sym("[") => {
                let mut items = Vec::new();
                if !self.eat_sym("]") {
                    loop {
                        items.push(self.or()?);
                        if self.eat_sym("]") {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                Ok(Expr::List(items))
            }
            Tok::Sym(s) => Err(format!(
                "{s:?} at column {col} is not supported by vigil's rule evaluator"
            )),
        }
    }
}

fn num(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// Parses one expression.
pub fn parse(src: &str) -> Result<Expr, String> {
    let toks = lex(src)?;
    let mut p = Parser {
        len: src.chars().count(),
        toks,
        pos: 0,
    };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return Err(match &p.toks[p.pos].0 {
            Tok::Sym(s) => format!(
                "{s:?} at column {} is not supported by vigil's rule evaluator",
                p.col()
            ),
            t => format!("unexpected {t:?} at column {}", p.col()),
        });
    }
    Ok(e)
}

fn truthy(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Null => Ok(false),
        other => Err(format!("expected a boolean, got {other}")),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn as_str<'a>(v: &'a Value, op: &str) -> Result<&'a str, String> {
    v.as_str()
        .ok_or_else(|| format!("{op} needs strings, got {v}"))
}

/// Evaluates `e` against `env` (an endpoint's env object).
pub fn eval(e: &Expr, env: &Value) -> Result<Value, String> {
    Ok(match e {
        Expr::Lit(v) => v.clone(),
        Expr::List(items) => Value::Array(
            items
                .iter()
                .map(|i| eval(i, env))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Var(name) => env.get(name).cloned().unwrap_or(Value::Null),
        Expr::Field(base, f) => eval(base, env)?.get(f).cloned().unwrap_or(Value::Null),
        Expr::Index(base, i) => {
            let (b, i) = (eval(base, env)?, eval(i, env)?);
            match (&b, &i) {
                (Value::Object(m), Value::String(k)) => m.get(k).cloned().unwrap_or(Value::Null),
                (Value::Array(a), Value::Number(n)) => n
                    .as_i64()
                    .and_then(|n| {
                        let n = if n < 0 { a.len() as i64 + n } else { n };
                        a.get(usize::try_from(n).ok()?).cloned()
                    })
                    .unwrap_or(Value::Null),
                (Value::Null, _) => Value::Null,
                _ => return Err(format!("cannot index {b} with {i}")),
            }
        }
        Expr::Not(x) => Value::Bool(!truthy(&eval(x, env)?)?),
        Expr::And(l, r) => Value::Bool(truthy(&eval(l, env)?)? && truthy(&eval(r, env)?)?),
        Expr::Or(l, r) => Value::Bool(truthy(&eval(l, env)?)? || truthy(&eval(r, env)?)?),
        Expr::Matches(l, re) => match eval(l, env)? {
            Value::String(s) => Value::Bool(re.is_match(&s)),
            Value::Null => Value::Bool(false),
            v => return Err(format!("matches needs a string, got {v}")),
        },
        Expr::Bin(op, l, r) => {
            let (a, b) = (eval(l, env)?, eval(r, env)?);
            match op {
                Op::Eq => Value::Bool(equal(&a, &b)),
                Op::Ne => Value::Bool(!equal(&a, &b)),
                Op::Lt | Op::Le | Op::Gt | Op::Ge => {
                    let ord = match (&a, &b) {
                        (Value::Number(x), Value::Number(y)) => x.as_f64().partial_cmp(&y.as_f64()),
                        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
                        _ => return Err(format!("cannot compare {a} and {b}")),
                    };
                    let Some(o) = ord else {
                        return Ok(Value::Bool(false));
                    };
                    Value::Bool(match op {
                        Op::Lt => o.is_lt(),
                        Op::Le => o.is_le(),
                        Op::Gt => o.is_gt(),
                        _ => o.is_ge(),
                    })
                }
                Op::Matches => {
                    if a.is_null() {
                        return Ok(Value::Bool(false));
                    }
                    let p = as_str(&b, "matches")?;
                    let re = vigil_core::config::re2_regex(p)
                        .map_err(|e| format!("invalid regular expression {p:?}: {e}"))?;
                    Value::Bool(re.is_match(as_str(&a, "matches")?))
                }
                Op::Contains | Op::StartsWith | Op::EndsWith => {
                    if a.is_null() {
                        return Ok(Value::Bool(false));
                    }
                    let (s, t) = (as_str(&a, "contains")?, as_str(&b, "contains")?);
                    Value::Bool(match op {
                        Op::Contains => s.contains(t),
                        Op::StartsWith => s.starts_with(t),
                        _ => s.ends_with(t),
                    })
                }
                Op::In | Op::NotIn => {
                    let found = match &b {
                        Value::Array(items) => items.iter().any(|x| equal(x, &a)),
                        Value::Object(m) => a.as_str().is_some_and(|k| m.contains_key(k)),
                        Value::Null => false,
                        _ => return Err(format!("in needs a list or a map, got {b}")),
                    };
                    Value::Bool(found == (*op == Op::In))
                }
                Op::Add => match (&a, &b) {
                    (Value::Number(x), Value::Number(y)) => {
                        num(x.as_f64().unwrap_or(0.0) + y.as_f64().unwrap_or(0.0))
                    }
                    (Value::String(x), Value::String(y)) => Value::String(format!("{x}{y}")),
                    _ => return Err(format!("cannot add {a} and {b}")),
                },
            }
        }
    })
}

/// A value as backtick substitution writes it inside a longer string.
pub fn to_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The pieces of a config string: literal text and backtick expressions. `\`` is a literal
/// backtick, as in otelcol.
#[derive(Debug, Clone)]
pub enum Piece {
    Text(String),
    Expr(String, Expr),
}

/// Splits `s` at backticks; `Ok(None)` when it holds no expression.
pub fn template(s: &str) -> Result<Option<Vec<Piece>>, String> {
    if !s.contains('`') {
        return Ok(None);
    }
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'`') => {
                chars.next();
                text.push('`');
            }
            '`' => {
                let mut src = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("unterminated backtick expression in {s:?}")),
                        Some('`') => break,
                        Some(ch) => src.push(ch),
                    }
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                let e = parse(&src).map_err(|e| format!("in `{src}`: {e}"))?;
                pieces.push(Piece::Expr(src, e));
            }
            ch => text.push(ch),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(Some(pieces))
}

/// A templated string's value: one whole expression keeps its type (a port stays a number);
/// otherwise the pieces are joined as text.
pub fn render(pieces: &[Piece], env: &Value) -> Result<Value, String> {
    if let [Piece::Expr(src, e)] = pieces {
        return eval(e, env).map_err(|m| format!("in `{src}`: {m}"));
    }
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Expr(src, e) => out.push_str(&to_text(
                &eval(e, env).map_err(|m| format!("in `{src}`: {m}"))?,
            )),
        }
    }
    Ok(Value::String(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env() -> Value {
        json!({"type": "port", "name": "metrics", "port": 9153, "endpoint": "10.0.0.5:9153",
            "transport": "TCP",
            "pod": {"name": "coredns-abc", "namespace": "kube-system",
                "labels": {"k8s-app": "kube-dns"},
                "annotations": {"prometheus.io/scrape": "true", "prometheus.io/path": "/m"}}})
    }

    fn run(src: &str) -> Value {
        eval(&parse(src).unwrap_or_else(|e| panic!("{src}: {e}")), &env())
            .unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    #[test]
    fn the_rules_published_configs_use() {
        for (src, want) in [
            (
                r#"type == "port" && pod.labels["k8s-app"] == "kube-dns""#,
                true,
            ),
            (r#"type == "pod" && labels["k8s-app"] == "kube-dns""#, false),
            (
                r#"type == "port" && (pod.labels["a"] == "x" || pod.labels["k8s-app"] == "kube-dns")"#,
                true,
            ),
            (r#"type == "port" && port == 9153"#, true),
            (r#"type == "port" && port != 9153"#, false),
            (r#"type == "port" && pod.name matches "^coredns""#, true),
            (r#"type == "port" && pod.name matches "^redis""#, false),
            (r#"type == "port" and not (name contains "x")"#, true),
            (
                r#"type == "port" && !(pod.annotations["prometheus.io/scrape"] == "false")"#,
                true,
            ),
            (
                r#"type == "port" && "prometheus.io/path" in pod.annotations"#,
                true,
            ),
            (r#"type == "port" && "nope" not in pod.annotations"#, true),
            (r#"type == "port" && port in [9153, 8080]"#, true),
            (
                r#"type == "port" && name startsWith "met" && name endsWith "ics""#,
                true,
            ),
            (r#"type == "port" && pod.labels["missing"] == nil"#, true),
            (r#"type == 'port' && port >= 9000 && port < 10000"#, true),
            (r#"type == "port" && missing.field == "x""#, false),
        ] {
            assert_eq!(run(src), Value::Bool(want), "{src}");
        }
    }

    #[test]
    fn what_is_not_supported_is_named_with_its_column() {
        for (src, want) in [
            ("len(name) > 3", "function call len() at column 1"),
            ("port * 2 == 4", "'*' at column 6 is not supported"),
            (
                "type == \"pod\" ? 1 : 2",
                "':' at column 19 is not supported",
            ),
            (
                "type == \"pod\" ?? 1",
                "\"??\" at column 15 is not supported",
            ),
            ("name == \"x", "unterminated string"),
            ("name ==", "unexpected end of expression"),
            ("(name == \"x\"", "expected \")\""),
            ("name matches \"(\"", "invalid regular expression"),
        ] {
            let e = parse(src).unwrap_err();
            assert!(e.contains(want), "{src}: {e}");
        }
    }

    #[test]
    fn backtick_templates_keep_a_whole_value_typed() {
        let t = template("`port`").unwrap().unwrap();
        assert_eq!(render(&t, &env()).unwrap(), json!(9153));
        let t = template("http://`endpoint``pod.annotations[\"prometheus.io/path\"]`").unwrap();
        assert_eq!(
            render(&t.unwrap(), &env()).unwrap(),
            json!("http://10.0.0.5:9153/m")
        );
        let t = template("a \\`literal\\` and `name`").unwrap().unwrap();
        assert_eq!(
            render(&t, &env()).unwrap(),
            json!("a `literal` and metrics")
        );
        assert!(template("no expressions").unwrap().is_none());
        assert!(template("`unterminated").is_err());
        assert!(template("`len(x)`").unwrap_err().contains("function call"));
    }
}
