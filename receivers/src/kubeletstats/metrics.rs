//! From a kubelet summary to otelcol's `kubeletstats` metrics: the metric table (names, units,
//! types and which are on by default, as otelcol's `metadata.yaml` has them), and the mapping of
//! node, pod, container and volume stats onto resources.
//!
//! Values are the summary's as they are, in otelcol's units: CPU nanoseconds and nanocores become
//! seconds and cores. A value the kubelet left out is no data point (never a zero).

use super::config::{Checked, Groups};
use super::summary::{
    ContainerStats, CpuStats, FsStats, InterfaceStats, MemoryStats, NetworkStats, PodStats,
    Summary, VolumeStats,
};
use crate::hostmetrics::config::Toggles;
use std::collections::HashMap;
use vigil_core::otlp::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use vigil_core::otlp::resource::v1::Resource;

/// otelcol's scope name for this receiver, so dashboards keyed on it keep working.
pub const SCOPE: &str =
    "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/kubeletstatsreceiver";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Gauge,
    /// A cumulative Sum; `true` when monotonic.
    Sum(bool),
}

pub struct MetricDef {
    pub name: &'static str,
    pub default_on: bool,
    pub unit: &'static str,
    pub description: &'static str,
    pub shape: Shape,
}

const fn def(
    name: &'static str,
    default_on: bool,
    unit: &'static str,
    description: &'static str,
    shape: Shape,
) -> MetricDef {
    MetricDef {
        name,
        default_on,
        unit,
        description,
        shape,
    }
}

use Shape::{Gauge as G, Sum as S};

/// Every metric vigil emits, as otelcol's `metadata.yaml` defines it.
pub const KNOWN: &[MetricDef] = &[
    def("container.cpu.time", true, "s", "Total cumulative CPU time (sum of all cores) spent by the container/pod/node since its creation", S(true)),
    def("container.cpu.usage", true, "{cpu}", "Total CPU usage (sum of all cores per second) averaged over the sample window", G),
    def("container.filesystem.available", true, "By", "Container filesystem available", G),
    def("container.filesystem.capacity", true, "By", "Container filesystem capacity", G),
    def("container.filesystem.usage", true, "By", "Container filesystem usage", G),
    def("container.memory.available", true, "By", "Container memory available", G),
    def("container.memory.major_page_faults", true, "1", "Container memory major_page_faults", G),
    def("container.memory.page_faults", true, "1", "Container memory page_faults", G),
    def("container.memory.rss", true, "By", "Container memory rss", G),
    def("container.memory.usage", true, "By", "Container memory usage", G),
    def("container.memory.working_set", true, "By", "Container memory working_set", G),
    def("container.uptime", false, "s", "The time since the container started", S(true)),
    def("k8s.container.cpu_limit_utilization", false, "1", "Container cpu utilization as a ratio of the container's limits", G),
    def("k8s.container.cpu_request_utilization", false, "1", "Container cpu utilization as a ratio of the container's requests", G),
    def("k8s.container.ephemeral_storage.usage", false, "By", "Ephemeral storage used by the container.", S(false)),
    def("k8s.container.memory_limit_utilization", false, "1", "Container memory utilization as a ratio of the container's limits", G),
    def("k8s.container.memory_request_utilization", false, "1", "Container memory utilization as a ratio of the container's requests", G),
    def("k8s.pod.cpu_limit_utilization", false, "1", "Pod cpu utilization as a ratio of the pod's total container limits. If any container is missing a limit the metric is not emitted.", G),
    def("k8s.pod.cpu_request_utilization", false, "1", "Pod cpu utilization as a ratio of the pod's total container requests. If any container is missing a request the metric is not emitted.", G),
    def("k8s.pod.memory_limit_utilization", false, "1", "Pod memory utilization as a ratio of the pod's total container limits. If any container is missing a limit the metric is not emitted.", G),
    def("k8s.pod.memory_request_utilization", false, "1", "Pod memory utilization as a ratio of the pod's total container requests. If any container is missing a request the metric is not emitted.", G),
    def("k8s.node.cpu.time", true, "s", "Total cumulative CPU time (sum of all cores) spent by the container/pod/node since its creation", S(true)),
    def("k8s.node.cpu.usage", true, "{cpu}", "Total CPU usage (sum of all cores per second) averaged over the sample window", G),
    def("k8s.node.filesystem.available", true, "By", "Node filesystem available", G),
    def("k8s.node.filesystem.capacity", true, "By", "Node filesystem capacity", G),
    def("k8s.node.filesystem.inode.count", false, "{inode}", "Total number of inodes in the node's root filesystem.", S(false)),
    def("k8s.node.filesystem.inode.free", false, "{inode}", "Number of free inodes in the node's root filesystem.", S(false)),
    def("k8s.node.filesystem.usage", true, "By", "Node filesystem usage", G),
    def("k8s.node.memory.available", true, "By", "Node memory available", G),
    def("k8s.node.memory.major_page_faults", true, "1", "Node memory major_page_faults", G),
    def("k8s.node.memory.page_faults", true, "1", "Node memory page_faults", G),
    def("k8s.node.memory.rss", true, "By", "Node memory rss", G),
    def("k8s.node.memory.usage", true, "By", "Node memory usage", G),
    def("k8s.node.memory.working_set", true, "By", "Node memory working_set", G),
    def("k8s.node.network.errors", true, "1", "Node network errors", S(true)),
    def("k8s.node.network.io", true, "By", "Node network IO", S(true)),
    def("k8s.node.pid.limit", false, "{thread}", "Total number of processes/threads allowed by the operating system on the node.", S(false)),
    def("k8s.node.pid.usage", false, "{thread}", "Total number of existing processes and threads on the node.", S(false)),
    def("k8s.node.uptime", false, "s", "The time since the node started", S(true)),
    def("k8s.pod.cpu.time", true, "s", "Total cumulative CPU time (sum of all cores) spent by the container/pod/node since its creation", S(true)),
    def("k8s.pod.cpu.usage", true, "{cpu}", "Total CPU usage (sum of all cores per second) averaged over the sample window", G),
    def("k8s.pod.filesystem.available", true, "By", "Pod filesystem available", G),
    def("k8s.pod.filesystem.capacity", true, "By", "Pod filesystem capacity", G),
    def("k8s.pod.filesystem.usage", true, "By", "Pod filesystem usage", G),
    def("k8s.pod.memory.available", true, "By", "Pod memory available", G),
    def("k8s.pod.memory.major_page_faults", true, "1", "Pod memory major_page_faults", G),
    def("k8s.pod.memory.page_faults", true, "1", "Pod memory page_faults", G),
    def("k8s.pod.memory.rss", true, "By", "Pod memory rss", G),
    def("k8s.pod.memory.usage", true, "By", "Pod memory usage", G),
    def("k8s.pod.memory.working_set", true, "By", "Pod memory working_set", G),
    def("k8s.pod.network.errors", true, "1", "Pod network errors", S(true)),
    def("k8s.pod.network.io", true, "By", "Pod network IO", S(true)),
    def("k8s.pod.uptime", false, "s", "The time since the pod started", S(true)),
    def("k8s.volume.available", true, "By", "The number of available bytes in the volume.", G),
    def("k8s.volume.capacity", true, "By", "The total capacity in bytes of the volume.", G),
    def("k8s.volume.inodes", true, "1", "The total inodes in the filesystem.", G),
    def("k8s.volume.inodes.free", true, "1", "The free inodes in the filesystem.", G),
    def("k8s.volume.inodes.used", true, "1", "The inodes used by the filesystem. This may not equal inodes - free because filesystem may share inodes with other filesystems.", G),
];

/// The `*_limit_utilization` / `*_request_utilization` metrics: usage over the pod spec's limits or
/// requests, which come from `/pods`.
pub const RESOURCE_RATIOS: &[&str] = &[
    "k8s.container.cpu_limit_utilization",
    "k8s.container.cpu_request_utilization",
    "k8s.container.memory_limit_utilization",
    "k8s.container.memory_request_utilization",
    "k8s.pod.cpu_limit_utilization",
    "k8s.pod.cpu_request_utilization",
    "k8s.pod.memory_limit_utilization",
    "k8s.pod.memory_request_utilization",
];

/// otelcol's optional metrics vigil does not compute yet: the node-utilization ratios need the
/// node's capacity and the system-container ones the node's system containers. Disabling one is
/// accepted; enabling one is a config error, not a silent gap.
pub const NOT_EMITTED: &[&str] = &[
    "k8s.container.cpu.node.utilization",
    "k8s.container.memory.node.utilization",
    "k8s.node.system_container.cpu.time",
    "k8s.node.system_container.cpu.usage",
    "k8s.node.system_container.memory.usage",
    "k8s.node.system_container.memory.working_set",
    "k8s.pod.cpu.node.utilization",
    "k8s.pod.memory.node.utilization",
    "k8s.pod.volume.usage",
];

/// otelcol's resource attributes and whether each is on by default. The deprecated volume-source
/// ones are known (so toggling them is accepted) but never set.
pub const RESOURCE_ATTRIBUTES: &[(&str, bool)] = &[
    ("aws.volume.id", false),
    ("container.id", true),
    ("fs.type", false),
    ("gce.pd.name", false),
    ("glusterfs.endpoints.name", false),
    ("glusterfs.path", false),
    ("k8s.container.name", true),
    ("k8s.namespace.name", true),
    ("k8s.node.name", true),
    ("k8s.node.system_container.name", true),
    ("k8s.persistentvolumeclaim.name", true),
    ("k8s.pod.name", true),
    ("k8s.pod.uid", true),
    ("k8s.volume.name", true),
    ("k8s.volume.type", true),
    ("partition", false),
];

/// What `/pods` adds: container ids by (pod uid, container name), and each volume's type and
/// claim by (pod uid, volume name).
#[derive(Debug, Default)]
pub struct PodsMeta {
    pub container_ids: HashMap<(String, String), String>,
    pub volumes: HashMap<(String, String), VolumeMeta>,
    /// Limits and requests by (pod uid, container name).
    pub resources: HashMap<(String, String), Resources>,
    /// By pod uid: each total is the sum over the pod's containers, present only when every
    /// container sets it (otelcol emits no pod ratio when one container lacks the value).
    pub pod_resources: HashMap<String, Resources>,
}

/// CPU in cores and memory in bytes, from the spec's quantities.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Resources {
    pub cpu_limit: Option<f64>,
    pub cpu_request: Option<f64>,
    pub memory_limit: Option<f64>,
    pub memory_request: Option<f64>,
}

/// A volume's `k8s.volume.type` (when otelcol knows its source) and claim name (for a PVC).
pub type VolumeMeta = (Option<&'static str>, Option<String>);

impl PodsMeta {
    pub fn from_list(list: &super::summary::PodList) -> PodsMeta {
        let mut m = PodsMeta::default();
        for pod in &list.items {
            let uid = &pod.metadata.uid;
            let mut total: Option<Resources> = None;
            for c in &pod.spec.containers {
                let q = |m: &std::collections::BTreeMap<String, String>, k: &str| {
                    m.get(k)
                        .and_then(|v| crate::k8scluster::objects::quantity(v))
                        .filter(|v| *v > 0.0)
                };
                let r = Resources {
                    cpu_limit: q(&c.resources.limits, "cpu"),
                    cpu_request: q(&c.resources.requests, "cpu"),
                    memory_limit: q(&c.resources.limits, "memory"),
                    memory_request: q(&c.resources.requests, "memory"),
                };
                let add = |a: Option<f64>, b: Option<f64>| Some(a? + b?);
                total = Some(match total {
                    None => r,
                    Some(t) => Resources {
                        cpu_limit: add(t.cpu_limit, r.cpu_limit),
                        cpu_request: add(t.cpu_request, r.cpu_request),
                        memory_limit: add(t.memory_limit, r.memory_limit),
                        memory_request: add(t.memory_request, r.memory_request),
                    },
                });
                m.resources.insert((uid.clone(), c.name.clone()), r);
            }
            if let Some(t) = total {
                m.pod_resources.insert(uid.clone(), t);
            }
            for c in pod
                .status
                .container_statuses
                .iter()
                .chain(&pod.status.init_container_statuses)
            {
                if c.container_id.is_empty() {
                    continue;
                }
                // The runtime's scheme (`containerd://`) is not part of the id.
                let id = match c.container_id.split_once("://") {
                    Some((_, id)) => id,
                    None => &c.container_id,
                };
                m.container_ids
                    .insert((uid.clone(), c.name.clone()), id.to_string());
            }
            for v in &pod.spec.volumes {
                let claim = v
                    .persistent_volume_claim
                    .as_ref()
                    .map(|c| c.claim_name.clone());
                m.volumes
                    .insert((uid.clone(), v.name.clone()), (v.type_name(), claim));
            }
        }
        m
    }
}

/// What one conversion needs besides the summary.
pub struct Ctx<'a> {
    pub checked: &'a Checked,
    pub all_node_interfaces: bool,
    pub all_pod_interfaces: bool,
    /// `/pods` metadata, when `extra_metadata_labels` asks for it and it could be had.
    pub pods: Option<&'a PodsMeta>,
    /// Scrape time, Unix nanoseconds.
    pub now: u64,
    /// The receiver's start, Unix nanoseconds: the start time of volume points, which have no
    /// start of their own.
    pub started: u64,
}

/// One resource's metrics being built.
struct Emitter<'a> {
    toggles: &'a Toggles,
    now: u64,
    start: u64,
    metrics: Vec<Metric>,
}

impl Emitter<'_> {
    fn push(&mut self, name: &str, value: number_data_point::Value, attrs: Vec<KeyValue>) {
        if !self.toggles.on(name) {
            return;
        }
        let Some(d) = KNOWN.iter().find(|d| d.name == name) else {
            return;
        };
        let point = NumberDataPoint {
            attributes: attrs,
            start_time_unix_nano: self.start,
            time_unix_nano: self.now,
            value: Some(value),
            ..Default::default()
        };
        if let Some(m) = self.metrics.iter_mut().find(|m| m.name == name) {
            match m.data.as_mut() {
                Some(Data::Gauge(g)) => g.data_points.push(point),
                Some(Data::Sum(s)) => s.data_points.push(point),
                _ => {}
            }
            return;
        }
        let data = match d.shape {
            Shape::Gauge => Data::Gauge(Gauge {
                data_points: vec![point],
            }),
            Shape::Sum(monotonic) => Data::Sum(Sum {
                data_points: vec![point],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: monotonic,
            }),
        };
        self.metrics.push(Metric {
            name: name.to_string(),
            description: d.description.to_string(),
            unit: d.unit.to_string(),
            data: Some(data),
            ..Default::default()
        });
    }

    fn int(&mut self, name: &str, v: Option<u64>) {
        self.int_with(name, v, Vec::new());
    }

    fn int_with(&mut self, name: &str, v: Option<u64>, attrs: Vec<KeyValue>) {
        if let Some(v) = v {
            // The kubelet's counters are uint64; OTLP's ints are int64. Saturate rather than wrap.
            let v = i64::try_from(v).unwrap_or(i64::MAX);
            self.push(name, number_data_point::Value::AsInt(v), attrs);
        }
    }

    fn double(&mut self, name: &str, v: Option<f64>) {
        if let Some(v) = v {
            self.push(name, number_data_point::Value::AsDouble(v), Vec::new());
        }
    }

    fn cpu(&mut self, prefix: &str, s: Option<&CpuStats>) {
        let Some(s) = s else { return };
        self.double(
            &format!("{prefix}.cpu.usage"),
            s.usage_nano_cores.map(|n| n as f64 / 1e9),
        );
        self.double(
            &format!("{prefix}.cpu.time"),
            s.usage_core_nano_seconds.map(|n| n as f64 / 1e9),
        );
    }

    fn memory(&mut self, prefix: &str, s: Option<&MemoryStats>) {
        let Some(s) = s else { return };
        self.int(&format!("{prefix}.memory.available"), s.available_bytes);
        self.int(&format!("{prefix}.memory.usage"), s.usage_bytes);
        self.int(&format!("{prefix}.memory.rss"), s.rss_bytes);
        self.int(&format!("{prefix}.memory.working_set"), s.working_set_bytes);
        self.int(&format!("{prefix}.memory.page_faults"), s.page_faults);
        self.int(
            &format!("{prefix}.memory.major_page_faults"),
            s.major_page_faults,
        );
    }

    /// CPU and memory usage over the spec's limits and requests (`prefix` is `k8s.pod` or
    /// `k8s.container`). Memory is `usageBytes`, as otelcol divides it.
    fn ratios(
        &mut self,
        prefix: &str,
        cpu: Option<&CpuStats>,
        memory: Option<&MemoryStats>,
        r: &Resources,
    ) {
        let cores = cpu.and_then(|c| c.usage_nano_cores).map(|n| n as f64 / 1e9);
        let bytes = memory.and_then(|m| m.usage_bytes).map(|b| b as f64);
        for (name, used, of) in [
            ("cpu_limit_utilization", cores, r.cpu_limit),
            ("cpu_request_utilization", cores, r.cpu_request),
            ("memory_limit_utilization", bytes, r.memory_limit),
            ("memory_request_utilization", bytes, r.memory_request),
        ] {
            if let (Some(u), Some(d)) = (used, of) {
                self.double(&format!("{prefix}.{name}"), Some(u / d));
            }
        }
    }

    fn filesystem(&mut self, prefix: &str, s: Option<&FsStats>) {
        let Some(s) = s else { return };
        self.int(&format!("{prefix}.filesystem.available"), s.available_bytes);
        self.int(&format!("{prefix}.filesystem.capacity"), s.capacity_bytes);
        self.int(&format!("{prefix}.filesystem.usage"), s.used_bytes);
    }

    fn network(&mut self, prefix: &str, s: Option<&NetworkStats>, all: bool) {
        let Some(s) = s else { return };
        let one = [&s.default];
        let ifaces: Vec<&InterfaceStats> = if all {
            s.interfaces.iter().collect()
        } else {
            one.to_vec()
        };
        for i in ifaces {
            // otelcol emits an interface only when it has byte counters.
            if i.rx_bytes.is_none() && i.tx_bytes.is_none() {
                continue;
            }
            let attrs = |dir: &str| vec![kv("interface", &i.name), kv("direction", dir)];
            let io = format!("{prefix}.network.io");
            let errors = format!("{prefix}.network.errors");
            self.int_with(&io, i.rx_bytes, attrs("receive"));
            self.int_with(&io, i.tx_bytes, attrs("transmit"));
            self.int_with(&errors, i.rx_errors, attrs("receive"));
            self.int_with(&errors, i.tx_errors, attrs("transmit"));
        }
    }

    fn uptime(&mut self, name: &str, start: Option<u64>) {
        if let Some(start) = start.filter(|s| *s > 0) {
            self.int(name, Some(self.now.saturating_sub(start) / 1_000_000_000));
        }
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// RFC 3339 (the kubelet's `metav1.Time`) to Unix nanoseconds.
fn parse_time(t: Option<&String>) -> Option<u64> {
    let t = chrono::DateTime::parse_from_rfc3339(t?).ok()?;
    u64::try_from(t.timestamp_nanos_opt()?).ok()
}

/// Resource attributes, keeping only those `resource_attributes` leaves on.
struct Attrs<'a> {
    on: &'a Toggles,
    out: Vec<KeyValue>,
}

impl Attrs<'_> {
    fn set(&mut self, key: &str, value: &str) -> &mut Self {
        if self.on.on(key) && !value.is_empty() {
            self.out.push(kv(key, value));
        }
        self
    }
}

/// The whole summary as otelcol emits it: the node, then for each pod the pod, its containers and
/// its volumes, one resource each.
pub fn convert(summary: &Summary, ctx: &Ctx) -> Vec<ResourceMetrics> {
    let mut out = Vec::new();
    let g: Groups = ctx.checked.groups;
    let toggles = &ctx.checked.toggles;
    let attrs = |f: &dyn Fn(&mut Attrs)| {
        let mut a = Attrs {
            on: &ctx.checked.attributes,
            out: Vec::new(),
        };
        f(&mut a);
        a.out
    };
    let mut emit = |resource: Vec<KeyValue>, e: Emitter| {
        if !e.metrics.is_empty() {
            out.push(resource_metrics(resource, e.metrics));
        }
    };
    let n = &summary.node;
    if g.node {
        let start = parse_time(n.start_time.as_ref());
        let mut e = Emitter {
            toggles,
            now: ctx.now,
            start: start.unwrap_or(ctx.started),
            metrics: Vec::new(),
        };
        e.cpu("k8s.node", n.cpu.as_ref());
        e.memory("k8s.node", n.memory.as_ref());
        e.filesystem("k8s.node", n.fs.as_ref());
        if let Some(fs) = &n.fs {
            e.int("k8s.node.filesystem.inode.count", fs.inodes);
            e.int("k8s.node.filesystem.inode.free", fs.inodes_free);
        }
        e.network("k8s.node", n.network.as_ref(), ctx.all_node_interfaces);
        e.uptime("k8s.node.uptime", start);
        if let Some(r) = &n.rlimit {
            let u = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
            e.int("k8s.node.pid.limit", u(r.maxpid));
            e.int("k8s.node.pid.usage", u(r.curproc));
        }
        emit(
            attrs(&|a| {
                a.set("k8s.node.name", &n.node_name);
            }),
            e,
        );
    }
    for p in &summary.pods {
        let pod_attrs = |a: &mut Attrs, p: &PodStats| {
            a.set("k8s.pod.uid", &p.pod_ref.uid)
                .set("k8s.pod.name", &p.pod_ref.name)
                .set("k8s.namespace.name", &p.pod_ref.namespace);
        };
        let start = parse_time(p.start_time.as_ref());
        if g.pod {
            let mut e = Emitter {
                toggles,
                now: ctx.now,
                start: start.unwrap_or(ctx.started),
                metrics: Vec::new(),
            };
            e.cpu("k8s.pod", p.cpu.as_ref());
            e.memory("k8s.pod", p.memory.as_ref());
            if let Some(r) = ctx.pods.and_then(|m| m.pod_resources.get(&p.pod_ref.uid)) {
                e.ratios("k8s.pod", p.cpu.as_ref(), p.memory.as_ref(), r);
            }
            e.filesystem("k8s.pod", p.ephemeral_storage.as_ref());
            e.network("k8s.pod", p.network.as_ref(), ctx.all_pod_interfaces);
            e.uptime("k8s.pod.uptime", start);
            emit(attrs(&|a| pod_attrs(a, p)), e);
        }
        if g.container {
            for c in &p.containers {
                let (a, e) = container(p, c, ctx, toggles, &pod_attrs);
                emit(a, e);
            }
        }
        if g.volume {
            for v in &p.volumes {
                let (a, e) = volume(p, v, ctx, toggles, &pod_attrs);
                emit(a, e);
            }
        }
    }
    out
}

type PodAttrs<'f> = dyn Fn(&mut Attrs, &PodStats) + 'f;

fn container<'a>(
    p: &PodStats,
    c: &ContainerStats,
    ctx: &Ctx<'a>,
    toggles: &'a Toggles,
    pod_attrs: &PodAttrs,
) -> (Vec<KeyValue>, Emitter<'a>) {
    let start = parse_time(c.start_time.as_ref());
    let mut e = Emitter {
        toggles,
        now: ctx.now,
        start: start.unwrap_or(ctx.started),
        metrics: Vec::new(),
    };
    e.cpu("container", c.cpu.as_ref());
    e.memory("container", c.memory.as_ref());
    if let Some(r) = ctx
        .pods
        .and_then(|m| m.resources.get(&(p.pod_ref.uid.clone(), c.name.clone())))
    {
        e.ratios("k8s.container", c.cpu.as_ref(), c.memory.as_ref(), r);
    }
    e.filesystem("container", c.rootfs.as_ref());
    e.uptime("container.uptime", start);
    let used = |f: &Option<FsStats>| f.as_ref().and_then(|f| f.used_bytes);
    let eph = "k8s.container.ephemeral_storage.usage";
    e.int_with(eph, used(&c.rootfs), vec![kv("fs.type", "rootfs")]);
    e.int_with(eph, used(&c.logs), vec![kv("fs.type", "logs")]);
    let mut a = Attrs {
        on: &ctx.checked.attributes,
        out: Vec::new(),
    };
    pod_attrs(&mut a, p);
    a.set("k8s.container.name", &c.name);
    if ctx.checked.container_id {
        // A container the kubelet's pod list does not (yet) show keeps its metrics, without the id.
        if let Some(id) = ctx.pods.and_then(|m| {
            m.container_ids
                .get(&(p.pod_ref.uid.clone(), c.name.clone()))
        }) {
            a.set("container.id", id);
        }
    }
    (a.out, e)
}

fn volume<'a>(
    p: &PodStats,
    v: &VolumeStats,
    ctx: &Ctx<'a>,
    toggles: &'a Toggles,
    pod_attrs: &PodAttrs,
) -> (Vec<KeyValue>, Emitter<'a>) {
    let mut e = Emitter {
        toggles,
        now: ctx.now,
        start: ctx.started,
        metrics: Vec::new(),
    };
    e.int("k8s.volume.available", v.fs.available_bytes);
    e.int("k8s.volume.capacity", v.fs.capacity_bytes);
    e.int("k8s.volume.inodes", v.fs.inodes);
    e.int("k8s.volume.inodes.free", v.fs.inodes_free);
    e.int("k8s.volume.inodes.used", v.fs.inodes_used);
    let mut a = Attrs {
        on: &ctx.checked.attributes,
        out: Vec::new(),
    };
    pod_attrs(&mut a, p);
    a.set("k8s.volume.name", &v.name);
    if ctx.checked.volume_type {
        if let Some((kind, claim)) = ctx
            .pods
            .and_then(|m| m.volumes.get(&(p.pod_ref.uid.clone(), v.name.clone())))
        {
            if let Some(kind) = kind {
                a.set("k8s.volume.type", kind);
            }
            if let Some(claim) = claim {
                a.set("k8s.persistentvolumeclaim.name", claim);
            }
        }
    }
    (a.out, e)
}

fn resource_metrics(attrs: Vec<KeyValue>, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes: attrs,
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: SCOPE.to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                ..Default::default()
            }),
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}
