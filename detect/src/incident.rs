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

/// What a finding's service is: an instrumented service, or a node known only from its callers' spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Node {
    /// An instrumented service (it exports its own telemetry).
    #[default]
    Service,
    /// A named dependency seen only by its callers: a database or a queue.
    Dependency,
    /// A bare peer address (`10.0.0.5:8080`) that no instrumented service was seen listening at.
    Address,
}

/// Multiples of a band an observation lies from its expected value: `|value − expected|` over the
/// distance from the expected value to the band's upper edge. Infinite for a band of no width; `None`
/// when a value is not finite. The `vigil.anomaly` body and the incident's candidate lines both read
/// multiples through this and [`band_words`], so that they agree.
pub fn band_multiple(value: f64, expected: f64, upper: f64) -> Option<f64> {
    if !(value.is_finite() && expected.is_finite() && upper.is_finite()) {
        return None;
    }
    let half = (upper - expected).abs();
    let away = (value - expected).abs();
    Some(if away == 0.0 {
        0.0
    } else if half > 0.0 {
        away / half
    } else {
        f64::INFINITY
    })
}

/// Multiples beyond which a band is too narrow for the number to mean anything (a constant series).
pub const FAR_MULTIPLE: f64 = 100.0;

/// `8.0× above its band`, or `far above its band` beyond [`FAR_MULTIPLE`]; `None` within one band
/// width, where a multiple says nothing and the detector part that fired says more.
pub fn band_words(multiple: f64, above: bool) -> Option<String> {
    let dir = if above { "above" } else { "below" };
    if multiple > FAR_MULTIPLE {
        Some(format!("far {dir} its band"))
    } else if multiple > 1.0 {
        Some(format!("{multiple:.1}× {dir} its band"))
    } else {
        None
    }
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
    /// What `service` is.
    pub node: Node,
    /// How far outside its band the finding's peak is ([`band_multiple`]); `None` for findings with
    /// no band (a new log pattern, a forecast).
    pub band: Option<f64>,
    /// The finding says the service is affected, not that it is the cause: how much traffic reaches
    /// it (a request rate, which its callers set), or a latency or failure measure that dropped (a
    /// recovery); or, with no service, the CPU pressure of a host, which explains findings on that
    /// host but is no service's fault. It corroborates nothing and ranks below causes.
    pub load: bool,
    /// An SLO burn-rate alert (`vigil.slo`): the share of the SLO period's error budget it spent. It
    /// says how much the incident costs users, not where it comes from: it ranks incidents, not root
    /// causes, and opens none alone.
    pub budget: Option<f64>,
    /// The host the data comes from (`host.name`, else `k8s.node.name`), when its resource says: a
    /// finding with no service (a host metric) relates to the findings on its host.
    pub host: Option<String>,
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
    pub node: Node,
    /// The largest band multiple seen.
    pub band: Option<f64>,
    /// A traffic finding ([`Event::load`]).
    pub load: bool,
    /// The largest share of an error budget spent ([`Event::budget`]), for an SLO alert.
    pub budget: Option<f64>,
    /// [`Event::host`].
    pub host: Option<String>,
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

    /// The largest share of an SLO's error budget that the incident's SLO alerts spent, if any fired:
    /// what ranks incidents by their cost to users.
    pub fn budget_spent(&self) -> Option<f64> {
        self.members
            .iter()
            .filter_map(|m| m.budget)
            .reduce(f64::max)
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
    /// On a `Resolved` report: the incident this one was merged into, when it ended that way.
    pub merged_into: Option<u64>,
}

/// Tuning; the defaults suit a 10–60 s collection interval.
#[derive(Debug, Clone)]
pub struct Config {
    /// An event joins an incident if it starts within `window` (or `gap`, if shorter) of the
    /// incident's last activity, or while a member is still anomalous.
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
    /// Distinct members an incident needs before it is reported. Until then it is pending, and a
    /// pending incident that goes quiet is dropped (counted in `Correlator::suppressed`): one lone blip
    /// is already reported as its own anomaly event and is not an incident.
    pub min_members: usize,
    /// How long a new incident is held before its `Open` goes out, so that the findings of the same
    /// moment that arrive in later batches (the metrics path and the span path, each SDK's export)
    /// are ranked together. A later change of the top candidate is reported at once.
    pub settle_ns: u64,
    /// Evidence: an incident on one service is reported only once a member lies at least this many
    /// band widths ([`band_multiple`]) outside its band, and at most [`FAR_MULTIPLE`] (a band of no
    /// width says nothing about the size of a deviation). Findings on two or more services corroborate
    /// each other and need no minimum. 0 reports every finding.
    pub min_severity: f64,
    /// The same for an incident whose only services are dependencies and addresses (virtual nodes),
    /// whose findings are seen through their callers alone.
    pub virtual_min_severity: f64,
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
            min_members: 1,
            settle_ns: 5 * SEC,
            min_severity: DEFAULT_MIN_SEVERITY,
            virtual_min_severity: DEFAULT_VIRTUAL_MIN_SEVERITY,
        }
    }
}

/// The default [`Config::min_severity`].
pub const DEFAULT_MIN_SEVERITY: f64 = 3.0;
/// The default [`Config::virtual_min_severity`].
pub const DEFAULT_VIRTUAL_MIN_SEVERITY: f64 = 6.0;

struct Open {
    incident: Incident,
    /// Reported (an `Open` went out); pending incidents are not.
    confirmed: bool,
    /// When a pending incident that has enough members and evidence is to be announced.
    announce_at: Option<u64>,
    /// The top candidate of the last report, to report a change of it at once.
    last_top: Option<String>,
    /// When a tick first saw every member ended. The gap is counted from here rather than from the
    /// last anomalous point, because an end is only known once the detector's quiet run has passed;
    /// counting from the point would resolve just before the recovery (the return to the old level,
    /// itself often a finding) arrives, and open a second incident for it.
    idle_since: Option<u64>,
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
    /// Pending incidents that went quiet without reaching `min_members`.
    pub suppressed: u64,
    /// Incidents folded into another one that turned out to be related.
    pub merged: u64,
    /// The latest time seen, from ticks and findings.
    now_ns: u64,
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
            suppressed: 0,
            merged: 0,
            now_ns: 0,
        }
    }

    /// The number of open incidents.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Takes in one event; see [`Correlator::observe_all`].
    pub fn observe(&mut self, ev: &Event, topo: &dyn Topology) -> Vec<Report> {
        self.observe_all(std::slice::from_ref(ev), topo)
    }

    /// Adds one event to the incidents; returns the reports it makes (resolves of merged incidents,
    /// and with no `settle`, the `Open` of an incident it completes). Touched incidents are marked for
    /// the top-candidate check in `observe_all`.
    fn observe_one(&mut self, ev: &Event, topo: &dyn Topology) -> Vec<Report> {
        let mut out = Vec::new();
        if ev.time_ns <= self.now_ns.saturating_add(SKEW_NS) {
            self.now_ns = self.now_ns.max(ev.time_ns);
        }
        match ev.kind {
            EventKind::AnomalyEnd => {
                for o in self.open.iter_mut() {
                    if let Some(m) = o.incident.members.iter_mut().find(|m| m.key == ev.key) {
                        m.active = false;
                        m.last_ns = m.last_ns.max(ev.time_ns);
                        m.peak = m.peak.max(ev.score);
                        m.band = max_band(m.band, ev.band);
                        m.budget = max_band(m.budget, ev.budget);
                        o.incident.last_ns = o.incident.last_ns.max(ev.time_ns);
                        // The end was only just seen: the next tick starts the gap.
                        o.idle_since = None;
                    }
                }
                return out;
            }
            EventKind::AnomalyStart | EventKind::Pattern | EventKind::Forecast => {}
        }
        let active = ev.kind == EventKind::AnomalyStart;
        // A deviation that says where a fault is: not traffic or a recovery, not an SLO alert, not a
        // point-in-time log or forecast finding.
        let news = active && !ev.load && ev.budget.is_none();
        // An incident still takes in news while a finding of it that says where is anomalous (or,
        // not reported yet, any finding): traffic, recoveries, SLO alerts and the host's load
        // linger after a fault, and must not gather the next one into it.
        let live = |o: &Open| {
            o.incident
                .members
                .iter()
                .any(|m| m.active && (!o.confirmed || (!m.load && m.budget.is_none())))
        };
        let holds = |o: &Open| o.incident.members.iter().any(|m| m.key == ev.key);
        // A repeated start of a member already in an incident just refreshes it; in an incident
        // whose members have all ended, a new deviation of the same series is a new fault (below).
        if let Some(i) = self
            .open
            .iter()
            .position(|o| live(o) && holds(o))
            .or_else(|| self.open.iter().position(holds).filter(|_| !news))
        {
            let o = &mut self.open[i];
            if let Some(m) = o.incident.members.iter_mut().find(|m| m.key == ev.key) {
                // A member that had ended and starts again is news (a second fault on the same
                // series, while other members kept the incident open): it is reported, where a
                // silent refresh hid it (issue #19: a latency fault on inventory went unreported
                // inside the incident of its slow database 20 s before).
                if active && !m.active {
                    o.pending_update = true;
                }
                m.active = active;
                m.last_ns = m.last_ns.max(ev.time_ns);
                m.peak = m.peak.max(ev.score);
                m.band = max_band(m.band, ev.band);
                m.budget = max_band(m.budget, ev.budget);
            }
            o.incident.last_ns = o.incident.last_ns.max(ev.time_ns);
            o.idle_since = None;
            out.extend(self.promote(i, topo));
            return out;
        }
        // Once every member has ended, only the return to the old level or a late effect of it (traffic,
        // a recovery, a log or forecast finding) within `gap`, on a service (or, with none, a
        // resource) the incident holds, still belongs to it. A new deviation is news: joined to an
        // incident that is about to resolve it would be ranked among stale members and lose on
        // onset to the cause of the fault before (issue #19: four later faults were ranked under
        // the first one's cause), and a live incident is never merged into an ended one.
        let window = self.cfg.window_ns.min(self.cfg.gap_ns);
        let max_hops = self.cfg.max_hops;
        let mut found: Vec<usize> = self
            .open
            .iter()
            .enumerate()
            .filter(|(_, o)| {
                let inc = &o.incident;
                let recent = live(o)
                    || (!news
                        && ev.time_ns <= inc.last_ns.saturating_add(window)
                        && inc.members.iter().any(|m| match &ev.service {
                            Some(s) => m.service.as_ref() == Some(s),
                            None => m.resource == ev.resource,
                        }));
                recent && inc.members.iter().any(|m| related(m, ev, topo, max_hops))
            })
            .map(|(i, _)| i)
            .collect();
        if found.iter().any(|&i| live(&self.open[i])) {
            found.retain(|&i| live(&self.open[i]));
        }
        let member = Member {
            key: ev.key.clone(),
            service: ev.service.clone(),
            resource: ev.resource.clone(),
            first_ns: ev.time_ns,
            last_ns: ev.time_ns,
            peak: ev.score,
            detail: ev.detail.clone(),
            active,
            node: ev.node,
            band: ev.band,
            load: ev.load,
            budget: ev.budget,
            host: ev.host.clone(),
        };
        let Some(&first) = found.first() else {
            out.extend(self.start_incident(member, topo));
            return out;
        };
        // The event relates incidents that were apart so far: they become one, kept under the id of
        // the oldest reported one (or the oldest, if none was reported), so that a fault that spreads
        // through the graph step by step stays one incident.
        let mut keep = found
            .iter()
            .copied()
            .find(|&i| self.open[i].confirmed)
            .unwrap_or(first);
        // Walked from the back, a removal only shifts `keep` when it was before it.
        for &i in found.iter().rev() {
            if i == keep {
                continue;
            }
            let Some(absorbed) = self.open.remove(i) else {
                continue;
            };
            if i < keep {
                keep -= 1;
            }
            let into = keep;
            let target_id = self.open[into].incident.id;
            self.merged += 1;
            if absorbed.confirmed {
                out.push(Report {
                    status: Status::Resolved,
                    candidates: rank(&absorbed.incident, topo, max_hops, self.cfg.candidates),
                    incident: absorbed.incident.clone(),
                    merged_into: Some(target_id),
                });
            }
            let target = &mut self.open[into];
            for m in absorbed.incident.members {
                if target.incident.members.len() >= self.cfg.max_members {
                    target.incident.dropped_members += 1;
                    self.dropped_members += 1;
                } else {
                    target.incident.members.push(m);
                }
            }
            target.incident.first_ns = target.incident.first_ns.min(absorbed.incident.first_ns);
            target.incident.last_ns = target.incident.last_ns.max(absorbed.incident.last_ns);
            target.pending_update = true;
        }
        let o = &mut self.open[keep];
        if o.incident.members.len() >= self.cfg.max_members {
            o.incident.dropped_members += 1;
            self.dropped_members += 1;
        } else {
            o.incident.members.push(member);
            o.incident.first_ns = o.incident.first_ns.min(ev.time_ns);
            o.incident.last_ns = o.incident.last_ns.max(ev.time_ns);
            o.pending_update = true;
        }
        o.idle_since = None;
        out.extend(self.promote(keep, topo));
        out
    }

    /// Whether an incident has the members and the evidence to be reported: findings on two or more
    /// services (at least one instrumented) corroborate each other; otherwise one member must lie far
    /// enough outside its band, farther for a virtual node.
    fn evident(&self, inc: &Incident) -> bool {
        if inc.members.len() < self.cfg.min_members.max(1) {
            return false;
        }
        // Traffic moves along the call graph (callers set their callees' request rates), so a request
        // rate corroborates nothing: two services must each deviate beyond traffic, and a traffic
        // change alone must be large on its own.
        // An SLO alert says users are hurt, not where: it is a page of its own (`vigil.slo`), and
        // an incident, which names a cause, needs a finding that says where. Issue #19: on a host at
        // load 10, latency SLOs burned without a fault, and 5 of 8 false incidents were such
        // alerts alone.
        let evidence = |m: &&Member| !m.load && m.budget.is_none();
        let services: BTreeSet<&str> = inc
            .members
            .iter()
            .filter(evidence)
            .filter_map(|m| m.service.as_deref())
            .collect();
        let instrumented = inc
            .members
            .iter()
            .filter(evidence)
            .any(|m| m.service.is_some() && m.node == Node::Service);
        // A finding inside its band is a shift the detector saw within the series' normal spread.
        // On a busy host several services' p99s do that at once (one stall, seen by every caller up
        // the chain), so such findings corroborate but do not open an incident: one finding beyond
        // traffic must lie outside its band (or have none: a new pattern, an SLO alert). Issue #19:
        // 13 false incidents in 23 fault-free minutes of the real app at load 4 came from findings
        // within their bands on 2–3 services; its faults' first findings were 3–150 band widths out
        // on a host at load 1–5 (under load 8–10 they were within: this waits for them there).
        let outside = inc
            .members
            .iter()
            .filter(evidence)
            .any(|m| m.band.is_none_or(|b| b > 1.0));
        if !outside {
            return false;
        }
        if services.len() >= 2 && instrumented {
            return true;
        }
        inc.members.iter().filter(evidence).any(|m| {
            let min = match m.node {
                Node::Service => self.cfg.min_severity,
                Node::Dependency | Node::Address => self.cfg.virtual_min_severity,
            };
            // Beyond FAR_MULTIPLE the band had no width (a series that sat still, such as an error
            // ratio at exactly 0): the multiple measures the band, not the deviation, and one stray
            // error would pass any minimum. Such a finding needs corroboration.
            m.band.is_none_or(|b| b >= min && b <= FAR_MULTIPLE)
        })
    }

    /// Moves a pending incident that became evident towards its `Open`: at once without `settle`,
    /// else at the first tick `settle` later.
    fn promote(&mut self, i: usize, topo: &dyn Topology) -> Option<Report> {
        let o = self.open.get(i)?;
        if o.confirmed || o.announce_at.is_some() || !self.evident(&o.incident) {
            return None;
        }
        let now = self.now_ns.max(o.incident.last_ns);
        if self.cfg.settle_ns > 0 {
            self.open[i].announce_at = Some(now.saturating_add(self.cfg.settle_ns));
            return None;
        }
        let o = &mut self.open[i];
        Some(announce(o, now, topo, &self.cfg))
    }

    // A new incident with one member, pending until it is evident. Making room evicts the least
    // recently active incident, pending ones first (nobody was told of them); an evicted reported one
    // gets its `Resolved`, so that opens and resolves still pair up.
    fn start_incident(&mut self, member: Member, topo: &dyn Topology) -> Vec<Report> {
        let mut out = Vec::new();
        if self.open.len() >= self.cfg.max_incidents.max(1) {
            if let Some((idx, _)) = self
                .open
                .iter()
                .enumerate()
                // Pending ones first, then the one that costs users least (error budget spent), then
                // the least recently active.
                .min_by_key(|(_, o)| (o.confirmed, budget_key(&o.incident), o.incident.last_ns))
            {
                if let Some(o) = self.open.remove(idx) {
                    self.evicted_incidents += 1;
                    if o.confirmed {
                        out.push(Report {
                            status: Status::Resolved,
                            candidates: rank(
                                &o.incident,
                                topo,
                                self.cfg.max_hops,
                                self.cfg.candidates,
                            ),
                            incident: o.incident,
                            merged_into: None,
                        });
                    }
                }
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let t = member.first_ns;
        let incident = Incident {
            id,
            first_ns: t,
            last_ns: t,
            members: vec![member],
            dropped_members: 0,
        };
        self.open.push_back(Open {
            incident,
            confirmed: false,
            announce_at: None,
            last_top: None,
            idle_since: None,
            pending_update: false,
            last_report_ns: t,
        });
        let last = self.open.len() - 1;
        out.extend(self.promote(last, &NoTopology));
        out
    }

    /// Takes in the events of one batch. An incident opened by the batch is reported once, with its
    /// members and ranking as they stand after the whole batch: a fault's findings usually arrive
    /// together, and the first of them is often a caller rather than the cause. A reported incident
    /// whose top candidate the batch changed gets an `Update` at once, whatever `update_interval`.
    pub fn observe_all(&mut self, events: &[Event], topo: &dyn Topology) -> Vec<Report> {
        let mut out: Vec<Report> = Vec::new();
        for ev in events {
            out.extend(self.observe_one(ev, topo));
        }
        let opened: BTreeSet<u64> = out
            .iter()
            .filter(|r| r.status == Status::Open)
            .map(|r| r.incident.id)
            .collect();
        // Opened and merged away within the batch: nobody heard of it, so neither report goes out.
        let gone: BTreeSet<u64> = out
            .iter()
            .filter(|r| r.merged_into.is_some() && opened.contains(&r.incident.id))
            .map(|r| r.incident.id)
            .collect();
        out.retain(|r| !gone.contains(&r.incident.id));
        for r in out.iter_mut().filter(|r| r.status == Status::Open) {
            if let Some(o) = self
                .open
                .iter_mut()
                .find(|o| o.incident.id == r.incident.id)
            {
                o.pending_update = false;
                r.incident = o.incident.clone();
                r.candidates = rank(&o.incident, topo, self.cfg.max_hops, self.cfg.candidates);
                o.last_top = r.candidates.first().map(|c| c.service.clone());
            }
        }
        let now = self.now_ns;
        for o in self.open.iter_mut() {
            if !o.confirmed || !o.pending_update || opened.contains(&o.incident.id) {
                continue;
            }
            let candidates = rank(&o.incident, topo, self.cfg.max_hops, self.cfg.candidates);
            let top = candidates.first().map(|c| c.service.clone());
            if top != o.last_top {
                o.last_top = top;
                o.pending_update = false;
                o.last_report_ns = now;
                out.push(Report {
                    status: Status::Update,
                    candidates,
                    incident: o.incident.clone(),
                    merged_into: None,
                });
            }
        }
        out
    }

    /// Advances time to `now_ns`: announces settled incidents, reports rate-limited updates and
    /// resolves quiet incidents.
    pub fn tick(&mut self, now_ns: u64, topo: &dyn Topology) -> Vec<Report> {
        self.now_ns = self.now_ns.max(now_ns);
        let mut out = Vec::new();
        let mut keep = VecDeque::with_capacity(self.open.len());
        while let Some(mut o) = self.open.pop_front() {
            if !o.confirmed && o.announce_at.is_some_and(|t| now_ns >= t) {
                out.push(announce(&mut o, now_ns, topo, &self.cfg));
            }
            for m in o.incident.members.iter_mut() {
                if m.active && now_ns.saturating_sub(m.last_ns) >= self.cfg.member_ttl_ns {
                    m.active = false;
                }
            }
            let live = o.incident.members.iter().any(|m| m.active);
            let quiet = if live {
                o.idle_since = None;
                false
            } else {
                let since = *o.idle_since.get_or_insert(now_ns);
                now_ns.saturating_sub(o.incident.last_ns.max(since)) >= self.cfg.gap_ns
            };
            if quiet {
                if o.announce_at.is_some() && !o.confirmed {
                    out.push(announce(&mut o, now_ns, topo, &self.cfg));
                }
                if o.confirmed {
                    out.push(Report {
                        status: Status::Resolved,
                        candidates: rank(&o.incident, topo, self.cfg.max_hops, self.cfg.candidates),
                        incident: o.incident,
                        merged_into: None,
                    });
                } else {
                    self.suppressed += 1;
                }
                continue;
            }
            if o.confirmed
                && o.pending_update
                && now_ns.saturating_sub(o.last_report_ns) >= self.cfg.update_interval_ns
            {
                o.pending_update = false;
                o.last_report_ns = now_ns;
                let candidates = rank(&o.incident, topo, self.cfg.max_hops, self.cfg.candidates);
                o.last_top = candidates.first().map(|c| c.service.clone());
                out.push(Report {
                    status: Status::Update,
                    candidates,
                    incident: o.incident.clone(),
                    merged_into: None,
                });
            }
            keep.push_back(o);
        }
        self.open = keep;
        out
    }

    /// Resolves everything still open (at shutdown), so that opens and resolves pair up. An incident
    /// still settling is announced first: its findings were real.
    pub fn close_all(&mut self, topo: &dyn Topology) -> Vec<Report> {
        let mut out = Vec::new();
        let now = self.now_ns;
        for mut o in std::mem::take(&mut self.open) {
            if !o.confirmed && o.announce_at.is_some() {
                out.push(announce(&mut o, now, topo, &self.cfg));
            }
            if !o.confirmed {
                self.suppressed += 1;
                continue;
            }
            out.push(Report {
                status: Status::Resolved,
                candidates: rank(&o.incident, topo, self.cfg.max_hops, self.cfg.candidates),
                incident: o.incident,
                merged_into: None,
            });
        }
        out
    }
}

/// An incident's error budget spent as an ordered key (parts per billion; none is 0).
fn budget_key(inc: &Incident) -> u64 {
    inc.budget_spent()
        .map(|b| (b.clamp(0.0, 1e6) * 1e9) as u64)
        .unwrap_or(0)
}

impl Correlator {
    /// Where incident `id` stands among the reported open incidents, ordered by error budget spent
    /// (most first), then by peak score and onset: 1 is the one to look at first. `None` for an
    /// incident not open or not reported.
    pub fn priority(&self, id: u64) -> Option<usize> {
        let mut open: Vec<&Incident> = self
            .open
            .iter()
            .filter(|o| o.confirmed)
            .map(|o| &o.incident)
            .collect();
        open.sort_by(|a, b| {
            let peak = |i: &Incident| i.members.iter().map(|m| m.peak).fold(0.0, f64::max);
            budget_key(b)
                .cmp(&budget_key(a))
                .then_with(|| peak(b).total_cmp(&peak(a)))
                .then_with(|| a.first_ns.cmp(&b.first_ns))
        });
        open.iter().position(|i| i.id == id).map(|p| p + 1)
    }
}

/// How far ahead of the newest time seen a finding may be and still move the clock (a skewed host
/// clock must not make every settle and gap pass at once).
const SKEW_NS: u64 = 3600 * SEC;

fn max_band(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Marks an incident reported and makes its `Open`.
fn announce(o: &mut Open, now: u64, topo: &dyn Topology, cfg: &Config) -> Report {
    o.confirmed = true;
    o.announce_at = None;
    o.pending_update = false;
    o.last_report_ns = now;
    let candidates = rank(&o.incident, topo, cfg.max_hops, cfg.candidates);
    o.last_top = candidates.first().map(|c| c.service.clone());
    Report {
        status: Status::Open,
        candidates,
        incident: o.incident.clone(),
        merged_into: None,
    }
}

fn related(m: &Member, ev: &Event, topo: &dyn Topology, max_hops: usize) -> bool {
    if m.resource == ev.resource {
        return true;
    }
    // A host's finding (no service) and a finding on that host: the resource of the one names the
    // host, that of the other often a pod or a service.
    if m.service.is_none() || ev.service.is_none() {
        if let (Some(a), Some(b)) = (&m.host, &ev.host) {
            return a == b;
        }
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
/// A bare address is only ever seen through its callers' spans, so it never outranks an instrumented
/// service with findings of its own.
pub fn rank(inc: &Incident, topo: &dyn Topology, max_hops: usize, top: usize) -> Vec<Candidate> {
    // An SLO alert says what users feel, usually at the entry service, and later than the findings
    // that explain it: it ranks only when nothing else is known.
    let causes;
    let inc = if inc.members.iter().any(|m| m.budget.is_some())
        && inc.members.iter().any(|m| m.budget.is_none())
    {
        causes = Incident {
            members: inc
                .members
                .iter()
                .filter(|m| m.budget.is_none())
                .cloned()
                .collect(),
            ..inc.clone()
        };
        &causes
    } else {
        inc
    };
    // Per service: first onset, peak score, and the detail of its peak member.
    let mut per: BTreeMap<String, (u64, f64, String)> = BTreeMap::new();
    let mut addresses: BTreeSet<String> = BTreeSet::new();
    for m in &inc.members {
        let Some(s) = &m.service else { continue };
        if m.node == Node::Address {
            addresses.insert(s.clone());
        }
        let e = per
            .entry(s.clone())
            .or_insert((m.first_ns, m.peak, m.detail.clone()));
        e.0 = e.0.min(m.first_ns);
        if m.peak > e.1 {
            e.1 = m.peak;
            e.2 = m.detail.clone();
        }
    }
    // A name that is also an instrumented service's (its own findings) is not a bare address.
    for m in &inc.members {
        if let (Some(s), Node::Service) = (&m.service, m.node) {
            addresses.remove(s);
        }
    }
    let any_service = per.keys().any(|s| !addresses.contains(s));
    // Services with a finding beyond traffic; one whose findings are all request rates is where the
    // effect landed (a caller slowed or failed and sent less), so it ranks below those.
    let beyond_load: BTreeSet<&str> = inc
        .members
        .iter()
        .filter(|m| !m.load)
        .filter_map(|m| m.service.as_deref())
        .collect();
    // Evidence beside a service's peak finding, for its reason line: a log finding of its own (a new
    // pattern, a pattern's surge), and a finding with no service (a host metric) on a resource the
    // service's findings share.
    let mut resources: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut hosts: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for m in &inc.members {
        if let Some(s) = &m.service {
            resources.entry(s).or_default().insert(&m.resource);
            if let Some(h) = &m.host {
                hosts.entry(s).or_default().insert(h);
            }
        }
    }
    let also =
        |s: &str, primary: &str| -> String {
            let mut out = String::new();
            if let Some(log) = inc.members.iter().find(|m| {
                m.service.as_deref() == Some(s) && m.detail != primary && is_log_finding(m)
            }) {
                out.push_str(&format!("; also {}", log.detail));
            }
            let on = resources.get(s);
            let on_host = hosts.get(s);
            if let Some(host) = inc
                .members
                .iter()
                .filter(|m| {
                    m.service.is_none()
                        && (on.is_some_and(|r| r.contains(m.resource.as_str()))
                            || m.host
                                .as_deref()
                                .is_some_and(|h| on_host.is_some_and(|hs| hs.contains(h))))
                })
                .max_by(|a, b| a.peak.total_cmp(&b.peak))
            {
                out.push_str(&format!("; on {}: {}", host.resource, host.detail));
            }
            out
        };
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
            let mut score = 0.3 * onset + 0.5 * graph + 0.2 * peak.clamp(0.0, 1.0);
            if any_service && addresses.contains(s) {
                // Below every service: the scores lie in [-0.5, 1].
                score -= 2.0;
            }
            if !beyond_load.is_empty() && !beyond_load.contains(s.as_str()) {
                score -= 1.5;
            }
            let reason = format!(
                "{s}: first anomaly at {}, called by {callers} of {} anomalous services{}, {detail}{}",
                clock(*first),
                n - 1,
                if callees > 0 {
                    format!(", calls {callees} anomalous")
                } else {
                    String::new()
                },
                also(s, detail),
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

/// A finding from logs: a new pattern, or a pattern's rate out of its band.
fn is_log_finding(m: &Member) -> bool {
    m.key.starts_with("pattern:") || m.detail.starts_with("log pattern ")
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
            node: Node::Service,
            band: Some(5.0),
            load: false,
            budget: None,
            host: None,
        }
    }

    /// The defaults, announcing at once: the tests below are about grouping, not the settle hold.
    fn now_cfg() -> Config {
        Config {
            settle_ns: 0,
            ..Config::default()
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
        let mut c = Correlator::new(now_cfg(), 1);
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
        let mut c = Correlator::new(now_cfg(), 7);
        let a = c.observe(&ev(EventKind::AnomalyStart, "db", "db-1", 100, 0.9), &t);
        let b = c.observe(&ev(EventKind::AnomalyStart, "c", "cache", 101, 0.9), &t);
        assert_eq!((a[0].incident.id, b[0].incident.id), (7, 8));
        c.observe(&ev(EventKind::AnomalyEnd, "db", "db-1", 150, 0.9), &t);
        // The gap counts from the first tick that saw every member ended.
        assert!(c.tick(200 * SEC, &t).is_empty());
        assert!(c.tick(319 * SEC, &t).is_empty());
        let r = c.tick(320 * SEC, &t);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].status, r[0].incident.id), (Status::Resolved, 7));
        let rest = c.close_all(&t);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].incident.id, 8);
    }

    #[test]
    fn same_resource_is_related_without_a_graph() {
        let mut c = Correlator::new(now_cfg(), 1);
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
            ..now_cfg()
        };
        let mut c = Correlator::new(cfg, 1);
        let mut reports = Vec::new();
        for (i, s) in ["a", "b", "c"].iter().enumerate() {
            reports.extend(c.observe(
                &ev(EventKind::AnomalyStart, s, s, 10 + i as u64, 0.6),
                &NoTopology,
            ));
        }
        assert_eq!((c.open_count(), c.evicted_incidents), (2, 1));
        // The evicted incident had been reported, so it is resolved rather than left hanging.
        let statuses: Vec<(Status, u64)> =
            reports.iter().map(|r| (r.status, r.incident.id)).collect();
        assert_eq!(
            statuses,
            vec![
                (Status::Open, 1),
                (Status::Open, 2),
                (Status::Resolved, 1),
                (Status::Open, 3)
            ]
        );
        for k in ["c2", "c3"] {
            let mut e = ev(EventKind::AnomalyStart, k, "c", 20, 0.6);
            e.resource = "host-c".into();
            c.observe(&e, &NoTopology);
        }
        assert_eq!(c.dropped_members, 1);
    }

    #[test]
    fn a_batch_opens_its_incident_once_ranked_on_the_whole_batch() {
        let t = topo();
        let mut c = Correlator::new(now_cfg(), 1);
        // The caller's finding comes first in the batch; the cause's right after.
        let batch = [
            ev(EventKind::AnomalyStart, "api", "api", 100, 0.7),
            ev(EventKind::AnomalyStart, "web", "web", 100, 0.7),
            ev(EventKind::AnomalyStart, "db", "db-1", 100, 0.9),
        ];
        let r = c.observe_all(&batch, &t);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, Status::Open);
        assert_eq!(r[0].incident.members.len(), 3);
        assert_eq!(r[0].candidates[0].service, "db-1");
        // Nothing left to report as an update: the open already said it all.
        assert!(c
            .tick(1000 * SEC, &t)
            .iter()
            .all(|r| r.status != Status::Update));
    }

    #[test]
    fn incidents_merge_when_an_event_relates_them() {
        let mut t = StaticTopology::default();
        t.add("a", "b");
        t.add("b", "c");
        t.add("c", "d");
        t.add("d", "e");
        let cfg = Config {
            max_hops: 1,
            ..now_cfg()
        };
        let mut c = Correlator::new(cfg, 1);
        let a = c.observe(&ev(EventKind::AnomalyStart, "a", "a", 100, 0.9), &t);
        let e = c.observe(&ev(EventKind::AnomalyStart, "e", "e", 101, 0.9), &t);
        assert_eq!((a.len(), e.len(), c.open_count()), (1, 1, 2));
        // b and d are each one hop from one side; c bridges them.
        c.observe(&ev(EventKind::AnomalyStart, "b", "b", 102, 0.9), &t);
        c.observe(&ev(EventKind::AnomalyStart, "d", "d", 103, 0.9), &t);
        let r = c.observe(&ev(EventKind::AnomalyStart, "c", "c", 104, 0.9), &t);
        assert_eq!(c.open_count(), 1);
        assert_eq!(c.merged, 1);
        assert_eq!(
            (r[0].status, r[0].incident.id, r[0].merged_into),
            (Status::Resolved, 2, Some(1))
        );
        // The merged incident's top candidate changed: that goes out at once.
        assert_eq!(r.len(), 2);
        assert_eq!((r[1].status, r[1].incident.id), (Status::Update, 1));
        let all = c.close_all(&t);
        assert_eq!(all[0].incident.services(), vec!["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn min_members_keeps_lone_findings_pending() {
        let t = topo();
        let cfg = Config {
            min_members: 2,
            ..now_cfg()
        };
        let mut c = Correlator::new(cfg, 1);
        assert!(c
            .observe(&ev(EventKind::AnomalyStart, "c", "cache", 100, 0.9), &t)
            .is_empty());
        c.observe(&ev(EventKind::AnomalyEnd, "c", "cache", 110, 0.9), &t);
        c.tick(120 * SEC, &t);
        assert!(c.tick(400 * SEC, &t).is_empty());
        assert_eq!((c.suppressed, c.open_count()), (1, 0));
        assert!(c
            .observe(&ev(EventKind::AnomalyStart, "db", "db-1", 500, 0.9), &t)
            .is_empty());
        let r = c.observe(&ev(EventKind::AnomalyStart, "api", "api", 505, 0.8), &t);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, Status::Open);
        assert_eq!(r[0].incident.members.len(), 2);
    }

    #[test]
    fn the_gap_runs_from_the_first_tick_that_saw_the_end() {
        let t = topo();
        let mut c = Correlator::new(now_cfg(), 1);
        c.observe(&ev(EventKind::AnomalyStart, "db", "db-1", 100, 0.9), &t);
        // Live ticks must not start the gap.
        for now in [150, 200] {
            assert!(c.tick(now * SEC, &t).is_empty());
        }
        c.observe(&ev(EventKind::AnomalyEnd, "db", "db-1", 105, 0.9), &t);
        assert!(c.tick(220 * SEC, &t).is_empty());
        assert!(c.tick(339 * SEC, &t).is_empty());
        let r = c.tick(340 * SEC, &t);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, Status::Resolved);
    }

    #[test]
    fn the_recovery_after_an_end_joins_the_same_incident() {
        let t = topo();
        let mut c = Correlator::new(now_cfg(), 1);
        c.observe(&ev(EventKind::AnomalyStart, "db", "db-1", 100, 0.9), &t);
        // The detector ends the episode after its quiet run, stamping the last anomalous point.
        c.observe(&ev(EventKind::AnomalyEnd, "db", "db-1", 150, 0.9), &t);
        assert!(c.tick(250 * SEC, &t).is_empty());
        // The return to the old level is found as a shift of its own, right after: a latency or
        // failure measure below its band, which the processor marks as no evidence of a fault.
        let mut back = ev(EventKind::AnomalyStart, "db-back", "db-1", 260, 0.8);
        back.load = true;
        let r = c.observe(&back, &t);
        assert!(r.is_empty(), "{r:?}");
        assert_eq!(c.open_count(), 1);
        assert_eq!(c.open[0].incident.members.len(), 2);
        // Once that has ended too, a new deviation there is a new fault, not part of the one that
        // ended.
        c.observe(&ev(EventKind::AnomalyEnd, "db-back", "db-1", 265, 0.8), &t);
        let r = c.observe(&ev(EventKind::AnomalyStart, "db", "db-1", 270, 0.9), &t);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].status, Status::Open);
        assert_eq!(c.open_count(), 2);
    }

    #[test]
    fn a_member_that_starts_again_is_reported() {
        let t = topo();
        let mut c = Correlator::new(now_cfg(), 1);
        let r = c.observe_all(
            &[
                ev(EventKind::AnomalyStart, "db", "db-1", 100, 0.9),
                ev(EventKind::AnomalyStart, "api", "api", 100, 0.9),
            ],
            &t,
        );
        assert_eq!(r.len(), 1);
        c.observe(&ev(EventKind::AnomalyEnd, "api", "api", 110, 0.9), &t);
        // Nothing new: no update.
        assert!(c.tick(200 * SEC, &t).is_empty());
        // The api's series starts again while db-1 keeps the incident open: an update says so.
        c.observe(&ev(EventKind::AnomalyStart, "api", "api", 300, 0.9), &t);
        let r = c.tick(400 * SEC, &t);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].status, Status::Update);
    }

    #[test]
    fn late_events_outside_the_window_start_a_new_incident() {
        let t = topo();
        let mut c = Correlator::new(now_cfg(), 1);
        c.observe(&ev(EventKind::AnomalyStart, "db", "db-1", 0, 0.9), &t);
        c.observe(&ev(EventKind::AnomalyEnd, "db", "db-1", 10, 0.9), &t);
        let r = c.observe(&ev(EventKind::AnomalyStart, "api", "api", 1000, 0.9), &t);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].incident.id, 2);
    }

    #[test]
    fn the_open_waits_for_the_findings_of_the_same_moment_and_a_new_top_goes_out_at_once() {
        let t = topo();
        let mut c = Correlator::new(Config::default(), 1);
        c.tick(100 * SEC, &t);
        // The caller's finding comes first (the metrics path), the cause's a batch later (the spans).
        assert!(c
            .observe(&ev(EventKind::AnomalyStart, "api", "api", 98, 0.7), &t)
            .is_empty());
        assert!(c.tick(101 * SEC, &t).is_empty());
        assert!(c
            .observe(&ev(EventKind::AnomalyStart, "db", "db-1", 97, 0.9), &t)
            .is_empty());
        let r = c.tick(105 * SEC, &t);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, Status::Open);
        assert_eq!(r[0].candidates[0].service, "db-1");
        // A later finding that changes the top candidate is reported at once, inside the update
        // interval; one that does not change it waits for the interval.
        let r = c.observe(&ev(EventKind::AnomalyStart, "web", "web", 106, 0.7), &t);
        assert!(r.is_empty(), "{r:?}");
        let mut cache = ev(EventKind::AnomalyStart, "x", "db-1", 107, 0.9);
        cache.key = "db-errors".into();
        assert!(c.observe(&cache, &t).is_empty());
        // Now an unrelated-looking finding on the entry of a new chain that everybody calls.
        let mut t2 = topo();
        t2.add("db-1", "disk");
        let r = c.observe(&ev(EventKind::AnomalyStart, "disk", "disk", 90, 0.9), &t2);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].status, Status::Update);
        assert_eq!(r[0].candidates[0].service, "disk");
    }

    #[test]
    fn an_incident_needs_evidence_and_a_virtual_node_needs_more() {
        let t = topo();
        let mut c = Correlator::new(now_cfg(), 1);
        let weak = |key: &str, svc: &str, t: u64, band: f64, node: Node| {
            let mut e = ev(EventKind::AnomalyStart, key, svc, t, 0.6);
            e.band = Some(band);
            e.node = node;
            e
        };
        // One service, barely outside its band: pending, and dropped when it goes quiet.
        assert!(c
            .observe(&weak("c", "cache", 100, 1.5, Node::Service), &t)
            .is_empty());
        // A virtual node 4 band widths out: enough for a service, not for a database seen by callers.
        assert!(c
            .observe(
                &weak("sqlite", "sqlite@other", 100, 4.0, Node::Dependency),
                &t
            )
            .is_empty());
        c.observe(&ev(EventKind::AnomalyEnd, "c", "cache", 110, 0.6), &t);
        c.observe(
            &ev(EventKind::AnomalyEnd, "sqlite", "sqlite@other", 110, 0.6),
            &t,
        );
        c.tick(120 * SEC, &t);
        assert!(c.tick(400 * SEC, &t).is_empty());
        assert_eq!((c.suppressed, c.open_count()), (2, 0));
        // The same weak findings on two related services corroborate each other, but only once one
        // lies outside its band: two shifts within their bands are noise on a busy host.
        assert!(c
            .observe(&weak("db", "db-1", 500, 0.8, Node::Service), &t)
            .is_empty());
        assert!(c
            .observe(&weak("api-in", "api", 501, 0.9, Node::Service), &t)
            .is_empty());
        let r = c.observe(&weak("api", "api", 501, 1.5, Node::Service), &t);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, Status::Open);
        // A strong finding on one service is enough alone; one against a band of no width (a stray
        // first error of a quiet error ratio) is not.
        assert!(c
            .observe(&weak("z", "zero", 900, f64::INFINITY, Node::Service), &t)
            .is_empty());
        let r = c.observe(&weak("o", "other", 900, 3.5, Node::Service), &t);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn a_bare_address_never_outranks_an_instrumented_service() {
        let mut t = StaticTopology::default();
        t.add("web", "api");
        t.add("api", "127.0.0.1:9");
        let mut c = Correlator::new(now_cfg(), 1);
        let mut addr = ev(EventKind::AnomalyStart, "addr", "127.0.0.1:9", 100, 1.0);
        addr.node = Node::Address;
        c.observe(&addr, &t);
        c.observe(&ev(EventKind::AnomalyStart, "api", "api", 110, 0.6), &t);
        c.observe(&ev(EventKind::AnomalyStart, "web", "web", 120, 0.6), &t);
        let r = c.close_all(&t);
        let order: Vec<&str> = r[0].candidates.iter().map(|c| c.service.as_str()).collect();
        assert_eq!(order, ["api", "web", "127.0.0.1:9"]);
    }

    #[test]
    fn band_multiples_have_one_definition() {
        assert_eq!(band_multiple(9.0, 1.0, 3.0), Some(4.0));
        assert_eq!(band_multiple(1.0, 1.0, 1.0), Some(0.0));
        assert_eq!(band_multiple(2.0, 1.0, 1.0), Some(f64::INFINITY));
        assert_eq!(band_multiple(f64::NAN, 1.0, 1.0), None);
        assert_eq!(
            band_words(4.0, true).as_deref(),
            Some("4.0× above its band")
        );
        assert_eq!(
            band_words(1e6, false).as_deref(),
            Some("far below its band")
        );
        assert_eq!(band_words(0.5, true), None);
    }

    #[test]
    fn traffic_findings_rank_below_causes_and_corroborate_nothing() {
        // A slow api sends fewer queries to its database: db-1's only finding is its request rate.
        let t = topo();
        let mut c = Correlator::new(now_cfg(), 1);
        let mut rate = ev(EventKind::AnomalyStart, "db-rate", "db-1", 100, 0.9);
        rate.load = true;
        rate.band = Some(1.0);
        let mut lat = ev(EventKind::AnomalyStart, "api-lat", "api", 101, 0.7);
        lat.band = Some(4.0);
        let mut out = c.observe(&rate, &t);
        out.extend(c.observe(&lat, &t));
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].candidates[0].service, "api");
        assert_eq!(out[0].candidates[1].service, "db-1");
        // Request rates moving together on two services, each within its band's width, open nothing.
        let mut c = Correlator::new(now_cfg(), 1);
        let mut out = Vec::new();
        for (k, s) in [("web-rate", "web"), ("api-rate", "api")] {
            let mut e = ev(EventKind::AnomalyStart, k, s, 100, 0.9);
            e.load = true;
            e.band = Some(1.2);
            out.extend(c.observe(&e, &t));
        }
        assert!(out.is_empty(), "{out:?}");
        // Nor does a request rate corroborate another service's small latency rise.
        let mut c = Correlator::new(now_cfg(), 1);
        let mut rate = ev(EventKind::AnomalyStart, "web-rate", "web", 100, 0.9);
        rate.load = true;
        rate.band = Some(1.1);
        let mut lat = ev(EventKind::AnomalyStart, "api-lat", "api", 101, 0.7);
        lat.band = Some(1.8);
        let mut out = c.observe(&rate, &t);
        out.extend(c.observe(&lat, &t));
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn log_and_host_findings_join_and_give_their_reasons() {
        let mut c = Correlator::new(now_cfg(), 1);
        let on_node = |mut e: Event| {
            e.resource = "host.name=node-1".into();
            e
        };
        let mut log = ev(EventKind::Pattern, "pattern:api:7", "api", 101, 0.5);
        log.detail = "new log pattern \"db timeout after <*> ms\"".into();
        log.band = None;
        let mut cpu = ev(EventKind::AnomalyStart, "cpu", "x", 102, 0.8);
        cpu.service = None;
        cpu.detail = "system.cpu.utilization 4.0× above its band".into();
        let mut out = Vec::new();
        for e in [
            ev(EventKind::AnomalyStart, "lat", "api", 100, 0.9),
            log,
            cpu,
        ] {
            out.extend(c.observe(&on_node(e), &NoTopology));
        }
        assert_eq!(c.open_count(), 1, "one incident: {out:?}");
        let r = c.close_all(&NoTopology);
        let reason = &r[0].candidates[0].reason;
        assert!(reason.starts_with("api: "), "{reason}");
        assert!(
            reason.ends_with(
                "lat 5× above its band; also new log pattern \"db timeout after <*> ms\"; on host.name=node-1: system.cpu.utilization 4.0× above its band"
            ),
            "{reason}"
        );
    }

    // Issue #19: on a shared host at load 10, every service slowed at once. The host's CPU pressure
    // is the reason to give beside each candidate on that host, and alone it is no incident.
    #[test]
    fn host_cpu_pressure_joins_by_host_and_opens_nothing_alone() {
        let t = topo();
        let cpu = |at: u64| {
            let mut e = ev(EventKind::AnomalyStart, "load1m", "x", at, 0.9);
            e.service = None;
            e.resource = "host.name=node-7".into();
            e.host = Some("node-7".into());
            e.load = true;
            e.band = Some(6.0);
            e.detail = "system.cpu.load_average.1m 6.0× above its band".into();
            e
        };
        let mut c = Correlator::new(now_cfg(), 1);
        // The load rises first: alone it opens nothing.
        assert!(c.observe_all(&[cpu(100)], &t).is_empty());
        // Services on that host (pods: their resource names the pod, not the host) slow down.
        let on_pod = |mut e: Event, pod: &str| {
            e.resource = format!("k8s.pod.name={pod}");
            e.host = Some("node-7".into());
            e
        };
        let out = c.observe_all(
            &[
                on_pod(ev(EventKind::AnomalyStart, "api", "api", 105, 0.9), "api-1"),
                on_pod(ev(EventKind::AnomalyStart, "web", "web", 106, 0.8), "web-1"),
            ],
            &t,
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(c.open_count(), 1, "the load's finding joined: {out:?}");
        assert_eq!(out[0].incident.members.len(), 3);
        let reason = &out[0].candidates[0].reason;
        assert!(reason.starts_with("api: "), "{reason}");
        assert!(
            reason
                .ends_with("; on host.name=node-7: system.cpu.load_average.1m 6.0× above its band"),
            "{reason}"
        );
        // A service on another host gets no such reason.
        let mut c = Correlator::new(now_cfg(), 1);
        c.observe_all(&[cpu(100)], &t);
        let mut other = ev(EventKind::AnomalyStart, "api", "api", 105, 0.9);
        other.host = Some("node-8".into());
        let out = c.observe_all(&[other], &t);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(
            !out[0].candidates[0].reason.contains("load_average"),
            "{out:?}"
        );
    }

    // Issue #19: a fault on payments, then 45 s later errors on inventory. Once the first fault's
    // findings have ended, the second's are their own incident, which names inventory, even
    // within the first one's gap.
    #[test]
    fn a_finding_on_another_service_after_every_member_ended_is_a_new_incident() {
        let mut t = StaticTopology::default();
        t.add("frontend", "checkout");
        t.add("checkout", "inventory");
        t.add("checkout", "payments");
        let cfg = Config {
            gap_ns: 120 * SEC,
            ..now_cfg()
        };
        let mut c = Correlator::new(cfg, 1);
        let first = c.observe_all(
            &[
                ev(EventKind::AnomalyStart, "pay-p50", "payments", 100, 1.0),
                ev(EventKind::AnomalyStart, "co-p99", "checkout", 101, 0.9),
            ],
            &t,
        );
        assert_eq!(first.len(), 1);
        let first = first[0].incident.id;
        c.observe_all(
            &[
                ev(EventKind::AnomalyEnd, "pay-p50", "payments", 130, 1.0),
                ev(EventKind::AnomalyEnd, "co-p99", "checkout", 131, 0.9),
            ],
            &t,
        );
        c.tick(135 * SEC, &t);
        // Within the gap, the same service's return (its request rate catching up) is still the
        // first incident's.
        let mut rate = ev(EventKind::AnomalyStart, "co-rate", "checkout", 140, 0.6);
        rate.load = true;
        c.observe_all(&[rate], &t);
        assert_eq!(c.open_count(), 1);
        assert_eq!(c.open[0].incident.members.len(), 3);
        // It lasts (traffic lingers after a fault), but it says nothing of where a fault is.
        // Errors on inventory, then its callers.
        let out = c.observe_all(
            &[
                ev(EventKind::AnomalyStart, "inv-err", "inventory", 150, 1.0),
                ev(EventKind::AnomalyStart, "co-err", "checkout", 150, 1.0),
            ],
            &t,
        );
        assert_eq!(c.open_count(), 2, "{out:?}");
        let open: Vec<&Report> = out.iter().filter(|r| r.status == Status::Open).collect();
        assert_eq!(open.len(), 1, "{out:?}");
        assert_ne!(open[0].incident.id, first);
        assert_eq!(open[0].candidates[0].service, "inventory", "{out:?}");
        // While a member of the first is still anomalous, a related finding still joins it.
        let mut c = Correlator::new(cfg_gap(), 1);
        c.observe_all(
            &[ev(EventKind::AnomalyStart, "pay-p50", "payments", 100, 1.0)],
            &t,
        );
        c.observe_all(
            &[ev(
                EventKind::AnomalyStart,
                "inv-err",
                "inventory",
                150,
                1.0,
            )],
            &t,
        );
        assert_eq!(c.open_count(), 1);
    }

    fn cfg_gap() -> Config {
        Config {
            gap_ns: 120 * SEC,
            ..now_cfg()
        }
    }

    #[test]
    fn an_slo_alert_joins_its_incident_and_ranks_incidents_not_causes() {
        let t = topo();
        let mut c = Correlator::new(now_cfg(), 1);
        let out = c.observe_all(
            &[
                ev(EventKind::AnomalyStart, "db", "db-1", 100, 0.9),
                ev(EventKind::AnomalyStart, "api", "api", 101, 0.8),
            ],
            &t,
        );
        let fault = out[0].incident.id;
        // web's availability SLO pages 30 s later; web calls api, so it joins the fault's incident.
        let mut slo = ev(
            EventKind::AnomalyStart,
            "slo:web:availability",
            "web",
            130,
            1.0,
        );
        slo.band = None;
        slo.budget = Some(0.02);
        c.observe_all(&[slo], &t);
        // An unrelated incident with a higher peak but no SLO burning.
        let out = c.observe_all(&[ev(EventKind::AnomalyStart, "c", "cache", 131, 0.95)], &t);
        let other = out[0].incident.id;
        assert_eq!(c.open_count(), 2);
        assert_eq!(
            c.priority(fault),
            Some(1),
            "the incident that burns budget first"
        );
        assert_eq!(c.priority(other), Some(2));
        let done = c.close_all(&t);
        let r = done
            .iter()
            .find(|r| r.incident.id == fault)
            .expect("resolved");
        assert_eq!(r.incident.budget_spent(), Some(0.02));
        assert_eq!(r.candidates[0].service, "db-1", "{:?}", r.candidates);
        assert!(
            r.candidates.iter().all(|c| c.service != "web"),
            "{:?}",
            r.candidates
        );
        // An SLO alert alone is a page of its own (its `vigil.slo` event), not an incident: it says
        // users are hurt, not where. A finding that says where opens the incident it joins.
        let mut c = Correlator::new(now_cfg(), 1);
        let mut slo = ev(EventKind::AnomalyStart, "slo:web:latency", "web", 200, 1.0);
        slo.band = None;
        slo.budget = Some(0.5);
        let out = c.observe_all(&[slo], &t);
        assert!(out.is_empty(), "{out:?}");
        let out = c.observe_all(&[ev(EventKind::AnomalyStart, "api", "api", 201, 0.8)], &t);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].status, Status::Open);
        assert_eq!(out[0].incident.budget_spent(), Some(0.5));
        assert_eq!(out[0].candidates[0].service, "api");
        // Nor does an SLO alert lift findings within their bands into an incident.
        let mut c = Correlator::new(now_cfg(), 1);
        let mut slo = ev(EventKind::AnomalyStart, "slo:web:latency", "web", 300, 1.0);
        slo.band = None;
        slo.budget = Some(0.5);
        let mut weak = ev(EventKind::AnomalyStart, "web-p99", "web", 301, 0.6);
        weak.band = Some(0.5);
        let mut weak2 = ev(EventKind::AnomalyStart, "api-p99", "api", 301, 0.6);
        weak2.band = Some(0.4);
        assert!(c.observe_all(&[slo, weak, weak2], &t).is_empty());
    }
}
