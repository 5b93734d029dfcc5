//! Harness for vigil's end-to-end tests: builds the workspace binaries once, gives each test its own
//! ports and temp directory, runs `vigil` as a child process that is killed when the guard drops, and
//! waits for readiness by polling, never by sleeping a fixed time.

pub mod k8s_api;
pub mod pki;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository root (the workspace).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let p = PathBuf::from(d);
            if p.is_absolute() {
                p
            } else {
                repo_root().join(p)
            }
        }
        None => repo_root().join("target"),
    }
}

/// Path to a workspace binary (`vigil`, `vigil-loadgen`), built once per test run. With
/// `VIGIL_TEST_BIN_DIR` set, the binaries in that directory instead, built beforehand: a long
/// measurement run by hand (tests/real_app/measure.sh) keeps the binary it started with.
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("VIGIL_TEST_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--bins", "--workspace"])
            .current_dir(repo_root())
            .status()
            .expect("run cargo build --bins");
        assert!(status.success(), "cargo build --bins failed");
    });
    let p = target_dir().join("debug").join(name);
    assert!(
        p.exists(),
        "binary {} not found after cargo build",
        p.display()
    );
    p
}

/// A port nobody listens on right now.
///
/// Ports come from below the kernel's ephemeral range (32768 and up on Linux): a port the kernel hands
/// out for `:0` can be taken again, before the agent binds it, as the local end of any outgoing
/// connection, and the tests open thousands. Each port is handed out once per process (tests of one
/// target run in parallel threads), and the start is spread by process id so that two test processes
/// rarely probe the same ports.
/// An ephemeral UDP port on 127.0.0.1, free when this returns.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral UDP port")
}

/// util-linux's `logger`, the syslog client the syslog, tcplog and udplog tests send with.
pub fn logger() -> PathBuf {
    let p = PathBuf::from("/usr/bin/logger");
    assert!(
        p.exists(),
        "logger is not installed: run the README's test command (scripts/test.sh), which installs the Debian package bsdutils"
    );
    p
}

pub fn free_port() -> u16 {
    use std::sync::Mutex;
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: Mutex<Option<u32>> = Mutex::new(None);
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    let mut offset = next.unwrap_or_else(|| (std::process::id().wrapping_mul(7919)) % SPAN);
    for _ in 0..SPAN {
        let port = (LOW + offset % SPAN) as u16;
        offset = (offset + 1) % SPAN;
        let free = TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("0.0.0.0", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            *next = Some(offset);
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

/// The Python interpreter of the test venv with the OpenTelemetry SDK. Fails, naming the setup step,
/// when the venv is missing: a test never skips quietly.
pub fn python() -> PathBuf {
    let p = std::env::var_os("VIGIL_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: run the README's test command (scripts/test.sh), which creates .venv with the \
         OpenTelemetry SDK (pip install -r tests/requirements.txt)",
        p.display()
    );
    p
}

/// Runs `tests/python/<script>` with `args` under `python` (a test venv's interpreter); what it
/// printed on stdout, as JSON. Panics with its stderr when it fails.
pub fn python_script_json(python: &Path, script: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python)
        .arg(repo_root().join("tests/python").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run tests/python/{script}: {e}"));
    assert!(
        out.status.success(),
        "tests/python/{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "tests/python/{script} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// One OpenTelemetry SDK export of three spans (tests/python/sdk_auth.py) over `protocol` (`grpc` or
/// `http`) to `endpoint`, with `test.run` = `run`, request `headers` and resource `attrs` (each
/// `k=v`); `"SUCCESS"` or `"FAILURE"`.
pub fn sdk_auth_export(
    protocol: &str,
    endpoint: &str,
    run: &str,
    headers: &[&str],
    attrs: &[&str],
) -> String {
    let mut args = vec!["--protocol", protocol, "--endpoint", endpoint, "--run", run];
    for h in headers {
        args.extend(["--header", h]);
    }
    for a in attrs {
        args.extend(["--attr", a]);
    }
    let v = python_script_json(&python(), "sdk_auth.py", &args);
    v["result"].as_str().unwrap_or_default().to_string()
}

/// The Python interpreter of the second test venv, `.venv-legacy`, for clients that cannot share
/// `.venv` (the discontinued Jaeger exporters and the Zipkin protobuf exporter; see
/// tests/requirements-legacy.txt). Fails, naming the setup step, when it is missing.
pub fn python_legacy() -> PathBuf {
    let p = std::env::var_os("VIGIL_TEST_PYTHON_LEGACY")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv-legacy/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: run the README's test command (scripts/test.sh), which creates .venv-legacy \
         with the Jaeger and Zipkin protobuf exporters (pip install -r tests/requirements-legacy.txt)",
        p.display()
    );
    p
}

/// A running `vigil` process with its own temp dir; killed on drop.
pub struct Agent {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
}

impl Agent {
    /// Starts `vigil` with the given arguments; stderr goes to `<dir>/vigil.log`.
    pub fn start(args: &[String]) -> Agent {
        let dir = tempfile::tempdir().expect("temp dir");
        Agent::start_in(dir, args)
    }

    pub fn start_in(dir: tempfile::TempDir, args: &[String]) -> Agent {
        Agent::start_env(dir, args, &[])
    }

    /// Starts `vigil` with extra environment variables (for `${env:…}` in configs).
    pub fn start_env(dir: tempfile::TempDir, args: &[String], env: &[(&str, String)]) -> Agent {
        let log = dir.path().join("vigil.log");
        let err = std::fs::File::create(&log).expect("create log file");
        let child = Command::new(bin("vigil"))
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn vigil");
        Agent { child, dir, log }
    }

    /// Starts `vigil` with a config file written from `yaml` into the temp dir.
    pub fn with_config(yaml: &str) -> Agent {
        Agent::with_config_in(tempfile::tempdir().expect("temp dir"), yaml)
    }

    /// Starts `vigil` in `dir` (which it then owns) with `yaml` written to `<dir>/config.yaml`.
    pub fn with_config_in(dir: tempfile::TempDir, yaml: &str) -> Agent {
        let cfg = write_config(dir.path(), "config.yaml", yaml);
        Agent::start_in(dir, &["--config".into(), cfg.display().to_string()])
    }

    /// Starts `vigil` with `yaml` written to `<dir>/<file>` and `extra` arguments after
    /// `--config`; the agent gets a temp dir of its own.
    pub fn with_config_file(dir: &Path, file: &str, yaml: &str, extra: &[&str]) -> Agent {
        let cfg = write_config(dir, file, yaml);
        let mut args = vec!["--config".to_string(), cfg.display().to_string()];
        args.extend(extra.iter().map(|a| a.to_string()));
        Agent::start(&args)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is touched.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits for the process to exit, up to `limit`; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Sends SIGTERM and asserts that the agent exits with code 0 within `limit`; its log otherwise.
    pub fn stop_ok(&mut self, limit: Duration) {
        self.signal(libc::SIGTERM);
        let code = self.wait_exit(limit);
        assert_eq!(code, Some(0), "log:\n{}", self.logs());
    }

    /// Panics with the agent's log if it has exited: a test waiting on it would otherwise wait out
    /// its whole limit and report only a timeout.
    pub fn assert_running(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("vigil exited early with {st}; log:\n{}", self.logs());
        }
    }

    /// Waits until every `127.0.0.1:<port>` of `ports` accepts a TCP connection (the agent's
    /// listeners are up), or panics after `limit`, or at once with the log if the agent exited.
    pub fn wait_tcp(&mut self, ports: &[u16], limit: Duration) {
        eventually(limit, &format!("TCP ports {ports:?} accepting"), || {
            self.assert_running();
            ports
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
                .then_some(())
        });
    }

    /// Polls `url` until it answers 200, or panics with the agent's log after `limit`.
    pub fn wait_http_ok(&mut self, url: &str, limit: Duration) {
        let start = Instant::now();
        let client = reqwest::blocking::Client::new();
        while start.elapsed() < limit {
            self.assert_running();
            if let Ok(r) = client.get(url).timeout(Duration::from_secs(1)).send() {
                if r.status().is_success() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{url} not ready after {limit:?}; log:\n{}", self.logs());
    }

    /// Polls the `health_check` extension on `127.0.0.1:<port>` until it answers 200, or panics
    /// with the agent's log after `limit`.
    pub fn wait_healthy(&mut self, port: u16, limit: Duration) {
        self.wait_http_ok(&format!("http://127.0.0.1:{port}/"), limit);
    }

    /// Polls until the log contains `needle`.
    pub fn wait_log(&mut self, needle: &str, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.logs().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("log never showed {needle:?}; log:\n{}", self.logs());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GETs `url` (10 s timeout): its status code and body text. Panics when there is no answer.
pub fn http_get(url: &str) -> (u16, String) {
    let r = reqwest::blocking::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let code = r.status().as_u16();
    (code, r.text().unwrap_or_default())
}

/// The environment under which vigil signs AWS requests for moto and other local AWS stand-ins: moto's
/// static test keys, and a shared-credentials path under `dir` that does not exist, so that a developer's
/// own `~/.aws/credentials` never reaches a test.
pub fn static_aws_env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("none").display().to_string(),
        ),
    ]
}

/// Writes `yaml` to `<dir>/<file>` and returns the path.
pub fn write_config(dir: &Path, file: &str, yaml: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, yaml).expect("write config");
    path
}

/// A config's `receivers:` section with one `otlp` receiver serving `protocol` (`grpc` or `http`)
/// on `127.0.0.1:<port>`.
pub fn otlp_receiver(protocol: &str, port: u16) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      {protocol}:
        endpoint: 127.0.0.1:{port}
"
    )
}

/// A config's `receivers:` section with one `otlp` receiver serving gRPC on `127.0.0.1:<grpc>` and
/// HTTP on `127.0.0.1:<http>`, each with `settings` (YAML at the endpoint's indentation; further
/// lines start with eight spaces).
pub fn otlp_receiver_grpc_http(grpc: u16, http: u16, settings: &str) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
        {settings}
      http:
        endpoint: 127.0.0.1:{http}
        {settings}
"
    )
}

/// A config's `extensions:` section with only `health_check` on `health`, and the start of
/// `service:` with that extension, so that `  pipelines:` follows directly.
pub fn health_check_and_service(health: u16) -> String {
    format!(
        "extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
"
    )
}

/// The middle of most test configs: a `file` exporter writing OTLP/JSON lines to `out`, the
/// `health_check` extension on `health`, and the start of `service:` with that extension, so that
/// `  pipelines:` follows directly.
pub fn file_exporter_and_health(out: &Path, health: u16) -> String {
    format!(
        "exporters:
  file:
    path: {}
{}",
        out.display(),
        health_check_and_service(health)
    )
}

/// The middle of a test config whose data goes nowhere: a `debug` exporter, the `health_check`
/// extension on `health`, and the start of `service:` with that extension, so that `  pipelines:`
/// follows directly.
pub fn debug_exporter_and_health(health: u16) -> String {
    format!(
        "exporters:
  debug: {{}}
{}",
        health_check_and_service(health)
    )
}

/// A backend `vigil` that writes what it receives over OTLP (gRPC and HTTP) to a JSON-lines file;
/// killed on drop.
pub struct FileBackend {
    pub agent: Agent,
    pub grpc: u16,
    pub http: u16,
    /// The file exporter's output, read with [`read_json_lines`].
    pub out: PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts a [`FileBackend`] (`otlp` receiver → `file` exporter writing `<temp dir>/<file>`) with one
/// pipeline per signal in `signals` (`traces`, `metrics`, `logs`) and its own metrics off, and waits
/// until its `health_check` answers.
pub fn otlp_file_backend(signals: &[&str], file: &str) -> FileBackend {
    let (grpc, http, health) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join(file);
    let pipelines: String = signals
        .iter()
        .map(|s| format!("    {s}: {{receivers: [otlp], exporters: [file]}}\n"))
        .collect();
    let cfg = format!(
        "{}{}  pipelines:\n{pipelines}  telemetry:\n    metrics:\n      level: none\n",
        otlp_receiver_grpc_http(grpc, http, ""),
        file_exporter_and_health(&out, health),
    );
    let mut agent = Agent::with_config(&cfg);
    agent.wait_healthy(health, Duration::from_secs(30));
    FileBackend {
        agent,
        grpc,
        http,
        out,
        _dir: dir,
    }
}

/// Every log record whose `eventName` is `event` (e.g. `vigil.incident`) in OTLP/JSON lines of logs.
pub fn event_records(lines: &[serde_json::Value], event: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for l in lines {
        for rl in l["resourceLogs"].as_array().into_iter().flatten() {
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    if r["eventName"] == event {
                        out.push(r.clone());
                    }
                }
            }
        }
    }
    out
}

/// The sum of the series of `name` on vigil's own Prometheus endpoint (`127.0.0.1:<port>/metrics`)
/// whose text after the name contains `label` (`""` for every series); `None` if there is none.
pub fn metric_sum(port: u16, name: &str, label: &str) -> Option<f64> {
    let text = reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))
        .ok()?
        .text()
        .ok()?;
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) || !rest.contains(label) {
            continue;
        }
        let v: f64 = rest.rsplit(' ').next()?.parse().ok()?;
        found = Some(found.unwrap_or(0.0) + v);
    }
    found
}

/// `(a, b)` of every span in an OTLP/JSON-lines traces file, where `a` and `b` are the string
/// values of resource attributes `key_a` and `key_b` (empty when missing); sorted.
pub fn spans_by_resource_attrs(out: &Path, key_a: &str, key_b: &str) -> Vec<(String, String)> {
    let mut got: Vec<(String, String)> = read_json_lines(out)
        .iter()
        .flat_map(|l| l["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|rs| {
            let attr = |k: &str| {
                otlp_attr(&rs["resource"]["attributes"], k)
                    .and_then(|v| v["stringValue"].as_str().map(str::to_string))
                    .unwrap_or_default()
            };
            let pair = (attr(key_a), attr(key_b));
            let n = rs["scopeSpans"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|ss| ss["spans"].as_array().map_or(0, Vec::len))
                .sum::<usize>();
            std::iter::repeat_n(pair, n)
        })
        .collect();
    got.sort();
    got
}

/// Polls `f` until it returns `Some`, or panics with `what` after `limit`.
pub fn eventually<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads an OTLP/JSON-lines file written by the `file` exporter; a missing file is empty.
pub fn read_json_lines(path: &Path) -> Vec<serde_json::Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The OTLP/JSON `AnyValue` of `key` in an attribute list (`[{"key": …, "value": {…}}]`).
pub fn otlp_attr<'a>(attrs: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    attrs
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| &kv["value"])
}

/// The string value of `key` in an OTLP/JSON attribute list; empty when absent or not a string.
pub fn otlp_attr_str(attrs: &serde_json::Value, key: &str) -> String {
    otlp_attr(attrs, key)
        .and_then(|v| v["stringValue"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Every log record body (as text) in OTLP/JSON lines of logs.
pub fn log_bodies(lines: &[serde_json::Value]) -> Vec<String> {
    let mut out = Vec::new();
    for l in lines {
        for rl in l["resourceLogs"].as_array().into_iter().flatten() {
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    out.push(
                        r["body"]["stringValue"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
            }
        }
    }
    out
}
