use super::*;
use vigil_core::attrs::{get_str, kv_str};
use vigil_core::otlp::trace::v1::{span::Event, ScopeSpans, Status};

fn inner(yaml: &str) -> Inner {
    let value: serde_json::Value = serde_saphyr::from_str(yaml).expect("yaml");
    let id = ComponentId::new("span_metrics", None);
    let cfg: SpanMetricsConfig =
        vigil_core::config::decode(vigil_core::ComponentKind::Connector, &id, &value)
            .expect("decodes");
    cfg.validate().expect("valid");
    let set = Settings::new(vigil_core::ComponentKind::Connector, &id);
    Inner::new(&set, cfg, NextConsumers::new())
}

fn span(name: &str, kind: SpanKind, ms: u64, status: StatusCode, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![7; 16],
        span_id: vec![9; 8],
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: 1_000_000_000,
        end_time_unix_nano: 1_000_000_000 + ms * 1_000_000,
        status: Some(Status {
            code: status as i32,
            ..Default::default()
        }),
        attributes: attrs,
        ..Default::default()
    }
}

fn batch(resource: Vec<KeyValue>, spans: Vec<Span>) -> Vec<ResourceSpans> {
    vec![ResourceSpans {
        resource: Some(Resource {
            attributes: resource,
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "lib".into(),
                version: "1.0".into(),
                ..Default::default()
            }),
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn metric<'a>(rm: &'a [ResourceMetrics], name: &str) -> &'a Metric {
    rm.iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no metric {name}"))
}

fn sums(m: &Metric) -> Vec<(&NumberDataPoint, i64)> {
    let Some(metric::Data::Sum(s)) = &m.data else {
        panic!("{} is not a sum", m.name)
    };
    assert!(s.is_monotonic);
    s.data_points
        .iter()
        .map(|p| match p.value {
            Some(number_data_point::Value::AsInt(v)) => (p, v),
            _ => panic!("int sums"),
        })
        .collect()
}

fn point_for<'a>(points: &'a [(&'a NumberDataPoint, i64)], span_name: &str) -> i64 {
    points
        .iter()
        .find(|(p, _)| get_str(&p.attributes, SPAN_NAME) == Some(span_name))
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no point for {span_name}"))
}

#[test]
fn calls_and_durations_per_dimension_set_with_otelcols_names() {
    let c = inner("dimensions: [{name: http.method, default: GET}, {name: region}]");
    let res = vec![kv_str("service.name", "cart"), kv_str("region", "eu")];
    c.aggregate(&batch(
        res.clone(),
        vec![
            span("GET /a", SpanKind::Server, 3, StatusCode::Unset, vec![]),
            span("GET /a", SpanKind::Server, 5, StatusCode::Unset, vec![]),
            span("GET /a", SpanKind::Server, 120, StatusCode::Error, vec![]),
            span(
                "POST /b",
                SpanKind::Client,
                2_000,
                StatusCode::Ok,
                vec![kv_str("http.method", "POST")],
            ),
        ],
    ));
    let out = c.build();
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].scope_metrics[0]
            .scope
            .as_ref()
            .map(|s| s.name.as_str()),
        Some("spanmetricsconnector")
    );
    assert_eq!(
        out[0].resource.as_ref().map(|r| r.attributes.clone()),
        Some(res)
    );
    let calls = metric(&out, "traces.span.metrics.calls");
    let points = sums(calls);
    assert_eq!(points.len(), 3, "ok /a, error /a, /b");
    let ok_a = points
        .iter()
        .find(|(p, _)| {
            get_str(&p.attributes, SPAN_NAME) == Some("GET /a")
                && get_str(&p.attributes, STATUS_CODE) == Some("STATUS_CODE_UNSET")
        })
        .expect("ok /a");
    assert_eq!(ok_a.1, 2);
    let a = &ok_a.0.attributes;
    assert_eq!(get_str(a, SERVICE_NAME), Some("cart"));
    assert_eq!(get_str(a, SPAN_KIND), Some("SPAN_KIND_SERVER"));
    assert_eq!(get_str(a, "http.method"), Some("GET"), "the default");
    assert_eq!(get_str(a, "region"), Some("eu"), "from the resource");
    assert_eq!(get_str(a, COLLECTOR_INSTANCE_ID), Some(instance_id()));
    assert_eq!(point_for(&points, "POST /b"), 1);

    let d = metric(&out, "traces.span.metrics.duration");
    assert_eq!(d.unit, "ms");
    let Some(metric::Data::Histogram(h)) = &d.data else {
        panic!("explicit histogram")
    };
    assert_eq!(
        h.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let ok_a = h
        .data_points
        .iter()
        .find(|p| {
            get_str(&p.attributes, SPAN_NAME) == Some("GET /a")
                && get_str(&p.attributes, STATUS_CODE) == Some("STATUS_CODE_UNSET")
        })
        .expect("ok /a");
    assert_eq!(ok_a.explicit_bounds, DEFAULT_BUCKETS_MS.to_vec());
    assert_eq!(ok_a.count, 2);
    assert_eq!(ok_a.sum, Some(8.0));
    // 3 ms falls in (2, 4], 5 ms in (4, 6].
    let mut want = vec![0u64; 17];
    want[1] = 1;
    want[2] = 1;
    assert_eq!(ok_a.bucket_counts, want);
}

#[test]
fn cumulative_keeps_counting_and_delta_starts_over() {
    let cum = inner("metrics_flush_interval: 1s");
    let del = inner("aggregation_temporality: AGGREGATION_TEMPORALITY_DELTA\nnamespace: ''");
    let res = vec![kv_str("service.name", "cart")];
    for c in [&cum, &del] {
        c.aggregate(&batch(
            res.clone(),
            vec![span("x", SpanKind::Server, 1, StatusCode::Unset, vec![])],
        ));
    }
    let (c1, d1) = (cum.build(), del.build());
    for c in [&cum, &del] {
        c.aggregate(&batch(
            res.clone(),
            vec![
                span("x", SpanKind::Server, 1, StatusCode::Unset, vec![]),
                span("x", SpanKind::Server, 1, StatusCode::Unset, vec![]),
            ],
        ));
    }
    let (c2, d2) = (cum.build(), del.build());
    let c1p = sums(metric(&c1, "traces.span.metrics.calls"))[0].0.clone();
    let c2p = sums(metric(&c2, "traces.span.metrics.calls"))[0].0.clone();
    assert_eq!(
        (c1p.value, c2p.value),
        (
            Some(number_data_point::Value::AsInt(1)),
            Some(number_data_point::Value::AsInt(3))
        )
    );
    assert_eq!(c1p.start_time_unix_nano, c2p.start_time_unix_nano);
    let d1p = sums(metric(&d1, "calls"))[0].0.clone();
    let d2p = sums(metric(&d2, "calls"))[0].0.clone();
    assert_eq!(d2p.value, Some(number_data_point::Value::AsInt(2)));
    assert_eq!(
        d2p.start_time_unix_nano, d1p.time_unix_nano,
        "a delta point starts where the last one ended"
    );
    let Some(metric::Data::Sum(s)) = &metric(&d2, "calls").data else {
        panic!()
    };
    assert_eq!(
        s.aggregation_temporality,
        AggregationTemporality::Delta as i32
    );
    assert!(del.build().is_empty(), "nothing new, nothing sent");
}

#[test]
fn past_the_cardinality_limit_spans_go_to_the_overflow_series() {
    let c = inner("aggregation_cardinality_limit: 2\nhistogram: {disable: true}");
    let res = vec![kv_str("service.name", "cart")];
    let spans = (0..5)
        .map(|i| {
            span(
                &format!("op{i}"),
                SpanKind::Server,
                1,
                StatusCode::Unset,
                vec![],
            )
        })
        .chain([span("op0", SpanKind::Server, 1, StatusCode::Unset, vec![])])
        .collect();
    c.aggregate(&batch(res, spans));
    let out = c.build();
    let points = sums(metric(&out, "traces.span.metrics.calls"));
    assert_eq!(points.len(), 3, "two series and the overflow");
    assert_eq!(point_for(&points, "op0"), 2, "a known series still counts");
    let overflow = points
        .iter()
        .find(|(p, _)| get(&p.attributes, "otel.metric.overflow").is_some())
        .expect("overflow series");
    assert_eq!(overflow.1, 3);
    assert_eq!(overflow.0.attributes.len(), 1);
    assert!(
        out[0].scope_metrics[0]
            .metrics
            .iter()
            .all(|m| m.name != "traces.span.metrics.duration"),
        "histogram disabled"
    );
}

#[test]
fn resources_beyond_the_cache_are_evicted_and_key_attributes_merge_resources() {
    let c = inner("resource_metrics_cache_size: 1");
    for svc in ["a", "b"] {
        c.aggregate(&batch(
            vec![kv_str("service.name", svc)],
            vec![span("x", SpanKind::Server, 1, StatusCode::Unset, vec![])],
        ));
    }
    let out = c.build();
    assert_eq!(out.len(), 1);
    assert_eq!(
        get_str(
            &out[0].resource.as_ref().expect("resource").attributes,
            SERVICE_NAME
        ),
        Some("b")
    );

    let c = inner("resource_metrics_key_attributes: [service.name]");
    for pid in [1, 2] {
        c.aggregate(&batch(
            vec![
                kv_str("service.name", "a"),
                vigil_core::attrs::kv_i64("process.pid", pid),
            ],
            vec![span("x", SpanKind::Server, 1, StatusCode::Unset, vec![])],
        ));
    }
    let out = c.build();
    assert_eq!(
        out.len(),
        1,
        "a restart with a new pid continues the series"
    );
    assert_eq!(sums(metric(&out, "traces.span.metrics.calls"))[0].1, 2);
}

#[test]
fn excluded_dimensions_events_exemplars_and_exponential_histograms() {
    let c = inner(
        "exclude_dimensions: [status.code, collector.instance.id]\n\
         namespace: requests\n\
         exemplars: {enabled: true, max_per_data_point: 1}\n\
         events: {enabled: true, dimensions: [{name: exception.type}]}\n\
         histogram: {unit: s, exponential: {max_size: 10}}\n\
         include_instrumentation_scope: [lib]",
    );
    let mut failing = span("x", SpanKind::Server, 1500, StatusCode::Error, vec![]);
    failing.events = vec![Event {
        name: "exception".into(),
        attributes: vec![kv_str("exception.type", "IOError")],
        ..Default::default()
    }];
    c.aggregate(&batch(
        vec![kv_str("service.name", "cart")],
        vec![
            failing,
            span("x", SpanKind::Server, 250, StatusCode::Ok, vec![]),
        ],
    ));
    let out = c.build();
    let calls = sums(metric(&out, "requests.calls"));
    assert_eq!(calls.len(), 1, "status.code excluded: one series");
    assert_eq!(calls[0].1, 2);
    assert_eq!(calls[0].0.exemplars.len(), 1, "max_per_data_point");
    let a = &calls[0].0.attributes;
    assert!(get(a, STATUS_CODE).is_none() && get(a, COLLECTOR_INSTANCE_ID).is_none());
    assert_eq!(get_str(a, "span.instrumentation.scope.name"), Some("lib"));
    let events = sums(metric(&out, "requests.events"));
    assert_eq!(events.len(), 1);
    assert_eq!(
        get_str(&events[0].0.attributes, "exception.type"),
        Some("IOError")
    );
    let d = metric(&out, "requests.duration");
    assert_eq!(d.unit, "s");
    let Some(metric::Data::ExponentialHistogram(h)) = &d.data else {
        panic!("exponential")
    };
    let p = &h.data_points[0];
    assert_eq!(p.count, 2);
    assert_eq!((p.min, p.max), (Some(0.25), Some(1.5)));
    let b = p.positive.as_ref().expect("positive buckets");
    assert!(b.bucket_counts.len() <= 10);
    assert_eq!(b.bucket_counts.iter().sum::<u64>(), 2);
}

#[test]
fn validate_refuses_what_otelcol_refuses() {
    let bad = |yaml: &str, want: &str| {
        let value: serde_json::Value = serde_saphyr::from_str(yaml).expect("yaml");
        let id = ComponentId::new("spanmetrics", None);
        let err = factory().validate(&id, &value).expect_err(yaml);
        assert!(err.to_string().contains(want), "{yaml}: {err}");
    };
    bad(
        "dimensions: [{name: span.kind}]",
        "duplicate dimension name span.kind",
    );
    bad(
        "events: {enabled: true}",
        "no dimensions configured for events",
    );
    bad(
        "histogram: {explicit: {buckets: [1ms]}, exponential: {}}",
        "use either `explicit` or `exponential`",
    );
    bad("histogram: {unit: us}", "histogram::unit");
    bad(
        "histogram: {explicit: {buckets: [10ms, 2ms]}}",
        "increasing",
    );
    bad(
        "aggregation_cardinality_limit: -1",
        "the limit should be positive",
    );
    bad("metrics_flush_interval: 0s", "must be positive");
    bad("dimension: []", "dimension");
}
