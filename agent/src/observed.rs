//! What vigil sees now, for the status page (`zpages`' `/debug/vigilz`): open anomalies, incidents with
//! their root-cause candidates, service-graph edges, log-pattern counts and recent score bands. A tap
//! that the service graph puts at each logs and metrics pipeline's input and output reads the events
//! and gauges that already flow (docs/events.md); it never changes or keeps a batch, so the components
//! that make them need no hook. Nothing is tapped unless the config enables a `zpages` extension.
//!
//! Every table is bounded (see [`Limits`]); what does not fit is counted in `vigil_zpages_dropped`
//! (labelled `what`) and shown on the page.

use crate::config::{Config, Pipeline};
use async_trait::async_trait;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, ResourceMetrics};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use vigil_core::{ConsumeError, Consumer, Signal, Telemetry};

/// The bounds of what the status page keeps.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open anomaly episodes (one per series). Beyond it the oldest is dropped.
    pub anomalies: usize,
    /// Ended episodes kept to show what just happened.
    pub ended: usize,
    /// Incidents, open and resolved. Resolved ones make room first, oldest first.
    pub incidents: usize,
    /// Distinct log patterns counted. Beyond it the least counted pattern makes room.
    pub patterns: usize,
    /// Service-graph edges.
    pub edges: usize,
    /// Series whose score band is kept for plots.
    pub series: usize,
    /// Points kept per series (an hour at a 10 s interval).
    pub points: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            anomalies: 1000,
            ended: 20,
            incidents: 200,
            patterns: 1000,
            edges: 1000,
            series: 64,
            points: 360,
        }
    }
}

/// One anomaly episode as its `vigil.anomaly` events describe it.
#[derive(Debug, Clone, Default)]
pub struct Anomaly {
    pub series: String,
    pub metric: String,
    pub signal: String,
    pub detector: String,
    pub score: f64,
    pub observed: f64,
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
    /// The first anomalous point's time (nanoseconds since the epoch).
    pub started: u64,
    /// The last anomalous point's time, once ended.
    pub ended: Option<u64>,
    pub end_reason: String,
    pub body: String,
}

/// One incident as its latest `vigil.incident` record describes it.
#[derive(Debug, Clone, Default)]
pub struct Incident {
    pub id: String,
    pub status: String,
    pub severity: String,
    pub member_count: i64,
    pub services: Vec<String>,
    pub root_cause: String,
    pub candidates: Vec<String>,
    pub members: Vec<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub merged_into: String,
    pub body: String,
    /// Order of the last update, so that the newest shows first and the oldest resolved goes first.
    seq: u64,
}

/// A log pattern and how many records of it went by.
#[derive(Debug, Clone, Default)]
pub struct Pattern {
    pub id: String,
    pub template: String,
    pub count: u64,
    /// Whether a `vigil.pattern.new` event announced it.
    pub announced: bool,
}

/// A service-graph edge's latest cumulative counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Edge {
    pub requests: f64,
    pub failed: f64,
}

/// One scored point of a series: its band and score.
#[derive(Debug, Clone, Copy)]
pub struct BandPoint {
    pub t: u64,
    pub lower: f64,
    pub upper: f64,
    pub score: f64,
    /// The series' own value at `t` (`vigil.anomaly.observed`).
    pub value: f64,
}

impl BandPoint {
    fn at(t: u64) -> BandPoint {
        BandPoint {
            t,
            lower: f64::NAN,
            upper: f64::NAN,
            score: f64::NAN,
            value: f64::NAN,
        }
    }
}

/// Things that did not fit, by kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dropped {
    pub anomalies: u64,
    pub incidents: u64,
    pub patterns: u64,
    pub edges: u64,
    pub series: u64,
}

#[derive(Default)]
struct State {
    anomalies: BTreeMap<String, Anomaly>,
    ended: VecDeque<Anomaly>,
    incidents: HashMap<String, Incident>,
    patterns: HashMap<String, Pattern>,
    edges: BTreeMap<(String, String), Edge>,
    series: HashMap<String, (u64, VecDeque<BandPoint>)>,
    seq: u64,
    dropped: Dropped,
    pattern_new_events: u64,
}

/// A copy of everything the page shows, taken under the lock at once.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub anomalies: Vec<Anomaly>,
    pub ended: Vec<Anomaly>,
    /// Newest first.
    pub incidents: Vec<Incident>,
    /// Most counted first.
    pub patterns: Vec<Pattern>,
    pub pattern_count: usize,
    pub pattern_new_events: u64,
    pub edges: Vec<(String, String, Edge)>,
    /// Series with an open or ended anomaly first, then by their peak recent score.
    pub bands: Vec<(String, Vec<BandPoint>)>,
    pub series_tracked: usize,
    pub dropped: Dropped,
    pub limits: Limits,
    /// The running config, as the service last started or reloaded it.
    pub config: Option<Arc<Config>>,
}

/// The shared state the taps write and the status page reads.
pub struct Observed {
    limits: Limits,
    state: Mutex<State>,
    config: Mutex<Option<Arc<Config>>>,
}

impl Default for Observed {
    fn default() -> Observed {
        Observed::new(Limits::default())
    }
}

static GLOBAL: OnceLock<Arc<Observed>> = OnceLock::new();

/// The process's one `Observed`. It is per process, like the lifecycle status in `service::status`:
/// the taps are made while the graph is built, before any `Host` exists, and a reload that keeps the
/// `zpages` extension must keep what was seen.
pub fn global() -> Arc<Observed> {
    GLOBAL.get_or_init(|| Arc::new(Observed::default())).clone()
}

/// Where in a pipeline a tap sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// Before the first processor: what receivers and connectors send in.
    Input,
    /// After the last processor, before the fan-out to exporters and connectors.
    Output,
}

/// Wraps `next` in a tap when the config serves a status page; otherwise returns it unchanged, so a
/// config without `zpages` pays nothing. Traces are never tapped: nothing the page shows is a span.
/// Cost per batch: BENCHMARKS.md, "Status page tap".
pub fn tap(cfg: &Config, p: &Pipeline, at: At, next: Arc<dyn Consumer>) -> Arc<dyn Consumer> {
    let serves = cfg
        .service_extensions
        .iter()
        .any(|id| id.type_name() == "zpages");
    if !serves || p.signal == Signal::Traces {
        return next;
    }
    // What receivers send in is seen at the output anyway; only a connector's events (which a
    // filter in the same pipeline may drop, as in incidents.yaml) need a look before the processors.
    if at == At::Input && !p.receivers.iter().any(|r| cfg.connectors.contains_key(r)) {
        return next;
    }
    // A record is counted once for its pattern: where the pattern id was put on it.
    let count_patterns = at == At::Output
        && p.processors
            .iter()
            .any(|id| matches!(id.type_name(), "logpattern" | "log_pattern"));
    Arc::new(Tap {
        observed: global(),
        count_patterns,
        next,
    })
}

/// Observes each batch on its way to `next` and passes it on untouched.
pub struct Tap {
    observed: Arc<Observed>,
    count_patterns: bool,
    next: Arc<dyn Consumer>,
}

#[async_trait]
impl Consumer for Tap {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        self.observed.observe(&data, self.count_patterns);
        self.next.consume(data).await
    }
}

fn any(kv: &KeyValue) -> Option<&any_value::Value> {
    kv.value.as_ref().and_then(|v| v.value.as_ref())
}

fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs.iter().find(|kv| kv.key == key).and_then(any)
}

fn text(attrs: &[KeyValue], key: &str) -> String {
    match find(attrs, key) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(v) => vigil_core::attrs::value_to_string(v),
        None => String::new(),
    }
}

fn number(attrs: &[KeyValue], key: &str) -> f64 {
    match find(attrs, key) {
        Some(any_value::Value::DoubleValue(d)) => *d,
        Some(any_value::Value::IntValue(i)) => *i as f64,
        _ => f64::NAN,
    }
}

fn strings(attrs: &[KeyValue], key: &str) -> Vec<String> {
    match find(attrs, key) {
        Some(any_value::Value::ArrayValue(a)) => a
            .values
            .iter()
            .filter_map(|v| v.value.as_ref())
            .map(vigil_core::attrs::value_to_string)
            .collect(),
        Some(any_value::Value::StringValue(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn body(r: &LogRecord) -> String {
    r.body
        .as_ref()
        .and_then(|b| b.value.as_ref())
        .map(vigil_core::attrs::value_to_string)
        .unwrap_or_default()
}

/// What one batch holds of interest, gathered without the lock.
#[derive(Default)]
struct Seen<'a> {
    anomalies: Vec<(bool, Anomaly)>,
    incidents: Vec<Incident>,
    new_patterns: Vec<(String, String)>,
    patterns: HashMap<&'a str, (&'a str, u64)>,
    edges: Vec<(&'a str, &'a str, bool, f64)>,
    bands: Vec<(&'a str, u64, usize, f64)>,
}

impl Seen<'_> {
    fn is_empty(&self) -> bool {
        self.anomalies.is_empty()
            && self.incidents.is_empty()
            && self.new_patterns.is_empty()
            && self.patterns.is_empty()
            && self.edges.is_empty()
            && self.bands.is_empty()
    }
}

const SCORE: usize = 0;
const LOWER: usize = 1;
const UPPER: usize = 2;
const VALUE: usize = 3;

fn band_gauge(name: &str) -> Option<usize> {
    match name {
        "vigil.anomaly.score" => Some(SCORE),
        "vigil.anomaly.expected.lower" => Some(LOWER),
        "vigil.anomaly.expected.upper" => Some(UPPER),
        "vigil.anomaly.observed" => Some(VALUE),
        _ => None,
    }
}

impl Observed {
    pub fn new(limits: Limits) -> Observed {
        Observed {
            limits,
            state: Mutex::new(State::default()),
            config: Mutex::new(None),
        }
    }

    /// Records the config that now runs (at start and after each reload).
    pub fn set_config(&self, cfg: &Config) {
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(cfg.clone()));
    }

    /// Reads what `data` holds of interest. Batches with none return without taking the lock or
    /// allocating.
    pub fn observe(&self, data: &Telemetry, count_patterns: bool) {
        let mut seen = Seen::default();
        match data {
            Telemetry::Logs(rl) => logs(rl, count_patterns, &mut seen),
            Telemetry::Metrics(rm) => metrics(rm, &mut seen),
            Telemetry::Traces(_) | Telemetry::Profiles(_) => return,
        }
        if seen.is_empty() {
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.merge(&mut st, seen);
    }

    fn merge(&self, st: &mut State, seen: Seen<'_>) {
        let l = self.limits;
        for (start, a) in seen.anomalies {
            if start {
                if !st.anomalies.contains_key(&a.series) && st.anomalies.len() >= l.anomalies {
                    let oldest = st
                        .anomalies
                        .values()
                        .min_by_key(|a| a.started)
                        .map(|a| a.series.clone());
                    if let Some(k) = oldest {
                        st.anomalies.remove(&k);
                    }
                    st.dropped.anomalies += 1;
                    metrics::counter!("vigil_zpages_dropped", "what" => "anomalies").increment(1);
                }
                st.anomalies.insert(a.series.clone(), a);
            } else {
                // An end seen twice (at a pipeline's input and output) is kept once.
                st.anomalies.remove(&a.series);
                let again = st
                    .ended
                    .iter()
                    .any(|e| e.series == a.series && e.ended == a.ended);
                if !again {
                    st.ended.push_front(a);
                    st.ended.truncate(l.ended);
                }
            }
        }
        for mut inc in seen.incidents {
            st.seq += 1;
            inc.seq = st.seq;
            if !st.incidents.contains_key(&inc.id) && st.incidents.len() >= l.incidents {
                // Resolved incidents make room first, then the least recently updated.
                let victim = st
                    .incidents
                    .values()
                    .min_by_key(|i| (i.status != "resolved", i.seq))
                    .map(|i| i.id.clone());
                if let Some(k) = victim {
                    st.incidents.remove(&k);
                }
                st.dropped.incidents += 1;
                metrics::counter!("vigil_zpages_dropped", "what" => "incidents").increment(1);
            }
            st.incidents.insert(inc.id.clone(), inc);
        }
        for (id, template) in seen.new_patterns {
            st.pattern_new_events += 1;
            if let Some(p) = self.pattern_slot(st, &id) {
                p.announced = true;
                if p.template.is_empty() {
                    p.template = template;
                }
            }
        }
        for (id, (template, n)) in seen.patterns {
            if let Some(p) = self.pattern_slot(st, id) {
                p.count += n;
                if !template.is_empty() && p.template != template {
                    // The miner generalises a template over time; the newest text is the truest.
                    p.template = template.to_string();
                }
            }
        }
        for (client, server, failed, v) in seen.edges {
            let key = (client.to_string(), server.to_string());
            if !st.edges.contains_key(&key) && st.edges.len() >= l.edges {
                st.dropped.edges += 1;
                metrics::counter!("vigil_zpages_dropped", "what" => "edges").increment(1);
                continue;
            }
            let e = st.edges.entry(key).or_default();
            if failed {
                e.failed = v;
            } else {
                e.requests = v;
            }
        }
        for (series, t, which, v) in seen.bands {
            self.band_point(st, series, t, which, v);
        }
    }

    fn pattern_slot<'s>(&self, st: &'s mut State, id: &str) -> Option<&'s mut Pattern> {
        if !st.patterns.contains_key(id) {
            if st.patterns.len() >= self.limits.patterns {
                let least = st
                    .patterns
                    .values()
                    .min_by_key(|p| p.count)
                    .map(|p| p.id.clone());
                if let Some(k) = least {
                    st.patterns.remove(&k);
                }
                st.dropped.patterns += 1;
                metrics::counter!("vigil_zpages_dropped", "what" => "patterns").increment(1);
            }
            st.patterns.insert(
                id.to_string(),
                Pattern {
                    id: id.to_string(),
                    ..Default::default()
                },
            );
        }
        st.patterns.get_mut(id)
    }

    fn band_point(&self, st: &mut State, series: &str, t: u64, which: usize, v: f64) {
        let l = self.limits;
        st.seq += 1;
        let seq = st.seq;
        if !st.series.contains_key(series) {
            if st.series.len() >= l.series {
                // A series with an anomaly is worth a slot more than one without: the latter make
                // room, least recently updated first; otherwise the new series is not kept.
                let victim = st
                    .series
                    .iter()
                    .filter(|(k, _)| {
                        !st.anomalies.contains_key(*k) && !st.ended.iter().any(|e| &e.series == *k)
                    })
                    .min_by_key(|(_, (s, _))| *s)
                    .map(|(k, _)| k.clone());
                let wanted = st.anomalies.contains_key(series)
                    || (which == SCORE && v >= 0.5)
                    || st.ended.iter().any(|e| e.series == series);
                match victim {
                    Some(k) if wanted => {
                        st.series.remove(&k);
                    }
                    _ => {
                        st.dropped.series += 1;
                        metrics::counter!("vigil_zpages_dropped", "what" => "series").increment(1);
                        return;
                    }
                }
            }
            st.series
                .insert(series.to_string(), (seq, VecDeque::with_capacity(16)));
        }
        let Some((last, ring)) = st.series.get_mut(series) else {
            return;
        };
        *last = seq;
        // The three gauges of one point come as separate metrics; they meet again by timestamp. A
        // point seen twice (input and output taps) just writes the same values again.
        let pos = ring.iter().rposition(|p| p.t <= t);
        let p = match pos {
            Some(i) if ring[i].t == t => &mut ring[i],
            Some(i) => {
                ring.insert(i + 1, BandPoint::at(t));
                &mut ring[i + 1]
            }
            None => {
                ring.push_front(BandPoint::at(t));
                &mut ring[0]
            }
        };
        match which {
            SCORE => p.score = v,
            LOWER => p.lower = v,
            UPPER => p.upper = v,
            _ => p.value = v,
        }
        while ring.len() > l.points {
            ring.pop_front();
        }
    }

    /// Everything the page shows, copied.
    pub fn snapshot(&self) -> Snapshot {
        let config = self
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut anomalies: Vec<Anomaly> = st.anomalies.values().cloned().collect();
        anomalies.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut incidents: Vec<Incident> = st.incidents.values().cloned().collect();
        incidents.sort_by(|a, b| {
            (a.status == "resolved")
                .cmp(&(b.status == "resolved"))
                .then(b.seq.cmp(&a.seq))
        });
        let mut patterns: Vec<Pattern> = st.patterns.values().cloned().collect();
        patterns.sort_by(|a, b| b.count.cmp(&a.count).then(a.id.cmp(&b.id)));
        let pattern_count = patterns.len();
        patterns.truncate(20);
        let rank = |k: &str| -> (u8, f64) {
            if let Some(a) = st.anomalies.get(k) {
                (0, -a.score)
            } else if let Some(e) = st.ended.iter().find(|e| e.series == k) {
                (1, -e.score)
            } else {
                let peak = st
                    .series
                    .get(k)
                    .map(|(_, r)| r.iter().map(|p| p.score).fold(0.0, f64::max))
                    .unwrap_or(0.0);
                (2, -peak)
            }
        };
        let mut bands: Vec<(String, Vec<BandPoint>)> = st
            .series
            .iter()
            .map(|(k, (_, r))| (k.clone(), r.iter().copied().collect()))
            .collect();
        bands.sort_by(|a, b| {
            let (ra, rb) = (rank(&a.0), rank(&b.0));
            ra.0.cmp(&rb.0).then(ra.1.total_cmp(&rb.1))
        });
        Snapshot {
            anomalies,
            ended: st.ended.iter().cloned().collect(),
            incidents,
            patterns,
            pattern_count,
            pattern_new_events: st.pattern_new_events,
            edges: st
                .edges
                .iter()
                .map(|((c, s), e)| (c.clone(), s.clone(), *e))
                .collect(),
            series_tracked: bands.len(),
            bands,
            dropped: st.dropped,
            limits: self.limits,
            config,
        }
    }
}

/// The event name: the record's `EventName` field, else its `event.name` attribute.
fn event_name(r: &LogRecord) -> &str {
    if !r.event_name.is_empty() {
        return &r.event_name;
    }
    match find(&r.attributes, "event.name") {
        Some(any_value::Value::StringValue(s)) => s,
        _ => "",
    }
}

fn logs<'a>(rl: &'a [ResourceLogs], count_patterns: bool, seen: &mut Seen<'a>) {
    for r in rl
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
    {
        match event_name(r) {
            "vigil.anomaly" => seen.anomalies.push(anomaly(r)),
            "vigil.incident" => seen.incidents.push(incident(r)),
            "vigil.pattern.new" => seen.new_patterns.push((
                text(&r.attributes, "vigil.pattern.id"),
                text(&r.attributes, "vigil.pattern.template"),
            )),
            name if name.starts_with("vigil.") => {}
            _ if count_patterns => {
                let mut id = "";
                let mut template = "";
                let mut n = 1;
                for kv in &r.attributes {
                    match (kv.key.as_str(), any(kv)) {
                        ("log.pattern.id", Some(any_value::Value::StringValue(s))) => id = s,
                        ("log.pattern", Some(any_value::Value::StringValue(s))) => template = s,
                        // A dedup summary stands for the repeats it held back; its first record
                        // already went by.
                        ("vigil.dedup.count", Some(any_value::Value::IntValue(c))) => {
                            n = u64::try_from(*c).unwrap_or(1).saturating_sub(1)
                        }
                        _ => {}
                    }
                }
                if id.is_empty() || n == 0 {
                    continue;
                }
                // One lock per batch; a pattern's key is allocated only when it is first counted.
                let e = seen.patterns.entry(id).or_insert((template, 0));
                e.1 += n;
            }
            _ => {}
        }
    }
}

fn anomaly(r: &LogRecord) -> (bool, Anomaly) {
    let a = &r.attributes;
    let start = text(a, "vigil.anomaly.state") != "end";
    let t = if r.time_unix_nano != 0 {
        r.time_unix_nano
    } else {
        r.observed_time_unix_nano
    };
    (
        start,
        Anomaly {
            series: text(a, "vigil.anomaly.series"),
            metric: text(a, "vigil.anomaly.metric"),
            signal: text(a, "vigil.anomaly.signal"),
            detector: text(a, "vigil.anomaly.detector"),
            score: number(a, "vigil.anomaly.score"),
            observed: number(a, "vigil.anomaly.observed"),
            expected: number(a, "vigil.anomaly.expected"),
            lower: number(a, "vigil.anomaly.expected.lower"),
            upper: number(a, "vigil.anomaly.expected.upper"),
            started: if start {
                t
            } else {
                let d = number(a, "vigil.anomaly.duration_s");
                if d.is_finite() {
                    t.saturating_sub((d * 1e9) as u64)
                } else {
                    t
                }
            },
            ended: (!start).then_some(t),
            end_reason: text(a, "vigil.anomaly.end_reason"),
            body: body(r),
        },
    )
}

fn incident(r: &LogRecord) -> Incident {
    let a = &r.attributes;
    Incident {
        id: text(a, "vigil.incident.id"),
        status: text(a, "vigil.incident.status"),
        severity: r.severity_text.clone(),
        member_count: number(a, "vigil.incident.member_count") as i64,
        services: strings(a, "vigil.incident.services"),
        root_cause: text(a, "vigil.incident.root_cause"),
        candidates: strings(a, "vigil.incident.root_cause.candidates"),
        members: strings(a, "vigil.incident.members"),
        first_seen: text(a, "vigil.incident.first_seen"),
        last_seen: text(a, "vigil.incident.last_seen"),
        merged_into: text(a, "vigil.incident.merged_into"),
        body: body(r),
        seq: 0,
    }
}

fn point_value(v: &Option<number_data_point::Value>) -> f64 {
    match v {
        Some(number_data_point::Value::AsDouble(d)) => *d,
        Some(number_data_point::Value::AsInt(i)) => *i as f64,
        None => f64::NAN,
    }
}

fn str_attr<'a>(attrs: &'a [KeyValue], key: &str) -> &'a str {
    match find(attrs, key) {
        Some(any_value::Value::StringValue(s)) => s,
        _ => "",
    }
}

fn metrics<'a>(rm: &'a [ResourceMetrics], seen: &mut Seen<'a>) {
    for m in rm
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
    {
        let failed = match m.name.as_str() {
            "traces_service_graph_request_total" => false,
            "traces_service_graph_request_failed_total" => true,
            name => {
                let Some(which) = band_gauge(name) else {
                    continue;
                };
                let Some(metric::Data::Gauge(g)) = &m.data else {
                    continue;
                };
                for p in &g.data_points {
                    let series = str_attr(&p.attributes, "vigil.anomaly.series");
                    if !series.is_empty() {
                        seen.bands
                            .push((series, p.time_unix_nano, which, point_value(&p.value)));
                    }
                }
                continue;
            }
        };
        let Some(metric::Data::Sum(s)) = &m.data else {
            continue;
        };
        for p in &s.data_points {
            let client = str_attr(&p.attributes, "client");
            let server = str_attr(&p.attributes, "server");
            if !client.is_empty() || !server.is_empty() {
                seen.edges
                    .push((client, server, failed, point_value(&p.value)));
            }
        }
    }
}

#[cfg(test)]
mod tests;
