//! `syslog`: receives RFC 5424 or RFC 3164 messages over TCP (octet counting or newline framing) and
//! UDP, as otelcol's `syslog` receiver does with the same keys (`protocol`, `location`,
//! `tcp.listen_address`, `udp.listen_address`, `operators`), and turns each into an OTLP log record
//! with severity, host and app as attributes. `parse` holds the message and framing parsers.

pub mod parse;

use crate::listen::{accept_capped, accept_tls, start_tls, Listening};
use crate::serve::{default_max_connections, ConnCounters};
use crate::stanza::operators::{OperatorConfig, Pipeline, PipelineState};
use crate::tls::TlsServerSettings;
use async_trait::async_trait;
use chrono_tz::Tz;
use parse::Protocol;
use serde::Deserialize;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;
use vigil_core::attrs::{kv_i64, kv_str};
use vigil_core::config::{check_endpoint, resolve_endpoint};
use vigil_core::time::now_nanos;
use vigil_core::ReceiverObs;
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Host,
    NextConsumers, Receiver, Signal, Telemetry,
};

/// The largest `max_octets` accepted. A TCP connection holds up to one frame in memory, so the
/// setting is a per-connection memory bound and is kept to a size no syslog message needs.
pub const MAX_OCTETS_CAP: usize = 16 * 1024 * 1024;

/// `receivers::syslog` as written.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// `rfc5424` or `rfc3164`; required, as in otelcol.
    #[serde(default)]
    pub protocol: String,
    /// IANA zone that RFC 3164 times (which carry none) are read in; default UTC.
    #[serde(default)]
    pub location: Option<String>,
    /// Octet counting is detected per frame; the key is accepted for otelcol compatibility.
    #[serde(default)]
    pub enable_octet_counting: bool,
    /// `LF` (default) or `NUL`: what ends a frame without octet counting.
    #[serde(default)]
    pub non_transparent_framing_trailer: Option<String>,
    /// Largest frame in bytes; default 8192.
    #[serde(default)]
    pub max_octets: Option<usize>,
    #[serde(default)]
    pub allow_skip_pri_header: bool,
    #[serde(default, deserialize_with = "vigil_core::config::present")]
    pub tcp: Option<ListenConfig>,
    #[serde(default, deserialize_with = "vigil_core::config::present")]
    pub udp: Option<ListenConfig>,
    #[serde(default)]
    pub operators: Vec<OperatorConfig>,
}

/// `tcp:` and `udp:`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    #[serde(default)]
    pub listen_address: String,
    /// Adds `net.*` attributes about the peer and the local socket.
    #[serde(default)]
    pub add_attributes: bool,
    #[serde(default)]
    pub max_log_size: Option<Value>,
    #[serde(default)]
    pub one_log_per_packet: bool,
    #[serde(default)]
    pub encoding: Option<String>,
    /// TLS (and mutual TLS with `client_ca_file`) on `tcp`, with otelcol's `configtls` keys.
    #[serde(default)]
    pub tls: Option<TlsServerSettings>,
}

#[derive(Debug)]
struct Checked {
    protocol: Protocol,
    tz: Tz,
    trailer: u8,
    max: usize,
    tcp: Option<ListenConfig>,
    udp: Option<ListenConfig>,
    pipeline: Pipeline,
    /// Open TCP connections at most.
    max_connections: usize,
}

fn err(id: &ComponentId, path: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Receiver, id, path, msg)
}

#[cfg(test)]
fn load(id: &ComponentId, value: &Value) -> Result<Checked, ConfigError> {
    check(
        id,
        vigil_core::config::decode(ComponentKind::Receiver, id, value)?,
    )
}

/// Checks a decoded section and prepares what the component runs with.
fn check(id: &ComponentId, c: SyslogConfig) -> Result<Checked, ConfigError> {
    let protocol = match c.protocol.as_str() {
        "rfc5424" => Protocol::Rfc5424,
        "rfc3164" => Protocol::Rfc3164,
        "" => return Err(err(id, "protocol", "required: rfc5424 or rfc3164")),
        o => {
            return Err(err(
                id,
                "protocol",
                format!("invalid protocol {o:?}: expected rfc5424 or rfc3164"),
            ))
        }
    };
    let tz = match c.location.as_deref() {
        None | Some("") => Tz::UTC,
        Some(l) => l
            .parse()
            .map_err(|_| err(id, "location", format!("unknown location {l:?}: expected an IANA zone such as \"UTC\" or \"America/New_York\"")))?,
    };
    let trailer = match c.non_transparent_framing_trailer.as_deref() {
        None | Some("LF") => b'\n',
        Some("NUL") => 0,
        Some(o) => {
            return Err(err(
                id,
                "non_transparent_framing_trailer",
                format!("invalid value {o:?}: expected LF or NUL"),
            ))
        }
    };
    if c.tcp.is_none() && c.udp.is_none() {
        return Err(err(id, "", "one of tcp or udp is required"));
    }
    for (key, l) in [("tcp", &c.tcp), ("udp", &c.udp)] {
        if let Some(l) = l {
            if l.listen_address.is_empty() {
                return Err(err(
                    id,
                    &format!("{key}::listen_address"),
                    "required: host:port to listen on",
                ));
            }
            check_endpoint(&l.listen_address)
                .map_err(|e| err(id, &format!("{key}::listen_address"), e))?;
            // Keys otelcol has but vigil does not act on yet are refused, never silently ignored.
            if l.max_log_size.is_some() {
                return Err(err(
                    id,
                    &format!("{key}::max_log_size"),
                    "not supported yet: frames are bounded by max_octets",
                ));
            }
            if l.one_log_per_packet {
                return Err(err(
                    id,
                    &format!("{key}::one_log_per_packet"),
                    "not supported yet",
                ));
            }
            if let Some(t) = &l.tls {
                if key == "udp" {
                    return Err(err(
                        id,
                        "udp::tls",
                        "TLS is served on tcp only (syslog over UDP has no TLS)",
                    ));
                }
                t.server_config(&[])
                    .map_err(|e| err(id, &format!("tcp::tls::{}", e.key), e.message))?;
            }
            if let Some(e) = l.encoding.as_deref() {
                if !matches!(e.to_ascii_lowercase().as_str(), "utf-8" | "utf8" | "") {
                    return Err(err(
                        id,
                        &format!("{key}::encoding"),
                        format!("encoding {e:?} is not supported yet: only utf-8"),
                    ));
                }
            }
        }
    }
    let pipeline = Pipeline::build(&c.operators).map_err(|(p, m)| err(id, &p, m))?;
    if let Some(m) = c.max_octets {
        if m == 0 || m > MAX_OCTETS_CAP {
            return Err(err(
                id,
                "max_octets",
                format!("must be between 1 and {MAX_OCTETS_CAP} bytes, got {m}"),
            ));
        }
    }
    Ok(Checked {
        protocol,
        tz,
        trailer,
        max: c.max_octets.unwrap_or(8192),
        tcp: c.tcp,
        udp: c.udp,
        pipeline,
        max_connections: default_max_connections(),
    })
}

struct Factory;

/// The `syslog` receiver factory, for the registry.
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = SyslogConfig;

    fn type_name(&self) -> &'static str {
        "syslog"
    }

    fn validate(&self, id: &ComponentId, cfg: &SyslogConfig) -> Result<(), ConfigError> {
        check(id, cfg.clone()).map(|_| ())
    }
}

impl vigil_core::factory::ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[(Signal::Logs, vigil_core::Stability::Alpha)]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: SyslogConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        let checked = check(&set.id, cfg)?;
        Ok(Arc::new(SyslogReceiver::new(set, checked, next)))
    }
}

/// The `syslog` receiver.
pub struct SyslogReceiver {
    id: ComponentId,
    cfg: Arc<Checked>,
    next: NextConsumers,
    set: vigil_core::Settings,
    tcp_addr: Mutex<Option<std::net::SocketAddr>>,
    /// TCP connections closed on a frame that could not be read.
    bad_frames: metrics::Counter,
}

impl SyslogReceiver {
    fn new(set: vigil_core::Settings, cfg: Checked, next: NextConsumers) -> SyslogReceiver {
        SyslogReceiver {
            id: set.id.clone(),
            cfg: Arc::new(cfg),
            next,
            tcp_addr: Mutex::new(None),
            bad_frames: metrics::counter!("vigil_syslog_bad_frames", "receiver" => set.id.to_string()),
            set,
        }
    }

    /// The TCP address actually bound, once started; useful with port 0.
    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        *self.tcp_addr.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What both transports share: parsing, operators and the pipeline.
struct Handler {
    id: String,
    cfg: Arc<Checked>,
    next: Arc<dyn Consumer>,
    obs: ReceiverObs,
    /// TCP connections closed on a frame that could not be read.
    bad_frames: metrics::Counter,
}

impl Handler {
    async fn handle(
        &self,
        frames: Vec<Vec<u8>>,
        net: &[vigil_core::otlp::common::v1::KeyValue],
        st: &mut PipelineState,
    ) -> Result<(), ConsumeError> {
        let observed = now_nanos();
        let mut out = Vec::with_capacity(frames.len());
        for f in frames {
            let text = String::from_utf8_lossy(&f);
            match parse::parse(self.cfg.protocol, &text, self.cfg.tz, observed) {
                Ok(mut e) => {
                    e.attributes.extend_from_slice(net);
                    if self.cfg.pipeline.is_empty() {
                        out.push(e);
                    } else {
                        self.cfg.pipeline.process(e, 0, None, st, &mut out);
                    }
                }
                Err(reason) => {
                    tracing::debug!(receiver = %self.id, %reason, "dropping an unparsable syslog message");
                    self.obs.failed(Signal::Logs, 1);
                }
            }
        }
        // A recombine's batch goes out when the next message comes after its force_flush_period,
        // or when the connection ends.
        self.cfg.pipeline.flush_due(None, st, &mut out);
        self.send(out).await
    }

    /// Hands finished entries to the pipeline, counted.
    async fn send(&self, out: Vec<crate::stanza::entry::Entry>) -> Result<(), ConsumeError> {
        if out.is_empty() {
            return Ok(());
        }
        let n = out.len();
        let mut groups = crate::stanza::Grouper::default();
        for e in out {
            groups.push(e);
        }
        let data = Telemetry::Logs(groups.take());
        let r = self.next.consume(data).await;
        self.obs.end_op(Signal::Logs, n, &r);
        r
    }
}

fn net_attrs(
    transport: &str,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> Vec<vigil_core::otlp::common::v1::KeyValue> {
    let mut v = vec![
        kv_str("net.transport", transport),
        kv_str("net.peer.ip", peer.ip().to_string()),
        kv_i64("net.peer.port", peer.port() as i64),
    ];
    if let Some(l) = local {
        v.push(kv_str("net.host.ip", l.ip().to_string()));
        v.push(kv_i64("net.host.port", l.port() as i64));
    }
    v
}

#[async_trait]
impl Component for SyslogReceiver {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let Some(next) = self.next.get(Signal::Logs).cloned() else {
            anyhow::bail!(
                "receivers::{}: no logs pipeline uses this receiver",
                self.id
            );
        };
        let stop = self.set.tasks.stopping();
        let tasks = &self.set.tasks;
        let id = self.id.to_string();
        let mk = |transport: &str| {
            Arc::new(Handler {
                id: id.clone(),
                cfg: Arc::clone(&self.cfg),
                next: Arc::clone(&next),
                obs: self.set.receiver_obs(transport),
                bad_frames: self.bad_frames.clone(),
            })
        };
        if let Some(tcp) = &self.cfg.tcp {
            let listener = vigil_core::config::bind_tcp(
                ComponentKind::Receiver,
                &self.id,
                &tcp.listen_address,
            )
            .await?;
            *self.tcp_addr.lock().unwrap_or_else(|p| p.into_inner()) = listener.local_addr().ok();
            let counters = ConnCounters::new("receiver", &id, "tcp");
            let tls = start_tls(
                tcp.tls.as_ref(),
                &format!("receivers::{}::tcp", self.id),
                &counters,
                tasks,
                &stop,
            )?;
            let h = mk("tcp");
            let stop = stop.clone();
            let add = tcp.add_attributes;
            // Syslog senders keep connections open while idle, so there is no idle timeout; the
            // number of connections is capped instead (as every HTTP listener's), and a connection
            // beyond the cap is closed at once and counted in vigil_listener_connections_refused.
            let slots = Arc::new(tokio::sync::Semaphore::new(self.cfg.max_connections));
            let conns = tasks.clone();
            tasks.spawn(async move {
                let who = Listening {
                    kind: "syslog",
                    id: &h.id,
                    refused: counters.refused.clone(),
                };
                accept_capped(listener, who, slots, &stop, |sock, peer, slot| {
                    let h = Arc::clone(&h);
                    let stop = stop.clone();
                    let tls = tls.clone();
                    let counters = counters.clone();
                    conns.spawn(async move {
                        let _slot = slot;
                        let local = sock.local_addr().ok();
                        let net = if add {
                            net_attrs("IP.TCP", peer, local)
                        } else {
                            Vec::new()
                        };
                        let Some(tls) = tls else {
                            return serve_tcp(sock, h, net, stop).await;
                        };
                        if let Some(s) =
                            accept_tls(&tls, sock, ("syslog", &h.id), &counters, &stop).await
                        {
                            serve_tcp(s, h, net, stop).await;
                        }
                    });
                })
                .await
            });
        }
        if let Some(udp) = &self.cfg.udp {
            let addr = resolve_endpoint(&udp.listen_address)
                .map_err(|e| anyhow::anyhow!("receivers::{}::udp::listen_address: {e}", self.id))?;
            let sock = tokio::net::UdpSocket::bind(addr).await.map_err(|e| {
                anyhow::anyhow!(
                    "receivers::{}: cannot listen on udp {}: {e}",
                    self.id,
                    udp.listen_address
                )
            })?;
            let h = mk("udp");
            let stop = stop.clone();
            let add = udp.add_attributes;
            tasks.spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut st = PipelineState::default();
                let local = sock.local_addr().ok();
                loop {
                    let (n, peer) = tokio::select! {
                        _ = stop.cancelled() => break,
                        r = sock.recv_from(&mut buf) => match r {
                            Ok(x) => x,
                            Err(_) => continue,
                        },
                    };
                    let net = if add {
                        net_attrs("IP.UDP", peer, local)
                    } else {
                        Vec::new()
                    };
                    // One datagram is one message (RFC 5426); UDP has no way to ask for a resend.
                    let mut frame = buf[..n].to_vec();
                    frame.truncate(h.cfg.max.max(1));
                    if let Err(e) = h.handle(vec![frame], &net, &mut st).await {
                        tracing::debug!(error = %e, "syslog: pipeline refused a UDP message");
                    }
                }
            });
        }
        Ok(())
    }

    /// Listeners and connections stop together; a connection finishes the frames it is handing
    /// to the pipeline, within the service's deadline.
    async fn shutdown_by(&self, deadline: std::time::Instant) -> anyhow::Result<()> {
        self.set.tasks.stop(deadline).await;
        Ok(())
    }
}

/// Reads frames from one TCP connection. When the pipeline refuses, the connection is read no further
/// until it accepts: TCP's own flow control then pushes back on the sender.
async fn serve_tcp<S: tokio::io::AsyncRead + Unpin>(
    mut sock: S,
    h: Arc<Handler>,
    net: Vec<vigil_core::otlp::common::v1::KeyValue>,
    stop: CancellationToken,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut st = PipelineState::default();
    loop {
        let n = tokio::select! {
            _ = stop.cancelled() => return,
            r = sock.read(&mut chunk) => match r {
                Ok(0) | Err(_) => 0,
                Ok(n) => n,
            },
        };
        let eof = n == 0;
        buf.extend_from_slice(&chunk[..n]);
        let (mut frames, used, bad) = parse::frames(&buf, h.cfg.trailer, h.cfg.max);
        buf.drain(..used);
        if let Some(e) = &bad {
            h.bad_frames.increment(1);
            tracing::warn!(receiver = %h.id, error = %e, "syslog: bad TCP frame; closing the connection");
            buf.clear();
        }
        if eof && !buf.is_empty() {
            // A last message without its trailer still counts.
            frames.push(std::mem::take(&mut buf));
        }
        if !frames.is_empty() {
            let mut delay = std::time::Duration::from_millis(50);
            let mut pending = Some(frames);
            while let Some(f) = pending.take() {
                match h.handle(f.clone(), &net, &mut st).await {
                    Err(ConsumeError::Retryable { .. }) if !stop.is_cancelled() => {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(std::time::Duration::from_secs(5));
                        pending = Some(f);
                    }
                    _ => {}
                }
            }
        }
        if eof || bad.is_some() {
            let mut held = Vec::new();
            h.cfg.pipeline.flush(None, &mut st, &mut held);
            if !held.is_empty() {
                let _ = h.send(held).await;
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    #[derive(Default)]
    struct Sink(Mutex<Vec<Telemetry>>);

    fn settings(id: &ComponentId) -> vigil_core::Settings {
        vigil_core::Settings::new(ComponentKind::Receiver, id)
    }

    #[async_trait]
    impl Consumer for Sink {
        async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
            self.0.lock().unwrap().push(data);
            Ok(())
        }
    }

    /// At the connection cap a new TCP connection is closed at once; the open one keeps working.
    #[tokio::test]
    async fn tcp_connections_are_capped() {
        let id = ComponentId::parse("syslog").unwrap();
        let cfg = json!({"protocol": "rfc5424", "tcp": {"listen_address": "127.0.0.1:0"}});
        let sink = Arc::new(Sink::default());
        let mut next = NextConsumers::new();
        next.insert(Signal::Logs, sink.clone());
        let mut checked = load(&id, &cfg).unwrap();
        checked.max_connections = 1;
        let r = SyslogReceiver::new(settings(&id), checked, next);
        r.start(&Host::detached()).await.unwrap();
        let addr = r.tcp_addr().unwrap();
        let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
        first
            .write_all(b"<13>1 2024-01-01T00:00:00Z h app - - - one\n")
            .await
            .unwrap();
        // Once the first message is through, the first connection holds the only slot.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while sink.0.lock().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "first message not received"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), second.read_to_end(&mut rest))
            .await
            .expect("the connection over the cap was not closed")
            .ok();
        first
            .write_all(b"<13>1 2024-01-01T00:00:00Z h app - - - two\n")
            .await
            .unwrap();
        drop(first);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let n: usize = sink.0.lock().unwrap().iter().map(|t| t.item_count()).sum();
            if n == 2 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "second message not received"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        r.shutdown().await.unwrap();
    }

    /// A frame that cannot be read closes the connection, after the frames before it are delivered,
    /// and is counted. Before framing was bounded, this count panicked the connection task.
    #[tokio::test]
    async fn a_bad_tcp_frame_closes_the_connection_and_is_counted() {
        use metrics_util::debugging::DebuggingRecorder;
        let id = ComponentId::parse("syslog").unwrap();
        let cfg = json!({"protocol": "rfc5424", "tcp": {"listen_address": "127.0.0.1:0"}});
        let sink = Arc::new(Sink::default());
        let mut next = NextConsumers::new();
        next.insert(Signal::Logs, sink.clone());
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let r = metrics::with_local_recorder(&recorder, || {
            load(&id, &cfg).map(|c| SyslogReceiver::new(settings(&id), c, next))
        })
        .unwrap();
        r.start(&Host::detached()).await.unwrap();
        let addr = r.tcp_addr().unwrap();
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        let first = "<13>1 2024-01-01T00:00:00Z h app - - - first";
        let msg = format!(
            "{} {first}18446744073709551615 <13>1 - - - - - second",
            first.len()
        );
        sock.write_all(msg.as_bytes()).await.unwrap();
        let mut rest = Vec::new();
        // The server closes its end: read_to_end returns instead of waiting forever.
        tokio::time::timeout(Duration::from_secs(30), sock.read_to_end(&mut rest))
            .await
            .expect("the connection was not closed")
            .ok();
        r.shutdown().await.unwrap();
        let items: usize = sink.0.lock().unwrap().iter().map(|t| t.item_count()).sum();
        assert_eq!(items, 1);
        let bad = vigil_core::testing::counter(&snapshotter, "vigil_syslog_bad_frames", &[]);
        assert_eq!(bad, 1);
    }

    /// A Java stack trace sent one line per message is joined by recombine (on the parsed
    /// `message`; the body is the raw message, as in otelcol), and the record still open when the
    /// sender disconnects goes out then.
    #[tokio::test]
    async fn recombine_joins_messages_and_flushes_at_disconnect() {
        let id = ComponentId::parse("syslog").unwrap();
        let cfg = json!({
            "protocol": "rfc5424",
            "tcp": {"listen_address": "127.0.0.1:0"},
            "operators": [{
                "type": "recombine",
                "combine_field": "attributes.message",
                "is_first_entry": "attributes.message matches \"^\\d{4}-\\d{2}-\\d{2}\"",
            }],
        });
        let sink = Arc::new(Sink::default());
        let mut next = NextConsumers::new();
        next.insert(Signal::Logs, sink.clone());
        let r = SyslogReceiver::new(settings(&id), load(&id, &cfg).unwrap(), next);
        r.start(&Host::detached()).await.unwrap();
        let mut sock = tokio::net::TcpStream::connect(r.tcp_addr().unwrap())
            .await
            .unwrap();
        for line in [
            "2024-03-01 10:00:00 ERROR request failed",
            "java.lang.IllegalStateException: boom",
            "\tat com.example.Foo.bar(Foo.java:42)",
            "2024-03-01 10:00:01 INFO next",
        ] {
            let msg = format!("<11>1 2024-03-01T10:00:00Z host app - - - {line}\n");
            sock.write_all(msg.as_bytes()).await.unwrap();
        }
        drop(sock);
        let bodies = || -> Vec<String> {
            let mut out = Vec::new();
            for t in sink.0.lock().unwrap().iter() {
                if let Telemetry::Logs(rls) = t {
                    for rl in rls {
                        for sl in &rl.scope_logs {
                            for rec in &sl.log_records {
                                if let Some(m) =
                                    vigil_core::attrs::get_str(&rec.attributes, "message")
                                {
                                    out.push(m.to_string());
                                }
                            }
                        }
                    }
                }
            }
            out
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while bodies().len() < 2 {
            assert!(std::time::Instant::now() < deadline, "got {:?}", bodies());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        r.shutdown().await.unwrap();
        assert_eq!(
            bodies(),
            vec![
                "2024-03-01 10:00:00 ERROR request failed\njava.lang.IllegalStateException: boom\n\tat com.example.Foo.bar(Foo.java:42)".to_string(),
                "2024-03-01 10:00:01 INFO next".to_string(),
            ]
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let id = ComponentId::parse("syslog").unwrap();
        let e = load(&id, &json!({"tcp": {"listen_address": "localhost:1"}})).unwrap_err();
        assert!(e.to_string().contains("syslog::protocol: required"), "{e}");
        let e = load(&id, &json!({"protocol": "rfc5424", "location": "Nowhere/Land", "udp": {"listen_address": "localhost:1"}})).unwrap_err();
        assert!(
            e.to_string().contains("syslog::location: unknown location"),
            "{e}"
        );
        let e = load(
            &id,
            &json!({"protocol": "rfc5424", "tcp": {"listen_adress": "x"}}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("invalid keys: listen_adress"), "{e}");
        let e = load(
            &id,
            &json!({"protocol": "rfc5424", "tcp": {"listen_address": "127.0.0.1:1", "one_log_per_packet": true}}),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("syslog::tcp::one_log_per_packet: not supported yet"),
            "{e}"
        );
        let e = load(
            &id,
            &json!({"protocol": "rfc5424", "udp": {"listen_address": "127.0.0.1:1", "tls": {}}}),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("syslog::udp::tls: TLS is served on tcp only"),
            "{e}"
        );
        let e = load(
            &id,
            &json!({"protocol": "rfc5424", "tcp": {"listen_address": "127.0.0.1:1", "tls": {"cert_file": "/nonexistent.pem"}}}),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("syslog::tcp::tls::cert_file: cannot read"),
            "{e}"
        );
        assert!(load(
            &id,
            &json!({"protocol": "rfc3164", "udp": {"listen_address": "127.0.0.1:5514"}})
        )
        .is_ok());
    }
}
