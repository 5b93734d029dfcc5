//! Elastic's `elasticapm` processor and connector (EDOT configs) on traces from the real OpenTelemetry
//! Python SDK (tests/python/elasticapm_send.py: per request a SERVER span with HTTP attributes, a
//! CLIENT database child, and on every fourth an exception and an ERROR status), wired as Elastic's
//! gateway config wires them: `traces: processors [elasticapm], exporters [.., elasticapm]` and
//! `metrics/aggregated: receivers [elasticapm]`, both with their empty default config.
//! - the spans that reach the file exporter carry the Elastic APM attributes derived from what the
//!   SDK says it sent (transaction vs span, type, result, outcome, durations, destination);
//! - the aggregated metrics the connector sends at shutdown (its intervals are 1m/10m/60m, so the
//!   test never waits for one) hold the counts and sums computed here from the same list;
//! - Elastic's published gateway config (../shared/compat, when present) validates unchanged.

use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;
use vigil_tests::{
    eventually, free_port, health_check_and_service, otlp_attr, otlp_attr_str as s, python,
    python_script_json, read_json_lines, Agent,
};

fn int(v: Option<&Value>) -> i64 {
    v.and_then(|v| {
        v.get("intValue").and_then(|i| {
            i.as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| i.as_i64())
        })
    })
    .unwrap_or(-1)
}

fn num(v: &Value) -> f64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_f64())
        .unwrap_or(f64::NAN)
}

#[test]
fn sdk_spans_are_enriched_and_aggregated_into_apm_metrics() {
    let (grpc, health) = (free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let (spans_out, metrics_out) = (
        dir.path().join("spans.jsonl"),
        dir.path().join("metrics.jsonl"),
    );
    let cfg = format!(
        "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  elasticapm: {{}}
connectors:
  elasticapm: {{}}
exporters:
  file/spans:
    path: {}
  file/metrics:
    path: {}
{}  telemetry:
    metrics:
      level: none
  pipelines:
    traces: {{receivers: [otlp], processors: [elasticapm], exporters: [file/spans, elasticapm]}}
    metrics/aggregated-otel-metrics: {{receivers: [elasticapm], exporters: [file/metrics]}}
",
        spans_out.display(),
        metrics_out.display(),
        health_check_and_service(health)
    );
    let mut agent = Agent::with_config(&cfg);
    agent.wait_healthy(health, Duration::from_secs(30));
    let run = format!("eapm-{grpc}");
    let sent = python_script_json(
        &python(),
        "elasticapm_send.py",
        &["--endpoint", &format!("127.0.0.1:{grpc}"), "--run", &run],
    );
    let requests = sent["requests"].as_array().expect("requests").clone();
    assert_eq!(requests.len(), 12);

    // 1. The enriched spans.
    let spans = eventually(Duration::from_secs(20), "24 spans written", || {
        let mut out = Vec::new();
        for l in read_json_lines(&spans_out) {
            for rs in l["resourceSpans"].as_array().into_iter().flatten() {
                let res = &rs["resource"]["attributes"];
                if s(res, "test.run") != run {
                    continue;
                }
                assert_eq!(s(res, "agent.name"), "opentelemetry/python");
                assert_eq!(s(res, "deployment.environment"), "qa");
                // The SDK sets its own service.instance.id; the processor only fills a missing one.
                assert!(!s(res, "service.instance.id").is_empty());
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    assert_eq!(
                        s(&ss["scope"]["attributes"], "service.framework.name"),
                        "vigil.elasticapm.test"
                    );
                    out.extend(ss["spans"].as_array().into_iter().flatten().cloned());
                }
            }
        }
        (out.len() == 24).then_some(out)
    });
    for r in &requests {
        let trace = r["trace_id"].as_str().unwrap_or_default();
        let failed = r["failed"].as_bool().unwrap_or(false);
        let root = spans
            .iter()
            .find(|sp| {
                sp["traceId"] == trace && sp["parentSpanId"].as_str().unwrap_or("").is_empty()
            })
            .expect("root span");
        let a = &root["attributes"];
        assert_eq!(s(a, "processor.event"), "transaction");
        assert_eq!(
            s(a, "transaction.name"),
            r["route"].as_str().unwrap_or_default()
        );
        assert_eq!(s(a, "transaction.type"), "request");
        assert_eq!(
            s(a, "transaction.id"),
            r["root_id"].as_str().unwrap_or_default()
        );
        assert_eq!(
            s(a, "transaction.result"),
            if failed { "HTTP 5xx" } else { "HTTP 2xx" }
        );
        assert_eq!(
            s(a, "event.outcome"),
            if failed { "failure" } else { "success" }
        );
        assert_eq!(
            int(otlp_attr(a, "transaction.duration.us")),
            r["server_us"].as_i64().unwrap_or(0)
        );
        if failed {
            let ev = &root["events"][0]["attributes"];
            assert_eq!(s(ev, "processor.event"), "error");
            assert_eq!(s(ev, "error.grouping_name"), "card declined");
            assert_eq!(s(ev, "error.grouping_key").len(), 32);
        }
        let db = spans
            .iter()
            .find(|sp| sp["traceId"] == trace && sp["name"] == "SELECT items")
            .expect("db span");
        let a = &db["attributes"];
        assert_eq!(s(a, "processor.event"), "span");
        assert_eq!(
            (s(a, "span.type"), s(a, "span.subtype")),
            ("db".into(), "postgresql".into())
        );
        assert_eq!(s(a, "service.target.name"), "shop");
        assert_eq!(s(a, "span.destination.service.resource"), "postgresql");
        assert_eq!(
            int(otlp_attr(a, "span.duration.us")),
            r["db_us"].as_i64().unwrap_or(0)
        );
    }

    // 2. The aggregates, sent when the connector stops.
    agent.stop_ok(Duration::from_secs(20));
    let lines = read_json_lines(&metrics_out);
    // Per interval: (metric, metricset, key) -> (count, sum)
    let mut got: BTreeMap<(String, String, String, String), (f64, f64)> = BTreeMap::new();
    for l in &lines {
        for rm in l["resourceMetrics"].as_array().into_iter().flatten() {
            let res = &rm["resource"]["attributes"];
            assert_eq!(s(res, "service.name"), "shop", "{rm}");
            assert_eq!(s(res, "agent.name"), "opentelemetry/python");
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    let name = m["name"].as_str().unwrap_or_default().to_string();
                    let (points, kind) = ["sum", "histogram", "exponentialHistogram"]
                        .iter()
                        .find_map(|k| m[k]["dataPoints"].as_array().map(|p| (p.clone(), *k)))
                        .expect("data points");
                    for p in points {
                        let a = &p["attributes"];
                        let key = (
                            name.clone(),
                            s(a, "metricset.interval"),
                            s(a, "metricset.name"),
                            format!("{}|{}", s(a, "transaction.name"), s(a, "event.outcome")),
                        );
                        assert_eq!(
                            s(a, "data_stream.dataset"),
                            format!("{}.{}", s(a, "metricset.name"), s(a, "metricset.interval"))
                        );
                        let v = if kind == "sum" {
                            (
                                1.0,
                                num(p.get("asInt").or(p.get("asDouble")).unwrap_or(&Value::Null)),
                            )
                        } else {
                            (num(&p["count"]), num(&p["sum"]))
                        };
                        let e = got.entry(key).or_insert((0.0, 0.0));
                        e.0 += v.0;
                        e.1 += v.1;
                    }
                }
            }
        }
    }
    for interval in ["1m", "10m", "60m"] {
        let g = |name: &str, set: &str, key: &str| {
            got.get(&(name.into(), interval.into(), set.into(), key.into()))
                .copied()
                .unwrap_or_else(|| panic!("{name} {set} {key} at {interval} missing: {got:?}"))
        };
        assert_eq!(g("service_summary", "service_summary", "|").1, 24.0);
        let server_total: f64 = requests
            .iter()
            .map(|r| r["server_us"].as_f64().unwrap_or(0.0))
            .sum();
        assert_eq!(
            g("transaction.duration.histogram", "service_transaction", "|"),
            (12.0, server_total)
        );
        assert_eq!(
            g("event.success_count", "service_transaction", "|"),
            (12.0, 9.0),
            "three of twelve requests failed"
        );
        for route in ["GET /cart", "POST /pay"] {
            for (outcome, failed) in [("success", false), ("failure", true)] {
                let mine: Vec<&Value> = requests
                    .iter()
                    .filter(|r| r["route"] == route && r["failed"].as_bool() == Some(failed))
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                let total: f64 = mine
                    .iter()
                    .map(|r| r["server_us"].as_f64().unwrap_or(0.0))
                    .sum();
                assert_eq!(
                    g(
                        "transaction.duration.summary",
                        "transaction",
                        &format!("{route}|{outcome}")
                    ),
                    (mine.len() as f64, total)
                );
            }
        }
        let db_total: f64 = requests
            .iter()
            .map(|r| r["db_us"].as_f64().unwrap_or(0.0))
            .sum();
        assert_eq!(
            g(
                "span.destination.service.response_time.sum.us",
                "service_destination",
                "|success"
            )
            .1,
            db_total
        );
        assert_eq!(
            g(
                "span.destination.service.response_time.count",
                "service_destination",
                "|success"
            )
            .1,
            12.0
        );
    }
}

#[test]
fn elastic_edot_gateway_config_validates_unchanged() {
    let corpus = vigil_tests::repo_root().join("../shared/compat");
    let file = corpus.join("configs/elastic__elastic-agent__edot-kube-stack-gateway.yaml");
    if !file.exists() {
        eprintln!("skipped: no {}", file.display());
        return;
    }
    let storage = tempfile::tempdir().expect("tempdir");
    let out = Command::new("bash")
        .arg("-c")
        .arg("source \"$1/env.sh\" && exec \"$2\" validate --config \"$3\"")
        .arg("bash")
        .arg(&corpus)
        .arg(vigil_tests::bin("vigil"))
        .arg(&file)
        .env("VIGIL_COMPAT_STORAGE", storage.path())
        .output()
        .expect("run vigil validate");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
