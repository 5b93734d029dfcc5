//! The accept loop of the receivers whose protocols are streams but not HTTP (`fluentforward`,
//! `statsd` and `syslog` over TCP, `fluentforward` over a Unix socket), so they cannot use
//! `vigil_core::net::serve`. Their connections are capped as every listener's: a connection beyond
//! the cap is closed at once and counted in `vigil_listener_connections_refused`, and a failed
//! accept (out of descriptors) pauses the loop rather than spinning it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
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
