//! The detector's slower time scale: the deseasonalised series seen as means of blocks of
//! [`Tuning::coarse_k`] points, against a baseline of its own that follows those means far more slowly
//! than the per-point level follows points. A change too gradual or too small for any one point (a drift
//! before a failure, a day of unusual demand) is absorbed by the per-point level within a few dozen
//! points, but it moves a block mean away from this slow baseline. The cue is judged like every cue:
//! against its own decaying maximum, so a series whose block means always wander needs a larger wander,
//! and never against less than the per-point noise alone gives a block mean, so that on a series that is
//! mostly noise the cue does not report the noise's own records.
//!
//! It is scored every `coarse_k / coarse_hops` points (the mean of the last `coarse_k` each time), never
//! on each point: NAB, like an operator, counts every point over the threshold. Scoring whole blocks
//! only (one hop) made the score depend on where the first block happened to start (steps 107 to 115).

use super::{Tuning, CLIP};

/// State of the coarse scale: 64 bytes inline (the hop ring 24 of them), no heap.
#[derive(Debug, Clone)]
pub(crate) struct Coarse {
    // Sum of the deseasonalised values of the open block; f64 so that a large level does not swallow the
    // small differences between block means.
    sum: f64,
    level: f64,
    // Mean absolute residual of the block means around `level`.
    scale: f32,
    // The cue's largest recent value, decaying like the per-point memories (see `push`).
    peak: f32,
    slow_peak: f32,
    // Sums of the last `coarse_hops - 1` closed hops (a ring), so that with several hops a block is the
    // last `coarse_k` points whatever the phase.
    hop_sums: [f64; MAX_HOPS - 1],
    // Points in the open hop.
    filled: u16,
    // Hops closed since the last reset, saturating.
    blocks: u16,
    // Next slot of `hop_sums`.
    at: u8,
    // Points still to be ignored after a reset (the `coarse_offset` diagnosis).
    skip: u16,
}

/// The most hops per block [`Tuning::coarse_hops`] may ask for.
pub(crate) const MAX_HOPS: usize = 4;

impl Coarse {
    pub fn new() -> Self {
        Self {
            sum: 0.0,
            level: 0.0,
            scale: 0.0,
            peak: 0.0,
            slow_peak: 0.0,
            hop_sums: [0.0; MAX_HOPS - 1],
            filled: 0,
            blocks: 0,
            at: 0,
            skip: u16::MAX,
        }
    }

    /// Forgets everything: the deseasonalised values changed meaning (a period was just found).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Adds one deseasonalised value. At the point that closes a block, returns the block mean's
    /// distance from the slow baseline over its memory, scaled so that [`Tuning::coarse_margin`] maps to
    /// the shared margin, and learns from the block. `floor` keeps a flat series from dividing by zero;
    /// `point_scale` is the per-point scale (mean absolute residual) for [`Tuning::coarse_noise_floor`].
    pub fn push(&mut self, x: f64, t: &Tuning, floor: f64, point_scale: f64) -> Option<f64> {
        if t.coarse_k < 2.0 {
            return None;
        }
        let k = t.coarse_k.min(f64::from(u16::MAX)) as u16;
        if self.skip == u16::MAX {
            self.skip = t.coarse_offset.clamp(0.0, f64::from(k)) as u16;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        let h = (t.coarse_hops.clamp(1.0, MAX_HOPS as f64) as u16).min(k);
        let hop_len = k / h;
        let k = hop_len * h;
        self.sum += x;
        self.filled += 1;
        if self.filled < hop_len {
            return None;
        }
        self.blocks = self.blocks.saturating_add(1);
        let mut total = self.sum;
        if h > 1 {
            let ring = usize::from(h - 1);
            for v in &self.hop_sums[..ring] {
                total += v;
            }
            self.hop_sums[usize::from(self.at) % ring] = self.sum;
            self.at = ((usize::from(self.at) + 1) % ring) as u8;
        }
        self.sum = 0.0;
        self.filled = 0;
        // The first full block closes after `h` hops.
        if self.blocks < h {
            return None;
        }
        let mean = total / f64::from(k);
        let hf = f64::from(h);
        // Windows scored so far (one per hop once the first block is full).
        let n = f64::from(self.blocks - h + 1);
        // Blocks learnt from (a running mean and mean absolute deviation) before the cue scores; with
        // hops, as many windows as that many blocks hold hops.
        let warmup = (t.coarse_warmup.clamp(2.0, 1000.0) * hf) as u16;
        if n <= f64::from(warmup) {
            if n <= 1.0 {
                self.level = mean;
            } else {
                let d = mean - self.level;
                self.level += d / n;
                self.scale += ((d.abs() - f64::from(self.scale)) / (n - 1.0)) as f32;
            }
            return None;
        }
        let s = f64::from(self.scale).max(floor);
        let r = mean - self.level;
        let cue = r.abs();
        // Half-lives in blocks: the per-point memories' half-lives over k, but never under
        // `coarse_min_half_life` blocks, so that a long block does not forget its largest wander within a
        // handful of blocks (cross-validation step 75).
        // With hops, half-lives count hops and rates are per hop, so that their time in points stays.
        let hl = (t.peak_half_life / f64::from(k)).max(t.coarse_min_half_life) * hf;
        let slow_hl = (t.slow_half_life / f64::from(k)).max(4.0 * hl / hf) * hf;
        // Young (the floors raised by `early_factor`) for `coarse_young` blocks, or without it for the
        // memory's half-life.
        let young_len = if t.coarse_young > 0.0 {
            t.coarse_young * hf
        } else {
            hl
        };
        let young = n - f64::from(warmup) < young_len;
        let f = if young { t.early_factor.max(1.0) } else { 1.0 };
        // The mean of k independent points spreads by the per-point scale over sqrt(k): a wander no
        // larger than that is the noise's own, whatever the block means' history says (on white noise
        // the coarse scale is about that spread, and with a floor of 3 of it alone the detector scored
        // 17.1 points per 10,000 over the threshold, against 12.1 without the coarse cue; step 101).
        let noise = t.coarse_noise_floor * point_scale / f64::from(k).sqrt();
        let memory = f64::from(self.peak)
            .max(t.slow_weight * f64::from(self.slow_peak))
            .max(f * t.coarse_floor * s)
            .max(f * noise);
        let ratio = cue / memory * t.margin / t.coarse_margin;

        // 1 - ln 2 / h for exp(-ln 2 / h), as for the per-point memories.
        let decay = 1.0 - std::f64::consts::LN_2 / hl.max(1.0);
        let slow_decay = 1.0 - std::f64::consts::LN_2 / slow_hl.max(1.0);
        self.peak = (f64::from(self.peak) * decay).max(cue) as f32;
        self.slow_peak = (f64::from(self.slow_peak) * slow_decay).max(cue) as f32;
        let rc = r.clamp(-CLIP * s, CLIP * s);
        let (alpha, beta) = if h > 1 {
            let per_hop = |a: f64| 1.0 - (1.0 - a.clamp(0.0, 1.0)).powf(1.0 / hf);
            (per_hop(t.coarse_alpha), per_hop(t.coarse_beta))
        } else {
            (t.coarse_alpha, t.coarse_beta)
        };
        self.level += alpha * rc;
        self.scale += (beta * (rc.abs() - f64::from(self.scale))) as f32;
        Some(ratio)
    }
}
