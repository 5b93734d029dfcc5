//! `prometheus`: the Prometheus scrape receiver, a drop-in for otelcol's `prometheusreceiver`. Its
//! `config:` block is Prometheus's own (`global`, `scrape_configs` with static and file discovery,
//! relabelling, auth and TLS); every target is scraped on its own loop and each scrape is mapped to
//! OTLP as otelcol maps it, with the synthetic `up`/`scrape_*` series and staleness markers.
//!
//! Layout: `config` (keys, defaults, checks), `parse` (the exposition parser; public for the fuzz
//! target and the benchmark), `relabel`, `discovery` (targets from static and file SD), `convert`
//! (samples to OTLP, start times, staleness), `scrape` (HTTP and the per-target loop). This file holds
//! the factory and the lifecycle: one manager task per job that keeps the set of target loops in
//! step with discovery.

pub mod config;
pub mod convert;
pub mod discovery;
pub mod parse;
pub mod relabel;
pub mod scrape;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use config::{Config, Job};
use discovery::Target;
use scrape::LoopContext;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vigil_core::{Component, ComponentId, ConfigError, Host, NextConsumers, Receiver, Signal};

/// How long `shutdown` waits for target loops to send their last staleness markers.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

struct Factory;

/// The `prometheus` receiver factory, for the registry.
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = config::RawConfig;

    fn type_name(&self) -> &'static str {
        "prometheus"
    }

    fn validate(&self, id: &ComponentId, cfg: &config::RawConfig) -> Result<(), ConfigError> {
        let cfg = config::check(id, cfg.clone())?;
        // TLS files are read when the client is built; a missing one is a config error, not a
        // start-time surprise.
        for (i, job) in cfg.jobs.iter().enumerate() {
            scrape::client(job).map_err(|m| {
                ConfigError::at(format!("config::scrape_configs::{i}::tls_config"), m)
            })?;
        }
        Ok(())
    }
}

impl vigil_core::factory::ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[(Signal::Metrics, vigil_core::Stability::Beta)]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: config::RawConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        let id = &set.id;
        let cfg = config::check(id, cfg)?;
        Ok(Arc::new(PrometheusReceiver {
            id: id.clone(),
            cfg,
            next,
            running: Mutex::new(None),
        }))
    }
}

struct Running {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// The receiver: one manager per job, started at `start` and stopped at `shutdown`.
pub struct PrometheusReceiver {
    id: ComponentId,
    cfg: Config,
    next: NextConsumers,
    running: Mutex<Option<Running>>,
}

#[async_trait]
impl Component for PrometheusReceiver {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let labels = [
            ("receiver", self.id.to_string()),
            ("transport", "http".to_string()),
        ];
        let mut tasks = Vec::new();
        for (i, job) in self.cfg.jobs.iter().enumerate() {
            let client = scrape::client(job).map_err(|m| {
                anyhow::anyhow!("receivers::{}::config::scrape_configs::{i}: {m}", self.id)
            })?;
            let ctx = Arc::new(LoopContext {
                receiver: self.id.to_string(),
                job: Arc::new(job.clone()),
                client,
                next: self.next.clone(),
                start_time_metric: self.cfg.start_time_metric.clone(),
                report_extra: self.cfg.report_extra_scrape_metrics,
                accepted: metrics::counter!("otelcol_receiver_accepted_metric_points", &labels),
                refused: metrics::counter!("otelcol_receiver_refused_metric_points", &labels),
            });
            tasks.push(tokio::spawn(manage(ctx, stop.clone())));
        }
        tracing::info!(receiver = %self.id, jobs = self.cfg.jobs.len(), "prometheus receiver started");
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        *running = Some(Running { stop, tasks });
        Ok(())
    }

    async fn shutdown(&self) -> anyhow::Result<()> {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(r) = running {
            r.stop.cancel();
            let all = futures::future::join_all(r.tasks);
            if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
                tracing::warn!(receiver = %self.id, "scrape loops did not stop in time");
            }
        }
        Ok(())
    }
}

/// The shortest file SD refresh of a job; `None` when it has only static targets.
fn refresh_every(job: &Job) -> Option<Duration> {
    job.file_sd.iter().map(|f| f.refresh).min()
}

/// Keeps one loop per discovered target of a job, re-reading file SD every refresh interval.
async fn manage(ctx: Arc<LoopContext>, stop: CancellationToken) {
    let mut loops: HashMap<String, (CancellationToken, JoinHandle<()>)> = HashMap::new();
    loop {
        let mut groups: Vec<(Option<String>, config::TargetGroup)> = ctx
            .job
            .static_groups
            .iter()
            .map(|g| (None, g.clone()))
            .collect();
        groups.extend(
            discovery::file_groups(&ctx.job, &ctx.receiver)
                .into_iter()
                .map(|(f, g)| (Some(f), g)),
        );
        let targets: Vec<Target> = discovery::targets(&ctx.job, &groups);
        let wanted: HashMap<String, Target> =
            targets.into_iter().map(|t| (t.identity(), t)).collect();
        // Stop loops of targets that are gone; each sends its staleness markers on the way out.
        let gone: Vec<String> = loops
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some((tok, handle)) = loops.remove(&k) {
                tok.cancel();
                let _ = handle.await;
            }
        }
        for (k, t) in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = loops.entry(k) {
                tracing::debug!(receiver = %ctx.receiver, job = %ctx.job.name, target = %t.url, "scraping new target");
                let tok = stop.child_token();
                let handle = tokio::spawn(scrape::run(Arc::clone(&ctx), t, tok.clone()));
                slot.insert((tok, handle));
            }
        }
        let wait = async {
            match refresh_every(&ctx.job) {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = wait => {}
        }
    }
    // The stop token is the parent of every loop's token, so they are already cancelled.
    futures::future::join_all(loops.into_values().map(|(_, h)| h)).await;
}
