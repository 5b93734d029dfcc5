//! tail_sampling's config, key for key as otelcol's `tailsamplingprocessor` (v0.159) reads it.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use vigil_core::config::{duration, opt_duration};

/// The `tail_sampling` processor config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TailSamplingConfig {
    /// How long after a trace's first span its decision is made.
    #[serde(with = "duration")]
    pub decision_wait: Duration,
    /// When set, a trace whose root span arrived is decided this long after the root span, if
    /// that is earlier than `decision_wait`.
    #[serde(with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub decision_wait_after_root_received: Option<Duration>,
    /// Most traces held at once (pending and decided); the oldest is evicted for a new one.
    pub num_traces: u64,
    /// Sizes the trace table up front.
    pub expected_new_traces_per_sec: u64,
    /// LRU caches of decided trace ids, kept after the trace itself is released.
    pub decision_cache: DecisionCacheConfig,
    /// Stop at the first policy that samples.
    pub sample_on_first_match: bool,
    /// On shutdown, drop undecided traces instead of deciding on what arrived.
    pub drop_pending_traces_on_shutdown: bool,
    /// When `num_traces` is reached, push back on the sender instead of evicting the oldest trace.
    pub block_on_overflow: bool,
    /// A trace whose spans exceed this many encoded bytes is dropped before its decision (0: no
    /// limit).
    pub maximum_trace_size_bytes: u64,
    /// `trace-complete` (the default); `span-ingest` is not built in vigil.
    pub sampling_strategy: String,
    /// The policies, evaluated in order for every trace.
    pub policies: Vec<PolicyConfig>,
}

impl Default for TailSamplingConfig {
    fn default() -> Self {
        TailSamplingConfig {
            decision_wait: Duration::from_secs(30),
            decision_wait_after_root_received: None,
            num_traces: 50_000,
            expected_new_traces_per_sec: 0,
            decision_cache: DecisionCacheConfig::default(),
            sample_on_first_match: false,
            drop_pending_traces_on_shutdown: false,
            block_on_overflow: false,
            maximum_trace_size_bytes: 0,
            sampling_strategy: "trace-complete".into(),
            policies: Vec::new(),
        }
    }
}

/// `decision_cache`: 0 turns a cache off (the default).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionCacheConfig {
    pub sampled_cache_size: usize,
    pub non_sampled_cache_size: usize,
}

/// One policy. otelcol has one struct per nesting level; vigil has one with every section and
/// checks at compile time which types a level may hold.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyCfg>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numeric_attribute: Option<NumericAttributeCfg>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probabilistic: Option<ProbabilisticCfg>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<StatusCodeCfg>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub string_attribute: Option<StringAttributeCfg>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limiting: Option<RateLimitingCfg>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_limiting: Option<BytesLimitingCfg>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_count: Option<SpanCountCfg>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_state: Option<TraceStateCfg>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boolean_attribute: Option<BooleanAttributeCfg>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ottl_condition: Option<OttlConditionCfg>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub and: Option<AndCfg>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop: Option<DropCfg>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not: Option<NotCfg>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub composite: Option<CompositeCfg>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyCfg {
    pub threshold_ms: i64,
    pub upper_threshold_ms: i64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NumericAttributeCfg {
    pub key: String,
    pub min_value: i64,
    pub max_value: i64,
    pub invert_match: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbabilisticCfg {
    pub hash_salt: String,
    pub sampling_percentage: f64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusCodeCfg {
    pub status_codes: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StringAttributeCfg {
    pub key: String,
    pub values: Vec<String>,
    pub enabled_regex_matching: bool,
    pub cache_max_size: usize,
    pub invert_match: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitingCfg {
    pub spans_per_second: i64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BytesLimitingCfg {
    pub bytes_per_second: i64,
    pub burst_capacity: i64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanCountCfg {
    pub min_spans: i32,
    pub max_spans: i32,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceStateCfg {
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BooleanAttributeCfg {
    pub key: String,
    pub value: bool,
    pub invert_match: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OttlConditionCfg {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_mode: Option<String>,
    pub span: Vec<String>,
    pub spanevent: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AndCfg {
    pub and_sub_policy: Vec<PolicyConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DropCfg {
    pub drop_sub_policy: Vec<PolicyConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotCfg {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_sub_policy: Option<Box<PolicyConfig>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompositeCfg {
    pub max_total_spans_per_second: i64,
    pub policy_order: Vec<String>,
    pub composite_sub_policy: Vec<PolicyConfig>,
    pub rate_allocation: Vec<RateAllocationCfg>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateAllocationCfg {
    pub policy: String,
    pub percent: i64,
}
