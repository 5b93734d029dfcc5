//! Streaming anomaly detection on one numeric series: a causal, bounded-memory ensemble that scores each
//! point as it arrives. The pipeline's `anomalydetection` connector and `vigil eval nab` call the same
//! [`SeriesDetector`], so what NAB scores is what runs on a node.
//!
//! The ensemble has three parts, each measured on NAB before it was kept:
//! - a robust baseline: an EWMA level with Huber-clipped updates and an EWMA of clipped absolute residuals
//!   as the scale, so one spike moves neither;
//! - a seasonal profile once a period is found: candidate periods from `augurs` (Welch periodogram),
//!   refined by autocorrelation and accepted only if an MSTL decomposition shows a strong seasonal part;
//! - a two-sided CUSUM on standardised residuals for level shifts, which also re-anchors the level so that
//!   a shift is reported once instead of for as long as it lasts; and a short-over-long scale ratio for
//!   variance changes.
//!
//! Memory per series: about 200 bytes without seasonality; during the period search, a buffer of
//! [`DetectorConfig::season_buffer`] 16-bit samples (2.3 KiB by default), released once the search ends;
//! with a period `p`, one season of `f32` offsets (`4·p` bytes, 1.1 KiB for daily 5-minute data).

mod episode;
mod seasonal;
mod set;

pub use episode::{Episode, EpisodeConfig, EpisodeEvent, EpisodeTracker, DEFAULT_CONFIRM_POINTS};
pub use seasonal::detect_period;
pub use set::{SeriesSet, SeriesSetConfig, SeriesSetStats, TrackedSeries};

/// The score at or above which a point is anomalous by default. Scores are calibrated so that this sits at
/// about [`BAND_Z`] scale units from the expected value.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// Half-width of the reported expected band, in scale units (mean absolute deviations of the residual).
pub const BAND_Z: f64 = 40.0;

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
    /// The most points kept while looking for a period; periods up to a third of this can be found.
    pub season_buffer: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            warmup: 30,
            seasonality: true,
            season_buffer: 1152,
        }
    }
}

// Smoothing constants. They are rates per point, chosen once on NAB as a whole (never per file).
const LEVEL_ALPHA: f64 = 0.05;
const SCALE_BETA: f64 = 0.01;
const SHORT_BETA: f64 = 0.1;
// Residuals are clipped at this many scale units before they update the level and scale (Huber).
const CLIP: f64 = 3.0;
// CUSUM allowance and decision interval, in scale units.
const CUSUM_K: f64 = 1.0;
const CUSUM_H: f64 = 12.0;
// Severity of a decided level shift per scale unit of the move (a move of 8 units reaches BAND_Z), and of
// a variance change per doubling of the residual spread. Both are on the same scale-unit footing as an outlier's distance.
const SHIFT_SEV_PER_SCALE: f64 = 5.0;
const VAR_SEV_PER_DOUBLING: f64 = BAND_Z / 2.0;
// Steepness of the score calibration around BAND_Z.
const SCORE_POWER: f64 = 4.0;
const RECENT: usize = 8;
// The recent-extreme tracker forgets at this rate per point (half-life of about 35 points).
const EXTREME_DECAY: f64 = 0.995;
// An outlier's severity is capped at this many scale units per multiple of the recent extreme residual,
// so a value only as far out as recent ones (a series that is always spiky) does not score.
const EXTREME_SEV: f64 = 8.0;
// How fast the memory of a point beyond the recent extremes fades (about 7 points to halve).
const BURST_DECAY: f64 = 0.9;

/// A streaming detector for one series. Feed points in time order with [`SeriesDetector::observe`].
#[derive(Debug, Clone)]
pub struct SeriesDetector {
    config_warmup: u32,
    seen: u64,
    last_t: f64,
    interval: f64,
    level: f64,
    scale: f64,
    short_scale: f64,
    cusum_pos: f64,
    cusum_neg: f64,
    extreme: f64,
    burst: f64,
    recent: [f64; RECENT],
    season: seasonal::Season,
}

impl Default for SeriesDetector {
    fn default() -> Self {
        Self::new(&DetectorConfig::default())
    }
}

// A log-logistic map of severity (scale units) into [0, 1): 0.5 at BAND_Z. It approaches 1 slowly enough
// that very different severities keep distinct scores, which threshold sweeps need.
fn calibrate(severity: f64) -> f64 {
    let x = (severity / BAND_Z).powf(SCORE_POWER);
    if x.is_finite() {
        x / (1.0 + x)
    } else {
        1.0
    }
}

impl SeriesDetector {
    /// A detector with the given settings.
    pub fn new(config: &DetectorConfig) -> Self {
        Self {
            config_warmup: config.warmup.max(2),
            seen: 0,
            last_t: f64::NAN,
            interval: f64::NAN,
            level: 0.0,
            scale: 0.0,
            short_scale: 0.0,
            cusum_pos: 0.0,
            cusum_neg: 0.0,
            extreme: 0.0,
            burst: 0.0,
            recent: [0.0; RECENT],
            season: seasonal::Season::new(config),
        }
    }

    /// Points seen so far.
    pub fn points(&self) -> u64 {
        self.seen
    }

    /// The detected seasonal period in points, once one is found.
    pub fn period(&self) -> Option<usize> {
        self.season.period()
    }

    /// Approximate heap and inline bytes held by this detector.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.season.heap_bytes()
    }

    // A scale floor keeps constant series from dividing by zero while still flagging any change on them.
    fn floor(&self) -> f64 {
        (self.level.abs() * 1e-6).max(1e-9)
    }

    /// Scores one point and learns from it. `timestamp_secs` must not decrease; gaps advance the seasonal
    /// phase by the number of missed intervals. Non-finite values are ignored (score 0).
    pub fn observe(&mut self, timestamp_secs: f64, value: f64) -> Observation {
        let steps = self.steps(timestamp_secs);
        if !value.is_finite() {
            let e = self.expected_after(steps);
            return self.quiet(e);
        }
        self.season.advance(steps);
        let seasonal = self.season.component();
        let deseasonalised = value - seasonal;
        self.recent[(self.seen as usize) % RECENT] = deseasonalised;
        self.seen += 1;

        if self.seen <= u64::from(self.config_warmup) {
            self.learn_warmup(deseasonalised);
            if let Some(reset) = self.season.push(value) {
                self.rebase(reset);
            }
            let mut o = self.quiet(self.level + seasonal);
            o.part = Part::Warmup;
            return o;
        }

        let expected = self.level + seasonal;
        let s = self.scale.max(self.floor());
        let r = value - expected;
        let z = r / s;

        // Variance change: a short-memory scale against the long one. The short one clips more loosely
        // so that the ratio can reach well past the long scale's clip, yet a single spike moves it little.
        let abs_r = r.abs();
        let clipped = abs_r.min(CLIP * s);
        self.short_scale += SHORT_BETA * (abs_r.min(2.0 * CLIP * s) - self.short_scale);
        let ratio = self.short_scale / s;

        let zc = z.clamp(-CLIP, CLIP);
        self.cusum_pos = (self.cusum_pos + zc - CUSUM_K).max(0.0);
        self.cusum_neg = (self.cusum_neg - zc - CUSUM_K).max(0.0);
        let cusum = self.cusum_pos.max(self.cusum_neg);

        let ext = if self.extreme > 0.0 {
            abs_r / self.extreme
        } else {
            f64::INFINITY
        };
        let outlier_sev = z.abs().min(EXTREME_SEV * ext);
        // A level shift is decided once, when the CUSUM crosses its interval; its severity is then the size
        // of the move, so slow drifts (many small re-anchorings) stay quiet. Before the decision the CUSUM
        // only ranks points below the threshold.
        let reanchor = (cusum > CUSUM_H).then(|| {
            let mut sorted = self.recent;
            sorted.sort_unstable_by(f64::total_cmp);
            0.5 * (sorted[RECENT / 2 - 1] + sorted[RECENT / 2])
        });
        let shift_sev = match reanchor {
            Some(new_level) => SHIFT_SEV_PER_SCALE * (new_level - self.level).abs() / s,
            None => 0.5 * BAND_Z * cusum / CUSUM_H,
        };
        // A wider spread only counts while points have lately gone past the recent extremes: bursts of
        // spikes like earlier ones (a spiky series) raise the short scale but are not news.
        self.burst = ext.min(100.0).max(self.burst * BURST_DECAY);
        let var_sev = if ratio > 1.0 {
            (VAR_SEV_PER_DOUBLING * ratio.log2()).min(EXTREME_SEV * self.burst)
        } else {
            0.0
        };

        let (severity, mut part) = [
            (
                outlier_sev,
                if self.season.period().is_some() {
                    Part::Seasonal
                } else {
                    Part::Outlier
                },
            ),
            (shift_sev, Part::LevelShift),
            (var_sev, Part::VarianceChange),
        ]
        .into_iter()
        .fold(
            (0.0, Part::None),
            |acc, x| if x.0 > acc.0 { x } else { acc },
        );
        let score = calibrate(severity);
        if score < 0.01 {
            part = Part::None;
        }

        // Learn, with clipped residuals so that outliers do not drag the baseline.
        let rc = r.clamp(-CLIP * s, CLIP * s);
        self.level += LEVEL_ALPHA * rc;
        self.season.learn(rc);
        self.scale += SCALE_BETA * (clipped - self.scale);
        self.extreme = abs_r.max(self.extreme * EXTREME_DECAY);
        if let Some(new_level) = reanchor {
            // The level moved: re-anchor on the recent points so the shift is reported once, not for as
            // long as it lasts.
            self.level = new_level;
            self.cusum_pos = 0.0;
            self.cusum_neg = 0.0;
        }
        if let Some(reset) = self.season.push(value) {
            self.rebase(reset);
        }

        let half = BAND_Z * s;
        Observation {
            score,
            expected,
            lower: expected - half,
            upper: expected + half,
            part,
        }
    }

    fn quiet(&self, expected: f64) -> Observation {
        let half = BAND_Z * self.scale.max(self.floor());
        Observation {
            score: 0.0,
            expected,
            lower: expected - half,
            upper: expected + half,
            part: Part::None,
        }
    }

    fn expected_after(&self, _steps: u32) -> f64 {
        self.level + self.season.component()
    }

    // Running mean and mean absolute deviation while warming up.
    fn learn_warmup(&mut self, x: f64) {
        let n = self.seen as f64;
        if self.seen == 1 {
            self.level = x;
            self.scale = 0.0;
        } else {
            let d = x - self.level;
            self.level += d / n;
            self.scale += (d.abs() - self.scale) / (n - 1.0);
        }
        self.extreme = (x - self.level).abs().max(self.extreme * EXTREME_DECAY);
        self.short_scale = self.scale;
    }

    // A period was just found: the seasonal decomposition gives a fresh level and scale.
    fn rebase(&mut self, reset: seasonal::Rebase) {
        self.level = reset.level;
        self.scale = reset.scale;
        self.short_scale = reset.scale;
        self.extreme = CLIP * reset.scale;
        self.cusum_pos = 0.0;
        self.cusum_neg = 0.0;
        self.recent = [reset.level; RECENT];
    }

    // How many sampling intervals this timestamp is past the previous one (at least 1).
    fn steps(&mut self, t: f64) -> u32 {
        let dt = t - self.last_t;
        self.last_t = t;
        if !dt.is_finite() || dt <= 0.0 {
            return 1;
        }
        if !self.interval.is_finite() || dt < self.interval {
            // The smallest gap seen is the sampling interval; regular series settle at once.
            self.interval = dt;
            return 1;
        }
        ((dt / self.interval).round() as u32).clamp(1, 10_000)
    }
}

#[cfg(test)]
mod tests;
