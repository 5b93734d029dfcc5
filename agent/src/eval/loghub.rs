//! `vigil eval loghub` (work in progress).

#[derive(Debug, clap::Args)]
pub struct LoghubArgs {
    /// The benchmark's data directory.
    #[arg(long)]
    pub data: std::path::PathBuf,
}

pub fn run(args: LoghubArgs) -> anyhow::Result<()> {
    anyhow::bail!(
        "vigil eval loghub is not built yet (data: {})",
        args.data.display()
    )
}
