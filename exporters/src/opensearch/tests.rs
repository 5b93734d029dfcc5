//! Tests against the Bulk API protocol double of the `elasticsearch` tests (OpenSearch is not a
//! Debian package and cannot run here; its Bulk API is Elasticsearch's): NDJSON parsed as the
//! server does, the documented per-item response shape answered.

use super::*;
use crate::elasticsearch::tests::{double, Answer};
use crate::helper::counters::testing::TestRecorder;
use serde_json::{json, Value};
use vigil_core::attrs::kv_str;
use vigil_core::otlp::common::v1::{any_value, AnyValue};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
use vigil_core::Consumer;

fn id() -> ComponentId {
    ComponentId::parse("opensearch").unwrap()
}

fn load(cfg: Value) -> Result<OsConfig, ConfigError> {
    let cfg: OsConfig = vigil_core::config::decode(ComponentKind::Exporter, &id(), &cfg)?;
    cfg.validate(&id())?;
    Ok(cfg)
}

fn exporter(rec: &TestRecorder, cfg: Value) -> SendStack<OsSender> {
    let cfg = load(cfg).unwrap();
    let set = Settings::new(ComponentKind::Exporter, &id());
    metrics::with_local_recorder(rec, || build(&set, cfg)).unwrap()
}

fn logs(n: usize) -> Telemetry {
    Telemetry::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![kv_str("service.name", "cart")],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: (0..n)
                .map(|i| LogRecord {
                    time_unix_nano: 1_705_314_600_000_000_000,
                    severity_text: "WARN".into(),
                    severity_number: 13,
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(format!("line {i}"))),
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

#[tokio::test]
async fn logs_go_to_the_configured_index_with_placeholders_and_date() {
    let (d, url) = double().await;
    d.answers
        .lock()
        .unwrap()
        .extend([Answer::Items(vec![201, 429]), Answer::Items(vec![201])]);
    let rec = TestRecorder::default();
    let e = exporter(
        &rec,
        json!({
            "http": {"endpoint": url, "tls": {"insecure": true}, "headers": {"x-tenant": "t1"}},
            "logs_index": "otel-logs-%{service.name}-%{missing}",
            "logs_index_fallback": "none",
            "logs_index_time_format": "yyyy.MM",
            "bulk_action": "index",
            "sending_queue": {"enabled": false},
            "retry_on_failure": {"initial_interval": "10ms"},
        }),
    );
    e.consume(logs(2)).await.unwrap();
    let got = d.got.lock().unwrap();
    assert_eq!(got.len(), 2);
    let month = Utc::now().format("%Y.%m").to_string();
    let (a, doc) = &got[0].docs[0];
    assert_eq!(
        a,
        &json!({"index": {"_index": format!("otel-logs-cart-none-{month}")}})
    );
    assert_eq!(got[0].headers["x-tenant"], "t1");
    assert_eq!(doc["body"], "line 0");
    assert_eq!(doc["severity"], json!({"text": "WARN", "number": 13}));
    assert_eq!(doc["resource"], json!({"service.name": "cart"}));
    assert_eq!(
        doc["attributes"]["data_stream"],
        json!({"dataset": "default", "namespace": "namespace", "type": "record"})
    );
    assert_eq!(doc["@timestamp"], "2024-01-15T10:30:00.000000000Z");
    // Only the item refused with 429 went again.
    assert_eq!(got[1].docs.len(), 1);
    assert_eq!(got[1].docs[0].1["body"], "line 1");
    assert_eq!(
        rec.counter("otelcol_exporter_sent_log_records{exporter=opensearch}"),
        2
    );
}

#[tokio::test]
async fn spans_are_ss4o_documents_and_mapping_errors_are_counted() {
    let (d, url) = double().await;
    d.answers
        .lock()
        .unwrap()
        .push_back(Answer::Items(vec![400]));
    let rec = TestRecorder::default();
    let e = exporter(
        &rec,
        json!({"http": {"endpoint": url}, "dataset": "shop", "sending_queue": {"enabled": false}}),
    );
    let span = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "checkout".into(),
        kind: 3,
        start_time_unix_nano: 1_705_314_600_000_000_000,
        end_time_unix_nano: 1_705_314_601_000_000_000,
        ..Default::default()
    };
    let data = Telemetry::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: vec![span.clone(), span],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    e.consume(data).await.unwrap();
    let got = d.got.lock().unwrap();
    assert_eq!(got.len(), 1);
    let (a, s) = &got[0].docs[0];
    assert_eq!(
        a,
        &json!({"create": {"_index": "ss4o_traces-shop-namespace"}})
    );
    assert_eq!(s["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(s["traceId"], "01010101010101010101010101010101");
    assert_eq!(s["endTime"], "2024-01-15T10:30:01.000000000Z");
    assert_eq!(s["attributes"]["data_stream"]["type"], "span");
    assert_eq!(
        (
            rec.counter("otelcol_exporter_sent_spans{exporter=opensearch}"),
            rec.counter("otelcol_exporter_send_failed_spans{exporter=opensearch}")
        ),
        (1, 1)
    );
}

#[test]
fn config_follows_upstream() {
    let cfg = load(json!({"http": {"endpoint": "http://opensearch:9200"}})).unwrap();
    assert_eq!(
        (cfg.dataset.as_str(), cfg.namespace.as_str()),
        ("default", "namespace")
    );
    assert_eq!(cfg.bulk_action, "create");
    assert_eq!(cfg.mapping.mode, "ss4o");
    let err = |v: Value| load(v).unwrap_err().to_string();
    assert!(err(json!({})).contains("opensearch::http::endpoint"));
    assert!(
        err(json!({"http": {"endpoint": "http://o:9200"}, "bulk_action": "update"}))
            .contains("bulk_action")
    );
    assert!(
        err(json!({"http": {"endpoint": "http://o:9200"}, "mapping": {"mode": "otel-v1"}}))
            .contains("not built")
    );
    assert_eq!(java_date_format("yyyy-MM-dd"), "%Y-%m-%d");
}
