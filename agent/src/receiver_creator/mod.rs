//! `receiver_creator` (otelcol's `receivercreator`): starts receivers for endpoints that observer
//! extensions (`watch_observers`: `k8s_observer`, `host_observer`) discover, and stops them when
//! the endpoint goes away. Each template under `receivers` (`<type>/<name>: {rule, config,
//! resource_attributes}`) starts a receiver of `<type>` (any vigil receiver: `prometheus`,
//! `kubeletstats`, `filelog`, `hostmetrics`, ...) for every endpoint its `rule` matches, with
//! `config`'s backtick expressions (`` `endpoint` ``, `` `port` ``,
//! `` `pod.annotations["prometheus.io/path"]` ``) evaluated against the endpoint, and `endpoint`
//! set to the endpoint's target when the template does not set it and the receiver has that key.
//! With `discovery::enabled`, pods' `io.opentelemetry.discovery.metrics/*` and
//! `io.opentelemetry.discovery.logs/*` annotations (and `default_annotations`) make templates too.
//!
//! Telemetry from a started receiver gets the endpoint's resource attributes (`k8s.pod.name`,
//! `k8s.pod.uid`, `k8s.namespace.name`, ... per endpoint type; `resource_attributes` overrides or
//! adds) where the resource lacks them. Rules and backtick values are the subset of expr-lang in
//! [`expr`]; anything else is a config error naming the key.
//!
//! otelcol accepts a template whose receiver type it lacks and fails only when an endpoint
//! matches; vigil does the same (a warning at validate, an error log and
//! `vigil_receiver_creator_failed_receivers` when it would start). A template of a type vigil has is
//! validated with a sample endpoint of its rule's type, so most config mistakes fail `validate`.
//! Bounded: at most `max_receivers` (vigil's own key, default [`DEFAULT_MAX_RECEIVERS`]) run at
//! once; the rest are counted in `vigil_receiver_creator_refused_receivers{receiver}`.

pub mod expr;

use crate::observer::{Endpoint, Feed, ENDPOINT_TYPES};
use crate::registry::Registry;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use vigil_core::{
    Component, ComponentId, ConfigError, ConsumeError, Consumer, Host, NextConsumers, Receiver,
    Signal, Tasks, Telemetry,
};

/// Receivers one `receiver_creator` runs at once, by default: a node of 110 pods (the kubelet's
/// default) with a few scraped ports each fits.
pub const DEFAULT_MAX_RECEIVERS: usize = 1000;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The observer extensions whose endpoints start receivers.
    #[serde(default)]
    pub watch_observers: Vec<String>,
    /// Receiver templates by `<type>[/<name>]`.
    #[serde(default)]
    pub receivers: BTreeMap<String, Template>,
    /// Resource attributes per endpoint type (`pod`, `port`, ...), over the defaults.
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    pub discovery: Discovery,
    /// vigil's bound on receivers running at once.
    #[serde(default = "default_max")]
    pub max_receivers: usize,
}

fn default_max() -> usize {
    DEFAULT_MAX_RECEIVERS
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// An expr-lang rule that starts with a type check: `type == "port" && ...`.
    #[serde(default)]
    pub rule: String,
    /// The receiver's config, backtick expressions evaluated per endpoint.
    #[serde(default)]
    pub config: Value,
    /// Resource attributes for this template's telemetry; values may hold backtick expressions.
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Discovery {
    /// Make templates from pods' `io.opentelemetry.discovery.*` annotations.
    #[serde(default)]
    pub enabled: bool,
    /// Receiver types the annotations may not start.
    #[serde(default)]
    pub ignore_receivers: Vec<String>,
    /// Annotations every pod has unless it sets them itself.
    #[serde(default)]
    pub default_annotations: BTreeMap<String, String>,
}

/// Every receiver type vigil has, for templates.
fn registry() -> &'static Registry {
    static REG: OnceLock<Registry> = OnceLock::new();
    REG.get_or_init(Registry::builtin)
}

/// The endpoint type a rule checks first, as otelcol requires every rule to.
fn rule_type(rule: &str) -> Option<&'static str> {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        let alts: Vec<String> = ENDPOINT_TYPES
            .iter()
            .map(|t| regex::escape(&format!("\"{t}\"")))
            .collect();
        regex::Regex::new(&format!(r"^type\s*==\s*({})", alts.join("|")))
            .expect("the rule type pattern is a valid regex")
    });
    let t = re
        .captures(rule.trim_start())?
        .get(1)?
        .as_str()
        .trim_matches('"');
    ENDPOINT_TYPES.iter().copied().find(|k| *k == t)
}

/// A template ready to run: its rule parsed.
#[derive(Clone)]
struct Compiled {
    /// The template's key, `<type>[/<name>]`.
    key: String,
    id: ComponentId,
    rule: Option<expr::Expr>,
    config: Value,
    resource_attributes: BTreeMap<String, String>,
    /// Only these signals (hints: metrics for scrapers, logs for `filelog`); all when `None`.
    signals: Option<Signal>,
    /// `endpoint` in `config` was put there by discovery, not the user: it is dropped for a
    /// receiver without that key (`prometheus`), as a defaulted one is.
    soft_endpoint: bool,
}

fn compile_template(name: &str, t: &Template) -> Result<Compiled, ConfigError> {
    let at = |k: &str| format!("receivers::{name}{k}");
    let id = ComponentId::parse(name).map_err(|e| ConfigError::at(at(""), e))?;
    if registry().resolve(vigil_core::ComponentKind::Receiver, id.type_name())
        == Some("receiver_creator")
    {
        return Err(ConfigError::at(
            at(""),
            "a receiver_creator cannot start another receiver_creator",
        ));
    }
    if t.rule.trim().is_empty() {
        return Err(ConfigError::at(at("::rule"), "rule cannot be empty"));
    }
    if rule_type(&t.rule).is_none() {
        return Err(ConfigError::at(
            at("::rule"),
            format!(
                "rule must specify type: it must start with type == one of {}",
                ENDPOINT_TYPES.map(|t| format!("{t:?}")).join(", ")
            ),
        ));
    }
    let rule = expr::parse(&t.rule).map_err(|e| ConfigError::at(at("::rule"), e))?;
    match &t.config {
        Value::Null | Value::Object(_) => {}
        _ => return Err(ConfigError::at(at("::config"), "must be a map")),
    }
    check_templates(&t.config, &at("::config"))?;
    let mut resource_attributes = BTreeMap::new();
    for (k, v) in &t.resource_attributes {
        let Value::String(s) = v else {
            return Err(ConfigError::at(
                at(&format!("::resource_attributes::{k}")),
                format!("unsupported value {v}: resource attribute values must be strings"),
            ));
        };
        expr::template(s)
            .map_err(|e| ConfigError::at(at(&format!("::resource_attributes::{k}")), e))?;
        resource_attributes.insert(k.clone(), s.clone());
    }
    Ok(Compiled {
        key: name.to_string(),
        id,
        rule: Some(rule),
        config: if t.config.is_null() {
            json!({})
        } else {
            t.config.clone()
        },
        resource_attributes,
        signals: None,
        soft_endpoint: false,
    })
}

/// Every backtick expression under `v` parses; the error names its key path.
fn check_templates(v: &Value, path: &str) -> Result<(), ConfigError> {
    match v {
        Value::String(s) => expr::template(s)
            .map(|_| ())
            .map_err(|e| ConfigError::at(path, e)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .try_for_each(|(i, x)| check_templates(x, &format!("{path}::{i}"))),
        Value::Object(m) => m
            .iter()
            .try_for_each(|(k, x)| check_templates(x, &format!("{path}::{k}"))),
        _ => Ok(()),
    }
}

/// `v` with every backtick expression evaluated against `env`.
fn expand(v: &Value, env: &Value) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => match expr::template(s)? {
            Some(pieces) => expr::render(&pieces, env)?,
            None => v.clone(),
        },
        Value::Array(a) => {
            Value::Array(a.iter().map(|x| expand(x, env)).collect::<Result<_, _>>()?)
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), expand(x, env)?)))
                .collect::<Result<Map<_, _>, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Whether a config reads a pod's annotations or labels, whose values a sample endpoint cannot
/// know: such a template is only checked as far as it can be.
fn reads_metadata(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('`') && (s.contains("annotations") || s.contains("labels")),
        Value::Array(a) => a.iter().any(reads_metadata),
        Value::Object(m) => m.values().any(reads_metadata),
        _ => false,
    }
}

/// An endpoint of `kind` shaped as the observers make them, for checking templates at validate.
fn sample_endpoint(kind: &'static str) -> Endpoint {
    let pod = json!({"name": "sample-pod", "uid": "00000000-0000-4000-8000-000000000000",
        "namespace": "default", "labels": {}, "annotations": {}});
    let (target, details) = match kind {
        "pod" => ("10.0.0.1".to_string(), pod),
        "port" => (
            "10.0.0.1:8080".into(),
            json!({"name": "http", "port": 8080, "transport": "TCP", "container_name": "app", "pod": pod}),
        ),
        "pod.container" => (
            "10.0.0.1".into(),
            json!({"name": "app", "container_name": "app", "container_id": "0", "container_image": "app",
                "image": "app", "tag": "latest", "pod": pod}),
        ),
        "hostport" => (
            "127.0.0.1:8080".into(),
            json!({"process_name": "app", "command": "app", "port": 8080, "transport": "TCP", "is_ipv6": false}),
        ),
        "container" => (
            "127.0.0.1:8080".into(),
            json!({"name": "app", "image": "app", "tag": "latest", "port": 8080, "alternate_port": 8080,
                "command": "app", "container_id": "0", "host": "127.0.0.1", "transport": "TCP", "labels": {}}),
        ),
        "k8s.node" => (
            "10.0.0.1".into(),
            json!({"name": "node", "uid": "0", "labels": {}, "annotations": {}, "hostname": "node",
                "internal_ip": "10.0.0.1", "external_ip": "", "internal_dns": "", "external_dns": "",
                "kubelet_endpoint_port": 10250}),
        ),
        "k8s.service" => (
            "sample.default.svc".into(),
            json!({"name": "sample", "uid": "0", "namespace": "default", "labels": {}, "annotations": {},
                "service_type": "ClusterIP", "cluster_ip": "10.96.0.1"}),
        ),
        _ => (
            "http://sample.example/".into(),
            json!({"name": "sample", "uid": "0", "namespace": "default", "labels": {}, "annotations": {},
                "scheme": "http", "host": "sample.example", "path": "/"}),
        ),
    };
    Endpoint {
        id: "sample".into(),
        target,
        kind,
        details: details.as_object().cloned().unwrap_or_default(),
    }
}

/// The config a template gives for `ep`: expanded, with `endpoint` set to the target when the
/// template has none and the receiver takes one (otelcol sets it, then drops it for a receiver
/// without the key). Checked with the receiver's own `validate`; the error keeps
/// [`ConfigError::host_path`]'s mark, and says `<key path>: <problem>`.
fn resolve_config(t: &Compiled, ep: &Endpoint, sub_id: &ComponentId) -> Result<Value, ConfigError> {
    let env = ep.env();
    let mut cfg = expand(&t.config, &env).map_err(|e| ConfigError::at("", e))?;
    let factory = registry().receiver(t.id.type_name()).ok_or_else(|| {
        ConfigError::at("", format!("unknown receiver type {:?}", t.id.type_name()))
    })?;
    if let Value::Object(m) = &mut cfg {
        if !m.contains_key("endpoint") {
            let mut with = m.clone();
            with.insert("endpoint".into(), Value::String(ep.target.clone()));
            let with = Value::Object(with);
            if factory.validate(sub_id, &with).is_ok() {
                return Ok(with);
            }
        } else if t.soft_endpoint && factory.validate(sub_id, &Value::Object(m.clone())).is_err() {
            m.remove("endpoint");
        }
    }
    factory.validate(sub_id, &cfg).map_err(|e| ConfigError {
        host_path: e.clone().flatten().iter().all(|e| e.host_path),
        ..ConfigError::at("", format!("{}: {}", e.path, e.message))
    })?;
    Ok(cfg)
}

fn check(id: &ComponentId, cfg: &Config) -> Result<Vec<Compiled>, ConfigError> {
    if cfg.watch_observers.is_empty() {
        return Err(ConfigError::at(
            "watch_observers",
            "must name at least one observer extension (k8s_observer, host_observer)",
        ));
    }
    for (i, o) in cfg.watch_observers.iter().enumerate() {
        ComponentId::parse(o).map_err(|e| ConfigError::at(format!("watch_observers::{i}"), e))?;
    }
    for (t, attrs) in &cfg.resource_attributes {
        if !ENDPOINT_TYPES.contains(&t.as_str()) {
            return Err(ConfigError::at(
                format!("resource_attributes::{t}"),
                format!(
                    "resource attributes for unsupported endpoint type {t:?} (expected one of {})",
                    ENDPOINT_TYPES.join(", ")
                ),
            ));
        }
        for (k, v) in attrs {
            expr::template(v)
                .map_err(|e| ConfigError::at(format!("resource_attributes::{t}::{k}"), e))?;
        }
    }
    if cfg.max_receivers == 0 {
        return Err(ConfigError::at("max_receivers", "must be at least 1"));
    }
    let mut out = Vec::new();
    for (name, t) in &cfg.receivers {
        let c = compile_template(name, t)?;
        let Some(kind) = rule_type(&t.rule) else {
            continue;
        };
        if registry().receiver(c.id.type_name()).is_none() {
            tracing::warn!(
                "receivers::{id}::receivers::{name}: vigil has no receiver type {:?}; as in \
                 otelcol, the template is accepted and fails when an endpoint matches it",
                c.id.type_name()
            );
        } else {
            let ep = sample_endpoint(kind);
            let sub = ComponentId::new(c.id.type_name(), c.id.name());
            if let Err(e) = resolve_config(&c, &ep, &sub) {
                if e.host_path {
                    // otelcol checks a template only when an endpoint matches it, on the node
                    // that has the endpoint: a service account token or a `/hostfs` absent here
                    // says nothing about the config. start_one checks it then.
                    tracing::warn!(
                        "receivers::{id}::receivers::{name}::config: {e}; checked again when an \
                         endpoint matches"
                    );
                } else if reads_metadata(&c.config) {
                    tracing::warn!(
                        "receivers::{id}::receivers::{name}::config: with a sample {kind} endpoint \
                         without annotations or labels: {e}"
                    );
                } else {
                    return Err(ConfigError::at(
                        format!("receivers::{name}::config"),
                        e.message,
                    ));
                }
            }
        }
        out.push(c);
    }
    Ok(out)
}

struct Factory;

pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = Config;

    fn type_name(&self) -> &'static str {
        "receiver_creator"
    }

    fn validate(&self, id: &ComponentId, cfg: &Config) -> Result<(), ConfigError> {
        check(id, cfg).map(|_| ())
    }
}

impl vigil_core::factory::ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[
            (Signal::Logs, vigil_core::Stability::Alpha),
            (Signal::Metrics, vigil_core::Stability::Beta),
            (Signal::Traces, vigil_core::Stability::Alpha),
        ]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: Config,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        Ok(Arc::new(build(set, cfg, next)?))
    }
}

fn build(
    set: vigil_core::Settings,
    cfg: Config,
    next: NextConsumers,
) -> Result<ReceiverCreator, ConfigError> {
    let templates = check(&set.id, &cfg)?;
    let label = set.id.to_string();
    Ok(ReceiverCreator {
        inner: Arc::new(Inner {
            id: set.id,
            cfg,
            templates,
            next,
            host: std::sync::Mutex::new(None),
            running: tokio::sync::Mutex::new(Running::default()),
            started: metrics::counter!("vigil_receiver_creator_started_receivers", "receiver" => label.clone()),
            refused: metrics::counter!("vigil_receiver_creator_refused_receivers", "receiver" => label.clone()),
            failed: metrics::counter!("vigil_receiver_creator_failed_receivers", "receiver" => label.clone()),
            gauge: metrics::gauge!("vigil_receiver_creator_running_receivers", "receiver" => label),
        }),
        tasks: set.tasks,
    })
}

/// One receiver started for an endpoint.
struct Started {
    id: ComponentId,
    receiver: Arc<dyn Receiver>,
}

/// What runs, by (observer, endpoint id), with the endpoint it was started for.
#[derive(Default)]
struct Running {
    by_endpoint: HashMap<(String, String), (Endpoint, Vec<Started>)>,
    count: usize,
}

struct Inner {
    id: ComponentId,
    cfg: Config,
    templates: Vec<Compiled>,
    next: NextConsumers,
    host: std::sync::Mutex<Option<Host>>,
    running: tokio::sync::Mutex<Running>,
    started: metrics::Counter,
    refused: metrics::Counter,
    failed: metrics::Counter,
    gauge: metrics::Gauge,
}

pub struct ReceiverCreator {
    inner: Arc<Inner>,
    tasks: Tasks,
}

#[cfg(test)]
impl ReceiverCreator {
    /// How many receivers run now.
    pub async fn running(&self) -> usize {
        self.inner.running.lock().await.count
    }
}

/// Default resource attributes per endpoint type, as otelcol's.
fn default_attributes(kind: &str) -> &'static [(&'static str, &'static str)] {
    match kind {
        "pod" => &[
            ("k8s.pod.name", "`name`"),
            ("k8s.pod.uid", "`uid`"),
            ("k8s.namespace.name", "`namespace`"),
        ],
        "port" => &[
            ("k8s.pod.name", "`pod.name`"),
            ("k8s.pod.uid", "`pod.uid`"),
            ("k8s.namespace.name", "`pod.namespace`"),
        ],
        "pod.container" => &[
            ("k8s.pod.name", "`pod.name`"),
            ("k8s.pod.uid", "`pod.uid`"),
            ("k8s.namespace.name", "`pod.namespace`"),
            ("container.name", "`container_name`"),
            ("k8s.container.name", "`container_name`"),
            ("container.image.name", "`container_image`"),
            ("container.id", "`container_id`"),
        ],
        "container" => &[
            ("container.name", "`name`"),
            ("container.image.name", "`image`"),
        ],
        "k8s.node" => &[("k8s.node.name", "`name`"), ("k8s.node.uid", "`uid`")],
        "k8s.service" | "k8s.ingress" => &[("k8s.namespace.name", "`namespace`")],
        _ => &[],
    }
}

/// Annotation-based discovery (otelcol's hints).
mod hints {
    use super::*;

    const METRICS: &str = "io.opentelemetry.discovery.metrics";
    const LOGS: &str = "io.opentelemetry.discovery.logs";

    /// The container- or port-scoped hint (`<base>.<scope>/<key>`), else the pod's (`<base>/<key>`).
    fn hint<'a>(
        ann: &'a Map<String, Value>,
        base: &str,
        key: &str,
        scope: &str,
    ) -> Option<&'a str> {
        ann.get(&format!("{base}.{scope}/{key}"))
            .or_else(|| ann.get(&format!("{base}/{key}")))
            .and_then(Value::as_str)
    }

    fn annotations(d: &Discovery, ep: &Endpoint) -> Map<String, Value> {
        let mut ann: Map<String, Value> = d
            .default_annotations
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        if let Some(Value::Object(own)) = ep.details.get("pod").and_then(|p| p.get("annotations")) {
            ann.extend(own.clone());
        }
        ann
    }

    fn yaml_map(text: &str) -> Result<Map<String, Value>, String> {
        match serde_saphyr::from_str::<Value>(text) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(Value::Null) => Ok(Map::new()),
            Ok(_) => Err("the config hint is not a map".into()),
            Err(e) => Err(format!("the config hint is not valid YAML: {e}")),
        }
    }

    /// The template the endpoint's annotations ask for, if any.
    pub(super) fn template(d: &Discovery, ep: &Endpoint) -> Result<Option<Compiled>, String> {
        if !d.enabled {
            return Ok(None);
        }
        let ann = annotations(d, ep);
        let uid = ep
            .details
            .get("pod")
            .and_then(|p| p.get("uid"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let ignored = |t: &str| d.ignore_receivers.iter().any(|r| r == t);
        match ep.kind {
            "port" => {
                let port = ep
                    .details
                    .get("port")
                    .map(expr::to_text)
                    .unwrap_or_default();
                if hint(&ann, METRICS, "enabled", &port) != Some("true") {
                    return Ok(None);
                }
                let Some(scraper) = hint(&ann, METRICS, "scraper", &port).filter(|s| !s.is_empty())
                else {
                    return Ok(None);
                };
                if ignored(scraper) {
                    return Ok(None);
                }
                let mut cfg = Map::new();
                cfg.insert("endpoint".into(), Value::String(ep.target.clone()));
                if let Some(text) = hint(&ann, METRICS, "config", &port).filter(|s| !s.is_empty()) {
                    cfg.extend(yaml_map(text)?);
                    // The configured endpoint must still point at this pod, as otelcol checks.
                    let e = cfg
                        .get("endpoint")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let e = e.replace("`endpoint`", &ep.target);
                    let host = e.split_once("://").map_or(e.as_str(), |(_, r)| r);
                    let host = host.split('/').next().unwrap_or_default();
                    if host != ep.target {
                        return Err(format!(
                            "the configured endpoint {e:?} is not the pod's endpoint {}",
                            ep.target
                        ));
                    }
                }
                let key = format!("{scraper}/{uid}_{port}");
                let id = ComponentId::parse(&key)?;
                Ok(Some(Compiled {
                    key,
                    id,
                    rule: None,
                    config: Value::Object(cfg),
                    resource_attributes: BTreeMap::new(),
                    signals: Some(Signal::Metrics),
                    soft_endpoint: true,
                }))
            }
            "pod.container" => {
                if ignored("filelog") {
                    return Ok(None);
                }
                let name = ep
                    .details
                    .get("container_name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if hint(&ann, LOGS, "enabled", &name) != Some("true") {
                    return Ok(None);
                }
                let pod = ep.details.get("pod").cloned().unwrap_or_default();
                let s = |k: &str| {
                    pod.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                let path = format!(
                    "/var/log/pods/{}_{}_{}/{name}/*.log",
                    s("namespace"),
                    s("name"),
                    uid
                );
                let mut cfg = Map::new();
                cfg.insert("include".into(), json!([path]));
                cfg.insert("include_file_path".into(), json!(true));
                cfg.insert("include_file_name".into(), json!(false));
                cfg.insert(
                    "operators".into(),
                    json!([{"id": "container-parser", "type": "container"}]),
                );
                if let Some(text) = hint(&ann, LOGS, "config", &name).filter(|s| !s.is_empty()) {
                    for (k, v) in yaml_map(text)? {
                        // The path is always the container's own.
                        if k != "include" {
                            cfg.insert(k, v);
                        }
                    }
                }
                let key = format!("filelog/{uid}_{name}");
                let id = ComponentId::parse(&key)?;
                Ok(Some(Compiled {
                    key,
                    id,
                    rule: None,
                    config: Value::Object(cfg),
                    resource_attributes: BTreeMap::new(),
                    signals: Some(Signal::Logs),
                    soft_endpoint: false,
                }))
            }
            _ => Ok(None),
        }
    }
}

/// Adds resource attributes the resource does not already have.
struct Enhancer {
    attrs: Vec<(String, String)>,
    next: Arc<dyn Consumer>,
}

#[async_trait]
impl Consumer for Enhancer {
    async fn consume(&self, mut data: Telemetry) -> Result<(), ConsumeError> {
        let add = |r: &mut Option<vigil_core::otlp::resource::v1::Resource>| {
            let r = r.get_or_insert_with(Default::default);
            for (k, v) in &self.attrs {
                if vigil_core::attrs::get(&r.attributes, k).is_none() {
                    r.attributes.push(vigil_core::attrs::kv_str(k, v.clone()));
                }
            }
        };
        match &mut data {
            Telemetry::Metrics(rs) => rs.iter_mut().for_each(|x| add(&mut x.resource)),
            Telemetry::Logs(rs) => rs.iter_mut().for_each(|x| add(&mut x.resource)),
            Telemetry::Traces(rs) => rs.iter_mut().for_each(|x| add(&mut x.resource)),
            Telemetry::Profiles(p) => p
                .resource_profiles
                .iter_mut()
                .for_each(|x| add(&mut x.resource)),
        }
        self.next.consume(data).await
    }
}

impl Inner {
    fn resource_attributes(
        &self,
        t: &Compiled,
        ep: &Endpoint,
        env: &Value,
    ) -> Vec<(String, String)> {
        let mut raw: BTreeMap<String, String> = default_attributes(ep.kind)
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(over) = self.cfg.resource_attributes.get(ep.kind) {
            raw.extend(over.clone());
        }
        raw.extend(t.resource_attributes.clone());
        raw.into_iter()
            .filter_map(|(k, v)| {
                let v = match expr::template(&v).ok()? {
                    Some(p) => expr::to_text(&expr::render(&p, env).ok()?),
                    None => v,
                };
                (!v.is_empty()).then_some((k, v))
            })
            .collect()
    }

    /// Starts `t` for `ep`; `None` (logged and counted) when it cannot.
    async fn start_one(
        &self,
        t: &Compiled,
        ep: &Endpoint,
        running: &mut Running,
        host: &Host,
    ) -> Option<Started> {
        let sub_id = ComponentId::new(
            t.id.type_name(),
            Some(&format!(
                "{}{{endpoint=\"{}\"}}/{}",
                t.id.name().unwrap_or_default(),
                ep.target,
                ep.id
            )),
        );
        let Some(factory) = registry().receiver(t.id.type_name()) else {
            self.failed.increment(1);
            tracing::error!(receiver = %t.key, endpoint = %ep.id,
                "unable to start a receiver: vigil has no receiver type {:?}", t.id.type_name());
            return None;
        };
        let signals: Vec<Signal> = factory
            .signals()
            .into_iter()
            .filter(|s| self.next.get(*s).is_some() && t.signals.is_none_or(|only| only == *s))
            .collect();
        if signals.is_empty() {
            tracing::debug!(receiver = %t.key, endpoint = %ep.id,
                "not started: none of its signals has a pipeline from this receiver_creator");
            return None;
        }
        if running.count >= self.cfg.max_receivers {
            self.refused.increment(1);
            tracing::warn!(receiver = %t.key, endpoint = %ep.id, max = self.cfg.max_receivers,
                "not started: max_receivers receivers are running already");
            return None;
        }
        let cfg = match resolve_config(t, ep, &sub_id) {
            Ok(c) => c,
            Err(e) => {
                self.failed.increment(1);
                tracing::error!(receiver = %t.key, endpoint = %ep.id, error = %e,
                    "unable to resolve the template's config");
                return None;
            }
        };
        let env = ep.env();
        let attrs = self.resource_attributes(t, ep, &env);
        let mut next = NextConsumers::new();
        for s in signals {
            if let Some(c) = self.next.get(s) {
                next.insert(
                    s,
                    Arc::new(Enhancer {
                        attrs: attrs.clone(),
                        next: Arc::clone(c),
                    }),
                );
            }
        }
        let receiver = match factory.create(&sub_id, &cfg, next) {
            Ok(r) => r,
            Err(e) => {
                self.failed.increment(1);
                tracing::error!(receiver = %t.key, endpoint = %ep.id, error = %e, "failed to create a receiver");
                return None;
            }
        };
        if let Err(e) = receiver.start(host).await {
            self.failed.increment(1);
            tracing::error!(receiver = %t.key, endpoint = %ep.id, error = format!("{e:#}"), "failed to start a receiver");
            let _ = receiver.shutdown().await;
            return None;
        }
        tracing::info!(receiver = %t.key, endpoint = %ep.target, endpoint_id = %ep.id, "started receiver");
        self.started.increment(1);
        running.count += 1;
        self.gauge.set(running.count as f64);
        Some(Started {
            id: sub_id,
            receiver,
        })
    }

    /// Brings what runs for `observer`'s endpoints in step with `set`: receivers of endpoints
    /// that left or changed stop, and new or changed endpoints start the templates they match.
    async fn reconcile(&self, observer: &str, set: &BTreeMap<String, Endpoint>) {
        let Some(host) = vigil_core::lock(&self.host).clone() else {
            return;
        };
        let mut running = self.running.lock().await;
        let gone: Vec<(String, String)> = running
            .by_endpoint
            .iter()
            .filter(|((o, id), (ep, _))| o == observer && set.get(id) != Some(ep))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            if let Some((ep, started)) = running.by_endpoint.remove(&key) {
                for s in started {
                    tracing::info!(receiver = %s.id, endpoint_id = %ep.id, "stopping receiver");
                    if let Err(e) = s.receiver.shutdown().await {
                        tracing::warn!(receiver = %s.id, error = format!("{e:#}"), "failed to stop a receiver");
                    }
                    running.count -= 1;
                }
            }
        }
        self.gauge.set(running.count as f64);
        for (id, ep) in set {
            let key = (observer.to_string(), id.clone());
            if running.by_endpoint.contains_key(&key) {
                continue;
            }
            let env = ep.env();
            let mut matched: Vec<Compiled> = Vec::new();
            for t in &self.templates {
                let Some(rule) = &t.rule else { continue };
                match expr::eval(rule, &env) {
                    Ok(Value::Bool(true)) => matched.push(t.clone()),
                    Ok(Value::Bool(false)) | Ok(Value::Null) => {}
                    Ok(other) => tracing::warn!(receiver = %t.key,
                        "rule did not return a boolean but {other}"),
                    Err(e) => tracing::warn!(receiver = %t.key, error = %e, "failed matching rule"),
                }
            }
            match hints::template(&self.cfg.discovery, ep) {
                Ok(Some(t)) => matched.push(t),
                Ok(None) => {}
                Err(e) => {
                    self.failed.increment(1);
                    tracing::warn!(endpoint_id = %ep.id, error = %e, "discovery annotations refused");
                }
            }
            let mut started = Vec::new();
            for t in &matched {
                if let Some(s) = self.start_one(t, ep, &mut running, &host).await {
                    started.push(s);
                }
            }
            running.by_endpoint.insert(key, (ep.clone(), started));
        }
    }
}

#[async_trait]
impl Component for ReceiverCreator {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        let mut feeds = Vec::new();
        for o in &self.inner.cfg.watch_observers {
            let oid = ComponentId::parse(o).map_err(|e| {
                anyhow::anyhow!("receivers::{}::watch_observers: {e}", self.inner.id)
            })?;
            let ext = host.extension(&oid).ok_or_else(|| {
                anyhow::anyhow!(
                    "receivers::{}::watch_observers: failed to find observer {oid} in the extensions \
                     list (service::extensions)",
                    self.inner.id
                )
            })?;
            let feed = ext
                .observer()
                .and_then(|a| a.downcast::<Feed>().ok())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "receivers::{}::watch_observers: extension {oid} is not an observer",
                        self.inner.id
                    )
                })?;
            feeds.push((oid.to_string(), feed));
        }
        *vigil_core::lock(&self.inner.host) = Some(host.clone());
        for (name, feed) in feeds {
            let (inner, stop) = (Arc::clone(&self.inner), self.tasks.stopping());
            let mut rx = feed.subscribe();
            self.tasks.spawn(async move {
                loop {
                    let set = Arc::clone(&rx.borrow_and_update());
                    inner.reconcile(&name, &set).await;
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        changed = rx.changed() => if changed.is_err() {
                            // The observer was replaced (a reload that changed it but kept this
                            // receiver): what runs stays as it is until this receiver restarts.
                            tracing::warn!(observer = %name,
                                "the observer stopped; its endpoints are no longer followed");
                            return;
                        },
                    }
                }
            });
        }
        Ok(())
    }

    async fn shutdown_by(&self, deadline: Instant) -> anyhow::Result<()> {
        self.tasks.stop(deadline).await;
        let mut running = self.inner.running.lock().await;
        let all: Vec<Started> = running
            .by_endpoint
            .drain()
            .flat_map(|(_, (_, s))| s)
            .collect();
        running.count = 0;
        self.inner.gauge.set(0.0);
        drop(running);
        let stops = all.iter().map(|s| s.receiver.shutdown_by(deadline));
        for (s, r) in all.iter().zip(futures::future::join_all(stops).await) {
            if let Err(e) = r {
                tracing::warn!(receiver = %s.id, error = format!("{e:#}"), "failed to stop a receiver");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
