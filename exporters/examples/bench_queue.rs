//! Throughput of the durable sending queue (`PersistentQueue`) over a real redb file, with fsync on
//! (`Durability::Immediate`, as `file_storage` with `fsync: true`) and off (`Durability::Eventual`).
//! Producers push gzip-compressed OTLP trace requests as receivers would; consumers pop and mark each
//! one done at once, as if the backend were infinitely fast, so the figure is the queue's own cost:
//! commit, read back, delete. Prints spans/s, spans per CPU-second, and bytes written per span.
//!
//! `cargo run --release -p vigil-exporters --example bench_queue -- [requests] [spans_per_request] [producers] [sealed]`
//!
//! With `sealed`, the store is wrapped in `SealedStorage` (AES-256-GCM, as `file_storage` with
//! `encryption`), and the sealing cost alone is also measured on the same request bodies.
//!
//! The `Storage` here is a copy of the `file_storage` extension's redb calls (that extension lives in
//! the agent crate, which this crate cannot depend on): one table, one write transaction per batch.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use redb::{Database, Durability, TableDefinition};
use std::sync::Arc;
use std::time::Instant;
use vigil_core::codec::encode::proto_request;
use vigil_core::storage::{KeyValues, SealedStorage, SealingKey, StorageOp};
use vigil_core::{Signal, Storage, StorageError, Telemetry};
use vigil_exporters::helper::{Compression, Job, Persist, PersistentQueue, Queue};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

struct Redb {
    db: Database,
    durability: Durability,
}

fn other(e: impl std::fmt::Display) -> StorageError {
    StorageError::Other(e.to_string())
}

impl Storage for Redb {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = self.db.begin_read().map_err(other)?;
        let t = tx.open_table(TABLE).map_err(other)?;
        Ok(t.get(key).map_err(other)?.map(|v| v.value().to_vec()))
    }

    fn batch(&self, ops: Vec<StorageOp>) -> Result<(), StorageError> {
        let mut tx = self.db.begin_write().map_err(other)?;
        tx.set_durability(self.durability);
        {
            let mut t = tx.open_table(TABLE).map_err(other)?;
            for op in &ops {
                match op {
                    StorageOp::Set(k, v) => {
                        t.insert(k.as_slice(), v.as_slice()).map_err(other)?;
                    }
                    StorageOp::Delete(k) => {
                        t.remove(k.as_slice()).map_err(other)?;
                    }
                }
            }
        }
        tx.commit().map_err(other)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<KeyValues, StorageError> {
        let tx = self.db.begin_read().map_err(other)?;
        let t = match tx.open_table(TABLE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(other(e)),
        };
        let mut out = Vec::new();
        for item in t.range(prefix..).map_err(other)? {
            let (k, v) = item.map_err(other)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
}

/// A request as the otlp exporter queues it: the compressed wire body.
struct Body(Vec<u8>);

impl Persist for Body {
    fn to_bytes(&self) -> Vec<u8> {
        self.0.clone()
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Body(bytes.to_vec()))
    }
}

fn kv(k: &str, v: String) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        }),
        ..Default::default()
    }
}

/// A loadgen-like request: random ids, a fixed name, a sequence number and four attributes per span.
fn request(first_seq: u64, n: usize) -> Vec<u8> {
    let spans = (0..n as u64)
        .map(|i| {
            let seq = first_seq + i;
            Span {
                trace_id: rand::random::<[u8; 16]>().to_vec(),
                span_id: rand::random::<[u8; 8]>().to_vec(),
                name: "GET /api/items".into(),
                kind: 2,
                start_time_unix_nano: 1_700_000_000_000_000_000 + seq,
                end_time_unix_nano: 1_700_000_000_005_000_000 + seq,
                attributes: (0..4)
                    .map(|a| kv(&format!("attr.{a}"), format!("value-{}", (seq + a) % 97)))
                    .chain(std::iter::once(kv("loadgen.seq", seq.to_string())))
                    .collect(),
                ..Default::default()
            }
        })
        .collect();
    let data = Telemetry::Traces(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", "bench".into())],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }]);
    Compression::Gzip
        .compress(proto_request(&data))
        .unwrap_or_default()
}

/// (bytes passed to write calls, bytes the block layer wrote) for this process, from /proc/self/io.
fn io_counters() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("wchar:"), field("write_bytes:"))
}

/// CPU seconds (user + system) of this process so far, from /proc/self/stat in clock ticks of 1/100 s.
fn cpu_seconds() -> f64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

const BENCH_KEY: &str = "8f1e0c4a2b7d6e5f8f1e0c4a2b7d6e5f8f1e0c4a2b7d6e5f8f1e0c4a2b7d6e5f";

/// Seals and opens the bodies on one thread, with nothing else in the way: the encryption's own cost.
fn seal_only(bodies: &[Vec<u8>]) {
    let key = SealingKey::from_hex(BENCH_KEY).expect("key");
    let rounds = 1000;
    let bytes = (bodies.iter().map(Vec::len).sum::<usize>() * rounds) as f64;
    let c0 = cpu_seconds();
    let start = Instant::now();
    let mut sealed = Vec::with_capacity(bodies.len());
    for _ in 0..rounds {
        sealed.clear();
        for (i, b) in bodies.iter().enumerate() {
            sealed.push(key.seal(&(i as u64).to_be_bytes(), b).expect("seal"));
        }
    }
    let seal_s = start.elapsed().as_secs_f64();
    let seal_cpu = cpu_seconds() - c0;
    let c1 = cpu_seconds();
    let start = Instant::now();
    for _ in 0..rounds {
        for (i, s) in sealed.iter().enumerate() {
            assert!(key.open(&(i as u64).to_be_bytes(), s).is_some());
        }
    }
    let open_s = start.elapsed().as_secs_f64();
    let open_cpu = cpu_seconds() - c1;
    // The CPU figures are the steadier ones on a shared machine; /proc ticks are 10 ms, hence the
    // 1000 rounds.
    println!(
        "seal only: {} bodies x {rounds}, {:.1} MB: seal {:.0} MB/s wall, {:.0} MB per cpu-second \
         ({:.2} us cpu per body); open {:.0} MB/s wall, {:.0} MB per cpu-second",
        bodies.len(),
        bytes / 1e6,
        bytes / seal_s / 1e6,
        bytes / seal_cpu.max(1e-9) / 1e6,
        seal_cpu * 1e6 / (bodies.len() * rounds) as f64,
        bytes / open_s / 1e6,
        bytes / open_cpu.max(1e-9) / 1e6,
    );
}

async fn run(fsync: bool, sealed: bool, requests: usize, spans: usize, producers: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("queue.redb");
    let store = Arc::new(Redb {
        db: Database::create(&path).expect("create redb"),
        durability: if fsync {
            Durability::Immediate
        } else {
            Durability::Eventual
        },
    });
    let store: Arc<dyn Storage> = if sealed {
        let key = SealingKey::from_hex(BENCH_KEY).expect("key");
        Arc::new(SealedStorage::new(store, key, "bench"))
    } else {
        store
    };
    let (queue, _) = PersistentQueue::<Job<Body>>::open(store, requests, "bench")
        .await
        .expect("open queue");
    let queue = Arc::new(queue);
    // Bodies are built before the clock starts: the bench measures the queue, not the encoder.
    let bodies: Vec<Vec<u8>> = (0..64).map(|i| request(i * spans as u64, spans)).collect();
    let body_len = bodies.iter().map(Vec::len).sum::<usize>() / bodies.len();
    let bodies = Arc::new(bodies);

    let (w0, b0) = io_counters();
    let c0 = cpu_seconds();
    let start = Instant::now();
    let consumers: Vec<_> = (0..10)
        .map(|_| {
            let q = queue.clone();
            tokio::spawn(async move {
                let mut n = 0usize;
                while let Some(p) = q.pop().await {
                    n += p.item.items;
                    q.done(p.id);
                }
                n
            })
        })
        .collect();
    let per = requests / producers;
    let pushers: Vec<_> = (0..producers)
        .map(|w| {
            let (q, bodies) = (queue.clone(), bodies.clone());
            tokio::spawn(async move {
                for i in 0..per {
                    let job = Job {
                        signal: Signal::Traces,
                        items: spans,
                        request: Body(bodies[(w * per + i) % bodies.len()].clone()),
                        meta: None,
                    };
                    if q.push(job, 1, true).await.is_err() {
                        panic!("push refused");
                    }
                }
            })
        })
        .collect();
    for p in pushers {
        p.await.expect("producer");
    }
    let pushed_at = start.elapsed();
    // Let consumers take everything, then stop them and wait for the last deletes to commit.
    while queue.size() > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    queue.close();
    let mut delivered = 0;
    for c in consumers {
        delivered += c.await.expect("consumer");
    }
    queue.flush().await;
    let elapsed = start.elapsed();
    let cpu = cpu_seconds() - c0;
    let (w1, b1) = io_counters();
    let total = (per * producers * spans) as f64;
    println!(
        "fsync={fsync:<5} sealed={sealed:<5} requests={} spans/request={spans} producers={producers} body={body_len} B: \
         pushed in {:.2}s ({:.0} spans/s), all delivered in {:.2}s ({:.0} spans/s), \
         cpu {:.2}s ({:.0} spans per cpu-second), written {:.1} B/span (write calls), \
         {:.1} B/span (block layer), file {} KiB",
        per * producers,
        pushed_at.as_secs_f64(),
        total / pushed_at.as_secs_f64(),
        elapsed.as_secs_f64(),
        total / elapsed.as_secs_f64(),
        cpu,
        total / cpu.max(1e-9),
        (w1 - w0) as f64 / total,
        (b1 - b0) as f64 / total,
        std::fs::metadata(&path).map(|m| m.len() / 1024).unwrap_or(0),
    );
    assert_eq!(delivered as f64, total, "every pushed span was popped");
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let requests = args.first().copied().unwrap_or(5000);
    let spans = args.get(1).copied().unwrap_or(100);
    let producers = args.get(2).copied().unwrap_or(8);
    let sealed = std::env::args().any(|a| a == "sealed");
    if sealed {
        let bodies: Vec<Vec<u8>> = (0..64).map(|i| request(i * spans as u64, spans)).collect();
        seal_only(&bodies);
    }
    for fsync in [false, true] {
        run(fsync, sealed, requests, spans, producers).await;
    }
}
