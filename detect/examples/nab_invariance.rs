//! Does the series detector's score survive the ways another KPI corpus may record the same metrics?
//! Each NAB-layout corpus is scored as `nab_cv` scores it (the shipped detector, NAB's scorer, standard
//! profile, at the optimised threshold and at the shipped default), once as published and once per
//! transform of every file's values: scaled (x 1e-3, x 1e3), offset (+1e6, minus the file's median),
//! min-max normalised to [0, 1] and z-scored over the whole file (as dataset publishers do, offline),
//! and rounded to whole numbers after min-max scaling to 0..100 (timestamps and labels unchanged); and
//! per transform of every file's time axis, values unchanged: timestamps stretched about the first one
//! (`t*0.2`: five-minute data read as one-minute; `t*12`: as hourly), jittered (each timestamp moved by a
//! pseudo-random amount within +-20 % of the file's median interval, order kept), with gaps (runs of 1 to
//! 20 rows dropped, about 2 % of the rows, only outside the labelled windows, which are mapped to the rows
//! that remain) and with repeats (about 1 % of the rows sent twice, same timestamp and value; a window
//! holding a repeated row grows by it). The windows are row ranges, so stretching and jitter leave them
//! on the same rows; NAB's scorer counts rows, not seconds. The pseudo-random draws are a fixed hash of
//! the row number: every run and every file gets the same ones.
//! A detector that generalises scores (nearly) the same under any positive affine map of the values and
//! under these time transforms; the rounding is a harder case (a coarser series, and one that looks like
//! a count).
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

/// The transforms, identity first: of the values, then of the time axis.
const TRANSFORMS: [&str; 13] = [
    "identity", "x*1e-3", "x*1e3", "x+1e6", "x-median", "minmax", "zscore", "round100", "t*0.2",
    "t*12", "jitter", "gaps", "repeats",
];

/// A uniform draw in [0, 1) for row `i` of stream `seed` (splitmix64's finaliser: fixed, so every run
/// and file sees the same draws).
fn draw(seed: u64, i: usize) -> f64 {
    let mut z = (i as u64)
        .wrapping_add(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Applies transform `name` to one file: the values ([`transform`]) or the time axis and windows.
fn apply(name: &str, s: &NabSeries) -> NabSeries {
    let t = &s.timestamps;
    let t0 = t.first().copied().unwrap_or(0);
    let stretch = |k: f64| -> Vec<i64> {
        t.iter()
            .map(|&x| t0 + (k * (x - t0) as f64).round() as i64)
            .collect()
    };
    match name {
        "t*0.2" => NabSeries {
            timestamps: stretch(0.2),
            ..s.clone()
        },
        "t*12" => NabSeries {
            timestamps: stretch(12.0),
            ..s.clone()
        },
        "jitter" => {
            let mut gaps: Vec<i64> = t
                .windows(2)
                .map(|w| w[1] - w[0])
                .filter(|&d| d > 0)
                .collect();
            gaps.sort_unstable();
            let median = gaps.get(gaps.len() / 2).copied().unwrap_or(0) as f64;
            let mut out: Vec<i64> = Vec::with_capacity(t.len());
            for (i, &x) in t.iter().enumerate() {
                let mut y = x + ((2.0 * draw(1, i) - 1.0) * 0.2 * median).round() as i64;
                // Order kept: a row after its predecessor in the file stays after it (rows that repeat
                // or step back in the file keep doing so).
                if let Some(&prev) = out.last() {
                    if i > 0 && x > t[i - 1] && y <= prev {
                        y = prev + 1;
                    }
                }
                out.push(y);
            }
            NabSeries {
                timestamps: out,
                ..s.clone()
            }
        }
        "gaps" => {
            // Runs start with probability 2 % / 10.5 (the mean run) at rows outside every window whose
            // whole run stays outside; never at row 0.
            let n = t.len();
            let mut keep = vec![true; n];
            let mut i = 1;
            while i < n {
                let len = 1 + (draw(3, i) * 20.0) as usize;
                let end = (i + len).min(n) - 1;
                let clear = !s.windows.iter().any(|&(a, b)| a <= end && i <= b);
                if draw(2, i) < 0.02 / 10.5 && clear {
                    keep[i..=end].iter_mut().for_each(|k| *k = false);
                    i = end + 1;
                } else {
                    i += 1;
                }
            }
            remap(s, |i| usize::from(keep[i]))
        }
        "repeats" => remap(s, |i| if draw(4, i) < 0.01 { 2 } else { 1 }),
        _ => NabSeries {
            values: transform(name, &s.values),
            ..s.clone()
        },
    }
}

/// Rebuilds `s` with row `i` sent `copies(i)` times (0 drops it), each window mapped to the rows its own
/// rows became.
fn remap(s: &NabSeries, copies: impl Fn(usize) -> usize) -> NabSeries {
    let n = s.timestamps.len();
    // first[i]: the new index of row i's first copy; first[n]: the new length.
    let mut first = Vec::with_capacity(n + 1);
    let (mut timestamps, mut values) = (Vec::new(), Vec::new());
    for i in 0..n {
        first.push(timestamps.len());
        for _ in 0..copies(i) {
            timestamps.push(s.timestamps[i]);
            values.push(s.values[i]);
        }
    }
    first.push(timestamps.len());
    let windows = s
        .windows
        .iter()
        .map(|&(a, b)| (first[a], first[b + 1] - 1))
        .collect();
    NabSeries {
        name: s.name.clone(),
        timestamps,
        values,
        windows,
    }
}

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
                    "burst_fano" => tuning.burst_fano = v,
                    "burst_grid" => tuning.burst_grid = v,
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
            let series: Vec<NabSeries> = corpus.iter().map(|s| apply(t, s)).collect();
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
