//! TLS and mutual TLS on the listeners beyond the OTLP receiver — `syslog` TCP, the `prometheus`
//! exporter's /metrics, `health_check` and `zpages` — with real clients: curl for the HTTP ones and
//! `openssl s_client` for syslog. The right client certificate is served; no certificate, one from
//! another CA, or an X.509 v1 one is refused at the handshake. Certificates rotated on disk are
//! served without a restart (`reload_interval`), and a broken file keeps the old one. The shipped
//! Kubernetes config passes `vigil validate` and exposes no port on the node.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use vigil_tests::pki::Pki;
use vigil_tests::{
    bin, debug_exporter_and_health, eventually, free_port, log_bodies, otlp_receiver,
    read_json_lines, Agent,
};

/// What these tests add to a [`Pki`]: an X.509 v1 client certificate.
trait V1Client {
    fn v1_client(&self) -> (String, String);
}

impl V1Client for Pki {
    /// A client certificate this CA signs as X.509 v1, the way `openssl x509 -req` makes one when
    /// no extensions are given.
    fn v1_client(&self) -> (String, String) {
        let (key, csr, pem) = (
            self.path("v1.key"),
            self.path("v1.csr"),
            self.path("v1.pem"),
        );
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &key,
        ]);
        openssl(&[
            "req",
            "-new",
            "-key",
            &key,
            "-subj",
            "/CN=v1 client",
            "-out",
            &csr,
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &self.path("ca.pem"),
            "-CAkey",
            &self.path("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &pem,
        ]);
        assert_v1(&pem);
        (pem, key)
    }
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl: install Debian's openssl package (scripts/test.sh lists it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_v1(pem: &str) {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in", pem])
        .output()
        .expect("run openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Version: 1 (0x0)"),
        "not a v1 certificate:\n{text}"
    );
}

/// What curl got: the HTTP status, or `None` when the connection or handshake failed.
fn curl(url: &str, ca: &str, client: Option<(&str, &str)>, extra: &[&str]) -> Option<u16> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["--max-time", "20", "--cacert", ca])
        .args(extra);
    if let Some((cert, key)) = client {
        cmd.args(["--cert", cert, "--key", key]);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("run curl: install Debian's curl package (scripts/test.sh lists it)");
    let code: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    (out.status.success() && code != 0).then_some(code)
}

/// Sends `lines` to a syslog TLS listener with `openssl s_client`, which closes after stdin ends.
fn s_client(port: u16, ca: &str, client: Option<(&str, &str)>, lines: &str) {
    let mut cmd = Command::new("timeout");
    cmd.args(["60", "openssl", "s_client", "-quiet", "-no_ign_eof"])
        .args(["-connect", &format!("127.0.0.1:{port}"), "-CAfile", ca]);
    if let Some((cert, key)) = client {
        cmd.args(["-cert", cert, "-key", key]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run openssl s_client");
    let mut stdin = child.stdin.take().expect("stdin");
    // A refused handshake may close the pipe first; that is the expected outcome then.
    let _ = stdin.write_all(lines.as_bytes());
    drop(stdin);
    let _ = child.wait();
}

/// The sum of every series of `name` on vigil's own metrics endpoint; `None` if it is not there.
fn metric(port: u16, name: &str, label: &str) -> Option<f64> {
    vigil_tests::metric_sum(port, name, label)
}

fn wait_served(agent: &mut Agent, url: &str, ca: &str, client: Option<(&str, &str)>) {
    eventually(Duration::from_secs(60), url, || {
        agent.assert_running();
        (curl(url, ca, client, &[]) == Some(200)).then_some(())
    });
}

fn rfc5424(run: &str) -> String {
    format!("<13>1 2024-01-01T00:00:00Z host app - - - {run}\n")
}

#[test]
fn every_listener_serves_tls_and_refuses_a_client_without_a_valid_certificate() {
    let pki = Pki::new("right");
    let other = Pki::new("other");
    let (v1_cert, v1_key) = pki.v1_client();
    let (otlp, syslog, prom, health, zpages, telemetry) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("logs.jsonl");
    let tls = pki.server_tls("");
    // zpages also narrows the suites: TLS 1.2 only with one ECDSA suite (rcgen's keys are ECDSA).
    let zpages_tls = pki.server_tls(
        ", max_version: \"1.2\", cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]",
    );
    let cfg = format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
  syslog:
    protocol: rfc5424
    tcp:
      listen_address: 127.0.0.1:{syslog}
      tls: {tls}
exporters:
  file:
    path: {out}
  prometheus:
    endpoint: 127.0.0.1:{prom}
    tls: {tls}
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
    tls: {tls}
  zpages:
    endpoint: 127.0.0.1:{zpages}
    tls: {zpages_tls}
service:
  extensions: [health_check, zpages]
  pipelines:
    logs: {{receivers: [syslog], exporters: [file]}}
    metrics: {{receivers: [otlp], exporters: [prometheus]}}
  telemetry:
    metrics:
      address: 127.0.0.1:{telemetry}
"#,
        out = out.display()
    );
    let mut agent = Agent::with_config(&cfg);
    let ca = pki.path("ca.pem");
    let right = (pki.path("client.pem"), pki.path("client.key"));
    let right = Some((right.0.as_str(), right.1.as_str()));
    let wrong = (other.path("client.pem"), other.path("client.key"));
    let wrong = Some((wrong.0.as_str(), wrong.1.as_str()));
    let v1 = Some((v1_cert.as_str(), v1_key.as_str()));
    let health_url = format!("https://127.0.0.1:{health}/");
    wait_served(&mut agent, &health_url, &ca, right);

    for url in [
        health_url.clone(),
        format!("https://127.0.0.1:{zpages}/debug/servicez"),
        format!("https://127.0.0.1:{prom}/metrics"),
    ] {
        assert_eq!(
            curl(&url, &ca, right, &[]),
            Some(200),
            "{url} with the client certificate"
        );
        assert_eq!(
            curl(&url, &ca, None, &[]),
            None,
            "{url} without a client certificate"
        );
        assert_eq!(
            curl(&url, &ca, wrong, &[]),
            None,
            "{url} with another CA's certificate"
        );
        assert_eq!(
            curl(&url, &ca, v1, &[]),
            None,
            "{url} with a v1 certificate"
        );
        let plain = url.replacen("https://", "http://", 1);
        assert_eq!(curl(&plain, &ca, None, &[]), None, "{plain} in plaintext");
    }
    // The suites and versions zpages was given are the only ones it speaks.
    let z = format!("https://127.0.0.1:{zpages}/debug/servicez");
    assert_eq!(
        curl(&z, &ca, right, &["--tlsv1.3"]),
        None,
        "TLS 1.3 on a 1.2-only listener"
    );
    assert_eq!(
        curl(
            &z,
            &ca,
            right,
            &[
                "--tls-max",
                "1.2",
                "--ciphers",
                "ECDHE-ECDSA-AES128-GCM-SHA256"
            ]
        ),
        None,
        "a suite not in cipher_suites"
    );
    assert_eq!(
        curl(
            &z,
            &ca,
            right,
            &[
                "--tls-max",
                "1.2",
                "--ciphers",
                "ECDHE-ECDSA-AES256-GCM-SHA384"
            ]
        ),
        Some(200)
    );

    // syslog: the refused clients first; once their handshakes are counted as failed, the right
    // one. Only its message may arrive.
    s_client(syslog, &ca, None, &rfc5424("no-cert"));
    s_client(syslog, &ca, wrong, &rfc5424("wrong-cert"));
    eventually(
        Duration::from_secs(60),
        "2 failed syslog handshakes",
        || {
            let n = metric(
                telemetry,
                "vigil_listener_tls_handshakes_failed",
                "receiver=\"syslog\"",
            )?;
            (n >= 2.0).then_some(())
        },
    );
    s_client(syslog, &ca, right, &rfc5424("right-cert"));
    let bodies = eventually(Duration::from_secs(60), "the syslog message", || {
        let b = log_bodies(&read_json_lines(&out));
        b.iter().any(|m| m.contains("right-cert")).then_some(b)
    });
    assert!(
        bodies.iter().all(|m| m.contains("right-cert")),
        "only the client with the right certificate is read: {bodies:?}"
    );
}

/// The agent's own metrics endpoint (`service::telemetry::metrics`) takes vigil's `tls:` block:
/// `/metrics` is served to a client with the CA's certificate and refused at the handshake without
/// one, or in plaintext; a bad `tls` fails `vigil validate` with its key path.
#[test]
fn the_own_metrics_endpoint_serves_mutual_tls() {
    let pki = Pki::new("right");
    let other = Pki::new("other");
    let (health, telemetry) = (free_port(), free_port());
    let tls = pki.server_tls("");
    let mut agent = Agent::with_config(&format!(
        r#"
{recv}{frame}  pipelines:
    traces: {{receivers: [otlp], exporters: [debug]}}
  telemetry:
    metrics:
      address: 127.0.0.1:{telemetry}
      tls: {tls}
"#,
        recv = otlp_receiver("http", free_port()),
        frame = debug_exporter_and_health(health),
    ));
    let ca = pki.path("ca.pem");
    let right = (pki.path("client.pem"), pki.path("client.key"));
    let right = Some((right.0.as_str(), right.1.as_str()));
    let wrong = (other.path("client.pem"), other.path("client.key"));
    let wrong = Some((wrong.0.as_str(), wrong.1.as_str()));
    let url = format!("https://127.0.0.1:{telemetry}/metrics");
    wait_served(&mut agent, &url, &ca, right);
    assert_eq!(
        curl(&url, &ca, None, &[]),
        None,
        "without a client certificate"
    );
    assert_eq!(
        curl(&url, &ca, wrong, &[]),
        None,
        "with another CA's certificate"
    );
    let plain = format!("http://127.0.0.1:{telemetry}/metrics");
    assert_eq!(curl(&plain, &ca, None, &[]), None, "in plaintext");
    // As otelcol's configtls: the files are read at start, not by validate (issue #18).
    let absent = r#"
receivers:
  otlp:
    protocols:
      http: {endpoint: "127.0.0.1:0"}
exporters:
  debug: {}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [debug]}
  telemetry:
    metrics:
      tls: {cert_file: /nonexistent/vigil.pem, key_file: /nonexistent/vigil.key}
"#;
    let (code, out) = validate(absent);
    assert_eq!(code, 0, "{out}");
    let mut agent = Agent::with_config(absent);
    let exit = agent.wait_exit(Duration::from_secs(20));
    let out = agent.logs();
    assert!(matches!(exit, Some(c) if c != 0), "{exit:?} {out}");
    assert!(
        out.contains("service::telemetry::metrics::tls::cert_file")
            && out.contains("/nonexistent/vigil.pem"),
        "{out}"
    );
}

/// Replaces a file in one step, as a secret mount or cert-manager does.
fn replace(path: &str, contents: &[u8]) {
    let tmp = format!("{path}.new");
    std::fs::write(&tmp, contents).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[test]
fn a_rotated_certificate_is_served_without_a_restart_and_a_broken_one_is_not() {
    let first = Pki::new("first");
    let second = Pki::new("second");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (
        dir.path().join("server.pem").display().to_string(),
        dir.path().join("server.key").display().to_string(),
    );
    std::fs::copy(first.path("server.pem"), &cert).expect("copy");
    std::fs::copy(first.path("server.key"), &key).expect("copy");
    let (health, syslog, telemetry) = (free_port(), free_port(), free_port());
    let out = dir.path().join("logs.jsonl");
    let tls = format!("{{cert_file: {cert}, key_file: {key}, reload_interval: 1s}}");
    let cfg = format!(
        r#"
receivers:
  syslog:
    protocol: rfc5424
    tcp:
      listen_address: 127.0.0.1:{syslog}
      tls: {tls}
exporters:
  file:
    path: {out}
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
    tls: {tls}
service:
  extensions: [health_check]
  pipelines:
    logs: {{receivers: [syslog], exporters: [file]}}
  telemetry:
    metrics:
      address: 127.0.0.1:{telemetry}
"#,
        out = out.display()
    );
    let mut agent = Agent::with_config(&cfg);
    let url = format!("https://127.0.0.1:{health}/");
    wait_served(&mut agent, &url, &first.path("ca.pem"), None);
    assert_eq!(curl(&url, &second.path("ca.pem"), None, &[]), None);

    // Rotate: the key first, then the certificate; a reload between the two sees a pair that does
    // not fit, fails, and keeps serving the old one until the next interval.
    replace(
        &key,
        &std::fs::read(second.path("server.key")).expect("read"),
    );
    replace(
        &cert,
        &std::fs::read(second.path("server.pem")).expect("read"),
    );
    wait_served(&mut agent, &url, &second.path("ca.pem"), None);
    eventually(
        Duration::from_secs(60),
        "syslog serves the new certificate",
        || {
            s_client(
                syslog,
                &second.path("ca.pem"),
                None,
                &rfc5424("after-rotation"),
            );
            let b = log_bodies(&read_json_lines(&out));
            b.iter().any(|m| m.contains("after-rotation")).then_some(())
        },
    );

    let failed_before = metric(
        telemetry,
        "vigil_listener_tls_reload_failures",
        "health_check",
    )
    .unwrap_or(0.0);
    replace(
        &cert,
        b"-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
    );
    eventually(Duration::from_secs(60), "a counted reload failure", || {
        let n = metric(
            telemetry,
            "vigil_listener_tls_reload_failures",
            "health_check",
        )?;
        (n > failed_before).then_some(())
    });
    assert_eq!(
        curl(&url, &second.path("ca.pem"), None, &[]),
        Some(200),
        "a broken file keeps the previous certificate; log:\n{}",
        agent.logs()
    );
    assert!(
        agent.logs().contains("TLS reload failed"),
        "{}",
        agent.logs()
    );
}

fn validate(config: &str) -> (i32, String) {
    validate_env(config, &[])
}

fn validate_env(config: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).expect("write config");
    let out = Command::new(bin("vigil"))
        .args(["validate", "--config"])
        .arg(&path)
        .envs(env.iter().copied())
        .output()
        .expect("run vigil validate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Go accepts X.509 v1 client certificates and rustls does not: a CA made as v1 is refused when
/// the file is read (at start, as otelcol's configtls reads it; `validate` reads no certificate),
/// naming the key and what to do, instead of every client failing at the handshake.
#[test]
fn an_x509_v1_client_ca_fails_start_with_a_clear_message() {
    let pki = Pki::new("v3");
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |f: &str| dir.path().join(f).display().to_string();
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &p("ca.key"),
    ]);
    openssl(&[
        "req",
        "-new",
        "-key",
        &p("ca.key"),
        "-subj",
        "/CN=v1 CA",
        "-out",
        &p("ca.csr"),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("ca.csr"),
        "-signkey",
        &p("ca.key"),
        "-days",
        "2",
        "-out",
        &p("ca.pem"),
    ]);
    assert_v1(&p("ca.pem"));
    let cfg = |ca: &str| {
        format!(
            r#"
receivers:
  syslog:
    protocol: rfc5424
    tcp:
      listen_address: 127.0.0.1:0
      tls: {{cert_file: {}, key_file: {}, client_ca_file: {ca}}}
exporters:
  debug:
extensions:
  health_check:
    endpoint: 127.0.0.1:0
    tls: {{cert_file: {}, key_file: {}, client_ca_file: {ca}}}
service:
  extensions: [health_check]
  pipelines:
    logs: {{receivers: [syslog], exporters: [debug]}}
"#,
            pki.path("server.pem"),
            pki.path("server.key"),
            pki.path("server.pem"),
            pki.path("server.key"),
        )
    };
    let mut agent = Agent::with_config(&cfg(&p("ca.pem")));
    let code = agent.wait_exit(Duration::from_secs(20));
    let err = agent.logs();
    assert!(matches!(code, Some(c) if c != 0), "{code:?} {err}");
    for key in [
        "extensions::health_check::tls::client_ca_file",
        "receivers::syslog::tcp::tls::client_ca_file",
    ] {
        assert!(err.contains(key), "names {key}: {err}");
    }
    assert!(err.contains("X.509 v1"), "{err}");
    let (code, err) = validate(&cfg(&pki.path("ca.pem")));
    assert_eq!(code, 0, "a v3 CA validates: {err}");
}

/// `otlphttp` with `tls::server_name_override`: the receiver's certificate names only `vigil.test`,
/// the exporter connects to 127.0.0.1 and verifies the certificate against the override. Without the
/// override the same export is refused by the exporter's verification, and nothing arrives.
#[test]
fn otlphttp_verifies_the_server_against_server_name_override() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let server_key = KeyPair::generate().expect("server key");
    let server = CertificateParams::new(vec!["vigil.test".to_string()])
        .expect("params")
        .signed_by(&server_key, &ca, &ca_key)
        .expect("server certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |f: &str| dir.path().join(f).display().to_string();
    std::fs::write(p("ca.pem"), ca.pem()).expect("write");
    std::fs::write(p("server.pem"), server.pem()).expect("write");
    std::fs::write(p("server.key"), server_key.serialize_pem()).expect("write");
    let (front, back, health) = (free_port(), free_port(), free_port());
    let out = dir.path().join("received.jsonl");
    let cfg = format!(
        r#"
receivers:
  otlp/front:
    protocols:
      http:
        endpoint: 127.0.0.1:{front}
  otlp/back:
    protocols:
      http:
        endpoint: 127.0.0.1:{back}
        tls: {{cert_file: {cert}, key_file: {key}}}
exporters:
  otlphttp/named:
    endpoint: https://127.0.0.1:{back}
    tls: {{ca_file: {ca}, server_name_override: vigil.test}}
    retry_on_failure: {{enabled: false}}
  otlphttp/unnamed:
    endpoint: https://127.0.0.1:{back}
    tls: {{ca_file: {ca}}}
    retry_on_failure: {{enabled: false}}
  file:
    path: {out}
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  pipelines:
    logs/front:
      receivers: [otlp/front]
      exporters: [otlphttp/named, otlphttp/unnamed]
    logs/back:
      receivers: [otlp/back]
      exporters: [file]
  telemetry:
    metrics:
      level: none
"#,
        cert = p("server.pem"),
        key = p("server.key"),
        ca = p("ca.pem"),
        out = out.display()
    );
    let mut agent = Agent::with_config(&cfg);
    agent.wait_http_ok(
        &format!("http://127.0.0.1:{health}/"),
        Duration::from_secs(60),
    );
    let body = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"over-named-tls"}}]}]}]}"#;
    let sent = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{front}/v1/logs"))
        .header("content-type", "application/json")
        .body(body)
        .timeout(Duration::from_secs(30))
        .send()
        .expect("send to the front receiver");
    // One of the two exporters fails, so the front answers with an error; what matters is what
    // arrives at the back.
    let _ = sent.status();
    eventually(Duration::from_secs(60), "the record at the back", || {
        let b = log_bodies(&read_json_lines(&out));
        b.iter().any(|m| m == "over-named-tls").then_some(())
    });
    eventually(
        Duration::from_secs(60),
        "the unnamed exporter's refusal",
        || {
            let logs = agent.logs();
            (logs.contains("otlphttp/unnamed") && logs.contains("vigil.test")
                || logs.contains("otlphttp/unnamed") && logs.contains("NotValidForName"))
            .then_some(())
        },
    );
    let n = log_bodies(&read_json_lines(&out))
        .iter()
        .filter(|m| *m == "over-named-tls")
        .count();
    assert_eq!(n, 1, "only the exporter with the override delivered");
}
