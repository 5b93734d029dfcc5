//! Converters that read or write text: `ParseKeyValue`, `ToKeyValueString`, `ParseCSV`,
//! `ConvertCase` (with `ToSnakeCase`, `ToCamelCase`), `Trim`, `TrimPrefix`, `TrimSuffix`, `ParseInt`,
//! `Bool`, `Log`, `IsValidLuhn`, `IsInCIDR`, `Base64Decode`, `Base64Encode`, `Decode` and `URL`.

use super::{arg, want_str, Func};
use crate::{kv, Call, Target, Value};
use base64::Engine as _;

pub(super) fn call(c: &Call, t: &dyn Target) -> Option<Result<Value, String>> {
    let f = c.func;
    let text = |i: usize| want_str(f, arg(c, i, t)?);
    let opt_text = |i: usize| -> Result<Option<String>, String> {
        match arg(c, i, t)? {
            Value::Nil => Ok(None),
            v => want_str(f, v).map(Some),
        }
    };
    Some(match f {
        Func::ParseKeyValue => (|| {
            let s = text(0)?;
            let delim = opt_text(1)?.filter(|d| !d.is_empty()).unwrap_or("=".into());
            let pair = opt_text(2)?.filter(|d| !d.is_empty()).unwrap_or(" ".into());
            parse_key_value(&s, &delim, &pair)
        })(),
        Func::ToKeyValueString => (|| {
            let m = match arg(c, 0, t)? {
                Value::Map(m) => m,
                o => {
                    return Err(format!(
                        "ToKeyValueString: expected a map, got a {}",
                        o.kind()
                    ))
                }
            };
            let delim = opt_text(1)?.unwrap_or("=".into());
            let pair = opt_text(2)?.unwrap_or(" ".into());
            let sort = matches!(arg(c, 3, t)?, Value::Bool(true));
            Ok(Value::Str(to_key_value(m, &delim, &pair, sort)))
        })(),
        Func::ParseCsv => (|| {
            let row = text(0)?;
            let headers = text(1)?;
            let delim = opt_text(2)?.unwrap_or(",".into());
            let header_delim = opt_text(3)?.unwrap_or_else(|| delim.clone());
            let mode = opt_text(4)?.unwrap_or("strict".into());
            parse_csv(&row, &headers, &delim, &header_delim, &mode)
        })(),
        Func::ConvertCase => (|| {
            let s = text(0)?;
            let to = text(1)?;
            convert_case(&s, &to).map(Value::Str)
        })(),
        Func::ToSnakeCase => text(0)
            .and_then(|s| convert_case(&s, "snake"))
            .map(Value::Str),
        Func::ToCamelCase => text(0)
            .and_then(|s| convert_case(&s, "camel"))
            .map(Value::Str),
        // Go's strings.Trim: every leading and trailing character found in the cut set goes.
        Func::Trim => (|| {
            let s = text(0)?;
            let cut = opt_text(1)?.unwrap_or(" ".into());
            Ok(Value::Str(
                s.trim_matches(|ch| cut.contains(ch)).to_string(),
            ))
        })(),
        Func::TrimPrefix | Func::TrimSuffix => (|| {
            let s = text(0)?;
            let affix = text(1)?;
            let out = if f == Func::TrimPrefix {
                s.strip_prefix(affix.as_str())
            } else {
                s.strip_suffix(affix.as_str())
            };
            Ok(Value::Str(out.unwrap_or(&s).to_string()))
        })(),
        Func::ParseInt => (|| {
            let s = text(0)?;
            let base = match arg(c, 1, t)? {
                Value::Int(b) => b,
                o => return Err(format!("ParseInt: base must be an int, got a {}", o.kind())),
            };
            parse_int(&s, base).map(Value::Int)
        })(),
        Func::Bool => arg(c, 0, t).map(|v| match v {
            Value::Bool(b) => Value::Bool(b),
            Value::Int(i) => Value::Bool(i != 0),
            Value::Double(d) => Value::Bool(d != 0.0),
            Value::Str(s) => match s.as_str() {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => Value::Bool(true),
                "0" | "f" | "F" | "false" | "FALSE" | "False" => Value::Bool(false),
                _ => Value::Nil,
            },
            _ => Value::Nil,
        }),
        Func::Log => arg(c, 0, t).and_then(|v| {
            let x = match v {
                Value::Double(d) => d,
                Value::Int(i) => i as f64,
                Value::Bool(b) => f64::from(u8::from(b)),
                Value::Str(s) => s
                    .trim()
                    .parse()
                    .map_err(|_| format!("Log: {s:?} is not a number"))?,
                o => return Err(format!("Log: expected a number, got a {}", o.kind())),
            };
            if x <= 0.0 {
                return Err(format!("Log: the logarithm of {x} is undefined"));
            }
            Ok(Value::Double(x.ln()))
        }),
        Func::IsValidLuhn => arg(c, 0, t).and_then(|v| {
            let digits = match v {
                Value::Int(i) if i >= 0 => i.to_string(),
                Value::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s,
                o => {
                    return Err(format!(
                        "IsValidLuhn: expected a string of digits or a non-negative int, got {:?}",
                        o.to_text()
                    ))
                }
            };
            Ok(Value::Bool(luhn(&digits)))
        }),
        Func::IsInCidr => (|| {
            let ip = match arg(c, 0, t)? {
                Value::Str(s) => s,
                Value::Nil => return Ok(Value::Bool(false)),
                o => {
                    return Err(format!(
                        "IsInCIDR: the target is a {}, not a string",
                        o.kind()
                    ))
                }
            };
            let Ok(ip) = ip.trim().parse::<std::net::IpAddr>() else {
                return Ok(Value::Bool(false));
            };
            let nets = match arg(c, 1, t)? {
                Value::List(l) => l,
                o => {
                    return Err(format!(
                        "IsInCIDR: networks must be a list, got a {}",
                        o.kind()
                    ))
                }
            };
            for n in nets {
                let n = Value::from_any(Some(&n)).to_text();
                let net: ipnet::IpNet = n
                    .parse()
                    .map_err(|_| format!("IsInCIDR: invalid network {n:?}"))?;
                if net.contains(&ip) {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        })(),
        Func::Base64Decode => text(0).and_then(|s| {
            let b = base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(|e| format!("Base64Decode: {e}"))?;
            Ok(Value::Str(String::from_utf8_lossy(&b).into_owned()))
        }),
        Func::Base64Encode => (|| {
            let s = text(0)?;
            let variant = opt_text(1)?.unwrap_or("base64".into());
            let engine = base64_engine(&variant)
                .ok_or_else(|| format!("Base64Encode: unknown variant {variant:?}"))?;
            Ok(Value::Str(engine.encode(s.as_bytes())))
        })(),
        Func::Decode => (|| {
            let bytes = match arg(c, 0, t)? {
                Value::Str(s) => s.into_bytes(),
                Value::Bytes(b) => b,
                o => {
                    return Err(format!(
                        "Decode: expected a string or bytes, got a {}",
                        o.kind()
                    ))
                }
            };
            let encoding = text(1)?;
            decode(&bytes, &encoding).map(Value::Str)
        })(),
        Func::Url => text(0).and_then(|s| url(&s)),
        _ => return None,
    })
}

/// The four base64 forms otelcol names.
pub(super) fn base64_engine(variant: &str) -> Option<base64::engine::GeneralPurpose> {
    use base64::engine::general_purpose as g;
    Some(match variant {
        "base64" => g::STANDARD,
        "base64-raw" => g::STANDARD_NO_PAD,
        "base64-url" => g::URL_SAFE,
        "base64-raw-url" => g::URL_SAFE_NO_PAD,
        _ => return None,
    })
}

/// Whether `Decode` knows an encoding: a base64 form or a WHATWG/IANA label.
pub(super) fn known_encoding(e: &str) -> bool {
    base64_engine(e).is_some() || encoding_rs::Encoding::for_label(e.as_bytes()).is_some()
}

fn decode(bytes: &[u8], encoding: &str) -> Result<String, String> {
    if let Some(engine) = base64_engine(encoding) {
        let b = engine
            .decode(bytes)
            .map_err(|e| format!("Decode: not {encoding}: {e}"))?;
        return Ok(String::from_utf8_lossy(&b).into_owned());
    }
    let enc = encoding_rs::Encoding::for_label(encoding.as_bytes())
        .ok_or_else(|| format!("Decode: unknown encoding {encoding:?}"))?;
    Ok(enc.decode_without_bom_handling(bytes).0.into_owned())
}

/// The case forms `ConvertCase` takes.
pub(super) fn known_case(to: &str) -> bool {
    matches!(to, "lower" | "upper" | "snake" | "camel")
}

fn convert_case(s: &str, to: &str) -> Result<String, String> {
    use heck::{ToSnakeCase, ToUpperCamelCase};
    Ok(match to {
        "lower" => s.to_lowercase(),
        "upper" => s.to_uppercase(),
        "snake" => s.to_snake_case(),
        "camel" => s.to_upper_camel_case(),
        o => {
            return Err(format!(
                "ConvertCase: unknown case {o:?}: expected lower, upper, snake or camel"
            ))
        }
    })
}

/// Splits on `delim` outside double or single quotes, dropping the quotes, as otelcol's
/// `parseutils.SplitString` does; an unclosed quote is an error.
fn split_quoted(s: &str, delim: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut rest = s;
    while let Some(ch) = rest.chars().next() {
        match quote {
            Some(q) if ch == q => quote = None,
            Some(_) => cur.push(ch),
            None if ch == '"' || ch == '\'' => quote = Some(ch),
            None if rest.starts_with(delim) => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                rest = &rest[delim.len()..];
                continue;
            }
            None => cur.push(ch),
        }
        rest = &rest[ch.len_utf8()..];
    }
    if let Some(q) = quote {
        return Err(format!(
            "never reached the end of a quoted value (quote {q})"
        ));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

fn parse_key_value(s: &str, delim: &str, pair_delim: &str) -> Result<Value, String> {
    if delim == pair_delim {
        return Err(format!(
            "ParseKeyValue: pair delimiter {pair_delim:?} cannot be equal to delimiter {delim:?}"
        ));
    }
    if s.is_empty() {
        return Err("ParseKeyValue: cannot parse from an empty target".into());
    }
    let pairs = split_quoted(s, pair_delim)
        .map_err(|e| format!("ParseKeyValue: splitting {s:?} into pairs failed: {e}"))?;
    let mut m: Vec<vigil_core::otlp::common::v1::KeyValue> = Vec::with_capacity(pairs.len());
    for p in pairs {
        let Some((k, v)) = p.split_once(delim) else {
            return Err(format!(
                "ParseKeyValue: cannot split {p:?} into a key and a value"
            ));
        };
        let (k, v) = (k.trim(), v.trim());
        // A key given twice keeps its last value, as a Go map does.
        match m.iter_mut().find(|x| x.key == k) {
            Some(x) => *x = kv(k, Value::Str(v.to_string())),
            None => m.push(kv(k, Value::Str(v.to_string()))),
        }
    }
    Ok(Value::Map(m))
}

fn to_key_value(
    mut m: Vec<vigil_core::otlp::common::v1::KeyValue>,
    delim: &str,
    pair_delim: &str,
    sort: bool,
) -> String {
    if sort {
        m.sort_by(|a, b| a.key.cmp(&b.key));
    }
    let quote = |s: &str| {
        let s = s.replace('"', "\\\"");
        if s.contains(pair_delim) || s.contains(delim) {
            format!("\"{s}\"")
        } else {
            s
        }
    };
    m.iter()
        .map(|x| {
            let v = Value::from_any(x.value.as_ref());
            // Go's AsString: bytes are base64, other values as their text (maps and lists JSON).
            let v = match v {
                Value::Bytes(b) => base64::engine::general_purpose::STANDARD.encode(b),
                o => o.to_text(),
            };
            format!("{}{delim}{}", quote(&x.key), quote(&v))
        })
        .collect::<Vec<_>>()
        .join(pair_delim)
}

/// The modes `ParseCSV` takes.
pub(super) fn known_csv_mode(m: &str) -> bool {
    matches!(m, "strict" | "lazyQuotes" | "ignoreQuotes")
}

fn parse_csv(
    row: &str,
    headers: &str,
    delim: &str,
    header_delim: &str,
    mode: &str,
) -> Result<Value, String> {
    if !known_csv_mode(mode) {
        return Err(format!(
            "ParseCSV: unknown mode {mode:?}: expected strict, lazyQuotes or ignoreQuotes"
        ));
    }
    let row = row.trim_matches(|ch| ch == '\n' || ch == '\r');
    let names: Vec<&str> = headers.split(header_delim).collect();
    let fields: Vec<String> = if mode == "ignoreQuotes" {
        row.split(delim).map(str::to_string).collect()
    } else {
        let &[d] = delim.as_bytes() else {
            return Err(format!(
                "ParseCSV: the delimiter must be one ASCII character, got {delim:?}"
            ));
        };
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .delimiter(d)
            .flexible(true)
            .from_reader(row.as_bytes());
        let mut rec = csv::StringRecord::new();
        match r.read_record(&mut rec) {
            Ok(true) => rec.iter().map(str::to_string).collect(),
            Ok(false) => vec![String::new()],
            Err(e) => return Err(format!("ParseCSV: {e}")),
        }
    };
    if fields.len() != names.len() {
        return Err(format!(
            "ParseCSV: wrong number of fields: expected {}, found {}",
            names.len(),
            fields.len()
        ));
    }
    Ok(Value::Map(
        names
            .into_iter()
            .zip(fields)
            .map(|(k, v)| kv(k, Value::Str(v)))
            .collect(),
    ))
}

/// Go's `strconv.ParseInt`: base 0 reads `0b`, `0o`, `0` and `0x` prefixes and allows `_` between
/// digits; otherwise base 2 to 36.
fn parse_int(s: &str, base: i64) -> Result<i64, String> {
    let bad = || format!("ParseInt: {s:?} is not an integer in base {base}");
    if base != 0 && !(2..=36).contains(&base) {
        return Err(format!(
            "ParseInt: invalid base {base}: expected 0 or 2 to 36"
        ));
    }
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if base == 0 {
        let lower = body.to_ascii_lowercase();
        let (r, skip) = if lower.starts_with("0x") {
            (16, 2)
        } else if lower.starts_with("0b") {
            (2, 2)
        } else if lower.starts_with("0o") {
            (8, 2)
        } else if lower.starts_with('0') && body.len() > 1 {
            (8, 1)
        } else {
            (10, 0)
        };
        let d = &body[skip..];
        // Underscores only between digits (or right after a prefix), as Go's literals allow.
        if d.ends_with('_') || d.contains("__") || (skip == 0 && d.starts_with('_')) {
            return Err(bad());
        }
        (r, d.replace('_', ""))
    } else {
        (base as u32, body.to_string())
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return Err(bad());
    }
    let mag = u64::from_str_radix(&digits, radix).map_err(|_| bad())?;
    if neg {
        if mag > 1u64 << 63 {
            return Err(format!("ParseInt: {s:?} is out of range"));
        }
        Ok((mag as i64).wrapping_neg())
    } else {
        i64::try_from(mag).map_err(|_| format!("ParseInt: {s:?} is out of range"))
    }
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if !i.is_multiple_of(2) {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Go's `%XX` unescaping for a URL's path and fragment; a bad escape is an error, as in Go.
fn unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hexs = s
                .get(i + 1..i + 3)
                .ok_or_else(|| format!("URL: invalid escape in {s:?}"))?;
            let v = u8::from_str_radix(hexs, 16)
                .map_err(|_| format!("URL: invalid escape {hexs:?}"))?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `URL`: a URL's parts under the semantic conventions' `url.*` names. Parsed by hand the way Go's
/// `net/url.Parse` splits a URL, because the url crate normalises (a default port disappears, an
/// empty path becomes `/`) and otelcol's output keeps what was written.
fn url(s: &str) -> Result<Value, String> {
    if s.is_empty() {
        return Err("URL: the url is empty".into());
    }
    let (rest, fragment) = match s.split_once('#') {
        Some((r, f)) => (r, unescape(f)?),
        None => (s, String::new()),
    };
    // A scheme is a letter then letters, digits, `+`, `-` or `.`, before a colon.
    let (scheme, rest) = match rest.find(':') {
        Some(i)
            if i > 0
                && rest.as_bytes()[0].is_ascii_alphabetic()
                && rest[..i]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) =>
        {
            (rest[..i].to_ascii_lowercase(), &rest[i + 1..])
        }
        Some(0) => return Err(format!("URL: missing protocol scheme in {s:?}")),
        _ => (String::new(), rest),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, q.to_string()),
        None => (rest, String::new()),
    };
    let mut host = String::new();
    let mut port = String::new();
    let mut user: Option<(String, Option<String>)> = None;
    let mut path = rest;
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find('/').unwrap_or(after.len());
        let authority = &after[..end];
        path = &after[end..];
        let hostport = match authority.rfind('@') {
            Some(i) => {
                let info = &authority[..i];
                user = Some(match info.split_once(':') {
                    Some((u, p)) => (unescape(u)?, Some(unescape(p)?)),
                    None => (unescape(info)?, None),
                });
                &authority[i + 1..]
            }
            None => authority,
        };
        // `[v6]:port`, or `host:port` split at the last colon.
        if let Some(inner) = hostport.strip_prefix('[') {
            let close = inner
                .find(']')
                .ok_or_else(|| format!("URL: missing ']' in host of {s:?}"))?;
            host = inner[..close].to_string();
            if let Some(p) = inner[close + 1..].strip_prefix(':') {
                port = p.to_string();
            }
        } else if let Some((h, p)) = hostport.rsplit_once(':') {
            host = h.to_string();
            port = p.to_string();
        } else {
            host = hostport.to_string();
        }
    } else if !scheme.is_empty() && !rest.starts_with('/') {
        // An opaque URL such as `mailto:x@example.com` has no host or path.
        path = "";
    }
    let path = unescape(path)?;
    let mut m = vec![
        kv("url.original", Value::Str(s.to_string())),
        kv("url.domain", Value::Str(host)),
        kv("url.scheme", Value::Str(scheme)),
        kv("url.path", Value::Str(path.clone())),
    ];
    if !port.is_empty() {
        let p: i64 = port
            .parse()
            .map_err(|_| format!("URL: invalid port {port:?} in {s:?}"))?;
        m.push(kv("url.port", Value::Int(p)));
    }
    if !fragment.is_empty() {
        m.push(kv("url.fragment", Value::Str(fragment)));
    }
    if let Some((u, p)) = user {
        let info = match &p {
            Some(p) => format!("{u}:{p}"),
            None => u.clone(),
        };
        m.push(kv("url.user_info", Value::Str(info)));
        if !u.is_empty() {
            m.push(kv("url.username", Value::Str(u)));
        }
        if let Some(p) = p {
            m.push(kv("url.password", Value::Str(p)));
        }
    }
    if !query.is_empty() {
        m.push(kv("url.query", Value::Str(query)));
    }
    if let Some(i) = path.rfind('.') {
        if i + 1 < path.len() {
            m.push(kv("url.extension", Value::Str(path[i + 1..].to_string())));
        }
    }
    Ok(Value::Map(m))
}
