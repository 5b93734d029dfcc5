use super::*;
use serde_json::json;
use vigil_core::attrs::kv_str;
use vigil_core::otlp::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, NumberDataPoint, ScopeMetrics, Sum,
};

fn inner(cfg: serde_json::Value) -> Inner {
    let id = ComponentId::new("cumulative_to_delta", None);
    let cfg: CumulativeToDeltaConfig =
        vigil_core::config::decode(vigil_core::ComponentKind::Processor, &id, &cfg)
            .expect("decodes");
    Factory.validate(&id, &cfg).expect("valid");
    Inner {
        include: Matcher::compile("include", &cfg.include).expect("include"),
        exclude: Matcher::compile("exclude", &cfg.exclude).expect("exclude"),
        initial: cfg.initial_value,
        started: 1_000,
        state: Mutex::new(LruCache::new(NonZeroUsize::new(3).expect("3"))),
        evicted: metrics::counter!("test"),
    }
}

fn sum(
    name: &str,
    monotonic: bool,
    temporality: AggregationTemporality,
    points: Vec<NumberDataPoint>,
) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality as i32,
            is_monotonic: monotonic,
        })),
        ..Default::default()
    }
}

fn int_point(start: u64, at: u64, v: i64, host: &str) -> NumberDataPoint {
    NumberDataPoint {
        start_time_unix_nano: start,
        time_unix_nano: at,
        value: Some(number_data_point::Value::AsInt(v)),
        attributes: vec![kv_str("host", host)],
        ..Default::default()
    }
}

fn wrap(metrics: Vec<Metric>) -> Vec<ResourceMetrics> {
    vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }]
}

/// The points that come out, as (start, time, value) of the first metric named `name`.
fn out(rms: &[ResourceMetrics], name: &str) -> Vec<(u64, u64, f64)> {
    let Some(m) = rms
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .find(|m| m.name == name)
    else {
        return Vec::new();
    };
    match &m.data {
        Some(metric::Data::Sum(s)) => s
            .data_points
            .iter()
            .map(|p| {
                let v = match p.value {
                    Some(number_data_point::Value::AsInt(i)) => i as f64,
                    Some(number_data_point::Value::AsDouble(d)) => d,
                    None => f64::NAN,
                };
                (p.start_time_unix_nano, p.time_unix_nano, v)
            })
            .collect(),
        Some(metric::Data::Histogram(h)) => h
            .data_points
            .iter()
            .map(|p| (p.start_time_unix_nano, p.time_unix_nano, p.count as f64))
            .collect(),
        _ => Vec::new(),
    }
}

fn run(c: &Inner, metrics: Vec<Metric>) -> Vec<ResourceMetrics> {
    let mut rms = wrap(metrics);
    c.process(&mut rms);
    rms
}

#[test]
fn sums_become_deltas_and_a_reset_is_dropped() {
    let c = inner(json!({"initial_value": "keep"}));
    let cum = AggregationTemporality::Cumulative;
    let r = run(
        &c,
        vec![sum("reqs", true, cum, vec![int_point(500, 2_000, 10, "a")])],
    );
    assert_eq!(
        out(&r, "reqs"),
        vec![(500, 2_000, 10.0)],
        "keep sends the first whole"
    );
    let r = run(
        &c,
        vec![sum("reqs", true, cum, vec![int_point(500, 3_000, 25, "a")])],
    );
    assert_eq!(out(&r, "reqs"), vec![(2_000, 3_000, 15.0)]);
    let Some(metric::Data::Sum(s)) = &r[0].scope_metrics[0].metrics[0].data else {
        panic!()
    };
    assert_eq!(
        s.aggregation_temporality,
        AggregationTemporality::Delta as i32
    );
    // A lower value with the same start is a reset: dropped, and the new value is the base.
    let r = run(
        &c,
        vec![sum("reqs", true, cum, vec![int_point(500, 4_000, 3, "a")])],
    );
    assert!(
        r.is_empty(),
        "a metric with no point left is removed: {r:?}"
    );
    let r = run(
        &c,
        vec![sum("reqs", true, cum, vec![int_point(500, 5_000, 7, "a")])],
    );
    assert_eq!(out(&r, "reqs"), vec![(4_000, 5_000, 4.0)]);
}

#[test]
fn initial_value_auto_and_drop_as_otelcol() {
    let cum = AggregationTemporality::Cumulative;
    let auto = inner(json!({}));
    let r = run(
        &auto,
        vec![sum(
            "reqs",
            true,
            cum,
            vec![
                // started before the processor: could have been counted already
                int_point(500, 2_000, 10, "old"),
                // born since: its whole value is new
                int_point(1_500, 2_000, 4, "new"),
                // start equal to the timestamp: no interval
                int_point(2_000, 2_000, 4, "same"),
            ],
        )],
    );
    assert_eq!(out(&r, "reqs"), vec![(1_500, 2_000, 4.0)]);
    let drop = inner(json!({"initial_value": "drop"}));
    assert!(run(
        &drop,
        vec![sum(
            "reqs",
            true,
            cum,
            vec![int_point(1_500, 2_000, 4, "x")]
        )]
    )
    .is_empty());
    let r = run(
        &drop,
        vec![sum(
            "reqs",
            true,
            cum,
            vec![int_point(1_500, 3_000, 9, "x")],
        )],
    );
    assert_eq!(out(&r, "reqs"), vec![(2_000, 3_000, 5.0)]);
}

#[test]
fn only_monotonic_cumulative_sums_and_histograms_change() {
    let c = inner(json!({"initial_value": "keep"}));
    let cum = AggregationTemporality::Cumulative;
    let gauge = Metric {
        name: "temp".into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![int_point(0, 2_000, 5, "a")],
        })),
        ..Default::default()
    };
    let metrics = vec![
        sum("updown", false, cum, vec![int_point(500, 2_000, 10, "a")]),
        sum(
            "already",
            true,
            AggregationTemporality::Delta,
            vec![int_point(500, 2_000, 10, "a")],
        ),
        gauge,
    ];
    let r = run(&c, metrics.clone());
    assert_eq!(r, wrap(metrics), "passed unchanged");
}

fn hist(at: u64, count: u64, sum: f64, buckets: Vec<u64>) -> Metric {
    Metric {
        name: "latency".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                start_time_unix_nano: 500,
                time_unix_nano: at,
                count,
                sum: Some(sum),
                bucket_counts: buckets,
                explicit_bounds: vec![1.0, 10.0],
                min: Some(0.5),
                max: Some(20.0),
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    }
}

#[test]
fn histograms_become_deltas_bucket_by_bucket() {
    let c = inner(json!({"initial_value": "drop"}));
    assert!(run(&c, vec![hist(2_000, 10, 50.0, vec![2, 5, 3])]).is_empty());
    let r = run(&c, vec![hist(3_000, 16, 80.0, vec![3, 8, 5])]);
    let Some(metric::Data::Histogram(h)) = &r[0].scope_metrics[0].metrics[0].data else {
        panic!()
    };
    let p = &h.data_points[0];
    assert_eq!(
        h.aggregation_temporality,
        AggregationTemporality::Delta as i32
    );
    assert_eq!(
        (p.start_time_unix_nano, p.count, p.sum),
        (2_000, 6, Some(30.0))
    );
    assert_eq!(p.bucket_counts, vec![1, 3, 2]);
    assert_eq!(
        (p.min, p.max),
        (None, None),
        "min and max do not difference"
    );
    // A count that goes down is a reset: sent whole.
    let r = run(&c, vec![hist(4_000, 2, 3.0, vec![1, 1, 0])]);
    assert_eq!(out(&r, "latency"), vec![(3_000, 4_000, 2.0)]);
    // Another bucket layout is dropped.
    assert!(run(&c, vec![hist(5_000, 5, 9.0, vec![1, 1, 1, 2])]).is_empty());
}

#[test]
fn include_exclude_strict_regexp_and_metric_types() {
    let cum = AggregationTemporality::Cumulative;
    let c = inner(json!({
        "initial_value": "keep",
        "include": {"match_type": "regexp", "metrics": ["^node_.*_total$"]},
        "exclude": {"match_type": "strict", "metrics": ["node_restarts_total"]},
    }));
    for (name, converted) in [
        ("node_bytes_total", true),
        ("node_restarts_total", false),
        ("app_bytes_total", false),
    ] {
        run(
            &c,
            vec![sum(name, true, cum, vec![int_point(500, 2_000, 10, "a")])],
        );
        let r = run(
            &c,
            vec![sum(name, true, cum, vec![int_point(500, 3_000, 12, "a")])],
        );
        let v = out(&r, name);
        assert_eq!(v[0].2 == 2.0, converted, "{name}: {v:?}");
    }
    let c = inner(json!({"initial_value": "keep", "include": {"metric_types": ["histogram"]}}));
    run(
        &c,
        vec![sum("s", true, cum, vec![int_point(500, 2_000, 10, "a")])],
    );
    let r = run(
        &c,
        vec![sum("s", true, cum, vec![int_point(500, 3_000, 12, "a")])],
    );
    assert_eq!(
        out(&r, "s")[0].2,
        12.0,
        "sums are not of the included types"
    );
}

#[test]
fn state_is_bounded_and_stale_series_are_forgotten() {
    let c = inner(json!({"initial_value": "drop"}));
    let cum = AggregationTemporality::Cumulative;
    for h in ["a", "b", "c", "d"] {
        run(
            &c,
            vec![sum("x", true, cum, vec![int_point(500, 2_000, 1, h)])],
        );
    }
    assert_eq!(lock(&c.state).len(), 3, "the test's bound");
    // "a" was evicted: its next point is a first point again (dropped).
    assert!(run(
        &c,
        vec![sum("x", true, cum, vec![int_point(500, 3_000, 2, "a")])]
    )
    .is_empty());
    c.remove_stale(Duration::from_secs(1));
    assert_eq!(lock(&c.state).len(), 0, "points from 1970 are stale");
}

#[test]
fn validate_refuses_what_otelcol_refuses() {
    let id = ComponentId::new("cumulativetodelta", None);
    for (cfg, want) in [
        (
            json!({"include": {"metrics": ["a"]}}),
            "include::match_type: match_type must be set",
        ),
        (
            json!({"exclude": {"match_type": "strict"}}),
            "exclude::metrics: metrics must be supplied",
        ),
        (
            json!({"include": {"match_type": "expr", "metrics": ["a"]}}),
            "unrecognized match_type",
        ),
        (
            json!({"include": {"match_type": "regexp", "metrics": ["("]}}),
            "include::metrics::0",
        ),
        (
            json!({"include": {"metric_types": ["gauge"]}}),
            "unsupported metric type",
        ),
        (json!({"initial_value": "sometimes"}), "initial_value"),
        (json!({"max_staleness": "soon"}), "max_staleness"),
    ] {
        let err = factory().validate(&id, &cfg).expect_err(&cfg.to_string());
        assert!(err.to_string().contains(want), "{cfg}: {err}");
    }
    factory()
        .validate(&id, &json!({"exclude": {"match_type": "strict", "metrics": ["kube_pod_container_status_restarts_total"]}}))
        .expect("the New Relic chart's config");
    factory().validate(&id, &json!(null)).expect("no keys");
}
