//! `vigil eval loghub`: scores the default `TemplateMiner` on Loghub-2k datasets (Grouping Accuracy,
//! Parsing Accuracy, lines per second). The loading and scoring live in `vigil_detect::loghub`; this file
//! only maps the command line onto it.

use std::path::PathBuf;

use anyhow::Context;
use vigil_detect::loghub::{write_results, Report};
use vigil_detect::template::MinerConfig;

/// Arguments of `vigil eval loghub`.
#[derive(Debug, clap::Args)]
pub struct LoghubArgs {
    /// Directory holding `<Name>/<Name>_2k.log` and `<Name>/<Name>_2k.log_structured.csv` (or the
    /// corrected set's `_structured_corrected.csv`) for each dataset.
    #[arg(long)]
    pub data: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write `<Name>_2k.log_structured.csv` (LineId,Content,EventId,EventTemplate) per dataset here,
    /// in the logparser benchmark's format.
    #[arg(long, value_name = "OUTDIR")]
    pub results: Option<PathBuf>,
}

/// Runs the evaluation and prints the scores.
pub fn run(args: LoghubArgs) -> anyhow::Result<()> {
    let report = Report::run(&args.data, &MinerConfig::default())
        .with_context(|| format!("scoring the Loghub datasets in {}", args.data.display()))?;
    if let Some(dir) = &args.results {
        for (dataset, eval) in &report.datasets {
            write_results(dir, dataset, eval)?;
        }
    }
    if args.json {
        println!("{}", serde_json::to_string(&report.to_json())?);
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}
