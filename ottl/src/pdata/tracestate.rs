//! W3C `tracestate` entries for `span.trace_state["key"]`, and span kind names for
//! `span.kind.string` / `span.kind.deprecated_string`, as otelcol reads and writes them (its
//! OpenTelemetry Go `trace.TraceState`). Hand-written: a few lines of the W3C grammar.

/// Span kinds by number: pdata's name and the proto's name.
pub(crate) const KINDS: [(&str, &str); 6] = [
    ("Unspecified", "SPAN_KIND_UNSPECIFIED"),
    ("Internal", "SPAN_KIND_INTERNAL"),
    ("Server", "SPAN_KIND_SERVER"),
    ("Client", "SPAN_KIND_CLIENT"),
    ("Producer", "SPAN_KIND_PRODUCER"),
    ("Consumer", "SPAN_KIND_CONSUMER"),
];

/// The most list members W3C allows; an insert beyond it drops the last (oldest) one.
const MAX_MEMBERS: usize = 32;

fn key_ok(k: &str) -> bool {
    let part = |s: &str, first_digit: bool, max: usize| {
        let mut cs = s.chars();
        let Some(c0) = cs.next() else { return false };
        (c0.is_ascii_lowercase() || first_digit && c0.is_ascii_digit())
            && s.len() <= max
            && cs.all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '*' | '/')
            })
    };
    match k.split_once('@') {
        None => part(k, false, 256),
        Some((tenant, system)) => part(tenant, true, 241) && part(system, false, 14),
    }
}

fn value_ok(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 256
        && !v.ends_with(' ')
        && v.bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
}

/// The members of a tracestate, or `None` when it is not valid (then otelcol reads nothing).
fn parse(ts: &str) -> Option<Vec<(&str, &str)>> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for m in ts.split(',') {
        let m = m.trim_matches([' ', '\t']);
        if m.is_empty() {
            continue;
        }
        let (k, v) = m.split_once('=')?;
        if !key_ok(k) || !value_ok(v) || out.iter().any(|(x, _)| *x == k) {
            return None;
        }
        out.push((k, v));
    }
    (out.len() <= MAX_MEMBERS).then_some(out)
}

/// A key's value: `""` when absent, `None` when the tracestate is not valid.
pub(crate) fn get<'a>(ts: &'a str, key: &str) -> Option<&'a str> {
    let members = parse(ts)?;
    Some(members.iter().find(|(k, _)| *k == key).map_or("", |m| m.1))
}

/// The tracestate with `key=value` first (any old entry for the key removed); `None` (leave it
/// as it is) when the tracestate, key or value is not valid, as otelcol does.
pub(crate) fn insert(ts: &str, key: &str, value: &str) -> Option<String> {
    let members = parse(ts)?;
    if !key_ok(key) || !value_ok(value) {
        return None;
    }
    let mut out = vec![format!("{key}={value}")];
    out.extend(
        members
            .iter()
            .filter(|(k, _)| *k != key)
            .map(|(k, v)| format!("{k}={v}")),
    );
    out.truncate(MAX_MEMBERS);
    Some(out.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_inserts_members() {
        assert_eq!(get("a=1,b@t=2", "b@t"), Some("2"));
        assert_eq!(get("a=1", "z"), Some(""));
        assert_eq!(get("A=1", "a"), None);
        assert_eq!(insert("a=1,b=2", "b", "3").as_deref(), Some("b=3,a=1"));
        assert_eq!(insert("", "svc", "x").as_deref(), Some("svc=x"));
        assert_eq!(insert("a=1", "Bad", "x"), None);
        assert_eq!(insert("a=1", "k", "x,y"), None);
    }
}
