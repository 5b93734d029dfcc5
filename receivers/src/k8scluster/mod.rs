//! `k8s_cluster`: otelcol's Kubernetes Cluster receiver. It list-watches the cluster's Pods,
//! Nodes, Namespaces, Deployments, ReplicaSets, DaemonSets, StatefulSets, Jobs, CronJobs,
//! ReplicationControllers, ResourceQuotas and HorizontalPodAutoscalers (as client-go informers
//! do, on kube's watcher through `vigil_k8s::watch`), keeps each object reduced to its data points
//! in a bounded cache, and every `collection_interval` emits the cache as otelcol's metrics
//! (`k8s.pod.phase`, `k8s.deployment.available`, `k8s.node.condition_ready`, ...).
//!
//! Because the cache is rebuilt by each (re-)list, an object deleted while a watch was down is
//! gone after the re-list that follows, and an object is never counted twice: it is keyed by UID.
//!
//! With `k8s_leader_elector`, the watches and reports run only while the named extension holds
//! the lease; losing it stops them and empties the cache, so two replicas never both report.
//!
//! No API server runs in this repository's tests: they use the API-server double in
//! `vigil_tests::k8s_api`, which speaks the list/watch protocol.

pub mod config;
pub mod metrics;
pub mod objects;
#[cfg(test)]
mod tests;

use async_trait::async_trait;
use config::{Checked, K8sClusterConfig};
use metrics::Obj;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::task::JoinSet;
use vigil_core::time::unix_nanos;
use vigil_core::{
    Component, ComponentId, ConfigError, Host, NextConsumers, Receiver, Signal, Telemetry,
};
use vigil_k8s::kube::runtime::watcher;
use vigil_k8s::kube::{Api, Client, Resource};
use vigil_k8s::{Change, WatchLimits};

struct Factory;

/// The `k8s_cluster` receiver factory, for the registry (`k8scluster` resolves to it).
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = K8sClusterConfig;

    fn type_name(&self) -> &'static str {
        "k8s_cluster"
    }

    fn validate(&self, _id: &ComponentId, cfg: &K8sClusterConfig) -> Result<(), ConfigError> {
        cfg.check().map(|_| ())
    }
}

impl vigil_core::factory::ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[(Signal::Metrics, vigil_core::Stability::Beta)]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: K8sClusterConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        let checked = cfg.check()?;
        Ok(Arc::new(K8sClusterReceiver::new(set, cfg, checked, next)))
    }
}

/// One watch's objects, by UID.
type Objects = BTreeMap<String, Obj>;

/// The cache: per (resource, watched namespace) the objects by UID. Bounded per map by
/// `max_objects_per_kind`; what does not fit is refused and counted.
struct Store {
    receiver: String,
    max: usize,
    maps: Mutex<BTreeMap<(&'static str, usize), Objects>>,
}

impl Store {
    fn new(receiver: &str, max: usize) -> Store {
        Store {
            receiver: receiver.to_string(),
            max,
            maps: Mutex::new(BTreeMap::new()),
        }
    }

    fn refused(&self, resource: &'static str, n: usize) {
        ::metrics::counter!("vigil_k8scluster_objects_refused",
            "receiver" => self.receiver.clone(), "resource" => resource)
        .increment(n as u64);
    }

    fn apply(&self, resource: &'static str, source: usize, change: Change<Obj>) {
        let mut maps = vigil_core::lock(&self.maps);
        let map = maps.entry((resource, source)).or_default();
        match change {
            Change::Replace(all) => {
                map.clear();
                let n = all.len();
                map.extend(all.into_iter().take(self.max).map(|o| (o.uid.clone(), o)));
                if n > self.max {
                    self.refused(resource, n - self.max);
                }
            }
            Change::Apply(o) => {
                if map.len() >= self.max && !map.contains_key(&o.uid) {
                    self.refused(resource, 1);
                } else {
                    map.insert(o.uid.clone(), o);
                }
            }
            Change::Delete(o) => {
                map.remove(&o.uid);
            }
        }
        ::metrics::gauge!("vigil_k8scluster_objects",
            "receiver" => self.receiver.clone(), "resource" => resource)
        .set(
            maps.iter()
                .filter(|((r, _), _)| *r == resource)
                .map(|(_, m)| m.len())
                .sum::<usize>() as f64,
        );
    }

    fn clear(&self) {
        vigil_core::lock(&self.maps).clear();
    }

    fn emit(
        &self,
        checked: &Checked,
        cluster_uid: Option<&str>,
        now: u64,
    ) -> Vec<vigil_core::otlp::metrics::v1::ResourceMetrics> {
        let maps = vigil_core::lock(&self.maps);
        metrics::emit(
            maps.values().flat_map(|m| m.values()),
            checked,
            cluster_uid,
            now,
        )
    }

    #[cfg(test)]
    fn len(&self, resource: &str) -> usize {
        vigil_core::lock(&self.maps)
            .iter()
            .filter(|((r, _), _)| *r == resource)
            .map(|(_, m)| m.len())
            .sum()
    }
}

struct Shared {
    id: ComponentId,
    cfg: K8sClusterConfig,
    checked: Checked,
    store: Store,
    next: NextConsumers,
    obs: vigil_core::ReceiverObs,
}

/// A running `k8s_cluster` receiver.
pub struct K8sClusterReceiver {
    shared: Arc<Shared>,
    /// A client set before start (tests point it at the API double).
    client: Mutex<Option<Client>>,
    tasks: vigil_core::Tasks,
}

impl K8sClusterReceiver {
    fn new(
        set: vigil_core::Settings,
        cfg: K8sClusterConfig,
        checked: Checked,
        next: NextConsumers,
    ) -> K8sClusterReceiver {
        K8sClusterReceiver {
            shared: Arc::new(Shared {
                store: Store::new(&set.id.to_string(), cfg.max_objects_per_kind),
                obs: set.receiver_obs("k8s"),
                id: set.id.clone(),
                next,
                checked,
                cfg,
            }),
            client: Mutex::new(None),
            tasks: set.tasks,
        }
    }

    /// Uses `client` instead of connecting by `auth_type`.
    pub fn with_client(&self, client: Client) {
        *vigil_core::lock(&self.client) = Some(client);
    }
}

/// Lists and watches one resource into the store, for as long as the set runs.
fn watch_into<K>(
    set: &mut JoinSet<()>,
    shared: &Arc<Shared>,
    api: Api<K>,
    resource: &'static str,
    source: usize,
    trim: fn(K, &Checked) -> Option<Obj>,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let limits = WatchLimits {
        max_objects: shared.cfg.max_objects_per_kind,
        ..Default::default()
    };
    let (trim_with, apply_to) = (Arc::clone(shared), Arc::clone(shared));
    let id = shared.id.to_string();
    set.spawn(async move {
        vigil_k8s::watch(
            api,
            watcher::Config::default(),
            limits,
            &id,
            move |k: K| trim(k, &trim_with.checked).map(|o| o.prune(&trim_with.checked)),
            move |change| {
                apply_to.store.apply(resource, source, change);
                async {}
            },
        )
        .await
    });
}

/// Which kinds have a metric on: a kind none of whose metrics is wanted is not watched (nor
/// needs RBAC).
fn wants(checked: &Checked, names: &[metrics::M]) -> bool {
    names.iter().any(|m| checked.metrics.on(m.def().name))
}

/// Starts every watch the config needs.
fn watches(shared: &Arc<Shared>, client: &Client) -> JoinSet<()> {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    use k8s_openapi::api::batch::v1::{CronJob, Job};
    use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ReplicationController, ResourceQuota};
    use metrics::M::*;
    use vigil_k8s::k8s_openapi;
    let c = &shared.checked;
    let mut set = JoinSet::new();
    // Whole cluster, or one watch per namespace listed.
    let sources: Vec<Option<&str>> = if c.namespaces.is_empty() {
        vec![None]
    } else {
        c.namespaces.iter().map(|n| Some(n.as_str())).collect()
    };
    macro_rules! namespaced {
        ($kind:ty, $resource:literal, $trim:expr, $metrics:expr) => {
            if wants(c, $metrics) {
                for (i, ns) in sources.iter().enumerate() {
                    let api: Api<$kind> = match ns {
                        Some(ns) => Api::namespaced(client.clone(), ns),
                        None => Api::all(client.clone()),
                    };
                    watch_into(&mut set, shared, api, $resource, i, $trim);
                }
            }
        };
    }
    namespaced!(
        Pod,
        "pods",
        objects::pod,
        &[
            PodPhase,
            PodStatusReason,
            ContainerCpuRequest,
            ContainerCpuLimit,
            ContainerMemoryRequest,
            ContainerMemoryLimit,
            ContainerStorageRequest,
            ContainerStorageLimit,
            ContainerEphemeralRequest,
            ContainerEphemeralLimit,
            ContainerRestarts,
            ContainerReady,
            ContainerStatusState,
            ContainerStatusReason,
        ]
    );
    namespaced!(
        Deployment,
        "deployments",
        objects::deployment,
        &[DeploymentDesired, DeploymentAvailable]
    );
    namespaced!(
        ReplicaSet,
        "replicasets",
        objects::replicaset,
        &[ReplicaSetDesired, ReplicaSetAvailable]
    );
    namespaced!(
        DaemonSet,
        "daemonsets",
        objects::daemonset,
        &[
            DaemonSetCurrentScheduled,
            DaemonSetDesiredScheduled,
            DaemonSetMisscheduled,
            DaemonSetReady
        ]
    );
    namespaced!(
        StatefulSet,
        "statefulsets",
        objects::statefulset,
        &[
            StsDesired,
            StsReady,
            StsCurrent,
            StsUpdated,
            StsPodAvailable
        ]
    );
    namespaced!(
        Job,
        "jobs",
        objects::job,
        &[
            JobActive,
            JobDesiredSuccessful,
            JobFailed,
            JobMaxParallel,
            JobSuccessful
        ]
    );
    namespaced!(CronJob, "cronjobs", objects::cronjob, &[CronJobActiveJobs]);
    namespaced!(
        ReplicationController,
        "replicationcontrollers",
        objects::replicationcontroller,
        &[RcDesired, RcAvailable]
    );
    namespaced!(
        ResourceQuota,
        "resourcequotas",
        objects::resourcequota,
        &[QuotaHard, QuotaUsed]
    );
    namespaced!(
        HorizontalPodAutoscaler,
        "horizontalpodautoscalers",
        objects::hpa,
        &[HpaMax, HpaMin, HpaCurrent, HpaDesired]
    );
    // Cluster-scoped kinds only when the whole cluster is watched, as otelcol does.
    if c.namespaces.is_empty() {
        if wants(c, &[NamespacePhase]) {
            watch_into(
                &mut set,
                shared,
                Api::<Namespace>::all(client.clone()),
                "namespaces",
                0,
                objects::namespace,
            );
        }
        if !c.conditions.is_empty() || !c.allocatable.is_empty() || wants(c, &[NodeCondition]) {
            watch_into(
                &mut set,
                shared,
                Api::<Node>::all(client.clone()),
                "nodes",
                0,
                objects::node,
            );
        }
    }
    set
}

/// The cluster's UID as otelcol defines it: the `kube-system` namespace's UID. `None` (with a
/// warning) when it cannot be read, as with only namespaced Roles; asked again next report.
async fn cluster_uid(shared: &Shared, client: &Client) -> Option<String> {
    use k8s_openapi::api::core::v1::Namespace;
    use vigil_k8s::k8s_openapi;
    let api: Api<Namespace> = Api::all(client.clone());
    match tokio::time::timeout(shared.cfg.collection_interval, api.get("kube-system")).await {
        Ok(Ok(ns)) => ns.metadata.uid,
        Ok(Err(e)) => {
            tracing::warn!(receiver = %shared.id, "k8s.cluster.uid: reading namespace kube-system: {e}");
            None
        }
        Err(_) => None,
    }
}

/// Emits the cache every `collection_interval`, for as long as the future is polled.
async fn report(shared: Arc<Shared>, client: Client) {
    let want_uid = shared.checked.attributes.on("k8s.cluster.uid");
    let mut uid: Option<String> = None;
    let mut timer = tokio::time::interval(shared.cfg.collection_interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once; skip it so the first report follows the first lists.
    timer.tick().await;
    loop {
        timer.tick().await;
        if want_uid && uid.is_none() {
            uid = cluster_uid(&shared, &client).await;
        }
        let batch = shared.store.emit(
            &shared.checked,
            uid.as_deref(),
            unix_nanos(SystemTime::now()),
        );
        if batch.is_empty() {
            continue;
        }
        let data = Telemetry::Metrics(batch);
        let items = data.item_count();
        let result = shared.next.consume(data).await;
        shared.obs.end_op(Signal::Metrics, items, &result);
        if let Err(e) = result {
            tracing::warn!(receiver = %shared.id, "the pipeline refused cluster metrics: {e}");
        }
    }
}

/// Empties the cache when a round ends, so a replica that lost the lease holds nothing stale.
struct ClearOnDrop(Arc<Shared>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store.clear();
    }
}

/// One round of work: the watches and the reports, until the future is dropped (a stop, or a
/// lost lease), which aborts the watches and forgets the cache.
async fn round(shared: Arc<Shared>, client: Client) {
    let _clear = ClearOnDrop(Arc::clone(&shared));
    let _watches = watches(&shared, &client);
    report(shared, client).await
}

#[async_trait]
impl Component for K8sClusterReceiver {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        let shared = &self.shared;
        let leading = match &shared.checked.leader_elector {
            Some(id) => Some(host.leadership(id).map_err(|e| {
                anyhow::anyhow!("receivers::{}::k8s_leader_elector: {e}", shared.id)
            })?),
            None => None,
        };
        let preset = vigil_core::lock(&self.client).clone();
        let client = match preset {
            Some(c) => c,
            None => vigil_k8s::connect(&vigil_k8s::ApiConfig {
                auth_type: shared.cfg.auth_type,
                context: shared.cfg.context.clone(),
            })
            .await
            .map_err(|e| anyhow::anyhow!("receivers::{}::auth_type: {e}", shared.id))?,
        };
        let stop = self.tasks.stopping();
        let shared = Arc::clone(shared);
        self.tasks.spawn(async move {
            let work =
                async move {
                    match leading {
                        Some(l) => vigil_k8s::leader::while_leading(l, || {
                            tracing::info!(receiver = %shared.id, "leading: watching the cluster");
                            round(Arc::clone(&shared), client.clone())
                        })
                        .await,
                        None => round(shared, client).await,
                    }
                };
            tokio::select! {
                _ = work => {}
                _ = stop.cancelled() => {}
            }
        });
        Ok(())
    }

    /// Stopping cancels the watches and the report in flight.
    fn tasks(&self) -> Option<&vigil_core::Tasks> {
        Some(&self.tasks)
    }
}
