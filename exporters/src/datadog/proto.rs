//! The Datadog intakes' protobuf messages: the trace agent's (`datadog/trace/agent_payload.proto`,
//! `tracer_payload.proto`, `span.proto` in DataDog/datadog-agent) and the metrics intake's
//! sketches (DataDog/agent-payload), with their field numbers. Written by hand: only these few
//! messages (and only the fields vigil sets) are needed, and no maintained crate publishes them
//! without bringing a second prost and a large workspace into the build.

use std::collections::HashMap;

/// What the trace agent posts to `/api/v0.2/traces`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentPayload {
    #[prost(string, tag = "1")]
    pub host_name: String,
    #[prost(string, tag = "2")]
    pub env: String,
    #[prost(message, repeated, tag = "5")]
    pub tracer_payloads: Vec<TracerPayload>,
    #[prost(map = "string, string", tag = "6")]
    pub tags: HashMap<String, String>,
    #[prost(string, tag = "7")]
    pub agent_version: String,
    #[prost(double, tag = "8")]
    pub target_tps: f64,
    #[prost(double, tag = "9")]
    pub error_tps: f64,
    #[prost(bool, tag = "10")]
    pub rare_sampler_enabled: bool,
}

/// The traces of one tracer (here: of one OTLP resource).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TracerPayload {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(string, tag = "2")]
    pub language_name: String,
    #[prost(string, tag = "3")]
    pub language_version: String,
    #[prost(string, tag = "4")]
    pub tracer_version: String,
    #[prost(string, tag = "5")]
    pub runtime_id: String,
    #[prost(message, repeated, tag = "6")]
    pub chunks: Vec<TraceChunk>,
    #[prost(map = "string, string", tag = "7")]
    pub tags: HashMap<String, String>,
    #[prost(string, tag = "8")]
    pub env: String,
    #[prost(string, tag = "9")]
    pub hostname: String,
    #[prost(string, tag = "10")]
    pub app_version: String,
}

/// The spans of one trace, with its sampling priority.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TraceChunk {
    #[prost(int32, tag = "1")]
    pub priority: i32,
    #[prost(string, tag = "2")]
    pub origin: String,
    #[prost(message, repeated, tag = "3")]
    pub spans: Vec<Span>,
    #[prost(map = "string, string", tag = "4")]
    pub tags: HashMap<String, String>,
    #[prost(bool, tag = "5")]
    pub dropped_trace: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Span {
    #[prost(string, tag = "1")]
    pub service: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub resource: String,
    #[prost(uint64, tag = "4")]
    pub trace_id: u64,
    #[prost(uint64, tag = "5")]
    pub span_id: u64,
    #[prost(uint64, tag = "6")]
    pub parent_id: u64,
    /// Nanoseconds since the Unix epoch.
    #[prost(int64, tag = "7")]
    pub start: i64,
    #[prost(int64, tag = "8")]
    pub duration: i64,
    #[prost(int32, tag = "9")]
    pub error: i32,
    #[prost(map = "string, string", tag = "10")]
    pub meta: HashMap<String, String>,
    #[prost(map = "string, double", tag = "11")]
    pub metrics: HashMap<String, f64>,
    #[prost(string, tag = "12")]
    pub r#type: String,
}

/// What the metrics intake takes at `/api/beta/sketches` (agent-payload's
/// `proto/metrics/agent_payload.proto`): distributions as DDSketches.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SketchPayload {
    #[prost(message, repeated, tag = "1")]
    pub sketches: Vec<Sketch>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sketch {
    #[prost(string, tag = "1")]
    pub metric: String,
    #[prost(string, tag = "2")]
    pub host: String,
    #[prost(string, repeated, tag = "4")]
    pub tags: Vec<String>,
    #[prost(message, repeated, tag = "7")]
    pub dogsketches: Vec<Dogsketch>,
}

/// One sketch point: its statistics and its bins (`k` keys, `n` counts, sorted by key).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dogsketch {
    /// Seconds since the Unix epoch.
    #[prost(int64, tag = "1")]
    pub ts: i64,
    #[prost(int64, tag = "2")]
    pub cnt: i64,
    #[prost(double, tag = "3")]
    pub min: f64,
    #[prost(double, tag = "4")]
    pub max: f64,
    #[prost(double, tag = "5")]
    pub avg: f64,
    #[prost(double, tag = "6")]
    pub sum: f64,
    #[prost(sint32, repeated, tag = "7")]
    pub k: Vec<i32>,
    #[prost(uint32, repeated, tag = "8")]
    pub n: Vec<u32>,
}
