//! Incidents across a fleet, through the real binaries: one `vigil-loadgen scenario` topology (6
//! services, seed 5: frontend → svc-1 → svc-4, svc-4 failing half its requests from step 90) is cut
//! into three nodes, and each node's agent sees only its own services' spans and gauges
//! (`--only-services`; client spans name their callee in `peer.service`, as configured
//! instrumentation does). Each agent runs `servicegraph` + `anomalydetection` + `correlation` on its
//! own (config-examples/fleet-agent.yaml's data flow) and forwards its `vigil.anomaly` events and
//! edge metrics over OTLP to a gateway, whose `correlation` rebuilds the global graph from those
//! metrics and groups the events (config-examples/fleet-gateway.yaml). The gateway must report one
//! incident spanning the three nodes with the faulty service first; each agent alone reports only a
//! fragment of its own node.
//!
//! Data time is compressed (1300 s of scenario in about 8 s of wall time). `--step-wait` paces the
//! steps so that the agents' first edge metrics (store ttl 1 s, flush every 1 s) reach the gateway
//! well before the fault's anomalies do, as a graph learned over hours does in production.

use serde_json::Value;
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;
use vigil_tests::{
    bin, event_records, eventually, file_exporter_and_health, free_port, health_check_and_service,
    metric_sum, otlp_receiver, read_json_lines, Agent,
};

/// The nodes: which services each agent sees. The fault's path crosses all three.
const NODES: [&str; 3] = ["frontend", "svc-1,svc-2", "svc-3,svc-4,svc-5"];

fn attr_str(r: &Value, key: &str) -> Option<String> {
    vigil_tests::otlp_attr(&r["attributes"], key)
        .and_then(|v| v["stringValue"].as_str())
        .map(String::from)
}

fn services(r: &Value) -> BTreeSet<String> {
    vigil_tests::otlp_attr(&r["attributes"], "vigil.incident.services")
        .and_then(|v| v["arrayValue"]["values"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v["stringValue"].as_str().map(String::from))
        .collect()
}

/// One node's agent: detects and correlates locally, forwards findings and edges to the gateway.
fn agent_config(
    grpc: u16,
    health: u16,
    metrics: u16,
    gateway: u16,
    out: &std::path::Path,
) -> String {
    format!(
        r#"
{recv}connectors:
  servicegraph:
    store:
      ttl: 1s
    store_expiration_loop: 200ms
    metrics_flush_interval: 1s
  anomalydetection:
processors:
  correlation:
exporters:
  otlp/gateway:
    endpoint: 127.0.0.1:{gateway}
    tls:
      insecure: true
  file:
    path: {out}
{service}  pipelines:
    traces:
      receivers: [otlp]
      exporters: [servicegraph, anomalydetection]
    metrics:
      receivers: [otlp, servicegraph]
      exporters: [anomalydetection]
    metrics/edges:
      receivers: [servicegraph]
      exporters: [otlp/gateway]
    logs/findings:
      receivers: [anomalydetection]
      exporters: [otlp/gateway]
    logs/local:
      receivers: [anomalydetection]
      processors: [correlation]
      exporters: [file]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#,
        recv = otlp_receiver("grpc", grpc),
        out = out.display(),
        service = health_check_and_service(health),
    )
}

#[test]
fn a_fault_across_three_nodes_is_one_incident_on_the_gateway_and_fragments_on_the_agents() {
    // The gateway.
    let (gw_grpc, gw_health, gw_metrics) = (free_port(), free_port(), free_port());
    let gw_dir = tempfile::tempdir().expect("temp dir");
    let gw_out = gw_dir.path().join("incidents.jsonl");
    let gw_cfg = format!(
        r#"
{recv}processors:
  correlation:
{frame}  pipelines:
    metrics:
      receivers: [otlp]
      processors: [correlation]
      exporters: [file]
    logs:
      receivers: [otlp]
      processors: [correlation]
      exporters: [file]
  telemetry:
    metrics:
      address: 127.0.0.1:{gw_metrics}
"#,
        recv = otlp_receiver("grpc", gw_grpc),
        frame = file_exporter_and_health(&gw_out, gw_health),
    );
    let mut gateway = Agent::with_config_in(gw_dir, &gw_cfg);

    // The three agents.
    let mut agents = Vec::new();
    for _ in NODES {
        let (grpc, health, metrics) = (free_port(), free_port(), free_port());
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("local.jsonl");
        let agent = Agent::with_config_in(dir, &agent_config(grpc, health, metrics, gw_grpc, &out));
        agents.push((agent, grpc, health, out));
    }
    gateway.wait_healthy(gw_health, Duration::from_secs(60));
    for (agent, _, health, _) in agents.iter_mut() {
        agent.wait_healthy(*health, Duration::from_secs(60));
    }

    // The same scenario on every node, each agent fed only its node's services.
    let loadgens: Vec<_> = agents
        .iter()
        .zip(NODES)
        .map(|((_, grpc, _, _), only)| {
            Command::new(bin("vigil-loadgen"))
                .args(["scenario", "--otlp-endpoint", &format!("127.0.0.1:{grpc}")])
                .args(["--services", "6", "--seed", "5", "--peer-service"])
                .args(["--only-services", only, "--step-wait", "60ms"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run vigil-loadgen scenario")
        })
        .collect();
    let mut faulty = String::new();
    for lg in loadgens {
        let sent = lg.wait_with_output().expect("loadgen output");
        assert!(
            sent.status.success(),
            "loadgen failed: {}\ngateway log:\n{}",
            String::from_utf8_lossy(&sent.stderr),
            gateway.logs()
        );
        let report: Value = serde_json::from_slice(&sent.stdout).expect("loadgen prints JSON");
        faulty = report["faulty"].as_str().expect("faulty").to_string();
    }
    assert_eq!(
        faulty, "svc-4",
        "seed 5's topology changed: pick NODES again"
    );

    // The gateway learned the cross-node edges from the agents' metrics.
    let edges = metric_sum(gw_metrics, "vigil_correlation_graph_edges_recorded", "").unwrap_or(0.0);
    assert!(
        edges > 0.0,
        "the gateway recorded no edges; log:\n{}",
        gateway.logs()
    );

    // Agents first (their stop flushes the last findings and edges), then the gateway; each stop
    // resolves the open incidents, so the files then hold the whole story.
    let mut fragments = Vec::new();
    for ((mut agent, _, _, out), only) in agents.into_iter().zip(NODES) {
        agent.stop_ok(Duration::from_secs(30));
        let own: BTreeSet<String> = only.split(',').map(String::from).collect();
        for r in event_records(&read_json_lines(&out), "vigil.incident") {
            let s = services(&r);
            assert!(
                s.is_subset(&own),
                "an agent sees only its node ({own:?}), yet reported {s:?}"
            );
            fragments.push(s);
        }
    }
    gateway.stop_ok(Duration::from_secs(30));
    let records = eventually(Duration::from_secs(10), "gateway incident records", || {
        let r = event_records(&read_json_lines(&gw_out), "vigil.incident");
        (!r.is_empty()).then_some(r)
    });
    let ids: BTreeSet<String> = records
        .iter()
        .filter_map(|r| attr_str(r, "vigil.incident.id"))
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "exactly one incident on the gateway: {records:#?}"
    );
    let last = records.last().expect("a record");
    assert_eq!(
        attr_str(last, "vigil.incident.status").as_deref(),
        Some("resolved")
    );
    assert_eq!(
        attr_str(last, "vigil.incident.root_cause").as_deref(),
        Some(faulty.as_str()),
        "top candidate should be {faulty}: {last:#}"
    );
    let whole = services(last);
    for node in NODES {
        assert!(
            node.split(',').any(|s| whole.contains(s)),
            "the gateway's incident should span every node, none of {node}: {whole:?}"
        );
    }
    // The agents on their own saw pieces: none of them holds the whole incident.
    assert!(
        fragments.iter().all(|f| !whole.is_subset(f)),
        "an agent reported the whole incident on its own: {fragments:?}"
    );
    assert!(
        fragments.len() >= 2,
        "at least two nodes should report a fragment: {fragments:?}"
    );
}
