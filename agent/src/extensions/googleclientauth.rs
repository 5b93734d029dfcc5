//! `googleclientauth`: Google's client authenticator (from `opentelemetry-operations-go`, shipped in
//! otelcol-contrib) for exporters that send to Google Cloud (`auth: {authenticator:
//! googleclientauth}` on `otlp` or `otlphttp`, e.g. to `telemetry.googleapis.com`). Every request
//! carries `Authorization: Bearer <token>`, `x-goog-user-project: <quota_project>` (when there is
//! one) and `x-goog-project-id: <project>`.
//!
//! Credentials are Google's Application Default Credentials, looked up at start in the order the
//! Google libraries use:
//! 1. the JSON file `GOOGLE_APPLICATION_CREDENTIALS` names: a `service_account` key (a JWT signed
//!    with its RS256 key is exchanged at its `token_uri`, RFC 7523) or an `authorized_user` (its
//!    refresh token is exchanged, RFC 6749 section 6);
//! 2. gcloud's file `application_default_credentials.json` (under `$CLOUDSDK_CONFIG`, else
//!    `~/.config/gcloud`);
//! 3. the GCE metadata server (`$GCE_METADATA_HOST`, else 169.254.169.254), which answers with
//!    `Metadata-Flavor: Google`: tokens from `/computeMetadata/v1/instance/service-accounts/default/token`.
//!
//! As upstream, start fails when none is found (off Google Cloud without a key file) or when no
//! project is known (`project`, else `$GOOGLE_CLOUD_PROJECT`, else the credentials' project); the
//! exporters that name it then do not start either. `token_type: id_token` asks for a Google-signed
//! ID token for `audience` instead (service accounts and the metadata server; user credentials
//! cannot mint one, as upstream). External-account (workload identity federation) and impersonated
//! credentials are not built: start fails naming the type.
//!
//! Tokens are fetched on first use and cached until less than a fifth of their life (at most 5
//! minutes) remains; one fetch runs at a time. A failed fetch keeps a token that has not expired,
//! and otherwise fails the export retryably. Fetches are counted
//! (`vigil_googleclientauth_token_fetches{extension,result}`); errors never hold a key or a token.
//!
//! The tests run against local doubles of Google's token endpoint and of the GCE metadata server
//! (neither can run here); they answer as Google documents.

use crate::extensions::auth_util::sensitive;
use async_trait::async_trait;
use axum::http::{HeaderName, HeaderValue};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vigil_core::factory::{DynExtensionFactory, ExtensionFactory, FactoryBase};
use vigil_core::{
    ClientAuth, Component, ComponentId, ComponentKind, ConfigError, Extension, Host, Settings,
    Stability,
};

/// The largest token or metadata answer read.
const MAX_RESPONSE: usize = 64 << 10;
/// Where Google's libraries send token requests when a credential file names none.
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The GCE metadata server's link-local address.
const METADATA_IP: &str = "169.254.169.254";
/// How long the start waits for the metadata server before concluding it is not on GCE.
const METADATA_PROBE: Duration = Duration::from_secs(3);
/// One token fetch never takes longer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a service-account assertion (and a token without `expires_in`) is valid.
const ASSERTION_LIFE: u64 = 3600;

fn default_scopes() -> Vec<String> {
    [
        "https://www.googleapis.com/auth/cloud-platform",
        "https://www.googleapis.com/auth/logging.write",
        "https://www.googleapis.com/auth/monitoring.write",
        "https://www.googleapis.com/auth/trace.append",
    ]
    .map(String::from)
    .to_vec()
}

/// `token_type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TokenType {
    #[default]
    AccessToken,
    IdToken,
}

/// The `googleclientauth` config, with upstream's keys and defaults.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GoogleClientAuthConfig {
    /// The project telemetry goes to; default: `$GOOGLE_CLOUD_PROJECT`, then the credentials'.
    #[serde(default)]
    project: String,
    /// The project billed for quota (`x-goog-user-project`); default: the credential file's
    /// `quota_project_id`.
    #[serde(default)]
    quota_project: String,
    #[serde(default)]
    token_type: TokenType,
    /// The `aud` of an ID token; required with `token_type: id_token`.
    #[serde(default)]
    audience: String,
    #[serde(default = "default_scopes")]
    scopes: Vec<String>,
}

fn config_error(id: &ComponentId, key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Extension, id, key, msg)
}

impl GoogleClientAuthConfig {
    fn check(&self, id: &ComponentId) -> Result<(), ConfigError> {
        if self.token_type == TokenType::IdToken && self.audience.is_empty() {
            return Err(config_error(
                id,
                "audience",
                "must be specified with token_type: id_token",
            ));
        }
        for (key, v) in [
            ("project", &self.project),
            ("quota_project", &self.quota_project),
        ] {
            HeaderValue::from_str(v).map_err(|_| {
                config_error(id, key, "must be printable ASCII without line breaks")
            })?;
        }
        Ok(())
    }
}

struct Factory;

/// The `googleclientauth` extension factory, for the registry.
pub fn factory() -> Arc<dyn DynExtensionFactory> {
    vigil_core::factory::extension(Factory)
}

impl FactoryBase for Factory {
    type Config = GoogleClientAuthConfig;

    fn type_name(&self) -> &'static str {
        "googleclientauth"
    }

    fn validate(&self, id: &ComponentId, cfg: &GoogleClientAuthConfig) -> Result<(), ConfigError> {
        cfg.check(id)
    }
}

impl ExtensionFactory for Factory {
    fn stability(&self) -> Stability {
        Stability::Alpha
    }

    fn create(
        &self,
        set: Settings,
        cfg: GoogleClientAuthConfig,
    ) -> Result<Arc<dyn Extension>, ConfigError> {
        cfg.check(&set.id)?;
        Ok(Arc::new(GoogleClientAuth {
            inner: Arc::new(Inner::new(&set.id, cfg, Discovery::from_env())),
        }))
    }
}

/// Where Application Default Credentials are looked for; the process environment in production.
#[derive(Debug, Clone, Default)]
pub(crate) struct Discovery {
    /// `$GOOGLE_APPLICATION_CREDENTIALS`.
    credentials_file: Option<PathBuf>,
    /// gcloud's `application_default_credentials.json`.
    well_known_file: Option<PathBuf>,
    /// `host[:port]` of the metadata server: `$GCE_METADATA_HOST`, else the link-local address.
    metadata_host: String,
    /// `$GOOGLE_CLOUD_PROJECT`.
    project: Option<String>,
}

impl Discovery {
    fn from_env() -> Discovery {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let gcloud_dir = var("CLOUDSDK_CONFIG")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config/gcloud")));
        Discovery {
            credentials_file: var("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from),
            well_known_file: gcloud_dir.map(|d| d.join("application_default_credentials.json")),
            metadata_host: var("GCE_METADATA_HOST").unwrap_or_else(|| METADATA_IP.to_string()),
            project: var("GOOGLE_CLOUD_PROJECT"),
        }
    }
}

/// The fields of a credential file this extension reads (Google's `credentials.json` formats).
#[derive(Deserialize)]
struct CredentialFile {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    quota_project_id: Option<String>,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    private_key: Option<String>,
    #[serde(default)]
    client_email: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// How tokens are had, found at start.
enum Source {
    ServiceAccount {
        email: String,
        key_id: Option<String>,
        key: Arc<dyn rustls::sign::SigningKey>,
        token_uri: String,
    },
    User {
        client_id: String,
        client_secret: String,
        refresh_token: String,
        token_uri: String,
    },
    /// The metadata server's base URL (`http://host/computeMetadata/v1`).
    Metadata(String),
}

/// What start found: the token source and the headers every request gets besides the token.
struct Resolved {
    source: Source,
    extra: Vec<(HeaderName, HeaderValue)>,
}

struct Token {
    header: HeaderValue,
    refresh_at: Instant,
    expires_at: Instant,
}

pub(crate) struct Inner {
    id: ComponentId,
    cfg: GoogleClientAuthConfig,
    discovery: Discovery,
    client: reqwest::Client,
    resolved: OnceLock<Resolved>,
    /// The cached token; the lock is held across a fetch, so one fetch runs at a time.
    token: tokio::sync::Mutex<Option<Token>>,
    fetched: metrics::Counter,
    failed: metrics::Counter,
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

/// Reads a response body of at most [`MAX_RESPONSE`] bytes.
async fn read_body(mut resp: reqwest::Response, what: &str) -> Result<Vec<u8>, String> {
    let mut raw = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("cannot read the answer of {what}: {}", error_chain(&e)))?
    {
        if raw.len() + chunk.len() > MAX_RESPONSE {
            return Err(format!(
                "the answer of {what} is larger than {MAX_RESPONSE} bytes"
            ));
        }
        raw.extend_from_slice(&chunk);
    }
    Ok(raw)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The `exp` claim of a JWT, read without checking its signature (Google signed it; we only need
/// to know when to fetch the next one).
fn jwt_expiry(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&raw)
        .ok()?
        .get("exp")?
        .as_u64()
}

/// The RSA key of a service-account file (PKCS#8 PEM, as Google issues them), as rustls' signer.
/// rustls (already here for TLS, on aws-lc-rs) reads PKCS#8; jsonwebtoken would need its
/// `use_pem` feature and two more crates to do the same.
fn signing_key(pem: &str) -> Result<Arc<dyn rustls::sign::SigningKey>, String> {
    use rustls::pki_types::{pem::PemObject, PrivateKeyDer};
    let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("is not a private key in PEM: {e}"))?;
    let key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
        .map_err(|e| format!("cannot be used: {e}"))?;
    if key.algorithm() != rustls::SignatureAlgorithm::RSA {
        return Err("is not an RSA key (Google signs service-account grants with RS256)".into());
    }
    Ok(key)
}

/// A compact JWS with RS256 (RSASSA-PKCS1-v1_5 with SHA-256, RFC 7518 section 3.3): the two
/// base64url JSON parts and their signature. Assembled here because the key is rustls'.
fn sign_jwt(
    key: &dyn rustls::sign::SigningKey,
    kid: Option<&str>,
    claims: &impl Serialize,
) -> Result<String, String> {
    let b64 = |raw: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = serde_json::Value::from(kid);
    }
    let claims =
        serde_json::to_vec(claims).map_err(|e| format!("cannot encode the claims: {e}"))?;
    let signing_input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(&claims));
    let signer = key
        .choose_scheme(&[rustls::SignatureScheme::RSA_PKCS1_SHA256])
        .ok_or("the key cannot sign RS256")?;
    let sig = signer
        .sign(signing_input.as_bytes())
        .map_err(|e| format!("cannot sign the token request: {e}"))?;
    Ok(format!("{signing_input}.{}", b64(&sig)))
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_audience: Option<&'a str>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    expires_in: Option<f64>,
}

#[derive(Deserialize, Default)]
struct ErrorAnswer {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

impl Inner {
    fn new(id: &ComponentId, cfg: GoogleClientAuthConfig, discovery: Discovery) -> Inner {
        let counter = |result: &'static str| metrics::counter!("vigil_googleclientauth_token_fetches", "extension" => id.to_string(), "result" => result);
        Inner {
            id: id.clone(),
            cfg,
            discovery,
            // Building a client without custom roots cannot fail in practice; if it does, requests
            // through the default one still carry the timeout below.
            client: reqwest::Client::builder()
                .timeout(FETCH_TIMEOUT)
                .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default(),
            resolved: OnceLock::new(),
            token: tokio::sync::Mutex::new(None),
            fetched: counter("ok"),
            failed: counter("failed"),
        }
    }

    /// Finds the credentials and the project, as upstream's start does.
    async fn resolve(&self) -> Result<Resolved, String> {
        let d = &self.discovery;
        let file = match (&d.credentials_file, &d.well_known_file) {
            (Some(p), _) => Some(std::fs::read(p).map(|raw| (p.clone(), raw)).map_err(|e| {
                format!(
                    "GOOGLE_APPLICATION_CREDENTIALS names {}, which cannot be read: {e}",
                    p.display()
                )
            })?),
            (None, Some(p)) => std::fs::read(p).ok().map(|raw| (p.clone(), raw)),
            (None, None) => None,
        };
        let (source, file_project, file_quota) = match file {
            Some((path, raw)) => self.read_file(&path, &raw)?,
            None => {
                let base = format!("http://{}/computeMetadata/v1", d.metadata_host);
                let project = self.metadata_project(&base).await.map_err(|why| {
                    format!(
                        "no Google application default credentials: GOOGLE_APPLICATION_CREDENTIALS \
                         is not set, {} does not exist, and {why} (not on Google Cloud?); see \
                         https://cloud.google.com/docs/authentication/external/set-up-adc",
                        d.well_known_file.as_ref().map_or_else(
                            || "gcloud's application_default_credentials.json".to_string(),
                            |p| p.display().to_string()
                        )
                    )
                })?;
                (Source::Metadata(base), Some(project), None)
            }
        };
        let pick = |configured: &str, fallbacks: [Option<String>; 2]| {
            Some(configured.to_string())
                .filter(|s| !s.is_empty())
                .or_else(|| fallbacks.into_iter().flatten().find(|s| !s.is_empty()))
        };
        let project = pick(&self.cfg.project, [d.project.clone(), file_project]).ok_or(
            "no project set in config or found with application default credentials".to_string(),
        )?;
        let quota = pick(&self.cfg.quota_project, [file_quota, None]);
        let header = |v: &str, what: &str| {
            HeaderValue::from_str(v).map_err(|_| format!("the {what} {v:?} cannot go in a header"))
        };
        let mut extra = Vec::new();
        if let Some(q) = &quota {
            extra.push((
                HeaderName::from_static("x-goog-user-project"),
                header(q, "quota project")?,
            ));
        }
        extra.push((
            HeaderName::from_static("x-goog-project-id"),
            header(&project, "project")?,
        ));
        Ok(Resolved { source, extra })
    }

    /// A credential file's source, project and quota project.
    #[allow(clippy::type_complexity)]
    fn read_file(
        &self,
        path: &std::path::Path,
        raw: &[u8],
    ) -> Result<(Source, Option<String>, Option<String>), String> {
        let shown = path.display();
        let f: CredentialFile = serde_json::from_slice(raw)
            .map_err(|e| format!("{shown} is not a Google credentials JSON file: {e}"))?;
        let missing = |field: &str| format!("{shown}: the {} credentials lack {field}", f.kind);
        let source = match f.kind.as_str() {
            "service_account" => {
                let pem = f
                    .private_key
                    .as_deref()
                    .ok_or_else(|| missing("private_key"))?;
                let key = signing_key(pem).map_err(|e| format!("{shown}: private_key {e}"))?;
                Source::ServiceAccount {
                    email: f
                        .client_email
                        .clone()
                        .ok_or_else(|| missing("client_email"))?,
                    key_id: f.private_key_id.clone(),
                    key,
                    token_uri: f
                        .token_uri
                        .clone()
                        .unwrap_or_else(|| GOOGLE_TOKEN_URI.into()),
                }
            }
            "authorized_user" => {
                if self.cfg.token_type == TokenType::IdToken {
                    return Err(format!(
                        "{shown}: user credentials cannot mint ID tokens (token_type: id_token); \
                         use a service account key or the metadata server"
                    ));
                }
                Source::User {
                    client_id: f.client_id.clone().ok_or_else(|| missing("client_id"))?,
                    client_secret: f
                        .client_secret
                        .clone()
                        .ok_or_else(|| missing("client_secret"))?,
                    refresh_token: f
                        .refresh_token
                        .clone()
                        .ok_or_else(|| missing("refresh_token"))?,
                    token_uri: f
                        .token_uri
                        .clone()
                        .unwrap_or_else(|| GOOGLE_TOKEN_URI.into()),
                }
            }
            other => {
                return Err(format!(
                    "{shown}: credentials of type {other:?} are not supported (vigil reads \
                     service_account and authorized_user files, and the GCE metadata server)"
                ))
            }
        };
        Ok((source, f.project_id, f.quota_project_id))
    }

    /// The project id the metadata server gives; an error says why it is not reachable.
    async fn metadata_project(&self, base: &str) -> Result<String, String> {
        let url = format!("{base}/project/project-id");
        let resp = self
            .client
            .get(&url)
            .header("Metadata-Flavor", "Google")
            .timeout(METADATA_PROBE)
            .send()
            .await
            .map_err(|e| format!("no metadata server answered at {url}: {}", error_chain(&e)))?;
        if resp
            .headers()
            .get("metadata-flavor")
            .is_none_or(|v| v != "Google")
        {
            return Err(format!(
                "{url} answered without Metadata-Flavor: Google (not a GCE metadata server)"
            ));
        }
        let status = resp.status();
        let body = read_body(resp, &url).await?;
        if !status.is_success() {
            return Err(format!("the metadata server answered {status} for {url}"));
        }
        Ok(String::from_utf8_lossy(&body).trim().to_string())
    }

    /// A new token: the header value and its life.
    async fn fetch(&self, source: &Source) -> Result<(String, Duration), String> {
        match source {
            Source::ServiceAccount {
                email,
                key_id,
                key,
                token_uri,
            } => {
                let iat = unix_now();
                let id_token = self.cfg.token_type == TokenType::IdToken;
                let claims = Assertion {
                    iss: email,
                    aud: token_uri,
                    iat,
                    exp: iat + ASSERTION_LIFE,
                    scope: (!id_token).then(|| self.cfg.scopes.join(" ")),
                    target_audience: id_token.then_some(self.cfg.audience.as_str()),
                };
                let assertion = sign_jwt(key.as_ref(), key_id.as_deref(), &claims)?;
                self.exchange(
                    token_uri,
                    &[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                        ("assertion", &assertion),
                    ],
                )
                .await
            }
            Source::User {
                client_id,
                client_secret,
                refresh_token,
                token_uri,
            } => {
                self.exchange(
                    token_uri,
                    &[
                        ("grant_type", "refresh_token"),
                        ("client_id", client_id),
                        ("client_secret", client_secret),
                        ("refresh_token", refresh_token),
                    ],
                )
                .await
            }
            Source::Metadata(base) => self.metadata_token(base).await,
        }
    }

    /// Posts a token request to `uri` and reads Google's answer.
    async fn exchange(
        &self,
        uri: &str,
        form: &[(&str, &str)],
    ) -> Result<(String, Duration), String> {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let resp = self
            .client
            .post(uri)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| format!("cannot reach the token endpoint {uri}: {}", error_chain(&e)))?;
        let status = resp.status();
        let raw = read_body(resp, uri).await?;
        if !status.is_success() {
            // Only the error fields are repeated: the rest of a body may echo credentials.
            let e: ErrorAnswer = serde_json::from_slice(&raw).unwrap_or_default();
            let clip = |s: String| s.chars().take(200).collect::<String>();
            let mut msg = format!("the token endpoint {uri} answered {status}");
            if let Some(code) = e.error {
                msg.push_str(&format!(": {}", clip(code)));
            }
            if let Some(d) = e.error_description {
                msg.push_str(&format!(" ({})", clip(d)));
            }
            return Err(msg);
        }
        self.token_from(&raw, uri)
    }

    fn token_from(&self, raw: &[u8], from: &str) -> Result<(String, Duration), String> {
        let t: TokenAnswer = serde_json::from_slice(raw)
            .map_err(|_| format!("the answer of {from} is not a token response"))?;
        let token = match self.cfg.token_type {
            TokenType::AccessToken => t.access_token,
            TokenType::IdToken => t.id_token,
        }
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("the answer of {from} holds no {:?}", self.cfg.token_type))?;
        let life = match self.cfg.token_type {
            TokenType::AccessToken => t
                .expires_in
                .filter(|s| s.is_finite() && *s > 0.0)
                .map_or(ASSERTION_LIFE, |s| s.min(86400.0) as u64),
            TokenType::IdToken => {
                jwt_expiry(&token).map_or(ASSERTION_LIFE, |exp| exp.saturating_sub(unix_now()))
            }
        };
        Ok((token, Duration::from_secs(life)))
    }

    async fn metadata_token(&self, base: &str) -> Result<(String, Duration), String> {
        let url = match self.cfg.token_type {
            TokenType::AccessToken => {
                let mut u = format!("{base}/instance/service-accounts/default/token");
                if !self.cfg.scopes.is_empty() {
                    let q: String = form_urlencoded::Serializer::new(String::new())
                        .append_pair("scopes", &self.cfg.scopes.join(","))
                        .finish();
                    u = format!("{u}?{q}");
                }
                u
            }
            TokenType::IdToken => {
                let q: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("audience", &self.cfg.audience)
                    .append_pair("format", "full")
                    .finish();
                format!("{base}/instance/service-accounts/default/identity?{q}")
            }
        };
        let resp = self
            .client
            .get(&url)
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .map_err(|e| {
                format!(
                    "cannot reach the metadata server {url}: {}",
                    error_chain(&e)
                )
            })?;
        let status = resp.status();
        let raw = read_body(resp, &url).await?;
        if !status.is_success() {
            return Err(format!("the metadata server answered {status} for {url}"));
        }
        match self.cfg.token_type {
            TokenType::AccessToken => self.token_from(&raw, &url),
            // The identity endpoint answers with the bare JWT.
            TokenType::IdToken => {
                let token = String::from_utf8_lossy(&raw).trim().to_string();
                let life =
                    jwt_expiry(&token).map_or(ASSERTION_LIFE, |exp| exp.saturating_sub(unix_now()));
                Ok((token, Duration::from_secs(life)))
            }
        }
    }
}

#[async_trait]
impl ClientAuth for Inner {
    async fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        let Some(resolved) = self.resolved.get() else {
            return Err(format!("{}: not started", self.id));
        };
        let with_extra = |h: HeaderValue| {
            let mut out = vec![(axum::http::header::AUTHORIZATION, h)];
            out.extend(resolved.extra.iter().cloned());
            out
        };
        let mut cached = self.token.lock().await;
        let now = Instant::now();
        if let Some(t) = cached.as_ref().filter(|t| now < t.refresh_at) {
            return Ok(with_extra(t.header.clone()));
        }
        let fetched = self
            .fetch(&resolved.source)
            .await
            .and_then(|(token, life)| {
                let header = sensitive(&format!("Bearer {token}"))
                    .map_err(|e| format!("the token cannot go in a header: {e}"))?;
                Ok((header, life))
            });
        match fetched {
            Ok((header, life)) => {
                self.fetched.increment(1);
                let early = (life / 5).min(Duration::from_secs(300));
                *cached = Some(Token {
                    header: header.clone(),
                    refresh_at: now + (life - early),
                    expires_at: now + life,
                });
                Ok(with_extra(header))
            }
            Err(e) => {
                self.failed.increment(1);
                let e = format!("{}: {e}", self.id);
                match cached.as_ref().filter(|t| now < t.expires_at) {
                    Some(t) => {
                        tracing::warn!(extension = %self.id, error = %e, "googleclientauth: cannot refresh the token; using the current one until it expires");
                        Ok(with_extra(t.header.clone()))
                    }
                    None => {
                        tracing::warn!(extension = %self.id, error = %e, "googleclientauth: no token; the export will be retried");
                        Err(e)
                    }
                }
            }
        }
    }
}

pub(crate) struct GoogleClientAuth {
    inner: Arc<Inner>,
}

#[async_trait]
impl Component for GoogleClientAuth {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        if self.inner.resolved.get().is_none() {
            let r = self
                .inner
                .resolve()
                .await
                .map_err(|e| anyhow::anyhow!("extensions::{}: {e}", self.inner.id))?;
            let _ = self.inner.resolved.set(r);
        }
        Ok(())
    }
}

impl Extension for GoogleClientAuth {
    fn client_auth(&self) -> Option<Arc<dyn ClientAuth>> {
        Some(self.inner.clone())
    }
}

#[cfg(test)]
#[path = "googleclientauth_tests.rs"]
mod tests;
