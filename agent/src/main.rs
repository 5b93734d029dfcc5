//! `vigil`: a node agent that runs OpenTelemetry Collector configs and watches the data as it flows.
//! The CLI follows otelcol's: `--config` (repeatable, `file:`/`env:`/`yaml:` URIs), `--set`,
//! `validate`, `components`, plus `eval` for scoring the detectors on public benchmarks.

mod awsxray_receiver;
mod config;
mod eval;
mod extensions;
mod observed;
mod observer;
mod receiver_creator;
mod registry;
mod service;
mod telemetry;
mod telemetry_logs;
mod telemetry_metrics;

use clap::{Parser, Subcommand};
use registry::Registry;
use service::{load_config, Service, Sources};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "vigil",
    version,
    about = "vigil: an OpenTelemetry Collector-compatible node agent with local anomaly detection"
)]
struct Cli {
    /// A config source: a file path, file:PATH, env:VAR or yaml:INLINE. Repeat to merge, later wins.
    /// Without it, vigil runs its embedded default config.
    #[arg(long = "config", global = true, value_name = "URI")]
    config: Vec<String>,

    /// Set one config value, as key::path=value; applied after every --config.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,

    /// How long a graceful stop may take to drain queues and batches, as a duration (30s, 1m).
    #[arg(
        long = "shutdown-timeout",
        global = true,
        default_value = "30s",
        env = "VIGIL_SHUTDOWN_TIMEOUT"
    )]
    shutdown_timeout: String,

    /// Accepted for otelcol compatibility. The one gate vigil reads is `service.profilesSupport`:
    /// profiles pipelines run without it (with a warning) and are refused with
    /// `-service.profilesSupport`; zpages' /debug/featurez lists the gates given.
    #[arg(long = "feature-gates", global = true, hide = true)]
    feature_gates: Vec<String>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the config and exit: 0 with no output when it is good, 1 with every error when not.
    Validate,
    /// List every component type, grouped by kind, with the signals each supports.
    Components,
    /// Score the shipped detectors on public benchmark data.
    Eval {
        #[command(subcommand)]
        command: eval::EvalCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    extensions::zpages::set_feature_gates(&cli.feature_gates);
    let registry = Registry::builtin();
    let sources = Sources {
        uris: cli.config.clone(),
        sets: cli.set.clone(),
    };
    match cli.command {
        Some(Command::Components) => {
            print!("{}", registry.describe());
            ExitCode::SUCCESS
        }
        Some(Command::Validate) => {
            // Host files otelcol reads only at start are not read here (see host_files_deferred).
            vigil_core::config::set_validate_only();
            let result = load_config(&sources, &registry).and_then(|(cfg, warnings)| {
                // As otelcol's validate does: build the graph start would build, without starting it.
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| vec![format!("cannot start the async runtime: {e}")])?;
                let errors = {
                    let _in_runtime = runtime.enter();
                    service::graph::dry_run(&cfg, &registry)
                };
                if errors.is_empty() {
                    Ok(warnings)
                } else {
                    Err(errors)
                }
            });
            match result {
                Ok(warnings) => {
                    for w in warnings {
                        eprintln!("warning: {w}");
                    }
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    eprintln!("Error: invalid configuration ({} problems):", errors.len());
                    for e in errors {
                        eprintln!("  {e}");
                    }
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Eval { command }) => match eval::run(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e:#}");
                ExitCode::FAILURE
            }
        },
        None => run(registry, sources, &cli.shutdown_timeout),
    }
}

fn run(registry: Registry, sources: Sources, shutdown_timeout: &str) -> ExitCode {
    let shutdown_timeout = match vigil_core::config::parse_duration(shutdown_timeout) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("Error: --shutdown-timeout: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (cfg, warnings) = match load_config(&sources, &registry) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("Error: invalid configuration ({} problems):", errors.len());
            for e in errors {
                eprintln!("  {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    // Checked with the config already; an error here would have been reported there.
    let own_logs = telemetry_logs::check(&cfg.telemetry.logs.processors, &registry)
        .map(|p| telemetry_logs::layer(&p))
        .unwrap_or_default();
    if let Err(e) = telemetry::init_logs(&cfg.telemetry.logs, own_logs) {
        eprintln!("Error: {e}");
        return ExitCode::FAILURE;
    }
    for w in warnings {
        tracing::warn!("{w}");
    }
    match vigil_receivers::serve::raise_nofile_limit() {
        Ok((before, after)) if before != after => {
            tracing::debug!(before, after, "raised the open-file limit")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // `cgroup_runtime`'s gomaxprocs: the worker count is fixed once the runtime runs.
    if let Some(n) = extensions::cgroup_runtime::worker_threads(&cfg) {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        telemetry::init_metrics(&cfg.telemetry.metrics)?;
        let exporting = telemetry_logs::start(&registry, cfg.telemetry.resource.as_ref()).await?;
        // Checked with the config already, as the log processors above.
        let readers =
            telemetry_metrics::check(&cfg.telemetry.metrics.readers, &registry).unwrap_or_default();
        let pushing =
            telemetry_metrics::start(readers, &registry, cfg.telemetry.resource.as_ref()).await?;
        let mut svc = Service::new(registry, sources, shutdown_timeout);
        tracing::info!(version = env!("CARGO_PKG_VERSION"), "Starting vigil");
        let r = match svc.start(cfg).await {
            Ok(()) => svc.run().await,
            Err(e) => Err(e),
        };
        if let Some(x) = pushing {
            // A last export, so the final counts of a short run are not lost.
            x.stop(std::time::Instant::now() + std::time::Duration::from_secs(5))
                .await;
        }
        if let Some(x) = exporting {
            // The last own logs (the shutdown's) still go out, within a few seconds.
            x.stop(std::time::Instant::now() + std::time::Duration::from_secs(5))
                .await;
        }
        r
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
