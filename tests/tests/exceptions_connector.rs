//! The `exceptions` connector on exceptions recorded by the real OpenTelemetry Python SDK
//! (tests/python/exceptions_send.py: exceptions raised, caught and recorded with
//! `span.record_exception`, sent over OTLP/gRPC). The `exceptions` sum written by the `file`
//! exporter counts each (span, type, message) as the SDK recorded it, with otelcol's attribute
//! names, and each exception is one ERROR log record with the span's ids and the SDK's stack trace.

use std::collections::BTreeMap;
use std::time::Duration;
use vigil_tests::{
    eventually, free_port, health_check_and_service, otlp_attr_str as s, python,
    python_script_json, read_json_lines, Agent,
};

type Key = (String, String, String);

#[test]
fn exceptions_from_the_python_sdk_become_counts_and_log_records() {
    let (grpc, health) = (free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let (metrics_out, logs_out) = (dir.path().join("m.jsonl"), dir.path().join("l.jsonl"));
    let cfg = format!(
        "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
connectors:
  exceptions:
exporters:
  file/m:
    path: {}
  file/l:
    path: {}
{}  telemetry:
    metrics:
      level: none
  pipelines:
    traces: {{receivers: [otlp], exporters: [exceptions]}}
    metrics: {{receivers: [exceptions], exporters: [file/m]}}
    logs: {{receivers: [exceptions], exporters: [file/l]}}
",
        metrics_out.display(),
        logs_out.display(),
        health_check_and_service(health)
    );
    let mut agent = Agent::with_config(&cfg);
    agent.wait_healthy(health, Duration::from_secs(30));
    let sent = python_script_json(
        &python(),
        "exceptions_send.py",
        &["--endpoint", &format!("127.0.0.1:{grpc}")],
    );
    let mut want: BTreeMap<Key, u64> = BTreeMap::new();
    for e in sent["exceptions"].as_array().expect("exceptions") {
        let k = (
            e["span"].as_str().unwrap_or_default().to_string(),
            e["type"].as_str().unwrap_or_default().to_string(),
            e["message"].as_str().unwrap_or_default().to_string(),
        );
        *want.entry(k).or_default() += 1;
    }
    assert_eq!(
        want.values().sum::<u64>(),
        4,
        "the script recorded 4: {sent}"
    );

    // The last flush holds every series with its cumulative count.
    let got = eventually(Duration::from_secs(20), "4 exceptions counted", || {
        let lines = read_json_lines(&metrics_out);
        let last = lines.last()?;
        let mut got: BTreeMap<Key, u64> = BTreeMap::new();
        for rm in last["resourceMetrics"].as_array().into_iter().flatten() {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                assert_eq!(sm["scope"]["name"], "exceptionsconnector");
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    assert_eq!(m["name"], "exceptions");
                    assert_eq!(m["sum"]["isMonotonic"], true);
                    assert_eq!(m["sum"]["aggregationTemporality"], 2, "cumulative");
                    for p in m["sum"]["dataPoints"].as_array().into_iter().flatten() {
                        let a = &p["attributes"];
                        assert_eq!(s(a, "service.name"), "cart");
                        assert_eq!(s(a, "span.kind"), "SPAN_KIND_SERVER");
                        assert_eq!(s(a, "status.code"), "STATUS_CODE_ERROR");
                        let n = p["asInt"]
                            .as_str()
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        got.insert(
                            (
                                s(a, "span.name"),
                                s(a, "exception.type"),
                                s(a, "exception.message"),
                            ),
                            n,
                        );
                    }
                }
            }
        }
        (got.values().sum::<u64>() == 4).then_some(got)
    });
    assert_eq!(got, want);

    let records = eventually(Duration::from_secs(20), "4 log records", || {
        let mut recs = Vec::new();
        for l in read_json_lines(&logs_out) {
            for rl in l["resourceLogs"].as_array().into_iter().flatten() {
                for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                    assert_eq!(
                        sl["scope"]["name"], "vigil.exceptions.test",
                        "the span's scope"
                    );
                    recs.extend(sl["logRecords"].as_array().into_iter().flatten().cloned());
                }
            }
        }
        (recs.len() == 4).then_some(recs)
    });
    let mut logged: BTreeMap<Key, u64> = BTreeMap::new();
    for r in &records {
        assert_eq!(r["severityNumber"], 17);
        assert_eq!(r["severityText"], "ERROR");
        assert_eq!(r["traceId"].as_str().map(str::len), Some(32), "{r}");
        assert_eq!(r["spanId"].as_str().map(str::len), Some(16), "{r}");
        let a = &r["attributes"];
        assert_eq!(s(a, "service.name"), "cart");
        assert!(
            !s(a, "http.method").is_empty(),
            "span attributes copied: {r}"
        );
        let stack = s(a, "exception.stacktrace");
        assert!(
            stack.contains("Traceback") && stack.contains("in fail"),
            "the SDK's stack trace: {stack}"
        );
        *logged
            .entry((
                s(a, "span.name"),
                s(a, "exception.type"),
                s(a, "exception.message"),
            ))
            .or_default() += 1;
    }
    assert_eq!(logged, want);
    agent.stop_ok(Duration::from_secs(20));
}
