//! Streaming anomaly detection on one numeric series: a causal, bounded-memory ensemble that scores each
//! point as it arrives. The pipeline's `anomalydetection` connector and `vigil eval nab` call the same
//! [`SeriesDetector`], so what NAB scores is what runs on a node.
//!
//! The ensemble has these parts:
//! - a robust baseline: an EWMA level with Huber-clipped updates and an EWMA of clipped absolute residuals
//!   as the scale, so one spike moves neither;
//! - a seasonal profile once a period is found: candidate periods from `augurs` (Welch periodogram),
//!   refined by autocorrelation and accepted only if an MSTL decomposition shows a strong seasonal part;
//!   if the first 768 points show none, one more search over means of 4 points (3,072 points, so a day
//!   at one-minute data or a cycle that two or three days did not show), judged on ranks so that bursts
//!   do not hide the daily swing of the bulk of the values; near a one-phase peak or dip of the profile
//!   (a periodic job) a point is judged against the span of the offsets one point either side, so a
//!   run that slips by a point or is skipped is not an outlier ([`Tuning::season_slip`]);
//! - six cues on the residual: its size in the series' own units (an outlier), its size once the
//!   series' own lag-1 autocorrelation of residuals has predicted part of it (an onset on a smooth
//!   series), a short EWMA of its standardised size (a deviation that lasts), a two-sided CUSUM for
//!   level shifts (which re-anchors the level so that a shift is reported once), a short-over-long
//!   scale ratio for variance changes, and, one point late, how sharply the last point stood out from
//!   its two neighbours (a spike no larger than the series' slow swings);
//! - a slower time scale: the mean of the last [`Tuning::coarse_k`] points (of the deseasonalised
//!   value) against a baseline that follows such means far more slowly than the per-point level follows
//!   points, scored every `coarse_k / coarse_hops` points (8), only when it reaches the margin and the
//!   per-point cues are quiet. A drift or a day of unusual demand, which the per-point level absorbs
//!   within a few dozen points, moves that mean away from it.
//! - on a count (a series whose values have all been non-negative integers: tweets, requests) that is
//!   dispersed as arrivals are (in units of its grid, the spread of its residuals at least half its
//!   level: [`Tuning::burst_fano`]; an integer KPI with a spread of a unit or two at a level of tens is
//!   not), a ring of each of the last 7 days' largest rise: a rise that most of those days matched is
//!   the count's ordinary traffic and its per-point cues count for less ([`Tuning::burst_damp`]);
//! - on a series recorded in coarse steps (every change so far a whole number of the smallest one, the
//!   values spanning 2 to 10,000 of them), a scale never below a quarter of that step
//!   ([`Tuning::step_floor`]): between its blips a resting quantised metric's scale would otherwise
//!   shrink towards zero and a one-step blip read as a record.
//!
//! The score does not compare a cue with a fixed constant. Each cue is compared with its own largest
//! value on this series over the last few hundred points (a decaying maximum, half-life
//! [`Tuning::peak_half_life`], and a share of a slower one, [`Tuning::slow_weight`]): a point scores
//! [`DEFAULT_THRESHOLD`] when a cue reaches [`Tuning::margin`] times that memory (a level shift
//! [`Tuning::shift_margin`] times it; or a floor in scale units, on a quiet series). This is the idea behind an
//! anomaly *likelihood* (judge a raw score against the series' own recent scores), and it is what lets
//! one threshold serve a flat error ratio and a spiky request count alike. After a detection the score
//! stays just under the threshold for [`Tuning::hold`] points, so that one event is not reported again
//! and again. The constants were chosen by cross-validation over four labelled corpora (BENCHMARKS.md).
//!
//! Memory per series: 416 bytes inline without seasonality (64 of them the slower time scale's, 40 the
//! ring of daily rises, 8 a count's grid, 28 the last value, the range and the resolution); during
//! the period search (up to 3,072 points with the retry), a buffer of [`DetectorConfig::season_buffer`]
//! 8-bit samples (768 B by default), released once the search ends; with a period `p`, one season of
//! `f32` offsets (`4·p` bytes, 1.1 KiB for daily 5-minute data; a period found by the retry keeps one
//! offset per 4 points, `p` bytes).

mod burst;
mod coarse;
mod episode;
mod seasonal;
mod set;

pub use episode::{
    Episode, EpisodeConfig, EpisodeEvent, EpisodeTracker, DEFAULT_CONFIRM_POINTS,
    DEFAULT_SHIFTED_POINTS,
};
pub use seasonal::detect_period;
pub use set::{SeriesSet, SeriesSetConfig, SeriesSetStats, TrackedSeries, EVICT_SHARE};

/// The score at or above which a point is anomalous by default: a cue at [`Tuning::margin`] times its
/// recent maximum on the series. The reported band is where the outlier cue stays below it.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// Which part of the ensemble gave a point its score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// Nothing stood out.
    None,
    /// Still in warm-up: the point is learnt from but not scored.
    Warmup,
    /// The value is far from the robust level.
    Outlier,
    /// The value is far from the seasonal expectation for this time of the cycle.
    Seasonal,
    /// The level moved and stayed moved (CUSUM).
    LevelShift,
    /// The spread of the residuals changed.
    VarianceChange,
    /// The point before this one stood sharply apart from both its neighbours (the spike cue scores a
    /// point one step late).
    Spike,
}

impl Part {
    /// The name used in `vigil.anomaly.detector`.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::None => "none",
            Part::Warmup => "warmup",
            Part::Outlier => "outlier",
            Part::Seasonal => "seasonal",
            Part::LevelShift => "level_shift",
            Part::VarianceChange => "variance_change",
            Part::Spike => "spike",
        }
    }
}

/// What the detector concluded about one point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Anomaly score in [0, 1]; compare with [`DEFAULT_THRESHOLD`].
    pub score: f64,
    /// The value the baseline expected.
    pub expected: f64,
    /// Lower edge of the expected band.
    pub lower: f64,
    /// Upper edge of the expected band.
    pub upper: f64,
    /// The part of the ensemble that gave the score.
    pub part: Part,
}

/// Settings of a [`SeriesDetector`]. The defaults need no tuning.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// Points learnt from before any is scored (the probationary period).
    pub warmup: u32,
    /// Look for a seasonal period at all.
    pub seasonality: bool,
    /// The most points kept while looking for a period; periods up to half of this can be found. The
    /// search runs at 576 points (two days of 5-minute data) and again at 768: on the four development
    /// corpora a longer buffer (1,152, two more searches) found one more period, a spurious one, for
    /// 384 more bytes per series while it searches (BENCHMARKS.md). If neither finds one, the same
    /// buffer is refilled with means of [`Tuning::season_retry`] points for one more search.
    /// At most 65,535.
    pub season_buffer: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            warmup: 30,
            seasonality: true,
            season_buffer: 768,
        }
    }
}

// Smoothing constants. They are rates per point.
const SHORT_BETA: f64 = 0.1;
// Residuals are clipped at this many scale units before they update the level and scale (Huber).
const CLIP: f64 = 3.0;
// CUSUM allowance, in scale units.
const CUSUM_K: f64 = 1.0;
const RECENT: usize = 8;
// Cues: outlier, level shift, variance change, lasting deviation, autoregressive outlier, spike.
const CUES: usize = 6;

/// Constants of the score, exposed only so that the cross-validation example can vary them; the pipeline
/// and `vigil eval` use [`DEFAULT_TUNING`].
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// Half-life, in points, of each cue's memory of its largest recent value.
    pub peak_half_life: f64,
    /// Smallest memory of the outlier cue (the absolute residual), in scale units (mean absolute
    /// deviations).
    pub outlier_floor: f64,
    /// Every floor but the level-shift cue's is this many times higher while the series is young (fewer
    /// scored points than `peak_half_life`): until the memories have seen a half-life of data they
    /// underestimate the tail, and a series that has been exactly flat (an error ratio) makes every first
    /// blip look huge.
    pub early_factor: f64,
    /// Smallest memory of the level-shift cue, in scale units of the move.
    pub shift_floor: f64,
    /// Smallest memory of the variance cue, in doublings of the residual spread.
    pub var_floor: f64,
    /// A cue scores [`DEFAULT_THRESHOLD`] at this multiple of its memory.
    pub margin: f64,
    /// Steepness of the score around the margin.
    pub power: f64,
    /// Points after a score reaches the default threshold during which scores stay below it.
    pub hold: f64,
    /// Smoothing rate of the sustained-deviation cue (an EWMA of the absolute standardised residual).
    pub smooth_alpha: f64,
    /// Smallest memory of the sustained-deviation cue, in scale units.
    pub smooth_floor: f64,
    /// Each point adds at most this many scale units to the sustained-deviation cue, so that a few
    /// blips on a series that is mostly flat (whose scale is tiny) do not add up to a lasting shift.
    pub smooth_clip: f64,
    /// The outlier cue's margin once a seasonal period is found (cross-validation step 24; equal to
    /// `margin` in the shipped constants).
    pub seasonal_margin: f64,
    /// The level-shift cue scores [`DEFAULT_THRESHOLD`] at this multiple of its memory (every other cue
    /// at `margin`). A CUSUM decision already carries its own evidence (a run worth `cusum_h` scale
    /// units), so a shift need not outgrow the last one to be reported; it needs to be about as large
    /// (cross-validation step 41).
    pub shift_margin: f64,
    /// Rate, per season, at which each phase's seasonal offset follows the (clipped) residual.
    pub season_gamma: f64,
    /// Half-life of a second, longer memory of each cue's largest value.
    pub slow_half_life: f64,
    /// Weight of the long memory: a cue is judged against the larger of its short memory and this
    /// share of its long one, so that a heavy-tailed series, whose records keep growing, needs more.
    pub slow_weight: f64,
    /// Weight of the one-step autoregressive correction in the fifth cue's expectation (0 turns the cue
    /// off): the last residual times the series' own lag-1 autocorrelation of residuals, estimated
    /// online at `scale_beta` per point (cross-validation step 29).
    pub ar_weight: f64,
    /// 1 turns the spike cue on, 0 off: how far the last residual stood from the mean of its two
    /// neighbours (the one before it and this point's), against its own spread and memory, combined
    /// with how large an outlier that point was (cross-validation step 47).
    pub spike_weight: f64,
    /// The spike cue's floor, in multiples of `outlier_floor` in the cue's own spread.
    pub spike_floor: f64,
    /// 1: the autoregressive cue's statistics (lag-1 covariance, variance, mean and spread) do not learn
    /// during the hold after a detection, so that an anomaly's own dynamics do not become the series'
    /// (0 off; cross-validation step 89: held out +2.0 / +1.5 summed over the corpora, nearly all of it
    /// one asd window, and the NAB category folds -0.03 on average, so not shipped).
    pub ar_freeze: f64,

    /// Rate per point at which the level follows the (clipped) data.
    pub level_alpha: f64,
    /// Rate per point at which the scale follows the (clipped) absolute residuals.
    pub scale_beta: f64,
    /// CUSUM decision interval, in scale units.
    pub cusum_h: f64,

    /// Points per block of the coarse time scale (0 or 1 turns it off): block means of the
    /// deseasonalised value against a slow baseline of their own, scored on the point that closes a block
    /// (cross-validation steps 71 to 79: 32 chosen by every corpus fold; 16, 48 and 64 each cost some
    /// corpus).
    pub coarse_k: f64,
    /// The coarse cue scores [`DEFAULT_THRESHOLD`] at this multiple of its memory. A block mean averages
    /// away the per-point noise, so a new record of its wander is already news: 1.0, below the per-point
    /// cues' 1.25 (at 1.25 the cue costs NAB more than it finds, step 71).
    pub coarse_margin: f64,
    /// Smallest memory of the coarse cue, in its own scale units (step 76; 4 would keep the rate of
    /// detections on white noise near what it was without the cue, but loses NAB categories held out:
    /// `coarse_noise_floor` does that instead).
    pub coarse_floor: f64,
    /// A second floor of the coarse cue, in per-point scale units over the square root of `coarse_k`:
    /// the spread that the per-point noise alone gives a block mean. Where the block means wander no
    /// more than the noise explains, a new record of that wander is noise, not news; where they wander
    /// more (a drift, a slow swing), `coarse_floor` is the larger and this one changes nothing
    /// (cross-validation step 101: 5, the smallest value at which white noise scores over the threshold
    /// no more often than without the coarse cue, 12.1 points per 10,000 against 17.1; no corpus moves
    /// by more than 0.1).
    pub coarse_noise_floor: f64,
    /// Rate per block at which the coarse baseline follows the (clipped) block means.
    pub coarse_alpha: f64,
    /// Rate per block at which the coarse scale follows the (clipped) absolute block residuals.
    pub coarse_beta: f64,
    /// Smallest half-life, in blocks, of the coarse cue's memory (100 since step 122: scored every hop,
    /// at 50 it forgets too soon and NAB loses 1.2).
    pub coarse_min_half_life: f64,
    /// Blocks learnt from (a running mean and mean absolute deviation) before the coarse cue scores,
    /// again after a period is found: the spread of a handful of block means is too rough to judge by
    /// (step 79b).
    pub coarse_warmup: f64,
    /// Scores per block (1, 2 or 4): with `h` hops the coarse cue scores the mean of the last
    /// `coarse_k` points every `coarse_k / h` points, rates and half-lives per hop scaled to keep their
    /// time in points, so that where block boundaries fall does not matter (steps 108 to 115; 4 since
    /// step 122: with one hop, shifting the blocks by 8 to 24 points moved NAB by up to 2.7 points).
    pub coarse_hops: f64,
    /// Diagnosis only: the first `coarse_offset` points after a reset are left out of the coarse scale,
    /// shifting where its block boundaries fall (steps 107 and 112 to 115).
    pub coarse_offset: f64,
    /// The coarse cue counts only at or over this multiple of the margin (0: always; step 110; 1 since
    /// step 122): its near misses would otherwise crowd the scores under the threshold.
    pub coarse_gate: f64,
    /// The coarse cue counts only while the per-point cues' best ratio is under this multiple of the
    /// margin (0: always): a window that closes while a per-point cue already speaks adds a second
    /// report of the same event, not a new one (steps 118 and 121).
    pub coarse_quiet: f64,
    /// Blocks after the coarse warm-up during which its floors are raised by `early_factor` (0: as many
    /// as its memory's half-life). Tied to a half-life of 100 blocks the young period covered most of a
    /// 5,000-point series and hid a second anomaly under the doubled floor (step 122).
    pub coarse_young: f64,
    /// 1: the period search judges candidates on the ranks of its buffer; 2: only the retry does (0 off).
    /// On ranks a few bursts cannot hide a daily swing of the bulk of the values (tweet volumes); on the
    /// first search ranks found a spurious period on an asd series (cross-validation steps 136 to 145:
    /// 1 cost asd 4.4, 2 is shipped).
    pub season_rank: f64,
    /// After a failed period search, one more over means of this many points (0 off): a buffer of 768
    /// such means spans 3,072 points, so a daily period at one-minute data (1,440 points) or one that two
    /// or three days of 5-minute data did not show can still be found; the profile then holds one offset
    /// per `season_retry` points (cross-validation steps 136 to 145: 4 shipped; 2 and 8 lost).
    pub season_retry: f64,
    /// On a series whose values so far are all non-negative integers (a count), a rise above the
    /// expected value is matched by a day whose largest rise reached this share of it (0 turns the
    /// damping off; cross-validation steps 166 to 175).
    pub burst_share: f64,
    /// A rise matched by at least this many of the last 7 days is the count's ordinary traffic...
    pub burst_days: f64,
    /// ... and its per-point cues count this many times their ratio (1: no damping).
    pub burst_damp: f64,
    /// The damping also needs the count to be at least this dispersed (0: no such gate): the residuals'
    /// variance (pi / 2 times the square of their mean absolute deviation) at least this many times the
    /// level. Arrivals (tweets, requests) are at least Poisson-dispersed, variance = level; an integer
    /// KPI (a rounded percentage, a quantised gauge) with a spread of a unit or two at a level of tens
    /// is not, and the corpora that record such metrics label every repeated burst (cross-validation
    /// steps 226 to 231: 0.5, fixed before scoring; rounded aiops18-kpi 41.0 -> 51.2 at the default,
    /// NAB -0.1 / -0.2).
    pub burst_fano: f64,
    /// 1: the dispersion is judged in units of the count's grid (the greatest common divisor of its
    /// steps), so a count recorded times k is judged as the count and a two-decimal KPI times 1,000 as
    /// a KPI in steps of 10; 0: in the series' own units (cross-validation steps 227 and 228).
    pub burst_grid: f64,
    /// A periodic job's run slips by a point or is skipped: where the seasonal profile has a sharp peak
    /// or dip (an offset beyond both neighbouring offsets by more than this share of the outlier band's
    /// half-width) at the current phase or one point either side, the point is judged against the span
    /// of the offsets of those three phases, not the current one alone (0 off; cross-validation steps
    /// 200 to 202: 0.75).
    pub season_slip: f64,
    /// The scale is never below this many times the series' resolution, the smallest non-zero step
    /// between consecutive values seen so far (0 off). A series recorded in steps of q (a scaled count,
    /// a rounded percentage) has no spread finer than its rounding; between its blips its scale would
    /// otherwise shrink towards zero and every one-step blip look like a record (smd's `machine-2-2`,
    /// 98 % zeros). Only while every step so far was a whole number of q (to 1 %) and the values span
    /// more than 1.5 and fewer than 10,000 steps: a two-level series (an on/off signal, NAB's
    /// `art_increase_spike_density`) has its signal in that one step, and a series spanning more steps
    /// is effectively continuous. Cross-validation steps 183 to 191: 0.25, a quarter of a step, the
    /// mean absolute rounding error (0.5 scored smd 1.0 higher but cost a 0-10 count version of
    /// aiops18-kpi 13.8 points, step 188).
    pub step_floor: f64,
    /// The resolution floor applies only while the values span more than this many steps (1.5: a
    /// two-level series, whose one step is its signal, is left alone; steps 185 to 189).
    pub step_span: f64,
}

/// The shipped constants, chosen by the cross-validation in BENCHMARKS.md.
#[doc(hidden)]
pub static DEFAULT_TUNING: Tuning = Tuning {
    peak_half_life: 500.0,
    outlier_floor: 3.0,
    early_factor: 2.0,
    shift_floor: 4.0,
    var_floor: 2.0,
    margin: 1.25,
    power: 8.0,
    hold: 60.0,
    smooth_alpha: 0.3,
    smooth_floor: 4.0,
    smooth_clip: 12.0,
    seasonal_margin: 1.25,
    shift_margin: 0.875,
    season_gamma: 0.1,
    slow_half_life: 10000.0,
    slow_weight: 0.4,
    ar_weight: 1.0,
    spike_weight: 1.0,
    spike_floor: 1.5,
    ar_freeze: 0.0,
    level_alpha: 0.05,
    scale_beta: 0.01,
    cusum_h: 12.0,
    coarse_k: 32.0,
    coarse_margin: 1.0,
    coarse_floor: 3.0,
    coarse_noise_floor: 5.0,
    coarse_alpha: 0.1,
    coarse_beta: 0.05,
    coarse_min_half_life: 100.0,
    coarse_warmup: 16.0,
    coarse_hops: 4.0,
    coarse_offset: 0.0,
    coarse_gate: 1.0,
    coarse_quiet: 0.3,
    coarse_young: 50.0,
    season_rank: 2.0,
    season_retry: 4.0,
    burst_share: 0.3,
    burst_days: 4.0,
    burst_damp: 0.8,
    burst_fano: 0.5,
    burst_grid: 1.0,
    season_slip: 0.75,
    step_floor: 0.25,
    step_span: 1.5,
};

/// A streaming detector for one series. Feed points with [`SeriesDetector::observe`], in time order where
/// the source allows; a point whose timestamp repeats or steps back is scored as the next sample (the
/// latest point sent again, same timestamp and value, at the same seasonal phase) and counted
/// ([`SeriesDetector::out_of_order`]).
#[derive(Debug, Clone)]
pub struct SeriesDetector {
    tuning: &'static Tuning,
    config_warmup: u32,
    out_of_order: u32,
    // Points seen, saturating (at 4.3e9: 136 years at one point a second; only the warm-up and the young
    // period read it). The ring of recent values has its own wrapping position.
    seen: u32,
    recent_at: u8,
    last_t: f64,
    // Seconds; f32 keeps the struct small and still resolves a millisecond interval.
    interval: f32,
    // Gaps the interval is the mean of (saturating: then a slow moving average).
    intervals: u16,
    level: f64,
    scale: f64,
    // The short scale is only compared with the long one, and the CUSUMs are in scale units below
    // `cusum_h` plus a clipped step: f32 holds both without loss that matters, in fewer bytes per series.
    short_scale: f32,
    cusum_pos: f32,
    cusum_neg: f32,
    // Each cue's largest recent value (see CUES), decaying with `peak_half_life`.
    peaks: [f32; CUES],
    slow_peaks: [f32; CUES],
    // EWMA of the absolute standardised residual: a deviation too small for one point that lasts.
    smooth: f32,
    // Points left in the hold after a detection.
    hold: u16,
    // For the autoregressive cue: the last clipped residual's deviation from their running mean, the
    // running lag-1 covariance and variance of those deviations, and the spread of the corrected residual.
    last_dev: f32,
    ar_cov: f32,
    ar_var: f32,
    ar_mean: f32,
    ar_scale: f32,
    // For the spike cue: the last two residuals, the spread of the cue (a second difference of residuals)
    // and the last point's outlier ratio.
    r1: f32,
    r2: f32,
    spike_scale: f32,
    q_prev: f32,
    // The last value and the smallest non-zero step between consecutive values (the series'
    // resolution; infinite until two values differ). The values and their range are f64: in f32 a
    // series near 1e6 would keep only steps of 1/16 and look quantised; the step is compared with the
    // scale only.
    last_value: f64,
    resolution: f32,
    // Whether every step so far was a whole number of `resolution` (a quantised series).
    on_grid: bool,
    min_value: f64,
    max_value: f64,
    // Whether a value below zero was seen: if not, the band does not reach below zero.
    ever_negative: bool,
    // Whether a value below zero or with a fraction was seen: if not, the series is a count.
    ever_fraction: bool,
    // The greatest common divisor of the steps between consecutive values while they are all integers
    // (0 before the first step): a count's unit.
    count_grid: f64,
    recent: [f64; RECENT],
    season: seasonal::Season,
    coarse: coarse::Coarse,
    burst: burst::BurstDays,
}

impl Default for SeriesDetector {
    fn default() -> Self {
        Self::new(&DetectorConfig::default())
    }
}

impl SeriesDetector {
    /// A detector with the given settings.
    pub fn new(config: &DetectorConfig) -> Self {
        Self::with_tuning(config, &DEFAULT_TUNING)
    }

    /// A detector with other score constants (cross-validation only).
    #[doc(hidden)]
    pub fn with_tuning(config: &DetectorConfig, tuning: &'static Tuning) -> Self {
        Self {
            tuning,
            config_warmup: config.warmup.max(2),
            out_of_order: 0,
            seen: 0,
            recent_at: 0,
            last_t: f64::NAN,
            interval: f32::NAN,
            intervals: 0,
            level: 0.0,
            scale: 0.0,
            short_scale: 0.0,
            cusum_pos: 0.0,
            cusum_neg: 0.0,
            peaks: [0.0; CUES],
            slow_peaks: [0.0; CUES],
            smooth: 0.0,
            hold: 0,
            last_dev: 0.0,
            ar_cov: 0.0,
            ar_var: 0.0,
            ar_mean: 0.0,
            ar_scale: 0.0,
            r1: 0.0,
            r2: 0.0,
            spike_scale: 0.0,
            q_prev: 0.0,
            last_value: f64::NAN,
            resolution: f32::INFINITY,
            on_grid: true,
            min_value: f64::INFINITY,
            max_value: f64::NEG_INFINITY,
            ever_negative: false,
            ever_fraction: false,
            count_grid: 0.0,
            recent: [0.0; RECENT],
            season: seasonal::Season::new(config),
            coarse: coarse::Coarse::new(),
            burst: burst::BurstDays::new(),
        }
    }

    /// Points seen so far.
    pub fn points(&self) -> u64 {
        u64::from(self.seen)
    }

    /// Whether the series is still learning its baseline: its points are not scored yet.
    pub fn warming_up(&self) -> bool {
        self.seen <= self.config_warmup
    }

    /// Points whose timestamp repeated or stepped back from the latest one seen.
    pub fn out_of_order(&self) -> u32 {
        self.out_of_order
    }

    /// The detected seasonal period in points, once one is found.
    pub fn period(&self) -> Option<usize> {
        self.season.period()
    }

    /// Approximate heap and inline bytes held by this detector.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.season.heap_bytes()
    }

    // A scale floor keeps constant series from dividing by zero while still flagging any change on them;
    // on a series recorded in coarse steps it is a share of the step (`Tuning::step_floor`). It is a
    // share of the range seen, not of the level, so that an offset does not change the score (at a
    // millionth of the level, a [0, 1] metric plus 1e6 had a floor as wide as its range); the share of
    // the level is only f64's rounding of it, and the last term keeps a series that is exactly 0 from
    // dividing by zero.
    fn floor(&self) -> f64 {
        let span = self.max_value - self.min_value;
        let f = (span * 1e-6).max(self.level.abs() * 1e-12).max(1e-20);
        let resolution = f64::from(self.resolution);
        if self.tuning.step_floor > 0.0
            && self.on_grid
            && span > self.tuning.step_span * resolution
            && span < 1e4 * resolution
        {
            f.max(self.tuning.step_floor * resolution)
        } else {
            f
        }
    }

    // Maps a cue's value against its memory into [0, 1): DEFAULT_THRESHOLD at `margin` times the memory.
    fn calibrate(&self, ratio: f64) -> f64 {
        let x = (ratio / self.tuning.margin).powf(self.tuning.power);
        if x.is_finite() {
            x / (1.0 + x)
        } else {
            1.0
        }
    }

    /// Scores one point and learns from it. Gaps in time advance the seasonal phase by the number of
    /// missed intervals (the interval is the mean gap, so jittered timestamps keep the phase); a repeated
    /// or earlier timestamp counts as the next interval, and the latest point sent again (same timestamp
    /// and value) as no time: it is scored and learnt from, at the same seasonal phase. Non-finite values
    /// are ignored (score 0).
    pub fn observe(&mut self, timestamp_secs: f64, value: f64) -> Observation {
        let steps = self.steps(timestamp_secs, value);
        if !value.is_finite() {
            return self.quiet(self.level + self.season.component());
        }
        self.season.advance(steps);
        let mut seasonal = self.season.component();
        if self.seen >= self.config_warmup {
            seasonal = self.slip_tolerant(value, seasonal);
        }
        let deseasonalised = value - seasonal;
        self.recent[usize::from(self.recent_at) % RECENT] = deseasonalised;
        self.recent_at = self.recent_at.wrapping_add(1);
        self.seen = self.seen.saturating_add(1);
        self.ever_negative |= value < 0.0;
        self.ever_fraction |= value < 0.0 || value.fract() != 0.0;
        let exact_step = (value - self.last_value).abs();
        if !self.ever_fraction && exact_step > 0.0 && self.count_grid != 1.0 {
            self.count_grid = gcd(self.count_grid, exact_step);
        }
        let step = exact_step as f32;
        if step > 0.0 && self.on_grid {
            // Each step must be a whole number of the smallest one (to 1 % of the multiple, for values
            // written with a few decimals; a step of 50 or more passes, saying nothing of the grid): a
            // continuous series leaves the grid at once and keeps only the fixed floor.
            let (small, large) = if step < self.resolution {
                (step, self.resolution)
            } else {
                (self.resolution, step)
            };
            if large.is_finite() {
                let m = large / small;
                self.on_grid = (m - m.round()).abs() <= 0.01 * m.max(1.0);
            }
            self.resolution = small;
        }
        self.last_value = value;
        self.min_value = self.min_value.min(value);
        self.max_value = self.max_value.max(value);

        if self.seen <= self.config_warmup {
            self.learn_warmup(deseasonalised);
            if steps > 0 {
                if let Some(reset) = self.season.push(value, self.search_mode()) {
                    self.rebase(reset);
                }
            }
            let mut o = self.quiet(self.level + seasonal);
            self.burst
                .push(timestamp_secs, value - o.expected, self.tuning.burst_share);
            o.part = Part::Warmup;
            return o;
        }

        let t = self.tuning;
        let expected = self.level + seasonal;
        let s = self.scale.max(self.floor());
        let r = value - expected;
        let z = r / s;
        // Residuals of a smooth series are autocorrelated (a busy afternoon stays busy for a while), so
        // an onset hides in the spread that slow swings give the plain residual. A fifth cue judges the
        // part of the residual that the last one did not announce, against its own smaller spread.
        let phi = if self.ar_var > 0.0 {
            f64::from(self.ar_cov / self.ar_var).clamp(0.0, 0.95)
        } else {
            0.0
        };
        // After `steps` intervals (missed points) an AR(1) deviation keeps phi^steps of itself, and the
        // spread of what it does not predict is the k-step forecast error's, sqrt(1 + phi^2 + ... +
        // phi^(2(k-1))) times the one-step spread: judged as one step, the first point after a gap
        // looked like news (CV step 236).
        let (phi_k, widen) = if steps == 1 {
            (phi, 1.0)
        } else {
            let p2 = phi * phi;
            let k = steps.max(1) as i32;
            (
                phi.powi(steps as i32),
                ((1.0 - p2.powi(k)) / (1.0 - p2)).sqrt(),
            )
        };
        let r_ar = r - t.ar_weight * phi_k * f64::from(self.last_dev);
        let s_ar = if self.ar_scale > 0.0 {
            (widen * f64::from(self.ar_scale)).max(self.floor())
        } else {
            s
        };

        // Variance change: a short-memory scale against the long one. The short one clips more loosely
        // so that the ratio can reach well past the long scale's clip, yet a single spike moves it little.
        let abs_r = r.abs();
        let matched = self.burst.push(timestamp_secs, r, t.burst_share);
        let clipped = abs_r.min(CLIP * s);
        let short_scale = f64::from(self.short_scale);
        let short_scale = short_scale + SHORT_BETA * (abs_r.min(2.0 * CLIP * s) - short_scale);
        self.short_scale = short_scale as f32;
        let ratio = short_scale / s;

        let zc = z.clamp(-CLIP, CLIP);
        let cusum_pos = (f64::from(self.cusum_pos) + zc - CUSUM_K).max(0.0);
        let cusum_neg = (f64::from(self.cusum_neg) - zc - CUSUM_K).max(0.0);
        self.cusum_pos = cusum_pos as f32;
        self.cusum_neg = cusum_neg as f32;
        let cusum = cusum_pos.max(cusum_neg);
        // A level shift is decided once, when the CUSUM crosses its interval; its size is then the move,
        // so slow drifts (many small re-anchorings) stay small.
        let reanchor = (cusum > self.tuning.cusum_h).then(|| {
            let mut sorted = self.recent;
            sorted.sort_unstable_by(f64::total_cmp);
            0.5 * (sorted[RECENT / 2 - 1] + sorted[RECENT / 2])
        });
        let shift = match reanchor {
            Some(new_level) => (new_level - self.level).abs() / s,
            None => 0.0,
        };
        let var = if ratio > 1.0 { ratio.log2() } else { 0.0 };

        // Each cue is judged against its own recent history on this series: what makes one threshold
        // work on series as different as a flat error ratio and a spiky request count.
        let smooth = if t.smooth_alpha > 0.0 {
            let x = f64::from(self.smooth)
                + t.smooth_alpha * (z.abs().min(t.smooth_clip) - f64::from(self.smooth));
            self.smooth = x as f32;
            x
        } else {
            0.0
        };
        // The outlier cue and its memory are residuals in the series' own units, not in scale units:
        // on a series of rare blips (an error ratio that is mostly 0) the scale shrinks between blips,
        // and a blip like the last would otherwise look ever larger.
        let ar_cue = if t.ar_weight > 0.0 { r_ar.abs() } else { 0.0 };
        // A single-point spike on a smooth series can be no larger than the series' slow swings away
        // from its expectation, yet it is sharp: it rises and falls back at once. One point late, the
        // last residual's distance from the mean of its two neighbours (a second difference, which
        // slow swings hardly move) tells a spike from a swing.
        let spike = if t.spike_weight > 0.0 {
            (f64::from(self.r1) - 0.5 * (f64::from(self.r2) + r)).abs()
        } else {
            0.0
        };
        let s_spike = if self.spike_scale > 0.0 {
            f64::from(self.spike_scale).max(self.floor())
        } else {
            s
        };
        let cues = [abs_r, shift, var, smooth, ar_cue, spike];
        let young = f64::from(self.seen - self.config_warmup) < t.peak_half_life;
        let f = if young { t.early_factor.max(1.0) } else { 1.0 };
        // The level-shift floor is not raised while young: the CUSUM already needs `cusum_h` scale units
        // of evidence, and a shift early in a series' life is as real as a later one (cross-validation
        // step 33: the higher floor cost short NAB files their early shifts, and no corpus gained).
        let floors = [
            f * t.outlier_floor * s,
            t.shift_floor,
            f * t.var_floor,
            f * t.smooth_floor,
            f * t.outlier_floor * s_ar,
            f * t.outlier_floor * t.spike_floor * s_spike,
        ];
        const PARTS: [Part; CUES] = [
            Part::Outlier,
            Part::LevelShift,
            Part::VarianceChange,
            Part::LevelShift,
            Part::Outlier,
            Part::Spike,
        ];
        let memory = |i: usize| {
            f64::from(self.peaks[i])
                .max(t.slow_weight * f64::from(self.slow_peaks[i]))
                .max(floors[i])
        };
        let mut best = (0.0, Part::None);
        let seasonal_boost = if self.season.period().is_some() {
            t.margin / t.seasonal_margin
        } else {
            1.0
        };
        let mut q_out = 0.0f64;
        for (i, (&cue, &part)) in cues.iter().zip(&PARTS).enumerate() {
            let mut q = cue / memory(i);
            if i == 0 || i == 4 {
                q_out = q_out.max(q * seasonal_boost);
            }
            if i == 5 {
                // Sharpness alone fires on every noisy series; the spike counts by the geometric mean
                // of how sharp it was and how large an outlier the point was (its outlier ratio one
                // point ago): sharp and nearly as large as the series' recent peaks (step 47).
                q = (q * f64::from(self.q_prev)).sqrt();
            }
            if i == 0 || i == 4 {
                q *= seasonal_boost;
            } else if i == 1 {
                q *= t.margin / t.shift_margin;
            }
            if q > best.0 {
                best = (q, part);
            }
        }
        // A point that reached the margin has been reported: the spike cue must not report it again one
        // point later (in the connector, which has no hold, that second point would confirm a lone
        // blip's episode).
        self.q_prev = if best.0 >= t.margin {
            0.0
        } else {
            q_out as f32
        };
        // A count's bursts come and go: a rise that most days of the last week matched (each day's
        // largest rise at least `burst_share` of it) is its ordinary traffic, even when a quiet day or
        // two let the memories decay under it (steps 166 to 175). Counts only, and only counts dispersed
        // as arrivals are: where labels mark every repeated spike (the KPI corpora) the same damping
        // loses them, and a KPI may be integer-valued (steps 226 to 231).
        if t.burst_share > 0.0
            && !self.ever_fraction
            && matched as f64 >= t.burst_days
            && self.dispersed_count(s)
        {
            best.0 *= t.burst_damp;
        }
        // The slower time scale speaks only on the point that closes a block, so a slow event is counted
        // once per block, not on each of its points.
        if let Some(ratio) = self.coarse.push(deseasonalised, t, self.floor(), s) {
            let quiet = t.coarse_quiet <= 0.0 || best.0 < t.coarse_quiet * t.margin;
            if ratio > best.0 && ratio >= t.coarse_gate * t.margin && quiet {
                best = (ratio, Part::LevelShift);
            }
        }
        // Half-width of the band: where the outlier cue would reach the margin.
        let half = t.margin / seasonal_boost * memory(0);
        if best.1 == Part::Outlier && self.season.period().is_some() {
            best.1 = Part::Seasonal;
        }
        let mut score = self.calibrate(best.0);
        // NAB, like an operator, counts each repeat outside a window as another false alarm: after a
        // detection, scores stay just under the threshold for a while (still high enough to keep an
        // episode open).
        if self.hold > 0 {
            self.hold -= 1;
            score = score.min(DEFAULT_THRESHOLD * 0.98);
        } else if score >= DEFAULT_THRESHOLD {
            self.hold = t.hold as u16;
        }
        let part = if score < 0.01 { Part::None } else { best.1 };

        // Learn, with clipped residuals so that outliers do not drag the baseline.
        // 1 - ln 2 / h is exp(-ln 2 / h) to within 1e-6 for half-lives of hundreds of points, without an
        // exp per point.
        let decay = 1.0 - std::f64::consts::LN_2 / t.peak_half_life.max(1.0);
        let slow_decay = 1.0 - std::f64::consts::LN_2 / t.slow_half_life.max(1.0);
        for ((peak, slow), &cue) in self.peaks.iter_mut().zip(&mut self.slow_peaks).zip(&cues) {
            *peak = (f64::from(*peak) * decay).max(cue) as f32;
            *slow = (f64::from(*slow) * slow_decay).max(cue) as f32;
        }
        let rc = r.clamp(-CLIP * s, CLIP * s);
        if t.ar_weight > 0.0 {
            let last = f64::from(self.last_dev);
            // Deviations from the residuals' own mean: a trend leaves every residual with the same lag,
            // which is not a correlation between one residual and the next.
            let d = rc - f64::from(self.ar_mean);
            // Only residuals one interval apart are a lag-1 pair.
            if steps == 1 && (t.ar_freeze < 1.0 || self.hold == 0) {
                self.ar_cov += (t.scale_beta * (d * last - f64::from(self.ar_cov))) as f32;
                self.ar_var += (t.scale_beta * (last * last - f64::from(self.ar_var))) as f32;
                self.ar_mean += (t.scale_beta * (rc - f64::from(self.ar_mean))) as f32;
                let a = f64::from(self.ar_scale);
                let a = if a > 0.0 { a } else { s };
                self.ar_scale = (a + t.scale_beta * (r_ar.abs().min(CLIP * a) - a)) as f32;
            }
            self.last_dev = d as f32;
        }
        if t.spike_weight > 0.0 {
            let a = f64::from(self.spike_scale);
            let a = if a > 0.0 { a } else { s };
            self.spike_scale = (a + t.scale_beta * (spike.min(CLIP * a) - a)) as f32;
            self.r2 = self.r1;
            self.r1 = r as f32;
        }
        self.level += t.level_alpha * rc;
        self.season.learn(rc, t.season_gamma);
        self.scale += t.scale_beta * (clipped - self.scale);
        if let Some(new_level) = reanchor {
            // The level moved: re-anchor on the recent points so the shift is reported once, not for as
            // long as it lasts.
            self.level = new_level;
            self.cusum_pos = 0.0;
            self.cusum_neg = 0.0;
            self.last_dev = 0.0;
            self.ar_mean = 0.0;
            self.r1 = 0.0;
            self.r2 = 0.0;
        }
        if steps > 0 {
            if let Some(reset) = self.season.push(value, self.search_mode()) {
                self.rebase(reset);
            }
        }

        let lower = expected - half;
        Observation {
            score,
            expected,
            lower: if !self.ever_negative {
                lower.max(0.0).min(expected)
            } else {
                lower
            },
            upper: expected + half,
            part,
        }
    }

    // Whether the count is at least as dispersed as `Tuning::burst_fano` asks (always, with no gate).
    fn dispersed_count(&self, s: f64) -> bool {
        let t = self.tuning;
        if t.burst_fano <= 0.0 {
            return true;
        }
        let unit = if t.burst_grid > 0.0 && self.count_grid > 0.0 {
            self.count_grid
        } else {
            1.0
        };
        std::f64::consts::FRAC_PI_2 * s * s >= t.burst_fano * self.level.max(0.0) * unit
    }

    fn quiet(&self, expected: f64) -> Observation {
        let t = self.tuning;
        let half = t.margin
            * f64::from(self.peaks[0])
                .max(t.slow_weight * f64::from(self.slow_peaks[0]))
                .max(t.outlier_floor * self.scale.max(self.floor()));
        let lower = expected - half;
        Observation {
            score: 0.0,
            expected,
            lower: if !self.ever_negative {
                lower.max(0.0).min(expected)
            } else {
                lower
            },
            upper: expected + half,
            part: Part::None,
        }
    }

    // A periodic job (an hourly cron run, a twice-hourly burst of traffic) gives the profile a one-phase
    // peak, and the job's run slips by a point now and then or is skipped: scored against the current
    // phase alone, each slip or skip is an outlier as large as the job (NAB's
    // `cpu_utilization_asg_misconfiguration`, 26 false alarms at the default; `ec2_network_in_257a54`).
    // Near such a peak (or dip) the value is judged against the span of the three offsets around it:
    // inside the span it is expected, outside it the residual is from the nearer edge. Smooth profiles
    // (a daily cycle, a steep morning ramp) have no offset beyond both neighbours by that much, so they
    // are judged as before.
    fn slip_tolerant(&self, value: f64, seasonal: f64) -> f64 {
        let t = self.tuning;
        if t.season_slip <= 0.0 || self.season.period().is_none() {
            return seasonal;
        }
        // What a one-point slip must exceed to matter: a share of the outlier band's half-width.
        let limit = t.season_slip
            * t.margin
            * f64::from(self.peaks[0])
                .max(t.slow_weight * f64::from(self.slow_peaks[0]))
                .max(t.outlier_floor * self.scale.max(self.floor()));
        let o = self.season.around();
        let sharp = |j: usize| {
            let (l, m, r) = (o[j - 1], o[j], o[j + 1]);
            (m - l > limit && m - r > limit) || (l - m > limit && r - m > limit)
        };
        if !(sharp(1) || sharp(2) || sharp(3)) {
            return seasonal;
        }
        let lo = o[1].min(o[2]).min(o[3]);
        let hi = o[1].max(o[2]).max(o[3]);
        (value - self.level).clamp(lo, hi)
    }

    // Running mean and mean absolute deviation while warming up.
    fn learn_warmup(&mut self, x: f64) {
        let n = f64::from(self.seen);
        if self.seen == 1 {
            self.level = x;
            self.scale = 0.0;
        } else {
            let d = x - self.level;
            self.level += d / n;
            self.scale += (d.abs() - self.scale) / (n - 1.0);
        }
        self.short_scale = self.scale as f32;
    }

    // A period was just found: the seasonal decomposition gives a fresh level and scale.
    fn search_mode(&self) -> seasonal::SearchMode {
        seasonal::SearchMode {
            rank_first: self.tuning.season_rank == 1.0,
            rank_retry: self.tuning.season_rank > 0.0,
            retry_stride: self.tuning.season_retry.max(0.0) as u32,
        }
    }

    fn rebase(&mut self, reset: seasonal::Rebase) {
        self.level = reset.level;
        if let Some(scale) = reset.scale {
            self.scale = scale;
        }
        self.short_scale = self.scale as f32;
        self.cusum_pos = 0.0;
        self.cusum_neg = 0.0;
        self.recent = [reset.level; RECENT];
        self.last_dev = 0.0;
        self.ar_mean = 0.0;
        self.ar_scale = self.scale as f32;
        self.r1 = 0.0;
        self.r2 = 0.0;
        self.coarse.reset();
    }

    // How many sampling intervals this timestamp is past the latest one seen. A repeated or earlier
    // timestamp (a daylight-saving change, a clock reset, a stuck clock) is counted and taken as the next
    // interval; the latest timestamp stays the reference, so the series is not reset. The exception is
    // the latest point sent again (same timestamp, same value: a retried write, a duplicated row): it is
    // still counted, but it is no time at all, so 0 steps: the seasonal phase stays where it is and the
    // period search does not buffer it twice (1 % of rows sent twice cost 10 to 19 points on three
    // corpora when it moved the phase on; see BENCHMARKS "Invariance to time transforms").
    fn steps(&mut self, t: f64, value: f64) -> u32 {
        let dt = t - self.last_t;
        if dt.is_finite() && dt <= 0.0 {
            self.out_of_order = self.out_of_order.saturating_add(1);
            return u32::from(dt < 0.0 || value != self.last_value);
        }
        if t.is_finite() {
            self.last_t = t;
        }
        if !dt.is_finite() {
            return 1;
        }
        let interval = f64::from(self.interval);
        if !interval.is_finite() || dt < 0.5 * interval {
            // The first gap, or one that rounds to no interval at all (a finer grid): the sampling
            // interval starts again from it, so a series sampled more often settles at once.
            self.interval = dt as f32;
            self.intervals = 1;
            return 1;
        }
        let steps = (dt / interval).round().clamp(1.0, 10_000.0);
        // The interval is the mean gap per step since it was set, not the smallest gap: timestamps
        // jittered by a fifth of the interval leave gaps of 0.6 intervals, and counting from the smallest
        // would read every ordinary gap above 0.9 as two steps and move the seasonal phase on.
        self.intervals = self.intervals.saturating_add(1);
        self.interval += ((dt / steps - interval) / f64::from(self.intervals)) as f32;
        steps as u32
    }
}

#[cfg(test)]
mod tests;

// Euclid's algorithm on whole numbers held in f64 (exact below 2^53); 0 is the identity.
fn gcd(mut a: f64, mut b: f64) -> f64 {
    while b > 0.0 {
        (a, b) = (b, a % b);
    }
    a
}
