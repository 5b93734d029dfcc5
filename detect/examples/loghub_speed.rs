//! Steady-state speed of `TemplateMiner::add` (masking included) on real log lines: for each Loghub-2k
//! dataset in DIR, a miner learns the 2k messages once, then the same messages are added again
//! `PASSES` times and timed. Time is this thread's own CPU time (`/proc/thread-self/schedstat`, in
//! nanoseconds), so other work on a shared machine does not count; wall-clock is shown beside it.
//! `cargo run --release -p vigil-detect --example loghub_speed -- DIR`

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use vigil_detect::loghub::{discover, load};
use vigil_detect::template::{MinerConfig, TemplateMiner};

const PASSES: usize = 50;

fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: loghub_speed DIR")?);
    let (mut all_lines, mut all_cpu, mut all_wall) = (0usize, 0f64, 0f64);
    println!("| dataset | lines/s per CPU-second | lines/s wall |");
    println!("|---|---|---|");
    for name in discover(&dir)? {
        let d = load(&dir, &name)?;
        let mut miner = TemplateMiner::new(MinerConfig::default())?;
        for l in &d.contents {
            let _ = black_box(miner.add(l).id);
        }
        let cpu0 = thread_cpu_ns().ok_or("no schedstat")?;
        let wall0 = Instant::now();
        for _ in 0..PASSES {
            for l in &d.contents {
                let _ = black_box(miner.add(l).id);
            }
        }
        let wall = wall0.elapsed().as_secs_f64();
        let cpu = (thread_cpu_ns().ok_or("no schedstat")? - cpu0) as f64 / 1e9;
        let n = PASSES * d.contents.len();
        println!(
            "| {name} | {:.2} M | {:.2} M |",
            n as f64 / cpu / 1e6,
            n as f64 / wall / 1e6
        );
        all_lines += n;
        all_cpu += cpu;
        all_wall += wall;
    }
    println!(
        "| **all** | **{:.2} M** | {:.2} M |",
        all_lines as f64 / all_cpu / 1e6,
        all_lines as f64 / all_wall / 1e6
    );
    Ok(())
}
