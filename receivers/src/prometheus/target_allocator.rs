//! The Target Allocator client (`target_allocator`), as otelcol's prometheusreceiver runs it:
//! every `interval` a GET of `<endpoint>/scrape_configs` answers a JSON map of job name to
//! Prometheus scrape config. When the answer differs from the last one applied, the allocator's
//! jobs are replaced: each job's own service discovery (whatever `*_sd_configs` or
//! `static_configs` the allocator wrote) is replaced by one HTTP SD source,
//! `<endpoint>/jobs/<job>/targets?collector_id=<id>`, refreshed every `http_sd_config`
//! `refresh_interval` (30 s without `http_sd_config`), with the allocator's `tls`, `http_sd_config`'s
//! credentials and no redirects; `http_scrape_config` replaces each job's scrape client settings;
//! `fallback_scrape_protocol` defaults to `PrometheusText0.0.4`; `$(SHARD)` in the answer becomes
//! the `SHARD` environment variable (`0` without it). The static `config::scrape_configs` jobs
//! run beside them. An answer that cannot be fetched, read or checked (or names a static job)
//! changes nothing: the last jobs keep running, as otelcol's sync returns before applying.
//!
//! One difference: otelcol's `start` blocks until the first answer (retrying with backoff, failing
//! after 15 minutes); vigil starts at once and retries in the background (1 s, doubling up to
//! `interval`), so one unreachable allocator does not hold up the agent.
//!
//! Bounds: at most [`MAX_JOBS`] jobs are taken from an answer (the rest, by name, dropped and
//! counted in `vigil_prometheus_sd_dropped{what=jobs}`); an answer over
//! [`super::http_sd::MAX_RESPONSE_BYTES`] is refused (`what=responses`).

use super::config::{Job, PromConfig, RawConfig, ScrapeConfigRaw, TlsConfig};
use super::http_sd::{self, HttpSd, HttpSdRaw, SdError};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vigil_core::config::TlsClientConfig;
use vigil_core::ComponentId;

/// vigil's default `interval` when unset (every published config sets one; otelcol's examples
/// and the operator write 30 s).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// otelcol's refresh of a job's targets when `http_sd_config` is not set.
pub const DEFAULT_SD_REFRESH: Duration = Duration::from_secs(30);
/// vigil's cap on the jobs taken from one answer.
pub const MAX_JOBS: usize = 1_000;

/// `target_allocator` as written: confighttp's client keys plus the allocator's own.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetAllocatorRaw {
    pub endpoint: Option<String>,
    #[serde(
        default,
        with = "vigil_core::config::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub interval: Option<Duration>,
    pub collector_id: Option<String>,
    /// Prometheus's HTTP SD config for the jobs' target lists; its `url` is written by the
    /// receiver, its `tls_config` replaced by `tls`.
    pub http_sd_config: Option<HttpSdRaw>,
    /// Prometheus's HTTP client config, replacing every allocator job's own.
    pub http_scrape_config: Option<HttpSdRaw>,
    pub tls: Option<TlsClientConfig>,
    #[serde(
        default,
        with = "vigil_core::config::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Refused as not built.
    pub auth: Option<Value>,
    pub proxy_url: Option<String>,
    pub compression: Option<Value>,
    /// confighttp's connection tuning: read without effect (reqwest pools on its own).
    pub read_buffer_size: Option<Value>,
    pub write_buffer_size: Option<Value>,
    pub max_idle_conns: Option<Value>,
    pub max_idle_conns_per_host: Option<Value>,
    pub max_conns_per_host: Option<Value>,
    pub idle_conn_timeout: Option<Value>,
    pub disable_keep_alives: Option<Value>,
    pub http2_read_idle_timeout: Option<Value>,
    pub http2_ping_timeout: Option<Value>,
    pub force_attempt_http2: Option<Value>,
}

/// The client's settings, checked.
#[derive(Debug, Clone)]
pub struct TargetAllocator {
    pub endpoint: String,
    pub interval: Duration,
    pub collector_id: String,
    /// The template of every job's HTTP SD source (all but the URL).
    pub sd: HttpSd,
    /// `http_scrape_config`, if set.
    pub scrape_client: Option<HttpSd>,
    pub tls: TlsClientConfig,
    pub timeout: Option<Duration>,
    pub headers: BTreeMap<String, String>,
    /// The receiver's section without jobs: allocator jobs are checked against its `global`.
    pub base: RawConfig,
}

/// Checks the section. Errors are (key under `target_allocator`, message).
pub fn check(
    raw: &TargetAllocatorRaw,
    all: &RawConfig,
) -> Result<TargetAllocator, (String, String)> {
    let e = |k: &str, m: &str| (k.to_string(), m.to_string());
    for (key, set, what) in [
        ("auth", raw.auth.is_some(), "authenticator extensions for the Target Allocator are not built in vigil; use headers or http_sd_config credentials"),
        ("proxy_url", raw.proxy_url.as_deref().is_some_and(|p| !p.is_empty()), "reaching the Target Allocator through a proxy is not built in vigil"),
        ("compression", raw.compression.as_ref().is_some_and(|c| !c.is_null() && c.as_str() != Some("") && c.as_str() != Some("none")), "compressed requests to the Target Allocator are not built in vigil"),
    ] {
        if set {
            return Err(e(key, what));
        }
    }
    let endpoint = raw.endpoint.clone().unwrap_or_default();
    let url = reqwest::Url::parse(&endpoint).map_err(|_| {
        e(
            "endpoint",
            &format!("TargetAllocator endpoint is not valid: {endpoint:?} (expected e.g. http://target-allocator:80)"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(e(
            "endpoint",
            &format!("TargetAllocator endpoint is not valid: {endpoint:?} (expected an http or https URL)"),
        ));
    }
    let interval = raw.interval.unwrap_or(DEFAULT_INTERVAL);
    if interval.is_zero() {
        return Err(e("interval", "interval must be a positive duration"));
    }
    // As otelcol: without collector_id, the pod's name from POD_NAME.
    let collector_id = match raw.collector_id.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => c.to_string(),
        None => std::env::var("POD_NAME")
            .ok()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                e(
                    "collector_id",
                    "not set and the POD_NAME env var is not found",
                )
            })?,
    };
    if collector_id.contains("${") {
        return Err(e(
            "collector_id",
            &format!("CollectorID is not a valid ID: {collector_id:?} (an unexpanded variable)"),
        ));
    }
    let tls = raw.tls.clone().unwrap_or_default();
    let mut sd = match &raw.http_sd_config {
        Some(h) => {
            http_sd::check_entry(h, false).map_err(|(k, m)| (format!("http_sd_config::{k}"), m))?
        }
        None => http_sd::check_entry(&HttpSdRaw::default(), false)
            .map(|mut s| {
                s.refresh = DEFAULT_SD_REFRESH;
                s
            })
            .map_err(|(k, m)| (format!("http_sd_config::{k}"), m))?,
    };
    // otelcol replaces the SD client's TLS with the allocator's and never follows redirects.
    sd.tls = prometheus_tls(&tls).map_err(|m| ("tls".to_string(), m))?;
    sd.follow_redirects = false;
    let scrape_client = match &raw.http_scrape_config {
        Some(h) => {
            if h.url.is_some() || h.refresh_interval.is_some() {
                return Err(e(
                    "http_scrape_config",
                    "url and refresh_interval are not keys of an HTTP client config",
                ));
            }
            Some(
                http_sd::check_entry(h, false)
                    .map_err(|(k, m)| (format!("http_scrape_config::{k}"), m))?,
            )
        }
        None => None,
    };
    let mut base = all.clone();
    base.target_allocator = None;
    if let Some(c) = base.config.as_mut() {
        c.scrape_configs.clear();
    }
    Ok(TargetAllocator {
        endpoint,
        interval,
        collector_id,
        sd,
        scrape_client,
        tls,
        timeout: raw.timeout,
        headers: raw.headers.clone(),
        base,
    })
}

/// configtls's client settings as a Prometheus `tls_config`, the conversion otelcol makes.
fn prometheus_tls(t: &TlsClientConfig) -> Result<TlsConfig, String> {
    let v = |v: &Option<String>| -> Result<Option<String>, String> {
        match v.as_deref() {
            None | Some("") => Ok(None),
            Some("1.2") => Ok(Some("TLS12".into())),
            Some("1.3") => Ok(Some("TLS13".into())),
            Some(o) => Err(format!(
                "TLS version {o:?} is not built in vigil (\"1.2\" or \"1.3\")"
            )),
        }
    };
    Ok(TlsConfig {
        ca_file: t.ca_file.clone(),
        cert_file: t.cert_file.clone(),
        key_file: t.key_file.clone(),
        server_name: t.server_name_override.clone(),
        insecure_skip_verify: t.insecure_skip_verify,
        min_version: v(&t.min_version)?,
        max_version: v(&t.max_version)?,
    })
}

/// The client for `/scrape_configs`: the allocator's confighttp TLS and timeout.
pub fn client(ta: &TargetAllocator) -> Result<reqwest::Client, String> {
    let tls =
        vigil_core::net::client_tls::client_config(&ta.tls, &[b"h2", b"http/1.1"], |key, msg| {
            vigil_core::ConfigError::new("", format!("target_allocator::{key}"), msg)
        })
        .map_err(|e| format!("{}: {}", e.path, e.message))?;
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in &ta.headers {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| format!("target_allocator::headers: {k:?}: {e}"))?;
        let value = reqwest::header::HeaderValue::from_str(v)
            .map_err(|e| format!("target_allocator::headers::{k}: {e}"))?;
        headers.insert(name, value);
    }
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers)
        .tls_backend_preconfigured((*tls).clone());
    if let Some(t) = ta.timeout.filter(|t| !t.is_zero()) {
        b = b.timeout(t);
    }
    b.build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Fetches `/scrape_configs`, with `$(SHARD)` replaced.
async fn fetch(
    client: &reqwest::Client,
    ta: &TargetAllocator,
) -> Result<BTreeMap<String, Value>, SdError> {
    let url = format!("{}/scrape_configs", ta.endpoint);
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| SdError::Other(format!("GET {url}: {}", http_sd::chain(&e))))?;
    if !resp.status().is_success() {
        return Err(SdError::Other(format!(
            "GET {url}: server returned HTTP status {}",
            resp.status()
        )));
    }
    let body = http_sd::read_capped(resp).await?;
    let shard = std::env::var("SHARD").unwrap_or_else(|_| "0".into());
    let text = String::from_utf8_lossy(&body).replace("$(SHARD)", &shard);
    // The allocator answers JSON; otelcol reads it with a YAML decoder, which takes the same.
    serde_json::from_str(&text)
        .map_err(|e| SdError::Other(format!("GET {url}: not a JSON map of scrape configs: {e}")))
}

/// Drops `null` members everywhere: Go marshals unset lists and pointers as `null`, which means
/// "unset" in a Prometheus config.
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Turns one allocator job into a job vigil runs.
pub fn job(id: &ComponentId, ta: &TargetAllocator, name: &str, raw: &Value) -> Result<Job, String> {
    let mut v = raw.clone();
    strip_nulls(&mut v);
    let Value::Object(m) = &mut v else {
        return Err("not a JSON object".into());
    };
    // Its discovery is replaced by the allocator's HTTP SD, whatever it was.
    m.retain(|k, _| !k.ends_with("_sd_configs") && k != "static_configs");
    // otelcol sets these two for allocator jobs; vigil sends classic histograms as they are.
    m.remove("convert_classic_histograms_to_nhcb");
    m.remove("always_scrape_classic_histograms");
    if m.get("fallback_scrape_protocol")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        m.insert(
            "fallback_scrape_protocol".into(),
            Value::String("PrometheusText0.0.4".into()),
        );
    }
    let sc: ScrapeConfigRaw =
        serde_json::from_value(v).map_err(|e| format!("not a scrape config vigil reads: {e}"))?;
    let mut raw_cfg = ta.base.clone();
    let global = raw_cfg.config.take().map(|c| c.global).unwrap_or_default();
    raw_cfg.config = Some(PromConfig {
        global,
        scrape_configs: vec![sc],
        ..Default::default()
    });
    let mut cfg = super::config::check(id, raw_cfg).map_err(|e| {
        // The path names the one-job section built here; the message is what matters.
        e.message
    })?;
    let mut job = cfg
        .jobs
        .pop()
        .ok_or_else(|| "no job was built".to_string())?;
    let mut sd = ta.sd.clone();
    sd.url = format!(
        "{}/jobs/{}/targets?collector_id={}",
        ta.endpoint,
        query_escape(name),
        ta.collector_id
    );
    job.http_sd = vec![sd];
    if let Some(c) = &ta.scrape_client {
        job.basic_auth = c.basic_auth.clone();
        job.authorization = c.authorization.clone();
        job.tls = c.tls.clone();
        job.follow_redirects = c.follow_redirects;
        job.enable_http2 = c.enable_http2;
    }
    Ok(job)
}

/// Go's `url.QueryEscape`, which otelcol applies to the job name in the path.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') => {
                out.push(b as char)
            }
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Builds every job of an answer, or says why the answer is refused as a whole. `dropped` counts
/// jobs past [`MAX_JOBS`].
pub fn jobs(
    id: &ComponentId,
    ta: &TargetAllocator,
    answer: &BTreeMap<String, Value>,
    static_names: &[String],
    dropped: &mut u64,
) -> Result<Vec<(String, Value, Job)>, String> {
    let mut out = Vec::new();
    for (i, (name, raw)) in answer.iter().enumerate() {
        if i >= MAX_JOBS {
            *dropped += 1;
            continue;
        }
        let job = job(id, ta, name, raw).map_err(|m| format!("job {name:?}: {m}"))?;
        if static_names.contains(&job.name) {
            return Err(format!(
                "found multiple scrape configs with job name {:?} (config::scrape_configs and the allocator)",
                job.name
            ));
        }
        if out
            .iter()
            .any(|(_, _, j): &(String, Value, Job)| j.name == job.name)
        {
            return Err(format!(
                "found multiple scrape configs with job name {:?}",
                job.name
            ));
        }
        out.push((name.clone(), raw.clone(), job));
    }
    Ok(out)
}

/// A running allocator job.
struct Running {
    raw: Value,
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

/// Makes the loop context of a job (its scrape client), or says why it cannot be made.
pub type MakeContext =
    Arc<dyn Fn(Job) -> Result<Arc<super::scrape::LoopContext>, String> + Send + Sync>;

/// Polls the allocator until `stop`, keeping one job manager per allocator job.
pub async fn run(
    id: ComponentId,
    ta: TargetAllocator,
    client: reqwest::Client,
    static_names: Vec<String>,
    make: MakeContext,
    stop: CancellationToken,
) {
    let receiver = id.to_string();
    let failures = metrics::counter!(
        "vigil_prometheus_target_allocator_failures",
        "receiver" => receiver.clone()
    );
    let dropped_jobs = metrics::counter!(
        "vigil_prometheus_sd_dropped",
        "receiver" => receiver.clone(),
        "what" => "jobs"
    );
    let dropped_responses = metrics::counter!(
        "vigil_prometheus_sd_dropped",
        "receiver" => receiver.clone(),
        "what" => "responses"
    );
    let mut applied: Option<BTreeMap<String, Value>> = None;
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut retry = Duration::from_secs(1);
    loop {
        let answer = tokio::select! {
            _ = stop.cancelled() => break,
            a = fetch(&client, &ta) => a,
        };
        match answer {
            Ok(answer) if applied.as_ref() != Some(&answer) => {
                let mut dropped = 0;
                match jobs(&id, &ta, &answer, &static_names, &mut dropped) {
                    Ok(new) => {
                        if dropped > 0 {
                            dropped_jobs.increment(dropped);
                            tracing::warn!(receiver = %receiver, dropped, max = MAX_JOBS,
                                "the Target Allocator lists more jobs than vigil's cap; the rest are not scraped");
                        }
                        apply(&receiver, &make, new, &mut running, &stop).await;
                        applied = Some(answer);
                    }
                    Err(m) => {
                        failures.increment(1);
                        tracing::error!(receiver = %receiver, error = %m,
                            "cannot apply the Target Allocator's scrape configs; the last jobs keep running");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                if matches!(e, SdError::TooLarge) {
                    dropped_responses.increment(1);
                }
                failures.increment(1);
                tracing::warn!(receiver = %receiver, error = %e,
                    "cannot read the Target Allocator's scrape configs; the last jobs keep running");
            }
        }
        let wait = if applied.is_some() {
            ta.interval
        } else {
            let w = retry;
            retry = (retry * 2).min(ta.interval);
            w
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    // `stop` is the parent of every job's token: each manager sends its staleness markers.
    for (_, r) in running.drain() {
        let _ = r.handle.await;
    }
}

/// Stops the jobs that are gone or changed (their targets go stale), starts the new ones.
async fn apply(
    receiver: &str,
    make: &MakeContext,
    new: Vec<(String, Value, Job)>,
    running: &mut HashMap<String, Running>,
    stop: &CancellationToken,
) {
    let keep: Vec<&String> = new
        .iter()
        .filter(|(n, raw, _)| running.get(n).is_some_and(|r| &r.raw == raw))
        .map(|(n, _, _)| n)
        .collect();
    let gone: Vec<String> = running
        .keys()
        .filter(|k| !keep.contains(k))
        .cloned()
        .collect();
    for k in gone {
        if let Some(r) = running.remove(&k) {
            tracing::info!(receiver, job = %k, "Target Allocator job removed");
            r.stop.cancel();
            let _ = r.handle.await;
        }
    }
    for (name, raw, job) in new {
        if running.contains_key(&name) {
            continue;
        }
        let job_name = job.name.clone();
        let ctx = match make(job) {
            Ok(c) => c,
            Err(m) => {
                metrics::counter!(
                    "vigil_prometheus_jobs_dropped",
                    "receiver" => receiver.to_string(),
                    "job" => job_name.clone()
                )
                .increment(1);
                tracing::error!(receiver, job = %job_name, error = %m,
                    "cannot create the scrape pool of a Target Allocator job; it is not scraped");
                continue;
            }
        };
        tracing::info!(receiver, job = %job_name, "Target Allocator job added");
        let tok = stop.child_token();
        let handle = tokio::spawn(super::manage(ctx, tok.clone()));
        running.insert(
            name,
            Running {
                raw,
                stop: tok,
                handle,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ta(yaml: &str) -> (ComponentId, TargetAllocator) {
        let id = ComponentId::parse("prometheus").unwrap();
        let v: Value = serde_saphyr::from_str(yaml).unwrap();
        let cfg = super::super::config::load(&id, &v).unwrap();
        (id, cfg.target_allocator.unwrap())
    }

    #[test]
    fn allocator_jobs_get_its_http_sd_and_keep_their_own_settings() {
        let (id, ta) = ta(
            "target_allocator:\n  endpoint: http://ta:80\n  interval: 10s\n  collector_id: col-1\n  http_sd_config:\n    refresh_interval: 15s\n    basic_auth: {username: u, password: p}\nconfig:\n  global: {scrape_interval: 20s}\n",
        );
        let answer: BTreeMap<String, Value> = serde_json::from_str(
            r#"{"job a/b":{"job_name":"job a/b","scrape_interval":"30s","scrape_timeout":"10s","metrics_path":"/m","scheme":"http","relabel_configs":null,"metric_relabel_configs":null,"kubernetes_sd_configs":[{"role":"pod"}],"consul_sd_configs":[{"server":"x"}],"honor_labels":true},
               "plain":{"job_name":"plain","fallback_scrape_protocol":"PrometheusText1.0.0"}}"#,
        )
        .unwrap();
        let mut dropped = 0;
        let jobs = jobs(&id, &ta, &answer, &[], &mut dropped).unwrap();
        assert_eq!(jobs.len(), 2);
        let j = &jobs[0].2;
        assert_eq!(j.name, "job a/b");
        assert_eq!(j.interval, Duration::from_secs(30));
        assert_eq!(j.metrics_path, "/m");
        assert!(j.honor_labels && j.kubernetes_sd.is_empty());
        assert_eq!(j.http_sd.len(), 1);
        assert_eq!(
            j.http_sd[0].url,
            "http://ta:80/jobs/job+a%2Fb/targets?collector_id=col-1"
        );
        assert_eq!(j.http_sd[0].refresh, Duration::from_secs(15));
        assert!(!j.http_sd[0].follow_redirects);
        assert_eq!(j.http_sd[0].basic_auth.as_ref().unwrap().username, "u");
        assert_eq!(j.fallback, Some(super::super::parse::Format::Text));
        // Global's interval for a job that sets none.
        assert_eq!(jobs[1].2.interval, Duration::from_secs(20));
        assert_eq!(dropped, 0);
    }

    #[test]
    fn answers_naming_a_static_job_or_bad_jobs_are_refused_whole() {
        let (id, ta) = ta(
            "target_allocator:\n  endpoint: http://ta:80\n  collector_id: c\nconfig:\n  scrape_configs:\n  - job_name: own\n    static_configs: [{targets: ['h:1']}]\n",
        );
        assert_eq!(ta.interval, DEFAULT_INTERVAL);
        assert_eq!(ta.sd.refresh, DEFAULT_SD_REFRESH);
        let mut d = 0;
        let a: BTreeMap<String, Value> =
            serde_json::from_str(r#"{"own":{"job_name":"own"}}"#).unwrap();
        assert!(jobs(&id, &ta, &a, &["own".into()], &mut d)
            .unwrap_err()
            .contains("multiple"));
        let a: BTreeMap<String, Value> =
            serde_json::from_str(r#"{"x":{"job_name":"x","scheme":"ftp"}}"#).unwrap();
        assert!(jobs(&id, &ta, &a, &[], &mut d)
            .unwrap_err()
            .contains("scheme"));
        let many: BTreeMap<String, Value> = (0..MAX_JOBS + 3)
            .map(|i| {
                (
                    format!("j{i:05}"),
                    serde_json::json!({"job_name": format!("j{i:05}")}),
                )
            })
            .collect();
        assert_eq!(jobs(&id, &ta, &many, &[], &mut d).unwrap().len(), MAX_JOBS);
        assert_eq!(d, 3);
    }

    #[test]
    fn the_section_is_checked_by_key() {
        let id = ComponentId::parse("prometheus").unwrap();
        for (yaml, key) in [
            ("target_allocator: {endpoint: 'not a url', collector_id: c}", "target_allocator::endpoint"),
            ("target_allocator: {endpoint: 'http://ta', collector_id: '${env:POD}'}", "target_allocator::collector_id"),
            ("target_allocator: {endpoint: 'http://ta', collector_id: c, interval: 0s}", "target_allocator::interval"),
            ("target_allocator: {endpoint: 'http://ta', collector_id: c, auth: {authenticator: x}}", "target_allocator::auth"),
            ("target_allocator: {endpoint: 'http://ta', collector_id: c, http_sd_config: {oauth2: {}}}", "target_allocator::http_sd_config::oauth2"),
            ("target_allocator: {endpoint: 'http://ta', collector_id: c, bogus: 1}", "bogus"),
            ("config: {}", "config::scrape_configs"),
        ] {
            let v: Value = serde_saphyr::from_str(yaml).unwrap();
            let e = super::super::config::load(&id, &v).unwrap_err().to_string();
            assert!(e.contains(key), "{yaml}: {e}");
        }
        // The allocator alone is a whole config, as in the operator's generated ones.
        let v: Value = serde_saphyr::from_str(
            "target_allocator: {endpoint: 'http://ta:80', collector_id: c, interval: 30s}\nconfig: {}",
        )
        .unwrap();
        let c = super::super::config::load(&id, &v).unwrap();
        assert!(c.jobs.is_empty() && c.target_allocator.is_some());
    }
}
