//! Benchmark of the `logpattern` and `dedup` processors in a pipeline (not a test): log records per
//! CPU-second through `logpattern`, `dedup` and both chained, on one thread, into a consumer that drops
//! everything. Run it in release mode: `cargo run --release -p vigil-processors --example bench_logpattern`.
//! Figures go to `BENCHMARKS.md` ("logpattern + dedup in the pipeline").

use async_trait::async_trait;
use std::sync::Arc;
use vigil_core::attrs::kv_str;
use vigil_core::otlp::common::v1::{any_value, AnyValue};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::{ComponentId, ConsumeError, Consumer, Signal, Telemetry};

/// Drops what it is given, counting records.
#[derive(Default)]
struct Null(std::sync::atomic::AtomicU64);

#[async_trait]
impl Consumer for Null {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        self.0.fetch_add(
            data.item_count() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(())
    }
}

/// xorshift: varied numbers are all the workload needs.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Application-style lines of twelve kinds with ids, addresses, durations and sizes in them.
fn app_line(r: &mut Rng) -> String {
    match r.below(12) {
        0 => format!(
            "GET /api/v1/items/{} returned 200 in {} ms",
            r.below(1 << 20),
            r.below(900)
        ),
        1 => format!(
            "user {} logged in from 10.{}.{}.{}",
            r.below(1 << 24),
            r.below(256),
            r.below(256),
            r.below(256)
        ),
        2 => format!(
            "cache miss for key item:{} after {} us",
            r.below(1 << 30),
            r.below(5000)
        ),
        3 => format!(
            "payment {} declined by issuer bank{}.example.com code {}",
            r.below(1 << 30),
            r.below(9),
            r.below(99)
        ),
        4 => format!(
            "worker {} finished job {} in {}.{} s",
            r.below(64),
            r.below(1 << 32),
            r.below(60),
            r.below(1000)
        ),
        5 => format!(
            "connection to db-{}:5432 reset by peer after {} queries",
            r.below(4),
            r.below(10_000)
        ),
        6 => format!(
            "request id={:x} trace_id={:x} exceeded deadline",
            r.below(u64::MAX),
            r.below(u64::MAX)
        ),
        7 => format!(
            "wrote {} bytes to /var/lib/app/segment-{}.log",
            r.below(1 << 26),
            r.below(1 << 16)
        ),
        8 => format!(
            "scheduler: queue depth {} above threshold {}",
            r.below(5000),
            1000
        ),
        9 => format!(
            "tls handshake with 192.168.{}.{}:443 failed: certificate expired",
            r.below(256),
            r.below(256)
        ),
        10 => format!(
            "retrying upload of part {} of {} (attempt {})",
            r.below(100),
            100,
            r.below(5)
        ),
        _ => format!(
            "GC pause {} ms, heap {} MiB -> {} MiB",
            r.below(300),
            r.below(4096),
            r.below(4096)
        ),
    }
}

fn batches(r: &mut Rng, n: usize, per: usize, storm: bool) -> Vec<Telemetry> {
    (0..n)
        .map(|_| {
            let records = (0..per)
                .map(|_| LogRecord {
                    time_unix_nano: 1_700_000_000_000_000_000,
                    severity_number: 9,
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(if storm {
                            "ERROR db pool: connection to db-primary refused (retrying)".into()
                        } else {
                            app_line(r)
                        })),
                    }),
                    ..Default::default()
                })
                .collect();
            Telemetry::Logs(vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv_str("service.name", "checkout"),
                        kv_str("host.name", "node-7"),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }])
        })
        .collect()
}

/// CPU seconds of this thread, so that other work on a shared machine does not count.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn chain(kinds: &[&str], sink: Arc<dyn Consumer>) -> Arc<dyn Consumer> {
    let mut next = sink;
    for kind in kinds.iter().rev() {
        let id = ComponentId::parse(kind).expect("id");
        let factory = vigil_processors::processor_factories()
            .into_iter()
            .find(|f| f.type_name() == *kind)
            .expect("factory");
        let p = factory
            .create(&id, &serde_json::Value::Null, Signal::Logs, next)
            .expect("default config");
        next = p;
    }
    next
}

async fn run(name: &str, kinds: &[&str], storm: bool) {
    const PER: usize = 1024;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let sink = Arc::new(Null::default());
    let head = chain(kinds, sink.clone());
    // Warm-up: the miner learns the kinds, and allocators settle.
    for b in batches(&mut rng, 50, PER, storm) {
        head.consume(b).await.expect("consume");
    }
    let mut best = 0f64;
    let mut out_share = 0f64;
    for _ in 0..3 {
        let work = batches(&mut rng, 200, PER, storm);
        let n = (200 * PER) as f64;
        let before = sink.0.load(std::sync::atomic::Ordering::Relaxed);
        let t0 = thread_cpu();
        for b in work {
            head.consume(b).await.expect("consume");
        }
        let cpu = thread_cpu() - t0;
        let out = sink.0.load(std::sync::atomic::Ordering::Relaxed) - before;
        if n / cpu > best {
            best = n / cpu;
            out_share = out as f64 / n;
        }
    }
    println!(
        "{name:<44} {:>6.2} M records/CPU-s   out/in {:.4}",
        best / 1e6,
        out_share
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        run(
            "logpattern (12 kinds, varied values)",
            &["logpattern"],
            false,
        )
        .await;
        run("dedup, body key, identical storm", &["dedup"], true).await;
        run("dedup, body key, every body distinct", &["dedup"], false).await;
        run(
            "logpattern -> dedup (pattern key)",
            &["logpattern", "dedup"],
            false,
        )
        .await;
        run(
            "logpattern -> dedup, identical storm",
            &["logpattern", "dedup"],
            true,
        )
        .await;
    });
}
