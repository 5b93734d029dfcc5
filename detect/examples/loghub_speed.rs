//! Steady-state speed of `TemplateMiner::add` (masking included) on real log lines: for each Loghub-2k
//! dataset in DIR, a miner learns the 2k messages once, then the same messages are added again
//! `PASSES` times and timed (400k lines: the CPU clock of a thread advances in scheduler ticks, so a
//! shorter run would show their steps). Time is this thread's own CPU time (`/proc/thread-self/schedstat`, in
//! nanoseconds), so other work on a shared machine does not count; wall-clock is shown beside it.
//! With ROUNDS (default 1), every dataset is timed that many times, the rounds interleaved, and the
//! median, lowest and highest figure are shown: on a loaded machine even CPU time varies (a sibling
//! hyper-thread and the caches are shared), so one run is not a measurement. With `--pairs`, each
//! message is followed by the one 7 messages on (`i * 7 mod n`), in one line: messages about twice as
//! long, as other systems write them, from the same words and values.
//! `cargo run --release -p vigil-detect --example loghub_speed -- DIR [ROUNDS] [--pairs]`

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use vigil_detect::loghub::{discover, load, Dataset};
use vigil_detect::template::{MinerConfig, TemplateMiner};

const PASSES: usize = 200;

fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Lines, CPU seconds and wall seconds of one timed run.
fn run(d: &Dataset) -> Result<(usize, f64, f64), Box<dyn std::error::Error>> {
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
    Ok((PASSES * d.contents.len(), cpu, wall))
}

/// Median, lowest and highest of a non-empty list.
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    };
    (median, v[0], v[v.len() - 1])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pairs = args.iter().any(|a| a == "--pairs");
    let mut args = args.into_iter().filter(|a| a != "--pairs");
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: loghub_speed DIR [ROUNDS] [--pairs]")?,
    );
    let rounds: usize = args.next().map_or(Ok(1), |r| r.parse())?.max(1);
    let mut data = discover(&dir)?
        .iter()
        .map(|name| load(&dir, name))
        .collect::<Result<Vec<_>, _>>()?;
    if pairs {
        for d in &mut data {
            let n = d.contents.len();
            d.contents = (0..n)
                .map(|i| format!("{} {}", d.contents[i], d.contents[(i * 7) % n]))
                .collect();
        }
    }
    // per dataset: lines/CPU-s and lines/wall-s of each round; and all datasets' totals per round.
    let mut cpu_rates = vec![Vec::new(); data.len()];
    let mut wall_rates = vec![Vec::new(); data.len()];
    let mut all = vec![Vec::new(); 2];
    for _ in 0..rounds {
        let (mut lines, mut cpu, mut wall) = (0usize, 0f64, 0f64);
        for (k, d) in data.iter().enumerate() {
            let (n, c, w) = run(d)?;
            cpu_rates[k].push(n as f64 / c / 1e6);
            wall_rates[k].push(n as f64 / w / 1e6);
            (lines, cpu, wall) = (lines + n, cpu + c, wall + w);
        }
        all[0].push(lines as f64 / cpu / 1e6);
        all[1].push(lines as f64 / wall / 1e6);
    }
    println!("| dataset | M lines per CPU-second: median (lowest to highest of {rounds}) | M lines/s wall, median | bytes per message |");
    println!("|---|---|---|---|");
    let row = |name: &str, cpu: &[f64], wall: &[f64], bytes: f64| {
        let (m, lo, hi) = spread(cpu.to_vec());
        let (w, _, _) = spread(wall.to_vec());
        println!("| {name} | {m:.2} ({lo:.2} to {hi:.2}) | {w:.2} | {bytes:.0} |");
    };
    let mean_len = |lines: &[String]| {
        lines.iter().map(String::len).sum::<usize>() as f64 / lines.len().max(1) as f64
    };
    for (k, d) in data.iter().enumerate() {
        row(
            &d.name,
            &cpu_rates[k],
            &wall_rates[k],
            mean_len(&d.contents),
        );
    }
    let all_lines: Vec<String> = data.iter().flat_map(|d| d.contents.clone()).collect();
    row("**all**", &all[0], &all[1], mean_len(&all_lines));
    Ok(())
}
