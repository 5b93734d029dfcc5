use super::*;
use serde_json::json;
use vigil_core::attrs::{get, kv_str};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use vigil_core::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};

use crate::testdata::Keep;

fn id() -> ComponentId {
    ComponentId::parse("attributes/x").unwrap()
}

async fn run(config: Json, data: Telemetry) -> Telemetry {
    let keep = Arc::new(Keep::default());
    let p = factory()
        .create(&id(), &config, data.signal(), keep.clone())
        .unwrap();
    p.consume(data).await.unwrap();
    let out = keep.0.lock().unwrap().pop().unwrap();
    out
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv_str("service.name", service)],
        ..Default::default()
    })
}

fn spans(service: &str, names: &[&str]) -> ResourceSpans {
    ResourceSpans {
        resource: resource(service),
        scope_spans: vec![ScopeSpans {
            spans: names
                .iter()
                .map(|n| Span {
                    name: n.to_string(),
                    attributes: vec![kv_str("http.method", "GET")],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// `(service, span name, tagged)` for every span.
fn tagged(t: &Telemetry) -> Vec<(String, String, bool)> {
    let Telemetry::Traces(rs) = t else {
        panic!("traces expected")
    };
    rs.iter()
        .flat_map(|r| {
            let svc = vigil_core::attrs::get_str(
                &r.resource.as_ref().unwrap().attributes,
                "service.name",
            )
            .unwrap_or("")
            .to_string();
            r.scope_spans.iter().flat_map(|s| &s.spans).map(move |s| {
                (
                    svc.clone(),
                    s.name.clone(),
                    get(&s.attributes, "tag").is_some(),
                )
            })
        })
        .collect()
}

const TAG: &str = "tag";

fn tag_config(extra: Json) -> Json {
    let mut c = json!({"actions": [{"key": TAG, "value": "yes", "action": "insert"}]});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    c
}

#[tokio::test]
async fn acts_on_span_log_and_data_point_attributes() {
    let cfg = json!({"actions": [{"key": "env", "value": "prod", "action": "upsert"}]});
    let out = run(
        cfg.clone(),
        Telemetry::Traces(vec![spans("a", &["s1", "s2"])]),
    )
    .await;
    let Telemetry::Traces(rs) = &out else {
        unreachable!()
    };
    for span in &rs[0].scope_spans[0].spans {
        assert_eq!(
            get(&span.attributes, "env"),
            Some(&Value::StringValue("prod".into()))
        );
    }
    // The resource is not the attributes processor's business.
    assert!(get(&rs[0].resource.as_ref().unwrap().attributes, "env").is_none());

    let logs = Telemetry::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: vec![LogRecord::default(); 2],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    let Telemetry::Logs(rl) = run(cfg.clone(), logs).await else {
        unreachable!()
    };
    for rec in &rl[0].scope_logs[0].log_records {
        assert!(get(&rec.attributes, "env").is_some());
    }

    let metrics = Telemetry::Metrics(vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![
                Metric {
                    name: "g".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint::default(); 2],
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "h".into(),
                    data: Some(Data::Histogram(Histogram {
                        data_points: vec![HistogramDataPoint::default()],
                        aggregation_temporality: 2,
                    })),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    let Telemetry::Metrics(rm) = run(cfg, metrics).await else {
        unreachable!()
    };
    let ms = &rm[0].scope_metrics[0].metrics;
    let Some(Data::Gauge(g)) = &ms[0].data else {
        unreachable!()
    };
    assert!(g
        .data_points
        .iter()
        .all(|p| get(&p.attributes, "env").is_some()));
    let Some(Data::Histogram(h)) = &ms[1].data else {
        unreachable!()
    };
    assert!(get(&h.data_points[0].attributes, "env").is_some());
}

#[tokio::test]
async fn include_strict_by_service_and_span_name() {
    let cfg = tag_config(json!({"include": {
        "match_type": "strict", "services": ["checkout"], "span_names": ["pay", "refund"]
    }}));
    let data = Telemetry::Traces(vec![
        spans("checkout", &["pay", "list"]),
        spans("cart", &["pay"]),
    ]);
    let out = run(cfg, data).await;
    assert_eq!(
        tagged(&out),
        [
            ("checkout".into(), "pay".into(), true),
            ("checkout".into(), "list".into(), false),
            ("cart".into(), "pay".into(), false),
        ]
    );
}

#[tokio::test]
async fn exclude_regexp_and_attribute_conditions() {
    let cfg = tag_config(json!({
        "include": {"match_type": "strict", "attributes": [{"key": "http.method", "value": "GET"}]},
        "exclude": {"match_type": "regexp", "span_names": ["^health"]},
    }));
    let data = Telemetry::Traces(vec![spans("a", &["healthz", "get-user"])]);
    let out = run(cfg, data).await;
    assert_eq!(
        tagged(&out),
        [
            ("a".into(), "healthz".into(), false),
            ("a".into(), "get-user".into(), true)
        ]
    );

    // A resource condition with a regexp value, and an attribute that must only exist.
    let cfg = tag_config(json!({"include": {
        "match_type": "regexp",
        "resources": [{"key": "service.name", "value": "^check"}],
        "attributes": [{"key": "http.method"}],
    }}));
    let data = Telemetry::Traces(vec![spans("checkout", &["x"]), spans("cart", &["y"])]);
    let out = run(cfg, data).await;
    assert_eq!(
        tagged(&out),
        [
            ("checkout".into(), "x".into(), true),
            ("cart".into(), "y".into(), false)
        ]
    );
}

#[test]
fn config_errors() {
    let f = factory();
    let err = |c: Json| f.validate(&id(), &c).unwrap_err().to_string();
    assert_eq!(
        err(json!({})),
        "processors::attributes/x::actions: missing required field \"actions\": at least one action \
         is needed"
    );
    assert_eq!(
        err(
            json!({"actions": [{"key": "a", "value": 1, "action": "insert"}, {"key": "b", "acton": "delete"}]})
        ),
        "processors::attributes/x::actions::1::acton: has invalid keys: acton (expected one of \
         `key`, `action`, `value`, `from_attribute`, `pattern`, `converted_type`)"
    );
    assert_eq!(
        err(tag_config(json!({"include": {"services": ["a"]}}))),
        "processors::attributes/x::include::match_type: missing \"match_type\" (use strict or regexp)"
    );
    assert_eq!(
        err(tag_config(json!({"exclude": {"match_type": "expr", "services": ["a"]}}))),
        "processors::attributes/x::exclude::match_type: invalid match_type \"expr\" (use strict or \
         regexp)"
    );
    assert_eq!(
        err(tag_config(json!({"include": {"match_type": "strict"}}))),
        "processors::attributes/x::include: at least one of \"services\", \"span_names\", \
         \"metric_names\", \"attributes\" or \"resources\" must be specified"
    );
    assert!(err(tag_config(
        json!({"include": {"match_type": "regexp", "services": ["("]}})
    ))
    .starts_with("processors::attributes/x::include::services::0: invalid regexp \"(\""));
    assert!(err(tag_config(
        json!({"include": {"match_type": "strict", "libraries": [{"name": "x"}]}})
    ))
    .contains("has invalid keys: libraries"));

    // Signal-specific keys are checked when the pipeline is known.
    let e = f
        .create(
            &id(),
            &tag_config(json!({"include": {"match_type": "strict", "span_names": ["a"]}})),
            Signal::Logs,
            Arc::new(Keep::default()),
        )
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "processors::attributes/x::include::span_names: \"span_names\" applies to traces only, not \
         to a logs pipeline"
    );
}
