//! `docker_stats` (also `dockerstats`): each running container's CPU, memory, block I/O and
//! network statistics from the Docker Engine API, as otelcol-contrib's receiver reports them.
//! Every `collection_interval` it lists the running containers (`/containers/json`), inspects each
//! one it does not exclude (`/containers/{id}/json`, for its name, image, hostname, labels and
//! environment) and reads its stats once (`/containers/{id}/stats?stream=false`), up to
//! [`PARALLEL`] containers at a time; each container is one resource.
//!
//! The client is a plain HTTP/1.1 exchange over hyper on the socket (or TCP): four GETs with JSON
//! answers need no Docker SDK, and bollard would bring a large dependency tree to build on two
//! cores. otelcol lists the containers once at start (failing the start when the daemon cannot be
//! reached) and then follows `/events`; vigil fails the start the same way and lists again at each
//! scrape instead of following events.

use crate::hostmetrics::config::{MetricToggle, Toggles};
use crate::scrape::{self, Builder, Kind, MetricDef, Schedule, Scrape, ScrapeReceiver, Scraped};
use async_trait::async_trait;
use futures::stream::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use vigil_core::attrs::kv_str;
use vigil_core::config::duration;
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::{ComponentId, ComponentKind, ConfigError, Host, Signal};

mod api;
#[cfg(test)]
mod tests;

use api::{Container, Endpoint, Stats};

/// The instrumentation scope otelcol's receiver reports under.
pub const SCOPE: &str =
    "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/dockerstatsreceiver";

/// Containers whose inspect and stats are read at once.
pub const PARALLEL: usize = 8;

/// The most containers one scrape reads; the rest (by id) are left out, logged and counted.
pub const MAX_CONTAINERS: usize = 1000;

/// The oldest Engine API version otelcol's receiver accepts.
const MIN_API_VERSION: (u32, u32) = (1, 25);

const fn def(
    name: &'static str,
    desc: &'static str,
    unit: &'static str,
    kind: Kind,
    enabled: bool,
) -> MetricDef {
    MetricDef {
        name,
        desc,
        unit,
        kind,
        enabled,
    }
}

const MONO: Kind = Kind::Sum { monotonic: true };
const UPDOWN: Kind = Kind::Sum { monotonic: false };

/// otelcol's metadata for the metrics vigil reads (types, units and default toggles).
pub const METRICS: &[MetricDef] = &[
    // Block I/O: cgroup v2 fills only io_service_bytes_recursive.
    def("container.blockio.io_merged_recursive", "Number of bios/requests merged into requests belonging to this cgroup and its descendant cgroups (Only available with cgroups v1).", "{operations}", MONO, false),
    def("container.blockio.io_queued_recursive", "Number of requests queued up for this cgroup and its descendant cgroups (Only available with cgroups v1).", "{operations}", MONO, false),
    def("container.blockio.io_service_bytes_recursive", "Number of bytes transferred to/from the disk by the group and descendant groups.", "By", MONO, true),
    def("container.blockio.io_service_time_recursive", "Total amount of time in nanoseconds between request dispatch and request completion for the IOs done by this cgroup and descendant cgroups (Only available with cgroups v1).", "ns", MONO, false),
    def("container.blockio.io_serviced_recursive", "Number of IOs (bio) issued to the disk by the group and descendant groups (Only available with cgroups v1).", "{operations}", MONO, false),
    def("container.blockio.io_time_recursive", "Disk time allocated to cgroup (and descendant cgroups) per device in milliseconds (Only available with cgroups v1).", "ms", MONO, false),
    def("container.blockio.io_wait_time_recursive", "Total amount of time the IOs for this cgroup (and descendant cgroups) spent waiting in the scheduler queues for service (Only available with cgroups v1).", "ns", MONO, false),
    def("container.blockio.sectors_recursive", "Number of sectors transferred to/from disk by the group and descendant groups (Only available with cgroups v1).", "{sectors}", MONO, false),
    // CPU
    def("container.cpu.limit", "CPU limit set for the container.", "{cpus}", Kind::Gauge, false),
    def("container.cpu.logical.count", "Number of cores available to the container.", "{cpus}", Kind::Gauge, false),
    def("container.cpu.shares", "CPU shares set for the container.", "1", Kind::Gauge, false),
    def("container.cpu.throttling_data.periods", "Number of periods with throttling active.", "{periods}", MONO, false),
    def("container.cpu.throttling_data.throttled_periods", "Number of periods when the container hits its throttling limit.", "{periods}", MONO, false),
    def("container.cpu.throttling_data.throttled_time", "Aggregate time the container was throttled.", "ns", MONO, false),
    def("container.cpu.usage.kernelmode", "Time spent by tasks of the cgroup in kernel mode (Linux).  Time spent by all container processes in kernel mode (Windows).", "ns", MONO, true),
    def("container.cpu.usage.percpu", "Per-core CPU usage by the container (Only available with cgroups v1).", "ns", MONO, false),
    def("container.cpu.usage.system", "System CPU usage, as reported by docker.", "ns", MONO, false),
    def("container.cpu.usage.total", "Total CPU time consumed.", "ns", MONO, true),
    def("container.cpu.usage.usermode", "Time spent by tasks of the cgroup in user mode (Linux).  Time spent by all container processes in user mode (Windows).", "ns", MONO, true),
    def("container.cpu.utilization", "Percent of CPU used by the container.", "1", Kind::Gauge, true),
    // Memory: the `stats` entries, by their cgroup names.
    def("container.memory.active_anon", "The amount of anonymous memory that has been identified as active by the kernel.", "By", UPDOWN, false),
    def("container.memory.active_file", "Cache memory that has been identified as active by the kernel.", "By", UPDOWN, false),
    def("container.memory.anon", "Amount of memory used in anonymous mappings such as brk(), sbrk(), and mmap(MAP_ANONYMOUS) (Only available with cgroups v2).", "By", UPDOWN, false),
    def("container.memory.cache", "The amount of memory used by the processes of this control group that can be associated precisely with a block on a block device (Only available with cgroups v1).", "By", UPDOWN, false),
    def("container.memory.dirty", "Bytes that are waiting to get written back to the disk, from this cgroup (Only available with cgroups v1).", "By", UPDOWN, false),
    def("container.memory.fails", "Number of times the memory limit was hit.", "{fails}", MONO, false),
    def("container.memory.file", "Amount of memory used to cache filesystem data, including tmpfs and shared memory (Only available with cgroups v2).", "By", UPDOWN, true),
    def("container.memory.hierarchical_memory_limit", "The maximum amount of physical memory that can be used by the processes of this control group (Only available with cgroups v1).", "By", UPDOWN, false),
    def("container.memory.hierarchical_memsw_limit", "The maximum amount of RAM + swap that can be used by the processes of this control group (Only available with cgroups v1).", "By", UPDOWN, false),
    def("container.memory.inactive_anon", "The amount of anonymous memory that has been identified as inactive by the kernel.", "By", UPDOWN, false),
    def("container.memory.inactive_file", "Cache memory that has been identified as inactive by the kernel.", "By", UPDOWN, false),
    def("container.memory.mapped_file", "Indicates the amount of memory mapped by the processes in the control group (Only available with cgroups v1).", "By", UPDOWN, false),
    def("container.memory.percent", "Percentage of memory used. Not supported on Windows.", "1", Kind::Gauge, true),
    def("container.memory.pgfault", "Indicate the number of times that a process of the cgroup triggered a page fault.", "{faults}", MONO, false),
    def("container.memory.pgmajfault", "Indicate the number of times that a process of the cgroup triggered a major fault.", "{faults}", MONO, false),
    def("container.memory.pgpgin", "Number of pages read from disk by the cgroup (Only available with cgroups v1).", "{operations}", MONO, false),
    def("container.memory.pgpgout", "Number of pages written to disk by the cgroup (Only available with cgroups v1).", "{operations}", MONO, false),
    def("container.memory.rss", "The amount of memory that doesn't correspond to anything on disk: stacks, heaps, and anonymous memory maps (Only available with cgroups v1).", "By", UPDOWN, false),
    def("container.memory.rss_huge", "Number of bytes of anonymous transparent hugepages in this cgroup (Only available with cgroups v1).", "By", UPDOWN, false),
    def("container.memory.total_active_anon", "The amount of anonymous memory that has been identified as active by the kernel. Includes descendant cgroups (Only available with cgroups v1).", "By", UPDOWN, false),
    def("container.memory.total_active_file", "Cache memory that has been identified as active by the kernel. Includes descendant cgroups (Only available with cgroups v1).", "By", UPDOWN, false),
    def("container.memory.total_cache", "Total amount of memory used by the processes of this cgroup (and descendants) that can be associated with a block on a block device. Also accounts for memory used by tmpfs (Only available with cgroups v1). Not supported on Windows.", "By", UPDOWN, true),
    def("container.memory.total_dirty", "Bytes that are waiting to get written back to the disk, from this cgroup and descendants (Only available with cgroups v1).", "By", UPDOWN, false),
    def("container.memory.total_inactive_anon", "The amount of anonymous memory that has been identified as inactive by the kernel. Includes descendant cgroups (Only available with cgroups v1).", "By", UPDOWN, false),
    def("container.memory.total_inactive_file", "Cache memory that has been identified as inactive by the kernel. Includes descendant cgroups (Only available with cgroups v1).", "By", UPDOWN, false),
    def("container.memory.total_mapped_file", "Indicates the amount of memory mapped by the processes in the control group and descendant groups (Only available with cgroups v1).", "By", UPDOWN, false),
    def("container.memory.total_pgfault", "Indicate the number of times that a process of the cgroup (or descendant cgroups) triggered a page fault (Only available with cgroups v1).", "{faults}", MONO, false),
    def("container.memory.total_pgmajfault", "Indicate the number of times that a process of the cgroup (or descendant cgroups) triggered a major fault (Only available with cgroups v1).", "{faults}", MONO, false),
    def("container.memory.total_pgpgin", "Number of pages read from disk by the cgroup and descendant groups (Only available with cgroups v1).", "{operations}", MONO, false),
    def("container.memory.total_pgpgout", "Number of pages written to disk by the cgroup and descendant groups (Only available with cgroups v1).", "{operations}", MONO, false),
    def("container.memory.total_rss", "The amount of memory that doesn't correspond to anything on disk: stacks, heaps, and anonymous memory maps. Includes descendant cgroups (Only available with cgroups v1).", "By", UPDOWN, false),
    def("container.memory.total_rss_huge", "Number of bytes of anonymous transparent hugepages in this cgroup and descendant cgroups (Only available with cgroups v1).", "By", UPDOWN, false),
    def("container.memory.total_unevictable", "The amount of memory that cannot be reclaimed. Includes descendant cgroups (Only available with cgroups v1).", "By", UPDOWN, false),
    def("container.memory.total_writeback", "Number of bytes of file/anon cache that are queued for syncing to disk in this cgroup and descendants (Only available with cgroups v1).", "By", UPDOWN, false),
    def("container.memory.unevictable", "The amount of memory that cannot be reclaimed.", "By", UPDOWN, false),
    def("container.memory.usage.limit", "Memory limit of the container. Not supported on Windows.", "By", UPDOWN, true),
    def("container.memory.usage.max", "Maximum memory usage.", "By", UPDOWN, false),
    def("container.memory.usage.total", "Memory usage of the container. This excludes the cache.", "By", UPDOWN, true),
    def("container.memory.writeback", "Number of bytes of file/anon cache that are queued for syncing to disk in this cgroup (Only available with cgroups v1).", "By", UPDOWN, false),
    // Network
    def("container.network.io.usage.rx_bytes", "Bytes received by the container.", "By", MONO, true),
    def("container.network.io.usage.rx_dropped", "Incoming packets dropped.", "{packets}", MONO, true),
    def("container.network.io.usage.rx_errors", "Received errors. Not supported on Windows.", "{errors}", MONO, false),
    def("container.network.io.usage.rx_packets", "Packets received.", "{packets}", MONO, false),
    def("container.network.io.usage.tx_bytes", "Bytes sent.", "By", MONO, true),
    def("container.network.io.usage.tx_dropped", "Outgoing packets dropped.", "{packets}", MONO, true),
    def("container.network.io.usage.tx_errors", "Sent errors. Not supported on Windows.", "{errors}", MONO, false),
    def("container.network.io.usage.tx_packets", "Packets sent.", "{packets}", MONO, false),
    // Pids and the container itself
    def("container.pids.count", "Number of pids in the container's cgroup.", "{pids}", UPDOWN, false),
    def("container.pids.limit", "Maximum number of pids in the container's cgroup.", "{pids}", UPDOWN, false),
    def("container.restarts", "Number of restarts for the container.", "{restarts}", MONO, false),
    def("container.uptime", "Time elapsed since container start time.", "s", Kind::Gauge, false),
];

/// The memory `stats` entries otelcol reports, each as `container.memory.<name>`.
const MEMORY_STATS: &[&str] = &[
    "active_anon",
    "active_file",
    "anon",
    "cache",
    "dirty",
    "file",
    "hierarchical_memory_limit",
    "hierarchical_memsw_limit",
    "inactive_anon",
    "inactive_file",
    "mapped_file",
    "pgfault",
    "pgmajfault",
    "pgpgin",
    "pgpgout",
    "rss",
    "rss_huge",
    "total_active_anon",
    "total_active_file",
    "total_cache",
    "total_dirty",
    "total_inactive_anon",
    "total_inactive_file",
    "total_mapped_file",
    "total_pgfault",
    "total_pgmajfault",
    "total_pgpgin",
    "total_pgpgout",
    "total_rss",
    "total_rss_huge",
    "total_unevictable",
    "total_writeback",
    "unevictable",
    "writeback",
];

/// otelcol's resource attributes and their defaults.
const RESOURCE_ATTRIBUTES: &[(&str, bool)] = &[
    ("container.command_line", false),
    ("container.hostname", true),
    ("container.id", true),
    ("container.image.id", false),
    ("container.image.name", true),
    ("container.name", true),
    ("container.runtime", true),
];

/// `api_version` as written: otelcol has taken it as a number (`1.25`) and as a string.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ApiVersion {
    Number(f64),
    Text(String),
}

impl ApiVersion {
    /// `major.minor` as the path prefix spells it (`1.25`).
    fn text(&self) -> String {
        match self {
            // Engine API minors have two digits: 1.4 written as a number is 1.40.
            ApiVersion::Number(n) => format!("{n:.2}"),
            ApiVersion::Text(s) => s.trim_start_matches('v').to_string(),
        }
    }

    fn parse(&self) -> Option<(u32, u32)> {
        let t = self.text();
        let (a, b) = t.split_once('.')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    }
}

/// `receivers::docker_stats` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DockerStatsConfig {
    /// Time between two scrapes (otelcol: 10s).
    #[serde(default = "default_interval", with = "duration")]
    pub collection_interval: Duration,
    /// Wait before the first scrape (scraperhelper: 1s).
    #[serde(default = "default_initial_delay", with = "duration")]
    pub initial_delay: Duration,
    /// The Docker daemon: `unix:///path`, `tcp://host:port` or `http://host:port`.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// Bound on each request to the daemon (otelcol: 5s).
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default = "default_api_version")]
    pub api_version: ApiVersion,
    /// Container label → resource attribute name.
    #[serde(default)]
    pub container_labels_to_metric_labels: BTreeMap<String, String>,
    /// Container environment variable → resource attribute name.
    #[serde(default)]
    pub env_vars_to_metric_labels: BTreeMap<String, String>,
    /// Images whose containers are left out: literals, globs, `/regex/`, or all `!`-negated.
    #[serde(default)]
    pub excluded_images: Vec<String>,
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricToggle>,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, MetricToggle>,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_initial_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_endpoint() -> String {
    "unix:///var/run/docker.sock".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_api_version() -> ApiVersion {
    ApiVersion::Text("1.25".into())
}

fn err(id: &ComponentId, path: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Receiver, id, path.into(), msg)
}

/// One `excluded_images` pattern.
enum Pattern {
    Literal(String),
    Glob(glob::Pattern),
    Regex(regex::Regex),
}

impl Pattern {
    fn matches(&self, s: &str) -> bool {
        match self {
            Pattern::Literal(l) => l == s,
            Pattern::Glob(g) => g.matches(s),
            Pattern::Regex(r) => r.is_match(s),
        }
    }
}

/// `excluded_images` as otelcol's docker matcher reads it: an image is excluded when it matches
/// any pattern; when every pattern is negated (`!`), when it matches none.
struct Excluded {
    patterns: Vec<Pattern>,
    negated: bool,
}

impl Excluded {
    fn new(list: &[String]) -> Result<Excluded, String> {
        let negated = list.iter().filter(|p| p.starts_with('!')).count();
        if negated > 0 && negated < list.len() {
            return Err("either every pattern is negated with ! or none is".into());
        }
        let mut patterns = Vec::new();
        for raw in list {
            let p = raw.strip_prefix('!').unwrap_or(raw);
            let pat = if p.len() >= 2 && p.starts_with('/') && p.ends_with('/') {
                let re = &p[1..p.len() - 1];
                Pattern::Regex(
                    vigil_core::config::re2_regex(re)
                        .map_err(|e| format!("invalid regular expression {re:?}: {e}"))?,
                )
            } else if p.contains(['*', '?', '[']) {
                Pattern::Glob(
                    glob::Pattern::new(p).map_err(|e| format!("invalid glob {p:?}: {e}"))?,
                )
            } else {
                Pattern::Literal(p.to_string())
            };
            patterns.push(pat);
        }
        Ok(Excluded {
            patterns,
            negated: negated > 0,
        })
    }

    fn excludes(&self, image: &str) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let any = self.patterns.iter().any(|p| p.matches(image));
        any != self.negated
    }
}

struct Checked {
    endpoint: Endpoint,
    version: String,
    excluded: Excluded,
    metrics: Toggles,
    resource_attrs: Toggles,
}

fn check(id: &ComponentId, c: &DockerStatsConfig) -> Result<Checked, ConfigError> {
    vigil_core::config::check_interval(c.collection_interval)
        .map_err(|m| err(id, "collection_interval", m))?;
    if c.endpoint.is_empty() {
        return Err(err(id, "endpoint", "endpoint must be specified"));
    }
    let endpoint = Endpoint::parse(&c.endpoint).map_err(|m| err(id, "endpoint", m))?;
    match c.api_version.parse() {
        Some(v) if v >= MIN_API_VERSION => {}
        _ => {
            return Err(err(
                id,
                "api_version",
                format!(
                    "{:?} must be a version of at least {}.{}",
                    c.api_version.text(),
                    MIN_API_VERSION.0,
                    MIN_API_VERSION.1
                ),
            ))
        }
    }
    let excluded = Excluded::new(&c.excluded_images).map_err(|m| err(id, "excluded_images", m))?;
    let metrics = Toggles::build(&scrape::known(METRICS), &c.metrics, |p, m| err(id, p, m))?;
    let resource_attrs = scrape::toggles_under(
        "resource_attributes",
        "resource attribute",
        RESOURCE_ATTRIBUTES,
        &c.resource_attributes,
        |p, m| err(id, p, m),
    )?;
    Ok(Checked {
        endpoint,
        version: c.api_version.text(),
        excluded,
        metrics,
        resource_attrs,
    })
}

/// The `docker_stats` receiver factory.
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    scrape::factory(scrape::Spec::<DockerStatsConfig, DockerScraper> {
        type_name: "docker_stats",
        stability: &[(Signal::Metrics, vigil_core::Stability::Alpha)],
        check: |id, cfg| check(id, cfg).map(|_| ()),
        build,
        schedule: |cfg| Schedule {
            collection_interval: cfg.collection_interval,
            initial_delay: cfg.initial_delay,
            // Each request is bounded by `timeout`.
            timeout: Duration::ZERO,
        },
        receiver: |set, schedule, next, scraper| {
            let id = set.id.to_string();
            Arc::new(DockerStatsReceiver {
                id,
                scraper: Arc::clone(&scraper),
                inner: ScrapeReceiver::new(set, schedule, next, scraper),
            })
        },
    })
}

fn build(id: &ComponentId, cfg: &DockerStatsConfig) -> Result<DockerScraper, ConfigError> {
    let c = check(id, cfg)?;
    Ok(DockerScraper {
        client: api::Client {
            endpoint: c.endpoint,
            version: c.version,
            timeout: cfg.timeout,
        },
        excluded: c.excluded,
        labels: cfg.container_labels_to_metric_labels.clone(),
        env: cfg.env_vars_to_metric_labels.clone(),
        metrics: c.metrics,
        resource_attrs: c.resource_attrs,
        start: scrape::unix_nanos(SystemTime::now()),
        skipped: metrics::counter!("vigil_docker_stats_containers_skipped", "receiver" => id.to_string()),
    })
}

/// The scrape loop, started only once the daemon answered a container list, as otelcol's
/// receiver fails its start when it cannot list the containers.
struct DockerStatsReceiver {
    id: String,
    scraper: Arc<DockerScraper>,
    inner: ScrapeReceiver,
}

#[async_trait]
impl vigil_core::Component for DockerStatsReceiver {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        if let Err(e) = self.scraper.client.containers().await {
            anyhow::bail!(
                "receivers::{}: cannot list the containers at {}: {e}",
                self.id,
                self.scraper.client.endpoint
            );
        }
        self.inner.start(host).await
    }

    fn tasks(&self) -> Option<&vigil_core::Tasks> {
        self.inner.tasks()
    }
}

struct DockerScraper {
    client: api::Client,
    excluded: Excluded,
    labels: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    metrics: Toggles,
    resource_attrs: Toggles,
    start: u64,
    skipped: metrics::Counter,
}

#[async_trait]
impl Scrape for DockerScraper {
    async fn scrape(&self) -> Scraped {
        let mut errors = Vec::new();
        let mut list = match self.client.containers().await {
            Ok(l) => l,
            Err(e) => {
                return Scraped {
                    metrics: Vec::new(),
                    errors: vec![format!("cannot list the containers: {e}")],
                }
            }
        };
        list.retain(|c| !self.excluded.excludes(&c.image));
        list.sort_by(|a, b| a.id.cmp(&b.id));
        if list.len() > MAX_CONTAINERS {
            let n = list.len() - MAX_CONTAINERS;
            self.skipped.increment(n as u64);
            errors.push(format!(
                "{n} containers beyond the first {MAX_CONTAINERS} (by id) were left out"
            ));
            list.truncate(MAX_CONTAINERS);
        }
        let results: Vec<_> = futures::stream::iter(list)
            .map(|c| async move {
                let inspect = self.client.inspect(&c.id).await;
                let stats = self.client.stats(&c.id).await;
                (c, inspect, stats)
            })
            .buffered(PARALLEL)
            .collect()
            .await;
        let mut b = Builder::new(
            METRICS,
            &self.metrics,
            &self.resource_attrs,
            SCOPE,
            self.start,
        );
        let now = chrono::Utc::now();
        for (c, inspect, stats) in results {
            let (inspect, stats) = match (inspect, stats) {
                (Ok(i), Ok(s)) => (i, s),
                (Err(e), _) | (_, Err(e)) => {
                    errors.push(format!("container {}: {e}", short(&c.id)));
                    continue;
                }
            };
            record(&mut b, &stats, &inspect, now);
            let (attrs, mapped) = self.resource(&inspect);
            b.emit_for_resource_with(attrs, mapped);
        }
        Scraped {
            metrics: b.finish(Vec::new()),
            errors,
        }
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

impl DockerScraper {
    /// otelcol's resource attributes, and those the user's label and environment mappings name.
    fn resource(&self, c: &Container) -> (Vec<KeyValue>, Vec<KeyValue>) {
        let attrs = vec![
            kv_str("container.runtime", "docker"),
            kv_str("container.hostname", &c.config.hostname),
            kv_str("container.id", &c.id),
            kv_str("container.image.name", &c.config.image),
            kv_str("container.name", c.name.trim_start_matches('/')),
            kv_str("container.image.id", &c.image),
            kv_str("container.command_line", c.config.cmd.join(" ")),
        ];
        let mut mapped = Vec::new();
        for (label, attr) in &self.labels {
            if let Some(v) = c.config.labels.get(label).filter(|v| !v.is_empty()) {
                mapped.push(kv_str(attr, v));
            }
        }
        for (var, attr) in &self.env {
            let prefix = format!("{var}=");
            if let Some(v) = c
                .config
                .env
                .iter()
                .find_map(|e| e.strip_prefix(&prefix))
                .filter(|v| !v.is_empty())
            {
                mapped.push(kv_str(attr, v));
            }
        }
        (attrs, mapped)
    }
}

/// Records one container's points, as otelcol's receiver computes them.
fn record(b: &mut Builder<'_>, s: &Stats, c: &Container, now: chrono::DateTime<chrono::Utc>) {
    let u = |v: u64| v.min(i64::MAX as u64) as i64;
    // CPU
    let cpu = &s.cpu_stats;
    b.int(
        "container.cpu.usage.system",
        u(cpu.system_cpu_usage),
        vec![],
    );
    b.int(
        "container.cpu.usage.total",
        u(cpu.cpu_usage.total_usage),
        vec![],
    );
    b.int(
        "container.cpu.usage.kernelmode",
        u(cpu.cpu_usage.usage_in_kernelmode),
        vec![],
    );
    b.int(
        "container.cpu.usage.usermode",
        u(cpu.cpu_usage.usage_in_usermode),
        vec![],
    );
    let t = &cpu.throttling_data;
    b.int(
        "container.cpu.throttling_data.throttled_periods",
        u(t.throttled_periods),
        vec![],
    );
    b.int(
        "container.cpu.throttling_data.periods",
        u(t.periods),
        vec![],
    );
    b.int(
        "container.cpu.throttling_data.throttled_time",
        u(t.throttled_time),
        vec![],
    );
    b.double(
        "container.cpu.utilization",
        cpu_percent(&s.precpu_stats, cpu),
        vec![],
    );
    for (core, v) in cpu.cpu_usage.percpu_usage.iter().flatten().enumerate() {
        b.int(
            "container.cpu.usage.percpu",
            u(*v),
            vec![kv_str("core", format!("cpu{core}"))],
        );
    }
    if cpu.online_cpus > 0 {
        b.int(
            "container.cpu.logical.count",
            cpu.online_cpus as i64,
            vec![],
        );
    }
    // Memory
    let m = &s.memory_stats;
    let used = mem_usage_no_cache(m);
    b.int("container.memory.usage.total", u(used), vec![]);
    b.int("container.memory.usage.limit", u(m.limit), vec![]);
    let percent = if m.limit != 0 {
        used as f64 / m.limit as f64 * 100.0
    } else {
        0.0
    };
    b.double("container.memory.percent", percent, vec![]);
    b.int("container.memory.usage.max", u(m.max_usage), vec![]);
    if let Some(f) = m.failcnt {
        b.int("container.memory.fails", u(f), vec![]);
    }
    for name in MEMORY_STATS {
        if let Some(v) = m.stats.get(*name) {
            b.int(&format!("container.memory.{name}"), u(*v), vec![]);
        }
    }
    // Block I/O
    let blk = &s.blkio_stats;
    for (name, entries) in [
        ("io_merged_recursive", &blk.io_merged_recursive),
        ("io_queued_recursive", &blk.io_queue_recursive),
        (
            "io_service_bytes_recursive",
            &blk.io_service_bytes_recursive,
        ),
        ("io_service_time_recursive", &blk.io_service_time_recursive),
        ("io_serviced_recursive", &blk.io_serviced_recursive),
        ("io_time_recursive", &blk.io_time_recursive),
        ("io_wait_time_recursive", &blk.io_wait_time_recursive),
        ("sectors_recursive", &blk.sectors_recursive),
    ] {
        for e in entries.iter().flatten() {
            b.int(
                &format!("container.blockio.{name}"),
                u(e.value),
                vec![
                    kv_str("device_major", e.major.to_string()),
                    kv_str("device_minor", e.minor.to_string()),
                    kv_str("operation", e.op.to_lowercase()),
                ],
            );
        }
    }
    // Network
    for (iface, n) in s.networks.iter().flatten() {
        let a = || vec![kv_str("interface", iface)];
        b.int("container.network.io.usage.rx_bytes", u(n.rx_bytes), a());
        b.int("container.network.io.usage.tx_bytes", u(n.tx_bytes), a());
        b.int(
            "container.network.io.usage.rx_dropped",
            u(n.rx_dropped),
            a(),
        );
        b.int(
            "container.network.io.usage.tx_dropped",
            u(n.tx_dropped),
            a(),
        );
        b.int(
            "container.network.io.usage.rx_packets",
            u(n.rx_packets),
            a(),
        );
        b.int(
            "container.network.io.usage.tx_packets",
            u(n.tx_packets),
            a(),
        );
        b.int("container.network.io.usage.rx_errors", u(n.rx_errors), a());
        b.int("container.network.io.usage.tx_errors", u(n.tx_errors), a());
    }
    // Pids: zero when the pids cgroup is missing, and then not reported.
    if s.pids_stats.current != 0 {
        b.int("container.pids.count", u(s.pids_stats.current), vec![]);
        if s.pids_stats.limit != 0 {
            b.int("container.pids.limit", u(s.pids_stats.limit), vec![]);
        }
    }
    // The container itself
    b.int("container.restarts", c.restart_count as i64, vec![]);
    if let Ok(started) = chrono::DateTime::parse_from_rfc3339(&c.state.started_at) {
        let up = now.signed_duration_since(started);
        if up > chrono::TimeDelta::zero() {
            b.double(
                "container.uptime",
                up.num_milliseconds() as f64 / 1000.0,
                vec![],
            );
        }
    }
    b.int(
        "container.cpu.shares",
        c.host_config.cpu_shares as i64,
        vec![],
    );
    if let Some(limit) = cpu_limit(&c.host_config) {
        b.double("container.cpu.limit", limit, vec![]);
    }
}

/// The container's share of the host's CPU time between the two readings of one stats answer,
/// times the CPUs it may use, in percent (the Docker CLI's formula, which otelcol uses).
fn cpu_percent(prev: &api::CpuStats, cur: &api::CpuStats) -> f64 {
    let cpu_delta = cur.cpu_usage.total_usage as f64 - prev.cpu_usage.total_usage as f64;
    let system_delta = cur.system_cpu_usage as f64 - prev.system_cpu_usage as f64;
    let mut online = cur.online_cpus as f64;
    if online == 0.0 {
        online = cur.cpu_usage.percpu_usage.as_ref().map_or(0, Vec::len) as f64;
    }
    if system_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / system_delta * online * 100.0
    } else {
        0.0
    }
}

/// Memory in use without the page cache that can be dropped: usage less `total_inactive_file`
/// (cgroup v1) or `inactive_file` (v2), as the Docker CLI, cAdvisor and otelcol compute it.
fn mem_usage_no_cache(m: &api::MemoryStats) -> u64 {
    if let Some(&v) = m.stats.get("total_inactive_file") {
        if v < m.usage {
            return m.usage - v;
        }
    }
    match m.stats.get("inactive_file") {
        Some(&v) if v < m.usage => m.usage - v,
        _ => m.usage,
    }
}

/// The CPUs a container may use: `NanoCpus`, else the size of `CpusetCpus`, else the CFS quota
/// over its period; `None` without a limit.
fn cpu_limit(h: &api::HostConfig) -> Option<f64> {
    if h.nano_cpus > 0 {
        return Some(h.nano_cpus as f64 / 1e9);
    }
    if !h.cpuset_cpus.is_empty() {
        let mut n = 0u64;
        for part in h.cpuset_cpus.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?);
                    n += b.checked_sub(a)? + 1;
                }
                None => n += 1,
            }
        }
        return Some(n as f64);
    }
    if h.cpu_quota > 0 {
        let period = if h.cpu_period == 0 {
            100_000
        } else {
            h.cpu_period
        };
        return Some(h.cpu_quota as f64 / period as f64);
    }
    None
}
