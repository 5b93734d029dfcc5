//! Jaeger's span model, as both of its encodings carry it (Thrift from the agent protocol and
//! `/api/traces`, protobuf from `api_v2`), and its translation to OTLP as otelcol's jaeger
//! translator does it: the process becomes the resource (`service.name`, its tags, `hostname` →
//! `host.name`), `span.kind` the span kind, `error`/`otel.status_code` the status, references the
//! parent and links, logs the events. The Thrift and protobuf paths differ where otelcol's differ
//! (how the parent is found, scope and trace state only from protobuf, grouping by process).
//!
//! [`Budget`] bounds what one request may become in memory; the zipkin receiver uses it too.

use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::{Event, Link, SpanKind},
    status::StatusCode,
    ResourceSpans, ScopeSpans, Span, Status,
};
use std::collections::HashMap;
use std::mem::size_of;

/// One tag (Thrift `Tag`, protobuf `KeyValue`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tag {
    pub key: String,
    pub value: TagValue,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TagValue {
    Str(String),
    Bool(bool),
    I64(i64),
    F64(f64),
    Bytes(Vec<u8>),
    /// A type number neither encoding defines; otelcol keeps it as a string that says so.
    Unknown(i32),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Process {
    pub service_name: String,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SpanRef {
    pub follows_from: bool,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Log {
    pub time_unix_nano: u64,
    pub fields: Vec<Tag>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct JSpan {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// Thrift's `parentSpanId`; zero when absent (protobuf has only references).
    pub parent_span_id: [u8; 8],
    pub operation_name: String,
    pub references: Vec<SpanRef>,
    pub flags: i64,
    pub start_unix_nano: u64,
    pub duration_nano: u64,
    pub tags: Vec<Tag>,
    pub logs: Vec<Log>,
    /// protobuf only: a span may carry its own process, which wins over the batch's.
    pub process: Option<Process>,
}

/// What one request may become once decoded, charged as each span is translated, so that a small
/// body of many empty spans is refused before it takes memory. The figure charged is the size of
/// the OTLP structs and strings a span becomes.
pub(crate) struct Budget {
    used: usize,
    limit: usize,
}

/// The request would take more than the decoded-size limit.
#[derive(Debug)]
pub(crate) struct OverBudget {
    pub limit: usize,
}

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request would take more than {} MiB once decoded (max_decoded_size_mib)",
            self.limit / (1024 * 1024)
        )
    }
}

impl Budget {
    pub fn new(limit: usize) -> Budget {
        Budget { used: 0, limit }
    }

    pub fn charge(&mut self, bytes: usize) -> Result<(), OverBudget> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit {
            return Err(OverBudget { limit: self.limit });
        }
        Ok(())
    }

    /// Charges what an OTLP span takes in memory.
    pub fn charge_span(&mut self, s: &Span) -> Result<(), OverBudget> {
        let attrs = |a: &[KeyValue]| -> usize {
            a.iter()
                .map(|kv| {
                    size_of::<KeyValue>() + size_of::<AnyValue>() + kv.key.len() + value_len(kv)
                })
                .sum()
        };
        let mut n = size_of::<Span>() + s.name.len() + s.trace_state.len() + attrs(&s.attributes);
        for e in &s.events {
            n += size_of::<Event>() + e.name.len() + attrs(&e.attributes);
        }
        for l in &s.links {
            n += size_of::<Link>() + l.trace_state.len() + attrs(&l.attributes);
        }
        self.charge(n)
    }
}

fn value_len(kv: &KeyValue) -> usize {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.len(),
        Some(Value::BytesValue(b)) => b.len(),
        _ => 0,
    }
}

pub(crate) fn kv(key: impl Into<String>, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn tag_value(v: TagValue) -> Value {
    match v {
        TagValue::Str(s) => Value::StringValue(s),
        TagValue::Bool(b) => Value::BoolValue(b),
        TagValue::I64(i) => Value::IntValue(i),
        TagValue::F64(f) => Value::DoubleValue(f),
        TagValue::Bytes(b) => Value::BytesValue(b),
        TagValue::Unknown(t) => Value::StringValue(format!("<Unknown Jaeger TagType \"{t}\">")),
    }
}

/// An attribute map with otelcol's `pcommon.Map` semantics: putting a key that is there replaces
/// its value in place; removal keeps the order of the rest. Indexed, so that a span with many tags
/// costs linear time.
#[derive(Default)]
pub(crate) struct Attrs {
    list: Vec<KeyValue>,
    index: HashMap<String, usize>,
}

impl Attrs {
    pub fn with_capacity(n: usize) -> Attrs {
        Attrs {
            list: Vec::with_capacity(n),
            index: HashMap::with_capacity(n),
        }
    }

    pub fn put(&mut self, key: String, value: Value) {
        let any = Some(AnyValue { value: Some(value) });
        match self.index.get(&key) {
            Some(&i) => self.list[i].value = any,
            None => {
                self.index.insert(key.clone(), self.list.len());
                self.list.push(KeyValue {
                    key,
                    value: any,
                    ..Default::default()
                });
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        let &i = self.index.get(key)?;
        self.list[i].value.as_ref()?.value.as_ref()
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.index.remove(key)?;
        let kv = self.list.remove(i);
        for v in self.index.values_mut() {
            if *v > i {
                *v -= 1;
            }
        }
        kv.value.and_then(|v| v.value)
    }

    pub fn into_vec(self) -> Vec<KeyValue> {
        self.list
    }
}

fn tags_into(tags: Vec<Tag>, attrs: &mut Attrs) {
    for t in tags {
        attrs.put(t.key, tag_value(t.value));
    }
}

/// `service.name` and the process tags, with otelcol's two renames.
fn resource(process: Option<Process>) -> Resource {
    let Some(p) = process else {
        return Resource::default();
    };
    if p.service_name == NO_SERVICE_NAME || (p.service_name.is_empty() && p.tags.is_empty()) {
        return Resource::default();
    }
    let mut attrs = Attrs::with_capacity(p.tags.len() + 1);
    if !p.service_name.is_empty() {
        attrs.put("service.name".into(), Value::StringValue(p.service_name));
    }
    tags_into(p.tags, &mut attrs);
    if attrs.get("host.name").is_none() {
        if let Some(h) = attrs.remove("hostname") {
            attrs.put("host.name".into(), h);
        }
    }
    if attrs.get("opencensus.exporterversion").is_none() {
        if let Some(v) = attrs.remove("jaeger.version") {
            let v = match v {
                Value::StringValue(s) => s,
                _ => String::new(),
            };
            attrs.put(
                "opencensus.exporterversion".into(),
                Value::StringValue(format!("Jaeger-{v}")),
            );
        }
    }
    Resource {
        attributes: attrs.into_vec(),
        ..Default::default()
    }
}

/// otelcol's marker for "this resource had no service name" when it goes the other way.
const NO_SERVICE_NAME: &str = "OTLPResourceNoServiceName";

fn kind_of(s: &str) -> SpanKind {
    match s {
        "client" => SpanKind::Client,
        "server" => SpanKind::Server,
        "producer" => SpanKind::Producer,
        "consumer" => SpanKind::Consumer,
        "internal" => SpanKind::Internal,
        _ => SpanKind::Unspecified,
    }
}

/// The status from `error`, `otel.status_code`/`otel.status_description` and, failing those,
/// `http.status_code`, removing the tags that became the status, as otelcol does.
fn status(attrs: &mut Attrs, kind: SpanKind) -> Option<Status> {
    let mut code = StatusCode::Unset;
    let mut message = String::new();
    let mut exists = false;
    if let Some(Value::BoolValue(true)) = attrs.get("error") {
        code = StatusCode::Error;
        attrs.remove("error");
        exists = true;
        if let Some(d) = take_description(attrs) {
            message = d;
        } else if let Some(m) = attrs.get_str("http.status_message") {
            message = m.to_string();
        }
    }
    if let Some(c) = attrs.get("otel.status_code") {
        if !exists {
            exists = true;
            let c = match c {
                Value::StringValue(s) => s.to_ascii_uppercase(),
                _ => String::new(),
            };
            match c.as_str() {
                "OK" => code = StatusCode::Ok,
                "ERROR" => code = StatusCode::Error,
                _ => {}
            }
            if let Some(d) = take_description(attrs) {
                message = d;
            }
        }
        attrs.remove("otel.status_code");
    } else if !exists {
        let http = match attrs.get("http.status_code") {
            Some(Value::IntValue(i)) => Some(*i),
            Some(Value::StringValue(s)) => s.parse::<i64>().ok(),
            _ => None,
        };
        if let Some(h) = http {
            let c = if (400..500).contains(&h) && kind == SpanKind::Server {
                StatusCode::Unset
            } else if !(100..=399).contains(&h) {
                StatusCode::Error
            } else {
                StatusCode::Unset
            };
            if c != StatusCode::Unset {
                exists = true;
                code = c;
            }
            if let Some(m) = attrs.get_str("http.status_message") {
                message = m.to_string();
            }
        }
    }
    exists.then_some(Status {
        code: code as i32,
        message,
    })
}

fn take_description(attrs: &mut Attrs) -> Option<String> {
    match attrs.remove("otel.status_description")? {
        Value::StringValue(s) => Some(s),
        _ => Some(String::new()),
    }
}

/// Which encoding the spans came in, for the places where otelcol's two translators differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Thrift,
    Proto,
}

fn parent_of(s: &JSpan, enc: Encoding) -> [u8; 8] {
    if enc == Encoding::Thrift && s.parent_span_id != [0; 8] {
        return s.parent_span_id;
    }
    let same = |r: &&SpanRef| r.trace_id == s.trace_id;
    if let Some(r) = s.references.iter().filter(same).find(|r| !r.follows_from) {
        return r.span_id;
    }
    // The Thrift translator also takes a FOLLOWS_FROM reference as the parent when there is no
    // CHILD_OF one (jaeger's own model does the same); the protobuf one does not.
    if enc == Encoding::Thrift {
        if let Some(r) = s.references.iter().filter(same).find(|r| r.follows_from) {
            return r.span_id;
        }
    }
    [0; 8]
}

fn is_blank(s: &JSpan) -> bool {
    *s == JSpan::default()
}

/// One span, translated; `None` for a blank span, which otelcol skips.
fn span(mut s: JSpan, enc: Encoding) -> Option<Span> {
    if is_blank(&s) {
        return None;
    }
    let parent = parent_of(&s, enc);
    let mut attrs = Attrs::with_capacity(s.tags.len());
    tags_into(std::mem::take(&mut s.tags), &mut attrs);
    let mut kind = SpanKind::Unspecified;
    if let Some(k) = attrs.get("span.kind") {
        kind = match k {
            Value::StringValue(k) => kind_of(k),
            _ => SpanKind::Unspecified,
        };
        attrs.remove("span.kind");
    }
    let status = status(&mut attrs, kind);
    let mut trace_state = String::new();
    if enc == Encoding::Proto {
        if let Some(Value::StringValue(t)) = attrs.remove("w3c.tracestate") {
            trace_state = t;
        }
    }
    let events = s
        .logs
        .into_iter()
        .map(|l| {
            let mut a = Attrs::with_capacity(l.fields.len());
            tags_into(l.fields, &mut a);
            let name = match a.remove("event") {
                Some(Value::StringValue(n)) => n,
                Some(_) => String::new(),
                None => String::new(),
            };
            Event {
                time_unix_nano: l.time_unix_nano,
                name,
                attributes: a.into_vec(),
                ..Default::default()
            }
        })
        .collect();
    let links = s
        .references
        .into_iter()
        .filter(|r| r.span_id != parent || r.follows_from)
        .map(|r| Link {
            trace_id: r.trace_id.to_vec(),
            span_id: r.span_id.to_vec(),
            attributes: vec![kv(
                "opentracing.ref_type",
                Value::StringValue(
                    if r.follows_from {
                        "follows_from"
                    } else {
                        "child_of"
                    }
                    .into(),
                ),
            )],
            ..Default::default()
        })
        .collect();
    Some(Span {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        parent_span_id: if parent == [0; 8] {
            Vec::new()
        } else {
            parent.to_vec()
        },
        trace_state,
        name: s.operation_name,
        kind: kind as i32,
        start_time_unix_nano: s.start_unix_nano,
        end_time_unix_nano: s.start_unix_nano.saturating_add(s.duration_nano),
        attributes: attrs.into_vec(),
        events,
        links,
        status,
        // Jaeger's sampled bit is W3C's, which OTLP keeps in the low byte of the span's flags.
        flags: u32::from(s.flags & 1 == 1),
        ..Default::default()
    })
}

/// Spans grouped into one resource, as they are translated one by one.
pub(crate) struct ResourceBuilder {
    resource: Resource,
    /// `(scope name, scope version)` → index in `scopes`.
    scope_index: HashMap<(String, String), usize>,
    scopes: Vec<ScopeSpans>,
}

impl ResourceBuilder {
    pub fn new(process: Option<Process>) -> ResourceBuilder {
        ResourceBuilder {
            resource: resource(process),
            scope_index: HashMap::new(),
            scopes: Vec::new(),
        }
    }

    /// Translates and adds one span, charging `budget`; returns whether it was kept.
    pub fn add(
        &mut self,
        mut s: JSpan,
        enc: Encoding,
        budget: &mut Budget,
    ) -> Result<bool, OverBudget> {
        let scope = if enc == Encoding::Proto {
            scope_of(&mut s.tags)
        } else {
            (String::new(), String::new())
        };
        let Some(out) = span(s, enc) else {
            return Ok(false);
        };
        budget.charge_span(&out)?;
        let i = match self.scope_index.get(&scope) {
            Some(&i) => i,
            None => {
                self.scopes.push(ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: scope.0.clone(),
                        version: scope.1.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                self.scope_index.insert(scope, self.scopes.len() - 1);
                self.scopes.len() - 1
            }
        };
        self.scopes[i].spans.push(out);
        Ok(true)
    }

    pub fn finish(self) -> ResourceSpans {
        ResourceSpans {
            resource: Some(self.resource),
            scope_spans: self.scopes,
            ..Default::default()
        }
    }
}

/// `otel.scope.name` and `otel.scope.version`, taken out of the tags (protobuf path only).
fn scope_of(tags: &mut Vec<Tag>) -> (String, String) {
    let mut take = |key: &str| -> Option<String> {
        let i = tags.iter().position(|t| t.key == key)?;
        match tags.remove(i).value {
            TagValue::Str(s) => Some(s),
            _ => Some(String::new()),
        }
    };
    match take("otel.scope.name") {
        Some(name) => {
            let version = take("otel.scope.version").unwrap_or_default();
            (name, version)
        }
        None => (String::new(), String::new()),
    }
}

/// A Thrift batch: one resource from its process, every span in one scope, as otelcol's
/// `ThriftToTraces`.
pub(crate) fn thrift_batch(
    process: Option<Process>,
    spans: Vec<JSpan>,
    budget: &mut Budget,
) -> Result<Vec<ResourceSpans>, OverBudget> {
    if process.is_none() && spans.is_empty() {
        return Ok(Vec::new());
    }
    let mut b = ResourceBuilder::new(process);
    for s in spans {
        b.add(s, Encoding::Thrift, budget)?;
    }
    let mut rs = b.finish();
    if rs.scope_spans.len() > 1 {
        // Thrift spans carry no scope; one scope holds them all.
        let spans = rs.scope_spans.drain(..).flat_map(|s| s.spans).collect();
        rs.scope_spans = vec![ScopeSpans {
            scope: Some(InstrumentationScope::default()),
            spans,
            ..Default::default()
        }];
    }
    Ok(vec![rs])
}

/// Spans of a protobuf batch, regrouped by process: a span's own process wins over the batch's,
/// and each distinct process becomes one resource, as otelcol's `ProtoToTraces`.
pub(crate) struct ProtoGrouper {
    batch_process: Option<Process>,
    groups: Vec<(Option<Process>, ResourceBuilder)>,
}

impl ProtoGrouper {
    pub fn new(batch_process: Option<Process>) -> ProtoGrouper {
        ProtoGrouper {
            batch_process,
            groups: Vec::new(),
        }
    }

    pub fn add(&mut self, mut s: JSpan, budget: &mut Budget) -> Result<(), OverBudget> {
        let p = s.process.take().or_else(|| self.batch_process.clone());
        let i = match self.groups.iter().position(|(gp, _)| *gp == p) {
            Some(i) => i,
            None => {
                // Each resource holds a copy of its process's tags.
                if let Some(p) = &p {
                    budget.charge(size_of::<ResourceSpans>() + p.service_name.len())?;
                }
                self.groups.push((p.clone(), ResourceBuilder::new(p)));
                self.groups.len() - 1
            }
        };
        self.groups[i].1.add(s, Encoding::Proto, budget)?;
        Ok(())
    }

    pub fn finish(mut self) -> Vec<ResourceSpans> {
        if self.groups.is_empty() && self.batch_process.is_some() {
            // A batch with a process and no spans still yields its resource, as otelcol's does.
            let p = self.batch_process.take();
            self.groups.push((p.clone(), ResourceBuilder::new(p)));
        }
        self.groups
            .into_iter()
            .map(|(_, b)| b.finish())
            .filter(|rs| {
                !rs.scope_spans.is_empty()
                    || rs
                        .resource
                        .as_ref()
                        .is_some_and(|r| !r.attributes.is_empty())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(k: &str, v: TagValue) -> Tag {
        Tag {
            key: k.into(),
            value: v,
        }
    }

    fn s(k: &str, v: &str) -> Tag {
        tag(k, TagValue::Str(v.into()))
    }

    fn base() -> JSpan {
        JSpan {
            trace_id: [1; 16],
            span_id: [2; 8],
            operation_name: "op".into(),
            start_unix_nano: 1_000,
            duration_nano: 500,
            ..Default::default()
        }
    }

    #[test]
    fn kind_status_and_attributes_follow_otelcol() {
        let mut j = base();
        j.tags = vec![
            s("span.kind", "server"),
            tag("error", TagValue::Bool(true)),
            s("otel.status_description", "boom"),
            s("otel.status_code", "ERROR"),
            tag("n", TagValue::I64(3)),
            tag("n", TagValue::I64(4)),
        ];
        j.flags = 3;
        let out = span(j, Encoding::Thrift).unwrap();
        // Only the sampled bit carries over.
        assert_eq!(out.flags, 1);
        assert_eq!(out.kind, SpanKind::Server as i32);
        let st = out.status.unwrap();
        assert_eq!(st.code, StatusCode::Error as i32);
        assert_eq!(st.message, "boom");
        // Duplicate keys keep the last value, once; the status tags are gone.
        assert_eq!(out.attributes.len(), 1);
        assert_eq!(out.attributes[0].key, "n");
        assert_eq!(
            out.attributes[0].value.as_ref().unwrap().value,
            Some(Value::IntValue(4))
        );
        assert_eq!(out.end_time_unix_nano, 1_500);
    }

    #[test]
    fn http_status_sets_error_except_4xx_on_servers() {
        let mut j = base();
        j.tags = vec![
            s("span.kind", "server"),
            tag("http.status_code", TagValue::I64(404)),
        ];
        assert!(span(j.clone(), Encoding::Proto).unwrap().status.is_none());
        j.tags = vec![
            s("span.kind", "client"),
            tag("http.status_code", TagValue::I64(404)),
        ];
        let st = span(j, Encoding::Proto).unwrap().status.unwrap();
        assert_eq!(st.code, StatusCode::Error as i32);
    }

    #[test]
    fn references_become_parent_and_links() {
        let mut j = base();
        j.references = vec![
            SpanRef {
                follows_from: false,
                trace_id: [1; 16],
                span_id: [3; 8],
            },
            SpanRef {
                follows_from: true,
                trace_id: [9; 16],
                span_id: [4; 8],
            },
        ];
        let out = span(j, Encoding::Proto).unwrap();
        assert_eq!(out.parent_span_id, vec![3; 8]);
        assert_eq!(out.links.len(), 1);
        assert_eq!(out.links[0].span_id, vec![4; 8]);
    }

    #[test]
    fn process_becomes_the_resource() {
        let p = Process {
            service_name: "svc".into(),
            tags: vec![s("hostname", "h1"), s("jaeger.version", "Go-2.30")],
        };
        let r = resource(Some(p));
        let get = |k: &str| {
            r.attributes
                .iter()
                .find(|kv| kv.key == k)
                .and_then(|kv| kv.value.clone())
                .and_then(|v| v.value)
        };
        assert_eq!(get("service.name"), Some(Value::StringValue("svc".into())));
        assert_eq!(get("host.name"), Some(Value::StringValue("h1".into())));
        assert_eq!(
            get("opencensus.exporterversion"),
            Some(Value::StringValue("Jaeger-Go-2.30".into()))
        );
        assert!(get("hostname").is_none());
    }

    #[test]
    fn the_budget_refuses_many_empty_spans() {
        let mut b = Budget::new(10_000);
        let mut g = ProtoGrouper::new(None);
        let mut r = Ok(());
        for _ in 0..1000 {
            r = g.add(base(), &mut b);
            if r.is_err() {
                break;
            }
        }
        assert!(r.is_err());
    }
}
