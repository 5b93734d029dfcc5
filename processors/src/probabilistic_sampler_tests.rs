use super::*;
use serde_json::json;
use std::sync::Mutex;
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::otlp::logs::v1::ScopeLogs;
use vigil_core::otlp::trace::v1::ScopeSpans;
use vigil_core::ComponentKind;

#[derive(Default)]
struct Sink(Mutex<Vec<Telemetry>>);

#[async_trait]
impl Consumer for Sink {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        self.0.lock().unwrap().push(data);
        Ok(())
    }
}

fn make(cfg: serde_json::Value, signal: Signal) -> (Arc<dyn Processor>, Arc<Sink>) {
    let id = ComponentId::parse("probabilistic_sampler").unwrap();
    let c: ProbabilisticSamplerConfig =
        vigil_core::config::decode(ComponentKind::Processor, &id, &cfg).unwrap();
    let sink = Arc::new(Sink::default());
    let p = Factory
        .create(
            Settings::new(ComponentKind::Processor, &id),
            c,
            signal,
            sink.clone(),
        )
        .unwrap();
    (p, sink)
}

/// A trace id whose low 56 bits (the W3C randomness) are `r`, with a fixed high half.
fn tid(r: u64) -> Vec<u8> {
    let mut t = vec![0xab; 16];
    t[8..].copy_from_slice(&r.to_be_bytes());
    t[8] = 0x01;
    t
}

fn span(trace_id: Vec<u8>, ts: &str, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id,
        span_id: vec![1; 8],
        trace_state: ts.into(),
        name: "s".into(),
        attributes: attrs,
        ..Default::default()
    }
}

fn batch(spans: Vec<Span>) -> Telemetry {
    Telemetry::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn out_spans(sink: &Sink) -> Vec<Span> {
    let mut v = Vec::new();
    for t in sink.0.lock().unwrap().iter() {
        if let Telemetry::Traces(rs) = t {
            for r in rs {
                for ss in &r.scope_spans {
                    v.extend(ss.spans.iter().cloned());
                }
            }
        }
    }
    v
}

fn pseudo_random(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            let mut t = Vec::with_capacity(16);
            for _ in 0..2 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                t.extend(x.to_be_bytes());
            }
            t
        })
        .collect()
}

#[test]
fn thresholds_follow_the_specification() {
    let tv = |p: f64, prec| {
        Threshold::from_probability(p, prec)
            .unwrap()
            .tvalue()
            .unwrap()
    };
    assert_eq!(tv(1.0, 4), "0");
    assert_eq!(tv(0.5, 4), "8");
    assert_eq!(tv(0.25, 4), "c");
    assert_eq!(tv(0.1, 4), "e666");
    assert_eq!(tv(1.0 / 3.0, 4), "aaab");
    // f64 holds 1/3 to 53 bits, so at full precision the last digit is that rounding (as in Go).
    assert_eq!(tv(1.0 / 3.0, 14), "aaaaaaaaaaaaac");
    // Near 0, precision grows so that the relative error stays small.
    assert_eq!(tv(0.001, 4), "ffbe77");
    assert!(Threshold::from_probability(0.0, 4).is_none());
    assert_eq!(Threshold::parse("c").unwrap(), Threshold(0xc << 52));
    assert!(Threshold::parse("xyz").is_err());
    assert!(Threshold::parse("123456789012345").is_err());
    assert_eq!(NEVER.tvalue(), None);
    // FNV-1a's published vectors.
    assert_eq!(fnv1a(&[b""]), 0x811c9dc5);
    assert_eq!(fnv1a(&[b"a"]), 0xe40c292c);
    assert_eq!(fnv1a(&[b"foo", b"bar"]), 0xbf9cf968);
}

#[test]
fn tracestate_round_trips_with_ot_first() {
    let ts = TraceState::parse("vendor=x, ot=th:8;foo:bar , other=y").unwrap();
    assert_eq!(ts.th.as_ref().unwrap().1, Threshold(8 << 52));
    assert_eq!(ts.serialize(), "ot=th:8;foo:bar,vendor=x,other=y");
    assert!(TraceState::parse("ot=rv:123").is_err());
    assert!(TraceState::parse("novalue").is_err());
}

/// Proportional (the default): a span is kept exactly when its trace id's randomness reaches the
/// threshold, which is written to the tracestate; an arriving threshold is multiplied.
#[tokio::test]
async fn proportional_keeps_by_trace_id_and_records_the_threshold() {
    let (p, sink) = make(json!({"sampling_percentage": 25}), Signal::Traces);
    let ids = pseudo_random(4000, 7);
    let spans: Vec<Span> = ids.iter().map(|t| span(t.clone(), "", vec![])).collect();
    p.consume(batch(spans)).await.unwrap();
    let kept = out_spans(&sink);
    // Exactly the spans at or above 0xc0000000000000, no more, no fewer.
    let expect = ids
        .iter()
        .filter(|t| trace_id_randomness(t) >= 0xc << 52)
        .count();
    assert_eq!(kept.len(), expect);
    assert!((800..1200).contains(&expect), "{expect} of 4000 at 25%");
    assert!(kept.iter().all(|s| s.trace_state == "ot=th:c"));

    let (p, sink) = make(json!({"sampling_percentage": 50}), Signal::Traces);
    p.consume(batch(vec![
        span(tid(0xf << 52), "ot=th:8,v=1", vec![]),
        span(tid(0x9 << 52), "ot=th:8", vec![]),
    ]))
    .await
    .unwrap();
    let kept = out_spans(&sink);
    assert_eq!(kept.len(), 1, "50% of 50% is 25%: 0x9... is below th:c");
    assert_eq!(kept[0].trace_state, "ot=th:c,v=1");
}

/// Equalizing lowers the probability to the configured one, and leaves spans that arrived at a
/// lower probability as they are.
#[tokio::test]
async fn equalizing_evens_out_probabilities() {
    let (p, sink) = make(
        json!({"sampling_percentage": 25, "mode": "equalizing"}),
        Signal::Traces,
    );
    p.consume(batch(vec![
        span(tid(0xd << 52), "ot=th:8", vec![]),
        span(tid(0xa << 52), "ot=th:8", vec![]),
        span(tid(0xf << 52), "ot=th:e", vec![]),
    ]))
    .await
    .unwrap();
    let kept: Vec<String> = out_spans(&sink)
        .into_iter()
        .map(|s| s.trace_state)
        .collect();
    assert_eq!(kept, ["ot=th:c", "ot=th:e"]);
}

/// An arriving threshold that the randomness contradicts is an error: dropped when fail_closed (the
/// default), kept without the threshold otherwise. A span without a trace id has no randomness.
#[tokio::test]
async fn errors_follow_fail_closed() {
    let spans = || {
        vec![
            span(tid(0x1 << 52), "ot=th:8", vec![]),
            span(vec![], "", vec![]),
            span(tid(0xf << 52), "ot=th:zz", vec![]),
        ]
    };
    let (p, sink) = make(json!({"sampling_percentage": 100}), Signal::Traces);
    p.consume(batch(spans())).await.unwrap();
    assert!(out_spans(&sink).is_empty());
    let (p, sink) = make(
        json!({"sampling_percentage": 100, "fail_closed": false}),
        Signal::Traces,
    );
    p.consume(batch(spans())).await.unwrap();
    let kept: Vec<String> = out_spans(&sink)
        .into_iter()
        .map(|s| s.trace_state)
        .collect();
    assert_eq!(kept.len(), 3);
    assert_eq!(kept[0], "ot=th:0", "the contradicted threshold is replaced");
}

/// sampling.priority 0 drops a span whatever the percentage; above 0 keeps it.
#[tokio::test]
async fn span_sampling_priority_overrides() {
    let prio = |v: Value| vec![vigil_core::attrs::kv("sampling.priority", v)];
    let (p, sink) = make(json!({"sampling_percentage": 0}), Signal::Traces);
    p.consume(batch(vec![
        span(tid(5), "", prio(Value::IntValue(1))),
        span(tid(6), "", prio(Value::StringValue("2".into()))),
        span(tid(7), "", vec![]),
    ]))
    .await
    .unwrap();
    assert_eq!(out_spans(&sink).len(), 2);
    let (p, sink) = make(json!({"sampling_percentage": 100}), Signal::Traces);
    p.consume(batch(vec![span(tid(5), "", prio(Value::DoubleValue(0.0)))]))
        .await
        .unwrap();
    assert!(out_spans(&sink).is_empty());
}

/// hash_seed: the legacy FNV hash decides, and different seeds decide differently; the randomness
/// and threshold used go into the tracestate.
#[tokio::test]
async fn hash_seed_mode_hashes_with_the_seed() {
    let ids = pseudo_random(4000, 11);
    let run = |seed: u32| {
        let ids = ids.clone();
        async move {
            let (p, sink) = make(
                json!({"sampling_percentage": 30, "hash_seed": seed}),
                Signal::Traces,
            );
            p.consume(batch(
                ids.into_iter().map(|t| span(t, "", vec![])).collect(),
            ))
            .await
            .unwrap();
            out_spans(&sink)
        }
    };
    let a = run(22).await;
    let b = run(23).await;
    for kept in [&a, &b] {
        assert!(
            (1000..1400).contains(&kept.len()),
            "{} of 4000 at 30%",
            kept.len()
        );
    }
    let ida: Vec<&Vec<u8>> = a.iter().map(|s| &s.trace_id).collect();
    let idb: Vec<&Vec<u8>> = b.iter().map(|s| &s.trace_id).collect();
    assert_ne!(ida, idb);
    // The decision is the legacy one: hash & 0x3fff < 30% of 0x4000 (4915).
    for s in &a {
        let mut id = [0u8; 16];
        id.copy_from_slice(&s.trace_id);
        assert!(fnv32a(22, &id) & 0x3fff < 4915);
        assert!(s.trace_state.starts_with("ot=rv:"), "{}", s.trace_state);
        assert!(s.trace_state.ends_with(";th:b334"), "{}", s.trace_state);
    }
}

fn log(attrs: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        attributes: attrs,
        ..Default::default()
    }
}

fn logs_batch(records: Vec<LogRecord>) -> Telemetry {
    Telemetry::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn out_logs(sink: &Sink) -> Vec<LogRecord> {
    let mut v = Vec::new();
    for t in sink.0.lock().unwrap().iter() {
        if let Telemetry::Logs(rl) = t {
            for r in rl {
                for sl in &r.scope_logs {
                    v.extend(sl.log_records.iter().cloned());
                }
            }
        }
    }
    v
}

/// Logs without trace ids hash `from_attribute` (hash_seed mode, chosen by attribute_source:
/// record), carry sampling.randomness/threshold, and `sampling_priority` raises a record's
/// probability.
#[tokio::test]
async fn logs_hash_an_attribute_and_honour_priority() {
    let (p, sink) = make(
        json!({"sampling_percentage": 50, "attribute_source": "record", "from_attribute": "id",
               "sampling_priority": "prio"}),
        Signal::Logs,
    );
    let mut recs: Vec<LogRecord> = (0..2000)
        .map(|i| log(vec![vigil_core::attrs::kv_str("id", format!("req-{i}"))]))
        .collect();
    recs.push(log(vec![
        vigil_core::attrs::kv_str("id", "forced"),
        vigil_core::attrs::kv_i64("prio", 100),
    ]));
    recs.push(log(vec![]));
    p.consume(logs_batch(recs)).await.unwrap();
    let kept = out_logs(&sink);
    let forced = kept
        .iter()
        .filter(|l| vigil_core::attrs::get_str(&l.attributes, "id") == Some("forced"))
        .count();
    assert_eq!(forced, 1, "priority 100 keeps it");
    assert!(
        (850..1150).contains(&kept.len()),
        "{} of 2000 at 50%",
        kept.len()
    );
    assert!(
        kept.iter()
            .all(|l| vigil_core::attrs::get_str(&l.attributes, "id").is_some()),
        "no randomness (the record without id) is dropped when fail_closed"
    );
    let sample = kept
        .iter()
        .find(|l| vigil_core::attrs::get_str(&l.attributes, "id") != Some("forced"))
        .unwrap();
    assert_eq!(
        vigil_core::attrs::get_str(&sample.attributes, "sampling.threshold"),
        Some("8")
    );
    assert_eq!(
        vigil_core::attrs::get_str(&sample.attributes, "sampling.randomness").map(str::len),
        Some(14)
    );
}

/// Logs with trace ids in proportional mode decide as spans do.
#[tokio::test]
async fn logs_with_trace_ids_follow_proportional() {
    let (p, sink) = make(json!({"sampling_percentage": 25}), Signal::Logs);
    let mut a = log(vec![]);
    a.trace_id = tid(0xd << 52);
    let mut b = log(vec![]);
    b.trace_id = tid(0xb << 52);
    p.consume(logs_batch(vec![a, b])).await.unwrap();
    let kept = out_logs(&sink);
    assert_eq!(kept.len(), 1);
    assert_eq!(
        vigil_core::attrs::get_str(&kept[0].attributes, "sampling.threshold"),
        Some("c")
    );
}

#[test]
fn config_errors_name_the_key() {
    let e = |v: serde_json::Value| {
        let c: ProbabilisticSamplerConfig = serde_json::from_value(v).unwrap();
        check(&c).unwrap_err().to_string()
    };
    assert!(e(json!({"sampling_percentage": -1})).contains("sampling_percentage"));
    assert!(e(json!({"mode": "random"})).contains("mode"));
    assert!(e(json!({"attribute_source": "span"})).contains("attribute_source"));
    assert!(e(json!({"sampling_precision": 15})).contains("sampling_precision"));
    assert!(e(json!({"sampling_precision": 0})).contains("sampling_precision"));
    let d = ProbabilisticSamplerConfig::default();
    assert!(d.fail_closed && d.sampling_precision == 4 && d.attribute_source == "traceID");
}
