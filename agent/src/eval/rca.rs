//! `vigil eval rca`: runs simulated fault scenarios (`vigil-loadgen`'s scenario mode) in-process through
//! the pipeline's own parts: `servicegraph` pairs the spans into a dependency graph, the
//! `anomalydetection` engine scores the per-service gauges, and the `correlation` code groups its events
//! into incidents and ranks root causes. It reports how often the faulty service is ranked first and in
//! the top 3, how many incidents each fault made, the compressions, the time from fault to incident, and
//! the false incidents per hour of fault-free data. By default the scenarios carry what real traffic
//! has (`vigil_loadgen::scenario::Realism::real`: noise, split export batches, lost spans, clock skew,
//! a benign level shift); `--clean` runs the clean simulation.

use serde_json::json;
use std::time::{Duration, Instant};
use vigil_core::{ComponentId, Telemetry};
use vigil_detect::incident::{Correlator, EventKind, Status, Topology};
use vigil_loadgen::scenario::{Realism, Scenario, ScenarioConfig};
use vigil_processors::anomaly::{config as anomaly_config, engine::Engine};
use vigil_processors::correlation::{to_event, CorrelationConfig};
use vigil_processors::servicegraph::{ServiceGraph, ServiceGraphConfig};

#[derive(Debug, clap::Args)]
pub struct RcaArgs {
    /// How many scenarios to run.
    #[arg(long, default_value_t = 200)]
    pub scenarios: usize,
    /// The first scenario's seed; scenario i uses seed + i.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Fewest services in a topology.
    #[arg(long, default_value_t = 5)]
    pub min_services: usize,
    /// Most services in a topology.
    #[arg(long, default_value_t = 30)]
    pub max_services: usize,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Feed only the per-service gauges to `anomalydetection`. By default it also gets the spans
    /// (per-service RED series) and the `servicegraph` edge metrics, as in
    /// `config-examples/incidents.yaml`.
    #[arg(long)]
    pub gauges_only: bool,
    /// The `correlation` processor's `min_members`.
    #[arg(long)]
    pub min_members: Option<usize>,
    /// The `correlation` processor's `settle`, in seconds.
    #[arg(long)]
    pub settle_s: Option<f64>,
    /// The `correlation` processor's `min_severity` (`virtual_min_severity` is twice it).
    #[arg(long)]
    pub min_severity: Option<f64>,
    /// The `anomalydetection` connector's `confirm_points`.
    #[arg(long)]
    pub confirm_points: Option<u32>,
    /// Print the event and incident timeline of every scenario (for diagnosing misses).
    #[arg(long)]
    pub explain: bool,
    /// The clean simulation: no noise beyond ±15%, one export batch per service and step, no lost
    /// spans, no clock skew, no benign level shift.
    #[arg(long)]
    pub clean: bool,
}

/// One scenario's outcome.
#[derive(Debug, Default)]
struct Outcome {
    seed: u64,
    services: usize,
    fault: &'static str,
    faulty: String,
    incidents: usize,
    /// Anomalous episodes (`vigil.anomaly` start records).
    anomaly_events: usize,
    /// `vigil.anomaly` records of any state (a start and an end per episode).
    anomaly_records: usize,
    points: usize,
    top1: bool,
    top3: bool,
    /// The first report naming the faulty service ranked it first.
    first_top1: bool,
    /// Opens of incidents that never held the faulty service, or that opened before the fault.
    false_incidents: usize,
    /// Seconds of data time from the fault's start to the first incident containing the faulty service.
    to_incident_s: Option<f64>,
    top: Option<String>,
}

fn run_one(seed: u64, services: usize, args: &RcaArgs) -> anyhow::Result<Outcome> {
    let explain = args.explain;
    let mut sc = Scenario::new(ScenarioConfig {
        seed,
        services,
        realism: if args.clean {
            Realism::none()
        } else {
            Realism::real()
        },
        ..ScenarioConfig::default()
    });
    let id = ComponentId::new("servicegraph", None);
    let sg_cfg: ServiceGraphConfig = serde_json::from_value(json!({}))?;
    let sg = ServiceGraph::new(&id, sg_cfg, None);
    let graph = sg.graph();
    let ad_id = ComponentId::new("anomalydetection", None);
    let mut ad_json = json!({});
    if let Some(c) = args.confirm_points {
        ad_json["confirm_points"] = json!(c);
    }
    let settings = anomaly_config::parse(&ad_id, &ad_json)
        .map_err(|e| anyhow::anyhow!("anomalydetection config: {e}"))?;
    let mut engine = Engine::new(settings, false);
    let mut corr_cfg = CorrelationConfig::default();
    if let Some(m) = args.min_members {
        corr_cfg.min_members = m;
    }
    if let Some(s) = args.settle_s {
        corr_cfg.settle = Duration::from_secs_f64(s.clamp(0.0, 3600.0));
    }
    if let Some(m) = args.min_severity {
        corr_cfg.min_severity = m.max(0.0);
        corr_cfg.virtual_min_severity = 2.0 * m.max(0.0);
    }
    let settle_ns = corr_cfg.engine().settle_ns;
    let mut corr = Correlator::new(corr_cfg.engine(), 1);
    let faulty = sc.names[sc.faulty].clone();
    let sc_step_secs = sc.cfg.step_secs;
    let fault_ns = sc.time_of(sc.cfg.fault_at_step);
    let mut out = Outcome {
        seed,
        services: sc.names.len(),
        fault: sc.fault.as_str(),
        faulty: faulty.clone(),
        ..Outcome::default()
    };
    // The incident that holds the faulty service, and its last ranking.
    let mut best: Option<(u64, Vec<String>)> = None;
    // Per incident id: opened before the fault, and whether it ever held the faulty service.
    let mut opened: std::collections::BTreeMap<u64, (bool, bool)> = Default::default();
    let t0 = sc.time_of(0);
    if explain {
        println!(
            "== seed {seed}: {} services, {} fault in {} from step {} for {} steps; calls {:?}",
            sc.names.len(),
            sc.fault.as_str(),
            faulty,
            sc.cfg.fault_at_step,
            sc.cfg.fault_steps,
            sc.calls
        );
    }
    let step_of = move |ns: u64| ns.saturating_sub(t0) as f64 / (sc_step_secs as f64 * 1e9);
    // `now`: the data time at which the reports came out (the end of the step being processed).
    let mut note = |reports: Vec<vigil_detect::incident::Report>, out: &mut Outcome, now: u64| {
        for r in reports {
            if explain {
                println!(
                    "   incident {} {} steps {:.0}-{:.0} members {:?} top {:?}",
                    r.incident.id,
                    r.status.as_str(),
                    step_of(r.incident.first_ns),
                    step_of(r.incident.last_ns),
                    r.incident
                        .members
                        .iter()
                        .map(|m| format!("{}:{:.2}", m.key.trim_start_matches("anomaly:"), m.peak))
                        .collect::<Vec<_>>(),
                    r.candidates
                        .iter()
                        .map(|c| c.service.as_str())
                        .collect::<Vec<_>>()
                );
            }
            if r.status == Status::Open {
                out.incidents += 1;
                opened
                    .entry(r.incident.id)
                    .or_insert((now < fault_ns, false));
            }
            let holds_faulty = r
                .incident
                .members
                .iter()
                .any(|m| m.service.as_deref() == Some(&faulty));
            if holds_faulty {
                if let Some(o) = opened.get_mut(&r.incident.id) {
                    o.1 = true;
                }
            }
            // The incident followed lives on in the one it was merged into.
            if let (Some(into), Some((id, _))) = (r.merged_into, &best) {
                if *id == r.incident.id {
                    best = Some((into, Vec::new()));
                }
                continue;
            }
            let has = r
                .incident
                .members
                .iter()
                .any(|m| m.service.as_deref() == Some(&faulty));
            if has && r.incident.last_ns >= fault_ns {
                if out.to_incident_s.is_none() {
                    out.to_incident_s = Some(now.saturating_sub(fault_ns) as f64 / 1e9);
                    out.first_top1 =
                        r.candidates.first().map(|c| c.service.as_str()) == Some(faulty.as_str());
                }
                let cands = r.candidates.iter().map(|c| c.service.clone()).collect();
                match &best {
                    Some((id, _)) if *id != r.incident.id => {}
                    _ => best = Some((r.incident.id, cands)),
                }
            }
        }
    };
    let mut last_mark: Option<Instant> = None;
    for step in 0..sc.cfg.steps {
        let (traces, metrics) = sc.step(step);
        let wall = (sc.time_of(step + 1)) as f64 / 1e9;
        let traces = Telemetry::Traces(traces);
        let mark = Instant::now();
        sg.ingest(&traces);
        // The store's ttl in data time: a half waits one step (10 s, the default ttl) for its other
        // half, which a split export batch delivers with the next step; older ones expire.
        if let Some(m) = last_mark {
            sg.expire(m.elapsed());
        }
        last_mark = Some(mark);
        let mut produced = engine.ingest(&Telemetry::Metrics(metrics), wall);
        if !args.gauges_only {
            engine.ingest(&traces, wall);
            // The connector stamps its points with the wall clock; here data time runs faster.
            let mut edges = sg.metrics();
            let now = sc.time_of(step + 1);
            for m in edges
                .iter_mut()
                .flat_map(|rm| rm.scope_metrics.iter_mut())
                .flat_map(|sm| sm.metrics.iter_mut())
            {
                restamp(m, now);
            }
            let edges = Telemetry::Metrics(edges);
            produced.logs.extend(engine.ingest(&edges, wall).logs);
            produced.logs.extend(engine.tick(wall, false).logs);
        }
        let topo: &dyn Topology = graph.as_ref();
        let mut events = Vec::new();
        for rl in &produced.logs {
            let res = rl
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            for sl in &rl.scope_logs {
                for rec in &sl.log_records {
                    if let Some(ev) = to_event(res, rec) {
                        match ev.kind {
                            EventKind::AnomalyStart => {
                                out.anomaly_events += 1;
                                out.anomaly_records += 1;
                            }
                            EventKind::AnomalyEnd => out.anomaly_records += 1,
                            _ => {}
                        }
                        if explain {
                            println!(
                                "  step {step:3} {:?} {} {:.2} {}",
                                ev.kind,
                                ev.key.trim_start_matches("anomaly:"),
                                ev.score,
                                ev.detail
                            );
                        }
                        events.push(ev);
                    }
                }
            }
        }
        let now = sc.time_of(step + 1);
        let reports = corr.observe_all(&events, topo);
        note(reports, &mut out, now);
        let reports = corr.tick(now, topo);
        note(reports, &mut out, now);
        // The live processor ticks every second; one tick once `settle` passed stands for those
        // before the next step's data.
        if settle_ns > 0 && settle_ns < sc.cfg.step_secs * 1_000_000_000 {
            let later = now + settle_ns;
            let reports = corr.tick(later, topo);
            note(reports, &mut out, later);
        }
    }
    // Every value a detector scored: gauge points, and per-window RED and edge values.
    out.points = usize::try_from(engine.counts().points).unwrap_or(usize::MAX);
    let topo: &dyn Topology = graph.as_ref();
    let reports = corr.close_all(topo);
    note(reports, &mut out, sc.time_of(sc.cfg.steps));
    out.false_incidents = opened
        .values()
        .filter(|(before, held)| *before || !*held)
        .count();
    if let Some((_, cands)) = best {
        out.top = cands.first().cloned();
        out.top1 = cands.first() == Some(&out.faulty);
        out.top3 = cands.iter().take(3).any(|c| c == &out.faulty);
    }
    Ok(out)
}

fn restamp(m: &mut vigil_core::otlp::metrics::v1::Metric, now: u64) {
    use vigil_core::otlp::metrics::v1::metric::Data;
    match &mut m.data {
        Some(Data::Sum(s)) => s
            .data_points
            .iter_mut()
            .for_each(|p| p.time_unix_nano = now),
        Some(Data::Gauge(g)) => g
            .data_points
            .iter_mut()
            .for_each(|p| p.time_unix_nano = now),
        Some(Data::Histogram(h)) => h
            .data_points
            .iter_mut()
            .for_each(|p| p.time_unix_nano = now),
        _ => {}
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

pub fn run(args: RcaArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.scenarios > 0, "--scenarios must be at least 1");
    if let Some(m) = args.min_members {
        let max = CorrelationConfig::default().max_members;
        anyhow::ensure!(
            (1..=max).contains(&m),
            "--min-members must be between 1 and {max}, got {m}"
        );
    }
    anyhow::ensure!(
        args.min_services >= 2 && args.min_services <= args.max_services,
        "--min-services must be at least 2 and at most --max-services"
    );
    let span = args.max_services - args.min_services + 1;
    let mut outs = Vec::with_capacity(args.scenarios);
    for i in 0..args.scenarios {
        let seed = args.seed.wrapping_add(i as u64);
        // The size comes from the seed too, so a run is reproducible from --seed alone.
        let services = args.min_services + (seed.wrapping_mul(2_654_435_761) as usize) % span;
        outs.push(run_one(seed, services, &args)?);
    }
    let n = outs.len();
    let top1 = outs.iter().filter(|o| o.top1).count();
    let top3 = outs.iter().filter(|o| o.top3).count();
    let first_top1 = outs.iter().filter(|o| o.first_top1).count();
    let false_incidents: usize = outs.iter().map(|o| o.false_incidents).sum();
    // Fault-free data time: every step outside the fault.
    let d = ScenarioConfig::default();
    let no_fault_h = n as f64 * (d.steps - d.fault_steps) as f64 * d.step_secs as f64 / 3600.0;
    let incidents: usize = outs.iter().map(|o| o.incidents).sum();
    let events: usize = outs.iter().map(|o| o.anomaly_events).sum();
    let points: usize = outs.iter().map(|o| o.points).sum();
    let detected: Vec<f64> = outs.iter().filter_map(|o| o.to_incident_s).collect();
    let mut sorted = detected.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied();
    let by_fault: serde_json::Map<String, serde_json::Value> = ["latency", "errors", "saturation"]
        .iter()
        .map(|f| {
            let of: Vec<&Outcome> = outs.iter().filter(|o| o.fault == *f).collect();
            let share = |p: &dyn Fn(&Outcome) -> bool| {
                ratio(of.iter().filter(|o| p(o)).count(), of.len())
            };
            (
                f.to_string(),
                json!({"scenarios": of.len(), "top1": share(&|o| o.top1), "top3": share(&|o| o.top3)}),
            )
        })
        .collect();
    let records: usize = outs.iter().map(|o| o.anomaly_records).sum();
    let compression = |of: usize| {
        if of == 0 {
            0.0
        } else {
            1.0 - ratio(incidents, of)
        }
    };
    let detection_compression = if points == 0 {
        0.0
    } else {
        1.0 - ratio(events, points)
    };
    let mean = (!detected.is_empty()).then(|| detected.iter().sum::<f64>() / detected.len() as f64);
    let summary = json!({
        "scenarios": n,
        "seed": args.seed,
        "top1_accuracy": ratio(top1, n),
        "top3_accuracy": ratio(top3, n),
        "top1_first_report": ratio(first_top1, n),
        "false_incidents": false_incidents,
        "false_incidents_per_hour": if no_fault_h > 0.0 { false_incidents as f64 / no_fault_h } else { 0.0 },
        "realism": !args.clean,
        "incidents_per_scenario": ratio(incidents, n),
        "faults_detected": ratio(detected.len(), n),
        // Two readings of 1 − incidents/anomaly events: per episode (the stricter), and per
        // `vigil.anomaly` record, which is what a backend would receive without correlation.
        "correlation_compression_episodes": compression(events),
        "correlation_compression_records": compression(records),
        "detection_compression": detection_compression,
        "anomaly_episodes": events,
        "anomaly_records": records,
        "raw_points": points,
        "fault_to_incident_s": {
            "median": median,
            "mean": mean,
            "max": sorted.last(),
        },
        "by_fault": by_fault,
    });
    if args.json {
        println!("{summary}");
    } else {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        for o in outs.iter().filter(|o| o.incidents > 1).take(10) {
            println!(
                "extra incidents: seed {}, {} services, {} fault in {}: {} incidents",
                o.seed, o.services, o.fault, o.faulty, o.incidents
            );
        }
        for o in outs.iter().filter(|o| !o.top1).take(10) {
            println!(
                "missed: seed {}, {} services, {} fault in {}, ranked first: {}",
                o.seed,
                o.services,
                o.fault,
                o.faulty,
                o.top.as_deref().unwrap_or("(no incident)")
            );
        }
    }
    Ok(())
}
