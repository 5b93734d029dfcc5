//! The centre of vigil: the telemetry that flows, the `Consumer` chain it flows through, the component
//! traits and factories every receiver, processor, exporter, connector and extension implements, the
//! shared config helpers, and the `Storage` trait that durable components write through.
//!
//! Nothing here knows a concrete component; `agent` wires them together through one registry.

pub mod ack;
pub mod attrs;
pub mod codec;
pub mod component;
pub mod config;
pub mod consumer;
pub mod factory;
pub mod kafka;
pub mod net;
pub mod obs;
pub mod splunkhec;
pub mod storage;
pub mod task;
pub mod telemetry;
pub mod testing;
pub mod time;

pub use component::{
    ClientAuth, Component, ComponentId, ComponentKind, Connector, Exporter, Extension, Host,
    Processor, Receiver, ServerAuth, ServiceKey,
};
pub use config::ConfigError;
pub use consumer::{ClientMetadata, ConsumeError, Consumer, FanOut, NextConsumers};
pub use factory::{Settings, Stability};
pub use obs::{ConnectorObs, ExporterObs, ProcessorObs, ReceiverObs};
pub use storage::{Storage, StorageError};
pub use task::{lock, Tasks};
pub use telemetry::{Signal, Telemetry};

/// Re-exported so that every crate names the OTLP types through one path and one version.
pub use opentelemetry_proto::tonic as otlp;
