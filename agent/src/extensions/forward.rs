//! The forwarding HTTP server that `http_forwarder` and `awsproxy` share. It takes every request on
//! the extension's listener, answers 503 past `max_in_flight` requests at once and 413 past
//! `max_body` bytes of body, lets the extension build the outgoing request ([`Forward::request`])
//! and the response from the answer ([`Forward::respond`]), and counts each request in the
//! extension's counter `{extension,result}` (`forwarded`, `too_large`, `busy`, `failed`).

use super::health_check::serve_http;
use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, response, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tokio::sync::Semaphore;
use vigil_core::config::bind_tcp;
use vigil_core::net::tls::ServerTls;
use vigil_core::{ComponentId, ComponentKind};

/// What one forwarding extension adds to the shared server.
#[async_trait]
pub(super) trait Forward: Send + Sync + 'static {
    /// The extension's counter, `vigil_<type>_requests`.
    const COUNTER: &'static str;
    /// The 503's body when every slot is taken.
    const BUSY: &'static str;

    /// The outgoing request for one received, whose body was read whole within the bound; an
    /// `Err` is sent back as it is and counted `failed`.
    fn request(&self, parts: &Parts, body: Bytes)
        -> Result<reqwest::RequestBuilder, Box<Response>>;

    /// The response to send back for the upstream's answer (start it with [`head`]).
    async fn respond(&self, parts: &Parts, answer: reqwest::Response) -> Response;
}

/// The two bounds on what the server holds.
pub(super) struct Bounds {
    /// Requests forwarded at once; more wait for none and are answered 503, so a stuck upstream
    /// cannot pile up connections and bodies without bound.
    pub max_in_flight: usize,
    /// Larger request bodies are answered 413.
    pub max_body: usize,
}

/// Headers that belong to one connection (RFC 9110 §7.6.1) and are not passed on either way.
pub(super) fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
    )
}

pub(super) fn plain(code: StatusCode, body: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The start of a response for `answer`: its status and the headers `keep` lets through.
pub(super) fn head(
    answer: &reqwest::Response,
    keep: impl Fn(&HeaderName) -> bool,
) -> response::Builder {
    let mut resp = Response::builder().status(answer.status());
    if let Some(h) = resp.headers_mut() {
        for (k, v) in answer.headers() {
            if keep(k) {
                h.append(k.clone(), v.clone());
            }
        }
    }
    resp
}

/// `resp` with `body`; a header the builder refused is a 502 that names it.
pub(super) fn finish(resp: response::Builder, body: Body) -> Response {
    resp.body(body)
        .unwrap_or_else(|e| plain(StatusCode::BAD_GATEWAY, format!("{e}\n")))
}

struct Server<F> {
    /// The counter's label key: `extension`, or `receiver` for a receiver's proxy.
    label: &'static str,
    id: String,
    slots: Semaphore,
    max_body: usize,
    fwd: F,
}

impl<F: Forward> Server<F> {
    fn count(&self, result: &'static str) {
        metrics::counter!(F::COUNTER, self.label => self.id.clone(), "result" => result)
            .increment(1);
    }
}

async fn handle<F: Forward>(State(s): State<Arc<Server<F>>>, req: Request) -> Response {
    let Ok(_slot) = s.slots.try_acquire() else {
        s.count("busy");
        return plain(StatusCode::SERVICE_UNAVAILABLE, F::BUSY.into());
    };
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, s.max_body).await {
        Ok(b) => b,
        Err(e) => {
            s.count("too_large");
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is larger than {} bytes, or could not be read: {e}\n",
                    s.max_body
                ),
            );
        }
    };
    let out = match s.fwd.request(&parts, body) {
        Ok(o) => o,
        Err(r) => {
            s.count("failed");
            return *r;
        }
    };
    let answer = match out.send().await {
        Ok(a) => a,
        Err(e) => {
            s.count("failed");
            return plain(
                StatusCode::BAD_GATEWAY,
                format!("{}\n", vigil_exporters::helper::http::error_chain(&e)),
            );
        }
    };
    s.count("forwarded");
    s.fwd.respond(&parts, answer).await
}

/// Binds `endpoint` and serves `fwd` on it, within `bounds`, until the extension's tasks stop.
pub(super) async fn serve<F: Forward>(
    id: &ComponentId,
    tasks: &vigil_core::task::Tasks,
    endpoint: &str,
    tls: Option<Arc<ServerTls>>,
    bounds: Bounds,
    fwd: F,
) -> anyhow::Result<()> {
    serve_as(
        ComponentKind::Extension,
        id,
        tasks,
        endpoint,
        tls,
        bounds,
        fwd,
    )
    .await
}

/// [`serve`] for a component of any kind (the `awsxray` receiver's `proxy_server`).
pub(super) async fn serve_as<F: Forward>(
    kind: ComponentKind,
    id: &ComponentId,
    tasks: &vigil_core::task::Tasks,
    endpoint: &str,
    tls: Option<Arc<ServerTls>>,
    bounds: Bounds,
    fwd: F,
) -> anyhow::Result<()> {
    let listener = bind_tcp(kind, id, endpoint).await?;
    let server = Arc::new(Server {
        label: if kind == ComponentKind::Extension {
            "extension"
        } else {
            "receiver"
        },
        id: id.to_string(),
        slots: Semaphore::new(bounds.max_in_flight),
        max_body: bounds.max_body,
        fwd,
    });
    let app = axum::Router::new().fallback(handle::<F>).with_state(server);
    serve_http(id, tasks, listener, app, tls);
    Ok(())
}
