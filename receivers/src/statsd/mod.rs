//! `statsd`: receives StatsD lines (with DogStatsD tags and sample rates) over UDP, TCP or a Unix
//! datagram socket and aggregates them for `aggregation_interval`, as otelcol-contrib's `statsd`
//! receiver does with the same keys and defaults: counters become delta sums, gauges gauges, and
//! timers, histograms and distributions gauges or summaries as `timer_histogram_mapping` says.
//! `parse` reads the line protocol.

pub mod expo;
pub mod parse;

use crate::listen::{accept_capped, Listening};
use crate::serve::default_max_connections;
use async_trait::async_trait;
use parse::Kind;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use vigil_core::attrs::kv_str;
use vigil_core::config::{check_endpoint, resolve_endpoint};
use vigil_core::otlp::common::v1::{InstrumentationScope, KeyValue};
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point, summary_data_point::ValueAtQuantile, AggregationTemporality,
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::time::now_nanos;
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, Consumer, Host, NextConsumers, Receiver,
    ReceiverObs, Signal, Telemetry,
};

/// The longest line read from a TCP stream; a longer one is skipped to its newline and counted
/// as bad. A UDP or Unix datagram is bounded by its 64 KiB buffer.
pub const MAX_LINE: usize = 64 * 1024;
/// Values a summary keeps per series and interval for its quantiles; beyond it a reservoir keeps a
/// uniform sample, while count and sum stay exact.
pub const MAX_SAMPLES: usize = 8192;
/// `max_series`'s default: distinct series (name, type and tags) held per interval.
pub const DEFAULT_MAX_SERIES: usize = 100_000;
const SCOPE: &str = "otelcol/statsdreceiver";

fn default_endpoint() -> String {
    "localhost:8125".into()
}
fn default_transport() -> String {
    "udp".into()
}
fn default_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_max_series() -> usize {
    DEFAULT_MAX_SERIES
}
fn default_mapping() -> Vec<TimerHistogramMapping> {
    ["timer", "histogram", "distribution"]
        .into_iter()
        .map(|t| TimerHistogramMapping {
            statsd_type: t.into(),
            observer_type: "gauge".into(),
            histogram: None,
            summary: None,
        })
        .collect()
}

/// `receivers::statsd` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatsdConfig {
    /// `host:port`, or a socket path with `transport: unixgram`.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// `udp` (also `udp4`/`udp6`), `tcp` (`tcp4`/`tcp6`) or `unixgram`.
    #[serde(default = "default_transport")]
    pub transport: String,
    #[serde(default = "default_interval", with = "vigil_core::config::duration")]
    pub aggregation_interval: Duration,
    /// Adds the `metric_type` attribute (counter, gauge, timing, histogram, distribution).
    #[serde(default)]
    pub enable_metric_type: bool,
    /// Accepts tags without a value (`#debug`), as an attribute with an empty value.
    #[serde(default)]
    pub enable_simple_tags: bool,
    /// Counters' sums are marked monotonic.
    #[serde(default)]
    pub is_monotonic_counter: bool,
    #[serde(default = "default_mapping")]
    pub timer_histogram_mapping: Vec<TimerHistogramMapping>,
    /// vigil's: distinct series held per interval; a line that would add one more is dropped and
    /// counted in `vigil_statsd_series_refused`.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
}

impl Default for StatsdConfig {
    fn default() -> Self {
        StatsdConfig {
            endpoint: default_endpoint(),
            transport: default_transport(),
            aggregation_interval: default_interval(),
            enable_metric_type: false,
            enable_simple_tags: false,
            is_monotonic_counter: false,
            timer_histogram_mapping: default_mapping(),
            max_series: DEFAULT_MAX_SERIES,
        }
    }
}

/// One `timer_histogram_mapping` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimerHistogramMapping {
    /// `timer` (or `timing`), `histogram` or `distribution`.
    #[serde(default)]
    pub statsd_type: String,
    /// `gauge`, `summary`, `histogram` or `disabled`.
    #[serde(default)]
    pub observer_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<HistogramConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<SummaryConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HistogramConfig {
    #[serde(default)]
    pub max_size: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryConfig {
    /// Percentiles between 0 and 100; default 0, 10, 50, 90, 95, 100.
    #[serde(default)]
    pub percentiles: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq)]
enum Observer {
    Disabled,
    Gauge,
    /// Quantiles, 0..=1.
    Summary(Vec<f64>),
    /// An exponential histogram of at most this many buckets per sign.
    Histogram(u32),
}

#[derive(Debug, Clone, PartialEq)]
enum Transport {
    Udp,
    Tcp,
    Unixgram,
}

#[derive(Debug)]
struct Checked {
    transport: Transport,
    endpoint: String,
    interval: Duration,
    metric_type: bool,
    simple_tags: bool,
    monotonic: bool,
    timer: Observer,
    histogram: Observer,
    distribution: Observer,
    max_series: usize,
}

fn err(id: &ComponentId, path: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Receiver, id, path, msg)
}

fn check(id: &ComponentId, c: &StatsdConfig) -> Result<Checked, ConfigError> {
    let transport = match c.transport.as_str() {
        "udp" | "udp4" | "udp6" => Transport::Udp,
        "tcp" | "tcp4" | "tcp6" => Transport::Tcp,
        "unixgram" => Transport::Unixgram,
        o => {
            return Err(err(
                id,
                "transport",
                format!("unsupported transport {o:?}: expected udp, udp4, udp6, tcp, tcp4, tcp6 or unixgram"),
            ))
        }
    };
    if transport == Transport::Unixgram {
        if c.endpoint.is_empty() {
            return Err(err(id, "endpoint", "required: a socket path for unixgram"));
        }
    } else {
        check_endpoint(&c.endpoint).map_err(|e| err(id, "endpoint", e))?;
    }
    if c.aggregation_interval.is_zero() {
        return Err(err(
            id,
            "aggregation_interval",
            "must be positive, such as \"60s\"",
        ));
    }
    if c.max_series == 0 {
        return Err(err(id, "max_series", "must be at least 1"));
    }
    let (mut timer, mut histogram, mut distribution) = (None, None, None);
    for (i, m) in c.timer_histogram_mapping.iter().enumerate() {
        let at = |k: &str| format!("timer_histogram_mapping::{i}::{k}");
        let slot = match m.statsd_type.as_str() {
            "timer" | "timing" => &mut timer,
            "histogram" => &mut histogram,
            "distribution" => &mut distribution,
            o => {
                return Err(err(
                    id,
                    &at("statsd_type"),
                    format!(
                        "unsupported statsd_type {o:?}: expected timer, histogram or distribution"
                    ),
                ))
            }
        };
        if slot.is_some() {
            return Err(err(
                id,
                &at("statsd_type"),
                format!("{:?} is mapped twice", m.statsd_type),
            ));
        }
        if m.histogram.is_some() && m.observer_type != "histogram" {
            return Err(err(
                id,
                &at("histogram"),
                "histogram settings need observer_type: histogram",
            ));
        }
        if m.summary.is_some() && m.observer_type != "summary" {
            return Err(err(
                id,
                &at("summary"),
                "summary settings need observer_type: summary",
            ));
        }
        let obs = match m.observer_type.as_str() {
            "gauge" => Observer::Gauge,
            "disabled" => Observer::Disabled,
            "summary" => {
                let ps = match &m.summary {
                    Some(s) if !s.percentiles.is_empty() => s.percentiles.clone(),
                    _ => vec![0.0, 10.0, 50.0, 90.0, 95.0, 100.0],
                };
                for p in &ps {
                    if !(0.0..=100.0).contains(p) {
                        return Err(err(
                            id,
                            &at("summary::percentiles"),
                            format!("percentile {p} is outside 0-100"),
                        ));
                    }
                }
                Observer::Summary(ps.iter().map(|p| p / 100.0).collect())
            }
            "histogram" => {
                let max = m.histogram.as_ref().and_then(|h| h.max_size).unwrap_or(expo::DEFAULT_MAX_SIZE);
                if !(2..=16384).contains(&max) {
                    return Err(err(
                        id,
                        &at("histogram::max_size"),
                        format!("must be between 2 and 16384, got {max}"),
                    ));
                }
                Observer::Histogram(max)
            }
            o => {
                return Err(err(
                    id,
                    &at("observer_type"),
                    format!("unsupported observer_type {o:?}: expected gauge, summary, histogram or disabled"),
                ))
            }
        };
        *slot = Some(obs);
    }
    Ok(Checked {
        transport,
        endpoint: c.endpoint.clone(),
        interval: c.aggregation_interval,
        metric_type: c.enable_metric_type,
        simple_tags: c.enable_simple_tags,
        monotonic: c.is_monotonic_counter,
        // A type the mapping leaves out is not observed, as in otelcol.
        timer: timer.unwrap_or(Observer::Disabled),
        histogram: histogram.unwrap_or(Observer::Disabled),
        distribution: distribution.unwrap_or(Observer::Disabled),
        max_series: c.max_series,
    })
}

struct Factory;

/// The `statsd` receiver factory, for the registry.
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = StatsdConfig;

    fn type_name(&self) -> &'static str {
        "statsd"
    }

    fn validate(&self, id: &ComponentId, cfg: &StatsdConfig) -> Result<(), ConfigError> {
        check(id, cfg).map(|_| ())
    }
}

impl vigil_core::factory::ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[(Signal::Metrics, vigil_core::Stability::Beta)]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: StatsdConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        let checked = check(&set.id, &cfg)?;
        Ok(Arc::new(StatsdReceiver::new(set, checked, next)))
    }
}

/// A series: name, type and its sorted tags.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    name: String,
    kind: Kind,
    tags: Vec<(String, String)>,
}

#[derive(Debug)]
enum Acc {
    Counter(i64),
    Gauge(f64),
    Summary(Samples),
    Histogram(Box<expo::ExpoHistogram>),
}

/// What a summary series saw in an interval: (value, weight) pairs for quantiles, and the
/// weighted count and sum.
#[derive(Debug, Default)]
struct Samples {
    values: Vec<(f64, f64)>,
    count: f64,
    sum: f64,
    seen: u64,
    rng: u64,
}

impl Samples {
    fn add(&mut self, v: f64, w: f64) {
        self.count += w;
        self.sum += v * w;
        self.seen += 1;
        if self.values.len() < MAX_SAMPLES {
            self.values.push((v, w));
            return;
        }
        // Reservoir sampling (Algorithm R) with xorshift: quantiles need a fair sample, not a
        // cryptographic one, and this keeps the crate free of an RNG dependency.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let j = (self.rng % self.seen) as usize;
        if j < MAX_SAMPLES {
            self.values[j] = (v, w);
        }
    }

    /// The weighted empirical quantile (the first value whose cumulative weight reaches q of the
    /// total), as gonum's `stat.Quantile(Empirical)` that otelcol uses.
    fn quantiles(&mut self, qs: &[f64]) -> Vec<ValueAtQuantile> {
        self.values.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total: f64 = self.values.iter().map(|x| x.1).sum();
        qs.iter()
            .map(|&q| {
                let mut acc = 0.0;
                let mut value = self.values.last().map(|x| x.0).unwrap_or(0.0);
                for &(v, w) in &self.values {
                    acc += w;
                    if acc >= q * total {
                        value = v;
                        break;
                    }
                }
                ValueAtQuantile { quantile: q, value }
            })
            .collect()
    }
}

/// One interval's series.
struct Agg {
    start: u64,
    series: HashMap<Key, Acc>,
}

/// What every listener shares: the parsed-line aggregation and the sender.
struct Shared {
    id: String,
    cfg: Checked,
    agg: Mutex<Agg>,
    next: Arc<dyn Consumer>,
    obs: ReceiverObs,
    bad_lines: metrics::Counter,
    series_refused: metrics::Counter,
}

impl Shared {
    /// Parses and aggregates a datagram or a chunk of lines; bad lines are counted and logged at
    /// debug, and never stop the rest.
    fn ingest(&self, data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        let mut agg = vigil_core::task::lock(&self.agg);
        for line in text.split('\n') {
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            match parse::parse_line(line, self.cfg.simple_tags) {
                Ok(l) => self.add(&mut agg, l),
                Err(reason) => {
                    self.bad_lines.increment(1);
                    tracing::debug!(receiver = %self.id, %reason, "statsd: dropping a bad line");
                }
            }
        }
    }

    fn add(&self, agg: &mut Agg, l: parse::Line<'_>) {
        let observer = match l.kind {
            Kind::Counter | Kind::Gauge => None,
            Kind::Timer => Some(&self.cfg.timer),
            Kind::Histogram => Some(&self.cfg.histogram),
            Kind::Distribution => Some(&self.cfg.distribution),
        };
        if observer == Some(&Observer::Disabled) {
            return;
        }
        let mut tags: Vec<(String, String)> = l
            .tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // Attributes are a set: sorted by key, and the last of a repeated key wins.
        tags.reverse();
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        tags.dedup_by(|a, b| a.0 == b.0);
        let key = Key {
            name: l.name.to_string(),
            kind: l.kind,
            tags,
        };
        let len = agg.series.len();
        let acc = match agg.series.get_mut(&key) {
            Some(a) => a,
            None if len >= self.cfg.max_series => {
                self.series_refused.increment(1);
                tracing::debug!(receiver = %self.id, name = l.name, "statsd: max_series reached; dropping a new series");
                return;
            }
            None => {
                let fresh = match (l.kind, observer) {
                    (Kind::Counter, _) => Acc::Counter(0),
                    (_, Some(Observer::Histogram(max))) => {
                        Acc::Histogram(Box::new(expo::ExpoHistogram::new(*max)))
                    }
                    (_, Some(Observer::Summary(_))) => Acc::Summary(Samples {
                        rng: 0x9E37_79B9_7F4A_7C15,
                        ..Default::default()
                    }),
                    _ => Acc::Gauge(0.0),
                };
                agg.series.entry(key).or_insert(fresh)
            }
        };
        match acc {
            // otelcol counts a line's value divided by its sample rate, as an integer.
            Acc::Counter(c) => *c = c.saturating_add((l.value / l.sample_rate) as i64),
            Acc::Gauge(g) if l.delta => *g += l.value,
            Acc::Gauge(g) => *g = l.value,
            Acc::Summary(s) => s.add(l.value, 1.0 / l.sample_rate),
            Acc::Histogram(h) => h.add(l.value, (1.0 / l.sample_rate).round().max(1.0) as u64),
        }
    }

    /// Takes the interval's series and turns them into one OTLP batch.
    fn take(&self) -> Option<(Telemetry, usize)> {
        let now = now_nanos();
        let (start, series) = {
            let mut agg = vigil_core::task::lock(&self.agg);
            let start = std::mem::replace(&mut agg.start, now);
            (start, std::mem::take(&mut agg.series))
        };
        if series.is_empty() {
            return None;
        }
        let n = series.len();
        let mut metrics: Vec<Metric> = Vec::with_capacity(n);
        for (key, acc) in series {
            let mut attributes: Vec<KeyValue> = key
                .tags
                .iter()
                .map(|(k, v)| kv_str(k, v.as_str()))
                .collect();
            if self.cfg.metric_type {
                attributes.push(kv_str("metric_type", key.kind.attribute()));
            }
            let number = |v: number_data_point::Value, start_time_unix_nano: u64| NumberDataPoint {
                attributes: attributes.clone(),
                start_time_unix_nano,
                time_unix_nano: now,
                value: Some(v),
                ..Default::default()
            };
            let data = match acc {
                Acc::Counter(c) => Data::Sum(Sum {
                    data_points: vec![number(number_data_point::Value::AsInt(c), start)],
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                    is_monotonic: self.cfg.monotonic,
                }),
                Acc::Gauge(g) => Data::Gauge(Gauge {
                    data_points: vec![number(number_data_point::Value::AsDouble(g), 0)],
                }),
                Acc::Histogram(h) => Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        attributes: attributes.clone(),
                        start_time_unix_nano: start,
                        time_unix_nano: now,
                        count: h.count,
                        sum: Some(h.sum),
                        scale: h.scale,
                        zero_count: h.zero,
                        positive: Some(h.positive()),
                        negative: Some(h.negative()),
                        min: Some(h.min),
                        max: Some(h.max),
                        ..Default::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                }),
                Acc::Summary(mut s) => {
                    let qs = match key.kind {
                        Kind::Timer => &self.cfg.timer,
                        Kind::Histogram => &self.cfg.histogram,
                        _ => &self.cfg.distribution,
                    };
                    let Observer::Summary(qs) = qs else { continue };
                    Data::Summary(Summary {
                        data_points: vec![SummaryDataPoint {
                            attributes: attributes.clone(),
                            start_time_unix_nano: start,
                            time_unix_nano: now,
                            count: s.count.round() as u64,
                            sum: s.sum,
                            quantile_values: s.quantiles(qs),
                            ..Default::default()
                        }],
                    })
                }
            };
            metrics.push(Metric {
                name: key.name,
                data: Some(data),
                ..Default::default()
            });
        }
        // A stable order, so consecutive batches read alike.
        metrics.sort_by(|a, b| a.name.cmp(&b.name));
        let rm = ResourceMetrics {
            resource: Some(Resource::default()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        };
        Some((Telemetry::Metrics(vec![rm]), n))
    }

    async fn flush(&self) {
        let Some((data, n)) = self.take() else {
            return;
        };
        let r = self.next.consume(data).await;
        self.obs.end_op(Signal::Metrics, n, &r);
        if let Err(e) = r {
            // The interval has moved on, and StatsD senders never resend.
            tracing::debug!(receiver = %self.id, error = %e, "statsd: the pipeline refused an interval's metrics");
        }
    }
}

/// The `statsd` receiver.
pub struct StatsdReceiver {
    id: ComponentId,
    cfg: Mutex<Option<Checked>>,
    next: NextConsumers,
    set: vigil_core::Settings,
    shared: Mutex<Option<Arc<Shared>>>,
    local: Mutex<Option<std::net::SocketAddr>>,
}

impl StatsdReceiver {
    fn new(set: vigil_core::Settings, cfg: Checked, next: NextConsumers) -> StatsdReceiver {
        StatsdReceiver {
            id: set.id.clone(),
            cfg: Mutex::new(Some(cfg)),
            next,
            set,
            shared: Mutex::new(None),
            local: Mutex::new(None),
        }
    }

    /// The UDP or TCP address actually bound, once started; useful with port 0.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        *vigil_core::task::lock(&self.local)
    }
}

#[async_trait]
impl Component for StatsdReceiver {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let Some(next) = self.next.get(Signal::Metrics).cloned() else {
            anyhow::bail!(
                "receivers::{}: no metrics pipeline uses this receiver",
                self.id
            );
        };
        let Some(cfg) = vigil_core::task::lock(&self.cfg).take() else {
            anyhow::bail!("receivers::{}: started twice", self.id);
        };
        let id = self.id.to_string();
        let transport = match cfg.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Unixgram => "unixgram",
        };
        let shared = Arc::new(Shared {
            obs: self.set.receiver_obs(transport),
            bad_lines: metrics::counter!("vigil_statsd_bad_lines", "receiver" => id.clone()),
            series_refused: metrics::counter!("vigil_statsd_series_refused", "receiver" => id.clone()),
            id: id.clone(),
            agg: Mutex::new(Agg {
                start: now_nanos(),
                series: HashMap::new(),
            }),
            next,
            cfg,
        });
        *vigil_core::task::lock(&self.shared) = Some(Arc::clone(&shared));
        let tasks = &self.set.tasks;
        let stop = tasks.stopping();
        match shared.cfg.transport {
            Transport::Udp => {
                let addr = resolve_endpoint(&shared.cfg.endpoint)
                    .map_err(|e| anyhow::anyhow!("receivers::{id}::endpoint: {e}"))?;
                let sock = tokio::net::UdpSocket::bind(addr).await.map_err(|e| {
                    anyhow::anyhow!(
                        "receivers::{id}: cannot listen on udp {}: {e}",
                        shared.cfg.endpoint
                    )
                })?;
                *vigil_core::task::lock(&self.local) = sock.local_addr().ok();
                let h = Arc::clone(&shared);
                tasks.spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            r = sock.recv_from(&mut buf) => if let Ok((n, _)) = r { h.ingest(&buf[..n]) },
                        }
                    }
                });
            }
            Transport::Unixgram => {
                let path = shared.cfg.endpoint.clone();
                let sock = tokio::net::UnixDatagram::bind(&path).map_err(|e| {
                    anyhow::anyhow!("receivers::{id}: cannot listen on unixgram {path}: {e}")
                })?;
                let h = Arc::clone(&shared);
                tasks.spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            r = sock.recv(&mut buf) => if let Ok(n) = r { h.ingest(&buf[..n]) },
                        }
                    }
                    // The socket file would refuse the next bind.
                    let _ = std::fs::remove_file(&path);
                });
            }
            Transport::Tcp => {
                let listener = vigil_core::config::bind_tcp(
                    ComponentKind::Receiver,
                    &self.id,
                    &shared.cfg.endpoint,
                )
                .await?;
                *vigil_core::task::lock(&self.local) = listener.local_addr().ok();
                let h = Arc::clone(&shared);
                let slots = Arc::new(tokio::sync::Semaphore::new(default_max_connections()));
                let refused = metrics::counter!("vigil_listener_connections_refused", "receiver" => id.clone(), "transport" => "tcp");
                let conns = tasks.clone();
                tasks.spawn(async move {
                    let who = Listening {
                        kind: "statsd",
                        id: &h.id,
                        refused,
                    };
                    accept_capped(listener, who, slots, &stop, |sock, _, slot| {
                        let (h, stop) = (Arc::clone(&h), stop.clone());
                        conns.spawn(async move {
                            let _slot = slot;
                            tokio::select! {
                                _ = stop.cancelled() => {}
                                _ = read_lines(sock, &h) => {}
                            }
                        });
                    })
                    .await
                });
            }
        }
        let h = Arc::clone(&shared);
        tasks.spawn_ticker(shared.cfg.interval, move || {
            let h = Arc::clone(&h);
            async move { h.flush().await }
        });
        Ok(())
    }

    /// Listeners stop, then what the current interval holds is sent, within the deadline.
    async fn shutdown_by(&self, deadline: std::time::Instant) -> anyhow::Result<()> {
        self.set.tasks.stop(deadline).await;
        let shared = vigil_core::task::lock(&self.shared).take();
        if let Some(h) = shared {
            let _ = tokio::time::timeout_at(deadline.into(), h.flush()).await;
        }
        Ok(())
    }
}

/// Reads newline-ended lines from a TCP stream, each at most `MAX_LINE` bytes.
async fn read_lines(mut sock: tokio::net::TcpStream, h: &Shared) {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16384];
    // While true, the bytes up to the next newline belong to an over-long line and are skipped.
    let mut skipping = false;
    loop {
        let n = match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut data = &chunk[..n];
        if skipping {
            match memchr::memchr(b'\n', data) {
                Some(i) => {
                    skipping = false;
                    data = &data[i + 1..];
                }
                None => continue,
            }
        }
        buf.extend_from_slice(data);
        if let Some(last) = memchr::memrchr(b'\n', &buf) {
            h.ingest(&buf[..last]);
            buf.drain(..=last);
        }
        if buf.len() > MAX_LINE {
            h.bad_lines.increment(1);
            tracing::debug!(receiver = %h.id, "statsd: skipping a line longer than {MAX_LINE} bytes");
            buf.clear();
            skipping = true;
        }
    }
    if !buf.is_empty() {
        h.ingest(&buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::ConsumeError;

    #[derive(Default)]
    struct Sink(Mutex<Vec<Metric>>);

    #[async_trait]
    impl Consumer for Sink {
        async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
            if let Telemetry::Metrics(rms) = data {
                let mut v = self.0.lock().unwrap();
                for rm in rms {
                    for sm in rm.scope_metrics {
                        assert_eq!(sm.scope.as_ref().unwrap().name, SCOPE);
                        v.extend(sm.metrics);
                    }
                }
            }
            Ok(())
        }
    }

    fn receiver(cfg: StatsdConfig) -> (StatsdReceiver, Arc<Sink>) {
        let id = ComponentId::parse("statsd").unwrap();
        let checked = check(&id, &cfg).unwrap();
        let sink = Arc::new(Sink::default());
        let mut next = NextConsumers::new();
        next.insert(Signal::Metrics, sink.clone());
        let r = StatsdReceiver::new(
            vigil_core::Settings::new(ComponentKind::Receiver, &id),
            checked,
            next,
        );
        (r, sink)
    }

    /// (name, sorted tags) -> the point's value as text, for assertions.
    fn points(sink: &Sink) -> HashMap<(String, Vec<(String, String)>), String> {
        let mut out = HashMap::new();
        for m in sink.0.lock().unwrap().iter() {
            let (attrs, v) = match m.data.as_ref().unwrap() {
                Data::Sum(s) => {
                    let p = &s.data_points[0];
                    assert_eq!(
                        s.aggregation_temporality,
                        AggregationTemporality::Delta as i32
                    );
                    assert!(
                        p.start_time_unix_nano > 0 && p.start_time_unix_nano <= p.time_unix_nano
                    );
                    (
                        &p.attributes,
                        format!("sum {:?} mono={}", p.value, s.is_monotonic),
                    )
                }
                Data::Gauge(g) => (
                    &g.data_points[0].attributes,
                    format!("gauge {:?}", g.data_points[0].value),
                ),
                Data::Summary(s) => {
                    let p = &s.data_points[0];
                    let qs: Vec<String> = p
                        .quantile_values
                        .iter()
                        .map(|q| format!("{}={}", q.quantile, q.value))
                        .collect();
                    (
                        &p.attributes,
                        format!("summary n={} sum={} {}", p.count, p.sum, qs.join(",")),
                    )
                }
                other => panic!("unexpected {other:?}"),
            };
            let tags = attrs
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        vigil_core::attrs::value_to_string(
                            kv.value.as_ref().unwrap().value.as_ref().unwrap(),
                        ),
                    )
                })
                .collect();
            assert!(
                out.insert((m.name.clone(), tags), v).is_none(),
                "{} twice",
                m.name
            );
        }
        out
    }

    fn key(name: &str, tags: &[(&str, &str)]) -> (String, Vec<(String, String)>) {
        (
            name.into(),
            tags.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    async fn wait_for_series(r: &StatsdReceiver, n: usize) {
        let shared = vigil_core::task::lock(&r.shared).clone().unwrap();
        for _ in 0..500 {
            if vigil_core::task::lock(&shared.agg).series.len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the statsd receiver did not see {n} series");
    }

    /// Starts a receiver on `cfg`, runs the real StatsD client (pystatsd) against it over
    /// `transport`, and waits until the receiver holds `series` series; returns what the client
    /// said.
    async fn real_client(
        cfg: StatsdConfig,
        transport: &'static str,
        series: usize,
    ) -> (StatsdReceiver, Arc<Sink>, serde_json::Value) {
        let python = vigil_tests::python();
        let (r, sink) = receiver(cfg);
        r.start(&Host::detached()).await.unwrap();
        let port = r.local_addr().unwrap().port().to_string();
        let out = tokio::task::spawn_blocking(move || {
            vigil_tests::python_script_json(
                &python,
                "statsd_client.py",
                &["127.0.0.1", &port, transport],
            )
        })
        .await
        .unwrap();
        wait_for_series(&r, series).await;
        (r, sink, out)
    }

    /// The real StatsD client (pystatsd, the `statsd` package) sends counters with and without a
    /// sample rate, gauges set and moved by deltas, and timers over UDP, beside a raw DogStatsD
    /// datagram with tags and a bad line; the interval's aggregate is sent at shutdown.
    #[tokio::test]
    async fn a_real_statsd_client_over_udp_is_aggregated() {
        let cfg = StatsdConfig {
            endpoint: "127.0.0.1:0".into(),
            enable_metric_type: true,
            ..Default::default()
        };
        let (r, sink, out) = real_client(cfg, "udp", 7).await;
        assert_eq!(out["sent"], true);
        let shared = vigil_core::task::lock(&r.shared).clone().unwrap();
        r.shutdown().await.unwrap();
        let got = points(&sink);
        let c = |n: i64| format!("sum Some(AsInt({n})) mono=false");
        assert_eq!(got[&key("hits", &[("metric_type", "counter")])], c(8));
        assert_eq!(got[&key("hits.down", &[("metric_type", "counter")])], c(-2));
        // Three lines of 2 at @0.5 count 4 each.
        assert_eq!(got[&key("sampled", &[("metric_type", "counter")])], c(12));
        assert_eq!(
            got[&key("temp", &[("metric_type", "gauge")])],
            "gauge Some(AsDouble(22.0))"
        );
        // Under the default mapping a timer is a gauge of its last value.
        assert_eq!(
            got[&key("lat", &[("metric_type", "timing")])],
            "gauge Some(AsDouble(300.0))"
        );
        // Tags in either order are one series; attributes are sorted by key.
        assert_eq!(
            got[&key(
                "tagged",
                &[
                    ("env", "prod"),
                    ("region", "eu"),
                    ("metric_type", "counter")
                ]
            )],
            c(3)
        );
        assert_eq!(
            got[&key("tagged", &[("env", "dev"), ("metric_type", "counter")])],
            c(4)
        );
        assert_eq!(got.len(), 7, "{got:?}");
        drop(shared);
    }

    /// The same client over TCP, with timers as summaries and monotonic counters.
    #[tokio::test]
    async fn a_real_statsd_client_over_tcp_with_summaries() {
        let mut cfg = StatsdConfig {
            endpoint: "127.0.0.1:0".into(),
            transport: "tcp".into(),
            is_monotonic_counter: true,
            ..Default::default()
        };
        cfg.timer_histogram_mapping[0] = TimerHistogramMapping {
            statsd_type: "timer".into(),
            observer_type: "summary".into(),
            histogram: None,
            summary: Some(SummaryConfig {
                percentiles: vec![0.0, 50.0, 100.0],
            }),
        };
        let (r, sink, _) = real_client(cfg, "tcp", 5).await;
        r.shutdown().await.unwrap();
        let got = points(&sink);
        assert_eq!(got[&key("hits", &[])], "sum Some(AsInt(8)) mono=true");
        assert_eq!(got[&key("temp", &[])], "gauge Some(AsDouble(22.0))");
        assert_eq!(
            got[&key("lat", &[])],
            "summary n=3 sum=600 0=100,0.5=200,1=300"
        );
    }

    /// pystatsd's timers over UDP as otelcol's exponential histogram.
    #[tokio::test]
    async fn a_real_statsd_client_timers_as_exponential_histograms() {
        let mut cfg = StatsdConfig {
            endpoint: "127.0.0.1:0".into(),
            ..Default::default()
        };
        cfg.timer_histogram_mapping[0].observer_type = "histogram".into();
        let (r, sink, _) = real_client(cfg, "udp", 7).await;
        r.shutdown().await.unwrap();
        let got = sink.0.lock().unwrap();
        let lat = got.iter().find(|m| m.name == "lat").expect("lat");
        let Some(Data::ExponentialHistogram(h)) = &lat.data else {
            panic!("{lat:?}")
        };
        let p = &h.data_points[0];
        assert_eq!(
            h.aggregation_temporality,
            AggregationTemporality::Delta as i32
        );
        assert_eq!(
            (p.count, p.sum, p.min, p.max),
            (3, Some(600.0), Some(100.0), Some(300.0))
        );
        let pos = p.positive.as_ref().unwrap();
        assert_eq!(pos.bucket_counts.iter().sum::<u64>(), 3);
        assert!(pos.bucket_counts.len() <= 160 && p.scale <= expo::MAX_SCALE);
    }

    /// Bounds and weights without a network: max_series refuses new series and counts them, a
    /// sampled timer weighs 1/rate in a summary, disabled types are not observed, and a burst of
    /// bad lines is counted without stopping good ones.
    #[test]
    fn bounds_weights_and_bad_lines() {
        let id = ComponentId::parse("statsd").unwrap();
        let mut cfg = StatsdConfig {
            max_series: 3,
            ..Default::default()
        };
        cfg.timer_histogram_mapping = vec![
            TimerHistogramMapping {
                statsd_type: "histogram".into(),
                observer_type: "summary".into(),
                histogram: None,
                summary: None,
            },
            TimerHistogramMapping {
                statsd_type: "distribution".into(),
                observer_type: "disabled".into(),
                histogram: None,
                summary: None,
            },
            TimerHistogramMapping {
                statsd_type: "timer".into(),
                observer_type: "histogram".into(),
                histogram: Some(HistogramConfig { max_size: Some(10) }),
                summary: None,
            },
        ];
        let (sink, refused, bad) = (
            Arc::new(Sink::default()),
            metrics::Counter::noop(),
            metrics::Counter::noop(),
        );
        let shared = Shared {
            id: "statsd".into(),
            cfg: check(&id, &cfg).unwrap(),
            agg: Mutex::new(Agg {
                start: 1,
                series: HashMap::new(),
            }),
            next: sink,
            obs: ReceiverObs::new(&id, "udp"),
            bad_lines: bad,
            series_refused: refused,
        };
        shared.ingest(
            b"h:10|h|@0.5\nh:20|h\nt:5|ms|@0.25\nd:1|d\n\xff\xfe|c\nx:1|c|#a:1\nx:1|c|#a:2\n",
        );
        let mut agg = shared.agg.lock().unwrap();
        // h, t and x{a=1}; the distribution is disabled; x{a=2} is refused.
        assert_eq!(agg.series.len(), 3);
        let Some(Acc::Histogram(t)) = agg.series.values().find(|a| matches!(a, Acc::Histogram(_)))
        else {
            panic!("no histogram")
        };
        assert_eq!((t.count, t.sum, t.min, t.max), (4, 20.0, 5.0, 5.0));
        let Some(Acc::Summary(s)) = agg
            .series
            .values_mut()
            .find(|a| matches!(a, Acc::Summary(_)))
        else {
            panic!("no summary")
        };
        assert_eq!((s.count, s.sum), (3.0, 40.0));
        let q = s.quantiles(&[0.0, 0.5, 0.66, 0.67, 1.0]);
        let v: Vec<f64> = q.iter().map(|q| q.value).collect();
        // 10 weighs 2 of 3, so it is the median and 20 only above the two-thirds point.
        assert_eq!(v, [10.0, 10.0, 10.0, 20.0, 20.0]);
        // Many samples keep count and sum exact, and the reservoir stays bounded.
        let mut big = Samples {
            rng: 1,
            ..Default::default()
        };
        for i in 0..(MAX_SAMPLES * 3) {
            big.add(i as f64, 1.0);
        }
        assert_eq!(big.values.len(), MAX_SAMPLES);
        assert_eq!(big.count as usize, MAX_SAMPLES * 3);
        let med = big.quantiles(&[0.5])[0].value;
        assert!((med - (MAX_SAMPLES * 3 / 2) as f64).abs() < 1500.0, "{med}");
    }

    #[test]
    fn config_errors_name_the_key() {
        let id = ComponentId::parse("statsd").unwrap();
        let bad = |f: &dyn Fn(&mut StatsdConfig)| {
            let mut c = StatsdConfig::default();
            f(&mut c);
            check(&id, &c).unwrap_err().to_string()
        };
        assert!(bad(&|c| c.transport = "sctp".into()).contains("transport"));
        assert!(bad(&|c| c.endpoint = "nope".into()).contains("endpoint"));
        assert!(bad(&|c| c.aggregation_interval = Duration::ZERO).contains("aggregation_interval"));
        let e = bad(&|c| c.timer_histogram_mapping[1].statsd_type = "timer".into());
        assert!(e.contains("timer_histogram_mapping::1::statsd_type"), "{e}");
        let e = bad(&|c| {
            c.timer_histogram_mapping[0].observer_type = "histogram".into();
            c.timer_histogram_mapping[0].histogram = Some(HistogramConfig { max_size: Some(1) });
        });
        assert!(
            e.contains("timer_histogram_mapping::0::histogram::max_size"),
            "{e}"
        );
        let e = bad(&|c| {
            c.timer_histogram_mapping[0].summary = Some(SummaryConfig {
                percentiles: vec![50.0],
            })
        });
        assert!(e.contains("timer_histogram_mapping::0::summary"), "{e}");
        let d = check(&id, &StatsdConfig::default()).unwrap();
        assert_eq!(
            (d.transport, d.endpoint.as_str(), d.interval, d.timer),
            (
                Transport::Udp,
                "localhost:8125",
                Duration::from_secs(60),
                Observer::Gauge
            )
        );
    }
}
