//! The HTTP client every HTTP-based exporter builds the same way: otelcol's `headers` and `tls`
//! client keys turned into a `reqwest::Client`, with config errors that name the key. Shared by
//! `otlphttp` and the exporters to come (remote write, webhooks).

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::collections::BTreeMap;
use std::sync::Arc;
use vigil_core::config::TlsClientConfig;
use vigil_core::{ComponentId, ComponentKind, ConfigError};

fn config_error(id: &ComponentId, path: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Exporter, id, path, msg)
}

/// Turns the `headers` map into a header map, rejecting names and values HTTP cannot carry.
pub fn header_map(
    id: &ComponentId,
    headers: &BTreeMap<String, String>,
) -> Result<HeaderMap, ConfigError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
            config_error(
                id,
                format!("headers::{k}"),
                format!("{k:?} is not a valid header name"),
            )
        })?;
        let value = HeaderValue::from_str(v).map_err(|_| {
            config_error(
                id,
                format!("headers::{k}"),
                "the value has characters a header cannot carry (control characters or newlines)",
            )
        })?;
        map.insert(name, value);
    }
    Ok(map)
}

fn read(id: &ComponentId, key: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| {
        config_error(
            id,
            format!("tls::{key}"),
            format!("cannot read {path:?}: {e}"),
        )
    })
}

/// confighttp's client transport keys (otelcol's `ClientConfig`), mapped onto reqwest's pool.
/// `None`/zero leaves reqwest's own default, as an unset key leaves Go's transport default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientTransport {
    /// `proxy_url`: every request goes through this HTTP(S) proxy. Without it the standard proxy
    /// environment variables apply, as in Go.
    pub proxy_url: Option<String>,
    /// `max_idle_conns` / `max_idle_conns_per_host`: reqwest bounds idle connections per host
    /// only, and an exporter talks to one host, so the smaller of the two is the bound.
    pub max_idle_conns: Option<usize>,
    pub max_idle_conns_per_host: Option<usize>,
    /// `idle_conn_timeout` (0: idle connections are kept without a time limit).
    pub idle_conn_timeout: Option<std::time::Duration>,
    /// `disable_keep_alives`: no connection is reused.
    pub disable_keep_alives: bool,
    /// `http2_read_idle_timeout`: ping an HTTP/2 connection idle this long (0: never), and drop it
    /// when the ping is not answered within `http2_ping_timeout` (0: 15s, Go's default).
    pub http2_read_idle_timeout: std::time::Duration,
    pub http2_ping_timeout: std::time::Duration,
}

impl ClientTransport {
    fn apply(
        &self,
        id: &ComponentId,
        mut builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, ConfigError> {
        if let Some(raw) = self.proxy_url.as_deref().filter(|u| !u.is_empty()) {
            let proxy = reqwest::Url::parse(raw)
                .ok()
                .filter(|u| u.has_host())
                .and_then(|u| reqwest::Proxy::all(u).ok())
                .ok_or_else(|| {
                    config_error(
                        id,
                        "proxy_url",
                        format!("{raw:?} is not a proxy URL (expected http://host:port)"),
                    )
                })?;
            builder = builder.proxy(proxy);
        }
        let idle = match (self.max_idle_conns, self.max_idle_conns_per_host) {
            // Go: 0 means no limit for max_idle_conns.
            (Some(0), per_host) | (None, per_host) => per_host,
            (Some(all), Some(per_host)) => Some(all.min(per_host)),
            (Some(all), None) => Some(all),
        };
        if self.disable_keep_alives {
            builder = builder.pool_max_idle_per_host(0);
        } else if let Some(n) = idle {
            builder = builder.pool_max_idle_per_host(n);
        }
        if let Some(t) = self.idle_conn_timeout {
            builder = builder.pool_idle_timeout((!t.is_zero()).then_some(t));
        }
        if !self.http2_read_idle_timeout.is_zero() {
            let ping = if self.http2_ping_timeout.is_zero() {
                std::time::Duration::from_secs(15)
            } else {
                self.http2_ping_timeout
            };
            builder = builder
                .http2_keep_alive_interval(self.http2_read_idle_timeout)
                .http2_keep_alive_timeout(ping)
                .http2_keep_alive_while_idle(true);
        }
        Ok(builder)
    }
}

/// Builds a client with default `headers` and the `tls` settings: `ca_file` replaces the system roots
/// (as Go's crypto/tls does), `cert_file` + `key_file` present a client certificate,
/// `insecure_skip_verify` turns verification off, and `server_name_override` and `cipher_suites`
/// go through [`crate::helper::tls::client_config`]. Plain `http://` URLs never use TLS.
pub fn http_client(
    id: &ComponentId,
    headers: &BTreeMap<String, String>,
    tls: &TlsClientConfig,
) -> Result<reqwest::Client, ConfigError> {
    http_client_with(id, headers, tls, &ClientTransport::default())
}

/// [`http_client`] with confighttp's transport keys as well.
pub fn http_client_with(
    id: &ComponentId,
    headers: &BTreeMap<String, String>,
    tls: &TlsClientConfig,
    transport: &ClientTransport,
) -> Result<reqwest::Client, ConfigError> {
    http_client_from(reqwest::Client::builder(), id, headers, tls, transport)
}

/// [`http_client_with`] starting from `builder`, for a caller that sets more (the `sumologic`
/// extension turns redirect following off, as it follows a 301 to another deployment itself).
pub fn http_client_from(
    builder: reqwest::ClientBuilder,
    id: &ComponentId,
    headers: &BTreeMap<String, String>,
    tls: &TlsClientConfig,
    transport: &ClientTransport,
) -> Result<reqwest::Client, ConfigError> {
    let mut builder = builder
        .default_headers(header_map(id, headers)?)
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")));
    // In `vigil validate` the files are not read: otelcol's `configtls` loads them at start.
    let deferred = vigil_core::config::host_files_deferred();
    if let Some(ca) = tls.ca_file.as_ref().filter(|_| !deferred) {
        let pem = read(id, "ca_file", ca)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            config_error(
                id,
                "tls::ca_file",
                format!("{ca:?} holds no usable PEM certificate: {e}"),
            )
        })?;
        // `include_system_ca_certs_pool` keeps the system roots beside the file's.
        builder = if tls.include_system_ca_certs_pool {
            builder.tls_certs_merge(certs)
        } else {
            builder.tls_certs_only(certs)
        };
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(_), Some(_)) if deferred => {}
        (Some(cert), Some(key)) => {
            let mut pem = read(id, "cert_file", cert)?;
            pem.push(b'\n');
            pem.extend(read(id, "key_file", key)?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                config_error(
                    id,
                    "tls::cert_file",
                    format!("{cert:?} and {key:?} do not form a PEM certificate and key: {e}"),
                )
            })?;
            builder = builder.identity(identity);
        }
        (Some(_), None) => {
            return Err(config_error(
                id,
                "tls::key_file",
                "cert_file needs key_file",
            ))
        }
        (None, Some(_)) => {
            return Err(config_error(
                id,
                "tls::cert_file",
                "key_file needs cert_file",
            ))
        }
        (None, None) => {}
    }
    if tls.insecure_skip_verify {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    let (min, max) =
        vigil_core::net::tls::version_range(tls.min_version.as_deref(), tls.max_version.as_deref())
            .map_err(|e| config_error(id, format!("tls::{}", e.key), e.message))?;
    let v = |minor: u8| {
        if minor == 3 {
            reqwest::tls::Version::TLS_1_3
        } else {
            reqwest::tls::Version::TLS_1_2
        }
    };
    builder = builder.tls_version_min(v(min)).tls_version_max(v(max));
    // reqwest has no setting for these two: the whole rustls configuration is built instead
    // (roots, client certificate, versions and suites from the same keys). With the override,
    // SNI still carries the endpoint's host; the certificate is checked against the override.
    if tls.server_name_override.is_some() || !tls.cipher_suites.is_empty() {
        let config = crate::helper::tls::client_config(id, tls, &[b"h2", b"http/1.1"])?;
        builder = builder.tls_backend_preconfigured(Arc::unwrap_or_clone(config));
    }
    builder = transport.apply(id, builder)?;
    builder
        .build()
        .map_err(|e| config_error(id, "tls", format!("cannot build the HTTP client: {e}")))
}

/// What a factory's `validate` calls: `headers` and `tls` checked as [`http_client`] reads them
/// (the certificate files included), without keeping a client. Nothing connects or spawns.
pub fn check_client(
    id: &ComponentId,
    headers: &BTreeMap<String, String>,
    tls: &TlsClientConfig,
) -> Result<(), ConfigError> {
    http_client(id, headers, tls).map(drop)
}

/// A transport error with its causes, which reqwest keeps in the source chain ("connection refused"
/// is three levels down).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_keys_build_or_name_the_key() {
        let id = ComponentId::parse("otlphttp").unwrap();
        let none = BTreeMap::new();
        let tls = TlsClientConfig::default();
        let t = ClientTransport {
            proxy_url: Some("http://proxy.example:3128".into()),
            max_idle_conns: Some(100),
            max_idle_conns_per_host: Some(10),
            idle_conn_timeout: Some(std::time::Duration::from_secs(90)),
            disable_keep_alives: false,
            http2_read_idle_timeout: std::time::Duration::from_secs(10),
            http2_ping_timeout: std::time::Duration::ZERO,
        };
        assert!(http_client_with(&id, &none, &tls, &t).is_ok());
        let bad = ClientTransport {
            proxy_url: Some("not a url".into()),
            ..ClientTransport::default()
        };
        let e = http_client_with(&id, &none, &tls, &bad).unwrap_err();
        assert!(e.to_string().contains("proxy_url"), "{e}");
    }

    #[test]
    fn tls_versions_are_checked_and_named() {
        let id = ComponentId::parse("otlphttp").unwrap();
        let tls = |min: Option<&str>, max: Option<&str>| TlsClientConfig {
            min_version: min.map(str::to_string),
            max_version: max.map(str::to_string),
            ..TlsClientConfig::default()
        };
        let none = BTreeMap::new();
        assert!(http_client(&id, &none, &tls(Some("1.3"), None)).is_ok());
        assert!(http_client(&id, &none, &tls(Some("1.2"), Some("1.2"))).is_ok());
        let e = http_client(&id, &none, &tls(Some("1.0"), None)).unwrap_err();
        assert!(
            e.to_string()
                .contains("otlphttp::tls::min_version: TLS 1.0"),
            "{e}"
        );
        let e = http_client(&id, &none, &tls(Some("1.3"), Some("1.2"))).unwrap_err();
        assert!(e.to_string().contains("tls::max_version: is lower"), "{e}");
    }
}
