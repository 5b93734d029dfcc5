//! `deltatorate` (`delta_to_rate`): otelcol-contrib's processor that turns the delta sums named in
//! `metrics` into gauges of their rate per second: each point's value divided by the seconds
//! between its start and its timestamp, as a double. A named metric that is not a delta sum is
//! left as it is (and logged once), as otelcol does. Stateless.
//!
//! Unlike otelcol, a point whose timestamp is not after its start is dropped rather than sent as
//! an infinite or NaN rate.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use vigil_core::factory::{self, DynProcessorFactory, FactoryBase, ProcessorFactory};
use vigil_core::otlp::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Metric, ResourceMetrics,
};
use vigil_core::{
    lock, Component, ComponentId, ConfigError, ConsumeError, Consumer, Processor, ProcessorObs,
    Settings, Signal, Stability, Telemetry,
};

/// The `deltatorate` processor config.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeltaToRateConfig {
    /// Names of the delta sums to turn into rates.
    pub metrics: Vec<String>,
}

struct Factory;

/// The `deltatorate` processor factory (`delta_to_rate` is accepted too).
pub fn factory() -> Arc<dyn DynProcessorFactory> {
    factory::processor(Factory)
}

impl FactoryBase for Factory {
    type Config = DeltaToRateConfig;

    fn type_name(&self) -> &'static str {
        "deltatorate"
    }

    fn validate(&self, _id: &ComponentId, cfg: &DeltaToRateConfig) -> Result<(), ConfigError> {
        if cfg.metrics.is_empty() {
            return Err(ConfigError::at("metrics", "metric names are missing"));
        }
        Ok(())
    }

    fn default_config(&self) -> Option<DeltaToRateConfig> {
        None
    }
}

impl ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[(Signal::Metrics, Stability::Development)]
    }

    fn create(
        &self,
        set: Settings,
        cfg: DeltaToRateConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        Ok(Arc::new(DeltaToRate {
            names: cfg.metrics.into_iter().collect(),
            warned: Mutex::new(HashSet::new()),
            next,
            obs: set.processor_obs(signal),
        }))
    }
}

/// A running `deltatorate` processor.
pub struct DeltaToRate {
    names: BTreeSet<String>,
    /// Names already logged as not being delta sums (at most `names`' size).
    warned: Mutex<HashSet<String>>,
    next: Arc<dyn Consumer>,
    obs: ProcessorObs,
}

impl DeltaToRate {
    fn process(&self, rms: &mut Vec<ResourceMetrics>) {
        for rm in rms.iter_mut() {
            for sm in rm.scope_metrics.iter_mut() {
                for m in sm.metrics.iter_mut() {
                    if self.names.contains(&m.name)
                        && !to_rate(m)
                        && lock(&self.warned).insert(m.name.clone())
                    {
                        tracing::info!(
                            metric = %m.name,
                            "configured metric for rate calculation is not a delta sum; left unchanged"
                        );
                    }
                }
                sm.metrics
                    .retain(|m| crate::points::count(m) > 0 || m.data.is_none());
            }
            rm.scope_metrics.retain(|sm| !sm.metrics.is_empty());
        }
        rms.retain(|rm| !rm.scope_metrics.is_empty());
    }
}

/// Replaces a delta sum by the gauge of its rates; `false` (and unchanged) for anything else.
fn to_rate(m: &mut Metric) -> bool {
    let Some(metric::Data::Sum(s)) = &mut m.data else {
        return false;
    };
    if s.aggregation_temporality != AggregationTemporality::Delta as i32 {
        return false;
    }
    let mut pts = std::mem::take(&mut s.data_points);
    pts.retain_mut(|p| {
        let Some(nanos) = p.time_unix_nano.checked_sub(p.start_time_unix_nano) else {
            return false;
        };
        if nanos == 0 {
            return false;
        }
        let secs = nanos as f64 / 1e9;
        let v = match p.value {
            Some(number_data_point::Value::AsInt(i)) => i as f64,
            Some(number_data_point::Value::AsDouble(d)) => d,
            None => return false,
        };
        p.value = Some(number_data_point::Value::AsDouble(v / secs));
        true
    });
    m.data = Some(metric::Data::Gauge(Gauge { data_points: pts }));
    true
}

#[async_trait]
impl Component for DeltaToRate {}

#[async_trait]
impl Consumer for DeltaToRate {
    async fn consume(&self, mut data: Telemetry) -> Result<(), ConsumeError> {
        self.obs.incoming(data.item_count());
        if let Telemetry::Metrics(rms) = &mut data {
            self.process(rms);
        }
        self.obs.outgoing(data.item_count());
        self.next.consume(data).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vigil_core::otlp::metrics::v1::{NumberDataPoint, ScopeMetrics, Sum};

    fn sum(name: &str, temporality: AggregationTemporality, pts: Vec<(u64, u64, i64)>) -> Metric {
        Metric {
            name: name.into(),
            data: Some(metric::Data::Sum(Sum {
                aggregation_temporality: temporality as i32,
                is_monotonic: true,
                data_points: pts
                    .into_iter()
                    .map(|(start, time, v)| NumberDataPoint {
                        start_time_unix_nano: start,
                        time_unix_nano: time,
                        value: Some(number_data_point::Value::AsInt(v)),
                        ..Default::default()
                    })
                    .collect(),
            })),
            ..Default::default()
        }
    }

    fn run(metrics: Vec<Metric>) -> Vec<Metric> {
        let p = DeltaToRate {
            names: ["requests".to_string(), "bytes".to_string()].into(),
            warned: Mutex::new(HashSet::new()),
            next: Arc::new(crate::testdata::Keep::default()),
            obs: ProcessorObs::new(&ComponentId::new("deltatorate", None), Signal::Metrics),
        };
        let mut rms = vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }];
        p.process(&mut rms);
        rms.into_iter()
            .flat_map(|r| r.scope_metrics)
            .flat_map(|s| s.metrics)
            .collect()
    }

    #[test]
    fn named_delta_sums_become_per_second_gauges() {
        let s = 1_000_000_000;
        let out = run(vec![
            sum(
                "requests",
                AggregationTemporality::Delta,
                vec![(0, 10 * s, 50), (10 * s, 12 * s, 3)],
            ),
            sum(
                "bytes",
                AggregationTemporality::Cumulative,
                vec![(0, 10 * s, 50)],
            ),
            sum(
                "other",
                AggregationTemporality::Delta,
                vec![(0, 10 * s, 50)],
            ),
        ]);
        let Some(metric::Data::Gauge(g)) = &out[0].data else {
            panic!("requests is a gauge: {:?}", out[0])
        };
        let rates: Vec<_> = g.data_points.iter().map(|p| p.value).collect();
        assert_eq!(
            rates,
            [
                Some(number_data_point::Value::AsDouble(5.0)),
                Some(number_data_point::Value::AsDouble(1.5))
            ]
        );
        assert!(
            matches!(out[1].data, Some(metric::Data::Sum(_))),
            "cumulative stays a sum"
        );
        assert!(
            matches!(out[2].data, Some(metric::Data::Sum(_))),
            "unnamed stays a sum"
        );
    }

    #[test]
    fn a_point_without_a_duration_is_dropped() {
        let out = run(vec![sum(
            "requests",
            AggregationTemporality::Delta,
            vec![(5, 5, 1)],
        )]);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn config_cases() {
        let id = ComponentId::new("deltatorate", Some("x"));
        let f = factory();
        assert!(
            f.validate(&id, &json!(null)).is_err(),
            "metrics are required"
        );
        crate::testdata::check_all("deltatorate", 1, |v| {
            f.validate(&id, v).map_err(|e| e.to_string())
        });
    }
}
