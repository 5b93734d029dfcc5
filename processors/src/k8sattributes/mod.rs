//! `k8sattributes`: otelcol's Kubernetes attributes processor. It watches the pods of this node
//! (`filter.node_from_env_var`, a `spec.nodeName` field selector), names the pod each resource
//! came from through `pod_association` (the client's IP, `k8s.pod.ip`, `k8s.pod.uid`,
//! `container.id`, …), and adds what `extract` asks for. A ReplicaSet's Deployment is read on
//! demand (metadata only) into a bounded cache instead of watching every ReplicaSet of the
//! cluster: otelcol's watch of all ReplicaSets is what costs its users gigabytes in clusters with
//! hundreds of thousands of them (docs/kubernetes.md).

pub mod config;
pub mod pods;
#[cfg(test)]
mod tests;

use async_trait::async_trait;
use config::{Compiled, From, K8sAttributesConfig, Source};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use lru::LruCache;
use metrics::{Counter, Gauge};
use pods::{Fields, PodEntry, PodInfo, PodTable, Trimmer, Workload};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};
use vigil_core::attrs::kv_str;
use vigil_core::factory::{self, DynProcessorFactory, FactoryBase, ProcessorFactory};
use vigil_core::otlp::common::v1::any_value::Value;
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::{
    ClientMetadata, Component, ComponentId, ConfigError, ConsumeError, Consumer, Host, Processor,
    Settings, Signal, Stability, Telemetry,
};
use vigil_k8s::kube::runtime::watcher;
use vigil_k8s::kube::Api;
use vigil_k8s::{k8s_openapi, Change, WatchLimits};

/// ReplicaSet → Deployment answers kept (a node runs a few hundred pods at most, so this holds
/// every owner of its pods with room for rollouts); past it the least recently used is evicted
/// and counted (`vigil_k8sattributes_owner_cache_evictions`).
pub const OWNER_CACHE_SIZE: usize = 4096;
/// How long a deleted pod stays findable, as otelcol's `pod_delete_grace_period` default.
pub const DELETE_GRACE: Duration = Duration::from_secs(120);
/// Pods kept from one list (`vigil_k8s_watch_dropped_objects` counts the rest): a node's
/// `maxPods` is 110 by default and rarely above 250; a watch with no node filter is bounded too.
pub const MAX_PODS: usize = 20_000;
/// How long one ReplicaSet lookup may take before the pod is kept without its Deployment.
const OWNER_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

struct Counters {
    pods: Gauge,
    found: Counter,
    missing: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
    cache_evictions: Counter,
    lookup_failures: Counter,
}

impl Counters {
    fn new(id: &str) -> Counters {
        let l = [("processor", id.to_string())];
        Counters {
            pods: metrics::gauge!("vigil_k8sattributes_pods", &l),
            found: metrics::counter!("vigil_k8sattributes_resources_associated", &l),
            missing: metrics::counter!("vigil_k8sattributes_resources_unassociated", &l),
            cache_hits: metrics::counter!("vigil_k8sattributes_owner_cache_hits", &l),
            cache_misses: metrics::counter!("vigil_k8sattributes_owner_cache_misses", &l),
            cache_evictions: metrics::counter!("vigil_k8sattributes_owner_cache_evictions", &l),
            lookup_failures: metrics::counter!("vigil_k8sattributes_owner_lookup_failures", &l),
        }
    }
}

const SYNC_PODS: u8 = 1;
const SYNC_NAMESPACES: u8 = 2;
const SYNC_NODE: u8 = 4;

/// A Deployment's name and UID, what a ReplicaSet resolves to.
type Deployment = (Arc<str>, Arc<str>);

/// What the watches keep, shared by the processor's instances in every pipeline.
pub struct Shared {
    pods: RwLock<PodTable>,
    namespaces: RwLock<HashMap<String, Fields>>,
    node: RwLock<Fields>,
    cluster_uid: OnceLock<String>,
    owners: Mutex<LruCache<String, Option<Deployment>>>,
    /// Which watches finished their first list ([`SYNC_PODS`], [`SYNC_NAMESPACES`], [`SYNC_NODE`]).
    synced: tokio::sync::watch::Sender<u8>,
    counters: Counters,
    trimmer: Trimmer,
}

impl Shared {
    fn new(id: &str, trimmer: Trimmer, grace: Duration) -> Shared {
        Shared {
            pods: RwLock::new(PodTable::new(grace)),
            namespaces: RwLock::new(HashMap::new()),
            node: RwLock::new(Default::default()),
            cluster_uid: OnceLock::new(),
            owners: Mutex::new(LruCache::new(
                NonZeroUsize::new(OWNER_CACHE_SIZE).unwrap_or(NonZeroUsize::MIN),
            )),
            synced: tokio::sync::watch::channel(0).0,
            counters: Counters::new(id),
            trimmer,
        }
    }
}

/// Resolves the owners of pods: the ReplicaSet's Deployment, read on demand.
struct Resolver {
    client: Option<vigil_k8s::kube::Client>,
    want_deployment: bool,
    from_name: bool,
}

impl Resolver {
    async fn workload(&self, shared: &Shared, p: &PodInfo) -> Workload {
        let Some(o) = p.owner.as_ref().filter(|o| o.kind == "ReplicaSet") else {
            return Workload::default();
        };
        if !self.want_deployment {
            return Workload::default();
        }
        if self.from_name {
            // The ReplicaSet is `<deployment>-<pod-template-hash>`.
            return Workload {
                deployment: o
                    .name
                    .rsplit_once('-')
                    .map(|(d, _)| (Arc::from(d), Arc::from(""))),
            };
        }
        if let Some(hit) = vigil_core::lock(&shared.owners).get(&o.uid) {
            shared.counters.cache_hits.increment(1);
            return Workload {
                deployment: hit.clone(),
            };
        }
        shared.counters.cache_misses.increment(1);
        let Some(client) = &self.client else {
            return Workload::default();
        };
        let api: Api<ReplicaSet> = Api::namespaced(client.clone(), &p.namespace);
        let got = tokio::time::timeout(OWNER_LOOKUP_TIMEOUT, api.get_metadata_opt(&o.name)).await;
        let deployment = match got {
            Ok(Ok(Some(rs))) => rs
                .metadata
                .owner_references
                .unwrap_or_default()
                .into_iter()
                .find(|r| r.kind == "Deployment")
                .map(|r| (Arc::from(r.name.as_str()), Arc::from(r.uid.as_str()))),
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                shared.counters.lookup_failures.increment(1);
                tracing::debug!(replicaset = %o.name, error = %e, "ReplicaSet lookup failed");
                // Not cached: the next change of this pod asks again.
                return Workload::default();
            }
            Err(_) => {
                shared.counters.lookup_failures.increment(1);
                return Workload::default();
            }
        };
        let mut cache = vigil_core::lock(&shared.owners);
        if cache
            .push(o.uid.clone(), deployment.clone())
            .is_some_and(|(k, _)| k != o.uid)
        {
            shared.counters.cache_evictions.increment(1);
        }
        Workload { deployment }
    }

    async fn entry(&self, shared: &Shared, info: PodInfo) -> PodEntry {
        let workload = self.workload(shared, &info).await;
        PodEntry { info, workload }
    }

    async fn apply(&self, shared: &Shared, change: Change<PodInfo>) {
        let now = Instant::now();
        match change {
            Change::Replace(all) => {
                let mut entries = Vec::with_capacity(all.len());
                for p in all {
                    entries.push(self.entry(shared, p).await);
                }
                let mut t = shared.pods.write().unwrap_or_else(|e| e.into_inner());
                t.replace(entries, now);
                shared.counters.pods.set(t.len() as f64);
                drop(t);
                shared.synced.send_modify(|s| *s |= SYNC_PODS);
            }
            Change::Apply(p) => {
                let e = self.entry(shared, p).await;
                let mut t = shared.pods.write().unwrap_or_else(|e| e.into_inner());
                t.insert(e);
                t.purge(now);
                shared.counters.pods.set(t.len() as f64);
            }
            Change::Delete(p) => {
                let mut t = shared.pods.write().unwrap_or_else(|e| e.into_inner());
                t.delete(&p.uid, now);
                shared.counters.pods.set(t.len() as f64);
            }
        }
    }
}

struct Factory;

/// The `k8sattributes` processor factory (also `k8s_attributes`).
pub fn factory() -> Arc<dyn DynProcessorFactory> {
    factory::processor(Factory)
}

impl FactoryBase for Factory {
    type Config = K8sAttributesConfig;

    fn type_name(&self) -> &'static str {
        "k8sattributes"
    }

    fn validate(&self, _id: &ComponentId, cfg: &K8sAttributesConfig) -> Result<(), ConfigError> {
        config::check(cfg).map(|_| ())
    }
}

impl ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Beta),
            (Signal::Metrics, Stability::Beta),
            (Signal::Logs, Stability::Beta),
            (Signal::Profiles, Stability::Development),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: K8sAttributesConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        Ok(K8sAttributes::build(set, cfg, signal, next, DELETE_GRACE)?)
    }
}

/// A running `k8sattributes` processor.
pub struct K8sAttributes {
    id: String,
    cfg: K8sAttributesConfig,
    compiled: Compiled,
    shared: Arc<Shared>,
    next: Arc<dyn Consumer>,
    obs: vigil_core::ProcessorObs,
    tasks: vigil_core::task::Tasks,
    /// A client set before start (tests point it at the API double); otherwise `auth_type` decides.
    api: Mutex<Option<vigil_k8s::kube::Client>>,
}

impl K8sAttributes {
    /// The processor for a checked config; `grace` is how long deleted pods stay findable.
    pub fn build(
        set: Settings,
        cfg: K8sAttributesConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
        grace: Duration,
    ) -> Result<Arc<K8sAttributes>, ConfigError> {
        let compiled = config::check(&cfg)?;
        let trimmer = Trimmer::new(
            &compiled,
            &cfg.extract.metadata,
            cfg.extract.otel_annotations,
        );
        Ok(Arc::new(K8sAttributes {
            id: set.id.to_string(),
            shared: Arc::new(Shared::new(&set.id.to_string(), trimmer, grace)),
            cfg,
            compiled,
            next,
            obs: set.processor_obs(signal),
            tasks: set.tasks,
            api: Mutex::new(None),
        }))
    }

    /// Uses `client` instead of the one `auth_type` describes.
    pub fn with_client(&self, client: vigil_k8s::kube::Client) {
        *vigil_core::lock(&self.api) = Some(client);
    }

    /// How many pods are known now.
    pub fn pod_count(&self) -> usize {
        self.shared
            .pods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Runs a watch or lookup until the processor stops: they never end on their own.
    fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        let stop = self.tasks.stopping();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = fut => {}
            }
        });
    }

    fn wants(&self, name: &str) -> bool {
        self.cfg.extract.metadata.iter().any(|m| m == name)
    }

    async fn start_watches(&self) -> anyhow::Result<()> {
        let env = |k: &str| std::env::var(k).ok();
        let node = self
            .cfg
            .filter
            .node_name(&env)
            .map_err(|e| anyhow::anyhow!("processors::{}::{e}", self.id))?;
        let preset = vigil_core::lock(&self.api).clone();
        let client = match preset {
            Some(c) => c,
            None => vigil_k8s::connect(&vigil_k8s::ApiConfig {
                auth_type: self.cfg.auth_type,
                context: self.cfg.context.clone(),
            })
            .await
            .map_err(|e| anyhow::anyhow!("processors::{}::auth_type: {e}", self.id))?,
        };
        let (fields, labels) = self.cfg.filter.selectors(node.as_deref());
        let mut wc = watcher::Config::default();
        if !fields.is_empty() {
            wc = wc.fields(&fields);
        }
        if !labels.is_empty() {
            wc = wc.labels(&labels);
        }
        let pods: Api<Pod> = if self.cfg.filter.namespace.is_empty() {
            Api::all(client.clone())
        } else {
            Api::namespaced(client.clone(), &self.cfg.filter.namespace)
        };
        let resolver = Arc::new(Resolver {
            client: Some(client.clone()),
            want_deployment: self.wants("k8s.deployment.name")
                || self.wants("k8s.deployment.uid")
                || self.wants("service.name"),
            from_name: self.cfg.extract.deployment_name_from_replicaset,
        });
        let limits = WatchLimits {
            max_objects: MAX_PODS,
            ..Default::default()
        };
        let (shared, id) = (Arc::clone(&self.shared), self.id.clone());
        self.spawn(async move {
            let trim_with = Arc::clone(&shared);
            vigil_k8s::watch(
                pods,
                wc,
                limits,
                &id,
                move |p: Pod| trim_with.trimmer.pod(p),
                move |change| {
                    let (shared, resolver) = (Arc::clone(&shared), Arc::clone(&resolver));
                    async move { resolver.apply(&shared, change).await }
                },
            )
            .await
        });
        let rules = || {
            self.compiled
                .labels
                .iter()
                .chain(&self.compiled.annotations)
        };
        let mut needed = SYNC_PODS;
        if rules().any(|r| r.from == From::Namespace) {
            needed |= SYNC_NAMESPACES;
            let (shared, id) = (Arc::clone(&self.shared), self.id.clone());
            let api: Api<Namespace> = Api::all(client.clone());
            self.spawn(async move {
                let trim_with = Arc::clone(&shared);
                vigil_k8s::watch(
                    api,
                    watcher::Config::default(),
                    WatchLimits::default(),
                    &id,
                    move |n: Namespace| {
                        let f = trim_with.trimmer.keep(
                            From::Namespace,
                            n.metadata.labels.as_ref(),
                            n.metadata.annotations.as_ref(),
                        );
                        Some((n.metadata.name?, f))
                    },
                    move |change| {
                        let shared = Arc::clone(&shared);
                        async move {
                            let mut m =
                                shared.namespaces.write().unwrap_or_else(|e| e.into_inner());
                            match change {
                                Change::Replace(all) => {
                                    *m = all.into_iter().collect();
                                    shared.synced.send_modify(|s| *s |= SYNC_NAMESPACES);
                                }
                                Change::Apply((n, f)) => {
                                    m.insert(n, f);
                                }
                                Change::Delete((n, _)) => {
                                    m.remove(&n);
                                }
                            }
                        }
                    },
                )
                .await
            });
        }
        if let (true, Some(node)) = (rules().any(|r| r.from == From::Node), &node) {
            needed |= SYNC_NODE;
            let (shared, id) = (Arc::clone(&self.shared), self.id.clone());
            let api: Api<Node> = Api::all(client.clone());
            let wc = watcher::Config::default().fields(&format!("metadata.name={node}"));
            self.spawn(async move {
                let trim_with = Arc::clone(&shared);
                vigil_k8s::watch(
                    api,
                    wc,
                    WatchLimits::default(),
                    &id,
                    move |n: Node| {
                        Some(trim_with.trimmer.keep(
                            From::Node,
                            n.metadata.labels.as_ref(),
                            n.metadata.annotations.as_ref(),
                        ))
                    },
                    move |change| {
                        let shared = Arc::clone(&shared);
                        async move {
                            let mut f = shared.node.write().unwrap_or_else(|e| e.into_inner());
                            match change {
                                Change::Replace(mut all) => {
                                    *f = all.pop().unwrap_or_default();
                                    shared.synced.send_modify(|s| *s |= SYNC_NODE);
                                }
                                Change::Apply(x) => *f = x,
                                Change::Delete(_) => *f = Default::default(),
                            }
                        }
                    },
                )
                .await
            });
        }
        if self.wants("k8s.cluster.uid") {
            let shared = Arc::clone(&self.shared);
            let api: Api<Namespace> = Api::all(client);
            self.spawn(async move {
                // The kube-system namespace's UID names the cluster; retried until it answers.
                let mut wait = Duration::from_millis(500);
                loop {
                    if let Ok(Some(ns)) = api.get_metadata_opt("kube-system").await {
                        if let Some(uid) = ns.metadata.uid {
                            let _ = shared.cluster_uid.set(uid);
                        }
                        return;
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(60));
                }
            });
        }
        if self.cfg.wait_for_metadata {
            let mut synced = self.shared.synced.subscribe();
            let waited = tokio::time::timeout(
                self.cfg.wait_for_metadata_timeout,
                synced.wait_for(|s| *s & needed == needed),
            )
            .await;
            if !matches!(waited, Ok(Ok(_))) {
                anyhow::bail!(
                    "processors::{}::wait_for_metadata: no list of pods (and of the namespaces or \
                     node that rules read) from the API server within wait_for_metadata_timeout ({:?})",
                    self.id,
                    self.cfg.wait_for_metadata_timeout
                );
            }
        }
        Ok(())
    }

    /// The pod a resource came from, through the first association rule that names one, and the
    /// client IP when a rule read the connection.
    fn identify(
        &self,
        attrs: &[KeyValue],
        conn: Option<&str>,
        pods: &PodTable,
    ) -> (Option<Arc<PodEntry>>, Option<String>) {
        let get = |k: &str| {
            attrs.iter().find(|a| a.key == k).and_then(|a| {
                match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Value::StringValue(s)) if !s.is_empty() => Some(s.as_str()),
                    _ => None,
                }
            })
        };
        let mut conn_ip = None;
        for rule in &self.compiled.associations {
            let mut values: Vec<(&str, &str)> = Vec::new();
            for s in rule {
                match s {
                    Source::Connection => match conn {
                        Some(ip) => {
                            conn_ip = Some(ip.to_string());
                            values.push(("k8s.pod.ip", ip));
                        }
                        None => break,
                    },
                    Source::Attribute(name) => match get(name) {
                        Some(v) => values.push((name.as_str(), v)),
                        None => break,
                    },
                }
            }
            if values.len() != rule.len() {
                continue;
            }
            let v = |k: &str| values.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
            let candidate = if let Some(ip) = v("k8s.pod.ip").or(v("host.name")) {
                pods.by_ip(ip)
            } else if let Some(uid) = v("k8s.pod.uid") {
                pods.by_uid(uid)
            } else if let Some(id) = v("container.id") {
                pods.by_container(id)
            } else if let (Some(name), Some(ns)) = (v("k8s.pod.name"), v("k8s.namespace.name")) {
                pods.by_name(ns, name)
            } else {
                // Only extracted attributes: the node's pods, one by one (a few hundred at most).
                pods.iter().find(|p| {
                    let attrs = self.attributes(p, &[]);
                    values
                        .iter()
                        .all(|(k, val)| attrs.iter().any(|(a, x)| a == k && x == val))
                })
            };
            // Every source of the rule must agree with the pod found.
            let agrees = |p: &PodEntry| {
                values.iter().all(|(k, val)| match *k {
                    "k8s.pod.ip" | "host.name" => p.info.ip.as_deref() == Some(*val),
                    "k8s.pod.uid" => p.info.uid == *val,
                    "k8s.pod.name" => p.info.name == *val,
                    "k8s.namespace.name" => p.info.namespace == *val,
                    "container.id" => p
                        .info
                        .containers
                        .iter()
                        .any(|c| c.id.as_deref() == Some(*val)),
                    other => self
                        .attributes(p, &[])
                        .iter()
                        .any(|(a, x)| a == other && x == val),
                })
            };
            if let Some(p) = candidate.filter(|p| agrees(p)) {
                return (Some(Arc::clone(p)), conn_ip);
            }
        }
        (None, conn_ip)
    }

    /// The attributes `extract` gives a resource of `pod`, in otelcol's names.
    fn attributes(&self, pod: &PodEntry, existing: &[KeyValue]) -> Vec<(String, String)> {
        let p = &pod.info;
        let mut out: Vec<(String, String)> = Vec::new();
        let existing_str = |k: &str| {
            existing.iter().find(|a| a.key == k).and_then(|a| {
                match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                }
            })
        };
        // The container: by the resource's container.id, else its k8s.container.name.
        let container = existing_str("container.id")
            .and_then(|id| p.containers.iter().find(|c| c.id.as_deref() == Some(&id)))
            .or_else(|| {
                existing_str("k8s.container.name")
                    .and_then(|n| p.containers.iter().find(|c| c.name == n))
            });
        let owner = |kind: &str| p.owner.as_ref().filter(|o| o.kind == kind);
        let cronjob = owner("Job").and_then(|o| {
            // A CronJob names its Jobs `<cronjob>-<scheduled minute>`.
            o.name
                .rsplit_once('-')
                .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .map(|(c, _)| c.to_string())
        });
        let annotation = |k: &str| {
            p.annotations
                .iter()
                .find(|(a, _)| a == k)
                .map(|(_, v)| v.clone())
        };
        let label = |k: &str| {
            p.labels
                .iter()
                .find(|(a, _)| a == k)
                .map(|(_, v)| v.clone())
        };
        let workload_name = || {
            pod.workload
                .deployment
                .as_ref()
                .map(|(n, _)| n.to_string())
                .or_else(|| owner("StatefulSet").map(|o| o.name.clone()))
                .or_else(|| owner("DaemonSet").map(|o| o.name.clone()))
                .or_else(|| cronjob.clone())
                .or_else(|| owner("Job").map(|o| o.name.clone()))
        };
        for m in &self.cfg.extract.metadata {
            let v: Option<String> = match m.as_str() {
                "k8s.pod.name" => Some(p.name.clone()),
                "k8s.pod.uid" => Some(p.uid.clone()),
                "k8s.pod.ip" => p.ip.clone(),
                "k8s.pod.hostname" => Some(p.hostname.clone()),
                "k8s.pod.start_time" => p.start_time.clone(),
                "k8s.namespace.name" => Some(p.namespace.clone()),
                "k8s.node.name" => Some(p.node.clone()).filter(|n| !n.is_empty()),
                "k8s.deployment.name" => {
                    pod.workload.deployment.as_ref().map(|(n, _)| n.to_string())
                }
                "k8s.deployment.uid" => pod
                    .workload
                    .deployment
                    .as_ref()
                    .map(|(_, u)| u.to_string())
                    .filter(|u| !u.is_empty()),
                "k8s.replicaset.name" => owner("ReplicaSet").map(|o| o.name.clone()),
                "k8s.replicaset.uid" => owner("ReplicaSet").map(|o| o.uid.clone()),
                "k8s.statefulset.name" => owner("StatefulSet").map(|o| o.name.clone()),
                "k8s.statefulset.uid" => owner("StatefulSet").map(|o| o.uid.clone()),
                "k8s.daemonset.name" => owner("DaemonSet").map(|o| o.name.clone()),
                "k8s.daemonset.uid" => owner("DaemonSet").map(|o| o.uid.clone()),
                "k8s.job.name" => owner("Job").map(|o| o.name.clone()),
                "k8s.job.uid" => owner("Job").map(|o| o.uid.clone()),
                "k8s.cronjob.name" => cronjob.clone(),
                "k8s.cluster.uid" => self.shared.cluster_uid.get().cloned(),
                "k8s.container.name" => container.map(|c| c.name.clone()),
                "container.id" => container.and_then(|c| c.id.clone()),
                "container.image.name" => container.map(|c| pods::split_image(&c.image).0),
                "container.image.tag" => container.and_then(|c| pods::split_image(&c.image).1),
                "container.image.repo_digests" => container.and_then(|c| c.repo_digest.clone()),
                "service.name" => annotation("resource.opentelemetry.io/service.name")
                    .or_else(|| label("app.kubernetes.io/instance"))
                    .or_else(|| label("app.kubernetes.io/name"))
                    .or_else(workload_name)
                    .or_else(|| container.map(|c| c.name.clone())),
                "service.namespace" => annotation("resource.opentelemetry.io/service.namespace")
                    .or_else(|| label("app.kubernetes.io/part-of"))
                    .or_else(|| Some(p.namespace.clone())),
                "service.version" => annotation("resource.opentelemetry.io/service.version")
                    .or_else(|| label("app.kubernetes.io/version"))
                    .or_else(|| container.and_then(|c| pods::split_image(&c.image).1)),
                "service.instance.id" => {
                    annotation("resource.opentelemetry.io/service.instance.id").or_else(|| {
                        container.map(|c| format!("{}.{}.{}", p.namespace, p.name, c.name))
                    })
                }
                _ => None,
            };
            if let Some(v) = v {
                out.push((m.clone(), v));
            }
        }
        let from_fields = |rules: &[config::Rule],
                           fields: &[(String, String)],
                           kind: &str,
                           from: From,
                           out: &mut Vec<(String, String)>| {
            for r in rules.iter().filter(|r| r.from == from) {
                for (k, v) in fields {
                    if let Some(tag) = pods::tag_for(r, k, kind) {
                        out.push((tag, v.clone()));
                    }
                }
            }
        };
        from_fields(
            &self.compiled.labels,
            &p.labels,
            "labels",
            From::Pod,
            &mut out,
        );
        from_fields(
            &self.compiled.annotations,
            &p.annotations,
            "annotations",
            From::Pod,
            &mut out,
        );
        {
            let ns = self
                .shared
                .namespaces
                .read()
                .unwrap_or_else(|e| e.into_inner());
            if let Some((l, a)) = ns.get(&p.namespace) {
                from_fields(
                    &self.compiled.labels,
                    l,
                    "labels",
                    From::Namespace,
                    &mut out,
                );
                from_fields(
                    &self.compiled.annotations,
                    a,
                    "annotations",
                    From::Namespace,
                    &mut out,
                );
            }
        }
        {
            let (l, a) = &*self.shared.node.read().unwrap_or_else(|e| e.into_inner());
            from_fields(&self.compiled.labels, l, "labels", From::Node, &mut out);
            from_fields(
                &self.compiled.annotations,
                a,
                "annotations",
                From::Node,
                &mut out,
            );
        }
        if self.cfg.extract.otel_annotations {
            for (k, v) in &p.annotations {
                if let Some(key) = k.strip_prefix("resource.opentelemetry.io/") {
                    out.push((key.to_string(), v.clone()));
                }
            }
        }
        out
    }

    fn enrich(&self, resource: &mut Option<Resource>, conn: Option<&str>) {
        let r = resource.get_or_insert_with(Resource::default);
        let (pod, conn_ip) = if self.cfg.passthrough {
            (None, conn.map(str::to_string))
        } else {
            let pods = self.shared.pods.read().unwrap_or_else(|e| e.into_inner());
            self.identify(&r.attributes, conn, &pods)
        };
        let add = |k: String, v: String, attrs: &mut Vec<KeyValue>| {
            // As otelcol: what the resource already says is kept.
            if !attrs.iter().any(|a| a.key == k) {
                attrs.push(kv_str(&k, &v));
            }
        };
        if let Some(ip) = conn_ip {
            add("k8s.pod.ip".into(), ip, &mut r.attributes);
        }
        match pod {
            Some(p) => {
                self.shared.counters.found.increment(1);
                for (k, v) in self.attributes(&p, &r.attributes) {
                    add(k, v, &mut r.attributes);
                }
            }
            None if !self.cfg.passthrough => self.shared.counters.missing.increment(1),
            None => {}
        }
    }
}

#[async_trait]
impl Component for K8sAttributes {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        if self.cfg.passthrough {
            return Ok(());
        }
        self.start_watches().await
    }

    fn tasks(&self) -> Option<&vigil_core::task::Tasks> {
        Some(&self.tasks)
    }
}

#[async_trait]
impl Consumer for K8sAttributes {
    async fn consume(&self, mut data: Telemetry) -> Result<(), ConsumeError> {
        let n = data.item_count();
        self.obs.incoming(n);
        let meta = ClientMetadata::current();
        // An IPv4 client of a dual-stack listener shows as ::ffff:a.b.c.d; pods have plain IPv4.
        let conn = meta
            .as_ref()
            .and_then(|m| m.addr())
            .map(|a| a.to_canonical().to_string());
        let conn = conn.as_deref();
        match &mut data {
            Telemetry::Traces(v) => v
                .iter_mut()
                .for_each(|r| self.enrich(&mut r.resource, conn)),
            Telemetry::Metrics(v) => v
                .iter_mut()
                .for_each(|r| self.enrich(&mut r.resource, conn)),
            Telemetry::Logs(v) => v
                .iter_mut()
                .for_each(|r| self.enrich(&mut r.resource, conn)),
            Telemetry::Profiles(p) => p
                .resource_profiles
                .iter_mut()
                .for_each(|r| self.enrich(&mut r.resource, conn)),
        }
        self.obs.outgoing(n);
        self.next.consume(data).await
    }
}
