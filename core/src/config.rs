//! Config helpers shared by every component: typed decoding with the key path in the error, Go-style
//! durations (`200ms`, `1m30s`), byte sizes, and the "present but empty" rule otelcol applies to
//! sections such as `protocols: { grpc: }`.

use crate::component::{ComponentId, ComponentKind};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// A config mistake, with where it is and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `receivers::otlp/in`, `service::pipelines::traces`, or empty for the whole file.
    pub location: String,
    /// The key path inside the location, `::`-separated; may be empty.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(
        location: impl Into<String>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            location: location.into(),
            path: path.into(),
            message: message.into(),
        }
    }

    /// An error in a component's own section.
    pub fn component(
        kind: ComponentKind,
        id: &ComponentId,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError::new(format!("{}::{}", kind.section(), id), path, message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut where_ = self.location.clone();
        if !self.path.is_empty() {
            if !where_.is_empty() {
                where_.push_str("::");
            }
            where_.push_str(&self.path);
        }
        if where_.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{where_}: {}", self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Decodes a component's config section into its typed struct. Errors carry the key path, and an
/// unknown key is reported as otelcol reports it ("has invalid keys: …").
pub fn decode<T: DeserializeOwned>(
    kind: ComponentKind,
    id: &ComponentId,
    value: &Value,
) -> Result<T, ConfigError> {
    // A section written as `otlp:` with nothing under it is YAML null; otelcol takes it as defaults.
    let empty = Value::Object(Default::default());
    let value = if value.is_null() { &empty } else { value };
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = key_path(&e.path().to_string());
        ConfigError::component(kind, id, path, humanize_serde(&e.inner().to_string()))
    })
}

/// Renders serde's path (`actions[1].key`) as otelcol's key path (`actions::1::key`).
pub fn key_path(serde_path: &str) -> String {
    if serde_path == "." {
        return String::new();
    }
    serde_path
        .replace('[', ".")
        .replace(']', "")
        .split('.')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("::")
}

fn humanize_serde(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some((key, expected)) = rest.split_once('`') {
            let expected = expected.trim_start_matches(", ");
            return format!("has invalid keys: {key} ({expected})");
        }
    }
    msg.to_string()
}

/// Deserializes `Option<T>` so that a key that is present but empty (`grpc:`) means `Some(default)`,
/// as otelcol's confmap treats it; an absent key stays `None` through `#[serde(default)]`.
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    let v: Option<T> = Option::deserialize(d)?;
    Ok(Some(v.unwrap_or_default()))
}

/// Parses a Go duration: `300ms`, `1.5h`, `2h45m`, `10us`, `0`. A bare number is nanoseconds, as
/// mapstructure decodes an integer into `time.Duration`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s.starts_with('-') {
        return Err(format!(
            "invalid duration {s:?}: negative durations are not allowed"
        ));
    }
    let mut total = 0f64;
    let mut rest = s.trim_start_matches('+');
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("invalid duration {s:?}: missing unit (ns, us, ms, s, m, h)"))?;
        if num_end == 0 {
            return Err(format!("invalid duration {s:?}: expected a number"));
        }
        let n: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {u:?} (use ns, us, ms, s, m or h)"
                ))
            }
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// `#[serde(with = "vigil_core::config::duration")]` for `Duration` fields.
pub mod duration {
    use super::parse_duration;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Nanos(u64),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a duration such as \"5s\" or \"200ms\"")
        })? {
            Raw::Text(s) => parse_duration(&s).map_err(serde::de::Error::custom),
            Raw::Nanos(n) => Ok(Duration::from_nanos(n)),
        }
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }
}

/// `#[serde(with = "vigil_core::config::opt_duration")]` for `Option<Duration>` fields.
pub mod opt_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    #[derive(Deserialize)]
    struct Wrap(#[serde(with = "super::duration")] Duration);

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }
}

/// Checks a `host:port` endpoint as otelcol's servers take it. The host may be a name (`localhost`),
/// an IPv4 or a bracketed IPv6 address, or empty for all interfaces.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let (host, port) = endpoint
        .rsplit_once(':')
        .ok_or_else(|| format!("invalid endpoint {endpoint:?}: expected host:port"))?;
    let port: u32 = port
        .parse()
        .map_err(|_| format!("invalid endpoint {endpoint:?}: port {port:?} is not a number"))?;
    if port > 65535 {
        return Err(format!(
            "invalid endpoint {endpoint:?}: port {port} is out of range (0-65535)"
        ));
    }
    if host.contains(char::is_whitespace) {
        return Err(format!("invalid endpoint {endpoint:?}: host has spaces"));
    }
    Ok(())
}

/// Resolves a `host:port` endpoint to a socket address to bind. `localhost` binds loopback, and an
/// empty host binds every interface, as Go's net.Listen does.
pub fn resolve_endpoint(endpoint: &str) -> std::io::Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    let fixed = if endpoint.starts_with(':') {
        format!("0.0.0.0{endpoint}")
    } else {
        endpoint.to_string()
    };
    let mut addrs: Vec<_> = fixed.to_socket_addrs()?.collect();
    // Prefer IPv4 for `localhost`, where both resolve, so that clients using 127.0.0.1 reach us.
    addrs.sort_by_key(|a| !a.is_ipv4());
    addrs.into_iter().next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("endpoint {endpoint:?} resolves to no address"),
        )
    })
}

/// Binds a TCP listener, naming the component and endpoint when the port is taken.
pub async fn bind_tcp(
    kind: ComponentKind,
    id: &ComponentId,
    endpoint: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = resolve_endpoint(endpoint).map_err(|e| {
        anyhow::anyhow!(
            "{}::{}: cannot resolve endpoint {endpoint:?}: {e}",
            kind.section(),
            id
        )
    })?;
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!(
                "{}::{}: cannot listen on {endpoint} ({addr}): the port is already in use",
                kind.section(),
                id
            )
        } else {
            anyhow::anyhow!(
                "{}::{}: cannot listen on {endpoint} ({addr}): {e}",
                kind.section(),
                id
            )
        }
    })
}

/// Client TLS settings as otelcol's `configtls` spells them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsClientConfig {
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub cert_file: Option<String>,
    #[serde(default)]
    pub key_file: Option<String>,
    #[serde(default)]
    pub server_name_override: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn key_paths_use_double_colons() {
        assert_eq!(key_path("actions[1].key"), "actions::1::key");
        assert_eq!(key_path("."), "");
        assert_eq!(
            key_path("protocols.grpc.endpoint"),
            "protocols::grpc::endpoint"
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        #[serde(default)]
        endpoint: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(default, deserialize_with = "present")]
        grpc: Option<Inner>,
        #[serde(default, with = "duration")]
        #[allow(dead_code)]
        timeout: Duration,
    }

    #[test]
    fn decode_names_the_path() {
        let id = ComponentId::parse("otlp/in").unwrap();
        let v = serde_json::json!({"grpc": {"endpont": "x"}});
        let e = decode::<Outer>(ComponentKind::Receiver, &id, &v).unwrap_err();
        assert_eq!(e.location, "receivers::otlp/in");
        assert!(e.to_string().contains("has invalid keys: endpont"), "{e}");

        let v = serde_json::json!({"grpc": null});
        let o = decode::<Outer>(ComponentKind::Receiver, &id, &v).unwrap();
        assert!(o.grpc.is_some());

        let v = serde_json::json!({"timeout": "soon"});
        let e = decode::<Outer>(ComponentKind::Receiver, &id, &v).unwrap_err();
        assert!(
            e.to_string().starts_with("receivers::otlp/in::timeout: "),
            "{e}"
        );
    }
}
