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
/// (as Go's crypto/tls does), `cert_file` + `key_file` present a client certificate, and
/// `insecure_skip_verify` turns verification off. Plain `http://` URLs never use TLS.
pub fn http_client(
    id: &ComponentId,
    headers: &BTreeMap<String, String>,
    tls: &TlsClientConfig,
) -> Result<reqwest::Client, ConfigError> {
    let mut builder = reqwest::Client::builder()
        .default_headers(header_map(id, headers)?)
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &tls.ca_file {
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
    match &tls.server_name_override {
        Some(name) if !tls.insecure_skip_verify => {
            builder =
                builder.tls_backend_preconfigured(name_override_tls(id, tls, name, min, max)?);
        }
        _ => {}
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

/// `tls::server_name_override`: reqwest has no setting for it, so the whole rustls configuration is
/// built here (roots, client certificate, versions) with a verifier that checks the server's
/// certificate against the override instead of the endpoint's host, as Go's `tls.Config.ServerName`
/// does. One difference: SNI still carries the endpoint's host.
fn name_override_tls(
    id: &ComponentId,
    tls: &TlsClientConfig,
    name: &str,
    min: u8,
    max: u8,
) -> Result<rustls::ClientConfig, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let err = |key: &str, m: String| config_error(id, format!("tls::{key}"), m);
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| {
        err(
            "server_name_override",
            format!("{name:?} is not a DNS name or IP address: {e}"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(ca) => {
            for cert in CertificateDer::pem_slice_iter(&read(id, "ca_file", ca)?) {
                let cert = cert.map_err(|e| err("ca_file", format!("{ca:?}: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| err("ca_file", format!("{ca:?}: {e}")))?;
            }
        }
        // The system store, as without the override (a certificate it cannot parse is skipped).
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| err("ca_file", format!("no usable root certificate: {e}")))?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| err("min_version", e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NameOverride {
            inner,
            name: server_name,
        }));
    let mut cfg = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_slice_iter(&read(id, "cert_file", cert)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| err("cert_file", format!("{cert:?}: {e}")))?;
            let key_der = PrivateKeyDer::from_pem_slice(&read(id, "key_file", key)?)
                .map_err(|e| err("key_file", format!("{key:?}: {e}")))?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|e| err("key_file", format!("does not fit cert_file: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Verifies the server's certificate for a fixed name, whatever host the connection was made to.
#[derive(Debug)]
struct NameOverride {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: rustls::pki_types::ServerName<'static>,
}

impl rustls::client::danger::ServerCertVerifier for NameOverride {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
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
