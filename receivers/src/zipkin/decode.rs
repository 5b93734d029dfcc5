//! Zipkin's three accepted encodings into [`ZSpan`]s: v2 JSON and v2 protobuf (`zipkin.proto3`) on
//! `/api/v2/spans`, and v1 JSON on `/api/v1/spans`. Each decodes one span at a time and hands it to
//! a callback that translates it at once, so the decoded-size budget is charged before the next
//! span takes memory.

use super::model::{id_bytes, span_id_hex, trace_id_hex, Endpoint, Kind, ZSpan};
use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Reads a JSON array element by element, handing each to `f`.
struct Each<'a, T, F> {
    f: &'a mut F,
    _t: PhantomData<fn() -> T>,
}

impl<'de, T: Deserialize<'de>, F: FnMut(T) -> Result<(), String>> DeserializeSeed<'de>
    for Each<'_, T, F>
{
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>, F: FnMut(T) -> Result<(), String>> Visitor<'de> for Each<'_, T, F> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of spans")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(x) = seq.next_element::<T>()? {
            (self.f)(x).map_err(A::Error::custom)?;
        }
        Ok(())
    }
}

fn each_json<'de, T: Deserialize<'de>>(
    body: &'de [u8],
    mut f: impl FnMut(T) -> Result<(), String>,
) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    Each {
        f: &mut f,
        _t: PhantomData,
    }
    .deserialize(&mut de)
    .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JsonEndpoint {
    service_name: Option<String>,
    ipv4: Option<String>,
    ipv6: Option<String>,
    port: Option<u16>,
}

impl JsonEndpoint {
    fn into_endpoint(self) -> Result<Endpoint, String> {
        let ipv4 = match self.ipv4.filter(|s| !s.is_empty()) {
            Some(s) => Some(
                s.parse::<Ipv4Addr>()
                    .map_err(|_| format!("invalid ipv4 {s:?}"))?,
            ),
            None => None,
        };
        let ipv6 = match self.ipv6.filter(|s| !s.is_empty()) {
            Some(s) => Some(
                s.parse::<Ipv6Addr>()
                    .map_err(|_| format!("invalid ipv6 {s:?}"))?,
            ),
            None => None,
        };
        Ok(Endpoint {
            service_name: self.service_name.unwrap_or_default(),
            ipv4,
            ipv6,
            port: self.port.unwrap_or(0),
        })
    }
}

#[derive(Deserialize)]
struct JsonAnnotation {
    #[serde(default)]
    timestamp: u64,
    #[serde(default)]
    value: String,
    /// v1 only.
    #[serde(default)]
    endpoint: Option<JsonEndpoint>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct V2Span {
    trace_id: String,
    id: String,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default)]
    duration: Option<u64>,
    #[serde(default)]
    local_endpoint: Option<JsonEndpoint>,
    #[serde(default)]
    remote_endpoint: Option<JsonEndpoint>,
    #[serde(default)]
    annotations: Vec<JsonAnnotation>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

fn kind(k: &str) -> Result<Option<Kind>, String> {
    Ok(Some(match k {
        "CLIENT" => Kind::Client,
        "SERVER" => Kind::Server,
        "PRODUCER" => Kind::Producer,
        "CONSUMER" => Kind::Consumer,
        "" => return Ok(None),
        other => return Err(format!("unknown span kind {other:?}")),
    }))
}

fn parent(p: Option<String>) -> Result<Option<[u8; 8]>, String> {
    match p.filter(|p| !p.is_empty()) {
        Some(p) => Ok(Some(span_id_hex(&p)?)),
        None => Ok(None),
    }
}

fn endpoint(e: Option<JsonEndpoint>) -> Result<Option<Endpoint>, String> {
    e.map(JsonEndpoint::into_endpoint).transpose()
}

impl V2Span {
    fn into_span(self) -> Result<ZSpan, String> {
        Ok(ZSpan {
            trace_id: trace_id_hex(&self.trace_id)?,
            id: span_id_hex(&self.id)?,
            parent_id: parent(self.parent_id)?,
            name: self.name.unwrap_or_default(),
            kind: kind(self.kind.as_deref().unwrap_or(""))?,
            timestamp_us: self.timestamp.unwrap_or(0),
            duration_us: self.duration.unwrap_or(0),
            local: endpoint(self.local_endpoint)?,
            remote: endpoint(self.remote_endpoint)?,
            annotations: self
                .annotations
                .into_iter()
                .map(|a| (a.timestamp, a.value))
                .collect(),
            tags: self.tags,
        })
    }
}

/// v2 JSON: an array of spans.
pub(crate) fn v2_json(
    body: &[u8],
    mut f: impl FnMut(ZSpan) -> Result<(), String>,
) -> Result<(), String> {
    each_json(body, |s: V2Span| f(s.into_span()?))
}

/// A v1 binary annotation's value: a string, a boolean or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum V1Value {
    Bool(bool),
    Str(String),
    Num(serde_json::Number),
}

#[derive(Deserialize)]
struct V1BinaryAnnotation {
    key: String,
    value: V1Value,
    #[serde(default)]
    endpoint: Option<JsonEndpoint>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct V1Span {
    trace_id: String,
    id: String,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default)]
    duration: Option<u64>,
    #[serde(default)]
    annotations: Vec<JsonAnnotation>,
    #[serde(default)]
    binary_annotations: Vec<V1BinaryAnnotation>,
}

impl V1Span {
    /// One v1 span as a v2 span, following Zipkin's own v1 → v2 conversion in its simple form:
    /// the core annotations (`cs`/`cr`, `sr`/`ss`, `ms`, `mr`) give the kind, the timing and the
    /// local endpoint; `ca`/`sa`/`ma` address annotations give the remote endpoint; other binary
    /// annotations become tags and other annotations stay annotations. A v1 span shared by a
    /// client and a server is taken as the server's side.
    fn into_span(self) -> Result<ZSpan, String> {
        let mut out = ZSpan {
            trace_id: trace_id_hex(&self.trace_id)?,
            id: span_id_hex(&self.id)?,
            parent_id: parent(self.parent_id)?,
            name: self.name.unwrap_or_default(),
            ..Default::default()
        };
        let mut core: BTreeMap<&'static str, (u64, Option<JsonEndpoint>)> = BTreeMap::new();
        for a in self.annotations {
            let key = match a.value.as_str() {
                "cs" => "cs",
                "cr" => "cr",
                "sr" => "sr",
                "ss" => "ss",
                "ms" => "ms",
                "mr" => "mr",
                _ => {
                    if out.local.is_none() {
                        out.local = endpoint(a.endpoint)?;
                    }
                    out.annotations.push((a.timestamp, a.value));
                    continue;
                }
            };
            core.insert(key, (a.timestamp, a.endpoint));
        }
        let (kind, begin, end, remote_key) = if core.contains_key("sr") || core.contains_key("ss") {
            (Kind::Server, "sr", "ss", "ca")
        } else if core.contains_key("cs") || core.contains_key("cr") {
            (Kind::Client, "cs", "cr", "sa")
        } else if core.contains_key("ms") {
            (Kind::Producer, "ms", "", "ma")
        } else if core.contains_key("mr") {
            (Kind::Consumer, "mr", "", "ma")
        } else {
            (Kind::Client, "", "", "")
        };
        if !begin.is_empty() {
            out.kind = Some(kind);
            let b = core.remove(begin);
            let e = if end.is_empty() {
                None
            } else {
                core.remove(end)
            };
            if let Some((t, ep)) = &b {
                out.timestamp_us = *t;
                if let Some(ep) = ep {
                    out.local = Some(
                        JsonEndpoint {
                            service_name: ep.service_name.clone(),
                            ipv4: ep.ipv4.clone(),
                            ipv6: ep.ipv6.clone(),
                            port: ep.port,
                        }
                        .into_endpoint()?,
                    );
                }
            }
            if let (Some((bt, _)), Some((et, ep))) = (&b, e) {
                out.duration_us = et.saturating_sub(*bt);
                if out.local.is_none() {
                    out.local = endpoint(ep)?;
                }
            }
        }
        // The other side's core annotations, if any, stay as annotations.
        for (k, (t, _)) in core {
            out.annotations.push((t, k.to_string()));
        }
        for b in self.binary_annotations {
            let is_address = matches!(b.key.as_str(), "ca" | "sa" | "ma");
            if is_address {
                if b.key == remote_key || out.remote.is_none() {
                    out.remote = endpoint(b.endpoint)?;
                }
                continue;
            }
            if out.local.is_none() {
                out.local = endpoint(b.endpoint)?;
            }
            let v = match b.value {
                V1Value::Bool(v) => v.to_string(),
                V1Value::Str(s) => s,
                V1Value::Num(n) => n.to_string(),
            };
            if b.key == "lc" && v.is_empty() {
                continue;
            }
            out.tags.insert(b.key, v);
        }
        if let Some(t) = self.timestamp {
            out.timestamp_us = t;
        }
        if let Some(d) = self.duration {
            out.duration_us = d;
        }
        Ok(out)
    }
}

/// v1 JSON: an array of v1 spans.
pub(crate) fn v1_json(
    body: &[u8],
    mut f: impl FnMut(ZSpan) -> Result<(), String>,
) -> Result<(), String> {
    each_json(body, |s: V1Span| f(s.into_span()?))
}

/// `zipkin.proto3`'s messages, written out with prost's derive (see the jaeger receiver's `proto`
/// for why they are not generated).
mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Endpoint {
        #[prost(string, tag = "1")]
        pub service_name: String,
        #[prost(bytes = "vec", tag = "2")]
        pub ipv4: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub ipv6: Vec<u8>,
        #[prost(int32, tag = "4")]
        pub port: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Annotation {
        #[prost(fixed64, tag = "1")]
        pub timestamp: u64,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub parent_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub id: Vec<u8>,
        /// SPAN_KIND_UNSPECIFIED = 0, CLIENT, SERVER, PRODUCER, CONSUMER.
        #[prost(int32, tag = "4")]
        pub kind: i32,
        #[prost(string, tag = "5")]
        pub name: String,
        #[prost(fixed64, tag = "6")]
        pub timestamp: u64,
        #[prost(uint64, tag = "7")]
        pub duration: u64,
        #[prost(message, optional, tag = "8")]
        pub local_endpoint: Option<Endpoint>,
        #[prost(message, optional, tag = "9")]
        pub remote_endpoint: Option<Endpoint>,
        #[prost(message, repeated, tag = "10")]
        pub annotations: Vec<Annotation>,
        #[prost(btree_map = "string, string", tag = "11")]
        pub tags: std::collections::BTreeMap<String, String>,
        #[prost(bool, tag = "12")]
        pub debug: bool,
        #[prost(bool, tag = "13")]
        pub shared: bool,
    }

    /// Read span by span ([`super::v2_proto`]); the whole shape, for tests.
    #[cfg_attr(not(test), allow(dead_code))]
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListOfSpans {
        #[prost(message, repeated, tag = "1")]
        pub spans: Vec<Span>,
    }
}

fn pb_endpoint(e: Option<pb::Endpoint>) -> Result<Option<Endpoint>, String> {
    let Some(e) = e else { return Ok(None) };
    let ipv4 = match e.ipv4.len() {
        0 => None,
        4 => Some(Ipv4Addr::new(e.ipv4[0], e.ipv4[1], e.ipv4[2], e.ipv4[3])),
        n => return Err(format!("ipv4 of {n} bytes")),
    };
    let ipv6 = match e.ipv6.len() {
        0 => None,
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&e.ipv6);
            Some(Ipv6Addr::from(a))
        }
        n => return Err(format!("ipv6 of {n} bytes")),
    };
    Ok(Some(Endpoint {
        service_name: e.service_name,
        ipv4,
        ipv6,
        port: u16::try_from(e.port).unwrap_or(0),
    }))
}

/// v2 protobuf: a `ListOfSpans`.
pub(crate) fn v2_proto(
    body: &[u8],
    mut f: impl FnMut(ZSpan) -> Result<(), String>,
) -> Result<(), String> {
    use prost::Message;
    crate::jaeger::proto::for_each_message(body, 1, |b| {
        let s = pb::Span::decode(b).map_err(|e| format!("span: {e}"))?;
        let z = ZSpan {
            trace_id: id_bytes::<16>(&s.trace_id, "trace id")?,
            id: id_bytes::<8>(&s.id, "span id")?,
            parent_id: if s.parent_id.is_empty() {
                None
            } else {
                Some(id_bytes::<8>(&s.parent_id, "parent id")?)
            },
            name: s.name,
            kind: match s.kind {
                1 => Some(Kind::Client),
                2 => Some(Kind::Server),
                3 => Some(Kind::Producer),
                4 => Some(Kind::Consumer),
                _ => None,
            },
            timestamp_us: s.timestamp,
            duration_us: s.duration,
            local: pb_endpoint(s.local_endpoint)?,
            remote: pb_endpoint(s.remote_endpoint)?,
            annotations: s
                .annotations
                .into_iter()
                .map(|a| (a.timestamp, a.value))
                .collect(),
            tags: s.tags,
        };
        f(z)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(
        r: impl FnOnce(&mut dyn FnMut(ZSpan) -> Result<(), String>) -> Result<(), String>,
    ) -> Vec<ZSpan> {
        let mut v = Vec::new();
        r(&mut |z| {
            v.push(z);
            Ok(())
        })
        .unwrap();
        v
    }

    #[test]
    fn v2_json_spans() {
        let body = br#"[{"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"a2fb4a1d1a96d312",
            "parentId":"0020000000000001","name":"get /api","kind":"SERVER","timestamp":1556604172355737,
            "duration":1431,"localEndpoint":{"serviceName":"backend","ipv4":"192.168.99.1","port":3306},
            "remoteEndpoint":{"ipv6":"::1"},"annotations":[{"timestamp":1556604172355800,"value":"x"}],
            "tags":{"http.method":"GET"}}]"#;
        let v = collect(|f| v2_json(body, f));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].kind, Some(Kind::Server));
        assert_eq!(v[0].local.as_ref().unwrap().port, 3306);
        assert_eq!(
            v[0].remote.as_ref().unwrap().ipv6,
            Some(Ipv6Addr::LOCALHOST)
        );
        assert_eq!(v[0].tags["http.method"], "GET");
        assert!(v2_json(b"[{\"id\":\"1\"}]", |_| Ok(())).is_err());
        assert!(v2_json(b"{}", |_| Ok(())).is_err());
        assert!(v2_json(b"[] x", |_| Ok(())).is_err());
    }

    #[test]
    fn v1_json_spans() {
        let body = br#"[{"traceId":"5af7183fb1d4cf5f","name":"get","id":"6b221d5bc9e6496c",
            "parentId":"352bff9a74ca9ad2","timestamp":1000,"duration":200,
            "annotations":[{"timestamp":1000,"value":"sr","endpoint":{"serviceName":"svc","ipv4":"1.2.3.4","port":80}},
                           {"timestamp":1200,"value":"ss","endpoint":{"serviceName":"svc"}},
                           {"timestamp":1100,"value":"cache miss"}],
            "binaryAnnotations":[{"key":"http.path","value":"/x","endpoint":{"serviceName":"svc"}},
                                 {"key":"ca","value":true,"endpoint":{"serviceName":"client","ipv4":"5.6.7.8"}},
                                 {"key":"retries","value":3}]}]"#;
        let v = collect(|f| v1_json(body, f));
        let s = &v[0];
        assert_eq!(s.kind, Some(Kind::Server));
        assert_eq!(s.local.as_ref().unwrap().service_name, "svc");
        assert_eq!(s.remote.as_ref().unwrap().service_name, "client");
        assert_eq!(s.timestamp_us, 1000);
        assert_eq!(s.duration_us, 200);
        assert_eq!(s.tags["http.path"], "/x");
        assert_eq!(s.tags["retries"], "3");
        assert_eq!(s.annotations, vec![(1100, "cache miss".to_string())]);
    }

    #[test]
    fn v2_proto_spans() {
        use prost::Message;
        let list = pb::ListOfSpans {
            spans: vec![pb::Span {
                trace_id: vec![1; 16],
                id: vec![2; 8],
                parent_id: vec![3; 8],
                kind: 1,
                name: "n".into(),
                timestamp: 5,
                duration: 6,
                local_endpoint: Some(pb::Endpoint {
                    service_name: "s".into(),
                    ipv4: vec![127, 0, 0, 1],
                    ..Default::default()
                }),
                tags: [("a".to_string(), "b".to_string())].into(),
                ..Default::default()
            }],
        };
        let v = collect(|f| v2_proto(&list.encode_to_vec(), f));
        assert_eq!(v[0].parent_id, Some([3; 8]));
        assert_eq!(v[0].kind, Some(Kind::Client));
        assert_eq!(v[0].local.as_ref().unwrap().ipv4, Some(Ipv4Addr::LOCALHOST));
        assert!(v2_proto(&[0x0a, 0x10, 0x01], |_| Ok(())).is_err());
    }

    proptest::proptest! {
        /// Arbitrary bodies in every encoding end in spans or an error, never a panic.
        #[test]
        fn arbitrary_bodies_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let mut t = crate::zipkin::model::Translator::new(true);
            let mut budget = crate::jaeger::model::Budget::new(1 << 20);
            let mut add = |z: ZSpan| t.add(z, &mut budget).map_err(|e| format!("{e:?}"));
            let _ = v2_json(&b, &mut add);
            let _ = v1_json(&b, &mut add);
            let _ = v2_proto(&b, &mut add);
        }

        /// Zipkin-shaped JSON with arbitrary strings where ids, annotations and link tags go.
        #[test]
        fn odd_values_in_valid_json_never_panic(id in ".{0,40}", value in ".{0,60}") {
            let body = serde_json::json!([{
                "traceId": id, "id": id, "parentId": id, "name": value,
                "annotations": [{"timestamp": 1, "value": value}],
                "tags": {"otlp.link.0": value, "error": value, "otel.status_code": value}
            }]).to_string();
            let mut t = crate::zipkin::model::Translator::new(true);
            let mut budget = crate::jaeger::model::Budget::new(1 << 20);
            let _ = v2_json(body.as_bytes(), |z| t.add(z, &mut budget).map_err(|e| format!("{e:?}")));
        }
    }
}
