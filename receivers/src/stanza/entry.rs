//! The log entry that stanza-style operators work on, and the field paths (`body.x`,
//! `attributes["k"]`, `resource.k`) they read and write. An entry becomes one OTLP log record once the
//! operators are done with it.

use std::fmt;
use vigil_core::otlp::common::v1::{any_value::Value, AnyValue, KeyValue, KeyValueList};
use vigil_core::otlp::logs::v1::LogRecord;

/// One log entry on its way through the operators.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub body: Value,
    pub attributes: Vec<KeyValue>,
    pub resource: Vec<KeyValue>,
    /// Event time in Unix nanoseconds; 0 when no operator set it.
    pub timestamp: u64,
    pub observed: u64,
    pub severity_number: i32,
    pub severity_text: String,
    /// The instrumentation scope's name (a parser's `scope_name`); records are grouped by it.
    pub scope_name: String,
    /// Set by a parser's `trace` block; empty when unknown.
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub flags: u32,
}

impl Entry {
    /// An entry whose body is one line of text.
    pub fn text(body: String, observed: u64) -> Entry {
        Entry {
            body: Value::StringValue(body),
            attributes: Vec::new(),
            resource: Vec::new(),
            timestamp: 0,
            observed,
            severity_number: 0,
            severity_text: String::new(),
            scope_name: String::new(),
            trace_id: Vec::new(),
            span_id: Vec::new(),
            flags: 0,
        }
    }

    /// The OTLP log record; resource attributes and the scope name are grouped by the caller.
    pub fn into_record(self) -> (Vec<KeyValue>, String, LogRecord) {
        let rec = LogRecord {
            trace_id: self.trace_id,
            span_id: self.span_id,
            flags: self.flags,
            time_unix_nano: self.timestamp,
            observed_time_unix_nano: self.observed,
            severity_number: self.severity_number,
            severity_text: self.severity_text,
            body: Some(AnyValue {
                value: Some(self.body),
            }),
            attributes: self.attributes,
            ..Default::default()
        };
        (self.resource, self.scope_name, rec)
    }
}

/// The top-level part of an entry a field points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Body,
    Attributes,
    Resource,
}

/// A field path as stanza spells it: `body`, `body.a.b`, `attributes.k`, `attributes["k.with.dots"]`,
/// `resource.k`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub root: Root,
    pub keys: Vec<String>,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let root = match self.root {
            Root::Body => "body",
            Root::Attributes => "attributes",
            Root::Resource => "resource",
        };
        f.write_str(root)?;
        for k in &self.keys {
            write!(f, "[{k:?}]")?;
        }
        Ok(())
    }
}

impl Field {
    pub fn body() -> Field {
        Field {
            root: Root::Body,
            keys: Vec::new(),
        }
    }

    pub fn attributes() -> Field {
        Field {
            root: Root::Attributes,
            keys: Vec::new(),
        }
    }

    /// Parses a stanza field path; the error says what was expected.
    pub fn parse(s: &str) -> Result<Field, String> {
        let s = s.trim();
        let (root, mut rest) = if let Some(r) = s.strip_prefix("body") {
            (Root::Body, r)
        } else if let Some(r) = s.strip_prefix("attributes") {
            (Root::Attributes, r)
        } else if let Some(r) = s.strip_prefix("resource") {
            (Root::Resource, r)
        } else {
            return Err(format!(
                "invalid field {s:?}: a field starts with body, attributes or resource"
            ));
        };
        let mut keys = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("[\"") {
                let end = r
                    .find("\"]")
                    .ok_or_else(|| format!("invalid field {s:?}: unclosed [\""))?;
                keys.push(r[..end].to_string());
                rest = &r[end + 2..];
            } else if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                if end == 0 {
                    return Err(format!("invalid field {s:?}: empty key"));
                }
                keys.push(r[..end].to_string());
                rest = &r[end..];
            } else {
                return Err(format!(
                    "invalid field {s:?}: expected .key or [\"key\"] after {:?}",
                    &s[..s.len() - rest.len()]
                ));
            }
        }
        Ok(Field { root, keys })
    }

    /// The value at this field, if any.
    pub fn get<'a>(&self, e: &'a Entry) -> Option<&'a Value> {
        match self.root {
            Root::Body => get_in_value(&e.body, &self.keys),
            Root::Attributes => get_in_list(&e.attributes, &self.keys),
            Root::Resource => get_in_list(&e.resource, &self.keys),
        }
    }

    /// The value as text, for parsers that read strings.
    pub fn get_str<'a>(&self, e: &'a Entry) -> Option<&'a str> {
        match self.get(e) {
            Some(Value::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    /// Sets the value, creating intermediate maps.
    pub fn set(&self, e: &mut Entry, v: Value) {
        match self.root {
            Root::Body => {
                if self.keys.is_empty() {
                    e.body = v;
                } else {
                    if !matches!(e.body, Value::KvlistValue(_)) {
                        e.body = Value::KvlistValue(KeyValueList::default());
                    }
                    if let Value::KvlistValue(l) = &mut e.body {
                        set_in_list(&mut l.values, &self.keys, v);
                    }
                }
            }
            Root::Attributes => set_root_list(&mut e.attributes, &self.keys, v),
            Root::Resource => set_root_list(&mut e.resource, &self.keys, v),
        }
    }

    /// Removes and returns the value.
    pub fn remove(&self, e: &mut Entry) -> Option<Value> {
        match self.root {
            Root::Body => {
                if self.keys.is_empty() {
                    Some(std::mem::replace(
                        &mut e.body,
                        Value::StringValue(String::new()),
                    ))
                } else if let Value::KvlistValue(l) = &mut e.body {
                    remove_in_list(&mut l.values, &self.keys)
                } else {
                    None
                }
            }
            Root::Attributes => remove_root_list(&mut e.attributes, &self.keys),
            Root::Resource => remove_root_list(&mut e.resource, &self.keys),
        }
    }
}

/// Setting `attributes` itself to a map merges the map's entries in, so that what the receiver set
/// before the parser (such as `log.file.name`) stays, as in stanza.
fn set_root_list(list: &mut Vec<KeyValue>, keys: &[String], v: Value) {
    if keys.is_empty() {
        if let Value::KvlistValue(l) = v {
            for kv in l.values {
                match list.iter_mut().find(|x| x.key == kv.key) {
                    Some(x) => x.value = kv.value,
                    None => list.push(kv),
                }
            }
        }
        return;
    }
    set_in_list(list, keys, v);
}

fn remove_root_list(list: &mut Vec<KeyValue>, keys: &[String]) -> Option<Value> {
    if keys.is_empty() {
        let all = std::mem::take(list);
        return Some(Value::KvlistValue(KeyValueList { values: all }));
    }
    remove_in_list(list, keys)
}

fn get_in_value<'a>(v: &'a Value, keys: &[String]) -> Option<&'a Value> {
    match keys.split_first() {
        None => Some(v),
        Some(_) => match v {
            Value::KvlistValue(l) => get_in_list(&l.values, keys),
            _ => None,
        },
    }
}

fn get_in_list<'a>(list: &'a [KeyValue], keys: &[String]) -> Option<&'a Value> {
    let (first, rest) = keys.split_first()?;
    let v = list
        .iter()
        .find(|kv| &kv.key == first)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    get_in_value(v, rest)
}

fn set_in_list(list: &mut Vec<KeyValue>, keys: &[String], v: Value) {
    let Some((first, rest)) = keys.split_first() else {
        return;
    };
    let idx = match list.iter().position(|kv| &kv.key == first) {
        Some(i) => i,
        None => {
            list.push(KeyValue {
                key: first.clone(),
                value: None,
                ..Default::default()
            });
            list.len() - 1
        }
    };
    let slot = &mut list[idx].value;
    if rest.is_empty() {
        *slot = Some(AnyValue { value: Some(v) });
        return;
    }
    let any = slot.get_or_insert_with(AnyValue::default);
    if !matches!(any.value, Some(Value::KvlistValue(_))) {
        any.value = Some(Value::KvlistValue(KeyValueList::default()));
    }
    if let Some(Value::KvlistValue(l)) = &mut any.value {
        set_in_list(&mut l.values, rest, v);
    }
}

fn remove_in_list(list: &mut Vec<KeyValue>, keys: &[String]) -> Option<Value> {
    let (first, rest) = keys.split_first()?;
    let idx = list.iter().position(|kv| &kv.key == first)?;
    if rest.is_empty() {
        return list.remove(idx).value.and_then(|a| a.value);
    }
    match list[idx].value.as_mut().and_then(|a| a.value.as_mut()) {
        Some(Value::KvlistValue(l)) => remove_in_list(&mut l.values, rest),
        _ => None,
    }
}

/// A JSON value as an OTLP value: objects become key-value lists, as stanza's json_parser does.
pub fn json_to_value(j: serde_json::Value) -> Value {
    use serde_json::Value as J;
    match j {
        J::Null => Value::StringValue(String::new()),
        J::Bool(b) => Value::BoolValue(b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::IntValue(i),
            None => Value::DoubleValue(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => Value::StringValue(s),
        J::Array(a) => Value::ArrayValue(vigil_core::otlp::common::v1::ArrayValue {
            values: a
                .into_iter()
                .map(|x| AnyValue {
                    value: Some(json_to_value(x)),
                })
                .collect(),
        }),
        J::Object(o) => Value::KvlistValue(KeyValueList {
            values: o
                .into_iter()
                .map(|(k, v)| KeyValue {
                    key: k,
                    value: Some(AnyValue {
                        value: Some(json_to_value(v)),
                    }),
                    ..Default::default()
                })
                .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse_and_round_trip() {
        let f = Field::parse("attributes[\"k.8s\"].x").unwrap();
        assert_eq!(f.root, Root::Attributes);
        assert_eq!(f.keys, vec!["k.8s".to_string(), "x".to_string()]);
        assert!(Field::parse("bogus.x").is_err());
        let mut e = Entry::text("hi".into(), 0);
        f.set(&mut e, Value::IntValue(3));
        assert_eq!(f.get(&e), Some(&Value::IntValue(3)));
        assert_eq!(f.remove(&mut e), Some(Value::IntValue(3)));
        assert_eq!(f.get(&e), None);
        let b = Field::parse("body.a").unwrap();
        b.set(&mut e, Value::StringValue("v".into()));
        assert_eq!(b.get_str(&e), Some("v"));
    }
}
