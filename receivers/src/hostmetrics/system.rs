//! `system` scraper: `system.uptime`, the seconds since boot (`btime` of `/proc/stat` under
//! `root_path`), as otelcol's system scraper reports it.

use super::config::{scraper, PlainScraper, Toggles};
use super::{f64_point, gauge, keep, Ctx, Scraped, Scraper};
use serde_json::Value;
use vigil_core::{ComponentId, ComponentKind, ConfigError};

const METRICS: &[(&str, bool)] = &[("system.uptime", true)];

pub struct SystemScraper {
    toggles: Toggles,
}

impl SystemScraper {
    pub fn new(id: &ComponentId, section: &Value) -> Result<Self, ConfigError> {
        let cfg: PlainScraper = scraper(id, "system", section)?;
        let toggles = Toggles::build_with(METRICS, &[], &cfg.metrics, |p, m| {
            ConfigError::component(
                ComponentKind::Receiver,
                id,
                format!("scrapers::system::{p}"),
                m,
            )
        })?;
        Ok(SystemScraper { toggles })
    }
}

impl Scraper for SystemScraper {
    fn name(&self) -> &'static str {
        "system"
    }

    fn scrape(&mut self, ctx: &Ctx) -> Result<Scraped, String> {
        let secs = ctx.now.saturating_sub(ctx.boot) as f64 / 1e9;
        let metrics = vec![gauge(
            "system.uptime",
            "The time the system has been running",
            "s",
            vec![f64_point(vec![], secs, 0, ctx.now)],
        )];
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
    fn uptime_is_now_minus_boot() {
        let root = fixture();
        let ctx = ctx(&root);
        let out = SystemScraper::new(&id(), &Value::Null)
            .unwrap()
            .scrape(&ctx)
            .unwrap();
        let m = find(&out.metrics, "system.uptime");
        assert_eq!(m.unit, "s");
        assert_eq!(
            value(m, ""),
            (ctx.now - ctx.boot) as f64 / 1e9,
            "seconds since btime"
        );
        let off = serde_json::json!({"metrics": {"system.uptime": {"enabled": false}}});
        let out = SystemScraper::new(&id(), &off)
            .unwrap()
            .scrape(&ctx)
            .unwrap();
        assert!(out.metrics.is_empty());
        let bad = serde_json::json!({"metrics": {"system.cpu.time": {"enabled": true}}});
        let e = SystemScraper::new(&id(), &bad).err().unwrap().to_string();
        assert!(
            e.contains("scrapers::system::metrics::system.cpu.time"),
            "{e}"
        );
    }
}
