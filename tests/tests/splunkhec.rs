//! End-to-end test of the `splunk_hec` receiver and the `ack` extension in the `vigil` binary.
//! Splunk's forwarders cannot run here, so HEC clients are played by plain HTTP requests in the
//! shapes Splunk's HEC documentation gives (JSON events, metric events, raw text, the indexer
//! acknowledgement exchange on a channel), and by vigil's own `splunk_hec` exporter, which sends
//! what an OTLP client gave vigil back into the receiver (a round trip through HEC). What the `file`
//! exporter wrote is checked against what was sent.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use vigil_tests::{eventually, free_port, read_json_lines, Agent};

const CHANNEL: &str = "5e1c2a7b-9d3f-4e8a-b6c1-0f2d4a6b8c9e";

/// Text of an OTLP/JSON value.
fn text(v: &Value) -> String {
    for k in ["stringValue", "doubleValue", "intValue", "boolValue"] {
        if let Some(x) = v.get(k) {
            return x
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| x.to_string());
        }
    }
    v.to_string()
}

fn kvs(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|kv| {
            (
                kv["key"].as_str().unwrap_or("").to_string(),
                text(&kv["value"]),
            )
        })
        .collect()
}

/// Every log record as (resource attributes, body, record attributes).
type Rec = (BTreeMap<String, String>, String, BTreeMap<String, String>);

fn records(lines: &[Value]) -> Vec<Rec> {
    let mut out = Vec::new();
    for l in lines {
        for rl in l["resourceLogs"].as_array().into_iter().flatten() {
            let res = kvs(&rl["resource"]["attributes"]);
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    out.push((res.clone(), text(&r["body"]), kvs(&r["attributes"])));
                }
            }
        }
    }
    out
}

/// A gauge point: resource attributes, name, value, point attributes.
type Point = (
    BTreeMap<String, String>,
    String,
    f64,
    BTreeMap<String, String>,
);

/// Every gauge point.
fn points(lines: &[Value]) -> Vec<Point> {
    let mut out = Vec::new();
    for l in lines {
        for rm in l["resourceMetrics"].as_array().into_iter().flatten() {
            let res = kvs(&rm["resource"]["attributes"]);
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    for p in m["gauge"]["dataPoints"].as_array().into_iter().flatten() {
                        let v = p["asDouble"]
                            .as_f64()
                            .or_else(|| p["asInt"].as_str().and_then(|s| s.parse().ok()))
                            .unwrap_or(f64::NAN);
                        out.push((
                            res.clone(),
                            m["name"].as_str().unwrap_or("").to_string(),
                            v,
                            kvs(&p["attributes"]),
                        ));
                    }
                }
            }
        }
    }
    out
}

fn post(url: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut req = reqwest::blocking::Client::new()
        .post(url)
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().expect("post");
    (resp.status().as_u16(), resp.text().unwrap_or_default())
}

#[test]
fn hec_events_metrics_raw_acks_and_a_round_trip_from_the_exporter() {
    let hec = free_port();
    let otlp = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let logs_out = dir.path().join("logs.jsonl");
    let metrics_out = dir.path().join("metrics.jsonl");
    let yaml = format!(
        r#"
extensions:
  ack:
    max_number_of_partition: 16
receivers:
  splunkhec:
    endpoint: 127.0.0.1:{hec}
    access_token_passthrough: true
    ack:
      extension: ack
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
exporters:
  file/logs:
    path: {logs}
  file/metrics:
    path: {metrics}
  splunk_hec:
    endpoint: http://127.0.0.1:{hec}/services/collector
    token: exporter-token
service:
  extensions: [ack]
  pipelines:
    logs/in:
      receivers: [otlp]
      exporters: [splunk_hec]
    metrics/in:
      receivers: [otlp]
      exporters: [splunk_hec]
    logs/out:
      receivers: [splunkhec]
      exporters: [file/logs]
    metrics/out:
      receivers: [splunkhec]
      exporters: [file/metrics]
  telemetry:
    metrics:
      level: none
"#,
        logs = logs_out.display(),
        metrics = metrics_out.display()
    );
    let mut agent = Agent::with_config(&yaml);
    agent.wait_tcp(&[hec, otlp], Duration::from_secs(60));
    let base = format!("http://127.0.0.1:{hec}");

    let (s, body) = reqwest::blocking::get(format!("{base}/services/collector/health"))
        .map(|r| (r.status().as_u16(), r.text().unwrap_or_default()))
        .expect("health");
    assert_eq!(s, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["code"], 17);

    // A JSON event and a metric event in one body, on a channel: the answer carries an ackId.
    let events = r#"{"time": 1700000000, "host": "app-7", "source": "billing", "sourcetype": "_json", "index": "main", "event": {"message": "invoice sent", "amount": 12.5}, "fields": {"env": "prod"}}
{"time": 1700000000, "host": "app-7", "event": "metric", "fields": {"metric_name:queue.length": 42, "queue": "invoices"}}"#;
    let auth = [
        ("Authorization", "Splunk client-token"),
        ("X-Splunk-Request-Channel", CHANNEL),
    ];
    let (s, body) = post(&format!("{base}/services/collector/event"), &auth, events);
    assert_eq!(s, 200, "{body}");
    let ack_id = serde_json::from_str::<Value>(&body).unwrap()["ackId"]
        .as_u64()
        .expect("an ackId");
    let (s, body) = post(
        &format!("{base}/services/collector/ack"),
        &auth,
        &json!({"acks": [ack_id]}).to_string(),
    );
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"acks": {ack_id.to_string(): true}})
    );

    // Raw text: two lines, metadata in the query.
    let (s, _) = post(
        &format!("{base}/services/collector/raw?host=edge-1&sourcetype=syslog"),
        &[("Authorization", "Splunk client-token")],
        "Dec 6 10:00:00 edge-1 sshd[1]: accepted\nDec 6 10:00:01 edge-1 sshd[1]: closed\n",
    );
    assert_eq!(s, 200);

    // A round trip: OTLP in, vigil's splunk_hec exporter out, into the receiver again.
    let otlp_logs = json!({"resourceLogs": [{"resource": {"attributes": [
        {"key": "host.name", "value": {"stringValue": "rt-host"}}]},
        "scopeLogs": [{"logRecords": [{"timeUnixNano": "1700000000000000000",
            "body": {"stringValue": "round trip"},
            "attributes": [{"key": "k", "value": {"stringValue": "v"}}]}]}]}]});
    let otlp_metrics = json!({"resourceMetrics": [{"resource": {"attributes": [
        {"key": "host.name", "value": {"stringValue": "rt-host"}}]},
        "scopeMetrics": [{"metrics": [{"name": "rt.gauge", "gauge": {"dataPoints": [
            {"timeUnixNano": "1700000000000000000", "asDouble": 5.5,
             "attributes": [{"key": "dim", "value": {"stringValue": "a"}}]}]}}]}]}]});
    for (path, body) in [("logs", &otlp_logs), ("metrics", &otlp_metrics)] {
        let r = reqwest::blocking::Client::new()
            .post(format!("http://127.0.0.1:{otlp}/v1/{path}"))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .expect("otlp post");
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }

    let recs = eventually(Duration::from_secs(30), "all log records", || {
        let r = records(&read_json_lines(&logs_out));
        (r.len() >= 4).then_some(r)
    });
    let by_body = |b: &str| {
        recs.iter()
            .find(|r| r.1.contains(b))
            .unwrap_or_else(|| panic!("no record with {b:?} in {recs:?}"))
    };
    let ev = by_body("invoice sent");
    assert_eq!(ev.0["host.name"], "app-7");
    assert_eq!(ev.0["com.splunk.source"], "billing");
    assert_eq!(ev.0["com.splunk.index"], "main");
    assert_eq!(ev.0["com.splunk.hec.access_token"], "client-token");
    assert_eq!(ev.2["env"], "prod");
    let raw = by_body("accepted");
    assert_eq!(raw.0["host.name"], "edge-1");
    assert_eq!(raw.0["com.splunk.sourcetype"], "syslog");
    assert!(by_body("closed").1.ends_with("closed"));
    let rt = by_body("round trip");
    assert_eq!(rt.1, "round trip");
    assert_eq!(rt.0["host.name"], "rt-host");
    assert_eq!(rt.0["com.splunk.hec.access_token"], "exporter-token");
    assert_eq!(rt.2["k"], "v");

    let pts = eventually(Duration::from_secs(30), "both gauges", || {
        let p = points(&read_json_lines(&metrics_out));
        (p.len() >= 2).then_some(p)
    });
    let q = pts
        .iter()
        .find(|p| p.1 == "queue.length")
        .expect("queue.length");
    assert_eq!(q.2, 42.0);
    assert_eq!(q.3["queue"], "invoices");
    assert_eq!(q.0["host.name"], "app-7");
    let g = pts.iter().find(|p| p.1 == "rt.gauge").expect("rt.gauge");
    assert_eq!(g.2, 5.5);
    assert_eq!(g.3["dim"], "a");
    assert_eq!(g.0["host.name"], "rt-host");
    agent.stop_ok(Duration::from_secs(30));
}
