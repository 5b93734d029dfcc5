//! `k8s_events` (also `k8sevents`): otelcol's Kubernetes events receiver. It watches core/v1
//! Events (in `namespaces`, or all) and turns each new or updated one whose time (`eventTime`, else
//! `lastTimestamp`, else `firstTimestamp`) is not before the receiver's start into a log record as
//! otelcol writes it: the body is the message; the timestamp the event's time; severity `Normal` →
//! INFO (9), `Warning` → WARN (13) with the type as text; attributes `k8s.event.reason`,
//! `k8s.event.action`, `k8s.event.start_time` (the creation time in Go's `time.Time` format),
//! `k8s.event.name`, `k8s.event.uid`, `k8s.namespace.name` (the involved object's) and
//! `k8s.event.count` when set; resource `k8s.node.name` (the source host) and `k8s.object.kind`,
//! `.name`, `.uid`, `.fieldpath`, `.api_version`, `.resource_version` of the involved object.
//!
//! The watch is `vigil_k8s::objects`': resumed from the last version after a dropped connection,
//! and after a `410 Gone` re-listed with the Events new or changed meanwhile reported (otelcol
//! loses those). With `k8s_leader_elector` it runs only while this instance leads. Not built:
//! `storage` and `dedup_interval` other than 0 (refused at validate).

use async_trait::async_trait;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_core::attrs::{kv_i64, kv_str};
use vigil_core::{
    Component, ComponentId, ConfigError, Host, NextConsumers, Receiver, Signal, Telemetry,
};
use vigil_k8s::kube::api::{Api, DynamicObject};
use vigil_k8s::kube::discovery::ApiResource;
use vigil_k8s::objects::{WatchOptions, WatchType};
use vigil_k8s::AuthType;

const SCOPE: &str =
    "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/k8seventsreceiver";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct K8sEventsConfig {
    #[serde(default)]
    pub auth_type: AuthType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Namespaces to watch; empty watches all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_leader_elector: Option<String>,
    /// otelcol's throttling of MODIFIED events per UID; only 0 (none, otelcol's default) is built.
    #[serde(default, with = "vigil_core::config::duration")]
    pub dedup_interval: Duration,
    /// otelcol's resource-version persistence; not built in vigil.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
}

fn check(cfg: &K8sEventsConfig) -> Result<(), ConfigError> {
    let mut errs = Vec::new();
    crate::k8sobjects::config::check_api_keys(
        cfg.auth_type,
        cfg.context.as_deref(),
        cfg.k8s_leader_elector.as_deref(),
        &mut errs,
    );
    if !cfg.dedup_interval.is_zero() {
        errs.push(ConfigError::at(
            "dedup_interval",
            "throttling MODIFIED events is not built in vigil; only 0 (report every update) is",
        ));
    }
    if cfg.storage.is_some() {
        errs.push(ConfigError::at(
            "storage",
            "resource-version persistence is not built in vigil; remove storage",
        ));
    }
    ConfigError::join(errs).map_or(Ok(()), Err)
}

struct Factory;

/// The `k8s_events` receiver factory (`k8sevents` resolves to it).
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = K8sEventsConfig;

    fn type_name(&self) -> &'static str {
        "k8s_events"
    }

    fn validate(&self, _id: &ComponentId, cfg: &K8sEventsConfig) -> Result<(), ConfigError> {
        check(cfg)
    }
}

impl vigil_core::factory::ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[(Signal::Logs, vigil_core::Stability::Alpha)]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: K8sEventsConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        check(&cfg)?;
        Ok(Arc::new(K8sEvents {
            obs: set.receiver_obs("http"),
            id: set.id,
            cfg,
            next,
            tasks: set.tasks,
            client: Mutex::new(None),
            started: vigil_core::time::now_nanos(),
        }))
    }
}

pub struct K8sEvents {
    id: ComponentId,
    cfg: K8sEventsConfig,
    next: NextConsumers,
    obs: vigil_core::ReceiverObs,
    tasks: vigil_core::Tasks,
    client: Mutex<Option<vigil_k8s::kube::Client>>,
    /// Events older than this (the receiver's creation) are not reported.
    started: u64,
}

impl K8sEvents {
    /// Uses `client` instead of the one `auth_type` describes (tests point it at the API double).
    pub fn set_client(&self, client: vigil_k8s::kube::Client) {
        *vigil_core::lock(&self.client) = Some(client);
    }
}

#[async_trait]
impl Component for K8sEvents {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        let id = self.id.clone();
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
        let leading = match &self.cfg.k8s_leader_elector {
            Some(le) => {
                let le = ComponentId::parse(le).map_err(|e| anyhow::anyhow!("{e}"))?;
                Some(
                    host.leadership(&le)
                        .map_err(|e| anyhow::anyhow!("receivers::{id}::k8s_leader_elector: {e}"))?,
                )
            }
            None => None,
        };
        let namespaces: Vec<Option<String>> = if self.cfg.namespaces.is_empty() {
            vec![None]
        } else {
            self.cfg.namespaces.iter().cloned().map(Some).collect()
        };
        let run = Runner {
            id: id.to_string(),
            client,
            namespaces: Arc::new(namespaces),
            next: self.next.clone(),
            obs: self.obs.clone(),
            started: self.started,
        };
        let stop = self.tasks.stopping();
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
    namespaces: Arc<Vec<Option<String>>>,
    next: NextConsumers,
    obs: vigil_core::ReceiverObs,
    started: u64,
}

impl Runner {
    async fn run_all(self) {
        let ar = ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "Event".into(),
            plural: "events".into(),
        };
        let loops = self.namespaces.iter().map(|ns| {
            let api: Api<DynamicObject> = match ns {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
                None => Api::all_with(self.client.clone(), &ar),
            };
            let me = self.clone();
            let ar = ar.clone();
            async move {
                let id = me.id.clone();
                vigil_k8s::objects::watch_objects(api, ar, WatchOptions::default(), &id, |t, ev| {
                    let logs = match t {
                        WatchType::Added | WatchType::Modified
                            if event_time(&ev).is_some_and(|t| t >= me.started) =>
                        {
                            vec![to_logs(&ev)]
                        }
                        _ => Vec::new(),
                    };
                    me.send(logs)
                })
                .await
            }
        });
        futures::future::join_all(loops).await;
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
                tracing::warn!(receiver = %id, "the pipeline refused Kubernetes events: {e}");
            }
        }
    }
}

/// Nanoseconds since the epoch of an RFC 3339 time.
fn parse_time(v: &Value) -> Option<u64> {
    let s = v.as_str().filter(|s| !s.is_empty())?;
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    t.timestamp_nanos_opt().and_then(|n| u64::try_from(n).ok())
}

/// The event's time: `eventTime`, else `lastTimestamp`, else `firstTimestamp` (otelcol's order).
fn event_time(ev: &Value) -> Option<u64> {
    parse_time(&ev["eventTime"])
        .or_else(|| parse_time(&ev["lastTimestamp"]))
        .or_else(|| parse_time(&ev["firstTimestamp"]))
}

/// A time as Go's `time.Time.String()` prints it (what otelcol writes for
/// `k8s.event.start_time`): `2006-01-02 15:04:05 +0000 UTC`.
fn go_time_string(v: &Value) -> String {
    match v
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    {
        Some(t) => t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M:%S +0000 UTC")
            .to_string(),
        // Go prints a zero time so.
        None => "0001-01-01 00:00:00 +0000 UTC".into(),
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// One Event as otelcol's `k8sEventToLogData` writes it.
fn to_logs(ev: &Value) -> ResourceLogs {
    let io = &ev["involvedObject"];
    let md = &ev["metadata"];
    let resource = vec![
        kv_str("k8s.node.name", s(&ev["source"]["host"])),
        kv_str("k8s.object.kind", s(&io["kind"])),
        kv_str("k8s.object.name", s(&io["name"])),
        kv_str("k8s.object.uid", s(&io["uid"])),
        kv_str("k8s.object.fieldpath", s(&io["fieldPath"])),
        kv_str("k8s.object.api_version", s(&io["apiVersion"])),
        kv_str("k8s.object.resource_version", s(&io["resourceVersion"])),
    ];
    let mut attributes = vec![
        kv_str("k8s.event.reason", s(&ev["reason"])),
        kv_str("k8s.event.action", s(&ev["action"])),
        kv_str(
            "k8s.event.start_time",
            go_time_string(&md["creationTimestamp"]),
        ),
        kv_str("k8s.event.name", s(&md["name"])),
        kv_str("k8s.event.uid", s(&md["uid"])),
        kv_str("k8s.namespace.name", s(&io["namespace"])),
    ];
    if let Some(c) = ev["count"].as_i64().filter(|c| *c != 0) {
        attributes.push(kv_i64("k8s.event.count", c));
    }
    let etype = s(&ev["type"]);
    let (severity_number, severity_text) = match etype.to_lowercase().as_str() {
        "normal" => (9, etype.clone()),
        "warning" => (13, etype.clone()),
        _ => (0, String::new()),
    };
    let record = LogRecord {
        time_unix_nano: event_time(ev).unwrap_or(0),
        severity_number,
        severity_text,
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(s(&ev["message"]))),
        }),
        attributes,
        ..Default::default()
    };
    ResourceLogs {
        resource: Some(Resource {
            attributes: resource,
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::attrs::get_str;

    #[test]
    fn an_event_becomes_otelcols_record() {
        let ev = serde_json::json!({
            "metadata": {"name": "web-1.17a", "namespace": "shop", "uid": "u-1",
                "creationTimestamp": "2026-12-05T10:00:00Z"},
            "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "web-1", "uid": "p-1",
                "apiVersion": "v1", "resourceVersion": "42", "fieldPath": "spec.containers{app}"},
            "reason": "BackOff", "message": "Back-off restarting failed container",
            "source": {"component": "kubelet", "host": "node-a"},
            "firstTimestamp": "2026-12-05T10:00:00Z", "lastTimestamp": "2026-12-05T10:05:00Z",
            "count": 4, "type": "Warning", "eventTime": null});
        let rl = to_logs(&ev);
        let res = &rl.resource.as_ref().unwrap().attributes;
        assert_eq!(get_str(res, "k8s.node.name"), Some("node-a"));
        assert_eq!(get_str(res, "k8s.object.kind"), Some("Pod"));
        assert_eq!(
            get_str(res, "k8s.object.fieldpath"),
            Some("spec.containers{app}")
        );
        let r = &rl.scope_logs[0].log_records[0];
        assert_eq!(
            (r.severity_number, r.severity_text.as_str()),
            (13, "Warning")
        );
        assert_eq!(get_str(&r.attributes, "k8s.event.reason"), Some("BackOff"));
        assert_eq!(
            get_str(&r.attributes, "k8s.event.start_time"),
            Some("2026-12-05 10:00:00 +0000 UTC")
        );
        assert_eq!(get_str(&r.attributes, "k8s.namespace.name"), Some("shop"));
        // lastTimestamp wins over firstTimestamp when eventTime is absent.
        assert_eq!(r.time_unix_nano, 1_796_465_100_000_000_000);
        assert!(r.attributes.iter().any(|kv| kv.key == "k8s.event.count"));
    }

    #[test]
    fn dedup_interval_and_storage_are_refused() {
        let c: K8sEventsConfig =
            serde_json::from_value(serde_json::json!({"dedup_interval": "1m"})).unwrap();
        assert_eq!(check(&c).unwrap_err().path, "dedup_interval");
        let c: K8sEventsConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        assert!(check(&c).is_ok());
    }
}
