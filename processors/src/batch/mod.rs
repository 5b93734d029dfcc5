//! `batch`: otelcol's batch processor. It takes ownership of what it is given, merges small batches,
//! splits large ones by item count, and sends from its own task when a batch is full or `timeout` has
//! passed, so it is one of the two places that cut the call chain.
//!
//! Data held here lives in memory only and is lost if the process crashes (as in otelcol,
//! collector#12711); a clean `shutdown` drains everything first. The buffer is bounded: when it is full,
//! or the next consumer is pushing back, new data is refused as retryable rather than dropped. A batch
//! that the next consumer refuses is counted in `vigil_processor_batch_dropped_*` and logged.
//!
//! Batches are sent by value, without a copy. The first retryable refusal from downstream therefore
//! costs that batch (counted and logged); after it the processor clones each batch before sending for
//! [`CAREFUL_WINDOW`], so a refused batch can be retried while new data is pushed back to the clients.

mod split;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use vigil_core::config::{decode, duration};
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Host, Processor,
    ProcessorFactory, Refused, Signal, Telemetry,
};

/// How many batches' worth of items may wait in the buffer before new data is refused.
const BUFFERED_BATCHES: usize = 4;
/// The batch size the buffer bound is measured in when neither size setting gives one.
const DEFAULT_SEND_BATCH_SIZE: u32 = 8192;
/// How long after a retryable refusal from downstream batches are cloned so that they can be retried.
pub const CAREFUL_WINDOW: Duration = Duration::from_secs(60);
/// Backoff between retries of a refused batch, unless downstream names its own `retry_after`.
const RETRY_INITIAL: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// During shutdown a refused batch is retried this many times before it is counted as dropped, so a
/// dead backend cannot hang the stop.
const SHUTDOWN_ATTEMPTS: u32 = 5;
/// What the processor tells clients to wait before retrying refused data.
const REFUSED_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The `batch` processor's config, with otelcol's keys and defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Items (spans, data points, log records) that trigger a send. `0` sends on every call.
    #[serde(default = "default_send_batch_size")]
    pub send_batch_size: u32,
    /// The largest batch sent; larger ones are split. `0` means no limit.
    #[serde(default)]
    pub send_batch_max_size: u32,
    /// How long data may wait for a batch to fill. `0` sends at once.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
}

fn default_send_batch_size() -> u32 {
    DEFAULT_SEND_BATCH_SIZE
}

fn default_timeout() -> Duration {
    Duration::from_millis(200)
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            send_batch_size: default_send_batch_size(),
            send_batch_max_size: 0,
            timeout: default_timeout(),
        }
    }
}

impl BatchConfig {
    /// Decodes and checks a `batch` section.
    pub fn parse(id: &ComponentId, value: &Value) -> Result<BatchConfig, ConfigError> {
        let cfg: BatchConfig = decode(ComponentKind::Processor, id, value)?;
        if cfg.send_batch_max_size > 0 && cfg.send_batch_max_size < cfg.send_batch_size {
            return Err(ConfigError::component(
                ComponentKind::Processor,
                id,
                "send_batch_max_size",
                format!(
                    "send_batch_max_size ({}) must be greater or equal to send_batch_size ({})",
                    cfg.send_batch_max_size, cfg.send_batch_size
                ),
            ));
        }
        Ok(cfg)
    }

    /// The most items the buffer holds (pending plus in flight) before it refuses new data.
    fn buffer_limit(&self) -> usize {
        let unit =
            self.send_batch_size
                .max(self.send_batch_max_size)
                .max(if self.send_batch_size == 0 {
                    DEFAULT_SEND_BATCH_SIZE
                } else {
                    0
                });
        BUFFERED_BATCHES * unit as usize
    }
}

struct Factory;

/// The `batch` processor factory.
pub fn factory() -> Arc<dyn ProcessorFactory> {
    Arc::new(Factory)
}

impl ProcessorFactory for Factory {
    fn type_name(&self) -> &'static str {
        "batch"
    }

    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn validate(&self, id: &ComponentId, config: &Value) -> Result<(), ConfigError> {
        BatchConfig::parse(id, config).map(|_| ())
    }

    fn create(
        &self,
        id: &ComponentId,
        config: &Value,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let cfg = BatchConfig::parse(id, config)?;
        Ok(Arc::new(Batch::new(id, cfg, signal, next)))
    }
}

/// What triggered a send, for the trigger counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Size,
    Timeout,
    Shutdown,
}

/// The buffer shared by `consume` (which fills it) and the send task (which empties it).
struct State {
    pending: Telemetry,
    pending_items: usize,
    /// Items taken out of `pending` that the send task still holds for a retry.
    in_flight_items: usize,
    /// When the oldest pending data must be sent, whatever the batch size.
    deadline: Option<Instant>,
    /// Set by `shutdown`: refuse new data, send what is left, and stop.
    closing: bool,
    /// Whether the last call was refused for lack of room, so that the change is logged once.
    refusing: bool,
}

struct Inner {
    id: String,
    cfg: BatchConfig,
    signal: Signal,
    next: Arc<dyn Consumer>,
    limit: usize,
    state: Mutex<State>,
    wake: Notify,
}

/// A running `batch` processor for one pipeline.
pub struct Batch {
    inner: Arc<Inner>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Batch {
    /// A batch processor feeding `next`; its send task starts with `start`.
    pub fn new(
        id: &ComponentId,
        cfg: BatchConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Self {
        let limit = cfg.buffer_limit();
        Batch {
            inner: Arc::new(Inner {
                id: id.to_string(),
                cfg,
                signal,
                next,
                limit,
                state: Mutex::new(State {
                    pending: Telemetry::empty(signal),
                    pending_items: 0,
                    in_flight_items: 0,
                    deadline: None,
                    closing: false,
                    refusing: false,
                }),
                wake: Notify::new(),
            }),
            task: tokio::sync::Mutex::new(None),
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic in another holder: every update is a few plain
        // assignments, so a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refuse(&self, n: usize, reason: String) -> ConsumeError {
        metrics::counter!(
            format!("otelcol_processor_refused_{}", self.signal.item_name()),
            "processor" => self.id.clone()
        )
        .increment(n as u64);
        ConsumeError::Retryable {
            reason,
            retry_after: Some(REFUSED_RETRY_AFTER),
        }
    }

    fn accept(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let n = data.item_count();
        if n == 0 {
            return Ok(());
        }
        let mut st = self.lock();
        if st.closing {
            drop(st);
            return Err(self.refuse(n, format!("processor {} is shutting down", self.id)));
        }
        let held = st.pending_items + st.in_flight_items;
        // An empty buffer takes any request, however large, or it could never be accepted.
        if held > 0 && held + n > self.limit {
            let first = !st.refusing;
            st.refusing = true;
            drop(st);
            if first {
                tracing::warn!(
                    processor = %self.id,
                    buffered = held,
                    limit = self.limit,
                    "batch buffer is full; refusing new data as retryable until it drains"
                );
            }
            return Err(self.refuse(
                n,
                format!(
                    "processor {}: batch buffer is full ({held} of {} items)",
                    self.id, self.limit
                ),
            ));
        }
        if st.refusing {
            st.refusing = false;
            tracing::info!(processor = %self.id, "batch buffer has room again; accepting data");
        }
        merge(&mut st.pending, data).map_err(|got| {
            ConsumeError::permanent(
                format!(
                    "processor {} of a {} pipeline was given {got}",
                    self.id, self.signal
                ),
                n,
            )
        })?;
        let was_empty = st.pending_items == 0;
        st.pending_items += n;
        if was_empty {
            st.deadline = Some(Instant::now() + self.cfg.timeout);
        }
        let wake = was_empty || st.pending_items >= self.cfg.send_batch_size as usize;
        drop(st);
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// The next batch to send and why, or `None` with the time to wait until (if any).
    fn next_batch(&self) -> Result<(Telemetry, Trigger), Option<Instant>> {
        let mut st = self.lock();
        if st.pending_items == 0 {
            st.deadline = None;
            return Err(None);
        }
        let trigger = if st.pending_items >= self.cfg.send_batch_size as usize {
            Trigger::Size
        } else if st.closing {
            Trigger::Shutdown
        } else if st.deadline.is_some_and(|d| d <= Instant::now()) {
            Trigger::Timeout
        } else {
            return Err(st.deadline);
        };
        let max = self.cfg.send_batch_max_size as usize;
        let batch = if max == 0 || st.pending_items <= max {
            std::mem::replace(&mut st.pending, Telemetry::empty(self.signal))
        } else {
            take_front(&mut st.pending, max)
        };
        let n = batch.item_count();
        st.pending_items -= n;
        st.in_flight_items += n;
        // As in otelcol, the timer restarts after every send: what is left waits at most one more
        // timeout.
        st.deadline = (st.pending_items > 0).then(|| Instant::now() + self.cfg.timeout);
        Ok((batch, trigger))
    }

    fn is_closing(&self) -> bool {
        self.lock().closing
    }

    fn count_dropped(&self, n: usize, err: &ConsumeError) {
        metrics::counter!(
            format!("vigil_processor_batch_dropped_{}", self.signal.item_name()),
            "processor" => self.id.clone()
        )
        .increment(n as u64);
        tracing::error!(
            processor = %self.id,
            items = n,
            item_kind = self.signal.item_name(),
            error = %err,
            "the next consumer refused a batch; its data is dropped"
        );
    }

    /// Sends batches until shutdown has drained the buffer.
    async fn run(self: Arc<Self>) {
        let label = self.id.clone();
        let send_size = metrics::histogram!(
            "otelcol_processor_batch_batch_send_size",
            "processor" => label.clone()
        );
        let size_trigger = metrics::counter!(
            "otelcol_processor_batch_batch_size_trigger_send",
            "processor" => label.clone()
        );
        let timeout_trigger = metrics::counter!(
            "otelcol_processor_batch_timeout_trigger_send",
            "processor" => label
        );
        let mut careful_until: Option<Instant> = None;
        loop {
            let (batch, trigger) = match self.next_batch() {
                Ok(b) => b,
                Err(wait) => {
                    if self.is_closing() && self.lock().pending_items == 0 {
                        return;
                    }
                    match wait {
                        Some(deadline) => {
                            tokio::select! {
                                _ = self.wake.notified() => {}
                                _ = tokio::time::sleep_until(deadline) => {}
                            }
                        }
                        None => self.wake.notified().await,
                    }
                    continue;
                }
            };
            let n = batch.item_count();
            send_size.record(n as f64);
            match trigger {
                Trigger::Size => size_trigger.increment(1),
                Trigger::Timeout => timeout_trigger.increment(1),
                Trigger::Shutdown => {}
            }
            let careful = careful_until.is_some_and(|t| Instant::now() < t);
            if let Some(refused_at) = self.deliver(batch, n, careful).await {
                careful_until = Some(refused_at + CAREFUL_WINDOW);
            }
            self.lock().in_flight_items -= n;
        }
    }

    /// Sends one batch. A refusal that hands the data back (a full sending queue does) is held and
    /// retried with backoff; in careful mode a copy is kept so that any retryable refusal is retried.
    /// Returns when the last retryable refusal happened, if any.
    async fn deliver(&self, batch: Telemetry, n: usize, careful: bool) -> Option<Instant> {
        let mut batch = batch;
        let mut refused_at = None;
        let mut backoff = RETRY_INITIAL;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let copy = careful.then(|| batch.clone());
            let (err, back) = match self.next.consume_or_return(batch).await {
                Ok(()) => return refused_at,
                Err(Refused { error, data }) => (error, data.or(copy)),
            };
            let retry_after = match &err {
                ConsumeError::Retryable { retry_after, .. } => *retry_after,
                ConsumeError::Permanent { .. } => {
                    self.count_dropped(n, &err);
                    return refused_at;
                }
            };
            refused_at = Some(Instant::now());
            let Some(held) = back else {
                self.count_dropped(n, &err);
                return refused_at;
            };
            batch = held;
            if self.is_closing() && attempts >= SHUTDOWN_ATTEMPTS {
                self.count_dropped(n, &err);
                return refused_at;
            }
            if attempts == 1 {
                tracing::warn!(
                    processor = %self.id,
                    items = n,
                    error = %err,
                    "the next consumer refused a batch; holding it and retrying"
                );
            }
            tokio::time::sleep(retry_after.unwrap_or(backoff).min(RETRY_MAX)).await;
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }
}

/// Appends `data` to `pending`. Returns the signal of `data` if it does not match.
fn merge(pending: &mut Telemetry, data: Telemetry) -> Result<(), Signal> {
    match (pending, data) {
        (Telemetry::Traces(p), Telemetry::Traces(mut d)) => append(p, &mut d),
        (Telemetry::Metrics(p), Telemetry::Metrics(mut d)) => append(p, &mut d),
        (Telemetry::Logs(p), Telemetry::Logs(mut d)) => append(p, &mut d),
        (_, d) => return Err(d.signal()),
    }
    Ok(())
}

fn append<T>(pending: &mut Vec<T>, data: &mut Vec<T>) {
    if pending.is_empty() {
        // Adopt the incoming vector instead of moving its elements one by one.
        std::mem::swap(pending, data);
    } else {
        pending.append(data);
    }
}

fn take_front(data: &mut Telemetry, n: usize) -> Telemetry {
    match data {
        Telemetry::Traces(v) => Telemetry::Traces(split::take_front(v, n)),
        Telemetry::Metrics(v) => Telemetry::Metrics(split::take_front(v, n)),
        Telemetry::Logs(v) => Telemetry::Logs(split::take_front(v, n)),
    }
}

#[async_trait]
impl Component for Batch {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let mut task = self.task.lock().await;
        if task.is_none() {
            *task = Some(tokio::spawn(Arc::clone(&self.inner).run()));
        }
        Ok(())
    }

    /// Refuses new data, sends everything buffered, and returns when the buffer is empty.
    async fn shutdown(&self) -> anyhow::Result<()> {
        self.inner.lock().closing = true;
        self.inner.wake.notify_one();
        let task = self.task.lock().await.take();
        match task {
            Some(handle) => handle
                .await
                .map_err(|e| anyhow::anyhow!("processor {}: send task failed: {e}", self.inner.id)),
            // Never started: drain on this task instead.
            None => {
                Arc::clone(&self.inner).run().await;
                Ok(())
            }
        }
    }
}

#[async_trait]
impl Consumer for Batch {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        self.inner.accept(data)
    }
}

#[cfg(test)]
mod tests;
