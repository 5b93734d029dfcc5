//! Datadog's distributions: histograms as the Datadog agent's DDSketch (`pkg/quantile`), sent to
//! `/api/beta/sketches` as a `SketchPayload`. The mapping must be the agent's, since the backend
//! merges sketches by key: relative accuracy 1/128 (γ = 1 + 2/128), values below 1e-9 at key 0,
//! `key(v) = round_half_even(ln v / ln γ) + bias` with `bias = 1 - floor(ln 1e-9 / ln γ)`,
//! negative values at negative keys, at most 4096 bins (the lowest are merged when there are
//! more). A histogram bucket's count is spread linearly over the keys between its bounds, as the
//! agent's `InsertInterpolate` does, and an infinite bound is replaced by the other one.
//! Hand-written: no crate implements the agent's variant (`sketches-ddsketch` maps keys
//! differently), and the payload needs only the bins.

use super::proto::Dogsketch;
use std::collections::BTreeMap;
use std::sync::OnceLock;

const EPS: f64 = 1.0 / 128.0;
const MIN_VALUE: f64 = 1e-9;
const BIN_LIMIT: usize = 4096;
/// The largest finite key (the agent's keys are int16, `0x7fff` being infinity).
const MAX_KEY: i32 = 0x7fff - 1;

struct Mapping {
    gamma: f64,
    gamma_ln: f64,
    bias: i32,
    min: f64,
}

fn mapping() -> &'static Mapping {
    static M: OnceLock<Mapping> = OnceLock::new();
    M.get_or_init(|| {
        let gamma_ln = (2.0 * EPS).ln_1p();
        let gamma = 1.0 + 2.0 * EPS;
        let emin = (MIN_VALUE.ln() / gamma_ln).floor() as i32;
        let bias = 1 - emin;
        // The smallest value with key 1: γ^(1 - bias).
        let min = gamma.powi(1 - bias);
        Mapping {
            gamma,
            gamma_ln,
            bias,
            min,
        }
    })
}

/// The key of a value: γ^(k - bias) is the low edge of its bin.
pub fn key(v: f64) -> i32 {
    let m = mapping();
    if v < 0.0 {
        return -key(-v);
    }
    if v == 0.0 || v < m.min || v.is_nan() {
        return 0;
    }
    let i = ((v.ln() / m.gamma_ln).round_ties_even() as i64).saturating_add(i64::from(m.bias));
    i.clamp(1, i64::from(MAX_KEY)) as i32
}

/// The low edge of a key's bin.
pub fn bin_low(k: i32) -> f64 {
    let m = mapping();
    match k {
        0 => 0.0,
        k if k < 0 => -bin_low(-k),
        k => m.gamma.powi(k - m.bias),
    }
}

/// A sketch being filled.
#[derive(Default)]
pub struct Builder {
    bins: BTreeMap<i32, u64>,
}

impl Builder {
    fn add(&mut self, k: i32, n: u64) {
        if n > 0 {
            *self.bins.entry(k).or_default() += n;
        }
    }

    /// Spreads `count` values over the keys from `lower` to `upper` in proportion to each bin's
    /// width; what rounding leaves goes to the upper bound's key.
    pub fn insert_interpolate(&mut self, mut lower: f64, mut upper: f64, count: u64) {
        if count == 0 {
            return;
        }
        if upper.is_infinite() && lower.is_finite() {
            upper = lower;
        } else if lower.is_infinite() && upper.is_finite() {
            lower = upper;
        }
        if !lower.is_finite() || !upper.is_finite() {
            self.add(0, count);
            return;
        }
        let (lo_key, hi_key) = (key(lower), key(upper));
        let distance = upper - lower;
        if lo_key >= hi_key || distance <= 0.0 {
            self.add(hi_key, count);
            return;
        }
        let mut left = count;
        let mut carry = 0.0;
        let mut k = lo_key;
        let mut low = lower;
        while k < hi_key && left > 0 {
            let high = bin_low(k + 1).min(upper);
            carry += (high - low) / distance * count as f64;
            if carry >= 1.0 {
                let n = (carry as u64).min(left);
                self.add(k, n);
                left -= n;
                carry -= n as f64;
            }
            low = high;
            k += 1;
        }
        self.add(hi_key, left);
    }

    /// Adds `count` values of zero (exponential histograms' zero bucket).
    pub fn insert_zero(&mut self, count: u64) {
        self.add(0, count);
    }

    pub fn is_empty(&self) -> bool {
        self.bins.is_empty()
    }

    /// The sketch, with the point's statistics when it has them and the bins' edges otherwise.
    pub fn finish(
        mut self,
        ts: i64,
        count: u64,
        sum: f64,
        min: Option<f64>,
        max: Option<f64>,
    ) -> Dogsketch {
        while self.bins.len() > BIN_LIMIT {
            // As the agent does past its bin limit: the lowest bins are merged upwards.
            let Some((k, n)) = self.bins.pop_first() else {
                break;
            };
            if let Some((_, next)) = self.bins.iter_mut().next() {
                *next += n;
            } else {
                self.bins.insert(k, n);
                break;
            }
        }
        let lowest = self.bins.keys().next().copied().map(bin_low);
        let highest = self.bins.keys().next_back().copied().map(bin_low);
        let cnt = i64::try_from(count).unwrap_or(i64::MAX);
        Dogsketch {
            ts,
            cnt,
            min: min.or(lowest).unwrap_or(0.0),
            max: max.or(highest).unwrap_or(0.0),
            avg: if count > 0 { sum / count as f64 } else { 0.0 },
            sum,
            k: self.bins.keys().copied().collect(),
            n: self
                .bins
                .values()
                .map(|n| u32::try_from(*n).unwrap_or(u32::MAX))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_agents() {
        let m = mapping();
        // emin = floor(ln(1e-9) / ln(1.015625)) = -1337, so the bias is 1338.
        assert_eq!(m.bias, 1338);
        assert_eq!(key(0.0), 0);
        assert_eq!(key(1e-12), 0);
        assert_eq!(key(1.0), 1338);
        assert_eq!(key(-1.0), -1338);
        // key(bin_low(k)) == k, which is why the agent rounds half to even.
        for k in [1, 2, 500, 1338, 1339, 2000, 3000] {
            assert_eq!(key(bin_low(k)), k, "{k}");
        }
        // Relative accuracy: a value is within 1/128 of its bin's representative.
        for v in [0.003, 0.5, 1.7, 42.0, 1e6] {
            let low = bin_low(key(v));
            assert!((v - low).abs() / v <= 2.0 * EPS, "{v} -> {low}");
        }
    }

    #[test]
    fn interpolation_keeps_every_count() {
        let mut b = Builder::default();
        b.insert_interpolate(1.0, 2.0, 1000);
        b.insert_interpolate(f64::NEG_INFINITY, 0.5, 3);
        b.insert_interpolate(100.0, f64::INFINITY, 7);
        let s = b.finish(10, 1010, 2000.0, None, None);
        assert_eq!(s.n.iter().map(|n| u64::from(*n)).sum::<u64>(), 1010);
        assert_eq!(s.k.first().copied(), Some(key(0.5)));
        assert_eq!(s.k.last().copied(), Some(key(100.0)));
        // The 1000 values between 1 and 2 spread over the ~45 bins of that range.
        let between =
            s.k.iter()
                .filter(|k| (key(1.0)..=key(2.0)).contains(*k))
                .count();
        assert!(between > 40, "{between}");
        assert!(s.k.windows(2).all(|w| w[0] < w[1]));
        assert_eq!((s.cnt, s.avg), (1010, 2000.0 / 1010.0));
    }
}
