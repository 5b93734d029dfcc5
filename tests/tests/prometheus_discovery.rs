//! The prometheus receiver's HTTP discovery end to end: a real `prometheus-node-exporter` found
//! through `http_sd_configs` (an in-test HTTP server serves Prometheus's HTTP SD document), and
//! through `target_allocator`. The Target Allocator is a Go service of the OpenTelemetry Operator
//! that cannot run here, so a double in this file serves its two endpoints with the real API's
//! JSON shapes (`/scrape_configs`: job name to scrape config as the allocator marshals it, `null`
//! lists and a Kubernetes SD the receiver must replace included; `/jobs/<job>/targets`: HTTP SD
//! groups). Both discovery sources then fail, and the last targets must keep being scraped.

#[path = "support/node_exporter.rs"]
mod node_exporter;

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_tests::{eventually, free_port, metric_sum, read_json_lines, Agent};

/// What the in-test HTTP server answers to a request path (with its query): status and JSON body.
type Answer = Box<dyn Fn(&str) -> (u16, String) + Send>;

/// A small HTTP/1.1 server on a loopback port; `answer` can be swapped while it runs, and every
/// request's path is recorded.
struct Double {
    port: u16,
    answer: Arc<Mutex<Answer>>,
    seen: Arc<Mutex<Vec<(String, u16)>>>,
}

impl Double {
    fn start(answer: Answer) -> Double {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the double");
        let port = listener.local_addr().expect("addr").port();
        let answer = Arc::new(Mutex::new(answer));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (a, s) = (answer.clone(), seen.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    continue;
                }
                // Headers are read and ignored; the requests carry no body.
                loop {
                    let mut h = String::new();
                    match reader.read_line(&mut h) {
                        Ok(n) if n > 2 => continue,
                        _ => break,
                    }
                }
                let path = first.split(' ').nth(1).unwrap_or("/").to_string();
                let (status, body) = (a.lock().expect("answer"))(&path);
                s.lock().expect("seen").push((path, status));
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Double { port, answer, seen }
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().expect("answer") = answer;
    }

    /// How many requests for paths starting with `prefix` were answered with `status`.
    fn count(&self, prefix: &str, status: u16) -> usize {
        self.seen
            .lock()
            .expect("seen")
            .iter()
            .filter(|(p, s)| p.starts_with(prefix) && *s == status)
            .count()
    }

    fn paths(&self) -> Vec<String> {
        self.seen
            .lock()
            .expect("seen")
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }
}

fn attr<'a>(attrs: &'a Value, key: &str) -> Option<&'a str> {
    vigil_tests::otlp_attr(attrs, key)?["stringValue"].as_str()
}

/// `(job, instance, point attributes)` of every `node_cpu_seconds_total` point in `lines`.
fn cpu_points(lines: &[Value]) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for l in lines {
        for rm in l["resourceMetrics"].as_array().into_iter().flatten() {
            let res = &rm["resource"]["attributes"];
            let job = attr(res, "service.name").unwrap_or_default().to_string();
            let inst = attr(res, "service.instance.id")
                .unwrap_or_default()
                .to_string();
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    if m["name"] != "node_cpu_seconds_total" {
                        continue;
                    }
                    for p in m["sum"]["dataPoints"].as_array().into_iter().flatten() {
                        out.push((job.clone(), inst.clone(), p["attributes"].clone()));
                    }
                }
            }
        }
    }
    out
}

/// Waits for a `node_cpu_seconds_total` point of `job` written after line `after` of `out`.
fn scraped_after(out: &Path, after: usize, job: &str, what: &str) -> (String, Value) {
    eventually(Duration::from_secs(30), what, || {
        let lines = read_json_lines(out);
        cpu_points(lines.get(after..).unwrap_or_default())
            .into_iter()
            .find(|(j, _, _)| j == job)
            .map(|(_, i, a)| (i, a))
    })
}

fn config(receiver: &str, out: &Path, metrics_port: u16) -> String {
    format!(
        r#"
receivers:
  prometheus:
{receiver}
exporters:
  file:
    path: {}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics_port}
  pipelines:
    metrics:
      receivers: [prometheus]
      exporters: [file]
"#,
        out.display()
    )
}

#[test]
fn http_sd_finds_a_real_node_exporter_and_keeps_it_when_discovery_fails() {
    let node = node_exporter::start(&["--no-collector.textfile"]);
    let target = format!("127.0.0.1:{}", node.port);
    let doc = format!(r#"[{{"targets":["{target}"],"labels":{{"zone":"sd-test"}}}}]"#);
    let sd = Double::start(Box::new(move |_| (200, doc.clone())));
    let sd_url = format!("http://127.0.0.1:{}/sd", sd.port);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let metrics_port = free_port();
    let mut agent = Agent::with_config(&config(
        &format!(
            r#"    config:
      scrape_configs:
        - job_name: node-http-sd
          scrape_interval: 1s
          http_sd_configs:
            - url: {sd_url}
              refresh_interval: 1s
          relabel_configs:
            - source_labels: [__meta_url]
              target_label: sd_url"#
        ),
        &out,
        metrics_port,
    ));
    let (instance, attrs) = scraped_after(
        &out,
        0,
        "node-http-sd",
        "a scrape of the discovered node_exporter",
    );
    assert_eq!(instance, target);
    assert_eq!(attr(&attrs, "zone"), Some("sd-test"), "{attrs}");
    assert_eq!(attr(&attrs, "sd_url"), Some(sd_url.as_str()), "{attrs}");

    // Discovery now fails: the target found last keeps being scraped.
    sd.set(Box::new(|_| (503, "{}".into())));
    eventually(
        Duration::from_secs(20),
        "two failed HTTP SD refreshes",
        || (sd.count("/sd", 503) >= 2).then_some(()),
    );
    let after = read_json_lines(&out).len();
    let (instance, _) = scraped_after(
        &out,
        after,
        "node-http-sd",
        "scrapes after discovery failed",
    );
    assert_eq!(instance, target);
    let failures = eventually(Duration::from_secs(10), "the SD failure counter", || {
        metric_sum(metrics_port, "vigil_prometheus_sd_failures", "node-http-sd")
    });
    assert!(failures >= 2.0, "{failures}");
    agent.assert_running();
}

#[test]
fn target_allocator_double_assigns_a_real_node_exporter() {
    let node = node_exporter::start(&["--no-collector.textfile"]);
    let target = format!("127.0.0.1:{}", node.port);
    // A scrape config as the allocator marshals one: nulls for unset lists, and the discovery
    // the allocator itself ran, which the receiver replaces with the allocator's HTTP SD.
    let scrape_configs = |job: &str| {
        serde_json::json!({
            job: {
                "job_name": job,
                "honor_timestamps": true,
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "scrape_protocols": ["OpenMetricsText1.0.0", "OpenMetricsText0.0.1", "PrometheusText0.0.4"],
                "metrics_path": "/metrics",
                "scheme": "http",
                "enable_compression": true,
                "follow_redirects": true,
                "enable_http2": true,
                "relabel_configs": [{
                    "source_labels": ["__meta_datacenter"],
                    "separator": ";",
                    "regex": "(.*)",
                    "target_label": "dc",
                    "replacement": "$1",
                    "action": "replace"
                }],
                "metric_relabel_configs": null,
                "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": "", "follow_redirects": true}]
            }
        })
        .to_string()
    };
    let targets = format!(
        r#"[{{"targets":["{target}"],"labels":{{"__meta_datacenter":"london","__meta_prometheus_job":"node"}}}}]"#
    );
    let answer = |job: &'static str, configs: String, targets: String| -> Answer {
        Box::new(move |path: &str| {
            if path == "/scrape_configs" {
                (200, configs.clone())
            } else if path == format!("/jobs/{job}/targets?collector_id=collector-7") {
                (200, targets.clone())
            } else {
                (404, "{}".into())
            }
        })
    };
    let ta = Double::start(answer(
        "ta-node",
        scrape_configs("ta-node"),
        targets.clone(),
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let metrics_port = free_port();
    let mut agent = Agent::with_config(&config(
        &format!(
            r#"    target_allocator:
      endpoint: http://127.0.0.1:{}
      interval: 1s
      collector_id: collector-7
      http_sd_config:
        refresh_interval: 1s
    config:
      scrape_configs:
        - job_name: static-node
          scrape_interval: 1s
          static_configs:
            - targets: ['{target}']"#,
            ta.port
        ),
        &out,
        metrics_port,
    ));
    let (instance, attrs) = scraped_after(&out, 0, "ta-node", "a scrape of the allocator's target");
    assert_eq!(instance, target);
    assert_eq!(attr(&attrs, "dc"), Some("london"), "{attrs}");
    // The static job runs beside the allocator's.
    scraped_after(&out, 0, "static-node", "a scrape of the static job");
    assert!(
        ta.paths()
            .iter()
            .any(|p| p == "/jobs/ta-node/targets?collector_id=collector-7"),
        "{:?}",
        ta.paths()
    );

    // The allocator renames the job: the new one is scraped, the old one stops.
    ta.set(answer(
        "ta-node-2",
        scrape_configs("ta-node-2"),
        targets.clone(),
    ));
    let after = read_json_lines(&out).len();
    scraped_after(
        &out,
        after,
        "ta-node-2",
        "a scrape of the allocator's new job",
    );
    let settled = read_json_lines(&out).len();
    eventually(
        Duration::from_secs(10),
        "more scrapes of the new job",
        || {
            let lines = read_json_lines(&out);
            (lines.len() > settled + 3).then_some(())
        },
    );
    let late = read_json_lines(&out);
    assert!(
        !cpu_points(&late[settled..])
            .iter()
            .any(|(j, _, _)| j == "ta-node"),
        "the removed job is still scraped"
    );

    // The allocator goes down: its last jobs keep being scraped.
    ta.set(Box::new(|_| (503, "{}".into())));
    eventually(
        Duration::from_secs(20),
        "two failed polls of the allocator",
        || (ta.count("/scrape_configs", 503) >= 2).then_some(()),
    );
    let after = read_json_lines(&out).len();
    let (instance, _) = scraped_after(
        &out,
        after,
        "ta-node-2",
        "scrapes after the allocator went down",
    );
    assert_eq!(instance, target);
    let failures = eventually(
        Duration::from_secs(10),
        "the allocator failure counter",
        || {
            metric_sum(
                metrics_port,
                "vigil_prometheus_target_allocator_failures",
                "",
            )
        },
    );
    assert!(failures >= 2.0, "{failures}");
    agent.assert_running();
}
