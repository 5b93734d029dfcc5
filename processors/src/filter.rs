//! `filter`: otelcol's filter processor with OTTL conditions. A span, metric, data point or log record
//! that matches any condition of its kind is dropped; a metric whose data points are all dropped goes
//! too, and so do scopes and resources left empty. Conditions are parsed once at config load by the
//! shared OTTL engine ([`vigil_ottl`]); `error_mode` decides what an evaluation error does.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value as Json;
use std::sync::Arc;
use vigil_core::config::decode;
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Processor,
    ProcessorFactory, Signal, Telemetry,
};
use vigil_ottl::pdata::{visit, Item};
use vigil_ottl::{parse_condition, Condition, Context, ErrorMode, Target};

/// The `filter` processor config as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// `propagate` (default), `ignore` or `silent`.
    #[serde(default)]
    pub error_mode: Option<String>,
    #[serde(default)]
    pub traces: TracesConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub logs: LogsConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    #[serde(default)]
    pub span: Vec<String>,
    #[serde(default)]
    pub spanevent: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    #[serde(default)]
    pub metric: Vec<String>,
    #[serde(default)]
    pub datapoint: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    #[serde(default)]
    pub log_record: Vec<String>,
}

/// The compiled config.
#[derive(Debug, Clone)]
struct Compiled {
    error_mode: ErrorMode,
    span: Vec<Condition>,
    spanevent: Vec<Condition>,
    metric: Vec<Condition>,
    datapoint: Vec<Condition>,
    log_record: Vec<Condition>,
}

fn compile(id: &ComponentId, value: &Json) -> Result<Compiled, ConfigError> {
    let c: FilterConfig = decode(ComponentKind::Processor, id, value)?;
    let error_mode = match c.error_mode.as_deref() {
        None => ErrorMode::Propagate,
        Some(m) => ErrorMode::parse(m)
            .map_err(|e| ConfigError::component(ComponentKind::Processor, id, "error_mode", e))?,
    };
    let list = |key: &str, ctx: Context, srcs: &[String]| -> Result<Vec<Condition>, ConfigError> {
        srcs.iter()
            .enumerate()
            .map(|(i, s)| {
                parse_condition(ctx, s).map_err(|e| {
                    ConfigError::component(
                        ComponentKind::Processor,
                        id,
                        format!("{key}::{i}"),
                        format!("condition {s:?}: {e}"),
                    )
                })
            })
            .collect()
    };
    Ok(Compiled {
        error_mode,
        span: list("traces::span", Context::Span, &c.traces.span)?,
        spanevent: list("traces::spanevent", Context::SpanEvent, &c.traces.spanevent)?,
        metric: list("metrics::metric", Context::Metric, &c.metrics.metric)?,
        datapoint: list(
            "metrics::datapoint",
            Context::DataPoint,
            &c.metrics.datapoint,
        )?,
        log_record: list("logs::log_record", Context::Log, &c.logs.log_record)?,
    })
}

struct Factory;

/// The `filter` processor factory.
pub fn factory() -> Arc<dyn ProcessorFactory> {
    Arc::new(Factory)
}

impl ProcessorFactory for Factory {
    fn type_name(&self) -> &'static str {
        "filter"
    }

    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn validate(&self, id: &ComponentId, config: &Json) -> Result<(), ConfigError> {
        compile(id, config).map(|_| ())
    }

    fn create(
        &self,
        id: &ComponentId,
        config: &Json,
        _signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let c = compile(id, config)?;
        let labels = [("processor", id.to_string())];
        Ok(Arc::new(FilterProcessor {
            id: id.to_string(),
            c,
            next,
            dropped: metrics::counter!("vigil_processor_filter_dropped_items", &labels),
        }))
    }
}

/// A running `filter` processor.
pub struct FilterProcessor {
    id: String,
    c: Compiled,
    next: Arc<dyn Consumer>,
    dropped: metrics::Counter,
}

impl FilterProcessor {
    /// Whether any condition matches. An error follows `error_mode`: propagate fails the batch,
    /// ignore logs it and treats the condition as false, silent just treats it as false.
    fn matches(&self, conds: &[Condition], t: &dyn Target) -> Result<bool, String> {
        for c in conds {
            match c.eval(t) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) => match self.c.error_mode {
                    ErrorMode::Propagate => return Err(e),
                    ErrorMode::Ignore => {
                        tracing::warn!(processor = %self.id, error = %e, "filter condition failed; keeping the item")
                    }
                    ErrorMode::Silent => {}
                },
            }
        }
        Ok(false)
    }

    /// Drops what matches, context by context: spans before their events, metrics before their
    /// data points (a metric left without points goes too). Returns the first error under
    /// `propagate`.
    fn filter(&self, data: &mut Telemetry) -> Result<(), String> {
        let mut err: Option<String> = None;
        let passes: [(&[Condition], Context); 5] = [
            (&self.c.span, Context::Span),
            (&self.c.spanevent, Context::SpanEvent),
            (&self.c.metric, Context::Metric),
            (&self.c.datapoint, Context::DataPoint),
            (&self.c.log_record, Context::Log),
        ];
        for (conds, ctx) in passes {
            if conds.is_empty() {
                continue;
            }
            visit(
                data,
                ctx,
                &mut |item: &mut Item<'_>| match self.matches(conds, item) {
                    Ok(drop) => !drop,
                    Err(e) => {
                        err.get_or_insert(e);
                        true
                    }
                },
            );
        }
        err.map_or(Ok(()), Err)
    }
}

impl Component for FilterProcessor {}

#[async_trait]
impl Consumer for FilterProcessor {
    async fn consume(&self, mut data: Telemetry) -> Result<(), ConsumeError> {
        let before = data.item_count();
        if let Err(e) = self.filter(&mut data) {
            return Err(ConsumeError::permanent(
                format!("filter processor {}: {e}", self.id),
                before,
            ));
        }
        let after = data.item_count();
        if after < before {
            self.dropped.increment((before - after) as u64);
        }
        // Nothing left: otelcol skips the rest of the pipeline for an emptied batch.
        if after == 0 {
            return Ok(());
        }
        self.next.consume(data).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use vigil_core::attrs::kv_str;
    use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use vigil_core::otlp::metrics::v1::{
        metric::Data, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    use vigil_core::otlp::resource::v1::Resource;

    #[derive(Default)]
    struct Keep(Mutex<Vec<Telemetry>>);

    #[async_trait]
    impl Consumer for Keep {
        async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
            self.0.lock().unwrap().push(data);
            Ok(())
        }
    }

    fn make(cfg: Json, signal: Signal) -> (Arc<dyn Processor>, Arc<Keep>) {
        let keep = Arc::new(Keep::default());
        let id = ComponentId::parse("filter/x").unwrap();
        (
            factory().create(&id, &cfg, signal, keep.clone()).unwrap(),
            keep,
        )
    }

    fn logs(sev: &[i32]) -> Telemetry {
        Telemetry::Logs(vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "web")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: sev
                    .iter()
                    .map(|s| LogRecord {
                        severity_number: *s,
                        attributes: vec![kv_str("n", s.to_string())],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    #[tokio::test]
    async fn drops_matching_log_records() {
        let (p, keep) = make(
            serde_json::json!({"logs": {"log_record": ["severity_number < SEVERITY_NUMBER_WARN", "attributes[\"n\"] == \"17\""]}}),
            Signal::Logs,
        );
        p.consume(logs(&[5, 9, 13, 17, 21])).await.unwrap();
        {
            let got = keep.0.lock().unwrap();
            assert_eq!(got.len(), 1);
            let Telemetry::Logs(rl) = &got[0] else {
                panic!()
            };
            let sev: Vec<i32> = rl[0].scope_logs[0]
                .log_records
                .iter()
                .map(|l| l.severity_number)
                .collect();
            assert_eq!(sev, vec![13, 21]);
        }
        // A batch emptied by the filter does not go on.
        p.consume(logs(&[1, 2])).await.unwrap();
        assert_eq!(keep.0.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn drops_data_points_then_empty_metrics() {
        let (p, keep) = make(
            serde_json::json!({"metrics": {
                "metric": ["name == \"noise\""],
                "datapoint": ["metric.type == METRIC_DATA_TYPE_GAUGE and attributes[\"cpu\"] != \"0\""],
            }}),
            Signal::Metrics,
        );
        let gauge = |name: &str, cpus: &[&str]| Metric {
            name: name.into(),
            data: Some(Data::Gauge(Gauge {
                data_points: cpus
                    .iter()
                    .map(|c| NumberDataPoint {
                        attributes: vec![kv_str("cpu", *c)],
                        ..Default::default()
                    })
                    .collect(),
            })),
            ..Default::default()
        };
        let data = Telemetry::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    gauge("noise", &["0"]),
                    gauge("cpu", &["0", "1"]),
                    gauge("other", &["1"]),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        p.consume(data).await.unwrap();
        let got = keep.0.lock().unwrap();
        let Telemetry::Metrics(rm) = &got[0] else {
            panic!()
        };
        let names: Vec<&str> = rm[0].scope_metrics[0]
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, vec!["cpu"]);
        assert_eq!(got[0].item_count(), 1);
    }

    /// Each bad config under testdata/filter names its key path and the unsupported part.
    #[test]
    fn bad_configs_name_the_key() {
        let id = ComponentId::parse("filter/x").unwrap();
        let n =
            crate::testdata::bad_configs("filter", |v| compile(&id, v).unwrap_err().to_string());
        assert!(n >= 5, "expected bad-config cases in testdata/filter");
    }

    #[test]
    fn good_configs_compile() {
        let id = ComponentId::parse("filter/x").unwrap();
        let n = crate::testdata::good_configs("filter", |v| {
            compile(&id, v).map(|_| ()).map_err(|e| e.to_string())
        });
        assert!(n >= 1, "expected good configs in testdata/filter");
    }
}
