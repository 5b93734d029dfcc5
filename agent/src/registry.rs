//! The one place that lists every component type vigil has. The config validator, the service graph
//! and `vigil components` all read from here.

use crate::extensions;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use vigil_core::factory::{
    DynConnectorFactory as ConnectorFactory, DynExporterFactory as ExporterFactory,
    DynExtensionFactory as ExtensionFactory, DynProcessorFactory as ProcessorFactory,
    DynReceiverFactory as ReceiverFactory,
};
use vigil_core::{ComponentId, ComponentKind, ConfigError, Signal};

pub struct Registry {
    pub receivers: BTreeMap<&'static str, Arc<dyn ReceiverFactory>>,
    pub processors: BTreeMap<&'static str, Arc<dyn ProcessorFactory>>,
    pub exporters: BTreeMap<&'static str, Arc<dyn ExporterFactory>>,
    pub connectors: BTreeMap<&'static str, Arc<dyn ConnectorFactory>>,
    pub extensions: BTreeMap<&'static str, Arc<dyn ExtensionFactory>>,
}

impl Registry {
    /// Every built-in component.
    pub fn builtin() -> Registry {
        Registry {
            receivers: vigil_receivers::factories()
                .into_iter()
                .chain([
                    crate::receiver_creator::factory(),
                    crate::awsxray_receiver::factory(),
                ])
                .map(|f| (f.type_name(), f))
                .collect(),
            processors: vigil_processors::processor_factories()
                .into_iter()
                .map(|f| (f.type_name(), f))
                .collect(),
            exporters: vigil_exporters::factories()
                .into_iter()
                .map(|f| (f.type_name(), f))
                .collect(),
            connectors: vigil_processors::connector_factories()
                .into_iter()
                .map(|f| (f.type_name(), f))
                .collect(),
            extensions: extensions::factories()
                .into_iter()
                .map(|f| (f.type_name(), f))
                .collect(),
        }
    }

    /// The registered type a config's type name stands for. otelcol is renaming its components to
    /// snake_case (`filelog` → `file_log`, `otlp` exporter → `otlp_grpc`) and accepts both spellings,
    /// so vigil does too: first the name itself, then otelcol's renames ([`RENAMES`]), then any
    /// spelling that differs from a registered name only by underscores (`host_metrics`).
    pub fn resolve(&self, kind: ComponentKind, t: &str) -> Option<&'static str> {
        let known = self.known(kind);
        if let Some(k) = known.iter().find(|k| **k == t) {
            return Some(k);
        }
        if let Some((_, _, old)) = RENAMES
            .iter()
            .find(|(k, new, old)| *k == kind && *new == t && known.contains(old))
        {
            return Some(old);
        }
        let squash = |s: &str| s.replace('_', "");
        let wanted = squash(t);
        known.into_iter().find(|k| squash(k) == wanted)
    }

    pub fn receiver(&self, t: &str) -> Option<&Arc<dyn ReceiverFactory>> {
        self.receivers
            .get(self.resolve(ComponentKind::Receiver, t)?)
    }

    pub fn processor(&self, t: &str) -> Option<&Arc<dyn ProcessorFactory>> {
        self.processors
            .get(self.resolve(ComponentKind::Processor, t)?)
    }

    pub fn exporter(&self, t: &str) -> Option<&Arc<dyn ExporterFactory>> {
        self.exporters
            .get(self.resolve(ComponentKind::Exporter, t)?)
    }

    pub fn connector(&self, t: &str) -> Option<&Arc<dyn ConnectorFactory>> {
        self.connectors
            .get(self.resolve(ComponentKind::Connector, t)?)
    }

    pub fn extension(&self, t: &str) -> Option<&Arc<dyn ExtensionFactory>> {
        self.extensions
            .get(self.resolve(ComponentKind::Extension, t)?)
    }

    /// Whether the type is one vigil has, under any spelling.
    pub fn has(&self, kind: ComponentKind, t: &str) -> bool {
        self.resolve(kind, t).is_some()
    }

    /// Every other spelling of a registered type that otelcol uses, for `vigil components`.
    fn aliases(&self, kind: ComponentKind, t: &str) -> Vec<&'static str> {
        RENAMES
            .iter()
            .filter(|(k, _, old)| *k == kind && *old == t)
            .map(|(_, new, _)| *new)
            .collect()
    }

    fn known(&self, kind: ComponentKind) -> Vec<&'static str> {
        match kind {
            ComponentKind::Receiver => self.receivers.keys().copied().collect(),
            ComponentKind::Processor => self.processors.keys().copied().collect(),
            ComponentKind::Exporter => self.exporters.keys().copied().collect(),
            ComponentKind::Connector => self.connectors.keys().copied().collect(),
            ComponentKind::Extension => self.extensions.keys().copied().collect(),
        }
    }

    /// Checks that the type is known and that its config decodes.
    pub fn validate(
        &self,
        kind: ComponentKind,
        id: &ComponentId,
        cfg: &Value,
    ) -> Result<(), ConfigError> {
        let t = id.type_name();
        let r = match kind {
            ComponentKind::Receiver => self.receiver(t).map(|f| f.validate(id, cfg)),
            ComponentKind::Processor => self.processor(t).map(|f| f.validate(id, cfg)),
            ComponentKind::Exporter => self.exporter(t).map(|f| f.validate(id, cfg)),
            ComponentKind::Connector => self.connector(t).map(|f| f.validate(id, cfg)),
            ComponentKind::Extension => self.extension(t).map(|f| f.validate(id, cfg)),
        };
        r.unwrap_or_else(|| {
            Err(ConfigError::component(
                kind,
                id,
                "",
                format!(
                    "unknown type {t:?} for {} (known {}: {})",
                    kind.singular(),
                    kind.section(),
                    self.known(kind).join(", ")
                ),
            ))
        })
    }

    /// `None` when the component can sit in a pipeline of `signal` in `role`; otherwise the reason.
    pub fn signal_support(
        &self,
        kind: ComponentKind,
        id: &ComponentId,
        signal: Signal,
        role: &str,
    ) -> Option<String> {
        let t = id.type_name();
        let supported: Vec<Signal> = match kind {
            ComponentKind::Receiver => self.receiver(t)?.signals().to_vec(),
            ComponentKind::Processor => self.processor(t)?.signals().to_vec(),
            ComponentKind::Exporter => self.exporter(t)?.signals().to_vec(),
            ComponentKind::Connector => {
                let pairs = self.connector(t)?.pairs();
                if role == "exporters" {
                    pairs.iter().map(|p| p.0).collect()
                } else {
                    pairs.iter().map(|p| p.1).collect()
                }
            }
            ComponentKind::Extension => return None,
        };
        if supported.contains(&signal) {
            None
        } else {
            let names: Vec<&str> = dedup(supported).into_iter().map(Signal::as_str).collect();
            Some(format!(
                "{} {:?} does not support {signal} (it supports {})",
                kind.singular(),
                id.to_string(),
                names.join(", ")
            ))
        }
    }

    pub fn connector_supports(&self, id: &ComponentId, input: Signal, output: Signal) -> bool {
        self.connector(id.type_name())
            .is_some_and(|f| f.pairs().contains(&(input, output)))
    }

    /// The text `vigil components` prints: every type, grouped by kind, with its signals.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "buildinfo:\n  command: vigil\n  description: vigil node agent\n  version: {}\n",
            env!("CARGO_PKG_VERSION")
        ));
        // Each type is listed under its vigil name and again under every otelcol spelling of it.
        let list = |kind: ComponentKind, items: Vec<(&str, Vec<Signal>)>, out: &mut String| {
            out.push_str(&format!("{}:\n", kind.section()));
            for (t, sigs) in items {
                let s: Vec<&str> = sigs.iter().map(|s| s.as_str()).collect();
                out.push_str(&format!("  - name: {t}\n    signals: [{}]\n", s.join(", ")));
                for a in self.aliases(kind, t) {
                    out.push_str(&format!(
                        "  - name: {a}\n    alias_of: {t}\n    signals: [{}]\n",
                        s.join(", ")
                    ));
                }
            }
        };
        list(
            ComponentKind::Receiver,
            self.receivers
                .iter()
                .map(|(t, f)| (*t, f.signals().to_vec()))
                .collect(),
            &mut out,
        );
        list(
            ComponentKind::Processor,
            self.processors
                .iter()
                .map(|(t, f)| (*t, f.signals().to_vec()))
                .collect(),
            &mut out,
        );
        list(
            ComponentKind::Exporter,
            self.exporters
                .iter()
                .map(|(t, f)| (*t, f.signals().to_vec()))
                .collect(),
            &mut out,
        );
        out.push_str("connectors:\n");
        for (t, f) in &self.connectors {
            let pairs: Vec<String> = f
                .pairs()
                .iter()
                .map(|(i, o)| format!("{i}_to_{o}"))
                .collect();
            out.push_str(&format!(
                "  - name: {t}\n    signals: [{}]\n",
                pairs.join(", ")
            ));
            for a in self.aliases(ComponentKind::Connector, t) {
                out.push_str(&format!(
                    "  - name: {a}\n    alias_of: {t}\n    signals: [{}]\n",
                    pairs.join(", ")
                ));
            }
        }
        out.push_str("extensions:\n");
        for t in self.extensions.keys() {
            out.push_str(&format!("  - name: {t}\n"));
            for a in self.aliases(ComponentKind::Extension, t) {
                out.push_str(&format!("  - name: {a}\n    alias_of: {t}\n"));
            }
        }
        out
    }
}

/// otelcol's current (snake_case) names for component types vigil has, as `(kind, otelcol name, vigil
/// name)`. Each is accepted in a config and listed by `vigil components`. The first two are real
/// renames (otelcol's core, v0.144); the rest add underscores, which [`Registry::resolve`] would also
/// match, and are listed so that `vigil components` shows them. A component added later under an
/// older name (`k8sattributes`) is matched by its snake_case spelling without an entry here.
pub const RENAMES: &[(ComponentKind, &str, &str)] = &[
    (ComponentKind::Exporter, "otlp_grpc", "otlp"),
    (ComponentKind::Exporter, "otlp_http", "otlphttp"),
    (
        ComponentKind::Exporter,
        "prometheus_remote_write",
        "prometheusremotewrite",
    ),
    (ComponentKind::Receiver, "file_log", "filelog"),
    (ComponentKind::Receiver, "fluent_forward", "fluentforward"),
    (ComponentKind::Receiver, "http_check", "httpcheck"),
    (ComponentKind::Receiver, "host_metrics", "hostmetrics"),
    (
        ComponentKind::Receiver,
        "prometheus_remote_write",
        "prometheusremotewrite",
    ),
    (
        ComponentKind::Processor,
        "resource_detection",
        "resourcedetection",
    ),
    (ComponentKind::Connector, "service_graph", "servicegraph"),
    // The same pattern for the rest: otelcol's other spelling of each type vigil registers, so that
    // `vigil components` lists both (resolve() accepts them anyway, by squashing underscores).
    (ComponentKind::Receiver, "k8scluster", "k8s_cluster"),
    (ComponentKind::Receiver, "k8sevents", "k8s_events"),
    (ComponentKind::Receiver, "k8s_objects", "k8sobjects"),
    (ComponentKind::Receiver, "kubelet_stats", "kubeletstats"),
    (
        ComponentKind::Receiver,
        "aws_container_insight_receiver",
        "awscontainerinsightreceiver",
    ),
    (
        ComponentKind::Receiver,
        "receivercreator",
        "receiver_creator",
    ),
    (
        ComponentKind::Processor,
        "cumulative_to_delta",
        "cumulativetodelta",
    ),
    (ComponentKind::Processor, "group_by_attrs", "groupbyattrs"),
    (ComponentKind::Processor, "delta_to_rate", "deltatorate"),
    (
        ComponentKind::Processor,
        "delta_to_cumulative",
        "deltatocumulative",
    ),
    (ComponentKind::Processor, "group_by_trace", "groupbytrace"),
    (ComponentKind::Processor, "k8s_attributes", "k8sattributes"),
    (ComponentKind::Processor, "log_dedup", "logdedup"),
    (ComponentKind::Processor, "memorylimiter", "memory_limiter"),
    (
        ComponentKind::Processor,
        "metrics_generation",
        "metricsgeneration",
    ),
    (
        ComponentKind::Processor,
        "metrics_transform",
        "metricstransform",
    ),
    (
        ComponentKind::Processor,
        "metric_start_time",
        "metricstarttime",
    ),
    (ComponentKind::Processor, "remote_tap", "remotetap"),
    (
        ComponentKind::Processor,
        "probabilisticsampler",
        "probabilistic_sampler",
    ),
    (ComponentKind::Processor, "tailsampling", "tail_sampling"),
    (ComponentKind::Connector, "span_metrics", "spanmetrics"),
    (ComponentKind::Connector, "otlp_json", "otlpjson"),
    (ComponentKind::Connector, "round_robin", "roundrobin"),
    (ComponentKind::Extension, "basic_auth", "basicauth"),
    (
        ComponentKind::Extension,
        "bearer_token_auth",
        "bearertokenauth",
    ),
    (ComponentKind::Extension, "cgroupruntime", "cgroup_runtime"),
    (ComponentKind::Extension, "filestorage", "file_storage"),
    (ComponentKind::Extension, "headerssetter", "headers_setter"),
    (ComponentKind::Extension, "healthcheck", "health_check"),
    (ComponentKind::Extension, "httpforwarder", "http_forwarder"),
    (ComponentKind::Extension, "hostobserver", "host_observer"),
    (
        ComponentKind::Extension,
        "k8sleaderelector",
        "k8s_leader_elector",
    ),
    (ComponentKind::Extension, "k8sobserver", "k8s_observer"),
    (ComponentKind::Extension, "oauth2_client", "oauth2client"),
    (ComponentKind::Exporter, "aws_emf", "awsemf"),
    (
        ComponentKind::Exporter,
        "aws_cloudwatch_logs",
        "awscloudwatchlogs",
    ),
    (ComponentKind::Exporter, "aws_xray", "awsxray"),
    (ComponentKind::Extension, "aws_proxy", "awsproxy"),
    (ComponentKind::Receiver, "aws_xray", "awsxray"),
    (ComponentKind::Extension, "sigv4_auth", "sigv4auth"),
    (ComponentKind::Receiver, "tcp_log", "tcplog"),
    (ComponentKind::Receiver, "udp_log", "udplog"),
    (ComponentKind::Receiver, "splunkhec", "splunk_hec"),
    (ComponentKind::Processor, "elastic_apm", "elasticapm"),
    (ComponentKind::Connector, "elastic_apm", "elasticapm"),
];

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;

fn dedup(mut v: Vec<Signal>) -> Vec<Signal> {
    v.sort();
    v.dedup();
    v
}
