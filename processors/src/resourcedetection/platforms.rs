//! The detectors that read a platform's own API rather than a cloud's metadata service:
//! `openshift` (the cluster's `Infrastructure` from the API server), `consul` (the local agent's
//! `/v1/agent/self`) and `azurecontainerapps` (the environment variables Azure Container Apps
//! sets). Off its platform each finds nothing; an API that answers wrongly costs only its
//! detector's attributes, with a warning, as otelcol logs a detector's error and goes on.
//!
//! Tests (`cloud_tests.rs`) run `openshift` against `vigil_tests::k8s_api` serving an
//! `Infrastructure` shaped as OpenShift's API reference documents it, and `consul` against an
//! HTTP double answering `/v1/agent/self` with the agent's documented payload: neither an
//! OpenShift cluster nor a Consul agent runs where vigil is tested.

use super::cloud::{call, client, json, s, Miss, Out};
use super::{ConsulConfig, Found, OpenshiftConfig};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Where a pod's service account token and cluster CA are mounted.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
pub const SERVICE_ACCOUNT_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// The most a token file may hold; service account tokens are about 1 KiB.
const MAX_TOKEN: u64 = 64 * 1024;

fn read_small(path: &str) -> Result<String, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut text = String::new();
    f.take(MAX_TOKEN + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{path}: {e}"))?;
    if text.len() as u64 > MAX_TOKEN {
        return Err(format!("{path} is larger than {MAX_TOKEN} bytes"));
    }
    Ok(text.trim().to_string())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Infrastructure {
    status: InfraStatus,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct InfraStatus {
    infrastructure_name: String,
    platform_status: PlatformStatus,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PlatformStatus {
    #[serde(rename = "type")]
    kind: String,
    aws: Region,
    azure: CloudName,
    gcp: Region,
    ibmcloud: Location,
    openstack: CloudName,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Region {
    region: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct CloudName {
    cloud_name: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Location {
    location: String,
}

/// The path otelcol reads: the `cluster` Infrastructure's status subresource.
pub const OPENSHIFT_INFRASTRUCTURE: &str =
    "/apis/config.openshift.io/v1/infrastructures/cluster/status";

/// OpenShift 4: `GET <address>/apis/config.openshift.io/v1/infrastructures/cluster/status` with
/// the bearer `token`. `address` defaults to `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`,
/// `token` to the pod's service account token and, unless `tls::insecure` or `tls::ca_file` is
/// set, the CA to the service account's. The platform type decides the provider and platform
/// (`aws`, `azure`, `gcp`, `ibmcloud`; `openstack` gives only a region), and the
/// infrastructure name is the cluster's name.
pub async fn openshift(
    cfg: &OpenshiftConfig,
    timeout: Duration,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Out {
    let address = if cfg.address.is_empty() {
        let host = env("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty());
        let port = env("KUBERNETES_SERVICE_PORT").filter(|p| !p.is_empty());
        let (Some(host), Some(port)) = (host, port) else {
            return Err(Miss::Failed(
                "no address, and KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not both set"
                    .into(),
            ));
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        format!("https://{host}:{port}")
    } else {
        cfg.address.trim_end_matches('/').to_string()
    };
    let token = if cfg.token.is_empty() {
        read_small(SERVICE_ACCOUNT_TOKEN).map_err(Miss::Failed)?
    } else {
        cfg.token.clone()
    };
    let mut b = reqwest::Client::builder()
        // The API server is inside the cluster: a proxy from the environment must not see it.
        .no_proxy()
        .timeout(timeout);
    if address.starts_with("https://") {
        let mut tls = cfg.tls.clone();
        if !tls.insecure && tls.ca_file.is_none() {
            tls.ca_file = Some(SERVICE_ACCOUNT_CA.into());
        }
        let rustls = vigil_core::net::client_tls::client_config(&tls, &[], |k, m| {
            vigil_core::ConfigError::at(format!("openshift::{k}"), m)
        })
        .map_err(|e| Miss::Failed(e.to_string()))?;
        b = b.tls_backend_preconfigured((*rustls).clone());
    }
    let c = b
        .build()
        .map_err(|e| Miss::Failed(format!("HTTP client: {e}")))?;
    let (_, body) = call(
        c.get(format!("{address}{OPENSHIFT_INFRASTRUCTURE}"))
            .bearer_auth(token),
    )
    .await
    .map_err(|m| match m {
        // The address was given or found in the environment: not answering is a failure.
        Miss::Absent(e) => Miss::Failed(e),
        f => f,
    })?;
    let infra: Infrastructure = json("OpenShift Infrastructure", &body)?;
    let st = infra.status;
    let p = st.platform_status;
    let (provider, platform, region) = match p.kind.to_lowercase().as_str() {
        "aws" => ("aws", "aws_openshift", p.aws.region),
        // otelcol takes the Azure cloud's name (AzurePublicCloud) as the region.
        "azure" => ("azure", "azure_openshift", p.azure.cloud_name),
        "gcp" => ("gcp", "gcp_openshift", p.gcp.region),
        "ibmcloud" => ("ibm_cloud", "ibm_cloud_openshift", p.ibmcloud.location),
        "openstack" => ("", "", p.openstack.cloud_name),
        _ => ("", "", String::new()),
    };
    let mut out: Found = Vec::new();
    for (k, v) in [
        ("k8s.cluster.name", st.infrastructure_name),
        ("cloud.provider", provider.to_string()),
        ("cloud.platform", platform.to_string()),
        ("cloud.region", region.to_lowercase()),
    ] {
        if !v.is_empty() {
            out.push((k.into(), s(v)));
        }
    }
    Ok(out)
}

/// The Consul agent's address: `address`, else `CONSUL_HTTP_ADDR`, else `127.0.0.1:8500`, as
/// the Consul API client reads them; a bare `host:port` is `http` unless `CONSUL_HTTP_SSL` is true.
pub fn consul_address(
    cfg: &ConsulConfig,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<String, String> {
    let addr = Some(cfg.address.clone())
        .filter(|a| !a.is_empty())
        .or_else(|| env("CONSUL_HTTP_ADDR").filter(|a| !a.is_empty()))
        .unwrap_or_else(|| "127.0.0.1:8500".into());
    if addr.starts_with("unix://") {
        return Err(format!(
            "address {addr:?}: a Unix socket is not supported; give the agent's HTTP address"
        ));
    }
    if addr.starts_with("http://") || addr.starts_with("https://") {
        return Ok(addr.trim_end_matches('/').to_string());
    }
    let ssl = env("CONSUL_HTTP_SSL")
        .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "True" | "t" | "T"));
    Ok(format!("{}://{addr}", if ssl { "https" } else { "http" }))
}

/// The ACL token: `token_file`'s contents, else `token`, else `CONSUL_HTTP_TOKEN_FILE`'s
/// contents, else `CONSUL_HTTP_TOKEN`. (otelcol sends `token_file`'s path itself as the token,
/// which no Consul accepts; vigil reads the file, as the key's documentation says.)
fn consul_token(
    cfg: &ConsulConfig,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<Option<String>, String> {
    if !cfg.token_file.is_empty() {
        return read_small(&cfg.token_file).map(Some);
    }
    if !cfg.token.is_empty() {
        return Ok(Some(cfg.token.clone()));
    }
    if let Some(f) = env("CONSUL_HTTP_TOKEN_FILE").filter(|f| !f.is_empty()) {
        return read_small(&f).map(Some);
    }
    Ok(env("CONSUL_HTTP_TOKEN").filter(|t| !t.is_empty()))
}

#[derive(Deserialize)]
struct AgentSelf {
    #[serde(rename = "Config")]
    config: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(rename = "Meta", default)]
    meta: Option<BTreeMap<String, serde_json::Value>>,
}

/// Consul: the local agent's `/v1/agent/self` (with `dc` and `ns` when `datacenter` and
/// `namespace` are set, and the token in `X-Consul-Token`): `NodeName` is `host.name`,
/// `Datacenter` is `cloud.region`, `NodeID` is `host.id`, and every node `Meta` key listed in
/// `meta` becomes an attribute of that name. No agent listening means not on Consul.
pub async fn consul(
    cfg: &ConsulConfig,
    timeout: Duration,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Out {
    let base = consul_address(cfg, env).map_err(Miss::Failed)?;
    let token = consul_token(cfg, env).map_err(Miss::Failed)?;
    let c = client(timeout, None)?;
    let mut q: Vec<(&str, &str)> = Vec::new();
    if !cfg.datacenter.is_empty() {
        q.push(("dc", &cfg.datacenter));
    }
    if !cfg.namespace.is_empty() {
        q.push(("ns", &cfg.namespace));
    }
    let mut url = reqwest::Url::parse(&format!("{base}/v1/agent/self"))
        .map_err(|e| Miss::Failed(format!("address {base:?}: {e}")))?;
    if !q.is_empty() {
        url.query_pairs_mut().extend_pairs(&q);
    }
    let mut req = c.get(url);
    if let Some(t) = token {
        req = req.header("X-Consul-Token", t);
    }
    let (_, body) = call(req).await?;
    let me: AgentSelf = json("Consul /v1/agent/self", &body)?;
    let config = me
        .config
        .ok_or_else(|| Miss::Failed("the agent's answer has no Config".into()))?;
    let field = |name: &str| match config.get(name) {
        Some(serde_json::Value::String(v)) => Ok(v.clone()),
        _ => Err(Miss::Failed(format!(
            "the agent's Config has no {name} string"
        ))),
    };
    let (host, dc, id) = (field("NodeName")?, field("Datacenter")?, field("NodeID")?);
    let mut out: Found = Vec::new();
    // otelcol writes the node metadata after the three, so a listed key of the same name wins:
    // here it comes first, and the first value of a key is the one kept.
    for (k, v) in me.meta.unwrap_or_default() {
        if cfg.meta.contains_key(&k) {
            if let serde_json::Value::String(v) = v {
                out.push((k, s(v)));
            }
        }
    }
    for (k, v) in [("host.name", host), ("cloud.region", dc), ("host.id", id)] {
        if !out.iter().any(|(o, _)| o == k) {
            out.push((k.into(), s(v)));
        }
    }
    Ok(out)
}

/// Azure Container Apps: `CONTAINER_APP_NAME` (the app, `service.name`) decides;
/// `CONTAINER_APP_REPLICA_NAME` is `service.instance.id`. These are the platform's built-in
/// variables, as the OpenTelemetry Go detector otelcol uses reads them.
pub fn azurecontainerapps(env: &(dyn Fn(&str) -> Option<String> + Sync)) -> Out {
    let Some(app) = env("CONTAINER_APP_NAME").filter(|v| !v.is_empty()) else {
        return Err(Miss::Absent("CONTAINER_APP_NAME is not set".into()));
    };
    let mut out: Found = vec![
        ("cloud.provider".into(), s("azure")),
        ("cloud.platform".into(), s("azure.container_apps")),
        ("service.name".into(), s(app)),
    ];
    match env("CONTAINER_APP_REPLICA_NAME").filter(|v| !v.is_empty()) {
        Some(r) => out.push(("service.instance.id".into(), s(r))),
        None => tracing::debug!(
            "azurecontainerapps detector: CONTAINER_APP_REPLICA_NAME is not set, so service.instance.id is left out"
        ),
    }
    Ok(out)
}
