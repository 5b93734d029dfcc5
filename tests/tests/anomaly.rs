//! The OpenTelemetry Python SDK sends a gauge with one injected spike (points with explicit
//! timestamps, so that 300 points of 10 s take a second) to vigil: `otlp` → `anomalydetection` → a logs
//! pipeline with the `file` exporter. Exactly one `vigil.anomaly` start event and one end event must
//! leave the agent, with the attributes `docs/events.md` documents; the connector's own counters must
//! show every point scored.

use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use vigil_tests::{
    eventually, file_exporter_and_health, free_port, otlp_receiver, python, read_json_lines,
    repo_root, Agent,
};

/// Every log record in OTLP/JSON lines, with its resource's attributes.
fn records(lines: &[Value]) -> Vec<(Value, Value)> {
    let mut out = Vec::new();
    for l in lines {
        for rl in l["resourceLogs"].as_array().into_iter().flatten() {
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    out.push((rl["resource"].clone(), r.clone()));
                }
            }
        }
    }
    out
}

/// An attribute's value from an OTLP/JSON attribute list, as JSON (string, number or bool).
fn attr(attrs: &Value, key: &str) -> Option<Value> {
    let v = vigil_tests::otlp_attr(attrs, key)?;
    for k in ["stringValue", "doubleValue", "boolValue"] {
        if !v[k].is_null() {
            return Some(v[k].clone());
        }
    }
    // OTLP/JSON writes 64-bit integers as strings.
    v["intValue"]
        .as_str()
        .and_then(|s| s.parse::<i64>().ok())
        .map(Value::from)
        .or_else(|| v["intValue"].as_i64().map(Value::from))
}

fn num(attrs: &Value, key: &str) -> f64 {
    attr(attrs, key)
        .and_then(|v| v.as_f64())
        .unwrap_or_else(|| panic!("{key} missing or not a number in {attrs}"))
}

fn text(attrs: &Value, key: &str) -> String {
    attr(attrs, key)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("{key} missing or not a string in {attrs}"))
}

#[test]
fn injected_spike_yields_one_start_and_one_end_event() {
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("events.jsonl");
    let cfg = format!(
        r#"
{recv}connectors:
  anomalydetection:
    # One injected spike is the whole anomaly here; by default an outlier needs a second point.
    confirm_points: 1
{frame}  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [anomalydetection]
    logs:
      receivers: [anomalydetection]
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

    let script = repo_root().join("tests/python/anomaly_gauge.py");
    let sent = Command::new(python())
        .arg(script)
        .args(["--endpoint", &format!("127.0.0.1:{grpc}")])
        .output()
        .expect("run the SDK script");
    assert!(
        sent.status.success(),
        "SDK script failed: {}\nvigil log:\n{}",
        String::from_utf8_lossy(&sent.stderr),
        agent.logs()
    );
    let sent: Value = serde_json::from_slice(&sent.stdout).expect("SDK script prints JSON");

    // Each export returns only after the connector has scored its points and handed any event to the
    // file exporter, so both events are there once the script is done; the wait covers file writes.
    eventually(Duration::from_secs(20), "two vigil.anomaly events", || {
        (records(&read_json_lines(&out)).len() >= 2).then_some(())
    });
    // The connector scored every point, as its own metrics say.
    let scrape = reqwest::blocking::get(format!("http://127.0.0.1:{metrics}/metrics"))
        .and_then(|r| r.text())
        .expect("scrape own metrics");
    let line = |name: &str| {
        scrape
            .lines()
            // The name and then its labels: `vigil_anomaly_events` is a prefix of
            // `vigil_anomaly_events_dropped`.
            .find(|l| {
                l.starts_with(&format!("{name}{{")) && l.contains("connector=\"anomalydetection\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} not in own metrics:\n{scrape}"))
    };
    assert_eq!(line("vigil_anomaly_points"), 300.0);
    assert_eq!(line("vigil_anomaly_events"), 2.0);
    assert_eq!(line("vigil_anomaly_series_live"), 1.0);

    // A graceful stop closes no further episode: the file holds exactly the two events.
    agent.stop_ok(Duration::from_secs(30));
    let recs = records(&read_json_lines(&out));
    assert_eq!(recs.len(), 2, "{recs:#?}");

    let spike_t = sent["spike_time_unix_nano"].as_u64().expect("spike time");
    let spike = sent["spike"].as_f64().expect("spike value");
    let states: Vec<String> = recs
        .iter()
        .map(|(_, r)| text(&r["attributes"], "vigil.anomaly.state"))
        .collect();
    assert_eq!(states, ["start", "end"]);
    for (resource, r) in &recs {
        let a = &r["attributes"];
        assert_eq!(r["eventName"], "vigil.anomaly", "{r}");
        assert_eq!(text(a, "event.name"), "vigil.anomaly");
        assert_eq!(text(a, "vigil.anomaly.signal"), "metrics");
        assert_eq!(text(a, "vigil.anomaly.metric"), "cpu.utilization");
        assert_eq!(
            text(a, "vigil.anomaly.series"),
            "cpu.utilization{cpu=0,service.name=anomaly-e2e,host.name=node-a}"
        );
        assert_eq!(text(a, "vigil.anomaly.detector"), "outlier");
        assert_eq!(text(a, "cpu"), "0");
        assert_eq!(num(a, "vigil.anomaly.observed"), spike);
        let score = num(a, "vigil.anomaly.score");
        assert!((0.5..=1.0).contains(&score), "score {score}");
        let (lower, upper) = (
            num(a, "vigil.anomaly.expected.lower"),
            num(a, "vigil.anomaly.expected.upper"),
        );
        assert!(
            lower < 0.2 && 0.2 < upper && upper < spike,
            "{lower}–{upper}"
        );
        let severity = if score >= 0.8 { "ERROR" } else { "WARN" };
        assert_eq!(r["severityText"], severity, "{r}");
        // The resource of the data travels with the event.
        assert_eq!(
            text(&resource["attributes"], "service.name"),
            "anomaly-e2e",
            "{resource}"
        );
        let body = r["body"]["stringValue"].as_str().unwrap_or_default();
        assert!(body.starts_with("cpu.utilization{cpu=0,"), "{body}");
    }
    let (start, end) = (&recs[0].1, &recs[1].1);
    // The start event is stamped with the spike's own time, not the wall clock.
    let start_t: u64 = start["timeUnixNano"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| start["timeUnixNano"].as_u64())
        .expect("timeUnixNano");
    assert_eq!(start_t / 1_000_000, spike_t / 1_000_000);
    assert!(attr(&start["attributes"], "vigil.anomaly.started_at").is_none());
    let ea = &end["attributes"];
    assert_eq!(text(ea, "vigil.anomaly.end_reason"), "quiet");
    assert!(num(ea, "vigil.anomaly.duration_s") >= 0.0);
    assert!(text(ea, "vigil.anomaly.started_at").ends_with('Z'));
    assert!(attr(&start["attributes"], "vigil.anomaly.duration_s").is_none());
}
