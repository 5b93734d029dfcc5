//! `resourcedetection`: otelcol's resource detection processor. At start it runs the configured
//! detectors once, all at the same time and each bounded by `timeout` — `env`
//! (`OTEL_RESOURCE_ATTRIBUTES`), `system` (host name and id, OS, CPU, interfaces), `k8snode` and
//! `k8s_api` (the node name from a downward-API environment variable, the node's and the cluster's
//! UIDs from the API server, in [`k8s`]) and the metadata-service detectors in [`cloud`]
//! (`ec2`, `eks`, `ecs`, `gcp`, `azure`, `aks`, `oraclecloud`, `docker`, `elastic_beanstalk`) and
//! [`providers`] (`heroku`, `lambda`, `dynatrace`, `upcloud`, `vultr`, `nova`, `digitalocean`,
//! `hetzner`, `scaleway`),
//! `kubeadm` (in [`k8s`]), the platform APIs in [`platforms`] (`openshift`, `consul`,
//! `azurecontainerapps`) and the metadata services in [`imds`] (`akamai`, `alibaba_ecs`,
//! `tencent_cvm`, `ibmcloud_vpc`, `ibmcloud_classic`) — and
//! then adds what they found to the resource of every batch, replacing existing values when
//! `override` is true. For the same key, the detector listed first wins.

pub mod cloud;
#[cfg(test)]
mod cloud_tests;
pub mod host;
pub mod imds;
pub mod k8s;
pub mod platforms;
pub mod providers;

use async_trait::async_trait;
use cloud::{Endpoints, Miss};
use regex::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use vigil_core::attrs::{attrs_to_string, kv};
use vigil_core::config::duration;
use vigil_core::otlp::common::v1::any_value::Value;
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Host, Processor,
    Signal, Telemetry,
};

/// What one detector found, in its order.
pub type Found = Vec<(String, Value)>;

const DETECTORS: &[&str] = &[
    "env",
    "system",
    "k8snode",
    "k8s_api",
    "ec2",
    "eks",
    "ecs",
    "gcp",
    "azure",
    "aks",
    "oraclecloud",
    "docker",
    "elastic_beanstalk",
    "heroku",
    "lambda",
    "dynatrace",
    "upcloud",
    "vultr",
    "nova",
    "digitalocean",
    "kubeadm",
    "openshift",
    "azurecontainerapps",
    "consul",
    "hetzner",
    "scaleway",
    "akamai",
    "alibaba_ecs",
    "tencent_cvm",
    "ibmcloud_vpc",
    "ibmcloud_classic",
];

/// otelcol-contrib's detectors that this build does not have: refused by name, so that a config
/// naming one says so rather than "unknown". Every detector of otelcol-contrib's README is built
/// today; the list stays for the next one it adds.
const NOT_BUILT: &[&str] = &[];

/// The detectors that `fail_on_missing_metadata` concerns: those that ask a metadata service over
/// the network, and `azurecontainerapps`, which otelcol also hands the setting.
const NETWORK: &[&str] = &[
    "azurecontainerapps",
    "ec2",
    "eks",
    "ecs",
    "gcp",
    "azure",
    "aks",
    "oraclecloud",
    "upcloud",
    "vultr",
    "nova",
    "digitalocean",
    "hetzner",
    "scaleway",
    "akamai",
    "alibaba_ecs",
    "tencent_cvm",
    "ibmcloud_vpc",
];

/// `{ enabled: bool }` toggles of optional resource attributes.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Toggle {
    pub enabled: bool,
}

/// The `system` detector's section.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SystemConfig {
    /// Where `host.name` comes from, first success wins: `dns` (the canonical name) or `os`
    /// (the kernel's hostname); otelcol's `cname` and `lookup` are taken as `dns`.
    #[serde(default = "default_sources")]
    pub hostname_sources: Vec<String>,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, Toggle>,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            hostname_sources: default_sources(),
            resource_attributes: BTreeMap::new(),
        }
    }
}

fn default_sources() -> Vec<String> {
    vec!["dns".into(), "os".into()]
}

/// The `k8snode` and `k8s_api` detectors' sections.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct K8sNodeConfig {
    /// The environment variable holding the node name (set from `spec.nodeName` by the downward API).
    #[serde(default = "default_node_env")]
    pub node_from_env_var: String,
    /// How the node's UID is read from the API server: `serviceAccount` (default), `kubeConfig`
    /// or `none`.
    #[serde(default)]
    pub auth_type: vigil_k8s::AuthType,
    /// The kubeconfig context with `auth_type: kubeConfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// client-go's rate limits (k8sconfig's `kube_api_qps`, `kube_api_burst`): a detection
    /// makes two or three requests, so vigil does not limit them; accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_api_qps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_api_burst: Option<u32>,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, Toggle>,
}

impl Default for K8sNodeConfig {
    fn default() -> Self {
        K8sNodeConfig {
            node_from_env_var: default_node_env(),
            auth_type: vigil_k8s::AuthType::default(),
            context: None,
            kube_api_qps: None,
            kube_api_burst: None,
            resource_attributes: BTreeMap::new(),
        }
    }
}

fn default_node_env() -> String {
    "K8S_NODE_NAME".into()
}

/// The `resourcedetection` processor config.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDetectionConfig {
    #[serde(default = "default_detectors")]
    pub detectors: Vec<String>,
    /// Detected values replace existing ones (default true).
    #[serde(default = "yes", rename = "override")]
    pub override_: bool,
    /// The limit for all detectors together (default 5s).
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// How often the detectors run again after start (otelcol's default 0: only at start). A
    /// refresh that fails keeps the attributes detected before, as otelcol does.
    #[serde(default, with = "duration")]
    pub refresh_interval: Duration,
    /// A network detector whose metadata service does not answer stops the processor from
    /// starting, instead of finding nothing (default false).
    #[serde(default)]
    pub fail_on_missing_metadata: bool,
    /// The confighttp client keys otelcol squashes into this config: otelcol builds no client from
    /// them (only `timeout` is used), so they are accepted and ignored alike.
    #[serde(default, skip_serializing)]
    pub endpoint: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub proxy_url: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub tls: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub read_buffer_size: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub write_buffer_size: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub headers: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub auth: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub compression: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub compression_params: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub max_idle_conns: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub max_idle_conns_per_host: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub max_conns_per_host: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub idle_conn_timeout: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub disable_keep_alives: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub http2_read_idle_timeout: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub http2_ping_timeout: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub cookies: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub force_attempt_http2: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub middlewares: Option<serde_json::Value>,
    /// otelcol's retry of a failing detection (`configretry.BackOffConfig`).
    #[serde(default)]
    pub retry: DetectRetry,
    #[serde(default)]
    pub env: EnvConfig,
    #[serde(default)]
    pub system: SystemConfig,
    #[serde(default)]
    pub k8snode: K8sNodeConfig,
    #[serde(default)]
    pub k8s_api: K8sNodeConfig,
    #[serde(default)]
    pub ec2: Ec2Config,
    #[serde(default)]
    pub eks: EksConfig,
    #[serde(default)]
    pub ecs: AttrsConfig,
    #[serde(default)]
    pub gcp: GcpConfig,
    #[serde(default)]
    pub azure: TagsConfig,
    #[serde(default)]
    pub aks: AttrsConfig,
    #[serde(default)]
    pub oraclecloud: AttrsConfig,
    #[serde(default)]
    pub docker: AttrsConfig,
    /// otelcol's section is `elasticbeanstalk` (the detector is `elastic_beanstalk`); both are read.
    #[serde(default, alias = "elasticbeanstalk")]
    pub elastic_beanstalk: AttrsConfig,
    #[serde(default)]
    pub heroku: AttrsConfig,
    #[serde(default)]
    pub lambda: AttrsConfig,
    #[serde(default)]
    pub upcloud: MetadataConfig,
    #[serde(default)]
    pub vultr: MetadataConfig,
    #[serde(default)]
    pub nova: NovaConfig,
    #[serde(default)]
    pub digitalocean: AttrsConfig,
    #[serde(default)]
    pub kubeadm: KubeadmConfig,
    #[serde(default)]
    pub openshift: OpenshiftConfig,
    #[serde(default)]
    pub azurecontainerapps: AttrsConfig,
    #[serde(default)]
    pub consul: ConsulConfig,
    #[serde(default)]
    pub hetzner: AttrsConfig,
    #[serde(default)]
    pub scaleway: AttrsConfig,
    #[serde(default)]
    pub akamai: AttrsConfig,
    #[serde(default)]
    pub alibaba_ecs: MetadataConfig,
    #[serde(default)]
    pub tencent_cvm: MetadataConfig,
    #[serde(default)]
    pub ibmcloud_vpc: IbmVpcConfig,
    #[serde(default)]
    pub ibmcloud_classic: AttrsConfig,
}

/// The `ibmcloud_vpc` section.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IbmVpcConfig {
    /// `http` (default) or `https`: the scheme of `api.metadata.cloud.ibm.com`, which must match
    /// the instance's metadata access mode ("secure access" is HTTPS only).
    #[serde(default = "default_protocol")]
    pub protocol: String,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, Toggle>,
}

impl Default for IbmVpcConfig {
    fn default() -> Self {
        IbmVpcConfig {
            protocol: default_protocol(),
            resource_attributes: BTreeMap::new(),
        }
    }
}

fn default_protocol() -> String {
    "http".into()
}

/// The `kubeadm` section: otelcol's API connection keys and the attribute toggles.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct KubeadmConfig {
    /// `serviceAccount` (default), `kubeConfig` or `none`, as for `k8s_api`.
    #[serde(default)]
    pub auth_type: vigil_k8s::AuthType,
    /// The kubeconfig context with `auth_type: kubeConfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// client-go's rate limits (k8sconfig's `kube_api_qps`, `kube_api_burst`): a detection
    /// makes two or three requests, so vigil does not limit them; accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_api_qps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_api_burst: Option<u32>,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, Toggle>,
}

/// The `openshift` section.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpenshiftConfig {
    /// The API server (default `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`).
    #[serde(default)]
    pub address: String,
    /// The bearer token (default: the pod's service account token).
    #[serde(default)]
    pub token: String,
    /// Client TLS to the API server; `ca_file` defaults to the service account's CA unless
    /// `insecure` is set.
    #[serde(default)]
    pub tls: vigil_core::config::TlsClientConfig,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, Toggle>,
}

/// The `consul` section. Empty keys fall back to the Consul client's environment variables
/// (`CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN`, `CONSUL_HTTP_TOKEN_FILE`, `CONSUL_HTTP_SSL`).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsulConfig {
    /// The agent's HTTP address (default `127.0.0.1:8500`).
    #[serde(default)]
    pub address: String,
    /// The datacenter asked for (default: the agent's).
    #[serde(default)]
    pub datacenter: String,
    /// The ACL token, when Consul's ACLs are on.
    #[serde(default)]
    pub token: String,
    /// A file holding the ACL token, read at each detection; wins over `token`.
    #[serde(default)]
    pub token_file: String,
    /// The namespace sent with the request (Consul Enterprise).
    #[serde(default)]
    pub namespace: String,
    /// The node metadata keys to copy as attributes of the same name (otelcol's map; its values
    /// are ignored).
    #[serde(default)]
    pub meta: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, Toggle>,
}

/// The `upcloud`, `vultr`, `alibaba_ecs` and `tencent_cvm` sections.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataConfig {
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, Toggle>,
    /// otelcol's deprecated per-detector form of the processor's `fail_on_missing_metadata`.
    #[serde(default)]
    pub fail_on_missing_metadata: bool,
}

/// The `nova` section: `labels` are regular expressions; every instance `meta` key matching one
/// becomes `openstack.nova.meta.<key>`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NovaConfig {
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, Toggle>,
    /// As in [`MetadataConfig`].
    #[serde(default)]
    pub fail_on_missing_metadata: bool,
}

/// A detector section that only toggles attributes.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttrsConfig {
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, Toggle>,
}

/// The `azure` section: `tags` are regular expressions; every instance tag whose key matches one
/// becomes `azure.tag.<key>`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TagsConfig {
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, Toggle>,
}

/// The `ec2` section.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ec2Config {
    /// Regular expressions; every instance tag whose key matches one becomes `ec2.tag.<key>`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// otelcol reads tags from the EC2 `DescribeTags` API unless this is true, then from IMDS.
    /// vigil always reads them from IMDS (no AWS credentials needed; instance metadata tags must
    /// be enabled), so both values are accepted.
    #[serde(default)]
    pub tags_from_imds: bool,
    /// The AWS SDK's retry settings for IMDS (otelcol's defaults 3 and 20s). vigil's IMDS client
    /// does not retry within a detection; `retry` and `timeout` bound it instead. Accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(
        default,
        with = "vigil_core::config::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_backoff: Option<Duration>,
    /// otelcol's deprecated per-detector form of the processor's `fail_on_missing_metadata`.
    #[serde(default)]
    pub fail_on_missing_metadata: bool,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, Toggle>,
}

/// The `gcp` section.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct GcpConfig {
    /// otelcol reads the GCE instance's labels matching these regular expressions from the
    /// Compute API. vigil does not call the Compute API: the expressions are checked and the
    /// labels are left out, with a warning at start.
    #[serde(default)]
    pub labels: Vec<String>,
    /// otelcol reads a GKE node's machine type from the Compute API; vigil does not (see
    /// `labels`), so `host.type` stays unset on GKE. Accepted.
    #[serde(default)]
    pub gke_host_type: bool,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, Toggle>,
}

/// The `env` section.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    /// Only these keys of `OTEL_RESOURCE_ATTRIBUTES` are kept (all when empty).
    #[serde(default)]
    pub allow_list: Vec<String>,
}

/// `retry`: a detection that fails (a detector's error, e.g. with `fail_on_missing_metadata`)
/// runs again after a growing pause, within `max_elapsed_time`, or within `timeout` when that is
/// 0, as otelcol does. vigil applies no jitter (`randomization_factor` is accepted).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DetectRetry {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "retry_initial", with = "duration")]
    pub initial_interval: Duration,
    #[serde(default = "half")]
    pub randomization_factor: f64,
    #[serde(default = "two")]
    pub multiplier: f64,
    #[serde(default = "retry_max", with = "duration")]
    pub max_interval: Duration,
    #[serde(default, with = "duration")]
    pub max_elapsed_time: Duration,
}

impl Default for DetectRetry {
    fn default() -> Self {
        DetectRetry {
            enabled: true,
            initial_interval: retry_initial(),
            randomization_factor: half(),
            multiplier: two(),
            max_interval: retry_max(),
            max_elapsed_time: Duration::ZERO,
        }
    }
}

fn retry_initial() -> Duration {
    Duration::from_secs(1)
}
fn retry_max() -> Duration {
    Duration::from_secs(30)
}
fn half() -> f64 {
    0.5
}
fn two() -> f64 {
    2.0
}

/// The `eks` section.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EksConfig {
    /// otelcol looks the node up in the EC2 API by this name to find its cluster tag; vigil reads
    /// the same tag of its own instance from IMDS, which needs no name, so this is accepted and
    /// not needed.
    #[serde(default)]
    pub node_from_env_var: Option<String>,
    /// The AWS SDK's IMDS settings (otelcol's defaults 1, 3 and 20s): vigil's IMDS client does
    /// not retry within a detection (`retry` and `timeout` bound it), so these are accepted and
    /// not used, as `ec2`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imds_check_max_retry: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(
        default,
        with = "vigil_core::config::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_backoff: Option<Duration>,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, Toggle>,
}

fn default_detectors() -> Vec<String> {
    vec!["env".into()]
}
fn yes() -> bool {
    true
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

const SYSTEM_ATTRS: &[(&str, bool)] = &[
    ("host.name", true),
    ("host.id", false),
    ("os.type", true),
    ("host.arch", false),
    ("os.description", false),
    ("os.name", false),
    ("os.version", false),
    ("os.build.id", false),
    ("host.cpu.vendor.id", false),
    ("host.cpu.family", false),
    ("host.cpu.model.id", false),
    ("host.cpu.model.name", false),
    ("host.cpu.stepping", false),
    ("host.cpu.cache.l2.size", false),
    ("host.ip", false),
    ("host.mac", false),
    ("host.interface", false),
];
const EC2_ATTRS: &[(&str, bool)] = &[
    ("cloud.provider", true),
    ("cloud.platform", true),
    ("cloud.region", true),
    ("cloud.account.id", true),
    ("cloud.availability_zone", true),
    ("host.id", true),
    ("host.image.id", true),
    ("host.type", true),
    ("host.name", true),
];
const EKS_ATTRS: &[(&str, bool)] = &[
    ("cloud.provider", true),
    ("cloud.platform", true),
    ("k8s.cluster.name", false),
    ("cloud.region", false),
    ("cloud.account.id", false),
    ("cloud.availability_zone", false),
    ("host.id", false),
    ("host.image.id", false),
    ("host.type", false),
    ("host.name", false),
];
const ECS_ATTRS: &[(&str, bool)] = &[
    ("cloud.provider", true),
    ("cloud.platform", true),
    ("cloud.account.id", true),
    ("cloud.region", true),
    ("cloud.availability_zone", true),
    ("aws.ecs.cluster.arn", true),
    ("aws.ecs.task.arn", true),
    ("aws.ecs.task.family", true),
    ("aws.ecs.task.id", true),
    ("aws.ecs.task.revision", true),
    ("aws.ecs.launchtype", true),
    ("aws.ecs.container.arn", true),
    ("aws.log.group.names", true),
    ("aws.log.group.arns", true),
    ("aws.log.stream.names", true),
    ("aws.log.stream.arns", true),
];
/// The `faas.*`, `gcp.cloud_run.*` and `gcp.gce.instance_group_manager.*` names are otelcol's
/// for Cloud Run, Cloud Functions, App Engine and managed instance groups, which vigil's `gcp`
/// detector does not detect: accepted, never set.
const GCP_ATTRS: &[(&str, bool)] = &[
    ("cloud.provider", true),
    ("cloud.platform", true),
    ("cloud.account.id", true),
    ("cloud.region", true),
    ("cloud.availability_zone", true),
    ("host.id", true),
    ("host.name", true),
    ("host.type", true),
    ("k8s.cluster.name", true),
    ("gcp.gce.instance.hostname", false),
    ("gcp.gce.instance.name", false),
    ("faas.id", true),
    ("faas.instance", true),
    ("faas.name", true),
    ("faas.version", true),
    ("gcp.cloud_run.job.execution", true),
    ("gcp.cloud_run.job.task_index", true),
    ("gcp.gce.instance_group_manager.name", true),
    ("gcp.gce.instance_group_manager.region", true),
    ("gcp.gce.instance_group_manager.zone", true),
];
const AZURE_ATTRS: &[(&str, bool)] = &[
    ("cloud.provider", true),
    ("cloud.platform", true),
    ("cloud.region", true),
    ("cloud.account.id", true),
    ("cloud.availability_zone", true),
    ("host.id", true),
    ("host.name", true),
    ("azure.vm.name", true),
    ("azure.vm.size", true),
    ("azure.vm.scaleset.name", true),
    ("azure.resourcegroup.name", true),
];
const AKS_ATTRS: &[(&str, bool)] = &[
    ("cloud.provider", true),
    ("cloud.platform", true),
    ("k8s.cluster.name", false),
];
/// `cloud.resource_id`, `k8s.cluster.name` and `oracle_cloud.realm` are otelcol's too; vigil's
/// detector does not read them: accepted, never set.
const ORACLE_ATTRS: &[(&str, bool)] = &[
    ("cloud.provider", true),
    ("cloud.platform", true),
    ("cloud.region", true),
    ("cloud.availability_zone", true),
    ("host.id", true),
    ("host.name", true),
    ("host.type", true),
    ("cloud.resource_id", true),
    ("k8s.cluster.name", true),
    ("oracle_cloud.realm", true),
];
/// The `container.*` names (off by default) are otelcol's for the collector's own container,
/// which vigil's `docker` detector does not inspect: accepted, never set.
const DOCKER_ATTRS: &[(&str, bool)] = &[
    ("host.name", true),
    ("os.type", true),
    ("container.image.id", false),
    ("container.image.name", false),
    ("container.image.tags", false),
    ("container.name", false),
];
const BEANSTALK_ATTRS: &[(&str, bool)] = &[
    ("cloud.provider", true),
    ("cloud.platform", true),
    ("deployment.environment", true),
    ("service.instance.id", true),
    ("service.version", true),
];
const HEROKU_ATTRS: &[(&str, bool)] = &[
    ("cloud.provider", true),
    ("heroku.app.id", true),
    ("heroku.app.name", true),
    ("heroku.dyno.id", true),
    ("heroku.release.commit", true),
    ("heroku.release.creation_timestamp", true),
    ("heroku.release.version", true),
    ("service.instance.id", true),
];
const LAMBDA_ATTRS: &[(&str, bool)] = &[
    ("cloud.provider", true),
    ("cloud.platform", true),
    ("cloud.region", true),
    ("aws.log.group.names", true),
    ("aws.log.stream.names", true),
    ("faas.name", true),
    ("faas.version", true),
    ("faas.instance", true),
    ("faas.max_memory", true),
];
/// Dynatrace has no section in otelcol: its three keys are always on.
const DYNATRACE_ATTRS: &[(&str, bool)] = &[
    ("dt.entity.host", true),
    ("host.name", true),
    ("dt.smartscape.host", true),
];
const UPCLOUD_ATTRS: &[(&str, bool)] = &[
    ("cloud.provider", true),
    ("cloud.region", true),
    ("host.id", true),
    ("host.name", true),
];
const VULTR_ATTRS: &[(&str, bool)] = &[
    ("cloud.provider", true),
    ("cloud.platform", false),
    ("cloud.region", true),
    ("host.id", true),
    ("host.name", true),
];
const NOVA_ATTRS: &[(&str, bool)] = &[
    ("host.name", true),
    ("host.id", true),
    ("cloud.provider", true),
    ("cloud.account.id", true),
    ("cloud.platform", true),
    ("cloud.region", true),
    ("cloud.availability_zone", true),
    ("host.type", true),
];
const OPENSHIFT_ATTRS: &[(&str, bool)] = &[
    ("cloud.provider", true),
    ("cloud.platform", true),
    ("cloud.region", true),
    ("k8s.cluster.name", true),
];
const AZURECONTAINERAPPS_ATTRS: &[(&str, bool)] = &[
    ("cloud.provider", true),
    ("cloud.platform", true),
    ("service.name", true),
    ("service.instance.id", true),
];
const CONSUL_ATTRS: &[(&str, bool)] = &[
    ("cloud.region", true),
    ("host.name", true),
    ("host.id", true),
];
/// otelcol lists `cloud.platform` (off) for Hetzner but never sets it.
const HETZNER_ATTRS: &[(&str, bool)] = &[
    ("cloud.provider", true),
    ("cloud.platform", false),
    ("cloud.region", true),
    ("cloud.availability_zone", true),
    ("host.id", true),
    ("host.name", true),
];
const SCALEWAY_ATTRS: &[(&str, bool)] = &[
    ("cloud.provider", true),
    ("cloud.platform", true),
    ("cloud.account.id", true),
    ("cloud.availability_zone", true),
    ("cloud.region", true),
    ("host.id", true),
    ("host.image.id", true),
    ("host.image.name", true),
    ("host.name", true),
    ("host.type", true),
];
const AKAMAI_ATTRS: &[(&str, bool)] = &[
    ("cloud.account.id", true),
    ("cloud.platform", true),
    ("cloud.provider", true),
    ("cloud.region", true),
    ("host.id", true),
    ("host.image.id", true),
    ("host.image.name", true),
    ("host.name", true),
    ("host.type", true),
];
/// `alibaba_ecs` and `tencent_cvm` have the same table.
const ALIBABA_TENCENT_ATTRS: &[(&str, bool)] = &[
    ("cloud.account.id", true),
    ("cloud.availability_zone", true),
    ("cloud.platform", true),
    ("cloud.provider", true),
    ("cloud.region", true),
    ("host.id", true),
    ("host.image.id", true),
    ("host.name", true),
    ("host.type", true),
];
const IBM_VPC_ATTRS: &[(&str, bool)] = &[
    ("cloud.account.id", true),
    ("cloud.availability_zone", true),
    ("cloud.platform", true),
    ("cloud.provider", true),
    ("cloud.region", true),
    ("cloud.resource_id", true),
    ("host.id", true),
    ("host.image.id", true),
    ("host.image.name", true),
    ("host.name", true),
    ("host.type", true),
];
const IBM_CLASSIC_ATTRS: &[(&str, bool)] = &[
    ("cloud.account.id", true),
    ("cloud.availability_zone", true),
    ("cloud.platform", true),
    ("cloud.provider", true),
    ("cloud.resource_id", true),
    ("host.id", true),
    ("host.name", true),
];
const DIGITALOCEAN_ATTRS: &[(&str, bool)] = &[
    ("cloud.provider", true),
    ("cloud.region", true),
    ("host.id", true),
    ("host.name", true),
];

/// A detector's section name, its attributes with their defaults, and the user's toggles.
type Section<'a> = (
    &'static str,
    &'static [(&'static str, bool)],
    &'a BTreeMap<String, Toggle>,
);

static NO_TOGGLES: BTreeMap<String, Toggle> = BTreeMap::new();

impl ResourceDetectionConfig {
    /// Whether a network detector's absent service is an error.
    fn fail_on_missing(&self, detector: &str) -> bool {
        NETWORK.contains(&detector)
            && (self.fail_on_missing_metadata
                || match detector {
                    "upcloud" => self.upcloud.fail_on_missing_metadata,
                    "vultr" => self.vultr.fail_on_missing_metadata,
                    "nova" => self.nova.fail_on_missing_metadata,
                    "ec2" => self.ec2.fail_on_missing_metadata,
                    "alibaba_ecs" => self.alibaba_ecs.fail_on_missing_metadata,
                    "tencent_cvm" => self.tencent_cvm.fail_on_missing_metadata,
                    _ => false,
                })
    }

    /// Each detector's section name, attribute table and toggles.
    fn sections(&self) -> Vec<Section<'_>> {
        vec![
            ("system", SYSTEM_ATTRS, &self.system.resource_attributes),
            (
                "k8snode",
                k8s::K8SNODE_ATTRS,
                &self.k8snode.resource_attributes,
            ),
            (
                "k8s_api",
                k8s::K8S_API_ATTRS,
                &self.k8s_api.resource_attributes,
            ),
            ("ec2", EC2_ATTRS, &self.ec2.resource_attributes),
            ("eks", EKS_ATTRS, &self.eks.resource_attributes),
            ("ecs", ECS_ATTRS, &self.ecs.resource_attributes),
            ("gcp", GCP_ATTRS, &self.gcp.resource_attributes),
            ("azure", AZURE_ATTRS, &self.azure.resource_attributes),
            ("aks", AKS_ATTRS, &self.aks.resource_attributes),
            (
                "oraclecloud",
                ORACLE_ATTRS,
                &self.oraclecloud.resource_attributes,
            ),
            ("docker", DOCKER_ATTRS, &self.docker.resource_attributes),
            (
                "elastic_beanstalk",
                BEANSTALK_ATTRS,
                &self.elastic_beanstalk.resource_attributes,
            ),
            ("heroku", HEROKU_ATTRS, &self.heroku.resource_attributes),
            ("lambda", LAMBDA_ATTRS, &self.lambda.resource_attributes),
            ("dynatrace", DYNATRACE_ATTRS, &NO_TOGGLES),
            ("upcloud", UPCLOUD_ATTRS, &self.upcloud.resource_attributes),
            ("vultr", VULTR_ATTRS, &self.vultr.resource_attributes),
            ("nova", NOVA_ATTRS, &self.nova.resource_attributes),
            (
                "digitalocean",
                DIGITALOCEAN_ATTRS,
                &self.digitalocean.resource_attributes,
            ),
            (
                "kubeadm",
                k8s::KUBEADM_ATTRS,
                &self.kubeadm.resource_attributes,
            ),
            (
                "openshift",
                OPENSHIFT_ATTRS,
                &self.openshift.resource_attributes,
            ),
            (
                "azurecontainerapps",
                AZURECONTAINERAPPS_ATTRS,
                &self.azurecontainerapps.resource_attributes,
            ),
            ("consul", CONSUL_ATTRS, &self.consul.resource_attributes),
            ("hetzner", HETZNER_ATTRS, &self.hetzner.resource_attributes),
            (
                "scaleway",
                SCALEWAY_ATTRS,
                &self.scaleway.resource_attributes,
            ),
            ("akamai", AKAMAI_ATTRS, &self.akamai.resource_attributes),
            (
                "alibaba_ecs",
                ALIBABA_TENCENT_ATTRS,
                &self.alibaba_ecs.resource_attributes,
            ),
            (
                "tencent_cvm",
                ALIBABA_TENCENT_ATTRS,
                &self.tencent_cvm.resource_attributes,
            ),
            (
                "ibmcloud_vpc",
                IBM_VPC_ATTRS,
                &self.ibmcloud_vpc.resource_attributes,
            ),
            (
                "ibmcloud_classic",
                IBM_CLASSIC_ATTRS,
                &self.ibmcloud_classic.resource_attributes,
            ),
        ]
    }
}

fn compile_tags(tags: &[String]) -> Result<Vec<Regex>, (usize, String)> {
    tags.iter()
        .enumerate()
        .map(|(i, t)| Regex::new(t).map_err(|e| (i, e.to_string())))
        .collect()
}

#[cfg(test)]
fn load(
    id: &ComponentId,
    value: &serde_json::Value,
) -> Result<ResourceDetectionConfig, ConfigError> {
    check(
        id,
        vigil_core::config::decode(ComponentKind::Processor, id, value)?,
    )
}

/// Checks a decoded section and prepares what the component runs with.
fn check(
    id: &ComponentId,
    cfg: ResourceDetectionConfig,
) -> Result<ResourceDetectionConfig, ConfigError> {
    let err = |k: String, m: String| ConfigError::component(ComponentKind::Processor, id, k, m);
    // Every problem, not only the first, so that one `validate` run lists them all.
    let mut errors = Vec::new();
    for (i, d) in cfg.detectors.iter().enumerate() {
        if NOT_BUILT.contains(&d.as_str()) {
            errors.push(err(
                format!("detectors::{i}"),
                format!(
                    "detector {d:?} is an otelcol-contrib detector that this build does not have; this build has {}",
                    DETECTORS.join(", ")
                ),
            ));
        } else if !DETECTORS.contains(&d.as_str()) {
            errors.push(err(
                format!("detectors::{i}"),
                format!(
                    "unknown detector {d:?}; this build has {}",
                    DETECTORS.join(", ")
                ),
            ));
        }
    }
    for (i, s) in cfg.system.hostname_sources.iter().enumerate() {
        if !matches!(s.as_str(), "dns" | "os" | "cname" | "lookup") {
            errors.push(err(
                format!("system::hostname_sources::{i}"),
                format!("invalid hostname source {s:?}; expected dns, os, cname or lookup"),
            ));
        }
    }
    if !matches!(cfg.ibmcloud_vpc.protocol.as_str(), "http" | "https") {
        errors.push(err(
            "ibmcloud_vpc::protocol".into(),
            format!(
                "invalid protocol {:?}; expected http or https",
                cfg.ibmcloud_vpc.protocol
            ),
        ));
    }
    if cfg.retry.enabled && cfg.timeout.is_zero() && cfg.retry.max_elapsed_time.is_zero() {
        errors.push(err(
            "retry::max_elapsed_time".into(),
            "with retry enabled and timeout 0, max_elapsed_time must be set, so that a detector \
             that never answers cannot hold the start forever"
                .into(),
        ));
    }
    if cfg.retry.enabled && cfg.retry.multiplier < 1.0 {
        errors.push(err(
            "retry::multiplier".into(),
            format!("must be at least 1, got {}", cfg.retry.multiplier),
        ));
    }
    for (section, tags) in [
        ("gcp::labels", &cfg.gcp.labels),
        ("ec2::tags", &cfg.ec2.tags),
        ("azure::tags", &cfg.azure.tags),
        ("nova::labels", &cfg.nova.labels),
    ] {
        if let Err((i, e)) = compile_tags(tags) {
            errors.push(err(
                format!("{section}::{i}"),
                format!("invalid regular expression: {e}"),
            ));
        }
    }
    for (section, known, map) in cfg.sections() {
        for k in map.keys() {
            if !known.iter().any(|(n, _)| n == k) {
                let names: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
                errors.push(err(
                    format!("{section}::resource_attributes::{k}"),
                    format!("unknown attribute; expected one of {}", names.join(", ")),
                ));
            }
        }
    }
    ConfigError::join(errors).map_or(Ok(cfg), Err)
}

fn enabled(known: &[(&str, bool)], user: &BTreeMap<String, Toggle>, name: &str) -> bool {
    user.get(name)
        .map(|t| t.enabled)
        .or_else(|| known.iter().find(|(n, _)| *n == name).map(|(_, d)| *d))
        .unwrap_or(false)
}

/// Parses `OTEL_RESOURCE_ATTRIBUTES`: `key=value` pairs separated by commas, percent-decoded.
pub fn parse_env_attributes(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("OTEL_RESOURCE_ATTRIBUTES: {pair:?} is not key=value"))?;
        out.push((percent_decode(k.trim()), percent_decode(v.trim())));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            // Byte-wise, so a `%` before a multi-byte character cannot split it.
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The kernel's hostname.
fn os_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let h = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (!h.is_empty()).then_some(h)
}

/// The fully qualified name of this host, as the resolver's canonical name for its hostname.
fn dns_hostname() -> Option<String> {
    let host = os_hostname()?;
    let c_host = std::ffi::CString::new(host).ok()?;
    // SAFETY: a zeroed addrinfo is a valid hints struct; getaddrinfo allocates `res`, which is
    // freed below, and `ai_canonname` is read only while `res` is alive.
    unsafe {
        let mut hints: libc::addrinfo = std::mem::zeroed();
        hints.ai_flags = libc::AI_CANONNAME;
        hints.ai_family = libc::AF_UNSPEC;
        let mut res: *mut libc::addrinfo = std::ptr::null_mut();
        if libc::getaddrinfo(c_host.as_ptr(), std::ptr::null(), &hints, &mut res) != 0
            || res.is_null()
        {
            return None;
        }
        let canon = (*res).ai_canonname;
        let name = if canon.is_null() {
            None
        } else {
            Some(
                std::ffi::CStr::from_ptr(canon)
                    .to_string_lossy()
                    .into_owned(),
            )
        };
        libc::freeaddrinfo(res);
        name.filter(|n| !n.is_empty())
    }
}

fn machine_id() -> Option<String> {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn arch() -> &'static str {
    // The semantic-convention names of the CPU architectures.
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm32",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    }
}

/// The `system` detector: blocking (the DNS lookup), so it runs on a blocking thread.
fn system(s: &SystemConfig) -> Result<Found, String> {
    let on = |n: &str| enabled(SYSTEM_ATTRS, &s.resource_attributes, n);
    let st = |v: String| Value::StringValue(v);
    let strs = |v: Vec<String>| {
        Value::ArrayValue(vigil_core::otlp::common::v1::ArrayValue {
            values: v
                .into_iter()
                .map(|x| vigil_core::otlp::common::v1::AnyValue {
                    value: Some(Value::StringValue(x)),
                })
                .collect(),
        })
    };
    let mut attrs: Found = Vec::new();
    if on("host.name") {
        let name = s
            .hostname_sources
            .iter()
            .find_map(|src| match src.as_str() {
                "os" => os_hostname(),
                _ => dns_hostname(),
            });
        match name {
            Some(n) => attrs.push(("host.name".into(), st(n))),
            None => return Err("system detector: no hostname source answered".into()),
        }
    }
    if on("host.id") {
        if let Some(id) = machine_id() {
            attrs.push(("host.id".into(), st(id)));
        }
    }
    if on("os.type") {
        attrs.push(("os.type".into(), st(std::env::consts::OS.into())));
    }
    if on("host.arch") {
        attrs.push(("host.arch".into(), st(arch().into())));
    }
    let kernel = host::kernel_release();
    if on("os.description") {
        if let Some(r) = &kernel {
            attrs.push(("os.description".into(), st(format!("Linux {r}"))));
        }
    }
    if on("os.name") || on("os.version") || on("os.build.id") {
        let rel = host::os_release();
        let build = rel.build_id.or(kernel);
        for (k, v) in [
            ("os.name", rel.name),
            ("os.version", rel.version),
            ("os.build.id", build),
        ] {
            if let (true, Some(v)) = (on(k), v) {
                attrs.push((k.into(), st(v)));
            }
        }
    }
    if SYSTEM_ATTRS
        .iter()
        .any(|(n, _)| n.starts_with("host.cpu.") && on(n))
    {
        let c = host::cpu();
        let text = [
            ("host.cpu.vendor.id", c.vendor_id),
            ("host.cpu.family", c.family),
            ("host.cpu.model.id", c.model_id),
            ("host.cpu.model.name", c.model_name),
        ];
        for (k, v) in text {
            if let (true, Some(v)) = (on(k), v) {
                attrs.push((k.into(), st(v)));
            }
        }
        for (k, v) in [
            ("host.cpu.stepping", c.stepping),
            ("host.cpu.cache.l2.size", c.cache_l2_size),
        ] {
            if let (true, Some(v)) = (on(k), v) {
                attrs.push((k.into(), Value::IntValue(v)));
            }
        }
    }
    if on("host.ip") || on("host.mac") || on("host.interface") {
        let i = host::interfaces();
        for (k, v) in [
            ("host.ip", i.ips),
            ("host.mac", i.macs),
            ("host.interface", i.names),
        ] {
            if on(k) {
                attrs.push((k.into(), strs(v)));
            }
        }
    }
    Ok(attrs)
}

/// Keeps the attributes a detector's section enables; instance tags are enabled by `tags` itself,
/// and keys outside the table (`consul`'s node metadata, chosen by `meta`) when `chosen`.
fn keep(
    found: Found,
    known: &[(&str, bool)],
    user: &BTreeMap<String, Toggle>,
    chosen: bool,
) -> Found {
    found
        .into_iter()
        .filter(|(k, _)| {
            k.starts_with("ec2.tag.")
                || k.starts_with("azure.tag.")
                || k.starts_with("openstack.nova.meta.")
                || (chosen && !known.iter().any(|(n, _)| n == k))
                || enabled(known, user, k)
        })
        .collect()
}

/// One detector. `Err` is a problem that stops the processor from starting (as a missing node
/// name does); a metadata service that is absent or answers badly only costs its attributes.
async fn run_one(
    d: &str,
    cfg: &ResourceDetectionConfig,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
    ep: &Endpoints,
) -> Result<Found, String> {
    let t = cfg.timeout;
    // `check` compiled these already; a failure here cannot happen after validation.
    let tags = |v: &[String]| compile_tags(v).unwrap_or_default();
    let cloud = match d {
        "env" => {
            let attrs = match env("OTEL_RESOURCE_ATTRIBUTES") {
                Some(v) => parse_env_attributes(&v)?,
                None => Vec::new(),
            };
            let allow = &cfg.env.allow_list;
            return Ok(attrs
                .into_iter()
                .filter(|(k, _)| allow.is_empty() || allow.contains(k))
                .map(|(k, v)| (k, Value::StringValue(v)))
                .collect());
        }
        "system" => {
            let s = cfg.system.clone();
            return tokio::task::spawn_blocking(move || system(&s))
                .await
                .map_err(|e| format!("system detector failed: {e}"))?;
        }
        "k8snode" | "k8s_api" => {
            let section = if d == "k8s_api" {
                &cfg.k8s_api
            } else {
                &cfg.k8snode
            };
            return k8s::detect(d, section, env, ep.kubernetes.clone()).await;
        }
        "ec2" => cloud::ec2(ep, t, "aws_ec2", &tags(&cfg.ec2.tags)).await,
        "eks" => cloud::eks(ep, t, env).await,
        "ecs" => cloud::ecs(t, env).await,
        "gcp" => {
            if !cfg.gcp.labels.is_empty() {
                tracing::warn!(
                    "gcp detector: labels are read from the Compute API, which this build does not call; gcp::labels is ignored"
                );
            }
            cloud::gcp(ep, t, env).await
        }
        "azure" => cloud::azure(ep, t, &tags(&cfg.azure.tags)).await,
        "aks" => cloud::aks(ep, t, env).await,
        "oraclecloud" => cloud::oraclecloud(ep, t).await,
        "docker" => cloud::docker(ep, t).await,
        "elastic_beanstalk" => cloud::elastic_beanstalk(ep).await,
        "heroku" => providers::heroku(env),
        "lambda" => providers::lambda(env),
        "dynatrace" => providers::dynatrace(ep).await,
        "upcloud" => providers::upcloud(ep, t).await,
        "vultr" => providers::vultr(ep, t).await,
        "nova" => providers::nova(ep, t, &tags(&cfg.nova.labels)).await,
        "digitalocean" => providers::digitalocean(ep, t).await,
        "kubeadm" => k8s::kubeadm(&cfg.kubeadm, ep.kubernetes.clone()).await,
        "openshift" => platforms::openshift(&cfg.openshift, t, env).await,
        "azurecontainerapps" => platforms::azurecontainerapps(env),
        "consul" => platforms::consul(&cfg.consul, t, env).await,
        "hetzner" => providers::hetzner(ep, t).await,
        "scaleway" => providers::scaleway(ep, t).await,
        "akamai" => imds::akamai(ep, t).await,
        "alibaba_ecs" => imds::alibaba_ecs(ep, t).await,
        "tencent_cvm" => imds::tencent_cvm(ep, t).await,
        "ibmcloud_vpc" => imds::ibmcloud_vpc(ep, t, &cfg.ibmcloud_vpc.protocol).await,
        "ibmcloud_classic" => imds::ibmcloud_classic(ep, t).await,
        _ => return Ok(Vec::new()),
    };
    match cloud {
        Ok(found) => {
            let (_, known, user) = cfg
                .sections()
                .into_iter()
                .find(|(n, _, _)| *n == d)
                .unwrap_or(("", &[], &cfg.system.resource_attributes));
            Ok(keep(found, known, user, d == "consul"))
        }
        Err(Miss::Absent(why) | Miss::Failed(why)) if cfg.fail_on_missing(d) => Err(format!(
            "{d} detector: metadata unavailable and fail_on_missing_metadata is set: {why}"
        )),
        Err(Miss::Absent(why)) => {
            tracing::debug!("{d} detector: not on this platform ({why})");
            Ok(Vec::new())
        }
        Err(Miss::Failed(why)) => {
            tracing::warn!("{d} detector: metadata service answered but detection failed: {why}");
            Ok(Vec::new())
        }
    }
}

/// Runs the detectors at the same time, each bounded by `timeout`; for the same key, the
/// detector listed first wins, as in otelcol.
pub async fn detect(
    cfg: &ResourceDetectionConfig,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
    ep: &Endpoints,
) -> Result<Vec<KeyValue>, String> {
    let runs = cfg.detectors.iter().map(|d| async move {
        match tokio::time::timeout(cfg.timeout, run_one(d, cfg, env, ep)).await {
            Ok(r) => r,
            Err(_) if cfg.fail_on_missing(d) => Err(format!(
                "{d} detector: no answer within timeout ({:?}) and fail_on_missing_metadata is set",
                cfg.timeout
            )),
            Err(_) => {
                tracing::warn!(
                    "{d} detector: no answer within timeout ({:?}); its attributes are left out",
                    cfg.timeout
                );
                Ok(Vec::new())
            }
        }
    });
    let mut found: Found = Vec::new();
    for r in futures::future::join_all(runs).await {
        for (k, v) in r? {
            if !found.iter().any(|(f, _)| *f == k) {
                found.push((k, v));
            }
        }
    }
    Ok(found.into_iter().map(|(k, v)| kv(&k, v)).collect())
}

/// [`detect`] again after a failure, as `retry` says: pauses from `initial_interval` growing by
/// `multiplier` up to `max_interval`, while the next try would start within `max_elapsed_time`
/// (or `timeout` when that is 0). The last error is returned when the budget is spent.
pub async fn detect_retrying(
    cfg: &ResourceDetectionConfig,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
    ep: &Endpoints,
) -> Result<Vec<KeyValue>, String> {
    let r = &cfg.retry;
    let budget = if r.max_elapsed_time.is_zero() {
        cfg.timeout
    } else {
        r.max_elapsed_time
    };
    let began = tokio::time::Instant::now();
    let mut pause = r.initial_interval;
    loop {
        let e = match detect(cfg, env, ep).await {
            Ok(found) => return Ok(found),
            Err(e) => e,
        };
        if !r.enabled || began.elapsed() + pause > budget {
            return Err(e);
        }
        tracing::warn!("resource detection failed, trying again in {pause:?}: {e}");
        tokio::time::sleep(pause).await;
        pause = pause.mul_f64(r.multiplier.max(1.0)).min(r.max_interval);
    }
}

/// Adds `detected` to a resource: replacing existing keys when `override_`, otherwise only filling
/// the missing ones.
pub fn merge(resource: &mut Option<Resource>, detected: &[KeyValue], override_: bool) {
    if detected.is_empty() {
        return;
    }
    let r = resource.get_or_insert_with(Resource::default);
    for kv in detected {
        match r.attributes.iter_mut().find(|a| a.key == kv.key) {
            Some(existing) if override_ => existing.value = kv.value.clone(),
            Some(_) => {}
            None => r.attributes.push(kv.clone()),
        }
    }
}

struct Factory;

/// The `resourcedetection` processor factory.
pub fn factory() -> Arc<dyn vigil_core::factory::DynProcessorFactory> {
    vigil_core::factory::processor(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = ResourceDetectionConfig;

    fn type_name(&self) -> &'static str {
        "resourcedetection"
    }

    fn validate(&self, id: &ComponentId, cfg: &ResourceDetectionConfig) -> Result<(), ConfigError> {
        check(id, cfg.clone()).map(|_| ())
    }
}

impl vigil_core::factory::ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[
            (Signal::Traces, vigil_core::Stability::Beta),
            (Signal::Metrics, vigil_core::Stability::Beta),
            (Signal::Logs, vigil_core::Stability::Beta),
            (Signal::Profiles, vigil_core::Stability::Development),
        ]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: ResourceDetectionConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let id = &set.id;
        let cfg = check(id, cfg)?;
        Ok(Arc::new(ResourceDetection {
            id: id.to_string(),
            cfg,
            detected: Arc::default(),
            next,
            obs: set.processor_obs(signal),
            tasks: set.tasks,
        }))
    }
}

/// A running `resourcedetection` processor.
pub struct ResourceDetection {
    id: String,
    cfg: ResourceDetectionConfig,
    /// Replaced whole by a refresh; a batch takes the current list once.
    detected: Arc<RwLock<Arc<Vec<KeyValue>>>>,
    next: Arc<dyn Consumer>,
    obs: vigil_core::ProcessorObs,
    /// The `refresh_interval` loop.
    tasks: vigil_core::Tasks,
}

fn shown(attrs: &[KeyValue]) -> String {
    attrs_to_string(attrs, ", ")
}

#[async_trait]
impl Component for ResourceDetection {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let env = |k: &str| std::env::var(k).ok();
        let ep = Endpoints::from_env(&env);
        // Each detector is bounded by `timeout`, and they run together, so this is too.
        let attrs = detect_retrying(&self.cfg, &env, &ep)
            .await
            .map_err(|e| anyhow::anyhow!("processors::{}: {e}", self.id))?;
        tracing::info!(processor = %self.id, "detected resource attributes: {}", shown(&attrs));
        *self.detected.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(attrs);
        if !self.cfg.refresh_interval.is_zero() {
            let (id, cfg, detected) = (
                self.id.clone(),
                self.cfg.clone(),
                Arc::clone(&self.detected),
            );
            self.tasks.spawn_ticker(self.cfg.refresh_interval, move || {
                let (id, cfg, detected) = (id.clone(), cfg.clone(), Arc::clone(&detected));
                async move {
                    let env = |k: &str| std::env::var(k).ok();
                    let ep = Endpoints::from_env(&env);
                    match detect_retrying(&cfg, &env, &ep).await {
                        Ok(attrs) => {
                            tracing::debug!(processor = %id, "refreshed resource attributes: {}", shown(&attrs));
                            *detected.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(attrs);
                        }
                        Err(e) => {
                            tracing::warn!(processor = %id, "resource detection refresh failed, keeping the attributes detected before: {e}")
                        }
                    }
                }
            });
        }
        Ok(())
    }

    /// Stopping ends the refresh loop.
    fn tasks(&self) -> Option<&vigil_core::Tasks> {
        Some(&self.tasks)
    }
}

#[async_trait]
impl Consumer for ResourceDetection {
    async fn consume(&self, mut data: Telemetry) -> Result<(), ConsumeError> {
        let n = data.item_count();
        self.obs.incoming(n);
        let detected = Arc::clone(&self.detected.read().unwrap_or_else(|e| e.into_inner()));
        let detected = detected.as_slice();
        let o = self.cfg.override_;
        match &mut data {
            Telemetry::Traces(v) => v
                .iter_mut()
                .for_each(|r| merge(&mut r.resource, detected, o)),
            Telemetry::Metrics(v) => v
                .iter_mut()
                .for_each(|r| merge(&mut r.resource, detected, o)),
            Telemetry::Logs(v) => v
                .iter_mut()
                .for_each(|r| merge(&mut r.resource, detected, o)),
            Telemetry::Profiles(p) => p
                .resource_profiles
                .iter_mut()
                .for_each(|r| merge(&mut r.resource, detected, o)),
        }
        self.obs.outgoing(n);
        self.next.consume(data).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::attrs::{get_str, kv_str};

    fn id() -> ComponentId {
        ComponentId::parse("resourcedetection").unwrap()
    }

    #[tokio::test]
    async fn env_system_and_k8snode_first_detector_wins() {
        let cfg = load(
            &id(),
            &serde_json::json!({"detectors": ["env", "system", "k8snode"],
                "system": {"hostname_sources": ["os"], "resource_attributes": {"host.id": {"enabled": true}}}}),
        )
        .unwrap();
        let env = |k: &str| match k {
            "OTEL_RESOURCE_ATTRIBUTES" => {
                Some("service.name=api, team=a%2Cb,os.type=custom".to_string())
            }
            "K8S_NODE_NAME" => Some("node-7".to_string()),
            _ => None,
        };
        let ep = Endpoints::from_env(&|_| None);
        let attrs = detect(&cfg, &env, &ep).await.unwrap();
        assert_eq!(get_str(&attrs, "service.name"), Some("api"));
        assert_eq!(get_str(&attrs, "team"), Some("a,b"));
        assert_eq!(get_str(&attrs, "os.type"), Some("custom"), "env came first");
        assert_eq!(get_str(&attrs, "k8s.node.name"), Some("node-7"));
        assert_eq!(get_str(&attrs, "host.name"), os_hostname().as_deref());
        assert!(get_str(&attrs, "host.name").is_some());
        if let Some(mid) = machine_id() {
            assert_eq!(get_str(&attrs, "host.id"), Some(mid.as_str()));
        }

        let missing = detect(&cfg, &|_| None, &ep).await.unwrap_err();
        assert!(missing.contains("K8S_NODE_NAME"), "{missing}");
    }

    /// `k8snode` and `k8s_api` against the API-server double: the node name from the environment,
    /// the node's UID from its Node, the cluster's from kube-system; a failing API costs only the
    /// UIDs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn k8snode_and_k8s_api_read_the_node_and_cluster_uids() {
        use vigil_tests::k8s_api::{self, K8sApi, Kind};
        let api = K8sApi::start();
        api.apply(Kind::Node, k8s_api::node("node-a"));
        api.apply(Kind::Namespace, k8s_api::namespace("kube-system"));
        let client = vigil_k8s::client::client_at(&api.url()).unwrap();
        let ep = Endpoints {
            kubernetes: Some(k8s::Client(client)),
            ..Endpoints::from_env(&|_| None)
        };
        let env = |k: &str| (k == "MY_NODE").then(|| "node-a".to_string());
        let cfg = load(
            &id(),
            &serde_json::json!({"detectors": ["k8s_api"], "k8s_api": {"node_from_env_var": "MY_NODE"}}),
        )
        .unwrap();
        let attrs = detect(&cfg, &env, &ep).await.unwrap();
        assert_eq!(get_str(&attrs, "k8s.node.name"), Some("node-a"));
        let node_uid = k8s_api::uid("node/node-a");
        assert_eq!(get_str(&attrs, "k8s.node.uid"), Some(node_uid.as_str()));
        let cluster_uid = k8s_api::uid("ns/kube-system");
        assert_eq!(
            get_str(&attrs, "k8s.cluster.uid"),
            Some(cluster_uid.as_str())
        );

        // k8snode: no cluster UID; with the node UID turned off, the API is not asked at all.
        let cfg = load(
            &id(),
            &serde_json::json!({"detectors": ["k8snode"], "k8snode": {"node_from_env_var": "MY_NODE"}}),
        )
        .unwrap();
        let attrs = detect(&cfg, &env, &ep).await.unwrap();
        assert_eq!(get_str(&attrs, "k8s.node.uid"), Some(node_uid.as_str()));
        assert_eq!(get_str(&attrs, "k8s.cluster.uid"), None);
        let asked = api.requests().len();
        let cfg = load(
            &id(),
            &serde_json::json!({"detectors": ["k8snode"], "k8snode": {"node_from_env_var": "MY_NODE",
                "resource_attributes": {"k8s.node.uid": {"enabled": false}}}}),
        )
        .unwrap();
        let attrs = detect(&cfg, &env, &ep).await.unwrap();
        assert_eq!(get_str(&attrs, "k8s.node.name"), Some("node-a"));
        assert_eq!(api.requests().len(), asked);

        // The API failing: the name still, no UIDs, no error.
        api.fail("/api/v1/nodes");
        let cfg = load(
            &id(),
            &serde_json::json!({"detectors": ["k8snode"], "k8snode": {"node_from_env_var": "MY_NODE"}}),
        )
        .unwrap();
        let attrs = detect(&cfg, &env, &ep).await.unwrap();
        assert_eq!(get_str(&attrs, "k8s.node.name"), Some("node-a"));
        assert_eq!(get_str(&attrs, "k8s.node.uid"), None);
        // No node name: an error naming the variable.
        let e = detect(&cfg, &|_| None, &ep).await.unwrap_err();
        assert!(e.contains("MY_NODE"), "{e}");
    }

    #[test]
    fn override_decides_who_wins_on_the_resource() {
        let detected = vec![
            kv_str("host.name", "detected"),
            kv_str("k8s.node.name", "n"),
        ];
        let mut r = Some(Resource {
            attributes: vec![kv_str("host.name", "mine")],
            ..Default::default()
        });
        merge(&mut r, &detected, false);
        let a = &r.as_ref().unwrap().attributes;
        assert_eq!(get_str(a, "host.name"), Some("mine"));
        assert_eq!(get_str(a, "k8s.node.name"), Some("n"));
        merge(&mut r, &detected, true);
        assert_eq!(
            get_str(&r.unwrap().attributes, "host.name"),
            Some("detected")
        );
    }

    /// Keys of otelcol-contrib's current README and detector configs that an earlier build
    /// refused: the `retry` block, `env::allow_list`, `ec2`'s SDK and tag keys, `gcp::labels`
    /// and `gke_host_type`, and attribute names of detectors vigil builds in part.
    #[test]
    fn otelcol_readme_keys_are_accepted() {
        let cfg = load(
            &id(),
            &serde_json::json!({"detectors": ["env", "ec2", "gcp", "docker", "oraclecloud"],
                "timeout": "2s",
                "retry": {"enabled": true, "initial_interval": "1s", "randomization_factor": 0.5,
                    "multiplier": 2, "max_interval": "10s", "max_elapsed_time": "2m"},
                "env": {"allow_list": ["service.name"]},
                "endpoint": "http://ignored", "headers": {"x": "y"}, "tls": {"insecure": true},
                "eks": {"imds_check_max_retry": 2, "max_attempts": 5, "max_backoff": "30s"},
                "k8s_api": {"kube_api_qps": 20, "kube_api_burst": 40},
                "kubeadm": {"kube_api_qps": 20, "kube_api_burst": 40},
                "ec2": {"tags": ["^team$"], "tags_from_imds": true, "max_attempts": 10,
                    "max_backoff": "5m", "fail_on_missing_metadata": true},
                "gcp": {"labels": ["^team$"], "gke_host_type": true,
                    "resource_attributes": {"faas.instance": {"enabled": false},
                        "gcp.gce.instance.hostname": {"enabled": true}}},
                "docker": {"resource_attributes": {"container.name": {"enabled": true}}},
                "oraclecloud": {"resource_attributes": {"oracle_cloud.realm": {"enabled": false}}}}),
        )
        .unwrap();
        assert_eq!(cfg.retry.max_elapsed_time, Duration::from_secs(120));
        assert_eq!(cfg.ec2.max_attempts, Some(10));
        assert!(
            cfg.fail_on_missing("ec2"),
            "ec2's own fail_on_missing_metadata"
        );
        let e = load(
            &id(),
            &serde_json::json!({"timeout": "0s", "retry": {"max_elapsed_time": "0s"}}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("retry::max_elapsed_time"), "{e}");
    }

    #[tokio::test]
    async fn env_allow_list_keeps_only_the_listed_keys() {
        let cfg = load(
            &id(),
            &serde_json::json!({"detectors": ["env"], "env": {"allow_list": ["service.name"]}}),
        )
        .unwrap();
        let env = |k: &str| {
            (k == "OTEL_RESOURCE_ATTRIBUTES").then(|| "service.name=api,team=core".to_string())
        };
        let ep = Endpoints::from_env(&|_| None);
        let attrs = detect(&cfg, &env, &ep).await.unwrap();
        assert_eq!(get_str(&attrs, "service.name"), Some("api"));
        assert_eq!(get_str(&attrs, "team"), None);
    }

    #[test]
    fn config_errors_name_the_key() {
        let e = load(&id(), &serde_json::json!({"detectors": ["env", "herok"]})).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("processors::resourcedetection::detectors::1: unknown detector"),
            "{e}"
        );
        let e = load(
            &id(),
            &serde_json::json!({"detectors": ["ibmcloud_vpc"], "ibmcloud_vpc": {"protocol": "ftp"}}),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains(
                "ibmcloud_vpc::protocol: invalid protocol \"ftp\"; expected http or https"
            ),
            "{e}"
        );
        // otelcol's section names and keys of the detectors added with issue #18.
        let cfg = load(
            &id(),
            &serde_json::json!({"detectors": ["heroku", "lambda", "dynatrace", "upcloud", "vultr", "nova", "digitalocean", "elastic_beanstalk"],
                "elasticbeanstalk": {"resource_attributes": {"service.version": {"enabled": false}}},
                "heroku": {"resource_attributes": {"heroku.app.name": {"enabled": false}}},
                "lambda": {"resource_attributes": {"faas.name": {"enabled": true}}},
                "upcloud": {"fail_on_missing_metadata": false},
                "vultr": {"resource_attributes": {"cloud.platform": {"enabled": true}}},
                "nova": {"labels": ["^team$"], "resource_attributes": {"host.type": {"enabled": false}}},
                "digitalocean": {"resource_attributes": {"host.name": {"enabled": true}}},
                "fail_on_missing_metadata": false}),
        )
        .unwrap();
        assert!(!cfg.elastic_beanstalk.resource_attributes["service.version"].enabled);
        let e = load(
            &id(),
            &serde_json::json!({"nova": {"labels": ["(x"]}, "digitalocean": {"fail_on_missing_metadata": true}}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("digitalocean") && e.contains("fail_on_missing_metadata"),
            "{e}"
        );
        let e = load(&id(), &serde_json::json!({"nova": {"labels": ["(x"]}})).unwrap_err();
        assert!(
            e.to_string()
                .contains("nova::labels::0: invalid regular expression"),
            "{e}"
        );
        let e = load(
            &id(),
            &serde_json::json!({"k8s_api": {"resource_attributes": {"k8s.pod.uid": {"enabled": true}}}}),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("k8s_api::resource_attributes::k8s.pod.uid: unknown attribute"),
            "{e}"
        );
        let e = load(
            &id(),
            &serde_json::json!({"detectors": ["ec2"], "ec2": {"tags": ["(x"]},
                "eks": {"resource_attributes": {"k8s.cluster.nam": {"enabled": true}}}}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ec2::tags::0: invalid regular expression"),
            "{e}"
        );
        assert!(
            e.contains("eks::resource_attributes::k8s.cluster.nam: unknown attribute"),
            "{e}"
        );
        let e = load(
            &id(),
            &serde_json::json!({"system": {"hostname_sources": ["dn"]}}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("system::hostname_sources::0"), "{e}");
        let cfg = load(&id(), &serde_json::json!({"override": false})).unwrap();
        assert!(!cfg.override_);
        assert_eq!(cfg.timeout, Duration::from_secs(5));
        assert_eq!(cfg.refresh_interval, Duration::ZERO);
        let cfg = load(&id(), &serde_json::json!({"refresh_interval": "5m"})).unwrap();
        assert_eq!(cfg.refresh_interval, Duration::from_secs(300));
        assert!(parse_env_attributes("novalue").is_err());
        assert_eq!(
            parse_env_attributes("k=%é%4").unwrap(),
            vec![("k".into(), "%é%4".into())]
        );
    }
}
