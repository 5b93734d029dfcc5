use super::*;
use serde_json::{json, Value as Json};
use vigil_core::attrs::kv_str;
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::otlp::trace::v1::Span;

use crate::testdata::Keep;

/// A connector and one receiving end per pipeline.
type Made = (Arc<dyn vigil_core::Connector>, Vec<Arc<Keep>>);

fn make(cfg: Json, pipelines: &[&str]) -> Result<Made, ConfigError> {
    let mut next = NextConsumers::new();
    let mut keeps = Vec::new();
    for p in pipelines {
        let k = Arc::new(Keep::default());
        next.insert_pipeline(*p, k.clone());
        keeps.push(k);
    }
    let id = ComponentId::parse("routing/x").unwrap();
    factory().create(&id, &cfg, next).map(|c| (c, keeps))
}

/// One resource group per tenant, with the given span names.
fn traces(groups: &[(&str, &[&str])]) -> Telemetry {
    Telemetry::Traces(
        groups
            .iter()
            .map(|(tenant, names)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv_str("tenant", *tenant)],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: names
                        .iter()
                        .map(|n| Span {
                            name: n.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    )
}

#[tokio::test]
async fn resource_groups_go_to_the_first_matching_route() {
    let (c, k) = make(
        json!({
            "default_pipelines": ["traces/default"],
            "match_once": true,
            "table": [
                {"statement": "route() where resource.attributes[\"tenant\"] == \"acme\"", "pipelines": ["traces/acme"]},
                {"condition": "resource.attributes[\"tenant\"] != \"nobody\"", "pipelines": ["traces/other", "traces/acme2"]},
            ],
        }),
        &["traces/acme", "traces/other", "traces/acme2", "traces/default"],
    )
    .unwrap();
    c.consume(traces(&[
        ("acme", &["a1", "a2"]),
        ("ecorp", &["e1"]),
        ("nobody", &["n1"]),
    ]))
    .await
    .unwrap();
    assert_eq!(k[0].names(), ["a1", "a2"]);
    assert_eq!(k[1].names(), ["e1"]);
    assert_eq!(k[2].names(), ["e1"]);
    assert_eq!(k[3].names(), ["n1"]);
}

#[tokio::test]
async fn span_context_splits_a_resource() {
    let (c, k) = make(
        json!({
            "table": [
                {"context": "span", "condition": "IsMatch(name, \"^checkout\")", "pipelines": ["traces/checkout"]},
                {"condition": "attributes[\"tenant\"] == \"acme\"", "pipelines": ["traces/acme"]},
            ],
        }),
        &["traces/checkout", "traces/acme"],
    )
    .unwrap();
    c.consume(traces(&[
        ("acme", &["checkout.pay", "cart", "checkout.ship"]),
        ("ecorp", &["cart"]),
    ]))
    .await
    .unwrap();
    assert_eq!(k[0].names(), ["checkout.pay", "checkout.ship"]);
    // The rest of acme's resource goes to acme; ecorp's span matches nothing and has no default.
    assert_eq!(k[1].names(), ["cart"]);
    let got = k[0].0.lock().unwrap();
    let Telemetry::Traces(rs) = &got[0] else {
        panic!()
    };
    assert_eq!(rs.len(), 1, "one resource copy for the routed spans");
    assert_eq!(
        vigil_core::attrs::get_str(&rs[0].resource.as_ref().unwrap().attributes, "tenant"),
        Some("acme")
    );
}

#[tokio::test]
async fn errors_follow_error_mode() {
    let table = json!([{"condition": "resource.attributes[\"tenant\"] + 1 == 2", "pipelines": ["traces/a"]}]);
    let (c, k) = make(
        json!({"table": table.clone(), "default_pipelines": ["traces/d"]}),
        &["traces/a", "traces/d"],
    )
    .unwrap();
    assert!(c.consume(traces(&[("acme", &["s"])])).await.is_err());
    assert!(k[1].names().is_empty());
    let (c, k) = make(
        json!({"table": table, "default_pipelines": ["traces/d"], "error_mode": "ignore"}),
        &["traces/a", "traces/d"],
    )
    .unwrap();
    c.consume(traces(&[("acme", &["s"])])).await.unwrap();
    assert_eq!(k[1].names(), ["s"]);
}

#[test]
fn unknown_pipelines_fail_at_creation() {
    let Err(e) = make(
        json!({"table": [{"condition": "true", "pipelines": ["traces/typo"]}]}),
        &["traces/a"],
    ) else {
        panic!("created");
    };
    let e = e.to_string();
    assert!(
        e.contains("connectors::routing/x::table::0::pipelines: pipeline \"traces/typo\" does not list this connector"),
        "{e}"
    );
}

/// A `datapoint` row routing traces (or logs) is accepted and never matches, as otelcol's traces
/// and logs routers do: what it would take goes to the defaults (the New Relic chart's config has
/// such rows). On a metrics pipeline it is refused at creation until single points can be moved.
#[tokio::test]
async fn a_datapoint_row_is_inert_on_traces_and_refused_on_metrics() {
    let (c, k) = make(
        json!({
            "default_pipelines": ["traces/d"],
            "table": [{"context": "datapoint", "condition": "true", "pipelines": ["traces/a"]}],
        }),
        &["traces/a", "traces/d"],
    )
    .unwrap();
    c.consume(traces(&[("acme", &["s"])])).await.unwrap();
    assert!(k[0].names().is_empty());
    assert_eq!(k[1].names(), ["s"]);

    let Err(e) = make(
        json!({"table": [{"context": "datapoint", "condition": "true", "pipelines": ["metrics/a"]}]}),
        &["metrics/a"],
    ) else {
        panic!("created");
    };
    assert!(
        e.to_string()
            .contains("table::0::context: context \"datapoint\" is not supported for metrics"),
        "{e}"
    );
}

/// The cases under testdata/routing: each bad one names its key path and what is wrong, and the good
/// ones (in the style of otelcol's README) are accepted.
#[test]
fn testdata_cases() {
    let id = ComponentId::parse("routing/x").unwrap();
    crate::testdata::check_all("routing", 5, |v| {
        factory().validate(&id, v).map_err(|e| e.to_string())
    });
}
