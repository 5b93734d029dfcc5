//! The `otelarrow` receiver started on port 0: a real tonic OTLP client delivers through it, and an
//! OTel-Arrow stream call gets the status otelcol's `otelarrow` exporter downgrades on.

use super::*;
use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_client::TraceServiceClient, ExportTraceServiceRequest,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use serde_json::{json, Value};
use std::sync::Mutex;
use vigil_core::config::decode;
use vigil_core::{ComponentKind, ConsumeError, Consumer, Telemetry};

#[derive(Default)]
struct Recorder {
    items: Mutex<usize>,
}

#[async_trait]
impl Consumer for Recorder {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        *self.items.lock().unwrap() += data.item_count();
        Ok(())
    }
}

fn id() -> ComponentId {
    ComponentId::parse("otelarrow/in").unwrap()
}

fn load(v: Value) -> Result<OtelArrowConfig, ConfigError> {
    let cfg: OtelArrowConfig = decode(ComponentKind::Receiver, &id(), &v)?;
    Factory.validate(&id(), &cfg)?;
    Ok(cfg)
}

async fn start(recorder: Arc<Recorder>) -> (Arc<dyn Receiver>, std::net::SocketAddr) {
    let cfg = load(json!({"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}})).unwrap();
    let mut next = NextConsumers::new();
    next.insert(Signal::Traces, recorder);
    let set = Settings::new(ComponentKind::Receiver, &id());
    let r = OtelArrowReceiver {
        id: id(),
        inner: OtlpReceiver::new(set, cfg.otlp(), next),
    };
    r.start(&Host::detached()).await.unwrap();
    let addr = r.local_addr().unwrap();
    (Arc::new(r), addr)
}

fn spans(n: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        trace_id: vec![1; 16],
                        span_id: vec![i as u8 + 1; 8],
                        name: format!("s{i}"),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn defaults_and_otelcol_keys() {
    let cfg = load(Value::Null).unwrap();
    assert_eq!(cfg.protocols.grpc.endpoint, "localhost:4317");
    assert_eq!(cfg.protocols.arrow.memory_limit_mib, 128);
    assert_eq!(cfg.protocols.arrow.zstd.max_window_size_mib, 32);
    assert_eq!(cfg.admission.request_limit_mib, 128);
    assert_eq!(cfg.admission.waiting_limit_mib, 32);
    assert!(cfg.otlp().protocols.grpc.is_some() && cfg.otlp().protocols.http.is_none());
    // otelcol-contrib's own testdata/config.yaml, as keys.
    let cfg = load(json!({
        "protocols": {
            "grpc": {
                "max_recv_msg_size_mib": 32, "max_concurrent_streams": 16,
                "read_buffer_size": 1024, "write_buffer_size": 1024,
                "keepalive": {
                    "server_parameters": {"max_connection_idle": "11s", "max_connection_age": "12s",
                        "max_connection_age_grace": "13s", "time": "30s", "timeout": "5s"},
                    "enforcement_policy": {"min_time": "10s", "permit_without_stream": true}
                }
            },
            "arrow": {"memory_limit_mib": 123, "zstd": {"memory_limit_mib": 64, "concurrency": 2}}
        },
        "admission": {"request_limit_mib": 80, "waiting_limit_mib": 100}
    }))
    .unwrap();
    assert_eq!(cfg.protocols.grpc.max_recv_msg_size_mib, 32);
    assert_eq!(cfg.protocols.arrow.memory_limit_mib, 123);
    assert_eq!(cfg.admission.waiting_limit_mib, 100);
}

#[test]
fn unknown_keys_and_http_are_refused_with_their_path() {
    let e = load(json!({"protocols": {"http": {}}}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("protocols::http") || e.contains("http"), "{e}");
    let e = load(json!({"protocols": {"arrow": {"memory_limit": 1}}}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("protocols::arrow::memory_limit"), "{e}");
    // The otlp receiver's own checks run on the gRPC side.
    let e = load(json!({"protocols": {"grpc": {"endpoint": "localhost:99999"}}}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("protocols::grpc::endpoint"), "{e}");
}

#[tokio::test]
async fn serves_standard_otlp_grpc() {
    let recorder = Arc::new(Recorder::default());
    let (r, addr) = start(recorder.clone()).await;
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    client.export(spans(3)).await.unwrap();
    assert_eq!(*recorder.items.lock().unwrap(), 3);
    r.shutdown().await.unwrap();
}

/// What an OTel-Arrow exporter's stream sees: a trailers-only answer with `UNIMPLEMENTED`, the
/// code on which otelcol's exporter (`internal/arrow/stream.go`) marks the stream as "Arrow not
/// supported" and, once every stream says so, downgrades to standard OTLP.
#[tokio::test]
async fn arrow_streams_answer_unimplemented() {
    let recorder = Arc::new(Recorder::default());
    let (r, addr) = start(recorder.clone()).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for path in ARROW_METHODS {
        // One empty BatchArrowRecords message, as a stream's first frame.
        let resp = client
            .post(format!("http://{addr}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(vec![0u8, 0, 0, 0, 0])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let st = tonic::Status::from_header_map(resp.headers()).expect("a trailers-only answer");
        assert_eq!(st.code(), tonic::Code::Unimplemented, "{path}: {st:?}");
    }
    // The OTLP path on the same listener still answers OK, so the downgrade loses nothing.
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    client.export(spans(1)).await.unwrap();
    assert_eq!(*recorder.items.lock().unwrap(), 1);
    r.shutdown().await.unwrap();
}
