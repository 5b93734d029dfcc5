//! `headers_setter`: a client authenticator that sets, as otelcol's `headerssetterextension`,
//! headers on every request of the exporters that name it (`auth: {authenticator: headers_setter}`
//! on `otlp` and `otlphttp`). Each entry of `headers` has a `key`, an `action` (`upsert` by default,
//! `insert`, `update` or `delete`, applied to the request's headers so far: the exporter's own
//! `headers:`) and, except for `delete`, where the value comes from: `value` (fixed),
//! `from_context` (a key of the client metadata of the request that brought the data in, which a
//! receiver attaches with `include_metadata: true`; see [`vigil_core::ClientMetadata`]) or
//! `from_attribute` (an attribute of the principal the receiver's authenticator proved:
//! `subject`/`username`, or `membership`/`groups` as a JSON list). `default_value` is used when
//! the key or attribute is absent; with neither, the header is left alone.

use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use vigil_core::factory::{DynExtensionFactory, ExtensionFactory, FactoryBase};
use vigil_core::{
    ClientAuth, ClientMetadata, Component, ComponentId, ComponentKind, ConfigError, Extension,
    Settings, Stability,
};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeadersSetterConfig {
    #[serde(default)]
    headers: Vec<HeaderConfig>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct HeaderConfig {
    #[serde(default)]
    key: String,
    #[serde(default)]
    action: Action,
    #[serde(default)]
    value: Option<String>,
    /// A client metadata key (a request header name, case-insensitive).
    #[serde(default)]
    from_context: Option<String>,
    #[serde(default)]
    default_value: Option<String>,
    /// An attribute of the authenticated principal.
    #[serde(default)]
    from_attribute: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
enum Action {
    Insert,
    Update,
    #[default]
    Upsert,
    Delete,
}

/// The principal attributes `from_attribute` can name: otelcol's `basicauth` (`username`) and
/// `oidc` (`subject`, `membership`) attribute names, and vigil's plain `groups`.
const ATTRIBUTES: [&str; 4] = ["subject", "username", "membership", "groups"];

fn config_error(id: &ComponentId, key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Extension, id, key, msg)
}

/// Where a rule's value comes from.
enum Source {
    Fixed(HeaderValue),
    /// A client metadata key (lower case), and the value when the request had none.
    Context(String, Option<HeaderValue>),
    /// A principal attribute, and the value when there is none.
    Attribute(String, Option<HeaderValue>),
    /// `delete` takes no value.
    None,
}

/// One header rule, ready to apply.
struct Rule {
    key: HeaderName,
    action: Action,
    source: Source,
}

/// A header value marked sensitive: such headers often carry tenant keys.
fn sensitive(v: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(v).ok()?;
    v.set_sensitive(true);
    Some(v)
}

fn parse(id: &ComponentId, cfg: &HeadersSetterConfig) -> Result<Vec<Rule>, ConfigError> {
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
            if h.key.is_empty() {
                return Err(config_error(id, &at("key"), "is required"));
            }
            let key = HeaderName::from_bytes(h.key.as_bytes()).map_err(|_| {
                config_error(id, &at("key"), format!("{:?} is not a valid header name", h.key))
            })?;
            let text = |k: &str, v: &str| {
                sensitive(v).ok_or_else(|| {
                    config_error(id, &at(k), "must be printable ASCII without line breaks")
                })
            };
            let default = match &h.default_value {
                Some(d) => Some(text("default_value", d)?),
                None => None,
            };
            let sources = [h.value.is_some(), h.from_context.is_some(), h.from_attribute.is_some()];
            if sources.iter().filter(|s| **s).count() > 1 {
                return Err(config_error(
                    id,
                    &at("value"),
                    "value, from_context and from_attribute are mutually exclusive",
                ));
            }
            let source = match (h.action, &h.value, &h.from_context, &h.from_attribute) {
                (Action::Delete, None, None, None) if default.is_none() => Source::None,
                (Action::Delete, ..) => {
                    return Err(config_error(
                        id,
                        &at("value"),
                        "must not be set with action delete (nor from_context, from_attribute or default_value)",
                    ))
                }
                (_, Some(_), _, _) if default.is_some() => {
                    return Err(config_error(
                        id,
                        &at("default_value"),
                        "goes with from_context or from_attribute, not with value",
                    ))
                }
                (_, Some(v), _, _) => Source::Fixed(text("value", v)?),
                (_, None, Some(k), _) => {
                    if k.is_empty() {
                        return Err(config_error(id, &at("from_context"), "must not be empty"));
                    }
                    Source::Context(k.to_ascii_lowercase(), default)
                }
                (_, None, None, Some(a)) => {
                    if !ATTRIBUTES.contains(&a.as_str()) {
                        return Err(config_error(
                            id,
                            &at("from_attribute"),
                            format!("{a:?} is not an attribute vigil's authenticators set; expected one of {}", ATTRIBUTES.join(", ")),
                        ));
                    }
                    Source::Attribute(a.clone(), default)
                }
                (_, None, None, None) => {
                    return Err(config_error(
                        id,
                        &at("value"),
                        "is required (the header's value), or from_context or from_attribute",
                    ))
                }
            };
            Ok(Rule {
                key,
                action: h.action,
                source,
            })
        })
        .collect()
}

struct Factory;

/// The `headers_setter` extension factory, for the registry.
pub fn factory() -> Arc<dyn DynExtensionFactory> {
    vigil_core::factory::extension(Factory)
}

impl FactoryBase for Factory {
    type Config = HeadersSetterConfig;

    fn type_name(&self) -> &'static str {
        "headers_setter"
    }

    /// At least one header must be listed.
    fn default_config(&self) -> Option<HeadersSetterConfig> {
        None
    }

    fn validate(&self, id: &ComponentId, cfg: &HeadersSetterConfig) -> Result<(), ConfigError> {
        parse(id, cfg).map(|_| ())
    }
}

impl ExtensionFactory for Factory {
    fn stability(&self) -> Stability {
        Stability::Alpha
    }

    fn create(
        &self,
        set: Settings,
        cfg: HeadersSetterConfig,
    ) -> Result<Arc<dyn Extension>, ConfigError> {
        Ok(Arc::new(HeadersSetter {
            rules: Arc::new(Rules(parse(&set.id, &cfg)?)),
        }))
    }
}

struct HeadersSetter {
    rules: Arc<Rules>,
}

struct Rules(Vec<Rule>);

impl Rule {
    /// The value to set for the call in progress; `None` leaves the header alone. The client's
    /// metadata is read from the task-local value the receiver (and the batch processor, and the
    /// sending queue) carried down to this exporter call.
    fn value(&self, meta: Option<&ClientMetadata>) -> Result<Option<HeaderValue>, String> {
        match &self.source {
            Source::None => Ok(None),
            Source::Fixed(v) => Ok(Some(v.clone())),
            Source::Context(key, default) => {
                let values = meta.map(|m| m.get(key)).unwrap_or_default();
                match values {
                    [] => Ok(default.clone()),
                    [one] => Ok(sensitive(one)),
                    // As otelcol: which one to send cannot be decided.
                    many => Err(format!(
                        "headers_setter: the client sent {} values of {key:?}; cannot choose one for {}",
                        many.len(),
                        self.key
                    )),
                }
            }
            Source::Attribute(name, default) => {
                let Some(p) = meta.and_then(|m| m.auth()) else {
                    return Ok(default.clone());
                };
                let v = match name.as_str() {
                    "subject" | "username" => p.name.clone(),
                    _ => serde_json::to_string(&p.groups).unwrap_or_default(),
                };
                Ok(sensitive(&v).or_else(|| default.clone()))
            }
        }
    }
}

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
        let meta = ClientMetadata::current();
        for rule in &self.0 {
            let present = headers.contains_key(&rule.key);
            let value = rule.value(meta.as_deref())?;
            match (rule.action, value) {
                (Action::Delete, _) => {
                    headers.remove(&rule.key);
                }
                (Action::Insert, Some(v)) if !present => {
                    headers.insert(rule.key.clone(), v);
                }
                (Action::Update, Some(v)) if present => {
                    headers.insert(rule.key.clone(), v);
                }
                (Action::Upsert, Some(v)) => {
                    headers.insert(rule.key.clone(), v);
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
    use serde_json::{json, Value};

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
    fn bad_configs_name_the_key() {
        let check = |v: Value| factory().validate(&id(), &v).unwrap_err().to_string();
        let e = check(json!({"headers": [{"key": "X-Tenant", "from_context": "t", "value": "v"}]}));
        assert!(e.contains("headers_setter::headers[0]::value: value, from_context and from_attribute are mutually exclusive"), "{e}");
        assert!(
            check(json!({"headers": [{"key": "k", "value": "v", "default_value": "d"}]}))
                .contains("headers[0]::default_value: goes with from_context")
        );
        assert!(
            check(json!({"headers": [{"key": "k", "from_attribute": "email"}]}))
                .contains("headers[0]::from_attribute: \"email\" is not an attribute")
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

    /// `from_context` and `from_attribute` read the client metadata of the call in progress; a
    /// missing key takes `default_value` or leaves the header alone; two values of one key fail.
    #[tokio::test]
    async fn from_context_copies_the_clients_metadata() {
        use vigil_core::component::Principal;
        let ext = factory()
            .create(
                &id(),
                &json!({"headers": [
                    {"key": "X-Scope-OrgID", "from_context": "X-Tenant"},
                    {"key": "X-Region", "from_context": "x-region", "default_value": "eu"},
                    {"key": "X-User", "from_attribute": "subject"},
                    {"key": "X-Groups", "from_attribute": "membership"},
                ]}),
            )
            .unwrap();
        let auth = ext.client_auth().unwrap();
        let run = |meta: Option<ClientMetadata>| {
            let auth = auth.clone();
            async move {
                let mut h = HeaderMap::new();
                let r = match meta {
                    Some(m) => m.scope(auth.apply(&mut h)).await,
                    None => auth.apply(&mut h).await,
                };
                r.map(|_| {
                    let mut v: Vec<String> = h
                        .iter()
                        .map(|(k, v)| format!("{k}={}", v.to_str().unwrap()))
                        .collect();
                    v.sort();
                    v
                })
            }
        };
        // Outside any receiver's call: only the default applies.
        assert_eq!(run(None).await.unwrap(), vec!["x-region=eu"]);
        let meta = ClientMetadata::from_pairs([("x-tenant", "acme"), ("X-Region", "us")])
            .with_auth(Principal {
                name: "ci-bot".into(),
                groups: vec!["payments".into()],
            });
        assert_eq!(
            run(Some(meta)).await.unwrap(),
            vec![
                "x-groups=[\"payments\"]",
                "x-region=us",
                "x-scope-orgid=acme",
                "x-user=ci-bot"
            ]
        );
        let two = ClientMetadata::from_pairs([("x-tenant", "a"), ("x-tenant", "b")]);
        let e = run(Some(two)).await.unwrap_err();
        assert!(e.contains("2 values of \"x-tenant\""), "{e}");
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

    /// Through the real `otlphttp` exporter with its in-memory sending queue (on by default): the
    /// queue keeps the metadata of the call that queued each request, so `from_context` finds
    /// it when a queue consumer sends; a call without metadata gets the default.
    #[tokio::test]
    /// The client's tenant reaches the backend's header through each kind of sending queue: in
    /// memory, `batch` partitioned by the tenant (two clients, two merged requests), and a durable
    /// queue on a real `file_storage`, whose records are written and read back before the send.
    async fn from_context_survives_the_sending_queue() {
        for queue in [
            json!({"num_consumers": 1}),
            json!({"batch": {"flush_timeout": "10ms", "partition": {"metadata_keys": ["x-tenant"]}}}),
            json!({"storage": "file_storage/q", "num_consumers": 1}),
            json!({"storage": "file_storage/q", "batch": {"flush_timeout": "10ms", "partition": {"metadata_keys": ["X-Tenant"]}}}),
        ] {
            headers_through(queue).await;
        }
    }

    async fn headers_through(queue: serde_json::Value) {
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        use std::sync::Mutex;
        use vigil_core::{Host, Telemetry};
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = seen.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: HeaderMap| {
                let log = log.clone();
                async move {
                    let v = headers
                        .get("x-scope-orgid")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("(none)")
                        .to_string();
                    log.lock().unwrap().push(v);
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
                &json!({"headers": [{"key": "X-Scope-OrgID", "from_context": "x-tenant", "default_value": "anonymous"}]}),
            )
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let storage_id = ComponentId::parse("file_storage/q").unwrap();
        let storage = super::super::file_storage::factory()
            .create(&storage_id, &json!({"directory": dir.path()}))
            .unwrap();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let host = Host::new(
            [(id(), ext), (storage_id, storage.clone())]
                .into_iter()
                .collect(),
            tx,
        );
        storage.start(&host).await.unwrap();
        let exporter = vigil_exporters::otlphttp::factory()
            .create(
                &ComponentId::parse("otlphttp/q").unwrap(),
                &json!({
                    "endpoint": format!("http://{addr}"),
                    "auth": {"authenticator": "headers_setter"},
                    "sending_queue": queue,
                    "retry_on_failure": {"enabled": false},
                }),
            )
            .unwrap();
        exporter.start(&host).await.unwrap();
        let spans = || {
            Telemetry::Traces(vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        name: "s".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }])
        };
        ClientMetadata::from_pairs([("X-Tenant", "acme")])
            .scope(exporter.consume(spans()))
            .await
            .unwrap();
        exporter.consume(spans()).await.unwrap();
        // A durable queue's stop leaves what is unsent stored for the next start: wait for both.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while seen.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        exporter.shutdown().await.unwrap();
        storage.shutdown().await.unwrap();
        let mut got = seen.lock().unwrap().clone();
        got.sort();
        assert_eq!(
            got,
            vec!["acme".to_string(), "anonymous".to_string()],
            "{queue}"
        );
    }
}
