//! `kubeletstats` config as otelcol spells it: the scraper keys (`collection_interval`,
//! `initial_delay`, `timeout`), the kubelet client (`endpoint`, `auth_type`, `insecure_skip_verify`
//! and configtls' file keys), `metric_groups`, `extra_metadata_labels`,
//! `collect_all_network_interfaces`, `node`, `k8s_api_config`, and mdatagen's `metrics` and
//! `resource_attributes` toggles.

use super::metrics::{KNOWN, NOT_EMITTED, RESOURCE_ATTRIBUTES, RESOURCE_RATIOS};
use crate::hostmetrics::config::{MetricToggle, Toggles};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use vigil_core::config::duration;
use vigil_core::ConfigError;

/// Where Kubernetes mounts a pod's service-account token and the cluster CA.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletStatsConfig {
    /// Time between two scrapes (otelcol's default for this receiver: 10s).
    #[serde(default = "default_interval", with = "duration")]
    pub collection_interval: Duration,
    /// Wait before the first scrape (scraperhelper's default: 1s).
    #[serde(default = "default_initial_delay", with = "duration")]
    pub initial_delay: Duration,
    /// Bound on one scrape; 0 (the default) means `collection_interval`, so that scrapes never
    /// pile up behind a kubelet that stopped answering.
    #[serde(default, with = "duration")]
    pub timeout: Duration,
    /// `host:port` or a URL. Empty means this host's name on 10250 (10255, plain HTTP, for
    /// `auth_type: none`), as otelcol does; a DaemonSet sets `${env:K8S_NODE_IP}:10250`.
    #[serde(default)]
    pub endpoint: String,
    /// `tls` (otelcol's default: a client certificate), `serviceAccount` (the pod's token, and the
    /// cluster CA) or `none` (the read-only port). `kubeConfig` is refused.
    #[serde(default = "default_auth_type")]
    pub auth_type: String,
    /// The kubeconfig context for `auth_type: kubeConfig`; accepted, and refused with it.
    #[serde(default)]
    pub context: String,
    /// Accept any server certificate. Kubelets often serve a self-signed one.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub ca_pem: Option<String>,
    #[serde(default)]
    pub cert_file: Option<String>,
    #[serde(default)]
    pub cert_pem: Option<String>,
    #[serde(default)]
    pub key_file: Option<String>,
    #[serde(default)]
    pub key_pem: Option<String>,
    /// Trust the system's roots as well as `ca_file`.
    #[serde(default)]
    pub include_system_ca_certs_pool: bool,
    /// `"1.2"` (default) or `"1.3"`.
    #[serde(default)]
    pub min_version: Option<String>,
    #[serde(default)]
    pub max_version: Option<String>,
    /// vigil's: where `auth_type: serviceAccount` reads `token` and `ca.crt`. The token is read
    /// again at every scrape, so a rotated (bound, expiring) token is picked up.
    #[serde(default = "default_sa_dir")]
    pub service_account_dir: String,
    /// Which of `node`, `pod`, `container`, `volume` to emit (default: node, pod, container).
    #[serde(default = "default_groups")]
    pub metric_groups: Vec<String>,
    /// `container.id` and/or `k8s.volume.type`, read from the kubelet's `/pods` (one more request
    /// per scrape, only when set).
    #[serde(default)]
    pub extra_metadata_labels: Vec<String>,
    /// Every interface's network counters instead of the default interface's.
    #[serde(default)]
    pub collect_all_network_interfaces: AllInterfaces,
    /// The node's name, for the node metadata otelcol reads from the API server; vigil names the
    /// node from the summary itself, so this is accepted and unused.
    #[serde(default)]
    pub node: String,
    /// otelcol reads persistent volumes' details from the API server with this; vigil takes the
    /// claim name from the pod and does not query persistent volumes, so it is accepted and unused.
    #[serde(default)]
    pub k8s_api_config: Option<serde_json::Value>,
    /// `{ <metric>: { enabled: bool } }`, mdatagen's toggles.
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricToggle>,
    /// `{ <attribute>: { enabled: bool } }`.
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, MetricToggle>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AllInterfaces {
    #[serde(default)]
    pub node: bool,
    #[serde(default)]
    pub pod: bool,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_initial_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_auth_type() -> String {
    "tls".into()
}
fn default_sa_dir() -> String {
    SERVICE_ACCOUNT_DIR.into()
}
fn default_groups() -> Vec<String> {
    vec!["container".into(), "pod".into(), "node".into()]
}

/// How requests to the kubelet authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Tls,
    ServiceAccount,
    None,
}

/// Which metric groups are on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Groups {
    pub node: bool,
    pub pod: bool,
    pub container: bool,
    pub volume: bool,
}

/// The config checked and reduced to what the scraper uses.
#[derive(Debug, Clone)]
pub struct Checked {
    pub auth: Auth,
    pub groups: Groups,
    pub container_id: bool,
    pub volume_type: bool,
    /// A limit or request ratio is on, so `/pods` is read for the specs' resources.
    pub resource_ratios: bool,
    pub toggles: Toggles,
    pub attributes: Toggles,
}

impl KubeletStatsConfig {
    /// Checks what the types cannot: every problem, each at its key path. Reads no file.
    pub fn check(&self) -> Result<Checked, ConfigError> {
        let mut errors = Vec::new();
        let auth = match self.auth_type.as_str() {
            "tls" => Auth::Tls,
            "serviceAccount" => Auth::ServiceAccount,
            "none" => Auth::None,
            "kubeConfig" => {
                errors.push(ConfigError::at(
                    "auth_type",
                    "\"kubeConfig\" is not supported: a node agent reaches its own kubelet \
                     directly; use serviceAccount",
                ));
                Auth::None
            }
            other => {
                errors.push(ConfigError::at(
                    "auth_type",
                    format!("unknown auth type {other:?}: expected tls, serviceAccount or none"),
                ));
                Auth::None
            }
        };
        if auth == Auth::Tls {
            if self.cert_file.is_none() && self.cert_pem.is_none() {
                errors.push(ConfigError::at(
                    "cert_file",
                    "auth_type tls needs a client certificate (cert_file or cert_pem)",
                ));
            }
            if self.key_file.is_none() && self.key_pem.is_none() {
                errors.push(ConfigError::at(
                    "key_file",
                    "auth_type tls needs the certificate's key (key_file or key_pem)",
                ));
            }
        }
        for (key, v) in [
            ("min_version", &self.min_version),
            ("max_version", &self.max_version),
        ] {
            if let Some(v) = v {
                if v != "1.2" && v != "1.3" {
                    errors.push(ConfigError::at(
                        key,
                        format!("TLS version {v:?} is not supported: expected \"1.2\" or \"1.3\""),
                    ));
                }
            }
        }
        if self.timeout > Duration::ZERO && self.timeout > self.collection_interval {
            errors.push(ConfigError::at(
                "timeout",
                "must not be longer than collection_interval",
            ));
        }
        if self.collection_interval.is_zero() {
            errors.push(ConfigError::at("collection_interval", "must be positive"));
        }
        let mut groups = Groups::default();
        for (i, g) in self.metric_groups.iter().enumerate() {
            match g.as_str() {
                "node" => groups.node = true,
                "pod" => groups.pod = true,
                "container" => groups.container = true,
                "volume" => groups.volume = true,
                other => errors.push(ConfigError::at(
                    format!("metric_groups::{i}"),
                    format!(
                        "unknown metric group {other:?}: expected node, pod, container or volume"
                    ),
                )),
            }
        }
        let (mut container_id, mut volume_type) = (false, false);
        for (i, l) in self.extra_metadata_labels.iter().enumerate() {
            match l.as_str() {
                "container.id" => container_id = true,
                "k8s.volume.type" => volume_type = true,
                other => errors.push(ConfigError::at(
                    format!("extra_metadata_labels::{i}"),
                    format!("label {other:?} is not supported: expected container.id or k8s.volume.type"),
                )),
            }
        }
        for (name, t) in &self.metrics {
            if t.enabled && NOT_EMITTED.contains(&name.as_str()) {
                errors.push(ConfigError::at(
                    format!("metrics::{name}::enabled"),
                    "vigil does not emit this metric yet (it needs the node's capacity or the \
                     system containers); leave it disabled",
                ));
            }
        }
        let known: Vec<(&'static str, bool)> = KNOWN
            .iter()
            .map(|m| (m.name, m.default_on))
            .chain(NOT_EMITTED.iter().map(|n| (*n, false)))
            .collect();
        let toggles = Toggles::build(&known, &self.metrics, ConfigError::at).unwrap_or_else(|e| {
            errors.push(e);
            Toggles::defaults(&known)
        });
        for name in self.resource_attributes.keys() {
            if !RESOURCE_ATTRIBUTES.iter().any(|(k, _)| k == name) {
                let names: Vec<&str> = RESOURCE_ATTRIBUTES.iter().map(|(k, _)| *k).collect();
                errors.push(ConfigError::at(
                    format!("resource_attributes::{name}"),
                    format!(
                        "unknown resource attribute; this receiver sets {}",
                        names.join(", ")
                    ),
                ));
            }
        }
        let known_attrs: BTreeMap<String, MetricToggle> = self
            .resource_attributes
            .iter()
            .filter(|(k, _)| RESOURCE_ATTRIBUTES.iter().any(|(n, _)| n == k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let attributes = Toggles::build(RESOURCE_ATTRIBUTES, &known_attrs, ConfigError::at)
            .unwrap_or_else(|_| Toggles::defaults(RESOURCE_ATTRIBUTES));
        if let Some(e) = ConfigError::join(errors) {
            return Err(e);
        }
        let resource_ratios = RESOURCE_RATIOS.iter().any(|n| toggles.on(n));
        Ok(Checked {
            auth,
            groups,
            container_id,
            volume_type,
            resource_ratios,
            toggles,
            attributes,
        })
    }

    /// The base URL requests go to: `endpoint` with the scheme its auth type implies, or this
    /// host's name on the kubelet's port.
    pub fn base_url(&self, auth: Auth) -> String {
        let secure = auth != Auth::None;
        let ep = self.endpoint.trim().trim_end_matches('/');
        if ep.starts_with("http://") || ep.starts_with("https://") {
            return ep.to_string();
        }
        let scheme = if secure { "https" } else { "http" };
        if ep.is_empty() {
            let host = hostname();
            let port = if secure { 10250 } else { 10255 };
            return format!("{scheme}://{host}:{port}");
        }
        format!("{scheme}://{ep}")
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
