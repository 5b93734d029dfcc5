//! `cgroup_runtime`: otelcol's cgroupruntimeextension, which sets Go's `GOMAXPROCS` and `GOMEMLIMIT`
//! from the Linux cgroup the collector runs in. vigil has no Go runtime; its counterparts are the
//! tokio worker thread count and the heap the allocator keeps, so this is what each key does here:
//!
//! - `gomaxprocs::enabled` (default true): the runtime's worker threads are set to the cgroup's CPU
//!   quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`), rounded down, at least 1 and at
//!   most the host's CPUs. The worker count is fixed when the runtime starts, so `main` reads it
//!   from the loaded config through [`worker_threads`] before building the runtime; a SIGHUP that
//!   changes the key takes effect at the next start, and says so. Without a quota nothing changes.
//! - `gomemlimit::enabled` (default true) and `ratio` (default 0.9): the soft limit is `ratio` ×
//!   the cgroup memory limit (v2 `memory.max`, v1 `memory.limit_in_bytes`). Go's GC works harder
//!   and returns memory to the OS near that limit; a Rust process has no garbage to collect, but
//!   glibc's allocator keeps freed pages in its arenas, so every second the resident size is read
//!   and, above the limit, `malloc_trim(0)` hands the free pages back (counted in
//!   `vigil_cgroup_runtime_memory_trims`). Without a memory limit nothing is trimmed. Hard limits
//!   stay with `memory_limiter`, which reads the same cgroup for its percentages.
//!
//! Both derived values are gauges (`vigil_cgroup_runtime_cpu_quota`, `vigil_cgroup_runtime_worker_threads`,
//! `vigil_cgroup_runtime_memory_limit_bytes`) and are logged once at start.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use vigil_core::{Component, ComponentId, ComponentKind, ConfigError, Extension, Host};

/// How often the resident size is compared with the soft limit.
const CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct CgroupRuntimeConfig {
    /// The worker thread count from the cgroup's CPU quota.
    #[serde(default)]
    gomaxprocs: GoMaxProcs,
    /// A soft memory limit from the cgroup's memory limit.
    #[serde(default)]
    gomemlimit: GoMemLimit,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct GoMaxProcs {
    #[serde(default = "yes")]
    enabled: bool,
}

impl Default for GoMaxProcs {
    fn default() -> Self {
        GoMaxProcs { enabled: true }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct GoMemLimit {
    #[serde(default = "yes")]
    enabled: bool,
    /// The share of the cgroup memory limit taken as the soft limit, in (0, 1].
    #[serde(default = "default_ratio")]
    ratio: f64,
}

impl Default for GoMemLimit {
    fn default() -> Self {
        GoMemLimit {
            enabled: true,
            ratio: default_ratio(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_ratio() -> f64 {
    0.9
}

fn check(id: &ComponentId, cfg: &CgroupRuntimeConfig) -> Result<(), ConfigError> {
    let r = cfg.gomemlimit.ratio;
    if r.is_nan() || r <= 0.0 || r > 1.0 {
        return Err(ConfigError::component(
            ComponentKind::Extension,
            id,
            "gomemlimit::ratio",
            format!("ratio {r} must be greater than 0 and at most 1"),
        ));
    }
    if cfg.gomemlimit.enabled && !cfg!(target_env = "gnu") {
        return Err(ConfigError::component(
            ComponentKind::Extension,
            id,
            "gomemlimit::enabled",
            "this build's allocator has no malloc_trim (it is not glibc), so a soft memory \
             limit cannot be applied; set it to false",
        ));
    }
    Ok(())
}

/// What the cgroup says, from the cgroup filesystem mounted at `root`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// CPUs the quota allows (quota / period), if there is a quota.
    pub cpu_quota: Option<f64>,
    /// Bytes, if there is a limit.
    pub memory: Option<u64>,
}

/// Reads this process's cgroup limits under `root` (normally `/sys/fs/cgroup`): v2 first (the
/// unified hierarchy, with this process's group from `/proc/self/cgroup`, then the mount's root
/// as a container sees it), then v1's `cpu` and `memory` controllers.
pub fn read_limits(root: &Path, proc_self_cgroup: &str) -> Limits {
    let mut v2_dirs = Vec::new();
    let mut v1_cpu = Vec::new();
    let mut v1_mem = Vec::new();
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c.trim_start_matches('/')),
            _ => continue,
        };
        if ctrls.is_empty() {
            v2_dirs.push(root.join(path));
            v2_dirs.push(root.join("unified").join(path));
        }
        if ctrls.split(',').any(|c| c == "cpu") {
            v1_cpu.push(root.join("cpu").join(path));
        }
        if ctrls.split(',').any(|c| c == "memory") {
            v1_mem.push(root.join("memory").join(path));
        }
    }
    v2_dirs.push(root.to_path_buf());
    v1_cpu.push(root.join("cpu"));
    v1_mem.push(root.join("memory"));

    let read = |p: PathBuf| std::fs::read_to_string(p).ok();
    let cpu_quota = v2_dirs
        .iter()
        .find_map(|d| read(d.join("cpu.max")).map(|t| parse_cpu_max(&t)))
        .or_else(|| {
            v1_cpu.iter().find_map(|d| {
                let q = read(d.join("cpu.cfs_quota_us"))?;
                let p = read(d.join("cpu.cfs_period_us"))?;
                Some(parse_cfs(&q, &p))
            })
        })
        .flatten();
    let memory = v2_dirs
        .iter()
        .find_map(|d| read(d.join("memory.max")).map(|t| parse_memory(&t)))
        .or_else(|| {
            v1_mem
                .iter()
                .find_map(|d| read(d.join("memory.limit_in_bytes")).map(|t| parse_memory(&t)))
        })
        .flatten();
    Limits { cpu_quota, memory }
}

/// The limits of the running process.
pub fn current_limits() -> Limits {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    read_limits(Path::new("/sys/fs/cgroup"), &own)
}

/// v2 `cpu.max`: `"<quota> <period>"` in microseconds, or `"max <period>"` for none.
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut it = text.split_whitespace();
    let quota = it.next()?;
    let period: f64 = it.next().unwrap_or("100000").parse().ok()?;
    if quota == "max" || period <= 0.0 {
        return None;
    }
    let q: f64 = quota.parse().ok()?;
    (q > 0.0).then_some(q / period)
}

/// v1: a quota of -1 means none.
fn parse_cfs(quota: &str, period: &str) -> Option<f64> {
    let q: f64 = quota.trim().parse().ok()?;
    let p: f64 = period.trim().parse().ok()?;
    (q > 0.0 && p > 0.0).then_some(q / p)
}

/// `max` (v2) or a number; v1 writes a number near `i64::MAX` for none, so anything above the
/// machine's memory is no limit.
fn parse_memory(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" {
        return None;
    }
    let n: u64 = t.parse().ok()?;
    (n < machine_memory().unwrap_or(u64::MAX)).then_some(n)
}

fn machine_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn host_cpus() -> usize {
    // SAFETY: sysconf has no preconditions; a negative answer means unknown.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        1
    }
}

/// The worker count a CPU quota allows, as automaxprocs (which otelcol's extension uses) derives
/// `GOMAXPROCS`: rounded down, at least 1, at most the host's CPUs.
fn workers_for(quota: f64, host: usize) -> usize {
    (quota.floor() as usize).clamp(1, host.max(1))
}

/// The worker thread count `main` should build the runtime with: `Some` when the config's service
/// runs a `cgroup_runtime` extension with `gomaxprocs::enabled` and the cgroup has a CPU quota.
pub fn worker_threads(cfg: &crate::config::Config) -> Option<usize> {
    let enabled = cfg.service_extensions.iter().any(|id| {
        let t = id.type_name().replace('_', "");
        t == "cgroupruntime"
            && cfg.extensions.get(id).is_none_or(|v| {
                v.get("gomaxprocs")
                    .and_then(|g| g.get("enabled"))
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(true)
            })
    });
    if !enabled {
        return None;
    }
    current_limits()
        .cpu_quota
        .map(|q| workers_for(q, host_cpus()))
}

struct Factory;

/// The `cgroup_runtime` extension factory, for the registry.
pub fn factory() -> Arc<dyn vigil_core::factory::DynExtensionFactory> {
    vigil_core::factory::extension(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = CgroupRuntimeConfig;

    fn type_name(&self) -> &'static str {
        "cgroup_runtime"
    }

    fn validate(&self, id: &ComponentId, cfg: &CgroupRuntimeConfig) -> Result<(), ConfigError> {
        check(id, cfg)
    }
}

impl vigil_core::factory::ExtensionFactory for Factory {
    fn stability(&self) -> vigil_core::Stability {
        vigil_core::Stability::Development
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: CgroupRuntimeConfig,
    ) -> Result<Arc<dyn Extension>, ConfigError> {
        Ok(Arc::new(CgroupRuntime {
            id: set.id.clone(),
            cfg,
            tasks: set.tasks.clone(),
            span: set.span.clone(),
        }))
    }
}

struct CgroupRuntime {
    id: ComponentId,
    cfg: CgroupRuntimeConfig,
    tasks: vigil_core::task::Tasks,
    span: tracing::Span,
}

impl Extension for CgroupRuntime {}

/// Resident set size of this process, from `/proc/self/statm` (pages).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(4096) as u64)
}

/// Returns free heap pages to the OS, as Go's scavenger does near `GOMEMLIMIT`.
fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own arenas; 0 keeps no padding.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Trims whenever the resident size is above `limit`, checking every `every`.
async fn hold_under(
    trims: metrics::Counter,
    limit: u64,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if resident_bytes().is_some_and(|rss| rss > limit) {
            trim();
            trims.increment(1);
        }
    }
}

impl CgroupRuntime {
    /// Applies both halves from `limits`; split from `start` so a test can hand it any cgroup.
    fn apply(&self, limits: Limits, every: Duration) {
        let _in = self.span.enter();
        let id = self.id.to_string();
        if self.cfg.gomaxprocs.enabled {
            let running = tokio::runtime::Handle::try_current()
                .map(|h| h.metrics().num_workers())
                .unwrap_or(0);
            metrics::gauge!("vigil_cgroup_runtime_worker_threads", "extension" => id.clone())
                .set(running as f64);
            match limits.cpu_quota {
                Some(q) => {
                    metrics::gauge!("vigil_cgroup_runtime_cpu_quota", "extension" => id.clone())
                        .set(q);
                    let want = workers_for(q, host_cpus());
                    if want == running {
                        tracing::info!(
                            cpu_quota = q,
                            worker_threads = running,
                            "worker threads set from the cgroup CPU quota"
                        );
                    } else {
                        tracing::warn!(
                            cpu_quota = q,
                            worker_threads = running,
                            wanted = want,
                            "the worker thread count is fixed when the process starts; {want} applies at the next start"
                        );
                    }
                }
                None => tracing::info!(
                    worker_threads = running,
                    "no cgroup CPU quota: the worker thread count stays at the host's CPUs"
                ),
            }
        }
        if self.cfg.gomemlimit.enabled {
            match limits.memory {
                Some(m) => {
                    let limit = (m as f64 * self.cfg.gomemlimit.ratio) as u64;
                    metrics::gauge!("vigil_cgroup_runtime_memory_limit_bytes", "extension" => id.clone())
                        .set(limit as f64);
                    tracing::info!(
                        cgroup_memory = m,
                        soft_limit = limit,
                        "soft memory limit set from the cgroup: free heap pages are returned to the OS above it"
                    );
                    let trims =
                        metrics::counter!("vigil_cgroup_runtime_memory_trims", "extension" => id);
                    let stop = self.tasks.stopping();
                    self.tasks.spawn(hold_under(trims, limit, every, stop));
                }
                None => tracing::info!("no cgroup memory limit: no soft memory limit is applied"),
            }
        }
    }
}

#[async_trait]
impl Component for CgroupRuntime {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        self.apply(current_limits(), CHECK_EVERY);
        Ok(())
    }

    fn tasks(&self) -> Option<&vigil_core::task::Tasks> {
        Some(&self.tasks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::factory::FactoryBase;

    fn parse(v: serde_json::Value) -> Result<CgroupRuntimeConfig, ConfigError> {
        let id = ComponentId::new("cgroup_runtime", None);
        let cfg: CgroupRuntimeConfig =
            vigil_core::config::decode(ComponentKind::Extension, &id, &v)?;
        Factory.validate(&id, &cfg).map(|_| cfg)
    }

    #[test]
    fn config_defaults_and_mistakes() {
        let cfg = parse(serde_json::Value::Null).unwrap();
        assert!(cfg.gomaxprocs.enabled && cfg.gomemlimit.enabled);
        assert_eq!(cfg.gomemlimit.ratio, 0.9);
        let e = parse(serde_json::json!({"gomemlimit": {"ratio": 1.5}})).unwrap_err();
        assert!(e.to_string().contains("gomemlimit::ratio"), "{e}");
        let e = parse(serde_json::json!({"gomemlimit": {"ratio": 0}})).unwrap_err();
        assert!(e.to_string().contains("gomemlimit::ratio"), "{e}");
        let e = parse(serde_json::json!({"gomaxprocs": {"enable": true}})).unwrap_err();
        assert!(e.to_string().contains("gomaxprocs"), "{e}");
    }

    #[test]
    fn reads_v2_and_v1_limits() {
        let d = tempfile::tempdir().unwrap();
        // v2 with this process in a child group.
        let g = d.path().join("kubepods/pod1");
        std::fs::create_dir_all(&g).unwrap();
        std::fs::write(g.join("cpu.max"), "150000 100000\n").unwrap();
        std::fs::write(g.join("memory.max"), "536870912\n").unwrap();
        let l = read_limits(d.path(), "0::/kubepods/pod1\n");
        assert_eq!(l.cpu_quota, Some(1.5));
        assert_eq!(l.memory, Some(512 << 20));
        // No limits written as v2 spells them.
        std::fs::write(g.join("cpu.max"), "max 100000\n").unwrap();
        std::fs::write(g.join("memory.max"), "max\n").unwrap();
        let l = read_limits(d.path(), "0::/kubepods/pod1\n");
        assert_eq!(
            l,
            Limits {
                cpu_quota: None,
                memory: None
            }
        );
        // v1 controllers, as this machine's own layout.
        let d = tempfile::tempdir().unwrap();
        let cpu = d.path().join("cpu/grp");
        let mem = d.path().join("memory/grp");
        std::fs::create_dir_all(&cpu).unwrap();
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::write(cpu.join("cpu.cfs_quota_us"), "200000\n").unwrap();
        std::fs::write(cpu.join("cpu.cfs_period_us"), "100000\n").unwrap();
        std::fs::write(mem.join("memory.limit_in_bytes"), "1073741824\n").unwrap();
        let l = read_limits(d.path(), "4:memory:/grp\n1:cpu,cpuacct:/grp\n0::/\n");
        assert_eq!(l.cpu_quota, Some(2.0));
        assert_eq!(l.memory, Some(1 << 30));
        std::fs::write(cpu.join("cpu.cfs_quota_us"), "-1\n").unwrap();
        std::fs::write(mem.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        let l = read_limits(d.path(), "4:memory:/grp\n1:cpu,cpuacct:/grp\n0::/\n");
        assert_eq!(
            l,
            Limits {
                cpu_quota: None,
                memory: None
            }
        );
    }

    #[test]
    fn worker_count_rounds_down_within_the_host() {
        assert_eq!(workers_for(1.5, 8), 1);
        assert_eq!(workers_for(2.5, 8), 2);
        assert_eq!(workers_for(0.2, 8), 1);
        assert_eq!(workers_for(16.0, 8), 8);
        assert_eq!(workers_for(2.0, 8), 2);
    }

    #[test]
    fn main_reads_the_worker_count_only_when_enabled() {
        let reg = crate::registry::Registry::builtin();
        let cfg = |y: &str| {
            let root: serde_json::Value = serde_saphyr::from_str(y).unwrap();
            crate::config::Config::from_value(&root, &reg).unwrap()
        };
        let base = "receivers: {nop: {}}\nexporters: {nop: {}}\n";
        let off = cfg(&format!(
            "{base}extensions: {{cgroupruntime: {{gomaxprocs: {{enabled: false}}}}}}\nservice: {{extensions: [cgroupruntime], pipelines: {{traces: {{receivers: [nop], exporters: [nop]}}}}}}\n"
        ));
        assert_eq!(worker_threads(&off), None);
        let none = cfg(&format!(
            "{base}service: {{pipelines: {{traces: {{receivers: [nop], exporters: [nop]}}}}}}\n"
        ));
        assert_eq!(worker_threads(&none), None);
        let on = cfg(&format!(
            "{base}extensions: {{cgroup_runtime: {{}}}}\nservice: {{extensions: [cgroup_runtime], pipelines: {{traces: {{receivers: [nop], exporters: [nop]}}}}}}\n"
        ));
        // On this machine the answer is whatever its cgroup says; it must agree with the reader.
        assert_eq!(
            worker_threads(&on),
            current_limits()
                .cpu_quota
                .map(|q| workers_for(q, host_cpus()))
        );
    }

    #[tokio::test]
    async fn trims_above_the_soft_limit() {
        let set = vigil_core::Settings::new(
            ComponentKind::Extension,
            &ComponentId::new("cgroup_runtime", Some("t")),
        );
        let ext = CgroupRuntime {
            id: set.id.clone(),
            cfg: parse(serde_json::json!({"gomemlimit": {"ratio": 0.5}})).unwrap(),
            tasks: set.tasks.clone(),
            span: set.span.clone(),
        };
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let rss = resident_bytes().unwrap();
        // A cgroup limit of the current resident size: half of it is the soft limit, so the
        // process is above it and every check trims.
        metrics::with_local_recorder(&recorder, || {
            ext.apply(
                Limits {
                    cpu_quota: Some(1.0),
                    memory: Some(rss),
                },
                Duration::from_millis(20),
            )
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        ext.shutdown_by(std::time::Instant::now() + Duration::from_secs(1))
            .await
            .unwrap();
        use metrics_util::debugging::DebugValue;
        let snap = snapshotter.snapshot().into_vec();
        let value = |name: &str| {
            snap.iter()
                .find(|(k, ..)| k.key().name() == name)
                .map(|(.., v)| v)
        };
        assert_eq!(
            value("vigil_cgroup_runtime_memory_limit_bytes"),
            Some(&DebugValue::Gauge(((rss / 2) as f64).into()))
        );
        // Every 20 ms for 150 ms: several trims, each one counted.
        match value("vigil_cgroup_runtime_memory_trims") {
            Some(DebugValue::Counter(n)) => assert!(*n >= 2, "{n} trims"),
            other => panic!("no trim counter: {other:?}"),
        }
    }
}
