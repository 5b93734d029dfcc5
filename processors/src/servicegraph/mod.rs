//! `servicegraph` (traces → metrics): derives who-calls-whom from spans, with otelcol-contrib's keys
//! and metric names. A client span and the server span whose parent it is make one edge; a client span
//! left unpaired when `store.ttl` passes goes to the instrumented service whose server spans listen at
//! its peer address when there is one, else to a virtual node named by its peer attributes (a
//! database, a queue, or an address). Edges become request counts and latency histograms, and feed the
//! live [`DependencyGraph`] that `correlation` reads.

pub mod from_metrics;
pub mod graph;

pub use graph::{DependencyGraph, KEY};

use async_trait::async_trait;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vigil_core::attrs::{get, kv_str, value_to_string};
use vigil_core::config::{duration, opt_duration};
use vigil_core::lock;
use vigil_core::otlp::common::v1::{InstrumentationScope, KeyValue};
use vigil_core::otlp::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::otlp::trace::v1::{span::SpanKind, status::StatusCode, Span};
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Host,
    NextConsumers, Signal, Telemetry,
};

/// `store` as in otelcol-contrib.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    #[serde(with = "duration")]
    pub ttl: Duration,
    pub max_items: usize,
}

/// SDKs export spans in batches every 5 s per process, so the two halves of a call reach the
/// connector up to one export interval apart, plus the exporter's own delays. otelcol-contrib's 2 s
/// left a tenth of real calls unpaired (issue #19), each then counted as a call to a fake node.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            ttl: DEFAULT_TTL,
            // Ten times otelcol-contrib's 1000: with a ttl five times as long, as many more calls
            // wait for their other half (about 2 MB at most).
            max_items: 10_000,
        }
    }
}

fn default_buckets() -> Vec<Duration> {
    [
        2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10_000, 15_000,
    ]
    .into_iter()
    .map(Duration::from_millis)
    .collect()
}

fn default_peer_attributes() -> Vec<String> {
    vec!["peer.service".into(), "db.name".into(), "db.system".into()]
}

/// The `servicegraph` config, with otelcol-contrib's keys.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceGraphConfig {
    #[serde(default = "default_buckets", with = "durations")]
    pub latency_histogram_buckets: Vec<Duration>,
    #[serde(default)]
    pub dimensions: Vec<String>,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default, with = "opt_duration")]
    pub cache_loop: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub store_expiration_loop: Option<Duration>,
    #[serde(default = "default_peer_attributes")]
    pub virtual_node_peer_attributes: Vec<String>,
    #[serde(default)]
    pub virtual_node_extra_label: bool,
    #[serde(default, with = "opt_duration")]
    pub metrics_flush_interval: Option<Duration>,
    #[serde(default)]
    pub database_name_attributes: Vec<String>,
}

/// A list of durations such as `["2ms", "1s"]`.
mod durations {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(d.iter().map(|d| vigil_core::config::format_duration(*d)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let raw: Vec<String> = Vec::deserialize(d)?;
        raw.iter()
            .map(|s| {
                vigil_core::config::parse_duration(s)
                    .map_err(|e| serde::de::Error::custom(format!("{s:?} is not a duration ({e})")))
            })
            .collect()
    }
}

#[cfg(test)]
fn parse(id: &ComponentId, value: &serde_json::Value) -> Result<ServiceGraphConfig, ConfigError> {
    check(
        id,
        vigil_core::config::decode(ComponentKind::Connector, id, value)?,
    )
}

/// Checks a decoded section and prepares what the component runs with.
fn check(id: &ComponentId, c: ServiceGraphConfig) -> Result<ServiceGraphConfig, ConfigError> {
    let err =
        |path: &str, msg: &str| ConfigError::component(ComponentKind::Connector, id, path, msg);
    if c.store.max_items == 0 {
        return Err(err("store::max_items", "expected at least 1, got 0"));
    }
    if c.store.ttl.is_zero() {
        return Err(err(
            "store::ttl",
            "expected a duration above 0 such as \"2s\"",
        ));
    }
    if c.latency_histogram_buckets.windows(2).any(|w| w[0] >= w[1]) {
        return Err(err(
            "latency_histogram_buckets",
            "expected strictly increasing durations",
        ));
    }
    Ok(c)
}

struct Factory;

/// The `servicegraph` connector factory.
pub fn factory() -> Arc<dyn vigil_core::factory::DynConnectorFactory> {
    vigil_core::factory::connector(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = ServiceGraphConfig;

    fn type_name(&self) -> &'static str {
        "servicegraph"
    }

    fn validate(&self, id: &ComponentId, cfg: &ServiceGraphConfig) -> Result<(), ConfigError> {
        check(id, cfg.clone()).map(|_| ())
    }
}

impl vigil_core::factory::ConnectorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Signal, vigil_core::Stability)] {
        &[(
            Signal::Traces,
            Signal::Metrics,
            vigil_core::Stability::Alpha,
        )]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: ServiceGraphConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn vigil_core::Connector>, ConfigError> {
        let cfg = check(&set.id, cfg)?;
        Ok(Arc::new(ServiceGraph::with_settings(
            set,
            cfg,
            next.get(Signal::Metrics).cloned(),
        )))
    }
}

/// One half-seen or complete call.
#[derive(Debug, Clone, Default)]
struct Pending {
    client: Option<Side>,
    server: Option<Side>,
    created: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Side {
    service: String,
    seconds: f64,
    failed: bool,
    dims: Vec<(String, String)>,
    /// Where a client span went, for when its server half never arrives.
    peer: Option<Peer>,
}

/// The peer of a client span: the addresses it called (`host:port` keys as in
/// [`Inner::listeners`]) and the virtual node to name when none of them is a known service.
#[derive(Debug, Clone, Default)]
struct Peer {
    addrs: Vec<String>,
    node: Option<(String, &'static str)>,
}

/// Series identity: client, server, connection type, then `client_<dim>`/`server_<dim>` pairs.
type SeriesKey = (String, String, String, Vec<(String, String)>);

#[derive(Debug, Clone)]
struct Series {
    total: u64,
    failed: u64,
    server: Hist,
    client: Hist,
}

#[derive(Debug, Clone)]
struct Hist {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Hist {
    fn new(bounds: usize) -> Self {
        Hist {
            counts: vec![0; bounds + 1],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, bounds: &[f64], v: f64) {
        let i = bounds.partition_point(|b| *b < v);
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum += v;
        self.count += 1;
    }
}

/// Metric series kept at most; new series beyond it are dropped and counted.
const MAX_SERIES: usize = 10_000;

/// Listening addresses remembered at most; beyond it new ones are not learnt (and are counted).
const MAX_LISTENERS: usize = 10_000;

/// (trace id, the client span's id): what a client span and its server span share.
type EdgeKey = (Vec<u8>, Vec<u8>);

#[derive(Default)]
struct State {
    pending: HashMap<EdgeKey, Pending>,
    order: VecDeque<(EdgeKey, Instant)>,
    series: BTreeMap<SeriesKey, Series>,
    /// `host:port` → the service whose server spans were addressed there, so that a client span
    /// whose server half is missing still names the service it called rather than an address.
    listeners: HashMap<String, String>,
    /// Halves whose other half never arrived within `store.ttl` (calls to databases and queues,
    /// which have none, aside).
    unpaired: u64,
}

struct Inner {
    label: String,
    obs: vigil_core::ConnectorObs,
    cfg: ServiceGraphConfig,
    bounds: Vec<f64>,
    next: Option<Arc<dyn Consumer>>,
    state: Mutex<State>,
    graph: OnceLock<Arc<DependencyGraph>>,
    start_ns: u64,
}

/// A running `servicegraph` connector.
pub struct ServiceGraph {
    inner: Arc<Inner>,
    /// The metrics flush and the store's expiry loop.
    tasks: vigil_core::Tasks,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn str_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    get(attrs, key)
        .map(value_to_string)
        .filter(|s| !s.is_empty())
}

impl ServiceGraph {
    /// Builds the connector; metrics go to `next` (none: the graph is still kept).
    pub fn new(id: &ComponentId, cfg: ServiceGraphConfig, next: Option<Arc<dyn Consumer>>) -> Self {
        let set = vigil_core::Settings::new(ComponentKind::Connector, id);
        ServiceGraph::with_settings(set, cfg, next)
    }

    fn with_settings(
        set: vigil_core::Settings,
        cfg: ServiceGraphConfig,
        next: Option<Arc<dyn Consumer>>,
    ) -> Self {
        let bounds = cfg
            .latency_histogram_buckets
            .iter()
            .map(Duration::as_secs_f64)
            .collect();
        ServiceGraph {
            inner: Arc::new(Inner {
                label: set.id.to_string(),
                obs: set.connector_obs(),
                cfg,
                bounds,
                next,
                state: Mutex::new(State::default()),
                graph: OnceLock::new(),
                start_ns: now_ns(),
            }),
            tasks: set.tasks,
        }
    }

    /// The dependency graph this connector feeds (its own until `start` swaps in the host's).
    pub fn graph(&self) -> Arc<DependencyGraph> {
        self.inner.graph().clone()
    }

    /// Pairs the spans of a batch.
    pub fn ingest(&self, data: &Telemetry) {
        self.inner.ingest(data);
    }

    /// Turns expired half-edges into virtual-node edges (or drops them), as the store loop does.
    pub fn expire(&self, older_than: Duration) {
        self.inner.expire(older_than, Instant::now());
    }

    /// Runs the store's expiry with `store.ttl` as it would run `later` from now: how a replay or a
    /// test lets seconds of export delay pass without waiting for them.
    pub fn expire_later(&self, later: Duration) {
        let now = Instant::now();
        self.inner.expire(
            self.inner.cfg.store.ttl,
            now.checked_add(later).unwrap_or(now),
        );
    }

    /// The current cumulative metrics.
    pub fn metrics(&self) -> Vec<ResourceMetrics> {
        self.inner.metrics()
    }

    /// Client and server halves that expired without their other half so far.
    pub fn unpaired(&self) -> u64 {
        lock(&self.inner.state).unpaired
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host == "::1" || host == "[::1]" || host.starts_with("127.")
}

/// `host` and `port` as one key. Loopback names are one host: a client that calls 127.0.0.1 reaches
/// the server that was addressed as localhost.
fn addr_key(host: &str, port: &str) -> String {
    let h = host
        .trim_matches(|c| c == '[' || c == ']')
        .to_ascii_lowercase();
    let h = if is_loopback(&h) { "localhost" } else { &h };
    format!("{h}:{port}")
}

/// Splits `host:port` (or `[v6]:port`); a bare host, or a bare IPv6 address, has no port.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once("]:") {
            Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
            _ => (rest.trim_end_matches(']'), None),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p))
            if !h.contains(':') && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) =>
        {
            (h, Some(p))
        }
        _ => (s, None),
    }
}

/// `host:port` of a URL such as `http://inventory:8080/work`, the scheme's port when it names none.
fn url_host_port(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let (host, port) = split_host_port(authority);
    if host.is_empty() {
        return None;
    }
    let port = match (port, scheme.to_ascii_lowercase().as_str()) {
        (Some(p), _) => p.to_string(),
        (None, "https") => "443".into(),
        (None, "http") => "80".into(),
        _ => return None,
    };
    Some((host.to_string(), port))
}

impl Inner {
    fn graph(&self) -> &Arc<DependencyGraph> {
        self.graph
            .get_or_init(|| Arc::new(DependencyGraph::default()))
    }

    fn dims(&self, span: &Span, res: &[KeyValue]) -> Vec<(String, String)> {
        self.cfg
            .dimensions
            .iter()
            .filter_map(|d| {
                str_attr(&span.attributes, d)
                    .or_else(|| str_attr(res, d))
                    .map(|v| (d.clone(), v))
            })
            .collect()
    }

    /// Where a client span of `service` went. Databases are named by their system and their name
    /// or address (`postgresql:orders`, `redis@cache-1:6379`; an embedded one such as SQLite, with
    /// neither, by the service it lives in: `sqlite@inventory`), so that two services' databases are
    /// two nodes. A `peer.service` names the peer as given. Other peers are named by the address they
    /// were called at, `host:port`, unless a service turns out to listen there.
    fn peer(&self, span: &Span, service: &str) -> Option<Peer> {
        let a = &span.attributes;
        let first = |keys: &[&str]| keys.iter().find_map(|k| str_attr(a, k));
        let host = first(&[
            "server.address",
            "net.peer.name",
            "network.peer.address",
            "net.sock.peer.addr",
            "net.peer.ip",
        ]);
        let port = first(&[
            "server.port",
            "net.peer.port",
            "network.peer.port",
            "net.sock.peer.port",
        ]);
        let mut addrs = Vec::new();
        for k in [
            "server.address",
            "net.peer.name",
            "network.peer.address",
            "net.sock.peer.addr",
            "net.peer.ip",
        ] {
            if let (Some(h), Some(p)) = (str_attr(a, k), port.as_deref()) {
                addrs.push(addr_key(&h, p));
            }
        }
        if let Some((h, p)) = first(&["url.full", "http.url"]).and_then(|u| url_host_port(&u)) {
            addrs.push(addr_key(&h, &p));
        }
        addrs.dedup();
        let address = host.as_ref().map(|h| match &port {
            Some(p) => format!("{h}:{p}"),
            None => h.clone(),
        });
        let node = if let Some(system) = first(&["db.system", "db.system.name"]) {
            let name = match first(&["db.name", "db.namespace"]) {
                Some(db) => format!("{system}:{db}"),
                None => match &address {
                    Some(addr) => format!("{system}@{addr}"),
                    None => format!("{system}@{service}"),
                },
            };
            // A database is never a service's listener: its address is not looked up.
            addrs.clear();
            Some((name, "database"))
        } else if let Some(p) = str_attr(a, "peer.service") {
            Some((p, "virtual_node"))
        } else if let Some(m) = str_attr(a, "messaging.system") {
            let dest = first(&["messaging.destination.name", "messaging.destination"]);
            Some((
                dest.map(|d| format!("{m}:{d}")).unwrap_or(m),
                "messaging_system",
            ))
        } else {
            self.cfg
                .virtual_node_peer_attributes
                .iter()
                .find_map(|k| str_attr(a, k))
                .or(address)
                .map(|v| (v, "virtual_node"))
        };
        (node.is_some() || !addrs.is_empty()).then_some(Peer { addrs, node })
    }

    /// The `host:port` keys a server span was addressed at.
    fn listens(span: &Span) -> Vec<String> {
        let a = &span.attributes;
        let port = ["server.port", "net.host.port"]
            .iter()
            .find_map(|k| str_attr(a, k));
        let mut out = Vec::new();
        for k in ["server.address", "net.host.name", "http.host"] {
            let Some(v) = str_attr(a, k) else { continue };
            // Some servers put the Host header, port and all, into the address.
            let (h, p) = split_host_port(&v);
            if let Some(p) = p.map(str::to_string).or_else(|| port.clone()) {
                out.push(addr_key(h, &p));
            }
        }
        out.dedup();
        out
    }

    fn ingest(&self, data: &Telemetry) {
        let Telemetry::Traces(rss) = data else { return };
        let mut st = lock(&self.state);
        let mut dropped = 0u64;
        let mut no_room = 0u64;
        let mut done = Vec::new();
        let mut immediate: Vec<(Side, String)> = Vec::new();
        for rs in rss {
            let res = rs
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            let service = str_attr(res, "service.name").unwrap_or_else(|| "unknown".into());
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    let kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
                    let seconds = span
                        .end_time_unix_nano
                        .saturating_sub(span.start_time_unix_nano)
                        as f64
                        / 1e9;
                    let failed = span
                        .status
                        .as_ref()
                        .is_some_and(|s| s.code == StatusCode::Error as i32);
                    let (key, is_client) = match kind {
                        SpanKind::Client | SpanKind::Producer => {
                            ((span.trace_id.clone(), span.span_id.clone()), true)
                        }
                        SpanKind::Server | SpanKind::Consumer => {
                            if span.parent_span_id.is_empty() {
                                continue;
                            }
                            ((span.trace_id.clone(), span.parent_span_id.clone()), false)
                        }
                        _ => continue,
                    };
                    if kind == SpanKind::Server {
                        for addr in Self::listens(span) {
                            if st.listeners.get(&addr) == Some(&service) {
                                continue;
                            }
                            if st.listeners.len() >= MAX_LISTENERS
                                && !st.listeners.contains_key(&addr)
                            {
                                no_room += 1;
                                continue;
                            }
                            st.listeners.insert(addr, service.clone());
                        }
                    }
                    let side = Side {
                        service: service.clone(),
                        seconds,
                        failed,
                        dims: self.dims(span, res),
                        peer: if is_client {
                            self.peer(span, &service)
                        } else {
                            None
                        },
                    };
                    // A database has no server half to wait for: waiting out the ttl would only
                    // delay its edge, and with it the finding that a database is slow.
                    if kind == SpanKind::Client {
                        if let Some(Peer {
                            node: Some((name, "database")),
                            ..
                        }) = &side.peer
                        {
                            let name = name.clone();
                            immediate.push((side, name));
                            continue;
                        }
                    }
                    if !st.pending.contains_key(&key) {
                        if st.pending.len() >= self.cfg.store.max_items {
                            dropped += 1;
                            continue;
                        }
                        st.order.push_back((key.clone(), Instant::now()));
                    }
                    let e = st.pending.entry(key.clone()).or_default();
                    e.created.get_or_insert_with(Instant::now);
                    if is_client {
                        e.client = Some(side);
                    } else {
                        e.server = Some(side);
                    }
                    if e.client.is_some() && e.server.is_some() {
                        if let Some(p) = st.pending.remove(&key) {
                            done.push(p);
                        }
                    }
                }
            }
        }
        for p in done {
            if let (Some(c), Some(s)) = (p.client, p.server) {
                self.record(&mut st, &c, Some(&s), &s.service.clone(), "");
            }
        }
        for (c, name) in immediate {
            self.record(&mut st, &c, None, &name, "database");
        }
        if dropped > 0 {
            metrics::counter!("vigil_servicegraph_edges_dropped", "connector" => self.label.clone())
                .increment(dropped);
        }
        if no_room > 0 {
            metrics::counter!("vigil_servicegraph_listeners_dropped", "connector" => self.label.clone())
                .increment(no_room);
        }
    }

    fn record(
        &self,
        st: &mut State,
        client: &Side,
        server: Option<&Side>,
        server_name: &str,
        connection_type: &str,
    ) {
        let mut dims: Vec<(String, String)> = client
            .dims
            .iter()
            .map(|(k, v)| (format!("client_{k}"), v.clone()))
            .collect();
        if let Some(s) = server {
            dims.extend(
                s.dims
                    .iter()
                    .map(|(k, v)| (format!("server_{k}"), v.clone())),
            );
        }
        let key = (
            client.service.clone(),
            server_name.to_string(),
            connection_type.to_string(),
            dims,
        );
        if !st.series.contains_key(&key) && st.series.len() >= MAX_SERIES {
            metrics::counter!("vigil_servicegraph_series_dropped", "connector" => self.label.clone())
                .increment(1);
            return;
        }
        let n = self.bounds.len();
        let e = st.series.entry(key).or_insert_with(|| Series {
            total: 0,
            failed: 0,
            server: Hist::new(n),
            client: Hist::new(n),
        });
        e.total += 1;
        if client.failed || server.is_some_and(|s| s.failed) {
            e.failed += 1;
        }
        e.client.observe(&self.bounds, client.seconds);
        if let Some(s) = server {
            e.server.observe(&self.bounds, s.seconds);
        }
        self.graph().record(&client.service, server_name);
    }

    fn expire(&self, ttl: Duration, now: Instant) {
        let mut st = lock(&self.state);
        let mut expired = 0u64;
        let (mut clients, mut servers) = (0u64, 0u64);
        while let Some((key, at)) = st.order.front().cloned() {
            if now.saturating_duration_since(at) < ttl {
                break;
            }
            st.order.pop_front();
            let Some(p) = st.pending.remove(&key) else {
                continue;
            };
            match (&p.client, &p.server) {
                (Some(c), None) => {
                    let listener = c.peer.as_ref().and_then(|peer| {
                        peer.addrs
                            .iter()
                            .find_map(|a| st.listeners.get(a))
                            .filter(|s| **s != c.service)
                            .cloned()
                    });
                    let node = c.peer.as_ref().and_then(|p| p.node.clone());
                    // A queue's consumer may never come; that is not a lost half.
                    if !matches!(&node, Some((_, "messaging_system"))) {
                        clients += 1;
                    }
                    match (listener, node) {
                        // Its server half is late or lost, but the callee is known: the call counts
                        // on the real edge, with the client's view of its latency only.
                        (Some(service), _) => self.record(&mut st, c, None, &service, ""),
                        (None, Some((name, kind))) => self.record(&mut st, c, None, &name, kind),
                        (None, None) => expired += 1,
                    }
                }
                (None, Some(s)) => {
                    servers += 1;
                    // A server span with no instrumented caller: the caller is the outside world.
                    let user = Side {
                        service: "user".into(),
                        seconds: s.seconds,
                        failed: s.failed,
                        dims: Vec::new(),
                        peer: None,
                    };
                    let server_name = s.service.clone();
                    let mut s2 = s.clone();
                    s2.dims.clear();
                    self.record(&mut st, &user, Some(&s2), &server_name, "virtual_node");
                }
                _ => expired += 1,
            }
        }
        if expired > 0 {
            metrics::counter!("vigil_servicegraph_edges_expired", "connector" => self.label.clone())
                .increment(expired);
        }
        st.unpaired += clients + servers;
        for (side, n) in [("client", clients), ("server", servers)] {
            if n > 0 {
                metrics::counter!("vigil_servicegraph_unpaired", "connector" => self.label.clone(), "side" => side)
                    .increment(n);
            }
        }
    }

    fn metrics(&self) -> Vec<ResourceMetrics> {
        let st = lock(&self.state);
        if st.series.is_empty() {
            return Vec::new();
        }
        let now = now_ns();
        let mut total = Vec::new();
        let mut failed = Vec::new();
        let mut server = Vec::new();
        let mut client = Vec::new();
        for ((c, s, ct, dims), v) in &st.series {
            let mut attrs = vec![kv_str("client", c.clone()), kv_str("server", s.clone())];
            if !ct.is_empty() {
                attrs.push(kv_str("connection_type", ct.clone()));
            }
            attrs.extend(dims.iter().map(|(k, v)| kv_str(k, v.clone())));
            let num = |n: u64| NumberDataPoint {
                attributes: attrs.clone(),
                start_time_unix_nano: self.start_ns,
                time_unix_nano: now,
                value: Some(number_data_point::Value::AsInt(
                    i64::try_from(n).unwrap_or(i64::MAX),
                )),
                ..Default::default()
            };
            let hist = |h: &Hist| HistogramDataPoint {
                attributes: attrs.clone(),
                start_time_unix_nano: self.start_ns,
                time_unix_nano: now,
                count: h.count,
                sum: Some(h.sum),
                bucket_counts: h.counts.clone(),
                explicit_bounds: self.bounds.clone(),
                ..Default::default()
            };
            total.push(num(v.total));
            failed.push(num(v.failed));
            server.push(hist(&v.server));
            client.push(hist(&v.client));
        }
        let cumulative = AggregationTemporality::Cumulative as i32;
        let sum = |name: &str, pts| Metric {
            name: name.into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: pts,
                aggregation_temporality: cumulative,
                is_monotonic: true,
            })),
            ..Default::default()
        };
        let histo = |name: &str, pts| Metric {
            name: name.into(),
            unit: "s".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: pts,
                aggregation_temporality: cumulative,
            })),
            ..Default::default()
        };
        vec![ResourceMetrics {
            resource: Some(Resource::default()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "vigil/servicegraph".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics: vec![
                    sum("traces_service_graph_request_total", total),
                    sum("traces_service_graph_request_failed_total", failed),
                    histo("traces_service_graph_request_server_seconds", server),
                    histo("traces_service_graph_request_client_seconds", client),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }]
    }

    async fn flush(&self) {
        let Some(next) = &self.next else { return };
        let m = self.metrics();
        if m.is_empty() {
            return;
        }
        let data = Telemetry::Metrics(m);
        self.obs.produced(Signal::Metrics, data.item_count());
        // The metrics are cumulative: the next flush carries whatever this one could not.
        if let Err(e) = next.consume(data).await {
            tracing::warn!(connector = %self.label, error = %e, "service graph metrics dropped");
        }
    }
}

#[async_trait]
impl Component for ServiceGraph {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        let graph = host
            .service(&KEY)
            .map_err(|e| anyhow::anyhow!("connectors::{}: {e}", self.inner.label))?;
        let _ = self.inner.graph.set(graph);
        let inner = Arc::clone(&self.inner);
        let flush_every = inner
            .cfg
            .metrics_flush_interval
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(60));
        let expire_every = inner
            .cfg
            .store_expiration_loop
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(2))
            .min(inner.cfg.store.ttl);
        let flusher = Arc::clone(&inner);
        self.tasks.spawn_ticker(flush_every, move || {
            let inner = Arc::clone(&flusher);
            async move { inner.flush().await }
        });
        self.tasks.spawn_ticker(expire_every, move || {
            inner.expire(inner.cfg.store.ttl, Instant::now());
            // Edges not seen for a while leave the live graph, so that it follows deploys.
            inner.graph().expire(Duration::from_secs(3600));
            std::future::ready(())
        });
        Ok(())
    }

    /// Stops the loops and sends the metrics once more, within the shutdown deadline.
    async fn shutdown_by(&self, deadline: std::time::Instant) -> anyhow::Result<()> {
        self.tasks.stop(deadline).await;
        if vigil_core::task::within(deadline, self.inner.flush())
            .await
            .is_none()
        {
            tracing::warn!(connector = %self.inner.label, "service graph metrics not sent by the shutdown deadline");
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for ServiceGraph {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        self.inner.obs.consumed(data.signal(), data.item_count());
        self.inner.ingest(&data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::otlp::trace::v1::{ResourceSpans, ScopeSpans, Status};
    use vigil_detect::incident::Topology;

    fn span(kind: SpanKind, id: u8, parent: u8, ms: u64, attrs: Vec<KeyValue>) -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![id; 8],
            parent_span_id: if parent == 0 { vec![] } else { vec![parent; 8] },
            kind: kind as i32,
            start_time_unix_nano: 1_000_000_000,
            end_time_unix_nano: 1_000_000_000 + ms * 1_000_000,
            attributes: attrs,
            status: Some(Status::default()),
            ..Default::default()
        }
    }

    fn batch(service: &str, spans: Vec<Span>) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn cfg(max_items: usize) -> ServiceGraphConfig {
        let id = ComponentId::parse("servicegraph").unwrap();
        parse(
            &id,
            &serde_json::json!({"store": {"ttl": "1s", "max_items": max_items}}),
        )
        .unwrap()
    }

    #[test]
    fn pairs_client_and_server_and_names_virtual_databases() {
        let id = ComponentId::parse("servicegraph").unwrap();
        let sg = ServiceGraph::new(&id, cfg(100), None);
        let mut failed = span(SpanKind::Server, 3, 2, 30, vec![]);
        failed.status = Some(Status {
            code: StatusCode::Error as i32,
            ..Default::default()
        });
        sg.ingest(&Telemetry::Traces(vec![
            batch(
                "web",
                vec![
                    span(SpanKind::Client, 2, 1, 40, vec![]),
                    span(
                        SpanKind::Client,
                        4,
                        1,
                        5,
                        vec![
                            kv_str("db.system", "postgresql"),
                            kv_str("db.name", "orders"),
                        ],
                    ),
                ],
            ),
            batch("api", vec![failed]),
        ]));
        sg.expire(Duration::ZERO);
        let g = sg.graph();
        assert_eq!(
            g.callees("web"),
            vec!["api".to_string(), "postgresql:orders".to_string()]
        );
        let m = sg.metrics();
        let metrics = &m[0].scope_metrics[0].metrics;
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "traces_service_graph_request_total",
                "traces_service_graph_request_failed_total",
                "traces_service_graph_request_server_seconds",
                "traces_service_graph_request_client_seconds"
            ]
        );
        let Some(metric::Data::Sum(failed)) = &metrics[1].data else {
            panic!("not a sum")
        };
        // web → api failed once; web → orders (database) did not.
        let by_server: BTreeMap<String, (i64, String)> = failed
            .data_points
            .iter()
            .map(|p| {
                let s = str_attr(&p.attributes, "server").unwrap_or_default();
                let ct = str_attr(&p.attributes, "connection_type").unwrap_or_default();
                let v = match p.value {
                    Some(number_data_point::Value::AsInt(i)) => i,
                    _ => -1,
                };
                (s, (v, ct))
            })
            .collect();
        assert_eq!(by_server["api"], (1, String::new()));
        assert_eq!(by_server["postgresql:orders"], (0, "database".to_string()));
        let Some(metric::Data::Histogram(h)) = &metrics[2].data else {
            panic!("not a histogram")
        };
        let api = h
            .data_points
            .iter()
            .find(|p| str_attr(&p.attributes, "server").as_deref() == Some("api"))
            .unwrap();
        assert_eq!(api.count, 1);
        // 30ms falls in the (10ms, 50ms] bucket, index 5.
        assert_eq!(api.bucket_counts[5], 1);
    }

    fn at(mut s: Span, trace: u8) -> Span {
        s.trace_id = vec![trace; 16];
        s
    }

    #[test]
    fn halves_exported_seconds_apart_pair_with_the_default_ttl() {
        let id = ComponentId::parse("servicegraph").unwrap();
        let cfg: ServiceGraphConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        let sg = ServiceGraph::new(&id, cfg, None);
        let addr = vec![
            kv_str("server.address", "127.0.0.1"),
            kv_str("server.port", "5001"),
        ];
        sg.ingest(&Telemetry::Traces(vec![batch(
            "web",
            vec![span(SpanKind::Client, 2, 1, 40, addr)],
        )]));
        // The server's SDK exports its batch one export interval (5 s) and a bit later; the store's
        // expiry loop has run in between.
        sg.expire_later(Duration::from_secs(6));
        sg.ingest(&Telemetry::Traces(vec![batch(
            "api",
            vec![span(SpanKind::Server, 3, 2, 30, vec![])],
        )]));
        sg.expire_later(Duration::from_secs(6));
        assert_eq!(sg.graph().callees("web"), vec!["api".to_string()]);
        assert_eq!(sg.unpaired(), 0);
        assert_eq!(sg.inner.cfg.store.ttl, DEFAULT_TTL);
    }

    #[test]
    fn an_unpaired_call_names_the_service_listening_at_its_address_and_is_counted() {
        let id = ComponentId::parse("servicegraph").unwrap();
        let sg = ServiceGraph::new(&id, cfg(100), None);
        // api's server spans were addressed as 127.0.0.1:5001 (Werkzeug puts the port in the address).
        let listen = vec![
            kv_str("server.address", "127.0.0.1:5001"),
            kv_str("server.port", "5001"),
        ];
        sg.ingest(&Telemetry::Traces(vec![
            batch("web", vec![at(span(SpanKind::Client, 2, 1, 40, vec![]), 1)]),
            batch("api", vec![at(span(SpanKind::Server, 3, 2, 30, listen), 1)]),
        ]));
        // Calls whose server halves are lost: one to api's address (as localhost), one to an
        // uninstrumented address, one to an embedded database with neither a name nor an address.
        let to_api = vec![
            kv_str("server.address", "localhost"),
            kv_str("server.port", "5001"),
            kv_str("url.full", "http://localhost:5001/work"),
        ];
        let to_other = vec![
            kv_str("net.peer.name", "10.1.2.3"),
            kv_str("net.peer.port", "9000"),
        ];
        let to_db = vec![kv_str("db.system", "sqlite")];
        sg.ingest(&Telemetry::Traces(vec![batch(
            "web",
            vec![
                at(span(SpanKind::Client, 4, 1, 40, to_api), 2),
                at(span(SpanKind::Client, 5, 1, 40, to_other), 3),
                at(span(SpanKind::Client, 6, 1, 40, to_db), 4),
            ],
        )]));
        // The database call is an edge at once, without waiting for a server half.
        assert_eq!(
            sg.graph().callees("web"),
            vec!["api".to_string(), "sqlite@web".to_string()]
        );
        sg.expire(Duration::ZERO);
        assert_eq!(
            sg.graph().callees("web"),
            vec![
                "10.1.2.3:9000".to_string(),
                "api".to_string(),
                "sqlite@web".to_string()
            ]
        );
        // The database call has no server half to miss.
        assert_eq!(sg.unpaired(), 2);
    }

    #[test]
    fn addresses_split_and_urls_parse() {
        assert_eq!(split_host_port("a:80"), ("a", Some("80")));
        assert_eq!(split_host_port("[::1]:80"), ("::1", Some("80")));
        assert_eq!(split_host_port("::1"), ("::1", None));
        assert_eq!(split_host_port("a"), ("a", None));
        assert_eq!(
            url_host_port("https://u@Inventory/x?y"),
            Some(("Inventory".into(), "443".into()))
        );
        assert_eq!(url_host_port("no-scheme"), None);
        assert_eq!(addr_key("Inventory", "80"), "inventory:80");
        assert_eq!(addr_key("127.0.0.1", "80"), addr_key("[::1]", "80"));
    }

    #[test]
    fn the_store_is_bounded() {
        let id = ComponentId::parse("servicegraph").unwrap();
        let sg = ServiceGraph::new(&id, cfg(1), None);
        sg.ingest(&Telemetry::Traces(vec![batch(
            "web",
            vec![
                span(SpanKind::Client, 2, 1, 40, vec![]),
                span(SpanKind::Client, 3, 1, 40, vec![]),
            ],
        )]));
        assert_eq!(lock(&sg.inner.state).pending.len(), 1);
    }

    #[test]
    fn config_errors_name_the_key() {
        let id = ComponentId::parse("servicegraph").unwrap();
        let e = parse(&id, &serde_json::json!({"store": {"max_items": 0}})).unwrap_err();
        assert!(e.to_string().contains("store::max_items"), "{e}");
        let e = parse(
            &id,
            &serde_json::json!({"latency_histogram_buckets": ["1s", "1ms"]}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("latency_histogram_buckets"), "{e}");
        assert!(parse(
            &id,
            &serde_json::json!({"dimensions": ["http.method"], "metrics_flush_interval": "15s",
                                "virtual_node_peer_attributes": ["db.name"]})
        )
        .is_ok());
    }
}
