//! The connector's output in OTLP: `vigil.anomaly` and `vigil.forecast` log records (one per episode
//! start and end, one per predicted crossing), and the `vigil.anomaly.score` and band gauges. Every
//! attribute written here is documented in `docs/events.md`.

use super::identity::SeriesMeta;
use std::collections::HashMap;
use vigil_core::attrs::{kv_f64, kv_str};
use vigil_core::otlp::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use vigil_core::otlp::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_detect::forecast::Crossing;
use vigil_detect::incident::{band_multiple, band_words};
use vigil_detect::series::{Episode, Observation};

/// The scope name on everything the connector emits.
pub const SCOPE: &str = "vigil/anomalydetection";
/// A peak score at or above this makes an anomaly event ERROR; below it, WARN.
pub const ERROR_SCORE: f64 = 0.8;

/// Why an episode's end event was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The series was back within its band for long enough.
    Quiet,
    /// The series was dropped to stay under `max_series`.
    Evicted,
    /// The series was not seen for `series_ttl`.
    Expired,
    /// The connector stopped.
    Shutdown,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Quiet => "quiet",
            EndReason::Evicted => "evicted",
            EndReason::Expired => "expired",
            EndReason::Shutdown => "shutdown",
        }
    }
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: SCOPE.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    })
}

fn nanos(secs: f64) -> u64 {
    if secs.is_finite() && secs > 0.0 {
        (secs * 1e9) as u64
    } else {
        0
    }
}

/// A number for a human line: three significant digits, no exponent for everyday magnitudes.
pub fn human(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    if !(1e-3..1e7).contains(&a) {
        return format!("{x:.2e}");
    }
    let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A duration for a human line: `45s`, `12m`, `3.5h`.
pub fn human_duration(secs: f64) -> String {
    if secs < 120.0 {
        format!("{}s", secs.round() as i64)
    } else if secs < 7200.0 {
        format!("{}m", (secs / 60.0).round() as i64)
    } else {
        format!("{:.1}h", secs / 3600.0)
    }
}

/// The one-line body of an anomaly event.
pub fn anomaly_body(meta: &SeriesMeta, ep: &Episode, end: Option<EndReason>) -> String {
    let o = &ep.peak;
    let v = ep.peak_value;
    let band = format!("{}–{}", human(o.lower), human(o.upper));
    // One definition of "multiples of the band" everywhere, so that this body and the incident's
    // candidate lines agree.
    let away = band_multiple(v, o.expected, o.upper).unwrap_or(0.0);
    let dir = if v >= o.expected { "above" } else { "below" };
    let what = match meta.attribute("log.pattern.id") {
        Some(id) => {
            let service = meta.attribute("service.name").unwrap_or_default();
            let verb = if v >= o.expected { "surged" } else { "dropped" };
            match meta.attribute("log.pattern") {
                Some(t) => {
                    let t: String = t.chars().take(80).collect();
                    format!("log pattern {id} \"{t}\" of {service} {verb}")
                }
                None => format!("log pattern {id} of {service} {verb}"),
            }
        }
        None => meta.identity().to_string(),
    };
    // A band of almost no width (a constant series) would give absurd multiples: `band_words` says
    // "far" beyond `FAR_MULTIPLE`.
    let how = band_words(away, v >= o.expected)
        .unwrap_or_else(|| format!("{} ({})", o.part.as_str().replace('_', " "), dir));
    match end {
        None => format!("{what} {how}: {} vs {band}", human(v)),
        Some(reason) => {
            let after = human_duration(ep.duration_secs());
            let why = match reason {
                EndReason::Quiet => "ended".to_string(),
                r => format!("closed ({})", r.as_str()),
            };
            format!(
                "{what}: anomaly {why} after {after}; peak {} vs {band}, score {:.2}",
                human(v),
                ep.peak_score
            )
        }
    }
}

fn record(
    event: &str,
    t: f64,
    wall: f64,
    severity: SeverityNumber,
    body: String,
    attributes: Vec<KeyValue>,
) -> LogRecord {
    let mut attrs = Vec::with_capacity(attributes.len() + 1);
    attrs.push(kv_str("event.name", event));
    attrs.extend(attributes);
    LogRecord {
        time_unix_nano: nanos(t),
        observed_time_unix_nano: nanos(wall),
        severity_number: severity as i32,
        severity_text: match severity {
            SeverityNumber::Error => "ERROR".into(),
            _ => "WARN".into(),
        },
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body)),
        }),
        attributes: attrs,
        event_name: event.into(),
        ..Default::default()
    }
}

fn wrap(resource: &[KeyValue], rec: LogRecord) -> ResourceLogs {
    ResourceLogs {
        resource: Some(Resource {
            attributes: resource.to_vec(),
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: scope(),
            log_records: vec![rec],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A `vigil.anomaly` event for an episode's start (`end == None`) or end.
pub fn anomaly_event(
    meta: &SeriesMeta,
    ep: &Episode,
    end: Option<EndReason>,
    wall: f64,
) -> ResourceLogs {
    let o = &ep.peak;
    let mut a = vec![
        kv_str(
            "vigil.anomaly.state",
            if end.is_some() { "end" } else { "start" },
        ),
        kv_f64("vigil.anomaly.score", ep.peak_score),
        kv_f64("vigil.anomaly.observed", ep.peak_value),
        kv_f64("vigil.anomaly.expected", o.expected),
        kv_f64("vigil.anomaly.expected.lower", o.lower),
        kv_f64("vigil.anomaly.expected.upper", o.upper),
        kv_str("vigil.anomaly.detector", o.part.as_str()),
        kv_str("vigil.anomaly.signal", meta.signal.as_str()),
        kv_str("vigil.anomaly.series", meta.identity()),
        kv_str("vigil.anomaly.metric", meta.metric()),
    ];
    let t = match end {
        None => ep.start,
        Some(reason) => {
            a.push(kv_f64("vigil.anomaly.duration_s", ep.duration_secs()));
            a.push(kv_str(
                "vigil.anomaly.started_at",
                rfc3339(ep.start).unwrap_or_default(),
            ));
            a.push(kv_str("vigil.anomaly.end_reason", reason.as_str()));
            ep.end
        }
    };
    a.extend(meta.attributes());
    let severity = if ep.peak_score >= ERROR_SCORE {
        SeverityNumber::Error
    } else {
        SeverityNumber::Warn
    };
    let body = anomaly_body(meta, ep, end);
    wrap(
        &meta.resource,
        record("vigil.anomaly", t, wall, severity, body, a),
    )
}

/// A `vigil.forecast` event: `meta`'s series, last seen at `t` with `last`, is forecast to cross
/// `threshold` within `horizon_secs`.
pub fn forecast_event(
    meta: &SeriesMeta,
    threshold: f64,
    horizon_secs: f64,
    crossing: &Crossing,
    t: f64,
    last: f64,
    wall: f64,
) -> ResourceLogs {
    let mut a = vec![
        kv_str("vigil.forecast.metric", meta.metric()),
        kv_str("vigil.forecast.series", meta.identity()),
        kv_str("vigil.forecast.signal", meta.signal.as_str()),
        kv_f64("vigil.forecast.threshold", threshold),
        kv_f64("vigil.forecast.observed", last),
        kv_f64("vigil.forecast.horizon_s", horizon_secs),
        kv_f64("vigil.forecast.eta_s", crossing.eta_secs),
        kv_f64("vigil.forecast.eta_lower_s", crossing.earliest_secs),
    ];
    if let Some(latest) = crossing.latest_secs {
        a.push(kv_f64("vigil.forecast.eta_upper_s", latest));
    }
    if let Some(at) = rfc3339(t + crossing.eta_secs) {
        a.push(kv_str("vigil.forecast.crossing_at", at));
    }
    a.extend(meta.attributes());
    let range = match crossing.latest_secs {
        Some(l) => format!(
            "{}–{}",
            human_duration(crossing.earliest_secs),
            human_duration(l)
        ),
        None => format!("{} or later", human_duration(crossing.earliest_secs)),
    };
    let body = format!(
        "{} is forecast to cross {} in about {} ({range}); now {}",
        meta.identity(),
        human(threshold),
        human_duration(crossing.eta_secs),
        human(last)
    );
    wrap(
        &meta.resource,
        record("vigil.forecast", t, wall, SeverityNumber::Warn, body, a),
    )
}

/// Seconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339(secs: f64) -> Option<String> {
    if !secs.is_finite() {
        return None;
    }
    chrono::DateTime::from_timestamp_millis((secs * 1000.0).round() as i64)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Gauges of score and band per series, grouped by series so that each keeps its resource.
#[derive(Default)]
pub struct ScoreBatch {
    by_series: HashMap<u64, usize>,
    out: Vec<ResourceMetrics>,
}

/// The gauge names, in the order each series' `ScopeMetrics` holds them.
pub const SCORE_GAUGES: [&str; 4] = [
    "vigil.anomaly.score",
    "vigil.anomaly.expected.lower",
    "vigil.anomaly.expected.upper",
    "vigil.anomaly.observed",
];

impl ScoreBatch {
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Adds one observation of series `key` at `t`, whose value was `value`: the value goes out
    /// with its band so that a plot of the gauges shows the series inside its band.
    pub fn push(&mut self, key: u64, meta: &SeriesMeta, t: f64, value: f64, o: &Observation) {
        let i = *self.by_series.entry(key).or_insert_with(|| {
            self.out.push(ResourceMetrics {
                resource: Some(Resource {
                    attributes: meta.resource.to_vec(),
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: scope(),
                    metrics: SCORE_GAUGES
                        .iter()
                        .map(|name| Metric {
                            name: (*name).into(),
                            unit: if *name == "vigil.anomaly.score" {
                                "1".into()
                            } else {
                                String::new()
                            },
                            data: Some(metric::Data::Gauge(Gauge::default())),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            });
            self.out.len() - 1
        });
        let mut attrs = meta.attributes();
        attrs.push(kv_str("vigil.anomaly.series", meta.identity()));
        attrs.push(kv_str("vigil.anomaly.metric", meta.metric()));
        attrs.push(kv_str("vigil.anomaly.signal", meta.signal.as_str()));
        let Some(sm) = self
            .out
            .get_mut(i)
            .and_then(|r| r.scope_metrics.first_mut())
        else {
            return;
        };
        for (m, v) in sm
            .metrics
            .iter_mut()
            .zip([o.score, o.lower, o.upper, value])
        {
            if let Some(metric::Data::Gauge(g)) = &mut m.data {
                g.data_points.push(NumberDataPoint {
                    attributes: attrs.clone(),
                    time_unix_nano: nanos(t),
                    value: Some(number_data_point::Value::AsDouble(v)),
                    ..Default::default()
                });
            }
        }
    }

    pub fn into_resource_metrics(self) -> Vec<ResourceMetrics> {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_times_read_well() {
        assert_eq!(human(0.97), "0.97");
        assert_eq!(human(0.1049), "0.105");
        assert_eq!(human(1234.6), "1235");
        assert_eq!(human(-3.0), "-3");
        assert_eq!(human(0.0), "0");
        assert_eq!(human_duration(45.0), "45s");
        assert_eq!(human_duration(600.0), "10m");
        assert_eq!(human_duration(5.0 * 3600.0), "5.0h");
        assert_eq!(
            rfc3339(1_700_000_000.5).as_deref(),
            Some("2023-11-14T22:13:20.500Z")
        );
        assert_eq!(rfc3339(0.0).as_deref(), Some("1970-01-01T00:00:00.000Z"));
    }
}
