//! `load` scraper: `system.cpu.load_average.{1m,5m,15m}` from `/proc/loadavg`, optionally divided by
//! the number of CPUs (`cpu_average`).

use super::config::{scraper, LoadScraper as LoadConfig, Toggles};
use super::{cpu, f64_point, gauge, keep, Ctx, Scraped, Scraper};
use serde_json::Value;
use vigil_core::{ComponentId, ComponentKind, ConfigError};

const METRICS: &[(&str, bool)] = &[
    ("system.cpu.load_average.1m", true),
    ("system.cpu.load_average.5m", true),
    ("system.cpu.load_average.15m", true),
];

pub(crate) fn parse_loadavg(text: &str) -> Result<[f64; 3], String> {
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>());
    let mut out = [0.0; 3];
    for slot in out.iter_mut() {
        *slot = match it.next() {
            Some(Ok(v)) => v,
            _ => return Err(format!("unexpected /proc/loadavg content {text:?}")),
        };
    }
    Ok(out)
}

pub struct LoadScraper {
    toggles: Toggles,
    cpu_average: bool,
}

impl LoadScraper {
    pub fn new(id: &ComponentId, section: &Value) -> Result<Self, ConfigError> {
        let cfg: LoadConfig = scraper(id, "load", section)?;
        let toggles = Toggles::build_with(METRICS, &[], &cfg.metrics, |p, m| {
            ConfigError::component(
                ComponentKind::Receiver,
                id,
                format!("scrapers::load::{p}"),
                m,
            )
        })?;
        Ok(LoadScraper {
            toggles,
            cpu_average: cfg.cpu_average,
        })
    }
}

impl Scraper for LoadScraper {
    fn name(&self) -> &'static str {
        "load"
    }

    fn scrape(&mut self, ctx: &Ctx) -> Result<Scraped, String> {
        let text = ctx
            .root
            .read("/proc/loadavg")
            .map_err(|e| format!("reading /proc/loadavg: {e}"))?;
        let mut avg = parse_loadavg(&text)?;
        if self.cpu_average {
            let stat = ctx
                .root
                .read("/proc/stat")
                .map_err(|e| format!("reading /proc/stat: {e}"))?;
            let n = cpu::parse_stat(&stat, ctx.ticks).len().max(1) as f64;
            avg.iter_mut().for_each(|v| *v /= n);
        }
        let names = [
            (
                "system.cpu.load_average.1m",
                "Average CPU Load over 1 minute.",
            ),
            (
                "system.cpu.load_average.5m",
                "Average CPU Load over 5 minutes.",
            ),
            (
                "system.cpu.load_average.15m",
                "Average CPU Load over 15 minutes.",
            ),
        ];
        let metrics = names
            .iter()
            .zip(avg)
            .map(|((n, d), v)| gauge(n, d, "{thread}", vec![f64_point(vec![], v, 0, ctx.now)]))
            .collect();
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
    fn load_averages_and_cpu_average() {
        let root = fixture();
        let ctx = ctx(&root);
        let out = LoadScraper::new(&id(), &Value::Null)
            .unwrap()
            .scrape(&ctx)
            .unwrap();
        assert_eq!(
            value(find(&out.metrics, "system.cpu.load_average.1m"), ""),
            0.52
        );
        assert_eq!(
            value(find(&out.metrics, "system.cpu.load_average.15m"), ""),
            0.21
        );
        let out = LoadScraper::new(&id(), &serde_json::json!({"cpu_average": true}))
            .unwrap()
            .scrape(&ctx)
            .unwrap();
        assert_eq!(
            value(find(&out.metrics, "system.cpu.load_average.5m"), ""),
            0.19
        );
        assert!(parse_loadavg("garbage").is_err());
    }
}
