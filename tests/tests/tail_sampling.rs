//! `tail_sampling` end to end with the real OpenTelemetry Python SDK: it sends traces over OTLP/gRPC
//! whose child span goes out in one request and whose root span in a later one
//! (tests/python/tail_sampling_send.py). vigil (`otlp` → `tailsampling`, the old spelling, with
//! policies keeping errors and slow traces → `file`) must write every span of the error and slow
//! traces, from both requests, and nothing of the fast ones; its own metrics count the decisions.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use vigil_tests::{
    eventually, file_exporter_and_health, free_port, metric_sum, otlp_receiver, python,
    python_script_json, read_json_lines, Agent,
};

#[test]
fn keeps_every_span_of_error_and_slow_traces_across_batches() {
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("sampled.jsonl");
    let cfg = format!(
        r#"
{recv}processors:
  tailsampling:
    decision_wait: 2s
    num_traces: 1000
    policies:
      - name: errors
        type: status_code
        status_code: {{status_codes: [ERROR]}}
      - name: slow
        type: latency
        latency: {{threshold_ms: 300}}
{frame}  pipelines:
    traces: {{receivers: [otlp], processors: [tailsampling], exporters: [file]}}
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#,
        recv = otlp_receiver("grpc", grpc),
        frame = file_exporter_and_health(&out, health),
    );
    let mut agent = Agent::with_config_in(dir, &cfg);
    agent.wait_healthy(health, Duration::from_secs(30));

    let sent = python_script_json(
        &python(),
        "tail_sampling_send.py",
        &["--endpoint", &format!("http://127.0.0.1:{grpc}")],
    );
    let spans_of = |kind: &str| -> BTreeMap<String, BTreeSet<String>> {
        sent[kind]
            .as_array()
            .expect("kind list")
            .iter()
            .map(|t| {
                let names = t["spans"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect();
                (
                    t["trace_id"].as_str().unwrap_or_default().to_string(),
                    names,
                )
            })
            .collect()
    };
    let mut want = spans_of("error");
    want.extend(spans_of("slow"));
    let fast = spans_of("fast");
    assert_eq!(want.len(), 2);
    assert!(!fast.is_empty());

    let got = eventually(Duration::from_secs(20), "both kept traces written", || {
        let got = arrived(&read_json_lines(&out));
        let complete = want
            .iter()
            .all(|(t, names)| got.get(t).is_some_and(|g| g.is_superset(names)));
        complete.then_some(got)
    });
    // Decisions for the fast traces were made in the same ticks; give a straggler a moment anyway.
    std::thread::sleep(Duration::from_millis(500));
    let got = {
        let again = arrived(&read_json_lines(&out));
        assert!(again.len() >= got.len());
        again
    };
    for (t, names) in &want {
        assert_eq!(got.get(t), Some(names), "trace {t}: every span, each once");
    }
    for t in fast.keys() {
        assert!(!got.contains_key(t), "fast trace {t} was not to be kept");
    }
    assert_eq!(got.len(), want.len());

    let sampled = eventually(Duration::from_secs(10), "decision counters", || {
        metric_sum(
            metrics,
            "otelcol_processor_tail_sampling_global_count_traces_sampled",
            "decision=\"sampled\"",
        )
        .filter(|v| *v >= 2.0)
    });
    assert_eq!(sampled, 2.0);
    let not_sampled = metric_sum(
        metrics,
        "otelcol_processor_tail_sampling_global_count_traces_sampled",
        "decision=\"not_sampled\"",
    );
    assert_eq!(not_sampled, Some(fast.len() as f64));
    agent.stop_ok(Duration::from_secs(10));
}

/// Span names by trace id (hex) in what the file exporter wrote; a span written twice would show
/// as a count mismatch in the caller's set comparison, so duplicates are kept apart.
fn arrived(lines: &[Value]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for l in lines {
        for rs in l["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let t = s["traceId"].as_str().unwrap_or_default().to_lowercase();
                    let name = s["name"].as_str().unwrap_or_default().to_string();
                    assert!(
                        seen.insert((t.clone(), name.clone())),
                        "span {name} of trace {t} written twice"
                    );
                    out.entry(t).or_default().insert(name);
                }
            }
        }
    }
    out
}
