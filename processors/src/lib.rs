//! Processors and connectors, one module per component, named as in config.

use std::sync::Arc;
use vigil_core::factory::{DynConnectorFactory, DynProcessorFactory};

pub mod anomaly;
pub mod attributes;
pub mod batch;
pub mod correlation;
pub mod count;
pub mod cumulativetodelta;
pub mod dedup;
pub mod deltatocumulative;
pub mod deltatorate;
pub mod drain;
pub mod elasticapm;
pub mod exceptions;
pub mod failover;
pub mod filter;
pub mod forward;
pub mod groupbyattrs;
pub mod groupbytrace;
pub mod interval;
pub mod k8sattributes;
pub mod logdedup;
pub mod logpattern;
pub mod memory_limiter;
pub mod metricsgeneration;
pub mod metricstarttime;
pub mod metricstransform;
pub mod otlpjson;
mod points;
pub mod probabilistic_sampler;
pub mod redaction;
pub mod remotetap;
pub mod resource;
pub mod resourcedetection;
pub mod roundrobin;
pub mod routing;
pub mod servicegraph;
pub mod span;
pub mod spanmetrics;
pub mod sumologic;
pub mod tail_sampling;
#[cfg(test)]
mod testdata;
pub mod transform;

/// Every processor type this crate provides.
pub fn processor_factories() -> Vec<Arc<dyn DynProcessorFactory>> {
    vec![
        batch::factory(),
        memory_limiter::factory(),
        attributes::factory(),
        resource::factory(),
        sumologic::factory(),
        resourcedetection::factory(),
        k8sattributes::factory(),
        filter::factory(),
        transform::factory(),
        logpattern::factory(),
        dedup::factory(),
        logdedup::factory(),
        drain::factory(),
        correlation::factory(),
        cumulativetodelta::factory(),
        tail_sampling::factory(),
        groupbyattrs::factory(),
        redaction::factory(),
        probabilistic_sampler::factory(),
        groupbytrace::factory(),
        remotetap::factory(),
        metricstransform::factory(),
        deltatocumulative::factory(),
        deltatorate::factory(),
        interval::factory(),
        metricsgeneration::factory(),
        metricstarttime::factory(),
        span::factory(),
        elasticapm::processor_factory(),
    ]
}

/// Every connector type this crate provides.
pub fn connector_factories() -> Vec<Arc<dyn DynConnectorFactory>> {
    vec![
        forward::factory(),
        anomaly::factory(),
        servicegraph::factory(),
        routing::factory(),
        otlpjson::factory(),
        spanmetrics::factory(),
        count::factory(),
        roundrobin::factory(),
        exceptions::factory(),
        failover::factory(),
        elasticapm::connector_factory(),
    ]
}
