//! `otlphttp`: sends OTLP over HTTP to `endpoint` + `/v1/<signal>` (or a per-signal URL), in protobuf
//! or JSON, gzip-compressed by default. Answers are classified as the OTLP specification says: 429,
//! 502, 503 and 504 are retried (honouring `Retry-After`), any other non-2xx status is final.

use crate::helper::auth::{AuthConfig, Authenticator};
use crate::helper::encode::{partial_success_json, partial_success_proto};
use crate::helper::http::{error_chain, header_map, http_client_with};
use crate::helper::queue::{signal_from_tag, signal_tag, Persist};
use crate::helper::{
    classify, Clock, Compression, Delivered, QueueConfig, RetryConfig, SendError, SendSettings,
    SendStack, Sender, TokioClock,
};
use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use vigil_core::codec::encode::{json_request, proto_request};
use vigil_core::component::OutgoingRequest;
use vigil_core::config::{duration, TlsClientConfig};
use vigil_core::factory::{DynExporterFactory, ExporterFactory, FactoryBase};
use vigil_core::{
    ComponentId, ComponentKind, ConfigError, Exporter, Host, Settings, Signal, Stability, Telemetry,
};

/// The body format of requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Proto,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Proto => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

fn default_timeout() -> Duration {
    // otlphttp's own default; the other exporters use exporterhelper's 5s.
    Duration::from_secs(30)
}

/// The `otlphttp` config, with otelcol's keys.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpConfig {
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    traces_endpoint: Option<String>,
    #[serde(default)]
    metrics_endpoint: Option<String>,
    #[serde(default)]
    logs_endpoint: Option<String>,
    /// otelcol's key for profiles; without it `endpoint` + `/v1development/profiles`.
    #[serde(default)]
    profiles_endpoint: Option<String>,
    #[serde(default)]
    encoding: Encoding,
    #[serde(default)]
    compression: Compression,
    /// confighttp's `compression_params`: the codec's level (see `Compression::compress_level`).
    #[serde(default)]
    compression_params: CompressionParams,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    tls: TlsClientConfig,
    #[serde(default = "default_timeout", with = "duration")]
    timeout: Duration,
    #[serde(default)]
    retry_on_failure: RetryConfig,
    #[serde(default)]
    sending_queue: QueueConfig,
    #[serde(default)]
    auth: Option<AuthConfig>,
    // confighttp's client transport keys; see `helper::http::ClientTransport`.
    #[serde(default)]
    proxy_url: Option<String>,
    #[serde(default)]
    max_idle_conns: Option<usize>,
    #[serde(default)]
    max_idle_conns_per_host: Option<usize>,
    /// Go's transport limit on all connections to a host. vigil bounds concurrent requests
    /// instead, by `sending_queue::num_consumers` (one request per consumer); this key is read
    /// and must be a count, but does not lower that bound.
    #[serde(default)]
    max_conns_per_host: Option<usize>,
    #[serde(default, with = "vigil_core::config::opt_duration")]
    idle_conn_timeout: Option<Duration>,
    #[serde(default)]
    disable_keep_alives: bool,
    #[serde(default, with = "duration")]
    http2_read_idle_timeout: Duration,
    #[serde(default, with = "duration")]
    http2_ping_timeout: Duration,
    /// Go's transport buffer sizes: tuning that reqwest sizes on its own; read and not used.
    #[serde(default)]
    read_buffer_size: usize,
    #[serde(default)]
    write_buffer_size: usize,
    /// `cookies::enabled`: only `false` is built (reqwest is compiled without a cookie store).
    #[serde(default)]
    cookies: Option<Cookies>,
}

/// confighttp's `compression_params` section.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionParams {
    /// 0 (the default): vigil's fast level.
    #[serde(default)]
    level: i32,
}

/// confighttp's `cookies` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cookies {
    #[serde(default)]
    enabled: bool,
}

fn config_error(id: &ComponentId, path: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Exporter, id, path, msg)
}

fn parse_url(id: &ComponentId, key: &str, raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw).map_err(|e| {
        config_error(
            id,
            key,
            format!("invalid URL {raw:?}: {e} (expected http://host:port or https://host:port)"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(config_error(
            id,
            key,
            format!("invalid URL {raw:?}: expected an http:// or https:// URL with a host"),
        ));
    }
    Ok(url)
}

impl OtlpHttpConfig {
    /// The URL of each signal, in `Signal::ALL` order: the per-signal key if set, otherwise `endpoint`
    /// with `/v1/<signal>` appended to its path.
    fn urls(&self, id: &ComponentId) -> Result<[Option<Url>; 4], ConfigError> {
        if self.endpoint.is_none()
            && self.traces_endpoint.is_none()
            && self.metrics_endpoint.is_none()
            && self.logs_endpoint.is_none()
            && self.profiles_endpoint.is_none()
        {
            return Err(config_error(
                id,
                "endpoint",
                "is required (or set traces_endpoint, metrics_endpoint and logs_endpoint)",
            ));
        }
        let base = match &self.endpoint {
            Some(e) => Some(parse_url(id, "endpoint", e)?),
            None => None,
        };
        let mut out: [Option<Url>; 4] = [None, None, None, None];
        for (slot, signal) in Signal::ALL.into_iter().enumerate() {
            let (key, own) = match signal {
                Signal::Traces => ("traces_endpoint", &self.traces_endpoint),
                Signal::Metrics => ("metrics_endpoint", &self.metrics_endpoint),
                Signal::Logs => ("logs_endpoint", &self.logs_endpoint),
                Signal::Profiles => ("profiles_endpoint", &self.profiles_endpoint),
            };
            out[slot] = match (own, &base) {
                (Some(raw), _) => Some(parse_url(id, key, raw)?),
                (None, Some(base)) => {
                    let mut url = base.clone();
                    // Profiles are still in development in OTLP, and so is their path.
                    let version = match signal {
                        Signal::Profiles => "v1development",
                        _ => "v1",
                    };
                    let path = format!("{}/{version}/{signal}", base.path().trim_end_matches('/'));
                    url.set_path(&path);
                    Some(url)
                }
                (None, None) => None,
            };
        }
        Ok(out)
    }

    fn settings(&self) -> SendSettings {
        SendSettings {
            timeout: self.timeout,
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
        }
    }

    fn transport(&self) -> crate::helper::http::ClientTransport {
        crate::helper::http::ClientTransport {
            proxy_url: self.proxy_url.clone(),
            max_idle_conns: self.max_idle_conns,
            max_idle_conns_per_host: self.max_idle_conns_per_host,
            idle_conn_timeout: self.idle_conn_timeout,
            disable_keep_alives: self.disable_keep_alives,
            http2_read_idle_timeout: self.http2_read_idle_timeout,
            http2_ping_timeout: self.http2_ping_timeout,
        }
    }

    fn validate(&self, id: &ComponentId) -> Result<(), ConfigError> {
        self.urls(id)?;
        if self.cookies.as_ref().is_some_and(|c| c.enabled) {
            return Err(config_error(
                id,
                "cookies::enabled",
                "true is not built in vigil: responses' cookies are not kept; remove the section",
            ));
        }
        self.compression
            .check_level(self.compression_params.level)
            .map_err(|e| config_error(id, "compression_params::level", &e))?;
        crate::helper::http::header_map(id, &self.headers)?;
        if let Some(auth) = &self.auth {
            auth.id(id)?;
        }
        self.settings().validate(id)
    }
}

/// One encoded, compressed request body and the signal it is for.
pub struct HttpRequest {
    signal: Signal,
    /// The body's own format, so that a request stored before a config change is still labelled
    /// correctly when it is finally sent.
    encoding: Encoding,
    compression: Compression,
    body: Bytes,
}

/// Stored as signal tag, encoding, compression, then the body as it goes on the wire.
impl Persist for HttpRequest {
    fn to_bytes(&self) -> Vec<u8> {
        let encoding = match self.encoding {
            Encoding::Proto => 0,
            Encoding::Json => 1,
        };
        let compression = match self.compression {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Zstd => 2,
            Compression::Deflate => 3,
        };
        let mut out = Vec::with_capacity(3 + self.body.len());
        out.extend_from_slice(&[signal_tag(self.signal), encoding, compression]);
        out.extend_from_slice(&self.body);
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&[tag, encoding, compression], body) = bytes.split_first_chunk::<3>()?;
        Some(HttpRequest {
            signal: signal_from_tag(tag)?,
            encoding: match encoding {
                0 => Encoding::Proto,
                1 => Encoding::Json,
                _ => return None,
            },
            compression: match compression {
                0 => Compression::None,
                1 => Compression::Gzip,
                2 => Compression::Zstd,
                3 => Compression::Deflate,
                _ => return None,
            },
            body: Bytes::copy_from_slice(body),
        })
    }
}

/// The OTLP/HTTP transport.
pub struct HttpSender {
    client: reqwest::Client,
    urls: [Option<Url>; 4],
    encoding: Encoding,
    compression: Compression,
    level: i32,
    id: ComponentId,
    auth: Authenticator,
    /// With `auth`, the exporter's `headers:`, which the authenticator sees (and may change) on
    /// each request; without it they are the client's default headers and this is empty.
    headers: http::HeaderMap,
}

fn slot(signal: Signal) -> usize {
    match signal {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
        Signal::Profiles => 3,
    }
}

#[async_trait]
impl Sender for HttpSender {
    type Request = HttpRequest;

    fn prepare(&self, data: &Telemetry) -> Result<HttpRequest, SendError> {
        let body = match self.encoding {
            Encoding::Proto => proto_request(data),
            Encoding::Json => json_request(data)
                .map_err(|e| SendError::permanent(format!("cannot encode as OTLP/JSON: {e}")))?,
        };
        let body = self
            .compression
            .compress_level(body, self.level)
            .map_err(|e| SendError::permanent(format!("cannot compress the request: {e}")))?;
        Ok(HttpRequest {
            signal: data.signal(),
            encoding: self.encoding,
            compression: self.compression,
            body: Bytes::from(body),
        })
    }

    async fn send(&self, req: &HttpRequest) -> Result<Delivered, SendError> {
        let Some(url) = &self.urls[slot(req.signal)] else {
            return Err(SendError::permanent(format!(
                "no URL for {}: set endpoint or {}_endpoint",
                req.signal, req.signal
            )));
        };
        let mut builder = self
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, req.encoding.content_type())
            .body(req.body.clone());
        if let Some(enc) = req.compression.encoding_name() {
            builder = builder.header(CONTENT_ENCODING, enc);
        }
        if self.auth.is_configured() {
            // The content headers go through the authenticator too, as a signature (sigv4auth)
            // covers them; `headers()` below replaces the builder's copies with the same values.
            let mut headers = self.headers.clone();
            headers.insert(
                CONTENT_TYPE,
                http::HeaderValue::from_static(req.encoding.content_type()),
            );
            if let Some(enc) = req.compression.encoding_name() {
                headers.insert(CONTENT_ENCODING, http::HeaderValue::from_static(enc));
            }
            let request = OutgoingRequest {
                method: "POST",
                url: url.as_str(),
                body: &req.body,
            };
            self.auth
                .apply_request(request, &mut headers)
                .await
                .map_err(SendError::retryable)?;
            builder = builder.headers(headers);
        }
        let resp = builder.send().await.map_err(|e| {
            // Connection refused, reset, DNS: the backend may come back.
            SendError::retryable(format!("cannot send to {url}: {}", error_chain(&e)))
        })?;
        let status = resp.status();
        let retry_after = classify::retry_after_header(resp.headers());
        let json = match resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        {
            Some(ct) => ct.contains("json"),
            None => req.encoding == Encoding::Json,
        };
        // A body that fails to arrive after a 2xx status does not undo the success.
        let body = resp.bytes().await.unwrap_or_default();
        if status.is_success() {
            return Ok(if json {
                partial_success_json(req.signal, &body)
            } else {
                partial_success_proto(req.signal, &body)
            });
        }
        let message = classify::http_error_message(&body, json);
        let reason = if message.is_empty() {
            format!("HTTP {status} from {url}")
        } else {
            format!("HTTP {status} from {url}: {message}")
        };
        if classify::http_status_is_retryable(status) {
            Err(SendError::Retryable {
                reason,
                retry_after,
            })
        } else {
            Err(SendError::Permanent { reason })
        }
    }

    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        self.auth.start(host, &self.id)
    }
}

/// Builds the exporter from a validated config; `clock` is what retries wait on.
fn build(
    set: &Settings,
    cfg: OtlpHttpConfig,
    clock: Arc<dyn Clock>,
) -> Result<SendStack<HttpSender>, ConfigError> {
    let id = &set.id;
    // An authenticator sees the exporter's headers on each request (headers_setter's insert and
    // update depend on them), so with one they are not the client's defaults.
    let (defaults, headers) = if cfg.auth.is_some() {
        (BTreeMap::new(), header_map(id, &cfg.headers)?)
    } else {
        (cfg.headers.clone(), http::HeaderMap::new())
    };
    let sender = HttpSender {
        client: http_client_with(id, &defaults, &cfg.tls, &cfg.transport())?,
        headers,
        urls: cfg.urls(id)?,
        encoding: cfg.encoding,
        compression: cfg.compression,
        level: cfg.compression_params.level,
        id: id.clone(),
        auth: Authenticator::new(cfg.auth.as_ref().map(|a| a.id(id)).transpose()?)
            .passing_requests(),
    };
    Ok(SendStack::with_clock(set, cfg.settings(), sender, clock))
}

struct Factory;

/// The `otlphttp` exporter factory.
pub fn factory() -> Arc<dyn DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl FactoryBase for Factory {
    type Config = OtlpHttpConfig;

    fn type_name(&self) -> &'static str {
        "otlphttp"
    }

    fn validate(&self, id: &ComponentId, cfg: &OtlpHttpConfig) -> Result<(), ConfigError> {
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

    fn create(&self, set: Settings, cfg: OtlpHttpConfig) -> Result<Arc<dyn Exporter>, ConfigError> {
        Ok(Arc::new(build(&set, cfg, Arc::new(TokioClock))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helper::classify::rpc;
    use crate::helper::counters::testing::TestRecorder;
    use crate::helper::encode::tests::{sample_logs, sample_traces};
    use crate::helper::retry::tests::ManualClock;
    use axum::body::Bytes as AxumBytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::IntoResponse;
    use serde_json::{json, Value};
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use vigil_core::codec::encode::{decode_json_request, decode_proto_request};
    use vigil_core::{Component, ConsumeError, Consumer, Host};

    /// A scripted answer: status, headers, body.
    type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);

    /// What the test backend answers next, and what it received.
    #[derive(Default)]
    struct Backend {
        answers: Mutex<VecDeque<Answer>>,
        received: Mutex<Vec<(String, HeaderMap, Vec<u8>)>>,
    }

    async fn handle(
        State(b): State<Arc<Backend>>,
        uri: Uri,
        headers: HeaderMap,
        body: AxumBytes,
    ) -> impl IntoResponse {
        b.received
            .lock()
            .unwrap()
            .push((uri.path().to_string(), headers, body.to_vec()));
        let (code, hdrs, body) =
            b.answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or((200, vec![], vec![]));
        let mut resp = (StatusCode::from_u16(code).unwrap(), body).into_response();
        for (k, v) in hdrs {
            resp.headers_mut().insert(k, v.parse().unwrap());
        }
        resp
    }

    async fn backend() -> (Arc<Backend>, String) {
        let b = Arc::new(Backend::default());
        let app = axum::Router::new()
            .fallback(axum::routing::post(handle))
            .with_state(b.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (b, format!("http://{addr}"))
    }

    fn id() -> ComponentId {
        ComponentId::parse("otlphttp/test").unwrap()
    }

    fn exporter(
        rec: &TestRecorder,
        config: Value,
        clock: Arc<ManualClock>,
    ) -> SendStack<HttpSender> {
        // Decoded and validated as the registry does.
        let cfg: OtlpHttpConfig =
            vigil_core::config::decode(ComponentKind::Exporter, &id(), &config).unwrap();
        cfg.validate(&id()).unwrap();
        let set = Settings::new(ComponentKind::Exporter, &id());
        metrics::with_local_recorder(rec, || build(&set, cfg, clock)).unwrap()
    }

    /// Sends synchronously (no queue) so each test sees the outcome of its batch directly.
    fn sync_config(endpoint: &str, extra: Value) -> Value {
        let mut cfg = json!({
            "endpoint": endpoint,
            "sending_queue": {"enabled": false},
            "retry_on_failure": {"enabled": false},
        });
        if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        cfg
    }

    fn gunzip(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(b), &mut out).unwrap();
        out
    }

    const SENT: &str = "otelcol_exporter_sent_spans{exporter=otlphttp/test}";
    const FAILED: &str = "otelcol_exporter_send_failed_spans{exporter=otlphttp/test}";

    #[tokio::test]
    async fn ok_sends_gzip_protobuf_to_v1_traces() {
        let (b, url) = backend().await;
        let rec = TestRecorder::default();
        let e = exporter(
            &rec,
            sync_config(&url, json!({"headers": {"x-tenant": "a"}})),
            ManualClock::new(),
        );
        let data = sample_traces(3);
        e.consume(data.clone()).await.unwrap();
        let got = b.received.lock().unwrap();
        assert_eq!(got.len(), 1);
        let (path, headers, body) = &got[0];
        assert_eq!(path, "/v1/traces");
        assert_eq!(headers["content-type"], "application/x-protobuf");
        assert_eq!(headers["content-encoding"], "gzip");
        assert_eq!(headers["x-tenant"], "a");
        assert_eq!(
            decode_proto_request(Signal::Traces, &gunzip(body)).unwrap(),
            data
        );
        assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (3, 0));
    }

    #[tokio::test]
    async fn bad_request_is_one_permanent_failure() {
        let (b, url) = backend().await;
        let status = rpc::Status {
            code: 3,
            message: "span name is empty".into(),
            details: vec![],
        };
        b.answers.lock().unwrap().push_back((
            400,
            vec![("content-type", "application/x-protobuf".into())],
            prost::Message::encode_to_vec(&status),
        ));
        let rec = TestRecorder::default();
        // Retries on: a 400 still must not be retried.
        let cfg = sync_config(&url, json!({"retry_on_failure": {"enabled": true}}));
        let clock = ManualClock::new();
        let e = exporter(&rec, cfg, clock.clone());
        let err = e.consume(sample_traces(2)).await.unwrap_err();
        match &err {
            ConsumeError::Permanent { reason, rejected } => {
                assert!(reason.contains("400"), "{reason}");
                assert!(reason.contains("span name is empty"), "{reason}");
                assert_eq!(*rejected, 2);
            }
            other => panic!("expected a permanent error, got {other:?}"),
        }
        assert_eq!(b.received.lock().unwrap().len(), 1);
        assert!(clock.sleeps().is_empty());
        assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (0, 2));
    }

    #[tokio::test]
    async fn unavailable_with_retry_after_is_retryable_with_that_delay() {
        let (b, url) = backend().await;
        b.answers
            .lock()
            .unwrap()
            .push_back((503, vec![("retry-after", "2".into())], vec![]));
        let rec = TestRecorder::default();
        let e = exporter(&rec, sync_config(&url, json!({})), ManualClock::new());
        let err = e.consume(sample_traces(1)).await.unwrap_err();
        assert_eq!(
            err,
            ConsumeError::Retryable {
                reason: format!("HTTP 503 Service Unavailable from {url}/v1/traces"),
                retry_after: Some(Duration::from_secs(2)),
            }
        );
    }

    #[tokio::test]
    async fn throttled_then_accepted_waits_as_asked() {
        let (b, url) = backend().await;
        b.answers.lock().unwrap().extend([
            (429, vec![("retry-after", "7".into())], vec![]),
            (503, vec![("retry-after", "2".into())], vec![]),
        ]);
        let rec = TestRecorder::default();
        let clock = ManualClock::new();
        let cfg = sync_config(
            &url,
            json!({"retry_on_failure": {"enabled": true, "initial_interval": "10ms"}}),
        );
        let e = exporter(&rec, cfg, clock.clone());
        e.consume(sample_traces(4)).await.unwrap();
        assert_eq!(b.received.lock().unwrap().len(), 3);
        assert_eq!(
            clock.sleeps(),
            vec![Duration::from_secs(7), Duration::from_secs(2)]
        );
        assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (4, 0));
    }

    #[tokio::test]
    async fn too_many_requests_without_hint_is_retryable() {
        let (b, url) = backend().await;
        b.answers
            .lock()
            .unwrap()
            .push_back((429, vec![], b"slow down".to_vec()));
        let rec = TestRecorder::default();
        let e = exporter(&rec, sync_config(&url, json!({})), ManualClock::new());
        let err = e.consume(sample_traces(1)).await.unwrap_err();
        assert!(
            matches!(&err, ConsumeError::Retryable { retry_after: None, reason } if reason.contains("slow down")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn json_per_signal_endpoint_and_partial_success() {
        let (b, url) = backend().await;
        b.answers.lock().unwrap().push_back((
            200,
            vec![("content-type", "application/json".into())],
            br#"{"partialSuccess":{"rejectedLogRecords":"1","errorMessage":"too old"}}"#.to_vec(),
        ));
        let rec = TestRecorder::default();
        let cfg = sync_config(
            "http://127.0.0.1:9",
            json!({
                "logs_endpoint": format!("{url}/custom/logs"),
                "encoding": "json",
                "compression": "none",
            }),
        );
        let e = exporter(&rec, cfg, ManualClock::new());
        let data = sample_logs();
        e.consume(data.clone()).await.unwrap();
        let got = b.received.lock().unwrap();
        assert_eq!(got[0].0, "/custom/logs");
        assert_eq!(got[0].1["content-type"], "application/json");
        assert!(got[0].1.get("content-encoding").is_none());
        assert_eq!(decode_json_request(Signal::Logs, &got[0].2).unwrap(), data);
        // One record, rejected by the backend: counted as failed, not sent, and not retried.
        assert_eq!(
            rec.counter("otelcol_exporter_send_failed_log_records{exporter=otlphttp/test}"),
            1
        );
        assert_eq!(
            rec.counter("otelcol_exporter_sent_log_records{exporter=otlphttp/test}"),
            0
        );
        assert_eq!(got.len(), 1);
    }

    #[tokio::test]
    async fn queued_exporter_delivers_in_background_and_drains_on_shutdown() {
        let (b, url) = backend().await;
        let rec = TestRecorder::default();
        let cfg = json!({"endpoint": url, "compression": "zstd"});
        let e = exporter(&rec, cfg, ManualClock::new());
        e.start(&Host::detached()).await.unwrap();
        for _ in 0..5 {
            e.consume(sample_traces(2)).await.unwrap();
        }
        e.shutdown().await.unwrap();
        let got = b.received.lock().unwrap();
        assert_eq!(got.len(), 5);
        assert_eq!(got[0].1["content-encoding"], "zstd");
        assert_eq!(rec.counter(SENT), 10);
    }

    #[tokio::test]
    async fn unreachable_backend_is_retryable() {
        // Port 9 (discard) is closed on test machines: the connection is refused.
        let rec = TestRecorder::default();
        let e = exporter(
            &rec,
            sync_config("http://127.0.0.1:9", json!({})),
            ManualClock::new(),
        );
        let err = e.consume(sample_traces(1)).await.unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
    }

    #[test]
    fn config_errors_name_the_key() {
        let f = factory();
        let check = |v: Value| f.validate(&id(), &v).unwrap_err().to_string();
        assert_eq!(
            check(json!({})),
            "exporters::otlphttp/test::endpoint: is required (or set traces_endpoint, \
             metrics_endpoint and logs_endpoint)"
        );
        assert!(check(json!({"endpoint": "localhost:4318"})).contains("endpoint: invalid URL"));
        assert!(
            check(json!({"endpoint": "http://x", "compression": "snappy"}))
                .contains("compression: unsupported compression \"snappy\"")
        );
        assert!(check(json!({"endpoint": "http://x", "encoding": "xml"})).contains("encoding"));
        assert!(
            check(json!({"endpoint": "http://x", "compression_params": {"level": 12}}))
                .contains("compression_params::level: unsupported level 12")
        );
        for ok in [
            json!({"endpoint": "http://x", "compression_params": {"level": 9}}),
            json!({"endpoint": "http://x", "compression": "zstd", "compression_params": {"level": 11}}),
            json!({"endpoint": "http://x", "sending_queue": {"blocking": true, "block_on_overflow": false}}),
        ] {
            f.validate(&id(), &ok).unwrap();
        }
        assert!(check(json!({"endpoint": "http://x", "endpont": "y"}))
            .contains("has invalid keys: endpont"));
        assert!(
            check(json!({"endpoint": "http://x", "sending_queue": {"queue_size": 0}}))
                .contains("sending_queue::queue_size")
        );
        assert!(
            check(json!({"endpoint": "http://x", "headers": {"bad name": "v"}}))
                .contains("headers::bad name")
        );
        assert!(f
            .validate(&id(), &json!({"endpoint": "https://gw:4318/"}))
            .is_ok());
    }

    #[test]
    fn requests_persist_with_their_format() {
        let req = HttpRequest {
            signal: Signal::Metrics,
            encoding: Encoding::Json,
            compression: Compression::Zstd,
            body: Bytes::from_static(b"{}"),
        };
        let back = HttpRequest::from_bytes(&req.to_bytes()).unwrap();
        assert_eq!(
            (back.signal, back.encoding, back.compression, &back.body[..]),
            (
                Signal::Metrics,
                Encoding::Json,
                Compression::Zstd,
                &b"{}"[..]
            )
        );
        assert!(HttpRequest::from_bytes(&[1, 0]).is_none());
        assert!(HttpRequest::from_bytes(&[1, 5, 0]).is_none());
    }

    #[test]
    fn urls_append_v1_signal() {
        let cfg: OtlpHttpConfig = serde_json::from_value(json!({
            "endpoint": "https://gw:4318/prefix/",
            "metrics_endpoint": "http://m:9000/in",
        }))
        .unwrap();
        let urls = cfg.urls(&id()).unwrap();
        let s: Vec<String> = urls
            .iter()
            .map(|u| u.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(
            s,
            vec![
                "https://gw:4318/prefix/v1/traces",
                "http://m:9000/in",
                "https://gw:4318/prefix/v1/logs",
                "https://gw:4318/prefix/v1development/profiles"
            ]
        );
        assert_eq!(cfg.timeout, Duration::from_secs(30));
    }
}
