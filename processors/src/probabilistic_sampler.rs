//! `probabilistic_sampler` (`probabilisticsampler`): otelcol's stateless sampler for spans and log
//! records. Each item is kept or dropped on its own, from randomness that every collector tier
//! computes alike, so the same trace is kept or dropped everywhere:
//! - `hash_seed` mode (the legacy default when `hash_seed` is set, or for logs hashed from a record
//!   attribute): FNV-1a over the seed and the trace id (or `from_attribute`'s value), 14 bits
//!   compared with `sampling_percentage`;
//! - `proportional` (the default otherwise) and `equalizing`: OpenTelemetry's consistent probability
//!   sampling. The randomness is the trace id's low 56 bits, or an explicit `rv` in the W3C
//!   tracestate's `ot` entry; a kept span's tracestate carries the threshold it was kept at
//!   (`ot=th:…`), so a later stage can count what it stands for. Proportional multiplies the
//!   arriving probability by `sampling_percentage`; equalizing lowers it to `sampling_percentage`.
//!   Log records carry the same values in the `sampling.randomness` and `sampling.threshold`
//!   attributes.
//!
//! Errors (an unparsable tracestate, missing randomness, a threshold the randomness contradicts)
//! drop the item when `fail_closed` (the default) and keep it otherwise; priorities come after that:
//! a span's `sampling.priority` of 0 drops it and above 0 keeps it, a log record's
//! `sampling_priority` attribute raises its probability to that percentage. It holds no state.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use vigil_core::attrs::{get, upsert, value_to_string};
use vigil_core::factory::{self, DynProcessorFactory, FactoryBase, ProcessorFactory};
use vigil_core::otlp::common::v1::any_value::Value;
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs};
use vigil_core::otlp::trace::v1::{ResourceSpans, Span};
use vigil_core::{
    Component, ComponentId, ConfigError, ConsumeError, Consumer, Processor, Settings, Signal,
    Stability, Telemetry,
};

/// 2^56: thresholds and randomness are 56-bit numbers (14 hex digits).
const MAX_ADJUSTED_COUNT: u64 = 1 << 56;
const NUM_HEX_DIGITS: i32 = 14;
/// The smallest probability a threshold can express.
const MIN_PROBABILITY: f64 = 1.0 / MAX_ADJUSTED_COUNT as f64;
/// The legacy hash's buckets: 2^14, so a percentage has about 4 significant digits.
const HASH_BUCKETS: u32 = 0x4000;

/// The processor's config as otelcol spells it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbabilisticSamplerConfig {
    /// Percent of items kept; 0 keeps none, 100 or more keeps all.
    pub sampling_percentage: f32,
    /// Seed of the `hash_seed` mode's hash (and of the attribute hash for logs without trace ids).
    pub hash_seed: u32,
    /// `hash_seed`, `proportional` or `equalizing`; empty: `hash_seed` when a seed is set (or logs
    /// are hashed from a record attribute), `proportional` otherwise.
    pub mode: String,
    /// Drop an item whose sampling information is missing or broken (otelcol's default: true).
    pub fail_closed: bool,
    /// Hex digits of a threshold written to the tracestate, 1 to 14 (default 4).
    pub sampling_precision: i32,
    /// Logs: `traceID` (default) or `record`: where the randomness comes from.
    pub attribute_source: String,
    /// Logs: the record attribute hashed when there is no trace id (or with `record`).
    pub from_attribute: String,
    /// Logs: a record attribute holding a percentage that raises that record's probability.
    pub sampling_priority: String,
}

impl Default for ProbabilisticSamplerConfig {
    fn default() -> Self {
        ProbabilisticSamplerConfig {
            sampling_percentage: 0.0,
            hash_seed: 0,
            mode: String::new(),
            fail_closed: true,
            sampling_precision: 4,
            attribute_source: "traceID".into(),
            from_attribute: String::new(),
            sampling_priority: String::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    HashSeed,
    Equalizing,
    Proportional,
}

fn check(c: &ProbabilisticSamplerConfig) -> Result<(), ConfigError> {
    let pct = c.sampling_percentage as f64;
    if pct.is_nan() || pct.is_infinite() {
        return Err(ConfigError::at(
            "sampling_percentage",
            format!("sampling rate is invalid: {pct}%"),
        ));
    }
    if pct < 0.0 {
        return Err(ConfigError::at(
            "sampling_percentage",
            format!("sampling rate is negative: {pct}%"),
        ));
    }
    if pct > 0.0 && pct / 100.0 < MIN_PROBABILITY {
        return Err(ConfigError::at(
            "sampling_percentage",
            format!("sampling rate is too small: {pct}%"),
        ));
    }
    if !matches!(
        c.mode.as_str(),
        "" | "hash_seed" | "proportional" | "equalizing"
    ) {
        return Err(ConfigError::at(
            "mode",
            format!(
                "unsupported sampler mode {:?}: expected hash_seed, proportional or equalizing",
                c.mode
            ),
        ));
    }
    if !matches!(c.attribute_source.as_str(), "" | "traceID" | "record") {
        return Err(ConfigError::at(
            "attribute_source",
            format!(
                "invalid attribute source: {}. Expected: traceID or record",
                c.attribute_source
            ),
        ));
    }
    if c.sampling_precision <= 0 {
        return Err(ConfigError::at(
            "sampling_precision",
            format!("invalid sampling precision: {}", c.sampling_precision),
        ));
    }
    if c.sampling_precision > NUM_HEX_DIGITS {
        return Err(ConfigError::at(
            "sampling_precision",
            format!(
                "sampling precision is too great, should be <= 14: {}",
                c.sampling_precision
            ),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Thresholds and randomness, as OpenTelemetry's probability sampling specification defines them.

/// A rejection threshold: an item is kept when its randomness is at least this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Threshold(u64);

const ALWAYS: Threshold = Threshold(0);
const NEVER: Threshold = Threshold(MAX_ADJUSTED_COUNT);

impl Threshold {
    fn should_sample(self, r: u64) -> bool {
        r >= self.0
    }

    fn probability(self) -> f64 {
        (MAX_ADJUSTED_COUNT - self.0) as f64 / MAX_ADJUSTED_COUNT as f64
    }

    /// The `th` value: 14 hex digits less trailing zeros ("0" for always); none for never.
    fn tvalue(self) -> Option<String> {
        match self.0 {
            0 => Some("0".into()),
            MAX_ADJUSTED_COUNT => None,
            t => Some(format!("{t:014x}").trim_end_matches('0').to_string()),
        }
    }

    fn parse(tv: &str) -> Result<Threshold, String> {
        if tv.is_empty() || tv.len() > NUM_HEX_DIGITS as usize {
            return Err(format!("t-value {tv:?} must have 1 to 14 hex digits"));
        }
        let v = u64::from_str_radix(tv, 16).map_err(|_| format!("t-value {tv:?} is not hex"))?;
        Ok(Threshold(v << (4 * (NUM_HEX_DIGITS as usize - tv.len()))))
    }

    /// `fraction` as a threshold rounded to `precision` hex digits, more near 0 and 1 so that the
    /// relative error stays small (as otelcol's `ProbabilityToThresholdWithPrecision`).
    fn from_probability(fraction: f64, precision: i32) -> Option<Threshold> {
        if !(MIN_PROBABILITY..=1.0).contains(&fraction) {
            return None;
        }
        if fraction == 1.0 {
            return Some(ALWAYS);
        }
        // frexp's exponent (x = m * 2^exp, m in [0.5, 1)), read from the bits so that powers of two
        // come out exactly as Go's math.Frexp gives them; both arguments are normal numbers here.
        let exp = |x: f64| -> i32 {
            if x == 0.0 {
                0
            } else {
                ((x.to_bits() >> 52) & 0x7ff) as i32 - 1022
            }
        };
        let (ef, er) = (exp(fraction), exp(1.0 - fraction));
        let precision = NUM_HEX_DIGITS.min((precision + ef / -4).max(precision + er / -4));
        let scaled = (fraction * MAX_ADJUSTED_COUNT as f64).round() as u64;
        let mut t = MAX_ADJUSTED_COUNT - scaled;
        let shift = 4 * (NUM_HEX_DIGITS - precision);
        if shift != 0 {
            t += 1u64 << (shift - 1);
            t >>= shift;
            t <<= shift;
        }
        Some(Threshold(t))
    }
}

fn parse_rvalue(rv: &str) -> Result<u64, String> {
    if rv.len() != NUM_HEX_DIGITS as usize {
        return Err(format!("r-value {rv:?} must have 14 hex digits"));
    }
    u64::from_str_radix(rv, 16).map_err(|_| format!("r-value {rv:?} is not hex"))
}

fn rvalue(r: u64) -> String {
    format!("{r:014x}")
}

/// The trace id's least significant 56 bits (W3C Trace Context level 2's random part).
fn trace_id_randomness(id: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    if id.len() == 16 {
        b[1..].copy_from_slice(&id[9..]);
    }
    u64::from_be_bytes(b)
}

/// 32-bit FNV-1a over the seed (little-endian) and the bytes, as otelcol's `computeHash`; written
/// out because the `fnv` crate offers only the 64-bit variant.
fn fnv32a(seed: u32, b: &[u8]) -> u32 {
    fnv1a(&[&seed.to_le_bytes(), b])
}

fn fnv1a(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for x in parts.iter().flat_map(|p| p.iter()) {
        h ^= *x as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The legacy hash as 56-bit randomness, arranged (as otelcol does) so that comparing it with the
/// hash mode's threshold makes the same decision as the old `hash < rate` test.
fn hash_randomness(b: &[u8], seed: u32) -> u64 {
    let h = fnv32a(seed, b);
    let hashed = (h & (HASH_BUCKETS - 1)) as u64;
    let rprime14 = (HASH_BUCKETS as u64) - 1 - hashed;
    let unused18 = (h >> 14) as u64;
    let mixed28 = (unused18 ^ (unused18 << 10)) & ((1 << 28) - 1);
    (rprime14 << 42) | (mixed28 << 14) | hashed
}

/// Randomness that every threshold but "never" keeps: what an item without randomness is decided by.
const ALL_PROBABILITIES: u64 = MAX_ADJUSTED_COUNT - 1;

// ---------------------------------------------------------------------------------------------
// The W3C tracestate and its `ot` entry.

#[derive(Debug, Default)]
struct TraceState {
    /// Entries other than `ot`, in order.
    others: Vec<(String, String)>,
    rv: Option<(String, u64)>,
    th: Option<(String, Threshold)>,
    /// `ot` fields other than `rv` and `th`, in order.
    ot_extra: Vec<(String, String)>,
}

impl TraceState {
    fn parse(raw: &str) -> Result<TraceState, String> {
        let mut ts = TraceState::default();
        for member in raw.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            let Some((k, v)) = member.split_once('=') else {
                return Err(format!("tracestate member {member:?} has no '='"));
            };
            if k.is_empty() || v.is_empty() {
                return Err(format!("tracestate member {member:?} is malformed"));
            }
            if k != "ot" {
                ts.others.push((k.into(), v.into()));
                continue;
            }
            for field in v.split(';').filter(|f| !f.is_empty()) {
                let Some((fk, fv)) = field.split_once(':') else {
                    return Err(format!("tracestate ot field {field:?} has no ':'"));
                };
                match fk {
                    "rv" => ts.rv = Some((fv.into(), parse_rvalue(fv)?)),
                    "th" => ts.th = Some((fv.into(), Threshold::parse(fv)?)),
                    _ => ts.ot_extra.push((fk.into(), fv.into())),
                }
            }
        }
        Ok(ts)
    }

    /// `ot` first (a modified entry moves to the front, as W3C says), with `rv` before `th`.
    fn serialize(&self) -> String {
        let mut ot: Vec<String> = Vec::new();
        if let Some((rv, _)) = &self.rv {
            ot.push(format!("rv:{rv}"));
        }
        if let Some((tv, _)) = &self.th {
            ot.push(format!("th:{tv}"));
        }
        ot.extend(self.ot_extra.iter().map(|(k, v)| format!("{k}:{v}")));
        let mut out: Vec<String> = Vec::new();
        if !ot.is_empty() {
            out.push(format!("ot={}", ot.join(";")));
        }
        out.extend(self.others.iter().map(|(k, v)| format!("{k}={v}")));
        out.join(",")
    }
}

// ---------------------------------------------------------------------------------------------
// Where an item's sampling values live: a span's tracestate or a log record's attributes.

/// The parsed sampling values of one item.
#[derive(Debug, Default)]
struct Carrier {
    rv: Option<u64>,
    th: Option<Threshold>,
    /// Set when the randomness was computed here and is to be written out.
    new_rv: Option<u64>,
    /// The threshold to write out, when the item is kept.
    new_th: Option<Threshold>,
    /// The threshold is contradicted by the randomness and is to be removed.
    clear_th: bool,
}

/// Where the randomness came from: the `policy` label of otelcol's sampled counters.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    Missing,
    TraceIdHash,
    Explicit,
    TraceIdW3c,
    Attribute(&'a str),
    Priority,
}

impl Source<'_> {
    fn name(&self) -> &str {
        match self {
            Source::Missing => "missing_randomness",
            Source::TraceIdHash => "trace_id_hash",
            Source::Explicit => "sampling_randomness",
            Source::TraceIdW3c => "trace_id_w3c",
            Source::Attribute(a) => a,
            Source::Priority => "sampling_priority",
        }
    }
}

#[derive(Debug)]
enum Sampler {
    Never,
    Hash { threshold: Threshold },
    Equalizing { threshold: Threshold },
    Proportional { ratio: f64, precision: i32 },
}

/// A configured sampler for one signal.
struct Core {
    sampler: Sampler,
    hash_mode: bool,
    seed: u32,
    fail_closed: bool,
    precision: i32,
    /// Logs: hash the trace id in hash mode (`attribute_source: traceID`).
    logs_trace_id: bool,
    from_attribute: String,
    sampling_priority: String,
}

fn build(c: &ProbabilisticSamplerConfig, logs: bool) -> Core {
    let pct = c.sampling_percentage.min(100.0);
    let source = if c.attribute_source.is_empty() {
        "traceID"
    } else {
        c.attribute_source.as_str()
    };
    let mode = match c.mode.as_str() {
        "hash_seed" => Mode::HashSeed,
        "equalizing" => Mode::Equalizing,
        "proportional" => Mode::Proportional,
        _ if c.hash_seed != 0 || (logs && source != "traceID") => Mode::HashSeed,
        _ => Mode::Proportional,
    };
    let ratio = (pct as f64 / 100.0).max(MIN_PROBABILITY);
    let sampler = if pct <= 0.0 {
        Sampler::Never
    } else {
        match mode {
            Mode::Equalizing => Sampler::Equalizing {
                threshold: Threshold::from_probability(ratio, c.sampling_precision)
                    .unwrap_or(ALWAYS),
            },
            Mode::Proportional => Sampler::Proportional {
                ratio,
                precision: c.sampling_precision,
            },
            Mode::HashSeed => {
                // As otelcol: the product in 32-bit float, truncated.
                let scaled = (pct * (HASH_BUCKETS as f32 / 100.0)) as u32;
                if scaled == 0 {
                    Sampler::Never
                } else {
                    Sampler::Hash {
                        threshold: Threshold(
                            ((HASH_BUCKETS - scaled.min(HASH_BUCKETS)) as u64) << 42,
                        ),
                    }
                }
            }
        }
    };
    Core {
        hash_mode: matches!(sampler, Sampler::Hash { .. }),
        sampler,
        seed: c.hash_seed,
        fail_closed: c.fail_closed,
        precision: c.sampling_precision,
        logs_trace_id: source == "traceID",
        from_attribute: c.from_attribute.clone(),
        sampling_priority: c.sampling_priority.clone(),
    }
}

/// The sampler's own failures (otelcol's `samplerError`s and parse errors), reported at debug level.
type Failure = String;

impl Core {
    fn decide(&self, carrier: &Carrier) -> Threshold {
        match &self.sampler {
            Sampler::Never => NEVER,
            Sampler::Hash { threshold } | Sampler::Equalizing { threshold } => *threshold,
            Sampler::Proportional { ratio, precision } => {
                let incoming = carrier.th.map_or(1.0, Threshold::probability);
                Threshold::from_probability(incoming * ratio, *precision).unwrap_or(NEVER)
            }
        }
    }

    /// Randomness and carrier of a span.
    fn span_randomness(
        &self,
        s: &Span,
    ) -> (
        Source<'_>,
        u64,
        Option<(Carrier, TraceState)>,
        Option<Failure>,
    ) {
        let parsed = TraceState::parse(&s.trace_state);
        if self.hash_mode {
            let mut id = [0u8; 16];
            if s.trace_id.len() == 16 {
                id.copy_from_slice(&s.trace_id);
            }
            let r = hash_randomness(&id, self.seed);
            let ts = match parsed {
                Ok(ts) => ts,
                Err(e) => return (Source::TraceIdHash, r, None, Some(e)),
            };
            let mut c = Carrier {
                rv: ts.rv.as_ref().map(|x| x.1),
                th: ts.th.as_ref().map(|x| x.1),
                ..Default::default()
            };
            let err = if c.rv.is_some() {
                Some(
                    "span has sampling randomness, equalizing or proportional mode recommended"
                        .into(),
                )
            } else if c.th.is_some() {
                Some(
                    "span has sampling threshold, equalizing or proportional mode recommended"
                        .into(),
                )
            } else {
                c.new_rv = Some(r);
                None
            };
            return (Source::TraceIdHash, r, Some((c, ts)), err);
        }
        let ts = match parsed {
            Ok(ts) => ts,
            Err(e) => return (Source::Missing, ALL_PROBABILITIES, None, Some(e)),
        };
        let c = Carrier {
            rv: ts.rv.as_ref().map(|x| x.1),
            th: ts.th.as_ref().map(|x| x.1),
            ..Default::default()
        };
        let (src, r) = if let Some(rv) = c.rv {
            (Source::Explicit, rv)
        } else if s.trace_id.len() == 16 && s.trace_id.iter().any(|b| *b != 0) {
            (Source::TraceIdW3c, trace_id_randomness(&s.trace_id))
        } else {
            (Source::Missing, ALL_PROBABILITIES)
        };
        (src, r, Some((c, ts)), None)
    }

    /// Randomness and carrier of a log record (values in `sampling.*` attributes).
    fn log_randomness<'a>(
        &'a self,
        l: &LogRecord,
    ) -> (Source<'a>, u64, Option<Carrier>, Option<Failure>) {
        let text = |k: &str| match get(&l.attributes, k) {
            Some(Value::StringValue(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let mut c = Carrier::default();
        let mut err: Option<String> = None;
        if let Some(tv) = text("sampling.threshold") {
            match Threshold::parse(&tv) {
                Ok(t) => c.th = Some(t),
                Err(e) => err = Some(e),
            }
        }
        if let Some(rv) = text("sampling.randomness") {
            match parse_rvalue(&rv) {
                Ok(r) => c.rv = Some(r),
                Err(e) => err = Some(e),
            }
        }
        let trace_id_set = l.trace_id.len() == 16 && l.trace_id.iter().any(|b| *b != 0);
        let attr_bytes = |name: &str| -> Option<Vec<u8>> {
            if name.is_empty() {
                return None;
            }
            match get(&l.attributes, name) {
                Some(Value::BytesValue(b)) => Some(b.clone()),
                Some(v) => Some(value_to_string(v).into_bytes()),
                None => None,
            }
        };
        if self.hash_mode {
            let mut found: Option<(Source<'a>, u64)> = None;
            if self.logs_trace_id {
                let mut id = [0u8; 16];
                if l.trace_id.len() == 16 {
                    id.copy_from_slice(&l.trace_id);
                }
                found = Some((Source::TraceIdHash, hash_randomness(&id, self.seed)));
            }
            if found.is_none() {
                if let Some(b) = attr_bytes(&self.from_attribute) {
                    found = Some((
                        Source::Attribute(&self.from_attribute),
                        hash_randomness(&b, self.seed),
                    ));
                }
            }
            let (src, r) = found.unwrap_or((Source::Missing, ALL_PROBABILITIES));
            if err.is_some() {
                return (src, r, None, err);
            }
            if c.rv.is_some() {
                err = Some("log record has sampling randomness, equalizing or proportional mode recommended".into());
            } else if c.th.is_some() {
                err = Some("log record has sampling threshold, equalizing or proportional mode recommended".into());
            } else if !matches!(src, Source::Missing) {
                c.new_rv = Some(r);
            }
            return (src, r, Some(c), err);
        }
        if err.is_some() {
            return (Source::Missing, ALL_PROBABILITIES, None, err);
        }
        let (src, r) = if let Some(rv) = c.rv {
            (Source::Explicit, rv)
        } else if trace_id_set {
            (Source::TraceIdW3c, trace_id_randomness(&l.trace_id))
        } else if let Some(b) = attr_bytes(&self.from_attribute) {
            (
                Source::Attribute(&self.from_attribute),
                hash_randomness(&b, self.seed),
            )
        } else {
            (Source::Missing, ALL_PROBABILITIES)
        };
        (src, r, Some(c), None)
    }

    /// The decision every item goes through: errors (and missing randomness) fall back to
    /// `fail_closed`, then the priority has its say, then the threshold kept at is recorded.
    fn common<'a>(
        &self,
        src: Source<'a>,
        r: u64,
        carrier: Option<&mut Carrier>,
        mut err: Option<Failure>,
        priority: impl FnOnce(Threshold) -> Option<Threshold>,
    ) -> (bool, Source<'a>) {
        let mut carrier = carrier;
        if err.is_none() {
            if matches!(src, Source::Missing) {
                err = Some("missing randomness".into());
            } else if let Some(c) = carrier.as_deref_mut() {
                if let Some(th) = c.th {
                    if !th.should_sample(r) {
                        c.clear_th = true;
                        err = Some(
                            "inconsistent arriving t-value: span should not have been sampled"
                                .into(),
                        );
                    }
                }
            }
        }
        let mut threshold = match (&err, &carrier) {
            (Some(e), _) => {
                tracing::debug!(error = %e, "probabilistic_sampler");
                if self.fail_closed {
                    NEVER
                } else {
                    ALWAYS
                }
            }
            (None, Some(c)) => self.decide(c),
            (None, None) => self.decide(&Carrier::default()),
        };
        let mut src = src;
        if let Some(t) = priority(threshold) {
            threshold = t;
            src = Source::Priority;
        }
        let sampled = threshold.should_sample(r);
        if sampled {
            if let Some(c) = carrier {
                c.new_th = Some(threshold);
            }
        }
        (sampled, src)
    }
}

/// OpenTracing's `sampling.priority` on a span: `Some(false)` drops, `Some(true)` keeps.
fn span_priority(s: &Span) -> Option<bool> {
    let v = get(&s.attributes, "sampling.priority")?;
    let x = match v {
        Value::IntValue(i) => *i as f64,
        Value::DoubleValue(d) => *d,
        Value::StringValue(t) => t.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if x == 0.0 {
        Some(false)
    } else if x > 0.0 {
        Some(true)
    } else {
        None
    }
}

struct Factory;

/// The `probabilistic_sampler` processor factory (`probabilisticsampler` is accepted too).
pub fn factory() -> Arc<dyn DynProcessorFactory> {
    factory::processor(Factory)
}

impl FactoryBase for Factory {
    type Config = ProbabilisticSamplerConfig;

    fn type_name(&self) -> &'static str {
        "probabilistic_sampler"
    }

    fn validate(
        &self,
        _id: &ComponentId,
        cfg: &ProbabilisticSamplerConfig,
    ) -> Result<(), ConfigError> {
        check(cfg)
    }
}

impl ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Beta),
            (Signal::Logs, Stability::Alpha),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: ProbabilisticSamplerConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        check(&cfg)?;
        Ok(Arc::new(ProbabilisticSampler {
            core: build(&cfg, signal == Signal::Logs),
            label: set.id.to_string(),
            obs: set.processor_obs(signal),
            next,
        }))
    }
}

/// A running `probabilistic_sampler`.
pub struct ProbabilisticSampler {
    core: Core,
    label: String,
    obs: vigil_core::ProcessorObs,
    next: Arc<dyn Consumer>,
}

impl ProbabilisticSampler {
    fn count(&self, what: &'static str, src: Source<'_>, sampled: bool) {
        metrics::counter!(
            what,
            "processor" => self.label.clone(),
            "policy" => src.name().to_string(),
            "sampled" => if sampled { "true" } else { "false" },
        )
        .increment(1);
    }

    fn keep_span(&self, s: &mut Span) -> bool {
        let prio = span_priority(s);
        let (src, r, parsed, err) = self.core.span_randomness(s);
        let (mut c, mut ts) = match parsed {
            Some((c, ts)) => (Some(c), Some(ts)),
            None => (None, None),
        };
        let (sampled, src) = self.core.common(src, r, c.as_mut(), err, |_| match prio {
            Some(false) => Some(NEVER),
            Some(true) => Some(ALWAYS),
            None => None,
        });
        self.count(
            "otelcol_processor_probabilistic_sampler_count_traces_sampled",
            src,
            sampled,
        );
        if let (true, Some(c), Some(ts)) = (sampled, c.as_ref(), ts.as_mut()) {
            write_tracestate(c, ts);
            s.trace_state = ts.serialize();
        }
        sampled
    }

    fn keep_log(&self, l: &mut LogRecord) -> bool {
        let (src, r, mut c, err) = self.core.log_randomness(l);
        let prio_attr = &self.core.sampling_priority;
        let precision = self.core.precision;
        let attrs = &l.attributes;
        let (sampled, src) = self.core.common(src, r, c.as_mut(), err, |current| {
            if prio_attr.is_empty() {
                return None;
            }
            let min_prob = match get(attrs, prio_attr) {
                Some(Value::DoubleValue(d)) => d / 100.0,
                Some(Value::IntValue(i)) => *i as f64 / 100.0,
                _ => 0.0,
            };
            let t = if min_prob != 0.0 {
                Threshold::from_probability(min_prob, precision).unwrap_or(NEVER)
            } else {
                NEVER
            };
            (t < current).then_some(t)
        });
        self.count(
            "otelcol_processor_probabilistic_sampler_count_logs_sampled",
            src,
            sampled,
        );
        if let Some(c) = &c {
            if let Some(r) = c.new_rv {
                upsert(
                    &mut l.attributes,
                    "sampling.randomness",
                    Value::StringValue(rvalue(r)),
                );
            }
            if c.clear_th {
                l.attributes.retain(|kv| kv.key != "sampling.threshold");
            }
            if sampled {
                if let Some(t) = c.new_th {
                    // A threshold lower than the one the record arrived with would claim more
                    // than it stands for: the arriving one stays (otelcol logs it).
                    let keep_old = c.th.is_some_and(|old| t < old) && !c.clear_th;
                    match t.tvalue() {
                        Some(tv) if !keep_old => upsert(
                            &mut l.attributes,
                            "sampling.threshold",
                            Value::StringValue(tv),
                        ),
                        _ => {}
                    }
                }
            }
        }
        sampled
    }

    fn spans(&self, mut batch: Vec<ResourceSpans>) -> Vec<ResourceSpans> {
        for rs in batch.iter_mut() {
            for ss in rs.scope_spans.iter_mut() {
                ss.spans.retain_mut(|s| self.keep_span(s));
            }
            rs.scope_spans.retain(|ss| !ss.spans.is_empty());
        }
        batch.retain(|rs| !rs.scope_spans.is_empty());
        batch
    }

    fn logs(&self, mut batch: Vec<ResourceLogs>) -> Vec<ResourceLogs> {
        for rl in batch.iter_mut() {
            for sl in rl.scope_logs.iter_mut() {
                sl.log_records.retain_mut(|l| self.keep_log(l));
            }
            rl.scope_logs.retain(|sl| !sl.log_records.is_empty());
        }
        batch.retain(|rl| !rl.scope_logs.is_empty());
        batch
    }
}

/// Writes a kept span's randomness and threshold into its tracestate.
fn write_tracestate(c: &Carrier, ts: &mut TraceState) {
    if let Some(r) = c.new_rv {
        ts.rv = Some((rvalue(r), r));
    }
    if c.clear_th {
        ts.th = None;
    }
    if let Some(t) = c.new_th {
        match t.tvalue() {
            None => ts.th = None,
            // An arriving threshold above the new one stays: it was sampled at a lower probability.
            Some(_) if ts.th.as_ref().is_some_and(|(_, old)| *old > t) => {}
            Some(tv) => ts.th = Some((tv, t)),
        }
    }
}

impl Component for ProbabilisticSampler {}

#[async_trait]
impl Consumer for ProbabilisticSampler {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        self.obs.incoming(data.item_count());
        let out = match data {
            Telemetry::Traces(t) => Telemetry::Traces(self.spans(t)),
            Telemetry::Logs(l) => Telemetry::Logs(self.logs(l)),
            other => other,
        };
        let n = out.item_count();
        self.obs.outgoing(n);
        if n == 0 {
            // otelcol skips an emptied batch instead of sending it on.
            return Ok(());
        }
        self.next.consume(out).await
    }
}

#[cfg(test)]
#[path = "probabilistic_sampler_tests.rs"]
mod tests;
