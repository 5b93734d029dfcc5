//! `filelog`: tails log files as otelcol's `filelog` receiver does, with the same keys and defaults.
//! Files are known by a fingerprint of their first bytes, so rotation by rename, `copytruncate` and
//! delete-and-recreate are each read exactly once; with `storage`, offsets are checkpointed after the
//! pipeline accepted the lines (at-least-once across restarts and `kill -9`).
//!
//! Layout: `config` (keys, defaults, checks), `tracker` (discovery, identity, reading, checkpoints),
//! `entry` and `operators` (the stanza operator subset, shared with `syslog`). Reading runs on a
//! thread of its own because file and storage I/O block; it hands batches to the async pipeline.

pub mod config;
pub mod entry;
pub mod operators;
pub mod tracker;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tracker::Tracker;
use vigil_core::{
    Component, ComponentId, ConfigError, Host, NextConsumers, Receiver, Signal, Telemetry,
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
        let id = &set.id;
        let cfg = config::check(id, cfg)?;
        Ok(Arc::new(FilelogReceiver {
            id: id.clone(),
            cfg: Arc::new(cfg),
            next,
            running: Mutex::new(None),
        }))
    }
}

/// The `filelog` receiver.
pub struct FilelogReceiver {
    id: ComponentId,
    cfg: Arc<config::Checked>,
    next: NextConsumers,
    running: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
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
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let cfg = Arc::clone(&self.cfg);
        let id = self.id.to_string();
        let handle = tokio::runtime::Handle::current();
        let thread = std::thread::Builder::new()
            .name(format!("filelog-{}", self.id))
            .spawn(move || {
                let mut tracker = Tracker::new(Arc::clone(&cfg), &id, storage);
                let mut sink = |batch| handle.block_on(next.consume(Telemetry::Logs(batch)));
                loop {
                    tracker.poll(&mut sink);
                    match stop_rx.recv_timeout(cfg.raw.poll_interval) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        _ => break,
                    }
                }
            })?;
        if let Ok(mut r) = self.running.lock() {
            *r = Some((stop_tx, thread));
        }
        Ok(())
    }

    async fn shutdown(&self) -> anyhow::Result<()> {
        let running = self.running.lock().ok().and_then(|mut r| r.take());
        if let Some((stop, thread)) = running {
            let _ = stop.send(());
            // The reader finishes the batch it is sending, then stops; join off the async threads.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        Ok(())
    }
}
