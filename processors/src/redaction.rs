//! `redaction`: otelcol's redaction processor. On every attribute map (resource, scope, span, span
//! event, data point, log record) and on log bodies: keys not in `allowed_keys` are removed (unless
//! `allow_all_keys`), keys in `ignored_keys` (or matching `ignored_key_patterns`) pass untouched,
//! values of keys matching `blocked_key_patterns` are masked whole, and the parts of values matching
//! `blocked_values` are masked, unless the value matches `allowed_values`. Masking writes `****`, or
//! the hex digest of the matched text with `hash_function` (md5, sha1, sha3 = SHA3-256,
//! hmac-sha256, hmac-sha512 with `hmac_key`). With `summary: info` or `debug` the processor adds
//! otelcol's `redaction.*` counts (and with `debug` the key lists) to the map it changed.
//!
//!
//! `url_sanitizer` (URL paths as route templates) and `db_sanitizer` (SQL, Redis, Valkey,
//! Memcached, MongoDB, Elasticsearch and OpenSearch statements with their literals as `?`) run after
//! `blocked_values` on the attributes they list (a database kind only where the map's
//! `db.system.name`/`db.system` is one of its systems), on every string of log bodies, and on span
//! names; [`sanitize`] says how close they come to otelcol's.

mod sanitize;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sha1::Digest;
use std::collections::HashSet;
use std::sync::Arc;
use vigil_core::factory::{self, DynProcessorFactory, FactoryBase, ProcessorFactory};
use vigil_core::otlp::common::v1::{any_value::Value, AnyValue, KeyValue};
use vigil_core::otlp::metrics::v1::metric::Data;
use vigil_core::{
    Component, ComponentId, ConfigError, ConsumeError, Consumer, Processor, Settings, Signal,
    Stability, Telemetry,
};

/// The `redaction` processor config.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionConfig {
    pub allow_all_keys: bool,
    pub allowed_keys: Vec<String>,
    pub ignored_keys: Vec<String>,
    pub ignored_key_patterns: Vec<String>,
    pub blocked_key_patterns: Vec<String>,
    pub blocked_values: Vec<String>,
    pub allowed_values: Vec<String>,
    /// Mask non-string values too, by their text.
    pub redact_all_types: bool,
    /// `""` (mask with `****`), `md5`, `sha1`, `sha3`, `hmac-sha256` or `hmac-sha512`.
    pub hash_function: String,
    /// The key for the hmac hash functions.
    pub hmac_key: String,
    /// `debug`, `info` or `silent`; empty adds nothing, as `silent`.
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_sanitizer: Option<sanitize::UrlConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_sanitizer: Option<sanitize::DbConfig>,
}

#[derive(Clone, Copy, PartialEq)]
enum Hash {
    Mask,
    Md5,
    Sha1,
    Sha3,
    HmacSha256,
    HmacSha512,
}

#[derive(Clone, Copy, PartialEq)]
enum Summary {
    Silent,
    Info,
    Debug,
}

/// The summary attributes otelcol adds; all of them are always allowed, so a second redaction
/// processor keeps what the first one wrote.
const REDACTED_KEYS: &str = "redaction.redacted.keys";
const REDACTED_COUNT: &str = "redaction.redacted.count";
const MASKED_KEYS: &str = "redaction.masked.keys";
const MASKED_COUNT: &str = "redaction.masked.count";
const ALLOWED_KEYS: &str = "redaction.allowed.keys";
const ALLOWED_COUNT: &str = "redaction.allowed.count";
const IGNORED_COUNT: &str = "redaction.ignored.count";
const BODY_REDACTED_KEYS: &str = "redaction.body.redacted.keys";
const BODY_REDACTED_COUNT: &str = "redaction.body.redacted.count";
const BODY_MASKED_KEYS: &str = "redaction.body.masked.keys";
const BODY_MASKED_COUNT: &str = "redaction.body.masked.count";
const BODY_ALLOWED_KEYS: &str = "redaction.body.allowed.keys";
const BODY_ALLOWED_COUNT: &str = "redaction.body.allowed.count";
const BODY_IGNORED_COUNT: &str = "redaction.body.ignored.count";
const SUMMARY_KEYS: &[&str] = &[
    REDACTED_KEYS,
    REDACTED_COUNT,
    MASKED_KEYS,
    MASKED_COUNT,
    ALLOWED_KEYS,
    ALLOWED_COUNT,
    IGNORED_COUNT,
    BODY_REDACTED_KEYS,
    BODY_REDACTED_COUNT,
    BODY_MASKED_KEYS,
    BODY_MASKED_COUNT,
    BODY_ALLOWED_KEYS,
    BODY_ALLOWED_COUNT,
    BODY_IGNORED_COUNT,
];

struct Rules {
    allow_all: bool,
    allowed: HashSet<String>,
    ignored: HashSet<String>,
    ignored_patterns: Vec<Regex>,
    blocked_keys: Vec<Regex>,
    blocked_values: Vec<Regex>,
    allowed_values: Vec<Regex>,
    all_types: bool,
    hash: Hash,
    hmac_key: Vec<u8>,
    summary: Summary,
    mask_all: Regex,
    sanitizers: sanitize::Sanitizers,
}

fn regexes(key: &str, list: &[String], errors: &mut Vec<ConfigError>) -> Vec<Regex> {
    list.iter()
        .enumerate()
        .filter_map(|(i, p)| match vigil_core::config::re2_regex(p) {
            Ok(r) => Some(r),
            Err(e) => {
                errors.push(ConfigError::at(
                    format!("{key}::{i}"),
                    format!("invalid regular expression {p:?}: {e}"),
                ));
                None
            }
        })
        .collect()
}

fn compile(c: &RedactionConfig) -> Result<Rules, ConfigError> {
    let mut errors = Vec::new();
    let hash = match c.hash_function.to_ascii_lowercase().as_str() {
        "" => Hash::Mask,
        "md5" => Hash::Md5,
        "sha1" => Hash::Sha1,
        "sha3" => Hash::Sha3,
        "hmac-sha256" => Hash::HmacSha256,
        "hmac-sha512" => Hash::HmacSha512,
        o => {
            errors.push(ConfigError::at(
                "hash_function",
                format!("unknown hash function {o:?}: expected md5, sha1, sha3, hmac-sha256 or hmac-sha512"),
            ));
            Hash::Mask
        }
    };
    if matches!(hash, Hash::HmacSha256 | Hash::HmacSha512) && c.hmac_key.is_empty() {
        errors.push(ConfigError::at(
            "hmac_key",
            format!("required with hash_function {:?}", c.hash_function),
        ));
    }
    let summary = match c.summary.as_str() {
        "" | "silent" => Summary::Silent,
        "info" => Summary::Info,
        "debug" => Summary::Debug,
        o => {
            errors.push(ConfigError::at(
                "summary",
                format!("unknown summary {o:?}: expected debug, info or silent"),
            ));
            Summary::Silent
        }
    };
    let rules = Rules {
        allow_all: c.allow_all_keys,
        allowed: c
            .allowed_keys
            .iter()
            .cloned()
            .chain(SUMMARY_KEYS.iter().map(|s| s.to_string()))
            .collect(),
        ignored: c.ignored_keys.iter().cloned().collect(),
        ignored_patterns: regexes("ignored_key_patterns", &c.ignored_key_patterns, &mut errors),
        blocked_keys: regexes("blocked_key_patterns", &c.blocked_key_patterns, &mut errors),
        blocked_values: regexes("blocked_values", &c.blocked_values, &mut errors),
        allowed_values: regexes("allowed_values", &c.allowed_values, &mut errors),
        all_types: c.redact_all_types,
        hash,
        hmac_key: c.hmac_key.as_bytes().to_vec(),
        summary,
        mask_all: Regex::new("(?s).*").expect("a valid pattern"),
        sanitizers: sanitize::Sanitizers::new(c.url_sanitizer.as_ref(), c.db_sanitizer.as_ref()),
    };
    ConfigError::join(errors).map_or(Ok(rules), Err)
}

struct Factory;

/// The `redaction` processor factory.
pub fn factory() -> Arc<dyn DynProcessorFactory> {
    factory::processor(Factory)
}

impl FactoryBase for Factory {
    type Config = RedactionConfig;

    fn type_name(&self) -> &'static str {
        "redaction"
    }

    fn validate(&self, _id: &ComponentId, cfg: &RedactionConfig) -> Result<(), ConfigError> {
        compile(cfg).map(|_| ())
    }
}

impl ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Beta),
            (Signal::Metrics, Stability::Alpha),
            (Signal::Logs, Stability::Alpha),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: RedactionConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        Ok(Arc::new(Redaction {
            rules: compile(&cfg)?,
            next,
            obs: set.processor_obs(signal),
        }))
    }
}

/// A running `redaction` processor.
pub struct Redaction {
    rules: Rules,
    next: Arc<dyn Consumer>,
    obs: vigil_core::ProcessorObs,
}

/// pdata's `AsString()`: a value's text as otelcol renders it.
fn as_string(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => {
            let j = serde_json::Number::from_f64(*d).map(Json::Number);
            j.map(|j| j.to_string()).unwrap_or_else(|| d.to_string())
        }
        Some(other) => vigil_ottl::Value::from_inner(other).to_text(),
    }
}

/// pdata's `Str()`: a string's value, "" for any other type.
fn as_str(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        _ => String::new(),
    }
}

fn set_str(v: &mut Option<AnyValue>, s: String) {
    *v = Some(AnyValue {
        value: Some(Value::StringValue(s)),
    });
}

#[derive(Default)]
struct Found {
    redacted: Vec<String>,
    masked: Vec<String>,
    allowed: Vec<String>,
    ignored: Vec<String>,
}

impl Rules {
    fn ignore_key(&self, k: &str) -> bool {
        self.ignored.contains(k) || self.ignored_patterns.iter().any(|r| r.is_match(k))
    }

    fn redact_key(&self, k: &str) -> bool {
        !self.allow_all && !self.allowed.contains(k)
    }

    fn mask_key(&self, k: &str) -> bool {
        self.blocked_keys.iter().any(|r| r.is_match(k))
    }

    fn allow_value(&self, v: &str) -> bool {
        self.allowed_values.iter().any(|r| r.is_match(v))
    }

    fn digest(&self, m: &str) -> String {
        match self.hash {
            Hash::Mask => "****".into(),
            Hash::Md5 => hex::encode(md5::Md5::digest(m.as_bytes())),
            Hash::Sha1 => hex::encode(sha1::Sha1::digest(m.as_bytes())),
            Hash::Sha3 => hex::encode(sha3::Sha3_256::digest(m.as_bytes())),
            Hash::HmacSha256 => match Hmac::<sha2::Sha256>::new_from_slice(&self.hmac_key) {
                Ok(mut h) => {
                    h.update(m.as_bytes());
                    hex::encode(h.finalize().into_bytes())
                }
                Err(_) => "****".into(),
            },
            Hash::HmacSha512 => match Hmac::<sha2::Sha512>::new_from_slice(&self.hmac_key) {
                Ok(mut h) => {
                    h.update(m.as_bytes());
                    hex::encode(h.finalize().into_bytes())
                }
                Err(_) => "****".into(),
            },
        }
    }

    /// Go's `ReplaceAllStringFunc`: every match replaced by its mask.
    fn mask(&self, v: &str, re: &Regex) -> String {
        re.replace_all(v, |c: &regex::Captures<'_>| self.digest(&c[0]))
            .into_owned()
    }

    fn mask_blocked(&self, mut s: String) -> String {
        for re in &self.blocked_values {
            if re.is_match(&s) {
                s = self.mask(&s, re);
            }
        }
        s
    }

    fn attrs(&self, attrs: &mut Vec<KeyValue>) {
        let mut f = Found::default();
        let system = if self.sanitizers.is_empty() {
            None
        } else {
            sanitize::db_system(attrs)
        };
        for kv in attrs.iter_mut() {
            let k = kv.key.clone();
            if self.ignore_key(&k) {
                f.ignored.push(k);
                continue;
            }
            if self.redact_key(&k) {
                f.redacted.push(k);
                continue;
            }
            let s = if self.all_types {
                as_string(&kv.value)
            } else {
                as_str(&kv.value)
            };
            if self.allow_value(&s) {
                f.allowed.push(k);
                continue;
            }
            if self.mask_key(&k) {
                let masked = self.mask(&s, &self.mask_all);
                set_str(&mut kv.value, masked);
                f.masked.push(k);
                continue;
            }
            let out =
                self.sanitizers
                    .attribute(&k, self.mask_blocked(s.clone()), system.as_deref());
            if out != s {
                set_str(&mut kv.value, out);
                f.masked.push(k);
            }
        }
        attrs.retain(|kv| !f.redacted.contains(&kv.key));
        self.summarize(attrs, f.redacted, REDACTED_KEYS, REDACTED_COUNT);
        self.summarize(attrs, f.masked, MASKED_KEYS, MASKED_COUNT);
        self.summarize(attrs, f.allowed, ALLOWED_KEYS, ALLOWED_COUNT);
        self.summarize(attrs, f.ignored, "", IGNORED_COUNT);
    }

    /// otelcol's `addMetaAttrs`: counts (info, debug) and sorted key lists (debug), added to what
    /// an earlier redaction processor wrote.
    fn summarize(&self, attrs: &mut Vec<KeyValue>, mut keys: Vec<String>, list: &str, count: &str) {
        if keys.is_empty() || self.summary == Summary::Silent {
            return;
        }
        let mut n = keys.len() as i64;
        let find = |attrs: &Vec<KeyValue>, k: &str| attrs.iter().position(|kv| kv.key == k);
        if self.summary == Summary::Debug && !list.is_empty() {
            if let Some(i) = find(attrs, list) {
                let old = as_str(&attrs[i].value);
                if !old.is_empty() {
                    keys.extend(old.split(',').map(str::to_string));
                }
            }
            keys.sort();
            let v = keys.join(",");
            match find(attrs, list) {
                Some(i) => set_str(&mut attrs[i].value, v),
                None => attrs.push(vigil_core::attrs::kv_str(list, v)),
            }
        }
        if let Some(i) = find(attrs, count) {
            if let Some(Value::IntValue(old)) =
                attrs[i].value.as_ref().and_then(|v| v.value.as_ref())
            {
                n += old;
            }
            attrs[i].value = Some(AnyValue {
                value: Some(Value::IntValue(n)),
            });
        } else {
            attrs.push(vigil_core::attrs::kv_i64(count, n));
        }
    }

    /// A log body: a map's keys are handled as attributes are, recursively; a scalar body is
    /// masked by `blocked_values`.
    fn body(&self, body: &mut Option<AnyValue>, attrs: &mut Vec<KeyValue>) {
        let mut f = Found::default();
        match body.as_mut().and_then(|b| b.value.as_mut()) {
            Some(Value::KvlistValue(m)) => self.body_map(&mut m.values, None, &mut f),
            Some(Value::ArrayValue(a)) => {
                for (i, v) in a.values.iter_mut().enumerate() {
                    self.body_value(&format!("[{i}]"), v, &mut f);
                }
            }
            _ => {
                let s = as_string(body);
                if self.allow_value(&s) {
                    // otelcol records nothing here (its own TODO notes the list is dropped).
                    return;
                }
                let out = self.sanitizers.body(self.mask_blocked(s.clone()));
                if out != s {
                    set_str(body, out);
                    f.masked.push("body".into());
                }
            }
        }
        self.summarize(attrs, f.redacted, BODY_REDACTED_KEYS, BODY_REDACTED_COUNT);
        self.summarize(attrs, f.masked, BODY_MASKED_KEYS, BODY_MASKED_COUNT);
        self.summarize(attrs, f.allowed, BODY_ALLOWED_KEYS, BODY_ALLOWED_COUNT);
        self.summarize(attrs, f.ignored, "", BODY_IGNORED_COUNT);
    }

    fn body_map(&self, kvs: &mut Vec<KeyValue>, prefix: Option<&str>, f: &mut Found) {
        let path = |k: &str| match prefix {
            Some(p) => format!("{p}.{k}"),
            None => k.to_string(),
        };
        let mut gone = Vec::new();
        for kv in kvs.iter_mut() {
            let k = kv.key.clone();
            if self.ignore_key(&k) {
                f.ignored.push(path(&k));
                continue;
            }
            if self.redact_key(&k) {
                gone.push(k);
                continue;
            }
            if self.mask_key(&k) {
                f.masked.push(path(&k));
                let s = as_str(&kv.value);
                set_str(&mut kv.value, self.mask(&s, &self.mask_all));
                continue;
            }
            let v = kv.value.get_or_insert_with(AnyValue::default);
            self.body_value(&path(&k), v, f);
        }
        kvs.retain(|kv| !gone.contains(&kv.key));
        f.redacted.extend(gone.iter().map(|k| path(k)));
    }

    fn body_value(&self, key: &str, v: &mut AnyValue, f: &mut Found) {
        match v.value.as_mut() {
            Some(Value::KvlistValue(m)) => self.body_map(&mut m.values, Some(key), f),
            Some(Value::ArrayValue(a)) => {
                for (i, x) in a.values.iter_mut().enumerate() {
                    self.body_value(&format!("{key}.[{i}]"), x, f);
                }
            }
            _ => {
                let mut slot = Some(v.clone());
                let s = as_string(&slot);
                if self.allow_value(&s) {
                    f.allowed.push(key.to_string());
                    return;
                }
                let out = self.sanitizers.body(self.mask_blocked(s.clone()));
                if out != s {
                    set_str(&mut slot, out);
                    if let Some(new) = slot {
                        *v = new;
                    }
                    f.masked.push(key.to_string());
                }
            }
        }
    }

    fn process(&self, data: &mut Telemetry) {
        let res = |r: &mut Option<vigil_core::otlp::resource::v1::Resource>| {
            if let Some(r) = r {
                self.attrs(&mut r.attributes);
            }
        };
        let scope = |s: &mut Option<vigil_core::otlp::common::v1::InstrumentationScope>| {
            if let Some(s) = s {
                self.attrs(&mut s.attributes);
            }
        };
        match data {
            // Not in the stability table: profiles keep their attributes in the batch's
            // dictionary, which this processor does not read.
            Telemetry::Profiles(_) => {}
            Telemetry::Traces(rss) => {
                for rs in rss {
                    res(&mut rs.resource);
                    for ss in &mut rs.scope_spans {
                        scope(&mut ss.scope);
                        for sp in &mut ss.spans {
                            self.attrs(&mut sp.attributes);
                            for ev in &mut sp.events {
                                self.attrs(&mut ev.attributes);
                            }
                            if !self.sanitizers.is_empty() && !self.allow_value(&sp.name) {
                                self.sanitizers.span_name(sp);
                            }
                        }
                    }
                }
            }
            Telemetry::Logs(rls) => {
                for rl in rls {
                    res(&mut rl.resource);
                    for sl in &mut rl.scope_logs {
                        scope(&mut sl.scope);
                        for r in &mut sl.log_records {
                            self.attrs(&mut r.attributes);
                            self.body(&mut r.body, &mut r.attributes);
                        }
                    }
                }
            }
            Telemetry::Metrics(rms) => {
                for rm in rms {
                    res(&mut rm.resource);
                    for sm in &mut rm.scope_metrics {
                        scope(&mut sm.scope);
                        for m in &mut sm.metrics {
                            match &mut m.data {
                                Some(Data::Gauge(g)) => g
                                    .data_points
                                    .iter_mut()
                                    .for_each(|p| self.attrs(&mut p.attributes)),
                                Some(Data::Sum(s)) => s
                                    .data_points
                                    .iter_mut()
                                    .for_each(|p| self.attrs(&mut p.attributes)),
                                Some(Data::Histogram(h)) => h
                                    .data_points
                                    .iter_mut()
                                    .for_each(|p| self.attrs(&mut p.attributes)),
                                Some(Data::ExponentialHistogram(h)) => h
                                    .data_points
                                    .iter_mut()
                                    .for_each(|p| self.attrs(&mut p.attributes)),
                                Some(Data::Summary(s)) => s
                                    .data_points
                                    .iter_mut()
                                    .for_each(|p| self.attrs(&mut p.attributes)),
                                None => {}
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Component for Redaction {}

#[async_trait]
impl Consumer for Redaction {
    async fn consume(&self, mut data: Telemetry) -> Result<(), ConsumeError> {
        let n = data.item_count();
        self.obs.incoming(n);
        self.rules.process(&mut data);
        self.obs.outgoing(n);
        self.next.consume(data).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::Keep;
    use serde_json::json;
    use vigil_core::attrs::{get, kv_i64, kv_str};
    use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use vigil_core::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn id() -> ComponentId {
        ComponentId::parse("redaction/x").unwrap()
    }

    async fn run(cfg: Json, data: Telemetry, signal: Signal) -> Telemetry {
        let keep = Arc::new(Keep::default());
        let p = factory().create(&id(), &cfg, signal, keep.clone()).unwrap();
        p.consume(data).await.unwrap();
        let mut out = vigil_core::lock(&keep.0);
        out.remove(0)
    }

    fn one_span(attrs: Vec<KeyValue>) -> Telemetry {
        Telemetry::Traces(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    name: "s".into(),
                    attributes: attrs,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn span_attrs(t: &Telemetry) -> Vec<KeyValue> {
        let Telemetry::Traces(rs) = t else {
            panic!("traces")
        };
        rs[0].scope_spans[0].spans[0].attributes.clone()
    }

    fn text(attrs: &[KeyValue], k: &str) -> Option<String> {
        match get(attrs, k) {
            Some(Value::StringValue(s)) => Some(s.clone()),
            Some(Value::IntValue(i)) => Some(i.to_string()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn readme_example_with_debug_summary() {
        let cfg = json!({
            "allowed_keys": ["description", "group", "id", "name", "card"],
            "ignored_keys": ["safe_attribute"],
            "blocked_values": ["4[0-9]{12}(?:[0-9]{3})?", "(5[1-5][0-9]{14})"],
            "allowed_values": [".+@mycompany.com"],
            "summary": "debug",
        });
        let out = run(
            cfg,
            one_span(vec![
                kv_str("name", "visa 4111111111111111 and mc 5500000000000004"),
                kv_str("id", "jane@mycompany.com 4111111111111111"),
                kv_str("password", "hunter2"),
                kv_str("safe_attribute", "4111111111111111"),
                kv_str("group", "g1"),
            ]),
            Signal::Traces,
        )
        .await;
        let a = span_attrs(&out);
        assert_eq!(text(&a, "name").unwrap(), "visa **** and mc ****");
        assert_eq!(
            text(&a, "id").unwrap(),
            "jane@mycompany.com 4111111111111111"
        );
        assert!(get(&a, "password").is_none());
        assert_eq!(text(&a, "safe_attribute").unwrap(), "4111111111111111");
        assert_eq!(text(&a, "redaction.redacted.keys").unwrap(), "password");
        assert_eq!(text(&a, "redaction.redacted.count").unwrap(), "1");
        assert_eq!(text(&a, "redaction.masked.keys").unwrap(), "name");
        assert_eq!(text(&a, "redaction.masked.count").unwrap(), "1");
        assert_eq!(text(&a, "redaction.allowed.keys").unwrap(), "id");
        assert_eq!(text(&a, "redaction.ignored.count").unwrap(), "1");
        assert_eq!(text(&a, "group").unwrap(), "g1");
    }

    #[tokio::test]
    async fn hashes_and_blocked_keys() {
        let cfg = json!({"allow_all_keys": true, "blocked_key_patterns": [".*token.*"],
            "blocked_values": ["secret"], "hash_function": "sha1", "summary": "info"});
        let out = run(
            cfg,
            one_span(vec![
                kv_str("api_token", "abc"),
                kv_str("note", "a secret here"),
                kv_i64("count", 3),
            ]),
            Signal::Traces,
        )
        .await;
        let a = span_attrs(&out);
        // sha1("abc") and sha1("secret"), the published digests.
        assert_eq!(
            text(&a, "api_token").unwrap(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            text(&a, "note").unwrap(),
            "a e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4 here"
        );
        assert_eq!(text(&a, "count").unwrap(), "3", "ints untouched by default");
        assert_eq!(text(&a, "redaction.masked.count").unwrap(), "2");
        assert!(
            get(&a, "redaction.masked.keys").is_none(),
            "keys only with debug"
        );
    }

    #[tokio::test]
    async fn hmac_and_md5_digests() {
        let r = compile(
            &serde_json::from_value(json!({"hash_function": "hmac-sha256", "hmac_key": "key"}))
                .unwrap(),
        )
        .unwrap();
        // RFC 4231-style check against a published HMAC-SHA256 vector.
        assert_eq!(
            r.digest("The quick brown fox jumps over the lazy dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        let r = compile(&serde_json::from_value(json!({"hash_function": "MD5"})).unwrap()).unwrap();
        assert_eq!(r.digest(""), "d41d8cd98f00b204e9800998ecf8427e");
        let r =
            compile(&serde_json::from_value(json!({"hash_function": "sha3"})).unwrap()).unwrap();
        assert_eq!(
            r.digest(""),
            "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"
        );
    }

    #[tokio::test]
    async fn log_bodies_are_redacted_recursively() {
        let body = AnyValue {
            value: Some(Value::KvlistValue(
                vigil_core::otlp::common::v1::KeyValueList {
                    values: vec![
                        kv_str("user", "bob"),
                        kv_str("card", "4111111111111111"),
                        KeyValue {
                            key: "nested".into(),
                            value: Some(AnyValue {
                                value: Some(Value::KvlistValue(
                                    vigil_core::otlp::common::v1::KeyValueList {
                                        values: vec![
                                            kv_str("ssn", "x"),
                                            kv_str("user", "4111111111111111"),
                                        ],
                                    },
                                )),
                            }),
                            ..Default::default()
                        },
                    ],
                },
            )),
        };
        let data = Telemetry::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: Some(body),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let cfg = json!({"allowed_keys": ["user", "card", "nested"],
            "blocked_values": ["4[0-9]{15}"], "summary": "debug"});
        let out = run(cfg, data, Signal::Logs).await;
        let Telemetry::Logs(rl) = out else {
            panic!("logs")
        };
        let rec = &rl[0].scope_logs[0].log_records[0];
        assert_eq!(
            text(&rec.attributes, "redaction.body.redacted.keys").unwrap(),
            "nested.ssn"
        );
        assert_eq!(
            text(&rec.attributes, "redaction.body.masked.keys").unwrap(),
            "card,nested.user"
        );
        let Some(Value::KvlistValue(m)) = rec.body.as_ref().and_then(|b| b.value.as_ref()) else {
            panic!("map body")
        };
        assert_eq!(text(&m.values, "card").unwrap(), "****");
    }

    #[test]
    fn config_errors_name_their_keys() {
        let v = |cfg: Json| factory().validate(&id(), &cfg).unwrap_err().to_string();
        assert!(
            v(json!({"hash_function": "crc32"})).contains("hash_function: unknown hash function")
        );
        assert!(v(json!({"summary": "loud"})).contains("summary: unknown summary"));
        assert!(v(json!({"blocked_values": ["("]}))
            .contains("blocked_values::0: invalid regular expression"));
        assert!(
            v(json!({"db_sanitizer": {"cassandra": {"enabled": true}}})).contains("db_sanitizer")
        );
        assert!(factory()
            .validate(&id(), &json!({"allow_all_keys": true, "url_sanitizer": {"enabled": false}, "db_sanitizer": null}))
            .is_ok());
    }

    /// The coralogix agent's sanitizers: URL attributes and HTTP span names become templates, a
    /// database statement is obfuscated by its own system's kind (redis here, not SQL), and a log
    /// body's SQL loses its literals.
    #[tokio::test]
    async fn url_and_db_sanitizers() {
        let cfg = json!({
            "allow_all_keys": true,
            "summary": "info",
            "url_sanitizer": {"enabled": true, "attributes": ["http.url"]},
            "db_sanitizer": {
                "sql": {"enabled": true, "attributes": ["db.statement", "db.query"]},
                "redis": {"enabled": true, "attributes": ["db.statement", "redis.command"]},
                "es": {"enabled": true, "attributes": ["db.statement", "elasticsearch.body"]},
            },
        });
        let spans = Telemetry::Traces(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    Span {
                        name: "GET /orders/8812/items".into(),
                        kind: 2,
                        attributes: vec![
                            kv_str("http.url", "https://shop.example/orders/8812/items?id=7"),
                            kv_str("http.method", "GET"),
                        ],
                        ..Default::default()
                    },
                    Span {
                        name: "SELECT * FROM users WHERE id = 42".into(),
                        kind: 3,
                        attributes: vec![
                            kv_str("db.system", "postgresql"),
                            kv_str("db.statement", "SELECT * FROM users WHERE name = 'ann'"),
                        ],
                        ..Default::default()
                    },
                    Span {
                        name: "SET".into(),
                        kind: 3,
                        attributes: vec![
                            kv_str("db.system.name", "redis"),
                            kv_str("db.statement", "SET session:ann s3cr3t"),
                        ],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let out = run(cfg.clone(), spans, Signal::Traces).await;
        let Telemetry::Traces(rs) = &out else {
            panic!("traces")
        };
        let s = &rs[0].scope_spans[0].spans;
        assert_eq!(
            text(&s[0].attributes, "http.url").unwrap(),
            "https://shop.example/orders/*/items"
        );
        assert_eq!(s[0].name, "GET /orders/*/items");
        assert_eq!(
            text(&s[0].attributes, "redaction.masked.count").unwrap(),
            "1"
        );
        assert_eq!(
            text(&s[1].attributes, "db.statement").unwrap(),
            "SELECT * FROM users WHERE name = ?"
        );
        assert_eq!(s[1].name, "SELECT * FROM users WHERE id = ?");
        assert_eq!(text(&s[2].attributes, "db.statement").unwrap(), "SET ?");
        assert_eq!(s[2].name, "SET");

        let logs = Telemetry::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: Some(AnyValue {
                        value: Some(Value::StringValue(
                            "slow query: SELECT * FROM t WHERE card = '4111'".into(),
                        )),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let cfg = json!({"allow_all_keys": true, "db_sanitizer": {"sql": {"enabled": true}}});
        let out = run(cfg, logs, Signal::Logs).await;
        let Telemetry::Logs(rl) = &out else {
            panic!("logs")
        };
        assert_eq!(
            as_str(&rl[0].scope_logs[0].log_records[0].body),
            "slow query: SELECT * FROM t WHERE card = ?"
        );
    }
}
