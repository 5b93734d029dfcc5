//! End-to-end test of the `awsxray` receiver: the AWS X-Ray SDK for Python (`aws-xray-sdk` in the
//! test venv) sends a trace's segment documents over UDP to the `vigil` binary, as to the X-Ray
//! daemon, and the `file` exporter's spans hold the SDK's ids, the parent of each subsegment, the
//! HTTP attributes and the error status. Once with the subsegments embedded in their segment, once
//! streamed as documents of their own; a datagram without X-Ray's header is refused and counted.
//! The SDK's sampling call to `proxy_server` reaches "X-Ray" (a one-request HTTP double standing for
//! it, since X-Ray cannot run here; the proxy is tested against moto as the `awsproxy` extension in
//! aws.rs) signed with SigV4 for `xray` in the region.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;
use vigil_tests::{
    eventually, free_port, free_udp_port, metric_sum, otlp_attr, otlp_attr_str, python,
    python_script_json, read_json_lines, write_config, Agent,
};

/// Answers one HTTP request with X-Ray's empty rule list; returns the request's head, lower-cased.
fn one_request_xray(listener: std::net::TcpListener) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let Ok((conn, _)) = listener.accept() else {
            return String::new();
        };
        let mut r = BufReader::new(conn);
        let mut head = String::new();
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            let l = line.to_ascii_lowercase();
            if let Some(v) = l.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            head.push_str(&l);
        }
        let mut body = vec![0; len];
        let _ = r.read_exact(&mut body);
        let answer = r#"{"SamplingRuleRecords":[]}"#;
        let _ = write!(
            r.get_mut(),
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
            answer.len()
        );
        head
    })
}

/// Every span in the file, with its resource's `service.name`.
fn spans(out: &std::path::Path) -> Vec<(String, serde_json::Value)> {
    let mut v = Vec::new();
    for l in read_json_lines(out) {
        for rs in l["resourceSpans"].as_array().into_iter().flatten() {
            let svc = otlp_attr_str(&rs["resource"]["attributes"], "service.name");
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    v.push((svc.clone(), s.clone()));
                }
            }
        }
    }
    v
}

/// OTLP/JSON ids are hex; X-Ray's trace id is the same 32 digits after `1-` with the dash dropped.
fn otlp_trace_id(xray: &str) -> String {
    xray.trim_start_matches("1-").replace('-', "")
}

fn int(v: Option<&serde_json::Value>) -> i64 {
    v.and_then(|v| {
        v["intValue"]
            .as_i64()
            .or_else(|| v["intValue"].as_str()?.parse().ok())
    })
    .unwrap_or(i64::MIN)
}

#[test]
fn xray_sdk_segments_become_spans() {
    let python = python();
    let (udp, proxy, metrics) = (free_udp_port(), free_port(), free_port());
    let xray = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let xray_port = xray.local_addr().expect("addr").port();
    let xray = one_request_xray(xray);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let yaml = format!(
        r#"
receivers:
  aws_xray:
    endpoint: 127.0.0.1:{udp}
    transport: udp
    proxy_server:
      endpoint: 127.0.0.1:{proxy}
      region: us-east-1
      local_mode: true
      aws_endpoint: http://127.0.0.1:{xray_port}
exporters:
  file:
    path: {out}
service:
  pipelines:
    traces:
      receivers: [aws_xray]
      exporters: [file]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#,
        out = out.display()
    );
    let cfg = write_config(dir.path(), "config.yaml", &yaml);
    let mut agent = Agent::start_env(
        tempfile::tempdir().expect("tempdir"),
        &["--config".into(), cfg.display().to_string()],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDXRAYTEST".into()),
            ("AWS_SECRET_ACCESS_KEY", "secret".into()),
        ],
    );
    // The proxy's TCP port is bound after the UDP socket: once it answers, segments are read.
    agent.wait_tcp(&[proxy], Duration::from_secs(30));

    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    sock.send_to(b"{\"format\":\"xml\"}\n{}", ("127.0.0.1", udp))
        .expect("send");
    let daemon = format!("127.0.0.1:{udp}");
    let embedded = python_script_json(&python, "xray_sdk_emit.py", &[daemon.as_str()]);
    let streamed = python_script_json(&python, "xray_sdk_emit.py", &[daemon.as_str(), "--stream"]);
    eventually(Duration::from_secs(30), "8 spans in the file", || {
        (spans(&out).len() >= 8).then_some(())
    });
    eventually(
        Duration::from_secs(30),
        "the refused datagram counted",
        || {
            metric_sum(
                metrics,
                "otelcol_receiver_refused_spans",
                "transport=\"udp\"",
            )
            .filter(|n| *n >= 1.0)
        },
    );
    assert_eq!(
        metric_sum(
            metrics,
            "otelcol_receiver_accepted_spans",
            "transport=\"udp\""
        ),
        Some(8.0)
    );

    // The SDK's centralized-sampling call, unsigned as SDKs send it, through proxy_server.
    let resp = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{proxy}/GetSamplingRules"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .expect("POST through proxy_server");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.text().unwrap_or_default(),
        r#"{"SamplingRuleRecords":[]}"#
    );
    let head = xray.join().unwrap_or_default();
    assert!(head.starts_with("post /getsamplingrules "), "{head}");
    assert!(
        head.contains("authorization: aws4-hmac-sha256 credential=akidxraytest/")
            && head.contains("/us-east-1/xray/aws4_request"),
        "{head}"
    );
    agent.stop_ok(Duration::from_secs(20));
    let all = spans(&out);
    assert_eq!(all.len(), 8, "{all:#?}");

    for ids in [&embedded, &streamed] {
        let trace = otlp_trace_id(ids["trace_id"].as_str().unwrap_or_default());
        let mine: Vec<&serde_json::Value> = all
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s["traceId"] == trace.as_str())
            .collect();
        assert_eq!(mine.len(), 4, "trace {trace}: {all:#?}");
        let by_id = |k: &str| {
            let id = ids[k].as_str().unwrap_or_default();
            *mine
                .iter()
                .find(|s| s["spanId"] == id)
                .unwrap_or_else(|| panic!("no span {k} ({id}) in {mine:#?}"))
        };
        let root = by_id("segment");
        assert_eq!(root["name"], "checkout");
        assert_eq!(root["kind"], 2, "a segment is a server span");
        assert!(root["parentSpanId"].as_str().unwrap_or_default().is_empty());
        assert_eq!(otlp_attr_str(&root["attributes"], "http.method"), "GET");
        assert_eq!(
            otlp_attr_str(&root["attributes"], "http.url"),
            "http://shop.example.com/cart?id=7"
        );
        assert_eq!(int(otlp_attr(&root["attributes"], "http.status_code")), 500);
        assert_eq!(root["status"]["code"], 2, "a 500 is an error");
        assert_eq!(otlp_attr_str(&root["attributes"], "customer"), "c-42");
        for k in ["db", "remote", "render"] {
            assert_eq!(by_id(k)["parentSpanId"], ids["segment"], "{k}");
        }
        let remote = by_id("remote");
        assert_eq!(remote["name"], "payments.example.com");
        assert_eq!(remote["kind"], 3, "a remote call is a client span");
        assert_eq!(
            int(otlp_attr(&remote["attributes"], "http.status_code")),
            404
        );
        assert_eq!(remote["status"]["code"], 2);
        let db = by_id("db");
        assert_eq!(otlp_attr_str(&db["attributes"], "db.name"), "orders");
        assert!(db["status"]["code"].as_i64().unwrap_or(0) != 2);
        let render = by_id("render");
        assert_eq!(render["status"]["code"], 2);
        assert_eq!(render["events"][0]["name"], "exception");
        assert_eq!(
            otlp_attr_str(&render["events"][0]["attributes"], "exception.message"),
            "template missing"
        );
    }
    // Streamed, the remote call is a document of its own: a resource named after it, as otelcol does.
    let streamed_remote = ids_span(&all, &streamed, "remote");
    assert_eq!(streamed_remote, "payments.example.com");
}

fn ids_span(all: &[(String, serde_json::Value)], ids: &serde_json::Value, k: &str) -> String {
    all.iter()
        .find(|(_, s)| s["spanId"] == ids[k])
        .map(|(svc, _)| svc.clone())
        .unwrap_or_default()
}
