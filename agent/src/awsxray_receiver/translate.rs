//! X-Ray segment documents to OTLP spans, after otelcol-contrib's awsxrayreceiver translator, so
//! that what vigil's `awsxray` exporter writes from these spans is the segment again: the attribute
//! names are the ones that exporter reads (`vigil_exporters::awsxray`).
//!
//! One document (a segment, or a subsegment sent on its own with `type: subsegment`) becomes one
//! `ResourceSpans`; its embedded subsegments, at any depth, become spans of the same trace whose
//! parent is the (sub)segment they were embedded in. A document is refused whole, as otelcol
//! refuses it, when it is not JSON of the segment's shape, lacks `name`, `id`, `start_time` or
//! (at the top) `trace_id`, carries an id that is not X-Ray's hex form, a `namespace` other than
//! `aws`, `remote` or `local`, or an `sql.url` with no database name.

use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::{Event, SpanKind},
    status::StatusCode,
    ResourceSpans, ScopeSpans, Span, Status,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use vigil_core::attrs::{kv, kv_i64, kv_str, upsert};

/// What the SDKs put before each document in a datagram.
#[derive(Deserialize)]
struct Header {
    format: String,
    version: i64,
}

/// Splits a datagram into its header line and the document after it, refusing a header that is
/// not X-Ray's (`{"format":"json","version":1}`), as the daemon and otelcol do.
pub fn split_datagram(data: &[u8]) -> Result<&[u8], String> {
    let Some(nl) = data.iter().position(|b| *b == b'\n') else {
        return Err("no header line (X-Ray's datagrams start with {\"format\":\"json\",\"version\":1} and a newline)".into());
    };
    let header: Header = serde_json::from_slice(&data[..nl])
        .map_err(|e| format!("the header line is not X-Ray's: {e}"))?;
    if header.format != "json" || header.version != 1 {
        return Err(format!(
            "header format {:?} version {}: only json version 1 is X-Ray's",
            header.format, header.version
        ));
    }
    let body = &data[nl + 1..];
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("the datagram has a header but no segment document".into());
    }
    Ok(body)
}

/// A segment or subsegment document; unknown fields are X-Ray's own and ignored.
#[derive(Debug, Default, Deserialize)]
pub struct Segment {
    name: Option<String>,
    id: Option<String>,
    start_time: Option<f64>,
    trace_id: Option<String>,
    end_time: Option<f64>,
    in_progress: Option<bool>,
    user: Option<String>,
    parent_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    namespace: Option<String>,
    traced: Option<bool>,
    resource_arn: Option<String>,
    error: Option<bool>,
    fault: Option<bool>,
    throttle: Option<bool>,
    http: Option<Http>,
    aws: Option<Aws>,
    sql: Option<Sql>,
    service: Option<ServiceData>,
    cause: Option<Cause>,
    annotations: Option<Map<String, Value>>,
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    subsegments: Vec<Segment>,
}

#[derive(Debug, Deserialize)]
struct Http {
    request: Option<HttpRequest>,
    response: Option<HttpResponse>,
}

#[derive(Debug, Deserialize)]
struct HttpRequest {
    method: Option<String>,
    client_ip: Option<String>,
    user_agent: Option<String>,
    url: Option<String>,
    x_forwarded_for: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct HttpResponse {
    status: Option<i64>,
    /// A number or a string, depending on the SDK.
    content_length: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Aws {
    account_id: Option<String>,
    operation: Option<String>,
    #[serde(rename = "region")]
    remote_region: Option<String>,
    request_id: Option<String>,
    queue_url: Option<String>,
    table_name: Option<String>,
    retries: Option<i64>,
    ec2: Option<Ec2>,
    ecs: Option<Ecs>,
    elastic_beanstalk: Option<Beanstalk>,
    eks: Option<Eks>,
    xray: Option<XrayMeta>,
}

#[derive(Debug, Deserialize)]
struct Ec2 {
    instance_id: Option<String>,
    availability_zone: Option<String>,
    instance_size: Option<String>,
    ami_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Ecs {
    container: Option<String>,
    container_id: Option<String>,
    availability_zone: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Beanstalk {
    environment_name: Option<String>,
    version_label: Option<String>,
    deployment_id: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Eks {
    cluster_name: Option<String>,
    pod: Option<String>,
    container_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct XrayMeta {
    sdk: Option<String>,
    sdk_version: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Sql {
    url: Option<String>,
    database_type: Option<String>,
    sanitized_query: Option<String>,
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ServiceData {
    version: Option<String>,
}

/// `cause`: the 16-hex id of an exception recorded in another (sub)segment, or the exceptions.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Cause {
    ExceptionId(String),
    Object {
        #[serde(default)]
        exceptions: Vec<Exception>,
    },
}

#[derive(Debug, Deserialize)]
struct Exception {
    id: String,
    message: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    remote: Option<bool>,
    truncated: Option<i64>,
    skipped: Option<i64>,
    cause: Option<String>,
    #[serde(default)]
    stack: Vec<Frame>,
}

#[derive(Debug, Deserialize)]
struct Frame {
    path: Option<String>,
    line: Option<i64>,
    label: Option<String>,
}

/// One document's spans, or why it was refused; `spans` counts the document's (sub)segments
/// either way (a document that is not JSON counts one), as otelcol counts them.
pub struct Translated {
    pub spans: usize,
    pub result: Result<ResourceSpans, String>,
}

fn count(seg: &Segment) -> usize {
    1 + seg.subsegments.iter().map(count).sum::<usize>()
}

/// The spans of one segment document (the datagram's body, after the header line).
pub fn to_resource_spans(doc: &[u8]) -> Translated {
    let seg: Segment = match serde_json::from_slice(doc) {
        Ok(s) => s,
        Err(e) => {
            return Translated {
                spans: 1,
                result: Err(format!("not a segment document: {e}")),
            }
        }
    };
    let spans = count(&seg);
    Translated {
        spans,
        result: translate(&seg),
    }
}

fn translate(seg: &Segment) -> Result<ResourceSpans, String> {
    for (field, missing) in [
        ("name", seg.name.is_none()),
        ("id", seg.id.is_none()),
        ("start_time", seg.start_time.is_none()),
        ("trace_id", seg.trace_id.is_none()),
    ] {
        if missing {
            return Err(format!("segment \"{field}\" is missing"));
        }
    }
    let trace_id = seg.trace_id.as_deref().unwrap_or_default();
    let trace = trace_id_bytes(trace_id)?;
    // A subsegment sent on its own (an SDK streams them when a segment grows large) is the child
    // of a span sent elsewhere: not a server span.
    let is_sub = seg.parent_id.is_some()
        && seg
            .kind
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("subsegment"));
    let mut spans = Vec::with_capacity(count(seg));
    to_spans(seg, &trace, None, is_sub, &mut spans)?;
    Ok(ResourceSpans {
        resource: Some(Resource {
            attributes: resource_attrs(seg),
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope::default()),
            spans,
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn to_spans(
    seg: &Segment,
    trace: &[u8],
    parent: Option<&str>,
    is_sub: bool,
    out: &mut Vec<Span>,
) -> Result<(), String> {
    let span = span(seg, trace, parent, is_sub)?;
    let id = seg.id.clone().unwrap_or_default();
    out.push(span);
    for sub in &seg.subsegments {
        if sub.name.is_none() || sub.id.is_none() || sub.start_time.is_none() {
            return Err(format!(
                "a subsegment of {id} lacks \"name\", \"id\" or \"start_time\""
            ));
        }
        to_spans(sub, trace, Some(&id), true, out)?;
    }
    Ok(())
}

/// `1-5f84c7a1-e7d1852db8c4fd35d88bf49a`: the version, 8 hex digits of epoch seconds, 24 of
/// random; the id is the 32 digits together.
pub fn trace_id_bytes(id: &str) -> Result<Vec<u8>, String> {
    let bad = || format!("trace_id {id:?} is not X-Ray's form 1-<8 hex>-<24 hex>");
    let mut parts = id.split('-');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(t), Some(r), None) if t.len() == 8 && r.len() == 24 => {
            hex(&format!("{t}{r}")).ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

fn span_id_bytes(field: &str, id: &str) -> Result<Vec<u8>, String> {
    if id.len() != 16 {
        return Err(format!("{field} {id:?} is not 16 hex digits"));
    }
    hex(id).ok_or_else(|| format!("{field} {id:?} is not 16 hex digits"))
}

/// Hex to bytes; written here because this is all the agent needs of a hex crate.
fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn nanos(secs: f64) -> u64 {
    // Saturating: a negative or absurd time is X-Ray's problem, not a panic.
    (secs * 1e9) as u64
}

fn span(seg: &Segment, trace: &[u8], parent: Option<&str>, is_sub: bool) -> Result<Span, String> {
    let name = seg.name.clone().unwrap_or_default();
    let mut attrs: Vec<KeyValue> = Vec::with_capacity(16);
    let mut kind = SpanKind::Unspecified;
    let client_ip = seg
        .http
        .as_ref()
        .and_then(|h| h.request.as_ref())
        .and_then(|r| r.client_ip.as_ref());
    if client_ip.is_some() {
        // Only a server records the address its request came from.
        kind = SpanKind::Server;
    }
    match seg.namespace.as_deref() {
        None | Some("local") => {
            if kind == SpanKind::Unspecified {
                kind = SpanKind::Internal;
            }
        }
        Some("aws") => {
            kind = SpanKind::Client;
            attrs.push(kv_str("aws.service", &name));
        }
        Some("remote") => kind = SpanKind::Client,
        Some(other) => {
            return Err(format!(
                "namespace {other:?} of {name}: X-Ray's are aws, remote and local"
            ))
        }
    }
    if !is_sub {
        kind = SpanKind::Server;
    }
    let id = span_id_bytes("id", seg.id.as_deref().unwrap_or_default())?;
    let parent = match parent.or(seg.parent_id.as_deref()) {
        Some(p) => span_id_bytes("parent_id", p)?,
        None => Vec::new(),
    };
    let mut status = Status::default();
    if let Some(b) = seg.in_progress {
        attrs.push(kv("aws.xray.inprogress", any_value::Value::BoolValue(b)));
    }
    if let Some(u) = &seg.user {
        attrs.push(kv_str("enduser.id", u));
    }
    http_attrs(seg, &mut attrs, &mut status);
    let mut events = Vec::new();
    cause(seg, &mut status, &mut events);
    if status.code == StatusCode::Unset as i32
        && [seg.fault, seg.error, seg.throttle].contains(&Some(true))
    {
        // otelcol reads only the HTTP status and the cause; a (sub)segment flagged without either
        // (an SDK's failed local call) would otherwise read as fine.
        status.code = StatusCode::Error as i32;
    }
    if let Some(aws) = &seg.aws {
        let s = |v: &Option<String>, k: &str, attrs: &mut Vec<KeyValue>| {
            if let Some(v) = v {
                attrs.push(kv_str(k, v));
            }
        };
        s(&aws.account_id, "aws.account_id", &mut attrs);
        s(&aws.operation, "aws.operation", &mut attrs);
        s(&aws.remote_region, "aws.region", &mut attrs);
        s(&aws.request_id, "aws.request_id", &mut attrs);
        s(&aws.queue_url, "aws.queue_url", &mut attrs);
        s(&aws.table_name, "aws.table_name", &mut attrs);
        if let Some(r) = aws.retries {
            attrs.push(kv_i64("aws.xray.retries", r));
        }
    }
    if let Some(sql) = &seg.sql {
        sql_attrs(sql, &mut attrs)?;
    }
    if let Some(t) = seg.traced {
        attrs.push(kv("aws.xray.traced", any_value::Value::BoolValue(t)));
    }
    annotations(seg, &mut attrs);
    if let Some(meta) = &seg.metadata {
        for (ns, v) in meta {
            attrs.push(kv_str(&format!("aws.xray.metadata.{ns}"), v.to_string()));
        }
    }
    Ok(Span {
        trace_id: trace.to_vec(),
        span_id: id,
        parent_span_id: parent,
        name,
        kind: kind as i32,
        start_time_unix_nano: seg.start_time.map_or(0, nanos),
        end_time_unix_nano: seg.end_time.map_or(0, nanos),
        attributes: attrs,
        events,
        status: Some(status),
        ..Default::default()
    })
}

fn http_attrs(seg: &Segment, attrs: &mut Vec<KeyValue>, status: &mut Status) {
    let Some(http) = &seg.http else { return };
    if let Some(req) = &http.request {
        for (v, k) in [
            (&req.method, "http.method"),
            (&req.client_ip, "http.client_ip"),
            (&req.user_agent, "http.user_agent"),
            (&req.url, "http.url"),
        ] {
            if let Some(v) = v {
                attrs.push(kv_str(k, v));
            }
        }
        if let Some(x) = req.x_forwarded_for {
            attrs.push(kv(
                "aws.xray.x_forwarded_for",
                any_value::Value::BoolValue(x),
            ));
        }
    }
    if let Some(resp) = &http.response {
        if let Some(code) = resp.status {
            if !(100..399).contains(&code) {
                status.code = StatusCode::Error as i32;
            }
            attrs.push(kv_i64("http.status_code", code));
        }
        match &resp.content_length {
            Some(Value::String(s)) => attrs.push(kv_str("http.response_content_length", s)),
            Some(Value::Number(n)) => {
                if let Some(f) = n.as_f64() {
                    attrs.push(kv_i64("http.response_content_length", f as i64));
                }
            }
            _ => {}
        }
    }
}

fn cause(seg: &Segment, status: &mut Status, events: &mut Vec<Event>) {
    let Some(cause) = &seg.cause else { return };
    // The cause may be a subsegment's exception and the HTTP status only in that subsegment: the
    // segment failed all the same.
    if status.code == StatusCode::Unset as i32 {
        status.code = StatusCode::Error as i32;
    }
    match cause {
        Cause::ExceptionId(id) => status.message = id.clone(),
        Cause::Object { exceptions } => {
            for ex in exceptions {
                let mut a = vec![kv_str("aws.xray.exception.id", &ex.id)];
                if let Some(m) = &ex.message {
                    a.push(kv_str("exception.message", m));
                }
                if let Some(t) = &ex.kind {
                    a.push(kv_str("exception.type", t));
                }
                if let Some(r) = ex.remote {
                    a.push(kv(
                        "aws.xray.exception.remote",
                        any_value::Value::BoolValue(r),
                    ));
                }
                if let Some(t) = ex.truncated {
                    a.push(kv_i64("aws.xray.exception.truncated", t));
                }
                if let Some(s) = ex.skipped {
                    a.push(kv_i64("aws.xray.exception.skipped", s));
                }
                if let Some(c) = &ex.cause {
                    a.push(kv_str("aws.xray.exception.cause", c));
                }
                if !ex.stack.is_empty() {
                    a.push(kv_str("exception.stacktrace", stacktrace(ex)));
                }
                events.push(Event {
                    name: "exception".into(),
                    attributes: a,
                    ..Default::default()
                });
            }
        }
    }
}

/// Java's form, as otelcol writes it: `Type: message` then `\tat label(path: line)` a frame.
fn stacktrace(ex: &Exception) -> String {
    let mut s = format!(
        "{}: {}\n",
        ex.kind.as_deref().unwrap_or_default(),
        ex.message.as_deref().unwrap_or_default()
    );
    for f in &ex.stack {
        let line = f.line.map_or("<unknown>".to_string(), |l| l.to_string());
        s.push_str(&format!(
            "\tat {}({}: {line})\n",
            f.label.as_deref().unwrap_or_default(),
            f.path.as_deref().unwrap_or_default()
        ));
    }
    s
}

/// `protocol://host:port/dbname?params` → (`protocol://host:port`, `dbname`), with otelcol's
/// regular expression `^(.+//.+)/([^?]+)\??.*$`.
fn split_sql_url(url: &str) -> Option<(String, String)> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"^(.+//.+)/([^?]+)\??.*$")
            .unwrap_or_else(|e| unreachable!("a constant regex: {e}"))
    });
    let c = re.captures(url)?;
    Some((c[1].to_string(), c[2].to_string()))
}

fn sql_attrs(sql: &Sql, attrs: &mut Vec<KeyValue>) -> Result<(), String> {
    if let Some(url) = &sql.url {
        let (conn, db) = split_sql_url(url)
            .ok_or_else(|| format!("sql.url {url:?} names no database (protocol://host/db)"))?;
        attrs.push(kv_str("db.connection_string", conn));
        attrs.push(kv_str("db.name", db));
    }
    for (v, k) in [
        (&sql.database_type, "db.system"),
        (&sql.sanitized_query, "db.statement"),
        (&sql.user, "db.user"),
    ] {
        if let Some(v) = v {
            attrs.push(kv_str(k, v));
        }
    }
    Ok(())
}

/// Annotations become attributes of their own name, listed in `aws.xray.annotations` so that the
/// exporter writes them back as annotations. JSON numbers are doubles here, as in otelcol.
fn annotations(seg: &Segment, attrs: &mut Vec<KeyValue>) {
    let Some(annos) = seg.annotations.as_ref().filter(|a| !a.is_empty()) else {
        return;
    };
    let keys = annos
        .keys()
        .map(|k| AnyValue {
            value: Some(any_value::Value::StringValue(k.clone())),
        })
        .collect();
    attrs.push(kv(
        "aws.xray.annotations",
        any_value::Value::ArrayValue(ArrayValue { values: keys }),
    ));
    for (k, v) in annos {
        match v {
            Value::String(s) => upsert(attrs, k, any_value::Value::StringValue(s.clone())),
            Value::Bool(b) => upsert(attrs, k, any_value::Value::BoolValue(*b)),
            Value::Number(n) => {
                if let Some(f) = n.as_f64() {
                    upsert(attrs, k, any_value::Value::DoubleValue(f));
                }
            }
            _ => {}
        }
    }
}

fn resource_attrs(seg: &Segment) -> Vec<KeyValue> {
    let mut a: Vec<KeyValue> = Vec::with_capacity(12);
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            upsert(&mut a, k, any_value::Value::StringValue(v.clone()));
        }
    };
    put("service.name", &seg.name);
    match &seg.aws {
        None => put("cloud.provider", &Some("unknown".into())),
        Some(aws) => {
            put("cloud.provider", &Some("aws".into()));
            put("cloud.account.id", &aws.account_id);
            if let Some(e) = &aws.ec2 {
                put("cloud.availability_zone", &e.availability_zone);
                put("host.id", &e.instance_id);
                put("host.type", &e.instance_size);
                put("host.image.id", &e.ami_id);
            }
            if let Some(e) = &aws.ecs {
                put("container.name", &e.container);
                put("cloud.availability_zone", &e.availability_zone);
                put("container.id", &e.container_id);
            }
            if let Some(b) = &aws.elastic_beanstalk {
                put("service.namespace", &b.environment_name);
                put(
                    "service.instance.id",
                    &b.deployment_id.map(|d| d.to_string()),
                );
                put("service.version", &b.version_label);
            }
            if let Some(e) = &aws.eks {
                put("container.id", &e.container_id);
                put("k8s.cluster.name", &e.cluster_name);
                put("k8s.pod.name", &e.pod);
            }
            if let Some(x) = &aws.xray {
                put("telemetry.sdk.version", &x.sdk_version);
                if let Some(sdk) = &x.sdk {
                    put("telemetry.sdk.name", &Some(sdk.clone()));
                    // otelcol's exporter writes only Java's stack form, so a segment with
                    // exceptions is called Java's; else the language is the SDK's "X-Ray for Go".
                    let has_exceptions = matches!(&seg.cause, Some(Cause::Object { exceptions }) if !exceptions.is_empty());
                    let lang = if has_exceptions {
                        Some("java".to_string())
                    } else {
                        sdk.split_once("for ").map(|(_, l)| l.to_string())
                    };
                    put("telemetry.sdk.language", &lang);
                }
            }
        }
    }
    if let Some(s) = &seg.service {
        put("service.version", &s.version);
    }
    put("aws.xray.resource_arn", &seg.resource_arn);
    a
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
