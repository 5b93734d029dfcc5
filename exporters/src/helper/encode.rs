//! OTLP request bodies built straight from a `Telemetry` batch, without copying it: protobuf
//! `Export*ServiceRequest` bytes and compact OTLP/JSON. Also the reverse direction exporters need
//! (partial-success answers) and request compression, so that the otlp, otlphttp and file exporters
//! speak exactly the same bytes.

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::{
    logs::v1::ResourceLogs, metrics::v1::ResourceMetrics, trace::v1::ResourceSpans,
};
use prost::Message;
use serde::{Deserialize, Deserializer, Serialize};
use std::io::Write;
use vigil_core::{Signal, Telemetry};

use super::classify::Delivered;

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
    })
}

/// Reads the `partial_success` of a protobuf `Export*ServiceResponse`. An empty or unreadable body is
/// a plain success: the data was accepted, and the answer only failed to say more.
pub fn partial_success_proto(signal: Signal, body: &[u8]) -> Delivered {
    let parsed = match signal {
        Signal::Traces => ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_spans, p.error_message)),
        Signal::Metrics => ExportMetricsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_data_points, p.error_message)),
        Signal::Logs => ExportLogsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_log_records, p.error_message)),
    };
    parsed.map_or_else(Delivered::default, |(rejected, message)| Delivered {
        rejected: rejected.max(0) as u64,
        message,
    })
}

/// Reads the `partialSuccess` of an OTLP/JSON response. Counts may be numbers or strings, as 64-bit
/// integers are in OTLP/JSON.
pub fn partial_success_json(signal: Signal, body: &[u8]) -> Delivered {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Delivered::default();
    };
    let Some(p) = v.get("partialSuccess") else {
        return Delivered::default();
    };
    let key = match signal {
        Signal::Traces => "rejectedSpans",
        Signal::Metrics => "rejectedDataPoints",
        Signal::Logs => "rejectedLogRecords",
    };
    let rejected = match p.get(key) {
        Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    };
    let message = p
        .get("errorMessage")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_string();
    Delivered { rejected, message }
}

/// Request compression, as otelcol's `compression` key spells it. An empty string means none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
}

impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "none" | "" => Ok(Compression::None),
            other => Err(serde::de::Error::custom(format!(
                "unsupported compression {other:?}: use gzip, zstd or none"
            ))),
        }
    }
}

/// Shown as the config spells it, so the reference lists `gzip`, `zstd` or `none`.
impl Serialize for Compression {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.encoding_name().unwrap_or("none"))
    }
}

impl Compression {
    /// The `Content-Encoding` / `grpc-encoding` name, or `None` when uncompressed.
    pub fn encoding_name(self) -> Option<&'static str> {
        match self {
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
            Compression::None => None,
        }
    }

    /// Compresses a whole request body. Fast levels: an agent spends its CPU budget on throughput, and
    /// the ratio gained by higher levels is small on OTLP.
    pub fn compress(self, body: Vec<u8>) -> std::io::Result<Vec<u8>> {
        match self {
            Compression::None => Ok(body),
            Compression::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 4),
                    flate2::Compression::fast(),
                );
                enc.write_all(&body)?;
                enc.finish()
            }
            Compression::Zstd => zstd::bulk::compress(&body, 1),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, ArrayValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric::Data, number_data_point, Gauge, Metric, NumberDataPoint, ScopeMetrics,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};
    use vigil_core::attrs::{kv, kv_i64, kv_str};

    /// Traces with ids, attributes of every shape and `n` spans, for round-trip tests.
    pub fn sample_traces(n: usize) -> Telemetry {
        let spans = (0..n)
            .map(|i| Span {
                trace_id: vec![0xab; 16],
                span_id: vec![i as u8 + 1; 8],
                name: format!("span-{i}"),
                kind: 2,
                start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                end_time_unix_nano: 1_700_000_000_000_000_500 + i as u64,
                attributes: vec![
                    kv_str("http.method", "GET"),
                    kv_str("empty", ""),
                    kv_i64("zero", 0),
                    kv("flag", Value::BoolValue(false)),
                    kv("ratio", Value::DoubleValue(0.0)),
                    kv(
                        "list",
                        Value::ArrayValue(ArrayValue {
                            values: vec![AnyValue {
                                value: Some(Value::IntValue(7)),
                            }],
                        }),
                    ),
                    kv("none", Value::ArrayValue(ArrayValue { values: vec![] })),
                ],
                ..Default::default()
            })
            .collect();
        Telemetry::Traces(vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "checkout")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    pub fn sample_metrics() -> Telemetry {
        Telemetry::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "cpu".into(),
                    unit: "1".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![
                            NumberDataPoint {
                                time_unix_nano: 5,
                                value: Some(number_data_point::Value::AsDouble(0.0)),
                                ..Default::default()
                            },
                            NumberDataPoint {
                                time_unix_nano: 6,
                                value: Some(number_data_point::Value::AsInt(-3)),
                                ..Default::default()
                            },
                        ],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    pub fn sample_logs() -> Telemetry {
        Telemetry::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: 9,
                    severity_number: 9,
                    severity_text: "INFO".into(),
                    body: Some(AnyValue {
                        value: Some(Value::StringValue("hello".into())),
                    }),
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    #[test]
    fn proto_matches_prost_and_round_trips() {
        let data = sample_traces(3);
        let Telemetry::Traces(rs) = &data else {
            unreachable!()
        };
        let via_struct = ExportTraceServiceRequest {
            resource_spans: rs.clone(),
        }
        .encode_to_vec();
        assert_eq!(proto_request(&data), via_struct);
        for d in [data, sample_metrics(), sample_logs()] {
            let back = decode_proto_request(d.signal(), &proto_request(&d)).unwrap();
            assert_eq!(back, d);
        }
    }

    #[test]
    fn json_is_compact_otlp_and_round_trips() {
        for d in [sample_traces(2), sample_metrics(), sample_logs()] {
            let body = json_request(&d).unwrap();
            let text = String::from_utf8(body.clone()).unwrap();
            assert!(!text.contains("null"), "{text}");
            assert!(!text.contains("\"droppedAttributesCount\":[]"), "{text}");
            let back = decode_json_request(d.signal(), &body).unwrap();
            assert_eq!(back, d, "{text}");
        }
        let text = String::from_utf8(json_request(&sample_traces(1)).unwrap()).unwrap();
        assert!(text.starts_with("{\"resourceSpans\":["), "{text}");
        assert!(
            text.contains("\"traceId\":\"abababababababababababababababab\""),
            "{text}"
        );
        assert!(
            text.contains("\"startTimeUnixNano\":\"1700000000000000000\""),
            "{text}"
        );
    }

    #[test]
    fn partial_success_both_encodings() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;
        let resp = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 3,
                error_message: "too old".into(),
            }),
        };
        let d = partial_success_proto(Signal::Traces, &resp.encode_to_vec());
        assert_eq!((d.rejected, d.message.as_str()), (3, "too old"));
        assert_eq!(
            partial_success_proto(Signal::Traces, b""),
            Delivered::default()
        );
        let d = partial_success_json(
            Signal::Logs,
            br#"{"partialSuccess":{"rejectedLogRecords":"2","errorMessage":"x"}}"#,
        );
        assert_eq!((d.rejected, d.message.as_str()), (2, "x"));
        assert_eq!(
            partial_success_json(Signal::Logs, b"{}"),
            Delivered::default()
        );
    }

    #[test]
    fn compression_round_trips() {
        let body = proto_request(&sample_traces(20));
        let gz = Compression::Gzip.compress(body.clone()).unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out).unwrap();
        assert_eq!(out, body);
        let z = Compression::Zstd.compress(body.clone()).unwrap();
        assert_eq!(zstd::decode_all(&z[..]).unwrap(), body);
        assert_eq!(Compression::None.compress(body.clone()).unwrap(), body);
    }
}
