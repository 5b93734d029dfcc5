//! The AWS distribution's components against moto's `moto_server`, which speaks CloudWatch Logs'
//! and X-Ray's real protocols, read back with boto3 (tests/python/aws_check.py):
//! - `awsemf` turns OTLP metrics into EMF log events in a log group and stream it creates (names
//!   from resource placeholders), through a proxy that answers 503 to the first `PutLogEvents`
//!   and never answers the next: every event arrives once.
//! - `awsxray` turns spans into segment documents (`PutTraceSegments`), through a proxy that
//!   answers 503 to the first call, and reports its `telemetry` with `PutTelemetryRecords`.
//! - the `awsproxy` extension signs an SDK's unsigned X-Ray call and forwards it to moto, which
//!   routes a request by its signature's service, so the segment it stores was signed for X-Ray.

#[path = "support/moto.rs"]
mod moto;
#[path = "support/otlp_http.rs"]
mod otlp_http;

use moto::{flaky_proxy, moto};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, Span};
use prost::Message;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;
use vigil_tests::{eventually, free_port, python, python_script_json, Agent};

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// One OTLP/HTTP export of gauge `node_cpu_utilization` = `value` on node `node`.
fn post_gauge(http: u16, node: &str, value: f64) {
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("ClusterName", "prod"), kv("NodeName", node)],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "ci".into(),
                    ..Default::default()
                }),
                metrics: vec![Metric {
                    name: "node_cpu_utilization".into(),
                    unit: "%".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            attributes: vec![kv("InstanceId", "i-1")],
                            value: Some(number_data_point::Value::AsDouble(value)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let status = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{http}/v1/metrics"))
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .timeout(Duration::from_secs(10))
        .send()
        .expect("POST /v1/metrics")
        .status();
    assert!(status.is_success(), "vigil answered {status}");
}

/// An X-Ray-compatible trace id (its first four bytes are the time) ending in `n`.
fn trace_id(n: u8) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let mut id = now.to_be_bytes().to_vec();
    id.extend_from_slice(&[0x5a; 11]);
    id.push(n);
    id
}

fn xray_id(id: &[u8]) -> String {
    format!("1-{}-{}", hex(&id[..4]), hex(&id[4..]))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn emf_events_xray_segments_and_the_signing_proxy_reach_moto() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (moto_port, proxy_port, http, health, xproxy) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let t0 = std::time::Instant::now();
    let _moto = moto(moto_port);
    println!("moto up after {:?}", t0.elapsed());
    let endpoint = format!("http://127.0.0.1:{moto_port}");
    let calls = flaky_proxy(
        &rt,
        proxy_port,
        moto_port,
        2,
        1,
        |p| {
            p.headers
                .get("x-amz-target")
                .is_some_and(|t| t == "Logs_20140328.PutLogEvents")
                || p.uri.path() == "/TraceSegments"
        },
        r#"{"__type":"ServiceUnavailableException","message":"try again"}"#,
    );
    // The X-Ray exporter goes through a second front that counts its telemetry records.
    let xray_front = free_port();
    let records = flaky_proxy(
        &rt,
        xray_front,
        proxy_port,
        0,
        0,
        |p| p.uri.path() == "/TelemetryRecords",
        "",
    );

    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
exporters:
  awsemf:
    region: us-east-1
    endpoint: http://127.0.0.1:{proxy_port}
    namespace: ContainerInsights
    log_group_name: '/aws/containerinsights/{{ClusterName}}/performance'
    log_stream_name: '{{NodeName}}'
    log_retention: 7
    resource_to_telemetry_conversion:
      enabled: true
    dimension_rollup_option: NoDimensionRollup
    metric_declarations:
      - dimensions: [[NodeName, InstanceId, ClusterName], [ClusterName]]
        metric_name_selectors: [node_cpu_utilization]
    timeout: 2s
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 300ms
      max_elapsed_time: 0s
  aws_xray:
    region: us-east-1
    endpoint: http://127.0.0.1:{xray_front}
    indexed_attributes: [customer]
    telemetry:
      enabled: true
    aws_log_groups: [/app/cart]
    timeout: 2s
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 300ms
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
  awsproxy:
    endpoint: 127.0.0.1:{xproxy}
    region: us-east-1
    aws_endpoint: {endpoint}
service:
  extensions: [health_check, awsproxy]
  pipelines:
    metrics: {{receivers: [otlp], exporters: [awsemf]}}
    traces: {{receivers: [otlp], exporters: [aws_xray]}}
  telemetry:
    metrics:
      level: none
"
    );
    let cfg = vigil_tests::write_config(dir.path(), "config.yaml", &yaml);
    let mut env = vigil_tests::static_aws_env(dir.path());
    env.push(("VIGIL_XRAY_TELEMETRY_PERIOD_MS", "200".to_string()));
    let mut agent = Agent::start_env(
        tempfile::tempdir().unwrap(),
        &["--config".into(), cfg.display().to_string()],
        &env,
    );
    agent.wait_healthy(health, Duration::from_secs(60));
    println!("vigil up after {:?}", t0.elapsed());

    // Metrics: three exports, each one event; the first PutLogEvents calls are refused or stalled.
    for v in [10.0, 20.0, 30.0] {
        post_gauge(http, "node-1", v);
    }
    // Spans: a server span and its client child, then an X-Ray-incompatible one that is refused.
    let (t1, t2) = (trace_id(1), trace_id(2));
    let spans = vec![
        Span {
            trace_id: t1.clone(),
            span_id: vec![1; 8],
            name: "GET /cart".into(),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: 1_764_930_000_000_000_000,
            end_time_unix_nano: 1_764_930_000_250_000_000,
            attributes: vec![kv("customer", "c-1"), kv("http.request.method", "GET")],
            ..Default::default()
        },
        Span {
            trace_id: t1.clone(),
            span_id: vec![2; 8],
            parent_span_id: vec![1; 8],
            name: "SELECT".into(),
            kind: SpanKind::Client as i32,
            start_time_unix_nano: 1_764_930_000_100_000_000,
            end_time_unix_nano: 1_764_930_000_200_000_000,
            attributes: vec![kv("peer.service", "orders-db")],
            ..Default::default()
        },
        Span {
            trace_id: vec![0xee; 16],
            span_id: vec![3; 8],
            name: "random-id".into(),
            ..Default::default()
        },
    ];
    let status = otlp_http::post_spans(http, "cart", spans);
    assert!(status.is_success(), "vigil answered {status}");

    // An X-Ray SDK's call through the proxy, unsigned as SDKs send it.
    let doc = json!({"name": "sdk-app", "id": "0303030303030303", "trace_id": xray_id(&t2),
                     "start_time": 1_764_930_000.0, "end_time": 1_764_930_001.0})
    .to_string();
    let answer = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{xproxy}/TraceSegments"))
        .header("content-type", "application/json")
        .body(json!({"TraceSegmentDocuments": [doc]}).to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .expect("POST through awsproxy");
    let status = answer.status();
    let body = answer.text().unwrap_or_default();
    assert!(status.is_success(), "awsproxy answered {status}: {body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["UnprocessedTraceSegments"],
        json!([])
    );

    let py = python();
    let group = "/aws/containerinsights/prod/performance";
    let logs = eventually(Duration::from_secs(60), "three EMF events in moto", || {
        let r = python_script_json(
            &py,
            "aws_check.py",
            &[
                "logs",
                "--endpoint",
                &endpoint,
                "--group",
                group,
                "--stream",
                "node-1",
            ],
        );
        (r["events"].as_array().map_or(0, Vec::len) >= 3).then_some(r)
    });
    println!("awsemf after {:?}: {logs}", t0.elapsed());
    assert_eq!(
        logs["retention"], 7,
        "log_retention set on the group it created"
    );
    let events = logs["events"].as_array().unwrap();
    let mut values: Vec<f64> = events
        .iter()
        .map(|e| e["node_cpu_utilization"].as_f64().unwrap())
        .collect();
    values.sort_by(f64::total_cmp);
    assert_eq!(
        values,
        [10.0, 20.0, 30.0],
        "each event once, none lost or doubled"
    );
    let e = &events[0];
    assert_eq!(e["ClusterName"], "prod");
    assert_eq!(e["OTelLib"], "ci");
    let cw = &e["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(cw["Namespace"], "ContainerInsights");
    assert_eq!(
        cw["Dimensions"],
        json!([["ClusterName", "InstanceId", "NodeName"], ["ClusterName"]])
    );
    assert_eq!(
        cw["Metrics"],
        json!([{"Name": "node_cpu_utilization", "Unit": "Percent"}])
    );

    let traces = eventually(Duration::from_secs(60), "the segments in moto", || {
        let ids = format!("{},{}", xray_id(&t1), xray_id(&t2));
        let r = python_script_json(
            &py,
            "aws_check.py",
            &["traces", "--endpoint", &endpoint, "--ids", &ids],
        );
        (r["segments"].as_array().map_or(0, Vec::len) >= 3).then_some(r)
    });
    println!("awsxray after {:?}: {traces}", t0.elapsed());
    let segs = traces["segments"].as_array().unwrap();
    let by_id = |id: &str| {
        segs.iter()
            .find(|s| s["id"] == id)
            .cloned()
            .unwrap_or_default()
    };
    let server = by_id("0101010101010101");
    assert_eq!(server["name"], "cart");
    assert_eq!(server["annotations"], json!({"customer": "c-1"}));
    assert_eq!(
        server["aws"]["cloudwatch_logs"],
        json!([{"log_group": "/app/cart"}])
    );
    let client = by_id("0202020202020202");
    assert_eq!(client["name"], "orders-db");
    assert_eq!(client["type"], "subsegment");
    assert_eq!(client["parent_id"], "0101010101010101");
    assert_eq!(
        by_id("0303030303030303")["name"],
        "sdk-app",
        "stored through awsproxy"
    );
    assert_eq!(segs.len(), 3, "the random trace id was not sent");
    assert!(
        records.load(Ordering::SeqCst) >= 1,
        "telemetry::enabled sends PutTelemetryRecords"
    );
    assert!(
        calls.load(Ordering::SeqCst) >= 7,
        "the front refused 2 calls and stalled 1 before at least 3 PutLogEvents and 1 \
         PutTraceSegments went through"
    );
    agent.stop_ok(Duration::from_secs(30));
}
