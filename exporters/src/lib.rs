//! Exporters, one module per component, named as in config. Network exporters share `helper`.

use std::sync::Arc;
use vigil_core::ExporterFactory;

pub mod debug;
pub mod file;
pub mod helper;
pub mod otlp;
pub mod otlphttp;

/// Every exporter type this crate provides.
pub fn factories() -> Vec<Arc<dyn ExporterFactory>> {
    vec![
        debug::factory(),
        file::factory(),
        otlp::factory(),
        otlphttp::factory(),
    ]
}
