//! The transform processor's metric functions added after the first set (funcs.rs holds those):
//! `scale_metric`, the `convert_summary_*` trio and `aggregate_on_attribute_value`, with otelcol's
//! names, defaults and output shapes.

use crate::Value;
use vigil_core::otlp::common::v1::{any_value, AnyValue, KeyValue};
use vigil_core::otlp::metrics::v1::{
    exemplar, metric::Data, number_data_point::Value as N, AggregationTemporality, Gauge, Metric,
    NumberDataPoint, Sum, SummaryDataPoint,
};

fn factor(v: &Value) -> Result<f64, String> {
    match v {
        Value::Double(d) => Ok(*d),
        Value::Int(i) => Ok(*i as f64),
        o => Err(format!(
            "scale_metric: the factor is a {}, not a number",
            o.kind()
        )),
    }
}

/// `scale_metric(factor, [unit])`: every value of a gauge, sum, histogram (sum, min, max, bounds,
/// exemplars) or summary (sum, quantile values) multiplied; ints stay ints (truncated, as Go's
/// `int64(float64(v) * f)`); exponential histograms are an error, as upstream.
pub(crate) fn scale(m: &mut Metric, f: &Value, unit: &Value) -> Result<(), String> {
    let f = factor(f)?;
    let int = |i: i64| (i as f64 * f) as i64;
    match &mut m.data {
        Some(Data::Gauge(Gauge { data_points: pts }))
        | Some(Data::Sum(Sum {
            data_points: pts, ..
        })) => {
            for p in pts {
                p.value = match p.value {
                    Some(N::AsInt(i)) => Some(N::AsInt(int(i))),
                    Some(N::AsDouble(d)) => Some(N::AsDouble(d * f)),
                    None => None,
                };
            }
        }
        Some(Data::Histogram(h)) => {
            for p in &mut h.data_points {
                p.sum = p.sum.map(|x| x * f);
                p.min = p.min.map(|x| x * f);
                p.max = p.max.map(|x| x * f);
                for b in &mut p.explicit_bounds {
                    *b *= f;
                }
                for e in &mut p.exemplars {
                    e.value = match e.value {
                        Some(exemplar::Value::AsInt(i)) => Some(exemplar::Value::AsInt(int(i))),
                        Some(exemplar::Value::AsDouble(d)) => {
                            Some(exemplar::Value::AsDouble(d * f))
                        }
                        None => None,
                    };
                }
            }
        }
        Some(Data::Summary(s)) => {
            for p in &mut s.data_points {
                p.sum *= f;
                for q in &mut p.quantile_values {
                    q.value *= f;
                }
            }
        }
        Some(Data::ExponentialHistogram(_)) => {
            return Err(
                "exponential histograms are not supported by the 'scale_metric' function".into(),
            )
        }
        None => return Err(format!("scale_metric: metric {:?} has no data", m.name)),
    }
    match unit {
        Value::Nil => {}
        Value::Str(u) => m.unit = u.clone(),
        o => {
            return Err(format!(
                "scale_metric: the unit is a {}, not a string",
                o.kind()
            ))
        }
    }
    Ok(())
}

pub(crate) fn temporality(name: &str, v: &Value) -> Result<i32, String> {
    match v {
        Value::Str(s) if s == "delta" => Ok(AggregationTemporality::Delta as i32),
        Value::Str(s) if s == "cumulative" => Ok(AggregationTemporality::Cumulative as i32),
        o => Err(format!(
            "{name}: unknown aggregation temporality {:?}: expected \"cumulative\" or \"delta\"",
            o.to_text()
        )),
    }
}

/// The Sum metric `convert_summary_count_val_to_sum` / `convert_summary_sum_val_to_sum` build from
/// summary points: each point's count (an int) or sum (a double), attributes and times, the
/// summary's description and unit, named with the suffix (default `_count` / `_sum`).
pub(crate) fn summary_to_sum<'p>(
    m: &Metric,
    points: impl Iterator<Item = &'p SummaryDataPoint>,
    count: bool,
    temporality: i32,
    monotonic: bool,
    suffix: Option<String>,
) -> Metric {
    let suffix = suffix.unwrap_or_else(|| if count { "_count" } else { "_sum" }.into());
    let data_points = points
        .map(|p| NumberDataPoint {
            attributes: p.attributes.clone(),
            start_time_unix_nano: p.start_time_unix_nano,
            time_unix_nano: p.time_unix_nano,
            value: Some(if count {
                N::AsInt(p.count as i64)
            } else {
                N::AsDouble(p.sum)
            }),
            ..Default::default()
        })
        .collect();
    Metric {
        name: format!("{}{suffix}", m.name),
        description: m.description.clone(),
        unit: m.unit.clone(),
        data: Some(Data::Sum(Sum {
            data_points,
            aggregation_temporality: temporality,
            is_monotonic: monotonic,
        })),
        ..Default::default()
    }
}

/// Go's `strconv.FormatFloat(q, 'f', -1, 64)`, padded to two decimals (`0.5` -> `0.50`) as
/// otelcol writes a quantile attribute.
fn quantile_text(q: f64) -> String {
    let mut s = format!("{q}");
    if s.len() < 4 && s != "0" && s != "1" {
        s.push('0');
    }
    s
}

/// `convert_summary_quantile_val_to_gauge([attributeKey], [suffix])`: a gauge with one point per
/// quantile of each summary point (its value a double), the quantile in the attribute (default
/// `quantile`), named with the suffix (default `.quantiles`); the summary's unit and description.
pub(crate) fn summary_quantiles(
    m: &Metric,
    key: Option<String>,
    suffix: Option<String>,
) -> Option<Metric> {
    let Some(Data::Summary(s)) = &m.data else {
        return None;
    };
    let key = key.unwrap_or_else(|| "quantile".into());
    let mut data_points = Vec::new();
    for p in &s.data_points {
        for q in &p.quantile_values {
            let mut attributes = p.attributes.clone();
            attributes.retain(|kv| kv.key != key);
            attributes.push(crate::kv(
                key.clone(),
                Value::Str(quantile_text(q.quantile)),
            ));
            data_points.push(NumberDataPoint {
                attributes,
                start_time_unix_nano: p.start_time_unix_nano,
                time_unix_nano: p.time_unix_nano,
                value: Some(N::AsDouble(q.value)),
                ..Default::default()
            });
        }
    }
    Some(Metric {
        name: format!("{}{}", m.name, suffix.as_deref().unwrap_or(".quantiles")),
        description: m.description.clone(),
        unit: m.unit.clone(),
        data: Some(Data::Gauge(Gauge { data_points })),
        ..Default::default()
    })
}

fn rename_value(attrs: &mut [KeyValue], key: &str, values: &[String], new: &str) {
    for kv in attrs.iter_mut().filter(|kv| kv.key == key) {
        let hit = matches!(
            kv.value.as_ref().and_then(|v| v.value.as_ref()),
            Some(any_value::Value::StringValue(s)) if values.contains(s)
        );
        if hit {
            kv.value = Some(AnyValue {
                value: Some(any_value::Value::StringValue(new.to_string())),
            });
        }
    }
}

/// `aggregate_on_attribute_value(function, attribute, values, newValue)`: the listed values of the
/// attribute become `newValue`, then points with the same attributes (and time) merge by the
/// function, as `aggregate_on_attributes` without a list does.
pub(crate) fn on_attribute_value(
    m: &mut Metric,
    func: &str,
    key: &str,
    values: &[String],
    new: &str,
) -> Result<(), String> {
    match &mut m.data {
        Some(Data::Gauge(Gauge { data_points: pts }))
        | Some(Data::Sum(Sum {
            data_points: pts, ..
        })) => pts
            .iter_mut()
            .for_each(|p| rename_value(&mut p.attributes, key, values, new)),
        Some(Data::Histogram(h)) => h
            .data_points
            .iter_mut()
            .for_each(|p| rename_value(&mut p.attributes, key, values, new)),
        Some(Data::ExponentialHistogram(h)) => h
            .data_points
            .iter_mut()
            .for_each(|p| rename_value(&mut p.attributes, key, values, new)),
        Some(Data::Summary(s)) => s
            .data_points
            .iter_mut()
            .for_each(|p| rename_value(&mut p.attributes, key, values, new)),
        None => {}
    }
    crate::aggregate::on_attributes(m, func, None)
        .map_err(|e| e.replace("aggregate_on_attributes", "aggregate_on_attribute_value"))
}
