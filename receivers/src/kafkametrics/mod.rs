//! `kafkametrics` (also `kafka_metrics`): a Kafka cluster's layout, offsets and consumer-group lag,
//! scraped as otelcol-contrib's receiver scrapes them. Every `collection_interval` the `brokers`
//! scraper counts the cluster's brokers, `topics` reports each matching topic's partitions, their
//! oldest and newest offsets and replicas, and `consumers` each matching group's members and its
//! committed offset and lag per partition of the matching topics it consumes.
//!
//! The Kafka client is librdkafka (rdkafka), as in the `kafka` receiver and exporter, with the same
//! `configkafka` keys (`vigil_core::kafka::Client`). librdkafka's admin calls block, so a scrape
//! runs on tokio's blocking pool. A group's committed offsets are read (OffsetFetch) by a client
//! that names the group without joining it, made for that scrape and dropped after it.

use crate::hostmetrics::config::{MetricToggle, Toggles};
use crate::scrape::{self, Builder, Kind, MetricDef, Schedule, Scrape, Scraped};
use async_trait::async_trait;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use vigil_core::attrs::{kv_i64, kv_str};
use vigil_core::config::{duration, TlsClientConfig};
use vigil_core::kafka::{
    default_brokers, default_protocol_version, default_use_leader_epoch, Auth, Client, Metadata,
};
use vigil_core::{ComponentId, ComponentKind, ConfigError};

#[cfg(test)]
mod tests;

/// The instrumentation scope otelcol's receiver reports under.
pub const SCOPE: &str =
    "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/kafkametricsreceiver";

/// Bound on each request to the cluster within a scrape (metadata, one partition's offsets, the
/// group list, one group's offsets), unless `timeout` is shorter.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The most consumer groups one scrape reads offsets for (each needs a client of its own for the
/// scrape); groups beyond it are left out of that scrape, logged and counted.
pub const MAX_GROUPS: usize = 1000;

const fn sum(name: &'static str, desc: &'static str, unit: &'static str) -> MetricDef {
    MetricDef {
        name,
        desc,
        unit,
        kind: Kind::Sum { monotonic: false },
        enabled: true,
    }
}

const fn gauge(name: &'static str, desc: &'static str) -> MetricDef {
    MetricDef {
        name,
        desc,
        unit: "1",
        kind: Kind::Gauge,
        enabled: true,
    }
}

/// otelcol's metadata (types, units and default toggles).
pub const METRICS: &[MetricDef] = &[
    sum(
        "kafka.brokers",
        "Number of brokers in the cluster.",
        "{brokers}",
    ),
    sum(
        "kafka.topic.partitions",
        "Number of partitions in topic.",
        "{partitions}",
    ),
    gauge(
        "kafka.partition.current_offset",
        "Current offset of partition of topic.",
    ),
    gauge(
        "kafka.partition.oldest_offset",
        "Oldest offset of partition of topic",
    ),
    sum(
        "kafka.partition.replicas",
        "Number of replicas for partition of topic",
        "{replicas}",
    ),
    sum(
        "kafka.partition.replicas_in_sync",
        "Number of synchronized replicas of partition",
        "{replicas}",
    ),
    sum(
        "kafka.consumer_group.members",
        "Count of members in the consumer group",
        "{members}",
    ),
    gauge(
        "kafka.consumer_group.offset",
        "Current offset of the consumer group at partition of topic",
    ),
    gauge(
        "kafka.consumer_group.offset_sum",
        "Sum of consumer group offset across partitions of topic",
    ),
    gauge(
        "kafka.consumer_group.lag",
        "Current approximate lag of consumer group at partition of topic",
    ),
    gauge(
        "kafka.consumer_group.lag_sum",
        "Current approximate sum of consumer group lag across all partitions of topic",
    ),
];

/// otelcol's resource attributes and their defaults.
const RESOURCE_ATTRIBUTES: &[(&str, bool)] = &[("kafka.cluster.alias", false)];

/// The scrapers otelcol's receiver has.
const SCRAPERS: &[&str] = &["brokers", "topics", "consumers"];

/// `receivers::kafkametrics` as written: scraperhelper's keys, configkafka's client keys, and the
/// receiver's own.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaMetricsConfig {
    /// Time between two scrapes (scraperhelper: 1m).
    #[serde(default = "default_interval", with = "duration")]
    pub collection_interval: Duration,
    /// Wait before the first scrape (scraperhelper: 1s).
    #[serde(default = "default_initial_delay", with = "duration")]
    pub initial_delay: Duration,
    /// Bound on one scrape (scraperhelper: 0, none).
    #[serde(default, with = "duration")]
    pub timeout: Duration,
    #[serde(default = "default_cluster_alias")]
    pub cluster_alias: String,
    #[serde(default = "default_brokers")]
    pub brokers: Vec<String>,
    #[serde(default)]
    pub resolve_canonical_bootstrap_servers_only: bool,
    #[serde(default = "default_protocol_version")]
    pub protocol_version: Option<String>,
    /// Topics to report (Go RE2, unanchored as Go's `MatchString`).
    #[serde(default = "default_topic_match")]
    pub topic_match: String,
    /// Consumer groups to report.
    #[serde(default = "default_group_match")]
    pub group_match: String,
    #[serde(default)]
    pub auth: Option<Auth>,
    #[serde(default)]
    pub tls: Option<TlsClientConfig>,
    #[serde(default)]
    pub metadata: Metadata,
    /// otelcol's older key for `metadata::refresh_interval`.
    #[serde(
        default,
        with = "vigil_core::config::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub refresh_frequency: Option<Duration>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rack_id: String,
    #[serde(default = "default_use_leader_epoch")]
    pub use_leader_epoch: bool,
    /// `brokers`, `topics` and/or `consumers`.
    #[serde(default)]
    pub scrapers: Vec<String>,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricToggle>,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, MetricToggle>,
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_initial_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_cluster_alias() -> String {
    "kafka-cluster".into()
}
fn default_topic_match() -> String {
    "^[^_].*$".into()
}
fn default_group_match() -> String {
    ".*".into()
}
fn default_client_id() -> String {
    "otel-metrics-receiver".into()
}

fn err(id: &ComponentId, path: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Receiver, id, path.into(), msg)
}

/// What a valid config yields.
struct Checked {
    properties: Vec<(&'static str, String)>,
    topic_match: regex::Regex,
    group_match: regex::Regex,
    brokers: bool,
    topics: bool,
    consumers: bool,
    metrics: Toggles,
    resource_attrs: Toggles,
}

fn check(id: &ComponentId, c: &KafkaMetricsConfig) -> Result<Checked, ConfigError> {
    vigil_core::config::check_interval(c.collection_interval)
        .map_err(|m| err(id, "collection_interval", m))?;
    let mut metadata = c.metadata.clone();
    if let Some(r) = c.refresh_frequency.filter(|r| !r.is_zero()) {
        metadata.refresh_interval = r;
    }
    let properties = Client {
        brokers: &c.brokers,
        resolve_canonical_bootstrap_servers_only: c.resolve_canonical_bootstrap_servers_only,
        client_id: &c.client_id,
        protocol_version: c.protocol_version.as_deref(),
        auth: c.auth.as_ref(),
        tls: c.tls.as_ref(),
        metadata: &metadata,
        rack_id: &c.rack_id,
        use_leader_epoch: c.use_leader_epoch,
    }
    .properties()
    .map_err(|e| err(id, e.path, e.message))?;
    if c.scrapers.is_empty() {
        return Err(err(
            id,
            "scrapers",
            "no scrapers defined: list one or more of brokers, topics, consumers",
        ));
    }
    for s in &c.scrapers {
        if !SCRAPERS.contains(&s.as_str()) {
            return Err(err(
                id,
                "scrapers",
                format!("unknown scraper {s:?}: expected brokers, topics or consumers"),
            ));
        }
    }
    let re = |key: &str, p: &str| {
        vigil_core::config::re2_regex(p)
            .map_err(|e| err(id, key, format!("invalid regular expression {p:?}: {e}")))
    };
    let metrics = Toggles::build(&scrape::known(METRICS), &c.metrics, |p, m| err(id, p, m))?;
    let resource_attrs = scrape::toggles_under(
        "resource_attributes",
        "resource attribute",
        RESOURCE_ATTRIBUTES,
        &c.resource_attributes,
        |p, m| err(id, p, m),
    )?;
    let has = |s: &str| c.scrapers.iter().any(|x| x == s);
    Ok(Checked {
        properties,
        topic_match: re("topic_match", &c.topic_match)?,
        group_match: re("group_match", &c.group_match)?,
        brokers: has("brokers"),
        topics: has("topics"),
        consumers: has("consumers"),
        metrics,
        resource_attrs,
    })
}

/// The `kafkametrics` receiver factory.
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    scrape::factory(scrape::Spec::<KafkaMetricsConfig, KafkaMetricsScraper> {
        type_name: "kafkametrics",
        stability: scrape::BETA,
        check: |id, cfg| check(id, cfg).map(|_| ()),
        build,
        schedule: |cfg| Schedule {
            collection_interval: cfg.collection_interval,
            initial_delay: cfg.initial_delay,
            timeout: cfg.timeout,
        },
        receiver: scrape::run,
    })
}

fn build(id: &ComponentId, cfg: &KafkaMetricsConfig) -> Result<KafkaMetricsScraper, ConfigError> {
    let c = check(id, cfg)?;
    let mut cc = ClientConfig::new();
    for (k, v) in &c.properties {
        cc.set(*k, v);
    }
    // librdkafka connects lazily: a cluster that cannot be reached fails each scrape (logged),
    // not the start, as otelcol's receiver since it creates its clients on the first scrape.
    let admin: BaseConsumer<Context> = cc
        .create_with_context(Context { id: id.to_string() })
        .map_err(|e| {
            err(
                id,
                "brokers",
                format!("cannot create the kafka client: {e}"),
            )
        })?;
    Ok(KafkaMetricsScraper {
        id: id.to_string(),
        inner: Arc::new(Inner {
            id: id.to_string(),
            properties: c.properties,
            admin,
            topic_match: c.topic_match,
            group_match: c.group_match,
            brokers: c.brokers,
            topics: c.topics,
            consumers: c.consumers,
            metrics: c.metrics,
            resource_attrs: c.resource_attrs,
            cluster_alias: cfg.cluster_alias.clone(),
            // A little under the scrape's own bound, so that the request that failed is named
            // rather than only the cut.
            request_timeout: if cfg.timeout.is_zero() {
                REQUEST_TIMEOUT
            } else {
                (cfg.timeout * 9 / 10).min(REQUEST_TIMEOUT)
            },
            running: std::sync::atomic::AtomicBool::new(false),
            start: scrape::unix_nanos(SystemTime::now()),
            groups_skipped: metrics::counter!("vigil_kafkametrics_groups_skipped", "receiver" => id.to_string()),
        }),
    })
}

/// librdkafka's log lines under the component's name.
struct Context {
    id: String,
}

impl rdkafka::ClientContext for Context {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error | L::Warning => {
                tracing::warn!(receiver = %self.id, facility = fac, "librdkafka: {log_message}")
            }
            _ => tracing::debug!(receiver = %self.id, facility = fac, "librdkafka: {log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // A broker that cannot be reached is reported by the scrape that needed it.
        tracing::debug!(receiver = %self.id, %error, "kafka client: {reason}");
    }
}

impl rdkafka::consumer::ConsumerContext for Context {}

struct KafkaMetricsScraper {
    id: String,
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    properties: Vec<(&'static str, String)>,
    /// Reads metadata, offsets and the group list; never joins a group.
    admin: BaseConsumer<Context>,
    topic_match: regex::Regex,
    group_match: regex::Regex,
    brokers: bool,
    topics: bool,
    consumers: bool,
    metrics: Toggles,
    resource_attrs: Toggles,
    cluster_alias: String,
    request_timeout: Duration,
    /// A scrape is on the blocking pool. A scrape the loop cut short (`timeout`) runs on until its
    /// requests time out; the next one is skipped meanwhile rather than piled on it.
    running: std::sync::atomic::AtomicBool,
    start: u64,
    groups_skipped: metrics::Counter,
}

/// One matching topic's partitions: id, replicas, in-sync replicas.
struct Topic {
    name: String,
    partitions: Vec<(i32, usize, usize)>,
}

/// Every partition of `topics`, the request of a group's offsets.
fn partitions(topics: &[Topic]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for &(p, _, _) in &t.partitions {
            tpl.add_partition(&t.name, p);
        }
    }
    tpl
}

#[async_trait]
impl Scrape for KafkaMetricsScraper {
    async fn scrape(&self) -> Scraped {
        use std::sync::atomic::Ordering;
        if self.inner.running.swap(true, Ordering::AcqRel) {
            return Scraped {
                metrics: Vec::new(),
                errors: vec!["the previous scrape is still waiting for the cluster".into()],
            };
        }
        let inner = Arc::clone(&self.inner);
        let work = tokio::task::spawn_blocking(move || {
            // Cleared however the scrape ends.
            struct Done<'a>(&'a std::sync::atomic::AtomicBool);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.store(false, Ordering::Release);
                }
            }
            let _done = Done(&inner.running);
            inner.scrape()
        });
        match work.await {
            Ok(s) => s,
            Err(e) => Scraped {
                metrics: Vec::new(),
                errors: vec![format!("receivers::{}: the scrape failed: {e}", self.id)],
            },
        }
    }
}

impl Inner {
    fn scrape(&self) -> Scraped {
        let mut errors = Vec::new();
        let md = match self.admin.fetch_metadata(None, self.request_timeout) {
            Ok(md) => md,
            Err(e) => {
                return Scraped {
                    metrics: Vec::new(),
                    errors: vec![format!("cannot read the cluster's metadata: {e}")],
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
        if self.brokers {
            b.int("kafka.brokers", md.brokers().len() as i64, vec![]);
        }
        let topics: Vec<Topic> = md
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && self.topic_match.is_match(t.name()))
            .map(|t| Topic {
                name: t.name().to_string(),
                partitions: t
                    .partitions()
                    .iter()
                    .map(|p| (p.id(), p.replicas().len(), p.isr().len()))
                    .collect(),
            })
            .collect();
        // The newest offset of each partition, which both the topics and the consumers scrapers need.
        let mut newest: BTreeMap<(String, i32), i64> = BTreeMap::new();
        if self.topics || self.consumers {
            for t in &topics {
                if self.topics {
                    b.int(
                        "kafka.topic.partitions",
                        t.partitions.len() as i64,
                        vec![kv_str("topic", &t.name)],
                    );
                }
                for &(p, replicas, isr) in &t.partitions {
                    let attrs = || vec![kv_str("topic", &t.name), kv_i64("partition", p as i64)];
                    match self
                        .admin
                        .fetch_watermarks(&t.name, p, self.request_timeout)
                    {
                        Ok((low, high)) => {
                            newest.insert((t.name.clone(), p), high);
                            if self.topics {
                                b.int("kafka.partition.current_offset", high, attrs());
                                b.int("kafka.partition.oldest_offset", low, attrs());
                            }
                        }
                        Err(e) => errors.push(format!(
                            "cannot read the offsets of topic {} partition {p}: {e}",
                            t.name
                        )),
                    }
                    if self.topics {
                        b.int("kafka.partition.replicas", replicas as i64, attrs());
                        b.int("kafka.partition.replicas_in_sync", isr as i64, attrs());
                    }
                }
            }
        }
        if self.consumers {
            self.scrape_groups(&mut b, &topics, &newest, &mut errors);
        }
        let resource = vec![kv_str("kafka.cluster.alias", &self.cluster_alias)];
        Scraped {
            metrics: b.finish(resource),
            errors,
        }
    }

    fn scrape_groups(
        &self,
        b: &mut Builder<'_>,
        topics: &[Topic],
        newest: &BTreeMap<(String, i32), i64>,
        errors: &mut Vec<String>,
    ) {
        let groups = match self.admin.fetch_group_list(None, self.request_timeout) {
            Ok(g) => g,
            Err(e) => {
                errors.push(format!("cannot list the consumer groups: {e}"));
                return;
            }
        };
        let mut matched: Vec<(&str, usize)> = groups
            .groups()
            .iter()
            .filter(|g| self.group_match.is_match(g.name()))
            .map(|g| (g.name(), g.members().len()))
            .collect();
        matched.sort_unstable();
        if matched.len() > MAX_GROUPS {
            let skipped = matched.len() - MAX_GROUPS;
            self.groups_skipped.increment(skipped as u64);
            errors.push(format!(
                "{skipped} consumer groups beyond the first {MAX_GROUPS} (by name) were left out"
            ));
            matched.truncate(MAX_GROUPS);
        }
        let tpl = partitions(topics);
        for (group, members) in matched {
            self.scrape_group(b, group, members, topics, &tpl, newest, errors);
        }
    }

    /// One group: its members, and its committed offset and lag on each partition of the matching
    /// topics it consumes.
    #[allow(clippy::too_many_arguments)]
    fn scrape_group(
        &self,
        b: &mut Builder<'_>,
        group: &str,
        members: usize,
        topics: &[Topic],
        tpl: &TopicPartitionList,
        newest: &BTreeMap<(String, i32), i64>,
        errors: &mut Vec<String>,
    ) {
        b.int(
            "kafka.consumer_group.members",
            members as i64,
            vec![kv_str("group", group)],
        );
        if tpl.count() == 0 {
            return;
        }
        let committed = match self.group_offsets(group, tpl) {
            Ok(c) => c,
            Err(e) => {
                errors.push(format!(
                    "cannot read the offsets of consumer group {group:?}: {e}"
                ));
                return;
            }
        };
        for t in topics {
            let offsets: Vec<(i32, i64)> = t
                .partitions
                .iter()
                .map(|&(p, _, _)| {
                    let o = committed
                        .find_partition(&t.name, p)
                        .map(|e| match e.offset() {
                            Offset::Offset(o) => o,
                            _ => -1,
                        })
                        .unwrap_or(-1);
                    (p, o)
                })
                .collect();
            // A topic the group has no offset for is one it does not consume: left out, as
            // otelcol does.
            if offsets.iter().all(|&(_, o)| o == -1) {
                continue;
            }
            let (mut offset_sum, mut lag_sum) = (0i64, 0i64);
            for (p, o) in offsets {
                let attrs = || {
                    vec![
                        kv_str("group", group),
                        kv_str("topic", &t.name),
                        kv_i64("partition", p as i64),
                    ]
                };
                // As otelcol: a partition without a committed offset adds its -1.
                offset_sum += o;
                b.int("kafka.consumer_group.offset", o, attrs());
                // -1: not computed (no committed offset, or the partition's newest unknown).
                let lag = match newest.get(&(t.name.clone(), p)) {
                    Some(&high) if o != -1 => {
                        lag_sum += high - o;
                        high - o
                    }
                    _ => -1,
                };
                b.int("kafka.consumer_group.lag", lag, attrs());
            }
            let attrs = || vec![kv_str("group", group), kv_str("topic", &t.name)];
            b.int("kafka.consumer_group.offset_sum", offset_sum, attrs());
            b.int("kafka.consumer_group.lag_sum", lag_sum, attrs());
        }
    }

    /// The group's committed offsets (OffsetFetch), by a client that names the group and does not
    /// join it.
    fn group_offsets(
        &self,
        group: &str,
        tpl: &TopicPartitionList,
    ) -> Result<TopicPartitionList, KafkaError> {
        let mut cc = ClientConfig::new();
        for (k, v) in &self.properties {
            cc.set(*k, v);
        }
        cc.set("group.id", group);
        cc.set("enable.auto.commit", "false");
        let c: BaseConsumer<Context> = cc.create_with_context(Context {
            id: self.id.clone(),
        })?;
        c.committed_offsets(tpl.clone(), self.request_timeout)
    }
}
