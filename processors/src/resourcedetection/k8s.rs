//! The `k8snode` and `k8s_api` detectors (otelcol renamed the first to the second and keeps both
//! names): the node's name from the environment variable the downward API sets
//! (`node_from_env_var`, default `K8S_NODE_NAME`), its UID from the API server's Node, and, for
//! `k8s_api`, the cluster's UID (the `kube-system` namespace's, as otelcol reads it). `kubeadm`
//! reads the cluster's name from the ConfigMap kubeadm writes, and the same UID.

use super::{enabled, Found, K8sNodeConfig};
use k8s_openapi::api::core::v1::{Namespace, Node};
use vigil_core::otlp::common::v1::any_value::Value;
use vigil_k8s::k8s_openapi;
use vigil_k8s::kube::Api;

/// A client given to the detectors instead of the one `auth_type` describes.
#[derive(Clone)]
pub struct Client(pub vigil_k8s::kube::Client);

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("kube::Client")
    }
}

/// `k8snode`'s attributes and whether each is on by default.
pub const K8SNODE_ATTRS: &[(&str, bool)] = &[("k8s.node.name", true), ("k8s.node.uid", true)];
/// `k8s_api`'s attributes and whether each is on by default.
pub const K8S_API_ATTRS: &[(&str, bool)] = &[
    ("k8s.node.name", true),
    ("k8s.node.uid", true),
    ("k8s.cluster.uid", true),
];

/// Runs one of the two detectors. The node name is required (its absence stops the processor
/// from starting, as in otelcol); an API server that does not answer costs only the UIDs, with
/// a warning, so that an agent without RBAC for nodes still starts.
pub async fn detect(
    detector: &str,
    cfg: &K8sNodeConfig,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
    client: Option<Client>,
) -> Result<Found, String> {
    let known = if detector == "k8s_api" {
        K8S_API_ATTRS
    } else {
        K8SNODE_ATTRS
    };
    let on = |n: &str| enabled(known, &cfg.resource_attributes, n);
    let node = env(&cfg.node_from_env_var)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            format!(
                "{detector} detector: environment variable {} is not set (set it from spec.nodeName with the downward API)",
                cfg.node_from_env_var
            )
        })?;
    let mut found: Found = Vec::new();
    if on("k8s.node.name") {
        found.push(("k8s.node.name".into(), Value::StringValue(node.clone())));
    }
    if !on("k8s.node.uid") && !on("k8s.cluster.uid") {
        return Ok(found);
    }
    let client = match client {
        Some(c) => c.0,
        None => match vigil_k8s::connect(&vigil_k8s::ApiConfig {
            auth_type: cfg.auth_type,
            context: cfg.context.clone(),
        })
        .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(
                    "{detector} detector: {e}; k8s.node.uid and k8s.cluster.uid are left out"
                );
                return Ok(found);
            }
        },
    };
    if on("k8s.node.uid") {
        let nodes: Api<Node> = Api::all(client.clone());
        match nodes.get_metadata(&node).await {
            Ok(n) => {
                if let Some(uid) = n.metadata.uid {
                    found.push(("k8s.node.uid".into(), Value::StringValue(uid)));
                }
            }
            Err(e) => tracing::warn!("{detector} detector: reading node {node:?}: {e}"),
        }
    }
    if on("k8s.cluster.uid") {
        let namespaces: Api<Namespace> = Api::all(client);
        match namespaces.get_metadata("kube-system").await {
            Ok(ns) => {
                if let Some(uid) = ns.metadata.uid {
                    found.push(("k8s.cluster.uid".into(), Value::StringValue(uid)));
                }
            }
            Err(e) => tracing::warn!("{detector} detector: reading namespace kube-system: {e}"),
        }
    }
    Ok(found)
}

/// `kubeadm`'s attributes and whether each is on by default.
pub const KUBEADM_ATTRS: &[(&str, bool)] = &[("k8s.cluster.name", true), ("k8s.cluster.uid", true)];

/// The ConfigMap kubeadm writes at `kubeadm init`, in the namespace whose UID is the cluster's.
pub const KUBEADM_CONFIGMAP: &str = "kubeadm-config";
const KUBE_SYSTEM: &str = "kube-system";

/// The part of kubeadm's `ClusterConfiguration` this detector reads.
#[derive(serde::Deserialize)]
struct ClusterConfiguration {
    #[serde(default, rename = "clusterName")]
    cluster_name: Option<String>,
}

/// The cluster name in a `kubeadm-config` ConfigMap's data: the `clusterName` of the
/// `ClusterConfiguration` YAML kubeadm stores there, or a top-level `clusterName` key (what
/// otelcol's first kubeadm detector read, and what a hand-written ConfigMap may carry).
pub fn kubeadm_cluster_name(
    data: &std::collections::BTreeMap<String, String>,
) -> Result<Option<String>, String> {
    if let Some(yaml) = data.get("ClusterConfiguration") {
        let c: ClusterConfiguration = serde_saphyr::from_str(yaml)
            .map_err(|e| format!("{KUBEADM_CONFIGMAP} ClusterConfiguration: {e}"))?;
        if let Some(n) = c.cluster_name.filter(|n| !n.is_empty()) {
            return Ok(Some(n));
        }
    }
    Ok(data.get("clusterName").filter(|n| !n.is_empty()).cloned())
}

/// `kubeadm`: the cluster's name from `kube-system/kubeadm-config` and its UID from the
/// `kube-system` namespace, as otelcol reads them. A cluster name that cannot be read costs the
/// whole detector (otelcol returns no resource then); a UID refused for lack of RBAC (401/403)
/// costs only the UID, as in otelcol, which keeps older deployments without that grant working.
pub async fn kubeadm(cfg: &super::KubeadmConfig, client: Option<Client>) -> super::cloud::Out {
    use super::cloud::Miss;
    use k8s_openapi::api::core::v1::ConfigMap;
    let on = |n: &str| enabled(KUBEADM_ATTRS, &cfg.resource_attributes, n);
    let mut found: Found = Vec::new();
    if !on("k8s.cluster.name") && !on("k8s.cluster.uid") {
        return Ok(found);
    }
    let client = match client {
        Some(c) => c.0,
        None => vigil_k8s::connect(&vigil_k8s::ApiConfig {
            auth_type: cfg.auth_type,
            context: cfg.context.clone(),
        })
        .await
        .map_err(|e| Miss::Failed(e.to_string()))?,
    };
    if on("k8s.cluster.name") {
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), KUBE_SYSTEM);
        let cm = maps.get(KUBEADM_CONFIGMAP).await.map_err(|e| {
            Miss::Failed(format!(
                "reading ConfigMap {KUBE_SYSTEM}/{KUBEADM_CONFIGMAP}: {e}"
            ))
        })?;
        let data = cm.data.unwrap_or_default();
        // otelcol sets the attribute even when the key is missing (to ""); an empty name says
        // nothing, so it is left out.
        if let Some(n) = kubeadm_cluster_name(&data).map_err(Miss::Failed)? {
            found.push(("k8s.cluster.name".into(), Value::StringValue(n)));
        }
    }
    if on("k8s.cluster.uid") {
        let namespaces: Api<Namespace> = Api::all(client);
        match namespaces.get_metadata(KUBE_SYSTEM).await {
            Ok(ns) => {
                if let Some(uid) = ns.metadata.uid {
                    found.push(("k8s.cluster.uid".into(), Value::StringValue(uid)));
                }
            }
            Err(vigil_k8s::kube::Error::Api(s)) if s.code == 401 || s.code == 403 => {
                tracing::warn!(
                    "kubeadm detector: no permission to get namespace {KUBE_SYSTEM}, so k8s.cluster.uid is left out (grant get on namespaces/{KUBE_SYSTEM} or turn the attribute off): {}",
                    s.message
                );
            }
            Err(e) => {
                return Err(Miss::Failed(format!(
                    "reading namespace {KUBE_SYSTEM}: {e}"
                )))
            }
        }
    }
    Ok(found)
}
