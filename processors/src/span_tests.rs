//! Cases written after the examples in otelcol-contrib's span processor README and
//! testdata/config.yaml (rewritten here, not copied), plus the edges vigil decides differently.

use super::*;
use crate::testdata::Keep;
use serde_json::{json, Value as Json};
use vigil_core::attrs::{get, get_str, kv, kv_str};
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::otlp::trace::v1::{ResourceSpans, ScopeSpans};

fn id() -> ComponentId {
    ComponentId::parse("span/x").unwrap()
}

fn span(name: &str, attrs: Vec<KeyValue>) -> Span {
    Span {
        name: name.into(),
        attributes: attrs,
        ..Default::default()
    }
}

fn batch(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv_str("service.name", service)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Runs `config` over the batches and returns the spans that came out, in order.
async fn run(config: Json, batches: Vec<ResourceSpans>) -> Vec<Span> {
    let keep = Arc::new(Keep::default());
    let p = factory()
        .create(&id(), &config, Signal::Traces, keep.clone())
        .unwrap();
    p.consume(Telemetry::Traces(batches)).await.unwrap();
    let out = vigil_core::lock(&keep.0).pop().unwrap();
    let Telemetry::Traces(rs) = out else {
        panic!("traces expected")
    };
    rs.into_iter()
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect()
}

async fn one(config: Json, s: Span) -> Span {
    run(config, vec![batch("svc", vec![s])]).await.remove(0)
}

fn err(config: Json) -> String {
    match factory().validate(&id(), &config) {
        Ok(()) => "the config was accepted".into(),
        Err(e) => e.to_string(),
    }
}

fn db_attrs() -> Vec<KeyValue> {
    vec![
        kv_str("db.svc", "location"),
        kv_str("operation", "get"),
        kv_str("id", "1234"),
    ]
}

#[tokio::test]
async fn from_attributes_joins_values_with_the_separator() {
    let cfg =
        json!({"name": {"separator": "::", "from_attributes": ["db.svc", "operation", "id"]}});
    let s = one(cfg, span("serviceA", db_attrs())).await;
    assert_eq!(s.name, "location::get::1234");
}

#[tokio::test]
async fn from_attributes_leaves_the_name_when_a_key_is_missing() {
    let cfg =
        json!({"name": {"separator": "::", "from_attributes": ["db.svc", "operation", "id"]}});
    let attrs = vec![kv_str("db.svc", "location"), kv_str("id", "1234")];
    assert_eq!(one(cfg, span("serviceA", attrs)).await.name, "serviceA");
}

#[tokio::test]
async fn from_attributes_without_separator_concatenates() {
    let cfg = json!({"name": {"from_attributes": ["db.svc", "operation", "id"]}});
    let s = one(cfg, span("serviceA", db_attrs())).await;
    assert_eq!(s.name, "locationget1234");
}

#[tokio::test]
async fn from_attributes_writes_each_value_type_as_otelcol() {
    let cfg = json!({"name": {"separator": "|", "from_attributes": ["b", "i", "d", "big", "inf", "arr"]}});
    let attrs = vec![
        kv("b", Value::BoolValue(true)),
        kv("i", Value::IntValue(-7)),
        kv("d", Value::DoubleValue(1.5)),
        kv("big", Value::DoubleValue(1e21)),
        kv("inf", Value::DoubleValue(f64::INFINITY)),
        kv(
            "arr",
            Value::ArrayValue(vigil_core::otlp::common::v1::ArrayValue::default()),
        ),
    ];
    let s = one(cfg, span("x", attrs)).await;
    assert_eq!(s.name, "true|-7|1.5|1000000000000000000000|+Inf|");
}

#[tokio::test]
async fn to_attributes_extracts_a_named_group_and_puts_a_placeholder() {
    let cfg = json!({"name": {"to_attributes": {"rules": [r"^\/api\/v1\/document\/(?P<documentId>.*)\/update$"]}}});
    // An existing attribute of the same key is overwritten.
    let s = one(
        cfg,
        span(
            "/api/v1/document/12345678/update",
            vec![kv_str("documentId", "old")],
        ),
    )
    .await;
    assert_eq!(s.name, "/api/v1/document/{documentId}/update");
    assert_eq!(get_str(&s.attributes, "documentId"), Some("12345678"));
    assert_eq!(s.attributes.len(), 1);
}

#[tokio::test]
async fn to_attributes_rules_run_in_turn_on_the_rewritten_name() {
    let rules = json!([
        r"^/api/(?P<version>v\d+)/",
        r"/document/(?P<documentId>\d+)/",
        r"^/api/\{version\}/document/\{documentId\}/(?P<op>\w+)$",
    ]);
    let cfg = json!({"name": {"to_attributes": {"rules": rules}}});
    let s = one(cfg, span("/api/v1/document/42/update", vec![])).await;
    assert_eq!(s.name, "/api/{version}/document/{documentId}/{op}");
    assert_eq!(get_str(&s.attributes, "version"), Some("v1"));
    assert_eq!(get_str(&s.attributes, "documentId"), Some("42"));
    assert_eq!(get_str(&s.attributes, "op"), Some("update"));

    // With break_after_match, only the first rule that matches is applied.
    let cfg = json!({"name": {"to_attributes": {"rules": rules, "break_after_match": true}}});
    let s = one(cfg, span("/other/document/42/update", vec![])).await;
    assert_eq!(s.name, "/other/document/{documentId}/update");
    assert_eq!(get_str(&s.attributes, "documentId"), Some("42"));
    assert!(get(&s.attributes, "op").is_none());
    assert!(get(&s.attributes, "version").is_none());
}

#[tokio::test]
async fn keep_original_name_extracts_but_does_not_rename() {
    let cfg = json!({"name": {"to_attributes": {
        "rules": [r"^(?P<db_system>\w+)\.query$", r"^(?P<whole>.+)$"],
        "keep_original_name": true
    }}});
    let s = one(cfg, span("postgresql.query", vec![])).await;
    assert_eq!(s.name, "postgresql.query");
    assert_eq!(get_str(&s.attributes, "db_system"), Some("postgresql"));
    // The second rule saw the original name too.
    assert_eq!(get_str(&s.attributes, "whole"), Some("postgresql.query"));
}

#[tokio::test]
async fn unnamed_and_unmatched_groups_extract_nothing() {
    let cfg =
        json!({"name": {"to_attributes": {"rules": [r"^/(v1|v2)/(?P<id>\d+)(?P<suffix>/x)?$"]}}});
    let s = one(cfg, span("/v2/17", vec![])).await;
    assert_eq!(s.name, "/v2/{id}");
    assert_eq!(get_str(&s.attributes, "id"), Some("17"));
    assert_eq!(s.attributes.len(), 1, "{:?}", s.attributes);
}

#[tokio::test]
async fn from_attributes_runs_before_to_attributes() {
    let cfg = json!({"name": {
        "from_attributes": ["http.method", "http.route"],
        "separator": " ",
        "to_attributes": {"rules": [r"^(?P<verb>[A-Z]+) "]}
    }});
    let attrs = vec![kv_str("http.method", "GET"), kv_str("http.route", "/users")];
    let s = one(cfg, span("handler", attrs)).await;
    assert_eq!(s.name, "{verb} /users");
    assert_eq!(get_str(&s.attributes, "verb"), Some("GET"));
}

#[tokio::test]
async fn include_exclude_select_the_spans() {
    // After otelcol's includeexclude example: services containing "banks", names with a '/',
    // except "donot/change"; the whole name becomes an attribute.
    let cfg = json!({
        "include": {"match_type": "regexp", "services": ["banks"], "span_names": ["^(.*?)/(.*?)$"]},
        "exclude": {"match_type": "strict", "span_names": ["donot/change"]},
        "name": {"to_attributes": {"rules": ["(?P<operation_website>.*?)$"]}}
    });
    let out = run(
        cfg,
        vec![
            batch(
                "banks-eu",
                vec![
                    span("www.bank.example/login", vec![]),
                    span("donot/change", vec![]),
                    span("noslash", vec![]),
                ],
            ),
            batch("shop", vec![span("a/b", vec![])]),
        ],
    )
    .await;
    let names: Vec<&str> = out.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["{operation_website}", "donot/change", "noslash", "a/b"]
    );
    assert_eq!(
        get_str(&out[0].attributes, "operation_website"),
        Some("www.bank.example/login")
    );
    assert!(out[1..].iter().all(|s| s.attributes.is_empty()));
}

#[tokio::test]
async fn status_is_set_with_its_description() {
    let cfg =
        json!({"status": {"code": "Error", "description": "some additional error description"}});
    let s = one(cfg, span("x", vec![])).await;
    let st = s.status.unwrap();
    assert_eq!(st.code, StatusCode::Error as i32);
    assert_eq!(st.message, "some additional error description");

    // Ok and Unset clear the message.
    for (code, want) in [("Ok", StatusCode::Ok), ("Unset", StatusCode::Unset)] {
        let mut sp = span("x", vec![]);
        sp.status = Some(Status {
            code: StatusCode::Error as i32,
            message: "boom".into(),
        });
        let s = one(json!({"status": {"code": code}}), sp).await;
        let st = s.status.unwrap();
        assert_eq!((st.code, st.message.as_str()), (want as i32, ""));
    }
}

#[tokio::test]
async fn status_only_where_include_matches() {
    // After otelcol's set_status_ok example: Ok only where http.status_code is 400.
    let cfg = json!({
        "include": {"match_type": "strict", "attributes": [{"key": "http.status_code", "value": 400}]},
        "status": {"code": "Ok"}
    });
    let out = run(
        cfg,
        vec![batch(
            "svc",
            vec![
                span("a", vec![kv("http.status_code", Value::IntValue(400))]),
                span("b", vec![kv("http.status_code", Value::IntValue(500))]),
            ],
        )],
    )
    .await;
    assert_eq!(
        out[0].status.as_ref().map(|s| s.code),
        Some(StatusCode::Ok as i32)
    );
    assert!(out[1].status.is_none());
}

#[test]
fn validation_names_the_key() {
    let e = err(json!({}));
    assert!(e.contains("name") && e.contains("from_attributes"), "{e}");
    let e = err(json!({"name": {"to_attributes": {"rules": []}}}));
    assert!(e.contains("must be given"), "{e}");
    let e = err(json!({"status": {"code": "error"}}));
    assert!(e.contains("status::code") && e.contains("\"error\""), "{e}");
    let e = err(json!({"status": {"code": "Ok", "description": "fine"}}));
    assert!(e.contains("status::description"), "{e}");
    let e = err(json!({"name": {"to_attributes": {"rules": ["^ok$", "(?P<a>"]}}}));
    assert!(e.contains("name::to_attributes::rules::1"), "{e}");
    let e = err(json!({
        "include": {"match_type": "strict", "metric_names": ["m"]},
        "status": {"code": "Ok"}
    }));
    assert!(e.contains("include::metric_names"), "{e}");
    let e = err(json!({"name": {"from_attributes": ["a"], "sep": "-"}}));
    assert!(e.contains("sep"), "{e}");
    assert_eq!(
        err(json!({"name": {"from_attributes": ["a"]}})),
        "the config was accepted"
    );
}

#[test]
fn testdata_cases() {
    crate::testdata::check_all("span", 3, |v| {
        factory().validate(&id(), v).map_err(|e| e.to_string())
    });
}
