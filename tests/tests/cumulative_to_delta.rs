//! `cumulative_to_delta` (otelcol's new spelling of `cumulativetodelta`) on a real scrape: vigil's
//! `prometheus` receiver scrapes a real `prometheus-node-exporter`, and the same scrapes go out twice,
//! as they are and through the processor. Every delta that arrives must be the difference of two
//! consecutive raw values of its series, starting where the earlier one was taken; the first scrape
//! (a series first seen, whose start is its timestamp) sends nothing, as `initial_value: auto` says;
//! and a counter that `include` does not name stays cumulative.

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use vigil_tests::{
    eventually, free_port, health_check_and_service, otlp_attr, read_json_lines, Agent,
};

#[path = "support/node_exporter.rs"]
mod node_exporter;

fn num(v: &Value) -> Option<u64> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_u64())
}

/// (start, time, value, temporality) of every point of `name` whose attributes are `cpu` = "0" and
/// `mode` = "idle" (or of every point when `any`), in arrival order.
fn points(lines: &[Value], name: &str, any: bool) -> Vec<(u64, u64, f64, i64)> {
    let mut out = Vec::new();
    for l in lines {
        for rm in l["resourceMetrics"].as_array().into_iter().flatten() {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    if m["name"] != name {
                        continue;
                    }
                    let t = m["sum"]["aggregationTemporality"].as_i64().unwrap_or(0);
                    for p in m["sum"]["dataPoints"].as_array().into_iter().flatten() {
                        let a = &p["attributes"];
                        let is = |k: &str, v: &str| {
                            otlp_attr(a, k).and_then(|x| x["stringValue"].as_str()) == Some(v)
                        };
                        if any || (is("cpu", "0") && is("mode", "idle")) {
                            out.push((
                                num(&p["startTimeUnixNano"]).unwrap_or(0),
                                num(&p["timeUnixNano"]).unwrap_or(0),
                                p["asDouble"].as_f64().unwrap_or(f64::NAN),
                                t,
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn node_exporter_counters_become_deltas_of_consecutive_scrapes() {
    let node = node_exporter::start(&["--no-collector.textfile"]);
    let node_port = node.port;
    let dir = tempfile::tempdir().expect("tempdir");
    let health = free_port();
    let (raw, delta) = (dir.path().join("raw.jsonl"), dir.path().join("delta.jsonl"));
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
  cumulative_to_delta:
    include:
      match_type: regexp
      metrics: ['^node_cpu_seconds']
exporters:
  file/raw:
    path: {}
  file/delta:
    path: {}
{}  telemetry:
    metrics:
      level: none
  pipelines:
    metrics/raw: {{receivers: [prometheus], exporters: [file/raw]}}
    metrics/delta: {{receivers: [prometheus], processors: [cumulative_to_delta], exporters: [file/delta]}}
",
        raw.display(),
        delta.display(),
        health_check_and_service(health)
    );
    let mut agent = Agent::with_config(&cfg);
    agent.wait_healthy(health, Duration::from_secs(30));
    let deltas = eventually(Duration::from_secs(30), "four deltas of one CPU", || {
        let d = points(&read_json_lines(&delta), "node_cpu_seconds_total", false);
        (d.len() >= 4).then_some(d)
    });
    agent.stop_ok(Duration::from_secs(20));
    let raws: BTreeMap<u64, f64> = points(&read_json_lines(&raw), "node_cpu_seconds_total", false)
        .into_iter()
        .map(|(_, t, v, temporality)| {
            assert_eq!(temporality, 2, "raw scrapes are cumulative");
            (t, v)
        })
        .collect();
    let first = *raws.keys().next().expect("raw points");
    assert!(
        deltas.iter().all(|(_, t, ..)| *t != first),
        "the first scrape sends no delta (initial_value auto)"
    );
    for (start, t, v, temporality) in &deltas {
        assert_eq!(*temporality, 1, "delta");
        let (Some(now), Some(before)) = (raws.get(t), raws.get(start)) else {
            panic!("a delta ({start}..{t}) whose ends are not two raw scrapes: {raws:?}");
        };
        let prev = raws.range(..t).next_back().map(|(k, _)| *k);
        assert_eq!(prev, Some(*start), "a delta starts at the previous scrape");
        assert!((v - (now - before)).abs() < 1e-9, "{v} != {now} - {before}");
    }
    let other = points(
        &read_json_lines(&delta),
        "node_network_receive_bytes_total",
        true,
    );
    assert!(!other.is_empty(), "node_exporter reports network counters");
    assert!(
        other.iter().all(|p| p.3 == 2),
        "a counter include does not name stays cumulative"
    );
}
