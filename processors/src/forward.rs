//! `forward`: otelcol's connector that joins pipelines of the same signal, so that one pipeline's output
//! becomes another's input (for example to apply different processors before different exporters).

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use vigil_core::config::decode;
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConnectorFactory, ConsumeError, Consumer,
    NextConsumers, Signal, Telemetry,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForwardConfig {}

struct Factory;

pub fn factory() -> Arc<dyn ConnectorFactory> {
    Arc::new(Factory)
}

impl ConnectorFactory for Factory {
    fn type_name(&self) -> &'static str {
        "forward"
    }

    fn pairs(&self) -> &'static [(Signal, Signal)] {
        &[
            (Signal::Traces, Signal::Traces),
            (Signal::Metrics, Signal::Metrics),
            (Signal::Logs, Signal::Logs),
        ]
    }

    fn validate(&self, id: &ComponentId, config: &Value) -> Result<(), ConfigError> {
        decode::<ForwardConfig>(ComponentKind::Connector, id, config).map(|_| ())
    }

    fn create(
        &self,
        id: &ComponentId,
        config: &Value,
        next: NextConsumers,
    ) -> Result<Arc<dyn vigil_core::Connector>, ConfigError> {
        self.validate(id, config)?;
        Ok(Arc::new(Forward { next }))
    }
}

struct Forward {
    next: NextConsumers,
}

impl Component for Forward {}

#[async_trait]
impl Consumer for Forward {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        self.next.consume(data).await
    }
}
