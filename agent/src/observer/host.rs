//! `host_observer` (otelcol's `hostobserver`): this host's listening ports as `hostport`
//! endpoints, every `refresh_interval` (default 10s). Sockets come from `/proc/net/{tcp,tcp6,udp,
//! udp6}` (TCP in LISTEN, UDP not connected to a peer) and their owning process from a scan of
//! `/proc/<pid>/fd` for the socket's inode, which gives `process_name` (`/proc/<pid>/comm`) and
//! `command` (`/proc/<pid>/cmdline`). A socket whose owner cannot be read (another user's process
//! without the privilege) is still reported, with an empty process name, as otelcol does.
//!
//! The parsing is written here rather than taken from a crate: it is four fixed-format text files
//! and a directory walk, and the crates that do it (procfs, netstat2) pull in far more than this
//! needs. Bounded: at most [`MAX_ENDPOINTS`] endpoints per scan; the rest are counted in
//! `vigil_host_observer_dropped_endpoints{extension}`.

use super::{Endpoint, Feed};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use vigil_core::{Component, ComponentId, ConfigError, Extension, Host, Tasks};

/// Endpoints kept from one scan; a host with more listening sockets than this is unusual enough
/// that the rest are dropped and counted rather than grown into.
pub const MAX_ENDPOINTS: usize = 4096;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How often the host's sockets are read again.
    #[serde(default = "default_refresh", with = "vigil_core::config::duration")]
    pub refresh_interval: Duration,
}

fn default_refresh() -> Duration {
    Duration::from_secs(10)
}

struct Factory;

pub fn factory() -> Arc<dyn vigil_core::factory::DynExtensionFactory> {
    vigil_core::factory::extension(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = Config;

    fn type_name(&self) -> &'static str {
        "host_observer"
    }

    fn validate(&self, _id: &ComponentId, cfg: &Config) -> Result<(), ConfigError> {
        if cfg.refresh_interval.is_zero() {
            return Err(ConfigError::at(
                "refresh_interval",
                "must be greater than zero",
            ));
        }
        Ok(())
    }
}

impl vigil_core::factory::ExtensionFactory for Factory {
    fn stability(&self) -> vigil_core::Stability {
        vigil_core::Stability::Beta
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: Config,
    ) -> Result<Arc<dyn Extension>, ConfigError> {
        Ok(Arc::new(HostObserver {
            id: set.id,
            cfg,
            feed: Feed::default(),
            tasks: set.tasks,
        }))
    }
}

pub struct HostObserver {
    id: ComponentId,
    cfg: Config,
    feed: Feed,
    tasks: Tasks,
}

/// One scan, published to `feed`.
async fn refresh(feed: Feed, obs: String) {
    let dropped =
        metrics::counter!("vigil_host_observer_dropped_endpoints", "extension" => obs.clone());
    match tokio::task::spawn_blocking(move || scan(Path::new("/proc"), &obs)).await {
        Ok((set, lost)) => {
            dropped.increment(lost as u64);
            feed.publish(set);
        }
        Err(e) => tracing::warn!(error = %e, "reading the host's sockets failed"),
    }
}

#[async_trait]
impl Component for HostObserver {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let (feed, obs) = (self.feed.clone(), self.id.to_string());
        // The first scan right away, so receivers start without waiting a whole interval.
        self.tasks.spawn(refresh(feed.clone(), obs.clone()));
        self.tasks.spawn_ticker(self.cfg.refresh_interval, move || {
            refresh(feed.clone(), obs.clone())
        });
        Ok(())
    }

    fn tasks(&self) -> Option<&Tasks> {
        Some(&self.tasks)
    }
}

impl Extension for HostObserver {
    fn observer(&self) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        Some(Arc::new(self.feed.clone()))
    }
}

/// One socket from a `/proc/net` table.
#[derive(Debug, Clone, PartialEq)]
struct Socket {
    ip: IpAddr,
    port: u16,
    inode: u64,
}

/// The kernel writes each 32-bit word of an address in host byte order, as hex.
fn parse_addr(hex: &str) -> Option<(IpAddr, u16)> {
    let (ip, port) = hex.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some((ip, port))
}

/// The listening sockets of one `/proc/net/{tcp,udp}[6]` table: TCP in LISTEN (`0A`), UDP with no
/// remote peer.
fn parse_table(text: &str, tcp: bool) -> Vec<Socket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, state, inode) = (f.get(1)?, f.get(2)?, f.get(3)?, f.get(9)?);
            let listening = if tcp {
                *state == "0A"
            } else {
                parse_addr(remote)?.1 == 0
            };
            if !listening {
                return None;
            }
            let (ip, port) = parse_addr(local)?;
            Some(Socket {
                ip,
                port,
                inode: inode.parse().ok()?,
            })
        })
        .collect()
}

/// Socket inode to owning pid, from `/proc/<pid>/fd/*` links `socket:[<inode>]`.
fn socket_owners(proc: &Path) -> HashMap<u64, u32> {
    let mut owners = HashMap::new();
    let Ok(dir) = std::fs::read_dir(proc) else {
        return owners;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let link = link.to_string_lossy();
            if let Some(inode) = link
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse().ok())
            {
                owners.entry(inode).or_insert(pid);
            }
        }
    }
    owners
}

/// The `hostport` endpoints under `proc` (normally `/proc`), and how many were dropped over
/// [`MAX_ENDPOINTS`].
fn scan(proc: &Path, obs: &str) -> (BTreeMap<String, Endpoint>, usize) {
    let mut sockets = Vec::new();
    for (file, tcp) in [
        ("tcp", true),
        ("tcp6", true),
        ("udp", false),
        ("udp6", false),
    ] {
        if let Ok(text) = std::fs::read_to_string(proc.join("net").join(file)) {
            let transport = if tcp { "TCP" } else { "UDP" };
            sockets.extend(parse_table(&text, tcp).into_iter().map(|s| (s, transport)));
        }
    }
    let owners = socket_owners(proc);
    let mut procs: HashMap<u32, (String, String)> = HashMap::new();
    let mut out = BTreeMap::new();
    let mut dropped = 0;
    for (s, transport) in sockets {
        let pid = owners.get(&s.inode).copied();
        let (name, command) = match pid {
            Some(pid) => procs
                .entry(pid)
                .or_insert_with(|| process_info(proc, pid))
                .clone(),
            None => Default::default(),
        };
        // A wildcard listener is reached over loopback, as otelcol's target for it.
        let ip = match s.ip {
            IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let target = match ip {
            IpAddr::V4(v) => format!("{v}:{}", s.port),
            IpAddr::V6(v) => format!("[{v}]:{}", s.port),
        };
        let id = format!(
            "({obs}){}-{}-{transport}-{}",
            s.ip,
            s.port,
            pid.unwrap_or(0)
        );
        if out.contains_key(&id) {
            continue;
        }
        if out.len() >= MAX_ENDPOINTS {
            dropped += 1;
            continue;
        }
        let mut d = Map::new();
        d.insert("process_name".into(), json!(name));
        d.insert("command".into(), json!(command));
        d.insert("port".into(), json!(s.port));
        d.insert("transport".into(), json!(transport));
        d.insert("is_ipv6".into(), json!(s.ip.is_ipv6()));
        out.insert(
            id.clone(),
            Endpoint {
                id,
                target,
                kind: "hostport",
                details: d,
            },
        );
    }
    (out, dropped)
}

fn process_info(proc: &Path, pid: u32) -> (String, String) {
    let dir = proc.join(pid.to_string());
    let name = std::fs::read_to_string(dir.join("comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default();
    let command = std::fs::read(dir.join("cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    (name, command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_lines_parse_as_the_kernel_writes_them() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   116        0 21486 1 0 100 0 0 10 0\n\
            1: 0100007F:0CEA 0200007F:D431 01 00000000:00000000 00:00000000 00000000   116        0 21487 1 0 100 0 0 10 0\n";
        let s = parse_table(tcp, true);
        assert_eq!(
            s,
            [Socket {
                ip: "127.0.0.1".parse().unwrap(),
                port: 3306,
                inode: 21486
            }]
        );
        let tcp6 = "header\n 0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 777 1\n";
        let s = parse_table(tcp6, true);
        assert_eq!(s[0].ip, "::1".parse::<IpAddr>().unwrap());
        assert_eq!((s[0].port, s[0].inode), (8080, 777));
    }

    /// A real socket opened by the test is found with this process as its owner.
    #[test]
    fn a_listening_socket_of_this_process_is_an_endpoint() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (tp, up) = (
            tcp.local_addr().unwrap().port(),
            udp.local_addr().unwrap().port(),
        );
        let (set, dropped) = scan(Path::new("/proc"), "host_observer");
        assert_eq!(dropped, 0);
        let me = std::process::id();
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        let find = |port: u16, transport: &str| {
            set.values()
                .find(|e| e.details["port"] == port && e.details["transport"] == transport)
                .cloned()
                .unwrap_or_else(|| panic!("no {transport} endpoint for port {port}: {set:?}"))
        };
        let t = find(tp, "TCP");
        assert_eq!(t.kind, "hostport");
        assert_eq!(t.target, format!("127.0.0.1:{tp}"));
        assert_eq!(t.id, format!("(host_observer)127.0.0.1-{tp}-TCP-{me}"));
        let env = t.env();
        assert_eq!(env["process_name"], comm.trim_end());
        assert_eq!(env["is_ipv6"], false);
        assert!(env["command"].as_str().unwrap().contains("vigil"), "{env}");
        assert_eq!(find(up, "UDP").details["process_name"], comm.trim_end());
        // A closed socket is gone from the next scan.
        drop(tcp);
        let (set, _) = scan(Path::new("/proc"), "host_observer");
        assert!(!set
            .values()
            .any(|e| e.details["port"] == tp && e.details["transport"] == "TCP"));
    }
}
