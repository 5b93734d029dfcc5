//! The Prometheus remote-write messages, shared with the exporter: see `vigil_core::telemetry::prompb`.

pub use vigil_core::telemetry::prompb::*;
