//! Tests against a protocol double of SignalFx's ingest API (Splunk Observability Cloud cannot
//! run here): a local HTTP server that checks `X-SF-Token`, gunzips and decodes the real wire
//! formats (`DataPointUploadMessage`, `EventUploadMessage`, OTLP for `/v2/datapoint/otlp`), and
//! answers as the service does (`"OK"` with 200, 401 for a bad token, 503 when overloaded).

use super::proto::{DataPointUploadMessage, EventUploadMessage, MetricType};
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
use vigil_core::otlp::common::v1::{any_value, AnyValue, KeyValueList};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::metrics::v1::{
    number_data_point, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, Sum,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::{Component, ConsumeError, Consumer, Host};

/// One request as the double received it: path, token, decoded-ready (gunzipped) body.
struct Got {
    path: String,
    token: String,
    body: Vec<u8>,
}

#[derive(Default)]
struct Double {
    /// Status codes to answer next (then 200).
    answers: Mutex<VecDeque<u16>>,
    got: Mutex<Vec<Got>>,
}

async fn handle(
    State(d): State<Arc<Double>>,
    uri: Uri,
    headers: HeaderMap,
    body: AxumBytes,
) -> impl IntoResponse {
    let token = headers
        .get("x-sf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert_eq!(headers["content-encoding"], "gzip");
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut plain).unwrap();
    let code = d.answers.lock().unwrap().pop_front().unwrap_or(200);
    if code == 200 {
        d.got.lock().unwrap().push(Got {
            path: uri.path().to_string(),
            token,
            body: plain,
        });
    }
    let text = match code {
        200 => "\"OK\"",
        401 => "{\"code\":401,\"message\":\"Unauthorized\"}",
        _ => "overloaded",
    };
    (StatusCode::from_u16(code).unwrap(), text)
}

async fn double() -> (Arc<Double>, String) {
    let d = Arc::new(Double::default());
    let app = axum::Router::new()
        .fallback(axum::routing::post(handle))
        .with_state(d.clone());
    (d, serve(app).await)
}

fn id() -> ComponentId {
    ComponentId::parse("signalfx/test").unwrap()
}

fn exporter(rec: &TestRecorder, url: &str, extra: Value) -> SendStack<SignalFxSender> {
    let cfg = merged(
        json!({
            "access_token": "tok-config",
            "ingest_url": url,
            "api_url": url,
            "sending_queue": {"enabled": false},
            "retry_on_failure": {"enabled": false},
        }),
        extra,
    );
    let cfg: SignalFxConfig =
        vigil_core::config::decode(ComponentKind::Exporter, &id(), &cfg).unwrap();
    cfg.validate(&id()).unwrap();
    let set = Settings::new(ComponentKind::Exporter, &id());
    metrics::with_local_recorder(rec, || build(&set, cfg)).unwrap()
}

fn gauge(name: &str, v: f64, attrs: Vec<KeyValue>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                time_unix_nano: 1_700_000_000_123_000_000,
                value: Some(number_data_point::Value::AsDouble(v)),
                attributes: attrs,
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

fn resource_metrics(res: Vec<KeyValue>, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes: res,
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

use vigil_core::otlp::common::v1::KeyValue;

fn datapoints(g: &Got) -> DataPointUploadMessage {
    DataPointUploadMessage::decode(&g.body[..]).unwrap()
}

const SENT: &str = "otelcol_exporter_sent_metric_points{exporter=signalfx/test}";
const FAILED: &str = "otelcol_exporter_send_failed_metric_points{exporter=signalfx/test}";

#[tokio::test]
async fn metrics_go_as_protobuf_datapoints_with_dimensions() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(&rec, &url, json!({}));
    let hist = Metric {
        name: "http.server.duration".into(),
        data: Some(Data::Histogram(Histogram {
            aggregation_temporality: 2,
            data_points: vec![HistogramDataPoint {
                time_unix_nano: 1_700_000_000_000_000_000,
                count: 6,
                sum: Some(12.5),
                explicit_bounds: vec![0.5, 1e6],
                bucket_counts: vec![1, 2, 3],
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    let sum = Metric {
        name: "requests".into(),
        data: Some(Data::Sum(Sum {
            aggregation_temporality: 2,
            is_monotonic: true,
            data_points: vec![NumberDataPoint {
                time_unix_nano: 1_700_000_000_000_000_000,
                value: Some(number_data_point::Value::AsInt(42)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    let data = Telemetry::Metrics(vec![resource_metrics(
        vec![kv_str("host.name", "node-1"), kv_str("k8s/pod", "p")],
        vec![
            gauge("queue.depth", 3.5, vec![kv_str("host.name", "override")]),
            sum,
            hist,
        ],
    )]);
    e.consume(data).await.unwrap();
    let got = d.got.lock().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/v2/datapoint");
    assert_eq!(got[0].token, "tok-config");
    let dps = datapoints(&got[0]).datapoints;
    let find = |name: &str| dps.iter().filter(|p| p.metric == name).collect::<Vec<_>>();
    let g = find("queue.depth")[0];
    assert_eq!(g.value.double_value, Some(3.5));
    assert_eq!(g.timestamp, Some(1_700_000_000_123));
    assert_eq!(g.metric_type, Some(MetricType::Gauge as i32));
    // The point's attribute wins over the resource's; `/` is not allowed in a key.
    let dims: Vec<(&str, &str)> = g.dimensions.iter().map(|d| (d.key(), d.value())).collect();
    assert_eq!(dims, vec![("k8s_pod", "p"), ("host.name", "override")]);
    let r = find("requests")[0];
    assert_eq!(
        (r.value.int_value, r.metric_type),
        (Some(42), Some(MetricType::CumulativeCounter as i32))
    );
    assert_eq!(
        find("http.server.duration_count")[0].value.int_value,
        Some(6)
    );
    assert_eq!(
        find("http.server.duration_sum")[0].value.double_value,
        Some(12.5)
    );
    let buckets: Vec<(String, i64)> = find("http.server.duration_bucket")
        .iter()
        .map(|p| {
            let le = p.dimensions.iter().find(|d| d.key() == "le").unwrap();
            (le.value().to_string(), p.value.int_value.unwrap())
        })
        .collect();
    assert_eq!(
        buckets,
        vec![
            ("0.5".to_string(), 1),
            ("1e+06".to_string(), 3),
            ("+Inf".to_string(), 6)
        ]
    );
    assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (3, 0));
}

fn cpu(user: f64, idle: f64) -> Telemetry {
    let point = |state: &str, v: f64| NumberDataPoint {
        time_unix_nano: 1_700_000_000_000_000_000,
        value: Some(number_data_point::Value::AsDouble(v)),
        attributes: vec![kv_str("cpu", "cpu0"), kv_str("state", state)],
        ..Default::default()
    };
    Telemetry::Metrics(vec![resource_metrics(
        vec![kv_str("host.name", "node-1")],
        vec![Metric {
            name: "system.cpu.time".into(),
            data: Some(Data::Sum(Sum {
                aggregation_temporality: 2,
                is_monotonic: true,
                data_points: vec![point("user", user), point("idle", idle)],
            })),
            ..Default::default()
        }],
    )])
}

#[tokio::test]
async fn default_rules_and_excludes_send_signalfx_host_series() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(&rec, &url, json!({}));
    e.consume(cpu(10.0, 30.0)).await.unwrap();
    e.consume(cpu(13.0, 39.0)).await.unwrap();
    let second = datapoints(&d.got.lock().unwrap()[1]).datapoints;
    let names: Vec<&str> = second.iter().map(|p| p.metric.as_str()).collect();
    // Per-state OTel CPU time and per-core cpu.* are excluded by default; the derived host
    // series are sent.
    assert!(!names.contains(&"system.cpu.time"), "{names:?}");
    assert!(!names.contains(&"cpu.user"), "{names:?}");
    let util = second
        .iter()
        .find(|p| p.metric == "cpu.utilization")
        .expect("cpu.utilization on the second scrape");
    assert_eq!(util.value.double_value, Some(25.0));
    assert!(names.contains(&"cpu.idle") && names.contains(&"cpu.num_processors"));
    // With the rules off and `exclude_metrics: []`, the OTel series go as they are.
    let raw = exporter(
        &rec,
        &url,
        json!({"disable_default_translation_rules": true, "exclude_metrics": []}),
    );
    raw.consume(cpu(1.0, 2.0)).await.unwrap();
    let got = d.got.lock().unwrap();
    let names: Vec<String> = datapoints(&got[2])
        .datapoints
        .into_iter()
        .map(|p| p.metric)
        .collect();
    assert_eq!(names, vec!["system.cpu.time", "system.cpu.time"]);
}

#[tokio::test]
async fn unavailable_then_ok_loses_nothing_and_resends_only_what_is_left() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(
        &rec,
        &url,
        json!({"retry_on_failure": {"enabled": true, "initial_interval": "10ms", "max_interval": "20ms"}}),
    );
    // Two origins with their own tokens: the first post is accepted, the second is refused
    // with 503 once, then accepted.
    d.answers.lock().unwrap().extend([200, 503]);
    let data = Telemetry::Metrics(vec![
        resource_metrics(
            vec![kv_str(translate::TOKEN_ATTR, "tok-a")],
            vec![gauge("a", 1.0, vec![])],
        ),
        resource_metrics(
            vec![kv_str(translate::TOKEN_ATTR, "tok-b")],
            vec![gauge("b", 2.0, vec![])],
        ),
    ]);
    e.consume(data).await.unwrap();
    let got = d.got.lock().unwrap();
    let seen: Vec<(&str, String)> = got
        .iter()
        .map(|g| (g.token.as_str(), datapoints(g).datapoints[0].metric.clone()))
        .collect();
    assert_eq!(seen, vec![("tok-a", "a".into()), ("tok-b", "b".into())]);
    // The token is never a dimension.
    assert!(datapoints(&got[0]).datapoints[0].dimensions.is_empty());
    assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (2, 0));
}

#[tokio::test]
async fn queued_exporter_retries_503_in_the_background() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(
        &rec,
        &url,
        json!({"sending_queue": {"enabled": true},
               "retry_on_failure": {"enabled": true, "initial_interval": "10ms"}}),
    );
    e.start(&Host::detached()).await.unwrap();
    d.answers.lock().unwrap().extend([503, 503]);
    for i in 0..3 {
        e.consume(Telemetry::Metrics(vec![resource_metrics(
            vec![],
            vec![gauge(&format!("m{i}"), 1.0, vec![])],
        )]))
        .await
        .unwrap();
    }
    e.shutdown().await.unwrap();
    let mut names: Vec<String> = d
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|g| datapoints(g).datapoints[0].metric.clone())
        .collect();
    names.sort();
    assert_eq!(names, vec!["m0", "m1", "m2"]);
    assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (3, 0));
}

#[tokio::test]
async fn unauthorized_is_permanent_and_counted() {
    let (d, url) = double().await;
    d.answers.lock().unwrap().push_back(401);
    let rec = TestRecorder::default();
    let e = exporter(&rec, &url, json!({"retry_on_failure": {"enabled": true}}));
    let err = e
        .consume(Telemetry::Metrics(vec![resource_metrics(
            vec![],
            vec![gauge("x", 1.0, vec![])],
        )]))
        .await
        .unwrap_err();
    match err {
        ConsumeError::Permanent { reason, rejected } => {
            assert!(reason.contains("401"), "{reason}");
            assert_eq!(rejected, 1);
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_eq!((rec.counter(SENT), rec.counter(FAILED)), (0, 1));
}

#[tokio::test]
async fn signalfx_events_go_to_v2_event_and_other_logs_do_not() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(&rec, &url, json!({}));
    let props = AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList {
            values: vec![kv_str("message", "deployed v2"), kv_i64("replicas", 3)],
        })),
    };
    let event = LogRecord {
        time_unix_nano: 1_700_000_000_500_000_000,
        attributes: vec![
            kv_i64(translate::EVENT_CATEGORY, 1_000_000),
            kv_str(translate::EVENT_TYPE, "deployment"),
            kv_str("service", "checkout"),
            KeyValue {
                key: translate::EVENT_PROPERTIES.into(),
                value: Some(props),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let plain = LogRecord {
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue("just a log".into())),
        }),
        ..Default::default()
    };
    let data = Telemetry::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![kv_str("host.name", "node-1")],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: vec![event, plain],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    e.consume(data).await.unwrap();
    let got = d.got.lock().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/v2/event");
    let events = EventUploadMessage::decode(&got[0].body[..]).unwrap().events;
    assert_eq!(events.len(), 1);
    let ev = &events[0];
    assert_eq!(ev.event_type, "deployment");
    assert_eq!(ev.category, Some(1_000_000));
    assert_eq!(ev.timestamp, Some(1_700_000_000_500));
    let dims: Vec<(&str, &str)> = ev.dimensions.iter().map(|d| (d.key(), d.value())).collect();
    assert_eq!(dims, vec![("host.name", "node-1"), ("service", "checkout")]);
    assert_eq!(ev.properties.len(), 2);
    assert_eq!(ev.properties[1].value.as_ref().unwrap().int_value, Some(3));
}

#[tokio::test]
async fn otlp_histograms_go_to_their_own_endpoint() {
    let (d, url) = double().await;
    let rec = TestRecorder::default();
    let e = exporter(&rec, &url, json!({"send_otlp_histograms": true}));
    let hist = Metric {
        name: "latency".into(),
        data: Some(Data::Histogram(Histogram {
            aggregation_temporality: 2,
            data_points: vec![HistogramDataPoint {
                count: 1,
                explicit_bounds: vec![1.0],
                bucket_counts: vec![1, 0],
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    e.consume(Telemetry::Metrics(vec![resource_metrics(
        vec![kv_str("host.name", "h")],
        vec![hist, gauge("g", 1.0, vec![])],
    )]))
    .await
    .unwrap();
    let got = d.got.lock().unwrap();
    let paths: Vec<&str> = got.iter().map(|g| g.path.as_str()).collect();
    assert_eq!(paths, vec!["/v2/datapoint", "/v2/datapoint/otlp"]);
    assert_eq!(
        datapoints(&got[0]).datapoints.len(),
        1,
        "the histogram is not converted"
    );
    let otlp =
        vigil_core::codec::encode::decode_proto_request(Signal::Metrics, &got[1].body).unwrap();
    let Telemetry::Metrics(rms) = otlp else {
        panic!("metrics expected")
    };
    assert_eq!(rms[0].scope_metrics[0].metrics[0].name, "latency");
}

#[test]
fn config_follows_upstream() {
    let f = factory();
    let check = |v: Value| f.validate(&id(), &v).unwrap_err().to_string();
    assert!(check(json!({"realm": "us0"})).contains("access_token"));
    assert!(check(json!({"access_token": "t"})).contains("realm"));
    assert!(
        check(json!({"access_token": "t", "ingest_url": "http://x"})).contains("api_url"),
        "ingest_url without api_url needs a realm"
    );
    assert!(check(
        json!({"access_token": "t", "realm": "us0", "exclude_metrics": [{"metric_name": "/(/"}]})
    )
    .contains("exclude_metrics::0"));
    assert!(check(json!({"access_token": "t", "realm": "us0", "bogus": 1})).contains("bogus"));
    // What Splunk's distribution configs set.
    for ok in [
        json!({"access_token": "t", "realm": "us0", "sync_host_metadata": true, "correlation": null,
               "sending_queue": {"num_consumers": 32}}),
        json!({"access_token": "t", "api_url": "https://api.x", "ingest_url": "https://ingest.x",
               "root_path": "/hostfs", "send_otlp_histograms": true}),
    ] {
        f.validate(&id(), &ok).unwrap();
    }
    let cfg: SignalFxConfig =
        serde_json::from_value(json!({"access_token": "t", "realm": "eu0"})).unwrap();
    assert_eq!(
        cfg.ingest_base(&id()).unwrap().as_str(),
        "https://ingest.eu0.signalfx.com/"
    );
    assert_eq!(cfg.timeout, Duration::from_secs(10));
}

/// The API double's half: `PATCH /v2/dimension/...` with its token and JSON body.
#[derive(Default)]
struct Api {
    answers: Mutex<VecDeque<u16>>,
    got: Mutex<Vec<(String, String, Value)>>,
}

async fn api_handle(
    State(a): State<Arc<Api>>,
    uri: Uri,
    headers: HeaderMap,
    body: AxumBytes,
) -> impl IntoResponse {
    let token = headers
        .get("x-sf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    a.got
        .lock()
        .unwrap()
        .push((uri.path().to_string(), token, json));
    let code = a.answers.lock().unwrap().pop_front().unwrap_or(200);
    (StatusCode::from_u16(code).unwrap(), "{}")
}

#[tokio::test]
async fn host_metadata_is_synced_once_on_the_host_dimension() {
    let (_d, url) = double().await;
    let api = Arc::new(Api::default());
    api.answers.lock().unwrap().push_back(503);
    let app = axum::Router::new()
        .fallback(axum::routing::patch(api_handle))
        .with_state(api.clone());
    let api_url = serve(app).await;
    // A host seen from a container: its /proc and /etc under root_path.
    let root = tempfile::tempdir().unwrap();
    let put = |rel: &str, text: &str| {
        let p = root.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    put(
        "proc/cpuinfo",
        "processor\t: 0\nmodel name\t: Test CPU @ 2.0GHz\n\nprocessor\t: 1\nmodel name\t: Test CPU @ 2.0GHz\n",
    );
    put("proc/meminfo", "MemTotal:       16384 kB\nMemFree:  1 kB\n");
    put("proc/sys/kernel/osrelease", "6.1.0-test\n");
    put("proc/sys/kernel/version", "#1 SMP PREEMPT_DYNAMIC\n");
    put(
        "etc/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nID=debian\n",
    );
    let rec = TestRecorder::default();
    let mut cfg = json!({
        "sync_host_metadata": true,
        "root_path": root.path().to_str().unwrap(),
        "dimension_client": {"send_delay": "10ms"},
    });
    cfg["api_url"] = json!(api_url);
    let e = exporter(&rec, &url, cfg);
    for _ in 0..2 {
        e.consume(Telemetry::Metrics(vec![resource_metrics(
            vec![kv_str("host.name", "node-1")],
            vec![gauge("g", 1.0, vec![])],
        )]))
        .await
        .unwrap();
    }
    // The 503 is tried again after send_delay; then nothing more is sent.
    for _ in 0..200 {
        if api.got.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let got = api.got.lock().unwrap();
    assert_eq!(got.len(), 2, "one update, tried twice");
    let (path, token, body) = &got[1];
    assert_eq!(path, "/v2/dimension/host/node-1/_/sfxagent");
    assert_eq!(token, "tok-config");
    assert_eq!(
        body["customProperties"],
        json!({
            "host_cpu_cores": "2",
            "host_cpu_model": "Test CPU @ 2.0GHz",
            "host_kernel_name": "linux",
            "host_kernel_release": "6.1.0-test",
            "host_kernel_version": "#1 SMP PREEMPT_DYNAMIC",
            "host_linux_version": "Debian GNU/Linux 13 (trixie)",
            "host_logical_cpus": "2",
            "host_machine": std::env::consts::ARCH,
            "host_mem_total": "16384",
            "host_os_name": "debian",
            "host_physical_cpus": "2",
            "host_processor": std::env::consts::ARCH,
        })
    );
}
