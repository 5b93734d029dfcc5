//! `vigil eval`: runs the shipped detectors on public benchmark files through the same `vigil-detect`
//! API that the pipeline uses, and scores them with each benchmark's own method.

pub mod loghub;
pub mod nab;
pub mod rca;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Score the default series detector on the Numenta Anomaly Benchmark.
    Nab(nab::NabArgs),
    /// Score the log template miner on Loghub-2k datasets.
    Loghub(loghub::LoghubArgs),
    /// Run simulated fault scenarios through servicegraph, anomalydetection and correlation, and score root-cause ranking.
    Rca(rca::RcaArgs),
}

pub fn run(cmd: EvalCommand) -> anyhow::Result<()> {
    match cmd {
        EvalCommand::Nab(args) => nab::run(args),
        EvalCommand::Loghub(args) => loghub::run(args),
        EvalCommand::Rca(args) => rca::run(args),
    }
}
