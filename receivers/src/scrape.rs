//! What the scraping receivers of servers (`postgresql`, `redis`, `nginx`) share, after otelcol's
//! scraperhelper and mdatagen: metric definitions with their default toggles, a builder that groups
//! points into metrics and metrics into resources as mdatagen's `MetricsBuilder` does, the loop that
//! scrapes every `collection_interval` and hands each batch to the pipeline. Their client TLS is
//! `vigil_core::net::client_tls`, the exporters'.

use crate::hostmetrics::config::{MetricToggle, Toggles};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use vigil_core::otlp::common::v1::{InstrumentationScope, KeyValue};
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::{
    ComponentId, ConfigError, NextConsumers, Receiver, Settings, Signal, Stability, Telemetry,
};

/// How a metric is reported.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Gauge,
    /// A cumulative sum.
    Sum {
        monotonic: bool,
    },
}

/// One metric of a receiver's metadata: name, description, unit, type and whether otelcol emits it
/// by default.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub desc: &'static str,
    pub unit: &'static str,
    pub kind: Kind,
    pub enabled: bool,
}

/// A cumulative sum's definition, for a receiver's metadata table.
pub const fn sum(
    name: &'static str,
    desc: &'static str,
    unit: &'static str,
    monotonic: bool,
    enabled: bool,
) -> MetricDef {
    MetricDef {
        name,
        desc,
        unit,
        kind: Kind::Sum { monotonic },
        enabled,
    }
}

/// A gauge's definition, for a receiver's metadata table.
pub const fn gauge(
    name: &'static str,
    desc: &'static str,
    unit: &'static str,
    enabled: bool,
) -> MetricDef {
    MetricDef {
        name,
        desc,
        unit,
        kind: Kind::Gauge,
        enabled,
    }
}

/// The `(name, enabled by default)` table [`Toggles::build`] takes.
pub fn known(defs: &[MetricDef]) -> Vec<(&'static str, bool)> {
    defs.iter().map(|d| (d.name, d.enabled)).collect()
}

/// The toggles under `key` (`resource_attributes`, `events`), each named a `noun`:
/// [`Toggles::build`] speaks of metrics under `metrics`, so its errors are renamed to match.
pub fn toggles_under(
    key: &str,
    noun: &str,
    known: &[(&'static str, bool)],
    user: &BTreeMap<String, MetricToggle>,
    err: impl Fn(String, String) -> ConfigError,
) -> Result<Toggles, ConfigError> {
    Toggles::build(known, user, |p, m| {
        err(
            format!("{key}::{}", p.trim_start_matches("metrics::")),
            m.replace("metric", noun),
        )
    })
}

/// Kept under this path for the scrapers that name `scrape::unix_nanos`; the one implementation is core's.
pub use vigil_core::time::unix_nanos;

/// The two defaults in which the database scrapers' `tls` sections differ (otelcol's receivers each
/// set their own). A type parameter rather than a flattened shared part: serde's `flatten` cannot
/// be combined with `deny_unknown_fields`.
pub trait TlsDefaults {
    /// `insecure` when not written: true means plaintext.
    fn insecure() -> bool;
    /// `insecure_skip_verify` when not written.
    fn insecure_skip_verify() -> bool;
}

/// A database scraper's `tls` section: configtls's client keys, without `cipher_suites` and
/// `include_system_ca_certs_pool` (refused as unknown, as before this was shared), with the
/// defaults of `D`. An empty string is an unset key, as in configtls.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, bound = "")]
pub struct ScraperTls<D: TlsDefaults> {
    #[serde(default = "D::insecure")]
    pub insecure: bool,
    #[serde(default = "D::insecure_skip_verify")]
    pub insecure_skip_verify: bool,
    #[serde(default, with = "vigil_core::config::empty_as_none")]
    pub ca_file: Option<String>,
    #[serde(default, with = "vigil_core::config::empty_as_none")]
    pub cert_file: Option<String>,
    #[serde(default, with = "vigil_core::config::empty_as_none")]
    pub key_file: Option<String>,
    #[serde(default, with = "vigil_core::config::empty_as_none")]
    pub server_name_override: Option<String>,
    #[serde(default, with = "vigil_core::config::empty_as_none")]
    pub min_version: Option<String>,
    #[serde(default, with = "vigil_core::config::empty_as_none")]
    pub max_version: Option<String>,
    /// Certificates are read when the receiver starts; accepted, not re-read.
    #[serde(default, with = "vigil_core::config::duration")]
    pub reload_interval: Duration,
    #[serde(skip)]
    defaults: std::marker::PhantomData<D>,
}

impl<D: TlsDefaults> Default for ScraperTls<D> {
    fn default() -> Self {
        ScraperTls {
            insecure: D::insecure(),
            insecure_skip_verify: D::insecure_skip_verify(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            server_name_override: None,
            min_version: None,
            max_version: None,
            reload_interval: Duration::ZERO,
            defaults: std::marker::PhantomData,
        }
    }
}

impl<D: TlsDefaults> ScraperTls<D> {
    /// The client settings that `vigil_core::net::client_tls::client_config` builds from; `None` for
    /// `insecure: true` (plaintext). `server_name_override` is left to the caller, whose driver
    /// sets the name its own way.
    pub fn client(&self) -> Option<vigil_core::config::TlsClientConfig> {
        (!self.insecure).then(|| vigil_core::config::TlsClientConfig {
            insecure_skip_verify: self.insecure_skip_verify,
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            min_version: self.min_version.clone(),
            max_version: self.max_version.clone(),
            ..Default::default()
        })
    }
}

/// Collects one scrape's points: each point goes to its metric (created on first use, in the order
/// points arrive), and [`Builder::emit_for_resource`] closes the metrics recorded so far under one
/// resource, as mdatagen's `EmitForResource`. Points of disabled metrics are dropped on arrival.
pub struct Builder<'a> {
    defs: &'a [MetricDef],
    metrics: &'a Toggles,
    resource_attrs: &'a Toggles,
    scope: &'static str,
    start: u64,
    now: u64,
    pending: Vec<Metric>,
    out: Vec<ResourceMetrics>,
}

impl<'a> Builder<'a> {
    pub fn new(
        defs: &'a [MetricDef],
        metrics: &'a Toggles,
        resource_attrs: &'a Toggles,
        scope: &'static str,
        start: u64,
    ) -> Builder<'a> {
        Builder {
            defs,
            metrics,
            resource_attrs,
            scope,
            start,
            now: unix_nanos(SystemTime::now()),
            pending: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Whether `name` is emitted; a caller skips a query whose metrics are all off.
    pub fn on(&self, name: &str) -> bool {
        self.metrics.on(name)
    }

    pub fn int(&mut self, name: &str, v: i64, attrs: Vec<KeyValue>) {
        self.point(name, number_data_point::Value::AsInt(v), attrs)
    }

    pub fn double(&mut self, name: &str, v: f64, attrs: Vec<KeyValue>) {
        self.point(name, number_data_point::Value::AsDouble(v), attrs)
    }

    fn point(&mut self, name: &str, value: number_data_point::Value, attributes: Vec<KeyValue>) {
        if !self.metrics.on(name) {
            return;
        }
        let Some(def) = self.defs.iter().find(|d| d.name == name) else {
            debug_assert!(false, "metric {name} has no definition");
            return;
        };
        let start = match def.kind {
            Kind::Gauge => 0,
            Kind::Sum { .. } => self.start,
        };
        let p = NumberDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: self.now,
            value: Some(value),
            ..Default::default()
        };
        let points = match self.pending.iter_mut().find(|m| m.name == name) {
            Some(m) => m,
            None => {
                self.pending.push(Metric {
                    name: def.name.into(),
                    description: def.desc.into(),
                    unit: def.unit.into(),
                    data: Some(match def.kind {
                        Kind::Gauge => Data::Gauge(Gauge {
                            data_points: Vec::new(),
                        }),
                        Kind::Sum { monotonic } => Data::Sum(Sum {
                            data_points: Vec::new(),
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            is_monotonic: monotonic,
                        }),
                    }),
                    ..Default::default()
                });
                self.pending.last_mut().expect("just pushed")
            }
        };
        match &mut points.data {
            Some(Data::Gauge(g)) => g.data_points.push(p),
            Some(Data::Sum(s)) => s.data_points.push(p),
            _ => {}
        }
    }

    /// Puts the metrics recorded since the last call under a resource with `attrs` (those the
    /// `resource_attributes` toggles leave on). Nothing recorded: nothing emitted.
    pub fn emit_for_resource(&mut self, attrs: Vec<KeyValue>) {
        self.emit_for_resource_with(attrs, Vec::new())
    }

    /// [`Builder::emit_for_resource`], with `extra` attributes that no toggle governs (names the
    /// user chose, such as docker_stats' `container_labels_to_metric_labels`).
    pub fn emit_for_resource_with(&mut self, attrs: Vec<KeyValue>, extra: Vec<KeyValue>) {
        if self.pending.is_empty() {
            return;
        }
        let attributes = attrs
            .into_iter()
            .filter(|kv| self.resource_attrs.on(&kv.key))
            .chain(extra)
            .collect();
        self.out.push(ResourceMetrics {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: self.scope.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics: std::mem::take(&mut self.pending),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        });
    }

    /// Everything recorded; what was not yet emitted goes under `attrs`.
    pub fn finish(mut self, attrs: Vec<KeyValue>) -> Vec<ResourceMetrics> {
        self.emit_for_resource(attrs);
        self.out
    }
}

/// What one scrape returned: the metrics it could make, and what failed (a partial scrape sends
/// what it has, as scraperhelper does with a partial error).
#[derive(Default)]
pub struct Scraped {
    pub metrics: Vec<ResourceMetrics>,
    pub errors: Vec<String>,
}

/// One receiver's scrape.
#[async_trait]
pub trait Scrape: Send + Sync + 'static {
    async fn scrape(&self) -> Scraped;
}

/// scraperhelper's controller keys.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub collection_interval: Duration,
    pub initial_delay: Duration,
    /// Bound on one scrape; zero means none.
    pub timeout: Duration,
}

/// A receiver that runs its scraper every `collection_interval` after `initial_delay`, until it
/// stops: a scrape that takes longer delays the next rather than stacking them, `timeout` (when set)
/// cuts one short, and each scrape's errors are logged with the receiver's id and counted in
/// `vigil_scrape_failures`.
pub struct ScrapeReceiver {
    id: String,
    schedule: Schedule,
    next: NextConsumers,
    scraper: Arc<dyn Scrape>,
    obs: vigil_core::ReceiverObs,
    failed: metrics::Counter,
    refused: metrics::Counter,
    tasks: vigil_core::Tasks,
}

impl ScrapeReceiver {
    pub fn new(
        set: vigil_core::Settings,
        schedule: Schedule,
        next: NextConsumers,
        scraper: Arc<dyn Scrape>,
    ) -> ScrapeReceiver {
        let id = set.id.to_string();
        ScrapeReceiver {
            obs: set.receiver_obs(""),
            failed: metrics::counter!("vigil_scrape_failures", "receiver" => id.clone()),
            refused: metrics::counter!("vigil_scrape_batches_refused", "receiver" => id.clone()),
            id,
            schedule,
            next,
            scraper,
            tasks: set.tasks,
        }
    }
}

#[async_trait]
impl vigil_core::Component for ScrapeReceiver {
    async fn start(&self, _host: &vigil_core::Host) -> anyhow::Result<()> {
        let Some(next) = self.next.get(Signal::Metrics).cloned() else {
            anyhow::bail!(
                "receivers::{}: no metrics pipeline uses this receiver",
                self.id
            );
        };
        let (id, obs, failed, refused) = (
            self.id.clone(),
            self.obs.clone(),
            self.failed.clone(),
            self.refused.clone(),
        );
        let (schedule, scraper) = (self.schedule, Arc::clone(&self.scraper));
        let cancel = self.tasks.stopping();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(schedule.initial_delay) => {}
                _ = cancel.cancelled() => return,
            }
            let mut timer = tokio::time::interval(schedule.collection_interval);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = timer.tick() => {}
                    _ = cancel.cancelled() => return,
                }
                let work = async {
                    if schedule.timeout.is_zero() {
                        return scraper.scrape().await;
                    }
                    match tokio::time::timeout(schedule.timeout, scraper.scrape()).await {
                        Ok(s) => s,
                        Err(_) => Scraped {
                            metrics: Vec::new(),
                            errors: vec![format!(
                                "the scrape took longer than timeout ({:?})",
                                schedule.timeout
                            )],
                        },
                    }
                };
                let scraped = tokio::select! {
                    s = work => s,
                    _ = cancel.cancelled() => return,
                };
                if !scraped.errors.is_empty() {
                    failed.increment(1);
                    tracing::warn!(receiver = %id, "scrape failed: {}", scraped.errors.join("; "));
                }
                if scraped.metrics.is_empty() {
                    continue;
                }
                let data = Telemetry::Metrics(scraped.metrics);
                let items = data.item_count();
                let result = next.consume(data).await;
                obs.end_op(Signal::Metrics, items, &result);
                if let Err(e) = result {
                    refused.increment(1);
                    tracing::warn!(receiver = %id, "the pipeline refused scraped metrics: {e}");
                }
            }
        });
        Ok(())
    }

    /// Stopping cancels the loop, and a scrape in flight with it.
    fn tasks(&self) -> Option<&vigil_core::Tasks> {
        Some(&self.tasks)
    }
}

/// What differs between the scraping receivers' factories; [`factory`] supplies the rest: the
/// `FactoryBase`/`ReceiverFactory` impls, and `create` building the scraper and its loop.
pub struct Spec<C, S> {
    pub type_name: &'static str,
    pub stability: &'static [(Signal, Stability)],
    /// `validate`: checks the section, reads nothing.
    pub check: fn(&ComponentId, &C) -> Result<(), ConfigError>,
    /// The scraper of a section, checked; creation may read files (TLS certificates).
    pub build: fn(&ComponentId, &C) -> Result<S, ConfigError>,
    pub schedule: fn(&C) -> Schedule,
    /// The receiver running the scraper; [`run`] unless a receiver does more on start.
    pub receiver: fn(Settings, Schedule, NextConsumers, Arc<S>) -> Arc<dyn Receiver>,
}

/// Metrics only, beta: the stability of most scraping receivers.
pub const BETA: &[(Signal, Stability)] = &[(Signal::Metrics, Stability::Beta)];

/// The plain receiver of a scraper: its loop, nothing more.
pub fn run<S: Scrape>(
    set: Settings,
    schedule: Schedule,
    next: NextConsumers,
    scraper: Arc<S>,
) -> Arc<dyn Receiver> {
    Arc::new(ScrapeReceiver::new(set, schedule, next, scraper))
}

/// A scraping receiver's factory, ready for the registry.
pub fn factory<C, S>(spec: Spec<C, S>) -> Arc<dyn vigil_core::factory::DynReceiverFactory>
where
    C: serde::de::DeserializeOwned + serde::Serialize + Send + Sync + 'static,
    S: Scrape,
{
    vigil_core::factory::receiver(spec)
}

impl<C, S> vigil_core::factory::FactoryBase for Spec<C, S>
where
    C: serde::de::DeserializeOwned + serde::Serialize + Send + Sync + 'static,
    S: Scrape,
{
    type Config = C;

    fn type_name(&self) -> &'static str {
        self.type_name
    }

    fn validate(&self, id: &ComponentId, cfg: &C) -> Result<(), ConfigError> {
        (self.check)(id, cfg)
    }
}

impl<C, S> vigil_core::factory::ReceiverFactory for Spec<C, S>
where
    C: serde::de::DeserializeOwned + serde::Serialize + Send + Sync + 'static,
    S: Scrape,
{
    fn stability(&self) -> &'static [(Signal, Stability)] {
        self.stability
    }

    fn create(
        &self,
        set: Settings,
        cfg: C,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        let scraper = Arc::new((self.build)(&set.id, &cfg)?);
        Ok((self.receiver)(set, (self.schedule)(&cfg), next, scraper))
    }
}

#[cfg(test)]
mod tls_tests {
    use super::*;

    struct Plain;
    impl TlsDefaults for Plain {
        fn insecure() -> bool {
            false
        }
        fn insecure_skip_verify() -> bool {
            false
        }
    }

    /// `server_name_override: ""` is configtls's unset, so the postgresql receiver (which refuses
    /// the key when set) and redis (which dials by it) both see no override.
    #[test]
    fn empty_tls_strings_are_unset() {
        let t: ScraperTls<Plain> = serde_json::from_value(serde_json::json!({
            "server_name_override": "", "ca_file": "", "min_version": "",
        }))
        .unwrap();
        assert_eq!(t.server_name_override, None);
        assert_eq!((t.ca_file, t.min_version), (None, None));
    }
}
