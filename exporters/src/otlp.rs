//! `otlp`: sends OTLP over gRPC, TLS by default (`tls.insecure: true` or an `http://` endpoint turns it
//! off) and gzip-compressed by default. Failed calls are classified as the OTLP specification says:
//! UNAVAILABLE and the other transient codes are retried, RESOURCE_EXHAUSTED only with `RetryInfo`,
//! everything else is final.

use crate::helper::auth::{AuthConfig, Authenticator};
use crate::helper::classify::classify_grpc_call;
use crate::helper::encode::partial_success_proto;
use crate::helper::http::{error_chain, header_map};
use crate::helper::queue::{signal_from_tag, signal_tag, Persist};
use crate::helper::tls::{client_config, server_name, TlsConnector};
use crate::helper::{
    Clock, Compression, Delivered, QueueConfig, RetryConfig, SendError, SendSettings, SendStack,
    Sender, TokioClock,
};
use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;
use vigil_core::codec::encode::proto_request;
use vigil_core::config::{duration, TlsClientConfig};
use vigil_core::factory::{DynExporterFactory, ExporterFactory, FactoryBase};
use vigil_core::{
    ComponentId, ComponentKind, ConfigError, Exporter, Host, Settings, Signal, Stability, Telemetry,
};

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// The `otlp` exporter config, with otelcol's keys. The fields are the crate's so that an exporter
/// built on this transport (`coralogix`) can fill one in.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    #[serde(default)]
    pub(crate) endpoint: String,
    #[serde(default)]
    pub(crate) tls: TlsClientConfig,
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) compression: Compression,
    #[serde(default = "default_timeout", with = "duration")]
    pub(crate) timeout: Duration,
    #[serde(default)]
    pub(crate) retry_on_failure: RetryConfig,
    #[serde(default)]
    pub(crate) sending_queue: QueueConfig,
    #[serde(default)]
    pub(crate) auth: Option<AuthConfig>,
    /// gRPC's load-balancing policy over the addresses `endpoint`'s host resolves to.
    #[serde(default)]
    pub(crate) balancer_name: Balancer,
    /// HTTP/2 keepalive pings on the connection (configgrpc's `keepalive`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) keepalive: Option<Keepalive>,
    /// configgrpc's `:authority` override: requests carry this instead of the endpoint's host
    /// (the connection and, under TLS, the name verified stay the endpoint's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) authority: Option<String>,
    /// gRPC's wait-for-ready: a call waits for a connection instead of failing fast. vigil's calls
    /// fail fast and `retry_on_failure` sends them again, which delivers the same; read only.
    #[serde(default)]
    pub(crate) wait_for_ready: bool,
    /// grpc-go's socket buffer sizes: tuning that the OS and hyper size here; read only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) read_buffer_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) write_buffer_size: Option<usize>,
}

/// `keepalive`: ping the server every `time` and drop the connection when a ping is not answered
/// within `timeout`; with `permit_without_stream`, ping also while no call is open. `time: 0`
/// (the default) sends no pings, as gRPC-Go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Keepalive {
    /// configoptional's switch: a block with `enabled: false` is as if absent.
    #[serde(default = "enabled")]
    pub(crate) enabled: bool,
    #[serde(default, with = "duration")]
    pub(crate) time: Duration,
    #[serde(default, with = "duration")]
    pub(crate) timeout: Duration,
    #[serde(default)]
    pub(crate) permit_without_stream: bool,
}

fn enabled() -> bool {
    true
}

/// `balancer_name`, gRPC's policy names. otelcol's default is `round_robin`; vigil's is
/// `pick_first`, what it did before the key existed (one connection), so an existing config keeps
/// its behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Balancer {
    /// One connection, to the first resolved address that accepts it; another address is tried
    /// only when that connection fails.
    #[default]
    PickFirst,
    /// A connection to every address the host resolves to, requests spread over the ready ones
    /// (tower's power-of-two-choices balancer: of two random ready connections, the less loaded).
    /// The name is resolved again every `RERESOLVE`, so addresses that come and go (a headless
    /// Kubernetes Service) are followed.
    RoundRobin,
}

/// How often `round_robin` resolves the host again (gRPC's DNS resolver re-resolves on
/// connection changes and at most every 30 s).
const RERESOLVE: Duration = Duration::from_secs(30);
/// How soon a failed resolution is tried again.
const RERESOLVE_AFTER_FAILURE: Duration = Duration::from_secs(1);

fn config_error(id: &ComponentId, path: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Exporter, id, path, msg)
}

/// Where to connect and whether to use TLS.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    /// `host:port`.
    authority: String,
    tls: bool,
}

impl OtlpConfig {
    /// Reads `endpoint` as otelcol does: `host:port`, optionally behind `http://`, `https://` or
    /// `dns:///`. `http://` asks for plaintext explicitly; otherwise TLS is on unless `tls.insecure`.
    fn target(&self, id: &ComponentId) -> Result<Target, ConfigError> {
        let raw = self.endpoint.trim();
        if raw.is_empty() {
            return Err(config_error(id, "endpoint", "is required (host:port)"));
        }
        let (rest, plaintext_scheme) = if let Some(r) = raw.strip_prefix("http://") {
            (r, true)
        } else if let Some(r) = raw.strip_prefix("https://") {
            (r, false)
        } else if let Some(r) = raw.strip_prefix("dns:///") {
            (r, false)
        } else if raw.contains("://") {
            return Err(config_error(
                id,
                "endpoint",
                format!("unsupported scheme in {raw:?}: use host:port, http:// or https://"),
            ));
        } else {
            (raw, false)
        };
        let authority = rest.trim_end_matches('/');
        let bad =
            |why: &str| config_error(id, "endpoint", format!("invalid endpoint {raw:?}: {why}"));
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| bad("expected host:port"))?;
        if host.is_empty() || host.contains('/') {
            return Err(bad("expected host:port"));
        }
        port.parse::<u16>()
            .map_err(|_| bad(&format!("port {port:?} is not a number from 0 to 65535")))?;
        Ok(Target {
            authority: authority.to_string(),
            tls: !(plaintext_scheme || self.tls.insecure),
        })
    }

    fn settings(&self) -> SendSettings {
        SendSettings {
            timeout: self.timeout,
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
        }
    }

    pub(crate) fn validate(&self, id: &ComponentId) -> Result<(), ConfigError> {
        let target = self.target(id)?;
        if let Some(a) = self.authority.as_deref().filter(|a| !a.is_empty()) {
            a.parse::<http::uri::Authority>().map_err(|e| {
                config_error(id, "authority", format!("{a:?} is not a host[:port]: {e}"))
            })?;
        }
        if target.tls && self.tls.insecure_skip_verify && self.tls.ca_file.is_some() {
            return Err(config_error(
                id,
                "tls::insecure_skip_verify",
                "cannot be combined with tls::ca_file: either verify against the CA or skip \
                 verification",
            ));
        }
        // Builds the client TLS as start would, reading its files: a missing one fails here.
        self.client_tls(id)?;
        header_map(id, &self.headers)?;
        if let Some(auth) = &self.auth {
            auth.id(id)?;
        }
        self.settings().validate(id)
    }

    /// The client TLS when it is on (`None` for plaintext), built once from `tls`: the version
    /// range, suites, CA, client certificate and verification of every address's connection.
    fn client_tls(
        &self,
        id: &ComponentId,
    ) -> Result<Option<Arc<rustls::ClientConfig>>, ConfigError> {
        if !self.target(id)?.tls {
            return Ok(None);
        }
        client_config(id, &self.tls, &[b"h2"]).map(Some)
    }

    /// How to connect to the endpoint, or with `round_robin` to one resolved address of its
    /// host: the connection goes to `addr` but the request authority and, under TLS, the server
    /// name verified are the host's (or `server_name_override`).
    fn dialer(
        &self,
        id: &ComponentId,
        addr: Option<std::net::SocketAddr>,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> Result<Dialer, ConfigError> {
        let target = self.target(id)?;
        let scheme = if target.tls { "https" } else { "http" };
        let uri = format!("{scheme}://{}", target.authority);
        let origin_authority = self
            .authority
            .as_deref()
            .filter(|a| !a.is_empty())
            .unwrap_or(&target.authority);
        // tonic sees plaintext: under TLS our connector runs the handshake, and the origin below
        // keeps `https` in the requests.
        let connect = format!(
            "http://{}",
            addr.map_or_else(|| target.authority.clone(), |a| a.to_string())
        );
        let origin = format!("{scheme}://{origin_authority}")
            .parse::<http::Uri>()
            .map_err(|e| {
                let key = if self.authority.is_some() {
                    "authority"
                } else {
                    "endpoint"
                };
                config_error(id, key, format!("invalid {key} {origin_authority:?}: {e}"))
            })?;
        let endpoint = Endpoint::from_shared(connect)
            .map_err(|e| config_error(id, "endpoint", format!("invalid endpoint {uri:?}: {e}")))?
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
            .map_err(|e| config_error(id, "endpoint", e.to_string()))?
            .origin(origin);
        let endpoint = match &self.keepalive {
            Some(k) if k.enabled && !k.time.is_zero() => {
                let e = endpoint
                    .http2_keep_alive_interval(k.time)
                    .keep_alive_while_idle(k.permit_without_stream);
                if k.timeout.is_zero() {
                    e
                } else {
                    e.keep_alive_timeout(k.timeout)
                }
            }
            _ => endpoint,
        };
        let tls = match (target.tls, tls) {
            (false, _) => None,
            (true, Some(config)) => {
                let host = target
                    .authority
                    .rsplit_once(':')
                    .map_or(target.authority.as_str(), |(h, _)| h);
                let name = match &self.tls.server_name_override {
                    Some(name) => server_name(id, "server_name_override", name)?,
                    None => server_name(id, "endpoint", host)?,
                };
                Some(TlsConnector::new(Arc::clone(config), name))
            }
            (true, None) => {
                return Err(config_error(id, "tls", "TLS is on but was not set up"));
            }
        };
        Ok(Dialer {
            endpoint,
            tls,
            target: uri,
        })
    }
}

/// One way to the backend: the tonic endpoint and, under TLS, the connector that does the
/// handshake (tonic's own TLS cannot narrow versions or suites).
#[derive(Clone)]
struct Dialer {
    endpoint: Endpoint,
    tls: Option<TlsConnector>,
    /// The endpoint as configured (`https://host:port`), for messages.
    target: String,
}

impl Dialer {
    /// A channel that connects on first use (creating one needs the runtime).
    fn lazy(&self) -> Channel {
        match &self.tls {
            Some(c) => self.endpoint.connect_with_connector_lazy(c.clone()),
            None => self.endpoint.connect_lazy(),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a call goes through: one channel (`pick_first`) or the balancer over one per address.
type Transport = tower::util::BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    BoxError,
>;

/// Passes pre-encoded request bytes through unchanged and hands back the raw response bytes. The
/// batch is encoded once in `prepare`, so a retry resends the same bytes instead of cloning and
/// re-encoding the decoded data, which the generated clients' typed messages would require.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

/// A channel that notes whether the answer to a call carried `grpc-status`, in its headers or its
/// trailers: only then did a gRPC server give a verdict. Without it, tonic's UNKNOWN or INTERNAL
/// describes a failure on the way (see `classify_grpc_call`).
#[derive(Clone)]
struct Observed {
    channel: Transport,
    status_seen: Arc<AtomicBool>,
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for Observed {
    type Response = http::Response<ObservedBody>;
    type Error = BoxError;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.channel.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let answer = self.channel.call(request);
        let seen = Arc::clone(&self.status_seen);
        Box::pin(async move {
            let response = answer.await?;
            if response.headers().contains_key(GRPC_STATUS) {
                seen.store(true, Ordering::Relaxed);
            }
            Ok(response.map(|inner| ObservedBody { inner, seen }))
        })
    }
}

const GRPC_STATUS: &str = "grpc-status";

/// A response body that marks the call's flag when its trailers carry `grpc-status`.
struct ObservedBody {
    inner: tonic::body::Body,
    seen: Arc<AtomicBool>,
}

impl http_body::Body for ObservedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &frame {
            if f.trailers_ref()
                .is_some_and(|t| t.contains_key(GRPC_STATUS))
            {
                self.seen.store(true, Ordering::Relaxed);
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// One encoded `Export*ServiceRequest`.
pub struct GrpcRequest {
    signal: Signal,
    body: Bytes,
}

/// Stored as the signal tag, then the protobuf body.
impl Persist for GrpcRequest {
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.body.len());
        out.push(signal_tag(self.signal));
        out.extend_from_slice(&self.body);
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&tag, body) = bytes.split_first()?;
        Some(GrpcRequest {
            signal: signal_from_tag(tag)?,
            body: Bytes::copy_from_slice(body),
        })
    }
}

/// The OTLP/gRPC transport.
pub struct GrpcSender {
    dialer: Dialer,
    /// Connected lazily on first use: creating a channel needs the runtime, which `create` may lack.
    channel: OnceLock<Transport>,
    /// With `round_robin`: how to find the host's addresses and connect to each.
    balance: Option<Arc<Balanced>>,
    metadata: MetadataMap,
    compression: Compression,
    timeout: Duration,
    id: ComponentId,
    auth: Authenticator,
}

fn export_path(signal: Signal) -> PathAndQuery {
    PathAndQuery::from_static(match signal {
        Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        Signal::Profiles => {
            "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export"
        }
    })
}

#[async_trait]
impl Sender for GrpcSender {
    type Request = GrpcRequest;

    fn prepare(&self, data: &Telemetry) -> Result<GrpcRequest, SendError> {
        // Compression is tonic's job on this transport: it applies `grpc-encoding` per message.
        Ok(GrpcRequest {
            signal: data.signal(),
            body: Bytes::from(proto_request(data)),
        })
    }

    async fn send(&self, req: &GrpcRequest) -> Result<Delivered, SendError> {
        let channel = self
            .channel
            .get_or_init(|| match &self.balance {
                Some(b) => Arc::clone(b).channel(),
                None => Transport::new(tower::ServiceExt::map_err(
                    self.dialer.lazy(),
                    BoxError::from,
                )),
            })
            .clone();
        let status_seen = Arc::new(AtomicBool::new(false));
        let observed = Observed {
            channel,
            status_seen: Arc::clone(&status_seen),
        };
        let mut grpc = tonic::client::Grpc::new(observed)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd);
        grpc = match self.compression {
            Compression::Gzip => grpc.send_compressed(CompressionEncoding::Gzip),
            Compression::Zstd => grpc.send_compressed(CompressionEncoding::Zstd),
            // `deflate` is refused by the config: tonic does not speak it.
            Compression::None | Compression::Deflate => grpc,
        };
        grpc.ready().await.map_err(|e| {
            SendError::retryable(format!(
                "cannot reach {}: {}",
                self.dialer.target,
                error_chain(&*e)
            ))
        })?;
        let mut request = tonic::Request::new(req.body.clone());
        *request.metadata_mut() = if self.auth.is_configured() {
            let mut headers = self.metadata.clone().into_headers();
            self.auth
                .apply(&mut headers)
                .await
                .map_err(SendError::retryable)?;
            MetadataMap::from_headers(headers)
        } else {
            self.metadata.clone()
        };
        if !self.timeout.is_zero() {
            // Tells the server our deadline (`grpc-timeout`), so it stops working on a lost cause.
            request.set_timeout(self.timeout);
        }
        match grpc.unary(request, export_path(req.signal), RawCodec).await {
            Ok(resp) => Ok(partial_success_proto(req.signal, resp.get_ref())),
            Err(status) => Err(classify_grpc_call(
                &status,
                status_seen.load(Ordering::Relaxed),
            )),
        }
    }

    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        self.auth.start(host, &self.id)
    }
}

type Resolved =
    Pin<Box<dyn std::future::Future<Output = std::io::Result<Vec<std::net::SocketAddr>>> + Send>>;

/// Resolves a host and port to addresses; the system resolver in production.
type Lookup = Arc<dyn Fn(String, u16) -> Resolved + Send + Sync>;

fn dns_lookup(host: String, port: u16) -> Resolved {
    Box::pin(async move {
        Ok(tokio::net::lookup_host((host.as_str(), port))
            .await?
            .collect())
    })
}

/// `round_robin`: one channel per resolved address, kept in step with the name by a task that
/// lives as long as the balancer.
struct Balanced {
    id: ComponentId,
    host: String,
    port: u16,
    /// A dialer per address, each built from the validated config.
    make: Arc<dyn Fn(std::net::SocketAddr) -> Result<Dialer, ConfigError> + Send + Sync>,
    lookup: Lookup,
}

/// One address's channel inside the balancer, carrying its count of calls in flight (the load
/// the power-of-two-choices balancer compares).
type Member = tower::load::PendingRequests<
    tower::util::MapErr<Channel, fn(tonic::transport::Error) -> BoxError>,
    tower::load::CompleteOnResponse,
>;

/// How many calls may wait for the balancer, as tonic's own balanced channel allows.
const BALANCER_BUFFER: usize = 1024;

impl Balanced {
    fn new(id: &ComponentId, cfg: &OtlpConfig, lookup: Lookup) -> Result<Balanced, ConfigError> {
        let target = cfg.target(id)?;
        let (host, port) = target
            .authority
            .rsplit_once(':')
            .ok_or_else(|| config_error(id, "endpoint", "expected host:port"))?;
        let port = port
            .parse()
            .map_err(|_| config_error(id, "endpoint", "the port is not a number"))?;
        // Every address's connection uses the same TLS: read the files once, now, so a missing
        // one fails here rather than at every resolution.
        let tls = cfg.client_tls(id)?;
        cfg.dialer(
            id,
            Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
            tls.as_ref(),
        )?;
        let cfg = cfg.clone();
        let owner = id.clone();
        Ok(Balanced {
            id: id.clone(),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            make: Arc::new(move |addr| cfg.dialer(&owner, Some(addr), tls.as_ref())),
            lookup,
        })
    }

    /// A balancing transport, and the task that feeds it the host's addresses. The task ends
    /// when the transport is dropped (its receiving side closes).
    fn channel(self: Arc<Self>) -> Transport {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(self.follow(tx));
        let discover = tokio_stream::StreamExt::map(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            Ok::<_, std::convert::Infallible>,
        );
        let balance = tower::balance::p2c::Balance::new(discover);
        Transport::new(tower::buffer::Buffer::new(balance, BALANCER_BUFFER))
    }

    async fn follow(
        self: Arc<Self>,
        tx: tokio::sync::mpsc::Sender<tower::discover::Change<std::net::SocketAddr, Member>>,
    ) {
        use tower::discover::Change;
        let mut current = std::collections::BTreeSet::new();
        let mut failing = false;
        loop {
            let wait = match (self.lookup)(self.host.clone(), self.port).await {
                Ok(found) if !found.is_empty() => {
                    failing = false;
                    let found: std::collections::BTreeSet<_> = found.into_iter().collect();
                    for addr in found.difference(&current) {
                        match (self.make)(*addr) {
                            Ok(dialer) => {
                                let to_box: fn(tonic::transport::Error) -> BoxError =
                                    BoxError::from;
                                let member = tower::load::PendingRequests::new(
                                    tower::ServiceExt::map_err(dialer.lazy(), to_box),
                                    tower::load::CompleteOnResponse::default(),
                                );
                                if tx.send(Change::Insert(*addr, member)).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => tracing::warn!(exporter = %self.id, "{e}"),
                        }
                    }
                    for addr in current.difference(&found) {
                        if tx.send(Change::Remove(*addr)).await.is_err() {
                            return;
                        }
                    }
                    current = found;
                    RERESOLVE
                }
                // No address, or no answer: the addresses known so far stay in use.
                result => {
                    if !failing {
                        let why = match result {
                            Err(e) => e.to_string(),
                            Ok(_) => "no addresses".into(),
                        };
                        tracing::warn!(
                            exporter = %self.id,
                            "round_robin: cannot resolve {}: {why}; keeping {} known addresses",
                            self.host,
                            current.len()
                        );
                    }
                    failing = true;
                    RERESOLVE_AFTER_FAILURE
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = tx.closed() => return,
            }
        }
    }
}

/// Builds the exporter from a validated config; `clock` is what retries wait on.
pub(crate) fn build(
    set: &Settings,
    cfg: OtlpConfig,
    clock: Arc<dyn Clock>,
) -> Result<SendStack<GrpcSender>, ConfigError> {
    build_with(set, cfg, clock, Arc::new(dns_lookup))
}

/// `build` with the resolver `round_robin` uses.
fn build_with(
    set: &Settings,
    cfg: OtlpConfig,
    clock: Arc<dyn Clock>,
    lookup: Lookup,
) -> Result<SendStack<GrpcSender>, ConfigError> {
    let sender = grpc_sender(&set.id, &cfg, lookup)?;
    Ok(SendStack::with_clock(set, cfg.settings(), sender, clock))
}

/// The transport alone, for an exporter that puts its own stack around it (`coralogix`): what
/// `cfg` says about the endpoint, TLS, headers, compression, balancer and `auth`; its `timeout`
/// goes on each call as `grpc-timeout`.
pub(crate) fn sender(id: &ComponentId, cfg: &OtlpConfig) -> Result<GrpcSender, ConfigError> {
    grpc_sender(id, cfg, Arc::new(dns_lookup))
}

fn grpc_sender(
    id: &ComponentId,
    cfg: &OtlpConfig,
    lookup: Lookup,
) -> Result<GrpcSender, ConfigError> {
    let balance = match cfg.balancer_name {
        Balancer::PickFirst => None,
        Balancer::RoundRobin => Some(Arc::new(Balanced::new(id, cfg, lookup)?)),
    };
    let tls = cfg.client_tls(id)?;
    Ok(GrpcSender {
        dialer: cfg.dialer(id, None, tls.as_ref())?,
        channel: OnceLock::new(),
        balance,
        metadata: MetadataMap::from_headers(header_map(id, &cfg.headers)?),
        compression: cfg.compression,
        timeout: cfg.timeout,
        id: id.clone(),
        auth: Authenticator::new(cfg.auth.as_ref().map(|a| a.id(id)).transpose()?),
    })
}

struct Factory;

/// The `otlp` exporter factory.
pub fn factory() -> Arc<dyn DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl FactoryBase for Factory {
    type Config = OtlpConfig;

    fn type_name(&self) -> &'static str {
        "otlp"
    }

    fn validate(&self, id: &ComponentId, cfg: &OtlpConfig) -> Result<(), ConfigError> {
        cfg.validate(id)
    }
}

impl ExporterFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Stable),
            (Signal::Metrics, Stability::Stable),
            (Signal::Logs, Stability::Stable),
            (Signal::Profiles, Stability::Development),
        ]
    }

    fn create(&self, set: Settings, cfg: OtlpConfig) -> Result<Arc<dyn Exporter>, ConfigError> {
        Ok(Arc::new(build(&set, cfg, Arc::new(TokioClock))?))
    }
}

/// What the `loadbalancing` exporter takes from `otlp`: its `protocol::otlp` section is this
/// exporter's config without an endpoint, and each backend gets a copy aimed at it.
impl OtlpConfig {
    /// Validates the template with a placeholder endpoint (otelcol sets one too), since the
    /// resolver supplies the real ones.
    pub(crate) fn validate_template(&self, id: &ComponentId) -> Result<(), ConfigError> {
        let mut cfg = self.clone();
        if cfg.endpoint.trim().is_empty() {
            cfg.endpoint = "placeholder:4317".into();
        }
        cfg.validate(id)
    }

    /// The template's `timeout`, `retry_on_failure` and `sending_queue`.
    pub(crate) fn send_settings(&self) -> SendSettings {
        self.settings()
    }
}

/// The transport of one backend: `template` aimed at `endpoint`, inside a stack without queue or
/// retry that only holds it (the caller wraps the transport in its own stack).
pub(crate) fn backend_transport(
    set: &Settings,
    template: &OtlpConfig,
    endpoint: &str,
) -> Result<SendStack<GrpcSender>, ConfigError> {
    let mut cfg = template.clone();
    cfg.endpoint = endpoint.to_string();
    cfg.sending_queue.enabled = false;
    cfg.retry_on_failure.enabled = false;
    build(set, cfg, Arc::new(TokioClock))
}

impl GrpcRequest {
    pub(crate) fn signal(&self) -> Signal {
        self.signal
    }

    /// The encoded `Export*ServiceRequest`.
    pub(crate) fn body(&self) -> &[u8] {
        &self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helper::classify::rpc;
    use crate::helper::counters::testing::TestRecorder;
    use crate::helper::encode::tests::sample_traces;
    use crate::helper::retry::tests::ManualClock;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use serde_json::{json, Value};
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use tonic::{Code, Request, Response};
    use vigil_core::{Component, ConsumeError, Consumer, Host};

    /// A trace backend answering from a script (then OK), recording what it got.
    #[derive(Default)]
    struct Backend {
        answers: Mutex<VecDeque<Result<ExportTraceServiceResponse, Status>>>,
        received: Mutex<Vec<(MetadataMap, ExportTraceServiceRequest)>>,
    }

    struct Svc(Arc<Backend>);

    #[tonic::async_trait]
    impl TraceService for Svc {
        async fn export(
            &self,
            request: Request<ExportTraceServiceRequest>,
        ) -> Result<Response<ExportTraceServiceResponse>, Status> {
            let metadata = request.metadata().clone();
            self.0
                .received
                .lock()
                .unwrap()
                .push((metadata, request.into_inner()));
            let next = self.0.answers.lock().unwrap().pop_front();
            next.unwrap_or(Ok(ExportTraceServiceResponse::default()))
                .map(Response::new)
        }
    }

    async fn backend() -> (Arc<Backend>, String) {
        let b = Arc::new(Backend::default());
        let svc = TraceServiceServer::new(Svc(b.clone()))
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
        });
        (b, addr.to_string())
    }

    fn id() -> ComponentId {
        ComponentId::parse("otlp/test").unwrap()
    }

    /// Decoded and validated as the registry does, then built with `clock`.
    fn build_json(
        config: &Value,
        clock: Arc<ManualClock>,
    ) -> Result<SendStack<GrpcSender>, ConfigError> {
        let cfg: OtlpConfig = vigil_core::config::decode(ComponentKind::Exporter, &id(), config)?;
        cfg.validate(&id())?;
        build(&Settings::new(ComponentKind::Exporter, &id()), cfg, clock)
    }

    fn exporter(
        rec: &TestRecorder,
        config: Value,
        clock: Arc<ManualClock>,
    ) -> SendStack<GrpcSender> {
        metrics::with_local_recorder(rec, || build_json(&config, clock)).unwrap()
    }

    /// Plaintext, no queue, no retries unless `extra` says so.
    fn sync_config(endpoint: &str, extra: Value) -> Value {
        let mut cfg = json!({
            "endpoint": endpoint,
            "tls": {"insecure": true},
            "sending_queue": {"enabled": false},
            "retry_on_failure": {"enabled": false},
        });
        if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        cfg
    }

    const SENT: &str = "otelcol_exporter_sent_spans{exporter=otlp/test}";
    const FAILED: &str = "otelcol_exporter_send_failed_spans{exporter=otlp/test}";

    fn throttled(delay: Option<Duration>) -> Status {
        match delay {
            Some(d) => Status::with_details(
                Code::ResourceExhausted,
                "over quota",
                rpc::status_with_retry_info(Code::ResourceExhausted as i32, "over quota", d),
            ),
            None => Status::resource_exhausted("over quota"),
        }
    }

    #[tokio::test]
    async fn ok_delivers_the_same_spans_with_headers() {
        let (b, addr) = backend().await;
        let rec = TestRecorder::default();
        let e = exporter(
            &rec,
            sync_config(&addr, json!({"headers": {"X-Tenant": "a"}})),
            ManualClock::new(),
        );
        let data = sample_traces(3);
        e.consume(data.clone()).await.unwrap();
        let got = b.received.lock().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.get("x-tenant").unwrap(), "a");
        assert_eq!(Telemetry::Traces(got[0].1.resource_spans.clone()), data);
        assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (3, 0));
    }

    /// A backend on `ip`:`port` (any loopback address), or on a free port when `port` is 0.
    async fn backend_on(ip: [u8; 4], port: u16) -> (Arc<Backend>, u16) {
        let b = Arc::new(Backend::default());
        let svc = TraceServiceServer::new(Svc(b.clone()))
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd);
        let listener = tokio::net::TcpListener::bind(std::net::SocketAddr::from((ip, port)))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
        });
        (b, port)
    }

    #[tokio::test]
    async fn round_robin_spreads_requests_over_every_resolved_address() {
        // Two backends on one port of two loopback addresses. The name `otlp.test` resolves to
        // both through a stand-in resolver (no DNS server or hosts entry can be set up here);
        // connections, the balancer and the backends are real.
        let (a, port) = backend_on([127, 0, 0, 1], 0).await;
        let (b, _) = backend_on([127, 0, 0, 2], port).await;
        let addrs = vec![
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            std::net::SocketAddr::from(([127, 0, 0, 2], port)),
        ];
        let asked = Arc::new(Mutex::new(Vec::new()));
        let seen = asked.clone();
        let lookup: Lookup = Arc::new(move |host, p| {
            seen.lock().unwrap().push((host, p));
            let addrs = addrs.clone();
            Box::pin(async move { Ok(addrs) })
        });
        let rec = TestRecorder::default();
        let config = sync_config(
            &format!("otlp.test:{port}"),
            json!({"balancer_name": "round_robin"}),
        );
        let cfg: OtlpConfig =
            vigil_core::config::decode(ComponentKind::Exporter, &id(), &config).unwrap();
        cfg.validate(&id()).unwrap();
        let e = metrics::with_local_recorder(&rec, || {
            build_with(
                &Settings::new(ComponentKind::Exporter, &id()),
                cfg,
                ManualClock::new(),
                lookup,
            )
        })
        .unwrap();
        for _ in 0..40 {
            e.consume(sample_traces(1)).await.unwrap();
        }
        let (on_a, on_b) = (
            a.received.lock().unwrap().len(),
            b.received.lock().unwrap().len(),
        );
        assert_eq!(on_a + on_b, 40);
        assert!(
            on_a > 0 && on_b > 0,
            "both addresses used: {on_a} and {on_b}"
        );
        assert_eq!(asked.lock().unwrap()[0], ("otlp.test".to_string(), port));
        assert_eq!(rec.counter(SENT), 40);
    }

    #[tokio::test]
    async fn round_robin_resolves_a_real_name_and_pick_first_is_the_default() {
        let (b, port) = backend_on([127, 0, 0, 1], 0).await;
        let rec = TestRecorder::default();
        for balancer in ["round_robin", "pick_first"] {
            let e = exporter(
                &rec,
                sync_config(
                    &format!("localhost:{port}"),
                    json!({"balancer_name": balancer}),
                ),
                ManualClock::new(),
            );
            e.consume(sample_traces(2)).await.unwrap();
        }
        assert_eq!(b.received.lock().unwrap().len(), 2);
        let cfg: OtlpConfig =
            vigil_core::config::decode(ComponentKind::Exporter, &id(), &json!({"endpoint": "x:1"}))
                .unwrap();
        assert_eq!(cfg.balancer_name, Balancer::PickFirst);
        let e = build_json(
            &json!({"endpoint": "x:1", "balancer_name": "grpclb"}),
            ManualClock::new(),
        )
        .err()
        .expect("an unknown policy is refused");
        assert!(
            e.to_string().contains("balancer_name") && e.to_string().contains("round_robin"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn unavailable_is_retryable() {
        let (b, addr) = backend().await;
        b.answers
            .lock()
            .unwrap()
            .push_back(Err(Status::unavailable("draining")));
        let rec = TestRecorder::default();
        let e = exporter(&rec, sync_config(&addr, json!({})), ManualClock::new());
        let err = e.consume(sample_traces(2)).await.unwrap_err();
        assert_eq!(
            err,
            ConsumeError::Retryable {
                reason: "gRPC UNAVAILABLE: draining".into(),
                retry_after: None
            }
        );
        assert_eq!(rec.counter(FAILED), 2);
    }

    #[tokio::test]
    async fn invalid_argument_is_permanent_and_not_retried() {
        let (b, addr) = backend().await;
        b.answers
            .lock()
            .unwrap()
            .push_back(Err(Status::invalid_argument("bad trace id")));
        let rec = TestRecorder::default();
        let clock = ManualClock::new();
        let cfg = sync_config(&addr, json!({"retry_on_failure": {"enabled": true}}));
        let e = exporter(&rec, cfg, clock.clone());
        let err = e.consume(sample_traces(2)).await.unwrap_err();
        assert_eq!(
            err,
            ConsumeError::permanent("gRPC INVALID_ARGUMENT: bad trace id", 2)
        );
        assert_eq!(b.received.lock().unwrap().len(), 1);
        assert!(clock.sleeps().is_empty());
    }

    #[tokio::test]
    async fn resource_exhausted_needs_retry_info() {
        let (b, addr) = backend().await;
        b.answers.lock().unwrap().extend([
            Err(throttled(None)),
            Err(throttled(Some(Duration::from_millis(2500)))),
        ]);
        let rec = TestRecorder::default();
        let e = exporter(&rec, sync_config(&addr, json!({})), ManualClock::new());
        let err = e.consume(sample_traces(1)).await.unwrap_err();
        assert!(!err.is_retryable(), "{err:?}");
        let err = e.consume(sample_traces(1)).await.unwrap_err();
        assert_eq!(
            err,
            ConsumeError::Retryable {
                reason: "gRPC RESOURCE_EXHAUSTED: over quota".into(),
                retry_after: Some(Duration::from_millis(2500)),
            }
        );
    }

    #[tokio::test]
    async fn retry_waits_as_retry_info_asks_then_succeeds() {
        let (b, addr) = backend().await;
        b.answers.lock().unwrap().extend([
            Err(throttled(Some(Duration::from_secs(3)))),
            Err(Status::unavailable("restarting")),
        ]);
        let rec = TestRecorder::default();
        let clock = ManualClock::new();
        let cfg = sync_config(
            &addr,
            json!({"retry_on_failure": {"enabled": true, "initial_interval": "10ms", "randomization_factor": 0}}),
        );
        let e = exporter(&rec, cfg, clock.clone());
        e.consume(sample_traces(2)).await.unwrap();
        assert_eq!(b.received.lock().unwrap().len(), 3);
        assert_eq!(
            clock.sleeps(),
            vec![Duration::from_secs(3), Duration::from_millis(15)]
        );
        assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (2, 0));
    }

    #[tokio::test]
    async fn partial_success_is_counted_not_retried() {
        let (b, addr) = backend().await;
        b.answers
            .lock()
            .unwrap()
            .push_back(Ok(ExportTraceServiceResponse {
                partial_success: Some(ExportTracePartialSuccess {
                    rejected_spans: 2,
                    error_message: "spans too old".into(),
                }),
            }));
        let rec = TestRecorder::default();
        let cfg = sync_config(&addr, json!({"retry_on_failure": {"enabled": true}}));
        let e = exporter(&rec, cfg, ManualClock::new());
        e.consume(sample_traces(5)).await.unwrap();
        assert_eq!(b.received.lock().unwrap().len(), 1);
        assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (3, 2));
    }

    #[tokio::test]
    async fn queued_with_zstd_and_http_scheme_delivers_and_drains() {
        let (b, addr) = backend().await;
        let rec = TestRecorder::default();
        // `http://` means plaintext without `tls.insecure`.
        let cfg = json!({"endpoint": format!("http://{addr}"), "compression": "zstd"});
        let e = exporter(&rec, cfg, ManualClock::new());
        e.start(&Host::detached()).await.unwrap();
        for _ in 0..4 {
            e.consume(sample_traces(2)).await.unwrap();
        }
        e.shutdown().await.unwrap();
        assert_eq!(b.received.lock().unwrap().len(), 4);
        assert_eq!(rec.counter(SENT), 8);
    }

    #[tokio::test]
    async fn unreachable_backend_is_retryable() {
        let rec = TestRecorder::default();
        let e = exporter(
            &rec,
            sync_config("127.0.0.1:9", json!({})),
            ManualClock::new(),
        );
        let err = e.consume(sample_traces(1)).await.unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
    }

    /// What the fault injector does to a connection it spoils.
    #[derive(Clone, Copy)]
    enum Fault {
        /// Reads what the client sent, then resets the connection (RST, not FIN).
        Reset,
        /// Answers the HTTP/2 preface as an HTTP/1.1 server does, then closes.
        Http1,
    }

    /// A TCP front for the backend at `backend`: the first `bad` connections get `fault`, later ones
    /// are forwarded, as when a backend (or the proxy before it) recovers.
    async fn faulty_front(backend: String, fault: Fault, bad: usize) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut spoiled = 0;
            while let Ok((mut conn, _)) = listener.accept().await {
                if spoiled < bad {
                    spoiled += 1;
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    match fault {
                        Fault::Reset => {
                            // A zero linger turns the close into a reset (RST).
                            let _ = conn.set_zero_linger();
                            drop(conn);
                        }
                        Fault::Http1 => {
                            let _ = conn
                                .write_all(
                                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\
                                      connection: close\r\n\r\n",
                                )
                                .await;
                            let _ = conn.shutdown().await;
                        }
                    }
                    continue;
                }
                let backend = backend.clone();
                tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(&backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
                    }
                });
            }
        });
        addr
    }

    /// Sends through a front that spoils the first connection and checks that the failure was
    /// retried and the spans arrived once the front recovered.
    async fn delivered_after(fault: Fault) {
        let (b, backend_addr) = backend().await;
        let front = faulty_front(backend_addr, fault, 1).await;
        let rec = TestRecorder::default();
        let clock = ManualClock::new();
        let cfg = sync_config(
            &front,
            json!({"retry_on_failure": {"enabled": true, "initial_interval": "10ms"}}),
        );
        let e = exporter(&rec, cfg, clock.clone());
        let result = e.consume(sample_traces(3)).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(b.received.lock().unwrap().len(), 1);
        assert_eq!(clock.sleeps().len(), 1, "one retry");
        assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (3, 0));
    }

    #[tokio::test]
    async fn a_reset_connection_is_retried() {
        delivered_after(Fault::Reset).await;
    }

    #[tokio::test]
    async fn an_http1_answer_is_retried() {
        delivered_after(Fault::Http1).await;
    }

    #[tokio::test]
    async fn a_failed_tls_handshake_is_retryable() {
        // A plaintext backend cannot complete a TLS handshake.
        let (_b, addr) = backend().await;
        let rec = TestRecorder::default();
        let cfg = json!({
            "endpoint": addr,
            "tls": {"insecure_skip_verify": true},
            "sending_queue": {"enabled": false},
            "retry_on_failure": {"enabled": false},
        });
        let e = exporter(&rec, cfg, ManualClock::new());
        let err = e.consume(sample_traces(1)).await.unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
    }

    /// A trace backend behind vigil's own server loop and server TLS (what the `otlp` receiver
    /// runs), offering only the TLS versions from `min` to `max`, with a certificate for
    /// `localhost` signed by itself. Returns the backend, its address and the certificate's path.
    async fn tls_backend(
        dir: &std::path::Path,
        min: &str,
        max: &str,
    ) -> (Arc<Backend>, std::net::SocketAddr, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let ca = dir.join(format!("ca-{min}-{max}.pem"));
        std::fs::write(&ca, cert.pem()).unwrap();
        let tls = vigil_core::net::tls::TlsServerSettings {
            cert_pem: Some(cert.pem()),
            key_pem: Some(key.serialize_pem()),
            min_version: Some(min.into()),
            max_version: Some(max.into()),
            ..Default::default()
        }
        .server(&[b"h2"])
        .unwrap();
        let b = Arc::new(Backend::default());
        let svc =
            TraceServiceServer::new(Svc(b.clone())).accept_compressed(CompressionEncoding::Gzip);
        let router = tonic::service::Routes::new(svc)
            .prepare()
            .into_axum_router();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let opts = vigil_core::net::serve::ServeOptions {
            http2_only: true,
            tls: Some(tls),
            ..Default::default()
        };
        let counters = vigil_core::net::serve::ConnCounters::new("receiver", "otlp/tls", "grpc");
        tokio::spawn(vigil_core::net::serve::serve(
            listener,
            router,
            opts,
            counters,
            tokio_util::sync::CancellationToken::new(),
        ));
        (b, addr, ca.to_string_lossy().into_owned())
    }

    /// `tls::min_version: "1.3"` on gRPC: the exporter reaches a server that offers TLS 1.3, and a
    /// server that offers only TLS 1.2 refuses the handshake, which stays retryable (the batch is
    /// kept and tried again, never dropped as permanent). Both balancers dial through the same
    /// TLS connector.
    #[tokio::test]
    async fn min_version_13_reaches_a_13_server_and_is_refused_by_a_12_one() {
        let dir = tempfile::tempdir().unwrap();
        let (b13, addr13, ca13) = tls_backend(dir.path(), "1.3", "1.3").await;
        let (b12, addr12, ca12) = tls_backend(dir.path(), "1.2", "1.2").await;
        for balancer in ["pick_first", "round_robin"] {
            let tls = |ca: &str, min: &str| json!({"ca_file": ca, "min_version": min, "max_version": "1.3"});
            let config = |port: u16, tls: Value| {
                json!({
                    "endpoint": format!("localhost:{port}"),
                    "tls": tls,
                    "balancer_name": balancer,
                    "sending_queue": {"enabled": false},
                    "retry_on_failure": {"enabled": false},
                })
            };
            let rec = TestRecorder::default();
            let e = exporter(
                &rec,
                config(addr13.port(), tls(&ca13, "1.3")),
                ManualClock::new(),
            );
            e.consume(sample_traces(2)).await.unwrap();
            assert_eq!(rec.counter(SENT), 2, "{balancer}");

            let e = exporter(
                &rec,
                config(addr12.port(), tls(&ca12, "1.3")),
                ManualClock::new(),
            );
            let err = e.consume(sample_traces(1)).await.unwrap_err();
            assert!(err.is_retryable(), "{balancer}: {err:?}");
            // The same exporter allowing TLS 1.2 gets through: the refusal was the version.
            let e = exporter(
                &rec,
                config(addr12.port(), tls(&ca12, "1.2")),
                ManualClock::new(),
            );
            e.consume(sample_traces(1)).await.unwrap();
        }
        assert_eq!(b13.received.lock().unwrap().len(), 2);
        assert_eq!(b12.received.lock().unwrap().len(), 2);
    }

    /// `server_name_override` on gRPC: the server's certificate names only `localhost`; reached
    /// as 127.0.0.1 it verifies only with the override, and `cipher_suites` narrows TLS 1.2.
    #[tokio::test]
    async fn server_name_override_and_cipher_suites_apply_on_grpc() {
        let dir = tempfile::tempdir().unwrap();
        let (b, addr, ca) = tls_backend(dir.path(), "1.2", "1.2").await;
        let rec = TestRecorder::default();
        let config = |tls: Value| {
            json!({
                "endpoint": addr.to_string(),
                "tls": tls,
                "sending_queue": {"enabled": false},
                "retry_on_failure": {"enabled": false},
            })
        };
        let e = exporter(&rec, config(json!({"ca_file": ca})), ManualClock::new());
        let err = e.consume(sample_traces(1)).await.unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
        assert!(err.to_string().contains("not valid for name"), "{err}");
        let named = json!({"ca_file": ca, "server_name_override": "localhost"});
        let e = exporter(&rec, config(named), ManualClock::new());
        e.consume(sample_traces(1)).await.unwrap();
        // rcgen's key is ECDSA: offering only an RSA suite for TLS 1.2 cannot agree.
        let rsa_only = json!({
            "ca_file": ca,
            "server_name_override": "localhost",
            "cipher_suites": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
        });
        let e = exporter(&rec, config(rsa_only), ManualClock::new());
        assert!(e
            .consume(sample_traces(1))
            .await
            .unwrap_err()
            .is_retryable());
        let ecdsa = json!({
            "ca_file": ca,
            "server_name_override": "localhost",
            "cipher_suites": ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"],
        });
        let e = exporter(&rec, config(ecdsa), ManualClock::new());
        e.consume(sample_traces(1)).await.unwrap();
        assert_eq!(b.received.lock().unwrap().len(), 2);
    }

    /// An authenticator extension that always hands out the same header.
    struct FixedToken;

    #[async_trait]
    impl vigil_core::ClientAuth for FixedToken {
        async fn headers(&self) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, String> {
            Ok(vec![(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_static("Bearer s3cret"),
            )])
        }
    }

    #[async_trait]
    impl Component for FixedToken {}

    impl vigil_core::Extension for FixedToken {
        fn client_auth(&self) -> Option<Arc<dyn vigil_core::ClientAuth>> {
            Some(Arc::new(FixedToken))
        }
    }

    fn host_with(ext: &str, e: Arc<dyn vigil_core::Extension>) -> Host {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let extensions = [(ComponentId::parse(ext).unwrap(), e)]
            .into_iter()
            .collect();
        Host::new(extensions, tx)
    }

    #[tokio::test]
    async fn the_authenticator_header_goes_on_every_request() {
        let (b, addr) = backend().await;
        let rec = TestRecorder::default();
        let cfg = sync_config(
            &addr,
            json!({"auth": {"authenticator": "bearertokenauth/x"}, "headers": {"X-Tenant": "a"}}),
        );
        let e = exporter(&rec, cfg, ManualClock::new());
        // Not started: the request must not go out without its credentials.
        let err = e.consume(sample_traces(1)).await.unwrap_err();
        assert!(
            err.is_retryable() && err.to_string().contains("not started"),
            "{err}"
        );
        assert!(b.received.lock().unwrap().is_empty());
        // Started without the extension: a start error naming the key.
        let missing = e.start(&Host::detached()).await.unwrap_err().to_string();
        assert!(missing.contains("auth::authenticator"), "{missing}");
        e.start(&host_with("bearertokenauth/x", Arc::new(FixedToken)))
            .await
            .unwrap();
        e.consume(sample_traces(1)).await.unwrap();
        e.consume(sample_traces(1)).await.unwrap();
        let got = b.received.lock().unwrap();
        assert_eq!(got.len(), 2);
        for (metadata, _) in got.iter() {
            assert_eq!(metadata.get("authorization").unwrap(), "Bearer s3cret");
            assert_eq!(metadata.get("x-tenant").unwrap(), "a");
        }
        let f = factory();
        let bad = json!({"endpoint": "gw:4317", "auth": {"authenticator": "/x"}});
        let msg = f.validate(&id(), &bad).unwrap_err().to_string();
        assert!(msg.contains("auth::authenticator"), "{msg}");
    }

    #[test]
    fn requests_persist() {
        let req = GrpcRequest {
            signal: Signal::Logs,
            body: Bytes::from_static(b"\x0a\x00"),
        };
        let back = GrpcRequest::from_bytes(&req.to_bytes()).unwrap();
        assert_eq!((back.signal, back.body), (Signal::Logs, req.body));
        assert!(GrpcRequest::from_bytes(&[]).is_none());
        // Tag 3 is profiles now; 4 is no signal.
        let profiles = GrpcRequest::from_bytes(&[3]).expect("profiles tag");
        assert_eq!(profiles.signal, Signal::Profiles);
        assert!(GrpcRequest::from_bytes(&[4]).is_none());
    }

    #[test]
    fn configgrpc_client_keys_are_read() {
        let cfg: OtlpConfig = serde_json::from_value(json!({
            "endpoint": "gw:4317", "tls": {"insecure": true}, "authority": "collector.example",
            "wait_for_ready": true, "read_buffer_size": 524288, "write_buffer_size": 524288,
        }))
        .unwrap();
        cfg.validate(&id()).unwrap();
        let dialer = cfg.dialer(&id(), None, None).unwrap();
        // The requests' authority is the configured one; the connection still goes to gw:4317.
        assert_eq!(
            dialer.endpoint.uri().to_string(),
            "http://gw:4317/",
            "connects to the endpoint"
        );
        let bad: OtlpConfig =
            serde_json::from_value(json!({"endpoint": "gw:4317", "authority": "a b"})).unwrap();
        let e = bad.validate(&id()).unwrap_err().to_string();
        assert!(e.contains("authority"), "{e}");
    }

    #[test]
    fn endpoints_and_tls_by_default() {
        let target = |v: Value| {
            let cfg: OtlpConfig = serde_json::from_value(v).unwrap();
            cfg.target(&id())
        };
        assert_eq!(
            target(json!({"endpoint": "gw:4317"})).unwrap(),
            Target {
                authority: "gw:4317".into(),
                tls: true
            }
        );
        assert!(
            !target(json!({"endpoint": "gw:4317", "tls": {"insecure": true}}))
                .unwrap()
                .tls
        );
        assert!(!target(json!({"endpoint": "http://gw:4317"})).unwrap().tls);
        assert!(target(json!({"endpoint": "https://gw:4317/"})).unwrap().tls);
        assert_eq!(
            target(json!({"endpoint": "dns:///gw:4317"}))
                .unwrap()
                .authority,
            "gw:4317"
        );
        assert_eq!(
            target(json!({"endpoint": "[::1]:4317"})).unwrap().authority,
            "[::1]:4317"
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let f = factory();
        let check = |v: Value| f.validate(&id(), &v).unwrap_err().to_string();
        assert_eq!(
            check(json!({})),
            "exporters::otlp/test::endpoint: is required (host:port)"
        );
        assert!(check(json!({"endpoint": "gw"})).contains("expected host:port"));
        assert!(check(json!({"endpoint": "gw:99999"})).contains("port \"99999\""));
        assert!(check(json!({"endpoint": "unix:///run/otel.sock"})).contains("unsupported scheme"));
        assert!(
            check(json!({"endpoint": "gw:4317", "compression": "snappy"}))
                .contains("compression: unsupported compression")
        );
        assert!(check(json!({
            "endpoint": "gw:4317",
            "tls": {"insecure_skip_verify": true, "ca_file": "ca.pem"}
        }))
        .contains("tls::insecure_skip_verify: cannot be combined"));
        assert!(f
            .validate(
                &id(),
                &json!({"endpoint": "gw:4317", "tls": {"min_version": "1.3"}})
            )
            .is_ok());
        assert!(
            check(json!({"endpoint": "gw:4317", "tls": {"ca_file": "/nonexistent/ca.pem"}}))
                .contains("tls::ca_file: cannot read")
        );
        assert!(
            check(json!({"endpoint": "gw:4317", "tls": {"max_version": "1.1"}}))
                .contains("tls::max_version: TLS 1.1 is not supported")
        );
        assert!(check(json!({"endpoint": "gw:4317", "timeout": "fast"})).contains("timeout"));
        assert!(
            check(json!({"endpoint": "gw:4317", "retry_on_failure": {"multiplier": 0}}))
                .contains("retry_on_failure::multiplier")
        );
        let ok = json!({"endpoint": "gw:4317", "tls": {"insecure": true}, "timeout": "10s"});
        assert!(f.validate(&id(), &ok).is_ok());
        let cfg: OtlpConfig = serde_json::from_value(json!({"endpoint": "gw:4317"})).unwrap();
        assert_eq!(
            (cfg.timeout, cfg.compression),
            (Duration::from_secs(5), Compression::Gzip)
        );
    }

    #[test]
    fn tls_by_default_sets_up_or_explains() {
        // Hosts without a system trust store cannot build a TLS client; the error must say what to do.
        match build_json(&json!({"endpoint": "gw:4317"}), ManualClock::new()) {
            Ok(e) => assert!(e.sender().dialer.tls.is_some()),
            Err(e) => assert!(e.to_string().contains("tls::ca_file"), "{e}"),
        }
    }

    #[test]
    fn skip_verify_builds_without_a_trust_store() {
        let cfg = json!({"endpoint": "gw:4317", "tls": {"insecure_skip_verify": true}});
        let e = build_json(&cfg, ManualClock::new()).unwrap();
        assert_eq!(e.sender().dialer.target, "https://gw:4317");
        assert!(e.sender().dialer.tls.is_some());
    }

    #[test]
    fn missing_ca_file_is_a_config_error() {
        let cfg = json!({"endpoint": "gw:4317", "tls": {"ca_file": "/nonexistent/ca.pem"}});
        let e = build_json(&cfg, ManualClock::new()).err().unwrap();
        assert!(
            e.to_string()
                .starts_with("exporters::otlp/test::tls::ca_file: cannot read"),
            "{e}"
        );
    }
}
