//! Where the backends come from: `static` (a fixed list), `dns` (a name's addresses, looked up again
//! every `interval`) and `k8s` (a Service's endpoints). A resolver only answers "these endpoints
//! now"; the exporter turns a changed answer into a new ring.

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use vigil_core::config::duration;

/// The port a backend gets when none is written, as otelcol (OTLP/gRPC's).
pub const DEFAULT_PORT: u16 = 4317;

/// `resolver`: exactly one of its keys.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverConfig {
    #[serde(default, rename = "static", skip_serializing_if = "Option::is_none")]
    pub static_: Option<StaticResolver>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsResolver>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s: Option<K8sResolver>,
    /// Accepted so that an otelcol config decodes; refused at validate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_cloud_map: Option<serde_json::Value>,
}

/// `resolver::static`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticResolver {
    /// `host` or `host:port` (port 4317 when absent).
    #[serde(default)]
    pub hostnames: Vec<String>,
}

fn default_port() -> PortValue {
    PortValue::Number(DEFAULT_PORT)
}
fn default_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

/// otelcol spells `port` as a string; a number is accepted too.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PortValue {
    Number(u16),
    Text(String),
}

impl PortValue {
    pub fn get(&self) -> Result<u16, String> {
        match self {
            PortValue::Number(p) => Ok(*p),
            PortValue::Text(t) if t.trim().is_empty() => Ok(DEFAULT_PORT),
            PortValue::Text(t) => t
                .trim()
                .parse()
                .map_err(|_| format!("{t:?} is not a port number (1 to 65535)")),
        }
    }
}

/// `resolver::dns`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnsResolver {
    #[serde(default)]
    pub hostname: String,
    #[serde(default = "default_port")]
    pub port: PortValue,
    #[serde(default = "default_interval", with = "duration")]
    pub interval: Duration,
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
}

/// `resolver::k8s`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct K8sResolver {
    /// `name` or `name.namespace`.
    #[serde(default)]
    pub service: String,
    #[serde(default = "default_ports")]
    pub ports: Vec<u16>,
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub return_hostnames: bool,
}

fn default_ports() -> Vec<u16> {
    vec![DEFAULT_PORT]
}

/// `host:port`, with the default port added when `raw` has none (otelcol's `endpointWithPort`).
pub fn with_port(raw: &str) -> String {
    let raw = raw.trim();
    let has_port = match raw.rsplit_once(':') {
        // `[v6]:port` or `host:port`; a bare IPv6 address has several colons and no brackets.
        Some((host, port)) => {
            port.parse::<u16>().is_ok() && (host.starts_with('[') || !host.contains(':'))
        }
        None => false,
    };
    if has_port {
        raw.to_string()
    } else if raw.contains(':') && !raw.starts_with('[') {
        format!("[{raw}]:{DEFAULT_PORT}")
    } else {
        format!("{raw}:{DEFAULT_PORT}")
    }
}

/// `ip:port`, bracketing IPv6.
pub fn ip_endpoint(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

pub type Resolved = Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;

/// Looks a name up; the system resolver in production, a table in tests.
pub type Lookup = Arc<dyn Fn(String) -> Resolved + Send + Sync>;

pub fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    })
}

/// One DNS resolution: every address of `hostname` at `port`, sorted; an error when the lookup
/// fails or outlives `timeout`.
pub async fn resolve_dns(
    lookup: &Lookup,
    cfg: &DnsResolver,
    port: u16,
) -> Result<Vec<String>, String> {
    let found = tokio::time::timeout(cfg.timeout, lookup(cfg.hostname.clone()))
        .await
        .map_err(|_| {
            format!(
                "looking up {:?} took longer than {:?}",
                cfg.hostname, cfg.timeout
            )
        })?
        .map_err(|e| format!("cannot look up {:?}: {e}", cfg.hostname))?;
    let mut eps: Vec<String> = found.into_iter().map(|ip| ip_endpoint(ip, port)).collect();
    eps.sort();
    eps.dedup();
    Ok(eps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_port_is_added_as_otelcol_does() {
        assert_eq!(with_port("backend-1"), "backend-1:4317");
        assert_eq!(with_port("backend-1:55690"), "backend-1:55690");
        assert_eq!(with_port("::1"), "[::1]:4317");
        assert_eq!(with_port("[::1]:9"), "[::1]:9");
        assert_eq!(with_port("10.0.0.1"), "10.0.0.1:4317");
    }

    #[tokio::test]
    async fn dns_answers_sorted_ip_port_endpoints() {
        let lookup: Lookup = Arc::new(|_| {
            Box::pin(async {
                Ok(vec![
                    "10.0.0.2".parse().unwrap(),
                    "::1".parse().unwrap(),
                    "10.0.0.1".parse().unwrap(),
                    "10.0.0.2".parse().unwrap(),
                ])
            })
        });
        let cfg = DnsResolver {
            hostname: "backends.test".into(),
            port: PortValue::Text("55690".into()),
            interval: default_interval(),
            timeout: default_timeout(),
        };
        let port = cfg.port.get().unwrap();
        assert_eq!(
            resolve_dns(&lookup, &cfg, port).await.unwrap(),
            vec!["10.0.0.1:55690", "10.0.0.2:55690", "[::1]:55690"]
        );
        assert!(PortValue::Text("x".into()).get().is_err());
    }
}
