//! `sumologic`: registers the collector with Sumo Logic's collector API and is the `sumologic`
//! exporter's authenticator, as otelcol-contrib's extension. At start it looks for credentials
//! stored by an earlier run under `collector_credentials_directory` (a file named by a SHA-256 of
//! collector name, installation token and API base URL) and checks them with a heartbeat; when
//! there are none, or the API answers 401, it registers (`POST /api/v1/collector/register` with
//! `Authorization: Bearer <installation_token>`, following a 301 to another deployment's base URL)
//! and stores what it got. Then it sends a heartbeat (`POST /api/v1/collector/heartbeat`, Basic
//! with the collector credentials) every `heartbeat_interval`; a 401 there re-registers, and every
//! exporter request after that carries the new credentials. Registration and the start-up check
//! retry with `backoff` (exponential, `initial_interval` 500ms, `max_interval` 1m,
//! `max_elapsed_time` 15m, as cenkalti/backoff's defaults; 4xx other than 429 is final).
//!
//! The API base URL (after redirects) is published to the host ([`SUMO_APIS`]) for the exporter.
//!
//! Differences, said in the README: the credentials file is JSON with mode 0600 in a 0700
//! directory, not otelcol's AES-GCM envelope (whose key derives from the same hash as the file
//! name, so it hides nothing from who can read the directory), so a file written by otelcol is not
//! read (the collector re-registers once, under the same name with `clobber`); the collector
//! metadata update (behind otelcol's alpha feature gate `extension.sumologic.updateCollectorMetadata`,
//! off by default) is not built, so `collector_environment` and `discover_collector_tags` are read
//! and have no effect. Counted: `vigil_sumologic_registrations{extension,result}` and
//! `vigil_sumologic_heartbeats{extension,result}`.

use crate::extensions::auth_util::redacted;
use async_trait::async_trait;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use vigil_core::config::{duration, TlsClientConfig};
use vigil_core::factory::{DynExtensionFactory, ExtensionFactory, FactoryBase};
use vigil_core::{
    lock, ClientAuth, Component, ComponentId, ComponentKind, ConfigError, Extension, Host,
    Settings, Stability,
};
use vigil_exporters::sumologic::{SumoApis, SUMO_APIS};

pub const DEFAULT_API_BASE_URL: &str = "https://open-collectors.sumologic.com";
const REGISTER_PATH: &str = "/api/v1/collector/register";
const HEARTBEAT_PATH: &str = "/api/v1/collector/heartbeat";
const STICKY_COOKIE: &str = "AWSALB";
/// The most redirects to another deployment one registration follows.
const MAX_REDIRECTS: usize = 5;
/// The largest API answer read; registration answers are a few hundred bytes.
const MAX_ANSWER: usize = 64 * 1024;

fn default_api_base_url() -> String {
    DEFAULT_API_BASE_URL.into()
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(15)
}
fn yes() -> bool {
    true
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// `backoff`, with cenkalti/backoff's defaults.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct BackoffConfig {
    #[serde(with = "duration")]
    initial_interval: Duration,
    #[serde(with = "duration")]
    max_interval: Duration,
    /// 0: never give up.
    #[serde(with = "duration")]
    max_elapsed_time: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial_interval: Duration::from_millis(500),
            max_interval: Duration::from_secs(60),
            max_elapsed_time: Duration::from_secs(15 * 60),
        }
    }
}

/// The `sumologic` extension config, with otelcol-contrib's keys and defaults.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SumologicConfig {
    #[serde(default, serialize_with = "redacted")]
    installation_token: String,
    #[serde(default)]
    collector_name: String,
    #[serde(default)]
    collector_environment: String,
    #[serde(default)]
    collector_description: String,
    #[serde(default)]
    collector_category: String,
    #[serde(default)]
    collector_fields: serde_json::Map<String, serde_json::Value>,
    #[serde(default = "yes")]
    discover_collector_tags: bool,
    #[serde(default = "default_api_base_url")]
    api_base_url: String,
    #[serde(default = "default_heartbeat", with = "duration")]
    heartbeat_interval: Duration,
    /// Empty: `$HOME/.sumologic-otel-collector`.
    #[serde(default)]
    collector_credentials_directory: String,
    #[serde(default)]
    clobber: bool,
    #[serde(default)]
    force_registration: bool,
    #[serde(default)]
    ephemeral: bool,
    #[serde(default)]
    time_zone: String,
    #[serde(default)]
    backoff: BackoffConfig,
    #[serde(default)]
    sticky_session_enabled: bool,
    // confighttp's client keys, which the API calls use. `endpoint` is read and unused, as
    // upstream (the API is `api_base_url`).
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    tls: TlsClientConfig,
    #[serde(default = "default_timeout", with = "duration")]
    timeout: Duration,
    #[serde(default)]
    proxy_url: Option<String>,
}

fn config_error(id: &ComponentId, key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Extension, id, key, msg)
}

impl SumologicConfig {
    fn directory(&self) -> Option<PathBuf> {
        if !self.collector_credentials_directory.is_empty() {
            return Some(PathBuf::from(&self.collector_credentials_directory));
        }
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".sumologic-otel-collector"))
    }

    fn base_url(&self) -> String {
        self.api_base_url.trim_end_matches('/').to_string()
    }

    fn check(&self, id: &ComponentId) -> Result<(), ConfigError> {
        if self.installation_token.is_empty() {
            return Err(config_error(
                id,
                "installation_token",
                "access credentials not provided: need installation_token",
            ));
        }
        let url = reqwest::Url::parse(&self.api_base_url).map_err(|e| {
            config_error(
                id,
                "api_base_url",
                format!("{:?} is not a URL: {e}", self.api_base_url),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err(config_error(
                id,
                "api_base_url",
                format!(
                    "{:?}: expected an http:// or https:// URL",
                    self.api_base_url
                ),
            ));
        }
        if self.directory().is_none() {
            return Err(config_error(
                id,
                "collector_credentials_directory",
                "HOME is not set: set collector_credentials_directory",
            ));
        }
        if self.backoff.initial_interval.is_zero() {
            return Err(config_error(
                id,
                "backoff::initial_interval",
                "must be greater than 0",
            ));
        }
        vigil_exporters::helper::http::check_client(id, &self.headers, &self.tls)
    }
}

/// What the register API answers, and what the credentials file keeps of it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
struct Registration {
    #[serde(rename = "collectorCredentialID", alias = "collectorCredentialId")]
    credential_id: String,
    #[serde(rename = "collectorCredentialKey")]
    credential_key: String,
    #[serde(rename = "collectorId", default)]
    collector_id: String,
    #[serde(rename = "collectorName", default)]
    collector_name: String,
}

/// The credentials file.
#[derive(Debug, Clone, Deserialize, Serialize)]
struct Stored {
    #[serde(rename = "collectorName")]
    collector_name: String,
    #[serde(rename = "collectorCredentials")]
    credentials: Registration,
    #[serde(rename = "apiBaseUrl", default)]
    api_base_url: String,
}

/// Why an API call failed: a 401 (the credentials are no longer valid), a refusal not worth
/// retrying, or anything else (retried with backoff).
#[derive(Debug)]
enum ApiError {
    Unauthorized,
    Permanent(String),
    Retry(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Unauthorized => f.write_str("unauthorized (HTTP 401)"),
            ApiError::Permanent(m) | ApiError::Retry(m) => f.write_str(m),
        }
    }
}

struct Counters {
    registered: metrics::Counter,
    registration_failed: metrics::Counter,
    heartbeat_ok: metrics::Counter,
    heartbeat_unauthorized: metrics::Counter,
    heartbeat_failed: metrics::Counter,
}

impl Counters {
    fn new(id: &ComponentId) -> Counters {
        let c = |name: &'static str, result: &'static str| metrics::counter!(name, "extension" => id.to_string(), "result" => result);
        Counters {
            registered: c("vigil_sumologic_registrations", "ok"),
            registration_failed: c("vigil_sumologic_registrations", "failed"),
            heartbeat_ok: c("vigil_sumologic_heartbeats", "ok"),
            heartbeat_unauthorized: c("vigil_sumologic_heartbeats", "unauthorized"),
            heartbeat_failed: c("vigil_sumologic_heartbeats", "failed"),
        }
    }
}

/// The state the heartbeat task and the exporters' requests share.
struct Inner {
    id: ComponentId,
    cfg: SumologicConfig,
    client: reqwest::Client,
    directory: PathBuf,
    /// What the file name is hashed from (otelcol's `createHashKey`).
    hash_key: String,
    base_url: Mutex<String>,
    collector_name: Mutex<String>,
    creds: Mutex<Option<Registration>>,
    sticky: Mutex<Option<String>>,
    apis: OnceLock<Arc<SumoApis>>,
    counters: Counters,
}

impl Inner {
    fn base(&self) -> String {
        lock(&self.base_url).clone()
    }

    fn set_base(&self, url: &str) {
        let url = url.trim_end_matches('/').to_string();
        if let Some(apis) = self.apis.get() {
            apis.set(&self.id, &url);
        }
        *lock(&self.base_url) = url;
    }

    fn file(&self) -> PathBuf {
        let digest = sha2::Sha256::digest(self.hash_key.as_bytes());
        let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.directory.join(name)
    }

    fn basic(&self) -> Result<String, String> {
        let creds = lock(&self.creds);
        let c = creds
            .as_ref()
            .filter(|c| !c.credential_id.is_empty() && !c.credential_key.is_empty())
            .ok_or_else(|| format!("{}: collector credentials are not set", self.id))?;
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", c.credential_id, c.credential_key));
        Ok(format!("Basic {token}"))
    }

    fn with_cookie(&self, b: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if !self.cfg.sticky_session_enabled {
            return b;
        }
        match lock(&self.sticky).clone() {
            Some(v) => b.header("Cookie", format!("{STICKY_COOKIE}={v}")),
            None => b,
        }
    }

    fn remember_cookie(&self, resp: &reqwest::Response) {
        if !self.cfg.sticky_session_enabled {
            return;
        }
        for v in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            let first = v.to_str().unwrap_or("").split(';').next().unwrap_or("");
            if let Some(value) = first.trim().strip_prefix("AWSALB=") {
                *lock(&self.sticky) = Some(value.to_string());
            }
        }
    }

    /// Sends one heartbeat with the current credentials.
    async fn heartbeat(&self) -> Result<(), ApiError> {
        let url = format!("{}{HEARTBEAT_PATH}", self.base());
        let auth = self.basic().map_err(ApiError::Permanent)?;
        let b = self
            .client
            .post(&url)
            .header("Authorization", auth)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        let resp = self
            .with_cookie(b)
            .send()
            .await
            .map_err(|e| ApiError::Retry(format!("heartbeat to {url}: {}", chain(&e))))?;
        self.remember_cookie(&resp);
        let status = resp.status();
        if status.as_u16() == 401 {
            return Err(ApiError::Unauthorized);
        }
        if !status.is_success() {
            let body = read_limited(resp).await;
            return Err(ApiError::Retry(format!(
                "collector heartbeat request failed: API error (status code: {}): {}",
                status.as_u16(),
                String::from_utf8_lossy(&body)
            )));
        }
        Ok(())
    }

    /// One registration call, following redirects to another deployment.
    async fn register_once(&self) -> Result<Stored, ApiError> {
        let name = lock(&self.collector_name).clone();
        let mut body = serde_json::Map::new();
        body.insert("collectorName".into(), name.clone().into());
        let c = &self.cfg;
        let mut opt = |k: &str, v: &str| {
            if !v.is_empty() {
                body.insert(k.into(), v.into());
            }
        };
        opt("description", &c.collector_description);
        opt("hostname", &hostname());
        opt("category", &c.collector_category);
        opt("timeZone", &c.time_zone);
        if c.ephemeral {
            body.insert("ephemeral".into(), true.into());
        }
        if c.clobber {
            body.insert("clobber".into(), true.into());
        }
        if !c.collector_fields.is_empty() {
            body.insert("fields".into(), c.collector_fields.clone().into());
        }
        for _ in 0..=MAX_REDIRECTS {
            let url = format!("{}{REGISTER_PATH}", self.base());
            let resp = self
                .client
                .post(&url)
                .header(
                    "Authorization",
                    format!("Bearer {}", self.cfg.installation_token),
                )
                .header("Accept", "application/json")
                .json(&body)
                .send()
                .await
                .map_err(|e| {
                    ApiError::Retry(format!("failed to register the collector: {}", chain(&e)))
                })?;
            let status = resp.status().as_u16();
            if status == 301 {
                let to = resp
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                if to.is_empty() {
                    return Err(ApiError::Retry("a 301 without Location".into()));
                }
                tracing::info!(url = %to, "redirected to a different deployment");
                self.set_base(&to);
                continue;
            }
            let answer = read_limited(resp).await;
            if !(200..300).contains(&status) {
                let msg = format!(
                    "failed to register the collector, got HTTP status code: {status}: {}",
                    String::from_utf8_lossy(&answer)
                );
                return Err(if (400..500).contains(&status) && status != 429 {
                    ApiError::Permanent(msg)
                } else {
                    ApiError::Retry(msg)
                });
            }
            let reg: Registration = serde_json::from_slice(&answer).map_err(|e| {
                ApiError::Retry(format!("cannot read the register API's answer: {e}"))
            })?;
            if !reg.collector_name.is_empty() && reg.collector_name != name {
                tracing::warn!(
                    registered_name = %reg.collector_name,
                    "collector name already in use, registered modified name"
                );
            }
            return Ok(Stored {
                collector_name: name,
                credentials: reg,
                api_base_url: self.base(),
            });
        }
        Err(ApiError::Retry(format!(
            "more than {MAX_REDIRECTS} redirects while registering"
        )))
    }

    /// Runs `call` until it succeeds, gives up (a final error, a 401 or `max_elapsed_time`), or
    /// the extension stops.
    async fn with_backoff<T, F, Fut>(
        &self,
        stop: &tokio_util::sync::CancellationToken,
        mut call: F,
    ) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let b = &self.cfg.backoff;
        let begin = Instant::now();
        let mut delay = b.initial_interval;
        loop {
            match call().await {
                Err(ApiError::Retry(msg)) => {
                    let over = !b.max_elapsed_time.is_zero()
                        && begin.elapsed() + delay > b.max_elapsed_time;
                    if over {
                        return Err(ApiError::Retry(msg));
                    }
                    tracing::info!(error = %msg, retry_in = ?delay, "Sumo Logic API call failed");
                    tokio::select! {
                        _ = stop.cancelled() => return Err(ApiError::Retry(format!("{msg} (stopping)"))),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = delay
                        .mul_f64(1.5)
                        .min(b.max_interval.max(b.initial_interval));
                }
                other => return other,
            }
        }
    }

    /// Registers (with backoff), stores the credentials and uses them from now on.
    async fn register(&self, stop: &tokio_util::sync::CancellationToken) -> Result<(), ApiError> {
        let got = self.with_backoff(stop, || self.register_once()).await;
        let stored = match got {
            Ok(s) => s,
            Err(e) => {
                self.counters.registration_failed.increment(1);
                return Err(e);
            }
        };
        self.counters.registered.increment(1);
        if let Err(e) = store(&self.directory, &self.file(), &stored) {
            tracing::error!(error = %e, "unable to store collector credentials, they will be used now but won't be re-used on next run");
        }
        *lock(&self.collector_name) = stored.collector_name.clone();
        tracing::info!(collector_id = %stored.credentials.collector_id, "collector registration finished successfully");
        *lock(&self.creds) = Some(stored.credentials);
        Ok(())
    }

    /// Stored credentials when they still work; registration otherwise.
    async fn credentials(
        &self,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<(), ApiError> {
        if !self.cfg.force_registration {
            if let Some(s) = load(&self.file()) {
                *lock(&self.collector_name) = s.collector_name.clone();
                if !s.api_base_url.is_empty() {
                    self.set_base(&s.api_base_url);
                }
                *lock(&self.creds) = Some(s.credentials);
                match self.with_backoff(stop, || self.heartbeat()).await {
                    Ok(()) => {
                        self.counters.heartbeat_ok.increment(1);
                        tracing::info!("found stored credentials, skipping registration");
                        return Ok(());
                    }
                    Err(ApiError::Unauthorized) => {
                        self.counters.heartbeat_unauthorized.increment(1);
                        tracing::info!("locally stored credentials invalid, re-registering");
                        let _ = std::fs::remove_file(self.file());
                    }
                    Err(e) => {
                        self.counters.heartbeat_failed.increment(1);
                        return Err(e);
                    }
                }
            }
        }
        self.register(stop).await
    }
}

fn chain(e: &reqwest::Error) -> String {
    vigil_exporters::helper::http::error_chain(e)
}

/// An answer's body, at most [`MAX_ANSWER`] bytes of it.
async fn read_limited(mut resp: reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_ANSWER.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= MAX_ANSWER {
            break;
        }
    }
    out
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Creates the directory with mode 0700, or sets that mode, as otelcol's `ensureDir`.
fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::metadata(dir) {
        Ok(m) => {
            if m.permissions().mode() & 0o777 != 0o700 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            }
            Ok(())
        }
        Err(_) => std::fs::DirBuilder::new().mode(0o700).create(dir),
    }
}

fn load(path: &Path) -> Option<Stored> {
    let text = std::fs::read(path).ok()?;
    match serde_json::from_slice(&text) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable collector credentials file; registering again");
            None
        }
    }
}

fn store(dir: &Path, path: &Path, s: &Stored) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    ensure_dir(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec(s).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

struct Sumologic {
    inner: Arc<Inner>,
    tasks: vigil_core::Tasks,
}

struct Auth(Arc<Inner>);

#[async_trait]
impl ClientAuth for Auth {
    async fn headers(
        &self,
    ) -> Result<Vec<(axum::http::HeaderName, axum::http::HeaderValue)>, String> {
        let mut v = axum::http::HeaderValue::from_str(&self.0.basic()?)
            .map_err(|_| format!("{}: the credentials are not a header value", self.0.id))?;
        v.set_sensitive(true);
        Ok(vec![(axum::http::header::AUTHORIZATION, v)])
    }
}

#[async_trait]
impl Component for Sumologic {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        let inner = &self.inner;
        let apis = host.service(&SUMO_APIS).map_err(|e| anyhow::anyhow!(e))?;
        apis.set(&inner.id, &inner.base());
        let _ = inner.apis.set(apis);
        if !inner.cfg.force_registration {
            ensure_dir(&inner.directory).map_err(|e| {
                anyhow::anyhow!(
                    "extensions::{}::collector_credentials_directory: {}: {e}",
                    inner.id,
                    inner.directory.display()
                )
            })?;
        }
        let stop = self.tasks.stopping();
        inner.credentials(&stop).await.map_err(|e| {
            anyhow::anyhow!(
                "extensions::{}: collector registration failed: {e}",
                inner.id
            )
        })?;
        let (inner, period) = (Arc::clone(inner), inner.cfg.heartbeat_interval);
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(period) => {}
                }
                match inner.heartbeat().await {
                    Ok(()) => inner.counters.heartbeat_ok.increment(1),
                    Err(ApiError::Unauthorized) => {
                        inner.counters.heartbeat_unauthorized.increment(1);
                        tracing::warn!("heartbeat request unauthorized, re-registering the collector");
                        if let Err(e) = inner.register(&stop).await {
                            tracing::error!(error = %e, "heartbeat error, cannot register the collector");
                        }
                    }
                    Err(e) => {
                        inner.counters.heartbeat_failed.increment(1);
                        tracing::error!(error = %e, "heartbeat error");
                    }
                }
            }
        });
        Ok(())
    }

    fn tasks(&self) -> Option<&vigil_core::Tasks> {
        Some(&self.tasks)
    }
}

impl Extension for Sumologic {
    fn client_auth(&self) -> Option<Arc<dyn ClientAuth>> {
        Some(Arc::new(Auth(Arc::clone(&self.inner))))
    }
}

struct Factory;

/// The `sumologic` extension factory, for the registry.
pub fn factory() -> Arc<dyn DynExtensionFactory> {
    vigil_core::factory::extension(Factory)
}

impl FactoryBase for Factory {
    type Config = SumologicConfig;

    fn type_name(&self) -> &'static str {
        "sumologic"
    }

    /// An installation token has no default.
    fn default_config(&self) -> Option<SumologicConfig> {
        None
    }

    fn validate(&self, id: &ComponentId, cfg: &SumologicConfig) -> Result<(), ConfigError> {
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
        mut cfg: SumologicConfig,
    ) -> Result<Arc<dyn Extension>, ConfigError> {
        let id = &set.id;
        cfg.check(id)?;
        let directory = cfg.directory().ok_or_else(|| {
            config_error(
                id,
                "collector_credentials_directory",
                "HOME is not set: set collector_credentials_directory",
            )
        })?;
        if cfg.heartbeat_interval.is_zero() {
            cfg.heartbeat_interval = default_heartbeat();
        }
        let transport = vigil_exporters::helper::http::ClientTransport {
            proxy_url: cfg.proxy_url.clone(),
            ..Default::default()
        };
        // A 301 names another deployment, which the registration follows itself (and remembers):
        // the client must not follow it.
        let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if !cfg.timeout.is_zero() {
            builder = builder.timeout(cfg.timeout);
        }
        let client = vigil_exporters::helper::http::http_client_from(
            builder,
            id,
            &cfg.headers,
            &cfg.tls,
            &transport,
        )?;
        // Without a name: the name stored by an earlier run, else the host name (upstream).
        let hash_key = format!(
            "{}{}{}",
            cfg.collector_name,
            cfg.installation_token,
            cfg.base_url()
        );
        let name = if cfg.collector_name.is_empty() {
            let digest = sha2::Sha256::digest(hash_key.as_bytes());
            let file: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            load(&directory.join(file))
                .map(|s| s.collector_name)
                .unwrap_or_else(hostname)
        } else {
            cfg.collector_name.clone()
        };
        Ok(Arc::new(Sumologic {
            inner: Arc::new(Inner {
                id: id.clone(),
                counters: Counters::new(id),
                client,
                directory,
                hash_key,
                base_url: Mutex::new(cfg.base_url()),
                collector_name: Mutex::new(name),
                creds: Mutex::new(None),
                sticky: Mutex::new(None),
                apis: OnceLock::new(),
                cfg,
            }),
            tasks: set.tasks,
        }))
    }
}

#[cfg(test)]
mod tests {
    //! Against a double of Sumo Logic's collector API (the real one cannot run here) that answers
    //! the register and heartbeat calls in their documented shapes.
    use super::*;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::IntoResponse;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Api {
        /// Base URL a register call on the first deployment is sent to with a 301.
        redirect_to: Mutex<Option<String>>,
        registrations: AtomicUsize,
        heartbeats: AtomicUsize,
        /// The credential key the API accepts now.
        key: Mutex<String>,
        bodies: Mutex<Vec<serde_json::Value>>,
    }

    async fn handle(
        State(api): State<Arc<Api>>,
        uri: Uri,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if uri.path().starts_with("/first/") {
            // Another deployment's API: registration is sent on with a 301.
            let to = lock(&api.redirect_to).clone().unwrap_or_default();
            return (StatusCode::MOVED_PERMANENTLY, [("location", to)]).into_response();
        }
        match uri.path() {
            REGISTER_PATH => {
                if auth != "Bearer tok" {
                    return (StatusCode::UNAUTHORIZED, "{\"id\":\"X\",\"errors\":[]}")
                        .into_response();
                }
                let n = api.registrations.fetch_add(1, Ordering::SeqCst) + 1;
                lock(&api.bodies).push(serde_json::from_slice(&body).unwrap());
                let key = format!("key-{n}");
                *lock(&api.key) = key.clone();
                axum::Json(serde_json::json!({
                    "collectorCredentialID": "cred-id",
                    "collectorCredentialKey": key,
                    "collectorId": format!("0000{n}"),
                    "collectorName": "box",
                }))
                .into_response()
            }
            HEARTBEAT_PATH => {
                api.heartbeats.fetch_add(1, Ordering::SeqCst);
                let want = base64::engine::general_purpose::STANDARD
                    .encode(format!("cred-id:{}", lock(&api.key)));
                if auth == format!("Basic {want}") {
                    StatusCode::NO_CONTENT.into_response()
                } else {
                    StatusCode::UNAUTHORIZED.into_response()
                }
            }
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }

    async fn api() -> (Arc<Api>, String) {
        let api = Arc::new(Api::default());
        let app = axum::Router::new()
            .fallback(axum::routing::any(handle))
            .with_state(api.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        (api, url)
    }

    fn ext(url: &str, dir: &Path, extra: serde_json::Value) -> Arc<dyn Extension> {
        let id = ComponentId::parse("sumologic").unwrap();
        let mut cfg = serde_json::json!({
            "installation_token": "tok",
            "collector_name": "box",
            "api_base_url": url,
            "collector_credentials_directory": dir,
            "collector_fields": {"team": "a"},
            "clobber": true,
            "backoff": {"initial_interval": "10ms", "max_elapsed_time": "1s"},
        });
        if let (Some(c), serde_json::Value::Object(e)) = (cfg.as_object_mut(), extra) {
            c.extend(e);
        }
        factory().create(&id, &cfg).unwrap()
    }

    async fn auth_header(e: &Arc<dyn Extension>) -> String {
        let h = e.client_auth().unwrap().headers().await.unwrap();
        h[0].1.to_str().unwrap().to_string()
    }

    #[tokio::test]
    async fn registers_through_a_redirect_stores_and_reuses_the_credentials() {
        let (api, url) = api().await;
        // The configured deployment (`/first`) sends the collector to another one.
        *lock(&api.redirect_to) = Some(format!("{url}/"));
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("creds");
        let host = Host::detached();
        let e2 = ext(&format!("{url}/first"), &creds, serde_json::json!({}));
        e2.start(&host).await.unwrap();
        assert_eq!(api.registrations.load(Ordering::SeqCst), 1);
        let body = lock(&api.bodies)[0].clone();
        assert_eq!(body["collectorName"], "box");
        assert_eq!(body["clobber"], true);
        assert_eq!(body["fields"]["team"], "a");
        assert!(body.get("ephemeral").is_none());
        let want = base64::engine::general_purpose::STANDARD.encode("cred-id:key-1");
        assert_eq!(auth_header(&e2).await, format!("Basic {want}"));
        assert_eq!(
            host.service(&SUMO_APIS)
                .unwrap()
                .get(&ComponentId::parse("sumologic").unwrap()),
            Some(url.clone())
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let files: Vec<_> = std::fs::read_dir(&creds).unwrap().collect();
        assert_eq!(files.len(), 1);
        e2.shutdown().await.unwrap();

        // A restart finds the stored credentials, checks them with a heartbeat, and does not
        // register again.
        let e3 = ext(&format!("{url}/first"), &creds, serde_json::json!({}));
        e3.start(&Host::detached()).await.unwrap();
        assert_eq!(api.registrations.load(Ordering::SeqCst), 1);
        assert!(api.heartbeats.load(Ordering::SeqCst) >= 1);
        assert_eq!(auth_header(&e3).await, format!("Basic {want}"));
        e3.shutdown().await.unwrap();

        // Credentials the API no longer accepts (the collector was deleted in Sumo): the check
        // gets a 401 and the extension registers again.
        *lock(&api.key) = "rotated".into();
        let e4 = ext(&format!("{url}/first"), &creds, serde_json::json!({}));
        e4.start(&Host::detached()).await.unwrap();
        assert_eq!(api.registrations.load(Ordering::SeqCst), 2);
        let want = base64::engine::general_purpose::STANDARD.encode("cred-id:key-2");
        assert_eq!(auth_header(&e4).await, format!("Basic {want}"));
        e4.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_heartbeat_401_re_registers_and_a_refused_token_is_final() {
        let (api, url) = api().await;
        let dir = tempfile::tempdir().unwrap();
        let e = ext(
            &url,
            dir.path(),
            serde_json::json!({"heartbeat_interval": "20ms", "force_registration": true}),
        );
        e.start(&Host::detached()).await.unwrap();
        assert_eq!(api.registrations.load(Ordering::SeqCst), 1);
        *lock(&api.key) = "revoked".into();
        // The next heartbeats see 401 and register again; wait for it without a fixed sleep.
        for _ in 0..500 {
            if api.registrations.load(Ordering::SeqCst) >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(api.registrations.load(Ordering::SeqCst) >= 2);
        e.shutdown().await.unwrap();

        let bad = ext(
            &url,
            dir.path(),
            serde_json::json!({"installation_token": "wrong", "force_registration": true}),
        );
        let err = bad.start(&Host::detached()).await.unwrap_err().to_string();
        assert!(err.contains("HTTP status code: 401"), "{err}");
    }

    #[test]
    fn config_keys_and_defaults_follow_otelcol() {
        let id = ComponentId::parse("sumologic").unwrap();
        let f = factory();
        let e = f
            .validate(&id, &serde_json::json!({}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("installation_token: access credentials not provided"),
            "{e}"
        );
        let cfg: SumologicConfig = vigil_core::config::decode(
            ComponentKind::Extension,
            &id,
            &serde_json::json!({"installation_token": "t"}),
        )
        .unwrap();
        assert_eq!(cfg.api_base_url, DEFAULT_API_BASE_URL);
        assert_eq!(cfg.heartbeat_interval, Duration::from_secs(15));
        assert!(cfg.discover_collector_tags);
        assert_eq!(cfg.backoff.initial_interval, Duration::from_millis(500));
        assert_eq!(cfg.backoff.max_interval, Duration::from_secs(60));
        assert_eq!(cfg.backoff.max_elapsed_time, Duration::from_secs(900));
        let e = f
            .validate(
                &id,
                &serde_json::json!({"installation_token": "t", "access_id": "x"}),
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("access_id"), "{e}");
    }
}
