//! `elasticapm` processor: Elastic's enrichment of OTel data with the attributes the Elastic APM UI
//! reads (elastic/opentelemetry-collector-components `processor/elasticapmprocessor`, OTel mapping
//! mode). Spans are split into Elastic *transactions* (trace roots, spans whose parent is remote, or
//! when that is unknown server/consumer spans) and *spans* (the rest), and each gets its own set of
//! derived attributes; resources and scopes of every signal get `agent.*`, `service.*` and
//! `service.framework.*`. An attribute already present is never overwritten, as in the original.

use super::config::ProcessorConfig;
use async_trait::async_trait;
use md5::{Digest, Md5};
use vigil_core::attrs::{get, get_str};
use vigil_core::otlp::common::v1::{
    any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::otlp::trace::v1::{span::SpanKind, status::StatusCode, Span};
use vigil_core::{Component, ConsumeError, Consumer, Telemetry};

/// OTLP's span flags: bit 8 says whether bit 9 (parent is remote) is known.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// Adds `key` unless the list has it (the original's `attribute.Put*`).
fn put(attrs: &mut Vec<KeyValue>, key: &str, value: Value) {
    if get(attrs, key).is_none() {
        attrs.push(vigil_core::attrs::kv(key, value));
    }
}

fn put_str(attrs: &mut Vec<KeyValue>, key: &str, value: impl Into<String>) {
    put(attrs, key, Value::StringValue(value.into()));
}

fn int_of(v: &Value) -> i64 {
    match v {
        Value::IntValue(i) => *i,
        Value::DoubleValue(d) => *d as i64,
        Value::StringValue(s) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn str_of(v: &Value) -> String {
    match v {
        Value::StringValue(s) => s.clone(),
        other => vigil_core::attrs::value_to_string(other),
    }
}

/// The enrichment switches, resolved once from the config.
pub(crate) struct Enricher {
    cfg: ProcessorConfig,
}

impl Enricher {
    pub(crate) fn new(cfg: ProcessorConfig) -> Enricher {
        Enricher { cfg }
    }

    fn on(&self, group: &str, key: &str) -> bool {
        self.cfg.on(group, key)
    }

    pub(crate) fn resource(&self, resource: &mut Option<Resource>) {
        let r = resource.get_or_insert_with(Resource::default);
        let a = &mut r.attributes;
        let s = |k: &str| get_str(a, k).map(str::to_string).unwrap_or_default();
        let (sdk, lang, sdk_ver) = (
            s("telemetry.sdk.name"),
            s("telemetry.sdk.language"),
            s("telemetry.sdk.version"),
        );
        let (distro, distro_ver) = (s("telemetry.distro.name"), s("telemetry.distro.version"));
        let (env, env_name) = (
            s("deployment.environment"),
            s("deployment.environment.name"),
        );
        let (host, node, container) = (s("host.name"), s("k8s.node.name"), s("container.id"));
        if self.on("resource", "agent_name") {
            let base = if sdk.is_empty() { "otlp" } else { &sdk };
            let name = if !distro.is_empty() {
                let l = if lang.is_empty() { "unknown" } else { &lang };
                format!("{base}/{l}/{distro}")
            } else if !lang.is_empty() {
                format!("{base}/{lang}")
            } else {
                base.to_string()
            };
            put_str(a, "agent.name", name);
        }
        if self.on("resource", "agent_version") {
            let v = if !distro.is_empty() {
                if distro_ver.is_empty() {
                    "unknown".into()
                } else {
                    distro_ver
                }
            } else if !sdk_ver.is_empty() {
                sdk_ver
            } else {
                "unknown".into()
            };
            put_str(a, "agent.version", v);
        }
        if self.on("resource", "override_host_name") && !node.is_empty() {
            // A k8s node name wins over host.name: both set is taken as a misconfiguration upstream.
            vigil_core::attrs::upsert(a, "host.name", Value::StringValue(node.clone()));
        }
        if self.on("resource", "deployment_environment") && !env_name.is_empty() && env.is_empty() {
            put_str(a, "deployment.environment", env_name);
        }
        if self.on("resource", "service_instance_id") {
            let id = if !container.is_empty() {
                container
            } else {
                host
            };
            if !id.is_empty() {
                put_str(a, "service.instance.id", id);
            }
        }
    }

    pub(crate) fn scope(&self, scope: &mut Option<InstrumentationScope>) {
        if !self.on("scope", "service_framework_name") {
            return;
        }
        let Some(s) = scope.as_mut().filter(|s| !s.name.is_empty()) else {
            return;
        };
        let (name, version) = (s.name.clone(), s.version.clone());
        put_str(&mut s.attributes, "service.framework.name", name);
        if self.on("scope", "service_framework_version") {
            put_str(&mut s.attributes, "service.framework.version", version);
        }
    }

    pub(crate) fn metric_resource(&self, resource: &mut Option<Resource>) {
        if self.on("elastic_metric", "processor_event") {
            let r = resource.get_or_insert_with(Resource::default);
            put_str(&mut r.attributes, "processor.event", "metric");
        }
    }

    pub(crate) fn span(&self, span: &mut Span) {
        let c = Ctx::read(span);
        let tx = is_transaction(span);
        let exit_root = tx && matches!(kind(span), SpanKind::Client | SpanKind::Producer);
        if tx {
            self.transaction(span, &c);
        }
        if !tx || exit_root {
            self.elastic_span(span, &c, exit_root);
        }
        for e in &mut span.events {
            self.event(e, &c, tx);
        }
    }

    fn transaction(&self, span: &mut Span, c: &Ctx) {
        let g = "elastic_transaction";
        let (status, dur) = (span_status(span), duration_us(span));
        let a = &mut span.attributes;
        if self.on(g, "timestamp_us") {
            put(
                a,
                "timestamp.us",
                Value::IntValue((span.start_time_unix_nano / 1000) as i64),
            );
        }
        if self.on(g, "sampled") {
            put(a, "transaction.sampled", Value::BoolValue(true));
        }
        if self.on(g, "id") {
            put_str(a, "transaction.id", hex::encode(&span.span_id));
            if self.on(g, "clear_span_id") {
                span.span_id.clear();
            }
        }
        if self.on(g, "root") {
            put(
                a,
                "transaction.root",
                Value::BoolValue(span.parent_span_id.is_empty()),
            );
        }
        if self.on(g, "name") {
            put_str(a, "transaction.name", span.name.clone());
            if self.on(g, "clear_span_name") {
                span.name.clear();
            }
        }
        if self.on(g, "processor_event") {
            put_str(a, "processor.event", "transaction");
        }
        if self.on(g, "representative_count") {
            put(
                a,
                "transaction.representative_count",
                Value::DoubleValue(representative_count(&span.trace_state)),
            );
        }
        if self.on(g, "duration_us") {
            put(a, "transaction.duration.us", Value::IntValue(dur));
        }
        if self.on(g, "type") {
            put_str(a, "transaction.type", c.txn_type());
        }
        if self.on(g, "result") {
            put_str(a, "transaction.result", c.txn_result(status));
        }
        if self.on(g, "event_outcome") {
            event_outcome(a, c, status, &span.trace_state);
        }
        if self.on(g, "inferred_spans") {
            inferred_spans(span);
        }
        let a = &mut span.attributes;
        if self.on(g, "message_queue_name") && !c.msg_dest.is_empty() {
            put_str(a, "transaction.message.queue.name", c.msg_dest.clone());
        }
        if self.on(g, "remove_messaging") && c.messaging {
            remove_messaging(a);
        }
    }

    fn elastic_span(&self, span: &mut Span, c: &Ctx, exit_root: bool) {
        let g = "elastic_span";
        let status = span_status(span);
        let kind = kind(span);
        let dur = duration_us(span);
        let a = &mut span.attributes;
        if self.on(g, "timestamp_us") {
            put(
                a,
                "timestamp.us",
                Value::IntValue((span.start_time_unix_nano / 1000) as i64),
            );
        }
        if self.on(g, "representative_count") {
            put(
                a,
                "span.representative_count",
                Value::DoubleValue(representative_count(&span.trace_state)),
            );
        }
        if self.on(g, "name") {
            put_str(a, "span.name", span.name.clone());
        }
        if self.on(g, "action") && !c.msg_op.is_empty() {
            put_str(a, "span.action", c.msg_op.clone());
        }
        let mut typ = (String::new(), String::new());
        if self.on(g, "type_subtype") {
            typ = c.span_type(kind);
            put_str(a, "span.type", typ.0.clone());
            if !typ.1.is_empty() {
                put_str(a, "span.subtype", typ.1.clone());
            }
        }
        if self.on(g, "event_outcome") {
            event_outcome(a, c, status, &span.trace_state);
        }
        if self.on(g, "duration_us") {
            put(a, "span.duration.us", Value::IntValue(dur));
        }
        if self.on(g, "service_target") {
            let (t, n) = c.service_target();
            if !t.is_empty() || !n.is_empty() {
                put_str(a, "service.target.type", t);
                put_str(a, "service.target.name", n);
            }
        }
        if self.on(g, "destination_service") {
            let r = c.destination_resource();
            if !r.is_empty() {
                put_str(a, "span.destination.service.resource", r);
            }
        }
        if self.on(g, "inferred_spans") {
            inferred_spans(span);
        }
        let a = &mut span.attributes;
        if self.on(g, "processor_event") && !exit_root {
            put_str(a, "processor.event", "span");
        }
        if self.on(g, "message_queue_name") && !c.msg_dest.is_empty() {
            let key = if exit_root {
                "transaction.message.queue.name"
            } else {
                "span.message.queue.name"
            };
            put_str(a, key, c.msg_dest.clone());
        }
        if self.on(g, "remove_messaging") && c.messaging {
            remove_messaging(a);
        }
        // An exit root span's transaction type becomes its span type when nothing else set one.
        if exit_root
            && self.on("elastic_transaction", "type")
            && c.type_value.is_empty()
            && c.given_txn_type.is_empty()
            && !typ.0.is_empty()
        {
            let t = if typ.1.is_empty() {
                typ.0
            } else {
                format!("{}.{}", typ.0, typ.1)
            };
            vigil_core::attrs::upsert(a, "transaction.type", Value::StringValue(t));
        }
    }

    fn event(&self, e: &mut vigil_core::otlp::trace::v1::span::Event, c: &Ctx, tx: bool) {
        let g = "span_event";
        let exception = e.name == "exception";
        let (mut ty, mut msg, mut escaped) = (String::new(), String::new(), false);
        if exception {
            for kv in &e.attributes {
                let Some(v) = kv.value.as_ref().and_then(|v| v.value.as_ref()) else {
                    continue;
                };
                match kv.key.as_str() {
                    "exception.escaped" => escaped = matches!(v, Value::BoolValue(true)),
                    "exception.type" => ty = str_of(v),
                    "exception.message" => msg = str_of(v),
                    _ => {}
                }
            }
        }
        let a = &mut e.attributes;
        if self.on(g, "timestamp_us") {
            put(
                a,
                "timestamp.us",
                Value::IntValue((e.time_unix_nano / 1000) as i64),
            );
        }
        if self.on(g, "processor_event") && exception {
            put_str(a, "processor.event", "error");
        }
        if ty.is_empty() && msg.is_empty() {
            return;
        }
        if self.on(g, "error_id") {
            put_str(a, "error.id", unique_id());
        }
        if self.on(g, "error_exception_handled") {
            put(a, "error.exception.handled", Value::BoolValue(!escaped));
        }
        if self.on(g, "error_grouping_key") {
            let basis = if !ty.is_empty() { &ty } else { &msg };
            put_str(
                a,
                "error.grouping_key",
                hex::encode(Md5::digest(basis.as_bytes())),
            );
        }
        if self.on(g, "error_grouping_name") && !msg.is_empty() {
            put_str(a, "error.grouping_name", msg.clone());
        }
        if tx && exception {
            if self.on(g, "transaction_sampled") {
                put(a, "transaction.sampled", Value::BoolValue(true));
            }
            if self.on(g, "transaction_type") {
                put_str(a, "transaction.type", c.txn_type());
            }
        }
    }
}

/// 128 random bits as 32 hex digits (the original's `error.id`).
fn unique_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS's randomness per instance; no need for a rand dependency
    // for an id that only has to be unique.
    let word = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.finish()
    };
    format!("{:016x}{:016x}", word(1), word(2))
}

fn kind(span: &Span) -> SpanKind {
    SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified)
}

fn span_status(span: &Span) -> StatusCode {
    StatusCode::try_from(span.status.as_ref().map_or(0, |s| s.code)).unwrap_or(StatusCode::Unset)
}

fn duration_us(span: &Span) -> i64 {
    (span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano)
        / 1000) as i64
}

/// An Elastic transaction: marked so already, a trace root, a span with a remote parent, or (when
/// the parent's locality is unknown) a server or consumer span.
pub(crate) fn is_transaction(span: &Span) -> bool {
    if get_str(&span.attributes, "processor.event") == Some("transaction") {
        return true;
    }
    if span.parent_span_id.is_empty() {
        return true;
    }
    if span.flags & HAS_IS_REMOTE == 0 {
        return matches!(kind(span), SpanKind::Server | SpanKind::Consumer);
    }
    span.flags & IS_REMOTE != 0
}

/// How many spans one sampled span stands for, from the W3C tracestate's `ot` entry: `th` (the
/// rejection threshold, 56 bits in at most 14 hex digits) gives 2^56 / (2^56 - th), the older `p`
/// gives 2^p; 1 when neither is there or valid.
pub(crate) fn representative_count(trace_state: &str) -> f64 {
    let Some(ot) = trace_state
        .split(',')
        .map(str::trim)
        .find_map(|e| e.strip_prefix("ot="))
    else {
        return 1.0;
    };
    let mut p = None;
    for field in ot.split(';') {
        if let Some(th) = field.strip_prefix("th:") {
            if th.is_empty() || th.len() > 14 {
                return 1.0;
            }
            let Ok(v) = u64::from_str_radix(th, 16) else {
                return 1.0;
            };
            let t = v << (4 * (14 - th.len()));
            if t == 0 {
                return 1.0;
            }
            let max = (1u64 << 56) as f64;
            return max / (max - t as f64);
        }
        if let Some(v) = field.strip_prefix("p:") {
            p = v.parse::<u32>().ok().filter(|p| *p <= 63);
        }
    }
    match p {
        Some(63) => 0.0,
        Some(p) => 2f64.powi(p as i32),
        None => 1.0,
    }
}

fn event_outcome(a: &mut Vec<KeyValue>, c: &Ctx, status: StatusCode, trace_state: &str) {
    let (outcome, success) = match status {
        StatusCode::Error => ("failure", 0.0),
        StatusCode::Ok => ("success", representative_count(trace_state)),
        StatusCode::Unset if c.http_status >= 500 => ("failure", 0.0),
        StatusCode::Unset => ("success", representative_count(trace_state)),
    };
    put_str(a, "event.outcome", outcome);
    put(a, "event.success_count", Value::IntValue(success as i64));
}

/// Links marked `is_child`/`elastic.is_child` become `child.id`, as inferred spans need.
fn inferred_spans(span: &mut Span) {
    if get(&span.attributes, "child.id").is_some() {
        return;
    }
    let mut ids = Vec::new();
    span.links.retain(|l| {
        let child = l
            .attributes
            .iter()
            .find(|kv| kv.key == "is_child" || kv.key == "elastic.is_child");
        let is_child = child
            .and_then(|kv| kv.value.as_ref().and_then(|v| v.value.as_ref()))
            .is_some_and(|v| matches!(v, Value::BoolValue(true)));
        if is_child && !l.span_id.is_empty() {
            ids.push(AnyValue {
                value: Some(Value::StringValue(hex::encode(&l.span_id))),
            });
            return false;
        }
        true
    });
    if !ids.is_empty() {
        span.attributes.push(vigil_core::attrs::kv(
            "child.id",
            Value::ArrayValue(ArrayValue { values: ids }),
        ));
    }
}

fn remove_messaging(a: &mut Vec<KeyValue>) {
    a.retain(|kv| {
        !matches!(
            kv.key.as_str(),
            "messaging.operation"
                | "messaging.operation.name"
                | "messaging.system"
                | "messaging.destination.name"
        )
    });
}

/// What the span's semantic-convention attributes say it is.
#[derive(Default)]
struct Ctx {
    peer_service: String,
    server_address: String,
    server_port: i64,
    url_host: String,
    url_domain: String,
    url_port: i64,
    rpc_system: String,
    rpc_service: String,
    grpc_status: String,
    db_name: String,
    db_system: String,
    msg_op: String,
    msg_system: String,
    msg_dest: String,
    msg_temp: bool,
    genai_system: String,
    type_value: String,
    given_txn_type: String,
    http_status: i64,
    messaging: bool,
    rpc: bool,
    http: bool,
    db: bool,
    genai: bool,
}

/// gRPC status names by code, as Go's `codes.Code.String()`.
const GRPC_CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

impl Ctx {
    fn read(span: &Span) -> Ctx {
        let mut c = Ctx::default();
        for kv in &span.attributes {
            let Some(v) = kv.value.as_ref().and_then(|v| v.value.as_ref()) else {
                continue;
            };
            match kv.key.as_str() {
                "peer.service" => c.peer_service = str_of(v),
                "server.address" => c.server_address = str_of(v),
                "server.port" => c.server_port = int_of(v),
                "net.peer.name" if c.server_address.is_empty() => c.server_address = str_of(v),
                "net.peer.port" if c.server_port == 0 => c.server_port = int_of(v),
                "messaging.destination.name" => {
                    c.messaging = true;
                    c.msg_dest = str_of(v);
                }
                "messaging.operation" | "messaging.operation.name" => {
                    c.messaging = true;
                    c.msg_op = str_of(v);
                }
                "messaging.system" => {
                    c.messaging = true;
                    c.msg_system = str_of(v);
                }
                "messaging.destination.temporary" => {
                    c.messaging = true;
                    c.msg_temp = true;
                }
                "http.status_code" | "http.response.status_code" => {
                    c.http = true;
                    c.http_status = int_of(v);
                }
                "http.method"
                | "http.request.method"
                | "http.target"
                | "http.scheme"
                | "http.flavor"
                | "net.host.name" => c.http = true,
                "url.full" | "http.url" => {
                    c.http = true;
                    c.url_host = url_host(&str_of(v));
                }
                "url.scheme" | "url.path" | "url.query" => c.http = true,
                "url.domain" => {
                    c.http = true;
                    c.url_domain = str_of(v);
                }
                "url.port" => {
                    c.http = true;
                    c.url_port = int_of(v);
                }
                "rpc.grpc.status_code" => {
                    c.rpc = true;
                    let code = int_of(v);
                    c.grpc_status = usize::try_from(code)
                        .ok()
                        .and_then(|i| GRPC_CODES.get(i))
                        .map_or_else(|| format!("Code({code})"), |s| s.to_string());
                }
                "rpc.system" => {
                    c.rpc = true;
                    c.rpc_system = str_of(v);
                }
                "rpc.service" => {
                    c.rpc = true;
                    c.rpc_service = str_of(v);
                }
                "db.statement" | "db.user" => c.db = true,
                "db.name" => {
                    c.db = true;
                    c.db_name = str_of(v);
                }
                "db.system" => {
                    c.db = true;
                    c.db_system = str_of(v);
                }
                "gen_ai.system" | "gen_ai.provider.name" => {
                    c.genai = true;
                    c.genai_system = str_of(v);
                }
                "type" => c.type_value = str_of(v),
                "transaction.type" => c.given_txn_type = str_of(v),
                _ => {}
            }
        }
        if c.rpc_system.is_empty() && !c.grpc_status.is_empty() {
            c.rpc_system = "grpc".into();
        }
        c
    }

    fn txn_type(&self) -> String {
        if !self.type_value.is_empty() {
            self.type_value.clone()
        } else if self.messaging {
            "messaging".into()
        } else if self.rpc || self.http {
            "request".into()
        } else {
            "unknown".into()
        }
    }

    fn txn_result(&self, status: StatusCode) -> String {
        let mut result = String::new();
        if self.http && self.http_status > 0 {
            result = match self.http_status / 100 {
                i @ 1..=5 => format!("HTTP {i}xx"),
                _ => format!("HTTP {}", self.http_status),
            };
        }
        if self.rpc {
            result = self.grpc_status.clone();
        }
        if result.is_empty() {
            result = if status == StatusCode::Error {
                "Error"
            } else {
                "Success"
            }
            .into();
        }
        result
    }

    fn span_type(&self, kind: SpanKind) -> (String, String) {
        let (t, s): (&str, &str) = if self.db {
            ("db", &self.db_system)
        } else if self.messaging {
            ("messaging", &self.msg_system)
        } else if self.rpc {
            ("external", &self.rpc_system)
        } else if self.http {
            ("external", "http")
        } else if self.genai {
            ("genai", &self.genai_system)
        } else if kind == SpanKind::Internal {
            ("app", "internal")
        } else {
            ("unknown", "")
        };
        (t.to_string(), s.to_string())
    }

    fn host_port(&self) -> String {
        let join = |h: &str, p: i64| {
            if p == 0 {
                h.to_string()
            } else if h.contains(':') {
                format!("[{h}]:{p}")
            } else {
                format!("{h}:{p}")
            }
        };
        if !self.url_host.is_empty() {
            self.url_host.clone()
        } else if !self.url_domain.is_empty() {
            join(&self.url_domain, self.url_port)
        } else if !self.server_address.is_empty() {
            join(&self.server_address, self.server_port)
        } else {
            String::new()
        }
    }

    fn service_target(&self) -> (String, String) {
        let mut name = self.peer_service.clone();
        let mut typ = String::new();
        let or = |s: &str, d: &str| {
            if s.is_empty() {
                d.to_string()
            } else {
                s.to_string()
            }
        };
        if self.db {
            typ = or(&self.db_system, "db");
            if !self.db_name.is_empty() {
                name = self.db_name.clone();
            }
        } else if self.messaging {
            typ = or(&self.msg_system, "messaging");
            if !self.msg_temp && !self.msg_dest.is_empty() {
                name = self.msg_dest.clone();
            }
        } else if self.rpc {
            typ = or(&self.rpc_system, "external");
            if !self.rpc_service.is_empty() {
                name = self.rpc_service.clone();
            }
        } else if self.http {
            typ = "http".into();
            let hp = self.host_port();
            if !hp.is_empty() {
                name = hp;
            }
        }
        (typ, name)
    }

    fn destination_resource(&self) -> String {
        let mut r = self.peer_service.clone();
        if self.db {
            if r.is_empty() {
                r = self.db_system.clone();
            }
        } else if self.messaging {
            if r.is_empty() {
                r = self.msg_system.clone();
            }
            if !r.is_empty() && !self.msg_dest.is_empty() {
                r = format!("{r}/{}", self.msg_dest);
            }
        } else if (self.rpc || self.http) && r.is_empty() {
            let hp = self.host_port();
            r = if hp.is_empty() {
                self.rpc_service.clone()
            } else {
                hp
            };
        }
        r
    }
}

/// The `host[:port]` of a URL, as Go's `url.URL.Host` (empty when it does not parse).
fn url_host(url: &str) -> String {
    let Some((_, rest)) = url.split_once("://") else {
        return String::new();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.rsplit('@').next().unwrap_or("").to_string()
}

/// A running `elasticapm` processor.
pub struct ElasticApmProcessor {
    pub(crate) enricher: Enricher,
    pub(crate) next: std::sync::Arc<dyn Consumer>,
    pub(crate) obs: vigil_core::ProcessorObs,
}

impl ElasticApmProcessor {
    pub(crate) fn process(&self, data: &mut Telemetry) {
        let e = &self.enricher;
        match data {
            Telemetry::Traces(rs) => {
                for r in rs {
                    e.resource(&mut r.resource);
                    for ss in &mut r.scope_spans {
                        e.scope(&mut ss.scope);
                        ss.spans.iter_mut().for_each(|s| e.span(s));
                    }
                }
            }
            // skip_enrichment: logs and metrics are enriched only in ECS mapping mode, never seen here.
            Telemetry::Metrics(_) | Telemetry::Logs(_) if e.cfg.skip_enrichment => {}
            Telemetry::Metrics(rm) => {
                for r in rm {
                    e.resource(&mut r.resource);
                    e.metric_resource(&mut r.resource);
                    r.scope_metrics
                        .iter_mut()
                        .for_each(|s| e.scope(&mut s.scope));
                }
            }
            Telemetry::Logs(rl) => {
                for r in rl {
                    e.resource(&mut r.resource);
                    r.scope_logs.iter_mut().for_each(|s| e.scope(&mut s.scope));
                }
            }
            Telemetry::Profiles(_) => {}
        }
    }
}

impl Component for ElasticApmProcessor {}

#[async_trait]
impl Consumer for ElasticApmProcessor {
    async fn consume(&self, mut data: Telemetry) -> Result<(), ConsumeError> {
        let n = data.item_count();
        self.obs.incoming(n);
        self.process(&mut data);
        self.obs.outgoing(n);
        self.next.consume(data).await
    }
}
