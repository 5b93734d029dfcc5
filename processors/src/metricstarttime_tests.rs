use super::*;
use serde_json::json;
use vigil_core::otlp::common::v1::{any_value, AnyValue};
use vigil_core::otlp::metrics::v1::{Gauge, Histogram, Metric, ScopeMetrics, Sum, Summary};

const S: u64 = 1_000_000_000;

fn cfg(v: serde_json::Value) -> MetricStartTimeConfig {
    vigil_core::config::decode(
        vigil_core::ComponentKind::Processor,
        &ComponentId::new("metricstarttime", None),
        &v,
    )
    .unwrap()
}

fn adjuster(v: serde_json::Value) -> Adjuster {
    Adjuster::new(&cfg(v), metrics::counter!("test"), MAX_SERIES).unwrap()
}

fn attr(path: &str) -> Vec<KeyValue> {
    vec![KeyValue {
        key: "path".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(path.into())),
        }),
        ..Default::default()
    }]
}

/// A cumulative monotonic sum `requests` with points `(start, time, value, path)`.
fn sum(pts: Vec<(u64, u64, i64, &str)>) -> Metric {
    Metric {
        name: "requests".into(),
        data: Some(metric::Data::Sum(Sum {
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
            data_points: pts
                .into_iter()
                .map(|(start, time, v, path)| NumberDataPoint {
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    value: Some(number_data_point::Value::AsInt(v)),
                    attributes: attr(path),
                    ..Default::default()
                })
                .collect(),
        })),
        ..Default::default()
    }
}

fn gauge(name: &str, v: f64) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                time_unix_nano: 10 * S,
                value: Some(number_data_point::Value::AsDouble(v)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

fn batch(metrics: Vec<Metric>) -> Vec<ResourceMetrics> {
    vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }]
}

/// `(start, time, value)` of every number point of every sum in the batch.
fn sums(rms: &[ResourceMetrics]) -> Vec<(u64, u64, i64)> {
    let mut out = Vec::new();
    for m in rms
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
    {
        if let Some(metric::Data::Sum(s)) = &m.data {
            for p in &s.data_points {
                let v = match p.value {
                    Some(number_data_point::Value::AsInt(i)) => i,
                    _ => -1,
                };
                out.push((p.start_time_unix_nano, p.time_unix_nano, v));
            }
        }
    }
    out
}

fn run(a: &Adjuster, metrics: Vec<Metric>) -> Vec<ResourceMetrics> {
    let mut b = batch(metrics);
    a.process(&mut b, Instant::now());
    b
}

#[test]
fn true_reset_point_starts_each_series_at_its_first_point() {
    let a = adjuster(json!({}));
    assert_eq!(a.strategy, Strategy::TrueResetPoint);
    let b = run(&a, vec![sum(vec![(0, 10 * S, 5, "/a")])]);
    assert_eq!(sums(&b), [(10 * S, 10 * S, 5)], "a true reset point");
    let b = run(
        &a,
        vec![sum(vec![(0, 20 * S, 8, "/a"), (0, 20 * S, 1, "/b")])],
    );
    assert_eq!(
        sums(&b),
        [(10 * S, 20 * S, 8), (20 * S, 20 * S, 1)],
        "the series' start; a new series starts at its own first point"
    );
    // The counter restarted: its series starts again a millisecond before.
    let b = run(&a, vec![sum(vec![(0, 30 * S, 2, "/a")])]);
    assert_eq!(sums(&b), [(30 * S - 1_000_000, 30 * S, 2)]);
    let b = run(&a, vec![sum(vec![(0, 40 * S, 6, "/a")])]);
    assert_eq!(sums(&b), [(30 * S - 1_000_000, 40 * S, 6)]);
}

#[test]
fn points_with_a_start_time_deltas_and_gauges_pass_unchanged() {
    let a = adjuster(json!({"strategy": "subtract_initial_point"}));
    let mut delta = sum(vec![(0, 10 * S, 5, "/a")]);
    if let Some(metric::Data::Sum(s)) = &mut delta.data {
        s.aggregation_temporality = AggregationTemporality::Delta as i32;
    }
    let metrics = vec![
        sum(vec![(3 * S, 10 * S, 5, "/a")]),
        delta,
        gauge("temperature", 21.5),
    ];
    let before = batch(metrics.clone());
    let b = run(&a, metrics);
    assert_eq!(b, before);
}

#[test]
fn non_monotonic_sums_have_no_resets() {
    let a = adjuster(json!({}));
    let mut m = sum(vec![(0, 10 * S, 5, "/a")]);
    let down = |m: &mut Metric| {
        if let Some(metric::Data::Sum(s)) = &mut m.data {
            s.is_monotonic = false;
        }
    };
    down(&mut m);
    run(&a, vec![m]);
    let mut m = sum(vec![(0, 20 * S, 3, "/a")]);
    down(&mut m);
    assert_eq!(sums(&run(&a, vec![m])), [(10 * S, 20 * S, 3)]);
}

#[test]
fn subtract_initial_point_drops_the_first_and_subtracts_it() {
    let a = adjuster(json!({"strategy": "subtract_initial_point"}));
    let b = run(&a, vec![sum(vec![(0, 10 * S, 100, "/a")])]);
    assert!(b.is_empty(), "the first point is kept back: {b:?}");
    let b = run(&a, vec![sum(vec![(0, 20 * S, 130, "/a")])]);
    assert_eq!(sums(&b), [(10 * S, 20 * S, 30)]);
    let b = run(&a, vec![sum(vec![(0, 30 * S, 150, "/a")])]);
    assert_eq!(sums(&b), [(10 * S, 30 * S, 50)]);
    // A restart: the count since it is sent whole from a millisecond before.
    let b = run(&a, vec![sum(vec![(0, 40 * S, 7, "/a")])]);
    assert_eq!(sums(&b), [(40 * S - 1_000_000, 40 * S, 7)]);
    let b = run(&a, vec![sum(vec![(0, 50 * S, 9, "/a")])]);
    assert_eq!(sums(&b), [(40 * S - 1_000_000, 50 * S, 9)]);
}

#[test]
fn subtract_initial_point_on_histograms_and_summaries() {
    let a = adjuster(json!({"strategy": "subtract_initial_point"}));
    let hist = |time: u64, count: u64, sum: f64, buckets: Vec<u64>| Metric {
        name: "latency".into(),
        data: Some(metric::Data::Histogram(Histogram {
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            data_points: vec![HistogramDataPoint {
                time_unix_nano: time,
                count,
                sum: Some(sum),
                bucket_counts: buckets,
                explicit_bounds: vec![0.1, 1.0],
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    let summary = |time: u64, count: u64, sum: f64| Metric {
        name: "rpc".into(),
        data: Some(metric::Data::Summary(Summary {
            data_points: vec![SummaryDataPoint {
                time_unix_nano: time,
                count,
                sum,
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    let b = run(
        &a,
        vec![
            hist(10 * S, 10, 5.0, vec![6, 3, 1]),
            summary(10 * S, 4, 2.0),
        ],
    );
    assert!(b.is_empty());
    let b = run(
        &a,
        vec![
            hist(20 * S, 15, 7.5, vec![8, 5, 2]),
            summary(20 * S, 9, 3.5),
        ],
    );
    let ms = &b[0].scope_metrics[0].metrics;
    let Some(metric::Data::Histogram(h)) = &ms[0].data else {
        panic!("{ms:?}")
    };
    let p = &h.data_points[0];
    assert_eq!(
        (
            p.start_time_unix_nano,
            p.count,
            p.sum,
            p.bucket_counts.clone()
        ),
        (10 * S, 5, Some(2.5), vec![2, 2, 1])
    );
    let Some(metric::Data::Summary(s)) = &ms[1].data else {
        panic!("{ms:?}")
    };
    let p = &s.data_points[0];
    assert_eq!((p.start_time_unix_nano, p.count, p.sum), (10 * S, 5, 1.5));
}

#[test]
fn start_time_metric_starts_every_series_at_the_process_start() {
    let a = adjuster(json!({"strategy": "start_time_metric"}));
    let b = run(
        &a,
        vec![
            gauge("process_start_time_seconds", 5.5),
            sum(vec![(0, 10 * S, 5, "/a")]),
        ],
    );
    assert_eq!(sums(&b), [(5 * S + S / 2, 10 * S, 5)]);
    // Later batches keep the series' start; a reset restarts it.
    let b = run(&a, vec![sum(vec![(0, 20 * S, 9, "/a")])]);
    assert_eq!(sums(&b), [(5 * S + S / 2, 20 * S, 9)]);
    let b = run(&a, vec![sum(vec![(0, 30 * S, 1, "/a")])]);
    assert_eq!(sums(&b), [(30 * S - 1_000_000, 30 * S, 1)]);

    // `start_time_metric_regex` names another metric.
    let a = adjuster(
        json!({"strategy": "start_time_metric", "start_time_metric_regex": "^.+_process_started$"}),
    );
    let b = run(
        &a,
        vec![
            gauge("process_start_time_seconds", 5.0),
            gauge("app_process_started", 7.0),
            sum(vec![(0, 10 * S, 5, "/a")]),
        ],
    );
    assert_eq!(sums(&b), [(7 * S, 10 * S, 5)]);

    // Without one, the time the processor was created.
    let a = adjuster(json!({"strategy": "start_time_metric"}));
    let b = run(&a, vec![sum(vec![(0, u64::MAX / 2, 5, "/a")])]);
    assert_eq!(sums(&b), [(a.created, u64::MAX / 2, 5)]);
}

#[test]
fn no_recorded_value_gets_the_series_start_and_changes_nothing() {
    let a = adjuster(json!({"strategy": "subtract_initial_point"}));
    run(&a, vec![sum(vec![(0, 10 * S, 100, "/a")])]);
    let mut m = sum(vec![(0, 20 * S, 0, "/a")]);
    if let Some(metric::Data::Sum(s)) = &mut m.data {
        s.data_points[0].flags = DataPointFlags::NoRecordedValueMask as u32;
    }
    assert_eq!(sums(&run(&a, vec![m])), [(10 * S, 20 * S, 0)]);
    // Not taken as a reset: the next point is still measured from the first.
    let b = run(&a, vec![sum(vec![(0, 30 * S, 120, "/a")])]);
    assert_eq!(sums(&b), [(10 * S, 30 * S, 20)]);
}

#[test]
fn series_are_bounded_evictions_counted_and_stale_ones_forgotten() {
    let rec = metrics_util::debugging::DebuggingRecorder::new();
    let snap = rec.snapshotter();
    let _g = metrics::set_default_local_recorder(&rec);
    let evicted =
        metrics::counter!("vigil_metricstarttime_series_evicted", "processor" => "metricstarttime");
    let a = Adjuster::new(
        &cfg(json!({"strategy": "subtract_initial_point", "gc_interval": "1m"})),
        evicted,
        2,
    )
    .unwrap();
    let t0 = Instant::now();
    let mut b = batch(vec![sum(vec![
        (0, 10 * S, 1, "/a"),
        (0, 10 * S, 1, "/b"),
        (0, 10 * S, 1, "/c"),
    ])]);
    a.process(&mut b, t0);
    assert_eq!(lock(&a.state).series.len(), 2);
    let count = vigil_core::testing::counter(&snap, "vigil_metricstarttime_series_evicted", &[]);
    assert_eq!(count, 1, "/a was evicted and counted");
    // "/a" is a first point again: kept back.
    let mut b = batch(vec![sum(vec![(0, 20 * S, 5, "/a"), (0, 20 * S, 5, "/c")])]);
    a.process(&mut b, t0);
    assert_eq!(sums(&b), [(10 * S, 20 * S, 4)]);
    // A minute without points: every series is forgotten at the next batch.
    let mut b = batch(vec![sum(vec![(0, 30 * S, 9, "/c")])]);
    a.process(&mut b, t0 + Duration::from_secs(61));
    assert!(b.is_empty(), "/c starts over: {b:?}");
    assert_eq!(lock(&a.state).series.len(), 1);
}

#[test]
fn config_defaults_and_errors() {
    let c = cfg(json!({}));
    assert_eq!(
        (c.strategy, c.gc_interval),
        (Strategy::TrueResetPoint, Duration::from_secs(600))
    );
    let f = factory();
    let id = ComponentId::new("metricstarttime", None);
    let check = |v: serde_json::Value| f.validate(&id, &v).unwrap_err().to_string();
    assert!(check(json!({"strategy": "newest"})).contains("strategy"));
    assert!(check(json!({"gc_interval": "0s"})).contains("gc_interval: must be positive"));
    assert!(check(json!({"start_time_metric_regex": "("})).contains("start_time_metric_regex"));
    crate::testdata::check_all("metricstarttime", 2, |v| {
        f.validate(&id, v).map_err(|e| e.to_string())
    });
}
