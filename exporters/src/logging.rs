//! `logging`: otelcol's old name for what is now the `debug` exporter. otelcol removed it (v0.111),
//! yet published configs still carry it; vigil runs it as `debug` and says so at start, so that a
//! config moves over unchanged and its owner learns the new name. `loglevel` maps to `verbosity` as
//! otelcol mapped it before the removal: `debug` → `detailed`, `info` → `normal`, `warn`, `error` and
//! above → `basic`. With neither key the verbosity is `normal`, the old exporter's default.

use crate::debug::Verbosity;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use vigil_core::factory::{self, DynExporterFactory, ExporterFactory, FactoryBase};
use vigil_core::{ComponentId, ConfigError, Exporter, Settings, Signal, Stability};

/// The old `logging` exporter's keys.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loglevel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verbosity: Option<Verbosity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampling_initial: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampling_thereafter: Option<u64>,
}

impl LoggingConfig {
    /// The `debug` verbosity this config stands for.
    fn verbosity(&self) -> Result<Verbosity, ConfigError> {
        match (&self.loglevel, self.verbosity) {
            (Some(_), Some(_)) => Err(ConfigError::at(
                "loglevel",
                "'loglevel' and 'verbosity' are incompatible. Use only 'verbosity' instead",
            )),
            (None, Some(v)) => Ok(v),
            (None, None) => Ok(Verbosity::Normal),
            (Some(level), None) => match level.to_ascii_lowercase().as_str() {
                "debug" => Ok(Verbosity::Detailed),
                "info" => Ok(Verbosity::Normal),
                "warn" | "error" | "dpanic" | "panic" | "fatal" => Ok(Verbosity::Basic),
                other => Err(ConfigError::at(
                    "loglevel",
                    format!(
                        "unrecognized level: {other:?} (expected debug, info, warn, error, dpanic, \
                         panic or fatal)"
                    ),
                )),
            },
        }
    }
}

struct Factory;

/// The `logging` exporter factory: `debug` under its old name.
pub fn factory() -> Arc<dyn DynExporterFactory> {
    factory::exporter(Factory)
}

impl FactoryBase for Factory {
    type Config = LoggingConfig;

    fn type_name(&self) -> &'static str {
        "logging"
    }

    fn validate(&self, _id: &ComponentId, cfg: &LoggingConfig) -> Result<(), ConfigError> {
        cfg.verbosity().map(|_| ())
    }
}

impl ExporterFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Deprecated),
            (Signal::Metrics, Stability::Deprecated),
            (Signal::Logs, Stability::Deprecated),
        ]
    }

    fn create(&self, set: Settings, cfg: LoggingConfig) -> Result<Arc<dyn Exporter>, ConfigError> {
        let verbosity = cfg.verbosity()?;
        let name = serde_json::to_value(verbosity).unwrap_or_default();
        tracing::warn!(
            exporter = %set.id,
            "the `logging` exporter was removed from otelcol (v0.111) in favour of `debug`: running \
             it as `debug` with verbosity {name}; rename it to `debug`{}",
            if cfg.loglevel.is_some() {
                " and replace `loglevel` with `verbosity`"
            } else {
                ""
            }
        );
        crate::debug::factory().create(&set.id, &serde_json::json!({ "verbosity": name }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verbosity(cfg: serde_json::Value) -> Result<Verbosity, String> {
        let id = ComponentId::new("logging", None);
        factory().validate(&id, &cfg).map_err(|e| e.to_string())?;
        let c: LoggingConfig =
            vigil_core::config::decode(vigil_core::ComponentKind::Exporter, &id, &cfg)
                .map_err(|e| e.to_string())?;
        c.verbosity().map_err(|e| e.to_string())
    }

    #[test]
    fn loglevel_maps_to_verbosity_as_otelcol_mapped_it() {
        assert_eq!(verbosity(json!(null)), Ok(Verbosity::Normal));
        assert_eq!(
            verbosity(json!({"loglevel": "debug"})),
            Ok(Verbosity::Detailed)
        );
        assert_eq!(
            verbosity(json!({"loglevel": "info"})),
            Ok(Verbosity::Normal)
        );
        assert_eq!(verbosity(json!({"loglevel": "warn"})), Ok(Verbosity::Basic));
        assert_eq!(
            verbosity(json!({"loglevel": "ERROR"})),
            Ok(Verbosity::Basic)
        );
        assert_eq!(
            verbosity(json!({"verbosity": "detailed"})),
            Ok(Verbosity::Detailed)
        );
        let both = verbosity(json!({"loglevel": "info", "verbosity": "basic"}));
        assert!(both.is_err_and(|e| e.contains("incompatible")));
        let bad = verbosity(json!({"loglevel": "loud"}));
        assert!(bad.is_err_and(|e| e.contains("loglevel") && e.contains("loud")));
    }

    #[tokio::test]
    async fn runs_as_debug() {
        use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        let id = ComponentId::new("logging", None);
        let exp = factory()
            .create(&id, &json!({"loglevel": "debug"}))
            .expect("created");
        let logs = vigil_core::Telemetry::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default()],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        exp.consume(logs).await.expect("debug accepts");
    }
}
