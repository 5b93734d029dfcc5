//! Scraping one target: the HTTP request (content negotiation between OpenMetrics 1.0 and text
//! 0.0.4, auth, the scrape timeout, a cap on the body) and the loop that runs it every interval and
//! pushes the translated result down the pipeline. A failed scrape of any kind (refused connection,
//! 404, timeout, garbage, a body over the cap) becomes `up` = 0 and a log line, never a crash.

use super::config::Job;
use super::convert::{scrape_report, ScrapeCounts, ScrapeSettings, Translator};
use super::discovery::Target;
use super::parse::Format;
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use vigil_core::{NextConsumers, Telemetry};

/// Why one scrape failed.
#[derive(Debug)]
pub enum ScrapeError {
    Http(String),
    Status(u16),
    Timeout(Duration),
    TooLarge(u64),
    NotUtf8,
    Body(String),
    Credentials(String),
}

impl std::fmt::Display for ScrapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScrapeError::Http(e) => write!(f, "request failed: {e}"),
            ScrapeError::Status(s) => write!(f, "server returned HTTP status {s}"),
            ScrapeError::Timeout(t) => write!(f, "scrape timed out after {t:?}"),
            ScrapeError::TooLarge(n) => {
                write!(
                    f,
                    "body size limit exceeded (more than {n} bytes; raise body_size_limit)"
                )
            }
            ScrapeError::NotUtf8 => f.write_str("body is not valid UTF-8"),
            ScrapeError::Body(e) => write!(f, "{e}"),
            ScrapeError::Credentials(e) => write!(f, "cannot read credentials: {e}"),
        }
    }
}

/// The rustls configuration of a `tls_config` (a job's, or a `kubernetes_sd_configs` entry's),
/// built by the same code as every other client of vigil's: `ca_file` replaces the system roots
/// (Go's `RootCAs`, which Prometheus sets), `server_name` is the name the server's certificate is
/// verified against whatever host the target's address names. The SNI sent stays the target's
/// host (none for an IP address): reqwest takes it from the URL.
pub fn tls_client_config(
    tls: &super::config::TlsConfig,
    http2: bool,
) -> Result<rustls::ClientConfig, String> {
    let version = |v: &Option<String>| {
        v.as_deref()
            .filter(|v| !v.is_empty())
            .map(|v| super::config::tls_version(v).map(String::from))
            .transpose()
    };
    let core = vigil_core::config::TlsClientConfig {
        ca_file: tls.ca_file.clone(),
        cert_file: tls.cert_file.clone(),
        key_file: tls.key_file.clone(),
        server_name_override: tls.server_name.clone().filter(|n| !n.is_empty()),
        insecure_skip_verify: tls.insecure_skip_verify,
        min_version: version(&tls.min_version)?,
        max_version: version(&tls.max_version)?,
        ..Default::default()
    };
    let alpn: &[&[u8]] = if http2 {
        &[b"h2", b"http/1.1"]
    } else {
        &[b"http/1.1"]
    };
    vigil_core::net::client_tls::client_config(&core, alpn, |key, msg| {
        // core names its keys `tls::…`; Prometheus's section is `tls_config`.
        let key = key.replacen("tls", "tls_config", 1);
        vigil_core::ConfigError::new("", key, msg)
    })
    .map(|c| (*c).clone())
    .map_err(|e| format!("{}: {}", e.path, e.message))
}

/// Builds the HTTP client of a job: its TLS settings and redirect policy.
pub fn client(job: &Job) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .redirect(if job.follow_redirects {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        })
        .tls_backend_preconfigured(tls_client_config(&job.tls, job.enable_http2)?);
    if !job.enable_http2 {
        b = b.http1_only();
    }
    b.build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

fn read_secret(path: &str) -> Result<String, ScrapeError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| ScrapeError::Credentials(format!("{path}: {e}")))
}

/// Fetches one body. Returns its format and text, or why it could not be had.
pub async fn fetch(
    client: &reqwest::Client,
    job: &Job,
    target: &Target,
) -> Result<(Format, String), ScrapeError> {
    let mut req = client
        .get(&target.url)
        .header(reqwest::header::ACCEPT, &job.accept)
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            format!("{}", target.timeout.as_secs_f64()),
        )
        .timeout(target.timeout);
    if !job.enable_compression {
        req = req.header(reqwest::header::ACCEPT_ENCODING, "identity");
    }
    if let Some(b) = &job.basic_auth {
        // Files are read at every scrape so that rotated secrets are picked up, as Prometheus does.
        let password = match (&b.password, &b.password_file) {
            (_, Some(f)) => Some(read_secret(f)?),
            (p, None) => p.clone(),
        };
        req = req.basic_auth(&b.username, password);
    }
    if let Some(a) = &job.authorization {
        let creds = match (&a.credentials, &a.credentials_file) {
            (_, Some(f)) => read_secret(f)?,
            (c, None) => c.clone().unwrap_or_default(),
        };
        let kind = a.kind.as_deref().unwrap_or("Bearer");
        req = req.header(reqwest::header::AUTHORIZATION, format!("{kind} {creds}"));
    }
    let limit = job.body_size_limit;
    let work = async {
        let mut resp = req.send().await.map_err(|e| classify(e, target.timeout))?;
        if !resp.status().is_success() {
            return Err(ScrapeError::Status(resp.status().as_u16()));
        }
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(ScrapeError::TooLarge(limit));
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        // A target that names no usable media type is read as fallback_scrape_protocol says.
        let format = match job.fallback {
            Some(f) if !content_type.contains('/') => f,
            _ => Format::from_content_type(content_type),
        };
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| classify(e, target.timeout))?
        {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(ScrapeError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(body).map_err(|_| ScrapeError::NotUtf8)?;
        Ok((format, text))
    };
    // reqwest's timeout covers the body too; the outer one is a backstop for a stuck body stream.
    match tokio::time::timeout(target.timeout + Duration::from_millis(100), work).await {
        Ok(r) => r,
        Err(_) => Err(ScrapeError::Timeout(target.timeout)),
    }
}

fn classify(e: reqwest::Error, timeout: Duration) -> ScrapeError {
    if e.is_timeout() {
        ScrapeError::Timeout(timeout)
    } else {
        // The source chain says what happened (connection refused, reset, …); the top level often
        // only says "error sending request".
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        ScrapeError::Http(msg)
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Everything one target's loop needs.
pub struct LoopContext {
    pub receiver: String,
    pub job: Arc<Job>,
    pub client: reqwest::Client,
    pub next: NextConsumers,
    pub start_time_metric: Option<regex::Regex>,
    pub report_extra: bool,
    pub obs: vigil_core::ReceiverObs,
}

/// Scrapes `target` every interval until `stop` fires, then marks its series stale.
pub async fn run(ctx: Arc<LoopContext>, target: Target, stop: CancellationToken) {
    let mut translator = Translator::trimming_suffixes(ctx.job.trim_suffixes);
    // Spread targets over the interval, as Prometheus does, so they are not all scraped at once.
    let offset = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        target.identity().hash(&mut h);
        Duration::from_millis(h.finish() % (target.interval.as_millis().max(1) as u64))
    };
    tokio::select! {
        _ = stop.cancelled() => return,
        _ = tokio::time::sleep(offset) => {}
    }
    let mut tick = tokio::time::interval(target.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let out = scrape_once(&ctx, &target, &mut translator, &mut last_error).await;
        deliver(&ctx, &target, out).await;
    }
    let stale = translator.all_stale(now_ns(), &target.info.scheme);
    if !stale.is_empty() {
        deliver(&ctx, &target, stale).await;
    }
}

/// One scrape, translated, with its `up`/`scrape_*` series; never fails.
pub async fn scrape_once(
    ctx: &LoopContext,
    target: &Target,
    translator: &mut Translator,
    last_error: &mut Option<String>,
) -> Vec<ResourceMetrics> {
    let ts = now_ns();
    let started = Instant::now();
    let fetched = fetch(&ctx.client, &ctx.job, target).await;
    let settings = ScrapeSettings {
        honor_labels: ctx.job.honor_labels,
        honor_timestamps: ctx.job.honor_timestamps,
        metric_relabel: &ctx.job.metric_relabel,
        sample_limit: ctx.job.sample_limit,
        start_time_metric: ctx.start_time_metric.as_ref(),
        label_limits: ctx.job.label_limits,
    };
    let mut body_len = 0u64;
    let result = match fetched {
        Ok((format, body)) => {
            body_len = body.len() as u64;
            translator
                .translate(&body, format, ts, &target.info, &settings)
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    let duration = started.elapsed().as_secs_f64();
    let (mut rms, up, counts) = match result {
        Ok(t) => {
            if last_error.take().is_some() {
                tracing::info!(receiver = %ctx.receiver, job = %ctx.job.name, target = %target.url, "scrape recovered");
            }
            (t.resource_metrics, true, t.counts)
        }
        Err(e) => {
            // One line per change of state, not one per failed scrape: a dead target scraped every
            // second must not flood the log.
            if last_error.as_deref() != Some(e.as_str()) {
                tracing::warn!(receiver = %ctx.receiver, job = %ctx.job.name, target = %target.url, error = %e, "scrape failed; up = 0");
            } else {
                tracing::debug!(receiver = %ctx.receiver, job = %ctx.job.name, target = %target.url, error = %e, "scrape failed");
            }
            *last_error = Some(e);
            (
                translator.all_stale(ts, &target.info.scheme),
                false,
                ScrapeCounts::default(),
            )
        }
    };
    let extra = ctx
        .report_extra
        .then(|| (body_len, target.timeout.as_secs_f64(), ctx.job.sample_limit));
    let report = scrape_report(up, duration, counts, extra, ts);
    attach(&mut rms, target, report);
    rms
}

/// Adds the synthetic series to the target's own resource, creating it when the scrape had none.
fn attach(
    rms: &mut Vec<ResourceMetrics>,
    target: &Target,
    report: Vec<opentelemetry_proto::tonic::metrics::v1::Metric>,
) {
    let want = super::convert::resource(
        target.info.job(),
        target.info.instance(),
        &target.info.scheme,
    );
    let found = rms
        .iter_mut()
        .find(|r| r.resource.as_ref() == Some(&want) && !r.scope_metrics.is_empty());
    match found {
        Some(r) => r.scope_metrics[0].metrics.extend(report),
        None => rms.push(ResourceMetrics {
            resource: Some(want),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(
                    opentelemetry_proto::tonic::common::v1::InstrumentationScope {
                        name: super::convert::SCOPE_NAME.into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    },
                ),
                metrics: report,
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

async fn deliver(ctx: &LoopContext, target: &Target, rms: Vec<ResourceMetrics>) {
    let data = Telemetry::Metrics(rms);
    let n = data.item_count();
    if n == 0 {
        return;
    }
    let result = ctx.next.consume(data).await;
    ctx.obs.end_op(vigil_core::Signal::Metrics, n, &result);
    if let Err(e) = result {
        // A scrape is not retried: the next one carries fresher values, as in otelcol.
        tracing::warn!(receiver = %ctx.receiver, job = %ctx.job.name, target = %target.url, error = %e, "pipeline refused scraped metrics");
    }
}
