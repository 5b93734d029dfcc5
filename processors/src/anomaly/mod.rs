//! `anomalydetection`: the connector that watches metrics, span RED and log rates on the node and turns
//! anomalous episodes into a few explained `vigil.anomaly` events (one when an episode starts, one when
//! it ends) and predicted threshold crossings into `vigil.forecast` events, in a logs pipeline. With a
//! metrics pipeline as output it also emits per-series score and band gauges for dashboards.
//!
//! It is the end of its input pipelines: nothing passes through. The detection itself is
//! `vigil-detect`'s; [`engine`] maps OTLP onto it, and this module adds the pipeline around it: a timer
//! task that scores span and log windows every `interval`, a small outbox that retries events a
//! downstream consumer pushed back on (see [`OUTBOX_LIMIT`] for why it exists), and the connector's
//! own metrics.
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
//! | `slos` | none | `[{service, name?, availability?, latency?: {threshold, objective}, period (720h), alerts?: [{burn_rate, long, short, severity (page\|ticket)}]}]`: SLOs on the service's server spans, alerted by multi-window burn rates (default 14.4× over 1h and 5m, 6× over 6h and 30m); `vigil.slo` events |
//!
//! Own metrics, labelled `connector`: `vigil_anomaly_series_live` (gauge), `vigil_anomaly_series_evicted`,
//! `vigil_anomaly_series_expired` (series, cumulative baselines and window groups dropped),
//! `vigil_anomaly_points` (values scored), `vigil_anomaly_points_duplicate` (a second delivery of a
//! series' latest point, same timestamp and value: dropped), `vigil_anomaly_points_out_of_order` (a
//! repeated or earlier timestamp with a new value: scored as the next sample, the series is not reset),
//! `vigil_anomaly_events` (events written), `vigil_anomaly_failed_calls_evicted` (remembered parents of failed
//! calls forgotten beyond [`engine::FAILED_PARENTS_LIMIT`], which `red.own_error_ratio` needs), `vigil_anomaly_events_dropped` (event records refused
//! downstream and given up: outbox full, a permanent refusal, or still refused at shutdown). Every event and
//! attribute is in `docs/events.md`.

pub mod config;
pub mod derive;
pub mod engine;
pub mod events;
pub mod identity;
pub mod slo;
pub mod windows;

use async_trait::async_trait;
use engine::{Counts, Engine, Output};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vigil_core::lock;
use vigil_core::{
    Component, ComponentId, ConfigError, ConsumeError, Consumer, Host, NextConsumers, Signal,
    Telemetry,
};

/// Event batches held for a retry after downstream pushed back; beyond this the oldest is dropped
/// and counted in `vigil_anomaly_events_dropped`.
///
/// Why this connector keeps a retry of its own when no other component does: everywhere else a
/// refusal goes back to the caller, who still holds the data and resends it, and the exporter's
/// sending queue is the one owner after acknowledgement. The events are not the caller's data. They
/// are made here, from state that has already moved on: a resent metrics batch is recognised as a
/// duplicate and makes no event again, and the events of a timer tick have no caller at all. Without
/// the outbox, an episode's end refused once (a full queue downstream) would be lost for good after its
/// start went out, and alerts would stay open. It is retried on the existing tick, not by a loop of
/// its own, and it is small: events are a few records per episode.
pub const OUTBOX_LIMIT: usize = 256;

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
        let settings = config::prepare(&cfg)?;
        let emit_scores =
            settings.emit_scores.unwrap_or(true) && next.get(Signal::Metrics).is_some();
        let interval = Duration::from_secs_f64(settings.interval_secs);
        Ok(Arc::new(AnomalyDetection {
            inner: Arc::new(Inner {
                id: set.id.to_string(),
                obs: set.connector_obs(),
                events_dropped: metrics::counter!(
                    "vigil_anomaly_events_dropped",
                    "connector" => set.id.to_string()
                ),
                next,
                engine: Mutex::new(Engine::new(settings, emit_scores)),
                outbox: Mutex::new(VecDeque::new()),
                reported: Mutex::new(Counts::default()),
                interval,
                started: std::time::Instant::now(),
                warmup_note: Mutex::new(WarmupNote::Nothing),
            }),
            tasks: set.tasks,
        }))
    }
}

/// A running `anomalydetection` connector.
pub struct AnomalyDetection {
    inner: Arc<Inner>,
    /// The tick that scores windows and retries the outbox.
    tasks: vigil_core::Tasks,
}

struct Inner {
    id: String,
    obs: vigil_core::ConnectorObs,
    events_dropped: metrics::Counter,
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
            (
                "vigil_anomaly_failed_calls_evicted",
                now.failed_calls_evicted,
                last.failed_calls_evicted,
            ),
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
                self.obs.produced(Signal::Metrics, data.item_count());
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
        self.obs.produced(Signal::Logs, data.item_count());
        // Events are few and small, so a copy kept for a retry costs little, whatever the consumer
        // downstream hands back.
        match next.consume(data.clone()).await {
            Ok(()) => {}
            Err(e) if e.is_retryable() => {
                let mut q = lock(&self.outbox);
                if q.len() >= OUTBOX_LIMIT {
                    if let Some(old) = q.pop_front() {
                        self.events_dropped.increment(old.item_count() as u64);
                    }
                    tracing::warn!(connector = %self.id, "event outbox full; dropped the oldest events");
                }
                q.push_back(data);
            }
            Err(e) => {
                self.events_dropped.increment(data.item_count() as u64);
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
                    self.events_dropped.increment(data.item_count() as u64);
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
        let inner = Arc::clone(&self.inner);
        self.tasks.spawn_ticker(self.inner.interval, move || {
            let inner = Arc::clone(&inner);
            async move { inner.tick(false).await }
        });
        Ok(())
    }

    /// Stops the tick, ends every open episode and tries the outbox once more, within the shutdown
    /// deadline; what is still refused then is counted as dropped.
    async fn shutdown_by(&self, deadline: std::time::Instant) -> anyhow::Result<()> {
        let inner = &self.inner;
        self.tasks.stop(deadline).await;
        let last = async {
            inner.tick(true).await;
            inner.drain_outbox().await;
        };
        if vigil_core::task::within(deadline, last).await.is_none() {
            tracing::warn!(connector = %inner.id, "the last events were not sent by the shutdown deadline");
        }
        let lost: usize = lock(&inner.outbox).drain(..).map(|d| d.item_count()).sum();
        if lost > 0 {
            inner.events_dropped.increment(lost as u64);
            tracing::warn!(connector = %inner.id, records = lost, "events still refused downstream at shutdown; lost");
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for AnomalyDetection {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        self.inner.obs.consumed(data.signal(), data.item_count());
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
