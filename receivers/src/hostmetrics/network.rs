//! `network` scraper: per-interface `system.network.{io,packets,errors,dropped}` from
//! `/proc/net/dev`, filtered by `include`/`exclude` `interfaces`, and
//! `system.network.connections{protocol,state}` from `/proc/net/tcp` and `/proc/net/tcp6`, and the
//! optional `system.network.conntrack.{count,max}` from `/proc/sys/net/netfilter`.

use super::config::{compile_filter, scraper, NetworkScraper as NetConfig, Toggles};
use super::filter::IncludeExclude;
use super::{int_point, keep, sum, Ctx, Scraped, Scraper};
use serde_json::Value;
use vigil_core::attrs::kv_str;
use vigil_core::{ComponentId, ComponentKind, ConfigError};

const METRICS: &[(&str, bool)] = &[
    ("system.network.io", true),
    ("system.network.packets", true),
    ("system.network.errors", true),
    ("system.network.dropped", true),
    ("system.network.connections", true),
    ("system.network.conntrack.count", false),
    ("system.network.conntrack.max", false),
];

/// TCP states by the kernel's number (`st` column, 1-based), with the names otelcol reports.
const TCP_STATES: [&str; 11] = [
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT_1",
    "FIN_WAIT_2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
];

/// One interface's counters: (receive, transmit) for bytes, packets, errors and drops.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct IfStat {
    pub name: String,
    pub bytes: (u64, u64),
    pub packets: (u64, u64),
    pub errors: (u64, u64),
    pub dropped: (u64, u64),
}

pub(crate) fn parse_net_dev(text: &str) -> Vec<IfStat> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            if f.len() < 16 {
                return None;
            }
            Some(IfStat {
                name: name.trim().to_string(),
                bytes: (f[0], f[8]),
                packets: (f[1], f[9]),
                errors: (f[2], f[10]),
                dropped: (f[3], f[11]),
            })
        })
        .collect()
}

/// Counts connections per TCP state in a `/proc/net/tcp{,6}` table into `counts`.
pub(crate) fn count_tcp(text: &str, counts: &mut [i64; 11]) {
    for l in text.lines().skip(1) {
        let Some(st) = l.split_whitespace().nth(3) else {
            continue;
        };
        if let Ok(n) = u8::from_str_radix(st, 16) {
            if (1..=11).contains(&n) {
                counts[n as usize - 1] += 1;
            }
        }
    }
}

pub struct NetworkScraper {
    toggles: Toggles,
    filter: IncludeExclude,
}

impl NetworkScraper {
    pub fn new(id: &ComponentId, section: &Value) -> Result<Self, ConfigError> {
        let cfg: NetConfig = scraper(id, "network", section)?;
        let toggles = Toggles::build_with(METRICS, &[], &cfg.metrics, |p, m| {
            ConfigError::component(
                ComponentKind::Receiver,
                id,
                format!("scrapers::network::{p}"),
                m,
            )
        })?;
        let filter = IncludeExclude {
            include: compile_filter(id, "scrapers::network::include", "interfaces", &cfg.include)?,
            exclude: compile_filter(id, "scrapers::network::exclude", "interfaces", &cfg.exclude)?,
        };
        Ok(NetworkScraper { toggles, filter })
    }
}

impl Scraper for NetworkScraper {
    fn name(&self) -> &'static str {
        "network"
    }

    fn scrape(&mut self, ctx: &Ctx) -> Result<Scraped, String> {
        let text = ctx
            .root
            .read("/proc/net/dev")
            .map_err(|e| format!("reading /proc/net/dev: {e}"))?;
        let (s, t) = (ctx.boot, ctx.now);
        let (mut io, mut packets, mut errors, mut dropped) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in parse_net_dev(&text) {
            if !self.filter.pass(&i.name) {
                continue;
            }
            for (out, (rx, tx)) in [
                (&mut io, i.bytes),
                (&mut packets, i.packets),
                (&mut errors, i.errors),
                (&mut dropped, i.dropped),
            ] {
                for (dir, v) in [("receive", rx), ("transmit", tx)] {
                    out.push(int_point(
                        vec![kv_str("device", i.name.as_str()), kv_str("direction", dir)],
                        v as i64,
                        s,
                        t,
                    ));
                }
            }
        }
        let mut conns = Vec::new();
        if self.toggles.on("system.network.connections") {
            let mut counts = [0i64; 11];
            let mut any = false;
            for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
                if let Ok(text) = ctx.root.read(f) {
                    count_tcp(&text, &mut counts);
                    any = true;
                }
            }
            if any {
                for (state, n) in TCP_STATES.iter().zip(counts) {
                    conns.push(int_point(
                        vec![kv_str("protocol", "tcp"), kv_str("state", *state)],
                        n,
                        0,
                        t,
                    ));
                }
            }
        }
        // The netfilter table's size, as gopsutil's FilterCounters reads it; without the
        // nf_conntrack module the files are absent and the metrics have no point.
        let conntrack = |name: &str, file: &str| {
            if !self.toggles.on(name) {
                return Vec::new();
            }
            ctx.root
                .read(&format!("/proc/sys/net/netfilter/{file}"))
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .map(|v| vec![int_point(vec![], v, 0, t)])
                .unwrap_or_default()
        };
        let metrics = vec![
            sum(
                "system.network.conntrack.count",
                "The count of entries in conntrack table.",
                "{entries}",
                false,
                conntrack("system.network.conntrack.count", "nf_conntrack_count"),
            ),
            sum(
                "system.network.conntrack.max",
                "The limit for entries in the conntrack table.",
                "{entries}",
                false,
                conntrack("system.network.conntrack.max", "nf_conntrack_max"),
            ),
            sum(
                "system.network.io",
                "The number of bytes transmitted and received.",
                "By",
                true,
                io,
            ),
            sum(
                "system.network.packets",
                "The number of packets transferred.",
                "{packets}",
                true,
                packets,
            ),
            sum(
                "system.network.errors",
                "The number of errors encountered.",
                "{errors}",
                true,
                errors,
            ),
            sum(
                "system.network.dropped",
                "The number of packets dropped.",
                "{packets}",
                true,
                dropped,
            ),
            sum(
                "system.network.connections",
                "The number of connections.",
                "{connections}",
                false,
                conns,
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
    fn interfaces_and_tcp_states() {
        let root = fixture();
        let ctx = ctx(&root);
        let out = NetworkScraper::new(
            &id(),
            &serde_json::json!({"exclude": {"interfaces": ["lo"], "match_type": "strict"}}),
        )
        .unwrap()
        .scrape(&ctx)
        .unwrap();
        let io = find(&out.metrics, "system.network.io");
        assert_eq!(value(io, "device=eth0,direction=receive"), 9876543.0);
        assert_eq!(value(io, "device=eth0,direction=transmit"), 5432100.0);
        assert!(points(io).iter().all(|(a, _)| !a.contains("device=lo")));
        assert_eq!(
            value(
                find(&out.metrics, "system.network.errors"),
                "device=eth0,direction=receive"
            ),
            3.0
        );
        assert_eq!(
            value(
                find(&out.metrics, "system.network.dropped"),
                "device=eth0,direction=transmit"
            ),
            2.0
        );
        let c = find(&out.metrics, "system.network.connections");
        assert_eq!(value(c, "protocol=tcp,state=LISTEN"), 2.0);
        assert_eq!(value(c, "protocol=tcp,state=ESTABLISHED"), 2.0);
        assert_eq!(value(c, "protocol=tcp,state=TIME_WAIT"), 1.0);
        assert_eq!(value(c, "protocol=tcp,state=CLOSING"), 0.0);
        assert!(out.metrics.iter().all(|m| !m.name.contains("conntrack")));
    }

    #[test]
    fn conntrack_when_enabled() {
        let root = fixture();
        let ctx = ctx(&root);
        let on = serde_json::json!({"metrics": {
            "system.network.conntrack.count": {"enabled": true},
            "system.network.conntrack.max": {"enabled": true},
        }});
        let out = NetworkScraper::new(&id(), &on)
            .unwrap()
            .scrape(&ctx)
            .unwrap();
        let c = find(&out.metrics, "system.network.conntrack.count");
        assert_eq!((value(c, ""), c.unit.as_str()), (123.0, "{entries}"));
        assert_eq!(
            value(find(&out.metrics, "system.network.conntrack.max"), ""),
            262144.0
        );
    }
}
