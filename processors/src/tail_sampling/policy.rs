//! tail_sampling's policies: each config entry compiled once into an [`Eval`], and evaluated on a
//! whole trace (every span that arrived within `decision_wait`). The decisions, their precedence and
//! each policy's matching rules follow otelcol's `tailsamplingprocessor/internal/sampling`, so a
//! config keeps the same traces under vigil as under otelcol (the probabilistic policy hashes the
//! trace id with the same FNV-1a and salt, so both keep the same traces).

use super::config::PolicyConfig;
use lru::LruCache;
use prost::Message;
use regex::Regex;
use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::time::Instant;
use vigil_core::otlp::common::v1::{any_value, AnyValue, KeyValue};
use vigil_core::otlp::trace::v1::{ResourceSpans, Span};
use vigil_core::ConfigError;
use vigil_ottl::pdata::Item;
use vigil_ottl::{parse_condition, Condition, Context, ErrorMode};

/// One policy's answer, as otelcol names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Sampled,
    NotSampled,
    /// From a policy with `invert_match`: sampled unless another policy said not sampled.
    InvertSampled,
    /// From a policy with `invert_match`: not sampled, whatever other policies said (except drop).
    InvertNotSampled,
    /// From a `drop` policy: not sampled, whatever other policies said.
    Dropped,
}

impl Decision {
    /// otelcol's `decision` attribute value.
    pub fn label(self) -> &'static str {
        match self {
            Decision::Sampled | Decision::InvertSampled => "sampled",
            Decision::NotSampled | Decision::InvertNotSampled => "not_sampled",
            Decision::Dropped => "dropped",
        }
    }
}

/// What a policy sees: every span of one trace that arrived so far, grouped as it came.
#[derive(Default)]
pub struct TraceData {
    pub batches: Vec<ResourceSpans>,
    pub span_count: u64,
    pub bytes: u64,
}

impl TraceData {
    fn spans(&self) -> impl Iterator<Item = &Span> {
        self.batches
            .iter()
            .flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()))
    }
}

/// A compiled policy.
pub enum Eval {
    Always,
    Latency {
        lower_ms: i64,
        upper_ms: i64,
    },
    Numeric {
        key: String,
        min: i64,
        max: i64,
        invert: bool,
    },
    Probabilistic {
        salt: String,
        threshold: u64,
    },
    StatusCode(Vec<i32>),
    StringAttr {
        key: String,
        exact: HashSet<String>,
        regexes: Vec<Regex>,
        cache: Option<LruCache<String, bool>>,
        invert: bool,
    },
    RateLimiting {
        per_second: i64,
        second: u64,
        used: i64,
    },
    BytesLimiting {
        rate: f64,
        burst: f64,
        tokens: f64,
        last: Instant,
    },
    SpanCount {
        min: i64,
        max: i64,
    },
    TraceState {
        key: String,
        values: HashSet<String>,
    },
    TraceFlags,
    Boolean {
        key: String,
        value: bool,
        invert: bool,
    },
    Ottl {
        span: Vec<Condition>,
        event: Vec<Condition>,
        mode: ErrorMode,
    },
    And(Vec<Eval>),
    Drop(Vec<Eval>),
    Not(Box<Eval>),
    Composite {
        max_total: i64,
        second: u64,
        subs: Vec<(Eval, i64, i64)>,
    },
}

/// The policy types, as otelcol spells them, for the "unknown type" error.
pub const TYPES: &[&str] = &[
    "always_sample",
    "latency",
    "numeric_attribute",
    "probabilistic",
    "status_code",
    "string_attribute",
    "rate_limiting",
    "bytes_limiting",
    "span_count",
    "trace_state",
    "trace_flags",
    "boolean_attribute",
    "ottl_condition",
    "and",
    "drop",
    "not",
    "composite",
];

/// Where a policy sits, which decides the types it may have (otelcol's `PolicyCfg`,
/// `CompositeSubPolicyCfg`, `AndSubPolicyCfg`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Top,
    CompositeSub,
    Sub,
}

/// otelcol's default `cache_max_size` for regex results.
const DEFAULT_REGEX_CACHE: usize = 128;
/// otelcol's default probabilistic salt, so that both keep the same traces by default.
const DEFAULT_HASH_SALT: &str = "default-hash-seed";

fn unix_second() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Compiles one policy; `at` is its key path (`policies::2`).
pub fn compile(at: &str, p: &PolicyConfig, level: Level) -> Result<Eval, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::at(format!("{at}::{key}"), msg);
    let t = p.kind.as_str();
    let nested_ok = match t {
        "composite" | "drop" | "not" => level == Level::Top,
        "and" => level != Level::Sub,
        _ => true,
    };
    if !nested_ok {
        return Err(err(
            "type",
            format!("a policy of type {t:?} cannot be nested here (otelcol allows and, drop, not and composite at the top level, and inside composite only and)"),
        ));
    }
    let sub = |key: &str, list: &[PolicyConfig], lvl: Level| -> Result<Vec<Eval>, ConfigError> {
        if list.is_empty() {
            return Err(err(key, "expected at least one sub-policy".into()));
        }
        list.iter()
            .enumerate()
            .map(|(i, s)| compile(&format!("{at}::{key}::{i}"), s, lvl))
            .collect()
    };
    Ok(match t {
        "always_sample" => Eval::Always,
        "latency" => {
            let c = p.latency.clone().unwrap_or_default();
            if c.upper_threshold_ms != 0 && c.upper_threshold_ms < c.threshold_ms {
                return Err(err(
                    "latency::upper_threshold_ms",
                    format!(
                        "expected at least threshold_ms ({}), got {}",
                        c.threshold_ms, c.upper_threshold_ms
                    ),
                ));
            }
            Eval::Latency {
                lower_ms: c.threshold_ms,
                upper_ms: c.upper_threshold_ms,
            }
        }
        "numeric_attribute" => {
            let c = p.numeric_attribute.clone().unwrap_or_default();
            // As otelcol: 0 means "no bound" on either side.
            Eval::Numeric {
                key: c.key,
                min: if c.min_value == 0 {
                    i64::MIN
                } else {
                    c.min_value
                },
                max: if c.max_value == 0 {
                    i64::MAX
                } else {
                    c.max_value
                },
                invert: c.invert_match,
            }
        }
        "probabilistic" => {
            let c = p.probabilistic.clone().unwrap_or_default();
            let salt = if c.hash_salt.is_empty() {
                DEFAULT_HASH_SALT.to_string()
            } else {
                c.hash_salt
            };
            Eval::Probabilistic {
                salt,
                threshold: threshold(c.sampling_percentage / 100.0),
            }
        }
        "status_code" => {
            let c = p.status_code.clone().unwrap_or_default();
            if c.status_codes.is_empty() {
                return Err(err(
                    "status_code::status_codes",
                    "expected at least one status code (OK, ERROR or UNSET)".into(),
                ));
            }
            let mut codes = Vec::new();
            for (i, s) in c.status_codes.iter().enumerate() {
                codes.push(match s.as_str() {
                    "UNSET" => 0,
                    "OK" => 1,
                    "ERROR" => 2,
                    o => {
                        return Err(err(
                            &format!("status_code::status_codes::{i}"),
                            format!("unknown status code {o:?}: expected OK, ERROR or UNSET"),
                        ))
                    }
                });
            }
            Eval::StatusCode(codes)
        }
        "string_attribute" => {
            let c = p.string_attribute.clone().unwrap_or_default();
            let (mut exact, mut regexes, mut cache) = (HashSet::new(), Vec::new(), None);
            if c.enabled_regex_matching {
                for (i, v) in c.values.iter().enumerate() {
                    regexes.push(vigil_core::config::re2_regex(v).map_err(|e| {
                        err(&format!("string_attribute::values::{i}"), e.to_string())
                    })?);
                }
                let size = if c.cache_max_size == 0 {
                    DEFAULT_REGEX_CACHE
                } else {
                    c.cache_max_size
                };
                cache = NonZeroUsize::new(size).map(LruCache::new);
            } else {
                exact = c.values.into_iter().collect();
            }
            Eval::StringAttr {
                key: c.key,
                exact,
                regexes,
                cache,
                invert: c.invert_match,
            }
        }
        "rate_limiting" => Eval::RateLimiting {
            per_second: p.rate_limiting.clone().unwrap_or_default().spans_per_second,
            second: 0,
            used: 0,
        },
        "bytes_limiting" => {
            let c = p.bytes_limiting.clone().unwrap_or_default();
            if c.bytes_per_second <= 0 {
                return Err(err(
                    "bytes_limiting::bytes_per_second",
                    format!("expected a number above 0, got {}", c.bytes_per_second),
                ));
            }
            let burst = if c.burst_capacity <= 0 {
                2 * c.bytes_per_second
            } else {
                c.burst_capacity
            };
            Eval::BytesLimiting {
                rate: c.bytes_per_second as f64,
                burst: burst as f64,
                tokens: burst as f64,
                last: Instant::now(),
            }
        }
        "span_count" => {
            let c = p.span_count.clone().unwrap_or_default();
            if c.max_spans != 0 && c.max_spans < c.min_spans {
                return Err(err(
                    "span_count::max_spans",
                    format!(
                        "expected at least min_spans ({}), got {}",
                        c.min_spans, c.max_spans
                    ),
                ));
            }
            Eval::SpanCount {
                min: c.min_spans as i64,
                max: c.max_spans as i64,
            }
        }
        "trace_state" => {
            let c = p.trace_state.clone().unwrap_or_default();
            if let Some((i, v)) = c.values.iter().enumerate().find(|(_, v)| v.len() > 256) {
                return Err(err(
                    &format!("trace_state::values::{i}"),
                    format!(
                        "a tracestate value is at most 256 characters, got {}",
                        v.len()
                    ),
                ));
            }
            Eval::TraceState {
                key: c.key,
                values: c.values.into_iter().collect(),
            }
        }
        "trace_flags" => Eval::TraceFlags,
        "boolean_attribute" => {
            let c = p.boolean_attribute.clone().unwrap_or_default();
            Eval::Boolean {
                key: c.key,
                value: c.value,
                invert: c.invert_match,
            }
        }
        "ottl_condition" => {
            let c = p.ottl_condition.clone().unwrap_or_default();
            let mode = match c.error_mode.as_deref() {
                None | Some("") => ErrorMode::Propagate,
                Some(s) => ErrorMode::parse(s).map_err(|e| err("ottl_condition::error_mode", e))?,
            };
            if c.span.is_empty() && c.spanevent.is_empty() {
                return Err(err(
                    "ottl_condition",
                    "expected at least one condition under span or spanevent".into(),
                ));
            }
            let parse = |key: &str, ctx: Context, list: &[String]| {
                list.iter()
                    .enumerate()
                    .map(|(i, src)| {
                        parse_condition(ctx, src).map_err(|e| {
                            err(
                                &format!("ottl_condition::{key}::{i}"),
                                format!("condition {src:?}: {e}"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            Eval::Ottl {
                span: parse("span", Context::Span, &c.span)?,
                event: parse("spanevent", Context::SpanEvent, &c.spanevent)?,
                mode,
            }
        }
        "and" => Eval::And(sub(
            "and::and_sub_policy",
            &p.and.clone().unwrap_or_default().and_sub_policy,
            Level::Sub,
        )?),
        "drop" => Eval::Drop(sub(
            "drop::drop_sub_policy",
            &p.drop.clone().unwrap_or_default().drop_sub_policy,
            Level::Sub,
        )?),
        "not" => {
            let Some(inner) = p.not.as_ref().and_then(|n| n.not_sub_policy.as_deref()) else {
                return Err(err("not::not_sub_policy", "expected a sub-policy".into()));
            };
            Eval::Not(Box::new(compile(
                &format!("{at}::not::not_sub_policy"),
                inner,
                Level::Sub,
            )?))
        }
        "composite" => {
            let c = p.composite.clone().unwrap_or_default();
            let evals = sub(
                "composite::composite_sub_policy",
                &c.composite_sub_policy,
                Level::CompositeSub,
            )?;
            let names: Vec<&str> = c
                .composite_sub_policy
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            for (i, r) in c.rate_allocation.iter().enumerate() {
                if !names.contains(&r.policy.as_str()) {
                    return Err(err(
                        &format!("composite::rate_allocation::{i}::policy"),
                        format!(
                            "no composite_sub_policy is named {:?} (have: {})",
                            r.policy,
                            names.join(", ")
                        ),
                    ));
                }
            }
            let total = c.max_total_spans_per_second as f64;
            // As otelcol: a listed policy with no percent gets an equal share; an unlisted one
            // gets none, so it never samples.
            let default_share = total / c.composite_sub_policy.len().max(1) as f64;
            let subs = evals
                .into_iter()
                .zip(&c.composite_sub_policy)
                .map(|(e, s)| {
                    let alloc = c
                        .rate_allocation
                        .iter()
                        .find(|r| r.policy == s.name)
                        .map(|r| {
                            if r.percent > 0 {
                                (r.percent as f64 / 100.0) * total
                            } else {
                                default_share
                            }
                        })
                        .unwrap_or(0.0);
                    (e, alloc as i64, 0)
                })
                .collect();
            Eval::Composite {
                max_total: c.max_total_spans_per_second,
                second: 0,
                subs,
            }
        }
        "" => return Err(err("type", "missing policy type".into())),
        o => {
            return Err(err(
                "type",
                format!(
                    "unknown sampling policy type {o:?}: expected one of {}",
                    TYPES.join(", ")
                ),
            ))
        }
    })
}

/// `ratio` of the 64-bit hash space, as otelcol computes it (values at or above 1 keep everything).
fn threshold(ratio: f64) -> u64 {
    if ratio >= 1.0 {
        return u64::MAX;
    }
    if ratio <= 0.0 {
        return 0;
    }
    (u64::MAX as f64 * ratio) as u64
}

/// FNV-1a 64 over the salt then the trace id: otelcol's `hashTraceID`.
fn fnv1a(salt: &[u8], id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt.iter().chain(id) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// pdata's `Int()`: an int's value, 0 for any other type (otelcol compares that).
fn as_int(v: &Option<AnyValue>) -> i64 {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::IntValue(i)) => *i,
        _ => 0,
    }
}

/// pdata's `Str()`: a string's value, "" for any other type.
fn as_str(v: &Option<AnyValue>) -> &str {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s,
        _ => "",
    }
}

/// pdata's `Bool()`: a bool's value, false for any other type.
fn as_bool(v: &Option<AnyValue>) -> bool {
    matches!(
        v.as_ref().and_then(|v| v.value.as_ref()),
        Some(any_value::Value::BoolValue(true))
    )
}

fn attr<'a>(kvs: &'a [KeyValue], key: &str) -> Option<&'a Option<AnyValue>> {
    kvs.iter().find(|kv| kv.key == key).map(|kv| &kv.value)
}

/// otelcol's `hasResourceOrSpanWithCondition` and its inverted form: `test` is asked of the
/// resource's and of each span's attributes (`None` when the key is absent).
fn resource_or_span(
    t: &TraceData,
    key: &str,
    invert: bool,
    mut test: impl FnMut(&Option<AnyValue>) -> bool,
) -> Decision {
    if invert {
        for rs in &t.batches {
            let res = rs
                .resource
                .as_ref()
                .map(|r| &r.attributes[..])
                .unwrap_or(&[]);
            if let Some(v) = attr(res, key) {
                if test(v) {
                    return Decision::InvertNotSampled;
                }
            }
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    if let Some(v) = attr(&s.attributes, key) {
                        if test(v) {
                            return Decision::InvertNotSampled;
                        }
                    }
                }
            }
        }
        return Decision::InvertSampled;
    }
    for rs in &t.batches {
        let res = rs
            .resource
            .as_ref()
            .map(|r| &r.attributes[..])
            .unwrap_or(&[]);
        if attr(res, key).is_some_and(&mut test) {
            return Decision::Sampled;
        }
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                if attr(&s.attributes, key).is_some_and(&mut test) {
                    return Decision::Sampled;
                }
            }
        }
    }
    Decision::NotSampled
}

fn sampled_if(b: bool) -> Decision {
    if b {
        Decision::Sampled
    } else {
        Decision::NotSampled
    }
}

/// One member of a W3C `tracestate` header.
fn trace_state_value<'a>(raw: &'a str, key: &str) -> Option<&'a str> {
    raw.split(',').find_map(|m| {
        let (k, v) = m.trim().split_once('=')?;
        (k == key).then_some(v)
    })
}

impl Eval {
    /// The policy's decision on `t`; an error is an OTTL condition failing under `propagate`.
    pub fn evaluate(&mut self, id: &[u8], t: &mut TraceData) -> Result<Decision, String> {
        Ok(match self {
            Eval::Always => Decision::Sampled,
            Eval::Latency { lower_ms, upper_ms } => {
                // As otelcol: the trace's span from the earliest start to the latest end, checked
                // as spans are seen, so a match stops the walk.
                let (mut min, mut max) = (0u64, 0u64);
                let mut hit = false;
                for s in t.spans() {
                    if min == 0 || s.start_time_unix_nano < min {
                        min = s.start_time_unix_nano;
                    }
                    if max == 0 || s.end_time_unix_nano > max {
                        max = s.end_time_unix_nano;
                    }
                    let ms = (max.saturating_sub(min) / 1_000_000) as i64;
                    hit = if *upper_ms == 0 {
                        ms >= *lower_ms
                    } else {
                        *lower_ms < ms && ms <= *upper_ms
                    };
                    if hit {
                        break;
                    }
                }
                sampled_if(hit)
            }
            Eval::Numeric {
                key,
                min,
                max,
                invert,
            } => {
                let (lo, hi) = (*min, *max);
                resource_or_span(t, key, *invert, |v| {
                    let n = as_int(v);
                    n >= lo && n <= hi
                })
            }
            Eval::Probabilistic { salt, threshold } => {
                sampled_if(fnv1a(salt.as_bytes(), id) <= *threshold)
            }
            Eval::StatusCode(codes) => sampled_if(t.spans().any(|s| {
                let code = s.status.as_ref().map(|st| st.code).unwrap_or(0);
                codes.contains(&code)
            })),
            Eval::StringAttr {
                key,
                exact,
                regexes,
                cache,
                invert,
            } => {
                let key = key.clone();
                if regexes.is_empty() {
                    resource_or_span(t, &key, *invert, |v| exact.contains(as_str(v)))
                } else {
                    resource_or_span(t, &key, *invert, |v| {
                        let s = as_str(v);
                        if let Some(hit) = cache.as_mut().and_then(|c| c.get(s).copied()) {
                            return hit;
                        }
                        let hit = regexes.iter().any(|r| r.is_match(s));
                        if let Some(c) = cache.as_mut() {
                            c.put(s.to_string(), hit);
                        }
                        hit
                    })
                }
            }
            Eval::RateLimiting {
                per_second,
                second,
                used,
            } => {
                let now = unix_second();
                if *second != now {
                    *second = now;
                    *used = 0;
                }
                let after = *used + t.span_count as i64;
                if after < *per_second {
                    *used = after;
                    Decision::Sampled
                } else {
                    Decision::NotSampled
                }
            }
            Eval::BytesLimiting {
                rate,
                burst,
                tokens,
                last,
            } => {
                let now = Instant::now();
                *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * *rate).min(*burst);
                *last = now;
                let need = t.bytes as f64;
                if need <= *tokens {
                    *tokens -= need;
                    Decision::Sampled
                } else {
                    Decision::NotSampled
                }
            }
            Eval::SpanCount { min, max } => {
                let n = t.span_count as i64;
                sampled_if(if *max == 0 {
                    n >= *min
                } else {
                    n >= *min && n <= *max
                })
            }
            Eval::TraceState { key, values } => sampled_if(t.spans().any(|s| {
                trace_state_value(&s.trace_state, key)
                    .is_some_and(|v| !v.is_empty() && values.contains(v))
            })),
            Eval::TraceFlags => sampled_if(t.spans().any(|s| s.flags & 0x1 != 0)),
            Eval::Boolean { key, value, invert } => {
                let want = *value;
                resource_or_span(t, &key.clone(), *invert, |v| as_bool(v) == want)
            }
            Eval::Ottl { span, event, mode } => ottl(span, event, *mode, t)?,
            Eval::And(subs) => {
                for s in subs.iter_mut() {
                    match s.evaluate(id, t)? {
                        Decision::NotSampled | Decision::InvertNotSampled => {
                            return Ok(Decision::NotSampled)
                        }
                        _ => {}
                    }
                }
                Decision::Sampled
            }
            Eval::Drop(subs) => {
                for s in subs.iter_mut() {
                    match s.evaluate(id, t)? {
                        Decision::NotSampled | Decision::InvertNotSampled => {
                            return Ok(Decision::NotSampled)
                        }
                        _ => {}
                    }
                }
                Decision::Dropped
            }
            Eval::Not(inner) => match inner.evaluate(id, t)? {
                Decision::Sampled | Decision::InvertSampled => Decision::NotSampled,
                _ => Decision::Sampled,
            },
            Eval::Composite {
                max_total,
                second,
                subs,
            } => {
                let now = unix_second();
                if *second != now {
                    *second = now;
                    subs.iter_mut().for_each(|s| s.2 = 0);
                }
                for (eval, allocated, used) in subs.iter_mut() {
                    if matches!(
                        eval.evaluate(id, t)?,
                        Decision::Sampled | Decision::InvertSampled
                    ) {
                        let after = *used + t.span_count as i64;
                        if after <= *allocated && after <= *max_total {
                            *used = after;
                            return Ok(Decision::Sampled);
                        }
                    }
                }
                Decision::NotSampled
            }
        })
    }
}

/// otelcol's `ottl_condition`: sampled when any span meets any span condition, or any span event
/// meets any span event condition.
fn ottl(
    span: &[Condition],
    event: &[Condition],
    mode: ErrorMode,
    t: &mut TraceData,
) -> Result<Decision, String> {
    let check = |c: &Condition, item: &Item<'_>| -> Result<bool, String> {
        match c.eval(item) {
            Ok(b) => Ok(b),
            Err(e) if mode == ErrorMode::Propagate => Err(e),
            Err(e) => {
                if mode == ErrorMode::Ignore {
                    tracing::warn!(condition = %c.source, error = %e, "ottl_condition failed; ignored");
                }
                Ok(false)
            }
        }
    };
    for rs in t.batches.iter_mut() {
        let res = &mut rs.resource;
        for ss in rs.scope_spans.iter_mut() {
            let scope = &mut ss.scope;
            for s in ss.spans.iter_mut() {
                for c in span {
                    let mut it = Item::resource(res);
                    it.scope = Some(scope);
                    it.span = Some(s);
                    if check(c, &it)? {
                        return Ok(Decision::Sampled);
                    }
                }
                if event.is_empty() {
                    continue;
                }
                let mut events = std::mem::take(&mut s.events);
                let mut hit = Ok(false);
                'events: for ev in events.iter_mut() {
                    for c in event {
                        let mut it = Item::resource(res);
                        it.scope = Some(scope);
                        it.span = Some(s);
                        it.event = Some(ev);
                        match check(c, &it) {
                            Ok(false) => {}
                            other => {
                                hit = other;
                                break 'events;
                            }
                        }
                    }
                }
                s.events = events;
                if hit? {
                    return Ok(Decision::Sampled);
                }
            }
        }
    }
    Ok(Decision::NotSampled)
}

/// The size a trace's spans take encoded, for `bytes_limiting` and `maximum_trace_size_bytes`.
pub fn encoded_size(rs: &ResourceSpans) -> u64 {
    rs.encoded_len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilistic_hash_matches_fnv1a_reference() {
        // FNV-1a 64 of "a" is a published test vector.
        assert_eq!(fnv1a(b"a", b""), 0xaf63dc4c8601ec8c);
        assert_eq!(threshold(1.0), u64::MAX);
        assert_eq!(threshold(0.0), 0);
        let half = threshold(0.5);
        assert!(half > u64::MAX / 2 - 4096 && half < u64::MAX / 2 + 4096);
    }

    #[test]
    fn trace_state_members() {
        assert_eq!(trace_state_value("a=1,b=2", "b"), Some("2"));
        assert_eq!(trace_state_value("a=1, b=2", "b"), Some("2"));
        assert_eq!(trace_state_value("a=1", "c"), None);
    }
}
