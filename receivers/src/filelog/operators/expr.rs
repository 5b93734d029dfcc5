//! The small expression language of stanza's `router` routes and operators' `if` (a subset of
//! expr-lang): field paths, string/number/bool literals and `nil`, `==`, `!=`, `matches`, `contains`,
//! `and`/`&&`, `or`/`||`, `not`/`!` and parentheses. It is hand-written because the subset is tiny
//! and no crate speaks expr-lang; anything outside it is refused at config load.

use crate::filelog::entry::{Entry, Field};
use regex::Regex;
use vigil_core::otlp::common::v1::any_value::Value;

/// A parsed expression.
#[derive(Debug, Clone)]
pub enum Expr {
    Field(Field),
    Str(String),
    Num(f64),
    Bool(bool),
    Nil,
    Eq(Box<Expr>, Box<Expr>),
    Ne(Box<Expr>, Box<Expr>),
    Matches(Box<Expr>, Regex),
    Contains(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Op(&'static str),
    LParen,
    RParen,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'(' {
            out.push(Tok::LParen);
            i += 1;
        } else if c == b')' {
            out.push(Tok::RParen);
            i += 1;
        } else if c == b'"' || c == b'\'' {
            let (text, next) = lex_string(s, i)?;
            out.push(Tok::Str(text));
            i = next;
        } else if c.is_ascii_digit() || (c == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            let start = i;
            i += 1;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            let n = s[start..i]
                .parse()
                .map_err(|_| format!("bad number {:?}", &s[start..i]))?;
            out.push(Tok::Num(n));
        } else if c.is_ascii_alphabetic() || c == b'_' {
            // A path may hold dots and ["quoted"] keys: take them as one token.
            let start = i;
            while i < b.len() {
                let c = b[i];
                if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' {
                    i += 1;
                } else if c == b'[' {
                    let (_, next) = lex_string(s, i + 1)?;
                    if b.get(next) != Some(&b']') {
                        return Err(format!("expected ] in {:?}", &s[start..]));
                    }
                    i = next + 1;
                } else {
                    break;
                }
            }
            out.push(Tok::Ident(s[start..i].to_string()));
        } else {
            let two = s.get(i..i + 2).unwrap_or("");
            let op = match two {
                "==" => "==",
                "!=" => "!=",
                "&&" => "and",
                "||" => "or",
                _ if c == b'!' => "not",
                _ => {
                    return Err(format!(
                        "unsupported {:?} at byte {i}: only ==, !=, matches, contains, and, or, not are supported",
                        c as char
                    ))
                }
            };
            i += if op == "not" { 1 } else { 2 };
            out.push(Tok::Op(op));
        }
    }
    Ok(out)
}

fn lex_string(s: &str, start: usize) -> Result<(String, usize), String> {
    let b = s.as_bytes();
    let q = *b.get(start).ok_or("unexpected end")?;
    if q != b'"' && q != b'\'' {
        return Err(format!("expected a quoted string at byte {start}"));
    }
    let mut out = String::new();
    let mut chars = s[start + 1..].char_indices();
    while let Some((j, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, e)) => out.push(e),
                None => break,
            },
            c if c as u32 == q as u32 => return Ok((out, start + 1 + j + 1)),
            c => out.push(c),
        }
    }
    Err("unterminated string".into())
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(i)) if i == w)
            || matches!(self.peek(), Some(Tok::Op(o)) if *o == w)
    }
    fn or(&mut self) -> Result<Expr, String> {
        let mut l = self.and()?;
        while self.is_word("or") {
            self.pos += 1;
            l = Expr::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut l = self.unary()?;
        while self.is_word("and") {
            self.pos += 1;
            l = Expr::And(Box::new(l), Box::new(self.unary()?));
        }
        Ok(l)
    }
    fn unary(&mut self) -> Result<Expr, String> {
        if self.is_word("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.cmp()
    }
    fn cmp(&mut self) -> Result<Expr, String> {
        let l = self.atom()?;
        match self.peek() {
            Some(Tok::Op("==")) => {
                self.pos += 1;
                Ok(Expr::Eq(Box::new(l), Box::new(self.atom()?)))
            }
            Some(Tok::Op("!=")) => {
                self.pos += 1;
                Ok(Expr::Ne(Box::new(l), Box::new(self.atom()?)))
            }
            Some(Tok::Ident(w)) if w == "matches" => {
                self.pos += 1;
                match self.next() {
                    Some(Tok::Str(re)) => {
                        let re = vigil_core::config::re2_regex(&re)
                            .map_err(|e| format!("bad regex {re:?}: {e}"))?;
                        Ok(Expr::Matches(Box::new(l), re))
                    }
                    _ => Err("matches takes a quoted regex".into()),
                }
            }
            Some(Tok::Ident(w)) if w == "contains" => {
                self.pos += 1;
                Ok(Expr::Contains(Box::new(l), Box::new(self.atom()?)))
            }
            _ => Ok(l),
        }
    }
    fn atom(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Tok::LParen) => {
                let e = self.or()?;
                match self.next() {
                    Some(Tok::RParen) => Ok(e),
                    _ => Err("missing )".into()),
                }
            }
            Some(Tok::Str(s)) => Ok(Expr::Str(s)),
            Some(Tok::Num(n)) => Ok(Expr::Num(n)),
            Some(Tok::Ident(w)) => match w.as_str() {
                "true" => Ok(Expr::Bool(true)),
                "false" => Ok(Expr::Bool(false)),
                "nil" => Ok(Expr::Nil),
                _ => Field::parse(&w).map(Expr::Field).map_err(|_| {
                    format!("unsupported {w:?}: only body, attributes, resource paths, literals, ==, !=, matches, contains, and, or, not are supported")
                }),
            },
            Some(t) => Err(format!("unexpected {t:?}")),
            None => Err("unexpected end of expression".into()),
        }
    }
}

impl Expr {
    /// Parses an expression, refusing anything outside the subset with a message naming it.
    pub fn parse(s: &str) -> Result<Expr, String> {
        let mut p = Parser {
            toks: lex(s)?,
            pos: 0,
        };
        let e = p.or()?;
        if p.pos < p.toks.len() {
            return Err(format!("unsupported trailing {:?}", p.toks[p.pos]));
        }
        Ok(e)
    }

    /// Whether the entry satisfies the expression.
    pub fn matches(&self, e: &Entry) -> bool {
        matches!(self.eval(e), Val::Bool(true))
    }

    fn eval<'a>(&'a self, e: &'a Entry) -> Val<'a> {
        match self {
            Expr::Field(f) => match f.get(e) {
                Some(Value::StringValue(s)) => Val::Str(s),
                Some(Value::IntValue(i)) => Val::Num(*i as f64),
                Some(Value::DoubleValue(d)) => Val::Num(*d),
                Some(Value::BoolValue(b)) => Val::Bool(*b),
                Some(_) => Val::Other,
                None => Val::Nil,
            },
            Expr::Str(s) => Val::Str(s),
            Expr::Num(n) => Val::Num(*n),
            Expr::Bool(b) => Val::Bool(*b),
            Expr::Nil => Val::Nil,
            Expr::Eq(a, b) => Val::Bool(a.eval(e) == b.eval(e)),
            Expr::Ne(a, b) => Val::Bool(a.eval(e) != b.eval(e)),
            Expr::Matches(a, re) => Val::Bool(match a.eval(e) {
                Val::Str(s) => re.is_match(s),
                _ => false,
            }),
            Expr::Contains(a, b) => Val::Bool(match (a.eval(e), b.eval(e)) {
                (Val::Str(x), Val::Str(y)) => x.contains(y),
                _ => false,
            }),
            Expr::And(a, b) => Val::Bool(a.matches(e) && b.matches(e)),
            Expr::Or(a, b) => Val::Bool(a.matches(e) || b.matches(e)),
            Expr::Not(a) => Val::Bool(!a.matches(e)),
        }
    }
}

#[derive(Debug, PartialEq)]
enum Val<'a> {
    Str(&'a str),
    Num(f64),
    Bool(bool),
    Nil,
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::attrs::kv_str;

    #[test]
    fn routes_on_attributes_and_body() {
        let mut e = Entry::text("GET /health".into(), 0);
        e.attributes.push(kv_str("log.iostream", "stderr"));
        let x = Expr::parse(r#"attributes["log.iostream"] == "stderr" and body matches "^GET""#)
            .unwrap();
        assert!(x.matches(&e));
        let y = Expr::parse(r#"not (attributes.missing != nil) || body contains "POST""#).unwrap();
        assert!(y.matches(&e));
        assert!(!Expr::parse(r#"body == 'x'"#).unwrap().matches(&e));
        let err = Expr::parse("len(body) == 3").unwrap_err();
        assert!(err.contains("len"), "{err}");
    }
}
