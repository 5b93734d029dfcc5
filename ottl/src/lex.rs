//! The lexer both dialects share. OTTL and stanza's expr differ in a few tokens only: expr also takes
//! single-quoted strings and `&&`, `||`, `!`; OTTL also takes `0x…` bytes literals.

use crate::Dialect;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
    /// `==`, `!=`, `<`, `<=`, `>`, `>=`, `+`, `-`, `*`, `/`, `=`, and expr's `and`/`or`/`not` spelled
    /// `&&`/`||`/`!`.
    Op(&'static str),
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Dot,
    Comma,
    Colon,
}

impl std::fmt::Display for Tok {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "{s}"),
            Tok::Str(s) => write!(f, "{s:?}"),
            Tok::Int(i) => write!(f, "{i}"),
            Tok::Float(x) => write!(f, "{x}"),
            Tok::Bytes(b) => write!(f, "0x{}", hex::encode(b)),
            Tok::Op(o) => write!(f, "{o}"),
            Tok::LParen => f.write_str("("),
            Tok::RParen => f.write_str(")"),
            Tok::LBracket => f.write_str("["),
            Tok::RBracket => f.write_str("]"),
            Tok::LBrace => f.write_str("{"),
            Tok::RBrace => f.write_str("}"),
            Tok::Dot => f.write_str("."),
            Tok::Comma => f.write_str(","),
            Tok::Colon => f.write_str(":"),
        }
    }
}

pub(crate) fn lex(s: &str, dialect: Dialect) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        let single = |t: Tok, out: &mut Vec<Tok>| out.push(t);
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => single(Tok::LParen, &mut out),
            b')' => single(Tok::RParen, &mut out),
            b'[' => single(Tok::LBracket, &mut out),
            b']' => single(Tok::RBracket, &mut out),
            b'{' => single(Tok::LBrace, &mut out),
            b'}' => single(Tok::RBrace, &mut out),
            b'.' => single(Tok::Dot, &mut out),
            // expr's optional chaining `a?.b`: a missing field already reads as nil, so it is `.`.
            b'?' if dialect == Dialect::Expr && b.get(i + 1) == Some(&b'.') => {
                out.push(Tok::Dot);
                i += 2;
                continue;
            }
            b',' => single(Tok::Comma, &mut out),
            b':' => single(Tok::Colon, &mut out),
            b'"' => {
                let (text, next) = string(s, i)?;
                out.push(Tok::Str(text));
                i = next;
                continue;
            }
            b'\'' if dialect == Dialect::Expr => {
                let (text, next) = string(s, i)?;
                out.push(Tok::Str(text));
                i = next;
                continue;
            }
            b'0' if dialect == Dialect::Ottl && matches!(b.get(i + 1), Some(b'x' | b'X')) => {
                let start = i + 2;
                let mut j = start;
                while j < b.len() && b[j].is_ascii_hexdigit() {
                    j += 1;
                }
                let bytes = hex::decode(&s[start..j])
                    .map_err(|_| format!("invalid bytes literal {:?}", &s[i..j]))?;
                out.push(Tok::Bytes(bytes));
                i = j;
                continue;
            }
            b'0'..=b'9' => {
                let start = i;
                let mut float = false;
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                    float |= b[i] == b'.';
                    i += 1;
                }
                let t = &s[start..i];
                out.push(if float {
                    Tok::Float(t.parse().map_err(|_| format!("invalid number {t:?}"))?)
                } else {
                    Tok::Int(
                        t.parse()
                            .map_err(|_| format!("invalid or too large integer {t:?}"))?,
                    )
                });
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push(Tok::Ident(s[start..i].to_string()));
                continue;
            }
            _ => {
                let two = s.get(i..i + 2).unwrap_or("");
                let op: &'static str = match (two, dialect) {
                    ("==", _) => "==",
                    ("!=", _) => "!=",
                    ("<=", _) => "<=",
                    (">=", _) => ">=",
                    ("&&", Dialect::Expr) => "and",
                    ("||", Dialect::Expr) => "or",
                    _ => match (c, dialect) {
                        (b'<', _) => "<",
                        (b'>', _) => ">",
                        (b'+', _) => "+",
                        (b'-', _) => "-",
                        (b'*', _) => "*",
                        (b'/', _) => "/",
                        (b'=', Dialect::Ottl) => "=",
                        (b'!', Dialect::Expr) => "not",
                        _ => {
                            return Err(format!(
                                "unexpected character {:?} at byte {i}",
                                s[i..].chars().next().unwrap_or('?')
                            ))
                        }
                    },
                };
                i += match op {
                    "and" | "or" | "==" | "!=" | "<=" | ">=" => 2,
                    _ => 1,
                };
                out.push(Tok::Op(op));
                continue;
            }
        }
        i += 1;
    }
    Ok(out)
}

/// A quoted string starting at `start` (its quote character ends it); returns the text and the byte
/// after the closing quote.
fn string(s: &str, start: usize) -> Result<(String, usize), String> {
    let q = s[start..].chars().next().unwrap_or('"');
    let mut out = String::new();
    let mut chars = s[start + 1..].char_indices();
    while let Some((j, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, e @ ('"' | '\'' | '\\'))) => out.push(e),
                // Any other escape is kept as written, so a regex's `\d` survives a single escape.
                Some((_, e)) => {
                    out.push('\\');
                    out.push(e)
                }
                None => break,
            },
            c if c == q => return Ok((out, start + 1 + j + 1)),
            c => out.push(c),
        }
    }
    Err(format!("unterminated string starting at byte {start}"))
}
