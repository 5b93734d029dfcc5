//! Benchmark of the `filelog` read path (not a test): lines per second on one core for plain tailing,
//! tailing plus a `regex_parser`, and the `container` operator, on 200-byte lines, against
//! `cat file > /dev/null` as the floor. Run with `cargo run --release -p vigil-receivers --example
//! bench_filelog [lines]`; the figures go to BENCHMARKS.md under "Logs (filelog)".

use serde_json::json;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;
use vigil_core::otlp::logs::v1::ResourceLogs;
use vigil_core::{ComponentId, ConsumeError};
use vigil_receivers::filelog::{config, tracker::Tracker};

fn write_file(path: &std::path::Path, lines: usize, cri: bool) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    for i in 0..lines {
        let msg = format!(
            "GET /api/v1/items/{i} status=200 user=u{} latency_ms={}",
            i % 977,
            i % 113
        );
        let line = if cri {
            format!(
                "2024-03-01T10:00:00.{:09}Z stdout F {msg} ",
                i % 1_000_000_000
            )
        } else {
            format!("2024-03-01T10:00:00.{:06}Z INFO {msg} ", i % 1_000_000)
        };
        // Pad every line to 199 bytes plus the newline.
        writeln!(f, "{line:x<199}").expect("write");
    }
}

fn run(name: &str, dir: &std::path::Path, file: &str, extra: serde_json::Value, lines: usize) {
    let mut cfg =
        json!({"include": [dir.join(file).display().to_string()], "start_at": "beginning"});
    if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let id = ComponentId::parse("filelog/bench").expect("id");
    let checked = config::load(&id, &cfg).expect("config");
    let obs = vigil_core::ReceiverObs::new(&id, "file");
    let mut t = Tracker::new(Arc::new(checked), "filelog/bench", None, obs);
    let mut n = 0usize;
    let mut sink = |b: Vec<ResourceLogs>| -> Result<(), ConsumeError> {
        n += b
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum::<usize>();
        Ok(())
    };
    let start = Instant::now();
    t.poll(&mut sink);
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(n, lines, "{name}: every line read");
    println!(
        "{name:<28} {lines} lines in {secs:.3}s = {:>9.0} lines/s",
        lines as f64 / secs
    );
}

fn main() {
    let lines: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    write_file(&dir.path().join("app.log"), lines, false);
    write_file(&dir.path().join("cri.log"), lines, true);
    let start = Instant::now();
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cat {} > /dev/null",
            dir.path().join("app.log").display()
        ))
        .status()
        .expect("cat");
    assert!(st.success());
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{:<28} {lines} lines in {secs:.3}s = {:>9.0} lines/s",
        "cat > /dev/null",
        lines as f64 / secs
    );
    run("tailing", dir.path(), "app.log", json!({}), lines);
    run(
        "tailing + regex_parser",
        dir.path(),
        "app.log",
        json!({"operators": [{"type": "regex_parser", "regex": r"^(?P<time>\S+) (?P<sev>[A-Z]+) (?P<method>[A-Z]+) (?P<path>\S+) status=(?P<status>\d+)"}]}),
        lines,
    );
    run(
        "container (CRI)",
        dir.path(),
        "cri.log",
        json!({"operators": [{"type": "container"}]}),
        lines,
    );
}
