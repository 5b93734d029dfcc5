//! `oauth2client`: a client authenticator that gets an access token from an OAuth 2.0 token
//! endpoint with the client-credentials grant (RFC 6749 section 4.4), as otelcol's
//! `oauth2clientauthextension`, and sends it as `Authorization: Bearer <token>` on every request of
//! the exporters that name it.
//!
//! Keys: `client_id` or `client_id_file`, `client_secret` or `client_secret_file` (files are read at
//! each fetch, so a rotated secret is used without a restart), `token_url`, `scopes`,
//! `endpoint_params`, `timeout` (default 10s; one fetch never takes longer) and `expiry_buffer`
//! (default 5m). The client authenticates with HTTP Basic (RFC 6749 section 2.3.1).
//!
//! The token is cached and fetched again once less than `expiry_buffer` of its life remains (at
//! most half its life, so a short-lived token is not fetched on every request). One fetch runs at
//! a time. When a fetch fails, a token that has not expired yet is still used; without one, the
//! export fails retryably and the exporter's retry brings the next attempt. Fetches are counted
//! (`vigil_oauth2client_token_fetches{result}`); errors and logs never hold the secret or the token.

use crate::extensions::auth_util::{redacted, sensitive};
use async_trait::async_trait;
use axum::http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_core::config::duration;
use vigil_core::factory::{DynExtensionFactory, ExtensionFactory, FactoryBase};
use vigil_core::{
    ClientAuth, Component, ComponentId, ComponentKind, ConfigError, Extension, Settings, Stability,
};

/// The largest token response read.
const MAX_RESPONSE: usize = 64 << 10;

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_expiry_buffer() -> Duration {
    Duration::from_secs(300)
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OAuth2Config {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_id_file: Option<PathBuf>,
    #[serde(default, serialize_with = "redacted")]
    client_secret: Option<String>,
    #[serde(default)]
    client_secret_file: Option<PathBuf>,
    #[serde(default)]
    token_url: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    endpoint_params: BTreeMap<String, ParamValue>,
    #[serde(default = "default_timeout", with = "duration")]
    timeout: Duration,
    #[serde(default = "default_expiry_buffer", with = "duration")]
    expiry_buffer: Duration,
}

/// Go's `url.Values` takes one value or a list per key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
enum ParamValue {
    One(String),
    Many(Vec<String>),
}

fn config_error(id: &ComponentId, key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Extension, id, key, msg)
}

/// A secret given inline or in a file read at each use.
#[derive(Clone)]
enum Secret {
    Inline(String),
    File(PathBuf),
}

impl Secret {
    fn get(&self) -> Result<String, String> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::File(p) => read_secret(p),
        }
    }
}

fn read_secret(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // The newline editors and `echo` add is not part of the secret.
    Ok(text.trim().to_string())
}

struct Parsed {
    client_id: Secret,
    client_secret: Secret,
    token_url: reqwest::Url,
    form: Vec<(String, String)>,
    timeout: Duration,
    expiry_buffer: Duration,
}

fn parse(id: &ComponentId, cfg: &OAuth2Config) -> Result<Parsed, ConfigError> {
    // The file wins over the inline value, as in otelcol.
    let secret = |inline: &Option<String>, file: &Option<PathBuf>, key: &str| match (inline, file) {
        (_, Some(p)) => {
            // Not read in `vigil validate`: otelcol reads it when a token is fetched.
            if !vigil_core::config::host_files_deferred() {
                read_secret(p).map_err(|e| config_error(id, &format!("{key}_file"), e))?;
            }
            Ok(Secret::File(p.clone()))
        }
        (Some(s), None) if !s.is_empty() => Ok(Secret::Inline(s.clone())),
        _ => Err(config_error(id, key, format!("set {key} or {key}_file"))),
    };
    let client_id = secret(&cfg.client_id, &cfg.client_id_file, "client_id")?;
    let client_secret = secret(&cfg.client_secret, &cfg.client_secret_file, "client_secret")?;
    if cfg.token_url.is_empty() {
        return Err(config_error(id, "token_url", "is required"));
    }
    let token_url = reqwest::Url::parse(&cfg.token_url)
        .ok()
        .filter(|u| u.scheme() == "https" || u.scheme() == "http")
        .ok_or_else(|| {
            config_error(
                id,
                "token_url",
                format!("{:?} is not an http or https URL", cfg.token_url),
            )
        })?;
    if cfg.timeout.is_zero() {
        return Err(config_error(id, "timeout", "must be more than 0"));
    }
    let mut form = vec![("grant_type".to_string(), "client_credentials".to_string())];
    if !cfg.scopes.is_empty() {
        form.push(("scope".into(), cfg.scopes.join(" ")));
    }
    for (k, v) in &cfg.endpoint_params {
        if k == "grant_type" {
            return Err(config_error(
                id,
                "endpoint_params::grant_type",
                "is always client_credentials",
            ));
        }
        match v {
            ParamValue::One(v) => form.push((k.clone(), v.clone())),
            ParamValue::Many(vs) => form.extend(vs.iter().map(|v| (k.clone(), v.clone()))),
        }
    }
    Ok(Parsed {
        client_id,
        client_secret,
        token_url,
        form,
        timeout: cfg.timeout,
        expiry_buffer: cfg.expiry_buffer,
    })
}

struct Factory;

/// The `oauth2client` extension factory, for the registry.
pub fn factory() -> Arc<dyn DynExtensionFactory> {
    vigil_core::factory::extension(Factory)
}

impl FactoryBase for Factory {
    type Config = OAuth2Config;

    fn type_name(&self) -> &'static str {
        "oauth2client"
    }

    /// The client id, its secret and `token_url` have no default.
    fn default_config(&self) -> Option<OAuth2Config> {
        None
    }

    fn validate(&self, id: &ComponentId, cfg: &OAuth2Config) -> Result<(), ConfigError> {
        parse(id, cfg).map(|_| ())
    }
}

impl ExtensionFactory for Factory {
    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn create(&self, set: Settings, cfg: OAuth2Config) -> Result<Arc<dyn Extension>, ConfigError> {
        Ok(Arc::new(OAuth2Client {
            inner: token_source(&set.id, &cfg)?,
        }))
    }
}

fn token_source(id: &ComponentId, cfg: &OAuth2Config) -> Result<Arc<TokenSource>, ConfigError> {
    let p = parse(id, cfg)?;
    let client = reqwest::Client::builder()
        .timeout(p.timeout)
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            config_error(
                id,
                "token_url",
                format!("cannot build the HTTP client: {e}"),
            )
        })?;
    let counter = |result: &'static str| metrics::counter!("vigil_oauth2client_token_fetches", "extension" => id.to_string(), "result" => result);
    Ok(Arc::new(TokenSource {
        id: id.clone(),
        client,
        parsed: p,
        token: tokio::sync::Mutex::new(None),
        fetched: counter("ok"),
        failed: counter("failed"),
    }))
}

struct OAuth2Client {
    inner: Arc<TokenSource>,
}

struct Token {
    header: HeaderValue,
    /// When to fetch a new one.
    refresh_at: Option<Instant>,
    /// When it stops being valid; `None` when the endpoint gave no `expires_in`.
    expires_at: Option<Instant>,
}

struct TokenSource {
    id: ComponentId,
    client: reqwest::Client,
    parsed: Parsed,
    /// The cached token; the lock is held across a fetch, so one fetch runs at a time.
    token: tokio::sync::Mutex<Option<Token>>,
    fetched: metrics::Counter,
    failed: metrics::Counter,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<f64>,
}

#[derive(Deserialize, Default)]
struct ErrorResponse {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// `application/x-www-form-urlencoded` encoding of one component (RFC 6749 appendix B).
fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl TokenSource {
    async fn fetch(&self) -> Result<Token, String> {
        let p = &self.parsed;
        let id = p
            .client_id
            .get()
            .map_err(|e| format!("client_id_file: {e}"))?;
        let secret = p
            .client_secret
            .get()
            .map_err(|e| format!("client_secret_file: {e}"))?;
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(p.form.iter())
            .finish();
        let url = &p.token_url;
        let mut resp = self
            .client
            .post(url.clone())
            .basic_auth(form_encode(&id), Some(form_encode(&secret)))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("cannot reach the token endpoint {url}: {}", error_chain(&e)))?;
        let status = resp.status();
        let mut raw = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("cannot read the answer of {url}: {}", error_chain(&e)))?
        {
            if raw.len() + chunk.len() > MAX_RESPONSE {
                return Err(format!(
                    "the answer of {url} is larger than {MAX_RESPONSE} bytes"
                ));
            }
            raw.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            // Only the RFC's error fields are repeated: the rest of a body may echo credentials.
            let e: ErrorResponse = serde_json::from_slice(&raw).unwrap_or_default();
            let mut msg = format!("the token endpoint {url} answered {status}");
            if let Some(code) = e.error {
                msg.push_str(&format!(": {}", truncate(&code)));
            }
            if let Some(d) = e.error_description {
                msg.push_str(&format!(" ({})", truncate(&d)));
            }
            return Err(msg);
        }
        let t: TokenResponse = serde_json::from_slice(&raw).map_err(|_| {
            format!("the answer of {url} is not a token response (JSON with access_token)")
        })?;
        if t.access_token.is_empty() {
            return Err(format!(
                "the token endpoint {url} gave an empty access_token"
            ));
        }
        let scheme = match t.token_type.as_deref() {
            None | Some("") => "Bearer".to_string(),
            Some(s) if s.eq_ignore_ascii_case("bearer") => "Bearer".to_string(),
            Some(s) => s.to_string(),
        };
        let header = sensitive(&format!("{scheme} {}", t.access_token))
            .map_err(|e| format!("the token from {url} cannot go in a header: {e}"))?;
        let now = Instant::now();
        let life = t
            .expires_in
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| Duration::from_secs_f64(s.min(10.0 * 365.0 * 86400.0)));
        let (refresh_at, expires_at) = match life {
            None => (None, None),
            Some(life) => {
                let early = p.expiry_buffer.min(life / 2);
                (Some(now + (life - early)), Some(now + life))
            }
        };
        Ok(Token {
            header,
            refresh_at,
            expires_at,
        })
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[async_trait]
impl ClientAuth for TokenSource {
    async fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        let mut cached = self.token.lock().await;
        let now = Instant::now();
        if let Some(t) = cached.as_ref() {
            if t.refresh_at.is_none_or(|at| now < at) {
                return Ok(vec![(axum::http::header::AUTHORIZATION, t.header.clone())]);
            }
        }
        match self.fetch().await {
            Ok(t) => {
                self.fetched.increment(1);
                let h = t.header.clone();
                *cached = Some(t);
                Ok(vec![(axum::http::header::AUTHORIZATION, h)])
            }
            Err(e) => {
                self.failed.increment(1);
                let e = format!("{}: {e}", self.id);
                match cached.as_ref() {
                    Some(t) if t.expires_at.is_none_or(|at| now < at) => {
                        tracing::warn!(extension = %self.id, error = %e, "oauth2client: cannot refresh the token; using the current one until it expires");
                        Ok(vec![(axum::http::header::AUTHORIZATION, t.header.clone())])
                    }
                    _ => {
                        tracing::warn!(extension = %self.id, error = %e, "oauth2client: no token; the export will be retried");
                        Err(e)
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Component for OAuth2Client {}

impl Extension for OAuth2Client {
    fn client_auth(&self) -> Option<Arc<dyn ClientAuth>> {
        Some(self.inner.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use serde_json::{json, Value};
    use std::sync::Mutex;

    fn id() -> ComponentId {
        ComponentId::parse("oauth2client/x").unwrap()
    }

    fn cfg(v: serde_json::Value) -> OAuth2Config {
        vigil_core::config::decode(ComponentKind::Extension, &id(), &v).unwrap()
    }

    /// What the test token endpoint saw and how it answers.
    #[derive(Default)]
    struct Endpoint {
        /// `(authorization, form body)` of each call.
        calls: Mutex<Vec<(String, String)>>,
        /// `(status, expires_in)` to answer with; the token is `t<call number>`.
        answer: Mutex<(u16, u64)>,
    }

    /// A token endpoint speaking RFC 6749's client-credentials answer, on a free port.
    async fn endpoint() -> (Arc<Endpoint>, String) {
        let state = Arc::new(Endpoint::default());
        *state.answer.lock().unwrap() = (200, 3600);
        let app = axum::Router::new()
            .route(
                "/token",
                axum::routing::post(
                    |State(s): State<Arc<Endpoint>>, headers: HeaderMap, body: String| async move {
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let n = {
                            let mut calls = s.calls.lock().unwrap();
                            calls.push((auth, body));
                            calls.len()
                        };
                        let (status, expires) = *s.answer.lock().unwrap();
                        let body = if status == 200 {
                            json!({"access_token": format!("t{n}"), "token_type": "bearer", "expires_in": expires})
                        } else {
                            json!({"error": "invalid_client", "error_description": "bad secret"})
                        };
                        (StatusCode::from_u16(status).unwrap(), axum::Json(body))
                    },
                ),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (state, format!("http://{addr}/token"))
    }

    async fn token(auth: &TokenSource) -> Result<String, String> {
        auth.headers()
            .await
            .map(|h| h[0].1.to_str().unwrap().to_string())
    }

    #[tokio::test]
    async fn the_token_is_fetched_cached_and_refreshed_before_it_expires() {
        let (ep, url) = endpoint().await;
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, "s3cret\n").unwrap();
        let auth = token_source(
            &id(),
            &cfg(json!({
                "client_id": "agent", "client_secret_file": secret_file, "token_url": url,
                "scopes": ["api.read", "api.write"], "endpoint_params": {"audience": "backend"},
            })),
        )
        .unwrap();
        assert_eq!(token(&auth).await.unwrap(), "Bearer t1");
        // Cached: a second request makes no call.
        assert_eq!(token(&auth).await.unwrap(), "Bearer t1");
        {
            let calls = ep.calls.lock().unwrap();
            assert_eq!(calls.len(), 1);
            // "agent:s3cret" in HTTP Basic.
            assert_eq!(calls[0].0, "Basic YWdlbnQ6czNjcmV0");
            assert_eq!(
                calls[0].1,
                "grant_type=client_credentials&scope=api.read+api.write&audience=backend"
            );
        }
        // Its refresh time is its life less the expiry buffer: 3600 s - 300 s.
        let refresh_in = auth
            .token
            .lock()
            .await
            .as_ref()
            .unwrap()
            .refresh_at
            .unwrap()
            - Instant::now();
        assert!(refresh_in > Duration::from_secs(3200) && refresh_in <= Duration::from_secs(3300));
        // Once that time has come (moved here rather than waited for), the next use fetches anew.
        auth.token.lock().await.as_mut().unwrap().refresh_at = Some(Instant::now());
        assert_eq!(token(&auth).await.unwrap(), "Bearer t2");
        assert_eq!(ep.calls.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_failed_fetch_keeps_a_valid_token_and_otherwise_fails_retryably() {
        let (ep, url) = endpoint().await;
        let auth = token_source(
            &id(),
            &cfg(json!({"client_id": "agent", "client_secret": "s3cret", "token_url": url})),
        )
        .unwrap();
        ep.answer.lock().unwrap().0 = 401;
        let e = token(&auth).await.unwrap_err();
        assert!(
            e.contains("oauth2client/x")
                && e.contains("401")
                && e.contains("invalid_client")
                && !e.contains("s3cret"),
            "{e}"
        );
        ep.answer.lock().unwrap().0 = 200;
        assert_eq!(token(&auth).await.unwrap(), "Bearer t2");
        // Due for refresh but not expired: the endpoint fails, the current token is still sent.
        ep.answer.lock().unwrap().0 = 500;
        auth.token.lock().await.as_mut().unwrap().refresh_at = Some(Instant::now());
        assert_eq!(token(&auth).await.unwrap(), "Bearer t2");
        // Expired: no token, a retryable error.
        auth.token.lock().await.as_mut().unwrap().expires_at = Some(Instant::now());
        assert!(token(&auth).await.is_err());
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_an_error_that_names_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let auth = token_source(
            &id(),
            &cfg(json!({"client_id": "a", "client_secret": "s3cret", "token_url": format!("http://{addr}/token")})),
        )
        .unwrap();
        let e = token(&auth).await.unwrap_err();
        assert!(
            e.contains("cannot reach the token endpoint") && !e.contains("s3cret"),
            "{e}"
        );
    }

    /// The real `otlphttp` exporter with this extension: while the token endpoint fails, an export
    /// fails retryably (the data stays with the exporter's retry and queue); once it answers, the
    /// export carries the token.
    #[tokio::test]
    async fn an_exporter_fails_retryably_without_a_token_and_sends_it_once_there() {
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        use vigil_core::{Host, Telemetry};
        let (ep, url) = endpoint().await;
        ep.answer.lock().unwrap().0 = 503;
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = seen.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: HeaderMap| {
                let log = log.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    log.lock().unwrap().push(auth);
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let ext = factory()
            .create(
                &id(),
                &json!({"client_id": "agent", "client_secret": "s3cret", "token_url": url}),
            )
            .unwrap();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let host = Host::new([(id(), ext)].into_iter().collect(), tx);
        let exporter = vigil_exporters::otlphttp::factory()
            .create(
                &ComponentId::parse("otlphttp/b").unwrap(),
                &json!({
                    "endpoint": format!("http://{addr}"),
                    "auth": {"authenticator": "oauth2client/x"},
                    "sending_queue": {"enabled": false},
                    "retry_on_failure": {"enabled": false},
                }),
            )
            .unwrap();
        exporter.start(&host).await.unwrap();
        let spans = || {
            Telemetry::Traces(vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        name: "s".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }])
        };
        let e = exporter.consume(spans()).await.unwrap_err();
        assert!(e.is_retryable(), "{e:?}");
        assert!(
            seen.lock().unwrap().is_empty(),
            "nothing went out without a token"
        );
        ep.answer.lock().unwrap().0 = 200;
        exporter.consume(spans()).await.unwrap();
        assert_eq!(*seen.lock().unwrap(), vec!["Bearer t2".to_string()]);
    }

    #[test]
    fn bad_configs_name_the_key() {
        let check = |v: Value| factory().validate(&id(), &v).unwrap_err().to_string();
        let base =
            || json!({"client_id": "a", "client_secret": "s", "token_url": "https://idp/token"});
        assert!(factory().validate(&id(), &base()).is_ok());
        let mut v = base();
        v.as_object_mut().unwrap().remove("client_id");
        assert!(check(v).contains("oauth2client/x::client_id: set client_id or client_id_file"));
        let mut v = base();
        v["client_secret_file"] = json!("/nonexistent/secret");
        assert!(check(v).contains("client_secret_file: cannot read"));
        let mut v = base();
        v["token_url"] = json!("ftp://x");
        assert!(check(v).contains("token_url"));
        let mut v = base();
        v["timeout"] = json!("0s");
        assert!(check(v).contains("timeout"));
        let mut v = base();
        v["endpoint_params"] = json!({"grant_type": "password"});
        assert!(check(v).contains("endpoint_params::grant_type"));
        let mut v = base();
        v["endpoint_params"] = json!({"resource": ["a", "b"]});
        assert!(factory().validate(&id(), &v).is_ok());
    }
}
