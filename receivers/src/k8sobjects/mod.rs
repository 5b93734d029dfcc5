//! `k8sobjects` (also `k8s_objects`): otelcol's Kubernetes objects receiver. Each configured
//! resource is read from the API server as logs: in `pull` mode every `interval` (default 1h) as one
//! record per object, the body being the object; in `watch` mode one record per change, the body
//! being `{type: ADDED|MODIFIED|DELETED, object}`. Records carry `k8s.resource.name` (and, watched,
//! `event.domain: k8s` and `event.name`: the object's name), the resource `k8s.namespace.name` of
//! the object's namespace, and the observed time, as otelcol writes them.
//!
//! At start the receiver asks the API server which resources it serves (discovery, as otelcol
//! does): a `name` the cluster does not serve fails the start (`error_mode: propagate`, the
//! default) or is skipped (`ignore`, `silent`). With `k8s_leader_elector`, the pulls and watches run
//! only while this instance holds the lease, and stop when it is lost.
//!
//! Bounds: a pull reads 500 objects a page and hands each page to the pipeline as it arrives, at
//! most [`MAX_PULL_OBJECTS`] objects a pull (the rest counted as
//! `vigil_k8s_watch_dropped_objects`); a watch remembers the version of at most
//! [`MAX_TRACKED`] objects (to drop replays and to report what changed across a `410 Gone`). The
//! pipeline is awaited, never queued in front of: a slow pipeline slows the watch.
//! Not built: `storage` and `persist_resource_version` (refused at validate).

pub mod config;

use async_trait::async_trait;
use config::{Excluded, K8sObjectsConfig, Mode, ObjectConfig, WatchEventType};
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use vigil_core::time::now_nanos;
use vigil_core::{
    Component, ComponentId, ConfigError, Host, NextConsumers, Receiver, Signal, Telemetry,
};
use vigil_k8s::kube::api::{Api, DynamicObject, ListParams};
use vigil_k8s::objects::{self, Discovered, WatchOptions, WatchType};

/// The most objects one pull hands to the pipeline.
pub const MAX_PULL_OBJECTS: usize = 100_000;
/// The most objects a watch remembers.
pub const MAX_TRACKED: usize = 100_000;
const PAGE_SIZE: u32 = 500;
/// otelcol's scope name for this receiver's records.
const SCOPE: &str =
    "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/k8sobjectsreceiver";

struct Factory;

/// The `k8sobjects` receiver factory (`k8s_objects` resolves to it).
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = K8sObjectsConfig;

    fn type_name(&self) -> &'static str {
        "k8sobjects"
    }

    fn validate(&self, _id: &ComponentId, cfg: &K8sObjectsConfig) -> Result<(), ConfigError> {
        config::check(cfg)
    }
}

impl vigil_core::factory::ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[(Signal::Logs, vigil_core::Stability::Beta)]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: K8sObjectsConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        config::check(&cfg)?;
        Ok(Arc::new(K8sObjects {
            obs: set.receiver_obs("http"),
            id: set.id,
            cfg: Arc::new(cfg),
            next,
            tasks: set.tasks,
            client: Mutex::new(None),
        }))
    }
}

pub struct K8sObjects {
    id: ComponentId,
    cfg: Arc<K8sObjectsConfig>,
    next: NextConsumers,
    obs: vigil_core::ReceiverObs,
    tasks: vigil_core::Tasks,
    client: Mutex<Option<vigil_k8s::kube::Client>>,
}

impl K8sObjects {
    /// Uses `client` instead of the one `auth_type` describes (tests point it at the API double).
    pub fn set_client(&self, client: vigil_k8s::kube::Client) {
        *vigil_core::lock(&self.client) = Some(client);
    }
}

/// What one configured object runs with once its resource is known.
struct Target {
    cfg: ObjectConfig,
    found: Discovered,
    excluded: Arc<Excluded>,
}

#[async_trait]
impl Component for K8sObjects {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        let id = &self.id;
        let preset = vigil_core::lock(&self.client).clone();
        let client = match preset {
            Some(c) => c,
            None => vigil_k8s::connect(&vigil_k8s::ApiConfig {
                auth_type: self.cfg.auth_type,
                context: self.cfg.context.clone(),
            })
            .await
            .map_err(|e| anyhow::anyhow!("receivers::{id}::auth_type: {e}"))?,
        };
        let all = objects::preferred_resources(&client)
            .await
            .map_err(|e| anyhow::anyhow!("receivers::{id}: API discovery failed: {e}"))?;
        let mut targets = Vec::new();
        for (i, o) in self.cfg.objects.iter().enumerate() {
            match objects::resolve(&all, &o.name, &o.group) {
                Ok(found) => targets.push(Target {
                    cfg: o.clone(),
                    found: found.clone(),
                    excluded: Arc::new(Excluded::new(&o.exclude_namespaces)),
                }),
                Err(e) => match self.cfg.error_mode {
                    config::ErrorMode::Propagate => {
                        anyhow::bail!("receivers::{id}::objects::{i}::name: {e}")
                    }
                    config::ErrorMode::Ignore => tracing::info!(receiver = %id, "{e}"),
                    config::ErrorMode::Silent => {}
                },
            }
        }
        if targets.is_empty() {
            anyhow::bail!("receivers::{id}: no valid Kubernetes objects found to watch");
        }
        let run = Runner {
            id: id.to_string(),
            client,
            targets: Arc::new(targets),
            include_initial_state: self.cfg.include_initial_state,
            next: self.next.clone(),
            obs: self.obs.clone(),
        };
        let stop = self.tasks.stopping();
        let leading = match &self.cfg.k8s_leader_elector {
            Some(le) => {
                let le = ComponentId::parse(le).map_err(|e| anyhow::anyhow!("{e}"))?;
                let leading = host
                    .leadership(&le)
                    .map_err(|e| anyhow::anyhow!("receivers::{id}::k8s_leader_elector: {e}"))?;
                tracing::info!(receiver = %id, elector = %le, "registering the receiver in leader election");
                Some(leading)
            }
            None => None,
        };
        self.tasks.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = vigil_k8s::leader::while_leading_or_always(leading, || run.clone().run_all()) => {}
            }
        });
        Ok(())
    }

    fn tasks(&self) -> Option<&vigil_core::Tasks> {
        Some(&self.tasks)
    }
}

#[derive(Clone)]
struct Runner {
    id: String,
    client: vigil_k8s::kube::Client,
    targets: Arc<Vec<Target>>,
    include_initial_state: bool,
    next: NextConsumers,
    obs: vigil_core::ReceiverObs,
}

impl Runner {
    /// Every object's pulls and watches, one loop per namespace, until dropped.
    async fn run_all(self) {
        let mut loops = Vec::new();
        for t in self.targets.iter() {
            let namespaces: Vec<Option<String>> =
                if t.cfg.namespaces.is_empty() || !t.found.namespaced {
                    vec![None]
                } else {
                    t.cfg.namespaces.iter().cloned().map(Some).collect()
                };
            for ns in namespaces {
                let ar = t.found.api_resource();
                let api: Api<DynamicObject> = match &ns {
                    Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
                    None => Api::all_with(self.client.clone(), &ar),
                };
                tracing::info!(receiver = %self.id, gvr = %t.found.gvr(), mode = ?t.cfg.mode, namespace = ?ns, "started collecting");
                let me = self.clone();
                let fut: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
                    match t.cfg.mode {
                        Mode::Pull => Box::pin(me.pull_loop(
                            api,
                            t.cfg.clone(),
                            t.found.clone(),
                            t.excluded.clone(),
                        )),
                        Mode::Watch => Box::pin(me.watch_loop(
                            api,
                            t.cfg.clone(),
                            t.found.clone(),
                            t.excluded.clone(),
                        )),
                    };
                loops.push(fut);
            }
        }
        futures::future::join_all(loops).await;
    }

    async fn pull_loop(
        self,
        api: Api<DynamicObject>,
        cfg: ObjectConfig,
        found: Discovered,
        excluded: Arc<Excluded>,
    ) {
        let ar = found.api_resource();
        let mut lp = ListParams::default();
        if !cfg.label_selector.is_empty() {
            lp.label_selector = Some(cfg.label_selector.clone());
        }
        if !cfg.field_selector.is_empty() {
            lp.field_selector = Some(cfg.field_selector.clone());
        }
        if !cfg.resource_version.is_empty() {
            lp = lp
                .at(&cfg.resource_version)
                .matching(vigil_k8s::kube::api::VersionMatch::Exact);
        }
        // The first pull at once, then every interval, as otelcol's ticker.
        let mut timer = tokio::time::interval(cfg.interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            timer.tick().await;
            let observed = now_nanos();
            let r = objects::pull(
                &api,
                &ar,
                &lp,
                PAGE_SIZE,
                MAX_PULL_OBJECTS,
                &self.id,
                |items| {
                    let items: Vec<Value> = items
                        .into_iter()
                        .filter(|o| excluded.is_empty() || !excluded.excludes(namespace_of(o)))
                        .collect();
                    let logs = to_logs(
                        items.into_iter().map(|o| (o, None)),
                        &found.plural,
                        observed,
                    );
                    self.send(logs)
                },
            )
            .await;
            if let Err(e) = r {
                tracing::error!(receiver = %self.id, resource = %found.gvr(), error = %e, "error in pulling object");
            }
        }
    }

    async fn watch_loop(
        self,
        api: Api<DynamicObject>,
        cfg: ObjectConfig,
        found: Discovered,
        excluded: Arc<Excluded>,
    ) {
        let opts = WatchOptions {
            label_selector: Some(cfg.label_selector.clone()).filter(|s| !s.is_empty()),
            field_selector: Some(cfg.field_selector.clone()).filter(|s| !s.is_empty()),
            resource_version: Some(cfg.resource_version.clone()).filter(|s| !s.is_empty()),
            include_initial_state: self.include_initial_state,
            max_tracked: MAX_TRACKED,
            page_size: PAGE_SIZE,
        };
        let exclude = |t: WatchType| {
            cfg.exclude_watch_type.iter().any(|x| {
                matches!(
                    (x, t),
                    (WatchEventType::Added, WatchType::Added)
                        | (WatchEventType::Modified, WatchType::Modified)
                        | (WatchEventType::Deleted, WatchType::Deleted)
                )
            })
        };
        let id = self.id.clone();
        let plural = found.plural.clone();
        objects::watch_objects(api, found.api_resource(), opts, &id, |t, o| {
            let skip = exclude(t) || (!excluded.is_empty() && excluded.excludes(namespace_of(&o)));
            let logs = if skip {
                Vec::new()
            } else {
                let name = o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let body = serde_json::json!({"type": t.as_str(), "object": o});
                to_logs(std::iter::once((body, Some(name))), &plural, now_nanos())
            };
            self.send(logs)
        })
        .await;
    }

    fn send(
        &self,
        logs: Vec<ResourceLogs>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (next, obs, id) = (self.next.clone(), self.obs.clone(), self.id.clone());
        async move {
            if logs.is_empty() {
                return;
            }
            if let Err(e) = obs.push(&next, Telemetry::Logs(logs)).await {
                tracing::warn!(receiver = %id, "the pipeline refused Kubernetes objects: {e}");
            }
        }
    }
}

/// An object's namespace (a watch body's is under `object`).
fn namespace_of(o: &Value) -> &str {
    o["metadata"]["namespace"]
        .as_str()
        .or_else(|| o["object"]["metadata"]["namespace"].as_str())
        .unwrap_or("")
}

/// One record per body, grouped into one `ResourceLogs` per namespace (first seen first), as
/// otelcol groups them. `Some(name)` adds the watch attributes `event.domain`/`event.name`.
fn to_logs(
    bodies: impl Iterator<Item = (Value, Option<String>)>,
    plural: &str,
    observed: u64,
) -> Vec<ResourceLogs> {
    let mut out: Vec<(String, ResourceLogs)> = Vec::new();
    for (body, name) in bodies {
        let ns = namespace_of(&body).to_string();
        let mut attributes = vec![vigil_core::attrs::kv_str("k8s.resource.name", plural)];
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            attributes.push(vigil_core::attrs::kv_str("event.domain", "k8s"));
            attributes.push(vigil_core::attrs::kv_str("event.name", n));
        }
        let record = LogRecord {
            observed_time_unix_nano: observed,
            attributes,
            body: Some(json_to_any(body)),
            ..Default::default()
        };
        match out.iter_mut().find(|(n, _)| *n == ns) {
            Some((_, rl)) => rl.scope_logs[0].log_records.push(record),
            None => {
                let mut attrs = Vec::new();
                if !ns.is_empty() {
                    attrs.push(vigil_core::attrs::kv_str("k8s.namespace.name", ns.clone()));
                }
                out.push((
                    ns,
                    ResourceLogs {
                        resource: Some(Resource {
                            attributes: attrs,
                            ..Default::default()
                        }),
                        scope_logs: vec![ScopeLogs {
                            scope: Some(InstrumentationScope {
                                name: SCOPE.into(),
                                version: env!("CARGO_PKG_VERSION").into(),
                                ..Default::default()
                            }),
                            log_records: vec![record],
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                ));
            }
        }
    }
    out.into_iter().map(|(_, rl)| rl).collect()
}

/// JSON as an OTLP value, typed as Go's unstructured decoding types it (integers stay integers).
pub(crate) fn json_to_any(v: Value) -> AnyValue {
    let value = match v {
        Value::Null => None,
        Value::Bool(b) => Some(any_value::Value::BoolValue(b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Value::String(s) => Some(any_value::Value::StringValue(s)),
        Value::Array(a) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: a.into_iter().map(json_to_any).collect(),
        })),
        Value::Object(o) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: o
                .into_iter()
                .map(|(key, v)| KeyValue {
                    key,
                    value: Some(json_to_any(v)),
                    ..Default::default()
                })
                .collect(),
        })),
    };
    AnyValue { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(y: &str) -> K8sObjectsConfig {
        let v: Value = serde_saphyr::from_str(y).unwrap();
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_and_checks_follow_otelcol() {
        let c =
            decode("objects: [{name: pods}, {name: events, mode: watch, group: events.k8s.io}]");
        assert_eq!(c.objects[0].mode, Mode::Pull);
        assert_eq!(c.objects[0].interval, std::time::Duration::from_secs(3600));
        assert_eq!(c.error_mode, config::ErrorMode::Propagate);
        assert!(config::check(&c).is_ok());
        let c = decode("objects: [{name: pods, exclude_watch_type: [DELETED]}]");
        let e = config::check(&c).unwrap_err();
        assert_eq!(e.path, "objects::0::exclude_watch_type");
        let c = decode("include_initial_state: true\nobjects: [{name: pods}]");
        assert_eq!(config::check(&c).unwrap_err().path, "include_initial_state");
        let c =
            decode("objects: [{name: pods, namespaces: [a], exclude_namespaces: [{strict: b}]}]");
        assert_eq!(
            config::check(&c).unwrap_err().path,
            "objects::0::exclude_namespaces"
        );
    }

    #[test]
    fn records_are_shaped_as_otelcols() {
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "namespace": "shop"}, "spec": {"replicas": 3}});
        let body = serde_json::json!({"type": "ADDED", "object": pod});
        let logs = to_logs(
            vec![
                (body, Some("a".to_string())),
                (serde_json::json!({"metadata": {"name": "n"}}), None),
            ]
            .into_iter(),
            "pods",
            7,
        );
        assert_eq!(logs.len(), 2, "one resource per namespace");
        let res = logs[0].resource.as_ref().unwrap();
        assert_eq!(
            vigil_core::attrs::get_str(&res.attributes, "k8s.namespace.name"),
            Some("shop")
        );
        let r = &logs[0].scope_logs[0].log_records[0];
        assert_eq!(r.observed_time_unix_nano, 7);
        for (k, v) in [
            ("k8s.resource.name", "pods"),
            ("event.domain", "k8s"),
            ("event.name", "a"),
        ] {
            assert_eq!(vigil_core::attrs::get_str(&r.attributes, k), Some(v));
        }
        assert!(logs[1].resource.as_ref().unwrap().attributes.is_empty());
        assert_eq!(logs[1].scope_logs[0].log_records[0].attributes.len(), 1);
        let Some(any_value::Value::IntValue(3)) = json_to_any(serde_json::json!(3)).value else {
            panic!("integers stay integers");
        };
    }
    /// Collects what the receiver sends.
    #[derive(Default)]
    struct Sink(std::sync::Mutex<Vec<ResourceLogs>>);

    #[async_trait]
    impl vigil_core::Consumer for Sink {
        async fn consume(&self, data: Telemetry) -> Result<(), vigil_core::ConsumeError> {
            if let Telemetry::Logs(l) = data {
                self.0.lock().unwrap().extend(l);
            }
            Ok(())
        }
    }

    impl Sink {
        /// `(type, name)` of every watch record so far.
        fn changes(&self) -> Vec<(String, String)> {
            let mut out = Vec::new();
            for rl in self.0.lock().unwrap().iter() {
                for r in &rl.scope_logs[0].log_records {
                    let Some(any_value::Value::KvlistValue(kv)) =
                        r.body.as_ref().and_then(|b| b.value.clone())
                    else {
                        continue;
                    };
                    let t = kv.values.iter().find(|k| k.key == "type").and_then(|k| {
                        match k.value.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                            _ => None,
                        }
                    });
                    if let Some(t) = t {
                        let n = vigil_core::attrs::get_str(&r.attributes, "event.name")
                            .unwrap_or_default();
                        out.push((t, n.to_string()));
                    }
                }
            }
            out
        }
    }

    struct Elector(tokio::sync::watch::Sender<bool>);
    impl Component for Elector {}
    impl vigil_core::Extension for Elector {
        fn leadership(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
            Some(self.0.subscribe())
        }
    }

    async fn settle(sink: &Sink, n: usize) {
        for _ in 0..100 {
            if sink.changes().len() >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Against the API double: the initial state, excluded types and namespaces, and a watch that
    /// runs only while the elector leads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn initial_state_exclusions_and_leadership() {
        use vigil_tests::k8s_api::{self, K8sApi, Kind};
        let api = K8sApi::start();
        let pod =
            |ns: &str, n: &str| k8s_api::pod(ns, n, "node-a", "10.0.0.1", k8s_api::Owner::None);
        api.apply(Kind::Pod, pod("shop", "old"));
        api.apply(Kind::Pod, pod("kube-system", "dns"));
        let cfg = decode(
            "include_initial_state: true
k8s_leader_elector: k8s_leader_elector/x
objects:
  - name: pods
    mode: watch
    exclude_watch_type: [DELETED]
    exclude_namespaces: [{regexp: '^kube-'}]",
        );
        let sink = Arc::new(Sink::default());
        let mut next = NextConsumers::new();
        next.insert(Signal::Logs, sink.clone());
        let id = ComponentId::new("k8sobjects", None);
        let set = vigil_core::Settings::new(vigil_core::ComponentKind::Receiver, &id);
        let r = Arc::new(K8sObjects {
            obs: set.receiver_obs("http"),
            id: set.id.clone(),
            cfg: Arc::new(cfg),
            next,
            tasks: set.tasks.clone(),
            client: Mutex::new(None),
        });
        r.set_client(vigil_k8s::client::client_at(&api.url()).unwrap());
        let (tx, _) = tokio::sync::watch::channel(false);
        let mut exts: std::collections::HashMap<ComponentId, Arc<dyn vigil_core::Extension>> =
            Default::default();
        exts.insert(
            ComponentId::parse("k8s_leader_elector/x").unwrap(),
            Arc::new(Elector(tx.clone())),
        );
        let host = Host::new(exts, tokio::sync::mpsc::unbounded_channel().0);
        r.start(&host).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(sink.changes().is_empty(), "nothing before leading");
        assert_eq!(api.count_requests(|q| q.contains("/pods")), 0);

        tx.send_replace(true);
        settle(&sink, 1).await;
        // The initial state, without the excluded namespace.
        assert_eq!(sink.changes(), [("ADDED".to_string(), "old".to_string())]);
        api.apply(Kind::Pod, pod("shop", "new"));
        api.delete(Kind::Pod, "shop", "old");
        api.apply(Kind::Pod, pod("kube-system", "proxy"));
        settle(&sink, 2).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            sink.changes(),
            [
                ("ADDED".to_string(), "old".to_string()),
                ("ADDED".to_string(), "new".to_string())
            ],
            "DELETED and kube-* are excluded"
        );

        // Losing the lease stops the watch; changes meanwhile are not reported by this instance.
        tx.send_replace(false);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        api.apply(Kind::Pod, pod("shop", "while-follower"));
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(sink.changes().len(), 2, "{:?}", sink.changes());
        assert_eq!(api.open_watches(), 0, "the watch was closed");
        r.shutdown().await.unwrap();
    }
}
