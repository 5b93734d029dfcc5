//! `webhook` (logs): posts vigil's events (incidents by default) as one JSON document per batch to any
//! URL, with a Slack-compatible `text` field, so that chat, runbook tools (StackStorm, Rundeck) or a
//! small relay can act on them. The payload is documented in docs/events.md; delivery, retry and
//! queueing are the shared `SendStack`.

use crate::helper::events::{
    attrs_to_json, body_text, endpoint_url, event_name, post_json, rfc3339, JsonBody,
};
use crate::helper::http::{check_client, http_client};
use crate::helper::{
    Delivered, QueueConfig, RetryConfig, SendError, SendSettings, SendStack, Sender,
};
use async_trait::async_trait;
use bytes::Bytes;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use vigil_core::config::{duration, TlsClientConfig};
use vigil_core::factory::{DynExporterFactory, ExporterFactory, FactoryBase};
use vigil_core::{
    ComponentId, ComponentKind, ConfigError, Exporter, Settings, Signal, Stability, Telemetry,
};

/// The payload's format version; bumped only on an incompatible change.
pub const PAYLOAD_VERSION: u64 = 1;

fn default_events() -> Vec<String> {
    vec!["vigil.incident".into()]
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// The `webhook` exporter config: otelcol's HTTP client and exporterhelper keys, and `events`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    #[serde(default)]
    endpoint: Option<String>,
    /// Event names to send; `*` sends every log record.
    #[serde(default = "default_events")]
    events: Vec<String>,
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

impl WebhookConfig {
    fn settings(&self) -> SendSettings {
        SendSettings {
            timeout: self.timeout,
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
        }
    }

    /// Checks what serde cannot; reads the TLS files start would read, builds nothing.
    fn validate(&self, id: &ComponentId) -> Result<(), ConfigError> {
        endpoint_url(id, self.endpoint.as_deref())?;
        if self.events.is_empty() {
            return Err(ConfigError::component(
                ComponentKind::Exporter,
                id,
                "events",
                "expected at least one event name (or \"*\")",
            ));
        }
        self.settings().validate(id)?;
        check_client(id, &self.headers, &self.tls)
    }
}

/// Builds the documented payload from the records whose event name `wanted` accepts.
pub fn payload(data: &Telemetry, wanted: &dyn Fn(&str) -> bool) -> (u32, Json) {
    let mut events = Vec::new();
    let mut lines = Vec::new();
    if let Telemetry::Logs(rls) = data {
        for rl in rls {
            let res = rl
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            for sl in &rl.scope_logs {
                for r in &sl.log_records {
                    let name = event_name(r);
                    if !wanted(name) {
                        continue;
                    }
                    let body = body_text(r);
                    let severity = if r.severity_text.is_empty() {
                        "INFO".to_string()
                    } else {
                        r.severity_text.clone()
                    };
                    lines.push(format!("[{severity}] {body}"));
                    events.push(json!({
                        "event": name,
                        "time": rfc3339(r.time_unix_nano).or_else(|| rfc3339(r.observed_time_unix_nano)),
                        "severity": severity,
                        "body": body,
                        "resource": attrs_to_json(res),
                        "attributes": attrs_to_json(&r.attributes),
                    }));
                }
            }
        }
    }
    let n = u32::try_from(events.len()).unwrap_or(u32::MAX);
    (
        n,
        json!({
            "source": "vigil",
            "version": PAYLOAD_VERSION,
            "text": lines.join("\n"),
            "events": events,
        }),
    )
}

/// The webhook transport.
pub struct WebhookSender {
    client: reqwest::Client,
    url: Url,
    events: Vec<String>,
}

#[async_trait]
impl Sender for WebhookSender {
    type Request = JsonBody;

    fn prepare(&self, data: &Telemetry) -> Result<JsonBody, SendError> {
        let all = self.events.iter().any(|e| e == "*");
        let (n, body) = payload(data, &|name| all || self.events.iter().any(|e| e == name));
        let body = serde_json::to_vec(&body)
            .map_err(|e| SendError::permanent(format!("cannot encode the payload: {e}")))?;
        Ok(JsonBody {
            events: n,
            body: Bytes::from(body),
        })
    }

    async fn send(&self, req: &JsonBody) -> Result<Delivered, SendError> {
        // Batches with no selected event are normal (most logs are not vigil events).
        if req.events == 0 {
            return Ok(Delivered::default());
        }
        post_json(&self.client, &self.url, req.body.clone()).await
    }
}

fn build(set: &Settings, cfg: WebhookConfig) -> Result<SendStack<WebhookSender>, ConfigError> {
    let id = &set.id;
    let settings = cfg.settings();
    let sender = WebhookSender {
        client: http_client(id, &cfg.headers, &cfg.tls)?,
        url: endpoint_url(id, cfg.endpoint.as_deref())?,
        events: cfg.events,
    };
    Ok(SendStack::new(set, settings, sender))
}

struct Factory;

/// The `webhook` exporter factory.
pub fn factory() -> Arc<dyn DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl FactoryBase for Factory {
    type Config = WebhookConfig;

    fn type_name(&self) -> &'static str {
        "webhook"
    }

    fn validate(&self, id: &ComponentId, cfg: &WebhookConfig) -> Result<(), ConfigError> {
        cfg.validate(id)
    }
}

impl ExporterFactory for Factory {
    /// vigil's own exporter, so `development` as otelcol marks a new component.
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[(Signal::Logs, Stability::Development)]
    }

    fn create(&self, set: Settings, cfg: WebhookConfig) -> Result<Arc<dyn Exporter>, ConfigError> {
        Ok(Arc::new(build(&set, cfg)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::attrs::kv_str;
    use vigil_core::otlp::common::v1::{any_value::Value, AnyValue};
    use vigil_core::otlp::logs::v1::LogRecord;
    use vigil_core::otlp::logs::v1::{ResourceLogs, ScopeLogs};
    use vigil_core::otlp::resource::v1::Resource;

    fn rec(event: &str, body: &str) -> LogRecord {
        LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000,
            event_name: event.into(),
            severity_text: "ERROR".into(),
            body: Some(AnyValue {
                value: Some(Value::StringValue(body.into())),
            }),
            attributes: vec![kv_str("vigil.incident.id", "7")],
            ..Default::default()
        }
    }

    #[test]
    fn payload_selects_events_and_carries_slack_text() {
        let data = Telemetry::Logs(vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv_str("host.name", "n1")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![rec("vigil.incident", "incident 7 open"), rec("", "noise")],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let (n, p) = payload(&data, &|e| e == "vigil.incident");
        assert_eq!(n, 1);
        assert_eq!(p["text"], "[ERROR] incident 7 open");
        assert_eq!(p["version"], 1);
        assert_eq!(p["events"][0]["attributes"]["vigil.incident.id"], "7");
        assert_eq!(p["events"][0]["resource"]["host.name"], "n1");
        assert_eq!(p["events"][0]["time"], "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn config_errors_name_the_key() {
        let id = ComponentId::parse("webhook").unwrap();
        let check = |v: Json| factory().validate(&id, &v).unwrap_err().to_string();
        let e = check(json!({}));
        assert!(e.contains("endpoint"), "{e}");
        let e = check(json!({"endpoint": "ftp://x"}));
        assert!(e.contains("endpoint"), "{e}");
        let e = check(json!({"endpoint": "http://x", "headers": {"a b": "1"}}));
        assert!(e.contains("headers"), "{e}");
        let e = check(json!({"endpoint": "http://x", "events": []}));
        assert!(e.contains("events"), "{e}");
    }
}
