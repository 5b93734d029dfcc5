//! The configs of Elastic's `elasticapm` processor and connector
//! (elastic/opentelemetry-collector-components: `processor/elasticapmprocessor`,
//! `connector/elasticapmconnector`), with their keys and defaults, and the keys vigil refuses as
//! not built.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use vigil_core::config::duration;
use vigil_core::ConfigError;

/// One enrichment switch: `<group>: {<name>: {enabled: bool}}`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Toggle {
    pub enabled: bool,
}

/// Whether vigil builds an enrichment. Unbuilt ones may be switched off (harmless) but not on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Built {
    Yes,
    No(&'static str),
}

use Built::{No, Yes};

/// `(key, default, built)` for each switch of each group, as the processor's `config.Enabled()`.
/// One group's switches: `(key, default, built)`.
pub(crate) type Switches = &'static [(&'static str, bool, Built)];

pub(crate) const GROUPS: &[(&str, Switches)] = &[
    (
        "resource",
        &[
            ("agent_name", true, Yes),
            ("agent_version", true, Yes),
            ("override_host_name", true, Yes),
            ("deployment_environment", true, Yes),
            ("service_instance_id", true, Yes),
            (
                "default_deployment_environment",
                false,
                No("ECS mapping mode"),
            ),
            ("default_service_language", false, No("ECS mapping mode")),
            ("service_name", false, No("ECS mapping mode")),
            ("host_os_type", false, No("ECS mapping mode")),
        ],
    ),
    (
        "scope",
        &[
            ("service_framework_name", true, Yes),
            ("service_framework_version", true, Yes),
        ],
    ),
    (
        "elastic_transaction",
        &[
            ("timestamp_us", true, Yes),
            ("sampled", true, Yes),
            ("id", true, Yes),
            ("clear_span_id", false, Yes),
            ("root", true, Yes),
            ("name", true, Yes),
            ("clear_span_name", false, Yes),
            ("processor_event", true, Yes),
            ("representative_count", true, Yes),
            ("duration_us", true, Yes),
            ("type", true, Yes),
            ("result", true, Yes),
            ("event_outcome", true, Yes),
            ("inferred_spans", true, Yes),
            ("remove_messaging", true, Yes),
            ("message_queue_name", true, Yes),
            ("user_agent", true, No("user agent parsing")),
        ],
    ),
    (
        "elastic_span",
        &[
            ("timestamp_us", true, Yes),
            ("processor_event", true, Yes),
            ("representative_count", true, Yes),
            ("name", true, Yes),
            ("action", true, Yes),
            ("type_subtype", true, Yes),
            ("duration_us", true, Yes),
            ("event_outcome", true, Yes),
            ("service_target", true, Yes),
            ("destination_service", true, Yes),
            ("inferred_spans", true, Yes),
            ("remove_messaging", true, Yes),
            ("message_queue_name", true, Yes),
            ("user_agent", true, No("user agent parsing")),
        ],
    ),
    (
        "span_event",
        &[
            ("timestamp_us", true, Yes),
            ("transaction_sampled", true, Yes),
            ("transaction_type", true, Yes),
            ("processor_event", true, Yes),
            ("error_id", true, Yes),
            ("error_grouping_key", true, Yes),
            ("error_grouping_name", true, Yes),
            ("error_exception_handled", true, Yes),
            (
                "error_exception_type",
                false,
                No("span event exception type copy"),
            ),
            (
                "error_exception_message",
                false,
                No("span event exception message copy"),
            ),
            ("error_stack_trace", false, No("stack trace grouping")),
            ("error_type", false, No("span event error type")),
        ],
    ),
    (
        "elastic_log",
        &[
            (
                "translate_unsupported_attributes",
                false,
                No("log record enrichment"),
            ),
            ("event_kind", true, No("log record enrichment")),
            ("event_type", true, No("log record enrichment")),
            ("event_category", true, No("log record enrichment")),
            ("event_action", true, No("log record enrichment")),
            ("error_id", true, No("log record enrichment")),
            ("error_stack_trace", true, No("log record enrichment")),
            ("error_grouping_key", true, No("log record enrichment")),
            ("error_grouping_name", false, No("log record enrichment")),
            ("error_type", true, No("log record enrichment")),
            ("timestamp_us", true, No("log record enrichment")),
            ("error_exception_type", true, No("log record enrichment")),
            ("error_exception_message", true, No("log record enrichment")),
            ("error_exception_handled", true, No("log record enrichment")),
        ],
    ),
    (
        "elastic_metric",
        &[
            ("processor_event", false, Yes),
            ("metricset_name", true, No("ECS mapping mode")),
        ],
    ),
];

/// The `elasticapm` processor's config: its enrichment switches by group, and three top-level keys.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorConfig {
    pub resource: BTreeMap<String, Toggle>,
    pub scope: BTreeMap<String, Toggle>,
    pub elastic_transaction: BTreeMap<String, Toggle>,
    pub elastic_span: BTreeMap<String, Toggle>,
    pub span_event: BTreeMap<String, Toggle>,
    pub elastic_log: BTreeMap<String, Toggle>,
    pub elastic_metric: BTreeMap<String, Toggle>,
    /// When true, logs and metrics are enriched only in ECS mapping mode, which vigil never sees
    /// (no `x-elastic-mapping-mode` client metadata): so they pass through unchanged.
    pub skip_enrichment: bool,
    /// ECS mapping mode only: `true` is refused (not built).
    pub service_name_in_datastream_dataset: bool,
    /// ECS mapping mode only (default true): read, no effect in vigil.
    pub host_ip_enabled: bool,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            resource: BTreeMap::new(),
            scope: BTreeMap::new(),
            elastic_transaction: BTreeMap::new(),
            elastic_span: BTreeMap::new(),
            span_event: BTreeMap::new(),
            elastic_log: BTreeMap::new(),
            elastic_metric: BTreeMap::new(),
            skip_enrichment: false,
            service_name_in_datastream_dataset: false,
            host_ip_enabled: true,
        }
    }
}

impl ProcessorConfig {
    pub(crate) fn group(&self, name: &str) -> &BTreeMap<String, Toggle> {
        match name {
            "resource" => &self.resource,
            "scope" => &self.scope,
            "elastic_transaction" => &self.elastic_transaction,
            "elastic_span" => &self.elastic_span,
            "span_event" => &self.span_event,
            "elastic_log" => &self.elastic_log,
            _ => &self.elastic_metric,
        }
    }

    /// Whether switch `key` of `group` is on (its default unless set).
    pub(crate) fn on(&self, group: &str, key: &str) -> bool {
        if let Some(t) = self.group(group).get(key) {
            return t.enabled;
        }
        GROUPS
            .iter()
            .find(|(g, _)| *g == group)
            .and_then(|(_, keys)| keys.iter().find(|(k, _, _)| *k == key))
            .is_some_and(|(_, d, built)| *d && *built == Yes)
    }

    /// Unknown switches, and unbuilt ones switched on, are refused with their key path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (group, keys) in GROUPS {
            for (key, t) in self.group(group) {
                let Some((_, _, built)) = keys.iter().find(|(k, _, _)| k == key) else {
                    let known: Vec<&str> = keys.iter().map(|(k, _, _)| *k).collect();
                    return Err(ConfigError::at(
                        format!("{group}::{key}"),
                        format!("unknown enrichment; expected one of {}", known.join(", ")),
                    ));
                };
                if let No(what) = built {
                    if t.enabled {
                        return Err(ConfigError::at(
                            format!("{group}::{key}::enabled"),
                            format!(
                                "not built: vigil's elasticapm processor has no {what}; set it to false or leave it out"
                            ),
                        ));
                    }
                }
            }
        }
        if self.service_name_in_datastream_dataset {
            return Err(ConfigError::at(
                "service_name_in_datastream_dataset",
                "not built: it acts only in ECS mapping mode (data stream routing), which vigil's elasticapm processor does not have",
            ));
        }
        Ok(())
    }
}

/// The connector's default aggregation intervals.
pub const DEFAULT_INTERVALS: [Duration; 3] = [
    Duration::from_secs(60),
    Duration::from_secs(600),
    Duration::from_secs(3600),
];

/// `max_cardinality` of one limit level.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    pub max_cardinality: i64,
}

/// The connector's four cardinality limits (resource 8000, scope/metric/datapoint 4000 each).
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub resource: LimitConfig,
    pub scope: LimitConfig,
    pub metric: LimitConfig,
    pub datapoint: LimitConfig,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            resource: LimitConfig {
                max_cardinality: 8000,
            },
            scope: LimitConfig {
                max_cardinality: 4000,
            },
            metric: LimitConfig {
                max_cardinality: 4000,
            },
            datapoint: LimitConfig {
                max_cardinality: 4000,
            },
        }
    }
}

/// A duration in a list (`intervals: [1m, 10m]`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Dur(#[serde(with = "duration")] pub Duration);

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AggregationConfig {
    /// On-disk state (Pebble in the original): refused when set (not built); state is in memory.
    pub directory: String,
    /// Client metadata keys copied to the aggregated metrics: refused when set (not built).
    pub metadata_keys: Vec<String>,
    /// Empty: 1m, 10m and 60m.
    pub intervals: Vec<Dur>,
    /// `limit` is the spelling of earlier releases.
    #[serde(alias = "limit")]
    pub limits: Limits,
}

/// One `custom_resource_attributes` entry: a key (also written as a plain string) or an OTTL
/// `keys_expression` (refused: not built).
#[derive(Debug, Clone, Serialize)]
pub struct CustomResourceAttribute {
    pub key: String,
    pub keys_expression: String,
}

impl<'de> Deserialize<'de> for CustomResourceAttribute {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            #[serde(default)]
            key: String,
            #[serde(default)]
            keys_expression: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Plain(String),
            Full(Full),
        }
        Ok(match Form::deserialize(d)? {
            Form::Plain(key) => CustomResourceAttribute {
                key,
                keys_expression: String::new(),
            },
            Form::Full(f) => CustomResourceAttribute {
                key: f.key,
                keys_expression: f.keys_expression,
            },
        })
    }
}

/// The `elasticapm` connector's config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectorConfig {
    /// OTTL error mode of the original's rules: `propagate` (default), `ignore` or `silent`. vigil's
    /// rules are fixed code that cannot fail, so the value is checked and has no effect.
    pub error_mode: String,
    pub aggregation: AggregationConfig,
    pub custom_resource_attributes: Vec<CustomResourceAttribute>,
    pub custom_span_attributes: Vec<String>,
}

impl Default for ConnectorConfig {
    fn default() -> Self {
        ConnectorConfig {
            error_mode: "propagate".into(),
            aggregation: AggregationConfig::default(),
            custom_resource_attributes: Vec::new(),
            custom_span_attributes: Vec::new(),
        }
    }
}

impl ConnectorConfig {
    pub fn intervals(&self) -> Vec<Duration> {
        if self.aggregation.intervals.is_empty() {
            DEFAULT_INTERVALS.to_vec()
        } else {
            self.aggregation.intervals.iter().map(|d| d.0).collect()
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.error_mode.as_str(), "propagate" | "ignore" | "silent") {
            return Err(ConfigError::at(
                "error_mode",
                format!(
                    "expected propagate, ignore or silent, got {:?}",
                    self.error_mode
                ),
            ));
        }
        for (i, a) in self.custom_resource_attributes.iter().enumerate() {
            if a.key.is_empty() == a.keys_expression.is_empty() {
                return Err(ConfigError::at(
                    format!("custom_resource_attributes::{i}"),
                    "exactly one of key or keys_expression must be set",
                ));
            }
            if !a.keys_expression.is_empty() {
                return Err(ConfigError::at(
                    format!("custom_resource_attributes::{i}::keys_expression"),
                    "not built: vigil's elasticapm connector takes static keys only (`key` or a plain string)",
                ));
            }
        }
        let agg = &self.aggregation;
        if !agg.directory.is_empty() {
            return Err(ConfigError::at(
                "aggregation::directory",
                "not built: vigil's elasticapm connector keeps its (bounded) aggregation state in memory; leave directory out",
            ));
        }
        if !agg.metadata_keys.is_empty() {
            return Err(ConfigError::at(
                "aggregation::metadata_keys",
                "not built: vigil's elasticapm connector does not split aggregates by client metadata",
            ));
        }
        let iv = self.intervals();
        let first = iv[0];
        for (i, d) in iv.iter().enumerate() {
            if d.is_zero() || !d.as_nanos().is_multiple_of(first.as_nanos()) {
                return Err(ConfigError::at(
                    format!("aggregation::intervals::{i}"),
                    format!(
                        "each interval must be a positive multiple of the first ({first:?}), got {d:?}"
                    ),
                ));
            }
            if i > 0 && *d <= iv[i - 1] {
                return Err(ConfigError::at(
                    format!("aggregation::intervals::{i}"),
                    "intervals must be in increasing order",
                ));
            }
        }
        for (name, l) in [
            ("resource", agg.limits.resource),
            ("scope", agg.limits.scope),
            ("metric", agg.limits.metric),
            ("datapoint", agg.limits.datapoint),
        ] {
            if l.max_cardinality <= 0 {
                return Err(ConfigError::at(
                    format!("aggregation::limits::{name}::max_cardinality"),
                    format!(
                        "expected a positive limit (vigil keeps every table bounded), got {}",
                        l.max_cardinality
                    ),
                ));
            }
        }
        Ok(())
    }
}
