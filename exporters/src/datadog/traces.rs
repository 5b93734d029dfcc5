//! OTLP spans as the trace agent's `AgentPayload` (protobuf), converted as upstream's OTLP
//! ingest converts them: one `TracerPayload` per resource, one `TraceChunk` per trace (priority
//! 1, auto-keep: sampling happened before the exporter); a span's ids are the low 64 bits of
//! OTLP's (the high half of the trace id goes to `_dd.p.tid`), its operation name is
//! `<scope>.<kind>` (or the span name with `span_name_as_resource_name`, then
//! `span_name_remappings`), its resource comes from the HTTP / messaging / RPC / database
//! attributes or the span name, its type from its kind and attributes, string attributes go to
//! `meta` and numeric ones to `metrics`, and an error status sets `error` and `error.msg`.
//! `_top_level` marks root spans and spans whose parent is in another service (and server /
//! consumer spans with `compute_top_level_by_span_kind`). Traces whose root resource matches
//! `ignore_resources` are not sent. A payload is cut below the intake's 3.2 MB.

use super::attrs::{hostname, number, resource_str, text};
use super::proto::{AgentPayload, Span, TraceChunk, TracerPayload};
use super::TracesConfig;
use prost::Message;
use std::collections::{BTreeMap, HashMap};
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::otlp::trace::v1::{span::SpanKind, status::StatusCode, ResourceSpans};

/// Below the trace intake's 3.2 MB limit on an uncompressed payload.
const MAX_PAYLOAD: usize = 3_000_000;
/// The service of spans whose resource names none, as upstream names it.
const NO_SERVICE: &str = "otlpresourcenoservicename";

pub struct Options {
    host: String,
    ignore: Vec<regex::Regex>,
    remap: BTreeMap<String, String>,
    span_name_as_name: bool,
    top_level_by_kind: bool,
}

impl Options {
    /// The regexes were checked by validate; one that no longer compiles is skipped.
    pub fn new(cfg: &TracesConfig, host: String) -> Self {
        Options {
            host,
            ignore: cfg
                .ignore_resources
                .iter()
                .filter_map(|r| vigil_core::config::re2_regex(r).ok())
                .collect(),
            remap: cfg.span_name_remappings.clone(),
            span_name_as_name: cfg.span_name_as_resource_name,
            top_level_by_kind: cfg.compute_top_level_by_span_kind,
        }
    }
}

fn low64(id: &[u8]) -> u64 {
    id.get(id.len().saturating_sub(8)..)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn kind_name(kind: i32) -> &'static str {
    match SpanKind::try_from(kind).unwrap_or(SpanKind::Unspecified) {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
        SpanKind::Unspecified => "unspecified",
    }
}

/// Datadog's operation-name characters: letters, digits, `.` and `_`.
fn normalize_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn attr<'a>(attrs: &'a [KeyValue], keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| vigil_core::attrs::get_str(attrs, k).filter(|s| !s.is_empty()))
}

fn resource_name(span: &vigil_core::otlp::trace::v1::Span, kind: &str) -> String {
    let a = &span.attributes;
    if let Some(r) = attr(a, &["resource.name"]) {
        return r.to_string();
    }
    if let Some(method) = attr(a, &["http.request.method", "http.method"]) {
        return match attr(a, &["http.route"]) {
            Some(route) if kind == "server" => format!("{method} {route}"),
            _ => method.to_string(),
        };
    }
    if let Some(op) = attr(a, &["messaging.operation.type", "messaging.operation"]) {
        return match attr(a, &["messaging.destination.name", "messaging.destination"]) {
            Some(dest) => format!("{op} {dest}"),
            None => op.to_string(),
        };
    }
    if let Some(m) = attr(a, &["rpc.method"]) {
        return match attr(a, &["rpc.service"]) {
            Some(s) => format!("{m} {s}"),
            None => m.to_string(),
        };
    }
    if let Some(q) = attr(a, &["db.query.text", "db.statement"]) {
        return q.to_string();
    }
    span.name.clone()
}

fn span_type(span: &vigil_core::otlp::trace::v1::Span, kind: &str) -> &'static str {
    let a = &span.attributes;
    if let Some(db) = attr(a, &["db.system.name", "db.system"]) {
        return if matches!(db, "redis" | "memcached") {
            "cache"
        } else {
            "db"
        };
    }
    match kind {
        "server" => "web",
        "client" if attr(a, &["http.request.method", "http.method"]).is_some() => "http",
        _ => "custom",
    }
}

/// One OTLP span as a Datadog span (top-level marks are set per chunk afterwards).
fn convert(
    span: &vigil_core::otlp::trace::v1::Span,
    res: &[KeyValue],
    service: &str,
    scope: (&str, &str),
    opts: &Options,
) -> Span {
    let kind = kind_name(span.kind);
    let mut name = if opts.span_name_as_name {
        span.name.clone()
    } else {
        let lib = if scope.0.is_empty() {
            "opentelemetry"
        } else {
            scope.0
        };
        normalize_name(&format!("{lib}.{kind}"))
    };
    if let Some(to) = opts.remap.get(&name) {
        name = to.clone();
    }
    let mut meta = HashMap::new();
    let mut metrics = HashMap::new();
    for kv in res {
        meta.insert(kv.key.clone(), text(&kv.value));
    }
    for kv in &span.attributes {
        match number(&kv.value) {
            Some(n) => {
                meta.remove(&kv.key);
                metrics.insert(kv.key.clone(), n);
            }
            None => {
                meta.insert(kv.key.clone(), text(&kv.value));
            }
        }
    }
    if let Some(env) = resource_str(res, "deployment.environment.name")
        .or_else(|| resource_str(res, "deployment.environment"))
    {
        meta.insert("env".into(), env.to_string());
    }
    if let Some(v) = resource_str(res, "service.version") {
        meta.insert("version".into(), v.to_string());
    }
    meta.insert("span.kind".into(), kind.to_string());
    if !scope.0.is_empty() {
        meta.insert("otel.library.name".into(), scope.0.to_string());
    }
    if !scope.1.is_empty() {
        meta.insert("otel.library.version".into(), scope.1.to_string());
    }
    meta.insert("otel.trace_id".into(), hex(&span.trace_id));
    let high = span
        .trace_id
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0);
    if high != 0 {
        meta.insert("_dd.p.tid".into(), format!("{high:016x}"));
    }
    let mut error = 0;
    if let Some(status) = &span.status {
        let code = StatusCode::try_from(status.code).unwrap_or(StatusCode::Unset);
        let text = match code {
            StatusCode::Unset => "Unset",
            StatusCode::Ok => "Ok",
            StatusCode::Error => "Error",
        };
        meta.insert("otel.status_code".into(), text.into());
        if !status.message.is_empty() {
            meta.insert("otel.status_description".into(), status.message.clone());
        }
        if code == StatusCode::Error {
            error = 1;
            let exception = span.events.iter().find(|e| e.name == "exception");
            let from_event = |key: &str| {
                exception
                    .and_then(|e| vigil_core::attrs::get_str(&e.attributes, key))
                    .map(str::to_string)
            };
            let msg = from_event("exception.message").unwrap_or_else(|| status.message.clone());
            if !msg.is_empty() {
                meta.insert("error.msg".into(), msg);
            }
            if let Some(t) = from_event("exception.type") {
                meta.insert("error.type".into(), t);
            }
            if let Some(s) = from_event("exception.stacktrace") {
                meta.insert("error.stack".into(), s);
            }
        }
    }
    let start = i64::try_from(span.start_time_unix_nano).unwrap_or(i64::MAX);
    let end = i64::try_from(span.end_time_unix_nano).unwrap_or(i64::MAX);
    Span {
        service: service.to_string(),
        name,
        resource: resource_name(span, kind),
        trace_id: low64(&span.trace_id),
        span_id: low64(&span.span_id),
        parent_id: low64(&span.parent_span_id),
        start,
        duration: end.saturating_sub(start).max(0),
        error,
        meta,
        metrics,
        r#type: span_type(span, kind).to_string(),
    }
}

/// Marks top-level spans: roots, spans whose parent is not in this chunk or is in another
/// service, and (by kind) server and consumer spans; client and producer spans are measured.
fn mark_top_level(spans: &mut [Span], by_kind: bool) {
    let services: HashMap<u64, String> = spans
        .iter()
        .map(|s| (s.span_id, s.service.clone()))
        .collect();
    for s in spans.iter_mut() {
        let kind = s.meta.get("span.kind").map(String::as_str).unwrap_or("");
        let top = s.parent_id == 0
            || services.get(&s.parent_id).is_none_or(|p| *p != s.service)
            || (by_kind && matches!(kind, "server" | "consumer"));
        if top {
            s.metrics.insert("_top_level".into(), 1.0);
            s.metrics.insert("_sampling_priority_v1".into(), 1.0);
        }
        if by_kind && matches!(kind, "client" | "producer") {
            s.metrics.insert("_dd.measured".into(), 1.0);
        }
    }
}

fn agent_payload(host: &str, tracer_payloads: Vec<TracerPayload>) -> Vec<u8> {
    AgentPayload {
        host_name: host.to_string(),
        env: String::new(),
        tracer_payloads,
        tags: HashMap::new(),
        agent_version: concat!("vigil-", env!("CARGO_PKG_VERSION")).into(),
        target_tps: 10.0,
        error_tps: 10.0,
        rare_sampler_enabled: false,
    }
    .encode_to_vec()
}

/// The encoded `AgentPayload`s of a batch, each below [`MAX_PAYLOAD`].
pub fn payloads(rss: &[ResourceSpans], opts: &Options) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pending: Vec<TracerPayload> = Vec::new();
    let mut size = 0usize;
    for rs in rss {
        let res = rs
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let service = resource_str(res, "service.name").unwrap_or(NO_SERVICE);
        let mut traces: BTreeMap<Vec<u8>, Vec<Span>> = BTreeMap::new();
        for ss in &rs.scope_spans {
            let scope = ss
                .scope
                .as_ref()
                .map(|s| (s.name.as_str(), s.version.as_str()))
                .unwrap_or(("", ""));
            for span in &ss.spans {
                traces
                    .entry(span.trace_id.clone())
                    .or_default()
                    .push(convert(span, res, service, scope, opts));
            }
        }
        let template = TracerPayload {
            container_id: resource_str(res, "container.id").unwrap_or("").into(),
            language_name: resource_str(res, "telemetry.sdk.language")
                .unwrap_or("")
                .into(),
            language_version: String::new(),
            tracer_version: resource_str(res, "telemetry.sdk.version")
                .map(|v| format!("otlp-{v}"))
                .unwrap_or_default(),
            runtime_id: String::new(),
            chunks: Vec::new(),
            tags: HashMap::new(),
            env: resource_str(res, "deployment.environment.name")
                .or_else(|| resource_str(res, "deployment.environment"))
                .unwrap_or("")
                .into(),
            hostname: hostname(res).unwrap_or_else(|| opts.host.clone()),
            app_version: resource_str(res, "service.version").unwrap_or("").into(),
        };
        let mut tp = template.clone();
        for (_, mut spans) in traces {
            mark_top_level(&mut spans, opts.top_level_by_kind);
            let ignored = spans
                .iter()
                .find(|s| s.parent_id == 0)
                .is_some_and(|root| opts.ignore.iter().any(|re| re.is_match(&root.resource)));
            if ignored {
                continue;
            }
            let chunk = TraceChunk {
                priority: 1,
                origin: String::new(),
                spans,
                tags: HashMap::new(),
                dropped_trace: false,
            };
            let len = chunk.encoded_len() + 8;
            if size > 0 && size + len > MAX_PAYLOAD {
                if !tp.chunks.is_empty() {
                    pending.push(std::mem::replace(&mut tp, template.clone()));
                }
                out.push(agent_payload(&opts.host, std::mem::take(&mut pending)));
                size = 0;
            }
            size += len;
            tp.chunks.push(chunk);
        }
        if !tp.chunks.is_empty() {
            pending.push(tp);
        }
    }
    if !pending.is_empty() {
        out.push(agent_payload(&opts.host, pending));
    }
    out
}
