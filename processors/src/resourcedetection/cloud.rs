//! The detectors that ask a cloud or container metadata service: `ec2` and `eks` (EC2 IMDSv2),
//! `ecs` (task metadata v4), `gcp` (the GCE metadata server), `azure` and `aks` (Azure IMDS),
//! `oraclecloud` (OCI IMDS v2), `docker` (the Docker socket's `/info`) and `elastic_beanstalk` (the
//! environment file the platform writes). Off its platform a detector finds nothing: the service
//! does not answer within [`PROBE_TIMEOUT`], one debug line says so, and detection goes on, as
//! otelcol's detectors do. A service that answers but with something unreadable costs only its
//! detector's attributes, with a warning.
//!
//! Tests (`cloud_tests.rs`) run every detector against local doubles of these services that speak
//! the real protocol with the providers' documented responses: no cloud is reachable in CI, so the
//! detectors have not been run against the real services there.

use super::Found;
use regex::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use vigil_core::otlp::common::v1::{any_value::Value, AnyValue, ArrayValue};

/// How long a detector waits for its service to accept a connection before deciding it is not on
/// that platform. Link-local metadata addresses do not refuse off-cloud, they drop, so without
/// this each detector would wait for the whole `timeout`.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// The most a metadata response may hold; the documented ones are a few KiB.
pub const MAX_BODY: usize = 256 * 1024;

/// Where the services are. The defaults are the real addresses; the official clients' environment
/// variables move them (`AWS_EC2_METADATA_SERVICE_ENDPOINT`, `GCE_METADATA_HOST`, `DOCKER_HOST`), and
/// tests point every one of them at a local double, as otelcol's tests swap the providers.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub ec2: String,
    pub gcp: String,
    pub azure: String,
    pub oracle: String,
    pub docker_socket: String,
    pub beanstalk_conf: String,
    /// The link-local service that UpCloud, Vultr, OpenStack Nova and DigitalOcean each answer on.
    pub link_local: String,
    /// Scaleway's metadata service, on its own link-local address.
    pub scaleway: String,
    /// Alibaba Cloud ECS's metadata service.
    pub alibaba: String,
    /// Tencent Cloud's metadata service.
    pub tencent: String,
    /// IBM Cloud VPC's metadata host; `ibmcloud_vpc`'s `protocol` gives the scheme.
    pub ibm_vpc_host: String,
    /// IBM Cloud Classic's (SoftLayer's) resource metadata API.
    pub ibm_classic: String,
    /// The directory the Dynatrace OneAgent writes `dt_host_metadata.properties` into.
    pub dynatrace_dir: String,
    /// A Kubernetes client to use instead of the one `auth_type` describes (tests: the API double).
    pub kubernetes: Option<super::k8s::Client>,
}

impl Endpoints {
    pub fn from_env(env: &(dyn Fn(&str) -> Option<String> + Sync)) -> Self {
        let docker = env("DOCKER_HOST")
            .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
            .unwrap_or_else(|| "/var/run/docker.sock".into());
        Endpoints {
            ec2: env("AWS_EC2_METADATA_SERVICE_ENDPOINT")
                .map(|e| e.trim_end_matches('/').to_string())
                .unwrap_or_else(|| "http://169.254.169.254".into()),
            gcp: env("GCE_METADATA_HOST")
                .map(|h| format!("http://{h}"))
                .unwrap_or_else(|| "http://metadata.google.internal".into()),
            azure: "http://169.254.169.254".into(),
            oracle: "http://169.254.169.254".into(),
            docker_socket: docker,
            beanstalk_conf: "/var/elasticbeanstalk/xray/environment.conf".into(),
            link_local: "http://169.254.169.254".into(),
            scaleway: "http://169.254.42.42".into(),
            alibaba: "http://100.100.100.200".into(),
            tencent: "http://metadata.tencentyun.com".into(),
            ibm_vpc_host: "api.metadata.cloud.ibm.com".into(),
            ibm_classic: "https://api.service.softlayer.com/rest/v3.1/SoftLayer_Resource_Metadata"
                .into(),
            dynatrace_dir: super::providers::dynatrace_dir(env),
            kubernetes: None,
        }
    }
}

/// Why a detector found nothing: its platform is not here (quiet), or it answered wrongly (warned).
pub enum Miss {
    Absent(String),
    Failed(String),
}

pub(super) type Out = Result<Found, Miss>;

pub(super) fn s(v: impl Into<String>) -> Value {
    Value::StringValue(v.into())
}

pub(super) fn list(v: Vec<String>) -> Value {
    Value::ArrayValue(ArrayValue {
        values: v
            .into_iter()
            .map(|x| AnyValue {
                value: Some(Value::StringValue(x)),
            })
            .collect(),
    })
}

pub(super) fn client(timeout: Duration, socket: Option<&str>) -> Result<reqwest::Client, Miss> {
    // Metadata services are link-local: a proxy from the environment must not see these requests.
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(PROBE_TIMEOUT.min(timeout))
        .timeout(timeout);
    if let Some(p) = socket {
        b = b.unix_socket(p);
    }
    b.build()
        .map_err(|e| Miss::Failed(format!("HTTP client: {e}")))
}

/// Sends one request; a connection that fails or times out means the service is absent.
pub(super) async fn call(
    req: reqwest::RequestBuilder,
) -> Result<(reqwest::header::HeaderMap, String), Miss> {
    let mut resp = req.send().await.map_err(|e| Miss::Absent(e.to_string()))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Miss::Failed(format!("reading the response: {e}")))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(Miss::Failed(format!(
                "response larger than {MAX_BODY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        return Err(Miss::Failed(format!("HTTP {status}: {}", text.trim())));
    }
    Ok((headers, text))
}

/// The first request of a detector: any failure, an HTTP error status included, means the service
/// is not there (off EC2, 169.254.169.254 may be a proxy that answers 403), as otelcol decides.
pub(super) async fn probe(
    req: reqwest::RequestBuilder,
) -> Result<(reqwest::header::HeaderMap, String), Miss> {
    call(req).await.map_err(|m| match m {
        Miss::Failed(e) => Miss::Absent(e),
        absent => absent,
    })
}

pub(super) fn json<T: for<'de> Deserialize<'de>>(what: &str, text: &str) -> Result<T, Miss> {
    serde_json::from_str(text).map_err(|e| Miss::Failed(format!("{what}: {e}")))
}

/// EC2's instance identity document (the fields otelcol reads).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Identity {
    account_id: String,
    availability_zone: String,
    region: String,
    instance_id: String,
    image_id: String,
    instance_type: String,
}

/// EC2 through IMDSv2: a session token (PUT), then the identity document, the hostname and, when
/// `tags` is set, the instance tags that IMDS exposes (instance metadata tags must be enabled).
pub async fn ec2(ep: &Endpoints, timeout: Duration, platform: &str, tags: &[Regex]) -> Out {
    let c = client(timeout, None)?;
    let (_, token) = probe(
        c.put(format!("{}/latest/api/token", ep.ec2))
            .header("X-aws-ec2-metadata-token-ttl-seconds", "60"),
    )
    .await?;
    let get = |path: &str| {
        c.get(format!("{}{path}", ep.ec2))
            .header("X-aws-ec2-metadata-token", token.trim())
    };
    let (_, doc) = call(get("/latest/dynamic/instance-identity/document")).await?;
    let id: Identity = json("instance identity document", &doc)?;
    let (_, hostname) = call(get("/latest/meta-data/hostname")).await?;
    let mut out: Found = vec![
        ("cloud.provider".into(), s("aws")),
        ("cloud.platform".into(), s(platform)),
        ("cloud.region".into(), s(id.region)),
        ("cloud.account.id".into(), s(id.account_id)),
        ("cloud.availability_zone".into(), s(id.availability_zone)),
        ("host.id".into(), s(id.instance_id)),
        ("host.image.id".into(), s(id.image_id)),
        ("host.type".into(), s(id.instance_type)),
        ("host.name".into(), s(hostname.trim())),
    ];
    if !tags.is_empty() || platform == "aws_eks" {
        // Tag keys, one a line; 404 when instance metadata tags are off.
        match call(get("/latest/meta-data/tags/instance")).await {
            Ok((_, keys)) => {
                for key in keys.lines().map(str::trim).filter(|k| !k.is_empty()) {
                    let wanted = tags.iter().any(|r| r.is_match(key));
                    let cluster = platform == "aws_eks"
                        && (key == "eks:cluster-name" || key.starts_with("kubernetes.io/cluster/"));
                    if !wanted && !cluster {
                        continue;
                    }
                    let (_, v) =
                        call(get(&format!("/latest/meta-data/tags/instance/{key}"))).await?;
                    if wanted {
                        out.push((format!("ec2.tag.{key}"), s(v.trim())));
                    }
                    if cluster {
                        let name = key
                            .strip_prefix("kubernetes.io/cluster/")
                            .map(str::to_string)
                            .unwrap_or_else(|| v.trim().to_string());
                        if !out.iter().any(|(k, _)| k == "k8s.cluster.name") {
                            out.push(("k8s.cluster.name".into(), s(name)));
                        }
                    }
                }
            }
            Err(Miss::Absent(e) | Miss::Failed(e)) => {
                tracing::debug!("ec2 detector: instance tags unavailable: {e}");
            }
        }
    }
    Ok(out)
}

/// EKS: an EC2 instance that runs Kubernetes.
pub async fn eks(
    ep: &Endpoints,
    timeout: Duration,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Out {
    if env("KUBERNETES_SERVICE_HOST").is_none() {
        return Err(Miss::Absent("not running in Kubernetes".into()));
    }
    ec2(ep, timeout, "aws_eks", &[]).await
}

fn last_segment(v: &str) -> &str {
    v.rsplit('/').next().unwrap_or(v)
}

/// GCE and GKE through the metadata server; the answer must carry `Metadata-Flavor: Google`.
pub async fn gcp(
    ep: &Endpoints,
    timeout: Duration,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Out {
    let c = client(timeout, None)?;
    let get = |path: &str| {
        c.get(format!("{}/computeMetadata/v1/{path}", ep.gcp))
            .header("Metadata-Flavor", "Google")
    };
    let (h, instance_id) = probe(get("instance/id")).await?;
    if h.get("Metadata-Flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return Err(Miss::Absent(
            "the answer is not from a GCE metadata server".into(),
        ));
    }
    let (_, project) = call(get("project/project-id")).await?;
    let (_, zone) = call(get("instance/zone")).await?;
    let (_, name) = call(get("instance/name")).await?;
    let (_, mtype) = call(get("instance/machine-type")).await?;
    let zone = last_segment(zone.trim()).to_string();
    let region = zone.rsplit_once('-').map(|(r, _)| r.to_string());
    let gke = env("KUBERNETES_SERVICE_HOST").is_some();
    let mut out: Found = vec![
        ("cloud.provider".into(), s("gcp")),
        (
            "cloud.platform".into(),
            s(if gke {
                "gcp_kubernetes_engine"
            } else {
                "gcp_compute_engine"
            }),
        ),
        ("cloud.account.id".into(), s(project.trim())),
        ("host.id".into(), s(instance_id.trim())),
        ("host.name".into(), s(name.trim())),
        ("host.type".into(), s(last_segment(mtype.trim()))),
        ("gcp.gce.instance.name".into(), s(name.trim())),
    ];
    // Off by default in otelcol; a server without it costs only this attribute.
    if let Ok((_, h)) = call(get("instance/hostname")).await {
        out.push(("gcp.gce.instance.hostname".into(), s(h.trim())));
    }
    if gke {
        let (_, cluster) = call(get("instance/attributes/cluster-name")).await?;
        let (_, loc) = call(get("instance/attributes/cluster-location")).await?;
        out.push(("k8s.cluster.name".into(), s(cluster.trim())));
        // A regional cluster's location is a region (us-central1), a zonal one's a zone.
        let loc = loc.trim();
        if loc.matches('-').count() >= 2 {
            out.push(("cloud.availability_zone".into(), s(loc)));
        } else {
            out.push(("cloud.region".into(), s(loc)));
        }
    } else {
        out.push(("cloud.availability_zone".into(), s(zone.clone())));
        if let Some(r) = region {
            out.push(("cloud.region".into(), s(r)));
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AzureCompute {
    location: String,
    name: String,
    vm_id: String,
    vm_size: String,
    subscription_id: String,
    resource_group_name: String,
    #[serde(default)]
    vm_scale_set_name: String,
    #[serde(default)]
    zone: String,
    #[serde(default)]
    tags_list: Vec<AzureTag>,
}

#[derive(Deserialize)]
struct AzureTag {
    name: String,
    value: String,
}

/// The API version otelcol's azure detector asks IMDS for.
pub const AZURE_API_VERSION: &str = "2020-09-01";

async fn azure_compute(ep: &Endpoints, timeout: Duration) -> Result<AzureCompute, Miss> {
    let c = client(timeout, None)?;
    let (_, body) = probe(
        c.get(format!(
            "{}/metadata/instance/compute?api-version={AZURE_API_VERSION}&format=json",
            ep.azure
        ))
        .header("Metadata", "true"),
    )
    .await?;
    json("Azure IMDS compute", &body)
}

/// An Azure VM through IMDS.
pub async fn azure(ep: &Endpoints, timeout: Duration, tags: &[Regex]) -> Out {
    let m = azure_compute(ep, timeout).await?;
    let mut out: Found = vec![
        ("cloud.provider".into(), s("azure")),
        ("cloud.platform".into(), s("azure_vm")),
        ("host.name".into(), s(m.name.clone())),
        ("cloud.region".into(), s(m.location)),
        ("host.id".into(), s(m.vm_id)),
        ("cloud.account.id".into(), s(m.subscription_id)),
        ("azure.vm.name".into(), s(m.name)),
        ("azure.vm.size".into(), s(m.vm_size)),
        ("azure.vm.scaleset.name".into(), s(m.vm_scale_set_name)),
        ("azure.resourcegroup.name".into(), s(m.resource_group_name)),
    ];
    if !m.zone.is_empty() {
        out.push(("cloud.availability_zone".into(), s(m.zone)));
    }
    for t in m.tags_list {
        if tags.iter().any(|r| r.is_match(&t.name)) {
            out.push((format!("azure.tag.{}", t.name), s(t.value)));
        }
    }
    Ok(out)
}

/// AKS: an Azure VM that runs Kubernetes. The cluster name is read from the node resource group
/// AKS creates, `MC_<group>_<cluster>_<location>`, when that splits unambiguously.
pub async fn aks(
    ep: &Endpoints,
    timeout: Duration,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Out {
    if env("KUBERNETES_SERVICE_HOST").is_none() {
        return Err(Miss::Absent("not running in Kubernetes".into()));
    }
    let m = azure_compute(ep, timeout).await?;
    let mut out: Found = vec![
        ("cloud.provider".into(), s("azure")),
        ("cloud.platform".into(), s("azure_aks")),
    ];
    let parts: Vec<&str> = m.resource_group_name.split('_').collect();
    if parts.len() == 4 && parts[0].eq_ignore_ascii_case("MC") {
        out.push(("k8s.cluster.name".into(), s(parts[2])));
    }
    Ok(out)
}

#[derive(Deserialize)]
struct EcsTask {
    #[serde(rename = "Cluster")]
    cluster: String,
    #[serde(rename = "TaskARN")]
    task_arn: String,
    #[serde(rename = "Family")]
    family: String,
    #[serde(rename = "Revision")]
    revision: String,
    #[serde(rename = "AvailabilityZone", default)]
    availability_zone: String,
    #[serde(rename = "LaunchType", default)]
    launch_type: String,
}

#[derive(Deserialize)]
struct EcsContainer {
    #[serde(rename = "ContainerARN", default)]
    container_arn: String,
    #[serde(rename = "LogDriver", default)]
    log_driver: String,
    #[serde(rename = "LogOptions", default)]
    log_options: BTreeMap<String, String>,
}

/// ECS through task metadata v4 (`ECS_CONTAINER_METADATA_URI_V4`): the task and this container.
pub async fn ecs(timeout: Duration, env: &(dyn Fn(&str) -> Option<String> + Sync)) -> Out {
    let Some(base) = env("ECS_CONTAINER_METADATA_URI_V4").filter(|v| !v.is_empty()) else {
        return Err(Miss::Absent(
            "ECS_CONTAINER_METADATA_URI_V4 is not set".into(),
        ));
    };
    let base = base.trim_end_matches('/');
    let c = client(timeout, None)?;
    let (_, t) = call(c.get(format!("{base}/task"))).await?;
    let task: EcsTask = json("ECS task metadata", &t)?;
    let (_, ct) = call(c.get(base)).await?;
    let container: EcsContainer = json("ECS container metadata", &ct)?;
    // arn:aws:ecs:<region>:<account>:task/<cluster>/<id>
    let arn: Vec<&str> = task.task_arn.split(':').collect();
    if arn.len() < 6 || arn[2] != "ecs" {
        return Err(Miss::Failed(format!(
            "TaskARN {:?} is not an ECS task ARN",
            task.task_arn
        )));
    }
    let (region, account) = (arn[3].to_string(), arn[4].to_string());
    let cluster_arn = if task.cluster.starts_with("arn:") {
        task.cluster.clone()
    } else {
        format!("arn:aws:ecs:{region}:{account}:cluster/{}", task.cluster)
    };
    let mut out: Found = vec![
        ("cloud.provider".into(), s("aws")),
        ("cloud.platform".into(), s("aws_ecs")),
        ("cloud.account.id".into(), s(account.clone())),
        ("cloud.region".into(), s(region.clone())),
        ("aws.ecs.cluster.arn".into(), s(cluster_arn)),
        ("aws.ecs.task.arn".into(), s(task.task_arn.clone())),
        ("aws.ecs.task.family".into(), s(task.family)),
        ("aws.ecs.task.revision".into(), s(task.revision)),
        (
            "aws.ecs.task.id".into(),
            s(last_segment(&task.task_arn).to_string()),
        ),
    ];
    if !task.availability_zone.is_empty() {
        out.push(("cloud.availability_zone".into(), s(task.availability_zone)));
    }
    if !task.launch_type.is_empty() {
        out.push((
            "aws.ecs.launchtype".into(),
            s(task.launch_type.to_lowercase()),
        ));
    }
    if !container.container_arn.is_empty() {
        out.push(("aws.ecs.container.arn".into(), s(container.container_arn)));
    }
    if container.log_driver == "awslogs" {
        let o = &container.log_options;
        if let (Some(g), Some(st)) = (o.get("awslogs-group"), o.get("awslogs-stream")) {
            let r = o.get("awslogs-region").cloned().unwrap_or(region);
            let garn = format!("arn:aws:logs:{r}:{account}:log-group:{g}");
            out.push(("aws.log.group.names".into(), list(vec![g.clone()])));
            out.push(("aws.log.group.arns".into(), list(vec![garn.clone()])));
            out.push(("aws.log.stream.names".into(), list(vec![st.clone()])));
            out.push((
                "aws.log.stream.arns".into(),
                list(vec![format!("{garn}:log-stream:{st}")]),
            ));
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OracleInstance {
    id: String,
    hostname: String,
    shape: String,
    canonical_region_name: String,
    availability_domain: String,
}

/// Oracle Cloud through IMDS v2 (`Authorization: Bearer Oracle`).
pub async fn oraclecloud(ep: &Endpoints, timeout: Duration) -> Out {
    let c = client(timeout, None)?;
    let (_, body) = probe(
        c.get(format!("{}/opc/v2/instance/", ep.oracle))
            .header("Authorization", "Bearer Oracle"),
    )
    .await?;
    let m: OracleInstance = json("OCI instance metadata", &body)?;
    Ok(vec![
        ("cloud.provider".into(), s("oracle_cloud")),
        ("cloud.platform".into(), s("oracle_cloud_compute")),
        ("cloud.region".into(), s(m.canonical_region_name)),
        ("cloud.availability_zone".into(), s(m.availability_domain)),
        ("host.id".into(), s(m.id)),
        ("host.name".into(), s(m.hostname)),
        ("host.type".into(), s(m.shape)),
    ])
}

#[derive(Deserialize)]
struct DockerInfo {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "OSType")]
    os_type: String,
}

/// The Docker daemon's `/info` over its Unix socket: the host's name and OS type.
pub async fn docker(ep: &Endpoints, timeout: Duration) -> Out {
    if !std::path::Path::new(&ep.docker_socket).exists() {
        return Err(Miss::Absent(format!(
            "no Docker socket at {}",
            ep.docker_socket
        )));
    }
    let c = client(timeout, Some(&ep.docker_socket))?;
    let (_, body) = probe(c.get("http://docker/info")).await?;
    let info: DockerInfo = json("Docker /info", &body)?;
    Ok(vec![
        ("host.name".into(), s(info.name)),
        ("os.type".into(), s(info.os_type.to_lowercase())),
    ])
}

#[derive(Deserialize)]
struct Beanstalk {
    #[serde(default)]
    deployment_id: serde_json::Value,
    #[serde(default)]
    environment_name: String,
    #[serde(default)]
    version_label: String,
}

/// Elastic Beanstalk: the environment file its platform writes on every instance.
pub async fn elastic_beanstalk(ep: &Endpoints) -> Out {
    let text = match tokio::fs::read_to_string(&ep.beanstalk_conf).await {
        Ok(t) => t,
        Err(e) => return Err(Miss::Absent(format!("{}: {e}", ep.beanstalk_conf))),
    };
    let b: Beanstalk = json(&ep.beanstalk_conf, &text)?;
    let deployment = match b.deployment_id {
        serde_json::Value::String(v) => v,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    Ok(vec![
        ("cloud.provider".into(), s("aws")),
        ("cloud.platform".into(), s("aws_elastic_beanstalk")),
        ("deployment.environment".into(), s(b.environment_name)),
        ("service.instance.id".into(), s(deployment)),
        ("service.version".into(), s(b.version_label)),
    ])
}
