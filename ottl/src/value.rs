//! The values expressions compute with, and how they map to and from OTLP's `AnyValue`.

use vigil_core::otlp::common::v1::any_value::Value as Any;
use vigil_core::otlp::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};

/// A value during evaluation. Maps and lists keep OTLP's own types, so that reading attributes and
/// writing them back does not convert every element.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(String),
    Bytes(Vec<u8>),
    Map(Vec<KeyValue>),
    List(Vec<AnyValue>),
    /// A point in time, as nanoseconds since the Unix epoch (OTTL's `time.Time`).
    Time(i64),
}

impl Value {
    /// The value an OTLP `AnyValue` holds; an absent value is nil.
    pub fn from_any(v: Option<&AnyValue>) -> Value {
        v.and_then(|a| a.value.as_ref())
            .map_or(Value::Nil, Value::from_inner)
    }

    /// The value of an OTLP `AnyValue`'s inner value.
    pub fn from_inner(v: &Any) -> Value {
        match v {
            Any::StringValue(s) => Value::Str(s.clone()),
            Any::BoolValue(b) => Value::Bool(*b),
            Any::IntValue(i) => Value::Int(*i),
            Any::DoubleValue(d) => Value::Double(*d),
            Any::BytesValue(b) => Value::Bytes(b.clone()),
            Any::ArrayValue(a) => Value::List(a.values.clone()),
            Any::KvlistValue(l) => Value::Map(l.values.clone()),
            // Profiles' string-table indices have no table here.
            Any::StringValueStrindex(i) => Value::Int(i64::from(*i)),
        }
    }

    /// The OTLP value to store; nil becomes an empty `AnyValue`.
    pub fn into_any(self) -> AnyValue {
        let v = match self {
            Value::Nil => None,
            Value::Bool(b) => Some(Any::BoolValue(b)),
            Value::Int(i) | Value::Time(i) => Some(Any::IntValue(i)),
            Value::Double(d) => Some(Any::DoubleValue(d)),
            Value::Str(s) => Some(Any::StringValue(s)),
            Value::Bytes(b) => Some(Any::BytesValue(b)),
            Value::Map(m) => Some(Any::KvlistValue(KeyValueList { values: m })),
            Value::List(l) => Some(Any::ArrayValue(ArrayValue { values: l })),
        };
        AnyValue { value: v }
    }

    /// The name of the value's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Double(_) => "double",
            Value::Str(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Map(_) => "map",
            Value::List(_) => "slice",
            Value::Time(_) => "time",
        }
    }

    /// The text form OTTL's `String` converter and `Concat` give: maps and lists as JSON, bytes as hex.
    pub fn to_text(&self) -> String {
        match self {
            Value::Nil => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Double(d) => d.to_string(),
            Value::Str(s) => s.clone(),
            Value::Bytes(b) => hex::encode(b),
            Value::Map(_) | Value::List(_) => self.to_json().to_string(),
            Value::Time(t) => chrono::DateTime::from_timestamp_nanos(*t)
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        }
    }

    /// The value as JSON (maps and lists recursively).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Nil => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) | Value::Time(i) => J::from(*i),
            Value::Double(d) => serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Bytes(b) => J::String(hex::encode(b)),
            Value::Map(m) => J::Object(
                m.iter()
                    .map(|kv| (kv.key.clone(), Value::from_any(kv.value.as_ref()).to_json()))
                    .collect(),
            ),
            Value::List(l) => J::Array(
                l.iter()
                    .map(|a| Value::from_any(Some(a)).to_json())
                    .collect(),
            ),
        }
    }

    /// The value a JSON document holds (`ParseJSON`): numbers are doubles, as in OTTL.
    pub fn from_json(j: serde_json::Value) -> Value {
        use serde_json::Value as J;
        match j {
            J::Null => Value::Nil,
            J::Bool(b) => Value::Bool(b),
            J::Number(n) => Value::Double(n.as_f64().unwrap_or(f64::NAN)),
            J::String(s) => Value::Str(s),
            J::Array(a) => Value::List(
                a.into_iter()
                    .map(|x| Value::from_json(x).into_any())
                    .collect(),
            ),
            J::Object(o) => Value::Map(
                o.into_iter()
                    .map(|(k, v)| kv(k, Value::from_json(v)))
                    .collect(),
            ),
        }
    }
}

/// A key-value pair holding a value.
pub fn kv(key: impl Into<String>, v: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(v.into_any()),
        ..Default::default()
    }
}

/// A map or list index in a path: `["key"]` or `[0]`.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Str(String),
    Int(i64),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Str(s) => write!(f, "[{s:?}]"),
            Key::Int(i) => write!(f, "[{i}]"),
        }
    }
}

/// Reads `keys` below a value: map keys into maps, integer keys into lists. A missing key is nil; a
/// key of the wrong kind for the value is an error.
pub fn index(v: Value, keys: &[Key]) -> Result<Value, String> {
    let mut cur = v;
    for k in keys {
        cur = match (cur, k) {
            (Value::Nil, _) => return Ok(Value::Nil),
            (Value::Map(m), Key::Str(s)) => m
                .into_iter()
                .find(|kv| &kv.key == s)
                .map_or(Value::Nil, |kv| Value::from_any(kv.value.as_ref())),
            (Value::List(l), Key::Int(i)) => {
                let n = l.len();
                let item = usize::try_from(*i).ok().and_then(|i| l.into_iter().nth(i));
                match item {
                    Some(a) => Value::from_any(Some(&a)),
                    None => return Err(format!("index {i} out of range for a slice of {n}")),
                }
            }
            (other, k) => {
                return Err(format!("cannot index a {} with {k}", other.kind()));
            }
        };
    }
    Ok(cur)
}

/// Reads `keys` from a key-value list without copying the whole list.
pub fn get_in_kvs(kvs: &[KeyValue], keys: &[Key]) -> Result<Value, String> {
    match keys.split_first() {
        None => Ok(Value::Map(kvs.to_vec())),
        Some((Key::Str(k), rest)) => get_in_any(
            kvs.iter()
                .find(|kv| &kv.key == k)
                .and_then(|kv| kv.value.as_ref()),
            rest,
        ),
        Some((k, _)) => Err(format!("cannot index a map with {k}")),
    }
}

/// Reads `keys` below an `AnyValue` without copying what is not returned.
pub fn get_in_any(v: Option<&AnyValue>, keys: &[Key]) -> Result<Value, String> {
    let Some((first, rest)) = keys.split_first() else {
        return Ok(Value::from_any(v));
    };
    match (v.and_then(|a| a.value.as_ref()), first) {
        (None, _) => Ok(Value::Nil),
        (Some(Any::KvlistValue(l)), Key::Str(_)) => get_in_kvs(&l.values, keys),
        (Some(Any::ArrayValue(a)), Key::Int(i)) => {
            match usize::try_from(*i).ok().and_then(|i| a.values.get(i)) {
                Some(x) => get_in_any(Some(x), rest),
                None => Err(format!(
                    "index {i} out of range for a slice of {}",
                    a.values.len()
                )),
            }
        }
        (Some(_), k) => Err(format!(
            "cannot index a {} with {k}",
            Value::from_any(v).kind()
        )),
    }
}

/// Writes `v` at `keys` inside a key-value list, creating maps on the way as OTTL does.
pub fn set_in_kvs(kvs: &mut Vec<KeyValue>, keys: &[Key], v: Value) -> Result<(), String> {
    match keys.split_first() {
        None => match v {
            Value::Map(m) => {
                *kvs = m;
                Ok(())
            }
            other => Err(format!("cannot set a map to a {}", other.kind())),
        },
        Some((Key::Str(k), rest)) => {
            let pos = match kvs.iter().position(|kv| &kv.key == k) {
                Some(p) => p,
                None => {
                    if rest.is_empty() && v == Value::Nil {
                        return Ok(());
                    }
                    kvs.push(kv(k.clone(), Value::Nil));
                    kvs.len() - 1
                }
            };
            let slot = kvs[pos].value.get_or_insert_with(AnyValue::default);
            set_in_any(slot, rest, v)
        }
        Some((k, _)) => Err(format!("cannot index a map with {k}")),
    }
}

/// Writes `v` at `keys` below an `AnyValue`.
pub fn set_in_any(slot: &mut AnyValue, keys: &[Key], v: Value) -> Result<(), String> {
    let Some((first, rest)) = keys.split_first() else {
        *slot = v.into_any();
        return Ok(());
    };
    if slot.value.is_none() && matches!(first, Key::Str(_)) {
        slot.value = Some(Any::KvlistValue(KeyValueList::default()));
    }
    match (slot.value.as_mut(), first) {
        (Some(Any::KvlistValue(l)), Key::Str(_)) => set_in_kvs(&mut l.values, keys, v),
        (Some(Any::ArrayValue(a)), Key::Int(i)) => {
            let n = a.values.len();
            match usize::try_from(*i).ok().and_then(|i| a.values.get_mut(i)) {
                Some(x) => set_in_any(x, rest, v),
                None => Err(format!("index {i} out of range for a slice of {n}")),
            }
        }
        (_, k) => Err(format!(
            "cannot index a {} with {k}",
            Value::from_any(Some(slot)).kind()
        )),
    }
}
