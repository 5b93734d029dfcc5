//! From API objects to what the cache keeps ([`Obj`]): each watched kind's values, as otelcol's
//! `k8s_cluster` reads them, and the resource attributes it puts on them. Only these survive the
//! watch; the rest of each object is dropped as it arrives.

use super::config::Checked;
use super::metrics::{Group, Name, Obj, Val, M};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, Namespace, Node, Pod, ReplicationController, ResourceQuota,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;
use vigil_k8s::k8s_openapi;

/// A Kubernetes quantity (`100m`, `128Mi`, `1.5`, `2e3`, `1k`) as a number of base units.
/// Hand-written: k8s-openapi keeps quantities as strings and no maintained crate parses them;
/// the grammar is a decimal number and one suffix.
pub fn quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * mult)
}

/// Go's `Quantity.Value()`: whole base units, rounded up.
fn value(q: &Quantity) -> Option<i64> {
    quantity(&q.0).map(|v| v.ceil() as i64)
}

/// Go's `Quantity.MilliValue()`: thousandths, rounded up.
fn milli(q: &Quantity) -> Option<i64> {
    quantity(&q.0).map(|v| (v * 1000.0 - 1e-6).ceil() as i64)
}

fn uid(md: &ObjectMeta) -> Option<String> {
    md.uid.clone().filter(|u| !u.is_empty())
}

/// A namespaced workload's resource: `k8s.<kind>.name`, `k8s.<kind>.uid` and the namespace.
fn workload(md: &ObjectMeta, name_key: &'static str, uid_key: &'static str) -> Group {
    Group::default()
        .attr(
            "k8s.namespace.name",
            md.namespace.clone().unwrap_or_default(),
        )
        .attr(name_key, md.name.clone().unwrap_or_default())
        .attr(uid_key, md.uid.clone().unwrap_or_default())
}

fn one(uid: String, g: Group) -> Option<Obj> {
    Some(Obj {
        uid,
        groups: vec![g],
    })
}

pub fn deployment(d: Deployment, _: &Checked) -> Option<Obj> {
    let mut g = workload(&d.metadata, "k8s.deployment.name", "k8s.deployment.uid");
    g.int(
        M::DeploymentDesired,
        d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
    );
    g.int(
        M::DeploymentAvailable,
        d.status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0),
    );
    one(uid(&d.metadata)?, g)
}

pub fn replicaset(r: ReplicaSet, _: &Checked) -> Option<Obj> {
    let mut g = workload(&r.metadata, "k8s.replicaset.name", "k8s.replicaset.uid");
    g.int(
        M::ReplicaSetDesired,
        r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
    );
    g.int(
        M::ReplicaSetAvailable,
        r.status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0),
    );
    one(uid(&r.metadata)?, g)
}

pub fn replicationcontroller(r: ReplicationController, _: &Checked) -> Option<Obj> {
    let mut g = workload(
        &r.metadata,
        "k8s.replicationcontroller.name",
        "k8s.replicationcontroller.uid",
    );
    g.int(
        M::RcDesired,
        r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
    );
    g.int(
        M::RcAvailable,
        r.status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0),
    );
    one(uid(&r.metadata)?, g)
}

pub fn daemonset(d: DaemonSet, _: &Checked) -> Option<Obj> {
    let mut g = workload(&d.metadata, "k8s.daemonset.name", "k8s.daemonset.uid");
    let s = d.status.unwrap_or_default();
    g.int(M::DaemonSetCurrentScheduled, s.current_number_scheduled);
    g.int(M::DaemonSetDesiredScheduled, s.desired_number_scheduled);
    g.int(M::DaemonSetMisscheduled, s.number_misscheduled);
    g.int(M::DaemonSetReady, s.number_ready);
    one(uid(&d.metadata)?, g)
}

pub fn statefulset(s: StatefulSet, _: &Checked) -> Option<Obj> {
    let mut g = workload(&s.metadata, "k8s.statefulset.name", "k8s.statefulset.uid");
    if let Some(r) = s.spec.as_ref().and_then(|s| s.replicas) {
        g.int(M::StsDesired, r);
    }
    let st = s.status.unwrap_or_default();
    g.int(M::StsReady, st.ready_replicas.unwrap_or(0));
    g.int(M::StsCurrent, st.current_replicas.unwrap_or(0));
    g.int(M::StsUpdated, st.updated_replicas.unwrap_or(0));
    g.int(M::StsPodAvailable, st.available_replicas.unwrap_or(0));
    one(uid(&s.metadata)?, g)
}

pub fn job(j: Job, _: &Checked) -> Option<Obj> {
    let mut g = workload(&j.metadata, "k8s.job.name", "k8s.job.uid");
    let st = j.status.unwrap_or_default();
    g.int(M::JobActive, st.active.unwrap_or(0));
    g.int(M::JobFailed, st.failed.unwrap_or(0));
    g.int(M::JobSuccessful, st.succeeded.unwrap_or(0));
    if let Some(spec) = &j.spec {
        if let Some(c) = spec.completions {
            g.int(M::JobDesiredSuccessful, c);
        }
        if let Some(p) = spec.parallelism {
            g.int(M::JobMaxParallel, p);
        }
    }
    one(uid(&j.metadata)?, g)
}

pub fn cronjob(c: CronJob, _: &Checked) -> Option<Obj> {
    let mut g = workload(&c.metadata, "k8s.cronjob.name", "k8s.cronjob.uid");
    let active = c
        .status
        .and_then(|s| s.active)
        .map(|a| a.len())
        .unwrap_or(0);
    g.int(M::CronJobActiveJobs, active as i64);
    one(uid(&c.metadata)?, g)
}

pub fn hpa(h: HorizontalPodAutoscaler, _: &Checked) -> Option<Obj> {
    let mut g = workload(&h.metadata, "k8s.hpa.name", "k8s.hpa.uid");
    if let Some(spec) = &h.spec {
        let t = &spec.scale_target_ref;
        g = g
            .attr(
                "k8s.hpa.scaletargetref.apiversion",
                t.api_version.clone().unwrap_or_default(),
            )
            .attr("k8s.hpa.scaletargetref.kind", t.kind.clone())
            .attr("k8s.hpa.scaletargetref.name", t.name.clone());
        g.int(M::HpaMax, spec.max_replicas);
        g.int(M::HpaMin, spec.min_replicas.unwrap_or(1));
    }
    let st = h.status.unwrap_or_default();
    g.int(M::HpaCurrent, st.current_replicas.unwrap_or(0));
    g.int(M::HpaDesired, st.desired_replicas);
    one(uid(&h.metadata)?, g)
}

pub fn namespace(n: Namespace, _: &Checked) -> Option<Obj> {
    let mut g = Group::default()
        .attr(
            "k8s.namespace.name",
            n.metadata.name.clone().unwrap_or_default(),
        )
        .attr(
            "k8s.namespace.uid",
            n.metadata.uid.clone().unwrap_or_default(),
        );
    let phase = n.status.and_then(|s| s.phase).unwrap_or_default();
    // otelcol: 1 for Active, 0 for Terminating (and anything else).
    g.int(M::NamespacePhase, i64::from(phase == "Active"));
    one(uid(&n.metadata)?, g)
}

/// CPU amounts in a quota are millicores, as otelcol sends them.
fn quota_value(resource: &str, q: &Quantity) -> Option<i64> {
    if resource == "cpu" || resource.ends_with(".cpu") {
        milli(q)
    } else {
        value(q)
    }
}

pub fn resourcequota(r: ResourceQuota, _: &Checked) -> Option<Obj> {
    let mut g = workload(
        &r.metadata,
        "k8s.resourcequota.name",
        "k8s.resourcequota.uid",
    );
    let st = r.status.unwrap_or_default();
    for (m, map) in [(M::QuotaHard, st.hard), (M::QuotaUsed, st.used)] {
        for (res, q) in map.unwrap_or_default() {
            if let Some(v) = quota_value(&res, &q) {
                g.point(Name::Known(m), Val::Int(v), Some(("resource", res)));
            }
        }
    }
    one(uid(&r.metadata)?, g)
}

pub fn node(n: Node, checked: &Checked) -> Option<Obj> {
    let st = n.status.unwrap_or_default();
    let info = st.node_info.unwrap_or_default();
    let (runtime, runtime_version) = match info.container_runtime_version.split_once("://") {
        Some((r, v)) => (r.to_string(), v.to_string()),
        None => (info.container_runtime_version.clone(), String::new()),
    };
    let mut g = Group::default()
        .attr("k8s.node.name", n.metadata.name.clone().unwrap_or_default())
        .attr("k8s.node.uid", n.metadata.uid.clone().unwrap_or_default())
        .attr("k8s.kubelet.version", info.kubelet_version)
        .attr("container.runtime", runtime)
        .attr("container.runtime.version", runtime_version)
        .attr("os.description", info.os_image)
        .attr("os.type", info.operating_system);
    let conditions = st.conditions.unwrap_or_default();
    let status_of = |t: &str| match conditions
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| c.status.as_str())
    {
        Some("True") => 1,
        Some("False") => 0,
        _ => -1,
    };
    for (i, c) in checked.conditions.iter().enumerate() {
        g.point(Name::Condition(i), Val::Int(status_of(&c.key)), None);
    }
    for c in &conditions {
        g.point(
            Name::Known(M::NodeCondition),
            Val::Int(status_of(&c.type_)),
            Some(("condition", c.type_.clone())),
        );
    }
    let allocatable = st.allocatable.unwrap_or_default();
    for (i, a) in checked.allocatable.iter().enumerate() {
        let Some(q) = allocatable.get(&a.key) else {
            continue;
        };
        let v = if a.key == "cpu" {
            milli(q).map(|m| Val::Double(m as f64 / 1000.0))
        } else {
            value(q).map(Val::Int)
        };
        if let Some(v) = v {
            g.point(Name::Allocatable(i), v, None);
        }
    }
    one(uid(&n.metadata)?, g)
}

fn phase_value(phase: &str) -> i64 {
    match phase {
        "Pending" => 1,
        "Running" => 2,
        "Succeeded" => 3,
        "Failed" => 4,
        _ => 5,
    }
}

fn status_reason_value(reason: &str) -> i64 {
    match reason {
        "Evicted" => 1,
        "NodeAffinity" => 2,
        "NodeLost" => 3,
        "Shutdown" => 4,
        "UnexpectedAdmissionError" => 5,
        _ => 6,
    }
}

/// `registry.example.com:5000/team/app:1.4.2@sha256:…` → (`registry.example.com:5000/team/app`,
/// `1.4.2`); no tag is `latest`, as otelcol's image parser has it.
pub fn image_name_tag(image: &str) -> (String, String) {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[last..].rfind(':') {
        Some(i) => (
            image[..last + i].to_string(),
            image[last + i + 1..].to_string(),
        ),
        None => (image.to_string(), "latest".to_string()),
    }
}

const CONTAINER_STATES: &[&str] = &["terminated", "running", "waiting"];
const CONTAINER_REASONS: &[&str] = &[
    "ContainerCreating",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "ErrImagePull",
    "ImagePullBackOff",
    "OOMKilled",
    "Completed",
    "Error",
    "ContainerCannotRun",
];

fn state_and_reason(s: &ContainerState) -> (&'static str, Option<&str>) {
    if let Some(w) = &s.waiting {
        ("waiting", w.reason.as_deref())
    } else if let Some(t) = &s.terminated {
        ("terminated", t.reason.as_deref())
    } else {
        ("running", None)
    }
}

fn requests_limits(g: &mut Group, c: &Container) {
    let r = c.resources.clone().unwrap_or_default();
    let get = |m: &Option<BTreeMap<String, Quantity>>, k: &str| {
        m.as_ref().and_then(|m| m.get(k).cloned())
    };
    for (map, cpu, mem, storage, eph) in [
        (
            &r.requests,
            M::ContainerCpuRequest,
            M::ContainerMemoryRequest,
            M::ContainerStorageRequest,
            M::ContainerEphemeralRequest,
        ),
        (
            &r.limits,
            M::ContainerCpuLimit,
            M::ContainerMemoryLimit,
            M::ContainerStorageLimit,
            M::ContainerEphemeralLimit,
        ),
    ] {
        if let Some(v) = get(map, "cpu").and_then(|q| milli(&q)) {
            g.point(Name::Known(cpu), Val::Double(v as f64 / 1000.0), None);
        }
        for (key, m) in [
            ("memory", mem),
            ("storage", storage),
            ("ephemeral-storage", eph),
        ] {
            if let Some(v) = get(map, key).and_then(|q| value(&q)) {
                g.int(m, v);
            }
        }
    }
}

pub fn pod(p: Pod, _: &Checked) -> Option<Obj> {
    let md = &p.metadata;
    let (ns, name, puid) = (
        md.namespace.clone().unwrap_or_default(),
        md.name.clone().unwrap_or_default(),
        uid(md)?,
    );
    let spec = p.spec.unwrap_or_default();
    let st = p.status.unwrap_or_default();
    let node = spec.node_name.clone().unwrap_or_default();
    let base = || {
        Group::default()
            .attr("k8s.namespace.name", ns.clone())
            .attr("k8s.node.name", node.clone())
            .attr("k8s.pod.name", name.clone())
            .attr("k8s.pod.uid", puid.clone())
    };
    let mut pg = base().attr(
        "k8s.pod.qos_class",
        st.qos_class.clone().unwrap_or_default(),
    );
    pg.int(
        M::PodPhase,
        phase_value(st.phase.as_deref().unwrap_or_default()),
    );
    if let Some(r) = st.reason.as_deref().filter(|r| !r.is_empty()) {
        pg.int(M::PodStatusReason, status_reason_value(r));
    }
    let mut groups = vec![pg];
    let statuses = st.container_statuses.unwrap_or_default();
    for c in &spec.containers {
        let status = statuses.iter().find(|s| s.name == c.name);
        let (image, tag) = image_name_tag(c.image.as_deref().unwrap_or_default());
        let cid = status
            .and_then(|s| s.container_id.as_deref())
            .map(|id| id.split_once("://").map(|(_, i)| i).unwrap_or(id))
            .unwrap_or_default()
            .to_string();
        let last_terminated = status
            .and_then(|s| s.last_state.as_ref())
            .and_then(|l| l.terminated.as_ref())
            .and_then(|t| t.reason.clone())
            .unwrap_or_default();
        let mut g = base()
            .attr("k8s.container.name", c.name.clone())
            .attr("container.id", cid)
            .attr("container.image.name", image)
            .attr("container.image.tag", tag)
            .attr(
                "k8s.container.status.last_terminated_reason",
                last_terminated,
            );
        requests_limits(&mut g, c);
        if let Some(s) = status {
            g.int(M::ContainerRestarts, s.restart_count);
            g.int(M::ContainerReady, i64::from(s.ready));
            if let Some(state) = &s.state {
                let (now, reason) = state_and_reason(state);
                for st in CONTAINER_STATES {
                    g.point(
                        Name::Known(M::ContainerStatusState),
                        Val::Int(i64::from(*st == now)),
                        Some(("k8s.container.status.state", st.to_string())),
                    );
                }
                for r in CONTAINER_REASONS {
                    g.point(
                        Name::Known(M::ContainerStatusReason),
                        Val::Int(i64::from(Some(*r) == reason)),
                        Some(("k8s.container.status.reason", r.to_string())),
                    );
                }
            }
        }
        groups.push(g);
    }
    Some(Obj { uid: puid, groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_as_the_api_writes_them() {
        let close =
            |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9 * b.abs().max(1.0));
        assert!(close(quantity("100m"), 0.1));
        assert!(close(quantity("128Mi"), 134_217_728.0));
        assert!(close(quantity("15027548Ki"), 15_388_209_152.0));
        assert!(close(quantity("1.5"), 1.5));
        assert!(close(quantity("2e3"), 2000.0));
        assert!(close(quantity("1k"), 1000.0));
        assert!(close(quantity("4"), 4.0));
        assert!(quantity("12xb").is_none());
        assert!(quantity("").is_none());
        assert_eq!(milli(&Quantity("3920m".into())), Some(3920));
        assert_eq!(milli(&Quantity("2".into())), Some(2000));
        assert_eq!(value(&Quantity("1.5".into())), Some(2));
    }

    #[test]
    fn images_split_into_name_and_tag() {
        assert_eq!(
            image_name_tag("registry.example.com:5000/team/app:1.4.2"),
            ("registry.example.com:5000/team/app".into(), "1.4.2".into())
        );
        assert_eq!(
            image_name_tag("registry.example.com:5000/team/app"),
            ("registry.example.com:5000/team/app".into(), "latest".into())
        );
        assert_eq!(
            image_name_tag("nginx:1.27@sha256:abc"),
            ("nginx".into(), "1.27".into())
        );
    }
}
