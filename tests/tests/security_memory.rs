//! The memory bound issue #15 asks for, measured on the real agent: while 2,000 idle sockets are
//! held open against the OTLP listeners (half of them with a request half sent), amplification
//! requests (a ~20 KB gzip OTLP/HTTP body that decodes to 9 million empty spans) are refused with
//! 413 (the OTLP/HTTP answer for a body too large), a normal client is still served on HTTP and
//! gRPC, and the agent's peak resident memory (`VmHWM`) stays under the configured
//! `memory_limiter::limit_mib` plus [`MARGIN_MIB`].
//!
//! The bound is on memory, not on time, so it holds on a loaded machine too. The figures measured
//! are in BENCHMARKS.md and docs/security.md.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;
use vigil_tests::{file_exporter_and_health, free_port, python, repo_root, Agent};

/// `memory_limiter::limit_mib` in the agent's config.
const LIMIT_MIB: u64 = 200;
/// What the peak RSS may exceed the limiter by: the limiter bounds the data in the pipeline, not
/// the agent's own code, buffers and connections. Documented in docs/security.md.
const MARGIN_MIB: u64 = 32;
/// Empty spans in one amplification body: 2 bytes each on the wire, 18 MB decompressed (under the
/// 20 MiB body limit, so the decoded-size bound is what refuses it), gigabytes once decoded.
const SPANS: usize = 9_000_000;
const IDLE_SOCKETS: usize = 2000;

/// Protobuf length-delimited field `tag` holding `body`.
fn field(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let mut n = body.len() as u64;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(body);
    out
}

/// An `ExportTraceServiceRequest` of one resource and one scope holding `n` empty spans, gzipped.
fn amplification_body(n: usize) -> Vec<u8> {
    // ScopeSpans.spans (field 2), each an empty Span: 0x12 0x00.
    let spans: Vec<u8> = [0x12u8, 0x00].repeat(n);
    let scope = field(0x12, &spans); // ResourceSpans.scope_spans (field 2)
    let request = field(0x0a, &scope); // ExportTraceServiceRequest.resource_spans (field 1)
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&request).expect("gzip");
    gz.finish().expect("gzip")
}

/// Peak and current resident memory of a process, in KiB (`VmHWM`, `VmRSS`).
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let get = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (get("VmHWM:"), get("VmRSS:"))
}

/// Lets this test process hold the sockets: the soft open-file limit is often 1024.
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[test]
fn amplification_and_idle_sockets_stay_under_the_memory_limiter_and_a_client_is_served() {
    raise_nofile();
    let (grpc, http, health, metrics) = (free_port(), free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("received.jsonl");
    let mut agent = Agent::with_config(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{grpc}"}}
      http: {{endpoint: "127.0.0.1:{http}"}}
processors:
  memory_limiter:
    check_interval: 1s
    limit_mib: {LIMIT_MIB}
  batch: {{}}
{frame}  pipelines:
    traces: {{receivers: [otlp], processors: [memory_limiter, batch], exporters: [file]}}
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#,
        frame = file_exporter_and_health(&out, health)
    ));
    agent.wait_healthy(health, Duration::from_secs(60));
    let pid = agent.child.id();
    let (start_peak, _) = memory_kib(pid);

    // Idle sockets, half on each listener; every other one has sent half a request.
    let mut idle = Vec::with_capacity(IDLE_SOCKETS);
    for i in 0..IDLE_SOCKETS {
        let port = if i % 2 == 0 { http } else { grpc };
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            // The agent may close the longest-idle connections as the cap is reached: that is the
            // defence under test, not a failure; keep what connected.
            continue;
        };
        if i % 4 == 0 {
            let _ = s.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: vigil\r\nContent-Type: application/x-protobuf\r\n");
        }
        idle.push(s);
    }

    std::thread::sleep(Duration::from_millis(500));
    let (sockets_peak, _) = memory_kib(pid);
    // Amplification requests, four at once.
    let bomb = amplification_body(SPANS);
    eprintln!(
        "amplification body: {} bytes gzip, {SPANS} empty spans",
        bomb.len()
    );
    assert!(bomb.len() < 64 * 1024, "the body is small: {}", bomb.len());
    let url = format!("http://127.0.0.1:{http}/v1/traces");
    let codes: Vec<u16> = std::thread::scope(|s| {
        let sends: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    reqwest::blocking::Client::new()
                        .post(&url)
                        .header("content-type", "application/x-protobuf")
                        .header("content-encoding", "gzip")
                        .body(bomb.clone())
                        .timeout(Duration::from_secs(120))
                        .send()
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                })
            })
            .collect();
        sends.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    assert_eq!(
        codes,
        vec![413; 4],
        "amplification requests are refused as too large"
    );

    // A normal client is served on both transports while the sockets are still held.
    let normal = |protocol: &str, endpoint: String| {
        let out = std::process::Command::new(python())
            .arg(repo_root().join("tests/python/sdk_auth.py"))
            .args(["--protocol", protocol, "--endpoint", &endpoint, "--run", protocol])
            .output()
            .expect("run tests/python/sdk_auth.py (the .venv from tests/requirements.txt; scripts/test.sh makes it)");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["result"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(
        normal("http", format!("http://127.0.0.1:{http}")),
        "SUCCESS"
    );
    assert_eq!(
        normal("grpc", format!("http://127.0.0.1:{grpc}")),
        "SUCCESS"
    );

    let (peak, now) = memory_kib(pid);
    eprintln!(
        "vigil RSS: {} KiB at start (peak so far), {} KiB with the sockets, peak {} KiB ({:.1} MiB), now {} KiB; {} idle sockets held; limit_mib {LIMIT_MIB} + margin {MARGIN_MIB}",
        start_peak,
        sockets_peak,
        peak,
        peak as f64 / 1024.0,
        now,
        idle.len()
    );
    assert!(
        idle.len() >= IDLE_SOCKETS / 2,
        "only {} idle sockets connected",
        idle.len()
    );
    assert!(
        peak < (LIMIT_MIB + MARGIN_MIB) * 1024,
        "peak RSS {peak} KiB is over limit_mib {LIMIT_MIB} + {MARGIN_MIB} MiB"
    );
    drop(idle);
}
