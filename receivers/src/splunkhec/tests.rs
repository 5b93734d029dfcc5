//! The receiver on a real listener, driven over HTTP with HEC's request shapes; the `ack` store is
//! the real one (`vigil_core::ack::InMemoryAcks`) behind a minimal extension.

use super::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use vigil_core::ack::InMemoryAcks;
use vigil_core::otlp::common::v1::any_value::Value as V;
use vigil_core::otlp::metrics::v1::metric::Data;
use vigil_core::otlp::metrics::v1::number_data_point::Value as N;
use vigil_core::{Extension, Telemetry};

/// Records every batch, answering with `answer` (Ok when `None`).
#[derive(Default)]
struct Capture {
    got: Mutex<Vec<Telemetry>>,
    answer: Mutex<Option<ConsumeError>>,
}

#[async_trait::async_trait]
impl Consumer for Capture {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        if let Some(e) = vigil_core::lock(&self.answer).clone() {
            return Err(e);
        }
        vigil_core::lock(&self.got).push(data);
        Ok(())
    }
}

impl Capture {
    fn logs(&self) -> Vec<vigil_core::otlp::logs::v1::ResourceLogs> {
        let mut out = Vec::new();
        for t in vigil_core::lock(&self.got).iter() {
            if let Telemetry::Logs(l) = t {
                out.extend(l.iter().cloned());
            }
        }
        out
    }

    fn metrics(&self) -> Vec<vigil_core::otlp::metrics::v1::ResourceMetrics> {
        let mut out = Vec::new();
        for t in vigil_core::lock(&self.got).iter() {
            if let Telemetry::Metrics(m) = t {
                out.extend(m.iter().cloned());
            }
        }
        out
    }
}

struct AckExt(Arc<InMemoryAcks>);
impl Component for AckExt {}
impl Extension for AckExt {
    fn ack_store(&self) -> Option<Arc<dyn AckStore>> {
        Some(self.0.clone())
    }
}

struct Running {
    r: SplunkHecReceiver,
    base: String,
    logs: Arc<Capture>,
    metrics: Arc<Capture>,
}

fn build(cfg: Value, logs: bool, metrics: bool) -> (SplunkHecReceiver, Arc<Capture>, Arc<Capture>) {
    let id = ComponentId::parse("splunk_hec").unwrap();
    let mut cfg = cfg;
    cfg["endpoint"] = json!("127.0.0.1:0");
    let cfg: SplunkHecConfig = serde_json::from_value(cfg).unwrap();
    validate(&cfg).unwrap();
    let (l, m) = (Arc::new(Capture::default()), Arc::new(Capture::default()));
    let mut next = NextConsumers::new();
    if logs {
        next.insert(Signal::Logs, l.clone());
    }
    if metrics {
        next.insert(Signal::Metrics, m.clone());
    }
    let r = SplunkHecReceiver {
        set: Settings::new(ComponentKind::Receiver, &id),
        cfg: Arc::new(cfg),
        next,
        addr: Mutex::new(None),
    };
    (r, l, m)
}

fn host_with_ack() -> Host {
    let mut exts: HashMap<ComponentId, Arc<dyn Extension>> = HashMap::new();
    exts.insert(
        ComponentId::parse("ack").unwrap(),
        Arc::new(AckExt(Arc::new(InMemoryAcks::new("ack", 10, 10)))),
    );
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    Host::new(exts, tx)
}

async fn start(cfg: Value, logs: bool, metrics: bool) -> Running {
    let (r, l, m) = build(cfg, logs, metrics);
    r.start(&host_with_ack()).await.unwrap();
    let base = format!("http://{}", r.local_addr().unwrap());
    Running {
        r,
        base,
        logs: l,
        metrics: m,
    }
}

async fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> (u16, String) {
    let mut req = reqwest::Client::new().post(url).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn attrs(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(V::StringValue(s)) => s.clone(),
                Some(V::DoubleValue(d)) => format!("{d}"),
                Some(V::BoolValue(b)) => b.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

const CHANNEL: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

/// Two log events on two hosts, gzip, with a passed-through token: two resources named by
/// `hec_metadata_to_otel_attrs`, the event as body, fields as attributes, time in ns.
#[tokio::test]
async fn json_events_become_logs_grouped_by_metadata() {
    let t = start(
        json!({"access_token_passthrough": true,
               "hec_metadata_to_otel_attrs": {"index": "splunk.index"}}),
        true,
        true,
    )
    .await;
    let body = r#"{"time": 1700000000.5, "host": "web-1", "source": "nginx", "sourcetype": "access", "index": "main", "event": "GET / 200", "fields": {"region": "eu", "size": 512}}
{"host": "web-2", "event": {"msg": "structured", "n": 2}}
{"time": "1700000001", "host": "web-1", "source": "nginx", "sourcetype": "access", "index": "main", "event": "GET /x 404"}"#;
    let (status, text) = post(
        &format!("{}/services/collector/event", t.base),
        &[
            ("Authorization", "Splunk tok-123"),
            ("Content-Encoding", "gzip"),
        ],
        gzip(body.as_bytes()),
    )
    .await;
    assert_eq!((status, text.as_str()), (200, OK));
    let logs = t.logs.logs();
    assert_eq!(logs.len(), 2, "{logs:?}");
    let res = attrs(&logs[0].resource.as_ref().unwrap().attributes);
    assert_eq!(res["host.name"], "web-1");
    assert_eq!(res["com.splunk.source"], "nginx");
    assert_eq!(res["com.splunk.sourcetype"], "access");
    assert_eq!(res["splunk.index"], "main");
    assert_eq!(res[ACCESS_TOKEN_ATTR], "tok-123");
    let recs = &logs[0].scope_logs[0].log_records;
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].time_unix_nano, 1_700_000_000_500_000_000);
    assert_eq!(recs[1].time_unix_nano, 1_700_000_001_000_000_000);
    assert_eq!(
        recs[0].body.as_ref().unwrap().value,
        Some(V::StringValue("GET / 200".into()))
    );
    let a = attrs(&recs[0].attributes);
    assert_eq!((a["region"].as_str(), a["size"].as_str()), ("eu", "512"));
    let res2 = attrs(&logs[1].resource.as_ref().unwrap().attributes);
    assert_eq!(res2["host.name"], "web-2");
    assert!(!res2.contains_key("com.splunk.source"));
    let Some(V::KvlistValue(kv)) = logs[1].scope_logs[0].log_records[0]
        .body
        .as_ref()
        .unwrap()
        .value
        .clone()
    else {
        panic!("a map body");
    };
    assert_eq!(kv.values[0].key, "msg");
    assert!(t.metrics.metrics().is_empty());
    t.r.shutdown().await.unwrap();
}

/// Both metric shapes: several `metric_name:<name>` fields, and `metric_name` with `_value`; a
/// numeric string is parsed, a non-number dropped; ms timestamps recognised.
#[tokio::test]
async fn metric_events_become_gauges() {
    let t = start(json!({}), true, true).await;
    let body = r#"{"time": 1700000000123, "host": "db", "event": "metric", "fields": {"metric_name:cpu.util": 0.75, "metric_name:mem.used": "2048", "metric_name:bad": "n/a", "core": 3, "tier": "gold"}}
{"time": 1700000000, "event": "metric", "fields": {"metric_name": "queue.depth", "_value": 7, "queue": "q1"}}"#;
    let (status, _) = post(&format!("{}/services/collector", t.base), &[], body).await;
    assert_eq!(status, 200);
    let rms = t.metrics.metrics();
    assert_eq!(rms.len(), 2);
    let ms = &rms[0].scope_metrics[0].metrics;
    let names: Vec<&str> = ms.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["cpu.util", "mem.used"]);
    let Some(Data::Gauge(g)) = &ms[1].data else {
        panic!("a gauge")
    };
    let p = &g.data_points[0];
    assert_eq!(p.value, Some(N::AsDouble(2048.0)));
    assert_eq!(p.time_unix_nano, 1_700_000_000_123_000_000);
    let a = attrs(&p.attributes);
    assert_eq!((a["core"].as_str(), a["tier"].as_str()), ("3", "gold"));
    assert_eq!(a.len(), 2, "{a:?}");
    let q = &rms[1].scope_metrics[0].metrics[0];
    assert_eq!(q.name, "queue.depth");
    let Some(Data::Gauge(g)) = &q.data else {
        panic!("a gauge")
    };
    assert_eq!(g.data_points[0].value, Some(N::AsDouble(7.0)));
    assert_eq!(g.data_points[0].time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(attrs(&g.data_points[0].attributes)["queue"], "q1");
    assert!(t.logs.logs().is_empty());
    t.r.shutdown().await.unwrap();
}

/// `raw_path`: lines (CRLF too) with metadata and time from the query; `splitting: none` keeps
/// the body whole.
#[tokio::test]
async fn raw_bodies_split_by_line_or_not() {
    let t = start(json!({"raw_path": "/raw"}), true, false).await;
    let (status, _) = post(
        &format!("{}/raw?host=h1&sourcetype=syslog&time=1700000000", t.base),
        &[],
        "first line\r\nsecond line\n",
    )
    .await;
    assert_eq!(status, 200);
    let logs = t.logs.logs();
    let res = attrs(&logs[0].resource.as_ref().unwrap().attributes);
    assert_eq!(res["host.name"], "h1");
    assert_eq!(res["com.splunk.sourcetype"], "syslog");
    let recs = &logs[0].scope_logs[0].log_records;
    let bodies: Vec<_> = recs.iter().map(|r| r.body.clone().unwrap().value).collect();
    assert_eq!(
        bodies,
        [
            Some(V::StringValue("first line".into())),
            Some(V::StringValue("second line".into()))
        ]
    );
    assert_eq!(recs[0].time_unix_nano, 1_700_000_000_000_000_000);
    let (status, _) = post(&format!("{}/raw?time=-1", t.base), &[], "x").await;
    assert_eq!(status, 400);
    t.r.shutdown().await.unwrap();

    let t = start(json!({"splitting": "none"}), true, false).await;
    let (status, _) = post(&format!("{}/services/collector/raw", t.base), &[], "a\nb\n").await;
    assert_eq!(status, 200);
    let recs = t.logs.logs()[0].scope_logs[0].log_records.clone();
    assert_eq!(recs.len(), 1);
    assert_eq!(
        recs[0].body.clone().unwrap().value,
        Some(V::StringValue("a\nb\n".into()))
    );
    t.r.shutdown().await.unwrap();
}

/// HEC's indexer acknowledgement: a request on a channel gets an ackId; the ack route answers
/// true once, then false; a missing or malformed channel is refused.
#[tokio::test]
async fn ack_ids_are_handed_out_and_answered() {
    let t = start(json!({"ack": {"extension": "ack"}}), true, true).await;
    let url = format!("{}/services/collector/event", t.base);
    let ev = r#"{"event": "hello"}"#;
    let (s, text) = post(&url, &[(CHANNEL_HEADER, CHANNEL)], ev).await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["ackId"], 1);
    // The query parameter works too, in lower case.
    let (_, text) = post(&format!("{url}?channel={CHANNEL}"), &[], ev).await;
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["ackId"], 2);
    // Without a channel: no ackId.
    let (_, text) = post(&url, &[], ev).await;
    assert_eq!(text, OK);
    let ack = format!("{}/services/collector/ack", t.base);
    let (s, text) = post(&ack, &[(CHANNEL_HEADER, CHANNEL)], r#"{"acks": [1, 2, 3]}"#).await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v, json!({"acks": {"1": true, "2": true, "3": false}}));
    let (_, text) = post(&ack, &[(CHANNEL_HEADER, CHANNEL)], r#"{"acks": [1]}"#).await;
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"acks": {"1": false}})
    );
    let (s, text) = post(&ack, &[], r#"{"acks": [1]}"#).await;
    assert_eq!((s, text.as_str()), (400, CHANNEL_MISSING));
    let (s, text) = post(&url, &[(CHANNEL_HEADER, "not-a-uuid")], ev).await;
    assert_eq!((s, text.as_str()), (400, CHANNEL_INVALID));
    let (s, _) = post(&ack, &[(CHANNEL_HEADER, CHANNEL)], r#"{"acks": []}"#).await;
    assert_eq!(s, 400);
    t.r.shutdown().await.unwrap();

    // Without `ack::extension` the ack path is just another event path.
    let t = start(json!({}), true, true).await;
    let (s, text) = post(
        &format!("{}/services/collector/ack", t.base),
        &[(CHANNEL_HEADER, CHANNEL)],
        r#"{"acks": [1]}"#,
    )
    .await;
    assert_eq!((s, text.as_str()), (400, EVENT_REQUIRED));
    t.r.shutdown().await.unwrap();
}

/// Request headers, body, and the status and body HEC answers.
type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, u16, &'a str);

/// HEC's answers to bad requests, as contrib writes them.
#[tokio::test]
async fn bad_requests_get_hecs_answers() {
    let t = start(json!({"max_request_body_size": 64}), true, false).await;
    let url = format!("{}/services/collector", t.base);
    let c = reqwest::Client::new();
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.text().await.unwrap(), POST_ONLY);
    for path in [
        "/services/collector/health",
        "/services/collector/health/1.0",
    ] {
        let r = c.get(format!("{}{path}", t.base)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.text().await.unwrap(), HEALTHY);
    }
    let cases: &[Case] = &[
        (&[("Content-Encoding", "deflate")], "x", 415, BAD_ENCODING),
        (&[], "", 400, NO_DATA),
        (&[], "not json", 400, INVALID_FORMAT),
        (&[], r#"{"host": "h"}"#, 400, EVENT_REQUIRED),
        (&[], r#"{"event": ""}"#, 400, EVENT_BLANK),
        (
            &[],
            r#"{"event": "metric", "fields": {"metric_name:x": 1}}"#,
            400,
            UNSUPPORTED_METRIC,
        ),
        (&[("Content-Encoding", "gzip")], "not gzip", 400, GZIP_ERROR),
    ];
    for (headers, body, status, answer) in cases {
        let (s, text) = post(&url, headers, body.to_string()).await;
        assert_eq!((s, text.as_str()), (*status, *answer), "{body:?}");
    }
    let (s, text) = post(
        &url,
        &[],
        r#"{"event": "ok"}{"event": "x", "fields": {"nested": {"a": 1}}}"#,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["invalid-event-number"],
        1
    );
    let (s, _) = post(&url, &[], format!(r#"{{"event": "{}"}}"#, "x".repeat(100))).await;
    assert_eq!(s, 413);
    // 64 bytes as sent, but far more once inflated.
    let (s, _) = post(
        &url,
        &[("Content-Encoding", "gzip")],
        gzip(format!(r#"{{"event": "{}"}}"#, "x".repeat(10_000)).as_bytes()),
    )
    .await;
    assert_eq!(s, 413);
    assert!(t.logs.logs().is_empty());
    t.r.shutdown().await.unwrap();
}

/// A pipeline asking for a retry gets HEC's "Server is busy"; a refusal, 500. Either way no ackId
/// is handed out.
#[tokio::test]
async fn pipeline_errors_become_busy_or_internal() {
    let t = start(json!({"ack": {"extension": "ack"}}), true, false).await;
    let url = format!("{}/services/collector", t.base);
    *vigil_core::lock(&t.logs.answer) = Some(ConsumeError::retryable("queue full"));
    let (s, text) = post(&url, &[(CHANNEL_HEADER, CHANNEL)], r#"{"event": "a"}"#).await;
    assert_eq!((s, text.as_str()), (503, BUSY));
    *vigil_core::lock(&t.logs.answer) = Some(ConsumeError::permanent("bad", 1));
    let (s, text) = post(&url, &[], r#"{"event": "a"}"#).await;
    assert_eq!((s, text.as_str()), (500, INTERNAL));
    t.r.shutdown().await.unwrap();
}

/// Counters: refused items (otelcol's `otelcol_receiver_refused_log_records`) and too-large
/// requests.
#[test]
fn refusals_and_oversized_bodies_are_counted() {
    let rec = metrics_util::debugging::DebuggingRecorder::new();
    let snap = rec.snapshotter();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (r, logs, _) = build(json!({"max_request_body_size": 64}), true, false);
    metrics::with_local_recorder(&rec, || rt.block_on(r.start(&Host::detached()))).unwrap();
    let base = format!("http://{}/services/collector", r.local_addr().unwrap());
    *vigil_core::lock(&logs.answer) = Some(ConsumeError::retryable("full"));
    rt.block_on(async {
        post(&base, &[], r#"{"event": "a"}{"event": "b"}"#).await;
        post(&base, &[], "y".repeat(100)).await;
        r.shutdown().await.unwrap();
    });
    let c = vigil_core::testing::Counters::take(&snap);
    let labels = [("receiver", "splunk_hec"), ("transport", "http")];
    assert_eq!(c.sum("otelcol_receiver_refused_log_records", &labels), 2);
    assert_eq!(c.sum("vigil_receiver_requests_too_large", &labels), 1);
}

#[test]
fn config_keys_and_defaults() {
    let d = SplunkHecConfig::default();
    assert_eq!(d.endpoint, "localhost:8088");
    assert_eq!(d.ack.path, "/services/collector/ack");
    assert_eq!(d.hec_metadata_to_otel_attrs.host, "host.name");
    let id = ComponentId::parse("splunk_hec").unwrap();
    let load = |v: Value| {
        vigil_core::config::decode::<SplunkHecConfig>(ComponentKind::Receiver, &id, &v)
            .and_then(|c| validate(&c).map(|_| c))
            .map_err(|e| e.to_string())
    };
    let full = load(json!({
        "endpoint": "0.0.0.0:8088", "access_token_passthrough": true,
        "ack": {"extension": "ack/hec", "path": "/ack"}, "raw_path": "/raw",
        "splitting": "none", "health_path": "/health",
        "hec_metadata_to_otel_attrs": {"source": "s", "sourcetype": "st", "index": "i", "host": "h"}
    }))
    .unwrap();
    assert_eq!(full.splitting, Splitting::None);
    let e = load(json!({"raw_path": "raw"})).unwrap_err();
    assert!(
        e.contains("raw_path") && e.contains("starting with '/'"),
        "{e}"
    );
    let e = load(json!({"splitting": "word"})).unwrap_err();
    assert!(e.contains("splitting"), "{e}");
    let e = load(json!({"cors": {}})).unwrap_err();
    assert!(e.contains("cors"), "{e}");
    assert!(is_uuid("0F1E2D3C4B5A69788796A5B4C3D2E1F0"));
    assert!(is_uuid("{0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0}"));
    assert!(!is_uuid("0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F"));
    assert!(!is_uuid("0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1FG"));
}
