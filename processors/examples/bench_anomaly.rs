//! Benchmark of the `anomalydetection` connector's engine (not a test): memory of N live series and
//! points per second through `Engine::ingest`, with no network and no pipeline. Each round gives every
//! series one new gauge point (`cpu.utilization`, two point attributes), in OTLP batches of 1,000 points
//! under one resource. Forty warm-up rounds run first, so that every series is past its warm-up and holds
//! its period-search buffer; RSS is `VmRSS` after them minus before, so it is the series state only.
//!
//! Usage: `cargo run --release -p vigil-processors --example bench_anomaly -- [SERIES] [RESOURCE_ATTRS]
//! [emit_scores]`. RESOURCE_ATTRS is the number of resource attributes (1 by default; an OpenTelemetry
//! SDK sends about ten). Figures go to `BENCHMARKS.md` ("anomalydetection connector").

use std::time::Instant;
use vigil_core::attrs::kv_str;
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::{ComponentId, Telemetry};
use vigil_processors::anomaly::config::parse;
use vigil_processors::anomaly::engine::Engine;

const BATCH: u64 = 1000;
const T0: f64 = 1_700_000_000.0;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// xorshift noise in [0, 1): varied values are all the workload needs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn batch(first: u64, round: u64, resource: &Resource, rng: &mut Rng) -> Telemetry {
    let t = ((T0 + 60.0 * round as f64) * 1e9) as u64;
    let points = (first..first + BATCH)
        .map(|k| NumberDataPoint {
            attributes: vec![
                kv_str("cpu", (k % 64).to_string()),
                kv_str("series", k.to_string()),
            ],
            time_unix_nano: t,
            value: Some(number_data_point::Value::AsDouble(50.0 + 10.0 * rng.next())),
            ..Default::default()
        })
        .collect();
    Telemetry::Metrics(vec![ResourceMetrics {
        resource: Some(resource.clone()),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![Metric {
                name: "cpu.utilization".into(),
                data: Some(Data::Gauge(Gauge {
                    data_points: points,
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let series: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let resource_attrs: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let emit_scores = args.next().is_some_and(|s| s == "emit_scores");
    let resource = Resource {
        attributes: (0..resource_attrs)
            .map(|i| match i {
                0 => kv_str("host.name", "node-1"),
                i => kv_str(
                    &format!("telemetry.attribute.{i}"),
                    "a typical resource attribute value",
                ),
            })
            .collect(),
        ..Default::default()
    };
    let settings = parse(
        &ComponentId::new("anomalydetection", None),
        &serde_json::json!({ "max_series": series }),
    )?;
    let mut engine = Engine::new(settings, emit_scores);
    let mut rng = Rng(7);
    let wall = |round: u64| T0 + 60.0 * round as f64;
    let before = rss_mib();
    let mut round = 0;
    for _ in 0..40 {
        for first in (0..series).step_by(BATCH as usize) {
            let _ = engine.ingest(&batch(first, round, &resource, &mut rng), wall(round));
        }
        round += 1;
    }
    let rss = rss_mib() - before;
    let timed_rounds = (500_000 / series).max(1);
    let started = Instant::now();
    let mut points = 0;
    for _ in 0..timed_rounds {
        for first in (0..series).step_by(BATCH as usize) {
            let _ = engine.ingest(&batch(first, round, &resource, &mut rng), wall(round));
            points += BATCH;
        }
        round += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{series} series, {resource_attrs} resource attributes, emit_scores {emit_scores}: \
         {:.0} MiB RSS of live series ({:.0} B each), {:.0}k points/s ({points} points in {secs:.1} s), live {}",
        rss,
        rss * 1048576.0 / series as f64,
        points as f64 / secs / 1e3,
        engine.counts().live
    );
    Ok(())
}
