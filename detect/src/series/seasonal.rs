//! The seasonal part of the ensemble: finds a period once, from a bounded buffer of the first points, and
//! then keeps one season of offsets that it updates online. A batch decomposition runs only during the
//! search, never per point, because `augurs` models fit in batch.

use augurs::mstl::stlrs::MstlParams;
use augurs::seasons::PeriodogramDetector;

use super::DetectorConfig;

// A candidate period must have at least this autocorrelation.
const ACF_MIN: f64 = 0.3;
// And MSTL must attribute at least this share of the detrended variance to it (Hyndman's F_s).
const STRENGTH_MIN: f64 = 0.6;
// The first search needs this many points; later ones run every SEARCH_STEP points up to the buffer cap.
const SEARCH_FIRST: usize = 576;
const SEARCH_STEP: usize = 192;

/// A fresh baseline from the decomposition, handed back to the detector when a period is found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rebase {
    pub level: f64,
    /// `None` after a search over block means, whose residuals understate the per-point spread.
    pub scale: Option<f64>,
}

/// How the search looks (the cross-validation's knobs, off in the shipped constants unless stated).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SearchMode {
    /// Judge candidate periods on the ranks of the buffered values, not the values: on the first search
    /// and on the retry.
    pub rank_first: bool,
    pub rank_retry: bool,
    /// After a failed search, search once more over means of this many points (0 or 1: no retry).
    pub retry_stride: u32,
}

#[derive(Debug, Clone)]
pub(crate) enum Season {
    /// No seasonality: either turned off or none was found.
    Off,
    /// Collecting points to look for a period.
    Searching {
        buf: Quantized,
        // u16 and u8 keep the state as small as before the retry (`season_buffer` is capped at 65,535).
        cap: u16,
        // Points per buffered sample (1 on the first search), how many the open sample holds, their sum.
        stride: u8,
        fill: u8,
        acc: f32,
    },
    /// A period was found: one offset per phase, each covering `stride` points.
    Found {
        profile: Box<[f32]>,
        phase: u32,
        stride: u32,
    },
}

impl Season {
    pub fn new(config: &DetectorConfig) -> Self {
        if config.seasonality && config.season_buffer >= SEARCH_FIRST {
            let cap = config.season_buffer.min(usize::from(u16::MAX));
            Season::Searching {
                buf: Quantized::with_capacity(cap),
                cap: cap as u16,
                stride: 1,
                fill: 0,
                acc: 0.0,
            }
        } else {
            Season::Off
        }
    }

    pub fn period(&self) -> Option<usize> {
        match self {
            Season::Found {
                profile, stride, ..
            } => Some(profile.len() * *stride as usize),
            _ => None,
        }
    }

    pub fn heap_bytes(&self) -> usize {
        match self {
            Season::Off => 0,
            Season::Searching { buf, .. } => buf.heap_bytes(),
            Season::Found { profile, .. } => profile.len() * 4,
        }
    }

    /// Moves to the phase of the next point, `steps` sampling intervals on.
    pub fn advance(&mut self, steps: u32) {
        match self {
            Season::Found {
                profile,
                phase,
                stride,
            } => {
                let n = profile.len() as u64 * u64::from(*stride);
                *phase = ((u64::from(*phase) + u64::from(steps)) % n) as u32;
            }
            Season::Searching {
                buf,
                cap,
                stride,
                fill,
                acc,
            } => {
                // Fill gaps with the last value so that positions in the buffer stay on the time grid.
                if let Some(last) = buf.last() {
                    let room =
                        (*cap as usize - buf.len().min(*cap as usize)) * usize::from(*stride);
                    let missing = (steps as usize).saturating_sub(1).min(room);
                    for _ in 0..missing {
                        add_point(buf, *stride, fill, acc, last);
                    }
                }
            }
            Season::Off => {}
        }
    }

    /// The seasonal offset expected at the current phase.
    pub fn component(&self) -> f64 {
        match self {
            Season::Found {
                profile,
                phase,
                stride,
            } => f64::from(profile[(*phase / *stride) as usize]),
            _ => 0.0,
        }
    }

    /// The seasonal offsets from two points before the current phase to two points after it (zeros
    /// without a period).
    pub fn around(&self) -> [f64; 5] {
        let mut o = [0.0; 5];
        if let Season::Found {
            profile,
            phase,
            stride,
        } = self
        {
            let n = profile.len() as u32 * *stride;
            for (k, x) in o.iter_mut().enumerate() {
                // phase - 2 + k, round the season without a division.
                let mut p = *phase + k as u32 + n - 2;
                if p >= n {
                    p -= n;
                }
                if p >= n {
                    p -= n;
                }
                *x = f64::from(profile[(p / *stride) as usize]);
            }
        }
        o
    }

    /// Moves the current phase's offset towards a (clipped) residual.
    pub fn learn(&mut self, residual: f64, gamma: f64) {
        if let Season::Found {
            profile,
            phase,
            stride,
        } = self
        {
            // An offset that covers `stride` points learns from each of them, at a share of the rate.
            profile[(*phase / *stride) as usize] += (gamma * residual / f64::from(*stride)) as f32;
        }
    }

    /// Adds a raw value to the search buffer and searches when it is due. Returns the new baseline when a
    /// period has just been found.
    pub fn push(&mut self, value: f64, mode: SearchMode) -> Option<Rebase> {
        let Season::Searching {
            buf,
            cap,
            stride,
            fill,
            acc,
        } = self
        else {
            return None;
        };
        let cap = *cap as usize;
        let stride = *stride;
        if buf.len() < cap && !add_point(buf, stride, fill, acc, value) {
            return None;
        }
        let n = buf.len();
        if n < SEARCH_FIRST || !(n - SEARCH_FIRST).is_multiple_of(SEARCH_STEP) && n < cap {
            return None;
        }
        let rank = if stride == 1 {
            mode.rank_first
        } else {
            mode.rank_retry
        };
        match find_period(&buf.to_f32(), rank) {
            Some(mut found) => {
                found.rebase.level += buf.lo;
                let stride = u32::from(stride);
                *self = Season::Found {
                    profile: found.profile.into_boxed_slice(),
                    // The profile ends at the newest point; the next point is phase 0.
                    phase: (found.period as u32) * stride - 1,
                    stride,
                };
                let mut rebase = found.rebase;
                if stride > 1 {
                    rebase.scale = None;
                }
                Some(rebase)
            }
            None => {
                if n >= cap {
                    let k = mode.retry_stride.min(64) as u8;
                    if stride == 1 && k > 1 {
                        // A period longer than half the buffer (daily at one-minute data), or one that
                        // a few days did not show: search once more over means of `k` points, starting
                        // from what the first buffer holds so that no day is lost.
                        let mut coarse = Quantized::with_capacity(cap);
                        let held = buf.to_f32();
                        for chunk in held.chunks_exact(usize::from(k)) {
                            let mean =
                                chunk.iter().map(|&v| f64::from(v)).sum::<f64>() / f64::from(k);
                            coarse.push(mean + buf.lo);
                        }
                        *self = Season::Searching {
                            buf: coarse,
                            cap: cap as u16,
                            stride: k,
                            fill: 0,
                            acc: 0.0,
                        };
                    } else {
                        *self = Season::Off;
                    }
                }
                None
            }
        }
    }
}

/// Adds one point to the open sample of `stride` points and pushes the sample once it is full (returns
/// whether it did). The sum is kept as `f32` offsets from the buffer's lower edge, which only a push
/// moves: a series of large values (1e9 bytes, give or take 10) keeps its digits in 4 bytes of state.
fn add_point(buf: &mut Quantized, stride: u8, fill: &mut u8, acc: &mut f32, v: f64) -> bool {
    if stride <= 1 || buf.len() == 0 {
        buf.push(v);
        return true;
    }
    let limit = f64::from(f32::MAX) / 256.0;
    *acc += (v - buf.lo).clamp(-limit, limit) as f32;
    *fill += 1;
    if *fill < stride {
        return false;
    }
    buf.push(buf.lo + f64::from(*acc) / f64::from(stride));
    *acc = 0.0;
    *fill = 0;
    true
}

/// Search-buffer samples as 8-bit codes over a range that widens when a value falls outside it: a quarter
/// of the memory of `f32`, which matters when 100k series search at once. Period detection needs the
/// shape of a cycle, not its digits: against 16-bit codes, the four development corpora scored within
/// 0.7 points (BENCHMARKS.md).
#[derive(Debug, Clone)]
pub(crate) struct Quantized {
    codes: Vec<u8>,
    lo: f64,
    step: f64,
}

impl Quantized {
    fn with_capacity(cap: usize) -> Self {
        Self {
            codes: Vec::with_capacity(cap),
            lo: 0.0,
            step: 0.0,
        }
    }

    fn len(&self) -> usize {
        self.codes.len()
    }

    fn heap_bytes(&self) -> usize {
        self.codes.capacity()
    }

    fn get(&self, i: usize) -> f64 {
        self.lo + self.step * f64::from(self.codes[i])
    }

    fn last(&self) -> Option<f64> {
        (!self.codes.is_empty()).then(|| self.get(self.codes.len() - 1))
    }

    fn push(&mut self, v: f64) {
        if self.codes.is_empty() {
            self.lo = v;
            self.step = 0.0;
        }
        let hi = self.lo + self.step * f64::from(u8::MAX);
        if v < self.lo || v > hi {
            // Widen to half again the new range on each side and re-encode what is held.
            let (new_lo, new_hi) = (self.lo.min(v), hi.max(v));
            let span = (new_hi - new_lo).max(f64::MIN_POSITIVE);
            let lo = new_lo - 0.25 * span;
            let step = 1.5 * span / f64::from(u8::MAX);
            for i in 0..self.codes.len() {
                let x = self.get(i);
                self.codes[i] = ((x - lo) / step).round() as u8;
            }
            self.lo = lo;
            self.step = step;
        }
        let code = if self.step > 0.0 {
            ((v - self.lo) / self.step).round() as u8
        } else {
            0
        };
        self.codes.push(code);
    }

    /// The samples less the buffer's lower edge ([`Quantized::lo`], which the caller adds back): in
    /// f32 a series near 1e6 would keep only steps of 1/16, too coarse for the shape of its cycle.
    fn to_f32(&self) -> Vec<f32> {
        (0..self.codes.len())
            .map(|i| (self.step * f64::from(self.codes[i])) as f32)
            .collect()
    }
}

struct Found {
    period: usize,
    profile: Vec<f32>,
    rebase: Rebase,
}

/// Autocorrelation of `x` (mean removed, `denom` its sum of squares) at `lag`.
fn acf(x: &[f64], denom: f64, lag: usize) -> f64 {
    let s: f64 = x[..x.len() - lag]
        .iter()
        .zip(&x[lag..])
        .map(|(a, b)| a * b)
        .sum();
    s / denom
}

/// The dominant seasonal period of `values` in points, if it is strong enough to model. Used by the
/// forecaster, which decides on seasonality from its own history.
pub fn detect_period(values: &[f64]) -> Option<usize> {
    let buf: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    find_period(&buf, false).map(|f| f.period)
}

/// Candidate periods from the `augurs` periodogram, each refined to the autocorrelation peak nearby (the
/// periodogram's bins are coarse at long periods), then checked by an MSTL decomposition.
fn find_period(raw: &[f32], rank: bool) -> Option<Found> {
    // On ranks, a few bursts (a tweet storm, a nightly job's spike) cannot outweigh a daily swing of the
    // bulk of the values, in the periodogram, the autocorrelation or the strength of the fit.
    let ranked;
    let buf = if rank {
        ranked = ranks(raw);
        &ranked[..]
    } else {
        raw
    };
    let n = buf.len();
    let mean = buf.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    let x: Vec<f64> = buf.iter().map(|&v| f64::from(v) - mean).collect();
    let denom: f64 = x.iter().map(|v| v * v).sum();
    if denom <= f64::EPSILON * n as f64 {
        return None;
    }
    // Periods up to half the buffer: two full cycles are enough for the autocorrelation check.
    let pg = PeriodogramDetector::builder()
        .max_period((n / 2) as u32)
        .build()
        .periodogram(&x);
    // `peaks` yields ascending power: the strongest come last.
    let candidates: Vec<u32> = pg.peaks(0.5).map(|p| p.period).collect();
    let mut best: Option<(usize, f64)> = None;
    for &c in candidates.iter().rev().take(3) {
        let lo = ((f64::from(c) * 0.75) as usize).max(4);
        let hi = ((f64::from(c) * 1.35) as usize).min(n / 2);
        for lag in lo..=hi {
            let r = acf(&x, denom, lag);
            if r >= ACF_MIN && best.is_none_or(|(_, b)| r > b) {
                best = Some((lag, r));
            }
        }
    }
    let (period, _) = best?;
    let fit = MstlParams::new().fit(buf, &[period]).ok()?;
    let strength = fit.seasonal_strength().first().copied()?;
    // A NaN strength (a degenerate fit) must reject the period too, hence no plain `<`.
    if strength.is_nan() || strength < STRENGTH_MIN {
        return None;
    }
    let fit = if rank {
        MstlParams::new().fit(raw, &[period]).ok()?
    } else {
        fit
    };
    let buf = raw;
    // MSTL's seasonal part is LOESS-smoothed, which blurs sharp daily edges. The profile is instead the
    // per-phase median of the detrended data, which keeps edges and ignores a one-off outlier.
    let trend = fit.trend();
    let seasons = n / period;
    let start = n - seasons * period;
    let mut column = Vec::with_capacity(seasons);
    let mut profile = Vec::with_capacity(period);
    for j in 0..period {
        column.clear();
        column.extend((0..seasons).map(|k| {
            let i = start + k * period + j;
            buf[i] - trend[i]
        }));
        column.sort_unstable_by(f32::total_cmp);
        profile.push(column[column.len() / 2]);
    }
    let level = f64::from(*trend.last()?);
    let tail = n - period;
    let scale = (tail..n)
        .map(|i| f64::from((buf[i] - trend[i] - profile[i - tail]).abs()))
        .sum::<f64>()
        / period as f64;
    Some(Found {
        period,
        profile,
        rebase: Rebase {
            level,
            scale: Some(scale),
        },
    })
}

/// Mid-ranks of `x` (ties share the mean of their ranks), as `f32`.
fn ranks(x: &[f32]) -> Vec<f32> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_unstable_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0f32; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let mid = (i + j) as f32 / 2.0;
        for &k in &idx[i..=j] {
            r[k] = mid;
        }
        i = j + 1;
    }
    r
}
