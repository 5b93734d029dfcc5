//! Scores the default `TemplateMiner` on a Loghub-2k directory, like `vigil eval loghub`, for use before
//! the agent binary builds: `cargo run --release -p vigil-detect --example eval_loghub -- DIR [--json] [--results OUTDIR]`.

use std::path::PathBuf;

use vigil_detect::loghub::Report;
use vigil_detect::template::MinerConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "../shared/data/loghub".to_string()),
    );
    let rest: Vec<String> = args.collect();
    let json = rest.iter().any(|a| a == "--json");
    let report = Report::run(&dir, &MinerConfig::default())?;
    if let Some(out) = rest
        .iter()
        .position(|a| a == "--results")
        .and_then(|i| rest.get(i + 1))
    {
        for (dataset, eval) in &report.datasets {
            vigil_detect::loghub::write_results(std::path::Path::new(out), dataset, eval)?;
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}
