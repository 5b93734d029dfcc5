//! `groupbyattrs`: otelcol's group-by-attributes processor. Each span, log record and metric data
//! point that carries any of `keys` loses those attributes to its resource: records are regrouped
//! under a resource made of the original resource's attributes plus the extracted ones (which win
//! over a resource attribute of the same key), merged with any other record that ends up with the
//! same resource and scope. Records with none of the keys stay under their original resource,
//! which is merged with identical resources too, so `keys: []` compacts a batch (otelcol's
//! documented use after `groupbytrace` or a batch of many small requests).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use vigil_core::factory::{self, DynProcessorFactory, FactoryBase, ProcessorFactory};
use vigil_core::otlp::common::v1::{InstrumentationScope, KeyValue};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::metrics::v1::{metric::Data, Metric, ResourceMetrics, ScopeMetrics};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
use vigil_core::{
    Component, ComponentId, ConfigError, ConsumeError, Consumer, Processor, Settings, Signal,
    Stability, Telemetry,
};

/// The `groupbyattrs` processor config.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupByAttrsConfig {
    /// Record attributes moved to the resource and grouped by; empty: only compaction.
    pub keys: Vec<String>,
}

struct Factory;

/// The `groupbyattrs` processor factory (`group_by_attrs` is accepted too).
pub fn factory() -> Arc<dyn DynProcessorFactory> {
    factory::processor(Factory)
}

impl FactoryBase for Factory {
    type Config = GroupByAttrsConfig;

    fn type_name(&self) -> &'static str {
        "groupbyattrs"
    }

    fn validate(&self, _id: &ComponentId, cfg: &GroupByAttrsConfig) -> Result<(), ConfigError> {
        if let Some(i) = cfg.keys.iter().position(|k| k.is_empty()) {
            return Err(ConfigError::at(
                format!("keys::{i}"),
                "expected an attribute name, got an empty string",
            ));
        }
        if let Some((i, k)) = cfg
            .keys
            .iter()
            .enumerate()
            .find(|(i, k)| cfg.keys[..*i].contains(k))
        {
            return Err(ConfigError::at(
                format!("keys::{i}"),
                format!("duplicate key {k:?}"),
            ));
        }
        Ok(())
    }
}

impl ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Beta),
            (Signal::Metrics, Stability::Beta),
            (Signal::Logs, Stability::Beta),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: GroupByAttrsConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let what = match signal {
            Signal::Traces => "spans",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
            // Not in the stability table, so never created for profiles.
            Signal::Profiles => "profiles",
        };
        let p = set.id.to_string();
        Ok(Arc::new(GroupByAttrs {
            keys: cfg.keys,
            next,
            obs: set.processor_obs(signal),
            grouped: metrics::counter!(format!("otelcol_processor_groupbyattrs_num_grouped_{what}"), "processor" => p.clone()),
            non_grouped: metrics::counter!(format!("otelcol_processor_groupbyattrs_num_non_grouped_{what}"), "processor" => p),
        }))
    }
}

/// A running `groupbyattrs` processor.
pub struct GroupByAttrs {
    keys: Vec<String>,
    next: Arc<dyn Consumer>,
    obs: vigil_core::ProcessorObs,
    grouped: metrics::Counter,
    non_grouped: metrics::Counter,
}

/// Attributes compared as sets: order does not make two resources differ.
fn same_attrs(a: &[KeyValue], b: &[KeyValue]) -> bool {
    a.len() == b.len() && a.iter().all(|kv| b.iter().any(|o| o == kv))
}

fn same_resource(a: &Option<Resource>, b: &Option<Resource>) -> bool {
    let attrs = |r: &Option<Resource>| r.as_ref().map(|r| r.attributes.clone()).unwrap_or_default();
    same_attrs(&attrs(a), &attrs(b))
        && a.as_ref().map_or(0, |r| r.dropped_attributes_count)
            == b.as_ref().map_or(0, |r| r.dropped_attributes_count)
}

fn same_scope(a: &Option<InstrumentationScope>, b: &Option<InstrumentationScope>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.name == b.name && a.version == b.version && same_attrs(&a.attributes, &b.attributes)
        }
        (Some(s), None) | (None, Some(s)) => {
            s.name.is_empty() && s.version.is_empty() && s.attributes.is_empty()
        }
    }
}

impl GroupByAttrs {
    /// Takes the grouping attributes out of `attrs` and returns the resource the record belongs to.
    fn regroup(&self, base: &Option<Resource>, attrs: &mut Vec<KeyValue>) -> Option<Resource> {
        let mut taken = Vec::new();
        for k in &self.keys {
            if let Some(i) = attrs.iter().position(|kv| &kv.key == k) {
                taken.push(attrs.remove(i));
            }
        }
        if taken.is_empty() {
            self.non_grouped.increment(1);
            return base.clone();
        }
        self.grouped.increment(1);
        let mut r = base.clone().unwrap_or_default();
        for kv in taken {
            match r.attributes.iter_mut().find(|o| o.key == kv.key) {
                Some(o) => *o = kv,
                None => r.attributes.push(kv),
            }
        }
        Some(r)
    }

    fn spans(&self, batch: Vec<ResourceSpans>) -> Vec<ResourceSpans> {
        let mut out: Vec<ResourceSpans> = Vec::new();
        for rs in batch {
            for ss in rs.scope_spans {
                for mut span in ss.spans {
                    let res = self.regroup(&rs.resource, &mut span.attributes);
                    let group = match out.iter().position(|g| same_resource(&g.resource, &res)) {
                        Some(i) => &mut out[i],
                        None => {
                            out.push(ResourceSpans {
                                resource: res,
                                scope_spans: Vec::new(),
                                schema_url: rs.schema_url.clone(),
                            });
                            out.last_mut().expect("just pushed")
                        }
                    };
                    push_scoped::<Span, ScopeSpans>(
                        &mut group.scope_spans,
                        &ss.scope,
                        &ss.schema_url,
                        span,
                        |s| &s.scope,
                        |s| &mut s.spans,
                        |scope, schema_url| ScopeSpans {
                            scope,
                            spans: Vec::new(),
                            schema_url,
                        },
                    );
                }
            }
        }
        out
    }

    fn logs(&self, batch: Vec<ResourceLogs>) -> Vec<ResourceLogs> {
        let mut out: Vec<ResourceLogs> = Vec::new();
        for rl in batch {
            for sl in rl.scope_logs {
                for mut rec in sl.log_records {
                    let res = self.regroup(&rl.resource, &mut rec.attributes);
                    let group = match out.iter().position(|g| same_resource(&g.resource, &res)) {
                        Some(i) => &mut out[i],
                        None => {
                            out.push(ResourceLogs {
                                resource: res,
                                scope_logs: Vec::new(),
                                schema_url: rl.schema_url.clone(),
                            });
                            out.last_mut().expect("just pushed")
                        }
                    };
                    push_scoped::<LogRecord, ScopeLogs>(
                        &mut group.scope_logs,
                        &sl.scope,
                        &sl.schema_url,
                        rec,
                        |s| &s.scope,
                        |s| &mut s.log_records,
                        |scope, schema_url| ScopeLogs {
                            scope,
                            log_records: Vec::new(),
                            schema_url,
                        },
                    );
                }
            }
        }
        out
    }

    fn metrics(&self, batch: Vec<ResourceMetrics>) -> Vec<ResourceMetrics> {
        let mut out: Vec<ResourceMetrics> = Vec::new();
        for rm in batch {
            for sm in rm.scope_metrics {
                for m in sm.metrics {
                    // Each data point goes where its own attributes send it; the metric's
                    // metadata is copied into each group it lands in.
                    for (res, point_metric) in self.split_metric(&rm.resource, m) {
                        let group = match out.iter().position(|g| same_resource(&g.resource, &res))
                        {
                            Some(i) => &mut out[i],
                            None => {
                                out.push(ResourceMetrics {
                                    resource: res,
                                    scope_metrics: Vec::new(),
                                    schema_url: rm.schema_url.clone(),
                                });
                                out.last_mut().expect("just pushed")
                            }
                        };
                        let scope = match group
                            .scope_metrics
                            .iter()
                            .position(|s| same_scope(&s.scope, &sm.scope))
                        {
                            Some(i) => &mut group.scope_metrics[i],
                            None => {
                                group.scope_metrics.push(ScopeMetrics {
                                    scope: sm.scope.clone(),
                                    metrics: Vec::new(),
                                    schema_url: sm.schema_url.clone(),
                                });
                                group.scope_metrics.last_mut().expect("just pushed")
                            }
                        };
                        merge_metric(&mut scope.metrics, point_metric);
                    }
                }
            }
        }
        out
    }

    /// One metric per data point, each with the resource that point belongs to.
    fn split_metric(&self, base: &Option<Resource>, m: Metric) -> Vec<(Option<Resource>, Metric)> {
        let shell = |data: Data| Metric {
            data: Some(data),
            ..m_without_data(&m)
        };
        let mut out = Vec::new();
        match m.data.clone() {
            Some(Data::Gauge(g)) => {
                for mut p in g.data_points {
                    let r = self.regroup(base, &mut p.attributes);
                    let mut g2 = vigil_core::otlp::metrics::v1::Gauge::default();
                    g2.data_points.push(p);
                    out.push((r, shell(Data::Gauge(g2))));
                }
            }
            Some(Data::Sum(s)) => {
                for mut p in s.data_points.clone() {
                    let r = self.regroup(base, &mut p.attributes);
                    let mut s2 = s.clone();
                    s2.data_points = vec![p];
                    out.push((r, shell(Data::Sum(s2))));
                }
            }
            Some(Data::Histogram(h)) => {
                for mut p in h.data_points.clone() {
                    let r = self.regroup(base, &mut p.attributes);
                    let mut h2 = h.clone();
                    h2.data_points = vec![p];
                    out.push((r, shell(Data::Histogram(h2))));
                }
            }
            Some(Data::ExponentialHistogram(h)) => {
                for mut p in h.data_points.clone() {
                    let r = self.regroup(base, &mut p.attributes);
                    let mut h2 = h.clone();
                    h2.data_points = vec![p];
                    out.push((r, shell(Data::ExponentialHistogram(h2))));
                }
            }
            Some(Data::Summary(s)) => {
                for mut p in s.data_points {
                    let r = self.regroup(base, &mut p.attributes);
                    let mut s2 = vigil_core::otlp::metrics::v1::Summary::default();
                    s2.data_points.push(p);
                    out.push((r, shell(Data::Summary(s2))));
                }
            }
            None => out.push((base.clone(), m)),
        }
        out
    }
}

/// Appends `item` to the scope in `scopes` equal to `scope`, creating it when there is none.
#[allow(clippy::too_many_arguments)]
fn push_scoped<T, S>(
    scopes: &mut Vec<S>,
    scope: &Option<InstrumentationScope>,
    schema_url: &str,
    item: T,
    scope_of: impl Fn(&S) -> &Option<InstrumentationScope>,
    items_of: impl Fn(&mut S) -> &mut Vec<T>,
    make: impl Fn(Option<InstrumentationScope>, String) -> S,
) {
    let i = match scopes.iter().position(|s| same_scope(scope_of(s), scope)) {
        Some(i) => i,
        None => {
            scopes.push(make(scope.clone(), schema_url.to_string()));
            scopes.len() - 1
        }
    };
    items_of(&mut scopes[i]).push(item);
}

/// Adds a one-point metric to the metric of the same name, type and metadata in `metrics`.
fn merge_metric(metrics: &mut Vec<Metric>, m: Metric) {
    let same = |a: &Metric| {
        a.name == m.name
            && a.unit == m.unit
            && a.description == m.description
            && std::mem::discriminant(&a.data) == std::mem::discriminant(&m.data)
            && match (&a.data, &m.data) {
                (Some(Data::Sum(x)), Some(Data::Sum(y))) => {
                    x.aggregation_temporality == y.aggregation_temporality
                        && x.is_monotonic == y.is_monotonic
                }
                (Some(Data::Histogram(x)), Some(Data::Histogram(y))) => {
                    x.aggregation_temporality == y.aggregation_temporality
                }
                (Some(Data::ExponentialHistogram(x)), Some(Data::ExponentialHistogram(y))) => {
                    x.aggregation_temporality == y.aggregation_temporality
                }
                (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
            }
    };
    let Some(target) = metrics.iter_mut().find(|a| same(a)) else {
        metrics.push(m);
        return;
    };
    match (&mut target.data, m.data) {
        (Some(Data::Gauge(x)), Some(Data::Gauge(y))) => x.data_points.extend(y.data_points),
        (Some(Data::Sum(x)), Some(Data::Sum(y))) => x.data_points.extend(y.data_points),
        (Some(Data::Histogram(x)), Some(Data::Histogram(y))) => x.data_points.extend(y.data_points),
        (Some(Data::ExponentialHistogram(x)), Some(Data::ExponentialHistogram(y))) => {
            x.data_points.extend(y.data_points)
        }
        (Some(Data::Summary(x)), Some(Data::Summary(y))) => x.data_points.extend(y.data_points),
        // `same` matched the data type, so only two metrics without data get here: nothing to add.
        _ => {}
    }
}

fn m_without_data(m: &Metric) -> Metric {
    Metric {
        name: m.name.clone(),
        description: m.description.clone(),
        unit: m.unit.clone(),
        metadata: m.metadata.clone(),
        data: None,
    }
}

impl Component for GroupByAttrs {}

#[async_trait]
impl Consumer for GroupByAttrs {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let n = data.item_count();
        self.obs.incoming(n);
        let out = match data {
            Telemetry::Traces(t) => Telemetry::Traces(self.spans(t)),
            Telemetry::Logs(l) => Telemetry::Logs(self.logs(l)),
            Telemetry::Metrics(m) => Telemetry::Metrics(self.metrics(m)),
            p @ Telemetry::Profiles(_) => p,
        };
        self.obs.outgoing(out.item_count());
        self.next.consume(out).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::Keep;
    use serde_json::json;
    use vigil_core::attrs::{get, kv_i64, kv_str};
    use vigil_core::otlp::common::v1::any_value::Value;
    use vigil_core::otlp::metrics::v1::{number_data_point, Gauge, NumberDataPoint};

    fn id() -> ComponentId {
        ComponentId::parse("groupbyattrs/x").unwrap()
    }

    fn res(attrs: Vec<KeyValue>) -> Option<Resource> {
        Some(Resource {
            attributes: attrs,
            ..Default::default()
        })
    }

    async fn run(keys: serde_json::Value, signal: Signal, data: Telemetry) -> Telemetry {
        let keep = Arc::new(Keep::default());
        let p = factory()
            .create(&id(), &json!({ "keys": keys }), signal, keep.clone())
            .unwrap();
        p.consume(data).await.unwrap();
        let mut out = vigil_core::lock(&keep.0);
        out.remove(0)
    }

    fn span(name: &str, attrs: Vec<KeyValue>) -> Span {
        Span {
            name: name.into(),
            attributes: attrs,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn spans_move_under_the_resource_of_their_keys() {
        let data = Telemetry::Traces(vec![
            ResourceSpans {
                resource: res(vec![kv_str("service.name", "api")]),
                scope_spans: vec![ScopeSpans {
                    spans: vec![
                        span("a", vec![kv_str("host.name", "h1"), kv_str("x", "1")]),
                        span("b", vec![kv_str("host.name", "h2")]),
                        span("c", vec![kv_str("x", "2")]),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            },
            ResourceSpans {
                resource: res(vec![kv_str("service.name", "api")]),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span("d", vec![kv_str("host.name", "h1")])],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ]);
        let Telemetry::Traces(out) = run(json!(["host.name"]), Signal::Traces, data).await else {
            panic!("traces")
        };
        let groups: Vec<(Option<String>, Vec<String>)> = out
            .iter()
            .map(|rs| {
                let host = rs
                    .resource
                    .as_ref()
                    .and_then(|r| get(&r.attributes, "host.name"))
                    .map(|v| format!("{v:?}"));
                let names = rs.scope_spans[0]
                    .spans
                    .iter()
                    .map(|s| s.name.clone())
                    .collect();
                (host, names)
            })
            .collect();
        assert_eq!(groups.len(), 3, "{groups:?}");
        assert_eq!(groups[0].1, ["a", "d"], "same host → one resource");
        assert_eq!(groups[1].1, ["b"]);
        assert_eq!(groups[2], (None, vec!["c".to_string()]));
        // The key left the span and service.name stayed on the resource.
        assert!(get(&out[0].scope_spans[0].spans[0].attributes, "host.name").is_none());
        assert_eq!(
            get(
                &out[0].resource.as_ref().unwrap().attributes,
                "service.name"
            ),
            Some(&Value::StringValue("api".into()))
        );
    }

    #[tokio::test]
    async fn no_keys_compacts_identical_resources() {
        let one = ResourceLogs {
            resource: res(vec![kv_str("a", "1"), kv_str("b", "2")]),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut two = one.clone();
        two.resource = res(vec![kv_str("b", "2"), kv_str("a", "1")]);
        let Telemetry::Logs(out) =
            run(json!([]), Signal::Logs, Telemetry::Logs(vec![one, two])).await
        else {
            panic!("logs")
        };
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].scope_logs.len(), 1);
        assert_eq!(out[0].scope_logs[0].log_records.len(), 2);
    }

    #[tokio::test]
    async fn metric_points_split_by_their_keys() {
        let point = |pod: &str, v: i64| NumberDataPoint {
            attributes: vec![kv_str("pod", pod), kv_i64("code", 200)],
            value: Some(number_data_point::Value::AsInt(v)),
            ..Default::default()
        };
        let data = Telemetry::Metrics(vec![ResourceMetrics {
            resource: res(vec![kv_str("k8s.cluster.name", "c")]),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "requests".into(),
                    unit: "1".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![point("p1", 1), point("p2", 2), point("p1", 3)],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let Telemetry::Metrics(out) = run(json!(["pod"]), Signal::Metrics, data).await else {
            panic!("metrics")
        };
        assert_eq!(out.len(), 2);
        let points = |i: usize| match &out[i].scope_metrics[0].metrics[0].data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            _ => 0,
        };
        assert_eq!((points(0), points(1)), (2, 1));
        assert_eq!(out[0].scope_metrics[0].metrics[0].name, "requests");
        let r = &out[0].resource.as_ref().unwrap().attributes;
        assert!(get(r, "pod").is_some() && get(r, "k8s.cluster.name").is_some());
    }

    #[test]
    fn config_errors() {
        let e = factory()
            .validate(&id(), &json!({"keys": ["a", ""]}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("keys::1: expected an attribute name"), "{e}");
        let e = factory()
            .validate(&id(), &json!({"key": ["a"]}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid keys: key"), "{e}");
    }
}
