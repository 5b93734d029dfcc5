//! `ExtractGrokPatterns`: grok patterns (`%{SYNTAX}`, `%{SYNTAX:ID}`, `%{SYNTAX:ID:TYPE}`) over the
//! regex crate, as otelcol's converter runs elastic/go-grok over Go's RE2. A literal pattern is
//! compiled once, when the statement is loaded; one read from telemetry is compiled on each call.
//! The pattern set is the grok crate's (logstash-patterns-core's legacy set, which go-grok's default
//! set was taken from) plus the statement's `patternDefinitions`.

use super::{arg, lit_str, want_str, Func};
use crate::{kv, Call, Expr, Target, Value};
use std::sync::Arc;

/// A statement's grok: the pattern set with its definitions, and the pattern when it is a literal.
pub struct Compiled {
    grok: grok::Grok,
    named_only: bool,
    pattern: Option<grok::Pattern>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("named_only", &self.named_only)
            .field("literal", &self.pattern.is_some())
            .finish()
    }
}

const NAME: &str = "ExtractGrokPatterns";

/// The default patterns written with look-around or atomic groups, which RE2 (and the regex
/// crate) lack, rewritten without them as go-grok rewrites its set: hand-written, since the grok
/// crate ships logstash's PCRE forms. `TIME`'s seconds are optional, as in go-grok.
const RE2_PATTERNS: &[(&str, &str)] = &[
    ("BASE10NUM", r"[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)"),
    ("BASE16NUM", r"[+-]?(?:0x)?[0-9A-Fa-f]+"),
    (
        "BASE16FLOAT",
        r"[+-]?(?:0x)?(?:[0-9A-Fa-f]+(?:\.[0-9A-Fa-f]*)?|\.[0-9A-Fa-f]+)",
    ),
    (
        "QUOTEDSTRING",
        r#""(?:\\.|[^\\"])*"|'(?:\\.|[^\\'])*'|`(?:\\.|[^\\`])*`"#,
    ),
    (
        "IPV4",
        r"(?:(?:25[0-5]|2[0-4][0-9]|[0-1]?[0-9]{1,2})[.]){3}(?:25[0-5]|2[0-4][0-9]|[0-1]?[0-9]{1,2})",
    ),
    ("WINPATH", r"(?:[A-Za-z]+:|\\)(?:\\[^\\?*]*)+"),
    ("YEAR", r"(?:\d\d){1,2}"),
    ("TIME", r"%{HOUR}:%{MINUTE}(?::%{SECOND})?"),
];

fn compile(g: &grok::Grok, pattern: &str, named_only: bool) -> Result<grok::Pattern, String> {
    let p = g
        .compile(pattern, named_only)
        .map_err(|e| format!("{NAME}: invalid pattern {pattern:?}: {e}"))?;
    if named_only && p.capture_names().next().is_none() {
        return Err(format!(
            "{NAME}: at least 1 named capture group must be supplied in the pattern {pattern:?} when namedCapturesOnly is true"
        ));
    }
    Ok(p)
}

/// Checks the arguments when the statement is loaded: `namedCapturesOnly` a bool literal,
/// `patternDefinitions` a list of `NAME=definition` literals, and a literal pattern compiled.
pub(super) fn prepare(args: &[Expr]) -> Result<Arc<Compiled>, String> {
    let named_only = match args.get(2) {
        None | Some(Expr::Lit(Value::Nil)) => false,
        Some(Expr::Lit(Value::Bool(b))) => *b,
        Some(_) => {
            return Err(format!(
                "{NAME}: argument 3 (namedCapturesOnly) must be true or false"
            ))
        }
    };
    let mut g = grok::Grok::with_default_patterns();
    for (id, body) in RE2_PATTERNS {
        g.add_pattern(*id, *body);
    }
    let defs: Vec<String> = match args.get(3) {
        None | Some(Expr::Lit(Value::Nil)) => Vec::new(),
        Some(Expr::ListLit(items)) => items
            .iter()
            .map(|e| match e {
                Expr::Lit(Value::Str(d)) => Some(d.clone()),
                _ => None,
            })
            .collect::<Option<_>>()
            .ok_or_else(|| {
                format!("{NAME}: argument 4 (patternDefinitions) must be a list of string literals")
            })?,
        Some(Expr::Lit(Value::List(items))) => items
            .iter()
            .map(|a| match Value::from_any(Some(a)) {
                Value::Str(d) => Some(d),
                _ => None,
            })
            .collect::<Option<_>>()
            .ok_or_else(|| {
                format!("{NAME}: argument 4 (patternDefinitions) must be a list of string literals")
            })?,
        Some(_) => {
            return Err(format!(
            "{NAME}: argument 4 (patternDefinitions) must be a list of \"NAME=definition\" strings"
        ))
        }
    };
    for (i, def) in defs.iter().enumerate() {
        let Some((id, body)) = def.split_once('=') else {
            let shown: String = if def.chars().count() > 20 {
                format!("{}...", def.chars().take(17).collect::<String>())
            } else {
                def.clone()
            };
            return Err(format!(
                "{NAME}: pattern {shown:?} in patternDefinitions at index {i} has incorrect format, expecting PATTERNNAME=pattern definition"
            ));
        };
        if id.contains(':') {
            return Err(format!(
                "{NAME}: pattern ID {id:?} in patternDefinitions should not contain ':'"
            ));
        }
        g.add_pattern(id.to_string(), body.to_string());
    }
    let pattern = match args.get(1) {
        Some(Expr::Lit(Value::Str(_))) => {
            Some(compile(&g, lit_str(NAME, args, 1, "pattern")?, named_only)?)
        }
        _ => None,
    };
    Ok(Arc::new(Compiled {
        grok: g,
        named_only,
        pattern,
    }))
}

/// A capture converted to the type its `%{SYNTAX:ID:TYPE}` names, as go-grok's typed parse does.
fn typed(key: &str, kind: Option<&str>, s: &str) -> Result<Value, String> {
    let bad = |what: &str| format!("{NAME}: {key}={s:?} is not {what}");
    Ok(match kind {
        Some("int" | "long") => Value::Int(s.parse().map_err(|_| bad("an integer"))?),
        Some("float" | "double") => Value::Double(s.parse().map_err(|_| bad("a number"))?),
        // Go's strconv.ParseBool.
        Some("bool" | "boolean") => Value::Bool(match s {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
            "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
            _ => return Err(bad("a boolean")),
        }),
        _ => Value::Str(s.to_string()),
    })
}

pub(super) fn call(c: &Call, t: &dyn Target) -> Option<Result<Value, String>> {
    if c.func != Func::ExtractGrokPatterns {
        return None;
    }
    Some((|| {
        let compiled = c
            .grok
            .as_ref()
            .ok_or("internal: ExtractGrokPatterns was not prepared")?;
        let s = want_str(c.func, arg(c, 0, t)?)?;
        let dynamic;
        let pattern = match &compiled.pattern {
            Some(p) => p,
            None => {
                let text = want_str(c.func, arg(c, 1, t)?)?;
                dynamic = compile(&compiled.grok, &text, compiled.named_only)?;
                &dynamic
            }
        };
        let mut out = Vec::new();
        if let Some(m) = pattern.match_against(&s) {
            for (k, v) in m.iter() {
                out.push(kv(k, typed(k, pattern.get_extract(k), v)?));
            }
        }
        Ok(Value::Map(out))
    })())
}
