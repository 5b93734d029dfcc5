//! `sigv4auth` (`sigv4_auth`): otelcol-contrib's client authenticator that signs each outgoing
//! HTTP request with AWS Signature Version 4, for Amazon Managed Prometheus
//! (`prometheusremotewrite`) and other AWS endpoints (`otlphttp`). The signer is the AWS exporters'
//! (`vigil_exporters::helper::aws::sign`, checked against botocore); what is this module's is the
//! scope (region and service, inferred from the endpoint's host as contrib infers them when not
//! configured) and the credentials.
//!
//! Credentials come as the AWS SDK for Go's default chain finds them: `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`), a web identity (`AWS_WEB_IDENTITY_TOKEN_FILE`
//! with `AWS_ROLE_ARN`, as on EKS), the shared credentials file's profile, then the EC2 instance
//! metadata service. `assume_role::arn` exchanges them for the role's through STS `AssumeRole`;
//! with `assume_role::web_identity_token_file`, the token in that file is exchanged through
//! `AssumeRoleWithWebIdentity`. STS is called with its query protocol (a signed form POST, an XML
//! answer); `AWS_ENDPOINT_URL_STS` / `AWS_ENDPOINT_URL` point it elsewhere, as in the SDKs.
//!
//! Bounded: one set of temporary credentials is cached (until five minutes before it expires);
//! static credentials are read again on each request, so rotated keys are used without a restart.
//! STS answers larger than [`MAX_ANSWER`] are refused (metadata answers over
//! `aws::IMDS_MAX_ANSWER`, by the shared `aws::Imds` session).
//!
//! As in contrib, the payload's SHA-256 goes into the canonical request only (contrib's signer,
//! aws-sdk-go-v2's `SignHTTP`, sends no `x-amz-content-sha256` header), and every header the
//! exporter sends is signed but `user-agent`, `expect`, `x-amzn-trace-id` and
//! `transfer-encoding`, plus `content-length` when there is a body.

use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use vigil_core::component::OutgoingRequest;
use vigil_core::factory::{DynExtensionFactory, ExtensionFactory, FactoryBase};
use vigil_core::{
    ClientAuth, Component, ComponentId, ComponentKind, ConfigError, Extension, Host, Settings,
    Stability,
};
use vigil_exporters::helper::aws::{self, CredentialSource, Credentials};

/// The largest STS or instance-metadata answer read (STS's are about 2 KiB).
pub const MAX_ANSWER: usize = 64 * 1024;
/// Temporary credentials are fetched again this long before they expire.
const REFRESH_BEFORE: chrono::Duration = chrono::Duration::minutes(5);
/// The lifetime asked of STS for an assumed role (the SDK for Go's default, 15 minutes).
const ROLE_SECONDS: u32 = 900;
/// Per STS or metadata call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// otelcol-contrib's `sigv4authextension.Config`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sigv4Config {
    /// The region signed for; else the second label of the endpoint's host for the hosts contrib
    /// knows (`aps-workspaces.<region>.amazonaws.com`, ...).
    #[serde(default)]
    pub region: String,
    /// The service signed for (`aps` for Amazon Managed Prometheus); else inferred from the host.
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub assume_role: AssumeRole,
}

/// `assume_role`: the role whose credentials sign the requests.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AssumeRole {
    /// The role's ARN.
    #[serde(default)]
    pub arn: String,
    /// The role session's name (else `vigil-<nanoseconds since 1970>`, as the SDK's).
    #[serde(default)]
    pub session_name: String,
    /// The region of the STS endpoint; else `region`, `AWS_REGION`, `AWS_DEFAULT_REGION`, then
    /// STS's global endpoint.
    #[serde(default)]
    pub sts_region: String,
    /// A file holding an OIDC token (a Kubernetes service account's) to exchange for the role's
    /// credentials with `AssumeRoleWithWebIdentity`; read again at each exchange.
    #[serde(default)]
    pub web_identity_token_file: String,
}

fn err(id: &ComponentId, path: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Extension, id, path, msg)
}

/// STS's rule for `RoleSessionName`.
fn valid_session_name(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

impl Sigv4Config {
    fn check(&self, id: &ComponentId) -> Result<(), ConfigError> {
        let r = &self.assume_role;
        if !r.web_identity_token_file.is_empty() && r.arn.is_empty() {
            return Err(err(
                id,
                "assume_role::arn",
                "must be set with web_identity_token_file (the role the token is exchanged for)",
            ));
        }
        if !r.arn.is_empty() && !r.arn.starts_with("arn:") {
            return Err(err(
                id,
                "assume_role::arn",
                format!(
                    "{:?} is not an ARN (arn:aws:iam::<account>:role/<name>)",
                    r.arn
                ),
            ));
        }
        if !r.session_name.is_empty() && !valid_session_name(&r.session_name) {
            return Err(err(
                id,
                "assume_role::session_name",
                format!(
                    "{:?} must be 2 to 64 letters, digits or _+=,.@- (STS's RoleSessionName)",
                    r.session_name
                ),
            ));
        }
        for (key, value) in [
            ("region", &self.region),
            ("service", &self.service),
            ("assume_role::sts_region", &r.sts_region),
        ] {
            if value.trim() != value.as_str() || value.contains(['/', ' ']) {
                return Err(err(
                    id,
                    key,
                    format!("{value:?} must be a bare name such as us-east-1 or aps"),
                ));
            }
        }
        Ok(())
    }
}

/// The service and region contrib infers from a host it knows: `aps-workspaces.<region>...`
/// (Amazon Managed Prometheus), `search-<domain>.<region>...` (OpenSearch), `logs.<region>...`,
/// `xray.<region>...`. Configured values win; an unknown host leaves them as configured.
pub fn infer_scope(host: &str, service: &str, region: &str) -> (String, String) {
    let known = [
        ("aps-workspaces", "aps"),
        ("search-", "es"),
        ("logs", "logs"),
        ("xray", "xray"),
    ];
    let (mut service, mut region) = (service.to_string(), region.to_string());
    if let Some((_, svc)) = known.iter().find(|(prefix, _)| host.starts_with(prefix)) {
        if service.is_empty() {
            service = svc.to_string();
        }
        if region.is_empty() {
            region = host.split('.').nth(1).unwrap_or_default().to_string();
        }
    }
    (service, region)
}

/// Headers never signed: those a proxy or the client may change (the SDK for Go's list), the
/// signature's own, and `host`, which the signer takes from the URL.
fn unsigned(name: &str) -> bool {
    matches!(
        name,
        "authorization"
            | "user-agent"
            | "expect"
            | "x-amzn-trace-id"
            | "transfer-encoding"
            | "host"
            | "x-amz-date"
            | "x-amz-security-token"
            | "content-length"
    )
}

/// The headers to sign from what the exporter sends: lower-case names, a name's values joined
/// with commas and runs of spaces squeezed (SigV4's canonical form), `content-length` for a body.
fn signed_headers(headers: &HeaderMap, body_len: usize) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for name in headers.keys() {
        if unsigned(name.as_str()) {
            continue;
        }
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        out.push((name.as_str().to_string(), values.join(",")));
    }
    if body_len > 0 {
        out.push(("content-length".into(), body_len.to_string()));
    }
    out
}

/// Temporary credentials and when they expire.
#[derive(Clone)]
struct Temporary {
    creds: Credentials,
    expires: DateTime<Utc>,
}

/// Where the signing credentials come from.
enum Source {
    /// The default chain.
    Chain,
    /// The chain's credentials exchanged for `arn`'s.
    AssumeRole { arn: String, session: String },
    /// `token_file`'s token exchanged for `arn`'s.
    WebIdentity {
        arn: String,
        session: String,
        token_file: PathBuf,
    },
}

struct Signer {
    id: ComponentId,
    region: String,
    service: String,
    sts_region: String,
    source: Source,
    files: CredentialSource,
    client: reqwest::Client,
    /// The one set of temporary credentials in use (assumed role, web identity, metadata). A
    /// tokio mutex, so that requests wait for one refresh instead of each calling STS.
    cached: tokio::sync::Mutex<Option<Temporary>>,
}

fn default_session() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("vigil-{nanos}")
}

impl Signer {
    fn new(id: &ComponentId, cfg: &Sigv4Config) -> Result<Signer, ConfigError> {
        let r = &cfg.assume_role;
        let session = if r.session_name.is_empty() {
            default_session()
        } else {
            r.session_name.clone()
        };
        let source = if !r.web_identity_token_file.is_empty() {
            Source::WebIdentity {
                arn: r.arn.clone(),
                session,
                token_file: PathBuf::from(&r.web_identity_token_file),
            }
        } else if !r.arn.is_empty() {
            Source::AssumeRole {
                arn: r.arn.clone(),
                session,
            }
        } else {
            Source::Chain
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        // contrib: sts_region defaults to region; the SDK then falls back on the environment.
        let sts_region = [r.sts_region.clone(), cfg.region.clone()]
            .into_iter()
            .find(|s| !s.is_empty())
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
            .timeout(CALL_TIMEOUT)
            .build()
            .map_err(|e| err(id, "", format!("cannot build the STS client: {e}")))?;
        Ok(Signer {
            id: id.clone(),
            region: cfg.region.clone(),
            service: cfg.service.clone(),
            sts_region,
            source,
            files: CredentialSource::from_env(),
            client,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// The credentials to sign with now, fetching temporary ones when the cached set is about to
    /// expire.
    async fn credentials(&self) -> Result<Credentials, String> {
        // Static keys in the environment or the credentials file are not cached: read again so a
        // rotation is seen at once.
        if matches!(self.source, Source::Chain) {
            if let Some(c) = static_env() {
                return Ok(c);
            }
            if web_identity_env().is_none() {
                if let Ok(c) = self.files.load() {
                    return Ok(c);
                }
            }
        }
        let mut cached = self.cached.lock().await;
        if let Some(t) = cached.as_ref() {
            if t.expires - REFRESH_BEFORE > Utc::now() {
                return Ok(t.creds.clone());
            }
        }
        let fresh = self
            .fetch()
            .await
            .map_err(|e| format!("{}: {e}", self.id))?;
        let creds = fresh.creds.clone();
        *cached = Some(fresh);
        Ok(creds)
    }

    async fn fetch(&self) -> Result<Temporary, String> {
        match &self.source {
            Source::Chain => self.chain_temporary().await,
            Source::WebIdentity {
                arn,
                session,
                token_file,
            } => self.web_identity(arn, session, token_file).await,
            Source::AssumeRole { arn, session } => {
                let base = self.chain_credentials().await?;
                let form = [
                    ("Action", "AssumeRole"),
                    ("Version", "2011-06-15"),
                    ("RoleArn", arn.as_str()),
                    ("RoleSessionName", session.as_str()),
                    ("DurationSeconds", &ROLE_SECONDS.to_string()),
                ];
                sts(&self.client, &self.sts_region, &form, Some(&base)).await
            }
        }
    }

    /// The default chain's credentials, static or temporary (for an assumed role's base).
    async fn chain_credentials(&self) -> Result<Credentials, String> {
        if let Some(c) = static_env() {
            return Ok(c);
        }
        if web_identity_env().is_none() {
            if let Ok(c) = self.files.load() {
                return Ok(c);
            }
        }
        Ok(self.chain_temporary().await?.creds)
    }

    /// The chain's temporary credentials: a web identity from the environment, else the EC2
    /// instance metadata service.
    async fn chain_temporary(&self) -> Result<Temporary, String> {
        if let Some((arn, token_file, session)) = web_identity_env() {
            return self.web_identity(&arn, &session, &token_file).await;
        }
        imds_credentials(&self.client).await.map_err(|e| {
            format!(
                "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                 AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, or profile [{}] in the shared \
                 credentials file; the EC2 metadata service did not give any either ({e})",
                self.files.profile
            )
        })
    }

    async fn web_identity(
        &self,
        arn: &str,
        session: &str,
        token_file: &std::path::Path,
    ) -> Result<Temporary, String> {
        let token = std::fs::read_to_string(token_file).map_err(|e| {
            format!(
                "cannot read the web identity token file {}: {e}",
                token_file.display()
            )
        })?;
        let form = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", arn),
            ("RoleSessionName", session),
            ("WebIdentityToken", token.trim()),
        ];
        sts(&self.client, &self.sts_region, &form, None).await
    }

    /// The credential scope for a request to `url`.
    fn scope(&self, url: &url::Url) -> Result<(String, String), String> {
        let host = url.host_str().unwrap_or_default();
        let (service, region) = infer_scope(host, &self.service, &self.region);
        if service.is_empty() || region.is_empty() {
            return Err(format!(
                "{}: cannot infer the {} to sign for from host {host:?}: set `region` and \
                 `service` in the extension's config",
                self.id,
                if service.is_empty() {
                    "service"
                } else {
                    "region"
                }
            ));
        }
        Ok((service, region))
    }
}

fn static_env() -> Option<Credentials> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (key, secret) = (env("AWS_ACCESS_KEY_ID")?, env("AWS_SECRET_ACCESS_KEY")?);
    Some(match env("AWS_SESSION_TOKEN") {
        Some(t) => Credentials::new_with_token(key, secret, t),
        None => Credentials::new(key, secret),
    })
}

/// EKS's service account role: `(AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE, session name)`.
fn web_identity_env() -> Option<(String, PathBuf, String)> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let file = env("AWS_WEB_IDENTITY_TOKEN_FILE")?;
    let arn = env("AWS_ROLE_ARN")?;
    let session = env("AWS_ROLE_SESSION_NAME").unwrap_or_else(default_session);
    Some((arn, PathBuf::from(file), session))
}

/// STS's endpoint: `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, the regional one, else the global
/// one (signed for us-east-1), with the region to sign for.
fn sts_endpoint(region: &str) -> Result<(url::Url, String), String> {
    let region = if region.is_empty() {
        "us-east-1"
    } else {
        region
    };
    for var in ["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"] {
        if let Some(e) = std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
            let url = aws::endpoint_url(&e).map_err(|m| format!("{var}: {m}"))?;
            return Ok((url, region.to_string()));
        }
    }
    if region == "us-east-1" {
        let url = url::Url::parse("https://sts.amazonaws.com/").map_err(|e| e.to_string())?;
        return Ok((url, region.to_string()));
    }
    Ok((aws::service_url("sts", region), region.to_string()))
}

/// One STS call (query protocol: a form POST, signed with `signing` unless it is a web identity
/// exchange, which the token authenticates), read into temporary credentials.
async fn sts(
    client: &reqwest::Client,
    region: &str,
    form: &[(&str, &str)],
    signing: Option<&Credentials>,
) -> Result<Temporary, String> {
    let (url, region) = sts_endpoint(region)?;
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let mut req = client
        .post(url.clone())
        .header("content-type", content_type)
        .body(body.clone());
    if let Some(creds) = signing {
        let headers = [
            ("content-type", content_type),
            ("content-length", &body.len().to_string()),
        ];
        let signed = aws::sign(
            "POST",
            &url,
            &headers,
            body.as_bytes(),
            (&region, "sts"),
            creds,
            Utc::now(),
        );
        for (k, v) in signed {
            req = req.header(k, v);
        }
    }
    let action = form.first().map_or("", |(_, a)| *a);
    let resp = req
        .send()
        .await
        .map_err(|e| format!("STS {action} at {url}: {e}"))?;
    let status = resp.status();
    let text = read_bounded(resp).await?;
    if !status.is_success() {
        let code = xml_text(&text, "Code").unwrap_or_default();
        let message = xml_text(&text, "Message").unwrap_or_default();
        return Err(format!(
            "STS {action} at {url} answered {status}: {code} {message}"
        ));
    }
    let field = |tag: &str| {
        xml_text(&text, tag)
            .ok_or_else(|| format!("STS {action} at {url}: the answer has no <{tag}>"))
    };
    let expires = field("Expiration")?;
    let expires = DateTime::parse_from_rfc3339(&expires)
        .map_err(|e| format!("STS {action}: Expiration {expires:?}: {e}"))?
        .with_timezone(&Utc);
    Ok(Temporary {
        creds: Credentials::new_with_token(
            field("AccessKeyId")?,
            field("SecretAccessKey")?,
            field("SessionToken")?,
        ),
        expires,
    })
}

async fn read_bounded(mut resp: reqwest::Response) -> Result<String, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if out.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("the answer is larger than {MAX_ANSWER} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The text of the first `<tag>` element. STS's answers are a fixed, flat shape whose leaves
/// this reads; an XML crate for four leaves is not worth its build.
fn xml_text(doc: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = doc.find(&open)? + open.len();
    let end = start + doc[start..].find(&format!("</{tag}>"))?;
    let raw = doc[start..end].trim();
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// The instance role's credentials from the EC2 metadata service (an [`aws::Imds`] session, the
/// same one `aws::imds_region` reads the region with).
async fn imds_credentials(client: &reqwest::Client) -> Result<Temporary, String> {
    let imds = aws::Imds::open(client).await?;
    let base = imds.base();
    let path = "meta-data/iam/security-credentials/";
    let roles = imds.get(path, "the instance role").await?;
    let role = roles.lines().next().unwrap_or_default().trim().to_string();
    if role.is_empty() {
        return Err(format!("{base}: the instance has no role"));
    }
    let doc = imds
        .get(&format!("{path}{role}"), "the role's credentials")
        .await?;
    let v: serde_json::Value =
        serde_json::from_str(&doc).map_err(|e| format!("{base}: credentials: {e}"))?;
    let field = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("{base}: the credentials have no {k}"))
    };
    let expires = DateTime::parse_from_rfc3339(&field("Expiration")?)
        .map_err(|e| format!("{base}: Expiration: {e}"))?
        .with_timezone(&Utc);
    Ok(Temporary {
        creds: Credentials::new_with_token(
            field("AccessKeyId")?,
            field("SecretAccessKey")?,
            field("Token")?,
        ),
        expires,
    })
}

/// Sets the signature headers of `request` on `headers`.
fn put_signature(
    headers: &mut HeaderMap,
    request: OutgoingRequest<'_>,
    url: &url::Url,
    scope: (&str, &str),
    creds: &Credentials,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let signed = signed_headers(headers, request.body.len());
    let refs: Vec<(&str, &str)> = signed
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for (k, v) in aws::sign(request.method, url, &refs, request.body, scope, creds, now) {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?;
        let mut value = HeaderValue::from_str(&v)
            .map_err(|_| format!("the {k} header is not printable ASCII"))?;
        value.set_sensitive(name != "x-amz-date");
        headers.insert(name, value);
    }
    Ok(())
}

#[async_trait]
impl ClientAuth for Signer {
    async fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        // Exporters that pass only headers refuse sigv4auth at start (needs_request).
        Err(format!(
            "{} signs whole HTTP requests and has no headers of its own",
            self.id
        ))
    }

    fn needs_request(&self) -> bool {
        true
    }

    async fn apply_request(
        &self,
        request: OutgoingRequest<'_>,
        headers: &mut HeaderMap,
    ) -> Result<(), String> {
        let url = url::Url::parse(request.url)
            .map_err(|e| format!("{}: {:?} is not a URL: {e}", self.id, request.url))?;
        let (service, region) = self.scope(&url)?;
        let creds = self.credentials().await?;
        put_signature(
            headers,
            request,
            &url,
            (&region, &service),
            &creds,
            Utc::now(),
        )
    }
}

struct Sigv4Auth {
    signer: Arc<Signer>,
}

#[async_trait]
impl Component for Sigv4Auth {
    /// contrib fetches the credentials when the config is loaded, so a collector without any
    /// does not start; vigil's `validate` stays offline, and start does it instead.
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        self.signer
            .credentials()
            .await
            .map(drop)
            .map_err(|e| anyhow::anyhow!("extensions::{}: {e}", self.signer.id))
    }
}

impl Extension for Sigv4Auth {
    fn client_auth(&self) -> Option<Arc<dyn ClientAuth>> {
        Some(self.signer.clone())
    }
}

struct Factory;

/// The `sigv4auth` extension factory (`sigv4_auth` is accepted too).
pub fn factory() -> Arc<dyn DynExtensionFactory> {
    vigil_core::factory::extension(Factory)
}

impl FactoryBase for Factory {
    type Config = Sigv4Config;

    fn type_name(&self) -> &'static str {
        "sigv4auth"
    }

    fn validate(&self, id: &ComponentId, cfg: &Sigv4Config) -> Result<(), ConfigError> {
        cfg.check(id)
    }
}

impl ExtensionFactory for Factory {
    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn create(&self, set: Settings, cfg: Sigv4Config) -> Result<Arc<dyn Extension>, ConfigError> {
        Ok(Arc::new(Sigv4Auth {
            signer: Arc::new(Signer::new(&set.id, &cfg)?),
        }))
    }
}

#[cfg(test)]
#[path = "sigv4auth_tests.rs"]
mod tests;
