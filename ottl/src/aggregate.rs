//! `aggregate_on_attributes`: merges a metric's data points that agree on the kept attributes (and
//! on their timestamp), as otelcol's aggregateutil does: attributes not listed are removed (all of
//! them for an empty list, none without a list), and each group becomes one point whose value is the group's sum, max,
//! min, mean, median or count. Histograms take `sum` only and merge when their bounds agree;
//! exponential histograms and summaries are refused with an error (`error_mode` decides).

use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point::Value as N, HistogramDataPoint, Metric, NumberDataPoint,
};

/// Keeps the listed attributes; none listed (`[]`) removes them all, and no list keeps them all
/// (then only points with the same attributes merge), as otelcol's README says.
fn keep_attrs(attrs: &mut Vec<KeyValue>, keep: Option<&[String]>) {
    if let Some(k) = keep {
        attrs.retain(|kv| k.contains(&kv.key));
    }
    attrs.sort_by(|a, b| a.key.cmp(&b.key));
}

/// The key points are grouped by: the kept attributes and the timestamp.
type GroupKey = (Vec<KeyValue>, u64);

/// Groups points by (attributes, timestamp), keeping first-seen order.
fn groups<P>(points: Vec<P>, key: impl Fn(&P) -> GroupKey) -> Vec<Vec<P>> {
    let mut out: Vec<(GroupKey, Vec<P>)> = Vec::new();
    for p in points {
        let k = key(&p);
        match out.iter_mut().find(|(g, _)| *g == k) {
            Some((_, v)) => v.push(p),
            None => out.push((k, vec![p])),
        }
    }
    out.into_iter().map(|(_, v)| v).collect()
}

fn number(points: Vec<NumberDataPoint>, func: &str) -> Result<NumberDataPoint, String> {
    let mut first = points
        .first()
        .cloned()
        .ok_or("aggregate_on_attributes: empty group")?;
    let ints = points.iter().all(|p| matches!(p.value, Some(N::AsInt(_))));
    let vals: Vec<f64> = points
        .iter()
        .map(|p| match p.value {
            Some(N::AsInt(i)) => i as f64,
            Some(N::AsDouble(d)) => d,
            None => 0.0,
        })
        .collect();
    let n = vals.len() as f64;
    let v = match func {
        "sum" => vals.iter().sum(),
        "max" => vals.iter().copied().fold(f64::MIN, f64::max),
        "min" => vals.iter().copied().fold(f64::MAX, f64::min),
        "mean" => vals.iter().sum::<f64>() / n,
        "count" => n,
        "median" => {
            let mut s = vals.clone();
            s.sort_by(|a, b| a.total_cmp(b));
            let mid = s.len() / 2;
            if s.len().is_multiple_of(2) {
                (s[mid - 1] + s[mid]) / 2.0
            } else {
                s[mid]
            }
        }
        o => return Err(format!("aggregate_on_attributes: unknown function {o:?}")),
    };
    first.value = Some(if ints || func == "count" {
        N::AsInt(v as i64)
    } else {
        N::AsDouble(v)
    });
    Ok(first)
}

fn histogram(points: Vec<HistogramDataPoint>) -> Result<HistogramDataPoint, String> {
    let mut it = points.into_iter();
    let mut acc = it.next().ok_or("aggregate_on_attributes: empty group")?;
    for p in it {
        if p.explicit_bounds != acc.explicit_bounds
            || p.bucket_counts.len() != acc.bucket_counts.len()
        {
            return Err(
                "aggregate_on_attributes: histogram points with different bounds cannot be merged"
                    .into(),
            );
        }
        acc.count += p.count;
        acc.sum = match (acc.sum, p.sum) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        acc.min = match (acc.min, p.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        acc.max = match (acc.max, p.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        for (a, b) in acc.bucket_counts.iter_mut().zip(&p.bucket_counts) {
            *a += b;
        }
    }
    Ok(acc)
}

/// Runs `aggregate_on_attributes(func, [keep])` on one metric.
pub fn on_attributes(m: &mut Metric, func: &str, keep: Option<&[String]>) -> Result<(), String> {
    let nums = |pts: &mut Vec<NumberDataPoint>| -> Result<(), String> {
        for p in pts.iter_mut() {
            keep_attrs(&mut p.attributes, keep);
        }
        let gs = groups(std::mem::take(pts), |p| {
            (p.attributes.clone(), p.time_unix_nano)
        });
        *pts = gs
            .into_iter()
            .map(|g| number(g, func))
            .collect::<Result<_, _>>()?;
        Ok(())
    };
    match &mut m.data {
        Some(Data::Gauge(g)) => nums(&mut g.data_points),
        Some(Data::Sum(s)) => nums(&mut s.data_points),
        Some(Data::Histogram(h)) => {
            if func != "sum" {
                return Err(format!(
                    "aggregate_on_attributes: a histogram aggregates with sum only, not {func:?}"
                ));
            }
            for p in h.data_points.iter_mut() {
                keep_attrs(&mut p.attributes, keep);
            }
            let gs = groups(std::mem::take(&mut h.data_points), |p| {
                (p.attributes.clone(), p.time_unix_nano)
            });
            h.data_points = gs
                .into_iter()
                .map(histogram)
                .collect::<Result<_, _>>()?;
            Ok(())
        }
        Some(Data::ExponentialHistogram(_)) | Some(Data::Summary(_)) => Err(format!(
            "aggregate_on_attributes: metric {:?} is an exponential histogram or summary, which vigil does not aggregate",
            m.name
        )),
        None => Ok(()),
    }
}
