//! otelcol's `k8s_cluster` metric table (names, units, types and which are on by default, as its
//! `metadata.yaml` has them), the cached form of an object ([`Obj`]: the resources it reports and
//! their data points), and the emission of a snapshot of the cache as OTLP.
//!
//! An object is turned into its data points once, when its change arrives, so emission is a
//! walk over the cache that applies the `metrics`/`resource_attributes` toggles and stamps the
//! time.

use super::config::Checked;
use vigil_core::otlp::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use vigil_core::otlp::resource::v1::Resource;

/// otelcol's scope name for this receiver, so dashboards keyed on it keep working.
pub const SCOPE: &str =
    "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/k8sclusterreceiver";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Gauge,
    /// A cumulative, non-monotonic Sum (an up-down count).
    UpDown,
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

use Shape::{Gauge as G, UpDown as U};

const LIMIT: &str = "Maximum resource limit set for the container. See https://kubernetes.io/docs/reference/generated/kubernetes-api/v1.23/#resourcerequirements-v1-core for details";
const REQUEST: &str = "Resource requested for the container. See https://kubernetes.io/docs/reference/generated/kubernetes-api/v1.23/#resourcerequirements-v1-core for details";

/// Every metric vigil emits, as otelcol's `metadata.yaml` defines it. [`M`] indexes it.
#[rustfmt::skip]
pub const KNOWN: &[MetricDef] = &[
    def("k8s.container.cpu_request", true, "{cpu}", REQUEST, G),
    def("k8s.container.cpu_limit", true, "{cpu}", LIMIT, G),
    def("k8s.container.memory_request", true, "By", REQUEST, G),
    def("k8s.container.memory_limit", true, "By", LIMIT, G),
    def("k8s.container.storage_request", true, "By", REQUEST, G),
    def("k8s.container.storage_limit", true, "By", LIMIT, G),
    def("k8s.container.ephemeralstorage_request", true, "By", REQUEST, G),
    def("k8s.container.ephemeralstorage_limit", true, "By", LIMIT, G),
    def("k8s.container.restarts", true, "{restart}", "How many times the container has restarted in the recent past. This value is pulled directly from the K8s API and the value can go indefinitely high and be reset to 0 at any time depending on how your kubelet is configured to prune dead containers. It is best to not depend too much on the exact value but rather look at it as either == 0, in which case you can conclude there were no restarts in the recent past, or > 0, in which case you can conclude there were restarts in the recent past, and not try and analyze the value beyond that.", G),
    def("k8s.container.ready", true, "", "Whether a container has passed its readiness probe (0 for no, 1 for yes)", G),
    def("k8s.container.status.state", false, "{container}", "Experimental metric, may experience breaking changes. Describes the number of K8s containers that are currently in a given state. All possible container states will be reported at each time interval to avoid missing metrics. Only the value corresponding to the current state will be non-zero.", U),
    def("k8s.container.status.reason", false, "{container}", "Experimental metric, may experience breaking changes. Describes the number of K8s containers that are currently in a state for a given reason. All possible container state reasons will be reported at each time interval to avoid missing metrics. Only the value corresponding to the current state reason will be non-zero.", U),
    def("k8s.pod.phase", true, "", "Current phase of the pod (1 - Pending, 2 - Running, 3 - Succeeded, 4 - Failed, 5 - Unknown)", G),
    def("k8s.pod.status_reason", false, "", "Current status reason of the pod (1 - Evicted, 2 - NodeAffinity, 3 - NodeLost, 4 - Shutdown, 5 - UnexpectedAdmissionError, 6 - Unknown)", G),
    def("k8s.deployment.desired", true, "{pod}", "Number of desired pods in this deployment", G),
    def("k8s.deployment.available", true, "{pod}", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment", G),
    def("k8s.cronjob.active_jobs", true, "{job}", "The number of actively running jobs for a cronjob", G),
    def("k8s.daemonset.current_scheduled_nodes", true, "{node}", "Number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod", G),
    def("k8s.daemonset.desired_scheduled_nodes", true, "{node}", "Number of nodes that should be running the daemon pod (including nodes currently running the daemon pod)", G),
    def("k8s.daemonset.misscheduled_nodes", true, "{node}", "Number of nodes that are running the daemon pod, but are not supposed to run the daemon pod", G),
    def("k8s.daemonset.ready_nodes", true, "{node}", "Number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready", G),
    def("k8s.hpa.max_replicas", true, "{pod}", "Maximum number of replicas to which the autoscaler can scale up.", G),
    def("k8s.hpa.min_replicas", true, "{pod}", "Minimum number of replicas to which the autoscaler can scale up.", G),
    def("k8s.hpa.current_replicas", true, "{pod}", "Current number of pod replicas managed by this autoscaler.", G),
    def("k8s.hpa.desired_replicas", true, "{pod}", "Desired number of pod replicas managed by this autoscaler.", G),
    def("k8s.job.active_pods", true, "{pod}", "The number of actively running pods for a job", G),
    def("k8s.job.desired_successful_pods", true, "{pod}", "The desired number of successfully finished pods the job should be run with", G),
    def("k8s.job.failed_pods", true, "{pod}", "The number of pods which reached phase Failed for a job", G),
    def("k8s.job.max_parallel_pods", true, "{pod}", "The max desired number of pods the job should run at any given time", G),
    def("k8s.job.successful_pods", true, "{pod}", "The number of pods which reached phase Succeeded for a job", G),
    def("k8s.namespace.phase", true, "", "The current phase of namespaces (1 for active and 0 for terminating)", G),
    def("k8s.replicaset.desired", true, "{pod}", "Number of desired pods in this replicaset", G),
    def("k8s.replicaset.available", true, "{pod}", "Total number of available pods (ready for at least minReadySeconds) targeted by this replicaset", G),
    def("k8s.replication_controller.desired", true, "{pod}", "Number of desired pods in this replication_controller", G),
    def("k8s.replication_controller.available", true, "{pod}", "Total number of available pods (ready for at least minReadySeconds) targeted by this replication_controller", G),
    def("k8s.resource_quota.hard_limit", true, "{resource}", "The upper limit for a particular resource in a specific namespace. Will only be sent if a quota is specified. CPU requests/limits will be sent as millicores", G),
    def("k8s.resource_quota.used", true, "{resource}", "The usage for a particular resource in a specific namespace. Will only be sent if a quota is specified. CPU requests/limits will be sent as millicores", G),
    def("k8s.statefulset.desired_pods", true, "{pod}", "Number of desired pods in the stateful set (the `spec.replicas` field)", G),
    def("k8s.statefulset.ready_pods", true, "{pod}", "Number of pods created by the stateful set that have the `Ready` condition", G),
    def("k8s.statefulset.current_pods", true, "{pod}", "The number of pods created by the StatefulSet controller from the StatefulSet version", G),
    def("k8s.statefulset.updated_pods", true, "{pod}", "Number of pods created by the StatefulSet controller from the StatefulSet version", G),
    def("k8s.statefulset.pod.available", false, "{pod}", "The number of available pods per stateful set (the `status.availableReplicas` field). A pod is available once it has been `Ready` for at least `spec.minReadySeconds`.", U),
    def("k8s.node.condition", false, "{condition}", "The condition of a particular Node.", G),
];

/// Indexes into [`KNOWN`], in its order.
#[allow(non_camel_case_types, dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum M {
    ContainerCpuRequest,
    ContainerCpuLimit,
    ContainerMemoryRequest,
    ContainerMemoryLimit,
    ContainerStorageRequest,
    ContainerStorageLimit,
    ContainerEphemeralRequest,
    ContainerEphemeralLimit,
    ContainerRestarts,
    ContainerReady,
    ContainerStatusState,
    ContainerStatusReason,
    PodPhase,
    PodStatusReason,
    DeploymentDesired,
    DeploymentAvailable,
    CronJobActiveJobs,
    DaemonSetCurrentScheduled,
    DaemonSetDesiredScheduled,
    DaemonSetMisscheduled,
    DaemonSetReady,
    HpaMax,
    HpaMin,
    HpaCurrent,
    HpaDesired,
    JobActive,
    JobDesiredSuccessful,
    JobFailed,
    JobMaxParallel,
    JobSuccessful,
    NamespacePhase,
    ReplicaSetDesired,
    ReplicaSetAvailable,
    RcDesired,
    RcAvailable,
    QuotaHard,
    QuotaUsed,
    StsDesired,
    StsReady,
    StsCurrent,
    StsUpdated,
    StsPodAvailable,
    NodeCondition,
}

impl M {
    pub fn def(self) -> &'static MetricDef {
        &KNOWN[self as usize]
    }
}

/// otelcol's optional metrics vigil does not compute: they need Services, EndpointSlices,
/// PersistentVolumes(Claims) or OpenShift's quotas, which vigil does not watch. Disabling one is
/// accepted; enabling one is a config error, not a silent gap.
pub const NOT_EMITTED: &[&str] = &[
    "k8s.persistentvolume.status.phase",
    "k8s.persistentvolume.storage.capacity",
    "k8s.persistentvolumeclaim.status.phase",
    "k8s.persistentvolumeclaim.storage.capacity",
    "k8s.persistentvolumeclaim.storage.request",
    "k8s.service.endpoint.count",
    "k8s.service.load_balancer.ingress.count",
    "openshift.appliedclusterquota.limit",
    "openshift.appliedclusterquota.used",
    "openshift.clusterquota.limit",
    "openshift.clusterquota.used",
];

/// otelcol's resource attributes: name, on by default, and whether vigil sets it (the others
/// can be named, and only disabled).
#[rustfmt::skip]
pub const RESOURCE_ATTRIBUTES: &[(&str, bool, bool)] = &[
    ("container.id", true, true),
    ("container.image.name", true, true),
    ("container.image.tag", true, true),
    ("container.runtime", false, true),
    ("container.runtime.version", false, true),
    ("k8s.cluster.uid", false, true),
    ("k8s.container.name", true, true),
    ("k8s.container.status.last_terminated_reason", false, true),
    ("k8s.cronjob.name", true, true),
    ("k8s.cronjob.uid", true, true),
    ("k8s.daemonset.name", true, true),
    ("k8s.daemonset.uid", true, true),
    ("k8s.deployment.name", true, true),
    ("k8s.deployment.uid", true, true),
    ("k8s.hpa.name", true, true),
    ("k8s.hpa.scaletargetref.apiversion", false, true),
    ("k8s.hpa.scaletargetref.kind", false, true),
    ("k8s.hpa.scaletargetref.name", false, true),
    ("k8s.hpa.uid", true, true),
    ("k8s.job.name", true, true),
    ("k8s.job.uid", true, true),
    ("k8s.kubelet.version", false, true),
    ("k8s.namespace.name", true, true),
    ("k8s.namespace.uid", true, true),
    ("k8s.node.name", true, true),
    ("k8s.node.uid", true, true),
    ("k8s.persistentvolume.name", true, false),
    ("k8s.persistentvolume.reclaim_policy", false, false),
    ("k8s.persistentvolume.uid", true, false),
    ("k8s.persistentvolumeclaim.name", true, false),
    ("k8s.persistentvolumeclaim.uid", true, false),
    ("k8s.pod.name", true, true),
    ("k8s.pod.qos_class", false, true),
    ("k8s.pod.uid", true, true),
    ("k8s.replicaset.name", true, true),
    ("k8s.replicaset.uid", true, true),
    ("k8s.replicationcontroller.name", true, true),
    ("k8s.replicationcontroller.uid", true, true),
    ("k8s.resourcequota.name", true, true),
    ("k8s.resourcequota.uid", true, true),
    ("k8s.service.name", true, false),
    ("k8s.service.publish_not_ready_addresses", false, false),
    ("k8s.service.traffic_distribution", false, false),
    ("k8s.service.type", true, false),
    ("k8s.service.uid", true, false),
    ("k8s.statefulset.name", true, true),
    ("k8s.statefulset.uid", true, true),
    ("k8s.storageclass.name", true, false),
    ("openshift.clusterquota.name", true, false),
    ("openshift.clusterquota.uid", true, false),
    ("os.description", false, true),
    ("os.type", false, true),
];

/// Which metric a point belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    Known(M),
    /// `k8s.node.condition_<type>`: index into [`Checked::conditions`].
    Condition(usize),
    /// `k8s.node.allocatable_<type>`: index into [`Checked::allocatable`].
    Allocatable(usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val {
    Int(i64),
    Double(f64),
}

/// One data point, with at most one attribute (`resource`, `condition`, a container state).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub name: Name,
    pub value: Val,
    pub attr: Option<(&'static str, String)>,
}

/// One resource an object reports (a pod reports itself and each of its containers).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Group {
    pub resource: Vec<(&'static str, String)>,
    pub points: Vec<Point>,
}

impl Group {
    pub fn attr(mut self, key: &'static str, value: impl Into<String>) -> Group {
        let v = value.into();
        if !v.is_empty() {
            self.resource.push((key, v));
        }
        self
    }
    pub fn int(&mut self, m: M, v: impl Into<i64>) {
        self.points.push(Point {
            name: Name::Known(m),
            value: Val::Int(v.into()),
            attr: None,
        });
    }
    pub fn point(&mut self, name: Name, value: Val, attr: Option<(&'static str, String)>) {
        self.points.push(Point { name, value, attr });
    }
}

/// A cached object: its key (the UID) and what it reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Obj {
    pub uid: String,
    pub groups: Vec<Group>,
}

impl Obj {
    /// Drops the points of disabled metrics and the disabled resource attributes, and frees the
    /// spare capacity, so the cache holds only what a report can carry.
    pub fn prune(mut self, checked: &Checked) -> Obj {
        for g in &mut self.groups {
            g.points.retain(|p| match p.name {
                Name::Known(m) => checked.metrics.on(m.def().name),
                Name::Condition(_) | Name::Allocatable(_) => true,
            });
            g.points.shrink_to_fit();
            g.resource.retain(|(k, _)| checked.attributes.on(k));
            g.resource.shrink_to_fit();
        }
        self.groups.retain(|g| !g.points.is_empty());
        self.groups.shrink_to_fit();
        self
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

/// The metrics of `objs` at time `now` (Unix nanoseconds), one ResourceMetrics per reporting
/// resource, in the cache's order.
/// `cluster_uid`, when known and enabled, goes on every resource (`k8s.cluster.uid`).
pub fn emit<'a>(
    objs: impl Iterator<Item = &'a Obj>,
    checked: &Checked,
    cluster_uid: Option<&str>,
    now: u64,
) -> Vec<ResourceMetrics> {
    let mut out = Vec::new();
    for obj in objs {
        for g in &obj.groups {
            let mut metrics: Vec<Metric> = Vec::new();
            for p in &g.points {
                let (name, unit, description, shape) = match p.name {
                    Name::Known(m) => {
                        let d = m.def();
                        if !checked.metrics.on(d.name) {
                            continue;
                        }
                        (d.name, d.unit, d.description, d.shape)
                    }
                    Name::Condition(i) => match checked.conditions.get(i) {
                        Some(c) => (c.name.as_str(), c.unit, c.description.as_str(), G),
                        None => continue,
                    },
                    Name::Allocatable(i) => match checked.allocatable.get(i) {
                        Some(a) => (a.name.as_str(), a.unit, a.description.as_str(), G),
                        None => continue,
                    },
                };
                let dp = NumberDataPoint {
                    attributes: p.attr.iter().map(|(k, v)| kv(k, v)).collect(),
                    time_unix_nano: now,
                    value: Some(match p.value {
                        Val::Int(i) => number_data_point::Value::AsInt(i),
                        Val::Double(d) => number_data_point::Value::AsDouble(d),
                    }),
                    ..Default::default()
                };
                // Points of one metric (a quota's resources, a node's conditions) share it.
                if let Some(m) = metrics.iter_mut().find(|m| m.name == name) {
                    match &mut m.data {
                        Some(Data::Gauge(g)) => g.data_points.push(dp),
                        Some(Data::Sum(s)) => s.data_points.push(dp),
                        _ => {}
                    }
                    continue;
                }
                let data = match shape {
                    Shape::Gauge => Data::Gauge(Gauge {
                        data_points: vec![dp],
                    }),
                    Shape::UpDown => Data::Sum(Sum {
                        data_points: vec![dp],
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: false,
                    }),
                };
                metrics.push(Metric {
                    name: name.to_string(),
                    description: description.to_string(),
                    unit: unit.to_string(),
                    data: Some(data),
                    ..Default::default()
                });
            }
            if metrics.is_empty() {
                continue;
            }
            let attributes = g
                .resource
                .iter()
                .filter(|(k, _)| checked.attributes.on(k))
                .map(|(k, v)| kv(k, v))
                .chain(cluster_uid.map(|u| kv("k8s.cluster.uid", u)))
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
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_enum_follows_the_table() {
        assert_eq!(
            M::ContainerCpuRequest.def().name,
            "k8s.container.cpu_request"
        );
        assert_eq!(M::PodPhase.def().name, "k8s.pod.phase");
        assert_eq!(M::QuotaUsed.def().name, "k8s.resource_quota.used");
        assert_eq!(M::NodeCondition.def().name, "k8s.node.condition");
        assert_eq!(M::NodeCondition as usize, KNOWN.len() - 1);
    }
}
