//! Scenario mode: a simulated service topology that emits real OTLP spans (client and server spans
//! linked by trace context) and per-service RED gauges, with one fault injected into a chosen service
//! at a chosen step. The fault propagates the way it does in production: a slow callee makes every
//! caller slower, and a failing callee makes callers fail too. `vigil eval rca` and the end-to-end test
//! use it to check that correlation names the faulty service.
//!
//! [`Realism`] adds what real traffic has and a clean simulation lacks (issue #19): heavy-tailed
//! latency noise and varying traffic, spans exported in per-service batches whose cut falls anywhere in
//! a step (so a call's halves and a span's children often arrive a step apart), lost spans, per-host
//! clock skew, and a benign level shift before the fault (a deploy or a traffic change) that is not a
//! fault. Its randomness comes from a second generator, so a seed's topology and fault stay the same
//! with and without it.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What goes wrong in the faulty service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Its own work takes several times longer.
    Latency,
    /// Half of its requests fail.
    Errors,
    /// It queues: somewhat slower, with occasional much slower requests and a few errors.
    Saturation,
}

impl Fault {
    /// Parses `latency`, `errors` or `saturation`.
    pub fn parse(s: &str) -> Option<Fault> {
        match s {
            "latency" => Some(Fault::Latency),
            "errors" => Some(Fault::Errors),
            "saturation" => Some(Fault::Saturation),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Latency => "latency",
            Fault::Errors => "errors",
            Fault::Saturation => "saturation",
        }
    }
}

/// What a real deployment adds to the clean simulation; [`Realism::none`] is the clean one.
#[derive(Debug, Clone, PartialEq)]
pub struct Realism {
    /// Spread of the log-normal noise on each request's own work (0: the clean ±15% only).
    pub latency_sigma: f64,
    /// Chance that a request's own work stalls ×5–20 (a GC pause, a noisy neighbour).
    pub stall: f64,
    /// Step-to-step spread of the traffic, as a fraction of `requests`.
    pub traffic_spread: f64,
    /// Each service exports its spans in batches cut at a point of the step of its own (jittered by
    /// a tenth of a step each time); spans that end after the cut go out with the next step's batch.
    pub split_exports: bool,
    /// Share of spans the SDKs drop (full queues).
    pub span_loss: f64,
    /// Largest clock skew of a host, in milliseconds either way.
    pub skew_ms: u64,
    /// One benign change before the fault: a deploy that makes one service 1.3–1.8× slower for good,
    /// or traffic that grows 1.3–1.8× for good.
    pub benign_shift: bool,
}

impl Realism {
    /// The clean simulation.
    pub fn none() -> Realism {
        Realism {
            latency_sigma: 0.0,
            stall: 0.0,
            traffic_spread: 0.0,
            split_exports: false,
            span_loss: 0.0,
            skew_ms: 0,
            benign_shift: false,
        }
    }

    /// Real traffic as seen behind the OpenTelemetry SDKs.
    pub fn real() -> Realism {
        Realism {
            latency_sigma: 0.25,
            stall: 0.005,
            traffic_spread: 0.15,
            split_exports: true,
            span_loss: 0.002,
            skew_ms: 200,
            benign_shift: true,
        }
    }
}

/// The benign change a scenario carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Benign {
    /// From `step`, service `service` is `factor` times slower for good.
    Deploy {
        step: usize,
        service: usize,
        factor: f64,
    },
    /// From `step`, `factor` times as many requests for good.
    Traffic { step: usize, factor: f64 },
}

/// A scenario's parameters.
#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    pub seed: u64,
    pub services: usize,
    /// The faulty service's index; `None` picks one (never the entry service) from the seed.
    pub faulty: Option<usize>,
    /// `None` picks a fault kind from the seed.
    pub fault: Option<Fault>,
    /// Steps of normal traffic before the fault.
    pub fault_at_step: usize,
    /// Steps the fault lasts.
    pub fault_steps: usize,
    pub steps: usize,
    /// Seconds of data time per step (the collection interval).
    pub step_secs: u64,
    /// Requests entering the entry service per step.
    pub requests: usize,
    /// Data time of step 0, nanoseconds since the epoch.
    pub start_ns: u64,
    pub realism: Realism,
    /// Client spans name their callee in `peer.service`, as instrumentation configured with its
    /// peers does. An agent that sees only some services (one node of a fleet) then still knows where
    /// each call went when the server half is on another node.
    pub peer_service: bool,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        ScenarioConfig {
            seed: 1,
            services: 10,
            faulty: None,
            fault: None,
            fault_at_step: 90,
            fault_steps: 15,
            steps: 130,
            step_secs: 10,
            requests: 20,
            start_ns: 1_700_000_000_000_000_000,
            realism: Realism::none(),
            peer_service: false,
        }
    }
}

/// One generated topology with its fault.
pub struct Scenario {
    pub cfg: ScenarioConfig,
    pub names: Vec<String>,
    /// `calls[i]`: the services `i` calls; always to higher indices, so the graph is a DAG.
    pub calls: Vec<Vec<usize>>,
    pub faulty: usize,
    pub fault: Fault,
    /// Own work per request in seconds.
    base: Vec<f64>,
    rng: StdRng,
    /// The realism's own randomness, apart from `rng` so that the clean draws stay the same.
    aux: StdRng,
    pub benign: Option<Benign>,
    /// Per service: where in a step its export batch is cut (0..1), and its clock skew in ns.
    cut: Vec<f64>,
    skew: Vec<i64>,
    /// The step being generated.
    step_now: usize,
    /// Spans held for the next step's export batch, per service.
    carry: Vec<Vec<Span>>,
}

/// What one service saw in one step.
#[derive(Default, Clone)]
struct Stats {
    n: u64,
    errors: u64,
    total_s: f64,
}

const NS: u64 = 1_000_000_000;

fn kv(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

impl Scenario {
    /// Builds the topology from the seed.
    pub fn new(cfg: ScenarioConfig) -> Scenario {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let n = cfg.services.max(2);
        let names: Vec<String> = (0..n)
            .map(|i| {
                if i == 0 {
                    "frontend".into()
                } else {
                    format!("svc-{i}")
                }
            })
            .collect();
        let mut calls = vec![Vec::new(); n];
        for i in 1..n {
            // A tree first, so every service is reachable, then a few extra edges for shared
            // dependencies (a database several services use).
            let parent = rng.random_range(0..i);
            calls[parent].push(i);
            if i >= 2 && rng.random_bool(0.3) {
                let other = rng.random_range(0..i);
                if other != parent {
                    calls[other].push(i);
                }
            }
        }
        let faulty = cfg
            .faulty
            .filter(|f| *f < n)
            .unwrap_or_else(|| rng.random_range(1..n));
        let fault = cfg.fault.unwrap_or(match rng.random_range(0..3) {
            0 => Fault::Latency,
            1 => Fault::Errors,
            _ => Fault::Saturation,
        });
        let base = (0..n).map(|_| rng.random_range(0.002..0.02)).collect();
        let mut aux = StdRng::seed_from_u64(cfg.seed ^ 0x005e_ed0f_5ea1_1573);
        let r = &cfg.realism;
        let cut = (0..n).map(|_| aux.random_range(0.0..1.0)).collect();
        let skew = (0..n)
            .map(|_| {
                let ms = r.skew_ms as i64;
                if ms == 0 {
                    0
                } else {
                    aux.random_range(-ms..=ms) * 1_000_000
                }
            })
            .collect();
        // Well before the fault, and after the detector's warm-up.
        let benign = (r.benign_shift && cfg.fault_at_step > 60).then(|| {
            let step = aux.random_range(40..cfg.fault_at_step - 20);
            let factor = aux.random_range(1.3..1.8);
            if aux.random_bool(0.5) {
                Benign::Deploy {
                    step,
                    service: aux.random_range(0..n),
                    factor,
                }
            } else {
                Benign::Traffic { step, factor }
            }
        });
        Scenario {
            cfg: ScenarioConfig { services: n, ..cfg },
            names,
            calls,
            faulty,
            fault,
            base,
            rng,
            aux,
            benign,
            cut,
            skew,
            step_now: 0,
            carry: vec![Vec::new(); n],
        }
    }

    /// The `(start, end)` data time of the fault.
    pub fn fault_window(&self) -> (u64, u64) {
        (
            self.time_of(self.cfg.fault_at_step),
            self.time_of(self.cfg.fault_at_step + self.cfg.fault_steps),
        )
    }

    /// The data time of step `i`.
    pub fn time_of(&self, step: usize) -> u64 {
        self.cfg.start_ns + step as u64 * self.cfg.step_secs * NS
    }

    /// Whether the fault is active in step `i`.
    pub fn faulting(&self, step: usize) -> bool {
        step >= self.cfg.fault_at_step && step < self.cfg.fault_at_step + self.cfg.fault_steps
    }

    /// The spans and gauges of one step.
    pub fn step(&mut self, step: usize) -> (Vec<ResourceSpans>, Vec<ResourceMetrics>) {
        let n = self.names.len();
        let mut spans: Vec<Vec<Span>> = vec![Vec::new(); n];
        let mut stats = vec![Stats::default(); n];
        let t0 = self.time_of(step);
        let mut requests = self.cfg.requests as f64;
        if let Some(Benign::Traffic { step: from, factor }) = self.benign {
            if step >= from {
                requests *= factor;
            }
        }
        let spread = self.cfg.realism.traffic_spread;
        if spread > 0.0 {
            requests *= 1.0 + self.aux.random_range(-spread..spread);
        }
        let requests = (requests.round() as usize).max(1);
        let spacing = self.cfg.step_secs * NS / requests as u64;
        let faulting = self.faulting(step);
        self.step_now = step;
        for r in 0..requests {
            let trace: [u8; 16] = self.rng.random();
            let start = t0 + r as u64 * spacing;
            self.serve(0, start, &trace, None, faulting, &mut spans, &mut stats);
        }
        let spans = self.export(spans, t0);
        let resource = |i: usize| {
            Some(Resource {
                attributes: vec![
                    kv("service.name", &self.names[i]),
                    kv("host.name", &format!("node-{i}")),
                ],
                ..Default::default()
            })
        };
        let traces = spans
            .into_iter()
            .enumerate()
            .filter(|(_, s)| !s.is_empty())
            .map(|(i, s)| ResourceSpans {
                resource: resource(i),
                scope_spans: vec![ScopeSpans {
                    spans: s,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        let gauge = |name: &str, unit: &str, v: f64| Metric {
            name: name.into(),
            unit: unit.into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    time_unix_nano: t0 + self.cfg.step_secs * NS,
                    value: Some(number_data_point::Value::AsDouble(v)),
                    ..Default::default()
                }],
            })),
            ..Default::default()
        };
        let metrics = stats
            .iter()
            .enumerate()
            .filter(|(_, s)| s.n > 0)
            .map(|(i, s)| ResourceMetrics {
                resource: resource(i),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        gauge("http.server.request.duration", "s", s.total_s / s.n as f64),
                        gauge("http.server.error_ratio", "1", s.errors as f64 / s.n as f64),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        (traces, metrics)
    }

    /// Serves one request in service `s` starting at `start`; returns (duration ns, failed).
    #[allow(clippy::too_many_arguments)]
    fn serve(
        &mut self,
        s: usize,
        start: u64,
        trace: &[u8; 16],
        parent: Option<[u8; 8]>,
        faulting: bool,
        spans: &mut [Vec<Span>],
        stats: &mut [Stats],
    ) -> (u64, bool) {
        let id: [u8; 8] = self.rng.random();
        let jitter = self.rng.random_range(0.85..1.15);
        let mut own = self.base[s] * jitter;
        let r = &self.cfg.realism;
        if r.latency_sigma > 0.0 {
            // Log-normal from two uniforms (Box–Muller), without another dependency.
            let (u1, u2): (f64, f64) = (
                self.aux.random_range(f64::EPSILON..1.0),
                self.aux.random_range(0.0..1.0),
            );
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            own *= (r.latency_sigma * z).exp();
        }
        if r.stall > 0.0 && self.aux.random_bool(r.stall) {
            own *= self.aux.random_range(5.0..20.0);
        }
        if let Some(Benign::Deploy {
            step,
            service,
            factor,
        }) = self.benign
        {
            if service == s && self.step_now >= step {
                own *= factor;
            }
        }
        let mut failed = self.rng.random_bool(0.002);
        if faulting && s == self.faulty {
            match self.fault {
                Fault::Latency => own *= 8.0,
                Fault::Errors => failed |= self.rng.random_bool(0.5),
                Fault::Saturation => {
                    own *= if self.rng.random_bool(0.2) { 12.0 } else { 3.0 };
                    failed |= self.rng.random_bool(0.05);
                }
            }
        }
        let mut t = start + (own * 0.5 * 1e9) as u64;
        for c in self.calls[s].clone() {
            // Not every request needs every dependency, which also bounds the fan-out of deep DAGs.
            if !self.rng.random_bool(0.7) {
                continue;
            }
            let client_id: [u8; 8] = self.rng.random();
            let (d, callee_failed) = self.serve(
                c,
                t + 200_000,
                trace,
                Some(client_id),
                faulting,
                spans,
                stats,
            );
            let client_d = d + 400_000;
            let client_failed = callee_failed;
            spans[s].push(Span {
                trace_id: trace.to_vec(),
                span_id: client_id.to_vec(),
                parent_span_id: id.to_vec(),
                name: format!("call {}", self.names[c]),
                kind: span::SpanKind::Client as i32,
                start_time_unix_nano: t,
                end_time_unix_nano: t + client_d,
                status: Some(status_of(client_failed)),
                attributes: if self.cfg.peer_service {
                    vec![kv("peer.service", &self.names[c])]
                } else {
                    Vec::new()
                },
                ..Default::default()
            });
            t += client_d;
            // A failing dependency usually fails the request that needed it.
            if callee_failed && self.rng.random_bool(0.8) {
                failed = true;
            }
        }
        let end = t + (own * 0.5 * 1e9) as u64;
        spans[s].push(Span {
            trace_id: trace.to_vec(),
            span_id: id.to_vec(),
            parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: format!("handle {}", self.names[s]),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            status: Some(status_of(failed)),
            ..Default::default()
        });
        let st = &mut stats[s];
        st.n += 1;
        st.total_s += (end - start) as f64 / 1e9;
        if failed {
            st.errors += 1;
        }
        (end - start, failed)
    }
}

impl Scenario {
    /// What each service's exporter sends this step: what it held from the last step, then this
    /// step's spans that ended before its batch was cut; the rest waits for the next step. Lost
    /// spans are dropped, and every timestamp is shifted by the host's clock skew.
    fn export(&mut self, spans: Vec<Vec<Span>>, t0: u64) -> Vec<Vec<Span>> {
        let r = self.cfg.realism.clone();
        let step_ns = self.cfg.step_secs * NS;
        let mut out = Vec::with_capacity(spans.len());
        for (i, mut now) in spans.into_iter().enumerate() {
            if r.span_loss > 0.0 {
                let loss = r.span_loss;
                now.retain(|_| !self.aux.random_bool(loss));
            }
            let skew = self.skew.get(i).copied().unwrap_or(0);
            if skew != 0 {
                for sp in now.iter_mut() {
                    sp.start_time_unix_nano = sp.start_time_unix_nano.saturating_add_signed(skew);
                    sp.end_time_unix_nano = sp.end_time_unix_nano.saturating_add_signed(skew);
                }
            }
            let mut batch = std::mem::take(&mut self.carry[i]);
            if r.split_exports {
                let cut = (self.cut[i] + self.aux.random_range(-0.1..0.1)).clamp(0.0, 1.0);
                let at = t0.saturating_add_signed(skew) + (cut * step_ns as f64) as u64;
                let (early, late): (Vec<Span>, Vec<Span>) =
                    now.into_iter().partition(|sp| sp.end_time_unix_nano <= at);
                batch.extend(early);
                self.carry[i] = late;
            } else {
                batch.extend(now);
            }
            out.push(batch);
        }
        out
    }
}

fn status_of(failed: bool) -> Status {
    Status {
        code: if failed {
            status::StatusCode::Error as i32
        } else {
            status::StatusCode::Unset as i32
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_topology_and_faults_reach_callers() {
        let cfg = ScenarioConfig {
            seed: 7,
            services: 8,
            faulty: Some(3),
            fault: Some(Fault::Latency),
            fault_at_step: 1,
            ..ScenarioConfig::default()
        };
        let a = Scenario::new(cfg.clone());
        let b = Scenario::new(cfg.clone());
        assert_eq!(a.calls, b.calls);
        let mut s = Scenario::new(cfg);
        let (traces, metrics) = s.step(0);
        assert!(!traces.is_empty() && !metrics.is_empty());
        // Every server span but the entry's has a parent that is some client span's id.
        let all: Vec<&Span> = traces
            .iter()
            .flat_map(|r| r.scope_spans.iter().flat_map(|ss| ss.spans.iter()))
            .collect();
        let clients: std::collections::HashSet<&Vec<u8>> = all
            .iter()
            .filter(|sp| sp.kind == span::SpanKind::Client as i32)
            .map(|sp| &sp.span_id)
            .collect();
        assert!(all
            .iter()
            .filter(|sp| sp.kind == span::SpanKind::Server as i32 && !sp.parent_span_id.is_empty())
            .all(|sp| clients.contains(&sp.parent_span_id)));
        let before = entry_latency(&metrics);
        let (_, during) = s.step(1);
        assert!(
            entry_latency(&during) > before,
            "the fault slows the entry service"
        );
    }

    fn entry_latency(m: &[ResourceMetrics]) -> f64 {
        let Some(metric::Data::Gauge(g)) = &m[0].scope_metrics[0].metrics[0].data else {
            return 0.0;
        };
        match g.data_points[0].value {
            Some(number_data_point::Value::AsDouble(v)) => v,
            _ => 0.0,
        }
    }
}
