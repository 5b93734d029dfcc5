//! `redis`: a Redis (or Valkey) server's `INFO`, scraped as otelcol's receiver scrapes it. Every
//! `collection_interval` it sends `INFO` (`INFO all` when a per-command metric is on) over one
//! kept connection (reopened after an error, authenticated with `AUTH`), and turns the answer
//! into otelcol's metrics: clients, memory, commands, keyspace hits and misses, per-database keys,
//! replication offsets and CPU time, under a resource with `redis.version`. Cumulative sums start
//! at the server's start (now − `uptime_in_seconds`), as otelcol sets them.
//!
//! RESP is written here rather than taken from a client crate: the receiver sends two commands
//! (`AUTH`, `INFO`) and reads one simple line or one bulk string back, about sixty lines, while a
//! client crate would add its connection manager, pools and dozens of dependencies to the build.

use crate::hostmetrics::config::{MetricToggle, Toggles};
use crate::scrape::{self, gauge, sum, Builder, MetricDef, Schedule, Scrape, Scraped};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use vigil_core::attrs::kv_str;
use vigil_core::config::duration;
use vigil_core::{ComponentId, ComponentKind, ConfigError};

#[cfg(test)]
mod tests;

/// The instrumentation scope otelcol's receiver reports under.
pub const SCOPE: &str =
    "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/redisreceiver";

/// Bound on connecting (and the TLS handshake), and on one command's answer.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest reply read: `INFO all` of a server with many commands is tens of kilobytes.
const MAX_REPLY: usize = 4 * 1024 * 1024;

/// otelcol's metadata: every metric, its unit, type and default.
pub const METRICS: &[MetricDef] = &[
    sum(
        "redis.clients.blocked",
        "Number of clients pending on a blocking call",
        "{client}",
        false,
        true,
    ),
    sum(
        "redis.clients.connected",
        "Number of client connections (excluding connections from replicas)",
        "{client}",
        false,
        true,
    ),
    gauge(
        "redis.clients.max_input_buffer",
        "Biggest input buffer among current client connections",
        "By",
        true,
    ),
    gauge(
        "redis.clients.max_output_buffer",
        "Longest output list among current client connections",
        "By",
        true,
    ),
    gauge(
        "redis.commands",
        "Number of commands processed per second",
        "{ops}/s",
        true,
    ),
    sum(
        "redis.commands.processed",
        "Total number of commands processed by the server",
        "{command}",
        true,
        true,
    ),
    sum(
        "redis.connections.received",
        "Total number of connections accepted by the server",
        "{connection}",
        true,
        true,
    ),
    sum(
        "redis.connections.rejected",
        "Number of connections rejected because of maxclients limit",
        "{connection}",
        true,
        true,
    ),
    sum(
        "redis.cpu.time",
        "System CPU consumed by the Redis server in seconds since server start",
        "s",
        true,
        true,
    ),
    gauge(
        "redis.db.avg_ttl",
        "Average keyspace keys TTL in seconds",
        "s",
        true,
    ),
    gauge(
        "redis.db.expires",
        "Number of keyspace keys with an expiration",
        "{key}",
        true,
    ),
    gauge("redis.db.keys", "Number of keyspace keys", "{key}", true),
    sum(
        "redis.keys.evicted",
        "Number of evicted keys due to maxmemory limit",
        "{key}",
        true,
        true,
    ),
    sum(
        "redis.keys.expired",
        "Total number of key expiration events",
        "{event}",
        true,
        true,
    ),
    sum(
        "redis.keyspace.hits",
        "Number of successful lookup of keys in the main dictionary",
        "{hit}",
        true,
        true,
    ),
    sum(
        "redis.keyspace.misses",
        "Number of failed lookup of keys in the main dictionary",
        "{miss}",
        true,
        true,
    ),
    gauge(
        "redis.latest_fork",
        "Duration of the latest fork operation in seconds",
        "s",
        true,
    ),
    gauge(
        "redis.memory.fragmentation_ratio",
        "Ratio between used_memory_rss and used_memory",
        "1",
        true,
    ),
    gauge(
        "redis.memory.lua",
        "Number of bytes used by the Lua engine",
        "By",
        true,
    ),
    gauge(
        "redis.memory.peak",
        "Peak memory consumed by Redis (in bytes)",
        "By",
        true,
    ),
    gauge(
        "redis.memory.rss",
        "Number of bytes that Redis allocated as seen by the operating system",
        "By",
        true,
    ),
    gauge(
        "redis.memory.used",
        "Total number of bytes allocated by Redis using its allocator",
        "By",
        true,
    ),
    sum(
        "redis.net.input",
        "The total number of bytes read from the network",
        "By",
        true,
        true,
    ),
    sum(
        "redis.net.output",
        "The total number of bytes written to the network",
        "By",
        true,
        true,
    ),
    sum(
        "redis.rdb.changes_since_last_save",
        "Number of changes since the last dump",
        "{change}",
        false,
        true,
    ),
    gauge(
        "redis.replication.backlog_first_byte_offset",
        "The master offset of the replication backlog buffer",
        "By",
        true,
    ),
    gauge(
        "redis.replication.offset",
        "The server's current replication offset",
        "By",
        true,
    ),
    sum(
        "redis.slaves.connected",
        "Number of connected replicas",
        "{replica}",
        false,
        true,
    ),
    sum(
        "redis.uptime",
        "Number of seconds since Redis server start",
        "s",
        true,
        true,
    ),
    sum(
        "redis.cmd.calls",
        "Total number of calls for a command",
        "{call}",
        true,
        false,
    ),
    gauge("redis.cmd.latency", "Command execution latency", "s", false),
    sum(
        "redis.cmd.sec",
        "Total time for all executions of this command",
        "s",
        true,
        false,
    ),
    gauge(
        "redis.maxmemory",
        "The value of the maxmemory configuration directive",
        "By",
        false,
    ),
    gauge(
        "redis.replication.replica_offset",
        "Offset for redis replica",
        "By",
        false,
    ),
    sum("redis.role", "Redis node's role", "{role}", false, false),
];

/// otelcol's resource attributes and their defaults.
pub const RESOURCE_ATTRIBUTES: &[(&str, bool)] = &[
    ("redis.version", true),
    ("server.address", false),
    ("server.port", false),
];

/// INFO fields read as integers: (field, metric).
const INT_FIELDS: &[(&str, &str)] = &[
    ("blocked_clients", "redis.clients.blocked"),
    ("connected_clients", "redis.clients.connected"),
    (
        "client_recent_max_input_buffer",
        "redis.clients.max_input_buffer",
    ),
    (
        "client_recent_max_output_buffer",
        "redis.clients.max_output_buffer",
    ),
    ("instantaneous_ops_per_sec", "redis.commands"),
    ("total_commands_processed", "redis.commands.processed"),
    ("total_connections_received", "redis.connections.received"),
    ("rejected_connections", "redis.connections.rejected"),
    ("evicted_keys", "redis.keys.evicted"),
    ("expired_keys", "redis.keys.expired"),
    ("keyspace_hits", "redis.keyspace.hits"),
    ("keyspace_misses", "redis.keyspace.misses"),
    ("used_memory_lua", "redis.memory.lua"),
    ("used_memory_peak", "redis.memory.peak"),
    ("used_memory_rss", "redis.memory.rss"),
    ("used_memory", "redis.memory.used"),
    ("total_net_input_bytes", "redis.net.input"),
    ("total_net_output_bytes", "redis.net.output"),
    (
        "rdb_changes_since_last_save",
        "redis.rdb.changes_since_last_save",
    ),
    (
        "repl_backlog_first_byte_offset",
        "redis.replication.backlog_first_byte_offset",
    ),
    ("master_repl_offset", "redis.replication.offset"),
    ("connected_slaves", "redis.slaves.connected"),
    ("uptime_in_seconds", "redis.uptime"),
    ("maxmemory", "redis.maxmemory"),
    ("slave_repl_offset", "redis.replication.replica_offset"),
];

/// CPU fields and their `state`.
const CPU_FIELDS: &[(&str, &str)] = &[
    ("used_cpu_sys", "sys"),
    ("used_cpu_sys_children", "sys_children"),
    ("used_cpu_sys_main_thread", "sys_main_thread"),
    ("used_cpu_user", "user"),
    ("used_cpu_user_children", "user_children"),
    ("used_cpu_user_main_thread", "user_main_thread"),
];

/// `tls` as otelcol's redis receiver defaults it: plaintext (`insecure: true`) unless set false.
pub type RedisTls = scrape::ScraperTls<RedisTlsDefaults>;

#[derive(Debug, Clone)]
pub struct RedisTlsDefaults;

impl scrape::TlsDefaults for RedisTlsDefaults {
    fn insecure() -> bool {
        true
    }
    fn insecure_skip_verify() -> bool {
        false
    }
}

/// `receivers::redis` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Time between two scrapes (otelcol: 10s).
    #[serde(default = "default_interval", with = "duration")]
    pub collection_interval: Duration,
    /// Wait before the first scrape (scraperhelper: 1s).
    #[serde(default = "default_initial_delay", with = "duration")]
    pub initial_delay: Duration,
    /// scraperhelper's bound on one scrape; 0 (the default) means none.
    #[serde(default, with = "duration")]
    pub timeout: Duration,
    /// `host:port` (with `transport: unix`, the socket's path). Required.
    #[serde(default)]
    pub endpoint: String,
    /// `tcp` (default) or `unix`.
    #[serde(default = "default_transport")]
    pub transport: String,
    /// An ACL user (Redis 6+); with it, `AUTH <username> <password>`.
    #[serde(default)]
    pub username: String,
    /// `requirepass` or the user's password.
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub tls: RedisTls,
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricToggle>,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, MetricToggle>,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_initial_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_transport() -> String {
    "tcp".into()
}

fn err(id: &ComponentId, path: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Receiver, id, path.into(), msg)
}

struct Checked {
    metrics: Toggles,
    resource_attrs: Toggles,
    /// Host and port of a TCP endpoint.
    host_port: Option<(String, u16)>,
}

fn check(id: &ComponentId, c: &RedisConfig) -> Result<Checked, ConfigError> {
    vigil_core::config::check_interval(c.collection_interval)
        .map_err(|m| err(id, "collection_interval", m))?;
    if c.endpoint.is_empty() {
        return Err(err(
            id,
            "endpoint",
            "must be specified, such as \"localhost:6379\"",
        ));
    }
    let host_port = match c.transport.as_str() {
        "tcp" | "tcp4" | "tcp6" => {
            let hp = c.endpoint.rsplit_once(':').and_then(|(h, p)| {
                Some((
                    h.trim_start_matches('[').trim_end_matches(']').to_string(),
                    p.parse::<u16>().ok()?,
                ))
            });
            match hp {
                Some(hp) => Some(hp),
                None => {
                    return Err(err(
                        id,
                        "endpoint",
                        format!("{:?} must be in the form <host>:<port>", c.endpoint),
                    ))
                }
            }
        }
        "unix" => None,
        other => {
            return Err(err(
                id,
                "transport",
                format!("{other:?} is not supported: expected \"tcp\" or \"unix\""),
            ))
        }
    };
    if !c.tls.insecure && host_port.is_none() {
        return Err(err(
            id,
            "tls::insecure",
            "TLS over a unix socket is not supported",
        ));
    }
    let metrics = Toggles::build(&scrape::known(METRICS), &c.metrics, |p, m| err(id, p, m))?;
    let resource_attrs = scrape::toggles_under(
        "resource_attributes",
        "resource attribute",
        RESOURCE_ATTRIBUTES,
        &c.resource_attributes,
        |p, m| err(id, p, m),
    )?;
    Ok(Checked {
        metrics,
        resource_attrs,
        host_port,
    })
}

/// The `redis` receiver factory.
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    scrape::factory(scrape::Spec::<RedisConfig, RedisScraper> {
        type_name: "redis",
        stability: scrape::BETA,
        check: |id, cfg| check(id, cfg).map(|_| ()),
        build,
        schedule: |cfg| Schedule {
            collection_interval: cfg.collection_interval,
            initial_delay: cfg.initial_delay,
            timeout: cfg.timeout,
        },
        receiver: scrape::run,
    })
}

fn build(id: &ComponentId, cfg: &RedisConfig) -> Result<RedisScraper, ConfigError> {
    let checked = check(id, cfg)?;
    let tls = if let Some(t) = cfg.tls.client() {
        let config = vigil_core::net::client_tls::client_config(&t, &[], |k, m| err(id, k, m))?;
        let host = match (&cfg.tls.server_name_override, &checked.host_port) {
            (Some(n), _) => n.clone(),
            (None, Some((h, _))) => h.clone(),
            (None, None) => String::new(),
        };
        let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| {
            err(
                id,
                "tls::server_name_override",
                format!("{host:?} is not a DNS name or IP address: {e}"),
            )
        })?;
        Some((tokio_rustls::TlsConnector::from(config), name))
    } else {
        None
    };
    let all = ["redis.cmd.calls", "redis.cmd.sec", "redis.cmd.latency"]
        .iter()
        .any(|m| checked.metrics.on(m));
    Ok(RedisScraper {
        endpoint: cfg.endpoint.clone(),
        unix: checked.host_port.is_none(),
        host_port: checked.host_port,
        username: cfg.username.clone(),
        password: cfg.password.clone(),
        tls,
        command: if all { "all" } else { "default" },
        metrics: checked.metrics,
        resource_attrs: checked.resource_attrs,
        conn: tokio::sync::Mutex::new(None),
    })
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

type Conn = BufReader<Box<dyn Stream>>;

struct RedisScraper {
    endpoint: String,
    unix: bool,
    host_port: Option<(String, u16)>,
    username: String,
    password: String,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    /// `INFO`'s section argument.
    command: &'static str,
    metrics: Toggles,
    resource_attrs: Toggles,
    /// The kept connection; taken out while in use, put back after a good answer.
    conn: tokio::sync::Mutex<Option<Conn>>,
}

/// Writes one command as a RESP array of bulk strings.
async fn send(c: &mut Conn, args: &[&str]) -> std::io::Result<()> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    c.get_mut().write_all(&out).await?;
    c.get_mut().flush().await
}

/// Reads one reply: a simple string, an error (as `Err`), or a bulk string.
async fn reply(c: &mut Conn) -> Result<String, String> {
    let mut line = Vec::new();
    (&mut *c)
        .take(64 * 1024)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| format!("reading the reply: {e}"))?;
    if !line.ends_with(b"\r\n") {
        return Err("the connection closed mid-reply".into());
    }
    let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    match line[0] {
        b'+' => Ok(text),
        b'-' => Err(text),
        b'$' => {
            let n: i64 = text
                .parse()
                .map_err(|_| format!("bad bulk length {text:?}"))?;
            if n < 0 {
                return Ok(String::new());
            }
            let n = n as usize;
            if n > MAX_REPLY {
                return Err(format!(
                    "a {n}-byte reply is more than the {MAX_REPLY} read"
                ));
            }
            let mut buf = vec![0u8; n + 2];
            c.read_exact(&mut buf)
                .await
                .map_err(|e| format!("reading the reply: {e}"))?;
            buf.truncate(n);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        other => Err(format!("unexpected reply type {:?}", other as char)),
    }
}

impl RedisScraper {
    async fn connect(&self) -> Result<Conn, String> {
        let stream: Box<dyn Stream> = match (&self.host_port, &self.tls) {
            (None, _) => Box::new(
                tokio::net::UnixStream::connect(&self.endpoint)
                    .await
                    .map_err(|e| format!("cannot connect to {}: {e}", self.endpoint))?,
            ),
            (Some((h, p)), tls) => {
                let tcp = tokio::net::TcpStream::connect((h.as_str(), *p))
                    .await
                    .map_err(|e| format!("cannot connect to {}: {e}", self.endpoint))?;
                let _ = tcp.set_nodelay(true);
                match tls {
                    None => Box::new(tcp),
                    Some((connector, name)) => Box::new(
                        connector
                            .connect(name.clone(), tcp)
                            .await
                            .map_err(|e| format!("TLS with {}: {e}", self.endpoint))?,
                    ),
                }
            }
        };
        let mut c = BufReader::new(stream);
        if !self.password.is_empty() {
            let mut args = vec!["AUTH"];
            if !self.username.is_empty() {
                args.push(&self.username);
            }
            args.push(&self.password);
            send(&mut c, &args)
                .await
                .map_err(|e| format!("sending AUTH: {e}"))?;
            reply(&mut c).await.map_err(|e| format!("AUTH: {e}"))?;
        }
        Ok(c)
    }

    async fn info(&self) -> Result<String, String> {
        let mut slot = self.conn.lock().await;
        let mut c = match slot.take() {
            Some(c) => c,
            None => tokio::time::timeout(IO_TIMEOUT, self.connect())
                .await
                .map_err(|_| {
                    format!(
                        "connecting to {} took more than {IO_TIMEOUT:?}",
                        self.endpoint
                    )
                })??,
        };
        let answer = tokio::time::timeout(IO_TIMEOUT, async {
            send(&mut c, &["INFO", self.command])
                .await
                .map_err(|e| format!("sending INFO: {e}"))?;
            reply(&mut c).await.map_err(|e| format!("INFO: {e}"))
        })
        .await
        .map_err(|_| format!("INFO took more than {IO_TIMEOUT:?}"))??;
        *slot = Some(c);
        Ok(answer)
    }
}

/// `INFO`'s `key:value` lines; section headers and blank lines are skipped.
fn parse_info(text: &str) -> BTreeMap<&str, &str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim_end_matches('\r').split_once(':'))
        .collect()
}

/// `keys=1,expires=0,avg_ttl=0` as pairs.
fn fields(v: &str) -> impl Iterator<Item = (&str, &str)> {
    v.split(',').filter_map(|kv| kv.split_once('='))
}

#[async_trait]
impl Scrape for RedisScraper {
    async fn scrape(&self) -> Scraped {
        let text = match self.info().await {
            Ok(t) => t,
            Err(e) => {
                return Scraped {
                    metrics: Vec::new(),
                    errors: vec![e],
                }
            }
        };
        let info = parse_info(&text);
        let now = SystemTime::now();
        let uptime: u64 = info
            .get("uptime_in_seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let start = scrape::unix_nanos(now - Duration::from_secs(uptime));
        let mut b = Builder::new(METRICS, &self.metrics, &self.resource_attrs, SCOPE, start);
        let mut errors = Vec::new();
        for (field, metric) in INT_FIELDS {
            if let Some(v) = info.get(field) {
                match v.parse::<i64>() {
                    Ok(n) => b.int(metric, n, vec![]),
                    Err(_) => errors.push(format!("INFO {field}: {v:?} is not an integer")),
                }
            }
        }
        for (field, state) in CPU_FIELDS {
            if let Some(v) = info.get(field).and_then(|v| v.parse::<f64>().ok()) {
                b.double("redis.cpu.time", v, vec![kv_str("state", *state)]);
            }
        }
        if let Some(v) = info
            .get("mem_fragmentation_ratio")
            .and_then(|v| v.parse::<f64>().ok())
        {
            b.double("redis.memory.fragmentation_ratio", v, vec![]);
        }
        if let Some(v) = info
            .get("latest_fork_usec")
            .and_then(|v| v.parse::<f64>().ok())
        {
            b.double("redis.latest_fork", v / 1e6, vec![]);
        }
        if let Some(role) = info.get("role") {
            let r = if *role == "master" {
                "primary"
            } else {
                "replica"
            };
            b.int("redis.role", 1, vec![kv_str("role", r)]);
        }
        for (key, v) in &info {
            if let Some(db) = key.strip_prefix("db").filter(|d| d.parse::<u32>().is_ok()) {
                for (k, n) in fields(v) {
                    let db = || vec![kv_str("db", db)];
                    match k {
                        "keys" => b.int("redis.db.keys", n.parse().unwrap_or(0), db()),
                        "expires" => b.int("redis.db.expires", n.parse().unwrap_or(0), db()),
                        "avg_ttl" => b.double(
                            "redis.db.avg_ttl",
                            n.parse::<f64>().unwrap_or(0.0) / 1e3,
                            db(),
                        ),
                        _ => {}
                    }
                }
            } else if let Some(cmd) = key.strip_prefix("cmdstat_") {
                for (k, n) in fields(v) {
                    let cmd = || vec![kv_str("cmd", cmd)];
                    match k {
                        "calls" => b.int("redis.cmd.calls", n.parse().unwrap_or(0), cmd()),
                        "usec" => b.double(
                            "redis.cmd.sec",
                            n.parse::<f64>().unwrap_or(0.0) / 1e6,
                            cmd(),
                        ),
                        _ => {}
                    }
                }
            } else if let Some(cmd) = key.strip_prefix("latency_percentiles_usec_") {
                for (k, n) in fields(v) {
                    if let ("p50" | "p99" | "p99.9", Ok(us)) = (k, n.parse::<f64>()) {
                        b.double(
                            "redis.cmd.latency",
                            us / 1e6,
                            vec![kv_str("cmd", cmd), kv_str("percentile", k)],
                        );
                    }
                }
            }
        }
        let mut res = vec![kv_str(
            "redis.version",
            info.get("redis_version").copied().unwrap_or("unknown"),
        )];
        if let Some((h, p)) = &self.host_port {
            res.push(kv_str("server.address", h.as_str()));
            res.push(kv_str("server.port", p.to_string()));
        } else if self.unix {
            res.push(kv_str("server.address", self.endpoint.as_str()));
        }
        Scraped {
            metrics: b.finish(res),
            errors,
        }
    }
}
