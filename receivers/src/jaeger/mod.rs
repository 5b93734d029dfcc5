//! `jaeger`: receives Jaeger spans as otelcol's `jaegerreceiver` does, on its four protocols and
//! default ports: gRPC `jaeger.api_v2.CollectorService/PostSpans` (14250), Thrift binary over HTTP
//! `POST /api/traces` (14268), and the agent's Thrift `emitBatch` over UDP, compact (6831) and
//! binary (6832). Spans are translated to OTLP as otelcol's jaeger translator does (`model`).
//!
//! Layout: `config` (keys, defaults, checks), `thrift` (both Thrift encodings), `proto` (the
//! `api_v2` messages), `model` (the translation). This file holds the factory and the listeners.

pub mod config;
pub(crate) mod model;
pub(crate) mod proto;
pub(crate) mod thrift;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes};
use config::{GrpcServer, HttpServer, JaegerConfig, Udp};
use http::{header::CONTENT_TYPE, Method, StatusCode};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use thrift::Protocol;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Service, StdError};
use tonic::server::{NamedService, UnaryService};
use tonic::Status;
use vigil_core::config::{bind_tcp, resolve_endpoint};
use vigil_core::factory::{FactoryBase, ReceiverFactory};
use vigil_core::net::serve::{serve, ConnCounters};
use vigil_core::{
    ClientMetadata, Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer,
    Host, NextConsumers, Receiver, ReceiverObs, Settings, Signal, Stability, Telemetry,
};

struct Factory;

/// The `jaeger` receiver factory, for the registry.
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl FactoryBase for Factory {
    type Config = JaegerConfig;

    fn type_name(&self) -> &'static str {
        "jaeger"
    }

    fn validate(&self, _id: &ComponentId, cfg: &JaegerConfig) -> Result<(), ConfigError> {
        config::check(cfg)
    }
}

impl ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[(Signal::Traces, Stability::Beta)]
    }

    fn create(
        &self,
        set: Settings,
        cfg: JaegerConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        Ok(Arc::new(JaegerReceiver::new(set, cfg, next)))
    }
}

/// The addresses bound, once started.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bound {
    pub grpc: Option<SocketAddr>,
    pub thrift_http: Option<SocketAddr>,
    pub thrift_compact: Option<SocketAddr>,
    pub thrift_binary: Option<SocketAddr>,
}

/// The `jaeger` receiver.
pub struct JaegerReceiver {
    set: Settings,
    cfg: JaegerConfig,
    next: NextConsumers,
    bound: Mutex<Option<Bound>>,
}

impl JaegerReceiver {
    fn new(set: Settings, cfg: JaegerConfig, next: NextConsumers) -> JaegerReceiver {
        JaegerReceiver {
            set,
            cfg,
            next,
            bound: Mutex::new(None),
        }
    }

    /// The addresses actually bound, once started; useful with port 0.
    pub fn bound(&self) -> Option<Bound> {
        *vigil_core::lock(&self.bound)
    }
}

/// What every transport shares: the pipeline and its own counters.
struct Shared {
    id: String,
    next: Arc<dyn Consumer>,
    obs: ReceiverObs,
    /// Requests or packets that could not be decoded.
    bad: metrics::Counter,
    /// Requests or packets refused for their size (sent or decoded).
    too_large: metrics::Counter,
    /// `include_metadata`: each request's headers travel down the pipeline with its spans.
    include_metadata: bool,
}

impl Shared {
    fn new(
        set: &Settings,
        next: Arc<dyn Consumer>,
        transport: &'static str,
        include_metadata: bool,
    ) -> Shared {
        let id = set.id.to_string();
        let labels = [
            ("receiver", id.clone()),
            ("transport", transport.to_string()),
        ];
        Shared {
            obs: set.receiver_obs(transport),
            bad: metrics::counter!("vigil_receiver_requests_malformed", &labels),
            too_large: metrics::counter!("vigil_receiver_requests_too_large", &labels),
            id,
            next,
            include_metadata,
        }
    }

    /// The client metadata a request carries down the pipeline, as otelcol's `client.Info`.
    fn metadata(&self, headers: &http::HeaderMap) -> Option<ClientMetadata> {
        self.include_metadata
            .then(|| ClientMetadata::from_headers(headers))
    }

    /// Pushes spans down the pipeline and counts the answer.
    async fn push(
        &self,
        rs: Vec<ResourceSpans>,
        meta: Option<ClientMetadata>,
    ) -> Result<(), ConsumeError> {
        let data = Telemetry::Traces(rs);
        let items = data.item_count();
        if items == 0 {
            return Ok(());
        }
        let r = match meta {
            Some(m) => m.scope(self.next.consume(data)).await,
            None => self.next.consume(data).await,
        };
        self.obs.end_op(Signal::Traces, items, &r);
        if let Err(e) = &r {
            tracing::debug!(receiver = %self.id, error = %e, "pipeline refused jaeger spans");
        }
        r
    }
}

#[async_trait::async_trait]
impl Component for JaegerReceiver {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let id = &self.set.id;
        let Some(next) = self.next.get(Signal::Traces).cloned() else {
            anyhow::bail!("receivers::{id}: no traces pipeline uses this receiver");
        };
        let p = self.cfg.protocols.clone().unwrap_or_default();
        // Bind everything before serving anything, so a taken port leaves nothing half-started.
        let grpc = match &p.grpc {
            Some(g) => Some((g, bind_tcp(ComponentKind::Receiver, id, &g.endpoint).await?)),
            None => None,
        };
        let http = match &p.thrift_http {
            Some(h) => Some((h, bind_tcp(ComponentKind::Receiver, id, &h.endpoint).await?)),
            None => None,
        };
        let mut udp = Vec::new();
        if let Some(u) = &p.thrift_compact {
            let u = u.settings();
            udp.push((Protocol::Compact, bind_udp(id, "thrift_compact", &u)?, u));
        }
        if let Some(u) = &p.thrift_binary {
            let u = u.settings();
            udp.push((Protocol::Binary, bind_udp(id, "thrift_binary", &u)?, u));
        }
        let mut bound = Bound::default();
        let tasks = &self.set.tasks;
        if let Some((g, listener)) = grpc {
            bound.grpc = listener.local_addr().ok();
            let shared = Arc::new(Shared::new(
                &self.set,
                Arc::clone(&next),
                "grpc",
                g.include_metadata,
            ));
            let router = grpc_router(shared, g);
            let counters = ConnCounters::new("receiver", &id.to_string(), "grpc");
            tasks.spawn(serve(
                listener,
                router,
                g.serve_options(),
                counters,
                tasks.stopping(),
            ));
        }
        if let Some((h, listener)) = http {
            bound.thrift_http = listener.local_addr().ok();
            let shared = Arc::new(Shared::new(
                &self.set,
                Arc::clone(&next),
                "collector_http",
                h.include_metadata,
            ));
            let router = http_router(shared, h);
            let counters = ConnCounters::new("receiver", &id.to_string(), "collector_http");
            tasks.spawn(serve(
                listener,
                router,
                h.serve_options(),
                counters,
                tasks.stopping(),
            ));
        }
        for (proto, sock, u) in udp {
            let transport = match proto {
                Protocol::Compact => {
                    bound.thrift_compact = sock.local_addr().ok();
                    "udp_thrift_compact"
                }
                Protocol::Binary => {
                    bound.thrift_binary = sock.local_addr().ok();
                    "udp_thrift_binary"
                }
            };
            let shared = Arc::new(Shared::new(&self.set, Arc::clone(&next), transport, false));
            serve_udp(tasks, sock, proto, &u, shared, transport);
        }
        tracing::info!(receiver = %id, ?bound, "jaeger receiver listening");
        *vigil_core::lock(&self.bound) = Some(bound);
        Ok(())
    }

    async fn shutdown_by(&self, deadline: Instant) -> anyhow::Result<()> {
        self.set.tasks.stop(deadline).await;
        Ok(())
    }
}

// ---- gRPC ----

const POST_SPANS: &str = "/jaeger.api_v2.CollectorService/PostSpans";

/// Hands the request's bytes over undecoded: `proto::post_spans` decodes them one span at a time
/// within the decoded-size budget.
struct RawCodec;

struct RawDecoder;
struct ResponseEncoder;

impl Codec for RawCodec {
    type Encode = proto::PostSpansResponse;
    type Decode = Bytes;
    type Encoder = ResponseEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> ResponseEncoder {
        ResponseEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for ResponseEncoder {
    type Item = proto::PostSpansResponse;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        prost::Message::encode(&item, dst)
            .map_err(|e| Status::internal(format!("failed to encode the response: {e}")))
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[derive(Clone)]
struct CollectorService {
    shared: Arc<Shared>,
    max_recv: usize,
    max_decoded: usize,
}

impl NamedService for CollectorService {
    const NAME: &'static str = "jaeger.api_v2.CollectorService";
}

struct PostSpans {
    shared: Arc<Shared>,
    max_decoded: usize,
}

impl UnaryService<Bytes> for PostSpans {
    type Response = proto::PostSpansResponse;
    type Future = BoxFuture<tonic::Response<proto::PostSpansResponse>, Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let (shared, max_decoded) = (Arc::clone(&self.shared), self.max_decoded);
        Box::pin(async move {
            let meta = if shared.include_metadata {
                shared.metadata(&request.metadata().clone().into_headers())
            } else {
                None
            };
            let body = request.into_inner();
            let rs = match proto::post_spans(&body, max_decoded) {
                Ok(rs) => rs,
                Err(proto::RequestError::Malformed(e)) => {
                    shared.bad.increment(1);
                    return Err(Status::invalid_argument(format!(
                        "failed to decode jaeger.api_v2.PostSpansRequest: {e}"
                    )));
                }
                Err(proto::RequestError::TooLarge(e)) => {
                    shared.too_large.increment(1);
                    return Err(Status::resource_exhausted(e));
                }
            };
            match shared.push(rs, meta).await {
                Ok(()) => Ok(tonic::Response::new(proto::PostSpansResponse {})),
                Err(ConsumeError::Retryable { reason, .. }) => Err(Status::unavailable(reason)),
                Err(ConsumeError::Permanent { reason, .. }) => {
                    Err(Status::invalid_argument(reason))
                }
            }
        })
    }
}

impl<B> Service<http::Request<B>> for CollectorService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if req.uri().path() != POST_SPANS {
                return Ok(Status::unimplemented(format!(
                    "unknown method {} for service jaeger.api_v2.CollectorService",
                    req.uri().path()
                ))
                .into_http());
            }
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                .accept_compressed(tonic::codec::CompressionEncoding::Zstd)
                .max_decoding_message_size(this.max_recv);
            let method = PostSpans {
                shared: Arc::clone(&this.shared),
                max_decoded: this.max_decoded,
            };
            let response = grpc.unary(method, req).await;
            // tonic answers an oversize message OUT_OF_RANGE; grpc-go (so otelcol) says
            // RESOURCE_EXHAUSTED.
            if let Some(s) = Status::from_header_map(response.headers()) {
                if s.code() == tonic::Code::OutOfRange {
                    this.shared.too_large.increment(1);
                    return Ok(Status::resource_exhausted(s.message()).into_http());
                }
            }
            Ok(response)
        })
    }
}

fn grpc_router(shared: Arc<Shared>, g: &GrpcServer) -> axum::Router {
    let svc = CollectorService {
        shared,
        max_recv: g.max_recv_bytes(),
        max_decoded: config::decoded_bytes(g.max_decoded_size_mib),
    };
    tonic::service::Routes::new(svc)
        .prepare()
        .into_axum_router()
}

// ---- Thrift over HTTP ----

#[derive(Clone)]
struct HttpState {
    shared: Arc<Shared>,
    max_body: usize,
    max_decoded: usize,
}

fn http_router(shared: Arc<Shared>, h: &HttpServer) -> axum::Router {
    let st = HttpState {
        shared,
        max_body: h.max_body_bytes(),
        max_decoded: config::decoded_bytes(h.max_decoded_size_mib),
    };
    axum::Router::new()
        .route("/api/traces", axum::routing::any(post_traces))
        .with_state(st)
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg.into(),
    )
        .into_response()
}

/// `POST /api/traces` with a Thrift-binary `Batch`, answered as jaeger's collector does: 202 on
/// success, 400 for a body that is not one, 415-like 400 for another content type.
async fn post_traces(State(st): State<HttpState>, req: Request) -> Response {
    if req.method() != Method::POST {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "405 method not allowed, supported: [POST]",
        );
    }
    let ctype = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let media = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media != "application/x-thrift" && media != "application/vnd.apache.thrift.binary" {
        return text(
            StatusCode::BAD_REQUEST,
            format!("Unsupported content type: {ctype}"),
        );
    }
    let encoding = req
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let meta = st.shared.metadata(req.headers());
    let body = match read_body(req.into_body(), encoding.as_deref(), st.max_body).await {
        Ok(b) => b,
        Err(BodyError::TooLarge(m)) => {
            st.shared.too_large.increment(1);
            return text(StatusCode::PAYLOAD_TOO_LARGE, m);
        }
        Err(BodyError::Bad(m)) => {
            st.shared.bad.increment(1);
            return text(StatusCode::BAD_REQUEST, m);
        }
    };
    let batch = match thrift::decode_batch(&body, Protocol::Binary) {
        Ok(b) => b,
        Err(e) => {
            st.shared.bad.increment(1);
            return text(
                StatusCode::BAD_REQUEST,
                format!("Unable to process request body: {e}"),
            );
        }
    };
    let mut budget = model::Budget::new(st.max_decoded);
    let rs = match model::thrift_batch(batch.process, batch.spans, &mut budget) {
        Ok(rs) => rs,
        Err(e) => {
            st.shared.too_large.increment(1);
            return text(StatusCode::PAYLOAD_TOO_LARGE, e.to_string());
        }
    };
    match st.shared.push(rs, meta).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(ConsumeError::Retryable { reason, .. }) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Cannot submit Jaeger batch: {reason}"),
        ),
        Err(ConsumeError::Permanent { reason, .. }) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Cannot submit Jaeger batch: {reason}"),
        ),
    }
}

/// Why a request body could not be read.
pub(crate) enum BodyError {
    TooLarge(String),
    Bad(String),
}

/// Reads a body of at most `limit` bytes and inflates it per its `Content-Encoding` (gzip,
/// deflate/zlib, or none), again to at most `limit` bytes, as confighttp's server does.
pub(crate) async fn read_body(
    body: Body,
    encoding: Option<&str>,
    limit: usize,
) -> Result<Bytes, BodyError> {
    use futures::StreamExt;
    let mut raw = bytes::BytesMut::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| BodyError::Bad(format!("failed to read the request body: {e}")))?;
        if raw.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(format!(
                "request body larger than {limit} bytes (max_request_body_size)"
            )));
        }
        raw.extend_from_slice(&chunk);
    }
    let raw = raw.freeze();
    use std::io::Read;
    let inflate = |r: &mut dyn Read| -> Result<Bytes, BodyError> {
        let mut out = Vec::new();
        let n = r
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| BodyError::Bad(format!("failed to decompress the request body: {e}")))?;
        if n > limit {
            return Err(BodyError::TooLarge(format!(
                "request body larger than {limit} bytes once decompressed"
            )));
        }
        Ok(Bytes::from(out))
    };
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => Ok(raw),
        Some("gzip") => inflate(&mut flate2::read::GzDecoder::new(raw.reader())),
        Some("deflate") | Some("zlib") => {
            inflate(&mut flate2::read::ZlibDecoder::new(raw.reader()))
        }
        Some(other) => Err(BodyError::Bad(format!(
            "unsupported Content-Encoding {other:?}: gzip, deflate and zlib are"
        ))),
    }
}

// ---- Thrift over UDP (the agent protocol) ----

fn bind_udp(id: &ComponentId, key: &str, u: &Udp) -> anyhow::Result<tokio::net::UdpSocket> {
    let addr = resolve_endpoint(&u.endpoint).map_err(|e| {
        anyhow::anyhow!(
            "receivers::{id}::protocols::{key}::endpoint: cannot resolve {:?}: {e}",
            u.endpoint
        )
    })?;
    let sock = std::net::UdpSocket::bind(addr).map_err(|e| {
        anyhow::anyhow!(
            "receivers::{id}: cannot listen on udp {} ({addr}): {e}",
            u.endpoint
        )
    })?;
    if u.socket_buffer_size > 0 {
        set_recv_buffer(&sock, u.socket_buffer_size).map_err(|e| {
            anyhow::anyhow!("receivers::{id}::protocols::{key}::socket_buffer_size: {e}")
        })?;
    }
    sock.set_nonblocking(true)?;
    Ok(tokio::net::UdpSocket::from_std(sock)?)
}

fn set_recv_buffer(sock: &std::net::UdpSocket, bytes: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt reads `v` for the given length and touches nothing else.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// One reader task fills a queue of `queue_size` packets that `workers` tasks decode, as otelcol's
/// UDP server does; a packet that finds the queue full, or is longer than `max_packet_size`, is
/// dropped and counted. UDP has no way to push back on a sender, so the queue is where load is shed.
fn serve_udp(
    tasks: &vigil_core::Tasks,
    sock: tokio::net::UdpSocket,
    proto: Protocol,
    u: &Udp,
    shared: Arc<Shared>,
    transport: &'static str,
) {
    let labels = [
        ("receiver", shared.id.clone()),
        ("transport", transport.to_string()),
    ];
    let dropped = metrics::counter!("vigil_receiver_packets_dropped", &labels);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(u.queue_size);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let stop = tasks.stopping();
    let max = u.max_packet_size;
    let reader_shared = Arc::clone(&shared);
    tasks.spawn(async move {
        // One byte more than the limit tells a datagram that was cut from one that fit.
        let mut buf = vec![0u8; max + 1];
        loop {
            let n = tokio::select! {
                _ = stop.cancelled() => return,
                r = sock.recv_from(&mut buf) => match r {
                    Ok((n, _)) => n,
                    Err(e) => {
                        tracing::debug!(error = %e, "jaeger: udp receive failed");
                        // A socket error that repeats must not spin a core.
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            if n > max {
                reader_shared.too_large.increment(1);
                dropped.increment(1);
                continue;
            }
            if tx.try_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                dropped.increment(1);
            }
        }
    });
    for _ in 0..u.workers {
        let (rx, shared, stop) = (Arc::clone(&rx), Arc::clone(&shared), tasks.stopping());
        tasks.spawn(async move {
            loop {
                let pkt = tokio::select! {
                    _ = stop.cancelled() => return,
                    p = async { rx.lock().await.recv().await } => match p {
                        Some(p) => p,
                        None => return,
                    },
                };
                handle_packet(&shared, &pkt, proto).await;
            }
        });
    }
}

async fn handle_packet(shared: &Shared, pkt: &[u8], proto: Protocol) {
    let batch = match thrift::decode_agent_message(pkt, proto) {
        Ok(thrift::AgentCall::EmitBatch(b)) => b,
        Ok(thrift::AgentCall::Other(name)) => {
            shared.bad.increment(1);
            tracing::debug!(receiver = %shared.id, method = %name, "jaeger: unsupported agent method");
            return;
        }
        Err(e) => {
            shared.bad.increment(1);
            tracing::debug!(receiver = %shared.id, error = %e, "jaeger: undecodable udp packet");
            return;
        }
    };
    // A datagram is at most 64 KiB, so the decoded bound is the default one.
    let mut budget = model::Budget::new(config::decoded_bytes(0));
    match model::thrift_batch(batch.process, batch.spans, &mut budget) {
        Ok(rs) => {
            // UDP cannot tell the sender; the pipeline's refusal is counted by `push`.
            let _ = shared.push(rs, None).await;
        }
        Err(e) => {
            shared.too_large.increment(1);
            tracing::debug!(receiver = %shared.id, error = %e, "jaeger: packet too large once decoded");
        }
    }
}

#[cfg(test)]
mod tests;
