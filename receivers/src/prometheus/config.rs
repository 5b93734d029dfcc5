//! The `prometheus` receiver's config: otelcol's own keys around a `config:` block written in
//! Prometheus's schema (`global`, `scrape_configs`), with Prometheus's defaults and load-time checks,
//! and every error naming the key path inside `receivers::prometheus…`.

use super::relabel::{RelabelConfigRaw, Rule};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use vigil_core::config::decode;
use vigil_core::{ComponentId, ComponentKind, ConfigError};

/// Prometheus's default `global.scrape_interval`, which otelcol keeps.
pub const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(60);
/// Prometheus's default `global.scrape_timeout`.
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// vigil's body cap when `body_size_limit` is unset. Prometheus has none, but one runaway target
/// must not be able to take the memory of an agent that shares its node with real workloads.
pub const DEFAULT_BODY_SIZE_LIMIT: u64 = 32 * 1024 * 1024;
/// Prometheus's default `file_sd_configs.refresh_interval`.
pub const DEFAULT_FILE_SD_REFRESH: Duration = Duration::from_secs(300);

/// `receivers::prometheus` as written.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub config: Option<PromConfig>,
    #[serde(default)]
    pub trim_metric_suffixes: bool,
    /// Take counters' start time from `process_start_time_seconds` instead of first sight.
    #[serde(default)]
    pub use_start_time_metric: bool,
    pub start_time_metric_regex: Option<String>,
    /// Also emit `scrape_body_size_bytes`, `scrape_timeout_seconds` and `scrape_sample_limit`.
    #[serde(default)]
    pub report_extra_scrape_metrics: bool,
    /// otelcol's Target Allocator client: jobs from its `/scrape_configs`, targets by HTTP SD.
    pub target_allocator: Option<super::target_allocator::TargetAllocatorRaw>,
    pub api_server: Option<Value>,
}

/// The Prometheus config block.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PromConfig {
    #[serde(default)]
    pub global: GlobalConfig,
    #[serde(default)]
    pub scrape_configs: Vec<ScrapeConfigRaw>,
    /// Refused as not built: jobs must be written inline.
    pub scrape_config_files: Option<Value>,
    /// Refused: a receiver evaluates no rules, sends no alerts and writes or reads no remote store.
    pub rule_files: Option<Value>,
    pub alerting: Option<Value>,
    pub remote_write: Option<Value>,
    pub remote_read: Option<Value>,
    /// Prometheus server settings (TSDB, its own tracing, Go runtime, OTLP ingestion): read
    /// without effect, there is no server here.
    pub storage: Option<Value>,
    pub tracing: Option<Value>,
    pub runtime: Option<Value>,
    pub otlp: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    pub scrape_interval: Option<String>,
    pub scrape_timeout: Option<String>,
    /// Accepted because Prometheus configs carry it; there are no rules to evaluate here.
    pub evaluation_interval: Option<String>,
    /// Accepted because Prometheus configs carry it; they only label outgoing remote writes there.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// The formats offered to targets, in order of preference (each job may set its own).
    pub scrape_protocols: Option<Vec<String>>,
    /// Defaults of the jobs' keys of the same names.
    pub body_size_limit: Option<String>,
    pub sample_limit: Option<u64>,
    pub label_limit: Option<u64>,
    pub label_name_length_limit: Option<u64>,
    pub label_value_length_limit: Option<u64>,
    pub target_limit: Option<u64>,
    pub keep_dropped_targets: Option<u64>,
    /// Read without effect: no rules are evaluated.
    pub rule_query_offset: Option<String>,
    /// Refused when set: vigil writes no query or scrape-failure log files.
    pub query_log_file: Option<String>,
    pub scrape_failure_log_file: Option<String>,
    /// Defaults of the jobs' keys of the same names.
    pub metric_name_validation_scheme: Option<String>,
    pub metric_name_escaping_scheme: Option<String>,
    pub always_scrape_classic_histograms: Option<bool>,
    pub convert_classic_histograms_to_nhcb: Option<bool>,
    pub scrape_native_histograms: Option<bool>,
}

/// The `*_sd_configs` Prometheus has and vigil does not build: named in the refusal.
const UNBUILT_SD: &[&str] = &[
    "azure_sd_configs",
    "consul_sd_configs",
    "digitalocean_sd_configs",
    "docker_sd_configs",
    "dockerswarm_sd_configs",
    "dns_sd_configs",
    "ec2_sd_configs",
    "eureka_sd_configs",
    "gce_sd_configs",
    "hetzner_sd_configs",
    "ionos_sd_configs",
    "kuma_sd_configs",
    "lightsail_sd_configs",
    "linode_sd_configs",
    "marathon_sd_configs",
    "nerve_sd_configs",
    "nomad_sd_configs",
    "openstack_sd_configs",
    "ovhcloud_sd_configs",
    "puppetdb_sd_configs",
    "scaleway_sd_configs",
    "serverset_sd_configs",
    "stackit_sd_configs",
    "triton_sd_configs",
    "uyuni_sd_configs",
    "vultr_sd_configs",
];

/// Prometheus's `scrape_protocols` names and the media type each asks for.
const SCRAPE_PROTOCOLS: &[(&str, &str)] = &[
    (
        "PrometheusProto",
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
    ),
    ("PrometheusText0.0.4", "text/plain;version=0.0.4"),
    ("PrometheusText1.0.0", "text/plain;version=1.0.0"),
    ("OpenMetricsText0.0.1", "application/openmetrics-text;version=0.0.1"),
    ("OpenMetricsText1.0.0", "application/openmetrics-text;version=1.0.0"),
];

/// The `Accept` header for `protocols`, weighted in their order as Prometheus builds it. The
/// protobuf format is left out: vigil parses the text formats only, so a target must not be asked
/// for protobuf (a list of only `PrometheusProto` is refused by the caller).
fn accept_header(protocols: &[String]) -> String {
    let mut weight = SCRAPE_PROTOCOLS.len() + 1;
    let mut out = Vec::new();
    for p in protocols {
        if let Some((name, media)) = SCRAPE_PROTOCOLS.iter().find(|(n, _)| n == p) {
            if *name != "PrometheusProto" {
                out.push(format!("{media};q=0.{weight}"));
            }
        }
        weight -= 1;
    }
    out.push(format!("*/*;q=0.{weight}"));
    out.join(",")
}

/// Checks a `scrape_protocols` list as Prometheus does (known names, no repeats).
fn check_protocols(list: &[String]) -> Result<(), String> {
    if list.is_empty() {
        return Err("scrape_protocols cannot be empty".into());
    }
    for (i, p) in list.iter().enumerate() {
        if !SCRAPE_PROTOCOLS.iter().any(|(n, _)| n == p) {
            return Err(format!(
                "unknown scrape protocol {p:?}; supported: {}",
                SCRAPE_PROTOCOLS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if list[..i].contains(p) {
            return Err(format!("duplicated protocol in scrape_protocols: {p:?}"));
        }
    }
    if list.iter().all(|p| p == "PrometheusProto") {
        return Err(
            "PrometheusProto alone is not built in vigil (the protobuf exposition format is \
                    not parsed); add a text format such as OpenMetricsText1.0.0"
                .into(),
        );
    }
    Ok(())
}

/// One `scrape_configs` entry as written.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfigRaw {
    pub job_name: Option<String>,
    pub scrape_interval: Option<String>,
    pub scrape_timeout: Option<String>,
    pub metrics_path: Option<String>,
    pub scheme: Option<String>,
    #[serde(default)]
    pub params: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub static_configs: Vec<TargetGroup>,
    #[serde(default)]
    pub file_sd_configs: Vec<FileSdRaw>,
    #[serde(default)]
    pub kubernetes_sd_configs: Vec<super::kubernetes::KubernetesSdRaw>,
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfigRaw>,
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelConfigRaw>,
    #[serde(default)]
    pub honor_labels: bool,
    pub honor_timestamps: Option<bool>,
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    /// Prometheus's older spelling of `authorization: {credentials}` (type Bearer).
    pub bearer_token: Option<String>,
    /// Prometheus's older spelling of `authorization: {credentials_file}`; read at every scrape.
    pub bearer_token_file: Option<String>,
    pub tls_config: Option<TlsConfig>,
    pub body_size_limit: Option<String>,
    pub sample_limit: Option<u64>,
    /// Most labels a series may have after metric relabelling (`__name__` included); more fails
    /// the scrape. 0: no limit.
    pub label_limit: Option<u64>,
    pub label_name_length_limit: Option<u64>,
    pub label_value_length_limit: Option<u64>,
    /// Most targets the job may have after relabelling; more and none is scraped. 0: no limit.
    pub target_limit: Option<u64>,
    /// How many dropped targets Prometheus keeps for its `/targets` page. vigil has no such
    /// page and keeps none: read, without effect.
    pub keep_dropped_targets: Option<u64>,
    pub follow_redirects: Option<bool>,
    /// The job's own `scrape_protocols` (default: global's, else Prometheus's list).
    pub scrape_protocols: Option<Vec<String>>,
    /// The format read when a target's answer has no usable `Content-Type`.
    pub fallback_scrape_protocol: Option<String>,
    /// `false` asks targets for an uncompressed body (`Accept-Encoding: identity`).
    pub enable_compression: Option<bool>,
    /// `false` keeps scrapes on HTTP/1.1.
    pub enable_http2: Option<bool>,
    /// vigil marks a vanished series stale whether or not it carried its own timestamp, as
    /// Prometheus does with `true`: read, the behaviour is that of `true`.
    pub track_timestamps_staleness: Option<bool>,
    /// The text formats vigil reads carry classic histograms only, so they are always scraped:
    /// both spellings are read without effect (`scrape_classic_histograms` is Prometheus 2's).
    pub scrape_classic_histograms: Option<bool>,
    pub always_scrape_classic_histograms: Option<bool>,
    /// `true` is refused as not built (classic histograms are sent as they are).
    pub convert_classic_histograms_to_nhcb: Option<bool>,
    /// `true` is refused as not built: native histograms come only in the protobuf format, which
    /// vigil never asks for.
    pub scrape_native_histograms: Option<bool>,
    /// Bounds on native histograms; read without effect for the same reason.
    pub native_histogram_bucket_limit: Option<u64>,
    pub native_histogram_min_bucket_factor: Option<f64>,
    /// `legacy` or `utf8`, and `underscores`, `dots`, `values` or `allow-utf-8`: checked, then read
    /// without effect: the text formats vigil parses carry legacy names, kept as they are.
    pub metric_name_validation_scheme: Option<String>,
    pub metric_name_escaping_scheme: Option<String>,
    /// Refused as not built (named so the refusal says so, not "unknown field").
    pub scrape_failure_log_file: Option<String>,
    pub oauth2: Option<Value>,
    pub http_headers: Option<Value>,
    pub proxy_url: Option<String>,
    pub no_proxy: Option<String>,
    pub proxy_from_environment: Option<bool>,
    pub proxy_connect_header: Option<Value>,
    pub azure_sd_configs: Option<Value>,
    pub consul_sd_configs: Option<Value>,
    pub digitalocean_sd_configs: Option<Value>,
    pub docker_sd_configs: Option<Value>,
    pub dockerswarm_sd_configs: Option<Value>,
    pub dns_sd_configs: Option<Value>,
    pub ec2_sd_configs: Option<Value>,
    pub eureka_sd_configs: Option<Value>,
    pub gce_sd_configs: Option<Value>,
    pub hetzner_sd_configs: Option<Value>,
    #[serde(default)]
    pub http_sd_configs: Vec<super::http_sd::HttpSdRaw>,
    pub ionos_sd_configs: Option<Value>,
    pub kuma_sd_configs: Option<Value>,
    pub lightsail_sd_configs: Option<Value>,
    pub linode_sd_configs: Option<Value>,
    pub marathon_sd_configs: Option<Value>,
    pub nerve_sd_configs: Option<Value>,
    pub nomad_sd_configs: Option<Value>,
    pub openstack_sd_configs: Option<Value>,
    pub ovhcloud_sd_configs: Option<Value>,
    pub puppetdb_sd_configs: Option<Value>,
    pub scaleway_sd_configs: Option<Value>,
    pub serverset_sd_configs: Option<Value>,
    pub stackit_sd_configs: Option<Value>,
    pub triton_sd_configs: Option<Value>,
    pub uyuni_sd_configs: Option<Value>,
    pub vultr_sd_configs: Option<Value>,
}

impl ScrapeConfigRaw {
    /// The keys set that vigil refuses as not built, each with why.
    fn unbuilt(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        let sd = [
            &self.azure_sd_configs,
            &self.consul_sd_configs,
            &self.digitalocean_sd_configs,
            &self.docker_sd_configs,
            &self.dockerswarm_sd_configs,
            &self.dns_sd_configs,
            &self.ec2_sd_configs,
            &self.eureka_sd_configs,
            &self.gce_sd_configs,
            &self.hetzner_sd_configs,
            &self.ionos_sd_configs,
            &self.kuma_sd_configs,
            &self.lightsail_sd_configs,
            &self.linode_sd_configs,
            &self.marathon_sd_configs,
            &self.nerve_sd_configs,
            &self.nomad_sd_configs,
            &self.openstack_sd_configs,
            &self.ovhcloud_sd_configs,
            &self.puppetdb_sd_configs,
            &self.scaleway_sd_configs,
            &self.serverset_sd_configs,
            &self.stackit_sd_configs,
            &self.triton_sd_configs,
            &self.uyuni_sd_configs,
            &self.vultr_sd_configs,
        ];
        for (name, v) in UNBUILT_SD.iter().zip(sd) {
            // An empty list discovers nothing in Prometheus either.
            if v.as_ref()
                .is_some_and(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()))
            {
                out.push((*name, "this service discovery is not built in vigil; use static_configs, file_sd_configs, http_sd_configs or kubernetes_sd_configs"));
            }
        }
        let other: [(&'static str, bool, &'static str); 7] = [
            ("oauth2", self.oauth2.is_some(), "OAuth 2.0 client credentials for scrapes are not built in vigil"),
            ("http_headers", self.http_headers.is_some(), "custom scrape headers are not built in vigil"),
            ("proxy_url", self.proxy_url.is_some() || self.no_proxy.is_some() || self.proxy_connect_header.is_some(), "scraping through a proxy is not built in vigil"),
            ("proxy_from_environment", self.proxy_from_environment == Some(true), "scraping through a proxy is not built in vigil"),
            ("scrape_failure_log_file", self.scrape_failure_log_file.as_deref().is_some_and(|f| !f.is_empty()), "the scrape failure log file is not built in vigil; failures are logged and `up` is 0"),
            ("convert_classic_histograms_to_nhcb", self.convert_classic_histograms_to_nhcb == Some(true), "converting classic histograms to native ones (NHCB) is not built in vigil"),
            ("scrape_native_histograms", self.scrape_native_histograms == Some(true), "native histograms are not built in vigil (they come only in the protobuf format, which vigil does not parse)"),
        ];
        out.extend(
            other
                .iter()
                .filter(|(_, set, _)| *set)
                .map(|(k, _, m)| (*k, *m)),
        );
        out
    }
}

const VALIDATION_SCHEMES: &[&str] = &["legacy", "utf8"];
const ESCAPING_SCHEMES: &[&str] = &["allow-utf-8", "underscores", "dots", "values"];

fn check_scheme(v: &Option<String>, allowed: &[&str]) -> Result<(), String> {
    match v.as_deref() {
        None | Some("") => Ok(()),
        Some(s) if allowed.contains(&s) => Ok(()),
        Some(s) => Err(format!(
            "unknown value {s:?} (one of: {})",
            allowed.join(", ")
        )),
    }
}

/// A group of targets with shared labels, as in `static_configs` and file SD files.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetGroup {
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSdRaw {
    #[serde(default)]
    pub files: Vec<String>,
    pub refresh_interval: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    #[serde(default)]
    pub username: String,
    pub password: Option<String>,
    pub password_file: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub credentials: Option<String>,
    pub credentials_file: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub server_name: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// `TLS12` or `TLS13` (rustls speaks no older version; `TLS10`/`TLS11` are refused).
    pub min_version: Option<String>,
    pub max_version: Option<String>,
}

/// Prometheus's TLS version names as vigil's TLS code spells them.
pub fn tls_version(v: &str) -> Result<&'static str, String> {
    match v {
        "TLS12" => Ok("1.2"),
        "TLS13" => Ok("1.3"),
        "TLS10" | "TLS11" => Err(format!(
            "{v} is not built in vigil (rustls speaks TLS 1.2 and 1.3); use TLS12"
        )),
        _ => Err(format!("unknown TLS version {v:?} (TLS12 or TLS13)")),
    }
}

/// The whole receiver, checked and with every default filled in.
#[derive(Debug, Clone)]
pub struct Config {
    pub jobs: Vec<Job>,
    /// The Target Allocator client, with the section the allocator's jobs are checked against.
    pub target_allocator: Option<super::target_allocator::TargetAllocator>,
    pub start_time_metric: Option<regex::Regex>,
    pub report_extra_scrape_metrics: bool,
}

/// One scrape job, ready to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub metrics_path: String,
    pub scheme: String,
    pub params: BTreeMap<String, Vec<String>>,
    pub static_groups: Vec<TargetGroup>,
    pub file_sd: Vec<FileSd>,
    pub kubernetes_sd: Vec<super::kubernetes::KubernetesSd>,
    pub http_sd: Vec<super::http_sd::HttpSd>,
    pub relabel: Vec<Rule>,
    pub metric_relabel: Vec<Rule>,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub tls: TlsConfig,
    pub body_size_limit: u64,
    pub sample_limit: u64,
    pub label_limits: super::convert::LabelLimits,
    pub target_limit: u64,
    pub follow_redirects: bool,
    /// The `Accept` header built from `scrape_protocols`.
    pub accept: String,
    /// `fallback_scrape_protocol`, as the parser's format.
    pub fallback: Option<super::parse::Format>,
    pub enable_compression: bool,
    pub enable_http2: bool,
    /// The receiver's `trim_metric_suffixes`.
    pub trim_suffixes: bool,
}

#[derive(Debug, Clone)]
pub struct FileSd {
    pub files: Vec<String>,
    pub refresh: Duration,
}

fn err(id: &ComponentId, path: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Receiver, id, path, msg)
}

/// Parses a Prometheus duration (`30s`, `1m`, `1h30m`, `1d`, `2w`, `1y`, `500ms`): integers with
/// units from largest to smallest, as Prometheus's `model.ParseDuration` takes them.
pub fn parse_prom_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let units: [(&str, u64); 8] = [
        ("y", 365 * 24 * 3600 * 1000),
        ("w", 7 * 24 * 3600 * 1000),
        ("d", 24 * 3600 * 1000),
        ("h", 3600 * 1000),
        ("m", 60 * 1000),
        ("s", 1000),
        ("ms", 1),
        ("", 0),
    ];
    let bad =
        || format!("invalid duration {s:?} (expected e.g. \"15s\", \"1m\", \"1h30m\", \"1d\")");
    if s.is_empty() {
        return Err(bad());
    }
    let mut rest = s;
    let mut total_ms: u64 = 0;
    let mut last_rank = 0usize;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (rank, (unit, ms)) = units[..7]
            .iter()
            .enumerate()
            .find(|(_, (u, _))| rest.starts_with(u) && !(*u == "m" && rest.starts_with("ms")))
            .ok_or_else(bad)?;
        // Units must come largest first, each at most once ("1h30m", never "30m1h").
        if rank < last_rank {
            return Err(bad());
        }
        last_rank = rank + 1;
        total_ms = n
            .checked_mul(*ms)
            .and_then(|v| total_ms.checked_add(v))
            .ok_or_else(bad)?;
        rest = &rest[unit.len()..];
    }
    Ok(Duration::from_millis(total_ms))
}

/// Parses a byte size as Prometheus's `body_size_limit` takes it: `0`, `512`, `10KB`, `32MB`, `1GiB`
/// (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..split]
        .parse()
        .map_err(|_| format!("invalid size {s:?} (expected e.g. \"10MB\")"))?;
    let mult: u64 = match t[split..].trim() {
        "" | "B" => 1,
        "KB" | "KiB" | "K" => 1 << 10,
        "MB" | "MiB" | "M" => 1 << 20,
        "GB" | "GiB" | "G" => 1 << 30,
        "TB" | "TiB" | "T" => 1 << 40,
        u => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {u:?} (B, KB, MB, GB, TB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

fn duration_at(
    id: &ComponentId,
    path: &str,
    v: &Option<String>,
) -> Result<Option<Duration>, ConfigError> {
    match v {
        None => Ok(None),
        Some(s) => parse_prom_duration(s)
            .map(Some)
            .map_err(|m| err(id, path, m)),
    }
}

/// Decodes and checks the whole section.
pub fn load(id: &ComponentId, value: &Value) -> Result<Config, ConfigError> {
    check(id, decode(ComponentKind::Receiver, id, value)?)
}

/// Checks a decoded section and prepares what the component runs with.
pub fn check(id: &ComponentId, raw: RawConfig) -> Result<Config, ConfigError> {
    let target_allocator = match &raw.target_allocator {
        Some(ta) => Some(
            super::target_allocator::check(ta, &raw)
                .map_err(|(key, m)| err(id, format!("target_allocator::{key}"), m))?,
        ),
        None => None,
    };
    if raw.api_server.is_some() {
        return Err(err(
            id,
            "api_server",
            "the Prometheus API server is not supported by vigil",
        ));
    }
    // As otelcol: jobs may come from the Target Allocator alone (`config: {}` or no `config`).
    let prom = match raw.config {
        Some(p) => p,
        None if target_allocator.is_some() => PromConfig::default(),
        None => {
            return Err(err(
                id,
                "config",
                "no Prometheus scrape_configs or target_allocator set",
            ))
        }
    };
    for (key, set, msg) in [
        ("scrape_config_files", prom.scrape_config_files.is_some(), "not built in vigil; write the jobs under config::scrape_configs"),
        ("rule_files", prom.rule_files.is_some(), "not supported: the receiver evaluates no recording or alerting rules"),
        ("alerting", prom.alerting.is_some(), "not supported: the receiver sends no alerts"),
        ("remote_write", prom.remote_write.is_some(), "not supported here: send metrics on with the prometheusremotewrite exporter"),
        ("remote_read", prom.remote_read.is_some(), "not supported: the receiver reads no remote store"),
        ("global::query_log_file", prom.global.query_log_file.as_deref().is_some_and(|f| !f.is_empty()), "not supported: the receiver answers no queries"),
        ("global::scrape_failure_log_file", prom.global.scrape_failure_log_file.as_deref().is_some_and(|f| !f.is_empty()), "the scrape failure log file is not built in vigil; failures are logged and `up` is 0"),
        ("global::convert_classic_histograms_to_nhcb", prom.global.convert_classic_histograms_to_nhcb == Some(true), "converting classic histograms to native ones (NHCB) is not built in vigil"),
        ("global::scrape_native_histograms", prom.global.scrape_native_histograms == Some(true), "native histograms are not built in vigil (they come only in the protobuf format, which vigil does not parse)"),
    ] {
        if set {
            return Err(err(id, format!("config::{key}"), msg));
        }
    }
    check_scheme(
        &prom.global.metric_name_validation_scheme,
        VALIDATION_SCHEMES,
    )
    .map_err(|m| err(id, "config::global::metric_name_validation_scheme", m))?;
    check_scheme(&prom.global.metric_name_escaping_scheme, ESCAPING_SCHEMES)
        .map_err(|m| err(id, "config::global::metric_name_escaping_scheme", m))?;
    if prom.scrape_configs.is_empty() && target_allocator.is_none() {
        return Err(err(
            id,
            "config::scrape_configs",
            "no Prometheus scrape_configs or target_allocator set",
        ));
    }
    let g_interval = duration_at(
        id,
        "config::global::scrape_interval",
        &prom.global.scrape_interval,
    )?
    .unwrap_or(DEFAULT_SCRAPE_INTERVAL);
    let g_timeout = duration_at(
        id,
        "config::global::scrape_timeout",
        &prom.global.scrape_timeout,
    )?
    .unwrap_or(DEFAULT_SCRAPE_TIMEOUT);
    duration_at(
        id,
        "config::global::evaluation_interval",
        &prom.global.evaluation_interval,
    )?;
    if g_interval.is_zero() {
        return Err(err(
            id,
            "config::global::scrape_interval",
            "must be greater than 0",
        ));
    }
    if g_timeout > g_interval {
        return Err(err(
            id,
            "config::global::scrape_timeout",
            "global scrape timeout greater than scrape interval",
        ));
    }

    if let Some(list) = &prom.global.scrape_protocols {
        check_protocols(list).map_err(|m| err(id, "config::global::scrape_protocols", m))?;
    }
    let mut jobs: Vec<Job> = Vec::new();
    for (i, sc) in prom.scrape_configs.iter().enumerate() {
        let at = |k: &str| format!("config::scrape_configs::{i}::{k}");
        if let Some((key, msg)) = sc.unbuilt().into_iter().next() {
            return Err(err(id, at(key), msg));
        }
        check_scheme(&sc.metric_name_validation_scheme, VALIDATION_SCHEMES)
            .map_err(|m| err(id, at("metric_name_validation_scheme"), m))?;
        check_scheme(&sc.metric_name_escaping_scheme, ESCAPING_SCHEMES)
            .map_err(|m| err(id, at("metric_name_escaping_scheme"), m))?;
        let protocols = match (&sc.scrape_protocols, &prom.global.scrape_protocols) {
            (Some(own), _) => {
                check_protocols(own).map_err(|m| err(id, at("scrape_protocols"), m))?;
                own.clone()
            }
            (None, Some(global)) => global.clone(),
            // Prometheus's default order.
            (None, None) => [
                "OpenMetricsText1.0.0",
                "OpenMetricsText0.0.1",
                "PrometheusText1.0.0",
                "PrometheusText0.0.4",
            ]
            .map(String::from)
            .to_vec(),
        };
        let fallback = match sc.fallback_scrape_protocol.as_deref() {
            None | Some("") => None,
            Some(p) if p.starts_with("OpenMetricsText") && SCRAPE_PROTOCOLS.iter().any(|(n, _)| *n == p) => {
                Some(super::parse::Format::OpenMetrics)
            }
            Some(p) if p.starts_with("PrometheusText") && SCRAPE_PROTOCOLS.iter().any(|(n, _)| *n == p) => {
                Some(super::parse::Format::Text)
            }
            Some(p) => {
                return Err(err(
                    id,
                    at("fallback_scrape_protocol"),
                    format!("invalid fallback_scrape_protocol {p:?}: expected one of the text formats (PrometheusText0.0.4, PrometheusText1.0.0, OpenMetricsText0.0.1, OpenMetricsText1.0.0)"),
                ))
            }
        };
        let name = match sc.job_name.as_deref() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => return Err(err(id, at("job_name"), "job_name is empty")),
        };
        if jobs.iter().any(|j| j.name == name) {
            return Err(err(
                id,
                at("job_name"),
                format!("found multiple scrape configs with job name {name:?}"),
            ));
        }
        let interval =
            duration_at(id, &at("scrape_interval"), &sc.scrape_interval)?.unwrap_or(g_interval);
        if interval.is_zero() {
            return Err(err(id, at("scrape_interval"), "must be greater than 0"));
        }
        let timeout = match duration_at(id, &at("scrape_timeout"), &sc.scrape_timeout)? {
            Some(t) => t,
            // Prometheus clamps an inherited timeout to the job's own interval.
            None => g_timeout.min(interval),
        };
        if timeout > interval {
            return Err(err(
                id,
                at("scrape_timeout"),
                format!("scrape timeout greater than scrape interval for scrape config with job name {name:?}"),
            ));
        }
        if timeout.is_zero() {
            return Err(err(id, at("scrape_timeout"), "must be greater than 0"));
        }
        let scheme = sc.scheme.clone().unwrap_or_else(|| "http".into());
        if scheme != "http" && scheme != "https" {
            return Err(err(
                id,
                at("scheme"),
                format!("invalid scheme {scheme:?} (expected http or https)"),
            ));
        }
        let metrics_path = sc.metrics_path.clone().unwrap_or_else(|| "/metrics".into());
        if !metrics_path.starts_with('/') {
            return Err(err(
                id,
                at("metrics_path"),
                format!("{metrics_path:?} must start with '/'"),
            ));
        }
        for (g, group) in sc.static_configs.iter().enumerate() {
            for (t, target) in group.targets.iter().enumerate() {
                check_target(target)
                    .map_err(|m| err(id, at(&format!("static_configs::{g}::targets::{t}")), m))?;
            }
            for k in group.labels.keys() {
                if !super::relabel::is_label_name(k) {
                    return Err(err(
                        id,
                        at(&format!("static_configs::{g}::labels")),
                        format!("{k:?} is not a valid label name"),
                    ));
                }
            }
        }
        let mut file_sd = Vec::new();
        for (f, fsd) in sc.file_sd_configs.iter().enumerate() {
            if fsd.files.is_empty() {
                return Err(err(
                    id,
                    at(&format!("file_sd_configs::{f}::files")),
                    "file service discovery config must contain at least one path name",
                ));
            }
            for (n, pat) in fsd.files.iter().enumerate() {
                let ok = [".json", ".yml", ".yaml"]
                    .iter()
                    .any(|e| pat.to_ascii_lowercase().ends_with(e));
                if !ok {
                    return Err(err(id, at(&format!("file_sd_configs::{f}::files::{n}")), format!("path name {pat:?} is not valid for file discovery (expected .json, .yml or .yaml)")));
                }
                glob::Pattern::new(pat).map_err(|e| {
                    err(
                        id,
                        at(&format!("file_sd_configs::{f}::files::{n}")),
                        format!("invalid pattern {pat:?}: {e}"),
                    )
                })?;
            }
            let refresh = duration_at(
                id,
                &at(&format!("file_sd_configs::{f}::refresh_interval")),
                &fsd.refresh_interval,
            )?
            .unwrap_or(DEFAULT_FILE_SD_REFRESH);
            if refresh.is_zero() {
                return Err(err(
                    id,
                    at(&format!("file_sd_configs::{f}::refresh_interval")),
                    "must be greater than 0",
                ));
            }
            file_sd.push(FileSd {
                files: fsd.files.clone(),
                refresh,
            });
        }
        let compile = |list: &[RelabelConfigRaw], key: &str| -> Result<Vec<Rule>, ConfigError> {
            list.iter()
                .enumerate()
                .map(|(r, raw)| {
                    Rule::compile(raw).map_err(|m| err(id, at(&format!("{key}::{r}")), m))
                })
                .collect()
        };
        let mut http_sd = Vec::new();
        for (h, raw) in sc.http_sd_configs.iter().enumerate() {
            http_sd.push(
                super::http_sd::check(raw)
                    .map_err(|(key, m)| err(id, at(&format!("http_sd_configs::{h}::{key}")), m))?,
            );
        }
        let relabel = compile(&sc.relabel_configs, "relabel_configs")?;
        let metric_relabel = compile(&sc.metric_relabel_configs, "metric_relabel_configs")?;
        let mut kubernetes_sd = Vec::new();
        for (k, raw) in sc.kubernetes_sd_configs.iter().enumerate() {
            kubernetes_sd.push(super::kubernetes::check(raw).map_err(|(key, m)| {
                err(id, at(&format!("kubernetes_sd_configs::{k}::{key}")), m)
            })?);
        }
        // bearer_token(_file) is authorization with type Bearer, as Prometheus converts it.
        let mut authorization = sc.authorization.clone();
        if sc.bearer_token.is_some() || sc.bearer_token_file.is_some() {
            if sc.bearer_token.is_some() && sc.bearer_token_file.is_some() {
                return Err(err(
                    id,
                    at("bearer_token_file"),
                    "at most one of bearer_token and bearer_token_file must be configured",
                ));
            }
            if sc.authorization.is_some() || sc.basic_auth.is_some() {
                return Err(err(
                    id,
                    at("bearer_token_file"),
                    "at most one of basic_auth, authorization and bearer_token(_file) must be configured",
                ));
            }
            authorization = Some(Authorization {
                kind: Some("Bearer".into()),
                credentials: sc.bearer_token.clone(),
                credentials_file: sc.bearer_token_file.clone(),
            });
        }
        if let Some(b) = &sc.basic_auth {
            if b.password.is_some() && b.password_file.is_some() {
                return Err(err(
                    id,
                    at("basic_auth"),
                    "at most one of basic_auth password and password_file must be configured",
                ));
            }
            if sc.authorization.is_some() {
                return Err(err(
                    id,
                    at("authorization"),
                    "at most one of basic_auth and authorization must be configured",
                ));
            }
        }
        if let Some(a) = &sc.authorization {
            if a.credentials.is_some() && a.credentials_file.is_some() {
                return Err(err(id, at("authorization"), "at most one of authorization credentials and credentials_file must be configured"));
            }
            if a.kind
                .as_deref()
                .is_some_and(|k| k.eq_ignore_ascii_case("basic"))
            {
                return Err(err(
                    id,
                    at("authorization::type"),
                    "authorization type cannot be set to \"basic\", use \"basic_auth\" instead",
                ));
            }
        }
        let tls = sc.tls_config.clone().unwrap_or_default();
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(err(
                id,
                at("tls_config"),
                "cert_file and key_file must be set together",
            ));
        }
        if let Some(name) = tls.server_name.as_deref().filter(|n| !n.is_empty()) {
            vigil_core::net::client_tls::server_name(name)
                .map_err(|m| err(id, at("tls_config::server_name"), m))?;
        }
        for (key, v) in [
            ("min_version", &tls.min_version),
            ("max_version", &tls.max_version),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                tls_version(v).map_err(|m| err(id, at(&format!("tls_config::{key}")), m))?;
            }
        }
        let g = &prom.global;
        let body_size_limit = match sc.body_size_limit.as_ref().or(g.body_size_limit.as_ref()) {
            Some(s) => match parse_size(s).map_err(|m| err(id, at("body_size_limit"), m))? {
                0 => DEFAULT_BODY_SIZE_LIMIT,
                n => n,
            },
            None => DEFAULT_BODY_SIZE_LIMIT,
        };
        jobs.push(Job {
            name,
            interval,
            timeout,
            metrics_path,
            scheme,
            params: sc.params.clone(),
            static_groups: sc.static_configs.clone(),
            file_sd,
            kubernetes_sd,
            http_sd,
            relabel,
            metric_relabel,
            honor_labels: sc.honor_labels,
            honor_timestamps: sc.honor_timestamps.unwrap_or(true),
            basic_auth: sc.basic_auth.clone(),
            authorization,
            tls,
            body_size_limit,
            sample_limit: sc.sample_limit.or(g.sample_limit).unwrap_or(0),
            label_limits: super::convert::LabelLimits {
                labels: sc.label_limit.or(g.label_limit).unwrap_or(0),
                name_length: sc
                    .label_name_length_limit
                    .or(g.label_name_length_limit)
                    .unwrap_or(0),
                value_length: sc
                    .label_value_length_limit
                    .or(g.label_value_length_limit)
                    .unwrap_or(0),
            },
            target_limit: sc.target_limit.or(g.target_limit).unwrap_or(0),
            follow_redirects: sc.follow_redirects.unwrap_or(true),
            accept: accept_header(&protocols),
            fallback,
            enable_compression: sc.enable_compression.unwrap_or(true),
            enable_http2: sc.enable_http2.unwrap_or(true),
            trim_suffixes: raw.trim_metric_suffixes,
        });
    }
    let start_time_metric = if raw.use_start_time_metric {
        let pat = raw
            .start_time_metric_regex
            .as_deref()
            .unwrap_or("^(.+_)*process_start_time_seconds$");
        Some(vigil_core::config::re2_regex(pat).map_err(|e| {
            err(
                id,
                "start_time_metric_regex",
                format!("invalid regex {pat:?}: {e}"),
            )
        })?)
    } else {
        None
    };
    Ok(Config {
        jobs,
        target_allocator,
        start_time_metric,
        report_extra_scrape_metrics: raw.report_extra_scrape_metrics,
    })
}

/// A target is `host[:port]`, never a URL.
pub fn check_target(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("empty target".into());
    }
    if t.contains('/') {
        return Err(format!(
            "{t:?} is not a valid hostname (a target is host:port, without scheme or path)"
        ));
    }
    if t.contains(char::is_whitespace) {
        return Err(format!("{t:?} is not a valid hostname (it has spaces)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_protocols_compression_and_http2_as_prometheus_reads_them() {
        let id = ComponentId::parse("prometheus").unwrap();
        let load_yaml = |y: &str| load(&id, &serde_saphyr::from_str::<Value>(y).unwrap());
        let c = load_yaml(
            "config:\n  global:\n    scrape_protocols: [PrometheusText0.0.4, OpenMetricsText1.0.0]\n  scrape_configs:\n  - job_name: a\n    static_configs: [{targets: ['h:1']}]\n  - job_name: b\n    scrape_protocols: [PrometheusProto, OpenMetricsText1.0.0]\n    fallback_scrape_protocol: PrometheusText0.0.4\n    enable_compression: false\n    enable_http2: false\n    static_configs: [{targets: ['h:2']}]\n",
        )
        .unwrap();
        assert_eq!(
            c.jobs[0].accept,
            "text/plain;version=0.0.4;q=0.6,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.4"
        );
        // Protobuf is never asked for; its weight is still spent, as in Prometheus's order.
        assert_eq!(
            c.jobs[1].accept,
            "application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.4"
        );
        assert_eq!(c.jobs[1].fallback, Some(super::super::parse::Format::Text));
        assert!(!c.jobs[1].enable_compression && !c.jobs[1].enable_http2);
        assert!(c.jobs[0].enable_compression && c.jobs[0].enable_http2);
        // The limits: a job's own, else global's.
        let c = load_yaml(
            "config:\n  global:\n    sample_limit: 100\n    label_limit: 30\n    target_limit: 7\n    keep_dropped_targets: 10\n    body_size_limit: 1MB\n  scrape_configs:\n  - job_name: a\n    label_limit: 20\n    label_name_length_limit: 64\n    label_value_length_limit: 256\n    keep_dropped_targets: 0\n    static_configs: [{targets: ['h:1']}]\n",
        )
        .unwrap();
        let j = &c.jobs[0];
        assert_eq!((j.sample_limit, j.target_limit), (100, 7));
        assert_eq!(
            j.label_limits,
            super::super::convert::LabelLimits {
                labels: 20,
                name_length: 64,
                value_length: 256
            }
        );
        assert_eq!(j.body_size_limit, 1 << 20);
        for (bad, key) in [
            ("scrape_protocols: [Text]", "scrape_protocols"),
            (
                "scrape_protocols: [PrometheusText0.0.4, PrometheusText0.0.4]",
                "scrape_protocols",
            ),
            ("scrape_protocols: [PrometheusProto]", "scrape_protocols"),
            (
                "fallback_scrape_protocol: PrometheusProto",
                "fallback_scrape_protocol",
            ),
        ] {
            let e = load_yaml(&format!(
                "config:\n  scrape_configs:\n  - job_name: a\n    {bad}\n    static_configs: [{{targets: ['h:1']}}]\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(e.contains(&format!("scrape_configs::0::{key}")), "{e}");
        }
    }

    #[test]
    fn prometheus_2_and_3_keys_are_read_or_refused_by_name() {
        let id = ComponentId::parse("prometheus").unwrap();
        let load_yaml = |y: &str| load(&id, &serde_saphyr::from_str::<Value>(y).unwrap());
        // Keys published configs carry that change nothing vigil does.
        load_yaml(
            "config:\n  global:\n    rule_query_offset: 1m\n    metric_name_validation_scheme: utf8\n    metric_name_escaping_scheme: underscores\n    always_scrape_classic_histograms: true\n    convert_classic_histograms_to_nhcb: false\n  storage:\n    tsdb: {out_of_order_time_window: 10m}\n  runtime: {gogc: 75}\n  scrape_configs:\n  - job_name: a\n    tls_config: {min_version: TLS12, max_version: TLS13}\n    track_timestamps_staleness: true\n    scrape_classic_histograms: true\n    always_scrape_classic_histograms: false\n    native_histogram_bucket_limit: 160\n    native_histogram_min_bucket_factor: 1.1\n    metric_name_validation_scheme: legacy\n    metric_name_escaping_scheme: allow-utf-8\n    scrape_native_histograms: false\n    proxy_from_environment: false\n    dns_sd_configs: []\n    static_configs: [{targets: ['h:1']}]\n",
        )
        .unwrap();
        for (bad, key, want) in [
            (
                "dns_sd_configs: [{names: [a.b]}]",
                "dns_sd_configs",
                "not built",
            ),
            (
                "http_sd_configs: [{url: 'http://sd/', oauth2: {client_id: a}}]",
                "http_sd_configs::0::oauth2",
                "not built",
            ),
            (
                "http_sd_configs: [{url: 'ftp://sd/'}]",
                "http_sd_configs::0::url",
                "http or https",
            ),
            (
                "oauth2: {client_id: a, token_url: 'http://t/'}",
                "oauth2",
                "not built",
            ),
            ("proxy_url: 'http://proxy:3128'", "proxy_url", "not built"),
            (
                "http_headers: {X-A: {values: [b]}}",
                "http_headers",
                "not built",
            ),
            (
                "scrape_native_histograms: true",
                "scrape_native_histograms",
                "not built",
            ),
            (
                "convert_classic_histograms_to_nhcb: true",
                "convert_classic_histograms_to_nhcb",
                "not built",
            ),
            (
                "metric_name_validation_scheme: ascii",
                "metric_name_validation_scheme",
                "unknown value",
            ),
            (
                "tls_config: {min_version: TLS10}",
                "tls_config::min_version",
                "not built",
            ),
        ] {
            let e = load_yaml(&format!(
                "config:\n  scrape_configs:\n  - job_name: a\n    {bad}\n    static_configs: [{{targets: ['h:1']}}]\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                e.contains(&format!("scrape_configs::0::{key}")) && e.contains(want),
                "{e}"
            );
        }
        for (bad, key) in [
            ("rule_files: [a.yml]", "config::rule_files"),
            (
                "scrape_config_files: [a.yml]",
                "config::scrape_config_files",
            ),
            ("remote_write: [{url: 'http://w/'}]", "config::remote_write"),
            (
                "global: {query_log_file: q.log}",
                "config::global::query_log_file",
            ),
        ] {
            let e = load_yaml(&format!(
                "config:\n  {bad}\n  scrape_configs:\n  - job_name: a\n    static_configs: [{{targets: ['h:1']}}]\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn prometheus_durations() {
        assert_eq!(parse_prom_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(
            parse_prom_duration("1h30m").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_prom_duration("1d").unwrap(),
            Duration::from_secs(86400)
        );
        assert_eq!(
            parse_prom_duration("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_prom_duration("1m500ms").unwrap(),
            Duration::from_millis(60500)
        );
        assert!(parse_prom_duration("30m1h").is_err());
        assert!(parse_prom_duration("1.5s").is_err());
        assert!(parse_prom_duration("soon").is_err());
        assert!(parse_prom_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MB").unwrap(), 10 << 20);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert!(parse_size("10 parsecs").is_err());
    }
}
