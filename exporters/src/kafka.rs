//! `kafka`: produces each batch to a Kafka topic per signal, as OTLP protobuf (default), OTLP/JSON, or
//! (logs) the raw log bodies, with otelcol's keys. It stands on the shared sending queue: a broker
//! that is down, a leader election or a delivery timeout is retried; a message larger than
//! `producer::max_message_bytes` or one the broker refuses as invalid is permanent and counted.
//! librdkafka (through rdkafka) does the batching, compression and acknowledgement handling.

use crate::helper::queue::{signal_from_tag, signal_tag, Persist};
use crate::helper::{
    Delivered, QueueConfig, RetryConfig, SendError, SendSettings, SendStack, Sender,
};
use async_trait::async_trait;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use vigil_core::codec::encode::{json_request, proto_request};
use vigil_core::config::{duration, TlsClientConfig};
use vigil_core::factory::{DynExporterFactory, ExporterFactory, FactoryBase};
use vigil_core::kafka::{
    default_brokers, default_client_id, default_protocol_version, default_use_leader_epoch, Auth,
    Client, Metadata,
};
use vigil_core::otlp::common::v1::{any_value, KeyValue};
use vigil_core::otlp::logs::v1::{ResourceLogs, ScopeLogs};
use vigil_core::otlp::trace::v1::{ResourceSpans, ScopeSpans};
use vigil_core::{
    ClientMetadata, ComponentId, ComponentKind, ConfigError, Exporter, Host, Settings, Signal,
    Stability, Telemetry,
};

/// How a batch becomes message values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// One OTLP protobuf export request per message.
    OtlpProto,
    /// One OTLP/JSON export request per message.
    OtlpJson,
    /// Logs only: one message per log record, its body as bytes (a string as UTF-8).
    Raw,
}

/// `traces`, `metrics` or `logs`: the topic and encoding of one signal.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignalConfig {
    /// Absent: the top-level `topic`, else `otlp_spans`, `otlp_metrics` or `otlp_logs`.
    #[serde(default)]
    pub topic: Option<String>,
    /// A client metadata key whose first value, when the call carries it, names the topic; it
    /// wins over `topic_from_attribute` and `topic`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub topic_from_metadata_key: String,
    /// Absent: the top-level `encoding`, else `otlp_proto`.
    #[serde(default)]
    pub encoding: Option<Encoding>,
}

/// `producer::compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaCompression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl KafkaCompression {
    fn codec(self) -> &'static str {
        match self {
            KafkaCompression::None => "none",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::Snappy => "snappy",
            KafkaCompression::Lz4 => "lz4",
            KafkaCompression::Zstd => "zstd",
        }
    }
}

/// `producer::compression_params`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionParams {
    /// The codec's level; absent (or -1): the codec's default.
    #[serde(default)]
    pub level: Option<i32>,
}

/// `producer::required_acks`: 0, 1, -1, or `all` (otelcol's alias for -1).
fn required_acks<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Acks {
        N(i32),
        S(String),
    }
    match Acks::deserialize(d)? {
        Acks::N(n) => Ok(n),
        Acks::S(s) if s == "all" => Ok(-1),
        Acks::S(s) => s.parse().map_err(|_| {
            serde::de::Error::custom(format!("invalid value {s:?}: expected 0, 1, -1 or \"all\""))
        }),
    }
}

/// `producer`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerConfig {
    /// The largest message (key and value) sent; a larger batch is split, a single larger item
    /// is refused as permanent and counted in `vigil_kafka_messages_too_large`.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// 0: no acknowledgement, 1: the leader's (default), -1: every in-sync replica's.
    #[serde(default = "one", deserialize_with = "required_acks")]
    pub required_acks: i32,
    #[serde(default)]
    pub compression: KafkaCompression,
    #[serde(default)]
    pub compression_params: CompressionParams,
    /// The most messages in one produce request; 0: librdkafka's default (10000).
    #[serde(default)]
    pub flush_max_messages: usize,
    /// Whether a missing topic is created by the broker (if the broker allows it).
    #[serde(default = "yes")]
    pub allow_auto_topic_creation: bool,
}

fn default_max_message_bytes() -> usize {
    1_000_000
}

fn one() -> i32 {
    1
}

fn yes() -> bool {
    true
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            max_message_bytes: default_max_message_bytes(),
            required_acks: 1,
            compression: KafkaCompression::None,
            compression_params: CompressionParams::default(),
            flush_max_messages: 0,
            allow_auto_topic_creation: true,
        }
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// The `kafka` exporter's config, with otelcol's keys.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaExporterConfig {
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
    /// otelcol's older single topic for every signal; a signal block's `topic` wins.
    #[serde(default)]
    pub topic: Option<String>,
    /// otelcol's older single encoding for every signal; a signal block's `encoding` wins.
    #[serde(default)]
    pub encoding: Option<Encoding>,
    #[serde(default)]
    pub traces: SignalConfig,
    #[serde(default)]
    pub metrics: SignalConfig,
    #[serde(default)]
    pub logs: SignalConfig,
    /// One message per trace, keyed by the trace id, so that a trace stays in one partition.
    #[serde(default)]
    pub partition_traces_by_id: bool,
    /// One message per resource, keyed by a hash of its attributes.
    #[serde(default)]
    pub partition_metrics_by_resource_attributes: bool,
    #[serde(default)]
    pub partition_logs_by_resource_attributes: bool,
    /// One message per trace id of the log records, keyed by it in hex; records without a
    /// trace id go together, unkeyed.
    #[serde(default)]
    pub partition_logs_by_trace_id: bool,
    /// A resource attribute whose (string) value names the topic; each resource then goes in a
    /// message of its own, to its topic, and resources without it to the signal's topic.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub topic_from_attribute: String,
    /// Client metadata keys whose values travel as Kafka headers (one header per value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_metadata_keys: Vec<String>,
    #[serde(default)]
    pub producer: ProducerConfig,
    /// How long librdkafka may take to deliver one message (`message.timeout.ms`), retries to the
    /// broker included; then the attempt fails as retryable and `retry_on_failure` takes over.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    #[serde(default)]
    pub sending_queue: QueueConfig,
}

impl KafkaExporterConfig {
    fn signal(&self, signal: Signal) -> &SignalConfig {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
            // Not a signal this exporter carries (see `stability`): its block is always empty.
            Signal::Profiles => {
                static NONE: std::sync::LazyLock<SignalConfig> =
                    std::sync::LazyLock::new(SignalConfig::default);
                &NONE
            }
        }
    }

    /// The topic of a signal: its block's, else the top-level one, else otelcol's default.
    pub fn topic(&self, signal: Signal) -> String {
        let default = match signal {
            Signal::Traces => "otlp_spans",
            Signal::Metrics => "otlp_metrics",
            Signal::Logs => "otlp_logs",
            Signal::Profiles => "otlp_profiles",
        };
        self.signal(signal)
            .topic
            .clone()
            .or_else(|| self.topic.clone())
            .unwrap_or_else(|| default.to_string())
    }

    pub fn encoding(&self, signal: Signal) -> Encoding {
        self.signal(signal)
            .encoding
            .or(self.encoding)
            .unwrap_or(Encoding::OtlpProto)
    }

    fn client(&self) -> Client<'_> {
        Client {
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
    }

    fn settings(&self) -> SendSettings {
        SendSettings {
            // librdkafka enforces `timeout` itself (message.timeout.ms), and ends each attempt with
            // its own verdict: a second timer around it could give up on a message that librdkafka
            // then delivers anyway, and the retry would duplicate it.
            timeout: Duration::ZERO,
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
        }
    }

    /// librdkafka's producer properties; errors carry the key path.
    pub fn properties(&self) -> Result<Vec<(&'static str, String)>, ConfigError> {
        let mut p = self.client().properties()?;
        let producer = &self.producer;
        if !matches!(producer.required_acks, -1..=1) {
            return Err(ConfigError::at(
                "producer::required_acks",
                format!(
                    "invalid value {}: expected 0 (none), 1 (the leader) or -1 (all in-sync replicas)",
                    producer.required_acks
                ),
            ));
        }
        p.push(("acks", producer.required_acks.to_string()));
        if producer.max_message_bytes < 1000 || producer.max_message_bytes > 1_000_000_000 {
            return Err(ConfigError::at(
                "producer::max_message_bytes",
                format!(
                    "invalid value {}: expected 1000 to 1000000000 bytes",
                    producer.max_message_bytes
                ),
            ));
        }
        // librdkafka counts its record framing against the same limit; the exporter checks the
        // key and value against `max_message_bytes` before producing.
        p.push((
            "message.max.bytes",
            (producer.max_message_bytes + RECORD_OVERHEAD).to_string(),
        ));
        p.push(("compression.codec", producer.compression.codec().into()));
        // otelcol's producers (Sarama, and franz-go's "sarama_compat" default) place a keyed
        // message by FNV-1a of its key and an unkeyed one at random; librdkafka's fnv1a_random is
        // that same hash (its absolute value as int32, modulo the partition count), so a key lands
        // in the same partition as from otelcol. librdkafka's own default (CRC32) would not.
        p.push(("partitioner", "fnv1a_random".into()));
        p.push((
            "allow.auto.create.topics",
            producer.allow_auto_topic_creation.to_string(),
        ));
        if let Some(level) = producer.compression_params.level.filter(|l| *l != -1) {
            let max = match producer.compression {
                KafkaCompression::Gzip => 9,
                KafkaCompression::Lz4 => 12,
                KafkaCompression::Zstd => 22,
                KafkaCompression::None | KafkaCompression::Snappy => 0,
            };
            if !(0..=max).contains(&level) {
                return Err(ConfigError::at(
                    "producer::compression_params::level",
                    format!(
                        "invalid level {level} for {}: expected -1 (the codec's default) or 0 to {max}",
                        producer.compression.codec()
                    ),
                ));
            }
            p.push(("compression.level", level.to_string()));
        }
        if producer.flush_max_messages > 0 {
            p.push((
                "batch.num.messages",
                producer.flush_max_messages.min(1_000_000).to_string(),
            ));
        }
        if !self.timeout.is_zero() {
            p.push((
                "message.timeout.ms",
                self.timeout
                    .as_millis()
                    .clamp(1, i32::MAX as u128)
                    .to_string(),
            ));
        }
        Ok(p)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.properties()?;
        if self.partition_logs_by_resource_attributes && self.partition_logs_by_trace_id {
            return Err(ConfigError::at(
                "partition_logs_by_trace_id",
                "partition_logs_by_resource_attributes and partition_logs_by_trace_id cannot both be enabled",
            ));
        }
        // A merged batch carries only the metadata keys it is partitioned by (otelcol's rule):
        // a key missing there would silently never reach the headers or the topic.
        if let Some(batch) = self
            .sending_queue
            .batch
            .as_ref()
            .filter(|_| self.sending_queue.enabled)
        {
            let kept = |k: &str| {
                batch
                    .partition
                    .metadata_keys
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case(k))
            };
            for k in &self.include_metadata_keys {
                if !kept(k) {
                    return Err(ConfigError::at(
                        "include_metadata_keys",
                        format!(
                            "{k:?} must also be in sending_queue::batch::partition::metadata_keys: \
                             a merged batch carries no other client metadata"
                        ),
                    ));
                }
            }
            for s in Signal::ALL {
                let k = &self.signal(s).topic_from_metadata_key;
                if !k.is_empty() && !kept(k) {
                    return Err(ConfigError::at(
                        format!("{s}::topic_from_metadata_key"),
                        format!(
                            "{k:?} must also be in sending_queue::batch::partition::metadata_keys: \
                             a merged batch carries no other client metadata"
                        ),
                    ));
                }
            }
        }
        for s in [Signal::Traces, Signal::Metrics] {
            if self.encoding(s) == Encoding::Raw {
                let key = if self.signal(s).encoding.is_some() {
                    format!("{s}::encoding")
                } else {
                    "encoding".to_string()
                };
                return Err(ConfigError::at(
                    key,
                    format!("raw is for logs only; {s} can be otlp_proto or otlp_json"),
                ));
            }
        }
        for s in Signal::ALL {
            if self.topic(s).is_empty() {
                return Err(ConfigError::at(format!("{s}::topic"), "must not be empty"));
            }
        }
        Ok(())
    }
}

/// The bytes librdkafka adds to a record beyond its key and value (headers, lengths, varints),
/// generously.
const RECORD_OVERHEAD: usize = 512;

/// One Kafka record to produce.
#[derive(Debug)]
pub struct Message {
    topic: String,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    /// Set once the broker acknowledged it, so that a retry of the request skips it; not stored
    /// by a durable queue (a replayed request is sent whole).
    acked: AtomicBool,
}

/// The messages one batch became.
#[derive(Debug)]
pub struct KafkaRequest {
    signal: Signal,
    messages: Vec<Message>,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn take_bytes<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, rest) = b.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len);
    if len == u32::MAX {
        *b = rest;
        return Some(&[]);
    }
    let len = usize::try_from(len).ok()?;
    if rest.len() < len {
        return None;
    }
    let (v, rest) = rest.split_at(len);
    *b = rest;
    Some(v)
}

/// Stored as the signal tag, then per message: topic, key (length u32::MAX when absent), value,
/// each length-prefixed (u32, big-endian).
impl Persist for KafkaRequest {
    fn to_bytes(&self) -> Vec<u8> {
        let size: usize = self
            .messages
            .iter()
            .map(|m| 12 + m.topic.len() + m.key.as_ref().map_or(0, Vec::len) + m.value.len())
            .sum();
        let mut out = Vec::with_capacity(1 + size);
        out.push(signal_tag(self.signal));
        for m in &self.messages {
            put_bytes(&mut out, m.topic.as_bytes());
            match &m.key {
                Some(k) => put_bytes(&mut out, k),
                None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
            }
            put_bytes(&mut out, &m.value);
        }
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&tag, mut rest) = bytes.split_first()?;
        let signal = signal_from_tag(tag)?;
        let mut messages = Vec::new();
        while !rest.is_empty() {
            let topic = String::from_utf8(take_bytes(&mut rest)?.to_vec()).ok()?;
            let absent = rest.get(..4)? == u32::MAX.to_be_bytes();
            let key = take_bytes(&mut rest)?;
            let value = take_bytes(&mut rest)?.to_vec();
            messages.push(Message {
                topic,
                key: (!absent).then(|| key.to_vec()),
                value,
                acked: AtomicBool::new(false),
            });
        }
        Some(KafkaRequest { signal, messages })
    }
}

/// Splits spans into one batch per trace id, in order of first appearance; each keeps its
/// resource and scope. The key is the trace id in hex, as otelcol's.
fn by_trace_id(rs: Vec<ResourceSpans>) -> Vec<(Vec<u8>, Telemetry)> {
    // Per trace: its id, its spans under their resources, and the (resource, scope) index it
    // last appended to, so that consecutive spans share one envelope.
    type Group = (Vec<u8>, Vec<ResourceSpans>, (usize, usize));
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    for (ri, r) in rs.into_iter().enumerate() {
        for (si, ss) in r.scope_spans.into_iter().enumerate() {
            for span in ss.spans {
                let gi = *index.entry(span.trace_id.clone()).or_insert_with(|| {
                    groups.push((span.trace_id.clone(), Vec::new(), (usize::MAX, 0)));
                    groups.len() - 1
                });
                let (_, out, last) = &mut groups[gi];
                if last.0 != ri {
                    out.push(ResourceSpans {
                        resource: r.resource.clone(),
                        scope_spans: Vec::new(),
                        schema_url: r.schema_url.clone(),
                    });
                    *last = (ri, usize::MAX);
                }
                let Some(res) = out.last_mut() else { continue };
                if last.1 != si {
                    res.scope_spans.push(ScopeSpans {
                        scope: ss.scope.clone(),
                        spans: Vec::new(),
                        schema_url: ss.schema_url.clone(),
                    });
                    last.1 = si;
                }
                if let Some(scope) = res.scope_spans.last_mut() {
                    scope.spans.push(span);
                }
            }
        }
    }
    groups
        .into_iter()
        .map(|(id, rs, _)| (hex(&id).into_bytes(), Telemetry::Traces(rs)))
        .collect()
}

/// Splits log records into one batch per trace id, in order of first appearance, each keeping
/// its resource and scope; the key is the trace id in hex, and records without one go together,
/// unkeyed (otelcol's `partition_logs_by_trace_id`).
fn logs_by_trace_id(rl: Vec<ResourceLogs>) -> Vec<(Option<Vec<u8>>, Telemetry)> {
    type Group = (Vec<u8>, Vec<ResourceLogs>, (usize, usize));
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    for (ri, r) in rl.into_iter().enumerate() {
        for (si, sl) in r.scope_logs.into_iter().enumerate() {
            for rec in sl.log_records {
                // An all-zero id is no id, as in OTLP.
                let id = if rec.trace_id.iter().all(|b| *b == 0) {
                    Vec::new()
                } else {
                    rec.trace_id.clone()
                };
                let gi = *index.entry(id.clone()).or_insert_with(|| {
                    groups.push((id, Vec::new(), (usize::MAX, 0)));
                    groups.len() - 1
                });
                let (_, out, last) = &mut groups[gi];
                if last.0 != ri {
                    out.push(ResourceLogs {
                        resource: r.resource.clone(),
                        scope_logs: Vec::new(),
                        schema_url: r.schema_url.clone(),
                    });
                    *last = (ri, usize::MAX);
                }
                let Some(res) = out.last_mut() else { continue };
                if last.1 != si {
                    res.scope_logs.push(ScopeLogs {
                        scope: sl.scope.clone(),
                        log_records: Vec::new(),
                        schema_url: sl.schema_url.clone(),
                    });
                    last.1 = si;
                }
                if let Some(scope) = res.scope_logs.last_mut() {
                    scope.log_records.push(rec);
                }
            }
        }
    }
    groups
        .into_iter()
        .map(|(id, rl, _)| {
            let key = (!id.is_empty()).then(|| hex(&id).into_bytes());
            (key, Telemetry::Logs(rl))
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A key that is the same for the same resource attributes in any order: FNV-1a over the sorted,
/// protobuf-encoded attributes. Stable across releases, unlike std's hasher.
fn attributes_key(attrs: &[KeyValue]) -> Vec<u8> {
    let mut sorted: Vec<&KeyValue> = attrs.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for kv in sorted {
        for byte in prost::Message::encode_to_vec(kv) {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h.to_be_bytes().to_vec()
}

/// The OTLP/protobuf producer.
pub struct KafkaSender {
    id: ComponentId,
    properties: Vec<(&'static str, String)>,
    topics: [String; 4],
    encodings: [Encoding; 4],
    partition_traces_by_id: bool,
    partition_metrics_by_resource_attributes: bool,
    partition_logs_by_resource_attributes: bool,
    partition_logs_by_trace_id: bool,
    topic_from_attribute: String,
    /// Per signal: the client metadata key that names the topic, if any.
    topic_from_metadata_key: [String; 4],
    include_metadata_keys: Vec<String>,
    max_message_bytes: usize,
    producer: OnceLock<FutureProducer<Context>>,
    too_large: metrics::Counter,
}

fn slot(signal: Signal) -> usize {
    match signal {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
        Signal::Profiles => 3,
    }
}

/// librdkafka's log lines and global errors, under the component's name.
pub struct Context {
    id: String,
}

impl rdkafka::ClientContext for Context {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(exporter = %self.id, facility = fac, "librdkafka: {log_message}")
            }
            L::Warning => {
                tracing::warn!(exporter = %self.id, facility = fac, "librdkafka: {log_message}")
            }
            L::Notice | L::Info => {
                tracing::info!(exporter = %self.id, facility = fac, "librdkafka: {log_message}")
            }
            L::Debug => {
                tracing::debug!(exporter = %self.id, facility = fac, "librdkafka: {log_message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Connection losses are reported here too and recovered from by librdkafka itself; the
        // sends that they fail are what the retry counts.
        tracing::warn!(exporter = %self.id, %error, "kafka client: {reason}");
    }
}

/// Whether a failed delivery can succeed later: anything about the data itself (too large, an
/// invalid record, a topic the client may not write) cannot.
fn is_permanent(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessage
                | C::InvalidMessageSize
                | C::InvalidRecord
                | C::MessageBatchTooLarge
                | C::InvalidTopic
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::SaslAuthenticationFailed
                | C::UnsupportedCompressionType
        )
    )
}

impl KafkaSender {
    fn encode(&self, data: &Telemetry) -> Result<Vec<u8>, SendError> {
        match self.encodings[slot(data.signal())] {
            Encoding::OtlpJson => json_request(data)
                .map_err(|e| SendError::permanent(format!("cannot encode as OTLP/JSON: {e}"))),
            Encoding::OtlpProto | Encoding::Raw => Ok(proto_request(data)),
        }
    }

    fn fits(&self, key: &Option<Vec<u8>>, value: &[u8]) -> bool {
        key.as_ref().map_or(0, Vec::len) + value.len() <= self.max_message_bytes
    }

    /// Encodes one part; a part too large for one message is halved until it fits, and a single
    /// item that does not fit is refused.
    fn push_part(
        &self,
        topic: &str,
        key: Option<Vec<u8>>,
        data: Telemetry,
        out: &mut Vec<Message>,
    ) -> Result<(), SendError> {
        let value = self.encode(&data)?;
        if self.fits(&key, &value) {
            out.push(Message {
                topic: topic.to_string(),
                key,
                value,
                acked: AtomicBool::new(false),
            });
            return Ok(());
        }
        let items = data.item_count();
        if items <= 1 {
            self.too_large.increment(1);
            return Err(SendError::permanent(format!(
                "one {} encodes to {} bytes, more than producer::max_message_bytes ({})",
                data.signal().item_name(),
                value.len(),
                self.max_message_bytes
            )));
        }
        for half in vigil_core::consumer::split::split_max(data, items.div_ceil(2)) {
            self.push_part(topic, key.clone(), half, out)?;
        }
        Ok(())
    }

    /// `raw` logs: one message per record, its body as the value.
    fn raw_logs(
        &self,
        data: &Telemetry,
        topic: &str,
        key: &Option<Vec<u8>>,
        out: &mut Vec<Message>,
    ) -> Result<(), SendError> {
        let Telemetry::Logs(rl) = data else {
            return Err(SendError::permanent("raw encoding is for logs only"));
        };
        for rec in rl
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
        {
            let value = match rec.body.as_ref().and_then(|b| b.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.as_bytes().to_vec(),
                Some(any_value::Value::BytesValue(b)) => b.clone(),
                Some(other) => vigil_core::attrs::value_to_string(other).into_bytes(),
                None => Vec::new(),
            };
            if !self.fits(key, &value) {
                self.too_large.increment(1);
                return Err(SendError::permanent(format!(
                    "a log body of {} bytes is more than producer::max_message_bytes ({})",
                    value.len(),
                    self.max_message_bytes
                )));
            }
            out.push(Message {
                topic: topic.to_string(),
                key: key.clone(),
                value,
                acked: AtomicBool::new(false),
            });
        }
        Ok(())
    }

    /// The parts a batch is cut into before encoding, each with its message key, as otelcol's
    /// exporter cuts them: by trace id, by resource (for a resource key or a topic per
    /// resource), or not at all.
    fn partition(&self, data: &Telemetry) -> Vec<(Option<Vec<u8>>, Telemetry)> {
        let by_attribute = !self.topic_from_attribute.is_empty();
        let resource_key = |r: &Option<vigil_core::otlp::resource::v1::Resource>| {
            attributes_key(r.as_ref().map_or(&[][..], |x| &x.attributes))
        };
        match data {
            Telemetry::Traces(rs) if self.partition_traces_by_id => by_trace_id(rs.clone())
                .into_iter()
                .map(|(k, t)| (Some(k), t))
                .collect(),
            Telemetry::Traces(rs) if by_attribute => rs
                .iter()
                .map(|r| (None, Telemetry::Traces(vec![r.clone()])))
                .collect(),
            Telemetry::Metrics(rm)
                if self.partition_metrics_by_resource_attributes || by_attribute =>
            {
                rm.iter()
                    .map(|r| {
                        let key = self
                            .partition_metrics_by_resource_attributes
                            .then(|| resource_key(&r.resource));
                        (key, Telemetry::Metrics(vec![r.clone()]))
                    })
                    .collect()
            }
            Telemetry::Logs(rl)
                if self.partition_logs_by_resource_attributes
                    || (by_attribute && !self.partition_logs_by_trace_id) =>
            {
                rl.iter()
                    .map(|r| {
                        let key = self
                            .partition_logs_by_resource_attributes
                            .then(|| resource_key(&r.resource));
                        (key, Telemetry::Logs(vec![r.clone()]))
                    })
                    .collect()
            }
            Telemetry::Logs(rl) if self.partition_logs_by_trace_id => logs_by_trace_id(rl.clone()),
            _ => vec![(None, data.clone())],
        }
    }

    /// `topic_from_attribute`: the first resource whose attribute is a non-empty string names
    /// the topic of the part; otherwise the signal's topic.
    fn topic_of<'a>(&self, part: &'a Telemetry, default: &'a str) -> &'a str {
        if self.topic_from_attribute.is_empty() {
            return default;
        }
        let found = |r: &'a Option<vigil_core::otlp::resource::v1::Resource>| {
            r.as_ref()
                .and_then(|r| vigil_core::attrs::get_str(&r.attributes, &self.topic_from_attribute))
                .filter(|t| !t.is_empty())
        };
        let topic = match part {
            Telemetry::Traces(v) => v.iter().find_map(|r| found(&r.resource)),
            Telemetry::Metrics(v) => v.iter().find_map(|r| found(&r.resource)),
            Telemetry::Logs(v) => v.iter().find_map(|r| found(&r.resource)),
            Telemetry::Profiles(p) => p.resource_profiles.iter().find_map(|r| found(&r.resource)),
        };
        topic.unwrap_or(default)
    }
}

#[async_trait]
impl Sender for KafkaSender {
    type Request = KafkaRequest;

    fn prepare(&self, data: &Telemetry) -> Result<KafkaRequest, SendError> {
        let signal = data.signal();
        let default_topic = &self.topics[slot(signal)];
        let raw = self.encodings[slot(signal)] == Encoding::Raw;
        let mut messages = Vec::new();
        for (key, part) in self.partition(data) {
            let topic = self.topic_of(&part, default_topic);
            if raw {
                self.raw_logs(&part, topic, &key, &mut messages)?;
            } else {
                self.push_part(topic, key, part.clone(), &mut messages)?;
            }
        }
        Ok(KafkaRequest { signal, messages })
    }

    async fn send(&self, req: &KafkaRequest) -> Result<Delivered, SendError> {
        let Some(producer) = self.producer.get() else {
            return Err(SendError::retryable("the kafka producer is not started"));
        };
        let pending: Vec<&Message> = req
            .messages
            .iter()
            .filter(|m| !m.acked.load(Ordering::Relaxed))
            .collect();
        // The client metadata of the call (restored by the queue around a queued send).
        let meta = ClientMetadata::current();
        let topic_key = &self.topic_from_metadata_key[slot(req.signal)];
        let meta_topic = meta
            .as_deref()
            .filter(|_| !topic_key.is_empty())
            .and_then(|m| m.get(topic_key).first().cloned());
        let mut headers: Option<OwnedHeaders> = None;
        if let Some(m) = meta.as_deref() {
            for k in &self.include_metadata_keys {
                for v in m.get(k) {
                    headers = Some(headers.unwrap_or_default().insert(Header {
                        key: k.as_str(),
                        value: Some(v.as_bytes()),
                    }));
                }
            }
        }
        // Every message is handed to librdkafka first, then the acknowledgements are awaited:
        // librdkafka batches what is queued together into produce requests.
        let mut waiting = Vec::with_capacity(pending.len());
        let mut results: Vec<Result<(), KafkaError>> = Vec::with_capacity(pending.len());
        for m in &pending {
            let topic = meta_topic.as_deref().unwrap_or(&m.topic);
            let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(&m.value[..]);
            if let Some(k) = &m.key {
                record = record.key(&k[..]);
            }
            if let Some(h) = &headers {
                record = record.headers(h.clone());
            }
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        waiting.push((*m, delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // librdkafka's local queue is full: wait for it to drain a little.
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => {
                        results.push(Err(e));
                        break;
                    }
                }
            }
        }
        for (m, delivery) in waiting {
            let r = match delivery.await {
                Ok(Ok(_)) => {
                    m.acked.store(true, Ordering::Relaxed);
                    Ok(())
                }
                Ok(Err((e, _))) => Err(e),
                // The producer was dropped (the exporter is stopping) before it answered.
                Err(_) => Err(KafkaError::Canceled),
            };
            results.push(r);
        }
        let mut first: Option<KafkaError> = None;
        let mut failed = 0usize;
        for e in results.into_iter().filter_map(Result::err) {
            failed += 1;
            // A permanent error decides the request: sending it again would fail again.
            if first
                .as_ref()
                .is_none_or(|f| !is_permanent(f) && is_permanent(&e))
            {
                first = Some(e);
            }
        }
        let Some(e) = first else {
            return Ok(Delivered::default());
        };
        let reason = format!(
            "{failed} of {} messages to kafka failed: {e}",
            pending.len()
        );
        if is_permanent(&e) {
            if e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge) {
                self.too_large.increment(1);
            }
            Err(SendError::permanent(reason))
        } else {
            Err(SendError::retryable(reason))
        }
    }

    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let mut cfg = ClientConfig::new();
        for (k, v) in &self.properties {
            cfg.set(*k, v);
        }
        let producer: FutureProducer<Context> = cfg
            .create_with_context(Context {
                id: self.id.to_string(),
            })
            .map_err(|e| {
                anyhow::anyhow!(
                    "exporters::{}: cannot create the kafka producer: {e}",
                    self.id
                )
            })?;
        let _ = self.producer.set(producer);
        Ok(())
    }
}

impl Drop for KafkaSender {
    fn drop(&mut self) {
        // What is still in librdkafka's queue belongs to sends the stack has already given up on
        // (counted there); do not wait for it.
        if let Some(p) = self.producer.get() {
            let _ = p.flush(Timeout::After(Duration::ZERO));
        }
    }
}

fn build(set: &Settings, cfg: KafkaExporterConfig) -> Result<SendStack<KafkaSender>, ConfigError> {
    let id = &set.id;
    let properties = cfg
        .properties()
        .map_err(|e| e.in_component(ComponentKind::Exporter, id))?;
    let sender = KafkaSender {
        id: id.clone(),
        properties,
        topics: Signal::ALL.map(|s| cfg.topic(s)),
        encodings: Signal::ALL.map(|s| cfg.encoding(s)),
        partition_traces_by_id: cfg.partition_traces_by_id,
        partition_metrics_by_resource_attributes: cfg.partition_metrics_by_resource_attributes,
        partition_logs_by_resource_attributes: cfg.partition_logs_by_resource_attributes,
        partition_logs_by_trace_id: cfg.partition_logs_by_trace_id,
        topic_from_metadata_key: Signal::ALL.map(|s| cfg.signal(s).topic_from_metadata_key.clone()),
        topic_from_attribute: cfg.topic_from_attribute.clone(),
        include_metadata_keys: cfg.include_metadata_keys.clone(),
        max_message_bytes: cfg.producer.max_message_bytes,
        producer: OnceLock::new(),
        too_large: metrics::counter!("vigil_kafka_messages_too_large", "exporter" => id.to_string()),
    };
    Ok(SendStack::new(set, cfg.settings(), sender))
}

struct Factory;

pub fn factory() -> Arc<dyn DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl FactoryBase for Factory {
    type Config = KafkaExporterConfig;

    fn type_name(&self) -> &'static str {
        "kafka"
    }

    fn validate(&self, id: &ComponentId, cfg: &KafkaExporterConfig) -> Result<(), ConfigError> {
        cfg.validate()?;
        cfg.settings().validate(id)
    }
}

impl ExporterFactory for Factory {
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
        cfg: KafkaExporterConfig,
    ) -> Result<Arc<dyn Exporter>, ConfigError> {
        Ok(Arc::new(build(&set, cfg)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helper::encode::tests::sample_traces;
    use vigil_core::codec::encode::decode_proto_request;
    use vigil_core::otlp::common::v1::AnyValue;
    use vigil_core::otlp::logs::v1::LogRecord;

    fn stack(extra: serde_json::Value) -> SendStack<KafkaSender> {
        let id = ComponentId::parse("kafka/test").unwrap();
        let cfg: KafkaExporterConfig =
            vigil_core::config::decode(ComponentKind::Exporter, &id, &extra).unwrap();
        cfg.validate().unwrap();
        let set = Settings::new(ComponentKind::Exporter, &id);
        build(&set, cfg).unwrap()
    }

    /// `n` log records over two resources.
    fn sample_logs(n: usize) -> Telemetry {
        let record = |i: usize| LogRecord {
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!("line {i}"))),
            }),
            ..Default::default()
        };
        let resource = |name: &str, recs: Vec<LogRecord>| ResourceLogs {
            resource: Some(vigil_core::otlp::resource::v1::Resource {
                attributes: vec![vigil_core::attrs::kv_str("service.name", name)],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: recs,
                ..Default::default()
            }],
            ..Default::default()
        };
        let half = n / 2;
        Telemetry::Logs(vec![
            resource("a", (0..half).map(record).collect()),
            resource("b", (half..n).map(record).collect()),
        ])
    }

    #[test]
    fn defaults_are_otelcols() {
        let cfg: KafkaExporterConfig =
            vigil_core::config::decode_all(&serde_json::Value::Null).unwrap();
        assert_eq!(cfg.topic(Signal::Traces), "otlp_spans");
        assert_eq!(cfg.topic(Signal::Metrics), "otlp_metrics");
        assert_eq!(cfg.topic(Signal::Logs), "otlp_logs");
        assert_eq!(cfg.encoding(Signal::Logs), Encoding::OtlpProto);
        let p = cfg.properties().unwrap();
        assert!(p.contains(&("acks", "1".into())));
        assert!(p.contains(&("compression.codec", "none".into())));
        assert!(p.contains(&("client.id", "otel-collector".into())));
    }

    #[test]
    fn legacy_topic_yields_to_signal_blocks() {
        let cfg: KafkaExporterConfig = serde_json::from_value(serde_json::json!({
            "topic": "all", "logs": {"topic": "mine", "encoding": "raw"}
        }))
        .unwrap();
        assert_eq!(cfg.topic(Signal::Traces), "all");
        assert_eq!(cfg.topic(Signal::Logs), "mine");
        assert_eq!(cfg.encoding(Signal::Logs), Encoding::Raw);
        cfg.validate().unwrap();
        let bad: KafkaExporterConfig =
            serde_json::from_value(serde_json::json!({"traces": {"encoding": "raw"}})).unwrap();
        assert_eq!(bad.validate().unwrap_err().path, "traces::encoding");
    }

    #[test]
    fn traces_split_by_trace_id_keep_every_span() {
        let st = stack(serde_json::json!({"partition_traces_by_id": true}));
        let s = st.sender();
        let mut data = sample_traces(6);
        if let Telemetry::Traces(rs) = &mut data {
            for (i, sp) in rs[0].scope_spans[0].spans.iter_mut().enumerate() {
                sp.trace_id = vec![(i % 3) as u8; 16];
            }
        }
        let req = s.prepare(&data).unwrap();
        let mut spans = 0;
        for m in &req.messages {
            let Telemetry::Traces(rs) = decode_proto_request(Signal::Traces, &m.value).unwrap()
            else {
                panic!("not traces")
            };
            let ids: std::collections::HashSet<String> = rs
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
                .map(|sp| hex(&sp.trace_id))
                .collect();
            assert_eq!(ids.len(), 1, "one trace per message");
            assert_eq!(rs.len(), 1, "its resource once");
            assert_eq!(
                m.key.as_deref(),
                Some(ids.iter().next().unwrap().as_bytes())
            );
            spans += rs
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum::<usize>();
        }
        assert_eq!((spans, req.messages.len()), (6, 3));
    }

    #[test]
    fn too_large_batches_split_and_single_items_are_refused() {
        let st = stack(serde_json::json!({"producer": {"max_message_bytes": 1000}}));
        let s = st.sender();
        let req = s.prepare(&sample_logs(200)).unwrap();
        assert!(req.messages.len() > 1);
        assert!(req.messages.iter().all(|m| m.value.len() <= 1000));
        let mut big = sample_logs(1);
        if let Telemetry::Logs(rl) = &mut big {
            rl[1].scope_logs[0].log_records[0].body =
                Some(vigil_core::otlp::common::v1::AnyValue {
                    value: Some(any_value::Value::StringValue("x".repeat(5000))),
                });
        }
        let e = s.prepare(&big).unwrap_err();
        assert!(!e.is_retryable());
        assert!(e.reason().contains("max_message_bytes"), "{e}");
    }

    #[test]
    fn requests_survive_the_durable_queue_format() {
        let st = stack(serde_json::json!({"partition_logs_by_resource_attributes": true}));
        let s = st.sender();
        let req = s.prepare(&sample_logs(3)).unwrap();
        assert_eq!(req.messages.len(), 2, "one message per resource");
        assert_ne!(req.messages[0].key, req.messages[1].key);
        let back = KafkaRequest::from_bytes(&req.to_bytes()).unwrap();
        assert_eq!(back.signal, Signal::Logs);
        assert_eq!(back.messages.len(), req.messages.len());
        for (a, b) in back.messages.iter().zip(&req.messages) {
            assert_eq!((&a.topic, &a.key, &a.value), (&b.topic, &b.key, &b.value));
        }
        assert!(KafkaRequest::from_bytes(&[9]).is_none());
        assert!(KafkaRequest::from_bytes(&[3, 0, 0, 0, 9, b'a']).is_none());
    }

    #[test]
    fn topic_from_attribute_sends_each_resource_to_its_topic() {
        let st = stack(
            serde_json::json!({"topic_from_attribute": "service.name", "logs": {"topic": "rest"}}),
        );
        let s = st.sender();
        let mut data = sample_logs(4);
        if let Telemetry::Logs(rl) = &mut data {
            rl.push(ResourceLogs::default());
            rl[2].scope_logs = rl[0].scope_logs.clone();
        }
        let req = s.prepare(&data).unwrap();
        let topics: Vec<&str> = req.messages.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(topics, ["a", "b", "rest"]);
        assert!(req.messages.iter().all(|m| m.key.is_none()));
    }

    #[test]
    fn logs_split_by_trace_id_are_keyed_by_it() {
        let st = stack(serde_json::json!({"partition_logs_by_trace_id": true}));
        let s = st.sender();
        let mut data = sample_logs(6);
        if let Telemetry::Logs(rl) = &mut data {
            for (i, rec) in rl
                .iter_mut()
                .flat_map(|r| &mut r.scope_logs)
                .flat_map(|s| &mut s.log_records)
                .enumerate()
            {
                // Records 0 and 3 have no trace id; the others alternate between two traces.
                rec.trace_id = if i % 3 == 0 {
                    vec![]
                } else {
                    vec![(i % 3) as u8; 16]
                };
            }
        }
        let req = s.prepare(&data).unwrap();
        let keys: Vec<Option<String>> = req
            .messages
            .iter()
            .map(|m| {
                m.key
                    .as_ref()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
            })
            .collect();
        assert_eq!(
            keys,
            [None, Some("01".repeat(16)), Some("02".repeat(16))],
            "one message per trace id, in order of first appearance"
        );
        let counts: Vec<usize> = req
            .messages
            .iter()
            .map(|m| {
                decode_proto_request(Signal::Logs, &m.value)
                    .unwrap()
                    .item_count()
            })
            .collect();
        assert_eq!(counts, [2, 2, 2]);
        let both = serde_json::json!({"partition_logs_by_trace_id": true, "partition_logs_by_resource_attributes": true});
        let cfg: KafkaExporterConfig = serde_json::from_value(both).unwrap();
        assert_eq!(
            cfg.validate().unwrap_err().path,
            "partition_logs_by_trace_id"
        );
    }

    #[test]
    fn metadata_keys_must_survive_queue_batching() {
        let cfg: KafkaExporterConfig = serde_json::from_value(serde_json::json!({
            "include_metadata_keys": ["X-Tenant"],
            "sending_queue": {"batch": {"flush_timeout": "100ms"}}
        }))
        .unwrap();
        assert_eq!(cfg.validate().unwrap_err().path, "include_metadata_keys");
        let cfg: KafkaExporterConfig = serde_json::from_value(serde_json::json!({
            "include_metadata_keys": ["X-Tenant"],
            "logs": {"topic_from_metadata_key": "x-topic"},
            "sending_queue": {"batch": {"partition": {"metadata_keys": ["x-tenant"]}}}
        }))
        .unwrap();
        assert_eq!(
            cfg.validate().unwrap_err().path,
            "logs::topic_from_metadata_key"
        );
        let cfg: KafkaExporterConfig = serde_json::from_value(serde_json::json!({
            "include_metadata_keys": ["X-Tenant"], "producer": {"required_acks": "all"}
        }))
        .unwrap();
        cfg.validate().unwrap();
        assert!(cfg.properties().unwrap().contains(&("acks", "-1".into())));
        assert!(cfg
            .properties()
            .unwrap()
            .contains(&("partitioner", "fnv1a_random".into())));
    }
}
