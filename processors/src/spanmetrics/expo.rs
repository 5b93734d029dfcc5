//! A base-2 exponential histogram of positive values (span durations), as OTLP's
//! `ExponentialHistogramDataPoint` defines it: bucket `i` at scale `s` holds values in
//! `(2^(i/2^s), 2^((i+1)/2^s)]`. It starts at the finest scale and halves its resolution whenever the
//! buckets in use would span more than `max_size`, so it never holds more than `max_size` counters.
//! Hand-written: no maintained crate builds OTLP's exponential buckets; otelcol uses a Go package for
//! the same few rules.

use vigil_core::otlp::metrics::v1::exponential_histogram_data_point::Buckets;

/// OTLP's finest scale (and otelcol's starting one).
const MAX_SCALE: i32 = 20;
const MIN_SCALE: i32 = -10;

#[derive(Debug, Clone)]
pub struct ExpoHistogram {
    max_size: usize,
    scale: i32,
    /// Index of `counts[0]`.
    offset: i64,
    counts: Vec<u64>,
    pub zero_count: u64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

/// The bucket index of `v` (> 0) at `scale`.
fn index(v: f64, scale: i32) -> i64 {
    (v.log2() * 2f64.powi(scale)).ceil() as i64 - 1
}

impl ExpoHistogram {
    pub fn new(max_size: usize) -> ExpoHistogram {
        ExpoHistogram {
            max_size: max_size.max(2),
            scale: MAX_SCALE,
            offset: 0,
            counts: Vec::new(),
            zero_count: 0,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    pub fn scale(&self) -> i32 {
        self.scale
    }

    pub fn record(&mut self, v: f64) {
        self.record_n(v, 1);
    }

    /// Records `v` `n` times (a sampled span standing for `n` spans).
    pub fn record_n(&mut self, v: f64, n: u64) {
        self.count += n;
        self.sum += v * n as f64;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        if v <= 0.0 || !v.is_finite() {
            self.zero_count += n;
            return;
        }
        let mut i = index(v, self.scale);
        if self.counts.is_empty() {
            self.offset = i;
            self.counts.push(n);
            return;
        }
        let (lo, hi) = (
            self.offset.min(i),
            (self.offset + self.counts.len() as i64 - 1).max(i),
        );
        let mut change = 0;
        while (hi >> change) - (lo >> change) + 1 > self.max_size as i64
            && self.scale - change > MIN_SCALE
        {
            change += 1;
        }
        if change > 0 {
            self.downscale(change);
            i >>= change;
        }
        if i < self.offset {
            let grow = (self.offset - i) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = i;
        }
        let at = (i - self.offset) as usize;
        if at >= self.counts.len() {
            self.counts.resize(at + 1, 0);
        }
        self.counts[at] += n;
    }

    /// Merges buckets `2^change` at a time: index `i` becomes `i >> change`.
    fn downscale(&mut self, change: i32) {
        let new_offset = self.offset >> change;
        let mut merged: Vec<u64> = Vec::new();
        for (k, c) in self.counts.iter().enumerate() {
            let at = (((self.offset + k as i64) >> change) - new_offset) as usize;
            if at >= merged.len() {
                merged.resize(at + 1, 0);
            }
            merged[at] += c;
        }
        self.counts = merged;
        self.offset = new_offset;
        self.scale -= change;
    }

    pub fn positive(&self) -> Buckets {
        Buckets {
            offset: self.offset as i32,
            bucket_counts: self.counts.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_the_bucket_whose_bounds_hold_it() {
        let mut h = ExpoHistogram::new(160);
        let values = [0.5, 1.0, 2.0, 3.0, 7.5, 100.0, 250.0, 1000.0, 12_345.0];
        for v in values {
            h.record(v);
        }
        h.record(0.0);
        assert_eq!(h.count, 10);
        assert_eq!(h.zero_count, 1);
        assert!(h.counts.len() <= 160, "{}", h.counts.len());
        let base = 2f64.powf(2f64.powi(-h.scale()));
        let b = h.positive();
        assert_eq!(b.bucket_counts.iter().sum::<u64>(), 9);
        for v in values {
            let i = index(v, h.scale()) - b.offset as i64;
            let (lo, hi) = (
                base.powi((i + b.offset as i64) as i32),
                base.powi((i + b.offset as i64) as i32 + 1),
            );
            assert!(
                lo < v * 1.000_001 && v <= hi * 1.000_001,
                "{v} in ({lo}, {hi}]"
            );
            assert!(b.bucket_counts[i as usize] > 0, "{v}'s bucket is empty");
        }
        assert_eq!((h.min, h.max), (0.0, 12_345.0));
    }

    #[test]
    fn a_small_histogram_downscales_instead_of_growing() {
        let mut h = ExpoHistogram::new(4);
        for v in [1.0, 10.0, 100.0, 1000.0, 1e6] {
            h.record(v);
        }
        assert!(h.positive().bucket_counts.len() <= 4);
        assert_eq!(h.positive().bucket_counts.iter().sum::<u64>(), 5);
        assert!(
            h.scale() < 0,
            "ten decades in 4 buckets need a coarse scale"
        );
    }
}
