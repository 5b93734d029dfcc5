//! `http_forwarder`: otelcol's httpforwarderextension. Every HTTP request received on `ingress`
//! is sent on to `egress::endpoint` and the answer is copied back: the scheme and host come from
//! the egress endpoint, the path and query from the request (the egress endpoint's own path is not
//! used, as in otelcol), the egress `headers` are added to what the client sent, and a `Via` header
//! marks both the forwarded request and the answer. Agents use it to let instrumented apps reach a
//! vendor API (OpAMP, SignalFx) through the node's collector.
//!
//! Bounded: a request body larger than `ingress::max_request_body_size` (default 20 MiB, confighttp's)
//! is refused with 413; at most [`MAX_IN_FLIGHT`] requests are forwarded at once, and the rest get
//! 503. The answer's body is streamed through, never held whole. Counted in
//! `vigil_http_forwarder_requests{extension,result}` (`forwarded`, `too_large`, `busy`, `failed`).
//! The server is `awsproxy`'s too (`super::forward`); what is this extension's is the egress.

use super::forward::{self, hop_by_hop, Bounds, Forward};
use super::health_check::server_tls;
use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use vigil_core::config::{check_endpoint, TlsClientConfig};
use vigil_core::net::tls::TlsServerSettings;
use vigil_core::{Component, ComponentId, ComponentKind, ConfigError, Extension, Host};

/// Requests forwarded at once; more wait for none and are answered 503, so a stuck egress cannot
/// pile up connections and bodies without bound.
pub const MAX_IN_FLIGHT: usize = 256;
/// confighttp's default `max_request_body_size`.
const DEFAULT_MAX_BODY: u64 = 20 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct HttpForwarderConfig {
    #[serde(default)]
    ingress: Ingress,
    #[serde(default)]
    egress: Egress,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Ingress {
    /// Where requests are received.
    #[serde(default = "default_ingress")]
    endpoint: String,
    /// TLS (and mutual TLS with `client_ca_file`), with otelcol's `configtls` keys.
    #[serde(default)]
    tls: Option<TlsServerSettings>,
    /// Larger request bodies are refused with 413; 0 means the default, 20 MiB.
    #[serde(default)]
    max_request_body_size: u64,
}

impl Default for Ingress {
    fn default() -> Self {
        Ingress {
            endpoint: default_ingress(),
            tls: None,
            max_request_body_size: 0,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Egress {
    /// Where requests go: `http(s)://host[:port]`. Required.
    #[serde(default)]
    endpoint: String,
    /// Added to every forwarded request (after the client's own headers of the same name).
    #[serde(default, serialize_with = "redacted_values")]
    headers: BTreeMap<String, String>,
    /// How long one forwarded request may take, answer included; 0 means no limit.
    #[serde(default = "default_timeout", with = "vigil_core::config::duration")]
    timeout: Duration,
    #[serde(default)]
    tls: TlsClientConfig,
}

/// Header values are credentials (`X-SF-Token`): shown as otelcol's `configopaque` prints them.
fn redacted_values<S: serde::Serializer>(
    map: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(map.keys().map(|k| (k, "[REDACTED]")))
}

/// otelcol's default: every interface, as Go binds an empty host.
fn default_ingress() -> String {
    ":6060".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn err(id: &ComponentId, path: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Extension, id, path, msg)
}

/// The egress URL's scheme and authority, checked.
fn egress_base(id: &ComponentId, endpoint: &str) -> Result<url::Url, ConfigError> {
    if endpoint.is_empty() {
        return Err(err(
            id,
            "egress::endpoint",
            "'egress.endpoint' config option cannot be empty",
        ));
    }
    let u = url::Url::parse(endpoint).map_err(|e| {
        err(
            id,
            "egress::endpoint",
            format!("{endpoint:?} is not a URL: {e}"),
        )
    })?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(err(
            id,
            "egress::endpoint",
            format!("{endpoint:?} must be an http:// or https:// URL with a host"),
        ));
    }
    Ok(u)
}

/// The egress client: the exporters' HTTP client from the `tls` keys; its errors name this
/// extension rather than an exporter.
fn client(id: &ComponentId, tls: &TlsClientConfig) -> Result<reqwest::Client, ConfigError> {
    vigil_exporters::helper::http::http_client(id, &BTreeMap::new(), tls).map_err(|mut e| {
        e.location = format!("extensions::{id}");
        e.path = format!("egress::{}", e.path);
        e
    })
}

fn check(id: &ComponentId, cfg: &HttpForwarderConfig) -> Result<(), ConfigError> {
    check_endpoint(&cfg.ingress.endpoint).map_err(|e| err(id, "ingress::endpoint", e))?;
    if let Some(t) = &cfg.ingress.tls {
        t.server_config(super::health_check::HTTP_ALPN)
            .map_err(|e| err(id, format!("ingress::tls::{}", e.key), e.message))?;
    }
    egress_base(id, &cfg.egress.endpoint)?;
    vigil_exporters::helper::http::header_map(id, &cfg.egress.headers).map_err(|mut e| {
        e.location = format!("extensions::{id}");
        e.path = format!("egress::{}", e.path);
        e
    })?;
    client(id, &cfg.egress.tls).map(drop)
}

struct Factory;

/// The `http_forwarder` extension factory, for the registry.
pub fn factory() -> Arc<dyn vigil_core::factory::DynExtensionFactory> {
    vigil_core::factory::extension(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = HttpForwarderConfig;

    fn type_name(&self) -> &'static str {
        "http_forwarder"
    }

    fn validate(&self, id: &ComponentId, cfg: &HttpForwarderConfig) -> Result<(), ConfigError> {
        check(id, cfg)
    }
}

impl vigil_core::factory::ExtensionFactory for Factory {
    fn stability(&self) -> vigil_core::Stability {
        vigil_core::Stability::Beta
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: HttpForwarderConfig,
    ) -> Result<Arc<dyn Extension>, ConfigError> {
        Ok(Arc::new(HttpForwarder {
            id: set.id.clone(),
            cfg,
            tasks: set.tasks.clone(),
            max_in_flight: MAX_IN_FLIGHT,
        }))
    }
}

struct HttpForwarder {
    id: ComponentId,
    cfg: HttpForwarderConfig,
    tasks: vigil_core::task::Tasks,
    /// [`MAX_IN_FLIGHT`]; smaller in a test.
    max_in_flight: usize,
}

impl Extension for HttpForwarder {}

/// What `http_forwarder` adds to the shared forwarding server: the egress and its headers.
struct Egressor {
    base: url::Url,
    headers: HeaderMap,
    timeout: Duration,
    client: reqwest::Client,
}

fn proto(v: axum::http::Version) -> &'static str {
    match v {
        axum::http::Version::HTTP_09 => "HTTP/0.9",
        axum::http::Version::HTTP_10 => "HTTP/1.0",
        axum::http::Version::HTTP_2 => "HTTP/2.0",
        axum::http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The host the client asked for, for the `Via` headers.
fn in_host(parts: &Parts) -> String {
    parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or_default()
        .to_string()
}

#[async_trait]
impl Forward for Egressor {
    const COUNTER: &'static str = "vigil_http_forwarder_requests";
    const BUSY: &'static str =
        "as many requests as the forwarder takes at once are in flight; try again\n";

    fn request(
        &self,
        parts: &Parts,
        body: Bytes,
    ) -> Result<reqwest::RequestBuilder, Box<Response>> {
        let mut url = self.base.clone();
        url.set_path(parts.uri.path());
        url.set_query(parts.uri.query());
        let mut headers = HeaderMap::with_capacity(parts.headers.len() + self.headers.len() + 1);
        for (k, v) in &parts.headers {
            if !hop_by_hop(k) {
                headers.append(k.clone(), v.clone());
            }
        }
        for (k, v) in &self.headers {
            headers.append(k.clone(), v.clone());
        }
        let via = format!("{} {}", proto(parts.version), in_host(parts));
        if let Ok(via) = HeaderValue::from_str(&via) {
            headers.append(header::VIA, via);
        }
        let mut out = self
            .client
            .request(parts.method.clone(), url)
            .headers(headers)
            .body(body);
        if !self.timeout.is_zero() {
            out = out.timeout(self.timeout);
        }
        Ok(out)
    }

    async fn respond(&self, parts: &Parts, answer: reqwest::Response) -> Response {
        let mut resp = forward::head(&answer, |k| !hop_by_hop(k));
        if let Some(h) = resp.headers_mut() {
            let via = format!("{} {}", proto(answer.version()), in_host(parts));
            if let Ok(via) = HeaderValue::from_str(&via) {
                h.append(header::VIA, via);
            }
        }
        // Chunk by chunk, so a large answer is never held whole (reqwest's `stream` feature is
        // not enabled in the workspace; `chunk()` gives the same without it).
        let chunks = futures::stream::unfold(Some(answer), |a| async move {
            let mut a = a?;
            match a.chunk().await {
                Ok(Some(c)) => Some((Ok(c), Some(a))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        });
        forward::finish(resp, Body::from_stream(chunks))
    }
}

#[async_trait]
impl Component for HttpForwarder {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let base = egress_base(&self.id, &self.cfg.egress.endpoint)?;
        let headers =
            vigil_exporters::helper::http::header_map(&self.id, &self.cfg.egress.headers)?;
        let client = client(&self.id, &self.cfg.egress.tls)?;
        let tls = server_tls(&self.id, "ingress::", self.cfg.ingress.tls.as_ref())?;
        let max_body = match self.cfg.ingress.max_request_body_size {
            0 => DEFAULT_MAX_BODY,
            n => n,
        };
        let bounds = Bounds {
            max_in_flight: self.max_in_flight,
            max_body: usize::try_from(max_body).unwrap_or(usize::MAX),
        };
        let egressor = Egressor {
            base,
            headers,
            timeout: self.cfg.egress.timeout,
            client,
        };
        let endpoint = &self.cfg.ingress.endpoint;
        forward::serve(&self.id, &self.tasks, endpoint, tls, bounds, egressor).await
    }

    fn tasks(&self) -> Option<&vigil_core::task::Tasks> {
        Some(&self.tasks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::Request;
    use axum::http::StatusCode;
    use vigil_core::factory::FactoryBase;

    fn parse(v: serde_json::Value) -> Result<HttpForwarderConfig, ConfigError> {
        let id = ComponentId::new("http_forwarder", None);
        let cfg: HttpForwarderConfig =
            vigil_core::config::decode(ComponentKind::Extension, &id, &v)?;
        Factory.validate(&id, &cfg).map(|_| cfg)
    }

    #[test]
    fn config_defaults_and_mistakes() {
        let e = parse(serde_json::Value::Null).unwrap_err();
        assert!(e.to_string().contains("egress::endpoint"), "{e}");
        let cfg =
            parse(serde_json::json!({"egress": {"endpoint": "https://api.example.com"}})).unwrap();
        assert_eq!(cfg.ingress.endpoint, ":6060");
        assert_eq!(cfg.egress.timeout, Duration::from_secs(10));
        let e =
            parse(serde_json::json!({"egress": {"endpoint": "api.example.com:443"}})).unwrap_err();
        assert!(e.to_string().contains("egress::endpoint"), "{e}");
        let e =
            parse(serde_json::json!({"egress": {"endpoint": "http://x", "headers": {"a b": "1"}}}))
                .unwrap_err();
        assert!(e.to_string().contains("egress::headers::a b"), "{e}");
        let e = parse(serde_json::json!({"ingress": {"endpoint": "nowhere"}, "egress": {"endpoint": "http://x"}}))
            .unwrap_err();
        assert!(e.to_string().contains("ingress::endpoint"), "{e}");
        let e = parse(serde_json::json!({"egress": {"endpoint": "http://x", "tls": {"ca_file": "/no/such/ca.pem"}}}))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("extensions::http_forwarder::egress::tls::ca_file"),
            "{e}"
        );
    }

    /// What the backend saw of one request.
    #[derive(Debug, Clone, Default)]
    struct Seen {
        path_and_query: String,
        method: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    /// A real HTTP server as the egress: records each request and answers 201 with a header and
    /// a body that names the path, or sleeps on `/slow`.
    async fn backend() -> (String, Arc<std::sync::Mutex<Vec<Seen>>>) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let app = axum::Router::new().fallback(move |req: Request| {
            let s = s.clone();
            async move {
                let (parts, body) = req.into_parts();
                if parts.uri.path() == "/slow" {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                let body = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                s.lock().unwrap().push(Seen {
                    path_and_query: parts.uri.to_string(),
                    method: parts.method.to_string(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect(),
                    body: body.to_vec(),
                });
                (
                    StatusCode::CREATED,
                    [("x-backend", "yes")],
                    format!("got {}", parts.uri.path()),
                )
            }
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        (format!("http://{addr}/ignored/path"), seen)
    }

    async fn forwarder(cfg: serde_json::Value) -> (Arc<dyn Extension>, String) {
        // Find a free port, then hand it to the extension (bind_tcp needs an address).
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let mut cfg = cfg;
        cfg["ingress"]["endpoint"] = serde_json::json!(format!("127.0.0.1:{port}"));
        let reg = crate::registry::Registry::builtin();
        let id = ComponentId::new("httpforwarder", Some("t"));
        let f = reg
            .extension("httpforwarder")
            .expect("both spellings resolve");
        let ext = f.create(&id, &cfg).unwrap();
        ext.start(&Host::detached()).await.unwrap();
        (ext, format!("http://127.0.0.1:{port}"))
    }

    #[tokio::test]
    async fn forwards_to_a_real_backend_and_back() {
        let (egress, seen) = backend().await;
        let (ext, ingress) = forwarder(serde_json::json!({
            "ingress": {"max_request_body_size": 1024},
            "egress": {"endpoint": egress, "headers": {"X-SF-Token": "secret", "x-client": "added"}, "timeout": "500ms"},
        }))
        .await;
        let c = reqwest::Client::new();
        let r = c
            .post(format!("{ingress}/v2/datapoint?x=1"))
            .header("x-client", "own")
            .body("payload")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["x-backend"], "yes");
        let via: Vec<_> = r.headers().get_all("via").iter().collect();
        assert_eq!(via.len(), 1, "{via:?}");
        assert!(
            via[0].to_str().unwrap().starts_with("HTTP/1.1 127.0.0.1:"),
            "{via:?}"
        );
        assert_eq!(r.text().await.unwrap(), "got /v2/datapoint");
        {
            let seen = seen.lock().unwrap();
            let s = &seen[0];
            assert_eq!(s.path_and_query, "/v2/datapoint?x=1");
            assert_eq!(s.method, "POST");
            assert_eq!(s.body, b"payload");
            let h = |n: &str| -> Vec<&str> {
                s.headers
                    .iter()
                    .filter(|(k, _)| k == n)
                    .map(|(_, v)| v.as_str())
                    .collect()
            };
            assert_eq!(h("x-sf-token"), ["secret"]);
            assert_eq!(h("x-client"), ["own", "added"]);
            assert_eq!(h("via").len(), 1);
            assert!(h("via")[0].starts_with("HTTP/1.1 127.0.0.1:"));
        }
        // Too large: refused before anything reaches the backend.
        let r = c
            .post(format!("{ingress}/big"))
            .body(vec![b'x'; 4096])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
        // Slower than the egress timeout: 502, the backend's answer never arrives.
        let r = c.get(format!("{ingress}/slow")).send().await.unwrap();
        assert_eq!(r.status(), 502);
        assert_eq!(seen.lock().unwrap().len(), 1);
        ext.shutdown_by(std::time::Instant::now() + Duration::from_secs(2))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn requests_past_the_in_flight_bound_are_refused() {
        let (egress, seen) = backend().await;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let cfg = parse(serde_json::json!({
            "ingress": {"endpoint": format!("127.0.0.1:{port}")},
            "egress": {"endpoint": egress},
        }))
        .unwrap();
        let set = vigil_core::Settings::new(
            ComponentKind::Extension,
            &ComponentId::new("http_forwarder", Some("one")),
        );
        let ext = HttpForwarder {
            id: set.id.clone(),
            cfg,
            tasks: set.tasks.clone(),
            max_in_flight: 1,
        };
        ext.start(&Host::detached()).await.unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let slow = tokio::spawn(reqwest::get(format!("{url}/slow")));
        // The slow request holds the one slot for a second.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = reqwest::get(format!("{url}/fast")).await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(slow.await.unwrap().unwrap().status(), 201);
        // Once it is back, the next request goes through.
        let r = reqwest::get(format!("{url}/fast")).await.unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(seen.lock().unwrap().len(), 2);
        ext.shutdown_by(std::time::Instant::now() + Duration::from_secs(2))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_egress_is_a_bad_gateway() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        let (ext, ingress) = forwarder(serde_json::json!({"egress": {"endpoint": dead}})).await;
        let r = reqwest::get(format!("{ingress}/x")).await.unwrap();
        assert_eq!(r.status(), 502);
        assert!(r.text().await.unwrap().contains("onnect"));
        ext.shutdown_by(std::time::Instant::now() + Duration::from_secs(2))
            .await
            .unwrap();
    }
}
