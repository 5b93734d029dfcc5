//! stanza, the log-processing library inside otelcol's `filelog` and `syslog` receivers (and the other
//! stanza-based ones), as vigil has it: the log [`entry`] and its field paths, and the [`operators`]
//! (parsers, transformers, `router`, `recombine`, …) compiled once into a pipeline that each input runs
//! its entries through. It lives here, below the receivers that use it, so that no receiver reaches
//! into another's internals; expressions go through the shared OTTL engine (`vigil_ottl`).

pub mod entry;
pub mod operators;

use serde::Deserialize;
use serde_json::Value;
use vigil_core::otlp::common::v1::{InstrumentationScope, KeyValue};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::resource::v1::Resource;

/// A byte size as otelcol's `helper.ByteSize` takes it: a number, or text such as `1kb`, `1KiB`, `16MiB`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl serde::Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0 as u64)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => n
                .as_u64()
                .map(|n| ByteSize(n as usize))
                .ok_or_else(|| serde::de::Error::custom("expected a non-negative byte size")),
            Value::String(s) => parse_size(&s)
                .map(ByteSize)
                .map_err(serde::de::Error::custom),
            _ => Err(serde::de::Error::custom(
                "expected a byte size such as 1024 or \"1MiB\"",
            )),
        }
    }
}

/// Parses `1kb` (1000), `1KiB` (1024), `5MB`, `5MiB`, `1GB`, `1GiB` or a bare number of bytes.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| {
        format!("invalid byte size {s:?}: expected a number and a unit such as 1MiB")
    })?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "kib" => 1024.0,
        "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        u => {
            return Err(format!(
                "invalid byte size {s:?}: unknown unit {u:?} (use B, KB, KiB, MB, MiB, GB or GiB)"
            ))
        }
    };
    Ok((n * mult) as usize)
}

/// Turns entries into OTLP resource logs, grouping consecutive entries that share resource
/// attributes, and within those the ones that share a scope name, as stanza's converter does.
#[derive(Debug, Default)]
pub struct Grouper {
    groups: Vec<(Vec<KeyValue>, Vec<ScopeGroup>)>,
}

/// Records under one scope name.
type ScopeGroup = (String, Vec<LogRecord>);

impl Grouper {
    pub fn push(&mut self, e: entry::Entry) {
        let (res, scope, rec) = e.into_record();
        let scopes = match self.groups.last_mut() {
            Some((r, scopes)) if *r == res => scopes,
            _ => {
                self.groups.push((res, Vec::new()));
                match self.groups.last_mut() {
                    Some((_, scopes)) => scopes,
                    None => return,
                }
            }
        };
        match scopes.last_mut() {
            Some((s, recs)) if *s == scope => recs.push(rec),
            _ => scopes.push((scope, vec![rec])),
        }
    }

    pub fn take(&mut self) -> Vec<ResourceLogs> {
        self.groups
            .drain(..)
            .map(|(attrs, scopes)| ResourceLogs {
                resource: if attrs.is_empty() {
                    None
                } else {
                    Some(Resource {
                        attributes: attrs,
                        ..Default::default()
                    })
                },
                scope_logs: scopes
                    .into_iter()
                    .map(|(name, recs)| ScopeLogs {
                        scope: if name.is_empty() {
                            None
                        } else {
                            Some(InstrumentationScope {
                                name,
                                ..Default::default()
                            })
                        },
                        log_records: recs,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect()
    }
}
