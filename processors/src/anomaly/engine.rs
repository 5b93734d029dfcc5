//! The connector's synchronous core: it maps metric points, span windows and log-rate windows onto
//! `vigil-detect`'s per-series detectors and episode trackers, and collects what comes out (events and
//! score gauges). It knows no tokio and no pipeline, so that every behaviour can be tested by feeding
//! OTLP data and a wall clock.

use super::config::{ForecastRule, Settings};
use super::derive::{
    bucket_quantile, exponential_to_explicit, hist_delta, quantile_suffix, sum_rate, Prev,
};
use super::events::{anomaly_event, forecast_event, EndReason, ScoreBatch};
use super::identity::{attrs_hash, series_key, Resources, SeriesMeta};
use super::slo::{self, SloState};
use super::windows::{AggKind, AggMeta, Flushed, Windows};
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use vigil_core::attrs::{get, get_str, kv, kv_str, value_to_string};
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs};
use vigil_core::otlp::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, ResourceMetrics,
};
use vigil_core::otlp::trace::v1::{span::SpanKind, status::StatusCode, ResourceSpans};
use vigil_core::{Signal, Telemetry};
use vigil_detect::forecast::{ForecastConfig, Forecaster};
use vigil_detect::series::{
    DetectorConfig, EpisodeConfig, EpisodeEvent, EpisodeTracker, Part, SeriesDetector, SeriesSet,
    SeriesSetConfig, TrackedSeries, Tuning, DEFAULT_TUNING,
};

/// A forecast is re-fitted every this many points of its series, not per point: a fit costs
/// milliseconds, and the answer barely moves from one point to the next.
pub const FORECAST_EVERY: u32 = 10;
/// At most this many series are forecast at once (each keeps up to 2,048 points of history).
pub const FORECAST_MAX_SERIES: usize = 1000;
/// Evaluations without a predicted crossing before a forecast may be announced again.
const FORECAST_REARM: u32 = 2;
/// The longest forecast, in steps of the series' sampling interval.
const FORECAST_MAX_STEPS: f64 = 10_000.0;

/// Server spans remembered as having a failed CLIENT child, so that their own failure counts as passed
/// on (`red.own_error_ratio` leaves it out). A child ends before its parent and is exported in the same
/// batch or an earlier one, so a few seconds of memory is enough; beyond this many the oldest are
/// forgotten (`vigil_anomaly_failed_calls_evicted`), and a parent that arrives after its entry went
/// counts as an error of its own. 65,536 span ids are 1.5 MiB at most.
pub const FAILED_PARENTS_LIMIT: usize = 65_536;

/// What one call produced.
#[derive(Default)]
pub struct Output {
    /// `vigil.anomaly` and `vigil.forecast` events.
    pub logs: Vec<ResourceLogs>,
    /// Score and band gauges (only when scores are emitted).
    pub scores: ScoreBatch,
}

struct ForecastState {
    rule: usize,
    forecaster: Forecaster,
    since_eval: u32,
    step: f64,
    last_t: f64,
    alerted: bool,
    clear_evals: u32,
}

struct SeriesState {
    tracked: TrackedSeries,
    meta: SeriesMeta,
    // The latest timestamp seen and the value of the last point scored.
    last_t: f64,
    last_v: f64,
    forecast: Option<Box<ForecastState>>,
}

/// Cumulative counts for the connector's own telemetry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Series with a detector now.
    pub live: usize,
    /// Series (detectors, cumulative baselines and aggregation groups) dropped by the `max_series` cap.
    pub evicted: u64,
    /// Series dropped after `series_ttl` without data.
    pub expired: u64,
    /// Values fed to a detector.
    pub points: u64,
    /// Points dropped as a second delivery of the latest point (same timestamp, same value).
    pub duplicates: u64,
    /// Points scored whose timestamp repeated or stepped back (with a new value).
    pub out_of_order: u64,
    /// Events emitted.
    pub events: u64,
    /// Remembered parents of failed calls forgotten to stay under [`FAILED_PARENTS_LIMIT`].
    pub failed_calls_evicted: u64,
}

/// All state of one connector.
pub struct Engine {
    settings: Settings,
    detector: DetectorConfig,
    episodes: EpisodeConfig,
    // Boxed: a hash table keeps up to half its slots empty after it grows, and each empty slot would
    // be the size of a whole series state (416 B); boxed, it is a pointer.
    series: SeriesSet<u64, Box<SeriesState>>,
    // Resource attributes shared by the series of one resource.
    resources: Resources,
    prev: SeriesSet<u64, Prev>,
    windows: Windows,
    open: HashSet<u64>,
    // The SLOs, and per service the SLOs that count its spans.
    slos: Vec<SloState>,
    slo_by_service: HashMap<String, Vec<usize>>,
    forecasting: usize,
    emit_scores: bool,
    points: u64,
    duplicates: u64,
    out_of_order: u64,
    events: u64,
    // Span ids of server spans with a failed CLIENT child, oldest first, and the same as a set.
    failed_parents: VecDeque<u64>,
    failed_parent_set: HashSet<u64>,
    failed_calls_evicted: u64,
}

fn hash_of(parts: &[&str]) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

fn secs(nanos: u64, wall: f64) -> f64 {
    if nanos == 0 {
        wall
    } else {
        nanos as f64 / 1e9
    }
}

fn start_secs(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// The severity group of a log record: the OpenTelemetry range name of its number, or its text.
fn severity(r: &LogRecord) -> String {
    match r.severity_number {
        1..=4 => "TRACE".into(),
        5..=8 => "DEBUG".into(),
        9..=12 => "INFO".into(),
        13..=16 => "WARN".into(),
        17..=20 => "ERROR".into(),
        21..=24 => "FATAL".into(),
        _ if !r.severity_text.is_empty() => r.severity_text.to_ascii_uppercase(),
        _ => "UNSPECIFIED".into(),
    }
}

/// Whether a log record is one of vigil's own events, which must not feed the log rates.
fn is_vigil_event(r: &LogRecord) -> bool {
    r.event_name.starts_with("vigil.")
        || get_str(&r.attributes, "event.name").is_some_and(|n| n.starts_with("vigil."))
}

impl Engine {
    /// An engine with the given settings; `emit_scores` says whether score gauges are wanted.
    pub fn new(settings: Settings, emit_scores: bool) -> Engine {
        let limits = SeriesSetConfig {
            max_series: settings.max_series,
            series_ttl_secs: settings.series_ttl_secs,
        };
        let episodes = EpisodeConfig {
            threshold: settings.threshold,
            end_threshold: settings.threshold * 0.5,
            confirm_points: settings.confirm_points,
            ..EpisodeConfig::default()
        };
        let slos: Vec<SloState> = settings
            .slos
            .iter()
            .map(|s| SloState::new(s.clone(), settings.interval_secs))
            .collect();
        let mut slo_by_service: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, s) in slos.iter().enumerate() {
            slo_by_service
                .entry(s.slo.service.clone())
                .or_default()
                .push(i);
        }
        Engine {
            slos,
            slo_by_service,
            detector: DetectorConfig::default(),
            episodes,
            series: SeriesSet::new(limits),
            resources: Resources::default(),
            prev: SeriesSet::new(limits),
            windows: Windows::new(
                settings.interval_secs,
                settings.max_series,
                settings.series_ttl_secs,
            ),
            open: HashSet::new(),
            forecasting: 0,
            emit_scores,
            points: 0,
            duplicates: 0,
            out_of_order: 0,
            events: 0,
            failed_parents: VecDeque::new(),
            failed_parent_set: HashSet::new(),
            failed_calls_evicted: 0,
            settings,
        }
    }

    /// Series held now that are still in warm-up (learning, not scored). A walk over every series, so
    /// it is for the once-per-interval tick, not for each batch.
    pub fn warming(&self) -> usize {
        self.series
            .values()
            .filter(|st| st.tracked.detector.warming_up())
            .count()
    }

    /// Points a new series is learnt from before its points are scored.
    pub fn warmup_points(&self) -> u32 {
        // The detector never scores before its second point, whatever the config says.
        self.detector.warmup.max(2)
    }

    /// Counts for the connector's own telemetry.
    pub fn counts(&self) -> Counts {
        let s = self.series.stats();
        let p = self.prev.stats();
        Counts {
            live: s.live,
            evicted: s.evicted_lru + p.evicted_lru + self.windows.evicted,
            expired: s.expired + p.expired + self.windows.expired,
            points: self.points,
            duplicates: self.duplicates,
            out_of_order: self.out_of_order,
            events: self.events,
            failed_calls_evicted: self.failed_calls_evicted,
        }
    }

    /// Takes one batch of input. Metrics are scored at once; spans and log records are counted into
    /// their windows, which [`Engine::tick`] scores.
    pub fn ingest(&mut self, data: &Telemetry, wall: f64) -> Output {
        let mut out = Output::default();
        match data {
            Telemetry::Metrics(rm) => self.ingest_metrics(rm, wall, &mut out),
            Telemetry::Traces(rs) => self.ingest_spans(rs, wall),
            Telemetry::Logs(rl) => self.ingest_logs(rl, wall),
            // Not a signal this connector takes (its stability table has no profiles).
            Telemetry::Profiles(_) => {}
        }
        out
    }

    /// Scores the windows that have completed, and drops idle series. `final_flush` (at shutdown) also
    /// scores windows that just ended and closes every open episode.
    pub fn tick(&mut self, wall: f64, final_flush: bool) -> Output {
        let mut out = Output::default();
        for f in self.windows.flush(wall, final_flush) {
            self.feed_window(&f, wall, &mut out);
        }
        for s in &mut self.slos {
            let records = if final_flush {
                s.close(wall)
            } else {
                s.evaluate(wall)
            };
            if !records.is_empty() {
                self.events += records.len() as u64;
                out.logs.push(slo::to_logs(&s.slo.service, records));
            }
        }
        let mut gone = Vec::new();
        self.series.expire(wall, |k, v| gone.push((k, v)));
        self.retire(gone, EndReason::Expired, wall, &mut out);
        self.prev.expire(wall, |_, _| {});
        if final_flush {
            // The connector stops: each open episode gets its end event, so that starts and ends pair up.
            for key in std::mem::take(&mut self.open) {
                let Some(st) = self.series.get(&key) else {
                    continue;
                };
                if let Some(ep) = st.tracked.episodes.open() {
                    out.logs
                        .push(anomaly_event(&st.meta, ep, Some(EndReason::Shutdown), wall));
                    self.events += 1;
                }
            }
        }
        out
    }

    fn retire(
        &mut self,
        gone: Vec<(u64, Box<SeriesState>)>,
        reason: EndReason,
        wall: f64,
        out: &mut Output,
    ) {
        for (key, mut st) in gone {
            self.open.remove(&key);
            if st.forecast.is_some() {
                self.forecasting = self.forecasting.saturating_sub(1);
            }
            if let Some(ep) = st.tracked.episodes.close() {
                out.logs
                    .push(anomaly_event(&st.meta, &ep, Some(reason), wall));
                self.events += 1;
            }
        }
    }

    /// Feeds one value of series `key` (built by `make` when new) to its detector.
    fn observe(
        &mut self,
        key: u64,
        make: impl FnOnce() -> SeriesMeta,
        t: f64,
        value: f64,
        wall: f64,
        out: &mut Output,
    ) {
        if !value.is_finite() {
            return;
        }
        let mut evicted = Vec::new();
        let (detector, episodes, rules) = (&self.detector, self.episodes, &self.settings.forecasts);
        let forecasting = &mut self.forecasting;
        let resources = &mut self.resources;
        let st = self.series.get_or_insert_with(
            &key,
            wall,
            || {
                let mut meta = make();
                meta.resource = resources.intern(&meta.resource);
                let forecast = if *forecasting < FORECAST_MAX_SERIES {
                    forecast_rule(rules, &meta).map(|rule| {
                        *forecasting += 1;
                        Box::new(ForecastState {
                            rule,
                            forecaster: Forecaster::new(ForecastConfig::default()),
                            since_eval: 0,
                            step: f64::INFINITY,
                            last_t: f64::NAN,
                            alerted: false,
                            clear_evals: 0,
                        })
                    })
                } else {
                    None
                };
                Box::new(SeriesState {
                    tracked: TrackedSeries {
                        detector: SeriesDetector::with_tuning(detector, unheld()),
                        episodes: EpisodeTracker::new(episodes),
                    },
                    meta,
                    last_t: f64::NEG_INFINITY,
                    last_v: f64::NAN,
                    forecast,
                })
            },
            |k, v| evicted.push((k, v)),
        );
        // The latest point again, same timestamp and value, is one point delivered twice (an exporter's
        // retry) and is dropped. Any other repeated or earlier timestamp (a clock step, a restarted
        // source) is data: the detector scores it as the next sample, and the episode clock stays at the
        // latest timestamp so that no episode ends before it starts.
        let duplicate = t == st.last_t && value.to_bits() == st.last_v.to_bits();
        if duplicate {
            self.duplicates += 1;
        } else {
            if t <= st.last_t {
                self.out_of_order += 1;
            }
            let o = st.tracked.detector.observe(t, value);
            st.last_t = st.last_t.max(t);
            st.last_v = value;
            let t = st.last_t;
            self.points += 1;
            if self.emit_scores && o.part != Part::Warmup {
                out.scores.push(key, &st.meta, t, value, &o);
            }
            match st.tracked.episodes.update(t, value, &o) {
                Some(EpisodeEvent::Started(ep)) => {
                    self.open.insert(key);
                    out.logs.push(anomaly_event(&st.meta, &ep, None, wall));
                    self.events += 1;
                }
                Some(EpisodeEvent::Ended(ep)) => {
                    self.open.remove(&key);
                    out.logs
                        .push(anomaly_event(&st.meta, &ep, Some(EndReason::Quiet), wall));
                    self.events += 1;
                }
                None => {}
            }
            if let Some(f) = st.forecast.as_deref_mut() {
                if let Some(rule) = rules.get(f.rule) {
                    if let Some(ev) = forecast_step(f, rule, &st.meta, t, value, wall) {
                        out.logs.push(ev);
                        self.events += 1;
                    }
                }
            }
        }
        if !evicted.is_empty() {
            self.retire(evicted, EndReason::Evicted, wall, out);
        }
    }

    fn ingest_metrics(&mut self, rms: &[ResourceMetrics], wall: f64, out: &mut Output) {
        let q = self.settings.histogram_quantile;
        let qname = quantile_suffix(q);
        for rm in rms {
            let resource: &[KeyValue] = rm.resource.as_ref().map_or(&[], |r| &r.attributes);
            let rh = attrs_hash(resource);
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    // Our own gauges must never be scored again (a metrics pipeline may loop back).
                    if m.name.starts_with("vigil.anomaly.") || !self.settings.selects(&m.name) {
                        continue;
                    }
                    let name = m.name.as_str();
                    match &m.data {
                        Some(Data::Gauge(g)) => {
                            for p in &g.data_points {
                                let Some(v) = number(p.value.as_ref()) else {
                                    continue;
                                };
                                let ah = attrs_hash(&p.attributes);
                                let t = secs(p.time_unix_nano, wall);
                                let key = series_key(name, ah, rh);
                                self.observe(
                                    key,
                                    lazy_meta(name, &p.attributes, resource),
                                    t,
                                    v,
                                    wall,
                                    out,
                                );
                            }
                        }
                        Some(Data::Sum(s)) => {
                            let cumulative =
                                s.aggregation_temporality != AggregationTemporality::Delta as i32;
                            // An up-down counter's level is what matters; a counter's rate is.
                            let as_rate = !cumulative || s.is_monotonic;
                            let rate_name = format!("{name}.rate");
                            for p in &s.data_points {
                                let Some(v) = number(p.value.as_ref()) else {
                                    continue;
                                };
                                let ah = attrs_hash(&p.attributes);
                                let t = secs(p.time_unix_nano, wall);
                                if !as_rate {
                                    let key = series_key(name, ah, rh);
                                    self.observe(
                                        key,
                                        lazy_meta(name, &p.attributes, resource),
                                        t,
                                        v,
                                        wall,
                                        out,
                                    );
                                    continue;
                                }
                                let prev = self.prev.get_or_insert_with(
                                    &series_key(name, ah, rh),
                                    wall,
                                    Prev::default,
                                    |_, _| {},
                                );
                                let start = start_secs(p.start_time_unix_nano);
                                if let Some(r) = sum_rate(prev, cumulative, t, start, v) {
                                    let key = series_key(&rate_name, ah, rh);
                                    let make = lazy_meta(&rate_name, &p.attributes, resource);
                                    self.observe(key, make, t, r, wall, out);
                                }
                            }
                        }
                        Some(Data::Histogram(h)) => {
                            let cumulative =
                                h.aggregation_temporality != AggregationTemporality::Delta as i32;
                            for p in &h.data_points {
                                let t = secs(p.time_unix_nano, wall);
                                let start = start_secs(p.start_time_unix_nano);
                                let (bounds, counts) =
                                    (p.explicit_bounds.clone(), p.bucket_counts.clone());
                                self.histogram(
                                    (name, &qname, q),
                                    (&p.attributes, resource, rh),
                                    (t, start, cumulative),
                                    (bounds, counts),
                                    wall,
                                    out,
                                );
                            }
                        }
                        Some(Data::ExponentialHistogram(h)) => {
                            let cumulative =
                                h.aggregation_temporality != AggregationTemporality::Delta as i32;
                            for p in &h.data_points {
                                let t = secs(p.time_unix_nano, wall);
                                let start = start_secs(p.start_time_unix_nano);
                                self.histogram(
                                    (name, &qname, q),
                                    (&p.attributes, resource, rh),
                                    (t, start, cumulative),
                                    exponential_to_explicit(p),
                                    wall,
                                    out,
                                );
                            }
                        }
                        Some(Data::Summary(s)) => {
                            let qn = format!("{name}.{qname}");
                            for p in &s.data_points {
                                let Some(v) = p
                                    .quantile_values
                                    .iter()
                                    .find(|x| (x.quantile - q).abs() < 1e-9)
                                    .map(|x| x.value)
                                else {
                                    continue;
                                };
                                let ah = attrs_hash(&p.attributes);
                                let t = secs(p.time_unix_nano, wall);
                                let key = series_key(&qn, ah, rh);
                                self.observe(
                                    key,
                                    lazy_meta(&qn, &p.attributes, resource),
                                    t,
                                    v,
                                    wall,
                                    out,
                                );
                            }
                        }
                        None => {}
                    }
                }
            }
        }
    }

    // One histogram point: its quantile (when it saw observations) and its count rate.
    #[allow(clippy::too_many_arguments)]
    fn histogram(
        &mut self,
        (name, qname, q): (&str, &str, f64),
        (attrs, resource, rh): (&[KeyValue], &[KeyValue], u64),
        (t, start, cumulative): (f64, f64, bool),
        (bounds, counts): (Vec<f64>, Vec<u64>),
        wall: f64,
        out: &mut Output,
    ) {
        let ah = attrs_hash(attrs);
        let prev =
            self.prev
                .get_or_insert_with(&series_key(name, ah, rh), wall, Prev::default, |_, _| {});
        let Some((delta, rate)) = hist_delta(prev, cumulative, t, start, bounds.clone(), counts)
        else {
            return;
        };
        if let Some(v) = bucket_quantile(q, &bounds, &delta) {
            let qn = format!("{name}.{qname}");
            self.observe(
                series_key(&qn, ah, rh),
                lazy_meta(&qn, attrs, resource),
                t,
                v,
                wall,
                out,
            );
        }
        let rn = format!("{name}.rate");
        self.observe(
            series_key(&rn, ah, rh),
            lazy_meta(&rn, attrs, resource),
            t,
            rate,
            wall,
            out,
        );
    }

    fn ingest_spans(&mut self, rss: &[ResourceSpans], wall: f64) {
        for rs in rss {
            let resource: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
            let service = get_str(resource, "service.name").unwrap_or("unknown_service");
            let children = client_time_by_parent(rs);
            self.remember_failed_calls(rs);
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    let kind = match SpanKind::try_from(span.kind) {
                        Ok(SpanKind::Server) => "server",
                        Ok(SpanKind::Consumer) => "consumer",
                        _ => continue,
                    };
                    let end = if span.end_time_unix_nano > 0 {
                        span.end_time_unix_nano
                    } else {
                        span.start_time_unix_nano
                    };
                    let t = secs(end, wall);
                    let latency_ms = (span.end_time_unix_nano >= span.start_time_unix_nano
                        && span.start_time_unix_nano > 0)
                        .then(|| {
                            (span.end_time_unix_nano - span.start_time_unix_nano) as f64 / 1e6
                        });
                    let error = span
                        .status
                        .as_ref()
                        .is_some_and(|s| s.code == StatusCode::Error as i32);
                    // A failure with a failed call under it was (most likely) passed on from the
                    // callee: the callee's own error ratio shows where it began.
                    let passed_on =
                        error && self.failed_parent_set.contains(&span_id(&span.span_id));
                    let key = hash_of(&["red", service, &span.name, kind]);
                    let make = || AggMeta {
                        kind: AggKind::Red,
                        key,
                        attributes: vec![
                            kv_str("service.name", service),
                            kv_str("span.name", span.name.clone()),
                            kv_str("span.kind", kind),
                        ],
                        resource: resource.to_vec(),
                    };
                    self.windows
                        .add_outcome(key, make, t, wall, error, passed_on, latency_ms);
                    if let Some(ix) = self.slo_by_service.get(service) {
                        for &i in ix {
                            if let Some(s) = self.slos.get_mut(i) {
                                s.record(wall, error, latency_ms);
                            }
                        }
                    }
                    // A service's own slowness hides in its span duration when most of that is
                    // waiting on callees; its self time shows it. Only spans whose client children
                    // came in the same batch have one (a leaf's self time is its duration anyway).
                    let Some(child_ms) = children.get(span.span_id.as_slice()) else {
                        continue;
                    };
                    let Some(ms) = latency_ms else { continue };
                    let key = hash_of(&["self", service, &span.name, kind]);
                    let make = || AggMeta {
                        kind: AggKind::SelfTime,
                        key,
                        attributes: vec![
                            kv_str("service.name", service),
                            kv_str("span.name", span.name.clone()),
                            kv_str("span.kind", kind),
                        ],
                        resource: resource.to_vec(),
                    };
                    let own = (ms - child_ms).max(0.0);
                    self.windows.add(key, make, t, wall, false, Some(own));
                }
            }
        }
    }

    // Remembers the parents of this batch's failed CLIENT spans, before its server spans are counted.
    fn remember_failed_calls(&mut self, rs: &ResourceSpans) {
        for span in rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()) {
            let failed = span
                .status
                .as_ref()
                .is_some_and(|s| s.code == StatusCode::Error as i32);
            if span.kind != SpanKind::Client as i32 || !failed || span.parent_span_id.is_empty() {
                continue;
            }
            let id = span_id(&span.parent_span_id);
            if !self.failed_parent_set.insert(id) {
                continue;
            }
            self.failed_parents.push_back(id);
            if self.failed_parents.len() > FAILED_PARENTS_LIMIT {
                if let Some(old) = self.failed_parents.pop_front() {
                    self.failed_parent_set.remove(&old);
                    self.failed_calls_evicted += 1;
                }
            }
        }
    }

    fn ingest_logs(&mut self, rls: &[ResourceLogs], wall: f64) {
        for rl in rls {
            let resource: &[KeyValue] = rl.resource.as_ref().map_or(&[], |r| &r.attributes);
            let service = get_str(resource, "service.name").unwrap_or("unknown_service");
            for sl in &rl.scope_logs {
                for r in &sl.log_records {
                    if is_vigil_event(r) {
                        continue;
                    }
                    let ts = if r.time_unix_nano > 0 {
                        r.time_unix_nano
                    } else {
                        r.observed_time_unix_nano
                    };
                    let t = secs(ts, wall);
                    let sev = severity(r);
                    let key = hash_of(&["log", service, &sev]);
                    let make = || AggMeta {
                        kind: AggKind::LogRate,
                        key,
                        attributes: vec![
                            kv_str("service.name", service),
                            kv_str("log.severity", sev.clone()),
                        ],
                        resource: resource.to_vec(),
                    };
                    self.windows.add(key, make, t, wall, false, None);
                    if let Some(pid) = get(&r.attributes, "log.pattern.id") {
                        let pid_text = value_to_string(pid);
                        let key = hash_of(&["pattern", service, &pid_text]);
                        let make = || {
                            let mut attributes = vec![
                                kv_str("service.name", service),
                                kv("log.pattern.id", pid.clone()),
                            ];
                            // The template text (set by the logpattern processor) makes the event
                            // readable without a lookup.
                            if let Some(text) = get_str(&r.attributes, "log.pattern") {
                                attributes.push(kv_str("log.pattern", text));
                            }
                            AggMeta {
                                kind: AggKind::PatternRate,
                                key,
                                attributes,
                                resource: resource.to_vec(),
                            }
                        };
                        self.windows.add(key, make, t, wall, false, None);
                    }
                }
            }
        }
    }

    fn feed_window(&mut self, f: &Flushed, wall: f64, out: &mut Output) {
        let interval = self.settings.interval_secs;
        let b = &f.bucket;
        let rate = b.count as f64 / interval;
        let (signal, values): (Signal, Vec<(&str, Option<f64>)>) = match f.meta.kind {
            AggKind::Red => {
                let seen = b.count > 0;
                (
                    Signal::Traces,
                    vec![
                        ("red.request.rate", Some(rate)),
                        (
                            "red.error_ratio",
                            seen.then(|| b.errors as f64 / b.count as f64),
                        ),
                        // Errors that began here. A service's total error ratio also rises with
                        // every callee's failures it passes on, so after one callee fault its
                        // detector remembers a high ratio and a later failure of its own, no larger,
                        // scores low (issue #19: errors on checkout after inventory's went unseen).
                        (
                            "red.own_error_ratio",
                            seen.then(|| {
                                b.errors.saturating_sub(b.passed_on) as f64 / b.count as f64
                            }),
                        ),
                        ("red.latency.p50", b.latency.quantile(0.5)),
                        ("red.latency.p99", b.latency.quantile(0.99)),
                    ],
                )
            }
            // The median only: a child exported in an earlier batch inflates a few self times, and
            // the median does not care.
            AggKind::SelfTime => (
                Signal::Traces,
                vec![("red.self_time.p50", b.latency.quantile(0.5))],
            ),
            AggKind::LogRate => (Signal::Logs, vec![("log.record.rate", Some(rate))]),
            AggKind::PatternRate => (Signal::Logs, vec![("log.pattern.rate", Some(rate))]),
        };
        for (metric, v) in values {
            let Some(v) = v else { continue };
            if !self.settings.selects(metric) {
                continue;
            }
            let key = series_key(metric, f.meta.key, 0);
            let meta = &f.meta;
            let make = || SeriesMeta::new(signal, metric, &meta.attributes, &meta.resource);
            self.observe(key, make, f.t, v, wall, out);
        }
    }
}

/// The detector's tuning without its hold. `SeriesDetector` keeps a series' scores under the threshold
/// for `Tuning::hold` points (60) after any point reaches it, so that NAB does not count one event
/// twice. Here the episode tracker already makes one event of one deviation (hysteresis, a quiet run to
/// end, confirmation), and the hold hid what came after: a noise blip, or an episode that had ended,
/// kept the series from starting a new episode for 60 points (10 minutes at a 10 s interval), so a
/// fault within that time went unseen (issue #19: the real app's missed latency fault on payments, 28 s
/// after a blip). Capped, a second blip also confirmed the first one's candidate (0.49 is above the end
/// threshold), where uncapped it starts a candidate of its own. On `vigil eval rca` (60 scenarios,
/// seed 1) dropping the hold took top-1 from 46.7% to 68.3%, faults found from 91.7% to 98.3% and
/// false incidents from 3.86 to 2.14 per hour (BENCHMARKS.md). The other constants are the detector's.
fn unheld() -> &'static Tuning {
    static T: std::sync::OnceLock<Tuning> = std::sync::OnceLock::new();
    T.get_or_init(|| Tuning {
        hold: 0.0,
        ..DEFAULT_TUNING
    })
}

/// A span id as a number (8 bytes; shorter or longer ids are folded in, never refused).
fn span_id(id: &[u8]) -> u64 {
    match <[u8; 8]>::try_from(id) {
        Ok(b) => u64::from_be_bytes(b),
        Err(_) => id.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        }),
    }
}

/// Milliseconds spent in client spans, summed per parent span id, within one resource's spans.
/// Overlapping (parallel) calls are summed too, which can only make a self time smaller; it is floored
/// at zero.
fn client_time_by_parent(rs: &ResourceSpans) -> HashMap<&[u8], f64> {
    let mut by_parent: HashMap<&[u8], f64> = HashMap::new();
    for span in rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()) {
        if span.kind != SpanKind::Client as i32
            || span.parent_span_id.is_empty()
            || span.start_time_unix_nano == 0
            || span.end_time_unix_nano < span.start_time_unix_nano
        {
            continue;
        }
        let ms = (span.end_time_unix_nano - span.start_time_unix_nano) as f64 / 1e6;
        *by_parent.entry(span.parent_span_id.as_slice()).or_default() += ms;
    }
    by_parent
}

// Builds a metric series' meta only when the series is new: most points belong to a known series, and
// must not pay for copying attributes.
fn lazy_meta<'a>(
    metric: &'a str,
    attrs: &'a [KeyValue],
    resource: &'a [KeyValue],
) -> impl FnOnce() -> SeriesMeta + 'a {
    move || SeriesMeta::new(Signal::Metrics, metric, attrs, resource)
}

fn number(v: Option<&number_data_point::Value>) -> Option<f64> {
    match v? {
        number_data_point::Value::AsDouble(d) => Some(*d),
        number_data_point::Value::AsInt(i) => Some(*i as f64),
    }
}

fn forecast_rule(rules: &[ForecastRule], meta: &SeriesMeta) -> Option<usize> {
    rules.iter().position(|r| {
        r.metric == meta.metric()
            && r.attributes
                .iter()
                .all(|(k, v)| meta.attribute(k).as_deref() == Some(v.as_str()))
    })
}

// Learns one point and, every FORECAST_EVERY points, asks whether the threshold will be crossed within
// the horizon. A crossing is announced once; it may be announced again only after the forecast has
// stopped predicting one for FORECAST_REARM evaluations.
fn forecast_step(
    f: &mut ForecastState,
    rule: &ForecastRule,
    meta: &SeriesMeta,
    t: f64,
    v: f64,
    wall: f64,
) -> Option<ResourceLogs> {
    f.forecaster.push(t, v);
    if f.last_t.is_finite() && t > f.last_t {
        f.step = f.step.min(t - f.last_t);
    }
    f.last_t = t;
    f.since_eval += 1;
    if f.since_eval < FORECAST_EVERY || !f.step.is_finite() {
        return None;
    }
    f.since_eval = 0;
    let steps = (rule.horizon_secs / f.step)
        .ceil()
        .clamp(1.0, FORECAST_MAX_STEPS) as usize;
    match f.forecaster.time_to_cross(rule.threshold, steps) {
        Ok(Some(c)) if c.eta_secs <= rule.horizon_secs => {
            f.clear_evals = 0;
            if f.alerted {
                return None;
            }
            f.alerted = true;
            Some(forecast_event(
                meta,
                rule.threshold,
                rule.horizon_secs,
                &c,
                t,
                v,
                wall,
            ))
        }
        Ok(_) => {
            f.clear_evals += 1;
            if f.clear_evals >= FORECAST_REARM {
                f.alerted = false;
            }
            None
        }
        Err(e) => {
            tracing::trace!(series = %meta.identity(), error = %e, "no forecast yet");
            None
        }
    }
}
