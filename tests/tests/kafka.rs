//! The `kafka` exporter and receiver against a real Kafka-protocol broker: tansu (a Kafka-API
//! broker written in Rust, on its SQLite storage so that a restarted broker keeps its log), started
//! by each test on its own port. An independent client, confluent-kafka (librdkafka as PyPI ships
//! it, tests/python/kafka_client.py), reads and decodes what vigil wrote and writes what vigil reads.

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_tests::{
    eventually, free_port, health_check_and_service, python, python_script_json, read_json_lines,
    Agent,
};

/// The tansu binary scripts/test.sh installs (`VIGIL_TEST_TANSU` overrides it).
fn tansu() -> PathBuf {
    let p = std::env::var_os("VIGIL_TEST_TANSU")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                });
            cache.join("vigil/tansu-0.6.0/bin/tansu")
        });
    assert!(
        p.exists(),
        "{} is missing: run the README's test command (scripts/test.sh), whose step 4 installs the \
         tansu Kafka broker (cargo install tansu --features libsql into ~/.cache/vigil)",
        p.display()
    );
    p
}

/// A tansu broker on its own port, keeping its log in `dir`; killed on drop.
struct Broker {
    child: Option<Child>,
    port: u16,
    /// The port the broker tells clients to connect to: its own, or a TLS relay's in front of it.
    advertised: u16,
    /// Whether clients must authenticate (SASL SCRAM: tansu 0.6.0 offers no PLAIN).
    authentication: bool,
    dir: PathBuf,
    _keep: Option<tempfile::TempDir>,
}

impl Broker {
    fn start() -> Broker {
        let port = free_port();
        Broker::start_advertising(port, port)
    }

    fn start_advertising(port: u16, advertised: u16) -> Broker {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut b = Broker {
            child: None,
            port,
            advertised,
            authentication: false,
            dir: tmp.path().to_path_buf(),
            _keep: Some(tmp),
        };
        b.restart();
        b
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A SCRAM user (`scram256` or `scram512`), stored by the broker (`tansu user create`).
    fn create_user(&self, name: &str, password: &str, mechanism: &str) {
        let out = Command::new(tansu())
            .args([
                "user",
                "create",
                "--broker",
                &format!("tcp://{}", self.addr()),
            ])
            .args([name, password, "--mechanism", mechanism])
            .output()
            .expect("tansu user create");
        assert!(
            out.status.success(),
            "tansu user create {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Restarts the broker requiring SASL authentication from every client.
    fn require_authentication(&mut self) {
        self.kill();
        self.authentication = true;
        self.restart();
    }

    /// Starts the broker process (again) on the same port and storage.
    fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .expect("broker log");
        let mut cmd = Command::new(tansu());
        cmd.arg("broker");
        if self.authentication {
            cmd.arg("--authentication");
        }
        let child = cmd
            .args(["--kafka-listener-url", &format!("tcp://{}", self.addr())])
            .args([
                "--kafka-advertised-listener-url",
                &format!("tcp://127.0.0.1:{}", self.advertised),
            ])
            // The SQLite file is named relative to the working directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .env("RUST_LOG", "warn")
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let addr = self.addr();
        eventually(Duration::from_secs(30), "the broker to listen", || {
            TcpStream::connect(&addr).ok()
        });
    }

    /// SIGKILL: the broker gets no chance to flush anything it had not made durable.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tansu.log")).unwrap_or_default()
    }

    fn client(&self, args: &[&str]) -> Value {
        let mut all = vec![args[0], "--brokers"];
        let addr = self.addr();
        all.push(&addr);
        all.extend_from_slice(&args[1..]);
        python_script_json(&python(), "kafka_client.py", &all)
    }

    fn create_topic(&self, topic: &str, partitions: usize) {
        let p = partitions.to_string();
        let v = self.client(&["create-topic", "--topic", topic, "--partitions", &p]);
        assert_eq!(v["partitions"], json!(partitions), "topic {topic}: {v}");
    }

    /// Writes `messages` OTLP trace messages of `per_message` spans each to `topic` with the
    /// independent client (`extra`: more of its flags), and checks that all were written.
    fn produce_traces(&self, topic: &str, messages: usize, per_message: usize, extra: &[&str]) {
        let (m, per) = (messages.to_string(), per_message.to_string());
        let mut args = vec![
            "produce",
            "--topic",
            topic,
            "--signal",
            "traces",
            "--messages",
            &m,
            "--per-message",
            &per,
        ];
        args.extend_from_slice(extra);
        let v = self.client(&args);
        assert_eq!(v["produced"], json!(messages), "{v}");
    }

    /// Reads `topic` from the start until `items` spans (or records) were seen.
    fn consume(&self, topic: &str, signal: &str, encoding: &str, items: usize) -> Value {
        let n = items.to_string();
        let group = format!("reader-{}", free_port());
        self.client(&[
            "consume",
            "--topic",
            topic,
            "--signal",
            signal,
            "--encoding",
            encoding,
            "--items",
            &n,
            "--group",
            &group,
            "--timeout",
            "90",
        ])
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// OTLP/JSON traces: spans `first..first+n`, span `i` in trace `i % traces`.
fn traces_json(first: usize, n: usize, traces: usize) -> Value {
    let spans: Vec<Value> = (first..first + n)
        .map(|i| {
            json!({
                "traceId": format!("{:032x}", (i % traces) + 1),
                "spanId": format!("{:016x}", i + 1),
                "name": format!("s-{i}"),
                "kind": 2,
                "startTimeUnixNano": "1700000000000000000",
                "endTimeUnixNano": "1700000000000500000",
                "attributes": [{"key": "http.route", "value": {"stringValue": "/checkout/{id}"}}]
            })
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
        "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}]
    }]})
}

fn post(port: u16, path: &str, body: &Value) -> u16 {
    reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .timeout(Duration::from_secs(30))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// A vigil with `components` (its config from `receivers:` to the last exporter, without a
/// trailing newline) and `pipelines` (the lines under `service::pipelines`), the health_check
/// extension, and its own telemetry off; returned once healthy.
fn start_agent(components: &str, pipelines: &str) -> Agent {
    let health = free_port();
    let cfg = format!(
        "{components}
{frame}  pipelines:
{pipelines}  telemetry:
    metrics:
      level: none
",
        frame = health_check_and_service(health)
    );
    let mut agent = Agent::with_config(&cfg);
    agent.wait_healthy(health, Duration::from_secs(60));
    agent
}

/// A vigil whose otlp (HTTP) receiver feeds a kafka exporter with `exporter` (YAML body lines).
fn vigil_to_kafka(exporter: &str, signals: &[&str]) -> (Agent, u16) {
    let http = free_port();
    let pipelines: String = signals
        .iter()
        .map(|s| format!("    {s}: {{receivers: [otlp], exporters: [kafka]}}\n"))
        .collect();
    let components = format!(
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
exporters:
  kafka:
{exporter}",
    );
    (start_agent(&components, &pipelines), http)
}

#[test]
fn exporter_writes_otlp_that_a_kafka_client_decodes() {
    let broker = Broker::start();
    broker.create_topic("spans", 3);
    broker.create_topic("logs", 1);
    let (agent, http) = vigil_to_kafka(
        &format!(
            "    brokers: [{}]
    traces: {{topic: spans}}
    logs: {{topic: logs, encoding: otlp_json}}
    partition_traces_by_id: true
    producer: {{compression: zstd}}",
            broker.addr()
        ),
        &["traces", "logs"],
    );
    assert_eq!(post(http, "/v1/traces", &traces_json(0, 60, 6)), 200);
    let logs = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"body": {"stringValue": "first"}}, {"body": {"stringValue": "second"}}
    ]}]}]});
    assert_eq!(post(http, "/v1/logs", &logs), 200);

    let got = broker.consume("spans", "traces", "otlp_proto", 60);
    let msgs = got["messages"].as_array().expect("messages");
    let names: BTreeSet<String> = msgs
        .iter()
        .flat_map(|m| m["names"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    let want: BTreeSet<String> = (0..60).map(|i| format!("s-{i}")).collect();
    assert_eq!(names, want, "every span, decoded by confluent-kafka: {got}");
    // One trace per message, keyed by its id, and every message of a trace in one partition.
    let mut partition_of: BTreeMap<String, i64> = BTreeMap::new();
    for m in msgs {
        let ids = m["trace_ids"].as_array().expect("trace ids");
        assert_eq!(ids.len(), 1, "one trace per message: {m}");
        let id = ids[0].as_str().unwrap_or_default().to_string();
        assert_eq!(m["key"].as_str(), Some(id.as_str()), "keyed by trace id");
        let p = m["partition"].as_i64().unwrap_or(-1);
        assert_eq!(
            *partition_of.entry(id).or_insert(p),
            p,
            "a trace split over partitions"
        );
    }
    let partitions: BTreeSet<i64> = partition_of.values().copied().collect();
    assert_eq!(partition_of.len(), 6);
    assert!(
        partitions.len() > 1,
        "6 traces all in one partition: {partition_of:?}"
    );

    let got = broker.consume("logs", "logs", "otlp_json", 2);
    assert_eq!(got["items"], json!(2), "{got}");
    assert_eq!(got["messages"][0]["names"], json!(["first", "second"]));
    drop(agent);
}

/// A vigil whose kafka receiver (`receiver`: YAML body lines) feeds a `file` exporter.
fn kafka_to_file(receiver: &str, dir: &Path, signal: &str) -> Agent {
    let out = dir.join("out.jsonl");
    let components = format!(
        "receivers:
  kafka:
{receiver}
exporters:
  file:
    path: {out}",
        out = out.display(),
    );
    let pipelines = format!("    {signal}: {{receivers: [kafka], exporters: [file]}}\n");
    start_agent(&components, &pipelines)
}

fn span_names(lines: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for l in lines {
        for rs in l["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    out.push(s["name"].as_str().unwrap_or_default().to_string());
                }
            }
        }
    }
    out
}

#[test]
fn receiver_reads_what_a_kafka_client_wrote() {
    let broker = Broker::start();
    broker.create_topic("in-spans", 2);
    broker.produce_traces("in-spans", 20, 3, &["--header"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let _agent = kafka_to_file(
        &format!(
            "    brokers: [{}]
    traces: {{topic: in-spans}}
    group_id: vigil-e2e
    initial_offset: earliest
    header_extraction: {{extract_headers: true, headers: [tenant]}}",
            broker.addr()
        ),
        dir.path(),
        "traces",
    );
    let out = dir.path().join("out.jsonl");
    let names = eventually(Duration::from_secs(60), "60 spans from kafka", || {
        let n = span_names(&read_json_lines(&out));
        (n.len() >= 60).then_some(n)
    });
    let got: BTreeSet<String> = names.into_iter().collect();
    let want: BTreeSet<String> = (0..60).map(|i| format!("span-{i}")).collect();
    assert_eq!(got, want);
    let lines = read_json_lines(&out);
    let tenant = vigil_tests::otlp_attr(
        &lines[0]["resourceSpans"][0]["resource"]["attributes"],
        "kafka.header.tenant",
    );
    assert_eq!(tenant, Some(&json!({"stringValue": "team-a"})));
}

#[test]
fn broker_restart_mid_stream_loses_nothing() {
    let mut broker = Broker::start();
    broker.create_topic("spans", 1);
    let (agent, http) = vigil_to_kafka(
        &format!(
            "    brokers: [{}]
    traces: {{topic: spans}}
    timeout: 2s
    retry_on_failure: {{initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 0s}}
    sending_queue: {{queue_size: 100000, sizer: items}}",
            broker.addr()
        ),
        &["traces"],
    );
    const BATCHES: usize = 40;
    const PER: usize = 25;
    for b in 0..BATCHES {
        if b == BATCHES / 2 {
            broker.kill();
        }
        if b == BATCHES / 2 + 5 {
            broker.restart();
        }
        assert_eq!(
            post(http, "/v1/traces", &traces_json(b * PER, PER, 5)),
            200,
            "batch {b}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let total = BATCHES * PER;
    let got = broker.consume("spans", "traces", "otlp_proto", total);
    let names: Vec<String> = got["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["names"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    let unique: BTreeSet<&String> = names.iter().collect();
    let missing: Vec<usize> = (0..total)
        .filter(|i| !unique.contains(&format!("s-{i}")))
        .collect();
    assert!(
        missing.is_empty(),
        "lost {} spans: {missing:?}\nbroker log:\n{}",
        missing.len(),
        broker.log()
    );
    eprintln!(
        "broker restart: {total} spans sent, {} read, {} duplicates",
        names.len(),
        names.len() - unique.len()
    );
    drop(agent);
}

/// An OTLP/HTTP backend that accepts the first `accept` requests and answers 503 to the rest
/// until `open` is set; it records the span names of what it accepted.
struct Backend {
    port: u16,
    names: Arc<Mutex<Vec<String>>>,
    open: Arc<std::sync::atomic::AtomicBool>,
    _rt: tokio::runtime::Runtime,
}

fn backend(accept: usize) -> Backend {
    use prost::Message;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let port = free_port();
    let names = Arc::new(Mutex::new(Vec::new()));
    let open = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    let (n, o) = (names.clone(), open.clone());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
        .expect("bind backend");
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let (n, o, seen) = (n.clone(), o.clone(), seen.clone());
            async move {
                if !o.load(Ordering::SeqCst) && seen.fetch_add(1, Ordering::SeqCst) >= accept {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                let Ok(req) = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(body) else {
                    return axum::http::StatusCode::BAD_REQUEST;
                };
                let mut n = n.lock().unwrap_or_else(|e| e.into_inner());
                for rs in req.resource_spans {
                    for ss in rs.scope_spans {
                        n.extend(ss.spans.into_iter().map(|s| s.name));
                    }
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    rt.spawn(async move { axum::serve(listener, app).await });
    Backend {
        port,
        names,
        open,
        _rt: rt,
    }
}

/// kafka receiver → otlphttp exporter with no queue, so that the receiver's offset commits follow
/// what the backend accepted.
fn kafka_to_backend(broker: &Broker, backend: u16) -> Agent {
    let components = format!(
        "receivers:
  kafka:
    brokers: [{broker}]
    traces: {{topic: work}}
    group_id: vigil-restart
    group_instance_id: node-1
    initial_offset: earliest
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:{backend}
    compression: none
    sending_queue: {{enabled: false}}
    retry_on_failure: {{enabled: false}}",
        broker = broker.addr(),
    );
    start_agent(
        &components,
        "    traces: {receivers: [kafka], exporters: [otlphttp]}\n",
    )
}

#[test]
fn receiver_killed_mid_stream_rereads_what_was_not_accepted() {
    use std::sync::atomic::Ordering;
    let broker = Broker::start();
    broker.create_topic("work", 1);
    broker.produce_traces("work", 50, 2, &[]);
    // The backend takes 10 requests, then refuses (retryable): the receiver holds the partition
    // and retries; it must not commit past what was accepted.
    let be = backend(10);
    let mut first = kafka_to_backend(&broker, be.port);
    eventually(Duration::from_secs(60), "10 accepted requests", || {
        (be.names.lock().unwrap_or_else(|e| e.into_inner()).len() >= 20).then_some(())
    });
    // Let the refusals and an autocommit tick happen, then kill -9 mid-stream.
    std::thread::sleep(Duration::from_millis(1500));
    first.signal(libc::SIGKILL);
    let _ = first.wait_exit(Duration::from_secs(10));
    let before = be.names.lock().unwrap_or_else(|e| e.into_inner()).len();
    assert!(
        before < 100,
        "the backend refused the rest, yet got {before} spans"
    );

    be.open.store(true, Ordering::SeqCst);
    let second = kafka_to_backend(&broker, be.port);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let names = loop {
        let n = be.names.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let unique: BTreeSet<String> = n.iter().cloned().collect();
        if unique.len() >= 100 {
            break n;
        }
        if std::time::Instant::now() > deadline {
            let missing: Vec<usize> = (0..100)
                .filter(|i| !unique.contains(&format!("span-{i}")))
                .collect();
            panic!(
                "{} of 100 spans reached the backend; missing {missing:?}\nfirst agent:\n{}\nsecond agent:\n{}\nbroker:\n{}",
                unique.len(),
                first.logs(),
                second.logs(),
                broker.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let unique: BTreeSet<&String> = names.iter().collect();
    eprintln!(
        "receiver kill: {before} spans accepted before the kill, {} after the restart, {} duplicates",
        names.len() - before,
        names.len() - unique.len()
    );
}

/// FNV-1a (32-bit) of a key, as Sarama's hash partitioner and librdkafka's fnv1a partitioner place
/// it: the hash as int32, its absolute value, modulo the partition count.
fn sarama_partition(key: &[u8], partitions: i64) -> i64 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    i64::from(h as i32).abs() % partitions
}

#[test]
fn exporter_routes_by_attribute_and_metadata_and_keys_logs_by_trace() {
    let broker = Broker::start();
    broker.create_topic("logs-default", 3);
    broker.create_topic("team-x", 1);
    let http = free_port();
    let components = format!(
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
        include_metadata: true
exporters:
  kafka:
    brokers: [{broker}]
    logs: {{topic: logs-default}}
    topic_from_attribute: kafka.topic
    include_metadata_keys: [X-Tenant]
    partition_logs_by_trace_id: true",
        broker = broker.addr(),
    );
    let agent = start_agent(
        &components,
        "    logs: {receivers: [otlp], exporters: [kafka]}\n",
    );
    let rec = |body: &str, trace: u8| json!({"body": {"stringValue": body}, "traceId": format!("{:032x}", trace)});
    let logs = json!({"resourceLogs": [
        {"resource": {"attributes": [{"key": "kafka.topic", "value": {"stringValue": "team-x"}}]},
         "scopeLogs": [{"logRecords": [rec("x1", 1), rec("x2", 1)]}]},
        {"scopeLogs": [{"logRecords": [rec("d1", 2), rec("d2", 3), rec("d3", 2), rec("d4", 3),
                                        {"body": {"stringValue": "no-trace"}}]}]}
    ]});
    let status = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{http}/v1/logs"))
        .header("content-type", "application/json")
        .header("X-Tenant", "acme")
        .body(logs.to_string())
        .timeout(Duration::from_secs(30))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_eq!(status, 200);

    let team = broker.consume("team-x", "logs", "otlp_proto", 2);
    let msgs = team["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(msgs.len(), 1, "{team}\n{}", agent.logs());
    assert_eq!(msgs[0]["names"], json!(["x1", "x2"]));
    assert_eq!(msgs[0]["key"], json!(format!("{:032x}", 1)));
    assert_eq!(msgs[0]["headers"], json!([["X-Tenant", "acme"]]));

    let rest = broker.consume("logs-default", "logs", "otlp_proto", 5);
    let mut by_key: BTreeMap<String, (Vec<Value>, i64)> = BTreeMap::new();
    for m in rest["messages"].as_array().into_iter().flatten() {
        assert_eq!(m["headers"], json!([["X-Tenant", "acme"]]), "{m}");
        let key = m["key"].as_str().unwrap_or("<none>").to_string();
        let names = m["names"].as_array().cloned().unwrap_or_default();
        by_key.insert(key, (names, m["partition"].as_i64().unwrap_or(-1)));
    }
    let t2 = format!("{:032x}", 2);
    let t3 = format!("{:032x}", 3);
    assert_eq!(by_key.len(), 3, "{rest}");
    assert_eq!(by_key[&t2].0, vec![json!("d1"), json!("d3")]);
    assert_eq!(by_key[&t3].0, vec![json!("d2"), json!("d4")]);
    assert_eq!(by_key["<none>"].0, vec![json!("no-trace")]);
    // A keyed message lands where otelcol's producer would put it (Sarama's FNV-1a).
    for t in [&t2, &t3] {
        assert_eq!(
            by_key[t].1,
            sarama_partition(t.as_bytes(), 3),
            "trace {t} in partition {} ({rest})",
            by_key[t].1
        );
    }
}

/// A vigil whose otlp (HTTP) traces go to a kafka exporter (topic `secure`) and whose kafka
/// receiver writes what it reads to a file; `exporter` and `receiver` are extra YAML lines of each
/// (the receiver's name its topics).
fn kafka_round_trip(broker: &str, exporter: &str, receiver: &str, out: &Path) -> (Agent, u16) {
    let http = free_port();
    let components = format!(
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
  kafka:
    brokers: [{broker}]
    group_id: vigil-secure
    initial_offset: earliest
{receiver}
exporters:
  kafka:
    brokers: [{broker}]
    traces: {{topic: secure}}
    timeout: 2s
    retry_on_failure: {{initial_interval: 100ms, max_interval: 500ms}}
{exporter}
  file:
    path: {out}",
        out = out.display(),
    );
    let pipelines = "    traces/out: {receivers: [otlp], exporters: [kafka]}
    traces/in: {receivers: [kafka], exporters: [file]}
";
    (start_agent(&components, pipelines), http)
}

#[test]
fn sasl_scram_against_a_broker_that_requires_it() {
    let mut broker = Broker::start();
    broker.create_topic("secure", 1);
    broker.create_user("writer", "w-secret", "scram256");
    broker.create_user("reader", "r-secret", "scram512");
    broker.require_authentication();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let (agent, http) = kafka_round_trip(
        &broker.addr(),
        "    auth: {sasl: {mechanism: SCRAM-SHA-256, username: writer, password: w-secret}}",
        // The receiver subscribes by pattern (librdkafka's ^ subscription).
        "    traces: {topics: [\"^sec.*\"]}
    auth: {sasl: {mechanism: SCRAM-SHA-512, username: reader, password: r-secret}}",
        &out,
    );
    assert_eq!(post(http, "/v1/traces", &traces_json(0, 5, 1)), 200);
    let names = eventually(Duration::from_secs(30), "5 spans through SASL", || {
        let n = span_names(&read_json_lines(&out));
        (n.len() >= 5).then_some(n)
    });
    assert_eq!(names.len(), 5, "{}", agent.logs());
    // The broker does check: an independent client with a wrong password is refused.
    let bad = Command::new(python())
        .arg(vigil_tests::repo_root().join("tests/python/kafka_client.py"))
        .args([
            "produce",
            "--brokers",
            &broker.addr(),
            "--topic",
            "secure",
            "--timeout",
            "3",
        ])
        .args(["--sasl", "SCRAM-SHA-256:writer:wrong"])
        .output()
        .expect("run kafka_client.py");
    assert!(
        !bad.status.success(),
        "a wrong password was accepted: {}",
        String::from_utf8_lossy(&bad.stdout)
    );
}

/// The TLS relay (tests/python/tls_relay.py) on `port`, in front of the broker's `upstream` port,
/// requiring a client certificate from `pki`'s CA; killed on drop.
struct Relay(Child);

impl Relay {
    fn start(port: u16, upstream: u16, pki: &vigil_tests::pki::Pki) -> Relay {
        let child = Command::new(python())
            .arg(vigil_tests::repo_root().join("tests/python/tls_relay.py"))
            .args([
                "--port",
                &port.to_string(),
                "--upstream",
                &upstream.to_string(),
            ])
            .args([
                "--cert",
                &pki.path("server.pem"),
                "--key",
                &pki.path("server.key"),
            ])
            .args(["--ca", &pki.path("ca.pem")])
            .stdout(Stdio::null())
            .spawn()
            .expect("start tests/python/tls_relay.py");
        let relay = Relay(child);
        eventually(Duration::from_secs(30), "the TLS relay to listen", || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        relay
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn tls_with_client_certificates_through_a_tls_relay() {
    // tansu 0.6.0 serves plaintext only (see docs/kafka.md), so the broker advertises the relay's
    // port and every client connection after the bootstrap one goes through TLS as well.
    let port = free_port();
    let relay_port = free_port();
    let mut broker = Broker::start_advertising(port, port);
    broker.create_topic("secure", 1);
    broker.kill();
    broker.advertised = relay_port;
    broker.restart();
    let pki = vigil_tests::pki::Pki::new("kafka");
    let _relay = Relay::start(relay_port, port, &pki);
    let tls = format!(
        "    tls: {{ca_file: {}, cert_file: {}, key_file: {}}}",
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key")
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let relay_addr = format!("127.0.0.1:{relay_port}");
    let receiver = format!("    traces: {{topic: secure}}\n{tls}");
    let (agent, http) = kafka_round_trip(&relay_addr, &tls, &receiver, &out);
    assert_eq!(post(http, "/v1/traces", &traces_json(0, 5, 1)), 200);
    let names = eventually(Duration::from_secs(30), "5 spans through TLS", || {
        let n = span_names(&read_json_lines(&out));
        (n.len() >= 5).then_some(n)
    });
    assert_eq!(names.len(), 5, "{}", agent.logs());
}
