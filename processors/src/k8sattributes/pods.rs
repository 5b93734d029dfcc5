//! The pods this agent knows, trimmed to what the config extracts, and the indexes a resource is
//! matched through (IP, UID, container id, namespace and name). A watched Pod object is a few
//! kilobytes; what is kept of it is the handful of strings the rules name, so a node's pods cost
//! little whatever their specs hold.

use super::config::{Compiled, From, Rule};
use k8s_openapi::api::core::v1::Pod;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_k8s::k8s_openapi;

/// Labels and annotations kept of an object, as `(key, value)` pairs.
pub type Fields = (Vec<(String, String)>, Vec<(String, String)>);

/// A pod's controller, from its owner references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    pub kind: String,
    pub name: String,
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    /// Without the runtime's `containerd://` prefix.
    pub id: Option<String>,
    pub image: String,
    pub repo_digest: Option<String>,
}

/// What is kept of one Pod object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub node: String,
    pub hostname: String,
    /// `None` for host-network pods: their IP is the node's and names no pod.
    pub ip: Option<String>,
    pub start_time: Option<String>,
    pub owner: Option<OwnerRef>,
    /// Only the labels and annotations some rule reads.
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    pub containers: Vec<Container>,
}

/// The labels `service.*` falls back to, in order.
const SERVICE_LABELS: &[&str] = &[
    "app.kubernetes.io/instance",
    "app.kubernetes.io/name",
    "app.kubernetes.io/version",
    "app.kubernetes.io/part-of",
];
const OTEL_ANNOTATION: &str = "resource.opentelemetry.io/";

/// Decides which labels and annotations of an object are kept.
#[derive(Debug, Clone)]
pub struct Trimmer {
    pub labels: Vec<Rule>,
    pub annotations: Vec<Rule>,
    pub exclude: Vec<regex::Regex>,
    /// `service.*` or `otel_annotations` read well-known labels and annotations.
    pub well_known: bool,
}

impl Trimmer {
    pub fn new(c: &Compiled, metadata: &[String], otel_annotations: bool) -> Trimmer {
        Trimmer {
            labels: c.labels.clone(),
            annotations: c.annotations.clone(),
            exclude: c.exclude.clone(),
            well_known: otel_annotations || metadata.iter().any(|m| m.starts_with("service.")),
        }
    }

    fn wants(rules: &[Rule], from: From, key: &str) -> bool {
        rules.iter().any(|r| {
            r.from == from
                && (r.key.as_deref() == Some(key)
                    || r.key_regex.as_ref().is_some_and(|re| re.is_match(key)))
        })
    }

    /// The labels and annotations of an object that rules reading `from` use.
    pub fn keep(
        &self,
        from: From,
        labels: Option<&std::collections::BTreeMap<String, String>>,
        annotations: Option<&std::collections::BTreeMap<String, String>>,
    ) -> Fields {
        let pick = |m: Option<&std::collections::BTreeMap<String, String>>,
                    rules: &[Rule],
                    extra: &dyn Fn(&str) -> bool| {
            m.into_iter()
                .flatten()
                .filter(|(k, _)| Self::wants(rules, from, k) || extra(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>()
        };
        let wk = self.well_known && from == From::Pod;
        (
            pick(labels, &self.labels, &|k| wk && SERVICE_LABELS.contains(&k)),
            pick(annotations, &self.annotations, &|k| {
                wk && k.starts_with(OTEL_ANNOTATION)
            }),
        )
    }

    /// A watched Pod trimmed to what is kept; `None` for an excluded pod or one without a UID.
    pub fn pod(&self, p: Pod) -> Option<PodInfo> {
        let md = p.metadata;
        let name = md.name?;
        if self.exclude.iter().any(|re| re.is_match(&name)) {
            return None;
        }
        let uid = md.uid?;
        let (labels, annotations) =
            self.keep(From::Pod, md.labels.as_ref(), md.annotations.as_ref());
        let owner = md
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.controller == Some(true))
            .map(|o| OwnerRef {
                kind: o.kind,
                name: o.name,
                uid: o.uid,
            });
        let spec = p.spec.unwrap_or_default();
        let status = p.status.unwrap_or_default();
        let host_network = spec.host_network.unwrap_or(false);
        let statuses = status.container_statuses.unwrap_or_default();
        let containers = spec
            .containers
            .into_iter()
            .map(|c| {
                let st = statuses.iter().find(|s| s.name == c.name);
                Container {
                    id: st.and_then(|s| s.container_id.as_deref()).map(|id| {
                        id.split_once("://")
                            .map_or(id, |(_, rest)| rest)
                            .to_string()
                    }),
                    repo_digest: st
                        .map(|s| s.image_id.clone())
                        .filter(|d| d.contains("@sha256:")),
                    image: c.image.unwrap_or_default(),
                    name: c.name,
                }
            })
            .collect();
        Some(PodInfo {
            uid,
            namespace: md.namespace.unwrap_or_default(),
            hostname: spec.hostname.unwrap_or_else(|| name.clone()),
            name,
            node: spec.node_name.unwrap_or_default(),
            ip: status.pod_ip.filter(|ip| !ip.is_empty() && !host_network),
            start_time: status.start_time.map(|t| t.0.to_string()),
            owner,
            labels,
            annotations,
            containers,
        })
    }
}

/// What a pod's owners resolved to (a ReplicaSet's Deployment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    pub deployment: Option<(Arc<str>, Arc<str>)>,
}

/// A known pod with its resolved owners.
#[derive(Debug)]
pub struct PodEntry {
    pub info: PodInfo,
    pub workload: Workload,
}

/// The pods and their indexes. A deleted pod stays findable for `grace` (telemetry it sent just
/// before it went still arrives), unless a new pod takes its IP.
pub struct PodTable {
    by_uid: HashMap<String, Arc<PodEntry>>,
    by_ip: HashMap<String, String>,
    by_container: HashMap<String, String>,
    by_name: HashMap<(String, String), String>,
    deleted: VecDeque<(Instant, String)>,
    grace: Duration,
}

impl PodTable {
    pub fn new(grace: Duration) -> PodTable {
        PodTable {
            by_uid: HashMap::new(),
            by_ip: HashMap::new(),
            by_container: HashMap::new(),
            by_name: HashMap::new(),
            deleted: VecDeque::new(),
            grace,
        }
    }

    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_uid.is_empty()
    }

    fn unindex(&mut self, e: &PodEntry) {
        let uid = &e.info.uid;
        if let Some(ip) = &e.info.ip {
            if self.by_ip.get(ip) == Some(uid) {
                self.by_ip.remove(ip);
            }
        }
        for c in &e.info.containers {
            if let Some(id) = &c.id {
                if self.by_container.get(id) == Some(uid) {
                    self.by_container.remove(id);
                }
            }
        }
        let key = (e.info.namespace.clone(), e.info.name.clone());
        if self.by_name.get(&key) == Some(uid) {
            self.by_name.remove(&key);
        }
    }

    /// Adds or replaces a pod; it takes over its IP, containers and name from any older pod.
    pub fn insert(&mut self, e: PodEntry) {
        if let Some(old) = self.by_uid.remove(&e.info.uid) {
            self.unindex(&old);
        }
        let uid = e.info.uid.clone();
        if let Some(ip) = &e.info.ip {
            self.by_ip.insert(ip.clone(), uid.clone());
        }
        for c in &e.info.containers {
            if let Some(id) = &c.id {
                self.by_container.insert(id.clone(), uid.clone());
            }
        }
        self.by_name
            .insert((e.info.namespace.clone(), e.info.name.clone()), uid.clone());
        self.by_uid.insert(uid, Arc::new(e));
    }

    /// Marks a pod deleted; it is forgotten after the grace period.
    pub fn delete(&mut self, uid: &str, now: Instant) {
        if self.by_uid.contains_key(uid) {
            self.deleted.push_back((now + self.grace, uid.to_string()));
        }
        self.purge(now);
    }

    /// After a (re-)list: pods that are not in it were deleted while the watch was away.
    pub fn replace(&mut self, all: Vec<PodEntry>, now: Instant) {
        let listed: HashSet<String> = all.iter().map(|e| e.info.uid.clone()).collect();
        let gone: Vec<String> = self
            .by_uid
            .keys()
            .filter(|u| !listed.contains(*u))
            .cloned()
            .collect();
        for e in all {
            self.insert(e);
        }
        for uid in gone {
            if !self.deleted.iter().any(|(_, u)| *u == uid) {
                self.deleted.push_back((now + self.grace, uid));
            }
        }
        self.purge(now);
    }

    /// Forgets the pods whose grace ended.
    pub fn purge(&mut self, now: Instant) {
        while self.deleted.front().is_some_and(|(at, _)| *at <= now) {
            let Some((_, uid)) = self.deleted.pop_front() else {
                break;
            };
            if let Some(e) = self.by_uid.remove(&uid) {
                self.unindex(&e);
            }
        }
    }

    /// Every known pod.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<PodEntry>> {
        self.by_uid.values()
    }

    pub fn by_uid(&self, uid: &str) -> Option<&Arc<PodEntry>> {
        self.by_uid.get(uid)
    }
    pub fn by_ip(&self, ip: &str) -> Option<&Arc<PodEntry>> {
        self.by_ip.get(ip).and_then(|u| self.by_uid.get(u))
    }
    pub fn by_container(&self, id: &str) -> Option<&Arc<PodEntry>> {
        self.by_container.get(id).and_then(|u| self.by_uid.get(u))
    }
    pub fn by_name(&self, ns: &str, name: &str) -> Option<&Arc<PodEntry>> {
        self.by_name
            .get(&(ns.to_string(), name.to_string()))
            .and_then(|u| self.by_uid.get(u))
    }
}

/// `registry/app:1.2` → (`registry/app`, `1.2`); a digest-only reference has no tag, and a
/// reference with neither is `latest`, as the runtime reads it.
pub fn split_image(image: &str) -> (String, Option<String>) {
    let no_digest = image.split_once('@').map_or(image, |(n, _)| n);
    let has_digest = no_digest.len() != image.len();
    // A colon after the last slash is a tag; one before it is a registry port.
    let slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    match no_digest[slash..].rfind(':') {
        Some(i) => (
            no_digest[..slash + i].to_string(),
            Some(no_digest[slash + i + 1..].to_string()),
        ),
        None if has_digest => (no_digest.to_string(), None),
        None => (no_digest.to_string(), Some("latest".into())),
    }
}

/// The attribute a rule gives a key, or `None` when the rule does not read it.
pub fn tag_for(rule: &Rule, key: &str, kind: &str) -> Option<String> {
    let from = match rule.from {
        From::Pod => "pod",
        From::Namespace => "namespace",
        From::Node => "node",
    };
    let default = || format!("k8s.{from}.{kind}.{key}");
    if let Some(k) = &rule.key {
        return (k == key).then(|| rule.tag_name.clone().unwrap_or_else(default));
    }
    let re = rule.key_regex.as_ref()?;
    let caps = re.captures(key)?;
    Some(match &rule.tag_name {
        Some(t) => {
            let mut out = String::new();
            caps.expand(t, &mut out);
            out
        }
        None => default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_split_as_the_runtime_reads_them() {
        assert_eq!(
            split_image("registry.example.com:5000/team/app:1.4.2"),
            (
                "registry.example.com:5000/team/app".into(),
                Some("1.4.2".into())
            )
        );
        assert_eq!(
            split_image("registry.example.com:5000/app"),
            (
                "registry.example.com:5000/app".into(),
                Some("latest".into())
            )
        );
        assert_eq!(split_image("nginx@sha256:abc"), ("nginx".into(), None));
        assert_eq!(
            split_image("nginx:1.27@sha256:abc"),
            ("nginx".into(), Some("1.27".into()))
        );
    }
}
