//! `Telemetry` is the unit that moves through a pipeline: one batch of OTLP resource-level data of a
//! single signal. The `opentelemetry-proto` types are used as they are, so that a receiver decodes
//! straight into them and an exporter encodes straight out of them, with no conversion in between.

pub mod prompb;

use opentelemetry_proto::tonic::{
    logs::v1::ResourceLogs,
    metrics::v1::metric::Data,
    metrics::v1::ResourceMetrics,
    profiles::v1development::{ProfilesData, ResourceProfiles},
    trace::v1::ResourceSpans,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The OTLP signals: the three stable ones and `profiles`, which otelcol carries only behind its
/// `service.profilesSupport` feature gate (vigil carries it always; docs/architecture.md, "Profiles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
    Profiles,
}

impl Signal {
    pub const ALL: [Signal; 4] = [
        Signal::Traces,
        Signal::Metrics,
        Signal::Logs,
        Signal::Profiles,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
            Signal::Profiles => "profiles",
        }
    }

    /// The otelcol name of the items this signal counts: `spans`, `metric_points`, `log_records`;
    /// profiles count samples, as otelcol's processors do (`pprofile.Profiles.SampleCount`).
    pub fn item_name(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "metric_points",
            Signal::Logs => "log_records",
            Signal::Profiles => "profile_samples",
        }
    }

    /// The prefix of this signal's per-item counters: otelcol records no receiver or exporter
    /// metrics for profiles (its exporterhelper says so), so vigil's own are `vigil_*`.
    pub fn metric_prefix(self) -> &'static str {
        match self {
            Signal::Profiles => "vigil",
            _ => "otelcol",
        }
    }

    pub fn parse(s: &str) -> Option<Signal> {
        match s {
            "traces" => Some(Signal::Traces),
            "metrics" => Some(Signal::Metrics),
            "logs" => Some(Signal::Logs),
            "profiles" => Some(Signal::Profiles),
            _ => None,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One batch of telemetry of one signal. Profiles keep the request's whole `ProfilesData`: its
/// `dictionary` (strings, functions, locations, stacks, attributes) is shared by every resource in
/// the batch, so it cannot be cut apart from them.
#[derive(Debug, Clone, PartialEq)]
pub enum Telemetry {
    Traces(Vec<ResourceSpans>),
    Metrics(Vec<ResourceMetrics>),
    Logs(Vec<ResourceLogs>),
    Profiles(ProfilesData),
}

impl Telemetry {
    pub fn signal(&self) -> Signal {
        match self {
            Telemetry::Traces(_) => Signal::Traces,
            Telemetry::Metrics(_) => Signal::Metrics,
            Telemetry::Logs(_) => Signal::Logs,
            Telemetry::Profiles(_) => Signal::Profiles,
        }
    }

    /// An empty batch of the given signal.
    pub fn empty(signal: Signal) -> Telemetry {
        match signal {
            Signal::Traces => Telemetry::Traces(Vec::new()),
            Signal::Metrics => Telemetry::Metrics(Vec::new()),
            Signal::Logs => Telemetry::Logs(Vec::new()),
            Signal::Profiles => Telemetry::Profiles(ProfilesData::default()),
        }
    }

    /// Spans, metric data points, log records or profile samples, counted as otelcol counts them.
    pub fn item_count(&self) -> usize {
        match self {
            Telemetry::Traces(rs) => span_count(rs),
            Telemetry::Metrics(rm) => data_point_count(rm),
            Telemetry::Logs(rl) => log_record_count(rl),
            Telemetry::Profiles(p) => sample_count(&p.resource_profiles),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.item_count() == 0
    }
}

pub fn span_count(rs: &[ResourceSpans]) -> usize {
    rs.iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

/// Samples in all profiles, as otelcol's `pprofile.Profiles.SampleCount` counts them.
pub fn sample_count(rp: &[ResourceProfiles]) -> usize {
    rp.iter()
        .flat_map(|r| &r.scope_profiles)
        .flat_map(|s| &s.profiles)
        .map(|p| p.samples.len())
        .sum()
}

pub fn log_record_count(rl: &[ResourceLogs]) -> usize {
    rl.iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}

pub fn data_point_count(rm: &[ResourceMetrics]) -> usize {
    rm.iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| metric_point_count(m.data.as_ref()))
        .sum()
}

/// Data points in one metric; a metric with no data counts as zero.
pub fn metric_point_count(data: Option<&Data>) -> usize {
    match data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}
