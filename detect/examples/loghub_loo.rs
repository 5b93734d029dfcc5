//! Leave-one-dataset-out evaluation of the `TemplateMiner`'s rules on Loghub-2k: for each of the datasets
//! in DIR, the rule set with the best mean GA over the *other* datasets (GA on the original and the
//! corrected ground truth, which disagree on some events, counting equally; ties: better mean PA, then
//! the earlier candidate) is scored on the held-out one. The held-out scores and their mean are what
//! `BENCHMARKS.md` reports next to the all-in figure of the default rules. Scoring is that of
//! `vigil eval loghub` (`vigil_detect::loghub`).
//!
//! `cargo run --release -p vigil-detect --example loghub_loo -- DIR [CORRECTED_DIR]`

use std::path::PathBuf;

use vigil_detect::loghub::{discover, grouping_accuracy, load, parsing_accuracy, Dataset};
use vigil_detect::template::{MaskConfig, MinerConfig, Rules, TemplateMiner};

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
    println!("| held out | chosen rules | GA | PA | GA corrected | PA corrected | default GA |");
    println!("|---|---|---|---|---|---|---|");
    let mut tot = (0.0, 0.0, 0.0, 0.0);
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
        let s = scores[best][k];
        tot = (tot.0 + s.0, tot.1 + s.1, tot.2 + s.2, tot.3 + s.3);
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            d.name, cands[best].0, s.0, s.1, s.2, s.3, scores[0][k].0
        );
    }
    println!(
        "| **mean** | | **{:.3}** | {:.3} | {:.3} | {:.3} | {:.3} |",
        tot.0 / n,
        tot.1 / n,
        tot.2 / n,
        tot.3 / n,
        mean(0, |s| s.0)
    );
    Ok(())
}
