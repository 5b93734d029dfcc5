//! Test support for the receivers that scrape real servers (`postgresql`, `redis`, `nginx`): a
//! server process started on an ephemeral port and stopped when the test ends, running as a
//! service user when the tests run as root, a sink that collects what a receiver sends, and
//! readers of the points.

use async_trait::async_trait;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_core::otlp::metrics::v1::{metric::Data, NumberDataPoint, ResourceMetrics};
use vigil_core::{ComponentId, ConsumeError, Consumer, Host, NextConsumers, Signal, Telemetry};

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port")
}

/// Running a server as a service user: PostgreSQL refuses to run as root, so a root test runs it
/// as the user its package created; any other user runs it as itself.
pub mod run_as {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::process::CommandExt;

    /// The uid and gid of `user` when the tests run as root; `None` otherwise.
    fn ids(user: &str, setup: &str) -> Option<(u32, u32)> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let name = CString::new(user).expect("user name");
        // SAFETY: getpwnam reads a NUL-terminated name; the record is copied out at once.
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        if pw.is_null() {
            panic!("no `{user}` user to run the server as: {setup}");
        }
        // SAFETY: pw is non-null and points to getpwnam's static record.
        unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) }
    }

    /// Gives `dir` and everything in it to `user` (as root), so the server can write there.
    pub fn prepare(dir: &Path, user: &str, setup: &str) {
        let Some((uid, gid)) = ids(user, setup) else {
            return;
        };
        let mut stack = vec![dir.to_path_buf()];
        while let Some(p) = stack.pop() {
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).expect("chown");
            if p.is_dir() && !p.is_symlink() {
                for e in std::fs::read_dir(&p).expect("read_dir").flatten() {
                    stack.push(e.path());
                }
            }
        }
    }

    /// `bin` as a command run as `user` (as root); a missing program panics naming the setup step.
    pub fn command(bin: &Path, user: &str, setup: &str) -> Command {
        assert!(bin.exists(), "{} not found: {setup}", bin.display());
        let mut c = Command::new(bin);
        if let Some((uid, gid)) = ids(user, setup) {
            c.uid(uid).gid(gid).env("HOME", "/tmp");
        }
        c
    }
}

/// A server process, stopped with `stop_signal` (then SIGKILL after 5s) when dropped.
pub struct Server {
    child: Child,
    stop_signal: i32,
}

impl Server {
    /// Starts `cmd` with its output in `log` and waits until `port` accepts connections on
    /// 127.0.0.1; a server that exits first panics with its log.
    pub fn spawn(mut cmd: Command, log: &Path, port: u16, stop_signal: i32) -> Server {
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().expect("server starts");
        let mut s = Server { child, stop_signal };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return s;
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!(
                    "the server exited ({status}) before listening on {port}:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the server did not listen on {port} within 20s:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, self.stop_signal) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every number point of metric `name`.
pub fn points<'a>(rms: &'a [ResourceMetrics], name: &str) -> Vec<&'a NumberDataPoint> {
    rms.iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == name)
        .flat_map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.iter().collect::<Vec<_>>(),
            Some(Data::Sum(s)) => s.data_points.iter().collect(),
            _ => vec![],
        })
        .collect()
}

pub fn attr_of<'a>(p: &'a NumberDataPoint, key: &str) -> Option<&'a str> {
    vigil_core::attrs::get_str(&p.attributes, key)
}

/// Collects what a receiver sends.
#[derive(Default)]
pub struct Sink(Mutex<Vec<Vec<ResourceMetrics>>>);

#[async_trait]
impl Consumer for Sink {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        if let Telemetry::Metrics(m) = data {
            vigil_core::lock(&self.0).push(m);
        }
        Ok(())
    }
}

/// Creates the receiver `type_name` from `factory` with `config`, starts it, waits (up to 20s)
/// for `batches` batches, stops it and returns what it sent.
pub async fn run_receiver(
    factory: Arc<dyn vigil_core::factory::DynReceiverFactory>,
    type_name: &str,
    config: serde_json::Value,
    batches: usize,
) -> Vec<ResourceMetrics> {
    let sink = Arc::new(Sink::default());
    let mut next = NextConsumers::new();
    next.insert(Signal::Metrics, sink.clone());
    let id = ComponentId::parse(type_name).expect("id");
    let r = factory.create(&id, &config, next).expect("receiver");
    r.start(&Host::detached()).await.expect("start");
    let deadline = Instant::now() + Duration::from_secs(20);
    while vigil_core::lock(&sink.0).len() < batches {
        assert!(
            Instant::now() < deadline,
            "{type_name}: fewer than {batches} batches in 20s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.shutdown().await.expect("stop");
    let got = vigil_core::lock(&sink.0).concat();
    got
}
