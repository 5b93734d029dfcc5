//! End-to-end test of the `statsd` receiver: the real StatsD client (pystatsd, the `statsd` package in
//! the test venv) sends counters, gauges and timers over TCP to the `vigil` binary, and what the
//! `file` exporter writes when vigil stops (the interval's last flush) holds the aggregated values.

use std::collections::HashMap;
use std::time::Duration;
use vigil_tests::{free_port, python, python_script_json, read_json_lines, Agent};

#[test]
fn pystatsd_over_tcp_reaches_the_file_exporter_aggregated() {
    let python = python();
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let yaml = format!(
        r#"
receivers:
  statsd:
    endpoint: 127.0.0.1:{port}
    transport: tcp
    enable_metric_type: true
    timer_histogram_mapping:
      - statsd_type: timer
        observer_type: summary
        summary:
          percentiles: [50]
exporters:
  file:
    path: {out}
service:
  pipelines:
    metrics:
      receivers: [statsd]
      exporters: [file]
  telemetry:
    metrics:
      level: none
"#,
        out = out.display()
    );
    let mut agent = Agent::with_config(&yaml);
    agent.wait_tcp(&[port], Duration::from_secs(30));
    let sent = python_script_json(
        &python,
        "statsd_client.py",
        &["127.0.0.1", &port.to_string(), "tcp"],
    );
    assert_eq!(sent["sent"], true);
    // The default 60s interval has not passed: everything arrives in the flush at shutdown.
    std::thread::sleep(Duration::from_millis(300));
    agent.stop_ok(Duration::from_secs(20));
    let mut got: HashMap<String, serde_json::Value> = HashMap::new();
    for l in read_json_lines(&out) {
        for rm in l["resourceMetrics"].as_array().into_iter().flatten() {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                assert_eq!(sm["scope"]["name"], "otelcol/statsdreceiver");
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    got.insert(m["name"].as_str().unwrap_or("").to_string(), m.clone());
                }
            }
        }
    }
    let int = |v: &serde_json::Value| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(i64::MIN)
    };
    let sum_point = |n: &str| got[n]["sum"]["dataPoints"][0].clone();
    assert_eq!(int(&sum_point("hits")["asInt"]), 8, "{:?}", got.get("hits"));
    assert_eq!(int(&sum_point("sampled")["asInt"]), 12);
    assert_eq!(int(&sum_point("hits.down")["asInt"]), -2);
    // Delta temporality (1) and otelcol's metric_type attribute.
    assert_eq!(got["hits"]["sum"]["aggregationTemporality"], 1);
    assert_eq!(
        sum_point("hits")["attributes"][0]["value"]["stringValue"],
        "counter"
    );
    assert_eq!(got["temp"]["gauge"]["dataPoints"][0]["asDouble"], 22.0);
    let lat = &got["lat"]["summary"]["dataPoints"][0];
    assert_eq!(int(&lat["count"]), 3);
    assert_eq!(lat["sum"], 600.0);
    assert_eq!(lat["quantileValues"][0]["value"], 200.0);
}
