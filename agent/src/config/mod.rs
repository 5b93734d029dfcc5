//! The config file as otelcol reads it: five component sections and `service`. Component sections stay
//! generic values here and are decoded by each component's factory, so that every error carries the
//! component id and the key path. `validate` collects every mistake instead of stopping at the first.

mod auth_refs;
pub mod load;

use crate::registry::Registry;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use vigil_core::{ComponentId, ComponentKind, ConfigError, Signal};

/// The service section, typed.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    #[serde(default)]
    pub extensions: Vec<String>,
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineConfig>,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    #[serde(default)]
    pub receivers: Vec<String>,
    #[serde(default)]
    pub processors: Vec<String>,
    #[serde(default)]
    pub exporters: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    #[serde(default)]
    pub metrics: MetricsTelemetry,
    #[serde(default)]
    pub logs: LogsTelemetry,
    /// Accepted for compatibility; our own telemetry carries no resource yet.
    #[serde(default)]
    pub resource: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsTelemetry {
    /// `none`, `basic`, `normal` or `detailed`; `none` turns the endpoint off.
    #[serde(default = "default_metrics_level")]
    pub level: String,
    /// The older otelcol form: `host:port` of the Prometheus pull endpoint.
    #[serde(default)]
    pub address: Option<String>,
    /// The newer form: `readers: [{pull: {exporter: {prometheus: {host, port}}}}]`.
    #[serde(default)]
    pub readers: Vec<Value>,
    /// vigil's: TLS (and mutual TLS) on the endpoint, with otelcol's `configtls` server keys.
    /// otelcol's own telemetry has no TLS key; this one is not part of its schema.
    #[serde(default)]
    pub tls: Option<vigil_core::net::tls::TlsServerSettings>,
}

fn default_metrics_level() -> String {
    "normal".into()
}

impl Default for MetricsTelemetry {
    fn default() -> Self {
        MetricsTelemetry {
            level: default_metrics_level(),
            address: None,
            readers: Vec::new(),
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogsTelemetry {
    #[serde(default = "default_log_level")]
    pub level: String,
    /// `console` (text) or `json`.
    #[serde(default = "default_log_encoding")]
    pub encoding: String,
    #[serde(default)]
    pub development: bool,
    #[serde(default)]
    pub disable_caller: bool,
    #[serde(default)]
    pub disable_stacktrace: bool,
    #[serde(default)]
    pub output_paths: Option<Value>,
    #[serde(default)]
    pub error_output_paths: Option<Value>,
    #[serde(default)]
    pub initial_fields: Option<Value>,
    #[serde(default)]
    pub sampling: Option<Value>,
    /// Own logs over OTLP: `batch` or `simple` processors with an `otlp` exporter
    /// (crate::telemetry_logs).
    #[serde(default)]
    pub processors: Vec<Value>,
}

fn default_log_level() -> String {
    "info".into()
}
fn default_log_encoding() -> String {
    "console".into()
}

impl Default for LogsTelemetry {
    fn default() -> Self {
        LogsTelemetry {
            level: default_log_level(),
            encoding: default_log_encoding(),
            development: false,
            disable_caller: false,
            disable_stacktrace: false,
            output_paths: None,
            error_output_paths: None,
            initial_fields: None,
            sampling: None,
            processors: Vec::new(),
        }
    }
}

/// One pipeline, with its id parsed: `traces`, `metrics/fast`, …
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub id: String,
    pub signal: Signal,
    pub receivers: Vec<ComponentId>,
    pub processors: Vec<ComponentId>,
    pub exporters: Vec<ComponentId>,
}

/// A config that passed validation: every id parses, every type is known, every reference resolves.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub receivers: BTreeMap<ComponentId, Value>,
    pub processors: BTreeMap<ComponentId, Value>,
    pub exporters: BTreeMap<ComponentId, Value>,
    pub connectors: BTreeMap<ComponentId, Value>,
    pub extensions: BTreeMap<ComponentId, Value>,
    pub service_extensions: Vec<ComponentId>,
    pub pipelines: Vec<Pipeline>,
    pub telemetry: TelemetryConfig,
}

const TOP_LEVEL: [&str; 6] = [
    "receivers",
    "processors",
    "exporters",
    "connectors",
    "extensions",
    "service",
];

impl Config {
    /// Checks the whole tree and returns every error found, each naming where and what.
    pub fn from_value(root: &Value, registry: &Registry) -> Result<Config, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let empty = Map::new();
        let root_map = root.as_object().unwrap_or(&empty);
        for key in root_map.keys() {
            if !TOP_LEVEL.contains(&key.as_str()) {
                errors.push(ConfigError::new(
                    "",
                    "",
                    format!(
                        "'' has invalid keys: {key} (the top-level sections are {})",
                        TOP_LEVEL.join(", ")
                    ),
                ));
            }
        }

        let mut sections: BTreeMap<ComponentKind, BTreeMap<ComponentId, Value>> = BTreeMap::new();
        for kind in [
            ComponentKind::Receiver,
            ComponentKind::Processor,
            ComponentKind::Exporter,
            ComponentKind::Connector,
            ComponentKind::Extension,
        ] {
            let mut out = BTreeMap::new();
            match root_map.get(kind.section()) {
                None | Some(Value::Null) => {}
                Some(Value::Object(m)) => {
                    for (raw_id, cfg) in m {
                        match ComponentId::parse(raw_id) {
                            Err(e) => {
                                errors.push(ConfigError::new(kind.section(), raw_id.clone(), e))
                            }
                            Ok(id) => {
                                if let Err(e) = registry.validate(kind, &id, cfg) {
                                    // Sorted, so that the same file always prints the same list
                                    // whatever order a component found its problems in.
                                    let mut all = e.flatten();
                                    all.sort_by(|a, b| {
                                        (&a.location, &a.path, &a.message).cmp(&(
                                            &b.location,
                                            &b.path,
                                            &b.message,
                                        ))
                                    });
                                    all.dedup();
                                    errors.extend(all);
                                }
                                out.insert(id, cfg.clone());
                            }
                        }
                    }
                }
                Some(other) => errors.push(ConfigError::new(
                    kind.section(),
                    "",
                    format!("expected a map of components, got {}", type_name(other)),
                )),
            }
            sections.insert(kind, out);
        }

        let service: ServiceConfig = match root_map.get("service") {
            None | Some(Value::Null) => {
                errors.push(ConfigError::new(
                    "service",
                    "",
                    "missing: a config needs service::pipelines",
                ));
                ServiceConfig::default()
            }
            Some(v) => {
                let (service, problems) = vigil_core::config::decode_partial::<ServiceConfig>(v);
                for (path, msg) in problems {
                    errors.push(ConfigError::new("service", path, msg));
                }
                service.unwrap_or_default()
            }
        };

        let take = |sections: &mut BTreeMap<ComponentKind, BTreeMap<ComponentId, Value>>,
                    k: ComponentKind| sections.remove(&k).unwrap_or_default();
        let receivers = take(&mut sections, ComponentKind::Receiver);
        let processors = take(&mut sections, ComponentKind::Processor);
        let exporters = take(&mut sections, ComponentKind::Exporter);
        let connectors = take(&mut sections, ComponentKind::Connector);
        let extensions = take(&mut sections, ComponentKind::Extension);

        let mut service_extensions = Vec::new();
        for raw in &service.extensions {
            match ComponentId::parse(raw) {
                Ok(id) if extensions.contains_key(&id) => service_extensions.push(id),
                Ok(id) => errors.push(ConfigError::new(
                    "service::extensions",
                    "",
                    format!(
                        "references extension {:?} which is not configured",
                        id.to_string()
                    ),
                )),
                Err(e) => errors.push(ConfigError::new("service::extensions", "", e)),
            }
        }

        errors.extend(auth_refs::check(
            ComponentKind::Receiver,
            &receivers,
            &service_extensions,
            &extensions,
            &|t| registry.resolve(ComponentKind::Extension, t),
        ));
        errors.extend(auth_refs::check(
            ComponentKind::Exporter,
            &exporters,
            &service_extensions,
            &extensions,
            &|t| registry.resolve(ComponentKind::Extension, t),
        ));
        errors.extend(auth_refs::check_leader_electors(
            &receivers,
            &service_extensions,
            &extensions,
            &|t| registry.resolve(ComponentKind::Extension, t),
        ));

        // Only when the file has no pipelines at all: pipelines refused above are not missing.
        let pipelines_written = root_map
            .get("service")
            .and_then(|s| s.get("pipelines"))
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty());
        if service.pipelines.is_empty() && root_map.contains_key("service") && !pipelines_written {
            errors.push(ConfigError::new(
                "service::pipelines",
                "",
                "no pipelines are configured: add at least one of traces, metrics or logs",
            ));
        }

        let mut pipelines = Vec::new();
        for (pid, p) in &service.pipelines {
            let loc = format!("service::pipelines::{pid}");
            let signal_name = pid.split('/').next().unwrap_or_default();
            let Some(signal) = Signal::parse(signal_name) else {
                let message = format!(
                    "unknown signal {signal_name:?} in pipeline id: use traces, metrics, logs or profiles (optionally traces/<name>)"
                );
                errors.push(ConfigError::new(loc, "", message));
                continue;
            };
            if p.receivers.is_empty() {
                errors.push(ConfigError::new(
                    loc.clone(),
                    "receivers",
                    "must have at least one receiver",
                ));
            }
            if p.exporters.is_empty() {
                errors.push(ConfigError::new(
                    loc.clone(),
                    "exporters",
                    "must have at least one exporter",
                ));
            }
            let mut parse_refs = |list: &[String], role: &str, allowed: &[ComponentKind]| {
                let mut ids = Vec::new();
                let mut seen = BTreeSet::new();
                for raw in list {
                    let id = match ComponentId::parse(raw) {
                        Ok(id) => id,
                        Err(e) => {
                            errors.push(ConfigError::new(loc.clone(), role, e));
                            continue;
                        }
                    };
                    if !seen.insert(id.clone()) {
                        errors.push(ConfigError::new(
                            loc.clone(),
                            role,
                            format!("{raw:?} is listed more than once"),
                        ));
                        continue;
                    }
                    let defined_as = allowed.iter().find(|k| match k {
                        ComponentKind::Receiver => receivers.contains_key(&id),
                        ComponentKind::Processor => processors.contains_key(&id),
                        ComponentKind::Exporter => exporters.contains_key(&id),
                        ComponentKind::Connector => connectors.contains_key(&id),
                        ComponentKind::Extension => false,
                    });
                    let Some(kind) = defined_as else {
                        let singular = role.trim_end_matches('s');
                        errors.push(ConfigError::new(
                            loc.clone(),
                            role,
                            format!(
                                "references {singular} {raw:?} which is not configured (define it under {})",
                                allowed.iter().map(|k| k.section()).collect::<Vec<_>>().join(" or ")
                            ),
                        ));
                        continue;
                    };
                    if let Some(msg) = registry.signal_support(*kind, &id, signal, role) {
                        errors.push(ConfigError::new(loc.clone(), role, msg));
                    } else if *kind == ComponentKind::Exporter {
                        // Keys that fit only some signals (loadbalancing's routing_key).
                        let checked = registry
                            .exporter(id.type_name())
                            .zip(exporters.get(&id))
                            .map(|(f, cfg)| f.validate_signal(&id, cfg, signal));
                        if let Some(Err(e)) = checked {
                            errors.push(e);
                        }
                    }
                    ids.push(id);
                }
                ids
            };
            let r = parse_refs(
                &p.receivers,
                "receivers",
                &[ComponentKind::Receiver, ComponentKind::Connector],
            );
            let pr = parse_refs(&p.processors, "processors", &[ComponentKind::Processor]);
            let e = parse_refs(
                &p.exporters,
                "exporters",
                &[ComponentKind::Exporter, ComponentKind::Connector],
            );
            pipelines.push(Pipeline {
                id: pid.clone(),
                signal,
                receivers: r,
                processors: pr,
                exporters: e,
            });
        }

        // A connector must be an exporter in one pipeline and a receiver in another, for a signal
        // pair it supports.
        for cid in connectors.keys() {
            // An unknown connector type was reported above; what it could connect is unknowable.
            if !registry.has(ComponentKind::Connector, cid.type_name()) {
                continue;
            }
            let as_exporter: BTreeSet<Signal> = pipelines
                .iter()
                .filter(|p| p.exporters.contains(cid))
                .map(|p| p.signal)
                .collect();
            let as_receiver: BTreeSet<Signal> = pipelines
                .iter()
                .filter(|p| p.receivers.contains(cid))
                .map(|p| p.signal)
                .collect();
            if as_exporter.is_empty() && as_receiver.is_empty() {
                continue;
            }
            let loc = format!("connectors::{cid}");
            if as_exporter.is_empty() || as_receiver.is_empty() {
                errors.push(ConfigError::new(
                    loc,
                    "",
                    "a connector must be used both as an exporter in one pipeline and as a receiver in another",
                ));
                continue;
            }
            for &i in &as_exporter {
                if !as_receiver
                    .iter()
                    .any(|&o| registry.connector_supports(cid, i, o))
                {
                    errors.push(ConfigError::new(
                        loc.clone(),
                        "",
                        format!(
                            "used as an exporter in a {i} pipeline, but no pipeline it feeds as a receiver takes an output it can make from {i}"
                        ),
                    ));
                }
            }
        }

        // As every listener's TLS: files read and the configuration built at validate.
        if let Some(t) = &service.telemetry.metrics.tls {
            if let Err(e) = t.server_config(crate::telemetry::HTTP_ALPN) {
                errors.push(ConfigError::new(
                    "service::telemetry::metrics",
                    format!("tls::{}", e.key),
                    e.message,
                ));
            }
        }

        if let Err(es) = crate::telemetry_logs::check(&service.telemetry.logs.processors, registry)
        {
            for e in es {
                let (path, msg) = e.split_once(": ").unwrap_or((&e, ""));
                let path = path.trim_start_matches("service::telemetry::logs::");
                errors.push(ConfigError::new("service::telemetry::logs", path, msg));
            }
        }

        if let Err(es) =
            crate::telemetry_metrics::check(&service.telemetry.metrics.readers, registry)
        {
            for e in es {
                let (path, msg) = e.split_once(": ").unwrap_or((&e, ""));
                let path = path.trim_start_matches("service::telemetry::metrics::");
                errors.push(ConfigError::new("service::telemetry::metrics", path, msg));
            }
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Config {
            receivers,
            processors,
            exporters,
            connectors,
            extensions,
            service_extensions,
            pipelines,
            telemetry: service.telemetry,
        })
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// The config used when no `--config` is given: OTLP in on localhost, batch, the debug exporter,
/// health_check and own telemetry on localhost:8888.
pub const DEFAULT_CONFIG: &str = include_str!("default.yaml");
