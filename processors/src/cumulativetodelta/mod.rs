//! `cumulativetodelta` (`cumulative_to_delta`): otelcol-contrib's processor that turns monotonic
//! cumulative sums and histograms into deltas, for backends that want deltas (Dynatrace, New Relic,
//! Uptrace). It remembers each series' last point (a series is the resource, scope, metric name, unit,
//! type, value type, start time and attributes, as otelcol keys it) and sends the difference from it.
//! Non-monotonic sums, gauges, summaries and exponential histograms pass unchanged, as in otelcol.
//!
//! - The first point of a series follows `initial_value`: `auto` sends it only when its start time is
//!   set, after this processor started and not equal to its timestamp (a counter born since); `keep`
//!   sends it whole; `drop` only remembers it.
//! - A sum that goes down is a reset: the point is dropped and the new value remembered. A histogram
//!   whose count goes down is sent whole; one whose bucket layout changed is dropped.
//! - State is bounded: at most [`MAX_SERIES`] series per processor, the least recently seen evicted
//!   first and counted (`vigil_cumulativetodelta_series_evicted{processor}`); otelcol keeps every
//!   series until `max_staleness` passes. `max_staleness` (0, never) removes series whose last point
//!   is older than that, checked every `max_staleness`.

use async_trait::async_trait;
use lru::LruCache;
use serde::{Deserialize, Serialize};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_core::attrs::value_to_string;
use vigil_core::config::{duration, re2_regex};
use vigil_core::factory::{self, DynProcessorFactory, FactoryBase, ProcessorFactory};
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::otlp::metrics::v1::{
    metric, number_data_point, AggregationTemporality, DataPointFlags, Metric, ResourceMetrics,
};
use vigil_core::time::now_nanos;
use vigil_core::{
    lock, Component, ComponentId, ConfigError, ConsumeError, Consumer, Processor, ProcessorObs,
    Settings, Signal, Stability, Tasks, Telemetry,
};

/// vigil's bound on the series one processor remembers.
pub const MAX_SERIES: usize = 100_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialValue {
    #[default]
    Auto,
    Keep,
    Drop,
}

/// `include` / `exclude`: otelcol's filterset config (`match_type`, `regexp`) with `metrics` and
/// `metric_types`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchMetrics {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_type: Option<String>,
    /// otelcol's regexp cache settings (`cacheenabled`, `cachemaxnumentries`); accepted, compiled
    /// regexes need no cache here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regexp: Option<serde_json::Value>,
    pub metrics: Vec<String>,
    /// `sum` and/or `histogram`; empty is both.
    pub metric_types: Vec<String>,
}

/// The `cumulativetodelta` processor config.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CumulativeToDeltaConfig {
    pub include: MatchMetrics,
    pub exclude: MatchMetrics,
    #[serde(with = "duration")]
    pub max_staleness: Duration,
    pub initial_value: InitialValue,
}

enum Names {
    Strict(Vec<String>),
    Regexp(Vec<regex::Regex>),
}

/// One compiled `include` or `exclude`; `None` fields match everything.
struct Matcher {
    names: Option<Names>,
    sums: bool,
    histograms: bool,
}

impl Matcher {
    fn compile(path: &str, m: &MatchMetrics) -> Result<Option<Matcher>, ConfigError> {
        match (m.match_type.as_deref(), m.metrics.is_empty()) {
            (None, false) => {
                return Err(ConfigError::at(
                    format!("{path}::match_type"),
                    "match_type must be set if metrics are supplied",
                ))
            }
            (Some(_), true) => {
                return Err(ConfigError::at(
                    format!("{path}::metrics"),
                    "metrics must be supplied if match_type is set",
                ))
            }
            _ => {}
        }
        let names = match m.match_type.as_deref() {
            None => None,
            Some("strict") => Some(Names::Strict(m.metrics.clone())),
            Some("regexp") => Some(Names::Regexp(
                m.metrics
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        re2_regex(p).map_err(|e| {
                            ConfigError::at(
                                format!("{path}::metrics::{i}"),
                                format!("invalid regexp {p:?}: {}", one_line(&e)),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
            )),
            Some(other) => {
                return Err(ConfigError::at(
                    format!("{path}::match_type"),
                    format!("unrecognized match_type: {other:?}, valid types are: strict, regexp"),
                ))
            }
        };
        let (mut sums, mut histograms) = (m.metric_types.is_empty(), m.metric_types.is_empty());
        for (i, t) in m.metric_types.iter().enumerate() {
            match t.to_ascii_lowercase().as_str() {
                "sum" => sums = true,
                "histogram" => histograms = true,
                _ => {
                    return Err(ConfigError::at(
                        format!("{path}::metric_types::{i}"),
                        format!("unsupported metric type {t:?}: expected sum or histogram"),
                    ))
                }
            }
        }
        if names.is_none() && m.metric_types.is_empty() {
            return Ok(None);
        }
        Ok(Some(Matcher {
            names,
            sums,
            histograms,
        }))
    }

    fn matches(&self, name: &str, histogram: bool) -> bool {
        let typed = if histogram {
            self.histograms
        } else {
            self.sums
        };
        typed
            && match &self.names {
                None => true,
                Some(Names::Strict(list)) => list.iter().any(|n| n == name),
                // Go's MatchString: a match anywhere in the name.
                Some(Names::Regexp(list)) => list.iter().any(|r| r.is_match(name)),
            }
    }
}

fn one_line(e: &regex::Error) -> String {
    e.to_string()
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

struct Factory;

/// The `cumulativetodelta` processor factory.
pub fn factory() -> Arc<dyn DynProcessorFactory> {
    factory::processor(Factory)
}

impl FactoryBase for Factory {
    type Config = CumulativeToDeltaConfig;

    fn type_name(&self) -> &'static str {
        "cumulativetodelta"
    }

    fn validate(
        &self,
        _id: &ComponentId,
        cfg: &CumulativeToDeltaConfig,
    ) -> Result<(), ConfigError> {
        Matcher::compile("include", &cfg.include)?;
        Matcher::compile("exclude", &cfg.exclude)?;
        Ok(())
    }
}

impl ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[(Signal::Metrics, Stability::Beta)]
    }

    fn create(
        &self,
        set: Settings,
        cfg: CumulativeToDeltaConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let include = Matcher::compile("include", &cfg.include)?;
        let exclude = Matcher::compile("exclude", &cfg.exclude)?;
        let evicted = metrics::counter!(
            "vigil_cumulativetodelta_series_evicted",
            "processor" => set.id.to_string()
        );
        Ok(Arc::new(CumulativeToDelta {
            inner: Arc::new(Inner {
                include,
                exclude,
                initial: cfg.initial_value,
                started: now_nanos(),
                state: Mutex::new(LruCache::new(
                    NonZeroUsize::new(MAX_SERIES).unwrap_or(NonZeroUsize::MIN),
                )),
                evicted,
            }),
            staleness: cfg.max_staleness,
            next,
            obs: set.processor_obs(signal),
            tasks: set.tasks,
        }))
    }
}

#[derive(Clone)]
enum Value {
    Int(i64),
    Double(f64),
    Histogram {
        count: u64,
        sum: f64,
        buckets: Vec<u64>,
    },
}

struct Prev {
    /// The timestamp of the last point: the next delta's start, and what staleness is judged on.
    at: u64,
    value: Value,
}

struct Inner {
    include: Option<Matcher>,
    exclude: Option<Matcher>,
    initial: InitialValue,
    /// When this processor was created, for `initial_value: auto`.
    started: u64,
    state: Mutex<LruCache<String, Prev>>,
    evicted: metrics::Counter,
}

struct CumulativeToDelta {
    inner: Arc<Inner>,
    staleness: Duration,
    next: Arc<dyn Consumer>,
    obs: ProcessorObs,
    tasks: Tasks,
}

/// A canonical text of an attribute list: sorted, so that order does not make two series.
pub(crate) fn attrs_key(out: &mut String, attrs: &[KeyValue]) {
    let mut pairs: Vec<(&str, String)> = attrs
        .iter()
        .map(|a| {
            let v = a.value.as_ref().and_then(|v| v.value.as_ref());
            (a.key.as_str(), v.map(value_to_string).unwrap_or_default())
        })
        .collect();
    pairs.sort();
    for (k, v) in pairs {
        out.push_str(k);
        out.push('=');
        out.push_str(&v);
        out.push('\u{1}');
    }
    out.push('\u{2}');
}

/// What [`Inner::convert`] decided for one point.
enum Outcome {
    /// Send with this start time and value.
    Send(u64, Value),
    Drop,
}

impl Inner {
    fn wanted(&self, name: &str, histogram: bool) -> bool {
        self.include
            .as_ref()
            .is_none_or(|m| m.matches(name, histogram))
            && self
                .exclude
                .as_ref()
                .is_none_or(|m| !m.matches(name, histogram))
    }

    /// otelcol's `MetricTracker.Convert`, for one point of series `key`.
    fn convert(&self, key: String, start: u64, at: u64, value: Value) -> Outcome {
        let mut st = lock(&self.state);
        let Some(prev) = st.get_mut(&key) else {
            let send = match self.initial {
                InitialValue::Keep => Outcome::Send(start, value.clone()),
                InitialValue::Drop => Outcome::Drop,
                InitialValue::Auto if start >= self.started && start != at => {
                    Outcome::Send(start, value.clone())
                }
                InitialValue::Auto => Outcome::Drop,
            };
            if st.push(key, Prev { at, value }).is_some() {
                self.evicted.increment(1);
            }
            return send;
        };
        let from = prev.at;
        let out = match (&value, &prev.value) {
            (Value::Int(v), Value::Int(p)) if v >= p => Outcome::Send(from, Value::Int(v - p)),
            (Value::Double(v), Value::Double(p)) if v >= p => {
                Outcome::Send(from, Value::Double(v - p))
            }
            (Value::Int(_), _) | (Value::Double(_), _) => Outcome::Drop,
            (
                Value::Histogram {
                    count,
                    sum,
                    buckets,
                },
                Value::Histogram {
                    count: pc,
                    sum: ps,
                    buckets: pb,
                },
            ) => {
                let sum = if sum.is_nan() { *ps } else { *sum };
                if buckets.len() != pb.len() {
                    Outcome::Drop
                } else if count >= pc {
                    Outcome::Send(
                        from,
                        Value::Histogram {
                            count: count - pc,
                            sum: sum - ps,
                            buckets: buckets
                                .iter()
                                .zip(pb)
                                .map(|(b, p)| b.saturating_sub(*p))
                                .collect(),
                        },
                    )
                } else {
                    // A reset: what was counted since is the delta.
                    Outcome::Send(from, value.clone())
                }
            }
            (Value::Histogram { .. }, _) => Outcome::Drop,
        };
        *prev = Prev { at, value };
        out
    }

    fn process(&self, rms: &mut Vec<ResourceMetrics>) {
        for rm in rms.iter_mut() {
            let mut res_key = String::new();
            attrs_key(
                &mut res_key,
                rm.resource.as_ref().map_or(&[], |r| &r.attributes),
            );
            for sm in rm.scope_metrics.iter_mut() {
                let mut scope_key = res_key.clone();
                if let Some(s) = &sm.scope {
                    scope_key.push_str(&s.name);
                    scope_key.push('\u{1}');
                    scope_key.push_str(&s.version);
                }
                scope_key.push('\u{2}');
                sm.metrics.retain_mut(|m| self.metric(&scope_key, m));
            }
            rm.scope_metrics.retain(|sm| !sm.metrics.is_empty());
        }
        rms.retain(|rm| !rm.scope_metrics.is_empty());
    }

    /// Converts one metric in place; `false` when no point is left to send.
    fn metric(&self, scope_key: &str, m: &mut Metric) -> bool {
        let histogram = matches!(m.data, Some(metric::Data::Histogram(_)));
        if !self.wanted(&m.name, histogram) {
            return true;
        }
        let base = format!("{scope_key}{}\u{1}{}\u{1}", m.name, m.unit);
        let cumulative = AggregationTemporality::Cumulative as i32;
        let no_value = DataPointFlags::NoRecordedValueMask as u32;
        match &mut m.data {
            Some(metric::Data::Sum(s))
                if s.aggregation_temporality == cumulative && s.is_monotonic =>
            {
                s.data_points.retain_mut(|p| {
                    if p.flags & no_value != 0 {
                        return false;
                    }
                    let (kind, value) = match p.value {
                        Some(number_data_point::Value::AsDouble(d)) if d.is_nan() => return true,
                        Some(number_data_point::Value::AsDouble(d)) => ("d", Value::Double(d)),
                        Some(number_data_point::Value::AsInt(i)) => ("i", Value::Int(i)),
                        None => return false,
                    };
                    let mut key =
                        format!("{base}sum\u{1}{kind}\u{1}{}\u{1}", p.start_time_unix_nano);
                    attrs_key(&mut key, &p.attributes);
                    match self.convert(key, p.start_time_unix_nano, p.time_unix_nano, value) {
                        Outcome::Send(start, Value::Int(v)) => {
                            p.start_time_unix_nano = start;
                            p.value = Some(number_data_point::Value::AsInt(v));
                            true
                        }
                        Outcome::Send(start, Value::Double(v)) => {
                            p.start_time_unix_nano = start;
                            p.value = Some(number_data_point::Value::AsDouble(v));
                            true
                        }
                        _ => false,
                    }
                });
                s.aggregation_temporality = AggregationTemporality::Delta as i32;
                !s.data_points.is_empty()
            }
            Some(metric::Data::Histogram(h)) if h.aggregation_temporality == cumulative => {
                if h.data_points.is_empty() {
                    return true;
                }
                h.data_points.retain_mut(|p| {
                    if p.flags & no_value != 0 {
                        return false;
                    }
                    let mut key = format!("{base}histogram\u{1}{}\u{1}", p.start_time_unix_nano);
                    attrs_key(&mut key, &p.attributes);
                    let value = Value::Histogram {
                        count: p.count,
                        sum: p.sum.unwrap_or(0.0),
                        buckets: p.bucket_counts.clone(),
                    };
                    match self.convert(key, p.start_time_unix_nano, p.time_unix_nano, value) {
                        Outcome::Send(
                            start,
                            Value::Histogram {
                                count,
                                sum,
                                buckets,
                            },
                        ) => {
                            p.start_time_unix_nano = start;
                            p.count = count;
                            if p.sum.is_some_and(|s| !s.is_nan()) {
                                p.sum = Some(sum);
                            }
                            p.bucket_counts = buckets;
                            p.min = None;
                            p.max = None;
                            true
                        }
                        _ => false,
                    }
                });
                h.aggregation_temporality = AggregationTemporality::Delta as i32;
                !h.data_points.is_empty()
            }
            _ => true,
        }
    }

    /// Forgets series whose last point is older than `staleness`.
    fn remove_stale(&self, staleness: Duration) {
        let before = now_nanos().saturating_sub(staleness.as_nanos() as u64);
        let mut st = lock(&self.state);
        let stale: Vec<String> = st
            .iter()
            .filter(|(_, p)| p.at < before)
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            st.pop(&k);
        }
    }
}

#[async_trait]
impl Component for CumulativeToDelta {
    async fn start(&self, _host: &vigil_core::Host) -> anyhow::Result<()> {
        if !self.staleness.is_zero() {
            let (inner, staleness) = (Arc::clone(&self.inner), self.staleness);
            self.tasks.spawn_ticker(staleness, move || {
                inner.remove_stale(staleness);
                std::future::ready(())
            });
        }
        Ok(())
    }

    fn tasks(&self) -> Option<&Tasks> {
        Some(&self.tasks)
    }
}

#[async_trait]
impl Consumer for CumulativeToDelta {
    async fn consume(&self, mut data: Telemetry) -> Result<(), ConsumeError> {
        let n = data.item_count();
        self.obs.incoming(n);
        if let Telemetry::Metrics(rms) = &mut data {
            self.inner.process(rms);
        }
        self.obs.outgoing(data.item_count());
        self.next.consume(data).await
    }
}

#[cfg(test)]
mod tests;
