//! `batch`: otelcol's batch processor keys on a merge-and-forward batcher that never owns data. Calls
//! that arrive close together are merged into one batch (split at `send_batch_max_size`), the batch
//! is sent to the next consumer, and every caller whose data it carries gets the next consumer's
//! answer. A refusal downstream is therefore a refusal to the client, which retries: the processor
//! holds nothing that a caller is not waiting for, keeps no retry loop and loses nothing in a crash
//! that was acknowledged. Batching that outlives the caller belongs to the exporter's
//! `sending_queue::batch`, after the one place that owns data (docs/delivery.md).
//!
//! When a batch is sent: at once when nothing from this batcher is in flight (an idle pipeline adds
//! no latency); otherwise it grows while the previous send runs and goes when that send returns, when
//! it reaches `send_batch_size`, or when its oldest data has waited `timeout`, whichever is first. A
//! caller thus waits for at most one downstream call and `timeout`, however slowly other clients send.
//! With `metadata_keys`, each distinct combination of the listed client metadata values has its own
//! batcher, up to `metadata_cardinality_limit` of them.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;
use vigil_core::config::duration;
use vigil_core::consumer::split::{merge, split_max};
use vigil_core::consumer::ClientMetadata;
use vigil_core::factory::{FactoryBase, ProcessorFactory};
use vigil_core::{
    lock, Component, ComponentId, ConfigError, ConsumeError, Consumer, Host, Processor,
    ProcessorObs, Settings, Signal, Stability, Tasks, Telemetry,
};

const DEFAULT_SEND_BATCH_SIZE: u32 = 8192;
const DEFAULT_CARDINALITY_LIMIT: u32 = 1000;

/// The `batch` processor's config, with otelcol's keys and defaults.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Items (spans, data points, log records) at which a batch is sent without waiting any longer.
    #[serde(default = "default_send_batch_size")]
    pub send_batch_size: u32,
    /// The largest batch sent; larger ones are split. `0` means no limit.
    #[serde(default)]
    pub send_batch_max_size: u32,
    /// The longest data waits for a send in flight before it is sent alongside. `0` sends each call
    /// at once (split at `send_batch_max_size`).
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Client metadata keys (request headers, case-insensitive) whose values separate batches.
    #[serde(default)]
    pub metadata_keys: Vec<String>,
    /// The most distinct combinations of `metadata_keys` values; data of a further one is refused.
    #[serde(default = "default_cardinality_limit")]
    pub metadata_cardinality_limit: u32,
}

fn default_send_batch_size() -> u32 {
    DEFAULT_SEND_BATCH_SIZE
}

fn default_timeout() -> Duration {
    Duration::from_millis(200)
}

fn default_cardinality_limit() -> u32 {
    DEFAULT_CARDINALITY_LIMIT
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            send_batch_size: default_send_batch_size(),
            send_batch_max_size: 0,
            timeout: default_timeout(),
            metadata_keys: Vec::new(),
            metadata_cardinality_limit: default_cardinality_limit(),
        }
    }
}

impl BatchConfig {
    /// What the types cannot check; errors carry the key path inside the section.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.send_batch_max_size > 0 && self.send_batch_max_size < self.send_batch_size {
            return Err(ConfigError::at(
                "send_batch_max_size",
                format!(
                    "send_batch_max_size ({}) must be greater or equal to send_batch_size ({})",
                    self.send_batch_max_size, self.send_batch_size
                ),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for k in &self.metadata_keys {
            if !seen.insert(k.to_ascii_lowercase()) {
                return Err(ConfigError::at(
                    "metadata_keys",
                    format!("duplicate entry in metadata_keys: {k:?} (keys are case-insensitive)"),
                ));
            }
        }
        if !self.metadata_keys.is_empty() && self.metadata_cardinality_limit == 0 {
            return Err(ConfigError::at(
                "metadata_cardinality_limit",
                "must be at least 1 when metadata_keys is set: every batcher is held in memory",
            ));
        }
        Ok(())
    }
}

struct Factory;

/// The `batch` processor factory.
pub fn factory() -> Arc<dyn vigil_core::factory::DynProcessorFactory> {
    vigil_core::factory::processor(Factory)
}

impl FactoryBase for Factory {
    type Config = BatchConfig;

    fn type_name(&self) -> &'static str {
        "batch"
    }

    fn validate(&self, _id: &ComponentId, cfg: &BatchConfig) -> Result<(), ConfigError> {
        cfg.check()
    }
}

impl ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Beta),
            (Signal::Metrics, Stability::Beta),
            (Signal::Logs, Stability::Beta),
            (Signal::Profiles, Stability::Development),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: BatchConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        Ok(Arc::new(Batch::new(set, cfg, signal, next)))
    }
}

/// What triggered a send, for otelcol's trigger counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// Nothing was in flight: the data went at once.
    Idle,
    /// The previous send returned while this batch waited for it.
    Follow,
    Size,
    Timeout,
}

/// A caller waiting for the batch its data went into.
struct Waiter {
    tx: oneshot::Sender<Result<(), ConsumeError>>,
    items: usize,
}

/// Data merged but not yet sent, with the callers it belongs to.
struct Pending {
    data: Telemetry,
    items: usize,
    waiters: Vec<Waiter>,
    deadline: Instant,
}

struct ShardState {
    pending: Option<Pending>,
    /// Which pending batch this is, so a caller's deadline fires only for the batch it is in.
    generation: u64,
    in_flight: usize,
}

/// One batcher: all data with the same metadata values.
struct Shard {
    state: Mutex<ShardState>,
    /// The `metadata_keys` values this batcher holds data of, passed on with its sends (as
    /// otelcol, only those keys: the rest of the client metadata, and the principal, stop here).
    /// `None` for the batcher without `metadata_keys`, whose sends carry no client metadata.
    meta: Option<ClientMetadata>,
}

impl Shard {
    fn new(meta: Option<ClientMetadata>) -> Self {
        Shard {
            state: Mutex::new(ShardState {
                pending: None,
                generation: 0,
                in_flight: 0,
            }),
            meta,
        }
    }

    fn lock(&self) -> MutexGuard<'_, ShardState> {
        lock(&self.state)
    }

    /// Takes the pending batch to send it; the caller must spawn the send.
    fn take(st: &mut ShardState) -> Option<Pending> {
        let p = st.pending.take()?;
        st.in_flight += 1;
        Some(p)
    }
}

struct Inner {
    id: String,
    cfg: BatchConfig,
    signal: Signal,
    next: Arc<dyn Consumer>,
    /// The batcher of calls without metadata (or when `metadata_keys` is empty).
    default_shard: Arc<Shard>,
    /// Batchers by metadata values, bounded by `metadata_cardinality_limit`.
    shards: Mutex<HashMap<Vec<Vec<String>>, Arc<Shard>>>,
    closing: std::sync::atomic::AtomicBool,
    obs: ProcessorObs,
    /// The sends in flight, so shutdown waits for them until the deadline and no longer.
    tasks: Tasks,
    send_size: metrics::Histogram,
    size_trigger: metrics::Counter,
    timeout_trigger: metrics::Counter,
    cardinality: metrics::Gauge,
}

/// A running `batch` processor for one pipeline.
pub struct Batch {
    inner: Arc<Inner>,
}

impl Batch {
    /// A batch processor feeding `next`.
    pub fn new(set: Settings, cfg: BatchConfig, signal: Signal, next: Arc<dyn Consumer>) -> Self {
        let label = set.id.to_string();
        Batch {
            inner: Arc::new(Inner {
                send_size: metrics::histogram!(
                    "otelcol_processor_batch_batch_send_size",
                    "processor" => label.clone()
                ),
                size_trigger: metrics::counter!(
                    "otelcol_processor_batch_batch_size_trigger_send",
                    "processor" => label.clone()
                ),
                timeout_trigger: metrics::counter!(
                    "otelcol_processor_batch_timeout_trigger_send",
                    "processor" => label.clone()
                ),
                cardinality: metrics::gauge!(
                    "otelcol_processor_batch_metadata_cardinality",
                    "processor" => label.clone()
                ),
                id: label,
                cfg,
                signal,
                next,
                default_shard: Arc::new(Shard::new(None)),
                shards: Mutex::new(HashMap::new()),
                closing: std::sync::atomic::AtomicBool::new(false),
                obs: set.processor_obs(signal),
                tasks: set.tasks,
            }),
        }
    }
}

impl Inner {
    /// The batcher for the current call's client metadata.
    fn shard(&self, items: usize) -> Result<Arc<Shard>, ConsumeError> {
        if self.cfg.metadata_keys.is_empty() {
            return Ok(Arc::clone(&self.default_shard));
        }
        let meta = ClientMetadata::current();
        let key: Vec<Vec<String>> = self
            .cfg
            .metadata_keys
            .iter()
            .map(|k| meta.as_ref().map(|m| m.get(k).to_vec()).unwrap_or_default())
            .collect();
        let mut shards = lock(&self.shards);
        if let Some(s) = shards.get(&key) {
            return Ok(Arc::clone(s));
        }
        if shards.len() >= self.cfg.metadata_cardinality_limit as usize {
            self.obs.refused(items);
            return Err(ConsumeError::permanent(
                format!(
                    "processor {}: too many batcher metadata-value combinations \
                     (metadata_cardinality_limit {})",
                    self.id, self.cfg.metadata_cardinality_limit
                ),
                items,
            ));
        }
        let pairs = self
            .cfg
            .metadata_keys
            .iter()
            .zip(&key)
            .flat_map(|(k, vs)| vs.iter().map(move |v| (k.as_str(), v.clone())));
        let s = Arc::new(Shard::new(Some(ClientMetadata::from_pairs(pairs))));
        shards.insert(key, Arc::clone(&s));
        self.cardinality.set(shards.len() as f64);
        Ok(s)
    }

    async fn accept(self: &Arc<Self>, data: Telemetry) -> Result<(), ConsumeError> {
        let n = data.item_count();
        if n == 0 {
            return Ok(());
        }
        self.obs.incoming(n);
        if self.closing.load(std::sync::atomic::Ordering::Acquire) {
            self.obs.refused(n);
            return Err(ConsumeError::retryable(format!(
                "processor {} is shutting down",
                self.id
            )));
        }
        if data.signal() != self.signal {
            self.obs.refused(n);
            return Err(ConsumeError::permanent(
                format!(
                    "processor {} of a {} pipeline was given {}",
                    self.id,
                    self.signal,
                    data.signal()
                ),
                n,
            ));
        }
        let shard = self.shard(n)?;
        let (tx, mut rx) = oneshot::channel();
        let (generation, deadline) = {
            let mut st = shard.lock();
            let waiter = Waiter { tx, items: n };
            match &mut st.pending {
                Some(p) => {
                    // Same signal, checked above: the merge cannot fail.
                    let _ = merge(&mut p.data, data);
                    p.items += n;
                    p.waiters.push(waiter);
                }
                None => {
                    st.generation += 1;
                    st.pending = Some(Pending {
                        data,
                        items: n,
                        waiters: vec![waiter],
                        deadline: Instant::now() + self.cfg.timeout,
                    });
                }
            }
            let (items, deadline) = match &st.pending {
                Some(p) => (p.items, p.deadline),
                None => (0, Instant::now()),
            };
            let trigger = if st.in_flight == 0 || self.cfg.timeout.is_zero() {
                Some(Trigger::Idle)
            } else if items >= self.cfg.send_batch_size as usize {
                Some(Trigger::Size)
            } else {
                None
            };
            if let Some(t) = trigger {
                if let Some(p) = Shard::take(&mut st) {
                    self.spawn_send(&shard, p, t);
                }
            }
            (st.generation, deadline)
        };
        // The send runs on its own task, so a caller that goes away (a client that disconnects)
        // neither cuts a send that carries other callers' data nor strands its own.
        let answer = tokio::select! {
            r = &mut rx => r,
            _ = tokio::time::sleep_until(deadline) => {
                {
                    let mut st = shard.lock();
                    if st.generation == generation {
                        if let Some(p) = Shard::take(&mut st) {
                            self.spawn_send(&shard, p, Trigger::Timeout);
                        }
                    }
                }
                rx.await
            }
        };
        answer.unwrap_or_else(|_| {
            Err(ConsumeError::retryable(format!(
                "processor {}: the send of this batch was cut off",
                self.id
            )))
        })
    }

    fn spawn_send(self: &Arc<Self>, shard: &Arc<Shard>, p: Pending, trigger: Trigger) {
        let (me, shard) = (Arc::clone(self), Arc::clone(shard));
        self.tasks.spawn(async move {
            match shard.meta.clone() {
                Some(meta) => meta.scope(me.send_loop(shard, p, trigger)).await,
                None => me.send_loop(shard, p, trigger).await,
            }
        });
    }

    /// Sends a batch, answers its callers, and then sends whatever gathered meanwhile.
    async fn send_loop(&self, shard: Arc<Shard>, mut p: Pending, mut trigger: Trigger) {
        loop {
            match trigger {
                Trigger::Size => self.size_trigger.increment(1),
                Trigger::Timeout => self.timeout_trigger.increment(1),
                Trigger::Idle | Trigger::Follow => {}
            }
            let result = self.send(p.data, p.items).await;
            for w in p.waiters {
                let r = match &result {
                    Ok(()) => Ok(()),
                    // Each caller hears about its own items: it resends them, not the batch.
                    Err(ConsumeError::Permanent { reason, .. }) => Err(ConsumeError::Permanent {
                        reason: reason.clone(),
                        rejected: w.items,
                    }),
                    Err(e) => Err(e.clone()),
                };
                let _ = w.tx.send(r);
            }
            let mut st = shard.lock();
            st.in_flight -= 1;
            if st.in_flight > 0 {
                // Another send is running; it takes what gathered when it returns.
                return;
            }
            match Shard::take(&mut st) {
                Some(next) => {
                    p = next;
                    trigger = Trigger::Follow;
                }
                None => return,
            }
        }
    }

    /// Sends one merged batch, split at `send_batch_max_size`. The first refusal ends it: every
    /// caller in the batch is told, and resends, so the parts after it would only be duplicates.
    async fn send(&self, data: Telemetry, items: usize) -> Result<(), ConsumeError> {
        let max = self.cfg.send_batch_max_size as usize;
        let parts = if max > 0 && items > max {
            split_max(data, max)
        } else {
            vec![data]
        };
        for part in parts {
            let n = part.item_count();
            self.send_size.record(n as f64);
            self.obs.outgoing(n);
            self.next.consume(part).await?;
        }
        Ok(())
    }

    /// Whether no batch is pending or in flight in any batcher.
    fn idle(&self) -> bool {
        let quiet = |s: &Shard| {
            let st = s.lock();
            st.pending.is_none() && st.in_flight == 0
        };
        let shards = lock(&self.shards);
        quiet(&self.default_shard) && shards.values().all(|s| quiet(s))
    }
}

#[async_trait]
impl Component for Batch {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        Ok(())
    }

    /// Refuses new data and returns once every batch in flight has its answer, or at `deadline`:
    /// a send still running then is stopped and its callers are told to retry. Nothing is held
    /// without a caller waiting for it, so there is no buffer to drain.
    async fn shutdown_by(&self, deadline: std::time::Instant) -> anyhow::Result<()> {
        let inner = &self.inner;
        inner
            .closing
            .store(true, std::sync::atomic::Ordering::Release);
        // A caller that was let in just before `closing` may still start a send, so wait for the
        // batchers to go quiet before the task set stops what is left.
        while !inner.idle() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        inner.tasks.stop(deadline).await;
        Ok(())
    }
}

#[async_trait]
impl Consumer for Batch {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        self.inner.accept(data).await
    }
}

#[cfg(test)]
mod tests;
