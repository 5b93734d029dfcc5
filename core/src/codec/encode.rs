//! OTLP request bodies built straight from a `Telemetry` batch, without copying it: protobuf
//! `Export*ServiceRequest` bytes and compact OTLP/JSON, and the way back, so that the exporters,
//! the durable sending queue and the tests speak exactly the same bytes.

use crate::{Signal, Telemetry};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::{
    logs::v1::ResourceLogs, metrics::v1::ResourceMetrics, profiles::v1development::ProfilesData,
    trace::v1::ResourceSpans,
};
use prost::Message;
use serde::Serialize;

/// Encodes a batch as the protobuf `Export{Trace,Metrics,Logs}ServiceRequest` of its signal. The request
/// message is a single repeated field 1, so the resource entries are written one by one from borrowed
/// data instead of being moved into a request struct.
pub fn proto_request(data: &Telemetry) -> Vec<u8> {
    fn encode_all<M: Message>(items: &[M]) -> Vec<u8> {
        let len: usize = items
            .iter()
            .map(|m| prost::encoding::message::encoded_len(1, m))
            .sum();
        let mut buf = Vec::with_capacity(len);
        for m in items {
            prost::encoding::message::encode(1, m, &mut buf);
        }
        buf
    }
    match data {
        Telemetry::Traces(rs) => encode_all(rs),
        Telemetry::Metrics(rm) => encode_all(rm),
        Telemetry::Logs(rl) => encode_all(rl),
        // `ProfilesData` and `ExportProfilesServiceRequest` are the same message on the wire
        // (resource profiles in field 1, the dictionary in field 2).
        Telemetry::Profiles(p) => p.encode_to_vec(),
    }
}

/// Decodes protobuf request bytes back into a batch of `signal`.
pub fn decode_proto_request(signal: Signal, body: &[u8]) -> Result<Telemetry, prost::DecodeError> {
    Ok(match signal {
        Signal::Traces => {
            Telemetry::Traces(ExportTraceServiceRequest::decode(body)?.resource_spans)
        }
        Signal::Metrics => {
            Telemetry::Metrics(ExportMetricsServiceRequest::decode(body)?.resource_metrics)
        }
        Signal::Logs => Telemetry::Logs(ExportLogsServiceRequest::decode(body)?.resource_logs),
        Signal::Profiles => Telemetry::Profiles(ProfilesData::decode(body)?),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TracesJson<'a> {
    resource_spans: &'a [ResourceSpans],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetricsJson<'a> {
    resource_metrics: &'a [ResourceMetrics],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogsJson<'a> {
    resource_logs: &'a [ResourceLogs],
}

/// Encodes a batch as one OTLP/JSON request object (hex ids, lowerCamelCase keys, 64-bit integers as
/// strings), without nulls or empty lists: those are proto3 defaults, so leaving them out keeps the
/// meaning and makes lines much shorter.
pub fn json_request(data: &Telemetry) -> Result<Vec<u8>, serde_json::Error> {
    let mut value = match data {
        Telemetry::Traces(rs) => serde_json::to_value(TracesJson { resource_spans: rs })?,
        Telemetry::Metrics(rm) => serde_json::to_value(MetricsJson {
            resource_metrics: rm,
        })?,
        Telemetry::Logs(rl) => serde_json::to_value(LogsJson { resource_logs: rl })?,
        Telemetry::Profiles(p) => {
            let mut v = serde_json::to_value(p)?;
            super::profiles_json::to_otlp_json(&mut v);
            v
        }
    };
    prune(&mut value);
    serde_json::to_vec(&value)
}

/// Members whose empty list must stay: their messages (`ArrayValue`, `KeyValueList`, `EntityRef`)
/// are decoded by `opentelemetry-proto` without serde defaults, so a missing list is an error there.
const KEEP_EMPTY: [&str; 3] = ["values", "idKeys", "descriptionKeys"];

/// Drops `null` and `[]` members, depth first. Empty strings, zeros and `false` stay: inside a oneof
/// (`stringValue`, `asDouble`, `boolValue`) they are the value, not a default.
fn prune(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.retain(|key, child| {
                prune(child);
                let empty_list = child.as_array().is_some_and(|a| a.is_empty());
                !(child.is_null() || empty_list && !KEEP_EMPTY.contains(&key.as_str()))
            });
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(prune),
        _ => {}
    }
}

/// Decodes one OTLP/JSON request object into a batch of `signal`.
pub fn decode_json_request(signal: Signal, body: &[u8]) -> Result<Telemetry, serde_json::Error> {
    Ok(match signal {
        Signal::Traces => Telemetry::Traces(
            serde_json::from_slice::<ExportTraceServiceRequest>(body)?.resource_spans,
        ),
        Signal::Metrics => Telemetry::Metrics(
            serde_json::from_slice::<ExportMetricsServiceRequest>(body)?.resource_metrics,
        ),
        Signal::Logs => {
            Telemetry::Logs(serde_json::from_slice::<ExportLogsServiceRequest>(body)?.resource_logs)
        }
        Signal::Profiles => {
            // The generated serde needs the defaults that `prune` left out (`profiles_json`).
            let mut v = serde_json::from_slice::<serde_json::Value>(body)?;
            super::profiles_json::fill_defaults(&mut v);
            let req = serde_json::from_value::<ExportProfilesServiceRequest>(v)?;
            Telemetry::Profiles(ProfilesData {
                resource_profiles: req.resource_profiles,
                dictionary: req.dictionary,
            })
        }
    })
}
