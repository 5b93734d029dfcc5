//! `debug`: writes what reaches it to stderr, so that a first run shows data flowing. `basic` prints one
//! line per batch with counts, `normal` one line per span, data point or log record, and `detailed`
//! every field. vigil's own events (`vigil.anomaly`, `vigil.incident`, ...) get one readable line each
//! at every verbosity: they are what a person runs vigil to see, and a count of them says nothing.

use async_trait::async_trait;
use serde::Deserialize;
use std::io::Write;
use std::sync::Arc;
use vigil_core::attrs::{attrs_to_string, value_to_string};
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::telemetry::metric_point_count;
use vigil_core::{
    Component, ComponentId, ConfigError, ConsumeError, Consumer, Exporter, Signal, Telemetry,
};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    #[default]
    Basic,
    Normal,
    Detailed,
}

/// The `debug` exporter config.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DebugConfig {
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

/// The `debug` exporter factory, for the registry.
pub fn factory() -> Arc<dyn vigil_core::factory::DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = DebugConfig;

    fn type_name(&self) -> &'static str {
        "debug"
    }

    fn validate(&self, id: &ComponentId, cfg: &DebugConfig) -> Result<(), ConfigError> {
        let _ = (id, cfg);
        Ok(())
    }
}

impl vigil_core::factory::ExporterFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[
            (Signal::Traces, vigil_core::Stability::Development),
            (Signal::Metrics, vigil_core::Stability::Development),
            (Signal::Logs, vigil_core::Stability::Development),
            (Signal::Profiles, vigil_core::Stability::Development),
        ]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: DebugConfig,
    ) -> Result<Arc<dyn Exporter>, ConfigError> {
        let id = &set.id;
        Ok(Arc::new(DebugExporter {
            id: id.to_string(),
            verbosity: cfg.verbosity,
            obs: set.exporter_obs(),
        }))
    }
}

struct DebugExporter {
    id: String,
    verbosity: Verbosity,
    obs: vigil_core::ExporterObs,
}

impl Component for DebugExporter {}

#[async_trait]
impl Consumer for DebugExporter {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let text = render(&self.id, self.verbosity, &data);
        // One write per batch under the stderr lock keeps lines from concurrent batches apart.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
        self.obs.sent(data.signal(), data.item_count() as u64);
        Ok(())
    }
}

fn attrs(list: &[KeyValue]) -> String {
    attrs_to_string(list, " ")
}

fn render(id: &str, verbosity: Verbosity, data: &Telemetry) -> String {
    let mut out = String::new();
    match data {
        Telemetry::Profiles(p) => {
            let profiles = p
                .resource_profiles
                .iter()
                .flat_map(|r| &r.scope_profiles)
                .flat_map(|s| &s.profiles);
            out.push_str(&format!(
                "{id}: Profiles {{\"resource profiles\": {}, \"profiles\": {}, \"samples\": {}}}\n",
                p.resource_profiles.len(),
                profiles.clone().count(),
                data.item_count()
            ));
            if verbosity == Verbosity::Basic {
                return out;
            }
            // Names come from the batch's string table; an index outside it shows as `?`.
            let strings = p
                .dictionary
                .as_ref()
                .map(|d| d.string_table.as_slice())
                .unwrap_or(&[]);
            let s = |i: i32| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| strings.get(i))
                    .map_or("?", |s| s.as_str())
            };
            for r in &p.resource_profiles {
                if verbosity == Verbosity::Detailed {
                    let ra = r.resource.as_ref().map(|x| attrs(&x.attributes));
                    out.push_str(&format!("  Resource {}\n", ra.unwrap_or_default()));
                }
                for pr in r.scope_profiles.iter().flat_map(|s| &s.profiles) {
                    let (ty, unit) = pr
                        .sample_type
                        .map_or(("?", "?"), |t| (s(t.type_strindex), s(t.unit_strindex)));
                    out.push_str(&format!(
                        "  profile_id={} sample_type={ty}/{unit} samples={} time={} duration={}",
                        hex(&pr.profile_id),
                        pr.samples.len(),
                        pr.time_unix_nano,
                        pr.duration_nano
                    ));
                    if verbosity == Verbosity::Detailed {
                        let values: i64 = pr.samples.iter().flat_map(|x| &x.values).sum();
                        out.push_str(&format!(" values_sum={values}"));
                    }
                    out.push('\n');
                }
            }
        }
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
                for l in rl
                    .iter()
                    .flat_map(|r| &r.scope_logs)
                    .flat_map(|s| &s.log_records)
                {
                    if let Some(line) = event_line(l) {
                        out.push_str(&line);
                    }
                }
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

/// One line for a vigil event: `  vigil.anomaly WARN <body> [detector=…, score=…]`. The body already
/// names the series and its observed value against the band (docs/events.md); the bracket adds why.
fn event_line(l: &vigil_core::otlp::logs::v1::LogRecord) -> Option<String> {
    let attr = |key: &str| {
        l.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
            .map(value_to_string)
    };
    let name = if l.event_name.is_empty() {
        attr("event.name")?
    } else {
        l.event_name.clone()
    };
    if !name.starts_with("vigil.") {
        return None;
    }
    let body = l
        .body
        .as_ref()
        .and_then(|b| b.value.as_ref())
        .map(value_to_string)
        .unwrap_or_default();
    let severity = if l.severity_text.is_empty() {
        "INFO"
    } else {
        l.severity_text.as_str()
    };
    let mut why = Vec::new();
    for key in [
        "vigil.anomaly.detector",
        "vigil.anomaly.score",
        "vigil.incident.root_cause",
        "vigil.incident.member_count",
    ] {
        if let Some(v) = attr(key) {
            let short = key.rsplit('.').next().unwrap_or(key);
            // Scores are doubles in [0, 1]; two decimals are all a reader can use.
            let v = match v.parse::<f64>() {
                Ok(x) if v.contains('.') => format!("{x:.2}"),
                _ => v,
            };
            why.push(format!("{short}={v}"));
        }
    }
    let why = if why.is_empty() {
        String::new()
    } else {
        format!(" [{}]", why.join(", "))
    };
    Some(format!("  {name} {severity} {body}{why}\n"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::otlp::common::v1::{any_value, AnyValue};
    use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn logs(records: Vec<LogRecord>) -> Telemetry {
        Telemetry::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    /// Profiles print their counts, and at normal verbosity each profile's sample type through
    /// the batch's string table.
    #[test]
    fn profiles_render_with_names_from_the_dictionary() {
        use vigil_core::otlp::profiles::v1development::{
            Profile, ProfilesData, ProfilesDictionary, ResourceProfiles, Sample, ScopeProfiles,
            ValueType,
        };
        let data = Telemetry::Profiles(ProfilesData {
            resource_profiles: vec![ResourceProfiles {
                scope_profiles: vec![ScopeProfiles {
                    profiles: vec![Profile {
                        sample_type: Some(ValueType {
                            type_strindex: 1,
                            unit_strindex: 2,
                        }),
                        samples: vec![Sample::default(); 3],
                        profile_id: vec![0xab; 16],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            dictionary: Some(ProfilesDictionary {
                string_table: vec![String::new(), "cpu".into(), "nanoseconds".into()],
                ..Default::default()
            }),
        });
        let basic = render("debug", Verbosity::Basic, &data);
        assert_eq!(
            basic,
            "debug: Profiles {\"resource profiles\": 1, \"profiles\": 1, \"samples\": 3}\n"
        );
        let normal = render("debug", Verbosity::Normal, &data);
        assert!(
            normal.contains(&format!(
                "profile_id={} sample_type=cpu/nanoseconds samples=3",
                "ab".repeat(16)
            )),
            "{normal}"
        );
    }

    #[test]
    fn vigil_events_get_a_readable_line_at_basic_verbosity() {
        let event = LogRecord {
            event_name: "vigil.anomaly".into(),
            severity_text: "WARN".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(
                    "system.cpu.load_average.1m 8.2× above its band: 3.9 vs 0.1–0.5".into(),
                )),
            }),
            attributes: vec![
                kv(
                    "vigil.anomaly.detector",
                    any_value::Value::StringValue("level_shift".into()),
                ),
                kv("vigil.anomaly.score", any_value::Value::DoubleValue(0.93)),
            ],
            ..Default::default()
        };
        let plain = LogRecord {
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue("user logged in".into())),
            }),
            ..Default::default()
        };
        let text = render("debug", Verbosity::Basic, &logs(vec![event, plain]));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("debug: Logs"), "{text}");
        assert_eq!(
            lines[1],
            "  vigil.anomaly WARN system.cpu.load_average.1m 8.2× above its band: 3.9 vs 0.1–0.5 \
             [detector=level_shift, score=0.93]"
        );
    }
}
