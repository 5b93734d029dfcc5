//! End-to-end tests of the `tcplog` and `udplog` receivers: util-linux's real `logger` sends lines
//! over TCP and UDP to the `vigil` binary (the receivers configured under otelcol's new and old
//! spellings, `tcp_log` and `udplog`), and the records that reach the `file` exporter carry the line,
//! the fields a `regex_parser` took out of it, and the `net.*` attributes.

use std::process::Command;
use std::time::Duration;
use vigil_tests::{eventually, free_port, free_udp_port, logger, read_json_lines, Agent};

/// Each record's attributes, as `key -> text`.
fn records(path: &std::path::Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut out = Vec::new();
    for l in read_json_lines(path) {
        for rl in l["resourceLogs"].as_array().into_iter().flatten() {
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    let mut m = std::collections::BTreeMap::new();
                    m.insert(
                        "<body>".to_string(),
                        r["body"]["stringValue"].as_str().unwrap_or("").to_string(),
                    );
                    for kv in r["attributes"].as_array().into_iter().flatten() {
                        let v = &kv["value"];
                        let text = v["stringValue"]
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string());
                        m.insert(kv["key"].as_str().unwrap_or("").to_string(), text);
                    }
                    out.push(m);
                }
            }
        }
    }
    out
}

#[test]
fn logger_lines_over_tcp_and_udp() {
    let lg = logger();
    let tcp = free_port();
    let udp = free_udp_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let yaml = format!(
        r#"
receivers:
  tcp_log:
    listen_address: 127.0.0.1:{tcp}
    add_attributes: true
    attributes:
      via: tcp
    operators:
      - type: regex_parser
        regex: '^<(?P<pri>\d+)>.* (?P<tag>vigiltest)(\[\d+\])?: (?P<msg>.*)$'
  udplog:
    listen_address: 127.0.0.1:{udp}
    add_attributes: true
    attributes:
      via: udp
    operators:
      - type: regex_parser
        regex: '^<(?P<pri>\d+)>.* (?P<tag>vigiltest)(\[\d+\])?: (?P<msg>.*)$'
exporters:
  file:
    path: {out}
service:
  pipelines:
    logs:
      receivers: [tcp_log, udplog]
      exporters: [file]
  telemetry:
    metrics:
      level: none
"#,
        out = out.display()
    );
    let mut agent = Agent::with_config(&yaml);
    agent.wait_tcp(&[tcp], Duration::from_secs(30));
    for (proto, port, msg, via, transport) in [
        ("--tcp", tcp, "a line over tcp", "tcp", "IP.TCP"),
        ("--udp", udp, "a line over udp", "udp", "IP.UDP"),
    ] {
        // UDP gives no delivery guarantee, so each message is resent until it shows up.
        let got = eventually(Duration::from_secs(30), msg, || {
            let st = Command::new(&lg)
                .args([
                    proto,
                    "--server",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--rfc3164",
                    "-p",
                    "user.warning",
                    "-t",
                    "vigiltest",
                    msg,
                ])
                .status()
                .expect("run logger");
            assert!(st.success(), "logger failed: {st}");
            records(&out)
                .into_iter()
                .find(|r| r.get("msg").map(String::as_str) == Some(msg))
        });
        assert_eq!(got["via"], via, "{got:?}");
        // user.warning: facility 1, severity 4.
        assert_eq!(got["pri"], "12", "{got:?}");
        assert_eq!(got["tag"], "vigiltest", "{got:?}");
        assert!(got["<body>"].ends_with(msg), "{got:?}");
        assert_eq!(got["net.transport"], transport, "{got:?}");
        assert_eq!(got["net.peer.ip"], "127.0.0.1", "{got:?}");
        assert_eq!(got["net.host.port"], port.to_string(), "{got:?}");
    }
}
