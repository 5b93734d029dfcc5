//! Scrape-parse throughput of the `prometheus` receiver: builds a 100k-sample exposition shaped like
//! node_exporter output (labelled counters, gauges, histograms, a summary, HELP/TYPE lines) and times
//! the parser alone, then parse + OTLP translation, on one thread. Results go in BENCHMARKS.md under
//! "Prometheus scrape parsing".
//!
//! `cargo run --release -p vigil-receivers --example bench_prom_parse`

use std::fmt::Write;
use std::time::Instant;
use vigil_receivers::prometheus::convert::{ScrapeSettings, TargetInfo, Translator};
use vigil_receivers::prometheus::parse::{Entry, Format, Parser};

const SAMPLES: usize = 100_000;

/// CPU time of this thread, in seconds. The machine is shared, so wall time would count the time
/// other processes hold the cores; "per core" means per second of our own CPU.
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; no other memory is touched.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn exposition(format: Format) -> (String, usize) {
    let mut s = String::with_capacity(SAMPLES * 80);
    let mut n = 0;
    let mut family = 0;
    while n < SAMPLES {
        match family % 4 {
            0 => {
                let _ = writeln!(
                    s,
                    "# HELP node_cpu_seconds_{family}_total Seconds the CPUs spent in each mode."
                );
                let _ = writeln!(s, "# TYPE node_cpu_seconds_{family}_total counter");
                for cpu in 0..16 {
                    for mode in [
                        "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
                    ] {
                        let _ = writeln!(
                            s,
                            "node_cpu_seconds_{family}_total{{cpu=\"{cpu}\",mode=\"{mode}\"}} {}.{}",
                            123456 + cpu * 7,
                            (n * 37) % 100
                        );
                        n += 1;
                    }
                }
            }
            1 => {
                let _ = writeln!(
                    s,
                    "# HELP node_filesystem_avail_bytes_{family} Filesystem space available."
                );
                let _ = writeln!(s, "# TYPE node_filesystem_avail_bytes_{family} gauge");
                for dev in 0..32 {
                    let _ = writeln!(
                        s,
                        "node_filesystem_avail_bytes_{family}{{device=\"/dev/sd{dev}\",fstype=\"ext4\",mountpoint=\"/mnt/d{dev}\"}} {}",
                        1.2345678e10 + dev as f64
                    );
                    n += 1;
                }
            }
            2 => {
                let _ = writeln!(s, "# TYPE http_request_duration_seconds_{family} histogram");
                for path in ["/", "/api", "/login", "/health"] {
                    let mut cum = 0;
                    for le in [
                        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
                        "10", "+Inf",
                    ] {
                        cum += 3;
                        let _ = writeln!(s, "http_request_duration_seconds_{family}_bucket{{path=\"{path}\",le=\"{le}\"}} {cum}");
                        n += 1;
                    }
                    let _ = writeln!(
                        s,
                        "http_request_duration_seconds_{family}_sum{{path=\"{path}\"}} 17.25"
                    );
                    let _ = writeln!(
                        s,
                        "http_request_duration_seconds_{family}_count{{path=\"{path}\"}} {cum}"
                    );
                    n += 2;
                }
            }
            _ => {
                let _ = writeln!(s, "# TYPE go_gc_duration_seconds_{family} summary");
                for q in ["0", "0.25", "0.5", "0.75", "1"] {
                    let _ = writeln!(
                        s,
                        "go_gc_duration_seconds_{family}{{quantile=\"{q}\"}} 4.2e-05"
                    );
                    n += 1;
                }
                let _ = writeln!(s, "go_gc_duration_seconds_{family}_sum 0.5\ngo_gc_duration_seconds_{family}_count 1200");
                n += 2;
            }
        }
        family += 1;
    }
    if format == Format::OpenMetrics {
        s.push_str("# EOF\n");
    }
    (s, n)
}

fn main() {
    for format in [Format::Text, Format::OpenMetrics] {
        let (body, n) = exposition(format);
        // Warm up, and check the count so that the timed loop measures real work.
        let parsed = Parser::new(&body, format)
            .filter(|e| matches!(e, Ok(Entry::Sample(_))))
            .count();
        assert_eq!(parsed, n);
        let rounds = 30;
        let start = Instant::now();
        let cpu = cpu_seconds();
        let mut total = 0usize;
        for _ in 0..rounds {
            for e in Parser::new(&body, format) {
                if let Ok(Entry::Sample(s)) = e {
                    total += s.labels.len() + 1;
                }
            }
        }
        let wall = start.elapsed().as_secs_f64();
        let secs = cpu_seconds() - cpu;
        std::hint::black_box(total);
        let per_s = (n * rounds) as f64 / secs;
        println!(
            "{format:?}: parse {n} samples ({:.1} MB) x{rounds}: {:.2} M samples/s per CPU-second, \
             {:.0} MB/s ({:.2} M samples/s wall)",
            body.len() as f64 / 1e6,
            per_s / 1e6,
            (body.len() * rounds) as f64 / secs / 1e6,
            (n * rounds) as f64 / wall / 1e6
        );

        let target = TargetInfo {
            labels: vec![
                ("instance".into(), "127.0.0.1:9100".into()),
                ("job".into(), "node".into()),
            ],
            scheme: "http".into(),
        };
        let settings = ScrapeSettings {
            honor_labels: false,
            honor_timestamps: true,
            metric_relabel: &[],
            sample_limit: 0,
            start_time_metric: None,
            label_limits: Default::default(),
        };
        let mut tr = Translator::new();
        let rounds = 5;
        let cpu = cpu_seconds();
        for i in 0..rounds {
            let out = tr.translate(&body, format, 1 + i, &target, &settings);
            std::hint::black_box(out.is_ok());
        }
        let secs = cpu_seconds() - cpu;
        println!(
            "{format:?}: parse + OTLP translation x{rounds}: {:.2} M samples/s per CPU-second",
            (n * rounds as usize) as f64 / secs / 1e6
        );
    }
}
