//! `httpcheck` (`http_check`): synthetic HTTP checks, as otelcol's receiver makes them. Every
//! `collection_interval` each URL of each target is requested once with its `method`, `headers` and
//! `body`, all at the same time, and the outcome becomes otelcol's metrics: `httpcheck.status` (one
//! point per status class, 1 for the class the answer fell in), `httpcheck.duration` (ms) and, when
//! the request failed, `httpcheck.error` with the error text; `httpcheck.response.size` on request.
//! Validations, sequences and the timing breakdown metrics (DNS, connect, TLS handshake) are not
//! built and are refused by name.

use crate::hostmetrics::config::{MetricToggle, Toggles};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use vigil_core::attrs::{kv_i64, kv_str};
use vigil_core::config::{duration, TlsClientConfig};
use vigil_core::otlp::common::v1::{InstrumentationScope, KeyValue};
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::time::unix_nanos;
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, Host, NextConsumers, Receiver, Signal,
    Telemetry,
};

/// The instrumentation scope otelcol's receiver reports under, so that dashboards keyed on it match.
pub const SCOPE: &str =
    "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/httpcheckreceiver";

/// Metrics this receiver knows, with otelcol's default (enabled or not).
const KNOWN: &[(&str, bool)] = &[
    ("httpcheck.status", true),
    ("httpcheck.duration", true),
    ("httpcheck.error", true),
    ("httpcheck.response.size", false),
    ("httpcheck.client.connection.duration", false),
    ("httpcheck.client.request.duration", false),
    ("httpcheck.dns.lookup.duration", false),
    ("httpcheck.response.duration", false),
    ("httpcheck.tls.cert_remaining", false),
    ("httpcheck.tls.handshake.duration", false),
    ("httpcheck.validation.failed", false),
    ("httpcheck.validation.passed", false),
];

/// Optional metrics of otelcol's that vigil does not measure: enabling one is refused, not ignored.
const NOT_BUILT: &[&str] = &[
    "httpcheck.client.connection.duration",
    "httpcheck.client.request.duration",
    "httpcheck.dns.lookup.duration",
    "httpcheck.response.duration",
    "httpcheck.tls.cert_remaining",
    "httpcheck.tls.handshake.duration",
    "httpcheck.validation.failed",
    "httpcheck.validation.passed",
];

/// Per-request bound when a target sets no `timeout` (otelcol's scraper sets the same).
const DEFAULT_TARGET_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest `body` sent with a check; a check request is small, and the body lives in memory.
pub const MAX_BODY: usize = 1024 * 1024;

/// `receivers::httpcheck` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheckConfig {
    /// Time between two rounds of checks (otelcol: 60s).
    #[serde(default = "default_interval", with = "duration")]
    pub collection_interval: Duration,
    /// Wait before the first round (scraperhelper: 1s).
    #[serde(default = "default_initial_delay", with = "duration")]
    pub initial_delay: Duration,
    /// scraperhelper's bound on one round; 0 (the default) leaves each request to its own timeout.
    #[serde(default, with = "duration")]
    pub timeout: Duration,
    /// What to check; at least one target is required.
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    /// otelcol's `sequences` (multi-step checks): not built, refused when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequences: Option<serde_json::Value>,
    /// `{ <metric>: { enabled: bool } }`, mdatagen's toggles.
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricToggle>,
}

/// One entry of `targets`: confighttp's client keys that a check uses, plus `method` and `body`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// One URL to check.
    #[serde(default)]
    pub endpoint: String,
    /// More URLs checked with the same settings.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// HTTP method; default GET.
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body, sent as written.
    #[serde(default)]
    pub body: String,
    /// Bound on one request, answer included; 0 (default) means 30s.
    #[serde(default, with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub tls: Option<TlsClientConfig>,
    /// A proxy for plain and TLS requests, such as `http://proxy:3128`.
    #[serde(default)]
    pub proxy_url: Option<String>,
    /// otelcol's response `validations`: not built, refused when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validations: Option<serde_json::Value>,
}

impl Default for HttpCheckConfig {
    fn default() -> Self {
        HttpCheckConfig {
            collection_interval: default_interval(),
            initial_delay: default_initial_delay(),
            timeout: Duration::ZERO,
            targets: Vec::new(),
            sequences: None,
            metrics: BTreeMap::new(),
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_initial_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_method() -> String {
    "GET".into()
}

/// One URL to request, with the client built for its target.
struct Check {
    url: String,
    method: reqwest::Method,
    headers: reqwest::header::HeaderMap,
    body: Option<bytes::Bytes>,
    timeout: Duration,
    client: reqwest::Client,
}

struct Checked {
    checks: Vec<Check>,
    toggles: Toggles,
}

fn err(id: &ComponentId, path: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Receiver, id, path.into(), msg)
}

/// Checks a section and, with `build`, makes the HTTP clients (reading the TLS files).
fn check(id: &ComponentId, c: &HttpCheckConfig, build: bool) -> Result<Checked, ConfigError> {
    if c.collection_interval.is_zero() {
        return Err(err(
            id,
            "collection_interval",
            "must be above 0, such as \"60s\"",
        ));
    }
    if c.sequences.is_some() {
        return Err(err(
            id,
            "sequences",
            "multi-step sequences are not supported yet; list each URL under targets",
        ));
    }
    if c.targets.is_empty() {
        return Err(err(id, "targets", "no targets configured"));
    }
    let toggles = Toggles::build(KNOWN, &c.metrics, |p, m| err(id, p, m))?;
    for name in NOT_BUILT {
        if toggles.on(name) {
            return Err(err(
                id,
                format!("metrics::{name}::enabled"),
                "vigil does not measure this metric yet",
            ));
        }
    }
    let mut checks = Vec::new();
    for (i, t) in c.targets.iter().enumerate() {
        let at = |k: &str| format!("targets::{i}::{k}");
        if t.validations.is_some() {
            return Err(err(
                id,
                at("validations"),
                "response validations are not supported yet",
            ));
        }
        let mut urls: Vec<(String, &String)> = Vec::new();
        // otelcol checks `endpoints` first, then `endpoint`.
        for (j, u) in t.endpoints.iter().enumerate() {
            urls.push((at(&format!("endpoints::{j}")), u));
        }
        if !t.endpoint.is_empty() {
            urls.push((at("endpoint"), &t.endpoint));
        }
        if urls.is_empty() {
            return Err(err(
                id,
                at("endpoint"),
                "\"endpoint\" or \"endpoints\" must be specified",
            ));
        }
        for (path, u) in &urls {
            match reqwest::Url::parse(u) {
                Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some() => {}
                Ok(_) => {
                    return Err(err(
                        id,
                        path.clone(),
                        format!("{u:?} must be in the form of <scheme>://<hostname>[:<port>] with scheme http or https"),
                    ))
                }
                Err(e) => {
                    return Err(err(
                        id,
                        path.clone(),
                        format!("{u:?} must be in the form of <scheme>://<hostname>[:<port>]: {e}"),
                    ))
                }
            }
        }
        let method = reqwest::Method::from_bytes(t.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| {
                err(
                    id,
                    at("method"),
                    format!("invalid HTTP method {:?}", t.method),
                )
            })?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &t.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|e| {
                err(
                    id,
                    at(&format!("headers::{k}")),
                    format!("invalid header name: {e}"),
                )
            })?;
            let value = reqwest::header::HeaderValue::from_str(v).map_err(|e| {
                err(
                    id,
                    at(&format!("headers::{k}")),
                    format!("invalid header value: {e}"),
                )
            })?;
            headers.insert(name, value);
        }
        if t.body.len() > MAX_BODY {
            return Err(err(
                id,
                at("body"),
                format!(
                    "{} bytes is more than the {MAX_BODY} a check may send",
                    t.body.len()
                ),
            ));
        }
        if let Some(tls) = &t.tls {
            if !tls.cipher_suites.is_empty() {
                return Err(err(
                    id,
                    at("tls::cipher_suites"),
                    "not supported for checks yet",
                ));
            }
            if tls.server_name_override.is_some() {
                return Err(err(
                    id,
                    at("tls::server_name_override"),
                    "not supported for checks yet; check the URL by that name instead",
                ));
            }
            for (k, v) in [
                ("min_version", &tls.min_version),
                ("max_version", &tls.max_version),
            ] {
                if let Some(v) = v {
                    tls_version(v).map_err(|m| err(id, at(&format!("tls::{k}")), m))?;
                }
            }
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                return Err(err(id, at("tls"), "cert_file and key_file go together"));
            }
        }
        if let Some(p) = &t.proxy_url {
            reqwest::Proxy::all(p)
                .map_err(|e| err(id, at("proxy_url"), format!("invalid proxy URL {p:?}: {e}")))?;
        }
        if !build {
            continue;
        }
        let client = client(t).map_err(|(k, m)| err(id, at(&k), m))?;
        let timeout = if t.timeout.is_zero() {
            DEFAULT_TARGET_TIMEOUT
        } else {
            t.timeout
        };
        for (_, u) in urls {
            checks.push(Check {
                url: u.clone(),
                method: method.clone(),
                headers: headers.clone(),
                body: (!t.body.is_empty()).then(|| bytes::Bytes::from(t.body.clone())),
                timeout,
                client: client.clone(),
            });
        }
    }
    Ok(Checked { checks, toggles })
}

fn tls_version(v: &str) -> Result<reqwest::tls::Version, String> {
    match v {
        "1.2" => Ok(reqwest::tls::Version::TLS_1_2),
        "1.3" => Ok(reqwest::tls::Version::TLS_1_3),
        o => Err(format!(
            "unsupported TLS version {o:?}: expected \"1.2\" or \"1.3\""
        )),
    }
}

/// The client of one target: its TLS files are read here, once, at start.
fn client(t: &TargetConfig) -> Result<reqwest::Client, (String, String)> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        // A check reports the answer it got; a redirect is followed as Go's client does (10 hops).
        .redirect(reqwest::redirect::Policy::limited(10));
    if let Some(p) = &t.proxy_url {
        let proxy = reqwest::Proxy::all(p).map_err(|e| ("proxy_url".into(), e.to_string()))?;
        b = b.proxy(proxy);
    }
    if let Some(tls) = &t.tls {
        b = b.tls_danger_accept_invalid_certs(tls.insecure_skip_verify);
        if let Some(v) = &tls.min_version {
            b = b.tls_version_min(tls_version(v).map_err(|m| ("tls::min_version".into(), m))?);
        }
        if let Some(v) = &tls.max_version {
            b = b.tls_version_max(tls_version(v).map_err(|m| ("tls::max_version".into(), m))?);
        }
        if let Some(ca) = &tls.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| ("tls::ca_file".into(), format!("cannot read {ca:?}: {e}")))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                (
                    "tls::ca_file".into(),
                    format!("{ca:?} holds no valid PEM certificate: {e}"),
                )
            })?;
            // As Go's RootCAs: the file replaces the system roots rather than adding to them.
            b = b.tls_certs_only(certs);
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            let mut pem = std::fs::read(cert).map_err(|e| {
                (
                    "tls::cert_file".into(),
                    format!("cannot read {cert:?}: {e}"),
                )
            })?;
            pem.extend(
                std::fs::read(key)
                    .map_err(|e| ("tls::key_file".into(), format!("cannot read {key:?}: {e}")))?,
            );
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                (
                    "tls::cert_file".into(),
                    format!("cert_file and key_file are not a PEM pair: {e}"),
                )
            })?;
            b = b.identity(identity);
        }
    }
    b.build()
        .map_err(|e| ("tls".into(), format!("cannot build the HTTP client: {e}")))
}

struct Factory;

/// The `httpcheck` receiver factory (`http_check` is accepted too).
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = HttpCheckConfig;

    fn type_name(&self) -> &'static str {
        "httpcheck"
    }

    fn validate(&self, id: &ComponentId, cfg: &HttpCheckConfig) -> Result<(), ConfigError> {
        check(id, cfg, false).map(|_| ())
    }
}

impl vigil_core::factory::ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[(Signal::Metrics, vigil_core::Stability::Alpha)]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: HttpCheckConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        let checked = check(&set.id, &cfg, true)?;
        Ok(Arc::new(HttpCheckReceiver {
            obs: set.receiver_obs(""),
            failures: metrics::counter!("vigil_httpcheck_rounds_refused", "receiver" => set.id.to_string()),
            id: set.id.to_string(),
            cfg,
            checked: Arc::new(checked),
            next,
            tasks: set.tasks,
        }))
    }
}

/// The `httpcheck` receiver.
pub struct HttpCheckReceiver {
    id: String,
    cfg: HttpCheckConfig,
    checked: Arc<Checked>,
    next: NextConsumers,
    obs: vigil_core::ReceiverObs,
    /// Rounds of metrics the pipeline refused.
    failures: metrics::Counter,
    tasks: vigil_core::Tasks,
}

/// What one request came to.
struct Outcome {
    status: Option<u16>,
    millis: i64,
    error: Option<String>,
    size: Option<i64>,
}

/// The text of an error with its causes, as Go's wrapped errors read.
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

async fn run(c: &Check, want_size: bool) -> Outcome {
    let start = Instant::now();
    let mut req = c
        .client
        .request(c.method.clone(), &c.url)
        .headers(c.headers.clone())
        .timeout(c.timeout);
    if let Some(b) = &c.body {
        req = req.body(b.clone());
    }
    let mut out = Outcome {
        status: None,
        millis: 0,
        error: None,
        size: None,
    };
    match req.send().await {
        Ok(mut resp) => {
            out.status = Some(resp.status().as_u16());
            // The body is read and counted, never kept, so the connection can be reused and the
            // size reported without holding a large answer in memory.
            let mut n: i64 = 0;
            loop {
                match resp.chunk().await {
                    Ok(Some(b)) => n += b.len() as i64,
                    Ok(None) => break,
                    Err(e) => {
                        out.error = Some(error_text(&e));
                        break;
                    }
                }
            }
            if want_size {
                out.size = Some(n);
            }
        }
        Err(e) => out.error = Some(error_text(&e)),
    }
    out.millis = start.elapsed().as_millis() as i64;
    out
}

fn point(attrs: Vec<KeyValue>, v: i64, start: u64, now: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: start,
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsInt(v)),
        ..Default::default()
    }
}

fn gauge(name: &str, desc: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: desc.into(),
        unit: unit.into(),
        data: Some(Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

fn updown(name: &str, desc: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: desc.into(),
        unit: unit.into(),
        data: Some(Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: false,
        })),
        ..Default::default()
    }
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One round's metrics, in otelcol's shape: a status point per class (the status code only on the
/// class that matched, as otelcol removes it from the zero points), a duration per URL, and an error
/// point per URL that failed.
fn to_metrics(
    checks: &[Check],
    outcomes: &[Outcome],
    toggles: &Toggles,
    start: u64,
    now: u64,
) -> Vec<ResourceMetrics> {
    let (mut status, mut dur, mut errors, mut size) = (vec![], vec![], vec![], vec![]);
    for (c, o) in checks.iter().zip(outcomes) {
        let code = o.status.unwrap_or(0);
        for (i, class) in CLASSES.iter().enumerate() {
            let hit = code / 100 == i as u16 + 1;
            let mut a = vec![kv_str("http.url", &c.url)];
            if hit {
                a.push(kv_i64("http.status_code", code as i64));
            }
            a.push(kv_str("http.method", c.method.as_str()));
            a.push(kv_str("http.status_class", *class));
            status.push(point(a, hit as i64, start, now));
        }
        dur.push(point(
            vec![kv_str("http.url", &c.url)],
            o.millis,
            start,
            now,
        ));
        if let Some(e) = &o.error {
            errors.push(point(
                vec![kv_str("http.url", &c.url), kv_str("error.message", e)],
                1,
                start,
                now,
            ));
        }
        if let Some(n) = o.size {
            size.push(point(vec![kv_str("http.url", &c.url)], n, start, now));
        }
    }
    let mut metrics = Vec::new();
    if toggles.on("httpcheck.duration") {
        metrics.push(gauge(
            "httpcheck.duration",
            "Measures the duration of the HTTP check.",
            "ms",
            dur,
        ));
    }
    if toggles.on("httpcheck.error") && !errors.is_empty() {
        metrics.push(updown(
            "httpcheck.error",
            "Records errors occurring during HTTP check.",
            "{error}",
            errors,
        ));
    }
    if toggles.on("httpcheck.response.size") && !size.is_empty() {
        metrics.push(gauge(
            "httpcheck.response.size",
            "Size of response body in bytes.",
            "By",
            size,
        ));
    }
    if toggles.on("httpcheck.status") {
        metrics.push(updown(
            "httpcheck.status",
            "1 if the check resulted in status_code matching the status_class, otherwise 0.",
            "1",
            status,
        ));
    }
    if metrics.is_empty() {
        return Vec::new();
    }
    vec![ResourceMetrics {
        resource: Some(Resource::default()),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: SCOPE.into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            }),
            metrics,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }]
}

/// One round: every URL at once, bounded by the round `timeout` when one is set.
async fn round(checked: &Checked, round_timeout: Duration, start: u64) -> Vec<ResourceMetrics> {
    let want_size = checked.toggles.on("httpcheck.response.size");
    let all = futures::future::join_all(checked.checks.iter().map(|c| async move {
        if round_timeout.is_zero() {
            return run(c, want_size).await;
        }
        let t0 = Instant::now();
        match tokio::time::timeout(round_timeout, run(c, want_size)).await {
            Ok(o) => o,
            Err(_) => Outcome {
                status: None,
                millis: t0.elapsed().as_millis() as i64,
                error: Some(format!(
                    "context deadline exceeded (the round's timeout of {round_timeout:?})"
                )),
                size: None,
            },
        }
    }))
    .await;
    to_metrics(
        &checked.checks,
        &all,
        &checked.toggles,
        start,
        unix_nanos(SystemTime::now()),
    )
}

#[async_trait]
impl Component for HttpCheckReceiver {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let Some(next) = self.next.get(Signal::Metrics).cloned() else {
            anyhow::bail!(
                "receivers::{}: no metrics pipeline uses this receiver",
                self.id
            );
        };
        let (checked, obs, failures, id) = (
            Arc::clone(&self.checked),
            self.obs.clone(),
            self.failures.clone(),
            self.id.clone(),
        );
        let (interval, delay, round_timeout) = (
            self.cfg.collection_interval,
            self.cfg.initial_delay,
            self.cfg.timeout,
        );
        let cancel = self.tasks.stopping();
        let started = unix_nanos(SystemTime::now());
        self.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = cancel.cancelled() => return,
            }
            let mut timer = tokio::time::interval(interval);
            // A slow target must not be followed by a burst of catch-up rounds.
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = timer.tick() => {}
                    _ = cancel.cancelled() => return,
                }
                let batch = tokio::select! {
                    b = round(&checked, round_timeout, started) => b,
                    _ = cancel.cancelled() => return,
                };
                if batch.is_empty() {
                    continue;
                }
                let data = Telemetry::Metrics(batch);
                let items = data.item_count();
                let result = next.consume(data).await;
                obs.end_op(Signal::Metrics, items, &result);
                if let Err(e) = result {
                    failures.increment(1);
                    tracing::warn!(receiver = %id, "the pipeline refused httpcheck metrics: {e}");
                }
            }
        });
        Ok(())
    }

    /// Stopping cancels the loop, and a round in flight with it.
    fn tasks(&self) -> Option<&vigil_core::Tasks> {
        Some(&self.tasks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;
    use vigil_core::{ConsumeError, Consumer};

    #[derive(Default)]
    struct Sink(Mutex<Vec<ResourceMetrics>>);

    #[async_trait]
    impl Consumer for Sink {
        async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
            if let Telemetry::Metrics(m) = data {
                self.0.lock().unwrap().extend(m);
            }
            Ok(())
        }
    }

    fn load(v: serde_json::Value) -> Result<HttpCheckConfig, ConfigError> {
        let id = ComponentId::parse("httpcheck").unwrap();
        let c: HttpCheckConfig = vigil_core::config::decode(ComponentKind::Receiver, &id, &v)?;
        check(&id, &c, false)?;
        Ok(c)
    }

    /// A real HTTP server on an ephemeral port (axum over hyper), answering by path and recording
    /// what it was sent.
    async fn server() -> (
        std::net::SocketAddr,
        Arc<Mutex<Vec<(String, String, String)>>>,
    ) {
        use axum::routing::any;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = Arc::clone(&seen);
        let app = axum::Router::new()
            .route(
                "/ok",
                any(move |m: http::Method, h: http::HeaderMap, body: String| {
                    let s = Arc::clone(&s2);
                    async move {
                        let auth = h
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        s.lock().unwrap().push((m.to_string(), auth, body));
                        "hello"
                    }
                }),
            )
            .route(
                "/missing",
                any(|| async { (http::StatusCode::NOT_FOUND, "no") }),
            );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.ok() });
        (addr, seen)
    }

    fn points<'a>(rms: &'a [ResourceMetrics], name: &str) -> Vec<&'a NumberDataPoint> {
        rms.iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == name)
            .flat_map(|m| match &m.data {
                Some(Data::Gauge(g)) => g.data_points.iter().collect::<Vec<_>>(),
                Some(Data::Sum(s)) => s.data_points.iter().collect(),
                _ => vec![],
            })
            .collect()
    }

    fn attr<'a>(p: &'a NumberDataPoint, k: &str) -> Option<&'a str> {
        vigil_core::attrs::get_str(&p.attributes, k)
    }

    fn int(p: &NumberDataPoint) -> i64 {
        match p.value {
            Some(number_data_point::Value::AsInt(v)) => v,
            _ => panic!("not an int point"),
        }
    }

    /// Checks a 200, a 404 and a closed port against a real server: the status class points, the
    /// method and headers sent, the body, and the error with its message.
    #[tokio::test]
    async fn checks_a_real_server_and_reports_otelcol_metrics() {
        let (addr, seen) = server().await;
        // A port that was just free: connecting to it is refused.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let cfg = json!({
            "collection_interval": "100ms",
            "initial_delay": "0s",
            "targets": [
                {"endpoint": format!("http://{addr}/ok"), "method": "post",
                 "headers": {"Authorization": "Bearer t0k"}, "body": "{\"ping\":1}"},
                {"endpoints": [format!("http://{addr}/missing"), format!("http://{closed}/")]},
            ],
            "metrics": {"httpcheck.response.size": {"enabled": true}},
        });
        let cfg: HttpCheckConfig = load(cfg).unwrap();
        let id = ComponentId::parse("httpcheck").unwrap();
        let set = vigil_core::Settings::new(ComponentKind::Receiver, &id);
        let sink = Arc::new(Sink::default());
        let mut next = NextConsumers::new();
        next.insert(Signal::Metrics, sink.clone());
        let r = Factory_create(set, cfg, next);
        r.start(&Host::detached()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while points(&sink.0.lock().unwrap(), "httpcheck.duration").len() < 3 {
            assert!(Instant::now() < deadline, "no round of checks");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        r.shutdown().await.unwrap();
        let got = sink.0.lock().unwrap().clone();
        let first: Vec<ResourceMetrics> = vec![got[0].clone()];
        let status = points(&first, "httpcheck.status");
        assert_eq!(status.len(), 15, "5 classes for each of 3 URLs");
        let ok_url = format!("http://{addr}/ok");
        let hit: Vec<_> = status.iter().filter(|p| int(p) == 1).collect();
        assert_eq!(
            hit.len(),
            2,
            "the 200 and the 404; the refused one has no class"
        );
        let ok = hit
            .iter()
            .find(|p| attr(p, "http.url") == Some(&ok_url))
            .unwrap();
        assert_eq!(attr(ok, "http.status_class"), Some("2xx"));
        assert_eq!(attr(ok, "http.method"), Some("POST"));
        assert_eq!(
            vigil_core::attrs::get(&ok.attributes, "http.status_code"),
            Some(&vigil_core::otlp::common::v1::any_value::Value::IntValue(
                200
            ))
        );
        let nf = hit
            .iter()
            .find(|p| attr(p, "http.url") != Some(&ok_url))
            .unwrap();
        assert_eq!(attr(nf, "http.status_class"), Some("4xx"));
        // Zero points carry no status code, as otelcol removes it.
        assert!(status
            .iter()
            .filter(|p| int(p) == 0)
            .all(|p| vigil_core::attrs::get(&p.attributes, "http.status_code").is_none()));
        let errors = points(&first, "httpcheck.error");
        assert_eq!(errors.len(), 1);
        assert_eq!(
            attr(errors[0], "http.url"),
            Some(format!("http://{closed}/").as_str())
        );
        let msg = attr(errors[0], "error.message").unwrap();
        assert!(msg.to_lowercase().contains("connect"), "{msg}");
        let sizes = points(&first, "httpcheck.response.size");
        let ok_size = sizes
            .iter()
            .find(|p| attr(p, "http.url") == Some(&ok_url))
            .unwrap();
        assert_eq!(int(ok_size), 5);
        let (m, auth, body) = seen.lock().unwrap()[0].clone();
        assert_eq!(
            (m.as_str(), auth.as_str(), body.as_str()),
            ("POST", "Bearer t0k", "{\"ping\":1}")
        );
    }

    /// A minimal HTTPS server with a fresh self-signed certificate for `localhost`; answers 200.
    async fn https_server(dir: &std::path::Path) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ck.cert.pem()).unwrap();
        let certs = vec![ck.cert.der().clone()];
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(sock).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = s.shutdown().await;
                });
            }
        });
        (port, ca.display().to_string())
    }

    /// TLS: a server whose certificate is in `ca_file` is checked (2xx); without it the system
    /// roots do not trust the certificate and the check reports the error; `insecure_skip_verify`
    /// accepts it.
    #[tokio::test]
    async fn tls_targets_use_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let (port, ca) = https_server(dir.path()).await;
        let url = format!("https://localhost:{port}/");
        let cfg = load(json!({"targets": [
            {"endpoint": url, "tls": {"ca_file": ca}},
            {"endpoints": [url]},
            {"endpoints": [url], "tls": {"insecure_skip_verify": true}},
        ]}))
        .unwrap();
        let id = ComponentId::parse("httpcheck").unwrap();
        let checked = check(&id, &cfg, true).unwrap();
        let rms = round(&checked, Duration::ZERO, 0).await;
        let status = points(&rms, "httpcheck.status");
        let hits: Vec<i64> = status
            .chunks(5)
            .map(|c| c.iter().position(|p| int(p) == 1).map_or(-1, |i| i as i64))
            .collect();
        assert_eq!(
            hits,
            [1, -1, 1],
            "2xx with ca_file, nothing without, 2xx when skipping verification"
        );
        let errors = points(&rms, "httpcheck.error");
        assert_eq!(errors.len(), 1);
        let msg = attr(errors[0], "error.message").unwrap().to_lowercase();
        assert!(
            msg.contains("certificate") || msg.contains("issuer"),
            "{msg}"
        );
    }

    #[allow(non_snake_case)]
    fn Factory_create(
        set: vigil_core::Settings,
        cfg: HttpCheckConfig,
        next: NextConsumers,
    ) -> Arc<dyn Receiver> {
        use vigil_core::factory::ReceiverFactory;
        Factory.create(set, cfg, next).unwrap()
    }

    #[test]
    fn config_errors_name_the_key() {
        let e = load(json!({})).unwrap_err().to_string();
        assert!(
            e.contains("httpcheck::targets: no targets configured"),
            "{e}"
        );
        let e = load(json!({"targets": [{"method": "GET"}]}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("targets::0::endpoint"), "{e}");
        let e = load(json!({"targets": [{"endpoint": "localhost:80"}]}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("targets::0::endpoint") && e.contains("<scheme>://"),
            "{e}"
        );
        let e = load(json!({"targets": [{"endpoints": ["http://a", "ftp://b"]}]}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("targets::0::endpoints::1"), "{e}");
        let e = load(json!({"targets": [{"endpoint": "http://a", "method": "G T"}]}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("targets::0::method: invalid HTTP method"), "{e}");
        let e = load(
            json!({"targets": [{"endpoint": "http://a", "validations": [{"contains": "x"}]}]}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("targets::0::validations: response validations are not supported"),
            "{e}"
        );
        let e = load(json!({"targets": [{"endpoint": "http://a"}], "metrics": {"httpcheck.dns.lookup.duration": {"enabled": true}}}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("metrics::httpcheck.dns.lookup.duration::enabled"),
            "{e}"
        );
        let c = load(json!({"targets": [{"endpoint": "https://example.com/health", "tls": {"insecure_skip_verify": true}}]})).unwrap();
        assert_eq!(c.collection_interval, Duration::from_secs(60));
        assert_eq!(c.initial_delay, Duration::from_secs(1));
        assert_eq!(c.targets[0].method, "GET");
    }
}
