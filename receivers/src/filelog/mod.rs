//! `filelog`: tails log files as otelcol's `filelog` receiver does, with the same keys and defaults.
//! Files are known by a fingerprint of their first bytes, so rotation by rename, `copytruncate` and
//! delete-and-recreate are each read exactly once; with `storage`, offsets are checkpointed after the
//! pipeline accepted the lines (at-least-once across restarts and `kill -9`).
//!
//! Layout: `config` (keys, defaults, checks), `tracker` (discovery, identity, reading, checkpoints);
//! the operators are stanza's, in [`crate::stanza`], shared with `syslog`. Reading runs on a
//! thread of its own because file and storage I/O block; it hands batches to the async pipeline.

pub mod config;
pub mod tracker;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use tracker::Tracker;
use vigil_core::otlp::logs::v1::ResourceLogs;
use vigil_core::task::Tasks;
use vigil_core::{
    Component, ComponentId, ConfigError, ConsumeError, Consumer, Host, NextConsumers, Receiver,
    ReceiverObs, Signal, Telemetry,
};

struct Factory;

/// The `filelog` receiver factory, for the registry.
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = config::FilelogConfig;

    fn type_name(&self) -> &'static str {
        "filelog"
    }

    fn validate(&self, id: &ComponentId, cfg: &config::FilelogConfig) -> Result<(), ConfigError> {
        config::check(id, cfg.clone()).map(|_| ())
    }
}

impl vigil_core::factory::ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[(Signal::Logs, vigil_core::Stability::Beta)]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: config::FilelogConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        let cfg = config::check(&set.id, cfg)?;
        Ok(Arc::new(FilelogReceiver {
            obs: set.receiver_obs("file"),
            id: set.id,
            cfg: Arc::new(cfg),
            next,
            tasks: set.tasks,
        }))
    }
}

/// Hands a batch to the pipeline. With `retry_on_failure` enabled, a retryable refusal is met by
/// waiting (the pipeline's retry-after if it gave one, else `initial_interval` growing by half each
/// time up to `max_interval`) and sending the same records again, as otelcol's consumerretry does,
/// until `max_elapsed_time` has passed or the receiver stops. What is still refused then goes back
/// to the tracker, which keeps its checkpoint and reads the records again at the next poll.
pub(crate) async fn send_with_retry(
    next: &dyn Consumer,
    batch: Vec<ResourceLogs>,
    retry: &config::RetryOnFailure,
    stop: &CancellationToken,
) -> Result<(), ConsumeError> {
    if !retry.enabled {
        return next.consume(Telemetry::Logs(batch)).await;
    }
    let started = Instant::now();
    let mut backoff = retry.initial_interval;
    loop {
        let r = next.consume(Telemetry::Logs(batch.clone())).await;
        let Err(ConsumeError::Retryable { retry_after, .. }) = &r else {
            return r;
        };
        let wait = retry_after.unwrap_or(backoff).min(retry.max_interval);
        let give_up =
            !retry.max_elapsed_time.is_zero() && started.elapsed() + wait > retry.max_elapsed_time;
        if give_up || stop.is_cancelled() {
            return r;
        }
        tokio::select! {
            _ = stop.cancelled() => return r,
            _ = tokio::time::sleep(wait) => {}
        }
        backoff = backoff.mul_f64(1.5).min(retry.max_interval);
    }
}

/// The `filelog` receiver.
pub struct FilelogReceiver {
    id: ComponentId,
    cfg: Arc<config::Checked>,
    next: NextConsumers,
    obs: ReceiverObs,
    tasks: Tasks,
}

#[async_trait]
impl Component for FilelogReceiver {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        let storage = match &self.cfg.storage {
            Some(sid) => Some(
                host.storage(sid, &self.id, "")
                    .map_err(|e| anyhow::anyhow!("receivers::{}::storage: {e}", self.id))?,
            ),
            None => None,
        };
        let Some(next) = self.next.get(Signal::Logs).cloned() else {
            anyhow::bail!(
                "receivers::{}: no logs pipeline uses this receiver",
                self.id
            );
        };
        let cfg = Arc::clone(&self.cfg);
        let id = self.id.to_string();
        let obs = self.obs.clone();
        let stop = self.tasks.stopping();
        let handle = tokio::runtime::Handle::current();
        // File and storage I/O block, so the reader runs on a blocking thread; the task around it is
        // what `Tasks::stop` waits for. The reader checks `stop` between polls and while it waits.
        let reader = move || {
            let mut tracker = Tracker::new(Arc::clone(&cfg), &id, storage, obs);
            let retry = cfg.raw.retry_on_failure.clone();
            let mut sink =
                |batch| handle.block_on(send_with_retry(next.as_ref(), batch, &retry, &stop));
            while !stop.is_cancelled() {
                tracker.poll(&mut sink);
                handle.block_on(async {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(cfg.raw.poll_interval) => {}
                    }
                });
            }
        };
        self.tasks.spawn(async move {
            let _ = tokio::task::spawn_blocking(reader).await;
        });
        Ok(())
    }

    /// The reader finishes the batch it is sending, then stops, within the service's deadline.
    async fn shutdown_by(&self, deadline: Instant) -> anyhow::Result<()> {
        self.tasks.stop(deadline).await;
        Ok(())
    }
}
