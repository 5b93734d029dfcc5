//! `awscontainerinsightreceiver`: otelcol-contrib's AWS Container Insights receiver, EKS node path.
//! Run as a DaemonSet, every `collection_interval` it reads its node's kubelet (`/stats/summary`
//! and `/pods`, through kubeletstats' client with the pod's service-account token) and its Node
//! object from the API server (capacity, instance id and type), and emits Container Insights'
//! node, node filesystem, node interface, pod, pod interface, container and container filesystem
//! metrics with their names, units and labels, the shape awsemf turns into the ContainerInsights
//! namespace's EMF events. With `add_service_as_attribute` (on by default) the pod's resources
//! also carry `Service`, from the cluster's Endpoints (services.rs). otelcol reads cgroups through
//! an embedded cAdvisor instead; the kubelet serves the same cgroup figures, so no host mounts are
//! needed. What is not built (ECS, cluster
//! metrics under the leader lock, accelerators, the control plane, disk IO) is listed in README.md.
//!
//! Clients are built in the collection task, not at start: outside a pod (`vigil validate`, CI)
//! the receiver starts, and each failed collection is logged and counted.

pub mod config;
pub mod metrics;
pub mod pods;
pub mod services;
#[cfg(test)]
mod tests;

use crate::kubeletstats::config::KubeletStatsConfig;
use crate::kubeletstats::Kubelet;
use async_trait::async_trait;
use config::AwsContainerInsightConfig;
use metrics::{Labels, NodeInfo, Rates};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use vigil_core::{
    Component, ComponentId, ConfigError, Host, NextConsumers, Receiver, Signal, Telemetry,
};

struct Factory;

/// The `awscontainerinsightreceiver` factory (`aws_container_insight_receiver` resolves to it).
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = AwsContainerInsightConfig;

    fn type_name(&self) -> &'static str {
        "awscontainerinsightreceiver"
    }

    fn validate(
        &self,
        _id: &ComponentId,
        cfg: &AwsContainerInsightConfig,
    ) -> Result<(), ConfigError> {
        cfg.check()
    }
}

impl vigil_core::factory::ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[(Signal::Metrics, vigil_core::Stability::Beta)]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: AwsContainerInsightConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        cfg.check()?;
        let r = set.id.to_string();
        Ok(Arc::new(AwsContainerInsightReceiver {
            failures: ::metrics::counter!("vigil_awscontainerinsight_collection_failures", "receiver" => r.clone()),
            dropped_pods: ::metrics::counter!("vigil_awscontainerinsight_dropped", "receiver" => r.clone(), "what" => "pod"),
            dropped_containers: ::metrics::counter!("vigil_awscontainerinsight_dropped", "receiver" => r.clone(), "what" => "container"),
            dropped_endpoints: ::metrics::counter!("vigil_awscontainerinsight_dropped", "receiver" => r, "what" => "endpoints"),
            obs: set.receiver_obs("http"),
            id: set.id,
            cfg: Arc::new(cfg),
            next,
            tasks: set.tasks,
        }))
    }
}

/// A running receiver: one task that collects on a timer.
pub struct AwsContainerInsightReceiver {
    id: ComponentId,
    cfg: Arc<AwsContainerInsightConfig>,
    next: NextConsumers,
    obs: vigil_core::ReceiverObs,
    failures: ::metrics::Counter,
    dropped_pods: ::metrics::Counter,
    dropped_containers: ::metrics::Counter,
    dropped_endpoints: ::metrics::Counter,
    tasks: vigil_core::Tasks,
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The kubelet client: kubeletstats' with `auth_type: serviceAccount`. otelcol's Container
/// Insights kubelet client does not verify the kubelet's certificate (kubelets commonly serve a
/// self-signed one), so neither does this.
fn kubelet(cfg: &AwsContainerInsightConfig) -> Result<Kubelet, String> {
    let endpoint = cfg.kubelet()?;
    let ks: KubeletStatsConfig = serde_json::from_value(serde_json::json!({
        "auth_type": "serviceAccount",
        "endpoint": endpoint,
        "insecure_skip_verify": true,
        "service_account_dir": cfg.service_account_dir,
        "collection_interval": format!("{}ms", cfg.collection_interval.as_millis()),
    }))
    .map_err(|e| format!("kubelet client settings: {e}"))?;
    Kubelet::build(&ks, crate::kubeletstats::config::Auth::ServiceAccount)
}

/// The API server client: `kube_config_path`'s kubeconfig, else the pod's service account.
async fn api(cfg: &AwsContainerInsightConfig) -> Result<vigil_k8s::kube::Client, String> {
    if cfg.kube_config_path.is_empty() {
        return vigil_k8s::connect(&vigil_k8s::ApiConfig::default())
            .await
            .map_err(|e| e.to_string());
    }
    let kc = vigil_k8s::kube::config::Kubeconfig::read_from(&cfg.kube_config_path)
        .map_err(|e| format!("kube_config_path {:?}: {e}", cfg.kube_config_path))?;
    let c = vigil_k8s::kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| format!("kube_config_path {:?}: {e}", cfg.kube_config_path))?;
    vigil_k8s::client::client_for(c).map_err(|e| e.to_string())
}

/// What the task keeps between collections.
struct State {
    kubelet: Option<Kubelet>,
    api: Option<vigil_k8s::kube::Client>,
    node: NodeInfo,
    rates: Rates,
    services: services::Services,
}

/// One collection: the kubelet's summary and pods (both needed), the Node (its last answer kept
/// when the API server fails, so a blip does not drop the utilizations).
async fn collect(
    cfg: &AwsContainerInsightConfig,
    st: &mut State,
) -> Result<
    (
        Vec<vigil_core::otlp::metrics::v1::ResourceMetrics>,
        metrics::Dropped,
    ),
    String,
> {
    if st.kubelet.is_none() {
        st.kubelet = Some(kubelet(cfg)?);
    }
    let Some(k) = st.kubelet.as_ref() else {
        return Err("no kubelet client".into());
    };
    let body = k.get("/stats/summary").await?;
    let summary: crate::kubeletstats::summary::Summary = serde_json::from_slice(&body)
        .map_err(|e| format!("/stats/summary is not a kubelet summary: {e}"))?;
    let body = k.get("/pods").await?;
    let pods: pods::PodList =
        serde_json::from_slice(&body).map_err(|e| format!("/pods is not a pod list: {e}"))?;
    let node_name = cfg
        .node_name()
        .unwrap_or_else(|| summary.node.node_name.clone());
    if st.api.is_none() {
        match api(cfg).await {
            Ok(c) => st.api = Some(c),
            Err(e) => tracing::warn!("awscontainerinsightreceiver: no API server client: {e}"),
        }
    }
    let mut dropped_endpoints = 0;
    if let Some(c) = &st.api {
        let nodes: vigil_k8s::kube::Api<vigil_k8s::k8s_openapi::api::core::v1::Node> =
            vigil_k8s::kube::Api::all(c.clone());
        // A list narrowed to this node by a field selector, not a GET: AWS's published Container
        // Insights ClusterRoles grant `list` and `watch` on nodes, some without `get`.
        let lp = vigil_k8s::kube::api::ListParams::default()
            .fields(&format!("metadata.name={node_name}"));
        match nodes.list(&lp).await {
            Ok(list) => match list
                .items
                .iter()
                .find(|n| n.metadata.name.as_deref() == Some(node_name.as_str()))
            {
                Some(n) => st.node = NodeInfo::from_node(n),
                None => tracing::warn!(
                    "awscontainerinsightreceiver: no node {node_name:?} in the API server's list; node capacity from the last answer"
                ),
            },
            Err(e) => tracing::warn!(
                "awscontainerinsightreceiver: list node {node_name:?}: {e}; node capacity from the last answer"
            ),
        }
        let now = std::time::Instant::now();
        if cfg.add_service_as_attribute && st.services.due(now) {
            // Only this node's pods are labelled, so only they are kept.
            let local = summary
                .pods
                .iter()
                .take(metrics::MAX_PODS)
                .map(|p| (p.pod_ref.namespace.clone(), p.pod_ref.name.clone()))
                .collect();
            match st.services.refresh(c, &local, now).await {
                Ok(n) => dropped_endpoints = n,
                Err(e) => tracing::warn!(
                    "awscontainerinsightreceiver: list endpoints: {e}; Service labels from the last answer"
                ),
            }
        }
    }
    let labels = Labels {
        cluster_name: cfg.cluster_name.clone(),
        prefer_full_pod_name: cfg.prefer_full_pod_name,
        full_pod_name: cfg.add_full_pod_name_metric_label,
        services: if cfg.add_service_as_attribute {
            Arc::clone(&st.services.map)
        } else {
            Arc::default()
        },
    };
    let (out, mut dropped) = metrics::convert(
        &summary,
        &pods,
        &st.node,
        &labels,
        &mut st.rates,
        now_nanos(),
    );
    dropped.endpoints = dropped_endpoints;
    Ok((out, dropped))
}

#[async_trait]
impl Component for AwsContainerInsightReceiver {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let id = self.id.to_string();
        let cfg = Arc::clone(&self.cfg);
        let (next, obs, failures) = (self.next.clone(), self.obs.clone(), self.failures.clone());
        let (dp, dc) = (self.dropped_pods.clone(), self.dropped_containers.clone());
        let de = self.dropped_endpoints.clone();
        let cancel = self.tasks.stopping();
        self.tasks.spawn(async move {
            let mut st = State {
                kubelet: None,
                api: None,
                node: NodeInfo::default(),
                rates: Rates::default(),
                services: services::Services::default(),
            };
            let mut timer = tokio::time::interval(cfg.collection_interval);
            // A slow kubelet must not be followed by a burst of catch-up collections.
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = timer.tick() => {}
                    _ = cancel.cancelled() => return,
                }
                let r = tokio::select! {
                    r = collect(&cfg, &mut st) => r,
                    _ = cancel.cancelled() => return,
                };
                let (batch, dropped) = match r {
                    Ok(b) => b,
                    Err(e) => {
                        failures.increment(1);
                        tracing::warn!(receiver = %id, "Container Insights collection failed: {e}");
                        continue;
                    }
                };
                dp.increment(dropped.pods);
                dc.increment(dropped.containers);
                de.increment(dropped.endpoints);
                if batch.is_empty() {
                    continue;
                }
                if let Err(e) = obs.push(&next, Telemetry::Metrics(batch)).await {
                    tracing::warn!(receiver = %id, "the pipeline refused Container Insights metrics: {e}");
                }
            }
        });
        Ok(())
    }

    /// Stopping cancels the loop, and a collection in flight with it.
    fn tasks(&self) -> Option<&vigil_core::Tasks> {
        Some(&self.tasks)
    }
}
