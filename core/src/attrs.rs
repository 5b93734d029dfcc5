//! Small helpers over OTLP `KeyValue` lists, used by every component that reads or writes attributes.

use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};

pub fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

pub fn get_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match get(attrs, key) {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// Sets `key`, replacing an existing value.
pub fn upsert(attrs: &mut Vec<KeyValue>, key: &str, value: Value) {
    let any = Some(AnyValue { value: Some(value) });
    match attrs.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => kv.value = any,
        None => attrs.push(KeyValue {
            key: key.to_string(),
            value: any,
            ..Default::default()
        }),
    }
}

pub fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub fn kv_str(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, Value::StringValue(value.into()))
}

pub fn kv_i64(key: &str, value: i64) -> KeyValue {
    kv(key, Value::IntValue(value))
}

pub fn kv_f64(key: &str, value: f64) -> KeyValue {
    kv(key, Value::DoubleValue(value))
}

/// Renders attributes as `key=value` items joined by `sep`, values as [`value_to_string`] shows them
/// (a missing value as empty), for log lines and the debug exporter.
pub fn attrs_to_string(list: &[KeyValue], sep: &str) -> String {
    list.iter()
        .map(|kv| {
            let v = kv
                .value
                .as_ref()
                .and_then(|v| v.value.as_ref())
                .map(value_to_string);
            format!("{}={}", kv.key, v.unwrap_or_default())
        })
        .collect::<Vec<_>>()
        .join(sep)
}

/// Renders a value as text, the way otelcol's debug exporter and Prometheus labels show it.
pub fn value_to_string(v: &Value) -> String {
    match v {
        Value::StringValue(s) => s.clone(),
        Value::BoolValue(b) => b.to_string(),
        Value::IntValue(i) => i.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        // Only profiles use string-table indices; there is no table to resolve them against here.
        Value::StringValueStrindex(i) => format!("strindex:{i}"),
        Value::BytesValue(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Value::ArrayValue(a) => {
            let items: Vec<String> = a
                .values
                .iter()
                .map(|x| x.value.as_ref().map(value_to_string).unwrap_or_default())
                .collect();
            format!("[{}]", items.join(","))
        }
        Value::KvlistValue(l) => {
            let items: Vec<String> = l
                .values
                .iter()
                .map(|kv| {
                    format!(
                        "{}:{}",
                        kv.key,
                        kv.value
                            .as_ref()
                            .and_then(|v| v.value.as_ref())
                            .map(value_to_string)
                            .unwrap_or_default()
                    )
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
    }
}
