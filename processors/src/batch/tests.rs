use super::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use vigil_core::attrs::{get_str, kv_str};
use vigil_core::otlp::common::v1::InstrumentationScope;
use vigil_core::otlp::metrics::v1::{
    metric, AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};

/// Records what reaches it; refuses everything as retryable while `fail` is set.
#[derive(Default)]
struct Sink {
    batches: Mutex<Vec<Telemetry>>,
    fail: AtomicBool,
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

fn batch(cfg: BatchConfig, sink: &Arc<Sink>) -> Batch {
    Batch::new(&id(), cfg, Signal::Traces, sink.clone())
}

fn cfg(size: u32, max: u32, timeout_ms: u64) -> BatchConfig {
    BatchConfig {
        send_batch_size: size,
        send_batch_max_size: max,
        timeout: Duration::from_millis(timeout_ms),
    }
}

async fn settle(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[test]
fn split_inside_a_resource_keeps_resource_and_scope() {
    let Telemetry::Traces(mut rs) = traces(&[&[3, 3], &[3, 3]]) else {
        unreachable!()
    };
    let front = split::take_front(&mut rs, 8);
    let front = Telemetry::Traces(front);
    let rest = Telemetry::Traces(rs);
    assert_eq!((front.item_count(), rest.item_count()), (8, 4));
    assert_eq!(
        span_names(&front),
        ["r0s0-0", "r0s0-1", "r0s0-2", "r0s1-0", "r0s1-1", "r0s1-2", "r1s0-0", "r1s0-1"]
    );
    assert_eq!(span_names(&rest), ["r1s0-2", "r1s1-0", "r1s1-1", "r1s1-2"]);
    let (Telemetry::Traces(f), Telemetry::Traces(r)) = (&front, &rest) else {
        unreachable!()
    };
    // The cut resource and scope appear on both sides with their identity intact.
    let res = |x: &ResourceSpans| {
        get_str(&x.resource.as_ref().unwrap().attributes, "service.name").map(str::to_string)
    };
    assert_eq!(res(&f[1]).as_deref(), Some("r1"));
    assert_eq!(res(&r[0]).as_deref(), Some("r1"));
    assert_eq!(
        (f[1].schema_url.as_str(), r[0].schema_url.as_str()),
        ("url1", "url1")
    );
    assert_eq!(f[1].scope_spans[0].scope.as_ref().unwrap().name, "s0");
    assert_eq!(r[0].scope_spans[0].scope.as_ref().unwrap().name, "s0");
    assert_eq!(r[0].scope_spans[1].scope.as_ref().unwrap().name, "s1");
}

#[test]
fn split_inside_a_metric_keeps_its_settings() {
    let point = |v: i64| NumberDataPoint {
        value: Some(vigil_core::otlp::metrics::v1::number_data_point::Value::AsInt(v)),
        ..Default::default()
    };
    let mut metrics = vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![Metric {
                name: "requests".into(),
                unit: "1".into(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: (0..5).map(point).collect(),
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }];
    let front = split::take_front(&mut metrics, 2);
    for (part, n) in [(&front, 2), (&metrics, 3)] {
        let m = &part[0].scope_metrics[0].metrics[0];
        assert_eq!((m.name.as_str(), m.unit.as_str()), ("requests", "1"));
        let Some(metric::Data::Sum(s)) = &m.data else {
            panic!("sum expected")
        };
        assert_eq!(s.data_points.len(), n);
        assert!(s.is_monotonic);
        assert_eq!(
            s.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
    }
}

#[tokio::test(start_paused = true)]
async fn flushes_on_timeout_not_before() {
    let sink = Arc::new(Sink::default());
    let b = batch(cfg(100, 0, 200), &sink);
    b.start(&Host::detached()).await.unwrap();
    b.consume(traces(&[&[10]])).await.unwrap();
    settle(199).await;
    assert!(sink.sizes().is_empty(), "sent before the timeout");
    settle(2).await;
    assert_eq!(sink.sizes(), [10]);
    b.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn merges_small_batches_and_sends_at_size() {
    let sink = Arc::new(Sink::default());
    let b = batch(cfg(10, 0, 10_000), &sink);
    b.start(&Host::detached()).await.unwrap();
    for _ in 0..2 {
        b.consume(traces(&[&[4]])).await.unwrap();
    }
    settle(1).await;
    assert!(sink.sizes().is_empty());
    b.consume(traces(&[&[4]])).await.unwrap();
    settle(1).await;
    // Without a max size, the batch that crosses the trigger goes out whole.
    assert_eq!(sink.sizes(), [12]);
    let resources = match &sink.batches.lock().unwrap()[0] {
        Telemetry::Traces(rs) => rs.len(),
        other => panic!("not traces: {other:?}"),
    };
    assert_eq!(resources, 3);
    b.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn splits_oversize_batches_at_max_size() {
    let sink = Arc::new(Sink::default());
    let b = batch(cfg(10, 10, 200), &sink);
    b.start(&Host::detached()).await.unwrap();
    b.consume(traces(&[&[7, 6], &[12]])).await.unwrap();
    settle(1).await;
    assert_eq!(sink.sizes(), [10, 10]);
    settle(250).await;
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
    b.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_before_returning_and_then_refuses() {
    let sink = Arc::new(Sink::default());
    let b = batch(cfg(100, 4, 60_000), &sink);
    b.start(&Host::detached()).await.unwrap();
    b.consume(traces(&[&[7]])).await.unwrap();
    b.shutdown().await.unwrap();
    assert_eq!(sink.sizes(), [4, 3]);
    let r = b.consume(traces(&[&[1]])).await;
    assert!(matches!(r, Err(ConsumeError::Retryable { .. })), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_without_start_still_drains() {
    let sink = Arc::new(Sink::default());
    let b = batch(cfg(100, 0, 60_000), &sink);
    b.consume(traces(&[&[3]])).await.unwrap();
    b.shutdown().await.unwrap();
    assert_eq!(sink.sizes(), [3]);
}

#[tokio::test(start_paused = true)]
async fn downstream_refusal_holds_data_and_pushes_back() {
    let sink = Arc::new(Sink::default());
    // Buffer limit: 4 batches of 10.
    let b = batch(cfg(10, 10, 0), &sink);
    b.start(&Host::detached()).await.unwrap();
    sink.fail.store(true, Ordering::SeqCst);
    // The first refusal costs its batch (counted as dropped) and switches to careful mode.
    b.consume(traces(&[&[10]])).await.unwrap();
    settle(1).await;
    // This one is kept and retried.
    b.consume(traces(&[&[10]])).await.unwrap();
    settle(1).await;
    b.consume(traces(&[&[30]])).await.unwrap();
    let r = b.consume(traces(&[&[1]])).await;
    assert!(
        matches!(
            r,
            Err(ConsumeError::Retryable {
                retry_after: Some(_),
                ..
            })
        ),
        "a full buffer must refuse as retryable: {r:?}"
    );
    settle(10_000).await;
    assert!(sink.sizes().is_empty());
    sink.fail.store(false, Ordering::SeqCst);
    settle(10_000).await;
    assert_eq!(sink.sizes().iter().sum::<usize>(), 40);
    b.consume(traces(&[&[1]])).await.unwrap();
    b.shutdown().await.unwrap();
    assert_eq!(sink.sizes().iter().sum::<usize>(), 41);
}

#[test]
fn config_defaults_and_errors() {
    let c = BatchConfig::parse(&id(), &Value::Null).unwrap();
    assert_eq!(c, BatchConfig::default());
    assert_eq!(
        (c.send_batch_size, c.send_batch_max_size, c.timeout),
        (8192, 0, Duration::from_millis(200))
    );
    let c = BatchConfig::parse(
        &id(),
        &json!({"timeout": "1s", "send_batch_max_size": 9000}),
    )
    .unwrap();
    assert_eq!(
        (c.timeout, c.send_batch_max_size),
        (Duration::from_secs(1), 9000)
    );

    let e = BatchConfig::parse(
        &id(),
        &json!({"send_batch_size": 100, "send_batch_max_size": 50}),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "processors::batch/test::send_batch_max_size: send_batch_max_size (50) must be greater or \
         equal to send_batch_size (100)"
    );
    let e = BatchConfig::parse(&id(), &json!({"send_batch_sise": 1})).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "processors::batch/test::send_batch_sise: has invalid keys: send_batch_sise"
        ),
        "{e}"
    );
    let e = BatchConfig::parse(&id(), &json!({"timeout": "-1s"})).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("processors::batch/test::timeout: "),
        "{e}"
    );
}

#[test]
fn buffer_limit_is_a_few_batches() {
    assert_eq!(cfg(8192, 0, 200).buffer_limit(), 4 * 8192);
    assert_eq!(cfg(100, 1000, 200).buffer_limit(), 4000);
    assert_eq!(cfg(0, 0, 200).buffer_limit(), 4 * 8192);
}

/// Refuses while `fail` is set and hands the data back, as a full sending queue does.
#[derive(Default)]
struct QueueLike {
    inner: Sink,
}

#[async_trait]
impl Consumer for QueueLike {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        self.inner.consume(data).await
    }

    async fn consume_or_return(&self, data: Telemetry) -> Result<(), Refused> {
        if self.inner.fail.load(Ordering::SeqCst) {
            return Err(Refused {
                error: ConsumeError::retryable("queue full"),
                data: Some(data),
            });
        }
        self.inner
            .consume(data)
            .await
            .map_err(|error| Refused { error, data: None })
    }
}

#[tokio::test(start_paused = true)]
async fn data_handed_back_by_a_full_queue_is_never_dropped() {
    let sink = Arc::new(QueueLike::default());
    let b = Batch::new(&id(), cfg(10, 10, 0), Signal::Traces, sink.clone());
    b.start(&Host::detached()).await.unwrap();
    sink.inner.fail.store(true, Ordering::SeqCst);
    b.consume(traces(&[&[10]])).await.unwrap();
    b.consume(traces(&[&[10]])).await.unwrap();
    settle(5_000).await;
    assert!(sink.inner.sizes().is_empty());
    sink.inner.fail.store(false, Ordering::SeqCst);
    settle(10_000).await;
    b.shutdown().await.unwrap();
    assert_eq!(
        sink.inner.sizes().iter().sum::<usize>(),
        20,
        "the first batch too must arrive"
    );
}
