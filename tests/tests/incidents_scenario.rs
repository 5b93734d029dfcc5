//! A simulated fault end to end through the real binaries: `vigil-loadgen scenario` (6 services, seed 5)
//! sends linked spans and per-service gauges over OTLP/gRPC to vigil, where `servicegraph` learns the
//! topology, `anomalydetection` turns the gauges, the spans' RED windows and servicegraph's edge metrics
//! into `vigil.anomaly` events (the data flow of `config-examples/incidents.yaml`) and `correlation`
//! groups them. Exactly one incident must come out, with the faulty service as its top root-cause candidate.

use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use vigil_tests::{
    bin, event_records, eventually, file_exporter_and_health, free_port, otlp_receiver,
    read_json_lines, Agent,
};

fn attr(r: &Value, key: &str) -> Option<Value> {
    vigil_tests::otlp_attr(&r["attributes"], key).cloned()
}

#[test]
fn a_scenario_fault_yields_one_incident_naming_the_faulty_service() {
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("incidents.jsonl");
    let cfg = format!(
        r#"
{recv}connectors:
  servicegraph:
  anomalydetection:
processors:
  correlation:
{frame}  pipelines:
    traces:
      receivers: [otlp]
      exporters: [servicegraph, anomalydetection]
    metrics/graph:
      receivers: [servicegraph]
      exporters: [file]
    metrics:
      receivers: [otlp, servicegraph]
      exporters: [anomalydetection]
    logs:
      receivers: [anomalydetection]
      processors: [correlation]
      exporters: [file]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#,
        frame = file_exporter_and_health(&out, health),
        recv = otlp_receiver("grpc", grpc),
    );
    let mut agent = Agent::with_config_in(dir, &cfg);
    agent.wait_healthy(health, Duration::from_secs(60));

    let sent = Command::new(bin("vigil-loadgen"))
        .args(["scenario", "--otlp-endpoint", &format!("127.0.0.1:{grpc}")])
        .args(["--services", "6", "--seed", "5"])
        .output()
        .expect("run vigil-loadgen scenario");
    assert!(
        sent.status.success(),
        "loadgen failed: {}\nvigil log:\n{}",
        String::from_utf8_lossy(&sent.stderr),
        agent.logs()
    );
    let report: Value = serde_json::from_slice(&sent.stdout).expect("loadgen prints JSON");
    let faulty = report["faulty"]
        .as_str()
        .expect("faulty service")
        .to_string();

    // Stopping the agent resolves every open incident, so the file then holds the whole story.
    agent.stop_ok(Duration::from_secs(30));
    let records = eventually(Duration::from_secs(10), "incident records", || {
        let r = event_records(&read_json_lines(&out), "vigil.incident");
        (!r.is_empty()).then_some(r)
    });
    let ids: std::collections::BTreeSet<String> = records
        .iter()
        .filter_map(|r| attr(r, "vigil.incident.id"))
        .filter_map(|v| v["stringValue"].as_str().map(String::from))
        .collect();
    assert_eq!(ids.len(), 1, "exactly one incident: {records:#?}");
    let last = records.last().expect("a record");
    assert_eq!(
        attr(last, "vigil.incident.status")
            .and_then(|v| v["stringValue"].as_str().map(String::from)),
        Some("resolved".to_string())
    );
    assert_eq!(
        attr(last, "vigil.incident.root_cause")
            .and_then(|v| v["stringValue"].as_str().map(String::from)),
        Some(faulty.clone()),
        "top candidate should be {faulty}: {last:#}"
    );
}
