//! Authentication and roles on the `otlp` receiver, end to end, with real clients: the OpenTelemetry
//! Python SDK (gRPC and HTTP) and curl. Each authenticator (`bearertokenauth`, `basicauth`, `oidc`)
//! serves the right credentials and refuses wrong and missing ones (401 / UNAUTHENTICATED); roles
//! refuse a signal a principal may not send (403), stamp its tenant on every resource and overwrite
//! a forged one; refusals are counted and no credential reaches the log.
//!
//! The OIDC issuer is `tests/python/oidc_issuer.py`, a local stand-in for an identity provider
//! (which cannot run here) that serves a real discovery document and JWKS and signs real JWTs with
//! PyJWT. The htpasswd file is written by Apache's `htpasswd` (Debian's apache2-utils).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vigil_tests::{
    eventually, file_exporter_and_health, free_port, metric_sum, otlp_receiver_grpc_http, python,
    python_script_json, repo_root, sdk_auth_export, spans_by_resource_attrs, Agent,
};

/// One SDK export of three spans; `"SUCCESS"` or `"FAILURE"`.
fn sdk(protocol: &str, endpoint: &str, run: &str, headers: &[String], attrs: &[&str]) -> String {
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    sdk_auth_export(protocol, endpoint, run, &headers, attrs)
}

/// curl POSTs an OTLP/JSON body to `url`; the HTTP status.
fn curl(url: &str, args: &[&str], body: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "30",
        ])
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("curl is installed (Debian's curl)");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

const TRACES_JSON: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"test.run","value":{"stringValue":"curl"}},{"key":"tenant.id","value":{"stringValue":"forged"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"c","kind":1,"startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}"#;
const LOGS_JSON: &str = r#"{"resourceLogs":[{"resource":{},"scopeLogs":[{"logRecords":[{"body":{"stringValue":"x"}}]}]}]}"#;

/// An agent with the otlp receiver on both transports behind `auth`, writing traces and logs to a
/// file, with its own metrics on a port of their own.
struct Setup {
    agent: Agent,
    grpc: String,
    http: String,
    metrics: u16,
    out: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn start(auth: &str, extensions_yaml: &str, extension_ids: &str) -> Setup {
    let (grpc, http, health, metrics) = (free_port(), free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("received.jsonl");
    let cfg = format!(
        r#"
{recv}exporters:
  file:
    path: {}
extensions:
{extensions_yaml}
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check, {extension_ids}]
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
    logs: {{receivers: [otlp], exporters: [file]}}
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#,
        out.display(),
        recv = otlp_receiver_grpc_http(grpc, http, &format!("auth: {auth}")),
    );
    let mut agent = Agent::with_config(&cfg);
    agent.wait_healthy(health, Duration::from_secs(60));
    Setup {
        agent,
        grpc: format!("http://127.0.0.1:{grpc}"),
        http: format!("http://127.0.0.1:{http}"),
        metrics,
        out,
        _dir: dir,
    }
}

impl Setup {
    /// `(test.run, tenant.id)` of every span received, sorted.
    fn spans(&self) -> Vec<(String, String)> {
        spans_by_resource_attrs(&self.out, "test.run", "tenant.id")
    }

    fn wait_spans(&self, n: usize) -> Vec<(String, String)> {
        eventually(
            Duration::from_secs(30),
            &format!("{n} spans in the file"),
            || {
                let s = self.spans();
                (s.len() >= n).then_some(s)
            },
        )
    }

    /// The sum of a counter of the agent's own metrics over its labels.
    fn counter(&self, name: &str) -> f64 {
        metric_sum(self.metrics, name, "").unwrap_or(0.0)
    }

    /// The agent's log holds none of `secrets`.
    fn assert_no_secret(&self, secrets: &[&str]) {
        let logs = self.agent.logs();
        for s in secrets {
            assert!(!logs.contains(s), "the log holds a credential ({s:?})");
        }
    }
}

fn run(run: &str, tenant: &str, n: usize) -> Vec<(String, String)> {
    vec![(run.to_string(), tenant.to_string()); n]
}

/// bearertokenauth with named tokens and roles: the SDK is served with its token on both
/// transports and gets its role's tenant in place of the one it forged; a wrong or missing token
/// is refused (401), a principal whose role does not allow traces is refused (403), and curl sees
/// the same codes.
#[test]
fn bearer_token_and_roles() {
    let s = start(
        "{authenticator: bearertokenauth, roles: [{principals: [team-a], signals: [traces], tenant: a}, {principals: [logger], signals: [logs]}]}",
        "  bearertokenauth:\n    tokens: [{token: tok-a, principal: team-a}, {token: tok-l, principal: logger}, tok-nobody]",
        "bearertokenauth",
    );
    let forged = ["tenant.id=forged"];
    for (p, url) in [("grpc", &s.grpc), ("http", &s.http)] {
        let ok = sdk(
            p,
            url,
            &format!("{p}-a"),
            &["authorization=Bearer tok-a".into()],
            &forged,
        );
        if ok != "SUCCESS" {
            eprintln!("{}", s.agent.logs());
        }
        assert_eq!(ok, "SUCCESS", "{p} with team-a's token");
        let wrong = sdk(p, url, "wrong", &["authorization=Bearer tok-x".into()], &[]);
        assert_eq!(wrong, "FAILURE", "{p} with a wrong token");
        assert_eq!(
            sdk(p, url, "none", &[], &[]),
            "FAILURE",
            "{p} without a token"
        );
        let logger = sdk(
            p,
            url,
            "logger",
            &["authorization=Bearer tok-l".into()],
            &[],
        );
        assert_eq!(logger, "FAILURE", "{p}: traces from a logs-only principal");
        let nobody = sdk(
            p,
            url,
            "nobody",
            &["authorization=Bearer tok-nobody".into()],
            &[],
        );
        assert_eq!(nobody, "FAILURE", "{p}: a principal with no role");
    }
    let traces = format!("{}/v1/traces", s.http);
    let logs = format!("{}/v1/logs", s.http);
    assert_eq!(
        curl(&traces, &["-H", "Authorization: Bearer tok-a"], TRACES_JSON),
        200
    );
    assert_eq!(curl(&traces, &[], TRACES_JSON), 401);
    assert_eq!(
        curl(&traces, &["-H", "Authorization: Bearer nope"], TRACES_JSON),
        401
    );
    assert_eq!(
        curl(&logs, &["-H", "Authorization: Bearer tok-a"], LOGS_JSON),
        403
    );
    assert_eq!(
        curl(&logs, &["-H", "Authorization: Bearer tok-l"], LOGS_JSON),
        200
    );
    assert_eq!(
        curl(
            &traces,
            &["-H", "Authorization: Bearer tok-nobody"],
            TRACES_JSON
        ),
        403
    );

    let mut want = run("curl", "a", 1);
    want.extend(run("grpc-a", "a", 3));
    want.extend(run("http-a", "a", 3));
    assert_eq!(
        s.wait_spans(7),
        want,
        "only team-a's spans, each stamped with tenant a"
    );
    // 2 wrong + 2 missing over the SDK, 2 over curl.
    assert_eq!(s.counter("vigil_receiver_requests_unauthenticated"), 6.0);
    // 2 logger + 2 nobody over the SDK, 2 over curl.
    assert_eq!(s.counter("vigil_receiver_requests_forbidden"), 6.0);
    s.assert_no_secret(&["tok-a", "tok-l", "tok-x", "tok-nobody", "nope"]);
}

fn htpasswd(args: &[&str]) -> String {
    let out = Command::new("htpasswd").args(args).output().expect(
        "htpasswd is installed: run scripts/test.sh, which installs Debian's apache2-utils",
    );
    assert!(out.status.success(), "htpasswd {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// basicauth with an htpasswd file written by Apache's htpasswd (bcrypt and SHA-1 entries): the
/// SDK and curl are served with the right password and refused (401) with a wrong one or none.
#[test]
fn basic_auth_with_an_htpasswd_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("htpasswd");
    let lines = [
        htpasswd(&["-nbB", "alice", "alice-pw"]),
        htpasswd(&["-nbs", "bob", "bob-pw"]),
    ];
    std::fs::write(&file, lines.join("\n") + "\n").expect("write htpasswd");
    let s = start(
        "{authenticator: basicauth, roles: [{principals: [alice], tenant: alice}, {principals: [bob], tenant: bob}]}",
        &format!("  basicauth:\n    htpasswd:\n      file: {}", file.display()),
        "basicauth",
    );
    // sdk_auth.py encodes it: `basic:user:password` becomes `authorization: Basic base64(...)`.
    let basic = |u: &str, p: &str| format!("basic:{u}:{p}");
    for (p, url) in [("grpc", &s.grpc), ("http", &s.http)] {
        let ok = sdk(
            p,
            url,
            &format!("{p}-alice"),
            &[basic("alice", "alice-pw")],
            &[],
        );
        if ok != "SUCCESS" {
            eprintln!("{}", s.agent.logs());
        }
        assert_eq!(ok, "SUCCESS", "{p} as alice (bcrypt)");
        let bob = sdk(p, url, &format!("{p}-bob"), &[basic("bob", "bob-pw")], &[]);
        assert_eq!(bob, "SUCCESS", "{p} as bob (SHA-1)");
        let wrong = sdk(p, url, "wrong", &[basic("alice", "bob-pw")], &[]);
        assert_eq!(wrong, "FAILURE", "{p} with a wrong password");
        assert_eq!(
            sdk(p, url, "none", &[], &[]),
            "FAILURE",
            "{p} without credentials"
        );
    }
    let traces = format!("{}/v1/traces", s.http);
    assert_eq!(curl(&traces, &["-u", "alice:alice-pw"], TRACES_JSON), 200);
    assert_eq!(curl(&traces, &["-u", "alice:wrong-pw"], TRACES_JSON), 401);
    assert_eq!(curl(&traces, &["-u", "mallory:alice-pw"], TRACES_JSON), 401);
    assert_eq!(curl(&traces, &[], TRACES_JSON), 401);
    let mut want = run("curl", "alice", 1);
    want.extend(run("grpc-alice", "alice", 3));
    want.extend(run("grpc-bob", "bob", 3));
    want.extend(run("http-alice", "alice", 3));
    want.extend(run("http-bob", "bob", 3));
    assert_eq!(s.wait_spans(13), want);
    assert_eq!(s.counter("vigil_receiver_requests_unauthenticated"), 7.0);
    s.assert_no_secret(&["alice-pw", "bob-pw", "wrong-pw"]);
}

/// The local issuer, killed on drop.
struct Issuer {
    child: Child,
    url: String,
}

impl Issuer {
    fn start() -> Issuer {
        let mut child = Command::new(python())
            .arg(repo_root().join("tests/python/oidc_issuer.py"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/python/oidc_issuer.py");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("issuer stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the issuer's port");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!(
                "the issuer printed {line:?}, not its port: run scripts/test.sh, which installs \
                 PyJWT and cryptography in .venv (tests/requirements.txt)"
            )
        });
        let port = v["port"].as_u64().expect("port");
        Issuer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn get(&self, path: &str) -> String {
        reqwest::blocking::get(format!("{}{path}", self.url))
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.text())
            .expect("the issuer answers")
    }

    fn jwks_fetches(&self) -> u64 {
        let v: serde_json::Value = serde_json::from_str(&self.get("/stats")).expect("stats");
        v["jwks_fetches"].as_u64().unwrap_or(0)
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// oidc against the local issuer: RS256 and ES256 ID tokens are accepted on both transports and
/// their groups select the role; an expired token, one for another audience or another issuer,
/// and a missing one are refused (401); a key rotated in at the issuer is fetched on its first
/// unknown `kid`.
#[test]
fn oidc_tokens_from_a_local_issuer() {
    let issuer = Issuer::start();
    let s = start(
        "{authenticator: oidc, roles: [{groups: [ops], tenant: ops}]}",
        &format!(
            "  oidc:\n    issuer_url: {}\n    audience: vigil\n    groups_claim: groups",
            issuer.url
        ),
        "oidc",
    );
    // Every token handed out, to check that none reaches the log.
    let minted = std::cell::RefCell::new(Vec::new());
    let token = |q: &str| {
        let t = issuer.get(&format!("/mint?{q}"));
        minted.borrow_mut().push(t.clone());
        format!("authorization=Bearer {t}")
    };
    for (p, url) in [("grpc", &s.grpc), ("http", &s.http)] {
        let rs = sdk(
            p,
            url,
            &format!("{p}-rs"),
            &[token("kid=rsa-1&groups=ops")],
            &[],
        );
        if rs != "SUCCESS" {
            eprintln!("{}", s.agent.logs());
        }
        assert_eq!(rs, "SUCCESS", "{p} with an RS256 token");
        let es = sdk(
            p,
            url,
            &format!("{p}-es"),
            &[token("kid=ec-1&groups=dev,ops")],
            &[],
        );
        assert_eq!(es, "SUCCESS", "{p} with an ES256 token");
        for (what, q) in [
            ("expired", "kid=rsa-1&groups=ops&exp=-600"),
            ("another audience", "kid=rsa-1&groups=ops&aud=other"),
            (
                "another issuer",
                "kid=rsa-1&groups=ops&iss=https://evil.example",
            ),
        ] {
            assert_eq!(
                sdk(p, url, "bad", &[token(q)], &[]),
                "FAILURE",
                "{p}: {what}"
            );
        }
        assert_eq!(
            sdk(p, url, "none", &[], &[]),
            "FAILURE",
            "{p} without a token"
        );
    }
    let traces = format!("{}/v1/traces", s.http);
    let bearer = |q: &str| {
        let t = issuer.get(&format!("/mint?{q}"));
        minted.borrow_mut().push(t.clone());
        format!("Authorization: Bearer {t}")
    };
    // Valid, but no role for the group dev.
    assert_eq!(
        curl(
            &traces,
            &["-H", &bearer("kid=rsa-1&groups=dev")],
            TRACES_JSON
        ),
        403
    );
    // A key the agent has not seen: refused while the issuer does not publish it...
    let before = issuer.jwks_fetches();
    assert_eq!(
        curl(
            &traces,
            &["-H", &bearer("kid=rsa-2&groups=ops")],
            TRACES_JSON
        ),
        401
    );
    assert_eq!(
        issuer.jwks_fetches(),
        before + 1,
        "an unknown kid fetches the key set again"
    );
    // ...and accepted once it does (its first use is at least 10 s after the last refetch).
    issuer.get("/rotate");
    let fresh = bearer("kid=rsa-2&groups=ops");
    eventually(Duration::from_secs(60), "the rotated key accepted", || {
        (curl(&traces, &["-H", &fresh], TRACES_JSON) == 200).then_some(())
    });
    let mut want = run("curl", "ops", 1);
    want.extend(run("grpc-es", "ops", 3));
    want.extend(run("grpc-rs", "ops", 3));
    want.extend(run("http-es", "ops", 3));
    want.extend(run("http-rs", "ops", 3));
    assert_eq!(s.wait_spans(13), want);
    assert!(s.counter("vigil_receiver_requests_unauthenticated") >= 9.0);
    assert_eq!(s.counter("vigil_receiver_requests_forbidden"), 1.0);
    // A JWT's signature is what makes it a credential; none may be logged.
    let signatures: Vec<String> = minted
        .borrow()
        .iter()
        .filter_map(|t| t.rsplit('.').next().map(str::to_string))
        .collect();
    s.assert_no_secret(&signatures.iter().map(String::as_str).collect::<Vec<_>>());
}

/// A CA, a server certificate for 127.0.0.1, and client certificates for the common names given,
/// written as PEM files.
fn pki(clients: &[&str]) -> tempfile::TempDir {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "vigil auth test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, pem: String| {
        std::fs::write(dir.path().join(name), pem).expect("write PEM");
    };
    let server_key = KeyPair::generate().expect("server key");
    let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("server params")
        .signed_by(&server_key, &ca, &ca_key)
        .expect("server certificate");
    write("ca.pem", ca.pem());
    write("server.pem", server.pem());
    write("server.key", server_key.serialize_pem());
    for cn in clients {
        let key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, *cn);
        let cert = params
            .signed_by(&key, &ca, &ca_key)
            .expect("client certificate");
        write(&format!("{cn}.pem"), cert.pem());
        write(&format!("{cn}.key"), key.serialize_pem());
    }
    dir
}

/// Roles by client certificate subject under mutual TLS, with no authenticator: the SDK with
/// agent-a's certificate is served and its spans carry tenant a (over the one it forged); with
/// agent-b's, which the CA also signed but no role names, it is refused (403 / PERMISSION_DENIED).
#[test]
fn roles_by_client_certificate_subject() {
    let certs = pki(&["agent-a", "agent-b"]);
    let p = |n: &str| certs.path().join(n).display().to_string();
    let (grpc, http, health) = (free_port(), free_port(), free_port());
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("received.jsonl");
    let server = format!(
        "tls: {{cert_file: {}, key_file: {}, client_ca_file: {}}}\n        auth: {{roles: [{{subjects: [\"CN=agent-a\"], tenant: a}}]}}",
        p("server.pem"),
        p("server.key"),
        p("ca.pem")
    );
    let cfg = format!(
        r#"
{recv}{frame}  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
  telemetry:
    metrics:
      level: none
"#,
        frame = file_exporter_and_health(&out, health),
        recv = otlp_receiver_grpc_http(grpc, http, &server),
    );
    let mut agent = Agent::with_config(&cfg);
    agent.wait_healthy(health, Duration::from_secs(60));
    let send = |protocol: &str, url: &str, client: &str, run: &str| {
        let (ca, cert, key) = (
            p("ca.pem"),
            p(&format!("{client}.pem")),
            p(&format!("{client}.key")),
        );
        let args = ["--protocol", protocol, "--endpoint", url, "--run", run];
        let certs = ["--ca", &ca, "--cert", &cert, "--key", &key];
        let v = python_script_json(&python(), "sdk_tls.py", &[&args[..], &certs[..]].concat());
        v["result"].as_str().unwrap_or_default().to_string()
    };
    for (protocol, url) in [
        ("grpc", format!("https://127.0.0.1:{grpc}")),
        ("http", format!("https://127.0.0.1:{http}")),
    ] {
        let ok = send(protocol, &url, "agent-a", &format!("{protocol}-a"));
        if ok != "SUCCESS" {
            eprintln!("{}", agent.logs());
        }
        assert_eq!(ok, "SUCCESS", "{protocol} as agent-a");
        assert_eq!(
            send(protocol, &url, "agent-b", "b"),
            "FAILURE",
            "{protocol} as agent-b"
        );
    }
    let tenants = eventually(Duration::from_secs(30), "6 spans in the file", || {
        let got = spans_by_resource_attrs(&out, "test.run", "tenant.id");
        (got.len() >= 6).then_some(got)
    });
    let mut want = run("grpc-a", "a", 3);
    want.extend(run("http-a", "a", 3));
    assert_eq!(tenants, want);
}
