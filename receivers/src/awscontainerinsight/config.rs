//! `awscontainerinsightreceiver` config as otelcol-contrib spells it. Only the EKS node path is
//! built (see README.md): the keys of the ECS mode, the control plane, accelerators, systemd hosts
//! and the ConfigMap lock are refused by name when they ask for something, and the AWS session keys
//! (which otelcol uses for EC2 tag lookups vigil does not make) are read and unused.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use vigil_core::config::duration;
use vigil_core::ConfigError;

/// otelcol's default lock name; read so that published configs validate (no cluster metrics yet).
pub const DEFAULT_LEADER_LOCK: &str = "otel-container-insight-clusterleader";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AwsContainerInsightConfig {
    /// Time between two collections (otelcol's default: 60s).
    #[serde(default = "default_interval", with = "duration")]
    pub collection_interval: Duration,
    /// `eks` (the default) or `ecs`; only `eks` is built.
    #[serde(default = "default_orchestrator")]
    pub container_orchestrator: String,
    /// `ALL` (default), `NODE` or `LEADER`; only `ALL` is built.
    #[serde(default = "default_role")]
    pub collection_role: String,
    /// otelcol's default is true; vigil does not look up Services yet, so no `Service` attribute
    /// is set either way (documented).
    #[serde(default = "yes")]
    pub add_service_as_attribute: bool,
    /// `PodName` is the pod's own name when no controller names it.
    #[serde(default)]
    pub prefer_full_pod_name: bool,
    /// Adds `FullPodName` (the pod's own name) to pod and container metrics.
    #[serde(default)]
    pub add_full_pod_name_metric_label: bool,
    /// otelcol's switch for the `ContainerName` label; container metrics carry it always here,
    /// so the key is read and has no further effect.
    #[serde(default)]
    pub add_container_name_metric_label: bool,
    /// `ClusterName`. Empty: the node's `alpha.eksctl.io/cluster-name` label, else none.
    #[serde(default)]
    pub cluster_name: String,
    #[serde(default = "default_lock")]
    pub leader_lock_name: String,
    #[serde(default)]
    pub leader_lock_using_config_map_only: bool,
    #[serde(default)]
    pub enable_control_plane_metrics: bool,
    #[serde(default)]
    pub accelerated_compute_metrics: bool,
    /// A kubeconfig to reach the API server with instead of the pod's service account.
    #[serde(default)]
    pub kube_config_path: String,
    /// The node's address; empty means `$HOST_IP` (the DaemonSet sets it from `status.hostIP`).
    #[serde(default)]
    pub host_ip: String,
    /// The node's name; empty means `$HOST_NAME`, else `$K8S_NODE_NAME`, else the kubelet's.
    #[serde(default)]
    pub host_name: String,
    #[serde(default)]
    pub run_on_systemd: bool,
    #[serde(default)]
    pub middleware: Option<serde_json::Value>,
    /// vigil's: the kubelet, `host:port` or a URL; empty means `<host_ip>:10250` over HTTPS.
    #[serde(default)]
    pub kubelet_endpoint: String,
    /// vigil's: where the service-account `token` and `ca.crt` are (as kubeletstats').
    #[serde(default = "default_sa_dir")]
    pub service_account_dir: String,
    // awsutil.AWSSessionSettings: otelcol uses them for EC2 API calls (tags, autoscaling group,
    // EBS volumes) that vigil does not make; read so that published configs load, and unused.
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub num_workers: Option<u32>,
    #[serde(default)]
    pub request_timeout_seconds: Option<u32>,
    #[serde(default)]
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub no_verify_ssl: Option<bool>,
    #[serde(default)]
    pub proxy_address: Option<String>,
    #[serde(default)]
    pub local_mode: Option<bool>,
    #[serde(default)]
    pub resource_arn: Option<String>,
    #[serde(default)]
    pub certificate_file_path: Option<String>,
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_orchestrator() -> String {
    "eks".into()
}
fn default_role() -> String {
    "ALL".into()
}
fn default_lock() -> String {
    DEFAULT_LEADER_LOCK.into()
}
fn default_sa_dir() -> String {
    crate::kubeletstats::config::SERVICE_ACCOUNT_DIR.into()
}
fn yes() -> bool {
    true
}

impl AwsContainerInsightConfig {
    /// Every problem at its key path; reads no file and no environment (validate runs anywhere).
    pub fn check(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let not_built = |key: &str, what: &str| {
            ConfigError::at(
                key,
                format!("{what} is not built in vigil's awscontainerinsightreceiver (EKS node metrics only); remove the key"),
            )
        };
        match self.container_orchestrator.as_str() {
            "eks" => {}
            "ecs" => errors.push(not_built(
                "container_orchestrator",
                "\"ecs\" (ECS Container Insights)",
            )),
            other => errors.push(ConfigError::at(
                "container_orchestrator",
                format!("unknown orchestrator {other:?}: expected eks or ecs"),
            )),
        }
        match self.collection_role.as_str() {
            "ALL" => {}
            "NODE" | "LEADER" => errors.push(not_built(
                "collection_role",
                "a collection role other than ALL",
            )),
            other => errors.push(ConfigError::at(
                "collection_role",
                format!("unknown role {other:?}: expected ALL, NODE or LEADER"),
            )),
        }
        for (key, on, what) in [
            (
                "leader_lock_using_config_map_only",
                self.leader_lock_using_config_map_only,
                "the ConfigMap leader lock",
            ),
            (
                "enable_control_plane_metrics",
                self.enable_control_plane_metrics,
                "control-plane metrics",
            ),
            (
                "accelerated_compute_metrics",
                self.accelerated_compute_metrics,
                "GPU/Neuron/EFA metrics",
            ),
            (
                "run_on_systemd",
                self.run_on_systemd,
                "running outside Kubernetes (systemd)",
            ),
        ] {
            if on {
                errors.push(not_built(key, what));
            }
        }
        if self.middleware.is_some() {
            errors.push(not_built("middleware", "an AWS client middleware"));
        }
        if self.collection_interval.is_zero() {
            errors.push(ConfigError::at("collection_interval", "must be positive"));
        }
        match ConfigError::join(errors) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The kubelet's base (without scheme, kubeletstats adds it): `kubelet_endpoint`, else
    /// `host_ip` or `$HOST_IP` on 10250. Read at start, inside the pod.
    pub fn kubelet(&self) -> Result<String, String> {
        if !self.kubelet_endpoint.is_empty() {
            return Ok(self.kubelet_endpoint.clone());
        }
        let ip = if self.host_ip.is_empty() {
            std::env::var("HOST_IP").unwrap_or_default()
        } else {
            self.host_ip.clone()
        };
        if ip.is_empty() {
            return Err("no kubelet address: set host_ip, or HOST_IP from status.hostIP".into());
        }
        let ip = if ip.contains(':') && !ip.starts_with('[') {
            format!("[{ip}]")
        } else {
            ip
        };
        Ok(format!("{ip}:10250"))
    }

    /// The node's name from the config or the environment, if either has it.
    pub fn node_name(&self) -> Option<String> {
        if !self.host_name.is_empty() {
            return Some(self.host_name.clone());
        }
        ["HOST_NAME", "K8S_NODE_NAME"]
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .find(|v| !v.is_empty())
    }
}
