//! Does the series detector's score survive the ways another KPI corpus may record the same metrics?
//! Each NAB-layout corpus is scored as `nab_cv` scores it (the shipped detector, NAB's scorer, standard
//! profile, at the optimised threshold and at the shipped default), once as published and once per
//! transform of every file's values: scaled (x 1e-3, x 1e3), offset (+1e6, minus the file's median),
//! min-max normalised to [0, 1] and z-scored over the whole file (as dataset publishers do, offline),
//! and rounded to whole numbers after min-max scaling to 0..100. Timestamps and labels are unchanged.
//! A detector that generalises scores (nearly) the same under any positive affine map of the values;
//! the rounding is a harder case (a coarser series, and one that looks like a count).
//!
//! Usage: `cargo run --release -p vigil-detect --example nab_invariance -- [--set NAME=V]...
//! [--only NAME,NAME] [--files] DIR...`. `--set` changes one of the score constants that depend on the
//! raw numbers (`burst_share`, `step_floor`, `step_span`, `season_slip`; 0 turns each rule off), to find
//! which rule a transform upsets; `--files` lists every file whose optimised score moves by more than
//! a point under a transform.

use std::path::Path;

use vigil_detect::nab::{self, NabSeries};
use vigil_detect::series::{
    DetectorConfig, SeriesDetector, Tuning, DEFAULT_THRESHOLD, DEFAULT_TUNING,
};

/// The transforms, identity first.
const TRANSFORMS: [&str; 8] = [
    "identity", "x*1e-3", "x*1e3", "x+1e6", "x-median", "minmax", "zscore", "round100",
];

/// Applies transform `name` to one file's values, using whole-file statistics where it needs them.
fn transform(name: &str, x: &[f64]) -> Vec<f64> {
    let n = x.len().max(1) as f64;
    let (lo, hi) = x
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    // A constant file maps to zeros under the normalisations (its range and spread are zero).
    let range = if hi > lo { hi - lo } else { 1.0 };
    match name {
        "x*1e-3" => x.iter().map(|v| v * 1e-3).collect(),
        "x*1e3" => x.iter().map(|v| v * 1e3).collect(),
        "x+1e6" => x.iter().map(|v| v + 1e6).collect(),
        "x-median" => {
            let mut s = x.to_vec();
            s.sort_by(f64::total_cmp);
            let m = s.get(s.len() / 2).copied().unwrap_or(0.0);
            x.iter().map(|v| v - m).collect()
        }
        "minmax" => x.iter().map(|v| (v - lo) / range).collect(),
        "zscore" => {
            let mean = x.iter().sum::<f64>() / n;
            let sd = (x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
            let sd = if sd > 0.0 { sd } else { 1.0 };
            x.iter().map(|v| (v - mean) / sd).collect()
        }
        "round100" => x
            .iter()
            .map(|v| ((v - lo) / range * 100.0).round())
            .collect(),
        _ => x.to_vec(),
    }
}

/// Standard-profile (optimised, default) of a corpus, and each file's own optimised score.
type Scored = ((f64, f64), Vec<(String, f64)>);

/// Runs the detector with `tuning` over `series` and scores it as `nab_cv` does.
fn score(series: Vec<NabSeries>, tuning: &'static Tuning) -> Scored {
    let config = DetectorConfig::default();
    let eval = nab::evaluate_with(series, || SeriesDetector::with_tuning(&config, tuning));
    let files = eval
        .runs
        .iter()
        .map(|r| {
            let s = r.scores();
            let one = [(&r.series, s.as_slice())];
            let o = nab::score_corpus(&one, None);
            (r.series.name.clone(), o[0].normalized)
        })
        .collect();
    (
        (
            eval.optimized[0].normalized,
            eval.default_threshold[0].normalized,
        ),
        files,
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut tuning = DEFAULT_TUNING;
    let mut only: Option<Vec<String>> = None;
    let mut files = false;
    let mut dirs = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--set" => {
                let spec = args.next().ok_or("--set needs NAME=VALUE")?;
                let (name, v) = spec.split_once('=').ok_or("--set: expected NAME=VALUE")?;
                let v: f64 = v.parse()?;
                match name {
                    "burst_share" => tuning.burst_share = v,
                    "step_floor" => tuning.step_floor = v,
                    "step_span" => tuning.step_span = v,
                    "season_slip" => tuning.season_slip = v,
                    _ => return Err(format!("--set: unknown constant {name}").into()),
                }
            }
            "--only" => {
                let list = args.next().ok_or("--only needs NAME,NAME")?;
                only = Some(list.split(',').map(str::to_owned).collect());
            }
            "--files" => files = true,
            _ => dirs.push(a),
        }
    }
    let tuning: &'static Tuning = Box::leak(Box::new(tuning));
    if tuning != &DEFAULT_TUNING {
        println!("tuning changed from the shipped constants: {tuning:?}");
    }
    println!(
        "standard profile, optimised / default ({DEFAULT_THRESHOLD}); change from identity in brackets"
    );
    for d in &dirs {
        let p = Path::new(d);
        let name = p
            .file_name()
            .map_or(d.clone(), |n| n.to_string_lossy().into_owned());
        let corpus = nab::load_corpus(p)?;
        println!("{name} ({} files)", corpus.len());
        let mut base: Option<Scored> = None;
        for t in TRANSFORMS {
            if t != "identity" && only.as_ref().is_some_and(|o| !o.iter().any(|x| x == t)) {
                continue;
            }
            let series: Vec<NabSeries> = corpus
                .iter()
                .map(|s| NabSeries {
                    values: transform(t, &s.values),
                    ..s.clone()
                })
                .collect();
            let (c, per_file) = score(series, tuning);
            match &base {
                None => {
                    println!("  {t:<10} {:>6.1} / {:>6.1}", c.0, c.1);
                    base = Some((c, per_file));
                }
                Some((b, base_files)) => {
                    println!(
                        "  {t:<10} {:>6.1} / {:>6.1}   ({:+.1} / {:+.1})",
                        c.0,
                        c.1,
                        c.0 - b.0,
                        c.1 - b.1
                    );
                    if files {
                        for ((f, o), (_, bo)) in per_file.iter().zip(base_files) {
                            if (o - bo).abs() > 1.0 {
                                println!("      {f:<60} {bo:>6.1} -> {o:>6.1}");
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
