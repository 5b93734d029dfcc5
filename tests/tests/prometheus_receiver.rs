//! The Prometheus receivers end to end, against real Debian peers started by the test on loopback
//! ports of their own: vigil scrapes a real `prometheus-node-exporter` (out through the `file` and
//! `prometheus` exporters), a real `prometheus` forwards by remote write into vigil's
//! `prometheusremotewrite` receiver, and in-test fake targets that misbehave (garbage, 404, too slow,
//! 50 MB) each end in `up` = 0 and a log line while the agent keeps running.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vigil_tests::{eventually, free_port, read_json_lines, Agent};

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A peer process, killed when the test ends however it ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn require(bin: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(bin);
    assert!(
        p.exists(),
        "{bin} is missing: install the Debian package {package} (the README's test command, \
         scripts/test.sh, installs it)"
    );
    p
}

fn wait_http(url: &str, what: &str) {
    let client = reqwest::blocking::Client::new();
    eventually(Duration::from_secs(30), what, || {
        client
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    });
}

fn start_node_exporter(dir: &Path, port: u16) -> Peer {
    let bin = require(NODE_EXPORTER, "prometheus-node-exporter");
    let log = std::fs::File::create(dir.join("node_exporter.log")).expect("log file");
    let child = Command::new(bin)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        // The textfile collector's Debian default directory may not exist in a test box.
        .arg("--no-collector.textfile")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus-node-exporter");
    let peer = Peer(child);
    wait_http(
        &format!("http://127.0.0.1:{port}/metrics"),
        "node_exporter to serve /metrics",
    );
    peer
}

/// Every metric object in OTLP/JSON lines, with its resource's attributes.
fn metrics(lines: &[Value]) -> Vec<(Value, Value)> {
    let mut out = Vec::new();
    for l in lines {
        for rm in l["resourceMetrics"].as_array().into_iter().flatten() {
            let res = rm["resource"]["attributes"].clone();
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    out.push((res.clone(), m.clone()));
                }
            }
        }
    }
    out
}

fn attr<'a>(attrs: &'a Value, key: &str) -> Option<&'a str> {
    vigil_tests::otlp_attr(attrs, key)?["stringValue"].as_str()
}

fn point_value(p: &Value) -> Option<f64> {
    p["asDouble"]
        .as_f64()
        .or_else(|| p["asInt"].as_str().and_then(|s| s.parse().ok()))
        .or_else(|| p["asInt"].as_f64())
}

/// The latest `up` value reported for a job, if any.
fn up_of(lines: &[Value], job: &str) -> Option<f64> {
    metrics(lines)
        .iter()
        .filter(|(res, m)| m["name"] == "up" && attr(res, "service.name") == Some(job))
        .filter_map(|(_, m)| m["gauge"]["dataPoints"][0].as_object().cloned())
        .filter_map(|p| point_value(&Value::Object(p)))
        .next_back()
}

#[test]
fn scrapes_a_real_node_exporter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node_port = free_port();
    let _node = start_node_exporter(dir.path(), node_port);
    let prom_port = free_port();
    let out = dir.path().join("out.jsonl");
    let mut agent = Agent::with_config(&format!(
        r#"
receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: node
          scrape_interval: 1s
          static_configs:
            - targets: ['127.0.0.1:{node_port}']
              labels:
                zone: test
exporters:
  file:
    path: {}
  prometheus:
    endpoint: 127.0.0.1:{prom_port}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{}
  pipelines:
    metrics:
      receivers: [prometheus]
      exporters: [file, prometheus]
"#,
        out.display(),
        free_port()
    ));

    let cpu = eventually(
        Duration::from_secs(30),
        "node_cpu_seconds_total in the file",
        || {
            let lines = read_json_lines(&out);
            metrics(&lines)
                .into_iter()
                .find(|(_, m)| m["name"] == "node_cpu_seconds_total")
        },
    );
    let (res, m) = cpu;
    assert_eq!(attr(&res, "service.name"), Some("node"), "{res}");
    assert_eq!(
        attr(&res, "service.instance.id"),
        Some(format!("127.0.0.1:{node_port}").as_str())
    );
    assert_eq!(m["sum"]["isMonotonic"], true, "{m}");
    // Cumulative is 2 in the OTLP enum; OTLP/JSON may spell it as a number or a name.
    let temporality = &m["sum"]["aggregationTemporality"];
    assert!(
        temporality == 2 || temporality == "AGGREGATION_TEMPORALITY_CUMULATIVE",
        "{m}"
    );
    let points = m["sum"]["dataPoints"].as_array().expect("data points");
    assert!(!points.is_empty());
    for p in points {
        assert!(attr(&p["attributes"], "cpu").is_some(), "{p}");
        assert!(attr(&p["attributes"], "mode").is_some(), "{p}");
        assert_eq!(attr(&p["attributes"], "zone"), Some("test"), "{p}");
        assert!(point_value(p).is_some(), "{p}");
        assert!(p["startTimeUnixNano"].as_str().is_some() || p["startTimeUnixNano"].is_u64());
    }
    let up = eventually(Duration::from_secs(10), "up for job node", || {
        up_of(&read_json_lines(&out), "node")
    });
    assert_eq!(up, 1.0);

    // The same data re-served by the `prometheus` exporter, as a Prometheus would scrape vigil.
    let text = eventually(Duration::from_secs(20), "vigil's /metrics", || {
        let t = reqwest::blocking::get(format!("http://127.0.0.1:{prom_port}/metrics"))
            .ok()?
            .text()
            .ok()?;
        (t.contains("node_cpu_seconds_total{") && t.lines().any(|l| l.starts_with("up{")))
            .then_some(t)
    });
    let cpu_line = text
        .lines()
        .find(|l| l.starts_with("node_cpu_seconds_total{"))
        .expect("a node_cpu_seconds_total line");
    assert!(
        cpu_line.contains("cpu=\"") && cpu_line.contains("mode=\""),
        "{cpu_line}"
    );
    let up_line = text
        .lines()
        .find(|l| l.starts_with("up{"))
        .expect("an up line");
    assert!(up_line.ends_with(" 1"), "{up_line}");
    assert!(
        agent.child.try_wait().expect("poll vigil").is_none(),
        "{}",
        agent.logs()
    );
}

#[test]
fn a_real_prometheus_remote_writes_into_vigil() {
    let bin = require(PROMETHEUS, "prometheus");
    let dir = tempfile::tempdir().expect("tempdir");
    let rw_port = free_port();
    let prom_port = free_port();
    let out = dir.path().join("out.jsonl");
    let mut agent = Agent::with_config(&format!(
        r#"
receivers:
  prometheusremotewrite:
    endpoint: 127.0.0.1:{rw_port}
exporters:
  file:
    path: {}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{}
  pipelines:
    metrics:
      receivers: [prometheusremotewrite]
      exporters: [file]
"#,
        out.display(),
        free_port()
    ));
    eventually(Duration::from_secs(30), "the remote-write port", || {
        std::net::TcpStream::connect(("127.0.0.1", rw_port)).ok()
    });

    // Prometheus scrapes itself and forwards every sample to vigil.
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            r#"
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:{prom_port}']
remote_write:
  - url: http://127.0.0.1:{rw_port}/api/v1/write
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
"#
        ),
    )
    .expect("write prometheus.yml");
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
    let _prom = Peer(
        Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );

    let found = Duration::from_secs(90);
    let (res, m) = eventually(
        found,
        "prometheus_http_requests_total via remote write",
        || {
            if let Ok(Some(st)) = agent.child.try_wait() {
                panic!("vigil exited with {st}: {}", agent.logs());
            }
            let lines = read_json_lines(&out);
            metrics(&lines)
                .into_iter()
                .find(|(_, m)| m["name"] == "prometheus_http_requests_total")
        },
    )
    .clone();
    assert_eq!(attr(&res, "service.name"), Some("prometheus"), "{res}");
    assert_eq!(
        attr(&res, "service.instance.id"),
        Some(format!("127.0.0.1:{prom_port}").as_str())
    );
    assert_eq!(
        m["sum"]["isMonotonic"], true,
        "a _total series is a counter: {m}"
    );
    let p = &m["sum"]["dataPoints"][0];
    assert!(attr(&p["attributes"], "handler").is_some(), "{p}");
    // `up` for Prometheus's own target arrives as a gauge of 1.
    let up = eventually(Duration::from_secs(30), "up via remote write", || {
        up_of(&read_json_lines(&out), "prometheus")
    });
    assert_eq!(up, 1.0);
    assert!(agent.child.try_wait().expect("poll vigil").is_none());
}

/// A fake target for fault injection: each path misbehaves in its own way.
fn start_bad_target() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake target");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let n = conn.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                let head = |status: &str| {
                    format!("HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nConnection: close\r\n")
                };
                match path.as_str() {
                    "/garbage" => {
                        let body = "\u{1}\u{2}{{{ not prometheus at all }}}\n";
                        let _ = write!(
                            conn,
                            "{}Content-Length: {}\r\n\r\n{body}",
                            head("200 OK"),
                            body.len()
                        );
                    }
                    "/slow" => {
                        std::thread::sleep(Duration::from_secs(5));
                        let _ = write!(conn, "{}Content-Length: 4\r\n\r\na 1\n", head("200 OK"));
                    }
                    "/big" => {
                        // 50 MB with no Content-Length, so the cap must stop a streaming body.
                        let _ = write!(conn, "{}\r\n", head("200 OK"));
                        let chunk = vec![b'#'; 1 << 20];
                        for _ in 0..50 {
                            if conn.write_all(&chunk).is_err() {
                                break;
                            }
                        }
                    }
                    _ => {
                        let _ = write!(
                            conn,
                            "{}Content-Length: 9\r\n\r\nnot found",
                            head("404 Not Found")
                        );
                    }
                }
            });
        }
    });
    port
}

#[test]
fn bad_targets_give_up_zero_and_a_log_line_never_a_crash() {
    let port = start_bad_target();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let job = |name: &str, path: &str| {
        format!(
            "        - job_name: {name}\n          scrape_interval: 2s\n          scrape_timeout: 1s\n          metrics_path: {path}\n          static_configs:\n            - targets: ['127.0.0.1:{port}']\n"
        )
    };
    let jobs = [
        job("garbage", "/garbage"),
        job("missing", "/missing"),
        job("slow", "/slow"),
        job("big", "/big"),
    ]
    .concat();
    let mut agent = Agent::with_config(&format!(
        "receivers:\n  prometheus:\n    config:\n      scrape_configs:\n{jobs}exporters:\n  file:\n    path: {}\nservice:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:{}\n  pipelines:\n    metrics:\n      receivers: [prometheus]\n      exporters: [file]\n",
        out.display(),
        free_port()
    ));
    for (job, reason) in [
        ("garbage", "parse error"),
        ("missing", "404"),
        ("slow", "timed out"),
        ("big", "body size limit"),
    ] {
        let up = eventually(Duration::from_secs(30), &format!("up for {job}"), || {
            if let Ok(Some(st)) = agent.child.try_wait() {
                panic!("vigil exited with {st}: {}", agent.logs());
            }
            up_of(&read_json_lines(&out), job)
        });
        assert_eq!(up, 0.0, "{job}");
        agent.wait_log(&format!("job={job}"), Duration::from_secs(10));
        let logs = agent.logs();
        let line = logs
            .lines()
            .find(|l| l.contains("scrape failed") && l.contains(&format!("job={job}")))
            .unwrap_or_else(|| panic!("no 'scrape failed' line for {job}:\n{logs}"));
        assert!(line.contains(reason), "{job}: {line}");
    }
    // Still alive and still scraping after all of that.
    assert!(
        agent.child.try_wait().expect("poll vigil").is_none(),
        "{}",
        agent.logs()
    );
}
