//! The delivery stack every network exporter shares, after otelcol's exporterhelper: classify a
//! failure as retryable or permanent, retry with backoff, queue with backpressure, and count what
//! was sent and what was lost. An exporter writes only a `Sender` (encode once, send once) and wraps
//! it in a `SendStack`.

pub mod auth;
pub mod aws;
pub mod classify;
pub mod counters;
pub mod cwlogs;
pub mod encode;
pub mod events;
pub mod http;
pub mod meta;
pub mod parts;
pub mod persistent;
pub mod queue;
pub mod retry;
mod stack;
#[cfg(test)]
pub mod test_http;
pub mod tls;

pub use classify::{Delivered, SendError};
pub use counters::QueueGauges;
pub use persistent::{PersistentQueue, Replayed};
pub use queue::{MemoryQueue, Persist, Popped, PushError, Queue, QueueConfig, Sizer};
pub use retry::{Backoff, Clock, Retry, RetryConfig, TokioClock};
pub use stack::{Job, SendSettings, SendStack, Sender};
pub use vigil_core::codec::Compression;
