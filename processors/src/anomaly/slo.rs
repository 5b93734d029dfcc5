//! Service level objectives on span RED, alerted as the Google SRE workbook's multi-window,
//! multi-burn-rate alerts (chapter "Alerting on SLOs"): an objective's error budget is burning too fast
//! when the burn rate over a long window and over a short one both reach the alert's rate (14.4× over
//! 1h and 5m, 6× over 6h and 30m by default). The long window makes an alert significant, the short
//! one makes it stop soon after the burn stops. Each alert that starts or stops firing becomes a
//! `vigil.slo` event (docs/events.md), which `correlation` joins to incidents.
//!
//! Counting is per `interval` bucket of arrival time, in a ring that covers the longest window: three
//! counters per bucket, so an SLO costs `12 × long / interval` bytes (26 KiB for 6h at 10 s), fixed by
//! its config.

use super::config::{AlertConfig, SloConfig};
use std::time::Duration;
use vigil_core::attrs::{kv_f64, kv_i64, kv_str};
use vigil_core::otlp::common::v1::{any_value, AnyValue, InstrumentationScope};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use vigil_core::otlp::resource::v1::Resource;

/// The most buckets one SLO's ring may hold (its longest window over `interval`).
pub const MAX_BUCKETS: usize = 100_000;
/// The most SLOs one connector evaluates.
pub const MAX_SLOS: usize = 1000;

/// The default alerts: the workbook's two paging pairs.
pub fn default_alerts() -> Vec<AlertConfig> {
    vec![
        AlertConfig {
            burn_rate: 14.4,
            long: Duration::from_secs(3600),
            short: Duration::from_secs(300),
            severity: "page".into(),
        },
        AlertConfig {
            burn_rate: 6.0,
            long: Duration::from_secs(6 * 3600),
            short: Duration::from_secs(1800),
            severity: "page".into(),
        },
    ]
}

/// What an objective counts as bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indicator {
    /// Server spans with an ERROR status.
    Availability,
    /// Server spans longer than the latency threshold.
    Latency,
}

impl Indicator {
    pub fn as_str(self) -> &'static str {
        match self {
            Indicator::Availability => "availability",
            Indicator::Latency => "latency",
        }
    }
}

/// One checked objective of an SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    pub indicator: Indicator,
    /// The share of good requests aimed at, in (0, 1).
    pub target: f64,
    /// For latency: a request slower than this (milliseconds) is bad.
    pub threshold_ms: f64,
}

/// One checked alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub burn_rate: f64,
    pub long_secs: f64,
    pub short_secs: f64,
    pub severity: String,
}

/// One checked SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    pub name: String,
    pub service: String,
    pub objectives: Vec<Objective>,
    pub period_secs: f64,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which interval this bucket holds (end time over the interval, floored); -1 when empty.
    epoch: i64,
    total: u32,
    errors: u32,
    slow: u32,
}

/// The firing state of one objective's alert.
#[derive(Debug, Clone, Copy, Default)]
struct Firing {
    since: f64,
    peak_burn: f64,
    peak_spent: f64,
}

/// Counts and alert state of one SLO.
#[derive(Debug)]
pub struct SloState {
    pub slo: Slo,
    interval: f64,
    ring: Vec<Bucket>,
    /// Per objective, per alert: `Some` while firing.
    firing: Vec<Vec<Option<Firing>>>,
}

/// Burn rates and counts over one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burn {
    pub total: u64,
    pub bad: u64,
    /// The bad share over the budget's share (1 − target): 1 spends the budget exactly over the period.
    pub rate: f64,
}

impl SloState {
    pub fn new(slo: Slo, interval_secs: f64) -> Self {
        let longest = slo
            .alerts
            .iter()
            .map(|a| a.long_secs)
            .fold(interval_secs, f64::max);
        let n = ((longest / interval_secs).ceil() as usize + 1).clamp(1, MAX_BUCKETS);
        let firing = slo
            .objectives
            .iter()
            .map(|_| vec![None; slo.alerts.len()])
            .collect();
        SloState {
            slo,
            interval: interval_secs,
            ring: vec![
                Bucket {
                    epoch: -1,
                    ..Bucket::default()
                };
                n
            ],
            firing,
        }
    }

    fn epoch(&self, t: f64) -> i64 {
        (t / self.interval).floor() as i64
    }

    /// Counts one server span of the SLO's service, received at `now` (seconds). Spans are counted when
    /// they arrive, not when they ended: a host whose clock is off must not move its requests out of
    /// the windows, and an SDK's export delay (seconds) is small against the windows (minutes).
    pub fn record(&mut self, now: f64, error: bool, latency_ms: Option<f64>) {
        let e = self.epoch(now);
        let n = self.ring.len() as i64;
        let b = &mut self.ring[e.rem_euclid(n) as usize];
        if b.epoch != e {
            *b = Bucket {
                epoch: e,
                ..Bucket::default()
            };
        }
        b.total = b.total.saturating_add(1);
        if error {
            b.errors = b.errors.saturating_add(1);
        }
        let slow = self
            .slo
            .objectives
            .iter()
            .find(|o| o.indicator == Indicator::Latency)
            .is_some_and(|o| latency_ms.is_some_and(|ms| ms > o.threshold_ms));
        if slow {
            b.slow = b.slow.saturating_add(1);
        }
    }

    /// The burn of objective `o` over the `window_secs` before `now`.
    pub fn burn(&self, o: &Objective, now: f64, window_secs: f64) -> Burn {
        let last = self.epoch(now);
        let k = ((window_secs / self.interval).round() as i64).max(1);
        let (mut total, mut bad) = (0u64, 0u64);
        for b in &self.ring {
            if b.epoch > last - k && b.epoch <= last {
                total += u64::from(b.total);
                bad += u64::from(match o.indicator {
                    Indicator::Availability => b.errors,
                    Indicator::Latency => b.slow,
                });
            }
        }
        let budget = (1.0 - o.target).max(1e-12);
        let rate = if total == 0 {
            0.0
        } else {
            bad as f64 / total as f64 / budget
        };
        Burn { total, bad, rate }
    }

    /// Evaluates every alert at `now`; returns an event for each that started or stopped firing.
    pub fn evaluate(&mut self, now: f64) -> Vec<LogRecord> {
        let mut out = Vec::new();
        for oi in 0..self.slo.objectives.len() {
            for ai in 0..self.slo.alerts.len() {
                let o = self.slo.objectives[oi].clone();
                let a = self.slo.alerts[ai].clone();
                let long = self.burn(&o, now, a.long_secs);
                let short = self.burn(&o, now, a.short_secs);
                let spent = long.rate * a.long_secs / self.slo.period_secs;
                let fires = long.rate >= a.burn_rate && short.rate >= a.burn_rate;
                let state = &mut self.firing[oi][ai];
                match (state.as_mut(), fires) {
                    (None, true) => {
                        let f = Firing {
                            since: now,
                            peak_burn: long.rate,
                            peak_spent: spent,
                        };
                        *state = Some(f);
                        out.push(slo_event(&self.slo, &o, &a, (long, short), &f, None, now));
                    }
                    (Some(f), true) => {
                        f.peak_burn = f.peak_burn.max(long.rate);
                        f.peak_spent = f.peak_spent.max(spent);
                    }
                    (Some(f), false) => {
                        let f = *f;
                        *state = None;
                        out.push(slo_event(
                            &self.slo,
                            &o,
                            &a,
                            (long, short),
                            &f,
                            Some(now),
                            now,
                        ));
                    }
                    (None, false) => {}
                }
            }
        }
        out
    }
}

impl SloState {
    /// Resolves every firing alert (the connector stops), so that firing and resolved records pair up.
    pub fn close(&mut self, now: f64) -> Vec<LogRecord> {
        let mut out = Vec::new();
        for oi in 0..self.slo.objectives.len() {
            for ai in 0..self.slo.alerts.len() {
                if let Some(f) = self.firing[oi][ai].take() {
                    let (o, a) = (&self.slo.objectives[oi], &self.slo.alerts[ai]);
                    let long = self.burn(o, now, a.long_secs);
                    let short = self.burn(o, now, a.short_secs);
                    out.push(slo_event(
                        &self.slo,
                        o,
                        a,
                        (long, short),
                        &f,
                        Some(now),
                        now,
                    ));
                }
            }
        }
        out
    }
}

/// `99.9%`, `99.95%`: an objective as people write it.
fn percent(x: f64) -> String {
    let p = x * 100.0;
    let s = format!("{p:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// `1h`, `5m`, `30s`, `720h`: a window as the config writes it.
fn span(secs: f64) -> String {
    if secs >= 3600.0 && secs % 3600.0 == 0.0 {
        format!("{}h", secs / 3600.0)
    } else if secs >= 60.0 && secs % 60.0 == 0.0 {
        format!("{}m", secs / 60.0)
    } else {
        format!("{secs}s")
    }
}

/// One `vigil.slo` record: `firing` when an alert starts, `resolved` (with `ended`) when it stops.
fn slo_event(
    slo: &Slo,
    o: &Objective,
    a: &Alert,
    (long, short): (Burn, Burn),
    f: &Firing,
    ended: Option<f64>,
    now: f64,
) -> LogRecord {
    let what = match o.indicator {
        Indicator::Availability => format!("availability SLO {}", percent(o.target)),
        Indicator::Latency => format!(
            "latency SLO {} under {}ms",
            percent(o.target),
            o.threshold_ms
        ),
    };
    let state = if ended.is_some() {
        "resolved"
    } else {
        "firing"
    };
    let body = match ended {
        None => format!(
            "{} {what} of {}: error budget burning {:.1}× over {} and {:.1}× over {} (alert at {}×), {:.2}% of the {} budget spent in {}",
            slo.name,
            slo.service,
            long.rate,
            span(a.long_secs),
            short.rate,
            span(a.short_secs),
            a.burn_rate,
            100.0 * long.rate * a.long_secs / slo.period_secs,
            span(slo.period_secs),
            span(a.long_secs),
        ),
        Some(_) => format!(
            "{} {what} of {}: resolved, burn {:.1}× over {} (alert at {}×) after {:.0}s; peak {:.1}×, {:.2}% of the {} budget",
            slo.name,
            slo.service,
            short.rate,
            span(a.short_secs),
            a.burn_rate,
            now - f.since,
            f.peak_burn,
            100.0 * f.peak_spent,
            span(slo.period_secs),
        ),
    };
    let mut attrs = vec![
        kv_str("event.name", "vigil.slo"),
        kv_str("vigil.slo.state", state),
        kv_str("vigil.slo.name", slo.name.clone()),
        kv_str("vigil.slo.service", slo.service.clone()),
        kv_str("vigil.slo.indicator", o.indicator.as_str()),
        kv_f64("vigil.slo.objective", o.target),
        kv_f64("vigil.slo.alert.burn_rate", a.burn_rate),
        kv_f64("vigil.slo.alert.long_window_s", a.long_secs),
        kv_f64("vigil.slo.alert.short_window_s", a.short_secs),
        kv_str("vigil.slo.alert.severity", a.severity.clone()),
        kv_f64("vigil.slo.burn_rate.long", long.rate),
        kv_f64("vigil.slo.burn_rate.short", short.rate),
        kv_f64("vigil.slo.burn_rate.peak", f.peak_burn),
        kv_i64(
            "vigil.slo.requests",
            i64::try_from(long.total).unwrap_or(i64::MAX),
        ),
        kv_i64(
            "vigil.slo.requests.bad",
            i64::try_from(long.bad).unwrap_or(i64::MAX),
        ),
        kv_f64("vigil.slo.error_budget.period_s", slo.period_secs),
        kv_f64("vigil.slo.error_budget.spent", f.peak_spent),
    ];
    if o.indicator == Indicator::Latency {
        attrs.push(kv_f64("vigil.slo.latency.threshold_ms", o.threshold_ms));
    }
    if ended.is_some() {
        attrs.push(kv_f64("vigil.slo.duration_s", now - f.since));
    }
    let (severity, text) = match (ended, a.severity.as_str()) {
        (Some(_), _) => (SeverityNumber::Info, "INFO"),
        (None, "page") => (SeverityNumber::Error, "ERROR"),
        (None, _) => (SeverityNumber::Warn, "WARN"),
    };
    let ns = (now.max(0.0) * 1e9) as u64;
    LogRecord {
        time_unix_nano: ns,
        observed_time_unix_nano: ns,
        severity_number: severity as i32,
        severity_text: text.into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body)),
        }),
        attributes: attrs,
        event_name: "vigil.slo".into(),
        ..Default::default()
    }
}

/// Wraps `vigil.slo` records in the SLO's service resource.
pub fn to_logs(service: &str, records: Vec<LogRecord>) -> ResourceLogs {
    ResourceLogs {
        resource: Some(Resource {
            attributes: vec![kv_str("service.name", service)],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: super::events::SCOPE.into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            }),
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Checks the `slos` entries; errors name the key path (`slos::0::availability`).
pub fn check(slos: &[SloConfig], interval_secs: f64) -> Result<Vec<Slo>, (String, String)> {
    if slos.len() > MAX_SLOS {
        return Err((
            "slos".into(),
            format!("at most {MAX_SLOS} SLOs, got {}", slos.len()),
        ));
    }
    let mut out = Vec::new();
    for (i, s) in slos.iter().enumerate() {
        let at = |k: &str| format!("slos::{i}::{k}");
        if s.service.trim().is_empty() {
            return Err((at("service"), "must name a service (service.name)".into()));
        }
        let objective = |k: &str, v: f64| {
            if v > 0.0 && v < 1.0 {
                Ok(v)
            } else {
                Err((
                    at(k),
                    format!("expected a share of good requests between 0 and 1 (exclusive) such as 0.999, got {v}"),
                ))
            }
        };
        let mut objectives = Vec::new();
        if let Some(v) = s.availability {
            objectives.push(Objective {
                indicator: Indicator::Availability,
                target: objective("availability", v)?,
                threshold_ms: 0.0,
            });
        }
        if let Some(l) = &s.latency {
            if l.threshold.is_zero() {
                return Err((
                    at("latency::threshold"),
                    "expected a duration above 0 such as \"300ms\"".into(),
                ));
            }
            objectives.push(Objective {
                indicator: Indicator::Latency,
                target: objective("latency::objective", l.objective)?,
                threshold_ms: l.threshold.as_secs_f64() * 1e3,
            });
        }
        if objectives.is_empty() {
            return Err((
                at("availability"),
                "an SLO needs an objective: availability, latency, or both".into(),
            ));
        }
        if s.period.is_zero() {
            return Err((
                at("period"),
                "expected a duration above 0 such as \"720h\"".into(),
            ));
        }
        let alerts = s.alerts.clone().unwrap_or_else(default_alerts);
        if alerts.is_empty() {
            return Err((
                at("alerts"),
                "expected at least one alert (or none of the key, for the defaults)".into(),
            ));
        }
        let mut checked = Vec::new();
        for (j, a) in alerts.iter().enumerate() {
            let at = |k: &str| format!("slos::{i}::alerts::{j}::{k}");
            if !(a.burn_rate.is_finite() && a.burn_rate > 0.0) {
                return Err((
                    at("burn_rate"),
                    format!(
                        "expected a number above 0 such as 14.4, got {}",
                        a.burn_rate
                    ),
                ));
            }
            let (long, short) = (a.long.as_secs_f64(), a.short.as_secs_f64());
            if short < interval_secs {
                return Err((
                    at("short"),
                    format!("must be at least the connector's interval ({interval_secs}s), got {short}s"),
                ));
            }
            if long < short {
                return Err((
                    at("long"),
                    format!("must be at least the short window ({short}s), got {long}s"),
                ));
            }
            if long / interval_secs > MAX_BUCKETS as f64 {
                return Err((
                    at("long"),
                    format!(
                        "at most {MAX_BUCKETS} intervals ({}s at interval {interval_secs}s), got {long}s",
                        MAX_BUCKETS as f64 * interval_secs
                    ),
                ));
            }
            if !matches!(a.severity.as_str(), "page" | "ticket") {
                return Err((
                    at("severity"),
                    format!("expected page or ticket, got {:?}", a.severity),
                ));
            }
            checked.push(Alert {
                burn_rate: a.burn_rate,
                long_secs: long,
                short_secs: short,
                severity: a.severity.clone(),
            });
        }
        out.push(Slo {
            name: s.name.clone().unwrap_or_else(|| s.service.clone()),
            service: s.service.clone(),
            objectives,
            period_secs: s.period.as_secs_f64(),
            alerts: checked,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::attrs::get;

    fn slo(alerts: Vec<Alert>) -> Slo {
        Slo {
            name: "checkout".into(),
            service: "checkout".into(),
            objectives: vec![
                Objective {
                    indicator: Indicator::Availability,
                    target: 0.99,
                    threshold_ms: 0.0,
                },
                Objective {
                    indicator: Indicator::Latency,
                    target: 0.9,
                    threshold_ms: 300.0,
                },
            ],
            period_secs: 3600.0,
            alerts,
        }
    }

    fn attr(r: &LogRecord, k: &str) -> String {
        match get(&r.attributes, k) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            Some(any_value::Value::DoubleValue(d)) => d.to_string(),
            Some(any_value::Value::IntValue(i)) => i.to_string(),
            _ => String::new(),
        }
    }

    /// The workbook's pair, scaled down 60×: 14.4× over 60 s and 5 s, at a 1 s interval.
    fn scaled() -> Vec<Alert> {
        vec![Alert {
            burn_rate: 14.4,
            long_secs: 60.0,
            short_secs: 5.0,
            severity: "page".into(),
        }]
    }

    /// 20 requests a second for `secs` seconds from `t0`, `bad` of them failing each second; evaluated
    /// each second.
    fn feed(s: &mut SloState, t0: f64, secs: u32, bad: u32, out: &mut Vec<(f64, LogRecord)>) {
        for k in 0..secs {
            let t = t0 + f64::from(k);
            for r in 0..20 {
                s.record(t + 0.01 * f64::from(r), r < bad, Some(10.0));
            }
            for e in s.evaluate(t + 1.0) {
                out.push((t + 1.0, e));
            }
        }
    }

    #[test]
    fn an_alert_fires_only_when_both_windows_burn_and_stops_with_the_short_one() {
        let mut s = SloState::new(slo(scaled()), 1.0);
        let mut ev = Vec::new();
        feed(&mut s, 1000.0, 120, 0, &mut ev);
        assert!(ev.is_empty(), "no errors, no alert: {ev:?}");
        // A burst of 10 s at 50% errors: 50× the 1% budget over the short window at once, and over
        // the long window 50 × 10/60 = 8.3× after 10 s, which is under 14.4: no alert.
        feed(&mut s, 1120.0, 10, 10, &mut ev);
        feed(&mut s, 1130.0, 100, 0, &mut ev);
        assert!(ev.is_empty(), "a short burst alone does not page: {ev:?}");
        // 30 s at 50%: the long window reaches 14.4× after about 18 s.
        feed(&mut s, 1230.0, 30, 10, &mut ev);
        assert_eq!(ev.len(), 1, "{ev:?}");
        let (at, fired) = &ev[0];
        assert!((1245.0..=1250.0).contains(at), "fired at {at}");
        assert_eq!(attr(fired, "vigil.slo.state"), "firing");
        assert_eq!(attr(fired, "vigil.slo.indicator"), "availability");
        assert_eq!(attr(fired, "vigil.slo.service"), "checkout");
        assert_eq!(fired.severity_text, "ERROR");
        let long: f64 = attr(fired, "vigil.slo.burn_rate.long").parse().unwrap();
        assert!((14.4..20.0).contains(&long), "{long}");
        // Recovery: the short window drops under 14.4× within 5 s, and the alert stops though the
        // long window still holds the burst.
        feed(&mut s, 1260.0, 10, 0, &mut ev);
        assert_eq!(ev.len(), 2, "{ev:?}");
        let (at, resolved) = &ev[1];
        assert!((1260.0..=1266.0).contains(at), "resolved at {at}");
        assert_eq!(attr(resolved, "vigil.slo.state"), "resolved");
        let spent: f64 = attr(resolved, "vigil.slo.error_budget.spent")
            .parse()
            .unwrap();
        // At most 50× over 60 s of a 3600 s period: 83% of the budget.
        assert!(spent > 0.2 && spent < 0.84, "{spent}");
    }

    #[test]
    fn latency_counts_requests_over_the_threshold() {
        let mut s = SloState::new(slo(scaled()), 1.0);
        let lat = Objective {
            indicator: Indicator::Latency,
            target: 0.9,
            threshold_ms: 300.0,
        };
        for k in 0..10 {
            let t = 100.0 + f64::from(k);
            for ms in [100.0, 200.0, 400.0, 500.0] {
                s.record(t, false, Some(ms));
            }
        }
        let b = s.burn(&lat, 110.0, 60.0);
        assert_eq!((b.total, b.bad), (40, 20));
        // Half slow against a 10% budget: 5×.
        assert!((b.rate - 5.0).abs() < 1e-9, "{b:?}");
        // A bucket reused by a later interval starts from zero: an hour on, the ring holds nothing old.
        s.record(3700.0, true, None);
        let b = s.burn(&lat, 3700.0, 60.0);
        assert_eq!((b.total, b.bad), (1, 0));
    }

    #[test]
    fn config_errors_name_the_key_path() {
        use super::super::config::{LatencyConfig, SloConfig};
        let base = SloConfig {
            name: None,
            service: "api".into(),
            availability: Some(0.999),
            latency: None,
            period: Duration::from_secs(720 * 3600),
            alerts: None,
        };
        let ok = check(std::slice::from_ref(&base), 10.0).expect("valid");
        assert_eq!(ok[0].alerts.len(), 2);
        assert_eq!(ok[0].alerts[0].long_secs, 3600.0);
        let cases = [
            (
                SloConfig {
                    availability: Some(1.5),
                    ..base.clone()
                },
                "slos::0::availability",
            ),
            (
                SloConfig {
                    availability: None,
                    ..base.clone()
                },
                "slos::0::availability",
            ),
            (
                SloConfig {
                    latency: Some(LatencyConfig {
                        threshold: Duration::ZERO,
                        objective: 0.99,
                    }),
                    ..base.clone()
                },
                "slos::0::latency::threshold",
            ),
            (
                SloConfig {
                    alerts: Some(vec![AlertConfig {
                        burn_rate: 2.0,
                        long: Duration::from_secs(60),
                        short: Duration::from_secs(1),
                        severity: "page".into(),
                    }]),
                    ..base.clone()
                },
                "slos::0::alerts::0::short",
            ),
            (
                SloConfig {
                    alerts: Some(vec![AlertConfig {
                        burn_rate: 2.0,
                        long: Duration::from_secs(60),
                        short: Duration::from_secs(600),
                        severity: "page".into(),
                    }]),
                    ..base.clone()
                },
                "slos::0::alerts::0::long",
            ),
            (
                SloConfig {
                    alerts: Some(vec![AlertConfig {
                        burn_rate: 2.0,
                        long: Duration::from_secs(600),
                        short: Duration::from_secs(60),
                        severity: "sms".into(),
                    }]),
                    ..base.clone()
                },
                "slos::0::alerts::0::severity",
            ),
            (
                SloConfig {
                    service: " ".into(),
                    ..base.clone()
                },
                "slos::0::service",
            ),
        ];
        for (cfg, path) in cases {
            let e = check(&[cfg], 10.0).expect_err(path);
            assert_eq!(e.0, path, "{e:?}");
        }
    }
}
