//! `logpattern`: mines log templates as records flow through a logs pipeline. Every record gets
//! `log.pattern.id` (the template's stable 16-hex id) and `log.pattern` (the template, `<*>` for each
//! variable), so that `dedup` can collapse by pattern and `anomalydetection` can count a rate per pattern.
//!
//! After a warm-up, a template never seen before also yields one `vigil.pattern.new` event in the same
//! batch (documented in `docs/events.md`). With `storage`, the miner's state is loaded at start and saved
//! periodically and at shutdown, so ids and the set of known templates survive a restart.

use async_trait::async_trait;
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use vigil_core::attrs::{get_str, kv_str, upsert, value_to_string};
use vigil_core::config::opt_duration;
use vigil_core::lock;
use vigil_core::otlp::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use vigil_core::time::now_nanos;
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Host, Processor,
    Signal, Storage, Telemetry,
};
use vigil_detect::template::{self, MaskConfig, MinerConfig, TemplateMiner};

/// The attribute holding a record's template id.
pub const PATTERN_ID: &str = "log.pattern.id";
/// The attribute holding a record's template text.
pub const PATTERN: &str = "log.pattern";
/// The event emitted for a template first seen after warm-up.
pub const EVENT_NEW: &str = "vigil.pattern.new";
/// The scope name of the events this processor emits.
pub const SCOPE: &str = "vigil/logpattern";
/// The storage key the miner's state is saved under.
const STATE_KEY: &[u8] = b"state";
/// How often the state is saved while running (only when lines were added since the last save).
const SAVE_INTERVAL: Duration = Duration::from_secs(30);
/// Events held after downstream pushed back, to go out with the next batch; beyond this the oldest go.
const HELD_EVENTS_LIMIT: usize = 1000;

/// The `logpattern` processor's config as written in YAML. The miner keys and their defaults are those
/// of [`MinerConfig`], the one configuration scored on Loghub.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogPatternConfig {
    /// Most templates kept; the least recently used one is dropped to make room.
    pub max_templates: usize,
    /// Share of a template's words a line must repeat to join it (0 to 1); positions holding a value in
    /// both are left out.
    pub similarity: f64,
    /// Depth of the prefix tree (at least 3).
    pub depth: usize,
    /// Most children of a tree node.
    pub max_children: usize,
    /// Which variable parts are masked before matching.
    pub masking: MaskConfig,
    /// Lines to see before new templates are reported as events.
    pub warmup_lines: u64,
    /// Time after start before new templates are reported as events. Warm-up ends once both this and
    /// `warmup_lines` are reached.
    #[serde(with = "opt_duration")]
    pub warmup: Option<Duration>,
    /// A storage extension (`file_storage/x`) to keep the templates in across restarts.
    pub storage: Option<String>,
}

impl Default for LogPatternConfig {
    fn default() -> Self {
        let m = MinerConfig::default();
        LogPatternConfig {
            max_templates: m.max_templates,
            similarity: m.similarity,
            depth: m.depth,
            max_children: m.max_children,
            masking: m.masking,
            warmup_lines: 1000,
            warmup: None,
            storage: None,
        }
    }
}

/// A checked config.
#[derive(Debug, Clone)]
struct Checked {
    miner: MinerConfig,
    warmup_lines: u64,
    warmup: Duration,
    storage: Option<ComponentId>,
}

#[cfg(test)]
fn parse(id: &ComponentId, value: &serde_json::Value) -> Result<Checked, ConfigError> {
    check(
        id,
        vigil_core::config::decode(ComponentKind::Processor, id, value)?,
    )
}

/// Checks a decoded section and prepares what the component runs with.
fn check(id: &ComponentId, c: LogPatternConfig) -> Result<Checked, ConfigError> {
    let err =
        |path: String, msg: String| ConfigError::component(ComponentKind::Processor, id, path, msg);
    let miner = MinerConfig {
        depth: c.depth,
        similarity: c.similarity,
        max_children: c.max_children,
        max_templates: c.max_templates,
        masking: c.masking,
        ..MinerConfig::default()
    };
    // The miner checks its own ranges and regexes; this maps its answer onto the key path.
    if let Err(e) = TemplateMiner::new(miner.clone()) {
        return Err(match e {
            template::ConfigError::Mask(m) => {
                err(format!("masking::extra::{}", m.index), m.to_string())
            }
            template::ConfigError::Range {
                field,
                expected,
                value,
            } => err(
                field.to_string(),
                format!("expected {expected}, got {value}"),
            ),
        });
    }
    let storage = match c.storage {
        Some(s) => Some(ComponentId::parse(&s).map_err(|e| err("storage".into(), e))?),
        None => None,
    };
    Ok(Checked {
        miner,
        warmup_lines: c.warmup_lines,
        warmup: c.warmup.unwrap_or(Duration::ZERO),
        storage,
    })
}

struct Factory;

/// The `logpattern` processor factory.
pub fn factory() -> Arc<dyn vigil_core::factory::DynProcessorFactory> {
    vigil_core::factory::processor(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = LogPatternConfig;

    fn type_name(&self) -> &'static str {
        "logpattern"
    }

    fn validate(&self, id: &ComponentId, cfg: &LogPatternConfig) -> Result<(), ConfigError> {
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
        cfg: LogPatternConfig,
        _signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let id = &set.id;
        let cfg = check(id, cfg)?;
        Ok(Arc::new(LogPattern::new(set, cfg, next)?))
    }
}

/// The miner and what warm-up needs, behind one lock taken once per batch.
struct State {
    miner: TemplateMiner,
    /// Lines mined since start (or loaded state counts as warm).
    lines: u64,
    warm: bool,
    started: Instant,
    /// Lines mined since the state was last saved.
    unsaved: u64,
}

/// A running `logpattern` processor.
pub struct LogPattern {
    inner: Arc<Inner>,
    /// The periodic save of the templates.
    tasks: vigil_core::Tasks,
}

/// What `consume` and the periodic saver share.
struct Inner {
    id: ComponentId,
    label: String,
    obs: vigil_core::ProcessorObs,
    /// `vigil.pattern.new` events dropped because too many waited for a retry.
    events_dropped: metrics::Counter,
    cfg: Checked,
    next: Arc<dyn Consumer>,
    state: Mutex<State>,
    /// `vigil.pattern.new` events of a batch that downstream refused as retryable: the client resends
    /// the lines, but their templates are no longer new, so the events go out with the next batch.
    held: Mutex<Vec<ResourceLogs>>,
    storage: Mutex<Option<Arc<dyn Storage>>>,
}

/// A record that vigil itself emitted (`vigil.anomaly`, `vigil.pattern.new`, …): mining those would
/// turn events into patterns of their own.
pub fn is_vigil_event(r: &LogRecord) -> bool {
    r.event_name.starts_with("vigil.")
        || get_str(&r.attributes, "event.name").is_some_and(|n| n.starts_with("vigil."))
}

impl LogPattern {
    fn new(
        set: vigil_core::Settings,
        cfg: Checked,
        next: Arc<dyn Consumer>,
    ) -> Result<Self, ConfigError> {
        let miner = TemplateMiner::new(cfg.miner.clone())
            .map_err(|e| ConfigError::at("", e.to_string()))?;
        let warm = cfg.warmup_lines == 0 && cfg.warmup.is_zero();
        Ok(LogPattern {
            inner: Arc::new(Inner {
                id: set.id.clone(),
                label: set.id.to_string(),
                obs: set.processor_obs(Signal::Logs),
                events_dropped: metrics::counter!(
                    "vigil_logpattern_events_dropped",
                    "processor" => set.id.to_string()
                ),
                cfg,
                next,
                state: Mutex::new(State {
                    miner,
                    lines: 0,
                    warm,
                    started: Instant::now(),
                    unsaved: 0,
                }),
                held: Mutex::new(Vec::new()),
                storage: Mutex::new(None),
            }),
            tasks: set.tasks,
        })
    }

    /// Number of live templates.
    pub fn template_count(&self) -> usize {
        lock(&self.inner.state).miner.len()
    }
}

impl Inner {
    fn warm_now(&self, st: &State) -> bool {
        st.lines >= self.cfg.warmup_lines && st.started.elapsed() >= self.cfg.warmup
    }

    /// Mines every record of the batch and returns the `vigil.pattern.new` events it produced, one
    /// `ResourceLogs` per source resource that had any.
    // Hot path: one lock per batch (examples/bench_logpattern.rs).
    fn mine(&self, batch: &mut [ResourceLogs]) -> Vec<ResourceLogs> {
        let mut events = Vec::new();
        let mut created = 0u64;
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        let observed = now_nanos();
        for rl in batch.iter_mut() {
            let mut new_here: Vec<LogRecord> = Vec::new();
            for sl in rl.scope_logs.iter_mut() {
                for r in sl.log_records.iter_mut() {
                    if is_vigil_event(r) {
                        continue;
                    }
                    let rendered;
                    let line: &str = match r.body.as_ref().and_then(|b| b.value.as_ref()) {
                        Some(any_value::Value::StringValue(s)) => s,
                        Some(v) => {
                            rendered = value_to_string(v);
                            &rendered
                        }
                        None => "",
                    };
                    let res = st.miner.add(line);
                    let id_text = res.id.to_string();
                    let template_text = res.template.to_string();
                    if res.is_new {
                        created += 1;
                        if st.warm {
                            new_here.push(new_pattern_event(
                                r,
                                line,
                                &id_text,
                                &template_text,
                                observed,
                            ));
                        }
                    }
                    st.lines += 1;
                    st.unsaved += 1;
                    if !st.warm {
                        st.warm = self.warm_now(st);
                    }
                    upsert(
                        &mut r.attributes,
                        PATTERN_ID,
                        any_value::Value::StringValue(id_text),
                    );
                    upsert(
                        &mut r.attributes,
                        PATTERN,
                        any_value::Value::StringValue(template_text),
                    );
                }
            }
            if !new_here.is_empty() {
                events.push(ResourceLogs {
                    resource: rl.resource.clone(),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(InstrumentationScope {
                            name: SCOPE.into(),
                            version: env!("CARGO_PKG_VERSION").into(),
                            ..Default::default()
                        }),
                        log_records: new_here,
                        ..Default::default()
                    }],
                    schema_url: rl.schema_url.clone(),
                });
            }
        }
        // A warm-up by time alone may end between lines; notice it on the next batch.
        if !st.warm {
            st.warm = self.warm_now(st);
        }
        let templates = st.miner.len();
        drop(guard);
        metrics::gauge!("vigil_logpattern_templates", "processor" => self.label.clone())
            .set(templates as f64);
        if created > 0 {
            metrics::counter!("vigil_logpattern_new_patterns", "processor" => self.label.clone())
                .increment(created);
        }
        events
    }

    /// The state's bytes, when lines were mined since the last save or `force` is set.
    fn snapshot(&self, force: bool) -> Option<Vec<u8>> {
        let mut st = lock(&self.state);
        if st.unsaved == 0 && !force {
            return None;
        }
        st.unsaved = 0;
        Some(st.miner.to_bytes())
    }

    async fn save(&self, force: bool) -> anyhow::Result<()> {
        let Some(store) = lock(&self.storage).clone() else {
            return Ok(());
        };
        let Some(bytes) = self.snapshot(force) else {
            return Ok(());
        };
        // A commit may fsync: keep it off the async workers.
        tokio::task::spawn_blocking(move || store.set(STATE_KEY, &bytes)).await??;
        Ok(())
    }

    /// Loads saved templates. A state that cannot be decoded is logged and replaced by an empty miner:
    /// losing learnt templates is better than an agent that will not start.
    fn load(&self, store: &dyn Storage) -> anyhow::Result<()> {
        let Some(bytes) = store.get(STATE_KEY)? else {
            return Ok(());
        };
        match TemplateMiner::from_bytes(self.cfg.miner.clone(), &bytes) {
            Ok(miner) => {
                tracing::info!(processor = %self.id, templates = miner.len(), "log templates loaded from storage");
                let mut st = lock(&self.state);
                // Known templates are not news: a restored miner is warm at once.
                st.warm = st.warm || !miner.is_empty();
                st.miner = miner;
                st.unsaved = 0;
            }
            Err(e) => {
                tracing::warn!(processor = %self.id, error = %e, "saved log templates cannot be loaded; starting with none");
            }
        }
        Ok(())
    }
}

/// One `vigil.pattern.new` event for the record that created a template.
fn new_pattern_event(
    r: &LogRecord,
    line: &str,
    id: &str,
    template: &str,
    observed: u64,
) -> LogRecord {
    let time = if r.time_unix_nano > 0 {
        r.time_unix_nano
    } else if r.observed_time_unix_nano > 0 {
        r.observed_time_unix_nano
    } else {
        observed
    };
    let attributes: Vec<KeyValue> = vec![
        kv_str("event.name", EVENT_NEW),
        kv_str("vigil.pattern.id", id),
        kv_str("vigil.pattern.template", template),
        kv_str("vigil.pattern.example", line),
    ];
    LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: observed,
        severity_number: SeverityNumber::Info as i32,
        severity_text: "INFO".into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(format!(
                "new log pattern {id}: {template}"
            ))),
        }),
        attributes,
        event_name: EVENT_NEW.into(),
        ..Default::default()
    }
}

#[async_trait]
impl Component for LogPattern {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        let inner = &self.inner;
        lock(&inner.state).started = Instant::now();
        let Some(sid) = &inner.cfg.storage else {
            return Ok(());
        };
        let where_ = format!("processors::{}::storage", inner.id);
        let store = host
            .storage(sid, &inner.id, "templates")
            .map_err(|e| anyhow::anyhow!("{where_}: {e}"))?;
        inner
            .load(store.as_ref())
            .map_err(|e| anyhow::anyhow!("{where_}: cannot read saved templates: {e}"))?;
        *lock(&inner.storage) = Some(store);
        let inner = Arc::clone(inner);
        self.tasks.spawn_ticker(SAVE_INTERVAL, move || {
            let inner = Arc::clone(&inner);
            async move {
                if let Err(e) = inner.save(false).await {
                    tracing::warn!(processor = %inner.id, error = %e, "cannot save log templates; will retry");
                }
            }
        });
        Ok(())
    }

    /// Stops the periodic save and saves once more, within the shutdown deadline.
    async fn shutdown_by(&self, deadline: std::time::Instant) -> anyhow::Result<()> {
        self.tasks.stop(deadline).await;
        let id = &self.inner.id;
        match vigil_core::task::within(deadline, self.inner.save(true)).await {
            Some(r) => {
                r.map_err(|e| anyhow::anyhow!("processors::{id}: cannot save log templates: {e}"))
            }
            None => {
                anyhow::bail!("processors::{id}: log templates not saved by the shutdown deadline")
            }
        }
    }
}

#[async_trait]
impl Consumer for LogPattern {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let inner = &self.inner;
        let Telemetry::Logs(mut batch) = data else {
            // Only logs pipelines are created; anything else goes on untouched.
            return inner.next.consume(data).await;
        };
        inner
            .obs
            .incoming(vigil_core::telemetry::log_record_count(&batch));
        let mut events = inner.mine(&mut batch);
        let held = std::mem::take(&mut *lock(&inner.held));
        if !held.is_empty() {
            events.splice(0..0, held);
        }
        if events.is_empty() {
            inner
                .obs
                .outgoing(vigil_core::telemetry::log_record_count(&batch));
            return inner.next.consume(Telemetry::Logs(batch)).await;
        }
        // Events are few and small: a copy is kept so that a pushed-back batch does not lose them.
        let copy = events.clone();
        batch.extend(events);
        inner
            .obs
            .outgoing(vigil_core::telemetry::log_record_count(&batch));
        let result = inner.next.consume(Telemetry::Logs(batch)).await;
        if let Err(e) = &result {
            if e.is_retryable() {
                let mut held = lock(&inner.held);
                held.extend(copy);
                let n: usize = held
                    .iter()
                    .map(|r| {
                        r.scope_logs
                            .iter()
                            .map(|s| s.log_records.len())
                            .sum::<usize>()
                    })
                    .sum();
                if n > HELD_EVENTS_LIMIT {
                    let dropped = held.len() / 2;
                    let records = vigil_core::telemetry::log_record_count(&held[..dropped]);
                    held.drain(..dropped);
                    inner.events_dropped.increment(records as u64);
                    tracing::warn!(processor = %inner.id, "too many vigil.pattern.new events held for a retry; dropped the oldest");
                }
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::{BTreeMap, HashMap};
    use vigil_core::attrs::kv_i64;
    use vigil_core::otlp::resource::v1::Resource;
    use vigil_core::storage::{KeyValues, StorageOp};
    use vigil_core::{Extension, StorageError};

    /// Keeps what it is given; refuses as retryable while `refuse` is above zero.
    #[derive(Default)]
    struct Sink {
        got: Mutex<Vec<LogRecord>>,
        refuse: Mutex<usize>,
    }

    #[async_trait]
    impl Consumer for Sink {
        async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
            {
                let mut r = lock(&self.refuse);
                if *r > 0 {
                    *r -= 1;
                    return Err(ConsumeError::retryable("full"));
                }
            }
            if let Telemetry::Logs(rls) = data {
                let mut got = lock(&self.got);
                for rl in rls {
                    for sl in rl.scope_logs {
                        for mut r in sl.log_records {
                            // Resource attributes are folded in as `resource.<key>` so tests can see them.
                            for kv in rl.resource.iter().flat_map(|r| r.attributes.iter()) {
                                let mut kv = kv.clone();
                                kv.key = format!("resource.{}", kv.key);
                                r.attributes.push(kv);
                            }
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
            std::mem::take(&mut *lock(&self.got))
        }
    }

    fn s<'a>(r: &'a LogRecord, key: &str) -> &'a str {
        get_str(&r.attributes, key).unwrap_or("")
    }

    fn batch(service: &str, lines: &[&str]) -> Telemetry {
        Telemetry::Logs(vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", service)],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: lines
                    .iter()
                    .map(|l| LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(l.to_string())),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn processor(yaml: &str, sink: Arc<Sink>) -> LogPattern {
        let id = ComponentId::parse("logpattern/t").unwrap();
        let v: Value = serde_saphyr::from_str(yaml).unwrap();
        LogPattern::new(
            vigil_core::Settings::new(ComponentKind::Processor, &id),
            parse(&id, &v).unwrap(),
            sink,
        )
        .unwrap()
    }

    fn events(rs: &[LogRecord]) -> Vec<&LogRecord> {
        rs.iter()
            .filter(|r| s(r, "event.name") == EVENT_NEW)
            .collect()
    }

    #[tokio::test]
    async fn every_record_gets_its_pattern() {
        let sink = Arc::new(Sink::default());
        let p = processor("{}", sink.clone());
        p.consume(batch(
            "api",
            &[
                "connection from 10.0.0.1 closed after 12 ms",
                "connection from 10.0.0.7 closed after 480 ms",
                "disk /var is 91% full",
            ],
        ))
        .await
        .unwrap();
        let got = sink.take();
        assert_eq!(got.len(), 3);
        let (a, b, c) = (&got[0], &got[1], &got[2]);
        assert_eq!(s(a, PATTERN_ID).len(), 16);
        assert!(s(a, PATTERN_ID).chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(s(a, PATTERN_ID), s(b, PATTERN_ID));
        assert_ne!(s(a, PATTERN_ID), s(c, PATTERN_ID));
        assert_eq!(s(b, PATTERN), "connection from <*> closed after <*>");
        assert!(s(c, PATTERN).contains("<*>"), "{}", s(c, PATTERN));
        assert_eq!(p.template_count(), 2);
    }

    #[tokio::test]
    async fn non_string_bodies_are_rendered_and_vigil_events_pass_untouched() {
        let sink = Arc::new(Sink::default());
        let p = processor("{}", sink.clone());
        let mut t = batch("api", &["x"]);
        let Telemetry::Logs(rls) = &mut t else {
            unreachable!()
        };
        let recs = &mut rls[0].scope_logs[0].log_records;
        recs[0].body = Some(AnyValue {
            value: Some(any_value::Value::IntValue(42)),
        });
        let event = LogRecord {
            attributes: vec![kv_str("event.name", "vigil.anomaly"), kv_i64("n", 1)],
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue("cpu surged".into())),
            }),
            ..Default::default()
        };
        recs.push(event.clone());
        recs.push(LogRecord::default());
        p.consume(t).await.unwrap();
        let got = sink.take();
        assert_eq!(got.len(), 3);
        assert_eq!(s(&got[0], PATTERN), "<*>");
        let mut untouched = got[1].clone();
        untouched
            .attributes
            .retain(|kv| !kv.key.starts_with("resource."));
        assert_eq!(untouched, event);
        // A record without a body still gets a pattern, so that every record has one.
        assert_eq!(s(&got[2], PATTERN_ID).len(), 16);
    }

    #[tokio::test]
    async fn one_event_per_new_template_after_warmup_and_none_during() {
        let sink = Arc::new(Sink::default());
        let p = processor("warmup_lines: 4", sink.clone());
        p.consume(batch(
            "api",
            &[
                "user 1 logged in",
                "user 2 logged in",
                "cache miss for key 77",
                "user 3 logged in",
            ],
        ))
        .await
        .unwrap();
        assert!(events(&sink.take()).is_empty(), "no event during warm-up");

        p.consume(batch(
            "api",
            &[
                "user 4 logged in",
                "payment 9 failed: card declined",
                "payment 10 failed: card declined",
                "cache miss for key 78",
            ],
        ))
        .await
        .unwrap();
        let got = sink.take();
        let ev = events(&got);
        assert_eq!(ev.len(), 1, "{ev:?}");
        let e = ev[0];
        let line = got
            .iter()
            .find(|r| s(r, PATTERN).starts_with("payment"))
            .unwrap();
        assert_eq!(s(e, "vigil.pattern.id"), s(line, PATTERN_ID));
        assert_eq!(
            s(e, "vigil.pattern.example"),
            "payment 9 failed: card declined"
        );
        assert_eq!(
            s(e, "vigil.pattern.template"),
            "payment <*> failed: card declined"
        );
        assert_eq!(s(e, "resource.service.name"), "api");
        assert_eq!(e.event_name, EVENT_NEW);
        assert_eq!(e.time_unix_nano, 1_700_000_000_000_000_000);
        assert!(
            e.attributes.iter().all(|kv| kv.key != PATTERN_ID),
            "events are not mined"
        );

        p.consume(batch("api", &["payment 11 failed: card declined"]))
            .await
            .unwrap();
        assert!(events(&sink.take()).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn warmup_by_time_needs_the_time_to_pass() {
        let sink = Arc::new(Sink::default());
        let p = processor("warmup_lines: 0\nwarmup: 5m", sink.clone());
        p.start(&Host::detached()).await.unwrap();
        p.consume(batch("api", &["alpha 1 started"])).await.unwrap();
        tokio::time::advance(Duration::from_secs(301)).await;
        p.consume(batch("api", &["alpha 2 started"])).await.unwrap();
        p.consume(batch("api", &["beta 1 stopped now"]))
            .await
            .unwrap();
        let got = sink.take();
        assert_eq!(events(&got).len(), 1);
        assert_eq!(
            s(events(&got)[0], "vigil.pattern.example"),
            "beta 1 stopped now"
        );
        p.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn events_of_a_refused_batch_go_out_with_the_next() {
        let sink = Arc::new(Sink::default());
        let p = processor("warmup_lines: 0", sink.clone());
        *lock(&sink.refuse) = 1;
        assert!(p.consume(batch("api", &["boot 1 done"])).await.is_err());
        // The client resends: the template is known now, but its event is not lost.
        p.consume(batch("api", &["boot 1 done"])).await.unwrap();
        let got = sink.take();
        assert_eq!(events(&got).len(), 1);
        assert_eq!(got.len(), 2);
    }

    #[derive(Default)]
    struct MemStorage(Mutex<BTreeMap<Vec<u8>, Vec<u8>>>);

    impl Storage for MemStorage {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
            Ok(lock(&self.0).get(key).cloned())
        }
        fn batch(&self, ops: Vec<StorageOp>) -> Result<(), StorageError> {
            let mut m = lock(&self.0);
            for op in ops {
                match op {
                    StorageOp::Set(k, v) => {
                        m.insert(k, v);
                    }
                    StorageOp::Delete(k) => {
                        m.remove(&k);
                    }
                }
            }
            Ok(())
        }
        fn scan_prefix(&self, prefix: &[u8]) -> Result<KeyValues, StorageError> {
            Ok(lock(&self.0)
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }
    }

    /// A storage extension handing out one in-memory store per (owner, name).
    #[derive(Default)]
    struct MemExtension(Mutex<HashMap<String, Arc<MemStorage>>>);

    #[async_trait]
    impl Component for MemExtension {}

    impl Extension for MemExtension {
        fn storage_client(
            &self,
            owner: &ComponentId,
            name: &str,
        ) -> Option<Result<Arc<dyn Storage>, StorageError>> {
            let mut m = lock(&self.0);
            let s = m.entry(format!("{owner}/{name}")).or_default().clone();
            Some(Ok(s as Arc<dyn Storage>))
        }
    }

    #[tokio::test]
    async fn saved_state_keeps_ids_across_a_restart() {
        let ext = Arc::new(MemExtension::default());
        let sid = ComponentId::parse("file_storage/x").unwrap();
        let mut exts: HashMap<ComponentId, Arc<dyn Extension>> = HashMap::new();
        exts.insert(sid, ext.clone());
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let host = Host::new(exts, tx);
        let cfg = "warmup_lines: 2\nstorage: file_storage/x";

        let sink = Arc::new(Sink::default());
        let first = processor(cfg, sink.clone());
        first.start(&host).await.unwrap();
        first
            .consume(batch(
                "api",
                &["job 17 finished in 3 s", "queue depth 5 on q1 is high"],
            ))
            .await
            .unwrap();
        first.shutdown().await.unwrap();
        let before = sink.take();
        assert!(lock(&ext.0).contains_key("logpattern/t/templates"));

        let sink = Arc::new(Sink::default());
        let second = processor(cfg, sink.clone());
        second.start(&host).await.unwrap();
        assert_eq!(second.template_count(), 2);
        second
            .consume(batch(
                "api",
                &["job 99 finished in 8 s", "a kind of line never seen"],
            ))
            .await
            .unwrap();
        let after = sink.take();
        assert_eq!(s(&after[0], PATTERN_ID), s(&before[0], PATTERN_ID));
        // Loaded templates count as warm-up: the new kind is reported at once, the known one not.
        let ev = events(&after);
        assert_eq!(ev.len(), 1);
        assert_eq!(
            s(ev[0], "vigil.pattern.example"),
            "a kind of line never seen"
        );
        second.shutdown().await.unwrap();
    }

    #[test]
    fn factory_takes_logs_only() {
        let id = ComponentId::parse("logpattern").unwrap();
        let sink: Arc<dyn Consumer> = Arc::new(Sink::default());
        let f = factory();
        assert!(f
            .create(&id, &Value::Null, Signal::Logs, sink.clone())
            .is_ok());
        assert!(f.create(&id, &Value::Null, Signal::Traces, sink).is_err());
    }
}
