//! Scores simple open-source detectors from NAB's scoreboard on NAB-layout corpora with the same scorer as
//! `vigil eval nab` (`vigil_detect::nab`), so that the shipped `SeriesDetector` can be compared with them on
//! the development corpora (issue #13: the held-out KPI corpus must beat the best of NAB's open-source
//! detectors there).
//!
//! The detectors are reimplemented here from their published descriptions (NAB's detector documentation,
//! Wang et al. 2011), not translated from NAB's code, so they are close to, not identical with, NAB's
//! results; BENCHMARKS.md says how close on the 32 NAB files where NAB's own figure is known.
//!
//! Usage: `cargo run --release -p vigil-detect --example nab_baselines -- DIR...`.

use std::path::Path;

use vigil_detect::nab::{self, NabSeries, ProfileScore};

/// The upper tail probability of the standard normal at `z`.
///
/// vigil-detect carries no special-function crate and an example is not worth adding one for: this is the
/// Chebyshev fit of erfc from Numerical Recipes (fractional error below 1.2e-7 everywhere), which is ample
/// for ranking scores.
fn normal_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    let erfc = if x >= 0.0 { erfc } else { 2.0 - erfc };
    0.5 * erfc
}

/// NAB's "windowedGaussian": each value is scored by one minus the tail probability of its distance from
/// the mean of a window of earlier values, under a Gaussian with that window's mean and (population)
/// standard deviation. The window grows to 6,400 values, updating its statistics at every value; after
/// that it slides in steps of 100 values (the newest 100 replace the oldest 100). The first value, with an
/// empty window, scores 0; a window with no spread is given a tiny one (1e-6), as NAB documents.
fn windowed_gaussian(values: &[f64]) -> Vec<f64> {
    const WINDOW: usize = 6400;
    const STEP: usize = 100;
    let stats = |w: &[f64]| {
        let n = w.len() as f64;
        let mean = w.iter().sum::<f64>() / n;
        let var = w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let sd = var.sqrt();
        (mean, if sd == 0.0 { 1e-6 } else { sd })
    };
    let mut window: Vec<f64> = Vec::with_capacity(WINDOW);
    let mut step: Vec<f64> = Vec::with_capacity(STEP);
    let (mut mean, mut sd) = (0.0, 1.0);
    values
        .iter()
        .map(|&v| {
            let score = if window.is_empty() {
                0.0
            } else {
                1.0 - normal_tail((v - mean).abs() / sd)
            };
            if window.len() < WINDOW {
                window.push(v);
                (mean, sd) = stats(&window);
            } else {
                step.push(v);
                if step.len() == STEP {
                    window.drain(..STEP);
                    window.append(&mut step);
                    (mean, sd) = stats(&window);
                }
            }
            score
        })
        .collect()
}

/// NAB's "relativeEntropy" (Wang et al. 2011, the relative-entropy test): values are quantised into 5 bins
/// spanning the file's minimum to maximum (NAB hands every detector the file's range); at every point the
/// histogram of the last 52 quantised values is compared with each hypothesis (a histogram seen before) by
/// the relative entropy D(window || hypothesis). `2 W D` is asymptotically chi-square with bins - 1
/// degrees of freedom under the hypothesis, so a window agrees with the hypothesis when it lies below that
/// distribution's 0.99 quantile (13.277 for 4 degrees of freedom); among the agreeing hypotheses the
/// closest is taken. A window that agrees with none becomes a new hypothesis and is anomalous (score 1); a
/// window whose agreeing hypothesis has, counting this window, agreed at most `c_th` times is anomalous too
/// (with NAB's `c_th` = 1 that never happens, so only new hypotheses score; `RE_C_TH` overrides it).
fn relative_entropy(values: &[f64]) -> Vec<f64> {
    const W: usize = 52;
    const BINS: usize = 5;
    // chi2.isf(0.01, 4)
    const T: f64 = 13.276_704_135_987_6;
    let c_th: u32 = std::env::var("RE_C_TH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let step = (max - min) / BINS as f64;
    // The bin of a value: ceil((v - min) / step), clamped to the last bin (a histogram of the ceilings over
    // [0, BINS] in BINS unit bins, the last one closed): bin 0 holds only the file's minimum and the top two
    // fifths of the range share the last bin. Odd, but it is what the described quantisation does.
    let bin = |v: f64| -> usize {
        if step <= 0.0 {
            return 0;
        }
        let c = ((v - min) / step).ceil();
        (c.max(0.0) as usize).min(BINS - 1)
    };
    let bins: Vec<usize> = values.iter().map(|&v| bin(v)).collect();
    let mut hypotheses: Vec<([f64; BINS], u32)> = Vec::new();
    let mut counts = [0usize; BINS];
    let mut out = Vec::with_capacity(values.len());
    for i in 0..values.len() {
        counts[bins[i]] += 1;
        if i >= W {
            counts[bins[i - W]] -= 1;
        }
        if i + 1 < W {
            out.push(0.0);
            continue;
        }
        let p: [f64; BINS] = std::array::from_fn(|k| counts[k] as f64 / W as f64);
        let mut best: Option<(usize, f64)> = None;
        for (h, (q, _)) in hypotheses.iter().enumerate() {
            let mut d = 0.0;
            for k in 0..BINS {
                if p[k] > 0.0 {
                    d += if q[k] > 0.0 {
                        p[k] * (p[k] / q[k]).ln()
                    } else {
                        f64::INFINITY
                    };
                }
            }
            let stat = 2.0 * W as f64 * d;
            if stat < T && best.is_none_or(|(_, b)| stat < b) {
                best = Some((h, stat));
            }
        }
        let score = if hypotheses.is_empty() {
            // The first full window is the first hypothesis, not an anomaly.
            hypotheses.push((p, 1));
            0.0
        } else {
            match best {
                Some((h, _)) => {
                    hypotheses[h].1 += 1;
                    if hypotheses[h].1 <= c_th {
                        1.0
                    } else {
                        0.0
                    }
                }
                None => {
                    hypotheses.push((p, 1));
                    1.0
                }
            }
        };
        out.push(score);
    }
    out
}

struct Detector {
    name: &'static str,
    run: fn(&[f64]) -> Vec<f64>,
    /// Fixed thresholds to report besides NAB's optimised one, with why each is natural for the detector.
    defaults: &'static [(f64, &'static str)],
}

const DETECTORS: &[Detector] = &[
    Detector {
        name: "windowedGaussian",
        run: windowed_gaussian,
        defaults: &[
            (0.5, "0.5 (every score is >= 0.5)"),
            (0.998_650_1, "3 sigma (0.99865)"),
        ],
    },
    Detector {
        name: "relativeEntropy",
        run: relative_entropy,
        defaults: &[(0.5, "0.5 (scores are 0 or 1)")],
    },
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dirs: Vec<String> = std::env::args().skip(1).collect();
    if dirs.is_empty() {
        return Err("usage: nab_baselines DIR... (NAB-layout corpora)".into());
    }
    let corpora: Vec<(String, Vec<NabSeries>)> = dirs
        .iter()
        .map(|d| {
            let p = Path::new(d);
            let name = p
                .file_name()
                .map_or(d.clone(), |n| n.to_string_lossy().into_owned());
            nab::load_corpus(p).map(|s| (name, s))
        })
        .collect::<Result<_, _>>()?;
    let only = std::env::var("DETECTORS").ok();
    for det in DETECTORS {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|x| x == det.name))
        {
            continue;
        }
        println!("== {}  [standard low_FP low_FN]", det.name);
        for (name, series) in &corpora {
            let scores: Vec<Vec<f64>> = series.iter().map(|s| (det.run)(&s.values)).collect();
            let results: Vec<nab::Scores<'_>> = series
                .iter()
                .zip(&scores)
                .map(|(s, sc)| (s, sc.as_slice()))
                .collect();
            let line = |label: &str, o: &[ProfileScore]| {
                println!(
                    "  {:<36} {:>6.1} {:>6.1} {:>6.1} @{:.4}",
                    label, o[0].normalized, o[1].normalized, o[2].normalized, o[0].threshold
                )
            };
            println!("{name} ({} files)", series.len());
            line("all, optimised", &nab::score_corpus(&results, None));
            for &(t, why) in det.defaults {
                line(
                    &format!("all, at {why}"),
                    &nab::score_corpus(&results, Some(t)),
                );
            }
            let cats = nab::score_by_category(&results, det.defaults[0].0);
            if cats.len() > 1 {
                for (c, o, _) in &cats {
                    if o[0].normalized.is_finite() {
                        line(&format!("{c}, optimised"), o);
                    }
                }
            }
        }
    }
    Ok(())
}
