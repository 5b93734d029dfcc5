//! `nop`: otelcol's exporter that accepts everything and sends it nowhere. Configs use it to close a
//! pipeline that must exist (a receiver whose data nobody wants yet, a connector's other side).
//! What it drops is counted as sent (`otelcol_exporter_sent_*`), so the own metrics still show how
//! much flowed through a pipeline that ends here.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use vigil_core::factory::{self, DynExporterFactory, ExporterFactory, FactoryBase};
use vigil_core::{
    Component, ConfigError, ConsumeError, Consumer, Exporter, ExporterObs, Settings, Signal,
    Stability, Telemetry,
};

/// `nop` has no keys; any key is refused, as otelcol refuses it.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NopConfig {}

struct Factory;

/// The `nop` exporter factory.
pub fn factory() -> Arc<dyn DynExporterFactory> {
    factory::exporter(Factory)
}

impl FactoryBase for Factory {
    type Config = NopConfig;

    fn type_name(&self) -> &'static str {
        "nop"
    }
}

impl ExporterFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Beta),
            (Signal::Metrics, Stability::Beta),
            (Signal::Logs, Stability::Beta),
        ]
    }

    fn create(&self, set: Settings, _cfg: NopConfig) -> Result<Arc<dyn Exporter>, ConfigError> {
        Ok(Arc::new(Nop {
            obs: set.exporter_obs(),
        }))
    }
}

struct Nop {
    obs: ExporterObs,
}

impl Component for Nop {}

#[async_trait]
impl Consumer for Nop {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        self.obs.sent(data.signal(), data.item_count() as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::DebuggingRecorder;
    use serde_json::json;
    use vigil_core::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use vigil_core::ComponentId;

    fn spans(n: usize) -> Telemetry {
        Telemetry::Traces(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span::default(); n],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    #[test]
    fn accepts_drops_and_counts_what_it_dropped() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let id = ComponentId::new("nop", Some("t"));
            let exp = factory().create(&id, &json!(null)).expect("create");
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            rt.block_on(async {
                exp.consume(spans(3)).await.expect("nop accepts");
                exp.consume(spans(4)).await.expect("nop accepts");
            });
        });
        let sent = vigil_core::testing::Counters::take(&snapshotter)
            .find("otelcol_exporter_sent_spans", &[("exporter", "nop/t")]);
        assert_eq!(sent, Some(7));
    }

    #[test]
    fn refuses_keys_as_otelcol_does() {
        let id = ComponentId::new("nop", None);
        let err = factory()
            .validate(&id, &json!({"verbosity": "detailed"}))
            .expect_err("nop has no keys");
        assert!(err.to_string().contains("verbosity"), "{err}");
    }
}
