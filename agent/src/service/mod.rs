//! The running agent: loads the config, builds and starts the graph, and reacts to signals. SIGTERM and
//! SIGINT stop it gracefully within the shutdown timeout; SIGHUP reloads the config, keeping the ports
//! of receivers whose config did not change, and a bad new config is refused while the old one runs.

pub mod graph;
pub mod status;

use crate::config::{load, Config};
use crate::registry::Registry;
use graph::{Graph, ReceiverNode};
use status::Status;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use vigil_core::{ComponentId, Extension, Host, Signal};

/// Where the config comes from, kept so that SIGHUP can read it again.
#[derive(Debug, Clone)]
pub struct Sources {
    pub uris: Vec<String>,
    pub sets: Vec<String>,
}

/// Loads, merges, expands and validates. On failure, every problem as a line of text.
pub fn load_config(
    sources: &Sources,
    registry: &Registry,
) -> Result<(Config, Vec<String>), Vec<String>> {
    let mut warnings = Vec::new();
    let root =
        load::load(&sources.uris, &sources.sets, &mut warnings).map_err(|e| vec![e.to_string()])?;
    match Config::from_value(&root, registry) {
        Ok(c) => {
            profiles_gate(&c, &mut warnings)?;
            Ok((c, warnings))
        }
        Err(errs) => Err(errs.iter().map(ToString::to_string).collect()),
    }
}

/// otelcol's feature gate for the profiles signal. otelcol refuses a `profiles` pipeline unless
/// started with `--feature-gates=service.profilesSupport`; the configs that have one are published
/// for collectors started that way. vigil runs them either way, so that `vigil validate` and a
/// command line without the flag accept them too, and warns when the flag is missing (the config
/// is then not one otelcol would run as started); a gate turned off with `-service.profilesSupport`
/// is honoured, as otelcol does.
fn profiles_gate(c: &Config, warnings: &mut Vec<String>) -> Result<(), Vec<String>> {
    const GATE: &str = "service.profilesSupport";
    let Some(p) = c.pipelines.iter().find(|p| p.signal == Signal::Profiles) else {
        return Ok(());
    };
    match crate::extensions::zpages::feature_gate(GATE) {
        Some(true) => Ok(()),
        Some(false) => Err(vec![format!(
            "service::pipelines::{}: profiles pipelines are turned off by --feature-gates=-{GATE}",
            p.id
        )]),
        None => {
            warnings.push(format!(
                "service::pipelines::{}: otelcol runs profiles pipelines only with \
                 --feature-gates={GATE}; vigil runs them without it",
                p.id
            ));
            Ok(())
        }
    }
}

pub struct Service {
    registry: Registry,
    sources: Sources,
    graph: Option<Graph>,
    host: Host,
    fatal_tx: mpsc::UnboundedSender<(ComponentId, String)>,
    fatal_rx: mpsc::UnboundedReceiver<(ComponentId, String)>,
    shutdown_timeout: Duration,
}

impl Service {
    pub fn new(registry: Registry, sources: Sources, shutdown_timeout: Duration) -> Service {
        let (fatal_tx, fatal_rx) = mpsc::unbounded_channel();
        Service {
            registry,
            sources,
            graph: None,
            host: Host::new(HashMap::new(), fatal_tx.clone()),
            fatal_tx,
            fatal_rx,
            shutdown_timeout,
        }
    }

    fn create_extensions(
        &self,
        cfg: &Config,
    ) -> anyhow::Result<Vec<(ComponentId, Arc<dyn Extension>)>> {
        let mut out = Vec::new();
        for id in &cfg.service_extensions {
            let factory = self
                .registry
                .extension(id.type_name())
                .ok_or_else(|| anyhow::anyhow!("extensions::{id}: unknown type"))?;
            let c = cfg
                .extensions
                .get(id)
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            out.push((id.clone(), factory.create(id, &c)?));
        }
        Ok(out)
    }

    /// When a stop that begins now must be over.
    fn deadline(&self) -> Instant {
        Instant::now() + self.shutdown_timeout
    }

    fn host_for(&self, exts: &[(ComponentId, Arc<dyn Extension>)]) -> Host {
        Host::new(exts.iter().cloned().collect(), self.fatal_tx.clone())
    }

    /// Builds and starts everything. On error, whatever started is stopped again.
    pub async fn start(&mut self, cfg: Config) -> anyhow::Result<()> {
        status::set(Status::Starting);
        let exts = self.create_extensions(&cfg)?;
        self.host = self.host_for(&exts);
        let mut started_exts = Vec::new();
        for (id, e) in &exts {
            if let Err(err) = e.start(&self.host).await {
                stop_extensions(&started_exts, self.deadline()).await;
                return Err(err.context(format!("extension {id} failed to start")));
            }
            started_exts.push((id.clone(), e.clone()));
        }
        let graph = match graph::build(cfg, &self.registry, exts, &mut Vec::new()) {
            Ok(g) => g,
            Err(e) => {
                stop_extensions(&started_exts, self.deadline()).await;
                return Err(e);
            }
        };
        if let Err(e) = start_graph(&graph, &self.host, self.shutdown_timeout).await {
            stop_extensions(&started_exts, self.deadline()).await;
            return Err(e);
        }
        crate::observed::global().set_config(&graph.config);
        self.graph = Some(graph);
        status::set(Status::Ready);
        tracing::info!("Everything is ready. Begin running and processing data.");
        Ok(())
    }

    /// Runs until SIGTERM or SIGINT (graceful stop, `Ok`) or a fatal component error (`Err`).
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let outcome = loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("Received SIGTERM, shutting down"); break Ok(()); }
                _ = int.recv() => { tracing::info!("Received SIGINT, shutting down"); break Ok(()); }
                _ = hup.recv() => {
                    tracing::info!("Received SIGHUP, reloading the config");
                    match self.reload().await {
                        Ok(true) => tracing::info!("Config reloaded"),
                        Ok(false) => tracing::info!("Config unchanged; nothing to reload"),
                        Err(e) => tracing::error!("Config reload refused; the previous config keeps running: {e:#}"),
                    }
                }
                Some((id, err)) = self.fatal_rx.recv() => {
                    tracing::error!(component = %id, "fatal error, shutting down: {err}");
                    break Err(anyhow::anyhow!("{id}: {err}"));
                }
            }
        };
        self.shutdown().await;
        outcome
    }

    /// Stops receivers first and extensions last, each draining into what still runs.
    pub async fn shutdown(&mut self) {
        status::set(Status::Stopping);
        let Some(graph) = self.graph.take() else {
            return;
        };
        let timeout = self.shutdown_timeout;
        let deadline = self.deadline();
        let stop = async {
            stop_receivers(graph.receivers.iter(), deadline).await;
            stop_chain(&graph, deadline).await;
            stop_extensions(&graph.extensions, deadline).await;
        };
        if tokio::time::timeout(timeout, stop).await.is_err() {
            tracing::error!(
                "shutdown did not finish within {timeout:?}; data still held in queues or batches was not delivered"
            );
        } else {
            tracing::info!("Shutdown complete.");
        }
    }

    /// Reads the config again and swaps the new graph in. `Ok(false)` when nothing changed.
    pub async fn reload(&mut self) -> anyhow::Result<bool> {
        let (cfg, warnings) = load_config(&self.sources, &self.registry)
            .map_err(|errs| anyhow::anyhow!("invalid config:\n  {}", errs.join("\n  ")))?;
        // Refuse what would fail to build before anything of the running graph is touched.
        let errs = graph::dry_run(&cfg, &self.registry);
        if !errs.is_empty() {
            anyhow::bail!("invalid config:\n  {}", errs.join("\n  "));
        }
        for w in warnings {
            tracing::warn!("{w}");
        }
        let Some(mut old) = self.graph.take() else {
            anyhow::bail!("the service is not running");
        };
        if old.config == cfg {
            self.graph = Some(old);
            return Ok(false);
        }
        if cfg.telemetry != old.config.telemetry {
            tracing::warn!("service::telemetry changes take effect only after a restart");
        }

        // Extensions are kept when their config is unchanged; otherwise the old ones stop first, since
        // the new ones usually want the same ports.
        let same_exts = cfg.extensions == old.config.extensions
            && cfg.service_extensions == old.config.service_extensions;
        let exts = if same_exts {
            old.extensions.clone()
        } else {
            stop_extensions(&old.extensions, self.deadline()).await;
            let exts = self.create_extensions(&cfg)?;
            let host = self.host_for(&exts);
            for (id, e) in &exts {
                e.start(&host)
                    .await
                    .map_err(|err| err.context(format!("extension {id} failed to start")))?;
            }
            exts
        };
        self.host = self.host_for(&exts);

        let mut keep: Vec<ReceiverNode> = std::mem::take(&mut old.receivers);
        let mut new = match graph::build(cfg, &self.registry, exts, &mut keep) {
            Ok(g) => g,
            Err(e) => {
                // Put the kept receivers back: the old graph goes on as it was.
                restore(&mut old, &mut keep, None);
                self.graph = Some(old);
                return Err(e);
            }
        };
        let mut start_error = None;
        for (i, node) in new.chain.iter().enumerate() {
            if let Err(e) = node.component.start(&self.host).await {
                let deadline = self.deadline();
                for n in new.chain[..i].iter().rev() {
                    let _ = n.component.shutdown_by(deadline).await;
                }
                start_error = Some(e.context(format!("{} failed to start", node.label)));
                break;
            }
        }
        if let Some(e) = start_error {
            restore(&mut old, &mut keep, Some(&mut new));
            self.graph = Some(old);
            return Err(e);
        }
        // The new chain runs: point kept receivers at it. From here on no request goes to the old one.
        let mut previous = Vec::new();
        for r in &mut new.receivers {
            if let Some(targets) = r.pending.take() {
                for (s, t) in targets {
                    if let Some(sw) = r.switches.get(&s) {
                        previous.push(sw.set(t));
                    }
                }
            }
        }
        // Requests that entered the old chain before the swap finish there before it is stopped;
        // otherwise they would meet a stopped exporter and be refused.
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        while previous.iter().any(|p| Arc::strong_count(p) > 1)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(previous);
        // Receivers that are gone or changed release their ports before the new ones bind them.
        stop_receivers(keep.iter(), self.deadline()).await;
        let mut failed = None;
        for r in new.receivers.iter().filter(|r| !r.kept) {
            if let Err(e) = r.receiver.start(&self.host).await {
                failed = Some(e.context(format!("receiver {} failed to start", r.id)));
                break;
            }
        }
        stop_chain(&old, self.deadline()).await;
        crate::observed::global().set_config(&new.config);
        self.graph = Some(new);
        if let Some(e) = failed {
            self.host
                .report_fatal(&ComponentId::new("service", None), format!("{e:#}"));
        }
        Ok(true)
    }
}

fn restore(old: &mut Graph, keep: &mut Vec<ReceiverNode>, new: Option<&mut Graph>) {
    old.receivers.append(keep);
    if let Some(new) = new {
        for mut r in new.receivers.drain(..) {
            if r.kept {
                r.pending = None;
                old.receivers.push(r);
            }
        }
    }
}

/// Starts the chain, then the receivers; on a failure, stops what started by `now + grace`.
async fn start_graph(g: &Graph, host: &Host, grace: Duration) -> anyhow::Result<()> {
    for (i, node) in g.chain.iter().enumerate() {
        if let Err(e) = node.component.start(host).await {
            let deadline = Instant::now() + grace;
            for n in g.chain[..i].iter().rev() {
                let _ = n.component.shutdown_by(deadline).await;
            }
            return Err(e.context(format!("{} failed to start", node.label)));
        }
    }
    for (i, r) in g.receivers.iter().enumerate() {
        if let Err(e) = r.receiver.start(host).await {
            let deadline = Instant::now() + grace;
            stop_receivers(g.receivers[..i].iter(), deadline).await;
            stop_chain(g, deadline).await;
            return Err(e);
        }
    }
    Ok(())
}

async fn stop_receivers<'a>(rs: impl Iterator<Item = &'a ReceiverNode>, deadline: Instant) {
    for r in rs {
        if let Err(e) = r.receiver.shutdown_by(deadline).await {
            tracing::warn!(receiver = %r.id, "error while stopping: {e:#}");
        }
    }
}

async fn stop_chain(g: &Graph, deadline: Instant) {
    for n in g.chain.iter().rev() {
        if let Err(e) = n.component.shutdown_by(deadline).await {
            tracing::warn!("error while stopping {}: {e:#}", n.label);
        }
    }
}

async fn stop_extensions(exts: &[(ComponentId, Arc<dyn Extension>)], deadline: Instant) {
    for (id, e) in exts.iter().rev() {
        if let Err(err) = e.shutdown_by(deadline).await {
            tracing::warn!(extension = %id, "error while stopping: {err:#}");
        }
    }
}
