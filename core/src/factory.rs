//! How a component is built: one typed factory trait per kind, and the object-safe wrappers the
//! registry keeps in its maps.
//!
//! A factory names its `Config` type. The registry decodes a component's section into it once
//! ([`crate::config::decode`], so every error carries the key path), runs the factory's pure
//! `validate`, and only then hands the typed value to `create`. `validate` may read what `start`
//! would read (a certificate file, say) but never starts, binds or spawns anything, so `vigil
//! validate` and a reload check are free of side effects. `create` receives [`Settings`]: the id, a
//! tracing span, ready-labelled self-telemetry handles, and a [`Tasks`] set that stops by the shutdown
//! deadline. This mirrors otelcol's `receiver.Factory` with Vector's `DynValid` split between the
//! typed factory and the object the registry holds.

use crate::component::{
    ComponentId, ComponentKind, Connector, Exporter, Extension, Processor, Receiver,
};
use crate::config::{decode, ConfigError};
use crate::consumer::{Consumer, NextConsumers};
use crate::obs::{ConnectorObs, ExporterObs, ProcessorObs, ReceiverObs};
use crate::task::Tasks;
use crate::telemetry::Signal;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;

/// otelcol's stability levels, per signal, as its component READMEs list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stability {
    Development,
    Alpha,
    Beta,
    Stable,
    Deprecated,
}

impl Stability {
    pub fn as_str(self) -> &'static str {
        match self {
            Stability::Development => "development",
            Stability::Alpha => "alpha",
            Stability::Beta => "beta",
            Stability::Stable => "stable",
            Stability::Deprecated => "deprecated",
        }
    }
}

impl fmt::Display for Stability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What every component gets at creation besides its config.
#[derive(Clone)]
pub struct Settings {
    pub id: ComponentId,
    pub kind: ComponentKind,
    /// `component{kind=…, id=…}`: enter it (or `.instrument` a task with it) so that every log line
    /// names the component.
    pub span: tracing::Span,
    /// Background tasks of this component, stopped together by [`Tasks::stop`].
    pub tasks: Tasks,
}

impl Settings {
    pub fn new(kind: ComponentKind, id: &ComponentId) -> Settings {
        let span = tracing::info_span!("component", kind = kind.singular(), id = %id);
        Settings {
            id: id.clone(),
            kind,
            tasks: Tasks::new(format!("{kind} {id}")),
            span,
        }
    }

    /// `otelcol_receiver_*` for this receiver on `transport` (`grpc`, `http`, `tcp`, …; empty for
    /// receivers that have none, such as scrapers).
    pub fn receiver_obs(&self, transport: &str) -> ReceiverObs {
        ReceiverObs::new(&self.id, transport)
    }

    /// `otelcol_processor_*` for this processor in a pipeline of `signal`.
    pub fn processor_obs(&self, signal: Signal) -> ProcessorObs {
        ProcessorObs::new(&self.id, signal)
    }

    /// `otelcol_connector_*` for this connector, every signal.
    pub fn connector_obs(&self) -> ConnectorObs {
        ConnectorObs::new(&self.id)
    }

    /// `otelcol_exporter_*` for this exporter.
    pub fn exporter_obs(&self) -> ExporterObs {
        ExporterObs::new(&self.id)
    }
}

/// What every typed factory declares, whatever its kind.
pub trait FactoryBase: Send + Sync + 'static {
    /// The component's config section, decoded. Each field's serde default is otelcol's default;
    /// `Serialize` lets the generated reference show every key with its effective value.
    type Config: DeserializeOwned + Serialize + Send + Sync + 'static;

    fn type_name(&self) -> &'static str;

    /// The config of a section with no keys (`otlp:`), as otelcol's `createDefaultConfig`; `None`
    /// when the component has keys without a default (an exporter's `endpoint`).
    fn default_config(&self) -> Option<Self::Config> {
        crate::config::decode_all(&Value::Null).ok()
    }

    /// Checks what the types cannot. Pure: reads at most what start would read, starts nothing.
    /// Errors carry the key path inside the section ([`ConfigError::at`]); the registry adds the
    /// section and id to those that have none. `id` is for messages that name the component.
    fn validate(&self, _id: &ComponentId, _cfg: &Self::Config) -> Result<(), ConfigError> {
        Ok(())
    }
}

pub trait ReceiverFactory: FactoryBase {
    /// The signals this receiver produces, each with its stability.
    fn stability(&self) -> &'static [(Signal, Stability)];
    fn create(
        &self,
        set: Settings,
        cfg: Self::Config,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError>;
}

pub trait ProcessorFactory: FactoryBase {
    fn stability(&self) -> &'static [(Signal, Stability)];
    /// Processors are created once per pipeline, as otelcol does.
    fn create(
        &self,
        set: Settings,
        cfg: Self::Config,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError>;
}

pub trait ExporterFactory: FactoryBase {
    fn stability(&self) -> &'static [(Signal, Stability)];
    fn create(&self, set: Settings, cfg: Self::Config) -> Result<Arc<dyn Exporter>, ConfigError>;
    /// Checks a config against one pipeline's signal, for keys that fit only some signals
    /// (loadbalancing's `routing_key`). Called once per pipeline the exporter is in, after
    /// `validate`; an exporter is one instance for all its pipelines, so `create` cannot.
    fn validate_signal(
        &self,
        _id: &ComponentId,
        _cfg: &Self::Config,
        _signal: Signal,
    ) -> Result<(), ConfigError> {
        Ok(())
    }
}

pub trait ConnectorFactory: FactoryBase {
    /// The (input, output) pairs this connector supports, each with its stability.
    fn stability(&self) -> &'static [(Signal, Signal, Stability)];
    fn create(
        &self,
        set: Settings,
        cfg: Self::Config,
        next: NextConsumers,
    ) -> Result<Arc<dyn Connector>, ConfigError>;
}

pub trait ExtensionFactory: FactoryBase {
    fn stability(&self) -> Stability;
    fn create(&self, set: Settings, cfg: Self::Config) -> Result<Arc<dyn Extension>, ConfigError>;
}

/// What the registry knows of any factory, whatever its kind: object-safe, config as a generic value.
pub trait DynFactory: Send + Sync {
    fn kind(&self) -> ComponentKind;
    fn type_name(&self) -> &'static str;
    /// Signals by stability: one row per signal (or `in_to_out` pair for connectors; empty for
    /// extensions, whose stability is [`DynFactory::extension_stability`]).
    fn signal_stability(&self) -> Vec<(String, Stability)>;
    /// The default config as a generic value (`None` when some key has no default); for the
    /// reference and the lifecycle test.
    fn default_value(&self) -> Option<Value>;
    /// `config` decoded and shown again with every key, defaults filled in: what the component
    /// runs with.
    fn resolved(&self, id: &ComponentId, config: &Value) -> Result<Value, ConfigError>;
    /// Decodes and validates; nothing is created.
    fn validate(&self, id: &ComponentId, config: &Value) -> Result<(), ConfigError>;
}

/// A receiver factory as the registry holds it.
pub trait DynReceiverFactory: DynFactory {
    fn signals(&self) -> Vec<Signal>;
    fn create(
        &self,
        id: &ComponentId,
        config: &Value,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError>;
}

pub trait DynProcessorFactory: DynFactory {
    fn signals(&self) -> Vec<Signal>;
    fn create(
        &self,
        id: &ComponentId,
        config: &Value,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError>;
}

pub trait DynExporterFactory: DynFactory {
    fn signals(&self) -> Vec<Signal>;
    fn create(&self, id: &ComponentId, config: &Value) -> Result<Arc<dyn Exporter>, ConfigError>;
    /// [`ExporterFactory::validate_signal`] on the decoded section; a section that does not
    /// decode passes here (`validate` reports it).
    fn validate_signal(
        &self,
        id: &ComponentId,
        config: &Value,
        signal: Signal,
    ) -> Result<(), ConfigError>;
}

pub trait DynConnectorFactory: DynFactory {
    fn pairs(&self) -> Vec<(Signal, Signal)>;
    fn create(
        &self,
        id: &ComponentId,
        config: &Value,
        next: NextConsumers,
    ) -> Result<Arc<dyn Connector>, ConfigError>;
}

pub trait DynExtensionFactory: DynFactory {
    fn extension_stability(&self) -> Stability;
    fn create(&self, id: &ComponentId, config: &Value) -> Result<Arc<dyn Extension>, ConfigError>;
}

/// Holds a typed factory of kind `K` and implements the matching `Dyn…Factory` for it.
pub struct Typed<F>(pub F);

/// Decodes `config`, validates it and returns the typed value: the one place a section is decoded.
fn decode_valid<F: FactoryBase>(
    f: &F,
    kind: ComponentKind,
    id: &ComponentId,
    config: &Value,
) -> Result<F::Config, ConfigError> {
    let cfg: F::Config = decode(kind, id, config)?;
    f.validate(id, &cfg).map_err(|e| e.in_component(kind, id))?;
    Ok(cfg)
}

/// Decodes and validates `config`, then builds the component with `make`: the one path from a
/// section to a running component, whatever its kind.
fn build<F: FactoryBase, T>(
    f: &F,
    kind: ComponentKind,
    id: &ComponentId,
    config: &Value,
    make: impl FnOnce(Settings, F::Config) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let cfg = decode_valid(f, kind, id, config)?;
    make(Settings::new(kind, id), cfg).map_err(|e| e.in_component(kind, id))
}

fn default_value<F: FactoryBase>(f: &F) -> Option<Value> {
    serde_json::to_value(f.default_config()?).ok()
}

fn resolved<F: FactoryBase>(
    f: &F,
    kind: ComponentKind,
    id: &ComponentId,
    config: &Value,
) -> Result<Value, ConfigError> {
    let cfg = decode_valid(f, kind, id, config)?;
    serde_json::to_value(cfg)
        .map_err(|e| ConfigError::component(kind, id, "", format!("cannot be shown: {e}")))
}

macro_rules! dyn_base {
    ($kind:expr, $stab:expr) => {
        fn kind(&self) -> ComponentKind {
            $kind
        }
        fn type_name(&self) -> &'static str {
            self.0.type_name()
        }
        fn signal_stability(&self) -> Vec<(String, Stability)> {
            $stab(&self.0)
        }
        fn default_value(&self) -> Option<Value> {
            default_value(&self.0)
        }
        fn resolved(&self, id: &ComponentId, config: &Value) -> Result<Value, ConfigError> {
            resolved(&self.0, $kind, id, config)
        }
        fn validate(&self, id: &ComponentId, config: &Value) -> Result<(), ConfigError> {
            decode_valid(&self.0, $kind, id, config).map(|_| ())
        }
    };
}

fn per_signal(s: &[(Signal, Stability)]) -> Vec<(String, Stability)> {
    s.iter().map(|(sig, st)| (sig.to_string(), *st)).collect()
}

impl<F: ReceiverFactory> DynFactory for Typed<F> {
    dyn_base!(ComponentKind::Receiver, |f: &F| per_signal(f.stability()));
}
impl<F: ReceiverFactory> DynReceiverFactory for Typed<F> {
    fn signals(&self) -> Vec<Signal> {
        self.0.stability().iter().map(|s| s.0).collect()
    }
    fn create(
        &self,
        id: &ComponentId,
        config: &Value,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        let kind = ComponentKind::Receiver;
        build(&self.0, kind, id, config, |set, cfg| {
            self.0.create(set, cfg, next)
        })
    }
}

/// The processor wrapper is a separate type so that one struct can implement two factory kinds
/// without the blanket impls overlapping.
pub struct TypedProcessor<F>(pub F);
impl<F: ProcessorFactory> DynFactory for TypedProcessor<F> {
    dyn_base!(ComponentKind::Processor, |f: &F| per_signal(f.stability()));
}
impl<F: ProcessorFactory> DynProcessorFactory for TypedProcessor<F> {
    fn signals(&self) -> Vec<Signal> {
        self.0.stability().iter().map(|s| s.0).collect()
    }
    fn create(
        &self,
        id: &ComponentId,
        config: &Value,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let kind = ComponentKind::Processor;
        // The config check refuses a processor in a pipeline of a signal it lacks; this keeps a
        // caller that skipped it (a test, `vigil eval`) from building one that would misbehave.
        if !self.0.stability().iter().any(|(s, _)| *s == signal) {
            return Err(ConfigError::component(
                kind,
                id,
                "",
                format!("{} does not process {signal}", self.0.type_name()),
            ));
        }
        build(&self.0, kind, id, config, |set, cfg| {
            self.0.create(set, cfg, signal, next)
        })
    }
}

pub struct TypedExporter<F>(pub F);
impl<F: ExporterFactory> DynFactory for TypedExporter<F> {
    dyn_base!(ComponentKind::Exporter, |f: &F| per_signal(f.stability()));
}
impl<F: ExporterFactory> DynExporterFactory for TypedExporter<F> {
    fn signals(&self) -> Vec<Signal> {
        self.0.stability().iter().map(|s| s.0).collect()
    }
    fn create(&self, id: &ComponentId, config: &Value) -> Result<Arc<dyn Exporter>, ConfigError> {
        let kind = ComponentKind::Exporter;
        build(&self.0, kind, id, config, |set, cfg| {
            self.0.create(set, cfg)
        })
    }
    fn validate_signal(
        &self,
        id: &ComponentId,
        config: &Value,
        signal: Signal,
    ) -> Result<(), ConfigError> {
        let kind = ComponentKind::Exporter;
        let Ok(cfg) = decode::<F::Config>(kind, id, config) else {
            return Ok(());
        };
        self.0
            .validate_signal(id, &cfg, signal)
            .map_err(|e| e.in_component(kind, id))
    }
}

pub struct TypedConnector<F>(pub F);
impl<F: ConnectorFactory> DynFactory for TypedConnector<F> {
    dyn_base!(ComponentKind::Connector, |f: &F| f
        .stability()
        .iter()
        .map(|(i, o, s)| (format!("{i}_to_{o}"), *s))
        .collect());
}
impl<F: ConnectorFactory> DynConnectorFactory for TypedConnector<F> {
    fn pairs(&self) -> Vec<(Signal, Signal)> {
        self.0
            .stability()
            .iter()
            .map(|(i, o, _)| (*i, *o))
            .collect()
    }
    fn create(
        &self,
        id: &ComponentId,
        config: &Value,
        next: NextConsumers,
    ) -> Result<Arc<dyn Connector>, ConfigError> {
        let kind = ComponentKind::Connector;
        build(&self.0, kind, id, config, |set, cfg| {
            self.0.create(set, cfg, next)
        })
    }
}

pub struct TypedExtension<F>(pub F);
impl<F: ExtensionFactory> DynFactory for TypedExtension<F> {
    dyn_base!(ComponentKind::Extension, |_: &F| Vec::new());
}
impl<F: ExtensionFactory> DynExtensionFactory for TypedExtension<F> {
    fn extension_stability(&self) -> Stability {
        self.0.stability()
    }
    fn create(&self, id: &ComponentId, config: &Value) -> Result<Arc<dyn Extension>, ConfigError> {
        let kind = ComponentKind::Extension;
        build(&self.0, kind, id, config, |set, cfg| {
            self.0.create(set, cfg)
        })
    }
}

/// A typed receiver factory, ready for the registry.
pub fn receiver<F: ReceiverFactory>(f: F) -> Arc<dyn DynReceiverFactory> {
    Arc::new(Typed(f))
}
/// A typed processor factory, ready for the registry.
pub fn processor<F: ProcessorFactory>(f: F) -> Arc<dyn DynProcessorFactory> {
    Arc::new(TypedProcessor(f))
}
/// A typed exporter factory, ready for the registry.
pub fn exporter<F: ExporterFactory>(f: F) -> Arc<dyn DynExporterFactory> {
    Arc::new(TypedExporter(f))
}
/// A typed connector factory, ready for the registry.
pub fn connector<F: ConnectorFactory>(f: F) -> Arc<dyn DynConnectorFactory> {
    Arc::new(TypedConnector(f))
}
/// A typed extension factory, ready for the registry.
pub fn extension<F: ExtensionFactory>(f: F) -> Arc<dyn DynExtensionFactory> {
    Arc::new(TypedExtension(f))
}
