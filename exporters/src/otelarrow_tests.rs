//! Config fidelity (otelcol's keys and defaults, the `otlp` keys all present) and a send to a
//! tonic OTLP trace service: standard OTLP, zstd-compressed by default.

use super::*;
use crate::helper::encode::tests::sample_traces;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use serde_json::{json, Value};
use std::sync::Mutex;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};
use vigil_core::config::decode;

fn id() -> ComponentId {
    ComponentId::parse("otelarrow/test").unwrap()
}

fn load(v: Value) -> Result<OtelArrowConfig, ConfigError> {
    let cfg: OtelArrowConfig = decode(ComponentKind::Exporter, &id(), &v)?;
    cfg.validate(&id())?;
    Ok(cfg)
}

fn err(v: Value) -> String {
    load(v).unwrap_err().to_string()
}

#[test]
fn defaults_are_otelarrows() {
    let cfg = load(json!({"endpoint": "collector:4317"})).unwrap();
    assert_eq!(cfg.compression, Compression::Zstd);
    assert_eq!(cfg.balancer_name, Balancer::RoundRobin);
    assert_eq!(cfg.timeout, Duration::from_secs(5));
    assert!(cfg.arrow.num_streams >= 1);
    assert_eq!(cfg.arrow.max_stream_lifetime, Duration::from_secs(30));
    assert_eq!(cfg.arrow.zstd.level, 5);
    assert_eq!(cfg.arrow.payload_compression, "zstd");
    assert_eq!(cfg.arrow.prioritizer, "leastloaded");
    assert_eq!(cfg.metadata_cardinality_limit, 1000);
    assert!(cfg.arrow_notice().is_some());
    let cfg = load(json!({"endpoint": "c:4317", "arrow": {"disabled": true}})).unwrap();
    assert!(cfg.arrow_notice().is_none());
}

/// Every key the `otlp` exporter takes is a key here too, so the two cannot drift apart.
#[test]
fn every_otlp_key_is_accepted() {
    let otlp: OtlpConfig = decode(
        ComponentKind::Exporter,
        &id(),
        &json!({"endpoint": "c:4317", "keepalive": {"time": "10s"}, "auth": {"authenticator": "x"}}),
    )
    .unwrap();
    let Value::Object(keys) = serde_json::to_value(&otlp).unwrap() else {
        panic!("otlp config is not a map");
    };
    assert!(keys.len() >= 10, "{keys:?}");
    let as_arrow: OtelArrowConfig =
        decode(ComponentKind::Exporter, &id(), &Value::Object(keys.clone())).unwrap();
    let round = serde_json::to_value(as_arrow.otlp()).unwrap();
    assert_eq!(round, Value::Object(keys));
}

#[test]
fn otelcol_keys_are_accepted() {
    let cfg = load(json!({
        "endpoint": "collector:4317",
        "tls": {"insecure": true},
        "compression": "none",
        "balancer_name": "pick_first",
        "timeout": "30s",
        "arrow": {
            "num_streams": 4, "max_stream_lifetime": "9m30s", "payload_compression": "none",
            "prioritizer": "leastloaded2", "zstd": {"level": 10, "window_size_mib": 8, "concurrency": 2}
        },
        "metadata_keys": ["X-Tenant"],
        "metadata_cardinality_limit": 10
    }))
    .unwrap();
    assert_eq!(cfg.otlp().compression, Compression::None);
    assert_eq!(cfg.otlp().balancer_name, Balancer::PickFirst);
    assert_eq!(cfg.arrow.max_stream_lifetime, Duration::from_secs(570));
}

#[test]
fn bad_values_name_their_key() {
    let base = |arrow: Value| json!({"endpoint": "c:4317", "arrow": arrow});
    for (arrow, key) in [
        (json!({"num_streams": 0}), "arrow::num_streams"),
        (
            json!({"max_stream_lifetime": "500ms"}),
            "arrow::max_stream_lifetime",
        ),
        (json!({"zstd": {"level": 11}}), "arrow::zstd::level"),
        (
            json!({"payload_compression": "gzip"}),
            "arrow::payload_compression",
        ),
        (json!({"prioritizer": "fastest"}), "arrow::prioritizer"),
        (
            json!({"disable_downgrade": true}),
            "arrow::disable_downgrade",
        ),
        (json!({"prefer_otlp": true}), "arrow"),
    ] {
        let e = err(base(arrow.clone()));
        assert!(e.contains(key), "{arrow}: {e}");
    }
    assert!(err(base(json!({"disable_downgrade": true}))).contains("not built"));
    let e = err(json!({"endpoint": "c:4317", "metadata_keys": ["a", "A"]}));
    assert!(
        e.contains("metadata_keys") && e.contains("duplicate"),
        "{e}"
    );
    // The otlp exporter's checks run too.
    assert!(err(json!({})).contains("endpoint"));
    assert!(
        err(json!({"endpoint": "c:4317", "retry_on_failures": {}})).contains("retry_on_failures")
    );
}

#[derive(Default)]
struct Backend {
    got: Mutex<Vec<(Option<String>, ExportTraceServiceRequest)>>,
}

struct Svc(Arc<Backend>);

#[tonic::async_trait]
impl TraceService for Svc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let enc = request
            .metadata()
            .get("grpc-encoding")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.0.got.lock().unwrap().push((enc, request.into_inner()));
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Standard OTLP reaches a plain OTLP trace service, zstd-compressed as otelarrow's default says.
#[tokio::test]
async fn sends_standard_otlp_zstd_by_default() {
    let b = Arc::new(Backend::default());
    let svc = TraceServiceServer::new(Svc(b.clone())).accept_compressed(CompressionEncoding::Zstd);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    let cfg = load(json!({
        "endpoint": addr.to_string(), "tls": {"insecure": true},
        "sending_queue": {"enabled": false}, "retry_on_failure": {"enabled": false}
    }))
    .unwrap();
    let exp = Factory
        .create(Settings::new(ComponentKind::Exporter, &id()), cfg)
        .unwrap();
    exp.start(&Host::detached()).await.unwrap();
    let data = sample_traces(3);
    let n = data.item_count();
    exp.consume(data).await.unwrap();
    exp.shutdown().await.unwrap();
    let got = b.got.lock().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.as_deref(), Some("zstd"));
    let spans: usize = got[0]
        .1
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    assert_eq!(spans, n);
}
