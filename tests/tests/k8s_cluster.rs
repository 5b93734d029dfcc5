//! `k8s_cluster` through the vigil binary, against the Kubernetes API-server double (no cluster can
//! run here; vigil_tests::k8s_api speaks the list/watch protocol): the cluster's state comes out of
//! the `file` exporter as otelcol's metrics, and follows a Deployment scaled, a Pod that fails, a
//! cut watch and a `410 Gone` re-list, with each series once and none stale; it reports once its
//! `k8s_leader_elector` holds the Lease.

use serde_json::Value;
use std::time::Duration;
use vigil_tests::k8s_api::{self, K8sApi, Kind, Owner};
use vigil_tests::{free_port, otlp_attr, read_json_lines, Agent};

/// (metric, resource attribute `key`'s value, value) of every point in the last report.
fn last_report(out: &std::path::Path, key: &str) -> Vec<(String, String, f64)> {
    let lines = read_json_lines(out);
    let Some(last) = lines.last() else {
        return Vec::new();
    };
    let mut got = Vec::new();
    for rm in last["resourceMetrics"].as_array().into_iter().flatten() {
        let attr = otlp_attr(&rm["resource"]["attributes"], key)
            .and_then(|v| v["stringValue"].as_str())
            .unwrap_or_default()
            .to_string();
        for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
            for m in sm["metrics"].as_array().into_iter().flatten() {
                let dps = m["gauge"]["dataPoints"]
                    .as_array()
                    .or(m["sum"]["dataPoints"].as_array());
                for dp in dps.into_iter().flatten() {
                    let v = match &dp["asInt"] {
                        Value::String(s) => s.parse().unwrap_or(f64::NAN),
                        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
                        _ => dp["asDouble"].as_f64().unwrap_or(f64::NAN),
                    };
                    got.push((
                        m["name"].as_str().unwrap_or_default().to_string(),
                        attr.clone(),
                        v,
                    ));
                }
            }
        }
    }
    got
}

fn values(r: &[(String, String, f64)], metric: &str, who: &str) -> Vec<f64> {
    r.iter()
        .filter(|(m, w, _)| m == metric && w == who)
        .map(|(_, _, v)| *v)
        .collect()
}

#[test]
fn cluster_metrics_follow_the_cluster_end_to_end() {
    let api = K8sApi::start();
    api.apply(Kind::Namespace, k8s_api::namespace("shop"));
    api.apply(Kind::Node, k8s_api::node("node-a"));
    api.apply(
        Kind::Deployment,
        k8s_api::deployment("shop", "checkout", 2, 2),
    );
    let pod = "checkout-7c9f8d6b5d-x2x9q";
    api.apply(
        Kind::Pod,
        k8s_api::pod(
            "shop",
            pod,
            "node-a",
            "10.244.1.7",
            Owner::ReplicaSet("checkout-7c9f8d6b5d"),
        ),
    );
    api.apply(
        Kind::Pod,
        k8s_api::pod("shop", "gone-unseen", "node-a", "10.244.1.9", Owner::None),
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = api.kubeconfig(dir.path());
    let health = free_port();
    let out = dir.path().join("out.json");
    // Through a real k8s_leader_elector on a Lease in the double: the receiver reports only once
    // this instance holds it.
    let cfg = format!(
        "receivers:
  k8s_cluster:
    auth_type: kubeConfig
    collection_interval: 200ms
    node_conditions_to_report: [Ready, MemoryPressure]
    allocatable_types_to_report: [cpu, memory]
    k8s_leader_elector: k8s_leader_elector/k8s_cluster
exporters:
  file:
    path: {out}
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
  k8s_leader_elector/k8s_cluster:
    auth_type: kubeConfig
    lease_name: k8s.cluster.receiver.opentelemetry.io
    lease_namespace: default
service:
  extensions: [health_check, k8s_leader_elector/k8s_cluster]
  pipelines:
    metrics:
      receivers: [k8s_cluster]
      exporters: [file]
",
        out = out.display(),
    );
    let path = vigil_tests::write_config(dir.path(), "vigil.yaml", &cfg);
    let run = tempfile::tempdir().expect("run dir");
    let mut agent = Agent::start_env(
        run,
        &["--config".into(), path.display().to_string()],
        &[("KUBECONFIG", kubeconfig.display().to_string())],
    );
    agent.wait_healthy(health, Duration::from_secs(60));

    let limit = Duration::from_secs(30);
    let r = vigil_tests::eventually(
        limit,
        "a report with pods, the deployment and the node",
        || {
            let r = last_report(&out, "k8s.pod.name");
            (values(&r, "k8s.pod.phase", pod) == vec![2.0]
                && r.iter().any(|(m, ..)| m == "k8s.deployment.desired")
                && r.iter().any(|(m, ..)| m == "k8s.node.condition_ready"))
            .then_some(r)
        },
    );
    assert!(
        api.count_requests(|r| r.contains("/leases")) > 0,
        "the elector took the lease: {:?}",
        api.requests()
    );
    assert_eq!(values(&r, "k8s.container.ready", pod), vec![1.0]);
    assert_eq!(
        values(&r, "k8s.container.memory_request", pod),
        vec![134_217_728.0]
    );
    let by_deploy = last_report(&out, "k8s.deployment.name");
    assert_eq!(
        values(&by_deploy, "k8s.deployment.desired", "checkout"),
        vec![2.0]
    );
    let by_node = last_report(&out, "k8s.node.name");
    assert_eq!(
        values(&by_node, "k8s.node.condition_ready", "node-a"),
        vec![1.0]
    );
    assert_eq!(
        values(&by_node, "k8s.node.condition_memory_pressure", "node-a"),
        vec![0.0]
    );
    assert_eq!(
        values(&by_node, "k8s.node.allocatable_cpu", "node-a"),
        vec![3.92]
    );

    // Scaled, then a pod fails.
    api.apply(
        Kind::Deployment,
        k8s_api::deployment("shop", "checkout", 4, 2),
    );
    vigil_tests::eventually(limit, "desired 4", || {
        (values(
            &last_report(&out, "k8s.deployment.name"),
            "k8s.deployment.desired",
            "checkout",
        ) == vec![4.0])
        .then_some(())
    });
    let mut failed = k8s_api::pod(
        "shop",
        pod,
        "node-a",
        "10.244.1.7",
        Owner::ReplicaSet("checkout-7c9f8d6b5d"),
    );
    failed["status"]["phase"] = "Failed".into();
    api.apply(Kind::Pod, failed);
    vigil_tests::eventually(limit, "phase 4 (Failed)", || {
        (values(&last_report(&out, "k8s.pod.name"), "k8s.pod.phase", pod) == vec![4.0])
            .then_some(())
    });

    // A cut watch, then history compacted while a pod is deleted unseen: 410 Gone, re-list.
    api.drop_watches();
    api.delete_silently(Kind::Pod, "shop", "gone-unseen");
    api.compact();
    api.apply(
        Kind::Pod,
        k8s_api::pod("shop", "newcomer", "node-a", "10.244.1.10", Owner::None),
    );
    let r = vigil_tests::eventually(limit, "the re-listed state", || {
        let r = last_report(&out, "k8s.pod.name");
        (values(&r, "k8s.pod.phase", "gone-unseen").is_empty()
            && values(&r, "k8s.pod.phase", "newcomer") == vec![2.0])
        .then_some(r)
    });
    assert_eq!(
        values(&r, "k8s.pod.phase", pod),
        vec![4.0],
        "once, still failed"
    );
    assert_eq!(r.iter().filter(|(m, ..)| m == "k8s.pod.phase").count(), 2);
    assert_eq!(
        values(
            &last_report(&out, "k8s.deployment.name"),
            "k8s.deployment.desired",
            "checkout"
        ),
        vec![4.0]
    );
    agent.stop_ok(Duration::from_secs(30));
}
