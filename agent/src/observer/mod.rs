//! Endpoint discovery, as otelcol's `extension/observer`: an observer extension (`k8s_observer`,
//! `host_observer`) keeps the set of endpoints it sees (a pod, a container port, a listening host
//! port, ...) and `receiver_creator` starts receivers for them. An observer publishes its whole set
//! each time it changes ([`Feed`], a `watch` channel), rather than add/remove events, so that a
//! subscriber that diffs against what it started can never start one twice: a re-list after a
//! dropped watch or a `410 Gone` yields the same set, hence no change.

pub mod host;
pub mod k8s;

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;

/// The endpoint types otelcol's observers report, as rules spell them (`type == "pod"`).
pub const ENDPOINT_TYPES: [&str; 8] = [
    "pod",
    "port",
    "pod.container",
    "hostport",
    "container",
    "k8s.node",
    "k8s.service",
    "k8s.ingress",
];

/// One discovered endpoint, as otelcol's `observer.Endpoint`.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// Unique within its observer: `k8s_observer/<pod uid>/<port name>(<port>)`, ...
    pub id: String,
    /// Where a receiver would connect: an IP, `ip:port`, a hostname, a URL.
    pub target: String,
    /// One of [`ENDPOINT_TYPES`].
    pub kind: &'static str,
    /// The type's own fields (`name`, `labels`, `pod`, `port`, `transport`, ...), as otelcol's
    /// `EndpointDetails.Env()` gives them.
    pub details: Map<String, Value>,
}

impl Endpoint {
    /// The map rules and backtick expressions read: the details plus `type`, `endpoint` and `id`.
    pub fn env(&self) -> Value {
        let mut env = self.details.clone();
        env.insert("type".into(), Value::String(self.kind.into()));
        env.insert("endpoint".into(), Value::String(self.target.clone()));
        env.insert("id".into(), Value::String(self.id.clone()));
        Value::Object(env)
    }
}

/// An observer's current endpoints by id.
pub type Endpoints = Arc<BTreeMap<String, Endpoint>>;

/// What an observer extension hands out through `Extension::observer`: its endpoint set, current
/// and to come.
#[derive(Clone)]
pub struct Feed {
    tx: Arc<watch::Sender<Endpoints>>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            tx: Arc::new(watch::channel(Endpoints::default()).0),
        }
    }
}

impl Feed {
    /// Replaces the set; subscribers wake only when it differs from the last one.
    pub fn publish(&self, set: BTreeMap<String, Endpoint>) {
        self.tx.send_if_modified(|cur| {
            if **cur == set {
                false
            } else {
                *cur = Arc::new(set);
                true
            }
        });
    }

    pub fn subscribe(&self) -> watch::Receiver<Endpoints> {
        self.tx.subscribe()
    }
}

/// A string-to-string map as an env value (labels, annotations).
pub(crate) fn string_map<'a>(m: impl IntoIterator<Item = (&'a String, &'a String)>) -> Value {
    Value::Object(
        m.into_iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}
