//! `awscontainerinsightreceiver` through the vigil binary, as AWS's EKS DaemonSet config runs it:
//! its metrics go through `awsemf` (the published config's declarations) into moto's CloudWatch
//! Logs, read back with boto3. No kubelet and no cluster can run here: the kubelet is a double
//! serving kubeletstats' summary and pod-list fixtures (written from the kubelet's types) behind a
//! service-account token check, and the API server is vigil_tests::k8s_api, which speaks the
//! real list/get protocol. Also: AWS's published EKS Container Insights config validates unchanged.

// Only moto itself is used here, not the flaky proxy the other AWS tests share.
#[allow(dead_code)]
#[path = "support/moto.rs"]
mod moto;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use vigil_tests::k8s_api::{self, K8sApi, Kind};
use vigil_tests::{eventually, free_port, python, python_script_json, repo_root, Agent};

const PUBLISHED: &str =
    "../shared/compat/configs/aws-observability__aws-otel-collector__eks-container-insights-infra.yaml";

#[test]
fn the_published_eks_container_insights_config_validates() {
    let path = repo_root().join(PUBLISHED);
    if !path.exists() {
        eprintln!("skipped: {} is absent", path.display());
        return;
    }
    let out = Command::new(vigil_tests::bin("vigil"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .expect("run vigil validate");
    assert!(
        out.status.success(),
        "vigil validate failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The kubelet double on `port`: `/stats/summary` and `/pods` for `Bearer <token>` only.
fn kubelet_double(rt: &tokio::runtime::Runtime, port: u16, token: &'static str) {
    let fixtures = repo_root().join("receivers/testdata/kubeletstats");
    let summary = std::fs::read_to_string(fixtures.join("summary.json")).unwrap();
    let mut pods: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("pods.json")).unwrap())
            .unwrap();
    // What a real kubelet also reports and the fixture leaves out: each container's state.
    for p in pods["items"].as_array_mut().unwrap() {
        for c in p["status"]["containerStatuses"].as_array_mut().unwrap() {
            c["state"] = json!({"running": {"startedAt": "2026-12-01T08:01:00Z"}});
        }
    }
    let pods = pods.to_string();
    let ok = move |h: &HeaderMap| {
        (h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {token}")))
            .then_some(())
            .ok_or((StatusCode::UNAUTHORIZED, "Unauthorized"))
    };
    let app = axum::Router::new()
        .route(
            "/stats/summary",
            axum::routing::get(move |h: HeaderMap| async move { ok(&h).map(|_| summary) }),
        )
        .route(
            "/pods",
            axum::routing::get(move |h: HeaderMap| async move { ok(&h).map(|_| pods) }),
        );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
        .expect("bind the kubelet double");
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

/// The pod's service-account directory: a token and a CA certificate.
fn service_account(dir: &Path, token: &str) {
    let key = rcgen::KeyPair::generate().unwrap();
    let ca = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("token"), token).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
}

#[test]
fn node_pod_and_container_metrics_reach_cloudwatch_as_container_insights_emf() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let moto_port = free_port();
    let _moto = moto::moto(moto_port);
    let endpoint = format!("http://127.0.0.1:{moto_port}");
    let kubelet = free_port();
    kubelet_double(&rt, kubelet, "sa-token");
    let api = K8sApi::start();
    api.apply(Kind::Node, k8s_api::node("node-1"));
    // The checkout Service's Endpoints, for add_service_as_attribute (on by default).
    static ENDPOINTS: k8s_api::Resource = k8s_api::Resource {
        api_version: "v1",
        kind: "Endpoints",
        plural: "endpoints",
        namespaced: true,
    };
    api.apply(
        Kind::Other(&ENDPOINTS),
        json!({
            "metadata": {"name": "checkout", "namespace": "shop"},
            "subsets": [{"addresses": [{"ip": "10.1.0.7", "targetRef":
                {"kind": "Pod", "namespace": "shop", "name": "checkout-7d4b9c6f8-x2x7q"}}]}],
        }),
    );

    let dir = tempfile::tempdir().unwrap();
    let sa = dir.path().join("sa");
    std::fs::create_dir(&sa).unwrap();
    service_account(&sa, "sa-token");
    let kubeconfig = api.kubeconfig(dir.path());
    let health = free_port();
    let yaml = format!(
        "receivers:
  awscontainerinsightreceiver:
    collection_interval: 1s
    cluster_name: prod
    host_name: node-1
    kubelet_endpoint: http://127.0.0.1:{kubelet}
    service_account_dir: {sa}
    kube_config_path: {kubeconfig}
exporters:
  awsemf:
    region: us-east-1
    endpoint: {endpoint}
    namespace: ContainerInsights
    log_group_name: '/aws/containerinsights/{{ClusterName}}/performance'
    log_stream_name: '{{NodeName}}'
    resource_to_telemetry_conversion:
      enabled: true
    dimension_rollup_option: NoDimensionRollup
    parse_json_encoded_attr_values: [Sources, kubernetes]
    metric_declarations:
      - dimensions: [[NodeName, InstanceId, ClusterName]]
        metric_name_selectors: [node_cpu_utilization, node_memory_utilization, node_network_total_bytes, node_number_of_running_pods]
      - dimensions: [[PodName, Namespace, ClusterName], [Namespace, ClusterName], [ClusterName]]
        metric_name_selectors: [pod_cpu_utilization, pod_memory_utilization, pod_cpu_utilization_over_pod_limit]
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  pipelines:
    metrics: {{receivers: [awscontainerinsightreceiver], exporters: [awsemf]}}
  telemetry:
    metrics:
      level: none
",
        sa = sa.display(),
        kubeconfig = kubeconfig.display(),
    );
    let cfg = vigil_tests::write_config(dir.path(), "config.yaml", &yaml);
    let env = vigil_tests::static_aws_env(dir.path());
    let mut agent = Agent::start_env(
        tempfile::tempdir().unwrap(),
        &["--config".into(), cfg.display().to_string()],
        &env,
    );
    agent.wait_healthy(health, Duration::from_secs(60));

    let py = python();
    // The second collection on has network rates; wait for an event that carries them.
    let events = eventually(
        Duration::from_secs(60),
        "Container Insights events in moto",
        || {
            let r = python_script_json(
                &py,
                "aws_check.py",
                &[
                    "logs",
                    "--endpoint",
                    &endpoint,
                    "--group",
                    "/aws/containerinsights/prod/performance",
                    "--stream",
                    "node-1",
                ],
            );
            let ev = r["events"].as_array().cloned().unwrap_or_default();
            ev.iter()
                .any(|e| e["Type"] == "Node" && e.get("node_network_total_bytes").is_some())
                .then_some(ev)
        },
    );
    let node = events
        .iter()
        .find(|e| e["Type"] == "Node" && e.get("node_network_total_bytes").is_some())
        .unwrap();
    // 412.5 millicores of the API server's 4-core node.
    assert_eq!(node["node_cpu_utilization"], 412.5 / 4000.0 * 100.0);
    assert_eq!(node["node_number_of_running_pods"], 2);
    assert_eq!(node["InstanceId"], "i-node-1");
    let cw = &node["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(cw["Namespace"], "ContainerInsights");
    assert_eq!(
        cw["Dimensions"],
        json!([["ClusterName", "InstanceId", "NodeName"]])
    );
    let names: Vec<&str> = cw["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["Name"].as_str())
        .collect();
    assert!(names.contains(&"node_cpu_utilization"), "{cw}");
    assert!(
        cw["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["Name"] == "node_cpu_utilization" && m["Unit"] == "Percent"),
        "{cw}"
    );

    let pod = events
        .iter()
        .find(|e| e["Type"] == "Pod" && e["PodName"] == "checkout")
        .expect("a Pod event for the checkout Deployment");
    assert_eq!(pod["Namespace"], "shop");
    assert_eq!(pod["K8sPodName"], "checkout-7d4b9c6f8-x2x7q");
    assert_eq!(pod["Service"], "checkout", "from the Service's Endpoints");
    assert_eq!(pod["kubernetes"]["service_name"], "checkout");
    assert_eq!(
        pod["pod_cpu_utilization_over_pod_limit"],
        130.0 / 600.0 * 100.0
    );
    assert_eq!(
        pod["kubernetes"]["pod_owners"],
        json!([{"owner_kind": "Deployment", "owner_name": "checkout"}]),
        "the JSON attribute parsed by parse_json_encoded_attr_values"
    );
    assert_eq!(
        pod["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([
            ["ClusterName", "Namespace", "PodName"],
            ["ClusterName", "Namespace"],
            ["ClusterName"]
        ])
    );
    assert!(
        events
            .iter()
            .any(|e| e["Type"] == "Container" && e["ContainerName"] == "envoy"),
        "container events too"
    );
    agent.stop_ok(Duration::from_secs(20));
}
