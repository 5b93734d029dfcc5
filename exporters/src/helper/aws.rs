//! What the AWS components share (`awss3`, `awsemf`, `awsxray`, and the `awsproxy` extension):
//! credentials as the AWS SDKs find them, the region (config, environment, then the EC2 instance
//! metadata service), otelcol's `awsutil.AWSSessionSettings` keys, AWS Signature Version 4, and
//! the calls to AWS's JSON APIs (CloudWatch Logs, X-Ray: [`JsonApi`], signing, posting and telling
//! retryable errors from the others).
//!
//! SigV4 is written here rather than taken from `aws-sigv4`: that crate pulls the smithy runtime
//! (dozens of crates, minutes of build on CI's two cores) for what is four HMACs over a canonical
//! request, and `rusty-s3` (which `awss3` uses) only presigns S3 URLs. It is checked against
//! botocore's signer (see the tests).

use crate::helper::SendError;
use hmac::{Hmac, Mac};
// Re-exported for the components outside this crate that sign with [`sign`] (`sigv4auth`).
pub use rusty_s3::Credentials;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use vigil_core::{ComponentId, ConfigError};

/// otelcol's `awsutil.AWSSessionSettings`, the keys every AWS component carries at its top level.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AwsSession {
    /// The AWS region; else `AWS_REGION`, `AWS_DEFAULT_REGION`, then the EC2 metadata service
    /// (unless `local_mode`).
    #[serde(default)]
    pub region: String,
    /// The service endpoint (another URL than AWS's regional one: a VPC endpoint, a local server).
    #[serde(default)]
    pub endpoint: String,
    /// An HTTP(S) proxy for the requests to AWS.
    #[serde(default)]
    pub proxy_address: String,
    /// Skip verifying the service's TLS certificate.
    #[serde(default)]
    pub no_verify_ssl: bool,
    /// Not on EC2: do not ask the instance metadata service for the region.
    #[serde(default)]
    pub local_mode: bool,
    /// An STS role to assume; vigil has no STS client, so a value is refused.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role_arn: String,
    /// Per request, in seconds (otelcol's default 30).
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    /// otelcol's SDK-level retries; vigil retries through `retry_on_failure` instead, so this is
    /// accepted and has no further effect.
    #[serde(default = "default_max_retries")]
    pub max_retries: u64,
    /// Accepted for otelcol's configs: vigil's sending queue sets the concurrency.
    #[serde(default = "default_num_workers")]
    pub num_workers: u64,
    /// The ARN of the resource running the collector (sent by `awsxray`'s telemetry).
    #[serde(default)]
    pub resource_arn: String,
    /// Sets `x-amz-external-id` when assuming a role; refused with `role_arn`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub external_id: String,
    /// Accepted for otelcol's configs; retries of the metadata service are vigil's own (one).
    #[serde(default)]
    pub imds_retries: u64,
    /// A PEM bundle trusted for the service's certificate.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub certificate_file_path: String,
}

pub fn default_request_timeout() -> u64 {
    30
}
pub fn default_max_retries() -> u64 {
    2
}
pub fn default_num_workers() -> u64 {
    8
}

/// Declares an exporter config struct that carries [`AwsSession`]'s keys at its top level (as
/// otelcol's `mapstructure:",squash"` does) next to its own, with `session()` to read them. A
/// macro rather than `#[serde(flatten)]`, which cannot be combined with `deny_unknown_fields`.
#[macro_export]
macro_rules! aws_session_config {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty,)* }) => {
        $(#[$m])*
        pub struct $name {
            /// The AWS region (else `AWS_REGION`, `AWS_DEFAULT_REGION`, EC2 metadata).
            #[serde(default)]
            pub region: String,
            /// Another service URL than AWS's regional endpoint.
            #[serde(default)]
            pub endpoint: String,
            #[serde(default)]
            pub proxy_address: String,
            #[serde(default)]
            pub no_verify_ssl: bool,
            #[serde(default)]
            pub local_mode: bool,
            /// Refused: vigil has no STS client.
            #[serde(default, skip_serializing_if = "String::is_empty")]
            pub role_arn: String,
            #[serde(default = "crate::helper::aws::default_request_timeout")]
            pub request_timeout_seconds: u64,
            /// Accepted; `retry_on_failure` does vigil's retries.
            #[serde(default = "crate::helper::aws::default_max_retries")]
            pub max_retries: u64,
            /// Accepted; the sending queue sets vigil's concurrency.
            #[serde(default = "crate::helper::aws::default_num_workers")]
            pub num_workers: u64,
            #[serde(default)]
            pub resource_arn: String,
            #[serde(default, skip_serializing_if = "String::is_empty")]
            pub external_id: String,
            #[serde(default)]
            pub imds_retries: u64,
            #[serde(default, skip_serializing_if = "String::is_empty")]
            pub certificate_file_path: String,
            $($(#[$fm])* pub $f: $t,)*
        }

        impl $name {
            /// The session keys.
            pub fn session(&self) -> $crate::helper::aws::AwsSession {
                $crate::helper::aws::AwsSession {
                    region: self.region.clone(),
                    endpoint: self.endpoint.clone(),
                    proxy_address: self.proxy_address.clone(),
                    no_verify_ssl: self.no_verify_ssl,
                    local_mode: self.local_mode,
                    role_arn: self.role_arn.clone(),
                    request_timeout_seconds: self.request_timeout_seconds,
                    max_retries: self.max_retries,
                    num_workers: self.num_workers,
                    resource_arn: self.resource_arn.clone(),
                    external_id: self.external_id.clone(),
                    imds_retries: self.imds_retries,
                    certificate_file_path: self.certificate_file_path.clone(),
                }
            }
        }
    };
}

/// The message used wherever `role_arn` is set.
pub const ROLE_ARN_REFUSED: &str = "assuming a role is not supported by vigil (it has no STS \
     client): give the role's credentials through AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and \
     AWS_SESSION_TOKEN (or a shared credentials file) instead";

impl AwsSession {
    /// Checks the keys; `at` builds an error at a key path of the component.
    pub fn validate(&self, at: impl Fn(&str, String) -> ConfigError) -> Result<(), ConfigError> {
        if !self.role_arn.is_empty() {
            return Err(at("role_arn", ROLE_ARN_REFUSED.into()));
        }
        if !self.external_id.is_empty() {
            return Err(at(
                "external_id",
                "is only used with role_arn, which vigil does not support".into(),
            ));
        }
        if !self.endpoint.is_empty() {
            endpoint_url(&self.endpoint).map_err(|e| at("endpoint", e))?;
        }
        if !self.proxy_address.is_empty() {
            reqwest::Proxy::all(&self.proxy_address).map_err(|e| {
                at(
                    "proxy_address",
                    format!("{:?} is not a proxy URL: {e}", self.proxy_address),
                )
            })?;
        }
        Ok(())
    }

    /// The request timeout (0: none).
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_seconds)
    }

    /// The HTTP client for `id`'s requests to AWS: `proxy_address`, `no_verify_ssl`,
    /// `certificate_file_path`.
    pub fn client(&self, id: &ComponentId) -> Result<reqwest::Client, ConfigError> {
        let tls = vigil_core::config::TlsClientConfig {
            ca_file: (!self.certificate_file_path.is_empty())
                .then(|| self.certificate_file_path.clone()),
            insecure_skip_verify: self.no_verify_ssl,
            ..Default::default()
        };
        self.client_with(id, &tls).map_err(|mut e| {
            if e.path == "tls::ca_file" {
                e.path = "certificate_file_path".into();
            }
            e
        })
    }

    /// [`AwsSession::client`] with client TLS settings of the component's own (`awsproxy`'s
    /// `tls`). Through `proxy_address`, only `insecure_skip_verify` of them applies.
    pub fn client_with(
        &self,
        id: &ComponentId,
        tls: &vigil_core::config::TlsClientConfig,
    ) -> Result<reqwest::Client, ConfigError> {
        let client = crate::helper::http::http_client(id, &Default::default(), tls)?;
        if self.proxy_address.is_empty() {
            return Ok(client);
        }
        // reqwest takes a proxy only on the builder; the helper's client carries the TLS keys,
        // so a proxied client is built again with the same settings.
        let proxy = reqwest::Proxy::all(&self.proxy_address).map_err(|e| {
            ConfigError::at(
                "proxy_address",
                format!("{:?} is not a proxy URL: {e}", self.proxy_address),
            )
        })?;
        reqwest::Client::builder()
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(tls.insecure_skip_verify)
            .proxy(proxy)
            .build()
            .map_err(|e| ConfigError::at("proxy_address", format!("cannot build a client: {e}")))
    }

    /// The region, resolved as otelcol's `awsutil` does: the key, `AWS_REGION`,
    /// `AWS_DEFAULT_REGION`, then (off `local_mode`) the EC2 instance metadata service.
    pub async fn resolve_region(&self, client: &reqwest::Client) -> Result<String, String> {
        if !self.region.trim().is_empty() {
            return Ok(self.region.trim().to_string());
        }
        for var in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
            if let Some(r) = std::env::var(var).ok().filter(|r| !r.trim().is_empty()) {
                return Ok(r.trim().to_string());
            }
        }
        if self.local_mode {
            return Err(
                "no region: set `region` or AWS_REGION (local_mode: true does not ask \
                        the EC2 metadata service)"
                    .into(),
            );
        }
        imds_region(client).await.map_err(|e| {
            format!(
                "no region: set `region` or AWS_REGION; the EC2 metadata service did not say \
                 ({e})"
            )
        })
    }
}

/// The largest answer read from the EC2 metadata service; its documents are a few hundred bytes.
pub const IMDS_MAX_ANSWER: usize = 64 * 1024;

/// One IMDSv2 session with the EC2 instance metadata service: a token from `PUT
/// /latest/api/token`, then any number of [`Imds::get`]s with it. Shared by every AWS lookup
/// (the region here, the instance role's credentials in the `sigv4auth` extension) so they honour
/// the same environment and word their errors alike. Off EC2 opening fails within a second.
pub struct Imds<'a> {
    client: &'a reqwest::Client,
    base: String,
    token: String,
}

impl<'a> Imds<'a> {
    /// Each request's limit: an instance reaches its metadata service in milliseconds, and off
    /// EC2 nothing answers, so a longer wait only delays the fallback's error.
    const WAIT: Duration = Duration::from_secs(1);

    /// A session at `AWS_EC2_METADATA_SERVICE_ENDPOINT` (else `http://169.254.169.254`), or an
    /// error when `AWS_EC2_METADATA_DISABLED` is `true`, as the AWS SDKs read them.
    pub async fn open(client: &'a reqwest::Client) -> Result<Imds<'a>, String> {
        if std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Err("AWS_EC2_METADATA_DISABLED is true".into());
        }
        let base = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .unwrap_or_else(|_| "http://169.254.169.254".into());
        Imds::open_at(client, &base).await
    }

    /// A session at `base` (a URL without a path).
    pub async fn open_at(client: &'a reqwest::Client, base: &str) -> Result<Imds<'a>, String> {
        let base = base.trim_end_matches('/').to_string();
        // The token lives a minute: a session serves one lookup and is not kept.
        let resp = client
            .put(format!("{base}/latest/api/token"))
            .header("x-aws-ec2-metadata-token-ttl-seconds", "60")
            .timeout(Imds::WAIT)
            .send()
            .await;
        let token = answer(&base, resp, "a token").await?;
        let token = token.trim().to_string();
        Ok(Imds {
            client,
            base,
            token,
        })
    }

    /// The text at `path` (below `/latest/`, e.g. `meta-data/placement/region`); `what` names it
    /// in errors.
    pub async fn get(&self, path: &str, what: &str) -> Result<String, String> {
        let resp = self
            .client
            .get(format!("{}/latest/{path}", self.base))
            .header("x-aws-ec2-metadata-token", &self.token)
            .timeout(Imds::WAIT)
            .send()
            .await;
        answer(&self.base, resp, what).await
    }

    /// The service's URL, for errors about what it answered.
    pub fn base(&self) -> &str {
        &self.base
    }
}

/// A metadata answer's body, refused when it is not a success or is over [`IMDS_MAX_ANSWER`].
async fn answer(
    base: &str,
    resp: Result<reqwest::Response, reqwest::Error>,
    what: &str,
) -> Result<String, String> {
    let mut resp = resp.map_err(|e| format!("{base}: {}", crate::helper::http::error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("{base} answered {} for {what}", resp.status()));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("{base}: {what}: {e}"))?
    {
        if out.len() + chunk.len() > IMDS_MAX_ANSWER {
            return Err(format!(
                "{base}: {what} is larger than {IMDS_MAX_ANSWER} bytes"
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The region from the EC2 instance metadata service (the placement document of an [`Imds`]
/// session).
pub async fn imds_region(client: &reqwest::Client) -> Result<String, String> {
    let imds = Imds::open(client).await?;
    let r = imds.get("meta-data/placement/region", "the region").await?;
    if r.trim().is_empty() {
        return Err(format!("{} answered an empty region", imds.base()));
    }
    Ok(r.trim().to_string())
}

/// An `endpoint` as a URL: `https://` is added when it has no scheme, as the AWS SDK does.
pub fn endpoint_url(endpoint: &str) -> Result<url::Url, String> {
    let e = endpoint.trim();
    let raw = if e.contains("://") {
        e.to_string()
    } else {
        format!("https://{e}")
    };
    let u: url::Url = raw
        .parse()
        .map_err(|err| format!("{endpoint:?} is not a URL: {err}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!("{endpoint:?} must be an http(s) URL with a host"));
    }
    Ok(u)
}

/// AWS's endpoint of `service` in `region` (`.amazonaws.com.cn` in the China partition).
pub fn service_url(service: &str, region: &str) -> url::Url {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    // The region comes from config, environment or metadata; a value that does not make a host
    // falls back to a URL that fails with a clear connection error naming it.
    format!("https://{service}.{region}.{suffix}")
        .parse()
        .unwrap_or_else(|_| {
            url::Url::parse("https://invalid-region.amazonaws.com").expect("static URL")
        })
}

/// Where credentials come from, in the AWS SDKs' order: the environment, then the shared
/// credentials file's profile.
#[derive(Debug, Clone)]
pub struct CredentialSource {
    pub file: Option<PathBuf>,
    pub profile: String,
}

impl CredentialSource {
    pub fn from_env() -> CredentialSource {
        let file = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".aws/credentials"))
            });
        let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
        CredentialSource { file, profile }
    }

    /// Read on every request, so that rotated keys are used without a restart.
    pub fn load(&self) -> Result<Credentials, String> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let (Some(key), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
        {
            return Ok(match env("AWS_SESSION_TOKEN") {
                Some(t) => Credentials::new_with_token(key, secret, t),
                None => Credentials::new(key, secret),
            });
        }
        let missing = || {
            format!(
                "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and \
                 AWS_SESSION_TOKEN for temporary ones), or write profile [{}] in {}",
                self.profile,
                self.file
                    .as_ref()
                    .map_or("~/.aws/credentials".into(), |f| f.display().to_string())
            )
        };
        let Some(path) = &self.file else {
            return Err(missing());
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return Err(missing());
        };
        let found = profile_keys(&text, &self.profile);
        match (
            found.get("aws_access_key_id"),
            found.get("aws_secret_access_key"),
        ) {
            (Some(k), Some(s)) => Ok(match found.get("aws_session_token") {
                Some(t) => Credentials::new_with_token(k.clone(), s.clone(), t.clone()),
                None => Credentials::new(k.clone(), s.clone()),
            }),
            _ => Err(missing()),
        }
    }
}

/// The keys of `[profile]` in an INI credentials file.
pub fn profile_keys(text: &str, profile: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            inside =
                name == profile || name.strip_prefix("profile ").map(str::trim) == Some(profile);
            continue;
        }
        if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
    }
    out
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length, so new_from_slice cannot fail.
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// RFC 3986 percent-encoding of everything but the unreserved characters (and `/` when asked),
/// as SigV4's canonical form wants.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Signs a request with AWS Signature Version 4 and returns the headers to send with it
/// (`x-amz-date`, `x-amz-security-token` for temporary credentials, `authorization`).
/// `headers` are the others that are sent and signed (lower-case names); `host` is taken from the
/// URL; `(region, service)` is the credential scope. The path is encoded once more, as every
/// service but S3 expects.
pub fn sign(
    method: &str,
    url: &url::Url,
    headers: &[(&str, &str)],
    body: &[u8],
    (region, service): (&str, &str),
    creds: &Credentials,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<(String, String)> {
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let date = &amz_date[..8];
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let mut signed: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    signed.push(("host".into(), host));
    signed.push(("x-amz-date".into(), amz_date.clone()));
    if let Some(t) = creds.token() {
        signed.push(("x-amz-security-token".into(), t.to_string()));
    }
    signed.sort();
    let canonical_headers: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_names = signed
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let path = if url.path().is_empty() {
        "/"
    } else {
        url.path()
    };
    let mut query: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (uri_encode(&k, false), uri_encode(&v, false)))
        .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical = format!(
        "{method}\n{}\n{query}\n{canonical_headers}\n{signed_names}\n{}",
        uri_encode(path, true),
        hex::encode(Sha256::digest(body))
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k = hmac(
        format!("AWS4{}", creds.secret()).as_bytes(),
        date.as_bytes(),
    );
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, service.as_bytes());
    let k = hmac(&k, b"aws4_request");
    let signature = hex::encode(hmac(&k, to_sign.as_bytes()));
    let mut out = vec![("x-amz-date".to_string(), amz_date)];
    if let Some(t) = creds.token() {
        out.push(("x-amz-security-token".into(), t.to_string()));
    }
    out.push((
        "authorization".into(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_names}, Signature={signature}",
            creds.key()
        ),
    ));
    out
}

/// The error of an AWS JSON API answer: its `__type` (without the `namespace#` prefix) and
/// message.
pub fn json_error(body: &[u8]) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let ty = v
        .get("__type")
        .and_then(|t| t.as_str())
        .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
        .unwrap_or_default();
    let msg = v
        .get("message")
        .or_else(|| v.get("Message"))
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_string();
    (ty, msg)
}

/// An AWS JSON API that one component calls (CloudWatch Logs for `awsemf`, X-Ray for `awsxray`):
/// the client, the credentials, read for every call, and the region and URL resolved at start.
/// Cloning it shares the resolved target (a background task of the component's calls the same
/// API).
#[derive(Clone)]
pub struct JsonApi {
    /// The signing name, also the first label of AWS's host (`logs`, `xray`).
    service: &'static str,
    /// The service as messages name it (`CloudWatch Logs`, `X-Ray`).
    name: &'static str,
    client: reqwest::Client,
    credentials: CredentialSource,
    target: Arc<OnceLock<(String, url::Url)>>,
}

/// A call that failed: `status` 0 when it never reached the service (no start, no credentials, no
/// connection), else the service's status and its error's `__type` and message.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub error_type: String,
    pub message: String,
}

impl ApiError {
    fn unsent(message: String) -> ApiError {
        ApiError {
            status: 0,
            error_type: String::new(),
            message,
        }
    }

    /// The send error of `call` to the service `name`: retried when the call never arrived or
    /// [`retryable`] says so, dropped otherwise.
    pub fn send_error(self, name: &str, call: &str) -> SendError {
        let reason = if self.status == 0 {
            self.message
        } else {
            format!(
                "{name} answered {} {} to {call}: {}",
                self.status, self.error_type, self.message
            )
        };
        if self.status == 0 || retryable(self.status, &self.error_type) {
            SendError::retryable(reason)
        } else {
            SendError::permanent(reason)
        }
    }
}

impl JsonApi {
    pub fn new(
        service: &'static str,
        name: &'static str,
        client: reqwest::Client,
        credentials: CredentialSource,
    ) -> JsonApi {
        JsonApi {
            service,
            name,
            client,
            credentials,
            target: Arc::new(OnceLock::new()),
        }
    }

    /// The service as messages name it.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Resolves the region (see [`AwsSession::resolve_region`]) and the URL (`endpoint`, else
    /// AWS's regional one) of exporter `id`; credentials missing now are logged, not fatal, as
    /// they are read again for every call.
    pub async fn start(&self, id: &ComponentId, session: &AwsSession) -> anyhow::Result<()> {
        let region = session
            .resolve_region(&self.client)
            .await
            .map_err(|e| anyhow::anyhow!("exporters::{id}: {e}"))?;
        let url = if session.endpoint.is_empty() {
            service_url(self.service, &region)
        } else {
            endpoint_url(&session.endpoint)
                .map_err(|e| anyhow::anyhow!("exporters::{id}::endpoint: {e}"))?
        };
        let _ = self.target.set((region, url));
        if let Err(e) = self.credentials.load() {
            tracing::error!(exporter = %id, "{e}; sends are retried until credentials appear");
        }
        Ok(())
    }

    /// Signs and posts `body` to the service's URL with `path` appended (none: the URL as it is),
    /// sending and signing `headers` too; the answer's JSON (`null` when it is none).
    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ApiError> {
        let (region, base) = self
            .target
            .get()
            .ok_or_else(|| ApiError::unsent("the exporter has not started".into()))?;
        let creds = self.credentials.load().map_err(ApiError::unsent)?;
        let mut url = base.clone();
        if !path.is_empty() {
            url.set_path(&format!("{}{path}", base.path().trim_end_matches('/')));
        }
        let body = body.to_string().into_bytes();
        let signed = sign(
            "POST",
            &url,
            headers,
            &body,
            (region, self.service),
            &creds,
            chrono::Utc::now(),
        );
        let mut req = self.client.post(url.clone()).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        for (k, v) in signed {
            req = req.header(k, v);
        }
        let resp = req.send().await.map_err(|e| {
            ApiError::unsent(format!(
                "cannot reach {} at {url}: {}",
                self.name,
                crate::helper::http::error_chain(&e)
            ))
        })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap_or_default();
        if (200..300).contains(&status) {
            return Ok(serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null));
        }
        let (error_type, message) = json_error(&bytes);
        Err(ApiError {
            status,
            error_type,
            message,
        })
    }
}

/// Whether an AWS answer is worth trying again: 5xx, 429, and the throttling error types.
pub fn retryable(status: u16, error_type: &str) -> bool {
    status >= 500
        || status == 429
        || matches!(
            error_type,
            "ThrottlingException"
                | "Throttling"
                | "ThrottledException"
                | "ServiceUnavailableException"
                | "RequestTimeout"
                | "RequestTimeoutException"
                | "LimitExceededException"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A double of the EC2 metadata service's IMDSv2 protocol (the real one runs only on EC2):
    /// a token for a PUT with a TTL header, then GETs that must carry it.
    async fn imds_double() -> String {
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::{get, put};
        let token = |h: HeaderMap| async move {
            match h.get("x-aws-ec2-metadata-token-ttl-seconds") {
                Some(_) => (StatusCode::OK, "tok\n".to_string()),
                None => (StatusCode::BAD_REQUEST, String::new()),
            }
        };
        let authed = |body: String| {
            move |h: HeaderMap| async move {
                match h.get("x-aws-ec2-metadata-token") {
                    Some(t) if t == "tok" => (StatusCode::OK, body),
                    _ => (StatusCode::UNAUTHORIZED, String::new()),
                }
            }
        };
        let app = axum::Router::new()
            .route("/latest/api/token", put(token))
            .route(
                "/latest/meta-data/placement/region",
                get(authed("eu-west-3".into())),
            )
            .route(
                "/latest/meta-data/huge",
                get(authed("x".repeat(IMDS_MAX_ANSWER + 1))),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn imds_session_sends_its_token_and_bounds_answers() {
        let base = imds_double().await;
        let client = reqwest::Client::new();
        let imds = Imds::open_at(&client, &base).await.unwrap();
        let region = imds
            .get("meta-data/placement/region", "the region")
            .await
            .unwrap();
        assert_eq!(region, "eu-west-3");
        let e = imds
            .get("meta-data/huge", "the document")
            .await
            .unwrap_err();
        assert!(
            e.ends_with("the document is larger than 65536 bytes"),
            "{e}"
        );
        let e = imds.get("meta-data/none", "nothing").await.unwrap_err();
        assert!(e.ends_with("answered 404 Not Found for nothing"), "{e}");
    }

    /// The vector was made with botocore's `SigV4Auth` (botocore 1.44, the test venv's) on the same
    /// request, credentials and time.
    #[test]
    fn signature_matches_botocore() {
        let creds = Credentials::new_with_token(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "TOKEN123",
        );
        let url: url::Url = "https://logs.us-west-2.amazonaws.com/".parse().unwrap();
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-05T10:07:42Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let body = br#"{"logGroupName":"g"}"#;
        let h = sign(
            "POST",
            &url,
            &[
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amz-target", "Logs_20140328.CreateLogGroup"),
            ],
            body,
            ("us-west-2", "logs"),
            &creds,
            now,
        );
        let auth = &h.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert_eq!(auth, BOTOCORE_LOGS);
        let url: url::Url = "http://127.0.0.1:2000/GetSamplingRules?a=b%20c&A=1"
            .parse()
            .unwrap();
        let creds = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let h = sign("POST", &url, &[], b"{}", ("eu-west-1", "xray"), &creds, now);
        assert_eq!(h.len(), 2);
        assert_eq!(h[1].1, BOTOCORE_XRAY);
    }

    /// [`JsonApi`] against a double: the path appended to the endpoint's, the headers sent and
    /// signed, and which answers are retried.
    #[tokio::test]
    async fn json_api_posts_signed_and_classifies_answers() {
        let app = axum::Router::new().fallback(
            |uri: http::Uri, headers: http::HeaderMap, body: String| async move {
                let h = |k: &str| {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                let auth = h("authorization");
                let signed = auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
                    && auth.contains("/us-east-1/xray/aws4_request")
                    && auth.contains("SignedHeaders=content-type;host;x-amz-date")
                    && !h("x-amz-date").is_empty();
                let answer = |status: u16, ty: &str| {
                    let status = http::StatusCode::from_u16(status).unwrap();
                    (status, format!(r#"{{"__type":"x#{ty}","message":"m"}}"#))
                };
                match uri.path() {
                    "/base/ok" if signed && h("content-type") == "application/json" => {
                        (http::StatusCode::OK, format!(r#"{{"body":{body}}}"#))
                    }
                    "/base/throttled" => answer(400, "ThrottlingException"),
                    "/base/refused" => answer(400, "InvalidParameterException"),
                    _ => answer(404, "Unexpected"),
                }
            },
        );
        let base = crate::helper::test_http::serve(app).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = AKIDTEST\naws_secret_access_key = s\n",
        )
        .unwrap();
        let creds = CredentialSource {
            file: Some(file),
            profile: "default".into(),
        };
        let api = JsonApi::new("xray", "X-Ray", reqwest::Client::new(), creds);
        let json = [("content-type", "application/json")];
        let body = serde_json::json!({"a": 1});
        let e = api.post("/ok", &json, &body).await.unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (0, "the exporter has not started")
        );
        let session = AwsSession {
            region: "us-east-1".into(),
            endpoint: format!("{base}/base/"),
            ..Default::default()
        };
        let id = ComponentId::parse("awsxray").unwrap();
        api.start(&id, &session).await.unwrap();
        // Skipped when the environment has keys of its own: they would be signed instead.
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            let answer = api.post("/ok", &json, &body).await.unwrap();
            assert_eq!(answer, serde_json::json!({"body": {"a": 1}}));
        }
        let throttled = api.post("/throttled", &json, &body).await.unwrap_err();
        assert_eq!(
            (throttled.status, throttled.error_type.as_str()),
            (400, "ThrottlingException")
        );
        let e = throttled.send_error(api.name(), "PutTraceSegments");
        assert!(e.is_retryable(), "{e:?}");
        let e = api.post("/refused", &json, &body).await.unwrap_err();
        let e = e.send_error(api.name(), "PutTraceSegments");
        assert!(!e.is_retryable(), "{e:?}");
        assert_eq!(
            e.reason(),
            "X-Ray answered 400 InvalidParameterException to PutTraceSegments: m"
        );
    }

    const BOTOCORE_LOGS: &str =
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261205/us-west-2/logs/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, \
         Signature=6b011099207a119dc0dac4c722749a0fa5dee25ae0620869d75c8596637657d7";
    const BOTOCORE_XRAY: &str =
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261205/eu-west-1/xray/aws4_request, \
         SignedHeaders=host;x-amz-date, \
         Signature=4f0034a719deef369fc9167549949ea98e9643fe9a59ae4677515a5584aa06ab";

    #[test]
    fn error_types_and_classes() {
        let (t, m) = json_error(
            br#"{"__type":"com.amazonaws.logs#ResourceNotFoundException","message":"no group"}"#,
        );
        assert_eq!(
            (t.as_str(), m.as_str()),
            ("ResourceNotFoundException", "no group")
        );
        assert!(retryable(400, "ThrottlingException"));
        assert!(retryable(503, ""));
        assert!(!retryable(400, "InvalidParameterException"));
    }
}
