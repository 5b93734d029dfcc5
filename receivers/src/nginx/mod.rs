//! `nginx`: nginx's `stub_status` page, scraped as otelcol's receiver scrapes it. Every
//! `collection_interval` it requests `endpoint` and turns the page's counters into otelcol's
//! metrics: `nginx.requests`, `nginx.connections_accepted`, `nginx.connections_handled` (cumulative
//! sums from the receiver's start) and `nginx.connections_current` by `state` (a sum that is not
//! monotonic, as otelcol reports it since its `nginx.connections_as_sum` gate went stable).

use crate::hostmetrics::config::{MetricToggle, Toggles};
use crate::scrape::{self, Builder, Kind, MetricDef, Schedule, Scrape, Scraped};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use vigil_core::attrs::kv_str;
use vigil_core::config::{duration, TlsClientConfig};
use vigil_core::{ComponentId, ComponentKind, ConfigError};

#[cfg(test)]
mod tests;

/// The instrumentation scope otelcol's receiver reports under.
pub const SCOPE: &str =
    "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/nginxreceiver";

/// Largest status page read; a stub_status page is about a hundred bytes.
const MAX_PAGE: usize = 64 * 1024;

/// otelcol's metadata.
pub const METRICS: &[MetricDef] = &[
    MetricDef {
        name: "nginx.connections_accepted",
        desc: "The total number of accepted client connections",
        unit: "connections",
        kind: Kind::Sum { monotonic: true },
        enabled: true,
    },
    MetricDef {
        name: "nginx.connections_current",
        desc: "The current number of nginx connections by state",
        unit: "connections",
        kind: Kind::Sum { monotonic: false },
        enabled: true,
    },
    MetricDef {
        name: "nginx.connections_handled",
        desc: "The total number of handled connections. Generally, the parameter value is the same as nginx.connections_accepted unless some resource limits have been reached (for example, the worker_connections limit).",
        unit: "connections",
        kind: Kind::Sum { monotonic: true },
        enabled: true,
    },
    MetricDef {
        name: "nginx.requests",
        desc: "Total number of requests made to the server since it started",
        unit: "requests",
        kind: Kind::Sum { monotonic: true },
        enabled: true,
    },
];

/// `receivers::nginx` as written: scraperhelper's keys and the confighttp client keys a status
/// request uses.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NginxConfig {
    /// Time between two scrapes (otelcol: 10s).
    #[serde(default = "default_interval", with = "duration")]
    pub collection_interval: Duration,
    /// Wait before the first scrape (scraperhelper: 1s).
    #[serde(default = "default_initial_delay", with = "duration")]
    pub initial_delay: Duration,
    /// The stub_status URL.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// Bound on the status request (confighttp's key, which otelcol's scraper shares; 10s).
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Headers sent with the request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// For an `https` endpoint; without it the system roots verify the server.
    #[serde(default)]
    pub tls: Option<TlsClientConfig>,
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricToggle>,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_initial_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_endpoint() -> String {
    "http://localhost:80/status".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn err(id: &ComponentId, path: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Receiver, id, path.into(), msg)
}

fn check(id: &ComponentId, c: &NginxConfig) -> Result<Toggles, ConfigError> {
    vigil_core::config::check_interval(c.collection_interval)
        .map_err(|m| err(id, "collection_interval", m))?;
    match reqwest::Url::parse(&c.endpoint) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => {
            return Err(err(
                id,
                "endpoint",
                format!(
                    "{:?} must be a URL such as \"http://localhost:80/status\"",
                    c.endpoint
                ),
            ))
        }
    }
    for (k, v) in &c.headers {
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
            || reqwest::header::HeaderValue::from_str(v).is_err()
        {
            return Err(err(id, format!("headers::{k}"), "not a valid HTTP header"));
        }
    }
    if let Some(t) = &c.tls {
        if !t.cipher_suites.is_empty() {
            return Err(err(id, "tls::cipher_suites", "not supported for nginx yet"));
        }
        if t.server_name_override.is_some() {
            return Err(err(
                id,
                "tls::server_name_override",
                "not supported for nginx yet; use the certificate's name in endpoint",
            ));
        }
    }
    Toggles::build(&scrape::known(METRICS), &c.metrics, |p, m| err(id, p, m))
}

/// The `nginx` receiver factory.
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    scrape::factory(scrape::Spec::<NginxConfig, NginxScraper> {
        type_name: "nginx",
        stability: scrape::BETA,
        check: |id, cfg| check(id, cfg).map(|_| ()),
        build,
        schedule: |cfg| Schedule {
            collection_interval: cfg.collection_interval,
            initial_delay: cfg.initial_delay,
            // The request's own timeout bounds the scrape.
            timeout: Duration::ZERO,
        },
        receiver: scrape::run,
    })
}

fn build(id: &ComponentId, cfg: &NginxConfig) -> Result<NginxScraper, ConfigError> {
    let metrics = check(id, cfg)?;
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in &cfg.headers {
        if let (Ok(k), Ok(v)) = (
            reqwest::header::HeaderName::from_bytes(k.as_bytes()),
            reqwest::header::HeaderValue::from_str(v),
        ) {
            headers.insert(k, v);
        }
    }
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers);
    if !cfg.timeout.is_zero() {
        b = b.timeout(cfg.timeout);
    }
    if let Some(t) = &cfg.tls {
        let tls = vigil_core::net::client_tls::client_config(t, &[], |k, m| err(id, k, m))?;
        b = b.tls_backend_preconfigured((*tls).clone());
    }
    let client = b
        .build()
        .map_err(|e| err(id, "tls", format!("cannot build the HTTP client: {e}")))?;
    Ok(NginxScraper {
        url: cfg.endpoint.clone(),
        client,
        metrics,
        resource_attrs: Toggles::default(),
        start: scrape::unix_nanos(SystemTime::now()),
    })
}

struct NginxScraper {
    url: String,
    client: reqwest::Client,
    metrics: Toggles,
    /// nginx's receiver has no resource attributes.
    resource_attrs: Toggles,
    start: u64,
}

/// stub_status's counters.
#[derive(Debug, PartialEq)]
struct Stub {
    active: i64,
    accepted: i64,
    handled: i64,
    requests: i64,
    reading: i64,
    writing: i64,
    waiting: i64,
}

/// Reads a stub_status page:
/// `Active connections: 2 \nserver accepts handled requests\n 5 5 9 \nReading: 0 Writing: 1 Waiting: 1 \n`.
fn parse_stub(page: &str) -> Result<Stub, String> {
    let bad = || {
        format!(
            "not an nginx stub_status page: {:?}",
            page.chars().take(200).collect::<String>()
        )
    };
    let lines: Vec<&str> = page
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() < 4 {
        return Err(bad());
    }
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let active = num(lines[0]
        .strip_prefix("Active connections:")
        .ok_or_else(bad)?
        .trim())?;
    if !lines[1].starts_with("server accepts handled requests") {
        return Err(bad());
    }
    let counts: Vec<&str> = lines[2].split_whitespace().collect();
    if counts.len() < 3 {
        return Err(bad());
    }
    let words: Vec<&str> = lines[3].split_whitespace().collect();
    let field = |name: &str| {
        words
            .iter()
            .position(|w| *w == name)
            .and_then(|i| words.get(i + 1))
            .ok_or_else(bad)
            .and_then(|v| num(v))
    };
    Ok(Stub {
        active,
        accepted: num(counts[0])?,
        handled: num(counts[1])?,
        requests: num(counts[2])?,
        reading: field("Reading:")?,
        writing: field("Writing:")?,
        waiting: field("Waiting:")?,
    })
}

impl NginxScraper {
    async fn fetch(&self) -> Result<Stub, String> {
        let mut resp = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| format!("GET {}: {}", self.url, error_text(&e)))?;
        if !resp.status().is_success() {
            return Err(format!("GET {}: status {}", self.url, resp.status()));
        }
        let mut page = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("GET {}: {}", self.url, error_text(&e)))?
        {
            if page.len() + chunk.len() > MAX_PAGE {
                return Err(format!(
                    "GET {}: the page is larger than {MAX_PAGE} bytes",
                    self.url
                ));
            }
            page.extend_from_slice(&chunk);
        }
        parse_stub(&String::from_utf8_lossy(&page))
    }
}

fn error_text(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[async_trait]
impl Scrape for NginxScraper {
    async fn scrape(&self) -> Scraped {
        let stub = match self.fetch().await {
            Ok(s) => s,
            Err(e) => {
                return Scraped {
                    metrics: Vec::new(),
                    errors: vec![e],
                }
            }
        };
        let mut b = Builder::new(
            METRICS,
            &self.metrics,
            &self.resource_attrs,
            SCOPE,
            self.start,
        );
        b.int("nginx.requests", stub.requests, vec![]);
        b.int("nginx.connections_accepted", stub.accepted, vec![]);
        b.int("nginx.connections_handled", stub.handled, vec![]);
        for (state, v) in [
            ("active", stub.active),
            ("reading", stub.reading),
            ("writing", stub.writing),
            ("waiting", stub.waiting),
        ] {
            b.int("nginx.connections_current", v, vec![kv_str("state", state)]);
        }
        Scraped {
            metrics: b.finish(Vec::new()),
            errors: Vec::new(),
        }
    }
}
