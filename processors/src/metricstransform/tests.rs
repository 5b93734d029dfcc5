use super::*;
use serde_json::json;
use vigil_core::attrs::{get_str, kv_str};
use vigil_core::otlp::metrics::v1::{
    number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    NumberDataPoint, Sum,
};
use vigil_core::otlp::resource::v1::Resource;

fn compiled(cfg: serde_json::Value) -> Vec<Compiled> {
    let id = ComponentId::new("metrics_transform", None);
    let cfg: MetricsTransformConfig =
        vigil_core::config::decode(vigil_core::ComponentKind::Processor, &id, &cfg)
            .expect("decodes");
    compile(&cfg).expect("valid")
}

fn error(cfg: &serde_json::Value) -> Result<(), String> {
    let id = ComponentId::new("metricstransform", Some("x"));
    factory().validate(&id, cfg).map_err(|e| e.to_string())
}

/// Points at time 2000 (start 1000) with the given attributes and values.
fn number_points<V>(
    pts: Vec<(Vec<(&str, &str)>, V)>,
    value: fn(V) -> number_data_point::Value,
) -> Vec<NumberDataPoint> {
    pts.into_iter()
        .map(|(a, v)| NumberDataPoint {
            attributes: a.into_iter().map(|(k, v)| kv_str(k, v)).collect(),
            time_unix_nano: 2_000,
            start_time_unix_nano: 1_000,
            value: Some(value(v)),
            ..Default::default()
        })
        .collect()
}

fn gauge(name: &str, pts: Vec<(Vec<(&str, &str)>, f64)>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: number_points(pts, number_data_point::Value::AsDouble),
        })),
        ..Default::default()
    }
}

fn int_sum(name: &str, pts: Vec<(Vec<(&str, &str)>, i64)>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::Sum(Sum {
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
            data_points: number_points(pts, number_data_point::Value::AsInt),
        })),
        ..Default::default()
    }
}

fn batch(metrics: Vec<Metric>) -> Vec<ResourceMetrics> {
    vec![ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![kv_str("service.name", "kube-state-metrics")],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn all(rms: &[ResourceMetrics]) -> Vec<&Metric> {
    rms.iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .collect()
}

fn find<'a>(rms: &'a [ResourceMetrics], name: &str) -> &'a Metric {
    all(rms)
        .into_iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no metric {name}"))
}

/// (attributes as sorted pairs, value) of every number point.
fn numbers(m: &Metric) -> Vec<(Vec<(String, String)>, f64)> {
    let pts = match &m.data {
        Some(metric::Data::Gauge(g)) => &g.data_points,
        Some(metric::Data::Sum(s)) => &s.data_points,
        _ => panic!("{} is not a number metric", m.name),
    };
    pts.iter()
        .map(|p| {
            let mut a: Vec<(String, String)> = p
                .attributes
                .iter()
                .map(|kv| {
                    let v = kv.value.as_ref().and_then(|v| v.value.as_ref());
                    (
                        kv.key.clone(),
                        v.map(vigil_core::attrs::value_to_string)
                            .unwrap_or_default(),
                    )
                })
                .collect();
            a.sort();
            let v = match p.value {
                Some(number_data_point::Value::AsInt(i)) => i as f64,
                Some(number_data_point::Value::AsDouble(d)) => d,
                None => f64::NAN,
            };
            (a, v)
        })
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = p
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn config_cases() {
    crate::testdata::check_all("metricstransform", 4, error);
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let e = error(&json!({"transforms": [
        {"action": "update"},
        {"include": "a(", "match_type": "regexp", "action": "update"},
        {"include": "b", "action": "insert", "operations": [{"action": "add_label"}]},
    ]}))
    .expect_err("invalid");
    for want in [
        "transforms::0::include: missing required field \"include\"",
        "transforms::1::include: invalid regexp",
        "transforms::2::new_name: missing required field \"new_name\" while \"action\" is insert",
        "transforms::2::operations::0::new_label",
        "transforms::2::operations::0::new_value",
    ] {
        assert!(e.contains(want), "{e} lacks {want}");
    }
}

/// New Relic's chart: a label on every metric, then flipped on a few chosen by an anchored RE2
/// pattern (the chart writes `$$`, which the config loader has already made `$`).
#[test]
fn low_data_mode_label_added_then_updated_on_selected_metrics() {
    let t = compiled(json!({"transforms": [
        {"include": ".*", "match_type": "regexp", "action": "update",
         "operations": [{"action": "add_label", "new_label": "low.data.mode", "new_value": "false"}]},
        {"include": "^kube_namespace_(labels|annotations|status_phase|created)$", "match_type": "regexp",
         "action": "update",
         "operations": [{"action": "update_label", "label": "low.data.mode",
                         "value_actions": [{"value": "false", "new_value": "true"}]}]},
    ]}));
    let mut rms = batch(vec![
        gauge(
            "kube_namespace_created",
            vec![(vec![("namespace", "default")], 1.7e9)],
        ),
        gauge(
            "kube_namespace_created_extra",
            vec![(vec![("namespace", "a")], 1.0)],
        ),
        gauge("kube_pod_info", vec![(vec![("pod", "p")], 1.0)]),
    ]);
    process(&t, &mut rms);
    let flag = |name: &str| numbers(find(&rms, name))[0].0.clone();
    assert!(flag("kube_namespace_created").contains(&("low.data.mode".into(), "true".into())));
    assert!(
        flag("kube_namespace_created_extra").contains(&("low.data.mode".into(), "false".into()))
    );
    assert!(flag("kube_pod_info").contains(&("low.data.mode".into(), "false".into())));
}

#[test]
fn strict_rename_and_three_metrics_into_one_name_with_a_phase_label() {
    let t = compiled(json!({"transforms": [
        {"include": "kubernetes_build_info", "action": "update", "new_name": "k8s.cluster.info"},
        {"include": "kube_pod_container_status_waiting", "match_type": "strict", "action": "update",
         "new_name": "kube_pod_container_status_phase",
         "operations": [{"action": "add_label", "new_label": "container_phase", "new_value": "waiting"}]},
        {"include": "kube_pod_container_status_running", "match_type": "strict", "action": "update",
         "new_name": "kube_pod_container_status_phase",
         "operations": [{"action": "add_label", "new_label": "container_phase", "new_value": "running"}]},
    ]}));
    let mut rms = batch(vec![
        gauge(
            "kubernetes_build_info",
            vec![(vec![("git_version", "v1.30.0")], 1.0)],
        ),
        gauge(
            "kube_pod_container_status_waiting",
            vec![(vec![("container", "a")], 1.0)],
        ),
        gauge(
            "kube_pod_container_status_running",
            vec![(vec![("container", "b")], 1.0)],
        ),
    ]);
    process(&t, &mut rms);
    assert_eq!(
        all(&rms)
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        [
            "k8s.cluster.info",
            "kube_pod_container_status_phase",
            "kube_pod_container_status_phase"
        ]
    );
    let phases: Vec<String> = all(&rms)[1..]
        .iter()
        .map(|m| {
            numbers(m)[0]
                .0
                .iter()
                .find(|(k, _)| k == "container_phase")
                .expect("phase")
                .1
                .clone()
        })
        .collect();
    assert_eq!(phases, ["waiting", "running"]);
}

#[test]
fn regexp_groups_fill_new_name_and_insert_keeps_the_original() {
    let t = compiled(json!({"transforms": [
        {"include": "^system\\.cpu\\.(.*)$", "match_type": "regexp", "action": "insert",
         "new_name": "cpu.$1.copy"},
    ]}));
    let mut rms = batch(vec![gauge("system.cpu.utilization", vec![(vec![], 0.5)])]);
    process(&t, &mut rms);
    let names: Vec<&str> = all(&rms).iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["system.cpu.utilization", "cpu.utilization.copy"]);
}

#[test]
fn match_labels_limit_what_an_update_changes() {
    let t = compiled(json!({"transforms": [
        {"include": "system.cpu.time", "action": "update", "new_name": "renamed",
         "experimental_match_labels": {"state": "idle"},
         "operations": [
            {"action": "update_label", "label": "cpu", "new_label": "core"},
            {"action": "add_label", "new_label": "x", "new_value": "y"}]},
    ]}));
    let mut rms = batch(vec![gauge(
        "system.cpu.time",
        vec![
            (vec![("state", "idle"), ("cpu", "0")], 1.0),
            (vec![("state", "user"), ("cpu", "0")], 2.0),
        ],
    )]);
    process(&t, &mut rms);
    // Only some points match: the name and the whole-metric operations stay as they were, and
    // the per-point operation changes only the matching point.
    let m = find(&rms, "system.cpu.time");
    let n = numbers(m);
    assert_eq!(n[0].0, pairs(&[("state", "idle"), ("core", "0")]));
    assert_eq!(n[1].0, pairs(&[("state", "user"), ("cpu", "0")]));
}

#[test]
fn aggregations_over_labels_and_label_values() {
    for (agg, want_user_system, want_idle) in [
        ("sum", 9.0, 4.0),
        ("mean", 3.0, 4.0),
        ("max", 5.0, 4.0),
        ("min", 1.0, 4.0),
        ("median", 3.0, 4.0),
        ("count", 3.0, 1.0),
    ] {
        let t = compiled(json!({"transforms": [
            {"include": "cpu", "action": "update", "operations": [
                {"action": "aggregate_label_values", "label": "state",
                 "aggregated_values": ["user", "system"], "new_value": "used", "aggregation_type": agg},
                {"action": "aggregate_labels", "label_set": ["state"], "aggregation_type": "sum"}]},
        ]}));
        let mut rms = batch(vec![gauge(
            "cpu",
            vec![
                (vec![("state", "user"), ("cpu", "0")], 1.0),
                (vec![("state", "system"), ("cpu", "0")], 3.0),
                (vec![("state", "user"), ("cpu", "0")], 5.0),
                (vec![("state", "idle"), ("cpu", "0")], 4.0),
            ],
        )]);
        process(&t, &mut rms);
        let n = numbers(find(&rms, "cpu"));
        assert_eq!(
            n,
            vec![
                (pairs(&[("state", "used")]), want_user_system),
                (pairs(&[("state", "idle")]), want_idle)
            ],
            "{agg}"
        );
    }
}

#[test]
fn integer_mean_and_median_are_integers_and_start_is_the_earliest() {
    let t = compiled(json!({"transforms": [
        {"include": "req", "action": "update", "operations": [
            {"action": "aggregate_labels", "label_set": [], "aggregation_type": "mean"}]}]}));
    let mut m = int_sum("req", vec![(vec![("a", "1")], 3), (vec![("a", "2")], 4)]);
    if let Some(metric::Data::Sum(s)) = &mut m.data {
        s.data_points[1].start_time_unix_nano = 500;
    }
    let mut rms = batch(vec![m]);
    process(&t, &mut rms);
    let Some(metric::Data::Sum(s)) = &find(&rms, "req").data else {
        panic!("a sum")
    };
    assert_eq!(s.data_points.len(), 1);
    assert_eq!(
        s.data_points[0].value,
        Some(number_data_point::Value::AsInt(3))
    );
    assert_eq!(s.data_points[0].start_time_unix_nano, 500);
    assert!(s.is_monotonic, "the sum keeps its monotonicity");
}

#[test]
fn delete_label_value_drops_points_and_an_emptied_metric() {
    let t = compiled(json!({"transforms": [
        {"include": "cpu", "action": "update",
         "operations": [{"action": "delete_label_value", "label": "state", "label_value": "idle"}]}]}));
    let mut rms = batch(vec![
        gauge(
            "cpu",
            vec![
                (vec![("state", "idle")], 1.0),
                (vec![("state", "user")], 2.0),
            ],
        ),
        gauge("other", vec![(vec![("state", "idle")], 1.0)]),
    ]);
    process(&t, &mut rms);
    assert_eq!(
        numbers(find(&rms, "cpu")),
        vec![(pairs(&[("state", "user")]), 2.0)]
    );

    let mut rms = batch(vec![gauge("cpu", vec![(vec![("state", "idle")], 1.0)])]);
    process(&t, &mut rms);
    assert!(
        rms.is_empty(),
        "a metric left with no points is dropped: {rms:?}"
    );
}

#[test]
fn toggle_and_scale() {
    let t = compiled(json!({"transforms": [
        {"include": "req", "action": "update", "operations": [
            {"action": "toggle_scalar_data_type"},
            {"action": "experimental_scale_value", "experimental_scale": 1000}]},
        {"include": "latency", "action": "update", "operations": [
            {"action": "experimental_scale_value", "experimental_scale": 0.001}]}]}));
    let h = Metric {
        name: "latency".into(),
        data: Some(metric::Data::Histogram(Histogram {
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            data_points: vec![HistogramDataPoint {
                count: 3,
                sum: Some(3000.0),
                min: Some(500.0),
                explicit_bounds: vec![1000.0, 2000.0],
                bucket_counts: vec![1, 1, 1],
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    let mut rms = batch(vec![int_sum("req", vec![(vec![], 7)]), h]);
    process(&t, &mut rms);
    let Some(metric::Data::Sum(s)) = &find(&rms, "req").data else {
        panic!("a sum")
    };
    assert_eq!(
        s.data_points[0].value,
        Some(number_data_point::Value::AsDouble(7000.0))
    );
    let Some(metric::Data::Histogram(h)) = &find(&rms, "latency").data else {
        panic!("a histogram")
    };
    let p = &h.data_points[0];
    assert_eq!((p.sum, p.min, p.max), (Some(3.0), Some(0.5), None));
    assert_eq!(p.explicit_bounds, [1.0, 2.0]);
    assert_eq!(p.bucket_counts, [1, 1, 1], "counts are not scaled");
}

#[test]
fn combine_labels_points_by_group_and_merges() {
    let t = compiled(json!({"transforms": [
        {"include": "^disk\\.(?P<direction>read|write)\\.(bytes)$", "match_type": "regexp",
         "action": "combine", "new_name": "disk.io", "submatch_case": "upper",
         "aggregation_type": "sum"}]}));
    let mut rms = batch(vec![
        int_sum("disk.read.bytes", vec![(vec![("dev", "sda")], 10)]),
        int_sum("disk.write.bytes", vec![(vec![("dev", "sda")], 20)]),
        int_sum("other", vec![(vec![], 1)]),
    ]);
    process(&t, &mut rms);
    let names: Vec<&str> = all(&rms).iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["other", "disk.io"]);
    assert_eq!(
        numbers(find(&rms, "disk.io")),
        vec![
            (
                pairs(&[("dev", "sda"), ("direction", "READ"), ("$2", "BYTES")]),
                10.0
            ),
            (
                pairs(&[("dev", "sda"), ("direction", "WRITE"), ("$2", "BYTES")]),
                20.0
            ),
        ]
    );

    // Metrics of different types are not combined: everything stays as it was.
    let mut rms = batch(vec![
        int_sum("disk.read.bytes", vec![(vec![], 1)]),
        gauge("disk.write.bytes", vec![(vec![], 2.0)]),
    ]);
    process(&t, &mut rms);
    assert_eq!(all(&rms).len(), 2);
}

#[test]
fn group_moves_metrics_under_a_new_resource() {
    let t = compiled(json!({"transforms": [
        {"include": "^k8s\\.", "match_type": "regexp", "action": "group",
         "group_resource_labels": {"pipeline": "k8s"}}]}));
    let mut rms = batch(vec![
        gauge("k8s.pod.phase", vec![(vec![], 1.0)]),
        gauge("system.cpu", vec![(vec![], 1.0)]),
    ]);
    process(&t, &mut rms);
    assert_eq!(rms.len(), 2);
    assert_eq!(rms[0].scope_metrics[0].metrics[0].name, "system.cpu");
    let res = &rms[1].resource.as_ref().expect("resource").attributes;
    assert_eq!(get_str(res, "pipeline"), Some("k8s"));
    assert_eq!(get_str(res, "service.name"), Some("kube-state-metrics"));
    assert_eq!(rms[1].scope_metrics[0].metrics[0].name, "k8s.pod.phase");
}

#[test]
fn version_placeholder_is_filled() {
    let t = compiled(json!({"transforms": [
        {"include": "otelcol_process_uptime", "action": "update",
         "operations": [{"action": "add_label", "new_label": "version", "new_value": "vigil/{{version}}"}]}]}));
    let mut rms = batch(vec![gauge("otelcol_process_uptime", vec![(vec![], 1.0)])]);
    process(&t, &mut rms);
    let v = numbers(find(&rms, "otelcol_process_uptime"))[0].0[0]
        .1
        .clone();
    assert_eq!(v, format!("vigil/{}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn aggregate_labels_merges_histogram_points() {
    let t = compiled(json!({"transforms": [
        {"include": "latency", "action": "update", "operations": [
            {"action": "aggregate_labels", "label_set": [], "aggregation_type": "sum"}]}]}));
    let point = |pod: &str, count, sum, min, max, buckets: Vec<u64>| HistogramDataPoint {
        attributes: vec![kv_str("pod", pod)],
        time_unix_nano: 2_000,
        start_time_unix_nano: 1_000,
        count,
        sum: Some(sum),
        min,
        max,
        explicit_bounds: vec![1.0, 2.0],
        bucket_counts: buckets,
        ..Default::default()
    };
    let h = Metric {
        name: "latency".into(),
        data: Some(metric::Data::Histogram(Histogram {
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            data_points: vec![
                point("a", 3, 4.0, Some(1.0), Some(2.5), vec![1, 1, 1]),
                point("b", 2, 1.0, Some(0.25), Some(2.0), vec![2, 0, 0]),
            ],
        })),
        ..Default::default()
    };
    let mut rms = batch(vec![h]);
    process(&t, &mut rms);
    let Some(metric::Data::Histogram(h)) = &find(&rms, "latency").data else {
        panic!("a histogram")
    };
    assert_eq!(h.data_points.len(), 1);
    let p = &h.data_points[0];
    assert_eq!((p.count, p.sum), (5, Some(5.0)));
    assert_eq!((p.min, p.max), (Some(0.25), Some(2.5)));
    assert_eq!(p.bucket_counts, [3, 1, 1]);
}
