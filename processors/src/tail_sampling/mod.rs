//! `tail_sampling`: otelcol's tail sampling processor. Spans are held by trace id until
//! `decision_wait` after the trace's first span, then the policies decide on the whole trace: a kept
//! trace's spans go on together, whatever batches they came in; spans that arrive after the decision
//! follow it (sent on at once, or dropped). The trace table is bounded by `num_traces`: a new trace
//! evicts the oldest one (an undecided one is counted in
//! `otelcol_processor_tail_sampling_sampling_trace_dropped_too_early`), or with `block_on_overflow`
//! the batch is pushed back to the sender as retryable.
//!
//! Data ownership: like otelcol's, this processor answers the sender when it has stored the spans,
//! not when they were sent on (a decision can be 30 s away). What the next consumer refuses at
//! decision time is logged and counted in `vigil_tail_sampling_spans_lost`; late spans of a kept
//! trace are sent on within the sender's call, so their refusal reaches the sender.

mod config;
mod policy;
#[cfg(test)]
mod tests;

pub use config::*;
use policy::{compile, encoded_size, Decision, Eval, Level, TraceData};

use async_trait::async_trait;
use lru::LruCache;
use metrics::Counter;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_core::factory::{self, DynProcessorFactory, FactoryBase, ProcessorFactory};
use vigil_core::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
use vigil_core::{
    lock, Component, ComponentId, ConfigError, ConsumeError, Consumer, Host, Processor, Settings,
    Signal, Stability, Telemetry,
};

pub(crate) type TraceId = [u8; 16];

struct Factory;

/// The `tail_sampling` processor factory (`tailsampling` is accepted too).
pub fn factory() -> Arc<dyn DynProcessorFactory> {
    factory::processor(Factory)
}

/// Compiles every policy, or every error with its key path.
fn compile_all(cfg: &TailSamplingConfig) -> Result<Vec<(String, Eval)>, ConfigError> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, p) in cfg.policies.iter().enumerate() {
        if !p.name.is_empty() && !names.insert(p.name.as_str()) {
            errors.push(ConfigError::at(
                format!("policies::{i}::name"),
                format!("duplicate policy name {:?}", p.name),
            ));
        }
        match compile(&format!("policies::{i}"), p, Level::Top) {
            Ok(e) => out.push((p.name.clone(), e)),
            Err(e) => errors.push(e),
        }
    }
    ConfigError::join(errors).map_or(Ok(out), Err)
}

fn check(cfg: &TailSamplingConfig) -> Result<Vec<(String, Eval)>, ConfigError> {
    let mut errors = Vec::new();
    if cfg.policies.is_empty() {
        errors.push(ConfigError::at(
            "policies",
            "expected at least one policy (otelcol requires policies)",
        ));
    }
    if cfg.decision_wait.is_zero() {
        errors.push(ConfigError::at(
            "decision_wait",
            "expected a duration above 0 such as \"30s\"",
        ));
    }
    if cfg.num_traces == 0 {
        errors.push(ConfigError::at("num_traces", "expected at least 1, got 0"));
    }
    match cfg.sampling_strategy.as_str() {
        "trace-complete" | "" => {}
        "span-ingest" => errors.push(ConfigError::at(
            "sampling_strategy",
            "span-ingest is not built in vigil: use trace-complete (the default)",
        )),
        o => errors.push(ConfigError::at(
            "sampling_strategy",
            format!("unknown strategy {o:?}: expected trace-complete or span-ingest"),
        )),
    }
    let policies = compile_all(cfg);
    if let Err(e) = &policies {
        errors.push(e.clone());
    }
    match ConfigError::join(errors) {
        Some(e) => Err(e),
        None => policies,
    }
}

impl FactoryBase for Factory {
    type Config = TailSamplingConfig;

    fn type_name(&self) -> &'static str {
        "tail_sampling"
    }

    fn validate(&self, _id: &ComponentId, cfg: &TailSamplingConfig) -> Result<(), ConfigError> {
        check(cfg).map(|_| ())
    }
}

impl ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[(Signal::Traces, Stability::Beta)]
    }

    fn create(
        &self,
        set: Settings,
        cfg: TailSamplingConfig,
        _signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let policies = check(&cfg)?;
        Ok(Arc::new(TailSampling::new(set, cfg, policies, next)))
    }
}

/// One trace in the table.
struct Entry {
    data: TraceData,
    /// `None` while pending; then whether it was kept.
    decision: Option<bool>,
    /// Its place in the decision queue while pending.
    due: Option<(Instant, u64)>,
    root_seen: bool,
}

struct Metrics {
    new_traces: Counter,
    dropped_too_early: Counter,
    eval_errors: Counter,
    cache_sampled: Counter,
    cache_not_sampled: Counter,
    too_large: Counter,
    lost: Counter,
    global: [Counter; 3],
    per_policy: Vec<[Counter; 3]>,
}

impl Metrics {
    fn new(id: &ComponentId, names: &[String]) -> Metrics {
        let p = id.to_string();
        let m = "otelcol_processor_tail_sampling_";
        let decision = |name: String, extra: Option<&str>, d: Decision| {
            let sampled = matches!(d, Decision::Sampled).to_string();
            match extra {
                Some(policy) => {
                    metrics::counter!(name, "processor" => p.clone(), "policy" => policy.to_string(), "sampled" => sampled, "decision" => d.label())
                }
                None => {
                    metrics::counter!(name, "processor" => p.clone(), "sampled" => sampled, "decision" => d.label())
                }
            }
        };
        let three = |name: &str, policy: Option<&str>| {
            [Decision::Sampled, Decision::NotSampled, Decision::Dropped]
                .map(|d| decision(format!("{m}{name}"), policy, d))
        };
        Metrics {
            new_traces: metrics::counter!(format!("{m}new_trace_id_received"), "processor" => p.clone()),
            dropped_too_early: metrics::counter!(format!("{m}sampling_trace_dropped_too_early"), "processor" => p.clone()),
            eval_errors: metrics::counter!(format!("{m}sampling_policy_evaluation_error"), "processor" => p.clone()),
            cache_sampled: metrics::counter!(format!("{m}early_releases_from_cache_decision"), "processor" => p.clone(), "sampled" => "true"),
            cache_not_sampled: metrics::counter!(format!("{m}early_releases_from_cache_decision"), "processor" => p.clone(), "sampled" => "false"),
            too_large: metrics::counter!("vigil_tail_sampling_traces_too_large", "processor" => p.clone()),
            lost: metrics::counter!("vigil_tail_sampling_spans_lost", "processor" => p.clone()),
            global: three("global_count_traces_sampled", None),
            per_policy: names
                .iter()
                .map(|n| three("count_traces_sampled", Some(n)))
                .collect(),
        }
    }

    fn traces_on_memory(&self, label: &str, n: usize) {
        metrics::gauge!("otelcol_processor_tail_sampling_sampling_traces_on_memory", "processor" => label.to_string())
            .set(n as f64);
    }
}

fn slot(d: Decision) -> usize {
    match d {
        Decision::Sampled | Decision::InvertSampled => 0,
        Decision::NotSampled | Decision::InvertNotSampled => 1,
        Decision::Dropped => 2,
    }
}

struct State {
    traces: HashMap<TraceId, Entry>,
    /// Trace ids in arrival order, for eviction; ids already gone are skipped (and compacted).
    order: VecDeque<TraceId>,
    /// Pending traces by decision time.
    due: BTreeMap<(Instant, u64), TraceId>,
    seq: u64,
    sampled_cache: Option<LruCache<TraceId, ()>>,
    not_sampled_cache: Option<LruCache<TraceId, ()>>,
    policies: Vec<(String, Eval)>,
    closed: bool,
}

struct Inner {
    label: String,
    cfg: TailSamplingConfig,
    next: Arc<dyn Consumer>,
    obs: vigil_core::ProcessorObs,
    metrics: Metrics,
    state: Mutex<State>,
}

/// A running `tail_sampling` processor.
pub struct TailSampling {
    inner: Arc<Inner>,
    tasks: vigil_core::task::Tasks,
}

/// Spans of one batch split by trace id, each trace's share with its resource and scope.
pub(crate) fn split_by_trace(
    batch: Vec<ResourceSpans>,
) -> Vec<(TraceId, ResourceSpans, u64, bool)> {
    let mut out: Vec<(TraceId, ResourceSpans, u64, bool)> = Vec::new();
    for rs in batch {
        let mut per: HashMap<TraceId, usize> = HashMap::new();
        let start = out.len();
        for ss in rs.scope_spans {
            let mut by_trace: Vec<(TraceId, Vec<Span>)> = Vec::new();
            for s in ss.spans {
                let mut id = [0u8; 16];
                if s.trace_id.len() == 16 {
                    id.copy_from_slice(&s.trace_id);
                }
                match by_trace.iter_mut().find(|(t, _)| *t == id) {
                    Some((_, v)) => v.push(s),
                    None => by_trace.push((id, vec![s])),
                }
            }
            for (id, spans) in by_trace {
                let n = spans.len() as u64;
                let root = spans.iter().any(|s| s.parent_span_id.is_empty());
                let piece = ScopeSpans {
                    scope: ss.scope.clone(),
                    spans,
                    schema_url: ss.schema_url.clone(),
                };
                let at = *per.entry(id).or_insert_with(|| {
                    out.push((
                        id,
                        ResourceSpans {
                            resource: rs.resource.clone(),
                            scope_spans: Vec::new(),
                            schema_url: rs.schema_url.clone(),
                        },
                        0,
                        false,
                    ));
                    out.len() - 1
                });
                let e = &mut out[at];
                e.1.scope_spans.push(piece);
                e.2 += n;
                e.3 |= root;
            }
        }
        debug_assert!(out.len() >= start);
    }
    out
}

impl TailSampling {
    fn new(
        set: Settings,
        cfg: TailSamplingConfig,
        policies: Vec<(String, Eval)>,
        next: Arc<dyn Consumer>,
    ) -> TailSampling {
        let names: Vec<String> = policies.iter().map(|(n, _)| n.clone()).collect();
        let cache = |n: usize| NonZeroUsize::new(n).map(LruCache::new);
        // Sized up front for the traces expected within one decision_wait, never past num_traces.
        let expected = (cfg.expected_new_traces_per_sec as f64 * cfg.decision_wait.as_secs_f64())
            .min(cfg.num_traces as f64) as usize;
        let state = State {
            traces: HashMap::with_capacity(expected.min(1 << 20)),
            order: VecDeque::new(),
            due: BTreeMap::new(),
            seq: 0,
            sampled_cache: cache(cfg.decision_cache.sampled_cache_size),
            not_sampled_cache: cache(cfg.decision_cache.non_sampled_cache_size),
            policies,
            closed: false,
        };
        TailSampling {
            inner: Arc::new(Inner {
                label: set.id.to_string(),
                metrics: Metrics::new(&set.id, &names),
                obs: set.processor_obs(Signal::Traces),
                cfg,
                next,
                state: Mutex::new(state),
            }),
            tasks: set.tasks,
        }
    }

    /// Decides every trace due by `now` and sends the kept ones on (the timer calls this).
    pub async fn decide_due(&self, now: Instant) {
        self.inner.decide(Some(now)).await;
    }

    /// Traces held now, pending or decided.
    pub fn trace_count(&self) -> usize {
        lock(&self.inner.state).traces.len()
    }
}

impl Inner {
    /// Removes the oldest trace to make room; an undecided one is counted as dropped too early.
    fn evict_oldest(&self, st: &mut State) {
        while let Some(id) = st.order.pop_front() {
            if let Some(e) = st.traces.remove(&id) {
                if e.decision.is_none() {
                    self.metrics.dropped_too_early.increment(1);
                    tracing::debug!(processor = %self.label, "num_traces reached: an undecided trace was evicted");
                }
                if let Some(k) = e.due {
                    st.due.remove(&k);
                }
                return;
            }
        }
    }

    /// The final decision over every policy, with otelcol's precedence.
    fn decide_one(&self, st: &mut State, id: &TraceId, data: &mut TraceData) -> bool {
        let mut seen = [false; 5];
        let idx = |d: Decision| match d {
            Decision::Sampled => 0,
            Decision::NotSampled => 1,
            Decision::InvertSampled => 2,
            Decision::InvertNotSampled => 3,
            Decision::Dropped => 4,
        };
        let first_match = self.cfg.sample_on_first_match;
        for (i, (name, eval)) in st.policies.iter_mut().enumerate() {
            match eval.evaluate(id, data) {
                Err(e) => {
                    self.metrics.eval_errors.increment(1);
                    tracing::debug!(processor = %self.label, policy = %name, error = %e, "sampling policy error");
                    continue;
                }
                Ok(d) => {
                    self.metrics.per_policy[i][slot(d)].increment(1);
                    seen[idx(d)] = true;
                    if d == Decision::Dropped || (first_match && d == Decision::Sampled) {
                        break;
                    }
                }
            }
        }
        let decision = if seen[4] {
            Decision::Dropped
        } else if seen[3] {
            Decision::NotSampled
        } else if seen[0] || (seen[2] && !seen[1]) {
            Decision::Sampled
        } else {
            Decision::NotSampled
        };
        self.metrics.global[slot(decision)].increment(1);
        decision == Decision::Sampled
    }

    /// Decides the traces due by `now` (all pending ones when `None`, at shutdown).
    async fn decide(&self, now: Option<Instant>) {
        let out = {
            let mut st = lock(&self.state);
            let st = &mut *st;
            let due: Vec<(Instant, u64)> = match now {
                Some(now) => st.due.range(..=(now, u64::MAX)).map(|(k, _)| *k).collect(),
                None => st.due.keys().copied().collect(),
            };
            let mut out = Vec::new();
            for k in due {
                let Some(id) = st.due.remove(&k) else {
                    continue;
                };
                let Some(mut data) = st.traces.get_mut(&id).map(|e| {
                    e.due = None;
                    std::mem::take(&mut e.data)
                }) else {
                    continue;
                };
                let keep = self.decide_one(st, &id, &mut data);
                if keep {
                    out.extend(data.batches);
                }
                let cache = if keep {
                    st.sampled_cache.as_mut()
                } else {
                    st.not_sampled_cache.as_mut()
                };
                match cache {
                    // With a decision cache the decision outlives the trace, so the trace goes.
                    Some(c) => {
                        c.put(id, ());
                        st.traces.remove(&id);
                    }
                    None => {
                        if let Some(e) = st.traces.get_mut(&id) {
                            e.decision = Some(keep);
                        }
                    }
                }
            }
            if st.order.len() > 2 * st.traces.len() + 1024 {
                let traces = &st.traces;
                st.order.retain(|id| traces.contains_key(id));
            }
            self.metrics.traces_on_memory(&self.label, st.traces.len());
            out
        };
        self.send(out).await;
    }

    async fn send(&self, out: Vec<ResourceSpans>) {
        if out.is_empty() {
            return;
        }
        let n = vigil_core::telemetry::span_count(&out);
        self.obs.outgoing(n);
        if let Err(e) = self.next.consume(Telemetry::Traces(out)).await {
            self.metrics.lost.increment(n as u64);
            tracing::error!(processor = %self.label, spans = n, error = %e, "sampled spans refused by the next consumer; lost");
        }
    }
}

#[async_trait]
impl Component for TailSampling {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let inner = Arc::clone(&self.inner);
        // Decisions are made at most a tenth of decision_wait late (otelcol ticks every second).
        let every =
            (inner.cfg.decision_wait / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
        self.tasks.spawn_ticker(every, move || {
            let inner = Arc::clone(&inner);
            async move { inner.decide(Some(Instant::now())).await }
        });
        Ok(())
    }

    /// Stops the timer, then decides every pending trace on what arrived (or drops them with
    /// `drop_pending_traces_on_shutdown`), within the deadline.
    async fn shutdown_by(&self, deadline: std::time::Instant) -> anyhow::Result<()> {
        self.tasks.stop(deadline).await;
        let pending = {
            let mut st = lock(&self.inner.state);
            st.closed = true;
            if self.inner.cfg.drop_pending_traces_on_shutdown {
                let due = std::mem::take(&mut st.due);
                for id in due.values() {
                    st.traces.remove(id);
                }
                0
            } else {
                st.due.len()
            }
        };
        if pending > 0
            && vigil_core::task::within(deadline, self.inner.decide(None))
                .await
                .is_none()
        {
            tracing::error!(processor = %self.inner.label, traces = pending, "pending traces not decided by the shutdown deadline");
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for TailSampling {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let inner = &self.inner;
        let Telemetry::Traces(batch) = data else {
            return inner.next.consume(data).await;
        };
        let n = vigil_core::telemetry::span_count(&batch);
        inner.obs.incoming(n);
        let pieces = split_by_trace(batch);
        let now = Instant::now();
        let mut forward = Vec::new();
        {
            let mut st = lock(&inner.state);
            let st = &mut *st;
            if st.closed {
                drop(pieces);
                return Err(ConsumeError::retryable(format!(
                    "processor {} is shutting down",
                    inner.label
                )));
            }
            if inner.cfg.block_on_overflow {
                let new: HashSet<&TraceId> = pieces
                    .iter()
                    .map(|p| &p.0)
                    .filter(|id| !st.traces.contains_key(*id))
                    .collect();
                if st.traces.len() + new.len() > inner.cfg.num_traces as usize {
                    inner.obs.refused(n);
                    return Err(ConsumeError::retryable(format!(
                        "processor {}: num_traces ({}) reached and block_on_overflow is set; retry later",
                        inner.label, inner.cfg.num_traces
                    )));
                }
            }
            for (id, piece, count, root) in pieces {
                if st
                    .sampled_cache
                    .as_mut()
                    .is_some_and(|c| c.get(&id).is_some())
                {
                    inner.metrics.cache_sampled.increment(count);
                    forward.push(piece);
                    continue;
                }
                if st
                    .not_sampled_cache
                    .as_mut()
                    .is_some_and(|c| c.get(&id).is_some())
                {
                    inner.metrics.cache_not_sampled.increment(count);
                    continue;
                }
                if !st.traces.contains_key(&id) {
                    if st.traces.len() >= inner.cfg.num_traces as usize {
                        inner.evict_oldest(st);
                    }
                    st.seq += 1;
                    let key = (now + inner.cfg.decision_wait, st.seq);
                    st.due.insert(key, id);
                    st.order.push_back(id);
                    st.traces.insert(
                        id,
                        Entry {
                            data: TraceData::default(),
                            decision: None,
                            due: Some(key),
                            root_seen: false,
                        },
                    );
                    inner.metrics.new_traces.increment(1);
                }
                let Some(e) = st.traces.get_mut(&id) else {
                    continue;
                };
                match e.decision {
                    Some(true) => forward.push(piece),
                    Some(false) => {}
                    None => {
                        let size = encoded_size(&piece);
                        e.data.span_count += count;
                        e.data.bytes += size;
                        e.data.batches.push(piece);
                        let max = inner.cfg.maximum_trace_size_bytes;
                        if max > 0 && e.data.bytes > max {
                            // As otelcol: too large to decide on; dropped now, later spans too.
                            inner.metrics.too_large.increment(1);
                            e.data = TraceData::default();
                            e.decision = Some(false);
                            if let Some(k) = e.due.take() {
                                st.due.remove(&k);
                            }
                            continue;
                        }
                        if root && !e.root_seen {
                            e.root_seen = true;
                            if let (Some(after), Some(old)) =
                                (inner.cfg.decision_wait_after_root_received, e.due)
                            {
                                let sooner = now + after;
                                if sooner < old.0 {
                                    st.seq += 1;
                                    let k = (sooner, st.seq);
                                    e.due = Some(k);
                                    st.due.remove(&old);
                                    st.due.insert(k, id);
                                }
                            }
                        }
                    }
                }
            }
            inner
                .metrics
                .traces_on_memory(&inner.label, st.traces.len());
        }
        if forward.is_empty() {
            return Ok(());
        }
        let sent = vigil_core::telemetry::span_count(&forward);
        inner.obs.outgoing(sent);
        inner.next.consume(Telemetry::Traces(forward)).await
    }
}
