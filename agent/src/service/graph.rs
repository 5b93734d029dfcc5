//! Builds the running component graph from a validated config. Processors run in pipeline order and
//! fan-out happens at the exporters. A receiver or exporter named in several pipelines is one
//! instance; a connector is one instance that is an exporter in some pipelines and feeds others.
//! Receivers reach their pipelines through a `Switch`, so that a reload can point a kept receiver
//! (and its open port) at a new graph without dropping a request.

use crate::config::{Config, Pipeline};
use crate::observed::{self, At};
use crate::registry::Registry;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use vigil_core::{
    Component, ComponentId, ConsumeError, Consumer, Exporter, Extension, FanOut, NextConsumers,
    Receiver, Signal, Telemetry,
};

/// A consumer whose target can be replaced while requests flow through it.
pub struct Switch {
    current: ArcSwap<Arc<dyn Consumer>>,
}

impl Switch {
    fn new(target: Arc<dyn Consumer>) -> Arc<Switch> {
        Arc::new(Switch {
            current: ArcSwap::from_pointee(target),
        })
    }

    /// Points the switch at `target` and returns the previous target. A request still running
    /// through the previous target holds a strong reference to it (`load_full`), so the caller can wait
    /// for `Arc::strong_count` to drop to 1 before stopping what it leads to.
    pub fn set(&self, target: Arc<dyn Consumer>) -> Arc<Arc<dyn Consumer>> {
        self.current.swap(Arc::new(target))
    }
}

#[async_trait]
impl Consumer for Switch {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let target = self.current.load_full();
        target.consume(data).await
    }
}

/// A component between the receivers and the extensions, with a label for logs.
pub struct Node {
    pub label: String,
    pub component: Arc<dyn Component>,
}

pub struct ReceiverNode {
    pub id: ComponentId,
    pub config: Value,
    pub signals: BTreeSet<Signal>,
    pub receiver: Arc<dyn Receiver>,
    pub switches: BTreeMap<Signal, Arc<Switch>>,
    /// Set on a receiver kept from the previous graph: where its switches go once the new graph runs.
    pub pending: Option<BTreeMap<Signal, Arc<dyn Consumer>>>,
    /// True for a receiver carried over from the previous graph: it is already started.
    pub kept: bool,
}

pub struct Graph {
    pub config: Config,
    pub extensions: Vec<(ComponentId, Arc<dyn Extension>)>,
    /// Dependency order: each component comes after everything it feeds. Start in this order and
    /// stop in reverse, so that a stopping component drains into consumers that still run.
    pub chain: Vec<Node>,
    pub receivers: Vec<ReceiverNode>,
}

struct Builder<'a> {
    cfg: &'a Config,
    registry: &'a Registry,
    exporters: HashMap<ComponentId, Arc<dyn Exporter>>,
    connectors: HashMap<ComponentId, Arc<dyn Consumer>>,
    heads: HashMap<String, Arc<dyn Consumer>>,
    visiting: HashSet<String>,
    chain: Vec<Node>,
}

/// Builds the graph of `cfg` as start would, extensions included, and drops it without starting
/// anything. This is what `vigil validate` and a SIGHUP reload check, so that a config they accept
/// does not then fail to start: connector cycles, and whatever a component refuses only when it is
/// created (a key the client cannot honour; on a reload, a `tls::ca_file` that cannot be read, which
/// `vigil validate` does not read, as otelcol's does not: `config::host_files_deferred`). Must run
/// inside a Tokio runtime, as some components set up their clients on creation.
pub fn dry_run(cfg: &Config, registry: &Registry) -> Vec<String> {
    let mut errors = Vec::new();
    let mut exts = Vec::new();
    for id in &cfg.service_extensions {
        let Some(factory) = registry.extension(id.type_name()) else {
            errors.push(format!("extensions::{id}: unknown type"));
            continue;
        };
        let c = cfg.extensions.get(id).cloned().unwrap_or(Value::Null);
        match factory.create(id, &c) {
            Ok(e) => exts.push((id.clone(), e)),
            Err(e) => errors.extend(e.flatten().iter().map(ToString::to_string)),
        }
    }
    if let Err(e) = build(cfg.clone(), registry, exts, &mut Vec::new()) {
        errors.push(format!("{e:#}"));
    }
    errors
}

/// Creates every component of `cfg` (nothing is started). Receivers found in `keep` with the same
/// type, config and signals are reused rather than recreated.
pub fn build(
    cfg: Config,
    registry: &Registry,
    extensions: Vec<(ComponentId, Arc<dyn Extension>)>,
    keep: &mut Vec<ReceiverNode>,
) -> anyhow::Result<Graph> {
    let mut b = Builder {
        cfg: &cfg,
        registry,
        exporters: HashMap::new(),
        connectors: HashMap::new(),
        heads: HashMap::new(),
        visiting: HashSet::new(),
        chain: Vec::new(),
    };
    for i in 0..cfg.pipelines.len() {
        b.pipeline_head(i)?;
    }

    let mut receivers = Vec::new();
    let receiver_ids: BTreeSet<&ComponentId> = cfg
        .pipelines
        .iter()
        .flat_map(|p| &p.receivers)
        .filter(|id| cfg.receivers.contains_key(id))
        .collect();
    for id in receiver_ids {
        let mut targets: BTreeMap<Signal, Vec<Arc<dyn Consumer>>> = BTreeMap::new();
        for p in cfg.pipelines.iter().filter(|p| p.receivers.contains(id)) {
            let head = b
                .heads
                .get(&p.id)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("internal: pipeline {} was not built", p.id))?;
            targets.entry(p.signal).or_default().push(head);
        }
        let targets: BTreeMap<Signal, Arc<dyn Consumer>> = targets
            .into_iter()
            .map(|(s, v)| (s, FanOut::build(v)))
            .collect();
        let config = cfg.receivers.get(id).cloned().unwrap_or(Value::Null);
        let signals: BTreeSet<Signal> = targets.keys().copied().collect();

        if let Some(pos) = keep
            .iter()
            .position(|r| &r.id == id && r.config == config && r.signals == signals)
        {
            let mut node = keep.swap_remove(pos);
            node.pending = Some(targets);
            node.kept = true;
            receivers.push(node);
            continue;
        }
        let factory = registry
            .receiver(id.type_name())
            .ok_or_else(|| anyhow::anyhow!("receivers::{id}: unknown type"))?;
        let mut next = NextConsumers::new();
        let mut switches = BTreeMap::new();
        for (s, t) in targets {
            let sw = Switch::new(t);
            next.insert(s, sw.clone());
            switches.insert(s, sw);
        }
        let receiver = factory.create(id, &config, next)?;
        receivers.push(ReceiverNode {
            id: id.clone(),
            config,
            signals,
            receiver,
            switches,
            pending: None,
            kept: false,
        });
    }
    let chain = std::mem::take(&mut b.chain);
    drop(b);
    Ok(Graph {
        config: cfg,
        extensions,
        chain,
        receivers,
    })
}

impl Builder<'_> {
    fn pipeline_head(&mut self, idx: usize) -> anyhow::Result<Arc<dyn Consumer>> {
        let p: &Pipeline = &self.cfg.pipelines[idx];
        if let Some(h) = self.heads.get(&p.id) {
            return Ok(h.clone());
        }
        if !self.visiting.insert(p.id.clone()) {
            anyhow::bail!(
                "service::pipelines::{}: connectors form a cycle through this pipeline",
                p.id
            );
        }
        let mut outs: Vec<Arc<dyn Consumer>> = Vec::new();
        for e in &p.exporters {
            if self.cfg.connectors.contains_key(e) {
                outs.push(self.connector(e)?);
            } else {
                outs.push(self.exporter(e)?);
            }
        }
        // The status page's taps (crate::observed); a config without `zpages` gets none.
        let mut next = observed::tap(self.cfg, p, At::Output, FanOut::build(outs));
        for proc_id in p.processors.iter().rev() {
            let factory = self
                .registry
                .processor(proc_id.type_name())
                .ok_or_else(|| anyhow::anyhow!("processors::{proc_id}: unknown type"))?;
            let cfg = self
                .cfg
                .processors
                .get(proc_id)
                .cloned()
                .unwrap_or(Value::Null);
            let proc = factory.create(proc_id, &cfg, p.signal, next)?;
            self.chain.push(Node {
                label: format!("processor {proc_id} in pipeline {}", p.id),
                component: proc.clone(),
            });
            next = proc;
        }
        let next = observed::tap(self.cfg, p, At::Input, next);
        self.visiting.remove(&p.id);
        self.heads.insert(p.id.clone(), next.clone());
        Ok(next)
    }

    fn exporter(&mut self, id: &ComponentId) -> anyhow::Result<Arc<dyn Consumer>> {
        if let Some(e) = self.exporters.get(id) {
            return Ok(e.clone());
        }
        let factory = self
            .registry
            .exporter(id.type_name())
            .ok_or_else(|| anyhow::anyhow!("exporters::{id}: unknown type"))?;
        let cfg = self.cfg.exporters.get(id).cloned().unwrap_or(Value::Null);
        let e = factory.create(id, &cfg)?;
        self.chain.push(Node {
            label: format!("exporter {id}"),
            component: e.clone(),
        });
        self.exporters.insert(id.clone(), e.clone());
        Ok(e)
    }

    fn connector(&mut self, id: &ComponentId) -> anyhow::Result<Arc<dyn Consumer>> {
        if let Some(c) = self.connectors.get(id) {
            return Ok(c.clone());
        }
        let mut by_signal: BTreeMap<Signal, Vec<Arc<dyn Consumer>>> = BTreeMap::new();
        let mut heads = Vec::new();
        for q in 0..self.cfg.pipelines.len() {
            if self.cfg.pipelines[q].receivers.contains(id) {
                let signal = self.cfg.pipelines[q].signal;
                let head = self.pipeline_head(q)?;
                heads.push((self.cfg.pipelines[q].id.clone(), head.clone()));
                by_signal.entry(signal).or_default().push(head);
            }
        }
        let mut next = NextConsumers::new();
        for (p, head) in heads {
            next.insert_pipeline(p, head);
        }
        for (s, v) in by_signal {
            next.insert(s, FanOut::build(v));
        }
        let factory = self
            .registry
            .connector(id.type_name())
            .ok_or_else(|| anyhow::anyhow!("connectors::{id}: unknown type"))?;
        let cfg = self.cfg.connectors.get(id).cloned().unwrap_or(Value::Null);
        let c = factory.create(id, &cfg, next)?;
        self.chain.push(Node {
            label: format!("connector {id}"),
            component: c.clone(),
        });
        self.connectors.insert(id.clone(), c.clone());
        Ok(c)
    }
}
