//! `paging` scraper: swap usage per device from `/proc/swaps`, and page-in/out operations and page
//! faults from `/proc/vmstat`.

use super::config::{scraper, PlainScraper, Toggles};
use super::{f64_point, gauge, int_point, keep, key_values, sum, Ctx, Scraped, Scraper};
use serde_json::Value;
use vigil_core::attrs::kv_str;
use vigil_core::{ComponentId, ComponentKind, ConfigError};

const METRICS: &[(&str, bool)] = &[
    ("system.paging.usage", true),
    ("system.paging.operations", true),
    ("system.paging.faults", true),
    ("system.paging.utilization", false),
];

/// (device, size, used) in bytes for each line of `/proc/swaps`.
pub(crate) fn parse_swaps(text: &str) -> Vec<(String, u64, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 4 {
                return None;
            }
            let size = f[2].parse::<u64>().ok()? * 1024;
            let used = f[3].parse::<u64>().ok()? * 1024;
            Some((f[0].to_string(), size, used))
        })
        .collect()
}

pub struct PagingScraper {
    toggles: Toggles,
}

impl PagingScraper {
    pub fn new(id: &ComponentId, section: &Value) -> Result<Self, ConfigError> {
        let cfg: PlainScraper = scraper(id, "paging", section)?;
        let toggles = Toggles::build_with(METRICS, &[], &cfg.metrics, |p, m| {
            ConfigError::component(
                ComponentKind::Receiver,
                id,
                format!("scrapers::paging::{p}"),
                m,
            )
        })?;
        Ok(PagingScraper { toggles })
    }
}

impl Scraper for PagingScraper {
    fn name(&self) -> &'static str {
        "paging"
    }

    fn scrape(&mut self, ctx: &Ctx) -> Result<Scraped, String> {
        let t = ctx.now;
        let mut usage = Vec::new();
        let mut util = Vec::new();
        // A host without swap has an empty table (or none at all): no usage points, not an error.
        for (dev, size, used) in parse_swaps(&ctx.root.read("/proc/swaps").unwrap_or_default()) {
            let free = size.saturating_sub(used);
            for (state, v) in [("used", used), ("free", free)] {
                usage.push(int_point(
                    vec![kv_str("device", dev.as_str()), kv_str("state", state)],
                    v as i64,
                    0,
                    t,
                ));
                if size > 0 {
                    util.push(f64_point(
                        vec![kv_str("device", dev.as_str()), kv_str("state", state)],
                        v as f64 / size as f64,
                        0,
                        t,
                    ));
                }
            }
        }
        let vm = ctx
            .root
            .read("/proc/vmstat")
            .map_err(|e| format!("reading /proc/vmstat: {e}"))?;
        let kv = key_values(&vm);
        let g = |k: &str| kv.get(k).copied().unwrap_or(0) as i64;
        let s = ctx.boot;
        let mut ops = Vec::new();
        for (ty, inn, out) in [
            ("major", "pswpin", "pswpout"),
            ("minor", "pgpgin", "pgpgout"),
        ] {
            for (dir, k) in [("page_in", inn), ("page_out", out)] {
                ops.push(int_point(
                    vec![kv_str("direction", dir), kv_str("type", ty)],
                    g(k),
                    s,
                    t,
                ));
            }
        }
        let major = g("pgmajfault");
        let faults = vec![
            int_point(vec![kv_str("type", "major")], major, s, t),
            int_point(
                vec![kv_str("type", "minor")],
                (g("pgfault") - major).max(0),
                s,
                t,
            ),
        ];
        let metrics = vec![
            sum(
                "system.paging.usage",
                "Swap (unix) or pagefile (windows) usage.",
                "By",
                false,
                usage,
            ),
            sum(
                "system.paging.operations",
                "The number of paging operations.",
                "{operations}",
                true,
                ops,
            ),
            sum(
                "system.paging.faults",
                "The number of page faults.",
                "{faults}",
                true,
                faults,
            ),
            gauge(
                "system.paging.utilization",
                "Swap (unix) or pagefile (windows) utilization.",
                "1",
                util,
            ),
        ];
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
    fn swap_usage_operations_and_faults() {
        let root = fixture();
        let ctx = ctx(&root);
        let out = PagingScraper::new(&id(), &Value::Null)
            .unwrap()
            .scrape(&ctx)
            .unwrap();
        let u = find(&out.metrics, "system.paging.usage");
        assert_eq!(value(u, "device=/dev/vda3,state=used"), 1048574.0 * 1024.0);
        assert_eq!(value(u, "device=/dev/vda3,state=free"), 1048574.0 * 1024.0);
        let o = find(&out.metrics, "system.paging.operations");
        assert_eq!(value(o, "direction=page_in,type=major"), 1200.0);
        assert_eq!(value(o, "direction=page_out,type=minor"), 700000.0);
        let f = find(&out.metrics, "system.paging.faults");
        assert_eq!(value(f, "type=minor"), 8_996_000.0);
        assert!(out
            .metrics
            .iter()
            .all(|m| m.name != "system.paging.utilization"));
    }
}
