//! `awsproxy`: otelcol's X-Ray proxy. X-Ray SDKs in the node's applications call it, unsigned,
//! for sampling rules and targets (`/GetSamplingRules`, `/SamplingTargets`) and anything else of
//! X-Ray's API; it signs each request with the node's AWS credentials (SigV4, `service_name`,
//! default `xray`) and forwards it to X-Ray (`aws_endpoint`, else the regional endpoint), then
//! copies the answer back. Credentials and region come as for the AWS exporters
//! (`vigil_exporters::helper::aws`); a `role_arn` is refused, as vigil has no STS client.
//!
//! Bounded: a request body larger than [`MAX_BODY`] is refused with 413, and at most
//! [`MAX_IN_FLIGHT`] requests are forwarded at once (the rest get 503). Counted in
//! `vigil_awsproxy_requests{extension,result}` (`forwarded`, `too_large`, `busy`, `failed`). The
//! server is `http_forwarder`'s too (`super::forward`); what is this extension's is the signing.
//!
//! The `awsxray` receiver's `proxy_server` is this proxy: otelcol shares one `proxy.Config` between
//! them, so the receiver takes [`AwsProxyConfig`] and runs [`check`] and [`serve`] under its own
//! name (its counter's label is then `receiver`).

use super::forward::{self, plain, Bounds, Forward};
use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::http::request::Parts;
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use vigil_core::config::{check_endpoint, TlsClientConfig};
use vigil_core::{Component, ComponentId, ComponentKind, ConfigError, Extension, Host};
use vigil_exporters::helper::aws::{self, AwsSession, CredentialSource};

/// Requests forwarded at once.
pub const MAX_IN_FLIGHT: usize = 64;
/// X-Ray's sampling calls are small; anything larger is not an SDK's.
pub const MAX_BODY: usize = 1024 * 1024;

fn default_endpoint() -> String {
    "localhost:2000".into()
}
fn default_service() -> String {
    "xray".into()
}

/// otelcol's `proxy.Config`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AwsProxyConfig {
    /// Where SDKs reach the proxy.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// An HTTP(S) proxy for the requests to X-Ray.
    #[serde(default)]
    pub proxy_address: String,
    /// Client TLS towards X-Ray.
    #[serde(default)]
    pub tls: TlsClientConfig,
    #[serde(default)]
    pub region: String,
    /// Refused: vigil has no STS client.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role_arn: String,
    /// X-Ray's URL (else `https://xray.<region>.amazonaws.com`).
    #[serde(default)]
    pub aws_endpoint: String,
    /// Not on EC2: the region is not asked of the instance metadata service.
    #[serde(default)]
    pub local_mode: bool,
    /// The service the signature is for.
    #[serde(default = "default_service")]
    pub service_name: String,
    /// Accepted for otelcol's configs.
    #[serde(default)]
    pub imds_retries: u64,
}

impl Default for AwsProxyConfig {
    fn default() -> AwsProxyConfig {
        AwsProxyConfig {
            endpoint: default_endpoint(),
            proxy_address: String::new(),
            tls: TlsClientConfig::default(),
            region: String::new(),
            role_arn: String::new(),
            aws_endpoint: String::new(),
            local_mode: false,
            service_name: default_service(),
            imds_retries: 0,
        }
    }
}

impl AwsProxyConfig {
    fn session(&self) -> AwsSession {
        AwsSession {
            region: self.region.clone(),
            endpoint: self.aws_endpoint.clone(),
            proxy_address: self.proxy_address.clone(),
            no_verify_ssl: self.tls.insecure_skip_verify,
            local_mode: self.local_mode,
            role_arn: self.role_arn.clone(),
            ..Default::default()
        }
    }
}

/// Whose proxy this is: the extension's, or a receiver's section (`proxy_server::`), for the
/// key paths of errors, the listener's name and the counter's label.
#[derive(Clone, Copy)]
pub(crate) struct Owner<'a> {
    pub kind: ComponentKind,
    pub id: &'a ComponentId,
    /// Prepended to key paths: empty, or `proxy_server::`.
    pub prefix: &'static str,
}

impl Owner<'_> {
    fn err(&self, path: &str, msg: impl Into<String>) -> ConfigError {
        ConfigError::component(self.kind, self.id, format!("{}{path}", self.prefix), msg)
    }

    fn location(&self) -> String {
        format!("{}::{}", self.kind.section(), self.id)
    }
}

fn client(owner: Owner, cfg: &AwsProxyConfig) -> Result<reqwest::Client, ConfigError> {
    cfg.session()
        .client_with(owner.id, &cfg.tls)
        .map_err(|mut e| {
            e.location = owner.location();
            e.path = if e.path.starts_with("tls::") || e.path == "proxy_address" {
                format!("{}{}", owner.prefix, e.path)
            } else {
                format!("{}tls::{}", owner.prefix, e.path)
            };
            e
        })
}

/// otelcol's checks of a `proxy.Config`, with key paths under `owner`.
pub(crate) fn check(owner: Owner, cfg: &AwsProxyConfig) -> Result<(), ConfigError> {
    check_endpoint(&cfg.endpoint).map_err(|e| owner.err("endpoint", e))?;
    cfg.session().validate(|k, m| {
        let k = if k == "endpoint" { "aws_endpoint" } else { k };
        owner.err(k, m)
    })?;
    if cfg.service_name.trim().is_empty() {
        return Err(owner.err(
            "service_name",
            "must not be empty (the signature's service)",
        ));
    }
    client(owner, cfg).map(drop)
}

fn owner(id: &ComponentId) -> Owner<'_> {
    Owner {
        kind: ComponentKind::Extension,
        id,
        prefix: "",
    }
}

struct Factory;

/// The `awsproxy` extension factory (`aws_proxy` is accepted too).
pub fn factory() -> Arc<dyn vigil_core::factory::DynExtensionFactory> {
    vigil_core::factory::extension(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = AwsProxyConfig;

    fn type_name(&self) -> &'static str {
        "awsproxy"
    }

    fn validate(&self, id: &ComponentId, cfg: &AwsProxyConfig) -> Result<(), ConfigError> {
        check(owner(id), cfg)
    }
}

impl vigil_core::factory::ExtensionFactory for Factory {
    fn stability(&self) -> vigil_core::Stability {
        vigil_core::Stability::Beta
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: AwsProxyConfig,
    ) -> Result<Arc<dyn Extension>, ConfigError> {
        Ok(Arc::new(AwsProxy {
            id: set.id.clone(),
            cfg,
            tasks: set.tasks.clone(),
            credentials: CredentialSource::from_env(),
        }))
    }
}

struct AwsProxy {
    id: ComponentId,
    cfg: AwsProxyConfig,
    tasks: vigil_core::task::Tasks,
    credentials: CredentialSource,
}

impl Extension for AwsProxy {}

/// What `awsproxy` adds to the shared forwarding server: the signature and X-Ray's URL.
struct Signer {
    region: String,
    service: String,
    base: url::Url,
    client: reqwest::Client,
    credentials: CredentialSource,
}

/// Headers not passed on: one connection's, and the signature's own, which the proxy writes.
fn dropped(name: &HeaderName) -> bool {
    forward::hop_by_hop(name)
        || matches!(
            name.as_str(),
            "content-length"
                | "authorization"
                | "x-amz-date"
                | "x-amz-security-token"
                | "x-amz-content-sha256"
        )
}

/// Headers the signature covers besides host and date: the ones X-Ray reads.
fn signed(name: &str) -> bool {
    name == "content-type" || name.starts_with("x-amz-")
}

#[async_trait]
impl Forward for Signer {
    const COUNTER: &'static str = "vigil_awsproxy_requests";
    const BUSY: &'static str = "too many requests in flight; try again\n";

    fn request(
        &self,
        parts: &Parts,
        body: Bytes,
    ) -> Result<reqwest::RequestBuilder, Box<Response>> {
        let creds = self
            .credentials
            .load()
            .map_err(|e| Box::new(plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))))?;
        let mut url = self.base.clone();
        url.set_path(&format!(
            "{}{}",
            self.base.path().trim_end_matches('/'),
            parts.uri.path()
        ));
        url.set_query(parts.uri.query());
        let kept: Vec<(String, String)> = parts
            .headers
            .iter()
            .filter(|(k, _)| !dropped(k))
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let to_sign: Vec<(&str, &str)> = kept
            .iter()
            .filter(|(k, _)| signed(k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let signature = aws::sign(
            parts.method.as_str(),
            &url,
            &to_sign,
            &body,
            (&self.region, &self.service),
            &creds,
            chrono::Utc::now(),
        );
        let mut out = self.client.request(parts.method.clone(), url).body(body);
        for (k, v) in kept.iter().chain(signature.iter()) {
            out = out.header(k, v);
        }
        Ok(out)
    }

    async fn respond(&self, _parts: &Parts, answer: reqwest::Response) -> Response {
        let resp = forward::head(&answer, |k| !dropped(k));
        let bytes = answer.bytes().await.unwrap_or_default();
        forward::finish(resp, Body::from(bytes))
    }
}

/// Resolves the region, binds `cfg.endpoint` and serves the signing proxy until `tasks` stop.
pub(crate) async fn serve(
    owner: Owner<'_>,
    tasks: &vigil_core::task::Tasks,
    cfg: &AwsProxyConfig,
    credentials: CredentialSource,
) -> anyhow::Result<()> {
    let at = owner.location();
    let client = client(owner, cfg)?;
    let region = cfg
        .session()
        .resolve_region(&client)
        .await
        .map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
    let base = if cfg.aws_endpoint.is_empty() {
        aws::service_url("xray", &region)
    } else {
        aws::endpoint_url(&cfg.aws_endpoint)
            .map_err(|e| anyhow::anyhow!("{at}::{}aws_endpoint: {e}", owner.prefix))?
    };
    if let Err(e) = credentials.load() {
        tracing::error!(component = %at, "{e}; requests are answered 500 until credentials appear");
    }
    let signer = Signer {
        region,
        service: cfg.service_name.trim().to_string(),
        base,
        client,
        credentials,
    };
    let bounds = Bounds {
        max_in_flight: MAX_IN_FLIGHT,
        max_body: MAX_BODY,
    };
    forward::serve_as(
        owner.kind,
        owner.id,
        tasks,
        &cfg.endpoint,
        None,
        bounds,
        signer,
    )
    .await
}

#[async_trait]
impl Component for AwsProxy {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        serve(
            owner(&self.id),
            &self.tasks,
            &self.cfg,
            self.credentials.clone(),
        )
        .await
    }

    fn tasks(&self) -> Option<&vigil_core::task::Tasks> {
        Some(&self.tasks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::factory::FactoryBase;

    fn parse(v: serde_json::Value) -> Result<AwsProxyConfig, ConfigError> {
        let id = ComponentId::new("awsproxy", None);
        let cfg: AwsProxyConfig = vigil_core::config::decode(ComponentKind::Extension, &id, &v)?;
        Factory.validate(&id, &cfg).map(|_| cfg)
    }

    #[test]
    fn defaults_and_mistakes() {
        let cfg = parse(serde_json::Value::Null).unwrap();
        assert_eq!(cfg.endpoint, "localhost:2000");
        assert_eq!(cfg.service_name, "xray");
        let e = parse(serde_json::json!({"role_arn": "arn:aws:iam::1:role/r"})).unwrap_err();
        assert!(
            e.to_string()
                .contains("extensions::awsproxy::role_arn: assuming a role"),
            "{e}"
        );
        let e = parse(serde_json::json!({"aws_endpoint": "ftp://x"})).unwrap_err();
        assert!(e.to_string().contains("aws_endpoint"), "{e}");
        let e = parse(serde_json::json!({"endpoint": "nowhere"})).unwrap_err();
        assert!(e.to_string().contains("endpoint"), "{e}");
        let e = parse(serde_json::json!({"tls": {"ca_file": "/no/such.pem"}})).unwrap_err();
        assert!(e.to_string().contains("tls::ca_file"), "{e}");
        parse(serde_json::json!({"region": "us-west-2", "local_mode": true, "proxy_address": "http://proxy:3128"}))
            .unwrap();
    }
}
