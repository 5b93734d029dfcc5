//! The accept loop of the receivers whose protocols are streams but not HTTP (`fluentforward`,
//! `statsd` and `syslog` over TCP, `fluentforward` over a Unix socket), so they cannot use
//! `vigil_core::net::serve`. Their connections are capped as every listener's: a connection beyond
//! the cap is closed at once and counted in `vigil_listener_connections_refused`, and a failed
//! accept (out of descriptors) pauses the loop rather than spinning it. Those that serve TLS
//! (`syslog` and `tcplog` over TCP) build it with [`start_tls`] and shake hands with [`accept_tls`].

use crate::serve::{ConnCounters, DEFAULT_READ_HEADER_TIMEOUT};
use crate::tls::{ServerTls, TlsServerSettings};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// A listener the loop accepts from: TCP or a Unix stream socket.
pub(crate) trait StreamListener: Send + 'static {
    type Conn: Send + 'static;
    type Peer: Send + 'static;
    fn accept_conn(&self)
        -> impl Future<Output = std::io::Result<(Self::Conn, Self::Peer)>> + Send;
}

impl StreamListener for tokio::net::TcpListener {
    type Conn = tokio::net::TcpStream;
    type Peer = std::net::SocketAddr;
    fn accept_conn(
        &self,
    ) -> impl Future<Output = std::io::Result<(Self::Conn, Self::Peer)>> + Send {
        self.accept()
    }
}

impl StreamListener for tokio::net::UnixListener {
    type Conn = tokio::net::UnixStream;
    type Peer = tokio::net::unix::SocketAddr;
    fn accept_conn(
        &self,
    ) -> impl Future<Output = std::io::Result<(Self::Conn, Self::Peer)>> + Send {
        self.accept()
    }
}

/// Who is listening, for log lines and the refusal counter.
pub(crate) struct Listening<'a> {
    /// The component type, as log lines begin (`fluentforward`).
    pub kind: &'static str,
    /// The component id.
    pub id: &'a str,
    /// Where connections refused at the cap are counted.
    pub refused: metrics::Counter,
}

/// Accepts connections until `stop` is cancelled, holding at most `slots` open: `serve` gets each
/// admitted connection with the slot it holds, which it must keep until the connection ends.
pub(crate) async fn accept_capped<L: StreamListener>(
    listener: L,
    who: Listening<'_>,
    slots: Arc<Semaphore>,
    stop: &CancellationToken,
    mut serve: impl FnMut(L::Conn, L::Peer, OwnedSemaphorePermit),
) {
    loop {
        let (conn, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept_conn() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(receiver = %who.id, error = %e, "{}: accept failed", who.kind);
                    // Out of descriptors: pause rather than spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            who.refused.increment(1);
            tracing::debug!(receiver = %who.id, "{}: connection cap reached; closing a new connection", who.kind);
            continue;
        };
        serve(conn, peer, slot);
    }
}

/// Builds a listener's TLS from its settings, if it has any, and starts the certificate reloads they
/// ask for. `path` names the settings' owner in the error (`receivers::x::tcp`); the config check
/// built the same settings once already, so this fails only if a file changed since.
pub(crate) fn start_tls(
    settings: Option<&TlsServerSettings>,
    path: &str,
    counters: &ConnCounters,
    tasks: &vigil_core::Tasks,
    stop: &CancellationToken,
) -> anyhow::Result<Option<Arc<ServerTls>>> {
    let Some(settings) = settings else {
        return Ok(None);
    };
    let tls = settings
        .server(&[])
        .map_err(|e| anyhow::anyhow!("{path}::{e}"))?;
    if tls.reload_period().is_some() {
        let (tls, c, stop) = (Arc::clone(&tls), counters.clone(), stop.clone());
        tasks.spawn(async move {
            tls.run_reloads(&c.component, c.tls_reloads, c.tls_reload_failures, stop)
                .await
        });
    }
    Ok(Some(tls))
}

/// The TLS handshake of an admitted connection, or `None` when it failed, did not finish in time
/// (both counted in `counters`) or the receiver stopped. The handshake is bounded like an HTTP
/// listener's request headers, so a client that connects and sends nothing does not hold its slot.
pub(crate) async fn accept_tls<S: AsyncRead + AsyncWrite + Unpin>(
    tls: &ServerTls,
    sock: S,
    who: (&'static str, &str),
    counters: &ConnCounters,
    stop: &CancellationToken,
) -> Option<tokio_rustls::server::TlsStream<S>> {
    let (kind, id) = who;
    let handshake = tokio::time::timeout(DEFAULT_READ_HEADER_TIMEOUT, tls.acceptor().accept(sock));
    let r = tokio::select! {
        r = handshake => r,
        _ = stop.cancelled() => return None,
    };
    match r {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            counters.tls_failed.increment(1);
            tracing::debug!(receiver = %id, error = %e, "{kind}: TLS handshake failed");
            None
        }
        Err(_) => {
            counters.tls_failed.increment(1);
            counters.timed_out.increment(1);
            None
        }
    }
}
