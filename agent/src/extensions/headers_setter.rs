//! `headers_setter`: a client authenticator that sets, as otelcol's `headerssetterextension`,
//! headers on every request of the exporters that name it (`auth: {authenticator: headers_setter}`
//! on `otlp` and `otlphttp`). Each entry of `headers` has a `key`, an `action` (`upsert` by default,
//! `insert`, `update` or `delete`, applied to the request's headers so far: the exporter's own
//! `headers:`) and, except for `delete`, a `value`.
//!
//! otelcol's `from_context` (copy a header of the request that brought the data in) and its
//! `default_value` are refused at validate: vigil's receivers do not carry client metadata down the
//! pipeline, so the value would always be missing. Accepting the key and sending nothing would
//! hide that.

use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use vigil_core::config::decode;
use vigil_core::{
    ClientAuth, Component, ComponentId, ComponentKind, ConfigError, Extension, ExtensionFactory,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadersSetterConfig {
    #[serde(default)]
    headers: Vec<HeaderConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderConfig {
    #[serde(default)]
    key: String,
    #[serde(default)]
    action: Action,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    from_context: Option<String>,
    #[serde(default)]
    default_value: Option<String>,
    #[serde(default)]
    from_attribute: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Action {
    Insert,
    Update,
    #[default]
    Upsert,
    Delete,
}

fn config_error(id: &ComponentId, key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Extension, id, key, msg)
}

/// One header rule, ready to apply.
struct Rule {
    key: HeaderName,
    action: Action,
    value: Option<HeaderValue>,
}

fn parse(id: &ComponentId, config: &Value) -> Result<Vec<Rule>, ConfigError> {
    let cfg: HeadersSetterConfig = decode(ComponentKind::Extension, id, config)?;
    if cfg.headers.is_empty() {
        return Err(config_error(
            id,
            "headers",
            "is empty: list at least one {key, value}",
        ));
    }
    cfg.headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let at = |k: &str| format!("headers[{i}]::{k}");
            let unsupported = |k: &str| {
                config_error(
                    id,
                    &at(k),
                    format!("is not supported: vigil's receivers do not carry request metadata down the pipeline, so {k} would never find a value; use value"),
                )
            };
            if h.from_context.is_some() {
                return Err(unsupported("from_context"));
            }
            if h.default_value.is_some() {
                return Err(unsupported("default_value"));
            }
            if h.from_attribute.is_some() {
                return Err(unsupported("from_attribute"));
            }
            if h.key.is_empty() {
                return Err(config_error(id, &at("key"), "is required"));
            }
            let key = HeaderName::from_bytes(h.key.as_bytes()).map_err(|_| {
                config_error(id, &at("key"), format!("{:?} is not a valid header name", h.key))
            })?;
            let value = match (&h.value, h.action) {
                (Some(_), Action::Delete) => {
                    return Err(config_error(id, &at("value"), "must not be set with action delete"))
                }
                (None, Action::Delete) => None,
                (None, _) => return Err(config_error(id, &at("value"), "is required (the header's value)")),
                (Some(v), _) => {
                    let mut v = HeaderValue::from_str(v).map_err(|_| {
                        config_error(id, &at("value"), "must be printable ASCII without line breaks")
                    })?;
                    // Such headers often carry tenant keys: keep them out of debug output.
                    v.set_sensitive(true);
                    Some(v)
                }
            };
            Ok(Rule {
                key,
                action: h.action,
                value,
            })
        })
        .collect()
}

struct Factory;

pub fn factory() -> Arc<dyn ExtensionFactory> {
    Arc::new(Factory)
}

impl ExtensionFactory for Factory {
    fn type_name(&self) -> &'static str {
        "headers_setter"
    }

    fn validate(&self, id: &ComponentId, config: &Value) -> Result<(), ConfigError> {
        parse(id, config).map(|_| ())
    }

    fn create(&self, id: &ComponentId, config: &Value) -> Result<Arc<dyn Extension>, ConfigError> {
        Ok(Arc::new(HeadersSetter {
            rules: Arc::new(Rules(parse(id, config)?)),
        }))
    }
}

struct HeadersSetter {
    rules: Arc<Rules>,
}

struct Rules(Vec<Rule>);

#[async_trait]
impl ClientAuth for Rules {
    /// The headers the rules would set on a request with no headers of its own.
    async fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        let mut h = HeaderMap::new();
        self.apply(&mut h).await?;
        Ok(h.into_iter()
            .filter_map(|(k, v)| k.map(|k| (k, v)))
            .collect())
    }

    async fn apply(&self, headers: &mut HeaderMap) -> Result<(), String> {
        for rule in &self.0 {
            let present = headers.contains_key(&rule.key);
            match (rule.action, &rule.value) {
                (Action::Delete, _) => {
                    headers.remove(&rule.key);
                }
                (Action::Insert, Some(v)) if !present => {
                    headers.insert(rule.key.clone(), v.clone());
                }
                (Action::Update, Some(v)) if present => {
                    headers.insert(rule.key.clone(), v.clone());
                }
                (Action::Upsert, Some(v)) => {
                    headers.insert(rule.key.clone(), v.clone());
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Component for HeadersSetter {}

impl Extension for HeadersSetter {
    fn client_auth(&self) -> Option<Arc<dyn ClientAuth>> {
        Some(self.rules.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id() -> ComponentId {
        ComponentId::parse("headers_setter").unwrap()
    }

    #[tokio::test]
    async fn actions_apply_to_the_exporters_headers() {
        let ext = factory()
            .create(
                &id(),
                &json!({"headers": [
                    {"key": "X-Scope-OrgID", "value": "tenant-a"},
                    {"key": "X-Inserted", "value": "new", "action": "insert"},
                    {"key": "X-Kept", "value": "not-used", "action": "insert"},
                    {"key": "X-Updated", "value": "changed", "action": "update"},
                    {"key": "X-Absent", "value": "not-used", "action": "update"},
                    {"key": "X-Secret", "action": "delete"},
                ]}),
            )
            .unwrap();
        let auth = ext.client_auth().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-kept", "old".parse().unwrap());
        h.insert("x-updated", "old".parse().unwrap());
        h.insert("x-secret", "s".parse().unwrap());
        auth.apply(&mut h).await.unwrap();
        let get = |k: &str| h.get(k).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(get("x-scope-orgid").as_deref(), Some("tenant-a"));
        assert_eq!(get("x-inserted").as_deref(), Some("new"));
        assert_eq!(get("x-kept").as_deref(), Some("old"));
        assert_eq!(get("x-updated").as_deref(), Some("changed"));
        assert_eq!(get("x-absent"), None);
        assert_eq!(get("x-secret"), None);
    }

    #[test]
    fn from_context_is_refused_by_name() {
        let check = |v: Value| factory().validate(&id(), &v).unwrap_err().to_string();
        let e = check(json!({"headers": [{"key": "X-Tenant", "from_context": "tenant"}]}));
        assert!(
            e.contains("headers_setter::headers[0]::from_context: is not supported")
                && e.contains("use value"),
            "{e}"
        );
        assert!(
            check(json!({"headers": [{"key": "k", "value": "v", "default_value": "d"}]}))
                .contains("default_value")
        );
        assert!(
            check(json!({"headers": [{"value": "v"}]})).contains("headers[0]::key: is required")
        );
        assert!(
            check(json!({"headers": [{"key": "k"}]})).contains("headers[0]::value: is required")
        );
        assert!(
            check(json!({"headers": [{"key": "k", "value": "v", "action": "delete"}]}))
                .contains("action delete")
        );
        assert!(
            check(json!({"headers": [{"key": "bad key", "value": "v"}]}))
                .contains("not a valid header name")
        );
        assert!(
            check(json!({"headers": [{"key": "k", "value": "v", "action": "merge"}]}))
                .contains("action")
        );
        assert!(check(json!({"headers": []})).contains("headers: is empty"));
    }

    /// The real `otlphttp` exporter sends the header, in place of its own value for the same key.
    #[tokio::test]
    async fn an_otlphttp_exporter_sends_the_header() {
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        use std::sync::Mutex;
        use vigil_core::{Host, Telemetry};
        let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let log = seen.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: HeaderMap| {
                let log = log.clone();
                async move {
                    let get = |k: &str| {
                        headers
                            .get(k)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string()
                    };
                    log.lock()
                        .unwrap()
                        .push((get("x-scope-orgid"), get("x-other")));
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let ext = factory()
            .create(
                &id(),
                &json!({"headers": [{"key": "X-Scope-OrgID", "value": "tenant-a"}]}),
            )
            .unwrap();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let host = Host::new([(id(), ext)].into_iter().collect(), tx);
        let exporter = vigil_exporters::otlphttp::factory()
            .create(
                &ComponentId::parse("otlphttp/b").unwrap(),
                &json!({
                    "endpoint": format!("http://{addr}"),
                    "auth": {"authenticator": "headers_setter"},
                    "headers": {"X-Scope-OrgID": "from-exporter", "X-Other": "kept"},
                    "sending_queue": {"enabled": false},
                    "retry_on_failure": {"enabled": false},
                }),
            )
            .unwrap();
        exporter.start(&host).await.unwrap();
        exporter
            .consume(Telemetry::Traces(vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        name: "s".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }]))
            .await
            .unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            vec![("tenant-a".to_string(), "kept".to_string())]
        );
    }
}
