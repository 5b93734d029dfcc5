//! Runs the default series detector on a NAB-layout directory and prints NAB's scores, with a per-file
//! breakdown. Usage: `cargo run --release -p vigil-detect --example nab_series -- <NAB_DIR>`.

use vigil_detect::nab::{self, PROFILES};
use vigil_detect::series::{DetectorConfig, DEFAULT_THRESHOLD};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: nab_series <NAB_DIR>")?;
    let corpus = nab::load_corpus(std::path::Path::new(&dir))?;
    for s in &corpus {
        let mut d = vigil_detect::series::SeriesDetector::default();
        for (&t, &v) in s.timestamps.iter().zip(&s.values) {
            d.observe(t as f64, v);
        }
        println!("{:55} period {:?}", s.name, d.period());
    }
    let eval = nab::evaluate(corpus, &DetectorConfig::default());
    for p in &eval.optimized {
        println!("optimized {p}");
    }
    for p in &eval.default_threshold {
        println!("default   {p}");
    }
    println!("points/s {:.0}", eval.points_per_sec);
    let t = eval.optimized[0].threshold;
    {
        let scores: Vec<Vec<f64>> = eval.runs.iter().map(|r| r.scores()).collect();
        let results: Vec<nab::Scores<'_>> = eval
            .runs
            .iter()
            .zip(&scores)
            .map(|(r, s)| (&r.series, s.as_slice()))
            .collect();
        for th in [0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9] {
            let st = nab::score_corpus(&results, Some(th));
            println!(
                "threshold {th:.2} standard {:.1} low_fp {:.1} low_fn {:.1}",
                st[0].normalized, st[1].normalized, st[2].normalized
            );
        }
    }
    let mut parts = std::collections::BTreeMap::new();
    for run in &eval.runs {
        let probation = nab::probationary_length(run.observations.len());
        for (i, o) in run.observations.iter().enumerate().skip(probation) {
            if o.score >= DEFAULT_THRESHOLD && !run.series.label(i) {
                *parts
                    .entry(format!(
                        "{}:{}",
                        run.series.name.split('/').next_back().unwrap_or(""),
                        o.part.as_str()
                    ))
                    .or_insert(0) += 1;
            }
        }
    }
    println!("false positives at the default threshold by file:part {parts:?}");
    for run in &eval.runs {
        let scores = run.scores();
        let one = [(&run.series, scores.as_slice())];
        let at_opt = nab::score_at(&one, &PROFILES[0], t);
        let at_def = nab::score_at(&one, &PROFILES[0], DEFAULT_THRESHOLD);
        let first: Vec<usize> = (0..scores.len())
            .filter(|&i| scores[i] >= t)
            .take(6)
            .collect();
        println!(
            "{:55} windows {:?} opt {:+.3} (tp {} fp {}) def {:+.3} (tp {} fp {}) first hits {:?}",
            run.series.name,
            run.series.windows,
            at_opt.score,
            at_opt.tp,
            at_opt.fp,
            at_def.score,
            at_def.tp,
            at_def.fp,
            first
        );
    }
    Ok(())
}
