//! Leave-one-dataset-out evaluation of the `TemplateMiner`'s rules on Loghub-2k: for each of the datasets
//! in DIR, the grouping rule set with the best mean GA over the *other* datasets (GA on the original
//! and the corrected ground truth, which disagree on some events, counting equally; ties: better mean
//! PA, then the earlier candidate) is chosen; then, with it, the way templates write their variables
//! (which changes no grouping) with the best mean PA on the original ground truth over the other
//! datasets (ties: corrected PA, then the simpler rules). Both are scored on the held-out one. The
//! held-out scores and their mean are what `BENCHMARKS.md` reports next to the all-in figure of the
//! default rules. Scoring is that of `vigil eval loghub` (`vigil_detect::loghub`).
//!
//! `cargo run --release -p vigil-detect --example loghub_loo -- DIR [CORRECTED_DIR]`

use std::path::PathBuf;

use vigil_detect::loghub::{discover, grouping_accuracy, load, parsing_accuracy, Dataset};
use vigil_detect::template::{MaskConfig, MinerConfig, Parts, Rules, TemplateMiner};

/// GA, PA, GA corrected, PA corrected.
type Scores = (f64, f64, f64, f64);

/// GA and PA of one configuration on one dataset (PA also on the corrected truth when given).
fn score(d: &Dataset, corrected: Option<&Dataset>, config: &MinerConfig) -> (f64, f64, f64, f64) {
    let Ok(mut miner) = TemplateMiner::new(config.clone()) else {
        return (0.0, 0.0, 0.0, 0.0);
    };
    let first: Vec<_> = d.contents.iter().map(|l| miner.add(l).id).collect();
    let mut ids = Vec::with_capacity(first.len());
    let mut texts = Vec::with_capacity(first.len());
    for id in first {
        let t = miner.get(id);
        ids.push(t.map_or(id, |t| t.id));
        texts.push(t.map_or_else(String::new, |t| t.template.to_string()));
    }
    let (ga_c, pa_c) = corrected.map_or((0.0, 0.0), |c| {
        (
            grouping_accuracy(&ids, &c.truth),
            parsing_accuracy(&texts, &c.truth),
        )
    });
    (
        grouping_accuracy(&ids, &d.truth),
        parsing_accuracy(&texts, &d.truth),
        ga_c,
        pa_c,
    )
}

fn candidates() -> Vec<(String, MinerConfig)> {
    let mut out = Vec::new();
    let base = MinerConfig::default();
    // The default first, so that it wins ties.
    out.push(("default".to_string(), base.clone()));
    for similarity in [0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9] {
        for word_similarity in [false, true] {
            for short_words in [0, 2, 3] {
                if !word_similarity && short_words > 0 {
                    continue;
                }
                for family_variable in [2, 3, 4] {
                    for (keep_words, names) in
                        [0, 1, 2].into_iter().flat_map(|k| [(k, true), (k, false)])
                    {
                        let rules = Rules {
                            word_similarity,
                            short_words,
                            family_variable,
                            keep_words,
                        };
                        let name = format!(
                            "sim={similarity} words={} short={short_words} family={family_variable} keep={keep_words} kvnames={}",
                            u8::from(word_similarity),
                            u8::from(names),
                        );
                        out.push((
                            name,
                            MinerConfig {
                                similarity,
                                rules,
                                masking: MaskConfig {
                                    key_value_names: names,
                                    ..MaskConfig::default()
                                },
                                ..base.clone()
                            },
                        ));
                    }
                }
            }
        }
    }
    out
}

/// How templates write their variables: these switches change no grouping, only the text, so they
/// are chosen after the grouping rules, on the worse of the two truths' PA (see `main`). Fewer
/// rules first, so that a tie goes to the simpler set.
fn written_candidates() -> Vec<(String, Parts)> {
    let mut out = Vec::new();
    for split in [false, true] {
        for prefix in [false, true] {
            for schemes in [false, true] {
                let name = format!(
                    "split={} prefix={} schemes={}",
                    u8::from(split),
                    u8::from(prefix),
                    u8::from(schemes)
                );
                out.push((
                    name,
                    Parts {
                        split,
                        prefix,
                        schemes,
                    },
                ));
            }
        }
    }
    out.sort_by_key(|(_, p)| u8::from(p.split) + u8::from(p.prefix) + u8::from(p.schemes));
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(
        args.first()
            .ok_or("usage: loghub_loo DIR [CORRECTED_DIR]")?,
    );
    let corrected_dir = args.get(1).map(PathBuf::from);
    let names = discover(&dir)?;
    let mut data = Vec::new();
    for n in &names {
        let d = load(&dir, n)?;
        let c = match &corrected_dir {
            Some(cd) => Some(load(cd, n)?),
            None => None,
        };
        data.push((d, c));
    }
    let cands = candidates();
    // scores[c][d] = (GA, PA, GA corrected, PA corrected)
    let scores: Vec<Vec<(f64, f64, f64, f64)>> = cands
        .iter()
        .map(|(_, cfg)| {
            data.iter()
                .map(|(d, c)| score(d, c.as_ref(), cfg))
                .collect()
        })
        .collect();
    let n = data.len() as f64;
    let mean =
        |c: usize, f: fn(&(f64, f64, f64, f64)) -> f64| scores[c].iter().map(f).sum::<f64>() / n;
    println!("all-in, candidates ranked by mean GA (original and corrected), then the default:");
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_by(|&a, &b| mean(b, |s| s.0 + s.2).total_cmp(&mean(a, |s| s.0 + s.2)));
    for &c in order.iter().chain(std::iter::once(&0)) {
        println!(
            "  GA {:.4} PA {:.4} GAc {:.4} PAc {:.4}  {}",
            mean(c, |s| s.0),
            mean(c, |s| s.1),
            mean(c, |s| s.2),
            mean(c, |s| s.3),
            cands[c].0
        );
    }
    println!(
        "\nleave-one-dataset-out (chosen on the other {}):",
        data.len() - 1
    );
    let mut tot = (0.0, 0.0, 0.0, 0.0);
    let written = written_candidates();
    // written_scores[(grouping candidate, written candidate)][dataset], filled as folds need them.
    let mut written_scores: std::collections::HashMap<(usize, usize), Vec<Scores>> =
        std::collections::HashMap::new();
    let mut folds = Vec::new();
    for (k, (d, _)) in data.iter().enumerate() {
        let rest = |c: usize, f: fn(&(f64, f64, f64, f64)) -> f64| {
            scores[c]
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != k)
                .map(|(_, s)| f(s))
                .sum::<f64>()
        };
        let mut best = 0;
        for c in 1..cands.len() {
            let (g, p) = (rest(c, |s| s.0 + s.2), rest(c, |s| s.1 + s.3));
            let (bg, bp) = (rest(best, |s| s.0 + s.2), rest(best, |s| s.1 + s.3));
            if g > bg + 1e-12 || ((g - bg).abs() <= 1e-12 && p > bp + 1e-12) {
                best = c;
            }
        }
        // Then how variables are written, with those grouping rules: the best of the two truths' worse
        // mean PA over the other datasets (ties: their sum, then the earlier candidate).
        let mut best_w = 0;
        let mut best_key = (f64::NEG_INFINITY, f64::NEG_INFINITY);
        for (w, (_, parts)) in written.iter().enumerate() {
            let row = written_scores.entry((best, w)).or_insert_with(|| {
                let cfg = MinerConfig {
                    masking: MaskConfig {
                        parts: *parts,
                        ..cands[best].1.masking.clone()
                    },
                    ..cands[best].1.clone()
                };
                data.iter()
                    .map(|(d, c)| score(d, c.as_ref(), &cfg))
                    .collect()
            });
            let sum = |f: fn(&(f64, f64, f64, f64)) -> f64| {
                row.iter()
                    .enumerate()
                    .filter(|(i, _)| *i != k)
                    .map(|(_, s)| f(s))
                    .sum::<f64>()
            };
            // Which truth the logs a user cares about would follow is unknown, so the worse of the two
            // decides, and their sum breaks ties.
            let (pa, pac) = (sum(|s| s.1), sum(|s| s.3));
            let key = (pa.min(pac), pa + pac);
            if key.0 > best_key.0 + 1e-12
                || ((key.0 - best_key.0).abs() <= 1e-12 && key.1 > best_key.1 + 1e-12)
            {
                best_w = w;
                best_key = key;
            }
        }
        let s = written_scores[&(best, best_w)][k];
        tot = (tot.0 + s.0, tot.1 + s.1, tot.2 + s.2, tot.3 + s.3);
        folds.push(format!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
            d.name, cands[best].0, written[best_w].0, s.0, s.1, s.2, s.3
        ));
    }
    println!(
        "| held out | grouping rules | written variables | GA | PA | GA corrected | PA corrected |"
    );
    println!("|---|---|---|---|---|---|---|");
    for f in &folds {
        println!("{f}");
    }
    println!(
        "| **mean** | | | **{:.3}** | {:.3} | {:.3} | {:.3} |",
        tot.0 / n,
        tot.1 / n,
        tot.2 / n,
        tot.3 / n,
    );
    println!("\nall-in, written-variable candidates with the default grouping, by mean PA:");
    let mut rows: Vec<(usize, [f64; 4])> = written
        .iter()
        .enumerate()
        .filter_map(|(w, _)| {
            let row = written_scores.get(&(0, w))?;
            let m = |f: fn(&(f64, f64, f64, f64)) -> f64| row.iter().map(f).sum::<f64>() / n;
            Some((w, [m(|s| s.0), m(|s| s.1), m(|s| s.2), m(|s| s.3)]))
        })
        .collect();
    rows.sort_by(|a, b| b.1[1].total_cmp(&a.1[1]).then(b.1[3].total_cmp(&a.1[3])));
    for (w, m) in rows {
        println!(
            "  PA {:.4} PAc {:.4} (GA {:.4} GAc {:.4})  {}",
            m[1], m[3], m[0], m[2], written[w].0
        );
    }
    Ok(())
}
