//! `kafka`: consumes a topic per signal in a consumer group and hands each message to the pipeline,
//! with otelcol's keys. An offset is stored for commit only after the pipeline accepted the message
//! (and every message received before it), so a crash or a kill re-reads what was not accepted:
//! delivery is at least once. A refusal the pipeline may lift (backpressure) is retried with
//! backoff, holding the partition; at most `MAX_IN_FLIGHT` messages per signal are in the pipeline.

use async_trait::async_trait;
use futures::stream::{FuturesOrdered, StreamExt};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message as _, OwnedMessage};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use vigil_core::attrs::kv_str;
use vigil_core::codec::decode::{decode_body, Encoding as WireEncoding, ExportRequest};
use vigil_core::codec::Compression;
use vigil_core::config::{duration, TlsClientConfig};
use vigil_core::factory::{FactoryBase, ReceiverFactory};
use vigil_core::kafka::{
    default_brokers, default_client_id, default_protocol_version, default_use_leader_epoch, Auth,
    Client, Metadata,
};
use vigil_core::otlp::collector::logs::v1::ExportLogsServiceRequest;
use vigil_core::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use vigil_core::otlp::collector::trace::v1::ExportTraceServiceRequest;
use vigil_core::otlp::common::v1::{any_value, AnyValue, KeyValue};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Host,
    NextConsumers, Receiver, ReceiverObs, Settings, Signal, Stability, Telemetry,
};

/// Messages of one signal in the pipeline at once. Their offsets are stored in the order they
/// were received, so one message held by retries holds the commits behind it, never skips them.
pub const MAX_IN_FLIGHT: usize = 64;

/// The most memory one message may take once decoded; a message beyond it is refused unread.
pub const MAX_DECODED_BYTES: usize = 256 << 20;

/// Waits between retries of a message the pipeline refused as retryable: from 100ms doubling to 5s.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// How a message value becomes telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    OtlpProto,
    OtlpJson,
    /// Logs only: the value is the body, as bytes.
    Raw,
    /// Logs only: the value is the body, as UTF-8 text (invalid sequences replaced).
    Text,
}

/// `traces`, `metrics` or `logs`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignalConfig {
    /// otelcol's older spelling of a one-topic `topics`.
    #[serde(default)]
    pub topic: Option<String>,
    /// The topics to consume; a name starting with `^` is a regular expression matched against
    /// every topic of the cluster (librdkafka's pattern subscription, rechecked at each metadata
    /// refresh).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// Accepted so that the error can say it is not supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_topic: Option<String>,
    /// Accepted so that the error can say it is not supported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_topics: Vec<String>,
    #[serde(default)]
    pub encoding: Option<Encoding>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialOffset {
    #[default]
    Latest,
    Earliest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RebalanceStrategy {
    #[default]
    Range,
    Roundrobin,
    /// librdkafka's cooperative-sticky (Sarama's sticky is eager; librdkafka has no eager sticky).
    Sticky,
}

/// `autocommit`: whether stored offsets are committed on a timer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Autocommit {
    #[serde(default = "yes")]
    pub enable: bool,
    #[serde(default = "one_second", with = "duration")]
    pub interval: Duration,
}

impl Default for Autocommit {
    fn default() -> Self {
        Autocommit {
            enable: true,
            interval: one_second(),
        }
    }
}

/// `message_marking`: when a message counts as consumed.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MessageMarking {
    /// After the pipeline accepted it (vigil's default: at least once), or as soon as it is read
    /// (`false`, otelcol's default: a crash loses what was in the pipeline).
    #[serde(default = "yes")]
    pub after: bool,
    /// Mark (and skip) a message the pipeline refused with a retryable error once
    /// `error_backoff` gave up on it (at once when `error_backoff` is off). With `false` (the
    /// default) it is retried and holds its partition.
    #[serde(default)]
    pub on_error: bool,
    /// The same for a permanent refusal; absent: `on_error`'s value, as in otelcol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_permanent_error: Option<bool>,
}

impl Default for MessageMarking {
    fn default() -> Self {
        MessageMarking {
            after: true,
            on_error: false,
            on_permanent_error: None,
        }
    }
}

/// `error_backoff`: how a message the pipeline refused as retryable is retried, with otelcol's
/// `configretry` keys. Off (otelcol's default): vigil retries it every 100 ms doubling to 5 s
/// until it is accepted, or marks it at once with `message_marking::on_error`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorBackoff {
    pub enabled: bool,
    #[serde(with = "duration")]
    pub initial_interval: Duration,
    pub randomization_factor: f64,
    pub multiplier: f64,
    #[serde(with = "duration")]
    pub max_interval: Duration,
    /// Give up on the message after this long (0: never); then `message_marking::on_error`
    /// decides whether it is skipped or held.
    #[serde(with = "duration")]
    pub max_elapsed_time: Duration,
}

impl Default for ErrorBackoff {
    fn default() -> Self {
        ErrorBackoff {
            enabled: false,
            initial_interval: Duration::from_secs(5),
            randomization_factor: 0.5,
            multiplier: 1.5,
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
        }
    }
}

/// `telemetry::metrics::kafka_receiver_records_delay`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricToggle {
    #[serde(default)]
    pub enabled: bool,
}

/// `telemetry::metrics`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverMetrics {
    /// The time from a record's timestamp to its reading, in seconds, as the histogram
    /// `otelcol_kafka_receiver_records_delay` (off by default, as in otelcol).
    #[serde(default)]
    pub kafka_receiver_records_delay: MetricToggle,
}

/// `telemetry`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverTelemetry {
    #[serde(default)]
    pub metrics: ReceiverMetrics,
}

/// `header_extraction`: Kafka headers copied to resource attributes `kafka.header.<name>`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderExtraction {
    #[serde(default)]
    pub extract_headers: bool,
    #[serde(default)]
    pub headers: Vec<String>,
}

fn yes() -> bool {
    true
}

fn one_second() -> Duration {
    Duration::from_secs(1)
}

fn default_session_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_heartbeat() -> Duration {
    Duration::from_secs(3)
}

fn default_max_fetch_wait() -> Duration {
    Duration::from_millis(250)
}

fn default_fetch_size() -> usize {
    1 << 20
}

fn one() -> usize {
    1
}

/// The `kafka` receiver's config, with otelcol's keys.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaReceiverConfig {
    #[serde(default = "default_brokers")]
    pub brokers: Vec<String>,
    #[serde(default)]
    pub resolve_canonical_bootstrap_servers_only: bool,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    #[serde(default = "default_protocol_version")]
    pub protocol_version: Option<String>,
    #[serde(default)]
    pub auth: Option<Auth>,
    #[serde(default)]
    pub tls: Option<TlsClientConfig>,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rack_id: String,
    #[serde(default = "default_use_leader_epoch")]
    pub use_leader_epoch: bool,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub encoding: Option<Encoding>,
    #[serde(default)]
    pub traces: SignalConfig,
    #[serde(default)]
    pub metrics: SignalConfig,
    #[serde(default)]
    pub logs: SignalConfig,
    #[serde(default = "default_client_id")]
    pub group_id: String,
    #[serde(default)]
    pub group_instance_id: Option<String>,
    #[serde(default)]
    pub initial_offset: InitialOffset,
    #[serde(default = "default_session_timeout", with = "duration")]
    pub session_timeout: Duration,
    #[serde(default = "default_heartbeat", with = "duration")]
    pub heartbeat_interval: Duration,
    #[serde(default)]
    pub group_rebalance_strategy: RebalanceStrategy,
    #[serde(default)]
    pub autocommit: Autocommit,
    #[serde(default)]
    pub message_marking: MessageMarking,
    #[serde(default)]
    pub header_extraction: HeaderExtraction,
    #[serde(default = "one")]
    pub min_fetch_size: usize,
    #[serde(default = "default_fetch_size")]
    pub default_fetch_size: usize,
    /// 0: librdkafka's default (50 MiB per fetch).
    #[serde(default)]
    pub max_fetch_size: usize,
    #[serde(default = "default_max_fetch_wait", with = "duration")]
    pub max_fetch_wait: Duration,
    /// The most bytes fetched per partition at a time (librdkafka grows it for a larger
    /// message); absent: `default_fetch_size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_partition_fetch_size: Option<usize>,
    #[serde(default)]
    pub error_backoff: ErrorBackoff,
    #[serde(default)]
    pub telemetry: ReceiverTelemetry,
}

impl KafkaReceiverConfig {
    fn signal(&self, signal: Signal) -> &SignalConfig {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
            // Not a signal this receiver carries (see `stability`): its block is always empty.
            Signal::Profiles => {
                static NONE: std::sync::LazyLock<SignalConfig> =
                    std::sync::LazyLock::new(SignalConfig::default);
                &NONE
            }
        }
    }

    /// The topics (or `^` patterns) of a signal: its block's `topics`, else its `topic`, else
    /// the top-level `topic`, else otelcol's default.
    pub fn topics(&self, signal: Signal) -> Vec<String> {
        let default = match signal {
            Signal::Traces => "otlp_spans",
            Signal::Metrics => "otlp_metrics",
            Signal::Logs => "otlp_logs",
            Signal::Profiles => "otlp_profiles",
        };
        let sc = self.signal(signal);
        if !sc.topics.is_empty() {
            return sc.topics.clone();
        }
        vec![sc
            .topic
            .clone()
            .or_else(|| self.topic.clone())
            .unwrap_or_else(|| default.to_string())]
    }

    pub fn encoding(&self, signal: Signal) -> Encoding {
        self.signal(signal)
            .encoding
            .or(self.encoding)
            .unwrap_or(Encoding::OtlpProto)
    }

    /// librdkafka's consumer properties; errors carry the key path.
    pub fn properties(&self) -> Result<Vec<(&'static str, String)>, ConfigError> {
        let mut p = Client {
            brokers: &self.brokers,
            resolve_canonical_bootstrap_servers_only: self.resolve_canonical_bootstrap_servers_only,
            client_id: &self.client_id,
            protocol_version: self.protocol_version.as_deref(),
            auth: self.auth.as_ref(),
            tls: self.tls.as_ref(),
            metadata: &self.metadata,
            rack_id: &self.rack_id,
            use_leader_epoch: self.use_leader_epoch,
        }
        .properties()?;
        if self.group_id.is_empty() {
            return Err(ConfigError::at("group_id", "must not be empty"));
        }
        p.push(("group.id", self.group_id.clone()));
        if let Some(g) = self.group_instance_id.as_ref().filter(|g| !g.is_empty()) {
            p.push(("group.instance.id", g.clone()));
        }
        let ms = |d: Duration| d.as_millis().clamp(1, i32::MAX as u128).to_string();
        if self.heartbeat_interval >= self.session_timeout {
            return Err(ConfigError::at(
                "heartbeat_interval",
                "must be shorter than session_timeout",
            ));
        }
        p.push(("session.timeout.ms", ms(self.session_timeout)));
        p.push(("heartbeat.interval.ms", ms(self.heartbeat_interval)));
        p.push((
            "auto.offset.reset",
            match self.initial_offset {
                InitialOffset::Latest => "latest",
                InitialOffset::Earliest => "earliest",
            }
            .into(),
        ));
        p.push((
            "partition.assignment.strategy",
            match self.group_rebalance_strategy {
                RebalanceStrategy::Range => "range",
                RebalanceStrategy::Roundrobin => "roundrobin",
                RebalanceStrategy::Sticky => "cooperative-sticky",
            }
            .into(),
        ));
        // Offsets are stored by the receiver once the pipeline accepted a message, never by
        // librdkafka when it hands one out.
        p.push(("enable.auto.offset.store", "false".into()));
        p.push(("enable.auto.commit", self.autocommit.enable.to_string()));
        if self.autocommit.enable {
            p.push(("auto.commit.interval.ms", ms(self.autocommit.interval)));
        }
        p.push(("fetch.min.bytes", self.min_fetch_size.max(1).to_string()));
        if self.default_fetch_size == 0 {
            return Err(ConfigError::at("default_fetch_size", "must be more than 0"));
        }
        let per_partition = self
            .max_partition_fetch_size
            .unwrap_or(self.default_fetch_size);
        if per_partition == 0 {
            return Err(ConfigError::at(
                "max_partition_fetch_size",
                "must be more than 0",
            ));
        }
        p.push(("fetch.message.max.bytes", per_partition.to_string()));
        if self.max_fetch_size > 0 {
            if self.max_fetch_size < self.default_fetch_size {
                return Err(ConfigError::at(
                    "max_fetch_size",
                    "must be at least default_fetch_size (or 0: no limit beyond librdkafka's)",
                ));
            }
            p.push(("fetch.max.bytes", self.max_fetch_size.to_string()));
        }
        p.push(("fetch.wait.max.ms", ms(self.max_fetch_wait)));
        // librdkafka prefetches up to this much per consumer; with MAX_IN_FLIGHT it bounds the
        // receiver's memory.
        p.push(("queued.max.messages.kbytes", "65536".into()));
        Ok(p)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.properties()?;
        for s in [Signal::Traces, Signal::Metrics] {
            if matches!(self.encoding(s), Encoding::Raw | Encoding::Text) {
                let key = if self.signal(s).encoding.is_some() {
                    format!("{s}::encoding")
                } else {
                    "encoding".to_string()
                };
                return Err(ConfigError::at(
                    key,
                    format!("raw and text are for logs only; {s} can be otlp_proto or otlp_json"),
                ));
            }
        }
        for s in Signal::ALL {
            let sc = self.signal(s);
            if sc.topic.is_some() && !sc.topics.is_empty() {
                return Err(ConfigError::at(
                    format!("{s}::topics"),
                    format!("set {s}::topic or {s}::topics, not both"),
                ));
            }
            if sc.exclude_topic.is_some() || !sc.exclude_topics.is_empty() {
                let key = if sc.exclude_topic.is_some() {
                    "exclude_topic"
                } else {
                    "exclude_topics"
                };
                return Err(ConfigError::at(
                    format!("{s}::{key}"),
                    "is not supported by vigil's kafka client (librdkafka's topic patterns have \
                     no exclusion); write the exclusion into the ^ pattern of topics instead",
                ));
            }
            for t in self.topics(s) {
                if t.is_empty() {
                    return Err(ConfigError::at(format!("{s}::topics"), "must not be empty"));
                }
                if let Some(pattern) = t.strip_prefix('^') {
                    if let Err(e) = regex::Regex::new(&format!("^{pattern}")) {
                        return Err(ConfigError::at(
                            format!("{s}::topics"),
                            format!("invalid topic pattern {t:?}: {e}"),
                        ));
                    }
                }
            }
        }
        let b = &self.error_backoff;
        if b.enabled {
            if b.multiplier < 1.0 || !(0.0..=1.0).contains(&b.randomization_factor) {
                return Err(ConfigError::at(
                    "error_backoff",
                    "multiplier must be at least 1 and randomization_factor within [0, 1]",
                ));
            }
            if b.initial_interval.is_zero() || b.max_interval < b.initial_interval {
                return Err(ConfigError::at(
                    "error_backoff::max_interval",
                    "initial_interval must be more than 0 and max_interval at least initial_interval",
                ));
            }
        }
        if self.header_extraction.extract_headers && self.header_extraction.headers.is_empty() {
            return Err(ConfigError::at(
                "header_extraction::headers",
                "list the headers to extract when extract_headers is true",
            ));
        }
        Ok(())
    }
}

fn decode<R: ExportRequest>(value: &[u8], json: bool) -> Result<Telemetry, String> {
    let encoding = if json {
        WireEncoding::Json
    } else {
        WireEncoding::Protobuf
    };
    decode_body::<R>(
        bytes::Bytes::copy_from_slice(value),
        encoding,
        Compression::None,
        usize::MAX,
        MAX_DECODED_BYTES,
    )
    .map(R::into_telemetry)
    .map_err(|e| e.to_string())
}

/// Turns one message into telemetry of `signal`.
fn to_telemetry(signal: Signal, encoding: Encoding, value: &[u8]) -> Result<Telemetry, String> {
    let json = encoding == Encoding::OtlpJson;
    match (signal, encoding) {
        (Signal::Logs, Encoding::Raw | Encoding::Text) => {
            let body = if encoding == Encoding::Raw {
                any_value::Value::BytesValue(value.to_vec())
            } else {
                any_value::Value::StringValue(String::from_utf8_lossy(value).into_owned())
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            Ok(Telemetry::Logs(vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        observed_time_unix_nano: now,
                        body: Some(AnyValue { value: Some(body) }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }]))
        }
        (Signal::Traces, _) => decode::<ExportTraceServiceRequest>(value, json),
        (Signal::Metrics, _) => decode::<ExportMetricsServiceRequest>(value, json),
        (Signal::Logs, _) => decode::<ExportLogsServiceRequest>(value, json),
        (Signal::Profiles, _) => Err("the kafka receiver does not carry profiles".to_string()),
    }
}

/// Adds `kafka.header.<name>` to every resource, for each configured header the message has.
fn add_headers(data: &mut Telemetry, attrs: &[KeyValue]) {
    if attrs.is_empty() {
        return;
    }
    let add = |r: &mut Option<vigil_core::otlp::resource::v1::Resource>| {
        let r = r.get_or_insert_with(Default::default);
        for kv in attrs {
            if let Some(v) = &kv.value {
                vigil_core::attrs::upsert(
                    &mut r.attributes,
                    &kv.key,
                    v.value
                        .clone()
                        .unwrap_or(any_value::Value::StringValue(String::new())),
                );
            }
        }
    };
    match data {
        Telemetry::Traces(v) => v.iter_mut().for_each(|x| add(&mut x.resource)),
        Telemetry::Metrics(v) => v.iter_mut().for_each(|x| add(&mut x.resource)),
        Telemetry::Logs(v) => v.iter_mut().for_each(|x| add(&mut x.resource)),
        Telemetry::Profiles(p) => p
            .resource_profiles
            .iter_mut()
            .for_each(|x| add(&mut x.resource)),
    }
}

/// What happened to one message.
enum Outcome {
    /// Store its offset: accepted, undecodable, or refused with `on_error`.
    Mark,
    /// Stopped before the pipeline accepted it: its offset is not stored, so it is read again.
    Leave,
}

/// What one consumer's messages go through.
struct Handler {
    id: String,
    signal: Signal,
    encoding: Encoding,
    headers: Vec<String>,
    on_error: bool,
    on_permanent_error: bool,
    backoff: ErrorBackoff,
    /// `otelcol_kafka_receiver_records_delay`, when enabled.
    delay: Option<metrics::Histogram>,
    next: Arc<dyn Consumer>,
    obs: ReceiverObs,
    undecodable: metrics::Counter,
    stop: tokio_util::sync::CancellationToken,
}

impl Handler {
    async fn handle(&self, msg: &OwnedMessage) -> Outcome {
        if let (Some(h), Some(ms)) = (&self.delay, msg.timestamp().to_millis()) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            h.record((now - ms).max(0) as f64 / 1000.0);
        }
        let value = msg.payload().unwrap_or_default();
        let mut data = match to_telemetry(self.signal, self.encoding, value) {
            Ok(d) => d,
            Err(reason) => {
                // No retry can make it decode; holding the partition for it would stop the topic.
                self.undecodable.increment(1);
                tracing::warn!(
                    receiver = %self.id, topic = msg.topic(), partition = msg.partition(),
                    offset = msg.offset(), %reason, "skipping a kafka message that does not decode"
                );
                return Outcome::Mark;
            }
        };
        if !self.headers.is_empty() {
            if let Some(h) = msg.headers() {
                let attrs: Vec<KeyValue> = h
                    .iter()
                    .filter(|h| self.headers.iter().any(|want| want == h.key))
                    .map(|h| {
                        kv_str(
                            &format!("kafka.header.{}", h.key),
                            String::from_utf8_lossy(h.value.unwrap_or_default()),
                        )
                    })
                    .collect();
                add_headers(&mut data, &attrs);
            }
        }
        let items = data.item_count();
        let b = &self.backoff;
        let (first, max) = if b.enabled {
            (b.initial_interval, b.max_interval)
        } else {
            (RETRY_FIRST, RETRY_MAX)
        };
        let multiplier = if b.enabled { b.multiplier } else { 2.0 };
        // tokio's clock: the same as std's at run time, and paused time in the unit tests.
        let started = tokio::time::Instant::now();
        let mut wait = first;
        loop {
            let r = self.next.consume(data.clone()).await;
            self.obs.end_op(self.signal, items, &r);
            match r {
                Ok(()) => return Outcome::Mark,
                Err(ConsumeError::Permanent { reason, .. }) if self.on_permanent_error => {
                    tracing::warn!(receiver = %self.id, %reason, "the pipeline refused a kafka message permanently; marked and skipped (message_marking::on_permanent_error)");
                    return Outcome::Mark;
                }
                Err(e) => {
                    // A retryable refusal with on_error: skipped at once when error_backoff is
                    // off, or once it has run out; without on_error it holds the partition.
                    let gave_up = !b.enabled
                        || (!b.max_elapsed_time.is_zero()
                            && started.elapsed() >= b.max_elapsed_time);
                    if e.is_retryable() && self.on_error && gave_up {
                        tracing::warn!(receiver = %self.id, error = %e, "the pipeline refused a kafka message; marked and skipped (message_marking::on_error)");
                        return Outcome::Mark;
                    }
                    let jittered = if b.enabled && b.randomization_factor > 0.0 {
                        // Jitter only needs to differ between receivers, not be unpredictable:
                        // the clock's nanoseconds do, without a random-number crate here.
                        let r = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.subsec_nanos() % 1000)
                            as f64
                            / 1000.0;
                        let f = b.randomization_factor * (2.0 * r - 1.0);
                        wait.mul_f64((1.0 + f).max(0.0))
                    } else {
                        wait
                    };
                    let delay = match &e {
                        ConsumeError::Retryable {
                            retry_after: Some(d),
                            ..
                        } => (*d).max(jittered),
                        _ => jittered,
                    };
                    tracing::debug!(receiver = %self.id, error = %e, ?delay, "the pipeline refused a kafka message; retrying");
                    tokio::select! {
                        _ = self.stop.cancelled() => return Outcome::Leave,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    wait = wait.mul_f64(multiplier).min(max);
                }
            }
        }
    }
}

/// librdkafka's log lines under the component's name.
pub struct Context {
    id: String,
}

impl rdkafka::ClientContext for Context {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(receiver = %self.id, facility = fac, "librdkafka: {log_message}")
            }
            L::Warning => {
                tracing::warn!(receiver = %self.id, facility = fac, "librdkafka: {log_message}")
            }
            _ => tracing::debug!(receiver = %self.id, facility = fac, "librdkafka: {log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(receiver = %self.id, %error, "kafka client: {reason}");
    }
}

impl rdkafka::consumer::ConsumerContext for Context {}

type KafkaConsumer = StreamConsumer<Context>;

/// Marks `msg` consumed (the group resumes after it), and commits at once when autocommit is off.
fn mark(consumer: &KafkaConsumer, msg: &OwnedMessage, commit_now: bool, id: &str) {
    // rd_kafka_offset_store (what rdkafka's store_offset calls) stores offset + 1 itself: the next
    // message to read. Passing offset + 1 here skipped one message after every restart, which
    // tests/tests/kafka.rs caught.
    if let Err(e) = consumer.store_offset(msg.topic(), msg.partition(), msg.offset()) {
        // The partition was revoked by a rebalance: its new owner reads the message again.
        tracing::debug!(receiver = %id, error = %e, "cannot store a kafka offset");
        return;
    }
    if commit_now {
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
            tracing::debug!(receiver = %id, error = %e, "cannot commit kafka offsets");
        }
    }
}

async fn run(consumer: KafkaConsumer, h: Arc<Handler>, mark_after: bool, commit_now: bool) {
    let id = h.id.clone();
    let mut inflight = FuturesOrdered::new();
    let mut errors = 0u32;
    loop {
        tokio::select! {
            biased;
            _ = h.stop.cancelled() => break,
            Some((msg, outcome)) = inflight.next(), if !inflight.is_empty() => {
                if mark_after && matches!(outcome, Outcome::Mark) {
                    mark(&consumer, &msg, commit_now, &id);
                }
            }
            r = consumer.recv(), if inflight.len() < MAX_IN_FLIGHT => match r {
                Ok(m) => {
                    errors = 0;
                    let msg = m.detach();
                    if !mark_after {
                        mark(&consumer, &msg, commit_now, &id);
                    }
                    let h = Arc::clone(&h);
                    inflight.push_back(async move {
                        let outcome = h.handle(&msg).await;
                        (msg, outcome)
                    });
                }
                Err(e) => {
                    // Broker down, partition EOF, a rebalance in progress: librdkafka recovers on
                    // its own; pause so that a persistent error does not spin.
                    errors = errors.saturating_add(1);
                    tracing::debug!(receiver = %id, error = %e, "kafka consumer error");
                    let pause = Duration::from_millis(100u64 << errors.min(5));
                    tokio::select! {
                        _ = h.stop.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }
    // Stopping: what is in the pipeline ends quickly (the retries see the stop); what it accepted
    // is marked, the rest is read again by the next consumer of the group.
    while let Some((msg, outcome)) = inflight.next().await {
        if mark_after && matches!(outcome, Outcome::Mark) {
            mark(&consumer, &msg, false, &id);
        }
    }
    // Commit what was stored, then leave the group; both block, so off the runtime's workers.
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(receiver = %id, error = %e, "no kafka offsets committed at stop");
        }
        drop(consumer);
    })
    .await;
}

/// The `kafka` receiver.
pub struct KafkaReceiver {
    set: Settings,
    cfg: KafkaReceiverConfig,
    properties: Vec<(&'static str, String)>,
    next: NextConsumers,
    undecodable: metrics::Counter,
}

#[async_trait]
impl Component for KafkaReceiver {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let id = self.set.id.to_string();
        for signal in self.next.signals().collect::<Vec<_>>() {
            let Some(next) = self.next.get(signal).cloned() else {
                continue;
            };
            let mut cc = ClientConfig::new();
            for (k, v) in &self.properties {
                cc.set(*k, v);
            }
            let consumer: KafkaConsumer = cc
                .create_with_context(Context { id: id.clone() })
                .map_err(|e| {
                    anyhow::anyhow!("receivers::{id}: cannot create the kafka consumer: {e}")
                })?;
            let topics = self.cfg.topics(signal);
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            consumer.subscribe(&names).map_err(|e| {
                anyhow::anyhow!(
                    "receivers::{id}::{signal}::topics: cannot subscribe to {topics:?}: {e}"
                )
            })?;
            let h = Arc::new(Handler {
                id: id.clone(),
                signal,
                encoding: self.cfg.encoding(signal),
                headers: if self.cfg.header_extraction.extract_headers {
                    self.cfg.header_extraction.headers.clone()
                } else {
                    Vec::new()
                },
                on_error: self.cfg.message_marking.on_error,
                on_permanent_error: self
                    .cfg
                    .message_marking
                    .on_permanent_error
                    .unwrap_or(self.cfg.message_marking.on_error),
                backoff: self.cfg.error_backoff.clone(),
                delay: self
                    .cfg
                    .telemetry
                    .metrics
                    .kafka_receiver_records_delay
                    .enabled
                    .then(|| {
                        metrics::histogram!("otelcol_kafka_receiver_records_delay", "receiver" => id.clone(), "signal" => signal.to_string())
                    }),
                next,
                obs: self.set.receiver_obs("kafka"),
                undecodable: self.undecodable.clone(),
                stop: self.set.tasks.stopping(),
            });
            self.set.tasks.spawn(run(
                consumer,
                h,
                self.cfg.message_marking.after,
                !self.cfg.autocommit.enable,
            ));
        }
        Ok(())
    }

    fn tasks(&self) -> Option<&vigil_core::Tasks> {
        Some(&self.set.tasks)
    }
}

struct Factory;

pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl FactoryBase for Factory {
    type Config = KafkaReceiverConfig;

    fn type_name(&self) -> &'static str {
        "kafka"
    }

    fn validate(&self, _id: &ComponentId, cfg: &KafkaReceiverConfig) -> Result<(), ConfigError> {
        cfg.validate()
    }
}

impl ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Beta),
            (Signal::Metrics, Stability::Beta),
            (Signal::Logs, Stability::Beta),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: KafkaReceiverConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        let properties = cfg
            .properties()
            .map_err(|e| e.in_component(ComponentKind::Receiver, &set.id))?;
        let undecodable =
            metrics::counter!("vigil_kafka_undecodable_messages", "receiver" => set.id.to_string());
        Ok(Arc::new(KafkaReceiver {
            set,
            cfg,
            properties,
            next,
            undecodable,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: serde_json::Value) -> KafkaReceiverConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_commit_only_what_the_receiver_stores() {
        let c = cfg(serde_json::json!({}));
        c.validate().unwrap();
        let p = c.properties().unwrap();
        for want in [
            ("group.id", "otel-collector"),
            ("enable.auto.offset.store", "false"),
            ("enable.auto.commit", "true"),
            ("auto.offset.reset", "latest"),
            ("auto.commit.interval.ms", "1000"),
        ] {
            assert!(
                p.contains(&(want.0, want.1.to_string())),
                "{want:?} in {p:?}"
            );
        }
        assert!(c.message_marking.after);
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = cfg(serde_json::json!({"metrics": {"encoding": "raw"}}))
            .validate()
            .unwrap_err();
        assert_eq!(e.path, "metrics::encoding");
        let e = cfg(serde_json::json!({"heartbeat_interval": "20s"}))
            .validate()
            .unwrap_err();
        assert_eq!(e.path, "heartbeat_interval");
        let e = cfg(serde_json::json!({"header_extraction": {"extract_headers": true}}))
            .validate()
            .unwrap_err();
        assert_eq!(e.path, "header_extraction::headers");
    }

    #[test]
    fn messages_decode_by_encoding() {
        let logs = to_telemetry(Signal::Logs, Encoding::Text, b"hello").unwrap();
        assert_eq!(logs.item_count(), 1);
        assert!(to_telemetry(Signal::Traces, Encoding::OtlpProto, b"\xff\xff\xff").is_err());
        let json = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"a"}]}]}]}"#;
        let mut t = to_telemetry(Signal::Traces, Encoding::OtlpJson, json).unwrap();
        assert_eq!(t.item_count(), 1);
        add_headers(&mut t, &[kv_str("kafka.header.tenant", "a")]);
        let Telemetry::Traces(rs) = &t else { panic!() };
        let attrs = &rs[0].resource.as_ref().unwrap().attributes;
        assert_eq!(
            vigil_core::attrs::get_str(attrs, "kafka.header.tenant"),
            Some("a")
        );
    }

    #[test]
    fn topics_patterns_and_unsupported_keys() {
        let c = cfg(
            serde_json::json!({"logs": {"topics": ["a", "^app-.*"]}, "traces": {"topic": "t"}}),
        );
        c.validate().unwrap();
        assert_eq!(c.topics(Signal::Logs), ["a", "^app-.*"]);
        assert_eq!(c.topics(Signal::Traces), ["t"]);
        assert_eq!(c.topics(Signal::Metrics), ["otlp_metrics"]);
        let e = cfg(serde_json::json!({"logs": {"topics": ["^a"], "exclude_topics": ["^a-b"]}}))
            .validate()
            .unwrap_err();
        assert_eq!(e.path, "logs::exclude_topics");
        let e = cfg(serde_json::json!({"logs": {"topics": ["^(a"]}}))
            .validate()
            .unwrap_err();
        assert_eq!(e.path, "logs::topics");
        let e = cfg(serde_json::json!({"use_leader_epoch": false}))
            .validate()
            .unwrap_err();
        assert_eq!(e.path, "use_leader_epoch");
        let c = cfg(
            serde_json::json!({"rack_id": "r1", "max_partition_fetch_size": 2048, "metadata": {"full": false}}),
        );
        let p = c.properties().unwrap();
        for want in [
            ("client.rack", "r1"),
            ("fetch.message.max.bytes", "2048"),
            ("topic.metadata.refresh.sparse", "true"),
        ] {
            assert!(
                p.contains(&(want.0, want.1.to_string())),
                "{want:?} in {p:?}"
            );
        }
    }

    /// Refuses every batch with the error `refusal` builds, counting the calls.
    struct Refuse(fn() -> ConsumeError, std::sync::atomic::AtomicUsize);

    #[async_trait]
    impl Consumer for Refuse {
        async fn consume(&self, _: Telemetry) -> Result<(), ConsumeError> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err((self.0)())
        }
    }

    fn handler(
        refusal: fn() -> ConsumeError,
        marking: serde_json::Value,
        backoff: serde_json::Value,
    ) -> (Handler, Arc<Refuse>) {
        let c = cfg(serde_json::json!({"message_marking": marking, "error_backoff": backoff}));
        let next = Arc::new(Refuse(refusal, Default::default()));
        let id = ComponentId::parse("kafka").unwrap();
        let set = Settings::new(ComponentKind::Receiver, &id);
        let h = Handler {
            id: "kafka".into(),
            signal: Signal::Logs,
            encoding: Encoding::Text,
            headers: Vec::new(),
            on_error: c.message_marking.on_error,
            on_permanent_error: c
                .message_marking
                .on_permanent_error
                .unwrap_or(c.message_marking.on_error),
            backoff: c.error_backoff.clone(),
            delay: None,
            next: next.clone(),
            obs: set.receiver_obs("kafka"),
            undecodable: metrics::Counter::noop(),
            stop: tokio_util::sync::CancellationToken::new(),
        };
        (h, next)
    }

    fn message() -> OwnedMessage {
        OwnedMessage::new(
            Some(b"line".to_vec()),
            None,
            "logs".into(),
            rdkafka::Timestamp::NotAvailable,
            0,
            7,
            None,
        )
    }

    fn calls(r: &Refuse) -> usize {
        r.1.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn refusals_are_marked_or_held_as_message_marking_says() {
        let retryable = || ConsumeError::retryable("full");
        let permanent = || ConsumeError::permanent("bad", 1);
        let off = serde_json::json!({});
        // on_error: a retryable refusal is skipped at once when error_backoff is off.
        let (h, n) = handler(
            retryable,
            serde_json::json!({"on_error": true}),
            off.clone(),
        );
        assert!(matches!(h.handle(&message()).await, Outcome::Mark));
        assert_eq!(calls(&n), 1);
        // on_permanent_error inherits on_error, as in otelcol.
        let (h, _) = handler(
            permanent,
            serde_json::json!({"on_error": true}),
            off.clone(),
        );
        assert!(matches!(h.handle(&message()).await, Outcome::Mark));
        // ... unless it is set: then a permanent refusal holds the partition until the stop.
        let (h, n) = handler(
            permanent,
            serde_json::json!({"on_error": true, "on_permanent_error": false}),
            off.clone(),
        );
        let stop = h.stop.clone();
        let held =
            tokio::spawn(async move { matches!(h.handle(&message()).await, Outcome::Leave) });
        tokio::time::sleep(Duration::from_millis(400)).await;
        stop.cancel();
        assert!(held.await.unwrap());
        assert!(calls(&n) >= 2, "retried {} times", calls(&n));
        // With error_backoff, on_error skips the message only once max_elapsed_time has passed.
        let (h, n) = handler(
            retryable,
            serde_json::json!({"on_error": true}),
            serde_json::json!({"enabled": true, "initial_interval": "10ms", "randomization_factor": 0,
                               "multiplier": 2, "max_interval": "40ms", "max_elapsed_time": "100ms"}),
        );
        let started = std::time::Instant::now();
        assert!(matches!(h.handle(&message()).await, Outcome::Mark));
        // Attempts at about 0, 10, 30, 70 and 110 ms: the fifth is past 100 ms.
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(calls(&n) >= 4, "{} attempts", calls(&n));
    }
}
