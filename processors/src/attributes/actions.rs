//! The attribute action engine shared by the `attributes` and `resource` processors: otelcol's
//! `insert`, `update`, `upsert`, `delete`, `hash`, `extract` and `convert`, checked once when the config
//! is loaded and then applied to any OTLP attribute list.
//!
//! `hash` uses SHA-256, as otelcol has since its SHA-1 hasher was deprecated (v0.75), over the same bytes
//! otelcol hashes, so that hashed values match what an otelcol hop would produce.

use base64::Engine as _;
use regex::Regex;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use vigil_core::config::decode;
use vigil_core::otlp::common::v1::{
    any_value::Value, AnyValue, ArrayValue, KeyValue, KeyValueList,
};
use vigil_core::{ComponentId, ComponentKind, ConfigError};

/// One entry of an `actions` (or, for `resource`, `attributes`) list, as written in config.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// The attribute acted on.
    #[serde(default)]
    pub key: String,
    /// `insert`, `update`, `upsert`, `delete`, `hash`, `extract` or `convert`, in any case.
    #[serde(default)]
    pub action: String,
    /// The value to set; its YAML type becomes the attribute's type.
    #[serde(default)]
    pub value: Option<Json>,
    /// Copy the value of this attribute instead of `value`; nothing happens when it is absent.
    #[serde(default)]
    pub from_attribute: String,
    /// A regex: attribute keys to delete or hash, or the named groups to extract.
    #[serde(default)]
    pub pattern: String,
    /// `int`, `double` or `string`, for `convert`.
    #[serde(default)]
    pub converted_type: String,
}

/// Where an insert, update or upsert takes its value from.
#[derive(Debug, Clone)]
enum Source {
    Value(AnyValue),
    FromAttribute(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Int,
    Double,
    String,
}

#[derive(Debug, Clone)]
enum Action {
    Insert(String, Source),
    Update(String, Source),
    Upsert(String, Source),
    Delete(Option<String>, Option<Regex>),
    Hash(Option<String>, Option<Regex>),
    Extract(String, Regex, Vec<String>),
    Convert(String, Target),
}

/// A checked list of actions, applied in order.
#[derive(Debug, Clone, Default)]
pub struct Actions(Vec<Action>);

/// Decodes a config section with core's `decode`, writing list indices as path segments
/// (`actions::1::value`), the way the action errors name them.
pub fn decode_section<T: DeserializeOwned>(
    id: &ComponentId,
    value: &Json,
) -> Result<T, ConfigError> {
    decode(ComponentKind::Processor, id, value).map_err(|mut e| {
        e.path = e.path.replace('[', "::").replace(']', "");
        e
    })
}

impl Actions {
    /// Checks every action of the list found under `list_key`, naming the index and field of the
    /// first mistake. An empty list is an error, as in otelcol.
    pub fn compile(
        id: &ComponentId,
        list_key: &str,
        configs: &[ActionConfig],
    ) -> Result<Actions, ConfigError> {
        if configs.is_empty() {
            return Err(ConfigError::component(
                ComponentKind::Processor,
                id,
                list_key,
                format!("missing required field \"{list_key}\": at least one action is needed"),
            ));
        }
        configs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                compile_one(c).map_err(|(field, msg)| {
                    let path = if field.is_empty() {
                        format!("{list_key}::{i}")
                    } else {
                        format!("{list_key}::{i}::{field}")
                    };
                    ConfigError::component(ComponentKind::Processor, id, path, msg)
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Actions)
    }

    /// Applies the actions, in order, to one attribute list.
    pub fn apply(&self, attrs: &mut Vec<KeyValue>) {
        for action in &self.0 {
            match action {
                Action::Insert(key, src) => {
                    if position(attrs, key).is_none() {
                        if let Some(v) = source_value(src, attrs) {
                            attrs.push(KeyValue {
                                key: key.clone(),
                                value: Some(v),
                                ..Default::default()
                            });
                        }
                    }
                }
                Action::Update(key, src) => {
                    if let Some(i) = position(attrs, key) {
                        if let Some(v) = source_value(src, attrs) {
                            attrs[i].value = Some(v);
                        }
                    }
                }
                Action::Upsert(key, src) => {
                    if let Some(v) = source_value(src, attrs) {
                        match position(attrs, key) {
                            Some(i) => attrs[i].value = Some(v),
                            None => attrs.push(KeyValue {
                                key: key.clone(),
                                value: Some(v),
                                ..Default::default()
                            }),
                        }
                    }
                }
                Action::Delete(key, pattern) => {
                    attrs.retain(|kv| !selects(key, pattern, &kv.key));
                }
                Action::Hash(key, pattern) => {
                    for kv in attrs.iter_mut().filter(|kv| selects(key, pattern, &kv.key)) {
                        let hashed = hash(kv.value.as_ref().and_then(|v| v.value.as_ref()));
                        kv.value = Some(AnyValue {
                            value: Some(Value::StringValue(hashed)),
                        });
                    }
                }
                Action::Extract(key, re, names) => extract(attrs, key, re, names),
                Action::Convert(key, to) => {
                    if let Some(i) = position(attrs, key) {
                        if let Some(v) = attrs[i].value.as_mut().and_then(|v| v.value.as_mut()) {
                            convert(v, *to);
                        }
                    }
                }
            }
        }
    }
}

type FieldError = (&'static str, String);

fn compile_one(c: &ActionConfig) -> Result<Action, FieldError> {
    let action = c.action.to_ascii_lowercase();
    let name = action.as_str();
    let has_value = c.value.is_some();
    let has_from = !c.from_attribute.is_empty();
    let unused = |field: &'static str| -> Result<(), FieldError> {
        Err((
            field,
            format!("action \"{name}\" does not use \"{field}\"; remove it"),
        ))
    };
    let regex = |what: &str| -> Result<Regex, FieldError> {
        vigil_core::config::re2_regex(what)
            .map_err(|e| ("pattern", format!("invalid pattern {what:?}: {e}")))
    };
    let key = || -> Result<String, FieldError> {
        if c.key.is_empty() {
            Err(("key", format!("missing \"key\" for action \"{name}\"")))
        } else {
            Ok(c.key.clone())
        }
    };
    match name {
        "insert" | "update" | "upsert" => {
            let key = key()?;
            if !c.pattern.is_empty() {
                unused("pattern")?;
            }
            if !c.converted_type.is_empty() {
                unused("converted_type")?;
            }
            let src = match (&c.value, has_from) {
                (Some(_), true) => {
                    return Err((
                        "",
                        format!(
                            "both \"value\" and \"from_attribute\" are set for action \"{name}\"; \
                             use one"
                        ),
                    ))
                }
                (Some(v), false) => Source::Value(json_to_any(v)),
                (None, true) => Source::FromAttribute(c.from_attribute.clone()),
                (None, false) => {
                    return Err((
                        "value",
                        format!("missing \"value\" or \"from_attribute\" for action \"{name}\""),
                    ))
                }
            };
            Ok(match name {
                "insert" => Action::Insert(key, src),
                "update" => Action::Update(key, src),
                _ => Action::Upsert(key, src),
            })
        }
        "delete" | "hash" => {
            if c.key.is_empty() && c.pattern.is_empty() {
                return Err((
                    "",
                    format!("missing \"key\" or \"pattern\" for action \"{name}\""),
                ));
            }
            if has_value {
                unused("value")?;
            }
            if has_from {
                unused("from_attribute")?;
            }
            if !c.converted_type.is_empty() {
                unused("converted_type")?;
            }
            let key = (!c.key.is_empty()).then(|| c.key.clone());
            let pattern = if c.pattern.is_empty() {
                None
            } else {
                Some(regex(&c.pattern)?)
            };
            Ok(if name == "delete" {
                Action::Delete(key, pattern)
            } else {
                Action::Hash(key, pattern)
            })
        }
        "extract" => {
            let key = key()?;
            if has_value {
                unused("value")?;
            }
            if has_from {
                unused("from_attribute")?;
            }
            if !c.converted_type.is_empty() {
                unused("converted_type")?;
            }
            if c.pattern.is_empty() {
                return Err((
                    "pattern",
                    "missing \"pattern\" for action \"extract\"".into(),
                ));
            }
            let re = regex(&c.pattern)?;
            let names: Vec<String> = re
                .capture_names()
                .skip(1)
                .map(|n| n.unwrap_or_default().to_string())
                .collect();
            if names.is_empty() {
                return Err((
                    "pattern",
                    format!(
                        "pattern {:?} has no named groups; extract sets one attribute per \
                         (?P<name>...) group",
                        c.pattern
                    ),
                ));
            }
            if names.iter().any(String::is_empty) {
                return Err((
                    "pattern",
                    format!(
                        "pattern {:?} has an unnamed group; name every group (?P<name>...) or make \
                         it non-capturing (?:...)",
                        c.pattern
                    ),
                ));
            }
            Ok(Action::Extract(key, re, names))
        }
        "convert" => {
            let key = key()?;
            if has_value {
                unused("value")?;
            }
            if has_from {
                unused("from_attribute")?;
            }
            if !c.pattern.is_empty() {
                unused("pattern")?;
            }
            let to = match c.converted_type.as_str() {
                "int" => Target::Int,
                "double" => Target::Double,
                "string" => Target::String,
                "" => {
                    return Err((
                        "converted_type",
                        "missing \"converted_type\" for action \"convert\"".into(),
                    ))
                }
                other => {
                    return Err((
                        "converted_type",
                        format!("invalid converted_type {other:?} (use int, double or string)"),
                    ))
                }
            };
            Ok(Action::Convert(key, to))
        }
        "" => Err(("action", "missing \"action\"".into())),
        _ => Err((
            "action",
            format!(
                "unsupported action {:?} (use insert, update, upsert, delete, hash, extract or \
                 convert)",
                c.action
            ),
        )),
    }
}

fn position(attrs: &[KeyValue], key: &str) -> Option<usize> {
    attrs.iter().position(|kv| kv.key == key)
}

fn source_value(src: &Source, attrs: &[KeyValue]) -> Option<AnyValue> {
    match src {
        Source::Value(v) => Some(v.clone()),
        Source::FromAttribute(from) => attrs
            .iter()
            .find(|kv| &kv.key == from)
            .map(|kv| kv.value.clone().unwrap_or_default()),
    }
}

fn selects(key: &Option<String>, pattern: &Option<Regex>, candidate: &str) -> bool {
    key.as_deref() == Some(candidate) || pattern.as_ref().is_some_and(|re| re.is_match(candidate))
}

/// The hex SHA-256 of a value's bytes as otelcol takes them: UTF-8 for strings, one byte for a bool,
/// 8 little-endian bytes for numbers. Other types hash to an empty string, as in otelcol.
fn hash(v: Option<&Value>) -> String {
    let bytes: Vec<u8> = match v {
        Some(Value::StringValue(s)) => s.as_bytes().to_vec(),
        Some(Value::BoolValue(b)) => vec![u8::from(*b)],
        Some(Value::IntValue(i)) => i.to_le_bytes().to_vec(),
        Some(Value::DoubleValue(d)) => d.to_bits().to_le_bytes().to_vec(),
        _ => return String::new(),
    };
    hex::encode(Sha256::digest(&bytes))
}

fn extract(attrs: &mut Vec<KeyValue>, key: &str, re: &Regex, names: &[String]) {
    let Some(Value::StringValue(s)) = attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
    else {
        return;
    };
    let Some(caps) = re.captures(s) else { return };
    // Collect first: the captures borrow the source attribute, which the writes may move.
    let found: Vec<(usize, String)> = (1..=names.len())
        .map(|g| (g, caps.get(g).map_or("", |m| m.as_str()).to_string()))
        .collect();
    for (g, text) in found {
        vigil_core::attrs::upsert(attrs, &names[g - 1], Value::StringValue(text));
    }
}

fn convert(v: &mut Value, to: Target) {
    let new = match (to, &*v) {
        (Target::String, Value::StringValue(_)) => return,
        (Target::String, other) => Value::StringValue(as_string(other)),
        (Target::Int, Value::DoubleValue(d)) => Value::IntValue(*d as i64),
        (Target::Int, Value::BoolValue(b)) => Value::IntValue(i64::from(*b)),
        (Target::Int, Value::StringValue(s)) => match s.parse::<i64>() {
            Ok(n) => Value::IntValue(n),
            // As in otelcol, a value that does not parse is left as it is.
            Err(_) => return,
        },
        (Target::Double, Value::IntValue(i)) => Value::DoubleValue(*i as f64),
        (Target::Double, Value::BoolValue(b)) => Value::DoubleValue(f64::from(u8::from(*b))),
        (Target::Double, Value::StringValue(s)) => match s.trim().parse::<f64>() {
            Ok(n) => Value::DoubleValue(n),
            Err(_) => return,
        },
        _ => return,
    };
    *v = new;
}

/// A value as text, as otelcol's `AsString` renders it: bytes as base64, lists and maps as JSON.
fn as_string(v: &Value) -> String {
    match v {
        Value::StringValue(s) => s.clone(),
        Value::BytesValue(b) => base64::engine::general_purpose::STANDARD.encode(b),
        Value::ArrayValue(_) | Value::KvlistValue(_) => any_to_json(Some(v)).to_string(),
        other => vigil_core::attrs::value_to_string(other),
    }
}

fn any_to_json(v: Option<&Value>) -> Json {
    match v {
        None => Json::Null,
        Some(Value::StringValue(s)) => Json::String(s.clone()),
        Some(Value::BoolValue(b)) => Json::Bool(*b),
        Some(Value::IntValue(i)) => Json::from(*i),
        Some(Value::DoubleValue(d)) => Json::from(*d),
        Some(Value::BytesValue(b)) => {
            Json::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(Value::ArrayValue(a)) => Json::Array(
            a.values
                .iter()
                .map(|x| any_to_json(x.value.as_ref()))
                .collect(),
        ),
        Some(Value::KvlistValue(l)) => Json::Object(
            l.values
                .iter()
                .map(|kv| {
                    let inner = kv.value.as_ref().and_then(|x| x.value.as_ref());
                    (kv.key.clone(), any_to_json(inner))
                })
                .collect(),
        ),
        Some(Value::StringValueStrindex(i)) => Json::from(*i),
    }
}

/// A config value as an attribute value, typed as YAML typed it.
pub fn json_to_any(v: &Json) -> AnyValue {
    let value = match v {
        Json::Null => None,
        Json::Bool(b) => Some(Value::BoolValue(*b)),
        Json::Number(n) => Some(match n.as_i64() {
            Some(i) => Value::IntValue(i),
            None => Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Json::String(s) => Some(Value::StringValue(s.clone())),
        Json::Array(a) => Some(Value::ArrayValue(ArrayValue {
            values: a.iter().map(json_to_any).collect(),
        })),
        Json::Object(o) => Some(Value::KvlistValue(KeyValueList {
            values: o
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: Some(json_to_any(v)),
                    ..Default::default()
                })
                .collect(),
        })),
    };
    AnyValue { value }
}

#[cfg(test)]
mod tests;
