//! `disk` scraper: the `system.disk.*` counters of every block device in `/proc/diskstats`, filtered
//! by `include`/`exclude` `devices`. Devices that never did any I/O (unused loop devices) are left out.

use super::config::{compile_filter, scraper, DiskScraper as DiskConfig, Toggles};
use super::filter::IncludeExclude;
use super::{f64_point, int_point, keep, sum, Ctx, Scraped, Scraper};
use serde_json::Value;
use vigil_core::attrs::kv_str;
use vigil_core::{ComponentId, ComponentKind, ConfigError};

const METRICS: &[(&str, bool)] = &[
    ("system.disk.io", true),
    ("system.disk.operations", true),
    ("system.disk.io_time", true),
    ("system.disk.operation_time", true),
    ("system.disk.weighted_io_time", true),
    ("system.disk.pending_operations", true),
    ("system.disk.merged", true),
];

/// `/proc/diskstats` counts sectors of 512 bytes whatever the device's own sector size.
const SECTOR: u64 = 512;

/// One line of `/proc/diskstats`.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct DiskStat {
    pub name: String,
    pub reads: u64,
    pub reads_merged: u64,
    pub sectors_read: u64,
    pub read_ms: u64,
    pub writes: u64,
    pub writes_merged: u64,
    pub sectors_written: u64,
    pub write_ms: u64,
    pub in_progress: u64,
    pub io_ms: u64,
    pub weighted_ms: u64,
}

pub(crate) fn parse_diskstats(text: &str) -> Vec<DiskStat> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 14 {
                return None;
            }
            let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
            Some(DiskStat {
                name: f[2].to_string(),
                reads: n(3),
                reads_merged: n(4),
                sectors_read: n(5),
                read_ms: n(6),
                writes: n(7),
                writes_merged: n(8),
                sectors_written: n(9),
                write_ms: n(10),
                in_progress: n(11),
                io_ms: n(12),
                weighted_ms: n(13),
            })
        })
        .collect()
}

pub struct DiskScraper {
    toggles: Toggles,
    filter: IncludeExclude,
}

impl DiskScraper {
    pub fn new(id: &ComponentId, section: &Value) -> Result<Self, ConfigError> {
        let cfg: DiskConfig = scraper(id, "disk", section)?;
        let toggles = Toggles::build_with(METRICS, &[], &cfg.metrics, |p, m| {
            ConfigError::component(
                ComponentKind::Receiver,
                id,
                format!("scrapers::disk::{p}"),
                m,
            )
        })?;
        let filter = IncludeExclude {
            include: compile_filter(id, "scrapers::disk::include", "devices", &cfg.include)?,
            exclude: compile_filter(id, "scrapers::disk::exclude", "devices", &cfg.exclude)?,
        };
        Ok(DiskScraper { toggles, filter })
    }
}

impl Scraper for DiskScraper {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn scrape(&mut self, ctx: &Ctx) -> Result<Scraped, String> {
        let text = ctx
            .root
            .read("/proc/diskstats")
            .map_err(|e| format!("reading /proc/diskstats: {e}"))?;
        let (s, t) = (ctx.boot, ctx.now);
        let (mut io, mut ops, mut merged) = (Vec::new(), Vec::new(), Vec::new());
        let (mut io_time, mut op_time) = (Vec::new(), Vec::new());
        let (mut weighted, mut pending) = (Vec::new(), Vec::new());
        let push2 = |v: &mut Vec<_>, dev: &str, r: i64, w: i64| {
            for (dir, x) in [("read", r), ("write", w)] {
                v.push(int_point(
                    vec![kv_str("device", dev), kv_str("direction", dir)],
                    x,
                    s,
                    t,
                ));
            }
        };
        for d in parse_diskstats(&text) {
            if d.reads == 0 && d.writes == 0 && d.in_progress == 0 {
                continue;
            }
            if !self.filter.pass(&d.name) {
                continue;
            }
            let dev = d.name.as_str();
            push2(
                &mut io,
                dev,
                (d.sectors_read * SECTOR) as i64,
                (d.sectors_written * SECTOR) as i64,
            );
            push2(&mut ops, dev, d.reads as i64, d.writes as i64);
            push2(
                &mut merged,
                dev,
                d.reads_merged as i64,
                d.writes_merged as i64,
            );
            for (dir, ms) in [("read", d.read_ms), ("write", d.write_ms)] {
                op_time.push(f64_point(
                    vec![kv_str("device", dev), kv_str("direction", dir)],
                    ms as f64 / 1000.0,
                    s,
                    t,
                ));
            }
            io_time.push(f64_point(
                vec![kv_str("device", dev)],
                d.io_ms as f64 / 1000.0,
                s,
                t,
            ));
            weighted.push(f64_point(
                vec![kv_str("device", dev)],
                d.weighted_ms as f64 / 1000.0,
                s,
                t,
            ));
            pending.push(int_point(
                vec![kv_str("device", dev)],
                d.in_progress as i64,
                0,
                t,
            ));
        }
        let metrics = vec![
            sum("system.disk.io", "Disk bytes transferred.", "By", true, io),
            sum("system.disk.operations", "Disk operations count.", "{operations}", true, ops),
            sum("system.disk.io_time", "Time disk spent activated. On Windows, this is calculated as the inverse of disk idle time.", "s", true, io_time),
            sum("system.disk.operation_time", "Time spent in disk operations.", "s", true, op_time),
            sum("system.disk.weighted_io_time", "Time disk spent activated multiplied by the queue length.", "s", true, weighted),
            sum("system.disk.pending_operations", "The queue size of pending I/O operations.", "{operations}", false, pending),
            sum("system.disk.merged", "The number of disk reads/writes merged into single physical disk access operations.", "{operations}", true, merged),
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
    fn disk_counters_by_device_and_direction() {
        let root = fixture();
        let ctx = ctx(&root);
        let out = DiskScraper::new(&id(), &Value::Null)
            .unwrap()
            .scrape(&ctx)
            .unwrap();
        let io = find(&out.metrics, "system.disk.io");
        assert_eq!(value(io, "device=vda,direction=read"), 80000.0 * 512.0);
        assert_eq!(value(io, "device=vda1,direction=write"), 150000.0 * 512.0);
        // loop0 never did I/O.
        assert!(points(io).iter().all(|(a, _)| !a.contains("loop0")));
        assert_eq!(
            value(
                find(&out.metrics, "system.disk.operations"),
                "device=vda,direction=write"
            ),
            2000.0
        );
        assert_eq!(
            value(find(&out.metrics, "system.disk.io_time"), "device=vda"),
            3.0
        );
        assert_eq!(
            value(
                find(&out.metrics, "system.disk.operation_time"),
                "device=vda,direction=write"
            ),
            4.0
        );
        assert_eq!(
            value(
                find(&out.metrics, "system.disk.pending_operations"),
                "device=vda"
            ),
            2.0
        );
        assert_eq!(
            value(
                find(&out.metrics, "system.disk.merged"),
                "device=vda,direction=read"
            ),
            20.0
        );

        let out = DiskScraper::new(
            &id(),
            &serde_json::json!({"exclude": {"devices": ["^vda\\d+$"], "match_type": "regexp"}}),
        )
        .unwrap()
        .scrape(&ctx)
        .unwrap();
        let io = find(&out.metrics, "system.disk.io");
        assert!(points(io).iter().all(|(a, _)| a.contains("device=vda,")));
    }
}
