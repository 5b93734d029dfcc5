//! The one place that lists every component type vigil has. The config validator, the service graph
//! and `vigil components` all read from here.

use crate::extensions;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use vigil_core::{
    ComponentId, ComponentKind, ConfigError, ConnectorFactory, ExporterFactory, ExtensionFactory,
    ProcessorFactory, ReceiverFactory, Signal,
};

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
            ComponentKind::Receiver => self.receivers.get(t).map(|f| f.validate(id, cfg)),
            ComponentKind::Processor => self.processors.get(t).map(|f| f.validate(id, cfg)),
            ComponentKind::Exporter => self.exporters.get(t).map(|f| f.validate(id, cfg)),
            ComponentKind::Connector => self.connectors.get(t).map(|f| f.validate(id, cfg)),
            ComponentKind::Extension => self.extensions.get(t).map(|f| f.validate(id, cfg)),
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
            ComponentKind::Receiver => self.receivers.get(t)?.signals().to_vec(),
            ComponentKind::Processor => self.processors.get(t)?.signals().to_vec(),
            ComponentKind::Exporter => self.exporters.get(t)?.signals().to_vec(),
            ComponentKind::Connector => {
                let pairs = self.connectors.get(t)?.pairs();
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
        self.connectors
            .get(id.type_name())
            .is_some_and(|f| f.pairs().contains(&(input, output)))
    }

    /// The text `vigil components` prints: every type, grouped by kind, with its signals.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "buildinfo:\n  command: vigil\n  description: vigil node agent\n  version: {}\n",
            env!("CARGO_PKG_VERSION")
        ));
        let list = |name: &str, items: Vec<(&str, Vec<Signal>)>, out: &mut String| {
            out.push_str(&format!("{name}:\n"));
            for (t, sigs) in items {
                let s: Vec<&str> = sigs.iter().map(|s| s.as_str()).collect();
                out.push_str(&format!("  - name: {t}\n    signals: [{}]\n", s.join(", ")));
            }
        };
        list(
            "receivers",
            self.receivers
                .iter()
                .map(|(t, f)| (*t, f.signals().to_vec()))
                .collect(),
            &mut out,
        );
        list(
            "processors",
            self.processors
                .iter()
                .map(|(t, f)| (*t, f.signals().to_vec()))
                .collect(),
            &mut out,
        );
        list(
            "exporters",
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
        }
        out.push_str("extensions:\n");
        for t in self.extensions.keys() {
            out.push_str(&format!("  - name: {t}\n"));
        }
        out
    }
}

fn dedup(mut v: Vec<Signal>) -> Vec<Signal> {
    v.sort();
    v.dedup();
    v
}
