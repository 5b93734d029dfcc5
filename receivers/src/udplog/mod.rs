//! `udplog` (otelcol's `udp_log`): log lines in UDP datagrams, with otelcol-contrib's keys
//! (`listen_address`, `one_log_per_packet`, `add_attributes`, `encoding`, `multiline`,
//! `preserve_*_whitespaces`, `async`, `attributes`, `resource`, `operators`, `retry_on_failure`).
//! Each datagram is split into lines (or `multiline` records) on its own; the record code, operators
//! and `net.*` attributes are `tcplog`'s.

use crate::filelog::config::{MultilineConfig, RetryOnFailure};
use crate::stanza::operators::{OperatorConfig, PipelineState};
use crate::tcplog::{check_common, err, net_attrs, Common, CommonRaw, Emitter, Rec, Records};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use vigil_core::config::resolve_endpoint;
use vigil_core::{Component, ComponentId, ConfigError, Host, NextConsumers, Receiver, Signal};

/// The largest datagram read, as otelcol's (a UDP payload is at most 65507 bytes over IPv4).
pub const MAX_UDP_SIZE: usize = 64 * 1024;
/// The most `async::readers` or `async::processors` accepted.
pub const MAX_WORKERS: usize = 256;
/// The longest `async::max_queue_length` accepted: the queue holds whole datagrams, so this times
/// 64KiB is its worst-case memory (256MiB).
pub const MAX_QUEUE_CAP: usize = 4096;

/// `receivers::udplog` as written. Its keys shared with `tcplog` are listed again rather than
/// flattened in, as `tcplog`'s are, so that `deny_unknown_fields` still refuses misspelt keys.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct UdpLogConfig {
    #[serde(default)]
    pub listen_address: String,
    /// The whole datagram is one record.
    #[serde(default)]
    pub one_log_per_packet: bool,
    #[serde(default)]
    pub add_attributes: bool,
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(default)]
    pub multiline: Option<MultilineConfig>,
    #[serde(default)]
    pub preserve_leading_whitespaces: bool,
    #[serde(default)]
    pub preserve_trailing_whitespaces: bool,
    #[serde(
        default,
        rename = "async",
        deserialize_with = "vigil_core::config::present"
    )]
    pub async_config: Option<AsyncConfig>,
    #[serde(default)]
    pub operators: Vec<OperatorConfig>,
    #[serde(default)]
    pub attributes: HashMap<String, Value>,
    #[serde(default)]
    pub resource: HashMap<String, Value>,
    #[serde(default)]
    pub retry_on_failure: RetryOnFailure,
    /// Refused, as in `tcplog`.
    #[serde(default)]
    pub storage: Option<Value>,
}

/// `async`: readers take datagrams off the socket into a queue that processors empty.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AsyncConfig {
    pub readers: usize,
    pub processors: usize,
    pub max_queue_length: usize,
}

impl Default for AsyncConfig {
    fn default() -> Self {
        AsyncConfig {
            readers: 1,
            processors: 1,
            max_queue_length: 100,
        }
    }
}

#[derive(Debug)]
struct Checked {
    common: Arc<Common>,
    listen_address: String,
    async_config: Option<AsyncConfig>,
}

#[cfg(test)]
fn load(id: &ComponentId, value: &Value) -> Result<Checked, ConfigError> {
    check(
        id,
        vigil_core::config::decode(vigil_core::ComponentKind::Receiver, id, value)?,
    )
}

fn check(id: &ComponentId, c: UdpLogConfig) -> Result<Checked, ConfigError> {
    if let Some(a) = &c.async_config {
        for (key, v, cap) in [
            ("readers", a.readers, MAX_WORKERS),
            ("processors", a.processors, MAX_WORKERS),
            ("max_queue_length", a.max_queue_length, MAX_QUEUE_CAP),
        ] {
            if v == 0 || v > cap {
                return Err(err(
                    id,
                    &format!("async::{key}"),
                    format!("must be between 1 and {cap}, got {v}"),
                ));
            }
        }
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
            max: MAX_UDP_SIZE,
        },
    )?;
    Ok(Checked {
        common: Arc::new(common),
        listen_address: c.listen_address,
        async_config: c.async_config,
    })
}

struct Factory;

/// The `udplog` receiver factory, for the registry.
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = UdpLogConfig;

    fn type_name(&self) -> &'static str {
        "udplog"
    }

    fn validate(&self, id: &ComponentId, cfg: &UdpLogConfig) -> Result<(), ConfigError> {
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
        cfg: UdpLogConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        let checked = check(&set.id, cfg)?;
        Ok(Arc::new(UdpLogReceiver::new(set, checked, next)))
    }
}

/// The `udplog` receiver.
pub struct UdpLogReceiver {
    id: ComponentId,
    cfg: Checked,
    next: NextConsumers,
    set: vigil_core::Settings,
    addr: Mutex<Option<SocketAddr>>,
    truncated: metrics::Counter,
    /// Datagrams dropped because the `async` queue was full.
    queue_dropped: metrics::Counter,
}

impl UdpLogReceiver {
    fn new(set: vigil_core::Settings, cfg: Checked, next: NextConsumers) -> UdpLogReceiver {
        let l = [("receiver", set.id.to_string())];
        UdpLogReceiver {
            id: set.id.clone(),
            cfg,
            next,
            addr: Mutex::new(None),
            truncated: metrics::counter!("vigil_udplog_truncated_records", &l),
            queue_dropped: metrics::counter!("vigil_udplog_queue_full_dropped", &l),
            set,
        }
    }

    /// The address actually bound, once started; useful with port 0.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self.addr.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The records of one datagram: trailing control bytes (a newline, NULs) are dropped first, as
/// otelcol does, then the rest is one record or split like a stream that ends there.
fn datagram_records(c: &Common, data: &[u8]) -> Vec<Rec> {
    let end = data.iter().rposition(|b| *b >= 32).map_or(0, |i| i + 1);
    let data = &data[..end];
    let mut out = Vec::new();
    if data.is_empty() {
        return out;
    }
    let mut recs = Records::default();
    recs.feed(c, data, &mut out);
    recs.finish(c, &mut out);
    out
}

async fn process(
    em: &Emitter,
    data: &[u8],
    peer: SocketAddr,
    local: Option<SocketAddr>,
    st: &mut PipelineState,
) {
    let recs = datagram_records(&em.cfg, data);
    if recs.is_empty() {
        return;
    }
    let net = if em.cfg.add_attributes {
        net_attrs("IP.UDP", Some(peer), local)
    } else {
        Vec::new()
    };
    em.emit(recs, &net, st).await;
}

#[async_trait]
impl Component for UdpLogReceiver {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let Some(next) = self.next.get(Signal::Logs).cloned() else {
            anyhow::bail!(
                "receivers::{}: no logs pipeline uses this receiver",
                self.id
            );
        };
        let addr = resolve_endpoint(&self.cfg.listen_address)
            .map_err(|e| anyhow::anyhow!("receivers::{}::listen_address: {e}", self.id))?;
        let sock = UdpSocket::bind(addr).await.map_err(|e| {
            anyhow::anyhow!(
                "receivers::{}: cannot listen on udp {}: {e}",
                self.id,
                self.cfg.listen_address
            )
        })?;
        let local = sock.local_addr().ok();
        *self.addr.lock().unwrap_or_else(|p| p.into_inner()) = local;
        let sock = Arc::new(sock);
        let stop = self.set.tasks.stopping();
        let tasks = &self.set.tasks;
        let em = Arc::new(Emitter {
            id: self.id.to_string(),
            cfg: Arc::clone(&self.cfg.common),
            next,
            obs: self.set.receiver_obs("udp"),
            truncated: self.truncated.clone(),
            stop: stop.clone(),
        });
        let Some(a) = &self.cfg.async_config else {
            // One task reads and processes: while the pipeline is busy, datagrams wait in the
            // socket's receive buffer (and the kernel drops what does not fit, as UDP does).
            tasks.spawn(async move {
                let mut buf = vec![0u8; MAX_UDP_SIZE];
                let mut st = PipelineState::default();
                loop {
                    let (n, peer) = tokio::select! {
                        _ = stop.cancelled() => break,
                        r = sock.recv_from(&mut buf) => match r {
                            Ok(x) => x,
                            Err(_) => continue,
                        },
                    };
                    process(&em, &buf[..n], peer, local, &mut st).await;
                }
                em.flush(&mut st).await;
            });
            return Ok(());
        };
        // Readers move datagrams into a bounded queue; a datagram that finds it full is dropped and
        // counted (otelcol's readers block instead, leaving the kernel to drop uncounted).
        let (tx, rx) = tokio::sync::mpsc::channel::<(Vec<u8>, SocketAddr)>(a.max_queue_length);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..a.readers {
            let (sock, tx, stop) = (Arc::clone(&sock), tx.clone(), stop.clone());
            let dropped = self.queue_dropped.clone();
            tasks.spawn(async move {
                let mut buf = vec![0u8; MAX_UDP_SIZE];
                loop {
                    let (n, peer) = tokio::select! {
                        _ = stop.cancelled() => break,
                        r = sock.recv_from(&mut buf) => match r {
                            Ok(x) => x,
                            Err(_) => continue,
                        },
                    };
                    if tx.try_send((buf[..n].to_vec(), peer)).is_err() {
                        dropped.increment(1);
                    }
                }
            });
        }
        drop(tx);
        for _ in 0..a.processors {
            let (rx, em, stop) = (Arc::clone(&rx), Arc::clone(&em), stop.clone());
            tasks.spawn(async move {
                let mut st = PipelineState::default();
                loop {
                    let next = tokio::select! {
                        _ = stop.cancelled() => None,
                        m = async { rx.lock().await.recv().await } => m,
                    };
                    let Some((data, peer)) = next else { break };
                    process(&em, &data, peer, local, &mut st).await;
                }
                em.flush(&mut st).await;
            });
        }
        Ok(())
    }

    async fn shutdown_by(&self, deadline: std::time::Instant) -> anyhow::Result<()> {
        self.set.tasks.stop(deadline).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
