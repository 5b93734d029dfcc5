//! `memory` scraper: `system.memory.usage{state}` from `/proc/meminfo`, plus the optional
//! `system.memory.utilization` and `system.memory.limit`.

use super::config::{scraper, PlainScraper, Toggles};
use super::{f64_point, gauge, int_point, keep, key_values, sum, Ctx, Scraped, Scraper};
use serde_json::Value;
use vigil_core::attrs::kv_str;
use vigil_core::{ComponentId, ComponentKind, ConfigError};

const METRICS: &[(&str, bool)] = &[
    ("system.memory.usage", true),
    ("system.memory.utilization", false),
    ("system.memory.limit", false),
];

/// (state, bytes) pairs.
pub(crate) type States = Vec<(&'static str, u64)>;

/// Memory by state, in bytes. The states other than `slab_unreclaimable` partition `MemTotal`, so
/// `used` is what is left once free, buffers, page cache and reclaimable slab are taken out (the
/// unreclaimable slab is part of `used`).
pub(crate) fn states(meminfo: &str) -> Result<(u64, States), String> {
    let kv = key_values(meminfo);
    let kib = |k: &str| kv.get(k).copied().map(|v| v * 1024);
    let total = kib("MemTotal").ok_or("/proc/meminfo has no MemTotal")?;
    let free = kib("MemFree").unwrap_or(0);
    let buffers = kib("Buffers").unwrap_or(0);
    let cached = kib("Cached").unwrap_or(0);
    let slab_reclaimable = kib("SReclaimable").unwrap_or(0);
    let slab_unreclaimable = kib("SUnreclaim").unwrap_or(0);
    let used = total.saturating_sub(free + buffers + cached + slab_reclaimable);
    Ok((
        total,
        vec![
            ("used", used),
            ("free", free),
            ("buffered", buffers),
            ("cached", cached),
            ("slab_reclaimable", slab_reclaimable),
            ("slab_unreclaimable", slab_unreclaimable),
        ],
    ))
}

pub struct MemoryScraper {
    toggles: Toggles,
}

impl MemoryScraper {
    pub fn new(id: &ComponentId, section: &Value) -> Result<Self, ConfigError> {
        let cfg: PlainScraper = scraper(id, "memory", section)?;
        let toggles = Toggles::build(METRICS, &cfg.metrics, |p, m| {
            ConfigError::component(
                ComponentKind::Receiver,
                id,
                format!("scrapers::memory::{p}"),
                m,
            )
        })?;
        Ok(MemoryScraper { toggles })
    }
}

impl Scraper for MemoryScraper {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn scrape(&mut self, ctx: &Ctx) -> Result<Scraped, String> {
        let text = ctx
            .root
            .read("/proc/meminfo")
            .map_err(|e| format!("reading /proc/meminfo: {e}"))?;
        let (total, states) = states(&text)?;
        let usage = states
            .iter()
            .map(|(s, v)| int_point(vec![kv_str("state", *s)], *v as i64, 0, ctx.now))
            .collect();
        let util = states
            .iter()
            .filter(|_| total > 0)
            .map(|(s, v)| {
                f64_point(
                    vec![kv_str("state", *s)],
                    *v as f64 / total as f64,
                    0,
                    ctx.now,
                )
            })
            .collect();
        let metrics = vec![
            sum(
                "system.memory.usage",
                "Bytes of memory in use.",
                "By",
                false,
                usage,
            ),
            gauge(
                "system.memory.utilization",
                "Percentage of memory bytes in use.",
                "1",
                util,
            ),
            sum(
                "system.memory.limit",
                "Total bytes of memory available.",
                "By",
                false,
                vec![int_point(vec![], total as i64, 0, ctx.now)],
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
    fn usage_by_state_partitions_the_total() {
        let root = fixture();
        let ctx = ctx(&root);
        let mut s = MemoryScraper::new(
            &id(),
            &serde_json::json!({"metrics": {"system.memory.utilization": {"enabled": true}}}),
        )
        .unwrap();
        let out = s.scrape(&ctx).unwrap();
        let m = find(&out.metrics, "system.memory.usage");
        assert_eq!(m.unit, "By");
        assert_eq!(value(m, "state=free"), 4_000_000.0 * 1024.0);
        assert_eq!(value(m, "state=cached"), 5_000_000.0 * 1024.0);
        assert_eq!(value(m, "state=used"), 5_900_000.0 * 1024.0);
        assert_eq!(value(m, "state=slab_unreclaimable"), 200_000.0 * 1024.0);
        let sum: f64 = points(m)
            .iter()
            .filter(|(a, _)| a != "state=slab_unreclaimable")
            .map(|(_, v)| v)
            .sum();
        assert_eq!(sum, 16_000_000.0 * 1024.0);
        let u = find(&out.metrics, "system.memory.utilization");
        assert_eq!(value(u, "state=free"), 0.25);
    }
}
