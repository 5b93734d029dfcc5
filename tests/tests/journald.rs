//! `journald` against a real systemd-journald. What is real: journald itself (Debian's
//! /lib/systemd/systemd-journald, run by the test in a mount namespace of its own so that its
//! sockets and journal files live in temporary directories and the machine's /run and
//! /var/log/journal are untouched), the entries (written through journald's own sockets by
//! `systemd-cat`, entered into that namespace with `nsenter`, and by util-linux `logger` on
//! journald's syslog socket), the journal files journald writes, and the `journalctl` that vigil
//! runs to read them (`directory:` pointing at them). Nothing is a double.
//!
//! vigil reads with `identifiers`, `priority: info` and a `move` operator, writes to a `file`
//! exporter, and keeps its cursor in `file_storage`: after a restart it reads what was written
//! while it was down, once, and nothing again.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vigil_tests::{eventually, free_port, read_json_lines, Agent};

fn need(path: &str, what: &str) {
    assert!(
        Path::new(path).exists() || which(path),
        "{what} ({path}) is missing: run scripts/test.sh, which installs the systemd and util-linux \
         Debian packages"
    );
}

fn which(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn journald_binary() -> &'static str {
    [
        "/lib/systemd/systemd-journald",
        "/usr/lib/systemd/systemd-journald",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .unwrap_or("/lib/systemd/systemd-journald")
}

/// systemd-journald in a private mount namespace: /run is a fresh tmpfs there, with `sd` bound
/// on /run/systemd (its sockets) and `log` on /run/log (its journal files); /var/log/journal is
/// covered by an empty directory so that nothing persists on the machine.
struct Journald {
    child: Child,
    sd: PathBuf,
    log: PathBuf,
}

impl Journald {
    fn start(dir: &Path) -> Journald {
        need(journald_binary(), "systemd-journald");
        for b in ["journalctl", "systemd-cat", "logger", "unshare", "nsenter"] {
            need(b, b);
        }
        let (sd, log, var) = (dir.join("sd"), dir.join("log"), dir.join("var"));
        for d in [&sd, &log, &var] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        let script = "mount -t tmpfs none /run && mkdir -p /run/log /run/systemd \
             && mount --bind \"$1\" /run/systemd && mount --bind \"$2\" /run/log \
             && { [ ! -d /var/log/journal ] || mount --bind \"$3\" /var/log/journal; } \
             && exec \"$4\"";
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
            ])
            .args([&sd, &log, &var])
            .arg(journald_binary())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run unshare (util-linux)");
        let j = Journald { child, sd, log };
        let sock = j.sd.join("journal/stdout");
        eventually(
            Duration::from_secs(10),
            "journald's sockets (it needs root or CAP_SYS_ADMIN for its mount namespace)",
            || sock.exists().then_some(()),
        );
        j
    }

    fn journal_dir(&self) -> PathBuf {
        self.log.join("journal")
    }

    /// One entry through journald's stdout stream, as a service's output is logged.
    fn cat(&self, ident: &str, priority: &str, msg: &str) {
        let mut c = Command::new("nsenter")
            .args(["-t", &self.child.id().to_string(), "-m", "systemd-cat"])
            .args(["-t", ident, "-p", priority])
            .stdin(Stdio::piped())
            .spawn()
            .expect("run nsenter systemd-cat");
        use std::io::Write;
        c.stdin
            .take()
            .expect("stdin")
            .write_all(format!("{msg}\n").as_bytes())
            .expect("write to systemd-cat");
        assert!(c.wait().expect("systemd-cat").success());
    }

    /// One entry through journald's syslog socket, as libc's syslog(3) sends it.
    fn logger(&self, ident: &str, priority: &str, msg: &str) {
        let s = Command::new("logger")
            .arg("-u")
            .arg(self.sd.join("journal/dev-log"))
            .args(["--socket-errors=on", "-t", ident, "-p", priority, msg])
            .status()
            .expect("run logger");
        assert!(s.success());
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn messages(out: &Path) -> Vec<(String, String, String)> {
    let mut v = Vec::new();
    for l in read_json_lines(out) {
        for rl in l["resourceLogs"].as_array().into_iter().flatten() {
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    let body = &r["body"]["kvlistValue"]["values"];
                    let field = |k: &str| -> String {
                        body.as_array()
                            .into_iter()
                            .flatten()
                            .find(|kv| kv["key"] == k)
                            .and_then(|kv| kv["value"]["stringValue"].as_str())
                            .unwrap_or_default()
                            .to_string()
                    };
                    v.push((
                        field("message"),
                        field("SYSLOG_IDENTIFIER"),
                        field("PRIORITY"),
                    ));
                }
            }
        }
    }
    v
}

fn config(journal: &Path, storage: &Path, out: &Path, health: u16) -> String {
    format!(
        r#"
receivers:
  journald:
    directory: {journal}
    identifiers: [vigil-jtest]
    priority: info
    start_at: beginning
    storage: file_storage
    operators:
      - type: move
        from: body.MESSAGE
        to: body.message
exporters:
  file:
    path: {out}
    append: true
extensions:
  file_storage:
    directory: {storage}
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [file_storage, health_check]
  pipelines:
    logs: {{receivers: [journald], exporters: [file]}}
  telemetry:
    metrics:
      level: none
"#,
        journal = journal.display(),
        storage = storage.display(),
        out = out.display()
    )
}

#[test]
fn reads_the_real_journal_with_filters_operators_and_a_stored_cursor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let j = Journald::start(dir.path());
    // Written before vigil starts: start_at beginning reads it.
    j.cat("vigil-jtest", "warning", "before-start");
    let storage = dir.path().join("storage");
    std::fs::create_dir_all(&storage).expect("mkdir");
    let out = dir.path().join("out.jsonl");
    let health = free_port();
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&j.journal_dir(), &storage, &out, health);
    let mut agent = Agent::with_config_in(cfg_dir, &cfg);
    agent.wait_healthy(health, Duration::from_secs(30));

    j.logger("vigil-jtest", "user.err", "via-syslog-socket");
    j.cat("vigil-jtest", "debug", "too-verbose");
    j.cat("someone-else", "err", "other-identifier");
    j.cat("vigil-jtest", "info", "last-before-restart");
    let got = eventually(Duration::from_secs(20), "the entries in the file", || {
        let m = messages(&out);
        m.iter()
            .any(|(msg, ..)| msg == "last-before-restart")
            .then_some(m)
    });
    let names: Vec<&str> = got.iter().map(|(m, ..)| m.as_str()).collect();
    assert_eq!(
        names,
        ["before-start", "via-syslog-socket", "last-before-restart"],
        "identifiers and priority filter as journalctl does; the move operator ran"
    );
    assert_eq!(got[1].1, "vigil-jtest");
    assert_eq!(got[1].2, "3", "PRIORITY stays in the body (err = 3)");
    agent.stop_ok(Duration::from_secs(10));

    // Written while vigil is down; the stored cursor makes the next run start right after the
    // last entry it delivered.
    j.cat("vigil-jtest", "notice", "while-stopped");
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let mut agent = Agent::with_config_in(cfg_dir, &cfg);
    agent.wait_healthy(health, Duration::from_secs(30));
    j.cat("vigil-jtest", "info", "after-restart");
    let got = eventually(
        Duration::from_secs(20),
        "the entries after the restart",
        || {
            let m = messages(&out);
            m.iter()
                .any(|(msg, ..)| msg == "after-restart")
                .then_some(m)
        },
    );
    let names: Vec<&str> = got.iter().map(|(m, ..)| m.as_str()).collect();
    assert_eq!(
        names,
        [
            "before-start",
            "via-syslog-socket",
            "last-before-restart",
            "while-stopped",
            "after-restart"
        ],
        "each entry once across the restart"
    );
    agent.stop_ok(Duration::from_secs(10));
    drop(j);
}
