//! Tests against the API-server double (`vigil_tests::k8s_api`; no cluster can run here): the
//! receiver lists and watches it, and its reports follow a Deployment scaled, a Pod's phase
//! changed, a watch cut mid-stream and a `410 Gone` re-list, without a duplicated or stale series.

use super::*;
use std::collections::HashMap;
use std::time::Duration;
use vigil_core::attrs::value_to_string;
use vigil_core::otlp::metrics::v1::{metric::Data, number_data_point, ResourceMetrics};
use vigil_core::{ConsumeError, Consumer};
use vigil_k8s::k8s_openapi;
use vigil_tests::k8s_api::{self, K8sApi, Kind, Owner};

fn config(v: serde_json::Value) -> K8sClusterConfig {
    serde_json::from_value(v).expect("config")
}

#[test]
fn defaults_are_otelcols() {
    let c = config(serde_json::json!({}));
    assert_eq!(c.collection_interval, Duration::from_secs(10));
    assert_eq!(c.metadata_collection_interval, Duration::from_secs(300));
    assert_eq!(c.node_conditions_to_report, vec!["Ready".to_string()]);
    assert!(c.allocatable_types_to_report.is_empty());
    assert_eq!(c.distribution, "kubernetes");
    assert_eq!(c.auth_type, vigil_k8s::AuthType::ServiceAccount);
    let k = c.check().unwrap();
    assert_eq!(k.conditions[0].name, "k8s.node.condition_ready");
    assert!(k.metrics.on("k8s.pod.phase"));
    assert!(!k.metrics.on("k8s.pod.status_reason"));
    assert!(!k.metrics.on("k8s.node.condition"));
    assert!(k.attributes.on("k8s.pod.uid"));
    assert!(!k.attributes.on("k8s.pod.qos_class"));
}

#[test]
fn bad_configs_name_the_key() {
    let err = |v| config(v).check().unwrap_err().to_string();
    let e = err(serde_json::json!({"distribution": "rancher"}));
    assert!(
        e.contains("distribution") && e.contains("\"rancher\""),
        "{e}"
    );
    let e = err(serde_json::json!({"allocatable_types_to_report": ["cpu", "gpu"]}));
    assert!(e.contains("allocatable_types_to_report::1"), "{e}");
    let e = err(serde_json::json!({"metrics": {"k8s.pod.phaze": {"enabled": false}}}));
    assert!(e.contains("metrics::k8s.pod.phaze"), "{e}");
    let e = err(serde_json::json!({"metrics": {"k8s.service.endpoint.count": {"enabled": true}}}));
    assert!(
        e.contains("metrics::k8s.service.endpoint.count::enabled"),
        "{e}"
    );
    let e =
        err(serde_json::json!({"resource_attributes": {"k8s.service.name": {"enabled": true}}}));
    assert!(
        e.contains("resource_attributes::k8s.service.name::enabled"),
        "{e}"
    );
    let e = err(serde_json::json!({"metadata_exporters": ["signalfx"]}));
    assert!(e.contains("metadata_exporters"), "{e}");
    let e = err(serde_json::json!({"k8s_leader_elector": "k8s_leader_elector/"}));
    assert!(e.contains("k8s_leader_elector"), "{e}");
    // Disabling what vigil does not emit is fine, and so is the deprecated `namespace`.
    let k = config(serde_json::json!({
        "namespace": "shop", "namespaces": ["web"],
        "metrics": {"k8s.service.endpoint.count": {"enabled": false}},
        "k8s_leader_elector": "k8s_leader_elector/k8s_cluster"
    }))
    .check()
    .unwrap();
    assert_eq!(k.namespaces, vec!["web".to_string(), "shop".to_string()]);
    assert_eq!(
        k.leader_elector.map(|i| i.to_string()).as_deref(),
        Some("k8s_leader_elector/k8s_cluster")
    );
    assert!(
        serde_json::from_value::<K8sClusterConfig>(serde_json::json!({"auth_type": "tls"}))
            .is_err()
    );
}

#[derive(Default)]
struct Sink {
    got: Mutex<Vec<Vec<ResourceMetrics>>>,
}

#[async_trait]
impl Consumer for Sink {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        if let Telemetry::Metrics(m) = data {
            vigil_core::lock(&self.got).push(m);
        }
        Ok(())
    }
}

impl Sink {
    fn reports(&self) -> usize {
        vigil_core::lock(&self.got).len()
    }
    /// The series of the last report: (metric, resource attrs + point attrs, value).
    fn last(&self) -> Vec<Series> {
        let got = vigil_core::lock(&self.got);
        got.last().map(|b| series(b)).unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
struct Series {
    metric: String,
    unit: String,
    attrs: HashMap<String, String>,
    value: f64,
}

fn series(batch: &[ResourceMetrics]) -> Vec<Series> {
    let mut out = Vec::new();
    for rm in batch {
        let res: HashMap<String, String> = rm
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .map(|kv| {
                (
                    kv.key.clone(),
                    kv.value
                        .as_ref()
                        .and_then(|v| v.value.as_ref())
                        .map(value_to_string)
                        .unwrap_or_default(),
                )
            })
            .collect();
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let dps = match &m.data {
                    Some(Data::Gauge(g)) => &g.data_points,
                    Some(Data::Sum(s)) => &s.data_points,
                    _ => continue,
                };
                for dp in dps {
                    let mut attrs = res.clone();
                    for kv in &dp.attributes {
                        attrs.insert(
                            kv.key.clone(),
                            kv.value
                                .as_ref()
                                .and_then(|v| v.value.as_ref())
                                .map(value_to_string)
                                .unwrap_or_default(),
                        );
                    }
                    let value = match dp.value {
                        Some(number_data_point::Value::AsInt(i)) => i as f64,
                        Some(number_data_point::Value::AsDouble(d)) => d,
                        None => f64::NAN,
                    };
                    out.push(Series {
                        metric: m.name.clone(),
                        unit: m.unit.clone(),
                        attrs,
                        value,
                    });
                }
            }
        }
    }
    out
}

/// The values of `metric` on resources whose `key` is `value`.
fn values(s: &[Series], metric: &str, key: &str, value: &str) -> Vec<f64> {
    s.iter()
        .filter(|x| x.metric == metric && x.attrs.get(key).map(String::as_str) == Some(value))
        .map(|x| x.value)
        .collect()
}

async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn receiver(api: &K8sApi, cfg: serde_json::Value) -> (K8sClusterReceiver, Arc<Sink>) {
    let id = ComponentId::parse("k8s_cluster").unwrap();
    let set = vigil_core::Settings::new(vigil_core::ComponentKind::Receiver, &id);
    let cfg = config(cfg);
    let sink = Arc::new(Sink::default());
    let mut next = NextConsumers::new();
    next.insert(Signal::Metrics, sink.clone());
    let r = K8sClusterReceiver::new(set, cfg.clone(), cfg.check().unwrap(), next);
    r.with_client(vigil_k8s::client::client_at(&api.url()).unwrap());
    (r, sink)
}

fn cluster() -> K8sApi {
    let api = K8sApi::start();
    api.apply(Kind::Namespace, k8s_api::namespace("shop"));
    api.apply(Kind::Namespace, k8s_api::namespace("kube-system"));
    api.apply(Kind::Node, k8s_api::node("node-a"));
    api.apply(
        Kind::Deployment,
        k8s_api::deployment("shop", "checkout", 3, 3),
    );
    api.apply(
        Kind::ReplicaSet,
        k8s_api::replicaset("shop", "checkout-7c9f8d6b5d", "checkout"),
    );
    let mut pod = k8s_api::pod(
        "shop",
        "checkout-7c9f8d6b5d-x2x9q",
        "node-a",
        "10.244.1.7",
        Owner::ReplicaSet("checkout-7c9f8d6b5d"),
    );
    pod["spec"]["containers"][0]["resources"]["limits"] =
        serde_json::json!({"cpu": "500m", "memory": "256Mi"});
    api.apply(Kind::Pod, pod);
    api.apply(Kind::DaemonSet, k8s_api::daemonset("shop", "agent", 3, 2));
    api.apply(Kind::StatefulSet, k8s_api::statefulset("shop", "db", 3, 3));
    api.apply(Kind::Job, k8s_api::job("shop", "report-29111", "report"));
    api.apply(
        Kind::CronJob,
        k8s_api::cronjob("shop", "report", &["report-29111"]),
    );
    api.apply(
        Kind::ResourceQuota,
        k8s_api::resourcequota(
            "shop",
            "compute",
            &[
                ("requests.cpu", "4"),
                ("requests.memory", "8Gi"),
                ("pods", "20"),
            ],
            &[
                ("requests.cpu", "1500m"),
                ("requests.memory", "1Gi"),
                ("pods", "4"),
            ],
        ),
    );
    api.apply(
        Kind::HorizontalPodAutoscaler,
        k8s_api::hpa("shop", "checkout", "checkout", 2, 10, 3, 4),
    );
    api.apply(
        Kind::ReplicationController,
        k8s_api::replicationcontroller("shop", "legacy", 2, 1),
    );
    api
}

const POD: &str = "checkout-7c9f8d6b5d-x2x9q";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_follow_the_cluster_through_scaling_phase_changes_cuts_and_relists() {
    let api = cluster();
    let (r, sink) = receiver(
        &api,
        serde_json::json!({
            "collection_interval": "100ms",
            "node_conditions_to_report": ["Ready", "MemoryPressure"],
            "allocatable_types_to_report": ["cpu", "memory", "pods"],
            "metrics": {"k8s.node.condition": {"enabled": true}},
            "resource_attributes": {"k8s.cluster.uid": {"enabled": true}},
        }),
    );
    r.start(&Host::detached()).await.unwrap();

    // Every kind reported, with otelcol's names, units, values and resource attributes.
    let s = eventually("a report with every kind", || {
        let s = sink.last();
        let kinds = [
            "k8s.pod.phase",
            "k8s.node.condition_ready",
            "k8s.namespace.phase",
            "k8s.deployment.desired",
            "k8s.replicaset.desired",
            "k8s.daemonset.ready_nodes",
            "k8s.statefulset.ready_pods",
            "k8s.job.active_pods",
            "k8s.cronjob.active_jobs",
            "k8s.resource_quota.used",
            "k8s.hpa.desired_replicas",
            "k8s.replication_controller.available",
        ];
        kinds
            .iter()
            .all(|k| s.iter().any(|x| x.metric == *k))
            .then_some(s)
    })
    .await;
    let v = |m: &str, k: &str, val: &str| values(&s, m, k, val);
    assert_eq!(v("k8s.pod.phase", "k8s.pod.name", POD), vec![2.0]);
    let phase = s.iter().find(|x| x.metric == "k8s.pod.phase").unwrap();
    for (k, want) in [
        ("k8s.namespace.name", "shop"),
        ("k8s.node.name", "node-a"),
        ("k8s.pod.name", POD),
    ] {
        assert_eq!(phase.attrs.get(k).map(String::as_str), Some(want), "{k}");
    }
    assert_eq!(
        phase.attrs.get("k8s.pod.uid"),
        Some(&k8s_api::uid(&format!("pod/shop/{POD}")))
    );
    assert!(
        !phase.attrs.contains_key("k8s.pod.qos_class"),
        "off by default"
    );
    // k8s.cluster.uid is kube-system's UID, on every resource.
    let cluster = k8s_api::uid("ns/kube-system");
    assert!(s
        .iter()
        .all(|x| x.attrs.get("k8s.cluster.uid") == Some(&cluster)));
    assert_eq!(
        v("k8s.container.cpu_request", "k8s.container.name", "app"),
        vec![0.1]
    );
    assert_eq!(
        v("k8s.container.cpu_limit", "k8s.container.name", "app"),
        vec![0.5]
    );
    assert_eq!(
        v("k8s.container.memory_request", "k8s.container.name", "app"),
        vec![134_217_728.0]
    );
    assert_eq!(
        v("k8s.container.memory_limit", "k8s.container.name", "app"),
        vec![268_435_456.0]
    );
    assert_eq!(
        v("k8s.container.restarts", "k8s.container.name", "app"),
        vec![0.0]
    );
    assert_eq!(
        v("k8s.container.ready", "k8s.container.name", "app"),
        vec![1.0]
    );
    let c = s
        .iter()
        .find(|x| x.metric == "k8s.container.restarts")
        .unwrap();
    assert_eq!(c.unit, "{restart}");
    assert_eq!(
        c.attrs.get("container.image.name").map(String::as_str),
        Some("registry.example.com/checkout")
    );
    assert_eq!(
        c.attrs.get("container.image.tag").map(String::as_str),
        Some("1.4.2")
    );
    assert!(c
        .attrs
        .get("container.id")
        .is_some_and(|i| !i.contains("://")));
    assert_eq!(
        v("k8s.deployment.desired", "k8s.deployment.name", "checkout"),
        vec![3.0]
    );
    assert_eq!(
        v(
            "k8s.deployment.available",
            "k8s.deployment.name",
            "checkout"
        ),
        vec![3.0]
    );
    assert_eq!(
        v(
            "k8s.replicaset.available",
            "k8s.replicaset.name",
            "checkout-7c9f8d6b5d"
        ),
        vec![3.0]
    );
    assert_eq!(
        v(
            "k8s.daemonset.desired_scheduled_nodes",
            "k8s.daemonset.name",
            "agent"
        ),
        vec![3.0]
    );
    assert_eq!(
        v("k8s.daemonset.ready_nodes", "k8s.daemonset.name", "agent"),
        vec![2.0]
    );
    assert_eq!(
        v("k8s.statefulset.desired_pods", "k8s.statefulset.name", "db"),
        vec![3.0]
    );
    assert_eq!(
        v(
            "k8s.job.desired_successful_pods",
            "k8s.job.name",
            "report-29111"
        ),
        vec![1.0]
    );
    assert_eq!(
        v("k8s.cronjob.active_jobs", "k8s.cronjob.name", "report"),
        vec![1.0]
    );
    assert_eq!(
        v("k8s.namespace.phase", "k8s.namespace.name", "shop"),
        vec![1.0]
    );
    assert_eq!(
        v("k8s.hpa.min_replicas", "k8s.hpa.name", "checkout"),
        vec![2.0]
    );
    assert_eq!(
        v("k8s.hpa.max_replicas", "k8s.hpa.name", "checkout"),
        vec![10.0]
    );
    assert_eq!(
        v("k8s.hpa.current_replicas", "k8s.hpa.name", "checkout"),
        vec![3.0]
    );
    assert_eq!(
        v("k8s.hpa.desired_replicas", "k8s.hpa.name", "checkout"),
        vec![4.0]
    );
    // Quotas: CPU in millicores, one point per resource.
    assert_eq!(
        v("k8s.resource_quota.hard_limit", "resource", "requests.cpu"),
        vec![4000.0]
    );
    assert_eq!(
        v("k8s.resource_quota.used", "resource", "requests.cpu"),
        vec![1500.0]
    );
    assert_eq!(
        v("k8s.resource_quota.used", "resource", "requests.memory"),
        vec![1_073_741_824.0]
    );
    assert_eq!(
        v("k8s.resource_quota.hard_limit", "resource", "pods"),
        vec![20.0]
    );
    // Node conditions (1 true, 0 false) and allocatable (CPU in cores).
    assert_eq!(
        v("k8s.node.condition_ready", "k8s.node.name", "node-a"),
        vec![1.0]
    );
    assert_eq!(
        v(
            "k8s.node.condition_memory_pressure",
            "k8s.node.name",
            "node-a"
        ),
        vec![0.0]
    );
    assert_eq!(
        v("k8s.node.allocatable_cpu", "k8s.node.name", "node-a"),
        vec![3.92]
    );
    assert_eq!(
        v("k8s.node.allocatable_pods", "k8s.node.name", "node-a"),
        vec![58.0]
    );
    assert_eq!(
        v("k8s.node.allocatable_memory", "k8s.node.name", "node-a"),
        vec![15_027_548.0 * 1024.0]
    );
    assert_eq!(v("k8s.node.condition", "condition", "Ready"), vec![1.0]);
    assert_eq!(
        v("k8s.node.condition", "condition", "DiskPressure"),
        vec![0.0]
    );
    assert!(
        !s.iter().any(|x| x.metric == "k8s.pod.status_reason"),
        "off by default"
    );

    // The deployment is scaled.
    api.apply(
        Kind::Deployment,
        k8s_api::deployment("shop", "checkout", 5, 3),
    );
    eventually("desired 5", || {
        (values(
            &sink.last(),
            "k8s.deployment.desired",
            "k8s.deployment.name",
            "checkout",
        ) == vec![5.0])
        .then_some(())
    })
    .await;

    // The pod fails.
    let mut failed = k8s_api::pod(
        "shop",
        POD,
        "node-a",
        "10.244.1.7",
        Owner::ReplicaSet("checkout-7c9f8d6b5d"),
    );
    failed["status"]["phase"] = "Failed".into();
    api.apply(Kind::Pod, failed);
    eventually("phase Failed (4)", || {
        (values(&sink.last(), "k8s.pod.phase", "k8s.pod.name", POD) == vec![4.0]).then_some(())
    })
    .await;

    // The watches are cut; a pod added meanwhile arrives when they resume, and nothing is doubled.
    api.drop_watches();
    api.apply(
        Kind::Pod,
        k8s_api::pod(
            "shop",
            "checkout-7c9f8d6b5d-bbbbb",
            "node-a",
            "10.244.1.8",
            Owner::ReplicaSet("checkout-7c9f8d6b5d"),
        ),
    );
    let s = eventually("the pod added during the cut", || {
        let s = sink.last();
        (!values(
            &s,
            "k8s.pod.phase",
            "k8s.pod.name",
            "checkout-7c9f8d6b5d-bbbbb",
        )
        .is_empty())
        .then_some(s)
    })
    .await;
    assert_eq!(values(&s, "k8s.pod.phase", "k8s.pod.name", POD), vec![4.0]);
    assert_eq!(s.iter().filter(|x| x.metric == "k8s.pod.phase").count(), 2);
    assert_eq!(
        s.iter()
            .filter(|x| x.metric == "k8s.deployment.desired")
            .count(),
        1
    );

    // History compacted while a pod and the job disappear unseen: the watch gets 410 Gone, re-lists,
    // and their series are gone, not stale.
    let lists_before =
        api.count_requests(|r| r.starts_with("/api/v1/pods?") && !r.contains("watch=true"));
    api.delete_silently(Kind::Pod, "shop", POD);
    api.delete_silently(Kind::Job, "shop", "report-29111");
    api.compact();
    let s = eventually("the re-listed state", || {
        let s = sink.last();
        (values(&s, "k8s.pod.phase", "k8s.pod.name", POD).is_empty()
            && !s.iter().any(|x| x.metric == "k8s.job.active_pods"))
        .then_some(s)
    })
    .await;
    assert!(
        api.count_requests(|r| r.starts_with("/api/v1/pods?") && !r.contains("watch=true"))
            > lists_before,
        "the pods were listed again"
    );
    assert_eq!(s.iter().filter(|x| x.metric == "k8s.pod.phase").count(), 1);
    assert_eq!(
        values(
            &s,
            "k8s.deployment.desired",
            "k8s.deployment.name",
            "checkout"
        ),
        vec![5.0]
    );
    assert_eq!(r.shared.store.len("pods"), 1);

    r.shutdown().await.unwrap();
    let n = sink.reports();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.reports(), n, "no report after stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_scope_the_watches_and_the_cache_is_bounded() {
    let api = cluster();
    api.apply(Kind::Namespace, k8s_api::namespace("web"));
    api.apply(Kind::Deployment, k8s_api::deployment("web", "front", 2, 2));
    api.apply(Kind::Deployment, k8s_api::deployment("web", "back", 2, 2));
    api.apply(Kind::Deployment, k8s_api::deployment("other", "x", 1, 1));
    let (r, sink) = receiver(
        &api,
        serde_json::json!({
            "collection_interval": "100ms",
            "namespaces": ["web", "shop"],
            "max_objects_per_kind": 1,
        }),
    );
    r.start(&Host::detached()).await.unwrap();
    let s = eventually("deployments of both namespaces", || {
        let s = sink.last();
        let ns: std::collections::BTreeSet<String> = s
            .iter()
            .filter(|x| x.metric == "k8s.deployment.desired")
            .filter_map(|x| x.attrs.get("k8s.namespace.name").cloned())
            .collect();
        (ns.len() == 2).then_some(s)
    })
    .await;
    // One per namespace (the bound), none from `other`; no node or namespace watch.
    assert_eq!(
        s.iter()
            .filter(|x| x.metric == "k8s.deployment.desired")
            .count(),
        2
    );
    assert!(!s
        .iter()
        .any(|x| x.attrs.get("k8s.namespace.name").map(String::as_str) == Some("other")));
    assert!(!s
        .iter()
        .any(|x| x.metric.starts_with("k8s.node.") || x.metric == "k8s.namespace.phase"));
    let reqs = api.requests();
    assert!(reqs
        .iter()
        .any(|r| r.starts_with("/apis/apps/v1/namespaces/web/deployments")));
    assert!(
        !reqs
            .iter()
            .any(|r| r.starts_with("/api/v1/nodes") || r.starts_with("/apis/apps/v1/deployments")),
        "{reqs:?}"
    );
    // A deployment added past the bound is refused, not kept.
    api.apply(Kind::Deployment, k8s_api::deployment("shop", "late", 1, 1));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(values(
        &sink.last(),
        "k8s.deployment.desired",
        "k8s.deployment.name",
        "late"
    )
    .is_empty());
    assert_eq!(r.shared.store.len("deployments"), 2);
    r.shutdown().await.unwrap();
}

/// A leader elector double: its lease is held while the test says so.
struct Elector(tokio::sync::watch::Sender<bool>);

impl Component for Elector {}

impl vigil_core::Extension for Elector {
    fn leadership(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        Some(self.0.subscribe())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_leader_elector_only_the_leader_watches_and_reports() {
    let api = cluster();
    let (tx, _) = tokio::sync::watch::channel(false);
    let elector = Arc::new(Elector(tx));
    let ext_id = ComponentId::parse("k8s_leader_elector/k8s_cluster").unwrap();
    let mut exts: HashMap<ComponentId, Arc<dyn vigil_core::Extension>> = HashMap::new();
    exts.insert(ext_id, elector.clone());
    let (fatal, _rx) = tokio::sync::mpsc::unbounded_channel();
    let host = Host::new(exts, fatal);
    let (r, sink) = receiver(
        &api,
        serde_json::json!({
            "collection_interval": "100ms",
            "k8s_leader_elector": "k8s_leader_elector/k8s_cluster",
        }),
    );
    r.start(&host).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sink.reports(), 0, "a follower reports nothing");
    assert_eq!(api.open_watches(), 0, "and watches nothing");

    elector.0.send_replace(true);
    eventually("a report once leading", || {
        (sink.reports() > 0).then_some(())
    })
    .await;

    elector.0.send_replace(false);
    eventually("the cache emptied", || {
        (r.shared.store.len("pods") == 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let n = sink.reports();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sink.reports(), n, "no report after losing the lease");
    r.shutdown().await.unwrap();

    // An elector that is not configured is a start error naming the key.
    let (r, _) = receiver(
        &api,
        serde_json::json!({"k8s_leader_elector": "k8s_leader_elector/nope"}),
    );
    let e = r.start(&Host::detached()).await.unwrap_err().to_string();
    assert!(
        e.contains("k8s_leader_elector") && e.contains("not configured"),
        "{e}"
    );
}

/// Heap and inline bytes an object holds in the cache (its map key included), for the bound's
/// documented cost; the map's own node overhead is not counted.
fn deep_size(o: &Obj) -> usize {
    use std::mem::size_of;
    let mut n = size_of::<Obj>() + o.uid.capacity() * 2; // the UID is also the map key
    n += o.groups.capacity() * size_of::<metrics::Group>();
    for g in &o.groups {
        n += g.resource.capacity() * size_of::<(&str, String)>();
        n += g.resource.iter().map(|(_, v)| v.capacity()).sum::<usize>();
        n += g.points.capacity() * size_of::<metrics::Point>();
        n += g
            .points
            .iter()
            .filter_map(|p| p.attr.as_ref().map(|(_, v)| v.capacity()))
            .sum::<usize>();
    }
    n
}

/// What one cached Pod (one container, as the double's are) and one Deployment cost: the
/// figures docs/kubernetes.md and `DEFAULT_MAX_OBJECTS` quote.
#[test]
fn a_cached_pod_costs_under_two_kib() {
    let checked = config(serde_json::json!({})).check().unwrap();
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(k8s_api::pod(
        "shop",
        "checkout-7c9f8d6b5d-x2x9q",
        "node-a",
        "10.244.1.7",
        Owner::ReplicaSet("checkout-7c9f8d6b5d"),
    ))
    .unwrap();
    let p = deep_size(&objects::pod(pod, &checked).unwrap().prune(&checked));
    let mut two = k8s_api::pod("shop", "two", "node-a", "10.244.1.8", Owner::None);
    let c = two["spec"]["containers"][0].clone();
    let mut c2 = c.clone();
    c2["name"] = "sidecar".into();
    two["spec"]["containers"] = serde_json::json!([c, c2]);
    let mut st = two["status"]["containerStatuses"][0].clone();
    st["name"] = "sidecar".into();
    two["status"]["containerStatuses"]
        .as_array_mut()
        .unwrap()
        .push(st);
    let two: k8s_openapi::api::core::v1::Pod = serde_json::from_value(two).unwrap();
    let two = objects::pod(two, &checked).unwrap().prune(&checked);
    assert_eq!(two.groups.len(), 3);
    let extra = deep_size(&two) - p;
    let d: k8s_openapi::api::apps::v1::Deployment =
        serde_json::from_value(k8s_api::deployment("shop", "checkout", 3, 3)).unwrap();
    let d = deep_size(&objects::deployment(d, &checked).unwrap().prune(&checked));
    eprintln!("cached pod: {p} bytes, +{extra} per container; cached deployment: {d} bytes");
    assert!(extra < 1024, "{extra}");
    assert!(p < 2048, "{p}");
    assert!(d < 1024, "{d}");
}
