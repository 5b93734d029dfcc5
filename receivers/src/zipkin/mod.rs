//! `zipkin`: receives Zipkin spans over HTTP as otelcol's `zipkinreceiver` does, on its default
//! port 9411: `POST /api/v2/spans` in JSON or protobuf (`Content-Type: application/x-protobuf`),
//! and `POST /api/v1/spans` in v1 JSON, gzip- or zlib-compressed or not. Spans are translated to
//! OTLP as otelcol's zipkin translator does (`model`); `parse_string_tags` types tag values that
//! read as numbers or booleans. v1 Thrift (`application/x-thrift` on `/api/v1/spans`) is refused
//! with 415: Zipkin deprecated it and no current client sends it.
//!
//! Layout: `decode` (the three encodings), `model` (the translation). This file holds the config,
//! the factory and the HTTP handler.

mod decode;
pub(crate) mod model;

use crate::jaeger::config::HttpServer;
use crate::jaeger::model::Budget;
use crate::jaeger::{read_body, BodyError};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_core::config::bind_tcp;
use vigil_core::factory::{FactoryBase, ReceiverFactory};
use vigil_core::net::serve::{serve, ConnCounters};
use vigil_core::net::tls::TlsServerSettings;
use vigil_core::{
    ClientMetadata, Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer,
    Host, NextConsumers, Receiver, ReceiverObs, Settings, Signal, Stability, Telemetry,
};

/// `receivers::zipkin`: otelcol's `confighttp.ServerConfig` keys that apply, and
/// `parse_string_tags`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZipkinConfig {
    /// Default `localhost:9411`, as otelcol's.
    pub endpoint: String,
    /// Tag values that read as an integer, a float or a boolean become attributes of that type.
    pub parse_string_tags: bool,
    pub tls: Option<TlsServerSettings>,
    /// Largest body accepted, as sent and after decompression; 0 means the default, 20 MiB.
    pub max_request_body_size: u64,
    #[serde(with = "vigil_core::config::opt_duration")]
    pub read_header_timeout: Option<Duration>,
    #[serde(with = "vigil_core::config::opt_duration")]
    pub idle_timeout: Option<Duration>,
    /// Each request's headers travel down the pipeline with its spans, as otelcol's
    /// `client.Info` (read by `batch`'s `metadata_keys` and `headers_setter`).
    pub include_metadata: bool,
    /// Open connections allowed (the longest-idle is closed at the cap); 0 means the default.
    /// Not an otelcol key.
    pub max_connections: usize,
    /// Most memory one request may take once decoded, in MiB; 0 means the default, 128. Not an
    /// otelcol key.
    pub max_decoded_size_mib: u64,
}

impl Default for ZipkinConfig {
    fn default() -> Self {
        ZipkinConfig {
            endpoint: "localhost:9411".into(),
            parse_string_tags: false,
            tls: None,
            max_request_body_size: 0,
            read_header_timeout: None,
            idle_timeout: None,
            include_metadata: false,
            max_connections: 0,
            max_decoded_size_mib: 0,
        }
    }
}

impl ZipkinConfig {
    /// The listener part, in the shape the jaeger receiver's `thrift_http` shares.
    fn server(&self) -> HttpServer {
        HttpServer {
            endpoint: self.endpoint.clone(),
            tls: self.tls.clone(),
            max_request_body_size: self.max_request_body_size,
            read_header_timeout: self.read_header_timeout,
            idle_timeout: self.idle_timeout,
            include_metadata: self.include_metadata,
            max_connections: self.max_connections,
            max_decoded_size_mib: self.max_decoded_size_mib,
        }
    }
}

struct Factory;

/// The `zipkin` receiver factory, for the registry.
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl FactoryBase for Factory {
    type Config = ZipkinConfig;

    fn type_name(&self) -> &'static str {
        "zipkin"
    }

    fn validate(&self, _id: &ComponentId, cfg: &ZipkinConfig) -> Result<(), ConfigError> {
        cfg.server().check("")
    }
}

impl ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[(Signal::Traces, Stability::Beta)]
    }

    fn create(
        &self,
        set: Settings,
        cfg: ZipkinConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        Ok(Arc::new(ZipkinReceiver {
            set,
            cfg,
            next,
            addr: Mutex::new(None),
        }))
    }
}

/// The `zipkin` receiver.
pub struct ZipkinReceiver {
    set: Settings,
    cfg: ZipkinConfig,
    next: NextConsumers,
    addr: Mutex<Option<SocketAddr>>,
}

impl ZipkinReceiver {
    /// The address actually bound, once started; useful with port 0.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *vigil_core::lock(&self.addr)
    }
}

#[derive(Clone)]
struct St {
    id: Arc<str>,
    next: Arc<dyn Consumer>,
    obs: ReceiverObs,
    parse_string_tags: bool,
    include_metadata: bool,
    max_body: usize,
    max_decoded: usize,
    bad: metrics::Counter,
    too_large: metrics::Counter,
}

#[async_trait::async_trait]
impl Component for ZipkinReceiver {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let id = &self.set.id;
        let Some(next) = self.next.get(Signal::Traces).cloned() else {
            anyhow::bail!("receivers::{id}: no traces pipeline uses this receiver");
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
            next,
            obs: self.set.receiver_obs("http"),
            parse_string_tags: self.cfg.parse_string_tags,
            include_metadata: self.cfg.include_metadata,
            max_body: server.max_body_bytes(),
            max_decoded: crate::jaeger::config::decoded_bytes(server.max_decoded_size_mib),
            bad: metrics::counter!("vigil_receiver_requests_malformed", &labels),
            too_large: metrics::counter!("vigil_receiver_requests_too_large", &labels),
        };
        let router = axum::Router::new()
            .route("/api/v2/spans", axum::routing::any(v2))
            .route("/api/v1/spans", axum::routing::any(v1))
            .with_state(st);
        let counters = ConnCounters::new("receiver", &id.to_string(), "http");
        let tasks = &self.set.tasks;
        tasks.spawn(serve(
            listener,
            router,
            server.serve_options(),
            counters,
            tasks.stopping(),
        ));
        tracing::info!(receiver = %id, addr = ?self.local_addr(), "zipkin receiver listening");
        Ok(())
    }

    async fn shutdown_by(&self, deadline: Instant) -> anyhow::Result<()> {
        self.set.tasks.stop(deadline).await;
        Ok(())
    }
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg.into(),
    )
        .into_response()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    V1Json,
    V2Json,
    V2Proto,
}

async fn v2(State(st): State<St>, req: Request) -> Response {
    let proto = media(&req) == "application/x-protobuf";
    handle(
        st,
        req,
        if proto {
            Format::V2Proto
        } else {
            Format::V2Json
        },
    )
    .await
}

async fn v1(State(st): State<St>, req: Request) -> Response {
    if media(&req) == "application/x-thrift" {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "zipkin v1 thrift is not supported: send v1 JSON, or v2 JSON or protobuf to /api/v2/spans",
        );
    }
    handle(st, req, Format::V1Json).await
}

fn media(req: &Request) -> String {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

async fn handle(st: St, req: Request, format: Format) -> Response {
    if req.method() != Method::POST {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "405 method not allowed, supported: [POST]",
        );
    }
    let encoding = req
        .headers()
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let meta = st
        .include_metadata
        .then(|| ClientMetadata::from_headers(req.headers()));
    let body = match read_body(req.into_body(), encoding.as_deref(), st.max_body).await {
        Ok(b) => b,
        Err(BodyError::TooLarge(m)) => {
            st.too_large.increment(1);
            return text(StatusCode::PAYLOAD_TOO_LARGE, m);
        }
        Err(BodyError::Bad(m)) => {
            st.bad.increment(1);
            return text(StatusCode::BAD_REQUEST, m);
        }
    };
    let mut budget = Budget::new(st.max_decoded);
    let mut t = model::Translator::new(st.parse_string_tags);
    let mut over = None;
    let mut add = |z: model::ZSpan| match t.add(z, &mut budget) {
        Ok(()) => Ok(()),
        Err(model::TranslateError::Malformed(m)) => Err(m),
        Err(model::TranslateError::TooLarge(e)) => {
            over = Some(e.to_string());
            Err(String::new())
        }
    };
    let r = match format {
        Format::V1Json => decode::v1_json(&body, &mut add),
        Format::V2Json => decode::v2_json(&body, &mut add),
        Format::V2Proto => decode::v2_proto(&body, &mut add),
    };
    if let Err(e) = r {
        if let Some(o) = over {
            st.too_large.increment(1);
            return text(StatusCode::PAYLOAD_TOO_LARGE, o);
        }
        st.bad.increment(1);
        tracing::debug!(receiver = %st.id, error = %e, "zipkin: undecodable request");
        return text(StatusCode::BAD_REQUEST, e);
    }
    let data = Telemetry::Traces(t.finish());
    let items = data.item_count();
    if items == 0 {
        return StatusCode::ACCEPTED.into_response();
    }
    let r = match meta {
        Some(m) => m.scope(st.next.consume(data)).await,
        None => st.next.consume(data).await,
    };
    st.obs.end_op(Signal::Traces, items, &r);
    match r {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(ConsumeError::Retryable { reason, .. }) => {
            let mut resp = text(StatusCode::SERVICE_UNAVAILABLE, reason);
            resp.headers_mut()
                .insert(RETRY_AFTER, http::HeaderValue::from_static("1"));
            resp
        }
        Err(ConsumeError::Permanent { reason, .. }) => {
            text(StatusCode::INTERNAL_SERVER_ERROR, reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
    use std::io::Write;

    #[derive(Default)]
    struct Sink(Mutex<Vec<ResourceSpans>>);

    #[async_trait::async_trait]
    impl Consumer for Sink {
        async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
            if let Telemetry::Traces(rs) = data {
                vigil_core::lock(&self.0).extend(rs);
            }
            Ok(())
        }
    }

    async fn start(cfg: serde_json::Value) -> (Arc<dyn Receiver>, Arc<Sink>, String) {
        let id = ComponentId::parse("zipkin").unwrap();
        let cfg: ZipkinConfig =
            vigil_core::config::decode(ComponentKind::Receiver, &id, &cfg).unwrap();
        let sink = Arc::new(Sink::default());
        let mut next = NextConsumers::new();
        next.insert(Signal::Traces, sink.clone());
        let r = ZipkinReceiver {
            set: Settings::new(ComponentKind::Receiver, &id),
            cfg,
            next,
            addr: Mutex::new(None),
        };
        r.start(&Host::detached()).await.unwrap();
        let base = format!("http://{}", r.local_addr().unwrap());
        (Arc::new(r), sink, base)
    }

    const V2: &str = r#"[{"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"a2fb4a1d1a96d312",
        "name":"get","kind":"CLIENT","timestamp":1556604172355737,"duration":1431,
        "localEndpoint":{"serviceName":"frontend"},"tags":{"n":"7"}}]"#;

    #[tokio::test]
    async fn json_gzip_and_parse_string_tags() {
        let (r, sink, base) = start(serde_json::json!({
            "endpoint": "127.0.0.1:0", "parse_string_tags": true
        }))
        .await;
        let client = reqwest::Client::new();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(V2.as_bytes()).unwrap();
        let resp = client
            .post(format!("{base}/api/v2/spans"))
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(gz.finish().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        {
            let got = vigil_core::lock(&sink.0);
            let s = &got[0].scope_spans[0].spans[0];
            assert_eq!(s.name, "get");
            let n = s.attributes.iter().find(|kv| kv.key == "n").unwrap();
            assert_eq!(
                n.value.as_ref().unwrap().value,
                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(7))
            );
        }
        let resp = client
            .post(format!("{base}/api/v2/spans"))
            .header("content-type", "application/json")
            .body("[{\"traceId\": 5}]")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let resp = client
            .post(format!("{base}/api/v1/spans"))
            .header("content-type", "application/x-thrift")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 415);
        r.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn oversize_bodies_and_decoded_sizes_are_refused() {
        let (r, sink, base) = start(serde_json::json!({
            "endpoint": "127.0.0.1:0", "max_request_body_size": 5000, "max_decoded_size_mib": 1
        }))
        .await;
        let client = reqwest::Client::new();
        let resp = client
            .post(format!("{base}/api/v2/spans"))
            .body(vec![b' '; 6000])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 413);
        // Within the body limit once compressed, far beyond it inflated.
        let big = format!("[{}]", vec![&V2[1..V2.len() - 1]; 2000].join(","));
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(big.as_bytes()).unwrap();
        let body = z.finish().unwrap();
        assert!(body.len() < 5000, "{}", body.len());
        let resp = client
            .post(format!("{base}/api/v2/spans"))
            .header("content-encoding", "deflate")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 413);
        r.shutdown().await.unwrap();

        // The decoded bound on its own: a body inside the limit of many spans.
        let (r, _sink2, base) = start(serde_json::json!({
            "endpoint": "127.0.0.1:0", "max_decoded_size_mib": 1
        }))
        .await;
        let many = format!("[{}]", vec![&V2[1..V2.len() - 1]; 20_000].join(","));
        let resp = client
            .post(format!("{base}/api/v2/spans"))
            .body(many)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 413);
        assert!(resp.text().await.unwrap().contains("max_decoded_size_mib"));
        r.shutdown().await.unwrap();
        assert!(vigil_core::lock(&sink.0).is_empty());
    }

    /// TLS through the shared listener: a client that trusts the CA is served, a plaintext one is
    /// not.
    #[tokio::test]
    async fn tls_is_served_from_the_configured_certificate() {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert_file, key_file) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let (r, sink, base) = start(serde_json::json!({
            "endpoint": "127.0.0.1:0",
            "tls": {"cert_file": cert_file, "key_file": key_file},
        }))
        .await;
        let https = base.replace("http://", "https://");
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
            .build()
            .unwrap();
        let resp = client
            .post(format!("{https}/api/v2/spans"))
            .header("content-type", "application/json")
            .body(V2)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        assert_eq!(vigil_core::lock(&sink.0).len(), 1);
        let plain = reqwest::Client::new()
            .post(format!("{base}/api/v2/spans"))
            .body(V2)
            .send()
            .await;
        assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()));
        r.shutdown().await.unwrap();
    }

    #[test]
    fn config_errors_name_the_key() {
        let id = ComponentId::parse("zipkin").unwrap();
        let check = |v: serde_json::Value| -> Result<(), String> {
            let cfg: ZipkinConfig = vigil_core::config::decode(ComponentKind::Receiver, &id, &v)
                .map_err(|e| e.to_string())?;
            Factory.validate(&id, &cfg).map_err(|e| e.to_string())
        };
        assert!(check(serde_json::json!({})).is_ok());
        let e = check(serde_json::json!({"endpoint": "localhost:70000"})).unwrap_err();
        assert!(e.contains("endpoint"), "{e}");
        let e = check(serde_json::json!({"parse_string_tag": true})).unwrap_err();
        assert!(e.contains("parse_string_tag"), "{e}");
    }
}
