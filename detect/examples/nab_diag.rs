//! Where a corpus' windows are won or lost: for each window of each file, the best score inside it, where
//! it falls and which part of the detector gave it, and the first point at or above each threshold; then
//! the points over each threshold outside every window (after the probation). Usage: `cargo run --release
//! -p vigil-detect --example nab_diag -- DIR [FILE_FILTER] [THRESHOLD...]` (thresholds default to the
//! shipped default only).

use vigil_detect::nab;
use vigil_detect::series::{DetectorConfig, DEFAULT_THRESHOLD};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or("usage: nab_diag DIR [FILE_FILTER] [THRESHOLD...]")?;
    let filter = args.next().unwrap_or_default();
    let mut thresholds: Vec<f64> = args.map(|a| a.parse()).collect::<Result<_, _>>()?;
    if thresholds.is_empty() {
        thresholds.push(DEFAULT_THRESHOLD);
    }
    let corpus = nab::load_corpus(std::path::Path::new(&dir))?;
    let eval = nab::evaluate(corpus, &DetectorConfig::default());
    for run in eval.runs.iter().filter(|r| r.series.name.contains(&filter)) {
        let s = run.scores();
        let probation = nab::probationary_length(s.len());
        println!(
            "{} ({} points, probation {probation})",
            run.series.name,
            s.len()
        );
        for &(a, b) in &run.series.windows {
            let best = (a..=b).max_by(|&i, &j| s[i].total_cmp(&s[j])).unwrap_or(a);
            let first: Vec<String> = thresholds
                .iter()
                .map(|&t| match (a..=b).find(|&i| s[i] >= t) {
                    Some(i) => format!("{t}: +{}", i - a),
                    None => format!("{t}: none"),
                })
                .collect();
            println!(
                "  window {a}-{b} ({} points): best {:.3} at +{} ({}); first at {}",
                b - a + 1,
                s[best],
                best - a,
                run.observations[best].part.as_str(),
                first.join(", ")
            );
        }
        let outside: Vec<usize> = thresholds
            .iter()
            .map(|&t| {
                (probation..s.len())
                    .filter(|&i| !run.series.label(i) && s[i] >= t)
                    .count()
            })
            .collect();
        println!("  points over {thresholds:?} outside the windows: {outside:?}");
    }
    Ok(())
}
