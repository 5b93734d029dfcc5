//! Server TLS for the listeners, with otelcol's `configtls` server keys: `cert_file`/`key_file` (or
//! `cert_pem`/`key_pem`), `client_ca_file` (mutual TLS: a client without a certificate the CA signed
//! is refused at the handshake), `min_version` and `max_version`. Everything is loaded and checked
//! when the config is validated, so a missing file or a key that does not match its certificate
//! fails `validate`, not start.

use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use serde::Deserialize;
use std::sync::Arc;

/// `tls:` on a server, as otelcol's `configtls.ServerConfig`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsServerSettings {
    pub cert_file: Option<String>,
    pub cert_pem: Option<String>,
    pub key_file: Option<String>,
    pub key_pem: Option<String>,
    /// CA bundle that client certificates must chain to; setting it turns on mutual TLS.
    pub client_ca_file: Option<String>,
    /// `"1.2"` (default) or `"1.3"`; otelcol also takes `1.0` and `1.1`, which are refused here.
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    /// Not supported yet: refused rather than silently ignored.
    pub ca_file: Option<String>,
    pub ca_pem: Option<String>,
    pub cipher_suites: Vec<String>,
    #[serde(with = "vigil_core::config::opt_duration")]
    pub reload_interval: Option<std::time::Duration>,
    pub client_ca_file_reload: bool,
    pub include_system_ca_certs_pool: bool,
    pub curve_preferences: Vec<String>,
}

/// A setting that cannot be served, with the key it is under (relative to `tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    pub key: &'static str,
    pub message: String,
}

fn e(key: &'static str, message: impl Into<String>) -> TlsError {
    TlsError {
        key,
        message: message.into(),
    }
}

fn version(key: &'static str, v: &str) -> Result<u8, TlsError> {
    match v {
        "1.2" => Ok(2),
        "1.3" => Ok(3),
        "1.0" | "1.1" => Err(e(
            key,
            format!("TLS {v} is not supported (it is deprecated); use \"1.2\" or \"1.3\""),
        )),
        _ => Err(e(
            key,
            format!("unknown TLS version {v:?}; use \"1.2\" or \"1.3\""),
        )),
    }
}

fn read(key: &'static str, path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|err| e(key, format!("cannot read {path:?}: {err}")))
}

impl TlsServerSettings {
    /// The rustls configuration, offering `alpn` (`h2` for gRPC; `h2` and `http/1.1` for HTTP).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
        let unsupported: [(&'static str, bool); 7] = [
            ("ca_file", self.ca_file.is_some()),
            ("ca_pem", self.ca_pem.is_some()),
            ("cipher_suites", !self.cipher_suites.is_empty()),
            ("reload_interval", self.reload_interval.is_some()),
            ("client_ca_file_reload", self.client_ca_file_reload),
            (
                "include_system_ca_certs_pool",
                self.include_system_ca_certs_pool,
            ),
            ("curve_preferences", !self.curve_preferences.is_empty()),
        ];
        if let Some((key, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err(e(key, "not supported yet on servers"));
        }
        let certs: Vec<CertificateDer<'static>> = match (&self.cert_file, &self.cert_pem) {
            (Some(_), Some(_)) => return Err(e("cert_pem", "set cert_file or cert_pem, not both")),
            (Some(path), None) => pem_certs("cert_file", &read("cert_file", path)?)?,
            (None, Some(pem)) => pem_certs("cert_pem", pem.as_bytes())?,
            (None, None) => return Err(e("cert_file", "required: a server needs a certificate")),
        };
        let key: PrivateKeyDer<'static> = match (&self.key_file, &self.key_pem) {
            (Some(_), Some(_)) => return Err(e("key_pem", "set key_file or key_pem, not both")),
            (Some(path), None) => pem_key("key_file", &read("key_file", path)?)?,
            (None, Some(pem)) => pem_key("key_pem", pem.as_bytes())?,
            (None, None) => return Err(e("key_file", "required with a certificate")),
        };
        let min = version("min_version", self.min_version.as_deref().unwrap_or("1.2"))?;
        let max = version("max_version", self.max_version.as_deref().unwrap_or("1.3"))?;
        if min > max {
            return Err(e("max_version", "is lower than min_version"));
        }
        let versions: Vec<&'static SupportedProtocolVersion> =
            [(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)]
                .into_iter()
                .filter(|(v, _)| (min..=max).contains(v))
                .map(|(_, p)| p)
                .collect();
        // An explicit provider: with more than one compiled in, rustls has no process default.
        let provider = Arc::new(aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&versions)
            .map_err(|err| e("min_version", err.to_string()))?;
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in pem_certs("client_ca_file", &read("client_ca_file", path)?)? {
                    roots
                        .add(cert)
                        .map_err(|err| e("client_ca_file", format!("{path:?}: {err}")))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|err| e("client_ca_file", format!("{path:?}: {err}")))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut cfg = builder
            .with_single_cert(certs, key)
            .map_err(|err| e("key_file", format!("does not fit the certificate: {err}")))?;
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(cfg))
    }
}

fn pem_certs(key: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| e(key, format!("not a PEM certificate: {err}")))?;
    if certs.is_empty() {
        return Err(e(key, "holds no PEM certificate"));
    }
    Ok(certs)
}

fn pem_key(key: &'static str, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|err| e(key, format!("not a PEM private key: {err}")))
}
