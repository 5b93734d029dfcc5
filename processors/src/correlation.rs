//! `correlation` (logs): turns vigil's own findings (`vigil.anomaly`, `vigil.pattern.new`,
//! `vigil.forecast`, `vigil.slo`) into `vigil.incident` records, so that one slow database yields one incident that
//! names it rather than ten alerts. Grouping and ranking live in `vigil_detect::incident`; this module
//! maps OTLP records in and out, reads the `servicegraph` dependency graph and drives time. In a
//! metrics pipeline it feeds that graph from `servicegraph` metrics instead (`servicegraph::from_metrics`):
//! the gateway of a fleet, whose agents export their edges.

use crate::servicegraph::{DependencyGraph, KEY as GRAPH_KEY};
use async_trait::async_trait;
use serde::Deserialize;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vigil_core::attrs::{get, get_str, kv, kv_f64, kv_i64, kv_str};
use vigil_core::config::duration;
use vigil_core::lock;
use vigil_core::otlp::common::v1::{
    any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Host, Processor,
    Signal, Telemetry,
};
use vigil_detect::incident::{
    band_multiple, band_words, Config as EngineConfig, Correlator, Event, EventKind, NoTopology,
    Node, Report, Status, Topology,
};

/// The scope name on every incident record.
pub const SCOPE: &str = "vigil/correlation";

/// The `correlation` config.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelationConfig {
    /// An event joins an incident if it starts within this (or `gap`, if shorter) of the incident's
    /// last activity, or while a member is still anomalous.
    #[serde(with = "duration")]
    pub window: Duration,
    /// An incident resolves once every member ended and this passed with nothing new.
    #[serde(with = "duration")]
    pub gap: Duration,
    /// Services this many calls apart in the dependency graph are related.
    pub max_hops: usize,
    pub max_incidents: usize,
    pub max_members: usize,
    /// At most one update record per incident per this interval.
    #[serde(with = "duration")]
    pub update_interval: Duration,
    /// A member with no end event for this long counts as ended.
    #[serde(with = "duration")]
    pub member_ttl: Duration,
    /// Distinct findings an incident needs before it is reported; 1 reports every lone anomaly.
    pub min_members: usize,
    /// How long a new incident waits for the rest of its moment's findings before its `open`.
    #[serde(with = "duration")]
    pub settle: Duration,
    /// Band widths a lone service's finding must lie out to open an incident (0: any finding).
    pub min_severity: f64,
    /// The same for a lone virtual node (a database, a queue or an address seen by callers only).
    pub virtual_min_severity: f64,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        let d = EngineConfig::default();
        CorrelationConfig {
            window: Duration::from_nanos(d.window_ns),
            gap: Duration::from_nanos(d.gap_ns),
            max_hops: d.max_hops,
            max_incidents: d.max_incidents,
            max_members: d.max_members,
            update_interval: Duration::from_nanos(d.update_interval_ns),
            member_ttl: Duration::from_nanos(d.member_ttl_ns),
            min_members: d.min_members,
            settle: Duration::from_nanos(d.settle_ns),
            min_severity: d.min_severity,
            virtual_min_severity: d.virtual_min_severity,
        }
    }
}

impl CorrelationConfig {
    /// The engine's tuning.
    pub fn engine(&self) -> EngineConfig {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        EngineConfig {
            window_ns: ns(self.window),
            gap_ns: ns(self.gap),
            max_hops: self.max_hops,
            max_incidents: self.max_incidents,
            max_members: self.max_members,
            update_interval_ns: ns(self.update_interval),
            member_ttl_ns: ns(self.member_ttl),
            candidates: 3,
            min_members: self.min_members,
            settle_ns: ns(self.settle),
            min_severity: self.min_severity,
            virtual_min_severity: self.virtual_min_severity,
        }
    }
}

#[cfg(test)]
fn parse(id: &ComponentId, value: &serde_json::Value) -> Result<CorrelationConfig, ConfigError> {
    check(
        id,
        vigil_core::config::decode(ComponentKind::Processor, id, value)?,
    )
}

/// Checks a decoded section and prepares what the component runs with.
fn check(id: &ComponentId, c: CorrelationConfig) -> Result<CorrelationConfig, ConfigError> {
    let err =
        |path: &str, msg: &str| ConfigError::component(ComponentKind::Processor, id, path, msg);
    for (key, d) in [
        ("window", c.window),
        ("gap", c.gap),
        ("member_ttl", c.member_ttl),
    ] {
        if d.is_zero() {
            return Err(err(key, "expected a duration above 0 such as \"2m\""));
        }
    }
    if c.max_incidents == 0 {
        return Err(err("max_incidents", "expected at least 1, got 0"));
    }
    for (key, v) in [
        ("min_severity", c.min_severity),
        ("virtual_min_severity", c.virtual_min_severity),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(err(
                key,
                &format!("expected a number of 0 or more, got {v}"),
            ));
        }
    }
    if c.max_members == 0 {
        return Err(err("max_members", "expected at least 1, got 0"));
    }
    if c.min_members == 0 || c.min_members > c.max_members {
        return Err(err(
            "min_members",
            &format!(
                "expected between 1 and max_members ({}), got {}",
                c.max_members, c.min_members
            ),
        ));
    }
    Ok(c)
}

struct Factory;

/// The `correlation` processor factory.
pub fn factory() -> Arc<dyn vigil_core::factory::DynProcessorFactory> {
    vigil_core::factory::processor(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = CorrelationConfig;

    fn type_name(&self) -> &'static str {
        "correlation"
    }

    fn validate(&self, id: &ComponentId, cfg: &CorrelationConfig) -> Result<(), ConfigError> {
        check(id, cfg.clone()).map(|_| ())
    }
}

impl vigil_core::factory::ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[
            (Signal::Logs, vigil_core::Stability::Alpha),
            (Signal::Metrics, vigil_core::Stability::Alpha),
        ]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: CorrelationConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let id = &set.id;
        let cfg = check(id, cfg)?;
        // In a metrics pipeline (a fleet's gateway) it rebuilds the graph from the agents' edges.
        if signal == Signal::Metrics {
            return Ok(Arc::new(crate::servicegraph::from_metrics::GraphFeed::new(
                set, next,
            )));
        }
        Ok(Arc::new(Correlation::new(set, cfg, next)))
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// How far past the wall clock a finding's time may be before it counts as a skewed clock.
const FUTURE_SKEW_NS: u64 = 3600 * 1_000_000_000;

/// The processor's notion of now: the newest finding's data time, advanced by the wall clock since it
/// was seen. Findings replayed faster than real time (a backfill, a simulated scenario) then resolve on
/// their own timeline instead of waiting minutes of wall time; live findings track the wall clock.
#[derive(Default)]
struct DataClock {
    data_ns: u64,
    wall_at: u64,
}

impl DataClock {
    fn see(&mut self, data_ns: u64, wall: u64) {
        // A timestamp far in the future is a skewed clock, not data replayed fast: it must not resolve
        // every incident at once.
        if data_ns > wall.saturating_add(FUTURE_SKEW_NS) {
            return;
        }
        if self.data_ns == 0 || data_ns > self.now(wall) {
            self.data_ns = data_ns;
            self.wall_at = wall;
        }
    }

    fn now(&self, wall: u64) -> u64 {
        if self.data_ns == 0 {
            return wall;
        }
        self.data_ns
            .saturating_add(wall.saturating_sub(self.wall_at))
    }
}

struct Inner {
    label: String,
    obs: vigil_core::ProcessorObs,
    /// Incident records downstream refused on a tick (not a client's call, so no one resends them).
    records_dropped: metrics::Counter,
    clock: Mutex<DataClock>,
    next: Arc<dyn Consumer>,
    engine: Mutex<Correlator>,
    graph: OnceLock<Arc<DependencyGraph>>,
    /// Engine counts already reported to the metrics (evicted, dropped, suppressed, merged), to
    /// increment by the difference.
    reported: Mutex<[u64; 4]>,
}

/// The processor.
pub struct Correlation {
    inner: Arc<Inner>,
    tick_every: Duration,
    /// The engine's ticks.
    tasks: vigil_core::Tasks,
}

impl Correlation {
    /// Builds the processor; it ticks on its own once started.
    pub fn new(set: vigil_core::Settings, cfg: CorrelationConfig, next: Arc<dyn Consumer>) -> Self {
        // Ids start at the wall clock in milliseconds so that a restart does not reuse one.
        let first_id = now_ns() / 1_000_000;
        let tick_every = (cfg.gap / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        Correlation {
            inner: Arc::new(Inner {
                label: set.id.to_string(),
                obs: set.processor_obs(Signal::Logs),
                records_dropped: metrics::counter!(
                    "vigil_correlation_records_dropped",
                    "processor" => set.id.to_string()
                ),
                clock: Mutex::new(DataClock::default()),
                next,
                engine: Mutex::new(Correlator::new(cfg.engine(), first_id)),
                graph: OnceLock::new(),
                reported: Mutex::new([0; 4]),
            }),
            tick_every,
            tasks: set.tasks,
        }
    }
}

impl Inner {
    fn topology(&self) -> &dyn Topology {
        match self.graph.get() {
            Some(g) => g.as_ref(),
            None => &NoTopology,
        }
    }

    fn count_engine(&self, engine: &Correlator) {
        let mut r = lock(&self.reported);
        let now = [
            engine.evicted_incidents,
            engine.dropped_members,
            engine.suppressed,
            engine.merged,
        ];
        let names = [
            "vigil_correlation_incidents_evicted",
            "vigil_correlation_members_dropped",
            "vigil_correlation_incidents_suppressed",
            "vigil_correlation_incidents_merged",
        ];
        for ((name, now), seen) in names.iter().zip(now).zip(r.iter_mut()) {
            if now > *seen {
                metrics::counter!(*name, "processor" => self.label.clone()).increment(now - *seen);
                *seen = now;
            }
        }
    }

    /// Feeds every vigil event of the batch to the engine and returns what to report, with each
    /// report's priority.
    fn observe(&self, batch: &[ResourceLogs]) -> (Vec<Report>, Vec<Option<usize>>) {
        let mut events = Vec::new();
        for rl in batch {
            let res = rl
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            for sl in &rl.scope_logs {
                for r in &sl.log_records {
                    if let Some(e) = to_event(res, r) {
                        events.push(e);
                    }
                }
            }
        }
        if events.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let topo = self.topology();
        let mut engine = lock(&self.engine);
        {
            let wall = now_ns();
            let mut clock = lock(&self.clock);
            for e in events.iter_mut() {
                // A finding stamped far in the future (a skewed host clock) would sit ahead of the
                // clock for good, never go quiet and absorb every related finding: it is taken as seen
                // now.
                if e.time_ns > wall.saturating_add(FUTURE_SKEW_NS) {
                    e.time_ns = clock.now(wall);
                }
                clock.see(e.time_ns, wall);
            }
        }
        let out = engine.observe_all(&events, topo);
        self.count_engine(&engine);
        let prio = priorities(&engine, &out);
        (out, prio)
    }

    fn now(&self) -> u64 {
        lock(&self.clock).now(now_ns())
    }

    async fn emit(&self, (reports, prio): (Vec<Report>, Vec<Option<usize>>)) {
        if reports.is_empty() {
            return;
        }
        let now = self.now();
        let rl = reports_to_logs(&reports, &prio, now);
        let data = Telemetry::Logs(vec![rl]);
        let n = data.item_count();
        self.obs.outgoing(n);
        if let Err(e) = self.next.consume(data).await {
            self.records_dropped.increment(n as u64);
            tracing::warn!(processor = %self.label, error = %e, "incident records dropped");
        }
    }

    async fn tick(&self, final_tick: bool) {
        let topo = self.topology();
        let reports = {
            let mut engine = lock(&self.engine);
            let reports = if final_tick {
                engine.close_all(topo)
            } else {
                engine.tick(self.now(), topo)
            };
            self.count_engine(&engine);
            let prio = priorities(&engine, &reports);
            (reports, prio)
        };
        self.emit(reports).await;
    }
}

#[async_trait]
impl Component for Correlation {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        let graph = host
            .service(&GRAPH_KEY)
            .map_err(|e| anyhow::anyhow!("processors::{}: {e}", self.inner.label))?;
        let _ = self.inner.graph.set(graph);
        let inner = Arc::clone(&self.inner);
        self.tasks.spawn_ticker(self.tick_every, move || {
            let inner = Arc::clone(&inner);
            async move { inner.tick(false).await }
        });
        Ok(())
    }

    /// Stops the ticks, then resolves every open incident, so that alerts downstream do not hang
    /// open; within the shutdown deadline.
    async fn shutdown_by(&self, deadline: std::time::Instant) -> anyhow::Result<()> {
        self.tasks.stop(deadline).await;
        if vigil_core::task::within(deadline, self.inner.tick(true))
            .await
            .is_none()
        {
            tracing::warn!(processor = %self.inner.label, "correlation: the resolves of open incidents were not sent by the shutdown deadline");
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for Correlation {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let Telemetry::Logs(mut batch) = data else {
            return self.inner.next.consume(data).await;
        };
        let inner = &self.inner;
        inner
            .obs
            .incoming(vigil_core::telemetry::log_record_count(&batch));
        let (reports, prio) = inner.observe(&batch);
        if !reports.is_empty() {
            batch.push(reports_to_logs(&reports, &prio, inner.now()));
        }
        inner
            .obs
            .outgoing(vigil_core::telemetry::log_record_count(&batch));
        inner.next.consume(Telemetry::Logs(batch)).await
    }
}

/// Each report's priority among the open incidents (none for a resolved one).
fn priorities(engine: &Correlator, reports: &[Report]) -> Vec<Option<usize>> {
    reports
        .iter()
        .map(|r| {
            (r.status != Status::Resolved)
                .then(|| engine.priority(r.incident.id))
                .flatten()
        })
        .collect()
}

fn num(attrs: &[KeyValue], key: &str) -> Option<f64> {
    match get(attrs, key)? {
        Value::DoubleValue(d) => Some(*d),
        Value::IntValue(i) => Some(*i as f64),
        Value::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

fn event_name(r: &LogRecord) -> &str {
    if !r.event_name.is_empty() {
        return &r.event_name;
    }
    get_str(&r.attributes, "event.name").unwrap_or("")
}

fn body_text(r: &LogRecord) -> String {
    match r.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        _ => String::new(),
    }
}

/// Reads one vigil finding; anything else is `None`.
pub fn to_event(resource: &[KeyValue], r: &LogRecord) -> Option<Event> {
    let a = &r.attributes;
    // A `servicegraph` edge series has no resource; its finding is about the server side of the
    // edge (the latency and failures the callers see from it).
    let edge_server = get_str(a, "server").filter(|_| get_str(a, "client").is_some());
    let service = get_str(resource, "service.name")
        .or(edge_server)
        .or_else(|| get_str(a, "vigil.slo.service"))
        .map(str::to_string);
    let resource_id = ["k8s.pod.name", "host.name", "service.name"]
        .iter()
        .find_map(|k| get_str(resource, k).map(|v| format!("{k}={v}")))
        .or_else(|| edge_server.map(|s| format!("service.name={s}")))
        .unwrap_or_else(|| "unknown".to_string());
    let time_ns = if r.time_unix_nano > 0 {
        r.time_unix_nano
    } else {
        r.observed_time_unix_nano
    };
    let node = edge_node(a);
    let mut band = None;
    let mut load = false;
    let mut budget = None;
    let (kind, key, score, detail) = match event_name(r) {
        "vigil.anomaly" => {
            let kind = match get_str(a, "vigil.anomaly.state")? {
                "start" => EventKind::AnomalyStart,
                "end" => EventKind::AnomalyEnd,
                _ => return None,
            };
            let series = get_str(a, "vigil.anomaly.series")
                .map(str::to_string)
                .unwrap_or_else(|| body_text(r));
            let metric = get_str(a, "vigil.anomaly.metric").unwrap_or("metric");
            let (mut detail, multiple) = anomaly_detail(a, metric);
            band = multiple;
            // A rate of failed requests (`error.type`, a 5xx status in the series) is a failure.
            load = is_request_rate(metric)
                && !["error.type=", "status_code=5", "otel.status_code=ERROR"]
                    .iter()
                    .any(|w| series.contains(w));
            // Faster or failing less is not a fault: a latency or an error measure below its
            // band (a recovery, or the end of a slow start) says the service changed, not that it
            // broke, so like traffic it corroborates nothing and ranks below causes (issue #19:
            // two services' p99s settling lower after a slow start opened a false incident).
            let below = matches!(
                (num(a, "vigil.anomaly.observed"), num(a, "vigil.anomaly.expected")),
                (Some(v), Some(e)) if v < e
            );
            load |= below && lower_is_better(metric);
            // A host's CPU pressure makes every service on it slower at once: it is the reason to
            // give beside their findings, not a fault of its own to open an incident for (its
            // `vigil.anomaly` event reports it either way).
            load |= service.is_none() && is_cpu_pressure(metric);
            // A pattern's rate says which pattern only in the body ("log pattern 7 \"…\" of api
            // surged 5.0× above its band: 12 vs 0–3"): that line, without the numbers, is the detail.
            if metric == "log.pattern.rate" {
                if let Some((what, _)) = body_text(r).rsplit_once(": ") {
                    detail = what.chars().take(160).collect();
                }
            }
            let score = num(a, "vigil.anomaly.score").unwrap_or(0.5);
            (kind, format!("anomaly:{series}"), score, detail)
        }
        "vigil.pattern.new" => {
            let id = get_str(a, "log.pattern.id")
                .map(str::to_string)
                .unwrap_or_else(|| body_text(r));
            // At most 80 characters; a byte cut could split a multi-byte character.
            let text: String = body_text(r).chars().take(80).collect();
            (
                EventKind::Pattern,
                format!("pattern:{}:{id}", service.as_deref().unwrap_or("")),
                0.5,
                format!("new log pattern {text:?}"),
            )
        }
        "vigil.slo" => {
            let kind = match get_str(a, "vigil.slo.state")? {
                "firing" => EventKind::AnomalyStart,
                "resolved" => EventKind::AnomalyEnd,
                _ => return None,
            };
            let name = get_str(a, "vigil.slo.name").unwrap_or("slo");
            let indicator = get_str(a, "vigil.slo.indicator").unwrap_or("availability");
            let alert = num(a, "vigil.slo.alert.burn_rate").unwrap_or(0.0);
            let long = num(a, "vigil.slo.alert.long_window_s").unwrap_or(0.0);
            let burn = num(a, "vigil.slo.burn_rate.peak")
                .or_else(|| num(a, "vigil.slo.burn_rate.long"))
                .unwrap_or(0.0);
            let spent = num(a, "vigil.slo.error_budget.spent").filter(|b| b.is_finite());
            budget = Some(spent.unwrap_or(0.0).max(0.0));
            let page = get_str(a, "vigil.slo.alert.severity") != Some("ticket");
            (
                kind,
                format!("slo:{name}:{indicator}:{alert}:{long}"),
                if page { 1.0 } else { 0.7 },
                format!(
                    "{indicator} SLO {name} burning its error budget {burn:.1}× (alert at {alert}× over {long}s), {:.2}% of it spent",
                    100.0 * spent.unwrap_or(0.0)
                ),
            )
        }
        "vigil.forecast" => {
            let series = get_str(a, "vigil.forecast.series").unwrap_or("series");
            let eta = num(a, "vigil.forecast.eta_s").unwrap_or(0.0);
            let th = num(a, "vigil.forecast.threshold").unwrap_or(0.0);
            (
                EventKind::Forecast,
                format!("forecast:{series}"),
                0.5,
                format!("forecast to cross {th} in {:.0}s", eta),
            )
        }
        _ => return None,
    };
    Some(Event {
        kind,
        key,
        service,
        resource: resource_id,
        time_ns,
        score: if score.is_finite() { score } else { 0.5 },
        detail,
        node,
        band,
        load,
        budget,
        host: ["host.name", "k8s.node.name"]
            .iter()
            .find_map(|k| get_str(resource, k))
            .map(str::to_string),
    })
}

/// A host's CPU pressure: hostmetrics' `system.cpu.*` (utilization, time, load average) or a
/// node's CPU from kubeletstats (`k8s.node.cpu.*`).
fn is_cpu_pressure(metric: &str) -> bool {
    let m = metric.to_ascii_lowercase();
    m.starts_with("system.cpu.") || m.starts_with("system.load") || m.starts_with("k8s.node.cpu.")
}

/// A rate of requests or calls (`red.request.rate`, `traces_service_graph_request_total.rate`, the
/// count rate of a duration histogram such as `http.server.request.duration.rate`), not of failures:
/// how much traffic reaches a service, which its callers decide.
fn is_request_rate(metric: &str) -> bool {
    let Some(base) = metric.strip_suffix(".rate") else {
        return false;
    };
    let m = base.to_ascii_lowercase();
    if ["fail", "error", "fault", "exception"]
        .iter()
        .any(|w| m.contains(w))
    {
        return false;
    }
    m.contains("request") || m.contains("duration") || m.contains("calls")
}

/// A latency (a duration or latency quantile, a request's seconds) or a rate or ratio of failures:
/// a measure whose drop is good news.
fn lower_is_better(metric: &str) -> bool {
    let m = metric.to_ascii_lowercase();
    if ["error", "fail", "fault", "exception"]
        .iter()
        .any(|w| m.contains(w))
    {
        return true;
    }
    !m.ends_with(".rate")
        && (m.contains("duration")
            || m.contains("latency")
            || m.contains("self_time")
            || (m.contains("request") && m.contains("seconds")))
}

/// What the `server` of a `servicegraph` edge series is. Its `connection_type` says the edge has a
/// virtual node; that is the server unless the client is the `user` node of calls from outside.
fn edge_node(a: &[KeyValue]) -> Node {
    let (Some(_), Some(client), Some(server)) = (
        get_str(a, "connection_type"),
        get_str(a, "client"),
        get_str(a, "server"),
    ) else {
        return Node::Service;
    };
    match get_str(a, "connection_type") {
        Some("database") | Some("messaging_system") => Node::Dependency,
        Some("virtual_node") if client != "user" => {
            if looks_like_address(server) {
                Node::Address
            } else {
                Node::Dependency
            }
        }
        _ => Node::Service,
    }
}

/// `10.0.0.5`, `10.0.0.5:8080`, `[::1]:80`, `db-1:5432`: a peer named by where it was called.
fn looks_like_address(s: &str) -> bool {
    let host = match s.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => s,
    };
    host.trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::IpAddr>()
        .is_ok()
        || host != s
}

/// "http.server.duration 8.0× above its band", from the observed value and the expected band, in the
/// words and multiples of the anomaly's own body; and the multiple.
fn anomaly_detail(a: &[KeyValue], metric: &str) -> (String, Option<f64>) {
    let (Some(obs), Some(exp), Some(hi)) = (
        num(a, "vigil.anomaly.observed"),
        num(a, "vigil.anomaly.expected"),
        num(a, "vigil.anomaly.expected.upper"),
    ) else {
        return (format!("{metric} anomalous"), None);
    };
    let Some(multiple) = band_multiple(obs, exp, hi) else {
        return (format!("{metric} anomalous"), None);
    };
    let above = obs >= exp;
    let how = band_words(multiple, above).unwrap_or_else(|| {
        let part = get_str(a, "vigil.anomaly.detector").unwrap_or("anomaly");
        let dir = if above { "above" } else { "below" };
        format!("{} ({dir})", part.replace('_', " "))
    });
    (format!("{metric} {how}"), Some(multiple))
}

fn rfc3339(ns: u64) -> String {
    let secs = i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX);
    let sub = (ns % 1_000_000_000) as u32;
    chrono::DateTime::from_timestamp(secs, sub)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn str_array(items: impl IntoIterator<Item = String>) -> Value {
    Value::ArrayValue(ArrayValue {
        values: items
            .into_iter()
            .map(|s| AnyValue {
                value: Some(Value::StringValue(s)),
            })
            .collect(),
    })
}

/// Members listed in brief on a record at most; the count says how many there are.
const MAX_BRIEF: usize = 20;

/// One `vigil.incident` record; `priority` is the incident's place among the open ones by error budget
/// spent ([`Correlator::priority`]).
pub fn incident_record(rep: &Report, priority: Option<usize>, now: u64) -> LogRecord {
    let inc = &rep.incident;
    let peak = inc.members.iter().map(|m| m.peak).fold(0.0, f64::max);
    let (severity, text) = match rep.status {
        Status::Resolved => (SeverityNumber::Info, "INFO"),
        _ if peak >= 0.8 => (SeverityNumber::Error, "ERROR"),
        _ => (SeverityNumber::Warn, "WARN"),
    };
    let services = inc.services();
    let brief: Vec<String> = inc
        .members
        .iter()
        .take(MAX_BRIEF)
        .map(|m| {
            format!(
                "{}: {} (score {:.2}{})",
                m.service.as_deref().unwrap_or(&m.resource),
                m.detail,
                m.peak,
                if m.active { "" } else { ", ended" }
            )
        })
        .collect();
    let body = format!(
        "incident {} {}: {} finding(s) across {} service(s){}",
        inc.id,
        rep.status.as_str(),
        inc.members.len(),
        services.len(),
        rep.candidates
            .first()
            .map(|c| format!("; probably {}", c.reason))
            .unwrap_or_default()
    );
    let mut attrs = vec![
        kv_str("event.name", "vigil.incident"),
        kv_str("vigil.incident.id", inc.id.to_string()),
        kv_str("vigil.incident.status", rep.status.as_str()),
        kv_i64(
            "vigil.incident.member_count",
            i64::try_from(inc.members.len()).unwrap_or(i64::MAX),
        ),
        kv("vigil.incident.services", str_array(services)),
        kv("vigil.incident.resources", str_array(inc.resources())),
        kv_str("vigil.incident.first_seen", rfc3339(inc.first_ns)),
        kv_str("vigil.incident.last_seen", rfc3339(inc.last_ns)),
        kv("vigil.incident.members", str_array(brief)),
        kv(
            "vigil.incident.root_cause.candidates",
            str_array(rep.candidates.iter().map(|c| c.reason.clone())),
        ),
    ];
    if let Some(top) = rep.candidates.first() {
        attrs.push(kv_str("vigil.incident.root_cause", top.service.clone()));
    }
    if let Some(into) = rep.merged_into {
        attrs.push(kv_str("vigil.incident.merged_into", into.to_string()));
    }
    if let Some(spent) = inc.budget_spent() {
        attrs.push(kv_f64("vigil.incident.error_budget.spent", spent));
    }
    if let Some(p) = priority {
        attrs.push(kv_i64(
            "vigil.incident.priority",
            i64::try_from(p).unwrap_or(i64::MAX),
        ));
    }
    LogRecord {
        time_unix_nano: if rep.status == Status::Resolved {
            now
        } else {
            inc.last_ns
        },
        observed_time_unix_nano: now,
        severity_number: severity as i32,
        severity_text: text.into(),
        body: Some(AnyValue {
            value: Some(Value::StringValue(body)),
        }),
        attributes: attrs,
        event_name: "vigil.incident".into(),
        ..Default::default()
    }
}

fn reports_to_logs(reports: &[Report], priorities: &[Option<usize>], now: u64) -> ResourceLogs {
    ResourceLogs {
        resource: Some(Resource::default()),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: SCOPE.into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            }),
            log_records: reports
                .iter()
                .enumerate()
                .map(|(i, r)| incident_record(r, priorities.get(i).copied().flatten(), now))
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::attrs::kv_f64;

    fn settings(id: &ComponentId) -> vigil_core::Settings {
        vigil_core::Settings::new(ComponentKind::Processor, id)
    }

    #[test]
    fn the_clock_follows_data_time_and_then_the_wall() {
        let mut c = DataClock::default();
        assert_eq!(c.now(500), 500);
        c.see(u64::MAX / 2, 550);
        assert_eq!(c.now(560), 560, "a skewed future time is ignored");
        // Replayed data far ahead of (or behind) the wall clock sets the clock.
        c.see(10_000, 600);
        assert_eq!(c.now(650), 10_050);
        // An older finding does not move it back.
        c.see(9_000, 700);
        assert_eq!(c.now(700), 10_100);
        c.see(20_000, 710);
        assert_eq!(c.now(710), 20_000);
    }

    #[derive(Default)]
    struct Sink(Mutex<Vec<LogRecord>>);

    #[async_trait]
    impl Consumer for Sink {
        async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
            if let Telemetry::Logs(rls) = data {
                for rl in rls {
                    for sl in rl.scope_logs {
                        lock(&self.0).extend(sl.log_records);
                    }
                }
            }
            Ok(())
        }
    }

    fn anomaly(service: &str, state: &str, t_s: u64, score: f64) -> ResourceLogs {
        let attrs = vec![
            kv_str("event.name", "vigil.anomaly"),
            kv_str("vigil.anomaly.state", state),
            kv_f64("vigil.anomaly.score", score),
            kv_str("vigil.anomaly.metric", "http.server.duration"),
            kv_str(
                "vigil.anomaly.series",
                format!("http.server.duration{{service.name={service}}}"),
            ),
            kv_f64("vigil.anomaly.observed", 9.0),
            kv_f64("vigil.anomaly.expected", 1.0),
            kv_f64("vigil.anomaly.expected.lower", 0.0),
            kv_f64("vigil.anomaly.expected.upper", 2.0),
        ];
        ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", service)],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: t_s * 1_000_000_000,
                    event_name: "vigil.anomaly".into(),
                    attributes: attrs,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn attr<'a>(r: &'a LogRecord, k: &str) -> Option<&'a Value> {
        get(&r.attributes, k)
    }

    fn strings(v: Option<&Value>) -> Vec<String> {
        match v {
            Some(Value::ArrayValue(a)) => a
                .values
                .iter()
                .filter_map(|v| match &v.value {
                    Some(Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    #[tokio::test]
    async fn anomalies_in_the_graph_become_one_incident_naming_the_dependency() {
        let sink = Arc::new(Sink::default());
        let id = ComponentId::parse("correlation").unwrap();
        let p = Correlation::new(settings(&id), CorrelationConfig::default(), sink.clone());
        let host = Host::detached();
        let graph = host.service(&GRAPH_KEY).unwrap();
        for f in ["web", "mobile", "batch"] {
            graph.record(f, "api");
        }
        graph.record("api", "db-1");
        p.start(&host).await.unwrap();
        let mut batch = vec![anomaly("db-1", "start", 100, 0.95)];
        for (i, s) in ["api", "web", "mobile", "batch"].iter().enumerate() {
            batch.push(anomaly(s, "start", 101 + i as u64, 0.7));
        }
        // A record that is not a vigil event passes through unchanged.
        batch.push(ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: Some(AnyValue {
                        value: Some(Value::StringValue("hello".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
        p.consume(Telemetry::Logs(batch)).await.unwrap();
        p.shutdown().await.unwrap();
        let got = lock(&sink.0).clone();
        assert_eq!(
            got.iter()
                .filter(|r| r.event_name == "vigil.anomaly")
                .count(),
            5
        );
        assert!(got.iter().any(|r| body_text(r) == "hello"));
        let incidents: Vec<&LogRecord> = got
            .iter()
            .filter(|r| r.event_name == "vigil.incident")
            .collect();
        let statuses: Vec<String> = incidents
            .iter()
            .filter_map(|r| get_str(&r.attributes, "vigil.incident.status").map(String::from))
            .collect();
        assert_eq!(statuses, vec!["open", "resolved"]);
        let resolved = incidents[1];
        assert_eq!(
            attr(resolved, "vigil.incident.member_count"),
            Some(&Value::IntValue(5))
        );
        assert_eq!(
            strings(attr(resolved, "vigil.incident.services")),
            vec!["api", "batch", "db-1", "mobile", "web"]
        );
        let cands = strings(attr(resolved, "vigil.incident.root_cause.candidates"));
        assert_eq!(cands.len(), 3);
        assert!(
            cands[0].starts_with("db-1: first anomaly at 00:01:40, called by 4 of 4 anomalous services, http.server.duration 8.0× above its band"),
            "{}",
            cands[0]
        );
        assert_eq!(
            get_str(&resolved.attributes, "vigil.incident.root_cause"),
            Some("db-1")
        );
        assert_eq!(
            get_str(&resolved.attributes, "vigil.incident.first_seen"),
            Some("1970-01-01T00:01:40.000Z")
        );
    }

    #[test]
    fn edge_findings_know_their_virtual_nodes_and_band_multiples_match_the_body() {
        let rec = |client: &str, server: &str, ct: &str, obs: f64| LogRecord {
            event_name: "vigil.anomaly".into(),
            attributes: vec![
                kv_str("vigil.anomaly.state", "start"),
                kv_str("client", client),
                kv_str("server", server),
                kv_str("connection_type", ct),
                kv_str("vigil.anomaly.metric", "m"),
                kv_str("vigil.anomaly.detector", "level_shift"),
                kv_f64("vigil.anomaly.observed", obs),
                kv_f64("vigil.anomaly.expected", 1.0),
                kv_f64("vigil.anomaly.expected.lower", 0.999_999),
                kv_f64("vigil.anomaly.expected.upper", 1.000_001),
            ],
            ..Default::default()
        };
        let node = |c, s, ct| to_event(&[], &rec(c, s, ct, 2.0)).map(|e| e.node);
        assert_eq!(
            node("web", "127.0.0.1:5001", "virtual_node"),
            Some(Node::Address)
        );
        assert_eq!(
            node("web", "sqlite@web", "database"),
            Some(Node::Dependency)
        );
        assert_eq!(
            node("web", "payments-api", "virtual_node"),
            Some(Node::Dependency)
        );
        assert_eq!(node("user", "web", "virtual_node"), Some(Node::Service));
        // A band of almost no width: the candidate line says "far", as the anomaly's body does,
        // not "1000000.0×".
        let e = to_event(&[], &rec("web", "api", "", 2.0)).expect("a finding");
        assert_eq!(e.detail, "m far above its band");
        assert!(e.band.is_some_and(|b| b > 1e5));
        // Within one band width the detector part speaks.
        let e = to_event(&[], &rec("web", "api", "", 1.000_000_5)).expect("a finding");
        assert_eq!(e.detail, "m level shift (above)");
    }

    #[test]
    fn request_rates_are_traffic_and_failures_are_not() {
        for m in [
            "red.request.rate",
            "traces_service_graph_request_total.rate",
            "traces_service_graph_request_client_seconds.rate",
            "http.server.request.duration.rate",
            "traces.span.metrics.calls.rate",
        ] {
            assert!(is_request_rate(m), "{m}");
        }
        for m in [
            "traces_service_graph_request_failed_total.rate",
            "red.error_ratio",
            "red.latency.p99",
            "http.server.request.duration.p99",
            "log.pattern.rate",
            "process_cpu_seconds_total.rate",
        ] {
            assert!(!is_request_rate(m), "{m}");
        }
    }

    #[test]
    fn latencies_and_failures_below_their_band_are_no_evidence() {
        for m in [
            "red.latency.p99",
            "red.self_time.p50",
            "red.error_ratio",
            "red.own_error_ratio",
            "http.server.request.duration.p99",
            "traces_service_graph_request_server_seconds.p99",
            "traces_service_graph_request_failed_total.rate",
        ] {
            assert!(lower_is_better(m), "{m}");
        }
        for m in [
            "red.request.rate",
            "http.server.request.duration.rate",
            "process_cpu_seconds_total.rate",
            "http.server.active_requests",
            "log.pattern.rate",
        ] {
            assert!(!lower_is_better(m), "{m}");
        }
        let finding = |metric: &str, observed: f64| {
            let r = LogRecord {
                event_name: "vigil.anomaly".into(),
                time_unix_nano: 1,
                attributes: vec![
                    kv_str("vigil.anomaly.state", "start"),
                    kv_str("vigil.anomaly.metric", metric),
                    kv_str("vigil.anomaly.series", metric),
                    kv_f64("vigil.anomaly.observed", observed),
                    kv_f64("vigil.anomaly.expected", 50.0),
                    kv_f64("vigil.anomaly.expected.upper", 60.0),
                ],
                ..Default::default()
            };
            to_event(&[kv_str("service.name", "api")], &r).expect("a finding")
        };
        // Slower is evidence, faster is not; a drop in traffic stays traffic either way.
        assert!(!finding("red.latency.p99", 90.0).load);
        assert!(finding("red.latency.p99", 10.0).load);
        assert!(!finding("red.error_ratio", 90.0).load);
        assert!(finding("red.error_ratio", 10.0).load);
        assert!(!finding("process_cpu_seconds_total.rate", 10.0).load);
        assert!(finding("red.request.rate", 90.0).load);
    }

    // Issue #19: on a host at load 10 every service slowed at once. The host's CPU pressure is
    // context: it joins the incidents on its host (by `host.name`, whatever the services'
    // resources are named by) and gives its reason there, and opens none alone.
    #[test]
    fn host_cpu_pressure_is_context_on_its_host() {
        let finding = |res: &[KeyValue], metric: &str| {
            let r = LogRecord {
                event_name: "vigil.anomaly".into(),
                time_unix_nano: 1,
                attributes: vec![
                    kv_str("vigil.anomaly.state", "start"),
                    kv_str("vigil.anomaly.metric", metric),
                    kv_str("vigil.anomaly.series", metric),
                    kv_f64("vigil.anomaly.observed", 9.0),
                    kv_f64("vigil.anomaly.expected", 1.0),
                    kv_f64("vigil.anomaly.expected.upper", 2.0),
                ],
                ..Default::default()
            };
            to_event(res, &r).expect("a finding")
        };
        let host = [kv_str("host.name", "node-1")];
        for m in [
            "system.cpu.load_average.1m",
            "system.cpu.utilization",
            "k8s.node.cpu.utilization",
        ] {
            let e = finding(&host, m);
            assert!(e.load && e.service.is_none(), "{m}: {e:?}");
            assert_eq!(e.host.as_deref(), Some("node-1"));
        }
        // Other host findings (a disk filling up) stay findings of their own.
        assert!(!finding(&host, "system.filesystem.utilization").load);
        // A service's own CPU is its finding, not its host's.
        let pod = [
            kv_str("service.name", "api"),
            kv_str("k8s.pod.name", "api-1"),
            kv_str("k8s.node.name", "node-1"),
        ];
        let e = finding(&pod, "system.cpu.utilization");
        assert!(!e.load);
        assert_eq!(
            (e.resource.as_str(), e.host.as_deref()),
            ("k8s.pod.name=api-1", Some("node-1"))
        );
    }

    #[test]
    fn a_long_multibyte_pattern_body_is_cut_on_a_character() {
        let r = LogRecord {
            event_name: "vigil.pattern.new".into(),
            body: Some(AnyValue {
                value: Some(Value::StringValue("é".repeat(100))),
            }),
            attributes: vec![kv_str("log.pattern.id", "p1")],
            ..Default::default()
        };
        let e = to_event(&[kv_str("service.name", "api")], &r).expect("a finding");
        assert_eq!(e.kind, EventKind::Pattern);
        assert!(e.detail.contains(&"é".repeat(80)), "{}", e.detail);
        assert!(!e.detail.contains(&"é".repeat(81)), "{}", e.detail);
    }

    #[tokio::test]
    async fn a_finding_stamped_far_in_the_future_still_resolves() {
        let sink = Arc::new(Sink::default());
        let id = ComponentId::parse("correlation").unwrap();
        let cfg = CorrelationConfig {
            gap: Duration::from_millis(50),
            ..CorrelationConfig::default()
        };
        let p = Correlation::new(settings(&id), cfg, sink.clone());
        p.start(&Host::detached()).await.unwrap();
        // Ten years ahead of the wall clock: a skewed host clock.
        let t = now_ns() / 1_000_000_000 + 10 * 365 * 24 * 3600;
        p.consume(Telemetry::Logs(vec![anomaly("db-1", "start", t, 0.9)]))
            .await
            .unwrap();
        p.consume(Telemetry::Logs(vec![anomaly("db-1", "end", t + 10, 0.9)]))
            .await
            .unwrap();
        let resolved = || {
            lock(&sink.0).iter().any(|r| {
                r.event_name == "vigil.incident"
                    && get_str(&r.attributes, "vigil.incident.status") == Some("resolved")
            })
        };
        for _ in 0..200 {
            if resolved() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(resolved(), "the incident never resolved before shutdown");
        p.shutdown().await.unwrap();
    }

    #[test]
    fn an_slo_alert_is_a_finding_whose_budget_the_incident_record_carries() {
        let rec = |state: &str| LogRecord {
            event_name: "vigil.slo".into(),
            attributes: vec![
                kv_str("vigil.slo.state", state),
                kv_str("vigil.slo.name", "web-avail"),
                kv_str("vigil.slo.service", "web"),
                kv_str("vigil.slo.indicator", "availability"),
                kv_f64("vigil.slo.alert.burn_rate", 14.4),
                kv_f64("vigil.slo.alert.long_window_s", 3600.0),
                kv_str("vigil.slo.alert.severity", "page"),
                kv_f64("vigil.slo.burn_rate.long", 20.0),
                kv_f64("vigil.slo.burn_rate.peak", 22.0),
                kv_f64("vigil.slo.error_budget.spent", 0.03),
            ],
            ..Default::default()
        };
        let res = [kv_str("service.name", "web")];
        let e = to_event(&res, &rec("firing")).expect("a finding");
        assert_eq!(e.kind, EventKind::AnomalyStart);
        assert_eq!(e.service.as_deref(), Some("web"));
        assert_eq!(e.budget, Some(0.03));
        assert_eq!(e.band, None);
        assert!(!e.load);
        assert!(e.detail.contains("22.0×"), "{}", e.detail);
        let end = to_event(&res, &rec("resolved")).expect("a finding");
        assert_eq!(end.kind, EventKind::AnomalyEnd);
        assert_eq!(end.key, e.key);
        // Through the engine, with a finding on the service that says where (an SLO alert alone
        // opens no incident): the record carries the budget spent and the priority.
        let mut c = Correlator::new(
            EngineConfig {
                settle_ns: 0,
                ..EngineConfig::default()
            },
            1,
        );
        let mut slow = e.clone();
        slow.key = "anomaly:red.latency.p99{service.name=web}".into();
        slow.budget = None;
        slow.band = Some(5.0);
        assert!(c.observe_all(&[e], &NoTopology).is_empty());
        let out = c.observe_all(&[slow], &NoTopology);
        let prio = priorities(&c, &out);
        assert_eq!(prio, vec![Some(1)]);
        let r = incident_record(&out[0], prio[0], 0);
        assert_eq!(
            attr(&r, "vigil.incident.error_budget.spent"),
            Some(&Value::DoubleValue(0.03))
        );
        assert_eq!(
            attr(&r, "vigil.incident.priority"),
            Some(&Value::IntValue(1))
        );
        assert_eq!(r.severity_text, "ERROR");
    }

    #[test]
    fn config_errors_name_the_key() {
        let id = ComponentId::parse("correlation").unwrap();
        let e = parse(&id, &serde_json::json!({"gap": "0s"})).unwrap_err();
        assert!(e.to_string().contains("gap"), "{e}");
        let e = parse(&id, &serde_json::json!({"max_members": 0})).unwrap_err();
        assert!(e.to_string().contains("max_members"), "{e}");
        let e = parse(&id, &serde_json::json!({"min_severity": -1.0})).unwrap_err();
        assert!(e.to_string().contains("min_severity"), "{e}");
        let c = parse(
            &id,
            &serde_json::json!({"settle": "2s", "virtual_min_severity": 10}),
        )
        .unwrap();
        assert_eq!(c.engine().settle_ns, 2_000_000_000);
        assert_eq!(c.engine().virtual_min_severity, 10.0);
        assert!(parse(&id, &serde_json::json!({"window": "10m", "max_hops": 3})).is_ok());
    }
}
