use super::*;
use serde_json::{json, Value};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use vigil_core::attrs::kv_str;
use vigil_core::otlp::common::v1::InstrumentationScope;
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};

/// Records what reaches it; refuses everything as retryable while `fail` is set, and holds each call
/// until released while `gate` has no permits.
#[derive(Default)]
struct Sink {
    batches: Mutex<Vec<Telemetry>>,
    fail: AtomicBool,
    gate: Option<Arc<tokio::sync::Semaphore>>,
    calls: AtomicUsize,
    /// The client metadata each call saw.
    metas: Mutex<Vec<Option<Arc<ClientMetadata>>>>,
}

impl Sink {
    fn sizes(&self) -> Vec<usize> {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .map(Telemetry::item_count)
            .collect()
    }
}

#[async_trait]
impl Consumer for Sink {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.metas.lock().unwrap().push(ClientMetadata::current());
        if let Some(g) = &self.gate {
            let _permit = g.acquire().await;
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(ConsumeError::retryable("backend down"));
        }
        self.batches.lock().unwrap().push(data);
        Ok(())
    }
}

/// One resource per entry, named `r{i}`, with one scope per count, named `s{j}`, holding that many
/// spans named `r{i}s{j}-{k}`.
fn traces(shape: &[&[usize]]) -> Telemetry {
    let rs = shape
        .iter()
        .enumerate()
        .map(|(i, scopes)| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", format!("r{i}"))],
                ..Default::default()
            }),
            scope_spans: scopes
                .iter()
                .enumerate()
                .map(|(j, &count)| ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: format!("s{j}"),
                        ..Default::default()
                    }),
                    spans: (0..count)
                        .map(|k| Span {
                            name: format!("r{i}s{j}-{k}"),
                            ..Default::default()
                        })
                        .collect(),
                    schema_url: String::new(),
                })
                .collect(),
            schema_url: format!("url{i}"),
        })
        .collect();
    Telemetry::Traces(rs)
}

fn span_names(t: &Telemetry) -> Vec<String> {
    let Telemetry::Traces(rs) = t else {
        panic!("not traces")
    };
    rs.iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.clone())
        .collect()
}

fn id() -> ComponentId {
    ComponentId::parse("batch/test").unwrap()
}

fn settings() -> Settings {
    Settings::new(vigil_core::ComponentKind::Processor, &id())
}

fn batch(cfg: BatchConfig, sink: &Arc<Sink>) -> Batch {
    Batch::new(settings(), cfg, Signal::Traces, sink.clone())
}

/// Decodes and validates a section as the registry does, with its errors as `validate` prints them.
fn parse(value: &Value) -> Result<BatchConfig, vigil_core::ConfigError> {
    let f = factory();
    f.validate(&id(), value)?;
    let resolved = f.resolved(&id(), value)?;
    Ok(serde_json::from_value(resolved).expect("the resolved config decodes"))
}

fn cfg(size: u32, max: u32, timeout_ms: u64) -> BatchConfig {
    BatchConfig {
        send_batch_size: size,
        send_batch_max_size: max,
        timeout: Duration::from_millis(timeout_ms),
        ..BatchConfig::default()
    }
}

fn gated() -> (Arc<Sink>, Arc<tokio::sync::Semaphore>) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let sink = Arc::new(Sink {
        gate: Some(gate.clone()),
        ..Default::default()
    });
    (sink, gate)
}

/// Waits (in paused time, so instantly) until `cond` holds.
async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test(start_paused = true)]
async fn an_idle_pipeline_sends_at_once() {
    let sink = Arc::new(Sink::default());
    let b = batch(cfg(100, 0, 60_000), &sink);
    b.start(&Host::detached()).await.unwrap();
    let t0 = tokio::time::Instant::now();
    b.consume(traces(&[&[10]])).await.unwrap();
    assert_eq!(t0.elapsed(), Duration::ZERO, "waited for the timeout");
    assert_eq!(sink.sizes(), [10]);
    b.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn data_gathers_while_a_send_is_in_flight_and_follows_it() {
    let (sink, gate) = gated();
    let b = Arc::new(batch(cfg(100, 0, 60_000), &sink));
    let first = tokio::spawn({
        let b = b.clone();
        async move { b.consume(traces(&[&[1]])).await }
    });
    until("the first send to start", || {
        sink.calls.load(Ordering::SeqCst) == 1
    })
    .await;
    let mut later = Vec::new();
    for _ in 0..3 {
        let b = b.clone();
        later.push(tokio::spawn(
            async move { b.consume(traces(&[&[4]])).await },
        ));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        sink.calls.load(Ordering::SeqCst),
        1,
        "sent before the one in flight returned"
    );
    gate.add_permits(100);
    first.await.unwrap().unwrap();
    for h in later {
        h.await.unwrap().unwrap();
    }
    // The three calls that came during the first send went out as one batch.
    assert_eq!(sink.sizes(), [1, 12]);
    let resources = match &sink.batches.lock().unwrap()[1] {
        Telemetry::Traces(rs) => rs.len(),
        other => panic!("not traces: {other:?}"),
    };
    assert_eq!(resources, 3);
}

#[tokio::test(start_paused = true)]
async fn size_and_timeout_do_not_wait_for_a_slow_send() {
    let (sink, gate) = gated();
    let b = Arc::new(batch(cfg(10, 0, 200), &sink));
    let first = tokio::spawn({
        let b = b.clone();
        async move { b.consume(traces(&[&[1]])).await }
    });
    until("the first send to start", || {
        sink.calls.load(Ordering::SeqCst) == 1
    })
    .await;
    // Reaching send_batch_size sends in parallel with the send in flight.
    let big = tokio::spawn({
        let b = b.clone();
        async move { b.consume(traces(&[&[10]])).await }
    });
    until("the size-triggered send", || {
        sink.calls.load(Ordering::SeqCst) == 2
    })
    .await;
    // A small call waits for the timeout at most, then goes alongside.
    let t0 = tokio::time::Instant::now();
    let small = tokio::spawn({
        let b = b.clone();
        async move { b.consume(traces(&[&[2]])).await }
    });
    until("the timeout-triggered send", || {
        sink.calls.load(Ordering::SeqCst) == 3
    })
    .await;
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );
    assert!(
        t0.elapsed() < Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    gate.add_permits(100);
    for h in [first, big, small] {
        h.await.unwrap().unwrap();
    }
    let mut sizes = sink.sizes();
    sizes.sort_unstable();
    assert_eq!(sizes, [1, 2, 10]);
}

#[tokio::test(start_paused = true)]
async fn splits_oversize_batches_at_max_size() {
    let sink = Arc::new(Sink::default());
    let b = batch(cfg(10, 10, 200), &sink);
    b.consume(traces(&[&[7, 6], &[12]])).await.unwrap();
    assert_eq!(sink.sizes(), [10, 10, 5]);
    let all: Vec<String> = sink
        .batches
        .lock()
        .unwrap()
        .iter()
        .flat_map(span_names)
        .collect();
    assert_eq!(
        all,
        span_names(&traces(&[&[7, 6], &[12]])),
        "order or content changed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refusal_downstream_reaches_every_caller_and_nothing_is_held() {
    let (sink, gate) = gated();
    sink.fail.store(true, Ordering::SeqCst);
    let b = Arc::new(batch(cfg(100, 0, 60_000), &sink));
    let mut calls = Vec::new();
    for n in [3, 4, 5] {
        let b = b.clone();
        calls.push(tokio::spawn(
            async move { b.consume(traces(&[&[n]])).await },
        ));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    gate.add_permits(100);
    for c in calls {
        let r = c.await.unwrap();
        assert!(matches!(r, Err(ConsumeError::Retryable { .. })), "{r:?}");
    }
    // Nothing is retried behind the callers' backs: the processor is idle and the sink saw each
    // batch once.
    assert!(b.inner.idle());
    let calls_before = sink.calls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(sink.calls.load(Ordering::SeqCst), calls_before);
    sink.fail.store(false, Ordering::SeqCst);
    b.consume(traces(&[&[1]])).await.unwrap();
    assert_eq!(sink.sizes(), [1]);
}

/// Refuses permanently, rejecting the whole batch.
struct Refuser;

#[async_trait]
impl Consumer for Refuser {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        Err(ConsumeError::permanent("bad data", data.item_count()))
    }
}

#[tokio::test(start_paused = true)]
async fn a_permanent_refusal_names_each_callers_own_items() {
    let b = Batch::new(
        settings(),
        cfg(100, 0, 0),
        Signal::Traces,
        Arc::new(Refuser),
    );
    let r = b.consume(traces(&[&[3]])).await;
    assert_eq!(r, Err(ConsumeError::permanent("bad data", 3)));
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_sends_in_flight_then_refuses() {
    let (sink, gate) = gated();
    let b = Arc::new(batch(cfg(100, 0, 60_000), &sink));
    let call = tokio::spawn({
        let b = b.clone();
        async move { b.consume(traces(&[&[7]])).await }
    });
    until("the send to start", || {
        sink.calls.load(Ordering::SeqCst) == 1
    })
    .await;
    let stop = tokio::spawn({
        let b = b.clone();
        async move { b.shutdown().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !stop.is_finished(),
        "shutdown returned with a send in flight"
    );
    gate.add_permits(10);
    stop.await.unwrap().unwrap();
    call.await.unwrap().unwrap();
    assert_eq!(sink.sizes(), [7]);
    let r = b.consume(traces(&[&[1]])).await;
    assert!(matches!(r, Err(ConsumeError::Retryable { .. })), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn metadata_keys_keep_tenants_apart_up_to_the_limit() {
    let (sink, gate) = gated();
    let mut c = cfg(100, 0, 60_000);
    c.metadata_keys = vec!["X-Tenant".into()];
    c.metadata_cardinality_limit = 2;
    let b = Arc::new(batch(c, &sink));
    let call = |tenant: &'static str, n: usize| {
        let b = b.clone();
        let meta = ClientMetadata::from_pairs([("X-TENANT", tenant)]);
        tokio::spawn(async move { meta.scope(b.consume(traces(&[&[n]]))).await })
    };
    // Each tenant's first call goes at once: the other tenant's send in flight does not hold it.
    let a = call("a", 1);
    until("tenant a's send", || sink.calls.load(Ordering::SeqCst) == 1).await;
    let b1 = call("b", 2);
    until("tenant b's send", || sink.calls.load(Ordering::SeqCst) == 2).await;
    let r = call("c", 3).await.unwrap();
    assert!(
        matches!(&r, Err(ConsumeError::Permanent { rejected: 3, reason }) if reason.contains("metadata_cardinality_limit")),
        "{r:?}"
    );
    gate.add_permits(10);
    a.await.unwrap().unwrap();
    b1.await.unwrap().unwrap();
}

/// A batcher's sends carry its `metadata_keys` values, and only those, to the next consumer (so an
/// exporter's `headers_setter` can copy them); without `metadata_keys` they carry nothing.
#[tokio::test]
async fn sends_carry_only_the_metadata_keys_values() {
    let meta = || {
        ClientMetadata::from_pairs([("x-tenant", "acme"), ("authorization", "Bearer s3cret")])
            .with_auth(vigil_core::component::Principal::named("ci-bot"))
    };
    let sink = Arc::new(Sink::default());
    let mut c = cfg(1, 0, 60_000);
    c.metadata_keys = vec!["X-Tenant".into()];
    let b = batch(c, &sink);
    meta().scope(b.consume(traces(&[&[1]]))).await.unwrap();
    let seen = sink
        .metas
        .lock()
        .unwrap()
        .pop()
        .flatten()
        .expect("metadata");
    assert_eq!(seen.get("x-tenant"), ["acme".to_string()]);
    assert!(seen.get("authorization").is_empty() && seen.auth().is_none());

    let sink = Arc::new(Sink::default());
    let b = batch(cfg(1, 0, 60_000), &sink);
    meta().scope(b.consume(traces(&[&[1]]))).await.unwrap();
    assert_eq!(*sink.metas.lock().unwrap(), vec![None]);
}

#[test]
fn config_defaults_and_errors() {
    let c = parse(&json!({"metadata_keys": ["a", "A"]})).unwrap_err();
    assert!(
        c.to_string().contains("duplicate entry in metadata_keys"),
        "{c}"
    );
    let c = parse(&json!({"metadata_keys": ["a"], "metadata_cardinality_limit": 0})).unwrap_err();
    assert!(c.to_string().contains("metadata_cardinality_limit"), "{c}");
    let c = parse(&Value::Null).unwrap();
    assert_eq!(c, BatchConfig::default());
    assert_eq!(
        (c.send_batch_size, c.send_batch_max_size, c.timeout),
        (8192, 0, Duration::from_millis(200))
    );
    let c = parse(&json!({"timeout": "1s", "send_batch_max_size": 9000})).unwrap();
    assert_eq!(
        (c.timeout, c.send_batch_max_size),
        (Duration::from_secs(1), 9000)
    );

    let e = parse(&json!({"send_batch_size": 100, "send_batch_max_size": 50})).unwrap_err();
    assert_eq!(
        e.to_string(),
        "processors::batch/test::send_batch_max_size: send_batch_max_size (50) must be greater or \
         equal to send_batch_size (100)"
    );
    let e = parse(&json!({"send_batch_sise": 1})).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "processors::batch/test::send_batch_sise: has invalid keys: send_batch_sise"
        ),
        "{e}"
    );
    let e = parse(&json!({"timeout": "-1s"})).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("processors::batch/test::timeout: "),
        "{e}"
    );
}

#[test]
fn testdata_cases() {
    crate::testdata::check_all("batch", 3, |v| {
        parse(v).map(|_| ()).map_err(|e| e.to_string())
    });
}

/// Profiles batch as otelcol's batch processor batches them: calls that arrive during a send go
/// out together, one dictionary for all, every sample still resolving to its own function.
#[tokio::test(start_paused = true)]
async fn profiles_merge_with_one_dictionary() {
    use vigil_core::otlp::profiles::v1development::{
        Function, Line, Location, Profile, ProfilesData, ProfilesDictionary, ResourceProfiles,
        Sample, ScopeProfiles, Stack,
    };
    let one = |name: &str| {
        Telemetry::Profiles(ProfilesData {
            resource_profiles: vec![ResourceProfiles {
                scope_profiles: vec![ScopeProfiles {
                    profiles: vec![Profile {
                        samples: vec![Sample {
                            stack_index: 1,
                            values: vec![1],
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            dictionary: Some(ProfilesDictionary {
                string_table: vec![String::new(), name.to_string()],
                function_table: vec![
                    Function::default(),
                    Function {
                        name_strindex: 1,
                        ..Default::default()
                    },
                ],
                location_table: vec![
                    Location::default(),
                    Location {
                        lines: vec![Line {
                            function_index: 1,
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                ],
                stack_table: vec![
                    Stack::default(),
                    Stack {
                        location_indices: vec![1],
                    },
                ],
                ..Default::default()
            }),
        })
    };
    let (sink, gate) = gated();
    let b = Arc::new(Batch::new(
        settings(),
        cfg(100, 0, 60_000),
        Signal::Profiles,
        sink.clone(),
    ));
    let first = tokio::spawn({
        let b = b.clone();
        let d = one("main");
        async move { b.consume(d).await }
    });
    until("the first send", || sink.calls.load(Ordering::SeqCst) == 1).await;
    let mut later = Vec::new();
    for name in ["a", "b", "c"] {
        let (b, d) = (b.clone(), one(name));
        later.push(tokio::spawn(async move { b.consume(d).await }));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    gate.add_permits(100);
    first.await.unwrap().unwrap();
    for h in later {
        h.await.unwrap().unwrap();
    }
    assert_eq!(sink.sizes(), [1, 3]);
    let Telemetry::Profiles(merged) = sink.batches.lock().unwrap()[1].clone() else {
        panic!("not profiles")
    };
    let d = merged.dictionary.expect("one dictionary");
    let names: Vec<&str> = merged
        .resource_profiles
        .iter()
        .flat_map(|r| &r.scope_profiles)
        .flat_map(|s| &s.profiles)
        .flat_map(|p| &p.samples)
        .map(|s| {
            let loc = d.stack_table[s.stack_index as usize].location_indices[0];
            let f = d.location_table[loc as usize].lines[0].function_index;
            d.string_table[d.function_table[f as usize].name_strindex as usize].as_str()
        })
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
}
