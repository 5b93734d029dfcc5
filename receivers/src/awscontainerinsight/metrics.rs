//! From the kubelet's summary and pod list, and the node object from the API server, to Container
//! Insights' metrics: one resource per node, node filesystem, node interface, pod, pod interface,
//! container and container filesystem, each carrying its labels (`ClusterName`, `NodeName`,
//! `Namespace`, `PodName`, `Type`, `Timestamp`, …) as resource attributes, since that is what
//! awsemf's `resource_to_telemetry_conversion` turns into EMF dimensions.
//!
//! Every metric is a one-point gauge, as otelcol's `containerinsight.ConvertToOTLPMetrics` makes
//! them: counts are ints, everything else doubles; units are otelcol's (`Percent`, `Bytes`,
//! `Bytes/Second`, `Count`, `Count/Second`; CPU millicores have none there, so none here). Network
//! and page-fault figures are per-second rates between two collections, so they start at the second.

use super::pods::{Pod, PodList};
use crate::kubeletstats::summary::{
    CpuStats, FsStats, InterfaceStats, MemoryStats, NetworkStats, Summary,
};
use std::collections::HashMap;
use vigil_core::otlp::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use vigil_core::otlp::resource::v1::Resource;

/// otelcol's scope name for this receiver.
pub const SCOPE: &str =
    "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/awscontainerinsightreceiver";

/// Pods and containers one collection converts at most. A node runs at most a few hundred pods
/// (EKS's largest max-pods is 737); past the bound the rest are dropped and counted.
pub const MAX_PODS: usize = 1024;
pub const MAX_CONTAINERS: usize = 4096;

/// What the API server says about this node (kept from the last answer when it fails).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeInfo {
    /// `status.capacity.cpu`, in cores.
    pub cpu_cores: Option<f64>,
    /// `status.capacity.memory`, in bytes.
    pub memory_bytes: Option<f64>,
    /// From `spec.providerID` (`aws:///<zone>/<instance id>`).
    pub instance_id: Option<String>,
    /// `node.kubernetes.io/instance-type`.
    pub instance_type: Option<String>,
    /// eksctl's `alpha.eksctl.io/cluster-name` label, the fallback for `ClusterName`.
    pub cluster_label: Option<String>,
}

impl NodeInfo {
    pub fn from_node(n: &vigil_k8s::k8s_openapi::api::core::v1::Node) -> NodeInfo {
        let cap = n.status.as_ref().and_then(|s| s.capacity.as_ref());
        let q = |k: &str| {
            cap.and_then(|c| c.get(k))
                .and_then(|v| crate::k8scluster::objects::quantity(&v.0))
                .filter(|v| *v > 0.0)
        };
        let labels = n.metadata.labels.as_ref();
        let label = |k: &str| {
            labels
                .and_then(|l| l.get(k))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        let instance_id = n
            .spec
            .as_ref()
            .and_then(|s| s.provider_id.as_deref())
            .filter(|p| p.starts_with("aws://"))
            .and_then(|p| p.rsplit('/').next())
            .filter(|id| id.starts_with("i-"))
            .map(str::to_string);
        NodeInfo {
            cpu_cores: q("cpu"),
            memory_bytes: q("memory"),
            instance_id,
            instance_type: label("node.kubernetes.io/instance-type")
                .or_else(|| label("beta.kubernetes.io/instance-type")),
            cluster_label: label("alpha.eksctl.io/cluster-name"),
        }
    }
}

/// Options from the config that change labels.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    pub cluster_name: String,
    pub prefer_full_pod_name: bool,
    pub full_pod_name: bool,
    /// `add_service_as_attribute`'s map (empty when off): pods named here get `Service`.
    pub services: std::sync::Arc<super::services::ServiceMap>,
}

/// Counters of the previous collection, by entity, for the per-second rates. Rebuilt from the
/// entities of each collection, so it never holds more than one collection's pods and containers.
#[derive(Debug, Default)]
pub struct Rates {
    prev: HashMap<String, (u64, Vec<Option<u64>>)>,
    next: HashMap<String, (u64, Vec<Option<u64>>)>,
}

impl Rates {
    /// Per-second rates of `now`'s counters against the last collection's for `key`; none the
    /// first time, or for a counter that went backwards (a restarted container).
    fn rates(&mut self, key: &str, at_ns: u64, now: Vec<Option<u64>>) -> Vec<Option<f64>> {
        let out = match self.prev.get(key) {
            Some((t, before)) if at_ns > *t && before.len() == now.len() => {
                let secs = (at_ns - t) as f64 / 1e9;
                now.iter()
                    .zip(before)
                    .map(|(n, b)| match (n, b) {
                        (Some(n), Some(b)) if n >= b => Some((n - b) as f64 / secs),
                        _ => None,
                    })
                    .collect()
            }
            _ => vec![None; now.len()],
        };
        self.next.insert(key.to_string(), (at_ns, now));
        out
    }

    /// Ends a collection: what it saw becomes the baseline, everything else is forgotten.
    fn roll(&mut self) {
        self.prev = std::mem::take(&mut self.next);
    }

    #[cfg(test)]
    pub fn entities(&self) -> usize {
        self.prev.len()
    }
}

/// What was dropped by the bounds in one collection.
#[derive(Debug, Default, PartialEq)]
pub struct Dropped {
    pub pods: u64,
    pub containers: u64,
    /// Endpoints objects past [`super::services::MAX_ENDPOINTS`] in one refresh.
    pub endpoints: u64,
}

/// One resource's metrics being built.
struct Out {
    attrs: Vec<(String, String)>,
    metrics: Vec<Metric>,
    now: u64,
}

fn unit_of(name: &str) -> &'static str {
    let m = name
        .trim_start_matches("node_interface_")
        .trim_start_matches("pod_interface_")
        .trim_start_matches("node_")
        .trim_start_matches("pod_")
        .trim_start_matches("container_");
    match m {
        "cpu_utilization"
        | "cpu_reserved_capacity"
        | "cpu_utilization_over_pod_limit"
        | "cpu_utilization_over_container_limit"
        | "memory_utilization"
        | "memory_reserved_capacity"
        | "memory_utilization_over_pod_limit"
        | "memory_utilization_over_container_limit"
        | "filesystem_utilization" => "Percent",
        "memory_usage"
        | "memory_rss"
        | "memory_working_set"
        | "memory_limit"
        | "memory_request"
        | "filesystem_usage"
        | "filesystem_capacity"
        | "filesystem_available" => "Bytes",
        "memory_pgfault" | "memory_pgmajfault" | "network_rx_errors" | "network_tx_errors" => {
            "Count/Second"
        }
        "network_rx_bytes" | "network_tx_bytes" | "network_total_bytes" => "Bytes/Second",
        "filesystem_inodes"
        | "filesystem_inodes_free"
        | "number_of_running_pods"
        | "number_of_running_containers"
        | "number_of_containers"
        | "number_of_container_restarts" => "Count",
        _ => "",
    }
}

impl Out {
    fn new(kind: &str, now: u64, base: &[(String, String)]) -> Out {
        let mut attrs = base.to_vec();
        attrs.push(("Type".into(), kind.into()));
        Out {
            attrs,
            metrics: Vec::new(),
            now,
        }
    }
    fn attr(&mut self, k: &str, v: impl Into<String>) -> &mut Self {
        let v = v.into();
        if !v.is_empty() {
            self.attrs.push((k.into(), v));
        }
        self
    }
    fn point(&mut self, name: &str, v: number_data_point::Value) {
        self.metrics.push(Metric {
            name: name.into(),
            unit: unit_of(name).into(),
            data: Some(Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    time_unix_nano: self.now,
                    value: Some(v),
                    ..Default::default()
                }],
            })),
            ..Default::default()
        });
    }
    fn f(&mut self, name: &str, v: Option<f64>) {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            self.point(name, number_data_point::Value::AsDouble(v));
        }
    }
    fn i(&mut self, name: &str, v: i64) {
        self.point(name, number_data_point::Value::AsInt(v));
    }
    fn finish(mut self, out: &mut Vec<ResourceMetrics>) {
        if self.metrics.is_empty() {
            return;
        }
        // EMF's Timestamp is milliseconds, as a string, as otelcol's tags carry it.
        self.attrs
            .push(("Timestamp".into(), (self.now / 1_000_000).to_string()));
        self.attrs.push(("Version".into(), "0".into()));
        let attributes = self
            .attrs
            .into_iter()
            .map(|(key, v)| KeyValue {
                key,
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(v)),
                }),
                ..Default::default()
            })
            .collect();
        out.push(ResourceMetrics {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics: self.metrics,
                ..Default::default()
            }],
            ..Default::default()
        });
    }

    fn cpu_mem(
        &mut self,
        p: &str,
        cpu: Option<&CpuStats>,
        mem: Option<&MemoryStats>,
    ) -> (Option<f64>, Option<f64>) {
        let usage = cpu.and_then(|c| c.usage_nano_cores).map(|n| n as f64 / 1e6);
        self.f(&format!("{p}cpu_usage_total"), usage);
        let ws = mem.and_then(|m| m.working_set_bytes).map(|v| v as f64);
        self.f(
            &format!("{p}memory_usage"),
            mem.and_then(|m| m.usage_bytes).map(|v| v as f64),
        );
        self.f(
            &format!("{p}memory_rss"),
            mem.and_then(|m| m.rss_bytes).map(|v| v as f64),
        );
        self.f(&format!("{p}memory_working_set"), ws);
        (usage, ws)
    }

    fn faults(&mut self, p: &str, rates: &mut Rates, key: &str, mem: Option<&MemoryStats>) {
        let r = rates.rates(
            &format!("{key}/mem"),
            self.now,
            vec![
                mem.and_then(|m| m.page_faults),
                mem.and_then(|m| m.major_page_faults),
            ],
        );
        self.f(&format!("{p}memory_pgfault"), r[0]);
        self.f(&format!("{p}memory_pgmajfault"), r[1]);
    }

    fn fs(&mut self, p: &str, fs: Option<&FsStats>) {
        let Some(fs) = fs else { return };
        let f = |v: Option<u64>| v.map(|v| v as f64);
        self.f(&format!("{p}filesystem_usage"), f(fs.used_bytes));
        self.f(&format!("{p}filesystem_capacity"), f(fs.capacity_bytes));
        self.f(&format!("{p}filesystem_available"), f(fs.available_bytes));
        self.f(&format!("{p}filesystem_inodes"), f(fs.inodes));
        self.f(&format!("{p}filesystem_inodes_free"), f(fs.inodes_free));
        self.f(
            &format!("{p}filesystem_utilization"),
            ratio(f(fs.used_bytes), f(fs.capacity_bytes)),
        );
    }
}

/// `a / b` in percent, when both are there and `b` is not zero.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b * 100.0),
        _ => None,
    }
}

/// Network rates of one entity: the interfaces' sums for the entity's own resource, and one
/// `<prefix>interface_` resource per interface. Returns the sums (rx, tx, rx errors, tx errors).
/// One interface's rates: rx bytes, tx bytes, rx errors, tx errors.
type IfaceRates = (String, Vec<Option<f64>>);

fn network(
    net: Option<&NetworkStats>,
    rates: &mut Rates,
    key: &str,
    now: u64,
) -> (Vec<IfaceRates>, [Option<f64>; 4]) {
    let Some(net) = net else {
        return (Vec::new(), [None; 4]);
    };
    let ifaces: Vec<&InterfaceStats> = if net.interfaces.is_empty() {
        vec![&net.default]
    } else {
        net.interfaces.iter().collect()
    };
    let mut per = Vec::new();
    let mut sum = [None; 4];
    for i in ifaces {
        let r = rates.rates(
            &format!("{key}/net/{}", i.name),
            now,
            vec![i.rx_bytes, i.tx_bytes, i.rx_errors, i.tx_errors],
        );
        for (s, v) in sum.iter_mut().zip(&r) {
            if let Some(v) = v {
                *s = Some(s.unwrap_or(0.0) + v);
            }
        }
        per.push((i.name.clone(), r));
    }
    (per, sum)
}

fn net_metrics(o: &mut Out, p: &str, r: &[Option<f64>]) {
    o.f(&format!("{p}network_rx_bytes"), r[0]);
    o.f(&format!("{p}network_tx_bytes"), r[1]);
    o.f(&format!("{p}network_rx_errors"), r[2]);
    o.f(&format!("{p}network_tx_errors"), r[3]);
    if let (Some(a), Some(b)) = (r[0], r[1]) {
        o.f(&format!("{p}network_total_bytes"), Some(a + b));
    }
}

/// `PodName` as Container Insights names a pod: its controller's name (the Deployment behind a
/// ReplicaSet, the CronJob behind a Job), else with `prefer_full_pod_name` the pod's own name.
pub fn pod_name(pod: &Pod, prefer_full: bool) -> (String, Vec<(String, String)>) {
    let mut owners = Vec::new();
    for o in &pod.metadata.owner_references {
        let (kind, name) = match o.kind.as_str() {
            // A ReplicaSet's name is its Deployment's plus the pod-template hash.
            "ReplicaSet" => match o.name.rsplit_once('-') {
                Some((d, hash))
                    if !d.is_empty() && hash.chars().all(|c| c.is_ascii_alphanumeric()) =>
                {
                    ("Deployment", d.to_string())
                }
                _ => ("ReplicaSet", o.name.clone()),
            },
            // A CronJob's Job is named `<cronjob>-<scheduled minute>`.
            "Job" => match o.name.rsplit_once('-') {
                Some((c, n))
                    if !c.is_empty() && !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) =>
                {
                    ("CronJob", c.to_string())
                }
                _ => ("Job", o.name.clone()),
            },
            k => (k, o.name.clone()),
        };
        owners.push((kind.to_string(), name));
    }
    // With no controller the pod is named by itself, with or without `prefer_full_pod_name`
    // (otelcol's cadvisor label is the pod's own name too).
    let _ = prefer_full;
    let name = owners
        .first()
        .map_or_else(|| pod.metadata.name.clone(), |(_, n)| n.clone());
    (name, owners)
}

/// Sums of a pod's containers' requests and limits (cores, bytes); a limit only when every
/// container sets it.
#[derive(Debug, Default, Clone, Copy)]
struct Res {
    cpu_req: Option<f64>,
    cpu_lim: Option<f64>,
    mem_req: Option<f64>,
    mem_lim: Option<f64>,
}

fn resources(pod: &Pod) -> (Res, HashMap<&str, Res>) {
    let q = |m: &std::collections::BTreeMap<String, String>, k: &str| {
        m.get(k)
            .and_then(|v| crate::k8scluster::objects::quantity(v))
            .filter(|v| *v > 0.0)
    };
    let mut per = HashMap::new();
    let mut total = Res::default();
    let mut all_cpu_lim = true;
    let mut all_mem_lim = true;
    let add = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, None) => a,
        (None, b) => b,
    };
    for c in &pod.spec.containers {
        let r = Res {
            cpu_req: q(&c.resources.requests, "cpu"),
            cpu_lim: q(&c.resources.limits, "cpu"),
            mem_req: q(&c.resources.requests, "memory"),
            mem_lim: q(&c.resources.limits, "memory"),
        };
        all_cpu_lim &= r.cpu_lim.is_some();
        all_mem_lim &= r.mem_lim.is_some();
        total.cpu_req = add(total.cpu_req, r.cpu_req);
        total.cpu_lim = add(total.cpu_lim, r.cpu_lim);
        total.mem_req = add(total.mem_req, r.mem_req);
        total.mem_lim = add(total.mem_lim, r.mem_lim);
        per.insert(c.name.as_str(), r);
    }
    if !all_cpu_lim {
        total.cpu_lim = None;
    }
    if !all_mem_lim {
        total.mem_lim = None;
    }
    (total, per)
}

/// The `kubernetes` attribute (awsemf's `parse_json_encoded_attr_values` turns it into an object).
fn kubernetes_json(
    node: &str,
    pod: Option<&Pod>,
    ns: &str,
    pod_name: &str,
    owners: &[(String, String)],
    container: Option<(&str, &str)>,
    service: Option<&str>,
) -> String {
    let mut k = serde_json::Map::new();
    k.insert("host".into(), node.into());
    k.insert("namespace_name".into(), ns.into());
    k.insert("pod_name".into(), pod_name.into());
    // otelcol copies the `Service` label into the blob as well.
    if let Some(s) = service {
        k.insert("service_name".into(), s.into());
    }
    if let Some(p) = pod {
        k.insert("pod_id".into(), p.metadata.uid.clone().into());
        if !p.metadata.labels.is_empty() {
            k.insert("labels".into(), serde_json::json!(p.metadata.labels));
        }
    }
    if !owners.is_empty() {
        let o: Vec<_> = owners
            .iter()
            .map(|(kind, name)| serde_json::json!({"owner_kind": kind, "owner_name": name}))
            .collect();
        k.insert("pod_owners".into(), o.into());
    }
    if let Some((name, id)) = container {
        k.insert("container_name".into(), name.into());
        if !id.is_empty() {
            k.insert(
                "containerd".into(),
                serde_json::json!({ "container_id": id }),
            );
        }
    }
    serde_json::Value::Object(k).to_string()
}

/// One collection, converted. `rates` carries counters from the last one.
pub fn convert(
    summary: &Summary,
    pods: &PodList,
    node: &NodeInfo,
    labels: &Labels,
    rates: &mut Rates,
    now: u64,
) -> (Vec<ResourceMetrics>, Dropped) {
    let mut out = Vec::new();
    let mut dropped = Dropped::default();
    let node_name = summary.node.node_name.clone();
    let cluster = if labels.cluster_name.is_empty() {
        node.cluster_label.clone().unwrap_or_default()
    } else {
        labels.cluster_name.clone()
    };
    let mut base: Vec<(String, String)> = Vec::new();
    for (k, v) in [
        ("ClusterName", Some(cluster)),
        ("NodeName", Some(node_name.clone())),
        ("InstanceId", node.instance_id.clone()),
        ("InstanceType", node.instance_type.clone()),
    ] {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            base.push((k.into(), v));
        }
    }
    let node_cpu = node.cpu_cores.map(|c| c * 1000.0);
    let node_mem = node.memory_bytes;
    let by_uid: HashMap<&str, &Pod> = pods
        .items
        .iter()
        .map(|p| (p.metadata.uid.as_str(), p))
        .collect();

    // Requests of the pods that hold their node's resources (not the finished ones), as the
    // scheduler counts them.
    let (mut req_cpu, mut req_mem) = (0.0, 0.0);
    let (mut running_pods, mut running_containers) = (0i64, 0i64);
    for p in &pods.items {
        if matches!(p.status.phase.as_str(), "Succeeded" | "Failed") {
            continue;
        }
        let (r, _) = resources(p);
        req_cpu += r.cpu_req.unwrap_or(0.0) * 1000.0;
        req_mem += r.mem_req.unwrap_or(0.0);
        if p.status.phase == "Running" {
            running_pods += 1;
            running_containers += p
                .status
                .container_statuses
                .iter()
                .filter(|c| c.state.running.is_some())
                .count() as i64;
        }
    }

    // The node.
    let mut o = Out::new("Node", now, &base);
    o.attr("Sources", r#"["kubelet","pod","apiserver","calculated"]"#);
    o.attr(
        "kubernetes",
        serde_json::json!({ "host": node_name }).to_string(),
    );
    let (cpu, ws) = o.cpu_mem(
        "node_",
        summary.node.cpu.as_ref(),
        summary.node.memory.as_ref(),
    );
    o.faults("node_", rates, "node", summary.node.memory.as_ref());
    o.f("node_cpu_limit", node_cpu);
    o.f("node_cpu_utilization", ratio(cpu, node_cpu));
    o.f("node_memory_limit", node_mem);
    o.f("node_memory_utilization", ratio(ws, node_mem));
    if node_cpu.is_some() {
        o.f("node_cpu_request", Some(req_cpu));
        o.f("node_cpu_reserved_capacity", ratio(Some(req_cpu), node_cpu));
    }
    if node_mem.is_some() {
        o.f("node_memory_request", Some(req_mem));
        o.f(
            "node_memory_reserved_capacity",
            ratio(Some(req_mem), node_mem),
        );
    }
    let (ifaces, sum) = network(summary.node.network.as_ref(), rates, "node", now);
    net_metrics(&mut o, "node_", &sum);
    o.i("node_number_of_running_pods", running_pods);
    o.i("node_number_of_running_containers", running_containers);
    o.finish(&mut out);
    for (name, r) in ifaces {
        let mut o = Out::new("NodeNet", now, &base);
        o.attr("interface", name);
        net_metrics(&mut o, "node_interface_", &r);
        o.finish(&mut out);
    }
    let mut o = Out::new("NodeFS", now, &base);
    o.fs("node_", summary.node.fs.as_ref());
    o.finish(&mut out);

    // Pods and their containers.
    let mut containers_seen = 0usize;
    for (n, ps) in summary.pods.iter().enumerate() {
        if n >= MAX_PODS {
            dropped.pods += (summary.pods.len() - n) as u64;
            break;
        }
        let pod = by_uid.get(ps.pod_ref.uid.as_str()).copied();
        let ns = ps.pod_ref.namespace.clone();
        let (pname, owners) = match pod {
            Some(p) => pod_name(p, labels.prefer_full_pod_name),
            None => (ps.pod_ref.name.clone(), Vec::new()),
        };
        let mut pbase = base.clone();
        pbase.push(("Namespace".into(), ns.clone()));
        pbase.push(("PodName".into(), pname.clone()));
        pbase.push(("K8sPodName".into(), ps.pod_ref.name.clone()));
        pbase.push(("PodId".into(), ps.pod_ref.uid.clone()));
        if labels.full_pod_name {
            pbase.push(("FullPodName".into(), ps.pod_ref.name.clone()));
        }
        // Every resource under the pod (Pod, PodNet, Container, ContainerFS) carries
        // K8sPodName, which is what otelcol's service store keys `Service` on.
        let service = labels
            .services
            .get(&(ns.clone(), ps.pod_ref.name.clone()))
            .map(String::as_str);
        if let Some(s) = service {
            pbase.push(("Service".into(), s.to_string()));
        }
        let (res, per) = pod.map(resources).unwrap_or_default();
        let key = format!("pod/{}", ps.pod_ref.uid);

        let mut o = Out::new("Pod", now, &pbase);
        if let Some(p) = pod {
            o.attr("pod_status", p.status.phase.clone());
        }
        o.attr("Sources", r#"["kubelet","pod","calculated"]"#);
        o.attr(
            "kubernetes",
            kubernetes_json(
                &node_name,
                pod,
                &ns,
                &ps.pod_ref.name,
                &owners,
                None,
                service,
            ),
        );
        let (cpu, ws) = o.cpu_mem("pod_", ps.cpu.as_ref(), ps.memory.as_ref());
        o.faults("pod_", rates, &key, ps.memory.as_ref());
        o.f("pod_cpu_utilization", ratio(cpu, node_cpu));
        o.f("pod_memory_utilization", ratio(ws, node_mem));
        let milli = |v: Option<f64>| v.map(|v| v * 1000.0);
        o.f("pod_cpu_request", milli(res.cpu_req));
        o.f("pod_cpu_limit", milli(res.cpu_lim));
        o.f(
            "pod_cpu_reserved_capacity",
            ratio(milli(res.cpu_req), node_cpu),
        );
        o.f(
            "pod_cpu_utilization_over_pod_limit",
            ratio(cpu, milli(res.cpu_lim)),
        );
        o.f("pod_memory_request", res.mem_req);
        o.f("pod_memory_limit", res.mem_lim);
        o.f("pod_memory_reserved_capacity", ratio(res.mem_req, node_mem));
        o.f(
            "pod_memory_utilization_over_pod_limit",
            ratio(ws, res.mem_lim),
        );
        let (ifaces, sum) = network(ps.network.as_ref(), rates, &key, now);
        net_metrics(&mut o, "pod_", &sum);
        if let Some(p) = pod {
            let st = &p.status.container_statuses;
            o.i("pod_number_of_containers", p.spec.containers.len() as i64);
            o.i(
                "pod_number_of_running_containers",
                st.iter().filter(|c| c.state.running.is_some()).count() as i64,
            );
            o.i(
                "pod_number_of_container_restarts",
                st.iter().map(|c| i64::from(c.restart_count)).sum(),
            );
        }
        o.finish(&mut out);
        for (name, r) in ifaces {
            let mut o = Out::new("PodNet", now, &pbase);
            o.attr("interface", name);
            net_metrics(&mut o, "pod_interface_", &r);
            o.finish(&mut out);
        }

        for c in &ps.containers {
            if containers_seen >= MAX_CONTAINERS {
                dropped.containers += 1;
                continue;
            }
            containers_seen += 1;
            let status = pod.and_then(|p| {
                p.status
                    .container_statuses
                    .iter()
                    .find(|s| s.name == c.name)
            });
            let id = status
                .map(|s| match s.container_id.split_once("://") {
                    Some((_, id)) => id.to_string(),
                    None => s.container_id.clone(),
                })
                .unwrap_or_default();
            let r = per.get(c.name.as_str()).copied().unwrap_or_default();
            let mut cbase = pbase.clone();
            cbase.push(("ContainerName".into(), c.name.clone()));
            let mut o = Out::new("Container", now, &cbase);
            o.attr("ContainerId", id.clone());
            if let Some(s) = status {
                let (state, reason) = if s.state.running.is_some() {
                    ("Running", String::new())
                } else if let Some(w) = &s.state.waiting {
                    ("Waiting", w.reason.clone())
                } else if let Some(t) = &s.state.terminated {
                    ("Terminated", t.reason.clone())
                } else {
                    ("", String::new())
                };
                o.attr("container_status", state);
                o.attr("container_status_reason", reason);
                if let Some(t) = &s.last_state.terminated {
                    o.attr("container_last_termination_reason", t.reason.clone());
                }
            }
            o.attr("Sources", r#"["kubelet","pod","calculated"]"#);
            o.attr(
                "kubernetes",
                kubernetes_json(
                    &node_name,
                    pod,
                    &ns,
                    &ps.pod_ref.name,
                    &owners,
                    Some((&c.name, &id)),
                    service,
                ),
            );
            let ckey = format!("{key}/{}", c.name);
            let (cpu, ws) = o.cpu_mem("container_", c.cpu.as_ref(), c.memory.as_ref());
            o.faults("container_", rates, &ckey, c.memory.as_ref());
            o.f("container_cpu_utilization", ratio(cpu, node_cpu));
            o.f("container_memory_utilization", ratio(ws, node_mem));
            o.f("container_cpu_request", milli(r.cpu_req));
            o.f("container_cpu_limit", milli(r.cpu_lim));
            o.f(
                "container_cpu_utilization_over_container_limit",
                ratio(cpu, milli(r.cpu_lim)),
            );
            o.f("container_memory_request", r.mem_req);
            o.f("container_memory_limit", r.mem_lim);
            o.f(
                "container_memory_utilization_over_container_limit",
                ratio(ws, r.mem_lim),
            );
            if let Some(s) = status {
                o.i("number_of_container_restarts", i64::from(s.restart_count));
            }
            o.finish(&mut out);
            let mut o = Out::new("ContainerFS", now, &cbase);
            o.fs("container_", c.rootfs.as_ref());
            o.finish(&mut out);
        }
    }
    rates.roll();
    (out, dropped)
}
