//! Receivers, one module per component, named as in config.

pub mod awscontainerinsight;
pub mod awsecscontainermetrics;
pub mod dockerstats;
pub mod filelog;
pub mod fluentforward;
pub mod hostmetrics;
pub mod httpcheck;
pub mod jaeger;
pub mod journald;
pub mod k8scluster;
pub mod k8sevents;
pub mod k8sobjects;
pub mod kafka;
pub mod kafkametrics;
pub mod kubeletstats;
mod listen;
pub mod nginx;
pub mod nop;
pub mod otelarrow;
pub mod otlp;
pub mod postgresql;
pub mod prometheus;
pub mod prometheusremotewrite;
pub mod redis;
pub mod scrape;
pub mod splunkhec;
pub mod stanza;
pub mod statsd;
pub mod syslog;
pub mod tcplog;
#[cfg(test)]
mod test_servers;
pub mod udplog;
pub mod zipkin;

/// The listener loop and server TLS live in `vigil_core::net`, shared with the exporters and the
/// agent's extensions; re-exported under their old paths.
pub use vigil_core::net::{serve, tls};

use std::sync::Arc;
use vigil_core::factory::DynReceiverFactory;

/// Every receiver type this crate provides.
pub fn factories() -> Vec<Arc<dyn DynReceiverFactory>> {
    vec![
        otlp::factory(),
        hostmetrics::factory(),
        prometheus::factory(),
        prometheusremotewrite::factory(),
        filelog::factory(),
        syslog::factory(),
        jaeger::factory(),
        zipkin::factory(),
        kafka::factory(),
        kafkametrics::factory(),
        dockerstats::factory(),
        kubeletstats::factory(),
        k8sobjects::factory(),
        k8sevents::factory(),
        k8scluster::factory(),
        nop::factory(),
        journald::factory(),
        httpcheck::factory(),
        fluentforward::factory(),
        statsd::factory(),
        postgresql::factory(),
        redis::factory(),
        nginx::factory(),
        awsecscontainermetrics::factory(),
        awscontainerinsight::factory(),
        otelarrow::factory(),
        tcplog::factory(),
        udplog::factory(),
        splunkhec::factory(),
    ]
}
