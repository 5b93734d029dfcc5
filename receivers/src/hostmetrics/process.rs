//! `process` scraper: one resource per process (`process.pid`, `process.executable.name`, …) with
//! its CPU time, memory and disk I/O, from `/proc/<pid>/{stat,status,cmdline,exe,io,cgroup}`.
//! Processes are kept or dropped by executable name with `include`/`exclude` `names`;
//! `resource_attributes` turns each resource attribute on or off (`process.cgroup` is off by
//! default, as in otelcol).

use super::config::{compile_filter, scraper, ProcessScraper as ProcessConfig, Toggles};
use super::filter::IncludeExclude;
use super::processes::{pids, stat_fields};
use super::{cpu, f64_point, gauge, int_point, keep, key_values, sum, Ctx, Root, Scraped, Scraper};
use serde_json::Value;
use std::collections::HashMap;
use vigil_core::attrs::{kv_i64, kv_str};
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::{ComponentId, ComponentKind, ConfigError};

const METRICS: &[(&str, bool)] = &[
    ("process.cpu.time", true),
    ("process.memory.usage", true),
    ("process.memory.virtual", true),
    ("process.disk.io", true),
    ("process.cpu.utilization", false),
    ("process.memory.utilization", false),
    ("process.threads", false),
    ("process.open_file_descriptors", false),
    ("process.disk.operations", false),
    ("process.paging.faults", false),
    ("process.context_switches", false),
    ("process.uptime", false),
    // Windows only: on Linux otelcol records no point for it either.
    ("process.handles", false),
];

/// The resource attributes and whether each is on by default.
const RESOURCE_ATTRIBUTES: &[(&str, bool)] = &[
    ("process.pid", true),
    ("process.parent_pid", true),
    ("process.executable.name", true),
    ("process.executable.path", true),
    ("process.command", true),
    ("process.command_line", true),
    ("process.owner", true),
    ("process.cgroup", false),
];

/// otelcol's process metrics vigil does not emit (all off by default there): `enabled: false` is
/// accepted, `enabled: true` refused by name. `process.signals_pending` is gopsutil's reading of a
/// signal mask as a number, not a count worth copying.
const NOT_BUILT: &[&str] = &["process.signals_pending"];

/// What one process's files say.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ProcInfo {
    pub pid: u32,
    pub ppid: i64,
    pub name: String,
    pub state: String,
    pub minflt: u64,
    pub majflt: u64,
    /// user, system, wait (block I/O delay), in ticks.
    pub cpu_ticks: [u64; 3],
    pub threads: i64,
    /// Ticks after boot.
    pub start_ticks: u64,
    pub vsize: u64,
    pub rss_pages: u64,
}

/// Parses `/proc/<pid>/stat` (see proc(5) for the field numbers).
pub(crate) fn parse_pid_stat(pid: u32, text: &str) -> Option<ProcInfo> {
    let (comm, f) = stat_fields(text)?;
    // `f[0]` is field 3 (state), so field n is `f[n - 3]`.
    let n = |field: usize| f.get(field - 3).and_then(|v| v.parse::<u64>().ok());
    Some(ProcInfo {
        pid,
        ppid: f.get(1)?.parse().ok()?,
        name: comm.to_string(),
        state: f.first()?.to_string(),
        minflt: n(10).unwrap_or(0),
        majflt: n(12).unwrap_or(0),
        cpu_ticks: [n(14)?, n(15)?, n(42).unwrap_or(0)],
        threads: n(20).unwrap_or(0) as i64,
        start_ticks: n(22)?,
        vsize: n(23).unwrap_or(0),
        rss_pages: n(24).unwrap_or(0),
    })
}

pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant and touches no memory of ours.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// uid → user name from the host's `/etc/passwd`.
fn users(root: &Root) -> HashMap<u32, String> {
    root.read("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((f.get(2)?.parse().ok()?, f.first()?.to_string()))
        })
        .collect()
}

pub struct ProcessScraper {
    toggles: Toggles,
    resource: Toggles,
    names: IncludeExclude,
    cfg: ProcessConfig,
    page: u64,
    /// Per pid: the start ticks (to tell a reused pid), cpu seconds and time of the last reading.
    previous: HashMap<u32, (u64, f64, u64)>,
}

impl ProcessScraper {
    pub fn new(id: &ComponentId, section: &Value) -> Result<Self, ConfigError> {
        let cfg: ProcessConfig = scraper(id, "process", section)?;
        let toggles = Toggles::build_with(METRICS, NOT_BUILT, &cfg.metrics, |p, m| {
            ConfigError::component(
                ComponentKind::Receiver,
                id,
                format!("scrapers::process::{p}"),
                m,
            )
        })?;
        let resource = Toggles::resource(RESOURCE_ATTRIBUTES, &cfg.resource_attributes, |p, m| {
            ConfigError::component(
                ComponentKind::Receiver,
                id,
                format!("scrapers::process::{p}"),
                m,
            )
        })?;
        let names = IncludeExclude {
            include: compile_filter(id, "scrapers::process::include", "names", &cfg.include)?,
            exclude: compile_filter(id, "scrapers::process::exclude", "names", &cfg.exclude)?,
        };
        Ok(ProcessScraper {
            toggles,
            resource,
            names,
            cfg,
            page: page_size(),
            previous: HashMap::new(),
        })
    }
}

impl Scraper for ProcessScraper {
    fn name(&self) -> &'static str {
        "process"
    }

    fn scrape(&mut self, ctx: &Ctx) -> Result<Scraped, String> {
        let root = ctx.root;
        let t = ctx.now;
        let users = users(root);
        let meminfo = root.read("/proc/meminfo").unwrap_or_default();
        let mem_total = key_values(&meminfo).get("MemTotal").copied().unwrap_or(0) * 1024;
        let ncpu = cpu::parse_stat(&root.read("/proc/stat").unwrap_or_default(), ctx.ticks)
            .len()
            .max(1) as f64;
        let mut out = Scraped::default();
        let mut errors: Vec<String> = Vec::new();
        let mut seen = HashMap::new();
        let all_muted = self.cfg.mute_process_all_errors;
        for pid in pids(root).map_err(|e| format!("listing /proc: {e}"))? {
            let Ok(stat) = root.read(&format!("/proc/{pid}/stat")) else {
                continue; // exited
            };
            let Some(p) = parse_pid_stat(pid, &stat) else {
                if !(all_muted || self.cfg.mute_process_name_error) {
                    errors.push(format!("pid {pid}: unreadable /proc/{pid}/stat"));
                }
                continue;
            };
            // Kernel threads have no command line and no executable; otelcol skips them too.
            let status = root
                .read(&format!("/proc/{pid}/status"))
                .unwrap_or_default();
            let name = status
                .lines()
                .find_map(|l| l.strip_prefix("Name:"))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|| p.name.clone());
            if !self.names.pass(&name) {
                continue;
            }
            let start = ctx.boot + (p.start_ticks as f64 / ctx.ticks * 1e9) as u64;
            if !self.cfg.scrape_process_delay.is_zero()
                && t.saturating_sub(start) < self.cfg.scrape_process_delay.as_nanos() as u64
            {
                continue;
            }
            let exe = match std::fs::read_link(root.path(&format!("/proc/{pid}/exe"))) {
                Ok(p) => p.display().to_string(),
                Err(e) => {
                    if !(all_muted || self.cfg.mute_process_exe_error) {
                        errors.push(format!(
                            "pid {pid} ({name}): reading the executable path: {e}"
                        ));
                    }
                    String::new()
                }
            };
            let cmdline =
                std::fs::read(root.path(&format!("/proc/{pid}/cmdline"))).unwrap_or_default();
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|u| u.parse::<u32>().ok());
            let owner = uid.map(|u| users.get(&u).cloned().unwrap_or_else(|| u.to_string()));

            let mut attrs: Vec<KeyValue> = vec![
                kv_i64("process.pid", pid as i64),
                kv_i64("process.parent_pid", p.ppid),
                kv_str("process.executable.name", name.as_str()),
            ];
            if !exe.is_empty() {
                attrs.push(kv_str("process.executable.path", exe));
            }
            if let Some(first) = args.first() {
                attrs.push(kv_str("process.command", first.as_str()));
                attrs.push(kv_str("process.command_line", args.join(" ")));
            }
            if let Some(o) = owner {
                attrs.push(kv_str("process.owner", o));
            }
            if self.resource.on("process.cgroup") {
                match root.read(&format!("/proc/{pid}/cgroup")) {
                    Ok(c) => attrs.push(kv_str("process.cgroup", c.trim_end_matches('\n'))),
                    Err(e) => {
                        if !(all_muted || self.cfg.mute_process_cgroup_error) {
                            errors.push(format!(
                                "pid {pid} ({name}): reading /proc/{pid}/cgroup: {e}"
                            ));
                        }
                    }
                }
            }
            attrs.retain(|kv| self.resource.on(&kv.key));

            let secs = p.cpu_ticks.map(|v| v as f64 / ctx.ticks);
            let mut cpu_time = Vec::new();
            for (state, v) in ["user", "system", "wait"].iter().zip(secs) {
                cpu_time.push(f64_point(vec![kv_str("state", *state)], v, start, t));
            }
            let total: f64 = secs.iter().sum();
            let mut cpu_util = Vec::new();
            if let Some((st, prev, at)) = self.previous.get(&pid) {
                let wall = t.saturating_sub(*at) as f64 / 1e9;
                if *st == p.start_ticks && wall > 0.0 {
                    let u = ((total - prev) / wall / ncpu).max(0.0);
                    cpu_util.push(f64_point(vec![], u, 0, t));
                }
            }
            seen.insert(pid, (p.start_ticks, total, t));
            let rss = p.rss_pages * self.page;

            let mut disk_io = Vec::new();
            let mut disk_ops = Vec::new();
            match root.read(&format!("/proc/{pid}/io")) {
                Ok(io) => {
                    let kv = key_values(&io);
                    let g = |k: &str| kv.get(k).copied().unwrap_or(0) as i64;
                    for (dir, b, o) in [
                        ("read", "read_bytes", "syscr"),
                        ("write", "write_bytes", "syscw"),
                    ] {
                        disk_io.push(int_point(vec![kv_str("direction", dir)], g(b), start, t));
                        disk_ops.push(int_point(vec![kv_str("direction", dir)], g(o), start, t));
                    }
                }
                Err(e) => {
                    if !(all_muted || self.cfg.mute_process_io_error) {
                        errors.push(format!("pid {pid} ({name}): reading /proc/{pid}/io: {e}"));
                    }
                }
            }
            let mut fds = Vec::new();
            if self.toggles.on("process.open_file_descriptors") {
                if let Ok(d) = std::fs::read_dir(root.path(&format!("/proc/{pid}/fd"))) {
                    fds.push(int_point(vec![], d.count() as i64, 0, t));
                }
            }
            let mem_util = if mem_total > 0 {
                vec![f64_point(vec![], rss as f64 / mem_total as f64, 0, t)]
            } else {
                vec![]
            };
            let switches: Vec<_> = [
                ("involuntary", "nonvoluntary_ctxt_switches:"),
                ("voluntary", "voluntary_ctxt_switches:"),
            ]
            .iter()
            .filter_map(|(kind, key)| {
                let n = status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))?
                    .trim()
                    .parse::<i64>()
                    .ok()?;
                Some(int_point(vec![kv_str("type", *kind)], n, start, t))
            })
            .collect();
            let uptime = t.saturating_sub(start) as f64 / 1e9;
            let metrics = vec![
                sum("process.context_switches", "Number of times the process has been context switched.", "{count}", true, switches),
                gauge("process.uptime", "The time the process has been running.", "s", vec![f64_point(vec![], uptime, 0, t)]),
                sum("process.cpu.time", "Total CPU seconds broken down by different states.", "s", true, cpu_time),
                sum("process.memory.usage", "The amount of physical memory in use.", "By", false, vec![int_point(vec![], rss as i64, 0, t)]),
                sum("process.memory.virtual", "Virtual memory size.", "By", false, vec![int_point(vec![], p.vsize as i64, 0, t)]),
                sum("process.disk.io", "Disk bytes transferred.", "By", true, disk_io),
                gauge("process.cpu.utilization", "Percentage of total CPU time used by the process since last scrape, expressed as a value between 0 and 1.", "1", cpu_util),
                gauge("process.memory.utilization", "Percentage of total physical memory that is used by the process.", "1", mem_util),
                sum("process.threads", "Process threads count.", "{threads}", false, vec![int_point(vec![], p.threads, 0, t)]),
                sum("process.open_file_descriptors", "Number of file descriptors in use by the process.", "{count}", false, fds),
                sum("process.disk.operations", "Number of disk operations performed by the process.", "{operations}", true, disk_ops),
                sum("process.paging.faults", "Number of page faults the process has made.", "{faults}", true, vec![
                    int_point(vec![kv_str("type", "major")], p.majflt as i64, start, t),
                    int_point(vec![kv_str("type", "minor")], p.minflt as i64, start, t),
                ]),
            ];
            let metrics = keep(&self.toggles, metrics);
            if !metrics.is_empty() {
                out.resources.push((attrs, metrics));
            }
        }
        // Forget exited processes, so the map does not grow with every pid ever seen.
        self.previous = seen;
        if let Some(first) = errors.first() {
            tracing::warn!(
                "process scraper: {} errors reading processes, the first: {first} (mute_process_*_error silences them)",
                errors.len()
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use vigil_core::attrs::{get_str, value_to_string};

    fn attr(attrs: &[KeyValue], k: &str) -> String {
        vigil_core::attrs::get(attrs, k)
            .map(value_to_string)
            .unwrap_or_default()
    }

    #[test]
    fn one_resource_per_process_filtered_by_name() {
        let root = fixture();
        let ctx = ctx(&root);
        let mut s = ProcessScraper::new(
            &id(),
            &serde_json::json!({"include": {"names": ["vigil.*"], "match_type": "regexp"},
                "mute_process_exe_error": true,
                "metrics": {"process.threads": {"enabled": true}}}),
        )
        .unwrap();
        let out = s.scrape(&ctx).unwrap();
        assert_eq!(out.resources.len(), 1);
        let (attrs, metrics) = &out.resources[0];
        assert_eq!(attr(attrs, "process.pid"), "42");
        assert_eq!(attr(attrs, "process.parent_pid"), "1");
        assert_eq!(
            get_str(attrs, "process.executable.name"),
            Some("vigil agent")
        );
        assert_eq!(
            get_str(attrs, "process.executable.path"),
            Some("/usr/bin/vigil agent")
        );
        assert_eq!(
            get_str(attrs, "process.command"),
            Some("/usr/bin/vigil agent")
        );
        assert_eq!(
            get_str(attrs, "process.command_line"),
            Some("/usr/bin/vigil agent --config /etc/vigil/config.yaml")
        );
        assert_eq!(get_str(attrs, "process.owner"), Some("vigil"));
        let cpu = find(metrics, "process.cpu.time");
        assert_eq!(value(cpu, "state=user"), 12.34);
        assert_eq!(value(cpu, "state=system"), 5.67);
        assert_eq!(value(cpu, "state=wait"), 0.89);
        // Started 500s after boot.
        let Some(vigil_core::otlp::metrics::v1::metric::Data::Sum(sum)) = &cpu.data else {
            panic!()
        };
        assert_eq!(
            sum.data_points[0].start_time_unix_nano,
            1_700_000_500_000_000_000
        );
        assert_eq!(
            value(find(metrics, "process.memory.usage"), ""),
            2560.0 * page_size() as f64
        );
        assert_eq!(
            value(find(metrics, "process.memory.virtual"), ""),
            900_000_000.0
        );
        assert_eq!(
            value(find(metrics, "process.disk.io"), "direction=write"),
            81920.0
        );
        assert_eq!(value(find(metrics, "process.threads"), ""), 8.0);

        let mut s = ProcessScraper::new(
            &id(),
            &serde_json::json!({"exclude": {"names": ["vigil agent"], "match_type": "strict"}}),
        )
        .unwrap();
        let out = s.scrape(&ctx).unwrap();
        assert_eq!(out.resources.len(), 1);
        assert_eq!(
            get_str(&out.resources[0].0, "process.executable.name"),
            Some("systemd")
        );
        assert_eq!(
            value(find(&out.resources[0].1, "process.cpu.time"), "state=wait"),
            0.07
        );
    }

    #[test]
    fn resource_attributes_context_switches_and_uptime() {
        let root = fixture();
        let ctx = ctx(&root);
        let cfg = serde_json::json!({
            "include": {"names": ["vigil agent"], "match_type": "strict"},
            "mute_process_exe_error": true,
            "resource_attributes": {
                "process.cgroup": {"enabled": true},
                "process.command_line": {"enabled": false},
                "process.owner": null,
            },
            "metrics": {
                "process.context_switches": {"enabled": true},
                "process.uptime": {"enabled": true},
                "process.handles": {"enabled": true},
                "process.signals_pending": {"enabled": false},
            },
        });
        let out = ProcessScraper::new(&id(), &cfg)
            .unwrap()
            .scrape(&ctx)
            .unwrap();
        let (attrs, metrics) = &out.resources[0];
        assert_eq!(
            get_str(attrs, "process.cgroup"),
            Some("0::/system.slice/vigil.service")
        );
        assert_eq!(get_str(attrs, "process.command_line"), None);
        assert_eq!(get_str(attrs, "process.owner"), Some("vigil"));
        let cs = find(metrics, "process.context_switches");
        assert_eq!(value(cs, "type=voluntary"), 150.0);
        assert_eq!(value(cs, "type=involuntary"), 7.0);
        // Started 500 s after boot.
        let up = value(find(metrics, "process.uptime"), "");
        assert_eq!(up, (ctx.now - ctx.boot) as f64 / 1e9 - 500.0);
        assert!(metrics.iter().all(|m| m.name != "process.handles"));

        let bad = serde_json::json!({"metrics": {"process.signals_pending": {"enabled": true}}});
        let e = ProcessScraper::new(&id(), &bad).err().unwrap().to_string();
        assert!(
            e.contains("scrapers::process::metrics::process.signals_pending: not built"),
            "{e}"
        );
        let bad = serde_json::json!({"resource_attributes": {"process.cgroup": {
            "enabled": true, "metrics_include": [{"strict": "x"}]}}});
        let e = ProcessScraper::new(&id(), &bad).err().unwrap().to_string();
        assert!(
            e.contains(
                "scrapers::process::resource_attributes::process.cgroup::metrics_include: not built"
            ),
            "{e}"
        );
        let bad = serde_json::json!({"resource_attributes": {"process.nope": {"enabled": true}}});
        let e = ProcessScraper::new(&id(), &bad).err().unwrap().to_string();
        assert!(
            e.contains("resource_attributes::process.nope: unknown resource attribute"),
            "{e}"
        );
    }
}
