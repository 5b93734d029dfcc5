//! Where the shipped detector loses to two baselines, window by window: for each labelled window of a
//! NAB-layout corpus, the first detection of vigil and of two detectors whose scores were dumped by
//! `nab_baselines` (`DUMP_DIR`), each at its own corpus-optimised standard threshold (and vigil also at the
//! shipped default), with the value NAB gives that detection; then each detector's false-positive
//! clusters with their cost, and whether the others fire near them. Each window also gets a few
//! shape figures (level, spread and step-to-step spread in the window against the stretch before it) so
//! that losses can be grouped by mechanism rather than by file.
//!
//! Usage: `cargo run --release -p vigil-detect --example nab_gap -- DIR NAME_A=SCORES_DIR_A
//! NAME_B=SCORES_DIR_B`. Diagnosis only (issue #13, steps 240-249); never part of the shipped detector.

use std::path::Path;

use vigil_detect::nab::{self, NabSeries};
use vigil_detect::series::{DetectorConfig, Part, DEFAULT_THRESHOLD};

/// NAB's standard-profile value of a detection at row `i` (`None` inside the probation).
fn value_at(s: &NabSeries, i: usize) -> f64 {
    let max_tp = nab::scaled_sigmoid(-1.0);
    let mut prev: Option<(usize, usize)> = None;
    for &(a, b) in &s.windows {
        if i >= a && i <= b {
            let w = (b - a + 1) as f64;
            return nab::scaled_sigmoid(-((b as f64) - (i as f64) + 1.0) / w) / max_tp;
        }
        if b < i {
            prev = Some((b, b - a + 1));
        }
    }
    let u = match prev {
        Some((right, width)) if width > 1 => {
            nab::scaled_sigmoid((i - right) as f64 / (width - 1) as f64)
        }
        _ => -1.0,
    };
    u * 0.11
}

fn mean_sd(x: &[f64]) -> (f64, f64) {
    if x.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let v = x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n;
    (m, v.sqrt())
}

fn diff_sd(x: &[f64]) -> f64 {
    let d: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
    mean_sd(&d).1
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: nab_gap DIR NAME=SCORES_DIR...")?;
    let others: Vec<(String, String)> = args
        .map(|a| {
            a.split_once('=')
                .map(|(n, d)| (n.to_string(), d.to_string()))
                .ok_or_else(|| format!("nab_gap: {a:?} is not NAME=SCORES_DIR"))
        })
        .collect::<Result<_, _>>()?;
    let corpus = nab::load_corpus(Path::new(&dir))?;
    let eval = nab::evaluate(corpus, &DetectorConfig::default());
    let series: Vec<&NabSeries> = eval.runs.iter().map(|r| &r.series).collect();
    // Detector scores: vigil first, then the dumped ones.
    let mut names = vec!["vigil".to_string()];
    let mut scores: Vec<Vec<Vec<f64>>> = vec![eval.runs.iter().map(|r| r.scores()).collect()];
    for (n, d) in &others {
        names.push(n.clone());
        scores.push(
            series
                .iter()
                .map(|s| nab::read_scores(Path::new(d), s).map_err(|e| format!("nab_gap: {e}")))
                .collect::<Result<_, _>>()?,
        );
    }
    let mut thresholds = Vec::new();
    for sc in &scores {
        let results: Vec<nab::Scores<'_>> = series
            .iter()
            .zip(sc)
            .map(|(s, v)| (*s, v.as_slice()))
            .collect();
        let p = nab::score_corpus(&results, None);
        thresholds.push(p[0].threshold);
    }
    // vigil at the shipped default as a fourth column.
    names.push("vigil@0.5".into());
    scores.push(scores[0].clone());
    thresholds.push(DEFAULT_THRESHOLD);
    println!(
        "thresholds: {}",
        names
            .iter()
            .zip(&thresholds)
            .map(|(n, t)| format!("{n} {t:.4}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("WINDOWS: file | window a-b (w) | per detector: first detection as fraction of width (value) | vigil part at its first | shape: level z, sd ratio, diff-sd ratio (window vs the w points before)");
    for (k, s) in series.iter().enumerate() {
        let probation = nab::probationary_length(s.values.len());
        for (wi, &(a, b)) in s.windows.iter().enumerate() {
            let w = b - a + 1;
            let mut cols = Vec::new();
            for (d, sc) in scores.iter().enumerate() {
                let t = thresholds[d];
                let first = (a.max(probation)..=b).find(|&i| sc[k][i] >= t);
                cols.push(match first {
                    Some(i) => {
                        format!("{:>5.2}({:+.2})", (i - a) as f64 / w as f64, value_at(s, i))
                    }
                    None => "  miss      ".to_string(),
                });
            }
            let vfirst = (a.max(probation)..=b).find(|&i| scores[0][k][i] >= thresholds[0]);
            let part = vfirst.map_or(Part::None, |i| eval.runs[k].observations[i].part);
            let before = &s.values[a.saturating_sub(w)..a];
            let inside = &s.values[a..=b];
            let (mb, sb) = mean_sd(before);
            let (mi, si) = mean_sd(inside);
            let z = (mi - mb) / sb.max(1e-12);
            println!(
                "{:<55} w{wi} {a}-{b} ({w}) | {} | {:<14} | z {:+.1} sd x{:.2} dsd x{:.2}",
                s.name,
                cols.join(" "),
                part.as_str(),
                z,
                si / sb.max(1e-12),
                diff_sd(inside) / diff_sd(before).max(1e-12),
            );
        }
    }
    println!("FALSE POSITIVES: file | detector | clusters (first row, rows over, cost) | others within 100 rows");
    for (k, s) in series.iter().enumerate() {
        let probation = nab::probationary_length(s.values.len());
        for (d, sc) in scores.iter().enumerate() {
            let t = thresholds[d];
            let fp: Vec<usize> = (probation..s.values.len())
                .filter(|&i| !s.label(i) && sc[k][i] >= t)
                .collect();
            if fp.is_empty() {
                continue;
            }
            let mut clusters: Vec<(usize, usize, f64)> = Vec::new();
            for &i in &fp {
                match clusters.last_mut() {
                    Some(c) if i - (c.0 + c.1) < 20 => {
                        c.1 = i - c.0 + 1;
                        c.2 += value_at(s, i);
                    }
                    _ => clusters.push((i, 1, value_at(s, i))),
                }
            }
            let total: f64 = clusters.iter().map(|c| c.2).sum();
            let desc: Vec<String> = clusters
                .iter()
                .map(|&(i, n, cost)| {
                    let near: Vec<&str> = (0..scores.len() - 1)
                        .filter(|&o| o != d && !(d == 3 && o == 0))
                        .filter(|&o| {
                            (i.saturating_sub(100)..(i + n + 100).min(s.values.len()))
                                .any(|j| !s.label(j) && scores[o][k][j] >= thresholds[o])
                        })
                        .map(|o| names[o].as_str())
                        .collect();
                    let part = if d == 0 || d == 3 {
                        eval.runs[k].observations[i].part.as_str()
                    } else {
                        ""
                    };
                    format!("{i}+{n} {cost:.2} {part} [{}]", near.join(","))
                })
                .collect();
            println!(
                "{:<55} {:<10} total {:.2}: {}",
                s.name,
                names[d],
                total,
                desc.join("; ")
            );
        }
    }
    Ok(())
}
