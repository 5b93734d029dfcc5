//! OTLP profiles end to end. A client built on the OpenTelemetry project's generated Python code
//! (`opentelemetry-proto` with `grpcio`, tests/python/profiles_otlp.py; no SDK publishes a profiles
//! exporter yet) sends one request over gRPC, OTLP/HTTP protobuf and OTLP/HTTP JSON to vigil A,
//! whose `profiles` pipeline runs `memory_limiter`, `resource` and the demo chart's `filter` and
//! exports with `otlp` to vigil B, which exports with both `otlp` and `otlphttp` to a sink built on
//! the same generated code. Every request must arrive at the sink, over both transports, equal
//! (deterministic protobuf bytes) to what was sent after A's processors: the dictionary and every
//! sample untouched, the filtered resource gone, the added attribute there. vigil's own counters
//! for the signal are read too.

use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vigil_tests::{
    eventually, free_port, health_check_and_service, metric_sum, python, read_json_lines,
    repo_root, Agent,
};

/// The sink process, killed on drop.
struct Sink(Child);

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn profiles_round_trip_over_grpc_and_http_through_two_agents() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("sink.jsonl");
    let (sink_grpc, sink_http) = (free_port(), free_port());
    let mut sink = Sink(
        Command::new(python())
            .arg(repo_root().join("tests/python/profiles_otlp.py"))
            .args(["sink", "--grpc-port", &sink_grpc.to_string()])
            .args(["--http-port", &sink_http.to_string()])
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the profiles sink"),
    );
    {
        use std::io::BufRead;
        let stdout = sink.0.stdout.take().expect("sink stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the sink's first line");
        assert_eq!(line.trim(), "ready", "the sink did not start");
    }

    // B: OTLP in, both OTLP exporters out to the sink.
    let (b_grpc, b_http, b_health) = (free_port(), free_port(), free_port());
    let b_cfg = format!(
        r#"{recv}exporters:
  otlp/sink:
    endpoint: 127.0.0.1:{sink_grpc}
    tls: {{insecure: true}}
  otlphttp/sink:
    endpoint: http://127.0.0.1:{sink_http}
{health}  pipelines:
    profiles:
      receivers: [otlp]
      exporters: [otlp/sink, otlphttp/sink]
  telemetry:
    metrics:
      level: none
"#,
        recv = vigil_tests::otlp_receiver_grpc_http(b_grpc, b_http, ""),
        health = health_check_and_service(b_health),
    );
    let mut b = Agent::with_config_file(
        dir.path(),
        "b.yaml",
        &b_cfg,
        &["--feature-gates=service.profilesSupport"],
    );
    b.wait_healthy(b_health, Duration::from_secs(30));

    // A: the demo chart's profiles processors, then OTLP over gRPC to B.
    let (a_grpc, a_http, a_health, a_metrics) =
        (free_port(), free_port(), free_port(), free_port());
    let a_cfg = format!(
        r#"{recv}processors:
  memory_limiter:
    check_interval: 1s
    limit_percentage: 90
    spike_limit_percentage: 20
  resource:
    attributes:
      - {{key: vigil.hop, value: a, action: insert}}
  filter/sanitize_profiles:
    error_mode: ignore
    profiles:
      profile:
        - IsMatch(resource.attributes["service.name"], "containerd-shim-.*")
exporters:
  otlp_grpc/b:
    endpoint: 127.0.0.1:{b_grpc}
    tls: {{insecure: true}}
{health}  pipelines:
    profiles:
      receivers: [otlp]
      processors: [memory_limiter, resource, filter/sanitize_profiles]
      exporters: [otlp_grpc/b]
  telemetry:
    metrics:
      address: 127.0.0.1:{a_metrics}
"#,
        recv = vigil_tests::otlp_receiver_grpc_http(a_grpc, a_http, ""),
        health = health_check_and_service(a_health),
    );
    let mut a = Agent::with_config_file(dir.path(), "a.yaml", &a_cfg, &[]);
    a.wait_healthy(a_health, Duration::from_secs(30));

    let sent = vigil_tests::python_script_json(
        &python(),
        "profiles_otlp.py",
        &[
            "send",
            "--grpc",
            &format!("127.0.0.1:{a_grpc}"),
            "--http",
            &format!("http://127.0.0.1:{a_http}/v1development/profiles"),
        ],
    );
    assert_eq!(
        sent,
        serde_json::json!({"grpc": "ok", "http_proto": 200, "http_json": 200}),
        "A's answers; log:\n{}",
        a.logs()
    );

    let start = std::time::Instant::now();
    let got = loop {
        let lines = read_json_lines(&out);
        if lines.len() >= 6 {
            break lines;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} of 6 requests at the sink: {lines:?}\nA:\n{}\nB:\n{}",
            lines.len(),
            a.logs(),
            b.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut arrived: Vec<(String, String)> = Vec::new();
    for l in &got {
        assert_eq!(
            l["equal"],
            true,
            "not what was sent: {l}\nA:\n{}\nB:\n{}",
            a.logs(),
            b.logs()
        );
        assert_eq!(l["samples"], 3, "{l}");
        arrived.push((
            l["transport"].as_str().unwrap_or_default().to_string(),
            l["via"].as_str().unwrap_or_default().to_string(),
        ));
    }
    arrived.sort();
    let mut want: Vec<(String, String)> = ["grpc", "http-json", "http-proto"]
        .iter()
        .flat_map(|t| {
            [
                (t.to_string(), "grpc".to_string()),
                (t.to_string(), "http".to_string()),
            ]
        })
        .collect();
    want.sort();
    assert_eq!(arrived, want);

    // A's own counters: what each receiver transport accepted (4 samples per request, the shim's
    // included), what the filter let through and what the exporter sent (3 per request).
    let count = |name: &str, label: &str| metric_sum(a_metrics, name, label).unwrap_or(-1.0);
    eventually(Duration::from_secs(10), "A's profile counters", || {
        (count("vigil_exporter_sent_profile_samples", "otlp_grpc/b") == 9.0).then_some(())
    });
    assert_eq!(
        count(
            "vigil_receiver_accepted_profile_samples",
            "transport=\"grpc\""
        ),
        4.0
    );
    assert_eq!(
        count(
            "vigil_receiver_accepted_profile_samples",
            "transport=\"http\""
        ),
        8.0
    );
    assert_eq!(
        count(
            "otelcol_processor_outgoing_items",
            "processor=\"filter/sanitize_profiles\""
        ),
        9.0
    );
    // A started without the gate: it runs, and says otelcol would not.
    assert!(
        a.logs().contains(
            "otelcol runs profiles pipelines only with --feature-gates=service.profilesSupport"
        ),
        "{}",
        a.logs()
    );
    a.stop_ok(Duration::from_secs(20));
    b.stop_ok(Duration::from_secs(20));
}
