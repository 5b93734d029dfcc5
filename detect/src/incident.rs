//! Incident correlation: groups anomaly-like events that overlap in time and are related (same
//! resource, or services close in the dependency graph) into incidents, and ranks which service most
//! likely caused each one. Plain Rust over strings and nanosecond timestamps, so the `correlation`
//! processor and `vigil eval rca` run exactly the same code.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Who calls whom, as far as the caller knows. `callees` of a service are the services it calls.
pub trait Topology {
    /// The services `service` calls directly.
    fn callees(&self, service: &str) -> Vec<String>;
    /// The services that call `service` directly.
    fn callers(&self, service: &str) -> Vec<String>;
}

/// A topology with no edges, for when no service graph is available.
pub struct NoTopology;

impl Topology for NoTopology {
    fn callees(&self, _: &str) -> Vec<String> {
        Vec::new()
    }
    fn callers(&self, _: &str) -> Vec<String> {
        Vec::new()
    }
}

/// A fixed edge list, handy for tests and for the evaluation.
#[derive(Debug, Clone, Default)]
pub struct StaticTopology {
    down: HashMap<String, BTreeSet<String>>,
    up: HashMap<String, BTreeSet<String>>,
}

impl StaticTopology {
    /// Adds the edge `client` → `server`.
    pub fn add(&mut self, client: &str, server: &str) {
        self.down
            .entry(client.to_string())
            .or_default()
            .insert(server.to_string());
        self.up
            .entry(server.to_string())
            .or_default()
            .insert(client.to_string());
    }
}

impl Topology for StaticTopology {
    fn callees(&self, service: &str) -> Vec<String> {
        self.down
            .get(service)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
    fn callers(&self, service: &str) -> Vec<String> {
        self.up
            .get(service)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// What kind of finding an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// An anomalous episode starts.
    AnomalyStart,
    /// An anomalous episode ends.
    AnomalyEnd,
    /// A new log pattern appeared: a point-in-time finding with no end.
    Pattern,
    /// A threshold crossing is forecast: a point-in-time finding with no end.
    Forecast,
}

/// One finding, reduced to what correlation needs.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    /// Identifies the member across its start and end (the anomaly's series).
    pub key: String,
    /// `service.name` of the data it is about, if any.
    pub service: Option<String>,
    /// The resource it is about (`host.name`, pod, or service), used for "same resource".
    pub resource: String,
    /// The data's timestamp, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// Severity in [0, 1].
    pub score: f64,
    /// A few words for the reason line, e.g. `http.server.duration 8× above its band`.
    pub detail: String,
}

/// One member of an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub key: String,
    pub service: Option<String>,
    pub resource: String,
    pub first_ns: u64,
    pub last_ns: u64,
    pub peak: f64,
    pub detail: String,
    /// Still anomalous (no end seen yet).
    pub active: bool,
}

/// A ranked root-cause candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub service: String,
    pub score: f64,
    /// One line a human can check.
    pub reason: String,
}

/// The public view of an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub id: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub members: Vec<Member>,
    /// Members refused because the incident was full.
    pub dropped_members: u64,
}

impl Incident {
    /// The distinct services involved, sorted.
    pub fn services(&self) -> Vec<String> {
        let s: BTreeSet<&String> = self
            .members
            .iter()
            .filter_map(|m| m.service.as_ref())
            .collect();
        s.into_iter().cloned().collect()
    }

    /// The distinct resources involved, sorted.
    pub fn resources(&self) -> Vec<String> {
        let s: BTreeSet<&String> = self.members.iter().map(|m| &m.resource).collect();
        s.into_iter().cloned().collect()
    }
}

/// The life-cycle step an output record reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open,
    Update,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Update => "update",
            Status::Resolved => "resolved",
        }
    }
}

/// One thing to report about an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub status: Status,
    pub incident: Incident,
    /// The top candidates, best first (at most `Config::candidates`).
    pub candidates: Vec<Candidate>,
}

/// Tuning; the defaults suit a 10–60 s collection interval.
#[derive(Debug, Clone)]
pub struct Config {
    /// An event joins an incident if it starts within `window` of the incident's last activity.
    pub window_ns: u64,
    /// An incident resolves once all its members ended and `gap` passed with nothing new.
    pub gap_ns: u64,
    /// Services this many calls apart (either direction) count as related.
    pub max_hops: usize,
    /// Open incidents kept at once; the least recently active is evicted beyond it.
    pub max_incidents: usize,
    /// Members kept per incident; later ones are counted and dropped.
    pub max_members: usize,
    /// An update is reported at most once per this interval per incident.
    pub update_interval_ns: u64,
    /// A member with no end event and no news for this long counts as ended.
    pub member_ttl_ns: u64,
    /// How many candidates a report carries.
    pub candidates: usize,
}

const SEC: u64 = 1_000_000_000;

impl Default for Config {
    fn default() -> Self {
        Config {
            window_ns: 300 * SEC,
            gap_ns: 120 * SEC,
            max_hops: 2,
            max_incidents: 1000,
            max_members: 200,
            update_interval_ns: 60 * SEC,
            member_ttl_ns: 3600 * SEC,
            candidates: 3,
        }
    }
}

struct Open {
    incident: Incident,
    /// Members joined since the last report.
    pending_update: bool,
    last_report_ns: u64,
}

/// The correlation state machine. Feed it events with `observe` and the passing of time with `tick`.
pub struct Correlator {
    cfg: Config,
    open: VecDeque<Open>,
    next_id: u64,
    /// Incidents evicted while open because `max_incidents` was reached.
    pub evicted_incidents: u64,
    /// Members refused because their incident had `max_members`.
    pub dropped_members: u64,
}

impl Correlator {
    /// A correlator whose incident ids start at `first_id` (so restarts do not reuse ids).
    pub fn new(cfg: Config, first_id: u64) -> Self {
        Correlator {
            cfg,
            open: VecDeque::new(),
            next_id: first_id,
            evicted_incidents: 0,
            dropped_members: 0,
        }
    }

    /// The number of open incidents.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Takes in one event; returns an `Open` report when it starts a new incident.
    pub fn observe(&mut self, ev: &Event, topo: &dyn Topology) -> Vec<Report> {
        let mut out = Vec::new();
        match ev.kind {
            EventKind::AnomalyEnd => {
                for o in self.open.iter_mut() {
                    if let Some(m) = o.incident.members.iter_mut().find(|m| m.key == ev.key) {
                        m.active = false;
                        m.last_ns = m.last_ns.max(ev.time_ns);
                        m.peak = m.peak.max(ev.score);
                        o.incident.last_ns = o.incident.last_ns.max(ev.time_ns);
                    }
                }
                return out;
            }
            EventKind::AnomalyStart | EventKind::Pattern | EventKind::Forecast => {}
        }
        let active = ev.kind == EventKind::AnomalyStart;
        // A repeated start of a member already in an incident just refreshes it.
        for o in self.open.iter_mut() {
            if let Some(m) = o.incident.members.iter_mut().find(|m| m.key == ev.key) {
                m.active = active;
                m.last_ns = m.last_ns.max(ev.time_ns);
                m.peak = m.peak.max(ev.score);
                o.incident.last_ns = o.incident.last_ns.max(ev.time_ns);
                return out;
            }
        }
        let window = self.cfg.window_ns;
        let max_hops = self.cfg.max_hops;
        let found = self.open.iter().position(|o| {
            let inc = &o.incident;
            let live = inc.members.iter().any(|m| m.active);
            let recent = live || ev.time_ns <= inc.last_ns.saturating_add(window);
            recent && inc.members.iter().any(|m| related(m, ev, topo, max_hops))
        });
        let member = Member {
            key: ev.key.clone(),
            service: ev.service.clone(),
            resource: ev.resource.clone(),
            first_ns: ev.time_ns,
            last_ns: ev.time_ns,
            peak: ev.score,
            detail: ev.detail.clone(),
            active,
        };
        match found {
            Some(i) => {
                let o = &mut self.open[i];
                if o.incident.members.len() >= self.cfg.max_members {
                    o.incident.dropped_members += 1;
                    self.dropped_members += 1;
                    return out;
                }
                o.incident.members.push(member);
                o.incident.first_ns = o.incident.first_ns.min(ev.time_ns);
                o.incident.last_ns = o.incident.last_ns.max(ev.time_ns);
                o.pending_update = true;
            }
            None => {
                if self.open.len() >= self.cfg.max_incidents.max(1) {
                    // Evict the least recently active: it is the most likely to be over already.
                    if let Some((idx, _)) = self
                        .open
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, o)| o.incident.last_ns)
                    {
                        self.open.remove(idx);
                        self.evicted_incidents += 1;
                    }
                }
                let id = self.next_id;
                self.next_id += 1;
                let incident = Incident {
                    id,
                    first_ns: ev.time_ns,
                    last_ns: ev.time_ns,
                    members: vec![member],
                    dropped_members: 0,
                };
                out.push(Report {
                    status: Status::Open,
                    candidates: rank(&incident, topo, self.cfg.max_hops, self.cfg.candidates),
                    incident: incident.clone(),
                });
                self.open.push_back(Open {
                    incident,
                    pending_update: false,
                    last_report_ns: ev.time_ns,
                });
            }
        }
        out
    }

    /// Advances time to `now_ns`: reports rate-limited updates and resolves quiet incidents.
    pub fn tick(&mut self, now_ns: u64, topo: &dyn Topology) -> Vec<Report> {
        let mut out = Vec::new();
        let mut keep = VecDeque::with_capacity(self.open.len());
        while let Some(mut o) = self.open.pop_front() {
            for m in o.incident.members.iter_mut() {
                if m.active && now_ns.saturating_sub(m.last_ns) >= self.cfg.member_ttl_ns {
                    m.active = false;
                }
            }
            let live = o.incident.members.iter().any(|m| m.active);
            if !live && now_ns.saturating_sub(o.incident.last_ns) >= self.cfg.gap_ns {
                out.push(Report {
                    status: Status::Resolved,
                    candidates: rank(&o.incident, topo, self.cfg.max_hops, self.cfg.candidates),
                    incident: o.incident,
                });
                continue;
            }
            if o.pending_update
                && now_ns.saturating_sub(o.last_report_ns) >= self.cfg.update_interval_ns
            {
                o.pending_update = false;
                o.last_report_ns = now_ns;
                out.push(Report {
                    status: Status::Update,
                    candidates: rank(&o.incident, topo, self.cfg.max_hops, self.cfg.candidates),
                    incident: o.incident.clone(),
                });
            }
            keep.push_back(o);
        }
        self.open = keep;
        out
    }

    /// Resolves everything still open (at shutdown), so that opens and resolves pair up.
    pub fn close_all(&mut self, topo: &dyn Topology) -> Vec<Report> {
        self.open
            .drain(..)
            .map(|o| Report {
                status: Status::Resolved,
                candidates: rank(&o.incident, topo, self.cfg.max_hops, self.cfg.candidates),
                incident: o.incident,
            })
            .collect()
    }
}

fn related(m: &Member, ev: &Event, topo: &dyn Topology, max_hops: usize) -> bool {
    if m.resource == ev.resource {
        return true;
    }
    match (&m.service, &ev.service) {
        (Some(a), Some(b)) => a == b || hops(topo, a, b, max_hops).is_some(),
        _ => false,
    }
}

/// The undirected distance from `a` to `b` if it is at most `max`.
fn hops(topo: &dyn Topology, a: &str, b: &str, max: usize) -> Option<usize> {
    if a == b {
        return Some(0);
    }
    let mut seen: BTreeSet<String> = BTreeSet::from([a.to_string()]);
    let mut frontier = vec![a.to_string()];
    for d in 1..=max {
        let mut next = Vec::new();
        for s in &frontier {
            for n in topo.callees(s).into_iter().chain(topo.callers(s)) {
                if n == b {
                    return Some(d);
                }
                if seen.insert(n.clone()) {
                    next.push(n);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    None
}

/// Every service reachable from `s` by following `step`, up to `max` steps.
fn reach(s: &str, max: usize, step: &dyn Fn(&str) -> Vec<String>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut frontier = vec![s.to_string()];
    for _ in 0..max {
        let mut next = Vec::new();
        for x in &frontier {
            for n in step(x) {
                if n != s && seen.insert(n.clone()) {
                    next.push(n);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    seen
}

/// Ranks the incident's services as root-cause candidates.
///
/// Three signals, weighted: onset order (the cause usually turns anomalous first), graph position
/// (an anomalous service called, directly or not, by many other anomalous services explains them;
/// one that itself calls anomalous services is more likely a victim), and severity (peak score).
pub fn rank(inc: &Incident, topo: &dyn Topology, max_hops: usize, top: usize) -> Vec<Candidate> {
    // Per service: first onset, peak score, and the detail of its peak member.
    let mut per: BTreeMap<String, (u64, f64, String)> = BTreeMap::new();
    for m in &inc.members {
        let Some(s) = &m.service else { continue };
        let e = per
            .entry(s.clone())
            .or_insert((m.first_ns, m.peak, m.detail.clone()));
        e.0 = e.0.min(m.first_ns);
        if m.peak > e.1 {
            e.1 = m.peak;
            e.2 = m.detail.clone();
        }
    }
    let n = per.len();
    if n == 0 {
        return Vec::new();
    }
    // Long enough to cross any realistic call chain, so a deep dependency still counts.
    let depth = max_hops.max(8);
    let mut onsets: Vec<u64> = per.values().map(|v| v.0).collect();
    onsets.sort_unstable();
    let t0 = onsets[0];
    let spread = (onsets[n - 1] - t0).max(1) as f64;
    let mut cands: Vec<Candidate> = per
        .iter()
        .map(|(s, (first, peak, detail))| {
            let up = reach(s, depth, &|x| topo.callers(x));
            let down = reach(s, depth, &|x| topo.callees(x));
            let callers = up.iter().filter(|u| per.contains_key(*u)).count();
            let callees = down.iter().filter(|d| per.contains_key(*d)).count();
            let others = (n - 1).max(1) as f64;
            let onset = 1.0 - (*first - t0) as f64 / spread;
            let graph = callers as f64 / others - callees as f64 / others;
            let score = 0.3 * onset + 0.5 * graph + 0.2 * peak.clamp(0.0, 1.0);
            let reason = format!(
                "{s}: first anomaly at {}, called by {callers} of {} anomalous services{}, {detail}",
                clock(*first),
                n - 1,
                if callees > 0 {
                    format!(", calls {callees} anomalous")
                } else {
                    String::new()
                },
            );
            Candidate {
                service: s.clone(),
                score,
                reason,
            }
        })
        .collect();
    cands.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.service.cmp(&b.service))
    });
    cands.truncate(top);
    cands
}

/// `HH:MM:SS` UTC of a nanosecond timestamp.
fn clock(ns: u64) -> String {
    let s = ns / SEC;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, key: &str, svc: &str, t: u64, score: f64) -> Event {
        Event {
            kind,
            key: key.into(),
            service: Some(svc.into()),
            resource: format!("host-{svc}"),
            time_ns: t * SEC,
            score,
            detail: format!("{key} 5× above its band"),
        }
    }

    fn topo() -> StaticTopology {
        // Four frontends call an api which calls db-1; cache is unrelated.
        let mut t = StaticTopology::default();
        for f in ["web", "mobile", "batch", "admin"] {
            t.add(f, "api");
        }
        t.add("api", "db-1");
        t.add("other", "cache");
        t
    }

    #[test]
    fn related_anomalies_form_one_incident_with_the_shared_dependency_on_top() {
        let t = topo();
        let mut c = Correlator::new(Config::default(), 1);
        let mut reports = c.observe(&ev(EventKind::AnomalyStart, "db", "db-1", 100, 0.9), &t);
        for (i, f) in ["api", "web", "mobile", "batch", "admin"]
            .iter()
            .enumerate()
        {
            reports.extend(c.observe(&ev(EventKind::AnomalyStart, f, f, 110 + i as u64, 0.7), &t));
        }
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].status, Status::Open);
        assert_eq!(c.open_count(), 1);
        // Rate limit: no update before the interval, one after.
        assert!(c.tick(120 * SEC, &t).is_empty());
        let up = c.tick(200 * SEC, &t);
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].status, Status::Update);
        assert_eq!(up[0].incident.members.len(), 6);
        assert_eq!(up[0].candidates[0].service, "db-1");
        assert!(
            up[0].candidates[0].reason.starts_with(
                "db-1: first anomaly at 00:01:40, called by 5 of 5 anomalous services"
            ),
            "{}",
            up[0].candidates[0].reason
        );
        assert_eq!(up[0].candidates.len(), 3);
    }

    #[test]
    fn unrelated_anomalies_open_separate_incidents_and_resolve_after_the_gap() {
        let t = topo();
        let mut c = Correlator::new(Config::default(), 7);
        let a = c.observe(&ev(EventKind::AnomalyStart, "db", "db-1", 100, 0.9), &t);
        let b = c.observe(&ev(EventKind::AnomalyStart, "c", "cache", 101, 0.9), &t);
        assert_eq!((a[0].incident.id, b[0].incident.id), (7, 8));
        c.observe(&ev(EventKind::AnomalyEnd, "db", "db-1", 150, 0.9), &t);
        // Still within the gap: nothing resolves; the cache member is still active.
        assert!(c.tick(200 * SEC, &t).is_empty());
        let r = c.tick(271 * SEC, &t);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].status, r[0].incident.id), (Status::Resolved, 7));
        let rest = c.close_all(&t);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].incident.id, 8);
    }

    #[test]
    fn same_resource_is_related_without_a_graph() {
        let mut c = Correlator::new(Config::default(), 1);
        let mut a = ev(EventKind::AnomalyStart, "cpu", "x", 10, 0.6);
        let mut b = ev(EventKind::Pattern, "pat", "y", 20, 0.5);
        a.resource = "node-1".into();
        b.resource = "node-1".into();
        assert_eq!(c.observe(&a, &NoTopology).len(), 1);
        assert!(c.observe(&b, &NoTopology).is_empty());
        assert_eq!(c.open_count(), 1);
    }

    #[test]
    fn bounds_evict_incidents_and_drop_members() {
        let cfg = Config {
            max_incidents: 2,
            max_members: 2,
            ..Config::default()
        };
        let mut c = Correlator::new(cfg, 1);
        for (i, s) in ["a", "b", "c"].iter().enumerate() {
            c.observe(
                &ev(EventKind::AnomalyStart, s, s, 10 + i as u64, 0.6),
                &NoTopology,
            );
        }
        assert_eq!((c.open_count(), c.evicted_incidents), (2, 1));
        for k in ["c2", "c3"] {
            let mut e = ev(EventKind::AnomalyStart, k, "c", 20, 0.6);
            e.resource = "host-c".into();
            c.observe(&e, &NoTopology);
        }
        assert_eq!(c.dropped_members, 1);
    }

    #[test]
    fn late_events_outside_the_window_start_a_new_incident() {
        let t = topo();
        let mut c = Correlator::new(Config::default(), 1);
        c.observe(&ev(EventKind::AnomalyStart, "db", "db-1", 0, 0.9), &t);
        c.observe(&ev(EventKind::AnomalyEnd, "db", "db-1", 10, 0.9), &t);
        let r = c.observe(&ev(EventKind::AnomalyStart, "api", "api", 1000, 0.9), &t);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].incident.id, 2);
    }
}
