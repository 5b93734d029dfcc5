//! Turns OTLP metric points into values a detector can watch: cumulative counters become per-second
//! rates (a counter's level only ever grows, its rate is what changes), delta sums become per-second
//! values, and histograms become one quantile, interpolated within its bucket as Prometheus'
//! `histogram_quantile` does, plus a count rate. Cumulative inputs keep the previous point per source
//! series in a [`Prev`].

use vigil_core::otlp::metrics::v1::ExponentialHistogramDataPoint;

/// The previous point of a source series, for the cumulative-to-rate conversions.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Prev {
    /// Nothing seen yet.
    #[default]
    None,
    /// A sum: when, its start time (0 if unknown) and value.
    Sum { t: f64, start: f64, value: f64 },
    /// A histogram in explicit-bucket form.
    Hist {
        t: f64,
        start: f64,
        count: u64,
        bounds: Vec<f64>,
        counts: Vec<u64>,
    },
}

/// The per-second rate of a sum at `t`. A cumulative sum is differenced against the previous point;
/// a drop in value or a new start time is a reset, after which the value counts from its start time
/// (or, if that is unknown, the point only re-bases). A delta sum is divided by its own span, or by the
/// gap since the previous point when it has no start time. `None` when no rate can be known yet.
pub fn sum_rate(prev: &mut Prev, cumulative: bool, t: f64, start: f64, value: f64) -> Option<f64> {
    if !value.is_finite() {
        return None;
    }
    let last = match prev {
        Prev::Sum { t, start, value } => Some((*t, *start, *value)),
        _ => None,
    };
    if let Some((pt, _, _)) = last {
        if t <= pt {
            // A repeated or out-of-order point says nothing new, and must not move the baseline back.
            return None;
        }
    }
    *prev = Prev::Sum { t, start, value };
    if !cumulative {
        let span = if start > 0.0 && start < t {
            t - start
        } else {
            t - last?.0
        };
        return Some(value / span);
    }
    let (pt, ps, pv) = last?;
    let restarted = value < pv || (start > 0.0 && ps > 0.0 && start != ps);
    if restarted {
        return (start > 0.0 && start < t).then(|| value / (t - start));
    }
    Some((value - pv) / (t - pt))
}

/// The observations of a histogram point since the previous one, as (bucket counts, count per
/// second). A cumulative histogram is differenced bucket by bucket; a reset (a smaller count or bucket,
/// other bounds, a new start time) counts from the start time, or only re-bases when that is unknown.
pub fn hist_delta(
    prev: &mut Prev,
    cumulative: bool,
    t: f64,
    start: f64,
    bounds: Vec<f64>,
    counts: Vec<u64>,
) -> Option<(Vec<u64>, f64)> {
    let count: u64 = counts.iter().sum();
    let last = std::mem::take(prev);
    let (pt, ps, pcount, pbounds, pcounts) = match last {
        Prev::Hist {
            t,
            start,
            count,
            bounds,
            counts,
        } => (Some(t), start, count, bounds, counts),
        _ => (None, 0.0, 0, Vec::new(), Vec::new()),
    };
    if let Some(p) = pt {
        if t <= p {
            *prev = Prev::Hist {
                t: p,
                start: ps,
                count: pcount,
                bounds: pbounds,
                counts: pcounts,
            };
            return None;
        }
    }
    let since_start = (start > 0.0 && start < t).then_some(t - start);
    let out = if !cumulative {
        let span = since_start.or(pt.map(|p| t - p));
        span.map(|s| (counts.clone(), count as f64 / s))
    } else {
        match pt {
            None => None,
            Some(p) => {
                let same_layout = pbounds == bounds && pcounts.len() == counts.len();
                let grew = same_layout
                    && count >= pcount
                    && counts.iter().zip(&pcounts).all(|(c, pc)| c >= pc);
                let restarted = start > 0.0 && ps > 0.0 && start != ps;
                if grew && !restarted {
                    let delta: Vec<u64> =
                        counts.iter().zip(&pcounts).map(|(c, pc)| c - pc).collect();
                    Some((delta, (count - pcount) as f64 / (t - p)))
                } else {
                    since_start.map(|s| (counts.clone(), count as f64 / s))
                }
            }
        }
    };
    *prev = Prev::Hist {
        t,
        start,
        count,
        bounds,
        counts,
    };
    out
}

/// The `q` quantile of explicit-bucket counts (`counts.len() == bounds.len() + 1`), interpolated
/// linearly inside its bucket. The first bucket starts at 0 when its bound is positive; a quantile in
/// the overflow bucket is the highest finite bound, as Prometheus answers. `None` when empty or
/// malformed.
pub fn bucket_quantile(q: f64, bounds: &[f64], counts: &[u64]) -> Option<f64> {
    if counts.len() != bounds.len() + 1 || bounds.is_empty() {
        return None;
    }
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut cum = 0.0;
    for (i, &c) in counts.iter().enumerate() {
        let c = c as f64;
        if c > 0.0 && cum + c >= rank {
            if i == bounds.len() {
                return bounds.last().copied();
            }
            let upper = bounds[i];
            let lower = if i == 0 {
                if upper > 0.0 {
                    0.0
                } else {
                    return Some(upper);
                }
            } else {
                bounds[i - 1]
            };
            return Some(lower + (upper - lower) * ((rank - cum) / c));
        }
        cum += c;
    }
    bounds.last().copied()
}

/// An exponential histogram point in explicit-bucket form. Positive bucket `j` covers
/// `(base^(offset+j), base^(offset+j+1)]`; zero and negative observations go to the first bucket,
/// which is enough for the latencies and sizes these histograms carry.
pub fn exponential_to_explicit(p: &ExponentialHistogramDataPoint) -> (Vec<f64>, Vec<u64>) {
    let base = 2f64.powf(2f64.powi(-p.scale.clamp(-10, 20)));
    let low = p.zero_count
        + p.negative
            .as_ref()
            .map_or(0, |n| n.bucket_counts.iter().sum());
    let (offset, pos) = match &p.positive {
        Some(b) => (b.offset, b.bucket_counts.as_slice()),
        None => (0, &[][..]),
    };
    let bounds: Vec<f64> = (0..=pos.len())
        .map(|j| base.powf(f64::from(offset) + j as f64))
        .collect();
    let mut counts = Vec::with_capacity(bounds.len() + 1);
    counts.push(low);
    counts.extend_from_slice(pos);
    counts.push(0);
    (bounds, counts)
}

/// The suffix naming a quantile series: 0.99 → `p99`, 0.999 → `p99.9`, 0.5 → `p50`.
pub fn quantile_suffix(q: f64) -> String {
    let pct = format!("{:.4}", q * 100.0);
    let pct = pct.trim_end_matches('0').trim_end_matches('.');
    format!("p{pct}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_counter_becomes_a_rate_across_a_reset() {
        let mut p = Prev::None;
        assert_eq!(sum_rate(&mut p, true, 10.0, 1.0, 100.0), None);
        assert_eq!(sum_rate(&mut p, true, 20.0, 1.0, 150.0), Some(5.0));
        // Out of order: ignored, and the baseline stays.
        assert_eq!(sum_rate(&mut p, true, 15.0, 1.0, 120.0), None);
        assert_eq!(sum_rate(&mut p, true, 30.0, 1.0, 250.0), Some(10.0));
        // The process restarted at t=35: 20 since then, over 5 s.
        assert_eq!(sum_rate(&mut p, true, 40.0, 35.0, 20.0), Some(4.0));
        // A reset with no start time only re-bases.
        let mut p = Prev::None;
        sum_rate(&mut p, true, 10.0, 0.0, 100.0);
        assert_eq!(sum_rate(&mut p, true, 20.0, 0.0, 5.0), None);
        assert_eq!(sum_rate(&mut p, true, 30.0, 0.0, 25.0), Some(2.0));
    }

    #[test]
    fn delta_sum_is_per_second() {
        let mut p = Prev::None;
        assert_eq!(sum_rate(&mut p, false, 10.0, 5.0, 50.0), Some(10.0));
        let mut p = Prev::None;
        assert_eq!(sum_rate(&mut p, false, 10.0, 0.0, 50.0), None);
        assert_eq!(sum_rate(&mut p, false, 20.0, 0.0, 50.0), Some(5.0));
    }

    #[test]
    fn quantile_interpolates_within_the_bucket() {
        let bounds = [10.0, 20.0, 40.0];
        // 100 observations: 50 in (0,10], 40 in (10,20], 10 in (20,40].
        let counts = [50, 40, 10, 0];
        assert_eq!(bucket_quantile(0.5, &bounds, &counts), Some(10.0));
        assert_eq!(bucket_quantile(0.7, &bounds, &counts), Some(15.0));
        assert_eq!(bucket_quantile(0.95, &bounds, &counts), Some(30.0));
        // The overflow bucket answers with the highest finite bound.
        assert_eq!(bucket_quantile(0.99, &bounds, &[0, 0, 0, 5]), Some(40.0));
        assert_eq!(bucket_quantile(0.5, &bounds, &[0, 0, 0, 0]), None);
        assert_eq!(bucket_quantile(0.5, &bounds, &[1, 2]), None);
    }

    #[test]
    fn cumulative_histogram_is_differenced() {
        let mut p = Prev::None;
        let b = vec![10.0, 20.0];
        assert_eq!(
            hist_delta(&mut p, true, 10.0, 0.0, b.clone(), vec![5, 5, 0]),
            None
        );
        let (d, rate) = hist_delta(&mut p, true, 20.0, 0.0, b.clone(), vec![5, 15, 0]).unwrap();
        assert_eq!(d, vec![0, 10, 0]);
        assert_eq!(rate, 1.0);
        // Only the last interval's observations count: the p50 is in (10, 20], not (0, 10].
        assert_eq!(bucket_quantile(0.5, &b, &d), Some(15.0));
        // A reset with a known start counts from it.
        let (d, rate) = hist_delta(&mut p, true, 30.0, 28.0, b.clone(), vec![2, 0, 0]).unwrap();
        assert_eq!((d, rate), (vec![2, 0, 0], 1.0));
    }

    #[test]
    fn exponential_buckets_map_to_bounds() {
        use vigil_core::otlp::metrics::v1::exponential_histogram_data_point::Buckets;
        let p = ExponentialHistogramDataPoint {
            scale: 0,
            zero_count: 1,
            positive: Some(Buckets {
                offset: 1,
                bucket_counts: vec![3, 4],
            }),
            ..Default::default()
        };
        let (bounds, counts) = exponential_to_explicit(&p);
        assert_eq!(bounds, vec![2.0, 4.0, 8.0]);
        assert_eq!(counts, vec![1, 3, 4, 0]);
        assert_eq!(quantile_suffix(0.99), "p99");
        assert_eq!(quantile_suffix(0.999), "p99.9");
        assert_eq!(quantile_suffix(0.5), "p50");
    }
}
