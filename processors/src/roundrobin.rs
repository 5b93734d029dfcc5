//! `roundrobin` (`round_robin`): otelcol's connector that spreads the batches of one signal over
//! every pipeline of that signal it feeds, one pipeline per batch in turn, so that a slow
//! exporter can be run as several instances. It has no keys. Each batch goes to exactly one
//! pipeline and the sender gets that pipeline's answer.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use vigil_core::factory::{self, ConnectorFactory, DynConnectorFactory, FactoryBase};
use vigil_core::{
    Component, ConfigError, ConnectorObs, ConsumeError, Consumer, NextConsumers, Settings, Signal,
    Stability, Telemetry,
};

/// `roundrobin` has no keys.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoundRobinConfig {}

struct Factory;

/// The `roundrobin` connector factory (`round_robin` is accepted too).
pub fn factory() -> Arc<dyn DynConnectorFactory> {
    factory::connector(Factory)
}

impl FactoryBase for Factory {
    type Config = RoundRobinConfig;

    fn type_name(&self) -> &'static str {
        "roundrobin"
    }
}

impl ConnectorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Signal, Stability)] {
        &[
            (Signal::Traces, Signal::Traces, Stability::Beta),
            (Signal::Metrics, Signal::Metrics, Stability::Beta),
            (Signal::Logs, Signal::Logs, Stability::Beta),
        ]
    }

    fn create(
        &self,
        set: Settings,
        _cfg: RoundRobinConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn vigil_core::Connector>, ConfigError> {
        let mut by_signal: BTreeMap<Signal, Vec<Arc<dyn Consumer>>> = BTreeMap::new();
        for (p, c) in next.pipelines() {
            if let Some(s) = crate::routing::pipeline_signal(p) {
                by_signal.entry(s).or_default().push(Arc::clone(c));
            }
        }
        Ok(Arc::new(RoundRobin {
            targets: by_signal
                .into_iter()
                .map(|(s, v)| (s, (v, AtomicUsize::new(0))))
                .collect(),
            obs: set.connector_obs(),
            id: set.id.to_string(),
        }))
    }
}

struct RoundRobin {
    /// Each signal's pipelines (in pipeline id order) and the turn counter.
    targets: BTreeMap<Signal, (Vec<Arc<dyn Consumer>>, AtomicUsize)>,
    obs: ConnectorObs,
    id: String,
}

impl Component for RoundRobin {}

#[async_trait]
impl Consumer for RoundRobin {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let (signal, n) = (data.signal(), data.item_count());
        self.obs.consumed(signal, n);
        let Some((pipes, turn)) = self.targets.get(&signal).filter(|(p, _)| !p.is_empty()) else {
            return Err(ConsumeError::permanent(
                format!("connector {}: no {signal} pipeline to send to", self.id),
                n,
            ));
        };
        let i = turn.fetch_add(1, Ordering::Relaxed) % pipes.len();
        self.obs.produced(signal, n);
        pipes[i].consume(data).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::Keep;
    use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use vigil_core::ComponentId;

    fn logs(n: usize) -> Telemetry {
        Telemetry::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); n],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    #[tokio::test]
    async fn batches_take_turns_over_the_pipelines_of_their_signal() {
        let id = ComponentId::parse("roundrobin").unwrap();
        let (a, b, t) = (
            Arc::new(Keep::default()),
            Arc::new(Keep::default()),
            Arc::new(Keep::default()),
        );
        let mut next = NextConsumers::new();
        next.insert_pipeline("logs/a", a.clone());
        next.insert_pipeline("logs/b", b.clone());
        next.insert_pipeline("traces/t", t.clone());
        let c = factory()
            .create(&id, &serde_json::Value::Null, next)
            .expect("creates");
        for i in 1..=5 {
            c.consume(logs(i)).await.unwrap();
        }
        let sizes = |k: &Keep| -> Vec<usize> {
            vigil_core::lock(&k.0)
                .iter()
                .map(|d| d.item_count())
                .collect()
        };
        assert_eq!(sizes(&a), vec![1, 3, 5]);
        assert_eq!(sizes(&b), vec![2, 4]);
        assert!(sizes(&t).is_empty(), "traces pipelines get no logs");
        let r = c
            .consume(Telemetry::Metrics(vec![]))
            .await
            .expect_err("no metrics pipeline");
        assert!(r.to_string().contains("no metrics pipeline"), "{r}");
    }
}
