//! `otlp`: the OTLP receiver, a drop-in for otelcol's `otlpreceiver`. It serves OTLP/gRPC on
//! `protocols.grpc` and OTLP/HTTP (protobuf and JSON) on `protocols.http`, decodes straight into the
//! `opentelemetry-proto` types, pushes each request down the pipeline, and turns the pipeline's answer
//! into the status code the OTLP spec prescribes, so that clients retry exactly what they should.
//!
//! Layout: `config` (keys, defaults, validation), `grpc` and `http` (the two transports); bodies
//! become requests in `vigil_core::codec::decode`, shared with the exporters. This file holds the
//! factory, the lifecycle and the one export path both transports share.

pub mod config;
mod grpc;
pub mod http;
pub(crate) mod roles;

#[cfg(test)]
mod tests;

/// The OTLP codec lives in core, shared with the exporters; here under the paths the transports,
/// the other receivers and the fuzz targets use.
pub use vigil_core::codec::{decode, decoded};

use crate::serve::{serve, ConnCounters};
use async_trait::async_trait;
use config::{GrpcConfig, OtlpConfig};
use decode::ExportRequest;
use metrics::Counter;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    profiles::v1development::ExportProfilesServiceRequest, trace::v1::ExportTraceServiceRequest,
};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_core::config::bind_tcp;
use vigil_core::factory::{DynReceiverFactory, FactoryBase, ReceiverFactory, Settings};
use vigil_core::obs::ReceiverObs;
use vigil_core::task::{lock, Tasks};
use vigil_core::{
    ClientMetadata, Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Host,
    NextConsumers, Receiver, Signal, Stability,
};

struct Factory;

/// The `otlp` receiver factory, for the registry.
pub fn factory() -> Arc<dyn DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl FactoryBase for Factory {
    type Config = OtlpConfig;

    fn type_name(&self) -> &'static str {
        "otlp"
    }

    fn validate(&self, id: &ComponentId, cfg: &OtlpConfig) -> Result<(), ConfigError> {
        config::validate(id, cfg)
    }
}

impl ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Stable),
            (Signal::Metrics, Stability::Stable),
            (Signal::Logs, Stability::Stable),
            (Signal::Profiles, Stability::Development),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: OtlpConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        Ok(Arc::new(OtlpReceiver::new(set, cfg, next)))
    }
}

/// The transport a request came in on, as the `transport` metric label spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Grpc = 0,
    Http = 1,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

/// What became of one export request, before it is put in a transport's terms.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    Accepted,
    /// Some items were refused for good; the rest went on.
    Partial {
        rejected: usize,
        message: String,
    },
    /// Backpressure: the client should retry the whole request.
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Every item was refused for good.
    Rejected {
        message: String,
    },
    NoPipeline {
        message: String,
    },
    /// The principal's role does not allow this signal.
    Forbidden {
        message: String,
    },
}

/// What both transports share: the pipelines and the counters.
pub(crate) struct Shared {
    id: String,
    next: NextConsumers,
    /// `otelcol_receiver_*`; by transport.
    obs: [ReceiverObs; 2],
    /// Requests refused for their size, as sent, decompressed or decoded; by transport.
    too_large: [Counter; 2],
    /// Each listener's connection counters; by transport.
    connections: [ConnCounters; 2],
    /// Requests refused by the authenticator; by transport.
    unauthenticated: [Counter; 2],
    /// Requests of an authenticated principal refused by its role; by transport.
    forbidden: [Counter; 2],
}

impl Shared {
    fn new(set: &Settings, next: NextConsumers) -> Shared {
        let id = set.id.to_string();
        let too_large = |t: Transport| {
            metrics::counter!(
                "vigil_receiver_requests_too_large",
                "receiver" => id.clone(),
                "transport" => t.as_str()
            )
        };
        Shared {
            obs: [
                set.receiver_obs(Transport::Grpc.as_str()),
                set.receiver_obs(Transport::Http.as_str()),
            ],
            too_large: [too_large(Transport::Grpc), too_large(Transport::Http)],
            connections: [
                ConnCounters::new("receiver", &id, "grpc"),
                ConnCounters::new("receiver", &id, "http"),
            ],
            unauthenticated: [Transport::Grpc, Transport::Http].map(|t| {
                metrics::counter!(
                    "vigil_receiver_requests_unauthenticated",
                    "receiver" => id.clone(),
                    "transport" => t.as_str()
                )
            }),
            forbidden: [Transport::Grpc, Transport::Http].map(|t| {
                metrics::counter!(
                    "vigil_receiver_requests_forbidden",
                    "receiver" => id.clone(),
                    "transport" => t.as_str()
                )
            }),
            id,
            next,
        }
    }

    /// Counts a request refused for its size.
    pub(crate) fn too_large(&self, transport: Transport) {
        self.too_large[transport as usize].increment(1);
    }

    /// Sends one request down its signal's pipeline and counts the result. The request's data is
    /// moved, never cloned. With `grant` (roles are configured), a signal the principal's role does
    /// not allow is refused, and the role's tenant is stamped on every resource.
    pub(crate) async fn export<R: ExportRequest>(
        &self,
        transport: Transport,
        req: R,
        grant: Option<&roles::Grant>,
        meta: Option<ClientMetadata>,
    ) -> Outcome {
        if let Some(message) = grant.and_then(|g| g.refuses(R::SIGNAL)) {
            self.forbidden[transport as usize].increment(1);
            tracing::debug!(receiver = %self.id, %message, "request refused by the principal's role");
            return Outcome::Forbidden { message };
        }
        let Some(next) = self.next.get(R::SIGNAL) else {
            return Outcome::NoPipeline {
                message: format!("receiver {} has no {} pipeline", self.id, R::SIGNAL),
            };
        };
        let items = req.item_count();
        // An empty request carries nothing to deliver; otelcol answers it without a pipeline call.
        if items == 0 {
            return Outcome::Accepted;
        }
        let mut data = req.into_telemetry();
        if let Some(g) = grant {
            g.stamp(&mut data);
        }
        // The client's metadata travels with the call, as otelcol's client.Info in the context.
        let result = match meta {
            Some(meta) => meta.scope(next.consume(data)).await,
            None => next.consume(data).await,
        };
        self.obs[transport as usize].end_op(R::SIGNAL, items, &result);
        match result {
            Ok(()) => Outcome::Accepted,
            Err(ConsumeError::Retryable {
                reason,
                retry_after,
            }) => {
                tracing::debug!(receiver = %self.id, %reason, "pipeline refused data, retryable");
                Outcome::Retryable {
                    message: reason,
                    retry_after,
                }
            }
            Err(ConsumeError::Permanent { reason, rejected }) => {
                // A permanent error that names no count refused the whole request.
                let rejected = if rejected == 0 || rejected > items {
                    items
                } else {
                    rejected
                };
                tracing::debug!(receiver = %self.id, %reason, rejected, "pipeline rejected data");
                if rejected < items {
                    Outcome::Partial {
                        rejected,
                        message: reason,
                    }
                } else {
                    Outcome::Rejected { message: reason }
                }
            }
        }
    }
}

/// `router` with each request's client metadata, as otelcol's `client.Info`, in its extensions:
/// its headers (gRPC metadata) with `include_metadata`, and the principal the authenticator (a
/// layer outside this one) proved. The handlers pass it down the pipeline with the data
/// ([`Shared::export`]); without either, nothing is attached.
/// `authenticated` says whether a guard runs outside it; with neither, the router is returned as
/// it is, so a listener without either pays nothing per request.
pub(crate) fn with_client_metadata(
    router: axum::Router,
    include_metadata: bool,
    authenticated: bool,
) -> axum::Router {
    if !include_metadata && !authenticated {
        return router;
    }
    router.layer(axum::middleware::from_fn(
        move |mut req: axum::extract::Request, next: axum::middleware::Next| async move {
            let principal = req
                .extensions()
                .get::<vigil_core::component::Principal>()
                .cloned();
            if include_metadata || principal.is_some() {
                let mut meta = if include_metadata {
                    ClientMetadata::from_headers(req.headers())
                } else {
                    ClientMetadata::default()
                };
                if let Some(p) = principal {
                    meta = meta.with_auth(p);
                }
                req.extensions_mut().insert(meta);
            }
            next.run(req).await
        },
    ))
}

/// The addresses bound by `start`.
#[derive(Default, Clone, Copy)]
struct Bound {
    grpc_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
}

/// The `otlp` receiver.
pub struct OtlpReceiver {
    id: ComponentId,
    config: OtlpConfig,
    shared: Arc<Shared>,
    /// The listeners; stopped together by the shutdown deadline.
    tasks: Tasks,
    running: Mutex<Option<Bound>>,
}

impl OtlpReceiver {
    /// A receiver that feeds `next`; nothing listens until `start`.
    pub fn new(set: Settings, config: OtlpConfig, next: NextConsumers) -> OtlpReceiver {
        OtlpReceiver {
            shared: Arc::new(Shared::new(&set, next)),
            id: set.id,
            config,
            tasks: set.tasks,
            running: Mutex::new(None),
        }
    }

    /// The addresses actually bound, `(grpc, http)`, once started; useful with port 0.
    pub fn local_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        lock(&self.running).map_or((None, None), |r| (r.grpc_addr, r.http_addr))
    }
    /// `router` behind the authenticator `auth` names, if any: a request that fails its check gets
    /// HTTP 401 or gRPC `UNAUTHENTICATED`, is counted, and is logged with the reason (never the
    /// credential).
    fn authenticated(
        &self,
        host: &Host,
        router: axum::Router,
        auth: Option<&config::AuthConfig>,
        transport: Transport,
    ) -> anyhow::Result<axum::Router> {
        let Some(auth) = auth else {
            return Ok(router);
        };
        let guard = roles::Guard::new(
            host,
            &self.id,
            "auth",
            auth,
            self.shared.unauthenticated[transport as usize].clone(),
            self.shared.forbidden[transport as usize].clone(),
        )?;
        Ok(
            Arc::new(guard).layer(router, move |headers, refusal, reason| {
                match (transport, refusal) {
                    (Transport::Grpc, roles::Refusal::Unauthenticated) => {
                        tonic::Status::unauthenticated(reason).into_http::<axum::body::Body>()
                    }
                    (Transport::Grpc, roles::Refusal::Forbidden) => {
                        tonic::Status::permission_denied(reason).into_http::<axum::body::Body>()
                    }
                    (Transport::Http, roles::Refusal::Unauthenticated) => {
                        http::unauthorized(headers, reason)
                    }
                    (Transport::Http, roles::Refusal::Forbidden) => {
                        http::forbidden(headers, reason)
                    }
                }
            }),
        )
    }

    /// The gRPC services, one per signal with a pipeline, as a router; a signal without a
    /// pipeline gets no service, so its calls answer UNIMPLEMENTED.
    fn grpc_router(&self, g: &GrpcConfig) -> axum::Router {
        let (max, max_decoded) = (g.max_recv_bytes(), g.max_decoded_bytes());
        let shared = &self.shared;
        let has = |s| shared.next.get(s).is_some();
        let mut routes = tonic::service::Routes::default();
        if has(Signal::Traces) {
            routes = routes.add_service(grpc::ExportService::<ExportTraceServiceRequest>::new(
                Arc::clone(shared),
                max,
                max_decoded,
            ));
        }
        if has(Signal::Metrics) {
            routes = routes.add_service(grpc::ExportService::<ExportMetricsServiceRequest>::new(
                Arc::clone(shared),
                max,
                max_decoded,
            ));
        }
        if has(Signal::Logs) {
            routes = routes.add_service(grpc::ExportService::<ExportLogsServiceRequest>::new(
                Arc::clone(shared),
                max,
                max_decoded,
            ));
        }
        if has(Signal::Profiles) {
            routes = routes.add_service(grpc::ExportService::<ExportProfilesServiceRequest>::new(
                Arc::clone(shared),
                max,
                max_decoded,
            ));
        }
        routes.prepare().into_axum_router()
    }
}

#[async_trait]
impl Component for OtlpReceiver {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        if self.local_addrs() != (None, None) {
            anyhow::bail!("receivers::{}: already started", self.id);
        }
        if self.tasks.is_stopping() {
            // A reload creates a new receiver; a stopped one is not started again.
            anyhow::bail!("receivers::{}: started after shutdown", self.id);
        }
        let protocols = &self.config.protocols;
        // Bind every listener before serving any, so a taken port leaves nothing half-started.
        let grpc_listener = match &protocols.grpc {
            Some(g) => Some(bind_tcp(ComponentKind::Receiver, &self.id, &g.endpoint).await?),
            None => None,
        };
        let http_listener = match &protocols.http {
            Some(h) => Some(bind_tcp(ComponentKind::Receiver, &self.id, &h.endpoint).await?),
            None => None,
        };
        let mut bound = Bound::default();
        // Routers first: an authenticator that is missing fails start before anything serves.
        let mut servers = Vec::new();
        if let (Some(g), Some(listener)) = (&protocols.grpc, grpc_listener) {
            bound.grpc_addr = Some(listener.local_addr()?);
            let router = self.authenticated(
                host,
                with_client_metadata(self.grpc_router(g), g.include_metadata, g.auth.is_some()),
                g.auth.as_ref(),
                Transport::Grpc,
            )?;
            let counters = self.shared.connections[Transport::Grpc as usize].clone();
            servers.push((listener, router, g.serve_options(), counters));
        }
        if let (Some(h), Some(listener)) = (&protocols.http, http_listener) {
            bound.http_addr = Some(listener.local_addr()?);
            let router = self.authenticated(
                host,
                with_client_metadata(
                    http::router(Arc::clone(&self.shared), h),
                    h.include_metadata,
                    h.auth.is_some(),
                ),
                h.auth.as_ref(),
                Transport::Http,
            )?;
            let router = http::answer_layers(router, h);
            let counters = self.shared.connections[Transport::Http as usize].clone();
            servers.push((listener, router, h.serve_options(), counters));
        }
        for (listener, router, options, counters) in servers {
            self.tasks.spawn(serve(
                listener,
                router,
                options,
                counters,
                self.tasks.stopping(),
            ));
        }
        tracing::info!(
            receiver = %self.id,
            grpc = ?bound.grpc_addr,
            http = ?bound.http_addr,
            "otlp receiver listening"
        );
        *lock(&self.running) = Some(bound);
        Ok(())
    }

    /// Stops accepting connections and waits for in-flight requests to finish, until `deadline`:
    /// a request blocked behind a stuck exporter must not hold the agent's stop beyond it.
    async fn shutdown_by(&self, deadline: Instant) -> anyhow::Result<()> {
        if lock(&self.running).take().is_none() {
            return Ok(());
        }
        // What outlives the deadline is aborted, and `stop` says so in the log.
        self.tasks.stop(deadline).await;
        Ok(())
    }
}
