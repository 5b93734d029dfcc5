//! `vigil-loadgen`: a telemetrygen-like load generator. It sends traces, metrics or logs over OTLP gRPC or
//! HTTP at a set rate, from several workers, and reports what was accepted and what was refused, so that
//! benchmarks and users can drive an agent and see its backpressure.

use clap::{Parser, ValueEnum};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Traces,
    Metrics,
    Logs,
    /// A simulated service topology with one injected fault (see `--services`, `--fault`).
    Scenario,
}

#[derive(Debug, Parser)]
#[command(
    name = "vigil-loadgen",
    version,
    about = "Send OTLP traces, metrics or logs at a set rate"
)]
struct Args {
    /// What to send.
    #[arg(value_enum)]
    kind: Kind,
    /// host:port of the OTLP receiver (4317 for gRPC, 4318 for HTTP).
    #[arg(long, default_value = "localhost:4317")]
    otlp_endpoint: String,
    /// Send over OTLP/HTTP (protobuf) instead of gRPC.
    #[arg(long)]
    otlp_http: bool,
    /// Plaintext; TLS is not supported by the generator, so this is accepted for telemetrygen parity.
    #[arg(long, default_value_t = true)]
    otlp_insecure: bool,
    /// Items (spans, data points, log records) per second over all workers; 0 means as fast as possible.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// How long to send, as seconds (10) or with a unit (10s, 2m).
    #[arg(long, default_value = "10s")]
    duration: String,
    /// Stop after this many items in total (0: no limit).
    #[arg(long, default_value_t = 0)]
    items: u64,
    /// Concurrent senders.
    #[arg(long, default_value_t = 1)]
    workers: u64,
    /// Items per request.
    #[arg(long, default_value_t = 100)]
    batch: u64,
    /// Spans per trace: one root and children under it.
    #[arg(long, default_value_t = 1)]
    spans_per_trace: u64,
    /// Attributes per item, besides the fixed ones.
    #[arg(long, default_value_t = 4)]
    attributes: u64,
    /// Extra resource attributes as key=value (repeatable).
    #[arg(long = "resource-attr")]
    resource_attrs: Vec<String>,
    /// service.name of the generated data.
    #[arg(long, default_value = "loadgen")]
    service: String,
    /// Metric name for `metrics`.
    #[arg(long, default_value = "loadgen.value")]
    metric_name: String,
    /// Print the final report as JSON.
    #[arg(long)]
    json: bool,
    /// scenario: the seed of the topology, timings and fault.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// scenario: number of services (at least 2).
    #[arg(long, default_value_t = 10)]
    services: usize,
    /// scenario: the faulty service's index (1..services); chosen from the seed when absent.
    #[arg(long)]
    faulty: Option<usize>,
    /// scenario: latency, errors or saturation; chosen from the seed when absent.
    #[arg(long)]
    fault: Option<String>,
    /// scenario: the step at which the fault starts.
    #[arg(long, default_value_t = 90)]
    fault_at: usize,
    /// scenario: steps in total; each step is one collection interval of data time.
    #[arg(long, default_value_t = 130)]
    steps: usize,
    /// scenario: seconds of data time per step.
    #[arg(long, default_value_t = 10)]
    step_secs: u64,
    /// scenario: send only these services' spans and metrics (comma-separated names such as
    /// `frontend,svc-2`): what the agent of one node of a fleet sees. Every service is simulated.
    #[arg(long, value_delimiter = ',')]
    only_services: Vec<String>,
    /// scenario: client spans name their callee in `peer.service`.
    #[arg(long)]
    peer_service: bool,
    /// scenario: wall time to wait after each step, such as 50ms (0: as fast as the agent takes them).
    #[arg(long, default_value = "0s")]
    step_wait: String,
}

#[derive(Default)]
struct Counters {
    sent_items: AtomicU64,
    refused_items: AtomicU64,
    failed_requests: AtomicU64,
    next_seq: AtomicU64,
}

fn parse_secs(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.parse().map_err(|_| {
        anyhow::anyhow!("--duration {s:?}: expected seconds or a number with ms/s/m/h")
    })?;
    Ok(Duration::from_secs_f64(v * mult))
}

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn resource(args: &Args) -> Resource {
    let mut attrs = vec![kv(
        "service.name",
        any_value::Value::StringValue(args.service.clone()),
    )];
    for ra in &args.resource_attrs {
        if let Some((k, v)) = ra.split_once('=') {
            attrs.push(kv(k, any_value::Value::StringValue(v.to_string())));
        }
    }
    Resource {
        attributes: attrs,
        ..Default::default()
    }
}

fn item_attrs(args: &Args, seq: u64) -> Vec<KeyValue> {
    let mut a = vec![kv("loadgen.seq", any_value::Value::IntValue(seq as i64))];
    for i in 0..args.attributes {
        a.push(kv(
            &format!("attr.{i}"),
            any_value::Value::StringValue(format!("value-{}", (seq + i) % 97)),
        ));
    }
    a
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "vigil-loadgen".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    })
}

fn traces(args: &Args, first_seq: u64, n: u64) -> ExportTraceServiceRequest {
    let now = now_nanos();
    let mut spans = Vec::with_capacity(n as usize);
    let per_trace = args.spans_per_trace.max(1);
    let mut trace_id = [0u8; 16];
    let mut root_id = [0u8; 8];
    for i in 0..n {
        let seq = first_seq + i;
        let pos = seq % per_trace;
        if pos == 0 || i == 0 {
            trace_id = rand::random();
            root_id = rand::random();
        }
        let span_id: [u8; 8] = if pos == 0 { root_id } else { rand::random() };
        spans.push(Span {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: if pos == 0 { vec![] } else { root_id.to_vec() },
            name: if pos == 0 {
                "GET /api/items".into()
            } else {
                format!("db.query.{pos}")
            },
            kind: if pos == 0 {
                span::SpanKind::Server as i32
            } else {
                span::SpanKind::Client as i32
            },
            start_time_unix_nano: now - 5_000_000,
            end_time_unix_nano: now,
            attributes: item_attrs(args, seq),
            status: Some(Status::default()),
            ..Default::default()
        });
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(args)),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metrics(args: &Args, first_seq: u64, n: u64) -> ExportMetricsServiceRequest {
    let now = now_nanos();
    let points = (0..n)
        .map(|i| NumberDataPoint {
            attributes: item_attrs(args, first_seq + i),
            time_unix_nano: now,
            value: Some(number_data_point::Value::AsDouble(
                ((first_seq + i) % 100) as f64,
            )),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(args)),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics: vec![Metric {
                    name: args.metric_name.clone(),
                    unit: "1".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: points,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs(args: &Args, first_seq: u64, n: u64) -> ExportLogsServiceRequest {
    let now = now_nanos();
    let records = (0..n)
        .map(|i| {
            let seq = first_seq + i;
            LogRecord {
                time_unix_nano: now,
                observed_time_unix_nano: now,
                severity_number: 9,
                severity_text: "INFO".into(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(format!(
                        "request {seq} served in {} ms from 10.0.{}.{}",
                        seq % 250,
                        seq % 7,
                        seq % 13
                    ))),
                }),
                attributes: item_attrs(args, seq),
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(args)),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

enum Client {
    Grpc(tonic::transport::Channel),
    Http(reqwest::Client, String),
}

/// Sends one request; `Ok(rejected)` counts partial-success rejections, `Err` a refused request.
async fn send(client: &Client, args: &Args, seq: u64, n: u64) -> Result<u64, String> {
    match client {
        Client::Grpc(ch) => {
            let r = match args.kind {
                Kind::Traces => TraceServiceClient::new(ch.clone())
                    .export(traces(args, seq, n))
                    .await
                    .map(|r| {
                        r.into_inner()
                            .partial_success
                            .map_or(0, |p| p.rejected_spans as u64)
                    }),
                Kind::Metrics => MetricsServiceClient::new(ch.clone())
                    .export(metrics(args, seq, n))
                    .await
                    .map(|r| {
                        r.into_inner()
                            .partial_success
                            .map_or(0, |p| p.rejected_data_points as u64)
                    }),
                Kind::Logs | Kind::Scenario => LogsServiceClient::new(ch.clone())
                    .export(logs(args, seq, n))
                    .await
                    .map(|r| {
                        r.into_inner()
                            .partial_success
                            .map_or(0, |p| p.rejected_log_records as u64)
                    }),
            };
            r.map_err(|s| format!("{:?}: {}", s.code(), s.message()))
        }
        Client::Http(c, base) => {
            let (path, body) = match args.kind {
                Kind::Traces => ("/v1/traces", traces(args, seq, n).encode_to_vec()),
                Kind::Metrics => ("/v1/metrics", metrics(args, seq, n).encode_to_vec()),
                Kind::Logs | Kind::Scenario => ("/v1/logs", logs(args, seq, n).encode_to_vec()),
            };
            let resp = c
                .post(format!("{base}{path}"))
                .header("content-type", "application/x-protobuf")
                .body(body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if resp.status().is_success() {
                Ok(0)
            } else {
                Err(format!("HTTP {}", resp.status()))
            }
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A person reads this: one line with the cause chain, never a backtrace (anyhow prints one from
    // `main`'s Err whenever RUST_BACKTRACE is set).
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-loadgen: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let duration = parse_secs(&args.duration)?;
    let endpoint = args
        .otlp_endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let client = Arc::new(if args.otlp_http {
        Client::Http(reqwest::Client::new(), format!("http://{endpoint}"))
    } else {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))?
            .connect()
            .await
            .map_err(|e| anyhow::Error::new(e).context(format!("cannot connect to {endpoint}")))?;
        Client::Grpc(ch)
    });
    if let Kind::Scenario = args.kind {
        return run_scenario(&args, &client).await;
    }
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let workers = args.workers.max(1);
    let batch = args.batch.max(1);
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (args, client, counters) = (args.clone(), client.clone(), counters.clone());
        tasks.push(tokio::spawn(async move {
            // Each worker paces its share of the rate in whole requests.
            let per_worker = args.rate as f64 / workers as f64;
            let interval =
                (per_worker > 0.0).then(|| Duration::from_secs_f64(batch as f64 / per_worker));
            let mut next = Instant::now();
            while start.elapsed() < duration {
                let mut n = batch;
                let seq = counters.next_seq.fetch_add(n, Ordering::SeqCst);
                if args.items > 0 {
                    if seq >= args.items {
                        break;
                    }
                    n = n.min(args.items - seq);
                }
                match send(&client, &args, seq, n).await {
                    Ok(rejected) => {
                        counters
                            .sent_items
                            .fetch_add(n - rejected, Ordering::Relaxed);
                        counters
                            .refused_items
                            .fetch_add(rejected, Ordering::Relaxed);
                    }
                    Err(e) => {
                        counters.refused_items.fetch_add(n, Ordering::Relaxed);
                        if counters.failed_requests.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("vigil-loadgen: request refused: {e}");
                        }
                    }
                }
                if let Some(iv) = interval {
                    next += iv;
                    let now = Instant::now();
                    if next > now {
                        tokio::time::sleep(next - now).await;
                    } else {
                        next = now;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let sent = counters.sent_items.load(Ordering::Relaxed);
    let refused = counters.refused_items.load(Ordering::Relaxed);
    let failed = counters.failed_requests.load(Ordering::Relaxed);
    if args.json {
        println!(
            "{}",
            serde_json::json!({"sent": sent, "refused": refused, "failed_requests": failed,
                "elapsed_s": elapsed, "items_per_sec": sent as f64 / elapsed.max(1e-9)})
        );
    } else {
        println!(
            "sent {sent} items, refused {refused} ({failed} failed requests) in {elapsed:.2}s: {:.0} items/s",
            sent as f64 / elapsed.max(1e-9)
        );
    }
    Ok(())
}

/// Sends every step of a scenario (traces, then metrics) as fast as the agent takes them, with the
/// scenario's own data timestamps, and prints what was simulated.
async fn run_scenario(args: &Args, client: &Client) -> anyhow::Result<()> {
    use vigil_loadgen::scenario::{Fault, Scenario, ScenarioConfig};
    let fault = match &args.fault {
        Some(f) => Some(Fault::parse(f).ok_or_else(|| {
            anyhow::anyhow!("--fault {f:?}: expected latency, errors or saturation")
        })?),
        None => None,
    };
    anyhow::ensure!(args.services >= 2, "--services must be at least 2");
    if let Some(f) = args.faulty {
        anyhow::ensure!(
            (1..args.services).contains(&f),
            "--faulty {f}: expected 1..{}",
            args.services - 1
        );
    }
    let step_wait = parse_secs(&args.step_wait).map_err(|_| {
        anyhow::anyhow!(
            "--step-wait {:?}: expected a duration such as 50ms",
            args.step_wait
        )
    })?;
    let mut sc = Scenario::new(ScenarioConfig {
        seed: args.seed,
        services: args.services,
        faulty: args.faulty,
        fault,
        fault_at_step: args.fault_at,
        steps: args.steps,
        step_secs: args.step_secs.max(1),
        // Data time ends now, so the agent sees recent timestamps.
        start_ns: now_nanos()
            .saturating_sub(args.steps as u64 * args.step_secs.max(1) * 1_000_000_000),
        peer_service: args.peer_service,
        ..ScenarioConfig::default()
    });
    if let Some(unknown) = args.only_services.iter().find(|s| !sc.names.contains(s)) {
        anyhow::bail!(
            "--only-services: {unknown:?} is not a service of this scenario ({})",
            sc.names.join(", ")
        );
    }
    let keep = |service: &str| {
        args.only_services.is_empty() || args.only_services.iter().any(|s| s == service)
    };
    let service_of = |r: Option<&Resource>| {
        r.and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default()
    };
    let mut spans = 0usize;
    for step in 0..sc.cfg.steps {
        let (mut traces, mut metrics) = sc.step(step);
        traces.retain(|r| keep(&service_of(r.resource.as_ref())));
        metrics.retain(|r| keep(&service_of(r.resource.as_ref())));
        spans += traces
            .iter()
            .flat_map(|r| r.scope_spans.iter())
            .map(|s| s.spans.len())
            .sum::<usize>();
        let t = ExportTraceServiceRequest {
            resource_spans: traces,
        };
        let m = ExportMetricsServiceRequest {
            resource_metrics: metrics,
        };
        match client {
            Client::Grpc(ch) => {
                TraceServiceClient::new(ch.clone())
                    .export(t)
                    .await
                    .map_err(|e| anyhow::anyhow!("traces refused at step {step}: {e}"))?;
                MetricsServiceClient::new(ch.clone())
                    .export(m)
                    .await
                    .map_err(|e| anyhow::anyhow!("metrics refused at step {step}: {e}"))?;
            }
            Client::Http(http, base) => {
                for (path, body) in [
                    ("/v1/traces", t.encode_to_vec()),
                    ("/v1/metrics", m.encode_to_vec()),
                ] {
                    let r = http
                        .post(format!("{base}{path}"))
                        .header("content-type", "application/x-protobuf")
                        .body(body)
                        .send()
                        .await?;
                    anyhow::ensure!(
                        r.status().is_success(),
                        "{path} refused at step {step}: HTTP {}",
                        r.status()
                    );
                }
            }
        }
        if !step_wait.is_zero() {
            tokio::time::sleep(step_wait).await;
        }
    }
    let report = serde_json::json!({
        "services": sc.names,
        "calls": sc.calls,
        "faulty": sc.names[sc.faulty],
        "fault": sc.fault.as_str(),
        "fault_at_step": sc.cfg.fault_at_step,
        "steps": sc.cfg.steps,
        "spans": spans,
    });
    println!("{report}");
    Ok(())
}
