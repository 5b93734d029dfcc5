//! Routing keys and how a batch is cut by them. Each part goes to the backend that owns its key on
//! the ring; a batch whose items all belong to one backend is passed on whole, without a copy.
//! Resources and scopes are cloned once per backend that receives a part of them.

use super::ring::HashRing;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, ExponentialHistogram, Gauge, Histogram, Metric, ResourceMetrics, ScopeMetrics,
    Sum, Summary,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde::{Deserialize, Serialize};
use vigil_core::{Signal, Telemetry};

/// `routing_key`, spelled as otelcol spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum RoutingKey {
    /// The span's or log record's trace id: every span of a trace lands on one backend.
    #[serde(rename = "traceID")]
    TraceId,
    /// The resource's `service.name`.
    #[serde(rename = "service")]
    Service,
    /// Every attribute of the resource.
    #[serde(rename = "resource")]
    Resource,
    /// The metric's name.
    #[serde(rename = "metric")]
    Metric,
    /// The data point's stream: resource, scope, metric name and point attributes.
    #[serde(rename = "streamID")]
    StreamId,
    /// otelcol's `routing_attributes`; refused at validate until vigil has it.
    #[serde(rename = "attributes")]
    Attributes,
}

impl RoutingKey {
    pub fn as_str(self) -> &'static str {
        match self {
            RoutingKey::TraceId => "traceID",
            RoutingKey::Service => "service",
            RoutingKey::Resource => "resource",
            RoutingKey::Metric => "metric",
            RoutingKey::StreamId => "streamID",
            RoutingKey::Attributes => "attributes",
        }
    }

    /// The signals this key can route, as otelcol's table lists them.
    pub fn signals(self) -> &'static [Signal] {
        match self {
            RoutingKey::TraceId => &[Signal::Traces, Signal::Logs],
            RoutingKey::Service => &[Signal::Traces, Signal::Logs, Signal::Metrics],
            RoutingKey::Resource => &[Signal::Logs, Signal::Metrics],
            RoutingKey::Metric | RoutingKey::StreamId => &[Signal::Metrics],
            RoutingKey::Attributes => &[],
        }
    }

    /// What otelcol uses when `routing_key` is not set.
    pub fn default_for(signal: Signal) -> RoutingKey {
        match signal {
            Signal::Traces => RoutingKey::TraceId,
            Signal::Logs | Signal::Metrics | Signal::Profiles => RoutingKey::Service,
        }
    }
}

/// Cuts `data` into one part per backend (indices into `ring.endpoints()`). `salt` is the key of
/// log records that carry no trace id (one random value per call, as otelcol routes such a batch
/// to a random backend). An empty ring yields nothing.
pub fn split(
    data: Telemetry,
    key: RoutingKey,
    ring: &HashRing,
    salt: [u8; 16],
) -> Vec<(usize, Telemetry)> {
    let n = ring.endpoints().len();
    if n == 0 {
        return Vec::new();
    }
    if n == 1 {
        return vec![(0, data)];
    }
    let at = |k: &[u8]| ring.endpoint_index(k).unwrap_or(0);
    match data {
        Telemetry::Traces(rss) => {
            let parts = match key {
                RoutingKey::TraceId => {
                    let pick = |s: &Span| at(&s.trace_id);
                    match same_spans(&rss, pick) {
                        Some(b) => return vec![(b, Telemetry::Traces(rss))],
                        None => split_spans(rss, n, pick),
                    }
                }
                _ => by_resource(rss, n, |r| at(&service_key(r.resource.as_ref()))),
            };
            numbered(parts, Telemetry::Traces)
        }
        Telemetry::Logs(rls) => {
            let parts = match key {
                RoutingKey::TraceId => {
                    let pick = |l: &LogRecord| {
                        if l.trace_id.is_empty() {
                            at(&salt)
                        } else {
                            at(&l.trace_id)
                        }
                    };
                    match same_logs(&rls, pick) {
                        Some(b) => return vec![(b, Telemetry::Logs(rls))],
                        None => split_logs(rls, n, pick),
                    }
                }
                RoutingKey::Resource => {
                    by_resource(rls, n, |r| at(&resource_key(r.resource.as_ref())))
                }
                _ => by_resource(rls, n, |r| at(&service_key(r.resource.as_ref()))),
            };
            numbered(parts, Telemetry::Logs)
        }
        Telemetry::Metrics(rms) => {
            let parts = match key {
                RoutingKey::Resource => {
                    by_resource(rms, n, |r| at(&resource_key(r.resource.as_ref())))
                }
                RoutingKey::Metric => {
                    split_metrics(rms, n, |_, _, m| vec![(at(m.name.as_bytes()), m)])
                }
                RoutingKey::StreamId => split_metrics(rms, n, |res, scope, m| {
                    let mut prefix = resource_key(res);
                    if let Some(s) = scope {
                        prefix.extend_from_slice(s.name.as_bytes());
                        prefix.push(0);
                        prefix.extend_from_slice(s.version.as_bytes());
                        prefix.push(0);
                    }
                    prefix.extend_from_slice(m.name.as_bytes());
                    prefix.push(0);
                    split_points(m, n, |attrs| {
                        let mut k = prefix.clone();
                        k.extend_from_slice(&attrs_key(attrs));
                        at(&k)
                    })
                }),
                _ => by_resource(rms, n, |r| at(&service_key(r.resource.as_ref()))),
            };
            numbered(parts, Telemetry::Metrics)
        }
        // Not in the stability table: this exporter never gets profiles.
        p @ Telemetry::Profiles(_) => vec![(0, p)],
    }
}

fn numbered<T>(parts: Vec<Vec<T>>, wrap: fn(Vec<T>) -> Telemetry) -> Vec<(usize, Telemetry)> {
    parts
        .into_iter()
        .enumerate()
        .filter(|(_, p)| !p.is_empty())
        .map(|(b, p)| (b, wrap(p)))
        .collect()
}

/// The bytes a resource's `service.name` routes by; empty when it has none, so such resources
/// share one backend.
fn service_key(r: Option<&Resource>) -> Vec<u8> {
    r.and_then(|r| vigil_core::attrs::get_str(&r.attributes, "service.name"))
        .unwrap_or_default()
        .as_bytes()
        .to_vec()
}

/// Every attribute of a resource, in key order, so that the same set in another order routes the
/// same way.
fn resource_key(r: Option<&Resource>) -> Vec<u8> {
    r.map(|r| attrs_key(&r.attributes)).unwrap_or_default()
}

fn attrs_key(attrs: &[KeyValue]) -> Vec<u8> {
    let mut sorted: Vec<&KeyValue> = attrs.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let mut out = Vec::new();
    for kv in sorted {
        kv.encode(&mut out).ok();
    }
    out
}

/// Whole resources to backends, by a key of the resource.
fn by_resource<T>(items: Vec<T>, n: usize, pick: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
    for item in items {
        let b = pick(&item).min(n - 1);
        out[b].push(item);
    }
    out
}

/// Items in buckets by backend, only the non-empty ones.
fn bucket<T>(items: Vec<T>, n: usize, mut pick: impl FnMut(&T) -> usize) -> Vec<(usize, Vec<T>)> {
    let mut out: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
    for item in items {
        let b = pick(&item).min(n - 1);
        out[b].push(item);
    }
    out.into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// The one backend every span belongs to, if there is one.
fn same_spans(rss: &[ResourceSpans], pick: impl Fn(&Span) -> usize) -> Option<usize> {
    let mut all = rss
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(pick);
    let first = all.next().unwrap_or(0);
    all.all(|b| b == first).then_some(first)
}

fn same_logs(rls: &[ResourceLogs], pick: impl Fn(&LogRecord) -> usize) -> Option<usize> {
    let mut all = rls
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .map(pick);
    let first = all.next().unwrap_or(0);
    all.all(|b| b == first).then_some(first)
}

fn split_spans(
    rss: Vec<ResourceSpans>,
    n: usize,
    pick: impl Fn(&Span) -> usize,
) -> Vec<Vec<ResourceSpans>> {
    let mut out: Vec<Vec<ResourceSpans>> = (0..n).map(|_| Vec::new()).collect();
    for mut rs in rss {
        let scopes = std::mem::take(&mut rs.scope_spans);
        let mut cur: Vec<Option<ResourceSpans>> = vec![None; n];
        for mut ss in scopes {
            let spans = std::mem::take(&mut ss.spans);
            for (b, spans) in bucket(spans, n, &pick) {
                cur[b]
                    .get_or_insert_with(|| ResourceSpans {
                        resource: rs.resource.clone(),
                        scope_spans: Vec::new(),
                        schema_url: rs.schema_url.clone(),
                    })
                    .scope_spans
                    .push(ScopeSpans {
                        scope: ss.scope.clone(),
                        spans,
                        schema_url: ss.schema_url.clone(),
                    });
            }
        }
        for (b, r) in cur.into_iter().enumerate() {
            if let Some(r) = r {
                out[b].push(r);
            }
        }
    }
    out
}

fn split_logs(
    rls: Vec<ResourceLogs>,
    n: usize,
    pick: impl Fn(&LogRecord) -> usize,
) -> Vec<Vec<ResourceLogs>> {
    let mut out: Vec<Vec<ResourceLogs>> = (0..n).map(|_| Vec::new()).collect();
    for mut rl in rls {
        let scopes = std::mem::take(&mut rl.scope_logs);
        let mut cur: Vec<Option<ResourceLogs>> = vec![None; n];
        for mut sl in scopes {
            let records = std::mem::take(&mut sl.log_records);
            for (b, log_records) in bucket(records, n, &pick) {
                cur[b]
                    .get_or_insert_with(|| ResourceLogs {
                        resource: rl.resource.clone(),
                        scope_logs: Vec::new(),
                        schema_url: rl.schema_url.clone(),
                    })
                    .scope_logs
                    .push(ScopeLogs {
                        scope: sl.scope.clone(),
                        log_records,
                        schema_url: sl.schema_url.clone(),
                    });
            }
        }
        for (b, r) in cur.into_iter().enumerate() {
            if let Some(r) = r {
                out[b].push(r);
            }
        }
    }
    out
}

type Scope = opentelemetry_proto::tonic::common::v1::InstrumentationScope;

/// Metrics cut below the scope: `cut` turns one metric into its parts per backend.
fn split_metrics(
    rms: Vec<ResourceMetrics>,
    n: usize,
    cut: impl Fn(Option<&Resource>, Option<&Scope>, Metric) -> Vec<(usize, Metric)>,
) -> Vec<Vec<ResourceMetrics>> {
    let mut out: Vec<Vec<ResourceMetrics>> = (0..n).map(|_| Vec::new()).collect();
    for mut rm in rms {
        let scopes = std::mem::take(&mut rm.scope_metrics);
        let mut cur: Vec<Option<ResourceMetrics>> = vec![None; n];
        for mut sm in scopes {
            let metrics = std::mem::take(&mut sm.metrics);
            let mut per: Vec<Vec<Metric>> = (0..n).map(|_| Vec::new()).collect();
            for m in metrics {
                for (b, part) in cut(rm.resource.as_ref(), sm.scope.as_ref(), m) {
                    per[b.min(n - 1)].push(part);
                }
            }
            for (b, metrics) in per.into_iter().enumerate() {
                if metrics.is_empty() {
                    continue;
                }
                cur[b]
                    .get_or_insert_with(|| ResourceMetrics {
                        resource: rm.resource.clone(),
                        scope_metrics: Vec::new(),
                        schema_url: rm.schema_url.clone(),
                    })
                    .scope_metrics
                    .push(ScopeMetrics {
                        scope: sm.scope.clone(),
                        metrics,
                        schema_url: sm.schema_url.clone(),
                    });
            }
        }
        for (b, r) in cur.into_iter().enumerate() {
            if let Some(r) = r {
                out[b].push(r);
            }
        }
    }
    out
}

/// One metric's data points by backend, each part a copy of the metric's description with its
/// points.
fn split_points(
    mut m: Metric,
    n: usize,
    pick: impl Fn(&[KeyValue]) -> usize,
) -> Vec<(usize, Metric)> {
    let Some(data) = m.data.take() else {
        return vec![(pick(&[]), m)];
    };
    let with = |m: &Metric, d: Data| Metric {
        data: Some(d),
        ..m.clone()
    };
    match data {
        Data::Gauge(g) => bucket(g.data_points, n, |p| pick(&p.attributes))
            .into_iter()
            .map(|(b, data_points)| (b, with(&m, Data::Gauge(Gauge { data_points }))))
            .collect(),
        Data::Sum(mut s) => {
            let points = std::mem::take(&mut s.data_points);
            bucket(points, n, |p| pick(&p.attributes))
                .into_iter()
                .map(|(b, data_points)| {
                    (
                        b,
                        with(
                            &m,
                            Data::Sum(Sum {
                                data_points,
                                ..s.clone()
                            }),
                        ),
                    )
                })
                .collect()
        }
        Data::Histogram(mut h) => {
            let points = std::mem::take(&mut h.data_points);
            bucket(points, n, |p| pick(&p.attributes))
                .into_iter()
                .map(|(b, data_points)| {
                    let d = Data::Histogram(Histogram {
                        data_points,
                        ..h.clone()
                    });
                    (b, with(&m, d))
                })
                .collect()
        }
        Data::ExponentialHistogram(mut h) => {
            let points = std::mem::take(&mut h.data_points);
            bucket(points, n, |p| pick(&p.attributes))
                .into_iter()
                .map(|(b, data_points)| {
                    let d = Data::ExponentialHistogram(ExponentialHistogram {
                        data_points,
                        ..h.clone()
                    });
                    (b, with(&m, d))
                })
                .collect()
        }
        Data::Summary(s) => bucket(s.data_points, n, |p| pick(&p.attributes))
            .into_iter()
            .map(|(b, data_points)| (b, with(&m, Data::Summary(Summary { data_points }))))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::metrics::v1::{number_data_point, NumberDataPoint};
    use vigil_core::attrs::kv_str;

    fn ring3() -> HashRing {
        HashRing::new(vec!["a:1".into(), "b:1".into(), "c:1".into()])
    }

    fn traces(services: &[&str], traces_per_service: u8) -> Telemetry {
        Telemetry::Traces(
            services
                .iter()
                .map(|s| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv_str("service.name", *s)],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "lib".into(),
                            ..Default::default()
                        }),
                        spans: (0..traces_per_service)
                            .flat_map(|t| {
                                (0..3u8).map(move |i| Span {
                                    trace_id: vec![t; 16],
                                    span_id: vec![i; 8],
                                    ..Default::default()
                                })
                            })
                            .collect(),
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                })
                .collect(),
        )
    }

    #[test]
    fn every_span_of_a_trace_goes_to_the_owner_of_its_trace_id() {
        let ring = ring3();
        let data = traces(&["a", "b"], 30);
        let parts = split(data.clone(), RoutingKey::TraceId, &ring, [0; 16]);
        assert!(
            parts.len() > 1,
            "30 traces over 3 backends use more than one"
        );
        let mut total = 0;
        for (b, part) in &parts {
            let Telemetry::Traces(rss) = part else {
                panic!("signal changed")
            };
            for rs in rss {
                assert!(rs.resource.is_some(), "resource kept");
                for ss in &rs.scope_spans {
                    assert_eq!(ss.scope.as_ref().unwrap().name, "lib", "scope kept");
                    for s in &ss.spans {
                        assert_eq!(ring.endpoint_index(&s.trace_id), Some(*b));
                        total += 1;
                    }
                }
            }
        }
        assert_eq!(total, data.item_count());
    }

    #[test]
    fn one_trace_is_passed_whole() {
        let data = traces(&["a", "b"], 1);
        let parts = split(data.clone(), RoutingKey::TraceId, &ring3(), [0; 16]);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].1, data);
    }

    #[test]
    fn service_routing_keeps_resources_whole() {
        let ring = ring3();
        let names: Vec<String> = (0..12).map(|i| format!("svc-{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let parts = split(traces(&refs, 2), RoutingKey::Service, &ring, [0; 16]);
        let mut seen = 0;
        for (b, part) in parts {
            let Telemetry::Traces(rss) = part else {
                panic!()
            };
            for rs in rss {
                let name = vigil_core::attrs::get_str(
                    &rs.resource.as_ref().unwrap().attributes,
                    "service.name",
                )
                .unwrap()
                .to_string();
                assert_eq!(ring.endpoint_index(name.as_bytes()), Some(b));
                assert_eq!(rs.scope_spans[0].spans.len(), 6);
                seen += 1;
            }
        }
        assert_eq!(seen, 12);
    }

    fn gauge(name: &str, hosts: &[&str]) -> Metric {
        Metric {
            name: name.into(),
            data: Some(Data::Gauge(Gauge {
                data_points: hosts
                    .iter()
                    .map(|h| NumberDataPoint {
                        attributes: vec![kv_str("host", *h)],
                        value: Some(number_data_point::Value::AsDouble(1.0)),
                        ..Default::default()
                    })
                    .collect(),
            })),
            ..Default::default()
        }
    }

    fn metrics() -> Telemetry {
        let hosts: Vec<String> = (0..20).map(|i| format!("h{i}")).collect();
        let h: Vec<&str> = hosts.iter().map(String::as_str).collect();
        Telemetry::Metrics(vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "api")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: (0..10).map(|i| gauge(&format!("m{i}"), &h)).collect(),
                ..Default::default()
            }],
            schema_url: String::new(),
        }])
    }

    #[test]
    fn metric_and_stream_routing_cut_below_the_resource_and_lose_nothing() {
        let ring = ring3();
        for key in [RoutingKey::Metric, RoutingKey::StreamId] {
            let data = metrics();
            let parts = split(data.clone(), key, &ring, [0; 16]);
            assert!(parts.len() > 1, "{key:?} spreads 200 points");
            let total: usize = parts.iter().map(|(_, p)| p.item_count()).sum();
            assert_eq!(total, data.item_count(), "{key:?}");
            for (b, p) in &parts {
                let Telemetry::Metrics(rms) = p else { panic!() };
                for m in rms
                    .iter()
                    .flat_map(|r| &r.scope_metrics)
                    .flat_map(|s| &s.metrics)
                {
                    if key == RoutingKey::Metric {
                        assert_eq!(ring.endpoint_index(m.name.as_bytes()), Some(*b));
                    }
                }
            }
        }
        // The same stream always lands on the same backend.
        let a = split(metrics(), RoutingKey::StreamId, &ring, [0; 16]);
        let b = split(metrics(), RoutingKey::StreamId, &ring, [0; 16]);
        assert_eq!(a, b);
    }

    #[test]
    fn logs_without_trace_id_go_together() {
        let rl = ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..50).map(|_| LogRecord::default()).collect(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let parts = split(
            Telemetry::Logs(vec![rl]),
            RoutingKey::TraceId,
            &ring3(),
            [7; 16],
        );
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].1.item_count(), 50);
    }
}
