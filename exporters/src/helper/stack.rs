//! `SendStack`: the exporter every network exporter becomes once its transport is written. It takes
//! a `Sender` (encode a batch once, send it once) and wraps it in otelcol's exporterhelper layers:
//! per-attempt `timeout`, `retry_on_failure`, `sending_queue` (with its optional `batch`), the
//! `otelcol_exporter_*` metrics (the component's `ExporterObs`), and a shutdown that drains the
//! queue until the service's shutdown deadline. Queue consumers run on the component's `Tasks`.

use super::classify::{Delivered, SendError};
use super::counters::QueueGauges;
use super::meta;
use super::persistent::PersistentQueue;
use super::queue::{
    signal_from_tag, signal_tag, BatchSettings, MemoryQueue, Persist, Popped, PushError, Queue,
    QueueConfig, Sizer, MAX_OPEN_PARTITIONS,
};
use super::retry::{Clock, Retry, RetryConfig, TokioClock};
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use vigil_core::codec::encode::{decode_proto_request, proto_request};
use vigil_core::consumer::split::{merge, split_max};
use vigil_core::{
    lock, ClientMetadata, Component, ComponentId, ComponentKind, ConfigError, ConsumeError,
    Consumer, ExporterObs, Host, Settings, Signal, Tasks, Telemetry,
};

/// One transport: how a batch becomes a request, and how one request is sent once.
#[async_trait]
pub trait Sender: Send + Sync + 'static {
    /// A request ready for the wire (encoded, compressed), reused by every retry of the same batch,
    /// and storable so that a durable queue can hold it across restarts.
    type Request: Persist + Send + Sync + 'static;

    /// Encodes a batch. An error here is the data's fault and is not retried.
    fn prepare(&self, data: &Telemetry) -> Result<Self::Request, SendError>;

    /// Makes one attempt. The stack applies the timeout and the retries around it.
    async fn send(&self, request: &Self::Request) -> Result<Delivered, SendError>;

    /// Called once from the exporter's `start`, inside the runtime: the place to open connections.
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The exporterhelper keys every network exporter carries at its top level.
#[derive(Debug, Clone, PartialEq)]
pub struct SendSettings {
    /// Per attempt; zero means no limit.
    pub timeout: Duration,
    pub retry_on_failure: RetryConfig,
    pub sending_queue: QueueConfig,
}

impl SendSettings {
    /// Checks `retry_on_failure` and `sending_queue`, naming the key in the error.
    pub fn validate(&self, id: &ComponentId) -> Result<(), ConfigError> {
        let err = |section: &str, (key, msg): (&str, String)| {
            ConfigError::component(
                ComponentKind::Exporter,
                id,
                format!("{section}::{key}"),
                msg,
            )
        };
        self.retry_on_failure
            .validate()
            .map_err(|e| err("retry_on_failure", e))?;
        self.sending_queue
            .validate()
            .map_err(|e| err("sending_queue", e))
    }
}

/// A prepared request with what the metrics need to know about it. This is what a queue holds.
#[derive(Debug)]
pub struct Job<R> {
    pub signal: Signal,
    pub items: usize,
    pub request: R,
    /// The client metadata of the call that queued it, restored around its send so that a
    /// `headers_setter`'s `from_context` finds it (otelcol's in-memory queue keeps the context
    /// too). A durable queue stores it in the record (version 3).
    pub meta: Option<Arc<ClientMetadata>>,
}

/// Version 1 record: version, signal tag, item count (u64, big-endian), then the request. Still
/// written when there is no client metadata, so such records read the same in older versions.
const JOB_RECORD_V1: u8 = 1;
/// Version 3 record: version 1 with the client metadata (`helper::meta`) before the request.
const JOB_RECORD_V3: u8 = 3;

impl<R: Persist> Persist for Job<R> {
    fn to_bytes(&self) -> Vec<u8> {
        let request = self.request.to_bytes();
        let mut out = Vec::with_capacity(10 + request.len());
        out.push(if self.meta.is_some() {
            JOB_RECORD_V3
        } else {
            JOB_RECORD_V1
        });
        out.push(signal_tag(self.signal));
        out.extend_from_slice(&(self.items as u64).to_be_bytes());
        if let Some(meta) = &self.meta {
            meta::encode(meta, &mut out);
        }
        out.extend_from_slice(&request);
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&[version, tag], rest) = bytes.split_first_chunk::<2>()?;
        let (items, rest) = rest.split_first_chunk::<8>()?;
        let (meta, request) = match version {
            JOB_RECORD_V1 => (None, rest),
            JOB_RECORD_V3 => {
                let (m, request) = meta::decode(rest)?;
                (Some(Arc::new(m)), request)
            }
            _ => return None,
        };
        Some(Job {
            signal: signal_from_tag(tag)?,
            items: usize::try_from(u64::from_be_bytes(*items)).ok()?,
            request: R::from_bytes(request)?,
            meta,
        })
    }
}

/// What a sending queue holds: a request prepared for the wire, or, with `sending_queue::batch`, the
/// data itself, so that queued data can be merged before it is prepared.
#[derive(Debug)]
pub enum Queued<R> {
    Ready(Job<R>),
    /// The data, with the client metadata its batch may carry (`helper::meta::partition`).
    Raw(Telemetry, Option<Arc<ClientMetadata>>),
}

/// Version 2 record: version, signal tag, then the data as an OTLP protobuf export request.
/// Still written when there is no client metadata.
const RAW_RECORD_V2: u8 = 2;
/// Version 4 record: version 2 with the client metadata (`helper::meta`) before the data.
const RAW_RECORD_V4: u8 = 4;

impl<R> Queued<R> {
    fn signal(&self) -> Signal {
        match self {
            Queued::Ready(j) => j.signal,
            Queued::Raw(d, _) => d.signal(),
        }
    }

    fn items(&self) -> usize {
        match self {
            Queued::Ready(j) => j.items,
            Queued::Raw(d, _) => d.item_count(),
        }
    }
}

impl<R: Persist> Persist for Queued<R> {
    fn to_bytes(&self) -> Vec<u8> {
        match self {
            Queued::Ready(job) => job.to_bytes(),
            Queued::Raw(data, meta) => {
                let body = proto_request(data);
                let mut out = Vec::with_capacity(2 + body.len());
                out.push(if meta.is_some() {
                    RAW_RECORD_V4
                } else {
                    RAW_RECORD_V2
                });
                out.push(signal_tag(data.signal()));
                if let Some(meta) = meta {
                    meta::encode(meta, &mut out);
                }
                out.extend_from_slice(&body);
                out
            }
        }
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        match *bytes.first()? {
            JOB_RECORD_V1 | JOB_RECORD_V3 => Job::from_bytes(bytes).map(Queued::Ready),
            version @ (RAW_RECORD_V2 | RAW_RECORD_V4) => {
                let signal = signal_from_tag(*bytes.get(1)?)?;
                let rest = bytes.get(2..)?;
                let (meta, body) = if version == RAW_RECORD_V4 {
                    let (m, body) = meta::decode(rest)?;
                    (Some(Arc::new(m)), body)
                } else {
                    (None, rest)
                };
                let data = decode_proto_request(signal, body).ok()?;
                Some(Queued::Raw(data, meta))
            }
            _ => None,
        }
    }
}

/// The queue entries one send carries. They are marked done when every part of the send has ended,
/// unless a stop cut a part short over a durable queue: then they stay stored and are sent again
/// after the next start.
struct Tickets {
    ids: Vec<u64>,
    parts_left: AtomicUsize,
    keep: AtomicBool,
}

/// Queued data being merged for one signal and partition.
struct Gathering {
    /// What every merged request's client metadata reduced to (`helper::meta::partition`).
    meta: Option<Arc<ClientMetadata>>,
    data: Telemetry,
    units: usize,
    ids: Vec<u64>,
    deadline: tokio::time::Instant,
}

type DynQueue<R> = Arc<dyn Queue<Queued<R>>>;

struct StackCore<S: Sender> {
    id: String,
    sender: S,
    timeout: Duration,
    retry: Retry,
    queue_cfg: QueueConfig,
    queue: OnceLock<DynQueue<S::Request>>,
    gauges: Option<QueueGauges>,
    obs: ExporterObs,
    /// Fired when the drain deadline passes: waits and in-flight sends end at once.
    cancel: CancellationToken,
    /// Items not delivered because of shutdown, reported in one line at the end.
    lost: AtomicU64,
    /// When a failed attempt that will be retried was last logged: an unreachable backend is said at
    /// once, not only when the retries run out minutes later, and then at most every 30 s.
    retry_logged: Mutex<Option<std::time::Instant>>,
    /// Batches sent before `min_size` or `flush_timeout` to keep at most `MAX_OPEN_PARTITIONS`.
    flushed_early: metrics::Counter,
}

const RETRY_LOG_EVERY: Duration = Duration::from_secs(30);

/// How long cancelled queue consumers may take to count what they drop, past the deadline if need
/// be. They only pop and count, so this is far more than they need.
const COUNT_GRACE: Duration = Duration::from_millis(200);

/// A network exporter: a `Sender` behind timeout, retry and the sending queue.
pub struct SendStack<S: Sender> {
    core: Arc<StackCore<S>>,
    /// The queue consumers.
    tasks: Tasks,
    started: AtomicBool,
}

impl<S: Sender> SendStack<S> {
    /// Builds the stack for the exporter `set` describes. Metrics are registered here, once.
    pub fn new(set: &Settings, settings: SendSettings, sender: S) -> Self {
        Self::with_clock(set, settings, sender, Arc::new(TokioClock))
    }

    /// Like `new`, with the clock the retry loop waits on (tests inject one).
    pub fn with_clock(
        set: &Settings,
        settings: SendSettings,
        sender: S,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let id = set.id.to_string();
        let queue_cfg = settings.sending_queue;
        let queue = OnceLock::new();
        let mut gauges = None;
        if queue_cfg.enabled {
            gauges = Some(QueueGauges::new(&id, queue_cfg.queue_size));
            // A durable queue needs the storage extension, which only `start` can reach.
            if queue_cfg.storage.is_none() {
                let q: DynQueue<S::Request> = Arc::new(MemoryQueue::new(queue_cfg.queue_size));
                let _ = queue.set(q);
            }
        }
        let flushed_early = metrics::counter!("vigil_exporter_queue_batches_flushed_early", "exporter" => id.clone());
        SendStack {
            core: Arc::new(StackCore {
                obs: set.exporter_obs(),
                id,
                sender,
                timeout: settings.timeout,
                retry: Retry::new(settings.retry_on_failure, clock),
                queue_cfg,
                queue,
                gauges,
                cancel: CancellationToken::new(),
                lost: AtomicU64::new(0),
                retry_logged: Mutex::new(None),
                flushed_early,
            }),
            tasks: set.tasks.clone(),
            started: AtomicBool::new(false),
        }
    }

    /// The transport, for exporters that need to reach it after construction.
    pub fn sender(&self) -> &S {
        &self.core.sender
    }
}

impl<S: Sender> StackCore<S> {
    /// One attempt under the timeout, cut short by shutdown.
    async fn attempt(&self, request: &S::Request) -> Result<Delivered, SendError> {
        let send = self.sender.send(request);
        let timed = async {
            if self.timeout.is_zero() {
                return send.await;
            }
            match tokio::time::timeout(self.timeout, send).await {
                Ok(r) => r,
                Err(_) => Err(SendError::retryable(format!(
                    "request timed out after {:?}",
                    self.timeout
                ))),
            }
        };
        let result = tokio::select! {
            r = timed => r,
            _ = self.cancel.cancelled() => {
                return Err(SendError::retryable("the exporter stopped before the request completed"));
            }
        };
        if let Err(SendError::Retryable { reason, .. }) = &result {
            self.log_retry(reason);
        }
        result
    }

    fn log_retry(&self, reason: &str) {
        let mut last = lock(&self.retry_logged);
        let now = std::time::Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < RETRY_LOG_EVERY) {
            return;
        }
        *last = Some(now);
        tracing::warn!(
            exporter = %self.id,
            "sending failed, will retry until retry_on_failure::max_elapsed_time: {reason}"
        );
    }

    /// Sends a job with retries and accounts for the outcome. `owned` says whether the stack owns the
    /// data (it came off the queue), in which case a failure means the data is gone.
    async fn deliver(&self, job: &Job<S::Request>, owned: bool) -> Result<(), SendError> {
        let result = self
            .retry
            .run(&self.cancel, || self.attempt(&job.request))
            .await;
        match result {
            Ok(d) => {
                let rejected = d.rejected.min(job.items as u64);
                self.obs.sent(job.signal, job.items as u64 - rejected);
                if rejected > 0 {
                    self.obs.send_failed(job.signal, rejected);
                }
                if rejected > 0 || !d.message.is_empty() {
                    tracing::warn!(
                        exporter = %self.id,
                        rejected,
                        message = %d.message,
                        "partial success: the backend rejected part of the {} (not retried)",
                        job.signal
                    );
                }
                Ok(())
            }
            Err(e) => {
                self.give_up(job.signal, job.items, &e, owned);
                Err(e)
            }
        }
    }

    /// Counts a batch that will not be delivered, with one log line saying why.
    fn give_up(&self, signal: Signal, items: usize, e: &SendError, owned: bool) {
        let durable = self.queue.get().is_some_and(|q| q.is_durable());
        if owned && durable && self.cancel.is_cancelled() && e.is_retryable() {
            // Cut by a stop: the request stays in storage and is sent after the next start.
            return;
        }
        self.obs.send_failed(signal, items as u64);
        match e {
            SendError::Permanent { reason } => tracing::error!(
                exporter = %self.id,
                items,
                %reason,
                "dropping {signal}: the backend refused them permanently (not retried)"
            ),
            SendError::Retryable { .. } if owned && self.cancel.is_cancelled() => {
                // Reported once, in total, by shutdown.
                self.lost.fetch_add(items as u64, Ordering::Relaxed);
            }
            SendError::Retryable { reason, .. } if owned => tracing::error!(
                exporter = %self.id,
                items,
                %reason,
                "dropping {signal}: retries are exhausted"
            ),
            SendError::Retryable { reason, .. } => tracing::warn!(
                exporter = %self.id,
                items,
                %reason,
                "sending {signal} failed; refused back to the pipeline for a retry"
            ),
        }
    }

    fn update_gauge(&self, queue: &dyn Queue<Queued<S::Request>>) {
        if let Some(g) = &self.gauges {
            g.size.set(queue.size() as f64);
        }
    }

    /// An item that shutdown reached before it could be sent.
    fn abandon(&self, item: &Queued<S::Request>, durable: bool) {
        if durable {
            return;
        }
        self.obs.send_failed(item.signal(), item.items() as u64);
        self.lost.fetch_add(item.items() as u64, Ordering::Relaxed);
    }

    /// Sends what came off the queue, preparing it first if it was queued as data, with the
    /// client metadata it was queued with in scope (for `headers_setter`).
    async fn send_queued(&self, item: Queued<S::Request>) -> Result<(), SendError> {
        let job = match item {
            Queued::Ready(job) => job,
            Queued::Raw(data, meta) => {
                let (signal, items) = (data.signal(), data.item_count());
                match self.sender.prepare(&data) {
                    Ok(request) => Job {
                        signal,
                        items,
                        request,
                        meta,
                    },
                    Err(e) => {
                        self.give_up(signal, items, &e, true);
                        return Err(e);
                    }
                }
            }
        };
        match job.meta.clone() {
            Some(meta) => {
                ClientMetadata::clone(&meta)
                    .scope(self.deliver(&job, true))
                    .await
            }
            None => self.deliver(&job, true).await,
        }
    }

    /// Whether a failed send leaves its entries stored for the next start (a stop cut it short over a
    /// durable queue) rather than marking them done.
    fn keeps(&self, durable: bool, result: &Result<(), SendError>) -> bool {
        durable && self.cancel.is_cancelled() && result.is_err()
    }

    /// A consumer task: takes jobs off the queue until it is closed and empty.
    async fn work(self: Arc<Self>, queue: DynQueue<S::Request>) {
        let durable = queue.is_durable();
        while let Some(p) = queue.pop().await {
            self.update_gauge(queue.as_ref());
            if self.cancel.is_cancelled() {
                self.abandon(&p.item, durable);
                if !durable {
                    queue.done(p.id);
                }
                continue;
            }
            let result = self.send_queued(p.item).await;
            if !self.keeps(durable, &result) {
                queue.done(p.id);
            }
        }
    }

    /// `sending_queue::batch`: one task takes everything off the queue and merges the data of each
    /// signal until `min_size` or `flush_timeout`; up to `num_consumers` merged batches are sent at
    /// once. Queue entries are marked done only when the batch that carries them has ended, so a
    /// durable queue keeps them until then.
    async fn batch_work(self: Arc<Self>, queue: DynQueue<S::Request>, settings: BatchSettings) {
        let durable = queue.is_durable();
        // `pop` is not cancel-safe (a durable queue reads from storage after taking an entry), so
        // it runs on a task of its own and hands entries over a channel that is.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Popped<Queued<S::Request>>>(1);
        let popper = {
            let queue = Arc::clone(&queue);
            tokio::spawn(async move {
                while let Some(p) = queue.pop().await {
                    if tx.send(p).await.is_err() {
                        break;
                    }
                }
            })
        };
        let permits = Arc::new(tokio::sync::Semaphore::new(self.queue_cfg.num_consumers));
        let mut sends = tokio::task::JoinSet::new();
        let mut gathering: Vec<Gathering> = Vec::new();
        loop {
            let due = gathering.iter().map(|g| g.deadline).min();
            let popped = match due {
                Some(at) => tokio::select! {
                    p = rx.recv() => p,
                    _ = tokio::time::sleep_until(at) => {
                        let now = tokio::time::Instant::now();
                        let (ready, waiting): (Vec<_>, Vec<_>) =
                            gathering.drain(..).partition(|g| g.deadline <= now);
                        gathering = waiting;
                        for g in ready {
                            self.send_batch(&queue, &settings, g, &permits, &mut sends).await;
                        }
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            let Some(p) = popped else { break };
            self.update_gauge(queue.as_ref());
            while sends.try_join_next().is_some() {}
            if self.cancel.is_cancelled() {
                self.abandon(&p.item, durable);
                if !durable {
                    queue.done(p.id);
                }
                continue;
            }
            match p.item {
                ready @ Queued::Ready(_) => {
                    let tickets = Tickets {
                        ids: vec![p.id],
                        parts_left: AtomicUsize::new(1),
                        keep: AtomicBool::new(false),
                    };
                    let permit = Arc::clone(&permits).acquire_owned().await;
                    let (me, q, t) = (Arc::clone(&self), Arc::clone(&queue), Arc::new(tickets));
                    sends.spawn(async move {
                        let _permit = permit;
                        let result = me.send_queued(ready).await;
                        me.finish(&q, &t, durable, &result);
                    });
                }
                Queued::Raw(data, meta) => {
                    let signal = data.signal();
                    let at = gathering
                        .iter()
                        .position(|g| g.data.signal() == signal && g.meta == meta);
                    let at = match at {
                        Some(at) => at,
                        None => {
                            if gathering.len() >= MAX_OPEN_PARTITIONS {
                                // Room for one more partition: the batch that has waited
                                // longest goes out now, smaller than it would have been.
                                let oldest = gathering
                                    .iter()
                                    .enumerate()
                                    .min_by_key(|(_, g)| g.deadline)
                                    .map(|(i, _)| i);
                                if let Some(i) = oldest {
                                    let g = gathering.swap_remove(i);
                                    self.flushed_early.increment(1);
                                    self.send_batch(&queue, &settings, g, &permits, &mut sends)
                                        .await;
                                }
                            }
                            gathering.push(Gathering {
                                meta,
                                data: Telemetry::empty(signal),
                                units: 0,
                                ids: Vec::new(),
                                deadline: tokio::time::Instant::now() + settings.flush_timeout,
                            });
                            gathering.len() - 1
                        }
                    };
                    let units = settings.units(&data);
                    let g = &mut gathering[at];
                    // The batch is chosen by signal, so the merge cannot fail.
                    let _ = merge(&mut g.data, data);
                    g.units += units;
                    g.ids.push(p.id);
                    if g.units >= settings.min_size {
                        let g = gathering.swap_remove(at);
                        self.send_batch(&queue, &settings, g, &permits, &mut sends)
                            .await;
                    }
                }
            }
        }
        // The queue is closed and empty (an in-memory queue drains first; a durable one stops
        // handing out entries). What is gathered goes out now, or stays stored if a stop cut in.
        for g in gathering.drain(..) {
            if self.cancel.is_cancelled() {
                if !durable {
                    self.abandon(&Queued::Raw(g.data, None), durable);
                    for id in g.ids {
                        queue.done(id);
                    }
                }
                continue;
            }
            self.send_batch(&queue, &settings, g, &permits, &mut sends)
                .await;
        }
        while sends.join_next().await.is_some() {}
        popper.abort();
    }

    /// Sends one merged batch, cut at `max_size` (items), each part on its own sending task.
    async fn send_batch(
        self: &Arc<Self>,
        queue: &DynQueue<S::Request>,
        settings: &BatchSettings,
        g: Gathering,
        permits: &Arc<tokio::sync::Semaphore>,
        sends: &mut tokio::task::JoinSet<()>,
    ) {
        let durable = queue.is_durable();
        let max = match settings.sizer {
            Sizer::Items => settings.max_size,
            Sizer::Requests | Sizer::Bytes => 0,
        };
        let batch_meta = g.meta;
        let parts = split_max(g.data, max);
        let tickets = Arc::new(Tickets {
            ids: g.ids,
            parts_left: AtomicUsize::new(parts.len()),
            keep: AtomicBool::new(false),
        });
        for part in parts {
            // Waiting for a free sender here stops taking from the queue, which fills it, which
            // refuses new data: backpressure reaches the clients instead of memory growing.
            let permit = Arc::clone(permits).acquire_owned().await;
            let (me, q, t) = (Arc::clone(self), Arc::clone(queue), Arc::clone(&tickets));
            let meta = batch_meta.clone();
            sends.spawn(async move {
                let _permit = permit;
                let result = me.send_queued(Queued::Raw(part, meta)).await;
                me.finish(&q, &t, durable, &result);
            });
        }
    }

    /// One part of a send has ended: mark its entries done once every part has.
    fn finish(
        &self,
        queue: &DynQueue<S::Request>,
        tickets: &Tickets,
        durable: bool,
        result: &Result<(), SendError>,
    ) {
        if self.keeps(durable, result) {
            tickets.keep.store(true, Ordering::SeqCst);
        }
        if tickets.parts_left.fetch_sub(1, Ordering::SeqCst) == 1
            && !tickets.keep.load(Ordering::SeqCst)
        {
            for &id in &tickets.ids {
                queue.done(id);
            }
        }
    }
}

fn to_consume_error(e: SendError, items: usize) -> ConsumeError {
    match e {
        SendError::Retryable {
            reason,
            retry_after,
        } => ConsumeError::Retryable {
            reason,
            retry_after,
        },
        SendError::Permanent { reason } => ConsumeError::Permanent {
            reason,
            rejected: items,
        },
    }
}

impl<S: Sender> SendStack<S> {
    /// Takes a batch: queues it, or sends it right away when the queue is off. A refusal is the
    /// caller's to pass back to its client; nothing refused is kept here.
    async fn submit(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let core = &self.core;
        let signal = data.signal();
        let items = data.item_count();
        if items == 0 {
            return Ok(());
        }
        // What the batch counts against the queue's capacity, in the sizer's unit.
        let units = if core.queue_cfg.enabled {
            core.queue_cfg.sizer.measure(&data)
        } else {
            0
        };
        let queue = if core.queue_cfg.enabled {
            let Some(queue) = core.queue.get() else {
                return Err(ConsumeError::retryable(format!(
                    "exporter {} is not started yet",
                    core.id
                )));
            };
            // Under backpressure the same batch comes back again and again: refuse it before paying
            // for its encoding when it cannot fit anyway.
            if !core.queue_cfg.blocks()
                && queue.size() + units > queue.capacity()
                && units <= queue.capacity()
            {
                core.obs.enqueue_failed(signal, items as u64);
                return Err(self.full_error(queue.as_ref()));
            }
            Some(queue)
        } else {
            None
        };
        let entry = if let (Some(_), Some(batch)) = (&queue, &core.queue_cfg.batch) {
            // Prepared after merging, by the batcher, which merges only what agrees on this.
            let meta = meta::partition(
                ClientMetadata::current().as_deref(),
                &batch.partition.metadata_keys,
            );
            Queued::Raw(data, meta)
        } else {
            let request = match core.sender.prepare(&data) {
                Ok(r) => r,
                Err(e) => {
                    core.give_up(signal, items, &e, false);
                    return Err(to_consume_error(e, items));
                }
            };
            // The decoded batch is usually several times larger than the request: free it now.
            drop(data);
            Queued::Ready(Job {
                signal,
                items,
                request,
                // Only what headers_setter can read: a bare peer address (which every listener
                // attaches) would make each durable record carry metadata for nothing.
                meta: ClientMetadata::current().filter(|m| !m.is_empty()),
            })
        };
        let Some(queue) = queue else {
            let Queued::Ready(job) = entry else {
                unreachable!("without a queue every entry is prepared")
            };
            return core
                .deliver(&job, false)
                .await
                .map_err(|e| to_consume_error(e, items));
        };
        let pushed = queue.push(entry, units, core.queue_cfg.blocks()).await;
        core.update_gauge(queue.as_ref());
        let error = match pushed {
            Ok(()) => return Ok(()),
            Err(PushError::Full(_)) => self.full_error(queue.as_ref()),
            Err(PushError::TooLarge(_)) => ConsumeError::permanent(
                format!(
                    "a batch of {items} items ({units} {sizer}) is larger than the whole sending \
                     queue of exporter {} (sending_queue::queue_size {} {sizer})",
                    core.id,
                    queue.capacity(),
                    sizer = core.queue_cfg.sizer,
                ),
                items,
            ),
            Err(PushError::Closed(_)) => {
                ConsumeError::retryable(format!("exporter {} is shutting down", core.id))
            }
            Err(PushError::Storage(_, reason)) => {
                ConsumeError::retryable(format!("exporter {}: {reason}", core.id))
            }
        };
        core.obs.enqueue_failed(signal, items as u64);
        Err(error)
    }

    fn full_error(&self, queue: &dyn Queue<Queued<S::Request>>) -> ConsumeError {
        ConsumeError::retryable(format!(
            "the sending queue of exporter {} is full ({} of {} {})",
            self.core.id,
            queue.size(),
            queue.capacity(),
            self.core.queue_cfg.sizer
        ))
    }
}

impl<S: Sender> SendStack<S> {
    /// Opens the durable queue on the storage extension `storage` and reports what it replays.
    async fn open_durable(
        &self,
        host: &Host,
        storage: &str,
    ) -> anyhow::Result<DynQueue<S::Request>> {
        let core = &self.core;
        let where_ = || format!("exporters::{}::sending_queue::storage", core.id);
        let storage_id =
            ComponentId::parse(storage).map_err(|e| anyhow::anyhow!("{}: {e}", where_()))?;
        let owner =
            ComponentId::parse(&core.id).map_err(|e| anyhow::anyhow!("{}: {e}", where_()))?;
        let store = host
            .storage(&storage_id, &owner, "sending_queue")
            .map_err(|e| anyhow::anyhow!("{}: {e}", where_()))?;
        let (queue, replayed) =
            PersistentQueue::<Queued<S::Request>>::open(store, core.queue_cfg.queue_size, &core.id)
                .await
                .map_err(|e| anyhow::anyhow!("{}: cannot open the durable queue: {e}", where_()))?;
        let queue: DynQueue<S::Request> = Arc::new(queue);
        core.update_gauge(queue.as_ref());
        tracing::debug!(exporter = %core.id, replayed = replayed.items, corrupt = replayed.corrupt, "durable sending queue opened");
        Ok(queue)
    }

    /// Stops over a durable queue: no drain is needed, since what is not delivered stays in storage
    /// for the next start. In-flight sends are cut; a cut send stays queued and may be delivered
    /// twice (at least once, never lost).
    async fn stop_durable(
        &self,
        queue: &dyn Queue<Queued<S::Request>>,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        let core = &self.core;
        core.cancel.cancel();
        self.tasks.stop(deadline).await;
        queue.flush().await;
        let left = queue.size();
        core.lost.store(0, Ordering::Relaxed);
        if left > 0 {
            tracing::info!(
                exporter = %core.id,
                queued = left,
                "stopping with undelivered data in the durable sending queue; it is sent after the next start"
            );
        }
        Ok(())
    }
}

#[async_trait]
impl<S: Sender> Consumer for SendStack<S> {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        self.submit(data).await
    }
}

#[async_trait]
impl<S: Sender> Component for SendStack<S> {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        let core = &self.core;
        core.sender.start(host).await?;
        if !core.queue_cfg.enabled {
            return Ok(());
        }
        if let Some(storage) = &core.queue_cfg.storage {
            if core.queue.get().is_none() {
                let q = self.open_durable(host, storage).await?;
                let _ = core.queue.set(q);
            }
        }
        let Some(queue) = core.queue.get() else {
            anyhow::bail!("exporters::{}: the sending queue was not created", core.id);
        };
        // The consumers watch the queue closing and the stack's own cancel, not the task set's:
        // a stop drains first and cuts in-flight sends only when the deadline nears.
        if !self.started.swap(true, Ordering::SeqCst) {
            match &core.queue_cfg.batch {
                Some(b) => self
                    .tasks
                    .spawn(Arc::clone(core).batch_work(Arc::clone(queue), b.clone())),
                None => {
                    for _ in 0..core.queue_cfg.num_consumers {
                        self.tasks.spawn(Arc::clone(core).work(Arc::clone(queue)));
                    }
                }
            }
        }
        Ok(())
    }

    /// Drains the queue until shortly before `deadline` (the service's `--shutdown-timeout`), then
    /// cuts in-flight sends and counts what is left as lost. A tenth of the time left is kept back
    /// for that, so that the count and the log line happen before the process exits.
    async fn shutdown_by(&self, deadline: Instant) -> anyhow::Result<()> {
        let core = &self.core;
        let Some(queue) = core.queue.get() else {
            return Ok(());
        };
        queue.close();
        if queue.is_durable() {
            return self.stop_durable(queue.as_ref(), deadline).await;
        }
        let start = Instant::now();
        let left = deadline.saturating_duration_since(start);
        // Whether the consumers emptied the queue in time shows in `lost` below.
        self.tasks.wait(start + (left - left / 10)).await;
        let drain = start.elapsed();
        // Cut waits and in-flight sends; the consumers then empty the queue without sending,
        // counting what they drop. That takes no I/O, so they get a moment for it even when the
        // deadline has already passed: an aborted consumer would lose its batch uncounted.
        core.cancel.cancel();
        let counted = Instant::now() + COUNT_GRACE;
        self.tasks.stop(deadline.max(counted)).await;
        let durable = queue.is_durable();
        while let Some(p) = queue.pop().await {
            core.abandon(&p.item, durable);
            if !durable {
                queue.done(p.id);
            }
        }
        core.update_gauge(queue.as_ref());
        let lost = core.lost.swap(0, Ordering::Relaxed);
        if lost > 0 {
            tracing::error!(
                exporter = %core.id,
                items = lost,
                "{lost} items could not be delivered within the shutdown drain time ({drain:.1?}) and are lost",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::counters::testing::TestRecorder;
    use super::super::retry::tests::ManualClock;
    use super::*;
    use crate::helper::encode::tests::sample_traces;
    use std::collections::VecDeque;
    use std::sync::atomic::AtomicUsize;

    /// A transport that answers from a script, then succeeds; it can also hang until released.
    #[derive(Default)]
    struct ScriptedSender {
        script: Mutex<VecDeque<Result<Delivered, SendError>>>,
        calls: AtomicUsize,
        hold: Option<Arc<tokio::sync::Semaphore>>,
        /// A request of this many items never gets an answer.
        hang_on_items: Option<usize>,
        /// Per send: its items, and the `x-tenant` and `user-agent` values of the client metadata
        /// in scope (what `headers_setter` would read).
        seen: Mutex<Vec<Seen>>,
    }

    /// Items, `x-tenant` values, `user-agent` values.
    type Seen = (usize, Vec<String>, Vec<String>);

    /// The test request: just the item count.
    #[derive(Debug, PartialEq)]
    struct Count(usize);

    impl Persist for Count {
        fn to_bytes(&self) -> Vec<u8> {
            (self.0 as u64).to_be_bytes().to_vec()
        }
        fn from_bytes(bytes: &[u8]) -> Option<Self> {
            Some(Count(u64::from_be_bytes(bytes.try_into().ok()?) as usize))
        }
    }

    #[test]
    fn jobs_persist_and_reject_garbage() {
        let job = Job {
            signal: Signal::Logs,
            items: 7,
            request: Count(7),
            meta: None,
        };
        let back = Job::<Count>::from_bytes(&job.to_bytes()).unwrap();
        assert_eq!(
            (back.signal, back.items, back.request),
            (Signal::Logs, 7, Count(7))
        );
        let bytes = job.to_bytes();
        assert!(Job::<Count>::from_bytes(&bytes[..bytes.len() - 1]).is_none());
        assert!(Job::<Count>::from_bytes(&[]).is_none());
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 9;
        assert!(Job::<Count>::from_bytes(&wrong_version).is_none());
        let mut wrong_signal = bytes;
        wrong_signal[1] = 7;
        assert!(Job::<Count>::from_bytes(&wrong_signal).is_none());
    }

    #[async_trait]
    impl Sender for Arc<ScriptedSender> {
        type Request = Count;
        fn prepare(&self, data: &Telemetry) -> Result<Count, SendError> {
            Ok(Count(data.item_count()))
        }
        async fn send(&self, req: &Count) -> Result<Delivered, SendError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let meta = ClientMetadata::current();
            let get = |k: &str| meta.as_ref().map(|m| m.get(k).to_vec()).unwrap_or_default();
            self.seen
                .lock()
                .unwrap()
                .push((req.0, get("x-tenant"), get("user-agent")));
            if self.hang_on_items == Some(req.0) {
                std::future::pending::<()>().await;
            }
            if let Some(h) = &self.hold {
                let _permit = h.acquire().await;
            }
            let next = self.script.lock().unwrap().pop_front();
            next.unwrap_or(Ok(Delivered::default()))
        }
    }

    fn settings(queue: bool, queue_size: usize) -> SendSettings {
        SendSettings {
            timeout: Duration::from_secs(5),
            retry_on_failure: RetryConfig {
                initial_interval: Duration::from_millis(10),
                randomization_factor: 0.0,
                ..RetryConfig::default()
            },
            sending_queue: QueueConfig {
                enabled: queue,
                num_consumers: 2,
                queue_size,
                ..QueueConfig::default()
            },
        }
    }

    fn stack(
        rec: &TestRecorder,
        settings: SendSettings,
        sender: Arc<ScriptedSender>,
        clock: Arc<ManualClock>,
    ) -> SendStack<Arc<ScriptedSender>> {
        let id = ComponentId::parse("otlp/test").unwrap();
        let set = Settings::new(ComponentKind::Exporter, &id);
        metrics::with_local_recorder(rec, || SendStack::with_clock(&set, settings, sender, clock))
    }

    const SENT: &str = "otelcol_exporter_sent_spans{exporter=otlp/test}";
    const FAILED: &str = "otelcol_exporter_send_failed_spans{exporter=otlp/test}";
    const ENQUEUE_FAILED: &str = "otelcol_exporter_enqueue_failed_spans{exporter=otlp/test}";

    #[tokio::test]
    async fn synchronous_path_retries_honouring_retry_after() {
        let rec = TestRecorder::default();
        let sender = Arc::new(ScriptedSender::default());
        sender.script.lock().unwrap().extend([
            Err(SendError::Retryable {
                reason: "503".into(),
                retry_after: Some(Duration::from_secs(2)),
            }),
            Err(SendError::retryable("reset")),
        ]);
        let clock = ManualClock::new();
        let s = stack(&rec, settings(false, 10), sender.clone(), clock.clone());
        s.consume(sample_traces(4)).await.unwrap();
        assert_eq!(sender.calls.load(Ordering::SeqCst), 3);
        assert_eq!(
            clock.sleeps(),
            vec![Duration::from_secs(2), Duration::from_millis(15)]
        );
        assert_eq!(rec.counter(SENT), 4);
        assert_eq!(rec.counter(FAILED), 0);
    }

    #[tokio::test]
    async fn permanent_is_not_retried_and_partial_success_is_counted() {
        let rec = TestRecorder::default();
        let sender = Arc::new(ScriptedSender::default());
        sender.script.lock().unwrap().extend([
            Err(SendError::permanent("HTTP 400: bad")),
            Ok(Delivered {
                rejected: 1,
                message: "one too old".into(),
            }),
        ]);
        let clock = ManualClock::new();
        let s = stack(&rec, settings(false, 10), sender.clone(), clock.clone());
        let e = s.consume(sample_traces(3)).await.unwrap_err();
        assert_eq!(e, ConsumeError::permanent("HTTP 400: bad", 3));
        assert_eq!(sender.calls.load(Ordering::SeqCst), 1);
        assert!(clock.sleeps().is_empty());
        assert_eq!(rec.counter(FAILED), 3);
        s.consume(sample_traces(3)).await.unwrap();
        assert_eq!(sender.calls.load(Ordering::SeqCst), 2);
        assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (2, 4));
    }

    #[tokio::test]
    async fn full_queue_refuses_as_retryable() {
        let rec = TestRecorder::default();
        // Not started: nothing consumes, so the queue fills.
        let s = stack(
            &rec,
            settings(true, 2),
            Arc::new(ScriptedSender::default()),
            ManualClock::new(),
        );
        s.consume(sample_traces(1)).await.unwrap();
        s.consume(sample_traces(1)).await.unwrap();
        let e = s.consume(sample_traces(5)).await.unwrap_err();
        assert!(e.is_retryable(), "{e:?}");
        assert!(e.to_string().contains("full"), "{e}");
        assert_eq!(rec.counter(ENQUEUE_FAILED), 5);
        assert_eq!(
            rec.gauge("otelcol_exporter_queue_size{exporter=otlp/test}"),
            2.0
        );
        assert_eq!(
            rec.gauge("otelcol_exporter_queue_capacity{exporter=otlp/test}"),
            2.0
        );
    }

    #[tokio::test]
    async fn bytes_sizer_counts_the_encoded_request() {
        let rec = TestRecorder::default();
        let one = Sizer::Bytes.measure(&sample_traces(1));
        assert!(one > 20, "an encoded span is more than a few bytes: {one}");
        assert_eq!(
            Sizer::Bytes.measure(&sample_traces(3)),
            prost::Message::encoded_len(
                &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
                    resource_spans: match sample_traces(3) {
                        Telemetry::Traces(rs) => rs,
                        _ => unreachable!(),
                    },
                }
            ),
            "the size of the OTLP request, as otelcol's bytes sizer"
        );
        // Room for two one-span batches, in bytes; not started, so nothing drains.
        let mut cfg = settings(true, 2 * one + one / 2);
        cfg.sending_queue.sizer = Sizer::Bytes;
        let s = stack(
            &rec,
            cfg,
            Arc::new(ScriptedSender::default()),
            ManualClock::new(),
        );
        s.consume(sample_traces(1)).await.unwrap();
        s.consume(sample_traces(1)).await.unwrap();
        let e = s.consume(sample_traces(1)).await.unwrap_err();
        assert!(e.is_retryable() && e.to_string().contains(" bytes)"), "{e}");
        assert_eq!(
            rec.gauge("otelcol_exporter_queue_size{exporter=otlp/test}"),
            (2 * one) as f64
        );
        // Larger than the whole queue: refused for good, naming both units.
        let e = s.consume(sample_traces(4)).await.unwrap_err();
        assert!(!e.is_retryable() && e.to_string().contains("bytes"), "{e}");
        let c: QueueConfig =
            serde_json::from_value(serde_json::json!({"sizer": "bytes", "queue_size": 50000000}))
                .unwrap();
        assert_eq!(c.sizer, Sizer::Bytes);
    }

    #[tokio::test]
    async fn refusals_go_back_to_the_caller() {
        let rec = TestRecorder::default();
        let s = stack(
            &rec,
            settings(true, 1),
            Arc::new(ScriptedSender::default()),
            ManualClock::new(),
        );
        s.consume(sample_traces(1)).await.unwrap();
        let e = s.consume(sample_traces(2)).await.unwrap_err();
        assert!(e.is_retryable());
        assert_eq!(rec.counter(ENQUEUE_FAILED), 2);

        // Without a queue: a retryable failure and a permanent one both reach the caller.
        let sender = Arc::new(ScriptedSender::default());
        sender.script.lock().unwrap().extend([
            Err(SendError::retryable("down")),
            Err(SendError::permanent("bad")),
        ]);
        let mut cfg = settings(false, 1);
        cfg.retry_on_failure.enabled = false;
        let s = stack(&TestRecorder::default(), cfg, sender, ManualClock::new());
        assert!(s
            .consume(sample_traces(3))
            .await
            .unwrap_err()
            .is_retryable());
        assert_eq!(
            s.consume(sample_traces(3)).await.unwrap_err(),
            ConsumeError::permanent("bad", 3)
        );
    }

    fn batching(min_size: usize, max_size: usize, flush_ms: u64) -> SendSettings {
        let mut cfg = settings(true, 1000);
        cfg.sending_queue.batch = Some(BatchSettings {
            flush_timeout: Duration::from_millis(flush_ms),
            min_size,
            max_size,
            sizer: Sizer::Items,
            partition: Default::default(),
        });
        cfg
    }

    async fn wait_sent(rec: &TestRecorder, n: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while rec.counter(SENT) < n && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(rec.counter(SENT), n);
    }

    #[tokio::test]
    async fn queue_batch_merges_to_min_size_and_cuts_at_max_size() {
        let rec = TestRecorder::default();
        let sender = Arc::new(ScriptedSender::default());
        let s = stack(
            &rec,
            batching(10, 12, 3_600_000),
            sender.clone(),
            ManualClock::new(),
        );
        // Before start nothing is taken off the queue, so the order of merging is known.
        for n in [4, 4, 4, 3] {
            s.consume(sample_traces(n)).await.unwrap();
        }
        s.start(&Host::detached()).await.unwrap();
        // 4+4+4 reaches min_size 10 at 12 items: one request of 12 (within max_size); the last 3
        // wait for the hour-long flush_timeout and go at shutdown.
        wait_sent(&rec, 12).await;
        assert_eq!(sender.calls.load(Ordering::SeqCst), 1);
        s.shutdown().await.unwrap();
        assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (15, 0));
        assert_eq!(sender.calls.load(Ordering::SeqCst), 2);

        let rec = TestRecorder::default();
        let sender = Arc::new(ScriptedSender::default());
        let s = stack(
            &rec,
            batching(10, 10, 3_600_000),
            sender.clone(),
            ManualClock::new(),
        );
        for n in [7, 7, 7] {
            s.consume(sample_traces(n)).await.unwrap();
        }
        s.start(&Host::detached()).await.unwrap();
        s.shutdown().await.unwrap();
        // 21 items cut at 10: three requests.
        assert_eq!(
            (rec.counter(SENT), sender.calls.load(Ordering::SeqCst)),
            (21, 3)
        );
    }

    #[tokio::test]
    async fn queue_batch_flushes_after_the_timeout() {
        let rec = TestRecorder::default();
        let sender = Arc::new(ScriptedSender::default());
        let s = stack(
            &rec,
            batching(1000, 0, 20),
            sender.clone(),
            ManualClock::new(),
        );
        s.start(&Host::detached()).await.unwrap();
        s.consume(sample_traces(3)).await.unwrap();
        s.consume(sample_traces(2)).await.unwrap();
        wait_sent(&rec, 5).await;
        assert!(sender.calls.load(Ordering::SeqCst) <= 2);
        s.shutdown().await.unwrap();
    }

    #[test]
    fn queued_data_persists_and_old_records_still_read() {
        let raw: Queued<Count> = Queued::Raw(sample_traces(4), None);
        let back = Queued::<Count>::from_bytes(&raw.to_bytes()).unwrap();
        assert!(matches!(&back, Queued::Raw(d, None) if *d == sample_traces(4)));
        // A record written before sending_queue::batch existed (a prepared request).
        let job = Job {
            signal: Signal::Traces,
            items: 2,
            request: Count(2),
            meta: None,
        };
        let back = Queued::<Count>::from_bytes(&job.to_bytes()).unwrap();
        assert!(matches!(back, Queued::Ready(j) if j.items == 2));
        let mut bad = raw.to_bytes();
        bad.truncate(bad.len() - 3);
        bad[1] = 9;
        assert!(Queued::<Count>::from_bytes(&bad).is_none());
        assert!(Queued::<Count>::from_bytes(&[]).is_none());
    }

    #[tokio::test]
    async fn shutdown_drains_the_queue() {
        let rec = TestRecorder::default();
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let sender = Arc::new(ScriptedSender {
            hold: Some(gate.clone()),
            ..Default::default()
        });
        sender
            .script
            .lock()
            .unwrap()
            .push_back(Err(SendError::retryable("blip")));
        let s = stack(
            &rec,
            settings(true, 100),
            sender.clone(),
            ManualClock::new(),
        );
        s.start(&Host::detached()).await.unwrap();
        for _ in 0..10 {
            s.consume(sample_traces(2)).await.unwrap();
        }
        assert_eq!(rec.counter(SENT), 0);
        // The backend answers only once shutdown has begun: everything queued must still go out.
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            gate.add_permits(1000);
        });
        s.shutdown().await.unwrap();
        release.await.unwrap();
        assert_eq!(rec.counter(SENT), 20);
        assert_eq!(rec.counter(FAILED), 0);
        let e = s.consume(sample_traces(1)).await.unwrap_err();
        assert!(e.to_string().contains("shutting down"), "{e}");
    }

    #[tokio::test]
    async fn shutdown_deadline_counts_what_is_lost() {
        let rec = TestRecorder::default();
        // A backend that never answers.
        let sender = Arc::new(ScriptedSender {
            hold: Some(Arc::new(tokio::sync::Semaphore::new(0))),
            ..Default::default()
        });
        let s = stack(
            &rec,
            settings(true, 100),
            sender.clone(),
            ManualClock::new(),
        );
        s.start(&Host::detached()).await.unwrap();
        for _ in 0..5 {
            s.consume(sample_traces(3)).await.unwrap();
        }
        s.shutdown_by(Instant::now() + Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!(rec.counter(SENT), 0);
        assert_eq!(rec.counter(FAILED), 15);
        assert_eq!(
            rec.gauge("otelcol_exporter_queue_size{exporter=otlp/test}"),
            0.0
        );
    }

    #[tokio::test]
    async fn a_drain_cut_short_after_a_consumer_ended_stops_without_panicking() {
        // The first consumer is busy with a slow batch when the second batch comes, so the second
        // consumer takes it and hangs on a backend that stopped answering. The first then finishes and
        // is idle when the stop comes, so it ends as soon as the queue closes. When the drain times
        // out, the consumer that already ended must not be awaited again: "JoinHandle polled after
        // completion" killed the agent on Ctrl-C.
        let rec = TestRecorder::default();
        let slow = Arc::new(tokio::sync::Semaphore::new(0));
        let sender = Arc::new(ScriptedSender {
            hold: Some(slow.clone()),
            hang_on_items: Some(3),
            ..Default::default()
        });
        let s = stack(
            &rec,
            settings(true, 100),
            sender.clone(),
            ManualClock::new(),
        );
        s.start(&Host::detached()).await.unwrap();
        s.consume(sample_traces(2)).await.unwrap();
        s.consume(sample_traces(3)).await.unwrap();
        while sender.calls.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        slow.add_permits(1);
        while rec.counter(SENT) < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        s.shutdown_by(Instant::now() + Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (2, 3));
    }

    #[tokio::test]
    async fn the_service_deadline_bounds_the_drain() {
        let rec = TestRecorder::default();
        let sender = Arc::new(ScriptedSender {
            hold: Some(Arc::new(tokio::sync::Semaphore::new(0))),
            ..Default::default()
        });
        // The backend never answers and the retries would go on for minutes; the service allows
        // 100 ms.
        let s = stack(&rec, settings(true, 100), sender, ManualClock::new());
        s.start(&Host::detached()).await.unwrap();
        for _ in 0..4 {
            s.consume(sample_traces(2)).await.unwrap();
        }
        let deadline = Instant::now() + Duration::from_millis(100);
        tokio::time::timeout(Duration::from_secs(60), s.shutdown_by(deadline))
            .await
            .expect("shutdown kept to the service deadline")
            .unwrap();
        assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (0, 8));
    }

    #[tokio::test]
    async fn durable_queue_needs_its_storage_extension() {
        let mut cfg = settings(true, 10);
        cfg.sending_queue.storage = Some("file_storage/q".into());
        let s = stack(
            &TestRecorder::default(),
            cfg,
            Arc::new(ScriptedSender::default()),
            ManualClock::new(),
        );
        let e = s.start(&Host::detached()).await.unwrap_err();
        assert!(e.to_string().contains("sending_queue::storage"), "{e}");
        assert!(e.to_string().contains("file_storage/q"), "{e}");
    }

    /// A storage extension over one shared in-memory store.
    struct MemExtension(Arc<crate::helper::persistent::tests::MemStorage>);

    #[async_trait]
    impl Component for MemExtension {}

    impl vigil_core::Extension for MemExtension {
        fn storage_client(
            &self,
            _owner: &ComponentId,
            _name: &str,
        ) -> Option<Result<Arc<dyn vigil_core::Storage>, vigil_core::StorageError>> {
            Some(Ok(self.0.clone() as Arc<dyn vigil_core::Storage>))
        }
    }

    #[tokio::test]
    async fn durable_queue_keeps_undelivered_data_across_a_stop() {
        durable_run(false).await;
    }

    #[tokio::test]
    async fn durable_queue_with_batch_keeps_undelivered_data_across_a_stop() {
        durable_run(true).await;
    }

    async fn durable_run(batch: bool) {
        let store = Arc::new(crate::helper::persistent::tests::MemStorage::default());
        let mut exts: std::collections::HashMap<ComponentId, Arc<dyn vigil_core::Extension>> =
            Default::default();
        exts.insert(
            ComponentId::parse("file_storage/q").unwrap(),
            Arc::new(MemExtension(store.clone())),
        );
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let host = Host::new(exts, tx);
        let mut cfg = settings(true, 100);
        cfg.sending_queue.storage = Some("file_storage/q".into());
        if batch {
            cfg.sending_queue.batch = Some(BatchSettings {
                min_size: 6,
                partition: crate::helper::queue::Partition {
                    metadata_keys: vec!["X-Tenant".into()],
                },
                ..BatchSettings::default()
            });
        }
        // Every request comes from a client of tenant t1; the metadata must reach the sends of
        // the next run, read back from storage.
        let client = ClientMetadata::from_pairs([("x-tenant", "t1"), ("user-agent", "sdk")]);

        // First run: the backend never answers; a stop leaves everything queued, nothing counted lost.
        let rec = TestRecorder::default();
        let down = Arc::new(ScriptedSender {
            hold: Some(Arc::new(tokio::sync::Semaphore::new(0))),
            ..Default::default()
        });
        let s = stack(&rec, cfg.clone(), down, ManualClock::new());
        s.start(&host).await.unwrap();
        for _ in 0..5 {
            client
                .clone()
                .scope(s.consume(sample_traces(3)))
                .await
                .unwrap();
        }
        s.shutdown().await.unwrap();
        assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (0, 0));
        assert_eq!(store.map.lock().unwrap().len(), 5);

        // Second run: the backend is up; the replayed requests go out and leave storage.
        let rec = TestRecorder::default();
        let up = Arc::new(ScriptedSender::default());
        let s = stack(&rec, cfg, up.clone(), ManualClock::new());
        s.start(&host).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while rec.counter(SENT) < 15 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(rec.counter(SENT), 15);
        s.shutdown().await.unwrap();
        assert!(
            store.map.lock().unwrap().is_empty(),
            "delivered requests are deleted"
        );
        let seen = up.seen.lock().unwrap();
        assert!(!seen.is_empty());
        for (items, tenant, agent) in seen.iter() {
            assert_eq!(
                tenant,
                &["t1"],
                "a send of {items} without its client's tenant"
            );
            // A merged batch keeps only the partition's keys; a single request keeps them all.
            let expected: &[&str] = if batch { &[] } else { &["sdk"] };
            assert_eq!(agent, expected);
        }
    }

    /// `sending_queue::batch::partition::metadata_keys`: requests of different tenants are never
    /// merged, each merged batch is sent with its tenant's metadata, and keys not listed are
    /// dropped. Without the keys, a merge carries no client's headers at all.
    #[tokio::test]
    async fn queue_batch_merges_within_a_partition_and_sends_with_its_metadata() {
        for keys in [vec!["x-tenant".to_string()], vec![]] {
            let rec = TestRecorder::default();
            let sender = Arc::new(ScriptedSender::default());
            let mut cfg = batching(1000, 0, 3_600_000);
            if let Some(b) = cfg.sending_queue.batch.as_mut() {
                b.partition.metadata_keys = keys.clone();
            }
            let s = stack(&rec, cfg, sender.clone(), ManualClock::new());
            let tenant =
                |t: &str| ClientMetadata::from_pairs([("X-Tenant", t), ("user-agent", "sdk")]);
            for (t, n) in [("a", 2), ("b", 3), ("a", 4)] {
                tenant(t).scope(s.consume(sample_traces(n))).await.unwrap();
            }
            s.start(&Host::detached()).await.unwrap();
            s.shutdown().await.unwrap();
            assert_eq!(rec.counter(SENT), 9);
            let mut seen = sender.seen.lock().unwrap().clone();
            seen.sort();
            if keys.is_empty() {
                assert_eq!(seen, vec![(9, vec![], vec![])]);
            } else {
                assert_eq!(
                    seen,
                    vec![
                        (3, vec!["b".to_string()], vec![]),
                        (6, vec!["a".to_string()], vec![])
                    ]
                );
            }
        }
    }

    #[test]
    fn records_keep_client_metadata_and_older_versions_still_read() {
        let meta = Arc::new(
            ClientMetadata::from_pairs([("x-tenant", "t1")])
                .with_auth(vigil_core::component::Principal::named("svc")),
        );
        let job = Job {
            signal: Signal::Traces,
            items: 2,
            request: Count(2),
            meta: Some(Arc::clone(&meta)),
        };
        let bytes = job.to_bytes();
        assert_eq!(bytes[0], JOB_RECORD_V3);
        let Some(Queued::Ready(back)) = Queued::<Count>::from_bytes(&bytes) else {
            panic!("a version 3 record reads back")
        };
        assert_eq!(
            (back.items, back.request, back.meta),
            (2, Count(2), Some(meta.clone()))
        );
        let raw: Queued<Count> = Queued::Raw(sample_traces(4), Some(Arc::clone(&meta)));
        let bytes = raw.to_bytes();
        assert_eq!(bytes[0], RAW_RECORD_V4);
        let back = Queued::<Count>::from_bytes(&bytes).unwrap();
        assert!(matches!(&back, Queued::Raw(d, Some(m)) if *d == sample_traces(4) && *m == meta));
        // Damage inside the metadata reads as a damaged record.
        assert!(Queued::<Count>::from_bytes(&bytes[..12]).is_none());
        // Records as versions before this one wrote them, byte for byte: version 1 (signal tag
        // 0 = traces, 2 items, the request) and version 2 (traces, an empty export request).
        let v1 = [&[1u8, 0][..], &2u64.to_be_bytes(), &2u64.to_be_bytes()].concat();
        let Some(Queued::Ready(old)) = Queued::<Count>::from_bytes(&v1) else {
            panic!("a version 1 record still reads")
        };
        assert_eq!((old.items, old.request, old.meta), (2, Count(2), None));
        assert!(matches!(
            Queued::<Count>::from_bytes(&[2, 0]),
            Some(Queued::Raw(_, None))
        ));
        // Without metadata the old versions are still what is written.
        let plain = Job { meta: None, ..job };
        assert_eq!(plain.to_bytes()[0], JOB_RECORD_V1);
    }
}
