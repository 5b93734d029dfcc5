//! `awsecscontainermetrics`: an ECS task's own resource usage, read as otelcol-contrib's receiver
//! reads it from the task metadata endpoint v4 (`$ECS_CONTAINER_METADATA_URI_V4/task` and
//! `/task/stats`). Every `collection_interval` it emits `container.*` metrics for each container
//! (under the container's and the task's resource attributes) and the task's sums as `ecs.task.*`.
//! Without `ECS_CONTAINER_METADATA_URI_V4` the receiver cannot run: otelcol fails when it builds
//! the receiver, after config validation, so here `validate` passes and start fails.

use crate::hostmetrics::config::Toggles;
use crate::scrape::{self, Builder, Kind, MetricDef, Schedule, Scrape, ScrapeReceiver, Scraped};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use vigil_core::attrs::{kv_i64, kv_str};
use vigil_core::config::duration;
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::{ComponentId, ComponentKind, ConfigError, NextConsumers, Receiver, Signal};

#[cfg(test)]
mod tests;

/// The variable ECS sets in every container of a task (agent 1.39.0+, Fargate 1.4.0+).
pub const ENDPOINT_ENV: &str = "ECS_CONTAINER_METADATA_URI_V4";

/// Largest `/task` or `/task/stats` answer read: a task has at most 10 containers, whose stats are
/// a few KiB each.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// The CPU units of one vCPU, and bytes in a MiB, as ECS counts them.
const CPUS_IN_VCPU: f64 = 1024.0;
const BYTES_IN_MIB: u64 = 1024 * 1024;

macro_rules! metric {
    ($p:literal, $n:literal, $u:literal, gauge) => {
        MetricDef {
            name: concat!($p, $n),
            desc: "",
            unit: $u,
            kind: Kind::Gauge,
            enabled: true,
        }
    };
    ($p:literal, $n:literal, $u:literal, sum) => {
        MetricDef {
            name: concat!($p, $n),
            desc: "",
            unit: $u,
            // otelcol's are cumulative sums left non-monotonic.
            kind: Kind::Sum { monotonic: false },
            enabled: true,
        }
    };
}

macro_rules! defs {
    ($p:literal) => {
        [
            metric!($p, "memory.usage", "Bytes", gauge),
            metric!($p, "memory.usage.max", "Bytes", gauge),
            metric!($p, "memory.usage.limit", "Bytes", gauge),
            metric!($p, "memory.utilized", "Megabytes", gauge),
            metric!($p, "memory.reserved", "Megabytes", gauge),
            metric!($p, "cpu.usage.total", "Nanoseconds", sum),
            metric!($p, "cpu.usage.kernelmode", "Nanoseconds", sum),
            metric!($p, "cpu.usage.usermode", "Nanoseconds", sum),
            metric!($p, "cpu.cores", "Count", gauge),
            metric!($p, "cpu.onlines", "Count", gauge),
            metric!($p, "cpu.usage.system", "Nanoseconds", sum),
            metric!($p, "cpu.utilized", "None", gauge),
            metric!($p, "cpu.reserved", "None", gauge),
            metric!($p, "cpu.usage.vcpu", "vCPU", gauge),
            metric!($p, "network.rate.rx", "Bytes/Second", gauge),
            metric!($p, "network.rate.tx", "Bytes/Second", gauge),
            metric!($p, "network.io.usage.rx_bytes", "Bytes", sum),
            metric!($p, "network.io.usage.rx_packets", "Count", sum),
            metric!($p, "network.io.usage.rx_errors", "Count", sum),
            metric!($p, "network.io.usage.rx_dropped", "Count", sum),
            metric!($p, "network.io.usage.tx_bytes", "Bytes", sum),
            metric!($p, "network.io.usage.tx_packets", "Count", sum),
            metric!($p, "network.io.usage.tx_errors", "Count", sum),
            metric!($p, "network.io.usage.tx_dropped", "Count", sum),
            metric!($p, "storage.read_bytes", "Bytes", sum),
            metric!($p, "storage.write_bytes", "Bytes", sum),
        ]
    };
}

const TASK_METRICS: [MetricDef; 26] = defs!("ecs.task.");
const CONTAINER_METRICS: [MetricDef; 26] = defs!("container.");
const DURATION: MetricDef = metric!("container.", "duration", "Seconds", gauge);

/// Every metric the receiver emits (otelcol's receiver has no `metrics` toggles).
pub static METRICS: [MetricDef; 53] = {
    let mut all = [DURATION; 53];
    let mut i = 0;
    while i < 26 {
        all[i] = TASK_METRICS[i];
        all[26 + i] = CONTAINER_METRICS[i];
        i += 1;
    }
    all
};

/// `receivers::awsecscontainermetrics` as written: otelcol's one key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AwsEcsContainerMetricsConfig {
    /// Time between two collections (otelcol: 20s); the first comes one interval after start.
    #[serde(default = "default_interval", with = "duration")]
    pub collection_interval: Duration,
}

fn default_interval() -> Duration {
    Duration::from_secs(20)
}

fn err(id: &ComponentId, path: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Receiver, id, path.into(), msg)
}

fn check(id: &ComponentId, c: &AwsEcsContainerMetricsConfig) -> Result<(), ConfigError> {
    vigil_core::config::check_interval(c.collection_interval)
        .map_err(|m| err(id, "collection_interval", m))
}

struct Factory;

/// The `awsecscontainermetrics` receiver factory.
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = AwsEcsContainerMetricsConfig;

    fn type_name(&self) -> &'static str {
        "awsecscontainermetrics"
    }

    fn validate(
        &self,
        id: &ComponentId,
        cfg: &AwsEcsContainerMetricsConfig,
    ) -> Result<(), ConfigError> {
        check(id, cfg)
    }
}

impl vigil_core::factory::ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[(Signal::Metrics, vigil_core::Stability::Beta)]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: AwsEcsContainerMetricsConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        let endpoint = std::env::var(ENDPOINT_ENV).ok().filter(|v| !v.is_empty());
        create(set, &cfg, endpoint, next)
    }
}

/// The receiver for `endpoint` (the variable's value; `None` when it is unset).
fn create(
    set: vigil_core::Settings,
    cfg: &AwsEcsContainerMetricsConfig,
    endpoint: Option<String>,
    next: NextConsumers,
) -> Result<Arc<dyn Receiver>, ConfigError> {
    check(&set.id, cfg)?;
    let id = set.id.to_string();
    let Some(endpoint) = endpoint else {
        return Ok(Arc::new(EcsReceiver { id, inner: None }));
    };
    let scraper = Arc::new(build(&set.id, cfg, &endpoint)?);
    let schedule = Schedule {
        collection_interval: cfg.collection_interval,
        // otelcol's receiver collects on its ticker's first tick, one interval after start.
        initial_delay: cfg.collection_interval,
        // The requests' own timeout bounds the scrape.
        timeout: Duration::ZERO,
    };
    let inner = ScrapeReceiver::new(set, schedule, next, scraper);
    Ok(Arc::new(EcsReceiver {
        id,
        inner: Some(inner),
    }))
}

/// The scrape loop, or (without the endpoint variable) a receiver whose start fails.
struct EcsReceiver {
    id: String,
    inner: Option<ScrapeReceiver>,
}

#[async_trait]
impl vigil_core::Component for EcsReceiver {
    async fn start(&self, host: &vigil_core::Host) -> anyhow::Result<()> {
        match &self.inner {
            Some(r) => vigil_core::Component::start(r, host).await,
            None => anyhow::bail!(
                "receivers::{}: unable to detect task metadata endpoint: {ENDPOINT_ENV} is not set \
                 (ECS sets it in the containers of a task; this receiver runs inside an ECS task)",
                self.id
            ),
        }
    }

    fn tasks(&self) -> Option<&vigil_core::Tasks> {
        self.inner
            .as_ref()
            .and_then(|r| vigil_core::Component::tasks(r))
    }
}

fn build(
    id: &ComponentId,
    cfg: &AwsEcsContainerMetricsConfig,
    endpoint: &str,
) -> Result<EcsScraper, ConfigError> {
    let base = endpoint.trim_end_matches('/').to_string();
    match reqwest::Url::parse(&base) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => {
            return Err(err(
                id,
                "",
                format!("{ENDPOINT_ENV}={endpoint:?} is not an http URL"),
            ))
        }
    }
    let client = reqwest::Client::builder()
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        // A collection that has not answered by the next one is abandoned.
        .timeout(cfg.collection_interval)
        .build()
        .map_err(|e| err(id, "", format!("cannot build the HTTP client: {e}")))?;
    Ok(EcsScraper {
        base,
        client,
        metrics: Toggles::defaults(&scrape::known(&METRICS)),
        resource_attrs: Toggles::default(),
        start: scrape::unix_nanos(SystemTime::now()),
    })
}

struct EcsScraper {
    base: String,
    client: reqwest::Client,
    metrics: Toggles,
    /// Resource attributes are all passed as `extra`: otelcol has no toggles for them.
    resource_attrs: Toggles,
    start: u64,
}

// The task metadata v4 document, with the fields the receiver reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Limits {
    #[serde(rename = "CPU")]
    cpu: Option<f64>,
    #[serde(rename = "Memory")]
    memory: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct TaskMetadata {
    cluster: String,
    #[serde(rename = "TaskARN")]
    task_arn: String,
    family: String,
    revision: String,
    known_status: String,
    availability_zone: String,
    pull_started_at: String,
    pull_stopped_at: String,
    launch_type: String,
    service_name: String,
    limits: Limits,
    containers: Vec<ContainerMetadata>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct ContainerMetadata {
    docker_id: String,
    name: String,
    docker_name: String,
    image: String,
    #[serde(rename = "ImageID")]
    image_id: String,
    known_status: String,
    created_at: String,
    started_at: String,
    finished_at: String,
    exit_code: Option<i64>,
    limits: Limits,
}

// Docker's stats document as the endpoint relays it, one per container id (`null` for a container
// that is not running).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ContainerStats {
    id: String,
    name: String,
    read: String,
    preread: String,
    memory_stats: Option<MemoryStats>,
    cpu_stats: Option<CpuStats>,
    precpu_stats: Option<CpuStats>,
    networks: Option<BTreeMap<String, NetStats>>,
    network_rate_stats: Option<NetRate>,
    blkio_stats: Option<BlkioStats>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MemoryStats {
    usage: Option<u64>,
    max_usage: Option<u64>,
    limit: Option<u64>,
    stats: Option<BTreeMap<String, u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CpuStats {
    cpu_usage: Option<CpuUsage>,
    online_cpus: Option<u64>,
    system_cpu_usage: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CpuUsage {
    total_usage: u64,
    usage_in_kernelmode: u64,
    usage_in_usermode: u64,
    percpu_usage: Option<Vec<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NetStats {
    rx_bytes: u64,
    rx_packets: u64,
    rx_errors: u64,
    rx_dropped: u64,
    tx_bytes: u64,
    tx_packets: u64,
    tx_errors: u64,
    tx_dropped: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NetRate {
    rx_bytes_per_sec: f64,
    tx_bytes_per_sec: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BlkioStats {
    io_service_bytes_recursive: Option<Vec<BlkioEntry>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BlkioEntry {
    op: String,
    value: u64,
}

/// One container's (or, summed, the task's) numbers, as otelcol's `ECSMetrics`.
#[derive(Debug, Default, Clone, PartialEq)]
struct EcsMetrics {
    memory_usage: u64,
    memory_max_usage: u64,
    memory_limit: u64,
    memory_reserved: u64,
    memory_utilized: u64,
    cpu_total: u64,
    cpu_kernel: u64,
    cpu_user: u64,
    cpu_cores: u64,
    cpu_onlines: u64,
    cpu_system: u64,
    cpu_reserved: f64,
    cpu_utilized: f64,
    cpu_vcpu: f64,
    rate_rx: f64,
    rate_tx: f64,
    net: [u64; 8],
    storage_read: u64,
    storage_write: u64,
}

fn container_metrics(s: &ContainerStats, md: &ContainerMetadata) -> EcsMetrics {
    let mut m = EcsMetrics::default();
    if let Some(mem) = &s.memory_stats {
        m.memory_usage = mem.usage.unwrap_or(0);
        m.memory_max_usage = mem.max_usage.unwrap_or(0);
        m.memory_limit = mem.limit.unwrap_or(0);
        if let Some(st) = &mem.stats {
            let cache = st.get("cache").copied().unwrap_or(0);
            m.memory_utilized = m.memory_usage.saturating_sub(cache) / BYTES_IN_MIB;
        }
    }
    if let Some((cpu, usage)) = s
        .cpu_stats
        .as_ref()
        .and_then(|c| c.cpu_usage.as_ref().map(|u| (c, u)))
    {
        let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
        let elapsed = match (parse(&s.read), parse(&s.preread)) {
            (Some(r), Some(p)) => (r - p).num_nanoseconds().unwrap_or(0) as f64,
            _ => 0.0,
        };
        let prev = s
            .precpu_stats
            .as_ref()
            .and_then(|p| p.cpu_usage.as_ref())
            .map_or(0, |u| u.total_usage);
        if elapsed > 0.0 {
            m.cpu_vcpu = usage.total_usage.saturating_sub(prev) as f64 / elapsed;
        }
        m.cpu_utilized = m.cpu_vcpu * 100.0;
        m.cpu_total = usage.total_usage;
        m.cpu_kernel = usage.usage_in_kernelmode;
        m.cpu_user = usage.usage_in_usermode;
        m.cpu_cores = usage.percpu_usage.as_ref().map_or(0, |v| v.len() as u64);
        m.cpu_onlines = cpu.online_cpus.unwrap_or(0);
        m.cpu_system = cpu.system_cpu_usage.unwrap_or(0);
    }
    if let Some(r) = &s.network_rate_stats {
        m.rate_rx = r.rx_bytes_per_sec;
        m.rate_tx = r.tx_bytes_per_sec;
    }
    for n in s.networks.iter().flat_map(|n| n.values()) {
        let add = [
            n.rx_bytes,
            n.rx_packets,
            n.rx_errors,
            n.rx_dropped,
            n.tx_bytes,
            n.tx_packets,
            n.tx_errors,
            n.tx_dropped,
        ];
        for (t, v) in m.net.iter_mut().zip(add) {
            *t = t.saturating_add(v);
        }
    }
    // As the ECS agent counts them: the last `Read` and `Write` entries; `Total`, `Async`... are not.
    for e in s
        .blkio_stats
        .iter()
        .flat_map(|b| b.io_service_bytes_recursive.iter().flatten())
    {
        match e.op.as_str() {
            "Read" => m.storage_read = e.value,
            "Write" => m.storage_write = e.value,
            _ => {}
        }
    }
    if let Some(mem) = md.limits.memory {
        m.memory_reserved = mem;
    }
    if let Some(cpu) = md.limits.cpu {
        m.cpu_reserved = cpu;
    }
    if m.cpu_reserved > 0.0 {
        m.cpu_utilized /= m.cpu_reserved;
    }
    m
}

fn add_to_task(t: &mut EcsMetrics, c: &EcsMetrics) {
    t.memory_usage += c.memory_usage;
    t.memory_max_usage += c.memory_max_usage;
    t.memory_limit += c.memory_limit;
    t.memory_reserved += c.memory_reserved;
    t.memory_utilized += c.memory_utilized;
    t.cpu_total += c.cpu_total;
    t.cpu_kernel += c.cpu_kernel;
    t.cpu_user += c.cpu_user;
    t.cpu_cores += c.cpu_cores;
    t.cpu_onlines += c.cpu_onlines;
    t.cpu_system += c.cpu_system;
    t.cpu_reserved += c.cpu_reserved;
    t.cpu_vcpu += c.cpu_vcpu;
    t.rate_rx += c.rate_rx;
    t.rate_tx += c.rate_tx;
    for (a, b) in t.net.iter_mut().zip(c.net) {
        *a = a.saturating_add(b);
    }
    t.storage_read += c.storage_read;
    t.storage_write += c.storage_write;
}

/// The task's limits replace the containers' sums; `cpu.utilized` is then the task's vCPU usage
/// in CPU units, as otelcol reports it.
fn task_limits(t: &mut EcsMetrics, md: &TaskMetadata) {
    if let Some(mem) = md.limits.memory {
        t.memory_reserved = mem;
    }
    if let Some(cpu) = md.limits.cpu {
        t.cpu_reserved = cpu * CPUS_IN_VCPU;
    }
    if t.cpu_reserved > 0.0 {
        t.cpu_utilized = t.cpu_vcpu * CPUS_IN_VCPU;
    }
}

fn record(b: &mut Builder<'_>, prefix: &str, m: &EcsMetrics) {
    let i = |b: &mut Builder<'_>, n: &str, v: u64| {
        b.int(
            &format!("{prefix}{n}"),
            i64::try_from(v).unwrap_or(i64::MAX),
            vec![],
        )
    };
    let d = |b: &mut Builder<'_>, n: &str, v: f64| b.double(&format!("{prefix}{n}"), v, vec![]);
    i(b, "memory.usage", m.memory_usage);
    i(b, "memory.usage.max", m.memory_max_usage);
    i(b, "memory.usage.limit", m.memory_limit);
    i(b, "memory.utilized", m.memory_utilized);
    i(b, "memory.reserved", m.memory_reserved);
    i(b, "cpu.usage.total", m.cpu_total);
    i(b, "cpu.usage.kernelmode", m.cpu_kernel);
    i(b, "cpu.usage.usermode", m.cpu_user);
    i(b, "cpu.cores", m.cpu_cores);
    i(b, "cpu.onlines", m.cpu_onlines);
    i(b, "cpu.usage.system", m.cpu_system);
    d(b, "cpu.utilized", m.cpu_utilized);
    d(b, "cpu.reserved", m.cpu_reserved);
    d(b, "cpu.usage.vcpu", m.cpu_vcpu);
    d(b, "network.rate.rx", m.rate_rx);
    d(b, "network.rate.tx", m.rate_tx);
    for (n, v) in [
        "network.io.usage.rx_bytes",
        "network.io.usage.rx_packets",
        "network.io.usage.rx_errors",
        "network.io.usage.rx_dropped",
        "network.io.usage.tx_bytes",
        "network.io.usage.tx_packets",
        "network.io.usage.tx_errors",
        "network.io.usage.tx_dropped",
    ]
    .into_iter()
    .zip(m.net)
    {
        i(b, n, v);
    }
    i(b, "storage.read_bytes", m.storage_read);
    i(b, "storage.write_bytes", m.storage_write);
}

/// The task's resource attributes, under otelcol's names (old and semantic-convention spellings
/// of the revision and launch type both).
fn task_resource(t: &TaskMetadata) -> Vec<KeyValue> {
    // arn:aws:ecs:region:account:task/[cluster/]task-id
    let (region, account, task_id) = if t.task_arn.starts_with("arn:aws:ecs") {
        let mut parts = t.task_arn.split('/');
        let head: Vec<&str> = parts.next().unwrap_or("").split(':').collect();
        let id = t.task_arn.rsplit('/').next().unwrap_or("");
        (
            head.get(3).copied().unwrap_or(""),
            head.get(4).copied().unwrap_or(""),
            id,
        )
    } else {
        ("", "", "")
    };
    let cluster = if t.cluster.starts_with("arn:aws") {
        t.cluster.rsplit('/').next().unwrap_or("")
    } else {
        t.cluster.as_str()
    };
    let mut out = vec![
        kv_str("aws.ecs.cluster.name", cluster),
        kv_str("aws.ecs.task.arn", &t.task_arn),
        kv_str("aws.ecs.task.id", task_id),
        kv_str("aws.ecs.task.family", &t.family),
        kv_str("aws.ecs.task.version", &t.revision),
        kv_str("aws.ecs.task.revision", &t.revision),
        kv_str("aws.ecs.service.name", &t.service_name),
        kv_str("cloud.availability_zone", &t.availability_zone),
        kv_str("aws.ecs.task.pull_started_at", &t.pull_started_at),
        kv_str("aws.ecs.task.pull_stopped_at", &t.pull_stopped_at),
        kv_str("aws.ecs.task.known_status", &t.known_status),
        kv_str("aws.ecs.task.launch_type", &t.launch_type),
    ];
    let lt = t.launch_type.to_ascii_lowercase();
    if lt == "ec2" || lt == "fargate" {
        out.push(kv_str("aws.ecs.launchtype", lt));
    }
    out.push(kv_str("cloud.region", region));
    out.push(kv_str("cloud.account.id", account));
    out
}

/// Repository and tag of an image reference (`registry/repo:tag@digest`); no tag is `latest`.
fn image_name(image: &str) -> (&str, &str) {
    let name = image.split('@').next().unwrap_or(image);
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(c) => (&name[..slash + c], &name[slash + c + 1..]),
        None => (name, "latest"),
    }
}

fn image_tags(tag: &str) -> KeyValue {
    use vigil_core::otlp::common::v1::{any_value::Value, AnyValue, ArrayValue};
    let values = vec![AnyValue {
        value: Some(Value::StringValue(tag.to_string())),
    }];
    vigil_core::attrs::kv(
        "container.image.tags",
        Value::ArrayValue(ArrayValue { values }),
    )
}

fn container_resource(c: &ContainerMetadata) -> Vec<KeyValue> {
    let (repo, tag) = image_name(&c.image);
    let mut out = vec![
        kv_str("container.name", &c.name),
        kv_str("container.id", &c.docker_id),
        kv_str("aws.ecs.docker.name", &c.docker_name),
        kv_str("container.image.name", repo),
        kv_str("aws.ecs.container.image.id", &c.image_id),
        // otelcol's `EmitV1ContainerConventions` and `DontEmitV0ContainerConventions` gates (beta,
        // on since v0.157): semconv 1.42's `container.image.tags` replaces `container.image.tag`.
        image_tags(tag),
        kv_str("aws.ecs.container.created_at", &c.created_at),
        kv_str("aws.ecs.container.started_at", &c.started_at),
    ];
    if !c.finished_at.is_empty() {
        out.push(kv_str("aws.ecs.container.finished_at", &c.finished_at));
    }
    // otelcol's spelling.
    out.push(kv_str("aws.ecs.container.know_status", &c.known_status));
    if let Some(code) = c.exit_code {
        out.push(kv_i64("aws.ecs.container.exit_code", code));
    }
    out
}

impl EcsScraper {
    async fn get(&self, path: &str) -> Result<Vec<u8>, String> {
        let url = format!("{}{path}", self.base);
        let mut resp = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", error_text(&e)))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: status {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: {}", error_text(&e)))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!(
                    "GET {url}: the answer is larger than {MAX_BODY} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn fetch(
        &self,
    ) -> Result<(TaskMetadata, BTreeMap<String, Option<ContainerStats>>), String> {
        let (task, stats) = tokio::join!(self.get("/task"), self.get("/task/stats"));
        let task: TaskMetadata = serde_json::from_slice(&task?)
            .map_err(|e| format!("{}/task: not task metadata: {e}", self.base))?;
        let stats = serde_json::from_slice(&stats?)
            .map_err(|e| format!("{}/task/stats: not container stats: {e}", self.base))?;
        Ok((task, stats))
    }

    fn convert(
        &self,
        task: &TaskMetadata,
        stats: &BTreeMap<String, Option<ContainerStats>>,
    ) -> Scraped {
        let mut b = Builder::new(
            &METRICS,
            &self.metrics,
            &self.resource_attrs,
            "",
            self.start,
        );
        let task_attrs = task_resource(task);
        let mut total = EcsMetrics::default();
        let mut errors = Vec::new();
        for c in &task.containers {
            let mut attrs = container_resource(c);
            attrs.extend(task_attrs.iter().cloned());
            match stats.get(&c.docker_id) {
                Some(Some(s)) if !s.id.is_empty() => {
                    let m = container_metrics(s, c);
                    record(&mut b, "container.", &m);
                    add_to_task(&mut total, &m);
                    b.emit_for_resource_with(Vec::new(), attrs);
                }
                _ if !c.finished_at.is_empty() && !c.started_at.is_empty() => {
                    // A stopped container: how long it ran.
                    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s);
                    let secs = match (parse(&c.started_at), parse(&c.finished_at)) {
                        (Ok(a), Ok(z)) => (z - a).num_milliseconds() as f64 / 1000.0,
                        _ => {
                            errors.push(format!(
                                "container {}: StartedAt/FinishedAt are not RFC 3339 times",
                                c.name
                            ));
                            0.0
                        }
                    };
                    b.double("container.duration", secs, vec![]);
                    b.emit_for_resource_with(Vec::new(), attrs);
                }
                _ => {}
            }
        }
        task_limits(&mut total, task);
        record(&mut b, "ecs.task.", &total);
        b.emit_for_resource_with(Vec::new(), task_attrs);
        Scraped {
            metrics: b.finish(Vec::new()),
            errors,
        }
    }
}

fn error_text(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[async_trait]
impl Scrape for EcsScraper {
    async fn scrape(&self) -> Scraped {
        match self.fetch().await {
            Ok((task, stats)) => self.convert(&task, &stats),
            Err(e) => Scraped {
                metrics: Vec::new(),
                errors: vec![e],
            },
        }
    }
}
