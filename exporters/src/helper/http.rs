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

/// Builds a client with default `headers` and the `tls` settings: `ca_file` replaces the system roots
/// (as Go's crypto/tls does), `cert_file` + `key_file` present a client certificate,
/// `insecure_skip_verify` turns verification off, and `server_name_override` and `cipher_suites`
/// go through [`crate::helper::tls::client_config`]. Plain `http://` URLs never use TLS.
pub fn http_client(
    id: &ComponentId,
    headers: &BTreeMap<String, String>,
    tls: &TlsClientConfig,
) -> Result<reqwest::Client, ConfigError> {
    let mut builder = reqwest::Client::builder()
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
        builder = builder.tls_certs_only(certs);
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
