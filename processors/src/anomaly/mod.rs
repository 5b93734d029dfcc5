//! `anomalydetection`: the connector that watches metrics, span RED and log rates on the node and turns
//! anomalous episodes into a few explained `vigil.anomaly` events (one when an episode starts, one when
//! it ends) and predicted threshold crossings into `vigil.forecast` events, in a logs pipeline. With a
//! metrics pipeline as output it also emits per-series score and band gauges for dashboards.
//!
//! It is the end of its input pipelines: nothing passes through. The detection itself is
//! `vigil-detect`'s; [`engine`] maps OTLP onto it, and this module adds the pipeline around it: a timer
//! task that scores span and log windows every `interval`, a small outbox that retries events a
//! downstream consumer pushed back on, and the connector's own metrics.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `max_series` | 100000 | series tracked at once; when full, the least recently seen are dropped, a 64th of it at a time (and their open episodes ended) |
//! | `series_ttl` | 1h | a series not seen for this long is dropped |
//! | `threshold` | 0.5 | the score that starts an episode; it ends after 10 points below half of it |
//! | `include`, `exclude` | none | `match_type: strict\|regexp` and `metric_names`, applied to input metric names and to the derived `red.*`/`log.*` names |
//! | `histogram_quantile` | 0.99 | the quantile watched on histograms and summaries |
//! | `interval` | 10s | the RED and log-rate window, and the timer that scores them |
//! | `forecasts` | none | `[{metric, threshold, horizon, attributes?}]`: `vigil.forecast` when a crossing is predicted within `horizon` |
//! | `emit_scores` | true with a metrics output | score and band gauges into the metrics pipeline |
//!
//! Own metrics, labelled `connector`: `vigil_anomaly_series_live` (gauge), `vigil_anomaly_series_evicted`,
//! `vigil_anomaly_series_expired` (series, cumulative baselines and window groups dropped),
//! `vigil_anomaly_points` (values scored), `vigil_anomaly_points_duplicate` (a second delivery of a
//! series' latest point, same timestamp and value: dropped), `vigil_anomaly_points_out_of_order` (a
//! repeated or earlier timestamp with a new value: scored as the next sample, the series is not reset),
//! `vigil_anomaly_events` (events written). Every event and
//! attribute is in `docs/events.md`.

pub mod config;
pub mod derive;
pub mod engine;
pub mod events;
pub mod identity;
pub mod windows;

use async_trait::async_trait;
use engine::{Counts, Engine, Output};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vigil_core::lock;
use vigil_core::{
    Component, ComponentId, ConfigError, ConsumeError, Consumer, Host, NextConsumers, Signal,
    Telemetry,
};

/// Event batches held for a retry after downstream pushed back; beyond this the oldest is dropped.
const OUTBOX_LIMIT: usize = 256;

struct Factory;

/// The `anomalydetection` connector factory.
pub fn factory() -> Arc<dyn vigil_core::factory::DynConnectorFactory> {
    vigil_core::factory::connector(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = config::AnomalyConfig;

    fn type_name(&self) -> &'static str {
        "anomalydetection"
    }

    fn validate(&self, _id: &ComponentId, cfg: &config::AnomalyConfig) -> Result<(), ConfigError> {
        config::prepare(cfg).map(|_| ())
    }
}

impl vigil_core::factory::ConnectorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Signal, vigil_core::Stability)] {
        use vigil_core::Stability::Alpha;
        &[
            (Signal::Metrics, Signal::Logs, Alpha),
            (Signal::Traces, Signal::Logs, Alpha),
            (Signal::Logs, Signal::Logs, Alpha),
            (Signal::Metrics, Signal::Metrics, Alpha),
            (Signal::Traces, Signal::Metrics, Alpha),
            (Signal::Logs, Signal::Metrics, Alpha),
        ]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: config::AnomalyConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn vigil_core::Connector>, ConfigError> {
        let id = &set.id;
        let settings = config::prepare(&cfg)?;
        let emit_scores =
            settings.emit_scores.unwrap_or(true) && next.get(Signal::Metrics).is_some();
        let interval = Duration::from_secs_f64(settings.interval_secs);
        Ok(Arc::new(AnomalyDetection {
            inner: Arc::new(Inner {
                id: id.to_string(),
                next,
                engine: Mutex::new(Engine::new(settings, emit_scores)),
                outbox: Mutex::new(VecDeque::new()),
                reported: Mutex::new(Counts::default()),
                interval,
                started: std::time::Instant::now(),
                warmup_note: Mutex::new(WarmupNote::Nothing),
            }),
            task: tokio::sync::Mutex::new(None),
        }))
    }
}

/// A running `anomalydetection` connector.
pub struct AnomalyDetection {
    inner: Arc<Inner>,
    task: tokio::sync::Mutex<Option<(watch::Sender<bool>, JoinHandle<()>)>>,
}

struct Inner {
    id: String,
    next: NextConsumers,
    engine: Mutex<Engine>,
    outbox: Mutex<VecDeque<Telemetry>>,
    /// The counts last reported to the metrics recorder, so that counters move by the difference.
    reported: Mutex<Counts>,
    interval: Duration,
    started: std::time::Instant,
    /// What has been said about warm-up so far, so that it is said once.
    warmup_note: Mutex<WarmupNote>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WarmupNote {
    Nothing,
    Watching,
    AllLive,
}

/// `300` → `5m`, `90` → `1m30s`, `10` → `10s`: how a person says an interval.
fn human_secs(secs: u64) -> String {
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

fn wall_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Inner {
    /// Runs `f` on the engine, then reports the connector's counts.
    fn with_engine(&self, f: impl FnOnce(&mut Engine) -> Output) -> Output {
        let (out, counts) = {
            let mut e = lock(&self.engine);
            let out = f(&mut e);
            (out, e.counts())
        };
        self.report(counts);
        out
    }

    fn report(&self, now: Counts) {
        let mut last = lock(&self.reported);
        let label = ("connector", self.id.clone());
        metrics::gauge!("vigil_anomaly_series_live", std::slice::from_ref(&label))
            .set(now.live as f64);
        let counters = [
            ("vigil_anomaly_series_evicted", now.evicted, last.evicted),
            ("vigil_anomaly_series_expired", now.expired, last.expired),
            ("vigil_anomaly_points", now.points, last.points),
            (
                "vigil_anomaly_points_duplicate",
                now.duplicates,
                last.duplicates,
            ),
            (
                "vigil_anomaly_points_out_of_order",
                now.out_of_order,
                last.out_of_order,
            ),
            ("vigil_anomaly_events", now.events, last.events),
        ];
        for (name, now, before) in counters {
            if now > before {
                metrics::counter!(name, std::slice::from_ref(&label)).increment(now - before);
            }
        }
        *last = now;
    }

    /// Sends what the engine produced. Events that downstream pushes back on are kept for a retry on
    /// the next tick, because an episode's end must not be lost after its start went out; score gauges
    /// are dashboard points and are not retried.
    async fn deliver(&self, out: Output) {
        if !out.scores.is_empty() {
            if let Some(next) = self.next.get(Signal::Metrics) {
                let data = Telemetry::Metrics(out.scores.into_resource_metrics());
                if let Err(e) = next.consume(data).await {
                    tracing::debug!(connector = %self.id, error = %e, "score gauges not delivered");
                }
            }
        }
        if !out.logs.is_empty() {
            self.send_events(Telemetry::Logs(out.logs)).await;
        }
    }

    async fn send_events(&self, data: Telemetry) {
        let Some(next) = self.next.get(Signal::Logs) else {
            return;
        };
        // Events are few and small, so a copy kept for a retry costs little, whatever the consumer
        // downstream hands back.
        match next.consume(data.clone()).await {
            Ok(()) => {}
            Err(e) if e.is_retryable() => {
                let mut q = lock(&self.outbox);
                if q.len() >= OUTBOX_LIMIT {
                    q.pop_front();
                    tracing::warn!(connector = %self.id, "event outbox full; dropped the oldest events");
                }
                q.push_back(data);
            }
            Err(e) => {
                tracing::warn!(connector = %self.id, error = %e, "events rejected downstream; dropped");
            }
        }
    }

    /// Retries held events in order; stops at the first that is refused again.
    async fn drain_outbox(&self) {
        let Some(next) = self.next.get(Signal::Logs) else {
            return;
        };
        loop {
            let Some(data) = lock(&self.outbox).pop_front() else {
                return;
            };
            match next.consume(data.clone()).await {
                Ok(()) => {}
                Err(e) if e.is_retryable() => {
                    lock(&self.outbox).push_front(data);
                    return;
                }
                Err(e) => {
                    tracing::warn!(connector = %self.id, error = %e, "events rejected downstream; dropped");
                }
            }
        }
    }

    async fn tick(&self, final_flush: bool) {
        self.drain_outbox().await;
        let out = self.with_engine(|e| e.tick(wall_now(), final_flush));
        if !final_flush {
            self.report_warmup();
        }
        self.deliver(out).await;
    }

    /// A series is silent while it learns its baseline, and at a 60 s export interval that is half an
    /// hour: so the gauge `vigil_anomaly_series_warming` says how many are still learning, and the log
    /// says once, about a minute after the start, what is watched and when it goes live, and once more
    /// when every series is live.
    fn report_warmup(&self) {
        let (live, warming, points) = {
            let e = lock(&self.engine);
            (e.counts().live, e.warming(), e.warmup_points())
        };
        let label = ("connector", self.id.clone());
        metrics::gauge!("vigil_anomaly_series_warming", std::slice::from_ref(&label))
            .set(warming as f64);
        let mut note = lock(&self.warmup_note);
        let ripe = self.started.elapsed() >= Duration::from_secs(55);
        if *note == WarmupNote::Nothing && (ripe || (live > 0 && warming == 0)) {
            let window = human_secs(u64::from(points) * self.interval.as_secs().max(1));
            tracing::info!(
                connector = %self.id,
                series = live,
                warming,
                "watching {live} series, {warming} of them still warming up: a series is scored after its first {points} points ({window} for span and log rates at the {} interval; metrics at the interval they are reported at)",
                human_secs(self.interval.as_secs().max(1)),
            );
            *note = WarmupNote::Watching;
        }
        if *note == WarmupNote::Watching && live > 0 && warming == 0 {
            tracing::info!(connector = %self.id, series = live, "detection is live on all {live} watched series");
            *note = WarmupNote::AllLive;
        }
    }
}

#[async_trait]
impl Component for AnomalyDetection {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let inner = Arc::clone(&self.inner);
        let handle = tokio::spawn(async move {
            let mut every = tokio::time::interval(inner.interval);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                tokio::select! {
                    _ = every.tick() => inner.tick(false).await,
                    _ = stop_rx.changed() => return,
                }
            }
        });
        *self.task.lock().await = Some((stop_tx, handle));
        Ok(())
    }

    async fn shutdown(&self) -> anyhow::Result<()> {
        if let Some((stop, handle)) = self.task.lock().await.take() {
            let _ = stop.send(true);
            let _ = handle.await;
        }
        self.inner.tick(true).await;
        self.inner.drain_outbox().await;
        let left = lock(&self.inner.outbox).len();
        if left > 0 {
            tracing::warn!(connector = %self.inner.id, batches = left, "events still refused downstream at shutdown; lost");
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for AnomalyDetection {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let out = self.inner.with_engine(|e| e.ingest(&data, wall_now()));
        self.inner.deliver(out).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod warmup_tests {
    use super::human_secs;

    #[test]
    fn intervals_read_as_a_person_says_them() {
        assert_eq!(human_secs(300), "5m");
        assert_eq!(human_secs(1800), "30m");
        assert_eq!(human_secs(90), "1m30s");
        assert_eq!(human_secs(10), "10s");
        assert_eq!(human_secs(7200), "2h");
    }
}
