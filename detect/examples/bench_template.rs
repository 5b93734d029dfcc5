//! Benchmark of `TemplateMiner` (not a test): steady-state lines per second on synthetic HDFS-like lines
//! and on lines crowding one tree leaf with 20, 200 or 4000 distinct templates, and the memory and
//! saved-state size of 10k templates. Run it in release mode:
//! `cargo run --release -p vigil-detect --example bench_template`. Figures go to `BENCHMARKS.md`.

use std::hint::black_box;
use std::time::Instant;

use vigil_detect::template::{MinerConfig, TemplateMiner};

/// A small xorshift generator: the benchmark needs varied numbers, not statistical quality.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Lines shaped like HDFS DataNode/NameNode messages: block ids, addresses, sizes, a few words.
fn hdfs_like(rng: &mut Rng) -> String {
    let ip = |rng: &mut Rng| {
        format!(
            "10.{}.{}.{}:{}",
            rng.below(256),
            rng.below(256),
            rng.below(256),
            50010
        )
    };
    let blk = |rng: &mut Rng| {
        format!(
            "blk_{}{}",
            if rng.below(2) == 0 { "-" } else { "" },
            rng.next() >> 2
        )
    };
    match rng.below(8) {
        0 => format!(
            "PacketResponder {} for block {} terminating",
            rng.below(3),
            blk(rng)
        ),
        1 => format!(
            "Received block {} of size {} from /{}",
            blk(rng),
            rng.below(1 << 26),
            ip(rng)
        ),
        2 => format!(
            "BLOCK* NameSystem.addStoredBlock: blockMap updated: {} is added to {} size {}",
            ip(rng),
            blk(rng),
            rng.below(1 << 26)
        ),
        3 => format!(
            "Receiving block {} src: /{} dest: /{}",
            blk(rng),
            ip(rng),
            ip(rng)
        ),
        4 => format!(
            "BLOCK* NameSystem.allocateBlock: /user/root/rand/_temporary/_task_{}_r_{}/part-{} {}",
            rng.below(1 << 30),
            rng.below(100),
            rng.below(100),
            blk(rng)
        ),
        5 => format!("Verification succeeded for {}", blk(rng)),
        6 => format!(
            "Deleting block {} file /mnt/hadoop/dfs/data/current/subdir{}/{}",
            blk(rng),
            rng.below(64),
            blk(rng)
        ),
        _ => format!("{} Served block {} to /{}", ip(rng), blk(rng), ip(rng)),
    }
}

/// A line that forms its own template: ten words made of letters from `i` (no masking applies) and
/// no word shared with another line.
fn distinct_line(i: usize) -> String {
    let word = |k: usize| {
        let mut n = i * 10 + k;
        let mut w = String::from("w");
        loop {
            w.push((b'a' + (n % 26) as u8) as char);
            n /= 26;
            if n == 0 {
                break w;
            }
        }
    };
    (0..10).map(word).collect::<Vec<_>>().join(" ")
}

/// CPU time of this thread, so that other processes on a shared machine do not count.
fn thread_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Steady state when `n` distinct templates share one leaf (a leading number routes every line to
/// the `<*>` child; four words of letters differ from template to template, the rest agree), as a
/// system with many messages of one length and no routing word has: lines per CPU-second.
fn crowded_leaf(n: usize) -> Option<f64> {
    let word = |i: usize, salt: u8| {
        let mut w = String::from(char::from(b'a' + salt));
        let mut k = i;
        loop {
            w.push(char::from(b'a' + (k % 26) as u8));
            k /= 26;
            if k == 0 {
                break w;
            }
        }
    };
    let lines: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "7 {} {} {} {} from 10.0.0.{} port {}",
                word(i, 0),
                word(i, 1),
                word(i, 2),
                word(i, 3),
                i % 250,
                1000 + i
            )
        })
        .collect();
    let mut miner = TemplateMiner::new(MinerConfig::default()).ok()?;
    for line in &lines {
        let _ = black_box(miner.add(line).id);
    }
    let passes = 1_000_000 / n;
    let start = thread_cpu_secs()?;
    for _ in 0..passes {
        for line in &lines {
            let _ = black_box(miner.add(line).id);
        }
    }
    let cpu = thread_cpu_secs()? - start;
    (cpu > 0.0).then(|| (passes * n) as f64 / cpu)
}

fn main() {
    for n in [20, 200, 4000] {
        match crowded_leaf(n) {
            Some(rate) => {
                println!("{n} distinct templates in one leaf: {rate:.0} lines per CPU-second")
            }
            None => println!("{n} distinct templates in one leaf: n/a"),
        }
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let lines: Vec<String> = (0..200_000).map(|_| hdfs_like(&mut rng)).collect();
    let mut miner = TemplateMiner::new(MinerConfig::default()).expect("default config is valid");
    // Warm-up: templates settle, buffers reach their final size.
    for line in &lines[..20_000] {
        let _ = black_box(miner.add(line).id);
    }
    let rounds = 5;
    let mut best = 0f64;
    let cpu_start = thread_cpu_secs();
    for _ in 0..rounds {
        let start = Instant::now();
        for line in &lines {
            let _ = black_box(miner.add(line).id);
        }
        best = best.max(lines.len() as f64 / start.elapsed().as_secs_f64());
    }
    let per_cpu = match (cpu_start, thread_cpu_secs()) {
        (Some(a), Some(b)) if b > a => format!("{:.0}", (rounds * lines.len()) as f64 / (b - a)),
        _ => "n/a".to_string(),
    };
    let avg_len = lines.iter().map(String::len).sum::<usize>() as f64 / lines.len() as f64;
    println!(
        "steady state: {best:.0} lines/s wall (best of {rounds} x {} lines), {per_cpu} lines per CPU-second; \
         {avg_len:.0} bytes/line, {} templates",
        lines.len(),
        miner.len()
    );
    let start = Instant::now();
    for line in &lines {
        let _ = black_box(miner.match_line(line).map(|t| t.id));
    }
    println!(
        "match_line: {:.0} lines/s",
        lines.len() as f64 / start.elapsed().as_secs_f64()
    );

    let before = rss_bytes();
    let config = MinerConfig {
        max_templates: 10_000,
        ..MinerConfig::default()
    };
    let mut big = TemplateMiner::new(config.clone()).expect("valid");
    let start = Instant::now();
    for i in 0..10_000 {
        let _ = big.add(&distinct_line(i));
    }
    let fill = start.elapsed();
    let after = rss_bytes();
    let bytes = big.to_bytes();
    println!(
        "10k templates: {} live, filled in {:.2} s, RSS growth {} MiB, saved state {:.2} MiB",
        big.len(),
        fill.as_secs_f64(),
        match (before, after) {
            (Some(b), Some(a)) => format!("{:.2}", a.saturating_sub(b) as f64 / (1 << 20) as f64),
            _ => "n/a".to_string(),
        },
        bytes.len() as f64 / (1 << 20) as f64
    );
    let start = Instant::now();
    let back = TemplateMiner::from_bytes(config, &bytes).expect("state loads");
    println!(
        "load of the 10k-template state: {:.3} s, {} templates",
        start.elapsed().as_secs_f64(),
        back.len()
    );
}
