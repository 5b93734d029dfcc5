//! `metricstransform`'s operations on one metric, and the merging of points that an aggregation
//! or a `combine` makes one: points with the same attributes and timestamp (and start, for delta
//! temporality; and bucket layout, for histograms) become one, with otelcol's aggregation types.
//! Groups keep the order in which their first point came, so the output is the same every run.

use std::collections::{BTreeSet, HashMap};
use vigil_core::otlp::common::v1::{any_value, KeyValue};
use vigil_core::otlp::metrics::v1::{
    exemplar, metric, number_data_point, AggregationTemporality, ExponentialHistogramDataPoint,
    HistogramDataPoint, Metric, NumberDataPoint,
};

use super::{empty_like, Aggregation, Compiled, Filter, Op, SubmatchCase};
use crate::points;

fn put_str(attrs: &mut Vec<KeyValue>, key: &str, value: &str) {
    vigil_core::attrs::upsert(attrs, key, any_value::Value::StringValue(value.to_string()));
}

/// Renames `label` to `new_label` and maps its values through `value_actions`, on the points
/// the transform's label filter selects.
pub(super) fn update_label(m: &mut Metric, op: &Op, filter: &Filter) {
    let (label, new_label) = (&op.cfg.label, &op.cfg.new_label);
    points::each_attrs(m, |attrs| {
        if !filter.attrs_match(attrs) {
            return;
        }
        let Some(i) = attrs.iter().position(|kv| &kv.key == label) else {
            return;
        };
        let mut key = label.clone();
        if !new_label.is_empty() {
            let kv = attrs.remove(i);
            attrs.retain(|o| &o.key != new_label);
            attrs.push(KeyValue {
                key: new_label.clone(),
                ..kv
            });
            key = new_label.clone();
        }
        let value = points::str_value(attrs, &key).unwrap_or_default();
        if let Some(to) = op.value_map.get(value) {
            let to = to.clone();
            put_str(attrs, &key, &to);
        }
    });
}

/// Sets `new_label` to `new_value` on every point, replacing a value it had.
pub(super) fn add_label(m: &mut Metric, op: &Op) {
    points::each_attrs(m, |attrs| {
        put_str(attrs, &op.cfg.new_label, &op.cfg.new_value)
    });
}

/// Drops the points whose `label` is `label_value`.
pub(super) fn delete_label_value(m: &mut Metric, op: &Op) {
    points::retain(m, |attrs| {
        points::str_value(attrs, &op.cfg.label) != Some(op.cfg.label_value.as_str())
    });
}

/// Integer points of a gauge or sum become doubles and doubles integers (truncated, as Go's
/// conversion does).
pub(super) fn toggle_scalar(m: &mut Metric, filter: &Filter) {
    let pts = match &mut m.data {
        Some(metric::Data::Gauge(g)) => &mut g.data_points,
        Some(metric::Data::Sum(s)) => &mut s.data_points,
        _ => return,
    };
    for p in pts.iter_mut().filter(|p| filter.attrs_match(&p.attributes)) {
        p.value = match p.value {
            Some(number_data_point::Value::AsInt(i)) => {
                Some(number_data_point::Value::AsDouble(i as f64))
            }
            Some(number_data_point::Value::AsDouble(d)) => {
                Some(number_data_point::Value::AsInt(d as i64))
            }
            None => None,
        };
    }
}

/// Multiplies gauge and sum values, and a histogram's sum, min, max, bounds and exemplars.
pub(super) fn scale(m: &mut Metric, op: &Op, filter: &Filter) {
    let k = op.cfg.experimental_scale;
    let scale_number = |v: &mut Option<number_data_point::Value>| {
        *v = match *v {
            Some(number_data_point::Value::AsInt(i)) => {
                Some(number_data_point::Value::AsInt((i as f64 * k) as i64))
            }
            Some(number_data_point::Value::AsDouble(d)) => {
                Some(number_data_point::Value::AsDouble(d * k))
            }
            None => None,
        }
    };
    match &mut m.data {
        Some(metric::Data::Gauge(g)) => g
            .data_points
            .iter_mut()
            .filter(|p| filter.attrs_match(&p.attributes))
            .for_each(|p| scale_number(&mut p.value)),
        Some(metric::Data::Sum(s)) => s
            .data_points
            .iter_mut()
            .filter(|p| filter.attrs_match(&p.attributes))
            .for_each(|p| scale_number(&mut p.value)),
        Some(metric::Data::Histogram(h)) => {
            for p in h
                .data_points
                .iter_mut()
                .filter(|p| filter.attrs_match(&p.attributes))
            {
                for v in [&mut p.sum, &mut p.min, &mut p.max].into_iter().flatten() {
                    *v *= k;
                }
                p.explicit_bounds.iter_mut().for_each(|b| *b *= k);
                for e in &mut p.exemplars {
                    e.value = match e.value {
                        Some(exemplar::Value::AsInt(i)) => {
                            Some(exemplar::Value::AsInt((i as f64 * k) as i64))
                        }
                        Some(exemplar::Value::AsDouble(d)) => {
                            Some(exemplar::Value::AsDouble(d * k))
                        }
                        None => None,
                    };
                }
            }
        }
        _ => {}
    }
}

/// Keeps only the labels of `label_set` and merges the points that became equal.
pub(super) fn aggregate_labels(m: &mut Metric, op: &Op) {
    if !matches!(m.data, Some(metric::Data::Summary(_))) {
        points::each_attrs(m, |attrs| attrs.retain(|kv| op.set.contains(&kv.key)));
    }
    regroup(m, op.cfg.aggregation_type);
}

/// Renames the values of `label` listed in `aggregated_values` to `new_value` and merges the
/// points that became equal.
pub(super) fn aggregate_label_values(m: &mut Metric, op: &Op) {
    if !matches!(m.data, Some(metric::Data::Summary(_))) {
        points::each_attrs(m, |attrs| {
            if let Some(v) = points::str_value(attrs, &op.cfg.label) {
                if op.set.contains(v) {
                    put_str(attrs, &op.cfg.label, &op.cfg.new_value);
                }
            }
        });
    }
    regroup(m, op.cfg.aggregation_type);
}

/// Why the metrics a `combine` selected cannot become one (otelcol's `canBeCombined`).
pub(super) fn can_be_combined(ms: &[&Metric]) -> Result<(), String> {
    let Some(first) = ms.first() else {
        return Ok(());
    };
    let keys = |m: &Metric| -> BTreeSet<String> {
        points::attrs(m)
            .iter()
            .flat_map(|a| a.iter().map(|kv| kv.key.clone()))
            .collect()
    };
    let first_keys = keys(first);
    for m in ms {
        if matches!(m.data, Some(metric::Data::Summary(_))) {
            return Err(format!("Summary metrics cannot be combined: {}", m.name));
        }
        if std::mem::discriminant(&m.data) != std::mem::discriminant(&first.data)
            || m.data.is_none() != first.data.is_none()
            || !same_type(&m.data, &first.data)
        {
            return Err(format!(
                "metrics cannot be combined as they are of different types: {} and {}",
                first.name, m.name
            ));
        }
        if m.unit != first.unit {
            return Err(format!(
                "metrics cannot be combined as they have different units: {} ({}) and {} ({})",
                first.name, first.unit, m.name, m.unit
            ));
        }
        if keys(m) != first_keys {
            return Err(format!(
                "metrics cannot be combined as they have different attributes: {} and {}",
                first.name, m.name
            ));
        }
        if points::temporality(m) != points::temporality(first) {
            return Err(format!(
                "metrics cannot be combined as they have different aggregation temporalities: {} and {}",
                first.name, m.name
            ));
        }
        if let (Some(metric::Data::Sum(a)), Some(metric::Data::Sum(b))) = (&m.data, &first.data) {
            if a.is_monotonic != b.is_monotonic {
                return Err(format!(
                    "metrics cannot be combined as they have different monotonicity: {} and {}",
                    first.name, m.name
                ));
            }
        }
    }
    Ok(())
}

fn same_type(a: &Option<metric::Data>, b: &Option<metric::Data>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => std::mem::discriminant(a) == std::mem::discriminant(b),
        (None, None) => true,
        _ => false,
    }
}

/// One metric named `new_name` from the metrics a `combine` took: each metric's points get a
/// label per regexp group of its name (the group's name, or `$1`, `$2`, …), then points that are
/// equal are merged with `aggregation_type`.
pub(super) fn combine(t: &Compiled, taken: Vec<Metric>) -> Metric {
    let mut out = Metric {
        name: t.new_name.clone(),
        unit: taken.first().map(|m| m.unit.clone()).unwrap_or_default(),
        data: taken.first().and_then(|m| empty_like(&m.data)),
        ..Default::default()
    };
    for mut m in taken {
        if let super::Matcher::Regexp(re) = &t.filter.name {
            if let Some(c) = re.captures(&m.name) {
                let labels: Vec<(String, String)> = re
                    .capture_names()
                    .enumerate()
                    .skip(1)
                    .filter_map(|(i, name)| {
                        let v = c.get(i)?.as_str();
                        if v.is_empty() {
                            return None;
                        }
                        let v = match t.submatch_case {
                            Some(SubmatchCase::Lower) => v.to_lowercase(),
                            Some(SubmatchCase::Upper) => v.to_uppercase(),
                            None => v.to_string(),
                        };
                        Some((name.map_or_else(|| format!("${i}"), str::to_string), v))
                    })
                    .collect();
                points::each_attrs(&mut m, |attrs| {
                    for (k, v) in &labels {
                        put_str(attrs, k, v);
                    }
                });
            }
        }
        match (&mut out.data, m.data) {
            (Some(metric::Data::Gauge(a)), Some(metric::Data::Gauge(b))) => {
                a.data_points.extend(b.data_points)
            }
            (Some(metric::Data::Sum(a)), Some(metric::Data::Sum(b))) => {
                a.data_points.extend(b.data_points)
            }
            (Some(metric::Data::Histogram(a)), Some(metric::Data::Histogram(b))) => {
                a.data_points.extend(b.data_points)
            }
            (
                Some(metric::Data::ExponentialHistogram(a)),
                Some(metric::Data::ExponentialHistogram(b)),
            ) => a.data_points.extend(b.data_points),
            _ => {}
        }
    }
    regroup(&mut out, t.aggregation);
    out
}

/// Merges the points of `m` that share attributes and timestamp (see the module doc). Summaries
/// are left as they are (otelcol cannot merge them either).
pub(crate) fn regroup(m: &mut Metric, agg: Option<Aggregation>) {
    let delta = points::temporality(m) == Some(AggregationTemporality::Delta);
    match &mut m.data {
        Some(metric::Data::Gauge(g)) => {
            g.data_points = merge_numbers(std::mem::take(&mut g.data_points), false, agg)
        }
        Some(metric::Data::Sum(s)) => {
            s.data_points = merge_numbers(std::mem::take(&mut s.data_points), delta, agg)
        }
        Some(metric::Data::Histogram(h)) => {
            h.data_points = merge_histograms(std::mem::take(&mut h.data_points), delta)
        }
        Some(metric::Data::ExponentialHistogram(h)) => {
            h.data_points = merge_exponential(std::mem::take(&mut h.data_points), delta)
        }
        _ => {}
    }
}

/// Groups points by `key`, keeping the order of each group's first point.
fn groups<P>(pts: Vec<P>, key: impl Fn(&P) -> String) -> Vec<Vec<P>> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<Vec<P>> = Vec::new();
    for p in pts {
        let k = key(&p);
        match index.get(&k) {
            Some(&i) => out[i].push(p),
            None => {
                index.insert(k, out.len());
                out.push(vec![p]);
            }
        }
    }
    out
}

fn base_key(attrs: &[KeyValue], time: u64, start: Option<u64>) -> String {
    let mut k = String::new();
    crate::cumulativetodelta::attrs_key(&mut k, attrs);
    k.push_str(&time.to_string());
    if let Some(s) = start {
        k.push('/');
        k.push_str(&s.to_string());
    }
    k
}

fn as_f64(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => 0.0,
    }
}

fn as_i64(p: &NumberDataPoint) -> i64 {
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d as i64,
        Some(number_data_point::Value::AsInt(i)) => i,
        None => 0,
    }
}

fn merge_numbers(
    pts: Vec<NumberDataPoint>,
    by_start: bool,
    agg: Option<Aggregation>,
) -> Vec<NumberDataPoint> {
    let key = |p: &NumberDataPoint| {
        base_key(
            &p.attributes,
            p.time_unix_nano,
            by_start.then_some(p.start_time_unix_nano),
        )
    };
    groups(pts, key)
        .into_iter()
        .filter_map(|group| {
            let start = group.iter().map(|p| p.start_time_unix_nano).min()?;
            let n = group.len();
            let mut out = group.first()?.clone();
            out.start_time_unix_nano = start;
            out.value = match out.value {
                Some(number_data_point::Value::AsDouble(_)) => {
                    let mut v: Vec<f64> = group.iter().map(as_f64).collect();
                    Some(number_data_point::Value::AsDouble(match agg {
                        Some(Aggregation::Sum) => v.iter().sum(),
                        Some(Aggregation::Mean) => v.iter().sum::<f64>() / n as f64,
                        Some(Aggregation::Max) => v.iter().copied().fold(f64::MIN, f64::max),
                        Some(Aggregation::Min) => v.iter().copied().fold(f64::MAX, f64::min),
                        Some(Aggregation::Count) => n as f64,
                        Some(Aggregation::Median) => {
                            v.sort_by(f64::total_cmp);
                            if n % 2 == 0 {
                                (v[n / 2 - 1] + v[n / 2]) / 2.0
                            } else {
                                v[n / 2]
                            }
                        }
                        None => v[0],
                    }))
                }
                Some(number_data_point::Value::AsInt(_)) => {
                    let mut v: Vec<i64> = group.iter().map(as_i64).collect();
                    Some(number_data_point::Value::AsInt(match agg {
                        Some(Aggregation::Sum) => v.iter().fold(0i64, |a, b| a.wrapping_add(*b)),
                        Some(Aggregation::Mean) => {
                            v.iter().fold(0i64, |a, b| a.wrapping_add(*b)) / n as i64
                        }
                        Some(Aggregation::Max) => v.iter().copied().max().unwrap_or_default(),
                        Some(Aggregation::Min) => v.iter().copied().min().unwrap_or_default(),
                        Some(Aggregation::Count) => n as i64,
                        Some(Aggregation::Median) => {
                            v.sort_unstable();
                            if n % 2 == 0 {
                                (v[n / 2 - 1] + v[n / 2]) / 2
                            } else {
                                v[n / 2]
                            }
                        }
                        None => v[0],
                    }))
                }
                None => None,
            };
            Some(out)
        })
        .collect()
}

fn merge_histograms(pts: Vec<HistogramDataPoint>, by_start: bool) -> Vec<HistogramDataPoint> {
    let key = |p: &HistogramDataPoint| {
        let mut k = base_key(
            &p.attributes,
            p.time_unix_nano,
            by_start.then_some(p.start_time_unix_nano),
        );
        k.push_str(&format!(
            "{:?}{}{}{}",
            p.explicit_bounds,
            p.min.is_some(),
            p.max.is_some(),
            p.flags
        ));
        k
    };
    groups(pts, key)
        .into_iter()
        .filter_map(|group| {
            let mut it = group.into_iter();
            let mut out = it.next()?;
            for p in it {
                out.start_time_unix_nano = out.start_time_unix_nano.min(p.start_time_unix_nano);
                if p.count == 0 {
                    continue;
                }
                out.count += p.count;
                fold_sum_min_max(
                    (&mut out.sum, &mut out.min, &mut out.max),
                    (p.sum, p.min, p.max),
                );
                add_counts(&mut out.bucket_counts, &p.bucket_counts);
                out.exemplars.extend(p.exemplars);
            }
            Some(out)
        })
        .collect()
}

/// Folds one histogram point's sum, min and max into the merged point's: the sums add; the merged
/// min (max) becomes the lower (higher) of the two when both have one, and is kept otherwise.
fn fold_sum_min_max(
    (sum, min, max): (&mut Option<f64>, &mut Option<f64>, &mut Option<f64>),
    (p_sum, p_min, p_max): (Option<f64>, Option<f64>, Option<f64>),
) {
    *sum = Some(sum.unwrap_or(0.0) + p_sum.unwrap_or(0.0));
    if let (Some(a), Some(b)) = (*min, p_min) {
        *min = Some(a.min(b));
    }
    if let (Some(a), Some(b)) = (*max, p_max) {
        *max = Some(a.max(b));
    }
}

fn add_counts(to: &mut Vec<u64>, from: &[u64]) {
    if to.len() < from.len() {
        to.resize(from.len(), 0);
    }
    for (a, b) in to.iter_mut().zip(from) {
        *a += b;
    }
}

fn merge_exponential(
    pts: Vec<ExponentialHistogramDataPoint>,
    by_start: bool,
) -> Vec<ExponentialHistogramDataPoint> {
    let key = |p: &ExponentialHistogramDataPoint| {
        let mut k = base_key(
            &p.attributes,
            p.time_unix_nano,
            by_start.then_some(p.start_time_unix_nano),
        );
        k.push_str(&format!(
            "{}/{}/{}/{}/{:?}/{:?}",
            p.scale,
            p.min.is_some(),
            p.max.is_some(),
            p.flags,
            p.negative.as_ref().map(|b| b.offset),
            p.positive.as_ref().map(|b| b.offset)
        ));
        k
    };
    groups(pts, key)
        .into_iter()
        .filter_map(|group| {
            let mut it = group.into_iter();
            let mut out = it.next()?;
            for p in it {
                out.start_time_unix_nano = out.start_time_unix_nano.min(p.start_time_unix_nano);
                if p.count == 0 {
                    continue;
                }
                out.count += p.count;
                out.zero_count += p.zero_count;
                fold_sum_min_max(
                    (&mut out.sum, &mut out.min, &mut out.max),
                    (p.sum, p.min, p.max),
                );
                for (to, from) in [
                    (&mut out.negative, p.negative),
                    (&mut out.positive, p.positive),
                ] {
                    if let Some(from) = from {
                        add_counts(
                            &mut to.get_or_insert_with(Default::default).bucket_counts,
                            &from.bucket_counts,
                        );
                    }
                }
                out.exemplars.extend(p.exemplars);
            }
            Some(out)
        })
        .collect()
}
