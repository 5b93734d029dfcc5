//! `prometheusremotewrite`: accepts Prometheus remote write 1.0 (snappy block-compressed protobuf
//! `WriteRequest`s) on `POST /api/v1/write`, so that an existing Prometheus can forward to vigil. Keys
//! and defaults follow otelcol-contrib's `prometheusremotewritereceiver` (`endpoint`
//! `localhost:9090`, `time_threshold` 24 hours, confighttp's body limit).
//!
//! Mapping: `job`/`instance` become the resource (`service.name`, `service.instance.id`); every
//! other label is a data point attribute. Family types come from the metadata Prometheus sends in its
//! own requests, remembered per receiver: counters become monotonic cumulative Sums, everything else
//! a Gauge. Without metadata a `_total` name is taken as a counter. Classic histogram and summary
//! series (`_bucket`, `_sum`, `_count`) arrive as separate series and are kept as such.

pub mod proto;

use crate::otlp::config::HTTP_ALPN;
use crate::serve::{serve, ConnCounters, ServeOptions};
use crate::tls::TlsServerSettings;
use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use metrics::Counter;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric::Data, number_data_point, AggregationTemporality, Exemplar as OtlpExemplar,
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use proto::{MetricMetadata, MetricType, WriteRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vigil_core::attrs::kv_str;
use vigil_core::config::{bind_tcp, check_endpoint, decode};
use vigil_core::factory::{DynReceiverFactory, FactoryBase, ReceiverFactory, Settings};
use vigil_core::task::{lock, Tasks};
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Host, NextConsumers,
    Receiver, ReceiverObs, Signal, Stability, Telemetry,
};

/// confighttp's default request body limit.
pub const DEFAULT_MAX_BODY: u64 = 20 * 1024 * 1024;
/// The default bound on what one request may take in memory once decoded and translated to OTLP,
/// in MiB, as for the `otlp` receiver.
pub const DEFAULT_MAX_DECODED_MIB: u64 = crate::otlp::decoded::DEFAULT_MAX_DECODED_MIB;
/// The largest `max_decoded_size_mib` accepted.
pub const MAX_DECODED_MIB_CAP: u64 = 16 * 1024;
/// The scope otelcol-contrib's receiver uses.
pub const SCOPE_NAME: &str =
    "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/prometheusremotewritereceiver";

/// `receivers::prometheusremotewrite`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `host:port`; default `localhost:9090`.
    pub endpoint: String,
    /// Samples older than this many hours are dropped; default 24.
    pub time_threshold: i64,
    /// Largest body in bytes, both as sent and once snappy-decompressed (as confighttp bounds a
    /// decompressed body); default 20 MiB, also when 0.
    pub max_request_body_size: u64,
    /// Most memory one request may take once decoded and translated, in MiB, estimated before
    /// decoding; default 128, also when 0. Not an otelcol key.
    pub max_decoded_size_mib: u64,
    /// Pass the request's headers down the pipeline with its data, as the `otlp` receiver's
    /// `include_metadata` does.
    pub include_metadata: bool,
    /// otelcol's `configtls` server keys; see [`crate::tls`].
    pub tls: Option<TlsServerSettings>,
    /// `auth: {authenticator: <extension id>}`, with vigil's roles, as on the `otlp` receiver: a
    /// request that fails the check gets 401, one whose principal has no role (or a role without
    /// `metrics`) 403; the role's tenant is stamped on every resource.
    pub auth: Option<crate::otlp::config::AuthConfig>,
    pub cors: Option<Value>,
    /// Accepted for otelcol compatibility; `read_header_timeout` and `idle_timeout` bound slow and
    /// idle clients.
    #[serde(with = "vigil_core::config::opt_duration")]
    pub read_timeout: Option<Duration>,
    /// How long a new connection has to send its request headers; default 1 minute, as otelcol.
    #[serde(with = "vigil_core::config::opt_duration")]
    pub read_header_timeout: Option<Duration>,
    /// Accepted for otelcol compatibility.
    #[serde(with = "vigil_core::config::opt_duration")]
    pub write_timeout: Option<Duration>,
    /// How long a connection may stay open with no request in flight; default 1 minute.
    #[serde(with = "vigil_core::config::opt_duration")]
    pub idle_timeout: Option<Duration>,
    /// Open connections allowed; at the cap the longest-idle one is closed to make room. 0 means
    /// 1024, or a quarter of the open-file limit if lower. Not an otelcol key.
    pub max_connections: usize,
}

impl Config {
    /// The listener's limits.
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions::http(
            // `validate` built it once already, so this cannot fail on a validated config.
            self.tls.as_ref().and_then(|t| t.server(HTTP_ALPN).ok()),
            self.read_header_timeout,
            self.idle_timeout,
            self.max_connections,
        )
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "localhost:9090".into(),
            time_threshold: 24,
            max_request_body_size: DEFAULT_MAX_BODY,
            max_decoded_size_mib: DEFAULT_MAX_DECODED_MIB,
            include_metadata: false,
            tls: None,
            auth: None,
            cors: None,
            read_timeout: None,
            read_header_timeout: None,
            write_timeout: None,
            idle_timeout: None,
            max_connections: 0,
        }
    }
}

/// Decodes and checks the section, as the registry does before `create`.
pub fn load(id: &ComponentId, value: &Value) -> Result<Config, ConfigError> {
    let cfg: Config = decode(ComponentKind::Receiver, id, value)?;
    validate(id, &cfg)?;
    Ok(cfg)
}

/// Checks what serde cannot; reads the TLS files, starts nothing.
pub fn validate(id: &ComponentId, cfg: &Config) -> Result<(), ConfigError> {
    let err = |p: &str, m: String| ConfigError::component(ComponentKind::Receiver, id, p, m);
    check_endpoint(&cfg.endpoint).map_err(|m| err("endpoint", m))?;
    if let Some(t) = &cfg.tls {
        t.server_config(HTTP_ALPN)
            .map_err(|e| err(&format!("tls::{}", e.key), e.message))?;
    }
    let mtls = cfg.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some());
    crate::otlp::config::check_auth(id, "auth", cfg.auth.as_ref(), mtls)?;
    if cfg.cors.is_some() {
        return Err(err(
            "cors",
            "CORS is not supported by this receiver (remote write is not called from browsers)"
                .into(),
        ));
    }
    if cfg.time_threshold <= 0 {
        return Err(err(
            "time_threshold",
            format!(
                "must be a positive number of hours, got {}",
                cfg.time_threshold
            ),
        ));
    }
    if cfg.max_decoded_size_mib > MAX_DECODED_MIB_CAP {
        return Err(err(
            "max_decoded_size_mib",
            format!(
                "must be at most {MAX_DECODED_MIB_CAP} (MiB), got {}",
                cfg.max_decoded_size_mib
            ),
        ));
    }
    Ok(())
}

struct Factory;

/// The `prometheusremotewrite` receiver factory, for the registry.
pub fn factory() -> Arc<dyn DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl FactoryBase for Factory {
    type Config = Config;

    fn type_name(&self) -> &'static str {
        "prometheusremotewrite"
    }

    fn validate(&self, id: &ComponentId, cfg: &Config) -> Result<(), ConfigError> {
        validate(id, cfg)
    }
}

impl ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[(Signal::Metrics, Stability::Alpha)]
    }

    fn create(
        &self,
        set: Settings,
        cfg: Config,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        Ok(Arc::new(RemoteWriteReceiver::new(set, cfg, next)))
    }
}

/// A family's metadata as Prometheus last sent it.
#[derive(Debug, Clone)]
struct Family {
    kind: MetricType,
    help: String,
    unit: String,
}

struct Shared {
    id: String,
    next: NextConsumers,
    threshold: Duration,
    /// Metadata arrives in its own requests, so it is remembered for the samples that follow.
    families: RwLock<HashMap<String, Family>>,
    obs: ReceiverObs,
    /// Requests refused for their size, as sent, decompressed or decoded.
    too_large: Counter,
    /// Requests refused by the authenticator (`vigil_receiver_requests_unauthenticated`).
    unauthenticated: Counter,
    /// Requests refused by the principal's role (`vigil_receiver_requests_forbidden`).
    forbidden: Counter,
    limits: Limits,
}

impl Shared {
    fn new(id: &ComponentId, cfg: &Config, next: NextConsumers, obs: ReceiverObs) -> Shared {
        Shared {
            id: id.to_string(),
            next,
            threshold: Duration::from_secs(cfg.time_threshold.max(1) as u64 * 3600),
            unauthenticated: metrics::counter!(
                "vigil_receiver_requests_unauthenticated",
                "receiver" => id.to_string(),
                "transport" => "http"
            ),
            forbidden: metrics::counter!(
                "vigil_receiver_requests_forbidden",
                "receiver" => id.to_string(),
                "transport" => "http"
            ),
            families: RwLock::new(HashMap::new()),
            obs,
            too_large: metrics::counter!(
                "vigil_receiver_requests_too_large",
                "receiver" => id.to_string(),
                "transport" => "http"
            ),
            limits: Limits::of(cfg),
        }
    }
}

/// The receiver.
pub struct RemoteWriteReceiver {
    id: ComponentId,
    cfg: Config,
    shared: Arc<Shared>,
    /// The listener; stopped by the shutdown deadline.
    tasks: Tasks,
    addr: Mutex<Option<SocketAddr>>,
    connections: ConnCounters,
}

impl RemoteWriteReceiver {
    /// A receiver that feeds `next`; nothing listens until `start`.
    pub fn new(set: Settings, cfg: Config, next: NextConsumers) -> RemoteWriteReceiver {
        let obs = set.receiver_obs("http");
        RemoteWriteReceiver {
            shared: Arc::new(Shared::new(&set.id, &cfg, next, obs)),
            connections: ConnCounters::new("receiver", &set.id.to_string(), "http"),
            id: set.id,
            cfg,
            tasks: set.tasks,
            addr: Mutex::new(None),
        }
    }

    /// The bound address once started; useful with port 0.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *lock(&self.addr)
    }
}

#[async_trait]
impl Component for RemoteWriteReceiver {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        if self.local_addr().is_some() {
            anyhow::bail!("receivers::{}: already started", self.id);
        }
        if self.tasks.is_stopping() {
            // A reload creates a new receiver; a stopped one is not started again.
            anyhow::bail!("receivers::{}: started after shutdown", self.id);
        }
        let listener = bind_tcp(ComponentKind::Receiver, &self.id, &self.cfg.endpoint).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/api/v1/write", post(write))
            .layer(DefaultBodyLimit::max(self.shared.limits.decompressed))
            .with_state(Arc::clone(&self.shared));
        let app = crate::otlp::with_client_metadata(
            app,
            self.cfg.include_metadata,
            self.cfg.auth.is_some(),
        );
        // Before anything serves: a missing authenticator fails start.
        let app = match &self.cfg.auth {
            None => app,
            Some(auth) => {
                let guard = crate::otlp::roles::Guard::new(
                    host,
                    &self.id,
                    "auth",
                    auth,
                    self.shared.unauthenticated.clone(),
                    self.shared.forbidden.clone(),
                )?;
                Arc::new(guard).layer(app, |_headers, refusal, reason| {
                    let status = match refusal {
                        crate::otlp::roles::Refusal::Unauthenticated => StatusCode::UNAUTHORIZED,
                        crate::otlp::roles::Refusal::Forbidden => StatusCode::FORBIDDEN,
                    };
                    refuse(status, reason)
                })
            }
        };
        self.tasks.spawn(serve(
            listener,
            app,
            self.cfg.serve_options(),
            self.connections.clone(),
            self.tasks.stopping(),
        ));
        tracing::info!(receiver = %self.id, %addr, "prometheusremotewrite receiver listening");
        *lock(&self.addr) = Some(addr);
        Ok(())
    }

    /// Stopping cancels the listener; in-flight writes may finish until the deadline.
    fn tasks(&self) -> Option<&vigil_core::Tasks> {
        Some(&self.tasks)
    }
}

/// Why a request was refused, as the status Prometheus acts on: 4xx is dropped, 5xx retried.
fn refuse(status: StatusCode, msg: String) -> axum::response::Response {
    (status, msg).into_response()
}

async fn write(
    State(shared): State<Arc<Shared>>,
    grant: Option<axum::Extension<crate::otlp::roles::Grant>>,
    meta: Option<axum::Extension<vigil_core::ClientMetadata>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    if let Some(message) = grant.as_ref().and_then(|g| g.refuses(Signal::Metrics)) {
        shared.forbidden.increment(1);
        tracing::debug!(receiver = %shared.id, %message, "request refused by the principal's role");
        return refuse(StatusCode::FORBIDDEN, message);
    }
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    let ctype = header("content-type");
    if !ctype.is_empty() && !ctype.starts_with("application/x-protobuf") {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content type {ctype:?}; expected application/x-protobuf"),
        );
    }
    if ctype.contains("io.prometheus.write.v2") {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "remote write 2.0 is not supported; send remote write 1.0 (prometheus.WriteRequest)"
                .into(),
        );
    }
    let encoding = header("content-encoding");
    if !encoding.is_empty() && encoding != "snappy" {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content encoding {encoding:?}; expected snappy"),
        );
    }
    let req = match decode_body(&body, &shared.limits) {
        Ok(r) => r,
        Err(DecodeError::TooLarge(m)) => {
            shared.too_large.increment(1);
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, m);
        }
        Err(DecodeError::Malformed(m)) => return refuse(StatusCode::BAD_REQUEST, m),
    };
    let rms = shared.translate(req, SystemTime::now());
    let mut data = Telemetry::Metrics(rms);
    let n = data.item_count();
    if n == 0 {
        return StatusCode::NO_CONTENT.into_response();
    }
    if let Some(g) = &grant {
        g.stamp(&mut data);
    }
    let result = match meta {
        Some(axum::Extension(meta)) => meta.scope(shared.next.consume(data)).await,
        None => shared.next.consume(data).await,
    };
    shared.obs.end_op(Signal::Metrics, n, &result);
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(ConsumeError::Retryable {
            reason,
            retry_after,
        }) => {
            let mut resp = refuse(StatusCode::SERVICE_UNAVAILABLE, reason);
            if let Some(d) = retry_after {
                if let Ok(v) = d.as_secs().max(1).to_string().parse() {
                    resp.headers_mut()
                        .insert(axum::http::header::RETRY_AFTER, v);
                }
            }
            resp
        }
        Err(ConsumeError::Permanent { reason, .. }) => {
            tracing::debug!(receiver = %shared.id, %reason, "pipeline rejected remote write");
            refuse(StatusCode::BAD_REQUEST, reason)
        }
    }
}

/// What one request may become.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes once snappy-decompressed.
    pub decompressed: usize,
    /// Estimated bytes in memory once decoded and translated to OTLP.
    pub decoded: usize,
}

impl Limits {
    /// The config's limits; 0 means the default, as in otelcol.
    fn of(cfg: &Config) -> Limits {
        let or = |v: u64, default: u64| if v == 0 { default } else { v };
        let body = or(cfg.max_request_body_size, DEFAULT_MAX_BODY);
        let mib = or(cfg.max_decoded_size_mib, DEFAULT_MAX_DECODED_MIB).saturating_mul(1024 * 1024);
        Limits {
            decompressed: usize::try_from(body).unwrap_or(usize::MAX),
            decoded: usize::try_from(mib).unwrap_or(usize::MAX),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::of(&Config::default())
    }
}

/// Why a body was refused: too large (HTTP 413, which Prometheus does not retry) or malformed (400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    TooLarge(String),
    Malformed(String),
}

impl DecodeError {
    /// The message, whichever the kind.
    pub fn message(&self) -> &str {
        match self {
            DecodeError::TooLarge(m) | DecodeError::Malformed(m) => m,
        }
    }
}

/// Snappy block format, then protobuf: at most `limits.decompressed` bytes once decompressed (the
/// snappy header states the length, so a bomb is refused before any memory is spent on it), and at
/// most `limits.decoded` bytes once decoded and translated, estimated from the wire bytes before
/// decoding (see [`decoded_estimate`]).
pub fn decode_body(body: &[u8], limits: &Limits) -> Result<WriteRequest, DecodeError> {
    let malformed = |e: snap::Error| DecodeError::Malformed(format!("invalid snappy body: {e}"));
    let len = snap::raw::decompress_len(body).map_err(malformed)?;
    if len > limits.decompressed {
        return Err(DecodeError::TooLarge(format!(
            "body decompresses to {len} bytes, over the {}-byte limit (max_request_body_size)",
            limits.decompressed
        )));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(malformed)?;
    if decoded_estimate(&raw, limits.decoded).is_none() {
        return Err(DecodeError::TooLarge(format!(
            "request would take more than {} MiB of memory once decoded (max_decoded_size_mib)",
            limits.decoded / (1024 * 1024)
        )));
    }
    WriteRequest::decode(raw.as_slice())
        .map_err(|e| DecodeError::Malformed(format!("invalid WriteRequest protobuf: {e}")))
}

/// What a `WriteRequest` takes once decoded and translated, estimated from its wire bytes, or `None`
/// as soon as that passes `limit`. Translation is what costs most: every sample becomes a data point
/// with its own copy of the series' labels, so an empty sample (2 bytes on the wire) of a series
/// with a hundred labels becomes kilobytes. Counted per series: its labels, samples and exemplars as
/// decoded, plus one data point and one copy of the labels as attributes per sample.
pub fn decoded_estimate(raw: &[u8], limit: usize) -> Option<usize> {
    use crate::otlp::decoded::{next_field, Field};
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use std::mem::size_of;
    let mut used = 0usize;
    let mut add = |n: usize| {
        used = used.saturating_add(n);
        (used <= limit).then_some(())
    };
    // Bytes and label count of the labels in `buf` (a Label list inside a series or exemplar).
    let label = |bytes: &[u8]| {
        let mut pos = 0;
        let mut len = 0usize;
        while let Some((_, f)) = next_field(bytes, &mut pos) {
            if let Field::Bytes(b) = f {
                len = len.saturating_add(b.len());
            }
        }
        len
    };
    let mut pos = 0;
    while let Some((field, f)) = next_field(raw, &mut pos) {
        let Field::Bytes(msg) = f else {
            add(8)?;
            continue;
        };
        match field {
            1 => {
                add(size_of::<proto::TimeSeries>())?;
                let (mut labels, mut label_bytes, mut samples) = (0usize, 0usize, 0usize);
                let mut p = 0;
                while let Some((sf, v)) = next_field(msg, &mut p) {
                    let Field::Bytes(b) = v else {
                        add(8)?;
                        continue;
                    };
                    match sf {
                        1 => {
                            labels += 1;
                            let n = label(b);
                            label_bytes = label_bytes.saturating_add(n);
                            add(size_of::<proto::Label>().saturating_add(n))?;
                        }
                        2 => {
                            samples += 1;
                            add(size_of::<proto::Sample>())?;
                        }
                        3 => {
                            // An exemplar: its own labels, decoded and then translated once.
                            let mut q = 0;
                            let mut n = 0usize;
                            while let Some((ef, ev)) = next_field(b, &mut q) {
                                if let (1, Field::Bytes(l)) = (ef, ev) {
                                    n = n.saturating_add(
                                        size_of::<proto::Label>()
                                            + size_of::<KeyValue>()
                                            + 2 * label(l),
                                    );
                                }
                            }
                            add(size_of::<proto::Exemplar>() + size_of::<OtlpExemplar>())?;
                            add(n)?;
                        }
                        _ => add(b.len())?,
                    }
                }
                let attributes = labels
                    .saturating_mul(size_of::<KeyValue>())
                    .saturating_add(label_bytes);
                add(
                    samples.saturating_mul(size_of::<NumberDataPoint>().saturating_add(attributes))
                )?;
            }
            3 => add(size_of::<MetricMetadata>().saturating_add(msg.len()))?,
            _ => add(msg.len())?,
        }
    }
    Some(used)
}

/// One fuzz input through what a request meets: decoding under small limits, then the translation to
/// OTLP. Panics if either panics, or if a request decodes that the estimate should have refused.
/// Shared by the `prometheus_remote_write` fuzz target (which passes raw snappy bodies) and the
/// randomised test.
pub fn fuzz_decode(data: &[u8]) {
    let limits = Limits {
        decompressed: 1 << 20,
        decoded: 1 << 22,
    };
    // Both the body as sent and, so that mutations reach the protobuf, the input as the payload.
    let wrapped = snap::raw::Encoder::new()
        .compress_vec(data)
        .unwrap_or_default();
    for body in [data, wrapped.as_slice()] {
        let Ok(req) = decode_body(body, &limits) else {
            continue;
        };
        let id = ComponentId::new("fuzz", None);
        let mut shared = Shared::new(
            &id,
            &Config::default(),
            NextConsumers::new(),
            ReceiverObs::new(&id, "http"),
        );
        shared.threshold = Duration::from_secs(3600 * 24 * 365 * 100);
        shared.limits = limits;
        let rms = shared.translate(req, SystemTime::now());
        let _ = Telemetry::Metrics(rms).item_count();
    }
}

fn ms_to_ns(ms: i64) -> u64 {
    (ms.max(0) as u64).saturating_mul(1_000_000)
}

impl Shared {
    /// Maps a request to OTLP, one resource per `job`/`instance` pair.
    fn translate(&self, req: WriteRequest, now: SystemTime) -> Vec<ResourceMetrics> {
        if !req.metadata.is_empty() {
            let mut fams = self.families.write().unwrap_or_else(|p| p.into_inner());
            for m in req.metadata {
                let kind = MetricType::try_from(m.r#type).unwrap_or(MetricType::Unknown);
                fams.insert(
                    m.metric_family_name,
                    Family {
                        kind,
                        help: m.help,
                        unit: m.unit,
                    },
                );
            }
        }
        let oldest_ms = now
            .checked_sub(self.threshold)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let fams = self.families.read().unwrap_or_else(|p| p.into_inner());
        // Per (job, instance): its metrics and an index of them by name.
        type PerResource = ((String, String), Vec<Metric>, HashMap<String, usize>);
        let mut resources: Vec<PerResource> = Vec::new();
        for ts in req.timeseries {
            let mut name = String::new();
            let (mut job, mut instance) = (String::new(), String::new());
            let mut attrs: Vec<KeyValue> = Vec::with_capacity(ts.labels.len());
            for l in ts.labels {
                match l.name.as_str() {
                    "__name__" => name = l.value,
                    "job" => job = l.value,
                    "instance" => instance = l.value,
                    _ => attrs.push(kv_str(&l.name, l.value)),
                }
            }
            if name.is_empty() {
                continue;
            }
            let fam = family_of(&name, &fams);
            let counter = match fam {
                Some(f) => f.kind == MetricType::Counter,
                None => name.ends_with("_total"),
            };
            let exemplars: Vec<OtlpExemplar> = ts
                .exemplars
                .iter()
                .map(|e| OtlpExemplar {
                    filtered_attributes: e
                        .labels
                        .iter()
                        .map(|l| kv_str(&l.name, l.value.as_str()))
                        .collect(),
                    time_unix_nano: ms_to_ns(e.timestamp),
                    value: Some(exemplar::Value::AsDouble(e.value)),
                    ..Default::default()
                })
                .collect();
            let mut points: Vec<NumberDataPoint> = ts
                .samples
                .iter()
                .filter(|s| s.timestamp >= oldest_ms)
                .map(|s| {
                    // Prometheus's staleness NaN becomes OTLP's no-recorded-value flag.
                    let stale = s.value.to_bits() == STALE_NAN_BITS;
                    NumberDataPoint {
                        attributes: attrs.clone(),
                        time_unix_nano: ms_to_ns(s.timestamp),
                        flags: if stale { 1 } else { 0 },
                        value: (!stale).then_some(number_data_point::Value::AsDouble(s.value)),
                        ..Default::default()
                    }
                })
                .collect();
            if points.is_empty() {
                continue;
            }
            if let Some(last) = points.last_mut() {
                last.exemplars = exemplars;
            }
            let key = (job, instance);
            let ri = match resources.iter().position(|r| r.0 == key) {
                Some(i) => i,
                None => {
                    resources.push((key, Vec::new(), HashMap::new()));
                    resources.len() - 1
                }
            };
            let (_, metrics, index) = &mut resources[ri];
            let mi = *index.entry(name.clone()).or_insert_with(|| {
                let data = if counter {
                    Data::Sum(Sum {
                        data_points: Vec::new(),
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })
                } else {
                    Data::Gauge(Gauge {
                        data_points: Vec::new(),
                    })
                };
                metrics.push(Metric {
                    name: name.clone(),
                    description: fam.map(|f| f.help.clone()).unwrap_or_default(),
                    unit: fam.map(|f| f.unit.clone()).unwrap_or_default(),
                    data: Some(data),
                    ..Default::default()
                });
                metrics.len() - 1
            });
            match &mut metrics[mi].data {
                Some(Data::Sum(s)) => s.data_points.append(&mut points),
                Some(Data::Gauge(g)) => g.data_points.append(&mut points),
                _ => {}
            }
        }
        resources
            .into_iter()
            .map(|((job, instance), metrics, _)| {
                let mut attributes = Vec::new();
                if !job.is_empty() {
                    attributes.push(kv_str("service.name", job));
                }
                if !instance.is_empty() {
                    attributes.push(kv_str("service.instance.id", instance));
                }
                ResourceMetrics {
                    resource: Some(Resource {
                        attributes,
                        ..Default::default()
                    }),
                    scope_metrics: vec![ScopeMetrics {
                        scope: Some(InstrumentationScope {
                            name: SCOPE_NAME.into(),
                            version: env!("CARGO_PKG_VERSION").into(),
                            ..Default::default()
                        }),
                        metrics,
                        ..Default::default()
                    }],
                    ..Default::default()
                }
            })
            .collect()
    }
}

/// Prometheus's staleness marker: a NaN with this exact bit pattern.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The family a series name belongs to: itself, or the name without a classic suffix.
fn family_of<'a>(name: &str, fams: &'a HashMap<String, Family>) -> Option<&'a Family> {
    if let Some(f) = fams.get(name) {
        return Some(f);
    }
    ["_total", "_bucket", "_sum", "_count", "_created", "_info"]
        .iter()
        .find_map(|s| name.strip_suffix(s).and_then(|b| fams.get(b)))
}

#[cfg(test)]
mod tests;
