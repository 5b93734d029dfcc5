//! `otelarrow`: otelcol-contrib's OTel-Arrow exporter under its type and keys, sending standard
//! OTLP/gRPC through the `otlp` exporter's transport and send stack. That is what otelcol's own
//! exporter does with `arrow::disabled: true`, and after it downgrades because the receiver
//! answered its Arrow stream with `UNIMPLEMENTED`. The Arrow encoding itself (columnar batches on
//! long-lived streams) is not built: whatever `arrow` says, the data go as OTLP, and a warning at
//! start says so when the `arrow` settings ask for Arrow. Nothing is dropped for it; a receiver
//! that speaks OTel-Arrow (otelcol's `otelarrow`) also serves standard OTLP on the same port.
//!
//! Keys: the `otlp` exporter's, with otelarrow's defaults where they differ (`compression: zstd`,
//! `balancer_name: round_robin`), plus `arrow::*` and `metadata_keys` /
//! `metadata_cardinality_limit`, accepted and validated as otelcol does. `metadata_keys` makes
//! otelcol keep one Arrow exporter (streams and queue) per metadata combination; with no streams
//! there is nothing to split, so one exporter serves every combination here.

use crate::helper::auth::AuthConfig;
use crate::helper::{Compression, QueueConfig, RetryConfig, SendStack, TokioClock};
use crate::otlp::{Balancer, GrpcSender, Keepalive, OtlpConfig};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_core::config::{duration, TlsClientConfig};
use vigil_core::factory::{DynExporterFactory, ExporterFactory, FactoryBase};
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Exporter, Host,
    Settings, Signal, Stability, Telemetry,
};

/// `exporters::otelarrow`. The first block is the `otlp` exporter's keys, field for field (a
/// test checks that every key `otlp` has is here), so that errors keep their key paths; the
/// defaults of `compression` and `balancer_name` are otelarrow's.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OtelArrowConfig {
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    tls: TlsClientConfig,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// otelarrow's default is `zstd` (the `otlp` exporter's is `gzip`).
    #[serde(default = "default_compression")]
    compression: Compression,
    #[serde(default = "default_timeout", with = "duration")]
    timeout: Duration,
    #[serde(default)]
    retry_on_failure: RetryConfig,
    #[serde(default)]
    sending_queue: QueueConfig,
    #[serde(default)]
    auth: Option<AuthConfig>,
    /// otelarrow's default is `round_robin` (so that streams spread over a Service's pods).
    #[serde(default = "default_balancer")]
    balancer_name: Balancer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keepalive: Option<Keepalive>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authority: Option<String>,
    #[serde(default)]
    wait_for_ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read_buffer_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    write_buffer_size: Option<usize>,

    #[serde(default)]
    arrow: ArrowConfig,
    /// Accepted and checked for duplicates as otelcol does; one exporter serves every combination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    metadata_keys: Vec<String>,
    #[serde(default = "default_cardinality")]
    metadata_cardinality_limit: u32,
}

fn default_compression() -> Compression {
    Compression::Zstd
}
fn default_balancer() -> Balancer {
    Balancer::RoundRobin
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_cardinality() -> u32 {
    1000
}

/// `arrow`: otelcol's OTel-Arrow stream settings. Only `disabled` describes what happens here
/// (standard OTLP, always); the rest would shape Arrow streams, which are not built.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArrowConfig {
    /// otelcol default: half the CPUs, at least 1.
    pub num_streams: u32,
    #[serde(with = "duration")]
    pub max_stream_lifetime: Duration,
    pub zstd: ZstdEncoderConfig,
    /// `zstd` (the default) or `none`.
    pub payload_compression: String,
    pub disabled: bool,
    /// Arrow or nothing: refused, since this exporter only sends standard OTLP.
    pub disable_downgrade: bool,
    /// `leastloaded` (the default) or `leastloadedN`.
    pub prioritizer: String,
}

impl Default for ArrowConfig {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        ArrowConfig {
            num_streams: u32::try_from((cpus / 2).max(1)).unwrap_or(1),
            max_stream_lifetime: Duration::from_secs(30),
            zstd: ZstdEncoderConfig::default(),
            payload_compression: "zstd".into(),
            disabled: false,
            disable_downgrade: false,
            prioritizer: "leastloaded".into(),
        }
    }
}

/// `arrow::zstd`: otelcol's gRPC-level Zstd encoder for Arrow streams.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZstdEncoderConfig {
    /// 1 to 10; otelcol default 5.
    pub level: u32,
    pub window_size_mib: u32,
    pub concurrency: u32,
}

impl Default for ZstdEncoderConfig {
    fn default() -> Self {
        ZstdEncoderConfig {
            level: 5,
            window_size_mib: 0,
            concurrency: 1,
        }
    }
}

fn config_error(id: &ComponentId, path: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Exporter, id, path, msg)
}

impl OtelArrowConfig {
    /// The `otlp` exporter config this one sends with.
    pub(crate) fn otlp(&self) -> OtlpConfig {
        OtlpConfig {
            endpoint: self.endpoint.clone(),
            tls: self.tls.clone(),
            headers: self.headers.clone(),
            compression: self.compression,
            timeout: self.timeout,
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
            auth: self.auth.clone(),
            balancer_name: self.balancer_name,
            keepalive: self.keepalive.clone(),
            authority: self.authority.clone(),
            wait_for_ready: self.wait_for_ready,
            read_buffer_size: self.read_buffer_size,
            write_buffer_size: self.write_buffer_size,
        }
    }

    fn validate(&self, id: &ComponentId) -> Result<(), ConfigError> {
        let a = &self.arrow;
        if a.num_streams < 1 {
            return Err(config_error(id, "arrow::num_streams", "must be at least 1"));
        }
        if a.max_stream_lifetime < Duration::from_secs(1) {
            return Err(config_error(
                id,
                "arrow::max_stream_lifetime",
                format!("must be at least 1s, got {:?}", a.max_stream_lifetime),
            ));
        }
        if !(1..=10).contains(&a.zstd.level) {
            return Err(config_error(
                id,
                "arrow::zstd::level",
                format!("must be from 1 to 10, got {}", a.zstd.level),
            ));
        }
        if !matches!(a.payload_compression.as_str(), "" | "none" | "zstd") {
            return Err(config_error(
                id,
                "arrow::payload_compression",
                format!(
                    "unsupported payload compression {:?}: use zstd or none",
                    a.payload_compression
                ),
            ));
        }
        let p = a.prioritizer.as_str();
        let n_ok = p
            .strip_prefix("leastloaded")
            .is_some_and(|n| n.is_empty() || n.parse::<u32>().is_ok_and(|n| n >= 1));
        if !n_ok {
            return Err(config_error(
                id,
                "arrow::prioritizer",
                format!("unknown prioritizer {p:?}: use leastloaded or leastloadedN"),
            ));
        }
        if a.disable_downgrade && !a.disabled {
            return Err(config_error(
                id,
                "arrow::disable_downgrade",
                "not built: it asks for OTel-Arrow streams only, and vigil's otelarrow exporter \
                 sends standard OTLP (the Arrow encoding is not built); remove it or set \
                 arrow::disabled: true",
            ));
        }
        let mut seen = BTreeSet::new();
        for k in &self.metadata_keys {
            if !seen.insert(k.to_lowercase()) {
                return Err(config_error(
                    id,
                    "metadata_keys",
                    format!("duplicate entry {:?} (case-insensitive)", k.to_lowercase()),
                ));
            }
        }
        self.otlp().validate(id)
    }

    /// What the start-up warning says, when the `arrow` settings ask for Arrow.
    fn arrow_notice(&self) -> Option<&'static str> {
        if self.arrow.disabled {
            return None;
        }
        Some(
            "OTel-Arrow is not built: sending standard OTLP/gRPC, as otelcol's otelarrow exporter \
             does after downgrading (set arrow::disabled: true to say so in the config); the \
             arrow::* stream settings have no effect",
        )
    }
}

struct Factory;

/// The `otelarrow` exporter factory.
pub fn factory() -> Arc<dyn DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl FactoryBase for Factory {
    type Config = OtelArrowConfig;

    fn type_name(&self) -> &'static str {
        "otelarrow"
    }

    fn validate(&self, id: &ComponentId, cfg: &OtelArrowConfig) -> Result<(), ConfigError> {
        cfg.validate(id)
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
        cfg: OtelArrowConfig,
    ) -> Result<Arc<dyn Exporter>, ConfigError> {
        Ok(Arc::new(OtelArrowExporter {
            id: set.id.clone(),
            notice: cfg.arrow_notice(),
            stack: crate::otlp::build(&set, cfg.otlp(), Arc::new(TokioClock))?,
        }))
    }
}

/// The `otlp` exporter's send stack, started with the warning about Arrow.
pub struct OtelArrowExporter {
    id: ComponentId,
    notice: Option<&'static str>,
    stack: SendStack<GrpcSender>,
}

#[async_trait]
impl Consumer for OtelArrowExporter {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        self.stack.consume(data).await
    }
}

#[async_trait]
impl Component for OtelArrowExporter {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        if let Some(notice) = self.notice {
            tracing::warn!(exporter = %self.id, "{notice}");
        }
        self.stack.start(host).await
    }

    async fn shutdown_by(&self, deadline: Instant) -> anyhow::Result<()> {
        self.stack.shutdown_by(deadline).await
    }

    fn tasks(&self) -> Option<&vigil_core::task::Tasks> {
        self.stack.tasks()
    }
}

#[cfg(test)]
#[path = "otelarrow_tests.rs"]
mod tests;
