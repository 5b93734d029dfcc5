//! Jaeger's `api_v2` protobuf model (`model.proto`, `collector.proto` of jaeger-idl) and the gRPC
//! `jaeger.api_v2.CollectorService/PostSpans` method.
//!
//! The messages are written out here with prost's derive rather than generated from the .proto
//! files: generating needs `protoc` at build time, which the build machines do not have, and the
//! crates that ship these types (`opentelemetry-jaeger`) were discontinued and pin an old tonic.
//! Field numbers and types are those of jaeger-idl's `proto/api_v2/model.proto`.
//!
//! A request is decoded one span at a time ([`for_each_message`]) and each span translated as it is
//! read, so that the decoded-size budget is charged before the next span takes memory.

use super::model::{self, Budget, JSpan, ProtoGrouper, Tag, TagValue};
use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};
use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    /// STRING = 0, BOOL = 1, INT64 = 2, FLOAT64 = 3, BINARY = 4.
    #[prost(int32, tag = "2")]
    pub v_type: i32,
    #[prost(string, tag = "3")]
    pub v_str: String,
    #[prost(bool, tag = "4")]
    pub v_bool: bool,
    #[prost(int64, tag = "5")]
    pub v_int64: i64,
    #[prost(double, tag = "6")]
    pub v_float64: f64,
    #[prost(bytes = "vec", tag = "7")]
    pub v_binary: Vec<u8>,
}

/// `google.protobuf.Timestamp` and `google.protobuf.Duration` have the same two fields.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct Time {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct Log {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Time>,
    #[prost(message, repeated, tag = "2")]
    pub fields: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SpanRef {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    /// CHILD_OF = 0, FOLLOWS_FROM = 1.
    #[prost(int32, tag = "3")]
    pub ref_type: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct Process {
    #[prost(string, tag = "1")]
    pub service_name: String,
    #[prost(message, repeated, tag = "2")]
    pub tags: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Span {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    #[prost(string, tag = "3")]
    pub operation_name: String,
    #[prost(message, repeated, tag = "4")]
    pub references: Vec<SpanRef>,
    #[prost(uint32, tag = "5")]
    pub flags: u32,
    #[prost(message, optional, tag = "6")]
    pub start_time: Option<Time>,
    #[prost(message, optional, tag = "7")]
    pub duration: Option<Time>,
    #[prost(message, repeated, tag = "8")]
    pub tags: Vec<KeyValue>,
    #[prost(message, repeated, tag = "9")]
    pub logs: Vec<Log>,
    #[prost(message, optional, tag = "10")]
    pub process: Option<Process>,
    #[prost(string, tag = "11")]
    pub process_id: String,
    #[prost(string, repeated, tag = "12")]
    pub warnings: Vec<String>,
}

/// The outer messages are read field by field ([`post_spans`]), never decoded whole; these two
/// describe their shape and build requests in tests.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, PartialEq, Message)]
pub struct Batch {
    #[prost(message, repeated, tag = "1")]
    pub spans: Vec<Span>,
    #[prost(message, optional, tag = "2")]
    pub process: Option<Process>,
}

#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, PartialEq, Message)]
pub struct PostSpansRequest {
    #[prost(message, optional, tag = "1")]
    pub batch: Option<Batch>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PostSpansResponse {}

/// Calls `f` with the bytes of every length-delimited field `tag` of the message in `buf`, in
/// order, skipping the other fields; nothing is decoded or copied.
pub(crate) fn for_each_message<'a>(
    buf: &'a [u8],
    tag: u32,
    mut f: impl FnMut(&'a [u8]) -> Result<(), String>,
) -> Result<(), String> {
    let mut b = buf;
    while b.has_remaining() {
        let (t, wt) = decode_key(&mut b).map_err(|e| e.to_string())?;
        if t == tag && wt == WireType::LengthDelimited {
            let len = decode_varint(&mut b).map_err(|e| e.to_string())?;
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len > b.len() {
                return Err(format!("field {tag}: length {len} is past the end"));
            }
            f(&b[..len])?;
            b.advance(len);
        } else {
            skip_field(wt, t, &mut b, DecodeContext::default()).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn tag(kv: KeyValue) -> Tag {
    let value = match kv.v_type {
        0 => TagValue::Str(kv.v_str),
        1 => TagValue::Bool(kv.v_bool),
        2 => TagValue::I64(kv.v_int64),
        3 => TagValue::F64(kv.v_float64),
        4 => TagValue::Bytes(kv.v_binary),
        t => TagValue::Unknown(t),
    };
    Tag { key: kv.key, value }
}

fn process(p: Process) -> model::Process {
    model::Process {
        service_name: p.service_name,
        tags: p.tags.into_iter().map(tag).collect(),
    }
}

/// Fixed-width ids from bytes: shorter ones are right-aligned, as jaeger's model reads them.
fn id<const N: usize>(b: &[u8]) -> Result<[u8; N], String> {
    if b.len() > N {
        return Err(format!("an id of {} bytes; at most {N} expected", b.len()));
    }
    let mut a = [0u8; N];
    a[N - b.len()..].copy_from_slice(b);
    Ok(a)
}

fn nanos(t: Option<Time>) -> u64 {
    t.map_or(0, |t| {
        let s = u64::try_from(t.seconds).unwrap_or(0);
        let n = u64::try_from(t.nanos).unwrap_or(0);
        s.saturating_mul(1_000_000_000).saturating_add(n)
    })
}

fn span(s: Span) -> Result<JSpan, String> {
    let trace_id = id::<16>(&s.trace_id)?;
    let mut refs = Vec::with_capacity(s.references.len());
    for r in s.references {
        refs.push(model::SpanRef {
            follows_from: r.ref_type == 1,
            trace_id: id::<16>(&r.trace_id)?,
            span_id: id::<8>(&r.span_id)?,
        });
    }
    Ok(JSpan {
        trace_id,
        span_id: id::<8>(&s.span_id)?,
        parent_span_id: [0; 8],
        operation_name: s.operation_name,
        references: refs,
        flags: i64::from(s.flags),
        start_unix_nano: nanos(s.start_time),
        duration_nano: nanos(s.duration),
        tags: s.tags.into_iter().map(tag).collect(),
        logs: s
            .logs
            .into_iter()
            .map(|l| model::Log {
                time_unix_nano: nanos(l.timestamp),
                fields: l.fields.into_iter().map(tag).collect(),
            })
            .collect(),
        process: s.process.map(process),
    })
}

/// Why a request was refused.
#[derive(Debug)]
pub(crate) enum RequestError {
    Malformed(String),
    TooLarge(String),
}

/// A `PostSpansRequest`'s bytes, translated span by span within `max_decoded` bytes.
pub(crate) fn post_spans(
    body: &Bytes,
    max_decoded: usize,
) -> Result<Vec<ResourceSpans>, RequestError> {
    let malformed = RequestError::Malformed;
    let mut batch: Option<&[u8]> = None;
    for_each_message(body, 1, |b| {
        batch = Some(b);
        Ok(())
    })
    .map_err(malformed)?;
    let Some(batch) = batch else {
        return Ok(Vec::new());
    };
    // The process usually follows the spans on the wire; find it first so each span can be
    // translated as soon as it is read.
    let mut batch_process = None;
    for_each_message(batch, 2, |p| {
        let p = Process::decode(p).map_err(|e| format!("process: {e}"))?;
        batch_process = Some(process(p));
        Ok(())
    })
    .map_err(malformed)?;
    let mut budget = Budget::new(max_decoded);
    let mut grouper = ProtoGrouper::new(batch_process);
    let mut over = None;
    for_each_message(batch, 1, |s| {
        let s = Span::decode(s).map_err(|e| format!("span: {e}"))?;
        let s = span(s)?;
        if let Err(e) = grouper.add(s, &mut budget) {
            over = Some(e.to_string());
            return Err(String::new());
        }
        Ok(())
    })
    .map_err(|e| match over.take() {
        Some(o) => RequestError::TooLarge(o),
        None => RequestError::Malformed(e),
    })?;
    Ok(grouper.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_becomes_one_resource_per_process() {
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            v_str: v.into(),
            ..Default::default()
        };
        let mk = |i: u8, own: Option<Process>| Span {
            trace_id: vec![1; 16],
            span_id: vec![i; 8],
            operation_name: format!("op{i}"),
            references: vec![SpanRef {
                trace_id: vec![1; 16],
                span_id: vec![9; 8],
                ref_type: 0,
            }],
            start_time: Some(Time {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            duration: Some(Time {
                seconds: 0,
                nanos: 1000,
            }),
            tags: vec![kv("span.kind", "client"), kv("otel.scope.name", "lib")],
            process: own,
            ..Default::default()
        };
        let req = PostSpansRequest {
            batch: Some(Batch {
                spans: vec![
                    mk(1, None),
                    mk(
                        2,
                        Some(Process {
                            service_name: "other".into(),
                            tags: vec![],
                        }),
                    ),
                    mk(3, None),
                ],
                process: Some(Process {
                    service_name: "svc".into(),
                    tags: vec![kv("hostname", "h")],
                }),
            }),
        };
        let rs = post_spans(&Bytes::from(req.encode_to_vec()), 1 << 20).unwrap();
        assert_eq!(rs.len(), 2);
        let first = &rs[0];
        let spans = &first.scope_spans[0].spans;
        assert_eq!(spans.len(), 2);
        assert_eq!(first.scope_spans[0].scope.as_ref().unwrap().name, "lib");
        assert_eq!(spans[0].parent_span_id, vec![9; 8]);
        assert_eq!(spans[0].start_time_unix_nano, 1_700_000_000_000_000_005);
        assert_eq!(spans[0].end_time_unix_nano, 1_700_000_000_000_001_005);
        assert!(matches!(
            post_spans(&Bytes::from(req.encode_to_vec()), 100),
            Err(RequestError::TooLarge(_))
        ));
        assert!(matches!(
            post_spans(&Bytes::from_static(&[0x0a, 0x05, 0x0a]), 1 << 20),
            Err(RequestError::Malformed(_))
        ));
    }
}
