//! The receiver end to end within the crate: real sockets on port 0, bodies built by the test
//! Thrift writer. Real clients (the Python SDK's Jaeger exporters) are in tests/tests/jaeger.rs.

use super::thrift::tests::{batch_bytes, W};
use super::*;
use std::time::Duration;
use vigil_core::ConsumeError;

#[derive(Default)]
struct Sink(Mutex<Vec<ResourceSpans>>, Mutex<Option<ConsumeError>>);

#[async_trait::async_trait]
impl Consumer for Sink {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        if let Some(e) = vigil_core::lock(&self.1).clone() {
            return Err(e);
        }
        if let Telemetry::Traces(rs) = data {
            vigil_core::lock(&self.0).extend(rs);
        }
        Ok(())
    }
}

impl Sink {
    fn spans(&self) -> usize {
        vigil_core::lock(&self.0)
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum()
    }
}

async fn start(cfg: serde_json::Value) -> (JaegerReceiver, Arc<Sink>, Bound) {
    let id = ComponentId::parse("jaeger").unwrap();
    let cfg: JaegerConfig = vigil_core::config::decode(ComponentKind::Receiver, &id, &cfg).unwrap();
    config::check(&cfg).unwrap();
    let sink = Arc::new(Sink::default());
    let mut next = NextConsumers::new();
    next.insert(Signal::Traces, sink.clone());
    let r = JaegerReceiver::new(Settings::new(ComponentKind::Receiver, &id), cfg, next);
    r.start(&Host::detached()).await.unwrap();
    let b = r.bound().unwrap();
    (r, sink, b)
}

async fn wait_for(sink: &Sink, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sink.spans() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} spans arrived",
            sink.spans()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn thrift_over_http_and_udp_reach_the_pipeline() {
    let (r, sink, b) = start(serde_json::json!({"protocols": {
        "thrift_http": {"endpoint": "127.0.0.1:0"},
        "thrift_compact": {"endpoint": "127.0.0.1:0"},
        "thrift_binary": {"endpoint": "127.0.0.1:0"},
    }}))
    .await;
    let url = format!("http://{}/api/traces", b.thrift_http.unwrap());
    let client = reqwest::Client::new();
    let resp = client
        .post(&url)
        .header("content-type", "application/x-thrift")
        .body(batch_bytes(Protocol::Binary, 3))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    wait_for(&sink, 3).await;
    {
        let got = vigil_core::lock(&sink.0);
        let res = got[0].resource.as_ref().unwrap();
        assert!(res.attributes.iter().any(|kv| kv.key == "service.name"));
        assert!(res.attributes.iter().any(|kv| kv.key == "host.name"));
    }
    // Another content type is refused, as jaeger's collector does.
    let resp = client
        .post(&url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("Unsupported content type"));
    // Garbage is a 400, not a crash.
    let resp = client
        .post(&url)
        .header("content-type", "application/x-thrift")
        .body(vec![0x0f, 0x00, 0x02, 0x0c, 0x7f, 0xff, 0xff, 0xff])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for (proto, addr) in [
        (Protocol::Compact, b.thrift_compact.unwrap()),
        (Protocol::Binary, b.thrift_binary.unwrap()),
    ] {
        let mut w = W::new(proto);
        match proto {
            Protocol::Compact => w.out.extend_from_slice(&[0x82, 0x81, 0x01]),
            Protocol::Binary => w.out.extend_from_slice(&0x8001_0004u32.to_be_bytes()),
        }
        w.raw_str("emitBatch");
        if proto == Protocol::Binary {
            w.out.extend_from_slice(&1i32.to_be_bytes());
        }
        w.begin();
        w.struct_field(1);
        w.out.extend_from_slice(&batch_bytes(proto, 2));
        w.end();
        udp.send_to(&w.out, addr).await.unwrap();
        // A garbage datagram is dropped without stopping the listener.
        udp.send_to(&[1, 2, 3], addr).await.unwrap();
    }
    wait_for(&sink, 7).await;
    r.shutdown_by(Instant::now() + Duration::from_secs(10))
        .await
        .unwrap();
}

#[tokio::test]
async fn backpressure_is_503_on_http() {
    let (r, sink, b) = start(serde_json::json!({"protocols": {
        "thrift_http": {"endpoint": "127.0.0.1:0"},
    }}))
    .await;
    *vigil_core::lock(&sink.1) = Some(ConsumeError::retryable("full"));
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/traces", b.thrift_http.unwrap()))
        .header("content-type", "application/vnd.apache.thrift.binary")
        .body(batch_bytes(Protocol::Binary, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    r.shutdown().await.unwrap();
}

#[test]
fn config_errors_name_the_key() {
    let id = ComponentId::parse("jaeger").unwrap();
    let load = |v: serde_json::Value| -> Result<(), String> {
        let cfg: JaegerConfig = vigil_core::config::decode(ComponentKind::Receiver, &id, &v)
            .map_err(|e| e.to_string())?;
        config::check(&cfg).map_err(|e| e.to_string())
    };
    let e = load(serde_json::json!({})).unwrap_err();
    assert!(
        e.contains("protocols: must specify at least one protocol"),
        "{e}"
    );
    let e = load(serde_json::json!({"protocols": {"thrift_udp": {}}})).unwrap_err();
    assert!(e.contains("thrift_udp"), "{e}");
    let e = load(serde_json::json!({"protocols": {"thrift_compact": {"workers": 0}}})).unwrap_err();
    assert!(
        e.contains("protocols::thrift_compact::workers: must be between 1"),
        "{e}"
    );
    let e = load(serde_json::json!({"protocols": {"grpc": {"endpoint": "x:99999"}}})).unwrap_err();
    assert!(e.contains("protocols::grpc::endpoint"), "{e}");
    assert!(load(serde_json::json!({"protocols": {"grpc": null, "thrift_compact": null}})).is_ok());
}

/// Records the `x-tenant` header each call carried down the pipeline.
#[derive(Default)]
struct MetaSink(Mutex<Vec<Vec<String>>>);

#[async_trait::async_trait]
impl Consumer for MetaSink {
    async fn consume(&self, _data: Telemetry) -> Result<(), ConsumeError> {
        let tenant = ClientMetadata::current()
            .map(|m| m.get("x-tenant").to_vec())
            .unwrap_or_default();
        vigil_core::lock(&self.0).push(tenant);
        Ok(())
    }
}

#[tokio::test]
async fn include_metadata_carries_the_headers_down_the_pipeline() {
    let id = ComponentId::parse("jaeger").unwrap();
    for include in [true, false] {
        let cfg = serde_json::json!({"protocols": {"thrift_http": {
            "endpoint": "127.0.0.1:0", "include_metadata": include
        }}});
        let cfg: JaegerConfig =
            vigil_core::config::decode(ComponentKind::Receiver, &id, &cfg).unwrap();
        let sink = Arc::new(MetaSink::default());
        let mut next = NextConsumers::new();
        next.insert(Signal::Traces, sink.clone());
        let r = JaegerReceiver::new(Settings::new(ComponentKind::Receiver, &id), cfg, next);
        r.start(&Host::detached()).await.unwrap();
        let addr = r.bound().unwrap().thrift_http.unwrap();
        let resp = reqwest::Client::new()
            .post(format!("http://{addr}/api/traces"))
            .header("content-type", "application/x-thrift")
            .header("x-tenant", "blue")
            .body(batch_bytes(Protocol::Binary, 1))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let want: Vec<String> = if include { vec!["blue".into()] } else { vec![] };
        assert_eq!(*vigil_core::lock(&sink.0), vec![want]);
        r.shutdown().await.unwrap();
    }
}
