//! Tests against a protocol double of Elasticsearch's Bulk API (Elasticsearch is not a Debian
//! package and cannot run here): a local server that gunzips the body, parses it as the Bulk API
//! does (NDJSON: an action line, then the document), and answers with the documented response
//! shape, `{"took":..,"errors":..,"items":[{"create":{"_index":..,"status":201}}, ...]}`, per-item
//! statuses and `error` objects included, or a whole-request error.

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
use vigil_core::otlp::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    Sum,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::otlp::trace::v1::{span::Event, ResourceSpans, ScopeSpans, Span, Status};
use vigil_core::Consumer;

/// One bulk request as the double parsed it.
pub(crate) struct Got {
    pub uri: String,
    pub headers: HeaderMap,
    /// (action line, document) pairs.
    pub docs: Vec<(Value, Value)>,
}

/// What the double answers next: a whole-request status, or one status per item.
pub(crate) enum Answer {
    Whole(u16),
    Items(Vec<u16>),
}

#[derive(Default)]
pub(crate) struct Double {
    pub answers: Mutex<VecDeque<Answer>>,
    pub got: Mutex<Vec<Got>>,
}

fn item_error(status: u16) -> Value {
    match status {
        429 => {
            json!({"type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation"})
        }
        400 => {
            json!({"type": "document_parsing_exception", "reason": "failed to parse field [attributes.n] of type [long]"})
        }
        _ => {
            json!({"type": "unavailable_shards_exception", "reason": "primary shard is not active"})
        }
    }
}

async fn handle(
    State(d): State<Arc<Double>>,
    uri: Uri,
    headers: HeaderMap,
    body: AxumBytes,
) -> impl IntoResponse {
    let mut plain = Vec::new();
    if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut plain)
            .unwrap();
    } else {
        plain = body.to_vec();
    }
    if !uri.path().ends_with("/_bulk") {
        return (StatusCode::NOT_FOUND, "{}".to_string());
    }
    // The Bulk API requires a newline after the last line, and pairs of lines.
    assert!(
        plain.ends_with(b"\n"),
        "the bulk body must end with a newline"
    );
    let lines: Vec<Value> = plain
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(
        lines.len() % 2,
        0,
        "action and document lines come in pairs"
    );
    let docs: Vec<(Value, Value)> = lines
        .chunks(2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect();
    let answer = d.answers.lock().unwrap().pop_front();
    let statuses: Vec<u16> = match answer {
        Some(Answer::Whole(code)) => {
            d.got.lock().unwrap().push(Got {
                uri: uri.to_string(),
                headers,
                docs,
            });
            let body = json!({"error": {"type": "cluster_block_exception", "reason": "unavailable"}, "status": code});
            return (StatusCode::from_u16(code).unwrap(), body.to_string());
        }
        Some(Answer::Items(s)) => s,
        None => Vec::new(),
    };
    let items: Vec<Value> = docs
        .iter()
        .enumerate()
        .map(|(i, (action, _))| {
            let (op, meta) = action.as_object().unwrap().iter().next().unwrap();
            let status = statuses.get(i).copied().unwrap_or(201);
            let mut r = json!({"_index": meta["_index"], "status": status});
            if status >= 300 {
                r["error"] = item_error(status);
            } else {
                r["result"] = json!("created");
            }
            json!({ op.clone(): r })
        })
        .collect();
    let errors = statuses.iter().any(|s| *s >= 300);
    d.got.lock().unwrap().push(Got {
        uri: uri.to_string(),
        headers,
        docs,
    });
    (
        StatusCode::OK,
        json!({"took": 3, "errors": errors, "items": items}).to_string(),
    )
}

pub(crate) async fn double() -> (Arc<Double>, String) {
    let d = Arc::new(Double::default());
    let app = axum::Router::new()
        .fallback(axum::routing::any(handle))
        .with_state(d.clone());
    (d, serve(app).await)
}

fn id() -> ComponentId {
    ComponentId::parse("elasticsearch/test").unwrap()
}

fn load(cfg: Value) -> Result<EsConfig, ConfigError> {
    let cfg: EsConfig = vigil_core::config::decode(ComponentKind::Exporter, &id(), &cfg)?;
    cfg.validate(&id())?;
    Ok(cfg)
}

fn exporter(rec: &TestRecorder, url: &str, extra: Value) -> SendStack<EsSender> {
    let cfg = merged(
        json!({
            "endpoint": url,
            "api_key": "a2V5OnNlY3JldA==",
            "sending_queue": {"enabled": false},
            "retry": {"initial_interval": "10ms", "max_interval": "20ms"},
        }),
        extra,
    );
    let cfg = load(cfg).unwrap();
    let set = Settings::new(ComponentKind::Exporter, &id());
    metrics::with_local_recorder(rec, || build(&set, cfg)).unwrap()
}

fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

fn logs(records: Vec<LogRecord>, res: Vec<KeyValue>) -> Telemetry {
    Telemetry::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: res,
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: "app".into(),
                version: "1.0".into(),
                ..Default::default()
            }),
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn record(body: &str, attrs: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_705_314_600_000_000_000,
        observed_time_unix_nano: 1_705_314_600_001_000_000,
        severity_text: "INFO".into(),
        severity_number: 9,
        body: text(body),
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        attributes: attrs,
        ..Default::default()
    }
}

const LOGS_SENT: &str = "otelcol_exporter_sent_log_records{exporter=elasticsearch/test}";
const LOGS_FAILED: &str = "otelcol_exporter_send_failed_log_records{exporter=elasticsearch/test}";

#[tokio::test]
async fn logs_are_otel_documents_routed_to_data_streams() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(&rec, &url, json!({}));
    let data = logs(
        vec![
            record(
                "GET /",
                vec![
                    kv_str("data_stream.dataset", "nginx.access"),
                    kv_i64("http.status", 200),
                ],
            ),
            record("plain", vec![]),
        ],
        vec![
            kv_str("service.name", "web"),
            kv_str("data_stream.namespace", "prod"),
        ],
    );
    e.consume(data).await.unwrap();
    let got = d.got.lock().unwrap();
    assert_eq!(got.len(), 1);
    let g = &got[0];
    assert_eq!(g.uri, "/_bulk");
    assert_eq!(g.headers["authorization"], "ApiKey a2V5OnNlY3JldA==");
    assert_eq!(g.headers["content-type"], "application/x-ndjson");
    assert_eq!(g.headers["content-encoding"], "gzip");
    assert_eq!(
        g.docs[0].0,
        json!({"create": {"_index": "logs-nginx.access.otel-prod"}})
    );
    assert_eq!(
        g.docs[0].1,
        json!({
            "@timestamp": "1705314600000.0",
            "observed_timestamp": "1705314600001.0",
            "data_stream": {"type": "logs", "dataset": "nginx.access.otel", "namespace": "prod"},
            "severity_text": "INFO",
            "severity_number": 9,
            "trace_id": "01010101010101010101010101010101",
            "span_id": "0202020202020202",
            "attributes": {"http.status": 200},
            "resource": {"attributes": {"service.name": "web"}},
            "scope": {"name": "app", "version": "1.0"},
            "body": {"text": "GET /"},
        })
    );
    assert_eq!(
        g.docs[1].0,
        json!({"create": {"_index": "logs-generic.otel-prod"}})
    );
    assert_eq!((rec.counter(LOGS_SENT), rec.counter(LOGS_FAILED)), (2, 0));
}

#[tokio::test]
async fn whole_503_then_per_item_429_resends_only_those_and_400_is_counted() {
    let (d, url) = double().await;
    d.answers.lock().unwrap().extend([
        Answer::Whole(503),
        Answer::Items(vec![201, 429, 400]),
        Answer::Items(vec![201]),
    ]);
    let rec = TestRecorder::default();
    let e = exporter(&rec, &url, json!({}));
    let data = logs(
        vec![
            record("one", vec![]),
            record("two", vec![]),
            record("three", vec![kv_str("n", "not a number")]),
        ],
        vec![],
    );
    e.consume(data).await.unwrap();
    let got = d.got.lock().unwrap();
    let bodies: Vec<Vec<&str>> = got
        .iter()
        .map(|g| {
            g.docs
                .iter()
                .map(|(_, d)| d["body"]["text"].as_str().unwrap())
                .collect()
        })
        .collect();
    // The 503 indexed nothing and is resent whole; after the per-item answer only the 429 is.
    assert_eq!(
        bodies,
        vec![
            vec!["one", "two", "three"],
            vec!["one", "two", "three"],
            vec!["two"]
        ]
    );
    assert_eq!((rec.counter(LOGS_SENT), rec.counter(LOGS_FAILED)), (2, 1));
}

#[tokio::test]
async fn retries_stop_after_max_retries() {
    let (d, url) = double().await;
    d.answers
        .lock()
        .unwrap()
        .extend((0..5).map(|_| Answer::Items(vec![429])));
    let rec = TestRecorder::default();
    let e = exporter(
        &rec,
        &url,
        json!({"retry": {"max_retries": 1, "initial_interval": "5ms"}}),
    );
    let r = e.consume(logs(vec![record("x", vec![])], vec![])).await;
    assert!(
        matches!(r, Err(vigil_core::ConsumeError::Retryable { .. })),
        "{r:?}"
    );
    assert_eq!(d.got.lock().unwrap().len(), 2);
    assert_eq!(rec.counter(LOGS_FAILED), 1);
}

#[tokio::test]
async fn traces_and_span_events_and_none_mode() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(&rec, &url, json!({}));
    let span = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        parent_span_id: vec![3; 8],
        name: "GET /users".into(),
        kind: 2,
        start_time_unix_nano: 1_705_314_600_000_000_000,
        end_time_unix_nano: 1_705_314_600_150_000_000,
        attributes: vec![kv_str("http.method", "GET")],
        events: vec![Event {
            time_unix_nano: 1_705_314_600_050_000_000,
            name: "exception".into(),
            attributes: vec![kv_str("exception.type", "E")],
            ..Default::default()
        }],
        status: Some(Status {
            code: 2,
            message: "boom".into(),
        }),
        ..Default::default()
    };
    let traces = |scope_attrs: Vec<KeyValue>| {
        Telemetry::Traces(vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "api")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "lib".into(),
                    attributes: scope_attrs,
                    ..Default::default()
                }),
                spans: vec![span.clone()],
                ..Default::default()
            }],
            ..Default::default()
        }])
    };
    e.consume(traces(vec![])).await.unwrap();
    // A scope may ask for another mode.
    e.consume(traces(vec![kv_str("elastic.mapping.mode", "none")]))
        .await
        .unwrap();
    let got = d.got.lock().unwrap();
    let (a, s) = &got[0].docs[0];
    assert_eq!(a["create"]["_index"], "traces-generic.otel-default");
    assert_eq!(s["kind"], "Server");
    assert_eq!(s["duration"], 150_000_000);
    assert_eq!(s["parent_span_id"], "0303030303030303");
    assert_eq!(s["status"], json!({"message": "boom", "code": "Error"}));
    let (a, ev) = &got[0].docs[1];
    assert_eq!(a["create"]["_index"], "logs-generic.otel-default");
    assert_eq!(ev["event_name"], "exception");
    assert_eq!(
        ev["attributes"],
        json!({"exception.type": "E", "event.name": "exception"})
    );
    let (a, n) = &got[1].docs[0];
    assert_eq!(a["create"]["_index"], "traces-generic-default");
    assert_eq!(n["Name"], "GET /users");
    assert_eq!(n["Kind"], "SPAN_KIND_SERVER");
    assert_eq!(n["Duration"], 150_000);
    assert_eq!(n["Attributes.http.method"], "GET");
    assert_eq!(n["Resource.service.name"], "api");
    assert_eq!(n["Events.exception.exception.type"], "E");
    assert_eq!(n["@timestamp"], "2024-01-15T10:30:00.000000000Z");
    assert_eq!(got[1].docs.len(), 1);
    assert_eq!(
        rec.counter("otelcol_exporter_sent_spans{exporter=elasticsearch/test}"),
        2
    );
}

#[tokio::test]
async fn metrics_share_a_document_per_time_and_attributes() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(
        &rec,
        &url,
        json!({"compression": "none", "user": "elastic", "password": "changeme", "api_key": null, "pipeline": "p1"}),
    );
    let point = |v: number_data_point::Value| NumberDataPoint {
        time_unix_nano: 1_705_314_600_000_000_000,
        value: Some(v),
        attributes: vec![kv_str("state", "used")],
        ..Default::default()
    };
    let data = Telemetry::Metrics(vec![ResourceMetrics {
        resource: Some(Resource::default()),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![
                Metric {
                    name: "mem.usage".into(),
                    unit: "By".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![point(number_data_point::Value::AsInt(1024))],
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "mem.faults".into(),
                    unit: "By".into(),
                    data: Some(Data::Sum(Sum {
                        data_points: vec![point(number_data_point::Value::AsDouble(3.5))],
                        aggregation_temporality: 2,
                        is_monotonic: true,
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
    let g = &got[0];
    assert_eq!(g.uri, "/_bulk?pipeline=p1");
    assert_eq!(g.headers["authorization"], "Basic ZWxhc3RpYzpjaGFuZ2VtZQ==");
    assert!(g.headers.get("content-encoding").is_none());
    assert_eq!(g.docs.len(), 1);
    let (a, m) = &g.docs[0];
    assert_eq!(
        a,
        &json!({"create": {"_index": "metrics-generic.otel-default", "dynamic_templates": {
            "metrics.mem.usage": "gauge_long", "metrics.mem.faults": "counter_double"}}})
    );
    assert_eq!(m["metrics"], json!({"mem.usage": 1024, "mem.faults": 3.5}));
    assert_eq!(m["@timestamp"], 1_705_314_600_000u64);
    assert_eq!(m["unit"], "By");
    assert_eq!(m["attributes"], json!({"state": "used"}));
    assert_eq!(
        rec.counter("otelcol_exporter_sent_metric_points{exporter=elasticsearch/test}"),
        2
    );
}

#[test]
fn config_follows_upstream() {
    let cfg = load(json!({"cloudid": "foo:YmFyLmNsb3VkLmVzLmlvJGFiYzEyMyRkZWY0NTY="})).unwrap();
    assert_eq!(
        cfg.urls(&id()).unwrap()[0].as_str(),
        "https://abc123.bar.cloud.es.io/"
    );
    assert_eq!(cfg.timeout, Duration::from_secs(90));
    assert_eq!(cfg.compression, Compression::Gzip);
    assert_eq!(cfg.retry.retry_on_status, vec![429]);
    assert!(!cfg.sending_queue.enabled);
    let s = cfg.settings();
    assert_eq!(s.retry_on_failure.max_retries, Some(2));
    assert_eq!(
        s.retry_on_failure.initial_interval,
        Duration::from_millis(100)
    );
    let err = |v: Value| load(v).unwrap_err().to_string();
    assert!(
        err(json!({"endpoint": "http://a:9200", "endpoints": ["http://b:9200"]}))
            .contains("exactly one of [endpoint, endpoints, cloudid]")
    );
    assert!(err(json!({"endpoints": ["ftp://a"]})).contains("invalid scheme"));
    assert!(
        err(json!({"endpoint": "http://a:9200", "mapping": {"mode": "ecs"}}))
            .contains("elasticsearch/test::mapping::mode: the ecs mapping mode is not built")
    );
    assert!(
        err(json!({"endpoint": "http://a:9200", "discover": {"on_start": true}}))
            .contains("discover")
    );
    assert!(err(
        json!({"endpoint": "http://a:9200", "mapping": {"mode": "otel", "allowed_modes": ["none"]}})
    )
    .contains("disallowed default mapping mode"));
    let flush = load(json!({"endpoint": "http://a:9200", "flush": {"interval": "1s"}})).unwrap();
    let queue = flush.settings().sending_queue;
    assert!(queue.enabled);
    let batch = queue.batch.unwrap();
    assert_eq!(batch.flush_timeout, Duration::from_secs(1));
}
