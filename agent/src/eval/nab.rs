//! `vigil eval nab` (work in progress).

#[derive(Debug, clap::Args)]
pub struct NabArgs {
    /// The benchmark's data directory.
    #[arg(long)]
    pub data: std::path::PathBuf,
}

pub fn run(args: NabArgs) -> anyhow::Result<()> {
    anyhow::bail!(
        "vigil eval nab is not built yet (data: {})",
        args.data.display()
    )
}
