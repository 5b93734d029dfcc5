//! Turns an OTLP request body into the `opentelemetry-proto` request types: decompression (gzip,
//! deflate, zstd) under a size limit, then protobuf straight into the prost types or OTLP/JSON through
//! serde. Free of I/O so that the fuzz targets in `fuzz/` drive exactly the code the receivers run.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::{
    logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse},
    metrics::v1::{
        ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    },
    profiles::v1development::{
        ExportProfilesPartialSuccess, ExportProfilesServiceRequest, ExportProfilesServiceResponse,
    },
    trace::v1::{ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse},
};
use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
use opentelemetry_proto::tonic::profiles::v1development::ProfilesData;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;

pub use super::compression::{decompress, Compression};
use crate::telemetry::{data_point_count, log_record_count, sample_count, span_count};
use crate::{Signal, Telemetry};

/// How the body is encoded, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`
    Protobuf,
    /// `application/json`
    Json,
}

impl Encoding {
    /// Reads a `Content-Type` value; parameters such as `; charset=utf-8` are ignored, and the media
    /// type is matched case-insensitively, as MIME requires.
    pub fn from_content_type(value: &str) -> Option<Encoding> {
        let media = value.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/x-protobuf") {
            Some(Encoding::Protobuf)
        } else if media.eq_ignore_ascii_case("application/json") {
            Some(Encoding::Json)
        } else {
            None
        }
    }

    /// The `Content-Type` to answer with.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Why a body could not be turned into a request. Each variant maps onto one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The body, as sent or once decompressed, is larger than the limit (HTTP 413).
    TooLarge { limit: usize },
    /// The body would take more than `limit` bytes of memory once decoded (HTTP 413, gRPC
    /// `RESOURCE_EXHAUSTED`); see [`super::decoded`].
    DecodedTooLarge { limit: usize },
    /// A `Content-Encoding` we do not speak (HTTP 415).
    UnsupportedCompression(String),
    /// The compressed stream is corrupt or truncated (HTTP 400).
    Decompress {
        compression: &'static str,
        reason: String,
    },
    /// The payload is not a valid OTLP request (HTTP 400, gRPC `INVALID_ARGUMENT`).
    Malformed {
        encoding: Encoding,
        message_type: &'static str,
        reason: String,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLarge { limit } => {
                write!(f, "request body is larger than the limit of {limit} bytes")
            }
            DecodeError::DecodedTooLarge { limit } => write!(
                f,
                "request would take more than {} MiB of memory once decoded (max_decoded_size_mib)",
                limit / (1024 * 1024)
            ),
            DecodeError::UnsupportedCompression(v) => write!(
                f,
                "unsupported Content-Encoding {v:?}; supported: gzip, zstd, deflate, identity"
            ),
            DecodeError::Decompress {
                compression,
                reason,
            } => write!(f, "failed to decompress {compression} body: {reason}"),
            DecodeError::Malformed {
                encoding,
                message_type,
                reason,
            } => {
                let enc = match encoding {
                    Encoding::Protobuf => "protobuf",
                    Encoding::Json => "JSON",
                };
                write!(f, "failed to decode {enc} {message_type}: {reason}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// One of the four OTLP export requests, with what the receiver needs to know about it.
pub trait ExportRequest:
    prost::Message + Default + DeserializeOwned + Send + Sync + 'static
{
    /// The answer type of the export call.
    type Response: prost::Message + Default + Send + Sync + 'static;
    const SIGNAL: Signal;
    /// The protobuf message name, for error messages.
    const MESSAGE_TYPE: &'static str;
    /// The fully qualified gRPC service name.
    const GRPC_SERVICE: &'static str;
    /// The gRPC method path, `/<service>/Export`.
    const GRPC_PATH: &'static str;
    /// The OTLP/JSON key of the rejected count in a partial success (`rejectedSpans`, …).
    const JSON_REJECTED_KEY: &'static str;

    /// Spans, data points or log records, counted as otelcol counts them.
    fn item_count(&self) -> usize;
    /// Moves the resource-level data out, without copying it.
    fn into_telemetry(self) -> Telemetry;
    /// The answer: full success, or a partial success with what was rejected and why.
    fn response(partial: Option<(i64, String)>) -> Self::Response;
    /// A check after a successful JSON decode, for what serde lets through silently.
    fn check_json(&self, _body: &[u8]) -> Result<(), String> {
        Ok(())
    }
    /// A rewrite of the parsed JSON before serde reads it, for request types whose generated serde
    /// does not follow proto3 JSON on its own; `false` when the type needs none.
    fn prepare_json(_value: &mut Value) -> bool {
        false
    }
}

impl ExportRequest for ExportTraceServiceRequest {
    type Response = ExportTraceServiceResponse;
    const SIGNAL: Signal = Signal::Traces;
    const MESSAGE_TYPE: &'static str = "ExportTraceServiceRequest";
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const GRPC_PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    const JSON_REJECTED_KEY: &'static str = "rejectedSpans";

    fn item_count(&self) -> usize {
        span_count(&self.resource_spans)
    }
    fn into_telemetry(self) -> Telemetry {
        Telemetry::Traces(self.resource_spans)
    }
    fn response(partial: Option<(i64, String)>) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: partial.map(|(rejected_spans, error_message)| {
                ExportTracePartialSuccess {
                    rejected_spans,
                    error_message,
                }
            }),
        }
    }
}

impl ExportRequest for ExportMetricsServiceRequest {
    type Response = ExportMetricsServiceResponse;
    const SIGNAL: Signal = Signal::Metrics;
    const MESSAGE_TYPE: &'static str = "ExportMetricsServiceRequest";
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const GRPC_PATH: &'static str =
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    const JSON_REJECTED_KEY: &'static str = "rejectedDataPoints";

    fn item_count(&self) -> usize {
        data_point_count(&self.resource_metrics)
    }
    fn into_telemetry(self) -> Telemetry {
        Telemetry::Metrics(self.resource_metrics)
    }
    fn check_json(&self, body: &[u8]) -> Result<(), String> {
        check_metric_data(self, body)
    }
    fn response(partial: Option<(i64, String)>) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: partial.map(|(rejected_data_points, error_message)| {
                ExportMetricsPartialSuccess {
                    rejected_data_points,
                    error_message,
                }
            }),
        }
    }
}

impl ExportRequest for ExportLogsServiceRequest {
    type Response = ExportLogsServiceResponse;
    const SIGNAL: Signal = Signal::Logs;
    const MESSAGE_TYPE: &'static str = "ExportLogsServiceRequest";
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const GRPC_PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    const JSON_REJECTED_KEY: &'static str = "rejectedLogRecords";

    fn item_count(&self) -> usize {
        log_record_count(&self.resource_logs)
    }
    fn into_telemetry(self) -> Telemetry {
        Telemetry::Logs(self.resource_logs)
    }
    fn response(partial: Option<(i64, String)>) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: partial.map(|(rejected_log_records, error_message)| {
                ExportLogsPartialSuccess {
                    rejected_log_records,
                    error_message,
                }
            }),
        }
    }
}

impl ExportRequest for ExportProfilesServiceRequest {
    type Response = ExportProfilesServiceResponse;
    const SIGNAL: Signal = Signal::Profiles;
    const MESSAGE_TYPE: &'static str = "ExportProfilesServiceRequest";
    const GRPC_SERVICE: &'static str =
        "opentelemetry.proto.collector.profiles.v1development.ProfilesService";
    const GRPC_PATH: &'static str =
        "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export";
    const JSON_REJECTED_KEY: &'static str = "rejectedProfiles";

    fn item_count(&self) -> usize {
        sample_count(&self.resource_profiles)
    }
    fn into_telemetry(self) -> Telemetry {
        Telemetry::Profiles(ProfilesData {
            resource_profiles: self.resource_profiles,
            dictionary: self.dictionary,
        })
    }
    fn prepare_json(value: &mut Value) -> bool {
        super::profiles_json::fill_defaults(value);
        true
    }
    fn response(partial: Option<(i64, String)>) -> Self::Response {
        ExportProfilesServiceResponse {
            partial_success: partial.map(|(rejected_profiles, error_message)| {
                ExportProfilesPartialSuccess {
                    rejected_profiles,
                    error_message,
                }
            }),
        }
    }
}

/// Decodes a protobuf body straight into the prost request type.
pub fn decode_protobuf<R: ExportRequest>(body: Bytes) -> Result<R, DecodeError> {
    R::decode(body).map_err(|e| DecodeError::Malformed {
        encoding: Encoding::Protobuf,
        message_type: R::MESSAGE_TYPE,
        reason: e.to_string(),
    })
}

/// Decodes an OTLP/JSON body: hex ids, integer enums, 64-bit integers as strings or numbers,
/// lowerCamelCase keys, unknown keys ignored. Enum *names* (`"kind": "SPAN_KIND_SERVER"`), which
/// otelcol accepts but `opentelemetry-proto`'s serde does not, are rewritten to their numbers through
/// a `serde_json::Value` pass; that pass only runs when the body holds such a name, so conforming
/// bodies are parsed once.
pub fn decode_json<R: ExportRequest>(body: &[u8]) -> Result<R, DecodeError> {
    let malformed = |reason: String| DecodeError::Malformed {
        encoding: Encoding::Json,
        message_type: R::MESSAGE_TYPE,
        reason,
    };
    let req = if has_enum_name(body) || R::prepare_json(&mut Value::Null) {
        let mut value =
            serde_json::from_slice::<Value>(body).map_err(|e| malformed(e.to_string()))?;
        normalize_enum_names(&mut value);
        R::prepare_json(&mut value);
        serde_json::from_value::<R>(value).map_err(|e| malformed(e.to_string()))?
    } else {
        serde_json::from_slice::<R>(body).map_err(|e| malformed(e.to_string()))?
    };
    req.check_json(body).map_err(malformed)?;
    Ok(req)
}

/// The enum-name prefixes of the four OTLP enums, each as it starts a JSON string.
const ENUM_NAME_PREFIXES: [&[u8]; 4] = [
    b"\"SPAN_KIND_",
    b"\"STATUS_CODE_",
    b"\"SEVERITY_NUMBER_",
    b"\"AGGREGATION_TEMPORALITY_",
];

/// Whether the body may hold an enum name. A false positive (an attribute value that happens to read
/// `SPAN_KIND_…`) only costs the slower path, never correctness.
fn has_enum_name(body: &[u8]) -> bool {
    body.iter().enumerate().any(|(i, &b)| {
        b == b'"'
            && ENUM_NAME_PREFIXES
                .iter()
                .any(|p| body.get(i..).is_some_and(|rest| rest.starts_with(p)))
    })
}

/// `opentelemetry-proto` flattens each oneof (a metric's data, a data point's or exemplar's value)
/// into an `Option`, and serde turns any error inside a flattened `Option` into `None`: a `sum` with a
/// malformed field, or an `"asInt": "seven"`, would arrive as missing data instead of an error. When a
/// decoded request has such a `None`, this reads the JSON again and reports what did not decode. A
/// request with every oneof filled skips the second parse.
fn check_metric_data(req: &ExportMetricsServiceRequest, body: &[u8]) -> Result<(), String> {
    use opentelemetry_proto::tonic::metrics::v1::{
        metric::Data, ExponentialHistogram, Gauge, Histogram, Sum, Summary,
    };
    let something_missing =
        req.resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .any(|m| match &m.data {
                None => true,
                Some(Data::Gauge(Gauge { data_points }))
                | Some(Data::Sum(Sum { data_points, .. })) => data_points
                    .iter()
                    .any(|p| p.value.is_none() || p.exemplars.iter().any(|e| e.value.is_none())),
                Some(Data::Histogram(h)) => h
                    .data_points
                    .iter()
                    .flat_map(|p| &p.exemplars)
                    .any(|e| e.value.is_none()),
                Some(Data::ExponentialHistogram(h)) => h
                    .data_points
                    .iter()
                    .flat_map(|p| &p.exemplars)
                    .any(|e| e.value.is_none()),
                Some(Data::Summary(_)) => false,
            });
    if !something_missing {
        return Ok(());
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
        return Ok(());
    };
    normalize_enum_names(&mut value);
    check_number_values(&value)?;
    let list = |v: &Value, key: &str| -> Vec<Value> {
        v.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for rm in list(&value, "resourceMetrics") {
        for sm in list(&rm, "scopeMetrics") {
            for m in list(&sm, "metrics") {
                let name = m.get("name").and_then(Value::as_str).unwrap_or("");
                let checks: [(&str, DataCheck); 5] = [
                    ("gauge", |v| serde_json::from_value::<Gauge>(v).err()),
                    ("sum", |v| serde_json::from_value::<Sum>(v).err()),
                    ("histogram", |v| {
                        serde_json::from_value::<Histogram>(v).err()
                    }),
                    ("exponentialHistogram", |v| {
                        serde_json::from_value::<ExponentialHistogram>(v).err()
                    }),
                    ("summary", |v| serde_json::from_value::<Summary>(v).err()),
                ];
                for (key, check) in checks {
                    if let Some(data) = m.get(key) {
                        if let Some(e) = check(data.clone()) {
                            return Err(format!("metric {name:?}: invalid {key}: {e}"));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Decodes one metric data kind on its own, to surface the error a flattened `Option` hid.
type DataCheck = fn(Value) -> Option<serde_json::Error>;

/// Checks every `asInt` and `asDouble` in the tree as the proto3 JSON mapping reads them. Only data
/// points and exemplars have these keys.
fn check_number_values(value: &Value) -> Result<(), String> {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let ok = match key.as_str() {
                    "asInt" => match v {
                        Value::Number(n) => n.is_i64(),
                        Value::String(s) => s.parse::<i64>().is_ok(),
                        _ => false,
                    },
                    "asDouble" => match v {
                        Value::Number(_) => true,
                        Value::String(s) => matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity"),
                        _ => false,
                    },
                    _ => {
                        check_number_values(v)?;
                        true
                    }
                };
                if !ok {
                    return Err(format!("invalid {key} value {v}"));
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(check_number_values),
        _ => Ok(()),
    }
}

/// Refuses a body whose decoded form is estimated to pass `max_decoded` bytes, before decoding it.
pub fn check_decoded_size<R: ExportRequest>(
    body: &[u8],
    encoding: Encoding,
    max_decoded: usize,
) -> Result<(), DecodeError> {
    let estimate = match encoding {
        // A body too small to pass the bound whatever it holds needs no walk: the walk was a
        // tenth of the receiver's CPU on typical requests (BENCHMARKS.md, "OTLP pipeline").
        Encoding::Protobuf if super::decoded::protobuf_surely_within(body.len(), max_decoded) => {
            Ok(0)
        }
        Encoding::Protobuf => super::decoded::protobuf(R::SIGNAL, body, max_decoded),
        Encoding::Json => super::decoded::json(body, max_decoded),
    };
    estimate
        .map(|_| ())
        .map_err(|_| DecodeError::DecodedTooLarge { limit: max_decoded })
}

/// Decompresses and decodes a body in one call, as the HTTP server does: at most `limit` bytes as
/// sent and once decompressed, and at most `max_decoded` bytes of memory once decoded.
pub fn decode_body<R: ExportRequest>(
    body: Bytes,
    encoding: Encoding,
    compression: Compression,
    limit: usize,
    max_decoded: usize,
) -> Result<R, DecodeError> {
    let body = decompress(body, compression, limit)?;
    check_decoded_size::<R>(&body, encoding, max_decoded)?;
    match encoding {
        Encoding::Protobuf => decode_protobuf(body),
        Encoding::Json => decode_json(&body),
    }
}

/// Rewrites OTLP enum names to their numbers in place, wherever one of the four enum-typed keys holds
/// a known name. OTLP/JSON has no user-chosen object keys (attributes are `{"key":…,"value":…}`
/// lists), so matching on the key is unambiguous. Returns whether anything changed.
pub fn normalize_enum_names(value: &mut Value) -> bool {
    match value {
        Value::Object(map) => {
            let mut changed = false;
            for (key, v) in map.iter_mut() {
                if let Value::String(name) = v {
                    let number = match key.as_str() {
                        "kind" => SpanKind::from_str_name(name).map(|e| e as i32),
                        "code" => StatusCode::from_str_name(name).map(|e| e as i32),
                        "severityNumber" => SeverityNumber::from_str_name(name).map(|e| e as i32),
                        "aggregationTemporality" => {
                            AggregationTemporality::from_str_name(name).map(|e| e as i32)
                        }
                        _ => None,
                    };
                    if let Some(n) = number {
                        *v = Value::from(n);
                        changed = true;
                    }
                } else {
                    changed |= normalize_enum_names(v);
                }
            }
            changed
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |acc, v| normalize_enum_names(v) | acc),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use prost::Message;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn content_types_match_like_mime() {
        assert_eq!(
            Encoding::from_content_type("Application/JSON; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(
            Encoding::from_content_type("application/x-protobuf"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(Encoding::from_content_type("text/plain"), None);
        assert_eq!(Encoding::from_content_type(""), None);
    }

    #[test]
    fn json_enum_names_become_numbers() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
            "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "name":"a","kind":"SPAN_KIND_SERVER","status":{"code":"STATUS_CODE_ERROR"},
            "startTimeUnixNano":"1","endTimeUnixNano":2,"futureField":{"x":1}}]}]}]}"#;
        let req: ExportTraceServiceRequest = decode_json(body).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(span.status.as_ref().unwrap().code, StatusCode::Error as i32);
        assert_eq!((span.start_time_unix_nano, span.end_time_unix_nano), (1, 2));
        assert_eq!(span.trace_id.len(), 16);
    }

    #[test]
    fn json_unknown_enum_name_is_an_error_naming_the_value() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_NOPE"}]}]}]}"#;
        let e = decode_json::<ExportTraceServiceRequest>(body).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("failed to decode JSON ExportTraceServiceRequest: "),
            "{msg}"
        );
        assert!(msg.contains("SPAN_KIND_NOPE"), "{msg}");
    }

    #[test]
    fn log_and_metric_enum_names() {
        let logs = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
            {"severityNumber":"SEVERITY_NUMBER_WARN","body":{"stringValue":"x"}}]}]}]}"#;
        let req: ExportLogsServiceRequest = decode_json(logs).unwrap();
        assert_eq!(
            req.resource_logs[0].scope_logs[0].log_records[0].severity_number,
            SeverityNumber::Warn as i32
        );
        let metrics = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m",
            "sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","isMonotonic":true,
            "dataPoints":[{"asInt":"7","timeUnixNano":"3"}]}}]}]}]}"#;
        let req: ExportMetricsServiceRequest = decode_json(metrics).unwrap();
        assert_eq!(req.item_count(), 1);
    }

    #[test]
    fn json_bad_metric_data_is_an_error_not_a_silent_drop() {
        let body = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m",
            "gauge":{"dataPoints":[{"asInt":"seven"}]}}]}]}]}"#;
        let e = decode_json::<ExportMetricsServiceRequest>(body).unwrap_err();
        let msg = e.to_string();
        assert!(msg.ends_with("invalid asInt value \"seven\""), "{msg}");
        let body = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m",
            "sum":{"isMonotonic":"yes","dataPoints":[{"asInt":"7"}]}}]}]}]}"#;
        let msg = decode_json::<ExportMetricsServiceRequest>(body)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("metric \"m\": invalid sum: "), "{msg}");
        // A metric without data at all is valid and passes.
        let body = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m"}]}]}]}"#;
        assert!(decode_json::<ExportMetricsServiceRequest>(body).is_ok());
    }

    #[test]
    fn gzip_round_trip_and_truncation() {
        let req = ExportTraceServiceRequest::default();
        let mut raw = req.encode_to_vec();
        raw.extend_from_slice(b"\x0a\x00"); // one empty ResourceSpans
        let gz = gzip(&raw);
        let out = decompress(Bytes::from(gz.clone()), Compression::Gzip, 1024).unwrap();
        assert_eq!(&out[..], &raw[..]);
        let cut = Bytes::copy_from_slice(&gz[..gz.len() - 6]);
        let e = decompress(cut, Compression::Gzip, 1024).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("failed to decompress gzip body: "),
            "{e}"
        );
    }

    #[test]
    fn decompression_is_bounded() {
        let big = vec![b'a'; 100_000];
        let gz = gzip(&big);
        assert!(gz.len() < 1000);
        let e = decompress(Bytes::from(gz), Compression::Gzip, 50_000).unwrap_err();
        assert_eq!(e, DecodeError::TooLarge { limit: 50_000 });
        let z = zstd::encode_all(&big[..], 3).unwrap();
        let e = decompress(Bytes::from(z), Compression::Zstd, 50_000).unwrap_err();
        assert_eq!(e, DecodeError::TooLarge { limit: 50_000 });
    }

    /// A bounded, dependency-free stand-in for the fuzz targets that runs with every `cargo test`:
    /// random mutations of valid bodies go through every decoder, which must return, never panic.
    #[test]
    fn mutated_bodies_never_panic() {
        let json = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":
            "5b8efff798038103d269b633813fc60c","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1"}]}]}],
            "resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","sum":{"dataPoints":
            [{"asInt":"7"}],"aggregationTemporality":"AGGREGATION_TEMPORALITY_DELTA"}}]}]}],
            "resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":9}]}]}]}"#;
        let mut span = opentelemetry_proto::tonic::trace::v1::Span {
            name: "op".into(),
            trace_id: vec![1; 16],
            ..Default::default()
        };
        span.kind = 2;
        let pb = ExportTraceServiceRequest {
            resource_spans: vec![opentelemetry_proto::tonic::trace::v1::ResourceSpans {
                scope_spans: vec![opentelemetry_proto::tonic::trace::v1::ScopeSpans {
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec();
        let seeds: [&[u8]; 4] = [json, &pb, &gzip(json), &gzip(&pb)];
        // xorshift64*: deterministic, so a failure reproduces.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        for _ in 0..3000 {
            let seed = seeds[(next() % 4) as usize];
            let mut body = seed.to_vec();
            for _ in 0..=(next() % 4) {
                let at = (next() as usize) % body.len().max(1);
                match next() % 4 {
                    0 if !body.is_empty() => body[at] = next() as u8,
                    1 => body.insert(at.min(body.len()), next() as u8),
                    2 => body.truncate(at),
                    _ => body.extend_from_slice(seed.get(at..).unwrap_or_default()),
                }
            }
            let body = Bytes::from(body);
            for encoding in [Encoding::Protobuf, Encoding::Json] {
                for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
                    let _ = decode_body::<ExportTraceServiceRequest>(
                        body.clone(),
                        encoding,
                        compression,
                        1 << 20,
                        1 << 24,
                    );
                    let _ = decode_body::<ExportMetricsServiceRequest>(
                        body.clone(),
                        encoding,
                        compression,
                        1 << 20,
                        1 << 24,
                    );
                    let _ = decode_body::<ExportLogsServiceRequest>(
                        body.clone(),
                        encoding,
                        compression,
                        1 << 20,
                        1 << 24,
                    );
                }
            }
        }
    }

    #[test]
    fn unsupported_encoding_is_named() {
        let e = Compression::from_header(Some("br")).unwrap_err();
        assert!(e.to_string().contains("\"br\""), "{e}");
        assert_eq!(
            Compression::from_header(Some(" GZIP ")).unwrap(),
            Compression::Gzip
        );
    }
}
