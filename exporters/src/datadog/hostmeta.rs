//! Host metadata, as upstream's pusher sends it: a JSON payload (`internalHostname`, `meta`
//! with the host's names, `host-tags` with `host_metadata::tags`), gzip, `POST
//! {metrics::endpoint}/intake`, once at start and then every `reporter_period`. The host is the
//! `hostname` setting or the system's (`config_or_system`), or the host of the first resource
//! the exporter is given (`first_resource`; the first payload waits for it). Upstream also sends
//! `gohai` (the agent's system inventory) and `processes`; those are not built. A failed push is
//! tried 3 times, 10 s apart, logged, and counted in
//! `vigil_datadog_host_metadata_failures{exporter}`; the next period tries again.
//!
//! The loop is the exporter's own: the sender holds a guard that cancels it when the exporter is
//! dropped, since the shared stack has no hook for its transports' stop, and its task set is
//! drained (waited on) at shutdown, which a 30-minute loop would hold up.

use super::API_KEY_HEADER;
use crate::helper::http::error_chain;
use crate::helper::Compression;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::Url;
use serde_json::json;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

const ATTEMPTS: u32 = 3;
const RETRY_DELAY: Duration = Duration::from_secs(10);

/// What the loop needs; `first` is filled from the first resource when the source is
/// `first_resource`.
pub struct Pusher {
    pub client: reqwest::Client,
    pub url: Url,
    pub key: String,
    pub fallback: String,
    pub socket_hostname: String,
    pub tags: Vec<String>,
    pub period: Duration,
    pub first_resource: bool,
    pub first: Arc<OnceLock<String>>,
    pub ready: Arc<Notify>,
    pub failures: ::metrics::Counter,
}

/// The payload for `host`.
pub fn payload(host: &str, socket_hostname: &str, tags: &[String]) -> serde_json::Value {
    json!({
        "agent-flavor": "vigil",
        "agentVersion": env!("CARGO_PKG_VERSION"),
        "internalHostname": host,
        "meta": {
            "hostname": host,
            "socket-hostname": socket_hostname,
            "socket-fqdn": socket_hostname,
            "host_aliases": [],
        },
        "host-tags": { "otel": tags },
    })
}

impl Pusher {
    async fn push_once(&self, body: &[u8]) -> Result<(), String> {
        let resp = self
            .client
            .post(self.url.clone())
            .header(API_KEY_HEADER, &self.key)
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_ENCODING, "gzip")
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        if resp.status().as_u16() >= 400 {
            return Err(format!("HTTP {} from {}", resp.status(), self.url));
        }
        Ok(())
    }

    async fn push(&self, host: &str, stop: &CancellationToken) {
        let json = payload(host, &self.socket_hostname, &self.tags);
        let Ok(body) = Compression::Gzip.compress(json.to_string().into_bytes()) else {
            return;
        };
        for attempt in 1..=ATTEMPTS {
            match self.push_once(&body).await {
                Ok(()) => return,
                Err(e) if attempt == ATTEMPTS => {
                    self.failures.increment(1);
                    tracing::warn!(url = %self.url, "cannot send Datadog host metadata: {e}");
                }
                Err(_) => {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(RETRY_DELAY) => {}
                    }
                }
            }
        }
    }

    /// Starts the loop; it ends when the returned guard is dropped.
    pub fn start(self) -> DropGuard {
        let stop = CancellationToken::new();
        let guard = stop.clone().drop_guard();
        tokio::spawn(async move {
            let host = if self.first_resource {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = self.ready.notified() => {}
                }
                self.first
                    .get()
                    .cloned()
                    .unwrap_or_else(|| self.fallback.clone())
            } else {
                self.fallback.clone()
            };
            loop {
                self.push(&host, &stop).await;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(self.period) => {}
                }
            }
        });
        guard
    }
}
