//! Throughput and memory of `SeriesDetector`, measured outside the test suite (BENCHMARKS.md).
//! Usage: `cargo run --release -p vigil-detect --example bench_series [SERIES]` (default 100000).
//! 1. Points per second through one detector at steady state (after warm-up and the period search), on a
//!    non-seasonal and on a seasonal series.
//! 2. Resident memory of SERIES live series in a `SeriesSet`: while every series is still searching for a
//!    period (the peak), and at steady state once the searches have ended.

use std::hint::black_box;
use std::time::Instant;

use vigil_detect::series::{
    DetectorConfig, EpisodeConfig, SeriesDetector, SeriesSet, SeriesSetConfig, TrackedSeries,
};

struct Rng(u64);
impl Rng {
    fn noise(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn throughput(name: &str, f: impl Fn(usize) -> f64) {
    let mut rng = Rng(7);
    let mut d = SeriesDetector::default();
    let warm = 5_000;
    for i in 0..warm {
        d.observe(i as f64 * 60.0, f(i) + rng.noise());
    }
    let n = 20_000_000;
    let started = Instant::now();
    let mut acc = 0.0;
    for i in warm..warm + n {
        acc += d.observe(i as f64 * 60.0, f(i) + rng.noise()).score;
    }
    let secs = started.elapsed().as_secs_f64();
    black_box(acc);
    println!(
        "{name}: {:.2} M points/s ({n} points in {secs:.2} s, period {:?}, {} bytes of state)",
        n as f64 / secs / 1e6,
        d.period(),
        d.memory_bytes()
    );
}

fn main() {
    let series: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    throughput("steady state, non-seasonal", |_| 50.0);
    throughput("steady state, seasonal (period 288)", |i| {
        50.0 + 20.0 * (2.0 * std::f64::consts::PI * (i % 288) as f64 / 288.0).sin()
    });

    let before = rss_mib();
    let mut set: SeriesSet<u64> = SeriesSet::new(SeriesSetConfig::default());
    let (det, ep) = (DetectorConfig::default(), EpisodeConfig::default());
    let mut rng = Rng(11);
    let mut feed = |set: &mut SeriesSet<u64>, rounds: std::ops::Range<usize>| {
        // Round-robin over the series, as a pipeline sees them: one point per series per interval.
        for t in rounds {
            for k in 0..series {
                let s = set.get_or_insert_with(
                    &k,
                    t as f64,
                    || TrackedSeries::new(&det, ep),
                    |_, _| {},
                );
                let o = s.detector.observe(t as f64 * 60.0, 10.0 + rng.noise());
                let _ = s.episodes.update(t as f64, 0.0, &o);
            }
        }
    };
    let started = Instant::now();
    feed(&mut set, 0..600);
    let searching = rss_mib() - before;
    let bytes: usize = (0..series)
        .filter_map(|k| set.get(&k))
        .map(|s| s.detector.memory_bytes())
        .sum();
    println!(
        "{series} series while searching for a period: {searching:.0} MiB RSS ({:.0} MiB of detector state)",
        bytes as f64 / 1048576.0
    );
    feed(&mut set, 600..1200);
    let steady = rss_mib() - before;
    let bytes: usize = (0..series)
        .filter_map(|k| set.get(&k))
        .map(|s| s.detector.memory_bytes())
        .sum();
    let stats = set.stats();
    println!(
        "{series} series at steady state: {steady:.0} MiB RSS ({:.0} MiB of detector state; live {}, evicted {}), fed {} points in {:.1} s",
        bytes as f64 / 1048576.0,
        stats.live,
        stats.evicted_lru,
        series * 1200,
        started.elapsed().as_secs_f64()
    );
}
