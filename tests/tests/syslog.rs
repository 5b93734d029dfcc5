//! End-to-end tests of the `syslog` receiver: util-linux's real `logger` sends RFC 5424 and RFC 3164
//! messages over TCP and UDP to the `vigil` binary, and the records that reach the `file` exporter
//! carry the right severity, host, app and message.

use std::process::Command;
use std::time::Duration;
use vigil_tests::{eventually, free_port, free_udp_port, logger, read_json_lines, Agent};

fn hostname() -> String {
    let out = Command::new("hostname").output().expect("run hostname");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One record as the test checks it: message attribute -> (severity number, severity text, hostname, appname).
fn records(path: &std::path::Path) -> Vec<(String, i64, String, String, String)> {
    let attr = |r: &serde_json::Value, k: &str| {
        r["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|kv| kv["key"] == k)
            .and_then(|kv| kv["value"]["stringValue"].as_str())
            .unwrap_or("")
            .to_string()
    };
    let mut out = Vec::new();
    for l in read_json_lines(path) {
        for rl in l["resourceLogs"].as_array().into_iter().flatten() {
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    let sev = r["severityNumber"]
                        .as_i64()
                        .or_else(|| r["severityNumber"].as_str().and_then(|s| s.parse().ok()))
                        .unwrap_or(0);
                    out.push((
                        attr(r, "message"),
                        sev,
                        r["severityText"].as_str().unwrap_or("").to_string(),
                        attr(r, "hostname"),
                        attr(r, "appname"),
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn logger_over_tcp_and_udp_in_both_formats() {
    let lg = logger();
    let (t5424, t3164) = (free_port(), free_port());
    let (u5424, u3164) = (free_udp_port(), free_udp_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let yaml = format!(
        r#"
receivers:
  syslog/t5424:
    protocol: rfc5424
    tcp:
      listen_address: 127.0.0.1:{t5424}
  syslog/t3164:
    protocol: rfc3164
    location: UTC
    tcp:
      listen_address: 127.0.0.1:{t3164}
  syslog/u5424:
    protocol: rfc5424
    udp:
      listen_address: 127.0.0.1:{u5424}
  syslog/u3164:
    protocol: rfc3164
    udp:
      listen_address: 127.0.0.1:{u3164}
exporters:
  file:
    path: {out}
service:
  pipelines:
    logs:
      receivers: [syslog/t5424, syslog/t3164, syslog/u5424, syslog/u3164]
      exporters: [file]
  telemetry:
    metrics:
      level: none
"#,
        out = out.display()
    );
    let mut agent = Agent::with_config(&yaml);
    // Ready when the TCP ports accept.
    agent.wait_tcp(&[t5424, t3164], Duration::from_secs(30));
    let cases: [(&str, u16, &str, &str, &str, i64, &str); 4] = [
        (
            "--tcp",
            t5424,
            "--rfc5424",
            "user.err",
            "tcp 5424 message",
            17,
            "err",
        ),
        (
            "--tcp",
            t3164,
            "--rfc3164",
            "daemon.warning",
            "tcp 3164 message",
            13,
            "warning",
        ),
        (
            "--udp",
            u5424,
            "--rfc5424",
            "local0.crit",
            "udp 5424 message",
            18,
            "crit",
        ),
        (
            "--udp",
            u3164,
            "--rfc3164",
            "auth.info",
            "udp 3164 message",
            9,
            "info",
        ),
    ];
    let host = hostname();
    // UDP gives no delivery guarantee, so each message is resent until it shows up.
    for (proto, port, rfc, prio, msg, sev, text) in cases {
        let got = eventually(Duration::from_secs(30), msg, || {
            let st = Command::new(&lg)
                .args([
                    proto,
                    "--server",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    rfc,
                    "-p",
                    prio,
                    "-t",
                    "vigiltest",
                    msg,
                ])
                .status()
                .expect("run logger");
            assert!(st.success(), "logger failed: {st}");
            let recs = records(&out);
            recs.into_iter().find(|r| r.0 == msg)
        });
        assert_eq!((got.1, got.2.as_str()), (sev, text), "{msg}: severity");
        assert_eq!(got.4, "vigiltest", "{msg}: appname");
        assert!(
            got.3 == host || host.starts_with(&format!("{}.", got.3)),
            "{msg}: hostname {:?}, expected {host:?}",
            got.3
        );
    }
}
