//! `otlp`: the OTLP receiver, a drop-in for otelcol's `otlpreceiver`. It serves OTLP/gRPC on
//! `protocols.grpc` and OTLP/HTTP (protobuf and JSON) on `protocols.http`, decodes straight into the
//! `opentelemetry-proto` types, pushes each request down the pipeline, and turns the pipeline's answer
//! into the status code the OTLP spec prescribes, so that clients retry exactly what they should.
//!
//! Layout: `config` (keys, defaults, validation), `decode` (bodies to requests; public for the fuzz
//! targets), `grpc` and `http` (the two transports). This file holds the factory, the lifecycle and
//! the one export path both transports share.

pub mod config;
pub mod decode;
pub mod decoded;
mod grpc;
pub mod http;
mod roles;

#[cfg(test)]
mod tests;

use crate::serve::{serve, ConnCounters};
use async_trait::async_trait;
use config::{GrpcConfig, OtlpConfig};
use decode::ExportRequest;
use metrics::Counter;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vigil_core::config::bind_tcp;
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Host, NextConsumers,
    Receiver, ReceiverFactory, Signal,
};

/// How long `shutdown` waits for in-flight requests before it gives up on them. A request blocked
/// behind a stuck exporter must not hold the whole agent's stop forever.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

struct Factory;

/// The `otlp` receiver factory, for the registry.
pub fn factory() -> Arc<dyn ReceiverFactory> {
    Arc::new(Factory)
}

impl ReceiverFactory for Factory {
    fn type_name(&self) -> &'static str {
        "otlp"
    }

    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn validate(&self, id: &ComponentId, config: &Value) -> Result<(), ConfigError> {
        config::load(id, config).map(|_| ())
    }

    fn create(
        &self,
        id: &ComponentId,
        config: &Value,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        let cfg = config::load(id, config)?;
        Ok(Arc::new(OtlpReceiver::new(id, cfg, next)))
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

/// The counter handles of one signal on one transport, registered once at creation.
struct ItemCounters {
    accepted: Counter,
    refused: Counter,
}

impl ItemCounters {
    fn new(id: &str, signal: Signal, transport: Transport) -> Self {
        let labels = [
            ("receiver", id.to_string()),
            ("transport", transport.as_str().to_string()),
        ];
        ItemCounters {
            accepted: metrics::counter!(
                format!("otelcol_receiver_accepted_{}", signal.item_name()),
                &labels
            ),
            refused: metrics::counter!(
                format!("otelcol_receiver_refused_{}", signal.item_name()),
                &labels
            ),
        }
    }
}

/// What both transports share: the pipelines and the counters.
pub(crate) struct Shared {
    id: String,
    next: NextConsumers,
    /// Indexed by `[transport][signal]`, in the order of `Transport` and `Signal::ALL`.
    counters: [[ItemCounters; 3]; 2],
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
    fn new(id: &ComponentId, next: NextConsumers) -> Shared {
        let id = id.to_string();
        let per = |t| Signal::ALL.map(|s| ItemCounters::new(&id, s, t));
        let too_large = |t: Transport| {
            metrics::counter!(
                "vigil_receiver_requests_too_large",
                "receiver" => id.clone(),
                "transport" => t.as_str()
            )
        };
        Shared {
            counters: [per(Transport::Grpc), per(Transport::Http)],
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

    fn counters(&self, transport: Transport, signal: Signal) -> &ItemCounters {
        let t = match transport {
            Transport::Grpc => 0,
            Transport::Http => 1,
        };
        let s = match signal {
            Signal::Traces => 0,
            Signal::Metrics => 1,
            Signal::Logs => 2,
        };
        &self.counters[t][s]
    }

    /// Sends one request down its signal's pipeline and counts the result. The request's data is
    /// moved, never cloned. With `grant` (roles are configured), a signal the principal's role does
    /// not allow is refused, and the role's tenant is stamped on every resource.
    pub(crate) async fn export<R: ExportRequest>(
        &self,
        transport: Transport,
        req: R,
        grant: Option<&roles::Grant>,
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
        let counters = self.counters(transport, R::SIGNAL);
        let mut data = req.into_telemetry();
        if let Some(g) = grant {
            g.stamp(&mut data);
        }
        match next.consume(data).await {
            Ok(()) => {
                counters.accepted.increment(items as u64);
                Outcome::Accepted
            }
            Err(ConsumeError::Retryable {
                reason,
                retry_after,
            }) => {
                counters.refused.increment(items as u64);
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
                counters.refused.increment(rejected as u64);
                counters.accepted.increment((items - rejected) as u64);
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

/// The running servers, kept so that `shutdown` can stop them.
struct Running {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    grpc_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
}

/// The `otlp` receiver.
pub struct OtlpReceiver {
    id: ComponentId,
    config: OtlpConfig,
    shared: Arc<Shared>,
    running: Mutex<Option<Running>>,
}

impl OtlpReceiver {
    /// A receiver that feeds `next`; nothing listens until `start`.
    pub fn new(id: &ComponentId, config: OtlpConfig, next: NextConsumers) -> OtlpReceiver {
        OtlpReceiver {
            id: id.clone(),
            config,
            shared: Arc::new(Shared::new(id, next)),
            running: Mutex::new(None),
        }
    }

    /// The addresses actually bound, `(grpc, http)`, once started; useful with port 0.
    pub fn local_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running
            .as_ref()
            .map_or((None, None), |r| (r.grpc_addr, r.http_addr))
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
        // Without an authenticator (validate allows it only with roles under mutual TLS), the
        // client certificate's subject is the principal.
        let check = match &auth.authenticator {
            Some(name) => {
                let auth_id = ComponentId::parse(name)
                    .map_err(|e| anyhow::anyhow!("receivers::{}: {e}", self.id))?;
                Some(
                    host.server_auth(&auth_id)
                        .map_err(|e| anyhow::anyhow!("receivers::{}: {e}", self.id))?,
                )
            }
            None => None,
        };
        let refused = self.shared.unauthenticated[transport as usize].clone();
        let forbidden = self.shared.forbidden[transport as usize].clone();
        let roles = roles::Roles::load(
            &self.id,
            "auth",
            &auth.tenant_attribute,
            auth.roles.as_deref(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .map(Arc::new);
        let id = self.id.to_string();
        Ok(router.layer(axum::middleware::from_fn(
            move |mut req: axum::extract::Request, next: axum::middleware::Next| {
                let (check, refused, id) = (check.clone(), refused.clone(), id.clone());
                let (roles, forbidden) = (roles.clone(), forbidden.clone());
                async move {
                    let subject = req
                        .extensions()
                        .get::<vigil_core::net::serve::PeerCertificate>()
                        .and_then(|p| roles::Subject::of(&p.0));
                    let verdict = match (&check, &subject) {
                        (Some(check), _) => check.authenticate(req.headers()).await,
                        (None, Some(s)) => Ok(vigil_core::component::Principal::named(s.dn.clone())),
                        (None, None) => Err("no client certificate".to_string()),
                    };
                    let principal = match verdict {
                        Ok(p) => p,
                        Err(reason) => {
                            refused.increment(1);
                            tracing::debug!(receiver = %id, %reason, "request refused by the authenticator");
                            return match transport {
                                Transport::Grpc => tonic::Status::unauthenticated(reason)
                                    .into_http::<axum::body::Body>(),
                                Transport::Http => http::unauthorized(req.headers(), reason),
                            };
                        }
                    };
                    if let Some(roles) = &roles {
                        match roles.grant(&principal, subject.as_ref()) {
                            Some(grant) => {
                                req.extensions_mut().insert(grant);
                            }
                            None => {
                                forbidden.increment(1);
                                let reason = format!("principal {:?} has no role", principal.name);
                                tracing::debug!(receiver = %id, %reason, "request refused");
                                return match transport {
                                    Transport::Grpc => tonic::Status::permission_denied(reason)
                                        .into_http::<axum::body::Body>(),
                                    Transport::Http => http::forbidden(req.headers(), reason),
                                };
                            }
                        }
                    }
                    next.run(req).await
                }
            },
        )))
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
        routes.prepare().into_axum_router()
    }
}

#[async_trait]
impl Component for OtlpReceiver {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        if self.local_addrs() != (None, None) {
            anyhow::bail!("receivers::{}: already started", self.id);
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
        let stop = CancellationToken::new();
        let mut running = Running {
            stop: stop.clone(),
            tasks: Vec::new(),
            grpc_addr: None,
            http_addr: None,
        };
        if let (Some(g), Some(listener)) = (&protocols.grpc, grpc_listener) {
            running.grpc_addr = Some(listener.local_addr()?);
            let router =
                self.authenticated(host, self.grpc_router(g), g.auth.as_ref(), Transport::Grpc)?;
            let counters = self.shared.connections[Transport::Grpc as usize].clone();
            running.tasks.push(tokio::spawn(serve(
                listener,
                router,
                g.serve_options(),
                counters,
                stop.clone(),
            )));
        }
        if let (Some(h), Some(listener)) = (&protocols.http, http_listener) {
            running.http_addr = Some(listener.local_addr()?);
            let router = self.authenticated(
                host,
                http::router(Arc::clone(&self.shared), h),
                h.auth.as_ref(),
                Transport::Http,
            )?;
            let counters = self.shared.connections[Transport::Http as usize].clone();
            running.tasks.push(tokio::spawn(serve(
                listener,
                router,
                h.serve_options(),
                counters,
                stop.clone(),
            )));
        }
        tracing::info!(
            receiver = %self.id,
            grpc = ?running.grpc_addr,
            http = ?running.http_addr,
            "otlp receiver listening"
        );
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(running);
        Ok(())
    }

    /// Stops accepting connections and waits for in-flight requests to finish, up to
    /// [`SHUTDOWN_GRACE`].
    async fn shutdown(&self) -> anyhow::Result<()> {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(running) = running else {
            return Ok(());
        };
        running.stop.cancel();
        let all = futures::future::join_all(running.tasks);
        if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
            tracing::warn!(
                receiver = %self.id,
                "in-flight requests did not finish within {SHUTDOWN_GRACE:?}; stopping anyway"
            );
        }
        Ok(())
    }
}
