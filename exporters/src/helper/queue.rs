//! `sending_queue`: where an exporter takes ownership of data and lets the pipeline return while
//! consumers deliver it in the background. The `Queue` trait is the seam between the in-memory
//! `MemoryQueue` here and the durable `PersistentQueue` (`storage: file_storage/x`). A full queue refuses new data
//! rather than dropping it, so the refusal travels back to the client as backpressure.
//! `sending_queue::batch` merges what the queue holds into larger requests after it, so that the
//! queue stays the one owner of acknowledged data (docs/delivery.md).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;

/// The most `num_consumers` a queue may have. otelcol sets no bound, but 100 million consumers took
/// 3.5 GB before sending anything; a thousand parallel requests is far beyond what one node needs.
pub const MAX_NUM_CONSUMERS: usize = 1000;

/// `sending_queue`, as otelcol's exporterhelper spells it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub enabled: bool,
    /// Tasks sending from the queue in parallel.
    pub num_consumers: usize,
    /// Capacity, in `sizer` units.
    pub queue_size: usize,
    pub sizer: Sizer,
    /// Wait for room instead of refusing when the queue is full; see [`QueueConfig::blocks`].
    pub block_on_overflow: bool,
    /// `blocking`: otelcol's name for `block_on_overflow` before v0.123, deprecated there and still
    /// in published configs. otelcol of those versions reads both keys and, when `blocking` is set,
    /// takes its value over `block_on_overflow`'s; so does [`QueueConfig::blocks`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocking: Option<bool>,
    /// otelcol's switch to make the pipeline wait for the export's result. Only `false` (the
    /// default) is built: vigil's queue hands data over and returns, see `validate`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub wait_for_result: bool,
    /// A storage extension (`file_storage/x`) that makes the queue durable.
    pub storage: Option<String>,
    /// Merge queued requests into larger ones before sending; off unless the section is present.
    pub batch: Option<BatchSettings>,
}

/// `sending_queue::batch`, as otelcol's exporterhelper spells it: queued requests are merged until
/// `min_size` is reached or the oldest has waited `flush_timeout`, and cut at `max_size`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSettings {
    #[serde(with = "vigil_core::config::duration")]
    pub flush_timeout: std::time::Duration,
    /// In `sizer` units: a batch this large is sent without waiting for `flush_timeout`.
    pub min_size: usize,
    /// In `sizer` units; `0` means no limit. Only the `items` sizer can cut a request: with
    /// `requests` or `bytes` a merged batch is sent once it reaches `min_size`, uncut.
    pub max_size: usize,
    pub sizer: Sizer,
    /// Which requests may be merged: only those whose client metadata agree on these keys (and
    /// on the authenticated principal), so a merged batch keeps them for `headers_setter`.
    pub partition: Partition,
}

/// `sending_queue::batch::partition`, as otelcol's exporterhelper spells it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Partition {
    /// Client metadata keys (case-insensitive) whose values separate batches; a merged batch
    /// carries these keys and no others.
    pub metadata_keys: Vec<String>,
}

/// How many batches may gather at once (one per signal and partition). One more partition sends
/// the batch that has waited longest, early, and counts it
/// (`vigil_exporter_queue_batches_flushed_early`): nothing is lost, batches only get smaller.
pub const MAX_OPEN_PARTITIONS: usize = 1000;

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            flush_timeout: std::time::Duration::from_millis(200),
            min_size: 8192,
            max_size: 0,
            sizer: Sizer::Items,
            partition: Partition::default(),
        }
    }
}

impl BatchSettings {
    /// A batch's size in this sizer's units.
    pub fn units(&self, data: &vigil_core::Telemetry) -> usize {
        self.sizer.measure(data)
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.flush_timeout.is_zero() {
            return Err(("batch::flush_timeout", "must be greater than zero".into()));
        }
        if self.max_size > 0 && self.max_size < self.min_size {
            return Err((
                "batch::max_size",
                format!(
                    "max_size ({}) must be greater or equal to min_size ({})",
                    self.max_size, self.min_size
                ),
            ));
        }
        Ok(())
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            sizer: Sizer::Requests,
            block_on_overflow: false,
            blocking: None,
            wait_for_result: false,
            storage: None,
            batch: None,
        }
    }
}

impl QueueConfig {
    /// Whether a full queue makes the caller wait: `blocking` when set, else `block_on_overflow`.
    pub fn blocks(&self) -> bool {
        self.blocking.unwrap_or(self.block_on_overflow)
    }

    /// Checks the values otelcol rejects. Returns the offending key and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.enabled {
            if self.batch.is_some() {
                // otelcol can batch without a queue by making callers wait; vigil batches only
                // after the queue, where the data has one owner.
                return Err((
                    "batch",
                    "needs the sending queue: remove `enabled: false`, or batch with the `batch` processor"
                        .into(),
                ));
            }
            return Ok(());
        }
        if let Some(b) = &self.batch {
            b.validate()?;
        }
        if self.wait_for_result {
            let why = if self.storage.is_some() {
                // otelcol's own refusal, kept so that the message matches its.
                "is not supported with a persistent queue configured with `storage`"
            } else {
                "true is not built in vigil: the queue returns once it holds the data; remove the \
                 key, or set `enabled: false` to make the pipeline wait for each export"
            };
            return Err(("wait_for_result", why.into()));
        }
        if self.num_consumers == 0 {
            return Err(("num_consumers", "must be at least 1".into()));
        }
        if self.num_consumers > MAX_NUM_CONSUMERS {
            return Err((
                "num_consumers",
                format!(
                    "{} is more than {MAX_NUM_CONSUMERS}: each consumer is a task with its own buffers",
                    self.num_consumers
                ),
            ));
        }
        if self.queue_size == 0 {
            return Err(("queue_size", "must be at least 1".into()));
        }
        if let Some(s) = &self.storage {
            vigil_core::ComponentId::parse(s).map_err(|e| ("storage", e))?;
        }
        Ok(())
    }
}

/// What `queue_size` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sizer {
    /// Batches, whatever their size.
    #[default]
    Requests,
    /// Spans, data points or log records.
    Items,
    /// Bytes of the batch as an uncompressed OTLP protobuf request, as otelcol's `bytes` sizer
    /// counts them: a bound on memory rather than on counts. Measuring walks the batch once.
    Bytes,
}

impl Sizer {
    /// `data`'s size in this sizer's unit.
    pub fn measure(self, data: &vigil_core::Telemetry) -> usize {
        use vigil_core::Telemetry;
        fn proto_len<M: prost::Message>(entries: &[M]) -> usize {
            entries
                .iter()
                .map(|m| prost::encoding::message::encoded_len(1, m))
                .sum()
        }
        match self {
            Sizer::Requests => 1,
            Sizer::Items => data.item_count(),
            Sizer::Bytes => match data {
                Telemetry::Traces(rs) => proto_len(rs),
                Telemetry::Metrics(rm) => proto_len(rm),
                Telemetry::Logs(rl) => proto_len(rl),
                Telemetry::Profiles(p) => prost::Message::encoded_len(p),
            },
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Sizer::Requests => "requests",
            Sizer::Items => "items",
            Sizer::Bytes => "bytes",
        }
    }
}

impl std::fmt::Display for Sizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.unit())
    }
}

/// A queued value that a durable queue can write to storage and read back after a restart. Every
/// `Sender::Request` implements it, so any network exporter can have `sending_queue::storage`.
pub trait Persist: Sized {
    fn to_bytes(&self) -> Vec<u8>;
    /// `None` for a record that is corrupt or from an incompatible version: the queue skips and
    /// counts it instead of failing.
    fn from_bytes(bytes: &[u8]) -> Option<Self>;
}

/// The one-byte tag of a signal in persisted records.
pub fn signal_tag(signal: vigil_core::Signal) -> u8 {
    match signal {
        vigil_core::Signal::Traces => 0,
        vigil_core::Signal::Metrics => 1,
        vigil_core::Signal::Logs => 2,
        vigil_core::Signal::Profiles => 3,
    }
}

/// The signal of a persisted tag.
pub fn signal_from_tag(tag: u8) -> Option<vigil_core::Signal> {
    vigil_core::Signal::ALL.get(tag as usize).copied()
}

/// An item taken off a queue. `id` is the queue's own handle for it: a durable queue deletes the
/// stored copy only when told the item is `done`.
#[derive(Debug)]
pub struct Popped<T> {
    pub item: T,
    pub size: usize,
    pub id: u64,
}

/// Why an item was not queued. Each variant hands the item back.
#[derive(Debug)]
pub enum PushError<T> {
    /// No room now; retrying later may work.
    Full(T),
    /// Larger than the whole queue: it can never fit.
    TooLarge(T),
    /// The queue is shutting down.
    Closed(T),
    /// A durable queue could not write the item (a full disk, a failing store); retrying later may
    /// work. The string says why.
    Storage(T, String),
}

/// A bounded FIFO shared by producers (the pipeline) and consumers (the sending tasks).
#[async_trait]
pub trait Queue<T: Send + 'static>: Send + Sync {
    /// Adds an item that counts `size` against the capacity. With `block`, waits for room; otherwise
    /// a full queue answers `Full` at once.
    async fn push(&self, item: T, size: usize, block: bool) -> Result<(), PushError<T>>;
    /// The oldest item; waits while the queue is empty and open, `None` once closed and empty.
    async fn pop(&self) -> Option<Popped<T>>;
    /// The popped item was delivered or given up for good. A durable queue deletes it now; an item
    /// never marked done is replayed at the next start.
    fn done(&self, _id: u64) {}
    /// Refuses new items and lets consumers drain what is left. A durable queue stops handing out
    /// items instead: what is left stays in storage for the next start.
    fn close(&self);
    /// Waits until every `done` so far is written through, so a stop does not replay delivered items.
    async fn flush(&self) {}
    /// Whether undelivered items survive a restart.
    fn is_durable(&self) -> bool {
        false
    }
    /// Used capacity, in sizer units.
    fn size(&self) -> usize;
    fn capacity(&self) -> usize;
}

struct State<T> {
    items: VecDeque<(T, usize)>,
    used: usize,
    closed: bool,
    next_id: u64,
}

/// The in-memory queue: a deque under a mutex, with two notifiers for "not empty" and "not full".
pub struct MemoryQueue<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    not_empty: Notify,
    not_full: Notify,
}

impl<T> MemoryQueue<T> {
    pub fn new(capacity: usize) -> Self {
        MemoryQueue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                used: 0,
                closed: false,
                next_id: 0,
            }),
            capacity,
            not_empty: Notify::new(),
            not_full: Notify::new(),
        }
    }
}

#[async_trait]
impl<T: Send + 'static> Queue<T> for MemoryQueue<T> {
    async fn push(&self, item: T, size: usize, block: bool) -> Result<(), PushError<T>> {
        if size > self.capacity {
            return Err(PushError::TooLarge(item));
        }
        loop {
            // Register for the wake-up before looking, so a pop between the check and the wait is
            // not missed.
            let room = self.not_full.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut st = vigil_core::lock(&self.state);
                if st.closed {
                    return Err(PushError::Closed(item));
                }
                if st.used + size <= self.capacity {
                    st.used += size;
                    st.items.push_back((item, size));
                    drop(st);
                    self.not_empty.notify_one();
                    return Ok(());
                }
                if !block {
                    return Err(PushError::Full(item));
                }
            }
            room.await;
        }
    }

    async fn pop(&self) -> Option<Popped<T>> {
        loop {
            let ready = self.not_empty.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            {
                let mut st = vigil_core::lock(&self.state);
                if let Some((item, size)) = st.items.pop_front() {
                    st.used -= size;
                    st.next_id += 1;
                    let id = st.next_id;
                    let more = !st.items.is_empty();
                    drop(st);
                    self.not_full.notify_waiters();
                    if more {
                        // Pass the baton: another consumer may be waiting for the remaining items.
                        self.not_empty.notify_one();
                    }
                    return Some(Popped { item, size, id });
                }
                if st.closed {
                    return None;
                }
            }
            ready.await;
        }
    }

    fn close(&self) {
        vigil_core::lock(&self.state).closed = true;
        self.not_empty.notify_waiters();
        self.not_full.notify_waiters();
    }

    fn size(&self) -> usize {
        vigil_core::lock(&self.state).used
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn defaults_are_otelcols() {
        let c: QueueConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(c, QueueConfig::default());
        assert_eq!((c.num_consumers, c.queue_size), (10, 1000));
        let c: QueueConfig = serde_json::from_value(
            serde_json::json!({"sizer": "items", "storage": "file_storage/q"}),
        )
        .unwrap();
        assert_eq!(c.sizer, Sizer::Items);
        assert!(c.validate().is_ok());
        let c: QueueConfig = serde_json::from_value(
            serde_json::json!({"sizer": "bytes", "batch": {"sizer": "bytes"}}),
        )
        .unwrap();
        assert_eq!(
            (c.sizer, c.batch.map(|b| b.sizer)),
            (Sizer::Bytes, Some(Sizer::Bytes))
        );
        assert!(
            serde_json::from_value::<QueueConfig>(serde_json::json!({"sizer": "kilobytes"}))
                .is_err()
        );
        let c: QueueConfig = serde_json::from_value(serde_json::json!({"batch": {}})).unwrap();
        assert_eq!(c.batch, Some(BatchSettings::default()));
        let b = c.batch.clone().unwrap();
        assert_eq!(
            (b.flush_timeout, b.min_size, b.max_size, b.sizer),
            (Duration::from_millis(200), 8192, 0, Sizer::Items)
        );
        let c: QueueConfig =
            serde_json::from_value(serde_json::json!({"batch": {"min_size": 100, "max_size": 10}}))
                .unwrap();
        assert_eq!(c.validate().unwrap_err().0, "batch::max_size");
        let c: QueueConfig =
            serde_json::from_value(serde_json::json!({"batch": {"flush_timeout": "0s"}})).unwrap();
        assert_eq!(c.validate().unwrap_err().0, "batch::flush_timeout");
        let c: QueueConfig =
            serde_json::from_value(serde_json::json!({"enabled": false, "batch": {}})).unwrap();
        assert_eq!(c.validate().unwrap_err().0, "batch");
        let bad = QueueConfig {
            num_consumers: 0,
            ..QueueConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "num_consumers");
        let huge = QueueConfig {
            num_consumers: 100_000_000,
            ..QueueConfig::default()
        };
        assert_eq!(huge.validate().unwrap_err().0, "num_consumers");
    }

    #[test]
    fn otelcol_deprecated_and_newer_keys() {
        // `blocking` is the pre-v0.123 spelling of `block_on_overflow`.
        let c: QueueConfig = serde_json::from_value(serde_json::json!({"blocking": true})).unwrap();
        assert!(c.blocks());
        // Both keys, as configs written across the rename have them: `blocking` decides.
        let c: QueueConfig = serde_json::from_value(
            serde_json::json!({"blocking": false, "block_on_overflow": true}),
        )
        .unwrap();
        assert!(!c.blocks());
        let c: QueueConfig =
            serde_json::from_value(serde_json::json!({"block_on_overflow": true})).unwrap();
        assert!(c.blocks());
        let c: QueueConfig =
            serde_json::from_value(serde_json::json!({"wait_for_result": false})).unwrap();
        assert!(c.validate().is_ok());
        let c: QueueConfig =
            serde_json::from_value(serde_json::json!({"wait_for_result": true})).unwrap();
        let (key, why) = c.validate().unwrap_err();
        assert_eq!(key, "wait_for_result");
        assert!(why.contains("not built"), "{why}");
        let c: QueueConfig = serde_json::from_value(
            serde_json::json!({"wait_for_result": true, "storage": "file_storage"}),
        )
        .unwrap();
        assert!(c.validate().unwrap_err().1.contains("persistent queue"));
    }

    #[tokio::test]
    async fn full_refuses_and_hands_back() {
        let q = MemoryQueue::new(3);
        q.push("a", 2, false).await.unwrap();
        assert!(matches!(
            q.push("b", 2, false).await,
            Err(PushError::Full("b"))
        ));
        assert!(matches!(
            q.push("c", 4, false).await,
            Err(PushError::TooLarge("c"))
        ));
        q.push("d", 1, false).await.unwrap();
        assert_eq!(q.size(), 3);
        let p = q.pop().await.unwrap();
        assert_eq!((p.item, p.size), ("a", 2));
        assert_eq!(q.size(), 1);
    }

    #[tokio::test]
    async fn blocking_push_waits_for_room() {
        let q = Arc::new(MemoryQueue::new(1));
        q.push(1, 1, true).await.unwrap();
        let q2 = q.clone();
        let pusher = tokio::spawn(async move { q2.push(2, 1, true).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!pusher.is_finished());
        assert_eq!(q.pop().await.unwrap().item, 1);
        assert!(pusher.await.unwrap());
        assert_eq!(q.pop().await.unwrap().item, 2);
    }

    #[tokio::test]
    async fn close_drains_then_ends() {
        let q = Arc::new(MemoryQueue::new(10));
        for i in 0..3 {
            q.push(i, 1, false).await.unwrap();
        }
        q.close();
        assert!(matches!(
            q.push(9, 1, false).await,
            Err(PushError::Closed(9))
        ));
        let mut got = vec![];
        while let Some(p) = q.pop().await {
            got.push(p.item);
        }
        assert_eq!(got, vec![0, 1, 2]);
        // A consumer already waiting on an empty queue is released by close.
        let q = Arc::new(MemoryQueue::<u8>::new(1));
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.pop().await.is_none() });
        tokio::time::sleep(Duration::from_millis(10)).await;
        q.close();
        assert!(waiter.await.unwrap());
    }
}
