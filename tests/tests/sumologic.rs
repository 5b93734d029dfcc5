//! End-to-end test of the `sumologic` extension and exporter in the `vigil` binary. Sumo Logic's
//! API cannot run here, so a double on a raw socket plays it in the shapes Sumo documents: the
//! collector register call (`Authorization: Bearer <installation token>`, answering the
//! collector credentials as JSON), heartbeats (Basic with those credentials, 204), and the
//! collector data endpoints `/api/v1/collector/{logs,metrics,traces}` taking gzipped OTLP
//! protobuf with the same Basic credentials. Faults are injected on the data path: the first
//! request is answered 503 and the second has its connection reset without an answer; every
//! record must still arrive exactly once.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_tests::{eventually, free_port, Agent};

const CRED: &str = "Y3JlZC1pZDpjcmVkLWtleQ=="; // base64("cred-id:cred-key")

#[derive(Default)]
struct Seen {
    registrations: Vec<(String, serde_json::Value)>,
    heartbeats: Vec<String>,
    /// Per accepted data request: path, headers, gunzipped body.
    data: Vec<(String, BTreeMap<String, String>, Vec<u8>)>,
    /// Data requests refused (503) or reset.
    faults: usize,
}

struct Request {
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let n: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; n];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        path,
        headers,
        body,
    })
}

fn answer(mut stream: &TcpStream, status: &str, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Closes the connection with a TCP reset (SO_LINGER 0), as a crashing load balancer would.
fn reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads `linger` for the size given; the descriptor is open.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(stream);
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

fn serve(listener: TcpListener, seen: Arc<Mutex<Seen>>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let Some(req) = read_request(&stream) else {
            continue;
        };
        let auth = req
            .headers
            .get("authorization")
            .cloned()
            .unwrap_or_default();
        let mut s = seen.lock().unwrap();
        match req.path.as_str() {
            "/api/v1/collector/register" => {
                let body = serde_json::from_slice(&req.body).unwrap_or_default();
                s.registrations.push((auth.clone(), body));
                if auth == "Bearer install-token" {
                    answer(
                        &stream,
                        "200 OK",
                        r#"{"collectorCredentialID":"cred-id","collectorCredentialKey":"cred-key","collectorId":"000000000A1B2C3D","collectorName":"vigil-test"}"#,
                    );
                } else {
                    answer(
                        &stream,
                        "401 Unauthorized",
                        r#"{"id":"X","errors":[{"code":"unauthorized"}]}"#,
                    );
                }
            }
            "/api/v1/collector/heartbeat" => {
                s.heartbeats.push(auth.clone());
                let status = if auth == format!("Basic {CRED}") {
                    "204 No Content"
                } else {
                    "401 Unauthorized"
                };
                answer(&stream, status, "");
            }
            p if p.starts_with("/api/v1/collector/") => {
                if auth != format!("Basic {CRED}") {
                    answer(&stream, "401 Unauthorized", "");
                    continue;
                }
                match s.faults {
                    0 => {
                        s.faults += 1;
                        answer(&stream, "503 Service Unavailable", "");
                    }
                    1 => {
                        s.faults += 1;
                        drop(s);
                        reset(stream);
                    }
                    _ => {
                        let body = if req.headers.get("content-encoding").map(String::as_str)
                            == Some("gzip")
                        {
                            gunzip(&req.body)
                        } else {
                            req.body.clone()
                        };
                        s.data.push((req.path.clone(), req.headers.clone(), body));
                        answer(&stream, "200 OK", "");
                    }
                }
            }
            _ => answer(&stream, "404 Not Found", ""),
        }
    }
}

fn post_json(url: &str, body: serde_json::Value) {
    let resp = reqwest::blocking::Client::new()
        .post(url)
        .json(&body)
        .send()
        .expect("post to vigil");
    assert!(resp.status().is_success(), "{}", resp.status());
}

fn log_request(body: &str) -> serde_json::Value {
    serde_json::json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "_sourceCategory", "value": {"stringValue": "test/app"}}]},
        "scopeLogs": [{"logRecords": [{"timeUnixNano": "1700000000000000000", "body": {"stringValue": body}}]}]
    }]})
}

#[test]
fn registers_heartbeats_and_delivers_every_signal_through_503_and_a_reset() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the Sumo double");
    let api = listener.local_addr().expect("address").port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s2 = Arc::clone(&seen);
    std::thread::spawn(move || serve(listener, s2));
    let otlp = free_port();
    let creds = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        r#"
extensions:
  sumologic:
    installation_token: install-token
    collector_name: vigil-test
    api_base_url: http://127.0.0.1:{api}
    collector_credentials_directory: {dir}
    heartbeat_interval: 200ms
    backoff:
      initial_interval: 50ms
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
exporters:
  sumologic:
    retry_on_failure:
      initial_interval: 50ms
      max_interval: 200ms
    sending_queue:
      enabled: true
      num_consumers: 1
service:
  extensions: [sumologic]
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [sumologic]
    metrics:
      receivers: [otlp]
      exporters: [sumologic]
    traces:
      receivers: [otlp]
      exporters: [sumologic]
"#,
        dir = creds.path().join("sumo").display()
    );
    let mut agent = Agent::with_config(&yaml);
    agent.wait_tcp(&[otlp], Duration::from_secs(30));

    for body in ["one", "two", "three"] {
        post_json(
            &format!("http://127.0.0.1:{otlp}/v1/logs"),
            log_request(body),
        );
    }
    post_json(
        &format!("http://127.0.0.1:{otlp}/v1/metrics"),
        serde_json::json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{
            "name": "queue.depth", "gauge": {"dataPoints": [{"timeUnixNano": "1700000000000000000", "asInt": "7"}]}
        }]}]}]}),
    );
    post_json(
        &format!("http://127.0.0.1:{otlp}/v1/traces"),
        serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "name": "checkout", "kind": 2,
            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000"
        }]}]}]}),
    );

    let (logs, metrics, spans) = eventually(
        Duration::from_secs(30),
        "every record at Sumo",
        || {
            let s = seen.lock().unwrap();
            let mut logs = Vec::new();
            let mut metrics = Vec::new();
            let mut spans = Vec::new();
            for (path, _, body) in &s.data {
                match path.as_str() {
                    "/api/v1/collector/logs" => {
                        let r = ExportLogsServiceRequest::decode(&body[..]).expect("OTLP logs");
                        for rl in r.resource_logs {
                            for sl in rl.scope_logs {
                                for lr in sl.log_records {
                                    if let Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(b)) =
                                    lr.body.and_then(|b| b.value)
                                {
                                    logs.push(b);
                                }
                                }
                            }
                        }
                    }
                    "/api/v1/collector/metrics" => {
                        let r =
                            ExportMetricsServiceRequest::decode(&body[..]).expect("OTLP metrics");
                        for rm in r.resource_metrics {
                            for sm in rm.scope_metrics {
                                metrics.extend(sm.metrics.into_iter().map(|m| m.name));
                            }
                        }
                    }
                    "/api/v1/collector/traces" => {
                        let r = ExportTraceServiceRequest::decode(&body[..]).expect("OTLP traces");
                        for rs in r.resource_spans {
                            for ss in rs.scope_spans {
                                spans.extend(ss.spans.into_iter().map(|s| s.name));
                            }
                        }
                    }
                    other => panic!("data on {other}"),
                }
            }
            (logs.len() >= 3 && !metrics.is_empty() && !spans.is_empty())
                .then_some((logs, metrics, spans))
        },
    );
    let mut logs = logs;
    logs.sort();
    // Nothing lost and nothing twice, through the 503 and the reset.
    assert_eq!(logs, vec!["one", "three", "two"]);
    assert_eq!(metrics, vec!["queue.depth"]);
    assert_eq!(spans, vec!["checkout"]);

    // A heartbeat after the interval, with the collector credentials.
    eventually(Duration::from_secs(10), "a heartbeat", || {
        (!seen.lock().unwrap().heartbeats.is_empty()).then_some(())
    });
    let s = seen.lock().unwrap();
    assert_eq!(s.faults, 2);
    assert_eq!(s.registrations.len(), 1, "registered once");
    let (auth, body) = &s.registrations[0];
    assert_eq!(auth, "Bearer install-token");
    assert_eq!(body["collectorName"], "vigil-test");
    assert!(s.heartbeats.iter().all(|h| *h == format!("Basic {CRED}")));
    for (_, headers, _) in &s.data {
        assert_eq!(headers["content-type"], "application/x-protobuf");
        assert_eq!(headers["content-encoding"], "gzip");
        assert_eq!(headers["x-sumo-client"], "otelcol");
    }
    drop(s);
    // The credentials are stored for the next start.
    let stored = std::fs::read_dir(creds.path().join("sumo"))
        .expect("the credentials directory")
        .count();
    assert_eq!(stored, 1);
    agent.stop_ok(Duration::from_secs(20));
}
