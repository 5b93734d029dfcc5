//! `prometheus`: the Prometheus scrape receiver, a drop-in for otelcol's `prometheusreceiver`. Its
//! `config:` block is Prometheus's own (`global`, `scrape_configs` with static, file and Kubernetes discovery,
//! relabelling, auth and TLS); every target is scraped on its own loop and each scrape is mapped to
//! OTLP as otelcol maps it, with the synthetic `up`/`scrape_*` series and staleness markers.
//!
//! Layout: `config` (keys, defaults, checks), `parse` (the exposition parser; public for the fuzz
//! target and the benchmark), `relabel`, `discovery` (targets from static and file SD), `kubernetes` (targets from the Kubernetes API: roles pod, node, service, endpoints, endpointslice, ingress), `http_sd` (Prometheus's HTTP SD), `target_allocator` (jobs from otelcol's Target Allocator), `convert`
//! (samples to OTLP, start times, staleness), `scrape` (HTTP and the per-target loop). This file holds
//! the factory and the lifecycle: one manager task per job that keeps the set of target loops in
//! step with discovery, and with `target_allocator` one more task that starts and stops the
//! allocator's jobs' managers as its answer changes.

pub mod config;
pub mod convert;
pub mod discovery;
pub mod http_sd;
pub mod kubernetes;
pub mod parse;
pub mod relabel;
pub mod scrape;
pub mod target_allocator;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use config::{Config, Job};
use discovery::Target;
use scrape::LoopContext;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vigil_core::{
    Component, ComponentId, ConfigError, Host, NextConsumers, Receiver, ReceiverObs, Signal, Tasks,
};

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
        let checked = config::check(id, cfg.clone())?;
        // As otelcol's validate: the files a job names for its credentials and its client
        // certificate must exist (a stat, nothing is read); `ca_file` is not looked at, since it is
        // loaded when the scrape pool starts.
        let raws = cfg
            .config
            .as_ref()
            .map(|c| c.scrape_configs.as_slice())
            .unwrap_or_default();
        for (i, (job, raw)) in checked.jobs.iter().zip(raws).enumerate() {
            let creds_key = if raw.bearer_token_file.is_some() {
                "bearer_token_file"
            } else {
                "authorization::credentials_file"
            };
            let files = [
                (
                    creds_key.to_string(),
                    "authorization credentials",
                    job.authorization
                        .as_ref()
                        .and_then(|a| a.credentials_file.as_ref()),
                ),
                (
                    "tls_config::cert_file".into(),
                    "client cert",
                    job.tls.cert_file.as_ref(),
                ),
                (
                    "tls_config::key_file".into(),
                    "client key",
                    job.tls.key_file.as_ref(),
                ),
            ]
            .into_iter()
            .chain(job.kubernetes_sd.iter().enumerate().flat_map(|(k, sd)| {
                [
                    (
                        format!("kubernetes_sd_configs::{k}::tls_config::cert_file"),
                        "client cert",
                        sd.tls.cert_file.as_ref(),
                    ),
                    (
                        format!("kubernetes_sd_configs::{k}::tls_config::key_file"),
                        "client key",
                        sd.tls.key_file.as_ref(),
                    ),
                ]
            }));
            for (key, what, file) in files {
                let Some(f) = file else { continue };
                if let Err(e) = std::fs::metadata(f) {
                    return Err(ConfigError::host_path(
                        format!("config::scrape_configs::{i}::{key}"),
                        format!("error checking {what} file {f:?}: {e}"),
                    ));
                }
            }
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
        let cfg = config::check(&set.id, cfg)?;
        Ok(Arc::new(PrometheusReceiver {
            obs: set.receiver_obs("http"),
            id: set.id,
            cfg,
            next,
            tasks: set.tasks,
            started: AtomicBool::new(false),
        }))
    }
}

/// The receiver: one manager per job, started at `start` and stopped at `shutdown`.
pub struct PrometheusReceiver {
    id: ComponentId,
    cfg: Config,
    next: NextConsumers,
    obs: ReceiverObs,
    /// The job managers; each waits for its target loops.
    tasks: Tasks,
    started: AtomicBool,
}

#[async_trait]
impl Component for PrometheusReceiver {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        if self.started.swap(true, Ordering::SeqCst) {
            anyhow::bail!("receivers::{}: already started", self.id);
        }
        // Built first so that a TLS file that cannot be read fails start, as otelcol's ToClient.
        let ta_client =
            match &self.cfg.target_allocator {
                Some(ta) => Some(target_allocator::client(ta).map_err(|m| {
                    anyhow::anyhow!("receivers::{}: target_allocator: {m}", self.id)
                })?),
                None => None,
            };
        let mut contexts = Vec::new();
        for (i, job) in self.cfg.jobs.iter().enumerate() {
            // As Prometheus does with a scrape pool whose HTTP client cannot be made (a CA file
            // that cannot be read, most often): the job is logged and dropped, the others run.
            let client = match scrape::client(job) {
                Ok(c) => c,
                Err(m) => {
                    metrics::counter!(
                        "vigil_prometheus_jobs_dropped",
                        "receiver" => self.id.to_string(),
                        "job" => job.name.clone()
                    )
                    .increment(1);
                    tracing::error!(receiver = %self.id, job = %job.name,
                        key = %format!("config::scrape_configs::{i}::tls_config"), error = %m,
                        "cannot create the scrape pool; this job is not scraped, the others are");
                    continue;
                }
            };
            let ctx = Arc::new(LoopContext {
                receiver: self.id.to_string(),
                job: Arc::new(job.clone()),
                client,
                next: self.next.clone(),
                start_time_metric: self.cfg.start_time_metric.clone(),
                report_extra: self.cfg.report_extra_scrape_metrics,
                obs: self.obs.clone(),
            });
            contexts.push(ctx);
        }
        for ctx in contexts {
            self.tasks.spawn(manage(ctx, self.tasks.stopping()));
        }
        if let (Some(ta), Some(client)) = (&self.cfg.target_allocator, ta_client) {
            let (receiver, next, obs) = (self.id.to_string(), self.next.clone(), self.obs.clone());
            let (start_time_metric, report_extra) = (
                self.cfg.start_time_metric.clone(),
                self.cfg.report_extra_scrape_metrics,
            );
            let make: target_allocator::MakeContext = Arc::new(move |job: Job| {
                Ok(Arc::new(LoopContext {
                    receiver: receiver.clone(),
                    client: scrape::client(&job)?,
                    job: Arc::new(job),
                    next: next.clone(),
                    start_time_metric: start_time_metric.clone(),
                    report_extra,
                    obs: obs.clone(),
                }))
            });
            let static_names = self.cfg.jobs.iter().map(|j| j.name.clone()).collect();
            self.tasks.spawn(target_allocator::run(
                self.id.clone(),
                ta.clone(),
                client,
                static_names,
                make,
                self.tasks.stopping(),
            ));
        }
        tracing::info!(receiver = %self.id, jobs = self.cfg.jobs.len(), "prometheus receiver started");
        Ok(())
    }

    /// Stopping cancels every loop; each sends its staleness markers until the deadline.
    fn tasks(&self) -> Option<&vigil_core::Tasks> {
        Some(&self.tasks)
    }
}

/// How often a job's file and Kubernetes targets are discovered again: its shortest file SD
/// refresh, or the Kubernetes re-list interval; `None` when it has none. HTTP SD sources keep
/// their own intervals.
fn refresh_every(job: &Job) -> Option<Duration> {
    let k8s = (!job.kubernetes_sd.is_empty()).then_some(kubernetes::RELIST_INTERVAL);
    job.file_sd.iter().map(|f| f.refresh).chain(k8s).min()
}

/// One HTTP SD source of a job as the manager keeps it: its client, its last good answer and
/// when it is due again.
struct HttpSource {
    client: Option<reqwest::Client>,
    last: Vec<config::TargetGroup>,
    due: tokio::time::Instant,
}

/// One target's scrape loop. Dropping it aborts the loop, so that a manager stopped at the
/// shutdown deadline takes its loops with it.
struct TargetLoop {
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

impl Drop for TargetLoop {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Keeps one loop per discovered target of a job, re-reading file SD every refresh interval.
async fn manage(ctx: Arc<LoopContext>, stop: CancellationToken) {
    let mut loops: HashMap<String, TargetLoop> = HashMap::new();
    // Each Kubernetes SD entry's last good answer: a failed list keeps it, as Prometheus keeps its
    // last state when a watch breaks.
    let mut k8s_groups: Vec<kubernetes::Groups> = vec![Vec::new(); ctx.job.kubernetes_sd.len()];
    let sd_failures = metrics::counter!(
        "vigil_prometheus_sd_failures",
        "receiver" => ctx.receiver.clone(),
        "job" => ctx.job.name.clone()
    );
    let dropped_targets = metrics::counter!(
        "vigil_prometheus_sd_dropped",
        "receiver" => ctx.receiver.clone(),
        "what" => "targets"
    );
    let dropped_responses = metrics::counter!(
        "vigil_prometheus_sd_dropped",
        "receiver" => ctx.receiver.clone(),
        "what" => "responses"
    );
    let mut http: Vec<HttpSource> = ctx
        .job
        .http_sd
        .iter()
        .map(|sd| HttpSource {
            client: http_sd::client(sd)
                .inspect_err(|e| {
                    tracing::error!(receiver = %ctx.receiver, job = %ctx.job.name, url = %sd.url,
                        error = %e, "cannot create the HTTP SD client; this source finds no targets");
                })
                .ok(),
            last: Vec::new(),
            due: tokio::time::Instant::now(),
        })
        .collect();
    let mut next_full = tokio::time::Instant::now();
    let mut file_groups: Vec<(String, config::TargetGroup)> = Vec::new();
    loop {
        let now = tokio::time::Instant::now();
        for (sd, src) in ctx.job.http_sd.iter().zip(http.iter_mut()) {
            if src.due > now {
                continue;
            }
            src.due = now + sd.refresh;
            let Some(client) = &src.client else { continue };
            let mut dropped = 0;
            let found = tokio::select! {
                _ = stop.cancelled() => break,
                found = http_sd::discover(client, sd, &mut dropped) => found,
            };
            if dropped > 0 {
                dropped_targets.increment(dropped);
                tracing::warn!(receiver = %ctx.receiver, job = %ctx.job.name, url = %sd.url, dropped,
                    max = http_sd::MAX_TARGETS, "HTTP SD lists more targets than vigil's cap; the rest are not scraped");
            }
            match found {
                Ok(groups) => src.last = groups,
                Err(e) => {
                    if matches!(e, http_sd::SdError::TooLarge) {
                        dropped_responses.increment(1);
                    }
                    sd_failures.increment(1);
                    tracing::warn!(receiver = %ctx.receiver, job = %ctx.job.name, url = %sd.url, error = %e,
                        "HTTP discovery failed; the job keeps its last targets");
                }
            }
        }
        if stop.is_cancelled() {
            break;
        }
        let full = now >= next_full;
        if full {
            if let Some(d) = refresh_every(&ctx.job) {
                next_full = now + d;
            }
        }
        for (sd, last) in ctx
            .job
            .kubernetes_sd
            .iter()
            .zip(k8s_groups.iter_mut())
            .filter(|_| full)
        {
            let found = tokio::select! {
                _ = stop.cancelled() => break,
                found = kubernetes::discover(sd) => found,
            };
            match found {
                Ok(groups) => *last = groups,
                Err(e) => {
                    sd_failures.increment(1);
                    tracing::warn!(receiver = %ctx.receiver, job = %ctx.job.name, error = %e,
                        "Kubernetes discovery failed; the job keeps its last targets");
                }
            }
        }
        if stop.is_cancelled() {
            break;
        }
        let mut groups: Vec<(Option<String>, config::TargetGroup)> = ctx
            .job
            .static_groups
            .iter()
            .map(|g| (None, g.clone()))
            .collect();
        if full {
            file_groups = discovery::file_groups(&ctx.job, &ctx.receiver);
        }
        groups.extend(
            file_groups
                .iter()
                .map(|(f, g)| (Some(f.clone()), g.clone())),
        );
        groups.extend(k8s_groups.iter().flatten().map(|g| (None, g.clone())));
        groups.extend(
            http.iter()
                .flat_map(|s| s.last.iter())
                .map(|g| (None, g.clone())),
        );
        let mut targets: Vec<Target> = discovery::targets(&ctx.job, &groups);
        let limit = ctx.job.target_limit;
        if limit > 0 && targets.len() as u64 > limit {
            // As Prometheus: over `target_limit`, none of the job's targets is scraped until
            // discovery brings the count back under it.
            tracing::warn!(receiver = %ctx.receiver, job = %ctx.job.name,
                "target_limit exceeded ({} targets, limit {limit}); no target of this job is scraped",
                targets.len());
            targets.clear();
        }
        let wanted: HashMap<String, Target> =
            targets.into_iter().map(|t| (t.identity(), t)).collect();
        // Stop loops of targets that are gone; each sends its staleness markers on the way out.
        let gone: Vec<String> = loops
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(mut l) = loops.remove(&k) {
                l.stop.cancel();
                let _ = (&mut l.handle).await;
            }
        }
        for (k, t) in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = loops.entry(k) {
                tracing::debug!(receiver = %ctx.receiver, job = %ctx.job.name, target = %t.url, "scraping new target");
                let tok = stop.child_token();
                let handle = tokio::spawn(scrape::run(Arc::clone(&ctx), t, tok.clone()));
                slot.insert(TargetLoop { stop: tok, handle });
            }
        }
        let wake = http
            .iter()
            .map(|s| s.due)
            .chain(refresh_every(&ctx.job).map(|_| next_full))
            .min();
        let wait = async {
            match wake {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = wait => {}
        }
    }
    // The stop token is the parent of every loop's token, so they are already cancelled.
    for l in loops.values_mut() {
        let _ = (&mut l.handle).await;
    }
}
