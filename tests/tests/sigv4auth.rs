//! The `sigv4auth` extension signing `prometheusremotewrite` and `otlphttp` requests, checked by
//! botocore: `tests/python/sigv4_verify.py` computes each request's SigV4 signature again with
//! botocore's `SigV4Auth` from what it received (method, path, signed headers, body, time) and
//! answers 403 unless it equals vigil's. AWS itself cannot be reached here, and moto accepts no
//! remote-write or OTLP request (it checks signatures only for its own service APIs), so the
//! server is a stand-in; the signature check is botocore's own.
//!
//! Three authenticators at once: static keys from the environment; `assume_role` (STS
//! `AssumeRole`, signed with those keys, then the role's keys and session token); and
//! `web_identity_token_file` (`AssumeRoleWithWebIdentity`). The stand-in plays STS through
//! `AWS_ENDPOINT_URL_STS`, as the SDKs allow.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vigil_tests::{eventually, free_port, python, repo_root, write_config, Agent};

const WEB_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl";

struct Verifier {
    child: Child,
    url: String,
}

impl Drop for Verifier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Verifier {
    fn start() -> Verifier {
        let mut child = Command::new(python())
            .arg(repo_root().join("tests/python/sigv4_verify.py"))
            .arg(WEB_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/python/sigv4_verify.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the verifier's port");
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!("sigv4_verify.py printed {line:?}, not its port: is botocore in .venv?")
        });
        let port = v["port"].as_u64().expect("port");
        Verifier {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn results(&self) -> Vec<Value> {
        let v: Value = reqwest::blocking::get(format!("{}/results", self.url))
            .and_then(|r| r.json())
            .expect("GET /results");
        v.as_array().cloned().unwrap_or_default()
    }
}

fn gauge(value: f64) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("node".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue_depth".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: now,
                            value: Some(number_data_point::Value::AsDouble(value)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

#[test]
fn sigv4auth_signatures_are_botocores() {
    let verifier = Verifier::start();
    let v = &verifier.url;
    let http = free_port();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{WEB_TOKEN}\n")).unwrap();
    let yaml = format!(
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
extensions:
  sigv4auth:
    region: us-west-2
    service: aps
  sigv4_auth/role:
    region: us-west-2
    service: aps
    assume_role:
      arn: arn:aws:iam::123456789012:role/amp-writer
      session_name: vigil-e2e
      sts_region: eu-west-1
  sigv4auth/web:
    region: eu-central-1
    service: logs
    assume_role:
      arn: arn:aws:iam::123456789012:role/web
      web_identity_token_file: {token}
exporters:
  prometheusremotewrite:
    endpoint: {v}/workspaces/ws-1/api/v1/remote_write
    auth:
      authenticator: sigv4_auth/role
  prometheus_remote_write/base:
    endpoint: {v}/base/api/v1/remote_write?tenant=a%20b
    auth:
      authenticator: sigv4auth
  otlphttp:
    endpoint: {v}/otlp
    compression: gzip
    headers:
      x-tenant: \"a  b\"
    auth:
      authenticator: sigv4auth/web
service:
  extensions: [sigv4auth, sigv4_auth/role, sigv4auth/web]
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [prometheusremotewrite, prometheus_remote_write/base, otlphttp]
",
        token = token_file.display()
    );
    let cfg = write_config(dir.path(), "config.yaml", &yaml);
    let home = tempfile::tempdir().unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDBASE".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "base/secret+key".to_string()),
        ("AWS_SESSION_TOKEN", String::new()),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", String::new()),
        ("AWS_ENDPOINT_URL", String::new()),
        ("AWS_ENDPOINT_URL_STS", format!("{v}/sts/")),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ("HOME", home.path().display().to_string()),
    ];
    let mut agent = Agent::start_env(dir, &["--config".into(), cfg.display().to_string()], &env);
    agent.wait_tcp(&[http], Duration::from_secs(60));
    let status = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{http}/v1/metrics"))
        .header("content-type", "application/x-protobuf")
        .body(gauge(7.0))
        .send()
        .expect("POST /v1/metrics")
        .status();
    assert!(status.is_success(), "vigil answered {status}");

    let results = eventually(Duration::from_secs(60), "three signed exports", || {
        let r = verifier.results();
        let paths = ["/workspaces/", "/base/", "/otlp/"];
        paths
            .iter()
            .all(|p| {
                r.iter()
                    .any(|x| x["path"].as_str().is_some_and(|s| s.starts_with(p)))
            })
            .then_some(r)
    });
    let failed: Vec<&Value> = results.iter().filter(|r| r["ok"] != true).collect();
    assert!(
        failed.is_empty(),
        "signatures botocore disagrees with: {failed:#?}\n{}",
        agent.logs()
    );
    let find = |pred: &dyn Fn(&Value) -> bool| -> Value {
        results
            .iter()
            .find(|r| pred(r))
            .cloned()
            .unwrap_or_else(|| panic!("not among {results:#?}"))
    };
    // The role was assumed with the environment's keys, at STS in sts_region.
    let sts = find(&|r| r["action"] == "AssumeRole");
    assert_eq!(sts["akid"], "AKIDBASE");
    assert_eq!(sts["scope"], "eu-west-1/sts");
    assert_eq!(sts["session"], "vigil-e2e");
    assert_eq!(sts["role"], "arn:aws:iam::123456789012:role/amp-writer");
    let web = find(&|r| r["action"] == "AssumeRoleWithWebIdentity");
    assert_eq!(web["role"], "arn:aws:iam::123456789012:role/web");

    let amp = find(&|r| r["path"] == "/workspaces/ws-1/api/v1/remote_write");
    assert_eq!(amp["akid"], "AKIDROLE", "signed with the role's keys");
    assert_eq!(amp["scope"], "us-west-2/aps");
    assert_eq!(
        amp["signed"],
        "content-encoding;content-length;content-type;host;x-amz-date;x-amz-security-token;\
         x-prometheus-remote-write-version"
    );
    let base = find(&|r| r["path"] == "/base/api/v1/remote_write?tenant=a%20b");
    assert_eq!(base["akid"], "AKIDBASE");
    let otlp = find(&|r| r["path"] == "/otlp/v1/metrics");
    assert_eq!(otlp["akid"], "AKIDWEB");
    assert_eq!(otlp["scope"], "eu-central-1/logs");
    assert!(
        otlp["signed"]
            .as_str()
            .is_some_and(|s| s.contains("content-encoding") && s.contains("x-tenant")),
        "{otlp}"
    );

    // The check can fail: a signature that is not botocore's is refused and recorded.
    let forged = reqwest::blocking::Client::new()
        .post(format!("{v}/base/api/v1/remote_write"))
        .header("x-amz-date", "20261206T050000Z")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDBASE/20261206/us-west-2/aps/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=00",
        )
        .body("x")
        .send()
        .expect("forged POST")
        .status();
    assert_eq!(forged.as_u16(), 403);
    assert!(verifier.results().iter().any(|r| r["ok"] == false));

    let logs = agent.logs();
    for secret in ["base/secret+key", "role/secret+key", "web/secret+key"] {
        assert!(!logs.contains(secret), "a secret reached the log");
    }
    agent.stop_ok(Duration::from_secs(30));
}
