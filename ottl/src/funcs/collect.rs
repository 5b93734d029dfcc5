//! Converters and editors over maps and lists: `Keys`, `Values`, `Index`, `Sort`, `SliceToMap`,
//! `Coalesce`, `IsEmpty`, `ParseSeverity`, and the editors `delete_index` and `stringify_all`.

use super::{arg, edit_map, target_path, Func};
use crate::eval::compare;
use crate::{kv, Call, CmpOp, Target, Value};
use base64::Engine as _;
use vigil_core::otlp::common::v1::AnyValue;

pub(super) fn call(c: &Call, t: &dyn Target) -> Option<Result<Value, String>> {
    let f = c.func;
    Some(match f {
        Func::Keys | Func::Values => arg(c, 0, t).and_then(|v| match v {
            Value::Map(m) => Ok(Value::List(
                m.into_iter()
                    .map(|x| {
                        if f == Func::Keys {
                            Value::Str(x.key).into_any()
                        } else {
                            x.value.unwrap_or_default()
                        }
                    })
                    .collect(),
            )),
            o => Err(format!(
                "{}: expected a map, got a {}",
                super::name(f),
                o.kind()
            )),
        }),
        Func::Index => (|| {
            let needle = arg(c, 1, t)?;
            Ok(Value::Int(match arg(c, 0, t)? {
                // A byte offset, as Go's strings.Index gives.
                Value::Str(s) => match needle {
                    Value::Str(n) => s.find(&n).map_or(-1, |i| i as i64),
                    o => {
                        return Err(format!(
                            "Index: searching a string for a {}, not a string",
                            o.kind()
                        ))
                    }
                },
                Value::List(l) => l
                    .iter()
                    .position(|x| compare(&Value::from_any(Some(x)), CmpOp::Eq, &needle))
                    .map_or(-1, |i| i as i64),
                o => {
                    return Err(format!(
                        "Index: expected a string or a slice, got a {}",
                        o.kind()
                    ))
                }
            }))
        })(),
        Func::Sort => (|| {
            let l = match arg(c, 0, t)? {
                Value::List(l) => l,
                o => return Err(format!("Sort: expected a slice, got a {}", o.kind())),
            };
            let desc = match arg(c, 1, t)? {
                Value::Nil => false,
                Value::Str(o) if o == "asc" => false,
                Value::Str(o) if o == "desc" => true,
                o => {
                    return Err(format!(
                        "Sort: order must be \"asc\" or \"desc\", got {:?}",
                        o.to_text()
                    ))
                }
            };
            sort(l, desc).map(Value::List)
        })(),
        Func::SliceToMap => slice_to_map(c, t),
        Func::Coalesce => arg(c, 0, t).and_then(|v| match v {
            Value::List(l) => Ok(l
                .iter()
                .map(|x| Value::from_any(Some(x)))
                .find(|x| *x != Value::Nil)
                .unwrap_or(Value::Nil)),
            o => Err(format!(
                "Coalesce: expected a list of values, got a {}",
                o.kind()
            )),
        }),
        Func::IsEmpty => arg(c, 0, t).map(|v| {
            Value::Bool(match v {
                Value::Nil => true,
                Value::Str(s) => s.is_empty(),
                Value::Int(i) => i == 0,
                Value::Double(d) => d == 0.0,
                Value::Bool(b) => !b,
                // An unset trace or span ID is all zeroes; other bytes are empty only with none.
                Value::Bytes(b) => {
                    b.is_empty() || (matches!(b.len(), 8 | 16) && b.iter().all(|x| *x == 0))
                }
                Value::Map(m) => m.is_empty(),
                Value::List(l) => l.is_empty(),
                Value::Time(_) => false,
            })
        }),
        Func::ParseSeverity => parse_severity(c, t),
        _ => return None,
    })
}

/// The editors of this module.
pub(super) fn edit(c: &Call, t: &mut dyn Target) -> Option<Result<(), String>> {
    Some(match c.func {
        Func::DeleteIndex => delete_index(c, t),
        Func::StringifyAll => edit_map(c, t, |m| {
            for x in m.iter_mut() {
                let s = match Value::from_any(x.value.as_ref()) {
                    Value::Str(_) => continue,
                    Value::Bytes(b) => base64::engine::general_purpose::STANDARD.encode(b),
                    v => v.to_text(),
                };
                x.value = Some(Value::Str(s).into_any());
            }
        }),
        _ => return None,
    })
}

fn delete_index(c: &Call, t: &mut dyn Target) -> Result<(), String> {
    let p = target_path(c)?;
    let mut l = match t.get(p)? {
        Value::List(l) => l,
        Value::Nil => return Ok(()),
        o => {
            return Err(format!(
                "delete_index: {} is a {}, not a slice",
                p.text,
                o.kind()
            ))
        }
    };
    let int = |v: Value, what: &str| match v {
        Value::Int(i) => Ok(i),
        o => Err(format!(
            "delete_index: {what} must be an int, got a {}",
            o.kind()
        )),
    };
    let start = int(arg(c, 1, t)?, "startIndex")?;
    let end = match arg(c, 2, t)? {
        Value::Nil => start.saturating_add(1),
        v => int(v, "endIndex")?,
    };
    let n = l.len() as i64;
    if start < 0 || start >= n {
        return Err(format!(
            "delete_index: startIndex {start} is outside a slice of {n}"
        ));
    }
    if end < start || end > n {
        return Err(format!(
            "delete_index: endIndex {end} must be between startIndex {start} and the length {n}"
        ));
    }
    if start == end {
        return Ok(());
    }
    l.drain(start as usize..end as usize);
    let p = p.clone();
    t.set(&p, Value::List(l))
}

/// otelcol's `Sort`: ints as ints, doubles (or ints and doubles) as numbers, strings as strings, and
/// any other mix of those and bools by their text; the items keep their types. Maps, slices and
/// bytes cannot be sorted.
fn sort(mut l: Vec<AnyValue>, desc: bool) -> Result<Vec<AnyValue>, String> {
    let vals: Vec<Value> = l.iter().map(|x| Value::from_any(Some(x))).collect();
    let (mut ints, mut doubles) = (0, 0);
    for v in &vals {
        match v {
            Value::Int(_) => ints += 1,
            Value::Double(_) => doubles += 1,
            Value::Str(_) | Value::Bool(_) => {}
            o => {
                return Err(format!(
                    "Sort: a slice holding a {} cannot be sorted",
                    o.kind()
                ))
            }
        }
    }
    let n = vals.len();
    let numeric = ints + doubles == n;
    let mut idx: Vec<usize> = (0..n).collect();
    let num = |v: &Value| match v {
        Value::Int(i) => *i as f64,
        Value::Double(d) => *d,
        _ => 0.0,
    };
    if numeric && doubles == 0 {
        idx.sort_by_key(|&i| match vals[i] {
            Value::Int(x) => x,
            _ => 0,
        });
    } else if numeric {
        idx.sort_by(|&a, &b| num(&vals[a]).total_cmp(&num(&vals[b])));
    } else {
        let texts: Vec<String> = vals.iter().map(Value::to_text).collect();
        idx.sort_by(|&a, &b| texts[a].cmp(&texts[b]));
    }
    if desc {
        idx.reverse();
    }
    let mut taken: Vec<Option<AnyValue>> = l.drain(..).map(Some).collect();
    Ok(idx.into_iter().filter_map(|i| taken[i].take()).collect())
}

fn string_list(v: Value, what: &str) -> Result<Option<Vec<String>>, String> {
    match v {
        Value::Nil => Ok(None),
        Value::List(l) => Ok(Some(
            l.iter()
                .map(|x| Value::from_any(Some(x)).to_text())
                .collect(),
        )),
        o => Err(format!(
            "SliceToMap: {what} must be a list of strings, got a {}",
            o.kind()
        )),
    }
}

fn at_path(v: &Value, path: &[String]) -> Value {
    let mut cur = v.clone();
    for k in path {
        cur = match cur {
            Value::Map(m) => m
                .into_iter()
                .find(|x| &x.key == k)
                .map_or(Value::Nil, |x| Value::from_any(x.value.as_ref())),
            _ => Value::Nil,
        };
    }
    cur
}

fn slice_to_map(c: &Call, t: &dyn Target) -> Result<Value, String> {
    let items = match arg(c, 0, t)? {
        Value::List(l) => l,
        o => return Err(format!("SliceToMap: expected a slice, got a {}", o.kind())),
    };
    let key_path = string_list(arg(c, 1, t)?, "keyPath")?.filter(|p| !p.is_empty());
    let value_path = string_list(arg(c, 2, t)?, "valuePath")?.filter(|p| !p.is_empty());
    let mut out: Vec<vigil_core::otlp::common::v1::KeyValue> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let v = Value::from_any(Some(item));
        if !matches!(v, Value::Map(_)) {
            return Err(format!("SliceToMap: item {i} is a {}, not a map", v.kind()));
        }
        let key = match &key_path {
            None => i.to_string(),
            Some(p) => match at_path(&v, p) {
                Value::Str(s) => s,
                _ => {
                    return Err(format!(
                        "SliceToMap: item {i} has no string at keyPath {p:?}"
                    ))
                }
            },
        };
        let value = match &value_path {
            None => v,
            Some(p) => match at_path(&v, p) {
                Value::Nil => {
                    return Err(format!(
                        "SliceToMap: item {i} has nothing at valuePath {p:?}"
                    ))
                }
                x => x,
            },
        };
        match out.iter_mut().find(|x| x.key == key) {
            Some(x) => *x = kv(key, value),
            None => out.push(kv(key, value)),
        }
    }
    Ok(Value::Map(out))
}

/// `ParseSeverity(target, mapping)`: the first level of the mapping (in its order) with a criterion
/// the target meets: `{"equals": [strings]}` for a string target, `{"range": {"min": a, "max": b}}`
/// (inclusive) or `{"range": "2xx"}` … `"5xx"` for an int target. No match is an error.
fn parse_severity(c: &Call, t: &dyn Target) -> Result<Value, String> {
    let target = arg(c, 0, t)?;
    if !matches!(target, Value::Str(_) | Value::Int(_)) {
        return Err(format!(
            "ParseSeverity: the level must be a string or an int, got a {}",
            target.kind()
        ));
    }
    let mapping = match arg(c, 1, t)? {
        Value::Map(m) => m,
        o => {
            return Err(format!(
                "ParseSeverity: the mapping must be a map, got a {}",
                o.kind()
            ))
        }
    };
    for level in &mapping {
        let criteria = match Value::from_any(level.value.as_ref()) {
            Value::List(l) => l,
            o => {
                return Err(format!(
                    "ParseSeverity: level {:?} must map to a list of criteria, got a {}",
                    level.key,
                    o.kind()
                ))
            }
        };
        for cr in &criteria {
            let Value::Map(cr) = Value::from_any(Some(cr)) else {
                return Err(format!(
                    "ParseSeverity: level {:?} has a criterion that is not a map",
                    level.key
                ));
            };
            for x in cr {
                let v = Value::from_any(x.value.as_ref());
                let hit = match (x.key.as_str(), &target, v) {
                    ("equals", Value::Str(s), Value::List(l)) => {
                        l.iter().any(|e| Value::from_any(Some(e)) == Value::Str(s.clone()))
                    }
                    ("equals", _, Value::List(_)) => false,
                    ("range", Value::Int(n), Value::Map(r)) => {
                        let bound = |k: &str| match Value::from_any(
                            r.iter().find(|b| b.key == k).and_then(|b| b.value.as_ref()),
                        ) {
                            Value::Int(i) => Some(i),
                            Value::Double(d) => Some(d as i64),
                            _ => None,
                        };
                        match (bound("min"), bound("max")) {
                            (Some(lo), Some(hi)) => (lo..=hi).contains(n),
                            _ => {
                                return Err(format!(
                                    "ParseSeverity: level {:?} has a range without min and max",
                                    level.key
                                ))
                            }
                        }
                    }
                    ("range", Value::Int(n), Value::Str(p)) => {
                        let lo = match p.as_str() {
                            "2xx" => 200,
                            "3xx" => 300,
                            "4xx" => 400,
                            "5xx" => 500,
                            o => {
                                return Err(format!(
                                    "ParseSeverity: unknown range placeholder {o:?}: expected 2xx, 3xx, 4xx or 5xx"
                                ))
                            }
                        };
                        (lo..lo + 100).contains(n)
                    }
                    ("range", _, Value::Map(_) | Value::Str(_)) => false,
                    (k, _, _) => {
                        return Err(format!(
                            "ParseSeverity: level {:?} has an unknown criterion {k:?} (expected equals or range)",
                            level.key
                        ))
                    }
                };
                if hit {
                    return Ok(Value::Str(level.key.clone()));
                }
            }
        }
    }
    Err(format!(
        "ParseSeverity: no level matches {:?}",
        target.to_text()
    ))
}
