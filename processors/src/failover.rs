//! `failover`: otelcol-contrib's connector that sends each batch to the highest-priority level of
//! pipelines that is healthy. `priority_levels` lists levels of pipelines (all of a level get every
//! batch); a level is unhealthy when any of its pipelines answers a batch with an error, so the
//! exporters behind it must report failures back: as in otelcol, that means no sending queue
//! (`sending_queue::enabled: false`), and retries off or short, since a queued batch has already been
//! answered (docs/delivery.md).
//!
//! When the level in use (the stable level) fails, the same batch goes to the next level down
//! (skipping levels that used up `max_retries`), which becomes the stable level. Every
//! `retry_interval` after that, the connector walks the higher levels one by one, `retry_gap`
//! apart: the next batch is tried on that level, and if it is taken there the level becomes the
//! stable level again; if not, the level's retry count grows and the batch goes on to the stable
//! level. A level whose count reached `max_retries` (0: no limit) is not tried again. When every
//! level has failed, batches are refused (retryable) until a retry finds a healthy level.
//!
//! Each switch away from a failed level counts in `otelcol_connector_failover_count{level}`; the
//! level in use is `vigil_failover_level`. Not built: otelcol's newer `sending_queue` key (a
//! queue inside the connector), refused by `validate`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_core::config::duration;
use vigil_core::factory::{self, ConnectorFactory, DynConnectorFactory, FactoryBase};
use vigil_core::{
    lock, Component, ComponentId, ConfigError, ConnectorObs, ConsumeError, Consumer, Host,
    NextConsumers, Settings, Signal, Stability, Telemetry,
};

/// The `failover` connector config, as otelcol's `failoverconnector` (v0.159) reads it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailoverConfig {
    /// Levels of pipelines, highest priority first.
    pub priority_levels: Vec<Vec<String>>,
    /// How often the higher levels are tried again.
    #[serde(with = "duration")]
    pub retry_interval: Duration,
    /// The time between trying two levels within one retry round.
    #[serde(with = "duration")]
    pub retry_gap: Duration,
    /// Retries per level before it is given up (0: no limit).
    pub max_retries: u32,
    /// otelcol's newer queue inside the connector: not built, refused when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sending_queue: Option<serde_json::Value>,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            priority_levels: Vec::new(),
            retry_interval: Duration::from_secs(600),
            retry_gap: Duration::from_secs(30),
            max_retries: 10,
            sending_queue: None,
        }
    }
}

fn check(cfg: &FailoverConfig) -> Result<(), ConfigError> {
    if cfg.priority_levels.is_empty() {
        return Err(ConfigError::at(
            "priority_levels",
            "no pipelines are defined in the priority list",
        ));
    }
    for (i, level) in cfg.priority_levels.iter().enumerate() {
        if level.is_empty() {
            return Err(ConfigError::at(
                format!("priority_levels::{i}"),
                "a level needs at least one pipeline",
            ));
        }
    }
    let round = cfg
        .retry_gap
        .saturating_mul(cfg.priority_levels.len() as u32);
    if cfg.retry_gap.is_zero() || cfg.retry_interval.is_zero() || cfg.retry_interval <= round {
        return Err(ConfigError::at(
            "retry_interval",
            format!(
                "retry_interval and retry_gap must be positive, and retry_interval ({:?}) greater than retry_gap ({:?}) times the number of levels ({})",
                cfg.retry_interval,
                cfg.retry_gap,
                cfg.priority_levels.len()
            ),
        ));
    }
    if cfg.sending_queue.is_some() {
        return Err(ConfigError::at(
            "sending_queue",
            "a queue inside the failover connector is not supported by vigil; put the queue-less exporters' retries in the pipelines",
        ));
    }
    Ok(())
}

struct Factory;

/// The `failover` connector factory.
pub fn factory() -> Arc<dyn DynConnectorFactory> {
    factory::connector(Factory)
}

impl FactoryBase for Factory {
    type Config = FailoverConfig;

    fn type_name(&self) -> &'static str {
        "failover"
    }

    /// `priority_levels` has no default.
    fn default_config(&self) -> Option<FailoverConfig> {
        None
    }

    fn validate(&self, _id: &ComponentId, cfg: &FailoverConfig) -> Result<(), ConfigError> {
        check(cfg)
    }
}

impl ConnectorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Signal, Stability)] {
        &[
            (Signal::Traces, Signal::Traces, Stability::Alpha),
            (Signal::Metrics, Signal::Metrics, Stability::Alpha),
            (Signal::Logs, Signal::Logs, Stability::Alpha),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: FailoverConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn vigil_core::Connector>, ConfigError> {
        check(&cfg)?;
        let mut levels = Vec::new();
        for (i, level) in cfg.priority_levels.iter().enumerate() {
            let mut pipes = Vec::new();
            for (j, p) in level.iter().enumerate() {
                match (next.pipeline(p), crate::routing::pipeline_signal(p)) {
                    (Some(c), Some(s)) => pipes.push((s, Arc::clone(c))),
                    _ => {
                        return Err(ConfigError::at(
                            format!("priority_levels::{i}::{j}"),
                            format!(
                                "pipeline {p:?} does not list this connector among its receivers"
                            ),
                        ))
                    }
                }
            }
            levels.push(pipes);
        }
        let label = set.id.to_string();
        let switches = (0..levels.len())
            .map(|i| metrics::counter!("otelcol_connector_failover_count", "connector" => label.clone(), "level" => i.to_string()))
            .collect();
        let (epoch, _) = tokio::sync::watch::channel(0u64);
        Ok(Arc::new(Failover {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    stable: 0,
                    current: 0,
                    retries: vec![0; levels.len()],
                }),
                epoch,
                level_gauge: metrics::gauge!("vigil_failover_level", "connector" => label.clone()),
                switches,
                max_retries: cfg.max_retries,
                levels: levels.len(),
            }),
            levels,
            cfg,
            obs: set.connector_obs(),
            tasks: set.tasks,
            label,
        }))
    }
}

/// Which level is in use. `current` differs from `stable` while a higher level is on trial; both
/// equal the number of levels when every level has failed.
struct State {
    stable: usize,
    current: usize,
    retries: Vec<u32>,
}

/// What the connector and its retry task share.
struct Shared {
    state: Mutex<State>,
    /// Bumped whenever the stable level moves down, which restarts the retry rounds.
    epoch: tokio::sync::watch::Sender<u64>,
    level_gauge: metrics::Gauge,
    switches: Vec<metrics::Counter>,
    max_retries: u32,
    levels: usize,
}

impl Shared {
    fn exceeded(&self, st: &State, i: usize) -> bool {
        self.max_retries > 0 && i < st.retries.len() && st.retries[i] >= self.max_retries
    }

    /// Whether some level above the stable one may still be tried.
    fn may_retry(&self, st: &State) -> bool {
        (0..st.stable.min(self.levels)).any(|i| !self.exceeded(st, i))
    }

    /// A batch was taken by level `i`.
    fn report_ok(&self, i: usize) {
        let mut st = lock(&self.state);
        if st.current == i && st.stable != i {
            st.stable = i;
            st.retries[i] = 0;
            self.level_gauge.set(i as f64);
        }
    }

    /// Level `i` refused a batch: on the stable level, move down; on a trial, go back.
    fn report_err(&self, i: usize) {
        let mut st = lock(&self.state);
        if st.current != i {
            return; // another call already moved on
        }
        self.switches[i].increment(1);
        if st.stable == i {
            let mut next = i + 1;
            while next < self.levels && self.exceeded(&st, next) {
                next += 1;
            }
            st.stable = next;
            st.current = next;
            self.level_gauge.set(next as f64);
            drop(st);
            self.epoch.send_modify(|e| *e += 1);
        } else {
            st.retries[i] += 1;
            st.current = st.stable;
        }
    }

    /// The retry rounds: every `interval` while a higher level may be tried, each such level
    /// becomes the trial level in turn, `gap` apart. A fall to a lower level restarts the wait.
    async fn retry_loop(self: Arc<Self>, interval: Duration, gap: Duration) {
        let mut epoch = self.epoch.subscribe();
        loop {
            epoch.borrow_and_update();
            if !self.may_retry(&lock(&self.state)) {
                if epoch.changed().await.is_err() {
                    return;
                }
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                r = epoch.changed() => { if r.is_err() { return; } continue; }
            }
            for i in 0..self.levels {
                if self.exceeded(&lock(&self.state), i) {
                    continue;
                }
                tokio::select! {
                    _ = tokio::time::sleep(gap) => {}
                    r = epoch.changed() => { if r.is_err() { return; } break; }
                }
                let mut st = lock(&self.state);
                if i >= st.stable {
                    break;
                }
                st.current = i;
            }
        }
    }
}

struct Failover {
    shared: Arc<Shared>,
    /// Each level's pipelines with their signals.
    levels: Vec<Vec<(Signal, Arc<dyn Consumer>)>>,
    cfg: FailoverConfig,
    obs: ConnectorObs,
    tasks: vigil_core::task::Tasks,
    label: String,
}

impl Failover {
    /// Sends to every pipeline of `level` that carries the batch's signal; the first error wins.
    async fn send_level(&self, level: usize, data: Telemetry) -> Result<(), ConsumeError> {
        let signal = data.signal();
        let targets: Vec<&Arc<dyn Consumer>> = self.levels[level]
            .iter()
            .filter(|(s, _)| *s == signal)
            .map(|(_, c)| c)
            .collect();
        let Some((last, rest)) = targets.split_last() else {
            return Err(ConsumeError::permanent(
                format!(
                    "connector {}: level {level} has no {signal} pipeline",
                    self.label
                ),
                data.item_count(),
            ));
        };
        let mut first_err = None;
        for t in rest {
            if let Err(e) = t.consume(data.clone()).await {
                first_err.get_or_insert(e);
            }
        }
        if let Err(e) = last.consume(data).await {
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }
}

#[async_trait]
impl Component for Failover {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let shared = Arc::clone(&self.shared);
        let stop = self.tasks.stopping();
        let (interval, gap) = (self.cfg.retry_interval, self.cfg.retry_gap);
        self.tasks.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = shared.retry_loop(interval, gap) => {}
            }
        });
        Ok(())
    }

    fn tasks(&self) -> Option<&vigil_core::task::Tasks> {
        Some(&self.tasks)
    }
}

#[async_trait]
impl Consumer for Failover {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let (signal, n) = (data.signal(), data.item_count());
        self.obs.consumed(signal, n);
        let mut data = Some(data);
        loop {
            let level = lock(&self.shared.state).current;
            if level >= self.levels.len() {
                tracing::error!(connector = %self.label, "all provided pipelines return errors; refusing data");
                return Err(ConsumeError::retryable(format!(
                    "connector {}: all provided pipelines return errors",
                    self.label
                )));
            }
            // A copy is kept for the next level unless this is the last one: the batch must be
            // resent whole if this level refuses it.
            let Some(d) = (if level + 1 < self.levels.len() {
                data.clone()
            } else {
                data.take()
            }) else {
                return Err(ConsumeError::retryable(format!(
                    "connector {}: all provided pipelines return errors",
                    self.label
                )));
            };
            match self.send_level(level, d).await {
                Ok(()) => {
                    self.shared.report_ok(level);
                    self.obs.produced(signal, n);
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(connector = %self.label, level, error = %e, "a failover level refused a batch");
                    self.shared.report_err(level);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    /// A pipeline that fails while `down` is set and counts what it took.
    #[derive(Default)]
    struct Pipe {
        down: AtomicBool,
        took: AtomicUsize,
        tried: AtomicUsize,
    }

    #[async_trait]
    impl Consumer for Pipe {
        async fn consume(&self, _data: Telemetry) -> Result<(), ConsumeError> {
            self.tried.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(ConsumeError::retryable("503"));
            }
            self.took.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn logs() -> Telemetry {
        Telemetry::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default()],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn build(
        cfg: serde_json::Value,
        names: &[&str],
    ) -> (Arc<dyn vigil_core::Connector>, Vec<Arc<Pipe>>) {
        let mut next = NextConsumers::new();
        let pipes: Vec<Arc<Pipe>> = names.iter().map(|_| Arc::new(Pipe::default())).collect();
        for (n, p) in names.iter().zip(&pipes) {
            next.insert_pipeline(*n, p.clone());
        }
        let c = factory()
            .create(&ComponentId::parse("failover").unwrap(), &cfg, next)
            .expect("creates");
        (c, pipes)
    }

    fn took(p: &Pipe) -> usize {
        p.took.load(Ordering::SeqCst)
    }

    #[tokio::test(start_paused = true)]
    async fn fails_over_down_and_back_up_on_retry() {
        let (c, p) = build(
            json!({"priority_levels": [["logs/a", "logs/a2"], ["logs/b"], ["logs/c"]],
                   "retry_interval": "10s", "retry_gap": "1s", "max_retries": 2}),
            &["logs/a", "logs/a2", "logs/b", "logs/c"],
        );
        c.start(&Host::detached()).await.unwrap();
        c.consume(logs()).await.unwrap();
        assert_eq!(
            (took(&p[0]), took(&p[1])),
            (1, 1),
            "a level gets every batch"
        );
        // One pipeline of the first level fails: the same batch goes to the second level.
        p[1].down.store(true, Ordering::SeqCst);
        c.consume(logs()).await.unwrap();
        assert_eq!(took(&p[2]), 1);
        c.consume(logs()).await.unwrap();
        assert_eq!(took(&p[2]), 2, "the second level is now stable");
        assert_eq!(
            p[1].tried.load(Ordering::SeqCst),
            2,
            "not tried again before a retry"
        );
        // A retry round while level 0 is still down: the trial batch falls back to level 1.
        tokio::time::sleep(Duration::from_millis(11_500)).await;
        c.consume(logs()).await.unwrap();
        assert_eq!(p[1].tried.load(Ordering::SeqCst), 3, "tried on the retry");
        assert_eq!(took(&p[2]), 3, "and taken by the stable level");
        // Level 0 recovers: the next round moves back up.
        p[1].down.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(12)).await;
        c.consume(logs()).await.unwrap();
        c.consume(logs()).await.unwrap();
        assert_eq!(took(&p[1]), 3, "back on the first level");
        assert_eq!(took(&p[2]), 3);
        c.shutdown().await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn every_level_down_refuses_and_max_retries_stops_trials() {
        let (c, p) = build(
            json!({"priority_levels": [["logs/a"], ["logs/b"]],
                   "retry_interval": "10s", "retry_gap": "1s", "max_retries": 1}),
            &["logs/a", "logs/b"],
        );
        c.start(&Host::detached()).await.unwrap();
        p[0].down.store(true, Ordering::SeqCst);
        p[1].down.store(true, Ordering::SeqCst);
        let e = c.consume(logs()).await.expect_err("no healthy level");
        assert!(e.is_retryable() && e.to_string().contains("all provided pipelines"));
        // Retries: level 0 tried once (max_retries 1), then level 1 is back on trial.
        p[1].down.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(11_500)).await;
        let _ = c.consume(logs()).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        c.consume(logs()).await.expect("level 1 recovered");
        let tried_a = p[0].tried.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(30)).await;
        c.consume(logs()).await.unwrap();
        assert_eq!(
            p[0].tried.load(Ordering::SeqCst),
            tried_a,
            "level 0 used up its retries"
        );
        c.shutdown().await.unwrap();
    }

    #[test]
    fn config_cases() {
        let id = ComponentId::parse("failover/x").unwrap();
        crate::testdata::check_all("failover", 3, |v| {
            factory().validate(&id, v).map_err(|e| e.to_string())
        });
    }
}
