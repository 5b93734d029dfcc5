//! Prometheus out, end to end against the real Debian `prometheus` and `prometheus-node-exporter`:
//! hostmetrics reach a Prometheus by remote write; a Prometheus scrapes vigil's `prometheus`
//! exporter fed by the OpenTelemetry Python SDK; and vigil scrapes a node exporter and re-exports it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vigil_tests::{eventually, free_port, python, Agent};

/// Finds a binary from a Debian package, failing with the setup step when it is missing.
fn debian_bin(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{name} is not installed: run the README's test command (scripts/test.sh), which installs the \
         Debian package {package}"
    );
}

/// A child process killed on drop, with its own temp dir and log.
struct Peer {
    child: Child,
    dir: tempfile::TempDir,
    name: &'static str,
}

impl Peer {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("peer.log")).unwrap_or_default()
    }

    fn spawn(name: &'static str, bin: &Path, args: &[String], dir: tempfile::TempDir) -> Peer {
        let log = std::fs::File::create(dir.path().join("peer.log")).expect("create peer log");
        let child = Command::new(bin)
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        Peer { child, dir, name }
    }

    /// Polls `url` until it answers 200, failing with the peer's log.
    fn wait_ok(&mut self, url: &str) {
        let client = reqwest::blocking::Client::new();
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("{} exited early with {st}; log:\n{}", self.name, self.log());
            }
            if let Ok(r) = client.get(url).timeout(Duration::from_secs(1)).send() {
                if r.status().is_success() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{} not ready at {url}; log:\n{}", self.name, self.log());
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Prometheus on its own port and storage, with the given `scrape_configs` YAML (may be empty).
fn prometheus(port: u16, scrape_configs: &str) -> Peer {
    let bin = debian_bin("prometheus", "prometheus");
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{scrape_configs}"),
    )
    .expect("write prometheus config");
    let args = vec![
        format!("--config.file={}", cfg.display()),
        format!("--storage.tsdb.path={}", dir.path().join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--web.enable-remote-write-receiver".to_string(),
    ];
    let mut p = Peer::spawn("prometheus", &bin, &args, dir);
    p.wait_ok(&format!("http://127.0.0.1:{port}/-/ready"));
    p
}

/// Runs an instant query; returns `data.result`.
fn query(port: u16, q: &str) -> Vec<serde_json::Value> {
    let encoded: String = q
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let url = format!("http://127.0.0.1:{port}/api/v1/query?query={encoded}");
    reqwest::blocking::Client::new()
        .get(url)
        .send()
        .and_then(|r| r.json::<serde_json::Value>())
        .ok()
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

fn agent(yaml: &str, metrics_port: u16) -> Agent {
    let yaml =
        format!("{yaml}\n  telemetry:\n    metrics:\n      address: 127.0.0.1:{metrics_port}\n");
    Agent::with_config(&yaml)
}

#[test]
fn hostmetrics_reach_prometheus_by_remote_write() {
    let prom_port = free_port();
    let prom = prometheus(prom_port, "");
    let mut vigil = agent(
        &format!(
            r#"
receivers:
  hostmetrics:
    collection_interval: 1s
    initial_delay: 0s
    scrapers:
      cpu:
      memory:
      load:
exporters:
  prometheusremotewrite:
    endpoint: http://127.0.0.1:{prom_port}/api/v1/write
    external_labels:
      cluster: test
service:
  pipelines:
    metrics:
      receivers: [hostmetrics]
      exporters: [prometheusremotewrite]"#
        ),
        free_port(),
    );
    let result = eventually(
        Duration::from_secs(60),
        "system_cpu_time_seconds_total in Prometheus",
        || {
            if let Ok(Some(st)) = vigil.child.try_wait() {
                panic!("vigil exited with {st}; log:\n{}", vigil.logs());
            }
            let r = query(prom_port, "system_cpu_time_seconds_total");
            (!r.is_empty()).then_some(r)
        },
    );
    let metric = &result[0]["metric"];
    assert!(
        metric["cpu"].as_str().is_some_and(|c| c.starts_with("cpu")),
        "{metric}"
    );
    assert!(metric["state"].as_str().is_some(), "{metric}");
    assert_eq!(metric["cluster"], "test", "{metric}");
    let states: std::collections::HashSet<String> = result
        .iter()
        .filter_map(|s| s["metric"]["state"].as_str().map(str::to_string))
        .collect();
    for s in ["user", "system", "idle"] {
        assert!(states.contains(s), "state {s} missing: {states:?}");
    }
    let mem = query(prom_port, "system_memory_usage_bytes{state=\"used\"}");
    assert_eq!(mem.len(), 1, "{mem:?}\nprometheus log:\n{}", prom.log());
    assert!(!query(prom_port, "system_cpu_load_average_1m").is_empty());
}

const SDK_SCRIPT: &str = r#"
import sys
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

reader = PeriodicExportingMetricReader(
    OTLPMetricExporter(endpoint="http://127.0.0.1:" + sys.argv[1], insecure=True),
    export_interval_millis=500,
)
provider = MeterProvider(
    resource=Resource.create({"service.name": "checkout", "service.instance.id": "co-1", "deployment.environment": "test"}),
    metric_readers=[reader],
)
meter = provider.get_meter("shop")
orders = meter.create_counter("shop.orders", unit="{order}", description="Orders placed")
latency = meter.create_histogram("shop.latency", unit="s")
orders.add(5, {"payment": "card"})
orders.add(2, {"payment": "cash"})
latency.record(0.2)
latency.record(0.7)
provider.force_flush()
provider.shutdown()
"#;

#[test]
fn prometheus_scrapes_otlp_metrics_from_the_sdk() {
    let (grpc, exp_port, prom_port) = (free_port(), free_port(), free_port());
    let mut vigil = agent(
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
exporters:
  prometheus:
    endpoint: 127.0.0.1:{exp_port}
    const_labels:
      agent: vigil
service:
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [prometheus]"#
        ),
        free_port(),
    );
    vigil.wait_http_ok(
        &format!("http://127.0.0.1:{exp_port}/metrics"),
        Duration::from_secs(60),
    );

    let status = Command::new(python())
        .args(["-c", SDK_SCRIPT, &grpc.to_string()])
        .status()
        .expect("run the OpenTelemetry SDK script");
    assert!(
        status.success(),
        "SDK script failed; vigil log:\n{}",
        vigil.logs()
    );

    let prom = prometheus(
        prom_port,
        &format!(
            "scrape_configs:\n  - job_name: vigil\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['127.0.0.1:{exp_port}']\n"
        ),
    );
    eventually(Duration::from_secs(60), "the vigil target to be up", || {
        let v: serde_json::Value =
            reqwest::blocking::get(format!("http://127.0.0.1:{prom_port}/api/v1/targets"))
                .and_then(|r| r.json())
                .ok()?;
        let targets = v["data"]["activeTargets"].as_array()?.clone();
        targets
            .iter()
            .any(|t| t["labels"]["job"] == "vigil" && t["health"] == "up")
            .then_some(())
    });
    let orders = eventually(
        Duration::from_secs(30),
        "shop_orders_total in Prometheus",
        || {
            let r = query(prom_port, "shop_orders_total");
            (r.len() == 2).then_some(r)
        },
    );
    let card = orders
        .iter()
        .find(|s| s["metric"]["payment"] == "card")
        .unwrap_or_else(|| panic!("{orders:?}\n{}", prom.log()));
    assert_eq!(card["value"][1], "5");
    // Our job/instance clash with the scrape's own, so Prometheus keeps ours as exported_*.
    assert_eq!(card["metric"]["exported_job"], "checkout", "{card}");
    assert_eq!(card["metric"]["exported_instance"], "co-1", "{card}");
    assert_eq!(card["metric"]["agent"], "vigil", "{card}");
    let info = query(prom_port, "target_info");
    assert!(
        info.iter()
            .any(|s| s["metric"]["deployment_environment"] == "test"),
        "{info:?}"
    );
    let count = query(prom_port, "shop_latency_seconds_count");
    assert_eq!(
        count.first().map(|s| s["value"][1].clone()),
        Some("2".into()),
        "{count:?}"
    );
    let le = query(prom_port, "shop_latency_seconds_bucket{le=\"+Inf\"}");
    assert_eq!(le.len(), 1, "{le:?}");
}

#[test]
fn node_exporter_is_scraped_and_re_exported() {
    let (node_port, exp_port) = (free_port(), free_port());
    let node_bin = debian_bin("prometheus-node-exporter", "prometheus-node-exporter");
    let mut node = Peer::spawn(
        "prometheus-node-exporter",
        &node_bin,
        &[
            format!("--web.listen-address=127.0.0.1:{node_port}"),
            "--collector.disable-defaults".into(),
            "--collector.cpu".into(),
            "--collector.loadavg".into(),
        ],
        tempfile::tempdir().expect("temp dir"),
    );
    node.wait_ok(&format!("http://127.0.0.1:{node_port}/metrics"));
    let mut vigil = agent(
        &format!(
            r#"
receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: node
          scrape_interval: 1s
          static_configs:
            - targets: ['127.0.0.1:{node_port}']
exporters:
  prometheus:
    endpoint: 127.0.0.1:{exp_port}
service:
  pipelines:
    metrics:
      receivers: [prometheus]
      exporters: [prometheus]"#
        ),
        free_port(),
    );
    let instance = format!("127.0.0.1:{node_port}");
    let text = eventually(
        Duration::from_secs(60),
        "node_cpu_seconds_total re-exported by vigil",
        || {
            if let Ok(Some(st)) = vigil.child.try_wait() {
                panic!("vigil exited with {st}; log:\n{}", vigil.logs());
            }
            let t = reqwest::blocking::get(format!("http://127.0.0.1:{exp_port}/metrics"))
                .and_then(|r| r.text())
                .ok()?;
            (t.contains("node_cpu_seconds_total{") && t.contains("\nup{")).then_some(t)
        },
    );
    let cpu = text
        .lines()
        .find(|l| l.starts_with("node_cpu_seconds_total{") && l.contains("mode=\"idle\""))
        .unwrap_or_else(|| panic!("no idle cpu series in\n{text}"));
    assert!(cpu.contains("cpu=\"0\""), "{cpu}");
    assert!(cpu.contains("job=\"node\""), "{cpu}");
    assert!(cpu.contains(&format!("instance=\"{instance}\"")), "{cpu}");
    assert!(
        text.contains("# TYPE node_cpu_seconds_total counter"),
        "{text}"
    );
    let up = text
        .lines()
        .find(|l| l.starts_with("up{"))
        .unwrap_or_else(|| panic!("no up series in\n{text}"));
    assert!(up.contains("job=\"node\""), "{up}");
    assert!(up.ends_with(" 1"), "{up}");
}
