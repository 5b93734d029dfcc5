//! `forward`: otelcol's connector that joins pipelines of the same signal, so that one pipeline's output
//! becomes another's input (for example to apply different processors before different exporters).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use vigil_core::factory::{self, ConnectorFactory, DynConnectorFactory, FactoryBase};
use vigil_core::{
    Component, ConfigError, ConsumeError, Consumer, NextConsumers, Settings, Signal, Stability,
    Telemetry,
};

/// `forward` has no keys.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {}

struct Factory;

/// The `forward` connector factory.
pub fn factory() -> Arc<dyn DynConnectorFactory> {
    factory::connector(Factory)
}

impl FactoryBase for Factory {
    type Config = ForwardConfig;

    fn type_name(&self) -> &'static str {
        "forward"
    }
}

impl ConnectorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Signal, Stability)] {
        &[
            (Signal::Traces, Signal::Traces, Stability::Beta),
            (Signal::Metrics, Signal::Metrics, Stability::Beta),
            (Signal::Logs, Signal::Logs, Stability::Beta),
            (Signal::Profiles, Signal::Profiles, Stability::Development),
        ]
    }

    fn create(
        &self,
        set: Settings,
        _cfg: ForwardConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn vigil_core::Connector>, ConfigError> {
        Ok(Arc::new(Forward {
            next,
            obs: set.connector_obs(),
        }))
    }
}

struct Forward {
    next: NextConsumers,
    obs: vigil_core::ConnectorObs,
}

impl Component for Forward {}

#[async_trait]
impl Consumer for Forward {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let (signal, n) = (data.signal(), data.item_count());
        self.obs.consumed(signal, n);
        self.obs.produced(signal, n);
        self.next.consume(data).await
    }
}
