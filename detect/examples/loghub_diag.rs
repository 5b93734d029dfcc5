//! Where the default `TemplateMiner` goes wrong on one Loghub-2k dataset: for each predicted template, the
//! ground-truth templates of its lines, worst first.
//! `cargo run --release -p vigil-detect --example loghub_diag -- DIR NAME [--pa]`

use std::collections::BTreeMap;
use std::path::PathBuf;

use vigil_detect::loghub::{evaluate, load, normalise_template};
use vigil_detect::template::MinerConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(args.first().ok_or("DIR NAME")?);
    let name = args.get(1).ok_or("DIR NAME")?;
    let pa = args.iter().any(|a| a == "--pa");
    let d = load(&dir, name)?;
    let e = evaluate(&d, &MinerConfig::default())?;
    println!("GA {:.3} PA {:.3}", e.score.ga, e.score.pa);
    // predicted template -> truth template -> (count, example)
    let mut groups: BTreeMap<String, BTreeMap<String, (usize, String)>> = BTreeMap::new();
    for ((p, t), c) in e.templates.iter().zip(&d.truth).zip(&d.contents) {
        let g = groups
            .entry(p.clone())
            .or_default()
            .entry(t.clone())
            .or_insert((0, c.clone()));
        g.0 += 1;
    }
    let mut truth_groups: BTreeMap<&String, BTreeMap<&String, usize>> = BTreeMap::new();
    for (p, t) in e.templates.iter().zip(&d.truth) {
        *truth_groups.entry(t).or_default().entry(p).or_default() += 1;
    }
    for (p, ts) in &groups {
        let wrong_pa = ts
            .keys()
            .any(|t| normalise_template(t) != normalise_template(p));
        let split = ts.keys().any(|t| truth_groups[t].len() > 1);
        if ts.len() > 1 || split || (pa && wrong_pa) {
            println!("P {p}");
            for (t, (n, ex)) in ts {
                let parts = truth_groups[t].len();
                println!("   {n:4} T {t}   [truth split in {parts}]   e.g. {ex}");
            }
        }
    }
    Ok(())
}
