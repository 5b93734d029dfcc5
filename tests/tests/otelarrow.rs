//! The `otelarrow` pair: the OpenTelemetry Python SDK sends over OTLP/gRPC to a vigil whose
//! `otelarrow` exporter (Arrow settings at otelcol's defaults) forwards to a second vigil's
//! `otel_arrow` receiver (otelcol's snake_case spelling), which writes to a file; and the SDK also
//! sends straight into that receiver. Every span and log record must arrive once, and the exporter
//! must say at start that it sends standard OTLP, the Arrow encoding not being built.

use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;
use vigil_tests::{
    eventually, file_exporter_and_health, free_port, health_check_and_service, otlp_attr_str,
    otlp_receiver, python, python_script_json, read_json_lines, Agent,
};

type Spans = BTreeSet<(String, String, String)>;

fn sent(run: &str, endpoint: &str) -> (Spans, BTreeSet<String>) {
    let sent = python_script_json(
        &python(),
        "sdk_send.py",
        &["--protocol", "grpc", "--endpoint", endpoint, "--run", run],
    );
    let spans = sent["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .map(|s| {
            (
                s["trace_id"].as_str().unwrap_or_default().to_string(),
                s["span_id"].as_str().unwrap_or_default().to_string(),
                s["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let logs = sent["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| l.as_str().unwrap_or_default().to_string())
        .collect();
    (spans, logs)
}

/// The spans (as a list, to see duplicates) and log bodies of one run in the backend's file.
fn arrived(lines: &[Value], run: &str) -> (Vec<(String, String, String)>, Vec<String>) {
    let (mut spans, mut logs) = (Vec::new(), Vec::new());
    for l in lines {
        for rs in l["resourceSpans"].as_array().into_iter().flatten() {
            if otlp_attr_str(&rs["resource"]["attributes"], "test.run") != run {
                continue;
            }
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    spans.push((
                        s["traceId"].as_str().unwrap_or_default().to_lowercase(),
                        s["spanId"].as_str().unwrap_or_default().to_lowercase(),
                        s["name"].as_str().unwrap_or_default().to_string(),
                    ));
                }
            }
        }
        for rl in l["resourceLogs"].as_array().into_iter().flatten() {
            if otlp_attr_str(&rl["resource"]["attributes"], "test.run") != run {
                continue;
            }
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    logs.push(
                        r["body"]["stringValue"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
            }
        }
    }
    (spans, logs)
}

fn check(out: &std::path::Path, run: &str, spans: &Spans, logs: &BTreeSet<String>) {
    let (got_spans, got_logs) =
        eventually(Duration::from_secs(30), "the run at the backend", || {
            let (s, l) = arrived(&read_json_lines(out), run);
            (s.len() >= spans.len() && l.len() >= logs.len()).then_some((s, l))
        });
    assert_eq!(
        got_spans.len(),
        spans.len(),
        "{run}: spans lost or duplicated"
    );
    assert_eq!(&got_spans.into_iter().collect::<Spans>(), spans, "{run}");
    assert_eq!(got_logs.len(), logs.len(), "{run}: logs lost or duplicated");
    assert_eq!(
        &got_logs.into_iter().collect::<BTreeSet<_>>(),
        logs,
        "{run}"
    );
}

#[test]
fn sdk_through_otelarrow_exporter_into_otelarrow_receiver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("received.jsonl");
    let (back_grpc, back_health) = (free_port(), free_port());
    let back_cfg = format!(
        "receivers:
  otel_arrow:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{back_grpc}
{}  pipelines:
    traces: {{receivers: [otel_arrow], exporters: [file]}}
    metrics: {{receivers: [otel_arrow], exporters: [file]}}
    logs: {{receivers: [otel_arrow], exporters: [file]}}
  telemetry:
    metrics:
      level: none
",
        file_exporter_and_health(&out, back_health)
    );
    let mut back = Agent::with_config(&back_cfg);
    back.wait_healthy(back_health, Duration::from_secs(30));

    let (front_grpc, front_health) = (free_port(), free_port());
    let front_cfg = format!(
        "{}processors:
  batch:
    timeout: 100ms
exporters:
  otelarrow:
    endpoint: 127.0.0.1:{back_grpc}
    tls:
      insecure: true
{}  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [otelarrow]}}
    metrics: {{receivers: [otlp], processors: [batch], exporters: [otelarrow]}}
    logs: {{receivers: [otlp], processors: [batch], exporters: [otelarrow]}}
  telemetry:
    metrics:
      level: none
",
        otlp_receiver("grpc", front_grpc),
        health_check_and_service(front_health)
    );
    let mut front = Agent::with_config(&front_cfg);
    front.wait_healthy(front_health, Duration::from_secs(30));
    front.wait_log("OTel-Arrow is not built", Duration::from_secs(10));

    let pid = std::process::id();
    let via = format!("via-exporter-{pid}");
    let (spans, logs) = sent(&via, &format!("http://127.0.0.1:{front_grpc}"));
    check(&out, &via, &spans, &logs);

    let direct = format!("direct-{pid}");
    let (spans, logs) = sent(&direct, &format!("http://127.0.0.1:{back_grpc}"));
    check(&out, &direct, &spans, &logs);
}
