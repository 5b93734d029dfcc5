//! Elastic's `elasticapm` processor and connector (elastic/opentelemetry-collector-components), as the
//! EDOT collector configs use them: the processor ([`processor`]) adds the Elastic APM attributes to
//! spans, resources and scopes; the connector ([`connector`]) turns spans (and logs and metric data
//! points, for `service_summary`) into the aggregated APM metrics. Both share the type name, as in
//! the original, and the keys are its own ([`config`]); keys whose behaviour is not built here are
//! refused by name.

pub mod config;
pub mod connector;
pub mod processor;

use config::{ConnectorConfig, ProcessorConfig};
use std::sync::Arc;
use vigil_core::factory::{
    self, ConnectorFactory, DynConnectorFactory, DynProcessorFactory, FactoryBase, ProcessorFactory,
};
use vigil_core::{
    ComponentId, ConfigError, Consumer, NextConsumers, Processor, Settings, Signal, Stability,
};

struct ProcFactory;

/// The `elasticapm` processor factory.
pub fn processor_factory() -> Arc<dyn DynProcessorFactory> {
    factory::processor(ProcFactory)
}

impl FactoryBase for ProcFactory {
    type Config = ProcessorConfig;

    fn type_name(&self) -> &'static str {
        "elasticapm"
    }

    fn validate(&self, _id: &ComponentId, cfg: &ProcessorConfig) -> Result<(), ConfigError> {
        cfg.validate()
    }
}

impl ProcessorFactory for ProcFactory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Alpha),
            (Signal::Metrics, Stability::Alpha),
            (Signal::Logs, Stability::Alpha),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: ProcessorConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        Ok(Arc::new(processor::ElasticApmProcessor {
            enricher: processor::Enricher::new(cfg),
            next,
            obs: set.processor_obs(signal),
        }))
    }
}

struct ConnFactory;

/// The `elasticapm` connector factory.
pub fn connector_factory() -> Arc<dyn DynConnectorFactory> {
    factory::connector(ConnFactory)
}

impl FactoryBase for ConnFactory {
    type Config = ConnectorConfig;

    fn type_name(&self) -> &'static str {
        "elasticapm"
    }

    fn validate(&self, _id: &ComponentId, cfg: &ConnectorConfig) -> Result<(), ConfigError> {
        cfg.validate()
    }
}

impl ConnectorFactory for ConnFactory {
    fn stability(&self) -> &'static [(Signal, Signal, Stability)] {
        &[
            (Signal::Traces, Signal::Metrics, Stability::Development),
            (Signal::Logs, Signal::Metrics, Stability::Development),
            (Signal::Metrics, Signal::Metrics, Stability::Development),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: ConnectorConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn vigil_core::Connector>, ConfigError> {
        let inner = connector::Inner::new(set.id.to_string(), &cfg, next, set.connector_obs());
        Ok(Arc::new(connector::ElasticApmConnector {
            inner: Arc::new(inner),
            tasks: set.tasks,
        }))
    }
}

#[cfg(test)]
mod tests;
