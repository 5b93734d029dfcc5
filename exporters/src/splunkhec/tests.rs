//! Tests against a protocol double of a Splunk HTTP Event Collector (Splunk cannot run here): a
//! local server that checks `Authorization: Splunk <token>`, gunzips the body and parses it as
//! HEC does (concatenated JSON event objects), and answers with HEC's documented bodies:
//! `{"text":"Success","code":0}`, 401 `{"text":"Token is required","code":2}`, 503
//! `{"text":"Server is busy","code":9}`.

use super::*;
use crate::helper::counters::testing::TestRecorder;
use crate::helper::test_http::{merged, serve};
use axum::body::Bytes as AxumBytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Mutex;
use vigil_core::attrs::{kv_i64, kv_str};
use vigil_core::otlp::common::v1::{any_value, AnyValue, InstrumentationScope};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use vigil_core::{Component, ConsumeError, Consumer};

struct Got {
    path: String,
    headers: HeaderMap,
    events: Vec<Value>,
}

#[derive(Default)]
struct Double {
    answers: Mutex<VecDeque<u16>>,
    got: Mutex<Vec<Got>>,
}

async fn handle(
    State(d): State<Arc<Double>>,
    uri: Uri,
    headers: HeaderMap,
    body: AxumBytes,
) -> impl IntoResponse {
    if uri.path() == "/services/collector/health" {
        return (StatusCode::OK, "{\"text\":\"HEC is healthy\",\"code\":17}");
    }
    let mut plain = Vec::new();
    if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut plain)
            .unwrap();
    } else {
        plain = body.to_vec();
    }
    // HEC reads a stream of JSON objects, not an array.
    let events: Vec<Value> = serde_json::Deserializer::from_slice(&plain)
        .into_iter::<Value>()
        .map(|v| v.unwrap())
        .collect();
    let code = d.answers.lock().unwrap().pop_front().unwrap_or(200);
    if code == 200 {
        d.got.lock().unwrap().push(Got {
            path: uri.path().to_string(),
            headers,
            events,
        });
    }
    let body = match code {
        200 => "{\"text\":\"Success\",\"code\":0}",
        401 => "{\"text\":\"Token is required\",\"code\":2}",
        _ => "{\"text\":\"Server is busy\",\"code\":9}",
    };
    (StatusCode::from_u16(code).unwrap(), body)
}

async fn double() -> (Arc<Double>, String) {
    let d = Arc::new(Double::default());
    let app = axum::Router::new()
        .fallback(axum::routing::any(handle))
        .with_state(d.clone());
    (d, serve(app).await)
}

fn id() -> ComponentId {
    ComponentId::parse("splunk_hec/test").unwrap()
}

fn exporter(rec: &TestRecorder, url: &str, extra: Value) -> SendStack<HecSender> {
    let cfg = merged(
        json!({
            "endpoint": url,
            "token": "hec-token",
            "source": "otel",
            "sourcetype": "otel",
            "sending_queue": {"enabled": false},
            "retry_on_failure": {"enabled": false},
        }),
        extra,
    );
    let cfg: SplunkHecConfig =
        vigil_core::config::decode(ComponentKind::Exporter, &id(), &cfg).unwrap();
    cfg.validate(&id()).unwrap();
    let set = Settings::new(ComponentKind::Exporter, &id());
    metrics::with_local_recorder(rec, || build(&set, cfg)).unwrap()
}

fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

fn logs(records: Vec<LogRecord>, scope: &str, res: Vec<KeyValue>) -> Telemetry {
    Telemetry::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: res,
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: scope.into(),
                ..Default::default()
            }),
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn record(body: &str) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_700_000_000_123_456_789,
        severity_text: "WARN".into(),
        severity_number: 13,
        body: text(body),
        trace_id: vec![0xab; 16],
        attributes: vec![kv_str("com.splunk.index", "app"), kv_i64("attempt", 2)],
        ..Default::default()
    }
}

const LOGS_SENT: &str = "otelcol_exporter_sent_log_records{exporter=splunk_hec/test}";
const LOGS_FAILED: &str = "otelcol_exporter_send_failed_log_records{exporter=splunk_hec/test}";

#[tokio::test]
async fn logs_are_hec_events_with_metadata_and_fields() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(&rec, &url, json!({"splunk_app_version": "1.2"}));
    let data = logs(
        vec![record("disk almost full"), record("")],
        "app",
        vec![kv_str("host.name", "node-1"), kv_str("service.name", "api")],
    );
    e.consume(data).await.unwrap();
    let got = d.got.lock().unwrap();
    assert_eq!(got.len(), 1);
    let g = &got[0];
    // No path in the endpoint: HEC's own.
    assert_eq!(g.path, "/services/collector");
    assert_eq!(g.headers["authorization"], "Splunk hec-token");
    assert_eq!(g.headers["content-type"], "application/json");
    assert_eq!(
        g.headers["__splunk_app_name"],
        "OpenTelemetry Collector Contrib"
    );
    assert_eq!(g.headers["__splunk_app_version"], "1.2");
    assert_eq!(
        g.events,
        vec![json!({
            "time": 1700000000.123,
            "host": "node-1",
            "source": "otel",
            "sourcetype": "otel",
            "index": "app",
            "event": "disk almost full",
            "fields": {
                "service.name": "api",
                "attempt": 2,
                "otel.log.severity.text": "WARN",
                "otel.log.severity.number": 13,
                "trace_id": "abababababababababababababababab",
            },
        })]
    );
    // The empty-bodied record would make HEC refuse the whole request: it alone is dropped.
    assert_eq!((rec.counter(LOGS_SENT), rec.counter(LOGS_FAILED)), (1, 1));
}

#[tokio::test]
async fn metrics_are_metric_events() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(&rec, &format!("{url}/services/collector/event"), json!({}));
    let data = Telemetry::Metrics(vec![ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![kv_str("host.name", "node-1")],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![
                Metric {
                    name: "system.memory.usage".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: 1_700_000_000_000_000_000,
                            value: Some(number_data_point::Value::AsInt(1024)),
                            attributes: vec![kv_str("state", "used")],
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "latency".into(),
                    data: Some(Data::Histogram(Histogram {
                        aggregation_temporality: 2,
                        data_points: vec![HistogramDataPoint {
                            time_unix_nano: 1_700_000_000_000_000_000,
                            count: 3,
                            sum: Some(0.75),
                            explicit_bounds: vec![0.1],
                            bucket_counts: vec![1, 2],
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    e.consume(data).await.unwrap();
    let got = d.got.lock().unwrap();
    assert_eq!(got[0].path, "/services/collector/event");
    let ev = &got[0].events;
    assert_eq!(
        ev[0],
        json!({"time": 1700000000.0, "host": "node-1", "source": "otel", "sourcetype": "otel",
               "event": "metric",
               "fields": {"state": "used", "metric_name:system.memory.usage": 1024,
                          "metric_type": "Gauge"}})
    );
    let names: Vec<(String, Value)> = ev[1..]
        .iter()
        .map(|e| {
            let f = e["fields"].as_object().unwrap();
            let (k, v) = f
                .iter()
                .find(|(k, _)| k.starts_with("metric_name:"))
                .unwrap();
            (
                format!(
                    "{k}{}",
                    f.get("le")
                        .map(|l| format!("@{}", l.as_str().unwrap()))
                        .unwrap_or_default()
                ),
                v.clone(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("metric_name:latency_sum".to_string(), json!(0.75)),
            ("metric_name:latency_count".to_string(), json!(3)),
            ("metric_name:latency_bucket@0.1".to_string(), json!(1)),
            ("metric_name:latency_bucket@+Inf".to_string(), json!(3)),
        ]
    );
    assert_eq!(
        rec.counter("otelcol_exporter_sent_metric_points{exporter=splunk_hec/test}"),
        2
    );
}

#[tokio::test]
async fn spans_are_events() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(
        &rec,
        &url,
        json!({"disable_compression": true, "index": "traces"}),
    );
    let data = Telemetry::Traces(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv_str("service.name", "api")],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: vec![Span {
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                name: "GET /".into(),
                kind: 2,
                start_time_unix_nano: 1_700_000_000_000_000_000,
                end_time_unix_nano: 1_700_000_000_500_000_000,
                attributes: vec![kv_i64("http.status_code", 500)],
                status: Some(Status {
                    code: 2,
                    message: "boom".into(),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    e.consume(data).await.unwrap();
    let got = d.got.lock().unwrap();
    assert!(got[0].headers.get("content-encoding").is_none());
    let ev = &got[0].events[0];
    assert_eq!(ev["host"], "unknown");
    assert_eq!(ev["index"], "traces");
    assert_eq!(ev["fields"], json!({"service.name": "api"}));
    assert_eq!(ev["event"]["trace_id"], "01010101010101010101010101010101");
    assert_eq!(ev["event"]["kind"], "SPAN_KIND_SERVER");
    assert_eq!(ev["event"]["status"]["code"], "STATUS_CODE_ERROR");
    assert_eq!(ev["event"]["end_time"], 1_700_000_000_500_000_000u64);
    assert_eq!(ev["event"]["attributes"]["http.status_code"], 500);
}

#[tokio::test]
async fn large_batches_are_cut_and_a_503_resends_only_what_is_left() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    // Room for two events per body, not three.
    let keys = MetaKeys {
        source: "com.splunk.source".into(),
        sourcetype: "com.splunk.sourcetype".into(),
        index: "com.splunk.index".into(),
        host: "host.name".into(),
    };
    let defaults = Defaults {
        source: "otel".into(),
        sourcetype: "otel".into(),
        index: String::new(),
        severity_text: "otel.log.severity.text".into(),
        severity_number: "otel.log.severity.number".into(),
    };
    let one =
        serde_json::to_vec(&convert::log_event(&record("line 0"), &[], &keys, &defaults).unwrap())
            .unwrap()
            .len();
    let e = exporter(
        &rec,
        &url,
        json!({"max_content_length_logs": 2 * one + 1,
               "retry_on_failure": {"enabled": true, "initial_interval": "10ms"}}),
    );
    d.answers.lock().unwrap().extend([200, 503]);
    let records = (0..4).map(|i| record(&format!("line {i}"))).collect();
    e.consume(logs(records, "app", vec![])).await.unwrap();
    let got = d.got.lock().unwrap();
    let bodies: Vec<Vec<&str>> = got
        .iter()
        .map(|g| {
            g.events
                .iter()
                .map(|e| e["event"].as_str().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(
        bodies,
        vec![vec!["line 0", "line 1"], vec!["line 2", "line 3"]]
    );
    assert_eq!((rec.counter(LOGS_SENT), rec.counter(LOGS_FAILED)), (4, 0));
}

#[tokio::test]
async fn missing_token_is_permanent() {
    let (d, url) = double().await;
    d.answers.lock().unwrap().push_back(401);
    let rec = TestRecorder::default();
    let e = exporter(&rec, &url, json!({"retry_on_failure": {"enabled": true}}));
    let err = e
        .consume(logs(vec![record("x")], "app", vec![]))
        .await
        .unwrap_err();
    match err {
        ConsumeError::Permanent { reason, rejected } => {
            assert!(
                reason.contains("401") && reason.contains("Token is required"),
                "{reason}"
            );
            assert_eq!(rejected, 1);
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_eq!((rec.counter(LOGS_SENT), rec.counter(LOGS_FAILED)), (0, 1));
}

#[tokio::test]
async fn profiling_and_log_data_switches_and_token_passthrough() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    // As Splunk's configs set the pair: one exporter for logs, one for profiling.
    let logs_only = exporter(&rec, &url, json!({"profiling_data_enabled": false}));
    let profiling_only = exporter(&rec, &url, json!({"log_data_enabled": false}));
    let res = vec![kv_str(convert::TOKEN_ATTR, "tenant-token")];
    for e in [&logs_only, &profiling_only] {
        e.consume(logs(vec![record("app log")], "app", res.clone()))
            .await
            .unwrap();
        e.consume(logs(vec![record("stack")], PROFILING_SCOPE, res.clone()))
            .await
            .unwrap();
    }
    let got = d.got.lock().unwrap();
    let seen: Vec<&str> = got
        .iter()
        .map(|g| g.events[0]["event"].as_str().unwrap())
        .collect();
    assert_eq!(seen, vec!["app log", "stack"]);
    assert_eq!(got[0].headers["authorization"], "Splunk tenant-token");
    assert!(got[0].events[0]["fields"]
        .get(convert::TOKEN_ATTR)
        .is_none());
}

#[tokio::test]
async fn health_check_on_start() {
    let (_d, url) = double().await;
    let rec = TestRecorder::default();
    let ok = exporter(&rec, &url, json!({"health_check_enabled": true}));
    ok.start(&Host::detached()).await.unwrap();
    ok.shutdown().await.unwrap();
    // Nothing listens on port 9: start fails, naming the health URL.
    let bad = exporter(
        &rec,
        "http://127.0.0.1:9",
        json!({"health_check_enabled": true}),
    );
    let err = bad.start(&Host::detached()).await.unwrap_err().to_string();
    assert!(err.contains("/services/collector/health"), "{err}");
}

#[test]
fn config_follows_upstream() {
    let f = factory();
    let check = |v: Value| f.validate(&id(), &v).unwrap_err().to_string();
    assert!(check(json!({"token": "t"})).contains("endpoint"));
    assert!(check(json!({"endpoint": "https://hec:8088"})).contains("token"));
    assert!(check(json!({"endpoint": "https://hec:8088", "token": "t",
                         "log_data_enabled": false, "profiling_data_enabled": false}))
    .contains("log_data_enabled"));
    assert!(check(json!({"endpoint": "https://hec:8088", "token": "t",
                         "max_content_length_logs": 900u64 * 1024 * 1024}))
    .contains("max_content_length_logs"));
    assert!(
        check(json!({"endpoint": "https://hec:8088", "token": "t", "export_raw": true}))
            .contains("export_raw: not built")
    );
    // What Splunk's distribution configs set.
    f.validate(
        &id(),
        &json!({"endpoint": "https://ingest.us0.signalfx.com/v1/log", "token": "t",
                "log_data_enabled": false}),
    )
    .unwrap();
    let cfg: SplunkHecConfig =
        serde_json::from_value(json!({"endpoint": "https://hec:8088/", "token": "t"})).unwrap();
    assert_eq!(
        cfg.url(&id()).unwrap().as_str(),
        "https://hec:8088/services/collector"
    );
    assert_eq!(cfg.timeout, Duration::from_secs(10));
    assert_eq!(cfg.max_content_length_logs, 2 * 1024 * 1024);
}
