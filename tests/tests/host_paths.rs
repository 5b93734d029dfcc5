//! Host paths at `vigil validate` and at start (issue #18): validate looks at the files otelcol's
//! validate looks at and no others, because a config is often validated on a machine other than the
//! one that runs it (a CI job checking a DaemonSet config whose certificates exist only in the pod).
//! - prometheus receiver: `tls_config::ca_file` is not read at validate; at start a job whose CA
//!   cannot be loaded is dropped with an error log and `vigil_prometheus_jobs_dropped`, as
//!   Prometheus drops that scrape pool, and the other jobs of the same receiver are scraped from a
//!   real local HTTP endpoint. `authorization::credentials_file` (and `bearer_token_file`, which
//!   Prometheus turns into it) must exist at validate, as otelcol stats it.
//! - server and client TLS (`configtls`): the files are not read at validate; start fails with the
//!   component, the key path and the file.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use vigil_tests::{eventually, free_port, metric_sum, read_json_lines, Agent};

/// `vigil validate` on `yaml`: its exit code and its stderr.
fn validate(dir: &Path, yaml: &str) -> (Option<i32>, String) {
    let path = vigil_tests::write_config(dir, "config.yaml", yaml);
    let out = Command::new(vigil_tests::bin("vigil"))
        .arg("validate")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run vigil validate");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A plain HTTP server answering every request with one Prometheus text sample.
fn serve_metrics() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind metrics endpoint");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let body = "# TYPE host_paths_probe gauge\nhost_paths_probe 42\n";
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

const ABSENT: &str = "/nonexistent-vigil-test/serviceaccount";

fn prometheus_config(target: u16, extra_job: &str, out: &Path, metrics: u16) -> String {
    format!(
        "receivers:\n  prometheus:\n    config:\n      scrape_configs:\n\
         \x20       - job_name: reachable\n          scrape_interval: 1s\n          static_configs:\n            - targets: ['127.0.0.1:{target}']\n\
         {extra_job}\
         exporters:\n  file:\n    path: {}\n\
         service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:{metrics}\n  pipelines:\n    metrics:\n      receivers: [prometheus]\n      exporters: [file]\n",
        out.display()
    )
}

#[test]
fn prometheus_ca_file_is_not_read_at_validate_and_its_job_alone_is_dropped_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let target = serve_metrics();
    let metrics = free_port();
    let ca_job = format!(
        "        - job_name: apiserver\n          scheme: https\n          scrape_interval: 1s\n          tls_config:\n            ca_file: {ABSENT}/ca.crt\n          static_configs:\n            - targets: ['127.0.0.1:{target}']\n"
    );
    let yaml = prometheus_config(target, &ca_job, &out, metrics);
    let (code, stderr) = validate(dir.path(), &yaml);
    assert_eq!(
        code,
        Some(0),
        "validate reads no ca_file, as otelcol's: {stderr}"
    );

    let mut agent = Agent::with_config(&yaml);
    let scraped = eventually(
        Duration::from_secs(30),
        "a sample of the reachable job",
        || {
            if let Ok(Some(st)) = agent.child.try_wait() {
                panic!("vigil exited with {st}: {}", agent.logs());
            }
            let text = read_json_lines(&out)
                .iter()
                .map(ToString::to_string)
                .collect::<String>();
            text.contains("host_paths_probe").then_some(text)
        },
    );
    assert!(scraped.contains("reachable"), "{scraped}");
    agent.wait_log("cannot create the scrape pool", Duration::from_secs(10));
    let logs = agent.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("cannot create the scrape pool"))
        .unwrap_or_default();
    assert!(
        line.contains("job=apiserver") && line.contains(&format!("{ABSENT}/ca.crt")),
        "the error names the job and the file: {line}"
    );
    assert!(
        !scraped.contains("apiserver"),
        "the dropped job is not scraped: {scraped}"
    );
    let dropped = eventually(
        Duration::from_secs(10),
        "vigil_prometheus_jobs_dropped",
        || metric_sum(metrics, "vigil_prometheus_jobs_dropped", "apiserver"),
    );
    assert_eq!(dropped, 1.0);
    assert!(
        agent.child.try_wait().expect("poll vigil").is_none(),
        "the agent keeps running: {}",
        agent.logs()
    );
}

#[test]
fn prometheus_credentials_files_are_checked_at_validate_as_otelcol_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    for (key, job) in [
        (
            "config::scrape_configs::1::authorization::credentials_file",
            format!("        - job_name: kubelet\n          authorization:\n            credentials_file: {ABSENT}/token\n          static_configs:\n            - targets: ['127.0.0.1:1']\n"),
        ),
        (
            "config::scrape_configs::1::bearer_token_file",
            format!("        - job_name: kubelet\n          bearer_token_file: {ABSENT}/token\n          static_configs:\n            - targets: ['127.0.0.1:1']\n"),
        ),
        (
            "config::scrape_configs::1::tls_config::cert_file",
            format!("        - job_name: kubelet\n          tls_config:\n            cert_file: {ABSENT}/c.crt\n            key_file: {ABSENT}/c.key\n          static_configs:\n            - targets: ['127.0.0.1:1']\n"),
        ),
    ] {
        let (code, stderr) = validate(dir.path(), &prometheus_config(1, &job, &out, 1));
        assert_eq!(code, Some(1), "{key}: {stderr}");
        assert!(
            stderr.contains(&format!("receivers::prometheus::{key}: error checking"))
                && stderr.contains(&format!("{ABSENT}/"))
                && stderr.contains("No such file or directory"),
            "{key}: {stderr}"
        );
    }
}

/// otelcol's `configtls` loads certificates at start: validate passes without them, start fails
/// naming the component, the key and the file.
#[test]
fn absent_tls_files_pass_validate_and_fail_start_with_key_and_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let grpc = free_port();
    let cases = [
        (
            "receivers::otlp::protocols::grpc::tls::cert_file",
            format!(
                "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc}\n        tls:\n          cert_file: {ABSENT}/server.crt\n          key_file: {ABSENT}/server.key\n\
                 exporters:\n  debug:\n\
                 service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n"
            ),
        ),
        (
            "exporters::otlp::tls::ca_file",
            format!(
                "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc}\n\
                 exporters:\n  otlp:\n    endpoint: 127.0.0.1:1\n    tls:\n      ca_file: {ABSENT}/ca.crt\n\
                 service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [otlp]\n"
            ),
        ),
    ];
    for (key, yaml) in cases {
        let (code, stderr) = validate(dir.path(), &yaml);
        assert_eq!(
            code,
            Some(0),
            "{key}: validate reads no certificate: {stderr}"
        );
        let mut agent = Agent::with_config(&yaml);
        let exit = agent.wait_exit(Duration::from_secs(20));
        let logs = agent.logs();
        assert!(
            matches!(exit, Some(c) if c != 0),
            "{key}: start fails: {exit:?} {logs}"
        );
        assert!(
            logs.contains(key)
                && logs.contains(&format!("{ABSENT}/"))
                && logs.contains("No such file"),
            "{key}: the error names the key and the file: {logs}"
        );
    }
}
