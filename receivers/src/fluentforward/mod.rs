//! `fluentforward` (`fluent_forward`): receives logs over the Fluent Forward protocol v1, as otelcol's
//! receiver does: Message, Forward, PackedForward and CompressedPackedForward (gzip) events over TCP
//! or a Unix socket (`endpoint: unix:///path`), `{"ack": <chunk>}` answers to events that carry a
//! `chunk` option, and heartbeat echoes on UDP at the TCP port. Each event becomes a log record: the
//! record's `message` or `log` field is the body (the last one wins), every other field an
//! attribute, the tag the `fluent.tag` attribute, the event time the timestamp. TLS and the
//! protocol's handshake phase are not supported (nor are they by otelcol).
//!
//! Bounds: a connection holds at most one message (`max_message_size`, default 8 MiB, and at most
//! `MAX_ITEMS` MessagePack values, `MAX_RECORDS` entries) and a decompressed chunk at most `MAX_DECOMPRESSED_FACTOR` times
//! that; a message over a bound closes its connection and counts in `otelcol_fluent_parse_failures`
//! and `vigil_fluent_messages_too_large`. Open connections are capped as every listener's
//! (`vigil_listener_connections_refused`).

use crate::listen::{accept_capped, Listening, StreamListener};
use async_trait::async_trait;
use rmpv::Value as Mp;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use vigil_core::config::{check_endpoint, resolve_endpoint};
use vigil_core::net::serve::{default_max_connections, ConnCounters};
use vigil_core::otlp::common::v1::{
    any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Host,
    NextConsumers, Receiver, Signal, Telemetry,
};

/// The attribute that carries an event's tag (otelcol's `fluent.tag`).
pub const TAG_ATTRIBUTE: &str = "fluent.tag";
/// Default bound on one message in bytes: fluentd's default chunk limit for a memory buffer.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 8 * 1024 * 1024;
/// MessagePack values one message (or one packed entry) may hold. Decoded values take tens of bytes
/// each, so this bounds the memory a message of tiny values (such as an array of nils) can take.
pub const MAX_ITEMS: u64 = 1 << 20;
/// Log records one message may carry: a gzip chunk of tiny entries would otherwise turn a few
/// megabytes into millions of records.
pub const MAX_RECORDS: usize = 1 << 18;
/// A compressed chunk may decompress to this many times `max_message_size`.
pub const MAX_DECOMPRESSED_FACTOR: usize = 4;
/// Nesting beyond this is refused (a record is a map of values, rarely more than a few deep).
const MAX_DEPTH: usize = 64;

/// `receivers::fluentforward` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FluentForwardConfig {
    /// `host:port` (TCP, with heartbeats on UDP at the same port) or `unix://<path>`. Required, as
    /// otelcol's default is empty.
    #[serde(default)]
    pub endpoint: String,
    /// vigil's: the largest message accepted, in bytes (default 8 MiB).
    #[serde(default = "default_max_message_size")]
    pub max_message_size: usize,
    /// vigil's: open connections at most; default from the open-file limit, as every listener's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
}

impl Default for FluentForwardConfig {
    fn default() -> Self {
        FluentForwardConfig {
            endpoint: String::new(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_connections: None,
        }
    }
}

fn default_max_message_size() -> usize {
    DEFAULT_MAX_MESSAGE_SIZE
}

fn err(id: &ComponentId, path: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Receiver, id, path, msg)
}

fn check(id: &ComponentId, c: &FluentForwardConfig) -> Result<(), ConfigError> {
    if c.endpoint.is_empty() {
        return Err(err(
            id,
            "endpoint",
            "required: host:port to listen on (such as 0.0.0.0:8006), or unix://<path>",
        ));
    }
    match c.endpoint.strip_prefix("unix://") {
        Some("") => return Err(err(id, "endpoint", "unix:// needs a socket path")),
        Some(_) => {}
        None => check_endpoint(&c.endpoint).map_err(|e| err(id, "endpoint", e))?,
    }
    if c.max_message_size < 1024 || c.max_message_size > 256 * 1024 * 1024 {
        return Err(err(
            id,
            "max_message_size",
            format!(
                "must be between 1024 and {} bytes, got {}",
                256 * 1024 * 1024,
                c.max_message_size
            ),
        ));
    }
    if c.max_connections == Some(0) {
        return Err(err(id, "max_connections", "expected at least 1, got 0"));
    }
    Ok(())
}

struct Factory;

/// The `fluentforward` receiver factory (`fluent_forward` is accepted too).
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = FluentForwardConfig;

    fn type_name(&self) -> &'static str {
        "fluentforward"
    }

    fn validate(&self, id: &ComponentId, cfg: &FluentForwardConfig) -> Result<(), ConfigError> {
        check(id, cfg)
    }
}

impl vigil_core::factory::ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[(Signal::Logs, vigil_core::Stability::Beta)]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: FluentForwardConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        check(&set.id, &cfg)?;
        Ok(Arc::new(FluentForwardReceiver::new(set, cfg, next)))
    }
}

/// otelcol's own counters for this receiver, plus vigil's for refused sizes.
#[derive(Clone)]
struct Counters {
    opened: metrics::Counter,
    closed: metrics::Counter,
    parsed: metrics::Counter,
    failures: metrics::Counter,
    records: metrics::Counter,
    too_large: metrics::Counter,
}

impl Counters {
    fn new(id: &str) -> Counters {
        let l = [("receiver", id.to_string())];
        Counters {
            opened: metrics::counter!("otelcol_fluent_opened_connections", &l),
            closed: metrics::counter!("otelcol_fluent_closed_connections", &l),
            parsed: metrics::counter!("otelcol_fluent_events_parsed", &l),
            failures: metrics::counter!("otelcol_fluent_parse_failures", &l),
            records: metrics::counter!("otelcol_fluent_records_generated", &l),
            too_large: metrics::counter!("vigil_fluent_messages_too_large", &l),
        }
    }
}

/// The `fluentforward` receiver.
pub struct FluentForwardReceiver {
    id: ComponentId,
    cfg: FluentForwardConfig,
    next: NextConsumers,
    set: vigil_core::Settings,
    counters: Counters,
    addr: Mutex<Option<std::net::SocketAddr>>,
}

impl FluentForwardReceiver {
    fn new(
        set: vigil_core::Settings,
        cfg: FluentForwardConfig,
        next: NextConsumers,
    ) -> FluentForwardReceiver {
        FluentForwardReceiver {
            id: set.id.clone(),
            counters: Counters::new(&set.id.to_string()),
            cfg,
            next,
            set,
            addr: Mutex::new(None),
        }
    }

    /// The TCP address bound, once started; useful with port 0.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        *vigil_core::lock(&self.addr)
    }
}

/// What every connection shares.
struct Shared {
    id: String,
    next: Arc<dyn Consumer>,
    obs: vigil_core::ReceiverObs,
    counters: Counters,
    max: usize,
}

#[async_trait]
impl Component for FluentForwardReceiver {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let Some(next) = self.next.get(Signal::Logs).cloned() else {
            anyhow::bail!(
                "receivers::{}: no logs pipeline uses this receiver",
                self.id
            );
        };
        let id = self.id.to_string();
        let transport = if self.cfg.endpoint.starts_with("unix://") {
            "unix"
        } else {
            "tcp"
        };
        let shared = Arc::new(Shared {
            id: id.clone(),
            next,
            obs: self.set.receiver_obs(transport),
            counters: self.counters.clone(),
            max: self.cfg.max_message_size,
        });
        let slots = Arc::new(tokio::sync::Semaphore::new(
            self.cfg
                .max_connections
                .unwrap_or_else(default_max_connections),
        ));
        let conn_counters = ConnCounters::new("receiver", &id, transport);
        let stop = self.set.tasks.stopping();
        let tasks = self.set.tasks.clone();
        if let Some(path) = self.cfg.endpoint.strip_prefix("unix://") {
            // A socket left by an earlier run would make bind fail; otelcol removes it too.
            let _ = std::fs::remove_file(path);
            let l = tokio::net::UnixListener::bind(path).map_err(|e| {
                anyhow::anyhow!("receivers::{id}: cannot listen on unix socket {path}: {e}")
            })?;
            spawn_listener(l, shared, slots, &conn_counters, stop, tasks);
            return Ok(());
        }
        let listener =
            vigil_core::config::bind_tcp(ComponentKind::Receiver, &self.id, &self.cfg.endpoint)
                .await?;
        let local = listener.local_addr()?;
        *vigil_core::lock(&self.addr) = Some(local);
        // Heartbeats: otelcol answers UDP on the TCP port by echoing what it got.
        let udp_addr = resolve_endpoint(&self.cfg.endpoint)
            .map(|mut a| {
                a.set_port(local.port());
                a
            })
            .map_err(|e| anyhow::anyhow!("receivers::{id}::endpoint: {e}"))?;
        let udp = tokio::net::UdpSocket::bind(udp_addr).await.map_err(|e| {
            anyhow::anyhow!("receivers::{id}: cannot listen for heartbeats on udp {udp_addr}: {e}")
        })?;
        let hb_stop = stop.clone();
        self.set.tasks.spawn(async move {
            let mut buf = [0u8; 64];
            loop {
                let (n, peer) = tokio::select! {
                    _ = hb_stop.cancelled() => break,
                    r = udp.recv_from(&mut buf) => match r {
                        Ok(x) => x,
                        Err(_) => continue,
                    },
                };
                let _ = udp.send_to(&buf[..n.max(1).min(buf.len())], peer).await;
            }
        });
        spawn_listener(listener, shared, slots, &conn_counters, stop, tasks);
        Ok(())
    }

    /// Listeners and connections stop together; a connection finishes the message it is handing
    /// to the pipeline, within the service's deadline.
    async fn shutdown_by(&self, deadline: std::time::Instant) -> anyhow::Result<()> {
        self.set.tasks.stop(deadline).await;
        if let Some(path) = self.cfg.endpoint.strip_prefix("unix://") {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }
}

/// Accepts on `listener` until the receiver stops, serving each connection in its own task.
fn spawn_listener<L: StreamListener>(
    listener: L,
    shared: Arc<Shared>,
    slots: Arc<tokio::sync::Semaphore>,
    conn_counters: &ConnCounters,
    stop: CancellationToken,
    tasks: vigil_core::Tasks,
) where
    L::Conn: AsyncRead + AsyncWrite + Unpin,
{
    let refused = conn_counters.refused.clone();
    tasks.clone().spawn(async move {
        let who = Listening {
            kind: "fluentforward",
            id: &shared.id,
            refused,
        };
        accept_capped(listener, who, slots, &stop, |sock, _, slot| {
            admit(sock, slot, &shared, &stop, &tasks)
        })
        .await
    });
}

/// Serves an admitted connection, holding its slot until it ends.
fn admit<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    sock: S,
    slot: OwnedSemaphorePermit,
    shared: &Arc<Shared>,
    stop: &CancellationToken,
    tasks: &vigil_core::Tasks,
) {
    let (shared, stop) = (Arc::clone(shared), stop.clone());
    shared.counters.opened.increment(1);
    tasks.spawn(async move {
        let _slot = slot;
        if let Err(e) = serve_conn(sock, &shared, &stop).await {
            tracing::debug!(receiver = %shared.id, error = %e, "fluentforward: closing a connection");
        }
        shared.counters.closed.increment(1);
    });
}

/// Where a MessagePack scan stands: it resumes where the last read ended, so a large message is
/// scanned once however many reads it takes. Hand-written because no MessagePack crate finds a
/// value's end without decoding it, and decoding again after every read would cost the square of
/// the size.
#[derive(Default)]
struct Scan {
    pos: usize,
    /// Values still to read in each open array or map (a map's entries count twice).
    open: Vec<u64>,
    items: u64,
}

enum Step {
    /// The first value in the buffer ends at this offset.
    Done(usize),
    More,
    Bad(String),
}

fn be(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |a, x| (a << 8) | *x as u64)
}

impl Scan {
    /// Scans on from where the last call stopped.
    fn step(&mut self, buf: &[u8]) -> Step {
        loop {
            let Some(&m) = buf.get(self.pos) else {
                return Step::More;
            };
            // (header bytes, bytes of the length field after the marker, fixed payload, children
            // per length unit): a length field gives either the payload size or the child count.
            let (head, len_bytes, fixed, per_len): (usize, usize, u64, u64) = match m {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (1, 0, 0, 0),
                0x80..=0x8f => (1, 0, 0, 2),
                0x90..=0x9f => (1, 0, 0, 1),
                0xa0..=0xbf => (1, 0, (m & 0x1f) as u64, 0),
                0xc4 | 0xd9 => (2, 1, 0, 0),
                0xc5 | 0xda => (3, 2, 0, 0),
                0xc6 | 0xdb => (5, 4, 0, 0),
                0xc7 => (3, 1, 0, 0),
                0xc8 => (4, 2, 0, 0),
                0xc9 => (6, 4, 0, 0),
                0xca => (1, 0, 4, 0),
                0xcb => (1, 0, 8, 0),
                0xcc | 0xd0 => (1, 0, 1, 0),
                0xcd | 0xd1 => (1, 0, 2, 0),
                0xce | 0xd2 => (1, 0, 4, 0),
                0xcf | 0xd3 => (1, 0, 8, 0),
                0xd4 => (2, 0, 1, 0),
                0xd5 => (2, 0, 2, 0),
                0xd6 => (2, 0, 4, 0),
                0xd7 => (2, 0, 8, 0),
                0xd8 => (2, 0, 16, 0),
                0xdc => (3, 2, 0, 1),
                0xdd => (5, 4, 0, 1),
                0xde => (3, 2, 0, 2),
                0xdf => (5, 4, 0, 2),
                0xc1 => return Step::Bad("0xc1 is not a MessagePack marker".into()),
            };
            if buf.len() < self.pos + head {
                return Step::More;
            }
            let len = if len_bytes > 0 {
                be(&buf[self.pos + 1..self.pos + 1 + len_bytes])
            } else {
                0
            };
            let (payload, children) = match (m, per_len) {
                (0x80..=0x8f, _) => (0, 2 * (m & 0x0f) as u64),
                (0x90..=0x9f, _) => (0, (m & 0x0f) as u64),
                (_, 0) => (fixed + len, 0),
                (_, k) => (0, k * len),
            };
            let end = self.pos as u64 + head as u64 + payload;
            if (buf.len() as u64) < end {
                return Step::More;
            }
            self.pos = end as usize;
            self.items += 1;
            if self.items > MAX_ITEMS {
                return Step::Bad(format!(
                    "more than {MAX_ITEMS} MessagePack values in one message"
                ));
            }
            if children > 0 {
                if self.open.len() >= MAX_DEPTH {
                    return Step::Bad(format!("nested deeper than {MAX_DEPTH}"));
                }
                self.open.push(children);
                continue;
            }
            // A value ended: close every container it completes.
            loop {
                match self.open.last_mut() {
                    None => return Step::Done(self.pos),
                    Some(n) => {
                        *n -= 1;
                        if *n > 0 {
                            break;
                        }
                        self.open.pop();
                    }
                }
            }
        }
    }
}

/// Reads messages from one connection until it ends, handing each to the pipeline and answering
/// its `chunk` once the pipeline took it. When the pipeline refuses with a retryable error, the
/// connection is read no further until it accepts, so TCP pushes back on the sender.
async fn serve_conn<S: AsyncRead + AsyncWrite + Unpin>(
    mut sock: S,
    sh: &Shared,
    stop: &CancellationToken,
) -> Result<(), String> {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut scan = Scan::default();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // Take every complete message already buffered before reading more.
        match scan.step(&buf) {
            Step::Done(end) if end > sh.max => {
                sh.counters.failures.increment(1);
                sh.counters.too_large.increment(1);
                return Err(format!(
                    "a message is larger than max_message_size ({} bytes)",
                    sh.max
                ));
            }
            Step::Done(end) => {
                let frame: Vec<u8> = buf.drain(..end).collect();
                scan = Scan::default();
                let (records, ack) = match decode_message(&frame, sh.max) {
                    Ok(x) => x,
                    Err(e) => {
                        sh.counters.failures.increment(1);
                        return Err(format!("cannot decode a message: {e}"));
                    }
                };
                sh.counters.parsed.increment(1);
                sh.counters.records.increment(records.len() as u64);
                deliver(sh, records, stop).await;
                if let Some(chunk_id) = ack {
                    let mut out = Vec::new();
                    rmpv::encode::write_value(
                        &mut out,
                        &Mp::Map(vec![(Mp::from("ack"), Mp::from(chunk_id))]),
                    )
                    .map_err(|e| e.to_string())?;
                    sock.write_all(&out)
                        .await
                        .map_err(|e| format!("cannot send an ack: {e}"))?;
                }
                continue;
            }
            Step::Bad(e) => {
                sh.counters.failures.increment(1);
                return Err(e);
            }
            Step::More => {}
        }
        if buf.len() > sh.max {
            sh.counters.failures.increment(1);
            sh.counters.too_large.increment(1);
            return Err(format!(
                "a message is larger than max_message_size ({} bytes)",
                sh.max
            ));
        }
        let n = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = sock.read(&mut chunk) => r.map_err(|e| e.to_string())?,
        };
        if n == 0 {
            if !buf.is_empty() {
                sh.counters.failures.increment(1);
                return Err("the connection ended inside a message".into());
            }
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Hands records to the pipeline, retrying while it pushes back; what it refuses for good is
/// counted by the receiver's own metrics and then acknowledged, since a resend could not help.
async fn deliver(sh: &Shared, records: Vec<LogRecord>, stop: &CancellationToken) {
    if records.is_empty() {
        return;
    }
    let n = records.len();
    let data = vec![ResourceLogs {
        resource: Some(Resource::default()),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope::default()),
            log_records: records,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }];
    let mut delay = Duration::from_millis(50);
    loop {
        let r = sh.next.consume(Telemetry::Logs(data.clone())).await;
        sh.obs.end_op(Signal::Logs, n, &r);
        match r {
            Err(ConsumeError::Retryable { .. }) if !stop.is_cancelled() => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::debug!(receiver = %sh.id, error = %e, "fluentforward: the pipeline refused a message");
                return;
            }
            Ok(()) => return,
        }
    }
}

/// Decodes one whole message (already framed) into log records and the chunk id to acknowledge.
fn decode_message(frame: &[u8], max: usize) -> Result<(Vec<LogRecord>, Option<String>), String> {
    let v = rmpv::decode::read_value(&mut &frame[..]).map_err(|e| e.to_string())?;
    let Mp::Array(mut parts) = v else {
        return Err("an event must be an array".into());
    };
    if parts.len() < 2 {
        return Err(format!(
            "an event needs at least a tag and entries, got {} elements",
            parts.len()
        ));
    }
    let tag = match &parts[0] {
        Mp::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Mp::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => return Err("the tag must be a string".into()),
    };
    // The carrier mode is told by the second element, as the specification says.
    let mut out = Vec::new();
    let options;
    match &parts[1] {
        Mp::Integer(_) | Mp::Ext(..) | Mp::F32(_) | Mp::F64(_) => {
            // Message: [tag, time, record, option?]
            if parts.len() < 3 || parts.len() > 4 {
                return Err(format!(
                    "a Message event has 3 or 4 elements, got {}",
                    parts.len()
                ));
            }
            options = parts.get(3).cloned();
            let record = std::mem::replace(&mut parts[2], Mp::Nil);
            out.push(to_record(&tag, &parts[1], record)?);
        }
        Mp::Array(_) => {
            // Forward: [tag, [[time, record], ...], option?]
            if parts.len() > 3 {
                return Err(format!(
                    "a Forward event has 2 or 3 elements, got {}",
                    parts.len()
                ));
            }
            options = parts.get(2).cloned();
            let Mp::Array(entries) = std::mem::replace(&mut parts[1], Mp::Nil) else {
                unreachable!("matched as an array above")
            };
            if entries.len() > MAX_RECORDS {
                return Err(format!("more than {MAX_RECORDS} entries in one message"));
            }
            for e in entries {
                out.push(entry(&tag, e)?);
            }
        }
        Mp::String(_) | Mp::Binary(_) => {
            // PackedForward: [tag, <entries as one MessagePack stream>, option?]
            if parts.len() > 3 {
                return Err(format!(
                    "a PackedForward event has 2 or 3 elements, got {}",
                    parts.len()
                ));
            }
            options = parts.get(2).cloned();
            let raw: Vec<u8> = match std::mem::replace(&mut parts[1], Mp::Nil) {
                Mp::String(s) => s.into_bytes(),
                Mp::Binary(b) => b,
                _ => unreachable!("matched as a string or binary above"),
            };
            let gzip = option_str(options.as_ref(), "compressed").as_deref() == Some("gzip");
            let raw = if gzip { gunzip(&raw, max)? } else { raw };
            let mut rest = &raw[..];
            while !rest.is_empty() {
                let mut scan = Scan::default();
                let end = match scan.step(rest) {
                    Step::Done(end) => end,
                    Step::More => return Err("a packed entry is cut short".into()),
                    Step::Bad(e) => return Err(e),
                };
                if out.len() >= MAX_RECORDS {
                    return Err(format!("more than {MAX_RECORDS} entries in one message"));
                }
                let v = rmpv::decode::read_value(&mut &rest[..end]).map_err(|e| e.to_string())?;
                out.push(entry(&tag, v)?);
                rest = &rest[end..];
            }
        }
        _ => return Err("cannot tell the event mode from its second element".into()),
    }
    if let Some(o) = &options {
        if !matches!(o, Mp::Map(_) | Mp::Nil) {
            return Err("the option element must be a map".into());
        }
    }
    Ok((out, option_str(options.as_ref(), "chunk")))
}

fn option_str(options: Option<&Mp>, key: &str) -> Option<String> {
    let Some(Mp::Map(kv)) = options else {
        return None;
    };
    kv.iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .and_then(|(_, v)| v.as_str().map(str::to_string))
        .filter(|s| !s.is_empty())
}

/// Decompresses a CompressedPackedForward chunk (one or more gzip members), bounded.
fn gunzip(raw: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let limit = (max * MAX_DECOMPRESSED_FACTOR) as u64;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(raw)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot decompress a gzip chunk: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!(
            "a compressed chunk decompresses to more than {limit} bytes"
        ));
    }
    Ok(out)
}

/// `[time, record]`.
fn entry(tag: &str, e: Mp) -> Result<LogRecord, String> {
    let Mp::Array(mut te) = e else {
        return Err("an entry must be an array of time and record".into());
    };
    if te.len() != 2 {
        return Err(format!("an entry has 2 elements, got {}", te.len()));
    }
    let record = te.pop().unwrap_or(Mp::Nil);
    to_record(tag, &te[0], record)
}

/// An event time: seconds as an integer, or EventTime (ext type 0: seconds and nanoseconds, each a
/// big-endian u32). A float of seconds is taken as well, as some clients send one.
fn event_time(t: &Mp) -> Result<u64, String> {
    match t {
        Mp::Integer(i) => i
            .as_u64()
            .map(|s| s.saturating_mul(1_000_000_000))
            .ok_or_else(|| "the event time is negative".into()),
        Mp::Ext(0, b) if b.len() == 8 => {
            Ok(be(&b[..4]).saturating_mul(1_000_000_000) + be(&b[4..]))
        }
        Mp::Ext(ty, b) => Err(format!(
            "the event time is an extension of type {ty} and {} bytes, expected EventTime (type 0, 8 bytes)",
            b.len()
        )),
        Mp::F64(f) if *f >= 0.0 => Ok((*f * 1e9) as u64),
        Mp::F32(f) if *f >= 0.0 => Ok((*f as f64 * 1e9) as u64),
        _ => Err("the event time must be an integer or an EventTime".into()),
    }
}

fn to_record(tag: &str, time: &Mp, record: Mp) -> Result<LogRecord, String> {
    let mut r = LogRecord {
        time_unix_nano: event_time(time)?,
        attributes: vec![vigil_core::attrs::kv_str(TAG_ATTRIBUTE, tag)],
        ..Default::default()
    };
    let Mp::Map(fields) = record else {
        return Err("a record must be a map".into());
    };
    for (k, v) in fields {
        let key = key_text(k);
        let value = any(v);
        // fluentd writes the line as `message`, Fluent Bit as `log`.
        if key == "message" || key == "log" {
            r.body = Some(value);
        } else if let Some(kv) = r.attributes.iter_mut().find(|kv| kv.key == key) {
            kv.value = Some(value);
        } else {
            r.attributes.push(KeyValue {
                key,
                value: Some(value),
                ..Default::default()
            });
        }
    }
    Ok(r)
}

fn key_text(k: Mp) -> String {
    match k {
        Mp::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Mp::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
        other => other.to_string(),
    }
}

/// A MessagePack value as an OTLP value, with otelcol's type rules: unsigned integers beyond
/// int64 become their decimal text, binary becomes text, nil an empty value.
fn any(v: Mp) -> AnyValue {
    let value = match v {
        Mp::Nil => None,
        Mp::Boolean(b) => Some(Value::BoolValue(b)),
        Mp::Integer(i) => Some(match i.as_i64() {
            Some(x) => Value::IntValue(x),
            None => Value::StringValue(i.to_string()),
        }),
        Mp::F32(f) => Some(Value::DoubleValue(f as f64)),
        Mp::F64(f) => Some(Value::DoubleValue(f)),
        Mp::String(s) => Some(Value::StringValue(
            String::from_utf8_lossy(s.as_bytes()).into_owned(),
        )),
        Mp::Binary(b) => Some(Value::StringValue(String::from_utf8_lossy(&b).into_owned())),
        Mp::Array(a) => Some(Value::ArrayValue(ArrayValue {
            values: a.into_iter().map(any).collect(),
        })),
        Mp::Map(m) => Some(Value::KvlistValue(KeyValueList {
            values: m
                .into_iter()
                .map(|(k, v)| KeyValue {
                    key: key_text(k),
                    value: Some(any(v)),
                    ..Default::default()
                })
                .collect(),
        })),
        e @ Mp::Ext(..) => Some(Value::StringValue(e.to_string())),
    };
    AnyValue { value }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn enc(v: &Mp) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }

    fn rec(fields: &[(&str, Mp)]) -> Mp {
        Mp::Map(
            fields
                .iter()
                .map(|(k, v)| (Mp::from(*k), v.clone()))
                .collect(),
        )
    }

    fn event_time_ext(s: u32, ns: u32) -> Mp {
        let mut b = s.to_be_bytes().to_vec();
        b.extend(ns.to_be_bytes());
        Mp::Ext(0, b)
    }

    #[test]
    fn the_scan_resumes_across_reads_and_finds_each_message_end() {
        let one = enc(&Mp::Array(vec![
            Mp::from("app"),
            Mp::from(1_700_000_000u64),
            rec(&[("log", Mp::from("x".repeat(300))), ("n", Mp::from(-5))]),
        ]));
        let mut stream = one.clone();
        stream.extend(enc(&Mp::from(7)));
        let mut s = Scan::default();
        for cut in [1, 2, 10, 200, one.len() - 1] {
            assert!(matches!(s.step(&stream[..cut]), Step::More), "cut {cut}");
        }
        match s.step(&stream) {
            Step::Done(end) => assert_eq!(end, one.len()),
            _ => panic!("not done"),
        }
        assert!(matches!(Scan::default().step(&[0xc1]), Step::Bad(_)));
        // 2^20 + 1 nils in an array32 are refused before decoding.
        let mut many = vec![0xdd];
        many.extend(((MAX_ITEMS + 1) as u32).to_be_bytes());
        many.extend(std::iter::repeat_n(0xc0, MAX_ITEMS as usize + 1));
        assert!(matches!(Scan::default().step(&many), Step::Bad(_)));
    }

    #[test]
    fn all_modes_decode_with_otelcol_conversion() {
        let t = event_time_ext(1_700_000_000, 123);
        let msg = enc(&Mp::Array(vec![
            Mp::from("tag.a"),
            t.clone(),
            rec(&[
                ("message", Mp::from("hello")),
                ("big", Mp::from(u64::MAX)),
                ("bin", Mp::Binary(b"raw".to_vec())),
                ("nested", rec(&[("k", Mp::from(true))])),
            ]),
            rec(&[("chunk", Mp::from("c1"))]),
        ]));
        let (r, ack) = decode_message(&msg, 1 << 20).unwrap();
        assert_eq!(ack.as_deref(), Some("c1"));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].time_unix_nano, 1_700_000_000_000_000_123);
        assert_eq!(
            r[0].body.as_ref().unwrap().value,
            Some(Value::StringValue("hello".into()))
        );
        let get = |k: &str| vigil_core::attrs::get(&r[0].attributes, k).cloned();
        assert_eq!(get(TAG_ATTRIBUTE), Some(Value::StringValue("tag.a".into())));
        assert_eq!(get("big"), Some(Value::StringValue(u64::MAX.to_string())));
        assert_eq!(get("bin"), Some(Value::StringValue("raw".into())));
        let entries = Mp::Array(vec![
            Mp::Array(vec![Mp::from(10), rec(&[("log", Mp::from("one"))])]),
            Mp::Array(vec![t.clone(), rec(&[("log", Mp::from("two"))])]),
        ]);
        let (r, ack) =
            decode_message(&enc(&Mp::Array(vec![Mp::from("f"), entries])), 1 << 20).unwrap();
        assert_eq!((r.len(), ack), (2, None));
        assert_eq!(r[0].time_unix_nano, 10_000_000_000);
        let mut packed = enc(&Mp::Array(vec![
            Mp::from(1),
            rec(&[("log", Mp::from("p1"))]),
        ]));
        packed.extend(enc(&Mp::Array(vec![t, rec(&[("log", Mp::from("p2"))])])));
        let (r, _) = decode_message(
            &enc(&Mp::Array(vec![Mp::from("p"), Mp::Binary(packed.clone())])),
            1 << 20,
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&packed).unwrap();
        let gz = gz.finish().unwrap();
        let (r, ack) = decode_message(
            &enc(&Mp::Array(vec![
                Mp::from("p"),
                Mp::Binary(gz),
                rec(&[("compressed", Mp::from("gzip")), ("chunk", Mp::from("z"))]),
            ])),
            1 << 20,
        )
        .unwrap();
        assert_eq!((r.len(), ack.as_deref()), (2, Some("z")));
        assert_eq!(
            r[1].body.as_ref().unwrap().value,
            Some(Value::StringValue("p2".into()))
        );
        // A gzip bomb stops at its bound.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 5 * 1024 * 1024]).unwrap();
        let e = gunzip(&gz.finish().unwrap(), 1024 * 1024).unwrap_err();
        assert!(e.contains("more than"), "{e}");
    }

    #[derive(Default)]
    struct Sink(std::sync::Mutex<Vec<LogRecord>>);

    #[async_trait]
    impl Consumer for Sink {
        async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
            if let Telemetry::Logs(rls) = data {
                let mut v = self.0.lock().unwrap();
                for rl in rls {
                    for sl in rl.scope_logs {
                        v.extend(sl.log_records);
                    }
                }
            }
            Ok(())
        }
    }

    /// fluentd's own Python client (fluent-logger) sends Message events with and without acks, and
    /// the msgpack package it uses encodes Forward, PackedForward and gzip-compressed PackedForward
    /// events with chunks; every ack comes back, the heartbeat is echoed, and every event arrives
    /// with otelcol's conversion.
    #[tokio::test]
    async fn a_real_fluent_client_is_received_and_acknowledged() {
        let python = vigil_tests::python();
        let id = ComponentId::parse("fluentforward").unwrap();
        let cfg = FluentForwardConfig {
            endpoint: "127.0.0.1:0".into(),
            ..Default::default()
        };
        let sink = Arc::new(Sink::default());
        let mut next = NextConsumers::new();
        next.insert(Signal::Logs, sink.clone());
        let r = FluentForwardReceiver::new(
            vigil_core::Settings::new(ComponentKind::Receiver, &id),
            cfg,
            next,
        );
        r.start(&Host::detached()).await.unwrap();
        let port = r.local_addr().unwrap().port().to_string();
        let out = tokio::task::spawn_blocking(move || {
            vigil_tests::python_script_json(&python, "fluent_client.py", &["127.0.0.1", &port])
        })
        .await
        .unwrap();
        r.shutdown().await.unwrap();
        for k in [
            "message_acked",
            "message_plain",
            "forward",
            "packed",
            "compressed",
        ] {
            assert_eq!(out[k], serde_json::json!(true), "{k}: {out}");
        }
        assert_eq!(out["heartbeat"], "00");
        let got = sink.0.lock().unwrap();
        let body = |r: &LogRecord| match r.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(Value::StringValue(s)) => s.clone(),
            other => format!("{other:?}"),
        };
        let bodies: Vec<String> = got.iter().map(body).collect();
        assert_eq!(
            bodies,
            [
                "hello from fluent-logger",
                "second",
                "f1",
                "f2",
                "p0",
                "p1",
                "p2",
                "p0",
                "p1",
                "p2"
            ]
        );
        let first = &got[0];
        assert_eq!(first.time_unix_nano, 1_700_000_000_250_000_000);
        assert_eq!(
            vigil_core::attrs::get_str(&first.attributes, TAG_ATTRIBUTE),
            Some("app.web")
        );
        assert_eq!(
            vigil_core::attrs::get(&first.attributes, "status"),
            Some(&Value::IntValue(200))
        );
        assert_eq!(got[1].time_unix_nano, 1_700_000_001_000_000_000);
        assert!(matches!(
            vigil_core::attrs::get(&got[1].attributes, "nested"),
            Some(Value::KvlistValue(_))
        ));
        assert_eq!(
            vigil_core::attrs::get_str(&got[9].attributes, TAG_ATTRIBUTE),
            Some("gz")
        );
    }

    /// A message over max_message_size closes the connection and is counted; the next connection
    /// is served.
    #[tokio::test]
    async fn an_oversized_message_closes_its_connection() {
        let id = ComponentId::parse("fluentforward").unwrap();
        let cfg = FluentForwardConfig {
            endpoint: "127.0.0.1:0".into(),
            max_message_size: 4096,
            ..Default::default()
        };
        let sink = Arc::new(Sink::default());
        let mut next = NextConsumers::new();
        next.insert(Signal::Logs, sink.clone());
        let r = FluentForwardReceiver::new(
            vigil_core::Settings::new(ComponentKind::Receiver, &id),
            cfg,
            next,
        );
        r.start(&Host::detached()).await.unwrap();
        let addr = r.local_addr().unwrap();
        let big = enc(&Mp::Array(vec![
            Mp::from("t"),
            Mp::from(1),
            rec(&[("log", Mp::from("x".repeat(100_000)))]),
        ]));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(&big).await;
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut rest))
            .await
            .expect("the connection was not closed")
            .ok();
        let small = enc(&Mp::Array(vec![
            Mp::from("t"),
            Mp::from(1),
            rec(&[("log", Mp::from("ok"))]),
            rec(&[("chunk", Mp::from("c"))]),
        ]));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&small).await.unwrap();
        let mut ack = vec![0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut ack))
            .await
            .unwrap()
            .unwrap();
        let v = rmpv::decode::read_value(&mut &ack[..n]).unwrap();
        assert_eq!(v, Mp::Map(vec![(Mp::from("ack"), Mp::from("c"))]));
        r.shutdown().await.unwrap();
        assert_eq!(sink.0.lock().unwrap().len(), 1);
    }

    /// `endpoint: unix://<path>` serves the same protocol on a Unix socket, and removes the socket
    /// at shutdown.
    #[tokio::test]
    async fn a_unix_socket_endpoint_serves_and_acks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fluent.sock");
        let id = ComponentId::parse("fluentforward").unwrap();
        let cfg = FluentForwardConfig {
            endpoint: format!("unix://{}", path.display()),
            ..Default::default()
        };
        let sink = Arc::new(Sink::default());
        let mut next = NextConsumers::new();
        next.insert(Signal::Logs, sink.clone());
        let r = FluentForwardReceiver::new(
            vigil_core::Settings::new(ComponentKind::Receiver, &id),
            cfg,
            next,
        );
        r.start(&Host::detached()).await.unwrap();
        let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
        let msg = enc(&Mp::Array(vec![
            Mp::from("u"),
            event_time_ext(1, 2),
            rec(&[("log", Mp::from("over unix"))]),
            rec(&[("chunk", Mp::from("k"))]),
        ]));
        s.write_all(&msg).await.unwrap();
        let mut ack = vec![0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut ack))
            .await
            .unwrap()
            .unwrap();
        let v = rmpv::decode::read_value(&mut &ack[..n]).unwrap();
        assert_eq!(v, Mp::Map(vec![(Mp::from("ack"), Mp::from("k"))]));
        r.shutdown().await.unwrap();
        assert!(!path.exists(), "the socket is removed at shutdown");
        let got = sink.0.lock().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].time_unix_nano, 1_000_000_002);
    }

    #[test]
    fn a_packed_message_of_too_many_entries_is_refused() {
        let one = enc(&Mp::Array(vec![Mp::from(1), Mp::Map(vec![])]));
        let packed: Vec<u8> = one.repeat(MAX_RECORDS + 1);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&packed).unwrap();
        let msg = enc(&Mp::Array(vec![
            Mp::from("p"),
            Mp::Binary(gz.finish().unwrap()),
            rec(&[("compressed", Mp::from("gzip"))]),
        ]));
        let e = decode_message(&msg, DEFAULT_MAX_MESSAGE_SIZE).unwrap_err();
        assert!(e.contains("entries in one message"), "{e}");
    }

    #[test]
    fn config_errors_name_the_key() {
        let id = ComponentId::parse("fluentforward").unwrap();
        let load = |v: serde_json::Value| {
            let c: FluentForwardConfig =
                vigil_core::config::decode(ComponentKind::Receiver, &id, &v)?;
            check(&id, &c).map(|_| c)
        };
        let e = load(serde_json::json!({})).unwrap_err().to_string();
        assert!(e.contains("fluentforward::endpoint: required"), "{e}");
        let e = load(serde_json::json!({"endpoint": "0.0.0.0:8006", "max_message_size": 10}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_message_size"), "{e}");
        let c = load(serde_json::json!({"endpoint": "unix:///tmp/x.sock"})).unwrap();
        assert_eq!(c.max_message_size, DEFAULT_MAX_MESSAGE_SIZE);
    }
}
