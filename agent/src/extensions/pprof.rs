//! `pprof`: otelcol's profiling extension. It serves CPU profiles of the running agent in pprof's
//! protobuf format (gzip-compressed, as Go's `net/http/pprof` serves them) on `endpoint` (default
//! `localhost:1777`), so `go tool pprof http://host:1777/debug/pprof/profile?seconds=30` works as it
//! does against otelcol. With `save_to_file`, the whole run is profiled and written there at shutdown.
//!
//! The profiler is pprof-rs: `SIGPROF` every 10 ms of process CPU time (100 Hz, Go's rate), the stack
//! unwound in the signal handler. It is one per process, so one profile runs at a time across every
//! `pprof` extension: a request while another profile runs (or while `save_to_file` holds the
//! profiler) is refused with 429 and counted in `vigil_pprof_refused{extension,reason}`.
//!
//! `block_profile_fraction` and `mutex_profile_fraction` are accepted and have no effect: they set
//! Go runtime sampling rates for goroutine blocking and mutex contention, and a Rust process has no
//! runtime that records either, so there is no block or mutex profile to serve.

use async_trait::async_trait;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_core::config::{bind_tcp, check_endpoint};
use vigil_core::{Component, ComponentId, ComponentKind, ConfigError, Extension, Host};

/// Go's default profile length when `seconds` is absent or not a positive number.
const DEFAULT_SECONDS: u64 = 30;
/// The longest profile one request may ask for: a profile holds the process-wide profiler, so a
/// forgotten `seconds=86400` would lock everyone else out for a day.
pub const MAX_SECONDS: u64 = 300;
/// Samples per second of CPU time, Go's `runtime.SetCPUProfileRate` default.
const FREQUENCY_HZ: i32 = 100;
/// How often a running profile looks for a shutdown, so that stopping the agent is not delayed by
/// up to `MAX_SECONDS`.
const STOP_POLL: Duration = Duration::from_millis(100);
/// Frames from these libraries are not unwound in the signal handler: unwinding through libc,
/// libgcc or the vDSO from a signal can deadlock (pprof-rs's advice).
const BLOCKLIST: [&str; 4] = ["libc", "libgcc", "pthread", "vdso"];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct PprofConfig {
    /// Where `/debug/pprof/` is served.
    #[serde(default = "default_endpoint")]
    endpoint: String,
    /// Go's block-profile sampling rate; accepted, no effect in vigil (see the module doc).
    #[serde(default)]
    block_profile_fraction: i64,
    /// Go's mutex-contention sampling fraction; accepted, no effect in vigil.
    #[serde(default)]
    mutex_profile_fraction: i64,
    /// When set, the CPU profile of the whole run is written to this file at shutdown.
    #[serde(default)]
    save_to_file: String,
}

fn default_endpoint() -> String {
    "localhost:1777".into()
}

fn check(id: &ComponentId, cfg: &PprofConfig) -> Result<(), ConfigError> {
    check_endpoint(&cfg.endpoint)
        .map_err(|e| ConfigError::component(ComponentKind::Extension, id, "endpoint", e))?;
    if !cfg.save_to_file.is_empty() {
        let path = std::path::Path::new(&cfg.save_to_file);
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        if !dir.is_dir() {
            return Err(ConfigError::component(
                ComponentKind::Extension,
                id,
                "save_to_file",
                format!(
                    "the directory of {:?} does not exist or is not a directory",
                    cfg.save_to_file
                ),
            ));
        }
    }
    Ok(())
}

struct Factory;

/// The `pprof` extension factory, for the registry.
pub fn factory() -> Arc<dyn vigil_core::factory::DynExtensionFactory> {
    vigil_core::factory::extension(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = PprofConfig;

    fn type_name(&self) -> &'static str {
        "pprof"
    }

    fn validate(&self, id: &ComponentId, cfg: &PprofConfig) -> Result<(), ConfigError> {
        check(id, cfg)
    }
}

impl vigil_core::factory::ExtensionFactory for Factory {
    fn stability(&self) -> vigil_core::Stability {
        vigil_core::Stability::Beta
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: PprofConfig,
    ) -> Result<Arc<dyn Extension>, ConfigError> {
        if cfg.block_profile_fraction > 0 || cfg.mutex_profile_fraction > 0 {
            let _in = set.span.enter();
            tracing::info!(
                "block_profile_fraction and mutex_profile_fraction have no effect in vigil: a Rust \
                 process records no goroutine blocking or mutex profiles; CPU profiles are served"
            );
        }
        Ok(Arc::new(Pprof {
            id: set.id.clone(),
            cfg,
            stopping: Arc::new(AtomicBool::new(false)),
            tasks: set.tasks.clone(),
            whole_run: Mutex::new(None),
        }))
    }
}

/// Whether the process-wide profiler is taken: pprof-rs keeps one profiler per process.
static PROFILER_BUSY: AtomicBool = AtomicBool::new(false);

/// Holds the profiler for as long as it lives.
struct ProfilerSlot;

impl ProfilerSlot {
    fn take() -> Option<ProfilerSlot> {
        PROFILER_BUSY
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| ProfilerSlot)
    }
}

impl Drop for ProfilerSlot {
    fn drop(&mut self) {
        PROFILER_BUSY.store(false, Ordering::Release);
    }
}

/// Profiles the process until `stop` is set or `limit` has passed, and returns the profile as
/// gzip-compressed pprof protobuf. Blocking: run it on its own thread. The profiler guard is made
/// and dropped on this thread. `started` hears once sampling runs (or why it could not start):
/// setting the profiler up the first time takes a while (seconds in a debug build), and a caller
/// that profiles "from start" waits for it.
fn record(
    _slot: &ProfilerSlot,
    limit: Option<Duration>,
    stop: &AtomicBool,
    started: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
) -> anyhow::Result<Vec<u8>> {
    use pprof::protos::Message;
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY_HZ)
        .blocklist(&BLOCKLIST)
        .build()
        .map_err(|e| format!("cannot start the CPU profiler: {e}"));
    let guard = match (guard, started) {
        (Ok(g), Some(tx)) => {
            let _ = tx.send(Ok(()));
            g
        }
        (Ok(g), None) => g,
        (Err(e), tx) => {
            if let Some(tx) = tx {
                let _ = tx.send(Err(e.clone()));
            }
            anyhow::bail!(e);
        }
    };
    let started = Instant::now();
    while !stop.load(Ordering::Acquire) && limit.is_none_or(|l| started.elapsed() < l) {
        let left = limit.map_or(STOP_POLL, |l| l.saturating_sub(started.elapsed()));
        std::thread::sleep(left.min(STOP_POLL));
    }
    let profile = guard
        .report()
        .frames_post_processor(drop_profiler_frames)
        .build()
        .and_then(|r| r.pprof())
        .map_err(|e| anyhow::anyhow!("cannot build the CPU profile: {e}"))?;
    drop(guard);
    let raw = profile.encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw)?;
    Ok(gz.finish()?)
}

/// Removes the profiler's own frames from the leaf end of a sampled stack (the unwinder and the
/// signal handler that ran it), so that a sample is charged to the function that was interrupted
/// rather than to `backtrace::trace_unsynchronized`.
fn drop_profiler_frames(frames: &mut pprof::Frames) {
    let own = |f: &Vec<pprof::Symbol>| {
        f.iter().all(|s| {
            let n = s.name();
            n.starts_with("backtrace::")
                || n.starts_with("pprof::")
                || n.starts_with("<pprof::")
                || n.contains("perf_signal_handler")
                || n.starts_with("__restore_rt")
        })
    };
    let skip = frames.frames.iter().take_while(|f| own(f)).count();
    // A stack made only of the profiler's frames is kept whole rather than emptied.
    if skip < frames.frames.len() {
        frames.frames.drain(..skip);
    }
}

struct WholeRun {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<Vec<u8>>>,
}

struct Pprof {
    id: ComponentId,
    cfg: PprofConfig,
    /// Set at shutdown: running profiles end early and answer with what they have.
    stopping: Arc<AtomicBool>,
    tasks: vigil_core::task::Tasks,
    whole_run: Mutex<Option<WholeRun>>,
}

impl Extension for Pprof {}

#[derive(Clone)]
struct Ctx {
    id: String,
    stopping: Arc<AtomicBool>,
}

#[derive(Deserialize)]
struct ProfileQuery {
    seconds: Option<String>,
}

fn text(code: StatusCode, body: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn refused(ctx: &Ctx, code: StatusCode, reason: &'static str, body: String) -> Response {
    metrics::counter!("vigil_pprof_refused", "extension" => ctx.id.clone(), "reason" => reason)
        .increment(1);
    text(code, body)
}

/// `seconds` as Go's handler reads it: absent, unparsable or not positive means 30.
fn seconds(q: &ProfileQuery) -> u64 {
    q.seconds
        .as_deref()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|s| *s > 0)
        .map_or(DEFAULT_SECONDS, |s| s as u64)
}

async fn profile(State(ctx): State<Ctx>, Query(q): Query<ProfileQuery>) -> Response {
    let secs = seconds(&q);
    if secs > MAX_SECONDS {
        return refused(
            &ctx,
            StatusCode::BAD_REQUEST,
            "too_long",
            format!("seconds={secs} is longer than the {MAX_SECONDS} s a profile may run\n"),
        );
    }
    let Some(slot) = ProfilerSlot::take() else {
        return refused(
            &ctx,
            StatusCode::TOO_MANY_REQUESTS,
            "busy",
            "another CPU profile is running (one at a time per process; with save_to_file the \
             whole run holds the profiler); try again when it ends\n"
                .into(),
        );
    };
    let stop = ctx.stopping.clone();
    let done = tokio::task::spawn_blocking(move || {
        record(&slot, Some(Duration::from_secs(secs)), &stop, None)
    })
    .await;
    match done {
        Ok(Ok(body)) => {
            metrics::counter!("vigil_pprof_profiles", "extension" => ctx.id.clone()).increment(1);
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"profile\"",
                    ),
                ],
                body,
            )
                .into_response()
        }
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the profiling thread failed: {e}\n"),
        ),
    }
}

async fn cmdline() -> Response {
    // As Go's /debug/pprof/cmdline: the arguments separated by NUL bytes.
    text(
        StatusCode::OK,
        std::env::args().collect::<Vec<_>>().join("\0"),
    )
}

async fn index() -> Response {
    let body = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>/debug/pprof/ · vigil</title></head>\
<body style=\"font:14px/1.45 system-ui,sans-serif;margin:16px 24px;max-width:900px\"><h1>/debug/pprof/</h1>\
<p>CPU profiles of this vigil process in pprof's protobuf format, for <code>go tool pprof</code> or any pprof reader.</p>\
<table border=\"1\" cellpadding=\"4\" style=\"border-collapse:collapse\"><tr><th>profile</th><th>what it is</th></tr>\
<tr><td><a href=\"profile?seconds=10\">profile</a></td><td>CPU time sampled at {FREQUENCY_HZ} Hz for <code>seconds</code> (default {DEFAULT_SECONDS}, at most {MAX_SECONDS}); one at a time, others get 429</td></tr>\
<tr><td><a href=\"cmdline\">cmdline</a></td><td>the command line, NUL-separated</td></tr></table>\
<p>Go's other profiles (heap, goroutine, block, mutex, threadcreate, allocs, trace) describe the Go runtime; a Rust process has none of them, so they are not served.</p>\
<p>Example: <code>go tool pprof -top http://HOST:PORT/debug/pprof/profile?seconds=10</code></p></body></html>"
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

async fn not_served(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!(
            "no {name:?} profile: vigil serves CPU profiles (/debug/pprof/profile) and the command \
             line; Go's runtime profiles have no counterpart in a Rust process\n"
        ),
    )
}

impl Pprof {
    /// Ends the whole-run profile and writes it to `save_to_file`.
    async fn save_whole_run(&self) -> anyhow::Result<()> {
        let taken = self
            .whole_run
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(run) = taken else {
            return Ok(());
        };
        run.stop.store(true, Ordering::Release);
        let body = tokio::task::spawn_blocking(move || run.thread.join())
            .await
            .map_err(|e| anyhow::anyhow!("extensions::{}: {e}", self.id))?
            .map_err(|_| anyhow::anyhow!("extensions::{}: the profiling thread panicked", self.id))?
            .map_err(|e| anyhow::anyhow!("extensions::{}: {e}", self.id))?;
        let path = self.cfg.save_to_file.clone();
        tokio::fs::write(&path, body).await.map_err(|e| {
            anyhow::anyhow!(
                "extensions::{}::save_to_file: cannot write {path:?}: {e}",
                self.id
            )
        })?;
        tracing::info!(file = %path, "CPU profile of the run written");
        Ok(())
    }
}

#[async_trait]
impl Component for Pprof {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let listener = bind_tcp(ComponentKind::Extension, &self.id, &self.cfg.endpoint).await?;
        if !self.cfg.save_to_file.is_empty() {
            let Some(slot) = ProfilerSlot::take() else {
                anyhow::bail!(
                    "extensions::{}::save_to_file: the CPU profiler is already taken (another pprof \
                     extension profiles the whole run, or a profile request is running)",
                    self.id
                );
            };
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            let (tx, rx) = tokio::sync::oneshot::channel();
            let thread = std::thread::Builder::new()
                .name("pprof-save".into())
                .spawn(move || record(&slot, None, &flag, Some(tx)))?;
            // Extensions start before the pipelines: waiting here puts the pipelines' whole run
            // in the profile, as otelcol's does.
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => anyhow::bail!("extensions::{}::save_to_file: {e}", self.id),
                Err(_) => anyhow::bail!(
                    "extensions::{}::save_to_file: the profiling thread ended before sampling began",
                    self.id
                ),
            }
            *self.whole_run.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(WholeRun { stop, thread });
        }
        let ctx = Ctx {
            id: self.id.to_string(),
            stopping: self.stopping.clone(),
        };
        let app = axum::Router::new()
            .route("/debug/pprof", axum::routing::get(index))
            .route("/debug/pprof/", axum::routing::get(index))
            .route("/debug/pprof/profile", axum::routing::get(profile))
            .route("/debug/pprof/cmdline", axum::routing::get(cmdline))
            .route("/debug/pprof/{name}", axum::routing::get(not_served))
            .with_state(ctx);
        super::health_check::serve_http(&self.id, &self.tasks, listener, app, None);
        Ok(())
    }

    /// Running profiles end early and answer with what they have; the listener stops by
    /// `deadline`; then the whole run's profile is written.
    async fn shutdown_by(&self, deadline: std::time::Instant) -> anyhow::Result<()> {
        self.stopping.store(true, Ordering::Release);
        self.tasks.stop(deadline).await;
        self.save_whole_run().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::factory::FactoryBase;

    fn parse(v: serde_json::Value) -> Result<PprofConfig, ConfigError> {
        let id = ComponentId::new("pprof", None);
        let cfg: PprofConfig = vigil_core::config::decode(ComponentKind::Extension, &id, &v)?;
        Factory.validate(&id, &cfg).map(|_| cfg)
    }

    #[test]
    fn config_defaults_and_mistakes() {
        let cfg = parse(serde_json::Value::Null).unwrap();
        assert_eq!(cfg.endpoint, "localhost:1777");
        assert_eq!(cfg.block_profile_fraction, 0);
        assert!(cfg.save_to_file.is_empty());
        let cfg =
            parse(serde_json::json!({"block_profile_fraction": 3, "mutex_profile_fraction": 5}))
                .unwrap();
        assert_eq!(cfg.mutex_profile_fraction, 5);
        let e = parse(serde_json::json!({"endpoint": "nowhere"})).unwrap_err();
        assert!(e.to_string().contains("endpoint"), "{e}");
        let e = parse(serde_json::json!({"save_to_file": "/no/such/dir/cpu.prof"})).unwrap_err();
        assert!(
            e.to_string().contains("save_to_file") && e.to_string().contains("/no/such/dir"),
            "{e}"
        );
    }

    #[test]
    fn seconds_reads_as_go_does() {
        let q = |s: Option<&str>| ProfileQuery {
            seconds: s.map(str::to_string),
        };
        assert_eq!(seconds(&q(None)), 30);
        assert_eq!(seconds(&q(Some("5"))), 5);
        assert_eq!(seconds(&q(Some("0"))), 30);
        assert_eq!(seconds(&q(Some("-3"))), 30);
        assert_eq!(seconds(&q(Some("x"))), 30);
        assert_eq!(seconds(&q(Some("301"))), 301);
    }
}
