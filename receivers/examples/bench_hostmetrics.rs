//! Measures the CPU cost of one `hostmetrics` collection with every scraper on, on this machine's
//! real `/proc`: runs N collections back to back and reads the process's user+system CPU time
//! (getrusage) around them. Reports the mean per collection and the share of one core that a
//! 10s `collection_interval` costs.
//!
//! `cargo run --release -p vigil-receivers --example bench_hostmetrics [N]`

use std::time::Instant;
use vigil_core::ComponentId;
use vigil_receivers::hostmetrics::{build_scrapers, collect, config, Root};

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let id = ComponentId::parse("hostmetrics").map_err(anyhow::Error::msg)?;
    let cfg = config::load(
        &id,
        &serde_json::json!({"scrapers": {
            "cpu": null, "memory": null, "load": null, "disk": null, "filesystem": null,
            "network": null, "paging": null, "processes": null, "process": {"mute_process_all_errors": true}}}),
    )?;
    let mut scrapers = build_scrapers(&id, &cfg)?;
    let root = Root::new("");
    // SAFETY: sysconf reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // One warm-up collection (first cpu/process utilization readings, page cache).
    let (batch, _) = collect(&mut scrapers, &root, ticks);
    let points = vigil_core::telemetry::data_point_count(&batch);
    let processes = batch.len().saturating_sub(1);
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    for _ in 0..n {
        let (b, _) = collect(&mut scrapers, &root, ticks);
        std::hint::black_box(b);
    }
    let cpu = (cpu_seconds() - cpu0) / n as f64;
    let wall = wall0.elapsed().as_secs_f64() / n as f64;
    println!("collections: {n}; data points per collection: {points}; processes: {processes}");
    println!(
        "CPU per collection: {:.3} ms (wall {:.3} ms)",
        cpu * 1e3,
        wall * 1e3
    );
    println!("at a 10s interval: {:.4}% of one core", cpu / 10.0 * 100.0);
    Ok(())
}
