//! `processes` scraper: `system.processes.count{status}` from the state letter of every
//! `/proc/<pid>/stat`, and `system.processes.created` from the `processes` line of `/proc/stat`.

use super::config::{scraper, PlainScraper, Toggles};
use super::{int_point, keep, sum, Ctx, Root, Scraped, Scraper};
use serde_json::Value;
use std::collections::BTreeMap;
use vigil_core::attrs::kv_str;
use vigil_core::{ComponentId, ComponentKind, ConfigError};

const METRICS: &[(&str, bool)] = &[
    ("system.processes.count", true),
    ("system.processes.created", true),
];

/// The pids in `/proc`.
pub(crate) fn pids(root: &Root) -> std::io::Result<Vec<u32>> {
    let mut out: Vec<u32> = std::fs::read_dir(root.path("/proc"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// The state letter after the `(comm)` field of `/proc/<pid>/stat`; the command name may itself hold
/// spaces and parentheses, so the last `)` ends it.
pub(crate) fn stat_fields(stat: &str) -> Option<(&str, Vec<&str>)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let rest = stat.get(close + 1..)?;
    Some((comm, rest.split_whitespace().collect()))
}

/// otelcol's status names for the kernel's state letters.
fn status(letter: &str) -> &'static str {
    match letter {
        "R" => "running",
        "S" => "sleeping",
        "D" => "blocked",
        "T" | "t" => "stopped",
        "Z" => "zombies",
        "I" => "idle",
        "W" => "paging",
        "L" => "locked",
        _ => "unknown",
    }
}

pub struct ProcessesScraper {
    toggles: Toggles,
}

impl ProcessesScraper {
    pub fn new(id: &ComponentId, section: &Value) -> Result<Self, ConfigError> {
        let cfg: PlainScraper = scraper(id, "processes", section)?;
        let toggles = Toggles::build_with(METRICS, &[], &cfg.metrics, |p, m| {
            ConfigError::component(
                ComponentKind::Receiver,
                id,
                format!("scrapers::processes::{p}"),
                m,
            )
        })?;
        Ok(ProcessesScraper { toggles })
    }
}

impl Scraper for ProcessesScraper {
    fn name(&self) -> &'static str {
        "processes"
    }

    fn scrape(&mut self, ctx: &Ctx) -> Result<Scraped, String> {
        let mut counts: BTreeMap<&'static str, i64> = BTreeMap::new();
        for pid in pids(ctx.root).map_err(|e| format!("listing /proc: {e}"))? {
            // A process that exits between the listing and the read is simply gone.
            let Ok(stat) = ctx.root.read(&format!("/proc/{pid}/stat")) else {
                continue;
            };
            if let Some((_, f)) = stat_fields(&stat) {
                *counts
                    .entry(status(f.first().copied().unwrap_or("")))
                    .or_default() += 1;
            }
        }
        let t = ctx.now;
        let count = counts
            .into_iter()
            .map(|(s, n)| int_point(vec![kv_str("status", s)], n, 0, t))
            .collect();
        let stat = ctx.root.read("/proc/stat").unwrap_or_default();
        let created: Vec<_> = stat
            .lines()
            .find_map(|l| l.strip_prefix("processes "))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map(|n| int_point(vec![], n, ctx.boot, t))
            .into_iter()
            .collect();
        let metrics = vec![
            sum(
                "system.processes.count",
                "Total number of processes in each state.",
                "{processes}",
                false,
                count,
            ),
            sum(
                "system.processes.created",
                "Total number of created processes.",
                "{processes}",
                true,
                created,
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
    fn counts_by_status_and_created() {
        let root = fixture();
        let ctx = ctx(&root);
        let out = ProcessesScraper::new(&id(), &Value::Null)
            .unwrap()
            .scrape(&ctx)
            .unwrap();
        let c = find(&out.metrics, "system.processes.count");
        assert_eq!(value(c, "status=running"), 1.0);
        assert_eq!(value(c, "status=sleeping"), 1.0);
        assert_eq!(
            value(find(&out.metrics, "system.processes.created"), ""),
            54321.0
        );
        assert_eq!(
            stat_fields("7 (a) b) (c) S 1").unwrap(),
            ("a) b) (c", vec!["S", "1"])
        );
    }
}
