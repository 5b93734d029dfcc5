//! The text formats behind stanza's `key_value_parser`, `csv_parser`, `uri_parser`,
//! `json_array_parser`, `syslog_parser` and the `unquote` transformer, as otelcol-contrib reads them
//! (its `parseutils` package, Go's `encoding/csv`, `net/url` and `strconv.Unquote`). Hand-written
//! rather than taken from the `csv` and `url` crates: those follow RFC 4180 and the WHATWG URL
//! standard, and a published config expects Go's answers (lazy quotes, relative request URIs, the
//! scheme lowercased but the path left as written).

use crate::syslog::parse::Protocol;
use chrono_tz::Tz;
use vigil_core::otlp::common::v1::any_value::Value;
use vigil_core::otlp::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};

fn kv(key: impl Into<String>, v: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

/// Puts `v` under `key`, replacing an earlier value of the same key (Go's maps keep the last).
fn put(list: &mut Vec<KeyValue>, key: String, v: Value) {
    match list.iter_mut().find(|x| x.key == key) {
        Some(x) => x.value = Some(AnyValue { value: Some(v) }),
        None => list.push(kv(key, v)),
    }
}

/// parseutils.SplitString: splits on `delim` outside single or double quotes, drops the quotes,
/// lets a backslash escape the quote character, and skips empty pieces.
pub fn split_quoted(input: &str, delim: &str) -> Result<Vec<String>, String> {
    let b = input.as_bytes();
    let d = delim.as_bytes();
    let mut out = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    let mut i = 0;
    while i < b.len() {
        // As in Go, the delimiter is looked for before the escape state is.
        if quote.is_none() && !d.is_empty() && b[i..].starts_with(d) {
            if !cur.is_empty() {
                out.push(String::from_utf8_lossy(&cur).into_owned());
                cur.clear();
            }
            i += d.len();
            continue;
        }
        let c = b[i];
        i += 1;
        if !escaped {
            match quote {
                None if c == b'"' || c == b'\'' => {
                    quote = Some(c);
                    continue;
                }
                Some(q) if c == q => {
                    quote = None;
                    continue;
                }
                _ => {}
            }
            if c == b'\\' {
                escaped = true;
                continue;
            }
        } else {
            if Some(c) != quote && c != b'\\' {
                cur.push(b'\\');
            }
            escaped = false;
        }
        cur.push(c);
    }
    if escaped {
        return Err("found a trailing escape character".into());
    }
    if quote.is_some() {
        return Err("never reached the end of a quoted value".into());
    }
    if !cur.is_empty() {
        out.push(String::from_utf8_lossy(&cur).into_owned());
    }
    Ok(out)
}

/// `key_value_parser`: pairs split by `pair_delim` (quotes respected), each split once on `delim`,
/// key and value trimmed. Every pair is tried; one without the delimiter fails the entry.
pub fn key_values(input: &str, delim: &str, pair_delim: &str) -> Result<Value, String> {
    if input.is_empty() {
        return Err("the parse_from field is empty".into());
    }
    let pairs = split_quoted(input, pair_delim)
        .map_err(|e| format!("failed to parse pairs from input: {e}"))?;
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for p in pairs {
        match p.split_once(delim) {
            Some((k, v)) => put(
                &mut out,
                k.trim().to_string(),
                Value::StringValue(v.trim().to_string()),
            ),
            None => bad.push(format!("cannot split {p:?} into 2 items, got 1 item(s)")),
        }
    }
    if !bad.is_empty() {
        return Err(bad.join("; "));
    }
    Ok(Value::KvlistValue(KeyValueList { values: out }))
}

/// One CSV payload as Go's `encoding/csv` reads it and parseutils.ReadCSVRow joins it: a line
/// break outside quotes continues the last field (joined with `\n`), `""` inside quotes is a quote.
/// Without `lazy`, a bare quote in an unquoted field or a stray one after a quoted field fails.
pub fn csv_row(line: &str, delim: char, lazy: bool) -> Result<Vec<String>, String> {
    let line = line.replace("\r\n", "\n");
    if line.trim_matches('\n').is_empty() {
        return Err("no csv lines found".into());
    }
    let mut fields: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut chars = line.trim_start_matches('\n').chars().peekable();
    // At the start of a field: a quote opens a quoted field.
    let mut at_start = true;
    let mut in_quotes = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            if c != '"' {
                cur.push(c);
                continue;
            }
            match chars.peek().copied() {
                Some('"') => {
                    chars.next();
                    cur.push('"');
                }
                None => in_quotes = false,
                Some(n) if n == delim || n == '\n' => in_quotes = false,
                Some(_) if lazy => cur.push('"'),
                Some(_) => return Err("extraneous or missing \" in quoted-field".into()),
            }
            continue;
        }
        if at_start && c == '"' {
            in_quotes = true;
            at_start = false;
            continue;
        }
        if c == delim {
            fields.push(std::mem::take(&mut cur));
            at_start = true;
        } else if c == '\n' {
            // A new record: its first field continues this one (blank lines are skipped).
            while chars.peek() == Some(&'\n') {
                chars.next();
            }
            if chars.peek().is_some() {
                cur.push('\n');
            }
            at_start = true;
        } else {
            if c == '"' && !lazy {
                return Err("bare \" in non-quoted-field".into());
            }
            cur.push(c);
            at_start = false;
        }
    }
    if in_quotes && !lazy {
        return Err("extraneous or missing \" in quoted-field".into());
    }
    fields.push(cur);
    Ok(fields)
}

/// parseutils.MapCSVHeaders: header i names field i; the counts must match.
pub fn map_headers(headers: &[String], fields: Vec<String>) -> Result<Value, String> {
    if headers.len() != fields.len() {
        return Err(format!(
            "wrong number of fields: expected {}, found {}",
            headers.len(),
            fields.len()
        ));
    }
    let mut out = Vec::with_capacity(fields.len());
    for (h, f) in headers.iter().zip(fields) {
        put(&mut out, h.clone(), Value::StringValue(f));
    }
    Ok(Value::KvlistValue(KeyValueList { values: out }))
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Go's url.QueryUnescape (`plus` true) or PathUnescape: `%XX` decoded, a bad escape an error.
fn unescape(s: &str, plus: bool) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = b.get(i + 1).copied().and_then(hex_val);
                let l = b.get(i + 2).copied().and_then(hex_val);
                let (Some(h), Some(l)) = (h, l) else {
                    let end = (i + 3).min(b.len());
                    return Err(format!(
                        "invalid URL escape {:?}",
                        String::from_utf8_lossy(&b[i..end])
                    ));
                };
                out.push(h * 16 + l);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Go's url.ParseQuery as a map of lists, in first-seen key order. With `strict`, the first bad
/// pair fails the whole query (a bare `?a=b` string); without, bad pairs are left out (u.Query()).
fn query_map(q: &str, strict: bool) -> Result<Option<Value>, String> {
    let mut params: Vec<(String, Vec<String>)> = Vec::new();
    let mut first_err = None;
    for piece in q.split('&') {
        if piece.is_empty() {
            continue;
        }
        if piece.contains(';') {
            first_err.get_or_insert_with(|| "invalid semicolon separator in query".to_string());
            continue;
        }
        let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
        let (k, v) = match (unescape(k, true), unescape(v, true)) {
            (Ok(k), Ok(v)) => (k, v),
            (Err(e), _) | (_, Err(e)) => {
                first_err.get_or_insert(e);
                continue;
            }
        };
        match params.iter_mut().find(|(x, _)| *x == k) {
            Some((_, vs)) => vs.push(v),
            None => params.push((k, vec![v])),
        }
    }
    if strict {
        if let Some(e) = first_err {
            return Err(e);
        }
    }
    if params.is_empty() {
        return Ok(None);
    }
    let values = params
        .into_iter()
        .map(|(k, vs)| {
            let arr = vs
                .into_iter()
                .map(|v| AnyValue {
                    value: Some(Value::StringValue(v)),
                })
                .collect();
            kv(k, Value::ArrayValue(ArrayValue { values: arr }))
        })
        .collect();
    Ok(Some(Value::KvlistValue(KeyValueList { values })))
}

/// `uri_parser`: an absolute URI, a path (`/app?x=1`) or a query string (`?x=1`), read as Go's
/// url.ParseRequestURI reads it, into `scheme`, `user`, `host`, `port`, `path` and `query` (a map
/// of lists); empty parts are left out.
pub fn uri(s: &str) -> Result<Value, String> {
    if let Some(q) = s.strip_prefix('?') {
        let m = query_map(q, true)?;
        let values = m.map(|m| vec![kv("query", m)]).unwrap_or_default();
        return Ok(Value::KvlistValue(KeyValueList { values }));
    }
    if s.bytes().any(|c| c < 0x20 || c == 0x7f) {
        return Err("net/url: invalid control character in URL".into());
    }
    if s.is_empty() {
        return Err("empty url".into());
    }
    // The scheme: letters first, then letters, digits, + - and . up to a colon.
    let mut scheme = "";
    let mut rest = s;
    for (i, c) in s.char_indices() {
        if c.is_ascii_alphabetic() {
            continue;
        }
        if i > 0 && (c.is_ascii_digit() || matches!(c, '+' | '-' | '.')) {
            continue;
        }
        if c == ':' {
            if i == 0 {
                return Err("missing protocol scheme".into());
            }
            scheme = &s[..i];
            rest = &s[i + 1..];
        }
        break;
    }
    let scheme = scheme.to_ascii_lowercase();
    let (rest, raw_query) = match rest.split_once('?') {
        Some((r, q)) => (r, q),
        None => (rest, ""),
    };
    let mut out = Vec::new();
    if !scheme.is_empty() {
        out.push(kv("scheme", Value::StringValue(scheme.clone())));
    }
    let mut path = rest;
    if !rest.starts_with('/') {
        if scheme.is_empty() {
            return Err(format!("parse {s:?}: invalid URI for request"));
        }
        // An opaque URI (`mailto:x`): no host or path.
        path = "";
    } else if !scheme.is_empty() {
        if let Some(r) = rest.strip_prefix("//") {
            let end = r.find('/').unwrap_or(r.len());
            let (authority, p) = r.split_at(end);
            path = p;
            let (user, hostport) = match authority.rfind('@') {
                Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
                None => (None, authority),
            };
            if let Some(u) = user {
                let name = u.split(':').next().unwrap_or("");
                let name = unescape(name, false)?;
                if !name.is_empty() {
                    out.push(kv("user", Value::StringValue(name)));
                }
            }
            let (host, port) = split_host_port(hostport)?;
            if !host.is_empty() {
                out.push(kv("host", Value::StringValue(unescape(host, false)?)));
            }
            if !port.is_empty() {
                out.push(kv("port", Value::StringValue(port.to_string())));
            }
        }
    }
    unescape(path, false)?;
    if !path.is_empty() {
        out.push(kv("path", Value::StringValue(path.to_string())));
    }
    if let Some(q) = query_map(raw_query, false)? {
        out.push(kv("query", q));
    }
    Ok(Value::KvlistValue(KeyValueList { values: out }))
}

/// Host and port as url.URL's Hostname and Port give them (brackets off an IPv6 literal).
fn split_host_port(hp: &str) -> Result<(&str, &str), String> {
    let (mut host, mut port) = (hp, "");
    if let Some(colon) = hp.rfind(':') {
        let after = &hp[colon + 1..];
        let bracketed_colon = hp.starts_with('[') && !hp[..colon].ends_with(']');
        if !bracketed_colon {
            if !after.bytes().all(|c| c.is_ascii_digit()) {
                return Err(format!("invalid port {:?} after host", &hp[colon..]));
            }
            host = &hp[..colon];
            port = after;
        }
    }
    if let Some(h) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        host = h;
    }
    Ok((host, port))
}

/// One element of a `json_array_parser` array: numbers as integers, objects kept as their JSON
/// text, null as an empty value; a nested array fails the entry, as in otelcol.
fn json_array_item(v: serde_json::Value) -> Result<AnyValue, String> {
    use serde_json::Value as J;
    let value = match v {
        J::Number(n) => Some(Value::IntValue(
            n.as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .unwrap_or(0),
        )),
        J::String(s) => Some(Value::StringValue(s)),
        J::Bool(b) => Some(Value::BoolValue(b)),
        J::Null => None,
        o @ J::Object(_) => Some(Value::StringValue(o.to_string())),
        J::Array(_) => return Err("failed to parse entry".into()),
    };
    Ok(AnyValue { value })
}

/// `json_array_parser`: the array as a list, or with `header` a map of header name to element.
/// Text that is JSON but not an array reads as an empty array, as fastjson's GetArray gives it.
pub fn json_array(s: &str, header: Option<&[String]>) -> Result<Value, String> {
    let j: serde_json::Value =
        serde_json::from_str(s).map_err(|_| "failed to parse entry".to_string())?;
    let items = match j {
        serde_json::Value::Array(a) => a,
        _ => Vec::new(),
    };
    let Some(header) = header else {
        let values = items
            .into_iter()
            .map(json_array_item)
            .collect::<Result<_, _>>()?;
        return Ok(Value::ArrayValue(ArrayValue { values }));
    };
    if header.len() != items.len() {
        return Err(format!(
            "wrong number of fields: expected {}, found {}",
            header.len(),
            items.len()
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for (h, v) in header.iter().zip(items) {
        let any = json_array_item(v)?;
        out.retain(|x: &KeyValue| x.key != *h);
        out.push(KeyValue {
            key: h.clone(),
            value: Some(any),
            ..Default::default()
        });
    }
    Ok(Value::KvlistValue(KeyValueList { values: out }))
}

/// Go's strconv.Unquote: `"..."` with Go escapes, `` `...` `` as written (carriage returns
/// dropped), or `'c'` holding one character.
pub fn unquote(s: &str) -> Result<String, String> {
    let bad = || format!("{s:?} is not a quoted string (\"...\", `...` or 'c')");
    let first = s.chars().next().ok_or_else(bad)?;
    if s.len() < 2 || !s.ends_with(first) {
        return Err(bad());
    }
    let inner = &s[1..s.len() - 1];
    match first {
        '`' => {
            if inner.contains('`') {
                return Err(bad());
            }
            Ok(inner.replace('\r', ""))
        }
        '"' | '\'' => {
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == first || c == '\n' {
                    return Err(bad());
                }
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                let e = chars.next().ok_or_else(bad)?;
                let digits = |chars: &mut std::str::Chars, n: usize, radix: u32| {
                    let mut v: u32 = 0;
                    for _ in 0..n {
                        let d = chars
                            .next()
                            .and_then(|c| c.to_digit(radix))
                            .ok_or_else(bad)?;
                        v = v * radix + d;
                    }
                    Ok::<u32, String>(v)
                };
                match e {
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\u{b}'),
                    '\\' => out.push('\\'),
                    '\'' | '"' if e == first => out.push(e),
                    'x' => out.push(char::from(digits(&mut chars, 2, 16)? as u8)),
                    'u' => out.push(char::from_u32(digits(&mut chars, 4, 16)?).ok_or_else(bad)?),
                    'U' => out.push(char::from_u32(digits(&mut chars, 8, 16)?).ok_or_else(bad)?),
                    '0'..='7' => {
                        let rest = digits(&mut chars, 2, 8)?;
                        let v = (e as u32 - '0' as u32) * 64 + rest;
                        if v > 255 {
                            return Err(bad());
                        }
                        out.push(char::from(v as u8));
                    }
                    _ => return Err(bad()),
                }
            }
            if first == '\'' && out.chars().count() != 1 {
                return Err(bad());
            }
            Ok(out)
        }
        _ => Err(bad()),
    }
}

/// RFC 5427's facility keywords, as go-syslog's FacilityLevel gives `facility_text`.
fn facility_text(f: i64) -> &'static str {
    const NAMES: [&str; 24] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
        "authpriv", "ftp", "ntp", "security", "console", "cron2", "local0", "local1", "local2",
        "local3", "local4", "local5", "local6", "local7",
    ];
    usize::try_from(f)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("")
}

/// `syslog_parser`, compiled.
#[derive(Debug, Clone)]
pub struct SyslogOp {
    pub protocol: Protocol,
    pub tz: Tz,
    pub octet_counting: bool,
    pub allow_skip_pri_header: bool,
    /// `\n` or `\0` from `non_transparent_framing_trailer` (`LF`, `NUL`).
    pub trailer: Option<char>,
    /// 0: no limit.
    pub max_octets: usize,
}

/// What `syslog_parser` takes from one message.
pub struct Syslog {
    pub fields: Value,
    pub timestamp: u64,
    pub severity: Option<(i32, String)>,
}

impl SyslogOp {
    pub fn parse(&self, text: &str) -> Result<Syslog, String> {
        let mut msg = text;
        if self.octet_counting {
            let sp = msg
                .find(' ')
                .filter(|i| *i > 0 && msg[..*i].bytes().all(|c| c.is_ascii_digit()))
                .ok_or("expected an octet count (\"<length> <message>\")")?;
            let len: usize = msg[..sp]
                .parse()
                .map_err(|_| format!("invalid octet count {:?}", &msg[..sp]))?;
            if self.max_octets > 0 && len > self.max_octets {
                return Err(format!(
                    "message length {len} exceeds max_octets ({})",
                    self.max_octets
                ));
            }
            let body = &msg[sp + 1..];
            msg = body.get(..len).unwrap_or(body);
        } else if let Some(t) = self.trailer {
            msg = msg.strip_suffix(t).unwrap_or(msg);
        }
        let skip_pri = !self.octet_counting
            && self.allow_skip_pri_header
            && msg.len() > 1
            && !msg.starts_with('<');
        let owned;
        if skip_pri {
            owned = format!("<0>{msg}");
            msg = &owned;
        }
        let e = crate::syslog::parse::parse(self.protocol, msg, self.tz, 0)?;
        let mut values = Vec::with_capacity(e.attributes.len() + 1);
        let mut facility = None;
        for a in e.attributes {
            let is_pri = a.key == "priority" || a.key == "facility";
            if skip_pri && is_pri {
                continue;
            }
            if a.key == "facility" {
                if let Some(Value::IntValue(f)) = a.value.as_ref().and_then(|v| v.value.as_ref()) {
                    facility = Some(*f);
                }
            }
            values.push(a);
        }
        if let Some(f) = facility {
            values.push(kv(
                "facility_text",
                Value::StringValue(facility_text(f).into()),
            ));
        }
        Ok(Syslog {
            fields: Value::KvlistValue(KeyValueList { values }),
            timestamp: e.timestamp,
            severity: (!skip_pri).then_some((e.severity_number, e.severity_text)),
        })
    }
}

/// An OTLP value as plain JSON, for `stdout`.
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::StringValue(s) => J::String(s.clone()),
        Value::BoolValue(b) => J::Bool(*b),
        Value::IntValue(i) => J::from(*i),
        Value::DoubleValue(d) => J::from(*d),
        Value::ArrayValue(a) => J::Array(
            a.values
                .iter()
                .map(|x| x.value.as_ref().map(to_json).unwrap_or(J::Null))
                .collect(),
        ),
        Value::KvlistValue(l) => kvs_to_json(&l.values),
        Value::BytesValue(b) => J::String(hex::encode(b)),
        #[allow(unreachable_patterns)]
        _ => J::Null,
    }
}

pub fn kvs_to_json(l: &[KeyValue]) -> serde_json::Value {
    serde_json::Value::Object(
        l.iter()
            .map(|kv| {
                let v = kv
                    .value
                    .as_ref()
                    .and_then(|a| a.value.as_ref())
                    .map(to_json)
                    .unwrap_or(serde_json::Value::Null);
                (kv.key.clone(), v)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::attrs::{get, get_str};

    fn map(v: Value) -> Vec<KeyValue> {
        match v {
            Value::KvlistValue(l) => l.values,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn key_values_with_quotes_and_escapes() {
        let m = map(key_values(
            r#"level=info msg="user logged in" user='bob smith' path=/a=b"#,
            "=",
            " ",
        )
        .unwrap());
        assert_eq!(get_str(&m, "level"), Some("info"));
        assert_eq!(get_str(&m, "msg"), Some("user logged in"));
        assert_eq!(get_str(&m, "user"), Some("bob smith"));
        assert_eq!(get_str(&m, "path"), Some("/a=b"), "split once");
        // A backslash-escaped quote stays inside the quoted value.
        let m = map(key_values(r#"a="say \"hi\"" b=2"#, "=", " ").unwrap());
        assert_eq!(get_str(&m, "a"), Some(r#"say "hi""#));
        // Pair delimiter other than space, spaces trimmed.
        let m = map(key_values("name=stanza ! org=otel      ! group=dev", "=", "!").unwrap());
        assert_eq!(get_str(&m, "org"), Some("otel"));
        assert!(key_values("a=1 broken", "=", " ").is_err());
        assert!(key_values(r#"a="open"#, "=", " ").is_err());
        assert!(key_values("", "=", " ").is_err());
    }

    #[test]
    fn csv_rows_as_go_reads_them() {
        assert_eq!(
            csv_row(r#"1,"Smith, John","said ""hi""",x"#, ',', false).unwrap(),
            vec!["1", "Smith, John", r#"said "hi""#, "x"]
        );
        assert_eq!(csv_row("a,,c", ',', false).unwrap(), vec!["a", "", "c"]);
        assert_eq!(
            csv_row("1\tdebug\tDebug Message", '\t', false).unwrap(),
            vec!["1", "debug", "Debug Message"]
        );
        // A line break continues the last field, as ReadCSVRow stitches records.
        assert_eq!(
            csv_row("aa,b\nb,cc,d\nd,ee", ',', false).unwrap(),
            vec!["aa", "b\nb", "cc", "d\nd", "ee"]
        );
        assert_eq!(
            csv_row("a,\"multi\nline\",c", ',', false).unwrap(),
            vec!["a", "multi\nline", "c"]
        );
        assert!(csv_row(r#"a,b"c,d"#, ',', false).is_err());
        assert_eq!(
            csv_row(r#"a,b"c,d"#, ',', true).unwrap(),
            vec!["a", "b\"c", "d"]
        );
        assert!(csv_row(r#""a"b,c"#, ',', false).is_err());
        assert!(csv_row("", ',', false).is_err());
    }

    #[test]
    fn uris_absolute_relative_and_query() {
        let m =
            map(uri("HTTPS://dev:pass@google.com:8443/app?user_id=2&token=001&token=002").unwrap());
        assert_eq!(get_str(&m, "scheme"), Some("https"));
        assert_eq!(get_str(&m, "user"), Some("dev"));
        assert_eq!(get_str(&m, "host"), Some("google.com"));
        assert_eq!(get_str(&m, "port"), Some("8443"));
        assert_eq!(get_str(&m, "path"), Some("/app"));
        let Some(Value::KvlistValue(q)) = get(&m, "query") else {
            panic!("{m:?}")
        };
        let Some(Value::ArrayValue(t)) = get(&q.values, "token") else {
            panic!()
        };
        assert_eq!(t.values.len(), 2);
        let m = map(uri("/app?user=admin%20x").unwrap());
        assert_eq!(get(&m, "scheme"), None);
        assert_eq!(get_str(&m, "path"), Some("/app"));
        let m = map(uri("?request=681e&env=stage&env=dev").unwrap());
        assert_eq!(m.len(), 1);
        assert!(
            uri("app/x").is_err(),
            "a relative path is not a request URI"
        );
        assert!(uri("?a=%zz").is_err());
        assert!(uri("http://[::1]:80/x").is_ok());
        assert!(uri("http://h:x/").is_err());
    }

    #[test]
    fn json_arrays_and_headers() {
        let Value::ArrayValue(a) =
            json_array(r#"["Hello", 42, {"name":"Alice"}, true, null]"#, None).unwrap()
        else {
            panic!()
        };
        assert_eq!(a.values[1].value, Some(Value::IntValue(42)));
        assert_eq!(
            a.values[2].value,
            Some(Value::StringValue(r#"{"name":"Alice"}"#.into()))
        );
        assert_eq!(a.values[4].value, None);
        assert!(json_array("[[1]]", None).is_err());
        assert!(json_array("[1,", None).is_err());
        let h: Vec<String> = ["origin", "sev"].iter().map(|s| s.to_string()).collect();
        let m = map(json_array(r#"[1,"debug"]"#, Some(&h)).unwrap());
        assert_eq!(get_str(&m, "sev"), Some("debug"));
        assert!(json_array(r#"[1]"#, Some(&h)).is_err());
    }

    #[test]
    fn unquote_like_go() {
        assert_eq!(unquote(r#""hello""#).unwrap(), "hello");
        assert_eq!(unquote(r#""a\tb\u00e9\x41\101""#).unwrap(), "a\tbéAA");
        assert_eq!(unquote("`raw \\n`").unwrap(), "raw \\n");
        assert_eq!(unquote("'v'").unwrap(), "v");
        assert!(unquote("'vv'").is_err());
        assert!(unquote("hello").is_err());
        assert!(unquote(r#""a"b""#).is_err());
        assert!(unquote(r#""\q""#).is_err());
    }

    #[test]
    fn syslog_both_protocols() {
        let op = SyslogOp {
            protocol: Protocol::Rfc5424,
            tz: Tz::UTC,
            octet_counting: false,
            allow_skip_pri_header: false,
            trailer: None,
            max_octets: 0,
        };
        let s = op
            .parse(r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application"] An application event log entry"#)
            .unwrap();
        let m = map(s.fields);
        assert_eq!(get_str(&m, "appname"), Some("evntslog"));
        assert_eq!(get(&m, "proc_id"), None, "a nil value is left out");
        assert_eq!(get_str(&m, "facility_text"), Some("local4"));
        assert!(get(&m, "structured_data").is_some());
        assert_eq!(s.timestamp, 1_065_910_455_003_000_000);
        assert_eq!(s.severity, Some((10, "notice".to_string())));
        let op = SyslogOp {
            protocol: Protocol::Rfc3164,
            allow_skip_pri_header: true,
            ..op
        };
        let s = op
            .parse("Oct 11 22:14:15 mymachine su: 'su root' failed")
            .unwrap();
        let m = map(s.fields);
        assert_eq!(get(&m, "priority"), None, "no PRI header, no priority");
        assert_eq!(get_str(&m, "hostname"), Some("mymachine"));
        assert_eq!(s.severity, None);
        let oc = SyslogOp {
            protocol: Protocol::Rfc5424,
            octet_counting: true,
            max_octets: 10,
            ..op
        };
        assert!(oc.parse("17 <13>1 - - - - - x").is_err(), "over max_octets");
    }
}
