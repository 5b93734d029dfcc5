//! `bearertokenauth`: a client authenticator that puts a bearer token on every request of the
//! exporters that name it (`auth: {authenticator: bearertokenauth/x}` on `otlp` and `otlphttp`), with
//! otelcol's keys: `token`, `filename` (read again whenever the file changes, so a rotated token is
//! picked up without a restart), `scheme` and `header`. Errors and logs never contain the token.
//!
//! As a server authenticator (`auth: {authenticator: bearertokenauth/x}` on the `otlp` receiver) it
//! accepts a request whose header carries `scheme token` for one of `tokens` or, without `tokens`,
//! for the client token (`token` or the current content of `filename`). Comparison is in constant
//! time. The principal (what a receiver's `auth::roles` match on) is `token` for the client token,
//! `tokens[i]` for an entry of `tokens`, or the entry's `principal` when it is written
//! `{token, principal}`.

use crate::extensions::auth_util::{ct_eq, redacted};
use async_trait::async_trait;
use axum::http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use vigil_core::component::Principal;
use vigil_core::factory::{DynExtensionFactory, ExtensionFactory, FactoryBase};
use vigil_core::{
    ClientAuth, Component, ComponentId, ComponentKind, ConfigError, Extension, ServerAuth,
    Settings, Stability,
};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BearerTokenConfig {
    #[serde(default, serialize_with = "redacted")]
    token: Option<String>,
    /// Takes precedence over `token`, as in otelcol.
    #[serde(default)]
    filename: Option<PathBuf>,
    #[serde(default = "default_scheme")]
    scheme: String,
    #[serde(default = "default_header")]
    header: String,
    /// otelcol's server-side token list: any of them is accepted by receivers. An entry may also
    /// be `{token, principal}` (vigil's): the name a receiver's `auth::roles` match on.
    #[serde(default)]
    tokens: Option<Vec<TokenEntry>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
enum TokenEntry {
    Bare(#[serde(serialize_with = "redacted")] String),
    Named {
        #[serde(serialize_with = "redacted")]
        token: String,
        principal: String,
    },
}

fn default_scheme() -> String {
    "Bearer".into()
}
fn default_header() -> String {
    "Authorization".into()
}

fn config_error(id: &ComponentId, key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Extension, id, key, msg)
}

/// `scheme token`, or the bare token when `scheme` is empty, as a sensitive header value (kept out
/// of debug output). The error does not repeat the token.
fn header_value(scheme: &str, token: &str) -> Result<HeaderValue, String> {
    let text = if scheme.is_empty() {
        token.to_string()
    } else {
        format!("{scheme} {token}")
    };
    let mut value = HeaderValue::from_str(&text).map_err(|_| {
        "the scheme and token must be printable ASCII without line breaks".to_string()
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Reads a token file; surrounding white space (the newline editors and `echo` add) is not part of
/// the token.
fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("the token file {} is empty", path.display()));
    }
    Ok(token.to_string())
}

impl BearerTokenConfig {
    fn check(&self, id: &ComponentId) -> Result<(), ConfigError> {
        let cfg = self;
        HeaderName::from_bytes(cfg.header.as_bytes()).map_err(|_| {
            config_error(
                id,
                "header",
                format!("{:?} is not a valid header name", cfg.header),
            )
        })?;
        match (&cfg.filename, &cfg.token) {
            (Some(path), _) => {
                let token = read_token(path).map_err(|e| config_error(id, "filename", e))?;
                header_value(&cfg.scheme, &token).map_err(|e| config_error(id, "filename", e))?;
            }
            (None, Some(token)) => {
                header_value(&cfg.scheme, token).map_err(|e| config_error(id, "token", e))?;
            }
            (None, None) => {
                // Only a server-side config (otelcol's `tokens`) may go without a client token.
                if cfg.tokens.is_none() {
                    return Err(config_error(
                        id,
                        "token",
                        "set token or filename (the token to send)",
                    ));
                }
            }
        }
        Ok(())
    }
}

struct Factory;

/// The `bearertokenauth` extension factory, for the registry.
pub fn factory() -> Arc<dyn DynExtensionFactory> {
    vigil_core::factory::extension(Factory)
}

impl FactoryBase for Factory {
    type Config = BearerTokenConfig;

    fn type_name(&self) -> &'static str {
        "bearertokenauth"
    }

    /// A token (or file) or a server `tokens` list has no default.
    fn default_config(&self) -> Option<BearerTokenConfig> {
        None
    }

    fn validate(&self, id: &ComponentId, cfg: &BearerTokenConfig) -> Result<(), ConfigError> {
        cfg.check(id)
    }
}

impl ExtensionFactory for Factory {
    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn create(
        &self,
        set: Settings,
        cfg: BearerTokenConfig,
    ) -> Result<Arc<dyn Extension>, ConfigError> {
        let id = &set.id;
        let header = HeaderName::from_bytes(cfg.header.as_bytes())
            .map_err(|_| config_error(id, "header", "not a valid header name"))?;
        let source = match (cfg.filename, cfg.token) {
            (Some(path), _) => Source::File {
                path,
                cached: Mutex::new(None),
            },
            (None, Some(token)) => Source::Inline(
                header_value(&cfg.scheme, &token).map_err(|e| config_error(id, "token", e))?,
            ),
            (None, None) => Source::None,
        };
        let tokens = cfg
            .tokens
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let (token, name) = match t {
                    TokenEntry::Bare(t) => (t, format!("tokens[{i}]")),
                    TokenEntry::Named { token, principal } => (token, principal.clone()),
                };
                let value = header_value(&cfg.scheme, token)
                    .map_err(|e| config_error(id, &format!("tokens[{i}]"), e))?;
                Ok((value, name))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(Arc::new(BearerToken {
            inner: Arc::new(Credential {
                id: id.clone(),
                header,
                scheme: cfg.scheme,
                source,
                tokens,
            }),
        }))
    }
}

struct BearerToken {
    inner: Arc<Credential>,
}

struct Credential {
    id: ComponentId,
    header: HeaderName,
    scheme: String,
    source: Source,
    /// The header values a receiver accepts, from `tokens`, each with its principal's name;
    /// empty means the client token, whose principal is `token`.
    tokens: Vec<(HeaderValue, String)>,
}

enum Source {
    Inline(HeaderValue),
    /// The file's modification time and length when it was last read, and the header it gave.
    File {
        path: PathBuf,
        cached: Mutex<Option<(SystemTime, u64, HeaderValue)>>,
    },
    /// A server-only config: nothing to send.
    None,
}

impl Credential {
    fn value(&self) -> Result<HeaderValue, String> {
        match &self.source {
            Source::Inline(v) => Ok(v.clone()),
            Source::None => Err(format!("{} has no token or filename for clients", self.id)),
            Source::File { path, cached } => {
                // A stat per request is cheap next to the request, and catches a rotated token at
                // once, including one written in place.
                let meta = std::fs::metadata(path).map_err(|e| {
                    format!(
                        "{}: cannot read the token file {}: {e}",
                        self.id,
                        path.display()
                    )
                })?;
                let stamp = (
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    meta.len(),
                );
                let mut cached = cached.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((at, len, v)) = cached.as_ref() {
                    if (*at, *len) == stamp {
                        return Ok(v.clone());
                    }
                }
                let token = read_token(path).map_err(|e| format!("{}: {e}", self.id))?;
                let value = header_value(&self.scheme, &token)
                    .map_err(|e| format!("{}: {}: {e}", self.id, path.display()))?;
                if cached.is_some() {
                    tracing::info!(extension = %self.id, file = %path.display(), "bearertokenauth: the token file changed; using the new token");
                }
                *cached = Some((stamp.0, stamp.1, value.clone()));
                Ok(value)
            }
        }
    }
}

#[async_trait]
impl ClientAuth for Credential {
    async fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        Ok(vec![(self.header.clone(), self.value()?)])
    }
}

#[async_trait]
impl ServerAuth for Credential {
    async fn authenticate(&self, headers: &axum::http::HeaderMap) -> Result<Principal, String> {
        let Some(got) = headers.get(&self.header) else {
            return Err(format!("no {} header", self.header));
        };
        let accepted = if self.tokens.is_empty() {
            vec![(self.value()?, "token".to_string())]
        } else {
            self.tokens.clone()
        };
        // Every candidate is compared in full, so the time taken tells nothing about the token.
        let found = accepted.iter().fold(None, |found, (v, name)| {
            if ct_eq(v.as_bytes(), got.as_bytes()) {
                Some(name)
            } else {
                found
            }
        });
        match found {
            Some(name) => Ok(Principal::named(name.clone())),
            None => Err(format!("the {} header holds no valid token", self.header)),
        }
    }
}

#[async_trait]
impl Component for BearerToken {}

impl Extension for BearerToken {
    fn client_auth(&self) -> Option<Arc<dyn ClientAuth>> {
        Some(self.inner.clone())
    }

    fn server_auth(&self) -> Option<Arc<dyn ServerAuth>> {
        Some(self.inner.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn id() -> ComponentId {
        ComponentId::parse("bearertokenauth/x").unwrap()
    }

    fn headers(config: Value) -> Vec<(String, String)> {
        let ext = factory().create(&id(), &config).unwrap();
        let auth = ext.client_auth().unwrap();
        futures::executor::block_on(auth.headers())
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect()
    }

    #[test]
    fn token_scheme_and_header() {
        assert_eq!(
            headers(json!({"token": "s3cret"})),
            vec![("authorization".into(), "Bearer s3cret".into())]
        );
        assert_eq!(
            headers(json!({"token": "s3cret", "scheme": "", "header": "X-Api-Key"})),
            vec![("x-api-key".into(), "s3cret".into())]
        );
    }

    #[test]
    fn the_token_file_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let ext = factory()
            .create(&id(), &json!({"filename": path, "token": "ignored"}))
            .unwrap();
        let auth = ext.client_auth().unwrap();
        let value = |a: &Arc<dyn ClientAuth>| {
            futures::executor::block_on(a.headers()).unwrap()[0]
                .1
                .to_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(value(&auth), "Bearer first");
        // A different length changes the stamp even within the file system's time granularity.
        std::fs::write(&path, "second-token\n").unwrap();
        assert_eq!(value(&auth), "Bearer second-token");
        std::fs::remove_file(&path).unwrap();
        let e = futures::executor::block_on(auth.headers()).unwrap_err();
        assert!(e.contains("cannot read the token file"), "{e}");
    }

    #[test]
    fn errors_name_the_key_and_never_the_token() {
        let check = |v: Value| factory().validate(&id(), &v).unwrap_err().to_string();
        let e = check(json!({"token": "bad\ntoken-value"}));
        assert!(
            e.contains("bearertokenauth/x::token") && !e.contains("token-value"),
            "{e}"
        );
        assert!(check(json!({})).contains("set token or filename"));
        assert!(check(json!({"token": "t", "header": "bad header"})).contains("header"));
        let e = check(json!({"filename": "/nonexistent/token"}));
        assert!(e.contains("::filename: cannot read the token file"), "{e}");
        assert!(check(json!({"token": "t", "unknown": 1})).contains("unknown"));
        assert!(factory()
            .validate(&id(), &json!({"tokens": ["a", "b"]}))
            .is_ok());
        // Debug output of the header value hides the secret.
        let v = header_value("Bearer", "s3cret").unwrap();
        assert!(!format!("{v:?}").contains("s3cret"));
    }

    /// The real `otlphttp` exporter, started with this extension as its authenticator, against an
    /// HTTP backend that records the header it got; the token file is rotated between two sends.
    #[tokio::test]
    async fn an_exporter_sends_the_token_and_picks_up_a_rotated_one() {
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        use vigil_core::{Host, Telemetry};
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = seen.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let log = log.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    log.lock().unwrap().push(auth);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let auth = factory().create(&id(), &json!({"filename": path})).unwrap();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let host = Host::new([(id(), auth)].into_iter().collect(), tx);
        let exporter_id = ComponentId::parse("otlphttp/b").unwrap();
        let exporter = vigil_exporters::otlphttp::factory()
            .create(
                &exporter_id,
                &json!({
                    "endpoint": format!("http://{addr}"),
                    "auth": {"authenticator": "bearertokenauth/x"},
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
                        name: "checkout".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }])
        };
        exporter.consume(spans()).await.unwrap();
        std::fs::write(&path, "second-token\n").unwrap();
        exporter.consume(spans()).await.unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                "Bearer first".to_string(),
                "Bearer second-token".to_string()
            ]
        );
    }

    #[test]
    fn as_a_server_it_accepts_the_token_or_one_of_tokens() {
        let check = |config: Value, header: Option<&str>| {
            let ext = factory().create(&id(), &config).unwrap();
            let auth = ext.server_auth().unwrap();
            let mut h = axum::http::HeaderMap::new();
            if let Some(v) = header {
                h.insert("authorization", HeaderValue::from_str(v).unwrap());
            }
            futures::executor::block_on(auth.authenticate(&h))
        };
        assert_eq!(
            check(json!({"token": "s3cret"}), Some("Bearer s3cret")),
            Ok(Principal::named("token"))
        );
        let e = check(json!({"token": "s3cret"}), Some("Bearer wrong")).unwrap_err();
        assert!(!e.contains("s3cret") && !e.contains("wrong"), "{e}");
        assert!(check(json!({"token": "s3cret"}), None).is_err());
        let tokens = json!({"tokens": ["a", "b", {"token": "c2", "principal": "ci"}]});
        assert_eq!(
            check(tokens.clone(), Some("Bearer b")),
            Ok(Principal::named("tokens[1]"))
        );
        assert_eq!(
            check(tokens.clone(), Some("Bearer c2")),
            Ok(Principal::named("ci"))
        );
        assert!(check(tokens, Some("Bearer c")).is_err());
    }
}
