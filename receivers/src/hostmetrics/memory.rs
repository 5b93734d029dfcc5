//! `memory` scraper: `system.memory.usage{state}` from `/proc/meminfo`, plus the optional
//! `system.memory.utilization`, `system.memory.limit`, `system.memory.page_size`,
//! `system.memory.linux.shared` and `system.linux.memory.{available,dirty}`. otelcol's hugepages
//! metrics are not built.

use super::config::{scraper, PlainScraper, Toggles};
use super::{f64_point, gauge, int_point, keep, key_values, sum, Ctx, Scraped, Scraper};
use serde_json::Value;
use vigil_core::attrs::kv_str;
use vigil_core::{ComponentId, ComponentKind, ConfigError};

const METRICS: &[(&str, bool)] = &[
    ("system.memory.usage", true),
    ("system.memory.utilization", false),
    ("system.memory.limit", false),
    ("system.memory.page_size", false),
    ("system.memory.linux.shared", false),
    ("system.linux.memory.available", false),
    ("system.linux.memory.dirty", false),
];

/// otelcol's memory metrics vigil does not emit (all off by default there).
const NOT_BUILT: &[&str] = &[
    "system.memory.linux.hugepages.limit",
    "system.memory.linux.hugepages.page_size",
    "system.memory.linux.hugepages.reserved",
    "system.memory.linux.hugepages.surplus",
    "system.memory.linux.hugepages.usage",
    "system.memory.linux.hugepages.utilization",
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
        let toggles = Toggles::build_with(METRICS, NOT_BUILT, &cfg.metrics, |p, m| {
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
        let kv = key_values(&text);
        // A line the kernel lacks (old kernels have no MemAvailable) gives no point, not a zero.
        let kib_point = |k: &str| {
            kv.get(k)
                .map(|v| vec![int_point(vec![], (v * 1024) as i64, 0, ctx.now)])
                .unwrap_or_default()
        };
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
            gauge(
                "system.memory.page_size",
                "A constant value for the system's configured page size.",
                "By",
                vec![int_point(vec![], super::process::page_size() as i64, 0, ctx.now)],
            ),
            sum(
                "system.memory.linux.shared",
                "Shared memory usage, including tmpfs filesystems and System V/POSIX shared memory.",
                "By",
                false,
                kib_point("Shmem"),
            ),
            sum(
                "system.linux.memory.available",
                "An estimate of how much memory is available for starting new applications, without swapping. This is a more accurate alternative than system.memory.usage with state=free. (Linux only)",
                "By",
                false,
                kib_point("MemAvailable"),
            ),
            sum(
                "system.linux.memory.dirty",
                "The amount of dirty memory according to `/proc/meminfo`.",
                "By",
                false,
                kib_point("Dirty"),
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
        assert!(out
            .metrics
            .iter()
            .all(|m| !m.name.starts_with("system.linux")));
    }

    #[test]
    fn linux_metrics_come_from_meminfo_when_enabled() {
        let root = fixture();
        let ctx = ctx(&root);
        let on = serde_json::json!({"metrics": {
            "system.linux.memory.available": {"enabled": true},
            "system.linux.memory.dirty": {"enabled": true},
            "system.memory.linux.shared": {"enabled": true},
            "system.memory.page_size": {"enabled": true},
            "system.memory.linux.hugepages.usage": {"enabled": false},
            "system.memory.usage": null,
        }});
        let out = MemoryScraper::new(&id(), &on)
            .unwrap()
            .scrape(&ctx)
            .unwrap();
        let v = |n: &str| value(find(&out.metrics, n), "");
        assert_eq!(v("system.linux.memory.available"), 10_000_000.0 * 1024.0);
        assert_eq!(v("system.linux.memory.dirty"), 12_000.0 * 1024.0);
        assert_eq!(v("system.memory.linux.shared"), 300_000.0 * 1024.0);
        assert!(v("system.memory.page_size") >= 4096.0);
        assert_eq!(find(&out.metrics, "system.memory.page_size").unit, "By");
        // A null section keeps the default (on).
        find(&out.metrics, "system.memory.usage");
        let hp = serde_json::json!({"metrics": {
            "system.memory.linux.hugepages.usage": {"enabled": true},
        }});
        let e = MemoryScraper::new(&id(), &hp).err().unwrap().to_string();
        assert!(
            e.contains("scrapers::memory::metrics::system.memory.linux.hugepages.usage")
                && e.contains("not built"),
            "{e}"
        );
        let agg = serde_json::json!({"metrics": {
            "system.memory.usage": {"enabled": true, "aggregation_strategy": "sum"},
        }});
        let e = MemoryScraper::new(&id(), &agg).err().unwrap().to_string();
        assert!(
            e.contains("metrics::system.memory.usage::aggregation_strategy: not built"),
            "{e}"
        );
    }
}
