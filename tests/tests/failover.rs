//! The `failover` connector in a running vigil, in front of two real `otlphttp` exporters (no
//! sending queue, no retries, so a backend's failure reaches the connector, as otelcol's README
//! asks) and two OTLP/HTTP backends. The primary backend is a fault injector: it answers 503 while
//! told to be down. Spans are posted over OTLP/HTTP as an SDK would.
//! - Healthy: spans reach the primary only.
//! - Primary down: the refused batch goes on to the secondary, the sender gets 200, and later
//!   batches go to the secondary without trying the primary.
//! - Primary back: within a retry round (`retry_interval` 2s, `retry_gap` 500ms) a batch is tried
//!   on the primary again, and traffic stays there.

#[path = "support/otlp_http.rs"]
mod otlp_http;

use axum::body::Bytes;
use axum::http::StatusCode;
use otlp_http::post_spans;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_tests::{free_port, health_check_and_service, Agent};

/// An OTLP/HTTP traces backend that counts requests and the ones it took, and answers 503 while
/// `down` is set.
struct Backend {
    port: u16,
    down: Arc<AtomicBool>,
    tried: Arc<AtomicUsize>,
    took: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

fn backend() -> Backend {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind backend");
    let port = listener.local_addr().expect("addr").port();
    let (down, tried, took) = (
        Arc::<AtomicBool>::default(),
        Arc::<AtomicUsize>::default(),
        Arc::<AtomicUsize>::default(),
    );
    let (d, tr, tk) = (down.clone(), tried.clone(), took.clone());
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |_body: Bytes| {
            let (d, tr, tk) = (d.clone(), tr.clone(), tk.clone());
            async move {
                tr.fetch_add(1, Ordering::SeqCst);
                if d.load(Ordering::SeqCst) {
                    return (StatusCode::SERVICE_UNAVAILABLE, Vec::new());
                }
                tk.fetch_add(1, Ordering::SeqCst);
                (StatusCode::OK, Vec::new())
            }
        }),
    );
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Backend {
        port,
        down,
        tried,
        took,
        _rt: rt,
    }
}

impl Backend {
    fn counts(&self) -> (usize, usize) {
        (
            self.tried.load(Ordering::SeqCst),
            self.took.load(Ordering::SeqCst),
        )
    }
}

fn exporter(name: &str, port: u16) -> String {
    format!(
        "  otlphttp/{name}:
    endpoint: http://127.0.0.1:{port}
    sending_queue:
      enabled: false
    retry_on_failure:
      enabled: false
"
    )
}

fn spans(n: u8) -> Vec<opentelemetry_proto::tonic::trace::v1::Span> {
    vec![opentelemetry_proto::tonic::trace::v1::Span {
        trace_id: vec![n; 16],
        span_id: vec![n; 8],
        name: format!("op-{n}"),
        start_time_unix_nano: 1_000_000_000,
        end_time_unix_nano: 2_000_000_000,
        ..Default::default()
    }]
}

#[test]
fn failover_moves_to_the_secondary_on_503_and_back_when_the_primary_recovers() {
    let (primary, secondary) = (backend(), backend());
    let (http, health) = (free_port(), free_port());
    let cfg = format!(
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
connectors:
  failover:
    priority_levels:
      - [traces/primary]
      - [traces/secondary]
    retry_interval: 2s
    retry_gap: 500ms
    max_retries: 0
exporters:
{}{}{}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [failover]
    traces/primary:
      receivers: [failover]
      exporters: [otlphttp/primary]
    traces/secondary:
      receivers: [failover]
      exporters: [otlphttp/secondary]
  telemetry:
    metrics:
      level: none
",
        exporter("primary", primary.port),
        exporter("secondary", secondary.port),
        health_check_and_service(health),
    );
    let mut agent = Agent::with_config(&cfg);
    agent.wait_healthy(health, Duration::from_secs(30));

    assert_eq!(post_spans(http, "shop", spans(1)), 200);
    assert_eq!((primary.counts(), secondary.counts()), ((1, 1), (0, 0)));

    primary.down.store(true, Ordering::SeqCst);
    assert_eq!(
        post_spans(http, "shop", spans(2)),
        200,
        "the secondary took it"
    );
    assert_eq!((primary.counts(), secondary.counts()), ((2, 1), (1, 1)));
    assert_eq!(post_spans(http, "shop", spans(3)), 200);
    assert_eq!(
        (primary.counts(), secondary.counts()),
        ((2, 1), (2, 2)),
        "the failed primary is not tried before a retry round"
    );

    primary.down.store(false, Ordering::SeqCst);
    let start = Instant::now();
    while primary.counts().1 < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the recovered primary was not tried again; logs:\n{}",
            agent.logs()
        );
        assert_eq!(post_spans(http, "shop", spans(4)), 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    let back = start.elapsed();
    let before = secondary.counts();
    for i in 0..3 {
        assert_eq!(post_spans(http, "shop", spans(10 + i)), 200);
    }
    assert_eq!(primary.counts().1, 5, "traffic stays on the primary");
    assert_eq!(secondary.counts(), before);
    eprintln!("back on the primary {back:?} after it recovered");
}
