//! The exporter against real gRPC backends in the test process: trace affinity over a static list,
//! and a backend leaving a DNS answer while its queue holds data.

use super::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

#[derive(Default)]
struct Backend {
    spans: Mutex<Vec<Span>>,
}

struct Svc(Arc<Backend>);

#[tonic::async_trait]
impl TraceService for Svc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        lock(&self.0.spans).extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A trace backend on `ip:port` (port 0: any).
async fn backend_on(ip: [u8; 4], port: u16) -> (Arc<Backend>, u16) {
    let b = Arc::new(Backend::default());
    let svc = TraceServiceServer::new(Svc(b.clone()))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    let listener = tokio::net::TcpListener::bind(std::net::SocketAddr::from((ip, port)))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    (b, port)
}

fn id() -> ComponentId {
    ComponentId::parse("loadbalancing/test").unwrap()
}

fn decode(v: Value) -> Result<LoadBalancingConfig, ConfigError> {
    let cfg: LoadBalancingConfig = vigil_core::config::decode(ComponentKind::Exporter, &id(), &v)?;
    cfg.validate(&id())?;
    Ok(cfg)
}

fn exporter(v: Value, lookup: Lookup) -> LoadBalancing {
    let cfg = decode(v).unwrap();
    build(Settings::new(ComponentKind::Exporter, &id()), cfg, lookup).unwrap()
}

/// `traces` traces of three spans each; trace ids start at `first`.
fn batch(first: u32, traces: u32) -> Telemetry {
    let spans = (first..first + traces)
        .flat_map(|t| {
            (0..3u8).map(move |i| {
                let mut trace_id = vec![0u8; 16];
                trace_id[12..].copy_from_slice(&t.wrapping_mul(2_654_435_761).to_be_bytes());
                trace_id[0] = 1;
                Span {
                    trace_id,
                    span_id: vec![i + 1; 8],
                    name: format!("s{i}"),
                    ..Default::default()
                }
            })
        })
        .collect();
    Telemetry::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn otlp_template() -> Value {
    json!({
        "tls": {"insecure": true},
        "retry_on_failure": {"initial_interval": "20ms", "max_interval": "50ms", "max_elapsed_time": "0s"},
        "sending_queue": {"num_consumers": 2}
    })
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn traces_by_backend(backends: &[Arc<Backend>]) -> BTreeMap<Vec<u8>, BTreeSet<usize>> {
    let mut seen: BTreeMap<Vec<u8>, BTreeSet<usize>> = BTreeMap::new();
    for (i, b) in backends.iter().enumerate() {
        for s in lock(&b.spans).iter() {
            seen.entry(s.trace_id.clone()).or_default().insert(i);
        }
    }
    seen
}

fn total(backends: &[Arc<Backend>]) -> usize {
    backends.iter().map(|b| lock(&b.spans).len()).sum()
}

#[tokio::test]
async fn every_span_of_a_trace_reaches_one_backend() {
    let mut backends = Vec::new();
    let mut hosts = Vec::new();
    for _ in 0..3 {
        let (b, port) = backend_on([127, 0, 0, 1], 0).await;
        backends.push(b);
        hosts.push(format!("127.0.0.1:{port}"));
    }
    let e = exporter(
        json!({
            "protocol": {"otlp": otlp_template()},
            "resolver": {"static": {"hostnames": hosts}},
        }),
        resolver::system_lookup(),
    );
    e.start(&Host::detached()).await.unwrap();
    // Each trace's spans arrive over several calls, as a trace's spans reach a gateway.
    for round in 0..4u32 {
        for call in 0..10u32 {
            let mut b = batch(call * 10, 10);
            if let Telemetry::Traces(rs) = &mut b {
                for s in rs[0].scope_spans[0].spans.iter_mut() {
                    s.span_id[0] = round as u8;
                }
            }
            e.consume(b).await.unwrap();
        }
    }
    eventually("1200 spans", || total(&backends) == 1200).await;
    let seen = traces_by_backend(&backends);
    assert_eq!(seen.len(), 100);
    assert!(seen.values().all(|b| b.len() == 1), "a trace was split");
    let used: BTreeSet<usize> = seen.values().flatten().copied().collect();
    assert_eq!(used.len(), 3, "100 traces use every backend");
    e.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_backend_that_leaves_the_dns_answer_hands_its_queue_to_the_others() {
    // Two backends on one port of two loopback addresses; the third address has none, so what
    // the ring gives it waits in its queue, retried, until DNS stops naming it.
    let (b1, port) = backend_on([127, 0, 0, 1], 0).await;
    let (b2, _) = backend_on([127, 0, 0, 2], port).await;
    let backends = vec![b1, b2];
    let answer: Arc<Mutex<Vec<IpAddr>>> = Arc::new(Mutex::new(vec![
        "127.0.0.1".parse().unwrap(),
        "127.0.0.2".parse().unwrap(),
        "127.0.0.3".parse().unwrap(),
    ]));
    let lookup: Lookup = {
        let answer = Arc::clone(&answer);
        Arc::new(move |_| {
            let ips = lock(&answer).clone();
            Box::pin(async move { Ok(ips) })
        })
    };
    let e = exporter(
        json!({
            "protocol": {"otlp": otlp_template()},
            "resolver": {"dns": {"hostname": "backends.test", "port": port.to_string(), "interval": "50ms"}},
        }),
        lookup,
    );
    e.start(&Host::detached()).await.unwrap();
    assert_eq!(e.balancer.state.load().ring.endpoints().len(), 3);
    for call in 0..10u32 {
        e.consume(batch(call * 10, 10)).await.unwrap();
    }
    // The two live backends get their share; the dead address's share waits in its queue.
    let dead = format!("127.0.0.3:{port}");
    let ring = e.balancer.state.load().ring.clone();
    let dead_share: usize = (0..10u32)
        .map(|c| match batch(c * 10, 10) {
            Telemetry::Traces(rs) => rs[0].scope_spans[0]
                .spans
                .iter()
                .filter(|s| ring.endpoint_for(&s.trace_id) == Some(dead.as_str()))
                .count(),
            _ => 0,
        })
        .sum();
    assert!(dead_share > 0, "the third address owns some of 100 traces");
    eventually("the live backends' share", || {
        total(&backends) == 300 - dead_share
    })
    .await;
    *lock(&answer) = vec!["127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()];
    eventually("every span after the ring change", || {
        total(&backends) == 300
    })
    .await;
    let seen = traces_by_backend(&backends);
    assert!(seen.values().all(|b| b.len() == 1), "a trace was split");
    // Keys the two live backends owned before did not move.
    e.shutdown().await.unwrap();
}

#[test]
fn config_errors_name_the_key() {
    let err = |v: Value| decode(v).unwrap_err().to_string();
    assert!(err(json!({})).contains("resolver: one resolver is required"));
    assert!(
        err(json!({"resolver": {"static": {"hostnames": ["a"]}, "dns": {"hostname": "b"}}}))
            .contains("only one of")
    );
    assert!(
        err(json!({"resolver": {"dns": {"hostname": "b", "port": "http"}}}))
            .contains("resolver::dns::port")
    );
    assert!(
        err(json!({"resolver": {"static": {"hostnames": ["a"]}}, "protocol": {"otlp": {"compression": "lz4"}}}))
            .contains("protocol::otlp::compression")
    );
    assert!(
        err(json!({"resolver": {"static": {"hostnames": ["a"]}}, "routing_key": "span"}))
            .contains("routing_key")
    );
    assert!(err(json!({"resolver": {"aws_cloud_map": {}}})).contains("aws_cloud_map"));
    let ok =
        decode(json!({"resolver": {"static": {"hostnames": ["a:1"]}}, "routing_key": "metric"}))
            .unwrap();
    let f = Factory;
    assert!(f.validate_signal(&id(), &ok, Signal::Metrics).is_ok());
    let e = f.validate_signal(&id(), &ok, Signal::Traces).unwrap_err();
    assert!(e.to_string().contains("metric cannot route traces"), "{e}");
    let dflt = decode(json!({"resolver": {"static": {"hostnames": ["a:1"]}}})).unwrap();
    for s in [Signal::Traces, Signal::Metrics, Signal::Logs] {
        assert!(f.validate_signal(&id(), &dflt, s).is_ok(), "{s}");
    }
}
