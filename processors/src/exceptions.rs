//! `exceptions`: otelcol-contrib's connector that turns the `exception` events recorded on spans
//! into metrics and logs (traces → metrics, traces → logs).
//!
//! - Metrics: one cumulative monotonic sum, `exceptions`, counting exception events per
//!   `service.name`, `span.name`, `span.kind`, `status.code` and the configured `dimensions`
//!   (default `exception.type` and `exception.message`), looked up on the span's attributes, then
//!   on the event's, then the dimension's `default`. Every series is sent after each batch, as otelcol
//!   does; with `exemplars::enabled` each point carries the trace and span of the exceptions of that
//!   batch. The series table is bounded by [`MAX_SERIES`]: exceptions of a new series past it are
//!   not counted, and are counted in `vigil_exceptions_series_dropped`.
//! - Logs: one ERROR record per exception event, at the event's time, with the span's trace and
//!   span ids, the span's attributes, `span.name`, `span.kind`, `status.code`, `service.name`, the
//!   dimensions and `exception.stacktrace`.
//!
//! Spans whose resource has no `service.name` are skipped, as in otelcol. Not built: otelcol's
//! newer logs → metrics and logs → logs pairs (exceptions recorded on log records).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use vigil_core::attrs::{get, get_str, kv, kv_str, value_to_string};
use vigil_core::factory::{self, ConnectorFactory, DynConnectorFactory, FactoryBase};
use vigil_core::otlp::common::v1::{any_value::Value, InstrumentationScope, KeyValue};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use vigil_core::otlp::metrics::v1::{
    exemplar, metric, number_data_point, AggregationTemporality, Exemplar, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use vigil_core::otlp::trace::v1::{ResourceSpans, Span};
use vigil_core::time::now_nanos;
use vigil_core::{
    lock, ComponentId, ConfigError, ConnectorObs, ConsumeError, Consumer, NextConsumers, Settings,
    Signal, Stability, Telemetry,
};

/// Most series the metrics side keeps (otelcol keeps every one it has seen, without a bound).
pub const MAX_SERIES: usize = 10_000;
/// Exemplars a point carries at most (those of the last batch).
const MAX_EXEMPLARS: usize = 16;

/// One extra dimension.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    pub name: String,
    /// Used when neither the span nor the event has the attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// `exemplars`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExemplarsConfig {
    pub enabled: bool,
}

/// The `exceptions` connector config, as otelcol's `exceptionsconnector` (v0.159) reads it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExceptionsConfig {
    pub dimensions: Vec<Dimension>,
    pub exemplars: ExemplarsConfig,
}

impl Default for ExceptionsConfig {
    fn default() -> Self {
        ExceptionsConfig {
            dimensions: ["exception.type", "exception.message"]
                .map(|n| Dimension {
                    name: n.into(),
                    default: None,
                })
                .to_vec(),
            exemplars: ExemplarsConfig::default(),
        }
    }
}

const SERVICE_NAME: &str = "service.name";
const SPAN_NAME: &str = "span.name";
const SPAN_KIND: &str = "span.kind";
const STATUS_CODE: &str = "status.code";
const STACKTRACE: &str = "exception.stacktrace";

fn check(cfg: &ExceptionsConfig) -> Result<(), ConfigError> {
    let mut seen: Vec<&str> = vec![SERVICE_NAME, SPAN_NAME, SPAN_KIND, STATUS_CODE];
    for (i, d) in cfg.dimensions.iter().enumerate() {
        if seen.contains(&d.name.as_str()) {
            return Err(ConfigError::at(
                format!("dimensions::{i}::name"),
                format!("duplicate dimension name {:?}", d.name),
            ));
        }
        seen.push(&d.name);
    }
    Ok(())
}

struct Factory;

/// The `exceptions` connector factory.
pub fn factory() -> Arc<dyn DynConnectorFactory> {
    factory::connector(Factory)
}

impl FactoryBase for Factory {
    type Config = ExceptionsConfig;

    fn type_name(&self) -> &'static str {
        "exceptions"
    }

    fn validate(&self, _id: &ComponentId, cfg: &ExceptionsConfig) -> Result<(), ConfigError> {
        check(cfg)
    }
}

impl ConnectorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Signal, Stability)] {
        &[
            (Signal::Traces, Signal::Metrics, Stability::Alpha),
            (Signal::Traces, Signal::Logs, Stability::Alpha),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: ExceptionsConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn vigil_core::Connector>, ConfigError> {
        check(&cfg)?;
        Ok(Arc::new(Exceptions {
            dropped: metrics::counter!("vigil_exceptions_series_dropped", "connector" => set.id.to_string()),
            id: set.id.to_string(),
            obs: set.connector_obs(),
            start: now_nanos(),
            series: Mutex::new(HashMap::new()),
            cfg,
            next,
        }))
    }
}

struct Series {
    attrs: Vec<KeyValue>,
    count: u64,
    exemplars: Vec<Exemplar>,
}

struct Exceptions {
    id: String,
    cfg: ExceptionsConfig,
    next: NextConsumers,
    obs: ConnectorObs,
    start: u64,
    /// Series by their dimension values joined with NUL, as otelcol keys them.
    series: Mutex<HashMap<String, Series>>,
    dropped: metrics::Counter,
}

/// One exception event with what both outputs need.
struct Found<'a> {
    service: &'a str,
    span: &'a Span,
    event: &'a vigil_core::otlp::trace::v1::span::Event,
    scope: usize,
}

/// Every `exception` event of spans whose resource names a service, with its scope's index in
/// the resource (for the logs' scopes).
fn exceptions_of(rs: &ResourceSpans) -> Vec<Found<'_>> {
    let attrs = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes);
    let Some(service) = get_str(attrs, SERVICE_NAME) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (scope, ss) in rs.scope_spans.iter().enumerate() {
        for span in &ss.spans {
            for event in span.events.iter().filter(|e| e.name == "exception") {
                out.push(Found {
                    service,
                    span,
                    event,
                    scope,
                });
            }
        }
    }
    out
}

impl Exceptions {
    /// A dimension's value: the span's attribute, else the event's, else the default.
    fn dimension(&self, d: &Dimension, f: &Found<'_>) -> Option<Value> {
        get(&f.span.attributes, &d.name)
            .or_else(|| get(&f.event.attributes, &d.name))
            .cloned()
            .or_else(|| d.default.clone().map(Value::StringValue))
    }

    fn common(f: &Found<'_>) -> [KeyValue; 4] {
        [
            kv_str(SERVICE_NAME, f.service),
            kv_str(SPAN_NAME, f.span.name.clone()),
            kv_str(SPAN_KIND, crate::spanmetrics::kind_str(f.span.kind)),
            kv_str(STATUS_CODE, crate::spanmetrics::status_str(f.span)),
        ]
    }

    fn metrics(&self, batch: &[ResourceSpans]) -> Telemetry {
        let now = now_nanos();
        let mut table = lock(&self.series);
        for rs in batch {
            for f in exceptions_of(rs) {
                let mut attrs = Self::common(&f).to_vec();
                let mut key = attrs
                    .iter()
                    .filter_map(|a| a.value.as_ref()?.value.as_ref())
                    .map(value_to_string)
                    .collect::<Vec<_>>()
                    .join("\0");
                for d in &self.cfg.dimensions {
                    if let Some(v) = self.dimension(d, &f) {
                        key.push('\0');
                        key.push_str(&value_to_string(&v));
                        attrs.push(kv(&d.name, v));
                    }
                }
                if !table.contains_key(&key) && table.len() >= MAX_SERIES {
                    self.dropped.increment(1);
                    continue;
                }
                let s = table.entry(key).or_insert_with(|| Series {
                    attrs,
                    count: 0,
                    exemplars: Vec::new(),
                });
                s.count += 1;
                if self.cfg.exemplars.enabled && s.exemplars.len() < MAX_EXEMPLARS {
                    s.exemplars.push(Exemplar {
                        trace_id: f.span.trace_id.clone(),
                        span_id: f.span.span_id.clone(),
                        time_unix_nano: f.event.time_unix_nano,
                        value: Some(exemplar::Value::AsInt(1)),
                        ..Default::default()
                    });
                }
            }
        }
        let points = table
            .values_mut()
            .map(|s| NumberDataPoint {
                attributes: s.attrs.clone(),
                start_time_unix_nano: self.start,
                time_unix_nano: now,
                value: Some(number_data_point::Value::AsInt(s.count as i64)),
                // A batch's exemplars go out with that batch's points only.
                exemplars: std::mem::take(&mut s.exemplars),
                ..Default::default()
            })
            .collect();
        Telemetry::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "exceptionsconnector".into(),
                    ..Default::default()
                }),
                metrics: vec![Metric {
                    name: "exceptions".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: points,
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn logs(&self, batch: &[ResourceSpans]) -> Telemetry {
        let mut out = Vec::new();
        for rs in batch {
            let mut scopes: Vec<ScopeLogs> = Vec::new();
            let mut at: HashMap<usize, usize> = HashMap::new();
            for f in exceptions_of(rs) {
                let mut attrs = f.span.attributes.clone();
                for a in Self::common(&f) {
                    attrs.retain(|x| x.key != a.key);
                    attrs.push(a);
                }
                for d in &self.cfg.dimensions {
                    if let Some(v) = self.dimension(d, &f) {
                        attrs.retain(|x| x.key != d.name);
                        attrs.push(kv_str(&d.name, value_to_string(&v)));
                    }
                }
                let stack = get_str(&f.event.attributes, STACKTRACE).unwrap_or_default();
                attrs.retain(|x| x.key != STACKTRACE);
                attrs.push(kv_str(STACKTRACE, stack));
                let i = *at.entry(f.scope).or_insert_with(|| {
                    scopes.push(ScopeLogs {
                        scope: rs.scope_spans[f.scope].scope.clone(),
                        ..Default::default()
                    });
                    scopes.len() - 1
                });
                scopes[i].log_records.push(LogRecord {
                    time_unix_nano: f.event.time_unix_nano,
                    severity_number: SeverityNumber::Error as i32,
                    severity_text: "ERROR".into(),
                    trace_id: f.span.trace_id.clone(),
                    span_id: f.span.span_id.clone(),
                    attributes: attrs,
                    ..Default::default()
                });
            }
            if !scopes.is_empty() {
                // otelcol's records have an empty resource: `service.name` is an attribute.
                out.push(ResourceLogs {
                    scope_logs: scopes,
                    ..Default::default()
                });
            }
        }
        Telemetry::Logs(out)
    }
}

impl vigil_core::Component for Exceptions {}

#[async_trait]
impl Consumer for Exceptions {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let Telemetry::Traces(batch) = &data else {
            return Err(ConsumeError::permanent(
                format!("connector {} takes traces only", self.id),
                data.item_count(),
            ));
        };
        self.obs.consumed(Signal::Traces, data.item_count());
        let mut first_err = None;
        if let Some(next) = self.next.get(Signal::Metrics) {
            let m = self.metrics(batch);
            self.obs.produced(Signal::Metrics, m.item_count());
            if let Err(e) = next.consume(m).await {
                first_err.get_or_insert(e);
            }
        }
        if let Some(next) = self.next.get(Signal::Logs) {
            let l = self.logs(batch);
            if l.item_count() > 0 {
                self.obs.produced(Signal::Logs, l.item_count());
                if let Err(e) = next.consume(l).await {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::Keep;
    use serde_json::json;
    use vigil_core::attrs::kv_str;
    use vigil_core::otlp::resource::v1::Resource;
    use vigil_core::otlp::trace::v1::span::Event;
    use vigil_core::otlp::trace::v1::{status, ScopeSpans, Status};

    fn exc(kind: &str, msg: &str) -> Event {
        Event {
            name: "exception".into(),
            time_unix_nano: 42,
            attributes: vec![
                kv_str("exception.type", kind),
                kv_str("exception.message", msg),
                kv_str("exception.stacktrace", "at main()"),
            ],
            ..Default::default()
        }
    }

    fn batch(service: Option<&str>, events: Vec<Event>) -> Telemetry {
        Telemetry::Traces(vec![ResourceSpans {
            resource: Some(Resource {
                attributes: service
                    .map(|s| vec![kv_str("service.name", s)])
                    .unwrap_or_default(),
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![7; 16],
                    span_id: vec![8; 8],
                    name: "GET /cart".into(),
                    kind: 2,
                    status: Some(Status {
                        code: status::StatusCode::Error as i32,
                        message: String::new(),
                    }),
                    attributes: vec![kv_str("http.method", "GET")],
                    events,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn build(cfg: serde_json::Value) -> (Arc<dyn vigil_core::Connector>, Arc<Keep>, Arc<Keep>) {
        let (m, l) = (Arc::new(Keep::default()), Arc::new(Keep::default()));
        let mut next = NextConsumers::new();
        next.insert(Signal::Metrics, m.clone());
        next.insert(Signal::Logs, l.clone());
        let c = factory()
            .create(&ComponentId::parse("exceptions").unwrap(), &cfg, next)
            .expect("creates");
        (c, m, l)
    }

    fn attr(a: &[KeyValue], k: &str) -> String {
        get(a, k).map(value_to_string).unwrap_or_default()
    }

    #[tokio::test]
    async fn exception_events_are_counted_by_dimension_and_logged() {
        let (c, m, l) = build(serde_json::Value::Null);
        let ev = vec![
            exc("IOError", "disk full"),
            exc("IOError", "disk full"),
            exc("KeyError", "user"),
            Event {
                name: "retry".into(),
                ..Default::default()
            },
        ];
        c.consume(batch(Some("cart"), ev.clone())).await.unwrap();
        c.consume(batch(None, ev)).await.unwrap();
        let ms = vigil_core::lock(&m.0);
        let Some(Telemetry::Metrics(last)) = ms.last() else {
            panic!("metrics")
        };
        let metric = &last[0].scope_metrics[0].metrics[0];
        assert_eq!(metric.name, "exceptions");
        let Some(metric::Data::Sum(sum)) = &metric.data else {
            panic!("a sum")
        };
        assert!(sum.is_monotonic);
        let mut got: Vec<(String, String, String, String, i64)> = sum
            .data_points
            .iter()
            .map(|p| {
                assert_eq!(attr(&p.attributes, "service.name"), "cart");
                assert_eq!(attr(&p.attributes, "span.name"), "GET /cart");
                (
                    attr(&p.attributes, "span.kind"),
                    attr(&p.attributes, "status.code"),
                    attr(&p.attributes, "exception.type"),
                    attr(&p.attributes, "exception.message"),
                    match p.value {
                        Some(number_data_point::Value::AsInt(v)) => v,
                        _ => -1,
                    },
                )
            })
            .collect();
        got.sort();
        let e = |t: &str, m: &str, n| {
            (
                "SPAN_KIND_SERVER".to_string(),
                "STATUS_CODE_ERROR".to_string(),
                t.to_string(),
                m.to_string(),
                n,
            )
        };
        assert_eq!(
            got,
            vec![e("IOError", "disk full", 2), e("KeyError", "user", 1)]
        );
        let ls = vigil_core::lock(&l.0);
        assert_eq!(ls.len(), 1, "a resource without service.name gives no logs");
        let Telemetry::Logs(rl) = &ls[0] else {
            panic!()
        };
        let recs = &rl[0].scope_logs[0].log_records;
        assert_eq!(recs.len(), 3);
        let r = &recs[0];
        assert_eq!((r.severity_number, r.severity_text.as_str()), (17, "ERROR"));
        assert_eq!((r.trace_id.clone(), r.time_unix_nano), (vec![7; 16], 42));
        assert_eq!(
            attr(&r.attributes, "http.method"),
            "GET",
            "span attributes copied"
        );
        assert_eq!(attr(&r.attributes, "exception.stacktrace"), "at main()");
        assert_eq!(attr(&r.attributes, "exception.type"), "IOError");
        assert_eq!(attr(&r.attributes, "service.name"), "cart");
    }

    #[tokio::test]
    async fn counts_are_cumulative_and_defaults_fill_missing_dimensions() {
        let (c, m, _l) = build(json!({
            "dimensions": [{"name": "exception.type"}, {"name": "tenant", "default": "none"}],
            "exemplars": {"enabled": true}
        }));
        c.consume(batch(Some("cart"), vec![exc("E", "x")]))
            .await
            .unwrap();
        c.consume(batch(Some("cart"), vec![exc("E", "y")]))
            .await
            .unwrap();
        let ms = vigil_core::lock(&m.0);
        let Some(Telemetry::Metrics(last)) = ms.last() else {
            panic!()
        };
        let Some(metric::Data::Sum(sum)) = &last[0].scope_metrics[0].metrics[0].data else {
            panic!()
        };
        assert_eq!(sum.data_points.len(), 1, "message is not a dimension here");
        let p = &sum.data_points[0];
        assert_eq!(p.value, Some(number_data_point::Value::AsInt(2)));
        assert_eq!(attr(&p.attributes, "tenant"), "none");
        assert_eq!(p.exemplars.len(), 1, "the last batch's exemplar only");
        assert_eq!(p.exemplars[0].trace_id, vec![7; 16]);
    }

    #[test]
    fn config_cases() {
        let id = ComponentId::parse("exceptions/x").unwrap();
        crate::testdata::check_all("exceptions", 1, |v| {
            factory().validate(&id, v).map_err(|e| e.to_string())
        });
    }
}
