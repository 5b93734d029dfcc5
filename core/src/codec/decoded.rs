//! What a request becomes in memory once decoded, estimated from its bytes before any of it is
//! decoded. A protobuf body is small on the wire and large in memory: an empty `Span` is 2 bytes
//! on the wire and a struct of a few hundred bytes once decoded, so a 20 MiB body of empty spans
//! decodes to gigabytes, before the pipeline (and its `memory_limiter`) sees any of it. The estimate
//! walks the OTLP wire format (or the OTLP/JSON text) with the schema of every message type, adds
//! the size of the Rust struct each message becomes and the length of every string and byte field,
//! and stops as soon as the sum passes the limit, so refusing a request costs one pass over its
//! bytes and no allocation.
//!
//! The estimate counts what prost allocates for each item, not the slack of a growing `Vec` (up to
//! twice the items), so actual memory may be up to about twice the estimate.

use crate::Signal;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, summary_data_point::ValueAtQuantile, Exemplar,
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::profiles::v1development as pp;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use std::mem::size_of;

/// The default bound on one request's decoded size, for both transports: 128 MiB. A legitimate
/// request decodes to about 2 to 15 times its protobuf size (small attributes inflate most), so the
/// 4 MiB gRPC message limit stays well inside it, and so does a typical OTLP/HTTP body; a body of
/// empty messages (about 130 times) does not.
pub const DEFAULT_MAX_DECODED_MIB: u64 = 128;

/// What a string or byte field costs beyond its bytes: the `String` or `Vec` header, counted for
/// every occurrence because repeated strings (`EntityRef`) each get one.
const HEADER: usize = size_of::<String>();
/// What a scalar field costs. Singular ones sit inside their struct already, which this counts
/// again; repeated ones (bucket counts) take 8 bytes each in memory whatever their wire size.
const SCALAR: usize = 8;
/// How deep the walk follows nested messages. prost refuses nesting beyond 100, so deeper input
/// fails to decode anyway; the walk stops descending and counts the bytes as they are.
const MAX_DEPTH: u32 = 100;

/// Defines [`Msg`] and [`ALL_MSGS`] from one list, so that the walk's bound
/// ([`max_per_wire_byte`]) cannot miss a message type added later.
macro_rules! messages {
    ($($m:ident),+ $(,)?) => {
        /// The message types of the three export requests, for the walk.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Msg {
            $($m),+
        }

        /// Every message type, for [`max_per_wire_byte`].
        const ALL_MSGS: &[Msg] = &[$(Msg::$m),+];
    };
}

messages! {
    TraceRequest,
    ResourceSpans,
    ScopeSpans,
    Span,
    Event,
    Link,
    Status,
    MetricsRequest,
    ResourceMetrics,
    ScopeMetrics,
    Metric,
    Gauge,
    Sum,
    Histogram,
    ExpHistogram,
    Summary,
    NumberPoint,
    HistogramPoint,
    ExpHistogramPoint,
    Buckets,
    SummaryPoint,
    Quantile,
    Exemplar,
    LogsRequest,
    ResourceLogs,
    ScopeLogs,
    LogRecord,
    ProfilesRequest,
    ResourceProfiles,
    ScopeProfiles,
    Profile,
    ValueType,
    Sample,
    Dictionary,
    Mapping,
    Location,
    Line,
    Function,
    ProfileLink,
    Stack,
    AttributeAndUnit,
    Resource,
    Scope,
    EntityRef,
    KeyValue,
    AnyValue,
    ArrayValue,
    KvList,
}

impl Msg {
    /// The size of the struct the message decodes into.
    fn size(self) -> usize {
        match self {
            Msg::TraceRequest | Msg::MetricsRequest | Msg::LogsRequest => 0,
            Msg::ProfilesRequest => 0,
            Msg::ResourceProfiles => size_of::<pp::ResourceProfiles>(),
            Msg::ScopeProfiles => size_of::<pp::ScopeProfiles>(),
            Msg::Profile => size_of::<pp::Profile>(),
            Msg::ValueType => size_of::<pp::ValueType>(),
            Msg::Sample => size_of::<pp::Sample>(),
            Msg::Dictionary => size_of::<pp::ProfilesDictionary>(),
            Msg::Mapping => size_of::<pp::Mapping>(),
            Msg::Location => size_of::<pp::Location>(),
            Msg::Line => size_of::<pp::Line>(),
            Msg::Function => size_of::<pp::Function>(),
            Msg::ProfileLink => size_of::<pp::Link>(),
            Msg::Stack => size_of::<pp::Stack>(),
            Msg::AttributeAndUnit => size_of::<pp::KeyValueAndUnit>(),
            Msg::ResourceSpans => size_of::<ResourceSpans>(),
            Msg::ScopeSpans => size_of::<ScopeSpans>(),
            Msg::Span => size_of::<Span>(),
            Msg::Event => size_of::<span::Event>(),
            Msg::Link => size_of::<span::Link>(),
            Msg::Status => size_of::<Status>(),
            Msg::ResourceMetrics => size_of::<ResourceMetrics>(),
            Msg::ScopeMetrics => size_of::<ScopeMetrics>(),
            Msg::Metric => size_of::<Metric>(),
            Msg::Gauge => size_of::<Gauge>(),
            Msg::Sum => size_of::<Sum>(),
            Msg::Histogram => size_of::<Histogram>(),
            Msg::ExpHistogram => size_of::<ExponentialHistogram>(),
            Msg::Summary => size_of::<Summary>(),
            Msg::NumberPoint => size_of::<NumberDataPoint>(),
            Msg::HistogramPoint => size_of::<HistogramDataPoint>(),
            Msg::ExpHistogramPoint => size_of::<ExponentialHistogramDataPoint>(),
            Msg::Buckets => size_of::<Buckets>(),
            Msg::SummaryPoint => size_of::<SummaryDataPoint>(),
            Msg::Quantile => size_of::<ValueAtQuantile>(),
            Msg::Exemplar => size_of::<Exemplar>(),
            Msg::ResourceLogs => size_of::<ResourceLogs>(),
            Msg::ScopeLogs => size_of::<ScopeLogs>(),
            Msg::LogRecord => size_of::<LogRecord>(),
            Msg::Resource => size_of::<Resource>(),
            Msg::Scope => size_of::<InstrumentationScope>(),
            Msg::EntityRef => size_of::<EntityRef>(),
            Msg::KeyValue => size_of::<KeyValue>(),
            Msg::AnyValue => size_of::<AnyValue>(),
            Msg::ArrayValue => size_of::<ArrayValue>(),
            Msg::KvList => size_of::<KeyValueList>(),
        }
    }

    /// The message type of field `field`, if it is a message field.
    fn child(self, field: u64) -> Option<Msg> {
        use Msg::*;
        Some(match (self, field) {
            (TraceRequest, 1) => ResourceSpans,
            (ResourceSpans, 1) | (ResourceMetrics, 1) | (ResourceLogs, 1) => Resource,
            (ResourceSpans, 2) => ScopeSpans,
            (ScopeSpans, 1) | (ScopeMetrics, 1) | (ScopeLogs, 1) => Scope,
            (ScopeSpans, 2) => Span,
            (Span, 9) | (Event, 3) | (Link, 4) => KeyValue,
            (Span, 11) => Event,
            (Span, 13) => Link,
            (Span, 15) => Status,
            (MetricsRequest, 1) => ResourceMetrics,
            (ResourceMetrics, 2) => ScopeMetrics,
            (ScopeMetrics, 2) => Metric,
            (Metric, 5) => Gauge,
            (Metric, 7) => Sum,
            (Metric, 9) => Histogram,
            (Metric, 10) => ExpHistogram,
            (Metric, 11) => Summary,
            (Metric, 12) => KeyValue,
            (Gauge, 1) | (Sum, 1) => NumberPoint,
            (Histogram, 1) => HistogramPoint,
            (ExpHistogram, 1) => ExpHistogramPoint,
            (Summary, 1) => SummaryPoint,
            (NumberPoint, 7) | (HistogramPoint, 9) | (ExpHistogramPoint, 1) => KeyValue,
            (SummaryPoint, 7) | (Exemplar, 7) => KeyValue,
            (NumberPoint, 5) | (HistogramPoint, 8) | (ExpHistogramPoint, 11) => Exemplar,
            (ExpHistogramPoint, 8) | (ExpHistogramPoint, 9) => Buckets,
            (SummaryPoint, 6) => Quantile,
            (LogsRequest, 1) => ResourceLogs,
            (ResourceLogs, 2) => ScopeLogs,
            (ScopeLogs, 2) => LogRecord,
            (LogRecord, 5) => AnyValue,
            (LogRecord, 6) => KeyValue,
            (ProfilesRequest, 1) => ResourceProfiles,
            (ProfilesRequest, 2) => Dictionary,
            (ResourceProfiles, 1) => Resource,
            (ResourceProfiles, 2) => ScopeProfiles,
            (ScopeProfiles, 1) => Scope,
            (ScopeProfiles, 2) => Profile,
            (Profile, 1) | (Profile, 5) => ValueType,
            (Profile, 2) => Sample,
            (Dictionary, 1) => Mapping,
            (Dictionary, 2) => Location,
            (Dictionary, 3) => Function,
            (Dictionary, 4) => ProfileLink,
            (Dictionary, 6) => AttributeAndUnit,
            (Dictionary, 7) => Stack,
            (Location, 3) => Line,
            (AttributeAndUnit, 2) => AnyValue,
            (Resource, 1) | (Scope, 3) => KeyValue,
            (Resource, 3) => EntityRef,
            (KeyValue, 2) | (ArrayValue, 1) => AnyValue,
            (AnyValue, 5) => ArrayValue,
            (AnyValue, 6) => KvList,
            (KvList, 1) => KeyValue,
            _ => return None,
        })
    }

    /// Whether a length-delimited field holds packed varints, each of which takes 8 bytes in memory
    /// for as little as 1 on the wire.
    fn packed_varints(self, field: u64) -> bool {
        matches!(
            (self, field),
            (Msg::Buckets, 2)
                | (Msg::Sample, 2)
                | (Msg::Sample, 4)
                | (Msg::Profile, 11)
                | (Msg::Location, 4)
                | (Msg::Mapping, 5)
                | (Msg::Stack, 1)
        )
    }

    fn request(signal: Signal) -> Msg {
        match signal {
            Signal::Traces => Msg::TraceRequest,
            Signal::Metrics => Msg::MetricsRequest,
            Signal::Logs => Msg::LogsRequest,
            Signal::Profiles => Msg::ProfilesRequest,
        }
    }
}

/// The estimate passed the limit; the walk stopped there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit;

/// A running sum that refuses to pass `limit`.
struct Budget {
    used: usize,
    limit: usize,
}

impl Budget {
    fn add(&mut self, n: usize) -> Result<(), OverLimit> {
        self.used = self.used.saturating_add(n);
        if self.used > self.limit {
            Err(OverLimit)
        } else {
            Ok(())
        }
    }
}

/// Reads a base-128 varint at `*pos`; `None` when it is cut short or longer than 10 bytes.
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// One field of a protobuf message, as the wire gives it.
pub enum Field<'a> {
    /// A varint or fixed-width value.
    Scalar,
    /// A length-delimited value: a string, bytes, a message or a packed list.
    Bytes(&'a [u8]),
}

/// Reads the fields of one message, stopping (with `None`) at the first malformed one: the decoder
/// reports that error itself, and everything before it has been counted.
pub fn next_field<'a>(buf: &'a [u8], pos: &mut usize) -> Option<(u64, Field<'a>)> {
    if *pos >= buf.len() {
        return None;
    }
    let key = read_varint(buf, pos)?;
    let field = key >> 3;
    match key & 7 {
        0 => {
            read_varint(buf, pos)?;
            Some((field, Field::Scalar))
        }
        1 => {
            *pos = pos.checked_add(8).filter(|p| *p <= buf.len())?;
            Some((field, Field::Scalar))
        }
        5 => {
            *pos = pos.checked_add(4).filter(|p| *p <= buf.len())?;
            Some((field, Field::Scalar))
        }
        2 => {
            let len = usize::try_from(read_varint(buf, pos)?).ok()?;
            let end = pos.checked_add(len).filter(|e| *e <= buf.len())?;
            let bytes = &buf[*pos..end];
            *pos = end;
            Some((field, Field::Bytes(bytes)))
        }
        _ => None,
    }
}

fn walk(msg: Msg, buf: &[u8], depth: u32, budget: &mut Budget) -> Result<(), OverLimit> {
    let mut pos = 0;
    while let Some((field, value)) = next_field(buf, &mut pos) {
        match value {
            Field::Scalar => budget.add(SCALAR)?,
            Field::Bytes(bytes) => match msg.child(field) {
                Some(child) if depth < MAX_DEPTH => {
                    budget.add(child.size())?;
                    walk(child, bytes, depth + 1, budget)?;
                }
                _ if msg.packed_varints(field) => {
                    budget.add(HEADER.saturating_add(bytes.len().saturating_mul(SCALAR)))?
                }
                _ => budget.add(HEADER.saturating_add(bytes.len()))?,
            },
        }
    }
    Ok(())
}

/// The most [`protobuf`] can count for one byte of a body, whatever the body. Every field takes at
/// least two bytes on the wire (a key, and a length or a value), and the walk charges each field
/// once: a nested message its struct size, a string or byte field a header plus its bytes (at most
/// `HEADER / 2` per byte of field), a packed varint `SCALAR` per byte plus a header, a scalar
/// `SCALAR`. So the estimate of any body is at most its length times the largest of these.
pub fn max_per_wire_byte() -> usize {
    let largest = ALL_MSGS.iter().map(|m| m.size()).max().unwrap_or(0);
    (largest / 2 + 1).max(HEADER / 2 + 1).max(SCALAR)
}

/// Whether a protobuf body is too small to pass `limit` whatever it holds, so that the walk can be
/// skipped. Typical requests (tens of KiB against the default 128 MiB) never need the walk; a body
/// of about a MiB or more still gets it. Measured in BENCHMARKS.md ("OTLP pipeline").
pub fn protobuf_surely_within(body_len: usize, limit: usize) -> bool {
    body_len.saturating_mul(max_per_wire_byte()) <= limit
}

/// The estimated decoded size of a protobuf export request of `signal`, or `OverLimit` as soon as
/// it passes `limit` bytes.
pub fn protobuf(signal: Signal, body: &[u8], limit: usize) -> Result<usize, OverLimit> {
    let mut budget = Budget { used: 0, limit };
    walk(Msg::request(signal), body, 0, &mut budget)?;
    Ok(budget.used)
}

/// The message type an OTLP/JSON object or array element under `key` decodes into. OTLP/JSON has
/// no user-chosen keys (attributes are `{"key": …, "value": …}` lists), so the key names the type.
/// An unknown key is charged as the largest type, which only over-estimates.
fn json_type(key: &[u8]) -> usize {
    let m = match key {
        b"resourceSpans" => Msg::ResourceSpans,
        b"scopeSpans" => Msg::ScopeSpans,
        b"spans" => Msg::Span,
        b"events" => Msg::Event,
        b"links" => Msg::Link,
        b"status" => Msg::Status,
        b"resourceMetrics" => Msg::ResourceMetrics,
        b"scopeMetrics" => Msg::ScopeMetrics,
        b"metrics" => Msg::Metric,
        b"gauge" => Msg::Gauge,
        b"sum" => Msg::Sum,
        b"histogram" => Msg::Histogram,
        b"exponentialHistogram" => Msg::ExpHistogram,
        b"summary" => Msg::Summary,
        b"exemplars" => Msg::Exemplar,
        b"positive" | b"negative" => Msg::Buckets,
        b"quantileValues" => Msg::Quantile,
        b"resourceLogs" => Msg::ResourceLogs,
        b"scopeLogs" => Msg::ScopeLogs,
        b"logRecords" => Msg::LogRecord,
        b"resourceProfiles" => Msg::ResourceProfiles,
        b"scopeProfiles" => Msg::ScopeProfiles,
        b"profiles" => Msg::Profile,
        b"sampleType" | b"periodType" => Msg::ValueType,
        b"samples" => Msg::Sample,
        b"dictionary" => Msg::Dictionary,
        b"mappingTable" => Msg::Mapping,
        b"locationTable" => Msg::Location,
        b"functionTable" => Msg::Function,
        b"linkTable" => Msg::ProfileLink,
        b"attributeTable" => Msg::AttributeAndUnit,
        b"stackTable" => Msg::Stack,
        b"lines" => Msg::Line,
        b"resource" => Msg::Resource,
        b"scope" => Msg::Scope,
        b"entityRefs" => Msg::EntityRef,
        b"attributes" | b"filteredAttributes" | b"metadata" => Msg::KeyValue,
        b"value" | b"body" => Msg::AnyValue,
        b"arrayValue" => Msg::ArrayValue,
        b"kvlistValue" => Msg::KvList,
        // `values` holds AnyValues in an array and KeyValues in a kvlist.
        b"values" => return Msg::AnyValue.size().max(Msg::KeyValue.size()),
        b"dataPoints" => {
            return [
                Msg::NumberPoint,
                Msg::HistogramPoint,
                Msg::ExpHistogramPoint,
                Msg::SummaryPoint,
            ]
            .iter()
            .map(|m| m.size())
            .max()
            .unwrap_or(0)
        }
        _ => return LARGEST,
    };
    m.size()
}

/// The largest struct of the walk, for JSON objects under keys the table does not know.
const LARGEST: usize = 512;

/// The estimated decoded size of an OTLP/JSON body, or `OverLimit` as soon as it passes `limit`.
/// Every object is charged as the type its key names, every string as its header and bytes, every
/// other value as a scalar. The scan only tokenises: it trusts the decoder to refuse what is not
/// JSON.
pub fn json(body: &[u8], limit: usize) -> Result<usize, OverLimit> {
    let mut budget = Budget { used: 0, limit };
    // For each open container: whether it is an array, and the key it was opened under.
    let mut stack: Vec<(bool, &[u8])> = Vec::new();
    // The last key read in the innermost object.
    let mut key: &[u8] = b"";
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            c @ (b'{' | b'[') => {
                // An element of an array is of the type the array's key names.
                let under = match stack.last() {
                    Some(&(true, k)) => k,
                    _ => key,
                };
                if c == b'{' {
                    budget.add(json_type(under))?;
                }
                // serde_json refuses nesting past 128, so deeper input fails to decode anyway.
                if stack.len() >= 4 * MAX_DEPTH as usize {
                    return Ok(budget.used);
                }
                stack.push((c == b'[', under));
                key = b"";
                i += 1;
            }
            b'}' | b']' => {
                stack.pop();
                i += 1;
            }
            b'"' => {
                let start = i + 1;
                let mut j = start;
                while j < body.len() && body[j] != b'"' {
                    j += if body[j] == b'\\' { 2 } else { 1 };
                }
                let s = &body[start..j.min(body.len())];
                i = j.saturating_add(1);
                // A key is followed by ':'; a value string is charged.
                let mut k = i;
                while k < body.len() && body[k].is_ascii_whitespace() {
                    k += 1;
                }
                if body.get(k) == Some(&b':') {
                    key = s;
                } else {
                    budget.add(HEADER.saturating_add(s.len()))?;
                }
            }
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                budget.add(SCALAR)?;
                while i < body.len() && !matches!(body[i], b',' | b']' | b'}') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    Ok(budget.used)
}

#[cfg(test)]
mod bound_tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_proto::tonic::metrics::v1::metric;
    use prost::Message;

    fn check(signal: Signal, wire: &[u8]) {
        let estimate = protobuf(signal, wire, usize::MAX).unwrap();
        assert!(
            estimate <= wire.len() * max_per_wire_byte(),
            "{signal}: estimate {estimate} for {} bytes passes the bound {} per byte",
            wire.len(),
            max_per_wire_byte()
        );
        // The fast path agrees with the walk at the edge: a limit just under the estimate is
        // never waved through without a walk.
        if estimate > 0 {
            assert!(!protobuf_surely_within(wire.len(), estimate - 1));
        }
    }

    /// The densest bodies there are: empty messages and empty strings at every level.
    #[test]
    fn the_bound_holds_for_bodies_of_empty_messages() {
        let empty_kv = || KeyValue {
            key: String::new(),
            value: Some(AnyValue { value: None }),
            ..Default::default()
        };
        let spans = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: (0..500).map(|_| empty_kv()).collect(),
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: (0..2000)
                        .map(|_| Span {
                            events: vec![span::Event::default()],
                            links: vec![span::Link::default()],
                            status: Some(Status::default()),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        check(Signal::Traces, &spans.encode_to_vec());
        let point = ExponentialHistogramDataPoint {
            positive: Some(Buckets {
                offset: 0,
                bucket_counts: vec![0; 300],
            }),
            exemplars: vec![Exemplar::default()],
            ..Default::default()
        };
        let metrics = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: (0..500)
                        .map(|i| Metric {
                            data: Some(if i % 2 == 0 {
                                metric::Data::ExponentialHistogram(ExponentialHistogram {
                                    data_points: vec![point.clone()],
                                    ..Default::default()
                                })
                            } else {
                                metric::Data::Summary(Summary {
                                    data_points: vec![SummaryDataPoint {
                                        quantile_values: vec![ValueAtQuantile::default(); 10],
                                        ..Default::default()
                                    }],
                                })
                            }),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        check(Signal::Metrics, &metrics.encode_to_vec());
        // Nested arrays of empty values, as deep as prost decodes.
        let mut v = AnyValue { value: None };
        for _ in 0..90 {
            v = AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![v, AnyValue { value: None }],
                })),
            };
        }
        let logs = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: (0..1000)
                        .map(|_| LogRecord {
                            body: Some(AnyValue { value: None }),
                            ..Default::default()
                        })
                        .chain(std::iter::once(LogRecord {
                            body: Some(v),
                            ..Default::default()
                        }))
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        check(Signal::Logs, &logs.encode_to_vec());
        let profiles = pp::ProfilesData {
            resource_profiles: vec![pp::ResourceProfiles {
                scope_profiles: vec![pp::ScopeProfiles {
                    profiles: (0..200)
                        .map(|_| pp::Profile {
                            sample_type: Some(pp::ValueType::default()),
                            samples: vec![pp::Sample::default(); 20],
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            dictionary: Some(pp::ProfilesDictionary {
                location_table: vec![
                    pp::Location {
                        lines: vec![pp::Line::default(); 4],
                        ..Default::default()
                    };
                    500
                ],
                stack_table: vec![pp::Stack::default(); 500],
                attribute_table: vec![pp::KeyValueAndUnit::default(); 500],
                string_table: vec![String::new(); 500],
                ..Default::default()
            }),
        };
        let wire = profiles.encode_to_vec();
        check(Signal::Profiles, &wire);
        // The walk follows the profiles schema: far more than the bytes, as for the other signals.
        assert!(protobuf(Signal::Profiles, &wire, usize::MAX).unwrap() > 10 * wire.len());
    }

    #[test]
    fn only_small_bodies_skip_the_walk() {
        let limit = 128 << 20;
        // A typical request (tens of KiB) skips it; a 20 MiB body is walked.
        assert!(protobuf_surely_within(64 << 10, limit));
        assert!(!protobuf_surely_within(20 << 20, limit));
        assert!(!protobuf_surely_within(usize::MAX, limit));
    }
}
