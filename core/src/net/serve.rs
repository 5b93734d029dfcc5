//! The HTTP server loop every listener of this crate (and the agent's HTTP extensions) runs, so
//! that each one has the same defences against clients that hold connections without using them:
//!
//! - `read_header_timeout`: a connection must complete its first request's headers within this time
//!   of being accepted (HTTP/1 also applies it to every later request's headers), or it is closed.
//! - `idle_timeout`: a connection with no request in flight for this long is closed.
//! - `max_connections`: at the cap, the connection idle the longest is closed to make room; if every
//!   connection is busy, the new one is closed at once and counted as refused. So idle sockets can
//!   never stop a client with something to send from being served.
//! - HTTP/2: `max_concurrent_streams` per connection, keepalive pings, and a maximum connection age.
//!
//! Accept errors (such as running out of file descriptors) are logged and retried after a short
//! pause instead of spinning or ending the server.

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use metrics::Counter;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;
/// Re-exported so that callers outside this crate need no `tokio-util` of their own.
pub use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// otelcol's confighttp default for `read_header_timeout`.
pub const DEFAULT_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// otelcol's confighttp default for `idle_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The default connection cap per listener, lowered to a quarter of the open-file limit when that
/// is smaller, so that one listener cannot take every descriptor the process has.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The default HTTP/2 stream cap per connection (the HTTP/2 specification's recommended minimum).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;
/// How long a connection told to close (idle, evicted, too old) gets to finish before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// The pause after a failed accept, so that running out of descriptors does not spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The certificate a client presented under mutual TLS (DER, the leaf), put in the extensions of
/// each request of its connection so that a receiver can name the client by its subject.
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Arc<[u8]>);

/// The address a connection came from, put in the extensions of each of its requests, as
/// otelcol's `client.Info.Addr` (`k8sattributes` names the pod that sent the data by it).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// The limits of one listener.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub read_header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// Speak only HTTP/2 (gRPC); otherwise HTTP/1.1 and HTTP/2 are both served.
    pub http2_only: bool,
    pub max_concurrent_streams: u32,
    /// HTTP/2 keepalive pings: interval and timeout.
    pub keepalive: Option<(Duration, Duration)>,
    /// Connections older than this are asked to close (HTTP/2 GOAWAY), then given `age_grace`.
    pub max_connection_age: Option<Duration>,
    pub max_connection_age_grace: Option<Duration>,
    /// TLS, if any; the handshake must finish within `read_header_timeout`. Its files are re-read
    /// on its reload period while the listener runs.
    pub tls: Option<Arc<crate::net::tls::ServerTls>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            read_header_timeout: DEFAULT_READ_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: default_max_connections(),
            http2_only: false,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            keepalive: None,
            max_connection_age: None,
            max_connection_age_grace: None,
            tls: None,
        }
    }
}

impl ServeOptions {
    /// An HTTP listener's options from confighttp's server keys, as every HTTP receiver spells
    /// them: an absent or zero timeout and a zero connection cap mean the default.
    pub fn http(
        tls: Option<Arc<crate::net::tls::ServerTls>>,
        read_header_timeout: Option<Duration>,
        idle_timeout: Option<Duration>,
        max_connections: usize,
    ) -> ServeOptions {
        let mut o = ServeOptions {
            tls,
            ..ServeOptions::default()
        };
        if let Some(d) = read_header_timeout.filter(|d| !d.is_zero()) {
            o.read_header_timeout = d;
        }
        if let Some(d) = idle_timeout.filter(|d| !d.is_zero()) {
            o.idle_timeout = d;
        }
        if max_connections > 0 {
            o.max_connections = max_connections;
        }
        o
    }
}

/// [`DEFAULT_MAX_CONNECTIONS`], or a quarter of the soft open-file limit if that is lower.
pub fn default_max_connections() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if !ok || lim.rlim_cur == libc::RLIM_INFINITY {
        return DEFAULT_MAX_CONNECTIONS;
    }
    let quarter = usize::try_from(lim.rlim_cur / 4).unwrap_or(usize::MAX);
    DEFAULT_MAX_CONNECTIONS.min(quarter.max(16))
}

/// Raises the soft open-file limit to the hard limit, as Go does at start (since 1.19) and so
/// otelcol: every connection takes a descriptor, and the common soft default of 1024 is reached by
/// about a thousand idle sockets. Returns the limit before and after, or the error.
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct they are given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((before, lim.rlim_cur))
}

/// What the listener counts, labelled with the component and transport.
#[derive(Clone)]
pub struct ConnCounters {
    /// New connections closed at once because every slot was busy.
    pub refused: Counter,
    /// Connections closed for not sending a request in time (header timeout) or for idling.
    pub timed_out: Counter,
    /// Idle connections closed to make room for a new one at the cap.
    pub evicted: Counter,
    /// TLS handshakes that failed or did not finish in time (a client without a valid certificate
    /// under mutual TLS, a plaintext client on a TLS port).
    pub tls_failed: Counter,
    /// Certificate reloads that served changed files, and reloads that failed (the previous
    /// certificate stays in use).
    pub tls_reloads: Counter,
    pub tls_reload_failures: Counter,
    /// `<kind>s::<id>`, to name the listener in log lines.
    pub component: String,
}

impl ConnCounters {
    /// Counters labelled `component` (the component id) and `transport`.
    pub fn new(kind: &'static str, id: &str, transport: &'static str) -> ConnCounters {
        let labels = [(kind, id.to_string()), ("transport", transport.to_string())];
        ConnCounters {
            refused: metrics::counter!("vigil_listener_connections_refused", &labels),
            timed_out: metrics::counter!("vigil_listener_connections_timed_out", &labels),
            evicted: metrics::counter!("vigil_listener_connections_evicted", &labels),
            tls_failed: metrics::counter!("vigil_listener_tls_handshakes_failed", &labels),
            tls_reloads: metrics::counter!("vigil_listener_tls_reloads", &labels),
            tls_reload_failures: metrics::counter!("vigil_listener_tls_reload_failures", &labels),
            component: format!("{kind}s::{id} ({transport})"),
        }
    }
}

/// One connection's state, shared by its task, its request guards and the listener's registry.
struct ConnState {
    busy: AtomicUsize,
    /// Whether a request has started on it; until then the header timeout applies.
    served: AtomicBool,
    /// Milliseconds since `epoch` at which it last became idle.
    idle_since_ms: AtomicU64,
    epoch: Instant,
    changed: Notify,
    evict: CancellationToken,
}

impl ConnState {
    fn idle_since(&self) -> Instant {
        self.epoch + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire))
    }

    fn mark_idle(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.idle_since_ms.store(ms, Ordering::Release);
    }
}

/// Held while a request is in flight.
struct Busy(Arc<ConnState>);

impl Busy {
    fn new(state: &Arc<ConnState>) -> Busy {
        state.served.store(true, Ordering::Release);
        state.busy.fetch_add(1, Ordering::AcqRel);
        state.changed.notify_waiters();
        Busy(Arc::clone(state))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.mark_idle();
        }
        self.0.changed.notify_waiters();
    }
}

/// Returns once the connection has had no request in flight for its timeout: the header timeout
/// before its first request, the idle timeout after.
async fn idle_watch(state: &ConnState, opts: &ServeOptions) {
    loop {
        let changed = state.changed.notified();
        if state.busy.load(Ordering::Acquire) > 0 {
            changed.await;
            continue;
        }
        let limit = if state.served.load(Ordering::Acquire) {
            opts.idle_timeout
        } else {
            opts.read_header_timeout
        };
        let deadline = state.idle_since() + limit;
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                if state.busy.load(Ordering::Acquire) == 0 && state.idle_since() + limit <= Instant::now() {
                    return;
                }
            }
            _ = changed => {}
        }
    }
}

/// The open connections of one listener, for the cap.
#[derive(Default)]
struct Registry {
    next_id: u64,
    conns: HashMap<u64, Arc<ConnState>>,
}

/// Serves `router` on `listener` until `stop` is cancelled, then asks every connection to close
/// and waits for them (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    opts: ServeOptions,
    counters: ConnCounters,
    stop: CancellationToken,
) {
    let registry = Arc::new(Mutex::new(Registry::default()));
    let mut tasks = tokio::task::JoinSet::new();
    let opts = Arc::new(opts);
    if let Some(tls) = opts.tls.clone().filter(|t| t.reload_period().is_some()) {
        let (c, stop) = (counters.clone(), stop.clone());
        tasks.spawn(async move {
            tls.run_reloads(&c.component, c.tls_reloads, c.tls_reload_failures, stop)
                .await
        });
    }
    loop {
        let (sock, peer_addr) = tokio::select! {
            _ = stop.cancelled() => break,
            // Reaps finished connection tasks, so the set holds only open ones.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying shortly");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        let _ = sock.set_nodelay(true);
        let Some((id, state)) = admit(&registry, opts.max_connections, &counters) else {
            drop(sock);
            continue;
        };
        let (registry, opts, counters, stop, router) = (
            Arc::clone(&registry),
            Arc::clone(&opts),
            counters.clone(),
            stop.clone(),
            router.clone(),
        );
        tasks.spawn(async move {
            match &opts.tls {
                None => {
                    serve_conn(
                        sock, router, peer_addr, None, &state, &opts, &counters, &stop,
                    )
                    .await
                }
                Some(tls) => {
                    let acceptor = tls.acceptor();
                    let handshake =
                        tokio::time::timeout(opts.read_header_timeout, acceptor.accept(sock));
                    let tls_sock = tokio::select! {
                        r = handshake => r,
                        _ = state.evict.cancelled() => return,
                        _ = stop.cancelled() => return,
                    };
                    match tls_sock {
                        Ok(Ok(s)) => {
                            let peer = s
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .map(|c| PeerCertificate(Arc::from(c.as_ref())));
                            serve_conn(s, router, peer_addr, peer, &state, &opts, &counters, &stop)
                                .await
                        }
                        Ok(Err(e)) => {
                            counters.tls_failed.increment(1);
                            tracing::debug!(error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            counters.tls_failed.increment(1);
                            counters.timed_out.increment(1);
                        }
                    }
                }
            }
            registry
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .conns
                .remove(&id);
        });
    }
    // Stop accepting before waiting for the open connections to finish.
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

/// Registers a new connection, closing the longest-idle one at the cap; `None` when every
/// connection is busy and the new one must be refused.
fn admit(
    registry: &Mutex<Registry>,
    max: usize,
    counters: &ConnCounters,
) -> Option<(u64, Arc<ConnState>)> {
    let mut reg = registry.lock().unwrap_or_else(|p| p.into_inner());
    if reg.conns.len() >= max.max(1) {
        let victim = reg
            .conns
            .iter()
            .filter(|(_, c)| c.busy.load(Ordering::Acquire) == 0 && !c.evict.is_cancelled())
            .min_by_key(|(_, c)| c.idle_since())
            .map(|(id, _)| *id);
        match victim.and_then(|id| reg.conns.remove(&id)) {
            Some(c) => {
                c.evict.cancel();
                counters.evicted.increment(1);
            }
            None => {
                counters.refused.increment(1);
                return None;
            }
        }
    }
    let id = reg.next_id;
    reg.next_id += 1;
    let state = Arc::new(ConnState {
        busy: AtomicUsize::new(0),
        served: AtomicBool::new(false),
        idle_since_ms: AtomicU64::new(0),
        epoch: Instant::now(),
        changed: Notify::new(),
        evict: CancellationToken::new(),
    });
    reg.conns.insert(id, Arc::clone(&state));
    Some((id, state))
}

#[allow(clippy::too_many_arguments)]
async fn serve_conn<I>(
    sock: I,
    router: Router,
    peer_addr: std::net::SocketAddr,
    peer: Option<PeerCertificate>,
    state: &Arc<ConnState>,
    opts: &ServeOptions,
    counters: &ConnCounters,
    stop: &CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let guard_state = Arc::clone(state);
    let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        req.extensions_mut().insert(PeerAddr(peer_addr));
        if let Some(p) = &peer {
            req.extensions_mut().insert(p.clone());
        }
        let busy = Busy::new(&guard_state);
        let call = router.clone().oneshot(req.map(axum::body::Body::new));
        async move {
            let resp = call.await;
            drop(busy);
            resp
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.read_header_timeout);
    {
        let mut h2 = builder.http2();
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(opts.max_concurrent_streams.max(1));
        if let Some((interval, timeout)) = opts.keepalive {
            h2.keep_alive_interval(interval).keep_alive_timeout(timeout);
        }
    }
    if opts.http2_only {
        builder = builder.http2_only();
    }
    // With upgrades, so that a WebSocket (remotetap) can take its connection over; an upgraded
    // connection leaves this loop's bookkeeping and its handler watches the stop itself.
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(sock), service);
    tokio::pin!(conn);
    let age = async {
        match opts.max_connection_age {
            Some(age) => tokio::time::sleep(age).await,
            None => std::future::pending().await,
        }
    };
    let grace = tokio::select! {
        _ = conn.as_mut() => return,
        _ = idle_watch(state, opts) => {
            counters.timed_out.increment(1);
            CLOSE_GRACE
        }
        _ = state.evict.cancelled() => CLOSE_GRACE,
        _ = age => opts.max_connection_age_grace.unwrap_or(CLOSE_GRACE),
        _ = stop.cancelled() => {
            // Shutting down: in-flight requests may finish; the receiver's own grace bounds this.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
            return;
        }
    };
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(grace, conn).await;
}
