//! redaction's `url_sanitizer` and `db_sanitizer`: URL paths turned into route templates, and
//! database statements with their literals replaced by `?`, for the attributes, log bodies and span
//! names otelcol's redaction processor applies them to.
//!
//! otelcol uses grafana/clusterurl's word classifier and DataDog's obfuscators (go-sqllexer in
//! `obfuscate_only` mode, redis `remove_all_args`, memcached `keep_command`, JSON for MongoDB,
//! Elasticsearch and OpenSearch). Neither is a Rust library, so these are vigil's own, written to
//! the same rules, and their output can differ in detail:
//! - URL: each path segment that is not a word (it has a digit, is a hex string of 8 or more, or
//!   has no vowel or a run of 5 consonants) becomes `*`; `v1`-style API versions stay. The query
//!   string and fragment are dropped; a scheme and host are kept.
//! - SQL: string, number, hex, boolean and NULL literals, positional parameters (`$1`) and
//!   `$$`-quoted strings become `?`; a `$func$` body is obfuscated as SQL; digits inside
//!   identifiers become `?`; everything else, spacing and comments included, is kept.
//! - Redis / Valkey: each command keeps its name, and its arguments become one `?`.
//! - Memcached: the command line is kept, the value after it dropped.
//! - MongoDB / Elasticsearch / OpenSearch: every JSON value becomes `"?"`, keys kept; text that is
//!   not JSON is left as it is.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use vigil_core::otlp::common::v1::{any_value::Value, KeyValue};
use vigil_core::otlp::trace::v1::{span::SpanKind, Span};

/// `url_sanitizer`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UrlConfig {
    pub enabled: bool,
    /// The attribute keys whose values are URLs to sanitize.
    pub attributes: Vec<String>,
    /// HTTP client and server span names too (default true).
    pub sanitize_span_name: Option<bool>,
    /// Every string in log bodies too (default true).
    pub sanitize_log_body: Option<bool>,
}

/// One database kind of `db_sanitizer`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DbKind {
    pub enabled: bool,
    /// The attribute keys that hold this kind's statements.
    pub attributes: Vec<String>,
}

/// `db_sanitizer`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DbConfig {
    pub sql: DbKind,
    pub redis: DbKind,
    pub valkey: DbKind,
    pub memcached: DbKind,
    pub mongo: DbKind,
    pub opensearch: DbKind,
    pub es: DbKind,
    /// Database span names too (default true).
    pub sanitize_span_name: Option<bool>,
    /// An attribute of a map without `db.system.name` / `db.system` is obfuscated by every kind that
    /// lists its key, in turn; otherwise it is left alone.
    pub allow_fallback_without_system: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Lang {
    Sql,
    Redis,
    Memcached,
    Json,
}

struct Kind {
    lang: Lang,
    systems: &'static [&'static str],
    attributes: Vec<String>,
}

/// The sanitizers a redaction processor runs; empty when neither section enables anything.
pub struct Sanitizers {
    url: Option<UrlConfig>,
    db: Vec<Kind>,
    db_span_names: bool,
    db_fallback: bool,
}

impl Sanitizers {
    pub fn new(url: Option<&UrlConfig>, db: Option<&DbConfig>) -> Sanitizers {
        let mut kinds = Vec::new();
        if let Some(d) = db {
            for (k, lang, systems) in [
                (
                    &d.sql,
                    Lang::Sql,
                    &["other_sql", "mysql", "postgresql", "mariadb", "sqlite"][..],
                ),
                (&d.redis, Lang::Redis, &["redis"][..]),
                (&d.valkey, Lang::Redis, &["valkey"][..]),
                (&d.memcached, Lang::Memcached, &["memcached"][..]),
                (&d.mongo, Lang::Json, &["mongodb"][..]),
                (&d.opensearch, Lang::Json, &["opensearch"][..]),
                (&d.es, Lang::Json, &["elasticsearch"][..]),
            ] {
                if k.enabled {
                    kinds.push(Kind {
                        lang,
                        systems,
                        attributes: k.attributes.clone(),
                    });
                }
            }
        }
        Sanitizers {
            url: url.filter(|u| u.enabled).cloned(),
            db: kinds,
            db_span_names: db.and_then(|d| d.sanitize_span_name).unwrap_or(true),
            db_fallback: db.is_some_and(|d| d.allow_fallback_without_system),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.url.is_none() && self.db.is_empty()
    }

    /// An attribute's value, after `blocked_values`: the URL sanitizer if it lists the key, then
    /// the database kind of the map's `db.system` that lists the key.
    pub fn attribute(&self, key: &str, value: String, system: Option<&str>) -> String {
        let mut v = value;
        if let Some(u) = &self.url {
            if !v.is_empty() && u.attributes.iter().any(|a| a == key) {
                v = cluster_url(&v);
            }
        }
        let listed = |k: &&Kind| k.attributes.iter().any(|a| a == key);
        match system {
            Some(s) => {
                if let Some(k) = self
                    .db
                    .iter()
                    .filter(listed)
                    .find(|k| k.systems.contains(&s))
                {
                    v = obfuscate(k.lang, &v);
                }
            }
            None if self.db_fallback => {
                for k in self.db.iter().filter(listed) {
                    v = obfuscate(k.lang, &v);
                }
            }
            None => {}
        }
        v
    }

    /// A string in a log body: every sanitizer in turn, as otelcol applies them.
    pub fn body(&self, value: String) -> String {
        let mut v = value;
        if let Some(u) = &self.url {
            if u.sanitize_log_body.unwrap_or(true) {
                v = cluster_url(&v);
            }
        }
        for k in &self.db {
            v = obfuscate(k.lang, &v);
        }
        v
    }

    /// A span's name: an HTTP client or server span's as a URL, else a database span's by its
    /// system's kind. Kept when the result would be empty or all `*`.
    pub fn span_name(&self, span: &mut Span) {
        let kind = span.kind;
        if let Some(u) = &self.url {
            let http = kind == SpanKind::Client as i32 || kind == SpanKind::Server as i32;
            if u.sanitize_span_name.unwrap_or(true)
                && http
                && (span.name.contains('/') || has_http_attributes(&span.attributes))
            {
                let s = cluster_url(&span.name);
                if s != span.name && !fully_redacted(&s) && !s.is_empty() {
                    span.name = s;
                    return;
                }
            }
        }
        let db_kind = kind == SpanKind::Client as i32
            || kind == SpanKind::Server as i32
            || kind == SpanKind::Internal as i32;
        if self.db_span_names && db_kind {
            if let Some(system) = db_system(&span.attributes) {
                if let Some(k) = self
                    .db
                    .iter()
                    .find(|k| k.systems.contains(&system.as_str()))
                {
                    let s = obfuscate(k.lang, &span.name);
                    if !s.is_empty() && s != "..." {
                        span.name = s;
                    }
                }
            }
        }
    }
}

/// `db.system.name`, else the older `db.system`, lowercased.
pub fn db_system(attrs: &[KeyValue]) -> Option<String> {
    ["db.system.name", "db.system"].iter().find_map(|k| {
        attrs.iter().find(|kv| kv.key == *k).and_then(|kv| {
            match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) if !s.is_empty() => Some(s.to_lowercase()),
                _ => None,
            }
        })
    })
}

fn has_http_attributes(attrs: &[KeyValue]) -> bool {
    const KEYS: &[&str] = &[
        "http.route",
        "http.request.method",
        "http.request.method_original",
        "http.response.status_code",
        "url.full",
        "http.scheme",
        "http.target",
        "http.method",
        "http.url",
    ];
    attrs.iter().any(|kv| KEYS.contains(&kv.key.as_str()))
}

fn fully_redacted(s: &str) -> bool {
    s.split('/').any(|x| x == "*") && s.split('/').all(|x| x.is_empty() || x == "*")
}

/// A URL or path with each segment that is not a word replaced by `*`.
pub fn cluster_url(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let (prefix, path) = match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            let host_end = rest.find('/').map_or(url.len(), |j| i + 3 + j);
            url.split_at(host_end)
        }
        None => ("", url),
    };
    let path: Vec<String> = path
        .split('/')
        .map(|seg| {
            if seg.is_empty() || is_word(seg) {
                seg.to_string()
            } else {
                "*".to_string()
            }
        })
        .collect();
    format!("{prefix}{}", path.join("/"))
}

/// Whether a path segment reads as a word (or words joined by `-`, `_`, `.`), not an identifier.
fn is_word(seg: &str) -> bool {
    let b = seg.as_bytes();
    // API versions: v1, v2beta1 are kept.
    if b.len() <= 8 && b.first() == Some(&b'v') && b.get(1).is_some_and(u8::is_ascii_digit) {
        return seg[1..].chars().all(|c| c.is_ascii_alphanumeric());
    }
    if seg.len() > 40 || seg.chars().any(|c| c.is_ascii_digit()) {
        return false;
    }
    if seg.len() >= 8 && seg.chars().all(|c| c.is_ascii_hexdigit()) {
        return false;
    }
    seg.split(['-', '_', '.', '~', ':', ' '])
        .filter(|w| !w.is_empty())
        .all(|w| {
            if !w.chars().all(|c| c.is_alphabetic()) {
                return false;
            }
            let lower = w.to_lowercase();
            let vowel = |c: char| "aeiouy".contains(c);
            if w.len() > 3 && !lower.chars().any(vowel) {
                return false;
            }
            let mut run = 0;
            for c in lower.chars() {
                run = if vowel(c) { 0 } else { run + 1 };
                if run >= 5 {
                    return false;
                }
            }
            true
        })
}

fn obfuscate(lang: Lang, s: &str) -> String {
    match lang {
        Lang::Sql => sql(s),
        Lang::Redis => redis(s),
        Lang::Memcached => memcached(s),
        Lang::Json => json(s),
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || c == '#' || c == '@'
}

/// SQL with its literals replaced by `?`, everything else kept (go-sqllexer's `obfuscate_only`).
pub fn sql(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        match ch {
            // Comments are kept as written.
            '-' if next == Some('-') => {
                let end = c[i..]
                    .iter()
                    .position(|&x| x == '\n')
                    .map_or(c.len(), |p| i + p);
                out.extend(&c[i..end]);
                i = end;
            }
            '/' if next == Some('*') => {
                let end = (i + 2..c.len().saturating_sub(1))
                    .find(|&j| c[j] == '*' && c[j + 1] == '/')
                    .map_or(c.len(), |j| j + 2);
                out.extend(&c[i..end]);
                i = end;
            }
            '\'' => {
                // A string literal; '' and \' do not end it.
                let mut j = i + 1;
                while j < c.len() {
                    if c[j] == '\\' {
                        j += 2;
                        continue;
                    }
                    if c[j] == '\'' {
                        if c.get(j + 1) == Some(&'\'') {
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    j += 1;
                }
                out.push('?');
                i = (j + 1).min(c.len());
            }
            '"' | '`' | '[' => {
                // Quoted identifiers are kept.
                let close = if ch == '[' { ']' } else { ch };
                let end = c[i + 1..]
                    .iter()
                    .position(|&x| x == close)
                    .map_or(c.len(), |p| i + 2 + p);
                out.extend(&c[i..end]);
                i = end;
            }
            '$' if next.is_some_and(|n| n.is_ascii_digit()) => {
                // A positional parameter.
                let mut j = i + 1;
                while j < c.len() && c[j].is_ascii_digit() {
                    j += 1;
                }
                out.push('?');
                i = j;
            }
            '$' if next.is_some_and(|n| n == '$' || n.is_alphabetic() || n == '_') => {
                // $$…$$ or $tag$…$tag$; a $func$ body is SQL.
                let tag_end = c[i + 1..].iter().position(|&x| x == '$').map(|p| i + 1 + p);
                let Some(tag_end) = tag_end.filter(|&e| c[i + 1..e].iter().all(|&x| is_ident(x)))
                else {
                    out.push(ch);
                    i += 1;
                    continue;
                };
                let tag: String = c[i..=tag_end].iter().collect();
                let body_start = tag_end + 1;
                let rest: String = c[body_start..].iter().collect();
                match rest.find(&tag) {
                    Some(p) => {
                        let body = &rest[..p];
                        if tag == "$func$" {
                            out.push_str(&tag);
                            out.push_str(&sql(body));
                            out.push_str(&tag);
                        } else {
                            out.push('?');
                        }
                        i = body_start + body.chars().count() + tag.chars().count();
                    }
                    None => {
                        out.push('?');
                        i = c.len();
                    }
                }
            }
            c0 if c0.is_ascii_digit()
                || (c0 == '.' && next.is_some_and(|n| n.is_ascii_digit()))
                || ((c0 == '-' || c0 == '+')
                    && next.is_some_and(|n| n.is_ascii_digit())
                    && prev_allows_sign(&out)) =>
            {
                // A number: digits, a fraction, an exponent, or 0x… hex.
                let mut j = i + 1;
                if c0 == '0' && matches!(next, Some('x' | 'X')) {
                    j = i + 2;
                    while j < c.len() && c[j].is_ascii_hexdigit() {
                        j += 1;
                    }
                } else {
                    while j < c.len()
                        && (c[j].is_ascii_digit()
                            || c[j] == '.'
                            || ((c[j] == 'e' || c[j] == 'E')
                                && c.get(j + 1)
                                    .is_some_and(|n| n.is_ascii_digit() || *n == '-' || *n == '+'))
                            || ((c[j] == '-' || c[j] == '+') && matches!(c[j - 1], 'e' | 'E')))
                    {
                        j += 1;
                    }
                }
                out.push('?');
                i = j;
            }
            c0 if is_ident(c0) => {
                let mut j = i;
                while j < c.len() && is_ident(c[j]) {
                    j += 1;
                }
                let word: String = c[i..j].iter().collect();
                let upper = word.to_ascii_uppercase();
                if matches!(upper.as_str(), "TRUE" | "FALSE" | "NULL") {
                    out.push('?');
                } else {
                    // Digits inside identifiers (`users_2024`) become `?`, one per run.
                    let mut last_digit = false;
                    for x in word.chars() {
                        if x.is_ascii_digit() {
                            if !last_digit {
                                out.push('?');
                            }
                            last_digit = true;
                        } else {
                            out.push(x);
                            last_digit = false;
                        }
                    }
                }
                i = j;
            }
            _ => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

/// Whether a `-`/`+` before a digit is a sign (after an operator or an opening) rather than a
/// subtraction.
fn prev_allows_sign(out: &str) -> bool {
    match out.trim_end().chars().last() {
        None => true,
        Some(c) => matches!(c, '(' | ',' | '=' | '<' | '>' | '*' | '/' | '+' | '-'),
    }
}

/// Redis or Valkey commands, one a line: the name kept, the arguments one `?`.
pub fn redis(s: &str) -> String {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.split_whitespace();
            let cmd = parts.next().unwrap_or_default();
            if parts.next().is_some() {
                format!("{cmd} ?")
            } else {
                cmd.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A memcached command: its first line, without the value after it.
pub fn memcached(s: &str) -> String {
    s.split("\r\n")
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// JSON (a query or a request body, several documents allowed, as a bulk body is) with every value
/// `"?"`; text that is not JSON is returned as it is.
pub fn json(s: &str) -> String {
    fn blank(v: &mut Json) {
        match v {
            Json::Object(m) => m.values_mut().for_each(blank),
            Json::Array(a) => a.iter_mut().for_each(blank),
            other => *other = Json::String("?".into()),
        }
    }
    let mut docs = Vec::new();
    for doc in serde_json::Deserializer::from_str(s).into_iter::<Json>() {
        match doc {
            Ok(mut v) if v.is_object() || v.is_array() => {
                blank(&mut v);
                docs.push(v.to_string());
            }
            _ => return s.to_string(),
        }
    }
    if docs.is_empty() {
        return s.to_string();
    }
    docs.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_literals_become_question_marks() {
        assert_eq!(
            sql("SELECT * FROM users WHERE id = 42 AND name = 'O''Brien' -- who\nLIMIT 10"),
            "SELECT * FROM users WHERE id = ? AND name = ? -- who\nLIMIT ?"
        );
        assert_eq!(
            sql("INSERT INTO t_2024 (a, \"b1\") VALUES (-1.5e3, 0xFF, TRUE, null, $1)"),
            "INSERT INTO t_? (a, \"b1\") VALUES (?, ?, ?, ?, ?)"
        );
        assert_eq!(sql("SELECT a-1 FROM t"), "SELECT a-? FROM t");
        assert_eq!(
            sql("SELECT $$secret$$, $func$SELECT 1$func$"),
            "SELECT ?, $func$SELECT ?$func$"
        );
        assert_eq!(sql("select 'unterminated"), "select ?");
    }

    #[test]
    fn redis_memcached_and_json() {
        assert_eq!(
            redis("SET user:1 secret\nGET user:1\nPING"),
            "SET ?\nGET ?\nPING"
        );
        assert_eq!(memcached("set key 0 60 5\r\nvalue\r\n"), "set key 0 60 5");
        let got: Json = serde_json::from_str(&json(
            r#"{"find": "users", "filter": {"age": {"$gt": 30}, "tags": ["a", 1]}}"#,
        ))
        .unwrap();
        assert_eq!(
            got,
            serde_json::json!({"find": "?", "filter": {"age": {"$gt": "?"}, "tags": ["?", "?"]}})
        );
        assert_eq!(
            json("{\"index\":{}}\n{\"user\":\"ann\"}"),
            "{\"index\":{}}\n{\"user\":\"?\"}"
        );
        assert_eq!(json("not json"), "not json");
    }

    #[test]
    fn urls_keep_words_and_star_identifiers() {
        assert_eq!(cluster_url("/users/123/profile"), "/users/*/profile");
        assert_eq!(
            cluster_url("/api/v1/orders/3f2a9c1e-8d4b-4c7a-9e2f-1a2b3c4d5e6f/items?x=1"),
            "/api/v1/orders/*/items"
        );
        assert_eq!(
            cluster_url("https://shop.example:8443/cart/deadbeefcafe/checkout"),
            "https://shop.example:8443/cart/*/checkout"
        );
        assert_eq!(
            cluster_url("/static/main-page.css"),
            "/static/main-page.css"
        );
        assert_eq!(cluster_url("/u/xkcdqzpw"), "/u/*");
        assert!(fully_redacted("/*/*"));
        assert!(!fully_redacted("/users/*"));
    }
}
