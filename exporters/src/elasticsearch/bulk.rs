//! The Bulk API client the `elasticsearch` and `opensearch` exporters share: documents become
//! NDJSON action and source lines posted to `{endpoint}/_bulk`, and the answer is read per item.
//! A request remembers which documents are still pending, so a retry after some items were
//! refused with a retryable status (`retry_on_status`, 429 by default) resends only those; an
//! item refused with any other status (a 400 mapping error) is counted as failed and never sent
//! again. Hand-written over the exporters' reqwest client: the Rust Elasticsearch and OpenSearch
//! clients bring their own transports and retry loops, which would sit under the `SendStack`'s.

use crate::helper::auth::Authenticator;
use crate::helper::http::error_chain;
use crate::helper::{classify, Compression, Delivered, Persist, SendError};
use bytes::Bytes;
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::Url;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use vigil_core::{lock, ComponentId};

/// One document: its action line (`{"create":{"_index":...}}`) and its source, both without the
/// trailing newline, and how many telemetry items it carries (a metrics document holds several
/// data points; a span event document none, its span counts it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    pub action: Bytes,
    pub source: Bytes,
    pub items: u32,
}

/// The `create` or `index` action line for `index`, with optional extras (a pipeline, dynamic
/// templates) merged into the action object.
pub fn action_line(
    action: &str,
    index: &str,
    extra: serde_json::Map<String, serde_json::Value>,
) -> Bytes {
    let mut meta = serde_json::Map::new();
    meta.insert(
        "_index".into(),
        serde_json::Value::String(index.to_string()),
    );
    meta.extend(extra);
    let mut outer = serde_json::Map::new();
    outer.insert(action.to_string(), serde_json::Value::Object(meta));
    Bytes::from(serde_json::to_vec(&outer).unwrap_or_default())
}

/// What the documents of one request have come to so far.
#[derive(Debug, Default)]
struct Progress {
    /// Indexes of the documents not yet accepted or refused for good, in order.
    pending: Vec<u32>,
    /// Items refused for good (non-retryable item statuses).
    failed: u64,
    /// The first few refusals, for the log line.
    reasons: BTreeMap<String, u64>,
}

/// The most distinct refusal reasons a request keeps for its log line.
const MAX_REASONS: usize = 8;

/// A batch as bulk documents, with its progress.
#[derive(Debug)]
pub struct BulkRequest {
    pub docs: Vec<Doc>,
    /// Items dropped while encoding (not representable as a document), reported as rejected.
    pub dropped: u64,
    pub dropped_reason: String,
    progress: Mutex<Progress>,
}

impl BulkRequest {
    pub fn new(docs: Vec<Doc>, dropped: u64, dropped_reason: String) -> Self {
        let pending = (0..docs.len() as u32).collect();
        BulkRequest {
            docs,
            dropped,
            dropped_reason,
            progress: Mutex::new(Progress {
                pending,
                ..Progress::default()
            }),
        }
    }

    /// How many documents are still to be sent.
    pub fn pending(&self) -> usize {
        lock(&self.progress).pending.len()
    }

    /// The NDJSON body of the pending documents.
    fn body(&self, pending: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        for &i in pending {
            let d = &self.docs[i as usize];
            out.extend_from_slice(&d.action);
            out.push(b'\n');
            out.extend_from_slice(&d.source);
            out.push(b'\n');
        }
        out
    }

    fn delivered(&self) -> Delivered {
        let p = lock(&self.progress);
        let mut parts = Vec::new();
        if self.dropped > 0 {
            parts.push(self.dropped_reason.clone());
        }
        if p.failed > 0 {
            let reasons: Vec<String> = p.reasons.iter().map(|(r, n)| format!("{n}× {r}")).collect();
            parts.push(format!(
                "{} items refused by the bulk API: {}",
                p.failed,
                reasons.join("; ")
            ));
        }
        Delivered {
            rejected: self.dropped + p.failed,
            message: parts.join(", "),
        }
    }
}

use crate::helper::parts::{put_bytes as put, take_bytes as take, take_u64};

/// Stored as: dropped, reason, failed, pending count and indexes, document count, then each
/// document's items, action and source. Lengths and counts are 8-byte big-endian.
impl Persist for BulkRequest {
    fn to_bytes(&self) -> Vec<u8> {
        let p = lock(&self.progress);
        let mut out = Vec::new();
        out.extend_from_slice(&self.dropped.to_be_bytes());
        put(&mut out, self.dropped_reason.as_bytes());
        out.extend_from_slice(&p.failed.to_be_bytes());
        out.extend_from_slice(&(p.pending.len() as u64).to_be_bytes());
        for i in &p.pending {
            out.extend_from_slice(&u64::from(*i).to_be_bytes());
        }
        out.extend_from_slice(&(self.docs.len() as u64).to_be_bytes());
        for d in &self.docs {
            out.extend_from_slice(&u64::from(d.items).to_be_bytes());
            put(&mut out, &d.action);
            put(&mut out, &d.source);
        }
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let mut input = bytes;
        let dropped = take_u64(&mut input)?;
        let reason = String::from_utf8(take(&mut input)?.to_vec()).ok()?;
        let failed = take_u64(&mut input)?;
        let n = usize::try_from(take_u64(&mut input)?).ok()?;
        let mut pending = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            pending.push(u32::try_from(take_u64(&mut input)?).ok()?);
        }
        let n = usize::try_from(take_u64(&mut input)?).ok()?;
        let mut docs = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let items = u32::try_from(take_u64(&mut input)?).ok()?;
            let action = Bytes::copy_from_slice(take(&mut input)?);
            let source = Bytes::copy_from_slice(take(&mut input)?);
            docs.push(Doc {
                action,
                source,
                items,
            });
        }
        if !input.is_empty() || pending.iter().any(|&i| i as usize >= docs.len()) {
            return None;
        }
        Some(BulkRequest {
            docs,
            dropped,
            dropped_reason: reason,
            progress: Mutex::new(Progress {
                pending,
                failed,
                reasons: BTreeMap::new(),
            }),
        })
    }
}

/// How to reach the cluster: endpoints taken in turn, credentials, and what is retried.
pub struct BulkClient {
    pub id: ComponentId,
    pub client: reqwest::Client,
    /// `{endpoint}/_bulk` for each endpoint, with the query (`pipeline`, `filter_path`) set.
    pub urls: Vec<Url>,
    pub next: AtomicUsize,
    pub compression: Compression,
    /// A fixed `Authorization` value (`ApiKey ...`, `Basic ...`), when configured.
    pub authorization: Option<String>,
    pub auth: Authenticator,
    /// With `auth`, the configured headers, which the authenticator sees on each request.
    pub headers: HeaderMap,
    /// Item and request statuses that are retried.
    pub retry_on_status: Vec<u16>,
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    errors: bool,
    #[serde(default)]
    items: Vec<BTreeMap<String, ItemResult>>,
}

#[derive(Deserialize)]
struct ItemResult {
    #[serde(default)]
    status: u16,
    #[serde(default)]
    error: Option<ItemError>,
}

#[derive(Deserialize)]
struct ItemError {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    reason: String,
}

/// Builds the `_bulk` URL of an endpoint, keeping any path prefix it has (a proxy's).
pub fn bulk_url(endpoint: &Url, query: &[(&str, &str)]) -> Url {
    let mut url = endpoint.clone();
    let path = format!("{}/_bulk", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(None);
    if !query.is_empty() {
        let mut q = url.query_pairs_mut();
        for (k, v) in query {
            q.append_pair(k, v);
        }
    }
    url
}

impl BulkClient {
    fn url(&self) -> &Url {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.urls[i % self.urls.len()]
    }

    /// One `_bulk` post of the pending documents, reading every item's answer.
    pub async fn send(&self, req: &BulkRequest) -> Result<Delivered, SendError> {
        let pending = lock(&req.progress).pending.clone();
        if pending.is_empty() {
            return Ok(req.delivered());
        }
        let body = self
            .compression
            .compress(req.body(&pending))
            .map_err(|e| SendError::permanent(format!("cannot compress the request: {e}")))?;
        let url = self.url();
        let mut b = self
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(body);
        if let Some(enc) = self.compression.encoding_name() {
            b = b.header(CONTENT_ENCODING, enc);
        }
        if let Some(a) = &self.authorization {
            b = b.header(AUTHORIZATION, a);
        }
        if self.auth.is_configured() {
            let mut headers = self.headers.clone();
            self.auth
                .apply(&mut headers)
                .await
                .map_err(SendError::retryable)?;
            b = b.headers(headers);
        }
        let resp = b.send().await.map_err(|e| {
            SendError::retryable(format!("cannot send to {url}: {}", error_chain(&e)))
        })?;
        let status = resp.status();
        let retry_after = classify::retry_after_header(resp.headers());
        let bytes = resp.bytes().await.map_err(|e| {
            SendError::retryable(format!("reading the answer of {url}: {}", error_chain(&e)))
        })?;
        if !status.is_success() {
            let message = classify::http_error_message(&bytes, true);
            let reason = format!("HTTP {status} from {url}: {message}");
            // A whole request refused as unavailable indexed nothing, so resending it cannot
            // duplicate: 502-504 are retried along with retry_on_status.
            return if self.retry_on_status.contains(&status.as_u16())
                || matches!(status.as_u16(), 502..=504)
            {
                Err(SendError::Retryable {
                    reason,
                    retry_after,
                })
            } else {
                Err(SendError::permanent(reason))
            };
        }
        let parsed: BulkResponse = serde_json::from_slice(&bytes).map_err(|e| {
            SendError::permanent(format!(
                "{url} answered with an unreadable bulk response: {e}"
            ))
        })?;
        let mut p = lock(&req.progress);
        if !parsed.errors {
            p.pending.clear();
            drop(p);
            return Ok(req.delivered());
        }
        if parsed.items.len() != pending.len() {
            // Without one answer per document, nobody can tell which were indexed.
            return Err(SendError::permanent(format!(
                "{url} answered {} bulk items for {} documents",
                parsed.items.len(),
                pending.len()
            )));
        }
        let mut still = Vec::new();
        let mut retry_reason = None;
        for (&i, item) in pending.iter().zip(&parsed.items) {
            let Some(result) = item.values().next() else {
                continue;
            };
            if (200..300).contains(&result.status) {
                continue;
            }
            let why = match &result.error {
                Some(e) if !e.reason.is_empty() => {
                    format!("{} {}: {}", result.status, e.kind, e.reason)
                }
                Some(e) => format!("{} {}", result.status, e.kind),
                None => format!("{}", result.status),
            };
            if self.retry_on_status.contains(&result.status) {
                still.push(i);
                retry_reason.get_or_insert(why);
            } else {
                p.failed += u64::from(req.docs[i as usize].items);
                if p.reasons.len() < MAX_REASONS || p.reasons.contains_key(&why) {
                    *p.reasons.entry(why).or_default() += 1;
                }
            }
        }
        let left = still.len();
        p.pending = still;
        drop(p);
        if left == 0 {
            return Ok(req.delivered());
        }
        Err(SendError::retryable(format!(
            "{left} of {} documents refused by {url} with a retryable status ({}); only those are resent",
            pending.len(),
            retry_reason.unwrap_or_default()
        )))
    }

    pub fn start(&self, host: &vigil_core::Host) -> anyhow::Result<()> {
        self.auth.start(host, &self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_with_progress() {
        let doc = |s: &str| Doc {
            action: Bytes::from_static(b"{\"create\":{\"_index\":\"x\"}}"),
            source: Bytes::copy_from_slice(s.as_bytes()),
            items: 1,
        };
        let r = BulkRequest::new(vec![doc("{\"a\":1}"), doc("{\"a\":2}")], 1, "odd".into());
        lock(&r.progress).pending = vec![1];
        lock(&r.progress).failed = 1;
        let back = BulkRequest::from_bytes(&r.to_bytes()).unwrap();
        assert_eq!(back.docs, r.docs);
        assert_eq!(lock(&back.progress).pending, vec![1]);
        assert_eq!(back.delivered().rejected, 2);
        assert!(BulkRequest::from_bytes(&r.to_bytes()[..20]).is_none());
        assert_eq!(
            String::from_utf8(r.body(&[0, 1])).unwrap(),
            "{\"create\":{\"_index\":\"x\"}}\n{\"a\":1}\n{\"create\":{\"_index\":\"x\"}}\n{\"a\":2}\n"
        );
    }

    #[test]
    fn bulk_url_keeps_a_path_prefix() {
        let u = Url::parse("https://es.example:9200/proxy/").unwrap();
        assert_eq!(
            bulk_url(&u, &[("pipeline", "p")]).as_str(),
            "https://es.example:9200/proxy/_bulk?pipeline=p"
        );
        let u = Url::parse("http://localhost:9200").unwrap();
        assert_eq!(bulk_url(&u, &[]).as_str(), "http://localhost:9200/_bulk");
    }
}
