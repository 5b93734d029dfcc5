//! `tcplog` (otelcol's `tcp_log`): newline-separated (or `multiline`-split) log lines over TCP, with
//! otelcol-contrib's keys (`listen_address`, `max_log_size`, `tls`, `add_attributes`,
//! `one_log_per_packet`, `encoding`, `multiline`, `preserve_*_whitespaces`, `attributes`, `resource`,
//! `operators`, `retry_on_failure`). Each record runs through the stanza operators as `filelog`'s do.
//!
//! The parts `udplog` shares (splitting a byte stream into records, decoding, trimming, `net.*`
//! attributes, handing entries to the pipeline) live here as [`Records`] and [`Emitter`].

use crate::filelog::config::{build_operators, MultilineConfig, RetryOnFailure, Split};
use crate::listen::{accept_capped, accept_tls, start_tls, Listening};
use crate::serve::{default_max_connections, ConnCounters};
use crate::stanza::entry::Entry;
use crate::stanza::operators::{OperatorConfig, Pipeline, PipelineState};
use crate::stanza::ByteSize;
use crate::tls::TlsServerSettings;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;
use vigil_core::attrs::{kv, kv_str};
use vigil_core::otlp::common::v1::any_value::Value as AnyValue;
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::time::now_nanos;
use vigil_core::ReceiverObs;
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, Consumer, Host, NextConsumers, Receiver,
    Signal,
};

/// otelcol's default `max_log_size` for TCP.
pub const DEFAULT_MAX_LOG_SIZE: usize = 1024 * 1024;
/// otelcol refuses a smaller `max_log_size` (its read buffer starts at this size).
pub const MIN_MAX_LOG_SIZE: usize = 64 * 1024;
/// vigil's ceiling: each connection holds up to one record of this size, so `max_log_size` times the
/// connection cap is the receiver's memory bound; no log line needs more.
pub const MAX_LOG_SIZE_CAP: usize = 16 * 1024 * 1024;

/// `receivers::tcplog` as written. The keys it shares with `filelog` and `udplog` are listed again
/// here, not flattened in, so that `deny_unknown_fields` keeps refusing misspelt keys (see
/// `filelog::config`); their checking is shared.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TcpLogConfig {
    #[serde(default)]
    pub listen_address: String,
    /// Longest record in bytes; longer ones are cut and flagged `log.truncated`. Default 1MiB.
    #[serde(default)]
    pub max_log_size: Option<ByteSize>,
    #[serde(default)]
    pub tls: Option<TlsServerSettings>,
    #[serde(default)]
    pub add_attributes: bool,
    /// The whole connection, up to `max_log_size`, is one record.
    #[serde(default)]
    pub one_log_per_packet: bool,
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(default)]
    pub multiline: Option<MultilineConfig>,
    #[serde(default)]
    pub preserve_leading_whitespaces: bool,
    #[serde(default)]
    pub preserve_trailing_whitespaces: bool,
    #[serde(default)]
    pub operators: Vec<OperatorConfig>,
    #[serde(default)]
    pub attributes: HashMap<String, Value>,
    #[serde(default)]
    pub resource: HashMap<String, Value>,
    #[serde(default)]
    pub retry_on_failure: RetryOnFailure,
    /// Refused: network inputs keep no offsets, and no operator vigil has persists state.
    #[serde(default)]
    pub storage: Option<Value>,
}

/// How record bytes become the body.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Encoding {
    Utf8,
    Other(&'static encoding_rs::Encoding),
}

/// What `tcplog` and `udplog` share after checking.
#[derive(Debug)]
pub(crate) struct Common {
    pub split: Split,
    pub encoding: Encoding,
    pub preserve_leading: bool,
    pub preserve_trailing: bool,
    pub one_log_per_packet: bool,
    pub add_attributes: bool,
    pub attributes: Vec<KeyValue>,
    pub resource: Vec<KeyValue>,
    pub pipeline: Pipeline,
    pub retry: RetryOnFailure,
    pub max: usize,
}

pub(crate) fn err(id: &ComponentId, path: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Receiver, id, path, msg)
}

/// The keys both receivers have, as written.
pub(crate) struct CommonRaw<'a> {
    pub listen_address: &'a str,
    pub encoding: Option<&'a str>,
    pub multiline: Option<&'a MultilineConfig>,
    pub preserve_leading: bool,
    pub preserve_trailing: bool,
    pub one_log_per_packet: bool,
    pub add_attributes: bool,
    pub operators: &'a [OperatorConfig],
    pub attributes: &'a HashMap<String, Value>,
    pub resource: &'a HashMap<String, Value>,
    pub retry: &'a RetryOnFailure,
    pub storage: bool,
    pub max: usize,
}

fn json_kvs(m: &HashMap<String, Value>) -> Vec<KeyValue> {
    let mut v: Vec<KeyValue> = m
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => kv_str(k, s.clone()),
            other => kv(k, crate::stanza::entry::json_to_value(other.clone())),
        })
        .collect();
    v.sort_by(|a, b| a.key.cmp(&b.key));
    v
}

pub(crate) fn check_common(id: &ComponentId, c: CommonRaw<'_>) -> Result<Common, ConfigError> {
    if c.listen_address.is_empty() {
        return Err(err(
            id,
            "listen_address",
            "required: host:port to listen on",
        ));
    }
    vigil_core::config::check_endpoint(c.listen_address)
        .map_err(|e| err(id, "listen_address", e))?;
    if c.storage {
        return Err(err(
            id,
            "storage",
            "not built: network inputs keep no offsets and no operator vigil has persists state",
        ));
    }
    let encoding = match c.encoding.unwrap_or("").to_ascii_lowercase().as_str() {
        "utf-8" | "utf8" | "" => Encoding::Utf8,
        "nop" => return Err(err(id, "encoding", "nop is not built: bodies are text; use utf-8, ascii or a single-byte encoding (latin1, windows-1252, …)")),
        other => match encoding_rs::Encoding::for_label(other.as_bytes()) {
            Some(e) if e == encoding_rs::UTF_8 => Encoding::Utf8,
            Some(e) if e.is_single_byte() => Encoding::Other(e),
            Some(_) => return Err(err(id, "encoding", format!("encoding {other:?} is not built: only UTF-8, ASCII and single-byte encodings (latin1, windows-1252, …) are"))),
            None => return Err(err(id, "encoding", format!("unknown encoding {other:?}"))),
        },
    };
    let split = match c.multiline {
        None => Split::Lines,
        Some(m) if m.omit_pattern => {
            return Err(err(id, "multiline::omit_pattern", "not built yet"));
        }
        Some(m) => m.split(id)?,
    };
    if c.one_log_per_packet && c.multiline.is_some() {
        return Err(err(
            id,
            "multiline",
            "cannot be used with one_log_per_packet (each packet is one record)",
        ));
    }
    c.retry.check_intervals(id)?;
    let pipeline = build_operators(id, c.operators)?;
    Ok(Common {
        split,
        encoding,
        preserve_leading: c.preserve_leading,
        preserve_trailing: c.preserve_trailing,
        one_log_per_packet: c.one_log_per_packet,
        add_attributes: c.add_attributes,
        attributes: json_kvs(c.attributes),
        resource: json_kvs(c.resource),
        pipeline,
        retry: c.retry.clone(),
        max: c.max,
    })
}

/// `tcplog` after checking.
#[derive(Debug)]
struct Checked {
    common: Arc<Common>,
    listen_address: String,
    tls: Option<TlsServerSettings>,
    /// Open connections at most.
    max_connections: usize,
}

#[cfg(test)]
fn load(id: &ComponentId, value: &Value) -> Result<Checked, ConfigError> {
    check(
        id,
        vigil_core::config::decode(ComponentKind::Receiver, id, value)?,
    )
}

fn check(id: &ComponentId, c: TcpLogConfig) -> Result<Checked, ConfigError> {
    let max = c.max_log_size.map_or(DEFAULT_MAX_LOG_SIZE, |b| b.0);
    if !(MIN_MAX_LOG_SIZE..=MAX_LOG_SIZE_CAP).contains(&max) {
        return Err(err(
            id,
            "max_log_size",
            format!("must be between {MIN_MAX_LOG_SIZE} (64KiB) and {MAX_LOG_SIZE_CAP} (16MiB) bytes, got {max}"),
        ));
    }
    if let Some(t) = &c.tls {
        t.server_config(&[])
            .map_err(|e| err(id, &format!("tls::{}", e.key), e.message))?;
    }
    let common = check_common(
        id,
        CommonRaw {
            listen_address: &c.listen_address,
            encoding: c.encoding.as_deref(),
            multiline: c.multiline.as_ref(),
            preserve_leading: c.preserve_leading_whitespaces,
            preserve_trailing: c.preserve_trailing_whitespaces,
            one_log_per_packet: c.one_log_per_packet,
            add_attributes: c.add_attributes,
            operators: &c.operators,
            attributes: &c.attributes,
            resource: &c.resource,
            retry: &c.retry_on_failure,
            storage: c.storage.is_some(),
            max,
        },
    )?;
    Ok(Checked {
        common: Arc::new(common),
        listen_address: c.listen_address,
        tls: c.tls,
        max_connections: default_max_connections(),
    })
}

struct Factory;

/// The `tcplog` receiver factory, for the registry.
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = TcpLogConfig;

    fn type_name(&self) -> &'static str {
        "tcplog"
    }

    fn validate(&self, id: &ComponentId, cfg: &TcpLogConfig) -> Result<(), ConfigError> {
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
        cfg: TcpLogConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        let checked = check(&set.id, cfg)?;
        Ok(Arc::new(TcpLogReceiver::new(set, checked, next)))
    }
}

/// One record cut out of the bytes.
pub(crate) struct Rec {
    pub bytes: Vec<u8>,
    pub truncated: bool,
}

/// Cuts records out of a byte stream (a TCP connection, or one datagram): lines, joined by the
/// `multiline` patterns, each at most `max` bytes. It holds at most one line and one record of
/// `max` bytes: a longer line is cut at `max` and the rest of it skipped up to its newline.
#[derive(Default)]
pub(crate) struct Records {
    buf: Vec<u8>,
    /// Inside a line already cut at `max`: bytes are dropped up to the next newline.
    skipping: bool,
    /// The multiline record still open.
    open: Option<Rec>,
    /// Whole-stream mode (`one_log_per_packet` on TCP): bytes beyond `max` are dropped.
    whole_dropped: bool,
}

impl Records {
    /// Adds bytes; complete records go to `out`.
    pub fn feed(&mut self, c: &Common, data: &[u8], out: &mut Vec<Rec>) {
        if c.one_log_per_packet {
            let room = c.max.saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&data[..data.len().min(room)]);
            self.whole_dropped |= data.len() > room;
            return;
        }
        let mut rest = data;
        while !rest.is_empty() {
            if self.skipping {
                match memchr::memchr(b'\n', rest) {
                    Some(i) => {
                        self.skipping = false;
                        rest = &rest[i + 1..];
                    }
                    None => return,
                }
                continue;
            }
            match memchr::memchr(b'\n', rest) {
                Some(i) => {
                    let line_part = &rest[..i];
                    rest = &rest[i + 1..];
                    if self.buf.len() + line_part.len() > c.max {
                        let take = c.max - self.buf.len();
                        self.buf.extend_from_slice(&line_part[..take]);
                        let line = std::mem::take(&mut self.buf);
                        self.line(c, line, true, out);
                    } else {
                        self.buf.extend_from_slice(line_part);
                        let mut line = std::mem::take(&mut self.buf);
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                        self.line(c, line, false, out);
                    }
                }
                None => {
                    if self.buf.len() + rest.len() > c.max {
                        let take = c.max - self.buf.len();
                        self.buf.extend_from_slice(&rest[..take]);
                        let line = std::mem::take(&mut self.buf);
                        self.line(c, line, true, out);
                        self.skipping = true;
                    } else {
                        self.buf.extend_from_slice(rest);
                    }
                    return;
                }
            }
        }
    }

    /// The end of the stream: the unterminated last line and the open record go out.
    pub fn finish(&mut self, c: &Common, out: &mut Vec<Rec>) {
        if c.one_log_per_packet {
            let bytes = std::mem::take(&mut self.buf);
            if !bytes.is_empty() {
                out.push(Rec {
                    bytes,
                    truncated: std::mem::take(&mut self.whole_dropped),
                });
            }
            return;
        }
        if !self.buf.is_empty() {
            let mut line = std::mem::take(&mut self.buf);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            self.line(c, line, false, out);
        }
        self.skipping = false;
        if let Some(r) = self.open.take() {
            out.push(r);
        }
    }

    fn line(&mut self, c: &Common, line: Vec<u8>, truncated: bool, out: &mut Vec<Rec>) {
        let append = |r: &mut Rec, line: &[u8]| {
            if r.bytes.len() + 1 + line.len() > c.max {
                r.truncated = true;
            } else {
                r.bytes.push(b'\n');
                r.bytes.extend_from_slice(line);
            }
            r.truncated |= truncated;
        };
        match &c.split {
            Split::Lines => out.push(Rec {
                bytes: line,
                truncated,
            }),
            Split::Start(re) => {
                if re.is_match(&line) {
                    if let Some(r) = self.open.take() {
                        out.push(r);
                    }
                    self.open = Some(Rec {
                        bytes: line,
                        truncated,
                    });
                } else {
                    match &mut self.open {
                        Some(r) => append(r, &line),
                        None => {
                            self.open = Some(Rec {
                                bytes: line,
                                truncated,
                            })
                        }
                    }
                }
            }
            Split::End(re) => {
                let ends = re.is_match(&line);
                match &mut self.open {
                    Some(r) => append(r, &line),
                    None => {
                        self.open = Some(Rec {
                            bytes: line,
                            truncated,
                        })
                    }
                }
                if ends {
                    if let Some(r) = self.open.take() {
                        out.push(r);
                    }
                }
            }
        }
    }
}

/// `net.*` attributes as otelcol's stanza TCP and UDP inputs add them (ports as text, as there).
/// `net.peer.name` and `net.host.name` (reverse DNS in otelcol) are not added.
pub(crate) fn net_attrs(
    transport: &str,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
) -> Vec<KeyValue> {
    let mut v = vec![kv_str("net.transport", transport)];
    if let Some(p) = peer {
        v.push(kv_str("net.peer.ip", p.ip().to_string()));
        v.push(kv_str("net.peer.port", p.port().to_string()));
    }
    if let Some(l) = local {
        v.push(kv_str("net.host.ip", l.ip().to_string()));
        v.push(kv_str("net.host.port", l.port().to_string()));
    }
    v
}

/// Turns records into entries, runs the operators and hands the result to the pipeline.
pub(crate) struct Emitter {
    pub id: String,
    pub cfg: Arc<Common>,
    pub next: Arc<dyn Consumer>,
    pub obs: ReceiverObs,
    /// Records cut at `max_log_size`.
    pub truncated: metrics::Counter,
    pub stop: CancellationToken,
}

impl Emitter {
    /// The entries for `recs`, through the operators, sent; `net` goes on each record.
    pub async fn emit(&self, recs: Vec<Rec>, net: &[KeyValue], st: &mut PipelineState) {
        let observed = now_nanos();
        let c = &self.cfg;
        let mut out = Vec::with_capacity(recs.len());
        for r in recs {
            let mut b: &[u8] = &r.bytes;
            if !c.preserve_leading {
                b = b.trim_ascii_start();
            }
            if !c.preserve_trailing {
                b = b.trim_ascii_end();
            }
            // An empty line carries nothing to log.
            if b.is_empty() {
                continue;
            }
            let body = match c.encoding {
                Encoding::Utf8 => String::from_utf8_lossy(b).into_owned(),
                Encoding::Other(enc) => enc.decode_without_bom_handling(b).0.into_owned(),
            };
            let mut e = Entry::text(body, observed);
            e.attributes = c.attributes.clone();
            e.attributes.extend_from_slice(net);
            e.resource = c.resource.clone();
            if r.truncated {
                self.truncated.increment(1);
                e.attributes
                    .push(kv("log.truncated", AnyValue::BoolValue(true)));
            }
            if c.pipeline.is_empty() {
                out.push(e);
            } else {
                c.pipeline.process(e, 0, None, st, &mut out);
            }
        }
        // A recombine's batch goes out when a later record comes after its force_flush_period.
        c.pipeline.flush_due(None, st, &mut out);
        self.send(out).await;
    }

    /// What operators still hold, at the end of a stream.
    pub async fn flush(&self, st: &mut PipelineState) {
        let mut held = Vec::new();
        self.cfg.pipeline.flush(None, st, &mut held);
        self.send(held).await;
    }

    async fn send(&self, out: Vec<Entry>) {
        if out.is_empty() {
            return;
        }
        let n = out.len();
        let mut groups = crate::stanza::Grouper::default();
        for e in out {
            groups.push(e);
        }
        let r = crate::filelog::send_with_retry(
            self.next.as_ref(),
            groups.take(),
            &self.cfg.retry,
            &self.stop,
        )
        .await;
        if let Err(e) = &r {
            tracing::debug!(receiver = %self.id, error = %e, "the pipeline refused records");
        }
        self.obs.end_op(Signal::Logs, n, &r);
    }
}

/// The `tcplog` receiver.
pub struct TcpLogReceiver {
    id: ComponentId,
    cfg: Checked,
    next: NextConsumers,
    set: vigil_core::Settings,
    addr: Mutex<Option<SocketAddr>>,
    truncated: metrics::Counter,
}

impl TcpLogReceiver {
    fn new(set: vigil_core::Settings, cfg: Checked, next: NextConsumers) -> TcpLogReceiver {
        TcpLogReceiver {
            id: set.id.clone(),
            cfg,
            next,
            addr: Mutex::new(None),
            truncated: metrics::counter!("vigil_tcplog_truncated_records", "receiver" => set.id.to_string()),
            set,
        }
    }

    /// The address actually bound, once started; useful with port 0.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self.addr.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Component for TcpLogReceiver {
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
        let listener = vigil_core::config::bind_tcp(
            ComponentKind::Receiver,
            &self.id,
            &self.cfg.listen_address,
        )
        .await?;
        *self.addr.lock().unwrap_or_else(|p| p.into_inner()) = listener.local_addr().ok();
        let counters = ConnCounters::new("receiver", &id, "tcp");
        let tls = start_tls(
            self.cfg.tls.as_ref(),
            &format!("receivers::{}", self.id),
            &counters,
            tasks,
            &stop,
        )?;
        let em = Arc::new(Emitter {
            id: id.clone(),
            cfg: Arc::clone(&self.cfg.common),
            next,
            obs: self.set.receiver_obs("tcp"),
            truncated: self.truncated.clone(),
            stop: stop.clone(),
        });
        // Log senders keep connections open while idle, so there is no idle timeout; connections
        // are capped instead, and one beyond the cap is closed at once and counted.
        let slots = Arc::new(tokio::sync::Semaphore::new(self.cfg.max_connections));
        let conns = tasks.clone();
        tasks.spawn(async move {
            let who = Listening {
                kind: "tcplog",
                id: &em.id,
                refused: counters.refused.clone(),
            };
            accept_capped(listener, who, slots, &stop, |sock, peer, slot| {
                let em = Arc::clone(&em);
                let stop = stop.clone();
                let tls = tls.clone();
                let counters = counters.clone();
                conns.spawn(async move {
                    let _slot = slot;
                    let net = if em.cfg.add_attributes {
                        net_attrs("IP.TCP", Some(peer), sock.local_addr().ok())
                    } else {
                        Vec::new()
                    };
                    let Some(tls) = tls else {
                        return serve_conn(sock, em, net, stop).await;
                    };
                    if let Some(s) =
                        accept_tls(&tls, sock, ("tcplog", &em.id), &counters, &stop).await
                    {
                        serve_conn(s, em, net, stop).await;
                    }
                });
            })
            .await
        });
        Ok(())
    }

    /// The listener and connections stop together; a connection finishes the records it is
    /// handing to the pipeline, within the service's deadline.
    async fn shutdown_by(&self, deadline: std::time::Instant) -> anyhow::Result<()> {
        self.set.tasks.stop(deadline).await;
        Ok(())
    }
}

/// Reads one connection to its end. Records are sent as each read completes them; while the pipeline
/// is busy (or retrying) the connection is not read, so TCP's flow control pushes back on the sender.
async fn serve_conn<S: tokio::io::AsyncRead + Unpin>(
    mut sock: S,
    em: Arc<Emitter>,
    net: Vec<KeyValue>,
    stop: CancellationToken,
) {
    let mut chunk = vec![0u8; 16 * 1024];
    let mut recs = Records::default();
    let mut st = PipelineState::default();
    loop {
        let n = tokio::select! {
            _ = stop.cancelled() => 0,
            r = sock.read(&mut chunk) => r.unwrap_or(0),
        };
        let mut out = Vec::new();
        if n == 0 {
            recs.finish(&em.cfg, &mut out);
            em.emit(out, &net, &mut st).await;
            em.flush(&mut st).await;
            return;
        }
        recs.feed(&em.cfg, &chunk[..n], &mut out);
        if !out.is_empty() {
            em.emit(out, &net, &mut st).await;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
