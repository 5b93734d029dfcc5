//! `signalfx`: sends metrics to Splunk Observability Cloud (SignalFx) as protobuf datapoints
//! (`POST {ingest_url}/v2/datapoint`, gzip, `X-SF-Token`), histograms optionally as OTLP
//! (`/v2/datapoint/otlp`, `send_otlp_histograms`), and log records that carry a SignalFx event
//! as events (`/v2/event`), as otelcol-contrib's exporter does. Metrics go through upstream's
//! default translation rules (`rules.rs`) and metric filters (`filter.rs`) first. Delivery,
//! retries and the queue are the shared `SendStack`; a batch that needs several posts (per
//! passed-through token, per endpoint) is a [`Parts`] request, so a retry resends only what is
//! left.
//!
//! With `sync_host_metadata`, the host's properties are set once on its dimension through the
//! API (`hostmeta.rs`).
//!
//! Not built: trace correlation (the `correlation` section; the exporter takes no traces) and
//! the dimension updates other components ask for (k8s_cluster's metadata; `exclude_properties`
//! has nothing to filter); these keys are read.

mod filter;
mod hostmeta;
pub mod proto;
mod rules;
mod translate;

#[cfg(test)]
mod tests;

use crate::helper::http::{check_client, error_chain, http_client};
use crate::helper::parts::{Part, Parts};
use crate::helper::{
    classify, Compression, Delivered, QueueConfig, RetryConfig, SendError, SendSettings, SendStack,
    Sender,
};
use async_trait::async_trait;
use bytes::Bytes;
use filter::{Filters, MetricFilter};
use prost::Message;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use vigil_core::attrs::get_str;
use vigil_core::config::{duration, opt_duration, TlsClientConfig};
use vigil_core::factory::{DynExporterFactory, ExporterFactory, FactoryBase};
use vigil_core::otlp::metrics::v1::{metric::Data, ResourceMetrics, ScopeMetrics};
use vigil_core::{
    ComponentId, ComponentKind, ConfigError, Exporter, Settings, Signal, Stability, Telemetry,
};

const ROUTE_DATAPOINT: u8 = 0;
const ROUTE_OTLP: u8 = 1;
const ROUTE_EVENT: u8 = 2;

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn yes() -> bool {
    true
}

fn default_dim_chars() -> String {
    "_-.".into()
}

fn default_delta_ttl() -> i64 {
    3600
}

/// `dimension_client`: read for compatibility; dimension updates are not built.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DimensionClientConfig {
    #[serde(default)]
    pub max_buffered: Option<u64>,
    #[serde(default, with = "opt_duration")]
    pub send_delay: Option<Duration>,
    #[serde(default)]
    pub max_idle_conns: Option<u64>,
    #[serde(default)]
    pub max_idle_conns_per_host: Option<u64>,
    #[serde(default)]
    pub max_conns_per_host: Option<u64>,
    #[serde(default, with = "opt_duration")]
    pub idle_conn_timeout: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub timeout: Option<Duration>,
}

/// `correlation`: upstream's trace-to-metric correlation. vigil's `signalfx` takes no traces, so
/// these keys are read and have no effect.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CorrelationConfig {
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default, with = "opt_duration")]
    pub timeout: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub stale_service_timeout: Option<Duration>,
    #[serde(default)]
    pub max_requests: Option<u64>,
    #[serde(default)]
    pub max_buffered: Option<u64>,
    #[serde(default)]
    pub max_retries: Option<u64>,
    #[serde(default)]
    pub log_updates: Option<bool>,
    #[serde(default, with = "opt_duration")]
    pub retry_delay: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub cleanup_interval: Option<Duration>,
    #[serde(default)]
    pub sync_attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub tls: Option<TlsClientConfig>,
}

/// An `exclude_properties` entry (dimension updates are not built; read for compatibility).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PropertyFilter {
    #[serde(default)]
    pub dimension_name: Option<String>,
    #[serde(default)]
    pub dimension_value: Option<String>,
    #[serde(default)]
    pub property_name: Option<String>,
    #[serde(default)]
    pub property_value: Option<String>,
}

/// The `signalfx` config, with otelcol-contrib's keys and defaults.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignalFxConfig {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    realm: Option<String>,
    #[serde(default)]
    ingest_url: Option<String>,
    #[serde(default)]
    api_url: Option<String>,
    /// The ingest client's TLS (upstream's `ingest_tls`); `tls` is read as the same thing.
    #[serde(default)]
    ingest_tls: TlsClientConfig,
    #[serde(default)]
    api_tls: TlsClientConfig,
    #[serde(default)]
    tls: Option<TlsClientConfig>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout", with = "duration")]
    timeout: Duration,
    #[serde(default)]
    retry_on_failure: RetryConfig,
    #[serde(default)]
    sending_queue: QueueConfig,
    #[serde(default = "yes")]
    access_token_passthrough: bool,
    /// `None` (unset): upstream's default excludes; `[]`: none.
    #[serde(default)]
    exclude_metrics: Option<Vec<MetricFilter>>,
    #[serde(default)]
    include_metrics: Vec<MetricFilter>,
    #[serde(default)]
    disable_default_translation_rules: bool,
    /// Seconds a `delta_metric` series is remembered.
    #[serde(default = "default_delta_ttl")]
    delta_translation_ttl: i64,
    /// Removed from otelcol-contrib (which now ignores it); read and ignored here too, with a
    /// warning at start.
    #[serde(default)]
    translation_rules: Option<serde_json::Value>,
    #[serde(default = "default_dim_chars")]
    nonalphanumeric_dimension_chars: String,
    #[serde(default)]
    drop_histogram_buckets: bool,
    #[serde(default)]
    send_otlp_histograms: bool,
    #[serde(default)]
    log_data_points: bool,
    #[serde(default)]
    log_dimension_updates: bool,
    #[serde(default)]
    sync_host_metadata: bool,
    /// Upstream's host metadata reads `/proc` under it; set in Splunk's agent configs.
    #[serde(default)]
    root_path: Option<String>,
    #[serde(default)]
    dimension_client: DimensionClientConfig,
    #[serde(default)]
    exclude_properties: Vec<PropertyFilter>,
    #[serde(default)]
    correlation: Option<CorrelationConfig>,
    // confighttp's connection-pool keys: read; reqwest's pool keeps its own limits.
    #[serde(default)]
    max_idle_conns: Option<u64>,
    #[serde(default)]
    max_idle_conns_per_host: Option<u64>,
    #[serde(default)]
    max_conns_per_host: Option<u64>,
    #[serde(default, with = "opt_duration")]
    idle_conn_timeout: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    http2_read_idle_timeout: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    http2_ping_timeout: Option<Duration>,
}

fn config_error(id: &ComponentId, path: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Exporter, id, path, msg)
}

fn parse_url(id: &ComponentId, key: &str, raw: &str) -> Result<Url, ConfigError> {
    let url =
        Url::parse(raw).map_err(|e| config_error(id, key, format!("invalid URL {raw:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(config_error(
            id,
            key,
            format!("invalid URL {raw:?}: expected an http:// or https:// URL with a host"),
        ));
    }
    Ok(url)
}

fn join(base: &Url, path: &str) -> Url {
    let mut u = base.clone();
    let p = format!("{}/{path}", base.path().trim_end_matches('/'));
    u.set_path(&p);
    u
}

impl SignalFxConfig {
    fn settings(&self) -> SendSettings {
        SendSettings {
            timeout: self.timeout,
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
        }
    }

    fn ingest_base(&self, id: &ComponentId) -> Result<Url, ConfigError> {
        match (&self.ingest_url, &self.realm) {
            (Some(u), _) => parse_url(id, "ingest_url", u),
            (None, Some(realm)) => {
                parse_url(id, "realm", &format!("https://ingest.{realm}.signalfx.com"))
            }
            (None, None) => Err(config_error(
                id,
                "realm",
                "requires a non-empty \"realm\", or \"ingest_url\" and \"api_url\" should be \
                 explicitly set",
            )),
        }
    }

    fn api_base(&self, id: &ComponentId) -> Result<Url, ConfigError> {
        match (&self.api_url, &self.realm) {
            (Some(u), _) => parse_url(id, "api_url", u),
            (None, Some(realm)) => {
                parse_url(id, "realm", &format!("https://api.{realm}.signalfx.com"))
            }
            (None, None) => Err(config_error(
                id,
                "realm",
                "requires a non-empty \"realm\", or \"ingest_url\" and \"api_url\" should be \
                 explicitly set",
            )),
        }
    }

    fn tls(&self) -> &TlsClientConfig {
        self.tls.as_ref().unwrap_or(&self.ingest_tls)
    }

    fn filters(&self, id: &ComponentId) -> Result<Filters, ConfigError> {
        Filters::new(self.exclude_metrics.as_deref(), &self.include_metrics)
            .map_err(|(path, msg)| config_error(id, &path, msg))
    }

    fn validate(&self, id: &ComponentId) -> Result<(), ConfigError> {
        if self.access_token.as_deref().is_none_or(str::is_empty) {
            return Err(config_error(
                id,
                "access_token",
                "requires a non-empty \"access_token\"",
            ));
        }
        let realm = self.realm.as_deref().filter(|r| !r.is_empty());
        if realm.is_none() && (self.ingest_url.is_none() || self.api_url.is_none()) {
            return Err(config_error(
                id,
                "realm",
                "requires a non-empty \"realm\", or \"ingest_url\" and \"api_url\" should be \
                 explicitly set",
            ));
        }
        self.ingest_base(id)?;
        self.api_base(id)?;
        if self.delta_translation_ttl <= 0 {
            return Err(config_error(
                id,
                "delta_translation_ttl",
                "expected a number of seconds above 0",
            ));
        }
        self.filters(id)?;
        self.settings().validate(id)?;
        if self.sync_host_metadata {
            check_client(id, &BTreeMap::new(), &self.api_tls)?;
        }
        check_client(id, &self.headers, self.tls())
    }
}

/// The SignalFx transport: converts, translates and filters on `prepare`, posts on `send`.
pub struct SignalFxSender {
    client: reqwest::Client,
    token: String,
    urls: [Url; 3],
    passthrough: bool,
    filters: Filters,
    translator: Option<rules::Translator>,
    dim_chars: String,
    drop_buckets: bool,
    otlp_histograms: bool,
    log_data_points: bool,
    host_sync: Option<hostmeta::HostSync>,
}

fn gzip(body: Vec<u8>) -> Result<Bytes, SendError> {
    Compression::Gzip
        .compress(body)
        .map(Bytes::from)
        .map_err(|e| SendError::permanent(format!("cannot compress the request: {e}")))
}

impl SignalFxSender {
    /// The resource's passed-through token, if passthrough is on and it carries one.
    fn token_of(&self, attrs: &[vigil_core::otlp::common::v1::KeyValue]) -> Option<String> {
        self.passthrough
            .then(|| get_str(attrs, translate::TOKEN_ATTR).map(str::to_string))
            .flatten()
    }

    fn metric_parts(&self, rms: &[ResourceMetrics]) -> Result<Vec<Part>, SendError> {
        if let (Some(sync), Some(first)) = (&self.host_sync, rms.first()) {
            let attrs = first
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            sync.observe(attrs);
        }
        // Groups by token, in first-seen order.
        let mut groups: Vec<(Option<String>, Vec<&ResourceMetrics>)> = Vec::new();
        for rm in rms {
            let attrs = rm
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            let token = self.token_of(attrs);
            match groups.iter_mut().find(|(t, _)| *t == token) {
                Some((_, g)) => g.push(rm),
                None => groups.push((token, vec![rm])),
            }
        }
        let mut parts = Vec::new();
        for (token, group) in groups {
            let mut points = Vec::new();
            let mut histograms: Vec<ResourceMetrics> = Vec::new();
            for rm in &group {
                let attrs = rm
                    .resource
                    .as_ref()
                    .map(|r| r.attributes.as_slice())
                    .unwrap_or(&[]);
                let dims = translate::resource_dimensions(attrs);
                for sm in &rm.scope_metrics {
                    for m in &sm.metrics {
                        translate::from_metric(
                            m,
                            &dims,
                            self.drop_buckets,
                            self.otlp_histograms,
                            &mut points,
                        );
                    }
                }
                if self.otlp_histograms {
                    let scope_metrics: Vec<ScopeMetrics> = rm
                        .scope_metrics
                        .iter()
                        .filter_map(|sm| {
                            let metrics: Vec<_> = sm
                                .metrics
                                .iter()
                                .filter(|m| matches!(m.data, Some(Data::Histogram(_))))
                                .cloned()
                                .collect();
                            (!metrics.is_empty()).then(|| ScopeMetrics {
                                metrics,
                                ..sm.clone()
                            })
                        })
                        .collect();
                    if !scope_metrics.is_empty() {
                        let mut resource = rm.resource.clone();
                        if let Some(r) = &mut resource {
                            r.attributes.retain(|a| a.key != translate::TOKEN_ATTR);
                        }
                        histograms.push(ResourceMetrics {
                            resource,
                            scope_metrics,
                            schema_url: rm.schema_url.clone(),
                        });
                    }
                }
            }
            if let Some(t) = &self.translator {
                points = t.translate(points);
            }
            points.retain(|p| self.filters.keep(p));
            translate::sanitize_keys(&mut points, &self.dim_chars);
            if self.log_data_points {
                for p in &points {
                    tracing::debug!(metric = %p.metric, dimensions = ?p.dimensions, value = ?p.value, "signalfx datapoint");
                }
            }
            if !points.is_empty() {
                let body = proto::DataPointUploadMessage { datapoints: points }.encode_to_vec();
                parts.push(Part {
                    route: ROUTE_DATAPOINT,
                    token: token.clone(),
                    body: gzip(body)?,
                });
            }
            if !histograms.is_empty() {
                let body =
                    vigil_core::codec::encode::proto_request(&Telemetry::Metrics(histograms));
                parts.push(Part {
                    route: ROUTE_OTLP,
                    token,
                    body: gzip(body)?,
                });
            }
        }
        Ok(parts)
    }

    fn event_parts(
        &self,
        rls: &[vigil_core::otlp::logs::v1::ResourceLogs],
    ) -> Result<Vec<Part>, SendError> {
        let mut groups: Vec<(Option<String>, Vec<proto::Event>)> = Vec::new();
        for rl in rls {
            let attrs = rl
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            let token = self.token_of(attrs);
            let events: Vec<proto::Event> = rl
                .scope_logs
                .iter()
                .flat_map(|sl| sl.log_records.iter())
                .filter_map(|r| translate::event(r, attrs))
                .collect();
            match groups.iter_mut().find(|(t, _)| *t == token) {
                Some((_, g)) => g.extend(events),
                None => groups.push((token, events)),
            }
        }
        groups
            .into_iter()
            .filter(|(_, evs)| !evs.is_empty())
            .map(|(token, events)| {
                let body = proto::EventUploadMessage { events }.encode_to_vec();
                Ok(Part {
                    route: ROUTE_EVENT,
                    token,
                    body: gzip(body)?,
                })
            })
            .collect()
    }
}

/// How otelcol-contrib's Splunk exporters read an answer: 2xx is success; 429 and 503 are
/// throttling (retried, honouring `Retry-After`); 400 and 401 are permanent; any other status is
/// retried.
pub(crate) async fn classify_splunk(
    resp: reqwest::Response,
    url: &Url,
) -> Result<Delivered, SendError> {
    let status = resp.status();
    let retry_after = classify::retry_after_header(resp.headers());
    let body = resp.bytes().await.unwrap_or_default();
    if status.is_success() {
        return Ok(Delivered::default());
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let reason = if text.is_empty() {
        format!("HTTP {status} from {url}")
    } else {
        format!("HTTP {status} from {url}: {text}")
    };
    match status.as_u16() {
        429 | 503 => Err(SendError::Retryable {
            reason,
            retry_after,
        }),
        400 | 401 => Err(SendError::Permanent { reason }),
        _ => Err(SendError::retryable(reason)),
    }
}

#[async_trait]
impl Sender for SignalFxSender {
    type Request = Parts;

    fn prepare(&self, data: &Telemetry) -> Result<Parts, SendError> {
        let parts = match data {
            Telemetry::Metrics(rms) => self.metric_parts(rms)?,
            Telemetry::Logs(rls) => self.event_parts(rls)?,
            // The stability table keeps other signals out of its pipelines.
            _ => {
                return Err(SendError::permanent(format!(
                    "signalfx takes no {} in vigil (trace correlation is not built)",
                    data.signal()
                )))
            }
        };
        Ok(Parts::new(parts, 0, String::new()))
    }

    async fn send(&self, req: &Parts) -> Result<Delivered, SendError> {
        for (i, part) in req.pending() {
            let url = &self.urls[usize::from(part.route).min(2)];
            let token = part.token.as_deref().unwrap_or(&self.token);
            let resp = self
                .client
                .post(url.clone())
                .header("X-SF-Token", token)
                .header(CONTENT_TYPE, "application/x-protobuf")
                .header(CONTENT_ENCODING, "gzip")
                .body(part.body.clone())
                .send()
                .await
                .map_err(|e| {
                    SendError::retryable(format!("cannot send to {url}: {}", error_chain(&e)))
                })?;
            classify_splunk(resp, url).await?;
            req.accepted(i);
        }
        Ok(Delivered::default())
    }
}

fn build(set: &Settings, cfg: SignalFxConfig) -> Result<SendStack<SignalFxSender>, ConfigError> {
    let id = &set.id;
    if cfg.translation_rules.is_some() {
        tracing::warn!(exporter = %id, "translation_rules was removed from otelcol-contrib's signalfx exporter and is ignored, as there; use the metricstransform processor");
    }
    let base = cfg.ingest_base(id)?;
    let host_sync = if cfg.sync_host_metadata {
        let timeout = cfg
            .dimension_client
            .timeout
            .unwrap_or(Duration::from_secs(10));
        Some(hostmeta::HostSync {
            client: http_client(id, &BTreeMap::new(), &cfg.api_tls)?,
            api: cfg.api_base(id)?,
            timeout,
            token: cfg.access_token.clone().unwrap_or_default(),
            root: std::path::PathBuf::from(cfg.root_path.as_deref().unwrap_or("/")),
            send_delay: cfg
                .dimension_client
                .send_delay
                .unwrap_or(Duration::from_secs(10)),
            log_updates: cfg.log_dimension_updates,
            tasks: set.tasks.clone(),
            done: Default::default(),
        })
    } else {
        None
    };
    let sender = SignalFxSender {
        client: http_client(id, &cfg.headers, cfg.tls())?,
        token: cfg.access_token.clone().unwrap_or_default(),
        urls: [
            join(&base, "v2/datapoint"),
            join(&base, "v2/datapoint/otlp"),
            join(&base, "v2/event"),
        ],
        passthrough: cfg.access_token_passthrough,
        filters: cfg.filters(id)?,
        translator: (!cfg.disable_default_translation_rules).then(|| {
            rules::Translator::new(Duration::from_secs(
                u64::try_from(cfg.delta_translation_ttl).unwrap_or(3600),
            ))
        }),
        dim_chars: cfg.nonalphanumeric_dimension_chars.clone(),
        drop_buckets: cfg.drop_histogram_buckets,
        otlp_histograms: cfg.send_otlp_histograms,
        log_data_points: cfg.log_data_points,
        host_sync,
    };
    Ok(SendStack::new(set, cfg.settings(), sender))
}

struct Factory;

/// The `signalfx` exporter factory.
pub fn factory() -> Arc<dyn DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl FactoryBase for Factory {
    type Config = SignalFxConfig;

    fn type_name(&self) -> &'static str {
        "signalfx"
    }

    fn validate(&self, id: &ComponentId, cfg: &SignalFxConfig) -> Result<(), ConfigError> {
        cfg.validate(id)
    }
}

impl ExporterFactory for Factory {
    /// Upstream is beta for traces, metrics and logs; traces there only feed trace-to-metric
    /// correlation, which is not built, so vigil's takes metrics and logs (events).
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Metrics, Stability::Beta),
            (Signal::Logs, Stability::Beta),
        ]
    }

    fn create(&self, set: Settings, cfg: SignalFxConfig) -> Result<Arc<dyn Exporter>, ConfigError> {
        Ok(Arc::new(build(&set, cfg)?))
    }
}
