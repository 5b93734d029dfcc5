//! Tests against a protocol double of Datadog's intakes (Datadog cannot run here): a local HTTP
//! server that checks `DD-API-KEY`, gunzips and decodes the real wire formats (the metrics
//! intake v2 JSON, the logs intake's JSON array, the trace agent's protobuf `AgentPayload`), and
//! answers as the intakes do (`202 {"errors":[]}`, `403 Forbidden` for a bad key, 503 when
//! overloaded; `/api/v1/validate` answers `{"valid":true}` or 403).

use super::proto::AgentPayload;
use super::*;
use crate::helper::counters::testing::TestRecorder;
use crate::helper::test_http::serve;
use axum::body::Bytes as AxumBytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use prost::Message;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Mutex;
use vigil_core::attrs::{kv_f64, kv_i64, kv_str};
use vigil_core::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point, summary_data_point::ValueAtQuantile, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::otlp::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};
use vigil_core::{Component, ConsumeError, Consumer};

const KEY: &str = "0123456789abcdef0123456789abcdef";

/// One request as the double received it: path, content type, body gunzipped.
struct Got {
    path: String,
    content_type: String,
    body: Vec<u8>,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Double {
    /// Status codes to answer next (then 202).
    answers: Mutex<VecDeque<u16>>,
    got: Mutex<Vec<Got>>,
    attempts: Mutex<usize>,
}

async fn handle(
    State(d): State<Arc<Double>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: AxumBytes,
) -> impl IntoResponse {
    let key_ok = headers.get("dd-api-key").is_some_and(|v| v == KEY);
    if method == Method::GET && uri.path() == "/api/v1/validate" {
        return if key_ok {
            (StatusCode::OK, "{\"valid\":true}".to_string())
        } else {
            (StatusCode::FORBIDDEN, "{\"errors\":[\"Forbidden\"]}".into())
        };
    }
    *d.attempts.lock().unwrap() += 1;
    let mut plain = Vec::new();
    if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut plain)
            .unwrap();
    } else {
        plain = body.to_vec();
    }
    let code = if key_ok {
        d.answers.lock().unwrap().pop_front().unwrap_or(202)
    } else {
        403
    };
    if code == 202 {
        d.got.lock().unwrap().push(Got {
            path: uri.path().to_string(),
            content_type: headers["content-type"].to_str().unwrap().to_string(),
            body: plain,
        });
    }
    let text = match code {
        202 => "{\"errors\":[]}",
        403 => "{\"errors\":[\"Forbidden\"]}",
        _ => "Service Unavailable",
    };
    (StatusCode::from_u16(code).unwrap(), text.to_string())
}

async fn double() -> (Arc<Double>, String) {
    let d = Arc::new(Double::default());
    let app = axum::Router::new().fallback(handle).with_state(d.clone());
    (d, serve(app).await)
}

fn id() -> ComponentId {
    ComponentId::parse("datadog/test").unwrap()
}

fn decode_config(cfg: Value) -> Result<DatadogConfig, ConfigError> {
    let cfg: DatadogConfig = vigil_core::config::decode(ComponentKind::Exporter, &id(), &cfg)?;
    cfg.validate(&id())?;
    Ok(cfg)
}

fn config(url: &str, extra: Value) -> Value {
    let mut cfg = json!({
        "api": {"key": KEY},
        "hostname": "fallback-host",
        "metrics": {"endpoint": url},
        "logs": {"endpoint": url},
        "traces": {"endpoint": url},
        "sending_queue": {"enabled": false},
        "retry_on_failure": {"enabled": false},
        // Turned on by the tests of host metadata only, so the others see only their data.
        "host_metadata": {"enabled": false},
    });
    merge(&mut cfg, extra);
    cfg
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn exporter(rec: &TestRecorder, url: &str, extra: Value) -> SendStack<DatadogSender> {
    let cfg = decode_config(config(url, extra)).unwrap();
    let set = Settings::new(ComponentKind::Exporter, &id());
    ::metrics::with_local_recorder(rec, || build(&set, cfg)).unwrap()
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn number(v: f64) -> Option<number_data_point::Value> {
    Some(number_data_point::Value::AsDouble(v))
}

fn point(start: u64, ts: u64, v: f64, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        start_time_unix_nano: start,
        time_unix_nano: ts,
        value: number(v),
        attributes: attrs,
        ..Default::default()
    }
}

fn metric(name: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        data: Some(data),
        ..Default::default()
    }
}

fn resource_metrics(res: Vec<KeyValue>, metrics: Vec<Metric>) -> Telemetry {
    Telemetry::Metrics(vec![ResourceMetrics {
        resource: Some(Resource {
            attributes: res,
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn cumulative_sum(name: &str, start: u64, ts: u64, v: f64) -> Metric {
    metric(
        name,
        Data::Sum(Sum {
            aggregation_temporality: 2,
            is_monotonic: true,
            data_points: vec![point(start, ts, v, vec![])],
        }),
    )
}

fn histogram(temporality: i32, count: u64, buckets: Vec<u64>, ts: u64) -> Metric {
    metric(
        "http.server.duration",
        Data::Histogram(Histogram {
            aggregation_temporality: temporality,
            data_points: vec![HistogramDataPoint {
                start_time_unix_nano: ts - 10_000_000_000,
                time_unix_nano: ts,
                count,
                sum: Some(12.5),
                min: Some(0.1),
                max: Some(9.0),
                explicit_bounds: vec![0.5, 1e6],
                bucket_counts: buckets,
                ..Default::default()
            }],
        }),
    )
}

/// Every series of every body received, as (metric, type, value, tags, host).
fn series(d: &Double) -> Vec<(String, i64, f64, Vec<String>, String)> {
    let got = d.got.lock().unwrap();
    let mut out = Vec::new();
    for g in got.iter().filter(|g| g.path == "/api/v2/series") {
        assert_eq!(g.content_type, "application/json");
        for s in g.json()["series"].as_array().unwrap() {
            assert_eq!(s["points"].as_array().unwrap().len(), 1);
            assert_eq!(s["resources"][0]["type"], "host");
            out.push((
                s["metric"].as_str().unwrap().to_string(),
                s["type"].as_i64().unwrap(),
                s["points"][0]["value"].as_f64().unwrap(),
                s["tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect(),
                s["resources"][0]["name"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

const SENT: &str = "otelcol_exporter_sent_metric_points{exporter=datadog/test}";
const FAILED: &str = "otelcol_exporter_send_failed_metric_points{exporter=datadog/test}";

#[tokio::test]
async fn metrics_go_as_v2_series_with_upstreams_mapping() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(
        &rec,
        &url,
        json!({"metrics": {"histograms": {"mode": "counters"}}}),
    );
    // Series that started after the exporter: `auto` reports their first cumulative value whole.
    let start = now_ns();
    let ts = start + 1_000_000_000;
    let res = vec![
        kv_str("host.name", "node-1"),
        kv_str("service.name", "checkout"),
        kv_str("deployment.environment", "prod"),
        kv_str("os.type", "linux"),
    ];
    let summary = metric(
        "rpc.latency",
        Data::Summary(Summary {
            data_points: vec![SummaryDataPoint {
                start_time_unix_nano: start,
                time_unix_nano: ts,
                count: 4,
                sum: 2.0,
                quantile_values: vec![ValueAtQuantile {
                    quantile: 0.99,
                    value: 0.9,
                }],
                ..Default::default()
            }],
        }),
    );
    e.consume(resource_metrics(
        res.clone(),
        vec![
            metric(
                "queue.depth",
                Data::Gauge(Gauge {
                    data_points: vec![point(0, ts, 3.5, vec![kv_str("queue", "q1")])],
                }),
            ),
            metric(
                "delta.requests",
                Data::Sum(Sum {
                    aggregation_temporality: 1,
                    is_monotonic: true,
                    data_points: vec![point(start, ts, 7.0, vec![])],
                }),
            ),
            metric(
                "in.flight",
                Data::Sum(Sum {
                    aggregation_temporality: 2,
                    is_monotonic: false,
                    data_points: vec![point(start, ts, 2.0, vec![])],
                }),
            ),
            cumulative_sum("requests", start, ts, 100.0),
            summary,
            histogram(1, 6, vec![1, 2, 3], ts),
        ],
    ))
    .await
    .unwrap();
    // The next cumulative point is sent as its increase.
    e.consume(resource_metrics(
        res,
        vec![cumulative_sum(
            "requests",
            start,
            ts + 10_000_000_000,
            130.0,
        )],
    ))
    .await
    .unwrap();
    let s = series(&d);
    let find = |name: &str| -> Vec<&(String, i64, f64, Vec<String>, String)> {
        s.iter().filter(|x| x.0 == name).collect()
    };
    let g = find("queue.depth")[0];
    assert_eq!((g.1, g.2, g.4.as_str()), (3, 3.5, "node-1"));
    for t in ["service:checkout", "env:prod", "queue:q1"] {
        assert!(g.3.contains(&t.to_string()), "{t} in {:?}", g.3);
    }
    // Only convention attributes become tags unless resource_attributes_as_tags.
    assert!(!g.3.iter().any(|t| t.starts_with("os.type")), "{:?}", g.3);
    assert_eq!(
        (find("delta.requests")[0].1, find("delta.requests")[0].2),
        (1, 7.0)
    );
    assert_eq!((find("in.flight")[0].1, find("in.flight")[0].2), (3, 2.0));
    // The first cumulative point started after the exporter did (`auto`): reported whole; the
    // second as the difference.
    let r: Vec<(i64, f64)> = find("requests").iter().map(|x| (x.1, x.2)).collect();
    assert_eq!(r, vec![(1, 100.0), (1, 30.0)]);
    assert_eq!(
        (
            find("rpc.latency.count")[0].1,
            find("rpc.latency.count")[0].2
        ),
        (1, 4.0)
    );
    assert_eq!(find("rpc.latency.sum")[0].2, 2.0);
    let q = find("rpc.latency.quantile")[0];
    assert_eq!((q.1, q.2), (3, 0.9));
    assert!(q.3.contains(&"quantile:0.99".to_string()), "{:?}", q.3);
    let buckets: Vec<(f64, String, String)> = find("http.server.duration.bucket")
        .iter()
        .map(|x| {
            let t = |k: &str| x.3.iter().find(|t| t.starts_with(k)).unwrap().clone();
            (x.2, t("lower_bound:"), t("upper_bound:"))
        })
        .collect();
    assert_eq!(
        buckets,
        vec![
            (1.0, "lower_bound:-inf".into(), "upper_bound:0.5".into()),
            (2.0, "lower_bound:0.5".into(), "upper_bound:1e+06".into()),
            (3.0, "lower_bound:1e+06".into(), "upper_bound:inf".into()),
        ]
    );
    // Aggregations are off by default.
    assert!(find("http.server.duration.count").is_empty());
    assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (7, 0));
}

#[tokio::test]
async fn resource_attributes_as_tags_and_raw_cumulative_values() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(
        &rec,
        &url,
        json!({"metrics": {"resource_attributes_as_tags": true,
                           "sums": {"cumulative_monotonic_mode": "raw_value"}}}),
    );
    let ts = now_ns();
    e.consume(resource_metrics(
        vec![kv_str("os.type", "linux")],
        vec![cumulative_sum("requests", 1, ts, 100.0)],
    ))
    .await
    .unwrap();
    let s = series(&d);
    assert_eq!((s[0].1, s[0].2), (3, 100.0));
    assert!(
        s[0].3.contains(&"os.type:linux".to_string()),
        "{:?}",
        s[0].3
    );
    // No host attribute: the configured fallback.
    assert_eq!(s[0].4, "fallback-host");
}

fn sketches(d: &Double) -> Vec<super::proto::Sketch> {
    let got = d.got.lock().unwrap();
    got.iter()
        .filter(|g| g.path == "/api/beta/sketches")
        .flat_map(|g| {
            assert_eq!(g.content_type, "application/x-protobuf");
            super::proto::SketchPayload::decode(&g.body[..])
                .unwrap()
                .sketches
        })
        .collect()
}

#[tokio::test]
async fn histograms_go_as_sketches_by_default() {
    let (d, url) = double().await;
    let ts = now_ns();
    let rec = TestRecorder::default();
    let e = exporter(&rec, &url, json!({}));
    e.consume(resource_metrics(
        vec![
            kv_str("host.name", "node-1"),
            kv_str("service.name", "checkout"),
        ],
        vec![histogram(1, 6, vec![1, 2, 3], ts)],
    ))
    .await
    .unwrap();
    assert!(series(&d).is_empty());
    let s = sketches(&d);
    assert_eq!(s.len(), 1);
    assert_eq!(
        (s[0].metric.as_str(), s[0].host.as_str()),
        ("http.server.duration", "node-1")
    );
    assert!(s[0].tags.contains(&"service:checkout".to_string()));
    let ds = &s[0].dogsketches[0];
    assert_eq!(
        (ds.ts, ds.cnt, ds.sum, ds.min, ds.max),
        ((ts / 1_000_000_000) as i64, 6, 12.5, 0.1, 9.0)
    );
    assert_eq!(ds.n.iter().sum::<u32>(), 6);
    assert!(ds.k.windows(2).all(|w| w[0] < w[1]), "{:?}", ds.k);
    // The first bucket (-inf, 0.5] sits at 0.5's key, the last (1e6, inf) at 1e6's.
    assert_eq!(ds.k.first(), Some(&super::sketch::key(0.5)));
    assert_eq!(ds.k.last(), Some(&super::sketch::key(1e6)));
    assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (1, 0));

    // A cumulative histogram: its second point is sent as the difference.
    let start = now_ns();
    let cumulative = |count: u64, buckets: Vec<u64>, ts: u64| {
        let mut m = histogram(2, count, buckets, ts);
        if let Some(Data::Histogram(h)) = &mut m.data {
            h.data_points[0].start_time_unix_nano = start;
        }
        m
    };
    e.consume(resource_metrics(
        vec![],
        vec![cumulative(6, vec![1, 2, 3], start + 1_000_000_000)],
    ))
    .await
    .unwrap();
    e.consume(resource_metrics(
        vec![],
        vec![cumulative(10, vec![1, 6, 3], start + 2_000_000_000)],
    ))
    .await
    .unwrap();
    let s = sketches(&d);
    let last = &s.last().unwrap().dogsketches[0];
    assert_eq!(
        s.len(),
        3,
        "the first point started after the exporter: sent whole"
    );
    assert_eq!((last.cnt, last.n.iter().sum::<u32>()), (4, 4));
    assert!(last
        .k
        .iter()
        .all(|k| (super::sketch::key(0.5)..=super::sketch::key(1e6)).contains(k)));
}

#[tokio::test]
async fn exponential_histograms_delta_as_sketches_cumulative_refused() {
    use vigil_core::otlp::metrics::v1::{
        exponential_histogram_data_point::Buckets, ExponentialHistogram,
        ExponentialHistogramDataPoint,
    };
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(
        &rec,
        &url,
        json!({"metrics": {"histograms": {"mode": "counters"}}}),
    );
    let exp = |temporality: i32| {
        metric(
            "latency",
            Data::ExponentialHistogram(ExponentialHistogram {
                aggregation_temporality: temporality,
                data_points: vec![ExponentialHistogramDataPoint {
                    time_unix_nano: now_ns(),
                    count: 5,
                    sum: Some(10.0),
                    scale: 0,
                    zero_count: 1,
                    // Buckets (1, 2] and (2, 4].
                    positive: Some(Buckets {
                        offset: 0,
                        bucket_counts: vec![2, 2],
                    }),
                    ..Default::default()
                }],
            }),
        )
    };
    e.consume(resource_metrics(vec![], vec![exp(1), exp(2)]))
        .await
        .unwrap();
    let s = sketches(&d);
    assert_eq!(s.len(), 1);
    let ds = &s[0].dogsketches[0];
    assert_eq!((ds.cnt, ds.n.iter().sum::<u32>()), (5, 5));
    assert_eq!(ds.k[0], 0, "the zero bucket");
    assert!(ds.k[1..]
        .iter()
        .all(|k| (super::sketch::key(1.0)..=super::sketch::key(4.0)).contains(k)));
    assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (1, 1));
}

#[tokio::test]
async fn histogram_aggregations_in_nobuckets_mode() {
    let (d, url) = double().await;
    let ts = now_ns();
    // nobuckets with aggregations: count and sum as counts, min and max as gauges.
    let rec = TestRecorder::default();
    let e = exporter(
        &rec,
        &url,
        json!({"metrics": {"histograms": {"mode": "nobuckets", "send_aggregation_metrics": true}}}),
    );
    e.consume(resource_metrics(
        vec![],
        vec![histogram(1, 6, vec![1, 2, 3], ts)],
    ))
    .await
    .unwrap();
    let mut got: Vec<(String, i64, f64)> =
        series(&d).into_iter().map(|x| (x.0, x.1, x.2)).collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("http.server.duration.count".into(), 1, 6.0),
            ("http.server.duration.max".into(), 3, 9.0),
            ("http.server.duration.min".into(), 3, 0.1),
            ("http.server.duration.sum".into(), 1, 12.5),
        ]
    );
    assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (1, 0));
}

#[tokio::test]
async fn logs_go_as_datadog_log_entries() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(&rec, &url, json!({}));
    let trace_id: Vec<u8> = (1..=16).collect();
    let span_id: Vec<u8> = vec![0, 0, 0, 0, 0, 0, 1, 0];
    let record = |body: &str, sev: i32, text: &str| LogRecord {
        time_unix_nano: 1_700_000_000_123_000_000,
        severity_number: sev,
        severity_text: text.into(),
        body: Some(AnyValue {
            value: Some(vigil_core::otlp::common::v1::any_value::Value::StringValue(
                body.into(),
            )),
        }),
        attributes: vec![kv_str("http.method", "GET"), kv_i64("retries", 2)],
        trace_id: trace_id.clone(),
        span_id: span_id.clone(),
        ..Default::default()
    };
    e.consume(Telemetry::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![
                kv_str("service.name", "checkout"),
                kv_str("host.name", "node-1"),
            ],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: vec![record("payment failed", 17, ""), record("ok", 9, "NOTICE")],
            ..Default::default()
        }],
        ..Default::default()
    }]))
    .await
    .unwrap();
    let got = d.got.lock().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/api/v2/logs");
    let logs = got[0].json();
    let first = &logs[0];
    assert_eq!(first["message"], "payment failed");
    assert_eq!(first["status"], "error");
    assert_eq!(first["service"], "checkout");
    assert_eq!(first["hostname"], "node-1");
    assert_eq!(first["ddsource"], "otlp_log_ingestion");
    assert_eq!(
        first["ddtags"],
        "service:checkout,otel_source:datadog_exporter"
    );
    assert_eq!(first["http.method"], "GET");
    assert_eq!(first["retries"], 2);
    // The low 64 bits of the trace id, in decimal; the whole id in hex.
    assert_eq!(
        first["dd.trace_id"],
        u64::from_be_bytes([9, 10, 11, 12, 13, 14, 15, 16]).to_string()
    );
    assert_eq!(first["otel.trace_id"], "0102030405060708090a0b0c0d0e0f10");
    assert_eq!(first["dd.span_id"], "256");
    assert_eq!(first["@timestamp"], "2023-11-14T22:13:20.123Z");
    assert_eq!(logs[1]["status"], "NOTICE");
    assert_eq!(
        rec.counter("otelcol_exporter_sent_log_records{exporter=datadog/test}"),
        2
    );
}

#[tokio::test]
async fn logs_are_cut_at_1000_entries() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(&rec, &url, json!({}));
    let records: Vec<LogRecord> = (0..2500)
        .map(|i| LogRecord {
            body: Some(AnyValue {
                value: Some(vigil_core::otlp::common::v1::any_value::Value::IntValue(i)),
            }),
            ..Default::default()
        })
        .collect();
    e.consume(Telemetry::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    }]))
    .await
    .unwrap();
    let sizes: Vec<usize> = d
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|g| g.json().as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![1000, 1000, 500]);
}

fn spans() -> Telemetry {
    let trace_id: Vec<u8> = (1..=16).collect();
    let span = |id: u8, parent: u8, name: &str, kind: span::SpanKind, attrs: Vec<KeyValue>| Span {
        trace_id: trace_id.clone(),
        span_id: vec![0, 0, 0, 0, 0, 0, 0, id],
        parent_span_id: if parent == 0 {
            vec![]
        } else {
            vec![0, 0, 0, 0, 0, 0, 0, parent]
        },
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_250_000_000,
        attributes: attrs,
        ..Default::default()
    };
    let mut failing = span(
        2,
        1,
        "SELECT",
        span::SpanKind::Client,
        vec![
            kv_str("db.system", "postgresql"),
            kv_str("db.statement", "SELECT 1"),
            kv_f64("db.rows", 3.0),
        ],
    );
    failing.status = Some(Status {
        code: status::StatusCode::Error as i32,
        message: "timeout".into(),
    });
    Telemetry::Traces(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![
                kv_str("service.name", "checkout"),
                kv_str("host.name", "node-1"),
                kv_str("deployment.environment", "prod"),
                kv_str("telemetry.sdk.language", "python"),
            ],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "opentelemetry.instrumentation.flask".into(),
                version: "0.48b0".into(),
                ..Default::default()
            }),
            spans: vec![
                span(
                    1,
                    0,
                    "GET /cart/{id}",
                    span::SpanKind::Server,
                    vec![
                        kv_str("http.method", "GET"),
                        kv_str("http.route", "/cart/{id}"),
                        kv_i64("http.status_code", 200),
                    ],
                ),
                failing,
            ],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

#[tokio::test]
async fn traces_go_as_agent_payload_protobuf() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(&rec, &url, json!({}));
    e.consume(spans()).await.unwrap();
    let got = d.got.lock().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/api/v0.2/traces");
    assert_eq!(got[0].content_type, "application/x-protobuf");
    let p = AgentPayload::decode(&got[0].body[..]).unwrap();
    assert_eq!(p.host_name, "fallback-host");
    assert_eq!(p.tracer_payloads.len(), 1);
    let tp = &p.tracer_payloads[0];
    assert_eq!(
        (
            tp.hostname.as_str(),
            tp.env.as_str(),
            tp.language_name.as_str()
        ),
        ("node-1", "prod", "python")
    );
    assert_eq!(tp.chunks.len(), 1);
    assert_eq!(tp.chunks[0].priority, 1);
    let s = &tp.chunks[0].spans;
    let root = s.iter().find(|x| x.parent_id == 0).unwrap();
    assert_eq!(root.service, "checkout");
    assert_eq!(root.name, "opentelemetry.instrumentation.flask.server");
    assert_eq!(root.resource, "GET /cart/{id}");
    assert_eq!(root.r#type, "web");
    assert_eq!(
        root.trace_id,
        u64::from_be_bytes([9, 10, 11, 12, 13, 14, 15, 16])
    );
    assert_eq!(root.meta["_dd.p.tid"], "0102030405060708");
    assert_eq!(root.meta["env"], "prod");
    assert_eq!(root.metrics["http.status_code"], 200.0);
    assert_eq!(root.metrics["_top_level"], 1.0);
    assert_eq!(
        (root.start, root.duration),
        (1_700_000_000_000_000_000, 250_000_000)
    );
    let db = s.iter().find(|x| x.span_id == 2).unwrap();
    assert_eq!((db.parent_id, db.error), (1, 1));
    assert_eq!(db.resource, "SELECT 1");
    assert_eq!(db.r#type, "db");
    assert_eq!(db.meta["error.msg"], "timeout");
    assert_eq!(db.metrics["db.rows"], 3.0);
    assert!(!db.metrics.contains_key("_top_level"));
    assert_eq!(
        rec.counter("otelcol_exporter_sent_spans{exporter=datadog/test}"),
        2
    );
}

#[tokio::test]
async fn span_names_remapped_and_ignored_resources_dropped() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(
        &rec,
        &url,
        json!({"traces": {"span_name_as_resource_name": true,
                          "span_name_remappings": {"SELECT": "postgres.query"}}}),
    );
    e.consume(spans()).await.unwrap();
    let names: Vec<String> = {
        let got = d.got.lock().unwrap();
        let p = AgentPayload::decode(&got[0].body[..]).unwrap();
        let mut n: Vec<String> = p.tracer_payloads[0].chunks[0]
            .spans
            .iter()
            .map(|s| s.name.clone())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names, vec!["GET /cart/{id}", "postgres.query"]);
    let e = exporter(
        &rec,
        &url,
        json!({"traces": {"ignore_resources": ["(GET|POST) /cart"]}}),
    );
    e.consume(spans()).await.unwrap();
    assert_eq!(d.got.lock().unwrap().len(), 1, "the ignored trace was sent");
}

#[tokio::test]
async fn unavailable_then_accepted_loses_nothing() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(
        &rec,
        &url,
        json!({"retry_on_failure": {"enabled": true, "initial_interval": "10ms", "max_interval": "20ms"}}),
    );
    d.answers.lock().unwrap().extend([503, 503]);
    let ts = now_ns();
    e.consume(resource_metrics(
        vec![],
        vec![metric(
            "g",
            Data::Gauge(Gauge {
                data_points: vec![point(0, ts, 1.0, vec![])],
            }),
        )],
    ))
    .await
    .unwrap();
    assert_eq!(*d.attempts.lock().unwrap(), 3);
    assert_eq!(series(&d).len(), 1);
    assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (1, 0));
}

#[tokio::test]
async fn queued_traces_survive_503s_until_shutdown() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(
        &rec,
        &url,
        json!({"sending_queue": {"enabled": true},
               "retry_on_failure": {"enabled": true, "initial_interval": "10ms"}}),
    );
    e.start(&Host::detached()).await.unwrap();
    d.answers.lock().unwrap().extend([503, 503, 503]);
    for _ in 0..3 {
        e.consume(spans()).await.unwrap();
    }
    e.shutdown().await.unwrap();
    assert_eq!(d.got.lock().unwrap().len(), 3);
    assert_eq!(
        rec.counter("otelcol_exporter_sent_spans{exporter=datadog/test}"),
        6
    );
}

#[tokio::test]
async fn an_invalid_key_is_permanent_and_counted() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let cfg = decode_config(config(
        &url,
        json!({"api": {"key": "ffffffffffffffffffffffffffffffff"},
               "retry_on_failure": {"enabled": true}}),
    ))
    .unwrap();
    let set = Settings::new(ComponentKind::Exporter, &id());
    let e = ::metrics::with_local_recorder(&rec, || build(&set, cfg)).unwrap();
    let err = e
        .consume(resource_metrics(
            vec![],
            vec![metric(
                "g",
                Data::Gauge(Gauge {
                    data_points: vec![point(0, now_ns(), 1.0, vec![])],
                }),
            )],
        ))
        .await
        .unwrap_err();
    match err {
        ConsumeError::Permanent { reason, .. } => assert!(reason.contains("403"), "{reason}"),
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_eq!(*d.attempts.lock().unwrap(), 1, "a 403 is not retried");
    assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (0, 1));
}

#[tokio::test]
async fn fail_on_invalid_key_fails_the_start() {
    let (_d, url) = double().await;
    let rec = TestRecorder::default();
    let bad = exporter(
        &rec,
        &url,
        json!({"api": {"key": "ffffffffffffffffffffffffffffffff", "fail_on_invalid_key": true}}),
    );
    let err = bad.start(&Host::detached()).await.unwrap_err();
    assert!(
        err.to_string().contains("API Key validation failed"),
        "{err}"
    );
    let good = exporter(&rec, &url, json!({"api": {"fail_on_invalid_key": true}}));
    good.start(&Host::detached()).await.unwrap();
}

#[test]
fn endpoints_default_from_the_site() {
    let cfg = decode_config(json!({"api": {"key": KEY, "site": "datadoghq.eu"}})).unwrap();
    let id = id();
    assert_eq!(
        cfg.url(&id, "metrics").unwrap().as_str(),
        "https://api.datadoghq.eu/"
    );
    assert_eq!(
        cfg.url(&id, "traces").unwrap().as_str(),
        "https://trace.agent.datadoghq.eu/"
    );
    assert_eq!(
        cfg.url(&id, "logs").unwrap().as_str(),
        "https://http-intake.logs.datadoghq.eu/"
    );
    let cfg = decode_config(json!({"api": {"key": KEY}})).unwrap();
    assert_eq!(
        cfg.url(&id, "metrics").unwrap().as_str(),
        "https://api.datadoghq.com/"
    );
}

#[test]
fn validate_refuses_what_upstream_refuses() {
    let err = |v: Value| decode_config(v).unwrap_err().to_string();
    let e = err(json!({}));
    assert!(
        e.contains("datadog/test::api::key: api.key is not set"),
        "{e}"
    );
    let e = err(json!({"api": {"key": KEY}, "metrics": {"histograms": {"mode": "nobuckets"}}}));
    assert!(
        e.contains("metrics::histograms::mode: 'nobuckets' mode"),
        "{e}"
    );
    let e = err(json!({"api": {"key": KEY}, "metrics": {"histograms": {"mode": "sketch"}}}));
    assert!(e.contains("metrics::histograms::mode"), "{e}");
    let e = err(json!({"api": {"key": KEY}, "endpoint": "http://x", "headers": {"a": "b"}}));
    assert!(
        e.contains("not respected by Datadog exporter: endpoint, headers"),
        "{e}"
    );
    let e = err(json!({"api": {"key": KEY}, "hostname": "localhost"}));
    assert!(e.contains("hostname: hostname field is invalid"), "{e}");
    let e = err(json!({"api": {"key": KEY},
                       "metrics": {"sums": {"cumulative_monotonic_mode": "raw_value",
                                            "initial_cumulative_monotonic_value": "keep"}}}));
    assert!(e.contains("can only be configured when"), "{e}");
    let e = err(json!({"api": {"key": KEY}, "traces": {"endpoint": ""}}));
    assert!(
        e.contains("traces::endpoint: endpoint cannot be empty"),
        "{e}"
    );
    let e = err(json!({"api": {"key": KEY}, "traces": {"ignore_resources": ["(GET"]}}));
    assert!(e.contains("traces::ignore_resources::0"), "{e}");
    let e = err(json!({"api": {"key": KEY}, "only_metadata": true}));
    assert!(
        e.contains("only_metadata: only_metadata can't be enabled"),
        "{e}"
    );
    decode_config(json!({"api": {"key": KEY}, "only_metadata": true,
                         "host_metadata": {"hostname_source": "first_resource"}}))
    .unwrap();
    let e = err(json!({"api": {"key": KEY}, "host_metadata": {"reporter_period": "1m"}}));
    assert!(
        e.contains("reporter_period must be 5 minutes or higher"),
        "{e}"
    );
    // Published configs' keys decode: a placeholder key only warns (see the README).
    decode_config(json!({"api": {"key": "<YOUR_API_KEY_HERE>"}, "traces": {"trace_buffer": 500}}))
        .unwrap();
}

#[tokio::test]
async fn a_series_older_than_the_exporter_starts_at_its_second_point() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(&rec, &url, json!({}));
    let ts = now_ns();
    let start = ts - 60_000_000_000;
    e.consume(resource_metrics(
        vec![],
        vec![cumulative_sum("c", start, ts, 100.0)],
    ))
    .await
    .unwrap();
    e.consume(resource_metrics(
        vec![],
        vec![cumulative_sum("c", start, ts + 10_000_000_000, 104.0)],
    ))
    .await
    .unwrap();
    let got: Vec<(i64, f64)> = series(&d).iter().map(|x| (x.1, x.2)).collect();
    assert_eq!(got, vec![(1, 4.0)]);
    // A reset (the value falls, a new start): the new series' whole value, once.
    e.consume(resource_metrics(
        vec![],
        vec![cumulative_sum(
            "c",
            ts + 15_000_000_000,
            ts + 20_000_000_000,
            3.0,
        )],
    ))
    .await
    .unwrap();
    let got: Vec<(i64, f64)> = series(&d).iter().map(|x| (x.1, x.2)).collect();
    assert_eq!(got, vec![(1, 4.0), (1, 3.0)]);
}

#[tokio::test]
async fn a_retry_resends_only_the_posts_not_yet_accepted() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(
        &rec,
        &url,
        json!({"retry_on_failure": {"enabled": true, "initial_interval": "10ms", "max_interval": "20ms"}}),
    );
    // The series post is accepted; the sketch post is refused once with 503.
    d.answers.lock().unwrap().extend([202, 503]);
    let ts = now_ns();
    e.consume(resource_metrics(
        vec![],
        vec![
            metric(
                "g",
                Data::Gauge(Gauge {
                    data_points: vec![point(0, ts, 1.0, vec![])],
                }),
            ),
            histogram(1, 6, vec![1, 2, 3], ts),
        ],
    ))
    .await
    .unwrap();
    let paths: Vec<String> = d
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|g| g.path.clone())
        .collect();
    assert_eq!(paths, vec!["/api/v2/series", "/api/beta/sketches"]);
    assert_eq!(*d.attempts.lock().unwrap(), 3);
    assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (2, 0));
}

fn intake(d: &Double) -> Vec<Value> {
    d.got
        .lock()
        .unwrap()
        .iter()
        .filter(|g| g.path == "/intake")
        .map(Got::json)
        .collect()
}

async fn wait_for_intake(d: &Double) -> Vec<Value> {
    for _ in 0..200 {
        let got = intake(d);
        if !got.is_empty() {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no host metadata payload");
}

#[tokio::test]
async fn host_metadata_is_sent_at_start_for_the_configured_host() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(
        &rec,
        &url,
        json!({"host_metadata": {"enabled": true, "tags": ["team:sre", "env:prod"]}}),
    );
    e.start(&Host::detached()).await.unwrap();
    let got = wait_for_intake(&d).await;
    assert_eq!(got[0]["internalHostname"], "fallback-host");
    assert_eq!(got[0]["meta"]["hostname"], "fallback-host");
    assert_eq!(got[0]["host-tags"]["otel"], json!(["team:sre", "env:prod"]));
    e.shutdown().await.unwrap();
}

#[tokio::test]
async fn only_metadata_sends_the_first_resources_host_and_nothing_else() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(
        &rec,
        &url,
        json!({"only_metadata": true,
               "host_metadata": {"enabled": true, "hostname_source": "first_resource"}}),
    );
    e.start(&Host::detached()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        intake(&d).is_empty(),
        "first_resource waits for the first resource"
    );
    e.consume(resource_metrics(
        vec![kv_str("host.name", "node-7")],
        vec![metric(
            "g",
            Data::Gauge(Gauge {
                data_points: vec![point(0, now_ns(), 1.0, vec![])],
            }),
        )],
    ))
    .await
    .unwrap();
    let got = wait_for_intake(&d).await;
    assert_eq!(got[0]["internalHostname"], "node-7");
    assert!(series(&d).is_empty(), "only_metadata sends no series");
    e.shutdown().await.unwrap();
}
