use super::*;
use serde_json::json;
use std::sync::Mutex;
use vigil_core::attrs::{get_str, kv_str};
use vigil_core::lock;
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::trace::v1::{span::Event, ResourceSpans, ScopeSpans, Span};

struct Sink(Mutex<Vec<Telemetry>>);

#[async_trait]
impl Consumer for Sink {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        lock(&self.0).push(data);
        Ok(())
    }
}

fn connector(cfg: serde_json::Value) -> (Arc<dyn vigil_core::Connector>, Arc<Sink>) {
    let sink = Arc::new(Sink(Mutex::new(Vec::new())));
    let mut next = NextConsumers::new();
    next.insert(Signal::Metrics, sink.clone());
    let id = ComponentId::new("count", None);
    (factory().create(&id, &cfg, next).expect("create"), sink)
}

/// (resource service.name, metric name, attributes as text, count) of everything counted.
fn counted(sink: &Sink) -> Vec<(String, String, String, i64)> {
    let mut out = Vec::new();
    for t in lock(&sink.0).iter() {
        let Telemetry::Metrics(rms) = t else {
            panic!("metrics")
        };
        for rm in rms {
            let svc = rm
                .resource
                .as_ref()
                .and_then(|r| get_str(&r.attributes, "service.name"))
                .unwrap_or_default()
                .to_string();
            for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                let Some(metric::Data::Sum(s)) = &m.data else {
                    panic!("sum")
                };
                assert!(s.is_monotonic);
                assert_eq!(
                    s.aggregation_temporality,
                    AggregationTemporality::Delta as i32
                );
                for p in &s.data_points {
                    let attrs: Vec<String> = p
                        .attributes
                        .iter()
                        .map(|a| {
                            format!(
                                "{}={}",
                                a.key,
                                a.value
                                    .as_ref()
                                    .and_then(|v| v.value.as_ref())
                                    .map(vigil_core::attrs::value_to_string)
                                    .unwrap_or_default()
                            )
                        })
                        .collect();
                    let Some(number_data_point::Value::AsInt(n)) = p.value else {
                        panic!("int")
                    };
                    out.push((svc.clone(), m.name.clone(), attrs.join(","), n));
                }
            }
        }
    }
    out.sort();
    out
}

fn traces() -> Telemetry {
    let span = |name: &str, env: Option<&str>, events: usize| Span {
        name: name.into(),
        attributes: env.map(|e| vec![kv_str("env", e)]).unwrap_or_default(),
        events: vec![Event::default(); events],
        ..Default::default()
    };
    let rs = |svc: &str, spans: Vec<Span>| ResourceSpans {
        resource: Some(vigil_core::otlp::resource::v1::Resource {
            attributes: vec![kv_str("service.name", svc)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    };
    Telemetry::Traces(vec![
        rs(
            "a",
            vec![
                span("GET", Some("prod"), 2),
                span("GET", None, 0),
                span("POST", Some("dev"), 1),
            ],
        ),
        rs("b", vec![span("GET", Some("prod"), 0)]),
    ])
}

#[tokio::test]
async fn default_metrics_count_every_item_per_resource() {
    let (c, sink) = connector(json!(null));
    c.consume(traces()).await.expect("counted");
    assert_eq!(
        counted(&sink),
        vec![
            ("a".into(), "trace.span.count".into(), "".into(), 3),
            ("a".into(), "trace.span.event.count".into(), "".into(), 3),
            ("b".into(), "trace.span.count".into(), "".into(), 1),
        ]
    );
}

#[tokio::test]
async fn conditions_and_attributes_as_otelcol() {
    let (c, sink) = connector(json!({
        "spans": {
            "gets": {"conditions": ["name == \"GET\""], "attributes": [{"key": "env"}]},
            "by_env": {"attributes": [{"key": "env", "default_value": "none"}, {"key": "service.name"}]},
        },
        "spanevents": {},
    }));
    c.consume(traces()).await.expect("counted");
    assert_eq!(
        counted(&sink),
        vec![
            (
                "a".into(),
                "by_env".into(),
                "env=dev,service.name=a".into(),
                1
            ),
            (
                "a".into(),
                "by_env".into(),
                "env=none,service.name=a".into(),
                1
            ),
            (
                "a".into(),
                "by_env".into(),
                "env=prod,service.name=a".into(),
                1
            ),
            // the GET without env has no default: not counted
            ("a".into(), "gets".into(), "env=prod".into(), 1),
            // `spanevents: {}` is set: no default span event count
            (
                "b".into(),
                "by_env".into(),
                "env=prod,service.name=b".into(),
                1
            ),
            ("b".into(), "gets".into(), "env=prod".into(), 1),
        ]
    );
}

#[tokio::test]
async fn logs_are_counted_by_severity() {
    let (c, sink) = connector(
        json!({"logs": {"errors": {"conditions": ["severity_number >= SEVERITY_NUMBER_ERROR"]}}}),
    );
    let rec = |sev: i32| LogRecord {
        severity_number: sev,
        ..Default::default()
    };
    c.consume(Telemetry::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: vec![rec(9), rec(17), rec(21), rec(5)],
            ..Default::default()
        }],
        ..Default::default()
    }]))
    .await
    .expect("counted");
    assert_eq!(
        counted(&sink),
        vec![("".into(), "errors".into(), "".into(), 2)]
    );
}

#[test]
fn validate_refuses_bad_conditions_and_keys() {
    let id = ComponentId::new("count", None);
    for (cfg, want) in [
        (
            json!({"spans": {"x": {"conditions": ["name =="]}}}),
            "spans::x::conditions::0",
        ),
        (
            json!({"logs": {"x": {"attributes": [{"key": ""}]}}}),
            "attribute key missing",
        ),
        (
            json!({"logs": {"x": {"attributes": [{"key": "a"}, {"key": "a"}]}}}),
            "duplicate",
        ),
        (json!({"profiles": {}}), "profiles"),
        (
            json!({"metrics": {"x": {"attributes": [{"key": "a"}]}}}),
            "metrics attributes not supported",
        ),
    ] {
        let err = factory().validate(&id, &cfg).expect_err(&cfg.to_string());
        assert!(err.to_string().contains(want), "{cfg}: {err}");
    }
}
