//! `oidc`: a server authenticator that accepts an OpenID Connect ID token (a JWT) as otelcol's
//! `oidcauthextension` does. At start it reads the issuer's discovery document
//! (`<issuer_url>/.well-known/openid-configuration`), checks that it names the same issuer, and
//! fetches the key set at its `jwks_uri`. Each request's `attribute` header (`authorization` by
//! default) must hold `Bearer <jwt>` signed by one of those keys with an asymmetric algorithm (RS*,
//! PS*, ES256/ES384, EdDSA; never HS* or `none`), with `iss` equal to `issuer_url`, `aud` holding
//! `audience`, and `exp` in the future (60 s leeway, as go-oidc allows none but clocks drift).
//!
//! The key set is cached. It is fetched again when it is older than `jwks_refresh_interval`
//! (vigil's, default 5m), and when a token names a key id (`kid`) it does not hold, at most once per
//! [`UNKNOWN_KID_REFETCH`], so that a key rotated in at the issuer is picked up at once while a
//! stream of made-up `kid`s cannot turn the agent into a load on the issuer. A failed fetch keeps
//! the keys it had. Fetches time out after [`FETCH_TIMEOUT`] and read at most [`MAX_DOCUMENT`]
//! bytes; at most [`MAX_KEYS`] keys are kept.
//!
//! The principal is the `username_claim` (default `sub`); its groups are the `groups_claim`, a
//! string or a list of strings.

use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderName};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_core::component::Principal;
use vigil_core::config::duration;
use vigil_core::factory::{DynExtensionFactory, ExtensionFactory, FactoryBase};
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, Extension, Host, ServerAuth, Settings,
    Stability,
};

/// The least time between two fetches of the key set caused by an unknown `kid`.
pub const UNKNOWN_KID_REFETCH: Duration = Duration::from_secs(10);
/// How long one fetch of the discovery document or the key set may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest discovery document or key set read.
pub const MAX_DOCUMENT: usize = 1 << 20;
/// The most keys kept from one key set.
pub const MAX_KEYS: usize = 100;
/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 60;

fn default_username_claim() -> String {
    "sub".into()
}
fn default_attribute() -> String {
    "authorization".into()
}
fn default_refresh() -> Duration {
    Duration::from_secs(300)
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OidcConfig {
    #[serde(default)]
    issuer_url: String,
    /// A PEM CA added to the system roots for the issuer's TLS, as otelcol does.
    #[serde(default)]
    issuer_ca_path: Option<PathBuf>,
    #[serde(default)]
    audience: String,
    #[serde(default = "default_username_claim")]
    username_claim: String,
    #[serde(default)]
    groups_claim: Option<String>,
    /// The header that carries the token.
    #[serde(default = "default_attribute")]
    attribute: String,
    #[serde(default = "default_refresh", with = "duration")]
    jwks_refresh_interval: Duration,
}

fn config_error(id: &ComponentId, key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Extension, id, key, msg)
}

struct Parsed {
    cfg: OidcConfig,
    header: HeaderName,
    client: reqwest::Client,
}

fn parse(id: &ComponentId, cfg: OidcConfig) -> Result<Parsed, ConfigError> {
    if cfg.issuer_url.is_empty() {
        return Err(config_error(
            id,
            "issuer_url",
            "is required (the OpenID issuer, e.g. https://accounts.example.com)",
        ));
    }
    match reqwest::Url::parse(&cfg.issuer_url) {
        Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
        Ok(u) => {
            return Err(config_error(
                id,
                "issuer_url",
                format!(
                    "{:?}: the scheme must be https or http, not {}",
                    cfg.issuer_url,
                    u.scheme()
                ),
            ))
        }
        Err(e) => {
            return Err(config_error(
                id,
                "issuer_url",
                format!("{:?} is not a URL: {e}", cfg.issuer_url),
            ))
        }
    }
    if cfg.audience.is_empty() {
        return Err(config_error(
            id,
            "audience",
            "is required (the client id tokens are issued for)",
        ));
    }
    if cfg.username_claim.is_empty() {
        return Err(config_error(id, "username_claim", "must not be empty"));
    }
    if cfg.jwks_refresh_interval < Duration::from_secs(1) {
        return Err(config_error(
            id,
            "jwks_refresh_interval",
            "must be at least 1s",
        ));
    }
    let header = HeaderName::from_bytes(cfg.attribute.as_bytes()).map_err(|_| {
        config_error(
            id,
            "attribute",
            format!("{:?} is not a valid header name", cfg.attribute),
        )
    })?;
    let mut builder = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")));
    // Not read in `vigil validate`: otelcol reads it when the extension starts.
    let deferred = vigil_core::config::host_files_deferred();
    if let Some(path) = cfg.issuer_ca_path.as_ref().filter(|_| !deferred) {
        let pem = std::fs::read(path).map_err(|e| {
            config_error(
                id,
                "issuer_ca_path",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                config_error(
                    id,
                    "issuer_ca_path",
                    format!("{} holds no PEM certificate", path.display()),
                )
            })?;
        builder = builder.tls_certs_merge(certs);
    }
    let client = builder.build().map_err(|e| {
        config_error(
            id,
            "issuer_ca_path",
            format!("cannot build the HTTP client: {e}"),
        )
    })?;
    Ok(Parsed {
        cfg,
        header,
        client,
    })
}

struct Factory;

/// The `oidc` extension factory, for the registry.
pub fn factory() -> Arc<dyn DynExtensionFactory> {
    vigil_core::factory::extension(Factory)
}

impl FactoryBase for Factory {
    type Config = OidcConfig;

    fn type_name(&self) -> &'static str {
        "oidc"
    }

    /// `issuer_url` and `audience` have no default.
    fn default_config(&self) -> Option<OidcConfig> {
        None
    }

    fn validate(&self, id: &ComponentId, cfg: &OidcConfig) -> Result<(), ConfigError> {
        parse(id, cfg.clone()).map(|_| ())
    }
}

impl ExtensionFactory for Factory {
    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn create(&self, set: Settings, cfg: OidcConfig) -> Result<Arc<dyn Extension>, ConfigError> {
        let id = &set.id;
        let p = parse(id, cfg)?;
        let issuer = p.cfg.issuer_url.clone();
        Ok(Arc::new(Oidc {
            inner: Arc::new(Verifier {
                id: id.clone(),
                issuer,
                audience: p.cfg.audience,
                username_claim: p.cfg.username_claim,
                groups_claim: p.cfg.groups_claim,
                header: p.header,
                refresh: p.cfg.jwks_refresh_interval,
                client: p.client,
                jwks_uri: Mutex::new(None),
                keys: Mutex::new(Keys::default()),
                fetching: tokio::sync::Mutex::new(()),
                fetches: metrics::counter!("vigil_oidc_jwks_fetches", "extension" => id.to_string(), "result" => "ok"),
                fetch_failures: metrics::counter!("vigil_oidc_jwks_fetches", "extension" => id.to_string(), "result" => "failed"),
            }),
        }))
    }
}

struct Oidc {
    inner: Arc<Verifier>,
}

/// One usable key: its `kid`, the algorithm the JWK pins if any, and the key.
type KeyEntry = (Option<String>, Option<Algorithm>, Arc<DecodingKey>);

#[derive(Default)]
struct Keys {
    /// `(kid, alg the JWK pins if any, key)`.
    keys: Arc<Vec<KeyEntry>>,
    fetched_at: Option<Instant>,
    /// The last fetch caused by an unknown `kid`, for the rate limit.
    unknown_kid_fetch: Option<Instant>,
}

struct Verifier {
    id: ComponentId,
    issuer: String,
    audience: String,
    username_claim: String,
    groups_claim: Option<String>,
    header: HeaderName,
    refresh: Duration,
    client: reqwest::Client,
    jwks_uri: Mutex<Option<String>>,
    keys: Mutex<Keys>,
    /// One fetch at a time: concurrent requests that need fresh keys wait for the one in flight.
    fetching: tokio::sync::Mutex<()>,
    fetches: metrics::Counter,
    fetch_failures: metrics::Counter,
}

/// Reads a JSON document of at most [`MAX_DOCUMENT`] bytes.
async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    let mut resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("cannot fetch {url}: {}", error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("{url} answered {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("cannot read {url}: {}", error_chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(format!("{url} is larger than {MAX_DOCUMENT} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url} is not the JSON expected: {e}"))
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

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// The signature algorithm a JWK pins, when it is one this extension accepts.
fn asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// The keys of a key set that can verify signatures: symmetric (`oct`) keys are left out, since an
/// issuer never publishes its signing secret, and accepting one would let anyone sign.
fn usable_keys(set: JwkSet) -> Vec<KeyEntry> {
    set.keys
        .iter()
        .filter(|k: &&Jwk| !matches!(k.algorithm, AlgorithmParameters::OctetKey(_)))
        .filter(|k| {
            !matches!(
                k.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            )
        })
        .filter_map(|k| {
            let alg = k
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            if alg.is_some_and(|a| !asymmetric(a)) {
                return None;
            }
            let key = DecodingKey::from_jwk(k).ok()?;
            Some((k.common.key_id.clone(), alg, Arc::new(key)))
        })
        .take(MAX_KEYS)
        .collect()
}

impl Verifier {
    /// Reads the discovery document and checks it is this issuer's.
    async fn discover(&self) -> Result<String, String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let doc: Discovery = get_json(&self.client, &url).await?;
        if doc.issuer != self.issuer {
            return Err(format!(
                "the discovery document at {url} names the issuer {:?}, not {:?} (issuer_url must match exactly)",
                doc.issuer, self.issuer
            ));
        }
        Ok(doc.jwks_uri)
    }

    /// Fetches the key set (discovering its address first if need be) and replaces the cached one.
    async fn fetch_keys(&self) -> Result<(), String> {
        let known = self
            .jwks_uri
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let uri = match known {
            Some(u) => u,
            None => {
                let u = self.discover().await?;
                *self.jwks_uri.lock().unwrap_or_else(|p| p.into_inner()) = Some(u.clone());
                u
            }
        };
        let set: JwkSet = get_json(&self.client, &uri).await?;
        let keys = usable_keys(set);
        if keys.is_empty() {
            return Err(format!("the key set at {uri} holds no usable signing key"));
        }
        let mut k = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        k.keys = Arc::new(keys);
        k.fetched_at = Some(Instant::now());
        Ok(())
    }

    /// Fetches the keys unless another caller did while this one waited; counts and logs the
    /// result. `since` is when the caller saw the keys it found wanting.
    async fn refetch(&self, since: Option<Instant>) {
        let _one = self.fetching.lock().await;
        let fetched_at = self
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .fetched_at;
        if fetched_at != since {
            return;
        }
        match self.fetch_keys().await {
            Ok(()) => self.fetches.increment(1),
            Err(e) => {
                self.fetch_failures.increment(1);
                tracing::warn!(extension = %self.id, error = %e, "oidc: cannot refresh the issuer's keys; keeping the ones held");
            }
        }
    }

    fn snapshot(&self) -> (Arc<Vec<KeyEntry>>, Option<Instant>) {
        let k = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        (k.keys.clone(), k.fetched_at)
    }

    /// The keys that may have signed a token with this `kid` and `alg`.
    fn candidates(keys: &[KeyEntry], kid: Option<&str>, alg: Algorithm) -> Vec<Arc<DecodingKey>> {
        keys.iter()
            .filter(|(k, a, _)| {
                kid.is_none_or(|kid| k.as_deref() == Some(kid)) && a.is_none_or(|a| a == alg)
            })
            .map(|(_, _, key)| key.clone())
            .collect()
    }

    fn principal(&self, claims: &Value) -> Result<Principal, String> {
        let name = match claims.get(&self.username_claim) {
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(format!(
                    "the token's {:?} claim is not a string",
                    self.username_claim
                ))
            }
            None => return Err(format!("the token has no {:?} claim", self.username_claim)),
        };
        let groups = match self.groups_claim.as_ref().and_then(|g| claims.get(g)) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(_) => {
                return Err(format!(
                    "the token's {:?} claim is neither a string nor a list",
                    self.groups_claim.as_deref().unwrap_or_default()
                ))
            }
        };
        Ok(Principal { name, groups })
    }
}

#[async_trait]
impl ServerAuth for Verifier {
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, String> {
        let value = headers
            .get(&self.header)
            .ok_or_else(|| format!("no {} header", self.header))?;
        let text = value
            .to_str()
            .map_err(|_| format!("the {} header is not ASCII", self.header))?;
        let token = match text.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(format!(
                    "the {} header does not hold a Bearer token",
                    self.header
                ))
            }
        };
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
        if !asymmetric(header.alg) {
            return Err(format!(
                "the token is signed with {:?}; only public-key algorithms are accepted",
                header.alg
            ));
        }
        let kid = header.kid.as_deref();
        let (mut keys, mut fetched_at) = self.snapshot();
        if fetched_at.is_none_or(|at| at.elapsed() >= self.refresh) {
            self.refetch(fetched_at).await;
            (keys, fetched_at) = self.snapshot();
        }
        let mut candidates = Self::candidates(&keys, kid, header.alg);
        if candidates.is_empty() && kid.is_some() {
            // A key the issuer may have rotated in since the last fetch; rate-limited.
            let allowed = {
                let mut k = self.keys.lock().unwrap_or_else(|p| p.into_inner());
                let ok = k
                    .unknown_kid_fetch
                    .is_none_or(|at| at.elapsed() >= UNKNOWN_KID_REFETCH);
                if ok {
                    k.unknown_kid_fetch = Some(Instant::now());
                }
                ok
            };
            if allowed {
                self.refetch(fetched_at).await;
                (keys, _) = self.snapshot();
                candidates = Self::candidates(&keys, kid, header.alg);
            }
        }
        if candidates.is_empty() {
            return Err(match kid {
                Some(kid) => format!(
                    "no key of the issuer has the id {kid:?} and the algorithm {:?}",
                    header.alg
                ),
                None => format!("no key of the issuer has the algorithm {:?}", header.alg),
            });
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        let mut last = String::new();
        for key in candidates {
            match jsonwebtoken::decode::<Value>(token, &key, &validation) {
                Ok(data) => return self.principal(&data.claims),
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!("the token is not valid: {last}"))
    }
}

#[async_trait]
impl Component for Oidc {
    /// Fetches the discovery document and the keys; an issuer that cannot be reached fails the
    /// start, as in otelcol, rather than refusing every client later.
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let v = &self.inner;
        let _one = v.fetching.lock().await;
        v.fetch_keys().await.map_err(|e| {
            v.fetch_failures.increment(1);
            anyhow::anyhow!("extensions::{}: {e}", v.id)
        })?;
        v.fetches.increment(1);
        Ok(())
    }
}

impl Extension for Oidc {
    fn server_auth(&self) -> Option<Arc<dyn ServerAuth>> {
        Some(self.inner.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id() -> ComponentId {
        ComponentId::parse("oidc/x").unwrap()
    }

    #[test]
    fn bad_configs_name_the_key() {
        let check = |v: Value| factory().validate(&id(), &v).unwrap_err().to_string();
        assert!(check(json!({"audience": "a"})).contains("oidc/x::issuer_url: is required"));
        assert!(check(json!({"issuer_url": "ftp://x", "audience": "a"})).contains("scheme"));
        assert!(check(json!({"issuer_url": "not a url", "audience": "a"})).contains("not a URL"));
        assert!(check(json!({"issuer_url": "https://x"})).contains("audience"));
        let e = check(
            json!({"issuer_url": "https://x", "audience": "a", "issuer_ca_path": "/nonexistent.pem"}),
        );
        assert!(e.contains("issuer_ca_path: cannot read"), "{e}");
        assert!(check(
            json!({"issuer_url": "https://x", "audience": "a", "attribute": "bad header"})
        )
        .contains("attribute"));
        assert!(check(
            json!({"issuer_url": "https://x", "audience": "a", "jwks_refresh_interval": "0s"})
        )
        .contains("jwks_refresh_interval"));
        assert!(
            check(json!({"issuer_url": "https://x", "audience": "a", "client_id": "a"}))
                .contains("client_id")
        );
        assert!(factory()
            .validate(
                &id(),
                &json!({"issuer_url": "https://x", "audience": "a", "groups_claim": "groups"})
            )
            .is_ok());
    }

    #[test]
    fn symmetric_keys_are_never_used() {
        let set: JwkSet = serde_json::from_value(json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "h"},
            {"kty": "EC", "crv": "P-256", "kid": "e", "alg": "ES256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]}))
        .unwrap();
        let keys = usable_keys(set);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].0.as_deref(), Some("e"));
        assert!(!asymmetric(Algorithm::HS256));
    }
}
