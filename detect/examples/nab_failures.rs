//! Where each corpus loses its NAB points, by failure type (cross-validation steps 90 to 95 in
//! BENCHMARKS.md): for every category of every corpus, at the shipped default threshold and at the
//! corpus' optimised one, the windows detected and missed (and how many of the missed held a score of at
//! least half the threshold), where in each detected window the first detection falls (NAB's scaled
//! sigmoid pays about 1 at a window's start, 0.86 at its middle, where the labelled point is, 0.56 three
//! quarters in and 0 at its end) and how far from the labelled point, and the false positives (how many
//! fall within one window length after a window, which NAB charges less; how many follow a held point or
//! another detection within 65 points, i.e. repeat one event), with each loss in normalised points of
//! that category and the part of the detector behind each first detection, late detection, miss and
//! false positive.
//!
//! Usage: `cargo run --release -p vigil-detect --example nab_failures -- [--set NAME=V]... DIR...`.
//! `FAIL_FILES=1` lists every late or missed window and each file's false positives at the default;
//! `FAIL_TRACE=FILE` prints each false positive of that file with the values around it, and with
//! `FAIL_AT=FROM-TO` every point of that range with its score, part, expectation and band.

use std::collections::BTreeMap;
use std::path::Path;

use vigil_detect::nab::{self, NabSeries};
use vigil_detect::series::{
    DetectorConfig, Observation, SeriesDetector, Tuning, DEFAULT_THRESHOLD, DEFAULT_TUNING,
};

#[derive(Default, Clone)]
struct Tally {
    files: usize,
    windows: usize,
    detected: usize,
    // First detection's relative position in the window: [0, .25), [.25, .5), [.5, .75), [.75, 1].
    quarter: [usize; 4],
    // Raw points lost against a detection at the window's first row.
    early_loss: f64,
    missed_near: usize, // best score in the window at least half the threshold
    fp: usize,
    fp_after: usize, // within one window length after a window
    fp_cost: f64,
    fp_part: BTreeMap<&'static str, usize>,
    first_part: BTreeMap<&'static str, usize>,
    miss_part: BTreeMap<&'static str, usize>,
    late_part: BTreeMap<&'static str, usize>,
    // Late detections (past the middle) whose window held an earlier point over 0.8x the threshold.
    late_near: usize,
    // Windows (missed, or detected after their first quarter) with a point held just under the default
    // threshold by the hold of an earlier detection before the first detection.
    held: usize,
    // False positives whose previous point was held just under the default threshold: the event that
    // started the hold was still going when the hold ran out (its repeat).
    fp_cont: usize,
    // False positives within `hold + 5` points after the previous point over the threshold or held.
    fp_near: usize,
    // First detection against the window's middle (NAB's labelled point): before it, 0 to 2 points
    // after, 3 to 10 after, later; and the raw points a detection at the middle would have added to the
    // windows detected after it (what a causal detector could still win by firing at the onset).
    vs_mid: [usize; 4],
    reachable: f64,
    // Normalisation: 100 / (perfect - null) for this category (standard profile).
    unit: f64,
}

fn tally(runs: &[(&NabSeries, &[Observation], Vec<f64>)], threshold: f64, list: bool) -> Tally {
    let p = nab::PROFILES[0];
    let max_tp = nab::scaled_sigmoid(-1.0);
    let mut t = Tally::default();
    for (s, obs, scores) in runs {
        t.files += 1;
        let probation = nab::probationary_length(scores.len());
        for &(a, b) in &s.windows {
            t.windows += 1;
            let width = (b - a + 1) as f64;
            let first = (a..=b).find(|&i| i >= probation && scores[i] >= threshold);
            let upto = first.unwrap_or(b + 1);
            if first.is_none_or(|i| i - a >= (b - a + 1) / 4)
                && (a..upto).any(|j| scores[j] == DEFAULT_THRESHOLD * 0.98)
            {
                t.held += 1;
            }
            match first {
                Some(i) => {
                    t.detected += 1;
                    let rel = (i - a) as f64 / width;
                    t.quarter[((rel * 4.0) as usize).min(3)] += 1;
                    let pos = -((b as f64) - (i as f64) + 1.0) / width;
                    let v = nab::scaled_sigmoid(pos) / max_tp;
                    t.early_loss += 1.0 - v;
                    let mid = (a + b) / 2;
                    let k = if i < mid {
                        0
                    } else if i - mid <= 2 {
                        1
                    } else if i - mid <= 10 {
                        2
                    } else {
                        3
                    };
                    t.vs_mid[k] += 1;
                    if i > mid {
                        let vm = nab::scaled_sigmoid(-((b as f64) - (mid as f64) + 1.0) / width)
                            / max_tp;
                        t.reachable += vm - v;
                    }
                    *t.first_part.entry(obs[i].part.as_str()).or_default() += 1;
                    if rel >= 0.5 {
                        *t.late_part.entry(obs[i].part.as_str()).or_default() += 1;
                        let near = (a..i).any(|j| scores[j] >= 0.8 * threshold);
                        t.late_near += usize::from(near);
                        if list {
                            println!(
                                "      late  {:<52} {a}-{b} first +{} ({:.2}) {} earlier-near {near}",
                                s.name,
                                i - a,
                                rel,
                                obs[i].part.as_str()
                            );
                        }
                    }
                }
                None => {
                    let best = (a..=b)
                        .max_by(|&i, &j| scores[i].total_cmp(&scores[j]))
                        .unwrap_or(a);
                    if scores[best] >= 0.5 * threshold {
                        t.missed_near += 1;
                    }
                    *t.miss_part.entry(obs[best].part.as_str()).or_default() += 1;
                    if list {
                        println!(
                            "      miss  {:<52} {a}-{b} best {:.3} at +{} {}",
                            s.name,
                            scores[best],
                            best - a,
                            obs[best].part.as_str()
                        );
                    }
                }
            }
        }
        if let (Ok(f), Ok(r)) = (std::env::var("FAIL_TRACE"), std::env::var("FAIL_AT")) {
            if s.name.contains(&f) {
                let (x, y) = r.split_once('-').unwrap_or(("0", "0"));
                let (x, y): (usize, usize) = (x.parse().unwrap_or(0), y.parse().unwrap_or(0));
                for i in x..=y.min(scores.len() - 1) {
                    let o = &obs[i];
                    println!(
                        "        {i} {} score {:.3} {} exp {} band {}..{}",
                        sig(s.values[i]),
                        scores[i],
                        o.part.as_str(),
                        sig(o.expected),
                        sig(o.lower),
                        sig(o.upper)
                    );
                }
            }
        }
        let fp_before = t.fp;
        let fp_parts_before = t.fp_part.clone();
        // False positives, as NAB's sweep weighs them.
        let mut prev: Option<(usize, usize)> = None;
        let mut w = 0;
        for i in 0..scores.len() {
            if let Some(&(a, b)) = s.windows.get(w) {
                if i > b {
                    prev = Some((b, b - a + 1));
                    w += 1;
                }
                if (a..=b).contains(&i) {
                    continue;
                }
            }
            if i < probation || scores[i] < threshold || s.label(i) {
                continue;
            }
            t.fp += 1;
            if std::env::var("FAIL_TRACE").is_ok_and(|f| s.name.contains(&f)) {
                let ctx: Vec<String> = (i.saturating_sub(6)..(i + 3).min(scores.len()))
                    .map(|j| sig(s.values[j]))
                    .collect();
                println!(
                    "        fp at {i} score {:.2} {} exp {} [{}]",
                    scores[i],
                    obs[i].part.as_str(),
                    sig(obs[i].expected),
                    ctx.join(" ")
                );
            }
            let held = |j: usize| scores[j] == DEFAULT_THRESHOLD * 0.98;
            if i > 0 && held(i - 1) {
                t.fp_cont += 1;
            }
            if (i.saturating_sub(65)..i).any(|j| held(j) || scores[j] >= threshold) {
                t.fp_near += 1;
            }
            *t.fp_part.entry(obs[i].part.as_str()).or_default() += 1;
            let cost = match prev {
                Some((right, width)) if width > 1 => {
                    let x = (i - right) as f64 / (width - 1) as f64;
                    if x <= 1.0 {
                        t.fp_after += 1;
                    }
                    -nab::scaled_sigmoid(x)
                }
                _ => 1.0,
            };
            t.fp_cost += cost * p.fp_weight;
        }
        if list && t.fp > fp_before {
            let mut m = t.fp_part.clone();
            for (k, v) in &fp_parts_before {
                *m.entry(k).or_default() -= v;
            }
            m.retain(|_, v| *v > 0);
            println!(
                "      fp    {:<52} {:>3} {}",
                s.name,
                t.fp - fp_before,
                fmt_map(&m)
            );
        }
    }
    let results: Vec<nab::Scores<'_>> = runs.iter().map(|(s, _, sc)| (*s, sc.as_slice())).collect();
    let norm = nab::score_corpus(&results, Some(threshold));
    // normalized = 100 (raw - null) / (perfect - null): recover the unit from one profile's figures.
    let perfect = t.windows as f64;
    let ps = norm[0];
    let null = if (ps.normalized - 100.0).abs() > 1e-9 {
        (100.0 * ps.raw - ps.normalized * perfect) / (100.0 - ps.normalized)
    } else {
        f64::NAN
    };
    t.unit = 100.0 / (perfect - null);
    t
}

fn fmt_map(m: &BTreeMap<&'static str, usize>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn print(name: &str, t: &Tally) {
    let u = t.unit;
    let missed = t.windows - t.detected;
    println!(
        "  {:<24} win {:>3} det {:>3} miss {:>3} (near {:>2}) first@q {:>2}/{:>2}/{:>2}/{:>2} late-near {:>2} held {:>2} | fp {:>4} after {:>3} cont {:>3} near {:>3} | lost: miss {:>5.1} early {:>4.1} fp {:>5.1} (pts)",
        name,
        t.windows,
        t.detected,
        missed,
        t.missed_near,
        t.quarter[0],
        t.quarter[1],
        t.quarter[2],
        t.quarter[3],
        t.late_near,
        t.held,
        t.fp,
        t.fp_after,
        t.fp_cont,
        t.fp_near,
        2.0 * missed as f64 * u,
        t.early_loss * u,
        t.fp_cost * u,
    );
    println!(
        "  {:<24}   vs label: before {} +0-2 {} +3-10 {} later {}; reachable by detecting at the label {:.1} pts",
        "",
        t.vs_mid[0],
        t.vs_mid[1],
        t.vs_mid[2],
        t.vs_mid[3],
        t.reachable * u
    );
    println!(
        "  {:<24}   first:{} late:{} miss-best:{} fp:{}",
        "",
        fmt_map(&t.first_part),
        fmt_map(&t.late_part),
        fmt_map(&t.miss_part),
        fmt_map(&t.fp_part)
    );
}

// Four significant digits: the traces read both byte counts (1e9) and standardised KPIs and ratios
// (0.3 give or take 0.01), where a fixed number of decimals hides the spike or prints noise.
fn sig(x: f64) -> String {
    let digits = if x == 0.0 || !x.is_finite() {
        0
    } else {
        (3 - x.abs().log10().floor() as i32).clamp(0, 12) as usize
    };
    format!("{x:.digits$}")
}

fn set(t: &mut Tuning, name: &str, v: f64) -> Result<(), String> {
    match name {
        "peak_half_life" => t.peak_half_life = v,
        "margin" => t.margin = v,
        "hold" => t.hold = v,
        "slow_weight" => t.slow_weight = v,
        "smooth_floor" => t.smooth_floor = v,
        "smooth_alpha" => t.smooth_alpha = v,
        _ => return Err(format!("unknown constant {name}")),
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut base = DEFAULT_TUNING;
    let mut dirs = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--set" {
            let spec = args.next().ok_or("--set needs NAME=V")?;
            let (n, v) = spec.split_once('=').ok_or("expected NAME=V")?;
            set(&mut base, n, v.parse()?)?;
        } else {
            dirs.push(a);
        }
    }
    let tuning: &'static Tuning = Box::leak(Box::new(base));
    let list = std::env::var_os("FAIL_FILES").is_some();
    for d in &dirs {
        let corpus = nab::load_corpus(Path::new(d))?;
        let config = DetectorConfig::default();
        let eval = nab::evaluate_with(corpus, || SeriesDetector::with_tuning(&config, tuning));
        let runs: Vec<(&NabSeries, &[Observation], Vec<f64>)> = eval
            .runs
            .iter()
            .map(|r| (&r.series, r.observations.as_slice(), r.scores()))
            .collect();
        let opt = eval.optimized[0].threshold;
        for (label, th) in [("default", DEFAULT_THRESHOLD), ("optimum", opt)] {
            println!(
                "{d} at {label} {th:.3}: standard {:.1}",
                if label == "default" {
                    eval.default_threshold[0].normalized
                } else {
                    eval.optimized[0].normalized
                }
            );
            print("all", &tally(&runs, th, false));
            let mut cats: Vec<&str> = runs.iter().map(|r| r.0.category_and_file().0).collect();
            cats.dedup();
            if cats.len() > 1 {
                for c in cats {
                    let part: Vec<_> = runs
                        .iter()
                        .filter(|r| r.0.category_and_file().0 == c)
                        .map(|(s, o, sc)| (*s, *o, sc.clone()))
                        .collect();
                    if part.iter().all(|r| r.0.windows.is_empty()) {
                        continue;
                    }
                    print(c, &tally(&part, th, list && label == "default"));
                }
            } else if list && label == "default" {
                tally(&runs, th, true);
            }
        }
    }
    Ok(())
}
