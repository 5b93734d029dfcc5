//! `cpu` scraper: `system.cpu.time{cpu,state}` from the per-CPU lines of `/proc/stat`, and (when
//! enabled) `system.cpu.utilization`, the share of each state between two collections,
//! `system.cpu.logical.count`, and from `/proc/cpuinfo` `system.cpu.physical.count` (distinct
//! physical cores) and `system.cpu.frequency{cpu}` (each logical CPU's current clock, in Hz).

use super::config::{scraper, PlainScraper, Toggles};
use super::{f64_point, gauge, int_point, keep, sum, Ctx, Scraped, Scraper};
use serde_json::Value;
use std::collections::HashMap;
use vigil_core::attrs::kv_str;
use vigil_core::{ComponentId, ComponentKind, ConfigError};

const METRICS: &[(&str, bool)] = &[
    ("system.cpu.time", true),
    ("system.cpu.utilization", false),
    ("system.cpu.logical.count", false),
    ("system.cpu.physical.count", false),
    ("system.cpu.frequency", false),
];

/// What `/proc/cpuinfo` says: the number of distinct (package, core) pairs, and each logical
/// CPU's `cpu MHz` in Hz. Kernels that list no `physical id`/`core id` (some virtual machines,
/// most ARM) count each processor as a core, as gopsutil does; CPUs with no `cpu MHz` line get no
/// frequency point.
pub(crate) fn parse_cpuinfo(text: &str) -> (usize, Vec<(String, f64)>) {
    let mut cores = std::collections::BTreeSet::new();
    let mut processors = 0;
    let mut freqs = Vec::new();
    for block in text.split("\n\n") {
        let field = |key: &str| {
            block.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == key).then(|| v.trim())
            })
        };
        let Some(n) = field("processor") else {
            continue;
        };
        processors += 1;
        if let (Some(p), Some(c)) = (field("physical id"), field("core id")) {
            cores.insert((p.to_string(), c.to_string()));
        }
        if let Some(mhz) = field("cpu MHz").and_then(|v| v.parse::<f64>().ok()) {
            freqs.push((format!("cpu{n}"), mhz * 1e6));
        }
    }
    let physical = if cores.is_empty() {
        processors
    } else {
        cores.len()
    };
    (physical, freqs)
}

/// The `/proc/stat` columns in order, by otelcol's state names; `guest` time is already part of
/// `user`, so it is not reported twice.
const STATES: [&str; 8] = [
    "user",
    "nice",
    "system",
    "idle",
    "wait",
    "interrupt",
    "softirq",
    "steal",
];

/// One CPU's times in seconds, in `STATES` order.
pub(crate) type CpuTimes = [f64; 8];

/// Parses the `cpuN` lines of `/proc/stat` (not the `cpu` total line).
pub(crate) fn parse_stat(text: &str, ticks: f64) -> Vec<(String, CpuTimes)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some(name) = it.next() else { continue };
        if name == "cpu" || !name.starts_with("cpu") {
            continue;
        }
        let mut t = [0f64; 8];
        for slot in t.iter_mut() {
            *slot = it.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) as f64 / ticks;
        }
        out.push((name.to_string(), t));
    }
    out
}

pub struct CpuScraper {
    toggles: Toggles,
    previous: HashMap<String, CpuTimes>,
}

impl CpuScraper {
    pub fn new(id: &ComponentId, section: &Value) -> Result<Self, ConfigError> {
        let cfg: PlainScraper = scraper(id, "cpu", section)?;
        let toggles = Toggles::build_with(METRICS, &[], &cfg.metrics, |p, m| {
            ConfigError::component(
                ComponentKind::Receiver,
                id,
                format!("scrapers::cpu::{p}"),
                m,
            )
        })?;
        Ok(CpuScraper {
            toggles,
            previous: HashMap::new(),
        })
    }
}

impl Scraper for CpuScraper {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn scrape(&mut self, ctx: &Ctx) -> Result<Scraped, String> {
        let text = ctx
            .root
            .read("/proc/stat")
            .map_err(|e| format!("reading /proc/stat: {e}"))?;
        let cpus = parse_stat(&text, ctx.ticks);
        let mut time = Vec::with_capacity(cpus.len() * STATES.len());
        let mut util = Vec::new();
        for (cpu, t) in &cpus {
            for (i, state) in STATES.iter().enumerate() {
                time.push(f64_point(
                    vec![kv_str("cpu", cpu.as_str()), kv_str("state", *state)],
                    t[i],
                    ctx.boot,
                    ctx.now,
                ));
            }
            // Utilization needs a previous reading; the first collection has none, as in otelcol.
            if let Some(prev) = self.previous.get(cpu) {
                let total: f64 = t.iter().zip(prev).map(|(a, b)| a - b).sum();
                if total > 0.0 {
                    for (i, state) in STATES.iter().enumerate() {
                        util.push(f64_point(
                            vec![kv_str("cpu", cpu.as_str()), kv_str("state", *state)],
                            ((t[i] - prev[i]) / total).clamp(0.0, 1.0),
                            0,
                            ctx.now,
                        ));
                    }
                }
            }
        }
        let count = cpus.len() as i64;
        self.previous = cpus.into_iter().collect();
        let mut metrics = Vec::new();
        // Read only when asked for: both are off by default, as in otelcol.
        if self.toggles.on("system.cpu.physical.count") || self.toggles.on("system.cpu.frequency") {
            let text = ctx
                .root
                .read("/proc/cpuinfo")
                .map_err(|e| format!("reading /proc/cpuinfo: {e}"))?;
            let (physical, freqs) = parse_cpuinfo(&text);
            let freq = freqs
                .into_iter()
                .map(|(cpu, hz)| f64_point(vec![kv_str("cpu", cpu)], hz, 0, ctx.now))
                .collect();
            metrics.push(sum(
                "system.cpu.physical.count",
                "Number of available physical CPUs.",
                "{cpu}",
                false,
                vec![int_point(vec![], physical as i64, 0, ctx.now)],
            ));
            metrics.push(gauge(
                "system.cpu.frequency",
                "Current frequency of the CPU core in Hz.",
                "Hz",
                freq,
            ));
        }
        metrics.extend([
            sum("system.cpu.time", "Total seconds each logical CPU spent on each mode.", "s", true, time),
            gauge("system.cpu.utilization", "Difference in system.cpu.time since the last measurement per logical CPU, divided by the elapsed time (value in interval [0,1]).", "1", util),
            sum("system.cpu.logical.count", "Number of available logical CPUs.", "{cpu}", false, vec![int_point(vec![], count, 0, ctx.now)]),
        ]);
        Ok(Scraped {
            metrics: keep(&self.toggles, metrics),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn cpu_time_per_cpu_and_state_then_utilization() {
        let root = fixture();
        let ctx = ctx(&root);
        let mut s = CpuScraper::new(
            &id(),
            &serde_json::json!({"metrics": {"system.cpu.utilization": {"enabled": true}}}),
        )
        .unwrap();
        let out = s.scrape(&ctx).unwrap();
        let m = find(&out.metrics, "system.cpu.time");
        assert_eq!(m.unit, "s");
        let Some(vigil_core::otlp::metrics::v1::metric::Data::Sum(sum)) = &m.data else {
            panic!("not a sum")
        };
        assert!(sum.is_monotonic);
        assert_eq!(sum.aggregation_temporality, 2);
        assert_eq!(sum.data_points.len(), 16);
        assert_eq!(
            sum.data_points[0].start_time_unix_nano,
            1_700_000_000_000_000_000
        );
        assert_eq!(value(m, "cpu=cpu0,state=user"), 10.0);
        assert_eq!(value(m, "cpu=cpu1,state=wait"), 2.0);
        assert_eq!(value(m, "cpu=cpu0,state=steal"), 0.03);
        // No previous reading yet: no utilization, and the metric is left out rather than empty.
        assert!(out
            .metrics
            .iter()
            .all(|m| m.name != "system.cpu.utilization"));
        assert!(out
            .metrics
            .iter()
            .all(|m| m.name != "system.cpu.logical.count"));

        // Pretend cpu0 was 10s less idle and 10s less user one collection ago.
        let mut prev = s.previous["cpu0"];
        prev[0] -= 10.0;
        prev[3] -= 30.0;
        s.previous.insert("cpu0".into(), prev);
        let out = s.scrape(&ctx).unwrap();
        let u = find(&out.metrics, "system.cpu.utilization");
        assert_eq!(value(u, "cpu=cpu0,state=user"), 0.25);
        assert_eq!(value(u, "cpu=cpu0,state=idle"), 0.75);
        // cpu1 did not move: zero elapsed time gives no points rather than NaN.
        assert!(points(u).iter().all(|(a, _)| a.starts_with("cpu=cpu0")));
        assert!(out
            .metrics
            .iter()
            .all(|m| m.name != "system.cpu.frequency" && m.name != "system.cpu.physical.count"));
    }

    #[test]
    fn physical_count_and_frequency_from_cpuinfo() {
        let root = fixture();
        let ctx = ctx(&root);
        let mut s = CpuScraper::new(
            &id(),
            &serde_json::json!({"metrics": {
                "system.cpu.physical.count": {"enabled": true},
                "system.cpu.frequency": {"enabled": true},
                "system.cpu.logical.count": {"enabled": true},
            }}),
        )
        .unwrap();
        let out = s.scrape(&ctx).unwrap();
        // Two hyperthreads of one core: two logical CPUs, one physical.
        assert_eq!(
            value(find(&out.metrics, "system.cpu.logical.count"), ""),
            2.0
        );
        assert_eq!(
            value(find(&out.metrics, "system.cpu.physical.count"), ""),
            1.0
        );
        let f = find(&out.metrics, "system.cpu.frequency");
        assert_eq!(f.unit, "Hz");
        assert_eq!(value(f, "cpu=cpu0"), 2.2e9);
        assert_eq!(value(f, "cpu=cpu1"), 2_199_998_000.0);
        // No topology lines: each processor counts as a core; no MHz: no frequency point.
        let (physical, freqs) = parse_cpuinfo("processor\t: 0\nBogoMIPS\t: 50\n\nprocessor\t: 1\n");
        assert_eq!((physical, freqs.len()), (2, 0));
    }
}
