//! `groupbytrace` (`group_by_trace`): otelcol's group-by-trace processor. Spans are held by trace id
//! for `wait_duration` after the trace's first span arrived here, then the whole trace goes on in one
//! call, so what follows (a per-trace sampler, a per-trace metric) sees complete traces. Spans of a
//! trace that was already released start a new wait, as in otelcol.
//!
//! Memory is bounded by `num_traces`: the table is split into `num_workers` shards by trace id (as
//! otelcol gives each worker its share of the ring buffer), and a new trace in a full shard evicts
//! that shard's oldest trace, whose spans are dropped and counted in
//! `otelcol_processor_groupbytrace_traces_evicted`. otelcol refuses `discard_orphans` and
//! `store_on_disk` ("not supported in this release"); so does vigil, at validate.
//!
//! Data ownership: like otelcol's (and `tail_sampling`), this processor answers the sender once the
//! spans are stored. What the next consumer refuses at release is logged and counted in
//! `vigil_groupbytrace_spans_lost`.

use crate::tail_sampling::{split_by_trace, TraceId};
use async_trait::async_trait;
use metrics::{Counter, Gauge};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_core::config::duration;
use vigil_core::factory::{self, DynProcessorFactory, FactoryBase, ProcessorFactory};
use vigil_core::otlp::trace::v1::ResourceSpans;
use vigil_core::{
    lock, Component, ComponentId, ConfigError, ConsumeError, Consumer, Host, Processor, Settings,
    Signal, Stability, Telemetry,
};

/// The `groupbytrace` processor config, as otelcol's `groupbytraceprocessor` (v0.159) reads it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupByTraceConfig {
    /// How long a trace waits for more spans after its first span arrived.
    #[serde(with = "duration")]
    pub wait_duration: Duration,
    /// Most traces held at once; a new trace past it evicts the oldest.
    pub num_traces: u64,
    /// Shards of the trace table (otelcol's workers), each with `num_traces / num_workers` traces.
    pub num_workers: u64,
    /// Not supported by otelcol either: refused when true.
    pub discard_orphans: bool,
    /// Not supported by otelcol either: refused when true.
    pub store_on_disk: bool,
}

impl Default for GroupByTraceConfig {
    fn default() -> Self {
        GroupByTraceConfig {
            wait_duration: Duration::from_secs(1),
            num_traces: 1_000_000,
            num_workers: 1,
            discard_orphans: false,
            store_on_disk: false,
        }
    }
}

fn check(cfg: &GroupByTraceConfig) -> Result<(), ConfigError> {
    let mut errors = Vec::new();
    if cfg.discard_orphans {
        errors.push(ConfigError::at(
            "discard_orphans",
            "option 'discard orphans' is not supported (otelcol refuses it too)",
        ));
    }
    if cfg.store_on_disk {
        errors.push(ConfigError::at(
            "store_on_disk",
            "option 'disk storage' is not supported (otelcol refuses it too)",
        ));
    }
    if cfg.num_traces == 0 {
        errors.push(ConfigError::at(
            "num_traces",
            "must be at least 1 (the most traces held at once)",
        ));
    }
    if cfg.num_workers == 0 || cfg.num_workers > 1024 {
        errors.push(ConfigError::at(
            "num_workers",
            format!("must be between 1 and 1024, not {}", cfg.num_workers),
        ));
    }
    if cfg.wait_duration.is_zero() {
        errors.push(ConfigError::at(
            "wait_duration",
            "must be greater than 0 (how long a trace waits for its spans)",
        ));
    }
    ConfigError::join(errors).map_or(Ok(()), Err)
}

struct Factory;

/// The `groupbytrace` processor factory (`group_by_trace` is accepted too).
pub fn factory() -> Arc<dyn DynProcessorFactory> {
    factory::processor(Factory)
}

impl FactoryBase for Factory {
    type Config = GroupByTraceConfig;

    fn type_name(&self) -> &'static str {
        "groupbytrace"
    }

    fn validate(&self, _id: &ComponentId, cfg: &GroupByTraceConfig) -> Result<(), ConfigError> {
        check(cfg)
    }
}

impl ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[(Signal::Traces, Stability::Beta)]
    }

    fn create(
        &self,
        set: Settings,
        cfg: GroupByTraceConfig,
        _signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        check(&cfg)?;
        Ok(Arc::new(GroupByTrace::new(set, cfg, next)))
    }
}

/// One shard of the trace table.
#[derive(Default)]
struct Shard {
    traces: HashMap<TraceId, (Vec<ResourceSpans>, (Instant, u64))>,
    /// Release times; the first entry is also the oldest trace, since every trace waits as long.
    due: BTreeMap<(Instant, u64), TraceId>,
    seq: u64,
}

struct Metrics {
    in_memory: Gauge,
    evicted: Counter,
    spans_released: Counter,
    traces_released: Counter,
    lost: Counter,
}

struct Inner {
    label: String,
    cfg: GroupByTraceConfig,
    next: Arc<dyn Consumer>,
    obs: vigil_core::ProcessorObs,
    metrics: Metrics,
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    hasher: RandomState,
    closed: std::sync::atomic::AtomicBool,
}

/// A running `groupbytrace` processor.
pub struct GroupByTrace {
    inner: Arc<Inner>,
    tasks: vigil_core::task::Tasks,
}

impl GroupByTrace {
    fn new(set: Settings, cfg: GroupByTraceConfig, next: Arc<dyn Consumer>) -> GroupByTrace {
        let p = set.id.to_string();
        let m = "otelcol_processor_groupbytrace_";
        metrics::gauge!(format!("{m}conf_num_traces"), "processor" => p.clone())
            .set(cfg.num_traces as f64);
        let workers = cfg.num_workers.max(1) as usize;
        let per_shard = (cfg.num_traces as usize).div_ceil(workers).max(1);
        GroupByTrace {
            inner: Arc::new(Inner {
                metrics: Metrics {
                    in_memory: metrics::gauge!(format!("{m}num_traces_in_memory"), "processor" => p.clone()),
                    evicted: metrics::counter!(format!("{m}traces_evicted"), "processor" => p.clone()),
                    spans_released: metrics::counter!(format!("{m}spans_released"), "processor" => p.clone()),
                    traces_released: metrics::counter!(format!("{m}traces_released"), "processor" => p.clone()),
                    lost: metrics::counter!("vigil_groupbytrace_spans_lost", "processor" => p.clone()),
                },
                label: p,
                obs: set.processor_obs(Signal::Traces),
                shards: (0..workers).map(|_| Mutex::new(Shard::default())).collect(),
                per_shard,
                hasher: RandomState::new(),
                cfg,
                next,
                closed: std::sync::atomic::AtomicBool::new(false),
            }),
            tasks: set.tasks,
        }
    }

    /// Releases every trace due by `now` (the timer calls this).
    pub async fn release_due(&self, now: Instant) {
        self.inner.release(Some(now)).await;
    }

    /// Traces held now.
    pub fn trace_count(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).traces.len()).sum()
    }
}

impl Inner {
    fn shard_of(&self, id: &TraceId) -> usize {
        if self.shards.len() == 1 {
            return 0;
        }
        (self.hasher.hash_one(id) % self.shards.len() as u64) as usize
    }

    fn update_gauge(&self) {
        let n: usize = self.shards.iter().map(|s| lock(s).traces.len()).sum();
        self.metrics.in_memory.set(n as f64);
    }

    /// Releases the traces due by `now` (every trace when `None`, at shutdown), one call per trace.
    async fn release(&self, now: Option<Instant>) {
        let mut out: Vec<Vec<ResourceSpans>> = Vec::new();
        for shard in &self.shards {
            let mut st = lock(shard);
            let st = &mut *st;
            let keys: Vec<(Instant, u64)> = match now {
                Some(now) => st.due.range(..=(now, u64::MAX)).map(|(k, _)| *k).collect(),
                None => st.due.keys().copied().collect(),
            };
            for k in keys {
                if let Some(id) = st.due.remove(&k) {
                    if let Some((spans, _)) = st.traces.remove(&id) {
                        out.push(spans);
                    }
                }
            }
        }
        if out.is_empty() {
            return;
        }
        self.update_gauge();
        for trace in out {
            let n = vigil_core::telemetry::span_count(&trace);
            self.obs.outgoing(n);
            self.metrics.traces_released.increment(1);
            self.metrics.spans_released.increment(n as u64);
            if let Err(e) = self.next.consume(Telemetry::Traces(trace)).await {
                self.metrics.lost.increment(n as u64);
                tracing::error!(processor = %self.label, spans = n, error = %e, "a released trace was refused by the next consumer; lost");
            }
        }
    }
}

#[async_trait]
impl Component for GroupByTrace {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let inner = Arc::clone(&self.inner);
        // Released at most a tenth of wait_duration (and never more than 100 ms) late.
        let every = (inner.cfg.wait_duration / 10)
            .clamp(Duration::from_millis(5), Duration::from_millis(100));
        self.tasks.spawn_ticker(every, move || {
            let inner = Arc::clone(&inner);
            async move { inner.release(Some(Instant::now())).await }
        });
        Ok(())
    }

    /// Stops the timer, then releases every held trace as it is, within the deadline.
    async fn shutdown_by(&self, deadline: std::time::Instant) -> anyhow::Result<()> {
        self.tasks.stop(deadline).await;
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        let pending = self.trace_count();
        if pending > 0
            && vigil_core::task::within(deadline, self.inner.release(None))
                .await
                .is_none()
        {
            tracing::error!(processor = %self.inner.label, traces = pending, "held traces not released by the shutdown deadline");
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for GroupByTrace {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let inner = &self.inner;
        let Telemetry::Traces(batch) = data else {
            return inner.next.consume(data).await;
        };
        let n = vigil_core::telemetry::span_count(&batch);
        inner.obs.incoming(n);
        if inner.closed.load(std::sync::atomic::Ordering::Acquire) {
            inner.obs.refused(n);
            return Err(ConsumeError::retryable(format!(
                "processor {} is shutting down",
                inner.label
            )));
        }
        let now = Instant::now();
        for (id, piece, _count, _root) in split_by_trace(batch) {
            let mut st = lock(&inner.shards[inner.shard_of(&id)]);
            let st = &mut *st;
            if let Some((spans, _)) = st.traces.get_mut(&id) {
                spans.push(piece);
                continue;
            }
            if st.traces.len() >= inner.per_shard {
                if let Some((_, old)) = st.due.pop_first() {
                    st.traces.remove(&old);
                    inner.metrics.evicted.increment(1);
                    tracing::debug!(processor = %inner.label, "num_traces reached: the oldest trace was evicted");
                }
            }
            st.seq += 1;
            let key = (now + inner.cfg.wait_duration, st.seq);
            st.due.insert(key, id);
            st.traces.insert(id, (vec![piece], key));
        }
        inner.update_gauge();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::Keep;
    use serde_json::json;
    use vigil_core::otlp::trace::v1::{ScopeSpans, Span};
    use vigil_core::ComponentKind;

    fn build(cfg: serde_json::Value) -> (GroupByTrace, Arc<Keep>) {
        let id = ComponentId::parse("groupbytrace/x").unwrap();
        let cfg: GroupByTraceConfig =
            vigil_core::config::decode(ComponentKind::Processor, &id, &cfg).expect("decodes");
        check(&cfg).expect("valid");
        let keep = Arc::new(Keep::default());
        let p = GroupByTrace::new(
            Settings::new(ComponentKind::Processor, &id),
            cfg,
            keep.clone(),
        );
        (p, keep)
    }

    fn spans(items: &[(u8, &str)]) -> Telemetry {
        Telemetry::Traces(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: items
                    .iter()
                    .map(|(t, name)| Span {
                        trace_id: vec![*t; 16],
                        span_id: vec![1; 8],
                        name: (*name).into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    /// Trace ids of each call the next consumer got, in order.
    fn calls(keep: &Keep) -> Vec<Vec<String>> {
        lock(&keep.0)
            .iter()
            .map(|t| match t {
                Telemetry::Traces(rs) => rs
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| &s.spans)
                    .map(|s| s.name.clone())
                    .collect(),
                _ => vec![],
            })
            .collect()
    }

    #[tokio::test]
    async fn spans_of_a_trace_from_several_batches_leave_together_after_the_wait() {
        let (p, keep) = build(json!({"wait_duration": "200ms"}));
        let t0 = Instant::now();
        p.consume(spans(&[(1, "a1"), (2, "b1")])).await.unwrap();
        p.consume(spans(&[(1, "a2")])).await.unwrap();
        p.consume(spans(&[(2, "b2"), (1, "a3")])).await.unwrap();
        p.release_due(t0).await;
        assert!(calls(&keep).is_empty(), "nothing leaves before the wait");
        p.release_due(t0 + Duration::from_millis(250)).await;
        let mut got = calls(&keep);
        got.sort();
        assert_eq!(
            got,
            vec![vec!["a1", "a2", "a3"], vec!["b1", "b2"]],
            "one call per trace, with every span of it"
        );
        assert_eq!(p.trace_count(), 0);
        // A span of a released trace waits again, alone.
        p.consume(spans(&[(1, "a4")])).await.unwrap();
        assert_eq!(p.trace_count(), 1);
    }

    #[tokio::test]
    async fn num_traces_evicts_the_oldest_trace_and_counts_it() {
        let rec = metrics_util::debugging::DebuggingRecorder::new();
        let snap = rec.snapshotter();
        let _g = metrics::set_default_local_recorder(&rec);
        let (p, keep) = build(json!({"num_traces": 2, "wait_duration": "10s"}));
        p.consume(spans(&[(1, "old")])).await.unwrap();
        p.consume(spans(&[(2, "mid")])).await.unwrap();
        p.consume(spans(&[(3, "new")])).await.unwrap();
        assert_eq!(p.trace_count(), 2, "bounded by num_traces");
        let evicted = vigil_core::testing::counter(
            &snap,
            "otelcol_processor_groupbytrace_traces_evicted",
            &[],
        );
        assert_eq!(evicted, 1);
        p.shutdown_by(Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        let mut got = calls(&keep);
        got.sort();
        assert_eq!(
            got,
            vec![vec!["mid"], vec!["new"]],
            "the oldest was dropped; shutdown released the rest"
        );
        assert!(p.consume(spans(&[(4, "late")])).await.is_err());
    }

    #[tokio::test]
    async fn the_timer_releases_without_being_asked() {
        let (p, keep) = build(json!({"wait_duration": "50ms", "num_workers": 4}));
        p.start(&Host::detached()).await.unwrap();
        p.consume(spans(&[(1, "a"), (2, "b"), (3, "c")]))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while calls(&keep).len() < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(calls(&keep).len(), 3);
        p.shutdown_by(Instant::now() + Duration::from_secs(1))
            .await
            .unwrap();
    }

    #[test]
    fn config_cases() {
        let id = ComponentId::parse("groupbytrace/x").unwrap();
        crate::testdata::check_all("groupbytrace", 3, |v| {
            factory().validate(&id, v).map_err(|e| e.to_string())
        });
    }
}
