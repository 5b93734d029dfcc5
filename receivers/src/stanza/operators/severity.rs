//! Severity mapping for the `severity` operator and the parsers' `severity:` blocks. Values are mapped
//! to OTel severity numbers (TRACE 1 … FATAL4 24) through stanza's default names plus any `mapping`
//! the config gives: single values, lists, `{min, max}` ranges, and `2xx`-style HTTP classes.

use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};
use vigil_core::otlp::common::v1::any_value::Value;

/// OTel severity names as stanza's `mapping` keys spell them, with their numbers.
const LEVELS: &[(&str, i32)] = &[
    ("trace", 1),
    ("trace2", 2),
    ("trace3", 3),
    ("trace4", 4),
    ("debug", 5),
    ("debug2", 6),
    ("debug3", 7),
    ("debug4", 8),
    ("info", 9),
    ("info2", 10),
    ("info3", 11),
    ("info4", 12),
    ("warn", 13),
    ("warn2", 14),
    ("warn3", 15),
    ("warn4", 16),
    ("error", 17),
    ("error2", 18),
    ("error3", 19),
    ("error4", 20),
    ("fatal", 21),
    ("fatal2", 22),
    ("fatal3", 23),
    ("fatal4", 24),
];

/// The OTel severity number of a level name, case-insensitively.
pub fn level_number(name: &str) -> Option<i32> {
    let n = name.to_ascii_lowercase();
    LEVELS.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
}

/// A compiled mapping from raw values to severity numbers.
#[derive(Debug, Clone, Default)]
pub struct SeverityMap {
    exact: HashMap<String, i32>,
    ranges: Vec<(i64, i64, i32)>,
}

impl SeverityMap {
    /// stanza's `default` preset plus the config's `mapping`.
    pub fn new(preset: &str, mapping: &BTreeMap<String, Json>) -> Result<SeverityMap, String> {
        let mut m = SeverityMap::default();
        match preset {
            "default" => {
                for (k, v) in LEVELS {
                    m.exact.insert((*k).to_string(), *v);
                }
                for (k, v) in [
                    ("warning", 13),
                    ("err", 17),
                    ("critical", 21),
                    ("crit", 21),
                    ("panic", 21),
                    ("notice", 10),
                ] {
                    m.exact.insert(k.to_string(), v);
                }
            }
            "none" => {}
            other => {
                return Err(format!(
                    "unknown preset {other:?}: expected default or none"
                ))
            }
        }
        for (level, values) in mapping {
            // As stanza reads a mapping key: a severity name or number (`warn`, `13`); any other key
            // (`warning`, `notice`) is accepted and maps its values to the default severity, 0.
            let num = level_number(level)
                .or_else(|| {
                    level
                        .trim()
                        .parse::<i32>()
                        .ok()
                        .filter(|n| (1..=24).contains(n))
                })
                .unwrap_or(0);
            let list = match values {
                Json::Array(a) => a.clone(),
                other => vec![other.clone()],
            };
            for v in list {
                match v {
                    Json::String(s) => {
                        if let Some((lo, hi)) = http_class(&s) {
                            m.ranges.push((lo, hi, num));
                        } else {
                            m.exact.insert(s.to_ascii_lowercase(), num);
                        }
                    }
                    Json::Number(n) => {
                        m.exact.insert(n.to_string(), num);
                    }
                    Json::Object(o) => {
                        let lo = o.get("min").and_then(Json::as_i64);
                        let hi = o.get("max").and_then(Json::as_i64);
                        match (lo, hi) {
                            (Some(lo), Some(hi)) => m.ranges.push((lo, hi, num)),
                            _ => {
                                return Err(format!(
                                    "mapping {level:?}: a range needs integer min and max"
                                ))
                            }
                        }
                    }
                    other => return Err(format!("mapping {level:?}: unsupported value {other}")),
                }
            }
        }
        Ok(m)
    }

    /// The severity number of a raw value; `None` when nothing maps it.
    pub fn lookup(&self, v: &Value) -> Option<i32> {
        let (text, num) = match v {
            Value::StringValue(s) => (s.to_ascii_lowercase(), s.trim().parse::<i64>().ok()),
            Value::IntValue(i) => (i.to_string(), Some(*i)),
            Value::DoubleValue(d) => (d.to_string(), None),
            Value::BoolValue(b) => (b.to_string(), None),
            _ => return None,
        };
        if let Some(n) = self.exact.get(&text) {
            return Some(*n);
        }
        let n = num?;
        self.ranges
            .iter()
            .find(|(lo, hi, _)| (*lo..=*hi).contains(&n))
            .map(|(_, _, s)| *s)
    }
}

fn http_class(s: &str) -> Option<(i64, i64)> {
    match s {
        "1xx" => Some((100, 199)),
        "2xx" => Some((200, 299)),
        "3xx" => Some((300, 399)),
        "4xx" => Some((400, 499)),
        "5xx" => Some((500, 599)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_lists_ranges_and_http_classes() {
        let mapping: BTreeMap<String, Json> = serde_json::from_value(json!({
            "error": ["oops", 500],
            "warn": {"min": 400, "max": 499},
            "info": "2xx",
        }))
        .unwrap();
        let m = SeverityMap::new("default", &mapping).unwrap();
        assert_eq!(m.lookup(&Value::StringValue("WARNING".into())), Some(13));
        assert_eq!(m.lookup(&Value::StringValue("oops".into())), Some(17));
        assert_eq!(m.lookup(&Value::IntValue(500)), Some(17));
        assert_eq!(m.lookup(&Value::StringValue("404".into())), Some(13));
        assert_eq!(m.lookup(&Value::IntValue(204)), Some(9));
        assert_eq!(m.lookup(&Value::StringValue("meh".into())), None);
    }

    #[test]
    fn any_mapping_key_is_accepted_as_stanza_does() {
        let mapping: BTreeMap<String, Json> = serde_json::from_value(json!({
            "warning": "W",
            "error": "E",
            "14": "W2",
        }))
        .unwrap();
        let m = SeverityMap::new("default", &mapping).unwrap();
        assert_eq!(m.lookup(&Value::StringValue("E".into())), Some(17));
        assert_eq!(m.lookup(&Value::StringValue("W2".into())), Some(14));
        // Not a severity name: its values map to the default severity.
        assert_eq!(m.lookup(&Value::StringValue("W".into())), Some(0));
    }
}
