use super::*;
use serde_json::json;
use vigil_core::attrs::{get_str, kv_str};
use vigil_core::otlp::common::v1::{any_value::Value as Any, AnyValue};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};

use crate::testdata::Keep;

fn make(cfg: Json, signal: Signal) -> (Arc<dyn Processor>, Arc<Keep>) {
    let keep = Arc::new(Keep::default());
    let id = ComponentId::parse("transform/x").unwrap();
    (
        factory().create(&id, &cfg, signal, keep.clone()).unwrap(),
        keep,
    )
}

fn resource(kvs: Vec<vigil_core::otlp::common::v1::KeyValue>) -> Option<Resource> {
    Some(Resource {
        attributes: kvs,
        ..Default::default()
    })
}

fn spans(names: &[&str]) -> Telemetry {
    Telemetry::Traces(vec![ResourceSpans {
        resource: resource(vec![kv_str("deployment.environment", "prod")]),
        scope_spans: vec![ScopeSpans {
            spans: names
                .iter()
                .map(|n| Span {
                    name: n.to_string(),
                    kind: 2,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn logs(bodies: &[&str]) -> Telemetry {
    Telemetry::Logs(vec![ResourceLogs {
        resource: resource(vec![]),
        scope_logs: vec![ScopeLogs {
            log_records: bodies
                .iter()
                .map(|b| LogRecord {
                    body: Some(AnyValue {
                        value: Some(Any::StringValue(b.to_string())),
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

#[tokio::test]
async fn flat_statements_infer_their_context() {
    let (p, keep) = make(
        json!({"trace_statements": [
            "set(span.attributes[\"env\"], resource.attributes[\"deployment.environment\"])",
            "set(resource.attributes[\"team\"], \"core\")",
            "set(span.name, Concat([span.name, \"!\"], \"\")) where span.kind == SPAN_KIND_SERVER and span.name != \"skip\"",
        ]}),
        Signal::Traces,
    );
    p.consume(spans(&["a", "skip"])).await.unwrap();
    let got = keep.0.lock().unwrap();
    let Telemetry::Traces(rs) = &got[0] else {
        panic!()
    };
    let res = &rs[0].resource.as_ref().unwrap().attributes;
    assert_eq!(get_str(res, "team"), Some("core"));
    let s = &rs[0].scope_spans[0].spans;
    assert_eq!(s[0].name, "a!");
    assert_eq!(s[1].name, "skip");
    assert_eq!(get_str(&s[1].attributes, "env"), Some("prod"));
}

#[tokio::test]
async fn groups_with_conditions() {
    let (p, keep) = make(
        json!({"log_statements": [{
            "context": "log",
            "conditions": ["IsMatch(body, \"^\\\\{\")"],
            "statements": [
                "merge_maps(attributes, ParseJSON(body), \"upsert\")",
                "set(severity_text, attributes[\"level\"])",
                "delete_key(attributes, \"level\")",
            ],
        }]}),
        Signal::Logs,
    );
    p.consume(logs(&[r#"{"level":"WARN","user":"ann"}"#, "plain text"]))
        .await
        .unwrap();
    let got = keep.0.lock().unwrap();
    let Telemetry::Logs(rl) = &got[0] else {
        panic!()
    };
    let l = &rl[0].scope_logs[0].log_records;
    assert_eq!(l[0].severity_text, "WARN");
    assert_eq!(get_str(&l[0].attributes, "user"), Some("ann"));
    assert_eq!(get_str(&l[0].attributes, "level"), None);
    assert!(l[1].attributes.is_empty());
    assert_eq!(l[1].severity_text, "");
}

#[tokio::test]
async fn data_points_and_metrics() {
    let (p, keep) = make(
        json!({"metric_statements": [
            {"context": "datapoint", "statements": [
                "set(value_double, value_double * 100) where metric.name == \"cpu.utilization\"",
                "set(attributes[\"unit\"], metric.unit)",
            ]},
            "set(metric.unit, \"%\") where metric.name == \"cpu.utilization\"",
        ]}),
        Signal::Metrics,
    );
    let data = Telemetry::Metrics(vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![Metric {
                name: "cpu.utilization".into(),
                unit: "1".into(),
                data: Some(Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint {
                        value: Some(number_data_point::Value::AsDouble(0.25)),
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    p.consume(data).await.unwrap();
    let got = keep.0.lock().unwrap();
    let Telemetry::Metrics(rm) = &got[0] else {
        panic!()
    };
    let m = &rm[0].scope_metrics[0].metrics[0];
    assert_eq!(m.unit, "%");
    let Some(Data::Gauge(g)) = &m.data else {
        panic!()
    };
    assert_eq!(
        g.data_points[0].value,
        Some(number_data_point::Value::AsDouble(25.0))
    );
    assert_eq!(get_str(&g.data_points[0].attributes, "unit"), Some("1"));
}

#[tokio::test]
async fn error_mode_decides() {
    let stmts = json!([
        "set(log.severity_number, log.body)",
        "set(log.attributes[\"after\"], true)",
    ]);
    let (p, keep) = make(
        json!({"error_mode": "propagate", "log_statements": stmts.clone()}),
        Signal::Logs,
    );
    let e = p.consume(logs(&["x"])).await.unwrap_err();
    assert!(e.to_string().contains("takes an int"), "{e}");
    assert!(keep.0.lock().unwrap().is_empty());

    // No error_mode is ignore, otelcol's default since v0.153.
    for mode in [None, Some("ignore"), Some("silent")] {
        let mut cfg = json!({"log_statements": stmts.clone()});
        if let Some(m) = mode {
            cfg["error_mode"] = json!(m);
        }
        let (p, keep) = make(cfg, Signal::Logs);
        p.consume(logs(&["x"])).await.unwrap();
        let got = keep.0.lock().unwrap();
        let Telemetry::Logs(rl) = &got[0] else {
            panic!()
        };
        let l = &rl[0].scope_logs[0].log_records[0];
        assert_eq!(
            l.attributes.len(),
            1,
            "the next statement ran under {mode:?}"
        );
    }
    // A group's own error_mode wins over the processor's.
    let (p, _keep) = make(
        json!({"error_mode": "ignore", "log_statements": [
            {"context": "log", "error_mode": "propagate", "statements": ["set(severity_number, body)"]}
        ]}),
        Signal::Logs,
    );
    assert!(p.consume(logs(&["x"])).await.is_err());
}

/// The cases under testdata/transform: each bad one names its key path and what is wrong, and the good
/// ones (in the style of otelcol's README) are accepted.
#[test]
fn testdata_cases() {
    let id = ComponentId::parse("transform/x").unwrap();
    crate::testdata::check_all("transform", 5, |v| {
        factory().validate(&id, v).map_err(|e| e.to_string())
    });
}

/// A group whose `statements` key is left empty (YAML null, as when it holds only an anchor) is a
/// group with no statements, as in otelcol: it validates and passes data through untouched.
#[tokio::test]
async fn a_group_with_empty_statements_is_accepted() {
    let cfg = json!({"log_statements": [{"context": "resource", "statements": null}]});
    let id = ComponentId::parse("transform/x").unwrap();
    factory().validate(&id, &cfg).unwrap();
    let (p, keep) = make(cfg, Signal::Logs);
    let batch = logs(&["a"]);
    p.consume(batch.clone()).await.unwrap();
    assert_eq!(
        keep.0.lock().unwrap().as_slice(),
        std::slice::from_ref(&batch)
    );
}

/// Splunk's gateway config: `merge_histogram_buckets(32, method="limit_buckets")` in the data point
/// context leaves at most 32 buckets of a 41-bucket histogram (groups of 2, each keeping its upper
/// bound), and the default method removes one bound; a gauge beside them is not touched.
#[tokio::test]
async fn merge_histogram_buckets_limits_and_removes_bounds() {
    use vigil_core::otlp::metrics::v1::{Histogram, HistogramDataPoint};
    let histogram = |name: &str| Metric {
        name: name.into(),
        data: Some(Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                explicit_bounds: (1..=40).map(f64::from).collect(),
                bucket_counts: (1..=41).collect(),
                count: (1..=41).sum(),
                ..Default::default()
            }],
            aggregation_temporality: 2,
        })),
        ..Default::default()
    };
    let gauge = Metric {
        name: "g".into(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                value: Some(number_data_point::Value::AsDouble(2.0)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    let (p, keep) = make(
        json!({"metric_statements": [
            {"context": "datapoint", "statements": [
                "merge_histogram_buckets(32, method=\"limit_buckets\") where metric.name == \"limited\"",
                "merge_histogram_buckets(2.0) where metric.name == \"one_less\"",
            ]},
        ]}),
        Signal::Metrics,
    );
    p.consume(Telemetry::Metrics(vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![histogram("limited"), histogram("one_less"), gauge.clone()],
            ..Default::default()
        }],
        ..Default::default()
    }]))
    .await
    .unwrap();
    let got = keep.0.lock().unwrap();
    let Telemetry::Metrics(rm) = &got[0] else {
        panic!()
    };
    let m = &rm[0].scope_metrics[0].metrics;
    let point = |i: usize| match &m[i].data {
        Some(Data::Histogram(h)) => h.data_points[0].clone(),
        o => panic!("{o:?}"),
    };
    let limited = point(0);
    assert_eq!(limited.bucket_counts.len(), 21);
    assert_eq!(limited.explicit_bounds.len(), 20);
    assert_eq!(limited.explicit_bounds[0], 2.0);
    assert_eq!(limited.bucket_counts[0], 3);
    assert_eq!(limited.bucket_counts.iter().sum::<u64>(), limited.count);
    let one_less = point(1);
    assert_eq!(one_less.explicit_bounds.len(), 39);
    assert!(!one_less.explicit_bounds.contains(&2.0));
    assert_eq!(one_less.bucket_counts[..2], [1, 2 + 3]);
    assert_eq!(m[2], gauge);
}

#[test]
fn merge_histogram_buckets_arguments_are_checked_when_parsed() {
    let id = ComponentId::parse("transform/x").unwrap();
    for (stmt, want) in [
        (
            "merge_histogram_buckets(0, method=\"limit_buckets\")",
            "positive integer",
        ),
        (
            "merge_histogram_buckets(2.5, method=\"limit_buckets\")",
            "positive integer",
        ),
        (
            "merge_histogram_buckets(3, method=\"nearest\")",
            "unsupported method \"nearest\"",
        ),
        ("merge_histogram_buckets(\"x\")", "is not a number"),
    ] {
        let cfg = json!({"metric_statements": [{"context": "datapoint", "statements": [stmt]}]});
        let e = factory().validate(&id, &cfg).expect_err(stmt).to_string();
        assert!(e.contains(want), "{stmt}: {e}");
    }
}

/// The Coralogix agent's `profile_statements`: resource statements run on a profiles batch and
/// leave the dictionary and samples as they came; a path into the profile itself is refused.
#[tokio::test]
async fn profile_statements_edit_resources() {
    use vigil_core::otlp::profiles::v1development::{
        Profile, ProfilesData, ProfilesDictionary, ResourceProfiles, Sample, ScopeProfiles,
    };
    let (p, keep) = make(
        json!({"profile_statements": [
            r#"set(resource.attributes["service.name"], resource.attributes["service.annotation"]) where resource.attributes["service.name"] == nil and resource.attributes["service.annotation"] != nil"#,
        ]}),
        Signal::Profiles,
    );
    let dictionary = Some(ProfilesDictionary {
        string_table: vec![String::new(), "cpu".into()],
        ..Default::default()
    });
    let data = ProfilesData {
        resource_profiles: vec![ResourceProfiles {
            resource: resource(vec![kv_str("service.annotation", "checkout")]),
            scope_profiles: vec![ScopeProfiles {
                profiles: vec![Profile {
                    samples: vec![Sample {
                        values: vec![7],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
        dictionary: dictionary.clone(),
    };
    p.consume(Telemetry::Profiles(data.clone())).await.unwrap();
    let Telemetry::Profiles(got) = keep.0.lock().unwrap()[0].clone() else {
        panic!("not profiles")
    };
    let attrs = &got.resource_profiles[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes;
    assert_eq!(get_str(attrs, "service.name"), Some("checkout"));
    assert_eq!(got.dictionary, dictionary);
    assert_eq!(
        got.resource_profiles[0].scope_profiles,
        data.resource_profiles[0].scope_profiles
    );

    let id = ComponentId::parse("transform/x").unwrap();
    let e = factory()
        .create(
            &id,
            &json!({"profile_statements": [r#"set(profile.period, 1)"#]}),
            Signal::Profiles,
            keep,
        )
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("profile_statements::0"), "{e}");
}
