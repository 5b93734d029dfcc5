//! The OpenTelemetry Python SDK sends traces, metrics and logs over gRPC and over HTTP to vigil
//! (`otlp` → `batch` → `otlp` exporter), which forwards them to a second vigil (`otlp` → `file`). What
//! arrived is compared with what the SDK sent: names, ids, attributes and counts, nothing lost or
//! duplicated.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use vigil_tests::{
    eventually, free_port, health_check_and_service, otlp_file_backend, otlp_receiver_grpc_http,
    python, python_script_json, read_json_lines, Agent, FileBackend,
};

struct Pair {
    _front: Agent,
    back: FileBackend,
    grpc: u16,
    http: u16,
}

fn start_pair(front_exporter: &str) -> Pair {
    let back = otlp_file_backend(&["traces", "metrics", "logs"], "received.jsonl");
    let (back_grpc, back_http) = (back.grpc, back.http);
    let (grpc, http, health) = (free_port(), free_port(), free_port());
    let exporter = match front_exporter {
        "otlp" => {
            format!("otlp:\n    endpoint: 127.0.0.1:{back_grpc}\n    tls:\n      insecure: true")
        }
        _ => format!("otlphttp:\n    endpoint: http://127.0.0.1:{back_http}"),
    };
    let front_cfg = format!(
        r#"
{recv}processors:
  batch:
    timeout: 100ms
exporters:
  {exporter}
{health_ext}  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [{front_exporter}]}}
    metrics: {{receivers: [otlp], processors: [batch], exporters: [{front_exporter}]}}
    logs: {{receivers: [otlp], processors: [batch], exporters: [{front_exporter}]}}
  telemetry:
    metrics:
      level: none
"#,
        recv = otlp_receiver_grpc_http(grpc, http, ""),
        health_ext = health_check_and_service(health),
    );
    let mut front = Agent::with_config(&front_cfg);
    front.wait_healthy(health, Duration::from_secs(30));
    Pair {
        _front: front,
        back,
        grpc,
        http,
    }
}

fn run_sdk(protocol: &str, endpoint: &str, run: &str) -> Value {
    python_script_json(
        &python(),
        "sdk_send.py",
        &["--protocol", protocol, "--endpoint", endpoint, "--run", run],
    )
}

fn attr<'a>(attrs: &'a Value, key: &str) -> Option<&'a Value> {
    vigil_tests::otlp_attr(attrs, key)
}

fn attr_str(attrs: &Value, key: &str) -> Option<String> {
    attr(attrs, key).and_then(|v| v["stringValue"].as_str().map(str::to_string))
}

/// Spans, log bodies and metric points of one run, as they arrived.
#[derive(Default, Debug)]
struct Arrived {
    spans: Vec<(String, String, String)>,
    logs: Vec<(String, String)>,
    counter: BTreeMap<String, f64>,
    hist: Option<(u64, f64)>,
}

fn arrived(lines: &[Value], run: &str) -> Arrived {
    let mut a = Arrived::default();
    for l in lines {
        for rs in l["resourceSpans"].as_array().into_iter().flatten() {
            if attr_str(&rs["resource"]["attributes"], "test.run").as_deref() != Some(run) {
                continue;
            }
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    assert_eq!(attr_str(&s["attributes"], "test.run").as_deref(), Some(run));
                    a.spans.push((
                        s["traceId"].as_str().unwrap_or_default().to_lowercase(),
                        s["spanId"].as_str().unwrap_or_default().to_lowercase(),
                        s["name"].as_str().unwrap_or_default().to_string(),
                    ));
                }
            }
        }
        for rl in l["resourceLogs"].as_array().into_iter().flatten() {
            if attr_str(&rl["resource"]["attributes"], "test.run").as_deref() != Some(run) {
                continue;
            }
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    a.logs.push((
                        r["body"]["stringValue"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        r["severityText"].as_str().unwrap_or_default().to_string(),
                    ));
                }
            }
        }
        for rm in l["resourceMetrics"].as_array().into_iter().flatten() {
            if attr_str(&rm["resource"]["attributes"], "test.run").as_deref() != Some(run) {
                continue;
            }
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    if m["name"] == "sdk.requests" {
                        for dp in m["sum"]["dataPoints"].as_array().into_iter().flatten() {
                            let route = attr_str(&dp["attributes"], "route").unwrap_or_default();
                            let v = dp["asInt"]
                                .as_str()
                                .and_then(|s| s.parse::<f64>().ok())
                                .or_else(|| dp["asInt"].as_f64())
                                .or_else(|| dp["asDouble"].as_f64())
                                .unwrap_or(f64::NAN);
                            a.counter.insert(route, v);
                        }
                        assert_eq!(m["sum"]["isMonotonic"], true, "{m}");
                    }
                    if m["name"] == "sdk.latency" {
                        for dp in m["histogram"]["dataPoints"]
                            .as_array()
                            .into_iter()
                            .flatten()
                        {
                            let count = dp["count"]
                                .as_str()
                                .and_then(|s| s.parse().ok())
                                .or_else(|| dp["count"].as_u64())
                                .unwrap_or(0);
                            a.hist = Some((count, dp["sum"].as_f64().unwrap_or(f64::NAN)));
                        }
                    }
                }
            }
        }
    }
    a
}

fn check_round_trip(protocol: &str, front_exporter: &str) {
    let pair = start_pair(front_exporter);
    let run = format!("{protocol}-{front_exporter}-{}", std::process::id());
    let endpoint = match protocol {
        "grpc" => format!("http://127.0.0.1:{}", pair.grpc),
        _ => format!("http://127.0.0.1:{}", pair.http),
    };
    let sent = run_sdk(protocol, &endpoint, &run);
    let sent_spans: BTreeSet<(String, String, String)> = sent["spans"]
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
    let sent_logs: Vec<String> = sent["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| l.as_str().unwrap_or_default().to_string())
        .collect();

    let got = eventually(
        Duration::from_secs(30),
        "all SDK data at the backend",
        || {
            let a = arrived(&read_json_lines(&pair.back.out), &run);
            (a.spans.len() >= sent_spans.len()
                && a.logs.len() >= sent_logs.len()
                && a.hist.is_some())
            .then_some(a)
        },
    );
    // Let any duplicate that is still in flight arrive before counting.
    std::thread::sleep(Duration::from_millis(500));
    let got = {
        let again = arrived(&read_json_lines(&pair.back.out), &run);
        if again.spans.len() >= got.spans.len() {
            again
        } else {
            got
        }
    };

    assert_eq!(
        got.spans.len(),
        sent_spans.len(),
        "spans lost or duplicated"
    );
    let got_spans: BTreeSet<_> = got.spans.iter().cloned().collect();
    assert_eq!(got_spans, sent_spans);

    assert_eq!(got.logs.len(), sent_logs.len(), "logs lost or duplicated");
    let bodies: BTreeSet<_> = got.logs.iter().map(|(b, _)| b.clone()).collect();
    assert_eq!(bodies, sent_logs.iter().cloned().collect::<BTreeSet<_>>());
    let warn = got
        .logs
        .iter()
        .find(|(b, _)| b.ends_with("log line 0"))
        .expect("line 0");
    assert_eq!(warn.1, "WARN", "severity text of a warning");

    assert_eq!(got.counter.get("/r0"), Some(&5.0), "{:?}", got.counter);
    assert_eq!(got.counter.get("/r1"), Some(&5.0), "{:?}", got.counter);
    assert_eq!(got.hist, Some((10, 450.0)));
}

#[test]
fn sdk_over_grpc_through_otlp_exporter() {
    check_round_trip("grpc", "otlp");
}

#[test]
fn sdk_over_http_through_otlp_exporter() {
    check_round_trip("http", "otlp");
}

#[test]
fn sdk_over_http_through_otlphttp_exporter() {
    check_round_trip("http", "otlphttp");
}
