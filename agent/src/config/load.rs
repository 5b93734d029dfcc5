//! Turns `--config` URIs and `--set` flags into one config tree, as otelcol's confmap does: each source
//! is YAML (`file:`, `env:`, `yaml:` or a bare path), maps merge in order with the last one winning,
//! lists are replaced, and `${env:VAR}` references are expanded after parsing.

use serde_json::{Map, Value};
use std::path::Path;

/// A problem reading or parsing a config source.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: invalid YAML: {message}")]
    Yaml { origin: String, message: String },
    #[error(
        "{origin}: the top level must be a map of sections (receivers, exporters, service, …)"
    )]
    NotAMap { origin: String },
    #[error("--set {0:?}: expected key::path=value")]
    BadSet(String),
    #[error("{origin}: {message}")]
    Expand { origin: String, message: String },
}

/// Loads and merges every source; with no `--config`, the embedded default is the one source. `warnings` collects unset environment variables, which otelcol
/// expands to empty strings rather than failing.
pub fn load(
    uris: &[String],
    sets: &[String],
    warnings: &mut Vec<String>,
) -> Result<Value, LoadError> {
    let mut merged = Value::Object(Map::new());
    let mut defaults = Defaults::new();
    let default_source = [String::new()];
    let sources: &[String] = if uris.is_empty() {
        &default_source
    } else {
        uris
    };
    for uri in sources {
        let (origin, text) = if uri.is_empty() {
            (
                "embedded default config".to_string(),
                super::DEFAULT_CONFIG.to_string(),
            )
        } else {
            read_source(uri)?
        };
        let mut v = parse_yaml(&origin, &text)?;
        if origin.starts_with("yaml:") {
            v = split_colon_keys(v);
        }
        if v.is_null() {
            continue;
        }
        if !v.is_object() {
            return Err(LoadError::NotAMap { origin });
        }
        config_sources(&mut v, &origin, &mut defaults)?;
        expand_value(&mut v, &origin, warnings, &defaults)?;
        merge(&mut merged, v);
    }
    for s in sets {
        let (k, val) = s
            .split_once('=')
            .ok_or_else(|| LoadError::BadSet(s.clone()))?;
        if k.trim().is_empty() {
            return Err(LoadError::BadSet(s.clone()));
        }
        let origin = format!("--set {s}");
        let mut leaf = parse_yaml(&origin, val)?;
        expand_value(&mut leaf, &origin, warnings, &defaults)?;
        let nested = nest(k.trim().split("::").collect::<Vec<_>>().as_slice(), leaf);
        merge(&mut merged, nested);
    }
    Ok(merged)
}

fn read_source(uri: &str) -> Result<(String, String), LoadError> {
    if let Some(inline) = uri.strip_prefix("yaml:") {
        return Ok((format!("yaml:{inline}"), inline.to_string()));
    }
    if let Some(var) = uri.strip_prefix("env:") {
        return Ok((uri.to_string(), std::env::var(var).unwrap_or_default()));
    }
    let path = uri.strip_prefix("file:").unwrap_or(uri);
    let text = std::fs::read_to_string(Path::new(path)).map_err(|source| LoadError::Read {
        path: path.to_string(),
        source,
    })?;
    Ok((path.to_string(), text))
}

fn parse_yaml(origin: &str, text: &str) -> Result<Value, LoadError> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    // YAML 1.2, as otelcol's parser reads it: `on`, `yes`, `y`, `no`, `off`, `n` stay strings.
    let options = serde_saphyr::options! { strict_booleans: true };
    serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|e| LoadError::Yaml {
        origin: origin.to_string(),
        message: e.to_string(),
    })
}

/// `yaml:a::b::c: v` names a nested key with `::`, so it becomes `{a: {b: {c: v}}}`.
fn split_colon_keys(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = Value::Object(Map::new());
            for (k, val) in map {
                let parts: Vec<&str> = k.split("::").collect();
                merge(&mut out, nest(&parts, split_colon_keys(val)));
            }
            out
        }
        other => other,
    }
}

fn nest(parts: &[&str], leaf: Value) -> Value {
    parts.iter().rev().fold(leaf, |acc, p| {
        let mut m = Map::new();
        m.insert((*p).to_string(), acc);
        Value::Object(m)
    })
}

/// Deep-merges `over` into `base`: maps merge key by key, anything else (lists included) is replaced.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Values for unset environment variables, from the Splunk distribution's `config_sources: env:
/// defaults:` (name to the text a reference expands to).
type Defaults = std::collections::BTreeMap<String, String>;

/// Takes the Splunk distribution's top-level `config_sources` out of a source. Its `env` source
/// with `defaults` gives unset variables a value, which is all it does; any other source (vault,
/// etcd2, zookeeper, include, ...) fetches values vigil cannot, so it is refused by name.
fn config_sources(v: &mut Value, origin: &str, defaults: &mut Defaults) -> Result<(), LoadError> {
    let Some(sources) = v.as_object_mut().and_then(|m| m.remove("config_sources")) else {
        return Ok(());
    };
    let bad = |message: String| LoadError::Expand {
        origin: origin.to_string(),
        message,
    };
    let Value::Object(sources) = sources else {
        return if sources.is_null() {
            Ok(())
        } else {
            Err(bad(
                "config_sources: expected a map of config sources".into()
            ))
        };
    };
    for (name, cfg) in sources {
        if name != "env" {
            return Err(bad(format!(
                "config_sources::{name}: config source {name:?} is not supported (vigil reads only the env source's defaults)"
            )));
        }
        let Some(cfg) = cfg.as_object() else {
            continue;
        };
        for (key, val) in cfg {
            if key != "defaults" {
                return Err(bad(format!(
                    "config_sources::env::{key}: unknown key (expected defaults)"
                )));
            }
            let Some(map) = val.as_object() else {
                if val.is_null() {
                    continue;
                }
                return Err(bad(
                    "config_sources::env::defaults: expected a map of variable names to values"
                        .into(),
                ));
            };
            for (var, d) in map {
                let text = match d {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    // A list or map as flow YAML, so a whole reference reads it back typed.
                    other => other.to_string(),
                };
                defaults.insert(var.clone(), text);
            }
        }
    }
    Ok(())
}

fn expand_value(
    v: &mut Value,
    origin: &str,
    warnings: &mut Vec<String>,
    defaults: &Defaults,
) -> Result<(), LoadError> {
    match v {
        Value::String(s) => {
            if let Some(new) = expand_string_with(s, origin, warnings, defaults)? {
                *v = new;
            }
        }
        Value::Array(items) => {
            for i in items {
                expand_value(i, origin, warnings, defaults)?;
            }
        }
        Value::Object(map) => {
            for (_, i) in map.iter_mut() {
                expand_value(i, origin, warnings, defaults)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Expands `${env:VAR}`, `${VAR}`, `${env:VAR:-default}` and `$$`. A string that is exactly one
/// reference takes the variable's value parsed as a YAML scalar (so a port becomes a number); a
/// reference inside longer text is substituted as text. Bare `$VAR` is left alone, as otelcol does.
#[cfg(test)]
fn expand_string(
    s: &str,
    origin: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<Value>, LoadError> {
    expand_string_with(s, origin, warnings, &Defaults::new())
}

fn expand_string_with(
    s: &str,
    origin: &str,
    warnings: &mut Vec<String>,
    defaults: &Defaults,
) -> Result<Option<Value>, LoadError> {
    if !s.contains('$') {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut whole: Option<String> = None;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        if let Some(inner_start) = after.strip_prefix('{') {
            let end = inner_start.find('}').ok_or_else(|| LoadError::Expand {
                origin: origin.to_string(),
                message: format!("unterminated reference in {s:?}: missing '}}'"),
            })?;
            let inner = &inner_start[..end];
            let value = resolve(inner, origin, warnings, defaults)?;
            // `${` + inner + `}` spans the whole string.
            let is_whole = pos == 0 && end + 3 == rest.len() && out.is_empty();
            if is_whole {
                whole = Some(value.clone());
            }
            out.push_str(&value);
            rest = &inner_start[end + 1..];
            continue;
        }
        out.push('$');
        rest = after;
    }
    out.push_str(rest);
    if let Some(w) = whole {
        return Ok(Some(scalar(w)));
    }
    Ok(Some(Value::String(out)))
}

/// Types a whole-reference value as otelcol does, by reading it as YAML: integers, floats and
/// booleans become numbers and bools, and a list or map becomes that list or map (so
/// `metric_names: ${env:NAMES}` with `NAMES=[a, b]` is a list). A collection is taken only in flow
/// form (`[…]`, `{…}`) or over several lines: otelcol would also read a one-line `key: value` as a
/// map, but vigil cannot see that the key it fills wants a string (otelcol keeps the original text
/// for string fields), so such one-liners stay text. Anything else stays a string.
fn scalar(text: String) -> Value {
    let t = text.trim();
    if t.starts_with(['[', '{']) || t.contains('\n') {
        if let Ok(v @ (Value::Array(_) | Value::Object(_))) = parse_yaml("", t) {
            return v;
        }
    }
    if let Ok(i) = t.parse::<i64>() {
        return Value::from(i);
    }
    if t.contains(['.', 'e', 'E'])
        && !t.is_empty()
        && t.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c))
    {
        if let Some(n) = t.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            return Value::Number(n);
        }
    }
    match t {
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        _ => Value::String(text),
    }
}

fn resolve(
    inner: &str,
    origin: &str,
    warnings: &mut Vec<String>,
    defaults: &Defaults,
) -> Result<String, LoadError> {
    let (scheme, rest) = match inner.split_once(':') {
        Some((sch, r)) if sch == "env" => (sch, r),
        Some((sch, _)) if sch.chars().all(|c| c.is_ascii_alphabetic()) && !sch.is_empty() => {
            return Err(LoadError::Expand {
                origin: origin.to_string(),
                message: format!(
                    "unsupported reference ${{{inner}}}: only the env: scheme is supported"
                ),
            })
        }
        _ => ("env", inner),
    };
    debug_assert_eq!(scheme, "env");
    let (name, default) = match rest.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (rest, None),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(LoadError::Expand {
            origin: origin.to_string(),
            message: format!("invalid environment variable name {name:?} in ${{{inner}}}"),
        });
    }
    match std::env::var(name) {
        Ok(v) => Ok(v),
        Err(_) => match default {
            Some(d) => Ok(d.to_string()),
            None if defaults.contains_key(name) => Ok(defaults[name].clone()),
            None => {
                warnings.push(format!(
                    "{origin}: environment variable {name} is not set; ${{{inner}}} expands to an empty string"
                ));
                Ok(String::new())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_maps_and_replaces_lists() {
        let mut a = json!({"a": {"x": 1, "l": [1, 2]}, "b": 1});
        merge(&mut a, json!({"a": {"y": 2, "l": [3]}}));
        assert_eq!(a, json!({"a": {"x": 1, "y": 2, "l": [3]}, "b": 1}));
    }

    #[test]
    fn splunk_env_config_source_defaults_unset_variables() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(
            &f,
            "config_sources:\n  env:\n    defaults:\n      VIGIL_TEST_UNSET_LIST: []\n      VIGIL_TEST_UNSET_NAME: web\n\
             processors:\n  filter:\n    names: ${env:VIGIL_TEST_UNSET_LIST}\n    name: app-${env:VIGIL_TEST_UNSET_NAME}\n",
        )
        .unwrap();
        let mut w = Vec::new();
        let v = load(&[f.display().to_string()], &[], &mut w).unwrap();
        assert_eq!(v["processors"]["filter"]["names"], json!([]));
        assert_eq!(v["processors"]["filter"]["name"], json!("app-web"));
        assert!(v.get("config_sources").is_none());
        assert!(w.is_empty(), "{w:?}");
        std::fs::write(&f, "config_sources:\n  vault:\n    endpoint: x\n").unwrap();
        let e = load(&[f.display().to_string()], &[], &mut w)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("config_sources::vault: config source \"vault\" is not supported"),
            "{e}"
        );
    }

    #[test]
    fn expands_env_like_otelcol() {
        std::env::set_var("VIGIL_TEST_PORT", "4317");
        std::env::set_var("VIGIL_TEST_HOST", "0.0.0.0");
        let mut w = vec![];
        let e = |s: &str, w: &mut Vec<String>| expand_string(s, "t", w).unwrap();
        assert_eq!(e("${env:VIGIL_TEST_PORT}", &mut w), Some(json!(4317)));
        assert_eq!(e("${VIGIL_TEST_PORT}", &mut w), Some(json!(4317)));
        assert_eq!(
            e("${env:VIGIL_TEST_HOST}:${env:VIGIL_TEST_PORT}", &mut w),
            Some(json!("0.0.0.0:4317"))
        );
        assert_eq!(
            e("${env:VIGIL_TEST_UNSET_X:-dflt}", &mut w),
            Some(json!("dflt"))
        );
        assert_eq!(e("a$$b", &mut w), Some(json!("a$b")));
        assert_eq!(e("$HOME", &mut w), Some(json!("$HOME")));
        assert!(w.is_empty());
        // A whole reference holding a YAML list or map is that list or map; inside text it is text.
        std::env::set_var("VIGIL_TEST_LIST", "[]");
        std::env::set_var("VIGIL_TEST_LIST2", "[a, \"b c\"]");
        std::env::set_var("VIGIL_TEST_MAP", "{level: debug, n: 3}");
        std::env::set_var("VIGIL_TEST_BLOCK", "- x\n- y\n");
        std::env::set_var("VIGIL_TEST_HEADER", "Api-Key: abc");
        std::env::set_var("VIGIL_TEST_BROKEN", "[a, b");
        assert_eq!(e("${env:VIGIL_TEST_LIST}", &mut w), Some(json!([])));
        assert_eq!(
            e("${env:VIGIL_TEST_LIST2}", &mut w),
            Some(json!(["a", "b c"]))
        );
        assert_eq!(
            e("${env:VIGIL_TEST_MAP}", &mut w),
            Some(json!({"level": "debug", "n": 3}))
        );
        assert_eq!(
            e("${env:VIGIL_TEST_BLOCK}", &mut w),
            Some(json!(["x", "y"]))
        );
        assert_eq!(
            e("${env:VIGIL_TEST_HEADER}", &mut w),
            Some(json!("Api-Key: abc"))
        );
        assert_eq!(e("${env:VIGIL_TEST_BROKEN}", &mut w), Some(json!("[a, b")));
        assert_eq!(e("x${env:VIGIL_TEST_LIST}", &mut w), Some(json!("x[]")));
        assert!(w.is_empty());
        assert_eq!(e("x${env:VIGIL_TEST_UNSET_Y}", &mut w), Some(json!("x")));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("VIGIL_TEST_UNSET_Y"));
    }

    #[test]
    fn yaml_11_booleans_stay_strings() {
        let v = parse_yaml(
            "t",
            "a: on\nb: yes\nc: n\nd: N\ne: off\nf: y\ng: true\nh: False\ni: no\n",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"a": "on", "b": "yes", "c": "n", "d": "N", "e": "off", "f": "y",
                   "g": true, "h": false, "i": "no"})
        );
    }

    #[test]
    fn inline_yaml_and_set() {
        let mut w = vec![];
        let v = load(
            &["yaml:receivers::otlp::protocols::grpc::endpoint: 0.0.0.0:4317".into()],
            &["service::telemetry::logs::level=debug".into()],
            &mut w,
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "0.0.0.0:4317"}}}},
                   "service": {"telemetry": {"logs": {"level": "debug"}}}})
        );
    }
}
