//! The OpAMP WebSocket transport: one connection kept open, reconnected with backoff. Each binary
//! message is a header (a varint, 0 in the current spec) followed by the protobuf message, both
//! ways. Reports go out when the status changes (checked every second) and as heartbeats.

use super::{failure, sent, Session, Transport, FIRST_BACKOFF, MAX_BACKOFF, MAX_MESSAGE_BYTES};
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Request};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;
use vigil_core::{ComponentId, ComponentKind, ConfigError};

/// How to open the connection: the upgrade request with the configured headers, and TLS for `wss`.
pub(super) struct Connect {
    request: Request<()>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

fn err(id: &ComponentId, path: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Extension, id, path, msg)
}

impl Connect {
    pub(super) fn new(id: &ComponentId, t: &Transport) -> Result<Connect, ConfigError> {
        let mut request = t.endpoint.as_str().into_client_request().map_err(|e| {
            err(
                id,
                "server::ws::endpoint",
                format!("{:?} cannot be opened as a WebSocket: {e}", t.endpoint),
            )
        })?;
        for (k, v) in &t.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                err(
                    id,
                    format!("server::ws::headers::{k}"),
                    format!("{k:?} is not a valid header name"),
                )
            })?;
            let value = HeaderValue::from_str(v).map_err(|_| {
                err(
                    id,
                    format!("server::ws::headers::{k}"),
                    "the value has characters a header cannot carry",
                )
            })?;
            request.headers_mut().append(name, value);
        }
        let tls = if t.endpoint.starts_with("wss://") {
            let c = vigil_exporters::helper::tls::client_config(id, &t.tls, &[b"http/1.1"])
                .map_err(|mut e| {
                    e.location = format!("extensions::{id}");
                    e.path = format!("server::ws::{}", e.path);
                    e
                })?;
            Some(c)
        } else {
            None
        };
        Ok(Connect { request, tls })
    }
}

/// What `validate` checks of the ws transport: the same as [`Connect::new`], nothing opened.
pub(super) fn check(id: &ComponentId, t: &Transport) -> Result<(), ConfigError> {
    Connect::new(id, t).map(drop)
}

/// A message as the transport frames it: varint header 0, then the protobuf.
pub(crate) fn frame(msg: &impl prost::Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.encoded_len() + 1);
    out.push(0);
    msg.encode(&mut out).unwrap_or_default();
    out
}

/// The protobuf after the header, or why the frame is not one.
pub(crate) fn unframe(mut data: &[u8]) -> Result<&[u8], String> {
    let header =
        prost::encoding::decode_varint(&mut data).map_err(|e| format!("no message header: {e}"))?;
    if header != 0 {
        return Err(format!("unknown message header {header}"));
    }
    Ok(data)
}

pub(super) async fn run(
    id: String,
    connect: Connect,
    session: Arc<Mutex<Session>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut logged_down = false;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    loop {
        let connector = match &connect.tls {
            Some(c) => Connector::Rustls(c.clone()),
            None => Connector::Plain,
        };
        let opened = tokio::select! {
            _ = stop.cancelled() => return,
            r = tokio_tungstenite::connect_async_tls_with_config(
                connect.request.clone(), Some(config), true, Some(connector)) => r,
        };
        let mut stream = match opened {
            Ok((s, _)) => s,
            Err(e) => {
                failure(&id, "unreachable");
                if !logged_down {
                    tracing::warn!(endpoint = %connect.request.uri(), "cannot connect to the OpAMP server (retrying): {e}");
                    logged_down = true;
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if logged_down {
            tracing::info!("connected to the OpAMP server again");
            logged_down = false;
        }
        backoff = FIRST_BACKOFF;
        // A new connection may reach a server that knows nothing of this agent: report all.
        vigil_core::lock(&session).failed();
        let mut last_sent = tokio::time::Instant::now();
        let mut must_send = true;
        let mut tick = tokio::time::interval(super::STATUS_CHECK);
        let closed_by_us = loop {
            if must_send {
                let msg = vigil_core::lock(&session).next();
                if stream
                    .send(Message::Binary(frame(&msg).into()))
                    .await
                    .is_err()
                {
                    failure(&id, "send_failed");
                    break false;
                }
                sent(&id);
                last_sent = tokio::time::Instant::now();
                must_send = false;
            }
            tokio::select! {
                _ = stop.cancelled() => {
                    let msg = {
                        let mut s = vigil_core::lock(&session);
                        s.disconnecting = true;
                        s.next()
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        let _ = stream.send(Message::Binary(frame(&msg).into())).await;
                        let _ = stream.close(None).await;
                    }).await;
                    break true;
                }
                _ = tick.tick() => {
                    let s = vigil_core::lock(&session);
                    must_send = s.changed() || last_sent.elapsed() >= s.heartbeat;
                }
                m = stream.next() => match m {
                    Some(Ok(Message::Binary(data))) => {
                        match unframe(&data).and_then(|b| {
                            super::ServerToAgent::decode(b).map_err(|e| e.to_string())
                        }) {
                            Ok(answer) => {
                                let wait = {
                                    let mut s = vigil_core::lock(&session);
                                    must_send = s.handle(answer);
                                    s.retry_after.take()
                                };
                                if let Some(w) = wait {
                                    tokio::select! {
                                        _ = stop.cancelled() => {}
                                        _ = tokio::time::sleep(w.min(MAX_BACKOFF)) => {}
                                    }
                                    must_send = true;
                                }
                            }
                            Err(e) => {
                                failure(&id, "bad_message");
                                tracing::warn!("ignored a message from the OpAMP server: {e}");
                            }
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => break false,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        let reason = if e.to_string().contains("too long") || e.to_string().contains("too big") {
                            "too_large"
                        } else {
                            "receive_failed"
                        };
                        failure(&id, reason);
                        tracing::warn!("the OpAMP connection failed: {e}");
                        break false;
                    }
                },
            }
        };
        if closed_by_us {
            return;
        }
        vigil_core::lock(&session).failed();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
