//! `logdedup` (`log_dedup`): otelcol-contrib's log deduplication processor. Identical log records
//! (same resource, scope, body, severity and attributes, after `exclude_fields` are removed, or the
//! same `include_fields` values) are held for `interval` and leave as one record carrying
//! `log_count`, `first_observed_timestamp` and `last_observed_timestamp` (RFC 3339 in `timezone`).
//! Records that match none of `conditions` (OTTL, log context) pass through at once.
//!
//! This is not vigil's `dedup`, which lets the first record through at once and adds a summary only
//! when repeats came; the two share the order-insensitive value hashing (`dedup::hash_value`,
//! `dedup::hash_attrs`). Keys are bounded by `max_keys` (vigil's): a record that would open a key
//! beyond it passes through unaggregated and is counted in `vigil_logdedup_passed_through`, so
//! nothing is lost to the bound.

use crate::dedup::{hash_attrs, hash_value};
use async_trait::async_trait;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_core::attrs::upsert;
use vigil_core::config::duration;
use vigil_core::lock;
use vigil_core::otlp::common::v1::{any_value::Value, InstrumentationScope, KeyValue};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::time::now_nanos;
use vigil_core::{
    Component, ComponentId, ConfigError, ConsumeError, Consumer, Host, Processor, Signal, Telemetry,
};
use vigil_ottl::{parse_condition, Condition, Context};

/// Attribute names otelcol gives the window's first and last time.
pub const FIRST_OBSERVED: &str = "first_observed_timestamp";
pub const LAST_OBSERVED: &str = "last_observed_timestamp";

/// The `logdedup` config as otelcol spells it, plus vigil's `max_keys`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogDedupConfig {
    /// How long identical records are aggregated before their one record leaves.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// The attribute that carries the count.
    pub log_count_attribute: String,
    /// IANA zone of the first/last observed timestamps.
    pub timezone: String,
    /// `body.<key>…` or `attributes.<key>…` (`\.` for a dot in a key): left out of matching and
    /// removed from the emitted record. Not `body` itself.
    pub exclude_fields: Vec<String>,
    /// Fields that alone decide what is identical (with resource and scope); exclusive with
    /// `exclude_fields`.
    pub include_fields: Vec<String>,
    /// OTTL conditions in the log context; a record is aggregated when any holds (all when empty).
    pub conditions: Vec<String>,
    /// vigil's: distinct records held per interval at most (default 10000).
    pub max_keys: usize,
}

impl Default for LogDedupConfig {
    fn default() -> Self {
        LogDedupConfig {
            interval: Duration::from_secs(10),
            log_count_attribute: "log_count".into(),
            timezone: "UTC".into(),
            exclude_fields: Vec::new(),
            include_fields: Vec::new(),
            conditions: Vec::new(),
            max_keys: 10_000,
        }
    }
}

/// A field path split at unescaped dots: `("body" | "attributes", keys…)`.
fn split_field(f: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = f.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => {
                if let Some(p) = parts.last_mut() {
                    p.push('.');
                }
                chars.next();
            }
            '.' => parts.push(String::new()),
            c => {
                if let Some(p) = parts.last_mut() {
                    p.push(c);
                }
            }
        }
    }
    parts
}

struct Checked {
    tz: Tz,
    exclude: Vec<Vec<String>>,
    include: Vec<Vec<String>>,
    conditions: Vec<Condition>,
}

fn check(c: &LogDedupConfig) -> Result<Checked, ConfigError> {
    if c.interval.is_zero() {
        return Err(ConfigError::at(
            "interval",
            "interval must be greater than 0",
        ));
    }
    if c.log_count_attribute.is_empty() {
        return Err(ConfigError::at(
            "log_count_attribute",
            "log_count_attribute must be set",
        ));
    }
    let tz: Tz = c.timezone.parse().map_err(|_| {
        ConfigError::at(
            "timezone",
            format!(
                "timezone is invalid: unknown time zone {:?} (expected an IANA zone such as \"UTC\" or \"America/New_York\")",
                c.timezone
            ),
        )
    })?;
    if c.max_keys == 0 {
        return Err(ConfigError::at("max_keys", "expected at least 1, got 0"));
    }
    if !c.exclude_fields.is_empty() && !c.include_fields.is_empty() {
        return Err(ConfigError::at(
            "include_fields",
            "cannot define both exclude_fields and include_fields",
        ));
    }
    let fields = |key: &str, list: &[String]| -> Result<Vec<Vec<String>>, ConfigError> {
        let mut out: Vec<Vec<String>> = Vec::new();
        for (i, f) in list.iter().enumerate() {
            let at = format!("{key}::{i}");
            if key == "exclude_fields" && f == "body" {
                return Err(ConfigError::at(at, "cannot exclude the entire body"));
            }
            let parts = split_field(f);
            if parts[0] != "body" && parts[0] != "attributes" {
                return Err(ConfigError::at(
                    at,
                    format!("a field must start with body or attributes, got {f:?}"),
                ));
            }
            if parts[0] == "attributes" && parts.len() < 2 {
                return Err(ConfigError::at(at, "name an attribute: attributes.<key>"));
            }
            if out.contains(&parts) {
                return Err(ConfigError::at(at, format!("duplicate field {f}")));
            }
            out.push(parts);
        }
        Ok(out)
    };
    let exclude = fields("exclude_fields", &c.exclude_fields)?;
    let include = fields("include_fields", &c.include_fields)?;
    let conditions = c
        .conditions
        .iter()
        .enumerate()
        .map(|(i, s)| {
            parse_condition(Context::Log, s)
                .map_err(|e| ConfigError::at(format!("conditions::{i}"), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Checked {
        tz,
        exclude,
        include,
        conditions,
    })
}

struct Factory;

/// The `logdedup` processor factory (`log_dedup` is accepted too).
pub fn factory() -> Arc<dyn vigil_core::factory::DynProcessorFactory> {
    vigil_core::factory::processor(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = LogDedupConfig;

    fn type_name(&self) -> &'static str {
        "logdedup"
    }

    fn validate(&self, _id: &ComponentId, cfg: &LogDedupConfig) -> Result<(), ConfigError> {
        check(cfg).map(|_| ())
    }
}

impl vigil_core::factory::ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[(Signal::Logs, vigil_core::Stability::Alpha)]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: LogDedupConfig,
        _signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let checked = check(&cfg)?;
        Ok(Arc::new(LogDedup::new(set, cfg, checked, next)))
    }
}

/// One distinct record of the current interval.
struct Entry {
    resource: Option<Resource>,
    resource_schema: String,
    scope: Option<InstrumentationScope>,
    scope_schema: String,
    record: LogRecord,
    count: i64,
    first: u64,
    last: u64,
}

#[derive(Default)]
struct State {
    /// In first-seen order, so the emitted batch is in the order records came.
    entries: Vec<Entry>,
    index: HashMap<u64, usize>,
    /// Aggregates downstream refused as retryable, sent again on the next tick.
    pending: Vec<ResourceLogs>,
}

/// A running `logdedup` processor.
pub struct LogDedup {
    inner: Arc<Inner>,
    tasks: vigil_core::Tasks,
}

struct Inner {
    label: String,
    cfg: LogDedupConfig,
    checked: Checked,
    obs: vigil_core::ProcessorObs,
    /// Keyed per process, so that nobody can craft two records that collapse into one.
    hasher: RandomState,
    next: Arc<dyn Consumer>,
    state: Mutex<State>,
    passed_through: metrics::Counter,
    dropped: metrics::Counter,
}

/// Removes the field at `path` (below `body` or `attributes`), if there.
fn remove_field(r: &mut LogRecord, path: &[String]) {
    fn remove_in(kvs: &mut Vec<KeyValue>, keys: &[String]) {
        let Some((first, rest)) = keys.split_first() else {
            return;
        };
        if rest.is_empty() {
            kvs.retain(|kv| &kv.key != first);
            return;
        }
        if let Some(kv) = kvs.iter_mut().find(|kv| &kv.key == first) {
            if let Some(Value::KvlistValue(l)) = kv.value.as_mut().and_then(|v| v.value.as_mut()) {
                remove_in(&mut l.values, rest);
            }
        }
    }
    match path[0].as_str() {
        "attributes" => remove_in(&mut r.attributes, &path[1..]),
        _ => {
            if let Some(Value::KvlistValue(l)) = r.body.as_mut().and_then(|b| b.value.as_mut()) {
                remove_in(&mut l.values, &path[1..]);
            }
        }
    }
}

/// The value at `path`, if there.
fn field<'a>(r: &'a LogRecord, path: &[String]) -> Option<&'a Value> {
    let mut cur: Option<&Value> = None;
    let mut kvs: &[KeyValue] = &[];
    match path[0].as_str() {
        "attributes" => kvs = &r.attributes,
        _ => {
            cur = r.body.as_ref().and_then(|b| b.value.as_ref());
        }
    }
    for (i, k) in path[1..].iter().enumerate() {
        if i > 0 || path[0] != "attributes" {
            match cur {
                Some(Value::KvlistValue(l)) => kvs = &l.values,
                _ => return None,
            }
        }
        cur = kvs
            .iter()
            .find(|kv| &kv.key == k)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref());
        cur?;
    }
    cur
}

/// RFC 3339 with seconds in `tz`, as Go's `time.RFC3339` writes it (`Z` for UTC).
fn format_time(nanos: u64, tz: Tz) -> String {
    let t = chrono::DateTime::from_timestamp_nanos(nanos.min(i64::MAX as u64) as i64)
        .with_timezone(&tz);
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl LogDedup {
    fn new(
        set: vigil_core::Settings,
        cfg: LogDedupConfig,
        checked: Checked,
        next: Arc<dyn Consumer>,
    ) -> LogDedup {
        let label = set.id.to_string();
        LogDedup {
            inner: Arc::new(Inner {
                passed_through: metrics::counter!("vigil_logdedup_passed_through", "processor" => label.clone()),
                dropped: metrics::counter!("vigil_logdedup_records_dropped", "processor" => label.clone()),
                label,
                cfg,
                checked,
                obs: set.processor_obs(Signal::Logs),
                hasher: RandomState::new(),
                next,
                state: Mutex::new(State::default()),
            }),
            tasks: set.tasks,
        }
    }

    /// Sends what the interval aggregated (the timer calls this).
    pub async fn flush(&self) {
        self.inner.flush(false).await;
    }
}

impl Inner {
    fn key(&self, res: u64, scope: u64, r: &LogRecord) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_u64(res);
        h.write_u64(scope);
        if self.checked.include.is_empty() {
            hash_attrs(&mut h, &r.attributes);
            hash_value(&mut h, r.body.as_ref().and_then(|b| b.value.as_ref()));
            r.severity_number.hash(&mut h);
            r.severity_text.hash(&mut h);
        } else {
            for p in &self.checked.include {
                p.hash(&mut h);
                hash_value(&mut h, field(r, p));
            }
        }
        h.finish()
    }

    fn matches(
        &self,
        res: &mut Option<Resource>,
        scope: &mut Option<InstrumentationScope>,
        r: &mut LogRecord,
    ) -> bool {
        if self.checked.conditions.is_empty() {
            return true;
        }
        let mut it = vigil_ottl::pdata::Item::resource(res);
        it.scope = Some(scope);
        it.log = Some(r);
        self.checked.conditions.iter().any(|c| c.matches(&it))
    }

    /// Takes the records to aggregate out of the batch; what stays passes through.
    fn absorb(&self, batch: &mut Vec<ResourceLogs>) -> usize {
        let now = now_nanos();
        let mut st = lock(&self.state);
        let st = &mut *st;
        let mut over = 0usize;
        let mut absorbed = 0usize;
        for rl in batch.iter_mut() {
            let res_hash = {
                let mut h = self.hasher.build_hasher();
                if let Some(r) = &rl.resource {
                    hash_attrs(&mut h, &r.attributes);
                }
                h.finish()
            };
            let resource = &mut rl.resource;
            for sl in rl.scope_logs.iter_mut() {
                let scope_hash = {
                    let mut h = self.hasher.build_hasher();
                    if let Some(s) = &sl.scope {
                        hash_attrs(&mut h, &s.attributes);
                        s.name.hash(&mut h);
                        s.version.hash(&mut h);
                    }
                    h.finish()
                };
                let records = std::mem::take(&mut sl.log_records);
                let mut kept = Vec::new();
                for mut r in records {
                    if !self.matches(resource, &mut sl.scope, &mut r) {
                        kept.push(r);
                        continue;
                    }
                    for p in &self.checked.exclude {
                        remove_field(&mut r, p);
                    }
                    let key = self.key(res_hash, scope_hash, &r);
                    if let Some(&i) = st.index.get(&key) {
                        let e = &mut st.entries[i];
                        e.count += 1;
                        e.last = now;
                        absorbed += 1;
                        continue;
                    }
                    if st.entries.len() >= self.cfg.max_keys {
                        over += 1;
                        kept.push(r);
                        continue;
                    }
                    st.index.insert(key, st.entries.len());
                    st.entries.push(Entry {
                        resource: resource.clone(),
                        resource_schema: rl.schema_url.clone(),
                        scope: sl.scope.clone(),
                        scope_schema: sl.schema_url.clone(),
                        record: r,
                        count: 1,
                        first: now,
                        last: now,
                    });
                    absorbed += 1;
                }
                sl.log_records = kept;
            }
            rl.scope_logs.retain(|sl| !sl.log_records.is_empty());
        }
        batch.retain(|rl| !rl.scope_logs.is_empty());
        if over > 0 {
            self.passed_through.increment(over as u64);
        }
        absorbed
    }

    /// The interval's aggregates as records, grouped back under their resource and scope.
    fn take(&self) -> Vec<ResourceLogs> {
        let (entries, mut out) = {
            let mut st = lock(&self.state);
            st.index.clear();
            (
                std::mem::take(&mut st.entries),
                std::mem::take(&mut st.pending),
            )
        };
        let now = now_nanos();
        let tz = self.checked.tz;
        for e in entries {
            let mut r = e.record;
            r.time_unix_nano = now;
            r.observed_time_unix_nano = e.first;
            upsert(
                &mut r.attributes,
                &self.cfg.log_count_attribute,
                Value::IntValue(e.count),
            );
            upsert(
                &mut r.attributes,
                FIRST_OBSERVED,
                Value::StringValue(format_time(e.first, tz)),
            );
            upsert(
                &mut r.attributes,
                LAST_OBSERVED,
                Value::StringValue(format_time(e.last, tz)),
            );
            let rl = match out
                .iter_mut()
                .find(|rl| rl.resource == e.resource && rl.schema_url == e.resource_schema)
            {
                Some(rl) => rl,
                None => {
                    out.push(ResourceLogs {
                        resource: e.resource.clone(),
                        scope_logs: Vec::new(),
                        schema_url: e.resource_schema.clone(),
                    });
                    out.last_mut().expect("just pushed")
                }
            };
            match rl
                .scope_logs
                .iter_mut()
                .find(|sl| sl.scope == e.scope && sl.schema_url == e.scope_schema)
            {
                Some(sl) => sl.log_records.push(r),
                None => rl.scope_logs.push(ScopeLogs {
                    scope: e.scope,
                    log_records: vec![r],
                    schema_url: e.scope_schema,
                }),
            }
        }
        out
    }

    async fn flush(&self, last: bool) {
        let out = self.take();
        let n = vigil_core::telemetry::log_record_count(&out);
        if n == 0 {
            return;
        }
        self.obs.outgoing(n);
        let copy = out.clone();
        match self.next.consume(Telemetry::Logs(out)).await {
            Ok(()) => {}
            Err(e) if e.is_retryable() && !last => {
                let mut st = lock(&self.state);
                st.pending.extend(copy);
                // Held aggregates are bounded like the keys: beyond, the oldest are given up.
                let held = vigil_core::telemetry::log_record_count(&st.pending);
                if held > self.cfg.max_keys {
                    let mut extra = held - self.cfg.max_keys;
                    while extra > 0 && !st.pending.is_empty() {
                        let c = vigil_core::telemetry::log_record_count(&st.pending[..1]);
                        st.pending.remove(0);
                        self.dropped.increment(c as u64);
                        extra = extra.saturating_sub(c);
                    }
                }
            }
            Err(e) => {
                self.dropped.increment(n as u64);
                tracing::error!(processor = %self.label, records = n, error = %e, "logdedup aggregates dropped");
            }
        }
    }
}

#[async_trait]
impl Component for LogDedup {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let inner = Arc::clone(&self.inner);
        self.tasks.spawn_ticker(inner.cfg.interval, move || {
            let inner = Arc::clone(&inner);
            async move { inner.flush(false).await }
        });
        Ok(())
    }

    /// Stops the timer, then sends what was aggregated once, within the deadline.
    async fn shutdown_by(&self, deadline: std::time::Instant) -> anyhow::Result<()> {
        self.tasks.stop(deadline).await;
        let waiting = lock(&self.inner.state).entries.len();
        if vigil_core::task::within(deadline, self.inner.flush(true))
            .await
            .is_none()
        {
            self.inner.dropped.increment(waiting as u64);
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for LogDedup {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let inner = &self.inner;
        let Telemetry::Logs(mut batch) = data else {
            return inner.next.consume(data).await;
        };
        inner
            .obs
            .incoming(vigil_core::telemetry::log_record_count(&batch));
        inner.absorb(&mut batch);
        let n = vigil_core::telemetry::log_record_count(&batch);
        if n == 0 {
            return Ok(());
        }
        inner.obs.outgoing(n);
        inner.next.consume(Telemetry::Logs(batch)).await
    }
}

#[cfg(test)]
#[path = "logdedup_tests.rs"]
mod tests;
