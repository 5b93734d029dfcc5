//! What the exporters read back from an OTLP answer: the partial success of a protobuf or JSON
//! `Export*ServiceResponse`. Request bodies and their compression are `vigil_core::codec`, shared
//! with the receivers.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use vigil_core::Signal;

use super::classify::Delivered;

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
        Signal::Profiles => ExportProfilesServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_profiles, p.error_message)),
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
        Signal::Profiles => "rejectedProfiles",
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, ArrayValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric::Data, number_data_point, Gauge, Metric, NumberDataPoint, ScopeMetrics,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};
    use opentelemetry_proto::tonic::{
        logs::v1::ResourceLogs, metrics::v1::ResourceMetrics, trace::v1::ResourceSpans,
    };
    use vigil_core::attrs::{kv, kv_i64, kv_str};
    use vigil_core::codec::encode::{
        decode_json_request, decode_proto_request, json_request, proto_request,
    };
    use vigil_core::Telemetry;

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
}
