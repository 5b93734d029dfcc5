//! Incidents end to end: `vigil.anomaly` events for two services on one node go into vigil over
//! OTLP/HTTP, through `correlation`, out to Debian's real `prometheus-alertmanager` and to a webhook
//! server in the test. One incident must open in Alertmanager with the mapped labels and leave its
//! active alerts when the incident resolves; the webhook must receive the documented payload.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vigil_tests::{eventually, free_port, health_check_and_service, otlp_receiver, Agent};

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

/// Kills Alertmanager when the test ends, pass or fail.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_alertmanager(dir: &Path, port: u16) -> Peer {
    assert!(
        Path::new(ALERTMANAGER).exists(),
        "{ALERTMANAGER} is missing: run scripts/test.sh, which installs the Debian package prometheus-alertmanager"
    );
    let cfg = dir.join("alertmanager.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
    )
    .expect("write alertmanager config");
    let data = dir.join("am-data");
    std::fs::create_dir_all(&data).expect("alertmanager data dir");
    let log = std::fs::File::create(dir.join("alertmanager.log")).expect("alertmanager log");
    let child = Command::new(ALERTMANAGER)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--storage.path={}", data.display()))
        .arg(format!("--config.file={}", cfg.display()))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus-alertmanager");
    let peer = Peer(child);
    eventually(Duration::from_secs(30), "alertmanager ready", || {
        reqwest::blocking::get(format!("http://127.0.0.1:{port}/-/ready"))
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    });
    peer
}

/// What the webhook server received: headers and JSON bodies.
type Received = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

async fn hook(State(got): State<Received>, headers: HeaderMap, body: Bytes) -> &'static str {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    got.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((headers, v));
    "ok"
}

fn start_webhook_server(rt: &tokio::runtime::Runtime) -> (Received, u16) {
    let got: Received = Arc::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(got.clone());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind webhook server");
    let port = listener.local_addr().expect("local addr").port();
    rt.spawn(async move { axum::serve(listener, app).await });
    (got, port)
}

fn s(k: &str, v: &str) -> Value {
    json!({"key": k, "value": {"stringValue": v}})
}

fn d(k: &str, v: f64) -> Value {
    json!({"key": k, "value": {"doubleValue": v}})
}

/// One `vigil.anomaly` record as OTLP/JSON, as the anomalydetection connector writes it.
fn anomaly(service: &str, state: &str, t_ns: u128, score: f64) -> Value {
    json!({
        "resource": {"attributes": [s("service.name", service), s("host.name", "node-1")]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": t_ns.to_string(),
            "eventName": "vigil.anomaly",
            "body": {"stringValue": format!("{service} latency above its band")},
            "attributes": [
                s("event.name", "vigil.anomaly"),
                s("vigil.anomaly.state", state),
                d("vigil.anomaly.score", score),
                s("vigil.anomaly.metric", "http.server.duration"),
                s("vigil.anomaly.series", &format!("http.server.duration{{service.name={service}}}")),
                d("vigil.anomaly.observed", 9.0),
                d("vigil.anomaly.expected", 1.0),
                d("vigil.anomaly.expected.lower", 0.0),
                d("vigil.anomaly.expected.upper", 2.0),
            ],
        }]}],
    })
}

fn post_logs(port: u16, resource_logs: Vec<Value>) {
    let resp = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/logs"))
        .json(&json!({"resourceLogs": resource_logs}))
        .send()
        .expect("post OTLP/JSON logs");
    assert!(
        resp.status().is_success(),
        "OTLP/HTTP answered {}",
        resp.status()
    );
}

fn alerts(port: u16) -> Vec<Value> {
    reqwest::blocking::get(format!("http://127.0.0.1:{port}/api/v2/alerts"))
        .and_then(|r| r.json::<Vec<Value>>())
        .unwrap_or_default()
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[test]
fn an_incident_opens_and_resolves_in_alertmanager_and_reaches_the_webhook() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (am, http, health, metrics) = (free_port(), free_port(), free_port(), free_port());
    let _alertmanager = start_alertmanager(dir.path(), am);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (received, hook_port) = start_webhook_server(&rt);

    let cfg = format!(
        r#"
{recv}processors:
  correlation:
    gap: 2s
    update_interval: 1s
exporters:
  alertmanager:
    endpoint: http://127.0.0.1:{am}
    labels:
      root_cause: vigil.incident.root_cause
      node: vigil.incident.resources
    static_labels:
      team: sre
  webhook:
    endpoint: http://127.0.0.1:{hook_port}/hook
    headers:
      X-Vigil-Token: s3cret
{health_frame}  pipelines:
    logs:
      receivers: [otlp]
      processors: [correlation]
      exporters: [alertmanager, webhook]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#,
        health_frame = health_check_and_service(health),
        recv = otlp_receiver("http", http),
    );
    let mut agent = Agent::with_config(&cfg);
    agent.wait_healthy(health, Duration::from_secs(60));

    // db-1 turns anomalous first and hardest; api follows on the same node.
    let t0 = now_ns();
    post_logs(
        http,
        vec![
            anomaly("db-1", "start", t0, 0.95),
            anomaly("api", "start", t0 + 1_000_000_000, 0.7),
        ],
    );

    let alert = eventually(
        Duration::from_secs(30),
        "the incident alert in alertmanager",
        || {
            alerts(am)
                .into_iter()
                .find(|a| a["labels"]["alertname"] == "VigilIncident")
        },
    );
    let labels = &alert["labels"];
    assert_eq!(labels["team"], "sre", "{alert}");
    assert_eq!(labels["root_cause"], "db-1", "{alert}");
    assert_eq!(labels["node"], "host.name=node-1", "{alert}");
    assert!(
        labels["incident_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{alert}"
    );
    assert_eq!(alert["status"]["state"], "active", "{alert}");
    assert!(
        alert["annotations"]["root_cause_candidates"]
            .as_str()
            .is_some_and(|c| c.starts_with("db-1: first anomaly at ")),
        "{alert}"
    );
    assert_eq!(alerts(am).len(), 1, "one incident, one alert");

    // Both episodes end; after the gap the incident resolves and the alert is no longer active.
    let t1 = now_ns();
    post_logs(
        http,
        vec![
            anomaly("db-1", "end", t1, 0.95),
            anomaly("api", "end", t1, 0.7),
        ],
    );
    eventually(Duration::from_secs(30), "the alert resolved", || {
        (!alerts(am)
            .iter()
            .any(|a| a["labels"]["incident_id"] == labels["incident_id"]))
        .then_some(())
    });

    // The webhook saw the open and the resolve, with the documented payload and the static header.
    let got = eventually(
        Duration::from_secs(30),
        "open and resolved at the webhook",
        || {
            let got = received.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let statuses: Vec<String> = got
                .iter()
                .flat_map(|(_, v)| v["events"].as_array().cloned().unwrap_or_default())
                .filter_map(|e| {
                    e["attributes"]["vigil.incident.status"]
                        .as_str()
                        .map(String::from)
                })
                .collect();
            (statuses.first().map(String::as_str) == Some("open")
                && statuses.last().map(String::as_str) == Some("resolved"))
            .then_some(got)
        },
    );
    let (headers, first) = &got[0];
    assert_eq!(
        headers.get("x-vigil-token").and_then(|v| v.to_str().ok()),
        Some("s3cret")
    );
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    assert_eq!(first["source"], "vigil");
    assert_eq!(first["version"], 1);
    assert_eq!(first["events"][0]["event"], "vigil.incident");
    let ev = got
        .iter()
        .flat_map(|(_, v)| v["events"].as_array().cloned().unwrap_or_default())
        .find(|e| e["attributes"]["vigil.incident.status"] == "resolved")
        .expect("a resolved event");
    assert!(
        first["text"]
            .as_str()
            .is_some_and(|t| t.contains("incident ") && t.contains("probably db-1")),
        "{first}"
    );
    assert!(
        ev["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{ev}"
    );
    assert_eq!(ev["severity"], "INFO", "{ev}");
    let a = &ev["attributes"];
    assert_eq!(a["vigil.incident.member_count"], 2, "{ev}");
    assert_eq!(a["vigil.incident.services"], json!(["api", "db-1"]), "{ev}");
    assert_eq!(
        a["vigil.incident.resources"],
        json!(["host.name=node-1"]),
        "{ev}"
    );
    assert_eq!(a["vigil.incident.id"], labels["incident_id"], "{ev}");
    // The raw anomaly events are not posted (events defaults to vigil.incident only).
    assert!(got
        .iter()
        .flat_map(|(_, v)| v["events"].as_array().cloned().unwrap_or_default())
        .all(|e| e["event"] == "vigil.incident"));
    drop(agent);
}
