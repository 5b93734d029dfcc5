//! Tests against a double of a Sumo Logic HTTP Source (Sumo cannot run here): a local server that
//! records each POST's path, headers and decompressed body, and answers with the status the test
//! queued (200 when none).

use super::*;
use crate::helper::counters::testing::TestRecorder;
use crate::helper::test_http::{merged, serve};
use axum::body::Bytes as AxumBytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use prost::Message;
use serde_json::{json, Value};
use std::collections::VecDeque;
use vigil_core::attrs::{kv_i64, kv_str};
use vigil_core::otlp::collector::logs::v1::ExportLogsServiceRequest;
use vigil_core::otlp::common::v1::{any_value, AnyValue};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::Consumer;

struct Got {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
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
    let mut plain = Vec::new();
    match headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
    {
        Some("gzip") => {
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut plain)
                .unwrap();
        }
        Some("deflate") => {
            std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&body[..]), &mut plain)
                .unwrap();
        }
        _ => plain = body.to_vec(),
    }
    let code = d.answers.lock().unwrap().pop_front().unwrap_or(200);
    if code == 200 {
        d.got.lock().unwrap().push(Got {
            path: uri.path().to_string(),
            headers,
            body: plain,
        });
    }
    let mut resp = (StatusCode::from_u16(code).unwrap(), "").into_response();
    resp.headers_mut().insert(
        "set-cookie",
        http::HeaderValue::from_static("AWSALB=node-7; Path=/"),
    );
    resp
}

async fn double() -> (Arc<Double>, String) {
    let d = Arc::new(Double::default());
    let app = axum::Router::new()
        .fallback(axum::routing::any(handle))
        .with_state(d.clone());
    (d, serve(app).await)
}

fn id() -> ComponentId {
    ComponentId::parse("sumologic/test").unwrap()
}

fn config(cfg: Value) -> Result<SumologicConfig, String> {
    let cfg: SumologicConfig = vigil_core::config::decode(ComponentKind::Exporter, &id(), &cfg)
        .map_err(|e| e.to_string())?;
    cfg.validate(&id()).map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn exporter(rec: &TestRecorder, url: &str, extra: Value) -> SendStack<SumoSender> {
    let cfg = config(merged(
        json!({
            "endpoint": url,
            "sending_queue": {"enabled": false},
            "retry_on_failure": {"enabled": false},
        }),
        extra,
    ))
    .unwrap();
    let set = Settings::new(ComponentKind::Exporter, &id());
    metrics::with_local_recorder(rec, || build(&set, cfg)).unwrap()
}

fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

fn logs(bodies: &[&str]) -> Telemetry {
    Telemetry::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![
                kv_str("_sourceCategory", "prod/app"),
                kv_str("_sourceHost", "node-1"),
                kv_str("k8s.pod.name", "api-0"),
                kv_str("cluster", "eu"),
            ],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: bodies
                .iter()
                .map(|b| LogRecord {
                    body: text(b),
                    attributes: vec![kv_i64("attempt", 2)],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn gunzip_lines(g: &Got) -> Vec<String> {
    String::from_utf8(g.body.clone())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn defaults_and_refusals_follow_otelcol() {
    let cfg =
        config(json!({"endpoint": "https://collectors.sumologic.com/receiver/v1/otlp/x"})).unwrap();
    assert_eq!(cfg.timeout, Duration::from_secs(30));
    assert_eq!(cfg.max_request_body_size, 1024 * 1024);
    assert_eq!(cfg.log_format, LogFormat::Otlp);
    assert_eq!(cfg.metric_format, MetricFormat::Otlp);
    assert_eq!(cfg.compression.0, Compression::Gzip);
    assert_eq!(cfg.client, "otelcol");
    // Without endpoint, the default authenticator is the extension called `sumologic`.
    assert!(matches!(
        config(json!({})).unwrap().target(&id()).unwrap(),
        Target::Extension(e) if e.to_string() == "sumologic"
    ));
    for (cfg, want) in [
        (
            json!({"compress_encoding": "gzip"}),
            "compress_encoding: support for compress_encoding",
        ),
        (
            json!({"metric_format": "carbon2"}),
            "metric_format: support for the carbon2",
        ),
        (
            json!({"metric_format": "graphite"}),
            "metric_format: support for the graphite",
        ),
        (
            json!({"timeout": "56s"}),
            "timeout: timeout must be between 1 and 55 seconds",
        ),
        (
            json!({"auth": null}),
            "endpoint: no endpoint and no auth extension",
        ),
        (
            json!({"auth": {"authenticator": "bearertokenauth"}}),
            "auth::authenticator: bearertokenauth is not a sumologic",
        ),
        (
            json!({"compression": "lz4"}),
            "invalid compression encoding type",
        ),
        (json!({"log_format": "xml"}), "log_format"),
    ] {
        let e = config(cfg.clone())
            .err()
            .unwrap_or_else(|| panic!("{cfg} accepted"));
        assert!(e.contains(want), "{cfg}: {e}");
    }
}

#[tokio::test]
async fn json_logs_carry_the_source_headers_and_fields() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(
        &rec,
        &format!("{url}/receiver/v1/http/TOKEN"),
        json!({"log_format": "json"}),
    );
    e.consume(logs(&["disk almost full", "ok"])).await.unwrap();
    let got = d.got.lock().unwrap();
    assert_eq!(got.len(), 1);
    let g = &got[0];
    // Not OTLP: the HTTP Source URL as configured.
    assert_eq!(g.path, "/receiver/v1/http/TOKEN");
    assert_eq!(
        g.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(g.headers["content-encoding"], "gzip");
    assert_eq!(g.headers["x-sumo-client"], "otelcol");
    assert_eq!(g.headers["x-sumo-category"], "prod/app");
    assert_eq!(g.headers["x-sumo-host"], "node-1");
    assert!(g.headers.get("x-sumo-name").is_none());
    assert_eq!(g.headers["x-sumo-fields"], "cluster=eu, k8s.pod.name=api-0");
    let lines: Vec<Value> = gunzip_lines(g)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        vec![
            json!({"attempt": 2, "log": "disk almost full"}),
            json!({"attempt": 2, "log": "ok"})
        ]
    );
}

#[tokio::test]
async fn text_logs_are_cut_at_max_request_body_size_and_a_retry_resends_only_the_rest() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(
        &rec,
        &url,
        json!({"log_format": "text", "max_request_body_size": 12, "compression": ""}),
    );
    // Three bodies of at most 12 bytes; the second is refused once with 503.
    let sender = e.sender();
    let req = sender
        .prepare(&logs(&["aaaaa", "bbbbb", "ccccc", "ddddd", "eeeee"]))
        .unwrap();
    assert_eq!(req.bodies.len(), 3);
    d.answers.lock().unwrap().extend([200, 503]);
    let err = sender.send(&req).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    sender.send(&req).await.unwrap();
    let got = d.got.lock().unwrap();
    let bodies: Vec<String> = got.iter().map(|g| gunzip_lines(g).join("|")).collect();
    assert_eq!(bodies, vec!["aaaaa|bbbbb", "ccccc|ddddd", "eeeee"]);
    assert!(got[0].headers.get("content-encoding").is_none());
    // And the request survives a durable queue's round trip, with what was accepted.
    let back = SumoRequest::from_bytes(&req.to_bytes()).unwrap();
    assert_eq!(back.bodies, req.bodies);
    assert_eq!(back.done.load(Ordering::Acquire), 3);
}

#[tokio::test]
async fn otlp_goes_to_the_signal_path_and_prometheus_lines_have_labels() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(
        &rec,
        &format!("{url}/receiver/v1/otlp/TOKEN"),
        json!({"metric_format": "prometheus", "compression": "deflate", "sticky_session_enabled": true}),
    );
    e.consume(logs(&["x"])).await.unwrap();
    let gauge = Metric {
        name: "cpu.usage".into(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                time_unix_nano: 1_700_000_000_123_000_000,
                value: Some(number_data_point::Value::AsDouble(0.5)),
                attributes: vec![kv_str("core", "0")],
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    let hist = Metric {
        name: "latency".into(),
        data: Some(Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                time_unix_nano: 2_000_000,
                count: 3,
                sum: Some(1.5),
                bucket_counts: vec![1, 2],
                explicit_bounds: vec![0.5],
                ..Default::default()
            }],
            ..Default::default()
        })),
        ..Default::default()
    };
    e.consume(Telemetry::Metrics(vec![ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![kv_str("_sourceName", "m"), kv_str("host", "h\"1")],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![gauge, hist],
            ..Default::default()
        }],
        ..Default::default()
    }]))
    .await
    .unwrap();
    let got = d.got.lock().unwrap();
    assert_eq!(got[0].path, "/receiver/v1/otlp/TOKEN/v1/logs");
    assert_eq!(got[0].headers["content-type"], "application/x-protobuf");
    let req = ExportLogsServiceRequest::decode(&got[0].body[..]).unwrap();
    assert_eq!(req.resource_logs[0].scope_logs[0].log_records.len(), 1);
    // The sticky-session cookie the first answer set goes back on the next request.
    assert_eq!(got[1].headers["cookie"], "AWSALB=node-7");
    assert_eq!(got[1].path, "/receiver/v1/otlp/TOKEN");
    assert_eq!(
        got[1].headers["content-type"],
        "application/vnd.sumologic.prometheus"
    );
    assert_eq!(got[1].headers["content-encoding"], "deflate");
    assert_eq!(got[1].headers["x-sumo-name"], "m");
    assert_eq!(
        gunzip_lines(&got[1]),
        vec![
            "cpu_usage{core=\"0\",host=\"h\\\"1\"} 0.5 1700000000123",
            "latency_bucket{host=\"h\\\"1\",le=\"0.5\"} 1 2",
            "latency_bucket{host=\"h\\\"1\",le=\"+Inf\"} 3 2",
            "latency_sum{host=\"h\\\"1\"} 1.5 2",
            "latency_count{host=\"h\\\"1\"} 3 2",
        ]
    );
}

#[tokio::test]
async fn without_endpoint_it_needs_the_extension_and_sends_to_its_api() {
    let (d, url) = double().await;
    let cfg = config(json!({
        "sending_queue": {"enabled": false},
        "retry_on_failure": {"enabled": false},
    }))
    .unwrap();
    let set = Settings::new(ComponentKind::Exporter, &id());
    let e = build(&set, cfg).unwrap();
    // No extension in the host: start fails with otelcol's message.
    let err = e.sender().start(&Host::detached()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("a matching extension was not found"),
        "{err}"
    );
    // The API base URL the extension published is where data goes.
    let host = Host::detached();
    let apis = host.service(&SUMO_APIS).unwrap();
    apis.set(
        &ComponentId::parse("sumologic").unwrap(),
        &format!("{url}/"),
    );
    let _ = e.sender().apis.set(apis);
    let req = e.sender().prepare(&logs(&["x"])).unwrap();
    // No authenticator started: the request is held back (retryably), never sent bare.
    assert!(e.sender().send(&req).await.unwrap_err().is_retryable());
    assert!(d.got.lock().unwrap().is_empty());
    assert_eq!(
        e.sender().url(Route::Traces).unwrap().as_str(),
        format!("{url}/api/v1/collector/traces")
    );
}

/// `decompose_otlp_histograms`: the OTLP body carries the histogram as `_sum`, `_count` and
/// cumulative `_bucket` gauges after the other metrics, as upstream sends it to Sumo.
#[tokio::test]
async fn decompose_otlp_histograms_sends_gauges_instead() {
    use vigil_core::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(
        &rec,
        &format!("{url}/receiver/v1/otlp/TOKEN"),
        json!({"decompose_otlp_histograms": true}),
    );
    let hist = Metric {
        name: "latency".into(),
        unit: "s".into(),
        data: Some(Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                start_time_unix_nano: 1_000_000,
                time_unix_nano: 2_000_000,
                count: 6,
                sum: Some(4.5),
                bucket_counts: vec![1, 2, 3],
                explicit_bounds: vec![0.5, 1.0],
                attributes: vec![kv_str("route", "/a")],
                ..Default::default()
            }],
            ..Default::default()
        })),
        ..Default::default()
    };
    let gauge = Metric {
        name: "up".into(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                value: Some(number_data_point::Value::AsInt(1)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    e.consume(Telemetry::Metrics(vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![hist, gauge],
            ..Default::default()
        }],
        ..Default::default()
    }]))
    .await
    .unwrap();
    let got = d.got.lock().unwrap();
    assert_eq!(got[0].path, "/receiver/v1/otlp/TOKEN/v1/metrics");
    let req = ExportMetricsServiceRequest::decode(&got[0].body[..]).unwrap();
    let ms = &req.resource_metrics[0].scope_metrics[0].metrics;
    let names: Vec<&str> = ms.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        ["up", "latency_sum", "latency_count", "latency_bucket"]
    );
    let points = |m: &Metric| match &m.data {
        Some(Data::Gauge(g)) => g.data_points.clone(),
        other => panic!("{} is not a gauge: {other:?}", m.name),
    };
    let sum = &points(&ms[1])[0];
    assert_eq!(sum.value, Some(number_data_point::Value::AsDouble(4.5)));
    assert_eq!(sum.start_time_unix_nano, 1_000_000);
    assert_eq!(sum.time_unix_nano, 2_000_000);
    assert_eq!(ms[1].unit, "s");
    assert_eq!(
        points(&ms[2])[0].value,
        Some(number_data_point::Value::AsInt(6))
    );
    let buckets = points(&ms[3]);
    let seen: Vec<(f64, i64)> = buckets
        .iter()
        .map(|p| {
            let le = match vigil_core::attrs::get(&p.attributes, "le") {
                Some(any_value::Value::DoubleValue(v)) => *v,
                other => panic!("le: {other:?}"),
            };
            assert!(vigil_core::attrs::get(&p.attributes, "route").is_some());
            match p.value {
                Some(number_data_point::Value::AsInt(c)) => (le, c),
                other => panic!("{other:?}"),
            }
        })
        .collect();
    assert_eq!(seen, [(0.5, 1), (1.0, 3), (f64::INFINITY, 6)]);
}
