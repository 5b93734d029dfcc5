//! A Kubernetes API-server double, for tests only: no cluster can run on the machines that build
//! and test vigil, so the components that read the API (`k8sattributes`, resourcedetection's
//! `k8snode`/`k8s_api`, `k8s_cluster`) are tested against this. It speaks the real list/watch protocol as the
//! API server does: every change bumps one resource version; a list answers with the version it
//! reflects (and pages with `limit`/`continue`); `?watch=true&resourceVersion=N` replays the
//! events after N and then streams ADDED/MODIFIED/DELETED as they happen, with BOOKMARK events
//! when asked; a watch from a version older than the kept history gets the API server's
//! `410 Gone` (an ERROR event whose Status has reason `Expired`), which forces a re-list; and a
//! test can cut every open watch mid-stream, as a restarting API server or a load balancer does.
//! Objects are JSON shaped like a real cluster's (built by [`pod`], [`replicaset`], [`node`],
//! [`namespace`], [`job`], and for `k8s_cluster` [`deployment`], [`daemonset`], [`statefulset`],
//! [`cronjob`], [`resourcequota`], [`replicationcontroller`], [`hpa`]), and `Accept: ...;as=PartialObjectMetadata` gets metadata only.
//! For the cluster-level receivers it also serves Events ([`event`], [`event_v1`]), Leases and any
//! custom resource ([`Resource`], [`custom`]); POST creates and PUT replaces with the API server's
//! optimistic concurrency (409 `Conflict` for a stale `resourceVersion`, 409 `AlreadyExists`),
//! which Lease-based leader election relies on; and discovery (`/api`, `/api/v1`, `/apis`,
//! `/apis/<group>/<version>`) lists every kind it serves.
//!
//! It runs on its own thread and runtime, so sync and async tests use it the same way.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// The resources the double serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Pod,
    Node,
    Namespace,
    ReplicaSet,
    Job,
    Deployment,
    DaemonSet,
    StatefulSet,
    CronJob,
    ResourceQuota,
    ReplicationController,
    HorizontalPodAutoscaler,
    /// core/v1 Events (what `k8s_events` reads, and `k8sobjects` with `name: events`).
    Event,
    /// events.k8s.io/v1 Events (`k8sobjects` with `group: events.k8s.io`).
    EventV1,
    /// coordination.k8s.io/v1 Leases (`k8s_leader_elector`).
    Lease,
    /// Any other resource, a custom one included, described by a [`Resource`].
    Other(&'static Resource),
}

/// A resource the double serves besides its built-in kinds (a CRD's, say), for [`Kind::Other`].
/// Discovery lists it once an object of it has been stored or it was [`K8sApi::register`]ed.
#[derive(Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resource {
    /// `group/version`, or `v1` for the core group.
    pub api_version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

/// Every built-in kind, in the order discovery lists them (add a new kind here too).
const BUILTIN: &[Kind] = &[
    Kind::Pod,
    Kind::Node,
    Kind::Namespace,
    Kind::ResourceQuota,
    Kind::ReplicationController,
    Kind::Event,
    Kind::ReplicaSet,
    Kind::Deployment,
    Kind::DaemonSet,
    Kind::StatefulSet,
    Kind::Job,
    Kind::CronJob,
    Kind::HorizontalPodAutoscaler,
    Kind::EventV1,
    Kind::Lease,
];

impl Kind {
    fn list_kind(self) -> String {
        format!("{}List", self.kind())
    }
    fn kind(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Node => "Node",
            Kind::Namespace => "Namespace",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Job => "Job",
            Kind::Deployment => "Deployment",
            Kind::DaemonSet => "DaemonSet",
            Kind::StatefulSet => "StatefulSet",
            Kind::CronJob => "CronJob",
            Kind::ResourceQuota => "ResourceQuota",
            Kind::ReplicationController => "ReplicationController",
            Kind::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
            Kind::Event | Kind::EventV1 => "Event",
            Kind::Lease => "Lease",
            Kind::Other(r) => r.kind,
        }
    }
    fn api_version(self) -> &'static str {
        match self {
            Kind::Pod
            | Kind::Node
            | Kind::Namespace
            | Kind::ResourceQuota
            | Kind::ReplicationController => "v1",
            Kind::ReplicaSet | Kind::Deployment | Kind::DaemonSet | Kind::StatefulSet => "apps/v1",
            Kind::Job | Kind::CronJob => "batch/v1",
            Kind::HorizontalPodAutoscaler => "autoscaling/v2",
            Kind::Event => "v1",
            Kind::EventV1 => "events.k8s.io/v1",
            Kind::Lease => "coordination.k8s.io/v1",
            Kind::Other(r) => r.api_version,
        }
    }
    fn namespaced(self) -> bool {
        match self {
            Kind::Other(r) => r.namespaced,
            k => !matches!(k, Kind::Node | Kind::Namespace),
        }
    }
    /// The plural in paths and discovery.
    fn plural(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::Node => "nodes",
            Kind::Namespace => "namespaces",
            Kind::ReplicaSet => "replicasets",
            Kind::Job => "jobs",
            Kind::Deployment => "deployments",
            Kind::DaemonSet => "daemonsets",
            Kind::StatefulSet => "statefulsets",
            Kind::CronJob => "cronjobs",
            Kind::ResourceQuota => "resourcequotas",
            Kind::ReplicationController => "replicationcontrollers",
            Kind::HorizontalPodAutoscaler => "horizontalpodautoscalers",
            Kind::Event | Kind::EventV1 => "events",
            Kind::Lease => "leases",
            Kind::Other(r) => r.plural,
        }
    }
    fn from_path(group: &str, plural: &str) -> Option<Kind> {
        match (group, plural) {
            ("v1", "pods") => Some(Kind::Pod),
            ("v1", "nodes") => Some(Kind::Node),
            ("v1", "namespaces") => Some(Kind::Namespace),
            ("apps/v1", "replicasets") => Some(Kind::ReplicaSet),
            ("batch/v1", "jobs") => Some(Kind::Job),
            ("apps/v1", "deployments") => Some(Kind::Deployment),
            ("apps/v1", "daemonsets") => Some(Kind::DaemonSet),
            ("apps/v1", "statefulsets") => Some(Kind::StatefulSet),
            ("batch/v1", "cronjobs") => Some(Kind::CronJob),
            ("v1", "resourcequotas") => Some(Kind::ResourceQuota),
            ("v1", "replicationcontrollers") => Some(Kind::ReplicationController),
            ("autoscaling/v2", "horizontalpodautoscalers") => Some(Kind::HorizontalPodAutoscaler),
            ("v1", "events") => Some(Kind::Event),
            ("events.k8s.io/v1", "events") => Some(Kind::EventV1),
            ("coordination.k8s.io/v1", "leases") => Some(Kind::Lease),
            _ => None,
        }
    }
}

type Key = (Kind, String, String);

#[derive(Clone)]
enum Live {
    Event {
        kind: Kind,
        rv: u64,
        etype: &'static str,
        obj: Arc<Value>,
    },
    Bookmark(u64),
}

struct State {
    rv: u64,
    /// Objects as stored; a list or get serializes them again.
    objects: BTreeMap<Key, Arc<Value>>,
    /// The events a watch can start after; older versions answer `410 Gone`.
    history: VecDeque<(u64, Kind, &'static str, Arc<Value>)>,
    /// A watch from a version below this has lost events.
    oldest: u64,
    max_history: usize,
    requests: Vec<String>,
    /// Resources besides the built-in kinds, listed by discovery.
    custom: Vec<&'static Resource>,
}

struct Shared {
    state: Mutex<State>,
    live: broadcast::Sender<Live>,
    /// Bumped to cut every open watch.
    cut: watch::Sender<u64>,
    /// When set, every request with a path containing it answers 500 (a failing API).
    fail: Mutex<Option<String>>,
}

/// A running API-server double; stops when dropped.
pub struct K8sApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: std::sync::mpsc::Sender<()>,
}

impl Default for K8sApi {
    fn default() -> Self {
        Self::start()
    }
}

impl K8sApi {
    /// Starts the double on a free loopback port.
    pub fn start() -> K8sApi {
        let (live, _) = broadcast::channel(65_536);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                rv: 1000,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                oldest: 0,
                max_history: 100_000,
                requests: Vec::new(),
                custom: Vec::new(),
            }),
            live,
            cut: watch::channel(0).0,
            fail: Mutex::new(None),
        });
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime for the API double");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind the API double");
                let _ = addr_tx.send(listener.local_addr().expect("local addr"));
                let app = axum::Router::new().fallback(move |req: Request| {
                    let s = Arc::clone(&s);
                    async move { handle(s, req).await }
                });
                let server = axum::serve(listener, app);
                let stop = async move {
                    // The sender lives in K8sApi; the double stops when it is dropped.
                    let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
                };
                let _ = server.with_graceful_shutdown(stop).await;
            });
        });
        let addr = addr_rx.recv().expect("API double address");
        K8sApi {
            addr,
            shared,
            _stop: stop_tx,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig that points at the double and returns its path.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let p = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster:\n    server: {}\n\
             contexts:\n- name: double\n  context:\n    cluster: double\n    user: double\n\
             current-context: double\nusers:\n- name: double\n  user: {{}}\n",
            self.url()
        );
        std::fs::write(&p, text).expect("write kubeconfig");
        p
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds or replaces an object (its kind from `kind`, its key from its metadata) and tells the
    /// open watches; returns the new resource version.
    pub fn apply(&self, kind: Kind, obj: Value) -> u64 {
        store(&self.shared, kind, obj).0
    }

    /// Lists `r` in discovery before any object of it exists (a CRD just installed).
    pub fn register(&self, r: &'static Resource) {
        let mut st = self.lock();
        if !st.custom.contains(&r) {
            st.custom.push(r);
        }
    }

    /// The stored object, as a get returns it.
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        let ns = if kind.namespaced() { namespace } else { "" };
        self.lock()
            .objects
            .get(&(kind, ns.to_string(), name.to_string()))
            .map(|o| (**o).clone())
    }

    /// Adds many objects at once without events, as if they existed before any watch began
    /// (a cluster's 300k ReplicaSets); watches from before this version must re-list.
    pub fn preload(&self, kind: Kind, objs: impl IntoIterator<Item = Value>) {
        let mut st = self.lock();
        for mut obj in objs {
            st.rv += 1;
            obj["kind"] = json!(kind.kind());
            obj["apiVersion"] = json!(kind.api_version());
            obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
            let key = key_of(kind, &obj);
            st.objects.insert(key, Arc::new(obj));
        }
        st.history.clear();
        st.oldest = st.rv;
    }

    /// Deletes an object; the watches get a DELETED event with its last state.
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) -> bool {
        let mut st = self.lock();
        let key = (kind, namespace.to_string(), name.to_string());
        let Some(old) = st.objects.remove(&key) else {
            return false;
        };
        st.rv += 1;
        let rv = st.rv;
        let mut obj = (*old).clone();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let obj = Arc::new(obj);
        record(&mut st, rv, kind, "DELETED", &obj);
        let _ = self.shared.live.send(Live::Event {
            kind,
            rv,
            etype: "DELETED",
            obj,
        });
        true
    }

    /// Removes an object without telling anyone, as a change missed while a watch was down
    /// and already compacted away: only a re-list finds it gone.
    pub fn delete_silently(&self, kind: Kind, namespace: &str, name: &str) -> bool {
        let mut st = self.lock();
        let key = (kind, namespace.to_string(), name.to_string());
        let gone = st.objects.remove(&key).is_some();
        st.rv += 1;
        gone
    }

    /// Sends a BOOKMARK with the current version to every watch that allowed them.
    pub fn bookmark(&self) {
        let rv = self.lock().rv;
        let _ = self.shared.live.send(Live::Bookmark(rv));
    }

    /// Cuts every open watch mid-stream (the connection breaks); clients watch again from the
    /// last version they saw.
    pub fn drop_watches(&self) {
        self.shared.cut.send_modify(|g| *g += 1);
    }

    /// Forgets the event history (etcd compaction) and cuts every watch: a client watching again
    /// from its last version gets `410 Gone` and must re-list.
    pub fn compact(&self) {
        {
            let mut st = self.lock();
            st.history.clear();
            st.rv += 1;
            st.oldest = st.rv;
        }
        self.drop_watches();
    }

    /// Makes requests whose path contains `needle` answer 500 until [`K8sApi::heal`].
    pub fn fail(&self, needle: &str) {
        *self.shared.fail.lock().unwrap_or_else(|e| e.into_inner()) = Some(needle.into());
    }

    pub fn heal(&self) {
        *self.shared.fail.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Every request so far, as `path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// How many requests so far matched `pred`.
    pub fn count_requests(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.lock().requests.iter().filter(|r| pred(r)).count()
    }

    /// How many watches are open now.
    pub fn open_watches(&self) -> usize {
        self.shared.live.receiver_count()
    }
}

/// Stores `obj` (adding or replacing), records the event and tells the open watches; returns the
/// new resource version and the object as stored.
fn store(shared: &Shared, kind: Kind, obj: Value) -> (u64, Arc<Value>) {
    let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    store_locked(&mut st, &shared.live, kind, obj)
}

fn store_locked(
    st: &mut State,
    live: &broadcast::Sender<Live>,
    kind: Kind,
    mut obj: Value,
) -> (u64, Arc<Value>) {
    st.rv += 1;
    let rv = st.rv;
    obj["kind"] = json!(kind.kind());
    obj["apiVersion"] = json!(kind.api_version());
    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
    if let Kind::Other(r) = kind {
        if !st.custom.contains(&r) {
            st.custom.push(r);
        }
    }
    let key = key_of(kind, &obj);
    let obj = Arc::new(obj);
    let etype = if st.objects.insert(key, Arc::clone(&obj)).is_some() {
        "MODIFIED"
    } else {
        "ADDED"
    };
    record(st, rv, kind, etype, &obj);
    let _ = live.send(Live::Event {
        kind,
        rv,
        etype,
        obj: Arc::clone(&obj),
    });
    (rv, obj)
}

fn key_of(kind: Kind, obj: &Value) -> Key {
    let md = &obj["metadata"];
    let ns = if kind.namespaced() {
        md["namespace"].as_str().unwrap_or("default").to_string()
    } else {
        String::new()
    };
    (
        kind,
        ns,
        md["name"].as_str().unwrap_or_default().to_string(),
    )
}

fn record(st: &mut State, rv: u64, kind: Kind, etype: &'static str, obj: &Arc<Value>) {
    st.history.push_back((rv, kind, etype, Arc::clone(obj)));
    while st.history.len() > st.max_history {
        if let Some((old, ..)) = st.history.pop_front() {
            st.oldest = old;
        }
    }
}

/// What a request asks for, parsed from its path and query.
struct Query {
    kind: Kind,
    namespace: Option<String>,
    name: Option<String>,
    params: HashMap<String, String>,
}

fn parse(path: &str, query: &str, custom: &[&'static Resource]) -> Option<Query> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("v1".to_string(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    let (namespace, plural, name) = match rest {
        ["namespaces", ns, plural] => (Some(ns.to_string()), *plural, None),
        ["namespaces", ns, plural, name] => (Some(ns.to_string()), *plural, Some(name.to_string())),
        [plural] => (None, *plural, None),
        [plural, name] => (None, *plural, Some(name.to_string())),
        // A GET of the status subresource answers with the whole object, as the API server does.
        ["namespaces", ns, plural, name, "status"] => {
            (Some(ns.to_string()), *plural, Some(name.to_string()))
        }
        [plural, name, "status"] => (None, *plural, Some(name.to_string())),
        _ => return None,
    };
    // `/api/v1/namespaces/x` is the namespace x itself, not a list in it.
    let (kind, namespace, name) = match (group.as_str(), namespace, plural, name) {
        ("v1", Some(ns), "namespaces", None) => (Kind::Namespace, None, Some(ns)),
        (g, ns, p, n) => {
            let k = Kind::from_path(g, p).or_else(|| {
                custom
                    .iter()
                    .find(|r| r.api_version == g && r.plural == p)
                    .map(|r| Kind::Other(r))
            })?;
            (k, ns, n)
        }
    };
    let params = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    Some(Query {
        kind,
        namespace,
        name,
        params,
    })
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(c) => {
                        out.push(c);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `fieldSelector`: `a=b`, `a==b`, `a!=b`, comma-joined, over the fields the API server indexes.
fn field_matches(sel: &str, obj: &Value) -> bool {
    sel.split(',').filter(|t| !t.is_empty()).all(|term| {
        let (path, want, eq) = if let Some((p, v)) = term.split_once("!=") {
            (p, v, false)
        } else if let Some((p, v)) = term.split_once("==") {
            (p, v, true)
        } else if let Some((p, v)) = term.split_once('=') {
            (p, v, true)
        } else {
            return true;
        };
        let mut cur = obj;
        for part in path.split('.') {
            cur = &cur[part];
        }
        (cur.as_str().unwrap_or("") == want) == eq
    })
}

/// `labelSelector`: `k=v`, `k!=v`, `k` (exists), comma-joined.
fn labels_match(sel: &str, obj: &Value) -> bool {
    let labels = &obj["metadata"]["labels"];
    sel.split(',').filter(|t| !t.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels[k].as_str() != Some(v)
        } else if let Some((k, v)) = term.split_once('=') {
            labels[k.trim_end_matches('=')].as_str() == Some(v)
        } else {
            labels.get(term).is_some()
        }
    })
}

impl Query {
    fn selects(&self, kind: Kind, obj: &Value) -> bool {
        if kind != self.kind {
            return false;
        }
        let md = &obj["metadata"];
        if let Some(ns) = &self.namespace {
            if md["namespace"].as_str() != Some(ns) {
                return false;
            }
        }
        if let Some(n) = &self.name {
            if md["name"].as_str() != Some(n) {
                return false;
            }
        }
        self.params
            .get("fieldSelector")
            .is_none_or(|s| field_matches(s, obj))
            && self
                .params
                .get("labelSelector")
                .is_none_or(|s| labels_match(s, obj))
    }
}

/// Metadata only, as the API server answers `as=PartialObjectMetadata`.
fn partial(obj: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": obj["metadata"]})
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [("content-type", "application/json")],
        serde_json::to_vec(v).unwrap_or_default(),
    )
        .into_response()
}

async fn handle(shared: Arc<Shared>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    {
        let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        st.requests.push(format!("{path}?{query}"));
    }
    let failing = shared
        .fail
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if failing.is_some_and(|n| path.contains(&n)) {
        return json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &status(500, "InternalError", "the double was told to fail"),
        );
    }
    if req.method() == axum::http::Method::GET {
        if let Some(resp) = discovery(&shared, &path) {
            return resp;
        }
    }
    let custom = shared
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .custom
        .clone();
    let Some(q) = parse(&path, &query, &custom) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        );
    };
    if matches!(
        *req.method(),
        axum::http::Method::POST | axum::http::Method::PUT
    ) {
        return write(shared, q, req).await;
    }
    let meta_only = accepts_partial(req.headers());
    if q.params
        .get("watch")
        .is_some_and(|w| w == "true" || w == "1")
    {
        return watch_response(shared, q, meta_only);
    }
    let st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(name) = &q.name {
        let key = (
            q.kind,
            q.namespace.clone().unwrap_or_default(),
            name.clone(),
        );
        return match st.objects.get(&key) {
            Some(o) if meta_only => json_response(StatusCode::OK, &partial(o)),
            Some(o) => json_response(StatusCode::OK, o),
            None => json_response(
                StatusCode::NOT_FOUND,
                &status(
                    404,
                    "NotFound",
                    &format!("{} \"{name}\" not found", q.kind.kind().to_lowercase()),
                ),
            ),
        };
    }
    // A page starts after the key in `continue`; the token also carries the list's version,
    // which every page reports, as the API server's consistent pages do.
    let limit: usize = q
        .params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let (list_rv, after) = match q.params.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => match c.split_once('|') {
            Some((rv, after)) => (rv.parse().unwrap_or(st.rv), Some(after.to_string())),
            None => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &status(400, "BadRequest", "invalid continue token"),
                )
            }
        },
        None => (st.rv, None),
    };
    let mut items = Vec::new();
    let mut next = None;
    for ((kind, ns, name), obj) in &st.objects {
        if *kind != q.kind || !q.selects(*kind, obj) {
            continue;
        }
        let k = format!("{ns}/{name}");
        if after.as_ref().is_some_and(|a| k.as_str() <= a.as_str()) {
            continue;
        }
        if items.len() == limit {
            next = items
                .last()
                .map(|(k, _): &(String, Value)| format!("{list_rv}|{k}"));
            break;
        }
        let mut v = if meta_only {
            partial(obj)
        } else {
            (**obj).clone()
        };
        // List items carry neither kind nor apiVersion; the list does.
        if let Some(m) = v.as_object_mut() {
            m.remove("kind");
            m.remove("apiVersion");
        }
        items.push((k, v));
    }
    let mut md = json!({"resourceVersion": list_rv.to_string()});
    if let Some(c) = next {
        md["continue"] = json!(c);
    }
    let (kind, api) = if meta_only {
        ("PartialObjectMetadataList".to_string(), "meta.k8s.io/v1")
    } else {
        (q.kind.list_kind(), q.kind.api_version())
    };
    let items: Vec<Value> = items.into_iter().map(|(_, v)| v).collect();
    json_response(
        StatusCode::OK,
        &json!({"kind": kind, "apiVersion": api, "metadata": md, "items": items}),
    )
}

/// POST to a collection creates (409 `AlreadyExists` when the name is taken); PUT to an object
/// replaces it, refusing with 409 `Conflict` a `metadata.resourceVersion` that is no longer the
/// stored one (optimistic concurrency, what leader election relies on). Both answer the object as
/// stored, with its new resource version.
async fn write(shared: Arc<Shared>, q: Query, req: Request) -> Response {
    let create = req.method() == axum::http::Method::POST;
    let body = match axum::body::to_bytes(req.into_body(), 4 << 20).await {
        Ok(b) => b,
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &status(400, "BadRequest", &e.to_string()),
            )
        }
    };
    let mut obj: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &status(400, "BadRequest", &format!("invalid JSON: {e}")),
            )
        }
    };
    if let Some(ns) = &q.namespace {
        obj["metadata"]["namespace"] = json!(ns);
    }
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if name.is_empty() || (!create && q.name.as_deref() != Some(name.as_str())) {
        return json_response(
            StatusCode::BAD_REQUEST,
            &status(
                400,
                "BadRequest",
                "metadata.name is missing or differs from the path",
            ),
        );
    }
    let key = key_of(q.kind, &obj);
    let kind_name = q.kind.kind().to_lowercase();
    // The check and the store happen under one lock, so of two racing writers one gets the 409.
    let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    let existing = st.objects.get(&key).cloned();
    match (create, existing) {
        (true, Some(_)) => {
            return json_response(
                StatusCode::CONFLICT,
                &status(
                    409,
                    "AlreadyExists",
                    &format!("{kind_name} \"{name}\" already exists"),
                ),
            )
        }
        (true, None) => {
            let seed = format!("{kind_name}/{}/{name}", key.1);
            obj["metadata"]["uid"] = json!(uid(&seed));
            obj["metadata"]["creationTimestamp"] = json!(rfc3339_now());
        }
        (false, None) => {
            return json_response(
                StatusCode::NOT_FOUND,
                &status(
                    404,
                    "NotFound",
                    &format!("{kind_name} \"{name}\" not found"),
                ),
            )
        }
        (false, Some(old)) => {
            let sent = obj["metadata"]["resourceVersion"].as_str().unwrap_or("");
            let stored = old["metadata"]["resourceVersion"].as_str().unwrap_or("");
            if !sent.is_empty() && sent != stored {
                return json_response(
                    StatusCode::CONFLICT,
                    &status(
                        409,
                        "Conflict",
                        &format!(
                            "Operation cannot be fulfilled on {}.{} \"{name}\": the object has been \
                             modified; please apply your changes to the latest version and try again",
                            q.kind.plural(),
                            q.kind.api_version().split('/').next().unwrap_or("")
                        ),
                    ),
                );
            }
            obj["metadata"]["uid"] = old["metadata"]["uid"].clone();
            obj["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
        }
    }
    let (_, stored) = store_locked(&mut st, &shared.live, q.kind, obj);
    drop(st);
    let code = if create {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    json_response(code, &stored)
}

/// Now as the API server writes timestamps (RFC 3339, seconds, UTC).
fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// `secs` since the epoch as `YYYY-MM-DDThh:mm:ssZ` (Howard Hinnant's days-to-civil).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Discovery as the API server serves it: `/api` (the core versions), `/api/v1` and
/// `/apis/<group>/<version>` (an `APIResourceList`), `/apis` (an `APIGroupList`, one version per
/// group here, which is also the preferred one).
fn discovery(shared: &Shared, path: &str) -> Option<Response> {
    let custom = shared
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .custom
        .clone();
    let kinds: Vec<Kind> = BUILTIN
        .iter()
        .copied()
        .chain(custom.into_iter().map(Kind::Other))
        .collect();
    let resource = |k: Kind| {
        let mut r = json!({"name": k.plural(), "singularName": k.kind().to_lowercase(),
            "namespaced": k.namespaced(), "kind": k.kind(),
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]});
        if k == Kind::Event || k == Kind::EventV1 {
            r["shortNames"] = json!(["ev"]);
        }
        r
    };
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let body = match segs.as_slice() {
        ["api"] => json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:6443"}]}),
        ["apis"] => {
            let mut groups: Vec<String> = Vec::new();
            for k in &kinds {
                let gv = k.api_version();
                if gv.contains('/') && !groups.iter().any(|g| g == gv) {
                    groups.push(gv.to_string());
                }
            }
            let groups: Vec<Value> = groups
                .iter()
                .map(|gv| {
                    let (g, v) = gv.split_once('/').unwrap_or((gv, ""));
                    let ver = json!({"groupVersion": gv, "version": v});
                    json!({"name": g, "versions": [ver.clone()], "preferredVersion": ver})
                })
                .collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        ["api", v] | ["apis", _, v] => {
            let gv = match segs.as_slice() {
                ["apis", g, _] => format!("{g}/{v}"),
                _ => v.to_string(),
            };
            let resources: Vec<Value> = kinds
                .iter()
                .filter(|k| k.api_version() == gv)
                .map(|k| resource(*k))
                .collect();
            if resources.is_empty() {
                return None;
            }
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                "resources": resources})
        }
        _ => return None,
    };
    Some(json_response(StatusCode::OK, &body))
}

fn accepts_partial(h: &HeaderMap) -> bool {
    h.get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"))
}

fn event_line(etype: &str, obj: &Value) -> bytes::Bytes {
    let mut line = serde_json::to_vec(&json!({"type": etype, "object": obj})).unwrap_or_default();
    line.push(b'\n');
    line.into()
}

fn watch_response(shared: Arc<Shared>, q: Query, meta_only: bool) -> Response {
    let from: u64 = q
        .params
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bookmarks = q
        .params
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let timeout = q
        .params
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let (tx, rx) = mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1024);
    let shape = move |o: &Value| if meta_only { partial(o) } else { o.clone() };
    // Subscribe and read the history under one lock, so no event falls between them.
    let (replay, mut live, expired) = {
        let st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let live = shared.live.subscribe();
        if from != 0 && from < st.oldest {
            (Vec::new(), live, true)
        } else if from == 0 {
            // No version: the current state as ADDED events, then live ones.
            let v: Vec<bytes::Bytes> = st
                .objects
                .iter()
                .filter(|((k, ..), o)| q.selects(*k, o))
                .map(|(_, o)| event_line("ADDED", &shape(o)))
                .collect();
            (v, live, false)
        } else {
            let v = st
                .history
                .iter()
                .filter(|(rv, k, _, o)| *rv > from && q.selects(*k, o))
                .map(|(_, _, t, o)| event_line(t, &shape(o)))
                .collect();
            (v, live, false)
        }
    };
    let mut cut = shared.cut.subscribe();
    cut.mark_unchanged();
    tokio::spawn(async move {
        if expired {
            let s = status(410, "Expired", &format!("too old resource version: {from}"));
            let _ = tx.send(Ok(event_line("ERROR", &s))).await;
            return;
        }
        for line in replay {
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
        let end = tokio::time::sleep(timeout);
        tokio::pin!(end);
        loop {
            let ev = tokio::select! {
                _ = &mut end => return,
                _ = cut.changed() => {
                    let _ = tx
                        .send(Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut by the test")))
                        .await;
                    return;
                }
                _ = tx.closed() => return,
                ev = live.recv() => ev,
            };
            let line = match ev {
                Ok(Live::Event {
                    kind,
                    rv,
                    etype,
                    obj,
                }) => {
                    if rv <= from || !q.selects(kind, &obj) {
                        continue;
                    }
                    event_line(etype, &shape(&obj))
                }
                Ok(Live::Bookmark(rv)) => {
                    if !bookmarks {
                        continue;
                    }
                    event_line(
                        "BOOKMARK",
                        &json!({"kind": q.kind.kind(), "apiVersion": q.kind.api_version(),
                                "metadata": {"resourceVersion": rv.to_string()}}),
                    )
                }
                // A watcher too slow for the event rate is cut, as the API server does.
                Err(_) => {
                    let _ = tx
                        .send(Err(std::io::Error::other("watch fell behind")))
                        .await;
                    return;
                }
            };
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A deterministic UID for `seed`, shaped as the API server's (a v4 UUID).
pub fn uid(seed: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut h2: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in seed.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        h2 = (h2 ^ b as u64)
            .wrapping_mul(0xff51_afd7_ed55_8ccd)
            .rotate_left(17);
    }
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (h2 >> 52) & 0xfff,
        h2 & 0xffff_ffff_ffff
    )
}

/// The owner reference a controller sets on what it creates.
fn owner(api_version: &str, kind: &str, name: &str, uid: &str) -> Value {
    json!([{"apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
            "controller": true, "blockOwnerDeletion": true}])
}

/// What a pod's owner is, for [`pod`].
pub enum Owner<'a> {
    None,
    /// A ReplicaSet by name (its UID is `uid("rs/<ns>/<name>")`, as [`replicaset`] gives it).
    ReplicaSet(&'a str),
    DaemonSet(&'a str),
    StatefulSet(&'a str),
    Job(&'a str),
}

/// A running pod as the API server returns it: owner reference, labels, a container with its
/// `containerd://` id, `podIP`/`podIPs`, `startTime`, and the managed fields real objects carry.
pub fn pod(ns: &str, name: &str, node: &str, ip: &str, owner_of: Owner<'_>) -> Value {
    let uid = uid(&format!("pod/{ns}/{name}"));
    let cid = format!("{}{}", uid.replace('-', ""), uid.replace('-', ""));
    let (app, owners) = match owner_of {
        Owner::None => (name.to_string(), json!([])),
        Owner::ReplicaSet(rs) => (
            rs.rsplit_once('-')
                .map(|(d, _)| d)
                .unwrap_or(rs)
                .to_string(),
            owner(
                "apps/v1",
                "ReplicaSet",
                rs,
                &self::uid(&format!("rs/{ns}/{rs}")),
            ),
        ),
        Owner::DaemonSet(d) => (
            d.to_string(),
            owner(
                "apps/v1",
                "DaemonSet",
                d,
                &self::uid(&format!("ds/{ns}/{d}")),
            ),
        ),
        Owner::StatefulSet(s) => (
            s.to_string(),
            owner(
                "apps/v1",
                "StatefulSet",
                s,
                &self::uid(&format!("sts/{ns}/{s}")),
            ),
        ),
        Owner::Job(j) => (
            j.to_string(),
            owner("batch/v1", "Job", j, &self::uid(&format!("job/{ns}/{j}"))),
        ),
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns, "uid": uid,
            "creationTimestamp": "2026-11-30T08:00:00Z",
            "generateName": format!("{app}-"),
            "labels": {"app.kubernetes.io/name": app, "pod-template-hash": "7c9f8d6b5d"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-30T07:59:00Z"},
            "ownerReferences": owners,
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                "apiVersion": "v1", "time": "2026-11-30T08:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {},
                    "f:app.kubernetes.io/name": {}, "f:pod-template-hash": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {},
                    "f:name": {}}}}}}]
        },
        "spec": {
            "nodeName": node,
            "serviceAccountName": "default",
            "restartPolicy": "Always",
            "containers": [{"name": "app", "image": format!("registry.example.com/{app}:1.4.2"),
                "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]
        },
        "status": {
            "phase": "Running",
            "hostIP": "10.0.0.10", "hostIPs": [{"ip": "10.0.0.10"}],
            "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": "2026-11-30T08:00:02Z",
            "qosClass": "Burstable",
            "conditions": [{"type": "Ready", "status": "True",
                "lastTransitionTime": "2026-11-30T08:00:09Z"}],
            "containerStatuses": [{"name": "app", "ready": true, "started": true, "restartCount": 0,
                "image": format!("registry.example.com/{app}:1.4.2"),
                "imageID": format!("registry.example.com/{app}@sha256:{cid}"),
                "containerID": format!("containerd://{cid}"),
                "state": {"running": {"startedAt": "2026-11-30T08:00:08Z"}}}]
        }
    })
}

/// A ReplicaSet owned by Deployment `deployment` (none when empty), with the annotations the
/// deployment controller writes.
pub fn replicaset(ns: &str, name: &str, deployment: &str) -> Value {
    let owners = if deployment.is_empty() {
        json!([])
    } else {
        owner(
            "apps/v1",
            "Deployment",
            deployment,
            &uid(&format!("deploy/{ns}/{deployment}")),
        )
    };
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": name, "namespace": ns, "uid": uid(&format!("rs/{ns}/{name}")),
            "creationTimestamp": "2026-11-30T07:59:58Z", "generation": 1,
            "labels": {"app.kubernetes.io/name": deployment, "pod-template-hash": "7c9f8d6b5d"},
            "annotations": {"deployment.kubernetes.io/desired-replicas": "3",
                "deployment.kubernetes.io/max-replicas": "4", "deployment.kubernetes.io/revision": "1"},
            "ownerReferences": owners
        },
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app.kubernetes.io/name": deployment,
            "pod-template-hash": "7c9f8d6b5d"}}},
        "status": {"replicas": 3, "readyReplicas": 3, "availableReplicas": 3, "observedGeneration": 1}
    })
}

/// A Job, owned by CronJob `cronjob` when it is not empty.
pub fn job(ns: &str, name: &str, cronjob: &str) -> Value {
    let owners = if cronjob.is_empty() {
        json!([])
    } else {
        owner(
            "batch/v1",
            "CronJob",
            cronjob,
            &uid(&format!("cronjob/{ns}/{cronjob}")),
        )
    };
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": ns, "uid": uid(&format!("job/{ns}/{name}")),
            "creationTimestamp": "2026-11-30T08:00:00Z", "ownerReferences": owners},
        "spec": {"completions": 1, "parallelism": 1, "backoffLimit": 6},
        "status": {"active": 1, "startTime": "2026-11-30T08:00:00Z"}
    })
}

/// A ready node with its labels, addresses and system info.
pub fn node(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "uid": uid(&format!("node/{name}")),
            "creationTimestamp": "2026-11-01T00:00:00Z",
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "m6i.xlarge",
                "topology.kubernetes.io/zone": "eu-west-1a"},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"podCIDR": "10.244.1.0/24", "providerID": format!("aws:///eu-west-1a/i-{name}")},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "10.0.0.10"},
                {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": "v1.33.2", "containerRuntimeVersion": "containerd://2.0.5",
                "osImage": "Amazon Linux 2023", "kernelVersion": "6.1.132", "architecture": "amd64",
                "operatingSystem": "linux", "machineID": "ec2d3f", "systemUUID": "ec2d3f",
                "bootID": "b00t", "kubeProxyVersion": ""},
            "capacity": {"cpu": "4", "memory": "16044380Ki", "ephemeral-storage": "83873772Ki",
                "pods": "58", "hugepages-2Mi": "0"},
            "allocatable": {"cpu": "3920m", "memory": "15027548Ki",
                "ephemeral-storage": "76224326324", "pods": "58", "hugepages-2Mi": "0"},
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure"},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID"},
                {"type": "Ready", "status": "True", "reason": "KubeletReady"}]
        }
    })
}

/// A namespace; `kube-system`'s UID is what `k8s_api` reports as `k8s.cluster.uid`.
pub fn namespace(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "uid": uid(&format!("ns/{name}")),
            "creationTimestamp": "2026-11-01T00:00:00Z",
            "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}
    })
}

/// The labels and selector a workload controller's pods carry.
fn selector(app: &str) -> Value {
    json!({"matchLabels": {"app.kubernetes.io/name": app}})
}

/// A Deployment asking for `replicas` pods of which `available` are available, as the deployment
/// controller reports it once it has observed the spec.
pub fn deployment(ns: &str, name: &str, replicas: i32, available: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "uid": uid(&format!("deploy/{ns}/{name}")),
            "creationTimestamp": "2026-11-30T07:59:57Z", "generation": 1,
            "labels": {"app.kubernetes.io/name": name},
            "annotations": {"deployment.kubernetes.io/revision": "1"}},
        "spec": {"replicas": replicas, "selector": selector(name),
            "strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": name}},
                "spec": {"containers": [{"name": "app",
                    "image": format!("registry.example.com/{name}:1.4.2")}]}}},
        "status": {"observedGeneration": 1, "replicas": available, "updatedReplicas": available,
            "readyReplicas": available, "availableReplicas": available,
            "unavailableReplicas": (replicas - available).max(0),
            "conditions": [{"type": "Available", "status": if available >= replicas { "True" } else { "False" },
                "reason": "MinimumReplicasAvailable"}]}
    })
}

/// A DaemonSet scheduled on `desired` nodes, `ready` of them ready.
pub fn daemonset(ns: &str, name: &str, desired: i32, ready: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": ns, "uid": uid(&format!("ds/{ns}/{name}")),
            "creationTimestamp": "2026-11-01T00:00:00Z", "generation": 2,
            "labels": {"app.kubernetes.io/name": name}},
        "spec": {"selector": selector(name),
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": name}},
                "spec": {"containers": [{"name": name, "image": format!("registry.example.com/{name}:0.9.1")}]}}},
        "status": {"currentNumberScheduled": desired, "desiredNumberScheduled": desired,
            "numberMisscheduled": 0, "numberReady": ready, "numberAvailable": ready,
            "updatedNumberScheduled": desired, "observedGeneration": 2}
    })
}

/// A StatefulSet asking for `replicas` pods, `ready` of them ready.
pub fn statefulset(ns: &str, name: &str, replicas: i32, ready: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": ns, "uid": uid(&format!("sts/{ns}/{name}")),
            "creationTimestamp": "2026-11-01T00:00:00Z", "generation": 1,
            "labels": {"app.kubernetes.io/name": name}},
        "spec": {"replicas": replicas, "serviceName": name, "selector": selector(name),
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": name}},
                "spec": {"containers": [{"name": name, "image": format!("registry.example.com/{name}:16.4")}]}}},
        "status": {"observedGeneration": 1, "replicas": replicas, "readyReplicas": ready,
            "currentReplicas": replicas, "updatedReplicas": replicas, "availableReplicas": ready,
            "currentRevision": format!("{name}-6d8f7c9b5"), "updateRevision": format!("{name}-6d8f7c9b5"),
            "collisionCount": 0}
    })
}

/// A CronJob with the Jobs in `active` running.
pub fn cronjob(ns: &str, name: &str, active: &[&str]) -> Value {
    let active: Vec<Value> = active
        .iter()
        .map(|j| {
            json!({"kind": "Job", "namespace": ns, "name": j, "apiVersion": "batch/v1",
                        "uid": uid(&format!("job/{ns}/{j}")), "resourceVersion": "1001"})
        })
        .collect();
    json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": ns, "uid": uid(&format!("cronjob/{ns}/{name}")),
            "creationTimestamp": "2026-11-01T00:00:00Z", "generation": 1},
        "spec": {"schedule": "*/5 * * * *", "concurrencyPolicy": "Forbid", "suspend": false,
            "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                "containers": [{"name": name, "image": "registry.example.com/cron:2.1"}]}}}}},
        "status": {"active": active, "lastScheduleTime": "2026-11-30T08:00:00Z"}
    })
}

/// A ResourceQuota with its `hard` limits and `used` amounts, as quantities (`"2"`, `"500m"`,
/// `"4Gi"`).
pub fn resourcequota(ns: &str, name: &str, hard: &[(&str, &str)], used: &[(&str, &str)]) -> Value {
    let map = |kv: &[(&str, &str)]| -> Value {
        kv.iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": name, "namespace": ns, "uid": uid(&format!("quota/{ns}/{name}")),
            "creationTimestamp": "2026-11-01T00:00:00Z"},
        "spec": {"hard": map(hard)},
        "status": {"hard": map(hard), "used": map(used)}
    })
}

/// A ReplicationController asking for `replicas` pods, `available` of them available.
pub fn replicationcontroller(ns: &str, name: &str, replicas: i32, available: i32) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": name, "namespace": ns, "uid": uid(&format!("rc/{ns}/{name}")),
            "creationTimestamp": "2026-11-01T00:00:00Z", "generation": 1},
        "spec": {"replicas": replicas, "selector": {"app": name},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": "registry.example.com/legacy:0.1"}]}}},
        "status": {"replicas": available, "readyReplicas": available,
            "availableReplicas": available, "observedGeneration": 1}
    })
}

/// An autoscaling/v2 HorizontalPodAutoscaler of Deployment `target`.
pub fn hpa(
    ns: &str,
    name: &str,
    target: &str,
    min: i32,
    max: i32,
    current: i32,
    desired: i32,
) -> Value {
    json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": ns, "uid": uid(&format!("hpa/{ns}/{name}")),
            "creationTimestamp": "2026-11-01T00:00:00Z"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": min, "maxReplicas": max,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70}}}]},
        "status": {"currentReplicas": current, "desiredReplicas": desired,
            "lastScaleTime": "2026-11-30T08:00:00Z",
            "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu",
                "current": {"averageUtilization": 55, "averageValue": "110m"}}}],
            "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale",
                "lastTransitionTime": "2026-11-30T08:00:00Z"}]}
    })
}

/// A core/v1 Event about `pod` in `ns` as the kubelet reports one (`reason`, `message`, `type`
/// `Normal`/`Warning`), first and last seen at `time` (RFC 3339), counted once.
pub fn event(
    ns: &str,
    name: &str,
    pod: &str,
    reason: &str,
    message: &str,
    etype: &str,
    time: &str,
) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": ns, "uid": uid(&format!("event/{ns}/{name}")),
            "creationTimestamp": time},
        "involvedObject": {"kind": "Pod", "namespace": ns, "name": pod,
            "uid": uid(&format!("pod/{ns}/{pod}")), "apiVersion": "v1", "resourceVersion": "4121",
            "fieldPath": "spec.containers{app}"},
        "reason": reason, "message": message,
        "source": {"component": "kubelet", "host": "node-a"},
        "firstTimestamp": time, "lastTimestamp": time, "count": 1, "type": etype,
        "eventTime": null, "reportingComponent": "kubelet", "reportingInstance": "node-a"
    })
}

/// The same Event as events.k8s.io/v1 serves it (`regarding`, `note`, `deprecated*` fields).
pub fn event_v1(
    ns: &str,
    name: &str,
    pod: &str,
    reason: &str,
    note: &str,
    etype: &str,
    time: &str,
) -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": name, "namespace": ns, "uid": uid(&format!("event/{ns}/{name}")),
            "creationTimestamp": time},
        "eventTime": null, "reportingController": "kubelet", "reportingInstance": "node-a",
        "action": "", "reason": reason, "note": note, "type": etype,
        "regarding": {"kind": "Pod", "namespace": ns, "name": pod,
            "uid": uid(&format!("pod/{ns}/{pod}")), "apiVersion": "v1", "resourceVersion": "4121",
            "fieldPath": "spec.containers{app}"},
        "deprecatedSource": {"component": "kubelet", "host": "node-a"},
        "deprecatedFirstTimestamp": time, "deprecatedLastTimestamp": time, "deprecatedCount": 1
    })
}

/// An object of a custom resource `r` with a `spec`.
pub fn custom(r: &Resource, ns: &str, name: &str, spec: Value) -> Value {
    let mut md = json!({"name": name, "uid": uid(&format!("{}/{ns}/{name}", r.plural)),
        "creationTimestamp": "2026-11-30T08:00:00Z", "generation": 1});
    if r.namespaced {
        md["namespace"] = json!(ns);
    }
    json!({"apiVersion": r.api_version, "kind": r.kind, "metadata": md, "spec": spec})
}

/// discovery.k8s.io/v1 EndpointSlices, served as [`Kind::Other`] (the `loadbalancing` exporter's
/// `k8s` resolver watches them).
pub static ENDPOINT_SLICE: Resource = Resource {
    api_version: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    plural: "endpointslices",
    namespaced: true,
};

/// An EndpointSlice of Service `service` as the EndpointSlice controller writes one: its labels
/// (`kubernetes.io/service-name`, `endpointslice.kubernetes.io/managed-by`), the Service as owner, an
/// IPv4 endpoint per `(ip, hostname, ready)` with its pod, node and conditions (a pod that is not
/// ready is neither ready nor serving), and the Service's `port` named `otlp-grpc`.
pub fn endpoint_slice(
    ns: &str,
    name: &str,
    service: &str,
    endpoints: &[(&str, Option<&str>, bool)],
    port: u16,
) -> Value {
    let eps: Vec<Value> = endpoints
        .iter()
        .enumerate()
        .map(|(i, (ip, hostname, ready))| {
            let pod = match hostname {
                Some(h) => h.to_string(),
                None => format!("{service}-{}", uid(ip).get(..5).unwrap_or("00000")),
            };
            let mut ep = json!({
                "addresses": [ip],
                "conditions": {"ready": ready, "serving": ready, "terminating": false},
                "nodeName": format!("node-{}", i % 3),
                "zone": "zone-a",
                "targetRef": {"kind": "Pod", "namespace": ns, "name": pod,
                    "uid": uid(&format!("pod/{ns}/{pod}"))},
            });
            if let Some(h) = hostname {
                ep["hostname"] = json!(h);
            }
            ep
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name, "namespace": ns, "generateName": format!("{service}-"),
            "uid": uid(&format!("endpointslices/{ns}/{name}")),
            "creationTimestamp": "2026-11-30T08:00:00Z", "generation": 1,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": service,
                "uid": uid(&format!("services/{ns}/{service}")), "controller": true,
                "blockOwnerDeletion": true}],
        },
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": [{"name": "otlp-grpc", "port": port, "protocol": "TCP"}],
    })
}
