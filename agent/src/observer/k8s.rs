//! `k8s_observer` (otelcol's `k8sobserver`): endpoints from the Kubernetes API. With `observe_pods`
//! (the default) every pod with an IP gives a `pod` endpoint, a `pod.container` endpoint per
//! container and a `port` endpoint per declared container port; `observe_nodes`, `observe_services`
//! and `observe_ingresses` add `k8s.node`, `k8s.service` and `k8s.ingress` endpoints. `node` (usually
//! `${env:K8S_NODE_NAME}`) limits pods and nodes to this node, with a field selector, so a DaemonSet
//! pod watches only its own node's pods. Each kind is one list/watch (`vigil_k8s::watch`): a dropped
//! watch or a `410 Gone` re-list replaces that kind's set whole, so nothing is lost or doubled.
//! Bounded by the watch's `max_objects` (10,000 objects per kind; the rest are dropped and counted
//! in `vigil_k8s_watch_dropped_objects{component,resource}`).

use super::{string_map, Endpoint, Feed};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use vigil_core::{Component, ComponentId, ConfigError, Extension, Host, Tasks};
use vigil_k8s::k8s_openapi::api::core::v1::{Node, Pod, Service};
use vigil_k8s::k8s_openapi::api::networking::v1::Ingress;
use vigil_k8s::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use vigil_k8s::kube::runtime::watcher;
use vigil_k8s::kube::Api;
use vigil_k8s::{AuthType, Change, WatchLimits};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How to reach the API server: `serviceAccount` (default), `kubeConfig` or `none`.
    #[serde(default)]
    pub auth_type: AuthType,
    /// The kubeconfig context with `kubeConfig`; empty is the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Only this node's pods and this node; empty watches the whole cluster.
    #[serde(default)]
    pub node: String,
    #[serde(default = "yes")]
    pub observe_pods: bool,
    #[serde(default)]
    pub observe_nodes: bool,
    #[serde(default)]
    pub observe_services: bool,
    #[serde(default)]
    pub observe_ingresses: bool,
}

fn yes() -> bool {
    true
}

struct Factory;

pub fn factory() -> Arc<dyn vigil_core::factory::DynExtensionFactory> {
    vigil_core::factory::extension(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = Config;

    fn type_name(&self) -> &'static str {
        "k8s_observer"
    }

    fn validate(&self, _id: &ComponentId, cfg: &Config) -> Result<(), ConfigError> {
        if !(cfg.observe_pods || cfg.observe_nodes || cfg.observe_services || cfg.observe_ingresses)
        {
            return Err(ConfigError::at(
                "observe_pods",
                "one of observe_pods, observe_nodes, observe_services and observe_ingresses must be true",
            ));
        }
        Ok(())
    }
}

impl vigil_core::factory::ExtensionFactory for Factory {
    fn stability(&self) -> vigil_core::Stability {
        vigil_core::Stability::Alpha
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: Config,
    ) -> Result<Arc<dyn Extension>, ConfigError> {
        Ok(Arc::new(K8sObserver {
            id: set.id,
            cfg,
            feed: Feed::default(),
            tasks: set.tasks,
        }))
    }
}

pub struct K8sObserver {
    id: ComponentId,
    cfg: Config,
    feed: Feed,
    tasks: Tasks,
}

/// One object's UID and its endpoints.
type Trimmed = (String, Vec<Endpoint>);

/// Each kind's endpoints by object UID; the feed publishes their union.
#[derive(Default)]
struct State {
    kinds: BTreeMap<&'static str, BTreeMap<String, Vec<Endpoint>>>,
}

impl State {
    fn apply(&mut self, kind: &'static str, change: Change<Trimmed>) {
        let set = self.kinds.entry(kind).or_default();
        match change {
            Change::Replace(all) => *set = all.into_iter().collect(),
            Change::Apply((uid, eps)) => {
                set.insert(uid, eps);
            }
            Change::Delete((uid, _)) => {
                set.remove(&uid);
            }
        }
    }

    fn all(&self) -> BTreeMap<String, Endpoint> {
        self.kinds
            .values()
            .flat_map(|m| m.values().flatten())
            .map(|e| (e.id.clone(), e.clone()))
            .collect()
    }
}

impl K8sObserver {
    fn spawn_watch<K>(
        &self,
        api: Api<K>,
        wc: watcher::Config,
        kind: &'static str,
        state: Arc<Mutex<State>>,
        trim: fn(&str, K) -> Option<Trimmed>,
    ) where
        K: vigil_k8s::kube::Resource
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + 'static,
        K::DynamicType: Default,
    {
        let (feed, name, stop) = (
            self.feed.clone(),
            self.id.to_string(),
            self.tasks.stopping(),
        );
        let obs = self.id.to_string();
        self.tasks.spawn(async move {
            let run = vigil_k8s::watch(
                api,
                wc,
                WatchLimits::default(),
                &name,
                move |k: K| trim(&obs, k),
                |change| {
                    let all = {
                        let mut st = vigil_core::lock(&state);
                        st.apply(kind, change);
                        st.all()
                    };
                    feed.publish(all);
                    async {}
                },
            );
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = run => {}
            }
        });
    }
}

#[async_trait]
impl Component for K8sObserver {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let client = vigil_k8s::connect(&vigil_k8s::ApiConfig {
            auth_type: self.cfg.auth_type,
            context: self.cfg.context.clone(),
        })
        .await
        .map_err(|e| anyhow::anyhow!("extensions::{}::auth_type: {e}", self.id))?;
        let state = Arc::new(Mutex::new(State::default()));
        let node = self.cfg.node.trim();
        if node.is_empty() {
            let _in = tracing::info_span!("component", kind = "extension", id = %self.id).entered();
            tracing::info!("node is empty: watching the pods and nodes of the whole cluster");
        }
        let by_node = |field: &str| {
            let wc = watcher::Config::default();
            if node.is_empty() {
                wc
            } else {
                wc.fields(&format!("{field}={node}"))
            }
        };
        if self.cfg.observe_pods {
            let wc = by_node("spec.nodeName");
            self.spawn_watch(
                Api::<Pod>::all(client.clone()),
                wc,
                "pods",
                Arc::clone(&state),
                pod_endpoints,
            );
        }
        if self.cfg.observe_nodes {
            let wc = by_node("metadata.name");
            self.spawn_watch(
                Api::<Node>::all(client.clone()),
                wc,
                "nodes",
                Arc::clone(&state),
                node_endpoint,
            );
        }
        if self.cfg.observe_services {
            self.spawn_watch(
                Api::<Service>::all(client.clone()),
                watcher::Config::default(),
                "services",
                Arc::clone(&state),
                service_endpoint,
            );
        }
        if self.cfg.observe_ingresses {
            self.spawn_watch(
                Api::<Ingress>::all(client),
                watcher::Config::default(),
                "ingresses",
                state,
                ingress_endpoints,
            );
        }
        Ok(())
    }

    fn tasks(&self) -> Option<&Tasks> {
        Some(&self.tasks)
    }
}

impl Extension for K8sObserver {
    fn observer(&self) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        Some(Arc::new(self.feed.clone()))
    }
}

/// `name`, `uid`, `namespace`, `labels`, `annotations`: what every object's env has.
fn meta_env(m: &ObjectMeta) -> Map<String, Value> {
    let mut env = Map::new();
    env.insert("name".into(), json!(m.name.clone().unwrap_or_default()));
    env.insert("uid".into(), json!(m.uid.clone().unwrap_or_default()));
    env.insert(
        "namespace".into(),
        json!(m.namespace.clone().unwrap_or_default()),
    );
    let empty = BTreeMap::new();
    env.insert(
        "labels".into(),
        string_map(m.labels.as_ref().unwrap_or(&empty)),
    );
    env.insert(
        "annotations".into(),
        string_map(m.annotations.as_ref().unwrap_or(&empty)),
    );
    env
}

/// `ip:port`, bracketing an IPv6 address.
fn host_port(ip: &str, port: i32) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// A pod's endpoints: the pod, each container, each declared container port. None for a pod
/// without an IP yet (pending) or one that has finished (nothing listens any more).
pub fn pod_endpoints(obs: &str, pod: Pod) -> Option<Trimmed> {
    let uid = pod.metadata.uid.clone()?;
    let status = pod.status.unwrap_or_default();
    let ip = status.pod_ip.clone().unwrap_or_default();
    let phase = status.phase.clone().unwrap_or_default();
    if ip.is_empty() || phase == "Succeeded" || phase == "Failed" {
        return Some((uid, Vec::new()));
    }
    let pod_env = meta_env(&pod.metadata);
    let mut out = vec![Endpoint {
        id: format!("{obs}/{uid}"),
        target: ip.clone(),
        kind: "pod",
        details: pod_env.clone(),
    }];
    let statuses = status.container_statuses.unwrap_or_default();
    for c in pod.spec.map(|s| s.containers).unwrap_or_default() {
        let image = c.image.clone().unwrap_or_default();
        // `registry/name:tag` (a digest after `@` is not a tag).
        let (image_name, tag) = match image.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n.to_string(), t.to_string()),
            _ => (image.clone(), "latest".to_string()),
        };
        let container_id = statuses
            .iter()
            .find(|s| s.name == c.name)
            .and_then(|s| s.container_id.clone())
            .map(|id| id.rsplit("://").next().unwrap_or_default().to_string())
            .unwrap_or_default();
        let mut d = Map::new();
        d.insert("name".into(), json!(c.name));
        d.insert("container_name".into(), json!(c.name));
        d.insert("container_id".into(), json!(container_id));
        d.insert("container_image".into(), json!(image_name));
        d.insert("image".into(), json!(image_name));
        d.insert("tag".into(), json!(tag));
        d.insert("pod".into(), Value::Object(pod_env.clone()));
        out.push(Endpoint {
            id: format!("{obs}/{uid}/{}", c.name),
            target: ip.clone(),
            kind: "pod.container",
            details: d,
        });
        for p in c.ports.unwrap_or_default() {
            let pname = p.name.clone().unwrap_or_default();
            let mut d = Map::new();
            d.insert("name".into(), json!(pname));
            d.insert("port".into(), json!(p.container_port));
            d.insert(
                "transport".into(),
                json!(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
            );
            d.insert("container_name".into(), json!(c.name));
            d.insert("pod".into(), Value::Object(pod_env.clone()));
            out.push(Endpoint {
                id: format!("{obs}/{uid}/{pname}({})", p.container_port),
                target: host_port(&ip, p.container_port),
                kind: "port",
                details: d,
            });
        }
    }
    Some((uid, out))
}

/// A node's endpoint; its target is the internal IP (the hostname when it has none).
pub fn node_endpoint(obs: &str, node: Node) -> Option<Trimmed> {
    let uid = node.metadata.uid.clone()?;
    let mut d = meta_env(&node.metadata);
    d.remove("namespace");
    let status = node.status.unwrap_or_default();
    let addr = |t: &str| {
        status
            .addresses
            .iter()
            .flatten()
            .find(|a| a.type_ == t)
            .map(|a| a.address.clone())
            .unwrap_or_default()
    };
    let (internal_ip, hostname) = (addr("InternalIP"), addr("Hostname"));
    for (k, t) in [
        ("hostname", "Hostname"),
        ("external_ip", "ExternalIP"),
        ("internal_ip", "InternalIP"),
        ("external_dns", "ExternalDNS"),
        ("internal_dns", "InternalDNS"),
    ] {
        d.insert(k.into(), json!(addr(t)));
    }
    let kubelet_port = status
        .daemon_endpoints
        .and_then(|e| e.kubelet_endpoint)
        .map(|k| k.port)
        .unwrap_or(0);
    d.insert("kubelet_endpoint_port".into(), json!(kubelet_port));
    let target = if internal_ip.is_empty() {
        hostname
    } else {
        internal_ip
    };
    Some((
        uid.clone(),
        vec![Endpoint {
            id: format!("{obs}/{uid}"),
            target,
            kind: "k8s.node",
            details: d,
        }],
    ))
}

/// A service's endpoint; its target is the cluster DNS name `<name>.<namespace>.svc`.
pub fn service_endpoint(obs: &str, svc: Service) -> Option<Trimmed> {
    let uid = svc.metadata.uid.clone()?;
    let mut d = meta_env(&svc.metadata);
    let spec = svc.spec.unwrap_or_default();
    d.insert("service_type".into(), json!(spec.type_.unwrap_or_default()));
    d.insert(
        "cluster_ip".into(),
        json!(spec.cluster_ip.unwrap_or_default()),
    );
    let target = format!(
        "{}.{}.svc",
        svc.metadata.name.unwrap_or_default(),
        svc.metadata.namespace.unwrap_or_default()
    );
    Some((
        uid.clone(),
        vec![Endpoint {
            id: format!("{obs}/{uid}"),
            target,
            kind: "k8s.service",
            details: d,
        }],
    ))
}

/// An ingress's endpoints: one per rule host and path, `https` when a TLS entry names the host.
pub fn ingress_endpoints(obs: &str, ing: Ingress) -> Option<Trimmed> {
    let uid = ing.metadata.uid.clone()?;
    let env = meta_env(&ing.metadata);
    let spec = ing.spec.unwrap_or_default();
    let tls_hosts: Vec<String> = spec
        .tls
        .iter()
        .flatten()
        .flat_map(|t| t.hosts.clone().unwrap_or_default())
        .collect();
    let mut out = Vec::new();
    for rule in spec.rules.unwrap_or_default() {
        let host = rule.host.clone().unwrap_or_default();
        let scheme = if tls_hosts.contains(&host) {
            "https"
        } else {
            "http"
        };
        let paths = rule.http.map(|h| h.paths).unwrap_or_default();
        for p in paths {
            let path = p.path.unwrap_or_else(|| "/".into());
            let mut d = env.clone();
            d.insert("scheme".into(), json!(scheme));
            d.insert("host".into(), json!(host));
            d.insert("path".into(), json!(path));
            out.push(Endpoint {
                id: format!("{obs}/{uid}/{host}{path}"),
                target: format!("{scheme}://{host}{path}"),
                kind: "k8s.ingress",
                details: d,
            });
        }
    }
    Some((uid, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_json(ip: &str) -> Value {
        json!({
            "metadata": {"name": "redis-0", "namespace": "db", "uid": "u-1",
                "labels": {"app": "redis"}, "annotations": {"prometheus.io/scrape": "true"}},
            "spec": {"nodeName": "n1", "containers": [
                {"name": "redis", "image": "docker.io/redis:7.2",
                 "ports": [{"name": "client", "containerPort": 6379, "protocol": "TCP"},
                           {"containerPort": 9121}]}]},
            "status": {"phase": "Running", "podIP": ip,
                "containerStatuses": [{"name": "redis", "ready": true, "restartCount": 0,
                    "image": "redis:7.2", "imageID": "x", "containerID": "containerd://abc123"}]}
        })
    }

    #[test]
    fn a_pod_gives_pod_container_and_port_endpoints_with_otelcol_fields() {
        let pod: Pod = serde_json::from_value(pod_json("10.1.2.3")).unwrap();
        let (uid, eps) = pod_endpoints("k8s_observer", pod).unwrap();
        assert_eq!(uid, "u-1");
        let ids: Vec<&str> = eps.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "k8s_observer/u-1",
                "k8s_observer/u-1/redis",
                "k8s_observer/u-1/client(6379)",
                "k8s_observer/u-1/(9121)"
            ]
        );
        let env = eps[0].env();
        assert_eq!(env["type"], "pod");
        assert_eq!(env["endpoint"], "10.1.2.3");
        assert_eq!(env["annotations"]["prometheus.io/scrape"], "true");
        let c = eps[1].env();
        assert_eq!(c["container_id"], "abc123");
        assert_eq!(c["container_image"], "docker.io/redis");
        assert_eq!(c["tag"], "7.2");
        assert_eq!(c["pod"]["namespace"], "db");
        let p = eps[2].env();
        assert_eq!(p["endpoint"], "10.1.2.3:6379");
        assert_eq!(p["port"], 6379);
        assert_eq!(p["transport"], "TCP");
        assert_eq!(p["pod"]["labels"]["app"], "redis");
        assert_eq!(eps[3].env()["transport"], "TCP");
    }

    #[test]
    fn a_pod_without_an_ip_has_no_endpoints_and_ipv6_targets_are_bracketed() {
        let pod: Pod = serde_json::from_value(pod_json("")).unwrap();
        assert!(pod_endpoints("o", pod).unwrap().1.is_empty());
        let pod: Pod = serde_json::from_value(pod_json("fd00::5")).unwrap();
        assert_eq!(
            pod_endpoints("o", pod).unwrap().1[2].target,
            "[fd00::5]:6379"
        );
    }

    #[test]
    fn nodes_services_and_ingresses() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "uid": "nu"},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.10"},
                {"type": "Hostname", "address": "n1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}
        }))
        .unwrap();
        let n = &node_endpoint("o", node).unwrap().1[0];
        assert_eq!((n.target.as_str(), n.kind), ("10.0.0.10", "k8s.node"));
        assert_eq!(n.env()["kubelet_endpoint_port"], 10250);
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "su"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.5"}
        }))
        .unwrap();
        let s = &service_endpoint("o", svc).unwrap().1[0];
        assert_eq!(s.target, "web.shop.svc");
        assert_eq!(s.env()["cluster_ip"], "10.96.0.5");
        let ing: Ingress = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "iu"},
            "spec": {"tls": [{"hosts": ["a.example"]}], "rules": [
                {"host": "a.example", "http": {"paths": [{"path": "/api", "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
        }))
        .unwrap();
        let i = &ingress_endpoints("o", ing).unwrap().1[0];
        assert_eq!(i.target, "https://a.example/api");
        assert_eq!(i.env()["scheme"], "https");
    }

    #[test]
    fn a_relist_replaces_a_kind_whole() {
        let ep = |id: &str| Endpoint {
            id: id.into(),
            target: "t".into(),
            kind: "pod",
            details: Map::new(),
        };
        let mut st = State::default();
        st.apply("pods", Change::Apply(("a".into(), vec![ep("a")])));
        st.apply("pods", Change::Apply(("b".into(), vec![ep("b")])));
        st.apply("nodes", Change::Apply(("n".into(), vec![ep("n")])));
        st.apply("pods", Change::Replace(vec![("b".into(), vec![ep("b")])]));
        assert_eq!(st.all().keys().collect::<Vec<_>>(), ["b", "n"]);
        st.apply("pods", Change::Delete(("b".into(), vec![])));
        assert_eq!(st.all().keys().collect::<Vec<_>>(), ["n"]);
    }
}
