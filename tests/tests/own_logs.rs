//! vigil's own logs exported over OTLP with `service::telemetry::logs::processors`, as otelcol's
//! Helm chart and demo configure it: one vigil (the "agent") sends its own logs with a `batch`
//! processor and an `otlp` exporter, over `http/protobuf` and, in a second agent, `grpc`, to
//! another vigil (the "backend": `otlp` receiver → `file`). The backend's file must hold the
//! agent's startup and shutdown lines, with the agent's resource.

use std::time::Duration;
use vigil_tests::{
    debug_exporter_and_health, eventually, free_port, otlp_file_backend, otlp_receiver,
    read_json_lines, Agent,
};

fn agent_config(protocol: &str, endpoint: &str, health: u16) -> String {
    format!(
        r#"
{recv}{frame}  pipelines:
    logs: {{receivers: [otlp], exporters: [debug]}}
  telemetry:
    resource:
      k8s.node.name: node-7
    metrics:
      level: none
    logs:
      processors:
        - batch:
            schedule_delay: 200
            exporter:
              otlp:
                endpoint: {endpoint}
                insecure: true
                protocol: {protocol}
"#,
        recv = otlp_receiver("grpc", free_port()),
        frame = debug_exporter_and_health(health),
    )
}

/// (body, resource k8s.node.name, service.name, otelcol.component.id) of every record.
fn records(out: &std::path::Path) -> Vec<(String, String, String, String)> {
    let attr = |attrs: &serde_json::Value, k: &str| -> String {
        vigil_tests::otlp_attr(attrs, k)
            .and_then(|v| v["stringValue"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let mut v = Vec::new();
    for l in read_json_lines(out) {
        for rl in l["resourceLogs"].as_array().into_iter().flatten() {
            let res = &rl["resource"]["attributes"];
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    v.push((
                        r["body"]["stringValue"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        attr(res, "k8s.node.name"),
                        attr(res, "service.name"),
                        attr(&r["attributes"], "otelcol.component.id"),
                    ));
                }
            }
        }
    }
    v
}

#[test]
fn own_logs_reach_an_otlp_backend_over_http_and_grpc() {
    let backend = otlp_file_backend(&["logs"], "own_logs.jsonl");
    let (grpc, http, out) = (backend.grpc, backend.http, &backend.out);
    for (protocol, endpoint) in [
        ("http/protobuf", format!("http://127.0.0.1:{http}")),
        ("grpc", format!("http://127.0.0.1:{grpc}")),
    ] {
        let before = records(out).len();
        let health = free_port();
        let mut agent = Agent::with_config(&agent_config(protocol, &endpoint, health));
        agent.wait_healthy(health, Duration::from_secs(30));
        let got = eventually(
            Duration::from_secs(15),
            "the startup line at the backend",
            || {
                let r = records(out);
                r[before..]
                    .iter()
                    .any(|(body, ..)| body == "Starting vigil")
                    .then_some(r)
            },
        );
        let start = got[before..]
            .iter()
            .find(|(body, ..)| body == "Starting vigil")
            .expect("found above");
        assert_eq!(
            start.1, "node-7",
            "service::telemetry::resource is the resource"
        );
        assert_eq!(start.2, "vigil");
        agent.stop_ok(Duration::from_secs(15));
        // Lines logged while stopping still go out before the process ends.
        let after = records(out);
        assert!(
            after.len() > got.len(),
            "{protocol}: nothing was exported during shutdown: {:?}",
            &after[before..]
        );
    }
}
