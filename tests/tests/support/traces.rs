//! What tests/tests/jaeger.rs and zipkin.rs share: run one of the Python SDK's Jaeger or Zipkin
//! exporters (tests/python/trace_send.py) against vigil, and compare what it says it sent with
//! the spans vigil's `file` exporter wrote.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use vigil_tests::{
    eventually, file_exporter_and_health, otlp_attr, read_json_lines, repo_root, Agent,
};

/// A vigil with `receiver_yaml` (the `receivers:` section's body) feeding a `file` exporter.
pub struct Vigil {
    /// Kept so the process lives as long as the test.
    pub _agent: Agent,
    pub out: PathBuf,
}

pub fn start(receiver_yaml: &str, receiver: &str) -> Vigil {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("spans.jsonl");
    let health = vigil_tests::free_port();
    let cfg = format!(
        r#"
receivers:
{receiver_yaml}
{frame}  pipelines:
    traces: {{receivers: [{receiver}], exporters: [file]}}
  telemetry:
    metrics:
      level: none
"#,
        frame = file_exporter_and_health(&out, health)
    );
    let mut agent = Agent::with_config_in(dir, &cfg);
    agent.wait_healthy(health, Duration::from_secs(60));
    Vigil { _agent: agent, out }
}

/// Runs the client; its JSON report of what it sent.
pub fn send(python: &Path, exporter: &str, port: u16, run: &str) -> Value {
    let script = repo_root().join("tests/python/trace_send.py");
    let out = Command::new(python)
        .arg(script)
        .args([
            "--exporter",
            exporter,
            "--port",
            &port.to_string(),
            "--run",
            run,
        ])
        .output()
        .expect("run tests/python/trace_send.py");
    assert!(
        out.status.success(),
        "{exporter}: the client failed (is the venv current? run scripts/test.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{exporter}: the client printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// One span as it arrived, with its resource.
pub struct Got {
    pub span: Value,
    pub resource: Value,
}

fn str_of(v: &Value) -> Option<String> {
    v["stringValue"].as_str().map(str::to_string)
}

fn int_of(v: &Value) -> Option<i64> {
    v["intValue"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v["intValue"].as_i64())
}

/// OTLP/JSON enums may be written as numbers or as names.
fn enum_of(v: &Value, names: &[&str]) -> Option<usize> {
    v.as_u64()
        .map(|n| n as usize)
        .or_else(|| names.iter().position(|n| Some(*n) == v.as_str()))
}

const KINDS: [&str; 6] = [
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];
const CODES: [&str; 3] = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

/// The spans of run `run` that arrived, by span id.
pub fn arrived(out: &Path, run: &str) -> std::collections::BTreeMap<String, Got> {
    let mut m = std::collections::BTreeMap::new();
    for l in read_json_lines(out) {
        for rs in l["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let ours = otlp_attr(&s["attributes"], "test.run")
                        .and_then(str_of)
                        .is_some_and(|r| r == run);
                    if ours {
                        let id = s["spanId"].as_str().unwrap_or_default().to_lowercase();
                        m.insert(
                            id,
                            Got {
                                span: s.clone(),
                                resource: rs["resource"].clone(),
                            },
                        );
                    }
                }
            }
        }
    }
    m
}

/// How a protocol carries what the SDK sent.
pub struct Expect {
    /// Whether integer, float and boolean attributes keep their types (Jaeger tags are typed;
    /// Zipkin tags are strings, typed again only with `parse_string_tags`).
    pub typed: bool,
    /// Whether the span kind arrives (the SDK's Zipkin v1 encoder writes no `cs`/`sr` annotations,
    /// so v1 spans carry no kind, and otelcol reads them as unspecified).
    pub kinds: bool,
    /// How an event's name arrives.
    pub event: EventForm,
    /// Whether the status message arrives (Zipkin's `error` tag carries it as an attribute instead).
    pub status_message: bool,
}

/// Where the SDK's exporters put an event's name, and so where otelcol's translation (and vigil's)
/// leaves it.
#[allow(dead_code)] // each test file uses one of the forms
pub enum EventForm {
    /// The SDK's Jaeger exporters log it under `message` (OpenTracing's key); only a field named
    /// `event` becomes the event's name, so the name stays empty and `message` an attribute.
    MessageAttribute,
    /// The SDK's Zipkin exporters write `{"name": {attributes}}` as the annotation's value, which
    /// becomes the event's name as it is.
    InName,
}

/// Waits for every sent span and checks each one's ids, parent, name, kind, attributes, status,
/// events and service name.
pub fn check(v: &Vigil, exporter: &str, sent: &Value, run: &str, e: &Expect) {
    let sent = sent["spans"].as_array().expect("spans").clone();
    let got = eventually(
        Duration::from_secs(60),
        &format!("{exporter}: all {} spans in vigil's output", sent.len()),
        || {
            let a = arrived(&v.out, run);
            (a.len() >= sent.len()).then_some(a)
        },
    );
    assert_eq!(got.len(), sent.len(), "{exporter}: spans arrived twice?");
    for s in &sent {
        let id = s["span_id"].as_str().unwrap_or_default();
        let name = s["name"].as_str().unwrap_or_default();
        let g = got
            .get(id)
            .unwrap_or_else(|| panic!("{exporter}: span {name} ({id}) did not arrive"));
        let span = &g.span;
        let ctx = format!("{exporter}: span {name}: {span}");
        assert_eq!(span["name"], s["name"], "{ctx}");
        assert_eq!(
            span["traceId"].as_str().unwrap_or_default().to_lowercase(),
            s["trace_id"].as_str().unwrap_or_default(),
            "{ctx}"
        );
        assert_eq!(
            span["parentSpanId"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase(),
            s["parent_id"].as_str().unwrap_or_default(),
            "{ctx}"
        );
        let kind = enum_of(&span["kind"], &KINDS).unwrap_or(0);
        match s["kind"].as_str().unwrap_or_default() {
            _ if !e.kinds => assert_eq!(kind, 0, "{ctx}"),
            "SERVER" => assert_eq!(kind, 2, "{ctx}"),
            "CLIENT" => assert_eq!(kind, 3, "{ctx}"),
            // Neither protocol marks an internal span; otelcol reads it as unspecified too.
            _ => assert!(kind <= 1, "{ctx}"),
        }
        let service = otlp_attr(&g.resource["attributes"], "service.name").and_then(str_of);
        assert_eq!(service, Some(format!("svc-{exporter}")), "{ctx}");
        let attrs = &span["attributes"];
        let attr = |k: &str| otlp_attr(attrs, k).cloned().unwrap_or(Value::Null);
        for (k, want) in s["attributes"].as_object().expect("attributes") {
            let a = attr(k);
            let ok = match want {
                Value::String(w) => str_of(&a).as_deref() == Some(w.as_str()),
                Value::Bool(b) if e.typed => a["boolValue"].as_bool() == Some(*b),
                Value::Number(n) if e.typed && n.is_i64() => int_of(&a) == n.as_i64(),
                Value::Number(n) if e.typed => a["doubleValue"].as_f64() == n.as_f64(),
                // Untyped: the SDK writes numbers and booleans as Python's str() (booleans
                // lower-cased), which is JSON's spelling for these values.
                other => {
                    let text = other.to_string();
                    str_of(&a).is_some_and(|t| t == text)
                }
            };
            assert!(ok, "{ctx}: attribute {k} should be {want}, is {a}");
        }
        let code = enum_of(&span["status"]["code"], &CODES).unwrap_or(0);
        if s["status"] == "ERROR" {
            assert_eq!(code, 2, "{ctx}");
            if e.status_message {
                assert_eq!(span["status"]["message"], "boom", "{ctx}");
            }
            let events = span["events"].as_array().cloned().unwrap_or_default();
            assert_eq!(events.len(), 1, "{ctx}");
            let ev = &events[0];
            let name = ev["name"].as_str().unwrap_or_default();
            match e.event {
                EventForm::MessageAttribute => {
                    assert_eq!(name, "", "{ctx}");
                    let msg = otlp_attr(&ev["attributes"], "message").and_then(str_of);
                    assert_eq!(msg.as_deref(), Some("retrying"), "{ctx}");
                    let attempt = otlp_attr(&ev["attributes"], "attempt").and_then(int_of);
                    assert_eq!(attempt, Some(2), "{ctx}");
                }
                EventForm::InName => assert!(name.contains("retrying"), "{ctx}"),
            }
        } else {
            assert_ne!(code, 2, "{ctx}");
        }
    }
}
