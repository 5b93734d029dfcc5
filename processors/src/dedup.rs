//! `dedup`: collapses repeated log records within a time window, so that a storm of one message costs
//! the backend two records per window instead of thousands. The first record of a key goes through at
//! once; repeats within `window` are only counted; when the window ends, one summary record (a copy of
//! the first with `vigil.dedup.count`, `vigil.dedup.first_seen` and `vigil.dedup.last_seen`) follows if
//! there were repeats. The attributes are documented in `docs/events.md`.
//!
//! Keys are bounded by `max_keys` (least recently seen first out); an evicted key sends its summary
//! before it goes, and shutdown sends every pending summary, so no record is dropped without a count.

use async_trait::async_trait;
use lru::LruCache;
use serde::Deserialize;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use vigil_core::attrs::{get, upsert};
use vigil_core::config::duration;
use vigil_core::lock;
use vigil_core::otlp::common::v1::{any_value::Value, InstrumentationScope, KeyValue};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::time::now_nanos;
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Host, Processor,
    Signal, Telemetry,
};

/// Total occurrences of the key in the window, the first record included.
pub const COUNT: &str = "vigil.dedup.count";
/// Timestamp of the earliest record in the window (RFC 3339, UTC, nanoseconds).
pub const FIRST_SEEN: &str = "vigil.dedup.first_seen";
/// Timestamp of the latest record in the window (RFC 3339, UTC, nanoseconds).
pub const LAST_SEEN: &str = "vigil.dedup.last_seen";
/// Summaries waiting for a retry after downstream pushed back, at most this many times `max_keys`.
const PENDING_KEYS_FACTOR: usize = 1;

/// What a record's key is made of, besides the chosen attributes and the resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// `log.pattern.id` when the record has it (set by `logpattern`), else the body.
    #[default]
    Auto,
    /// The body, always: only identical messages collapse.
    Body,
    /// `log.pattern.id`, always: records without it pass through uncounted.
    Pattern,
}

/// The `dedup` processor's config as written in YAML.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    /// `auto` (default), `body` or `pattern`.
    pub key: KeySource,
    /// Record attributes whose values are part of the key (absent and present differ).
    pub attributes: Vec<String>,
    /// How long repeats of a key are collapsed after its first record.
    #[serde(with = "duration")]
    pub window: Duration,
    /// Most keys tracked at once.
    pub max_keys: usize,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            key: KeySource::Auto,
            attributes: Vec::new(),
            window: Duration::from_secs(10),
            max_keys: 10_000,
        }
    }
}

#[cfg(test)]
fn parse(id: &ComponentId, value: &serde_json::Value) -> Result<DedupConfig, ConfigError> {
    check(
        id,
        vigil_core::config::decode(ComponentKind::Processor, id, value)?,
    )
}

/// Checks a decoded section and prepares what the component runs with.
fn check(id: &ComponentId, c: DedupConfig) -> Result<DedupConfig, ConfigError> {
    let err =
        |path: &str, msg: String| ConfigError::component(ComponentKind::Processor, id, path, msg);
    if c.window.is_zero() {
        return Err(err(
            "window",
            "expected a duration above 0 such as \"10s\"".into(),
        ));
    }
    if c.max_keys == 0 {
        return Err(err("max_keys", "expected at least 1, got 0".into()));
    }
    if let Some((i, _)) = c.attributes.iter().enumerate().find(|(_, a)| a.is_empty()) {
        return Err(err(
            &format!("attributes::{i}"),
            "expected an attribute name, got an empty string".into(),
        ));
    }
    Ok(c)
}

struct Factory;

/// The `dedup` processor factory.
pub fn factory() -> Arc<dyn vigil_core::factory::DynProcessorFactory> {
    vigil_core::factory::processor(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = DedupConfig;

    fn type_name(&self) -> &'static str {
        "dedup"
    }

    fn validate(&self, id: &ComponentId, cfg: &DedupConfig) -> Result<(), ConfigError> {
        check(id, cfg.clone()).map(|_| ())
    }
}

impl vigil_core::factory::ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[(Signal::Logs, vigil_core::Stability::Alpha)]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: DedupConfig,
        _signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let id = &set.id;
        let cfg = check(id, cfg)?;
        Ok(Arc::new(Dedup::new(set, cfg, next)))
    }
}

/// One key's window: the first record (kept for its summary) and what came after it.
struct Entry {
    first: LogRecord,
    resource: Option<Resource>,
    resource_schema: String,
    scope: Option<InstrumentationScope>,
    scope_schema: String,
    count: u64,
    first_seen: u64,
    last_seen: u64,
    window_end: Instant,
    /// Tells this window from a later one of the same key in the expiry queue.
    generation: u64,
}

struct State {
    keys: LruCache<u64, Entry>,
    /// (key, window end, generation) in window-start order, which is also window-end order.
    expiry: VecDeque<(u64, Instant, u64)>,
    generation: u64,
    /// Summaries downstream refused as retryable, sent again on the next tick.
    pending: Vec<ResourceLogs>,
    closed: bool,
}

/// A running `dedup` processor.
pub struct Dedup {
    inner: Arc<Inner>,
    /// The window timer.
    tasks: vigil_core::Tasks,
}

struct Inner {
    label: String,
    obs: vigil_core::ProcessorObs,
    cfg: DedupConfig,
    /// Keyed per process, so that nobody can craft two messages that collapse into one.
    hasher: RandomState,
    next: Arc<dyn Consumer>,
    state: Mutex<State>,
}

/// RFC 3339 in UTC with nanoseconds, as the summary attributes carry timestamps.
pub fn rfc3339(nanos: u64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos.min(i64::MAX as u64) as i64)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Feeds an attribute value into a hasher with a tag per kind, so `1` and `"1"` differ.
pub(crate) fn hash_value(h: &mut impl Hasher, v: Option<&Value>) {
    match v {
        None => h.write_u8(0),
        Some(Value::StringValue(s)) => {
            h.write_u8(1);
            s.hash(h);
        }
        Some(Value::BoolValue(b)) => {
            h.write_u8(2);
            b.hash(h);
        }
        Some(Value::IntValue(i)) => {
            h.write_u8(3);
            i.hash(h);
        }
        Some(Value::DoubleValue(d)) => {
            h.write_u8(4);
            d.to_bits().hash(h);
        }
        Some(Value::BytesValue(b)) => {
            h.write_u8(5);
            b.hash(h);
        }
        Some(Value::ArrayValue(a)) => {
            h.write_u8(6);
            h.write_usize(a.values.len());
            for x in &a.values {
                hash_value(h, x.value.as_ref());
            }
        }
        Some(Value::KvlistValue(l)) => {
            h.write_u8(7);
            hash_attrs(h, &l.values);
        }
        Some(Value::StringValueStrindex(i)) => {
            h.write_u8(8);
            i.hash(h);
        }
    }
}

/// Hashes a key-value list regardless of its order, as the same resource may list its attributes in a
/// different order from one batch to the next.
pub(crate) fn hash_attrs(h: &mut impl Hasher, attrs: &[KeyValue]) {
    let mut sorted: Vec<&KeyValue> = attrs.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    h.write_usize(sorted.len());
    for kv in sorted {
        kv.key.hash(h);
        hash_value(h, kv.value.as_ref().and_then(|v| v.value.as_ref()));
    }
}

fn record_time(r: &LogRecord, now: u64) -> u64 {
    if r.time_unix_nano > 0 {
        r.time_unix_nano
    } else if r.observed_time_unix_nano > 0 {
        r.observed_time_unix_nano
    } else {
        now
    }
}

/// The summary of a window with repeats; `None` when the first record was the only one.
fn summary(e: Entry, flushed_at: u64) -> Option<ResourceLogs> {
    if e.count < 2 {
        return None;
    }
    let mut r = e.first;
    upsert(&mut r.attributes, COUNT, Value::IntValue(e.count as i64));
    upsert(
        &mut r.attributes,
        FIRST_SEEN,
        Value::StringValue(rfc3339(e.first_seen)),
    );
    upsert(
        &mut r.attributes,
        LAST_SEEN,
        Value::StringValue(rfc3339(e.last_seen)),
    );
    r.time_unix_nano = e.last_seen;
    r.observed_time_unix_nano = flushed_at;
    Some(ResourceLogs {
        resource: e.resource,
        scope_logs: vec![ScopeLogs {
            scope: e.scope,
            log_records: vec![r],
            schema_url: e.scope_schema,
        }],
        schema_url: e.resource_schema,
    })
}

fn count_records(rls: &[ResourceLogs]) -> usize {
    vigil_core::telemetry::log_record_count(rls)
}

impl Dedup {
    /// A dedup processor feeding `next`; its window timer starts with `start`.
    pub fn new(set: vigil_core::Settings, cfg: DedupConfig, next: Arc<dyn Consumer>) -> Dedup {
        let cap = NonZeroUsize::new(cfg.max_keys).unwrap_or(NonZeroUsize::MIN);
        Dedup {
            inner: Arc::new(Inner {
                label: set.id.to_string(),
                obs: set.processor_obs(Signal::Logs),
                cfg,
                hasher: RandomState::new(),
                next,
                state: Mutex::new(State {
                    keys: LruCache::new(cap),
                    expiry: VecDeque::new(),
                    generation: 0,
                    pending: Vec::new(),
                    closed: false,
                }),
            }),
            tasks: set.tasks,
        }
    }

    /// Sends the summaries of every window that has ended by `now` (the timer task calls this).
    pub async fn flush_expired(&self, now: Instant) {
        self.inner.flush(Some(now)).await;
    }

    /// Keys tracked now.
    pub fn key_count(&self) -> usize {
        lock(&self.inner.state).keys.len()
    }
}

impl Inner {
    fn key(&self, resource_hash: u64, r: &LogRecord) -> Option<u64> {
        let mut h = self.hasher.build_hasher();
        h.write_u64(resource_hash);
        let pattern = match self.cfg.key {
            KeySource::Body => None,
            KeySource::Auto | KeySource::Pattern => get(&r.attributes, "log.pattern.id"),
        };
        match (pattern, self.cfg.key) {
            (Some(p), _) => {
                h.write_u8(b'p');
                hash_value(&mut h, Some(p));
            }
            (None, KeySource::Pattern) => return None,
            (None, _) => {
                h.write_u8(b'b');
                hash_value(&mut h, r.body.as_ref().and_then(|b| b.value.as_ref()));
            }
        }
        for a in &self.cfg.attributes {
            a.hash(&mut h);
            hash_value(&mut h, get(&r.attributes, a));
        }
        Some(h.finish())
    }

    /// Drops repeats from the batch and returns the summaries of keys that had to make room.
    // Hot path: one lock per batch (examples/bench_logpattern.rs).
    fn collapse(&self, batch: &mut Vec<ResourceLogs>) -> (usize, Vec<ResourceLogs>) {
        let now = Instant::now();
        let wall = now_nanos();
        let window_end = now + self.cfg.window;
        let mut suppressed = 0usize;
        let mut summaries = Vec::new();
        let mut st = lock(&self.state);
        let st = &mut *st;
        for rl in batch.iter_mut() {
            let resource_hash = {
                let mut h = self.hasher.build_hasher();
                if let Some(res) = &rl.resource {
                    hash_attrs(&mut h, &res.attributes);
                }
                h.finish()
            };
            for sl in rl.scope_logs.iter_mut() {
                let records = std::mem::take(&mut sl.log_records);
                let mut kept = Vec::with_capacity(records.len());
                for r in records {
                    let Some(key) = self.key(resource_hash, &r) else {
                        kept.push(r);
                        continue;
                    };
                    let t = record_time(&r, wall);
                    if let Some(e) = st.keys.get_mut(&key) {
                        if e.window_end > now {
                            e.count += 1;
                            e.first_seen = e.first_seen.min(t);
                            e.last_seen = e.last_seen.max(t);
                            suppressed += 1;
                            continue;
                        }
                        // The window ended before the timer got to it: close it here, then this record
                        // opens the next one.
                        if let Some(s) = st.keys.pop(&key).and_then(|e| summary(e, wall)) {
                            summaries.push(s);
                        }
                    }
                    st.generation += 1;
                    let entry = Entry {
                        first: r.clone(),
                        resource: rl.resource.clone(),
                        resource_schema: rl.schema_url.clone(),
                        scope: sl.scope.clone(),
                        scope_schema: sl.schema_url.clone(),
                        count: 1,
                        first_seen: t,
                        last_seen: t,
                        window_end,
                        generation: st.generation,
                    };
                    if let Some((_, evicted)) = st.keys.push(key, entry) {
                        if let Some(s) = summary(evicted, wall) {
                            summaries.push(s);
                        }
                    }
                    st.expiry.push_back((key, window_end, st.generation));
                    kept.push(r);
                }
                sl.log_records = kept;
            }
            rl.scope_logs.retain(|sl| !sl.log_records.is_empty());
        }
        batch.retain(|rl| !rl.scope_logs.is_empty());
        // Windows of evicted keys leave stale entries behind; drop them before they outgrow the keys.
        if st.expiry.len() > 2 * self.cfg.max_keys + 1024 {
            let keys = &st.keys;
            st.expiry
                .retain(|(k, _, g)| keys.peek(k).is_some_and(|e| e.generation == *g));
        }
        (suppressed, summaries)
    }

    /// Takes the summaries of windows ended by `now`, or of every window when `now` is `None`, plus any
    /// held for a retry.
    fn take_due(&self, now: Option<Instant>) -> Vec<ResourceLogs> {
        let wall = now_nanos();
        let mut st = lock(&self.state);
        let mut out = std::mem::take(&mut st.pending);
        match now {
            Some(now) => {
                while let Some(&(key, end, generation)) = st.expiry.front() {
                    if end > now {
                        break;
                    }
                    st.expiry.pop_front();
                    if st
                        .keys
                        .peek(&key)
                        .is_some_and(|e| e.generation == generation)
                    {
                        if let Some(s) = st.keys.pop(&key).and_then(|e| summary(e, wall)) {
                            out.push(s);
                        }
                    }
                }
            }
            None => {
                st.expiry.clear();
                while let Some((_, e)) = st.keys.pop_lru() {
                    if let Some(s) = summary(e, wall) {
                        out.push(s);
                    }
                }
            }
        }
        out
    }

    /// Keeps summaries that downstream refused as retryable for the next tick; beyond the bound they are
    /// dropped and counted, the only place a count can be lost.
    fn hold(&self, summaries: Vec<ResourceLogs>) {
        let mut st = lock(&self.state);
        st.pending.extend(summaries);
        let limit = self.cfg.max_keys * PENDING_KEYS_FACTOR;
        if st.pending.len() > limit {
            let extra = st.pending.len() - limit;
            st.pending.drain(..extra);
            drop(st);
            self.dropped(extra, "too many summaries waiting for a retry");
        }
    }

    fn dropped(&self, n: usize, why: &str) {
        metrics::counter!("vigil_dedup_summaries_dropped", "processor" => self.label.clone())
            .increment(n as u64);
        tracing::error!(processor = %self.label, summaries = n, "dedup summaries dropped: {why}");
    }

    async fn send_summaries(&self, summaries: Vec<ResourceLogs>, final_attempt: bool) {
        if summaries.is_empty() {
            return;
        }
        let n = summaries.len();
        self.obs.outgoing(n);
        // A copy is kept only for a retry; summaries are one record per key, so it is small.
        let copy = summaries.clone();
        match self.next.consume(Telemetry::Logs(summaries)).await {
            Ok(()) => {}
            Err(e) if e.is_retryable() && !final_attempt => {
                tracing::debug!(processor = %self.label, error = %e, "summaries pushed back; retrying on the next tick");
                self.hold(copy);
            }
            Err(e) => self.dropped(n, &e.to_string()),
        }
    }

    async fn flush(&self, now: Option<Instant>) {
        let due = self.take_due(now);
        self.send_summaries(due, now.is_none()).await;
    }
}

#[async_trait]
impl Component for Dedup {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let inner = Arc::clone(&self.inner);
        // Summaries go out at most one tick after their window ends.
        let tick_every =
            (inner.cfg.window / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        self.tasks.spawn_ticker(tick_every, move || {
            let inner = Arc::clone(&inner);
            async move { inner.flush(Some(Instant::now())).await }
        });
        Ok(())
    }

    /// Stops the timer, then sends every pending summary once, for as long as the deadline allows.
    async fn shutdown_by(&self, deadline: std::time::Instant) -> anyhow::Result<()> {
        self.tasks.stop(deadline).await;
        let waiting = {
            let mut st = lock(&self.inner.state);
            st.closed = true;
            st.keys.len() + st.pending.len()
        };
        if vigil_core::task::within(deadline, self.inner.flush(None))
            .await
            .is_none()
        {
            self.inner
                .dropped(waiting, "not sent by the shutdown deadline");
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for Dedup {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let inner = &self.inner;
        let Telemetry::Logs(mut batch) = data else {
            return inner.next.consume(data).await;
        };
        let incoming = count_records(&batch);
        inner.obs.incoming(incoming);
        if lock(&inner.state).closed {
            // After shutdown's final flush nothing could send a summary: pass everything through.
            inner.obs.outgoing(incoming);
            return inner.next.consume(Telemetry::Logs(batch)).await;
        }
        let (suppressed, summaries) = inner.collapse(&mut batch);
        if suppressed > 0 {
            metrics::counter!("vigil_dedup_suppressed", "processor" => inner.label.clone())
                .increment(suppressed as u64);
        }
        let copy = (!summaries.is_empty()).then(|| summaries.clone());
        batch.extend(summaries);
        let outgoing = count_records(&batch);
        if outgoing == 0 {
            return Ok(());
        }
        inner.obs.outgoing(outgoing);
        let result = inner.next.consume(Telemetry::Logs(batch)).await;
        if let (Err(e), Some(copy)) = (&result, copy) {
            // The client resends its records, not our summaries of evicted keys: keep those.
            if e.is_retryable() {
                inner.hold(copy);
            } else {
                inner.dropped(copy.len(), &e.to_string());
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;
    use vigil_core::attrs::{get_str, kv_str};
    use vigil_core::otlp::common::v1::{any_value, AnyValue};

    /// Keeps every record it is given, with its resource's `service.name` as `resource.service.name`.
    #[derive(Default)]
    struct Sink(Mutex<Vec<LogRecord>>);

    #[async_trait]
    impl Consumer for Sink {
        async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
            if let Telemetry::Logs(rls) = data {
                let mut got = lock(&self.0);
                for rl in rls {
                    let service = rl
                        .resource
                        .as_ref()
                        .and_then(|r| get_str(&r.attributes, "service.name"))
                        .unwrap_or("")
                        .to_string();
                    for sl in rl.scope_logs {
                        for mut r in sl.log_records {
                            r.attributes
                                .push(kv_str("resource.service.name", service.clone()));
                            got.push(r);
                        }
                    }
                }
            }
            Ok(())
        }
    }

    impl Sink {
        fn take(&self) -> Vec<LogRecord> {
            std::mem::take(&mut *lock(&self.0))
        }
    }

    fn rec(body: &str, t: u64, attrs: &[(&str, &str)]) -> LogRecord {
        LogRecord {
            time_unix_nano: t,
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(body.into())),
            }),
            attributes: attrs.iter().map(|(k, v)| kv_str(k, *v)).collect(),
            ..Default::default()
        }
    }

    fn batch(service: &str, records: Vec<LogRecord>) -> Telemetry {
        Telemetry::Logs(vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", service)],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn dedup(yaml: &str, sink: Arc<Sink>) -> Dedup {
        let id = ComponentId::parse("dedup/t").unwrap();
        let v: Json = serde_saphyr::from_str(yaml).unwrap();
        Dedup::new(
            vigil_core::Settings::new(ComponentKind::Processor, &id),
            parse(&id, &v).unwrap(),
            sink,
        )
    }

    fn count(r: &LogRecord) -> Option<i64> {
        match get(&r.attributes, COUNT) {
            Some(Value::IntValue(n)) => Some(*n),
            _ => None,
        }
    }

    fn body(r: &LogRecord) -> &str {
        match r.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(Value::StringValue(s)) => s,
            _ => "",
        }
    }

    const T0: u64 = 1_700_000_000_000_000_000;

    #[tokio::test(start_paused = true)]
    async fn repeats_become_one_summary_at_the_end_of_the_window() {
        let sink = Arc::new(Sink::default());
        let d = dedup("window: 10s", sink.clone());
        d.consume(batch(
            "api",
            vec![rec("disk full", T0 + 5, &[]), rec("disk full", T0 + 1, &[])],
        ))
        .await
        .unwrap();
        d.consume(batch("api", vec![rec("disk full", T0 + 9, &[])]))
            .await
            .unwrap();
        let got = sink.take();
        assert_eq!(got.len(), 1, "only the first goes through at once");
        assert_eq!(count(&got[0]), None);

        tokio::time::advance(Duration::from_secs(9)).await;
        d.flush_expired(Instant::now()).await;
        assert!(sink.take().is_empty(), "the window is still open");

        tokio::time::advance(Duration::from_secs(2)).await;
        d.flush_expired(Instant::now()).await;
        let got = sink.take();
        assert_eq!(got.len(), 1);
        let s = &got[0];
        assert_eq!(body(s), "disk full");
        assert_eq!(count(s), Some(3));
        assert_eq!(
            get_str(&s.attributes, FIRST_SEEN),
            Some(rfc3339(T0 + 1).as_str())
        );
        assert_eq!(
            get_str(&s.attributes, LAST_SEEN),
            Some(rfc3339(T0 + 9).as_str())
        );
        assert_eq!(rfc3339(T0 + 9), "2023-11-14T22:13:20.000000009Z");
        assert_eq!(get_str(&s.attributes, "resource.service.name"), Some("api"));
        assert_eq!(d.key_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_record_has_no_summary_and_a_new_window_starts_after_the_old() {
        let sink = Arc::new(Sink::default());
        let d = dedup("window: 1s", sink.clone());
        d.consume(batch("api", vec![rec("once", T0, &[])]))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        d.flush_expired(Instant::now()).await;
        assert_eq!(sink.take().len(), 1);

        // Two windows of a key with repeats, where the timer has not run between them: the record that
        // opens the second window also closes the first.
        d.consume(batch(
            "api",
            vec![rec("twice", T0, &[]), rec("twice", T0, &[])],
        ))
        .await
        .unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        d.consume(batch("api", vec![rec("twice", T0 + 2, &[])]))
            .await
            .unwrap();
        let got = sink.take();
        // Summaries follow the batch's records; their time is the last repeat's, so they sort before.
        assert_eq!(
            got.iter().map(count).collect::<Vec<_>>(),
            vec![None, None, Some(2)]
        );
        assert_eq!(got[2].time_unix_nano, T0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_key_is_the_pattern_the_attributes_and_the_resource() {
        let sink = Arc::new(Sink::default());
        let d = dedup("attributes: [host]", sink.clone());
        let p = [("log.pattern.id", "00000000000000aa"), ("host", "a")];
        d.consume(batch(
            "api",
            vec![
                rec("user 1 failed", T0, &p),
                rec("user 2 failed", T0, &p),
                rec(
                    "user 3 failed",
                    T0,
                    &[("log.pattern.id", "00000000000000aa"), ("host", "b")],
                ),
                rec("no pattern", T0, &[("host", "a")]),
                rec("no pattern", T0, &[("host", "a")]),
            ],
        ))
        .await
        .unwrap();
        d.consume(batch("web", vec![rec("user 4 failed", T0, &p)]))
            .await
            .unwrap();
        let got: Vec<String> = sink.take().iter().map(|r| body(r).to_string()).collect();
        assert_eq!(
            got,
            [
                "user 1 failed",
                "user 3 failed",
                "no pattern",
                "user 4 failed"
            ]
        );
        d.shutdown().await.unwrap();
        let counts: Vec<(String, Option<i64>)> = sink
            .take()
            .iter()
            .map(|r| (body(r).to_string(), count(r)))
            .collect();
        assert_eq!(counts.len(), 2, "{counts:?}");
        assert!(counts.contains(&("user 1 failed".into(), Some(2))));
        assert!(counts.contains(&("no pattern".into(), Some(2))));

        // `key: body` ignores the pattern; `key: pattern` lets records without one through uncounted.
        let d = dedup("key: body", sink.clone());
        d.consume(batch("api", vec![rec("a 1", T0, &p), rec("a 2", T0, &p)]))
            .await
            .unwrap();
        assert_eq!(sink.take().len(), 2);
        let d2 = dedup("key: pattern", sink.clone());
        d2.consume(batch("api", vec![rec("z", T0, &[]), rec("z", T0, &[])]))
            .await
            .unwrap();
        assert_eq!(sink.take().len(), 2);
        assert_eq!(d2.key_count(), 0);
        drop(d);
    }

    #[tokio::test(start_paused = true)]
    async fn an_evicted_key_sends_its_summary_first() {
        let sink = Arc::new(Sink::default());
        let d = dedup("max_keys: 2", sink.clone());
        d.consume(batch(
            "api",
            vec![
                rec("a", T0, &[]),
                rec("a", T0 + 1, &[]),
                rec("b", T0, &[]),
                rec("b", T0, &[]),
                rec("b", T0, &[]),
            ],
        ))
        .await
        .unwrap();
        assert_eq!(sink.take().len(), 2);
        // `a` is the least recently seen key: `c` pushes it out, with its count.
        d.consume(batch("api", vec![rec("c", T0, &[])]))
            .await
            .unwrap();
        let got = sink.take();
        let seen: Vec<(&str, Option<i64>)> = got.iter().map(|r| (body(r), count(r))).collect();
        assert_eq!(seen, [("c", None), ("a", Some(2))]);
        assert_eq!(d.key_count(), 2);
        // Then `b` is the oldest: `d` pushes it out with its count.
        d.consume(batch("api", vec![rec("d", T0, &[])]))
            .await
            .unwrap();
        let got = sink.take();
        let seen: Vec<(&str, Option<i64>)> = got.iter().map(|r| (body(r), count(r))).collect();
        assert_eq!(seen, [("d", None), ("b", Some(3))]);
        // A lone record pushed out (`c`) has nothing to summarise.
        d.consume(batch("api", vec![rec("e", T0, &[]), rec("d", T0, &[])]))
            .await
            .unwrap();
        assert_eq!(sink.take().iter().map(body).collect::<Vec<_>>(), ["e"]);
        d.shutdown().await.unwrap();
        let got = sink.take();
        assert_eq!(
            got.iter().map(|r| (body(r), count(r))).collect::<Vec<_>>(),
            [("d", Some(2))]
        );
    }

    #[tokio::test]
    async fn the_timer_sends_summaries_and_shutdown_flushes_the_rest() {
        let sink = Arc::new(Sink::default());
        let d = dedup("window: 50ms", sink.clone());
        d.start(&Host::detached()).await.unwrap();
        let storm: Vec<LogRecord> = (0..1000).map(|i| rec("boom", T0 + i, &[])).collect();
        d.consume(batch("api", storm)).await.unwrap();
        let start = std::time::Instant::now();
        loop {
            let n = lock(&sink.0).len();
            if n == 2 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no summary from the timer"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let got = sink.take();
        assert_eq!(count(&got[1]), Some(1000));
        d.consume(batch(
            "api",
            vec![rec("late", T0, &[]), rec("late", T0, &[])],
        ))
        .await
        .unwrap();
        d.shutdown().await.unwrap();
        let got = sink.take();
        assert_eq!(got.iter().map(count).collect::<Vec<_>>(), [None, Some(2)]);
        // After shutdown nothing is held back.
        d.consume(batch("api", vec![rec("x", T0, &[]), rec("x", T0, &[])]))
            .await
            .unwrap();
        assert_eq!(sink.take().len(), 2);
    }
}
