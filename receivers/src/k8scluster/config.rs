//! `k8s_cluster` config as otelcol spells it: the API connection (`auth_type`, `context`),
//! `collection_interval`, `node_conditions_to_report`, `allocatable_types_to_report`,
//! `distribution`, `metadata_exporters`, `metadata_collection_interval`, `namespaces` (and the
//! deprecated `namespace`), `k8s_leader_elector`, and mdatagen's `metrics` and
//! `resource_attributes` toggles; plus vigil's bound on the cache, `max_objects_per_kind`.

use super::metrics::{KNOWN, NOT_EMITTED, RESOURCE_ATTRIBUTES};
use crate::hostmetrics::config::{MetricToggle, Toggles};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use vigil_core::config::duration;
use vigil_core::{ComponentId, ConfigError};
use vigil_k8s::AuthType;

/// How many objects of one kind (per watched namespace) the cache keeps by default. A cached Pod
/// with one container holds about 1.3 KB (each further container about 0.8 KB), a Deployment
/// about 0.5 KB (`a_cached_pod_costs_under_two_kib`), so the default bounds the pod cache near
/// 65 MB. Objects past it are counted: dropped from a list in `vigil_k8s_watch_dropped_objects`,
/// refused when added in `vigil_k8scluster_objects_refused`.
pub const DEFAULT_MAX_OBJECTS: usize = 50_000;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct K8sClusterConfig {
    /// `serviceAccount` (default), `kubeConfig` or `none`.
    #[serde(default)]
    pub auth_type: AuthType,
    /// The kubeconfig context for `auth_type: kubeConfig`; empty means the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// How often the cached state is emitted (otelcol's default: 10s). Changes arrive by watch in
    /// between; the interval only sets how often they are reported.
    #[serde(default = "default_interval", with = "duration")]
    pub collection_interval: Duration,
    /// Node condition types, one `k8s.node.condition_<type>` metric each (1 true, 0 false,
    /// -1 unknown). Default `[Ready]`.
    #[serde(default = "default_conditions")]
    pub node_conditions_to_report: Vec<String>,
    /// Allocatable resources, one `k8s.node.allocatable_<type>` metric each: `cpu`, `memory`,
    /// `ephemeral-storage`, `storage`, `pods`. Default none.
    #[serde(default)]
    pub allocatable_types_to_report: Vec<String>,
    /// otelcol's metadata sinks (exporters implementing its MetadataExporter, signalfx); no vigil
    /// exporter takes Kubernetes metadata, so a non-empty list is refused.
    #[serde(default)]
    pub metadata_exporters: Vec<String>,
    /// `kubernetes` (default) or `openshift`.
    #[serde(default = "default_distribution")]
    pub distribution: String,
    /// How often otelcol re-sends all metadata to `metadata_exporters` and entity events (default
    /// 5m). vigil has neither sink, so the value is checked and has no effect.
    #[serde(default = "default_metadata_interval", with = "duration")]
    pub metadata_collection_interval: Duration,
    /// Deprecated in otelcol for `namespaces`; taken as a one-element `namespaces`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Watch only these namespaces (Roles instead of a ClusterRole suffice). Nodes and Namespaces
    /// are then not watched, as in otelcol.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// The `k8s_leader_elector` extension whose lease decides which replica reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_leader_elector: Option<String>,
    /// vigil's: objects kept per kind (and per watched namespace). Past it new objects are
    /// refused and counted.
    #[serde(default = "default_max_objects")]
    pub max_objects_per_kind: usize,
    /// `{ <metric>: { enabled: bool } }`, mdatagen's toggles.
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricToggle>,
    /// `{ <attribute>: { enabled: bool } }`.
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, MetricToggle>,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_metadata_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_conditions() -> Vec<String> {
    vec!["Ready".into()]
}
fn default_distribution() -> String {
    "kubernetes".into()
}
fn default_max_objects() -> usize {
    DEFAULT_MAX_OBJECTS
}

/// The allocatable resource types otelcol reports.
pub const ALLOCATABLE: &[&str] = &["cpu", "memory", "ephemeral-storage", "storage", "pods"];

/// One `k8s.node.condition_<type>` or `k8s.node.allocatable_<type>` metric, named once.
#[derive(Debug, Clone)]
pub struct NodeMetric {
    /// The condition type or resource name as the API spells it (`MemoryPressure`, `cpu`).
    pub key: String,
    pub name: String,
    pub description: String,
    pub unit: &'static str,
}

/// The config checked and reduced to what the receiver uses.
#[derive(Debug, Clone)]
pub struct Checked {
    pub metrics: Toggles,
    pub attributes: Toggles,
    pub conditions: Vec<NodeMetric>,
    pub allocatable: Vec<NodeMetric>,
    /// Empty means the whole cluster.
    pub namespaces: Vec<String>,
    pub leader_elector: Option<ComponentId>,
}

/// `MemoryPressure` → `memory_pressure`, `PIDPressure` → `pid_pressure`,
/// `ephemeral-storage` → `ephemeral_storage`: the snake case otelcol's metric names use.
pub fn snake(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c == '-' || c == ' ' || c == '.' {
            out.push('_');
        } else if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1);
            // A word starts at an upper-case letter after a lower-case one, or at the last
            // capital of an acronym that a lower-case letter follows (`PIDPressure`).
            let boundary = prev.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit())
                || (prev.is_some_and(|p| p.is_uppercase())
                    && next.is_some_and(|n| n.is_lowercase()));
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

impl K8sClusterConfig {
    /// Checks what the types cannot: every problem, each at its key path. Reads nothing.
    pub fn check(&self) -> Result<Checked, ConfigError> {
        let mut errors = Vec::new();
        if self.collection_interval.is_zero() {
            errors.push(ConfigError::at("collection_interval", "must be positive"));
        }
        match self.distribution.as_str() {
            "kubernetes" => {}
            "openshift" => errors.push(ConfigError::at(
                "distribution",
                "\"openshift\" is not supported yet: vigil does not watch OpenShift's \
                 ClusterResourceQuotas (openshift.clusterquota.*); use \"kubernetes\"",
            )),
            other => errors.push(ConfigError::at(
                "distribution",
                format!(
                    "{other:?} is not a supported distribution: expected \"kubernetes\" or \
                     \"openshift\""
                ),
            )),
        }
        if !self.metadata_exporters.is_empty() {
            errors.push(ConfigError::at(
                "metadata_exporters",
                "no vigil exporter accepts Kubernetes metadata updates (in otelcol only signalfx \
                 does); leave the list empty",
            ));
        }
        if self.max_objects_per_kind == 0 {
            errors.push(ConfigError::at(
                "max_objects_per_kind",
                "must be at least 1",
            ));
        }
        let mut namespaces = self.namespaces.clone();
        if !self.namespace.is_empty() && !namespaces.contains(&self.namespace) {
            namespaces.push(self.namespace.clone());
        }
        for (i, ns) in self.namespaces.iter().enumerate() {
            if ns.is_empty() {
                errors.push(ConfigError::at(
                    format!("namespaces::{i}"),
                    "a namespace name must not be empty",
                ));
            }
        }
        let leader_elector = match self.k8s_leader_elector.as_deref() {
            None | Some("") => None,
            Some(s) => match ComponentId::parse(s) {
                Ok(id) => Some(id),
                Err(e) => {
                    errors.push(ConfigError::at(
                        "k8s_leader_elector",
                        format!("{s:?} is not an extension id: {e}"),
                    ));
                    None
                }
            },
        };
        let mut conditions = Vec::new();
        for (i, c) in self.node_conditions_to_report.iter().enumerate() {
            if c.is_empty() {
                errors.push(ConfigError::at(
                    format!("node_conditions_to_report::{i}"),
                    "a node condition type must not be empty",
                ));
                continue;
            }
            conditions.push(NodeMetric {
                key: c.clone(),
                name: format!("k8s.node.condition_{}", snake(c)),
                description: format!(
                    "Whether this node is {c} (1), not {c} (0) or in an unknown state (-1)"
                ),
                unit: "1",
            });
        }
        let mut allocatable = Vec::new();
        for (i, a) in self.allocatable_types_to_report.iter().enumerate() {
            let (unit, description) = match a.as_str() {
                "cpu" => ("{cpu}", "How many CPU cores remaining that the node can allocate to pods"),
                "memory" => ("By", "How many bytes of RAM memory remaining that the node can allocate to pods"),
                "ephemeral-storage" => ("By", "How many bytes of ephemeral storage remaining that the node can allocate to pods"),
                "storage" => ("By", "How many bytes of storage remaining that the node can allocate to pods"),
                "pods" => ("{pod}", "How many pods remaining the node can allocate"),
                other => {
                    errors.push(ConfigError::at(
                        format!("allocatable_types_to_report::{i}"),
                        format!(
                            "unknown allocatable type {other:?}: expected one of {}",
                            ALLOCATABLE.join(", ")
                        ),
                    ));
                    continue;
                }
            };
            allocatable.push(NodeMetric {
                key: a.clone(),
                name: format!("k8s.node.allocatable_{}", snake(a)),
                description: description.into(),
                unit,
            });
        }
        for (name, t) in &self.metrics {
            if t.enabled && NOT_EMITTED.contains(&name.as_str()) {
                errors.push(ConfigError::at(
                    format!("metrics::{name}::enabled"),
                    "vigil does not emit this metric yet (it watches no Services, \
                     PersistentVolumes, PersistentVolumeClaims or OpenShift quotas); leave it \
                     disabled",
                ));
            }
        }
        let known: Vec<(&'static str, bool)> = KNOWN
            .iter()
            .map(|m| (m.name, m.default_on))
            .chain(NOT_EMITTED.iter().map(|n| (*n, false)))
            .collect();
        let metrics = Toggles::build(&known, &self.metrics, ConfigError::at).unwrap_or_else(|e| {
            errors.push(e);
            Toggles::defaults(&known)
        });
        let attrs: Vec<(&'static str, bool)> = RESOURCE_ATTRIBUTES
            .iter()
            .map(|(n, on, _)| (*n, *on))
            .collect();
        for (name, t) in &self.resource_attributes {
            match RESOURCE_ATTRIBUTES.iter().find(|(n, ..)| n == name) {
                None => {
                    let names: Vec<&str> = attrs.iter().map(|(n, _)| *n).collect();
                    errors.push(ConfigError::at(
                        format!("resource_attributes::{name}"),
                        format!(
                            "unknown resource attribute; this receiver sets {}",
                            names.join(", ")
                        ),
                    ));
                }
                Some((_, _, false)) if t.enabled => errors.push(ConfigError::at(
                    format!("resource_attributes::{name}::enabled"),
                    "vigil does not set this attribute yet (it belongs to resources vigil does \
                     not watch); leave it disabled",
                )),
                Some(_) => {}
            }
        }
        let known_attrs: BTreeMap<String, MetricToggle> = self
            .resource_attributes
            .iter()
            .filter(|(k, _)| attrs.iter().any(|(n, _)| n == k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let attributes = Toggles::build(&attrs, &known_attrs, ConfigError::at)
            .unwrap_or_else(|_| Toggles::defaults(&attrs));
        if let Some(e) = ConfigError::join(errors) {
            return Err(e);
        }
        Ok(Checked {
            metrics,
            attributes,
            conditions,
            allocatable,
            namespaces,
            leader_elector,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::snake;

    #[test]
    fn condition_and_resource_names_are_snake_cased_as_otelcol_does() {
        for (a, b) in [
            ("Ready", "ready"),
            ("MemoryPressure", "memory_pressure"),
            ("DiskPressure", "disk_pressure"),
            ("PIDPressure", "pid_pressure"),
            ("NetworkUnavailable", "network_unavailable"),
            ("ephemeral-storage", "ephemeral_storage"),
            ("cpu", "cpu"),
        ] {
            assert_eq!(snake(a), b);
        }
    }
}
