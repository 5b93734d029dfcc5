//! The call chain data flows down. Each processor is a `Consumer` that wraps the next one, and the
//! answer (`Ok`, `Retryable`, `Permanent`) comes back up the same path so the receiver can turn it
//! into the protocol's status code. Only the batch processor and an exporter's sending queue cut
//! the chain and take ownership.

use crate::telemetry::{Signal, Telemetry};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Why data was not taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConsumeError {
    /// Backpressure (a full queue, the memory limiter, a backend outage): the sender should retry.
    #[error("{reason}")]
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Bad data that no retry can fix.
    #[error("{reason}")]
    Permanent { reason: String, rejected: usize },
}

impl ConsumeError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        ConsumeError::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn permanent(reason: impl Into<String>, rejected: usize) -> Self {
        ConsumeError::Permanent {
            reason: reason.into(),
            rejected,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, ConsumeError::Retryable { .. })
    }
}

/// A refusal that may hand the untouched data back to the caller.
#[derive(Debug)]
pub struct Refused {
    pub error: ConsumeError,
    pub data: Option<Telemetry>,
}

/// Anything that takes a batch: a processor, an exporter, a connector's input, a fan-out.
#[async_trait]
pub trait Consumer: Send + Sync {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError>;

    /// Like `consume`, but a consumer that refuses data before doing anything with it may hand it
    /// back. A caller that already acknowledged the data upstream (the batch processor) can then hold
    /// it and retry instead of losing it, without paying for a copy on every send. The default hands
    /// nothing back.
    async fn consume_or_return(&self, data: Telemetry) -> Result<(), Refused> {
        self.consume(data)
            .await
            .map_err(|error| Refused { error, data: None })
    }
}

/// Sends one batch to several consumers. The batch is cloned only for all but the last consumer, so a
/// single-consumer path never copies.
pub struct FanOut {
    consumers: Vec<Arc<dyn Consumer>>,
}

impl FanOut {
    /// A single consumer is returned as is, so no fan-out layer is paid for when there is nothing to fan.
    pub fn build(mut consumers: Vec<Arc<dyn Consumer>>) -> Arc<dyn Consumer> {
        if consumers.len() == 1 {
            if let Some(only) = consumers.pop() {
                return only;
            }
        }
        Arc::new(FanOut { consumers })
    }
}

#[async_trait]
impl Consumer for FanOut {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let Some((last, rest)) = self.consumers.split_last() else {
            return Ok(());
        };
        // Run the branches concurrently: one slow exporter must not add its latency to the others.
        let mut calls = Vec::with_capacity(self.consumers.len());
        for c in rest {
            let c = Arc::clone(c);
            let d = data.clone();
            calls.push(async move { c.consume(d).await });
        }
        let last_call = last.consume(data);
        let (results, last_result) = tokio::join!(futures::future::join_all(calls), last_call);
        let mut err: Option<ConsumeError> = None;
        for r in results.into_iter().chain(std::iter::once(last_result)) {
            if let Err(e) = r {
                // A retryable error wins: the sender must retry, or some branch loses data.
                err = match (err, e) {
                    (Some(prev @ ConsumeError::Retryable { .. }), _) => Some(prev),
                    (_, e) => Some(e),
                };
            }
        }
        err.map_or(Ok(()), Err)
    }
}

/// The consumers a receiver or connector feeds, one per signal it has a pipeline for.
#[derive(Clone, Default)]
pub struct NextConsumers {
    by_signal: BTreeMap<Signal, Arc<dyn Consumer>>,
}

impl NextConsumers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, signal: Signal, consumer: Arc<dyn Consumer>) {
        self.by_signal.insert(signal, consumer);
    }

    pub fn get(&self, signal: Signal) -> Option<&Arc<dyn Consumer>> {
        self.by_signal.get(&signal)
    }

    pub fn signals(&self) -> impl Iterator<Item = Signal> + '_ {
        self.by_signal.keys().copied()
    }

    /// Routes a batch to the consumer of its signal; a signal with no pipeline is a permanent error.
    pub async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        match self.by_signal.get(&data.signal()) {
            Some(c) => c.consume(data).await,
            None => Err(ConsumeError::permanent(
                format!(
                    "no {} pipeline is configured for this component",
                    data.signal()
                ),
                data.item_count(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Sink(Mutex<usize>, Option<ConsumeError>);

    #[async_trait]
    impl Consumer for Sink {
        async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
            *self.0.lock().unwrap() += data.item_count() + 1;
            match &self.1 {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            }
        }
    }

    #[tokio::test]
    async fn fanout_reaches_every_branch_and_prefers_retryable() {
        let a = Arc::new(Sink(Mutex::new(0), Some(ConsumeError::permanent("bad", 1))));
        let b = Arc::new(Sink(Mutex::new(0), Some(ConsumeError::retryable("full"))));
        let c = Arc::new(Sink(Mutex::new(0), None));
        let f = FanOut::build(vec![a.clone(), b.clone(), c.clone()]);
        let r = f.consume(Telemetry::Logs(vec![])).await;
        assert!(matches!(r, Err(ConsumeError::Retryable { .. })), "{r:?}");
        for s in [&a, &b, &c] {
            assert_eq!(*s.0.lock().unwrap(), 1);
        }
    }
}
