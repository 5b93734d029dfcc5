//! `memory_limiter`: otelcol's memory limiter. Every `check_interval` it reads this process's resident
//! memory and, while it is above the soft limit (`limit` minus `spike_limit`), refuses data as retryable
//! so that clients back off and retry; nothing is dropped here.
//!
//! otelcol also forces a garbage collection above the hard limit. Rust has no collector to force, so
//! above the hard limit vigil refuses, as above the soft one, and logs that the hard limit was crossed.
//! Percent limits are taken of the cgroup memory limit when one is set (v2 `memory.max`, v1
//! `memory.limit_in_bytes`), else of the machine's total memory.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_core::config::{decode, duration};
use vigil_core::factory::{self, DynProcessorFactory, FactoryBase, ProcessorFactory};
use vigil_core::{
    lock, Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Host,
    Processor, Settings, Signal, Stability, Telemetry,
};

const MIB: u64 = 1024 * 1024;

/// The `memory_limiter` config, with otelcol's keys. `check_interval` and one of `limit_mib` or
/// `limit_percentage` are required.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryLimiterConfig {
    /// How often memory is measured.
    #[serde(default, with = "duration")]
    pub check_interval: Duration,
    /// The hard limit in MiB; it takes precedence over `limit_percentage`.
    #[serde(default)]
    pub limit_mib: u32,
    /// The headroom below the hard limit, in MiB; the soft limit is `limit_mib - spike_limit_mib`.
    /// Defaults to 20% of the limit.
    #[serde(default)]
    pub spike_limit_mib: u32,
    /// The hard limit as a percentage of the available memory.
    #[serde(default)]
    pub limit_percentage: u32,
    /// The headroom as a percentage of the available memory. Defaults to 20% of the limit.
    #[serde(default)]
    pub spike_limit_percentage: u32,
    /// Accepted so that otelcol configs load; there is no garbage collector to pace, so it has no effect.
    #[serde(default = "default_min_gc_soft", with = "duration")]
    pub min_gc_interval_when_soft_limited: Duration,
    /// Accepted so that otelcol configs load; it has no effect.
    #[serde(default, with = "duration")]
    pub min_gc_interval_when_hard_limited: Duration,
}

fn default_min_gc_soft() -> Duration {
    Duration::from_secs(10)
}

impl MemoryLimiterConfig {
    /// Decodes and checks a `memory_limiter` section, with otelcol's rules and messages.
    pub fn parse(id: &ComponentId, value: &Value) -> Result<Self, ConfigError> {
        let cfg: MemoryLimiterConfig = decode(ComponentKind::Processor, id, value)?;
        cfg.check()
            .map_err(|e| e.in_component(ComponentKind::Processor, id))?;
        Ok(cfg)
    }

    /// otelcol's checks of a decoded section.
    pub fn check(&self) -> Result<(), ConfigError> {
        let cfg = self;
        let err = |path: &str, msg: &str| Err(ConfigError::at(path, msg));
        if cfg.check_interval.is_zero() {
            return err(
                "check_interval",
                "'check_interval' must be greater than zero",
            );
        }
        // Reading RSS more often than vigil_core's MIN_INTERVAL (1ms) cannot help, and `1ns` spins.
        if cfg.check_interval < vigil_core::config::MIN_INTERVAL {
            return err(
                "check_interval",
                "'check_interval' must be at least 1ms: a shorter one keeps a core busy reading memory",
            );
        }
        if cfg.min_gc_interval_when_soft_limited < cfg.min_gc_interval_when_hard_limited {
            return err(
                "min_gc_interval_when_soft_limited",
                "'min_gc_interval_when_soft_limited' should be larger than \
                 'min_gc_interval_when_hard_limited'",
            );
        }
        if cfg.limit_mib == 0 && cfg.limit_percentage == 0 {
            return err(
                "",
                "'limit_mib' or 'limit_percentage' must be greater than zero",
            );
        }
        if cfg.limit_percentage > 100 || cfg.spike_limit_percentage > 100 {
            let path = if cfg.limit_percentage > 100 {
                "limit_percentage"
            } else {
                "spike_limit_percentage"
            };
            return err(
                path,
                "'limit_percentage' and 'spike_limit_percentage' must be greater than zero and less \
                 than or equal to hundred",
            );
        }
        if cfg.limit_mib > 0 && cfg.limit_mib <= cfg.spike_limit_mib {
            return err(
                "spike_limit_mib",
                &format!(
                    "'spike_limit_mib' ({}) must be smaller than 'limit_mib' ({})",
                    cfg.spike_limit_mib, cfg.limit_mib
                ),
            );
        }
        if cfg.limit_percentage > 0 && cfg.limit_percentage <= cfg.spike_limit_percentage {
            return err(
                "spike_limit_percentage",
                &format!(
                    "'spike_limit_percentage' ({}) must be smaller than 'limit_percentage' ({})",
                    cfg.spike_limit_percentage, cfg.limit_percentage
                ),
            );
        }
        Ok(())
    }

    /// The limits in bytes. `total` is asked only when the limit is a percentage.
    pub fn limits(&self, total: impl FnOnce() -> io::Result<u64>) -> io::Result<Limits> {
        let (hard, spike) = if self.limit_mib > 0 {
            (
                u64::from(self.limit_mib) * MIB,
                u64::from(self.spike_limit_mib) * MIB,
            )
        } else {
            let total = total()?;
            (
                total / 100 * u64::from(self.limit_percentage),
                total / 100 * u64::from(self.spike_limit_percentage),
            )
        };
        let spike = if spike == 0 { hard / 5 } else { spike };
        Ok(Limits {
            hard,
            soft: hard.saturating_sub(spike),
        })
    }
}

/// The soft and hard limits, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub soft: u64,
    pub hard: u64,
}

/// Where memory figures come from; injectable so that tests can play any usage.
pub trait MemorySource: Send + Sync {
    /// Bytes this process holds in memory now (its resident set).
    fn used(&self) -> io::Result<u64>;
    /// Bytes this process may use: the cgroup limit when there is one, else the machine's total.
    fn total(&self) -> io::Result<u64>;
}

/// Reads Linux `/proc` and `/sys/fs/cgroup`.
pub struct ProcMemory;

impl MemorySource for ProcMemory {
    fn used(&self) -> io::Result<u64> {
        let statm = std::fs::read_to_string("/proc/self/statm")?;
        let pages = parse_statm_resident(&statm).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "unexpected /proc/self/statm format",
            )
        })?;
        Ok(pages * page_size())
    }

    fn total(&self) -> io::Result<u64> {
        let meminfo = std::fs::read_to_string("/proc/meminfo")?;
        let machine = parse_meminfo_total(&meminfo).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "no MemTotal in /proc/meminfo")
        })?;
        // A cgroup "limit" above the machine's memory (v1 writes a huge number for none) is no limit.
        Ok(cgroup_limit().map_or(machine, |l| l.min(machine)))
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant; it has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

/// The resident page count, the second field of `/proc/self/statm`.
fn parse_statm_resident(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn parse_meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A cgroup memory limit file: v2 writes `max` for none.
fn parse_cgroup_limit(text: &str) -> Option<u64> {
    match text.trim() {
        "max" | "" => None,
        n => n.parse().ok(),
    }
}

/// The memory limit of this process's cgroup, v2 first, then v1. In a container the cgroup
/// namespace puts our own group at the mount's root; on a host, `/proc/self/cgroup` names it.
fn cgroup_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut candidates = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let path = path.trim_end_matches('/');
        if controllers.is_empty() {
            candidates.push(format!("/sys/fs/cgroup{path}/memory.max"));
        } else if controllers.split(',').any(|c| c == "memory") {
            candidates.push(format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"));
        }
    }
    candidates.push("/sys/fs/cgroup/memory.max".into());
    candidates.push("/sys/fs/cgroup/memory/memory.limit_in_bytes".into());
    candidates.iter().find_map(|p| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|t| parse_cgroup_limit(&t))
    })
}

struct Factory;

/// The `memory_limiter` processor factory.
pub fn factory() -> Arc<dyn DynProcessorFactory> {
    factory::processor(Factory)
}

impl FactoryBase for Factory {
    type Config = MemoryLimiterConfig;

    fn type_name(&self) -> &'static str {
        "memory_limiter"
    }

    fn validate(&self, _id: &ComponentId, cfg: &MemoryLimiterConfig) -> Result<(), ConfigError> {
        cfg.check()
    }
}

impl ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Beta),
            (Signal::Metrics, Stability::Beta),
            (Signal::Logs, Stability::Beta),
            (Signal::Profiles, Stability::Development),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: MemoryLimiterConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        Ok(Arc::new(MemoryLimiter::new(
            set,
            cfg,
            signal,
            next,
            Arc::new(ProcMemory),
        )))
    }
}

struct Inner {
    id: String,
    obs: vigil_core::ProcessorObs,
    cfg: MemoryLimiterConfig,
    source: Arc<dyn MemorySource>,
    limits: Mutex<Option<Limits>>,
    refusing: AtomicBool,
    /// Whether the last read failed, so that a lasting failure is logged once.
    read_failed: AtomicBool,
}

/// A running `memory_limiter` for one pipeline.
pub struct MemoryLimiter {
    inner: Arc<Inner>,
    next: Arc<dyn Consumer>,
    /// The periodic memory check.
    tasks: vigil_core::Tasks,
}

impl MemoryLimiter {
    /// A limiter in front of `next`, measuring through `source`. It measures from `start` on.
    pub fn new(
        set: Settings,
        cfg: MemoryLimiterConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
        source: Arc<dyn MemorySource>,
    ) -> Self {
        MemoryLimiter {
            inner: Arc::new(Inner {
                id: set.id.to_string(),
                obs: set.processor_obs(signal),
                cfg,
                source,
                limits: Mutex::new(None),
                refusing: AtomicBool::new(false),
                read_failed: AtomicBool::new(false),
            }),
            next,
            tasks: set.tasks,
        }
    }
}

impl Inner {
    fn limits(&self) -> Option<Limits> {
        *lock(&self.limits)
    }

    /// Measures once and updates whether data is refused.
    fn check(&self) {
        let Some(limits) = self.limits() else { return };
        let used = match self.source.used() {
            Ok(u) => {
                if self.read_failed.swap(false, Ordering::Relaxed) {
                    tracing::info!(processor = %self.id, "memory usage can be read again");
                }
                u
            }
            Err(e) => {
                // Keep the last decision: an unreadable /proc says nothing about memory.
                if !self.read_failed.swap(true, Ordering::Relaxed) {
                    tracing::warn!(processor = %self.id, error = %e, "cannot read memory usage");
                }
                return;
            }
        };
        let refuse = used >= limits.soft;
        let was = self.refusing.swap(refuse, Ordering::Relaxed);
        let mib = |b: u64| b / MIB;
        if refuse && !was {
            tracing::warn!(
                processor = %self.id,
                used_mib = mib(used),
                soft_limit_mib = mib(limits.soft),
                hard_limit_mib = mib(limits.hard),
                above_hard_limit = used >= limits.hard,
                "memory usage is above the soft limit; refusing data as retryable"
            );
        } else if !refuse && was {
            tracing::info!(
                processor = %self.id,
                used_mib = mib(used),
                soft_limit_mib = mib(limits.soft),
                "memory usage is below the soft limit again; accepting data"
            );
        }
    }
}

#[async_trait]
impl Component for MemoryLimiter {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let inner = &self.inner;
        let limits = inner.cfg.limits(|| inner.source.total()).map_err(|e| {
            anyhow::anyhow!(
                "processors::{}: cannot read the total memory for limit_percentage: {e}",
                inner.id
            )
        })?;
        *lock(&inner.limits) = Some(limits);
        tracing::info!(
            processor = %inner.id,
            soft_limit_mib = limits.soft / MIB,
            hard_limit_mib = limits.hard / MIB,
            "memory limiter started"
        );
        inner.check();
        // The first check is the one just made; the ticker's first comes one interval later.
        let checker = Arc::clone(inner);
        self.tasks.spawn_ticker(inner.cfg.check_interval, move || {
            checker.check();
            std::future::ready(())
        });
        Ok(())
    }

    fn tasks(&self) -> Option<&vigil_core::Tasks> {
        Some(&self.tasks)
    }
}

#[async_trait]
impl Consumer for MemoryLimiter {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let n = data.item_count();
        self.inner.obs.incoming(n);
        if self.inner.refusing.load(Ordering::Relaxed) {
            self.inner.obs.refused(n);
            return Err(ConsumeError::Retryable {
                reason: "data refused due to high memory usage".into(),
                retry_after: Some(self.inner.cfg.check_interval.max(Duration::from_secs(1))),
            });
        }
        self.inner.obs.outgoing(n);
        self.next.consume(data).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::AtomicU64;
    use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    struct FakeMemory {
        used: AtomicU64,
        total: u64,
    }

    impl MemorySource for FakeMemory {
        fn used(&self) -> io::Result<u64> {
            Ok(self.used.load(Ordering::SeqCst))
        }
        fn total(&self) -> io::Result<u64> {
            Ok(self.total)
        }
    }

    #[derive(Default)]
    struct Count(AtomicU64);

    #[async_trait]
    impl Consumer for Count {
        async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
            self.0.fetch_add(data.item_count() as u64, Ordering::SeqCst);
            Ok(())
        }
    }

    fn logs(n: usize) -> Telemetry {
        Telemetry::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); n],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn id() -> ComponentId {
        ComponentId::parse("memory_limiter").unwrap()
    }

    fn settings() -> Settings {
        Settings::new(vigil_core::ComponentKind::Processor, &id())
    }

    fn parse(v: Value) -> Result<MemoryLimiterConfig, String> {
        MemoryLimiterConfig::parse(&id(), &v).map_err(|e| e.to_string())
    }

    #[tokio::test(start_paused = true)]
    async fn refuses_above_the_soft_limit_and_recovers() {
        let mem = Arc::new(FakeMemory {
            used: AtomicU64::new(50 * MIB),
            total: 0,
        });
        let sink = Arc::new(Count::default());
        let cfg = parse(json!({"check_interval": "1s", "limit_mib": 100, "spike_limit_mib": 20}))
            .unwrap();
        let ml = MemoryLimiter::new(settings(), cfg, Signal::Logs, sink.clone(), mem.clone());
        ml.start(&Host::detached()).await.unwrap();
        ml.consume(logs(3)).await.unwrap();
        assert_eq!(sink.0.load(Ordering::SeqCst), 3);

        // 81 MiB is above the soft limit (100 - 20) but below the hard one.
        mem.used.store(81 * MIB, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = ml.consume(logs(2)).await;
        match r {
            Err(ConsumeError::Retryable {
                reason,
                retry_after,
            }) => {
                assert_eq!(reason, "data refused due to high memory usage");
                assert_eq!(retry_after, Some(Duration::from_secs(1)));
            }
            other => panic!("expected a retryable refusal, got {other:?}"),
        }
        assert_eq!(
            sink.0.load(Ordering::SeqCst),
            3,
            "refused data reached the next consumer"
        );

        mem.used.store(79 * MIB, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        ml.consume(logs(2)).await.unwrap();
        assert_eq!(sink.0.load(Ordering::SeqCst), 5);
        ml.shutdown().await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn measures_at_start() {
        let mem = Arc::new(FakeMemory {
            used: AtomicU64::new(900 * MIB),
            total: 1000 * MIB,
        });
        let cfg = parse(json!({"check_interval": "5s", "limit_percentage": 80})).unwrap();
        let ml = MemoryLimiter::new(
            settings(),
            cfg,
            Signal::Logs,
            Arc::new(Count::default()),
            mem,
        );
        ml.start(&Host::detached()).await.unwrap();
        assert!(ml.consume(logs(1)).await.unwrap_err().is_retryable());
        ml.shutdown().await.unwrap();
    }

    #[test]
    fn limits_from_mib_and_percentages() {
        let never = || -> io::Result<u64> { panic!("total memory read for a fixed limit") };
        let cfg = parse(json!({"check_interval": "1s", "limit_mib": 1000})).unwrap();
        // The spike defaults to 20% of the limit.
        assert_eq!(
            cfg.limits(never).unwrap(),
            Limits {
                hard: 1000 * MIB,
                soft: 800 * MIB
            }
        );
        let cfg = parse(json!({"check_interval": "1s", "limit_mib": 1000, "spike_limit_mib": 300}))
            .unwrap();
        assert_eq!(cfg.limits(never).unwrap().soft, 700 * MIB);
        let cfg = parse(json!({
            "check_interval": "1s", "limit_percentage": 50, "spike_limit_percentage": 10
        }))
        .unwrap();
        let l = cfg.limits(|| Ok(2000 * MIB)).unwrap();
        assert_eq!((l.hard, l.soft), (1000 * MIB, 800 * MIB));
        // limit_mib wins over limit_percentage, as in otelcol.
        let cfg = parse(json!({"check_interval": "1s", "limit_mib": 10, "limit_percentage": 50}))
            .unwrap();
        assert_eq!(cfg.limits(never).unwrap().hard, 10 * MIB);
    }

    #[test]
    fn config_errors_read_like_otelcol() {
        let cases = [
            (
                json!({"limit_mib": 100}),
                "processors::memory_limiter::check_interval: 'check_interval' must be greater than zero",
            ),
            (
                json!({"check_interval": "1ns", "limit_mib": 100}),
                "processors::memory_limiter::check_interval: 'check_interval' must be at least 1ms: \
                 a shorter one keeps a core busy reading memory",
            ),
            (
                json!({"check_interval": "1s"}),
                "processors::memory_limiter: 'limit_mib' or 'limit_percentage' must be greater than zero",
            ),
            (
                json!({"check_interval": "1s", "limit_mib": 100, "spike_limit_mib": 100}),
                "processors::memory_limiter::spike_limit_mib: 'spike_limit_mib' (100) must be smaller \
                 than 'limit_mib' (100)",
            ),
            (
                json!({"check_interval": "1s", "limit_percentage": 101}),
                "processors::memory_limiter::limit_percentage: 'limit_percentage' and \
                 'spike_limit_percentage' must be greater than zero and less than or equal to hundred",
            ),
            (
                json!({"check_interval": "1s", "limit_percentage": 20, "spike_limit_percentage": 30}),
                "processors::memory_limiter::spike_limit_percentage: 'spike_limit_percentage' (30) \
                 must be smaller than 'limit_percentage' (20)",
            ),
            (
                json!({"check_interval": "1s", "limit_mib": 10, "min_gc_interval_when_hard_limited": "15s"}),
                "processors::memory_limiter::min_gc_interval_when_soft_limited: \
                 'min_gc_interval_when_soft_limited' should be larger than \
                 'min_gc_interval_when_hard_limited'",
            ),
        ];
        for (cfg, want) in cases {
            assert_eq!(parse(cfg.clone()).unwrap_err(), want, "config {cfg}");
        }
        let e = parse(json!({"check_interval": "1s", "limit_mb": 10})).unwrap_err();
        assert!(e.contains("has invalid keys: limit_mb"), "{e}");
    }

    #[test]
    fn proc_and_cgroup_files_parse() {
        assert_eq!(
            parse_statm_resident("51234 2048 512 1 0 3000 0\n"),
            Some(2048)
        );
        assert_eq!(parse_statm_resident(""), None);
        let meminfo = "MemTotal:       16303412 kB\nMemFree:         1234 kB\n";
        assert_eq!(parse_meminfo_total(meminfo), Some(16303412 * 1024));
        assert_eq!(parse_cgroup_limit("max\n"), None);
        assert_eq!(parse_cgroup_limit("536870912\n"), Some(512 * MIB));
        assert_eq!(parse_cgroup_limit("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        let used = ProcMemory.used().unwrap();
        let total = ProcMemory.total().unwrap();
        assert!(used > MIB && used < total, "used {used}, total {total}");
    }
}
