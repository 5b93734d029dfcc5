//! `drain`: otelcol's drain processor (contrib `processor/drainprocessor`, shipped in its Kubernetes
//! distribution) with vigil's template miner behind it. It accepts that processor's config keys and
//! writes the same attribute, `log.record.template`, so a user's `drain` config runs unchanged; the
//! templates are those of [`TemplateMiner`], the miner `logpattern` uses (scored on Loghub in
//! `BENCHMARKS.md`).
//!
//! How its template strings compare with Drain's is in `docs/drain.md`. In short: the same `<*>`
//! marker and space-joined tokens, but a value is masked before matching (numbers, ids, addresses,
//! paths), so a value is masked from its first line (`<*>:<*>` for `10.0.0.1:80`, where Drain writes
//! `10.0.0.1:80` until a second address varies), and a capitalised word such as a request verb is
//! never turned into `<*>`.

use async_trait::async_trait;
use regex::Regex;
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_core::attrs::{upsert, value_to_string};
use vigil_core::config::opt_duration;
use vigil_core::lock;
use vigil_core::otlp::common::v1::{any_value, AnyValue, ArrayValue};
use vigil_core::otlp::logs::v1::ResourceLogs;
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Host, Processor,
    Signal, Storage, Telemetry,
};
use vigil_detect::template::{self, MinerConfig, TemplateMiner};

use crate::logpattern::is_vigil_event;

/// The attribute written by default, as in otelcol.
pub const TEMPLATE_ATTRIBUTE: &str = "log.record.template";
/// The prefix of the attributes holding masked values, as in otelcol.
pub const PARAMETER_KEY_PREFIX: &str = "log.record.template.parameter";
/// The attribute of the positional wildcard values, as in otelcol.
pub const WILDCARDS_ATTRIBUTE: &str = "log.record.template.wildcards";
/// Templates kept when `max_clusters` is 0. otelcol's 0 means unbounded; vigil bounds every table, and
/// this is the miner's own default.
pub const DEFAULT_MAX_CLUSTERS: usize = 50_000;
/// The storage key the miner's state is saved under.
const STATE_KEY: &[u8] = b"drain";

/// One of otelcol's `masking_rules`: matches of `pattern` become the token `<name>`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingRule {
    /// The mask's name, written as `<name>` in templates.
    pub name: String,
    /// A regex; its matches are masked.
    pub pattern: String,
}

/// The `drain` processor's config, with otelcol's keys and defaults except where noted.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrainConfig {
    /// Depth of the prefix tree (at least 3), counted as in Drain.
    pub tree_depth: usize,
    /// Share of a template's words a line must repeat to join it (0 to 1). vigil's measure leaves out
    /// positions that hold a value on both sides, so it is stricter than Drain's at the same number;
    /// unset, it is the miner's scored default (0.7) rather than otelcol's 0.4.
    pub merge_threshold: Option<f64>,
    /// Most children of a tree node.
    pub max_node_children: usize,
    /// Most templates kept, least recently used evicted; 0 means [`DEFAULT_MAX_CLUSTERS`].
    pub max_clusters: usize,
    /// Strings that separate tokens besides whitespace.
    pub extra_delimiters: Vec<String>,
    /// When the body is a map, the key whose value is mined.
    pub body_field: String,
    /// The attribute the template is written to.
    pub template_attribute: String,
    /// Regexes whose matches become `<name>` before mining.
    pub masking_rules: Vec<MaskingRule>,
    /// Prefix of the attributes holding each rule's matched values.
    pub parameter_key_prefix: String,
    /// Also write the values at the template's `<*>` positions (see `wildcards_attribute`).
    pub emit_wildcards: bool,
    /// The attribute of the wildcard values.
    pub wildcards_attribute: String,
    /// Templates learnt at start.
    pub seed_templates: Vec<String>,
    /// Lines learnt at start.
    pub seed_logs: Vec<String>,
    /// Templates to learn before records are annotated.
    pub warmup_min_clusters: usize,
    /// A storage extension to keep the templates in across restarts.
    pub storage: Option<String>,
    /// How often the templates are saved while running; unset or 0 saves at shutdown only.
    #[serde(with = "opt_duration")]
    pub save_interval: Option<Duration>,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            tree_depth: 4,
            merge_threshold: None,
            max_node_children: 100,
            max_clusters: 0,
            extra_delimiters: Vec::new(),
            body_field: String::new(),
            template_attribute: TEMPLATE_ATTRIBUTE.into(),
            masking_rules: Vec::new(),
            parameter_key_prefix: PARAMETER_KEY_PREFIX.into(),
            emit_wildcards: false,
            wildcards_attribute: WILDCARDS_ATTRIBUTE.into(),
            seed_templates: Vec::new(),
            seed_logs: Vec::new(),
            warmup_min_clusters: 0,
            storage: None,
            save_interval: None,
        }
    }
}

#[derive(Debug, Clone)]
struct Checked {
    miner: MinerConfig,
    delimiters: Vec<String>,
    body_field: String,
    attribute: String,
    masks: Vec<(String, Regex)>,
    prefix: String,
    wildcards: Option<String>,
    seeds: Vec<String>,
    warmup: usize,
    storage: Option<ComponentId>,
    save_interval: Duration,
}

#[cfg(test)]
fn parse(id: &ComponentId, value: &serde_json::Value) -> Result<Checked, ConfigError> {
    check(
        id,
        vigil_core::config::decode(ComponentKind::Processor, id, value)?,
    )
}

/// Checks a decoded section and prepares what the component runs with.
fn check(id: &ComponentId, c: DrainConfig) -> Result<Checked, ConfigError> {
    let err = |path: &str, msg: String| {
        ConfigError::component(ComponentKind::Processor, id, path.to_string(), msg)
    };
    if c.tree_depth < 3 {
        return Err(err(
            "tree_depth",
            format!("must be at least 3, got {}", c.tree_depth),
        ));
    }
    let defaults = MinerConfig::default();
    let similarity = c.merge_threshold.unwrap_or(defaults.similarity);
    if !(0.0..=1.0).contains(&similarity) {
        return Err(err(
            "merge_threshold",
            format!("must be between 0 and 1, got {similarity}"),
        ));
    }
    let miner = MinerConfig {
        depth: c.tree_depth,
        similarity,
        max_children: c.max_node_children,
        max_templates: if c.max_clusters == 0 {
            DEFAULT_MAX_CLUSTERS
        } else {
            c.max_clusters
        },
        ..defaults
    };
    if let Err(e) = TemplateMiner::new(miner.clone()) {
        let field = match &e {
            template::ConfigError::Range { field, .. } => match *field {
                "max_children" => "max_node_children",
                "max_templates" => "max_clusters",
                other => other,
            },
            template::ConfigError::Mask(_) => "",
        };
        return Err(err(field, e.to_string()));
    }
    let mut masks = Vec::with_capacity(c.masking_rules.len());
    for (i, r) in c.masking_rules.iter().enumerate() {
        let path = format!("masking_rules::{i}");
        if r.name.is_empty() || r.name == "*" || r.name.contains(['<', '>', ' ', '\t', '\n', '\r'])
        {
            return Err(err(
                &format!("{path}::name"),
                format!(
                    "must be non-empty, not \"*\", without angle brackets or spaces; got {:?}",
                    r.name
                ),
            ));
        }
        let re = vigil_core::config::re2_regex(&r.pattern).map_err(|e| {
            err(
                &format!("{path}::pattern"),
                format!("not a valid regex: {e}"),
            )
        })?;
        if r.pattern.is_empty() {
            return Err(err(&format!("{path}::pattern"), "must not be empty".into()));
        }
        masks.push((r.name.clone(), re));
    }
    if c.extra_delimiters.iter().any(String::is_empty) {
        return Err(err(
            "extra_delimiters",
            "a delimiter must not be empty".into(),
        ));
    }
    if c.template_attribute.is_empty() {
        return Err(err("template_attribute", "must not be empty".into()));
    }
    let storage = match &c.storage {
        Some(s) => Some(ComponentId::parse(s).map_err(|e| err("storage", e))?),
        None => None,
    };
    let save_interval = c.save_interval.unwrap_or(Duration::ZERO);
    if !save_interval.is_zero() && storage.is_none() {
        return Err(err("save_interval", "requires storage to be set".into()));
    }
    let mut seeds = c.seed_templates;
    seeds.extend(c.seed_logs);
    seeds.retain(|s| !s.trim().is_empty());
    Ok(Checked {
        miner,
        delimiters: c.extra_delimiters,
        body_field: c.body_field,
        attribute: c.template_attribute,
        masks,
        prefix: c.parameter_key_prefix,
        wildcards: c.emit_wildcards.then_some(c.wildcards_attribute),
        seeds,
        warmup: c.warmup_min_clusters,
        storage,
        save_interval,
    })
}

struct Factory;

/// The `drain` processor factory.
pub fn factory() -> Arc<dyn vigil_core::factory::DynProcessorFactory> {
    vigil_core::factory::processor(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = DrainConfig;

    fn type_name(&self) -> &'static str {
        "drain"
    }

    fn validate(&self, id: &ComponentId, cfg: &DrainConfig) -> Result<(), ConfigError> {
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
        cfg: DrainConfig,
        _signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let id = &set.id;
        let cfg = check(id, cfg)?;
        Ok(Arc::new(Drain::new(set, cfg, next)?))
    }
}

struct State {
    miner: TemplateMiner,
    /// Lines mined since the state was last saved.
    unsaved: u64,
}

struct Inner {
    id: ComponentId,
    label: String,
    obs: vigil_core::ProcessorObs,
    cfg: Checked,
    next: Arc<dyn Consumer>,
    state: Mutex<State>,
    storage: Mutex<Option<Arc<dyn Storage>>>,
}

/// A running `drain` processor.
pub struct Drain {
    inner: Arc<Inner>,
    /// The periodic save of the templates.
    tasks: vigil_core::Tasks,
}

impl Drain {
    fn new(
        set: vigil_core::Settings,
        cfg: Checked,
        next: Arc<dyn Consumer>,
    ) -> Result<Self, ConfigError> {
        let miner = TemplateMiner::new(cfg.miner.clone())
            .map_err(|e| ConfigError::at("", e.to_string()))?;
        let drain = Drain {
            inner: Arc::new(Inner {
                id: set.id.clone(),
                label: set.id.to_string(),
                obs: set.processor_obs(Signal::Logs),
                cfg,
                next,
                state: Mutex::new(State { miner, unsaved: 0 }),
                storage: Mutex::new(None),
            }),
            tasks: set.tasks,
        };
        drain.inner.seed();
        Ok(drain)
    }

    /// Number of live templates.
    pub fn template_count(&self) -> usize {
        lock(&self.inner.state).miner.len()
    }
}

impl Inner {
    fn seed(&self) {
        let mut st = lock(&self.state);
        for line in &self.cfg.seeds {
            let (text, _) = self.prepare(line);
            let _ = st.miner.add(&text);
        }
    }

    /// The text mined for a line: masking rules applied (with the values each rule took), then the
    /// extra delimiters turned into spaces.
    fn prepare(&self, line: &str) -> (String, Vec<(usize, Vec<String>)>) {
        let mut text = line.to_string();
        let mut values = Vec::new();
        for (i, (name, re)) in self.cfg.masks.iter().enumerate() {
            let found: Vec<String> = re
                .find_iter(&text)
                .map(|m| m.as_str().to_string())
                .collect();
            if !found.is_empty() {
                text = re.replace_all(&text, format!("<{name}>")).into_owned();
                values.push((i, found));
            }
        }
        for d in &self.cfg.delimiters {
            if text.contains(d.as_str()) {
                text = text.replace(d.as_str(), " ");
            }
        }
        (text, values)
    }

    /// The text of a record: its string body, the `body_field` value of a map body, or the rendered body.
    fn body_text(&self, body: Option<&AnyValue>) -> String {
        let v = body.and_then(|b| b.value.as_ref());
        if !self.cfg.body_field.is_empty() {
            if let Some(any_value::Value::KvlistValue(kv)) = v {
                if let Some(field) = kv
                    .values
                    .iter()
                    .find(|k| k.key == self.cfg.body_field)
                    .and_then(|k| k.value.as_ref())
                    .and_then(|v| v.value.as_ref())
                {
                    return match field {
                        any_value::Value::StringValue(s) => s.clone(),
                        other => value_to_string(other),
                    };
                }
            }
        }
        match v {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            Some(other) => value_to_string(other),
            None => String::new(),
        }
    }

    // Hot path: one lock per batch.
    fn annotate(&self, batch: &mut [ResourceLogs]) {
        let (mut annotated, mut unannotated, mut evicted) = (0u64, 0u64, 0u64);
        let mut st = lock(&self.state);
        for r in batch
            .iter_mut()
            .flat_map(|rl| rl.scope_logs.iter_mut())
            .flat_map(|sl| sl.log_records.iter_mut())
        {
            if is_vigil_event(r) {
                continue;
            }
            let line = self.body_text(r.body.as_ref());
            if line.trim().is_empty() {
                unannotated += 1;
                continue;
            }
            let (text, values) = self.prepare(&line);
            let res = st.miner.add(&text);
            evicted += u64::from(res.evicted.is_some());
            let template = res.template.to_string();
            st.unsaved += 1;
            if st.miner.len() < self.cfg.warmup {
                unannotated += 1;
                continue;
            }
            if let Some(key) = &self.cfg.wildcards {
                let wild = wildcards(&template, &text);
                upsert(&mut r.attributes, key, strings(wild));
            }
            for (i, found) in values {
                let key = format!("{}.{}", self.cfg.prefix, self.cfg.masks[i].0);
                let value = if found.len() == 1 {
                    any_value::Value::StringValue(found.into_iter().next().unwrap_or_default())
                } else {
                    strings(found)
                };
                upsert(&mut r.attributes, &key, value);
            }
            upsert(
                &mut r.attributes,
                &self.cfg.attribute,
                any_value::Value::StringValue(template),
            );
            annotated += 1;
        }
        let clusters = st.miner.len();
        drop(st);
        let p = self.label.clone();
        metrics::gauge!("vigil_drain_clusters_active", "processor" => p.clone())
            .set(clusters as f64);
        metrics::counter!("vigil_drain_log_records_annotated", "processor" => p.clone())
            .increment(annotated);
        metrics::counter!("vigil_drain_log_records_unannotated", "processor" => p.clone())
            .increment(unannotated);
        if evicted > 0 {
            metrics::counter!("vigil_drain_clusters_evicted", "processor" => p).increment(evicted);
        }
    }

    async fn save(&self, force: bool) -> anyhow::Result<()> {
        let Some(store) = lock(&self.storage).clone() else {
            return Ok(());
        };
        let bytes = {
            let mut st = lock(&self.state);
            if st.unsaved == 0 && !force {
                return Ok(());
            }
            st.unsaved = 0;
            st.miner.to_bytes()
        };
        // A commit may fsync: keep it off the async workers.
        tokio::task::spawn_blocking(move || store.set(STATE_KEY, &bytes)).await??;
        Ok(())
    }
}

fn strings(values: Vec<String>) -> any_value::Value {
    any_value::Value::ArrayValue(ArrayValue {
        values: values
            .into_iter()
            .map(|s| AnyValue {
                value: Some(any_value::Value::StringValue(s)),
            })
            .collect(),
    })
}

/// The line's words at the template's `<*>` positions, when both have as many tokens (a value that
/// spans several words, such as `18.4 KB`, makes the template shorter than the line; then the words
/// that the template's constant words do not account for are given in order).
fn wildcards(template: &str, line: &str) -> Vec<String> {
    let t: Vec<&str> = template.split(' ').collect();
    let l: Vec<&str> = line.split_whitespace().collect();
    if t.len() == l.len() {
        return t
            .iter()
            .zip(&l)
            .filter(|(t, l)| t.contains(template::PARAM) && t != l)
            .map(|(_, l)| (*l).to_string())
            .collect();
    }
    l.iter()
        .filter(|w| !t.contains(w))
        .map(|w| (*w).to_string())
        .collect()
}

#[async_trait]
impl Component for Drain {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        let inner = &self.inner;
        let Some(sid) = &inner.cfg.storage else {
            return Ok(());
        };
        let where_ = format!("processors::{}::storage", inner.id);
        let store = host
            .storage(sid, &inner.id, "templates")
            .map_err(|e| anyhow::anyhow!("{where_}: {e}"))?;
        if let Some(bytes) = store
            .get(STATE_KEY)
            .map_err(|e| anyhow::anyhow!("{where_}: {e}"))?
        {
            match TemplateMiner::from_bytes(inner.cfg.miner.clone(), &bytes) {
                // As in otelcol, a loaded snapshot replaces the seeds.
                Ok(miner) => lock(&inner.state).miner = miner,
                Err(e) => {
                    tracing::warn!(processor = %inner.id, error = %e, "saved drain templates cannot be loaded; starting from the seeds");
                }
            }
        }
        *lock(&inner.storage) = Some(store);
        if inner.cfg.save_interval.is_zero() {
            return Ok(());
        }
        let inner = Arc::clone(inner);
        self.tasks
            .spawn_ticker(inner.cfg.save_interval, move || {
                let inner = Arc::clone(&inner);
                async move {
                    if let Err(e) = inner.save(false).await {
                        tracing::warn!(processor = %inner.id, error = %e, "cannot save drain templates; will retry");
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
                r.map_err(|e| anyhow::anyhow!("processors::{id}: cannot save drain templates: {e}"))
            }
            None => anyhow::bail!(
                "processors::{id}: drain templates not saved by the shutdown deadline"
            ),
        }
    }
}

#[async_trait]
impl Consumer for Drain {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        match data {
            Telemetry::Logs(mut batch) => {
                let n = vigil_core::telemetry::log_record_count(&batch);
                self.inner.obs.incoming(n);
                self.inner.annotate(&mut batch);
                self.inner.obs.outgoing(n);
                self.inner.next.consume(Telemetry::Logs(batch)).await
            }
            other => self.inner.next.consume(other).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use vigil_core::attrs::get_str;
    use vigil_core::otlp::common::v1::{KeyValue, KeyValueList};
    use vigil_core::otlp::logs::v1::{LogRecord, ScopeLogs};

    #[derive(Default)]
    struct Sink(Mutex<Vec<LogRecord>>);

    #[async_trait]
    impl Consumer for Sink {
        async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
            if let Telemetry::Logs(rls) = data {
                let mut got = lock(&self.0);
                for rl in rls {
                    for sl in rl.scope_logs {
                        got.extend(sl.log_records);
                    }
                }
            }
            Ok(())
        }
    }

    fn record(body: any_value::Value) -> LogRecord {
        LogRecord {
            body: Some(AnyValue { value: Some(body) }),
            ..Default::default()
        }
    }

    fn batch(records: Vec<LogRecord>) -> Telemetry {
        Telemetry::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn lines(ls: &[&str]) -> Telemetry {
        batch(
            ls.iter()
                .map(|l| record(any_value::Value::StringValue(l.to_string())))
                .collect(),
        )
    }

    fn drain(yaml: &str) -> (Arc<dyn Processor>, Arc<Sink>) {
        let id = ComponentId::parse("drain").expect("id");
        let v: Value = serde_saphyr::from_str(yaml).expect("yaml");
        let sink = Arc::new(Sink::default());
        let p = factory()
            .create(&id, &v, Signal::Logs, sink.clone())
            .expect("valid config");
        (p, sink)
    }

    /// The configuration and example pipeline of otelcol's drain processor README.
    const OTELCOL_README: &str = r#"
tree_depth: 4              # default: 4 (minimum: 3; `depth` in the Drain paper)
merge_threshold: 0.4       # default: 0.4, range [0.0, 1.0] (`st` in the Drain paper)
max_node_children: 100     # default: 100 (`maxChild` in the Drain paper)
max_clusters: 0            # default: 0 (unlimited, LRU eviction when > 0)
extra_delimiters: []       # default: [] (extra token delimiters beyond whitespace)
body_field: ""             # default: "" (use full body string)
template_attribute: "log.record.template"    # default
seed_templates: []
seed_logs: []
warmup_min_clusters: 0     # default: 0 (disabled; annotates from the first record)
"#;

    const OTELCOL_EXAMPLE: &str = r#"
tree_depth: 4
merge_threshold: 0.4
max_clusters: 500
seed_templates:
  - "user <*> logged in from <*>"
  - "connected to <*>"
  - "heartbeat ping <*>"
warmup_min_clusters: 20
"#;

    #[tokio::test]
    async fn otelcol_config_validates_and_sets_the_template() {
        let id = ComponentId::parse("drain/x").expect("id");
        for yaml in [OTELCOL_README, OTELCOL_EXAMPLE, "{}"] {
            let v: Value = serde_saphyr::from_str(yaml).expect("yaml");
            factory().validate(&id, &v).expect(yaml);
        }
        let (p, sink) = drain(OTELCOL_README);
        // With otelcol's `tree_depth: 4` the second word routes lines, as in Drain, so user names
        // are ids here.
        p.consume(lines(&[
            "user 1234 logged in from 10.0.0.1",
            "user 5678 logged in from 10.0.0.2",
            "GET /api/v1/items took 12 ms",
            "connected to db-1.internal:5432",
        ]))
        .await
        .expect("consumed");
        let got = lock(&sink.0).clone();
        let t: Vec<&str> = got
            .iter()
            .map(|r| get_str(&r.attributes, TEMPLATE_ATTRIBUTE).unwrap_or(""))
            .collect();
        assert_eq!(t[1], "user <*> logged in from <*>");
        assert_eq!(t[2], "GET <*> took <*>");
        // A host and its port: grouped as one value, written in its two parts.
        assert_eq!(t[3], "connected to <*>:<*>");
    }

    #[tokio::test]
    async fn warmup_seeds_and_body_field() {
        // The seeds are three templates; with a warm-up of 4 the first line of a fourth kind is
        // the first to be annotated.
        let (p, sink) = drain(
            "seed_templates: [\"heartbeat ping <*>\", \"connected to <*>\"]\n\
             seed_logs: [\"user alice logged in from 10.0.0.1\", \"  \"]\n\
             warmup_min_clusters: 4\nbody_field: message\ntemplate_attribute: tpl",
        );
        let map = |m: &str| {
            record(any_value::Value::KvlistValue(KeyValueList {
                values: vec![KeyValue {
                    key: "message".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(m.into())),
                    }),
                    ..Default::default()
                }],
            }))
        };
        p.consume(batch(vec![
            map("heartbeat ping 7"),
            map("disk sda is full"),
        ]))
        .await
        .expect("consumed");
        let got = lock(&sink.0).clone();
        assert_eq!(get_str(&got[0].attributes, "tpl"), None, "still warming up");
        assert_eq!(get_str(&got[1].attributes, "tpl"), Some("disk sda is full"));
    }

    #[tokio::test]
    async fn masking_rules_delimiters_and_wildcards() {
        let (p, sink) = drain(
            "masking_rules: [{name: ticket, pattern: 'T-[0-9]+'}]\n\
             extra_delimiters: [\",\"]\nemit_wildcards: true",
        );
        p.consume(lines(&[
            "opened T-12,by alice 5 times",
            "opened T-9,by bob 6 times",
        ]))
        .await
        .expect("consumed");
        let got = lock(&sink.0).clone();
        let r = &got[1];
        assert_eq!(
            get_str(&r.attributes, TEMPLATE_ATTRIBUTE),
            Some("opened <ticket> by bob <*> times")
        );
        assert_eq!(
            get_str(&r.attributes, "log.record.template.parameter.ticket"),
            Some("T-9")
        );
        let wild = r
            .attributes
            .iter()
            .find(|kv| kv.key == WILDCARDS_ATTRIBUTE)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref());
        let Some(any_value::Value::ArrayValue(a)) = wild else {
            panic!("no wildcards: {:?}", r.attributes);
        };
        assert_eq!(a.values.len(), 1);
    }

    #[derive(Default)]
    struct MemStorage(Mutex<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>);

    impl Storage for MemStorage {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, vigil_core::StorageError> {
            Ok(lock(&self.0).get(key).cloned())
        }
        fn batch(
            &self,
            ops: Vec<vigil_core::storage::StorageOp>,
        ) -> Result<(), vigil_core::StorageError> {
            let mut m = lock(&self.0);
            for op in ops {
                match op {
                    vigil_core::storage::StorageOp::Set(k, v) => {
                        m.insert(k, v);
                    }
                    vigil_core::storage::StorageOp::Delete(k) => {
                        m.remove(&k);
                    }
                }
            }
            Ok(())
        }
        fn scan_prefix(
            &self,
            prefix: &[u8],
        ) -> Result<vigil_core::storage::KeyValues, vigil_core::StorageError> {
            Ok(lock(&self.0)
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }
    }

    struct MemExtension(Arc<MemStorage>);

    #[async_trait]
    impl Component for MemExtension {}

    impl vigil_core::Extension for MemExtension {
        fn storage_client(
            &self,
            _owner: &ComponentId,
            _name: &str,
        ) -> Option<Result<Arc<dyn Storage>, vigil_core::StorageError>> {
            Some(Ok(self.0.clone() as Arc<dyn Storage>))
        }
    }

    /// With `storage`, templates learnt before a restart are there after it, and replace the seeds.
    #[tokio::test]
    async fn storage_keeps_templates_across_a_restart() {
        let store = Arc::new(MemStorage::default());
        let sid = ComponentId::parse("file_storage/x").expect("id");
        let mut exts: std::collections::HashMap<ComponentId, Arc<dyn vigil_core::Extension>> =
            std::collections::HashMap::new();
        exts.insert(sid, Arc::new(MemExtension(store.clone())));
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let host = Host::new(exts, tx);
        let cfg = "storage: file_storage/x\nsave_interval: 1h\nseed_logs: [\"seeded line here\"]";
        let id = ComponentId::parse("drain").expect("id");
        let v: Value = serde_saphyr::from_str(cfg).expect("yaml");
        let make = |sink: Arc<Sink>| {
            Drain::new(
                vigil_core::Settings::new(ComponentKind::Processor, &id),
                parse(&id, &v).expect("valid"),
                sink,
            )
        };
        let first = make(Arc::new(Sink::default())).expect("drain");
        first.start(&host).await.expect("start");
        assert_eq!(first.template_count(), 1, "the seed");
        first
            .consume(lines(&["disk sda is 91 percent full", "job 7 done"]))
            .await
            .expect("consumed");
        first.shutdown().await.expect("saved");
        assert!(lock(&store.0).contains_key(STATE_KEY));

        let sink = Arc::new(Sink::default());
        let second = make(sink.clone()).expect("drain");
        second.start(&host).await.expect("start");
        assert_eq!(second.template_count(), 3, "the saved templates");
        second
            .consume(lines(&["disk sda is 92 percent full"]))
            .await
            .expect("consumed");
        assert_eq!(second.template_count(), 3);
        let got = lock(&sink.0).clone();
        assert_eq!(
            get_str(&got[0].attributes, TEMPLATE_ATTRIBUTE),
            Some("disk sda is <*> percent full")
        );
        second.shutdown().await.expect("saved");
    }

    #[test]
    fn bad_configs_name_the_key() {
        let id = ComponentId::parse("drain").expect("id");
        for (yaml, key) in [
            ("tree_depth: 2", "tree_depth"),
            ("merge_threshold: 1.5", "merge_threshold"),
            ("max_node_children: 0", "max_node_children"),
            (
                "masking_rules: [{name: '*', pattern: x}]",
                "masking_rules::0::name",
            ),
            (
                "masking_rules: [{name: a, pattern: '('}]",
                "masking_rules::0::pattern",
            ),
            ("save_interval: 10s", "save_interval"),
            ("tree_dpth: 4", "tree_dpth"),
        ] {
            let v: Value = serde_saphyr::from_str(yaml).expect("yaml");
            let e = factory().validate(&id, &v).expect_err(yaml).to_string();
            assert!(e.contains(key), "{yaml}: {e}");
        }
    }
}
