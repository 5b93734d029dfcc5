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

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The memory benchmark behind BENCHMARKS.md's k8sattributes section (run by hand, release build:
/// `cargo build --release --bin vigil && VIGIL_TEST_BIN_DIR=target/release cargo test -p vigil-tests
/// --test k8s -- --ignored --nocapture`). The double serves a cluster of 100 nodes with 10k pods
/// (100 a node, three a ReplicaSet) and 300k ReplicaSets (ten old revisions a Deployment); vigil
/// runs as node-000's agent, enriches a span from each of its pods, and its RSS is read from /proc.
/// It prints figures and asserts only that the pods were found: memory is reported, not judged.
#[test]
#[ignore]
fn k8sattributes_memory_at_10k_pods_and_300k_replicasets() {
    let api = K8sApi::start();
    api.apply(Kind::Namespace, k8s_api::namespace("kube-system"));
    const NODES: usize = 100;
    const PODS: usize = 10_000;
    const REPLICASETS: usize = 300_000;
    let namespaces: Vec<String> = (0..50).map(|i| format!("team-{i:02}")).collect();
    for ns in &namespaces {
        api.apply(Kind::Namespace, k8s_api::namespace(ns));
    }
    // Deployment d has ReplicaSets d-r0 … d-r9; r9 is the live one and owns three pods.
    let deployments = REPLICASETS / 10;
    api.preload(
        Kind::ReplicaSet,
        (0..REPLICASETS).map(|i| {
            let (d, r) = (i / 10, i % 10);
            let ns = &namespaces[d % namespaces.len()];
            k8s_api::replicaset(ns, &format!("svc-{d:05}-r{r}"), &format!("svc-{d:05}"))
        }),
    );
    let mut ips = Vec::new();
    api.preload(
        Kind::Pod,
        (0..PODS).map(|i| {
            let d = (i / 3) % deployments;
            let ns = &namespaces[d % namespaces.len()];
            let node = format!("node-{:03}", i % NODES);
            let ip = format!("10.{}.{}.{}", 64 + i / 65536, (i / 256) % 256, i % 256);
            if i % NODES == 0 {
                ips.push(ip.clone());
            }
            let rs = format!("svc-{d:05}-r9");
            k8s_api::pod(
                ns,
                &format!("{rs}-{i:05}"),
                &node,
                &ip,
                Owner::ReplicaSet(&rs),
            )
        }),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = api.kubeconfig(dir.path());
    let run = |name: &str, processors: &str, node_filter: bool| {
        let (http, health) = (free_port(), free_port());
        let out = dir.path().join(format!("{name}.json"));
        let filter = if node_filter {
            "    filter:\n      node_from_env_var: K8S_NODE_NAME\n"
        } else {
            ""
        };
        let cfg = format!(
            "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
processors:
  k8sattributes:
    auth_type: kubeConfig
    wait_for_metadata: true
    wait_for_metadata_timeout: 120s
{filter}    pod_association:
      - sources: [{{from: resource_attribute, name: k8s.pod.ip}}]
    extract:
      metadata: [k8s.pod.name, k8s.pod.uid, k8s.namespace.name, k8s.node.name, k8s.deployment.name, k8s.replicaset.name, k8s.pod.start_time]
      labels:
        - tag_name: app
          key: app.kubernetes.io/name
{exporter}  pipelines:
    traces:
      receivers: [otlp]
      processors: [{processors}]
      exporters: [file]
",
            exporter = vigil_tests::file_exporter_and_health(&out, health),
        );
        let path = vigil_tests::write_config(dir.path(), &format!("{name}.yaml"), &cfg);
        let mut agent = Agent::start_env(
            tempfile::tempdir().expect("run dir"),
            &["--config".into(), path.display().to_string()],
            &[
                ("KUBECONFIG", kubeconfig.display().to_string()),
                ("K8S_NODE_NAME", "node-000".to_string()),
            ],
        );
        agent.wait_healthy(health, Duration::from_secs(300));
        let client = reqwest::blocking::Client::new();
        for ip in &ips {
            let body = serde_json::json!({"resourceSpans": [{
                "resource": {"attributes": [{"key": "k8s.pod.ip", "value": {"stringValue": ip}}]},
                "scopeSpans": [{"spans": [{"traceId": "5b8efff798038103d269b633813fc60c",
                    "spanId": "eee19b7ec3c1b174", "name": "op", "kind": 2,
                    "startTimeUnixNano": "1", "endTimeUnixNano": "2"}]}]}]});
            let r = client
                .post(format!("http://127.0.0.1:{http}/v1/traces"))
                .json(&body)
                .send()
                .expect("send");
            assert!(r.status().is_success());
        }
        let found = vigil_tests::eventually(Duration::from_secs(60), "spans written", || {
            let lines = read_json_lines(&out);
            let named = lines
                .iter()
                .flat_map(|l| l["resourceSpans"].as_array().cloned().unwrap_or_default())
                .filter(|rs| {
                    str_attr(&rs["resource"]["attributes"], "k8s.deployment.name").is_some()
                })
                .count();
            let total = lines
                .iter()
                .flat_map(|l| l["resourceSpans"].as_array().cloned().unwrap_or_default())
                .count();
            (total >= ips.len()).then_some(named)
        });
        let (rss, hwm) = rss_kib(agent.child.id());
        println!(
            "{name}: RSS {:.1} MiB, peak {:.1} MiB; {found}/{} spans named their Deployment",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0,
            ips.len()
        );
        agent.stop_ok(Duration::from_secs(30));
        found
    };
    let before = api.count_requests(|r| r.contains("replicasets"));
    run("baseline (no k8sattributes)", "", true);
    let named = run("k8sattributes, node-000's agent", "k8sattributes", true);
    let rs_reads = api.count_requests(|r| r.contains("replicasets")) - before;
    println!("ReplicaSet reads by the node agent: {rs_reads}");
    assert_eq!(
        named,
        ips.len(),
        "every pod of the node named its Deployment"
    );
    run(
        "k8sattributes, no node filter (every pod)",
        "k8sattributes",
        false,
    );
}
