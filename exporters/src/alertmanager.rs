//! `alertmanager` (logs): posts `vigil.incident` records (and, with `send_anomalies`, single
//! `vigil.anomaly` episodes) to Prometheus Alertmanager's API v2 (`POST /api/v2/alerts`), so that the
//! routing, silencing and paging people already run applies to vigil's findings. An incident is one
//! alert: opened and updated with an `endsAt` in the future, and ended with `endsAt` when it resolves.
//! Delivery, retry and queueing are the shared `SendStack`.

use crate::helper::events::{body_text, endpoint_url, event_name, post_json, rfc3339, JsonBody};
use crate::helper::http::{check_client, http_client};
use crate::helper::{
    Delivered, QueueConfig, RetryConfig, SendError, SendSettings, SendStack, Sender,
};
use async_trait::async_trait;
use bytes::Bytes;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vigil_core::attrs::{get, get_str, value_to_string};
use vigil_core::config::{duration, TlsClientConfig};
use vigil_core::factory::{DynExporterFactory, ExporterFactory, FactoryBase};
use vigil_core::otlp::common::v1::{any_value::Value, KeyValue};
use vigil_core::otlp::logs::v1::LogRecord;
use vigil_core::{
    ComponentId, ComponentKind, ConfigError, Exporter, Settings, Signal, Stability, Telemetry,
};

/// Alerts whose identity labels are remembered at most. Past it the oldest is forgotten, and a later
/// update of that alert is sent with freshly mapped labels.
const MAX_REMEMBERED: usize = 10_000;

fn default_alertname() -> String {
    "VigilIncident".into()
}

fn default_anomaly_alertname() -> String {
    "VigilAnomaly".into()
}

fn default_annotations() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("summary".into(), "body".into()),
        (
            "root_cause_candidates".into(),
            "vigil.incident.root_cause.candidates".into(),
        ),
        ("services".into(), "vigil.incident.services".into()),
    ])
}

fn default_resolve_timeout() -> Duration {
    Duration::from_secs(3600)
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// The `alertmanager` exporter config: the alert mapping, otelcol's HTTP client keys and the
/// exporterhelper keys.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Alertmanager's base URL; `/api/v2/alerts` is appended.
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default = "default_alertname")]
    alertname: String,
    #[serde(default = "default_anomaly_alertname")]
    anomaly_alertname: String,
    /// label name → attribute (record, then resource; `body` and `severity` are the record's own).
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    static_labels: BTreeMap<String, String>,
    /// annotation name → attribute, looked up like `labels`.
    #[serde(default = "default_annotations")]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    send_anomalies: bool,
    /// `endsAt` of an open alert lies this far ahead; Alertmanager resolves it then if vigil never
    /// sends the resolve (it stopped, or the record was lost).
    #[serde(default = "default_resolve_timeout", with = "duration")]
    resolve_timeout: Duration,
    #[serde(default)]
    generator_url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    tls: TlsClientConfig,
    #[serde(default = "default_timeout", with = "duration")]
    timeout: Duration,
    #[serde(default)]
    retry_on_failure: RetryConfig,
    #[serde(default)]
    sending_queue: QueueConfig,
}

/// Alertmanager label names follow Prometheus': `[a-zA-Z_][a-zA-Z0-9_]*`.
fn valid_label(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Alert key → its first labels, and the keys in the order they were first seen (for the cap).
type Remembered = (
    HashMap<String, Map<String, Json>>,
    std::collections::VecDeque<String>,
);

/// The transport, with the labels each alert was first sent with.
pub struct AlertmanagerSender {
    client: reqwest::Client,
    url: Url,
    cfg: AlertmanagerConfig,
    /// Alert key → identity labels. Alertmanager tells alerts apart by labels only, so an update or a
    /// resolve must repeat the first labels even if a mapped attribute changed in between.
    remembered: Mutex<Remembered>,
}

fn lookup(r: &LogRecord, res: &[KeyValue], name: &str) -> Option<String> {
    match name {
        "body" => return Some(body_text(r)),
        "severity" => return Some(r.severity_text.to_ascii_lowercase()),
        _ => {}
    }
    let v = get(&r.attributes, name).or_else(|| get(res, name))?;
    Some(match v {
        Value::ArrayValue(a) => a
            .values
            .iter()
            .filter_map(|x| x.value.as_ref().map(value_to_string))
            .collect::<Vec<_>>()
            .join("\n"),
        other => value_to_string(other),
    })
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl AlertmanagerSender {
    /// One alert for a record, or `None` if it is not one this exporter sends.
    fn alert(&self, r: &LogRecord, res: &[KeyValue], now: u64) -> Option<Json> {
        let cfg = &self.cfg;
        let ahead = now.saturating_add(u64::try_from(cfg.resolve_timeout.as_nanos()).ok()?);
        let (key, alertname, id_label, starts, ends, done) = match event_name(r) {
            "vigil.incident" => {
                let id = get_str(&r.attributes, "vigil.incident.id")?.to_string();
                let resolved = get_str(&r.attributes, "vigil.incident.status") == Some("resolved");
                let starts = get_str(&r.attributes, "vigil.incident.first_seen")
                    .map(str::to_string)
                    .or_else(|| rfc3339(r.time_unix_nano));
                // Alertmanager only takes an alert as resolved when `endsAt` has passed; a future one
                // (a record stamped by a clock running ahead) would merge with the open alert's
                // later `endsAt` and keep it firing.
                let end_ns = if resolved {
                    r.time_unix_nano.min(now).max(1)
                } else {
                    ahead
                };
                (
                    format!("i:{id}"),
                    &cfg.alertname,
                    ("incident_id", id),
                    starts,
                    rfc3339(end_ns),
                    resolved,
                )
            }
            "vigil.anomaly" if cfg.send_anomalies => {
                let series = get_str(&r.attributes, "vigil.anomaly.series")?.to_string();
                let ended = get_str(&r.attributes, "vigil.anomaly.state") == Some("end");
                let starts = if ended {
                    get_str(&r.attributes, "vigil.anomaly.started_at").map(str::to_string)
                } else {
                    rfc3339(r.time_unix_nano)
                };
                let end_ns = if ended {
                    r.time_unix_nano.min(now).max(1)
                } else {
                    ahead
                };
                (
                    format!("a:{series}"),
                    &cfg.anomaly_alertname,
                    ("series", series),
                    starts,
                    rfc3339(end_ns),
                    ended,
                )
            }
            _ => return None,
        };
        let labels = {
            let mut mem = vigil_core::lock(&self.remembered);
            let labels = match mem.0.get(&key) {
                Some(l) => l.clone(),
                None => {
                    let mut l = Map::new();
                    for (k, v) in &cfg.static_labels {
                        l.insert(k.clone(), Json::String(v.clone()));
                    }
                    for (label, attr) in &cfg.labels {
                        if let Some(v) = lookup(r, res, attr) {
                            l.insert(label.clone(), Json::String(v));
                        }
                    }
                    l.insert("alertname".into(), Json::String(alertname.clone()));
                    l.insert(id_label.0.into(), Json::String(id_label.1));
                    if !done {
                        mem.0.insert(key.clone(), l.clone());
                        mem.1.push_back(key.clone());
                        if mem.1.len() > MAX_REMEMBERED {
                            if let Some(old) = mem.1.pop_front() {
                                mem.0.remove(&old);
                            }
                        }
                    }
                    l
                }
            };
            if done {
                mem.0.remove(&key);
                mem.1.retain(|k| k != &key);
            }
            labels
        };
        let mut annotations = Map::new();
        for (name, attr) in &cfg.annotations {
            if let Some(v) = lookup(r, res, attr).filter(|v| !v.is_empty()) {
                annotations.insert(name.clone(), Json::String(v));
            }
        }
        let mut alert = json!({
            "labels": labels,
            "annotations": annotations,
            "endsAt": ends,
        });
        if let Some(s) = starts {
            alert["startsAt"] = Json::String(s);
        }
        if let Some(g) = &cfg.generator_url {
            alert["generatorURL"] = Json::String(g.clone());
        }
        Some(alert)
    }
}

#[async_trait]
impl Sender for AlertmanagerSender {
    type Request = JsonBody;

    fn prepare(&self, data: &Telemetry) -> Result<JsonBody, SendError> {
        let now = now_ns();
        let mut alerts = Vec::new();
        if let Telemetry::Logs(rls) = data {
            for rl in rls {
                let res = rl
                    .resource
                    .as_ref()
                    .map(|r| r.attributes.as_slice())
                    .unwrap_or(&[]);
                for sl in &rl.scope_logs {
                    for r in &sl.log_records {
                        alerts.extend(self.alert(r, res, now));
                    }
                }
            }
        }
        let n = u32::try_from(alerts.len()).unwrap_or(u32::MAX);
        let body = serde_json::to_vec(&alerts)
            .map_err(|e| SendError::permanent(format!("cannot encode the alerts: {e}")))?;
        Ok(JsonBody {
            events: n,
            body: Bytes::from(body),
        })
    }

    async fn send(&self, req: &JsonBody) -> Result<Delivered, SendError> {
        if req.events == 0 {
            return Ok(Delivered::default());
        }
        post_json(&self.client, &self.url, req.body.clone()).await
    }
}

impl AlertmanagerConfig {
    fn settings(&self) -> SendSettings {
        SendSettings {
            timeout: self.timeout,
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
        }
    }

    /// `endpoint` with Alertmanager's API path appended.
    fn url(&self, id: &ComponentId) -> Result<Url, ConfigError> {
        let mut url = endpoint_url(id, self.endpoint.as_deref())?;
        let path = format!("{}/api/v2/alerts", url.path().trim_end_matches('/'));
        url.set_path(&path);
        Ok(url)
    }

    /// Checks what serde cannot; reads the TLS files start would read, builds nothing.
    fn validate(&self, id: &ComponentId) -> Result<(), ConfigError> {
        let err = |path: String, msg: String| {
            ConfigError::component(ComponentKind::Exporter, id, path, msg)
        };
        self.url(id)?;
        for (section, names) in [
            ("labels", &self.labels),
            ("static_labels", &self.static_labels),
        ] {
            for name in names.keys() {
                if !valid_label(name) || name == "alertname" {
                    return Err(err(
                        format!("{section}::{name}"),
                        "expected a label name matching [a-zA-Z_][a-zA-Z0-9_]* other than alertname"
                            .into(),
                    ));
                }
            }
        }
        for (key, name) in [
            ("alertname", &self.alertname),
            ("anomaly_alertname", &self.anomaly_alertname),
        ] {
            if name.is_empty() {
                return Err(err(key.into(), "expected a non-empty name".into()));
            }
        }
        if self.resolve_timeout.is_zero() {
            return Err(err(
                "resolve_timeout".into(),
                "expected a duration above 0 such as \"1h\"".into(),
            ));
        }
        self.settings().validate(id)?;
        check_client(id, &self.headers, &self.tls)
    }
}

fn build(
    set: &Settings,
    cfg: AlertmanagerConfig,
) -> Result<SendStack<AlertmanagerSender>, ConfigError> {
    let id = &set.id;
    let settings = cfg.settings();
    let sender = AlertmanagerSender {
        client: http_client(id, &cfg.headers, &cfg.tls)?,
        url: cfg.url(id)?,
        cfg,
        remembered: Mutex::new(Default::default()),
    };
    Ok(SendStack::new(set, settings, sender))
}

struct Factory;

/// The `alertmanager` exporter factory.
pub fn factory() -> Arc<dyn DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl FactoryBase for Factory {
    type Config = AlertmanagerConfig;

    fn type_name(&self) -> &'static str {
        "alertmanager"
    }

    fn validate(&self, id: &ComponentId, cfg: &AlertmanagerConfig) -> Result<(), ConfigError> {
        cfg.validate(id)
    }
}

impl ExporterFactory for Factory {
    /// vigil's own mapping of incidents to alerts, so `development` as otelcol marks a new
    /// component (otelcol-contrib's `alertmanager` exporter sends spans, not incidents).
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[(Signal::Logs, Stability::Development)]
    }

    fn create(
        &self,
        set: Settings,
        cfg: AlertmanagerConfig,
    ) -> Result<Arc<dyn Exporter>, ConfigError> {
        Ok(Arc::new(build(&set, cfg)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::attrs::kv_str;
    use vigil_core::otlp::common::v1::AnyValue;

    fn incident(status: &str, root: &str, t: u64) -> LogRecord {
        LogRecord {
            time_unix_nano: t,
            event_name: "vigil.incident".into(),
            severity_text: "ERROR".into(),
            body: Some(AnyValue {
                value: Some(Value::StringValue(format!("incident 7 {status}"))),
            }),
            attributes: vec![
                kv_str("vigil.incident.id", "7"),
                kv_str("vigil.incident.status", status),
                kv_str("vigil.incident.first_seen", "2023-11-14T22:13:20.000Z"),
                kv_str("vigil.incident.root_cause", root),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn labels_stay_those_of_the_first_send_and_resolve_sets_ends_at() {
        let id = ComponentId::parse("alertmanager").unwrap();
        let cfg: AlertmanagerConfig = serde_json::from_value(
            json!({"endpoint": "http://127.0.0.1:9", "labels": {"root_cause": "vigil.incident.root_cause"},
                    "static_labels": {"team": "sre"}}),
        )
        .unwrap();
        cfg.validate(&id).unwrap();
        let stack = build(&Settings::new(ComponentKind::Exporter, &id), cfg).unwrap();
        let s = stack.sender();
        let res = [kv_str("host.name", "n1")];
        let open = s.alert(&incident("open", "db-1", 5), &res, 10).unwrap();
        assert_eq!(
            open["labels"],
            json!({"alertname": "VigilIncident", "incident_id": "7", "root_cause": "db-1", "team": "sre"})
        );
        assert_eq!(open["annotations"]["summary"], "incident 7 open");
        assert_eq!(open["startsAt"], "2023-11-14T22:13:20.000Z");
        let end = 1_700_000_100_000_000_000;
        let resolved = s
            .alert(&incident("resolved", "api", end), &res, end + 5_000_000_000)
            .unwrap();
        assert_eq!(resolved["labels"]["root_cause"], "db-1");
        assert_eq!(resolved["endsAt"], "2023-11-14T22:15:00.000Z");
        // A resolve stamped ahead of the wall clock must not leave the alert firing until then.
        s.alert(&incident("open", "db-1", 5), &res, 10).unwrap();
        let early = s
            .alert(
                &incident("resolved", "db-1", end),
                &res,
                end - 60_000_000_000,
            )
            .unwrap();
        assert_eq!(early["endsAt"], "2023-11-14T22:14:00.000Z");
        // Anomalies are not sent unless asked for.
        let mut a = incident("open", "x", 5);
        a.event_name = "vigil.anomaly".into();
        assert!(s.alert(&a, &res, 10).is_none());
    }

    #[test]
    fn config_errors_name_the_key() {
        let id = ComponentId::parse("alertmanager").unwrap();
        let check = |v: Json| factory().validate(&id, &v).unwrap_err().to_string();
        let e = check(json!({"endpoint": "http://x", "labels": {"a-b": "x"}}));
        assert!(e.contains("labels::a-b"), "{e}");
        let e = check(json!({}));
        assert!(e.contains("endpoint"), "{e}");
        let e = check(json!({"endpoint": "http://x", "anomaly_alertname": ""}));
        assert!(e.contains("anomaly_alertname"), "{e}");
    }
}
