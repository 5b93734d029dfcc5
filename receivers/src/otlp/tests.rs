//! End-to-end tests of the receiver: it is started on port 0 with a recording consumer, and real
//! clients talk to it (reqwest for HTTP and raw gRPC frames, the generated tonic clients for gRPC).

use super::config::{self, OtlpConfig};
use super::decode::ExportRequest;
use super::http::RpcStatus;
use super::OtlpReceiver;
use async_trait::async_trait;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::{
    logs::v1::{logs_service_client::LogsServiceClient, ExportLogsServiceRequest},
    metrics::v1::{metrics_service_client::MetricsServiceClient, ExportMetricsServiceRequest},
    trace::v1::{
        trace_service_client::TraceServiceClient, ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    },
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::{json, Value};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tonic::codec::CompressionEncoding;
use vigil_core::testing::{counter, Counters};
use vigil_core::{
    Component, ComponentId, ComponentKind, ConsumeError, Consumer, Host, NextConsumers, Signal,
    Telemetry,
};

/// Records every batch and answers with whatever the test set.
#[derive(Default)]
struct Recorder {
    batches: Mutex<Vec<Telemetry>>,
    answer: Mutex<Option<ConsumeError>>,
}

impl Recorder {
    fn answer(&self, e: ConsumeError) {
        *self.answer.lock().unwrap() = Some(e);
    }
    fn items(&self) -> usize {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .map(|b| b.item_count())
            .sum()
    }
    fn batches(&self) -> Vec<Telemetry> {
        self.batches.lock().unwrap().clone()
    }
}

#[async_trait]
impl Consumer for Recorder {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let answer = self.answer.lock().unwrap().clone();
        match answer {
            Some(e) => Err(e),
            None => {
                self.batches.lock().unwrap().push(data);
                Ok(())
            }
        }
    }
}

/// Holds each batch until released, to test that shutdown waits for in-flight requests.
#[derive(Default)]
struct Gate {
    entered: Notify,
    release: Notify,
}

#[async_trait]
impl Consumer for Gate {
    async fn consume(&self, _data: Telemetry) -> Result<(), ConsumeError> {
        self.entered.notify_one();
        self.release.notified().await;
        Ok(())
    }
}

fn id() -> ComponentId {
    ComponentId::parse("otlp/in").unwrap()
}

fn settings() -> vigil_core::Settings {
    vigil_core::Settings::new(vigil_core::ComponentKind::Receiver, &id())
}

fn both_on_port_0() -> Value {
    json!({"protocols": {
        "grpc": {"endpoint": "127.0.0.1:0"},
        "http": {"endpoint": "127.0.0.1:0"},
    }})
}

struct Harness {
    receiver: OtlpReceiver,
    recorder: Arc<Recorder>,
    grpc: SocketAddr,
    http: SocketAddr,
}

impl Harness {
    async fn start(config: Value, signals: &[Signal]) -> Harness {
        let recorder = Arc::new(Recorder::default());
        let mut next = NextConsumers::new();
        for s in signals {
            next.insert(*s, recorder.clone());
        }
        Harness::start_with(config, next, recorder).await
    }

    async fn start_with(config: Value, next: NextConsumers, recorder: Arc<Recorder>) -> Harness {
        let cfg = config::load(&id(), &config).unwrap();
        let receiver = OtlpReceiver::new(settings(), cfg, next);
        receiver.start(&Host::detached()).await.unwrap();
        let (grpc, http) = receiver.local_addrs();
        Harness {
            receiver,
            recorder,
            grpc: grpc.unwrap(),
            http: http.unwrap(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    async fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

fn traces(n: usize) -> ExportTraceServiceRequest {
    let spans = (0..n)
        .map(|i| Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: format!("op{i}"),
            kind: SpanKind::Server as i32,
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metrics_req(points: usize) -> ExportMetricsServiceRequest {
    let data_points = (0..points)
        .map(|i| NumberDataPoint {
            time_unix_nano: i as u64,
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "g".into(),
                    data: Some(metric::Data::Gauge(Gauge { data_points })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs_req(records: usize) -> ExportLogsServiceRequest {
    let log_records = (0..records)
        .map(|i| LogRecord {
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!("line {i}"))),
            }),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Decodes a protobuf `google.rpc.Status` error body.
async fn pb_status(resp: reqwest::Response) -> RpcStatus {
    assert_eq!(
        resp.headers()["content-type"],
        "application/x-protobuf",
        "error body must use the request's content type"
    );
    RpcStatus::decode(resp.bytes().await.unwrap()).unwrap()
}

async fn json_body(resp: reqwest::Response) -> Value {
    assert_eq!(resp.headers()["content-type"], "application/json");
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
}

// ---------- gRPC ----------

#[tokio::test]
async fn grpc_all_signals_reach_the_pipeline() {
    let h = Harness::start(both_on_port_0(), &Signal::ALL).await;
    let resp = TraceServiceClient::connect(h.grpc_url())
        .await
        .unwrap()
        .export(traces(3))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.partial_success, None);
    MetricsServiceClient::connect(h.grpc_url())
        .await
        .unwrap()
        .export(metrics_req(2))
        .await
        .unwrap();
    LogsServiceClient::connect(h.grpc_url())
        .await
        .unwrap()
        .export(logs_req(4))
        .await
        .unwrap();
    let batches = h.recorder.batches();
    let signals: Vec<_> = batches.iter().map(|b| b.signal()).collect();
    assert_eq!(signals, [Signal::Traces, Signal::Metrics, Signal::Logs]);
    assert_eq!(h.recorder.items(), 3 + 2 + 4);
    let Telemetry::Traces(rs) = &batches[0] else {
        unreachable!()
    };
    assert_eq!(rs[0].scope_spans[0].spans[2].name, "op2");
    h.receiver.shutdown().await.unwrap();
}

#[tokio::test]
async fn grpc_accepts_gzip_and_zstd() {
    let h = Harness::start(both_on_port_0(), &[Signal::Traces]).await;
    for enc in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
        TraceServiceClient::connect(h.grpc_url())
            .await
            .unwrap()
            .send_compressed(enc)
            .export(traces(2))
            .await
            .unwrap();
    }
    assert_eq!(h.recorder.items(), 4);
}

#[tokio::test]
async fn grpc_signal_without_pipeline_is_unimplemented() {
    let h = Harness::start(both_on_port_0(), &[Signal::Traces]).await;
    let err = LogsServiceClient::connect(h.grpc_url())
        .await
        .unwrap()
        .export(logs_req(1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{err:?}");
}

#[tokio::test]
async fn grpc_maps_pipeline_errors() {
    let h = Harness::start(both_on_port_0(), &[Signal::Traces]).await;
    let mut client = TraceServiceClient::connect(h.grpc_url()).await.unwrap();

    h.recorder.answer(ConsumeError::retryable("queue is full"));
    let err = client.export(traces(2)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert_eq!(err.message(), "queue is full");

    h.recorder
        .answer(ConsumeError::permanent("spans have no trace id", 2));
    let err = client.export(traces(2)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(err.message(), "spans have no trace id");

    h.recorder
        .answer(ConsumeError::permanent("one span is too old", 1));
    let resp = client.export(traces(3)).await.unwrap().into_inner();
    let partial = resp.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 1);
    assert_eq!(partial.error_message, "one span is too old");
}

/// Sends one raw gRPC frame to `path`, so that malformed and oversize messages can be tested.
async fn raw_grpc(
    addr: SocketAddr,
    path: &str,
    payload: &[u8],
    declared_len: u32,
) -> tonic::Status {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&declared_len.to_be_bytes());
    frame.extend_from_slice(payload);
    let resp = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(frame)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    tonic::Status::from_header_map(resp.headers()).expect("a trailers-only error answer")
}

#[tokio::test]
async fn grpc_malformed_message_is_invalid_argument() {
    let h = Harness::start(both_on_port_0(), &[Signal::Traces]).await;
    // Field 1 (resource_spans) holding bytes that are not a valid ResourceSpans.
    let payload = [0x0a, 0x03, 0x61, 0x62, 0x63];
    let st = raw_grpc(
        h.grpc,
        ExportTraceServiceRequest::GRPC_PATH,
        &payload,
        payload.len() as u32,
    )
    .await;
    assert_eq!(st.code(), tonic::Code::InvalidArgument, "{st:?}");
    assert!(
        st.message()
            .starts_with("failed to decode protobuf ExportTraceServiceRequest: "),
        "{st:?}"
    );
    assert_eq!(h.recorder.items(), 0);
}

#[tokio::test]
async fn grpc_oversize_message_is_resource_exhausted_not_retryable() {
    let mut cfg = both_on_port_0();
    cfg["protocols"]["grpc"]["max_recv_msg_size_mib"] = json!(1);
    let h = Harness::start(cfg, &[Signal::Traces]).await;
    let st = raw_grpc(
        h.grpc,
        ExportTraceServiceRequest::GRPC_PATH,
        &[],
        2 * 1024 * 1024,
    )
    .await;
    assert_eq!(st.code(), tonic::Code::ResourceExhausted, "{st:?}");
    assert!(st.message().contains("too large"), "{st:?}");
}

// ---------- HTTP ----------

#[tokio::test]
async fn http_protobuf_all_signals() {
    let h = Harness::start(both_on_port_0(), &Signal::ALL).await;
    let resp = h
        .post(
            "/v1/traces",
            "application/x-protobuf",
            traces(3).encode_to_vec(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let body = ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body.partial_success, None);
    let resp = h
        .post(
            "/v1/metrics",
            "application/x-protobuf",
            metrics_req(2).encode_to_vec(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let resp = h
        .post(
            "/v1/logs",
            "application/x-protobuf",
            logs_req(5).encode_to_vec(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(h.recorder.items(), 10);
}

const JSON_TRACE: &str = r#"{"resourceSpans":[{"resource":{"attributes":[
    {"key":"service.name","value":{"stringValue":"checkout"}}]},
  "scopeSpans":[{"scope":{"name":"lib"},"spans":[
    {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
     "name":"GET /","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1700000000000000000",
     "endTimeUnixNano":1700000000000000001,"status":{"code":"STATUS_CODE_OK"},
     "attributes":[{"key":"n","value":{"intValue":"42"}}],"someFutureField":true},
    {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175",
     "name":"db","kind":3}]}]}]}"#;

#[tokio::test]
async fn http_json_with_enum_names_and_string_ints() {
    let h = Harness::start(both_on_port_0(), &[Signal::Traces]).await;
    let resp = h
        .post(
            "/v1/traces",
            "application/json; charset=utf-8",
            JSON_TRACE.into(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json_body(resp).await, json!({}));
    let batches = h.recorder.batches();
    let Telemetry::Traces(rs) = &batches[0] else {
        unreachable!()
    };
    let spans = &rs[0].scope_spans[0].spans;
    assert_eq!(spans[0].kind, SpanKind::Server as i32);
    assert_eq!(spans[1].kind, SpanKind::Client as i32);
    assert_eq!(spans[0].start_time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(spans[0].end_time_unix_nano, 1_700_000_000_000_000_001);
    assert_eq!(
        hex::encode(&spans[0].trace_id),
        "5b8efff798038103d269b633813fc60c"
    );
}

#[tokio::test]
async fn http_gzip_zstd_and_deflate_bodies() {
    let h = Harness::start(both_on_port_0(), &[Signal::Traces]).await;
    let pb = traces(2).encode_to_vec();
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zlib.write_all(&pb).unwrap();
    let cases = [
        ("gzip", "application/x-protobuf", gzip(&pb)),
        (
            "zstd",
            "application/json",
            zstd::encode_all(JSON_TRACE.as_bytes(), 3).unwrap(),
        ),
        ("deflate", "application/x-protobuf", zlib.finish().unwrap()),
    ];
    for (encoding, ct, body) in cases {
        let resp = reqwest::Client::new()
            .post(h.url("/v1/traces"))
            .header("content-type", ct)
            .header("content-encoding", encoding)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{encoding}");
    }
    assert_eq!(h.recorder.items(), 6);
}

/// confighttp's server keys: `response_headers` on every answer (a 404 too), `compression_algorithms`
/// refusing an encoding left out of the list, `keep_alives_enabled: false` closing the connection.
#[tokio::test]
async fn http_response_headers_compression_list_and_keep_alives() {
    let cfg = json!({"protocols": {"http": {
        "endpoint": "127.0.0.1:0",
        "response_headers": {"x-served-by": "vigil"},
        "compression_algorithms": ["", "zstd"],
        "keep_alives_enabled": false,
        "read_timeout": "10s",
        "write_timeout": "30s",
    }}});
    let cfg = config::load(&id(), &cfg).unwrap();
    let mut next = NextConsumers::new();
    let recorder = Arc::new(Recorder::default());
    next.insert(Signal::Traces, recorder.clone());
    let receiver = OtlpReceiver::new(settings(), cfg, next);
    receiver.start(&Host::detached()).await.unwrap();
    let url = |p: &str| format!("http://{}{p}", receiver.local_addrs().1.unwrap());
    let pb = traces(1).encode_to_vec();
    let client = reqwest::Client::new();
    let send = |encoding: Option<&'static str>, body: Vec<u8>| {
        let mut r = client
            .post(url("/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(body);
        if let Some(e) = encoding {
            r = r.header("content-encoding", e);
        }
        r.send()
    };
    let ok = send(None, pb.clone()).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-served-by"], "vigil");
    assert_eq!(ok.headers()["connection"], "close");
    let z = send(Some("zstd"), zstd::encode_all(&pb[..], 3).unwrap())
        .await
        .unwrap();
    assert_eq!(z.status(), 200);
    let refused = send(Some("gzip"), gzip(&pb)).await.unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(refused.headers()["x-served-by"], "vigil");
    let missing = client.get(url("/nowhere")).send().await.unwrap();
    assert_eq!(missing.headers()["x-served-by"], "vigil");
    assert_eq!(recorder.items(), 2);
    let bad = json!({"protocols": {"http": {"compression_algorithms": ["brotli"]}}});
    let e = config::load(&id(), &bad).unwrap_err();
    assert!(e.to_string().contains("compression_algorithms::0"), "{e}");
}

#[tokio::test]
async fn http_bad_inputs_get_the_spec_codes_and_messages() {
    let mut cfg = both_on_port_0();
    cfg["protocols"]["http"]["max_request_body_size"] = json!(4096);
    let h = Harness::start(cfg, &[Signal::Traces]).await;
    let client = reqwest::Client::new();

    // Malformed protobuf: 400 with a google.rpc.Status protobuf body.
    let resp = h
        .post("/v1/traces", "application/x-protobuf", vec![0x0a, 0x03, 1])
        .await;
    assert_eq!(resp.status(), 400);
    let st = pb_status(resp).await;
    assert_eq!(st.code, tonic::Code::InvalidArgument as i32);
    assert!(
        st.message
            .starts_with("failed to decode protobuf ExportTraceServiceRequest: "),
        "{st:?}"
    );

    // Malformed JSON: 400 with the Status in JSON.
    let resp = h
        .post(
            "/v1/traces",
            "application/json",
            b"{\"resourceSpans\":[".to_vec(),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let body = json_body(resp).await;
    assert_eq!(body["code"], 3);
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.starts_with("failed to decode JSON ExportTraceServiceRequest: "),
        "{msg}"
    );

    // Wrong type inside valid JSON: the message names the offending value.
    let resp = h
        .post(
            "/v1/traces",
            "application/json",
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#.to_vec(),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let msg = json_body(resp).await["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("invalid character 'z'"), "{msg}");

    // Unsupported media type: 415, plain text, naming what is supported.
    let resp = h.post("/v1/traces", "text/plain", b"hi".to_vec()).await;
    assert_eq!(resp.status(), 415);
    let text = resp.text().await.unwrap();
    assert_eq!(
        text,
        "415 unsupported media type \"text/plain\", supported: [application/json, application/x-protobuf]"
    );

    // Wrong method: 405 with Allow.
    let resp = client.get(h.url("/v1/traces")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    assert_eq!(
        resp.text().await.unwrap(),
        "405 method not allowed: GET, supported: [POST]"
    );

    // Unknown path: 404.
    let resp = h
        .post("/v1/trace", "application/x-protobuf", Vec::new())
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.text().await.unwrap(), "404 page not found: /v1/trace");

    // A signal with no pipeline: 404 naming the receiver.
    let resp = h
        .post("/v1/logs", "application/x-protobuf", Vec::new())
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        pb_status(resp).await.message,
        "receiver otlp/in has no logs pipeline"
    );

    // Body over the limit: 413, whether Content-Length says so or not.
    let resp = h
        .post("/v1/traces", "application/x-protobuf", vec![0; 5000])
        .await;
    assert_eq!(resp.status(), 413);
    assert_eq!(
        pb_status(resp).await.message,
        "request body is larger than the limit of 4096 bytes"
    );
    // Chunked, so no Content-Length warns us: the limit is enforced while reading.
    assert_eq!(
        chunked_post_status(h.http, "/v1/traces", &[3000, 3000]).await,
        413
    );
    assert_eq!(chunked_post_status(h.http, "/v1/traces", &[0]).await, 200);

    // A small gzip body that expands past the limit: 413, not an out-of-memory.
    let bomb = gzip(&vec![0u8; 1_000_000]);
    assert!(bomb.len() < 4096);
    let resp = client
        .post(h.url("/v1/traces"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        json_body(resp).await["message"],
        "request body is larger than the limit of 4096 bytes"
    );

    // Truncated gzip: 400.
    let gz = gzip(&traces(3).encode_to_vec());
    let resp = client
        .post(h.url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gz[..gz.len() / 2].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        pb_status(resp).await.message,
        "failed to decompress gzip body: unexpected end of stream (truncated?)"
    );

    // Unknown Content-Encoding: 415 naming it.
    let resp = client
        .post(h.url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "br")
        .body(vec![1, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    assert!(pb_status(resp).await.message.contains("\"br\""));

    assert_eq!(h.recorder.items(), 0, "nothing bad reached the pipeline");
}

/// Posts zero-filled chunks with `Transfer-Encoding: chunked` over a raw connection and returns the
/// status code. (An empty body is a valid, empty protobuf request.)
async fn chunked_post_status(addr: SocketAddr, path: &str, chunks: &[usize]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    for &n in chunks.iter().filter(|&&n| n > 0) {
        req.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        req.extend(std::iter::repeat_n(0u8, n));
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    // The server may answer 413 and close before it has read everything; that is fine.
    let _ = conn.write_all(&req).await;
    let mut resp = Vec::new();
    let _ = conn.read_to_end(&mut resp).await;
    let text = String::from_utf8_lossy(&resp);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn http_retryable_is_503_with_retry_after() {
    let h = Harness::start(both_on_port_0(), &[Signal::Traces]).await;
    h.recorder.answer(ConsumeError::Retryable {
        reason: "memory limit reached".into(),
        retry_after: Some(Duration::from_millis(2500)),
    });
    let resp = h
        .post("/v1/traces", "application/json", JSON_TRACE.into())
        .await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "3");
    let body = json_body(resp).await;
    assert_eq!(
        body,
        json!({"code": tonic::Code::Unavailable as i32, "message": "memory limit reached"})
    );

    h.recorder.answer(ConsumeError::retryable("queue is full"));
    let resp = h
        .post(
            "/v1/traces",
            "application/x-protobuf",
            traces(1).encode_to_vec(),
        )
        .await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(pb_status(resp).await.message, "queue is full");
}

#[tokio::test]
async fn http_permanent_errors_and_partial_success() {
    let h = Harness::start(both_on_port_0(), &[Signal::Traces, Signal::Logs]).await;

    h.recorder
        .answer(ConsumeError::permanent("2 spans are invalid", 2));
    let resp = h
        .post("/v1/traces", "application/json", JSON_TRACE.into())
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(json_body(resp).await["message"], "2 spans are invalid");

    h.recorder
        .answer(ConsumeError::permanent("1 span is invalid", 1));
    let resp = h
        .post("/v1/traces", "application/json", JSON_TRACE.into())
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        json_body(resp).await,
        json!({"partialSuccess": {"rejectedSpans": "1", "errorMessage": "1 span is invalid"}})
    );

    h.recorder
        .answer(ConsumeError::permanent("2 records are invalid", 2));
    let resp = h
        .post(
            "/v1/logs",
            "application/x-protobuf",
            logs_req(5).encode_to_vec(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse::decode(
        resp.bytes().await.unwrap(),
    )
    .unwrap();
    let partial = body.partial_success.unwrap();
    assert_eq!(partial.rejected_log_records, 2);
    assert_eq!(partial.error_message, "2 records are invalid");
}

#[tokio::test]
async fn http_custom_paths_and_cors_preflight() {
    let cfg = json!({"protocols": {"http": {
        "endpoint": "127.0.0.1:0",
        "traces_url_path": "/custom/traces",
        "cors": {"allowed_origins": ["https://*.test.com"], "allowed_headers": ["X-Tenant"], "max_age": 600},
    }}});
    let cfg = config::load(&id(), &cfg).unwrap();
    let recorder = Arc::new(Recorder::default());
    let mut next = NextConsumers::new();
    next.insert(Signal::Traces, recorder.clone());
    let receiver = OtlpReceiver::new(settings(), cfg, next);
    receiver.start(&Host::detached()).await.unwrap();
    let addr = receiver.local_addrs().1.unwrap();
    let client = reqwest::Client::new();

    let preflight = |origin: &'static str| {
        client
            .request(
                reqwest::Method::OPTIONS,
                format!("http://{addr}/custom/traces"),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,x-tenant")
            .send()
    };
    let resp = preflight("https://app.test.com").await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let headers = resp.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.test.com"
    );
    assert_eq!(headers["access-control-max-age"], "600");
    let allowed = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(
        allowed.contains("x-tenant") && allowed.contains("content-type"),
        "{allowed}"
    );

    let resp = preflight("https://evil.example").await.unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    let resp = client
        .post(format!("http://{addr}/custom/traces"))
        .header("content-type", "application/x-protobuf")
        .header("origin", "https://app.test.com")
        .body(traces(1).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.test.com"
    );
    // The default path is gone once a custom one is configured.
    let resp = client
        .post(format!("http://{addr}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(recorder.items(), 1);
    receiver.shutdown().await.unwrap();
}

// ---------- lifecycle and telemetry ----------

#[tokio::test]
async fn a_port_in_use_names_the_component_and_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = json!({"protocols": {"grpc": {"endpoint": format!("127.0.0.1:{port}")}}});
    let cfg = config::load(&id(), &cfg).unwrap();
    let receiver = OtlpReceiver::new(settings(), cfg, NextConsumers::new());
    let err = receiver
        .start(&Host::detached())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("receivers::otlp/in: "), "{err}");
    assert!(err.contains(&port.to_string()), "{err}");
    assert!(err.contains("already in use"), "{err}");
}

#[tokio::test]
async fn shutdown_stops_accepting_and_finishes_in_flight_requests() {
    let gate = Arc::new(Gate::default());
    let mut next = NextConsumers::new();
    next.insert(Signal::Traces, gate.clone());
    let h = Arc::new(Harness::start_with(both_on_port_0(), next, Arc::default()).await);

    let url = h.url("/v1/traces");
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .header("content-type", "application/x-protobuf")
            .body(traces(1).encode_to_vec())
            .send()
            .await
            .map(|r| r.status())
    });
    gate.entered.notified().await;

    let h2 = Arc::clone(&h);
    let stopping = tokio::spawn(async move { h2.receiver.shutdown().await });
    // Poll rather than sleep a fixed time: the listener closes once the stop signal is seen.
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(h.http).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "the HTTP listener still accepts after shutdown began"
    );
    assert!(
        !stopping.is_finished(),
        "shutdown returned before the in-flight request finished"
    );

    gate.release.notify_one();
    assert_eq!(in_flight.await.unwrap().unwrap(), 200);
    stopping.await.unwrap().unwrap();
}

#[tokio::test]
async fn counters_by_signal_and_transport() {
    use metrics_util::debugging::DebuggingRecorder;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let sink = Arc::new(Recorder::default());
    let mut next = NextConsumers::new();
    next.insert(Signal::Traces, sink.clone());
    next.insert(Signal::Logs, sink.clone());
    let cfg = config::load(&id(), &both_on_port_0()).unwrap();
    // Handles are registered at creation, so creating under the local recorder binds them to it.
    let receiver =
        metrics::with_local_recorder(&recorder, || OtlpReceiver::new(settings(), cfg, next));
    receiver.start(&Host::detached()).await.unwrap();
    let (grpc, http) = receiver.local_addrs();
    let (grpc, http) = (grpc.unwrap(), http.unwrap());

    TraceServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap()
        .export(traces(3))
        .await
        .unwrap();
    let post = |body: Vec<u8>| {
        reqwest::Client::new()
            .post(format!("http://{http}/v1/logs"))
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
    };
    assert_eq!(
        post(logs_req(4).encode_to_vec()).await.unwrap().status(),
        200
    );
    sink.answer(ConsumeError::permanent("bad", 1));
    assert_eq!(
        post(logs_req(5).encode_to_vec()).await.unwrap().status(),
        200
    );
    sink.answer(ConsumeError::retryable("full"));
    assert_eq!(
        post(logs_req(2).encode_to_vec()).await.unwrap().status(),
        503
    );

    // A snapshot resets the debugging recorder's counters, so take exactly one.
    let snapshot = Counters::take(&snapshotter);
    let value = |name: &str, transport: &str| -> u64 {
        snapshot
            .find(name, &[("transport", transport), ("receiver", "otlp/in")])
            .unwrap_or_else(|| panic!("no counter {name}{{transport={transport}}}"))
    };
    assert_eq!(value("otelcol_receiver_accepted_spans", "grpc"), 3);
    assert_eq!(value("otelcol_receiver_accepted_spans", "http"), 0);
    assert_eq!(
        value("otelcol_receiver_accepted_log_records", "http"),
        4 + 4
    );
    assert_eq!(value("otelcol_receiver_refused_log_records", "http"), 1 + 2);
    assert_eq!(value("otelcol_receiver_refused_spans", "grpc"), 0);
    receiver.shutdown().await.unwrap();
}

// ---------- config ----------

#[test]
fn defaults_match_otelcol() {
    let cfg: OtlpConfig =
        config::load(&id(), &json!({"protocols": {"grpc": null, "http": {}}})).unwrap();
    let g = cfg.protocols.grpc.unwrap();
    assert_eq!(g.endpoint, "localhost:4317");
    assert_eq!(g.max_recv_bytes(), 4 * 1024 * 1024);
    let h = cfg.protocols.http.unwrap();
    assert_eq!(h.endpoint, "localhost:4318");
    assert_eq!(
        (
            h.traces_url_path.as_str(),
            h.metrics_url_path.as_str(),
            h.logs_url_path.as_str()
        ),
        ("/v1/traces", "/v1/metrics", "/v1/logs")
    );
    assert_eq!(h.max_body_bytes(), 20 * 1024 * 1024);

    let only_http = config::load(&id(), &json!({"protocols": {"http": null}})).unwrap();
    assert!(only_http.protocols.grpc.is_none());
}

#[test]
fn bad_endpoint_names_the_key_path() {
    let e = config::load(
        &id(),
        &json!({"protocols": {"grpc": {"endpoint": "0.0.0.0:99999"}}}),
    )
    .unwrap_err();
    assert_eq!(e.location, "receivers::otlp/in");
    assert!(e.to_string().starts_with(
        "receivers::otlp/in::protocols::grpc::endpoint: invalid endpoint \"0.0.0.0:99999\": port 99999 is out of range"
    ), "{e}");
    assert_eq!(
        ComponentKind::Receiver.section(),
        e.location.split("::").next().unwrap()
    );
}

// ---------- amplification ----------

fn varint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn wrap(field: u8, inner: &[u8]) -> Vec<u8> {
    let mut out = vec![(field << 3) | 2];
    varint(inner.len(), &mut out);
    out.extend_from_slice(inner);
    out
}

/// An `ExportTraceServiceRequest` of `n` empty spans, written as wire bytes: building it with prost
/// would spend on the client the memory the test is about.
fn empty_spans_wire(n: usize) -> Vec<u8> {
    let spans = [0x12u8, 0x00].repeat(n);
    // Request { resource_spans: [ResourceSpans { scope_spans: [ScopeSpans { spans }] }] }
    wrap(1, &wrap(2, &spans))
}

/// A small compressed body that decodes to a million empty spans (about 270 MB of structs) is
/// refused before decoding, on both transports and in both encodings, and counted; a normal request
/// still goes through. Before the decoded size was bounded, each of these answered 200/OK.
#[tokio::test]
async fn a_body_of_empty_spans_is_refused_before_it_is_decoded() {
    use metrics_util::debugging::DebuggingRecorder;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let sink = Arc::new(Recorder::default());
    let mut next = NextConsumers::new();
    next.insert(Signal::Traces, sink.clone());
    let cfg = config::load(&id(), &both_on_port_0()).unwrap();
    let receiver =
        metrics::with_local_recorder(&recorder, || OtlpReceiver::new(settings(), cfg, next));
    receiver.start(&Host::detached()).await.unwrap();
    let (grpc, http) = receiver.local_addrs();
    let (grpc, http) = (grpc.unwrap(), http.unwrap());

    let wire = empty_spans_wire(1_000_000);
    let body = gzip(&wire);
    assert!(body.len() < 20_000, "{} bytes", body.len());
    let resp = reqwest::Client::new()
        .post(format!("http://{http}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let st = pb_status(resp).await;
    assert_eq!(st.code, tonic::Code::ResourceExhausted as i32);
    assert!(st.message.contains("once decoded"), "{}", st.message);

    let json_body = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}{{}}]}}]}}]}}"#,
        "{},".repeat(999_999)
    );
    let resp = reqwest::Client::new()
        .post(format!("http://{http}/v1/traces"))
        .header("content-type", "application/json")
        .body(json_body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);

    let st = raw_grpc(
        grpc,
        ExportTraceServiceRequest::GRPC_PATH,
        &wire,
        wire.len() as u32,
    )
    .await;
    assert_eq!(st.code(), tonic::Code::ResourceExhausted, "{st:?}");
    assert_eq!(sink.items(), 0);

    // A normal request of the same number of bytes is served on both transports.
    let normal = traces(50_000);
    assert!(normal.encoded_len() > wire.len() / 2);
    TraceServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap()
        .export(normal.clone())
        .await
        .unwrap();
    let resp = reqwest::Client::new()
        .post(format!("http://{http}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(normal.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(sink.items(), 100_000);

    // One snapshot: taking one resets the counters it reads.
    let snapshot = Counters::take(&snapshotter);
    let too_large = |transport: &str| {
        snapshot.find(
            "vigil_receiver_requests_too_large",
            &[("transport", transport)],
        )
    };
    assert_eq!(too_large("http"), Some(2));
    assert_eq!(too_large("grpc"), Some(1));
    receiver.shutdown().await.unwrap();
}

/// The estimate stays close to what legitimate requests take, so that they are not refused: a
/// request of spans with attributes is estimated at a small multiple of its protobuf size, and the
/// JSON and protobuf estimates of one request agree within a factor of two.
#[test]
fn decoded_estimates_of_normal_requests() {
    use super::decoded;
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    let mut req = traces(1000);
    for s in &mut req.resource_spans[0].scope_spans[0].spans {
        s.attributes = (0..8)
            .map(|i| KeyValue {
                key: format!("attribute.{i}"),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(format!("value {i}"))),
                }),
                ..Default::default()
            })
            .collect();
    }
    let wire = req.encode_to_vec();
    let pb = decoded::protobuf(Signal::Traces, &wire, usize::MAX).unwrap();
    let ratio = pb as f64 / wire.len() as f64;
    assert!(
        (1.0..16.0).contains(&ratio),
        "protobuf estimate {pb} for {} bytes",
        wire.len()
    );
    let json = serde_json::to_vec(&req).unwrap();
    let js = decoded::json(&json, usize::MAX).unwrap();
    assert!(js > pb / 2 && js < pb * 2, "json {js} vs protobuf {pb}");
    // Over the limit, the walk stops with an error rather than a number.
    assert!(decoded::protobuf(Signal::Traces, &wire, pb - 1).is_err());
    assert!(decoded::json(&json, js - 1).is_err());
}

// ---------- connections ----------

/// A request whose headers never complete is closed after `read_header_timeout`, and so is a
/// connection that never sends anything, on both listeners. Before the listeners had timeouts, such
/// a connection stayed open indefinitely (over 100 s in the security review).
#[tokio::test]
async fn a_half_sent_request_is_closed_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cfg = both_on_port_0();
    cfg["protocols"]["http"]["read_header_timeout"] = json!("200ms");
    cfg["protocols"]["grpc"]["max_connections"] = json!(4);
    let h = Harness::start(cfg, &[Signal::Traces]).await;
    let mut half = tokio::net::TcpStream::connect(h.http).await.unwrap();
    half.write_all(
        b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n",
    )
    .await
    .unwrap();
    let mut silent = tokio::net::TcpStream::connect(h.http).await.unwrap();
    for sock in [&mut half, &mut silent] {
        let mut rest = Vec::new();
        // The bound only keeps a broken build from hanging the test run; the timeout is 200 ms.
        let closed =
            tokio::time::timeout(Duration::from_secs(60), sock.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the connection is still open");
    }
    // The listener still serves.
    let resp = h
        .post(
            "/v1/traces",
            "application/x-protobuf",
            traces(1).encode_to_vec(),
        )
        .await;
    assert_eq!(resp.status(), 200);
}

/// At `max_connections`, idle sockets are closed to make room, so a client with something to send
/// is served however many idle sockets are open, on both transports.
#[tokio::test]
async fn idle_sockets_do_not_stop_a_normal_client() {
    use metrics_util::debugging::DebuggingRecorder;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut cfg = both_on_port_0();
    cfg["protocols"]["http"]["max_connections"] = json!(8);
    cfg["protocols"]["grpc"]["max_connections"] = json!(8);
    let sink = Arc::new(Recorder::default());
    let mut next = NextConsumers::new();
    next.insert(Signal::Traces, sink.clone());
    let cfg = config::load(&id(), &cfg).unwrap();
    let receiver =
        metrics::with_local_recorder(&recorder, || OtlpReceiver::new(settings(), cfg, next));
    receiver.start(&Host::detached()).await.unwrap();
    let (grpc, http) = receiver.local_addrs();
    let (grpc, http) = (grpc.unwrap(), http.unwrap());
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(tokio::net::TcpStream::connect(http).await.unwrap());
        idle.push(tokio::net::TcpStream::connect(grpc).await.unwrap());
    }
    let resp = reqwest::Client::new()
        .post(format!("http://{http}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(traces(2).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    TraceServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap()
        .export(traces(3))
        .await
        .unwrap();
    assert_eq!(sink.items(), 5);
    let evicted = counter(&snapshotter, "vigil_listener_connections_evicted", &[]);
    // 100 idle sockets and 2 clients into 2 listeners of 8 slots each.
    assert!(evicted >= 100 - 16, "{evicted} evicted");
    drop(idle);
    receiver.shutdown().await.unwrap();
}

// ---------- TLS ----------

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all made for the test.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client_pem: String,
    client_key: String,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "vigil test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&server_key, &ca, &ca_key)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params
            .distinguished_name
            .push(DnType::CommonName, "vigil test client");
        let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), server.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).unwrap();
        Pki {
            dir,
            ca_pem: ca.pem(),
            client_pem: client.pem(),
            client_key: client_key.serialize_pem(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    fn tls(&self, mutual: bool) -> Value {
        let mut t =
            json!({"cert_file": self.path("server.pem"), "key_file": self.path("server.key")});
        if mutual {
            t["client_ca_file"] = json!(self.path("ca.pem"));
        }
        t
    }

    fn client(&self, with_cert: bool, http2: bool) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap());
        if with_cert {
            let pem = format!("{}{}", self.client_pem, self.client_key);
            b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        if http2 {
            b = b.http2_prior_knowledge();
        }
        b.build().unwrap()
    }
}

/// Under mutual TLS both listeners serve a client with a certificate the CA signed, and refuse one
/// without a certificate at the handshake; a plaintext client is refused too.
#[tokio::test]
async fn mutual_tls_on_both_transports() {
    let pki = Pki::new();
    let mut cfg = both_on_port_0();
    cfg["protocols"]["http"]["tls"] = pki.tls(true);
    cfg["protocols"]["grpc"]["tls"] = pki.tls(true);
    let h = Harness::start(cfg, &[Signal::Traces]).await;
    let body = traces(2).encode_to_vec();
    let post = |client: reqwest::Client, url: String, body: Vec<u8>| async move {
        client
            .post(url)
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
    };
    let https = format!("https://{}/v1/traces", h.http);
    let resp = post(pki.client(true, false), https.clone(), body.clone())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(post(pki.client(false, false), https.clone(), body.clone())
        .await
        .is_err());
    assert!(
        post(reqwest::Client::new(), h.url("/v1/traces"), body.clone())
            .await
            .is_err()
    );

    // gRPC: one raw frame over HTTP/2 with TLS.
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    let grpc = |client: reqwest::Client| {
        client
            .post(format!(
                "https://{}{}",
                h.grpc,
                ExportTraceServiceRequest::GRPC_PATH
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(frame.clone())
            .send()
    };
    let resp = grpc(pki.client(true, true)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("grpc-status"), None, "{resp:?}");
    let _ = resp.bytes().await;
    assert!(grpc(pki.client(false, true)).await.is_err());
    assert_eq!(h.recorder.items(), 4);
}

/// Without `client_ca_file`, any client that trusts the CA is served.
#[tokio::test]
async fn server_tls_without_client_certificates() {
    let pki = Pki::new();
    let mut cfg = json!({"protocols": {"http": {"endpoint": "127.0.0.1:0"}}});
    cfg["protocols"]["http"]["tls"] = pki.tls(false);
    cfg["protocols"]["http"]["tls"]["min_version"] = json!("1.3");
    let config = config::load(&id(), &cfg).unwrap();
    let recorder = Arc::new(Recorder::default());
    let mut next = NextConsumers::new();
    next.insert(Signal::Traces, recorder.clone());
    let receiver = OtlpReceiver::new(settings(), config, next);
    receiver.start(&Host::detached()).await.unwrap();
    let http = receiver.local_addrs().1.unwrap();
    let resp = pki
        .client(false, false)
        .post(format!("https://{http}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(traces(1).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(recorder.items(), 1);
    // A key that is not the certificate's fails validation, naming the key.
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(pki.path("other.key"), other.serialize_pem()).unwrap();
    cfg["protocols"]["http"]["tls"]["key_file"] = json!(pki.path("other.key"));
    let e = config::load(&id(), &cfg).unwrap_err().to_string();
    assert!(e.contains("protocols::http::tls::key_file"), "{e}");
    receiver.shutdown().await.unwrap();
}

// ---------- authentication ----------

/// A server authenticator that accepts one bearer token.
struct OneToken;

#[async_trait]
impl Component for OneToken {}

impl vigil_core::Extension for OneToken {
    fn server_auth(&self) -> Option<Arc<dyn vigil_core::ServerAuth>> {
        Some(Arc::new(OneToken))
    }
}

#[async_trait]
impl vigil_core::ServerAuth for OneToken {
    async fn authenticate(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<vigil_core::component::Principal, String> {
        match headers.get("authorization").map(|v| v.as_bytes()) {
            Some(b"Bearer right") => Ok(vigil_core::component::Principal::named("right")),
            Some(_) => Err("wrong token".into()),
            None => Err("no authorization header".into()),
        }
    }
}

/// With `auth`, a request without the right credentials gets 401 or UNAUTHENTICATED and is counted;
/// with them it is served, on both transports. A missing authenticator fails start.
#[tokio::test]
async fn an_authenticator_guards_both_transports() {
    use metrics_util::debugging::DebuggingRecorder;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut cfg = both_on_port_0();
    cfg["protocols"]["http"]["auth"] = json!({"authenticator": "bearertokenauth/in"});
    cfg["protocols"]["grpc"]["auth"] = json!({"authenticator": "bearertokenauth/in"});
    let sink = Arc::new(Recorder::default());
    let mut next = NextConsumers::new();
    next.insert(Signal::Traces, sink.clone());
    let config = config::load(&id(), &cfg).unwrap();
    let receiver = metrics::with_local_recorder(&recorder, || {
        OtlpReceiver::new(settings(), config.clone(), next)
    });
    // Without the extension, start fails and names it.
    let e = receiver
        .start(&Host::detached())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("bearertokenauth/in"), "{e}");
    let mut extensions: std::collections::HashMap<ComponentId, Arc<dyn vigil_core::Extension>> =
        std::collections::HashMap::new();
    extensions.insert(
        ComponentId::parse("bearertokenauth/in").unwrap(),
        Arc::new(OneToken),
    );
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    receiver.start(&Host::new(extensions, tx)).await.unwrap();
    let (grpc, http) = receiver.local_addrs();
    let (grpc, http) = (grpc.unwrap(), http.unwrap());
    let body = traces(1).encode_to_vec();
    let post = |token: Option<&'static str>| {
        let mut req = reqwest::Client::new()
            .post(format!("http://{http}/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(body.clone());
        if let Some(t) = token {
            req = req.header("authorization", t);
        }
        req.send()
    };
    let resp = post(None).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        pb_status(resp).await.code,
        tonic::Code::Unauthenticated as i32
    );
    assert_eq!(post(Some("Bearer wrong")).await.unwrap().status(), 401);
    assert_eq!(post(Some("Bearer right")).await.unwrap().status(), 200);

    let mut frame = vec![0u8];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    let grpc_call = |token: Option<&'static str>| {
        let mut req = reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap()
            .post(format!(
                "http://{grpc}{}",
                ExportTraceServiceRequest::GRPC_PATH
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(frame.clone());
        if let Some(t) = token {
            req = req.header("authorization", t);
        }
        req.send()
    };
    let resp = grpc_call(None).await.unwrap();
    let st = tonic::Status::from_header_map(resp.headers()).expect("a trailers-only error");
    assert_eq!(st.code(), tonic::Code::Unauthenticated);
    let resp = grpc_call(Some("Bearer right")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(tonic::Status::from_header_map(resp.headers()).is_none());
    let _ = resp.bytes().await;
    assert_eq!(sink.items(), 2);
    // One transport's counter is 2 and the other's 1 (which is which is not the point).
    let c = Counters::take(&snapshotter);
    let mut refused = ["grpc", "http"].map(|t| {
        c.find(
            "vigil_receiver_requests_unauthenticated",
            &[("transport", t)],
        )
    });
    refused.sort();
    assert_eq!(refused, [Some(1), Some(2)], "{c:?}");
    receiver.shutdown().await.unwrap();
}

/// With `auth::roles`, a principal whose role does not list the signal gets 403 or
/// PERMISSION_DENIED and is counted; an allowed request has the role's tenant stamped on its
/// resources in place of the one it sent. A principal that matches no role is refused the same way.
#[tokio::test]
async fn roles_refuse_signals_and_stamp_the_tenant() {
    use metrics_util::debugging::DebuggingRecorder;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut cfg = both_on_port_0();
    let auth = json!({
        "authenticator": "bearertokenauth/in",
        "tenant_attribute": "tenant",
        "roles": [{"principals": ["right"], "signals": ["traces"], "tenant": "team-a"}],
    });
    cfg["protocols"]["http"]["auth"] = auth.clone();
    cfg["protocols"]["grpc"]["auth"] = auth;
    let sink = Arc::new(Recorder::default());
    let mut next = NextConsumers::new();
    next.insert(Signal::Traces, sink.clone());
    next.insert(Signal::Logs, sink.clone());
    let config = config::load(&id(), &cfg).unwrap();
    let receiver = metrics::with_local_recorder(&recorder, || {
        OtlpReceiver::new(settings(), config.clone(), next)
    });
    let mut extensions: std::collections::HashMap<ComponentId, Arc<dyn vigil_core::Extension>> =
        std::collections::HashMap::new();
    extensions.insert(
        ComponentId::parse("bearertokenauth/in").unwrap(),
        Arc::new(OneToken),
    );
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    receiver.start(&Host::new(extensions, tx)).await.unwrap();
    let (grpc, http) = receiver.local_addrs();
    let (grpc, http) = (grpc.unwrap(), http.unwrap());

    let mut forged = traces(2);
    forged.resource_spans[0]
        .resource
        .get_or_insert_with(Default::default)
        .attributes
        .push(vigil_core::attrs::kv_str("tenant", "victim"));
    let resp = reqwest::Client::new()
        .post(format!("http://{http}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .header("authorization", "Bearer right")
        .body(forged.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let batches = sink.batches();
    let Telemetry::Traces(rs) = &batches[0] else {
        panic!("traces expected")
    };
    let attrs = &rs[0].resource.as_ref().unwrap().attributes;
    assert_eq!(vigil_core::attrs::get_str(attrs, "tenant"), Some("team-a"));
    assert_eq!(attrs.iter().filter(|kv| kv.key == "tenant").count(), 1);

    // Logs are not in the role: 403 over HTTP, PERMISSION_DENIED over gRPC.
    let logs_one = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default()],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let resp = reqwest::Client::new()
        .post(format!("http://{http}/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .header("authorization", "Bearer right")
        .body(logs_one.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        pb_status(resp).await.code,
        tonic::Code::PermissionDenied as i32
    );
    let body = logs_one.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    let resp = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
        .post(format!(
            "http://{grpc}{}",
            ExportLogsServiceRequest::GRPC_PATH
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", "Bearer right")
        .body(frame)
        .send()
        .await
        .unwrap();
    let st = tonic::Status::from_header_map(resp.headers()).expect("a trailers-only error");
    assert_eq!(st.code(), tonic::Code::PermissionDenied);
    assert_eq!(sink.items(), 2, "only the allowed spans arrived");
    let forbidden = counter(&snapshotter, "vigil_receiver_requests_forbidden", &[]);
    assert_eq!(forbidden, 2);
    receiver.shutdown().await.unwrap();
}

// ---------- client metadata ----------

/// Records the client metadata each call carried.
#[derive(Default)]
struct MetaRecorder(Mutex<Vec<Option<Arc<vigil_core::ClientMetadata>>>>);

#[async_trait]
impl Consumer for MetaRecorder {
    async fn consume(&self, _data: Telemetry) -> Result<(), ConsumeError> {
        self.0
            .lock()
            .unwrap()
            .push(vigil_core::ClientMetadata::current());
        Ok(())
    }
}

/// With `include_metadata: true` the request's headers (gRPC metadata) travel down the pipeline
/// with its data, and the authenticated principal does in any case; without it, the headers stay
/// behind, as in otelcol.
#[tokio::test]
async fn include_metadata_passes_headers_and_the_principal_down_the_pipeline() {
    let run = |include: bool| async move {
        let mut cfg = both_on_port_0();
        for p in ["http", "grpc"] {
            cfg["protocols"][p]["include_metadata"] = json!(include);
            cfg["protocols"][p]["auth"] = json!({"authenticator": "bearertokenauth/in"});
        }
        let sink = Arc::new(MetaRecorder::default());
        let mut next = NextConsumers::new();
        next.insert(Signal::Traces, sink.clone());
        let receiver = OtlpReceiver::new(settings(), config::load(&id(), &cfg).unwrap(), next);
        let mut extensions: std::collections::HashMap<ComponentId, Arc<dyn vigil_core::Extension>> =
            std::collections::HashMap::new();
        extensions.insert(
            ComponentId::parse("bearertokenauth/in").unwrap(),
            Arc::new(OneToken),
        );
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        receiver.start(&Host::new(extensions, tx)).await.unwrap();
        let (grpc, http) = receiver.local_addrs();
        let resp = reqwest::Client::new()
            .post(format!("http://{}/v1/traces", http.unwrap()))
            .header("content-type", "application/x-protobuf")
            .header("authorization", "Bearer right")
            .header("X-Tenant", "acme")
            .body(traces(1).encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut client = TraceServiceClient::connect(format!("http://{}", grpc.unwrap()))
            .await
            .unwrap();
        let mut req = tonic::Request::new(traces(1));
        req.metadata_mut()
            .insert("authorization", "Bearer right".parse().unwrap());
        req.metadata_mut()
            .insert("x-tenant", "globex".parse().unwrap());
        client.export(req).await.unwrap();
        receiver.shutdown().await.unwrap();
        let seen = sink.0.lock().unwrap().clone();
        seen.into_iter()
            .map(|m| {
                let m = m.expect("the principal travels even without include_metadata");
                assert_eq!(m.auth().map(|p| p.name.as_str()), Some("right"));
                m.get("x-tenant").to_vec()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        run(true).await,
        vec![vec!["acme".to_string()], vec!["globex".to_string()]]
    );
    assert_eq!(run(false).await, vec![Vec::<String>::new(), Vec::new()]);
}
