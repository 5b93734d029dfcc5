use super::*;
use crate::testdata::Keep;
use serde_json::{json, Value as Json};
use vigil_core::attrs::kv_str;
use vigil_core::otlp::common::v1::{any_value, KeyValue};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::otlp::trace::v1::{status, Status};
use vigil_core::ComponentKind;

fn id() -> ComponentId {
    ComponentId::parse("tail_sampling/x").unwrap()
}

fn build(cfg: Json) -> (TailSampling, Arc<Keep>) {
    let cfg: TailSamplingConfig =
        vigil_core::config::decode(ComponentKind::Processor, &id(), &cfg).expect("decodes");
    let policies = check(&cfg).expect("valid");
    let keep = Arc::new(Keep::default());
    let p = TailSampling::new(
        Settings::new(ComponentKind::Processor, &id()),
        cfg,
        policies,
        keep.clone(),
    );
    (p, keep)
}

fn span(trace: u8, n: u8, name: &str, ms: u64, error: bool, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![trace, n, 1, 1, 1, 1, 1, 1],
        parent_span_id: if n == 0 {
            vec![]
        } else {
            vec![trace, 0, 1, 1, 1, 1, 1, 1]
        },
        name: name.into(),
        start_time_unix_nano: 1_000_000_000,
        end_time_unix_nano: 1_000_000_000 + ms * 1_000_000,
        status: error.then(|| Status {
            code: status::StatusCode::Error as i32,
            message: String::new(),
        }),
        attributes: attrs,
        ..Default::default()
    }
}

fn batch(spans: Vec<Span>) -> Telemetry {
    Telemetry::Traces(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv_str("service.name", "checkout")],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

fn errors_or_slow() -> Json {
    json!({"decision_wait": "10s", "policies": [
        {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        {"name": "slow", "type": "latency", "latency": {"threshold_ms": 500}},
    ]})
}

#[tokio::test]
async fn keeps_a_whole_trace_from_separate_batches_and_drops_the_rest() {
    let (p, keep) = build(errors_or_slow());
    // Trace 1: its error span comes in a later batch than its root.
    p.consume(batch(vec![
        span(1, 0, "root-1", 20, false, vec![]),
        span(2, 0, "root-2", 20, false, vec![]),
    ]))
    .await
    .unwrap();
    p.consume(batch(vec![
        span(1, 1, "child-1", 5, true, vec![]),
        span(2, 1, "child-2", 5, false, vec![]),
    ]))
    .await
    .unwrap();
    // Trace 3 is slow.
    p.consume(batch(vec![span(3, 0, "root-3", 900, false, vec![])]))
        .await
        .unwrap();
    assert!(
        keep.names().is_empty(),
        "nothing is sent before the decision"
    );
    p.decide_due(Instant::now()).await;
    assert!(keep.names().is_empty(), "decision_wait has not passed");
    p.decide_due(later()).await;
    let mut names = keep.names();
    names.sort();
    assert_eq!(names, ["child-1", "root-1", "root-3"]);
    // A late span follows its trace's decision: kept for trace 1, dropped for trace 2.
    p.consume(batch(vec![
        span(1, 2, "late-1", 1, false, vec![]),
        span(2, 2, "late-2", 1, false, vec![]),
    ]))
    .await
    .unwrap();
    assert!(keep.names().contains(&"late-1".to_string()));
    assert!(!keep.names().contains(&"late-2".to_string()));
}

#[tokio::test]
async fn num_traces_evicts_the_oldest_and_counts_it() {
    let mut cfg = errors_or_slow();
    cfg["num_traces"] = json!(2);
    let (p, keep) = build(cfg);
    for t in 1..=3u8 {
        p.consume(batch(vec![span(
            t,
            0,
            &format!("err-{t}"),
            1,
            true,
            vec![],
        )]))
        .await
        .unwrap();
    }
    assert_eq!(p.trace_count(), 2);
    p.decide_due(later()).await;
    let mut names = keep.names();
    names.sort();
    assert_eq!(names, ["err-2", "err-3"], "trace 1 was evicted undecided");
}

#[tokio::test]
async fn block_on_overflow_pushes_back_instead_of_evicting() {
    let mut cfg = errors_or_slow();
    cfg["num_traces"] = json!(1);
    cfg["block_on_overflow"] = json!(true);
    let (p, _keep) = build(cfg);
    p.consume(batch(vec![span(1, 0, "a", 1, true, vec![])]))
        .await
        .unwrap();
    let e = p
        .consume(batch(vec![span(2, 0, "b", 1, true, vec![])]))
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    // Spans of a trace already held are still taken.
    p.consume(batch(vec![span(1, 1, "a2", 1, true, vec![])]))
        .await
        .unwrap();
}

fn decide(cfg: Json, spans: Vec<Span>) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (p, keep) = build(cfg);
        p.consume(batch(spans)).await.unwrap();
        p.decide_due(later()).await;
        !keep.names().is_empty()
    })
}

fn int(k: &str, v: i64) -> KeyValue {
    vigil_core::attrs::kv_i64(k, v)
}

fn boolean(k: &str, v: bool) -> KeyValue {
    vigil_core::attrs::kv(k, any_value::Value::BoolValue(v))
}

fn one(policy: Json) -> Json {
    json!({"policies": [policy]})
}

#[test]
fn attribute_policies_match_as_otelcol() {
    let na = one(json!({"name": "n", "type": "numeric_attribute",
        "numeric_attribute": {"key": "http.status_code", "min_value": 500}}));
    assert!(decide(
        na.clone(),
        vec![span(
            1,
            0,
            "s",
            1,
            false,
            vec![int("http.status_code", 503)]
        )]
    ));
    assert!(!decide(
        na,
        vec![span(
            1,
            0,
            "s",
            1,
            false,
            vec![int("http.status_code", 200)]
        )]
    ));

    let sa = one(json!({"name": "s", "type": "string_attribute",
        "string_attribute": {"key": "http.route", "values": ["/api/.*"], "enabled_regex_matching": true}}));
    assert!(decide(
        sa.clone(),
        vec![span(
            1,
            0,
            "s",
            1,
            false,
            vec![kv_str("http.route", "/api/x")]
        )]
    ));
    assert!(!decide(
        sa,
        vec![span(
            1,
            0,
            "s",
            1,
            false,
            vec![kv_str("http.route", "/health")]
        )]
    ));

    // Resource attributes count too.
    let res = one(json!({"name": "s", "type": "string_attribute",
        "string_attribute": {"key": "service.name", "values": ["checkout"]}}));
    assert!(decide(res, vec![span(1, 0, "s", 1, false, vec![])]));

    let ba = one(json!({"name": "b", "type": "boolean_attribute",
        "boolean_attribute": {"key": "app.force_sample", "value": true}}));
    assert!(decide(
        ba.clone(),
        vec![span(
            1,
            0,
            "s",
            1,
            false,
            vec![boolean("app.force_sample", true)]
        )]
    ));
    assert!(!decide(
        ba,
        vec![span(
            1,
            0,
            "s",
            1,
            false,
            vec![boolean("app.force_sample", false)]
        )]
    ));

    let sc = one(json!({"name": "c", "type": "span_count", "span_count": {"min_spans": 2}}));
    assert!(decide(
        sc.clone(),
        vec![
            span(1, 0, "a", 1, false, vec![]),
            span(1, 1, "b", 1, false, vec![])
        ]
    ));
    assert!(!decide(sc, vec![span(1, 0, "a", 1, false, vec![])]));

    let mut with_state = span(1, 0, "s", 1, false, vec![]);
    with_state.trace_state = "vendor=a,team=payments".into();
    let ts = one(json!({"name": "t", "type": "trace_state",
        "trace_state": {"key": "team", "values": ["payments"]}}));
    assert!(decide(ts.clone(), vec![with_state]));
    assert!(!decide(ts, vec![span(1, 0, "s", 1, false, vec![])]));

    let lat = one(json!({"name": "l", "type": "latency",
        "latency": {"threshold_ms": 100, "upper_threshold_ms": 200}}));
    assert!(decide(
        lat.clone(),
        vec![span(1, 0, "s", 150, false, vec![])]
    ));
    assert!(!decide(lat, vec![span(1, 0, "s", 250, false, vec![])]));
}

#[test]
fn invert_and_drop_take_precedence() {
    // An inverted match that hits vetoes an always_sample.
    let cfg = json!({"policies": [
        {"name": "all", "type": "always_sample"},
        {"name": "not-health", "type": "string_attribute",
         "string_attribute": {"key": "http.route", "values": ["/health"], "invert_match": true}},
    ]});
    assert!(!decide(
        cfg.clone(),
        vec![span(
            1,
            0,
            "s",
            1,
            false,
            vec![kv_str("http.route", "/health")]
        )]
    ));
    assert!(decide(
        cfg,
        vec![span(
            1,
            0,
            "s",
            1,
            false,
            vec![kv_str("http.route", "/api")]
        )]
    ));

    let drop = json!({"policies": [
        {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        {"name": "no-debug", "type": "drop", "drop": {"drop_sub_policy": [
            {"name": "dbg", "type": "boolean_attribute", "boolean_attribute": {"key": "debug", "value": true}}
        ]}},
    ]});
    assert!(!decide(
        drop.clone(),
        vec![span(1, 0, "s", 1, true, vec![boolean("debug", true)])]
    ));
    assert!(decide(drop, vec![span(1, 0, "s", 1, true, vec![])]));

    let and = one(
        json!({"name": "a", "type": "and", "and": {"and_sub_policy": [
            {"name": "e", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
            {"name": "n", "type": "numeric_attribute", "numeric_attribute": {"key": "k", "min_value": 5}},
        ]}}),
    );
    assert!(decide(
        and.clone(),
        vec![span(1, 0, "s", 1, true, vec![int("k", 9)])]
    ));
    assert!(!decide(
        and,
        vec![span(1, 0, "s", 1, true, vec![int("k", 1)])]
    ));
}

#[test]
fn probabilistic_and_rate_limits() {
    let none = one(
        json!({"name": "p", "type": "probabilistic", "probabilistic": {"sampling_percentage": 0}}),
    );
    assert!(!decide(none, vec![span(1, 0, "s", 1, false, vec![])]));
    let all = one(
        json!({"name": "p", "type": "probabilistic", "probabilistic": {"sampling_percentage": 100}}),
    );
    assert!(decide(all, vec![span(1, 0, "s", 1, false, vec![])]));
    // About half of 400 trace ids at 50%.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let kept = rt.block_on(async {
        let (p, keep) = build(one(json!({"name": "p", "type": "probabilistic",
            "probabilistic": {"sampling_percentage": 50}})));
        for i in 0..400u32 {
            let mut s = span(0, 0, "s", 1, false, vec![]);
            s.trace_id = [i.to_be_bytes().to_vec(), vec![7; 12]].concat();
            p.consume(batch(vec![s])).await.unwrap();
        }
        p.decide_due(later()).await;
        keep.names().len()
    });
    assert!((140..260).contains(&kept), "kept {kept} of 400");

    // rate_limiting: 3 spans per second, traces of 2 spans: only the first fits.
    let rt2 = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let kept = rt2.block_on(async {
        let (p, keep) = build(one(json!({"name": "r", "type": "rate_limiting",
            "rate_limiting": {"spans_per_second": 3}})));
        for t in 1..=3u8 {
            p.consume(batch(vec![
                span(t, 0, "a", 1, false, vec![]),
                span(t, 1, "b", 1, false, vec![]),
            ]))
            .await
            .unwrap();
        }
        p.decide_due(later()).await;
        keep.names().len()
    });
    assert!(kept <= 4, "kept {kept} spans");
    assert!(kept >= 2);

    // composite: always_sample with 50% of 4 spans/s: one 2-span trace per second.
    let rt3 = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let kept = rt3.block_on(async {
        let (p, keep) = build(one(json!({"name": "c", "type": "composite", "composite": {
            "max_total_spans_per_second": 4, "policy_order": ["all"],
            "composite_sub_policy": [{"name": "all", "type": "always_sample"}],
            "rate_allocation": [{"policy": "all", "percent": 50}]}})));
        for t in 1..=3u8 {
            p.consume(batch(vec![
                span(t, 0, "a", 1, false, vec![]),
                span(t, 1, "b", 1, false, vec![]),
            ]))
            .await
            .unwrap();
        }
        p.decide_due(later()).await;
        keep.names().len()
    });
    assert!((2..=4).contains(&kept), "kept {kept} spans");
}

#[test]
fn ottl_condition_on_spans_and_events() {
    let cfg = one(
        json!({"name": "o", "type": "ottl_condition", "ottl_condition": {
        "error_mode": "ignore",
        "span": ["attributes[\"tenant\"] == \"gold\""],
        "spanevent": ["name == \"exception\""]}}),
    );
    assert!(decide(
        cfg.clone(),
        vec![span(1, 0, "s", 1, false, vec![kv_str("tenant", "gold")])]
    ));
    let mut with_event = span(1, 0, "s", 1, false, vec![]);
    with_event
        .events
        .push(vigil_core::otlp::trace::v1::span::Event {
            name: "exception".into(),
            ..Default::default()
        });
    assert!(decide(cfg.clone(), vec![with_event]));
    assert!(!decide(
        cfg,
        vec![span(1, 0, "s", 1, false, vec![kv_str("tenant", "silver")])]
    ));
}

#[tokio::test]
async fn decision_cache_releases_late_spans_after_the_trace_is_gone() {
    let mut cfg = errors_or_slow();
    cfg["decision_cache"] = json!({"sampled_cache_size": 10, "non_sampled_cache_size": 10});
    let (p, keep) = build(cfg);
    p.consume(batch(vec![
        span(1, 0, "e", 1, true, vec![]),
        span(2, 0, "ok", 1, false, vec![]),
    ]))
    .await
    .unwrap();
    p.decide_due(later()).await;
    assert_eq!(
        p.trace_count(),
        0,
        "decided traces leave the table when cached"
    );
    p.consume(batch(vec![
        span(1, 1, "late-e", 1, false, vec![]),
        span(2, 1, "late-ok", 1, false, vec![]),
    ]))
    .await
    .unwrap();
    let names = keep.names();
    assert!(names.contains(&"late-e".to_string()));
    assert!(!names.contains(&"late-ok".to_string()));
}

#[tokio::test]
async fn shutdown_decides_pending_traces() {
    let (p, keep) = build(errors_or_slow());
    p.consume(batch(vec![span(1, 0, "e", 1, true, vec![])]))
        .await
        .unwrap();
    p.shutdown().await.unwrap();
    assert_eq!(keep.names(), ["e"]);
}

#[test]
fn testdata_cases() {
    crate::testdata::check_all("tail_sampling", 5, |v| {
        factory().validate(&id(), v).map_err(|e| e.to_string())
    });
}
