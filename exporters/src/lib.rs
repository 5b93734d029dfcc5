//! Exporters, one module per component, named as in config. Network exporters share `helper`.

use std::sync::Arc;
use vigil_core::factory::DynExporterFactory;

pub mod alertmanager;
pub mod awscloudwatchlogs;
pub mod awsemf;
pub mod awss3;
pub mod awsxray;
pub mod coralogix;
pub mod datadog;
pub mod debug;
pub mod elasticsearch;
pub mod file;
pub mod helper;
pub mod kafka;
pub mod loadbalancing;
pub mod logging;
pub mod nop;
pub mod opensearch;
pub mod otelarrow;
pub mod otlp;
pub mod otlphttp;
pub mod prometheus;
pub mod prometheusremotewrite;
pub mod signalfx;
pub mod splunkhec;
pub mod sumologic;
pub mod webhook;

/// Every exporter type this crate provides.
pub fn factories() -> Vec<Arc<dyn DynExporterFactory>> {
    vec![
        debug::factory(),
        file::factory(),
        otlp::factory(),
        otlphttp::factory(),
        prometheus::factory(),
        prometheusremotewrite::factory(),
        alertmanager::factory(),
        webhook::factory(),
        loadbalancing::factory(),
        awss3::factory(),
        awsemf::factory(),
        awscloudwatchlogs::factory(),
        awsxray::factory(),
        coralogix::factory(),
        kafka::factory(),
        nop::factory(),
        logging::factory(),
        signalfx::factory(),
        splunkhec::factory(),
        sumologic::factory(),
        datadog::factory(),
        elasticsearch::factory(),
        opensearch::factory(),
        otelarrow::factory(),
    ]
}
