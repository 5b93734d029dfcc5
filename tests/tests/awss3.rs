//! The `awss3` exporter against a local server that speaks the real S3 protocol (moto's
//! `moto_server`), checked with real clients: boto3 lists and reads the objects (key layout,
//! gzip, OTLP JSON and protobuf that decode), and DuckDB queries the OTLP JSON with hive
//! partitioning, as a data-lake user would. One exporter goes through a proxy that answers 503
//! to the first uploads and never answers the next ones: nothing is lost.

#[path = "support/moto.rs"]
mod moto;
#[path = "support/otlp_http.rs"]
mod otlp_http;

use moto::{flaky_proxy, moto};
use opentelemetry_proto::tonic::trace::v1::Span;
use std::sync::atomic::Ordering;
use std::time::Duration;
use vigil_tests::{eventually, free_port, python, python_script_json, repo_root, Agent};

/// One export of span `span` of traces `0..20` of `service`.
fn post(http: u16, service: &str, span: u8) {
    let svc = service.bytes().fold(0u8, |a, b| a.wrapping_add(b));
    let spans = (0..20u8)
        .map(|t| Span {
            trace_id: [[svc; 8], [t; 8]].concat(),
            span_id: vec![span + 1, t, svc, 0, 0, 0, 0, 1],
            name: format!("op-{span}"),
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_002_000_000,
            ..Default::default()
        })
        .collect();
    let status = otlp_http::post_spans(http, service, spans);
    assert!(status.is_success(), "vigil answered {status}");
}

#[test]
fn objects_are_partitioned_decodable_and_queryable_and_503s_lose_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (moto_port, proxy_port, http, health) =
        (free_port(), free_port(), free_port(), free_port());
    let _moto = moto(moto_port);
    let endpoint = format!("http://127.0.0.1:{moto_port}");
    let py = python();
    python_script_json(
        &py,
        "s3_lake.py",
        &["create", "--endpoint", &endpoint, "--bucket", "lake"],
    );
    let puts = flaky_proxy(
        &rt,
        proxy_port,
        moto_port,
        3,
        2,
        |p| p.method == axum::http::Method::PUT,
        "<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>",
    );

    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
exporters:
  awss3/json:
    s3uploader:
      region: us-east-1
      s3_bucket: lake
      s3_prefix: otel/raw
      file_prefix: node-a_
      endpoint: http://127.0.0.1:{proxy_port}
      s3_force_path_style: true
      compression: gzip
    timeout: 1s
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 500ms
      max_elapsed_time: 0s
  awss3/proto:
    s3uploader:
      s3_bucket: lake
      s3_prefix: otel/proto
      endpoint: 127.0.0.1:{moto_port}
      disable_ssl: true
      s3_force_path_style: true
    marshaler: otlp_proto
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [awss3/json, awss3/proto]}}
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

    for service in ["cart", "checkout", "payment"] {
        for span in 0..3u8 {
            post(http, service, span);
        }
    }

    let lake = dir.path().join("lake");
    let script_args = [
        "check",
        "--endpoint",
        &endpoint,
        "--bucket",
        "lake",
        "--dir",
        lake.to_str().unwrap(),
        "--json-prefix",
        "otel/raw",
        "--proto-prefix",
        "otel/proto",
        "--file-prefix",
        "node-a_",
    ];
    let _ = repo_root();
    let report = eventually(Duration::from_secs(120), "180 spans in each layout", || {
        let _ = std::fs::remove_dir_all(&lake);
        let r = python_script_json(&py, "s3_lake.py", &script_args);
        (r["json_spans"] == 180 && r["proto_spans"] == 180).then_some(r)
    });
    println!("awss3: {report}");
    assert_eq!(
        report["bad_keys"],
        serde_json::json!([]),
        "keys outside the layout"
    );
    assert_eq!(
        report["json_ids"], 180,
        "distinct spans in the JSON objects"
    );
    assert_eq!(
        report["proto_ids"], 180,
        "distinct spans in the protobuf objects"
    );
    let duck = &report["duckdb"];
    assert_eq!(
        duck["per_service"],
        serde_json::json!([["cart", 60, 20], ["checkout", 60, 20], ["payment", 60, 20]]),
        "DuckDB over the lake: spans and traces per service"
    );
    assert!(duck["year"].as_i64().is_some_and(|y| y >= 2025), "{duck}");
    assert_eq!(duck["spans_in_1999"], 0, "a pruned partition holds nothing");
    assert!(
        puts.load(Ordering::SeqCst) >= 9 + 5,
        "the proxy refused 3 uploads and stalled 2 before the 9 that went through"
    );
    agent.stop_ok(Duration::from_secs(30));
}
