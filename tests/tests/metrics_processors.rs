//! otelcol-contrib's metrics processors on a real scrape: vigil's `prometheus` receiver scrapes a
//! real `prometheus-node-exporter`, and the same scrapes go out raw and through
//! - `metrics_transform` with New Relic's chart's pattern (a label on every metric, flipped on one
//!   chosen by an anchored regexp written with `$$`), an `aggregate_labels` sum over CPUs and an
//!   `insert` whose `new_name` uses `$1`, then `metrics_generation` (available memory in percent);
//! - `cumulative_to_delta` then `delta_to_cumulative`: back to a total from the first scrape;
//! - `cumulative_to_delta` then `delta_to_rate`: per-second rates;
//! - `interval` at 2 s over a 500 ms scrape.
//!
//! Each output is checked against the raw scrapes at the same timestamps.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use vigil_tests::{eventually, free_port, health_check_and_service, read_json_lines, Agent};

#[path = "support/node_exporter.rs"]
mod node_exporter;

/// One data point as the file exporter wrote it.
#[derive(Debug, Clone)]
struct Pt {
    name: String,
    kind: &'static str,
    temporality: i64,
    start: u64,
    time: u64,
    value: f64,
    attrs: BTreeMap<String, String>,
}

fn num(v: &Value) -> u64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_u64())
        .unwrap_or(0)
}

fn points(path: &Path) -> Vec<Pt> {
    let mut out = Vec::new();
    for l in read_json_lines(path) {
        for rm in l["resourceMetrics"].as_array().into_iter().flatten() {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    for kind in ["sum", "gauge"] {
                        let body = &m[kind];
                        for p in body["dataPoints"].as_array().into_iter().flatten() {
                            // Points without a value are the receiver's staleness markers.
                            let Some(value) = p["asDouble"]
                                .as_f64()
                                .or_else(|| p["asInt"].as_str().and_then(|s| s.parse().ok()))
                            else {
                                continue;
                            };
                            let attrs = p["attributes"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|a| {
                                    (
                                        a["key"].as_str().unwrap_or_default().to_string(),
                                        a["value"]["stringValue"]
                                            .as_str()
                                            .unwrap_or_default()
                                            .to_string(),
                                    )
                                })
                                .collect();
                            out.push(Pt {
                                name: m["name"].as_str().unwrap_or_default().to_string(),
                                kind,
                                temporality: body["aggregationTemporality"].as_i64().unwrap_or(0),
                                start: num(&p["startTimeUnixNano"]),
                                time: num(&p["timeUnixNano"]),
                                value,
                                attrs,
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

fn attr<'a>(p: &'a Pt, k: &str) -> Option<&'a str> {
    p.attrs.get(k).map(String::as_str)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn node_exporter_through_the_metrics_processors() {
    // Only what the test reads, so that a scrape stays small on a loaded CI machine.
    let node = node_exporter::start(&[
        "--collector.disable-defaults",
        "--collector.cpu",
        "--collector.meminfo",
        "--collector.loadavg",
    ]);
    let node_port = node.port;
    let dir = tempfile::tempdir().expect("tempdir");
    let health = free_port();
    let file = |n: &str| dir.path().join(format!("{n}.jsonl"));
    let cfg = format!(
        "receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: node
          scrape_interval: 500ms
          static_configs:
            - targets: ['127.0.0.1:{node_port}']
processors:
  metrics_transform:
    transforms:
      - include: .*
        match_type: regexp
        action: update
        operations:
          - action: add_label
            new_label: low.data.mode
            new_value: 'false'
      - include: ^node_cpu_seconds_total$$
        match_type: regexp
        action: update
        operations:
          - action: update_label
            label: low.data.mode
            value_actions:
              - value: 'false'
                new_value: 'true'
          - action: aggregate_labels
            label_set: [mode, low.data.mode]
            aggregation_type: sum
      - include: ^node_(load)(1)$$
        match_type: regexp
        action: insert
        new_name: system.$1.$2
  metrics_generation:
    rules:
      - name: memory.available.percent
        unit: '%'
        type: calculate
        metric1: node_memory_MemAvailable_bytes
        metric2: node_memory_MemTotal_bytes
        operation: percent
  cumulative_to_delta:
    include:
      match_type: strict
      metrics: [node_cpu_seconds_total]
  delta_to_cumulative:
  delta_to_rate:
    metrics: [node_cpu_seconds_total]
  interval:
    interval: 2s
exporters:
  file/raw: {{path: {raw}}}
  file/mt: {{path: {mt}}}
  file/cum: {{path: {cum}}}
  file/rate: {{path: {rate}}}
  file/iv: {{path: {iv}}}
{service}  telemetry:
    metrics:
      level: none
  pipelines:
    metrics/raw: {{receivers: [prometheus], exporters: [file/raw]}}
    metrics/mt: {{receivers: [prometheus], processors: [metrics_transform, metrics_generation], exporters: [file/mt]}}
    metrics/cum: {{receivers: [prometheus], processors: [cumulative_to_delta, delta_to_cumulative], exporters: [file/cum]}}
    metrics/rate: {{receivers: [prometheus], processors: [cumulative_to_delta, delta_to_rate], exporters: [file/rate]}}
    metrics/iv: {{receivers: [prometheus], processors: [interval], exporters: [file/iv]}}
",
        raw = file("raw").display(),
        mt = file("mt").display(),
        cum = file("cum").display(),
        rate = file("rate").display(),
        iv = file("iv").display(),
        service = health_check_and_service(health),
    );
    let mut agent = Agent::with_config(&cfg);
    agent.wait_healthy(health, Duration::from_secs(30));
    eventually(Duration::from_secs(30), "three interval sends", || {
        let n: std::collections::BTreeSet<u64> = points(&file("iv"))
            .iter()
            .filter(|p| p.name == "node_load1")
            .map(|p| p.time)
            .collect();
        (n.len() >= 3).then_some(())
    });
    agent.stop_ok(Duration::from_secs(20));

    let raw = points(&file("raw"));
    let mut by_name_time: std::collections::HashMap<(&str, u64), Vec<&Pt>> =
        std::collections::HashMap::new();
    for p in &raw {
        by_name_time
            .entry((p.name.as_str(), p.time))
            .or_default()
            .push(p);
    }
    let raw_at = |name: &str, time: u64, f: &dyn Fn(&Pt) -> bool| -> Vec<f64> {
        by_name_time
            .get(&(name, time))
            .into_iter()
            .flatten()
            .filter(|p| f(p))
            .map(|p| p.value)
            .collect()
    };

    // metrics_transform and metrics_generation.
    let mt = points(&file("mt"));
    assert!(!mt.is_empty(), "metrics_transform sent nothing");
    for p in &mt {
        // memory.available.percent is made after the labels, from points that carry them.
        let want = if p.name == "node_cpu_seconds_total" {
            "true"
        } else {
            "false"
        };
        assert_eq!(attr(p, "low.data.mode"), Some(want), "{p:?}");
    }
    let idle: Vec<&Pt> = mt
        .iter()
        .filter(|p| p.name == "node_cpu_seconds_total" && attr(p, "mode") == Some("idle"))
        .collect();
    assert!(!idle.is_empty(), "aggregated CPU idle time");
    for p in &idle {
        assert_eq!(
            p.attrs.len(),
            2,
            "only mode and low.data.mode are left: {p:?}"
        );
        let per_cpu = raw_at("node_cpu_seconds_total", p.time, &|r| {
            attr(r, "mode") == Some("idle")
        });
        assert!(!per_cpu.is_empty());
        let sum: f64 = per_cpu.iter().sum();
        assert!(
            close(p.value, sum),
            "idle {} != sum over CPUs {sum}",
            p.value
        );
    }
    let load: Vec<&Pt> = mt.iter().filter(|p| p.name == "system.load.1").collect();
    assert!(!load.is_empty(), "insert made system.load.1");
    for p in &load {
        assert_eq!(raw_at("node_load1", p.time, &|_| true), vec![p.value]);
    }
    assert!(
        mt.iter().any(|p| p.name == "node_load1"),
        "insert keeps the original"
    );
    let mem: Vec<&Pt> = mt
        .iter()
        .filter(|p| p.name == "memory.available.percent")
        .collect();
    assert!(
        !mem.is_empty(),
        "metrics_generation made memory.available.percent"
    );
    for p in &mem {
        let avail = raw_at("node_memory_MemAvailable_bytes", p.time, &|_| true)[0];
        let total = raw_at("node_memory_MemTotal_bytes", p.time, &|_| true)[0];
        assert!(close(p.value, avail / total * 100.0), "{p:?}");
        assert!(p.value > 0.0 && p.value <= 100.0);
    }

    // cumulative → delta → cumulative: the total since the first scrape.
    let is_cpu0_idle = |p: &Pt| attr(p, "cpu") == Some("0") && attr(p, "mode") == Some("idle");
    let raw_idle: BTreeMap<u64, f64> = raw
        .iter()
        .filter(|p| p.name == "node_cpu_seconds_total" && is_cpu0_idle(p))
        .map(|p| (p.time, p.value))
        .collect();
    let (&first, &first_value) = raw_idle.iter().next().expect("raw scrapes");
    let cum: Vec<Pt> = points(&file("cum"))
        .into_iter()
        .filter(|p| p.name == "node_cpu_seconds_total" && is_cpu0_idle(p))
        .collect();
    assert!(cum.len() >= 3, "re-accumulated points: {cum:?}");
    for p in &cum {
        assert_eq!(p.temporality, 2, "cumulative again");
        assert_eq!(p.start, first, "the total starts at the first scrape");
        let want = raw_idle[&p.time] - first_value;
        assert!((p.value - want).abs() < 1e-6, "{} != {want}", p.value);
    }

    // cumulative → delta → rate.
    let rates: Vec<Pt> = points(&file("rate"))
        .into_iter()
        .filter(|p| p.name == "node_cpu_seconds_total" && is_cpu0_idle(p))
        .collect();
    assert!(rates.len() >= 3, "rates: {rates:?}");
    for p in &rates {
        assert_eq!(p.kind, "gauge");
        let secs = (p.time - p.start) as f64 / 1e9;
        let want = (raw_idle[&p.time] - raw_idle[&p.start]) / secs;
        assert!((p.value - want).abs() < 1e-6, "{} != {want}", p.value);
    }

    // interval: one node_load1 point per send, sends about 2 s apart though scrapes are 0.5 s.
    let times: Vec<u64> = points(&file("iv"))
        .iter()
        .filter(|p| p.name == "node_load1")
        .map(|p| p.time)
        .collect();
    let raw_loads = raw.iter().filter(|p| p.name == "node_load1").count();
    assert!(
        times.len() * 2 < raw_loads,
        "interval sent {} of {raw_loads} scrapes",
        times.len()
    );
    assert!(times.windows(2).all(|w| w[1] > w[0]), "{times:?}");
    assert!(
        times.windows(2).any(|w| w[1] - w[0] >= 1_500_000_000),
        "sends about 2 s apart: {times:?}"
    );
}
