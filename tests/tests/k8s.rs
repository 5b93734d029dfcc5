//! vigil as a DaemonSet agent, end to end against the Kubernetes API-server double (no cluster can
//! run here; vigil_tests::k8s_api speaks the API's list/watch protocol): spans sent over OTLP from a
//! pod's IP, and the pod's container log read from its /var/log/pods file, come out with the pod's
//! name, namespace, Deployment and labels, found by `k8sattributes` through the connection and the
//! pod UID in the log's path.

use std::time::Duration;
use vigil_tests::k8s_api::{self, K8sApi, Kind, Owner};
use vigil_tests::{free_port, otlp_attr, read_json_lines, Agent};

/// A loopback address other than 127.0.0.1 plays the pod: the agent sees it as the client IP.
const POD_IP: &str = "127.0.0.7";

fn str_attr(attrs: &serde_json::Value, key: &str) -> Option<String> {
    otlp_attr(attrs, key).and_then(|v| v["stringValue"].as_str().map(str::to_string))
}

#[test]
fn spans_and_container_logs_from_a_pod_carry_its_metadata() {
    let api = K8sApi::start();
    let mut ns = k8s_api::namespace("shop");
    ns["metadata"]["labels"]["team"] = "payments".into();
    api.apply(Kind::Namespace, ns);
    api.apply(Kind::Node, k8s_api::node("node-a"));
    api.apply(
        Kind::ReplicaSet,
        k8s_api::replicaset("shop", "checkout-7c9f8d6b5d", "checkout"),
    );
    let pod_name = "checkout-7c9f8d6b5d-x2x9q";
    api.apply(
        Kind::Pod,
        k8s_api::pod(
            "shop",
            pod_name,
            "node-a",
            POD_IP,
            Owner::ReplicaSet("checkout-7c9f8d6b5d"),
        ),
    );
    // Same IP on another node: the agent must not even see it.
    api.apply(
        Kind::Pod,
        k8s_api::pod("shop", "elsewhere", "node-b", "127.0.0.8", Owner::None),
    );
    let pod_uid = k8s_api::uid(&format!("pod/shop/{pod_name}"));

    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = api.kubeconfig(dir.path());
    // The kubelet's layout: /var/log/pods/<namespace>_<pod>_<uid>/<container>/<n>.log, CRI lines.
    let log_dir = dir
        .path()
        .join(format!("pods/shop_{pod_name}_{pod_uid}/app"));
    std::fs::create_dir_all(&log_dir).expect("log dir");
    std::fs::write(
        log_dir.join("0.log"),
        "2026-11-30T08:00:10.000000000Z stdout F cart loaded in 12ms\n",
    )
    .expect("log file");

    let (http, health) = (free_port(), free_port());
    let out = dir.path().join("out.json");
    let cfg = format!(
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
  filelog:
    include: [{pods}/*/*/*.log]
    include_file_path: true
    start_at: beginning
    operators:
      - type: container
processors:
  k8s_attributes:
    auth_type: kubeConfig
    wait_for_metadata: true
    filter:
      node_from_env_var: K8S_NODE_NAME
    pod_association:
      - sources: [{{from: resource_attribute, name: k8s.pod.uid}}]
      - sources: [{{from: connection}}]
    extract:
      metadata: [k8s.pod.name, k8s.pod.uid, k8s.namespace.name, k8s.node.name, k8s.deployment.name]
      labels:
        - tag_name: app
          key: app.kubernetes.io/name
        - tag_name: team
          key: team
          from: namespace
{exporter}  pipelines:
    traces:
      receivers: [otlp]
      processors: [k8s_attributes]
      exporters: [file]
    logs:
      receivers: [filelog]
      processors: [k8s_attributes]
      exporters: [file]
",
        pods = dir.path().join("pods").display(),
        exporter = vigil_tests::file_exporter_and_health(&out, health),
    );
    let path = vigil_tests::write_config(dir.path(), "vigil.yaml", &cfg);
    let run = tempfile::tempdir().expect("run dir");
    let mut agent = Agent::start_env(
        run,
        &["--config".into(), path.display().to_string()],
        &[
            ("KUBECONFIG", kubeconfig.display().to_string()),
            ("K8S_NODE_NAME", "node-a".to_string()),
        ],
    );
    agent.wait_healthy(health, Duration::from_secs(60));
    assert!(
        api.requests()
            .iter()
            .any(|r| r.contains("spec.nodeName%3Dnode-a") || r.contains("spec.nodeName=node-a")),
        "the pod watch is node-scoped: {:?}",
        api.requests()
    );

    // A span from the pod's address.
    let client = reqwest::blocking::Client::builder()
        .local_address(POD_IP.parse::<std::net::IpAddr>().expect("ip"))
        .build()
        .expect("client");
    let body = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
        "scopeSpans": [{"spans": [{"traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174", "name": "GET /cart", "kind": 2,
            "startTimeUnixNano": "1764489600000000000", "endTimeUnixNano": "1764489600012000000"}]}]
    }]});
    let resp = client
        .post(format!("http://127.0.0.1:{http}/v1/traces"))
        .json(&body)
        .send()
        .expect("send spans");
    assert!(resp.status().is_success(), "{}", resp.status());

    let (span_res, log_res) = vigil_tests::eventually(
        Duration::from_secs(30),
        "a span and a log record in the output",
        || {
            let lines = read_json_lines(&out);
            let span = lines
                .iter()
                .flat_map(|l| l["resourceSpans"].as_array().cloned().unwrap_or_default())
                .map(|rs| rs["resource"]["attributes"].clone())
                .next();
            let log = lines
                .iter()
                .flat_map(|l| l["resourceLogs"].as_array().cloned().unwrap_or_default())
                .map(|rl| rl["resource"]["attributes"].clone())
                .next();
            span.zip(log)
        },
    );
    for (what, attrs) in [("span", &span_res), ("log", &log_res)] {
        assert_eq!(
            str_attr(attrs, "k8s.pod.name").as_deref(),
            Some(pod_name),
            "{what}: {attrs}"
        );
        assert_eq!(
            str_attr(attrs, "k8s.pod.uid"),
            Some(pod_uid.clone()),
            "{what}"
        );
        assert_eq!(
            str_attr(attrs, "k8s.namespace.name").as_deref(),
            Some("shop"),
            "{what}"
        );
        assert_eq!(
            str_attr(attrs, "k8s.node.name").as_deref(),
            Some("node-a"),
            "{what}"
        );
        assert_eq!(
            str_attr(attrs, "k8s.deployment.name").as_deref(),
            Some("checkout"),
            "{what}"
        );
        assert_eq!(
            str_attr(attrs, "app").as_deref(),
            Some("checkout"),
            "{what}"
        );
        assert_eq!(
            str_attr(attrs, "team").as_deref(),
            Some("payments"),
            "{what}"
        );
    }
    assert_eq!(str_attr(&span_res, "k8s.pod.ip").as_deref(), Some(POD_IP));
    assert_eq!(
        str_attr(&span_res, "service.name").as_deref(),
        Some("checkout")
    );
    agent.stop_ok(Duration::from_secs(20));
}
