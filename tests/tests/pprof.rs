//! The `pprof` extension serving real CPU profiles of a running agent that carries OTLP load: the
//! body is gzip-compressed pprof protobuf, decoded here against profile.proto's schema (samples with
//! CPU time, symbolized functions) and read by the standard reader, `go tool pprof` (Debian's
//! golang-go). One profile runs at a time: a second request meanwhile gets 429 and is counted.
//! `save_to_file` writes the whole run's profile at shutdown.

use prost::Message;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vigil_tests::{bin, free_port, Agent};

/// The parts of pprof's profile.proto (github.com/google/pprof, proto/profile.proto) this test reads.
#[derive(Clone, PartialEq, Message)]
struct Profile {
    #[prost(message, repeated, tag = "1")]
    sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    sample: Vec<Sample>,
    #[prost(message, repeated, tag = "4")]
    location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    string_table: Vec<String>,
    #[prost(int64, tag = "10")]
    duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    period: i64,
}

#[derive(Clone, PartialEq, Message)]
struct ValueType {
    #[prost(int64, tag = "1")]
    r#type: i64,
    #[prost(int64, tag = "2")]
    unit: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Sample {
    #[prost(uint64, repeated, tag = "1")]
    location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    value: Vec<i64>,
}

#[derive(Clone, PartialEq, Message)]
struct Location {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(message, repeated, tag = "4")]
    line: Vec<Line>,
}

#[derive(Clone, PartialEq, Message)]
struct Line {
    #[prost(uint64, tag = "1")]
    function_id: u64,
}

#[derive(Clone, PartialEq, Message)]
struct Function {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(int64, tag = "2")]
    name: i64,
}

/// Gunzips and decodes a served or saved profile, and checks what every CPU profile must hold.
fn decode(body: &[u8]) -> Profile {
    assert!(
        body.starts_with(&[0x1f, 0x8b]),
        "gzip-compressed, as Go serves profiles"
    );
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut raw)
        .expect("gunzip the profile");
    let p = Profile::decode(raw.as_slice()).expect("a pprof Profile protobuf");
    let s = |i: i64| p.string_table.get(i as usize).cloned().unwrap_or_default();
    let types: Vec<(String, String)> = p
        .sample_type
        .iter()
        .map(|t| (s(t.r#type), s(t.unit)))
        .collect();
    assert!(
        types.contains(&("cpu".into(), "nanoseconds".into())),
        "sample types {types:?}"
    );
    let period = p.period_type.clone().expect("period_type");
    assert_eq!(
        (s(period.r#type), s(period.unit)),
        ("cpu".into(), "nanoseconds".into())
    );
    assert!(p.period > 0, "period {}", p.period);
    assert!(!p.sample.is_empty(), "no samples in the profile");
    // Each sample is charged to the interrupted function, not to the profiler's own unwinder.
    // A rare sample may still end there (a signal landing while a frame is half set up, seen
    // once in 58 samples on a loaded CI machine); a broken trim shows in most samples.
    let leaf = |sample: &Sample| {
        let loc = p
            .location
            .iter()
            .find(|l| Some(&l.id) == sample.location_id.first())?;
        let id = loc.line.first()?.function_id;
        let f = p.function.iter().find(|f| f.id == id)?;
        Some(s(f.name))
    };
    let unwinder = p
        .sample
        .iter()
        .filter(|x| leaf(x).is_some_and(|n| n.starts_with("backtrace::")))
        .count();
    assert!(
        unwinder * 10 <= p.sample.len(),
        "of {} samples, {unwinder} end in the unwinder",
        p.sample.len()
    );
    for sample in &p.sample {
        assert_eq!(
            sample.value.len(),
            p.sample_type.len(),
            "one value per sample type"
        );
        for id in &sample.location_id {
            assert!(
                p.location.iter().any(|l| l.id == *id),
                "sample names location {id}, which the profile lacks"
            );
        }
    }
    p
}

fn function_names(p: &Profile) -> Vec<String> {
    p.function
        .iter()
        .filter_map(|f| p.string_table.get(f.name as usize).cloned())
        .collect()
}

/// `go tool pprof -top` on a saved profile: the standard reader must accept it.
fn go_pprof_top(file: &Path) -> String {
    let go = Command::new("go").arg("version").output();
    assert!(
        go.is_ok_and(|o| o.status.success()),
        "`go` is missing: scripts/test.sh installs Debian's golang-go package (apt-get install \
         --no-install-recommends golang-go) for `go tool pprof`"
    );
    let cache = tempfile::tempdir().expect("go cache dir");
    let out = Command::new("go")
        .args(["tool", "pprof", "-top", "-symbolize=none"])
        .arg(file)
        .env("GOCACHE", cache.path())
        .env("HOME", cache.path())
        .output()
        .expect("run go tool pprof");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "go tool pprof failed:\n{text}");
    assert!(
        text.contains("Type: cpu") && text.contains("flat%"),
        "go tool pprof -top:\n{text}"
    );
    text
}

/// OTLP load for the profiles to sample: spans as fast as the agent takes them, for `secs`.
fn load(grpc: u16, secs: u64) -> Child {
    Command::new(bin("vigil-loadgen"))
        .args(["traces", "--otlp-endpoint", &format!("127.0.0.1:{grpc}")])
        .args([
            "--rate",
            "0",
            "--workers",
            "2",
            "--duration",
            &format!("{secs}s"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vigil-loadgen")
}

fn finish(sender: Child) {
    let out = sender.wait_with_output().expect("wait for vigil-loadgen");
    assert!(
        out.status.success(),
        "vigil-loadgen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until every pipeline runs (health_check answers 200 only then; the pprof listener is up
/// earlier, since extensions start first).
fn wait_ready(agent: &mut Agent, health: u16) {
    agent.wait_healthy(health, Duration::from_secs(60));
}

fn config(grpc: u16, pprof: u16, health: u16, metrics: u16, extra: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  batch:
exporters:
  debug:
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
  pprof:
    endpoint: 127.0.0.1:{pprof}
    block_profile_fraction: 10
{extra}
service:
  extensions: [health_check, pprof]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#
    )
}

fn get(url: &str, timeout: Duration) -> (u16, Vec<u8>) {
    let r = reqwest::blocking::Client::new()
        .get(url)
        .timeout(timeout)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (r.status().as_u16(), r.bytes().unwrap_or_default().to_vec())
}

#[test]
fn served_cpu_profiles_are_pprof_one_at_a_time() {
    let (grpc, port, health, metrics) = (free_port(), free_port(), free_port(), free_port());
    let mut agent = Agent::with_config(&config(grpc, port, health, metrics, ""));
    let base = format!("http://127.0.0.1:{port}/debug/pprof");
    wait_ready(&mut agent, health);

    let sender = load(grpc, 6);
    // Two profiles asked for at once: the profiler is one per process, so whichever comes second
    // is refused while the other (3 s) runs.
    let ask = |base: String| {
        std::thread::spawn(move || {
            get(
                &format!("{base}/profile?seconds=3"),
                Duration::from_secs(60),
            )
        })
    };
    let (a, b) = (ask(base.clone()), ask(base.clone()));
    let mut answers = vec![
        a.join().expect("first request"),
        b.join().expect("second request"),
    ];
    finish(sender);
    answers.sort_by_key(|(code, _)| *code);
    let codes: Vec<u16> = answers.iter().map(|(c, _)| *c).collect();
    assert_eq!(codes, [200, 429], "one profile, one refusal");
    let (_, refused) = answers.pop().expect("the refusal");
    let refused = String::from_utf8_lossy(&refused).into_owned();
    assert!(refused.contains("another CPU profile"), "{refused}");
    let (_, body) = answers.pop().expect("the profile");
    let p = decode(&body);
    assert!(
        p.duration_nanos >= 2_900_000_000,
        "a 3 s profile lasted {} ns",
        p.duration_nanos
    );
    let names = function_names(&p);
    assert!(
        names
            .iter()
            .any(|n| n.contains("vigil") || n.contains("tokio")),
        "symbolized frames of the agent: {names:?}"
    );
    let file = agent.dir.path().join("served.prof");
    std::fs::write(&file, &body).expect("write the profile");
    let top = go_pprof_top(&file);
    println!(
        "go tool pprof -top on a served profile ({} samples):\n{top}",
        p.sample.len()
    );

    // Bounded: longer than MAX_SECONDS is refused.
    let (code, body) = get(
        &format!("{base}/profile?seconds=100000"),
        Duration::from_secs(10),
    );
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    let (code, _) = get(&format!("{base}/heap"), Duration::from_secs(10));
    assert_eq!(code, 404);
    let (code, cmdline) = get(&format!("{base}/cmdline"), Duration::from_secs(10));
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&cmdline).contains("--config"));

    let (_, text) = get(
        &format!("http://127.0.0.1:{metrics}/metrics"),
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&text);
    let count = |reason: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("vigil_pprof_refused")
                    && l.contains(&format!("reason=\"{reason}\""))
                    && l.contains("extension=\"pprof\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(count("busy") >= 1.0, "refusals counted:\n{text}");
    assert_eq!(count("too_long"), 1.0, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("vigil_pprof_profiles{") && l.ends_with(" 1")),
        "{text}"
    );
    drop(agent);
}

#[test]
fn save_to_file_writes_the_whole_run_at_shutdown() {
    let (grpc, port, health, metrics) = (free_port(), free_port(), free_port(), free_port());
    let out = tempfile::tempdir().expect("output dir");
    let file = out.path().join("cpu.prof");
    let extra = format!("    save_to_file: {}", file.display());
    let mut agent = Agent::with_config(&config(grpc, port, health, metrics, &extra));
    let base = format!("http://127.0.0.1:{port}/debug/pprof");
    wait_ready(&mut agent, health);
    let sender = load(grpc, 3);
    // The run holds the profiler, so a request is refused rather than cut into it.
    let (code, body) = get(
        &format!("{base}/profile?seconds=1"),
        Duration::from_secs(10),
    );
    assert_eq!(code, 429, "{}", String::from_utf8_lossy(&body));
    finish(sender);
    assert!(!file.exists(), "written only at shutdown");
    agent.stop_ok(Duration::from_secs(60));
    let body = std::fs::read(&file)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", file.display(), agent.logs()));
    let p = decode(&body);
    assert!(p.duration_nanos >= 1_000_000_000, "{}", p.duration_nanos);
    go_pprof_top(&file);
}
