//! `remotetap` (`remote_tap`): otelcol-contrib's processor that lets data pass unchanged and, like
//! `tee`, shows a sample of it to WebSocket clients: each batch that the rate limit lets through
//! (`limit` batches per second, default 1; a burst of `limit` rounded down, at least 1) is sent to
//! every connected client as one text message of OTLP/JSON, the encoding otelcol's pdata JSON
//! marshaler writes. Clients connect to `ws://<endpoint>/` (default `localhost:12001`); what
//! they send is ignored.
//!
//! As in otelcol, one listener serves every pipeline the processor id is in (otelcol shares the
//! component by config; vigil keys it by id and endpoint, so a reload that keeps them keeps the
//! port, and takes a new `limit`). The listener runs on the shared server loop (`vigil_core::net::serve`,
//! with `tls`); a client's connection leaves that loop's connection cap once upgraded, so clients
//! are bounded here: at most [`MAX_CLIENTS`] (more are answered 503 and counted in
//! `vigil_remotetap_clients_refused`), each with a queue of [`CLIENT_QUEUE`] messages, and a
//! message for a client whose queue is full is dropped and counted in
//! `vigil_remotetap_messages_dropped`. Batches the rate limit holds back count in
//! `vigil_remotetap_batches_limited`. Not built: confighttp's other server keys (cors, auth,
//! include_metadata, …), refused by name.

use async_trait::async_trait;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;
use tokio::sync::mpsc;
use vigil_core::config::{bind_tcp, check_endpoint};
use vigil_core::factory::{self, DynProcessorFactory, FactoryBase, ProcessorFactory};
use vigil_core::net::serve::{serve, CancellationToken, ConnCounters, ServeOptions};
use vigil_core::net::tls::TlsServerSettings;
use vigil_core::{
    lock, Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Host,
    Processor, Settings, Signal, Stability, Telemetry,
};

/// Most WebSocket clients at once, per listener.
pub const MAX_CLIENTS: usize = 64;
/// Messages waiting for one client; a slow client misses what does not fit.
pub const CLIENT_QUEUE: usize = 16;

const ALPN: &[&[u8]] = &[b"http/1.1"];

/// The `remotetap` processor config, as otelcol's `remotetapprocessor` (v0.159) reads it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteTapConfig {
    /// Where the WebSocket listener binds.
    pub endpoint: String,
    /// Batches per second sent to the clients (a float; 0 sends none).
    pub limit: f64,
    /// TLS for the listener, with otelcol's `configtls` keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsServerSettings>,
}

impl Default for RemoteTapConfig {
    fn default() -> Self {
        RemoteTapConfig {
            endpoint: "localhost:12001".into(),
            limit: 1.0,
            tls: None,
        }
    }
}

fn check(cfg: &RemoteTapConfig) -> Result<(), ConfigError> {
    check_endpoint(&cfg.endpoint).map_err(|e| ConfigError::at("endpoint", e))?;
    if !cfg.limit.is_finite() || cfg.limit < 0.0 {
        return Err(ConfigError::at(
            "limit",
            format!(
                "must be a number of messages per second, 0 or more, not {}",
                cfg.limit
            ),
        ));
    }
    if let Some(t) = &cfg.tls {
        t.server_config(ALPN)
            .map_err(|e| ConfigError::at(format!("tls::{}", e.key), e.message))?;
    }
    Ok(())
}

struct Factory;

/// The `remotetap` processor factory (`remote_tap` is accepted too).
pub fn factory() -> Arc<dyn DynProcessorFactory> {
    factory::processor(Factory)
}

impl FactoryBase for Factory {
    type Config = RemoteTapConfig;

    fn type_name(&self) -> &'static str {
        "remotetap"
    }

    fn validate(&self, _id: &ComponentId, cfg: &RemoteTapConfig) -> Result<(), ConfigError> {
        check(cfg)
    }
}

impl ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Alpha),
            (Signal::Metrics, Stability::Alpha),
            (Signal::Logs, Stability::Alpha),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: RemoteTapConfig,
        _signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        check(&cfg)?;
        let obs = set.processor_obs(_signal);
        Ok(Arc::new(RemoteTap {
            id: set.id,
            cfg,
            next,
            obs,
            hub: Mutex::new(None),
        }))
    }
}

/// A token bucket: hand-written, as it is a few lines and the only limiter in the crate.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Bucket {
        let burst = rate.floor().max(1.0);
        Bucket {
            rate,
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    fn allow(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The last client number handed out, and each client's number and queue.
type ClientList = (u64, Vec<(u64, mpsc::Sender<Utf8Bytes>)>);

/// The connected clients of one listener.
struct Clients {
    list: Mutex<ClientList>,
    stop: CancellationToken,
    refused: metrics::Counter,
    dropped: metrics::Counter,
}

impl Clients {
    fn add(&self) -> Option<(u64, mpsc::Receiver<Utf8Bytes>)> {
        let mut l = lock(&self.list);
        if l.1.len() >= MAX_CLIENTS {
            self.refused.increment(1);
            return None;
        }
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        l.0 += 1;
        let id = l.0;
        l.1.push((id, tx));
        Some((id, rx))
    }

    fn remove(&self, id: u64) {
        lock(&self.list).1.retain(|(i, _)| *i != id);
    }

    fn is_empty(&self) -> bool {
        lock(&self.list).1.is_empty()
    }

    fn send(&self, msg: Utf8Bytes) {
        for (_, tx) in lock(&self.list).1.iter() {
            if tx.try_send(msg.clone()).is_err() {
                self.dropped.increment(1);
            }
        }
    }
}

/// One listener, shared by the processor's instances in every pipeline; it stops when the last
/// instance lets go of it.
struct Hub {
    clients: Arc<Clients>,
    bucket: Mutex<Bucket>,
    limited: metrics::Counter,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.clients.stop.cancel();
    }
}

/// Listeners by processor id and endpoint. Process-wide rather than per `Host`, so that a
/// reload's new instance finds the running listener instead of binding its port a second time.
fn hubs() -> &'static Mutex<HashMap<String, Weak<Hub>>> {
    static HUBS: OnceLock<Mutex<HashMap<String, Weak<Hub>>>> = OnceLock::new();
    HUBS.get_or_init(Default::default)
}

async fn upgrade(ws: WebSocketUpgrade, State(clients): State<Arc<Clients>>) -> Response {
    match clients.add() {
        Some((id, rx)) => ws.on_upgrade(move |socket| client(socket, clients, id, rx)),
        None => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "too many remotetap clients",
        )
            .into_response(),
    }
}

/// Writes the queued messages to one client until it leaves or the listener stops.
async fn client(
    mut socket: WebSocket,
    clients: Arc<Clients>,
    id: u64,
    mut rx: mpsc::Receiver<Utf8Bytes>,
) {
    loop {
        tokio::select! {
            _ = clients.stop.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
            m = rx.recv() => match m {
                Some(text) => {
                    if socket.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            r = socket.recv() => match r {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    clients.remove(id);
}

struct RemoteTap {
    id: ComponentId,
    cfg: RemoteTapConfig,
    next: Arc<dyn Consumer>,
    obs: vigil_core::ProcessorObs,
    hub: Mutex<Option<Arc<Hub>>>,
}

impl RemoteTap {
    /// The listener this instance shares, started by whichever instance comes first.
    async fn hub(&self) -> anyhow::Result<Arc<Hub>> {
        let key = format!("{}\0{}", self.id, self.cfg.endpoint);
        if let Some(h) = lock(hubs()).get(&key).and_then(Weak::upgrade) {
            // A reload that changed only `limit` keeps the port and takes the new rate.
            let mut b = lock(&h.bucket);
            if b.rate != self.cfg.limit {
                *b = Bucket::new(self.cfg.limit);
            }
            drop(b);
            return Ok(h);
        }
        let listener = bind_tcp(ComponentKind::Processor, &self.id, &self.cfg.endpoint).await?;
        let label = self.id.to_string();
        let clients = Arc::new(Clients {
            list: Mutex::new((0, Vec::new())),
            stop: CancellationToken::new(),
            refused: metrics::counter!("vigil_remotetap_clients_refused", "processor" => label.clone()),
            dropped: metrics::counter!("vigil_remotetap_messages_dropped", "processor" => label.clone()),
        });
        let tls = match &self.cfg.tls {
            Some(t) => Some(
                t.server(ALPN)
                    .map_err(|e| anyhow::anyhow!("processors::{}::{e}", self.id))?,
            ),
            None => None,
        };
        let app = axum::Router::new()
            .route("/", axum::routing::get(upgrade))
            .with_state(Arc::clone(&clients));
        let opts = ServeOptions {
            tls,
            ..ServeOptions::default()
        };
        let counters = ConnCounters::new("processor", &label, "http");
        tokio::spawn(serve(listener, app, opts, counters, clients.stop.clone()));
        let hub = Arc::new(Hub {
            clients,
            bucket: Mutex::new(Bucket::new(self.cfg.limit)),
            limited: metrics::counter!("vigil_remotetap_batches_limited", "processor" => label),
        });
        let mut map = lock(hubs());
        map.retain(|_, w| w.strong_count() > 0);
        // Another instance may have bound first while this one awaited: keep one listener.
        if let Some(h) = map.get(&key).and_then(Weak::upgrade) {
            return Ok(h);
        }
        map.insert(key, Arc::downgrade(&hub));
        Ok(hub)
    }
}

#[async_trait]
impl Component for RemoteTap {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let hub = self.hub().await?;
        *lock(&self.hub) = Some(hub);
        Ok(())
    }

    async fn shutdown_by(&self, _deadline: std::time::Instant) -> anyhow::Result<()> {
        lock(&self.hub).take();
        Ok(())
    }
}

#[async_trait]
impl Consumer for RemoteTap {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let n = data.item_count();
        self.obs.incoming(n);
        let hub = lock(&self.hub).clone();
        if let Some(hub) = hub.filter(|h| !h.clients.is_empty()) {
            if lock(&hub.bucket).allow(Instant::now()) {
                match vigil_core::codec::encode::json_request(&data) {
                    Ok(json) => match String::from_utf8(json) {
                        Ok(s) => hub.clients.send(Utf8Bytes::from(s)),
                        Err(e) => {
                            tracing::debug!(processor = %self.id, error = %e, "remotetap: JSON not UTF-8")
                        }
                    },
                    Err(e) => {
                        tracing::debug!(processor = %self.id, error = %e, "remotetap: could not encode the batch as JSON")
                    }
                }
            } else {
                hub.limited.increment(1);
            }
        }
        self.obs.outgoing(n);
        self.next.consume(data).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::Keep;
    use futures::StreamExt;
    use serde_json::json;
    use std::time::Duration;
    use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    fn logs(body: &str) -> Telemetry {
        Telemetry::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: Some(vigil_core::otlp::common::v1::AnyValue {
                        value: Some(vigil_core::otlp::common::v1::any_value::Value::StringValue(
                            body.into(),
                        )),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn build(
        name: &str,
        cfg: serde_json::Value,
        signal: Signal,
    ) -> (Arc<dyn Processor>, Arc<Keep>) {
        let keep = Arc::new(Keep::default());
        let id = ComponentId::parse(&format!("remotetap/{name}")).unwrap();
        let p = factory()
            .create(&id, &cfg, signal, keep.clone())
            .expect("creates");
        (p, keep)
    }

    #[tokio::test]
    async fn clients_get_rate_limited_json_while_data_passes_unchanged() {
        // Bind a free port first so the test knows it (port 0 would hide it in the hub).
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let cfg = json!({"endpoint": format!("127.0.0.1:{port}"), "limit": 2});
        let (logs_p, keep) = build("ws", cfg.clone(), Signal::Logs);
        let (traces_p, _) = build("ws", cfg, Signal::Traces);
        let host = Host::detached();
        logs_p.start(&host).await.expect("binds");
        traces_p
            .start(&host)
            .await
            .expect("the second pipeline shares the listener");
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/"))
            .await
            .expect("a real WebSocket client connects");
        // Wait until the server has registered the client.
        tokio::time::sleep(Duration::from_millis(100)).await;
        for i in 0..10 {
            logs_p.consume(logs(&format!("line {i}"))).await.unwrap();
        }
        assert_eq!(lock(&keep.0).len(), 10, "every batch passes on");
        let mut got = Vec::new();
        while let Ok(Some(Ok(m))) =
            tokio::time::timeout(Duration::from_millis(300), ws.next()).await
        {
            got.push(m.into_text().expect("text").to_string());
        }
        assert_eq!(
            got.len(),
            2,
            "limit 2: a burst of two, the rest held back: {got:?}"
        );
        let v: serde_json::Value = serde_json::from_str(&got[0]).expect("JSON");
        assert_eq!(
            v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["body"]["stringValue"],
            "line 0"
        );
        // A second later the bucket has refilled.
        tokio::time::sleep(Duration::from_millis(600)).await;
        logs_p.consume(logs("later")).await.unwrap();
        let m = tokio::time::timeout(Duration::from_secs(2), ws.next())
            .await
            .expect("a message")
            .expect("open")
            .expect("ok");
        assert!(m.into_text().unwrap().contains("later"));
        // The listener stays while one instance holds it, and closes with the last.
        logs_p.shutdown().await.unwrap();
        assert!(
            hub_alive(port),
            "the traces pipeline still holds the listener"
        );
        traces_p.shutdown().await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match ws.next().await {
                    None | Some(Err(_)) => return,
                    Some(Ok(m)) if m.is_close() => return,
                    _ => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the client is closed at shutdown");
    }

    #[tokio::test]
    async fn clients_past_the_bound_are_refused_with_503() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (p, _) = build(
            "bound",
            json!({"endpoint": format!("127.0.0.1:{port}")}),
            Signal::Traces,
        );
        p.start(&Host::detached()).await.expect("binds");
        let url = format!("ws://127.0.0.1:{port}/");
        let mut open = Vec::new();
        for _ in 0..MAX_CLIENTS {
            open.push(
                tokio_tungstenite::connect_async(&url)
                    .await
                    .expect("admitted")
                    .0,
            );
        }
        match tokio_tungstenite::connect_async(&url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
            other => panic!("client {} was not refused: {other:?}", MAX_CLIENTS + 1),
        }
        // A client that leaves makes room.
        let mut first = open.remove(0);
        first.close(None).await.unwrap();
        drop(first);
        let mut admitted = false;
        for _ in 0..50 {
            if tokio_tungstenite::connect_async(&url).await.is_ok() {
                admitted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(admitted, "room made by a client that left");
        p.shutdown().await.unwrap();
    }

    fn hub_alive(port: u16) -> bool {
        lock(hubs())
            .iter()
            .any(|(k, w)| k.ends_with(&format!(":{port}")) && w.strong_count() > 0)
    }

    #[test]
    fn the_bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1.5);
        assert!(b.allow(t0));
        assert!(!b.allow(t0), "burst of floor(1.5) = 1");
        assert!(
            b.allow(t0 + Duration::from_millis(700)),
            "1.5/s refills one in 667 ms"
        );
        let mut none = Bucket::new(0.0);
        assert!(!none.allow(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn config_cases() {
        let id = ComponentId::parse("remotetap/x").unwrap();
        crate::testdata::check_all("remotetap", 2, |v| {
            factory().validate(&id, v).map_err(|e| e.to_string())
        });
    }
}
