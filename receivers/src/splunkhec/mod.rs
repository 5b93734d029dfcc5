//! `splunk_hec` (`splunkhec`): a Splunk HTTP Event Collector endpoint, as otelcol-contrib's
//! `splunkhecreceiver`, so that Splunk forwarders, logging drivers and other collectors' `splunk_hec`
//! exporters can send here. Routes, all on `endpoint` (default `localhost:8088`):
//!
//! - `health_path` (`/services/collector/health`, and `<health_path>/1.0` on GET): HEC's healthy
//!   answer, code 17;
//! - `raw_path` (`/services/collector/raw`, logs pipelines only): the body as text, one record per
//!   line (`splitting: line`) or one for the whole body (`none`); metadata from the query;
//! - `ack::path` (`/services/collector/ack`, only when `ack::extension` names an `ack` extension):
//!   `{"acks": [ids]}` answered with which ids were taken;
//! - any other path (`/services/collector`, `/services/collector/event`, ...): JSON events, log
//!   events to logs and `"event": "metric"` events to metrics (`convert`).
//!
//! Bodies may be gzip-compressed; `max_request_body_size` bounds them as sent and inflated (413,
//! `vigil_receiver_requests_too_large`). A request sent on a channel (`X-Splunk-Request-Channel`
//! or `?channel=`, a UUID) gets an `ackId` once the pipeline took its data. The token in
//! `Authorization: Splunk <token>` is not checked (as contrib); with `access_token_passthrough` it
//! becomes the resource attribute `com.splunk.hec.access_token`, which the `splunk_hec` exporter
//! sends with. Answers are HEC's JSON bodies and codes as contrib writes them, except that a
//! pipeline asking for a retry gets HEC's 503 "Server is busy" (contrib answers 500 to every
//! pipeline error), which HEC clients retry.

pub mod convert;

use crate::jaeger::config::HttpServer;
use crate::jaeger::{read_body, BodyError};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_core::ack::AckStore;
use vigil_core::attrs::kv_str;
use vigil_core::config::bind_tcp;
use vigil_core::factory::{FactoryBase, ReceiverFactory};
use vigil_core::net::serve::{serve, ConnCounters};
use vigil_core::net::tls::TlsServerSettings;
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::{
    ClientMetadata, Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer,
    Host, NextConsumers, Receiver, ReceiverObs, Settings, Signal, Stability, Telemetry,
};

/// The resource attribute a passed-through token goes to, as contrib's.
pub const ACCESS_TOKEN_ATTR: &str = "com.splunk.hec.access_token";
/// The header HEC clients name their channel in.
pub const CHANNEL_HEADER: &str = "x-splunk-request-channel";

pub use vigil_core::splunkhec::HecToOtelAttrs;

/// `splitting`: how a raw body becomes records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Splitting {
    /// One record per line.
    #[default]
    Line,
    /// One record for the whole body.
    None,
}

/// `ack`: where acknowledgement ids come from and where clients ask about them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AckSettings {
    /// The `ack` extension's id; unset means no ids are handed out and no ack route exists.
    pub extension: Option<String>,
    /// Default `/services/collector/ack`.
    pub path: String,
}

impl Default for AckSettings {
    fn default() -> Self {
        AckSettings {
            extension: None,
            path: "/services/collector/ack".into(),
        }
    }
}

/// `receivers::splunk_hec`: otelcol's `confighttp.ServerConfig` keys that apply, and the receiver's.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplunkHecConfig {
    /// Default `localhost:8088`, as otelcol's.
    pub endpoint: String,
    pub tls: Option<TlsServerSettings>,
    /// Largest body accepted, as sent and after gzip; 0 means the default, 20 MiB.
    pub max_request_body_size: u64,
    #[serde(with = "vigil_core::config::opt_duration")]
    pub read_header_timeout: Option<Duration>,
    #[serde(with = "vigil_core::config::opt_duration")]
    pub idle_timeout: Option<Duration>,
    /// Each request's headers travel down the pipeline with its data (otelcol's `client.Info`).
    pub include_metadata: bool,
    /// Open connections allowed (the longest-idle is closed at the cap); 0 means the default.
    /// Not an otelcol key.
    pub max_connections: usize,
    /// Put the request's `Splunk` token on every resource as `com.splunk.hec.access_token`.
    pub access_token_passthrough: bool,
    pub ack: AckSettings,
    /// Default `/services/collector/raw`.
    pub raw_path: String,
    /// Default `line`.
    pub splitting: Splitting,
    /// Default `/services/collector/health`.
    pub health_path: String,
    pub hec_metadata_to_otel_attrs: HecToOtelAttrs,
}

impl Default for SplunkHecConfig {
    fn default() -> Self {
        SplunkHecConfig {
            endpoint: "localhost:8088".into(),
            tls: None,
            max_request_body_size: 0,
            read_header_timeout: None,
            idle_timeout: None,
            include_metadata: false,
            max_connections: 0,
            access_token_passthrough: false,
            ack: AckSettings::default(),
            raw_path: "/services/collector/raw".into(),
            splitting: Splitting::Line,
            health_path: "/services/collector/health".into(),
            hec_metadata_to_otel_attrs: HecToOtelAttrs::default(),
        }
    }
}

impl SplunkHecConfig {
    /// The listener part, in the shape the jaeger and zipkin receivers share.
    fn server(&self) -> HttpServer {
        HttpServer {
            endpoint: self.endpoint.clone(),
            tls: self.tls.clone(),
            max_request_body_size: self.max_request_body_size,
            read_header_timeout: self.read_header_timeout,
            idle_timeout: self.idle_timeout,
            include_metadata: self.include_metadata,
            max_connections: self.max_connections,
            max_decoded_size_mib: 0,
        }
    }
}

fn validate(cfg: &SplunkHecConfig) -> Result<(), ConfigError> {
    cfg.server().check("")?;
    for (key, p) in [
        ("raw_path", &cfg.raw_path),
        ("health_path", &cfg.health_path),
        ("ack::path", &cfg.ack.path),
    ] {
        if !p.starts_with('/') {
            return Err(ConfigError::at(
                key,
                format!("must be a path starting with '/', got {p:?}"),
            ));
        }
    }
    if let Some(e) = &cfg.ack.extension {
        ComponentId::parse(e).map_err(|m| ConfigError::at("ack::extension", m))?;
    }
    Ok(())
}

struct Factory;

/// The `splunk_hec` receiver factory, for the registry (`splunkhec` resolves to it).
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl FactoryBase for Factory {
    type Config = SplunkHecConfig;

    fn type_name(&self) -> &'static str {
        "splunk_hec"
    }

    fn validate(&self, _id: &ComponentId, cfg: &SplunkHecConfig) -> Result<(), ConfigError> {
        validate(cfg)
    }
}

impl ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Logs, Stability::Beta),
            (Signal::Metrics, Stability::Beta),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: SplunkHecConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        Ok(Arc::new(SplunkHecReceiver {
            set,
            cfg: Arc::new(cfg),
            next,
            addr: Mutex::new(None),
        }))
    }
}

/// The `splunk_hec` receiver.
pub struct SplunkHecReceiver {
    set: Settings,
    cfg: Arc<SplunkHecConfig>,
    next: NextConsumers,
    addr: Mutex<Option<SocketAddr>>,
}

impl SplunkHecReceiver {
    /// The address actually bound, once started; useful with port 0.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *vigil_core::lock(&self.addr)
    }
}

#[derive(Clone)]
struct St {
    id: Arc<str>,
    cfg: Arc<SplunkHecConfig>,
    logs: Option<Arc<dyn Consumer>>,
    metrics: Option<Arc<dyn Consumer>>,
    acks: Option<Arc<dyn AckStore>>,
    obs: ReceiverObs,
    max_body: usize,
    bad: metrics::Counter,
    too_large: metrics::Counter,
}

#[async_trait::async_trait]
impl Component for SplunkHecReceiver {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        let id = &self.set.id;
        let logs = self.next.get(Signal::Logs).cloned();
        let metrics = self.next.get(Signal::Metrics).cloned();
        if logs.is_none() && metrics.is_none() {
            anyhow::bail!("receivers::{id}: no logs or metrics pipeline uses this receiver");
        }
        let acks = match &self.cfg.ack.extension {
            Some(e) => {
                let eid = ComponentId::parse(e)
                    .map_err(|m| anyhow::anyhow!("receivers::{id}::ack::extension: {m}"))?;
                Some(
                    host.ack_store(&eid)
                        .map_err(|err| anyhow::anyhow!("receivers::{id}::ack::extension: {err}"))?,
                )
            }
            None => None,
        };
        let server = self.cfg.server();
        let listener = bind_tcp(ComponentKind::Receiver, id, &server.endpoint).await?;
        *vigil_core::lock(&self.addr) = listener.local_addr().ok();
        let labels = [
            ("receiver", id.to_string()),
            ("transport", "http".to_string()),
        ];
        let st = St {
            id: Arc::from(id.to_string()),
            cfg: self.cfg.clone(),
            logs,
            metrics,
            acks,
            obs: self.set.receiver_obs("http"),
            max_body: server.max_body_bytes(),
            bad: metrics::counter!("vigil_receiver_requests_malformed", &labels),
            too_large: metrics::counter!("vigil_receiver_requests_too_large", &labels),
        };
        // One handler that routes by path: the paths come from config, and axum's router would
        // panic on a path holding its own syntax (`{x}`, `*`) or on two equal paths.
        let router = axum::Router::new().fallback(route).with_state(st);
        let counters = ConnCounters::new("receiver", &id.to_string(), "http");
        let tasks = &self.set.tasks;
        tasks.spawn(serve(
            listener,
            router,
            server.serve_options(),
            counters,
            tasks.stopping(),
        ));
        tracing::info!(receiver = %id, addr = ?self.local_addr(), "splunk_hec receiver listening");
        Ok(())
    }

    async fn shutdown_by(&self, deadline: Instant) -> anyhow::Result<()> {
        self.set.tasks.stop(deadline).await;
        Ok(())
    }
}

const OK: &str = r#"{"text": "Success", "code": 0}"#;
const HEALTHY: &str = r#"{"text": "HEC is healthy", "code": 17}"#;
const POST_ONLY: &str = r#""Only \"POST\" method is supported""#;
const BAD_ENCODING: &str = r#""\"Content-Encoding\" must be \"gzip\" or empty""#;
const INVALID_FORMAT: &str = r#"{"text":"Invalid data format","code":6}"#;
const EVENT_REQUIRED: &str = r#"{"text":"Event field is required","code":12}"#;
const EVENT_BLANK: &str = r#"{"text":"Event field cannot be blank","code":13}"#;
const GZIP_ERROR: &str = r#""Error on gzip body""#;
const INTERNAL: &str = r#""Internal Server Error""#;
const BUSY: &str = r#"{"text":"Server is busy","code":9}"#;
const UNSUPPORTED_METRIC: &str = r#""Unsupported metric event""#;
const UNSUPPORTED_LOG: &str = r#""Unsupported log event""#;
const CHANNEL_MISSING: &str = r#"{"text": "Data channel is missing","code":10}"#;
const CHANNEL_INVALID: &str = r#"{"text": "Invalid data channel", "code": 11}"#;
const NO_DATA: &str = r#"{"text":"No data","code":5}"#;
const TOO_LARGE: &str = r#""Request body too large""#;

fn json(status: StatusCode, body: impl Into<String>) -> Response {
    let body: String = body.into();
    (status, [(CONTENT_TYPE, "application/json")], body).into_response()
}

async fn route(State(st): State<St>, req: Request) -> Response {
    let path = req.uri().path();
    let cfg = &st.cfg;
    if st.acks.is_some() && path == cfg.ack.path {
        return handle_ack(&st, req).await;
    }
    if path == cfg.health_path
        || (req.method() == Method::GET
            && path.strip_prefix(cfg.health_path.as_str()) == Some("/1.0"))
    {
        return json(StatusCode::OK, HEALTHY);
    }
    if st.logs.is_some() && path == cfg.raw_path {
        return handle_raw(&st, req).await;
    }
    handle_events(&st, req).await
}

/// The query's pairs, decoded; an undecodable query is taken as empty, as Go's `URL.Query` does.
fn query(req: &Request) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or_default()
}

/// The request's channel, upper-cased, from the header or else the `channel` query parameter
/// (any case); `Err` is the answer to send when it is there but not a UUID.
fn channel(req: &Request) -> Result<Option<String>, Box<Response>> {
    let found = match req.headers().get(CHANNEL_HEADER) {
        Some(v) => Some(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        None => query(req)
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("channel"))
            .map(|(_, v)| v),
    };
    match found.map(|c| c.to_ascii_uppercase()) {
        None => Ok(None),
        Some(c) if c.is_empty() => Err(Box::new(json(StatusCode::BAD_REQUEST, CHANNEL_MISSING))),
        Some(c) if !is_uuid(&c) => Err(Box::new(json(StatusCode::BAD_REQUEST, CHANNEL_INVALID))),
        Some(c) => Ok(Some(c)),
    }
}

/// Whether `s` is a UUID in one of the forms Go's `uuid.Parse` (which contrib checks channels
/// with) takes: 36 characters with dashes, 32 hex digits, `{...}`, or `urn:uuid:...`. Hand-written:
/// a dozen lines against a new dependency for one check.
fn is_uuid(s: &str) -> bool {
    let hex = |t: &str| t.bytes().all(|b| b.is_ascii_hexdigit());
    let dashed = |t: &str| {
        let b = t.as_bytes();
        t.len() == 36
            && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
            && hex(&t.replace('-', ""))
            && t.replace('-', "").len() == 32
    };
    if s.len() == 32 {
        return hex(s);
    }
    if let Some(rest) = s.strip_prefix("URN:UUID:") {
        return dashed(rest);
    }
    if let Some(inner) = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        return dashed(inner);
    }
    dashed(s)
}

/// The common head of the data routes: POST only, gzip or no encoding, a valid channel if any.
fn check_request(req: &Request) -> Result<(Option<String>, Option<String>), Box<Response>> {
    if req.method() != Method::POST {
        return Err(Box::new(json(StatusCode::BAD_REQUEST, POST_ONLY)));
    }
    let encoding = req
        .headers()
        .get(CONTENT_ENCODING)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .filter(|e| !e.is_empty());
    if encoding.as_deref().is_some_and(|e| e != "gzip") {
        return Err(Box::new(json(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BAD_ENCODING,
        )));
    }
    Ok((encoding, channel(req)?))
}

async fn body(st: &St, req: Request, encoding: Option<&str>) -> Result<bytes::Bytes, Response> {
    match read_body(req.into_body(), encoding, st.max_body).await {
        Ok(b) if b.is_empty() => Err(json(StatusCode::BAD_REQUEST, NO_DATA)),
        Ok(b) => Ok(b),
        Err(BodyError::TooLarge(m)) => {
            st.too_large.increment(1);
            tracing::debug!(receiver = %st.id, error = %m, "splunk_hec: body too large");
            Err(json(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE))
        }
        Err(BodyError::Bad(m)) => {
            st.bad.increment(1);
            tracing::debug!(receiver = %st.id, error = %m, "splunk_hec: unreadable body");
            Err(json(StatusCode::BAD_REQUEST, GZIP_ERROR))
        }
    }
}

/// The resource attributes every group gets: the passed-through token.
fn extra_attrs(st: &St, req: &Request) -> Vec<KeyValue> {
    if !st.cfg.access_token_passthrough {
        return Vec::new();
    }
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Splunk "))
        .map(|t| vec![kv_str(ACCESS_TOKEN_ATTR, t)])
        .unwrap_or_default()
}

/// Pushes one batch and turns the pipeline's answer into HEC's.
async fn push(
    st: &St,
    next: &Arc<dyn Consumer>,
    data: Telemetry,
    meta: Option<ClientMetadata>,
) -> Result<(), Response> {
    let signal = data.signal();
    let items = data.item_count();
    if items == 0 {
        return Ok(());
    }
    let r = match meta {
        Some(m) => m.scope(next.consume(data)).await,
        None => next.consume(data).await,
    };
    st.obs.end_op(signal, items, &r);
    match r {
        Ok(()) => Ok(()),
        Err(ConsumeError::Retryable { reason, .. }) => {
            tracing::debug!(receiver = %st.id, %reason, "splunk_hec: pipeline asked for a retry");
            let mut resp = json(StatusCode::SERVICE_UNAVAILABLE, BUSY);
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            Err(resp)
        }
        Err(ConsumeError::Permanent { reason, .. }) => {
            tracing::debug!(receiver = %st.id, %reason, "splunk_hec: pipeline refused data");
            Err(json(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL))
        }
    }
}

/// Success, with an ack id when the request came on a channel and an `ack` extension is set.
fn success(st: &St, channel: Option<&str>) -> Response {
    match (channel, &st.acks) {
        (Some(c), Some(acks)) => {
            // The data is in the pipeline's hands now (an exporter's queue at the latest), which
            // is when contrib acknowledges too.
            let id = acks.process_event(c);
            acks.ack(c, id);
            json(
                StatusCode::OK,
                format!(r#"{{"text": "Success", "code": 0, "ackId": {id}}}"#),
            )
        }
        _ => json(StatusCode::OK, OK),
    }
}

async fn handle_events(st: &St, req: Request) -> Response {
    let (encoding, channel) = match check_request(&req) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let meta = st
        .cfg
        .include_metadata
        .then(|| ClientMetadata::from_headers(req.headers()));
    let extra = extra_attrs(st, &req);
    let body = match body(st, req, encoding.as_deref()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let events = match convert::parse_events(&body) {
        Ok(e) => e,
        Err(e) => {
            st.bad.increment(1);
            return match e {
                convert::EventError::Format(m) => {
                    tracing::debug!(receiver = %st.id, error = %m, "splunk_hec: not HEC events");
                    json(StatusCode::BAD_REQUEST, INVALID_FORMAT)
                }
                convert::EventError::IndexedFields(n) => json(
                    StatusCode::BAD_REQUEST,
                    format!(
                        r#"{{"text":"Error in handling indexed fields","code":15,"invalid-event-number":{n}}}"#
                    ),
                ),
            };
        }
    };
    let (mut logs, mut metrics) = (Vec::new(), Vec::new());
    for e in events {
        if e.is_metric() {
            if st.metrics.is_none() {
                return json(StatusCode::BAD_REQUEST, UNSUPPORTED_METRIC);
            }
            metrics.push(e);
        } else {
            match &e.event {
                None => return json(StatusCode::BAD_REQUEST, EVENT_REQUIRED),
                Some(serde_json::Value::String(s)) if s.is_empty() => {
                    return json(StatusCode::BAD_REQUEST, EVENT_BLANK)
                }
                _ => {}
            }
            if st.logs.is_none() {
                return json(StatusCode::BAD_REQUEST, UNSUPPORTED_LOG);
            }
            logs.push(e);
        }
    }
    let names = &st.cfg.hec_metadata_to_otel_attrs;
    if let (Some(next), false) = (&st.logs, logs.is_empty()) {
        let data = Telemetry::Logs(convert::logs(&logs, names, &extra));
        if let Err(r) = push(st, next, data, meta.clone()).await {
            return r;
        }
    }
    if let (Some(next), false) = (&st.metrics, metrics.is_empty()) {
        let (rm, dropped) = convert::metrics(&metrics, names, &extra);
        st.obs.failed(Signal::Metrics, dropped);
        if let Err(r) = push(st, next, Telemetry::Metrics(rm), meta).await {
            return r;
        }
    }
    success(st, channel.as_deref())
}

async fn handle_raw(st: &St, req: Request) -> Response {
    let (encoding, channel) = match check_request(&req) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    // Go's `Query().Get`: the first value of the exact key.
    let q = query(&req);
    let get = |k: &str| {
        q.iter()
            .find(|(qk, _)| qk == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let time_ns = match get("time") {
        "" => 0,
        t => match t.parse::<i64>() {
            Ok(s) if s >= 0 => (s as u64).saturating_mul(1_000_000_000),
            _ => {
                st.bad.increment(1);
                return json(StatusCode::BAD_REQUEST, INVALID_FORMAT);
            }
        },
    };
    let meta = [get("host"), get("source"), get("sourcetype"), get("index")];
    let client = st
        .cfg
        .include_metadata
        .then(|| ClientMetadata::from_headers(req.headers()));
    let extra = extra_attrs(st, &req);
    let body = match body(st, req, encoding.as_deref()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let rl = convert::raw_logs(
        &body,
        st.cfg.splitting == Splitting::Line,
        meta,
        time_ns,
        &st.cfg.hec_metadata_to_otel_attrs,
        &extra,
    );
    let Some(next) = &st.logs else {
        return json(StatusCode::BAD_REQUEST, UNSUPPORTED_LOG);
    };
    if let Err(r) = push(st, next, Telemetry::Logs(vec![rl]), client).await {
        return r;
    }
    success(st, channel.as_deref())
}

#[derive(Deserialize)]
struct AckRequest {
    #[serde(default)]
    acks: Vec<u64>,
}

async fn handle_ack(st: &St, req: Request) -> Response {
    if req.method() != Method::POST {
        return json(StatusCode::BAD_REQUEST, POST_ONLY);
    }
    let Some(acks) = &st.acks else {
        return json(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL);
    };
    let channel = match channel(&req) {
        Ok(Some(c)) => c,
        Ok(None) => return json(StatusCode::BAD_REQUEST, CHANNEL_MISSING),
        Err(r) => return *r,
    };
    let body = match body(st, req, None).await {
        Ok(b) => b,
        Err(_) => return json(StatusCode::BAD_REQUEST, INVALID_FORMAT),
    };
    let ids = match serde_json::from_slice::<AckRequest>(&body) {
        Ok(r) if !r.acks.is_empty() => r.acks,
        _ => return json(StatusCode::BAD_REQUEST, INVALID_FORMAT),
    };
    let answers: serde_json::Map<String, serde_json::Value> = acks
        .query_acks(&channel, &ids)
        .into_iter()
        .map(|(id, done)| (id.to_string(), serde_json::Value::Bool(done)))
        .collect();
    json(
        StatusCode::OK,
        serde_json::json!({ "acks": answers }).to_string(),
    )
}

#[cfg(test)]
mod tests;
