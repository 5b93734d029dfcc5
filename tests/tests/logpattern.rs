//! Log patterns and dedup through the real binary (`otlp` → `logpattern` → `dedup` → `file`): the
//! OpenTelemetry Python SDK sends known message kinds during warm-up and then a new kind, and the file
//! shows the pattern attributes, exactly one `vigil.pattern.new` event, and dedup counts that add up to
//! what was sent; a storm of 100k identical error lines over 10 s leaves the agent as at most one record
//! and one summary per window, with exact counts.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use vigil_tests::{
    eventually, file_exporter_and_health, free_port, otlp_receiver, python, read_json_lines,
    repo_root, Agent,
};

/// One log record as the file exporter wrote it, flattened for checks.
#[derive(Debug, Clone)]
struct Out {
    body: String,
    attrs: BTreeMap<String, Value>,
    resource: BTreeMap<String, Value>,
}

impl Out {
    fn s(&self, key: &str) -> &str {
        self.attrs
            .get(key)
            .and_then(|v| v["stringValue"].as_str())
            .unwrap_or("")
    }

    /// `vigil.dedup.count`, written as an OTLP/JSON int (a string or a number).
    fn dedup_count(&self) -> Option<u64> {
        let v = &self.attrs.get("vigil.dedup.count")?["intValue"];
        v.as_u64().or_else(|| v.as_str()?.parse().ok())
    }
}

fn kvs(list: &Value) -> BTreeMap<String, Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| Some((kv["key"].as_str()?.to_string(), kv["value"].clone())))
        .collect()
}

fn records(path: &Path) -> Vec<Out> {
    let mut out = Vec::new();
    for line in read_json_lines(path) {
        for rl in line["resourceLogs"].as_array().into_iter().flatten() {
            let resource = kvs(&rl["resource"]["attributes"]);
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    out.push(Out {
                        body: r["body"]["stringValue"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        attrs: kvs(&r["attributes"]),
                        resource: resource.clone(),
                    });
                }
            }
        }
    }
    out
}

/// What dedup let out for some records: how many windows opened (records without a count), how many
/// summaries followed, and the occurrences they account for (each summary counts its window's first).
#[derive(Debug, PartialEq)]
struct Tally {
    firsts: u64,
    summaries: u64,
    total: u64,
}

fn tally<'a>(recs: impl Iterator<Item = &'a Out>) -> Tally {
    let (mut firsts, mut summaries, mut counted) = (0, 0, 0);
    for r in recs {
        match r.dedup_count() {
            Some(n) => {
                summaries += 1;
                counted += n;
            }
            None => firsts += 1,
        }
    }
    Tally {
        firsts,
        summaries,
        total: counted + firsts - summaries.min(firsts),
    }
}

fn start_agent(out: &Path, http: u16, health: u16, metrics: u16, processors: &str) -> Agent {
    let cfg = format!(
        r#"
{recv}processors:
{processors}
{frame}  pipelines:
    logs:
      receivers: [otlp]
      processors: [logpattern, dedup]
      exporters: [file]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#,
        frame = file_exporter_and_health(out, health),
        recv = otlp_receiver("http", http),
    );
    let mut agent = Agent::with_config(&cfg);
    agent.wait_healthy(health, Duration::from_secs(60));
    agent
}

#[test]
fn sdk_logs_get_patterns_one_new_pattern_event_and_dedup_counts() {
    let (http, health, metrics) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let warmup = 30;
    let agent = start_agent(
        &out,
        http,
        health,
        metrics,
        &format!(
            "  logpattern:\n    warmup_lines: {}\n  dedup:\n    window: 1s",
            2 * warmup
        ),
    );

    let run = format!("lp-{}", std::process::id());
    let script = repo_root().join("tests/python/logpattern_send.py");
    let sent = Command::new(python())
        .arg(&script)
        .args(["--endpoint", &format!("http://127.0.0.1:{http}")])
        .args([
            "--run",
            &run,
            "--warmup",
            &warmup.to_string(),
            "--new",
            "20",
        ])
        .output()
        .expect("run the SDK script");
    assert!(
        sent.status.success(),
        "{} failed: {}\nagent log:\n{}",
        script.display(),
        String::from_utf8_lossy(&sent.stderr),
        agent.logs()
    );
    let sent: BTreeMap<String, Vec<String>> =
        serde_json::from_slice(&sent.stdout).expect("the script prints what it sent");
    let kind_of = |body: &str| {
        sent.iter()
            .find(|(_, lines)| lines.iter().any(|l| l == body))
            .map(|(k, _)| k.clone())
    };

    // Dedup's summaries follow their window's end; wait until every kind is fully accounted for.
    let got = eventually(
        Duration::from_secs(30),
        "dedup summaries of every kind",
        || {
            let recs = records(&out);
            sent.iter()
                .all(|(kind, lines)| {
                    tally(
                        recs.iter()
                            .filter(|r| kind_of(&r.body).as_deref() == Some(kind)),
                    )
                    .total
                        >= lines.len() as u64
                })
                .then_some(recs)
        },
    );

    let (events, logs): (Vec<&Out>, Vec<&Out>) = got
        .iter()
        .partition(|r| r.s("event.name") == "vigil.pattern.new");
    for r in &logs {
        let id = r.s("log.pattern.id");
        assert_eq!(id.len(), 16, "{r:?}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{r:?}");
        assert!(r.s("log.pattern").contains("<*>"), "{r:?}");
        assert!(kind_of(&r.body).is_some(), "a record nobody sent: {r:?}");
    }
    let mut ids: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for r in &logs {
        if let Some(k) = kind_of(&r.body) {
            ids.entry(k).or_default().push(r.s("log.pattern.id"));
        }
    }
    for (kind, v) in &ids {
        assert!(
            v.iter().all(|id| *id == v[0]),
            "{kind} has several patterns: {v:?}"
        );
    }
    assert_eq!(
        ids.get("payment").and_then(|v| v.first()).map(|_| ()),
        Some(()),
        "no payment record left the agent"
    );
    let payment_id = ids["payment"][0];
    assert_eq!(
        logs.iter()
            .find(|r| kind_of(&r.body).as_deref() == Some("payment"))
            .map(|r| r.s("log.pattern")),
        Some("payment <*> declined by issuer <*> code <*>")
    );

    // Warm-up kinds are not news; the new kind is, exactly once.
    assert_eq!(events.len(), 1, "vigil.pattern.new events: {events:?}");
    let e = events[0];
    assert_eq!(e.s("vigil.pattern.id"), payment_id);
    assert_eq!(e.s("vigil.pattern.example"), sent["payment"][0]);
    assert_eq!(
        e.s("vigil.pattern.template"),
        "payment <*> declined by issuer <*> code <*>"
    );
    assert_eq!(e.resource["service.name"]["stringValue"], "shop");
    assert_eq!(e.resource["test.run"]["stringValue"], run.as_str());

    // Each kind's records add up to what was sent, with the repeats held back as counts.
    for (kind, lines) in &sent {
        let t = tally(
            logs.iter()
                .copied()
                .filter(|r| kind_of(&r.body).as_deref() == Some(kind)),
        );
        assert_eq!(t.total, lines.len() as u64, "{kind}: {t:?}");
        assert!(t.summaries >= 1 && t.summaries <= t.firsts, "{kind}: {t:?}");
        assert!(
            t.firsts + t.summaries < lines.len() as u64,
            "{kind} was not collapsed: {t:?}"
        );
    }
}

fn storm_request(n: usize) -> Vec<u8> {
    let body = "ERROR db pool: connection to db-primary refused (retrying)";
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("orders".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: (0..n)
                    .map(|_| LogRecord {
                        severity_number: 17,
                        severity_text: "ERROR".into(),
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(body.into())),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// Reads one sample from a Prometheus text page: the first line starting with `name{` whose labels
/// contain every `label`.
fn sample(page: &str, name: &str, labels: &[&str]) -> Option<f64> {
    page.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn a_storm_of_identical_errors_leaves_as_one_record_and_one_summary_per_window() {
    let (http, health, metrics) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let window = Duration::from_secs(4);
    let agent = start_agent(
        &out,
        http,
        health,
        metrics,
        "  logpattern:\n  dedup:\n    window: 4s",
    );

    // 100 requests of 1000 identical records, one every 100 ms: 100k lines in about 10 s.
    let client = reqwest::blocking::Client::new();
    let url = format!("http://127.0.0.1:{http}/v1/logs");
    let request = storm_request(1000);
    let start = Instant::now();
    for i in 0..100u32 {
        let due = start + Duration::from_millis(100) * i;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            // Pacing the load to its schedule, not waiting for readiness.
            std::thread::sleep(wait);
        }
        let r = client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(request.clone())
            .send()
            .expect("send a storm request");
        assert!(
            r.status().is_success(),
            "request {i}: {}\n{}",
            r.status(),
            agent.logs()
        );
    }
    let sending = start.elapsed();

    let recs = eventually(Duration::from_secs(30), "every storm line counted", || {
        let recs = records(&out);
        (tally(recs.iter()).total >= 100_000).then_some(recs)
    });
    let t = tally(recs.iter());
    assert_eq!(t.total, 100_000, "{t:?}");
    // A window opens with its first record and lasts `window`, so the storm spans at most this many.
    let windows = (sending.as_secs_f64() / window.as_secs_f64()).floor() as u64 + 1;
    assert!(
        t.firsts <= windows && t.summaries <= t.firsts && t.summaries >= 1,
        "{t:?} over {sending:?} with {window:?} windows"
    );
    assert_eq!(recs.len() as u64, t.firsts + t.summaries);
    for r in &recs {
        assert_eq!(r.resource["service.name"]["stringValue"], "orders");
        assert_eq!(r.s("log.pattern.id").len(), 16, "{r:?}");
        if r.dedup_count().is_some() {
            assert!(!r.s("vigil.dedup.first_seen").is_empty(), "{r:?}");
            assert!(
                r.s("vigil.dedup.last_seen") >= r.s("vigil.dedup.first_seen"),
                "{r:?}"
            );
        }
    }

    // The in/out counters tell the same story.
    let page = eventually(Duration::from_secs(15), "dedup counters", || {
        let page = reqwest::blocking::get(format!("http://127.0.0.1:{metrics}/metrics"))
            .and_then(|r| r.text())
            .ok()?;
        let outgoing = sample(
            &page,
            "otelcol_processor_outgoing_items",
            &["processor=\"dedup\""],
        )?;
        (outgoing as u64 == recs.len() as u64).then_some(page)
    });
    let incoming = sample(
        &page,
        "otelcol_processor_incoming_items",
        &["processor=\"dedup\""],
    );
    assert_eq!(incoming, Some(100_000.0), "{page}");
    let suppressed = sample(&page, "vigil_dedup_suppressed", &["processor=\"dedup\""]);
    assert_eq!(suppressed, Some((100_000 - t.firsts) as f64), "{page}");
}
