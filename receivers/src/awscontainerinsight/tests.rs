//! Conversion from kubeletstats' kubelet fixtures (`testdata/kubeletstats/`, written from the
//! kubelet's `stats/v1alpha1` and `core/v1` types), and one collection against a kubelet double
//! (token-checked, as the kubelet's webhook authenticator) and the repository's API-server double
//! (vigil_tests::k8s_api), since neither a kubelet nor a cluster can run here.

use super::*;
use crate::hostmetrics::testing::{find, value};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::{json, Value};
use vigil_core::attrs::value_to_string;
use vigil_core::otlp::metrics::v1::{metric::Data, Metric, ResourceMetrics};

const SUMMARY: &str = include_str!("../../testdata/kubeletstats/summary.json");
const PODS: &str = include_str!("../../testdata/kubeletstats/pods.json");

/// The fixture's pods with what a real kubelet also reports: each container's state, and a
/// restarted `envoy` whose last run was OOM-killed.
fn pods_json() -> Value {
    let mut p: Value = serde_json::from_str(PODS).unwrap();
    for pod in p["items"].as_array_mut().unwrap() {
        for c in pod["status"]["containerStatuses"].as_array_mut().unwrap() {
            c["state"] = json!({"running": {"startedAt": "2026-12-01T08:01:00Z"}});
            if c["name"] == "envoy" {
                c["restartCount"] = json!(2);
                c["lastState"] = json!({"terminated": {"reason": "OOMKilled", "exitCode": 137}});
            }
        }
    }
    p
}

fn node_info() -> NodeInfo {
    let n: vigil_k8s::k8s_openapi::api::core::v1::Node =
        serde_json::from_value(vigil_tests::k8s_api::node("node-1")).unwrap();
    NodeInfo::from_node(&n)
}

fn attr(rm: &ResourceMetrics, key: &str) -> Option<String> {
    rm.resource
        .as_ref()?
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| {
            kv.value
                .as_ref()
                .and_then(|v| v.value.as_ref())
                .map(value_to_string)
                .unwrap_or_default()
        })
}

fn of<'a>(out: &'a [ResourceMetrics], ty: &str, key: &str, v: &str) -> &'a [Metric] {
    let rm = out
        .iter()
        .find(|rm| attr(rm, "Type").as_deref() == Some(ty) && attr(rm, key).as_deref() == Some(v))
        .unwrap_or_else(|| panic!("no {ty} resource with {key}={v}"));
    &rm.scope_metrics[0].metrics
}

fn labels() -> Labels {
    Labels {
        cluster_name: "prod".into(),
        ..Default::default()
    }
}

const T0: u64 = 1_764_928_800_000_000_000;

fn convert_at(summary: &str, rates: &mut Rates, now: u64) -> Vec<ResourceMetrics> {
    let s = serde_json::from_str(summary).unwrap();
    let p: pods::PodList = serde_json::from_value(pods_json()).unwrap();
    let (out, dropped) = metrics::convert(&s, &p, &node_info(), &labels(), rates, now);
    assert_eq!(dropped, metrics::Dropped::default());
    out
}

#[test]
fn node_pod_and_container_metrics_with_container_insights_names_units_and_labels() {
    let out = convert_at(SUMMARY, &mut Rates::default(), T0);
    let node = of(&out, "Node", "NodeName", "node-1");
    // 412 500 000 nanocores of a 4-core node.
    assert_eq!(value(find(node, "node_cpu_usage_total"), ""), 412.5);
    assert_eq!(value(find(node, "node_cpu_limit"), ""), 4000.0);
    assert_eq!(
        value(find(node, "node_cpu_utilization"), ""),
        412.5 / 4000.0 * 100.0
    );
    assert_eq!(find(node, "node_cpu_utilization").unit, "Percent");
    let mem = 16_044_380.0 * 1024.0;
    assert_eq!(value(find(node, "node_memory_limit"), ""), mem);
    assert_eq!(
        value(find(node, "node_memory_working_set"), ""),
        2_952_790_016.0
    );
    assert_eq!(find(node, "node_memory_working_set").unit, "Bytes");
    assert_eq!(
        value(find(node, "node_memory_utilization"), ""),
        2_952_790_016.0 / mem * 100.0
    );
    // Requests of both running pods: 250m + 50m + 100m.
    assert_eq!(value(find(node, "node_cpu_request"), ""), 400.0);
    assert_eq!(value(find(node, "node_cpu_reserved_capacity"), ""), 10.0);
    assert_eq!(value(find(node, "node_number_of_running_pods"), ""), 2.0);
    assert_eq!(
        value(find(node, "node_number_of_running_containers"), ""),
        3.0
    );
    assert_eq!(find(node, "node_number_of_running_pods").unit, "Count");
    assert!(matches!(
        find(node, "node_number_of_running_pods").data,
        Some(Data::Gauge(_))
    ));
    // Rates need a second collection.
    assert!(node.iter().all(|m| m.name != "node_network_total_bytes"));
    let rm = out
        .iter()
        .find(|rm| attr(rm, "Type").as_deref() == Some("Node"))
        .unwrap();
    assert_eq!(attr(rm, "ClusterName").as_deref(), Some("prod"));
    assert_eq!(attr(rm, "InstanceId").as_deref(), Some("i-node-1"));
    assert_eq!(attr(rm, "InstanceType").as_deref(), Some("m6i.xlarge"));
    assert_eq!(attr(rm, "Timestamp").as_deref(), Some("1764928800000"));
    assert_eq!(attr(rm, "Version").as_deref(), Some("0"));

    let fs = of(&out, "NodeFS", "NodeName", "node-1");
    assert_eq!(value(find(fs, "node_filesystem_utilization"), ""), 40.0);

    // The Deployment's pod is named by its Deployment, its own name kept as K8sPodName.
    let pod = of(&out, "Pod", "PodName", "checkout");
    assert_eq!(value(find(pod, "pod_cpu_usage_total"), ""), 130.0);
    assert_eq!(
        value(find(pod, "pod_cpu_utilization"), ""),
        130.0 / 4000.0 * 100.0
    );
    assert_eq!(value(find(pod, "pod_cpu_limit"), ""), 600.0);
    assert_eq!(
        value(find(pod, "pod_cpu_utilization_over_pod_limit"), ""),
        130.0 / 600.0 * 100.0
    );
    assert_eq!(
        value(find(pod, "pod_cpu_reserved_capacity"), ""),
        300.0 / 4000.0 * 100.0
    );
    // envoy sets no memory request: the pod's request is checkout's alone, and both set limits.
    assert_eq!(
        value(find(pod, "pod_memory_request"), ""),
        128.0 * 1024.0 * 1024.0
    );
    assert_eq!(
        value(find(pod, "pod_memory_limit"), ""),
        320.0 * 1024.0 * 1024.0
    );
    assert_eq!(
        value(find(pod, "pod_number_of_container_restarts"), ""),
        2.0
    );
    assert_eq!(
        value(find(pod, "pod_number_of_running_containers"), ""),
        2.0
    );
    let rm = out
        .iter()
        .find(|rm| {
            attr(rm, "Type").as_deref() == Some("Pod")
                && attr(rm, "PodName").as_deref() == Some("checkout")
        })
        .unwrap();
    assert_eq!(
        attr(rm, "K8sPodName").as_deref(),
        Some("checkout-7d4b9c6f8-x2x7q")
    );
    assert_eq!(attr(rm, "Namespace").as_deref(), Some("shop"));
    assert_eq!(attr(rm, "pod_status").as_deref(), Some("Running"));
    let k: Value = serde_json::from_str(&attr(rm, "kubernetes").unwrap()).unwrap();
    assert_eq!(
        k["pod_owners"],
        json!([{"owner_kind": "Deployment", "owner_name": "checkout"}])
    );
    assert_eq!(k["host"], "node-1");

    // A pod without a controller is named by itself; kube-proxy sets no limit, so no ratio to it.
    let proxy = of(&out, "Pod", "PodName", "kube-proxy-5wz8m");
    assert!(proxy
        .iter()
        .all(|m| m.name != "pod_cpu_utilization_over_pod_limit"));

    let envoy = of(&out, "Container", "ContainerName", "envoy");
    assert_eq!(value(find(envoy, "container_cpu_usage_total"), ""), 5.0);
    assert_eq!(value(find(envoy, "container_cpu_limit"), ""), 100.0);
    assert_eq!(value(find(envoy, "number_of_container_restarts"), ""), 2.0);
    assert!(envoy.iter().all(|m| m.name != "container_memory_request"));
    let rm = out
        .iter()
        .find(|rm| {
            attr(rm, "Type").as_deref() == Some("Container")
                && attr(rm, "ContainerName").as_deref() == Some("envoy")
        })
        .unwrap();
    assert_eq!(attr(rm, "container_status").as_deref(), Some("Running"));
    assert_eq!(
        attr(rm, "container_last_termination_reason").as_deref(),
        Some("OOMKilled")
    );
    assert_eq!(
        attr(rm, "ContainerId").as_deref(),
        Some("9a8b7c6d5e4f30211234567890abcdef1234567890abcdef1234567890abcdef")
    );
    let cfs = of(&out, "ContainerFS", "ContainerName", "checkout");
    assert_eq!(value(find(cfs, "container_filesystem_usage"), ""), 49152.0);
}

#[test]
fn network_and_page_faults_are_per_second_rates_from_the_second_collection() {
    let mut rates = Rates::default();
    convert_at(SUMMARY, &mut rates, T0);
    // 60 s later eth0 received 6 000 000 bytes more and sent 600 000 more.
    let later = SUMMARY
        .replace("\"rxBytes\": 91842736128", "\"rxBytes\": 91848736128")
        .replace("\"txBytes\": 40110233600", "\"txBytes\": 40110833600");
    assert_ne!(later, SUMMARY, "the fixture's counters were found");
    let out = convert_at(&later, &mut rates, T0 + 60_000_000_000);
    let eth0 = of(&out, "NodeNet", "interface", "eth0");
    assert_eq!(
        value(find(eth0, "node_interface_network_rx_bytes"), ""),
        100_000.0
    );
    assert_eq!(
        find(eth0, "node_interface_network_rx_bytes").unit,
        "Bytes/Second"
    );
    let node = of(&out, "Node", "NodeName", "node-1");
    // Summed over eth0 and cni0 (cni0 unchanged).
    assert_eq!(value(find(node, "node_network_total_bytes"), ""), 110_000.0);
    assert_eq!(value(find(node, "node_memory_pgfault"), ""), 0.0);
    // The state holds the last collection's entities only.
    let before = rates.entities();
    convert_at(&later, &mut rates, T0 + 120_000_000_000);
    assert_eq!(rates.entities(), before);
}

#[test]
fn pods_past_the_bound_are_dropped_and_counted() {
    let mut s: Value = serde_json::from_str(SUMMARY).unwrap();
    let one = s["pods"][1].clone();
    let many: Vec<Value> = (0..metrics::MAX_PODS + 6)
        .map(|i| {
            let mut p = one.clone();
            p["podRef"]["uid"] = json!(format!("uid-{i}"));
            p
        })
        .collect();
    s["pods"] = Value::Array(many);
    let s = serde_json::from_value(s).unwrap();
    let p: pods::PodList = serde_json::from_value(pods_json()).unwrap();
    let mut rates = Rates::default();
    let (out, dropped) = metrics::convert(&s, &p, &node_info(), &labels(), &mut rates, T0);
    assert_eq!(dropped.pods, 6);
    let pods = out
        .iter()
        .filter(|rm| attr(rm, "Type").as_deref() == Some("Pod"))
        .count();
    assert_eq!(pods, metrics::MAX_PODS);
}

#[test]
fn keys_not_built_are_refused_by_name_and_defaults_are_otelcols() {
    let c: AwsContainerInsightConfig = serde_json::from_value(json!({})).unwrap();
    assert_eq!(c.collection_interval, std::time::Duration::from_secs(60));
    assert_eq!(c.container_orchestrator, "eks");
    assert!(c.add_service_as_attribute);
    assert_eq!(c.leader_lock_name, config::DEFAULT_LEADER_LOCK);
    c.check().unwrap();
    for (key, v) in [
        ("container_orchestrator", json!("ecs")),
        ("enable_control_plane_metrics", json!(true)),
        ("accelerated_compute_metrics", json!(true)),
        ("leader_lock_using_config_map_only", json!(true)),
        ("run_on_systemd", json!(true)),
        ("collection_role", json!("LEADER")),
        ("middleware", json!("sigv4auth")),
    ] {
        let c: AwsContainerInsightConfig = serde_json::from_value(json!({ key: v })).unwrap();
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains(key) && e.contains("not built"), "{key}: {e}");
    }
    assert!(
        serde_json::from_value::<AwsContainerInsightConfig>(json!({"kubelet_stats": 1})).is_err()
    );
    let c: AwsContainerInsightConfig =
        serde_json::from_value(json!({"host_ip": "10.0.0.7"})).unwrap();
    assert_eq!(c.kubelet().unwrap(), "10.0.0.7:10250");
}

/// A kubelet double that wants `Bearer <token>`.
async fn kubelet_double(
    token: &'static str,
) -> (std::net::SocketAddr, tokio_util::sync::CancellationToken) {
    let ok = move |h: &HeaderMap| {
        (h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {token}")))
            .then_some(())
            .ok_or((StatusCode::UNAUTHORIZED, "Unauthorized"))
    };
    let pods = pods_json().to_string();
    let router = axum::Router::new()
        .route(
            "/stats/summary",
            get(move |h: HeaderMap| async move { ok(&h).map(|_| SUMMARY) }),
        )
        .route(
            "/pods",
            get(move |h: HeaderMap| async move { ok(&h).map(|_| pods) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { s.cancelled().await })
            .await;
    });
    (addr, stop)
}

/// A service-account directory: a token and a CA (any valid certificate: the kubelet's is not
/// verified, as otelcol's Container Insights client does not verify it).
fn service_account(token: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let ca = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.path().join("token"), format!("{token}\n")).unwrap();
    std::fs::write(dir.path().join("ca.crt"), ca.pem()).unwrap();
    dir
}

#[tokio::test]
async fn one_collection_reads_the_kubelet_with_the_token_and_the_node_from_the_api_server() {
    let (addr, stop) = kubelet_double("sa-token").await;
    let sa = service_account("sa-token");
    let api = vigil_tests::k8s_api::K8sApi::start();
    api.apply(
        vigil_tests::k8s_api::Kind::Node,
        vigil_tests::k8s_api::node("node-1"),
    );
    let kc = api.kubeconfig(sa.path());
    let cfg: AwsContainerInsightConfig = serde_json::from_value(json!({
        "kubelet_endpoint": format!("http://{addr}"),
        "service_account_dir": sa.path().display().to_string(),
        "kube_config_path": kc.display().to_string(),
        "host_name": "node-1",
        "cluster_name": "prod",
    }))
    .unwrap();
    let mut st = State {
        kubelet: None,
        api: None,
        node: NodeInfo::default(),
        rates: Rates::default(),
        services: services::Services::default(),
    };
    let (out, _) = collect(&cfg, &mut st).await.unwrap();
    let node = of(&out, "Node", "NodeName", "node-1");
    assert_eq!(
        value(find(node, "node_cpu_limit"), ""),
        4000.0,
        "capacity from the API server"
    );
    assert_eq!(st.node.instance_id.as_deref(), Some("i-node-1"));

    // A wrong token is refused by the kubelet, and the collection says so.
    std::fs::write(sa.path().join("token"), "stale").unwrap();
    let e = collect(&cfg, &mut st).await.unwrap_err();
    assert!(e.contains("401"), "{e}");
    stop.cancel();
}

/// core/v1 Endpoints, which the API-server double serves as any other resource.
static ENDPOINTS: vigil_tests::k8s_api::Resource = vigil_tests::k8s_api::Resource {
    api_version: "v1",
    kind: "Endpoints",
    plural: "endpoints",
    namespaced: true,
};

/// An Endpoints object as the endpoints controller writes one: `ready` pods as `addresses`, the
/// rest as `notReadyAddresses`, each with its pod as `targetRef`.
fn endpoints(ns: &str, service: &str, ready: &[&str], not_ready: &[&str]) -> Value {
    let addr = |pods: &[&str]| -> Vec<Value> {
        pods.iter()
            .enumerate()
            .map(|(i, p)| {
                json!({"ip": format!("10.1.0.{i}"), "nodeName": "node-1",
                    "targetRef": {"kind": "Pod", "namespace": ns, "name": p}})
            })
            .collect()
    };
    json!({
        "metadata": {"name": service, "namespace": ns},
        "subsets": [{
            "addresses": addr(ready),
            "notReadyAddresses": addr(not_ready),
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        }],
    })
}

fn collect_config(
    addr: std::net::SocketAddr,
    sa: &std::path::Path,
    kc: &std::path::Path,
    service: bool,
) -> AwsContainerInsightConfig {
    serde_json::from_value(json!({
        "kubelet_endpoint": format!("http://{addr}"),
        "service_account_dir": sa.display().to_string(),
        "kube_config_path": kc.display().to_string(),
        "host_name": "node-1",
        "add_service_as_attribute": service,
    }))
    .unwrap()
}

fn new_state() -> State {
    State {
        kubelet: None,
        api: None,
        node: NodeInfo::default(),
        rates: Rates::default(),
        services: services::Services::default(),
    }
}

fn service_of(out: &[ResourceMetrics], ty: &str, key: &str, v: &str) -> Option<String> {
    let rm = out
        .iter()
        .find(|rm| attr(rm, "Type").as_deref() == Some(ty) && attr(rm, key).as_deref() == Some(v))
        .unwrap_or_else(|| panic!("no {ty} resource with {key}={v}"));
    attr(rm, "Service")
}

#[tokio::test]
async fn add_service_as_attribute_names_the_service_whose_endpoints_select_the_pod() {
    use vigil_tests::k8s_api::{node, K8sApi, Kind};
    let (addr, stop) = kubelet_double("sa-token").await;
    let sa = service_account("sa-token");
    let api = K8sApi::start();
    api.apply(Kind::Node, node("node-1"));
    let checkout = "checkout-7d4b9c6f8-x2x7q";
    // Two Services select checkout: the smaller name is taken, on every collection.
    api.apply(
        Kind::Other(&ENDPOINTS),
        endpoints(
            "shop",
            "checkout",
            &[checkout, "checkout-7d4b9c6f8-zzzzz"],
            &[],
        ),
    );
    api.apply(
        Kind::Other(&ENDPOINTS),
        endpoints("shop", "api", &[checkout], &[]),
    );
    // kube-proxy is only behind a not-ready address, and a Service of the same name in another
    // namespace does not name it either.
    api.apply(
        Kind::Other(&ENDPOINTS),
        endpoints("kube-system", "proxy", &[], &["kube-proxy-5wz8m"]),
    );
    api.apply(
        Kind::Other(&ENDPOINTS),
        endpoints("default", "other", &["kube-proxy-5wz8m"], &[]),
    );
    let kc = api.kubeconfig(sa.path());
    let cfg = collect_config(addr, sa.path(), &kc, true);
    let mut st = new_state();
    let (out, dropped) = collect(&cfg, &mut st).await.unwrap();
    assert_eq!(dropped.endpoints, 0);
    for (ty, key, v) in [
        ("Pod", "K8sPodName", checkout),
        ("Container", "ContainerName", "envoy"),
        ("ContainerFS", "ContainerName", "checkout"),
    ] {
        assert_eq!(service_of(&out, ty, key, v).as_deref(), Some("api"), "{ty}");
    }
    // Interfaces are rates, so PodNet comes with the second collection, which uses the map of
    // the first (less than services::REFRESH ago) without listing again.
    let lists = api.count_requests(|r| r.contains("endpoints"));
    assert!(lists > 0);
    let (out, _) = collect(&cfg, &mut st).await.unwrap();
    assert_eq!(api.count_requests(|r| r.contains("endpoints")), lists);
    let pod_nets: Vec<_> = out
        .iter()
        .filter(|rm| attr(rm, "Type").as_deref() == Some("PodNet"))
        .filter(|rm| attr(rm, "K8sPodName").as_deref() == Some(checkout))
        .collect();
    assert!(!pod_nets.is_empty());
    assert!(pod_nets
        .iter()
        .all(|rm| attr(rm, "Service").as_deref() == Some("api")));
    let rm = out
        .iter()
        .find(|rm| {
            attr(rm, "Type").as_deref() == Some("Pod")
                && attr(rm, "K8sPodName").as_deref() == Some(checkout)
        })
        .unwrap();
    let k: Value = serde_json::from_str(&attr(rm, "kubernetes").unwrap()).unwrap();
    assert_eq!(k["service_name"], "api");
    assert_eq!(
        service_of(&out, "Pod", "K8sPodName", "kube-proxy-5wz8m"),
        None
    );
    assert_eq!(service_of(&out, "Node", "NodeName", "node-1"), None);
    // Only this node's pods are held.
    assert_eq!(st.services.map.len(), 1);

    // Off: no Service, and the Endpoints are not listed.
    let before = api.count_requests(|r| r.contains("endpoints"));
    assert!(before > 0);
    let cfg = collect_config(addr, sa.path(), &kc, false);
    let (out, _) = collect(&cfg, &mut new_state()).await.unwrap();
    assert_eq!(service_of(&out, "Pod", "K8sPodName", checkout), None);
    assert_eq!(api.count_requests(|r| r.contains("endpoints")), before);
    stop.cancel();
}

#[tokio::test]
async fn endpoints_past_the_bound_are_not_read_and_counted() {
    use vigil_tests::k8s_api::{node, K8sApi, Kind};
    let (addr, stop) = kubelet_double("sa-token").await;
    let sa = service_account("sa-token");
    let api = K8sApi::start();
    api.apply(Kind::Node, node("node-1"));
    // Namespace `aaa` lists before `shop`, so checkout's Service is past the bound.
    api.preload(
        Kind::Other(&ENDPOINTS),
        (0..services::MAX_ENDPOINTS).map(|i| endpoints("aaa", &format!("s{i:05}"), &[], &[])),
    );
    api.apply(
        Kind::Other(&ENDPOINTS),
        endpoints("shop", "checkout", &["checkout-7d4b9c6f8-x2x7q"], &[]),
    );
    let kc = api.kubeconfig(sa.path());
    let cfg = collect_config(addr, sa.path(), &kc, true);
    let (out, dropped) = collect(&cfg, &mut new_state()).await.unwrap();
    assert_eq!(dropped.endpoints, 1);
    assert_eq!(
        service_of(&out, "Pod", "K8sPodName", "checkout-7d4b9c6f8-x2x7q"),
        None
    );
    stop.cancel();
}
