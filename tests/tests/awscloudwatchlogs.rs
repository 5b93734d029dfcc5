//! The `awscloudwatchlogs` exporter against moto's `moto_server`, which speaks CloudWatch Logs' real
//! protocol, read back with boto3 (tests/python/aws_check.py). The logs come from the real
//! OpenTelemetry Python SDK (tests/python/cwlogs_send.py) over OTLP/HTTP.
//!
//! Faults on the way: moto is not running when the records arrive (the proxy in front of it
//! answers 502), the first `PutLogEvents` is answered 503 and the next is never answered (the
//! attempt times out after `request_timeout_seconds`). The queue and the retries keep the records
//! until moto is up; then every record is in the group the exporter created, once, in order.

#[path = "support/moto.rs"]
mod moto;

use moto::{flaky_proxy, moto};
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::time::Duration;
use vigil_tests::{eventually, free_port, python, python_script_json, Agent};

const RECORDS: usize = 120;

#[test]
fn sdk_logs_reach_cloudwatch_logs_once_and_in_order_through_faults() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (moto_port, proxy_port, http, health) =
        (free_port(), free_port(), free_port(), free_port());
    let t0 = std::time::Instant::now();
    let endpoint = format!("http://127.0.0.1:{moto_port}");
    let puts = flaky_proxy(
        &rt,
        proxy_port,
        moto_port,
        1,
        1,
        |p| {
            p.headers
                .get("x-amz-target")
                .is_some_and(|t| t == "Logs_20140328.PutLogEvents")
        },
        r#"{"__type":"ServiceUnavailableException","message":"try again"}"#,
    );

    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
exporters:
  aws_cloudwatch_logs:
    region: us-east-1
    endpoint: http://127.0.0.1:{proxy_port}
    log_group_name: /vigil/shop
    log_stream_name: orders
    log_retention: 7
    tags: {{team: shop}}
    request_timeout_seconds: 2
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 300ms
      max_elapsed_time: 0s
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  pipelines:
    logs: {{receivers: [otlp], exporters: [aws_cloudwatch_logs]}}
  telemetry:
    metrics:
      level: none
"
    );
    let cfg = vigil_tests::write_config(dir.path(), "config.yaml", &yaml);
    let env = vigil_tests::static_aws_env(dir.path());
    let mut agent = Agent::start_env(
        tempfile::tempdir().unwrap(),
        &["--config".into(), cfg.display().to_string()],
        &env,
    );
    agent.wait_healthy(health, Duration::from_secs(60));

    let py = python();
    let sent = python_script_json(
        &py,
        "cwlogs_send.py",
        &[
            "--endpoint",
            &format!("http://127.0.0.1:{http}"),
            "--logs",
            &RECORDS.to_string(),
            "--flushes",
            "3",
        ],
    );
    let sent: Vec<String> = sent["sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(sent.len(), RECORDS);
    println!("SDK done after {:?}", t0.elapsed());

    // The refused and the stalled call have happened, and a third found moto down (502).
    eventually(
        Duration::from_secs(60),
        "three PutLogEvents calls while moto is down",
        || (puts.load(Ordering::SeqCst) >= 3).then_some(()),
    );
    let _moto = moto(moto_port);
    println!("moto up after {:?}", t0.elapsed());

    let group = "/vigil/shop";
    let logs = eventually(
        Duration::from_secs(60),
        "every record in CloudWatch Logs",
        || {
            let r = python_script_json(
                &py,
                "aws_check.py",
                &[
                    "logs",
                    "--endpoint",
                    &endpoint,
                    "--group",
                    group,
                    "--stream",
                    "orders",
                ],
            );
            (r["events"].as_array().map_or(0, Vec::len) >= RECORDS).then_some(r)
        },
    );
    println!(
        "all records after {:?}, {} PutLogEvents calls through the proxy",
        t0.elapsed(),
        puts.load(Ordering::SeqCst)
    );
    // moto started empty: the group exists because the exporter created it, with its retention.
    assert_eq!(logs["groups"], serde_json::json!([group]));
    assert_eq!(logs["streams"], serde_json::json!(["orders"]));
    assert_eq!(
        logs["retention"], 7,
        "log_retention set on the group it created"
    );

    let events = logs["events"].as_array().unwrap();
    let bodies: Vec<&str> = events
        .iter()
        .map(|e| e["body"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(bodies, sent, "each record once, in the order sent");
    let seqs: Vec<i64> = events
        .iter()
        .map(|e| e["attributes"]["seq"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(seqs, (0..RECORDS as i64).collect::<Vec<_>>());
    let e: &Value = &events[0];
    assert_eq!(e["severity_text"], "INFO");
    assert_eq!(e["severity_number"], 9);
    assert_eq!(e["scope"]["name"], "shop.orders");
    assert_eq!(e["resource"]["service.name"], "shop");
}
