//! `awsxray`: spans to AWS X-Ray as segment documents, sent with `PutTraceSegments` (50 a call,
//! as otelcol sends them). After otelcol's awsxrayexporter translator: a server span or a local
//! root is a segment named after the service, any other span an independent subsegment named
//! after what it calls (`peer.service`, `aws.service`, `db.name@host`, `rpc.service`, the HTTP
//! host, else the span name); HTTP, SQL and AWS attributes fill the `http`, `sql` and `aws`
//! blocks, the span's status and exception events `fault`/`error`/`throttle` and `cause`;
//! `indexed_attributes` (or all with `index_all_attributes`) become annotations and the rest
//! metadata.
//!
//! X-Ray keeps the trace's start time in its id (`1-<epoch seconds>-<96 bits>`), so a span whose
//! trace id does not start with a time of the last 28 days is not X-Ray's and is refused, as
//! otelcol refuses it (counted as rejected, the rest of the batch is sent): applications use the
//! X-Ray id generator. With `telemetry::enabled`, `PutTelemetryRecords` reports each minute what
//! was sent and refused, as otelcol's exporter does.

use crate::helper::aws::{CredentialSource, JsonApi};
use crate::helper::queue::Persist;
use crate::helper::{
    Delivered, QueueConfig, RetryConfig, SendError, SendSettings, SendStack, Sender,
};
use async_trait::async_trait;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vigil_core::config::duration;
use vigil_core::factory::{DynExporterFactory, ExporterFactory, FactoryBase};
use vigil_core::{
    ComponentId, ConfigError, Exporter, Host, Settings, Signal, Stability, Telemetry,
};

/// Segment documents in one `PutTraceSegments` call (otelcol's batch size; X-Ray's limit).
const PER_CALL: usize = 50;
/// X-Ray's limit on one document.
const MAX_DOCUMENT: usize = 64 * 1024;
/// How old a trace id's time may be (X-Ray keeps 30 days; otelcol allows 28) and how far ahead.
const MAX_AGE_SECS: i64 = 28 * 24 * 3600;
const MAX_SKEW_SECS: i64 = 300;

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

crate::aws_session_config! {
    /// The `awsxray` exporter config (otelcol's keys and defaults).
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct AwsXrayConfig {
        /// Span attributes written as annotations (indexed) rather than metadata.
        #[serde(default)]
        pub indexed_attributes: Vec<String>,
        #[serde(default)]
        pub index_all_attributes: bool,
        /// Log groups named in every segment's `aws.cloudwatch_logs`.
        #[serde(default)]
        pub aws_log_groups: Vec<String>,
        #[serde(default)]
        pub telemetry: XrayTelemetry,
        /// Accepted for otelcol's configs (its OTLP-to-X-Ray transit is not used here).
        #[serde(default)]
        pub transit_spans_in_otlp_format: bool,
        /// Accepted for otelcol's configs (AppSignals' middleware is otelcol's own).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub middleware: Option<Value>,
        #[serde(default = "default_timeout", with = "duration")]
        pub timeout: Duration,
        #[serde(default)]
        pub retry_on_failure: RetryConfig,
        #[serde(default)]
        pub sending_queue: QueueConfig,
    }
}

/// `telemetry`: X-Ray's own records of what the exporter sent.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct XrayTelemetry {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub include_metadata: bool,
    #[serde(default)]
    pub contributors: Vec<String>,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub instance_id: String,
    #[serde(default)]
    pub resource_arn: String,
}

impl AwsXrayConfig {
    fn validate(&self, id: &ComponentId) -> Result<(), ConfigError> {
        self.session().validate(|k, m| ConfigError::at(k, m))?;
        self.settings().validate(id)
    }

    fn settings(&self) -> SendSettings {
        SendSettings {
            timeout: self.timeout,
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
        }
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    vigil_core::attrs::get(attrs, key)
}

fn attr_str<'a>(attrs: &'a [KeyValue], keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| vigil_core::attrs::get_str(attrs, k))
}

fn attr_i64(attrs: &[KeyValue], keys: &[&str]) -> Option<i64> {
    keys.iter().find_map(|k| match attr(attrs, k) {
        Some(any_value::Value::IntValue(i)) => Some(*i),
        Some(any_value::Value::StringValue(s)) => s.parse().ok(),
        Some(any_value::Value::DoubleValue(d)) => Some(*d as i64),
        _ => None,
    })
}

/// An attribute value as JSON (metadata takes any shape).
fn raw(v: &any_value::Value) -> Value {
    use any_value::Value as V;
    match v {
        V::StringValue(s) => json!(s),
        V::BoolValue(b) => json!(b),
        V::IntValue(i) => json!(i),
        V::DoubleValue(d) => serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number),
        V::ArrayValue(a) => Value::Array(
            a.values
                .iter()
                .filter_map(|x| x.value.as_ref())
                .map(raw)
                .collect(),
        ),
        V::KvlistValue(l) => Value::Object(
            l.values
                .iter()
                .filter_map(|kv| Some((kv.key.clone(), raw(kv.value.as_ref()?.value.as_ref()?))))
                .collect(),
        ),
        other => json!(vigil_core::attrs::value_to_string(other)),
    }
}

/// An annotation value: only strings, numbers and booleans are indexed.
fn annotation(v: &any_value::Value) -> Option<Value> {
    use any_value::Value as V;
    match v {
        V::StringValue(_) | V::BoolValue(_) | V::IntValue(_) | V::DoubleValue(_) => Some(raw(v)),
        _ => None,
    }
}

/// X-Ray's annotation keys take letters, digits and `_` only.
fn annotation_key(k: &str) -> String {
    k.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// X-Ray's segment name characters; at most 200, `span` when nothing is left.
fn segment_name(name: &str) -> String {
    let kept: String = name
        .chars()
        .filter(|c| c.is_alphanumeric() || " _.:/%&#=+,-@".contains(*c))
        .take(200)
        .collect();
    if kept.is_empty() {
        "span".into()
    } else {
        kept
    }
}

/// The X-Ray form of a trace id, refused when its leading time is not one X-Ray takes.
pub fn xray_trace_id(id: &[u8], now_secs: i64) -> Result<String, String> {
    if id.len() != 16 {
        return Err(format!("a trace id of {} bytes", id.len()));
    }
    let epoch = i64::from(u32::from_be_bytes([id[0], id[1], id[2], id[3]]));
    let age = now_secs - epoch;
    if !(-MAX_SKEW_SECS..=MAX_AGE_SECS).contains(&age) {
        return Err(format!(
            "trace id {} does not start with a time of the last 28 days (X-Ray's form; use the \
             X-Ray id generator in the application)",
            hex::encode(id)
        ));
    }
    Ok(format!(
        "1-{}-{}",
        hex::encode(&id[..4]),
        hex::encode(&id[4..])
    ))
}

fn seconds(nanos: u64) -> Value {
    serde_json::Number::from_f64(nanos as f64 / 1e9).map_or(json!(0), Value::Number)
}

/// Keys consumed into the `http`, `sql` and `aws` blocks, kept out of metadata.
const CONSUMED: &[&str] = &[
    "http.method",
    "http.request.method",
    "http.url",
    "url.full",
    "http.client_ip",
    "client.address",
    "http.user_agent",
    "user_agent.original",
    "http.status_code",
    "http.response.status_code",
    "http.response_content_length",
    "http.target",
    "http.scheme",
    "http.host",
    "url.scheme",
    "url.path",
    "url.query",
    "server.address",
    "server.port",
    "net.peer.ip",
    "db.system",
    "db.statement",
    "db.query.text",
    "db.user",
    "db.name",
    "db.connection_string",
    "aws.operation",
    "rpc.method",
    "aws.region",
    "aws.request_id",
    "aws.requestId",
    "aws.queue_url",
    "aws.table_name",
    "aws.service",
    "rpc.service",
    "rpc.system",
    "enduser.id",
    "aws.xray.annotations",
    "peer.service",
];

/// The segment document of one span.
pub fn segment(
    span: &Span,
    resource: &[KeyValue],
    cfg: &AwsXrayConfig,
    now_secs: i64,
) -> Result<Value, String> {
    let a = &span.attributes;
    let kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
    let is_sub = kind != SpanKind::Server && !span.parent_span_id.is_empty();
    let trace_id = xray_trace_id(&span.trace_id, now_secs)?;
    let mut namespace = "";
    if attr_str(a, &["rpc.system"]) == Some("aws-api") {
        namespace = "aws";
    }
    let mut name = attr_str(a, &["peer.service"]).map(str::to_string);
    if name.is_none() {
        if let Some(svc) = attr_str(a, &["aws.service"]) {
            name = Some(svc.to_string());
            namespace = "aws";
        }
    }
    if name.is_none() {
        if let Some(db) = attr_str(a, &["db.name"]) {
            let host = attr_str(a, &["db.connection_string"])
                .and_then(|c| url::Url::parse(c).ok())
                .and_then(|u| u.host_str().map(str::to_string));
            name = Some(match host {
                Some(h) => format!("{db}@{h}"),
                None => db.to_string(),
            });
        }
    }
    if name.is_none() && kind == SpanKind::Server {
        name = attr_str(resource, &["service.name"]).map(str::to_string);
    }
    let name = name
        .or_else(|| {
            attr_str(
                a,
                &[
                    "rpc.service",
                    "http.host",
                    "server.address",
                    "net.peer.name",
                ],
            )
            .map(str::to_string)
        })
        .unwrap_or_else(|| span.name.clone());
    if namespace.is_empty() && kind == SpanKind::Client {
        namespace = "remote";
    }

    let mut doc = Map::new();
    doc.insert("name".into(), json!(segment_name(&name)));
    doc.insert("id".into(), json!(hex::encode(&span.span_id)));
    doc.insert("trace_id".into(), json!(trace_id));
    doc.insert("start_time".into(), seconds(span.start_time_unix_nano));
    doc.insert("end_time".into(), seconds(span.end_time_unix_nano));
    if !span.parent_span_id.is_empty() {
        doc.insert("parent_id".into(), json!(hex::encode(&span.parent_span_id)));
    }
    if is_sub {
        doc.insert("type".into(), json!("subsegment"));
    }
    if !namespace.is_empty() {
        doc.insert("namespace".into(), json!(namespace));
    }

    // http
    let status = attr_i64(a, &["http.response.status_code", "http.status_code"]);
    let mut request = Map::new();
    if let Some(m) = attr_str(a, &["http.request.method", "http.method"]) {
        request.insert("method".into(), json!(m));
    }
    let url = attr_str(a, &["url.full", "http.url"])
        .map(str::to_string)
        .or_else(|| {
            let host = attr_str(a, &["http.host", "server.address"])?;
            let scheme = attr_str(a, &["url.scheme", "http.scheme"]).unwrap_or("http");
            let target = attr_str(a, &["http.target", "url.path"]).unwrap_or("");
            Some(format!("{scheme}://{host}{target}"))
        });
    if let Some(u) = url {
        request.insert("url".into(), json!(u));
    }
    if let Some(ip) = attr_str(a, &["client.address", "http.client_ip", "net.peer.ip"]) {
        request.insert("client_ip".into(), json!(ip));
    }
    if let Some(ua) = attr_str(a, &["user_agent.original", "http.user_agent"]) {
        request.insert("user_agent".into(), json!(ua));
    }
    let mut response = Map::new();
    if let Some(s) = status {
        response.insert("status".into(), json!(s));
    }
    if let Some(l) = attr_i64(a, &["http.response_content_length"]) {
        response.insert("content_length".into(), json!(l));
    }
    if !request.is_empty() || !response.is_empty() {
        let mut http = Map::new();
        if !request.is_empty() {
            http.insert("request".into(), Value::Object(request));
        }
        if !response.is_empty() {
            http.insert("response".into(), Value::Object(response));
        }
        doc.insert("http".into(), Value::Object(http));
    }

    // fault / error / throttle and cause
    let span_error = span
        .status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32);
    let (mut fault, mut error, mut throttle) = (false, false, false);
    match status {
        Some(429) => {
            error = true;
            throttle = true;
        }
        Some(s) if (400..500).contains(&s) => error = true,
        Some(s) if s >= 500 => fault = true,
        _ if span_error => fault = true,
        _ => {}
    }
    doc.insert("fault".into(), json!(fault));
    doc.insert("error".into(), json!(error));
    doc.insert("throttle".into(), json!(throttle));
    let mut exceptions = Vec::new();
    for ev in span.events.iter().filter(|e| e.name == "exception") {
        let mut ex = Map::new();
        ex.insert(
            "id".into(),
            json!(format!("{:016x}", rand::random::<u64>())),
        );
        if let Some(t) = attr_str(&ev.attributes, &["exception.type"]) {
            ex.insert("type".into(), json!(t));
        }
        if let Some(m) = attr_str(&ev.attributes, &["exception.message"]) {
            ex.insert("message".into(), json!(m));
        }
        if let Some(st) = attr_str(&ev.attributes, &["exception.stacktrace"]) {
            ex.insert(
                "stack".into(),
                json!([{"label": st.lines().next().unwrap_or_default()}]),
            );
        }
        exceptions.push(Value::Object(ex));
    }
    if exceptions.is_empty() && (fault || error) {
        if let Some(msg) = span
            .status
            .as_ref()
            .map(|s| s.message.as_str())
            .filter(|m| !m.is_empty())
        {
            exceptions
                .push(json!({"id": format!("{:016x}", rand::random::<u64>()), "message": msg}));
        }
    }
    if !exceptions.is_empty() {
        doc.insert("cause".into(), json!({"exceptions": exceptions}));
    }

    // aws, origin, service
    let mut aws_block = Map::new();
    for (key, field) in [
        ("aws.operation", "operation"),
        ("aws.region", "region"),
        ("aws.request_id", "request_id"),
        ("aws.requestId", "request_id"),
        ("aws.queue_url", "queue_url"),
        ("aws.table_name", "table_name"),
    ] {
        if let Some(v) = attr_str(a, &[key]) {
            aws_block.insert(field.into(), json!(v));
        }
    }
    if namespace == "aws" && !aws_block.contains_key("operation") {
        if let Some(m) = attr_str(a, &["rpc.method"]) {
            aws_block.insert("operation".into(), json!(m));
        }
    }
    let mut log_groups: Vec<Value> = cfg
        .aws_log_groups
        .iter()
        .map(|g| json!({"log_group": g}))
        .collect();
    if log_groups.is_empty() {
        if let Some(any_value::Value::ArrayValue(arr)) = attr(resource, "aws.log.group.names") {
            for v in arr.values.iter().filter_map(|v| v.value.as_ref()) {
                if let any_value::Value::StringValue(g) = v {
                    log_groups.push(json!({"log_group": g}));
                }
            }
        }
    }
    if !log_groups.is_empty() {
        aws_block.insert("cloudwatch_logs".into(), Value::Array(log_groups));
    }
    if !is_sub {
        if let Some(sdk) = attr_str(resource, &["telemetry.sdk.name"]) {
            let lang = attr_str(resource, &["telemetry.sdk.language"]).unwrap_or("unknown");
            let mut xray = json!({"sdk": format!("{sdk} for {lang}")});
            if let Some(v) = attr_str(resource, &["telemetry.sdk.version"]) {
                xray["sdk_version"] = json!(v);
            }
            xray["auto_instrumentation"] =
                json!(attr_str(resource, &["telemetry.auto.version"]).is_some());
            aws_block.insert("xray".into(), xray);
        }
        let platform = attr_str(resource, &["cloud.platform"]).unwrap_or("");
        if let Some(i) = attr_str(resource, &["host.id"]).filter(|_| platform == "aws_ec2") {
            let mut ec2 = json!({"instance_id": i});
            if let Some(z) = attr_str(resource, &["cloud.availability_zone"]) {
                ec2["availability_zone"] = json!(z);
            }
            if let Some(t) = attr_str(resource, &["host.type"]) {
                ec2["instance_size"] = json!(t);
            }
            aws_block.insert("ec2".into(), ec2);
        }
        if platform == "aws_ecs" {
            aws_block.insert(
                "ecs".into(),
                json!({"container": attr_str(resource, &["host.name"]).unwrap_or_default(),
                       "container_id": attr_str(resource, &["container.id"]).unwrap_or_default()}),
            );
        }
        if platform == "aws_eks" {
            aws_block.insert(
                "eks".into(),
                json!({"cluster_name": attr_str(resource, &["k8s.cluster.name"]).unwrap_or_default(),
                       "pod": attr_str(resource, &["k8s.pod.name"]).unwrap_or_default(),
                       "container_id": attr_str(resource, &["container.id"]).unwrap_or_default()}),
            );
        }
        let origin = match platform {
            "aws_ec2" => "AWS::EC2::Instance",
            "aws_eks" => "AWS::EKS::Container",
            "aws_elastic_beanstalk" => "AWS::ElasticBeanstalk::Environment",
            "aws_app_runner" => "AWS::AppRunner::Service",
            "aws_ecs" => match attr_str(resource, &["aws.ecs.launchtype"]) {
                Some("ec2") => "AWS::ECS::EC2",
                Some("fargate") => "AWS::ECS::Fargate",
                _ => "AWS::ECS::Container",
            },
            _ => "",
        };
        let aws_cloud = attr_str(resource, &["cloud.provider"]).is_none_or(|p| p == "aws");
        if !origin.is_empty() && aws_cloud {
            doc.insert("origin".into(), json!(origin));
        }
        if let Some(v) = attr_str(resource, &["service.version"]) {
            doc.insert("service".into(), json!({"version": v}));
        }
    }
    if !aws_block.is_empty() {
        doc.insert("aws".into(), Value::Object(aws_block));
    }

    // sql
    if let (Some(system), Some(stmt)) = (
        attr_str(a, &["db.system"]),
        attr_str(a, &["db.statement", "db.query.text"]),
    ) {
        let mut sql = json!({"database_type": system, "sanitized_query": stmt});
        if let Some(c) = attr_str(a, &["db.connection_string"]) {
            let db = attr_str(a, &["db.name"]).unwrap_or_default();
            sql["url"] = json!(format!("{c}/{db}"));
        }
        if let Some(u) = attr_str(a, &["db.user"]) {
            sql["user"] = json!(u);
        }
        doc.insert("sql".into(), sql);
    }

    if let Some(u) = attr_str(a, &["enduser.id"]) {
        doc.insert("user".into(), json!(u));
    }

    // annotations and metadata
    let mut indexed: Vec<String> = cfg.indexed_attributes.clone();
    if let Some(any_value::Value::ArrayValue(arr)) = attr(a, "aws.xray.annotations") {
        for v in arr.values.iter().filter_map(|v| v.value.as_ref()) {
            if let any_value::Value::StringValue(k) = v {
                indexed.push(k.clone());
            }
        }
    }
    let mut annotations = Map::new();
    let mut metadata = Map::new();
    if !is_sub {
        for kv in resource {
            let Some(v) = kv.value.as_ref().and_then(|v| v.value.as_ref()) else {
                continue;
            };
            let key = format!("otel.resource.{}", kv.key);
            match annotation(v).filter(|_| cfg.index_all_attributes || indexed.contains(&key)) {
                Some(av) => {
                    annotations.insert(annotation_key(&key), av);
                }
                None => {
                    metadata.insert(key, raw(v));
                }
            }
        }
    }
    for kv in a {
        let Some(v) = kv.value.as_ref().and_then(|v| v.value.as_ref()) else {
            continue;
        };
        let wanted = cfg.index_all_attributes || indexed.contains(&kv.key);
        if wanted {
            if let Some(av) = annotation(v) {
                annotations.insert(annotation_key(&kv.key), av);
                continue;
            }
        }
        if !CONSUMED.contains(&kv.key.as_str()) {
            metadata.insert(kv.key.clone(), raw(v));
        }
    }
    if !annotations.is_empty() {
        doc.insert("annotations".into(), Value::Object(annotations));
    }
    if !metadata.is_empty() {
        doc.insert("metadata".into(), json!({"default": metadata}));
    }

    // links
    let links: Vec<Value> = span
        .links
        .iter()
        .filter_map(|l| {
            let t = xray_trace_id(&l.trace_id, now_secs).ok()?;
            Some(json!({"trace_id": t, "id": hex::encode(&l.span_id)}))
        })
        .collect();
    if !links.is_empty() {
        doc.insert("links".into(), Value::Array(links));
    }
    Ok(Value::Object(doc))
}

/// A batch's `PutTraceSegments` calls and how many went through.
pub struct XrayRequest {
    calls: Vec<Vec<String>>,
    done: AtomicUsize,
    /// Spans refused while converting (trace id, size), reported with the first send.
    refused: u64,
    reason: String,
}

/// Stored as JSON of the calls not yet made.
impl Persist for XrayRequest {
    fn to_bytes(&self) -> Vec<u8> {
        let done = self.done.load(Ordering::SeqCst).min(self.calls.len());
        serde_json::to_vec(&self.calls[done..]).unwrap_or_default()
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(XrayRequest {
            calls: serde_json::from_slice(bytes).ok()?,
            done: AtomicUsize::new(0),
            refused: 0,
            reason: String::new(),
        })
    }
}

/// What `telemetry` reports.
#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    rejected: AtomicU64,
    connection_errors: AtomicU64,
    other_errors: AtomicU64,
}

/// The X-Ray transport.
pub struct XraySender {
    id: ComponentId,
    cfg: AwsXrayConfig,
    xray: JsonApi,
    counts: Arc<Counts>,
    tasks: vigil_core::task::Tasks,
}

/// X-Ray's API takes plain JSON.
const JSON: [(&str, &str); 1] = [("content-type", "application/json")];

#[async_trait]
impl Sender for XraySender {
    type Request = XrayRequest;

    fn prepare(&self, data: &Telemetry) -> Result<XrayRequest, SendError> {
        let Telemetry::Traces(rss) = data else {
            return Err(SendError::permanent("awsxray exports traces only"));
        };
        let now = chrono::Utc::now().timestamp();
        let mut docs = Vec::new();
        let mut refused = 0u64;
        let mut reason = String::new();
        for rs in rss {
            let resource = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    match segment(span, resource, &self.cfg, now).map(|d| d.to_string()) {
                        Ok(d) if d.len() <= MAX_DOCUMENT => docs.push(d),
                        Ok(d) => {
                            refused += 1;
                            reason =
                                format!("a segment of {} bytes is over X-Ray's 64 KiB", d.len());
                        }
                        Err(e) => {
                            refused += 1;
                            reason = e;
                        }
                    }
                }
            }
        }
        if docs.is_empty() && refused > 0 {
            return Err(SendError::permanent(format!(
                "{refused} spans cannot be sent to X-Ray: {reason}"
            )));
        }
        Ok(XrayRequest {
            calls: docs.chunks(PER_CALL).map(<[String]>::to_vec).collect(),
            done: AtomicUsize::new(0),
            refused,
            reason,
        })
    }

    async fn send(&self, req: &XrayRequest) -> Result<Delivered, SendError> {
        let mut rejected = 0u64;
        let mut message = String::new();
        let start = req.done.load(Ordering::SeqCst);
        for (i, docs) in req.calls.iter().enumerate().skip(start) {
            let body = json!({"TraceSegmentDocuments": docs});
            match self.xray.post("/TraceSegments", &JSON, &body).await {
                Ok(answer) => {
                    let unprocessed = answer["UnprocessedTraceSegments"]
                        .as_array()
                        .map_or(0, Vec::len) as u64;
                    if unprocessed > 0 {
                        message = format!(
                            "X-Ray did not process {unprocessed} segments: {}",
                            answer["UnprocessedTraceSegments"]
                        );
                    }
                    rejected += unprocessed;
                    self.counts
                        .sent
                        .fetch_add(docs.len() as u64, Ordering::Relaxed);
                    self.counts
                        .rejected
                        .fetch_add(unprocessed, Ordering::Relaxed);
                    req.done.store(i + 1, Ordering::SeqCst);
                }
                Err(e) => {
                    let count = if e.status == 0 {
                        &self.counts.connection_errors
                    } else {
                        &self.counts.other_errors
                    };
                    count.fetch_add(1, Ordering::Relaxed);
                    return Err(e.send_error(self.xray.name(), "PutTraceSegments"));
                }
            }
        }
        if start == 0 && req.refused > 0 {
            rejected += req.refused;
            message = format!(
                "{} spans cannot be sent to X-Ray: {}",
                req.refused, req.reason
            );
        }
        Ok(Delivered { rejected, message })
    }

    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        self.xray.start(&self.id, &self.cfg.session()).await?;
        if self.cfg.telemetry.enabled {
            self.start_telemetry();
        }
        Ok(())
    }
}

impl XraySender {
    /// Each minute, one `PutTelemetryRecords` with the counts since the last (lost on failure,
    /// as otelcol's are: they describe the exporter, not the data).
    fn start_telemetry(&self) {
        let t = self.cfg.telemetry.clone();
        let (xray, counts, id) = (self.xray.clone(), Arc::clone(&self.counts), self.id.clone());
        let hostname = if t.hostname.is_empty() {
            std::env::var("HOSTNAME").unwrap_or_default()
        } else {
            t.hostname.clone()
        };
        // A task of its own rather than one of the stack's: the stack waits for its tasks to
        // finish when it drains, and a ticker never does. It ends when the exporter stops or is
        // dropped (the counts are then gone).
        let stop = self.tasks.stopping();
        let counts = Arc::downgrade(&counts);
        tokio::spawn(async move {
            let period = telemetry_period();
            let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = every.tick() => {}
                }
                let Some(counts) = counts.upgrade() else {
                    return;
                };
                let take = |c: &AtomicU64| c.swap(0, Ordering::Relaxed);
                let (sent, rejected) = (take(&counts.sent), take(&counts.rejected));
                let (conn, other) = (take(&counts.connection_errors), take(&counts.other_errors));
                drop(counts);
                let mut body = json!({
                    "TelemetryRecords": [{
                        "Timestamp": chrono::Utc::now().timestamp(),
                        "SegmentsReceivedCount": sent + rejected,
                        "SegmentsSentCount": sent,
                        "SegmentsSpilloverCount": 0,
                        "SegmentsRejectedCount": rejected,
                        "BackendConnectionErrors": {
                            "ConnectionRefusedCount": conn,
                            "OtherCount": other,
                        }
                    }]
                });
                if !hostname.is_empty() {
                    body["Hostname"] = json!(hostname);
                }
                if !t.instance_id.is_empty() {
                    body["EC2InstanceId"] = json!(t.instance_id);
                }
                if !t.resource_arn.is_empty() {
                    body["ResourceARN"] = json!(t.resource_arn);
                }
                if let Err(e) = xray.post("/TelemetryRecords", &JSON, &body).await {
                    tracing::debug!(
                        exporter = %id,
                        status = e.status,
                        ty = e.error_type,
                        msg = e.message,
                        "PutTelemetryRecords failed"
                    );
                }
            }
        });
    }
}

/// A minute, as otelcol reports; tests shorten it with `VIGIL_XRAY_TELEMETRY_PERIOD_MS`.
fn telemetry_period() -> Duration {
    std::env::var("VIGIL_XRAY_TELEMETRY_PERIOD_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(60), Duration::from_millis)
}

fn build(
    set: &Settings,
    cfg: AwsXrayConfig,
    credentials: CredentialSource,
) -> Result<SendStack<XraySender>, ConfigError> {
    let client = cfg.session().client(&set.id)?;
    let settings = cfg.settings();
    let sender = XraySender {
        id: set.id.clone(),
        cfg,
        xray: JsonApi::new("xray", "X-Ray", client, credentials),
        counts: Arc::default(),
        tasks: set.tasks.clone(),
    };
    Ok(SendStack::new(set, settings, sender))
}

struct Factory;

/// The `awsxray` exporter factory (`aws_xray` is accepted too).
pub fn factory() -> Arc<dyn DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl FactoryBase for Factory {
    type Config = AwsXrayConfig;

    fn type_name(&self) -> &'static str {
        "awsxray"
    }

    fn validate(&self, id: &ComponentId, cfg: &AwsXrayConfig) -> Result<(), ConfigError> {
        cfg.validate(id)
    }
}

impl ExporterFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[(Signal::Traces, Stability::Beta)]
    }

    fn create(&self, set: Settings, cfg: AwsXrayConfig) -> Result<Arc<dyn Exporter>, ConfigError> {
        Ok(Arc::new(build(&set, cfg, CredentialSource::from_env())?))
    }
}

#[cfg(test)]
mod tests;
