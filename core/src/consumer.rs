//! The call chain data flows down. Each processor is a `Consumer` that wraps the next one, and the
//! answer (`Ok`, `Retryable`, `Permanent`) comes back up the same path so the receiver can turn it
//! into the protocol's status code. Only an exporter's sending queue cuts the chain and takes
//! ownership (docs/delivery.md): every other component, `batch` included, answers with what the next
//! one answered, so a refusal anywhere reaches the client whatever the pipeline's shape.

pub mod split;

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

/// Anything that takes a batch: a processor, an exporter, a connector's input, a fan-out.
#[async_trait]
pub trait Consumer: Send + Sync {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError>;
}

tokio::task_local! {
    static CLIENT_METADATA: Arc<ClientMetadata>;
}

/// What a receiver knows of the client that sent the data in hand, as otelcol's `client.Info`:
/// with `include_metadata: true`, its request headers or gRPC metadata (`Metadata`); with an
/// authenticator, the principal it proved (`Auth`). It travels with the call down the pipeline as
/// a task-local value, so `Consumer::consume` keeps one argument. The `batch` processor's
/// `metadata_keys` read it (and pass only those keys on), the exporters' sending queue keeps it
/// with each queued request, and `headers_setter`'s `from_context` and `from_attribute` copy from
/// it to outgoing headers.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct ClientMetadata {
    /// Lower-case keys; every value a key had, in order.
    entries: BTreeMap<String, Vec<String>>,
    /// Who the receiver's authenticator found the client to be.
    auth: Option<crate::component::Principal>,
    /// The address the request came from (otelcol's `client.Info.Addr`), for `k8sattributes`'
    /// `connection` association: set by every listener on `net::serve`, whatever the options.
    addr: Option<std::net::IpAddr>,
}

/// Keys and the principal's name only: header values often carry credentials (`authorization`)
/// and must not reach a log line through a `{:?}` of a queued request.
impl std::fmt::Debug for ClientMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientMetadata")
            .field("keys", &self.entries.keys().collect::<Vec<_>>())
            .field("auth", &self.auth.as_ref().map(|p| &p.name))
            .field("addr", &self.addr)
            .finish()
    }
}

impl ClientMetadata {
    /// The same metadata, with the principal the receiver's authenticator proved.
    pub fn with_auth(mut self, principal: crate::component::Principal) -> Self {
        self.auth = Some(principal);
        self
    }

    /// The same metadata, with the address the request came from.
    pub fn with_addr(mut self, addr: std::net::IpAddr) -> Self {
        self.addr = Some(addr);
        self
    }

    /// The address the request came from, when the receiver knows it.
    pub fn addr(&self) -> Option<std::net::IpAddr> {
        self.addr
    }

    /// What a request handler passes down the pipeline: the metadata a layer attached (headers,
    /// principal), with the peer address the server loop put in the request's extensions.
    pub fn of_request(
        meta: Option<&ClientMetadata>,
        peer: Option<&crate::net::PeerAddr>,
    ) -> Option<ClientMetadata> {
        match (meta, peer) {
            (Some(m), Some(p)) => Some(m.clone().with_addr(p.0.ip())),
            (Some(m), None) => Some(m.clone()),
            (None, Some(p)) => Some(ClientMetadata::default().with_addr(p.0.ip())),
            (None, None) => None,
        }
    }

    /// The authenticated principal, when the receiver had an authenticator.
    pub fn auth(&self) -> Option<&crate::component::Principal> {
        self.auth.as_ref()
    }

    /// Whether there is nothing to carry (no metadata and no principal).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.auth.is_none()
    }

    /// The headers of a request; values that are not text are left out.
    pub fn from_headers(headers: &tonic::codegen::http::HeaderMap) -> Self {
        let mut entries: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in headers {
            if let Ok(v) = v.to_str() {
                entries
                    .entry(k.as_str().to_ascii_lowercase())
                    .or_default()
                    .push(v.to_string());
            }
        }
        ClientMetadata {
            entries,
            auth: None,
            addr: None,
        }
    }

    /// Metadata from key-value pairs (keys are case-insensitive), for receivers without headers.
    pub fn from_pairs<K: AsRef<str>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut entries: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            entries
                .entry(k.as_ref().to_ascii_lowercase())
                .or_default()
                .push(v.into());
        }
        ClientMetadata {
            entries,
            auth: None,
            addr: None,
        }
    }

    /// The values of `key` (case-insensitive); empty when the client did not send it.
    pub fn get(&self, key: &str) -> &[String] {
        self.entries
            .get(&key.to_ascii_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    /// Every key (lower-case) with its values, in key order: what a durable queue stores.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Runs `f` (a pipeline call) with this metadata visible to every component it reaches.
    pub async fn scope<F: std::future::Future>(self, f: F) -> F::Output {
        CLIENT_METADATA.scope(Arc::new(self), f).await
    }

    /// The metadata of the call in progress, if its receiver passed any.
    pub fn current() -> Option<Arc<ClientMetadata>> {
        CLIENT_METADATA.try_with(Arc::clone).ok()
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
    /// Each pipeline's head by pipeline id (`traces/x`), for connectors that route to named
    /// pipelines (`routing`); receivers do not get them.
    by_pipeline: BTreeMap<String, Arc<dyn Consumer>>,
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

    /// Records the head of one pipeline this connector feeds.
    pub fn insert_pipeline(&mut self, pipeline: impl Into<String>, consumer: Arc<dyn Consumer>) {
        self.by_pipeline.insert(pipeline.into(), consumer);
    }

    /// The head of a named pipeline this connector feeds.
    pub fn pipeline(&self, pipeline: &str) -> Option<&Arc<dyn Consumer>> {
        self.by_pipeline.get(pipeline)
    }

    /// Every pipeline this connector feeds, by id, in id order (`roundrobin` spreads over them).
    pub fn pipelines(&self) -> impl Iterator<Item = (&str, &Arc<dyn Consumer>)> + '_ {
        self.by_pipeline.iter().map(|(k, v)| (k.as_str(), v))
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
    #[test]
    fn client_metadata_debug_shows_keys_not_values() {
        let m = super::ClientMetadata::from_pairs([("Authorization", "Bearer s3cret")]);
        let shown = format!("{m:?}");
        assert!(
            shown.contains("authorization") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

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
