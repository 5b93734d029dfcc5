//! `loadbalancing`: spreads traces, metrics and logs over a set of OTLP backends so that all data of
//! one routing key (a trace, a service, a metric stream) reaches the same backend, as otelcol's
//! exporter of that name does for tail sampling and span metrics behind a gateway tier. Backends
//! come from a resolver (`static`, `dns`, `k8s`); a consistent hashing ring (`ring`) maps keys to
//! them, so a backend joining or leaving moves only its share of the keys.
//!
//! Each backend is an `otlp` exporter built from `protocol::otlp`, with its own sending queue and
//! retries: a slow backend fills only its own queue. A batch is cut by routing key (`route`) and
//! each part goes to its backend's queue. When a backend leaves the ring, what its queue still
//! holds, and every retry of a request that failed on it, is routed again over the ring as it is
//! now, so it reaches the backend that owns those keys today instead of being lost.

mod resolver;
pub mod ring;
pub mod route;

use crate::helper::queue::{signal_from_tag, signal_tag, Persist, QueueConfig};
use crate::helper::{Delivered, RetryConfig, SendError, SendSettings, SendStack, Sender};
use crate::otlp::{backend_transport, GrpcRequest, GrpcSender, OtlpConfig};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use resolver::{Lookup, ResolverConfig};
use ring::HashRing;
use route::RoutingKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use vigil_core::codec::encode::{decode_proto_request, proto_request};
use vigil_core::config::duration;
use vigil_core::factory::{DynExporterFactory, ExporterFactory, FactoryBase};
use vigil_core::{
    lock, Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Exporter,
    Host, Settings, Signal, Stability, Telemetry,
};

/// At most this many backends are used; further endpoints a resolver returns are left out (in
/// endpoint order, so every agent leaves out the same ones), counted in
/// `vigil_loadbalancer_backends_ignored` and logged.
pub const MAX_BACKENDS: usize = 256;

/// How long a backend that left the ring keeps routing what its queue held before it is stopped;
/// what is left then is counted as lost by its queue.
const LEAVING_DRAIN: Duration = Duration::from_secs(30);

/// `protocol`: only `otlp`, as in otelcol.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Protocol {
    /// The `otlp` exporter's keys, without `endpoint` (each backend is one); absent means the
    /// `otlp` exporter's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<OtlpConfig>,
}

impl Protocol {
    /// The per-backend template.
    fn template(&self) -> Result<OtlpConfig, ConfigError> {
        match &self.otlp {
            Some(t) => Ok(t.clone()),
            None => serde_json::from_value(serde_json::json!({}))
                .map_err(|e| cfg_err("protocol::otlp", format!("cannot take the defaults: {e}"))),
        }
    }
}

fn disabled_queue() -> QueueConfig {
    QueueConfig {
        enabled: false,
        ..QueueConfig::default()
    }
}

fn disabled_retry() -> RetryConfig {
    RetryConfig {
        enabled: false,
        ..RetryConfig::default()
    }
}

/// The `loadbalancing` exporter config, with otelcol's keys.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancingConfig {
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub resolver: ResolverConfig,
    /// Unset: `traceID` for traces, `service` for logs and metrics, as otelcol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<RoutingKey>,
    /// The exporter-level stack, around routing (off by default, as otelcol). With
    /// `sending_queue` on, the backends' own queues are off, as otelcol does, so data is queued
    /// once; a retry at this level routes the whole batch again.
    #[serde(default, with = "duration")]
    pub timeout: Duration,
    #[serde(default = "disabled_retry")]
    pub retry_on_failure: RetryConfig,
    #[serde(default = "disabled_queue")]
    pub sending_queue: QueueConfig,
}

fn cfg_err(path: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::at(path, msg)
}

impl LoadBalancingConfig {
    fn validate(&self, id: &ComponentId) -> Result<(), ConfigError> {
        let r = &self.resolver;
        let set = [
            r.static_.is_some(),
            r.dns.is_some(),
            r.k8s.is_some(),
            r.aws_cloud_map.is_some(),
        ];
        match set.iter().filter(|s| **s).count() {
            0 => {
                return Err(cfg_err(
                    "resolver",
                    "one resolver is required: static (hostnames), dns (hostname) or k8s (service)",
                ))
            }
            1 => {}
            _ => {
                return Err(cfg_err(
                    "resolver",
                    "only one of static, dns, k8s and aws_cloud_map can be set",
                ))
            }
        }
        if r.aws_cloud_map.is_some() {
            return Err(cfg_err(
                "resolver::aws_cloud_map",
                "is not supported by vigil; use static, dns or k8s",
            ));
        }
        if let Some(s) = &r.static_ {
            if s.hostnames.is_empty() {
                return Err(cfg_err(
                    "resolver::static::hostnames",
                    "must list at least one backend (host or host:port)",
                ));
            }
            for (i, h) in s.hostnames.iter().enumerate() {
                if h.trim().is_empty() || h.contains("://") || h.contains('/') {
                    return Err(cfg_err(
                        &format!("resolver::static::hostnames::{i}"),
                        format!("{h:?} is not a host or host:port"),
                    ));
                }
            }
        }
        if let Some(d) = &r.dns {
            if d.hostname.trim().is_empty() {
                return Err(cfg_err(
                    "resolver::dns::hostname",
                    "is required (the name whose addresses are the backends)",
                ));
            }
            d.port
                .get()
                .map_err(|e| cfg_err("resolver::dns::port", e))?;
            if d.interval.is_zero() {
                return Err(cfg_err("resolver::dns::interval", "must be more than 0s"));
            }
            if d.timeout.is_zero() {
                return Err(cfg_err("resolver::dns::timeout", "must be more than 0s"));
            }
        }
        if let Some(k) = &r.k8s {
            if k.service.trim().is_empty() {
                return Err(cfg_err(
                    "resolver::k8s::service",
                    "is required (name or name.namespace of the backends' Service)",
                ));
            }
            if let Some(i) = k.ports.iter().position(|p| *p == 0) {
                return Err(cfg_err(
                    &format!("resolver::k8s::ports::{i}"),
                    "expected a port number from 1 to 65535, got 0",
                ));
            }
            if k.timeout.is_zero() {
                return Err(cfg_err("resolver::k8s::timeout", "must be more than 0s"));
            }
        }
        if self.routing_key == Some(RoutingKey::Attributes) {
            return Err(cfg_err(
                "routing_key",
                "attributes (with routing_attributes) is not supported by vigil yet; use \
                 traceID, service, resource, metric or streamID",
            ));
        }
        self.protocol
            .template()?
            .validate_template(id)
            .map_err(|e| under_protocol(e, id))?;
        SendSettings {
            timeout: self.timeout,
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
        }
        .validate(id)?;
        if self.sending_queue.batch.is_some() {
            return Err(cfg_err(
                "sending_queue::batch",
                "is not supported at the loadbalancing level; batch in protocol::otlp::sending_queue",
            ));
        }
        Ok(())
    }

    /// The routing key for a pipeline of `signal`.
    fn key_for(&self, signal: Signal) -> RoutingKey {
        self.routing_key
            .unwrap_or_else(|| RoutingKey::default_for(signal))
    }

    /// Whether the exporter-level stack is on.
    fn front(&self) -> bool {
        self.sending_queue.enabled || self.retry_on_failure.enabled
    }
}

/// Moves an error the `otlp` template reported under `protocol::otlp`.
fn under_protocol(mut e: ConfigError, id: &ComponentId) -> ConfigError {
    let own = format!("{}::{}", ComponentKind::Exporter.section(), id);
    if e.location.is_empty() || e.location == own {
        e.location = own;
        e.path = if e.path.is_empty() {
            "protocol::otlp".into()
        } else {
            format!("protocol::otlp::{}", e.path)
        };
    }
    e.more = std::mem::take(&mut e.more)
        .into_iter()
        .map(|m| under_protocol(m, id))
        .collect();
    e
}

/// The ring and the backend behind each of its endpoints, swapped whole on every change.
struct Snapshot {
    ring: HashRing,
    /// `backends[i]` serves `ring.endpoints()[i]`.
    backends: Vec<Arc<Backend>>,
}

/// One backend: an `otlp` transport behind its own sending queue and retries.
struct Backend {
    endpoint: String,
    stack: SendStack<Forwarder>,
    /// Set when the backend left the ring: its queue routes what it holds again.
    left: Arc<AtomicBool>,
}

/// A backend's transport: sends to the backend while it is in the ring, and routes again once it
/// has left.
struct Forwarder {
    /// Holds the `otlp` transport (its own queue and retry are off).
    transport: SendStack<GrpcSender>,
    left: Arc<AtomicBool>,
    balancer: Weak<Balancer>,
    endpoint: String,
}

#[async_trait]
impl Sender for Forwarder {
    type Request = GrpcRequest;

    fn prepare(&self, data: &Telemetry) -> Result<GrpcRequest, SendError> {
        self.transport.sender().prepare(data)
    }

    async fn send(&self, req: &GrpcRequest) -> Result<Delivered, SendError> {
        if !self.left.load(Ordering::Acquire) {
            return self.transport.sender().send(req).await;
        }
        let Some(balancer) = self.balancer.upgrade() else {
            return Err(SendError::retryable(
                "the loadbalancing exporter is stopping",
            ));
        };
        let data = decode_proto_request(req.signal(), req.body()).map_err(|e| {
            SendError::permanent(format!(
                "cannot decode a queued request of {} to route it again: {e}",
                self.endpoint
            ))
        })?;
        let items = data.item_count() as u64;
        balancer.route(data).await.map_err(|e| match e {
            ConsumeError::Retryable {
                reason,
                retry_after,
            } => SendError::Retryable {
                reason,
                retry_after,
            },
            ConsumeError::Permanent { reason, .. } => SendError::permanent(reason),
        })?;
        metrics::counter!("vigil_loadbalancer_rerouted_items", "exporter" => balancer.id.to_string())
            .increment(items);
        Ok(Delivered::default())
    }

    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        self.transport.sender().start(host).await
    }
}

/// The routing core, shared by the exporter, its resolver task and every backend's forwarder.
struct Balancer {
    id: ComponentId,
    cfg: LoadBalancingConfig,
    /// `protocol::otlp`, each backend a copy aimed at it.
    template: OtlpConfig,
    /// `protocol::otlp`'s stack settings; the queue is off when the exporter-level one is on.
    backend_settings: SendSettings,
    state: arc_swap::ArcSwap<Snapshot>,
    /// Every backend that exists, by endpoint (in the ring or leaving).
    live: Mutex<BTreeMap<String, Arc<Backend>>>,
    /// One ring change at a time.
    updating: tokio::sync::Mutex<()>,
    host: OnceLock<Host>,
    tasks: vigil_core::Tasks,
    me: Weak<Balancer>,
}

impl Balancer {
    /// Routes a batch over the ring as it is now; answers the worst of the backends' answers.
    async fn route(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let signal = data.signal();
        let key = self.cfg.key_for(signal);
        if !key.signals().contains(&signal) {
            // `vigil validate` refuses this; only a caller that skipped it gets here.
            return Err(ConsumeError::permanent(
                format!(
                    "exporters::{}::routing_key: {} cannot route {signal}",
                    self.id,
                    key.as_str()
                ),
                data.item_count(),
            ));
        }
        let snap = self.state.load_full();
        if snap.ring.is_empty() {
            return Err(ConsumeError::retryable(format!(
                "exporter {}: no backend is known yet (the resolver has found none)",
                self.id
            )));
        }
        let salt: [u8; 16] = rand::random();
        let mut parts = route::split(data, key, &snap.ring, salt);
        if parts.len() == 1 {
            let (b, part) = parts.remove(0);
            return snap.backends[b].stack.consume(part).await;
        }
        let sends = parts
            .into_iter()
            .map(|(b, part)| snap.backends[b].stack.consume(part));
        let mut retryable = None;
        let mut rejected = 0;
        let mut reasons = Vec::new();
        for r in futures::future::join_all(sends).await {
            match r {
                Ok(()) => {}
                Err(e @ ConsumeError::Retryable { .. }) => retryable = Some(e),
                Err(ConsumeError::Permanent {
                    reason,
                    rejected: n,
                }) => {
                    rejected += n;
                    reasons.push(reason);
                }
            }
        }
        // A retryable refusal wins: the client sends the whole batch again, and the backends
        // that accepted their part see it twice (at least once, never lost).
        if let Some(e) = retryable {
            return Err(e);
        }
        if rejected > 0 {
            return Err(ConsumeError::permanent(reasons.join("; "), rejected));
        }
        Ok(())
    }

    fn backend_id(&self, endpoint: &str) -> ComponentId {
        let name = match self.id.name() {
            Some(n) => format!("{n}/{endpoint}"),
            None => endpoint.to_string(),
        };
        ComponentId::new(self.id.type_name(), Some(&name))
    }

    fn new_backend(&self, endpoint: &str) -> Result<Arc<Backend>, ConfigError> {
        let sub = self.backend_id(endpoint);
        let set = Settings::new(ComponentKind::Exporter, &sub);
        let transport = backend_transport(&set, &self.template, endpoint)?;
        let left = Arc::new(AtomicBool::new(false));
        let forwarder = Forwarder {
            transport,
            left: Arc::clone(&left),
            balancer: self.me.clone(),
            endpoint: endpoint.to_string(),
        };
        Ok(Arc::new(Backend {
            endpoint: endpoint.to_string(),
            stack: SendStack::new(&set, self.backend_settings.clone(), forwarder),
            left,
        }))
    }

    /// Makes `endpoints` the ring: new backends are created and started, backends that are gone
    /// leave (their queues route again), and the new ring replaces the old in one swap.
    async fn update(&self, resolver: &str, endpoints: Vec<String>) {
        let _one = self.updating.lock().await;
        let mut eps = endpoints;
        eps.sort();
        eps.dedup();
        if eps.len() > MAX_BACKENDS {
            let ignored = eps.split_off(MAX_BACKENDS);
            metrics::counter!("vigil_loadbalancer_backends_ignored", "exporter" => self.id.to_string())
                .increment(ignored.len() as u64);
            tracing::warn!(
                exporter = %self.id,
                "the resolver returned {} backends; only the first {MAX_BACKENDS} are used ({} left out)",
                eps.len() + ignored.len(),
                ignored.len()
            );
        }
        if self.state.load().ring.endpoints() == eps.as_slice() {
            return;
        }
        let mut fresh = Vec::new();
        let mut usable = Vec::new();
        for ep in &eps {
            let existing = lock(&self.live).get(ep).cloned();
            match existing {
                Some(b) if !b.left.load(Ordering::Acquire) => usable.push(ep.clone()),
                _ => match self.new_backend(ep) {
                    Ok(b) => {
                        fresh.push(b);
                        usable.push(ep.clone());
                    }
                    Err(e) => tracing::error!(exporter = %self.id, "backend {ep} left out: {e}"),
                },
            }
        }
        if let Some(host) = self.host.get() {
            for b in &fresh {
                if let Err(e) = b.stack.start(host).await {
                    tracing::error!(exporter = %self.id, "backend {} cannot start: {e:#}", b.endpoint);
                }
            }
        }
        let leaving: Vec<Arc<Backend>> = {
            let mut live = lock(&self.live);
            for b in fresh {
                live.insert(b.endpoint.clone(), b);
            }
            let gone: Vec<String> = live
                .keys()
                .filter(|k| !usable.contains(k))
                .cloned()
                .collect();
            gone.into_iter().filter_map(|k| live.remove(&k)).collect()
        };
        let ring = HashRing::new(usable);
        let backends = {
            let live = lock(&self.live);
            ring.endpoints()
                .iter()
                .filter_map(|e| live.get(e).cloned())
                .collect::<Vec<_>>()
        };
        let n = backends.len();
        self.state.store(Arc::new(Snapshot { ring, backends }));
        metrics::gauge!("otelcol_loadbalancer_num_backends", "exporter" => self.id.to_string(), "resolver" => resolver.to_string())
            .set(n as f64);
        metrics::counter!("otelcol_loadbalancer_num_backend_updates", "exporter" => self.id.to_string(), "resolver" => resolver.to_string())
            .increment(1);
        tracing::info!(exporter = %self.id, backends = n, left = leaving.len(), "backend ring updated");
        for b in leaving {
            // Flagged after the swap, so nothing new reaches it; its queue drains into the ring.
            b.left.store(true, Ordering::Release);
            // The exporter's own stop ends this drain at once: what the queue still holds is then
            // counted as lost by the stack's stop, not left uncounted.
            let stop = self.tasks.stopping();
            self.tasks.spawn(async move {
                tokio::select! {
                    _ = b.stack.shutdown_by(Instant::now() + LEAVING_DRAIN) => {}
                    _ = stop.cancelled() => {
                        let _ = b.stack.shutdown_by(Instant::now()).await;
                    }
                }
            });
        }
    }

    /// The resolver's loop: resolves every `interval` and updates the ring on change.
    async fn follow_dns(self: Arc<Self>, lookup: Lookup) {
        let Some(dns) = self.cfg.resolver.dns.clone() else {
            return;
        };
        let port = dns.port.get().unwrap_or(resolver::DEFAULT_PORT);
        let stop = self.tasks.stopping();
        let mut failing = false;
        loop {
            match resolver::resolve_dns(&lookup, &dns, port).await {
                Ok(eps) => {
                    failing = false;
                    metrics::counter!("otelcol_loadbalancer_num_resolutions", "exporter" => self.id.to_string(), "resolver" => "dns", "success" => "true")
                        .increment(1);
                    if eps.is_empty() {
                        tracing::warn!(exporter = %self.id, "{:?} resolves to no address; keeping the current backends", dns.hostname);
                    } else {
                        self.update("dns", eps).await;
                    }
                }
                Err(e) => {
                    metrics::counter!("otelcol_loadbalancer_num_resolutions", "exporter" => self.id.to_string(), "resolver" => "dns", "success" => "false")
                        .increment(1);
                    if !failing {
                        tracing::warn!(exporter = %self.id, "{e}; keeping the current backends");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(dns.interval) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

/// The API server the `k8s` resolver asks, found as otelcol's resolver finds it (client-go's
/// default loading): `KUBECONFIG` or `~/.kube/config` when present, else the pod's service account.
async fn k8s_client() -> Result<vigil_k8s::kube::Client, String> {
    let config = vigil_k8s::kube::Config::infer()
        .await
        .map_err(|e| format!("no Kubernetes API to ask ({e}); is vigil running in a pod?"))?;
    vigil_k8s::client::client_for(config).map_err(|e| e.to_string())
}

impl Balancer {
    /// The `k8s` resolver: follows the Service's EndpointSlices and updates the ring on change.
    async fn follow_k8s(
        self: Arc<Self>,
        client: vigil_k8s::kube::Client,
        cfg: resolver::K8sResolver,
    ) {
        use vigil_k8s::endpoints::{follow, BackendNaming, ServiceName};
        let svc = ServiceName::parse(&cfg.service);
        let naming = BackendNaming {
            ports: cfg.ports.clone(),
            return_hostnames: cfg.return_hostnames,
        };
        let label = self.id.to_string();
        let me = Arc::clone(&self);
        let stop = self.tasks.stopping();
        let run = follow(
            client,
            svc.clone(),
            naming,
            cfg.timeout,
            &label,
            move |eps| {
                let me = Arc::clone(&me);
                let svc = svc.clone();
                async move {
                    metrics::counter!("otelcol_loadbalancer_num_resolutions", "exporter" => me.id.to_string(), "resolver" => "k8s", "success" => "true")
                    .increment(1);
                    if eps.is_empty() {
                        // As with dns: routing to nobody would refuse everything, while the backends
                        // last known may only be restarting.
                        tracing::warn!(exporter = %me.id, "service {}.{} has no ready endpoints; keeping the current backends", svc.name, svc.namespace);
                    } else {
                        me.update("k8s", eps).await;
                    }
                }
            },
        );
        tokio::select! {
            _ = run => {}
            _ = stop.cancelled() => {}
        }
    }
}

/// The exporter-level request when `sending_queue` or `retry_on_failure` is on: the batch itself,
/// routed on every attempt.
pub struct Routed(Telemetry);

impl Persist for Routed {
    fn to_bytes(&self) -> Vec<u8> {
        let body = proto_request(&self.0);
        let mut out = Vec::with_capacity(1 + body.len());
        out.push(signal_tag(self.0.signal()));
        out.extend_from_slice(&body);
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&tag, body) = bytes.split_first()?;
        decode_proto_request(signal_from_tag(tag)?, body)
            .ok()
            .map(Routed)
    }
}

/// The exporter-level transport: routes the batch.
struct Router(Arc<Balancer>);

#[async_trait]
impl Sender for Router {
    type Request = Routed;

    fn prepare(&self, data: &Telemetry) -> Result<Routed, SendError> {
        Ok(Routed(data.clone()))
    }

    async fn send(&self, req: &Routed) -> Result<Delivered, SendError> {
        match self.0.route(req.0.clone()).await {
            Ok(()) => Ok(Delivered::default()),
            Err(ConsumeError::Retryable {
                reason,
                retry_after,
            }) => Err(SendError::Retryable {
                reason,
                retry_after,
            }),
            Err(ConsumeError::Permanent { reason, .. }) => Err(SendError::permanent(reason)),
        }
    }
}

/// The `loadbalancing` exporter.
pub struct LoadBalancing {
    balancer: Arc<Balancer>,
    front: Option<SendStack<Router>>,
    lookup: Lookup,
}

#[async_trait]
impl Consumer for LoadBalancing {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        match &self.front {
            Some(f) => f.consume(data).await,
            None => self.balancer.route(data).await,
        }
    }
}

#[async_trait]
impl Component for LoadBalancing {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        let b = &self.balancer;
        let _ = b.host.set(host.clone());
        let r = &b.cfg.resolver;
        if let Some(s) = &r.static_ {
            let eps = s.hostnames.iter().map(|h| resolver::with_port(h)).collect();
            metrics::counter!("otelcol_loadbalancer_num_resolutions", "exporter" => b.id.to_string(), "resolver" => "static", "success" => "true")
                .increment(1);
            b.update("static", eps).await;
        } else if r.dns.is_some() {
            // The first answer is awaited (bounded by `timeout`) so that data arriving right after
            // start finds backends; the loop then follows the name.
            b.tasks
                .spawn(Arc::clone(b).follow_dns(Arc::clone(&self.lookup)));
            let deadline = tokio::time::Instant::now()
                + r.dns.as_ref().map_or(Duration::from_secs(1), |d| d.timeout)
                + Duration::from_millis(100);
            while b.state.load().ring.is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        } else if let Some(k) = &r.k8s {
            let client = k8s_client()
                .await
                .map_err(|e| anyhow::anyhow!("exporters::{}::resolver::k8s: {e}", b.id))?;
            b.tasks.spawn(Arc::clone(b).follow_k8s(client, k.clone()));
            // As with dns: the first list is awaited, within `timeout`.
            let deadline = tokio::time::Instant::now() + k.timeout + Duration::from_millis(100);
            while b.state.load().ring.is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        if let Some(f) = &self.front {
            f.start(host).await?;
        }
        Ok(())
    }

    /// Drains the exporter-level queue into the backends first, then every backend's queue, all
    /// by `deadline`.
    async fn shutdown_by(&self, deadline: Instant) -> anyhow::Result<()> {
        if let Some(f) = &self.front {
            f.shutdown_by(deadline).await?;
        }
        let b = &self.balancer;
        let live: Vec<Arc<Backend>> = lock(&b.live).values().cloned().collect();
        let stops = live.iter().map(|x| x.stack.shutdown_by(deadline));
        for r in futures::future::join_all(stops).await {
            if let Err(e) = r {
                tracing::warn!(exporter = %b.id, "{e:#}");
            }
        }
        b.tasks.stop(deadline).await;
        Ok(())
    }
}

fn build(
    set: Settings,
    cfg: LoadBalancingConfig,
    lookup: Lookup,
) -> Result<LoadBalancing, ConfigError> {
    let template = cfg.protocol.template()?;
    // Each backend's transport is built when the resolver finds it; building one now checks
    // that the template builds at all (TLS files, headers).
    backend_transport(
        &Settings::new(ComponentKind::Exporter, &set.id),
        &template,
        "placeholder:4317",
    )
    .map_err(|e| under_protocol(e, &set.id))?;
    let mut backend_settings = template.send_settings();
    if cfg.sending_queue.enabled {
        backend_settings.sending_queue.enabled = false;
    }
    let front_settings = SendSettings {
        timeout: cfg.timeout,
        retry_on_failure: cfg.retry_on_failure.clone(),
        sending_queue: cfg.sending_queue.clone(),
    };
    let use_front = cfg.front();
    let balancer = Arc::new_cyclic(|me| Balancer {
        id: set.id.clone(),
        cfg,
        template,
        backend_settings,
        state: ArcSwap::from_pointee(Snapshot {
            ring: HashRing::default(),
            backends: Vec::new(),
        }),
        live: Mutex::new(BTreeMap::new()),
        updating: tokio::sync::Mutex::new(()),
        host: OnceLock::new(),
        tasks: set.tasks.clone(),
        me: me.clone(),
    });
    let front =
        use_front.then(|| SendStack::new(&set, front_settings, Router(Arc::clone(&balancer))));
    Ok(LoadBalancing {
        balancer,
        front,
        lookup,
    })
}

struct Factory;

/// The `loadbalancing` exporter factory (`load_balancing` is accepted too).
pub fn factory() -> Arc<dyn DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl FactoryBase for Factory {
    type Config = LoadBalancingConfig;

    fn type_name(&self) -> &'static str {
        "loadbalancing"
    }

    fn default_config(&self) -> Option<LoadBalancingConfig> {
        // A resolver is required.
        None
    }

    fn validate(&self, id: &ComponentId, cfg: &LoadBalancingConfig) -> Result<(), ConfigError> {
        cfg.validate(id)
    }
}

impl ExporterFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Beta),
            (Signal::Metrics, Stability::Development),
            (Signal::Logs, Stability::Beta),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: LoadBalancingConfig,
    ) -> Result<Arc<dyn Exporter>, ConfigError> {
        Ok(Arc::new(build(set, cfg, resolver::system_lookup())?))
    }

    fn validate_signal(
        &self,
        _id: &ComponentId,
        cfg: &LoadBalancingConfig,
        signal: Signal,
    ) -> Result<(), ConfigError> {
        let key = cfg.key_for(signal);
        if key.signals().contains(&signal) {
            return Ok(());
        }
        let fits: Vec<&str> = [
            RoutingKey::TraceId,
            RoutingKey::Service,
            RoutingKey::Resource,
            RoutingKey::Metric,
            RoutingKey::StreamId,
        ]
        .into_iter()
        .filter(|k| k.signals().contains(&signal))
        .map(RoutingKey::as_str)
        .collect();
        Err(cfg_err(
            "routing_key",
            format!(
                "{} cannot route {signal} (for {signal} use {})",
                key.as_str(),
                fits.join(", ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests;
