//! The `k8snode` and `k8s_api` detectors (otelcol renamed the first to the second and keeps both
//! names): the node's name from the environment variable the downward API sets
//! (`node_from_env_var`, default `K8S_NODE_NAME`), its UID from the API server's Node, and, for
//! `k8s_api`, the cluster's UID (the `kube-system` namespace's, as otelcol reads it).

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
