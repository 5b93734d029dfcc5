//! Engine and connector behaviour on synthetic OTLP input with explicit timestamps: one start and one
//! end event per injected anomaly, silence on clean series, RED and log-rate windows, forecasts
//! announced once, bounded state, and config errors with their key paths.

use super::config::parse;
use super::engine::{Engine, Output};
use super::*;
use serde_json::json;
use vigil_core::attrs::{get, kv_i64, kv_str};
use vigil_core::otlp::common::v1::{any_value, KeyValue};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::otlp::trace::v1::{
    span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};

const T0: f64 = 1_700_000_000.0;
const WALL: f64 = T0 + 100_000.0;

/// Deterministic noise in [-1, 1] (xorshift), so that series look real but tests repeat exactly.
struct Noise(u64);
impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

fn resource(attrs: Vec<KeyValue>) -> Option<Resource> {
    Some(Resource {
        attributes: attrs,
        ..Default::default()
    })
}

fn metrics(name: &str, data: Data) -> Telemetry {
    Telemetry::Metrics(vec![ResourceMetrics {
        resource: resource(vec![kv_str("host.name", "node-1")]),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![Metric {
                name: name.into(),
                data: Some(data),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn point(t: f64, v: f64, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        time_unix_nano: (t * 1e9) as u64,
        start_time_unix_nano: (T0 * 1e9) as u64,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn gauge(name: &str, t: f64, v: f64) -> Telemetry {
    metrics(
        name,
        Data::Gauge(Gauge {
            data_points: vec![point(t, v, vec![kv_str("cpu", "0")])],
        }),
    )
}

/// Settings for the tests, which inject one-point spikes: they announce at the first anomalous point
/// unless `confirm_points` is given (confirmation has its own test).
fn settings(mut v: serde_json::Value) -> config::Settings {
    if v.get("confirm_points").is_none() {
        v["confirm_points"] = json!(1);
    }
    parse(&ComponentId::new("anomalydetection", None), &v).expect("valid config")
}

/// The events in an output, as (event name, attribute map).
fn events(out: &[Output]) -> Vec<(String, Vec<KeyValue>, String)> {
    let mut v = Vec::new();
    for o in out {
        for rl in &o.logs {
            for sl in &rl.scope_logs {
                for r in &sl.log_records {
                    let body = match r.body.as_ref().and_then(|b| b.value.as_ref()) {
                        Some(any_value::Value::StringValue(s)) => s.clone(),
                        _ => String::new(),
                    };
                    v.push((r.event_name.clone(), r.attributes.clone(), body));
                }
            }
        }
    }
    v
}

fn s(attrs: &[KeyValue], key: &str) -> String {
    match get(attrs, key) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        _ => String::new(),
    }
}

fn run_gauge(engine: &mut Engine, values: &[f64]) -> Vec<Output> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| engine.ingest(&gauge("cpu.utilization", T0 + 10.0 * i as f64, v), WALL))
        .collect()
}

fn noisy(n: usize) -> Vec<f64> {
    let mut noise = Noise(7);
    (0..n).map(|_| 0.2 + 0.02 * noise.next()).collect()
}

#[test]
fn by_default_a_one_point_spike_is_not_announced_but_a_shift_is() {
    let mut e = Engine::new(settings(json!({"confirm_points": 2})), false);
    let mut v = noisy(300);
    v[200] = 0.97;
    assert!(events(&run_gauge(&mut e, &v)).is_empty());
    assert_eq!(e.counts().events, 0);
    let mut e = Engine::new(settings(json!({"confirm_points": 2})), false);
    let mut v = noisy(300);
    for x in &mut v[200..260] {
        *x += 0.5;
    }
    let ev = events(&run_gauge(&mut e, &v));
    // One episode: the shift is announced, stays open while the series stays shifted (issue #20), and
    // ends once it is back in its band.
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(s(&ev[0].1, "vigil.anomaly.state"), "start");
    assert_eq!(s(&ev[1].1, "vigil.anomaly.state"), "end");
    let lasted: f64 = s(&ev[1].1, "vigil.anomaly.duration_s")
        .parse()
        .unwrap_or(0.0);
    assert!(
        lasted >= 590.0,
        "ended after {lasted} s, while still shifted"
    );
    let id = ComponentId::new("anomalydetection", None);
    let err = parse(&id, &json!({"confirm_points": 0}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("confirm_points"), "{err}");
}

/// The detector's hold (scores kept under the threshold for 60 points after one reached it) is not the
/// connector's: a noise blip, or an episode that ended, must not hide a fault that starts soon after
/// (issue #19: a latency fault 28 points after a blip went unseen on the real app).
#[test]
fn a_fault_soon_after_a_blip_or_an_ended_episode_is_announced() {
    for (blip_len, gap) in [(1, 25), (3, 30)] {
        let mut e = Engine::new(settings(json!({"confirm_points": 2})), false);
        let mut v = noisy(300);
        // A one-point blip (never announced), or a three-point episode (announced, then ended).
        for x in &mut v[150..150 + blip_len] {
            *x = 0.97;
        }
        let fault = 150 + blip_len + gap;
        for x in &mut v[fault..fault + 40] {
            *x += 0.5;
        }
        let ev = events(&run_gauge(&mut e, &v));
        let starts: Vec<f64> = ev
            .iter()
            .filter(|(_, a, _)| s(a, "vigil.anomaly.state") == "start")
            .map(|(_, a, _)| s(a, "vigil.anomaly.observed").parse().unwrap_or(0.0))
            .collect();
        assert!(
            starts.iter().any(|&o| o > 0.6 && o < 0.8),
            "blip of {blip_len}, fault {gap} points later: starts {starts:?}, events {ev:?}"
        );
    }
}

#[test]
fn injected_spike_gives_one_start_and_one_end() {
    let mut e = Engine::new(settings(json!({})), false);
    let mut v = noisy(300);
    v[200] = 0.97;
    let ev = events(&run_gauge(&mut e, &v));
    assert_eq!(ev.len(), 2, "{ev:?}");
    let (start, end) = (&ev[0], &ev[1]);
    assert_eq!(start.0, "vigil.anomaly");
    assert_eq!(s(&start.1, "event.name"), "vigil.anomaly");
    assert_eq!(s(&start.1, "vigil.anomaly.state"), "start");
    assert_eq!(s(&end.1, "vigil.anomaly.state"), "end");
    assert_eq!(s(&end.1, "vigil.anomaly.end_reason"), "quiet");
    for (_, a, _) in &ev {
        assert_eq!(s(a, "vigil.anomaly.observed"), "0.97");
        assert_eq!(s(a, "vigil.anomaly.signal"), "metrics");
        assert_eq!(s(a, "vigil.anomaly.metric"), "cpu.utilization");
        assert_eq!(
            s(a, "vigil.anomaly.series"),
            "cpu.utilization{cpu=0,host.name=node-1}"
        );
        assert_eq!(s(a, "vigil.anomaly.detector"), "outlier");
        assert_eq!(s(a, "cpu"), "0");
        let score: f64 = s(a, "vigil.anomaly.score").parse().unwrap();
        assert!(score >= 0.5, "{score}");
        let upper: f64 = s(a, "vigil.anomaly.expected.upper").parse().unwrap();
        assert!(upper < 0.97);
    }
    assert_eq!(
        s(&end.1, "vigil.anomaly.started_at"),
        "2023-11-14T22:46:40.000Z"
    );
    assert!(
        start
            .2
            .starts_with("cpu.utilization{cpu=0,host.name=node-1} "),
        "{}",
        start.2
    );
    assert!(
        start.2.contains("× above its band: 0.97 vs "),
        "{}",
        start.2
    );
    // The event keeps the resource of the data.
    let res = &run_gauge(&mut Engine::new(settings(json!({})), false), &v)
        .into_iter()
        .flat_map(|o| o.logs)
        .next()
        .unwrap()
        .resource;
    assert_eq!(s(&res.as_ref().unwrap().attributes, "host.name"), "node-1");
    assert_eq!(e.counts().events, 2);
    assert_eq!(e.counts().points, 300);
}

#[test]
fn clean_series_gives_no_event() {
    let mut e = Engine::new(settings(json!({})), true);
    let out = run_gauge(&mut e, &noisy(300));
    assert!(events(&out).is_empty());
    // Scores are emitted for every scored point (not warm-up ones).
    let gauges: usize = out
        .into_iter()
        .map(|o| o.scores.into_resource_metrics().len())
        .sum();
    assert!(gauges > 250, "{gauges}");
}

// The latest point delivered again is dropped; a repeated timestamp with a new value, or an earlier one
// (a clock step back), is scored as the next sample and counted, never dropped.
#[test]
fn duplicates_are_dropped_and_out_of_order_points_scored_and_counted() {
    let mut e = Engine::new(settings(json!({})), false);
    e.ingest(&gauge("x", T0 + 10.0, 1.0), WALL);
    e.ingest(&gauge("x", T0 + 10.0, 1.0), WALL);
    e.ingest(&gauge("x", T0 + 5.0, 1.0), WALL);
    e.ingest(&gauge("x", T0 + 5.0, 2.0), WALL);
    e.ingest(&gauge("x", T0 + 15.0, 1.0), WALL);
    let c = e.counts();
    assert_eq!((c.points, c.duplicates, c.out_of_order), (4, 1, 2));
}

#[test]
fn cumulative_counter_is_watched_as_a_rate() {
    let mut e = Engine::new(settings(json!({})), false);
    let mut total = 0.0;
    let mut out = Vec::new();
    for i in 0..200 {
        // 5/s with a little jitter, a reset at 100 (the process restarted), and 50/s at 150.
        let per_s = if i == 150 {
            50.0
        } else {
            5.0 + (i % 3) as f64 * 0.1
        };
        total += per_s * 10.0;
        let t = T0 + 10.0 * i as f64;
        let mut p = point(t, total, vec![]);
        if i >= 100 {
            if i == 100 {
                total = per_s * 10.0;
            }
            p.value = Some(number_data_point::Value::AsDouble(total));
            p.start_time_unix_nano = ((T0 + 10.0 * 99.0) * 1e9) as u64;
        }
        let sum = Data::Sum(Sum {
            data_points: vec![p],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        });
        out.push(e.ingest(&metrics("http.requests", sum), WALL));
    }
    let ev = events(&out);
    // The reset is not an anomaly; the burst at 150 is, and it is reported on the rate series.
    let starts: Vec<_> = ev
        .iter()
        .filter(|(_, a, _)| s(a, "vigil.anomaly.state") == "start")
        .collect();
    assert_eq!(starts.len(), 1, "{ev:?}");
    assert_eq!(
        s(&starts[0].1, "vigil.anomaly.metric"),
        "http.requests.rate"
    );
    assert_eq!(s(&starts[0].1, "vigil.anomaly.observed"), "50");
}

fn spans(
    service: &str,
    name: &str,
    window_start: f64,
    n: usize,
    errors: usize,
    ms: f64,
) -> Telemetry {
    let spans = (0..n)
        .map(|i| {
            let end = window_start + 1.0 + i as f64 * (8.0 / n as f64);
            Span {
                name: name.into(),
                kind: SpanKind::Server as i32,
                start_time_unix_nano: ((end - ms / 1000.0) * 1e9) as u64,
                end_time_unix_nano: (end * 1e9) as u64,
                status: Some(Status {
                    code: if i < errors {
                        StatusCode::Error as i32
                    } else {
                        StatusCode::Ok as i32
                    },
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .chain(std::iter::once(Span {
            // A client span is not a request served: it must not count.
            name: name.into(),
            kind: SpanKind::Client as i32,
            start_time_unix_nano: (window_start * 1e9) as u64,
            end_time_unix_nano: ((window_start + 1.0) * 1e9) as u64,
            ..Default::default()
        }))
        .collect();
    traces_of(service, spans)
}

/// One resource's spans as a traces batch.
fn traces_of(service: &str, spans: Vec<Span>) -> Telemetry {
    Telemetry::Traces(vec![ResourceSpans {
        resource: resource(vec![kv_str("service.name", service)]),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

/// An SLO on span RED: a sustained error burst makes one `vigil.slo` firing record and, once it
/// stops, one resolved record; the windows are the workbook's 1h/5m scaled to 60 s/5 s.
#[test]
fn an_slo_burning_its_budget_fires_once_and_resolves() {
    let cfg = json!({
        "interval": "1s",
        "slos": [{
            "service": "checkout",
            "availability": 0.99,
            "period": "1h",
            "alerts": [{"burn_rate": 14.4, "long": "60s", "short": "5s"}]
        }]
    });
    let mut e = Engine::new(settings(cfg), false);
    let mut out = Vec::new();
    for w in 0..200 {
        let t = T0 + w as f64;
        // 20 requests a second; half of them fail from second 100 to 129.
        let errors = if (100..130).contains(&w) { 10 } else { 0 };
        // Another service's failures do not count.
        e.ingest(&spans("other", "GET /", t, 20, 20, 5.0), t + 0.5);
        e.ingest(&spans("checkout", "POST /pay", t, 20, errors, 5.0), t + 0.5);
        out.push(e.tick(t + 1.0, false));
    }
    let slo: Vec<_> = events(&out)
        .into_iter()
        .filter(|(name, _, _)| name == "vigil.slo")
        .collect();
    assert_eq!(slo.len(), 2, "{slo:?}");
    assert_eq!(s(&slo[0].1, "vigil.slo.state"), "firing");
    assert_eq!(s(&slo[0].1, "vigil.slo.service"), "checkout");
    assert!(
        slo[0].2.contains("availability SLO 99% of checkout"),
        "{}",
        slo[0].2
    );
    assert_eq!(s(&slo[1].1, "vigil.slo.state"), "resolved");
    let lasted: f64 = s(&slo[1].1, "vigil.slo.duration_s").parse().unwrap_or(0.0);
    assert!((5.0..=20.0).contains(&lasted), "fired for {lasted} s");
    // A firing alert is resolved at shutdown.
    let mut e = Engine::new(
        settings(
            json!({"interval": "1s", "slos": [{"service": "checkout", "availability": 0.99,
            "alerts": [{"burn_rate": 2, "long": "10s", "short": "2s"}]}]}),
        ),
        false,
    );
    let mut out = Vec::new();
    for w in 0..20 {
        let t = T0 + w as f64;
        e.ingest(&spans("checkout", "POST /pay", t, 20, 20, 5.0), t + 0.5);
        out.push(e.tick(t + 1.0, false));
    }
    out.push(e.tick(T0 + 21.0, true));
    let states: Vec<String> = events(&out)
        .iter()
        .filter(|(name, _, _)| name == "vigil.slo")
        .map(|(_, a, _)| s(a, "vigil.slo.state"))
        .collect();
    assert_eq!(states, ["firing", "resolved"]);
    // Config mistakes name their key path.
    let id = ComponentId::new("anomalydetection", None);
    let err = parse(
        &id,
        &json!({"slos": [{"service": "a", "availability": 99.9}]}),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("slos::0::availability"), "{err}");
    let err = parse(
        &id,
        &json!({"interval": "10s", "slos": [{"service": "a", "availability": 0.99,
            "alerts": [{"burn_rate": 14.4, "long": "1h", "short": "5s"}]}]}),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("slos::0::alerts::0::short"), "{err}");
}

#[test]
fn red_windows_feed_rate_errors_and_latency() {
    let mut e = Engine::new(settings(json!({"interval": "10s"})), false);
    let mut out = Vec::new();
    for w in 0..120 {
        let start = T0 + 10.0 * w as f64;
        // Steady: 20 requests, 1 error, 50 ms; window 100: every request fails.
        let errors = if w == 100 { 20 } else { 1 };
        e.ingest(
            &spans("checkout", "POST /pay", start, 20, errors, 50.0),
            WALL,
        );
        // The clock of the group is the newest span: the previous window is now complete.
        out.push(e.tick(WALL, false));
    }
    out.push(e.tick(WALL, true));
    // Five detectors per service × span name: rate, error ratio, own error ratio, p50, p99.
    assert_eq!(e.counts().live, 5);
    // The last window has not ended by its group's clock, so even the final flush leaves it.
    assert_eq!(e.counts().points, 5 * 119);
    let ev = events(&out);
    let starts: Vec<_> = ev
        .iter()
        .filter(|(_, a, _)| s(a, "vigil.anomaly.state") == "start")
        .collect();
    // The error ratio, and the own error ratio beside it: no call failed under these failures.
    assert_eq!(starts.len(), 2, "{ev:?}");
    assert_eq!(
        s(&starts[1].1, "vigil.anomaly.metric"),
        "red.own_error_ratio"
    );
    let a = &starts[0].1;
    assert_eq!(s(a, "vigil.anomaly.metric"), "red.error_ratio");
    assert_eq!(s(a, "vigil.anomaly.signal"), "traces");
    assert_eq!(s(a, "vigil.anomaly.observed"), "1");
    assert_eq!(s(a, "service.name"), "checkout");
    assert_eq!(s(a, "span.name"), "POST /pay");
    assert_eq!(s(a, "span.kind"), "server");
    assert_eq!(
        s(a, "vigil.anomaly.series"),
        "red.error_ratio{service.name=checkout,span.kind=server,span.name=POST /pay}"
    );
}

/// `n` server spans of `total_ms`, each with one client child of `child_ms` in the same batch.
fn spans_with_children(window_start: f64, n: usize, total_ms: f64, child_ms: f64) -> Telemetry {
    let mut spans = Vec::new();
    for i in 0..n {
        let end = window_start + 1.0 + i as f64 * (8.0 / n as f64);
        let start = end - total_ms / 1000.0;
        let id = (i as u64 + 1).to_be_bytes().to_vec();
        spans.push(Span {
            name: "GET /cart".into(),
            kind: SpanKind::Client as i32,
            span_id: (i as u64 + 1000).to_be_bytes().to_vec(),
            parent_span_id: id.clone(),
            start_time_unix_nano: ((start + 0.001) * 1e9) as u64,
            end_time_unix_nano: ((start + 0.001 + child_ms / 1000.0) * 1e9) as u64,
            ..Default::default()
        });
        spans.push(Span {
            name: "GET /cart".into(),
            kind: SpanKind::Server as i32,
            span_id: id,
            start_time_unix_nano: (start * 1e9) as u64,
            end_time_unix_nano: (end * 1e9) as u64,
            ..Default::default()
        });
    }
    traces_of("cart", spans)
}

#[test]
fn self_time_shows_a_slowdown_hidden_behind_a_slow_callee() {
    let mut e = Engine::new(settings(json!({"interval": "10s"})), false);
    let mut out = Vec::new();
    for w in 0..140 {
        let start = T0 + 10.0 * w as f64;
        // 400 ms waiting on the callee and 10 ms of own work; from window 100 the own work is 30 ms:
        // +5% on the duration, ×3 on the self time.
        let own = if w >= 100 { 30.0 } else { 10.0 };
        e.ingest(&spans_with_children(start, 20, 400.0 + own, 400.0), WALL);
        out.push(e.tick(WALL, false));
    }
    // Rate, error ratio, own error ratio, p50, p99, and the self time's p50.
    assert_eq!(e.counts().live, 6);
    let ev = events(&out);
    let starts: Vec<_> = ev
        .iter()
        .filter(|(_, a, _)| s(a, "vigil.anomaly.state") == "start")
        .map(|(_, a, _)| s(a, "vigil.anomaly.metric"))
        .collect();
    assert!(
        starts.iter().any(|m| m == "red.self_time.p50"),
        "the self time should be anomalous: {starts:?}"
    );
}

/// `n` server spans of one window (`w`), each with a CLIENT child; the first `failed` fail, and the
/// first `passed_on` of them because their child failed.
fn spans_failing(
    window_start: f64,
    w: u64,
    n: usize,
    failed: usize,
    passed_on: usize,
) -> Vec<Span> {
    let status = |bad: bool| {
        Some(Status {
            code: if bad {
                StatusCode::Error as i32
            } else {
                StatusCode::Ok as i32
            },
            ..Default::default()
        })
    };
    let mut spans = Vec::new();
    for i in 0..n {
        let end = window_start + 1.0 + i as f64 * (8.0 / n as f64);
        let id = (w * 1000 + i as u64 + 1).to_be_bytes().to_vec();
        spans.push(Span {
            name: "GET /buy".into(),
            kind: SpanKind::Client as i32,
            span_id: (w * 1000 + i as u64 + 500).to_be_bytes().to_vec(),
            parent_span_id: id.clone(),
            start_time_unix_nano: ((end - 0.04) * 1e9) as u64,
            end_time_unix_nano: ((end - 0.01) * 1e9) as u64,
            status: status(i < passed_on),
            ..Default::default()
        });
        spans.push(Span {
            name: "GET /buy".into(),
            kind: SpanKind::Server as i32,
            span_id: id,
            start_time_unix_nano: ((end - 0.05) * 1e9) as u64,
            end_time_unix_nano: (end * 1e9) as u64,
            status: status(i < failed),
            ..Default::default()
        });
    }
    spans
}

#[test]
fn own_errors_show_a_failure_that_passed_on_errors_would_hide() {
    let mut e = Engine::new(settings(json!({"interval": "10s"})), false);
    let mut out = Vec::new();
    for w in 0..160u64 {
        let start = T0 + 10.0 * w as f64;
        // Windows 60–64: the callee fails and 15 of 20 requests fail with it (passed on). Windows
        // 120–124: 10 of 20 fail here, every call fine: less than before in the total ratio.
        let (failed, passed_on) = match w {
            60..=64 => (15, 15),
            120..=124 => (10, 0),
            _ => (0, 0),
        };
        let spans = spans_failing(start, w, 20, failed, passed_on);
        // Odd windows: the children come in an earlier batch of their own, as when an SDK's export
        // falls between a call's end and its parent's.
        if w % 2 == 1 {
            let (children, parents): (Vec<Span>, Vec<Span>) = spans
                .into_iter()
                .partition(|s| s.kind == SpanKind::Client as i32);
            e.ingest(&traces_of("checkout", children), WALL);
            e.ingest(&traces_of("checkout", parents), WALL);
        } else {
            e.ingest(&traces_of("checkout", spans), WALL);
        }
        out.push(e.tick(WALL, false));
    }
    let ev = events(&out);
    let own_starts: Vec<f64> = ev
        .iter()
        .filter(|(_, a, _)| {
            s(a, "vigil.anomaly.state") == "start"
                && s(a, "vigil.anomaly.metric") == "red.own_error_ratio"
        })
        .map(|(_, a, _)| {
            s(a, "vigil.anomaly.observed")
                .parse::<f64>()
                .unwrap_or(-1.0)
        })
        .collect();
    // Once, for the failure that began here, at its ratio; none for the callee's.
    assert_eq!(own_starts, [0.5], "{ev:?}");
    assert_eq!(e.counts().failed_calls_evicted, 0);
}

#[test]
fn red_latency_quantiles_come_from_the_window() {
    use super::windows::{AggKind, AggMeta, Windows};
    let mut w = Windows::new(10.0, 10, 3600.0);
    let meta = || AggMeta {
        kind: AggKind::Red,
        key: 1,
        attributes: vec![],
        resource: vec![],
    };
    for i in 0..100 {
        w.add(
            1,
            meta,
            1.0 + i as f64 * 0.05,
            WALL,
            false,
            Some(if i < 98 { 10.0 } else { 500.0 }),
        );
    }
    let f = w.flush(WALL + 100.0, false);
    let b = &f[0].bucket;
    assert_eq!(b.count, 100);
    let p50 = b.latency.quantile(0.5).unwrap();
    let p99 = b.latency.quantile(0.99).unwrap();
    assert!((p50 - 10.0).abs() < 0.2, "{p50}");
    assert!((p99 - 500.0).abs() < 10.0, "{p99}");
}

fn logs(service: &str, t: f64, n: usize, pattern: Option<i64>, vigil_events: usize) -> Telemetry {
    let mut records: Vec<LogRecord> = (0..n)
        .map(|i| LogRecord {
            time_unix_nano: ((t + i as f64 * 0.01) * 1e9) as u64,
            severity_number: 9,
            attributes: pattern
                .map(|p| {
                    vec![
                        kv_i64("log.pattern.id", p),
                        kv_str("log.pattern", "user <*> logged in"),
                    ]
                })
                .unwrap_or_default(),
            ..Default::default()
        })
        .collect();
    for _ in 0..vigil_events {
        records.push(LogRecord {
            time_unix_nano: (t * 1e9) as u64,
            severity_number: 17,
            attributes: vec![kv_str("event.name", "vigil.anomaly")],
            ..Default::default()
        });
    }
    Telemetry::Logs(vec![ResourceLogs {
        resource: resource(vec![kv_str("service.name", service)]),
        scope_logs: vec![ScopeLogs {
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

#[test]
fn log_pattern_surge_is_one_episode_and_vigil_events_do_not_count() {
    let mut e = Engine::new(settings(json!({"interval": "10s"})), false);
    let mut out = Vec::new();
    for w in 0..150 {
        let t = T0 + 10.0 * w as f64;
        // Pattern 17 runs at 5 per window; at window 120 it surges to 200. Our own events arriving in a
        // loop must never count, or an anomaly would feed itself.
        let n = if w == 120 { 200 } else { 5 };
        e.ingest(&logs("api", t + 1.0, n, Some(17), 50), WALL);
        out.push(e.tick(WALL, false));
    }
    let ev = events(&out);
    let starts: Vec<_> = ev
        .iter()
        .filter(|(_, a, _)| s(a, "vigil.anomaly.state") == "start")
        .collect();
    // Both the INFO rate of the service and the pattern's rate surged.
    let metrics: Vec<String> = starts
        .iter()
        .map(|x| s(&x.1, "vigil.anomaly.metric"))
        .collect();
    assert_eq!(metrics.len(), 2, "{ev:?}");
    assert!(metrics.contains(&"log.record.rate".to_string()));
    let p = starts
        .iter()
        .find(|x| s(&x.1, "vigil.anomaly.metric") == "log.pattern.rate")
        .expect("a pattern event");
    assert_eq!(s(&p.1, "log.pattern.id"), "17");
    assert_eq!(s(&p.1, "vigil.anomaly.observed"), "20");
    assert!(
        p.2.starts_with(
            "log pattern 17 \"user <*> logged in\" of api surged far above its band: 20 vs "
        ),
        "{}",
        p.2
    );
    let rate = starts
        .iter()
        .find(|x| s(&x.1, "vigil.anomaly.metric") == "log.record.rate")
        .unwrap();
    assert_eq!(s(&rate.1, "log.severity"), "INFO");
}

#[test]
fn forecast_is_announced_once_per_crossing() {
    let cfg = json!({"forecasts": [
        {"metric": "disk.used", "threshold": 90.0, "horizon": "2h", "attributes": {"cpu": "0"}},
        {"metric": "disk.used", "threshold": 90.0, "horizon": "2h", "attributes": {"cpu": "1"}}
    ]});
    let mut e = Engine::new(settings(cfg), false);
    let mut out = Vec::new();
    // A disk filling by 0.05 points a minute from 50%: 90% is 800 minutes after the start.
    for i in 0..700 {
        let v = 50.0 + 0.05 * i as f64 + if i % 2 == 0 { 0.01 } else { -0.01 };
        out.push(e.ingest(&gauge("disk.used", T0 + 60.0 * i as f64, v), WALL));
    }
    let fc: Vec<_> = events(&out)
        .into_iter()
        .filter(|(n, _, _)| n == "vigil.forecast")
        .collect();
    assert_eq!(fc.len(), 1, "{fc:?}");
    let a = &fc[0].1;
    let eta: f64 = s(a, "vigil.forecast.eta_s").parse().unwrap();
    let lower: f64 = s(a, "vigil.forecast.eta_lower_s").parse().unwrap();
    assert!(eta <= 7200.0 && eta > 0.0 && lower <= eta, "{a:?}");
    assert_eq!(s(a, "vigil.forecast.threshold"), "90");
    assert_eq!(s(a, "vigil.forecast.metric"), "disk.used");
    assert_eq!(
        s(a, "vigil.forecast.series"),
        "disk.used{cpu=0,host.name=node-1}"
    );
    // It was announced around when the crossing came within 2 h (point 800 − 120 = 680).
    let at: f64 = s(a, "vigil.forecast.observed").parse().unwrap();
    assert!((80.0..=85.0).contains(&at), "announced at {at}");
}

#[test]
fn lru_cap_evicts_and_closes_open_episodes() {
    let mut e = Engine::new(settings(json!({"max_series": 2})), false);
    let mut v = noisy(100);
    v[99] = 5.0;
    let mut out = run_gauge(&mut e, &v);
    assert_eq!(events(&out).len(), 1, "the spike opened an episode");
    // Two new series push the spiking one out: its episode is closed with an end event.
    out.push(e.ingest(&gauge("a", T0 + 2000.0, 1.0), WALL + 1.0));
    out.push(e.ingest(&gauge("b", T0 + 2000.0, 1.0), WALL + 2.0));
    let ev = events(&out);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(s(&ev[1].1, "vigil.anomaly.end_reason"), "evicted");
    let c = e.counts();
    assert_eq!((c.live, c.evicted), (2, 1));
    // Idle series expire after the TTL.
    e.tick(WALL + 2.0 + 3601.0, false);
    assert_eq!(e.counts().expired, 2);
    assert_eq!(e.counts().live, 0);
}

#[test]
fn include_and_exclude_select_metrics() {
    let cfg = json!({
        "include": {"match_type": "regexp", "metric_names": ["^cpu\\."]},
        "exclude": {"match_type": "strict", "metric_names": ["cpu.idle"]}
    });
    let mut e = Engine::new(settings(cfg), false);
    e.ingest(&gauge("cpu.utilization", T0, 1.0), WALL);
    e.ingest(&gauge("cpu.idle", T0, 1.0), WALL);
    e.ingest(&gauge("mem.used", T0, 1.0), WALL);
    e.ingest(&gauge("vigil.anomaly.score", T0, 1.0), WALL);
    assert_eq!(e.counts().points, 1);
}

#[test]
fn config_errors_name_the_key_path() {
    let id = ComponentId::new("anomalydetection", Some("x"));
    let err = |v: serde_json::Value| parse(&id, &v).unwrap_err().to_string();
    assert_eq!(
        err(json!({"threshold": 1.5})),
        "connectors::anomalydetection/x::threshold: must be between 0 and 1 (exclusive), got 1.5"
    );
    assert!(err(json!({"tresh": 1}))
        .starts_with("connectors::anomalydetection/x::tresh: has invalid keys: tresh"));
    assert!(
        err(json!({"forecasts": [{"metric": "a", "threshold": 1, "horizon": "soon"}]}))
            .starts_with("connectors::anomalydetection/x::forecasts::0::horizon: ")
    );
    let e = err(json!({"include": {"match_type": "regexp", "metric_names": ["("]}}));
    assert!(
        e.starts_with(
            "connectors::anomalydetection/x::include::metric_names::0: invalid regexp \"(\""
        ),
        "{e}"
    );
}

/// Captures what the connector sends downstream.
#[derive(Default)]
struct Capture(std::sync::Mutex<Vec<Telemetry>>);

#[async_trait]
impl Consumer for Capture {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        self.0.lock().unwrap().push(data);
        Ok(())
    }
}

#[tokio::test]
async fn connector_sends_events_and_score_gauges() {
    let logs_out = Arc::new(Capture::default());
    let metrics_out = Arc::new(Capture::default());
    let mut next = NextConsumers::new();
    next.insert(Signal::Logs, logs_out.clone());
    next.insert(Signal::Metrics, metrics_out.clone());
    let id = ComponentId::new("anomalydetection", None);
    let c = factory()
        .create(&id, &json!({"interval": "1s", "confirm_points": 1}), next)
        .unwrap();
    c.start(&Host::detached()).await.unwrap();
    let mut v = noisy(120);
    v[100] = 0.97;
    for (i, x) in v.iter().enumerate() {
        c.consume(gauge("cpu.utilization", T0 + 10.0 * i as f64, *x))
            .await
            .unwrap();
    }
    c.shutdown().await.unwrap();
    let events: Vec<String> = logs_out
        .0
        .lock()
        .unwrap()
        .iter()
        .flat_map(|t| match t {
            Telemetry::Logs(rl) => rl.clone(),
            _ => vec![],
        })
        .flat_map(|rl| rl.scope_logs)
        .flat_map(|sl| sl.log_records)
        .map(|r| s(&r.attributes, "vigil.anomaly.state"))
        .collect();
    assert_eq!(events, vec!["start", "end"]);
    let names: std::collections::BTreeSet<String> = metrics_out
        .0
        .lock()
        .unwrap()
        .iter()
        .flat_map(|t| match t {
            Telemetry::Metrics(rm) => rm.clone(),
            _ => vec![],
        })
        .flat_map(|rm| rm.scope_metrics)
        .flat_map(|sm| sm.metrics)
        .map(|m| m.name)
        .collect();
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        vec![
            "vigil.anomaly.expected.lower",
            "vigil.anomaly.expected.upper",
            "vigil.anomaly.observed",
            "vigil.anomaly.score"
        ]
    );
}

#[test]
fn warming_counts_the_series_not_scored_yet() {
    let mut e = Engine::new(settings(json!({})), false);
    let warmup = u64::from(e.warmup_points());
    for i in 0..warmup {
        e.ingest(&gauge("a", T0 + i as f64 * 10.0, 1.0), T0);
    }
    e.ingest(&gauge("b", T0, 1.0), T0);
    assert_eq!((e.counts().live, e.warming()), (2, 2));
    // One point past the warm-up: `a` is scored from now on, `b` is still learning.
    e.ingest(&gauge("a", T0 + warmup as f64 * 10.0, 1.0), T0);
    assert_eq!((e.counts().live, e.warming()), (2, 1));
}
