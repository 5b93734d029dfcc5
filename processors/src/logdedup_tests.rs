use super::*;
use serde_json::json;
use vigil_core::attrs::{get, get_str, kv, kv_str};
use vigil_core::otlp::common::v1::{AnyValue, KeyValueList};
use vigil_core::ComponentKind;

#[derive(Default)]
struct Sink(Mutex<Vec<LogRecord>>);

#[async_trait]
impl Consumer for Sink {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        if let Telemetry::Logs(rls) = data {
            let mut v = lock(&self.0);
            for rl in rls {
                for sl in rl.scope_logs {
                    v.extend(sl.log_records);
                }
            }
        }
        Ok(())
    }
}

impl Sink {
    fn take(&self) -> Vec<LogRecord> {
        std::mem::take(&mut *lock(&self.0))
    }
}

fn make(cfg: serde_json::Value) -> (LogDedup, Arc<Sink>) {
    let id = ComponentId::parse("logdedup").unwrap();
    let c: LogDedupConfig =
        vigil_core::config::decode(ComponentKind::Processor, &id, &cfg).unwrap();
    let checked = check(&c).unwrap();
    let sink = Arc::new(Sink::default());
    let p = LogDedup::new(
        vigil_core::Settings::new(ComponentKind::Processor, &id),
        c,
        checked,
        sink.clone(),
    );
    (p, sink)
}

fn rec(body: Value, sev: i32, attrs: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        body: Some(AnyValue { value: Some(body) }),
        severity_number: sev,
        attributes: attrs,
        time_unix_nano: 5,
        ..Default::default()
    }
}

fn batch(records: Vec<LogRecord>) -> Telemetry {
    Telemetry::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![kv_str("service.name", "api")],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn text(s: &str) -> Value {
    Value::StringValue(s.into())
}

fn count(r: &LogRecord, attr: &str) -> i64 {
    match get(&r.attributes, attr) {
        Some(Value::IntValue(n)) => *n,
        other => panic!("{attr}: {other:?}"),
    }
}

/// Identical records are held and leave as one with otelcol's count and observed-time attributes;
/// a different severity or attribute is another record.
#[tokio::test]
async fn identical_records_leave_as_one_per_interval() {
    let (p, sink) = make(json!({"log_count_attribute": "dedup_count"}));
    let same = || rec(text("disk full"), 17, vec![kv_str("host", "a")]);
    p.consume(batch(vec![
        same(),
        same(),
        rec(text("disk full"), 9, vec![kv_str("host", "a")]),
    ]))
    .await
    .unwrap();
    p.consume(batch(vec![
        same(),
        rec(text("disk full"), 17, vec![kv_str("host", "b")]),
    ]))
    .await
    .unwrap();
    assert!(
        sink.take().is_empty(),
        "nothing leaves before the interval ends"
    );
    p.flush().await;
    let out = sink.take();
    assert_eq!(out.len(), 3);
    assert_eq!(count(&out[0], "dedup_count"), 3);
    assert_eq!(count(&out[1], "dedup_count"), 1);
    assert_eq!(count(&out[2], "dedup_count"), 1);
    let first = get_str(&out[0].attributes, FIRST_OBSERVED).unwrap();
    assert!(first.ends_with('Z') && first.len() == 20, "{first}");
    assert!(get_str(&out[0].attributes, LAST_OBSERVED).is_some());
    assert!(
        out[0].time_unix_nano > 5,
        "the record's time is the emission time"
    );
    // The next interval starts empty.
    p.flush().await;
    assert!(sink.take().is_empty());
}

/// exclude_fields leave fields out of matching and out of the emitted record; conditions decide
/// which records are aggregated, the rest pass through at once.
#[tokio::test]
async fn exclude_fields_and_conditions() {
    let (p, sink) = make(json!({
        "exclude_fields": ["body.ts", "attributes.req\\.id"],
        "conditions": ["attributes[\"dedup\"] == true"],
    }));
    let body = |ts: &str| {
        Value::KvlistValue(KeyValueList {
            values: vec![kv_str("msg", "retrying"), kv_str("ts", ts)],
        })
    };
    let r = |ts: &str, id: &str| {
        rec(
            body(ts),
            13,
            vec![kv("dedup", Value::BoolValue(true)), kv_str("req.id", id)],
        )
    };
    p.consume(batch(vec![
        r("1", "x"),
        r("2", "y"),
        rec(text("not me"), 9, vec![]),
    ]))
    .await
    .unwrap();
    let passed = sink.take();
    assert_eq!(
        passed.len(),
        1,
        "the record no condition holds for passes at once"
    );
    p.flush().await;
    let out = sink.take();
    assert_eq!(out.len(), 1);
    assert_eq!(count(&out[0], "log_count"), 2);
    assert!(get(&out[0].attributes, "req.id").is_none());
    match out[0].body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Value::KvlistValue(l)) => {
            assert_eq!(l.values.len(), 1);
            assert_eq!(l.values[0].key, "msg");
        }
        other => panic!("{other:?}"),
    }
}

/// Beyond max_keys a new record passes through unaggregated; nothing is lost.
#[tokio::test]
async fn keys_are_bounded_and_overflow_passes_through() {
    let (p, sink) = make(json!({"max_keys": 2, "include_fields": ["attributes.code"]}));
    let r = |code: &str, other: &str| rec(text(other), 9, vec![kv_str("code", code)]);
    p.consume(batch(vec![
        r("1", "a"),
        r("1", "b"),
        r("2", "c"),
        r("3", "d"),
        r("3", "e"),
    ]))
    .await
    .unwrap();
    assert_eq!(sink.take().len(), 2, "code 3 found no room");
    p.flush().await;
    let out = sink.take();
    let counts: Vec<i64> = out.iter().map(|r| count(r, "log_count")).collect();
    assert_eq!(counts, [2, 1], "include_fields: the body does not matter");
}

#[test]
fn times_are_written_in_the_timezone() {
    let ny: Tz = "America/New_York".parse().unwrap();
    assert_eq!(
        format_time(1_700_000_000_000_000_000, ny),
        "2023-11-14T17:13:20-05:00"
    );
    assert_eq!(
        format_time(1_700_000_000_000_000_000, Tz::UTC),
        "2023-11-14T22:13:20Z"
    );
}

#[test]
fn config_errors_name_the_key() {
    let e = |v: serde_json::Value| {
        let c: LogDedupConfig = serde_json::from_value(v).unwrap();
        match check(&c) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted"),
        }
    };
    assert!(e(json!({"interval": "0s"})).contains("interval"));
    assert!(e(json!({"log_count_attribute": ""})).contains("log_count_attribute"));
    assert!(e(json!({"timezone": "Mars/Base"})).contains("timezone"));
    assert!(e(json!({"exclude_fields": ["body"]})).contains("cannot exclude the entire body"));
    assert!(e(json!({"exclude_fields": ["resource.x"]})).contains("exclude_fields::0"));
    assert!(
        e(json!({"exclude_fields": ["body.a"], "include_fields": ["body.b"]}))
            .contains("include_fields")
    );
    assert!(e(json!({"conditions": ["attributes[\"x\" =="]})).contains("conditions::0"));
    let d = LogDedupConfig::default();
    assert_eq!(
        (
            d.interval,
            d.log_count_attribute.as_str(),
            d.timezone.as_str()
        ),
        (Duration::from_secs(10), "log_count", "UTC")
    );
}
