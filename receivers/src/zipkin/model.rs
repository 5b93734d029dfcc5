//! Zipkin's v2 span model, which all three accepted encodings decode into (v1 JSON is converted to
//! it first), and its translation to OTLP as otelcol's `zipkinv2.ToTranslator` does it: the local
//! endpoint's service becomes the resource's `service.name` and resource-convention tags move to the
//! resource; `otel.library.*` tags become the scope; `kind` (or a `span.kind: internal` tag) the
//! kind; `otel.status_code`/`error` the status; `otlp.link.N` tags links; annotations events; the
//! endpoints `net.*`/`peer.service` attributes. With `parse_string_tags`, tag values that read as
//! numbers or booleans become typed attributes.

use crate::jaeger::model::{kv, Attrs, Budget, OverBudget};
use opentelemetry_proto::tonic::common::v1::{any_value::Value, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::{Event, Link, SpanKind},
    status::StatusCode,
    ResourceSpans, ScopeSpans, Span, Status,
};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Client,
    Server,
    Producer,
    Consumer,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Endpoint {
    pub service_name: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub port: u16,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ZSpan {
    pub trace_id: [u8; 16],
    pub id: [u8; 8],
    pub parent_id: Option<[u8; 8]>,
    pub name: String,
    pub kind: Option<Kind>,
    /// Microseconds since the epoch; zero when absent.
    pub timestamp_us: u64,
    pub duration_us: u64,
    pub local: Option<Endpoint>,
    pub remote: Option<Endpoint>,
    /// `(microseconds, value)`.
    pub annotations: Vec<(u64, String)>,
    pub tags: BTreeMap<String, String>,
}

/// A trace id from Zipkin's hex form: 16 or 32 digits (shorter ones are left-padded, as zipkin-go
/// reads them).
pub(crate) fn trace_id_hex(s: &str) -> Result<[u8; 16], String> {
    // Checked before splitting: a split inside a multi-byte character would panic.
    if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "invalid trace id {s:?}: 1 to 32 hex digits expected"
        ));
    }
    let (high, low) = if s.len() > 16 {
        s.split_at(s.len() - 16)
    } else {
        ("", s)
    };
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&hex_u64(high, s)?.to_be_bytes());
    out[8..].copy_from_slice(&hex_u64(low, s)?.to_be_bytes());
    Ok(out)
}

/// A span id from Zipkin's hex form: up to 16 digits.
pub(crate) fn span_id_hex(s: &str) -> Result<[u8; 8], String> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "invalid span id {s:?}: 1 to 16 hex digits expected"
        ));
    }
    Ok(hex_u64(s, s)?.to_be_bytes())
}

fn hex_u64(part: &str, whole: &str) -> Result<u64, String> {
    if part.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(part, 16).map_err(|_| format!("invalid id {whole:?}: not hex"))
}

/// Fixed-width ids from protobuf bytes, right-aligned.
pub(crate) fn id_bytes<const N: usize>(b: &[u8], what: &str) -> Result<[u8; N], String> {
    if b.len() > N {
        return Err(format!("{what} of {} bytes; at most {N} expected", b.len()));
    }
    let mut a = [0u8; N];
    a[N - b.len()..].copy_from_slice(b);
    Ok(a)
}

/// Resource attribute names of OpenTelemetry's semantic conventions (v1.6.1, as otelcol's
/// translator uses) and the OpenCensus/Zipkin bookkeeping keys: tags under these names belong to
/// the resource, never to a span.
const RESOURCE_KEYS: &[&str] = &[
    "aws.ecs.cluster.arn",
    "aws.ecs.container.arn",
    "aws.ecs.launchtype",
    "aws.ecs.task.arn",
    "aws.ecs.task.family",
    "aws.ecs.task.revision",
    "aws.eks.cluster.arn",
    "aws.log.group.arns",
    "aws.log.group.names",
    "aws.log.stream.arns",
    "aws.log.stream.names",
    "cloud.account.id",
    "cloud.availability_zone",
    "cloud.platform",
    "cloud.provider",
    "cloud.region",
    "container.id",
    "container.image.name",
    "container.image.tag",
    "container.name",
    "container.runtime",
    "deployment.environment",
    "device.id",
    "device.model.identifier",
    "device.model.name",
    "faas.id",
    "faas.instance",
    "faas.max_memory",
    "faas.name",
    "faas.version",
    "host.arch",
    "host.id",
    "host.image.id",
    "host.image.name",
    "host.image.version",
    "host.name",
    "host.type",
    "k8s.cluster.name",
    "k8s.container.name",
    "k8s.cronjob.name",
    "k8s.cronjob.uid",
    "k8s.daemonset.name",
    "k8s.daemonset.uid",
    "k8s.deployment.name",
    "k8s.deployment.uid",
    "k8s.job.name",
    "k8s.job.uid",
    "k8s.namespace.name",
    "k8s.node.name",
    "k8s.node.uid",
    "k8s.pod.name",
    "k8s.pod.uid",
    "k8s.replicaset.name",
    "k8s.replicaset.uid",
    "k8s.statefulset.name",
    "k8s.statefulset.uid",
    "os.description",
    "os.name",
    "os.type",
    "os.version",
    "process.command",
    "process.command_args",
    "process.command_line",
    "process.executable.name",
    "process.executable.path",
    "process.owner",
    "process.pid",
    "process.runtime.description",
    "process.runtime.name",
    "process.runtime.version",
    "service.instance.id",
    "service.name",
    "service.namespace",
    "service.version",
    "telemetry.auto.version",
    "telemetry.sdk.language",
    "telemetry.sdk.name",
    "telemetry.sdk.version",
    "webengine.description",
    "webengine.name",
    "webengine.version",
    // OpenCensus and otelcol's own markers.
    "opencensus.exporterversion",
    "opencensus.resourcetype",
    "opencensus.starttime",
    SERVICE_NAME_SOURCE,
    LIBRARY_NAME,
    LIBRARY_VERSION,
];

const SERVICE_NAME_SOURCE: &str = "otlp.service.name.source";
const LIBRARY_NAME: &str = "otel.library.name";
const LIBRARY_VERSION: &str = "otel.library.version";
/// What otelcol names a span whose Zipkin form had no timestamp.
const START_TIME_ABSENT: &str = "otel.zipkin.absentField.startTime";
const NO_SERVICE_NAME: &str = "OTLPResourceNoServiceName";

fn is_resource_key(k: &str) -> bool {
    RESOURCE_KEYS.contains(&k)
}

fn local_service(s: &ZSpan) -> String {
    match &s.local {
        Some(e) if !e.service_name.is_empty() => e.service_name.clone(),
        _ => NO_SERVICE_NAME.to_string(),
    }
}

/// Spans translated as they are decoded, grouped by service and then by library, as otelcol's
/// translator orders them (it sorts by both).
pub(crate) struct Translator {
    parse_string_tags: bool,
    groups: BTreeMap<String, Group>,
}

struct Group {
    resource: Resource,
    scopes: BTreeMap<String, ScopeSpans>,
}

/// A span that cannot be translated (a malformed link or annotation, as otelcol refuses them).
#[derive(Debug)]
pub(crate) enum TranslateError {
    Malformed(String),
    TooLarge(OverBudget),
}

impl Translator {
    pub fn new(parse_string_tags: bool) -> Translator {
        Translator {
            parse_string_tags,
            groups: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, z: ZSpan, budget: &mut Budget) -> Result<(), TranslateError> {
        let mut tags = z.tags.clone();
        let service = local_service(&z);
        let group = self.groups.entry(service.clone()).or_insert_with(|| Group {
            resource: resource_from(&mut tags, &service),
            scopes: BTreeMap::new(),
        });
        let lib = z.tags.get(LIBRARY_NAME).cloned().unwrap_or_default();
        let scope = group.scopes.entry(lib.clone()).or_insert_with(|| {
            let mut s = InstrumentationScope::default();
            if !lib.is_empty() {
                if let Some(n) = tags.remove(LIBRARY_NAME) {
                    s.name = n;
                }
                if let Some(v) = tags.remove(LIBRARY_VERSION) {
                    s.version = v;
                }
            }
            ScopeSpans {
                scope: Some(s),
                ..Default::default()
            }
        });
        let span = span(z, tags, self.parse_string_tags).map_err(TranslateError::Malformed)?;
        budget
            .charge_span(&span)
            .map_err(TranslateError::TooLarge)?;
        scope.spans.push(span);
        Ok(())
    }

    pub fn finish(self) -> Vec<ResourceSpans> {
        self.groups
            .into_values()
            .map(|g| ResourceSpans {
                resource: Some(g.resource),
                scope_spans: g.scopes.into_values().collect(),
                ..Default::default()
            })
            .collect()
    }
}

/// The resource of a service's first span: `service.name` (or the key `otlp.service.name.source`
/// names) and the resource-convention tags, taken out of `tags`.
fn resource_from(tags: &mut BTreeMap<String, String>, service: &str) -> Resource {
    if service == NO_SERVICE_NAME {
        return Resource::default();
    }
    let mut attrs = Attrs::default();
    let key = tags
        .remove(SERVICE_NAME_SOURCE)
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| "service.name".into());
    attrs.put(key, Value::StringValue(service.to_string()));
    let moved: Vec<String> = tags
        .keys()
        .filter(|k| is_resource_key(k) && *k != LIBRARY_NAME && *k != LIBRARY_VERSION)
        .cloned()
        .collect();
    for k in moved {
        if let Some(v) = tags.remove(&k) {
            attrs.put(k, Value::StringValue(v));
        }
    }
    Resource {
        attributes: attrs.into_vec(),
        ..Default::default()
    }
}

fn status_code(v: &str) -> StatusCode {
    match v {
        "STATUS_CODE_OK" | "Ok" => StatusCode::Ok,
        "STATUS_CODE_ERROR" | "Error" => StatusCode::Error,
        _ => StatusCode::Unset,
    }
}

/// A tag value typed as otelcol's `DetermineValueType` reads it.
fn typed(v: &str) -> Value {
    if let Ok(i) = v.parse::<i64>() {
        return Value::IntValue(i);
    }
    let numeric = v.bytes().any(|b| b.is_ascii_digit())
        && v.bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
    if numeric {
        if let Ok(f) = v.parse::<f64>() {
            return Value::DoubleValue(f);
        }
    }
    match v {
        "true" | "TRUE" | "True" | "t" | "T" => Value::BoolValue(true),
        "false" | "FALSE" | "False" | "f" | "F" => Value::BoolValue(false),
        _ => Value::StringValue(v.to_string()),
    }
}

/// `name|{json attributes}|dropped count`: otelcol's encoding of an event or link's attributes in a
/// Zipkin string. Returns the attributes and the dropped count.
fn json_attrs(json: &str, dropped: &str) -> Result<(Vec<KeyValue>, u32), String> {
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|e| format!("attributes {json:?}: {e}"))?;
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let v = match v {
            serde_json::Value::String(s) => Value::StringValue(s),
            serde_json::Value::Bool(b) => Value::BoolValue(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::IntValue(i),
                None => {
                    let f = n.as_f64().unwrap_or(0.0);
                    if f.fract() == 0.0 && f.abs() < 9.2e18 {
                        Value::IntValue(f as i64)
                    } else {
                        Value::DoubleValue(f)
                    }
                }
            },
            _ => continue,
        };
        out.push(kv(k, v));
    }
    let dropped = dropped
        .parse::<u32>()
        .map_err(|_| format!("dropped attribute count {dropped:?} is not a number"))?;
    Ok((out, dropped))
}

fn links(tags: &mut BTreeMap<String, String>) -> Result<Vec<Link>, String> {
    let mut out = Vec::new();
    for i in 0..128 {
        let Some(v) = tags.remove(&format!("otlp.link.{i}")) else {
            break;
        };
        let parts: Vec<&str> = v.split('|').collect();
        if parts.len() < 5 {
            continue;
        }
        let n = parts.len();
        let json = parts[3..n - 1].join("|");
        let (attributes, dropped) = json_attrs(&json, parts[n - 1])?;
        out.push(Link {
            trace_id: id_or_empty::<16>(parts[0])?,
            span_id: id_or_empty::<8>(parts[1])?,
            trace_state: parts[2].to_string(),
            attributes,
            dropped_attributes_count: dropped,
            ..Default::default()
        });
    }
    Ok(out)
}

fn id_or_empty<const N: usize>(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim_matches('"');
    if s.is_empty() {
        return Ok(vec![0; N]);
    }
    if s.len() != 2 * N {
        return Err(format!("invalid length for ID {s:?}"));
    }
    hex::decode(s).map_err(|_| format!("cannot unmarshal ID from string {s:?}"))
}

fn span(z: ZSpan, mut tags: BTreeMap<String, String>, parse: bool) -> Result<Span, String> {
    let mut trace_state = String::new();
    if let Some(t) = tags.remove("w3c.tracestate") {
        trace_state = t;
    }
    let parent_span_id = match z.parent_id {
        Some(p) if p != z.id && p != [0; 8] => p.to_vec(),
        _ => Vec::new(),
    };
    let kind = match z.kind {
        Some(Kind::Client) => SpanKind::Client,
        Some(Kind::Server) => SpanKind::Server,
        Some(Kind::Producer) => SpanKind::Producer,
        Some(Kind::Consumer) => SpanKind::Consumer,
        None => match tags.remove("span.kind") {
            Some(k) if k == "internal" => SpanKind::Internal,
            _ => SpanKind::Unspecified,
        },
    };
    let mut status: Option<Status> = None;
    if let Some(c) = tags.remove("otel.status_code") {
        let mut s = Status {
            code: status_code(&c) as i32,
            ..Default::default()
        };
        if let Some(m) = tags.remove("otel.status_description") {
            s.message = m;
        }
        status = Some(s);
    }
    if let Some(e) = tags.get("error") {
        let s = status.get_or_insert_with(Status::default);
        s.code = StatusCode::Error as i32;
        if e == "true" {
            tags.remove("error");
        }
    }
    let links = links(&mut tags)?;
    let mut attrs = Attrs::with_capacity(tags.len() + 4);
    for (k, v) in tags {
        if is_resource_key(&k) {
            continue;
        }
        let v = if parse {
            typed(&v)
        } else {
            Value::StringValue(v)
        };
        attrs.put(k, v);
    }
    if let Some(l) = &z.local {
        if let Some(ip) = l.ipv4 {
            attrs.put("net.host.ip".into(), Value::StringValue(ip.to_string()));
        }
        if let Some(ip) = l.ipv6 {
            attrs.put("net.host.ip".into(), Value::StringValue(ip.to_string()));
        }
        if l.port > 0 {
            attrs.put("net.host.port".into(), Value::IntValue(i64::from(l.port)));
        }
    }
    if let Some(r) = &z.remote {
        if !r.service_name.is_empty() {
            attrs.put(
                "peer.service".into(),
                Value::StringValue(r.service_name.clone()),
            );
        }
        if let Some(ip) = r.ipv4 {
            attrs.put("net.peer.ip".into(), Value::StringValue(ip.to_string()));
        }
        if let Some(ip) = r.ipv6 {
            attrs.put("net.peer.ip".into(), Value::StringValue(ip.to_string()));
        }
        if r.port > 0 {
            attrs.put("net.peer.port".into(), Value::IntValue(i64::from(r.port)));
        }
    }
    let us = |t: u64| t.saturating_mul(1000);
    let (start, end) = if z.timestamp_us == 0 {
        attrs.put(START_TIME_ABSENT.into(), Value::BoolValue(true));
        (0, us(z.duration_us))
    } else {
        (
            us(z.timestamp_us),
            us(z.timestamp_us.saturating_add(z.duration_us)),
        )
    };
    let mut events = Vec::with_capacity(z.annotations.len());
    for (t, value) in z.annotations {
        let parts: Vec<&str> = value.split('|').collect();
        let mut e = Event {
            time_unix_nano: us(t),
            name: parts[0].to_string(),
            ..Default::default()
        };
        if parts.len() >= 3 {
            let n = parts.len();
            let (a, d) = json_attrs(&parts[1..n - 1].join("|"), parts[n - 1])?;
            e.attributes = a;
            e.dropped_attributes_count = d;
        }
        events.push(e);
    }
    Ok(Span {
        trace_id: z.trace_id.to_vec(),
        span_id: z.id.to_vec(),
        trace_state,
        parent_span_id,
        name: z.name,
        kind: kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: attrs.into_vec(),
        events,
        links,
        status,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr<'a>(a: &'a [KeyValue], k: &str) -> Option<&'a Value> {
        a.iter()
            .find(|kv| kv.key == k)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    #[test]
    fn ids_read_as_zipkin_writes_them() {
        let t = trace_id_hex("463ac35c9f6413ad48485a3953bb6124").unwrap();
        assert_eq!(hex::encode(t), "463ac35c9f6413ad48485a3953bb6124");
        let t = trace_id_hex("48485a3953bb6124").unwrap();
        assert_eq!(hex::encode(t), "000000000000000048485a3953bb6124");
        assert!(trace_id_hex("zz").is_err());
        // Found by the decoder's property test: a non-ASCII id once panicked on a split.
        assert!(trace_id_hex("\u{da86f}'^4`").is_err());
        assert!(trace_id_hex("+1").is_err());
        assert_eq!(hex::encode(span_id_hex("a").unwrap()), "000000000000000a");
    }

    #[test]
    fn a_span_translates_as_otelcol_does() {
        let mut tags = BTreeMap::new();
        for (k, v) in [
            ("otel.status_code", "Error"),
            ("otel.status_description", "bad"),
            ("error", "bad"),
            ("http.status_code", "500"),
            ("host.name", "h1"),
            ("otel.library.name", "lib"),
            ("otel.library.version", "1.0"),
        ] {
            tags.insert(k.to_string(), v.to_string());
        }
        let z = ZSpan {
            trace_id: [1; 16],
            id: [2; 8],
            parent_id: Some([3; 8]),
            name: "get".into(),
            kind: Some(Kind::Server),
            timestamp_us: 1_000,
            duration_us: 5,
            local: Some(Endpoint {
                service_name: "api".into(),
                ipv4: Some(Ipv4Addr::new(10, 0, 0, 1)),
                port: 8080,
                ..Default::default()
            }),
            remote: Some(Endpoint {
                service_name: "db".into(),
                ..Default::default()
            }),
            annotations: vec![(1_002, "retry|{\"n\":2}|0".into())],
            tags,
        };
        let mut t = Translator::new(true);
        t.add(z, &mut Budget::new(1 << 20)).unwrap();
        let rs = t.finish();
        assert_eq!(rs.len(), 1);
        let res = rs[0].resource.as_ref().unwrap();
        assert_eq!(
            attr(&res.attributes, "service.name"),
            Some(&Value::StringValue("api".into()))
        );
        assert_eq!(
            attr(&res.attributes, "host.name"),
            Some(&Value::StringValue("h1".into()))
        );
        let ss = &rs[0].scope_spans[0];
        assert_eq!(ss.scope.as_ref().unwrap().name, "lib");
        assert_eq!(ss.scope.as_ref().unwrap().version, "1.0");
        let s = &ss.spans[0];
        assert_eq!(s.kind, SpanKind::Server as i32);
        assert_eq!(s.parent_span_id, vec![3; 8]);
        assert_eq!(s.start_time_unix_nano, 1_000_000);
        assert_eq!(s.end_time_unix_nano, 1_005_000);
        let st = s.status.as_ref().unwrap();
        assert_eq!(st.code, StatusCode::Error as i32);
        assert_eq!(st.message, "bad");
        // `error` with a description stays an attribute, as in otelcol.
        assert_eq!(
            attr(&s.attributes, "error"),
            Some(&Value::StringValue("bad".into()))
        );
        assert_eq!(
            attr(&s.attributes, "http.status_code"),
            Some(&Value::IntValue(500))
        );
        assert_eq!(
            attr(&s.attributes, "peer.service"),
            Some(&Value::StringValue("db".into()))
        );
        assert_eq!(
            attr(&s.attributes, "net.host.port"),
            Some(&Value::IntValue(8080))
        );
        assert!(attr(&s.attributes, "host.name").is_none());
        assert_eq!(s.events[0].name, "retry");
        assert_eq!(
            attr(&s.events[0].attributes, "n"),
            Some(&Value::IntValue(2))
        );
    }

    #[test]
    fn typed_tags() {
        assert_eq!(typed("42"), Value::IntValue(42));
        assert_eq!(typed("4.5"), Value::DoubleValue(4.5));
        assert_eq!(typed("true"), Value::BoolValue(true));
        assert_eq!(typed("inf"), Value::StringValue("inf".into()));
        assert_eq!(typed("GET"), Value::StringValue("GET".into()));
    }
}
