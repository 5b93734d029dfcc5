//! `servicegraph` (traces → metrics): derives who-calls-whom from spans, with otelcol-contrib's keys
//! and metric names. A client span and the server span whose parent it is make one edge; a client span
//! left unpaired when `store.ttl` passes becomes an edge to a virtual node named by its peer
//! attributes (an uninstrumented database or queue). Edges become request counts and latency
//! histograms, and feed the live [`DependencyGraph`] that `correlation` reads.

pub mod graph;

pub use graph::{DependencyGraph, KEY};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vigil_core::attrs::{get, kv_str, value_to_string};
use vigil_core::config::{decode, duration, opt_duration};
use vigil_core::otlp::common::v1::{InstrumentationScope, KeyValue};
use vigil_core::otlp::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::otlp::trace::v1::{span::SpanKind, status::StatusCode, Span};
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConnectorFactory, ConsumeError, Consumer,
    Host, NextConsumers, Signal, Telemetry,
};

/// `store` as in otelcol-contrib.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    #[serde(with = "duration")]
    pub ttl: Duration,
    pub max_items: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            ttl: Duration::from_secs(2),
            max_items: 1000,
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
#[derive(Debug, Clone, Deserialize)]
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
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

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

fn parse(id: &ComponentId, value: &Json) -> Result<ServiceGraphConfig, ConfigError> {
    let c: ServiceGraphConfig = decode(ComponentKind::Connector, id, value)?;
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
pub fn factory() -> Arc<dyn ConnectorFactory> {
    Arc::new(Factory)
}

impl ConnectorFactory for Factory {
    fn type_name(&self) -> &'static str {
        "servicegraph"
    }

    fn pairs(&self) -> &'static [(Signal, Signal)] {
        &[(Signal::Traces, Signal::Metrics)]
    }

    fn validate(&self, id: &ComponentId, config: &Json) -> Result<(), ConfigError> {
        parse(id, config).map(|_| ())
    }

    fn create(
        &self,
        id: &ComponentId,
        config: &Json,
        next: NextConsumers,
    ) -> Result<Arc<dyn vigil_core::Connector>, ConfigError> {
        let cfg = parse(id, config)?;
        Ok(Arc::new(ServiceGraph::new(
            id,
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
    /// Peer attributes of a client span, for a virtual node.
    peer: Option<(String, &'static str)>,
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

/// (trace id, the client span's id): what a client span and its server span share.
type EdgeKey = (Vec<u8>, Vec<u8>);

#[derive(Default)]
struct State {
    pending: HashMap<EdgeKey, Pending>,
    order: VecDeque<(EdgeKey, Instant)>,
    series: BTreeMap<SeriesKey, Series>,
}

struct Inner {
    label: String,
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
    task: tokio::sync::Mutex<Option<(watch::Sender<bool>, JoinHandle<()>)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
        let bounds = cfg
            .latency_histogram_buckets
            .iter()
            .map(Duration::as_secs_f64)
            .collect();
        ServiceGraph {
            inner: Arc::new(Inner {
                label: id.to_string(),
                cfg,
                bounds,
                next,
                state: Mutex::new(State::default()),
                graph: OnceLock::new(),
                start_ns: now_ns(),
            }),
            task: tokio::sync::Mutex::new(None),
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
        self.inner.expire(older_than);
    }

    /// The current cumulative metrics.
    pub fn metrics(&self) -> Vec<ResourceMetrics> {
        self.inner.metrics()
    }
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

    fn peer(&self, span: &Span) -> Option<(String, &'static str)> {
        let kind = if get(&span.attributes, "db.system").is_some() {
            "database"
        } else if get(&span.attributes, "messaging.system").is_some() {
            "messaging_system"
        } else {
            "virtual_node"
        };
        let mut names: Vec<&String> = self.cfg.virtual_node_peer_attributes.iter().collect();
        let extra = ["server.address".to_string(), "messaging.system".to_string()];
        names.extend(extra.iter());
        names
            .into_iter()
            .find_map(|k| str_attr(&span.attributes, k))
            .map(|v| (v, kind))
    }

    fn ingest(&self, data: &Telemetry) {
        let Telemetry::Traces(rss) = data else { return };
        let mut st = lock(&self.state);
        let mut dropped = 0u64;
        let mut done = Vec::new();
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
                    let side = Side {
                        service: service.clone(),
                        seconds,
                        failed,
                        dims: self.dims(span, res),
                        peer: if is_client { self.peer(span) } else { None },
                    };
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
        if dropped > 0 {
            metrics::counter!("vigil_servicegraph_edges_dropped", "connector" => self.label.clone())
                .increment(dropped);
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

    fn expire(&self, ttl: Duration) {
        let mut st = lock(&self.state);
        let mut expired = 0u64;
        while let Some((key, at)) = st.order.front().cloned() {
            if at.elapsed() < ttl {
                break;
            }
            st.order.pop_front();
            let Some(p) = st.pending.remove(&key) else {
                continue;
            };
            match (&p.client, &p.server) {
                (Some(c), None) => match &c.peer {
                    Some((name, kind)) => {
                        let name = name.clone();
                        self.record(&mut st, c, None, &name, kind);
                    }
                    None => expired += 1,
                },
                (None, Some(s)) => {
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
        if let Err(e) = next.consume(Telemetry::Metrics(m)).await {
            tracing::warn!(connector = %self.label, error = %e, "service graph metrics dropped");
        }
    }
}

#[async_trait]
impl Component for ServiceGraph {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        let _ = self.inner.graph.set(host.shared::<DependencyGraph>(KEY));
        let (stop_tx, mut stop_rx) = watch::channel(false);
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
        let handle = tokio::spawn(async move {
            let mut flush = tokio::time::interval(flush_every);
            let mut expire = tokio::time::interval(expire_every);
            flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            expire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = flush.tick() => inner.flush().await,
                    _ = expire.tick() => {
                        inner.expire(inner.cfg.store.ttl);
                        // Edges not seen for a while leave the live graph, so that it follows deploys.
                        inner.graph().expire(Duration::from_secs(3600));
                    }
                    _ = stop_rx.changed() => return,
                }
            }
        });
        *self.task.lock().await = Some((stop_tx, handle));
        Ok(())
    }

    async fn shutdown(&self) -> anyhow::Result<()> {
        if let Some((stop, handle)) = self.task.lock().await.take() {
            let _ = stop.send(true);
            let _ = handle.await;
        }
        self.inner.flush().await;
        Ok(())
    }
}

#[async_trait]
impl Consumer for ServiceGraph {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
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
            vec!["api".to_string(), "orders".to_string()]
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
        assert_eq!(by_server["orders"], (0, "database".to_string()));
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
