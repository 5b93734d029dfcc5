//! The `spanmetrics`, `otlpjson` and `count` connectors on data from the real OpenTelemetry Python SDK
//! (tests/python/span_metrics_send.py, spans with chosen durations, kinds and statuses, over
//! OTLP/gRPC).
//! - `span_metrics` (otelcol's new spelling): the calls and duration histograms that arrive are the
//!   ones computed here from what the SDK says it sent, bucket by bucket.
//! - `otlp_json`: vigil writes the SDK's spans as OTLP/JSON lines with the `file` exporter (as
//!   otelcol's does), `filelog` reads that file back, and the connector turns each line into spans
//!   again; the same spans arrive.
//! - `count`: the SDK's spans counted by an attribute (with a default) and by an OTTL condition.

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use vigil_tests::{
    eventually, free_port, health_check_and_service, otlp_attr_str as s, python,
    python_script_json, read_json_lines, Agent,
};

/// otelcol's default explicit buckets, in ms.
const BOUNDS_MS: [f64; 16] = [
    2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1000.0, 1400.0, 2000.0, 5000.0,
    10_000.0, 15_000.0,
];

fn int(v: &Value) -> u64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_u64())
        .unwrap_or(0)
}

type Key = (String, String, String, String);

#[derive(Debug, Default, PartialEq)]
struct Hist {
    count: u64,
    buckets: Vec<u64>,
}

/// The last flush's calls and duration points of one run, by (span name, kind, status, method).
fn flushed(lines: &[Value], run: &str) -> Option<(BTreeMap<Key, u64>, BTreeMap<Key, Hist>)> {
    let mut last = None;
    for l in lines {
        for rm in l["resourceMetrics"].as_array().into_iter().flatten() {
            let res = &rm["resource"]["attributes"];
            if s(res, "test.run") != run {
                continue;
            }
            assert_eq!(
                s(res, "service.name"),
                "checkout",
                "resource attributes kept"
            );
            let (mut calls, mut hists) = (BTreeMap::new(), BTreeMap::new());
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                assert_eq!(sm["scope"]["name"], "spanmetricsconnector");
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    let key = |a: &Value| {
                        assert_eq!(s(a, "service.name"), "checkout");
                        (
                            s(a, "span.name"),
                            s(a, "span.kind"),
                            s(a, "status.code"),
                            s(a, "http.method"),
                        )
                    };
                    match m["name"].as_str() {
                        Some("traces.span.metrics.calls") => {
                            assert_eq!(m["sum"]["isMonotonic"], true);
                            assert_eq!(m["sum"]["aggregationTemporality"], 2, "cumulative");
                            for p in m["sum"]["dataPoints"].as_array().into_iter().flatten() {
                                calls.insert(key(&p["attributes"]), int(&p["asInt"]));
                            }
                        }
                        Some("traces.span.metrics.duration") => {
                            assert_eq!(m["unit"], "ms");
                            for p in m["histogram"]["dataPoints"]
                                .as_array()
                                .into_iter()
                                .flatten()
                            {
                                let bounds: Vec<f64> = p["explicitBounds"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .filter_map(Value::as_f64)
                                    .collect();
                                assert_eq!(bounds, BOUNDS_MS);
                                hists.insert(
                                    key(&p["attributes"]),
                                    Hist {
                                        count: int(&p["count"]),
                                        buckets: p["bucketCounts"]
                                            .as_array()
                                            .into_iter()
                                            .flatten()
                                            .map(int)
                                            .collect(),
                                    },
                                );
                            }
                        }
                        other => panic!("unexpected metric {other:?}"),
                    }
                }
            }
            last = Some((calls, hists));
        }
    }
    last
}

#[test]
fn span_metrics_from_the_python_sdk_match_what_it_sent() {
    let (grpc, health) = (free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("metrics.jsonl");
    let cfg = format!(
        "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
connectors:
  span_metrics:
    dimensions:
      - name: http.method
    exclude_dimensions: [collector.instance.id]
    metrics_flush_interval: 300ms
exporters:
  file:
    path: {}
{}  telemetry:
    metrics:
      level: none
  pipelines:
    traces: {{receivers: [otlp], exporters: [span_metrics]}}
    metrics: {{receivers: [span_metrics], exporters: [file]}}
",
        out.display(),
        health_check_and_service(health)
    );
    let mut agent = Agent::with_config(&cfg);
    agent.wait_healthy(health, Duration::from_secs(30));
    let run = format!("sm-{grpc}");
    let sent = python_script_json(
        &python(),
        "span_metrics_send.py",
        &[
            "--endpoint",
            &format!("127.0.0.1:{grpc}"),
            "--run",
            &run,
            "--spans",
            "60",
        ],
    );
    let mut want_calls: BTreeMap<Key, u64> = BTreeMap::new();
    let mut want_hists: BTreeMap<Key, Hist> = BTreeMap::new();
    for sp in sent["spans"].as_array().expect("spans") {
        let key = (
            sp["name"].as_str().unwrap_or_default().to_string(),
            sp["kind"].as_str().unwrap_or_default().to_string(),
            sp["status"].as_str().unwrap_or_default().to_string(),
            sp["http.method"].as_str().unwrap_or_default().to_string(),
        );
        *want_calls.entry(key.clone()).or_default() += 1;
        let ms = sp["duration_ns"].as_u64().unwrap_or(0) as f64 / 1e6;
        let h = want_hists.entry(key).or_insert_with(|| Hist {
            count: 0,
            buckets: vec![0; BOUNDS_MS.len() + 1],
        });
        h.count += 1;
        // A bucket holds values up to and including its bound.
        h.buckets[BOUNDS_MS.iter().take_while(|b| **b < ms).count()] += 1;
    }
    assert!(want_calls.len() > 5, "the SDK script varies its spans");
    let (calls, hists) = eventually(Duration::from_secs(20), "all 60 spans counted", || {
        flushed(&read_json_lines(&out), &run).filter(|(c, _)| c.values().sum::<u64>() == 60)
    });
    assert_eq!(calls, want_calls);
    assert_eq!(hists, want_hists);
    agent.stop_ok(Duration::from_secs(20));
}

#[test]
fn otlp_json_lines_written_by_the_file_exporter_become_spans_again() {
    let (grpc, health) = (free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let (raw, out) = (dir.path().join("raw.jsonl"), dir.path().join("out.jsonl"));
    let cfg = format!(
        "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
  filelog:
    include: [{raw}]
    start_at: beginning
connectors:
  otlp_json:
exporters:
  file/raw:
    path: {raw}
  file/out:
    path: {out}
{}  telemetry:
    metrics:
      level: none
  pipelines:
    traces/in: {{receivers: [otlp], exporters: [file/raw]}}
    logs/raw: {{receivers: [filelog], exporters: [otlp_json]}}
    traces/out: {{receivers: [otlp_json], exporters: [file/out]}}
",
        health_check_and_service(health),
        raw = raw.display(),
        out = out.display(),
    );
    let mut agent = Agent::with_config(&cfg);
    agent.wait_healthy(health, Duration::from_secs(30));
    let run = format!("oj-{grpc}");
    let sent = python_script_json(
        &python(),
        "span_metrics_send.py",
        &[
            "--endpoint",
            &format!("127.0.0.1:{grpc}"),
            "--run",
            &run,
            "--spans",
            "25",
        ],
    );
    let mut want: Vec<String> = sent["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_string())
        .collect();
    want.sort();
    let got = eventually(
        Duration::from_secs(20),
        "25 spans back from the JSON lines",
        || {
            let mut names = Vec::new();
            for l in read_json_lines(&out) {
                for rs in l["resourceSpans"].as_array().into_iter().flatten() {
                    if s(&rs["resource"]["attributes"], "test.run") != run {
                        continue;
                    }
                    for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                        assert_eq!(ss["scope"]["name"], "vigil.spanmetrics.test");
                        for sp in ss["spans"].as_array().into_iter().flatten() {
                            assert_eq!(sp["traceId"].as_str().map(str::len), Some(32), "{sp}");
                            names.push(sp["name"].as_str().unwrap_or_default().to_string());
                        }
                    }
                }
            }
            names.sort();
            (names.len() >= 25).then_some(names)
        },
    );
    assert_eq!(got, want, "each span once, nothing else");
    agent.stop_ok(Duration::from_secs(20));
}

#[test]
fn count_counts_the_python_sdks_spans_by_attribute_and_condition() {
    let (grpc, health) = (free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("counts.jsonl");
    let cfg = format!(
        "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
connectors:
  count:
    spans:
      spans.by.method:
        attributes:
          - key: http.method
            default_value: none
      failed.spans:
        conditions: ['status.code == STATUS_CODE_ERROR']
exporters:
  file:
    path: {}
{}  telemetry:
    metrics:
      level: none
  pipelines:
    traces: {{receivers: [otlp], exporters: [count]}}
    metrics: {{receivers: [count], exporters: [file]}}
",
        out.display(),
        health_check_and_service(health)
    );
    let mut agent = Agent::with_config(&cfg);
    agent.wait_healthy(health, Duration::from_secs(30));
    let run = format!("count-{grpc}");
    let sent = python_script_json(
        &python(),
        "span_metrics_send.py",
        &[
            "--endpoint",
            &format!("127.0.0.1:{grpc}"),
            "--run",
            &run,
            "--spans",
            "40",
        ],
    );
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for sp in sent["spans"].as_array().expect("spans") {
        let method = sp["http.method"].as_str().unwrap_or("none");
        *want.entry(format!("spans.by.method {method}")).or_default() += 1;
        if sp["status"] == "STATUS_CODE_ERROR" {
            *want.entry("failed.spans".into()).or_default() += 1;
        }
    }
    let got = eventually(Duration::from_secs(20), "40 spans counted", || {
        let mut got: BTreeMap<String, u64> = BTreeMap::new();
        for l in read_json_lines(&out) {
            for rm in l["resourceMetrics"].as_array().into_iter().flatten() {
                if s(&rm["resource"]["attributes"], "test.run") != run {
                    continue;
                }
                for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                    for m in sm["metrics"].as_array().into_iter().flatten() {
                        assert_eq!(m["sum"]["aggregationTemporality"], 1, "delta");
                        for p in m["sum"]["dataPoints"].as_array().into_iter().flatten() {
                            let name = m["name"].as_str().unwrap_or_default();
                            let key = match name {
                                "spans.by.method" => {
                                    format!("{name} {}", s(&p["attributes"], "http.method"))
                                }
                                _ => name.to_string(),
                            };
                            *got.entry(key).or_default() += int(&p["asInt"]);
                        }
                    }
                }
            }
        }
        let total: u64 = got
            .iter()
            .filter(|(k, _)| k.starts_with("spans.by.method"))
            .map(|(_, v)| v)
            .sum();
        (total == 40).then_some(got)
    });
    assert_eq!(got, want);
    agent.stop_ok(Duration::from_secs(20));
}
