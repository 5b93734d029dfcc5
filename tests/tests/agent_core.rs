//! The agent core, end to end through the real binary: the embedded default config serves
//! health_check and own metrics and stops cleanly on SIGTERM; SIGHUP swaps a changed config in
//! without a failed request; a port already in use is reported with the component and port.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;
use std::time::Duration;
use vigil_tests::{
    eventually, file_exporter_and_health, free_port, log_bodies, read_json_lines, Agent,
};

#[test]
fn embedded_default_serves_health_and_metrics_and_stops_on_sigterm() {
    let (grpc, http, health, metrics) = (free_port(), free_port(), free_port(), free_port());
    // The embedded default, with only its ports moved so that tests can run side by side.
    let mut agent = Agent::start(&[
        format!("--set=receivers::otlp::protocols::grpc::endpoint=127.0.0.1:{grpc}"),
        format!("--set=receivers::otlp::protocols::http::endpoint=127.0.0.1:{http}"),
        format!("--set=extensions::health_check::endpoint=127.0.0.1:{health}"),
        format!("--set=service::telemetry::metrics::address=127.0.0.1:{metrics}"),
    ]);
    agent.wait_healthy(health, Duration::from_secs(30));
    let body = reqwest::blocking::get(format!("http://127.0.0.1:{health}/"))
        .and_then(|r| r.text())
        .expect("health body");
    assert!(body.contains("Server available"), "{body}");

    let text = eventually(Duration::from_secs(15), "otelcol_process_uptime", || {
        let t = reqwest::blocking::get(format!("http://127.0.0.1:{metrics}/metrics"))
            .and_then(|r| r.text())
            .ok()?;
        t.contains("otelcol_process_uptime").then_some(t)
    });
    assert!(text.contains("otelcol_process_memory_rss"), "{text}");

    agent.stop_ok(Duration::from_secs(30));
}

fn logs_request(body: &str) -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(body.to_string())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn reload_config(http: u16, health: u16, out: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
{frame}  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file]
  telemetry:
    metrics:
      level: none
"#,
        frame = file_exporter_and_health(std::path::Path::new(out), health),
    )
}

#[test]
fn sighup_swaps_config_without_failed_requests() {
    let (http, health) = (free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let first = dir.path().join("first.jsonl");
    let second = dir.path().join("second.jsonl");
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        reload_config(http, health, &first.display().to_string()),
    )
    .expect("write config");
    let mut agent = Agent::start(&["--config".into(), cfg.display().to_string()]);
    agent.wait_healthy(health, Duration::from_secs(30));

    let url = format!("http://127.0.0.1:{http}/v1/logs");
    let client = reqwest::blocking::Client::new();
    let send = |i: usize| {
        client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(logs_request(&format!("line {i}")))
            .timeout(Duration::from_secs(10))
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    for i in 0..20 {
        assert_eq!(send(i), 200);
    }

    std::fs::write(
        &cfg,
        reload_config(http, health, &second.display().to_string()),
    )
    .expect("rewrite config");
    agent.signal(libc::SIGHUP);
    // Keep sending through the swap: every request must be accepted.
    let mut i = 20;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !agent.logs().contains("Config reloaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload; log:\n{}",
            agent.logs()
        );
        assert_eq!(
            send(i),
            200,
            "request {i} failed during reload; log:\n{}",
            agent.logs()
        );
        i += 1;
    }
    for _ in 0..20 {
        assert_eq!(send(i), 200);
        i += 1;
    }
    let total = i;
    let all = eventually(
        Duration::from_secs(10),
        "every line in the two files",
        || {
            let mut b = log_bodies(&read_json_lines(&first));
            b.extend(log_bodies(&read_json_lines(&second)));
            (b.len() >= total).then_some(b)
        },
    );
    assert_eq!(all.len(), total, "duplicates or losses");
    let in_second = log_bodies(&read_json_lines(&second));
    assert!(
        in_second.contains(&format!("line {}", total - 1)),
        "the new config did not take effect"
    );

    // A broken config is refused and the running one goes on.
    std::fs::write(&cfg, "receivers: [oops").expect("rewrite config");
    agent.signal(libc::SIGHUP);
    agent.wait_log("Config reload refused", Duration::from_secs(10));
    assert_eq!(send(9999), 200);
}

#[test]
fn port_in_use_names_component_and_port() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let cfg = vigil_tests::repo_root().join("agent/testdata/port_in_use.yaml");
    let mut agent = Agent::start_env(
        tempfile::tempdir().expect("tempdir"),
        &["--config".into(), cfg.display().to_string()],
        &[
            ("VIGIL_TEST_OTLP_PORT", free_port().to_string()),
            ("VIGIL_TEST_BUSY_PORT", port.to_string()),
        ],
    );
    let code = agent.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(1));
    let log = agent.logs();
    assert!(
        log.contains(&format!(
            "extensions::health_check: cannot listen on 127.0.0.1:{port}"
        )) && log.contains("the port is already in use"),
        "{log}"
    );
    drop(busy);
}
