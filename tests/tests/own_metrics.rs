//! vigil's own metrics pushed over OTLP with a `periodic` reader in
//! `service::telemetry::metrics::readers`, as otelcol's declarative config sets it: one vigil (the
//! "agent") takes three spans from the OpenTelemetry Python SDK and pushes its own metrics every
//! 300 ms, over `http/protobuf` and, in a second agent, `grpc`, to another vigil (the "backend":
//! `otlp` receiver → `file`). The backend's file must hold the agent's
//! `otelcol_receiver_accepted_spans` for its otlp receiver equal to 3, as a cumulative monotonic
//! sum, and `otelcol_process_uptime`, under the agent's resource.

use std::path::Path;
use std::time::Duration;
use vigil_tests::{
    debug_exporter_and_health, eventually, free_port, otlp_attr, otlp_file_backend, otlp_receiver,
    read_json_lines, sdk_auth_export, Agent,
};

fn agent_config(protocol: &str, endpoint: &str, otlp_http: u16, health: u16, run: &str) -> String {
    format!(
        r#"
{recv}{frame}  pipelines:
    traces: {{receivers: [otlp], exporters: [debug]}}
  telemetry:
    resource:
      test.run: {run}
    metrics:
      readers:
        - periodic:
            interval: 300
            timeout: 5000
            exporter:
              otlp:
                endpoint: {endpoint}
                insecure: true
                protocol: {protocol}
                temporality_preference: cumulative
"#,
        recv = otlp_receiver("http", otlp_http),
        frame = debug_exporter_and_health(health),
    )
}

/// The latest value of `name` at the backend from the agent whose resource has `test.run` = `run`
/// (summed over data points whose attributes include every `want`), and whether it is a
/// cumulative monotonic sum.
fn latest(out: &Path, run: &str, name: &str, want: &[(&str, &str)]) -> Option<(f64, bool)> {
    let mut found = None;
    for l in read_json_lines(out) {
        for rm in l["resourceMetrics"].as_array().into_iter().flatten() {
            let res = &rm["resource"]["attributes"];
            if otlp_attr(res, "test.run").and_then(|v| v["stringValue"].as_str()) != Some(run) {
                continue;
            }
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    if m["name"] != name {
                        continue;
                    }
                    let sum = &m["sum"];
                    let cumulative_monotonic = sum["isMonotonic"] == true
                        && (sum["aggregationTemporality"] == 2
                            || sum["aggregationTemporality"]
                                == "AGGREGATION_TEMPORALITY_CUMULATIVE");
                    let mut total = 0.0;
                    for dp in sum["dataPoints"].as_array().into_iter().flatten() {
                        let ok = want.iter().all(|(k, v)| {
                            otlp_attr(&dp["attributes"], k).and_then(|x| x["stringValue"].as_str())
                                == Some(*v)
                        });
                        if ok {
                            total += dp["asDouble"].as_f64().unwrap_or_else(|| {
                                dp["asInt"]
                                    .as_str()
                                    .and_then(|s| s.parse().ok())
                                    .or_else(|| dp["asInt"].as_f64())
                                    .unwrap_or(0.0)
                            });
                        }
                    }
                    found = Some((total, cumulative_monotonic));
                }
            }
        }
    }
    found
}

#[test]
fn own_metrics_reach_an_otlp_backend_over_http_and_grpc() {
    let backend = otlp_file_backend(&["metrics"], "own_metrics.jsonl");
    let (grpc, http, out) = (backend.grpc, backend.http, &backend.out);
    for (protocol, endpoint) in [
        ("http/protobuf", format!("http://127.0.0.1:{http}")),
        ("grpc", format!("http://127.0.0.1:{grpc}")),
    ] {
        let run = protocol.replace('/', "-");
        let (otlp_http, health) = (free_port(), free_port());
        let mut agent =
            Agent::with_config(&agent_config(protocol, &endpoint, otlp_http, health, &run));
        agent.wait_healthy(health, Duration::from_secs(30));
        assert_eq!(
            sdk_auth_export(
                "http",
                &format!("http://127.0.0.1:{otlp_http}"),
                &run,
                &[],
                &[]
            ),
            "SUCCESS"
        );
        let want = [("receiver", "otlp"), ("transport", "http")];
        let (spans, cumulative) = eventually(
            Duration::from_secs(15),
            "the agent's accepted-spans count of 3 at the backend",
            || {
                latest(out, &run, "otelcol_receiver_accepted_spans", &want)
                    .filter(|(v, _)| *v >= 3.0)
            },
        );
        assert_eq!(spans, 3.0, "{protocol}: the SDK sent 3 spans");
        assert!(
            cumulative,
            "{protocol}: a counter is a cumulative monotonic sum"
        );
        assert!(
            latest(out, &run, "otelcol_process_uptime", &[]).is_some(),
            "{protocol}: otelcol_process_uptime did not arrive"
        );
        agent.stop_ok(Duration::from_secs(15));
    }
}

#[test]
fn failed_exports_are_counted_and_logged_once_a_minute() {
    // Nothing listens on `dead`; a pull reader next to the periodic one shows the counter.
    let (dead, pull, health) = (free_port(), free_port(), free_port());
    let cfg = format!(
        r#"
{recv}{frame}  pipelines:
    traces: {{receivers: [otlp], exporters: [debug]}}
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {pull}
        - periodic:
            interval: 100
            timeout: 1000
            exporter:
              otlp:
                endpoint: http://127.0.0.1:{dead}
                protocol: http/protobuf
"#,
        recv = otlp_receiver("http", free_port()),
        frame = debug_exporter_and_health(health),
    );
    let mut agent = Agent::with_config(&cfg);
    agent.wait_healthy(health, Duration::from_secs(30));
    let failures = eventually(
        Duration::from_secs(15),
        "three failed exports counted",
        || {
            vigil_tests::metric_sum(pull, "vigil_telemetry_metrics_export_failures", "")
                .filter(|n| *n >= 3.0)
        },
    );
    assert!(failures >= 3.0);
    let logged = agent.logs().matches("Own metrics export failed").count();
    assert_eq!(
        logged, 1,
        "{failures} failures must be logged once (at most once a minute)"
    );
    agent.stop_ok(Duration::from_secs(15));
}
