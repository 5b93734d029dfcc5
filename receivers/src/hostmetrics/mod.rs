//! `hostmetrics`: otelcol's host metrics receiver. Every `collection_interval` it reads the node's own
//! `/proc` and `/sys` (under `root_path`, so a container with the host at `/hostfs` reports the host)
//! and emits the OpenTelemetry semantic-convention metrics otelcol's scrapers emit: `cpu`, `memory`,
//! `load`, `disk`, `filesystem`, `network`, `paging`, `processes` and per-process `process`.
//!
//! The files are read directly with one small parser each, rather than through `procfs`: `procfs`
//! resolves `/proc` and `/sys` itself and cannot be pointed at `<root_path>/proc` for every file (nor
//! at a fixture tree in tests), and each of these files is a few lines of text.

pub mod config;
mod cpu;
mod disk;
mod filesystem;
pub mod filter;
mod load;
mod memory;
mod network;
mod paging;
mod process;
mod processes;
mod system;

use async_trait::async_trait;
use config::{HostMetricsConfig, Toggles};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use vigil_core::otlp::common::v1::{InstrumentationScope, KeyValue};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::time::unix_nanos;
use vigil_core::{
    Component, ComponentId, ConfigError, Host, NextConsumers, Receiver, Signal, Telemetry,
};

/// The scope name prefix otelcol's scrapers use, so dashboards keyed on it keep working.
const SCOPE_PREFIX: &str =
    "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/hostmetricsreceiver/internal/scraper/";

/// The host's file system as the scrapers see it: `/`, or `root_path`, or a test fixture.
#[derive(Debug, Clone)]
pub struct Root {
    base: PathBuf,
}

impl Root {
    /// `root_path` as configured; empty means `/`.
    pub fn new(root_path: &str) -> Root {
        let base = if root_path.is_empty() {
            PathBuf::from("/")
        } else {
            PathBuf::from(root_path)
        };
        Root { base }
    }

    /// The host path `abs` (such as `/proc/stat`) under the root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.base.join(abs.trim_start_matches('/'))
    }

    pub fn read(&self, abs: &str) -> io::Result<String> {
        std::fs::read_to_string(self.path(abs))
    }

    pub fn base(&self) -> &Path {
        &self.base
    }
}

/// What every scraper gets for one collection.
pub struct Ctx<'a> {
    pub root: &'a Root,
    /// The collection time, Unix nanoseconds.
    pub now: u64,
    /// Boot time, Unix nanoseconds: the start time of the host's cumulative counters.
    pub boot: u64,
    /// Clock ticks per second (`USER_HZ`), the unit of `/proc/stat` and `/proc/<pid>/stat`.
    pub ticks: f64,
}

/// The output of one scraper: metrics on the host resource, and (for `process`) one resource per
/// process.
#[derive(Default)]
pub struct Scraped {
    pub metrics: Vec<Metric>,
    pub resources: Vec<(Vec<KeyValue>, Vec<Metric>)>,
}

/// One scraper. `scrape` is called from a blocking thread, one collection at a time.
pub trait Scraper: Send {
    fn name(&self) -> &'static str;
    fn scrape(&mut self, ctx: &Ctx) -> Result<Scraped, String>;
}

/// Keeps only the metrics `toggles` enables, and drops metrics with no data points.
pub(crate) fn keep(toggles: &Toggles, metrics: Vec<Metric>) -> Vec<Metric> {
    metrics
        .into_iter()
        .filter(|m| toggles.on(&m.name))
        .filter(|m| vigil_core::telemetry::metric_point_count(m.data.as_ref()) > 0)
        .collect()
}

/// A data point with an integer value.
pub(crate) fn int_point(attrs: Vec<KeyValue>, v: i64, start: u64, now: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: start,
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsInt(v)),
        ..Default::default()
    }
}

/// A data point with a floating-point value.
pub(crate) fn f64_point(attrs: Vec<KeyValue>, v: f64, start: u64, now: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: start,
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

/// A cumulative Sum.
pub(crate) fn sum(
    name: &str,
    description: &str,
    unit: &str,
    monotonic: bool,
    points: Vec<NumberDataPoint>,
) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        unit: unit.into(),
        data: Some(Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: monotonic,
        })),
        ..Default::default()
    }
}

/// A Gauge.
pub(crate) fn gauge(
    name: &str,
    description: &str,
    unit: &str,
    points: Vec<NumberDataPoint>,
) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        unit: unit.into(),
        data: Some(Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

/// Reads `key value [unit]` lines (`/proc/meminfo`, `/proc/vmstat`) into a lookup.
pub(crate) fn key_values(text: &str) -> std::collections::HashMap<&str, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?.trim_end_matches(':');
            let v = it.next()?.parse().ok()?;
            Some((k, v))
        })
        .collect()
}

/// Boot time from `/proc/stat` (`btime`), in Unix nanoseconds.
pub(crate) fn boot_time(root: &Root) -> io::Result<u64> {
    let text = root.read("/proc/stat")?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| s * 1_000_000_000)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "/proc/stat has no btime line"))
}

/// `USER_HZ`. It is 100 on every mainstream Linux build; sysconf says for sure.
pub(crate) fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant and touches no memory of ours.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Builds the configured scrapers, in otelcol's order.
pub fn build_scrapers(
    id: &ComponentId,
    cfg: &HostMetricsConfig,
) -> Result<Vec<Box<dyn Scraper>>, ConfigError> {
    let mut out: Vec<Box<dyn Scraper>> = Vec::new();
    for name in config::SCRAPERS {
        let Some(section) = cfg.scrapers.get(*name) else {
            continue;
        };
        let s: Box<dyn Scraper> = match *name {
            "cpu" => Box::new(cpu::CpuScraper::new(id, section)?),
            "memory" => Box::new(memory::MemoryScraper::new(id, section)?),
            "load" => Box::new(load::LoadScraper::new(id, section)?),
            "disk" => Box::new(disk::DiskScraper::new(id, section)?),
            "filesystem" => Box::new(filesystem::FilesystemScraper::new(id, section)?),
            "network" => Box::new(network::NetworkScraper::new(id, section)?),
            "paging" => Box::new(paging::PagingScraper::new(id, section)?),
            "processes" => Box::new(processes::ProcessesScraper::new(id, section)?),
            "process" => Box::new(process::ProcessScraper::new(id, section)?),
            "system" => Box::new(system::SystemScraper::new(id, section)?),
            _ => continue,
        };
        out.push(s);
    }
    Ok(out)
}

/// Runs every scraper once and assembles the batch: one resource (empty, as otelcol's system
/// scrapers leave it) with one scope per scraper, then one resource per process. A scraper that
/// fails is reported and skipped; the others still count.
pub fn collect(
    scrapers: &mut [Box<dyn Scraper>],
    root: &Root,
    ticks: f64,
) -> (Vec<ResourceMetrics>, Vec<String>) {
    let now = unix_nanos(SystemTime::now());
    let boot = boot_time(root).unwrap_or(0);
    let ctx = Ctx {
        root,
        now,
        boot,
        ticks,
    };
    let mut errors = Vec::new();
    let mut host = ResourceMetrics {
        resource: Some(Resource::default()),
        ..Default::default()
    };
    let mut per_process = Vec::new();
    for s in scrapers.iter_mut() {
        match s.scrape(&ctx) {
            Ok(out) => {
                let scope = InstrumentationScope {
                    name: format!("{SCOPE_PREFIX}{}scraper", s.name()),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                };
                if !out.metrics.is_empty() {
                    host.scope_metrics.push(ScopeMetrics {
                        scope: Some(scope.clone()),
                        metrics: out.metrics,
                        ..Default::default()
                    });
                }
                for (attrs, metrics) in out.resources {
                    per_process.push(ResourceMetrics {
                        resource: Some(Resource {
                            attributes: attrs,
                            ..Default::default()
                        }),
                        scope_metrics: vec![ScopeMetrics {
                            scope: Some(scope.clone()),
                            metrics,
                            ..Default::default()
                        }],
                        ..Default::default()
                    });
                }
            }
            Err(e) => errors.push(format!("scraper {}: {e}", s.name())),
        }
    }
    let mut out = Vec::with_capacity(1 + per_process.len());
    if !host.scope_metrics.is_empty() {
        out.push(host);
    }
    out.extend(per_process);
    (out, errors)
}

struct Factory;

/// The `hostmetrics` receiver factory, for the registry.
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = config::HostMetricsConfig;

    fn type_name(&self) -> &'static str {
        "hostmetrics"
    }

    fn validate(
        &self,
        id: &ComponentId,
        cfg: &config::HostMetricsConfig,
    ) -> Result<(), ConfigError> {
        // Each scraper decodes and checks its own section; building one reads nothing.
        let cfg = config::check(id, cfg.clone())?;
        build_scrapers(id, &cfg).map(|_| ())
    }
}

impl vigil_core::factory::ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[
            (Signal::Metrics, vigil_core::Stability::Beta),
            (Signal::Logs, vigil_core::Stability::Development),
        ]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: config::HostMetricsConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        let id = &set.id;
        let cfg = config::check(id, cfg)?;
        let scrapers = build_scrapers(id, &cfg)?;
        Ok(Arc::new(HostMetricsReceiver {
            id: id.to_string(),
            interval: cfg.collection_interval,
            metadata_interval: cfg.metadata_collection_interval,
            initial_delay: cfg.initial_delay,
            timeout: cfg.timeout,
            root: Root::new(&cfg.root_path),
            scrapers: Arc::new(Mutex::new(scrapers)),
            next,
            obs: set.receiver_obs(""),
            tasks: set.tasks,
        }))
    }
}

/// A running `hostmetrics` receiver: one task that collects on a timer.
pub struct HostMetricsReceiver {
    id: String,
    interval: Duration,
    /// How often the host entity event goes to a logs pipeline (0: once).
    metadata_interval: Duration,
    initial_delay: Duration,
    /// `timeout`; zero waits for every collection.
    timeout: Duration,
    root: Root,
    scrapers: Arc<Mutex<Vec<Box<dyn Scraper>>>>,
    next: NextConsumers,
    obs: vigil_core::ReceiverObs,
    /// The collection loop.
    tasks: vigil_core::Tasks,
}

#[async_trait]
impl Component for HostMetricsReceiver {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        if let Some(logs) = self.next.get(Signal::Logs).cloned() {
            self.spawn_entity_events(logs);
        }
        if self.next.get(Signal::Metrics).is_none() {
            return Ok(());
        }
        let id = self.id.clone();
        let interval = self.interval;
        let initial_delay = self.initial_delay;
        let timeout = self.timeout;
        let root = self.root.clone();
        let scrapers = Arc::clone(&self.scrapers);
        let next = self.next.clone();
        let obs = self.obs.clone();
        let cancel = self.tasks.stopping();
        let ticks = clock_ticks();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(initial_delay) => {}
                _ = cancel.cancelled() => return,
            }
            let mut timer = tokio::time::interval(interval);
            // A slow collection must not be followed by a burst of catch-up collections.
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // A collection given up at `timeout` that is still reading: at most one, so blocked
            // reads cannot pile up threads.
            let mut overdue: Option<tokio::task::JoinHandle<_>> = None;
            loop {
                tokio::select! {
                    _ = timer.tick() => {}
                    _ = cancel.cancelled() => return,
                }
                if overdue.as_ref().is_some_and(|h| !h.is_finished()) {
                    tracing::warn!(
                        receiver = %id,
                        "skipping a collection: the previous one is still running past timeout ({timeout:?})"
                    );
                    continue;
                }
                // What a late collection gathered is stale by now: dropped.
                overdue = None;
                let scrapers = Arc::clone(&scrapers);
                let root = root.clone();
                // File reads block; keep them off the async workers.
                let mut handle = tokio::task::spawn_blocking(move || {
                    let mut s = vigil_core::lock(&scrapers);
                    collect(&mut s, &root, ticks)
                });
                let joined = if timeout.is_zero() {
                    (&mut handle).await
                } else {
                    match tokio::time::timeout(timeout, &mut handle).await {
                        Ok(r) => r,
                        Err(_) => {
                            tracing::warn!(
                                receiver = %id,
                                "a collection took longer than timeout ({timeout:?}); its metrics are dropped"
                            );
                            overdue = Some(handle);
                            continue;
                        }
                    }
                };
                let (batch, errors) = match joined {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(receiver = %id, "host metrics collection failed: {e}");
                        continue;
                    }
                };
                for e in errors {
                    tracing::warn!(receiver = %id, "{e}");
                }
                if batch.is_empty() {
                    continue;
                }
                if let Err(e) = obs.push(&next, Telemetry::Metrics(batch)).await {
                    tracing::warn!(receiver = %id, "the pipeline refused host metrics: {e}");
                }
            }
        });
        Ok(())
    }

    /// Stopping cancels the loop; a collection in flight may finish until the deadline.
    fn tasks(&self) -> Option<&vigil_core::Tasks> {
        Some(&self.tasks)
    }
}

/// The host entity event as otelcol's hostmetrics receiver sends it to a logs pipeline (its
/// `hostEntitiesReceiver`, through experimentalmetricmetadata's events-as-logs form): one record
/// with `otel.entity.event.type: entity_state`, `otel.entity.type: host` and, when the interval is
/// not 0, `otel.entity.interval` in milliseconds, in a scope marked `otel.entity.event_as_log`,
/// under an empty resource (processors such as resourcedetection add the host's attributes).
pub fn entity_event(interval: Duration, now_nanos: u64) -> Vec<ResourceLogs> {
    use vigil_core::attrs::{kv, kv_i64, kv_str};
    use vigil_core::otlp::common::v1::any_value;
    let mut attrs = vec![
        kv_str("otel.entity.event.type", "entity_state"),
        kv_str("otel.entity.type", "host"),
    ];
    if !interval.is_zero() {
        attrs.push(kv_i64("otel.entity.interval", interval.as_millis() as i64));
    }
    vec![ResourceLogs {
        resource: None,
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                attributes: vec![kv(
                    "otel.entity.event_as_log",
                    any_value::Value::BoolValue(true),
                )],
                ..Default::default()
            }),
            log_records: vec![LogRecord {
                time_unix_nano: now_nanos,
                attributes: attrs,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

impl HostMetricsReceiver {
    /// Sends the host entity event at start and every `metadata_collection_interval`. As otelcol,
    /// a refused event is not retried: the next one carries the same, cumulative, state.
    fn spawn_entity_events(&self, logs: Arc<dyn vigil_core::Consumer>) {
        let id = self.id.clone();
        let every = self.metadata_interval;
        let obs = self.obs.clone();
        let cancel = self.tasks.stopping();
        self.tasks.spawn(async move {
            loop {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                let r = logs.consume(Telemetry::Logs(entity_event(every, now))).await;
                obs.end_op(Signal::Logs, 1, &r);
                if let Err(e) = r {
                    tracing::error!(receiver = %id, "the pipeline refused the host entity event: {e}");
                }
                if every.is_zero() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = cancel.cancelled() => return,
                }
            }
        });
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use vigil_core::attrs::value_to_string;

    /// The fixture tree under `receivers/testdata/hostmetrics`.
    pub fn fixture() -> Root {
        Root::new(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/hostmetrics"))
    }

    pub fn ctx(root: &Root) -> Ctx<'_> {
        Ctx {
            root,
            now: 2_000_000_000_000_000_000,
            boot: boot_time(root).unwrap(),
            ticks: 100.0,
        }
    }

    pub fn id() -> ComponentId {
        ComponentId::parse("hostmetrics").unwrap()
    }

    pub fn find<'a>(metrics: &'a [Metric], name: &str) -> &'a Metric {
        metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("metric {name} missing"))
    }

    /// Points of a metric as (sorted `k=v` attribute text, value).
    pub fn points(m: &Metric) -> Vec<(String, f64)> {
        let pts = match m.data.as_ref() {
            Some(Data::Sum(s)) => &s.data_points,
            Some(Data::Gauge(g)) => &g.data_points,
            _ => panic!("{} is not a number metric", m.name),
        };
        pts.iter()
            .map(|p| {
                let mut a: Vec<String> = p
                    .attributes
                    .iter()
                    .map(|kv| {
                        format!(
                            "{}={}",
                            kv.key,
                            kv.value
                                .as_ref()
                                .and_then(|v| v.value.as_ref())
                                .map(value_to_string)
                                .unwrap_or_default()
                        )
                    })
                    .collect();
                a.sort();
                let v = match p.value {
                    Some(number_data_point::Value::AsInt(i)) => i as f64,
                    Some(number_data_point::Value::AsDouble(d)) => d,
                    None => f64::NAN,
                };
                (a.join(","), v)
            })
            .collect()
    }

    pub fn value(m: &Metric, attrs: &str) -> f64 {
        points(m)
            .into_iter()
            .find(|(a, _)| a == attrs)
            .unwrap_or_else(|| panic!("{} has no point {attrs}: {:?}", m.name, points(m)))
            .1
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn config_errors_name_the_key() {
        let e = config::load(&id(), &serde_json::json!({"scrapers": {"cpus": null}})).unwrap_err();
        assert!(e.to_string().contains("scrapers::cpus"), "{e}");
        let e = config::load(&id(), &serde_json::json!({})).unwrap_err();
        assert!(e.to_string().contains("at least one scraper"), "{e}");
        let cfg = config::load(
            &id(),
            &serde_json::json!({"scrapers": {"cpu": {"metrics": {"system.cpu.utilisation": {"enabled": true}}}}}),
        )
        .unwrap();
        let e = build_scrapers(&id(), &cfg).err().unwrap();
        assert!(
            e.to_string()
                .contains("scrapers::cpu::metrics::system.cpu.utilisation"),
            "{e}"
        );
        let cfg = config::load(
            &id(),
            &serde_json::json!({"scrapers": {"process": {"include": {"names": ["x"]}}}}),
        )
        .unwrap();
        let e = build_scrapers(&id(), &cfg).err().unwrap();
        assert!(
            e.to_string()
                .contains("scrapers::process::include::match_type"),
            "{e}"
        );
        let cfg = config::load(&id(), &serde_json::json!({"scrapers": {"cpu": null}})).unwrap();
        assert_eq!(cfg.collection_interval, Duration::from_secs(60));
    }

    #[test]
    fn scraperhelper_timeout_is_read() {
        // otelcol's scraperhelper key: absent means no bound.
        let cfg = config::load(&id(), &serde_json::json!({"scrapers": {"cpu": null}})).unwrap();
        assert_eq!(cfg.timeout, Duration::ZERO);
        let cfg = config::load(
            &id(),
            &serde_json::json!({"timeout": "10s", "scrapers": {"cpu": null}}),
        )
        .unwrap();
        assert_eq!(cfg.timeout, Duration::from_secs(10));
    }

    #[test]
    fn collect_from_the_fixture_puts_each_scraper_in_its_scope() {
        let root = fixture();
        let cfg = config::load(
            &id(),
            &serde_json::json!({"root_path": root.base().display().to_string(), "scrapers": {
                "cpu": null, "memory": null, "load": null, "disk": null, "filesystem": null,
                "network": null, "paging": null, "processes": null, "process": null}}),
        )
        .unwrap();
        let mut scrapers = build_scrapers(&id(), &cfg).unwrap();
        let (batch, errors) = collect(&mut scrapers, &root, 100.0);
        assert!(errors.is_empty(), "{errors:?}");
        let scopes: Vec<&str> = batch[0]
            .scope_metrics
            .iter()
            .map(|s| s.scope.as_ref().unwrap().name.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(
            scopes,
            [
                "cpuscraper",
                "memoryscraper",
                "loadscraper",
                "diskscraper",
                "filesystemscraper",
                "networkscraper",
                "pagingscraper",
                "processesscraper"
            ]
        );
        // The fixture has two processes.
        assert_eq!(batch.len(), 3);
    }
}

#[cfg(test)]
mod entity_tests {
    use super::*;
    use serde_json::json;
    use vigil_core::{ConsumeError, Consumer};

    #[derive(Default)]
    struct Keep(Mutex<Vec<Telemetry>>);

    #[async_trait]
    impl Consumer for Keep {
        async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
            vigil_core::lock(&self.0).push(data);
            Ok(())
        }
    }

    /// In a logs pipeline only: the host entity event at start, as otelcol's, and no metrics
    /// collection (there is no metrics pipeline to take it).
    #[tokio::test]
    async fn a_logs_pipeline_gets_the_host_entity_event() {
        let id = ComponentId::parse("hostmetrics").unwrap();
        let keep = Arc::new(Keep::default());
        let mut next = NextConsumers::new();
        next.insert(Signal::Logs, keep.clone());
        let r = factory()
            .create(
                &id,
                &json!({"scrapers": {"cpu": null}, "initial_delay": "0s",
                        "collection_interval": "10ms", "metadata_collection_interval": "1m"}),
                next,
            )
            .unwrap();
        r.start(&Host::detached()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        r.shutdown().await.unwrap();
        let got = vigil_core::lock(&keep.0);
        assert_eq!(got.len(), 1, "one event at start, nothing else");
        let Telemetry::Logs(rl) = &got[0] else {
            panic!("logs")
        };
        let sl = &rl[0].scope_logs[0];
        assert_eq!(
            sl.scope.as_ref().unwrap().attributes[0].key,
            "otel.entity.event_as_log"
        );
        let a = &sl.log_records[0].attributes;
        let get = |k: &str| vigil_core::attrs::get(a, k).cloned();
        use vigil_core::otlp::common::v1::any_value::Value;
        assert_eq!(
            get("otel.entity.event.type"),
            Some(Value::StringValue("entity_state".into()))
        );
        assert_eq!(
            get("otel.entity.type"),
            Some(Value::StringValue("host".into()))
        );
        assert_eq!(get("otel.entity.interval"), Some(Value::IntValue(60_000)));
        assert!(rl[0].resource.is_none());
    }
}
