//! Cutting a batch at an item count. OTLP nests items two or three levels deep (resource → scope →
//! items, and metric → data points), so a cut may fall inside a `ResourceSpans` or a `ScopeSpans`; the
//! front part then gets a copy of the resource and scope it came from, and the items themselves move.

use vigil_core::otlp::logs::v1::{ResourceLogs, ScopeLogs};
use vigil_core::otlp::metrics::v1::{
    metric::Data, ExponentialHistogram, Gauge, Histogram, Metric, ResourceMetrics, ScopeMetrics,
    Sum, Summary,
};
use vigil_core::otlp::trace::v1::{ResourceSpans, ScopeSpans};
use vigil_core::telemetry::metric_point_count;

/// One level of OTLP nesting that holds countable items.
pub(crate) trait Chunk: Sized {
    /// Spans, data points or log records inside.
    fn items(&self) -> usize;
    /// Moves the first `n` items out into a new value with the same envelope (resource, scope or metric
    /// description). Called only with `0 < n < self.items()`.
    fn split_front(&mut self, n: usize) -> Self;
}

/// Moves the first `n` items of `v` out, in order. Whole elements move without a copy; at most one
/// element per level is split, and only its envelope is cloned.
pub(crate) fn take_front<T: Chunk>(v: &mut Vec<T>, n: usize) -> Vec<T> {
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
