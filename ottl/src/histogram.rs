//! `merge_histogram_buckets(target_value, [method])`, the data point context's bucket editor, with
//! the semantics of otelcol's transform processor. `remove_explicit_bound` (the default) drops the
//! bound equal to `target_value` (within 1e-12) and adds its bucket's count to the next bucket;
//! `limit_buckets` joins neighbouring buckets, `ceil(n / target_value)` at a time from the lowest,
//! until at most `target_value` buckets are left, keeping the upper bound of each group. A point
//! whose counts do not fit its bounds (`len(bounds) + 1`), or (`limit_buckets`) whose bounds do not
//! strictly increase, is left as it is, as upstream leaves it. Other point types are not touched.

use vigil_core::otlp::metrics::v1::HistogramDataPoint;

/// The two methods; the name is checked when the statement is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    RemoveExplicitBound,
    LimitBuckets,
}

impl Method {
    pub(crate) fn parse(s: &str) -> Result<Method, String> {
        match s {
            "remove_explicit_bound" => Ok(Method::RemoveExplicitBound),
            "limit_buckets" => Ok(Method::LimitBuckets),
            o => Err(format!(
                "merge_histogram_buckets: unsupported method {o:?}, expected \"remove_explicit_bound\" or \"limit_buckets\""
            )),
        }
    }
}

/// `target_value` as a bucket count, for `limit_buckets`: a whole number of at least 1.
pub(crate) fn max_buckets(target: f64) -> Result<usize, String> {
    if target < 1.0 || target.trunc() != target || target > usize::MAX as f64 {
        return Err(format!(
            "merge_histogram_buckets: target_value must be a positive integer when method is \"limit_buckets\", got {target}"
        ));
    }
    Ok(target as usize)
}

/// Removes the bound equal to `bound`, its bucket merged into the next one.
pub(crate) fn remove_bound(p: &mut HistogramDataPoint, bound: f64) {
    if p.explicit_bounds.len() + 1 != p.bucket_counts.len() || p.bucket_counts.len() == 1 {
        return;
    }
    let Some(i) = p
        .explicit_bounds
        .iter()
        .position(|b| (b - bound).abs() < 1e-12)
    else {
        return;
    };
    let c = p.bucket_counts.remove(i);
    p.bucket_counts[i] = p.bucket_counts[i].saturating_add(c);
    p.explicit_bounds.remove(i);
}

/// Joins neighbouring buckets until at most `max` are left.
pub(crate) fn limit(p: &mut HistogramDataPoint, max: usize) {
    let n = p.bucket_counts.len();
    if p.explicit_bounds.len() + 1 != n || n <= max || n <= 1 {
        return;
    }
    // NaN bounds count as not increasing, as in upstream's `!(b[i] > b[i-1])`.
    if p.explicit_bounds
        .windows(2)
        .any(|w| w[1].partial_cmp(&w[0]) != Some(std::cmp::Ordering::Greater))
    {
        return;
    }
    let group = n.div_ceil(max);
    p.bucket_counts = p
        .bucket_counts
        .chunks(group)
        .map(|c| c.iter().fold(0u64, |a, x| a.saturating_add(*x)))
        .collect();
    p.explicit_bounds = p
        .explicit_bounds
        .iter()
        .skip(group - 1)
        .step_by(group)
        .copied()
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(bounds: &[f64], counts: &[u64]) -> HistogramDataPoint {
        HistogramDataPoint {
            explicit_bounds: bounds.to_vec(),
            bucket_counts: counts.to_vec(),
            count: counts.iter().sum(),
            ..Default::default()
        }
    }

    #[test]
    fn remove_bound_merges_into_the_next_bucket() {
        let mut p = point(&[1.0, 2.0, 5.0], &[1, 2, 3, 4]);
        remove_bound(&mut p, 2.0);
        assert_eq!(p.explicit_bounds, [1.0, 5.0]);
        assert_eq!(p.bucket_counts, [1, 5, 4]);
        // The last bound goes into the overflow bucket.
        remove_bound(&mut p, 5.0);
        assert_eq!(
            (p.explicit_bounds.as_slice(), p.bucket_counts.as_slice()),
            (&[1.0][..], &[1, 9][..])
        );
        // An absent bound, or counts that do not fit the bounds, change nothing.
        remove_bound(&mut p, 3.0);
        assert_eq!(p.bucket_counts, [1, 9]);
        let mut bad = point(&[1.0, 2.0], &[1, 2]);
        remove_bound(&mut bad, 1.0);
        assert_eq!(bad.bucket_counts, [1, 2]);
    }

    #[test]
    fn limit_joins_neighbours_keeping_each_groups_upper_bound() {
        // 40 bounds, 41 buckets, at most 32: groups of 2, so 21 buckets and 20 bounds.
        let bounds: Vec<f64> = (1..=40).map(f64::from).collect();
        let counts: Vec<u64> = (1..=41).collect();
        let mut p = point(&bounds, &counts);
        limit(&mut p, 32);
        assert_eq!(p.bucket_counts.len(), 21);
        assert_eq!(p.explicit_bounds.len(), 20);
        assert_eq!(p.explicit_bounds[..3], [2.0, 4.0, 6.0]);
        assert_eq!(p.bucket_counts[..2], [1 + 2, 3 + 4]);
        assert_eq!(p.bucket_counts[20], 41);
        assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count);
        // 10 buckets to at most 3: groups of 4 → 3 buckets, bounds 4 and 8.
        let mut p = point(&[1., 2., 3., 4., 5., 6., 7., 8., 9.], &[1; 10]);
        limit(&mut p, 3);
        assert_eq!(p.explicit_bounds, [4.0, 8.0]);
        assert_eq!(p.bucket_counts, [4, 4, 2]);
        // Already small enough, or bounds out of order: untouched.
        let mut p = point(&[1.0, 2.0], &[1, 1, 1]);
        limit(&mut p, 3);
        assert_eq!(p.bucket_counts, [1, 1, 1]);
        let mut p = point(&[2.0, 1.0], &[1, 1, 1]);
        limit(&mut p, 1);
        assert_eq!(p.bucket_counts, [1, 1, 1]);
        // One bucket left: everything in it, no bounds.
        let mut p = point(&[1.0, 2.0], &[1, 2, 3]);
        limit(&mut p, 1);
        assert_eq!(
            (p.explicit_bounds.len(), p.bucket_counts.as_slice()),
            (0, &[6][..])
        );
    }

    #[test]
    fn limit_buckets_wants_a_whole_positive_number() {
        assert_eq!(max_buckets(32.0), Ok(32));
        for bad in [0.0, -1.0, 2.5, f64::NAN] {
            assert!(max_buckets(bad).is_err(), "{bad}");
        }
        assert!(Method::parse("nearest").is_err());
    }
}
