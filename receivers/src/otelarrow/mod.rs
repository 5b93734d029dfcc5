//! `otelarrow`: otelcol-contrib's OTel-Arrow receiver under its type and keys, served by the `otlp`
//! receiver's gRPC transport. It takes standard OTLP/gRPC exactly as `otlp` does. The OTel-Arrow
//! streaming services are not built: a call to one gets gRPC `UNIMPLEMENTED` (the `otlp` router's
//! answer for any service it does not serve), which is the status otelcol's `otelarrow` exporter
//! takes as "this receiver has no Arrow" and downgrades to standard OTLP, so nothing is lost.
//!
//! The Arrow-only keys (`protocols::arrow::*`) size buffers for decoding Arrow streams, which never
//! happens here; they are accepted and validated, and bound nothing. `admission::*` is otelcol's
//! shared byte budget for requests in flight; vigil bounds the same memory per request
//! (`max_recv_msg_size_mib`, `max_decoded_size_mib`) times streams and connections
//! (`max_concurrent_streams`, `max_connections`), so the keys are accepted and documented as not
//! built rather than refused (a published config keeps loading).

use crate::otlp::config::{GrpcConfig, OtlpConfig, Protocols};
use crate::otlp::OtlpReceiver;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;
use vigil_core::factory::{DynReceiverFactory, FactoryBase, ReceiverFactory, Settings};
use vigil_core::{
    Component, ComponentId, ConfigError, Host, NextConsumers, Receiver, Signal, Stability,
};

/// The gRPC paths of OTel-Arrow's streaming services (`opentelemetry.proto.experimental.arrow.v1`),
/// which this receiver answers with `UNIMPLEMENTED`; listed for the tests and the docs.
pub const ARROW_METHODS: &[&str] = &[
    "/opentelemetry.proto.experimental.arrow.v1.ArrowTracesService/ArrowTraces",
    "/opentelemetry.proto.experimental.arrow.v1.ArrowMetricsService/ArrowMetrics",
    "/opentelemetry.proto.experimental.arrow.v1.ArrowLogsService/ArrowLogs",
    "/opentelemetry.proto.experimental.arrow.v1.ArrowStreamService/ArrowStream",
];

/// `receivers::otelarrow` as a whole.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OtelArrowConfig {
    #[serde(default)]
    pub protocols: ArrowProtocols,
    #[serde(default)]
    pub admission: AdmissionConfig,
}

/// `protocols`: gRPC is always served (otelcol's struct is not optional); there is no `http`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArrowProtocols {
    /// The `otlp` receiver's `protocols::grpc`, the same keys and defaults.
    #[serde(default)]
    pub grpc: GrpcConfig,
    #[serde(default)]
    pub arrow: ArrowConfig,
}

/// `protocols::arrow`: how otelcol sizes its Arrow decoding. Accepted; nothing here decodes Arrow.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArrowConfig {
    /// otelcol default 128.
    pub memory_limit_mib: u64,
    /// Deprecated in otelcol for `admission::request_limit_mib`, which it fills when that is unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission_limit_mib: Option<u64>,
    /// Deprecated in otelcol, no longer read there either.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiter_limit: Option<i64>,
    pub zstd: ZstdDecoderConfig,
}

impl Default for ArrowConfig {
    fn default() -> Self {
        ArrowConfig {
            memory_limit_mib: 128,
            admission_limit_mib: None,
            waiter_limit: None,
            zstd: ZstdDecoderConfig::default(),
        }
    }
}

/// `protocols::arrow::zstd`, otelcol's Zstd decoder settings for Arrow streams.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZstdDecoderConfig {
    pub memory_limit_mib: u64,
    pub max_window_size_mib: u64,
    pub concurrency: u32,
}

impl Default for ZstdDecoderConfig {
    fn default() -> Self {
        ZstdDecoderConfig {
            memory_limit_mib: 128,
            max_window_size_mib: 32,
            concurrency: 1,
        }
    }
}

/// `admission`: otelcol's byte budget for requests in flight and waiting. Accepted, not built
/// (see the module docs for what bounds the same memory here).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionConfig {
    pub request_limit_mib: u64,
    pub waiting_limit_mib: u64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            request_limit_mib: 128,
            waiting_limit_mib: 32,
        }
    }
}

impl OtelArrowConfig {
    /// The `otlp` receiver config this one runs as: its gRPC listener, no HTTP.
    pub fn otlp(&self) -> OtlpConfig {
        OtlpConfig {
            protocols: Protocols {
                grpc: Some(self.protocols.grpc.clone()),
                http: None,
            },
        }
    }
}

struct Factory;

/// The `otelarrow` receiver factory, for the registry.
pub fn factory() -> Arc<dyn DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl FactoryBase for Factory {
    type Config = OtelArrowConfig;

    fn type_name(&self) -> &'static str {
        "otelarrow"
    }

    fn validate(&self, id: &ComponentId, cfg: &OtelArrowConfig) -> Result<(), ConfigError> {
        crate::otlp::config::validate(id, &cfg.otlp())
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
        cfg: OtelArrowConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        Ok(Arc::new(OtelArrowReceiver {
            id: set.id.clone(),
            inner: OtlpReceiver::new(set, cfg.otlp(), next),
        }))
    }
}

/// The `otelarrow` receiver: the `otlp` receiver's gRPC side, started with a line saying what it
/// does with Arrow.
pub struct OtelArrowReceiver {
    id: ComponentId,
    inner: OtlpReceiver,
}

impl OtelArrowReceiver {
    /// The gRPC address bound, once started.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.local_addrs().0
    }
}

#[async_trait]
impl Component for OtelArrowReceiver {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        self.inner.start(host).await?;
        tracing::info!(
            receiver = %self.id,
            "otelarrow receiver serves standard OTLP/gRPC; OTel-Arrow streams are answered \
             UNIMPLEMENTED (not built), which makes otelarrow exporters send standard OTLP instead"
        );
        Ok(())
    }

    async fn shutdown_by(&self, deadline: Instant) -> anyhow::Result<()> {
        self.inner.shutdown_by(deadline).await
    }
}

#[cfg(test)]
mod tests;
