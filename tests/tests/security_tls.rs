//! TLS and mutual TLS on the `otlp` receiver with the real OpenTelemetry Python SDK as the client:
//! with the CA and a client certificate the CA signed, export succeeds over gRPC and over HTTP;
//! without the client certificate it is refused at the handshake, and nothing arrives.

use std::process::Command;
use std::time::Duration;
use vigil_tests::pki::Pki;
use vigil_tests::{
    eventually, file_exporter_and_health, free_port, metric_sum, otlp_receiver_grpc_http, python,
    repo_root, spans_by_resource_attrs, Agent,
};

fn export(pki: &Pki, protocol: &str, endpoint: &str, with_cert: bool, run: &str) -> String {
    export_with(pki, protocol, endpoint, with_cert, None, run)
}

fn export_with(
    pki: &Pki,
    protocol: &str,
    endpoint: &str,
    with_cert: bool,
    token: Option<&str>,
    run: &str,
) -> String {
    let mut cmd = Command::new(python());
    cmd.arg(repo_root().join("tests/python/sdk_tls.py"))
        .args(["--protocol", protocol, "--endpoint", endpoint, "--run", run])
        .args(["--ca", &pki.path("ca.pem")]);
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    if with_cert {
        cmd.args([
            "--cert",
            &pki.path("client.pem"),
            "--key",
            &pki.path("client.key"),
        ]);
    }
    let out = cmd.output().expect("run the SDK script");
    assert!(
        out.status.success(),
        "SDK script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("SDK script prints JSON");
    let result = v["result"].as_str().unwrap_or_default().to_string();
    if (result == "SUCCESS") != (with_cert && token != Some("wrong")) {
        eprintln!("{protocol} {run}: {}", String::from_utf8_lossy(&out.stderr));
    }
    result
}

#[test]
fn sdk_with_and_without_a_client_certificate() {
    let pki = Pki::new("vigil test");
    let (grpc, http, health) = (free_port(), free_port(), free_port());
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("received.jsonl");
    let tls = format!("tls: {}", pki.server_tls(""));
    let cfg = format!(
        r#"
{recv}{frame}  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
  telemetry:
    metrics:
      level: none
"#,
        frame = file_exporter_and_health(&out, health),
        recv = otlp_receiver_grpc_http(grpc, http, &tls),
    );
    let mut agent = Agent::with_config(&cfg);
    agent.wait_healthy(health, Duration::from_secs(30));
    let grpc_url = format!("https://127.0.0.1:{grpc}");
    let http_url = format!("https://127.0.0.1:{http}");
    let ok = export(&pki, "grpc", &grpc_url, true, "g-ok");
    if ok != "SUCCESS" {
        eprintln!("{}", agent.logs());
    }
    assert_eq!(ok, "SUCCESS");
    assert_eq!(export(&pki, "http", &http_url, true, "h-ok"), "SUCCESS");
    assert_eq!(export(&pki, "grpc", &grpc_url, false, "g-no"), "FAILURE");
    assert_eq!(export(&pki, "http", &http_url, false, "h-no"), "FAILURE");
    let got = eventually(Duration::from_secs(30), "6 spans in the file", || {
        let r: Vec<String> = spans_by_resource_attrs(&out, "test.run", "tenant.id")
            .into_iter()
            .map(|(run, _)| run)
            .collect();
        (r.len() >= 6).then_some(r)
    });
    let want: Vec<String> = ["g-ok", "g-ok", "g-ok", "h-ok", "h-ok", "h-ok"]
        .map(String::from)
        .to_vec();
    assert_eq!(
        got, want,
        "only the exports with a client certificate arrive"
    );
}

/// With `auth: {authenticator: bearertokenauth}` (and server TLS), the SDK is served with the right
/// bearer token and refused with a wrong or missing one, over gRPC and HTTP.
#[test]
fn sdk_with_a_bearer_token() {
    let pki = Pki::new("vigil test");
    let (grpc, http, health) = (free_port(), free_port(), free_port());
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("received.jsonl");
    let server = format!(
        "tls: {{cert_file: {}, key_file: {}}}\n        auth: {{authenticator: bearertokenauth}}",
        pki.path("server.pem"),
        pki.path("server.key"),
    );
    let cfg = format!(
        r#"
{recv}exporters:
  file:
    path: {}
extensions:
  bearertokenauth:
    token: s3cret
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check, bearertokenauth]
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
  telemetry:
    metrics:
      level: none
"#,
        out.display(),
        recv = otlp_receiver_grpc_http(grpc, http, &server),
    );
    let mut agent = Agent::with_config(&cfg);
    agent.wait_healthy(health, Duration::from_secs(30));
    let grpc_url = format!("https://127.0.0.1:{grpc}");
    let http_url = format!("https://127.0.0.1:{http}");
    for (protocol, url) in [("grpc", &grpc_url), ("http", &http_url)] {
        let ok = export_with(
            &pki,
            protocol,
            url,
            true,
            Some("s3cret"),
            &format!("{protocol}-ok"),
        );
        if ok != "SUCCESS" {
            eprintln!("{}", agent.logs());
        }
        assert_eq!(ok, "SUCCESS", "{protocol} with the token");
        let wrong = export_with(&pki, protocol, url, true, Some("wrong"), "wrong");
        assert_eq!(wrong, "FAILURE", "{protocol} with a wrong token");
        let none = export_with(&pki, protocol, url, false, None, "none");
        assert_eq!(none, "FAILURE", "{protocol} without a token");
    }
    let got = eventually(Duration::from_secs(30), "6 spans in the file", || {
        let n = spans_by_resource_attrs(&out, "test.run", "tenant.id")
            .iter()
            .filter(|(run, _)| run.ends_with("-ok"))
            .count();
        (n >= 6).then_some(n)
    });
    assert_eq!(got, 6);
    let logs = agent.logs();
    assert!(
        !logs.contains("s3cret") && !logs.contains("wrong"),
        "a credential was logged"
    );
}

/// The `otlp` (gRPC) exporter's `tls::min_version` against real `otlp` receivers of the same agent:
/// one offering only TLS 1.3, one only TLS 1.2. An exporter asking for 1.3 delivers to the first and
/// is refused at the handshake by the second, which is a transport failure: retried, never dropped
/// as permanent, and nothing reaches the 1.2 receiver.
#[test]
fn grpc_exporter_min_version_13_against_receivers_offering_13_and_12() {
    let pki = Pki::new("vigil test");
    let (http_in, v13, v12, health, metrics) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (out13, out12) = (dir.path().join("13.jsonl"), dir.path().join("12.jsonl"));
    let server = |range: &str| {
        format!(
            "{{cert_file: {}, key_file: {}, {range}}}",
            pki.path("server.pem"),
            pki.path("server.key")
        )
    };
    let client = format!("{{ca_file: {}, min_version: \"1.3\"}}", pki.path("ca.pem"));
    let cfg = format!(
        r#"
receivers:
  otlp/in:
    protocols:
      http: {{endpoint: "127.0.0.1:{http_in}"}}
  otlp/v13:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{v13}", tls: {tls13}}}
  otlp/v12:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{v12}", tls: {tls12}}}
exporters:
  otlp/to13:
    endpoint: localhost:{v13}
    tls: {client}
  otlp/to12:
    endpoint: localhost:{v12}
    tls: {client}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 200ms}}
  file/13: {{path: {out13}}}
  file/12: {{path: {out12}}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{health}"}}
service:
  extensions: [health_check]
  pipelines:
    traces/in: {{receivers: [otlp/in], exporters: [otlp/to13, otlp/to12]}}
    traces/13: {{receivers: [otlp/v13], exporters: [file/13]}}
    traces/12: {{receivers: [otlp/v12], exporters: [file/12]}}
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#,
        tls13 = server("min_version: \"1.3\""),
        tls12 = server("max_version: \"1.2\""),
        out13 = out13.display(),
        out12 = out12.display(),
    );
    let mut agent = Agent::with_config(&cfg);
    agent.wait_healthy(health, Duration::from_secs(30));
    let body = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"test.run","value":{"stringValue":"v13"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"s","kind":1,"startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}"#;
    let code = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{http_in}/v1/traces"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .expect("POST to otlp/in")
        .status()
        .as_u16();
    assert_eq!(code, 200);
    eventually(
        Duration::from_secs(30),
        "the span at the TLS 1.3 receiver",
        || (spans_by_resource_attrs(&out13, "test.run", "x").len() == 1).then_some(()),
    );
    // The 1.2-only receiver refuses the handshake again and again: the exporter logs a retry.
    eventually(
        Duration::from_secs(30),
        "a retried handshake failure",
        || {
            let logs = agent.logs();
            (logs.contains("otlp/to12") && logs.contains("will retry")).then_some(())
        },
    );
    let logs = agent.logs();
    assert!(
        !logs.contains("refused them permanently"),
        "a handshake failure was taken as permanent:\n{logs}"
    );
    assert!(spans_by_resource_attrs(&out12, "test.run", "x").is_empty());
    assert_eq!(
        metric_sum(metrics, "otelcol_exporter_send_failed_spans", "otlp/to12").unwrap_or(0.0),
        0.0,
        "nothing dropped while the backend refuses"
    );
    assert_eq!(
        metric_sum(metrics, "otelcol_exporter_sent_spans", "otlp/to13"),
        Some(1.0)
    );
}
