//! End-to-end tests of the `filelog` receiver with the real `vigil` binary: rotation by Debian's real
//! `logrotate` (create and copytruncate) during a 100k-line write, `kill -9` and restart with
//! `file_storage` checkpoints, and the `container` operator on fixtures of each runtime's format.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use vigil_tests::{eventually, log_bodies, read_json_lines, repo_root, Agent};

const LINES: usize = 100_000;
/// One filelog batch (`tracker::BATCH_RECORDS`): the checkpoint follows every accepted batch, so a
/// crash can repeat at most that many lines.
const MAX_DUPLICATES: usize = 1024;

fn line(i: usize) -> String {
    format!("line {i:07} payload that keeps the fingerprint of each file distinct and the line near 100 bytes")
}

fn logrotate() -> PathBuf {
    for p in [
        "/usr/sbin/logrotate",
        "/sbin/logrotate",
        "/usr/bin/logrotate",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("logrotate is not installed: run the README's test command (scripts/test.sh), which installs the Debian package logrotate");
}

fn agent_yaml(include: &str, out: &Path, extra_receiver: &str) -> String {
    format!(
        r#"
receivers:
  filelog:
    include: ["{include}"]
    start_at: beginning
    poll_interval: 50ms
{extra_receiver}
exporters:
  file:
    path: {out}
service:
  pipelines:
    logs:
      receivers: [filelog]
      exporters: [file]
  telemetry:
    metrics:
      level: none
"#,
        out = out.display(),
    )
}

/// Counts of each body in the output files.
fn counts(outs: &[&Path]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for o in outs {
        for b in log_bodies(&read_json_lines(o)) {
            *m.entry(b).or_insert(0) += 1;
        }
    }
    m
}

fn rotate_during_write(mode: &str) {
    let lr = logrotate();
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("mkdir");
    let app = logs.join("app.log");
    let out = dir.path().join("out.jsonl");
    let conf = dir.path().join("logrotate.conf");
    std::fs::write(
        &conf,
        format!(
            "{} {{\n  rotate 100\n  {mode}\n  missingok\n  nocompress\n}}\n",
            app.display()
        ),
    )
    .expect("write logrotate.conf");
    let state = dir.path().join("logrotate.state");
    std::fs::write(&app, "").expect("create app.log");

    let yaml = agent_yaml(&format!("{}/app.log*", logs.display()), &out, "");
    let mut agent = Agent::with_config(&yaml);

    let open = || {
        std::fs::OpenOptions::new()
            .append(true)
            .open(&app)
            .expect("open app.log")
    };
    let mut f = open();
    let mut rotations = 0;
    for i in 0..LINES {
        writeln!(f, "{}", line(i)).expect("write");
        if i % 2_000 == 1_999 {
            // Pace the writer so that the agent reads while it writes and rotations land mid-stream.
            std::thread::sleep(Duration::from_millis(20));
        }
        if i % 17_000 == 16_999 {
            let st = Command::new(&lr)
                .arg("-f")
                .arg("-s")
                .arg(&state)
                .arg(&conf)
                .status()
                .expect("run logrotate");
            assert!(st.success(), "logrotate failed: {st}");
            rotations += 1;
            if mode == "create" {
                // As an application told by a postrotate signal would, reopen the new file.
                f = open();
            }
        }
    }
    drop(f);
    assert!(rotations >= 5);
    let rotated = std::fs::read_dir(&logs).expect("ls").count();
    assert!(
        rotated >= 6,
        "logrotate left {rotated} files; expected app.log and its rotations"
    );

    let start = std::time::Instant::now();
    while counts(&[&out]).len() < LINES && start.elapsed() < Duration::from_secs(120) {
        agent.assert_running();
        std::thread::sleep(Duration::from_millis(100));
    }
    // Stop gracefully so that anything still in flight is written before counting duplicates.
    agent.stop_ok(Duration::from_secs(30));
    let c = counts(&[&out]);
    let missing: Vec<usize> = (0..LINES).filter(|i| !c.contains_key(&line(*i))).collect();
    assert!(
        missing.is_empty(),
        "{mode}: {} lines never delivered (first few: {:?}); files: {:?}; log:\n{}",
        missing.len(),
        &missing[..missing.len().min(5)],
        std::fs::read_dir(&logs)
            .map(|d| d
                .flatten()
                .map(|e| (e.file_name(), e.metadata().map(|m| m.len()).unwrap_or(0)))
                .collect::<Vec<_>>())
            .unwrap_or_default(),
        agent.logs()
    );
    let dups: Vec<(&String, &usize)> = c.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        dups.is_empty(),
        "lines delivered more than once ({mode}): {dups:?}"
    );
    assert_eq!(c.len(), LINES, "unexpected bodies in the output");
}

#[test]
fn logrotate_create_every_line_once() {
    rotate_during_write("create");
}

#[test]
fn logrotate_copytruncate_every_line_once() {
    rotate_during_write("copytruncate");
}

#[test]
fn kill_9_with_file_storage_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("mkdir");
    let app = logs.join("app.log");
    std::fs::write(&app, "").expect("create");
    let out1 = dir.path().join("out1.jsonl");
    let out2 = dir.path().join("out2.jsonl");
    let include = format!("{}/*.log", logs.display());
    let storage_dir = dir.path().join("storage");
    let yaml = |out: &Path| {
        format!(
            r#"
receivers:
  filelog:
    include: ["{include}"]
    start_at: beginning
    storage: file_storage/ckpt
exporters:
  file:
    path: {out}
extensions:
  file_storage/ckpt:
    directory: {storage}
    create_directory: true
service:
  extensions: [file_storage/ckpt]
  pipelines:
    logs:
      receivers: [filelog]
      exporters: [file]
  telemetry:
    metrics:
      level: none
"#,
            out = out.display(),
            storage = storage_dir.display()
        )
    };
    // A writer that keeps appending, so that the kill lands mid-file.
    let total = 60_000;
    let writer_app = app.clone();
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&writer_app)
            .expect("open");
        for i in 0..total {
            writeln!(f, "{}", line(i)).expect("write");
            if i % 500 == 499 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    });
    let mut a1 = Agent::with_config(&yaml(&out1));
    eventually(
        Duration::from_secs(60),
        "some lines before the kill",
        || {
            a1.assert_running();
            (counts(&[&out1]).len() >= 5_000).then_some(())
        },
    );
    a1.signal(libc::SIGKILL);
    a1.wait_exit(Duration::from_secs(10));
    let before = counts(&[&out1]).len();
    assert!(
        before < total,
        "the kill came after the whole file was read; nothing was tested"
    );

    let mut a2 = Agent::with_config(&yaml(&out2));
    writer.join().expect("writer");
    eventually(
        Duration::from_secs(120),
        "every line after the restart",
        || {
            a2.assert_running();
            (counts(&[&out1, &out2]).len() >= total).then_some(())
        },
    );
    a2.stop_ok(Duration::from_secs(30));
    let c = counts(&[&out1, &out2]);
    let missing: Vec<usize> = (0..total)
        .filter(|i| !c.contains_key(&line(*i)))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "lines lost across kill -9 (first few): {missing:?}"
    );
    let dups: usize = c.values().map(|n| n - 1).sum();
    eprintln!("kill -9: {before} lines before the kill, {dups} delivered twice after the restart");
    // The checkpoint follows every accepted batch: at most one batch can repeat.
    assert!(
        dups <= MAX_DUPLICATES,
        "{dups} duplicates: more than one batch"
    );
}

fn fixture(name: &str) -> String {
    let p = repo_root().join("receivers/testdata/filelog").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

#[test]
fn container_formats_from_pod_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pods = dir.path().join("var/log/pods");
    let uid = "7c3f7a2e-1b2c-4d5e-8f90-0123456789ab";
    for (runtime, file) in [
        ("docker", "docker.log"),
        ("crio", "crio.log"),
        ("containerd", "containerd.log"),
    ] {
        let d = pods.join(format!("shop_{runtime}-pod_{uid}")).join("app");
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("0.log"), fixture(file)).expect("write fixture");
    }
    let out = dir.path().join("out.jsonl");
    let yaml = agent_yaml(
        &format!("{}/*/*/*.log", pods.display()),
        &out,
        // A CRI partial line ends in the space before its continuation; otelcol's default trim
        // would cut it before the container operator joins the halves.
        "    include_file_path: true\n    preserve_trailing_whitespaces: true\n    operators:\n      - type: container\n",
    );
    let mut agent = Agent::with_config(&yaml);
    let lines = eventually(Duration::from_secs(30), "12 container records", || {
        agent.assert_running();
        let l = read_json_lines(&out);
        (log_bodies(&l).len() >= 12).then_some(l)
    });
    let mut by_pod: HashMap<String, Vec<(String, String, String)>> = HashMap::new();
    for l in &lines {
        for rl in l["resourceLogs"].as_array().into_iter().flatten() {
            let res: HashMap<String, String> = rl["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|kv| {
                    (
                        kv["key"].as_str().unwrap_or("").to_string(),
                        kv["value"]["stringValue"]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                    )
                })
                .collect();
            assert_eq!(
                res.get("k8s.namespace.name").map(String::as_str),
                Some("shop"),
                "{res:?}"
            );
            assert_eq!(res.get("k8s.pod.uid").map(String::as_str), Some(uid));
            assert_eq!(
                res.get("k8s.container.name").map(String::as_str),
                Some("app")
            );
            let pod = res.get("k8s.pod.name").cloned().unwrap_or_default();
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    let stream = r["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|kv| kv["key"] == "log.iostream")
                        .and_then(|kv| kv["value"]["stringValue"].as_str())
                        .unwrap_or("")
                        .to_string();
                    let time = r["timeUnixNano"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| r["timeUnixNano"].to_string());
                    by_pod.entry(pod.clone()).or_default().push((
                        r["body"]["stringValue"].as_str().unwrap_or("").to_string(),
                        stream,
                        time,
                    ));
                }
            }
        }
    }
    for runtime in ["docker", "crio", "containerd"] {
        let recs = by_pod
            .get(&format!("{runtime}-pod"))
            .unwrap_or_else(|| panic!("no records for {runtime}: {by_pod:?}"));
        let bodies: Vec<&str> = recs.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(recs.len(), 4, "{runtime}: {bodies:?}");
        assert!(
            bodies.contains(&"starting server on :8080"),
            "{runtime}: {bodies:?}"
        );
        assert!(
            bodies.contains(&"GET /healthz 200"),
            "{runtime}: {bodies:?}"
        );
        let joined = recs
            .iter()
            .find(|r| r.0.starts_with("first half"))
            .unwrap_or_else(|| panic!("{runtime}: {bodies:?}"));
        assert!(
            joined.0.ends_with(", and the second half"),
            "{runtime}: partial line not joined: {:?}",
            joined.0
        );
        assert_eq!(joined.1, "stdout");
        assert_eq!(
            joined.2, "1709287201000000001",
            "{runtime}: the joined record keeps its first piece's time"
        );
        let warn = recs
            .iter()
            .find(|r| r.0.starts_with("level=warn"))
            .unwrap_or_else(|| panic!("{runtime}: {bodies:?}"));
        assert_eq!(warn.1, "stderr");
        assert_eq!(warn.0, "level=warn msg=\"config file missing\"");
    }
}
