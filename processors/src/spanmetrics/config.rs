//! `spanmetrics`' config: otelcol-contrib's keys and defaults (`connector/spanmetricsconnector`,
//! v0.159), and its `Validate()`.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use vigil_core::config::duration;
use vigil_core::ConfigError;

/// The dimensions every series has unless `exclude_dimensions` names them. `collector.instance.id`
/// is otelcol's too (its `connector.spanmetrics.includeCollectorInstanceID` gate is beta, so on).
pub const SERVICE_NAME: &str = "service.name";
pub const SPAN_NAME: &str = "span.name";
pub const SPAN_KIND: &str = "span.kind";
pub const STATUS_CODE: &str = "status.code";
pub const COLLECTOR_INSTANCE_ID: &str = "collector.instance.id";

/// otelcol's default explicit buckets, in milliseconds.
pub const DEFAULT_BUCKETS_MS: [f64; 16] = [
    2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1000.0, 1400.0, 2000.0, 5000.0,
    10_000.0, 15_000.0,
];

pub const DELTA: &str = "AGGREGATION_TEMPORALITY_DELTA";

/// One extra dimension: a span (or resource) attribute, with a value for spans that lack it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// A duration in a list (`buckets: [2ms, 1s]`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Dur(#[serde(with = "duration")] pub Duration);

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExplicitConfig {
    /// `None`: otelcol's default buckets in the histogram's unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<Dur>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExponentialConfig {
    /// Buckets per sign; 0 means otelcol's default, 160.
    pub max_size: u32,
}

impl Default for ExponentialConfig {
    fn default() -> Self {
        ExponentialConfig { max_size: 160 }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Unit {
    #[default]
    #[serde(rename = "ms")]
    Milliseconds,
    #[serde(rename = "s")]
    Seconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Milliseconds => "ms",
            Unit::Seconds => "s",
        }
    }

    /// Nanoseconds per unit.
    pub fn nanos(self) -> f64 {
        match self {
            Unit::Milliseconds => 1e6,
            Unit::Seconds => 1e9,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistogramConfig {
    pub disable: bool,
    pub unit: Unit,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explicit: Option<ExplicitConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exponential: Option<ExponentialConfig>,
    /// Dimensions of the duration histogram only, after `dimensions`.
    pub dimensions: Vec<Dimension>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExemplarsConfig {
    pub enabled: bool,
    /// `None`: vigil keeps at most [`DEFAULT_MAX_EXEMPLARS`] per data point and flush, where
    /// otelcol keeps every one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_per_data_point: Option<usize>,
}

/// vigil's bound on exemplars per data point and flush when `max_per_data_point` is unset.
pub const DEFAULT_MAX_EXEMPLARS: usize = 100;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    pub enabled: bool,
    pub dimensions: Vec<Dimension>,
}

/// vigil's bound on series across all resources when `aggregation_cardinality_limit` is 0 (otelcol
/// then has none): past it, a new series goes to its resource's overflow series.
pub const DEFAULT_MAX_SERIES: usize = 100_000;

/// The `spanmetrics` connector config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanMetricsConfig {
    pub dimensions: Vec<Dimension>,
    /// Dimensions of the calls sum only, after `dimensions`.
    pub calls_dimensions: Vec<Dimension>,
    pub exclude_dimensions: Vec<String>,
    /// Deprecated in otelcol for `aggregation_cardinality_limit`; accepted. vigil keeps no separate
    /// cache of dimension sets: a series holds its own.
    pub dimensions_cache_size: i64,
    pub resource_metrics_cache_size: usize,
    pub resource_metrics_key_attributes: Vec<String>,
    pub aggregation_temporality: String,
    pub histogram: HistogramConfig,
    #[serde(with = "duration")]
    pub metrics_flush_interval: Duration,
    #[serde(with = "duration")]
    pub metrics_expiration: Duration,
    #[serde(with = "duration")]
    pub series_expiration: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric_timestamp_cache_size: Option<i64>,
    pub namespace: String,
    pub exemplars: ExemplarsConfig,
    pub events: EventsConfig,
    pub include_instrumentation_scope: Vec<String>,
    pub aggregation_cardinality_limit: i64,
    /// otelcol's switch back to resource attributes on the output when its
    /// `connector.spanmetrics.excludeResourceMetrics` gate (alpha, off) drops them; with the gate
    /// off, as here, the output always carries them.
    pub add_resource_attributes: bool,
    pub enable_metrics_sampling_method: bool,
}

impl Default for SpanMetricsConfig {
    fn default() -> Self {
        SpanMetricsConfig {
            dimensions: Vec::new(),
            calls_dimensions: Vec::new(),
            exclude_dimensions: Vec::new(),
            dimensions_cache_size: 1000,
            resource_metrics_cache_size: 1000,
            resource_metrics_key_attributes: Vec::new(),
            aggregation_temporality: "AGGREGATION_TEMPORALITY_CUMULATIVE".into(),
            histogram: HistogramConfig::default(),
            metrics_flush_interval: Duration::from_secs(60),
            metrics_expiration: Duration::ZERO,
            series_expiration: Duration::ZERO,
            metric_timestamp_cache_size: None,
            namespace: "traces.span.metrics".into(),
            exemplars: ExemplarsConfig::default(),
            events: EventsConfig::default(),
            include_instrumentation_scope: Vec::new(),
            aggregation_cardinality_limit: 0,
            add_resource_attributes: false,
            enable_metrics_sampling_method: false,
        }
    }
}

impl SpanMetricsConfig {
    /// As otelcol: delta only when spelled exactly so, cumulative otherwise.
    pub fn delta(&self) -> bool {
        self.aggregation_temporality == DELTA
    }

    pub fn timestamp_cache_size(&self) -> i64 {
        self.metric_timestamp_cache_size.unwrap_or(1000)
    }

    /// The histogram's bounds in its unit.
    pub fn bounds(&self) -> Vec<f64> {
        let unit = self.histogram.unit;
        match self
            .histogram
            .explicit
            .as_ref()
            .and_then(|e| e.buckets.as_ref())
        {
            Some(b) => b
                .iter()
                .map(|d| d.0.as_nanos() as f64 / unit.nanos())
                .collect(),
            None => DEFAULT_BUCKETS_MS
                .iter()
                .map(|ms| ms * 1e6 / unit.nanos())
                .collect(),
        }
    }

    /// otelcol's checks, with its messages.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_dimensions(&self.dimensions).map_err(|e| {
            ConfigError::at("dimensions", format!("failed validating dimensions: {e}"))
        })?;
        if self.events.enabled {
            if self.events.dimensions.is_empty() {
                return Err(ConfigError::at(
                    "events::dimensions",
                    "failed validating event dimensions: no dimensions configured for events",
                ));
            }
            check_dimensions(&self.events.dimensions).map_err(|e| {
                ConfigError::at(
                    "events::dimensions",
                    format!("failed validating event dimensions: {e}"),
                )
            })?;
        }
        if self.histogram.explicit.is_some() && self.histogram.exponential.is_some() {
            return Err(ConfigError::at(
                "histogram",
                "use either `explicit` or `exponential` buckets histogram",
            ));
        }
        if let Some(b) = self
            .histogram
            .explicit
            .as_ref()
            .and_then(|e| e.buckets.as_ref())
        {
            if b.windows(2).any(|w| w[0].0 >= w[1].0) {
                return Err(ConfigError::at(
                    "histogram::explicit::buckets",
                    "buckets must be in increasing order",
                ));
            }
        }
        if self.delta() && self.timestamp_cache_size() <= 0 {
            return Err(ConfigError::at(
                "metric_timestamp_cache_size",
                format!(
                    "invalid delta timestamp cache size: {}, the maximum number of the items in \
                     the cache should be positive",
                    self.timestamp_cache_size()
                ),
            ));
        }
        if self.aggregation_cardinality_limit < 0 {
            return Err(ConfigError::at(
                "aggregation_cardinality_limit",
                format!(
                    "invalid aggregation_cardinality_limit: {}, the limit should be positive",
                    self.aggregation_cardinality_limit
                ),
            ));
        }
        if self.resource_metrics_cache_size == 0 {
            return Err(ConfigError::at(
                "resource_metrics_cache_size",
                "must be positive",
            ));
        }
        if self.metrics_flush_interval.is_zero() {
            return Err(ConfigError::at(
                "metrics_flush_interval",
                "must be positive",
            ));
        }
        if self.enable_metrics_sampling_method {
            return Err(ConfigError::at(
                "enable_metrics_sampling_method",
                "not built in vigil: spans are counted once each, without the sampling \
                 threshold of their tracestate (set it to false)",
            ));
        }
        Ok(())
    }
}

/// A dimension may not repeat another or one of the defaults (otelcol's `validateDimensions`).
fn check_dimensions(dims: &[Dimension]) -> Result<(), String> {
    let mut seen: Vec<&str> = vec![SERVICE_NAME, SPAN_KIND, STATUS_CODE, SPAN_NAME];
    for d in dims {
        if seen.contains(&d.name.as_str()) {
            return Err(format!("duplicate dimension name {}", d.name));
        }
        seen.push(&d.name);
    }
    Ok(())
}
