//! `nop`: otelcol's receiver that produces nothing. Configs use it to keep a pipeline valid while its
//! real source is switched off (a chart's disabled preset, a connector-only pipeline's placeholder).
//! It opens no port and starts no task.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use vigil_core::factory::{self, DynReceiverFactory, FactoryBase, ReceiverFactory};
use vigil_core::{Component, ConfigError, NextConsumers, Receiver, Settings, Signal, Stability};

/// `nop` has no keys; any key is refused, as otelcol refuses it.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NopConfig {}

struct Factory;

/// The `nop` receiver factory.
pub fn factory() -> Arc<dyn DynReceiverFactory> {
    factory::receiver(Factory)
}

impl FactoryBase for Factory {
    type Config = NopConfig;

    fn type_name(&self) -> &'static str {
        "nop"
    }
}

impl ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Beta),
            (Signal::Metrics, Stability::Beta),
            (Signal::Logs, Stability::Beta),
        ]
    }

    fn create(
        &self,
        _set: Settings,
        _cfg: NopConfig,
        _next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        Ok(Arc::new(Nop))
    }
}

struct Nop;

impl Component for Nop {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vigil_core::ComponentId;

    #[test]
    fn refuses_keys_as_otelcol_does() {
        let id = ComponentId::new("nop", None);
        factory()
            .validate(&id, &json!(null))
            .expect("nop: is valid");
        let err = factory()
            .validate(&id, &json!({"endpoint": "0.0.0.0:1"}))
            .expect_err("nop has no keys");
        assert!(err.to_string().contains("endpoint"), "{err}");
    }
}
