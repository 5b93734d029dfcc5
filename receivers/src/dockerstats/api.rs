//! The three Docker Engine API calls the receiver makes, and the parts of their JSON answers it
//! reads (field names as the Engine API documents them). Each call is one HTTP/1.1 GET on a new
//! connection to the socket or TCP address, bounded by `timeout` and by [`MAX_BODY`].

use hyper::body::Body as _;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The largest answer read; a stats answer is a few KiB, a list of 1000 containers a few MiB.
const MAX_BODY: usize = 16 << 20;

/// Where the daemon listens.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Unix(std::path::PathBuf),
    Tcp(String),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

impl Endpoint {
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(format!("{s:?} names no socket path"));
            }
            return Ok(Endpoint::Unix(path.into()));
        }
        for scheme in ["tcp://", "http://"] {
            if let Some(addr) = s.strip_prefix(scheme) {
                let addr = addr.trim_end_matches('/');
                let ok = addr
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                if !ok {
                    return Err(format!("{s:?} must name host:port"));
                }
                return Ok(Endpoint::Tcp(addr.to_string()));
            }
        }
        Err(format!(
            "{s:?} is not a Docker endpoint: expected unix:///path/to/docker.sock or tcp://host:port \
             (https is not supported)"
        ))
    }
}

pub struct Client {
    pub endpoint: Endpoint,
    /// `1.25`: the path prefix `/v1.25`.
    pub version: String,
    pub timeout: Duration,
}

impl Client {
    /// The running containers (`GET /containers/json`).
    pub async fn containers(&self) -> Result<Vec<Listed>, String> {
        self.get_json("/containers/json").await
    }

    /// One container's configuration and state (`GET /containers/{id}/json`).
    pub async fn inspect(&self, id: &str) -> Result<Container, String> {
        self.get_json(&format!("/containers/{id}/json")).await
    }

    /// One reading of a container's stats, with the previous CPU reading (`stream=false`).
    pub async fn stats(&self, id: &str) -> Result<Stats, String> {
        self.get_json(&format!("/containers/{id}/stats?stream=false"))
            .await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let path = format!("/v{}{path}", self.version);
        let body = if self.timeout.is_zero() {
            self.get(&path).await
        } else {
            tokio::time::timeout(self.timeout, self.get(&path))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timeout)))
        }
        .map_err(|e| format!("GET {path}: {e}"))?;
        serde_json::from_slice(&body).map_err(|e| format!("GET {path}: unexpected answer: {e}"))
    }

    async fn get(&self, path: &str) -> Result<Vec<u8>, String> {
        let io = match &self.endpoint {
            Endpoint::Unix(p) => Io::Unix(
                tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(|e| format!("cannot connect to {}: {e}", p.display()))?,
            ),
            Endpoint::Tcp(a) => Io::Tcp(
                tokio::net::TcpStream::connect(a)
                    .await
                    .map_err(|e| format!("cannot connect to {a}: {e}"))?,
            ),
        };
        let (mut send, conn) = match io {
            Io::Unix(s) => {
                let (send, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
                        .await
                        .map_err(|e| e.to_string())?;
                (send, tokio::spawn(conn))
            }
            Io::Tcp(s) => {
                let (send, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
                        .await
                        .map_err(|e| e.to_string())?;
                (send, tokio::spawn(conn))
            }
        };
        let host = match &self.endpoint {
            Endpoint::Unix(_) => "docker".to_string(),
            Endpoint::Tcp(a) => a.clone(),
        };
        let req = http::Request::get(path)
            .header(http::header::HOST, host)
            .header(
                http::header::USER_AGENT,
                concat!("vigil/", env!("CARGO_PKG_VERSION")),
            )
            .body(String::new())
            .map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string());
        let result = async {
            let resp = resp?;
            let status = resp.status();
            let mut body = resp.into_body();
            let mut out = Vec::new();
            while let Some(frame) =
                std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
            {
                let frame = frame.map_err(|e| e.to_string())?;
                if let Ok(data) = frame.into_data() {
                    if out.len() + data.len() > MAX_BODY {
                        return Err(format!("the answer is larger than {MAX_BODY} bytes"));
                    }
                    out.extend_from_slice(&data);
                }
            }
            if !status.is_success() {
                let text = String::from_utf8_lossy(&out);
                return Err(format!(
                    "status {status}: {}",
                    text.trim().chars().take(200).collect::<String>()
                ));
            }
            Ok(out)
        }
        .await;
        conn.abort();
        result
    }
}

enum Io {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

/// An entry of `/containers/json`.
#[derive(Debug, Deserialize)]
pub struct Listed {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Image", default)]
    pub image: String,
}

/// `/containers/{id}/json`, the parts the receiver reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Container {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
    /// The image's id (`sha256:…`).
    #[serde(rename = "Image")]
    pub image: String,
    #[serde(rename = "RestartCount")]
    pub restart_count: u64,
    #[serde(rename = "State")]
    pub state: State,
    #[serde(rename = "Config")]
    pub config: Config,
    #[serde(rename = "HostConfig")]
    pub host_config: HostConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct State {
    #[serde(rename = "StartedAt")]
    pub started_at: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    #[serde(rename = "Hostname")]
    pub hostname: String,
    /// The image as the container was created from it (`nginx:1.27`).
    #[serde(rename = "Image")]
    pub image: String,
    #[serde(rename = "Env", deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    #[serde(rename = "Cmd", deserialize_with = "null_as_default")]
    pub cmd: Vec<String>,
    #[serde(rename = "Labels", deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HostConfig {
    #[serde(rename = "NanoCpus")]
    pub nano_cpus: i64,
    #[serde(rename = "CpusetCpus")]
    pub cpuset_cpus: String,
    #[serde(rename = "CpuQuota")]
    pub cpu_quota: i64,
    #[serde(rename = "CpuPeriod")]
    pub cpu_period: i64,
    #[serde(rename = "CpuShares")]
    pub cpu_shares: u64,
}

/// `/containers/{id}/stats?stream=false`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Stats {
    pub cpu_stats: CpuStats,
    pub precpu_stats: CpuStats,
    pub memory_stats: MemoryStats,
    pub blkio_stats: BlkioStats,
    /// Absent for a container without a network (`--network none`).
    pub networks: Option<BTreeMap<String, Network>>,
    pub pids_stats: PidsStats,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CpuStats {
    pub cpu_usage: CpuUsage,
    pub system_cpu_usage: u64,
    pub online_cpus: u32,
    pub throttling_data: Throttling,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CpuUsage {
    pub total_usage: u64,
    /// cgroup v1 only.
    pub percpu_usage: Option<Vec<u64>>,
    pub usage_in_kernelmode: u64,
    pub usage_in_usermode: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MemoryStats {
    pub usage: u64,
    /// cgroup v1 only.
    pub max_usage: u64,
    /// cgroup v1 only.
    pub failcnt: Option<u64>,
    pub limit: u64,
    #[serde(deserialize_with = "null_as_default")]
    pub stats: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BlkioStats {
    pub io_service_bytes_recursive: Option<Vec<BlkioEntry>>,
    pub io_serviced_recursive: Option<Vec<BlkioEntry>>,
    pub io_queue_recursive: Option<Vec<BlkioEntry>>,
    pub io_service_time_recursive: Option<Vec<BlkioEntry>>,
    pub io_wait_time_recursive: Option<Vec<BlkioEntry>>,
    pub io_merged_recursive: Option<Vec<BlkioEntry>>,
    pub io_time_recursive: Option<Vec<BlkioEntry>>,
    pub sectors_recursive: Option<Vec<BlkioEntry>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Network {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PidsStats {
    pub current: u64,
    pub limit: u64,
}

/// A JSON `null` read as the type's default (the Engine API writes `null` for empty lists and maps).
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
