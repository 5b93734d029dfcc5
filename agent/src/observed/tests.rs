use super::*;
use async_trait::async_trait;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue};
use opentelemetry_proto::tonic::logs::v1::ScopeLogs;
use opentelemetry_proto::tonic::metrics::v1::{Gauge, Metric, NumberDataPoint, ScopeMetrics, Sum};
use vigil_core::attrs::{kv_f64, kv_i64, kv_str};

fn event(name: &str, t: u64, attrs: Vec<KeyValue>) -> LogRecord {
    let mut a = vec![kv_str("event.name", name)];
    a.extend(attrs);
    LogRecord {
        // Only the attribute names the event here: the tap must read either.
        time_unix_nano: t,
        attributes: a,
        ..Default::default()
    }
}

fn logs(records: Vec<LogRecord>) -> Telemetry {
    Telemetry::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn metrics(ms: Vec<Metric>) -> Telemetry {
    Telemetry::Metrics(vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: ms,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn gauge(name: &str, series: &str, pts: &[(u64, f64)]) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: pts
                .iter()
                .map(|(t, v)| NumberDataPoint {
                    attributes: vec![kv_str("vigil.anomaly.series", series)],
                    time_unix_nano: *t,
                    value: Some(number_data_point::Value::AsDouble(*v)),
                    ..Default::default()
                })
                .collect(),
        })),
        ..Default::default()
    }
}

fn strs(key: &str, v: &[&str]) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: v
                    .iter()
                    .map(|s| AnyValue {
                        value: Some(any_value::Value::StringValue(s.to_string())),
                    })
                    .collect(),
            })),
        }),
        ..Default::default()
    }
}

#[test]
fn anomalies_open_and_end_once_even_when_seen_twice() {
    let o = Observed::default();
    let start = event(
        "vigil.anomaly",
        10,
        vec![
            kv_str("vigil.anomaly.state", "start"),
            kv_str("vigil.anomaly.series", "cpu{host.name=a}"),
            kv_f64("vigil.anomaly.score", 0.9),
            kv_f64("vigil.anomaly.observed", 5.0),
        ],
    );
    let data = logs(vec![start]);
    o.observe(&data, false);
    o.observe(&data, false);
    let s = o.snapshot();
    assert_eq!(s.anomalies.len(), 1);
    assert_eq!(s.anomalies[0].observed, 5.0);
    let mut end = event(
        "",
        30_000_000_000,
        vec![
            kv_str("vigil.anomaly.state", "end"),
            kv_str("vigil.anomaly.series", "cpu{host.name=a}"),
            kv_f64("vigil.anomaly.duration_s", 20.0),
            kv_str("vigil.anomaly.end_reason", "quiet"),
        ],
    );
    // This one is named by the EventName field only.
    end.attributes.remove(0);
    end.event_name = "vigil.anomaly".into();
    let data = logs(vec![end]);
    o.observe(&data, false);
    o.observe(&data, false);
    let s = o.snapshot();
    assert!(s.anomalies.is_empty());
    assert_eq!(s.ended.len(), 1);
    assert_eq!(s.ended[0].started, 10_000_000_000);
    assert_eq!(s.ended[0].end_reason, "quiet");
}

#[test]
fn incidents_keep_their_latest_record_and_candidates() {
    let o = Observed::default();
    let inc = |status: &str, members: i64| {
        event(
            "vigil.incident",
            1,
            vec![
                kv_str("vigil.incident.id", "17"),
                kv_str("vigil.incident.status", status),
                kv_i64("vigil.incident.member_count", members),
                strs(
                    "vigil.incident.root_cause.candidates",
                    &["db: first", "api: second"],
                ),
                strs("vigil.incident.services", &["api", "db"]),
            ],
        )
    };
    o.observe(&logs(vec![inc("open", 1)]), false);
    o.observe(&logs(vec![inc("update", 3)]), false);
    let s = o.snapshot();
    assert_eq!(s.incidents.len(), 1);
    assert_eq!(s.incidents[0].status, "update");
    assert_eq!(s.incidents[0].member_count, 3);
    assert_eq!(s.incidents[0].candidates, ["db: first", "api: second"]);
    assert_eq!(s.incidents[0].services, ["api", "db"]);
}

#[test]
fn patterns_are_counted_only_where_asked_and_bounded() {
    let o = Observed::new(Limits {
        patterns: 2,
        ..Limits::default()
    });
    let rec = |id: &str, extra: Option<i64>| {
        let mut a = vec![
            kv_str("log.pattern.id", id),
            kv_str("log.pattern", "user <*>"),
        ];
        if let Some(c) = extra {
            a.push(kv_i64("vigil.dedup.count", c));
        }
        LogRecord {
            attributes: a,
            ..Default::default()
        }
    };
    let batch = logs(vec![
        rec("a", None),
        rec("a", None),
        rec("b", None),
        rec("a", Some(5)),
    ]);
    o.observe(&batch, false);
    assert_eq!(o.snapshot().pattern_count, 0, "an input tap does not count");
    o.observe(&batch, true);
    let s = o.snapshot();
    // Two records, plus a dedup summary standing for 4 repeats.
    assert_eq!((s.patterns[0].id.as_str(), s.patterns[0].count), ("a", 6));
    assert_eq!((s.patterns[1].id.as_str(), s.patterns[1].count), ("b", 1));
    o.observe(&logs(vec![rec("c", None)]), true);
    let s = o.snapshot();
    assert_eq!(s.pattern_count, 2);
    assert_eq!(s.dropped.patterns, 1);
    assert!(
        s.patterns.iter().all(|p| p.id != "b"),
        "the least counted made room"
    );
}

#[test]
fn edges_and_bands_come_from_metrics() {
    let o = Observed::new(Limits {
        series: 1,
        points: 3,
        ..Limits::default()
    });
    let edge = Metric {
        name: "traces_service_graph_request_total".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![NumberDataPoint {
                attributes: vec![kv_str("client", "api"), kv_str("server", "db")],
                value: Some(number_data_point::Value::AsInt(42)),
                ..Default::default()
            }],
            ..Default::default()
        })),
        ..Default::default()
    };
    o.observe(
        &metrics(vec![
            edge,
            gauge(
                "vigil.anomaly.score",
                "s1",
                &[(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)],
            ),
            gauge("vigil.anomaly.expected.lower", "s1", &[(3, 1.0), (4, 1.5)]),
            gauge("vigil.anomaly.expected.upper", "s1", &[(3, 2.0), (4, 2.5)]),
            gauge("vigil.anomaly.score", "s2", &[(4, 0.1)]),
        ]),
        false,
    );
    let s = o.snapshot();
    assert_eq!(s.edges.len(), 1);
    assert_eq!(s.edges[0].2.requests, 42.0);
    assert_eq!(s.bands.len(), 1);
    let (name, pts) = &s.bands[0];
    assert_eq!(name, "s1");
    assert_eq!(pts.iter().map(|p| p.t).collect::<Vec<_>>(), [2, 3, 4]);
    assert_eq!((pts[2].lower, pts[2].upper, pts[2].score), (1.5, 2.5, 0.4));
    assert_eq!(s.dropped.series, 1, "a calm second series does not evict");
    // An anomalous one does.
    o.observe(
        &metrics(vec![gauge("vigil.anomaly.score", "s3", &[(5, 0.9)])]),
        false,
    );
    let s = o.snapshot();
    assert_eq!(s.bands[0].0, "s3");
}

#[test]
fn batches_of_nothing_leave_no_trace() {
    let o = Observed::default();
    let plain = LogRecord {
        attributes: vec![kv_str("http.method", "GET")],
        ..Default::default()
    };
    o.observe(&logs(vec![plain]), true);
    o.observe(&metrics(vec![gauge("cpu", "x", &[(1, 1.0)])]), true);
    let s = o.snapshot();
    assert!(s.bands.is_empty() && s.patterns.is_empty() && s.anomalies.is_empty());
}

struct Keep(Mutex<Vec<Telemetry>>);

#[async_trait]
impl Consumer for Keep {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        self.0.lock().unwrap().push(data);
        Ok(())
    }
}

fn config(extensions: &[&str]) -> Config {
    Config {
        receivers: BTreeMap::new(),
        processors: BTreeMap::new(),
        exporters: BTreeMap::new(),
        connectors: BTreeMap::new(),
        extensions: BTreeMap::new(),
        service_extensions: extensions
            .iter()
            .map(|e| vigil_core::ComponentId::new(e, None))
            .collect(),
        pipelines: Vec::new(),
        telemetry: Default::default(),
    }
}

fn pipeline(signal: Signal) -> Pipeline {
    Pipeline {
        id: signal.to_string(),
        signal,
        receivers: Vec::new(),
        processors: vec![vigil_core::ComponentId::new("logpattern", None)],
        exporters: Vec::new(),
    }
}

#[tokio::test]
async fn the_tap_passes_batches_through_untouched() {
    let keep = Arc::new(Keep(Mutex::new(Vec::new())));
    let next: Arc<dyn Consumer> = keep.clone();
    // No zpages, or a traces pipeline: no tap at all.
    let same = tap(
        &config(&["health_check"]),
        &pipeline(Signal::Logs),
        At::Output,
        next.clone(),
    );
    assert!(Arc::ptr_eq(&same, &next));
    let cfg = config(&["zpages"]);
    let same = tap(&cfg, &pipeline(Signal::Traces), At::Output, next.clone());
    assert!(Arc::ptr_eq(&same, &next));

    let same = tap(&cfg, &pipeline(Signal::Logs), At::Input, next.clone());
    assert!(
        Arc::ptr_eq(&same, &next),
        "receivers' data is seen at the output"
    );
    let tapped = tap(&cfg, &pipeline(Signal::Logs), At::Output, next.clone());
    assert!(!Arc::ptr_eq(&tapped, &next));
    let batch = logs(vec![
        event(
            "vigil.incident",
            1,
            vec![
                kv_str("vigil.incident.id", "tap-test"),
                kv_str("vigil.incident.status", "open"),
            ],
        ),
        LogRecord {
            attributes: vec![kv_str("log.pattern.id", "tap-test-pattern")],
            ..Default::default()
        },
    ]);
    tapped.consume(batch.clone()).await.unwrap();
    assert_eq!(
        keep.0.lock().unwrap().as_slice(),
        std::slice::from_ref(&batch)
    );
    let s = global().snapshot();
    assert!(s.incidents.iter().any(|i| i.id == "tap-test"));
    assert!(s
        .patterns
        .iter()
        .any(|p| p.id == "tap-test-pattern" && p.count == 1));
}

/// Not a test: the tap's cost on batches with nothing of interest, the common case. Run with
/// `cargo test -p vigil --release observed::tests::tap_cost -- --ignored --nocapture`; the figures
/// are in BENCHMARKS.md ("Status page tap").
#[test]
#[ignore]
fn tap_cost() {
    let o = Observed::default();
    let record = |i: usize| LogRecord {
        time_unix_nano: i as u64,
        event_name: String::new(),
        attributes: vec![
            kv_str("http.method", "GET"),
            kv_str("http.route", "/api/orders"),
            kv_i64("http.status_code", 200),
            kv_str("log.pattern.id", ["a1", "b2", "c3", "d4"][i % 4]),
            kv_str("log.pattern", "request <*> served in <*>"),
        ],
        ..Default::default()
    };
    let batch = logs((0..1024).map(record).collect());
    let points: Vec<(u64, f64)> = (0..1000).map(|i| (i, i as f64)).collect();
    let gauges = metrics(vec![gauge("system.cpu.utilization", "x", &points)]);
    for (what, data, count) in [
        ("logs, input tap (no events)", &batch, false),
        ("logs, output tap counting patterns", &batch, true),
        ("metrics, nothing of interest", &gauges, false),
    ] {
        let rounds = 2000;
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            o.observe(std::hint::black_box(data), count);
        }
        let per = start.elapsed().as_nanos() as f64 / (rounds * data.item_count()) as f64;
        println!("{what}: {per:.1} ns per item");
    }
}
