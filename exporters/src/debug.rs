//! `debug`: writes what reaches it to stderr, so that a first run shows data flowing. `basic` prints one
//! line per batch with counts, `normal` one line per span, data point or log record, and `detailed`
//! every field.

use crate::helper::ExporterMetrics;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use std::io::Write;
use std::sync::Arc;
use vigil_core::attrs::value_to_string;
use vigil_core::config::decode;
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::telemetry::metric_point_count;
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Exporter,
    ExporterFactory, Signal, Telemetry,
};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Verbosity {
    #[default]
    Basic,
    Normal,
    Detailed,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DebugConfig {
    #[serde(default)]
    verbosity: Verbosity,
    // Accepted for otelcol compatibility; sampling of output lines is not needed at these volumes.
    #[serde(default)]
    #[allow(dead_code)]
    sampling_initial: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)]
    sampling_thereafter: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)]
    use_internal_logger: Option<bool>,
}

struct Factory;

pub fn factory() -> Arc<dyn ExporterFactory> {
    Arc::new(Factory)
}

impl ExporterFactory for Factory {
    fn type_name(&self) -> &'static str {
        "debug"
    }

    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn validate(&self, id: &ComponentId, config: &Value) -> Result<(), ConfigError> {
        decode::<DebugConfig>(ComponentKind::Exporter, id, config).map(|_| ())
    }

    fn create(&self, id: &ComponentId, config: &Value) -> Result<Arc<dyn Exporter>, ConfigError> {
        let cfg: DebugConfig = decode(ComponentKind::Exporter, id, config)?;
        Ok(Arc::new(DebugExporter {
            id: id.to_string(),
            verbosity: cfg.verbosity,
            metrics: ExporterMetrics::new(&id.to_string()),
        }))
    }
}

struct DebugExporter {
    id: String,
    verbosity: Verbosity,
    metrics: ExporterMetrics,
}

impl Component for DebugExporter {}

#[async_trait]
impl Consumer for DebugExporter {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let text = render(&self.id, self.verbosity, &data);
        // One write per batch under the stderr lock keeps lines from concurrent batches apart.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
        self.metrics.sent(data.signal(), data.item_count() as u64);
        Ok(())
    }
}

fn attrs(list: &[KeyValue]) -> String {
    list.iter()
        .map(|kv| {
            let v = kv
                .value
                .as_ref()
                .and_then(|v| v.value.as_ref())
                .map(value_to_string)
                .unwrap_or_default();
            format!("{}={}", kv.key, v)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn render(id: &str, verbosity: Verbosity, data: &Telemetry) -> String {
    let mut out = String::new();
    match data {
        Telemetry::Traces(rs) => {
            out.push_str(&format!(
                "{id}: Traces {{\"resource spans\": {}, \"spans\": {}}}\n",
                rs.len(),
                data.item_count()
            ));
            if verbosity == Verbosity::Basic {
                return out;
            }
            for r in rs {
                if verbosity == Verbosity::Detailed {
                    let ra = r.resource.as_ref().map(|x| attrs(&x.attributes));
                    out.push_str(&format!("  Resource {}\n", ra.unwrap_or_default()));
                }
                for s in r.scope_spans.iter().flat_map(|s| &s.spans) {
                    out.push_str(&format!(
                        "  {} trace_id={} span_id={}",
                        s.name,
                        hex(&s.trace_id),
                        hex(&s.span_id)
                    ));
                    if verbosity == Verbosity::Detailed {
                        out.push_str(&format!(
                            " parent={} kind={} start={} end={} {}",
                            hex(&s.parent_span_id),
                            s.kind,
                            s.start_time_unix_nano,
                            s.end_time_unix_nano,
                            attrs(&s.attributes)
                        ));
                    }
                    out.push('\n');
                }
            }
        }
        Telemetry::Metrics(rm) => {
            let metric_count: usize = rm
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .map(|s| s.metrics.len())
                .sum();
            out.push_str(&format!(
                "{id}: Metrics {{\"resource metrics\": {}, \"metrics\": {}, \"data points\": {}}}\n",
                rm.len(),
                metric_count,
                data.item_count()
            ));
            if verbosity == Verbosity::Basic {
                return out;
            }
            for r in rm {
                for m in r.scope_metrics.iter().flat_map(|s| &s.metrics) {
                    out.push_str(&format!(
                        "  {} unit={} points={}",
                        m.name,
                        m.unit,
                        metric_point_count(m.data.as_ref())
                    ));
                    if verbosity == Verbosity::Detailed {
                        out.push_str(&format!(" {:?}", m.data));
                    }
                    out.push('\n');
                }
            }
        }
        Telemetry::Logs(rl) => {
            out.push_str(&format!(
                "{id}: Logs {{\"resource logs\": {}, \"log records\": {}}}\n",
                rl.len(),
                data.item_count()
            ));
            if verbosity == Verbosity::Basic {
                return out;
            }
            for r in rl {
                for l in r.scope_logs.iter().flat_map(|s| &s.log_records) {
                    let body = l
                        .body
                        .as_ref()
                        .and_then(|b| b.value.as_ref())
                        .map(value_to_string)
                        .unwrap_or_default();
                    out.push_str(&format!("  [{}] {}", l.severity_text, body));
                    if verbosity == Verbosity::Detailed {
                        out.push_str(&format!(
                            " time={} {}",
                            l.time_unix_nano,
                            attrs(&l.attributes)
                        ));
                    }
                    out.push('\n');
                }
            }
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
