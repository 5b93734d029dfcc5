//! Delivery guarantees with real processes: a front `vigil` (`otlp` receiver → `otlp`/`otlphttp`
//! exporter with retry and a sending queue) forwards to a backend `vigil` (`otlp` receiver → `file`
//! exporter), fed by `vigil-loadgen` or the OpenTelemetry SDK. The backend goes down, the front is
//! killed with SIGKILL, its queue file is truncated, and what arrives is checked span by span through
//! `loadgen.seq`. A small in-test HTTP server stands in for backend faults vigil cannot produce (400,
//! 503 with `Retry-After`).

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_tests::{
    bin, eventually, free_port, health_check_and_service, metric_sum, otlp_receiver, python,
    read_json_lines, repo_root, Agent,
};

/// Retries in these tests are quick so that each test stays short; the behaviour is the same.
const FAST_RETRY: &str = "retry_on_failure:
      initial_interval: 100ms
      max_interval: 1s
      max_elapsed_time: 0s";

/// The backend: a second vigil that writes what it receives over OTLP/gRPC to a JSON-lines file.
struct Backend {
    agent: Agent,
    out: PathBuf,
}

fn start_backend(grpc: u16, dir: &Path) -> Backend {
    let health = free_port();
    let out = dir.join("received.jsonl");
    let cfg = format!(
        r#"
{recv}exporters:
  file:
    path: {out}
    append: true
{health_ext}  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
  telemetry:
    metrics:
      level: none
"#,
        recv = otlp_receiver("grpc", grpc),
        out = out.display(),
        health_ext = health_check_and_service(health),
    );
    let mut agent = Agent::with_config_file(dir, &format!("backend-{grpc}.yaml"), &cfg, &[]);
    agent.wait_healthy(health, Duration::from_secs(30));
    Backend { agent, out }
}

/// The ports of a front agent.
#[derive(Clone, Copy)]
struct FrontPorts {
    grpc: u16,
    health: u16,
    metrics: u16,
}

impl FrontPorts {
    fn new() -> Self {
        FrontPorts {
            grpc: free_port(),
            health: free_port(),
            metrics: free_port(),
        }
    }
}

/// A front config: OTLP/gRPC in, `exporter` (its YAML, indented under `exporters:`) out, with
/// optional extra extensions (a `file_storage`).
fn front_config(p: FrontPorts, exporter: &str, storage_dir: Option<&Path>) -> String {
    let (storage_ext, storage_list) = match storage_dir {
        Some(d) => (
            format!(
                "  file_storage/queue:\n    directory: {}\n    create_directory: true\n",
                d.display()
            ),
            ", file_storage/queue",
        ),
        None => (String::new(), ""),
    };
    format!(
        r#"
{recv}exporters:
  {exporter}
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
{storage_ext}
service:
  extensions: [health_check{storage_list}]
  pipelines:
    traces: {{receivers: [otlp], exporters: [{name}]}}
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#,
        recv = otlp_receiver("grpc", p.grpc),
        health = p.health,
        metrics = p.metrics,
        name = exporter.split(':').next().unwrap_or_default(),
    )
}

fn start_front(dir: &Path, file: &str, cfg: &str, p: FrontPorts) -> Agent {
    start_front_with(dir, file, cfg, p, &[])
}

/// `start_front` with more command-line arguments after `--config`.
fn start_front_with(dir: &Path, file: &str, cfg: &str, p: FrontPorts, extra: &[&str]) -> Agent {
    let mut agent = Agent::with_config_file(dir, file, cfg, extra);
    agent.wait_healthy(p.health, Duration::from_secs(30));
    agent
}

/// The sum of every series of `name` on vigil's own metrics endpoint; `None` if it is not there.
fn metric(port: u16, name: &str) -> Option<f64> {
    metric_sum(port, name, "")
}

/// Sends `items` spans of `service` as fast as two workers can, in requests of 100; asserts that
/// the front accepted every one.
fn send_all_fast(p: FrontPorts, service: &str, items: u64) {
    let (report, stderr) = loadgen(p.grpc, service, &fast_args(items));
    assert_eq!(
        (report["sent"].as_u64(), report["refused"].as_u64()),
        (Some(items), Some(0)),
        "{report} {stderr}"
    );
}

/// loadgen arguments: `items` spans in requests of 100, no rate limit, two workers.
fn fast_args(items: u64) -> Vec<String> {
    [
        "--items",
        &items.to_string(),
        "--batch",
        "100",
        "--rate",
        "0",
        "--workers",
        "2",
    ]
    .map(String::from)
    .to_vec()
}

/// Kills the front with SIGKILL (no chance to flush) and reaps it.
fn crash(front: &mut Agent) {
    front.signal(libc::SIGKILL);
    let _ = front.child.wait();
}

impl FrontPorts {
    /// New ports but `p`'s gRPC port: the same front, started again.
    fn again(p: FrontPorts) -> Self {
        FrontPorts {
            grpc: p.grpc,
            ..FrontPorts::new()
        }
    }
}

/// Runs `vigil-loadgen traces` to completion and returns its JSON report and its stderr.
fn loadgen<S: AsRef<std::ffi::OsStr>>(grpc: u16, service: &str, extra: &[S]) -> (Value, String) {
    let out = Command::new(bin("vigil-loadgen"))
        .arg("traces")
        .args([
            "--otlp-endpoint",
            &format!("127.0.0.1:{grpc}"),
            "--service",
            service,
            "--duration",
            "5m",
            "--json",
        ])
        .args(extra)
        .output()
        .expect("run vigil-loadgen");
    assert!(
        out.status.success(),
        "vigil-loadgen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = serde_json::from_slice(&out.stdout).expect("vigil-loadgen prints JSON");
    (report, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn attr<'a>(attrs: &'a Value, key: &str) -> Option<&'a Value> {
    vigil_tests::otlp_attr(attrs, key)
}

fn int_value(v: &Value) -> Option<i64> {
    v["intValue"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v["intValue"].as_i64())
}

/// How many times each `loadgen.seq` of `service` arrived, after checking each span's content against
/// what the generator puts in it.
fn seqs_arrived(out: &Path, service: &str) -> BTreeMap<i64, usize> {
    let mut seen = BTreeMap::new();
    for line in read_json_lines(out) {
        for rs in line["resourceSpans"].as_array().into_iter().flatten() {
            let svc = attr(&rs["resource"]["attributes"], "service.name")
                .and_then(|v| v["stringValue"].as_str());
            if svc != Some(service) {
                continue;
            }
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let seq = attr(&s["attributes"], "loadgen.seq")
                        .and_then(int_value)
                        .unwrap_or_else(|| panic!("span without loadgen.seq: {s}"));
                    assert_eq!(s["name"], "GET /api/items", "{s}");
                    for i in 0..4i64 {
                        let want = format!("value-{}", (seq + i) % 97);
                        let got = attr(&s["attributes"], &format!("attr.{i}"))
                            .and_then(|v| v["stringValue"].as_str());
                        assert_eq!(got, Some(want.as_str()), "attr.{i} of span {seq}");
                    }
                    assert_eq!(s["traceId"].as_str().map(str::len), Some(32), "{s}");
                    *seen.entry(seq).or_insert(0) += 1;
                }
            }
        }
    }
    seen
}

/// Waits until every seq in `0..n` of `service` has arrived; returns the per-seq counts.
fn wait_all_seqs(out: &Path, service: &str, n: i64, limit: Duration) -> BTreeMap<i64, usize> {
    let start = Instant::now();
    loop {
        let seen = seqs_arrived(out, service);
        if (0..n).all(|s| seen.contains_key(&s)) {
            return seen;
        }
        if start.elapsed() > limit {
            let missing: Vec<i64> = (0..n).filter(|s| !seen.contains_key(s)).take(20).collect();
            panic!(
                "after {limit:?}, {} of {n} spans arrived; first missing seqs: {missing:?}",
                seen.len()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Duplicates (extra copies) in per-seq counts, printed for the test log.
fn report_duplicates(what: &str, seen: &BTreeMap<i64, usize>) -> usize {
    let dups: Vec<(i64, usize)> = seen
        .iter()
        .filter(|(_, &c)| c > 1)
        .map(|(&s, &c)| (s, c))
        .collect();
    let extra: usize = dups.iter().map(|(_, c)| c - 1).sum();
    println!(
        "{what}: {} distinct spans, {extra} duplicate copies; first duplicated seqs (seq, copies): {:?}",
        seen.len(),
        &dups[..dups.len().min(20)]
    );
    extra
}

fn otlp_exporter(backend_grpc: u16, queue: &str) -> String {
    format!(
        "otlp:
    endpoint: 127.0.0.1:{backend_grpc}
    tls:
      insecure: true
    timeout: 30s
    {FAST_RETRY}
    sending_queue:
{queue}"
    )
}

#[test]
fn backend_outage_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend_grpc = free_port();
    let p = FrontPorts::new();
    let exporter = otlp_exporter(backend_grpc, "      queue_size: 1000\n");
    let front = start_front(
        dir.path(),
        "front.yaml",
        &front_config(p, &exporter, None),
        p,
    );

    // The backend is down while 20k spans go in, spread over about 30 s.
    let outage = Instant::now();
    let (report, stderr) = loadgen(
        p.grpc,
        "outage",
        &[
            "--items",
            "20000",
            "--batch",
            "100",
            "--rate",
            "700",
            "--workers",
            "2",
        ],
    );
    assert_eq!(
        (report["sent"].as_u64(), report["refused"].as_u64()),
        (Some(20000), Some(0)),
        "every request must be accepted while the backend is down: {report} {stderr}"
    );
    assert_eq!(metric(p.metrics, "otelcol_exporter_sent_spans"), Some(0.0));
    println!("backend down for {:?}", outage.elapsed());

    let backend = start_backend(backend_grpc, dir.path());
    let seen = wait_all_seqs(&backend.out, "outage", 20000, Duration::from_secs(120));
    eventually(
        Duration::from_secs(30),
        "the front's queue to empty",
        || (metric(p.metrics, "otelcol_exporter_queue_size") == Some(0.0)).then_some(()),
    );
    let seen_again = seqs_arrived(&backend.out, "outage");
    let dups = report_duplicates("outage", &seen_again);
    assert_eq!(seen.len(), 20000);
    assert_eq!(
        dups, 0,
        "an outage with refused connections must not duplicate"
    );
    assert_eq!(
        metric(p.metrics, "otelcol_exporter_send_failed_spans"),
        Some(0.0)
    );
    drop(front);
}

#[test]
fn kill_9_with_durable_queue_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("storage");
    let backend_grpc = free_port();
    let p = FrontPorts::new();
    let exporter = otlp_exporter(
        backend_grpc,
        "      queue_size: 1000\n      storage: file_storage/queue\n",
    );
    let cfg = front_config(p, &exporter, Some(&storage));
    let mut front = start_front(dir.path(), "front.yaml", &cfg, p);

    send_all_fast(p, "kill9", 20000);
    // Every span is acknowledged: now crash the agent without any chance to flush.
    crash(&mut front);

    let p2 = FrontPorts::again(p);
    let cfg2 = front_config(p2, &exporter, Some(&storage));
    let front2 = start_front(dir.path(), "front2.yaml", &cfg2, p2);
    let backend = start_backend(backend_grpc, dir.path());
    let seen = wait_all_seqs(&backend.out, "kill9", 20000, Duration::from_secs(120));
    eventually(
        Duration::from_secs(30),
        "the durable queue to empty",
        || (metric(p2.metrics, "otelcol_exporter_queue_size") == Some(0.0)).then_some(()),
    );
    let seen = {
        let again = seqs_arrived(&backend.out, "kill9");
        if again.values().sum::<usize>() >= seen.values().sum() {
            again
        } else {
            seen
        }
    };
    // At least once: duplicates are allowed (requests in flight at the kill), loss is not.
    report_duplicates("kill -9", &seen);
    assert_eq!(seen.len(), 20000);
    assert!(
        front2.logs().contains("replaying"),
        "the restarted agent says it replays the queue; log:\n{}",
        front2.logs()
    );
}

fn run_sdk(endpoint: &str, run: &str) -> Child {
    Command::new(python())
        .arg(repo_root().join("tests/python/delivery_sdk.py"))
        .args(["--endpoint", endpoint, "--run", run, "--spans", "50"])
        .args(["--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the SDK script")
}

#[test]
fn full_queue_refuses_as_retryable_and_the_sdk_retries_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend_grpc = free_port();
    let p = FrontPorts::new();
    let exporter = otlp_exporter(
        backend_grpc,
        "      queue_size: 2\n      num_consumers: 1\n",
    );
    let _front = start_front(
        dir.path(),
        "front.yaml",
        &front_config(p, &exporter, None),
        p,
    );

    // The backend is down and the queue holds two requests: the client must hear refusals.
    let (report, stderr) = loadgen(
        p.grpc,
        "full",
        &[
            "--items",
            "2000",
            "--batch",
            "100",
            "--rate",
            "0",
            "--workers",
            "1",
        ],
    );
    let sent = report["sent"].as_u64().unwrap_or(0);
    let refused = report["refused"].as_u64().unwrap_or(0);
    assert_eq!(sent + refused, 2000, "{report}");
    assert!(refused > 0 && sent > 0, "{report}");
    assert!(
        stderr.contains("Unavailable"),
        "a full queue answers UNAVAILABLE (retryable): {stderr}"
    );
    let failed_before = metric(p.metrics, "otelcol_exporter_enqueue_failed_spans").unwrap_or(0.0);
    assert_eq!(failed_before, refused as f64, "refusals are counted");

    // The SDK's export is refused too; its own retry must get it through once the backend is back.
    let run = format!("sdk-{}", std::process::id());
    let sdk = run_sdk(&format!("http://127.0.0.1:{}", p.grpc), &run);
    eventually(
        Duration::from_secs(30),
        "the SDK's export to be refused",
        || {
            (metric(p.metrics, "otelcol_exporter_enqueue_failed_spans")? > failed_before)
                .then_some(())
        },
    );
    let backend = start_backend(backend_grpc, dir.path());
    let out = sdk.wait_with_output().expect("wait for the SDK script");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "SDK script failed: {stderr}");
    let result: Value = serde_json::from_slice(&out.stdout).expect("SDK script prints JSON");
    assert_eq!(
        result["success"], true,
        "the SDK gave up: {result} {stderr}"
    );
    assert!(
        stderr.contains("retrying"),
        "the SDK retried after a refusal: {stderr}"
    );

    // What the front accepted arrives, and so does everything the SDK sent.
    let want: Vec<String> = result["span_ids"]
        .as_array()
        .expect("span ids")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_lowercase))
        .collect();
    eventually(
        Duration::from_secs(60),
        "accepted loadgen spans and the SDK's spans at the backend",
        || {
            let lines = read_json_lines(&backend.out);
            let text = lines
                .iter()
                .map(Value::to_string)
                .collect::<String>()
                .to_lowercase();
            let seqs = seqs_arrived(&backend.out, "full");
            (seqs.len() as u64 == sent && want.iter().all(|id| text.contains(id.as_str())))
                .then_some(())
        },
    );
    drop(backend.agent);
}

/// A fake OTLP/HTTP backend that records when each request came and answers from a script.
struct FakeBackend {
    port: u16,
    times: Arc<Mutex<Vec<Instant>>>,
    _rt: tokio::runtime::Runtime,
}

/// `answer(n)` gives the status and an optional `Retry-After` for the n-th request (0-based).
fn fake_backend(answer: fn(usize) -> (u16, Option<&'static str>)) -> FakeBackend {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, HeaderValue, StatusCode};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let times: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let t = times.clone();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind fake backend");
    let port = listener.local_addr().expect("addr").port();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |_body: Bytes| {
            let t = t.clone();
            async move {
                let n = {
                    let mut v = t.lock().unwrap_or_else(|p| p.into_inner());
                    v.push(Instant::now());
                    v.len() - 1
                };
                let (code, retry_after) = answer(n);
                let mut headers = HeaderMap::new();
                headers.insert(
                    "content-type",
                    HeaderValue::from_static("application/x-protobuf"),
                );
                if let Some(ra) = retry_after {
                    headers.insert("retry-after", HeaderValue::from_static(ra));
                }
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
                (status, headers, Vec::<u8>::new())
            }
        }),
    );
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FakeBackend {
        port,
        times,
        _rt: rt,
    }
}

impl FakeBackend {
    fn requests(&self) -> Vec<Instant> {
        self.times.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn otlphttp_exporter(port: u16) -> String {
    format!(
        "otlphttp:
    endpoint: http://127.0.0.1:{port}
    {FAST_RETRY}"
    )
}

#[test]
fn permanent_error_costs_one_count_one_line_and_no_retry() {
    let fake = fake_backend(|_| (400, None));
    let dir = tempfile::tempdir().expect("tempdir");
    let p = FrontPorts::new();
    let front = start_front(
        dir.path(),
        "front.yaml",
        &front_config(p, &otlphttp_exporter(fake.port), None),
        p,
    );
    let (report, _) = loadgen(p.grpc, "bad", &["--items", "10", "--batch", "10"]);
    assert_eq!(report["sent"].as_u64(), Some(10), "{report}");
    eventually(Duration::from_secs(30), "the failed-send count", || {
        (metric(p.metrics, "otelcol_exporter_send_failed_spans")? >= 10.0).then_some(())
    });
    // A retry would come within 100 ms; watch for twenty times that.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(2) {
        assert_eq!(fake.requests().len(), 1, "a 400 must not be retried");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        metric(p.metrics, "otelcol_exporter_send_failed_spans"),
        Some(10.0)
    );
    assert_eq!(metric(p.metrics, "otelcol_exporter_sent_spans"), Some(0.0));
    let lines = front.logs();
    let refused: Vec<&str> = lines
        .lines()
        .filter(|l| l.contains("refused them permanently"))
        .collect();
    assert_eq!(refused.len(), 1, "one log line; log:\n{lines}");
    assert!(refused[0].contains("400"), "{}", refused[0]);
}

#[test]
fn retry_after_is_honoured() {
    let fake = fake_backend(|n| {
        if n == 0 {
            (503, Some("2"))
        } else {
            (200, None)
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let p = FrontPorts::new();
    let _front = start_front(
        dir.path(),
        "front.yaml",
        &front_config(p, &otlphttp_exporter(fake.port), None),
        p,
    );
    let (report, _) = loadgen(p.grpc, "throttled", &["--items", "10", "--batch", "10"]);
    assert_eq!(report["sent"].as_u64(), Some(10), "{report}");
    let times = eventually(Duration::from_secs(30), "a second attempt", || {
        let t = fake.requests();
        (t.len() >= 2).then_some(t)
    });
    let waited = times[1].duration_since(times[0]);
    // The backoff alone would wait about 100 ms; Retry-After: 2 asks for two seconds.
    assert!(
        waited >= Duration::from_secs(2),
        "the retry came {waited:?} after a 503 with Retry-After: 2"
    );
    eventually(Duration::from_secs(30), "the spans counted as sent", || {
        (metric(p.metrics, "otelcol_exporter_sent_spans")? == 10.0).then_some(())
    });
    assert_eq!(fake.requests().len(), 2, "one retry was enough");
}

/// A front whose persistent queue was filled on disk while its backend was down, then stopped.
struct QueuedOnDisk {
    backend_grpc: u16,
    grpc: u16,
    exporter: String,
    storage: PathBuf,
    /// The queue's database file.
    db: PathBuf,
}

/// Starts a front with a `file_storage` queue under `<dir>/storage` and a backend that is down,
/// sends `items` spans of service `before` in requests of 10, and stops it with SIGTERM.
fn queue_on_disk(dir: &Path, items: u64) -> QueuedOnDisk {
    let storage = dir.join("storage");
    let backend_grpc = free_port();
    let p = FrontPorts::new();
    let exporter = otlp_exporter(
        backend_grpc,
        "      queue_size: 1000\n      storage: file_storage/queue\n",
    );
    let mut front = start_front(
        dir,
        "front.yaml",
        &front_config(p, &exporter, Some(&storage)),
        p,
    );
    let (report, _) = loadgen(
        p.grpc,
        "before",
        &[
            "--items",
            &items.to_string(),
            "--batch",
            "10",
            "--rate",
            "0",
        ],
    );
    assert_eq!(report["sent"].as_u64(), Some(items), "{report}");
    front.signal(libc::SIGTERM);
    assert_eq!(
        front.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        front.logs()
    );
    let db = std::fs::read_dir(&storage)
        .expect("storage dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_none() && p.to_string_lossy().contains("sending_queue"))
        .expect("the queue's database file");
    QueuedOnDisk {
        backend_grpc,
        grpc: p.grpc,
        exporter,
        storage,
        db,
    }
}

impl QueuedOnDisk {
    /// Starts the front again on the same gRPC port and storage (the queue file damaged by now)
    /// and checks that its log and metrics report `lost` records in one corrupt file; the front
    /// (kept running by the caller) and its ports.
    fn restart_reporting_lost(&self, dir: &Path, lost: u64) -> (Agent, FrontPorts) {
        let p2 = FrontPorts {
            grpc: self.grpc,
            ..FrontPorts::new()
        };
        let front2 = start_front(
            dir,
            "front2.yaml",
            &front_config(p2, &self.exporter, Some(&self.storage)),
            p2,
        );
        let log = front2.logs();
        assert!(
            log.contains(&format!("it held {lost} records")),
            "the log says how many records were lost; log:\n{log}"
        );
        assert_eq!(
            metric(p2.metrics, "vigil_storage_corrupt_records"),
            Some(lost as f64)
        );
        assert_eq!(metric(p2.metrics, "vigil_storage_corrupt_files"), Some(1.0));
        (front2, p2)
    }
}

#[test]
fn truncated_queue_file_is_reported_and_the_agent_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 50 requests queue up on disk while the backend is down.
    let q = queue_on_disk(dir.path(), 500);

    // Damage the queue file by hand: cut it in half.
    let len = std::fs::metadata(&q.db).expect("db").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&q.db)
        .expect("open db");
    f.set_len(len / 2).expect("truncate");
    drop(f);

    let (_front2, p2) = q.restart_reporting_lost(dir.path(), 50);

    // And it goes on: new data is queued durably and delivered.
    let backend = start_backend(q.backend_grpc, dir.path());
    let (report, _) = loadgen(p2.grpc, "after", &["--items", "300", "--batch", "10"]);
    assert_eq!(report["sent"].as_u64(), Some(300), "{report}");
    let seen = wait_all_seqs(&backend.out, "after", 300, Duration::from_secs(60));
    assert_eq!(seen.len(), 300);
    assert!(seqs_arrived(&backend.out, "before").is_empty());
}

#[test]
fn a_short_shutdown_timeout_still_counts_and_reports_what_is_lost() {
    // A backend that is down for good: the queue cannot drain, and the exporter's own 15 s drain is
    // longer than the agent may take.
    let fake = fake_backend(|_| (503, None));
    let dir = tempfile::tempdir().expect("tempdir");
    let p = FrontPorts::new();
    let mut front = start_front_with(
        dir.path(),
        "front.yaml",
        &front_config(p, &otlphttp_exporter(fake.port), None),
        p,
        &["--shutdown-timeout", "3s"],
    );
    let (report, _) = loadgen(p.grpc, "stuck", &["--items", "20", "--batch", "10"]);
    assert_eq!(report["sent"].as_u64(), Some(20), "{report}");
    eventually(Duration::from_secs(30), "the backend tried", || {
        (fake.requests().len() >= 2).then_some(())
    });
    front.signal(libc::SIGTERM);
    assert_eq!(
        front.wait_exit(Duration::from_secs(60)),
        Some(0),
        "{}",
        front.logs()
    );
    let logs = front.logs();
    // The drain fitted into the 3 s: the loss is counted and named, not cut off by the deadline.
    assert!(
        logs.contains("20 items could not be delivered within the shutdown drain time"),
        "log:\n{logs}"
    );
    assert!(
        !logs.contains("shutdown did not finish within"),
        "log:\n{logs}"
    );
}

#[test]
fn damaged_queue_file_header_is_moved_aside_and_the_agent_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 30 requests queue up on disk while the backend is down.
    let q = queue_on_disk(dir.path(), 300);

    // Overwrite the file's header (magic number, page size, commit slots) in place.
    let mut bytes = std::fs::read(&q.db).expect("read db");
    bytes[..512].fill(0x5a);
    std::fs::write(&q.db, &bytes).expect("damage db");

    let (_front2, p2) = q.restart_reporting_lost(dir.path(), 30);
    let aside = std::fs::read_dir(&q.storage)
        .expect("storage dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        .count();
    assert_eq!(aside, 1, "the damaged file is kept aside");

    // And it goes on: new data is queued durably and delivered.
    let backend = start_backend(q.backend_grpc, dir.path());
    let (report, _) = loadgen(p2.grpc, "after", &["--items", "200", "--batch", "10"]);
    assert_eq!(report["sent"].as_u64(), Some(200), "{report}");
    let seen = wait_all_seqs(&backend.out, "after", 200, Duration::from_secs(60));
    assert_eq!(seen.len(), 200);
}

/// A TCP front for `backend` whose first `http1` connections get an HTTP/1.1 answer and next `resets`
/// connections a reset (RST) after the first read; later ones are forwarded. Returns its port.
fn faulty_proxy(backend: u16, http1: usize, resets: usize) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let port = listener.local_addr().expect("proxy addr").port();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { continue };
            if n < http1 + resets {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                if n < http1 {
                    let _ = conn.write_all(
                        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                } else {
                    use std::os::fd::AsRawFd;
                    // A zero linger turns the close into a reset.
                    let linger = libc::linger {
                        l_onoff: 1,
                        l_linger: 0,
                    };
                    // SAFETY: a valid socket and a correctly sized option value.
                    unsafe {
                        libc::setsockopt(
                            conn.as_raw_fd(),
                            libc::SOL_SOCKET,
                            libc::SO_LINGER,
                            (&linger as *const libc::linger).cast(),
                            std::mem::size_of::<libc::linger>() as libc::socklen_t,
                        );
                    }
                }
                continue;
            }
            let Ok(up) = std::net::TcpStream::connect(("127.0.0.1", backend)) else {
                continue;
            };
            let (Ok(mut c2), Ok(mut u2)) = (conn.try_clone(), up.try_clone()) else {
                continue;
            };
            let mut up = up;
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut up);
                let _ = up.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut u2, &mut conn);
                let _ = conn.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

#[test]
fn reset_connections_and_http1_answers_are_retried_not_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend_grpc = free_port();
    let backend = start_backend(backend_grpc, dir.path());
    let proxy = faulty_proxy(backend_grpc, 2, 2);
    let p = FrontPorts::new();
    let exporter = otlp_exporter(proxy, "      queue_size: 1000\n");
    let front = start_front(
        dir.path(),
        "front.yaml",
        &front_config(p, &exporter, None),
        p,
    );
    let (report, _) = loadgen(p.grpc, "faulty", &["--items", "200", "--batch", "10"]);
    assert_eq!(report["sent"].as_u64(), Some(200), "{report}");
    let seen = wait_all_seqs(&backend.out, "faulty", 200, Duration::from_secs(60));
    assert_eq!(seen.len(), 200, "log:\n{}", front.logs());
    assert_eq!(
        metric(p.metrics, "otelcol_exporter_send_failed_spans"),
        Some(0.0),
        "log:\n{}",
        front.logs()
    );
}

// ---------------------------------------------------------------------------------------------
// The guarantee for any pipeline shape. `batch` holds nothing that a caller is not waiting for,
// so what the exporter's sending queue refuses reaches the client, in whatever position `batch`
// stands and however many exporters a pipeline fans out to.

/// A front config with `processors` and `exporters` sections (entries indented two spaces, as they
/// sit under the section) and one traces pipeline through `chain` to `outs`.
fn shaped_config(
    p: FrontPorts,
    processors: &str,
    chain: &[&str],
    exporters: &str,
    outs: &[&str],
    storage_dir: Option<&Path>,
) -> String {
    let (storage_ext, storage_list) = match storage_dir {
        Some(d) => (
            format!(
                "  file_storage/queue:\n    directory: {}\n    create_directory: true\n",
                d.display()
            ),
            ", file_storage/queue",
        ),
        None => (String::new(), ""),
    };
    format!(
        r#"
{recv}processors:
{processors}
exporters:
{exporters}
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
{storage_ext}
service:
  extensions: [health_check{storage_list}]
  pipelines:
    traces: {{receivers: [otlp], processors: [{chain}], exporters: [{outs}]}}
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#,
        recv = otlp_receiver("grpc", p.grpc),
        health = p.health,
        metrics = p.metrics,
        chain = chain.join(", "),
        outs = outs.join(", "),
    )
}

/// An `otlp` exporter entry named `name` with a small queue (three requests, one sender) that
/// merges what it queues, so that a backend outage fills it within a few requests.
fn small_queue_exporter(name: &str, port: u16) -> String {
    format!(
        "  {name}:
    endpoint: 127.0.0.1:{port}
    tls:
      insecure: true
    timeout: 5s
    {FAST_RETRY}
    sending_queue:
      queue_size: 3
      num_consumers: 1
      batch:
        min_size: 300
        flush_timeout: 50ms
"
    )
}

/// The sum of the series of `name` whose labels contain `label` (such as `exporter="otlp/b"`).
fn metric_where(port: u16, name: &str, label: &str) -> Option<f64> {
    metric_sum(port, name, label)
}

/// Floods the front with `items` spans of `service` while its backend is down: returns (accepted,
/// refused) after checking that refusals reached the client as retryable and were counted.
fn flood_while_down(p: FrontPorts, service: &str, items: u64) -> (u64, u64) {
    let (report, stderr) = loadgen(p.grpc, service, &fast_args(items));
    let sent = report["sent"].as_u64().unwrap_or(0);
    let refused = report["refused"].as_u64().unwrap_or(0);
    assert_eq!(sent + refused, items, "{report}");
    assert!(
        sent > 0 && refused > 0,
        "a full queue must refuse some and accept some: {report} {stderr}"
    );
    assert!(
        stderr.contains("Unavailable"),
        "a full queue answers UNAVAILABLE (retryable) through the pipeline: {stderr}"
    );
    (sent, refused)
}

/// Waits until exactly `accepted` distinct spans of `service` have arrived, then checks that no more
/// come (a refused span that was kept somewhere and sent later would show up here) and that none
/// arrived twice.
fn exactly_the_accepted_arrive(out: &Path, service: &str, accepted: u64) {
    eventually(
        Duration::from_secs(120),
        "every accepted span at the backend",
        || (seqs_arrived(out, service).len() as u64 >= accepted).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2));
    let seen = seqs_arrived(out, service);
    assert_eq!(
        seen.len() as u64,
        accepted,
        "what arrives is exactly what was accepted"
    );
    assert_eq!(report_duplicates(service, &seen), 0);
}

#[test]
fn shape_batch_then_queued_exporter_refuses_back_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend_grpc = free_port();
    let p = FrontPorts::new();
    let cfg = shaped_config(
        p,
        "  batch:\n    timeout: 50ms\n",
        &["batch"],
        &small_queue_exporter("otlp", backend_grpc),
        &["otlp"],
        None,
    );
    let front = start_front(dir.path(), "front.yaml", &cfg, p);
    let (sent, refused) = flood_while_down(p, "shape-a", 3000);
    assert_eq!(
        metric(p.metrics, "otelcol_exporter_enqueue_failed_spans"),
        Some(refused as f64),
        "every refusal is counted once, by the queue that refused"
    );
    let backend = start_backend(backend_grpc, dir.path());
    exactly_the_accepted_arrive(&backend.out, "shape-a", sent);
    assert_eq!(
        metric(p.metrics, "otelcol_exporter_sent_spans"),
        Some(sent as f64)
    );
    assert_eq!(
        metric(p.metrics, "otelcol_exporter_send_failed_spans"),
        Some(0.0),
        "log:\n{}",
        front.logs()
    );
}

#[test]
fn shape_limiter_batch_attributes_chain_refuses_back_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend_grpc = free_port();
    // The backend sits behind a proxy that resets the first connections, once it is up.
    let proxy = faulty_proxy(backend_grpc, 0, 3);
    let p = FrontPorts::new();
    let processors = "  memory_limiter:
    check_interval: 1s
    limit_mib: 8000
  batch:
    send_batch_size: 250
    timeout: 50ms
  attributes:
    actions:
      - {key: delivery.shape, value: chain, action: insert}
";
    let cfg = shaped_config(
        p,
        processors,
        &["memory_limiter", "batch", "attributes"],
        &small_queue_exporter("otlp", proxy),
        &["otlp"],
        None,
    );
    let _front = start_front(dir.path(), "front.yaml", &cfg, p);
    let (sent, refused) = flood_while_down(p, "shape-b", 3000);
    assert_eq!(
        metric(p.metrics, "otelcol_exporter_enqueue_failed_spans"),
        Some(refused as f64)
    );
    let backend = start_backend(backend_grpc, dir.path());
    exactly_the_accepted_arrive(&backend.out, "shape-b", sent);
    // Every span went through the whole chain.
    let mut tagged = 0;
    for line in read_json_lines(&backend.out) {
        for rs in line["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let v = attr(&s["attributes"], "delivery.shape");
                    assert_eq!(
                        v.and_then(|v| v["stringValue"].as_str()),
                        Some("chain"),
                        "{s}"
                    );
                    tagged += 1;
                }
            }
        }
    }
    assert_eq!(tagged, sent);
}

#[test]
fn shape_batch_fanning_out_to_two_exporters_one_failing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good_dir = dir.path().join("good");
    let bad_dir = dir.path().join("bad");
    std::fs::create_dir_all(&good_dir).expect("mkdir");
    std::fs::create_dir_all(&bad_dir).expect("mkdir");
    let good_grpc = free_port();
    let bad_grpc = free_port();
    let good = start_backend(good_grpc, &good_dir);
    let p = FrontPorts::new();
    let exporters = format!(
        "  otlp/good:
    endpoint: 127.0.0.1:{good_grpc}
    tls:
      insecure: true
    {FAST_RETRY}
    sending_queue:
      queue_size: 1000
      batch: {{}}
{}",
        small_queue_exporter("otlp/bad", bad_grpc)
    );
    let cfg = shaped_config(
        p,
        "  batch:\n    timeout: 50ms\n",
        &["batch"],
        &exporters,
        &["otlp/good", "otlp/bad"],
        None,
    );
    let _front = start_front(dir.path(), "front.yaml", &cfg, p);
    let (sent, refused) = flood_while_down(p, "shape-c", 3000);
    // The failing branch's refusal is the client's answer, and only that branch counts it.
    assert_eq!(
        metric_where(
            p.metrics,
            "otelcol_exporter_enqueue_failed_spans",
            "otlp/bad"
        ),
        Some(refused as f64)
    );
    assert_eq!(
        metric_where(
            p.metrics,
            "otelcol_exporter_enqueue_failed_spans",
            "otlp/good"
        )
        .unwrap_or(0.0),
        0.0
    );
    // The healthy branch took every request, refused ones included: a client that retries them
    // makes duplicates there (at least once), never a loss.
    let seen = wait_all_seqs(&good.out, "shape-c", 3000, Duration::from_secs(60));
    assert_eq!(seen.len(), 3000);
    // The failing branch delivers exactly what was acknowledged once its backend is back.
    let bad = start_backend(bad_grpc, &bad_dir);
    exactly_the_accepted_arrive(&bad.out, "shape-c", sent);
}

#[test]
fn shape_batch_then_durable_batching_queue_survives_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("storage");
    let backend_grpc = free_port();
    let p = FrontPorts::new();
    let exporter = format!(
        "  otlp:
    endpoint: 127.0.0.1:{backend_grpc}
    tls:
      insecure: true
    {FAST_RETRY}
    sending_queue:
      queue_size: 1000
      storage: file_storage/queue
      batch:
        min_size: 1000
        max_size: 1500
"
    );
    let processors = "  batch:\n    timeout: 50ms\n    send_batch_max_size: 8192\n";
    let cfg = shaped_config(
        p,
        processors,
        &["batch"],
        &exporter,
        &["otlp"],
        Some(&storage),
    );
    let mut front = start_front(dir.path(), "front.yaml", &cfg, p);
    send_all_fast(p, "shape-d", 10000);
    // Everything is acknowledged, and some of it is merged and in flight: crash now.
    crash(&mut front);

    let p2 = FrontPorts::again(p);
    let cfg2 = shaped_config(
        p2,
        processors,
        &["batch"],
        &exporter,
        &["otlp"],
        Some(&storage),
    );
    let front2 = start_front(dir.path(), "front2.yaml", &cfg2, p2);
    let backend = start_backend(backend_grpc, dir.path());
    let seen = wait_all_seqs(&backend.out, "shape-d", 10000, Duration::from_secs(120));
    report_duplicates("durable batching queue after kill -9", &seen);
    assert_eq!(seen.len(), 10000);
    eventually(
        Duration::from_secs(30),
        "the durable queue to empty",
        || (metric(p2.metrics, "otelcol_exporter_queue_size") == Some(0.0)).then_some(()),
    );
    assert!(
        front2.logs().contains("replaying"),
        "log:\n{}",
        front2.logs()
    );
}
