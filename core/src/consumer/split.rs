//! Merging batches and cutting one at an item count: the two operations every batcher needs (the
//! `batch` processor and the exporters' `sending_queue::batch`), kept here so that both do them the
//! same way. OTLP nests items two or three levels deep (resource → scope → items, and metric → data
//! points), so a cut may fall inside a `ResourceSpans` or a `ScopeSpans`; the front part then gets a
//! copy of the resource and scope it came from, and the items themselves move.

use crate::otlp::logs::v1::{ResourceLogs, ScopeLogs};
use crate::otlp::metrics::v1::{
    metric::Data, ExponentialHistogram, Gauge, Histogram, Metric, ResourceMetrics, ScopeMetrics,
    Sum, Summary,
};
use crate::otlp::trace::v1::{ResourceSpans, ScopeSpans};
use crate::telemetry::{metric_point_count, Signal, Telemetry};

/// Appends `data` to `pending`, moving its resources without a copy. Returns `data`'s signal if it
/// is not `pending`'s.
pub fn merge(pending: &mut Telemetry, data: Telemetry) -> Result<(), Signal> {
    match (pending, data) {
        (Telemetry::Traces(p), Telemetry::Traces(mut d)) => append(p, &mut d),
        (Telemetry::Metrics(p), Telemetry::Metrics(mut d)) => append(p, &mut d),
        (Telemetry::Logs(p), Telemetry::Logs(mut d)) => append(p, &mut d),
        (_, d) => return Err(d.signal()),
    }
    Ok(())
}

fn append<T>(pending: &mut Vec<T>, data: &mut Vec<T>) {
    if pending.is_empty() {
        // Adopt the incoming vector instead of moving its elements one by one.
        std::mem::swap(pending, data);
    } else {
        pending.append(data);
    }
}

/// Moves the first `n` items (spans, data points, log records) of `data` out into a batch of their
/// own, in order.
pub fn take_front_items(data: &mut Telemetry, n: usize) -> Telemetry {
    match data {
        Telemetry::Traces(v) => Telemetry::Traces(take_front(v, n)),
        Telemetry::Metrics(v) => Telemetry::Metrics(take_front(v, n)),
        Telemetry::Logs(v) => Telemetry::Logs(take_front(v, n)),
    }
}

/// Cuts `data` into batches of at most `max` items each (`0` means no limit), in order.
pub fn split_max(mut data: Telemetry, max: usize) -> Vec<Telemetry> {
    let mut parts = Vec::new();
    if max > 0 {
        while data.item_count() > max {
            parts.push(take_front_items(&mut data, max));
        }
    }
    parts.push(data);
    parts
}

/// One level of OTLP nesting that holds countable items.
pub trait Chunk: Sized {
    /// Spans, data points or log records inside.
    fn items(&self) -> usize;
    /// Moves the first `n` items out into a new value with the same envelope (resource, scope or metric
    /// description). Called only with `0 < n < self.items()`.
    fn split_front(&mut self, n: usize) -> Self;
}

/// Moves the first `n` items of `v` out, in order. Whole elements move without a copy; at most one
/// element per level is split, and only its envelope is cloned.
pub fn take_front<T: Chunk>(v: &mut Vec<T>, n: usize) -> Vec<T> {
    let mut taken = 0;
    let mut whole = 0;
    for c in v.iter() {
        let k = c.items();
        if taken + k > n {
            break;
        }
        taken += k;
        whole += 1;
    }
    let rest = v.split_off(whole);
    let mut front = std::mem::replace(v, rest);
    if taken < n {
        // The loop stopped at an element holding more than the remainder, so this split is partial.
        if let Some(first) = v.first_mut() {
            front.push(first.split_front(n - taken));
        }
    }
    front
}

impl Chunk for ResourceSpans {
    fn items(&self) -> usize {
        self.scope_spans.iter().map(|s| s.spans.len()).sum()
    }

    fn split_front(&mut self, n: usize) -> Self {
        ResourceSpans {
            resource: self.resource.clone(),
            scope_spans: take_front(&mut self.scope_spans, n),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Chunk for ScopeSpans {
    fn items(&self) -> usize {
        self.spans.len()
    }

    fn split_front(&mut self, n: usize) -> Self {
        ScopeSpans {
            scope: self.scope.clone(),
            spans: self.spans.drain(..n).collect(),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Chunk for ResourceLogs {
    fn items(&self) -> usize {
        self.scope_logs.iter().map(|s| s.log_records.len()).sum()
    }

    fn split_front(&mut self, n: usize) -> Self {
        ResourceLogs {
            resource: self.resource.clone(),
            scope_logs: take_front(&mut self.scope_logs, n),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Chunk for ScopeLogs {
    fn items(&self) -> usize {
        self.log_records.len()
    }

    fn split_front(&mut self, n: usize) -> Self {
        ScopeLogs {
            scope: self.scope.clone(),
            log_records: self.log_records.drain(..n).collect(),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Chunk for ResourceMetrics {
    fn items(&self) -> usize {
        self.scope_metrics.iter().map(Chunk::items).sum()
    }

    fn split_front(&mut self, n: usize) -> Self {
        ResourceMetrics {
            resource: self.resource.clone(),
            scope_metrics: take_front(&mut self.scope_metrics, n),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Chunk for ScopeMetrics {
    fn items(&self) -> usize {
        self.metrics.iter().map(Chunk::items).sum()
    }

    fn split_front(&mut self, n: usize) -> Self {
        ScopeMetrics {
            scope: self.scope.clone(),
            metrics: take_front(&mut self.metrics, n),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Chunk for Metric {
    fn items(&self) -> usize {
        metric_point_count(self.data.as_ref())
    }

    fn split_front(&mut self, n: usize) -> Self {
        // Each data type keeps its own settings (temporality, monotonicity) on both halves.
        let data = match &mut self.data {
            Some(Data::Gauge(g)) => Some(Data::Gauge(Gauge {
                data_points: g.data_points.drain(..n).collect(),
            })),
            Some(Data::Sum(s)) => Some(Data::Sum(Sum {
                data_points: s.data_points.drain(..n).collect(),
                aggregation_temporality: s.aggregation_temporality,
                is_monotonic: s.is_monotonic,
            })),
            Some(Data::Histogram(h)) => Some(Data::Histogram(Histogram {
                data_points: h.data_points.drain(..n).collect(),
                aggregation_temporality: h.aggregation_temporality,
            })),
            Some(Data::ExponentialHistogram(h)) => {
                Some(Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: h.data_points.drain(..n).collect(),
                    aggregation_temporality: h.aggregation_temporality,
                }))
            }
            Some(Data::Summary(s)) => Some(Data::Summary(Summary {
                data_points: s.data_points.drain(..n).collect(),
            })),
            None => None,
        };
        Metric {
            name: self.name.clone(),
            description: self.description.clone(),
            unit: self.unit.clone(),
            metadata: self.metadata.clone(),
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::{get_str, kv_str};
    use crate::otlp::common::v1::InstrumentationScope;
    use crate::otlp::metrics::v1::{metric, AggregationTemporality, NumberDataPoint};
    use crate::otlp::resource::v1::Resource;
    use crate::otlp::trace::v1::Span;

    /// One resource per entry, named `r{i}`, with one scope per count, named `s{j}`, holding that
    /// many spans named `r{i}s{j}-{k}`.
    fn traces(shape: &[&[usize]]) -> Vec<ResourceSpans> {
        shape
            .iter()
            .enumerate()
            .map(|(i, scopes)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv_str("service.name", format!("r{i}"))],
                    ..Default::default()
                }),
                scope_spans: scopes
                    .iter()
                    .enumerate()
                    .map(|(j, &count)| ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: format!("s{j}"),
                            ..Default::default()
                        }),
                        spans: (0..count)
                            .map(|k| Span {
                                name: format!("r{i}s{j}-{k}"),
                                ..Default::default()
                            })
                            .collect(),
                        schema_url: String::new(),
                    })
                    .collect(),
                schema_url: format!("url{i}"),
            })
            .collect()
    }

    fn span_names(rs: &[ResourceSpans]) -> Vec<String> {
        rs.iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.name.clone())
            .collect()
    }

    #[test]
    fn split_inside_a_resource_keeps_resource_and_scope() {
        let mut rs = traces(&[&[3, 3], &[3, 3]]);
        let f = take_front(&mut rs, 8);
        let r = rs;
        assert_eq!(
            span_names(&f),
            ["r0s0-0", "r0s0-1", "r0s0-2", "r0s1-0", "r0s1-1", "r0s1-2", "r1s0-0", "r1s0-1"]
        );
        assert_eq!(span_names(&r), ["r1s0-2", "r1s1-0", "r1s1-1", "r1s1-2"]);
        // The cut resource and scope appear on both sides with their identity intact.
        let res = |x: &ResourceSpans| {
            get_str(&x.resource.as_ref().unwrap().attributes, "service.name").map(str::to_string)
        };
        assert_eq!(res(&f[1]).as_deref(), Some("r1"));
        assert_eq!(res(&r[0]).as_deref(), Some("r1"));
        assert_eq!(
            (f[1].schema_url.as_str(), r[0].schema_url.as_str()),
            ("url1", "url1")
        );
        assert_eq!(f[1].scope_spans[0].scope.as_ref().unwrap().name, "s0");
        assert_eq!(r[0].scope_spans[0].scope.as_ref().unwrap().name, "s0");
        assert_eq!(r[0].scope_spans[1].scope.as_ref().unwrap().name, "s1");
    }

    #[test]
    fn split_max_and_merge_keep_order_and_content() {
        let whole = traces(&[&[7, 6], &[12]]);
        let parts = split_max(Telemetry::Traces(whole.clone()), 10);
        let sizes: Vec<usize> = parts.iter().map(Telemetry::item_count).collect();
        assert_eq!(sizes, [10, 10, 5]);
        let mut back = Telemetry::empty(Signal::Traces);
        for p in parts {
            merge(&mut back, p).unwrap();
        }
        let Telemetry::Traces(back) = back else {
            unreachable!()
        };
        assert_eq!(span_names(&back), span_names(&whole));
        assert_eq!(split_max(Telemetry::Traces(whole), 0).len(), 1);
        let mut t = Telemetry::empty(Signal::Traces);
        assert_eq!(merge(&mut t, Telemetry::Logs(vec![])), Err(Signal::Logs));
    }

    #[test]
    fn split_inside_a_metric_keeps_its_settings() {
        let point = |v: i64| NumberDataPoint {
            value: Some(crate::otlp::metrics::v1::number_data_point::Value::AsInt(v)),
            ..Default::default()
        };
        let mut metrics = vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "requests".into(),
                    unit: "1".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: (0..5).map(point).collect(),
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }];
        let front = take_front(&mut metrics, 2);
        for (part, n) in [(&front, 2), (&metrics, 3)] {
            let m = &part[0].scope_metrics[0].metrics[0];
            assert_eq!((m.name.as_str(), m.unit.as_str()), ("requests", "1"));
            let Some(metric::Data::Sum(s)) = &m.data else {
                panic!("sum expected")
            };
            assert_eq!(s.data_points.len(), n);
            assert!(s.is_monotonic);
            assert_eq!(
                s.aggregation_temporality,
                AggregationTemporality::Cumulative as i32
            );
        }
    }
}
