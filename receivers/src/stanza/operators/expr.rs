//! stanza's expression language for `router` routes and operators' `if` (a subset of expr-lang):
//! field paths (`body`, `body.a`, `attributes["k"]`, `resource.k`), string/number/bool literals and
//! `nil`, comparisons, `matches`, `contains`, `and`/`&&`, `or`/`||`, `not`/`!` and parentheses. The
//! lexer, parser and evaluator are the shared OTTL engine's ([`vigil_ottl`], its expr dialect); this
//! module only shows it an [`Entry`].

use crate::stanza::entry::Entry;
use vigil_core::otlp::common::v1::any_value::Value as Any;
use vigil_ottl::{get_in_kvs, Condition, Context, Field, Path, Target, Value};

/// A parsed expression.
#[derive(Debug, Clone)]
pub struct Expr(Condition);

impl Expr {
    /// Parses an expression, refusing anything outside the subset with a message naming it.
    pub fn parse(s: &str) -> Result<Expr, String> {
        vigil_ottl::parse_expr(s).map(Expr)
    }

    /// The expression's value on the entry; an error when it cannot be evaluated or is not a bool.
    pub fn eval(&self, e: &Entry) -> Result<bool, String> {
        self.0.eval(&EntryTarget(e))
    }

    /// Whether the entry satisfies the expression; anything but `true` (an error included) does not.
    pub fn matches(&self, e: &Entry) -> bool {
        self.0.matches(&EntryTarget(e))
    }
}

struct EntryTarget<'a>(&'a Entry);

impl Target for EntryTarget<'_> {
    fn get(&self, p: &Path) -> Result<Value, String> {
        let e = self.0;
        match (p.level, p.field) {
            (Context::Log, Field::Body) => match (&e.body, p.keys.as_slice()) {
                (b, []) => Ok(Value::from_inner(b)),
                (Any::KvlistValue(l), keys) => get_in_kvs(&l.values, keys),
                _ => Ok(Value::Nil),
            },
            (Context::Log, Field::Attributes) => get_in_kvs(&e.attributes, &p.keys),
            (Context::Resource, Field::Attributes) => get_in_kvs(&e.resource, &p.keys),
            _ => Err(format!("{} is not a field of a log entry", p.text)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::attrs::{kv_i64, kv_str};

    #[test]
    fn routes_on_attributes_and_body() {
        let mut e = Entry::text("GET /health".into(), 0);
        e.attributes.push(kv_str("log.iostream", "stderr"));
        e.attributes.push(kv_i64("status", 503));
        e.resource.push(kv_str("host", "a"));
        let x = Expr::parse(r#"attributes["log.iostream"] == "stderr" and body matches "^GET""#)
            .unwrap();
        assert!(x.matches(&e));
        let y = Expr::parse(r#"not (attributes.missing != nil) || body contains "POST""#).unwrap();
        assert!(y.matches(&e));
        assert!(!Expr::parse(r#"body == 'x'"#).unwrap().matches(&e));
        assert!(
            Expr::parse(r#"attributes.status >= 500 && resource.host == "a""#)
                .unwrap()
                .matches(&e)
        );
        assert!(Expr::parse("attributes.status == 503.0")
            .unwrap()
            .matches(&e));
        // A map body is reached by its keys.
        let mut m = Entry::text(String::new(), 0);
        m.body = Any::KvlistValue(Default::default());
        crate::stanza::entry::Field::parse("body.level")
            .unwrap()
            .set(&mut m, Any::StringValue("warn".into()));
        assert!(Expr::parse(r#"body.level == "warn""#).unwrap().matches(&m));
    }

    #[test]
    fn unsupported_parts_are_named() {
        let err = Expr::parse("len(body) == 3").unwrap_err();
        assert!(err.contains("len"), "{err}");
        let err = Expr::parse("timestamp == nil").unwrap_err();
        assert!(err.contains("timestamp"), "{err}");
        let err = Expr::parse("body matches \"(\"").unwrap_err();
        assert!(err.contains("regex"), "{err}");
    }
}
