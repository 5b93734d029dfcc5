//! The exponential histogram behind `observer_type: histogram`, after the OpenTelemetry
//! specification's base-2 exponential aggregation that otelcol's statsd receiver uses (Lightstep's
//! `structure` package there): buckets start at scale 20 and the scale drops, merging neighbours,
//! whenever the values need more than `max_size` buckets. Hand-written because no maintained crate
//! outside the OpenTelemetry SDK exposes this aggregation on its own.

use vigil_core::otlp::metrics::v1::exponential_histogram_data_point::Buckets;

pub const MAX_SCALE: i32 = 20;
pub const DEFAULT_MAX_SIZE: u32 = 160;

#[derive(Debug, Default, Clone)]
struct Side {
    offset: i64,
    counts: Vec<u64>,
}

impl Side {
    fn range_with(&self, idx: i64) -> (i64, i64) {
        if self.counts.is_empty() {
            return (idx, idx);
        }
        let end = self.offset + self.counts.len() as i64 - 1;
        (self.offset.min(idx), end.max(idx))
    }

    fn downscale(&mut self, by: u32) {
        if by == 0 || self.counts.is_empty() {
            return;
        }
        let new_offset = self.offset >> by;
        let mut out: Vec<u64> = Vec::new();
        for (i, c) in self.counts.iter().enumerate() {
            let j = (((self.offset + i as i64) >> by) - new_offset) as usize;
            if out.len() <= j {
                out.resize(j + 1, 0);
            }
            out[j] += c;
        }
        self.offset = new_offset;
        self.counts = out;
    }

    fn add(&mut self, idx: i64, n: u64) {
        if self.counts.is_empty() {
            self.offset = idx;
            self.counts.push(n);
            return;
        }
        if idx < self.offset {
            let grow = (self.offset - idx) as usize;
            let mut v = vec![0u64; grow];
            v.append(&mut self.counts);
            self.counts = v;
            self.offset = idx;
        }
        let j = (idx - self.offset) as usize;
        if self.counts.len() <= j {
            self.counts.resize(j + 1, 0);
        }
        self.counts[j] += n;
    }

    fn proto(&self) -> Buckets {
        Buckets {
            offset: self.offset as i32,
            bucket_counts: self.counts.clone(),
        }
    }
}

/// One series' histogram for one interval.
#[derive(Debug, Clone)]
pub struct ExpoHistogram {
    max_size: usize,
    pub scale: i32,
    pos: Side,
    neg: Side,
    pub zero: u64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

/// The bucket index of |v| at `scale`: bucket i holds (base^i, base^(i+1)], base = 2^(2^-scale).
fn index(v: f64, scale: i32) -> i64 {
    let l = v.log2();
    if scale > 0 {
        (l * f64::from(1u32 << scale)).ceil() as i64 - 1
    } else {
        ((l.ceil() as i64) - 1) >> (-scale)
    }
}

impl ExpoHistogram {
    pub fn new(max_size: u32) -> ExpoHistogram {
        ExpoHistogram {
            max_size: max_size.max(2) as usize,
            scale: MAX_SCALE,
            pos: Side::default(),
            neg: Side::default(),
            zero: 0,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Records `v` `n` times (`n` is 1/sample rate, at least 1).
    pub fn add(&mut self, v: f64, n: u64) {
        self.count += n;
        self.sum += v * n as f64;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        if v == 0.0 {
            self.zero += n;
            return;
        }
        let a = v.abs();
        // Lower the scale until this value's bucket fits beside the side's others.
        loop {
            let idx = index(a, self.scale);
            let side = if v > 0.0 { &self.pos } else { &self.neg };
            let (lo, hi) = side.range_with(idx);
            if (hi - lo + 1) as usize <= self.max_size || self.scale <= -10 {
                break;
            }
            let mut by = 0;
            let (mut l, mut h) = (lo, hi);
            while (h - l + 1) as usize > self.max_size {
                l >>= 1;
                h >>= 1;
                by += 1;
            }
            self.scale -= by as i32;
            self.pos.downscale(by);
            self.neg.downscale(by);
        }
        let idx = index(a, self.scale);
        if v > 0.0 {
            self.pos.add(idx, n);
        } else {
            self.neg.add(idx, n);
        }
    }

    pub fn positive(&self) -> Buckets {
        self.pos.proto()
    }

    pub fn negative(&self) -> Buckets {
        self.neg.proto()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bucket i holds (base^i, base^(i+1)]: at scale 0, 1 is in bucket -1, 2 in 0, 3 and 4 in 1.
    #[test]
    fn indexes_follow_the_specification() {
        assert_eq!(index(1.0, 0), -1);
        assert_eq!(index(2.0, 0), 0);
        assert_eq!(index(3.0, 0), 1);
        assert_eq!(index(4.0, 0), 1);
        assert_eq!(index(4.0, -1), 0);
        assert_eq!(index(2.0, 1), 1);
        assert_eq!(index(3.0, 1), 3);
    }

    /// Values spanning 1..1e6 fit in max_size buckets at a lower scale, and no count is lost.
    #[test]
    fn downscales_to_fit_and_keeps_counts() {
        let mut h = ExpoHistogram::new(20);
        for v in [1.0, 10.0, 100.0, 1000.0, 1e6, -5.0, 0.0] {
            h.add(v, 2);
        }
        assert_eq!((h.count, h.zero), (14, 2));
        let (p, n) = (h.positive(), h.negative());
        assert!(p.bucket_counts.len() <= 20, "{p:?}");
        assert_eq!(p.bucket_counts.iter().sum::<u64>(), 10);
        assert_eq!(n.bucket_counts.iter().sum::<u64>(), 2);
        assert!(h.scale < MAX_SCALE && h.scale >= -10);
        // Each value is in the bucket the final scale says.
        for v in [1.0, 10.0, 100.0, 1000.0, 1e6] {
            let j = index(v, h.scale) - i64::from(p.offset);
            assert!(p.bucket_counts[j as usize] >= 2, "{v} at {j}: {p:?}");
        }
        assert_eq!(
            (h.min, h.max, h.sum),
            (-5.0, 1e6, 2.0 * (1111.0 + 1e6 - 5.0))
        );
        // One value stays at the finest scale.
        let mut one = ExpoHistogram::new(160);
        one.add(3.0, 1);
        assert_eq!(one.scale, MAX_SCALE);
    }
}
